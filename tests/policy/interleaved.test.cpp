// Unit tests for include/paci/policy/interleaved.hpp: interleaved 1F1B as a value, its errors, the
// Megatron warm-up rule 2 (ranks - r - 1) + (chunks - 1) ranks, and schedules written out by hand
// from that rule (forwards advance through chunks in blocks of `ranks` micro-batches; backwards run
// the chunks in reverse).

#include <paci/analysis/validate.hpp>
#include <paci/core/error.hpp>
#include <paci/policy/interleaved.hpp>
#include <paci/version/flush.hpp>

#include "support/catch.hpp"
#include "support/print.hpp"
#include "support/program_text.hpp"
#include "support/synchronous.hpp"

#include <algorithm>

namespace {

using paci_test::print;
using paci_test::program;
using IL = paci::interleaved_one_f_one_b;

} // namespace

TEST_CASE("interleaved: a regular, printable policy value", "[unit][policy][interleaved]") {
    STATIC_REQUIRE(paci::schedule_policy<IL>);
    STATIC_REQUIRE(IL::name == "interleaved_one_f_one_b");
    const IL def{};
    CHECK(def.ranks == 1);
    CHECK(def.chunks == 2);
    CHECK(def.microbatches == 1);
    CHECK(def.steps == 1);

    CHECK(print(IL{.ranks = 2, .chunks = 2, .microbatches = 4, .steps = 1}) ==
          "interleaved_one_f_one_b{.ranks = 2, .chunks = 2, .microbatches = 4, .steps = 1}");

    const IL p{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 3};
    CHECK(p == IL{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 3});
    CHECK_FALSE(p == IL{.ranks = 2, .chunks = 2, .microbatches = 8, .steps = 3});
    CHECK_FALSE(p == IL{.ranks = 4, .chunks = 3, .microbatches = 8, .steps = 3});
    CHECK_FALSE(p == IL{.ranks = 4, .chunks = 2, .microbatches = 4, .steps = 3});
    CHECK_FALSE(p == IL{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 2});
}

TEST_CASE("interleaved: loop-mapped shape, flush controller, synchronous bounds", "[unit][policy][interleaved]") {
    const IL p{.ranks = 4, .chunks = 3, .microbatches = 8, .steps = 1};
    CHECK(p.shape() == paci::pipeline_shape{12, 4, paci::stage_map::loop});
    CHECK(p.controller() == paci::flush{8});
    paci_test::check_synchronous_bounds(p, 12);
}

TEST_CASE("interleaved: warm-up follows Megatron's rule, capped by the forwards of a step", "[unit][policy][interleaved]") {
    // 2 (ranks - r - 1) + (chunks - 1) ranks
    const IL p{.ranks = 4, .chunks = 2, .microbatches = 8, .steps = 1};
    CHECK(p.warmup(0) == 10);
    CHECK(p.warmup(1) == 8);
    CHECK(p.warmup(2) == 6);
    CHECK(p.warmup(3) == 4);
    // With 4 micro-batches a rank has only 8 forwards per step.
    const IL q{.ranks = 4, .chunks = 2, .microbatches = 4, .steps = 1};
    CHECK(q.warmup(0) == 8);
    CHECK(q.warmup(1) == 8);
    CHECK(q.warmup(2) == 6);
    CHECK(q.warmup(3) == 4);
    const IL r{.ranks = 2, .chunks = 3, .microbatches = 4, .steps = 1};
    CHECK(r.warmup(0) == 6); // 2 + 4
    CHECK(r.warmup(1) == 4); // 0 + 4
}

TEST_CASE("interleaved: configuration errors", "[unit][policy][interleaved][errors]") {
    REQUIRE_THROWS_AS((IL{.ranks = 0}.validate()), paci::config_error);
    REQUIRE_THROWS_WITH((IL{.ranks = 0}.validate()), "paci::interleaved_one_f_one_b: ranks (0) must be >= 1");
    REQUIRE_THROWS_WITH((IL{.ranks = 1, .chunks = 0}.validate()), "paci::interleaved_one_f_one_b: chunks (0) must be >= 1");
    REQUIRE_THROWS_WITH((IL{.ranks = 16384, .chunks = 2, .microbatches = 16384}.validate()),
                        "paci::interleaved_one_f_one_b: ranks * chunks (32768) must be <= 32767");
    REQUIRE_THROWS_WITH((IL{.ranks = 2, .chunks = 2, .microbatches = 0}.validate()),
                        "paci::interleaved_one_f_one_b: microbatches (0) must be >= 1");
    REQUIRE_THROWS_WITH((IL{.ranks = 2, .chunks = 2, .microbatches = 2, .steps = 0}.generate()),
                        "paci::interleaved_one_f_one_b: steps (0) must be >= 1");
    REQUIRE_THROWS_WITH((IL{.ranks = 2, .chunks = 2, .microbatches = 3, .steps = 1}.validate()),
                        "paci::interleaved_one_f_one_b: microbatches (3) must be a multiple of ranks (2)");
    REQUIRE_THROWS_WITH((IL{.ranks = 4, .chunks = 2, .microbatches = 6, .steps = 1}.generate()),
                        "paci::interleaved_one_f_one_b: microbatches (6) must be a multiple of ranks (4)");
}

TEST_CASE("interleaved: 2 ranks, 2 chunks, 2 micro-batches, by hand", "[unit][policy][interleaved]") {
    const paci::schedule s = IL{.ranks = 2, .chunks = 2, .microbatches = 2, .steps = 1}.generate();
    CHECK(s.shape == paci::pipeline_shape{4, 2, paci::stage_map::loop});
    CHECK(s.microbatches == 2);
    CHECK(s.steps == 1);
    CHECK(s.policy == "interleaved_one_f_one_b{.ranks = 2, .chunks = 2, .microbatches = 2, .steps = 1}");
    REQUIRE(s.ranks.size() == 2);
    // Rank 0 (stages 0 and 2) warms up with all 4 of its forwards, then drains chunk 1 before chunk 0.
    CHECK(s.ranks[0] == program("0F0 0F1 2F0 2F1 2B0 2B1 2STEP0 0B0 0B1 0STEP0"));
    // Rank 1 (stages 1 and 3) warms up with 2, then alternates one forward and one backward.
    CHECK(s.ranks[1] == program("1F0 1F1 3F0 3B0 3F1 3B1 3STEP0 1B0 1B1 1STEP0"));
    CHECK(paci::validate(s).valid());
}

TEST_CASE("interleaved: 2 ranks, 2 chunks, 4 micro-batches, by hand", "[unit][policy][interleaved]") {
    const paci::schedule s = IL{.ranks = 2, .chunks = 2, .microbatches = 4, .steps = 1}.generate();
    // Forward k of a rank: chunk (k / 2) % 2, micro-batch (k / 4) * 2 + k % 2 -> (c0,0) (c0,1) (c1,0)
    // (c1,1) (c0,2) (c0,3) (c1,2) (c1,3); backward k: the same micro-batches, chunks reversed.
    CHECK(s.ranks[0] == program("0F0 0F1 2F0 2F1 0F2 2B0 0F3 2B1 2F2 0B0 2F3 0B1 2B2 2B3 2STEP0 0B2 0B3 0STEP0"));
    CHECK(s.ranks[1] == program("1F0 1F1 3F0 3B0 3F1 3B1 1F2 1B0 1F3 1B1 3F2 3B2 3F3 3B3 3STEP0 1B2 1B3 1STEP0"));
    CHECK(paci::validate(s).valid());
}

TEST_CASE("interleaved: one rank runs its chunks back to back", "[unit][policy][interleaved]") {
    const paci::schedule s = IL{.ranks = 1, .chunks = 2, .microbatches = 2, .steps = 1}.generate();
    CHECK(s.shape == paci::pipeline_shape{2, 1, paci::stage_map::loop});
    // Warm-up 2 (1 - 0 - 1) + (2 - 1) 1 = 1.
    CHECK(s.ranks[0] == program("0F0 1F0 1B0 0F1 0B0 1F1 1B1 1STEP0 0B1 0STEP0"));
    CHECK(paci::validate(s).valid());
}

TEST_CASE("interleaved: two steps repeat on the next micro-batches", "[unit][policy][interleaved]") {
    const paci::schedule s = IL{.ranks = 2, .chunks = 2, .microbatches = 2, .steps = 2}.generate();
    CHECK(s.microbatches == 4);
    CHECK(s.steps == 2);
    CHECK(s.ranks[0] == program("0F0 0F1 2F0 2F1 2B0 2B1 2STEP0 0B0 0B1 0STEP0 "
                                "0F2 0F3 2F2 2F3 2B2 2B3 2STEP1 0B2 0B3 0STEP1"));
    CHECK(s.ranks[1] == program("1F0 1F1 3F0 3B0 3F1 3B1 3STEP0 1B0 1B1 1STEP0 "
                                "1F2 1F3 3F2 3B2 3F3 3B3 3STEP1 1B2 1B3 1STEP1"));
}

TEST_CASE("interleaved: counts, warm-up and validity over a grid", "[unit][policy][interleaved][property]") {
    const int R = GENERATE(1, 2, 3, 4);
    const int C = GENERATE(1, 2, 3);
    const int k = GENERATE(1, 2, 3);
    const int N = GENERATE(1, 2);
    const IL policy{.ranks = R, .chunks = C, .microbatches = k * R, .steps = N};
    CAPTURE(policy);
    const int M = k * R;
    const paci::schedule s = policy.generate();
    REQUIRE(s.ranks.size() == static_cast<std::size_t>(R));
    CHECK(s.microbatches == M * N);
    for (int r = 0; r < R; ++r) {
        CAPTURE(r);
        const auto& prog = s.ranks[static_cast<std::size_t>(r)];
        // Per step: M forwards and M backwards per chunk, one STEP per chunk.
        CHECK(prog.size() == static_cast<std::size_t>(N * (2 * M * C + C)));
        CHECK(paci_test::count(prog, paci::op::STEP) == static_cast<std::size_t>(N * C));
        // Forwards before the first backward: the warm-up, plus the steady state's leading forward.
        const auto first_b =
            std::find_if(prog.begin(), prog.end(), [](const paci::action& a) { return a.kind == paci::op::B; });
        const auto leading = static_cast<int>(first_b - prog.begin());
        const int w = std::min(2 * (R - r - 1) + (C - 1) * R, M * C);
        CHECK(leading == std::min(w + 1, M * C));
        for (const auto& a : prog) CHECK(s.shape.rank_of(a.stage) == r);
    }
    const auto report = paci::validate(s);
    INFO(report);
    CHECK(report.valid());
}

TEST_CASE("interleaved_one_f_one_b: shape() of ranks * chunks past a stage count throws instead of overflowing",
          "[unit][policy]") {
    // Found by the API fuzzer (tests/fuzz/findings/api/interleaved-shape-overflow): shape() multiplied
    // in int before anything validated the product.
    const paci::interleaved_one_f_one_b il{.ranks = 1 << 20, .chunks = 1 << 12, .microbatches = 1 << 20};
    REQUIRE_THROWS_AS(il.shape(), paci::config_error);
    REQUIRE_THROWS_WITH(il.shape(), Catch::Matchers::ContainsSubstring(
                                        "paci::interleaved_one_f_one_b: ranks * chunks (4294967296) must be in [1, "));
    REQUIRE_THROWS_AS(il.generate(), paci::config_error);
}
