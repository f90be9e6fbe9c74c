// Unit tests for include/paci/policy/zb_v.hpp: ZB-V as a value, its errors, schedules written out by
// hand from the header's phases, validity and deadlock freedom (generated and lowered) over a grid,
// the memory closed forms, the published zero bubble (Qi et al.: with equal F, I and W every rank is
// busy from its first forward to its end, so an update takes (R - 1) + 6 M unit steps), PyTorch
// 2.11's ZBVZeroBubble (tests/io/fixtures/ZBVZeroBubble_p4_v2_m8.compute.csv), and training through
// the in-process runtime, bit for bit as a sequential run.

#include <paci/analysis/memory.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/core/error.hpp>
#include <paci/core/lower.hpp>
#include <paci/io/csv.hpp>
#include <paci/policy/zb_v.hpp>
#include <paci/runtime/pipeline.hpp>
#include <paci/sim/simulate.hpp>
#include <paci/version/flush.hpp>

#include "support/catch.hpp"
#include "support/policy_checks.hpp"
#include "support/print.hpp"
#include "support/program_text.hpp"
#include "support/synchronous.hpp"

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <string_view>
#include <vector>

namespace {

using paci_test::check_trains_like_the_reference;
using paci_test::print;
using paci_test::program;
using paci_test::pytorch_fixture;
using ZBV = paci::zb_v;

/// F = I = W = 1 (B = 2 is never used: ZB-V splits every backward).
paci::cost_model unit_costs() {
    paci::cost_model c;
    c.uniform.f = 1;
    c.uniform.i = 1;
    c.uniform.w = 1;
    c.uniform.b = 2;
    return c;
}

/// The header's memory closed forms: rank `r` holds at most min(M, 2R - 1 - r) + min(M, r + 1)
/// chunk-activations, stage `s` at most min(M, 2R - s).
int rank_peak(int R, int M, int r) { return std::min(M, 2 * R - 1 - r) + std::min(M, r + 1); }
int stage_peak(int R, int M, int s) { return std::min(M, 2 * R - s); }

/// Each rank's forwards and input gradients, in program order.
std::vector<std::vector<paci::action>> forwards_and_inputs(const paci::schedule& s) {
    std::vector<std::vector<paci::action>> out;
    for (const auto& prog : s.ranks) {
        auto& o = out.emplace_back();
        for (const auto& a : prog)
            if (a.kind == paci::op::F || a.kind == paci::op::I) o.push_back(a);
    }
    return out;
}

} // namespace

TEST_CASE("zb_v: a regular, printable policy value", "[unit][policy][zb_v]") {
    STATIC_REQUIRE(paci::schedule_policy<ZBV>);
    STATIC_REQUIRE(ZBV::name == "zb_v");
    STATIC_REQUIRE(ZBV::splits_backward);
    STATIC_REQUIRE_FALSE(ZBV::recomputes);
    const ZBV def{};
    CHECK(def.ranks == 1);
    CHECK(def.microbatches == 1);
    CHECK(def.steps == 1);

    CHECK(print(ZBV{.ranks = 4, .microbatches = 8, .steps = 2}) == "zb_v{.ranks = 4, .microbatches = 8, .steps = 2}");

    const ZBV p{.ranks = 4, .microbatches = 8, .steps = 3};
    CHECK(p == ZBV{.ranks = 4, .microbatches = 8, .steps = 3});
    CHECK_FALSE(p == ZBV{.ranks = 2, .microbatches = 8, .steps = 3});
    CHECK_FALSE(p == ZBV{.ranks = 4, .microbatches = 9, .steps = 3});
    CHECK_FALSE(p == ZBV{.ranks = 4, .microbatches = 8, .steps = 2});
}

TEST_CASE("zb_v: V-mapped shape, flush controller, synchronous bounds", "[unit][policy][zb_v]") {
    const ZBV p{.ranks = 4, .microbatches = 8, .steps = 1};
    CHECK(p.shape() == paci::pipeline_shape{8, 4, paci::stage_map::v});
    for (int r = 0; r < 4; ++r) CHECK(p.shape().stages_of(r) == std::vector<int>{r, 7 - r});
    CHECK(p.controller() == paci::flush{8});
    CHECK(p.loss_scale() == 1.0 / 8);
    CHECK(p.run_granularity() == 8);
    paci_test::check_synchronous_bounds(p, 8);
}

TEST_CASE("zb_v: configuration errors", "[unit][policy][zb_v][errors]") {
    REQUIRE_THROWS_AS((ZBV{.ranks = 0}.validate()), paci::config_error);
    REQUIRE_THROWS_WITH((ZBV{.ranks = 0}.validate()), "paci::zb_v: ranks (0) must be >= 1");
    REQUIRE_THROWS_WITH((ZBV{.ranks = -3}.generate()), "paci::zb_v: ranks (-3) must be >= 1");
    REQUIRE_THROWS_WITH((ZBV{.ranks = 16384}.validate()), "paci::zb_v: ranks (16384) must be <= 16383 (two stages per rank)");
    REQUIRE_THROWS_WITH((ZBV{.ranks = 16384}.shape()), "paci::zb_v: ranks (16384) must be in [1, 16383]");
    REQUIRE_THROWS_WITH((ZBV{.ranks = 2, .microbatches = 0}.validate()), "paci::zb_v: microbatches (0) must be >= 1");
    REQUIRE_THROWS_WITH((ZBV{.ranks = 2, .microbatches = 4, .steps = 0}.generate()),
                        "paci::zb_v: steps (0) must be >= 1");
    REQUIRE_THROWS_WITH((ZBV{.ranks = 2, .microbatches = 4}.program(2)), "paci::zb_v: rank (2) must be in [0, 2)");
    REQUIRE_THROWS_WITH((ZBV{.ranks = 2, .microbatches = 4}.program(-1)), "paci::zb_v: rank (-1) must be in [0, 2)");
    // 16383 ranks is the largest V shape: 32766 stages.
    CHECK(ZBV{.ranks = 16383}.shape() == paci::pipeline_shape{32766, 16383, paci::stage_map::v});
}

TEST_CASE("zb_v: 2 ranks, 4 micro-batches, by hand", "[unit][policy][zb_v]") {
    const paci::schedule s = ZBV{.ranks = 2, .microbatches = 4, .steps = 1}.generate();
    CHECK(s.shape == paci::pipeline_shape{4, 2, paci::stage_map::v});
    CHECK(s.microbatches == 4);
    CHECK(s.steps == 1);
    CHECK(s.policy == "zb_v{.ranks = 2, .microbatches = 4, .steps = 1}");
    REQUIRE(s.ranks.size() == 2);
    // Rank 0 (stages 0, 3): 3 F0, F1; one IW1 F1 while chunk 0's gradient travels; then IW1 F0 IW0 F1
    // until done; nothing held back (2 r = 0).
    CHECK(s.ranks[0] == program("0F0 0F1 0F2 3F0 3I0 3W0 3F1 "
                                "3I1 3W1 0F3 0I0 0W0 3F2 "
                                "3I2 3W2 0I1 0W1 3F3 "
                                "3I3 3W3 3STEP0 0I2 0W2 "
                                "0I3 0W3 0STEP0"));
    // Rank 1 (stages 1, 2): 1 F0, F1, one F0 F1; then IW1 F0 IW0 F1; after the last forward (2F3)
    // each W runs 2 r = 2 Is after its own, the last two at the end.
    CHECK(s.ranks[1] == program("1F0 2F0 1F1 2F1 "
                                "2I0 2W0 1F2 1I0 1W0 2F2 "
                                "2I1 2W1 1F3 1I1 1W1 2F3 "
                                "2I2 1I2 "
                                "2I3 2W2 1I3 1W2 "
                                "2W3 2STEP0 1W3 1STEP0"));
    CHECK(paci::validate(s).valid());
}

TEST_CASE("zb_v: one rank runs both stages back to back", "[unit][policy][zb_v]") {
    const paci::schedule s = ZBV{.ranks = 1, .microbatches = 2, .steps = 2}.generate();
    CHECK(s.shape == paci::pipeline_shape{2, 1, paci::stage_map::v});
    CHECK(s.ranks[0] == program("0F0 1F0 1I0 1W0 0F1 0I0 0W0 1F1 1I1 1W1 1STEP0 0I1 0W1 0STEP0 "
                                "0F2 1F2 1I2 1W2 0F3 0I2 0W2 1F3 1I3 1W3 1STEP1 0I3 0W3 0STEP1"));
    CHECK(paci::validate(s).valid());
}

TEST_CASE("zb_v: valid, deadlock-free when lowered, memory in closed form, over a grid",
          "[unit][policy][zb_v][property]") {
    const int R = GENERATE(range(1, 9));
    const int M = GENERATE_COPY(1, 2, R, 2 * R - 1, 2 * R, 2 * R + 3, 3 * R + 1);
    const int N = GENERATE(1, 2);
    const ZBV policy{.ranks = R, .microbatches = M, .steps = N};
    CAPTURE(policy);
    const paci::schedule s = policy.generate();
    REQUIRE(s.ranks.size() == static_cast<std::size_t>(R));
    CHECK(s.microbatches == M * N);
    CHECK(s.steps == N);
    for (int r = 0; r < R; ++r) {
        CAPTURE(r);
        const auto& prog = s.ranks[static_cast<std::size_t>(r)];
        // Per update: F, I and W for two stages and M micro-batches, and two STEPs.
        CHECK(prog.size() == static_cast<std::size_t>(N * (6 * M + 2)));
        CHECK(paci_test::count(prog, paci::op::B) == 0);
        CHECK(paci_test::count(prog, paci::op::STEP) == static_cast<std::size_t>(2 * N));
        for (const auto& a : prog) {
            CHECK(s.shape.rank_of(a.stage) == r);
            CHECK_FALSE(a.overlap_next);
        }
        // Per stage: forwards, input gradients and weight gradients each in micro-batch order (a
        // sequential run's gradient summation order); each STEP comes right after the last W of its update.
        paci_test::check_stage_order(prog, {r, 2 * R - 1 - r}, M, N, {paci::op::I}, {paci::op::W});
    }
    // Each lowering under the sends it is made for: eager for buffered sends (its SEND right after
    // the compute may block a rendezvous transport, as 1F1B's does), rendezvous_safe for both.
    const paci_test::lowered_pair lowered = paci_test::check_valid_and_safe_lowering(s);
    CHECK(paci::validate(lowered.eager).structure_ok());
    CHECK(paci::find_deadlock(lowered.eager, paci::send_semantics::buffered).deadlock_free);

    const auto mem = paci::memory_of(paci::replay(s, policy.controller()));
    REQUIRE(mem.rank_peak_stored.size() == static_cast<std::size_t>(R));
    for (int r = 0; r < R; ++r) {
        CAPTURE(r);
        CHECK(mem.rank_peak_stored[static_cast<std::size_t>(r)] == rank_peak(R, M, r));
        // 1F1B's peak: 2R chunk-activations (R full stages) once M >= 2R - 1.
        if (M >= 2 * R - 1) CHECK(mem.rank_peak_stored[static_cast<std::size_t>(r)] == 2 * R);
    }
    REQUIRE(mem.peak_stored.size() == static_cast<std::size_t>(2 * R));
    for (int st = 0; st < 2 * R; ++st) {
        CAPTURE(st);
        CHECK(mem.peak_stored[static_cast<std::size_t>(st)] == stage_peak(R, M, st));
    }
}

TEST_CASE("zb_v: the published zero bubble with equal F, I and W", "[unit][policy][zb_v][property]") {
    // Qi et al. (Zero Bubble Pipeline Parallelism, ZB-V; the sail-sg/zero-bubble-pipeline-parallelism
    // README: "ZBV: bubble rate 0, assuming T_F = T_B = T_W"): every rank is busy from its first
    // forward, at r F, to its end, so one update takes (R - 1) F + 2 M (F + I + W) = 6 M + R - 1 with
    // unit costs; N flushed updates follow each other with no gap, 6 M N + R - 1.
    const int R = GENERATE(range(1, 9));
    const int M = GENERATE_COPY(2 * R - 1, 2 * R, 2 * R + 1, 2 * R + 5, 3 * R + 2, 5 * R);
    const int N = GENERATE(1, 2);
    const ZBV policy{.ranks = R, .microbatches = M, .steps = N};
    CAPTURE(policy);
    const paci::schedule s = policy.generate();
    const paci::simulation sim = paci::simulate(s, unit_costs());
    REQUIRE(sim.completed);
    CHECK(sim.makespan == 6.0 * M * N + R - 1);
    for (int r = 0; r < R; ++r) {
        CAPTURE(r);
        const auto& times = sim.times[static_cast<std::size_t>(r)];
        REQUIRE_FALSE(times.empty());
        CHECK(times.front().start == r);
        CHECK(times.back().end == r + 6.0 * M * N);
        CHECK(sim.busy[static_cast<std::size_t>(r)] == 6.0 * M * N); // no idle time in between
    }
    // The same through the eager lowering, whose SEND/RECV move the data (buffered sends, free
    // transfers). (rendezvous_safe places each SEND where one sequential execution finds its receiver
    // ready, which is deadlock-free under blocking sends but not this timing.)
    CHECK(paci::simulate(paci::lower(s, paci::lowering::eager), unit_costs()).makespan == 6.0 * M * N + R - 1);
}

TEST_CASE("zb_v: fewer micro-batches than 2 R - 1 are valid, with a bubble", "[unit][policy][zb_v]") {
    // The closed form is a lower bound for any schedule; below 2 R - 1 micro-batches ZB-V cannot
    // reach it (rank 0's 2 R - 1 warm-up forwards do not exist), but it still runs.
    const paci::schedule s = ZBV{.ranks = 4, .microbatches = 3, .steps = 1}.generate();
    REQUIRE(paci::validate(s).valid());
    CHECK(paci::simulate(s, unit_costs()).makespan > 6.0 * 3 + 3);
}

TEST_CASE("zb_v: PyTorch 2.11's ZBVZeroBubble, 4 ranks, 8 micro-batches", "[policy][zb_v][pytorch]") {
    const paci::imported_schedule torch = pytorch_fixture("ZBVZeroBubble_p4_v2_m8.compute.csv");
    const ZBV policy{.ranks = 4, .microbatches = 8, .steps = 1};
    const paci::schedule ours = policy.generate();
    REQUIRE(torch.sched.shape == ours.shape);
    REQUIRE(torch.sched.microbatches == ours.microbatches);

    SECTION("the same forwards and input gradients in the same order (the Ws may sit elsewhere)") {
        CHECK(forwards_and_inputs(ours) == forwards_and_inputs(torch.sched));
    }
    SECTION("at least as good under paci's simulator: makespan and peak stored micro-batches") {
        const paci::cost_model costs{}; // F = 1, B = 2, I = W = 1
        const double theirs = paci::simulate(torch.sched, costs).makespan;
        const double mine = paci::simulate(ours, costs).makespan;
        CHECK(theirs == 6 * 8 + 4 - 1); // PyTorch's ZB-V reaches the published zero bubble too
        CHECK(mine <= theirs);
        const auto m_theirs = paci::memory_of(paci::replay(torch.sched));
        const auto m_mine = paci::memory_of(paci::replay(ours, policy.controller()));
        paci_test::check_peaks_at_most(m_mine, m_theirs, 4, 2 * 4); // PyTorch's ZB-V holds 1F1B's peak too
        CHECK(*std::max_element(m_mine.rank_peak_stored.begin(), m_mine.rank_peak_stored.end()) <=
              *std::max_element(m_theirs.rank_peak_stored.begin(), m_theirs.rank_peak_stored.end()));
    }
}

TEST_CASE("zb_v: the runtime trains the model exactly as a sequential run does",
          "[unit][policy][zb_v][runtime]") {
    check_trains_like_the_reference(ZBV{.ranks = 2, .microbatches = 4, .steps = 1}, 2);
    check_trains_like_the_reference(ZBV{.ranks = 3, .microbatches = 5, .steps = 1}, 2);
    check_trains_like_the_reference(ZBV{.ranks = 1, .microbatches = 3, .steps = 1}, 1);
}
