// version_bounds::of reads a policy's promised bounds; a type that is not a schedule_policy (here it
// has generate() but no controller(), the near miss the concept documents) must be rejected, naming
// the schedule_policy concept, rather than failing somewhere inside.
// paci-expect-error: satisf[a-z]* (of )?[^ ]*schedule_policy

#include <paci/analysis/drift.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/version/flush.hpp>

#include <ostream>
#include <string_view>

// Everything else of the schedule_policy concept is forwarded to a real two-stage policy, so the
// control (this file with PACI_COMPILE_FAIL_CONTROL defined, which adds controller()) compiles: see
// cmake/paciCompileFail.cmake.
struct two_stage_policy {
    using inner_type = paci::one_f_one_b<>;
    static constexpr std::string_view name = "two_stage_policy";
    static constexpr bool splits_backward = inner_type::splits_backward;
    static constexpr bool recomputes = inner_type::recomputes;
    inner_type inner{.stages = 2, .microbatches = 2, .steps = 1, .cap = {}};
    void validate() const { inner.validate(); }
    [[nodiscard]] paci::pipeline_shape shape() const { return inner.shape(); }
    [[nodiscard]] paci::schedule generate() const { return inner.generate(); }
    [[nodiscard]] auto program(int rank) const { return inner.program(rank); }
#ifdef PACI_COMPILE_FAIL_CONTROL
    [[nodiscard]] paci::flush controller() const { return inner.controller(); }
#endif
    [[nodiscard]] int drift_bound(int stage) const { return inner.drift_bound(stage); }
    [[nodiscard]] int staleness_bound(int stage) const { return inner.staleness_bound(stage); }
    [[nodiscard]] int versions_bound(int stage) const { return inner.versions_bound(stage); }
    [[nodiscard]] double loss_scale() const { return inner.loss_scale(); }
    [[nodiscard]] int run_granularity() const { return inner.run_granularity(); }
    friend bool operator==(const two_stage_policy&, const two_stage_policy&) = default;
    friend std::ostream& operator<<(std::ostream& os, const two_stage_policy&) { return os << name; }
};

std::size_t bounded_stages() { return paci::version_bounds::of(two_stage_policy{}).drift.size(); }
