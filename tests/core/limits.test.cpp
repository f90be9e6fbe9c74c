// Unit tests for include/paci/core/limits.hpp (paci::limits, set_limits, scoped_limits and the size
// checks) and for paci::fingerprint of include/paci/core/schedule.hpp.

#include <paci/core/limits.hpp>
#include <paci/core/lower.hpp>
#include <paci/core/schedule.hpp>
#include <paci/policy/one_f_one_b.hpp>

#include "support/catch.hpp"
#include "support/lowerings.hpp"
#include "support/program_text.hpp"

#include <cstdint>
#include <limits>

TEST_CASE("limits: defaults, set_limits returns the previous ones, scoped_limits restores them", "[unit][core][limits]") {
    const paci::limits defaults = paci::current_limits();
    CHECK(defaults == paci::limits{.max_actions = std::uint64_t{1} << 27, .max_bytes = std::uint64_t{1} << 32});
    {
        const paci::scoped_limits scope{{.max_actions = 5, .max_bytes = 6}};
        CHECK(paci::current_limits() == paci::limits{.max_actions = 5, .max_bytes = 6});
        const paci::limits before = paci::set_limits({.max_actions = 7, .max_bytes = 8});
        CHECK(before == paci::limits{.max_actions = 5, .max_bytes = 6});
        CHECK(paci::current_limits() == paci::limits{.max_actions = 7, .max_bytes = 8});
    }
    CHECK(paci::current_limits() == defaults);
    REQUIRE_THROWS_WITH(paci::set_limits({.max_actions = 0, .max_bytes = 1}), "paci::set_limits: max_actions (0) must be >= 1");
    REQUIRE_THROWS_WITH(paci::set_limits({.max_actions = 1, .max_bytes = 0}), "paci::set_limits: max_bytes (0) must be >= 1");
    CHECK(paci::current_limits() == defaults);
}

TEST_CASE("limits: sizes saturate instead of wrapping, and the message states the size", "[unit][core][limits]") {
    constexpr std::uint64_t top = std::numeric_limits<std::uint64_t>::max();
    CHECK(paci::detail::mul_sat(top / 2, 3) == top);
    CHECK(paci::detail::mul_sat(1U << 20, 1U << 20) == std::uint64_t{1} << 40);
    CHECK(paci::detail::add_sat(top - 1, 2) == top);
    // 32767 stages x (2 x 100000 micro-batches + 1 STEP): 6,553,432,767 actions.
    REQUIRE_THROWS_WITH(paci::detail::check_schedule_size("paci", std::uint64_t{32767} * 200001),
                        "paci::paci: schedule size (6553432767 actions, 52427462136 bytes) must be within paci::limits "
                        "(134217728 actions, 4294967296 bytes); raise them with paci::set_limits");
    CHECK_NOTHROW(paci::detail::check_schedule_size("paci", std::uint64_t{1} << 27));
    REQUIRE_THROWS_AS(paci::detail::check_tables("replay", 32767, 2147483647, 24, 0), paci::config_error);
}

TEST_CASE("fingerprint: equal schedules agree; another lowering, order or count differs", "[unit][core][limits]") {
    const auto [compute, eager, safe] = paci_test::lowerings_of_one_schedule();
    CHECK(paci::fingerprint(eager) == paci::fingerprint(paci::lower(compute, paci::lowering::eager)));
    CHECK(paci::fingerprint(eager) != paci::fingerprint(safe));
    CHECK(paci::fingerprint(eager) != paci::fingerprint(compute));
    paci::schedule renamed = compute;
    renamed.policy = "another name";
    CHECK(paci::fingerprint(renamed) == paci::fingerprint(compute)); // the name is not the content
    paci::schedule recounted = compute;
    recounted.microbatches = 4;
    CHECK(paci::fingerprint(recounted) != paci::fingerprint(compute));
}
