// Unit tests for include/paci/policy/interleaved_zero_bubble.hpp: interleaved zero-bubble as a value,
// its errors, schedules written out by hand from the header's rule (warmup(r) = chunks * ranks - r
// forwards in interleaved 1F1B's order, then I, W lagging r behind, F), one chunk being ZB-H1, ZB-H1's
// published bubble (Qi et al.) over a grid, and PyTorch 2.11's InterleavedZeroBubble
// (tests/io/fixtures/InterleavedZeroBubble_p4_v2_m8.compute.csv).

#include <paci/analysis/memory.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/core/error.hpp>
#include <paci/core/limits.hpp>
#include <paci/core/lower.hpp>
#include <paci/io/csv.hpp>
#include <paci/policy/interleaved_zero_bubble.hpp>
#include <paci/policy/zero_bubble.hpp>
#include <paci/sim/simulate.hpp>
#include <paci/version/flush.hpp>

#include "support/catch.hpp"
#include "support/print.hpp"
#include "support/policy_checks.hpp"
#include "support/program_text.hpp"
#include "support/synchronous.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>
#include <vector>

namespace {

using paci_test::compute_only;
using paci_test::print;
using paci_test::program;
using paci_test::pytorch_fixture;
using IZB = paci::interleaved_zero_bubble;

paci::cost_model costs(double f, double i, double w) {
    paci::cost_model c;
    c.uniform.f = f;
    c.uniform.i = i;
    c.uniform.w = w;
    return c;
}

} // namespace

TEST_CASE("interleaved_zero_bubble: a regular, printable policy value", "[unit][policy][interleaved_zero_bubble]") {
    STATIC_REQUIRE(paci::schedule_policy<IZB>);
    STATIC_REQUIRE(IZB::name == "interleaved_zero_bubble");
    STATIC_REQUIRE(IZB::splits_backward);
    STATIC_REQUIRE_FALSE(IZB::recomputes);
    const IZB def{};
    CHECK(def.ranks == 1);
    CHECK(def.chunks == 2);
    CHECK(def.microbatches == 1);
    CHECK(def.steps == 1);

    CHECK(print(IZB{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 1}) ==
          "interleaved_zero_bubble{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 1}");

    const IZB p{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 3};
    CHECK(p == IZB{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 3});
    CHECK_FALSE(p == IZB{.ranks = 2, .chunks = 2, .microbatches = 8, .steps = 3});
    CHECK_FALSE(p == IZB{.ranks = 4, .chunks = 3, .microbatches = 8, .steps = 3});
    CHECK_FALSE(p == IZB{.ranks = 4, .chunks = 2, .microbatches = 4, .steps = 3});
    CHECK_FALSE(p == IZB{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 2});
}

TEST_CASE("interleaved_zero_bubble: loop-mapped shape, flush controller, synchronous bounds",
          "[unit][policy][interleaved_zero_bubble]") {
    const IZB p{.ranks = 3, .chunks = 4, .microbatches = 6, .steps = 2};
    CHECK(p.shape() == paci::pipeline_shape{12, 3, paci::stage_map::loop});
    CHECK(p.controller() == paci::flush{6});
    CHECK(p.loss_scale() == 1.0 / 6);
    CHECK(p.run_granularity() == 6);
    paci_test::check_synchronous_bounds(p, 12);
}

TEST_CASE("interleaved_zero_bubble: warm-up and deferral, and PyTorch's warm-ups", "[unit][policy][interleaved_zero_bubble]") {
    const IZB p{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 1};
    const int warm[] = {8, 7, 6, 5}; // chunks * ranks - r
    for (int r = 0; r < 4; ++r) {
        CAPTURE(r);
        CHECK(p.warmup(r) == warm[r]);
        CHECK(p.defer(r) == r);
    }
    CHECK(IZB{.ranks = 2, .chunks = 3, .microbatches = 2, .steps = 1}.warmup(1) == 5);
    // PyTorch 2.11's InterleavedZeroBubble at this shape runs as many forwards before each rank's first I.
    const paci::imported_schedule torch = pytorch_fixture("InterleavedZeroBubble_p4_v2_m8.compute.csv");
    REQUIRE(torch.sched.ranks.size() == 4);
    for (int r = 0; r < 4; ++r) {
        CAPTURE(r);
        const auto& prog = torch.sched.ranks[static_cast<std::size_t>(r)];
        int leading = 0;
        while (prog[static_cast<std::size_t>(leading)].kind == paci::op::F) ++leading;
        CHECK(prog[static_cast<std::size_t>(leading)].kind == paci::op::I);
        CHECK(leading == p.warmup(r));
    }
}

TEST_CASE("interleaved_zero_bubble: configuration errors", "[unit][policy][interleaved_zero_bubble][errors]") {
    REQUIRE_THROWS_AS((IZB{.ranks = 0}.validate()), paci::config_error);
    REQUIRE_THROWS_WITH((IZB{.ranks = 0}.validate()), "paci::interleaved_zero_bubble: ranks (0) must be >= 1");
    REQUIRE_THROWS_WITH((IZB{.ranks = -1}.generate()), "paci::interleaved_zero_bubble: ranks (-1) must be >= 1");
    REQUIRE_THROWS_WITH((IZB{.ranks = 1, .chunks = 0}.validate()),
                        "paci::interleaved_zero_bubble: chunks (0) must be >= 1");
    REQUIRE_THROWS_WITH((IZB{.ranks = 16384, .chunks = 2, .microbatches = 16384}.validate()),
                        "paci::interleaved_zero_bubble: ranks * chunks (32768) must be <= 32767");
    REQUIRE_THROWS_WITH((IZB{.ranks = 2, .chunks = 2, .microbatches = 0}.validate()),
                        "paci::interleaved_zero_bubble: microbatches (0) must be >= 1");
    REQUIRE_THROWS_WITH((IZB{.ranks = 2, .chunks = 2, .microbatches = 2, .steps = 0}.generate()),
                        "paci::interleaved_zero_bubble: steps (0) must be >= 1");
    REQUIRE_THROWS_WITH((IZB{.ranks = 2, .chunks = 2, .microbatches = 3, .steps = 1}.validate()),
                        "paci::interleaved_zero_bubble: microbatches (3) must be a multiple of ranks (2)");
    REQUIRE_THROWS_WITH((IZB{.ranks = 4, .chunks = 2, .microbatches = 6, .steps = 1}.generate()),
                        "paci::interleaved_zero_bubble: microbatches (6) must be a multiple of ranks (4)");
    REQUIRE_THROWS_WITH((IZB{.ranks = 4, .chunks = 2, .microbatches = 2, .steps = 1}.program(0)),
                        "paci::interleaved_zero_bubble: microbatches (2) must be a multiple of ranks (4)");
    REQUIRE_THROWS_WITH((IZB{.ranks = 2, .chunks = 2, .microbatches = 1 << 16, .steps = 1 << 16}.validate()),
                        "paci::interleaved_zero_bubble: microbatches * steps (4294967296) must fit in 32 bits");
    REQUIRE_THROWS_WITH((IZB{.ranks = 2, .chunks = 4, .microbatches = 1 << 30, .steps = 1}.validate()),
                        "paci::interleaved_zero_bubble: microbatches * chunks (4294967296) must fit in 32 bits");

    SECTION("a rank outside the pipeline") {
        const IZB p{.ranks = 2, .chunks = 2, .microbatches = 2, .steps = 1};
        REQUIRE_THROWS_WITH(p.program(2), "paci::interleaved_zero_bubble: rank (2) must be in [0, 2)");
        REQUIRE_THROWS_WITH(p.program(-1), "paci::interleaved_zero_bubble: rank (-1) must be in [0, 2)");
    }
    SECTION("sizes past paci::limits are refused before anything is allocated") {
        // 64 ranks x 4 chunks x 2^20 micro-batches: about 3 * 2^22 actions per rank, 3 * 2^28 in all.
        const IZB huge{.ranks = 64, .chunks = 4, .microbatches = 1 << 20, .steps = 1};
        REQUIRE_NOTHROW(huge.validate());
        REQUIRE_THROWS_WITH(huge.generate(),
                            Catch::Matchers::ContainsSubstring("paci::interleaved_zero_bubble: schedule size (805306624 actions"));
        // One update of one rank (what the executor's program buffers): 3 * 2^24 * 4 + 4 actions.
        const IZB long_update{.ranks = 2, .chunks = 4, .microbatches = 1 << 24, .steps = 1};
        REQUIRE_THROWS_WITH(long_update.program(0), Catch::Matchers::ContainsSubstring(
                                                        "paci::interleaved_zero_bubble: schedule size (201326596 actions"));
        const paci::scoped_limits bigger{{.max_actions = std::uint64_t{1} << 28, .max_bytes = std::uint64_t{1} << 32}};
        REQUIRE_NOTHROW(static_cast<void>(long_update.program(1)));
    }
}

TEST_CASE("interleaved_zero_bubble: 2 ranks, 2 chunks, by hand", "[unit][policy][interleaved_zero_bubble]") {
    SECTION("2 micro-batches") {
        const paci::schedule s = IZB{.ranks = 2, .chunks = 2, .microbatches = 2, .steps = 1}.generate();
        CHECK(s.shape == paci::pipeline_shape{4, 2, paci::stage_map::loop});
        CHECK(s.microbatches == 2);
        CHECK(s.steps == 1);
        CHECK(s.policy == "interleaved_zero_bubble{.ranks = 2, .chunks = 2, .microbatches = 2, .steps = 1}");
        REQUIRE(s.ranks.size() == 2);
        // Rank 0: all 4 forwards, then I and W together (no lag), chunk 1 (stage 2) first.
        CHECK(s.ranks[0] == program("0F0 0F1 2F0 2F1 2I0 2W0 2I1 2W1 2STEP0 0I0 0W0 0I1 0W1 0STEP0"));
        // Rank 1: 3 forwards, then I, W one behind, F.
        CHECK(s.ranks[1] == program("1F0 1F1 3F0 3I0 3F1 3I1 3W0 1I0 3W1 3STEP0 1I1 1W0 1W1 1STEP0"));
        CHECK(paci::validate(s).valid());
    }
    SECTION("4 micro-batches: blocks of 2 micro-batches move through the chunks") {
        const paci::schedule s = IZB{.ranks = 2, .chunks = 2, .microbatches = 4, .steps = 1}.generate();
        // Forward k: chunk (k / 2) % 2, micro-batch (k / 4) * 2 + k % 2 -> (c0,0) (c0,1) (c1,0) (c1,1)
        // (c0,2) (c0,3) (c1,2) (c1,3); backward k: the same micro-batches, chunks reversed.
        CHECK(s.ranks[0] == program("0F0 0F1 2F0 2F1 2I0 2W0 0F2 2I1 2W1 0F3 0I0 0W0 2F2 0I1 0W1 2F3 "
                                    "2I2 2W2 2I3 2W3 2STEP0 0I2 0W2 0I3 0W3 0STEP0"));
        CHECK(s.ranks[1] == program("1F0 1F1 3F0 3I0 3F1 3I1 3W0 1F2 1I0 3W1 1F3 1I1 1W0 3F2 3I2 1W1 3F3 "
                                    "3I3 3W2 1I2 3W3 3STEP0 1I3 1W2 1W3 1STEP0"));
        CHECK(paci::validate(s).valid());
    }
    SECTION("two updates repeat on the next micro-batches") {
        const paci::schedule s = IZB{.ranks = 2, .chunks = 2, .microbatches = 2, .steps = 2}.generate();
        CHECK(s.microbatches == 4);
        CHECK(s.steps == 2);
        CHECK(s.ranks[0] == program("0F0 0F1 2F0 2F1 2I0 2W0 2I1 2W1 2STEP0 0I0 0W0 0I1 0W1 0STEP0 "
                                    "0F2 0F3 2F2 2F3 2I2 2W2 2I3 2W3 2STEP1 0I2 0W2 0I3 0W3 0STEP1"));
        CHECK(s.ranks[1] == program("1F0 1F1 3F0 3I0 3F1 3I1 3W0 1I0 3W1 3STEP0 1I1 1W0 1W1 1STEP0 "
                                    "1F2 1F3 3F2 3I2 3F3 3I3 3W2 1I2 3W3 3STEP1 1I3 1W2 1W3 1STEP1"));
    }
}

TEST_CASE("interleaved_zero_bubble: one chunk per rank is ZB-H1", "[unit][policy][interleaved_zero_bubble]") {
    const int R = GENERATE(1, 2, 3, 5);
    const int k = GENERATE(1, 2, 3);
    const int N = GENERATE(1, 2);
    CAPTURE(R, k, N);
    const paci::schedule izb = IZB{.ranks = R, .chunks = 1, .microbatches = k * R, .steps = N}.generate();
    const paci::schedule h1 = paci::zb_h1{.stages = R, .microbatches = k * R, .steps = N}.generate();
    CHECK(izb.shape == h1.shape);
    CHECK(izb.microbatches == h1.microbatches);
    CHECK(izb.ranks == h1.ranks);
}

TEST_CASE("interleaved_zero_bubble: the executor's program streams generate()'s actions, one update at a time",
          "[unit][policy][interleaved_zero_bubble]") {
    const IZB p{.ranks = 3, .chunks = 2, .microbatches = 6, .steps = 3};
    paci_test::check_program_streams(p, 3);
}

TEST_CASE("interleaved_zero_bubble: valid, deadlock-free after either lowering, ZB-H1's bubble, work and memory",
          "[policy][interleaved_zero_bubble][property]") {
    const int R = GENERATE(1, 2, 3, 4, 5, 6);
    const int V = GENERATE(1, 2, 3, 4);
    const int k = GENERATE(1, 2, 3);
    const int N = GENERATE(1, 2);
    const int M = k * R;
    const IZB policy{.ranks = R, .chunks = V, .microbatches = M, .steps = N};
    CAPTURE(policy);
    const paci::schedule s = policy.generate();
    REQUIRE(s.ranks.size() == static_cast<std::size_t>(R));
    CHECK(s.microbatches == M * N);
    for (int r = 0; r < R; ++r) {
        const auto& prog = s.ranks[static_cast<std::size_t>(r)];
        CHECK(prog.size() == static_cast<std::size_t>(N * (3 * M * V + V)));
        CHECK(paci_test::count(prog, paci::op::B) == 0);
        CHECK(paci_test::count(prog, paci::op::STEP) == static_cast<std::size_t>(N * V));
        for (const auto& a : prog) CHECK(s.shape.rank_of(a.stage) == r);
    }
    // Each lowering runs under the sends it is made for: eager for buffered sends only (its SEND right
    // after the compute blocks a rendezvous transport, as 1F1B's does), rendezvous_safe for both.
    const paci_test::lowered_pair lowered = paci_test::check_valid_and_safe_lowering(s);
    CHECK(paci::validate(lowered.eager).valid());

    // ZB-H1's bubble (Qi et al.: (p - 1)(F + I - W) for W <= min(F, I)) with p = R ranks, per update:
    // each rank works V M (F + I + W) and idles (R - 1)(F + I - W). With F = I = W that is R - 1
    // forwards, the least possible: the last rank cannot start before R - 1 forwards have run.
    const double combos[][3] = {{1, 1, 1}, {2, 2, 1}, {1, 2, 1}, {3, 2, 1}, {2, 3, 0.5}};
    for (const auto& c : combos) {
        const double f = c[0], i = c[1], w = c[2];
        CAPTURE(f, i, w);
        const auto sim = paci::simulate(s, costs(f, i, w));
        REQUIRE(sim.completed);
        CHECK(sim.makespan == N * (V * M * (f + i + w) + (R - 1) * (f + i - w)));
        // Work conservation: every rank runs its F, I and W of every chunk and micro-batch, nothing else.
        for (const double busy : sim.busy) CHECK(busy == N * V * M * (f + i + w));
    }
    // Memory: every rank stores at most V R micro-batches (F to W), and reaches it (warm-up V R - r
    // forwards, then r cycles that each add a forward before the W lag is reached).
    const auto mem = paci::memory_of(paci::replay(s, policy.controller()));
    for (const int peak : mem.rank_peak_stored) CHECK(peak == V * R);
}

TEST_CASE("interleaved_zero_bubble: PyTorch 2.11's InterleavedZeroBubble, 4 ranks, 2 chunks, 8 micro-batches",
          "[policy][interleaved_zero_bubble][pytorch]") {
    const paci::imported_schedule torch = pytorch_fixture("InterleavedZeroBubble_p4_v2_m8.compute.csv");
    const IZB policy{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 1};
    const paci::schedule ours = policy.generate();
    REQUIRE(torch.sched.shape == ours.shape);
    REQUIRE(torch.sched.microbatches == ours.microbatches);

    // The construction, derived from ZB-H1 and interleaved 1F1B, orders every rank's compute as
    // PyTorch does here (its idle cells are timing, not order).
    CHECK(compute_only(ours) == torch.sched.ranks);

    const paci::cost_model equal{}; // F = I = W = 1
    const double theirs = paci::simulate(torch.sched, equal).makespan;
    const double mine = paci::simulate(ours, equal).makespan;
    CHECK(theirs == 2 * 8 * 3 + 3); // V M (F + I + W) + (R - 1) F: PyTorch reaches the bound too
    CHECK(mine <= theirs);
    const auto m_theirs = paci::memory_of(paci::replay(torch.sched));
    const auto m_mine = paci::memory_of(paci::replay(ours, policy.controller()));
    paci_test::check_peaks_at_most(m_mine, m_theirs, 4, 8); // V R, as the header promises for paci's
}
