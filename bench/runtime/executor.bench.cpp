/// \file
/// The runtime: what the executor costs per action, and whether a real (timed) PACI run gains over
/// 1F1B-flush what the simulator says it should.
///
/// 1. Overhead, in process, with no-op stages (release build, 4 ranks on threads):
///    `one_f_one_b<>{.stages = 4, .microbatches = 256}`, `run(256)`: 2048 compute actions (F and B)
///    per iteration, each moving a 16-float `std::vector` (the first stage allocates it, the last stage
///    allocates the gradient, as a real model would). `items_per_second` counts actions;
///    `s_per_action` is its inverse (wall time of the whole pipeline, threads started and joined).
///    - `BM_executor_noop/record:0|1`: `inprocess_pipeline::run`, trace recording off or on;
///    - `BM_baseline_cv_queues`: the naive baseline: the same stages and buffers, 4 threads started and
///      joined per iteration, each running the same 1F1B order by hand (P - s forwards, then backward
///      and forward alternately, then the remaining backwards) over one mutex + condition-variable
///      queue per channel;
///    - `BM_overhead_ratio`: both, alternately in every iteration, so they share the machine's load;
///      counters `paci_s_per_action`, `baseline_s_per_action`, `ratio` (paci / baseline).
///    Targets: paci <= 1 µs per action, and not slower than the baseline (ratio <= 1). With more
///    threads than cores the figure is mostly thread wake-ups, for both.
///    - `BM_executor_one_rank/record:0|1` and `BM_baseline_one_thread`: the executor's own cost per
///      action without any wait: the same 4 no-op stages on one rank (interleaved 1F1B, 1 rank x 4
///      chunks, in-memory hand-offs), against the same calls in the same order written by hand.
/// 2. Throughput with stages that spin a fixed time (200 µs forward, 400 µs backward; busy-wait on
///    steady_clock, not sleep), 2 ranks, `a` micro-batches per update, 32 micro-batches per window,
///    run as a training loop runs them: `run(a)` per update, one `drain()` at the end.
///    `BM_busy_paci_vs_flush/a` runs 1F1B-flush and PACI alternately and reports the measured
///    throughput ratio (PACI / flush, micro-batches per second) beside the ratio `paci::simulate`
///    predicts from the makespans of the same windows under the same costs. Target: within 5%.
///    `drain_per_call_ratio` is PACI drained after every update (what `run` did before it streamed),
///    which executes 1F1B-flush's program: about 1.
/// 3. `BM_streaming_memory/microbatches:1000000`: PACI at P = 8 with no-op stages and recording off,
///    1,000,000 micro-batches as a training loop; peak RSS (target < 64 MiB) and its growth over a
///    10,000-micro-batch run.
///    The two ranks spin, so this needs two free cores: `flush_vs_sim` and `paci_vs_sim` (measured
///    over simulated time) near 1 say the run had them. `predicted_ratio_lat` repeats the prediction
///    with the transport's one-way latency (`hop_latency_us`, measured by a blocking ping-pong) as
///    the cost model's per-hop latency, and `error_lat_pct` compares against it.

#include <paci/policy/interleaved.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/runtime/pipeline.hpp>
#include <paci/sim/simulate.hpp>

#include <benchmark/benchmark.h>

#include "support/busy_stage.hpp"

#include <sys/resource.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using buffer = std::vector<float>;

constexpr int overhead_stages = 4;
constexpr int overhead_microbatches = 256;
constexpr std::int64_t overhead_actions = 2LL * overhead_stages * overhead_microbatches;
constexpr std::size_t buffer_floats = 16;

/// A stage that does nothing but pass its 16-float buffer on (allocating one where a model would:
/// the first stage's input, the last stage's loss gradient).
struct noop_stage {
    using buffer_type = buffer;
    buffer_type forward(int, buffer_type in) {
        if (in.empty()) in.assign(buffer_floats, 1.0f);
        return in;
    }
    buffer_type backward(int, buffer_type g) {
        if (g.empty()) g.assign(buffer_floats, 1.0f);
        return g;
    }
    void step() {}
};

double seconds(clock_type::duration d) { return std::chrono::duration<double>(d).count(); }

/// One iteration of the library: a fresh pipeline (built outside the timed span) runs 256 micro-batches.
double time_paci_noop(bool record) {
    std::vector<noop_stage> stages(overhead_stages);
    std::vector<noop_stage*> ptrs;
    for (auto& s : stages) ptrs.push_back(&s);
    paci::executor_options opts;
    opts.record = record;
    paci::inprocess_pipeline pipeline(paci::one_f_one_b<>{.stages = overhead_stages, .microbatches = overhead_microbatches},
                                      ptrs, opts);
    const auto t0 = clock_type::now();
    pipeline.run(overhead_microbatches);
    pipeline.drain();
    return seconds(clock_type::now() - t0);
}

/// A mutex + condition-variable FIFO of buffers: the baseline's channel.
class cv_queue {
public:
    void push(buffer&& b) {
        {
            std::lock_guard lock(mutex_);
            items_.push_back(std::move(b));
        }
        cv_.notify_one();
    }
    buffer pop() {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return !items_.empty(); });
        buffer b = std::move(items_.front());
        items_.pop_front();
        return b;
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<buffer> items_;
};

/// One iteration of the baseline: 4 threads, hand-written 1F1B over cv_queues.
double time_baseline() {
    constexpr int P = overhead_stages, M = overhead_microbatches;
    std::vector<noop_stage> stages(P);
    std::vector<std::unique_ptr<cv_queue>> fwd(P), bwd(P); // fwd[s]: input of stage s; bwd[s]: its output gradient
    for (int s = 0; s < P; ++s) {
        fwd[static_cast<std::size_t>(s)] = std::make_unique<cv_queue>();
        bwd[static_cast<std::size_t>(s)] = std::make_unique<cv_queue>();
    }
    const auto t0 = clock_type::now();
    {
        std::vector<std::jthread> threads;
        for (int s = 0; s < P; ++s)
            threads.emplace_back([&, s] {
                noop_stage& st = stages[static_cast<std::size_t>(s)];
                const auto us = static_cast<std::size_t>(s);
                const auto forward = [&](int m) {
                    buffer out = st.forward(m, s == 0 ? buffer{} : fwd[us]->pop());
                    if (s + 1 < P) fwd[us + 1]->push(std::move(out));
                };
                const auto backward = [&](int m) {
                    buffer out = st.backward(m, s == P - 1 ? buffer{} : bwd[us]->pop());
                    if (s > 0) bwd[us - 1]->push(std::move(out));
                };
                // The 1F1B machine's order (policy/one_f_one_b.hpp): forwards while fewer than P - s are
                // in flight, otherwise the oldest backward.
                int f = 0, b = 0;
                while (f < std::min(P - s, M)) forward(f++);
                while (b < M) {
                    backward(b++);
                    if (f < M) forward(f++);
                }
            });
    }
    return seconds(clock_type::now() - t0);
}

void BM_executor_noop(benchmark::State& state) {
    const bool record = state.range(0) != 0;
    static_cast<void>(time_paci_noop(record)); // warm-up
    for (auto _ : state) state.SetIterationTime(time_paci_noop(record));
    state.SetItemsProcessed(state.iterations() * overhead_actions);
    state.counters["s_per_action"] = benchmark::Counter(static_cast<double>(overhead_actions),
                                                        benchmark::Counter::kIsIterationInvariantRate |
                                                            benchmark::Counter::kInvert);
}
BENCHMARK(BM_executor_noop)->ArgName("record")->Arg(0)->Arg(1)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_baseline_cv_queues(benchmark::State& state) {
    static_cast<void>(time_baseline());
    for (auto _ : state) state.SetIterationTime(time_baseline());
    state.SetItemsProcessed(state.iterations() * overhead_actions);
    state.counters["s_per_action"] = benchmark::Counter(static_cast<double>(overhead_actions),
                                                        benchmark::Counter::kIsIterationInvariantRate |
                                                            benchmark::Counter::kInvert);
}
BENCHMARK(BM_baseline_cv_queues)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_overhead_ratio(benchmark::State& state) {
    double paci_total = 0, base_total = 0;
    static_cast<void>(time_paci_noop(true));
    static_cast<void>(time_baseline());
    for (auto _ : state) {
        const double p = time_paci_noop(true);
        const double b = time_baseline();
        paci_total += p;
        base_total += b;
        state.SetIterationTime(p + b);
    }
    const double n = static_cast<double>(state.iterations()) * static_cast<double>(overhead_actions);
    state.counters["paci_s_per_action"] = paci_total / n;
    state.counters["baseline_s_per_action"] = base_total / n;
    state.counters["ratio"] = paci_total / base_total;
}
BENCHMARK(BM_overhead_ratio)->UseManualTime()->Unit(benchmark::kMillisecond);

// ---- one rank, four stages: the executor's own cost per action, without thread hand-offs -------------

/// `interleaved_one_f_one_b{.ranks = 1, .chunks = 4, .microbatches = 256}`: the four stages run on
/// one rank and hand buffers over in memory, so no thread ever waits and what is left is the
/// executor's bookkeeping (schedule generation, hand-off map, counters, trace) plus the stages' work.
double time_paci_one_rank(bool record) {
    std::vector<noop_stage> stages(overhead_stages);
    std::vector<noop_stage*> ptrs;
    for (auto& s : stages) ptrs.push_back(&s);
    paci::executor_options opts;
    opts.record = record;
    paci::inprocess_pipeline pipeline(
        paci::interleaved_one_f_one_b{.ranks = 1, .chunks = overhead_stages, .microbatches = overhead_microbatches}, ptrs,
        opts);
    const auto t0 = clock_type::now();
    pipeline.run(overhead_microbatches);
    pipeline.drain();
    return seconds(clock_type::now() - t0);
}

/// The same calls in the same order (interleaved.hpp's formula with one rank: forward k is stage
/// k % 4 of micro-batch k / 4, backward k stage 3 - k % 4; 3 warm-up forwards), by hand on one thread
/// (started and joined like the pipeline's), with one FIFO of buffers per stage and direction.
double time_baseline_one_thread() {
    constexpr int P = overhead_stages, M = overhead_microbatches;
    std::vector<noop_stage> stages(P);
    const auto t0 = clock_type::now();
    std::jthread worker([&] {
        std::vector<std::deque<buffer>> in_f(P), in_b(P);
        const auto forward = [&](int k) {
            const int s = k % P, m = k / P;
            const auto us = static_cast<std::size_t>(s);
            buffer x;
            if (s > 0) {
                x = std::move(in_f[us].front());
                in_f[us].pop_front();
            }
            buffer out = stages[us].forward(m, std::move(x));
            if (s + 1 < P) in_f[us + 1].push_back(std::move(out));
        };
        const auto backward = [&](int k) {
            const int s = P - 1 - k % P, m = k / P;
            const auto us = static_cast<std::size_t>(s);
            buffer g;
            if (s + 1 < P) {
                g = std::move(in_b[us].front());
                in_b[us].pop_front();
            }
            buffer out = stages[us].backward(m, std::move(g));
            if (s > 0) in_b[us - 1].push_back(std::move(out));
        };
        const int per_step = M * P, w = P - 1;
        for (int k = 0; k < w; ++k) forward(k);
        for (int k = 0; k < per_step - w; ++k) {
            forward(w + k);
            backward(k);
        }
        for (int k = per_step - w; k < per_step; ++k) backward(k);
    });
    worker.join();
    return seconds(clock_type::now() - t0);
}

void BM_executor_one_rank(benchmark::State& state) {
    const bool record = state.range(0) != 0;
    static_cast<void>(time_paci_one_rank(record));
    for (auto _ : state) state.SetIterationTime(time_paci_one_rank(record));
    state.SetItemsProcessed(state.iterations() * overhead_actions);
    state.counters["s_per_action"] = benchmark::Counter(static_cast<double>(overhead_actions),
                                                        benchmark::Counter::kIsIterationInvariantRate |
                                                            benchmark::Counter::kInvert);
}
BENCHMARK(BM_executor_one_rank)->ArgName("record")->Arg(0)->Arg(1)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_baseline_one_thread(benchmark::State& state) {
    static_cast<void>(time_baseline_one_thread());
    for (auto _ : state) state.SetIterationTime(time_baseline_one_thread());
    state.SetItemsProcessed(state.iterations() * overhead_actions);
    state.counters["s_per_action"] = benchmark::Counter(static_cast<double>(overhead_actions),
                                                        benchmark::Counter::kIsIterationInvariantRate |
                                                            benchmark::Counter::kInvert);
}
BENCHMARK(BM_baseline_one_thread)->UseManualTime()->Unit(benchmark::kMicrosecond);

// ---- timed stages: PACI vs 1F1B-flush, measured and simulated ----------------------------------------

constexpr int busy_stages = 2;
constexpr int busy_microbatches = 32; // per training window

using busy_stage = paci_bench::busy_stage<buffer_floats>;

/// Makespan of `busy_microbatches` micro-batches of `policy` under the busy stages' costs, in µs, with
/// `latency_us` from a send to the data being usable at the receiver.
template <class Policy>
double simulated_makespan(Policy policy, double latency_us = 0) {
    policy.steps = busy_microbatches / policy.microbatches;
    paci::cost_model costs;
    costs.uniform = paci::stage_costs{.f = 200, .b = 400, .i = 0, .w = 0, .r = 0, .step = 0};
    costs.latency = latency_us;
    return paci::simulate(policy.generate(), costs).makespan;
}

/// One-way latency of the in-process transport between two threads that block on their receives (as
/// the ranks of the busy pipelines do on their critical path), in µs: half a ping-pong round trip.
double hop_latency_us() {
    constexpr int rounds = 200;
    paci::inprocess_world<buffer> world(2);
    auto c0 = world.communicator(0);
    auto c1 = world.communicator(1);
    const auto t = std::chrono::seconds(10);
    std::jthread echo([&] {
        for (int k = 0; k < rounds; ++k) c1.isend(0, 1, c1.irecv(0, 0).wait(t));
    });
    buffer b(buffer_floats, 1.0f);
    const auto t0 = clock_type::now();
    for (int k = 0; k < rounds; ++k) {
        c0.isend(1, 0, std::move(b));
        b = c0.irecv(1, 1).wait(t);
    }
    return seconds(clock_type::now() - t0) / (2.0 * rounds) * 1e6;
}

/// One training window on a drained pipeline, as a training loop runs it: `run(a)` per update and
/// one `drain()` at the end (`drain_each` also drains after every update: the old behaviour of run).
template <class Pipe>
double train_window(Pipe& pipe, int a, bool drain_each) {
    const auto t0 = clock_type::now();
    for (int u = 0; u < busy_microbatches / a; ++u) {
        pipe.run(a);
        if (drain_each) pipe.drain();
    }
    pipe.drain();
    return seconds(clock_type::now() - t0);
}

void BM_busy_paci_vs_flush(benchmark::State& state) {
    const int a = static_cast<int>(state.range(0));
    const paci::one_f_one_b<> flush{.stages = busy_stages, .microbatches = a};
    const paci::paci_policy<> paci{.stages = busy_stages, .microbatches = a};
    std::vector<busy_stage> s1(busy_stages), s2(busy_stages);
    paci::executor_options opts;
    opts.record = false;
    paci::inprocess_pipeline flush_pipe(flush, std::vector<busy_stage*>{&s1[0], &s1[1]}, opts);
    paci::inprocess_pipeline paci_pipe(paci, std::vector<busy_stage*>{&s2[0], &s2[1]}, opts);
    static_cast<void>(train_window(flush_pipe, a, false));
    static_cast<void>(train_window(paci_pipe, a, false));
    double flush_total = 0, paci_total = 0, paci_drained_total = 0;
    for (auto _ : state) {
        const double f = train_window(flush_pipe, a, false);
        const double p = train_window(paci_pipe, a, false);
        const double d = train_window(paci_pipe, a, true);
        flush_total += f;
        paci_total += p;
        paci_drained_total += d;
        state.SetIterationTime(f + p + d);
    }
    const double runs = static_cast<double>(state.iterations());
    const double hop = hop_latency_us();
    const double predicted_with_latency = simulated_makespan(flush, hop) / simulated_makespan(paci, hop);
    const double measured = flush_total / paci_total; // throughput ratio PACI / flush on equal work
    const double predicted = simulated_makespan(flush) / simulated_makespan(paci);
    state.counters["flush_us_per_mb"] = flush_total / runs / busy_microbatches * 1e6;
    state.counters["paci_us_per_mb"] = paci_total / runs / busy_microbatches * 1e6;
    state.counters["sim_flush_us_per_mb"] = simulated_makespan(flush) / busy_microbatches;
    state.counters["sim_paci_us_per_mb"] = simulated_makespan(paci) / busy_microbatches;
    // Measured over simulated time per micro-batch: about 1 when the two ranks had a core each; well
    // above 1 means the machine was busy and the measured ratio says little.
    state.counters["flush_vs_sim"] = flush_total / runs / simulated_makespan(flush) * 1e6;
    state.counters["paci_vs_sim"] = paci_total / runs / simulated_makespan(paci) * 1e6;
    state.counters["measured_ratio"] = measured;
    state.counters["predicted_ratio"] = predicted;
    state.counters["error_pct"] = (measured / predicted - 1) * 100;
    // PACI drained after every update (what run(a) did before it streamed): 1F1B-flush's program.
    state.counters["drain_per_call_ratio"] = flush_total / paci_drained_total;
    // The same prediction with the transport's measured one-way latency as the cost model's per-hop
    // latency: PACI's steady state has no slack (stage 0's backward waits on the round trip through
    // stage 1), so a slow hand-off would land on its critical path; this shows whether it does.
    state.counters["hop_latency_us"] = hop;
    state.counters["predicted_ratio_lat"] = predicted_with_latency;
    state.counters["error_lat_pct"] = (measured / predicted_with_latency - 1) * 100;
}
BENCHMARK(BM_busy_paci_vs_flush)->ArgName("a")->Arg(2)->Arg(4)->Arg(8)->Iterations(8)->UseManualTime()->Unit(benchmark::kMillisecond);

/// Peak resident set of this process so far, in MiB (Linux: ru_maxrss is in KiB).
double peak_rss_mib() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;
}

/// Memory does not grow with the length of training: PACI at P = 8 (a = 8), no-op stages, recording
/// off, as a training loop (`run(8)` per update) over `micro-batches` micro-batches, then one drain.
/// Counters: the process's peak RSS after the run, and its growth over the same run of 10,000
/// micro-batches done first (a streaming executor's peak must not depend on the count).
void BM_streaming_memory(benchmark::State& state) {
    const std::int64_t total = state.range(0);
    constexpr int P = 8, a = 8;
    const auto train = [&](std::int64_t n) {
        std::vector<noop_stage> stages(P);
        std::vector<noop_stage*> ptrs;
        for (auto& s : stages) ptrs.push_back(&s);
        paci::executor_options opts;
        opts.record = false;
        paci::inprocess_pipeline pipe(paci::paci_policy<>{.stages = P, .microbatches = a}, ptrs, opts);
        for (std::int64_t m = 0; m < n; m += a) pipe.run(a);
        pipe.drain();
    };
    train(10'000);
    const double after_small = peak_rss_mib();
    for (auto _ : state) {
        const auto t0 = clock_type::now();
        train(total);
        state.SetIterationTime(seconds(clock_type::now() - t0));
    }
    state.counters["peak_rss_mib"] = peak_rss_mib();
    state.counters["rss_growth_mib"] = peak_rss_mib() - after_small;
    state.counters["microbatches"] = static_cast<double>(total);
    state.SetItemsProcessed(state.iterations() * total * 2 * P);
}
BENCHMARK(BM_streaming_memory)->ArgName("microbatches")->Arg(1'000'000)->Iterations(1)->UseManualTime()->Unit(benchmark::kSecond);

} // namespace

BENCHMARK_MAIN();
