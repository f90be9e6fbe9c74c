// Runtime numerics: a real MLP (tests/support/mlp.hpp) trained through paci::inprocess_pipeline.
// - Synchronous policies must give the parameters of the same model trained without a pipeline
//   (the sequential reference), bit for bit: every policy below runs each stage's backwards (the W
//   halves for zero-bubble) in FIFO micro-batch order, so each stage sums its gradients in the
//   reference's order, and a flush means no update falls between a forward and its backward.
//   The FIFO premise is itself checked on the recorded trace.
// - PACI: the versions recorded in the trace must be the ones paci::replay predicts from the policy's
//   own schedule for the same window, and the drift must stay within ceil((P - 1 - s) / a) (PACI.md,
//   "The bound"), attaining it; the model must still learn.
// - The recorded trace is a valid schedule and exports to a Chrome trace.

#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/io/chrome_trace.hpp>
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
#include "support/equivalence.hpp"
#include "support/mlp.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

using paci_test::activations;
using paci_test::mlp_config;
using paci_test::mlp_reference;
using paci_test::mlp_stage;

using paci_test::check_matches_reference;

TEST_CASE("mlp support: the backward matches central finite differences of the loss", "[unit][runtime]") {
    // Guards the test model itself: if its gradients were wrong, "the pipeline equals the reference"
    // would prove little and "the loss goes down" could fail for the wrong reason.
    const int a = GENERATE(1, 3);
    mlp_config cfg = paci_test::mlp_config_for(4, a);
    mlp_reference ref(cfg);
    const int m = 5;
    static_cast<void>(ref.train_one(m));
    const double h = 1e-6;
    for (std::size_t k = 0; k < ref.layers().size(); ++k) {
        auto& layer = ref.layers()[k];
        for (std::size_t i = 0; i < layer.w.size() + layer.b.size(); ++i) {
            double& p = i < layer.w.size() ? layer.w[i] : layer.b[i - layer.w.size()];
            const double g = i < layer.w.size() ? layer.gw[i] : layer.gb[i - layer.w.size()];
            const double saved = p;
            p = saved + h;
            const double up = ref.loss(m);
            p = saved - h;
            const double down = ref.loss(m);
            p = saved;
            const double numeric = (up - down) / (2 * h) / a; // the loss is divided by a
            INFO("layer " << k << " parameter " << i << " analytic " << g << " numeric " << numeric);
            CHECK(std::abs(g - numeric) <= 1e-7 + 1e-6 * std::abs(numeric));
        }
    }
}

TEST_CASE("mlp support: bitwise and relative comparisons", "[unit][runtime]") {
    using v = std::vector<std::vector<double>>;
    CHECK(paci_test::bitwise_equal(v{{1.0, 2.0}}, v{{1.0, 2.0}}));
    CHECK_FALSE(paci_test::bitwise_equal(v{{0.0}}, v{{-0.0}}));
    CHECK_FALSE(paci_test::bitwise_equal(v{{1.0}}, v{{1.0, 2.0}}));
    CHECK(paci_test::max_relative_difference(v{{2.0, 0.0}}, v{{2.0, 0.0}}) == 0.0);
    CHECK(std::abs(paci_test::max_relative_difference(v{{1.0}}, v{{1.0 + 1e-9}}) - 1e-9) < 1e-15);
    CHECK(std::isinf(paci_test::max_relative_difference(v{{1.0}}, v{{1.0}, {2.0}})));
}

TEST_CASE("1F1B-flush and GPipe on 2 and 4 stages equal the unsplit model trained sequentially", "[unit][runtime]") {
    const int P = GENERATE(2, 4);
    SECTION("1F1B-flush") {
        check_matches_reference(paci::one_f_one_b<>{.stages = P, .microbatches = 4, .steps = 1}, 16, activations::keep,
                                activations::keep, {});
    }
    SECTION("1F1B-flush, fewer micro-batches per update than stages") {
        check_matches_reference(paci::one_f_one_b<>{.stages = P, .microbatches = 2, .steps = 1}, 12, activations::keep,
                                activations::keep, {});
    }
    SECTION("GPipe") {
        check_matches_reference(paci::gpipe<>{.stages = P, .microbatches = 4, .steps = 1}, 16, activations::keep,
                                activations::keep, {});
    }
}

TEST_CASE("recompute flavours of 1F1B-flush and GPipe equal the sequential reference", "[unit][runtime]") {
    const int n = 12;
    SECTION("1F1B-flush: R before every backward except at the last stage") {
        // The last stage runs forward and backward back to back (PACI.md rule 4), so it keeps its
        // activations; its stage object throws if an R reaches it.
        check_matches_reference(paci::one_f_one_b<paci::backward_flavour::recompute>{.stages = 4, .microbatches = 3},
                                n, activations::recompute, activations::keep, {.recomputes_per_stage = n});
    }
    SECTION("GPipe: R before every backward, the last stage included") {
        check_matches_reference(paci::gpipe<paci::backward_flavour::recompute>{.stages = 4, .microbatches = 3}, n,
                                activations::recompute, activations::recompute,
                                {.recomputes_per_stage = n, .recomputes_last = n});
    }
}

TEST_CASE("ZB-H1, ZB-H2 (split backward) and interleaved 1F1B equal the sequential reference", "[unit][runtime]") {
    SECTION("ZB-H1, 4 stages") {
        check_matches_reference(paci::zb_h1{.stages = 4, .microbatches = 4}, 16, activations::keep, activations::keep, {});
    }
    SECTION("ZB-H1, 2 stages, 8 micro-batches per update") {
        check_matches_reference(paci::zb_h1{.stages = 2, .microbatches = 8}, 16, activations::keep, activations::keep, {});
    }
    SECTION("ZB-H2, 4 stages") {
        check_matches_reference(paci::zb_h2{.stages = 4, .microbatches = 8}, 16, activations::keep, activations::keep, {});
    }
    SECTION("interleaved 1F1B, 2 ranks x 2 chunks") {
        check_matches_reference(paci::interleaved_one_f_one_b{.ranks = 2, .chunks = 2, .microbatches = 4}, 16,
                                activations::keep, activations::keep, {});
    }
}

TEST_CASE("ZB-V, DualPipeV (V placement), looped BFS and interleaved zero-bubble equal the sequential reference",
          "[unit][runtime]") {
    // Two updates each; the V placements put stages R-1 and R on rank R-1 (a local hand-off in both
    // directions), DualPipeV runs overlapped pairs, ZB-V and interleaved zero-bubble split the backward.
    const int R = GENERATE(2, 4);
    CAPTURE(R);
    SECTION("ZB-V, 2R micro-batches per update") {
        check_matches_reference(paci::zb_v{.ranks = R, .microbatches = 2 * R}, 4 * R);
    }
    SECTION("ZB-V, fewer micro-batches per update than ranks") {
        check_matches_reference(paci::zb_v{.ranks = R, .microbatches = R - 1}, 2 * (R - 1));
    }
    SECTION("DualPipeV, 2R micro-batches per update") {
        check_matches_reference(paci::dualpipe_v{.ranks = R, .microbatches = 2 * R}, 4 * R);
    }
    SECTION("DualPipeV, 2R + 3 micro-batches per update") {
        check_matches_reference(paci::dualpipe_v{.ranks = R, .microbatches = 2 * R + 3}, 2 * (2 * R + 3));
    }
    SECTION("looped BFS, 2 chunks") {
        check_matches_reference(paci::looped_bfs{.ranks = R, .chunks = 2, .microbatches = 4}, 8);
    }
    SECTION("interleaved zero-bubble, 2 chunks") {
        check_matches_reference(paci::interleaved_zero_bubble{.ranks = R, .chunks = 2, .microbatches = 2 * R}, 4 * R);
    }
}

namespace {

/// Runs PACI over `n` micro-batches and checks the recorded versions against paci::replay of the
/// policy's own schedule for that window, and the drift against the closed-form bound.
template <class Policy>
void check_paci_versions(const Policy& policy, int n, activations mode, bool recomputes) {
    const int P = policy.stages;
    const int a = policy.microbatches;
    INFO(policy << ", " << n << " micro-batches");
    const mlp_config cfg = paci_test::mlp_config_for(P, a);
    auto stages = paci_test::make_stages(cfg, mode, activations::keep);
    paci::inprocess_pipeline pipeline(policy, paci_test::pointers(stages));
    pipeline.run(n);
    pipeline.drain();
    const paci::run_trace trace = pipeline.trace();

    Policy window = policy;
    window.steps = n / a;
    const paci::schedule planned = window.generate();
    const paci::replay_result pred = paci::replay(planned, policy.controller());

    // What ran is what the policy planned, action for action (compute and STEP, per rank).
    const paci::schedule ran = trace.to_schedule();
    REQUIRE(ran.ranks.size() == planned.ranks.size());
    for (std::size_t r = 0; r < ran.ranks.size(); ++r) {
        INFO("rank " << r);
        CHECK(ran.ranks[r] == planned.ranks[r]);
    }

    // Every recorded version equals the replay's prediction.
    paci::stage_grid<int> vf(P, n, -1), vb(P, n, -1);
    std::vector<int> steps_seen(static_cast<std::size_t>(P), 0);
    std::size_t mismatches = 0;
    for (const auto& rank : trace.ranks)
        for (const auto& e : rank) {
            const int s = e.act.stage, m = e.act.microbatch;
            switch (e.act.kind) {
            case paci::op::F:
                vf(s, m) = e.version;
                if (e.version != pred.at(s, m).forward) ++mismatches;
                break;
            case paci::op::B:
                vb(s, m) = e.version;
                if (e.version != pred.at(s, m).backward) ++mismatches;
                break;
            case paci::op::R:
                if (e.version != pred.at(s, m).recompute) ++mismatches;
                break;
            case paci::op::STEP:
                // A STEP's index is the update's ordinal and its version the one it produced.
                CHECK(e.act.microbatch == steps_seen[static_cast<std::size_t>(s)]);
                CHECK(e.version == ++steps_seen[static_cast<std::size_t>(s)]);
                break;
            default: FAIL("unexpected action " << e.act << " in the trace");
            }
        }
    CHECK(mismatches == 0);
    for (int s = 0; s < P; ++s) CHECK(steps_seen[static_cast<std::size_t>(s)] == n / a);

    // Drift per (stage, micro-batch): recorded equals predicted, within ceil((P - 1 - s) / a), and the
    // bound is attained (the window is long enough for every stage to reach its steady state).
    for (int s = 0; s < P; ++s) {
        const int bound = (P - 1 - s + a - 1) / a;
        int worst = 0;
        for (int m = 0; m < n; ++m) {
            INFO("stage " << s << " micro-batch " << m << ": v_F " << vf(s, m) << ", v_B " << vb(s, m));
            REQUIRE(vf(s, m) >= 0);
            REQUIRE(vb(s, m) >= 0);
            const int drift = vb(s, m) - vf(s, m);
            CHECK(drift == pred.at(s, m).drift());
            CHECK(drift >= 0);
            CHECK(drift <= bound);
            worst = std::max(worst, drift);
        }
        INFO("stage " << s);
        CHECK(worst == bound);
    }

    // The same versions come out of replaying the recorded schedule.
    const paci::replay_result from_trace = paci::replay(ran, policy.controller());
    CHECK(from_trace.records == pred.records);

    for (int s = 0; s < P; ++s) {
        const mlp_stage& st = stages[static_cast<std::size_t>(s)];
        CHECK(st.recomputes() == (recomputes && s < P - 1 ? n : 0));
        CHECK(st.steps() == n / a);
    }

    // Asynchronous: the backwards read newer weights than the reference's, so the result differs.
    mlp_reference ref(cfg);
    static_cast<void>(ref.train(0, n));
    CHECK_FALSE(paci_test::bitwise_equal(paci_test::parameters(stages), ref.parameters()));
}

} // namespace

TEST_CASE("PACI: recorded versions equal the replay of the policy's schedule; drift within ceil((P-1-s)/a)",
          "[unit][runtime]") {
    const int a = GENERATE(2, 4);
    SECTION("perf flavour") {
        check_paci_versions(paci::paci_policy<>{.stages = 4, .microbatches = a}, 32, activations::keep, false);
    }
    SECTION("recompute flavour") {
        check_paci_versions(paci::paci_policy<paci::backward_flavour::recompute>{.stages = 4, .microbatches = a}, 32,
                            activations::recompute, true);
    }
}

TEST_CASE("PACI training: the loss goes down", "[unit][runtime]") {
    const int a = GENERATE(2, 4);
    const int n = 128;
    mlp_config cfg = paci_test::mlp_config_for(4, a);
    cfg.learning_rate = 0.3;
    auto stages = paci_test::make_stages(cfg);
    paci::inprocess_pipeline pipeline(paci::paci_policy<>{.stages = 4, .microbatches = a}, paci_test::pointers(stages));
    pipeline.run(n);
    pipeline.drain();
    const auto& losses = stages.back().losses();
    REQUIRE(losses.size() == static_cast<std::size_t>(n));
    double first = 0, last = 0;
    for (int m = 0; m < 8; ++m) {
        first += losses.at(m) / 8;
        last += losses.at(n - 8 + m) / 8;
    }
    INFO("a = " << a << ": mean loss of the first 8 micro-batches " << first << ", of the last 8 " << last);
    CHECK(last < first);
    CHECK(last < 0.5 * first); // it learns, not just drifts down by noise
}

TEST_CASE("a recorded trace validates and exports to a Chrome trace", "[unit][runtime]") {
    const int P = 4;
    const auto check_trace = [](const paci::run_trace& trace) {
        const paci::schedule sched = trace.to_schedule();
        const paci::validation_report report = paci::validate(sched);
        INFO(report.first_error());
        CHECK(report.valid());
        const std::string json = paci::to_chrome_trace(sched, trace.times(), nullptr, {.time_scale = 1e6});
        REQUIRE_FALSE(json.empty());
        CHECK(json.front() == '{');
        const auto last = json.find_last_not_of(" \n\r\t");
        REQUIRE(last != std::string::npos);
        CHECK(json[last] == '}');
        CHECK(std::count(json.begin(), json.end(), '{') == std::count(json.begin(), json.end(), '}'));
        CHECK(std::count(json.begin(), json.end(), '[') == std::count(json.begin(), json.end(), ']'));
        CHECK_THAT(json, Catch::Matchers::ContainsSubstring("\"traceEvents\""));
        // One complete event per recorded action.
        std::size_t complete = 0;
        for (auto at = json.find("\"ph\":\"X\""); at != std::string::npos; at = json.find("\"ph\":\"X\"", at + 1)) ++complete;
        CHECK(complete == sched.size());
        CHECK_THAT(json, Catch::Matchers::ContainsSubstring("\"0F0\""));
        CHECK_THAT(json, Catch::Matchers::ContainsSubstring("\"3B7\""));
        // Times are seconds since a shared epoch: finite, ordered, per rank in program order.
        for (const auto& rank : trace.times()) {
            double prev_end = 0;
            for (const auto& [start, end] : rank) {
                CHECK(start <= end);
                CHECK(start >= prev_end);
                prev_end = end;
            }
        }
    };
    SECTION("PACI") {
        const mlp_config cfg = paci_test::mlp_config_for(P, 2);
        auto stages = paci_test::make_stages(cfg);
        paci::inprocess_pipeline pipeline(paci::paci_policy<>{.stages = P, .microbatches = 2}, paci_test::pointers(stages));
        pipeline.run(8);
        pipeline.drain();
        check_trace(pipeline.trace());
    }
    SECTION("1F1B-flush") {
        const mlp_config cfg = paci_test::mlp_config_for(P, 4);
        auto stages = paci_test::make_stages(cfg);
        paci::inprocess_pipeline pipeline(paci::one_f_one_b<>{.stages = P, .microbatches = 4}, paci_test::pointers(stages));
        pipeline.run(8);
        pipeline.drain();
        check_trace(pipeline.trace());
    }
}
