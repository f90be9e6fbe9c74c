// Unit tests for include/paci/policy/pipedream.hpp: PipeDream (weight stashing) and PipeDream-2BW
// (double buffering) as values, their errors (2BW's micro-batch requirement), their promised bounds,
// and their schedules: the same 1F1B machine without a flush as PACI, so the same compute order.

#include <paci/analysis/validate.hpp>
#include <paci/core/error.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/pipedream.hpp>
#include <paci/version/double_buffer.hpp>
#include <paci/version/stash.hpp>

#include "support/catch.hpp"
#include "support/print.hpp"
#include "support/program_text.hpp"

#include <vector>

namespace {

using paci_test::print;
using paci_test::program;

} // namespace

TEST_CASE("pipedream: regular, printable policy values", "[unit][policy][pipedream]") {
    STATIC_REQUIRE(paci::schedule_policy<paci::pipedream>);
    STATIC_REQUIRE(paci::schedule_policy<paci::pipedream_2bw>);
    STATIC_REQUIRE(paci::pipedream::name == "pipedream");
    STATIC_REQUIRE(paci::pipedream_2bw::name == "pipedream_2bw");

    CHECK(print(paci::pipedream{.stages = 4, .microbatches = 1, .steps = 8}) ==
          "pipedream<perf>{.stages = 4, .microbatches = 1, .steps = 8}");
    CHECK(print(paci::pipedream_2bw{.stages = 4, .microbatches = 3, .steps = 2, .cap = {4, 3, 2, 1}}) ==
          "pipedream_2bw<perf>{.stages = 4, .microbatches = 3, .steps = 2, .cap = {4, 3, 2, 1}}");

    const paci::pipedream p{.stages = 4, .microbatches = 2, .steps = 3};
    CHECK(p == paci::pipedream{.stages = 4, .microbatches = 2, .steps = 3});
    CHECK_FALSE(p == paci::pipedream{.stages = 4, .microbatches = 2, .steps = 4});
    CHECK_FALSE(p == paci::pipedream{.stages = 4, .microbatches = 1, .steps = 3});
    CHECK_FALSE(p == paci::pipedream{.stages = 5, .microbatches = 2, .steps = 3});
}

TEST_CASE("pipedream: controllers stash the forward's weights", "[unit][policy][pipedream]") {
    const paci::pipedream p{.stages = 3, .microbatches = 2, .steps = 1};
    CHECK(p.controller() == paci::stash{2});
    CHECK(p.shape() == paci::pipeline_shape{3, 3, paci::stage_map::loop});
    const paci::pipedream_2bw q{.stages = 3, .microbatches = 5, .steps = 1};
    CHECK(q.controller() == paci::double_buffer{5});
}

TEST_CASE("pipedream: bounds: no drift, gradients ceil((P-1-s)/M) versions late", "[unit][policy][pipedream]") {
    SECTION("an update per micro-batch: P - 1 - s late, P - s versions") {
        const paci::pipedream p{.stages = 4, .microbatches = 1, .steps = 8};
        const int staleness[] = {3, 2, 1, 0};
        const int versions[] = {4, 3, 2, 1};
        for (int s = 0; s < 4; ++s) {
            CAPTURE(s);
            CHECK(p.drift_bound(s) == 0);
            CHECK(p.staleness_bound(s) == staleness[s]);
            CHECK(p.versions_bound(s) == versions[s]);
        }
    }
    SECTION("an update every 2 micro-batches") {
        const paci::pipedream p{.stages = 4, .microbatches = 2, .steps = 8};
        const int staleness[] = {2, 1, 1, 0};
        for (int s = 0; s < 4; ++s) {
            CAPTURE(s);
            CHECK(p.drift_bound(s) == 0);
            CHECK(p.staleness_bound(s) == staleness[s]);
            CHECK(p.versions_bound(s) == staleness[s] + 1);
        }
    }
    SECTION("2BW: at most one version late, at most two buffers") {
        const paci::pipedream_2bw p{.stages = 4, .microbatches = 3, .steps = 8};
        const int staleness[] = {1, 1, 1, 0};
        const int versions[] = {2, 2, 2, 1};
        for (int s = 0; s < 4; ++s) {
            CAPTURE(s);
            CHECK(p.drift_bound(s) == 0);
            CHECK(p.staleness_bound(s) == staleness[s]);
            CHECK(p.versions_bound(s) == versions[s]);
        }
    }
}

TEST_CASE("pipedream: configuration errors", "[unit][policy][pipedream][errors]") {
    REQUIRE_THROWS_AS((paci::pipedream{.stages = 0}.validate()), paci::config_error);
    REQUIRE_THROWS_WITH((paci::pipedream{.stages = 0}.validate()), "paci::pipedream: stages (0) must be >= 1");
    REQUIRE_THROWS_WITH((paci::pipedream{.stages = 2, .microbatches = 0}.validate()),
                        "paci::pipedream: microbatches (0) must be >= 1");
    REQUIRE_THROWS_WITH((paci::pipedream{.stages = 2, .microbatches = 1, .steps = 0}.generate()),
                        "paci::pipedream: steps (0) must be >= 1");
    REQUIRE_THROWS_WITH((paci::pipedream{.stages = 2, .microbatches = 1, .steps = 1, .cap = {2, 2}}.validate()),
                        "paci::pipedream: cap[1] (2) must be 1: the last stage runs forward and backward back to "
                        "back");
    REQUIRE_THROWS_WITH((paci::pipedream_2bw{.stages = 0}.validate()), "paci::pipedream_2bw: stages (0) must be >= 1");
}

TEST_CASE("pipedream_2bw: needs at least cap[0] - 1 micro-batches per update", "[unit][policy][pipedream][errors]") {
    REQUIRE_THROWS_AS((paci::pipedream_2bw{.stages = 4, .microbatches = 2, .steps = 1}.validate()), paci::config_error);
    REQUIRE_THROWS_WITH((paci::pipedream_2bw{.stages = 4, .microbatches = 2, .steps = 1}.validate()),
                        "paci::pipedream_2bw: microbatches (2) must be >= cap[0] - 1 (3) so that two weight buffers "
                        "suffice");
    REQUIRE_THROWS_WITH((paci::pipedream_2bw{.stages = 4, .microbatches = 2, .steps = 1}.generate()),
                        "paci::pipedream_2bw: microbatches (2) must be >= cap[0] - 1 (3) so that two weight buffers "
                        "suffice");
    CHECK_NOTHROW(paci::pipedream_2bw{.stages = 4, .microbatches = 3, .steps = 1}.validate());
    // A smaller user cap lowers the requirement.
    CHECK_NOTHROW(paci::pipedream_2bw{.stages = 4, .microbatches = 1, .steps = 1, .cap = {2, 1, 1, 1}}.validate());
    REQUIRE_THROWS_WITH((paci::pipedream_2bw{.stages = 4, .microbatches = 1, .steps = 1, .cap = {3, 2, 1, 1}}.validate()),
                        "paci::pipedream_2bw: microbatches (1) must be >= cap[0] - 1 (2) so that two weight buffers "
                        "suffice");
    // PipeDream with stashing has no such requirement.
    CHECK_NOTHROW(paci::pipedream{.stages = 4, .microbatches = 1, .steps = 1}.validate());
}

TEST_CASE("pipedream: 3 stages, an update per micro-batch, by hand", "[unit][policy][pipedream]") {
    const paci::schedule s = paci::pipedream{.stages = 3, .microbatches = 1, .steps = 4}.generate();
    CHECK(s.microbatches == 4);
    CHECK(s.steps == 4);
    CHECK(s.policy == "pipedream<perf>{.stages = 3, .microbatches = 1, .steps = 4}");
    CHECK(s.ranks[0] == program("0F0 0F1 0F2 0B0 0STEP0 0F3 0B1 0STEP1 0B2 0STEP2 0B3 0STEP3"));
    CHECK(s.ranks[1] == program("1F0 1F1 1B0 1STEP0 1F2 1B1 1STEP1 1F3 1B2 1STEP2 1B3 1STEP3"));
    CHECK(s.ranks[2] == program("2F0 2B0 2STEP0 2F1 2B1 2STEP1 2F2 2B2 2STEP2 2F3 2B3 2STEP3"));
}

TEST_CASE("pipedream: the same compute order as PACI with the same numbers", "[unit][policy][pipedream][property]") {
    const int P = GENERATE(1, 2, 3, 5);
    const int M = GENERATE(1, 2, 4);
    const int N = GENERATE(1, 3);
    CAPTURE(P, M, N);
    const paci::schedule pd = paci::pipedream{.stages = P, .microbatches = M, .steps = N}.generate();
    const paci::schedule pa = paci::paci_policy<>{.stages = P, .microbatches = M, .steps = N}.generate();
    CHECK(pd.ranks == pa.ranks);
    CHECK(pd.policy != pa.policy);
    CHECK(pd.size() == static_cast<std::size_t>(P * (2 * M * N + N)));
    if (M >= P - 1) {
        const paci::schedule bw = paci::pipedream_2bw{.stages = P, .microbatches = M, .steps = N}.generate();
        CHECK(bw.ranks == pa.ranks);
        CHECK(bw.policy == print(paci::pipedream_2bw{.stages = P, .microbatches = M, .steps = N}));
    }
}

TEST_CASE("pipedream: every generated schedule validates", "[unit][policy][pipedream][property]") {
    const int P = GENERATE(1, 2, 3, 4, 6);
    const int M = GENERATE(1, 2, 3, 5, 8);
    const int N = GENERATE(1, 3);
    CAPTURE(P, M, N);
    const auto pd = paci::validate(paci::pipedream{.stages = P, .microbatches = M, .steps = N}.generate());
    INFO(pd);
    CHECK(pd.valid());
    if (M >= P - 1) {
        const auto bw = paci::validate(paci::pipedream_2bw{.stages = P, .microbatches = M, .steps = N}.generate());
        INFO(bw);
        CHECK(bw.valid());
    } else {
        REQUIRE_THROWS_AS((paci::pipedream_2bw{.stages = P, .microbatches = M, .steps = N}.generate()), paci::config_error);
    }
}

TEST_CASE("generate: a schedule past paci::limits is refused before anything is allocated", "[unit][policy]") {
    // Found by the API fuzzer (tests/fuzz/findings/api/pipedream-generate-reserves-32-gb): a valid
    // policy whose schedule needs 8 x (2 x 2 x 1,023,214,080 + 2) actions reserved them all.
    const paci::pipedream p{.stages = 8, .microbatches = 1023214080, .steps = 2};
    REQUIRE_NOTHROW(p.validate());
    REQUIRE_THROWS_AS(p.generate(), paci::config_error);
    REQUIRE_THROWS_WITH(p.generate(), Catch::Matchers::ContainsSubstring("paci::pipedream: schedule size (32742850576 actions"));
}
