// A user's own test through the installed paci::testing: Catch2's main, one case with the matchers.
#if defined(PACI_CATCH2_V2)
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#else
#include <catch2/catch_test_macros.hpp>
#endif

#include <paci/testing/matchers.hpp>

#include <paci/core/lower.hpp>
#include <paci/policy/one_f_one_b.hpp>

TEST_CASE("a user's schedule passes paci's matchers") {
    const paci::one_f_one_b<> policy{.stages = 2, .microbatches = 2, .steps = 1};
    REQUIRE_THAT(paci::lower(policy.generate()), paci::testing::is_valid());
    REQUIRE_THAT(paci::replay(policy.generate(), policy.controller()), paci::testing::has_drift_at_most(0));
}
