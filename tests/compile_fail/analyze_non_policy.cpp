// analyze() compares a replay with the bounds a policy promises; a policy without drift_bound(stage)
// promises nothing to compare with and must be rejected, naming the schedule_policy concept.
// paci-expect-error: satisf[a-z]* (of )?[^ ]*schedule_policy

#include <paci/analysis/analyze.hpp>
#include <paci/policy/one_f_one_b.hpp>

#include <ostream>
#include <string_view>

// Everything else of the schedule_policy concept is forwarded to a real policy, so the control (this
// file with PACI_COMPILE_FAIL_CONTROL defined, which adds drift_bound) compiles: see
// cmake/paciCompileFail.cmake.
struct unbounded_one_f_one_b {
    using inner_type = paci::one_f_one_b<>;
    static constexpr std::string_view name = "unbounded_one_f_one_b";
    static constexpr bool splits_backward = inner_type::splits_backward;
    static constexpr bool recomputes = inner_type::recomputes;
    inner_type inner{.stages = 4, .microbatches = 4, .steps = 1, .cap = {}};
    void validate() const { inner.validate(); }
    [[nodiscard]] paci::pipeline_shape shape() const { return inner.shape(); }
    [[nodiscard]] paci::schedule generate() const { return inner.generate(); }
    [[nodiscard]] auto program(int rank) const { return inner.program(rank); }
    [[nodiscard]] paci::flush controller() const { return inner.controller(); }
    [[nodiscard]] double loss_scale() const { return inner.loss_scale(); }
    [[nodiscard]] int run_granularity() const { return inner.run_granularity(); }
#ifdef PACI_COMPILE_FAIL_CONTROL
    [[nodiscard]] int drift_bound(int stage) const { return inner.drift_bound(stage); }
#endif
    [[nodiscard]] int staleness_bound(int stage) const { return inner.staleness_bound(stage); }
    [[nodiscard]] int versions_bound(int stage) const { return inner.versions_bound(stage); }
    friend bool operator==(const unbounded_one_f_one_b&, const unbounded_one_f_one_b&) = default;
    // analyze() prints the policy into its report (not part of the concept).
    friend std::ostream& operator<<(std::ostream& os, const unbounded_one_f_one_b&) { return os << name; }
};

bool analysed_within_bounds() { return paci::analyze(unbounded_one_f_one_b{}).drift.within_bounds(); }
