#pragma once
/// \file
/// Test support: pipelined-versus-unpipelined equivalence. A synchronous policy run through
/// `paci::inprocess_pipeline` on the MLP of tests/support/mlp.hpp must end with the parameters, and
/// see the losses, of the same model trained without a pipeline (`mlp_reference`), bit for bit, when
/// every stage accumulates its gradients in micro-batch order (the FIFO premise, itself checked on
/// the recorded trace).

#include <paci/runtime/pipeline.hpp>

#include "support/catch.hpp"
#include "support/mlp.hpp"

#include <cstddef>
#include <map>
#include <vector>

namespace paci_test {

/// Micro-batches whose backward (B, or W when split) ran at each stage, in the order they ran.
[[nodiscard]] inline std::map<int, std::vector<int>> gradient_order(const paci::run_trace& t) {
    std::map<int, std::vector<int>> out;
    for (const auto& rank : t.ranks)
        for (const auto& e : rank)
            if (e.act.kind == paci::op::B || e.act.kind == paci::op::W) out[e.act.stage].push_back(e.act.microbatch);
    return out;
}

/// What each stage must have run besides one forward and one backward per micro-batch.
struct expected_counts {
    int recomputes_per_stage = 0; ///< R per stage except the last
    int recomputes_last = 0;      ///< R at the last stage
};

/// Trains `n` micro-batches through the pipeline on `stages` (one `mlp_stage`, or a type derived
/// from it, per layer of `cfg`, freshly built) and through the reference; parameters must match bit
/// for bit, and each stage must have run exactly the work the policy describes. Returns the trace.
template <class Policy, class Stage>
paci::run_trace check_against_reference(const Policy& policy, int n, const mlp_config& cfg, std::vector<Stage>& stages,
                                        expected_counts expect = {}) {
    const int P = policy.shape().stages;
    const int a = policy.microbatches;
    INFO(policy);
    REQUIRE(stages.size() == static_cast<std::size_t>(P));
    std::vector<std::vector<double>> initial;
    for (const auto& s : stages) initial.push_back(s.parameters());
    std::vector<Stage*> ptrs;
    for (auto& s : stages) ptrs.push_back(&s);
    paci::inprocess_pipeline<Policy, Stage> pipeline(policy, ptrs);
    pipeline.run(n);
    pipeline.drain();
    paci::run_trace trace = pipeline.trace();

    mlp_reference ref(cfg);
    const std::vector<double> ref_losses = ref.train(0, n);

    // The premise of bitwise equality: per stage, gradients are accumulated in micro-batch order.
    const auto order = gradient_order(trace);
    REQUIRE(order.size() == static_cast<std::size_t>(P));
    for (const auto& [s, mbs] : order) {
        INFO("stage " << s);
        REQUIRE(mbs.size() == static_cast<std::size_t>(n));
        for (int m = 0; m < n; ++m) CHECK(mbs[static_cast<std::size_t>(m)] == m);
    }

    for (int s = 0; s < P; ++s) {
        const Stage& st = stages[static_cast<std::size_t>(s)];
        INFO("stage " << s);
        CHECK(st.forwards() == n);
        CHECK(st.backwards() == n);
        CHECK(st.steps() == n / a);
        CHECK(st.stored() == 0);
        CHECK(st.recomputes() == (s == P - 1 ? expect.recomputes_last : expect.recomputes_per_stage));
        CHECK(st.gradients_zero());
    }

    std::vector<std::vector<double>> got;
    for (const auto& s : stages) got.push_back(s.parameters());
    INFO("max relative difference " << max_relative_difference(got, ref.parameters()));
    REQUIRE_FALSE(bitwise_equal(got, initial)); // training moved the parameters
    CHECK(bitwise_equal(got, ref.parameters()));
    CHECK(max_relative_difference(got, ref.parameters()) <= 1e-6);

    // The last stage saw the reference's loss for every micro-batch.
    const auto& losses = stages.back().losses();
    REQUIRE(losses.size() == static_cast<std::size_t>(n));
    std::vector<double> pipe_losses;
    for (const auto& [m, l] : losses) pipe_losses.push_back(l);
    CHECK(bitwise_equal(pipe_losses, ref_losses));
    return trace;
}

/// `check_against_reference` on plain `mlp_stage`s for `policy`'s stages and micro-batches per update.
template <class Policy>
paci::run_trace check_matches_reference(const Policy& policy, int n, activations mode = activations::keep,
                                        activations last_mode = activations::keep, expected_counts expect = {}) {
    const mlp_config cfg = mlp_config_for(policy.shape().stages, policy.microbatches);
    auto stages = make_stages(cfg, mode, last_mode);
    return check_against_reference(policy, n, cfg, stages, expect);
}

} // namespace paci_test
