#pragma once
/// \file
/// PACI's controller: an update every `every` local backwards, backwards read the current weights.

#include <paci/version/version_controller.hpp>

#include <ostream>

namespace paci {

/// Gradient accumulation without a flush (PACI): each stage applies an update after every `every`
/// local backwards, on its own counter, with no barrier. Backwards read the current weights, so a
/// micro-batch may cross updates between its forward and its backward (bounded by the in-flight cap).
struct accumulation {
    static constexpr bool flushes = false;
    static constexpr bool stashes = false;
    static constexpr std::string_view name = "accumulation";
    int every = 1;

    [[nodiscard]] constexpr bool update_due(std::int64_t n) const noexcept { return detail::every_nth(n, every); }
    [[nodiscard]] constexpr version_t backward_reads(version_t current, version_t) const noexcept { return current; }
    friend constexpr bool operator==(const accumulation&, const accumulation&) = default;
};
static_assert(version_controller<accumulation>);

inline std::ostream& operator<<(std::ostream& os, const accumulation& c) {
    return os << "accumulation{.every = " << c.every << "}";
}

} // namespace paci
