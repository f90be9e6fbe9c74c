// inprocess_pipeline runs every built-in policy the executor supports; what it records is a valid
// schedule with exactly the policy's compute actions per rank, and the versions it recorded are
// the ones the replay of the policy's schedule predicts.

#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/policy/dualpipe_v.hpp>
#include <paci/policy/gpipe.hpp>
#include <paci/policy/interleaved.hpp>
#include <paci/policy/interleaved_zero_bubble.hpp>
#include <paci/policy/looped_bfs.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/zb_v.hpp>
#include <paci/policy/zero_bubble.hpp>
#include <paci/runtime/pipeline.hpp>

#include "support/catch.hpp"

#include <string>
#include <vector>

namespace {

// Passes a counter through the pipeline: each forward adds one, each backward one more, so the
// buffers that reach each stage show that data moved along the right edges.
struct relay_stage {
    using buffer_type = std::vector<int>;
    int stage = 0;
    int last = 0;
    int forwards = 0, backwards = 0, weights = 0, recomputes = 0, steps = 0;
    std::vector<std::string> problems;

    buffer_type forward(int m, buffer_type in) {
        ++forwards;
        if (stage == 0) in = {m, 0};
        if (in.size() != 2 || in[0] != m || in[1] != stage)
            problems.push_back("stage " + std::to_string(stage) + " forward of " + std::to_string(m) + " got bad input");
        in[1] = stage + 1;
        return in;
    }
    buffer_type backward(int m, buffer_type g) {
        ++backwards;
        if (stage == last) g = {m, 0};
        if (g.size() != 2 || g[0] != m || g[1] != last - stage)
            problems.push_back("stage " + std::to_string(stage) + " backward of " + std::to_string(m) + " got bad gradient");
        g[1] = last - stage + 1;
        return g;
    }
    buffer_type backward_input(int m, buffer_type g) {
        --backwards; // counted by backward_weight, which completes the split backward
        return backward(m, std::move(g));
    }
    void backward_weight(int) { ++weights, ++backwards; }
    void recompute(int) { ++recomputes; }
    void step() { ++steps; }
};

template <class Policy>
void check(const Policy& policy, int microbatches) {
    CAPTURE(paci::detail::print(policy));
    const int P = policy.shape().stages;
    std::vector<relay_stage> stages(static_cast<std::size_t>(P));
    std::vector<relay_stage*> ptrs;
    for (int s = 0; s < P; ++s) {
        stages[static_cast<std::size_t>(s)].stage = s;
        stages[static_cast<std::size_t>(s)].last = P - 1;
        ptrs.push_back(&stages[static_cast<std::size_t>(s)]);
    }
    paci::inprocess_pipeline<Policy, relay_stage> pipeline(policy, ptrs);
    pipeline.run(microbatches);
    pipeline.drain();

    for (const auto& st : stages) {
        CAPTURE(st.stage);
        REQUIRE(st.problems.empty());
        CHECK(st.forwards == microbatches);
        CHECK(st.backwards == microbatches);
        CHECK(st.steps == microbatches / policy.microbatches); // one update per M backwards
    }

    // The trace is the policy's window, program for program (compute and STEP actions).
    Policy window = policy;
    window.steps = microbatches / policy.microbatches;
    const paci::schedule expected = window.generate();
    const paci::schedule ran = pipeline.trace().to_schedule();
    REQUIRE(ran.ranks == expected.ranks);
    REQUIRE(paci::validate(ran).valid());

    // Recorded versions equal the replay's prediction for every action.
    const auto predicted = paci::replay(expected, policy.controller());
    for (const auto& events : pipeline.trace().ranks)
        for (const auto& e : events) {
            if (e.act.kind == paci::op::STEP) continue;
            const auto& rec = predicted.at(e.act.stage, e.act.microbatch);
            const paci::version_t want = e.act.kind == paci::op::F   ? rec.forward
                                         : e.act.kind == paci::op::R ? rec.recompute
                                         : e.act.kind == paci::op::W ? rec.weight
                                                                     : rec.backward;
            CAPTURE(e.act);
            REQUIRE(e.version == want);
            REQUIRE(e.end >= e.start);
        }
}

} // namespace

TEST_CASE("inprocess_pipeline: every supported policy runs, moves data on the right edges, and records its schedule",
          "[unit][runtime]") {
    using paci::backward_flavour;
    check(paci::gpipe<>{.stages = 3, .microbatches = 4}, 8);
    check(paci::gpipe<backward_flavour::recompute>{.stages = 3, .microbatches = 4}, 8);
    check(paci::one_f_one_b<>{.stages = 4, .microbatches = 4}, 12);
    check(paci::one_f_one_b<backward_flavour::recompute>{.stages = 4, .microbatches = 4}, 8);
    check(paci::interleaved_one_f_one_b{.ranks = 2, .chunks = 2, .microbatches = 4}, 8);
    check(paci::interleaved_one_f_one_b{.ranks = 1, .chunks = 3, .microbatches = 2}, 4);
    check(paci::zb_h1{.stages = 4, .microbatches = 4}, 8);
    check(paci::zb_h2{.stages = 3, .microbatches = 6}, 12);
    check(paci::paci_policy<>{.stages = 4, .microbatches = 2}, 16);
    check(paci::paci_policy<>{.stages = 5, .microbatches = 3, .cap = {3, 3, 2, 2, 1}}, 15);
    check(paci::paci_policy<backward_flavour::recompute>{.stages = 4, .microbatches = 1}, 9);
    for (const int R : {2, 4}) {
        check(paci::zb_v{.ranks = R, .microbatches = 2 * R}, 4 * R);
        check(paci::dualpipe_v{.ranks = R, .microbatches = 2 * R}, 4 * R);
        check(paci::looped_bfs{.ranks = R, .chunks = 2, .microbatches = 4}, 8);
        check(paci::interleaved_zero_bubble{.ranks = R, .chunks = 2, .microbatches = R}, 2 * R);
    }
}

TEST_CASE("inprocess_pipeline: PACI's recorded drift reaches and never exceeds ceil((P-1-s)/a)", "[unit][runtime]") {
    const int P = 4, a = 2;
    std::vector<relay_stage> stages(P);
    std::vector<relay_stage*> ptrs;
    for (int s = 0; s < P; ++s) {
        stages[static_cast<std::size_t>(s)].stage = s;
        stages[static_cast<std::size_t>(s)].last = P - 1;
        ptrs.push_back(&stages[static_cast<std::size_t>(s)]);
    }
    const paci::paci_policy<> policy{.stages = P, .microbatches = a};
    paci::inprocess_pipeline<paci::paci_policy<>, relay_stage> pipeline(policy, ptrs);
    pipeline.run(24);
    pipeline.drain();
    const auto recorded = paci::replay(pipeline.trace().to_schedule(), policy.controller());
    for (int s = 0; s < P; ++s) CHECK(recorded.per_stage[static_cast<std::size_t>(s)].max_drift == (P - 1 - s + a - 1) / a);
}
