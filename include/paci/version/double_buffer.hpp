#pragma once
/// \file
/// PipeDream-2BW's controller: two weight buffers, an update every `every` backwards.

#include <paci/version/version_controller.hpp>

#include <ostream>

namespace paci {

/// Double-buffered weights (PipeDream-2BW): like stashing, but with `every` at least the in-flight
/// window minus one, no in-flight micro-batch is more than one version behind, so two buffers
/// suffice and each gradient is applied one version late (staleness at most 1).
struct double_buffer {
    static constexpr bool flushes = false;
    static constexpr bool stashes = true;
    static constexpr std::string_view name = "double_buffer";
    static constexpr int buffers = 2;
    int every = 1;

    [[nodiscard]] constexpr bool update_due(std::int64_t n) const noexcept { return detail::every_nth(n, every); }
    [[nodiscard]] constexpr version_t backward_reads(version_t, version_t forward) const noexcept { return forward; }
    friend constexpr bool operator==(const double_buffer&, const double_buffer&) = default;
};
static_assert(version_controller<double_buffer>);

inline std::ostream& operator<<(std::ostream& os, const double_buffer& c) {
    return os << "double_buffer{.every = " << c.every << "}";
}

} // namespace paci
