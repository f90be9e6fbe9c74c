// Unit tests for include/paci/policy/one_f_one_b.hpp: 1F1B-flush as a value (printing, equality,
// concept), every configuration error of the 1F1B machine, and the schedule it generates, written out
// by hand for small cases and checked against closed forms (in-flight peak min(M, cap), counts).

#include <paci/analysis/validate.hpp>
#include <paci/core/error.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/version/flush.hpp>

#include "support/catch.hpp"
#include "support/print.hpp"
#include "support/program_text.hpp"
#include "support/synchronous.hpp"

#include <algorithm>
#include <vector>

namespace {

using paci::backward_flavour;
using paci_test::print;
using paci_test::program;
using F1B1 = paci::one_f_one_b<>;

} // namespace

TEST_CASE("one_f_one_b: a regular, printable policy value", "[unit][policy][one_f_one_b]") {
    STATIC_REQUIRE(paci::schedule_policy<F1B1>);
    STATIC_REQUIRE(paci::schedule_policy<paci::one_f_one_b<backward_flavour::recompute>>);
    STATIC_REQUIRE(F1B1::name == "one_f_one_b");
    STATIC_REQUIRE(F1B1::flavour == backward_flavour::perf);

    const F1B1 def{};
    CHECK(def.stages == 1);
    CHECK(def.microbatches == 1);
    CHECK(def.steps == 1);
    CHECK(def.cap.empty());

    CHECK(print(F1B1{.stages = 4, .microbatches = 8, .steps = 1}) ==
          "one_f_one_b<perf>{.stages = 4, .microbatches = 8, .steps = 1}");
    CHECK(print(paci::one_f_one_b<backward_flavour::recompute>{
              .stages = 3, .microbatches = 2, .steps = 6, .cap = {2, 2, 1}}) ==
          "one_f_one_b<recompute>{.stages = 3, .microbatches = 2, .steps = 6, .cap = {2, 2, 1}}");

    const F1B1 p{.stages = 3, .microbatches = 4, .steps = 2, .cap = {3, 2, 1}};
    CHECK(p == F1B1{.stages = 3, .microbatches = 4, .steps = 2, .cap = {3, 2, 1}});
    CHECK_FALSE(p == F1B1{.stages = 3, .microbatches = 4, .steps = 2, .cap = {2, 2, 1}});
    CHECK_FALSE(p == F1B1{.stages = 3, .microbatches = 4, .steps = 2});
    CHECK_FALSE(p == F1B1{.stages = 3, .microbatches = 4, .steps = 1, .cap = {3, 2, 1}});
    CHECK_FALSE(p == F1B1{.stages = 3, .microbatches = 5, .steps = 2, .cap = {3, 2, 1}});
}

TEST_CASE("one_f_one_b: shape, controller, caps and bounds", "[unit][policy][one_f_one_b]") {
    const F1B1 p{.stages = 4, .microbatches = 3, .steps = 2};
    CHECK(p.shape() == paci::pipeline_shape{4, 4, paci::stage_map::loop});
    CHECK(p.controller() == paci::flush{3});
    // Default cap: the 1F1B footprint P - s.
    CHECK(p.cap_of(0) == 4);
    CHECK(p.cap_of(1) == 3);
    CHECK(p.cap_of(3) == 1);
    paci_test::check_synchronous_bounds(p, 4);
    const F1B1 capped{.stages = 3, .microbatches = 3, .steps = 1, .cap = {2, 2, 1}};
    CHECK(capped.cap_of(0) == 2);
    CHECK(capped.cap_of(1) == 2);
    CHECK(capped.cap_of(2) == 1);
}

TEST_CASE("one_f_one_b: configuration errors", "[unit][policy][one_f_one_b][errors]") {
    SECTION("zero stages") {
        REQUIRE_THROWS_AS((F1B1{.stages = 0}.validate()), paci::config_error);
        REQUIRE_THROWS_WITH((F1B1{.stages = 0}.validate()), "paci::one_f_one_b: stages (0) must be >= 1");
        REQUIRE_THROWS_WITH((F1B1{.stages = 0}.generate()), "paci::one_f_one_b: stages (0) must be >= 1");
    }
    SECTION("too many stages") {
        REQUIRE_THROWS_WITH((F1B1{.stages = 40000}.validate()), "paci::one_f_one_b: stages (40000) must be <= 32767");
    }
    SECTION("zero micro-batches") {
        REQUIRE_THROWS_WITH((F1B1{.stages = 2, .microbatches = 0}.validate()),
                            "paci::one_f_one_b: microbatches (0) must be >= 1");
    }
    SECTION("zero steps") {
        REQUIRE_THROWS_WITH((F1B1{.stages = 2, .microbatches = 2, .steps = 0}.validate()),
                            "paci::one_f_one_b: steps (0) must be >= 1");
        REQUIRE_THROWS_WITH((F1B1{.stages = 2, .microbatches = 2, .steps = -1}.generate()),
                            "paci::one_f_one_b: steps (-1) must be >= 1");
    }
    SECTION("too many micro-batches in the window") {
        REQUIRE_THROWS_WITH((F1B1{.stages = 2, .microbatches = 1 << 20, .steps = 1 << 12}.validate()),
                            "paci::one_f_one_b: microbatches * steps (4294967296) must fit in 32 bits");
    }
    SECTION("a cap of the wrong size") {
        REQUIRE_THROWS_WITH((F1B1{.stages = 3, .microbatches = 2, .steps = 1, .cap = {2, 1}}.validate()),
                            "paci::one_f_one_b: cap size (2) must equal stages (3)");
        REQUIRE_THROWS_WITH((F1B1{.stages = 2, .microbatches = 2, .steps = 1, .cap = {3, 2, 1}}.validate()),
                            "paci::one_f_one_b: cap size (3) must equal stages (2)");
    }
    SECTION("a cap below 1") {
        REQUIRE_THROWS_WITH((F1B1{.stages = 3, .microbatches = 2, .steps = 1, .cap = {2, 0, 1}}.validate()),
                            "paci::one_f_one_b: cap[1] (0) must be >= 1");
        REQUIRE_THROWS_WITH((F1B1{.stages = 2, .microbatches = 2, .steps = 1, .cap = {-1, 1}}.validate()),
                            "paci::one_f_one_b: cap[0] (-1) must be >= 1");
    }
    SECTION("a cap that increases along the pipeline") {
        REQUIRE_THROWS_WITH((F1B1{.stages = 3, .microbatches = 2, .steps = 1, .cap = {2, 3, 1}}.validate()),
                            "paci::one_f_one_b: cap[1] (3) must be <= cap[0] (2)");
        REQUIRE_THROWS_WITH((F1B1{.stages = 4, .microbatches = 2, .steps = 1, .cap = {4, 2, 3, 1}}.validate()),
                            "paci::one_f_one_b: cap[2] (3) must be <= cap[1] (2)");
    }
    SECTION("a last cap other than 1") {
        REQUIRE_THROWS_WITH((F1B1{.stages = 3, .microbatches = 2, .steps = 1, .cap = {3, 2, 2}}.validate()),
                            "paci::one_f_one_b: cap[2] (2) must be 1: the last stage runs forward and backward back "
                            "to back");
        REQUIRE_THROWS_WITH((F1B1{.stages = 1, .microbatches = 2, .steps = 1, .cap = {2}}.validate()),
                            "paci::one_f_one_b: cap[0] (2) must be 1: the last stage runs forward and backward back "
                            "to back");
    }
    SECTION("valid user caps") {
        CHECK_NOTHROW(F1B1{.stages = 3, .microbatches = 2, .steps = 1, .cap = {1, 1, 1}}.validate());
        CHECK_NOTHROW(F1B1{.stages = 3, .microbatches = 2, .steps = 1, .cap = {3, 2, 1}}.validate());
        CHECK_NOTHROW(F1B1{.stages = 3, .microbatches = 2, .steps = 1, .cap = {2, 2, 1}}.validate());
    }
    SECTION("a cap above P - s only adds drift and memory: refused") {
        REQUIRE_THROWS_WITH((F1B1{.stages = 3, .microbatches = 2, .steps = 1, .cap = {7, 7, 1}}.validate()),
                            "paci::one_f_one_b: cap[0] (7) must be <= stages - 0 (3): a cap above P - s only adds "
                            "drift and memory");
    }
}

TEST_CASE("one_f_one_b: 3 stages, 4 micro-batches, by hand", "[unit][policy][one_f_one_b]") {
    const paci::schedule s = F1B1{.stages = 3, .microbatches = 4, .steps = 1}.generate();
    CHECK(s.shape == paci::pipeline_shape{3, 3, paci::stage_map::loop});
    CHECK(s.microbatches == 4);
    CHECK(s.steps == 1);
    CHECK(s.policy == "one_f_one_b<perf>{.stages = 3, .microbatches = 4, .steps = 1}");
    REQUIRE(s.ranks.size() == 3);
    CHECK(s.ranks[0] == program("0F0 0F1 0F2 0B0 0F3 0B1 0B2 0B3 0STEP0"));
    CHECK(s.ranks[1] == program("1F0 1F1 1B0 1F2 1B1 1F3 1B2 1B3 1STEP0"));
    CHECK(s.ranks[2] == program("2F0 2B0 2F1 2B1 2F2 2B2 2F3 2B3 2STEP0"));
}

TEST_CASE("one_f_one_b: fewer micro-batches than stages fill only what there is", "[unit][policy][one_f_one_b]") {
    const paci::schedule s = F1B1{.stages = 3, .microbatches = 2, .steps = 1}.generate();
    CHECK(s.ranks[0] == program("0F0 0F1 0B0 0B1 0STEP0"));
    CHECK(s.ranks[1] == program("1F0 1F1 1B0 1B1 1STEP0"));
    CHECK(s.ranks[2] == program("2F0 2B0 2F1 2B1 2STEP0"));
}

TEST_CASE("one_f_one_b: the flush drains every group before the next", "[unit][policy][one_f_one_b]") {
    const paci::schedule s = F1B1{.stages = 2, .microbatches = 2, .steps = 2}.generate();
    CHECK(s.microbatches == 4);
    CHECK(s.steps == 2);
    CHECK(s.ranks[0] == program("0F0 0F1 0B0 0B1 0STEP0 0F2 0F3 0B2 0B3 0STEP1"));
    CHECK(s.ranks[1] == program("1F0 1B0 1F1 1B1 1STEP0 1F2 1B2 1F3 1B3 1STEP1"));
}

TEST_CASE("one_f_one_b: a user cap limits the fill", "[unit][policy][one_f_one_b]") {
    const paci::schedule s = F1B1{.stages = 3, .microbatches = 4, .steps = 1, .cap = {2, 2, 1}}.generate();
    CHECK(s.policy == "one_f_one_b<perf>{.stages = 3, .microbatches = 4, .steps = 1, .cap = {2, 2, 1}}");
    CHECK(s.ranks[0] == program("0F0 0F1 0B0 0F2 0B1 0F3 0B2 0B3 0STEP0"));
    CHECK(s.ranks[1] == program("1F0 1F1 1B0 1F2 1B1 1F3 1B2 1B3 1STEP0"));
    CHECK(s.ranks[2] == program("2F0 2B0 2F1 2B1 2F2 2B2 2F3 2B3 2STEP0"));
}

TEST_CASE("one_f_one_b: recompute puts R right before each backward except on the last stage",
          "[unit][policy][one_f_one_b]") {
    const paci::schedule s =
        paci::one_f_one_b<backward_flavour::recompute>{.stages = 2, .microbatches = 3, .steps = 1}.generate();
    CHECK(s.policy == "one_f_one_b<recompute>{.stages = 2, .microbatches = 3, .steps = 1}");
    CHECK(s.ranks[0] == program("0F0 0F1 0R0 0B0 0F2 0R1 0B1 0R2 0B2 0STEP0"));
    CHECK(s.ranks[1] == program("1F0 1B0 1F1 1B1 1F2 1B2 1STEP0"));
}

TEST_CASE("one_f_one_b: in flight, order and counts follow closed forms", "[unit][policy][one_f_one_b][property]") {
    const int P = GENERATE(1, 2, 3, 4, 6);
    const int M = GENERATE(1, 2, 3, 5, 8);
    const int N = GENERATE(1, 3);
    const F1B1 policy{.stages = P, .microbatches = M, .steps = N};
    CAPTURE(policy);
    const paci::schedule s = policy.generate();
    REQUIRE(s.ranks.size() == static_cast<std::size_t>(P));
    CHECK(s.microbatches == M * N);
    CHECK(s.steps == N);
    for (int st = 0; st < P; ++st) {
        CAPTURE(st);
        const auto& prog = s.ranks[static_cast<std::size_t>(st)];
        CHECK(prog.size() == static_cast<std::size_t>(2 * M * N + N));
        // Peak stored activations: min(M, P - s).
        CHECK(paci_test::peak_in_flight(prog, paci::op::B) == std::min(M, P - st));
        // Forwards and backwards each in micro-batch order; STEP g after backward g * M + M - 1 and
        // before forward (g + 1) * M (the flush).
        int next_f = 0, next_b = 0, next_step = 0;
        for (const auto& a : prog) {
            CHECK(a.stage == st);
            if (a.kind == paci::op::F) {
                CHECK(a.microbatch == next_f++);
                CHECK(a.microbatch / M == next_step); // never ahead of the updates
            } else if (a.kind == paci::op::B) {
                CHECK(a.microbatch == next_b++);
            } else {
                REQUIRE(a.kind == paci::op::STEP);
                CHECK(a.microbatch == next_step++);
                CHECK(next_b == next_step * M);
            }
        }
        CHECK(next_f == M * N);
        CHECK(next_b == M * N);
        CHECK(next_step == N);
    }
}

TEST_CASE("one_f_one_b: recompute adds one R per backward off the last stage", "[unit][policy][one_f_one_b][property]") {
    const int P = GENERATE(1, 2, 4);
    const int M = GENERATE(1, 4);
    const int N = GENERATE(1, 2);
    const paci::schedule s =
        paci::one_f_one_b<backward_flavour::recompute>{.stages = P, .microbatches = M, .steps = N}.generate();
    CAPTURE(P, M, N);
    CHECK(s.compute_size() == static_cast<std::size_t>(2 * P * M * N + (P - 1) * M * N));
    for (int st = 0; st < P; ++st) {
        const auto& prog = s.ranks[static_cast<std::size_t>(st)];
        for (std::size_t i = 0; i < prog.size(); ++i) {
            if (prog[i].kind != paci::op::B) continue;
            CAPTURE(st, i);
            if (st == P - 1) {
                CHECK((i == 0 || prog[i - 1].kind != paci::op::R));
            } else {
                REQUIRE(i > 0);
                CHECK(prog[i - 1] == paci::action{paci::op::R, st, prog[i].microbatch});
            }
        }
    }
}

TEST_CASE("one_f_one_b: every generated schedule validates", "[unit][policy][one_f_one_b][property]") {
    const int P = GENERATE(1, 2, 3, 5, 8);
    const int M = GENERATE(1, 2, 4, 7);
    const int N = GENERATE(1, 2);
    CAPTURE(P, M, N);
    const auto perf = paci::validate(F1B1{.stages = P, .microbatches = M, .steps = N}.generate());
    INFO(perf);
    CHECK(perf.valid());
    const auto rec = paci::validate(
        paci::one_f_one_b<backward_flavour::recompute>{.stages = P, .microbatches = M, .steps = N}.generate());
    INFO(rec);
    CHECK(rec.valid());
    // A cap of 1 everywhere is legal and runs one micro-batch at a time.
    std::vector<int> ones(static_cast<std::size_t>(P), 1);
    const paci::schedule serial = F1B1{.stages = P, .microbatches = M, .steps = N, .cap = ones}.generate();
    CHECK(paci::validate(serial).valid());
    for (const auto& prog : serial.ranks) CHECK(paci_test::peak_in_flight(prog, paci::op::B) == 1);
}
