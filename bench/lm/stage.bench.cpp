// One stage of the training demonstration's language model (examples/lm/model.hpp): forward plus
// backward of a micro-batch, against Eigen's own GEMMs on the same shapes (the baseline: per block
// Z = W X, dW += dZ X^T, dX = W^T dZ; for the last stage also the head's three). The counter
// `gemm_fraction` is the baseline's time over the stage's: 1 means the stage adds nothing to its
// matrix products (the target is >= 0.5). Stage 1 of 4 holds two residual blocks of width 128;
// stage 3 of 4 a block and the head (softmax over 96 characters).

#include "../../examples/lm/model.hpp"

#include <benchmark/benchmark.h>

#if PACI_LM_HAVE_EIGEN

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace {

using paci_lm::matrix;
using clock_type = std::chrono::steady_clock;

paci_lm::lm_task bench_task(int batch) {
    std::string text;
    std::uint64_t z = 1;
    for (int k = 0; k < 200000; ++k) text += static_cast<char>(32 + (z = paci_lm::mix64(z)) % 95);
    paci_lm::lm_config c;
    c.batch = batch;
    return {c, std::make_shared<const paci_lm::corpus>(paci_lm::corpus_from_text(text))};
}

/// Eigen's GEMMs of one stage on preallocated matrices.
struct gemms {
    struct layer {
        matrix<float> w, gw, x, z, gz, gx;
    };
    std::vector<layer> layers;
    gemms(const std::vector<std::pair<int, int>>& shapes, int batch) {
        for (const auto& [out, in] : shapes)
            layers.push_back({matrix<float>::Random(out, in), matrix<float>::Zero(out, in), matrix<float>::Random(in, batch),
                              matrix<float>(out, batch), matrix<float>::Random(out, batch), matrix<float>(in, batch)});
    }
    void run() {
        for (auto& l : layers) l.z.noalias() = l.w * l.x;
        for (auto& l : layers) {
            l.gw.noalias() += l.gz * l.x.transpose();
            l.gx.noalias() = l.w.transpose() * l.gz;
        }
        benchmark::DoNotOptimize(layers.back().gx.data());
    }
};

struct setup {
    paci_lm::lm_task task;
    std::unique_ptr<paci_lm::lm_stage<float>> stage;
    std::vector<float> input, grad;
    gemms baseline;
    setup(int index, int batch)
        : task(bench_task(batch)), stage(std::make_unique<paci_lm::lm_stage<float>>(task, index, 4)),
          input(static_cast<std::size_t>(task.config.hidden * batch), 0.5f),
          grad(stage->is_last() ? 0 : static_cast<std::size_t>(task.config.hidden * batch), 0.01f),
          baseline(index == 3 ? std::vector<std::pair<int, int>>{{128, 128}, {paci_lm::vocab, 128}}
                              : std::vector<std::pair<int, int>>{{128, 128}, {128, 128}},
                   batch) {
        for (std::size_t k = 0; k < input.size(); ++k) input[k] = static_cast<float>(paci_lm::uniform_pm1(5, 1, k));
    }
    void stage_step(int m) {
        benchmark::DoNotOptimize(stage->forward(m, input));
        benchmark::DoNotOptimize(stage->backward(m, grad));
    }
};

void stage_forward_backward(benchmark::State& state) {
    const int index = static_cast<int>(state.range(0)), batch = static_cast<int>(state.range(1));
    setup s(index, batch);
    int m = 0;
    for (auto _ : state) s.stage_step(m++);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * batch);
}

void eigen_gemms_same_shapes(benchmark::State& state) {
    const int index = static_cast<int>(state.range(0)), batch = static_cast<int>(state.range(1));
    setup s(index, batch);
    for (auto _ : state) s.baseline.run();
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * batch);
}

/// Both, interleaved in one loop (so both see the same machine), with the ratio as a counter.
void stage_vs_gemms(benchmark::State& state) {
    const int index = static_cast<int>(state.range(0)), batch = static_cast<int>(state.range(1));
    setup s(index, batch);
    double stage_s = 0, gemm_s = 0;
    int m = 0;
    for (int k = 0; k < 20; ++k) s.stage_step(m++), s.baseline.run(); // warm-up
    for (auto _ : state) {
        const auto t0 = clock_type::now();
        s.stage_step(m++);
        const auto t1 = clock_type::now();
        s.baseline.run();
        const auto t2 = clock_type::now();
        stage_s += std::chrono::duration<double>(t1 - t0).count();
        gemm_s += std::chrono::duration<double>(t2 - t1).count();
    }
    const double n = static_cast<double>(state.iterations());
    state.counters["stage_us"] = stage_s / n * 1e6;
    state.counters["gemm_us"] = gemm_s / n * 1e6;
    state.counters["gemm_fraction"] = gemm_s / stage_s;
}

void shapes(benchmark::internal::Benchmark* b) {
    for (const int index : {1, 3})
        for (const int batch : {32, 128}) b->Args({index, batch});
    b->ArgNames({"stage", "batch"});
}

BENCHMARK(stage_forward_backward)->Apply(shapes);
BENCHMARK(eigen_gemms_same_shapes)->Apply(shapes);
BENCHMARK(stage_vs_gemms)->Apply(shapes);

} // namespace

#else

namespace {
void stage_vs_gemms(benchmark::State& state) { state.SkipWithError("Eigen not found (libeigen3-dev): nothing to measure"); }
BENCHMARK(stage_vs_gemms);
} // namespace

#endif

BENCHMARK_MAIN();
