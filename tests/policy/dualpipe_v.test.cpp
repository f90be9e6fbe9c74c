// Unit tests for include/paci/policy/dualpipe_v.hpp: DualPipeV as a value, its errors, schedules
// written out by hand from the header's eight phases, well-formed overlapped pairs, validity and
// deadlock freedom (generated and lowered) over a grid, the memory closed forms (every rank 2 R + 1
// chunk-activations, DualPipe's "PP + 1"; stage s 2 R - s), PyTorch 2.11's DualPipeV
// (tests/io/fixtures/DualPipeV_p4_v2_m8.compute.csv), and training through the in-process runtime,
// bit for bit as a sequential run.

#include <paci/analysis/memory.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/core/dataflow.hpp>
#include <paci/core/error.hpp>
#include <paci/core/lower.hpp>
#include <paci/io/csv.hpp>
#include <paci/policy/dualpipe_v.hpp>
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
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using paci_test::check_trains_like_the_reference;
using paci_test::compute_only;
using paci_test::print;
using paci_test::program;
using paci_test::pytorch_fixture;
using DPV = paci::dualpipe_v;

/// Checks every overlapped pair of `s`: a forward followed, on its rank, by a full backward of
/// another stage, neither member consuming what the other produces (nor the backward needing the
/// forward on its stage). Returns the number of pairs per rank.
std::vector<int> check_pairs(const paci::schedule& s) {
    const int P = s.shape.stages;
    std::vector<int> pairs;
    for (const auto& prog : s.ranks) {
        int n = 0;
        for (std::size_t p = 0; p < prog.size(); ++p) {
            const paci::action f = prog[p];
            if (!f.overlap_next) continue;
            ++n;
            CAPTURE(f);
            CHECK(f.kind == paci::op::F);
            REQUIRE(p + 1 < prog.size());
            const paci::action b = prog[p + 1];
            CAPTURE(b);
            CHECK(b.kind == paci::op::B);
            CHECK_FALSE(b.overlap_next);
            CHECK(b.stage != f.stage);
            CHECK(s.shape.rank_of(b.stage) == s.shape.rank_of(f.stage));
            const auto f_out = paci::produces(f, P);
            const auto b_out = paci::produces(b, P);
            const auto f_in = paci::consumes(f, P);
            const auto b_in = paci::consumes(b, P);
            if (f_out && b_in) CHECK(*f_out != *b_in);
            if (b_out && f_in) CHECK(*b_out != *f_in);
            CHECK(paci::local_prerequisite(b) != std::optional<paci::action>(f));
        }
        pairs.push_back(n);
    }
    return pairs;
}

} // namespace

TEST_CASE("dualpipe_v: a regular, printable policy value", "[unit][policy][dualpipe_v]") {
    STATIC_REQUIRE(paci::schedule_policy<DPV>);
    STATIC_REQUIRE(DPV::name == "dualpipe_v");
    STATIC_REQUIRE(DPV::splits_backward);
    STATIC_REQUIRE_FALSE(DPV::recomputes);
    const DPV def{};
    CHECK(def.ranks == 1);
    CHECK(def.microbatches == 2); // the least one rank (two stages) takes
    CHECK(def.steps == 1);
    CHECK_NOTHROW(def.validate());

    CHECK(print(DPV{.ranks = 4, .microbatches = 8, .steps = 2}) == "dualpipe_v{.ranks = 4, .microbatches = 8, .steps = 2}");

    const DPV p{.ranks = 4, .microbatches = 8, .steps = 3};
    CHECK(p == DPV{.ranks = 4, .microbatches = 8, .steps = 3});
    CHECK_FALSE(p == DPV{.ranks = 3, .microbatches = 8, .steps = 3});
    CHECK_FALSE(p == DPV{.ranks = 4, .microbatches = 9, .steps = 3});
    CHECK_FALSE(p == DPV{.ranks = 4, .microbatches = 8, .steps = 2});
}

TEST_CASE("dualpipe_v: V-mapped shape, flush controller, synchronous bounds", "[unit][policy][dualpipe_v]") {
    const DPV p{.ranks = 3, .microbatches = 7, .steps = 1};
    CHECK(p.shape() == paci::pipeline_shape{6, 3, paci::stage_map::v});
    for (int r = 0; r < 3; ++r) CHECK(p.shape().stages_of(r) == std::vector<int>{r, 5 - r});
    CHECK(p.controller() == paci::flush{7});
    CHECK(p.loss_scale() == 1.0 / 7);
    CHECK(p.run_granularity() == 7);
    paci_test::check_synchronous_bounds(p, 6);
}

TEST_CASE("dualpipe_v: configuration errors", "[unit][policy][dualpipe_v][errors]") {
    REQUIRE_THROWS_AS((DPV{.ranks = 0}.validate()), paci::config_error);
    REQUIRE_THROWS_WITH((DPV{.ranks = 0}.validate()), "paci::dualpipe_v: ranks (0) must be >= 1");
    REQUIRE_THROWS_WITH((DPV{.ranks = 16384, .microbatches = 32768}.validate()),
                        "paci::dualpipe_v: ranks (16384) must be <= 16383 (two stages per rank)");
    REQUIRE_THROWS_WITH((DPV{.ranks = 16384}.shape()), "paci::dualpipe_v: ranks (16384) must be in [1, 16383]");
    REQUIRE_THROWS_WITH((DPV{.ranks = 2, .microbatches = 0}.validate()), "paci::dualpipe_v: microbatches (0) must be >= 1");
    REQUIRE_THROWS_WITH((DPV{.ranks = 2, .microbatches = 4, .steps = 0}.generate()),
                        "paci::dualpipe_v: steps (0) must be >= 1");
    // Every rank needs one steady-phase round: at least as many micro-batches as stages.
    REQUIRE_THROWS_WITH((DPV{.ranks = 4, .microbatches = 7}.validate()),
                        "paci::dualpipe_v: microbatches (7) must be >= 2 * ranks (8, the number of stages)");
    REQUIRE_THROWS_WITH((DPV{.ranks = 1, .microbatches = 1}.generate()),
                        "paci::dualpipe_v: microbatches (1) must be >= 2 * ranks (2, the number of stages)");
    REQUIRE_THROWS_WITH((DPV{.ranks = 3, .microbatches = 5}.program(0)),
                        "paci::dualpipe_v: microbatches (5) must be >= 2 * ranks (6, the number of stages)");
    REQUIRE_THROWS_WITH((DPV{.ranks = 2, .microbatches = 4}.program(2)), "paci::dualpipe_v: rank (2) must be in [0, 2)");
    CHECK_NOTHROW(DPV{.ranks = 4, .microbatches = 8}.validate());
}

TEST_CASE("dualpipe_v: 2 ranks, 4 micro-batches, by hand", "[unit][policy][dualpipe_v]") {
    const paci::schedule s = DPV{.ranks = 2, .microbatches = 4, .steps = 1}.generate();
    CHECK(s.shape == paci::pipeline_shape{4, 2, paci::stage_map::v});
    CHECK(s.microbatches == 4);
    CHECK(s.steps == 1);
    CHECK(s.policy == "dualpipe_v{.ranks = 2, .microbatches = 4, .steps = 1}");
    REQUIRE(s.ranks.size() == 2);
    // Rank 0 (stages 0, 3): 2 F0; F0 F1; I1 W F1; one steady round (F0; B1) (F1; B0); B1 (F1; B0);
    // B1 and B0 with the later one split; W I0; the queued W.
    CHECK(s.ranks[0] == program("0F0 0F1 "
                                      "0F2 3F0 "
                                      "3I0 3W0 3F1 "
                                      "(0F3;3B1) (3F2;0B0) "
                                      "3B2 (3F3;0B1) "
                                      "3B3 3STEP0 0I2 "
                                      "0W2 0I3 "
                                      "0W3 0STEP0"));
    // Rank 1 (stages 1, 2), the last rank: F0 F1 twice; two steady rounds, the first F0 and B1 not
    // overlapped; B1 B0 twice, the later two split; the two queued Ws.
    CHECK(s.ranks[1] == program("1F0 2F0 1F1 2F1 "
                                      "1F2 2B0 (2F2;1B0) "
                                      "(1F3;2B1) (2F3;1B1) "
                                      "2B2 1B2 2I3 1I3 "
                                      "2W3 2STEP0 1W3 1STEP0"));
    CHECK(check_pairs(s) == std::vector<int>{3, 3});
    CHECK(paci::validate(s).valid());
}

TEST_CASE("dualpipe_v: one rank, two updates", "[unit][policy][dualpipe_v]") {
    const paci::schedule s = DPV{.ranks = 1, .microbatches = 2, .steps = 2}.generate();
    CHECK(s.shape == paci::pipeline_shape{2, 1, paci::stage_map::v});
    // F0 F1; one steady round (first F0 and B1 apart, the last rank's rule), then (F1; B0); B1 B0, B0
    // split; its W.
    CHECK(s.ranks[0] == program("0F0 1F0 0F1 1B0 (1F1;0B0) 1B1 1STEP0 0I1 0W1 0STEP0 "
                                      "0F2 1F2 0F3 1B2 (1F3;0B2) 1B3 1STEP1 0I3 0W3 0STEP1"));
    CHECK(paci::validate(s).valid());
}

TEST_CASE("dualpipe_v: valid, pairs well formed, deadlock-free when lowered, memory in closed form, over a grid",
          "[unit][policy][dualpipe_v][property]") {
    const int R = GENERATE(range(1, 9));
    const int M = GENERATE_COPY(2 * R, 2 * R + 1, 2 * R + 3, 3 * R + 1, 4 * R + 2);
    const int N = GENERATE(1, 2);
    const DPV policy{.ranks = R, .microbatches = M, .steps = N};
    CAPTURE(policy);
    const paci::schedule s = policy.generate();
    REQUIRE(s.ranks.size() == static_cast<std::size_t>(R));
    CHECK(s.microbatches == M * N);
    CHECK(s.steps == N);
    const std::vector<int> pairs = check_pairs(s);
    for (int r = 0; r < R; ++r) {
        CAPTURE(r);
        const auto& prog = s.ranks[static_cast<std::size_t>(r)];
        // Per update: 2 M forwards; 2 M backwards, 2 R - 1 - r of them split (phases 3, 6, 7); 2 STEPs.
        const int split = 2 * R - 1 - r;
        CHECK(prog.size() == static_cast<std::size_t>(N * (4 * M + split + 2)));
        CHECK(paci_test::count(prog, paci::op::I) == static_cast<std::size_t>(N * split));
        CHECK(paci_test::count(prog, paci::op::B) == static_cast<std::size_t>(N * (2 * M - split)));
        CHECK(paci_test::count(prog, paci::op::STEP) == static_cast<std::size_t>(2 * N));
        // Pairs: 2 per steady round (phase 4), one per phase-5 round, less the last rank's first.
        CHECK(pairs[static_cast<std::size_t>(r)] == N * (2 * (M - 2 * R + r + 1) + (R - 1 - r) - (r == R - 1 ? 1 : 0)));
        for (const auto& a : prog) CHECK(s.shape.rank_of(a.stage) == r);
        // Per stage: forwards, backwards (B or I) and weight-gradient work (B or W) each in
        // micro-batch order (a sequential run's gradient summation order); each STEP comes right
        // after the last weight-gradient work of its update.
        paci_test::check_stage_order(prog, {r, 2 * R - 1 - r}, M, N, {paci::op::B, paci::op::I}, {paci::op::B, paci::op::W});
    }
    // Each lowering under the sends it is made for: eager for buffered sends, rendezvous_safe for
    // both. Both keep every pair whole (its members' RECVs before it, their SENDs after it).
    const paci_test::lowered_pair lowered = paci_test::check_valid_and_safe_lowering(s);
    CHECK(paci::validate(lowered.eager).structure_ok());
    CHECK(paci::find_deadlock(lowered.eager, paci::send_semantics::buffered).deadlock_free);
    CHECK(check_pairs(lowered.eager) == pairs);
    CHECK(check_pairs(lowered.safe) == pairs);

    const auto mem = paci::memory_of(paci::replay(s, policy.controller()));
    REQUIRE(mem.rank_peak_stored.size() == static_cast<std::size_t>(R));
    for (int r = 0; r < R; ++r) {
        CAPTURE(r);
        CHECK(mem.rank_peak_stored[static_cast<std::size_t>(r)] == 2 * R + 1);
    }
    REQUIRE(mem.peak_stored.size() == static_cast<std::size_t>(2 * R));
    for (int st = 0; st < 2 * R; ++st) {
        CAPTURE(st);
        CHECK(mem.peak_stored[static_cast<std::size_t>(st)] == 2 * R - st);
    }
    // Runs to completion under paci's simulator (F = 1, B = 2, I = W = 1).
    CHECK(paci::simulate(s, paci::cost_model{}).completed);
}

TEST_CASE("dualpipe_v: PyTorch 2.11's DualPipeV, 4 ranks, 8 micro-batches", "[policy][dualpipe_v][pytorch]") {
    const std::optional<paci::imported_schedule> torch = pytorch_fixture("DualPipeV_p4_v2_m8.compute.csv");
    const DPV policy{.ranks = 4, .microbatches = 8, .steps = 1};
    const paci::schedule ours = policy.generate();
    REQUIRE(torch->sched.shape == ours.shape);
    REQUIRE(torch->sched.microbatches == ours.microbatches);

    SECTION("the same programs, overlapped pairs included") {
        CHECK(compute_only(ours) == compute_only(torch->sched));
        CHECK(check_pairs(torch->sched) == check_pairs(ours));
    }
    SECTION("at least as good under paci's simulator: makespan and peak stored micro-batches") {
        for (const double overlap : {0.0, 0.5, 1.0}) { // a pair takes max(F, B) + overlap x min(F, B)
            paci::cost_model costs{};                   // F = 1, B = 2, I = W = 1
            costs.overlap_penalty = overlap;
            CAPTURE(overlap);
            const double theirs = paci::simulate(torch->sched, costs).makespan;
            const double mine = paci::simulate(ours, costs).makespan;
            CHECK(mine <= theirs);
        }
        const auto m_theirs = paci::memory_of(paci::replay(torch->sched));
        const auto m_mine = paci::memory_of(paci::replay(ours, policy.controller()));
        paci_test::check_peaks_at_most(m_mine, m_theirs, 4, 2 * 4 + 1); // DualPipe's PP + 1 in PyTorch's output too
        CHECK(*std::max_element(m_mine.rank_peak_stored.begin(), m_mine.rank_peak_stored.end()) <=
              *std::max_element(m_theirs.rank_peak_stored.begin(), m_theirs.rank_peak_stored.end()));
    }
}

TEST_CASE("dualpipe_v: the runtime trains the model exactly as a sequential run does",
          "[unit][policy][dualpipe_v][runtime]") {
    // The test MLP has no forward_backward, so the executor runs each pair as its forward, then its
    // backward.
    check_trains_like_the_reference(DPV{.ranks = 2, .microbatches = 4, .steps = 1}, 2);
    check_trains_like_the_reference(DPV{.ranks = 3, .microbatches = 7, .steps = 1}, 2);
    check_trains_like_the_reference(DPV{.ranks = 1, .microbatches = 2, .steps = 1}, 1);
}
