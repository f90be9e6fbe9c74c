// The schedule_policy concept: every policy (each flavour) is a model, near misses are not, and each
// policy hands out the controller and promises the bounds it documents (expected values by hand).

#include <paci/analysis/drift.hpp>
#include <paci/policy/gpipe.hpp>
#include <paci/policy/interleaved.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/pipedream.hpp>
#include <paci/policy/schedule_policy.hpp>
#include <paci/policy/zero_bubble.hpp>
#include <paci/version/version_controller.hpp>

#include "support/catch.hpp"

#include <cstdint>
#include <ostream>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

// A named namespace, not an anonymous one: the fakes exist to be inspected by concepts, so most of
// their members are never called, which compilers flag for internal-linkage types.
namespace schedule_policy_test {

using paci::backward_flavour;

// A user's own controller: the 1F1B machine accepts any version_controller, not only the four shipped.
struct every_other {
    static constexpr bool flushes = false;
    static constexpr bool stashes = false;
    static constexpr std::string_view name = "every_other";
    int every = 2;
    [[nodiscard]] bool update_due(std::int64_t n) const { return n % 2 == 0; }
    [[nodiscard]] paci::version_t backward_reads(paci::version_t current, paci::version_t) const { return current; }
    friend bool operator==(const every_other&, const every_other&) = default;
};

// Every fake below prints its name, so each near miss misses exactly the one thing it names
// (the concept requires `os << policy`; `without_printer` lives apart to miss only that).
template <class T>
    requires requires { T::name; }
std::ostream& operator<<(std::ostream& os, const T&) {
    return os << T::name;
}

// What every policy also declares for the executor: its program as a stream, the loss scale, the
// run granularity and what its program contains. The fakes below share it, so each near miss still
// misses exactly the one thing it names.
struct ends_at_once {
    bool next(paci::action&, std::int64_t) { return false; }
    bool next_draining(paci::action&, std::int64_t) { return false; }
};
struct runs_program {
    static constexpr bool splits_backward = false;
    static constexpr bool recomputes = false;
    [[nodiscard]] ends_at_once program(int) const { return {}; }
    [[nodiscard]] double loss_scale() const { return 1.0; }
    [[nodiscard]] int run_granularity() const { return 1; }
    friend bool operator==(const runs_program&, const runs_program&) = default;
};

// A minimal model written from the concept's documented requirements. Each near miss below is this
// type with exactly one thing taken away or changed.
struct minimal_policy : runs_program {
    static constexpr std::string_view name = "minimal";
    int stages = 2;
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] paci::schedule generate() const { return {}; }
    [[nodiscard]] paci::flush controller() const { return {}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    friend bool operator==(const minimal_policy&, const minimal_policy&) = default;
};

// The near miss named in the concept's documentation: its schedule could not be replayed for versions.
struct without_controller : runs_program {
    static constexpr std::string_view name = "without_controller";
    int stages = 2;
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] paci::schedule generate() const { return {}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    friend bool operator==(const without_controller&, const without_controller&) = default;
};

struct controller_not_a_controller : runs_program {
    static constexpr std::string_view name = "controller_not_a_controller";
    int stages = 2;
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] paci::schedule generate() const { return {}; }
    [[nodiscard]] int controller() const { return 1; } // "update every 1": a number, not a controller
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    friend bool operator==(const controller_not_a_controller&, const controller_not_a_controller&) = default;
};

// generate() hands back bare per-rank programs: no shape, micro-batch count or steps to check against.
struct generate_returns_programs : runs_program {
    static constexpr std::string_view name = "generate_returns_programs";
    int stages = 2;
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] std::vector<std::vector<paci::action>> generate() const { return {}; }
    [[nodiscard]] paci::flush controller() const { return {}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    friend bool operator==(const generate_returns_programs&, const generate_returns_programs&) = default;
};

struct without_generate : runs_program {
    static constexpr std::string_view name = "without_generate";
    int stages = 2;
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] paci::flush controller() const { return {}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    friend bool operator==(const without_generate&, const without_generate&) = default;
};

struct without_drift_bound : runs_program {
    static constexpr std::string_view name = "without_drift_bound";
    int stages = 2;
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] paci::schedule generate() const { return {}; }
    [[nodiscard]] paci::flush controller() const { return {}; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    friend bool operator==(const without_drift_bound&, const without_drift_bound&) = default;
};

// A bound without a stage: PACI's bound differs per stage, so a single number cannot state it.
struct drift_bound_without_stage : runs_program {
    static constexpr std::string_view name = "drift_bound_without_stage";
    int stages = 2;
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] paci::schedule generate() const { return {}; }
    [[nodiscard]] paci::flush controller() const { return {}; }
    [[nodiscard]] int drift_bound() const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    friend bool operator==(const drift_bound_without_stage&, const drift_bound_without_stage&) = default;
};

struct drift_bound_returns_double : runs_program {
    static constexpr std::string_view name = "drift_bound_returns_double";
    int stages = 2;
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] paci::schedule generate() const { return {}; }
    [[nodiscard]] paci::flush controller() const { return {}; }
    [[nodiscard]] double drift_bound(int) const { return 0.5; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    friend bool operator==(const drift_bound_returns_double&, const drift_bound_returns_double&) = default;
};

struct without_validate : runs_program {
    static constexpr std::string_view name = "without_validate";
    int stages = 2;
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] paci::schedule generate() const { return {}; }
    [[nodiscard]] paci::flush controller() const { return {}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    friend bool operator==(const without_validate&, const without_validate&) = default;
};

struct shape_returns_stage_count : runs_program {
    static constexpr std::string_view name = "shape_returns_stage_count";
    int stages = 2;
    void validate() const {}
    [[nodiscard]] int shape() const { return stages; }
    [[nodiscard]] paci::schedule generate() const { return {}; }
    [[nodiscard]] paci::flush controller() const { return {}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    friend bool operator==(const shape_returns_stage_count&, const shape_returns_stage_count&) = default;
};

struct without_name {
    int stages = 2;
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] paci::schedule generate() const { return {}; }
    [[nodiscard]] paci::flush controller() const { return {}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    friend bool operator==(const without_name&, const without_name&) = default;
};

// Not std::regular: a policy must compare equal to a copy so tests can print and compare it.
struct without_equality {
    static constexpr std::string_view name = "without_equality";
    static constexpr bool splits_backward = false;
    static constexpr bool recomputes = false;
    int stages = 2;
    [[nodiscard]] ends_at_once program(int) const { return {}; }
    [[nodiscard]] double loss_scale() const { return 1.0; }
    [[nodiscard]] int run_granularity() const { return 1; }
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] paci::schedule generate() const { return {}; }
    [[nodiscard]] paci::flush controller() const { return {}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
};

// Member functions callable only on a mutable policy: the analysis holds policies by const reference.
struct generate_not_const : runs_program {
    static constexpr std::string_view name = "generate_not_const";
    int stages = 2;
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] paci::schedule generate() { return {}; }
    [[nodiscard]] paci::flush controller() const { return {}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    friend bool operator==(const generate_not_const&, const generate_not_const&) = default;
};

template <class P>
using controller_of = decltype(std::declval<const P&>().controller());

// Without a program stream the executor could not run it.
struct without_program {
    static constexpr std::string_view name = "without_program";
    static constexpr bool splits_backward = false;
    static constexpr bool recomputes = false;
    int stages = 2;
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] paci::schedule generate() const { return {}; }
    [[nodiscard]] paci::flush controller() const { return {}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    [[nodiscard]] double loss_scale() const { return 1.0; }
    [[nodiscard]] int run_granularity() const { return 1; }
    friend bool operator==(const without_program&, const without_program&) = default;
};

// A program that cannot pause at a cut (only `next(a)`).
struct next_without_cut {
    bool next(paci::action&) { return false; }
    bool next_draining(paci::action&) { return false; }
};
struct program_without_cut {
    static constexpr std::string_view name = "program_without_cut";
    static constexpr bool splits_backward = false;
    static constexpr bool recomputes = false;
    int stages = 2;
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] paci::schedule generate() const { return {}; }
    [[nodiscard]] next_without_cut program(int) const { return {}; }
    [[nodiscard]] paci::flush controller() const { return {}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    [[nodiscard]] double loss_scale() const { return 1.0; }
    [[nodiscard]] int run_granularity() const { return 1; }
    friend bool operator==(const program_without_cut&, const program_without_cut&) = default;
};

// Does not say whether its program holds split backwards: the executor could not check the stage.
struct without_contents {
    static constexpr std::string_view name = "without_contents";
    int stages = 2;
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] paci::schedule generate() const { return {}; }
    [[nodiscard]] ends_at_once program(int) const { return {}; }
    [[nodiscard]] paci::flush controller() const { return {}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    [[nodiscard]] double loss_scale() const { return 1.0; }
    [[nodiscard]] int run_granularity() const { return 1; }
    friend bool operator==(const without_contents&, const without_contents&) = default;
};

} // namespace schedule_policy_test

namespace schedule_policy_unprintable {
// The minimal model without a printer: a failing test could not show which policy it was.
struct without_printer {
    static constexpr std::string_view name = "without_printer";
    static constexpr bool splits_backward = false;
    static constexpr bool recomputes = false;
    int stages = 2;
    [[nodiscard]] schedule_policy_test::ends_at_once program(int) const { return {}; }
    [[nodiscard]] double loss_scale() const { return 1.0; }
    [[nodiscard]] int run_granularity() const { return 1; }
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] paci::schedule generate() const { return {}; }
    [[nodiscard]] paci::flush controller() const { return {}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    friend bool operator==(const without_printer&, const without_printer&) = default;
};
} // namespace schedule_policy_unprintable

using namespace schedule_policy_test;

TEMPLATE_TEST_CASE("schedule_policy: every policy, in each flavour, is a model", "[unit][concept]",
                   paci::gpipe<>, paci::gpipe<backward_flavour::recompute>, paci::one_f_one_b<>,
                   paci::one_f_one_b<backward_flavour::recompute>, paci::paci_policy<>,
                   paci::paci_policy<backward_flavour::recompute>, paci::pipedream, paci::pipedream_2bw,
                   (paci::one_f_one_b_machine<paci::stash, backward_flavour::recompute>),
                   (paci::one_f_one_b_machine<paci::double_buffer, backward_flavour::recompute>),
                   paci::one_f_one_b_machine<every_other>, paci::interleaved_one_f_one_b, paci::zb_h1, paci::zb_h2,
                   minimal_policy) {
    STATIC_REQUIRE(paci::schedule_policy<TestType>);
    STATIC_REQUIRE(paci::version_controller<controller_of<TestType>>);
    STATIC_REQUIRE(std::is_same_v<decltype(std::declval<const TestType&>().generate()), paci::schedule>);
    // A default-constructed policy is a valid one-stage policy and equals itself.
    const TestType policy{};
    CHECK_NOTHROW(policy.validate());
    CHECK(policy == TestType{});
}

TEST_CASE("schedule_policy: near misses are not models", "[unit][concept]") {
    STATIC_REQUIRE(paci::schedule_policy<minimal_policy>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<without_controller>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<controller_not_a_controller>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<generate_returns_programs>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<without_generate>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<without_drift_bound>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<drift_bound_without_stage>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<schedule_policy_unprintable::without_printer>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<drift_bound_returns_double>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<without_validate>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<shape_returns_stage_count>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<without_name>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<without_equality>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<generate_not_const>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<without_program>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<program_without_cut>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<without_contents>);
    // Neither a controller nor a schedule is a policy.
    STATIC_REQUIRE_FALSE(paci::schedule_policy<paci::accumulation>);
    STATIC_REQUIRE_FALSE(paci::schedule_policy<paci::schedule>);
}

TEST_CASE("schedule_policy: each policy's controller type and update interval", "[unit][concept]") {
    STATIC_REQUIRE(std::is_same_v<controller_of<paci::gpipe<>>, paci::flush>);
    STATIC_REQUIRE(std::is_same_v<controller_of<paci::one_f_one_b<>>, paci::flush>);
    STATIC_REQUIRE(std::is_same_v<controller_of<paci::one_f_one_b<backward_flavour::recompute>>, paci::flush>);
    STATIC_REQUIRE(std::is_same_v<controller_of<paci::paci_policy<>>, paci::accumulation>);
    STATIC_REQUIRE(std::is_same_v<controller_of<paci::paci_policy<backward_flavour::recompute>>, paci::accumulation>);
    STATIC_REQUIRE(std::is_same_v<controller_of<paci::pipedream>, paci::stash>);
    STATIC_REQUIRE(std::is_same_v<controller_of<paci::pipedream_2bw>, paci::double_buffer>);
    STATIC_REQUIRE(std::is_same_v<controller_of<paci::interleaved_one_f_one_b>, paci::flush>);
    STATIC_REQUIRE(std::is_same_v<controller_of<paci::zb_h1>, paci::flush>);
    STATIC_REQUIRE(std::is_same_v<controller_of<paci::zb_h2>, paci::flush>);
    STATIC_REQUIRE(std::is_same_v<controller_of<paci::one_f_one_b_machine<every_other>>, every_other>);

    // One update per `microbatches` backwards, per stage.
    CHECK(paci::gpipe<>{.stages = 4, .microbatches = 6, .steps = 2}.controller() == paci::flush{6});
    CHECK(paci::one_f_one_b<>{.stages = 4, .microbatches = 8, .steps = 1, .cap = {}}.controller() == paci::flush{8});
    CHECK(paci::paci_policy<>{.stages = 8, .microbatches = 4, .steps = 3, .cap = {}}.controller() ==
          paci::accumulation{4});
    CHECK(paci::paci_policy<backward_flavour::recompute>{.stages = 8, .microbatches = 3, .steps = 3, .cap = {}}
              .controller() == paci::accumulation{3});
    CHECK(paci::pipedream{.stages = 4, .microbatches = 1, .steps = 5, .cap = {}}.controller() == paci::stash{1});
    CHECK(paci::pipedream_2bw{.stages = 4, .microbatches = 3, .steps = 5, .cap = {}}.controller() ==
          paci::double_buffer{3});
    CHECK(paci::interleaved_one_f_one_b{.ranks = 2, .chunks = 2, .microbatches = 4, .steps = 1}.controller() ==
          paci::flush{4});
    CHECK(paci::zb_h1{.stages = 3, .microbatches = 5, .steps = 1}.controller() == paci::flush{5});
    CHECK(paci::zb_h2{.stages = 3, .microbatches = 5, .steps = 1}.controller() == paci::flush{5});
}

TEST_CASE("schedule_policy: names", "[unit][concept]") {
    CHECK(paci::gpipe<>::name == "gpipe");
    CHECK(paci::one_f_one_b<>::name == "one_f_one_b");
    CHECK(paci::paci_policy<>::name == "paci");
    CHECK(paci::paci_policy<backward_flavour::recompute>::name == "paci");
    CHECK(paci::pipedream::name == "pipedream");
    CHECK(paci::pipedream_2bw::name == "pipedream_2bw");
    CHECK(paci::interleaved_one_f_one_b::name == "interleaved_one_f_one_b");
    CHECK(paci::zb_h1::name == "zb_h1");
    CHECK(paci::zb_h2::name == "zb_h2");
    CHECK(paci::one_f_one_b_machine<every_other>::name == "one_f_one_b_machine");
}

TEST_CASE("schedule_policy: promised bounds per stage", "[unit][concept]") {
    SECTION("paci: drift and staleness ceil((P - 1 - s) / a), one weight version") {
        // P = 8, a = 4: ceil(7/4) = 2, ceil(6/4) = 2, ceil(5/4) = 2, ceil(4/4) = 1, ..., ceil(1/4) = 1, 0.
        for (const auto& flavour_bounds :
             {paci::version_bounds::of(paci::paci_policy<>{.stages = 8, .microbatches = 4, .steps = 3, .cap = {}}),
              paci::version_bounds::of(paci::paci_policy<backward_flavour::recompute>{
                  .stages = 8, .microbatches = 4, .steps = 3, .cap = {}})}) {
            CHECK(flavour_bounds.drift == std::vector<int>{2, 2, 2, 1, 1, 1, 1, 0});
            CHECK(flavour_bounds.staleness == std::vector<int>{2, 2, 2, 1, 1, 1, 1, 0});
            CHECK(flavour_bounds.versions == std::vector<int>{1, 1, 1, 1, 1, 1, 1, 1});
        }
        // a = 1: one update per micro-batch, drift P - 1 - s.
        const auto b = paci::version_bounds::of(paci::paci_policy<>{.stages = 4, .microbatches = 1, .steps = 8, .cap = {}});
        CHECK(b.drift == std::vector<int>{3, 2, 1, 0});
        // A user cap {3, 3, 2, 1} with a = 2: ceil(2/2) = 1, 1, ceil(1/2) = 1, 0.
        const auto capped =
            paci::version_bounds::of(paci::paci_policy<>{.stages = 4, .microbatches = 2, .steps = 4, .cap = {3, 3, 2, 1}});
        CHECK(capped.drift == std::vector<int>{1, 1, 1, 0});
    }
    SECTION("pipedream: no drift, gradients P - 1 - s versions late, that many versions plus one resident") {
        const auto b = paci::version_bounds::of(paci::pipedream{.stages = 5, .microbatches = 1, .steps = 8, .cap = {}});
        CHECK(b.drift == std::vector<int>{0, 0, 0, 0, 0});
        CHECK(b.staleness == std::vector<int>{4, 3, 2, 1, 0});
        CHECK(b.versions == std::vector<int>{5, 4, 3, 2, 1});
    }
    SECTION("pipedream_2bw: no drift, at most one version late, at most two versions") {
        const auto b = paci::version_bounds::of(paci::pipedream_2bw{.stages = 4, .microbatches = 3, .steps = 4, .cap = {}});
        CHECK(b.drift == std::vector<int>{0, 0, 0, 0});
        CHECK(b.staleness == std::vector<int>{1, 1, 1, 0});
        CHECK(b.versions == std::vector<int>{2, 2, 2, 1});
    }
    SECTION("synchronous policies promise nothing stale") {
        const std::vector<int> zeros(4, 0);
        const std::vector<int> ones(4, 1);
        for (const auto& b : {paci::version_bounds::of(paci::gpipe<>{.stages = 4, .microbatches = 4, .steps = 2}),
                             paci::version_bounds::of(paci::one_f_one_b<>{.stages = 4, .microbatches = 4, .steps = 2, .cap = {}}),
                             paci::version_bounds::of(paci::zb_h1{.stages = 4, .microbatches = 4, .steps = 2}),
                             paci::version_bounds::of(paci::zb_h2{.stages = 4, .microbatches = 4, .steps = 2}),
                             paci::version_bounds::of(
                                 paci::interleaved_one_f_one_b{.ranks = 2, .chunks = 2, .microbatches = 4, .steps = 2})}) {
            CHECK(b.drift == zeros);
            CHECK(b.staleness == zeros);
            CHECK(b.versions == ones);
        }
    }
}
