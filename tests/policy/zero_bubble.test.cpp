// Unit tests for include/paci/policy/zero_bubble.hpp: ZB-H1 and ZB-H2 as values, their errors, the
// documented warm-up and W deferral, schedules written out by hand from the header's rule (warm-up
// forwards, then I, the W lagging defer(s) micro-batches behind, F; the remaining Ws at the end), and
// the documented activation footprints (P for H1, 2P - 1 at stage 0 for H2).

#include <paci/analysis/validate.hpp>
#include <paci/core/error.hpp>
#include <paci/policy/zero_bubble.hpp>
#include <paci/version/flush.hpp>

#include "support/catch.hpp"
#include "support/print.hpp"
#include "support/program_text.hpp"
#include "support/synchronous.hpp"

#include <algorithm>

namespace {

using paci_test::print;
using paci_test::program;

} // namespace

TEST_CASE("zero_bubble: regular, printable policy values", "[unit][policy][zero_bubble]") {
    STATIC_REQUIRE(paci::schedule_policy<paci::zb_h1>);
    STATIC_REQUIRE(paci::schedule_policy<paci::zb_h2>);
    STATIC_REQUIRE(paci::zb_h1::name == "zb_h1");
    STATIC_REQUIRE(paci::zb_h2::name == "zb_h2");
    STATIC_REQUIRE(paci::zb_h1::variant == paci::zb_variant::h1);
    CHECK(paci::to_string(paci::zb_variant::h1) == "h1");
    CHECK(paci::to_string(paci::zb_variant::h2) == "h2");

    CHECK(print(paci::zb_h1{.stages = 4, .microbatches = 8, .steps = 1}) == "zb_h1{.stages = 4, .microbatches = 8, .steps = 1}");
    CHECK(print(paci::zb_h2{.stages = 2, .microbatches = 3, .steps = 7}) == "zb_h2{.stages = 2, .microbatches = 3, .steps = 7}");

    const paci::zb_h1 p{.stages = 4, .microbatches = 8, .steps = 2};
    CHECK(p == paci::zb_h1{.stages = 4, .microbatches = 8, .steps = 2});
    CHECK_FALSE(p == paci::zb_h1{.stages = 3, .microbatches = 8, .steps = 2});
    CHECK_FALSE(p == paci::zb_h1{.stages = 4, .microbatches = 7, .steps = 2});
    CHECK_FALSE(p == paci::zb_h1{.stages = 4, .microbatches = 8, .steps = 1});
}

TEST_CASE("zero_bubble: shape, controller and bounds", "[unit][policy][zero_bubble]") {
    const paci::zb_h2 p{.stages = 3, .microbatches = 5, .steps = 2};
    CHECK(p.shape() == paci::pipeline_shape{3, 3, paci::stage_map::loop});
    CHECK(p.controller() == paci::flush{5});
    paci_test::check_synchronous_bounds(p, 3);
}

TEST_CASE("zero_bubble: warm-up and deferral", "[unit][policy][zero_bubble]") {
    const paci::zb_h1 h1{.stages = 4, .microbatches = 8, .steps = 1};
    const paci::zb_h2 h2{.stages = 4, .microbatches = 8, .steps = 1};
    const int h1_warm[] = {4, 3, 2, 1};
    const int h2_warm[] = {7, 5, 3, 1};
    for (int s = 0; s < 4; ++s) {
        CAPTURE(s);
        CHECK(h1.warmup(s) == h1_warm[s]);
        CHECK(h1.defer(s) == s);
        CHECK(h2.warmup(s) == h2_warm[s]);
        CHECK(h2.defer(s) == 2 * s);
    }
    // Capped by the micro-batches of a step.
    CHECK(paci::zb_h2{.stages = 4, .microbatches = 3, .steps = 1}.warmup(0) == 3);
    CHECK(paci::zb_h1{.stages = 4, .microbatches = 2, .steps = 1}.warmup(1) == 2);
}

TEST_CASE("zero_bubble: configuration errors", "[unit][policy][zero_bubble][errors]") {
    REQUIRE_THROWS_AS((paci::zb_h1{.stages = 0}.validate()), paci::config_error);
    REQUIRE_THROWS_WITH((paci::zb_h1{.stages = 0}.validate()), "paci::zb_h1: stages (0) must be >= 1");
    REQUIRE_THROWS_WITH((paci::zb_h2{.stages = 0}.generate()), "paci::zb_h2: stages (0) must be >= 1");
    REQUIRE_THROWS_WITH((paci::zb_h1{.stages = 32768}.validate()), "paci::zb_h1: stages (32768) must be <= 32767");
    REQUIRE_THROWS_WITH((paci::zb_h2{.stages = 2, .microbatches = 0}.validate()),
                        "paci::zb_h2: microbatches (0) must be >= 1");
    REQUIRE_THROWS_WITH((paci::zb_h1{.stages = 2, .microbatches = 1, .steps = 0}.validate()),
                        "paci::zb_h1: steps (0) must be >= 1");
}

TEST_CASE("zero_bubble: ZB-H1, 2 stages, by hand", "[unit][policy][zero_bubble]") {
    SECTION("2 micro-batches") {
        const paci::schedule s = paci::zb_h1{.stages = 2, .microbatches = 2, .steps = 1}.generate();
        CHECK(s.policy == "zb_h1{.stages = 2, .microbatches = 2, .steps = 1}");
        CHECK(s.ranks[0] == program("0F0 0F1 0I0 0W0 0I1 0W1 0STEP0"));
        CHECK(s.ranks[1] == program("1F0 1I0 1F1 1I1 1W0 1W1 1STEP0"));
    }
    SECTION("3 micro-batches") {
        const paci::schedule s = paci::zb_h1{.stages = 2, .microbatches = 3, .steps = 1}.generate();
        // Stage 0: 2 warm-up forwards, W right after its I. Stage 1: 1 warm-up forward, W one behind.
        CHECK(s.ranks[0] == program("0F0 0F1 0I0 0W0 0F2 0I1 0W1 0I2 0W2 0STEP0"));
        CHECK(s.ranks[1] == program("1F0 1I0 1F1 1I1 1W0 1F2 1I2 1W1 1W2 1STEP0"));
        CHECK(paci::validate(s).valid());
    }
}

TEST_CASE("zero_bubble: ZB-H2, 2 stages, by hand", "[unit][policy][zero_bubble]") {
    SECTION("2 micro-batches") {
        const paci::schedule s = paci::zb_h2{.stages = 2, .microbatches = 2, .steps = 1}.generate();
        CHECK(s.ranks[0] == program("0F0 0F1 0I0 0W0 0I1 0W1 0STEP0"));
        CHECK(s.ranks[1] == program("1F0 1I0 1F1 1I1 1W0 1W1 1STEP0"));
    }
    SECTION("3 micro-batches") {
        const paci::schedule s = paci::zb_h2{.stages = 2, .microbatches = 3, .steps = 1}.generate();
        // Stage 0: 3 warm-up forwards. Stage 1: W two behind, so all Ws at the end.
        CHECK(s.ranks[0] == program("0F0 0F1 0F2 0I0 0W0 0I1 0W1 0I2 0W2 0STEP0"));
        CHECK(s.ranks[1] == program("1F0 1I0 1F1 1I1 1F2 1I2 1W0 1W1 1W2 1STEP0"));
        CHECK(paci::validate(s).valid());
    }
    SECTION("2 updates") {
        const paci::schedule s = paci::zb_h2{.stages = 2, .microbatches = 2, .steps = 2}.generate();
        CHECK(s.microbatches == 4);
        CHECK(s.steps == 2);
        CHECK(s.ranks[0] == program("0F0 0F1 0I0 0W0 0I1 0W1 0STEP0 0F2 0F3 0I2 0W2 0I3 0W3 0STEP1"));
        CHECK(s.ranks[1] == program("1F0 1I0 1F1 1I1 1W0 1W1 1STEP0 1F2 1I2 1F3 1I3 1W2 1W3 1STEP1"));
    }
}

TEST_CASE("zero_bubble: counts, order, footprint and validity over a grid", "[unit][policy][zero_bubble][property]") {
    const int P = GENERATE(1, 2, 3, 4, 6);
    const int M = GENERATE(1, 2, 3, 5, 8, 13);
    const int N = GENERATE(1, 2);
    const bool h2 = GENERATE(false, true);
    const paci::schedule s = h2 ? paci::zb_h2{.stages = P, .microbatches = M, .steps = N}.generate()
                                : paci::zb_h1{.stages = P, .microbatches = M, .steps = N}.generate();
    CAPTURE(s.policy);
    REQUIRE(s.ranks.size() == static_cast<std::size_t>(P));
    // Activations are held from F until W (the weight gradient needs them).
    const int footprint = h2 ? 2 * P - 1 : P;
    for (int st = 0; st < P; ++st) {
        CAPTURE(st);
        const auto& prog = s.ranks[static_cast<std::size_t>(st)];
        CHECK(prog.size() == static_cast<std::size_t>(N * (3 * M + 1)));
        CHECK(paci_test::count(prog, paci::op::B) == 0);
        int next_f = 0, next_i = 0, next_w = 0, next_step = 0;
        for (const auto& a : prog) {
            switch (a.kind) {
            case paci::op::F: CHECK(a.microbatch == next_f++); break;
            case paci::op::I: CHECK(a.microbatch == next_i++); CHECK(next_i <= next_f); break;
            case paci::op::W: CHECK(a.microbatch == next_w++); CHECK(next_w <= next_i); break;
            case paci::op::STEP:
                CHECK(a.microbatch == next_step++);
                CHECK(next_w == next_step * M); // the flush: every W of the step before its update
                break;
            default: FAIL("unexpected " << a);
            }
        }
        const int peak = paci_test::peak_in_flight(prog, paci::op::W);
        CHECK(peak <= std::min(M, footprint));
        if (st == 0) CHECK(peak == std::min(M, footprint));
    }
    const auto report = paci::validate(s);
    INFO(report);
    CHECK(report.valid());
}
