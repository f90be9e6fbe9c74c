#pragma once
/// \file
/// PipeDream's controller: weight stashing, backwards read the forward's weights.

#include <paci/version/version_controller.hpp>

#include <ostream>

namespace paci {

/// Weight stashing (PipeDream): an update every `every` backwards; each forward stashes the weights
/// it read and the backward reads that copy, so forward and backward agree (drift 0) at the cost of
/// one resident version per distinct in-flight version.
struct stash {
    static constexpr bool flushes = false;
    static constexpr bool stashes = true;
    static constexpr std::string_view name = "stash";
    int every = 1;

    [[nodiscard]] constexpr bool update_due(std::int64_t n) const noexcept { return detail::every_nth(n, every); }
    [[nodiscard]] constexpr version_t backward_reads(version_t, version_t forward) const noexcept { return forward; }
    friend constexpr bool operator==(const stash&, const stash&) = default;
};
static_assert(version_controller<stash>);

inline std::ostream& operator<<(std::ostream& os, const stash& c) { return os << "stash{.every = " << c.every << "}"; }

} // namespace paci
