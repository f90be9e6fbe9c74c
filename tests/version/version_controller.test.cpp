// The version_controller concept: the reference controllers satisfy it, near misses do not, and each
// controller decides updates and backward versions as documented (expected values worked by hand).

#include <paci/version/accumulation.hpp>
#include <paci/version/double_buffer.hpp>
#include <paci/version/flush.hpp>
#include <paci/version/stash.hpp>
#include <paci/version/version_controller.hpp>

#include "support/catch.hpp"
#include "support/print.hpp"

#include <cstdint>
#include <set>
#include <string>
#include <string_view>

// A named namespace, not an anonymous one: the fakes exist to be inspected by concepts, so most of
// their members are never called, which compilers flag for internal-linkage types.
namespace version_controller_test {

// A minimal model written from the concept's documented requirements. Each near miss below is this
// type with exactly one thing taken away or changed, so a near miss that still satisfied the concept
// would show that requirement is not checked.
struct minimal_controller {
    static constexpr bool flushes = false;
    static constexpr bool stashes = false;
    static constexpr std::string_view name = "minimal";
    [[nodiscard]] bool update_due(std::int64_t n) const { return n % 2 == 0; }
    [[nodiscard]] paci::version_t backward_reads(paci::version_t current, paci::version_t) const { return current; }
    friend bool operator==(const minimal_controller&, const minimal_controller&) = default;
};

struct without_update_due {
    static constexpr bool flushes = false;
    static constexpr bool stashes = false;
    static constexpr std::string_view name = "without_update_due";
    [[nodiscard]] paci::version_t backward_reads(paci::version_t current, paci::version_t) const { return current; }
    friend bool operator==(const without_update_due&, const without_update_due&) = default;
};

// The near miss named in the concept's documentation: it could not express "every a-th backward".
struct update_due_without_count {
    static constexpr bool flushes = false;
    static constexpr bool stashes = false;
    static constexpr std::string_view name = "update_due_without_count";
    [[nodiscard]] bool update_due() const { return true; }
    [[nodiscard]] paci::version_t backward_reads(paci::version_t current, paci::version_t) const { return current; }
    friend bool operator==(const update_due_without_count&, const update_due_without_count&) = default;
};

struct update_due_not_const {
    static constexpr bool flushes = false;
    static constexpr bool stashes = false;
    static constexpr std::string_view name = "update_due_not_const";
    [[nodiscard]] bool update_due(std::int64_t n) { return n % 2 == 0; }
    [[nodiscard]] paci::version_t backward_reads(paci::version_t current, paci::version_t) const { return current; }
    friend bool operator==(const update_due_not_const&, const update_due_not_const&) = default;
};

struct update_due_returns_int {
    static constexpr bool flushes = false;
    static constexpr bool stashes = false;
    static constexpr std::string_view name = "update_due_returns_int";
    [[nodiscard]] int update_due(std::int64_t n) const { return n % 2 == 0 ? 1 : 0; }
    [[nodiscard]] paci::version_t backward_reads(paci::version_t current, paci::version_t) const { return current; }
    friend bool operator==(const update_due_returns_int&, const update_due_returns_int&) = default;
};

struct without_backward_reads {
    static constexpr bool flushes = false;
    static constexpr bool stashes = false;
    static constexpr std::string_view name = "without_backward_reads";
    [[nodiscard]] bool update_due(std::int64_t n) const { return n % 2 == 0; }
    friend bool operator==(const without_backward_reads&, const without_backward_reads&) = default;
};

struct backward_reads_wrong_type {
    static constexpr bool flushes = false;
    static constexpr bool stashes = false;
    static constexpr std::string_view name = "backward_reads_wrong_type";
    [[nodiscard]] bool update_due(std::int64_t n) const { return n % 2 == 0; }
    [[nodiscard]] std::int64_t backward_reads(paci::version_t current, paci::version_t) const { return current; }
    friend bool operator==(const backward_reads_wrong_type&, const backward_reads_wrong_type&) = default;
};

struct without_flushes {
    static constexpr bool stashes = false;
    static constexpr std::string_view name = "without_flushes";
    [[nodiscard]] bool update_due(std::int64_t n) const { return n % 2 == 0; }
    [[nodiscard]] paci::version_t backward_reads(paci::version_t current, paci::version_t) const { return current; }
    friend bool operator==(const without_flushes&, const without_flushes&) = default;
};

struct without_stashes {
    static constexpr bool flushes = false;
    static constexpr std::string_view name = "without_stashes";
    [[nodiscard]] bool update_due(std::int64_t n) const { return n % 2 == 0; }
    [[nodiscard]] paci::version_t backward_reads(paci::version_t current, paci::version_t) const { return current; }
    friend bool operator==(const without_stashes&, const without_stashes&) = default;
};

struct without_name {
    static constexpr bool flushes = false;
    static constexpr bool stashes = false;
    [[nodiscard]] bool update_due(std::int64_t n) const { return n % 2 == 0; }
    [[nodiscard]] paci::version_t backward_reads(paci::version_t current, paci::version_t) const { return current; }
    friend bool operator==(const without_name&, const without_name&) = default;
};

// Not std::regular: no equality, so two controllers cannot be compared (policies default their ==).
struct without_equality {
    static constexpr bool flushes = false;
    static constexpr bool stashes = false;
    static constexpr std::string_view name = "without_equality";
    [[nodiscard]] bool update_due(std::int64_t n) const { return n % 2 == 0; }
    [[nodiscard]] paci::version_t backward_reads(paci::version_t current, paci::version_t) const { return current; }
};

// Not std::regular either: a policy builds its controller as a value, so it must be default-constructible.
// Traits as per-object data: they could differ between two controllers of one type, and the
// policies read them at compile time, so the concept asks for static constants.
struct flushes_not_static {
    bool flushes = false;
    static constexpr bool stashes = false;
    static constexpr std::string_view name = "flushes_not_static";
    int every = 1;
    [[nodiscard]] bool update_due(std::int64_t n) const { return n % every == 0; }
    [[nodiscard]] paci::version_t backward_reads(paci::version_t current, paci::version_t) const { return current; }
    friend bool operator==(const flushes_not_static&, const flushes_not_static&) = default;
};

struct name_not_static {
    static constexpr bool flushes = false;
    static constexpr bool stashes = false;
    std::string_view name = "name_not_static";
    int every = 1;
    [[nodiscard]] bool update_due(std::int64_t n) const { return n % every == 0; }
    [[nodiscard]] paci::version_t backward_reads(paci::version_t current, paci::version_t) const { return current; }
    friend bool operator==(const name_not_static&, const name_not_static&) = default;
};

struct not_default_constructible {
    static constexpr bool flushes = false;
    static constexpr bool stashes = false;
    static constexpr std::string_view name = "not_default_constructible";
    explicit not_default_constructible(int e) : every(e) {}
    int every;
    [[nodiscard]] bool update_due(std::int64_t n) const { return n % every == 0; }
    [[nodiscard]] paci::version_t backward_reads(paci::version_t current, paci::version_t) const { return current; }
    friend bool operator==(const not_default_constructible&, const not_default_constructible&) = default;
};

/// The counts n in [1, 40] for which update_due(n) holds.
template <class C>
std::set<std::int64_t> due_up_to_40(const C& c) {
    std::set<std::int64_t> out;
    for (std::int64_t n = 1; n <= 40; ++n)
        if (c.update_due(n)) out.insert(n);
    return out;
}

} // namespace version_controller_test

using namespace version_controller_test;

TEST_CASE("version_controller: the reference controllers are models", "[unit][concept]") {
    STATIC_REQUIRE(paci::version_controller<paci::accumulation>);
    STATIC_REQUIRE(paci::version_controller<paci::flush>);
    STATIC_REQUIRE(paci::version_controller<paci::stash>);
    STATIC_REQUIRE(paci::version_controller<paci::double_buffer>);
    STATIC_REQUIRE(paci::version_controller<minimal_controller>);
}

TEST_CASE("version_controller: near misses are not models", "[unit][concept]") {
    STATIC_REQUIRE_FALSE(paci::version_controller<without_update_due>);
    STATIC_REQUIRE_FALSE(paci::version_controller<update_due_without_count>);
    STATIC_REQUIRE_FALSE(paci::version_controller<update_due_not_const>);
    STATIC_REQUIRE_FALSE(paci::version_controller<update_due_returns_int>);
    STATIC_REQUIRE_FALSE(paci::version_controller<without_backward_reads>);
    STATIC_REQUIRE_FALSE(paci::version_controller<backward_reads_wrong_type>);
    STATIC_REQUIRE_FALSE(paci::version_controller<without_flushes>);
    STATIC_REQUIRE_FALSE(paci::version_controller<without_stashes>);
    STATIC_REQUIRE_FALSE(paci::version_controller<without_name>);
    STATIC_REQUIRE_FALSE(paci::version_controller<without_equality>);
    STATIC_REQUIRE_FALSE(paci::version_controller<not_default_constructible>);
    STATIC_REQUIRE_FALSE(paci::version_controller<flushes_not_static>);
    STATIC_REQUIRE_FALSE(paci::version_controller<name_not_static>);
    STATIC_REQUIRE_FALSE(paci::version_controller<int>);
    STATIC_REQUIRE_FALSE(paci::version_controller<const paci::accumulation&>);
}

TEST_CASE("version_controller: each controller's traits", "[unit][concept]") {
    STATIC_REQUIRE(!paci::accumulation::flushes);
    STATIC_REQUIRE(!paci::accumulation::stashes);
    STATIC_REQUIRE(paci::flush::flushes);
    STATIC_REQUIRE(!paci::flush::stashes);
    STATIC_REQUIRE(!paci::stash::flushes);
    STATIC_REQUIRE(paci::stash::stashes);
    STATIC_REQUIRE(!paci::double_buffer::flushes);
    STATIC_REQUIRE(paci::double_buffer::stashes);
    STATIC_REQUIRE(paci::double_buffer::buffers == 2);

    CHECK(paci::accumulation::name == "accumulation");
    CHECK(paci::flush::name == "flush");
    CHECK(paci::stash::name == "stash");
    CHECK(paci::double_buffer::name == "double_buffer");
}

TEMPLATE_TEST_CASE("version_controller: update_due(n) holds exactly at the multiples of every", "[unit][concept]",
                   paci::accumulation, paci::flush, paci::stash, paci::double_buffer) {
    // Expected sets written out by hand, not computed with %.
    CHECK(due_up_to_40(TestType{1}) ==
          std::set<std::int64_t>{1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
                                 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40});
    CHECK(due_up_to_40(TestType{3}) == std::set<std::int64_t>{3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39});
    CHECK(due_up_to_40(TestType{4}) == std::set<std::int64_t>{4, 8, 12, 16, 20, 24, 28, 32, 36, 40});
    CHECK(due_up_to_40(TestType{7}) == std::set<std::int64_t>{7, 14, 21, 28, 35});
    CHECK(due_up_to_40(TestType{16}) == std::set<std::int64_t>{16, 32});
    CHECK(due_up_to_40(TestType{40}) == std::set<std::int64_t>{40});
    CHECK(due_up_to_40(TestType{41}).empty());

    // No update before the first backward; counts past 32 bits still work (long asynchronous runs).
    CHECK_FALSE(TestType{1}.update_due(0));
    CHECK_FALSE(TestType{3}.update_due(0));
    CHECK(TestType{4}.update_due(4'000'000'000LL));
    CHECK_FALSE(TestType{4}.update_due(4'000'000'002LL));
    CHECK(TestType{3}.update_due(6'000'000'003LL));

    // A default-constructed controller updates after every backward.
    CHECK(TestType{}.every == 1);
    CHECK(TestType{}.update_due(1));
    CHECK(TestType{}.update_due(2));

    // A usable constant expression.
    STATIC_REQUIRE(TestType{4}.update_due(8));
    STATIC_REQUIRE_FALSE(TestType{4}.update_due(6));
}

TEST_CASE("version_controller: backwards read the current weights without stashing, the forward's with it",
          "[unit][concept]") {
    // A stage at version 7 runs the backward of a micro-batch whose forward read version 5.
    CHECK(paci::accumulation{4}.backward_reads(7, 5) == 7);
    CHECK(paci::flush{4}.backward_reads(7, 5) == 7);
    CHECK(paci::stash{4}.backward_reads(7, 5) == 5);
    CHECK(paci::double_buffer{4}.backward_reads(7, 5) == 5);

    // No update in between: every controller reads the same version.
    CHECK(paci::accumulation{1}.backward_reads(3, 3) == 3);
    CHECK(paci::flush{1}.backward_reads(3, 3) == 3);
    CHECK(paci::stash{1}.backward_reads(3, 3) == 3);
    CHECK(paci::double_buffer{1}.backward_reads(3, 3) == 3);

    // Version 0 (no update yet) is a real version, not "missing".
    CHECK(paci::accumulation{2}.backward_reads(1, 0) == 1);
    CHECK(paci::stash{2}.backward_reads(1, 0) == 0);

    STATIC_REQUIRE(paci::accumulation{2}.backward_reads(9, 4) == 9);
    STATIC_REQUIRE(paci::stash{2}.backward_reads(9, 4) == 4);
}

TEST_CASE("version_controller: controllers are regular printable values", "[unit][concept]") {
    CHECK(paci::accumulation{4} == paci::accumulation{4});
    CHECK(paci::accumulation{4} != paci::accumulation{5});
    CHECK(paci::flush{2} != paci::flush{3});
    CHECK(paci::stash{} == paci::stash{1});
    CHECK(paci::double_buffer{8} == paci::double_buffer{8});

    CHECK(paci_test::print(paci::accumulation{4}) == "accumulation{.every = 4}");
    CHECK(paci_test::print(paci::flush{2}) == "flush{.every = 2}");
    CHECK(paci_test::print(paci::stash{1}) == "stash{.every = 1}");
    CHECK(paci_test::print(paci::double_buffer{8}) == "double_buffer{.every = 8}");
}
