// The 1F1B machine takes its version controller as a template argument; a type that misses one of the
// controller's operations (here update_due, so it cannot say when to step) must be rejected at the
// point of instantiation, naming the version_controller concept.
// paci-expect-error: satisf[a-z]* (of )?[^ ]*version_controller

#include <paci/policy/one_f_one_b.hpp>

#include <cstdint>
#include <string_view>

struct every_fourth_backward {
    static constexpr bool flushes = false;
    static constexpr bool stashes = false;
    static constexpr std::string_view name = "every_fourth_backward";
    int every = 4;
#ifdef PACI_COMPILE_FAIL_CONTROL
    [[nodiscard]] bool update_due(std::int64_t n) const { return n % every == 0; }
#endif
    [[nodiscard]] paci::version_t backward_reads(paci::version_t current, paci::version_t) const { return current; }
    friend bool operator==(const every_fourth_backward&, const every_fourth_backward&) = default;
};

int stage_zero_drift_bound() {
    const paci::one_f_one_b_machine<every_fourth_backward> machine{.stages = 4, .microbatches = 4, .steps = 2, .cap = {}};
    return machine.drift_bound(0);
}
