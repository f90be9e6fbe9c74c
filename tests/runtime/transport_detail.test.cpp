// The machinery the transports share (include/paci/runtime/detail/): the polling rhythm and loop,
// the start-up agreement's check and message, and buffer recycling.

#include <paci/runtime/detail/agreement.hpp>
#include <paci/runtime/detail/backoff.hpp>
#include <paci/runtime/detail/recycler.hpp>

#include "support/catch.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("backoff: no pause runs past the deadline", "[runtime][transport]") {
    paci::detail::backoff pace(0ns, 1ms, 50ms); // sleeps from the first pause, growing to 50 ms
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + 5ms;
    for (int k = 0; k < 20; ++k) pace.pause(deadline);
    CHECK(std::chrono::steady_clock::now() - start < 500ms); // 20 pauses, but none past the deadline
}

TEST_CASE("poll_until: done, check and expire", "[runtime][transport]") {
    int tests = 0;
    paci::detail::poll_until(
        paci::detail::backoff(1ms, 1us, 10us), 1s, [&] { return ++tests == 3; }, [] {},
        [] { throw std::logic_error("expired"); });
    CHECK(tests == 3);
    CHECK_THROWS_WITH(paci::detail::poll_until(
                          paci::detail::backoff(0ns, 1us, 100us), 2ms, [] { return false; }, [] {},
                          [] { throw std::runtime_error("expired"); }),
                      "expired");
    CHECK_THROWS_WITH(paci::detail::poll_until(
                          paci::detail::backoff(0ns, 1us, 100us), 1s, [] { return false; },
                          [] { throw std::runtime_error("aborted"); }, [] {}),
                      "aborted");
}

TEST_CASE("require_same_fingerprints names the first rank that differs", "[runtime][transport]") {
    const std::vector<std::uint64_t> same{7, 7, 7}, differ{7, 7, 9, 8};
    CHECK_NOTHROW(paci::detail::require_same_fingerprints(same));
    CHECK_NOTHROW(paci::detail::require_same_fingerprints(std::vector<std::uint64_t>{}));
    CHECK_THROWS_AS(paci::detail::require_same_fingerprints(differ), paci::config_error);
    CHECK_THROWS_WITH(paci::detail::require_same_fingerprints(differ),
                      "paci::executor: configuration of rank (2) differs from rank 0's (a different policy, stage "
                      "count or micro-batch count; fingerprints 9 and 7)");
}

TEST_CASE("recycler keeps up to its limit and hands out what fits", "[runtime][transport]") {
    paci::detail::recycler<std::unique_ptr<std::vector<int>>> pool(2);
    CHECK(pool.keep(std::make_unique<std::vector<int>>(10)));
    CHECK(pool.keep(std::make_unique<std::vector<int>>(5)));
    CHECK_FALSE(pool.keep(std::make_unique<std::vector<int>>(7))); // full: dropped
    CHECK(pool.size() == 2);
    const auto holds = [](std::size_t n) { return [n](const auto& b) { return b->size() >= n; }; };
    const auto size = [](const auto& b) { return b->size(); };
    CHECK_FALSE(pool.take(holds(11)).has_value());
    auto first = pool.take(holds(4)); // the first that fits
    REQUIRE(first.has_value());
    CHECK((*first)->size() == 10);
    CHECK(pool.keep(std::move(*first)));
    auto smallest = pool.take_smallest(holds(4), size);
    REQUIRE(smallest.has_value());
    CHECK((*smallest)->size() == 5);
    CHECK(pool.size() == 1);
    pool.clear();
    CHECK(pool.size() == 0);
    paci::detail::recycler<int> off; // limit 0: keeps nothing
    CHECK_FALSE(off.keep(1));
}
