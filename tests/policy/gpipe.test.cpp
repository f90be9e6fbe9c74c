// Unit tests for include/paci/policy/gpipe.hpp: the policy as a value (printing, equality, concept),
// its configuration errors, and the schedule it generates, written out by hand for small cases.

#include <paci/analysis/validate.hpp>
#include <paci/core/error.hpp>
#include <paci/policy/gpipe.hpp>
#include <paci/version/flush.hpp>

#include "support/catch.hpp"
#include "support/print.hpp"
#include "support/program_text.hpp"
#include "support/synchronous.hpp"

namespace {

using paci::backward_flavour;
using paci_test::print;
using paci_test::program;

} // namespace

TEST_CASE("gpipe: a regular, printable policy value", "[unit][policy][gpipe]") {
    STATIC_REQUIRE(paci::schedule_policy<paci::gpipe<>>);
    STATIC_REQUIRE(paci::schedule_policy<paci::gpipe<backward_flavour::recompute>>);
    STATIC_REQUIRE(paci::gpipe<>::name == "gpipe");
    STATIC_REQUIRE(paci::gpipe<>::flavour == backward_flavour::perf);
    STATIC_REQUIRE(paci::gpipe<backward_flavour::recompute>::flavour == backward_flavour::recompute);

    const paci::gpipe<> def{};
    CHECK(def.stages == 1);
    CHECK(def.microbatches == 1);
    CHECK(def.steps == 1);

    CHECK(print(paci::gpipe<>{.stages = 4, .microbatches = 8, .steps = 1}) ==
          "gpipe<perf>{.stages = 4, .microbatches = 8, .steps = 1}");
    CHECK(print(paci::gpipe<backward_flavour::recompute>{.stages = 2, .microbatches = 3, .steps = 5}) ==
          "gpipe<recompute>{.stages = 2, .microbatches = 3, .steps = 5}");

    const paci::gpipe<> p{.stages = 4, .microbatches = 8, .steps = 2};
    CHECK(p == paci::gpipe<>{.stages = 4, .microbatches = 8, .steps = 2});
    CHECK_FALSE(p == paci::gpipe<>{.stages = 3, .microbatches = 8, .steps = 2});
    CHECK_FALSE(p == paci::gpipe<>{.stages = 4, .microbatches = 7, .steps = 2});
    CHECK_FALSE(p == paci::gpipe<>{.stages = 4, .microbatches = 8, .steps = 1});
}

TEST_CASE("gpipe: shape, controller and bounds", "[unit][policy][gpipe]") {
    const paci::gpipe<> p{.stages = 5, .microbatches = 3, .steps = 2};
    CHECK(p.shape() == paci::pipeline_shape{5, 5, paci::stage_map::loop});
    CHECK(p.controller() == paci::flush{3});
    paci_test::check_synchronous_bounds(p, 5);
}

TEST_CASE("gpipe: configuration errors", "[unit][policy][gpipe][errors]") {
    using G = paci::gpipe<>;
    SECTION("zero stages") {
        REQUIRE_THROWS_AS((G{.stages = 0, .microbatches = 1, .steps = 1}.validate()), paci::config_error);
        REQUIRE_THROWS_WITH((G{.stages = 0, .microbatches = 1, .steps = 1}.validate()),
                            "paci::gpipe: stages (0) must be >= 1");
        REQUIRE_THROWS_WITH((G{.stages = 0, .microbatches = 1, .steps = 1}.generate()),
                            "paci::gpipe: stages (0) must be >= 1");
    }
    SECTION("too many stages") {
        REQUIRE_THROWS_WITH((G{.stages = 32768, .microbatches = 1, .steps = 1}.validate()),
                            "paci::gpipe: stages (32768) must be <= 32767");
    }
    SECTION("zero micro-batches") {
        REQUIRE_THROWS_WITH((G{.stages = 2, .microbatches = 0, .steps = 1}.validate()),
                            "paci::gpipe: microbatches (0) must be >= 1");
        REQUIRE_THROWS_WITH((G{.stages = 2, .microbatches = -4, .steps = 1}.generate()),
                            "paci::gpipe: microbatches (-4) must be >= 1");
    }
    SECTION("zero steps") {
        REQUIRE_THROWS_WITH((G{.stages = 2, .microbatches = 1, .steps = 0}.validate()),
                            "paci::gpipe: steps (0) must be >= 1");
    }
    SECTION("more micro-batches than an action can index") {
        REQUIRE_THROWS_WITH((G{.stages = 2, .microbatches = 65536, .steps = 65536}.validate()),
                            "paci::gpipe: microbatches * steps (4294967296) must fit in 32 bits");
    }
    SECTION("the recompute flavour checks the same") {
        REQUIRE_THROWS_WITH((paci::gpipe<backward_flavour::recompute>{.stages = 0}.validate()),
                            "paci::gpipe: stages (0) must be >= 1");
    }
}

TEST_CASE("gpipe: 2 stages, 2 micro-batches, by hand", "[unit][policy][gpipe]") {
    const paci::schedule s = paci::gpipe<>{.stages = 2, .microbatches = 2, .steps = 1}.generate();
    CHECK(s.shape == paci::pipeline_shape{2, 2, paci::stage_map::loop});
    CHECK(s.microbatches == 2);
    CHECK(s.steps == 1);
    CHECK(s.policy == "gpipe<perf>{.stages = 2, .microbatches = 2, .steps = 1}");
    REQUIRE(s.ranks.size() == 2);
    CHECK(s.ranks[0] == program("0F0 0F1 0B0 0B1 0STEP0"));
    CHECK(s.ranks[1] == program("1F0 1F1 1B0 1B1 1STEP0"));
    CHECK_FALSE(s.lowered());
}

TEST_CASE("gpipe: two steps repeat the pattern on the next micro-batches", "[unit][policy][gpipe]") {
    const paci::schedule s = paci::gpipe<>{.stages = 2, .microbatches = 2, .steps = 2}.generate();
    CHECK(s.microbatches == 4);
    CHECK(s.steps == 2);
    CHECK(s.ranks[0] == program("0F0 0F1 0B0 0B1 0STEP0 0F2 0F3 0B2 0B3 0STEP1"));
    CHECK(s.ranks[1] == program("1F0 1F1 1B0 1B1 1STEP0 1F2 1F3 1B2 1B3 1STEP1"));
}

TEST_CASE("gpipe: recompute puts R right before each backward, on every stage", "[unit][policy][gpipe]") {
    // GPipe runs all forwards before any backward on the last stage too, so it recomputes there as well
    // (unlike the 1F1B machine, whose last stage runs forward and backward back to back).
    const paci::schedule s =
        paci::gpipe<backward_flavour::recompute>{.stages = 3, .microbatches = 2, .steps = 1}.generate();
    CHECK(s.policy == "gpipe<recompute>{.stages = 3, .microbatches = 2, .steps = 1}");
    CHECK(s.ranks[0] == program("0F0 0F1 0R0 0B0 0R1 0B1 0STEP0"));
    CHECK(s.ranks[1] == program("1F0 1F1 1R0 1B0 1R1 1B1 1STEP0"));
    CHECK(s.ranks[2] == program("2F0 2F1 2R0 2B0 2R1 2B1 2STEP0"));
}

TEST_CASE("gpipe: per step, every forward before every backward, the update last", "[unit][policy][gpipe][property]") {
    const int P = GENERATE(1, 2, 3, 5);
    const int M = GENERATE(1, 2, 4, 7);
    const int N = GENERATE(1, 3);
    const paci::gpipe<> policy{.stages = P, .microbatches = M, .steps = N};
    CAPTURE(policy);
    const paci::schedule s = policy.generate();
    REQUIRE(s.ranks.size() == static_cast<std::size_t>(P));
    for (int st = 0; st < P; ++st) {
        CAPTURE(st);
        const auto& prog = s.ranks[static_cast<std::size_t>(st)];
        // Closed form: 2 M compute and one STEP per step.
        REQUIRE(prog.size() == static_cast<std::size_t>(N * (2 * M + 1)));
        for (int g = 0; g < N; ++g) {
            const auto base = static_cast<std::size_t>(g * (2 * M + 1));
            for (int m = 0; m < M; ++m) {
                CHECK(prog[base + static_cast<std::size_t>(m)] == paci::action{paci::op::F, st, g * M + m});
                CHECK(prog[base + static_cast<std::size_t>(M + m)] == paci::action{paci::op::B, st, g * M + m});
            }
            CHECK(prog[base + static_cast<std::size_t>(2 * M)] == paci::action{paci::op::STEP, st, g});
        }
        // GPipe stores every micro-batch of a step.
        CHECK(paci_test::peak_in_flight(prog, paci::op::B) == M);
    }
    CHECK(s.size() == static_cast<std::size_t>(P * N * (2 * M + 1)));
    CHECK(s.compute_size() == static_cast<std::size_t>(2 * P * M * N));
}

TEST_CASE("gpipe: action counts in the recompute flavour", "[unit][policy][gpipe][property]") {
    const int P = GENERATE(1, 2, 4);
    const int M = GENERATE(1, 3);
    const int N = GENERATE(1, 2);
    const paci::schedule s = paci::gpipe<backward_flavour::recompute>{.stages = P, .microbatches = M, .steps = N}.generate();
    CAPTURE(P, M, N);
    // One R per backward on every stage.
    CHECK(s.compute_size() == static_cast<std::size_t>(3 * P * M * N));
    CHECK(s.size() == s.compute_size() + static_cast<std::size_t>(P * N));
    for (int st = 0; st < P; ++st) {
        const auto& prog = s.ranks[static_cast<std::size_t>(st)];
        CHECK(paci_test::count(prog, paci::op::R) == static_cast<std::size_t>(M * N));
        for (std::size_t i = 0; i < prog.size(); ++i) {
            if (prog[i].kind != paci::op::B) continue;
            CAPTURE(st, i);
            REQUIRE(i > 0);
            CHECK(prog[i - 1] == paci::action{paci::op::R, st, prog[i].microbatch});
        }
    }
}

TEST_CASE("gpipe: every generated schedule validates", "[unit][policy][gpipe][property]") {
    const int P = GENERATE(1, 2, 3, 4, 6);
    const int M = GENERATE(1, 2, 5, 8);
    const int N = GENERATE(1, 2);
    CAPTURE(P, M, N);
    const auto perf = paci::validate(paci::gpipe<>{.stages = P, .microbatches = M, .steps = N}.generate());
    INFO(perf);
    CHECK(perf.valid());
    const auto rec = paci::validate(
        paci::gpipe<backward_flavour::recompute>{.stages = P, .microbatches = M, .steps = N}.generate());
    INFO(rec);
    CHECK(rec.valid());
}
