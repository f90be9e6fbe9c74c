// analyze() compares a replay with the bounds a policy promises; a policy without drift_bound(stage)
// promises nothing to compare with and must be rejected, naming the schedule_policy concept.
// paci-expect-error: satisf[a-z]* (of )?[^ ]*schedule_policy

#include <paci/analysis/analyze.hpp>
#include <paci/policy/one_f_one_b.hpp>

#include <ostream>
#include <string_view>

struct unbounded_one_f_one_b {
    static constexpr std::string_view name = "unbounded_one_f_one_b";
    paci::one_f_one_b<> inner{.stages = 4, .microbatches = 4, .steps = 1, .cap = {}};
    void validate() const { inner.validate(); }
    [[nodiscard]] paci::pipeline_shape shape() const { return inner.shape(); }
    [[nodiscard]] paci::schedule generate() const { return inner.generate(); }
    [[nodiscard]] paci::flush controller() const { return inner.controller(); }
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
