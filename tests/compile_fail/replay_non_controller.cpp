// replay() asks the controller which version each backward reads; a controller whose update_due takes
// no count (it could not express "every a-th backward") must be rejected, naming version_controller.
// paci-expect-error: satisf[a-z]* (of )?[^ ]*version_controller

#include <paci/analysis/replay.hpp>

#include <cstdint>
#include <string_view>

struct always_update {
    static constexpr bool flushes = false;
    static constexpr bool stashes = false;
    static constexpr std::string_view name = "always_update";
#ifdef PACI_COMPILE_FAIL_CONTROL
    [[nodiscard]] bool update_due(std::int64_t) const { return true; }
#else
    [[nodiscard]] bool update_due() const { return true; }
#endif
    [[nodiscard]] paci::version_t backward_reads(paci::version_t current, paci::version_t) const { return current; }
    friend bool operator==(const always_update&, const always_update&) = default;
};

int max_drift(const paci::schedule& s) { return paci::replay(s, always_update{}).per_stage.at(0).max_drift; }
