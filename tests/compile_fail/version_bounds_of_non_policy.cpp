// version_bounds::of reads a policy's promised bounds; a type that is not a schedule_policy (here it
// has generate() but no controller(), the near miss the concept documents) must be rejected, naming
// the schedule_policy concept, rather than failing somewhere inside.
// paci-expect-error: satisf[a-z]* (of )?[^ ]*schedule_policy

#include <paci/analysis/drift.hpp>
#include <paci/version/flush.hpp>

#include <string_view>

struct two_stage_policy {
    static constexpr std::string_view name = "two_stage_policy";
    int stages = 2;
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {stages, stages, paci::stage_map::loop}; }
    [[nodiscard]] paci::schedule generate() const { return {}; }
#ifdef PACI_COMPILE_FAIL_CONTROL
    [[nodiscard]] paci::flush controller() const { return {}; }
#endif
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    friend bool operator==(const two_stage_policy&, const two_stage_policy&) = default;
};

std::size_t bounded_stages() { return paci::version_bounds::of(two_stage_policy{}).drift.size(); }
