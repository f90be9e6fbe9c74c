// Unit tests for include/paci/policy/looped_bfs.hpp: looped BFS as a value, its errors, schedules
// written out by hand from the header's rule (each rank's forwards chunk by chunk in stage order,
// then its backwards chunk by chunk in reverse), one chunk being GPipe, the makespan in closed form
// over a grid, and PyTorch 2.11's LoopedBFS (tests/io/fixtures/LoopedBFS_p4_v2_m8.compute.csv).

#include <paci/analysis/memory.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/core/error.hpp>
#include <paci/core/limits.hpp>
#include <paci/core/lower.hpp>
#include <paci/io/csv.hpp>
#include <paci/policy/gpipe.hpp>
#include <paci/policy/looped_bfs.hpp>
#include <paci/sim/simulate.hpp>
#include <paci/version/flush.hpp>

#include "support/catch.hpp"
#include "support/print.hpp"
#include "support/policy_checks.hpp"
#include "support/program_text.hpp"
#include "support/synchronous.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using paci_test::compute_only;
using paci_test::print;
using paci_test::program;
using paci_test::pytorch_fixture;
using BFS = paci::looped_bfs;

paci::cost_model costs(double f, double b) {
    paci::cost_model c;
    c.uniform.f = f;
    c.uniform.b = b;
    return c;
}

/// The makespan of looped BFS in closed form (header's derivation): `N` flushed updates of
/// `(F + B) (max(V R + M, V M + R) - 1)` each.
double closed_form(int R, int V, int M, int N, double f, double b) {
    return N * (f + b) * (std::max(V * R + M, V * M + R) - 1);
}

} // namespace

TEST_CASE("looped_bfs: a regular, printable policy value", "[unit][policy][looped_bfs]") {
    STATIC_REQUIRE(paci::schedule_policy<BFS>);
    STATIC_REQUIRE(BFS::name == "looped_bfs");
    STATIC_REQUIRE_FALSE(BFS::splits_backward);
    STATIC_REQUIRE_FALSE(BFS::recomputes);
    const BFS def{};
    CHECK(def.ranks == 1);
    CHECK(def.chunks == 2);
    CHECK(def.microbatches == 1);
    CHECK(def.steps == 1);

    CHECK(print(BFS{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 1}) ==
          "looped_bfs{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 1}");

    const BFS p{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 3};
    CHECK(p == BFS{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 3});
    CHECK_FALSE(p == BFS{.ranks = 2, .chunks = 2, .microbatches = 8, .steps = 3});
    CHECK_FALSE(p == BFS{.ranks = 4, .chunks = 3, .microbatches = 8, .steps = 3});
    CHECK_FALSE(p == BFS{.ranks = 4, .chunks = 2, .microbatches = 7, .steps = 3});
    CHECK_FALSE(p == BFS{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 2});
}

TEST_CASE("looped_bfs: loop-mapped shape, flush controller, synchronous bounds", "[unit][policy][looped_bfs]") {
    const BFS p{.ranks = 3, .chunks = 4, .microbatches = 5, .steps = 2};
    CHECK(p.shape() == paci::pipeline_shape{12, 3, paci::stage_map::loop});
    CHECK(p.controller() == paci::flush{5});
    CHECK(p.loss_scale() == 1.0 / 5);
    CHECK(p.run_granularity() == 5);
    paci_test::check_synchronous_bounds(p, 12);
}

TEST_CASE("looped_bfs: configuration errors", "[unit][policy][looped_bfs][errors]") {
    REQUIRE_THROWS_AS((BFS{.ranks = 0}.validate()), paci::config_error);
    REQUIRE_THROWS_WITH((BFS{.ranks = 0}.validate()), "paci::looped_bfs: ranks (0) must be >= 1");
    REQUIRE_THROWS_WITH((BFS{.ranks = -3}.generate()), "paci::looped_bfs: ranks (-3) must be >= 1");
    REQUIRE_THROWS_WITH((BFS{.ranks = 1, .chunks = 0}.validate()), "paci::looped_bfs: chunks (0) must be >= 1");
    REQUIRE_THROWS_WITH((BFS{.ranks = 16384, .chunks = 2}.validate()),
                        "paci::looped_bfs: ranks * chunks (32768) must be <= 32767");
    REQUIRE_THROWS_WITH((BFS{.ranks = 2, .chunks = 2, .microbatches = 0}.validate()),
                        "paci::looped_bfs: microbatches (0) must be >= 1");
    REQUIRE_THROWS_WITH((BFS{.ranks = 2, .chunks = 2, .microbatches = 2, .steps = 0}.generate()),
                        "paci::looped_bfs: steps (0) must be >= 1");
    REQUIRE_THROWS_WITH((BFS{.ranks = 2, .chunks = 2, .microbatches = 1 << 16, .steps = 1 << 16}.validate()),
                        "paci::looped_bfs: microbatches * steps (4294967296) must fit in 32 bits");
    REQUIRE_THROWS_WITH((BFS{.ranks = 2, .chunks = 4, .microbatches = 1 << 30, .steps = 1}.validate()),
                        "paci::looped_bfs: microbatches * chunks (4294967296) must fit in 32 bits");
    // Any number of micro-batches: none is refused for not being a multiple of the ranks.
    CHECK_NOTHROW(BFS{.ranks = 4, .chunks = 2, .microbatches = 3, .steps = 1}.validate());

    SECTION("a rank outside the pipeline") {
        const BFS p{.ranks = 2, .chunks = 2, .microbatches = 2, .steps = 1};
        REQUIRE_THROWS_WITH(p.program(2), "paci::looped_bfs: rank (2) must be in [0, 2)");
        REQUIRE_THROWS_WITH(p.program(-1), "paci::looped_bfs: rank (-1) must be in [0, 2)");
        REQUIRE_THROWS_WITH((BFS{.ranks = 0}.program(0)), "paci::looped_bfs: ranks (0) must be >= 1");
    }
    SECTION("sizes past paci::limits are refused before anything is allocated") {
        // 64 ranks x 4 chunks x 2^20 micro-batches: about 2^23 actions per rank, 2^29 in all.
        const BFS huge{.ranks = 64, .chunks = 4, .microbatches = 1 << 20, .steps = 1};
        REQUIRE_NOTHROW(huge.validate());
        REQUIRE_THROWS_WITH(huge.generate(), Catch::Matchers::ContainsSubstring("paci::looped_bfs: schedule size (536871168 actions"));
        // One update of one rank is what the executor's program buffers: 2 * 2^24 * 8 + 8 actions, refused
        // before the buffer exists.
        const BFS long_update{.ranks = 2, .chunks = 8, .microbatches = 1 << 24, .steps = 1};
        REQUIRE_THROWS_WITH(long_update.program(0),
                            Catch::Matchers::ContainsSubstring("paci::looped_bfs: schedule size (268435464 actions"));
        // Accepted once the limits allow it (the program allocates nothing before its first action).
        const paci::scoped_limits bigger{{.max_actions = std::uint64_t{1} << 29, .max_bytes = std::uint64_t{1} << 32}};
        REQUIRE_NOTHROW(static_cast<void>(long_update.program(1)));
    }
}

TEST_CASE("looped_bfs: 2 ranks, 2 chunks, by hand", "[unit][policy][looped_bfs]") {
    SECTION("3 micro-batches (not a multiple of the ranks)") {
        const paci::schedule s = BFS{.ranks = 2, .chunks = 2, .microbatches = 3, .steps = 1}.generate();
        CHECK(s.shape == paci::pipeline_shape{4, 2, paci::stage_map::loop});
        CHECK(s.microbatches == 3);
        CHECK(s.steps == 1);
        CHECK(s.policy == "looped_bfs{.ranks = 2, .chunks = 2, .microbatches = 3, .steps = 1}");
        REQUIRE(s.ranks.size() == 2);
        // Rank 0 runs stages 0 and 2: chunk 0's forwards, chunk 1's, then chunk 1's backwards first.
        CHECK(s.ranks[0] == program("0F0 0F1 0F2 2F0 2F1 2F2 2B0 2B1 2B2 2STEP0 0B0 0B1 0B2 0STEP0"));
        CHECK(s.ranks[1] == program("1F0 1F1 1F2 3F0 3F1 3F2 3B0 3B1 3B2 3STEP0 1B0 1B1 1B2 1STEP0"));
        CHECK(paci::validate(s).valid());
    }
    SECTION("two updates repeat on the next micro-batches") {
        const paci::schedule s = BFS{.ranks = 2, .chunks = 2, .microbatches = 2, .steps = 2}.generate();
        CHECK(s.microbatches == 4);
        CHECK(s.steps == 2);
        CHECK(s.ranks[0] == program("0F0 0F1 2F0 2F1 2B0 2B1 2STEP0 0B0 0B1 0STEP0 "
                                    "0F2 0F3 2F2 2F3 2B2 2B3 2STEP1 0B2 0B3 0STEP1"));
        CHECK(s.ranks[1] == program("1F0 1F1 3F0 3F1 3B0 3B1 3STEP0 1B0 1B1 1STEP0 "
                                    "1F2 1F3 3F2 3F3 3B2 3B3 3STEP1 1B2 1B3 1STEP1"));
    }
    SECTION("one rank runs its three chunks back to back") {
        const paci::schedule s = BFS{.ranks = 1, .chunks = 3, .microbatches = 2, .steps = 1}.generate();
        CHECK(s.shape == paci::pipeline_shape{3, 1, paci::stage_map::loop});
        CHECK(s.ranks[0] == program("0F0 0F1 1F0 1F1 2F0 2F1 2B0 2B1 2STEP0 1B0 1B1 1STEP0 0B0 0B1 0STEP0"));
        CHECK(paci::validate(s).valid());
    }
}

TEST_CASE("looped_bfs: one chunk per rank is GPipe", "[unit][policy][looped_bfs]") {
    const int R = GENERATE(1, 2, 3, 5);
    const int M = GENERATE(1, 2, 4, 7);
    const int N = GENERATE(1, 2);
    CAPTURE(R, M, N);
    const paci::schedule bfs = BFS{.ranks = R, .chunks = 1, .microbatches = M, .steps = N}.generate();
    const paci::schedule gp = paci::gpipe<>{.stages = R, .microbatches = M, .steps = N}.generate();
    CHECK(bfs.shape == gp.shape);
    CHECK(bfs.microbatches == gp.microbatches);
    CHECK(bfs.steps == gp.steps);
    CHECK(bfs.ranks == gp.ranks);
}

TEST_CASE("looped_bfs: the executor's program streams generate()'s actions, one update at a time",
          "[unit][policy][looped_bfs]") {
    const BFS p{.ranks = 3, .chunks = 2, .microbatches = 4, .steps = 3};
    paci_test::check_program_streams(p, 3);
}

TEST_CASE("looped_bfs: valid, deadlock-free after either lowering, makespan and memory in closed form",
          "[policy][looped_bfs][property]") {
    const int R = GENERATE(1, 2, 3, 4, 5, 6);
    const int V = GENERATE(1, 2, 3, 4);
    const int M = GENERATE_COPY(1, 2, R, R + 1, 2 * R, 3 * R + 2);
    const int N = GENERATE(1, 2);
    const BFS policy{.ranks = R, .chunks = V, .microbatches = M, .steps = N};
    CAPTURE(policy);
    const paci::schedule s = policy.generate();
    REQUIRE(s.ranks.size() == static_cast<std::size_t>(R));
    CHECK(s.microbatches == M * N);
    for (int r = 0; r < R; ++r) {
        const auto& prog = s.ranks[static_cast<std::size_t>(r)];
        CHECK(prog.size() == static_cast<std::size_t>(N * (2 * M * V + V)));
        CHECK(paci_test::count(prog, paci::op::STEP) == static_cast<std::size_t>(N * V));
        for (const auto& a : prog) CHECK(s.shape.rank_of(a.stage) == r);
    }
    // Each lowering runs under the sends it is made for: eager for buffered sends only (its SEND right
    // after the compute blocks a rendezvous transport, as 1F1B's does), rendezvous_safe for both.
    const paci_test::lowered_pair lowered = paci_test::check_valid_and_safe_lowering(s);
    CHECK(paci::validate(lowered.eager).valid());
    // Makespan: F = 1, B = 2 (cost_model's defaults) and an unequal pair.
    CHECK(paci::simulate(s, paci::cost_model{}).makespan == closed_form(R, V, M, N, 1, 2));
    CHECK(paci::simulate(s, costs(2, 3)).makespan == closed_form(R, V, M, N, 2, 3));
    // Every stage stores all M micro-batches of an update at its peak, a rank V M.
    const auto mem = paci::memory_of(paci::replay(s, policy.controller()));
    for (const int peak : mem.peak_stored) CHECK(peak == M);
    for (const int peak : mem.rank_peak_stored) CHECK(peak == V * M);
}

TEST_CASE("looped_bfs: PyTorch 2.11's LoopedBFS, 4 ranks, 2 chunks, 8 micro-batches", "[policy][looped_bfs][pytorch]") {
    const paci::imported_schedule torch = pytorch_fixture("LoopedBFS_p4_v2_m8.compute.csv");
    const BFS policy{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 1};
    const paci::schedule ours = policy.generate();
    REQUIRE(torch.sched.shape == ours.shape);
    REQUIRE(torch.sched.microbatches == ours.microbatches);

    SECTION("the same programs but for each chunk's backwards, which PyTorch runs last in, first out") {
        auto expected = compute_only(torch.sched);
        for (auto& prog : expected) {
            // Reverse every run of backwards of one stage.
            for (auto it = prog.begin(); it != prog.end();) {
                auto end = it;
                while (end != prog.end() && end->kind == paci::op::B && end->stage == it->stage) ++end;
                if (end == it) {
                    ++it;
                } else {
                    std::reverse(it, end);
                    it = end;
                }
            }
        }
        CHECK(compute_only(ours) == expected);
    }
    SECTION("at least as good under paci's simulator: makespan and peak stored micro-batches") {
        const paci::cost_model equal{}; // F = 1, B = 2
        const double theirs = paci::simulate(torch.sched, equal).makespan;
        const double mine = paci::simulate(ours, equal).makespan;
        CHECK(theirs == closed_form(4, 2, 8, 1, 1, 2)); // (1 + 2) (2 * 8 + 4 - 1) = 57
        CHECK(mine <= theirs);
        const auto m_theirs = paci::memory_of(paci::replay(torch.sched));
        const auto m_mine = paci::memory_of(paci::replay(ours, policy.controller()));
        paci_test::check_peaks_at_most(m_mine, m_theirs, 4);
    }
}
