// train: real training in one process, one thread per stage (the in-process default).
//
// A 4-stage multi-layer perceptron on synthetic data is trained with 1F1B-flush and with PACI at
// the same accumulation (8 micro-batches per update). The demo checks and prints, for each:
//   - that the loss goes down;
//   - 1F1B-flush: the parameters equal the same training without a pipeline, bit for bit;
//   - PACI: the weight versions each action read, as recorded during the run, equal the replay of
//     the policy's schedule, and the drift stays within ceil((P - 1 - s) / a), reaching it;
//   - the recorded trace is a valid schedule.
// The model is the one paci's own tests use (tests/support/mlp.hpp).

#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/runtime/pipeline.hpp>

#include "../../tests/support/mlp.hpp"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

namespace {

constexpr int stages = 4;
constexpr int accumulation = 8;
constexpr int updates = 120;
constexpr int microbatches = accumulation * updates;

paci_test::mlp_config config() {
    paci_test::mlp_config cfg;
    cfg.widths = {8, 32, 32, 32, 2};
    cfg.samples = 8;
    cfg.accumulation = accumulation;
    cfg.learning_rate = 0.5;
    return cfg;
}

double mean_loss(const paci_test::mlp_stage& last, int from, int count) {
    double sum = 0;
    for (int m = from; m < from + count; ++m) sum += last.losses().at(m);
    return sum / count;
}

struct outcome {
    bool ok = true;
    void require(bool condition, const std::string& what) {
        std::cout << "    " << (condition ? "ok   " : "FAIL ") << what << "\n";
        ok = ok && condition;
    }
};

template <class Policy>
void train(const Policy& policy, const char* title, outcome& result) {
    const paci_test::mlp_config cfg = config();
    std::vector<paci_test::mlp_stage> model = paci_test::make_stages(cfg);
    paci::inprocess_pipeline<Policy, paci_test::mlp_stage> pipeline(policy, paci_test::pointers(model));
    // The training loop: one run() per update; the pipeline drains only at the end. The executor gives
    // the last stage the policy's loss scale (1/a), so each update applies a mean gradient.
    const auto t0 = std::chrono::steady_clock::now();
    for (int u = 0; u < updates; ++u) pipeline.run(accumulation);
    pipeline.drain();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    std::cout << title << "\n  " << policy << ", " << microbatches << " micro-batches in " << seconds << " s\n";
    std::cout << "    loss by update:";
    for (int u = 0; u < updates; u += 15) std::printf(" %.4f", mean_loss(model.back(), u * accumulation, accumulation));
    std::printf(" ... %.4f\n", mean_loss(model.back(), (updates - 1) * accumulation, accumulation));
    result.require(mean_loss(model.back(), microbatches - 4 * accumulation, 4 * accumulation) <
                       0.5 * mean_loss(model.back(), 0, 4 * accumulation),
                   "the loss of the last 4 updates is below half that of the first 4");

    const paci::run_trace trace = pipeline.trace();
    const paci::schedule ran = trace.to_schedule();
    result.require(paci::validate(ran).valid(), "the recorded run is a valid schedule");

    Policy window = policy;
    window.steps = updates;
    const paci::replay_result predicted = paci::replay(window.generate(), policy.controller());
    std::size_t checked = 0, equal = 0;
    for (const auto& events : trace.ranks)
        for (const auto& e : events) {
            if (e.act.kind != paci::op::F && e.act.kind != paci::op::B) continue;
            const auto& rec = predicted.at(e.act.stage, e.act.microbatch);
            ++checked;
            equal += e.version == (e.act.kind == paci::op::F ? rec.forward : rec.backward) ? 1U : 0U;
        }
    result.require(checked == equal && checked == 2U * stages * microbatches,
                   "recorded weight versions equal the replay's prediction for all " + std::to_string(checked) +
                       " forwards and backwards");
    const paci::replay_result recorded = paci::replay(ran, policy.controller());
    std::string drift = "recorded max drift per stage (bound):";
    bool within = true, attained = true;
    for (int s = 0; s < stages; ++s) {
        const int observed = recorded.per_stage[static_cast<std::size_t>(s)].max_drift;
        const int bound = policy.drift_bound(s);
        drift += " " + std::to_string(observed) + " (" + std::to_string(bound) + ")";
        within = within && observed <= bound;
        attained = attained && observed == bound;
    }
    result.require(within && attained, drift);

    if constexpr (std::is_same_v<Policy, paci::one_f_one_b<>>) {
        paci_test::mlp_reference reference(cfg);
        static_cast<void>(reference.train(0, microbatches));
        result.require(paci_test::bitwise_equal(paci_test::parameters(model), reference.parameters()),
                       "parameters equal the same training without a pipeline, bit for bit");
    }
    std::cout << "\n";
}

} // namespace

int main() {
    std::cout << "Training a " << stages << "-stage MLP in one process (one thread per stage), " << updates
              << " updates of " << accumulation << " micro-batches each.\n\n";
    outcome result;
    train(paci::one_f_one_b<>{.stages = stages, .microbatches = accumulation}, "1F1B-flush (synchronous)", result);
    train(paci::paci_policy<>{.stages = stages, .microbatches = accumulation}, "PACI a=8 (bubble-free, bounded drift)",
          result);
    std::cout << (result.ok ? "every check passed\n" : "SOME CHECK FAILED\n");
    return result.ok ? 0 : 1;
}
