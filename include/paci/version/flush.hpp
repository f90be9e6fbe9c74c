#pragma once
/// \file
/// Synchronous controller: an update after each flushed group of micro-batches.

#include <paci/version/version_controller.hpp>

#include <ostream>

namespace paci {

/// Synchronous training (GPipe, 1F1B-flush, zero-bubble): every `every` backwards the pipeline has
/// drained and each stage applies its update; no micro-batch crosses an update.
struct flush {
    static constexpr bool flushes = true;
    static constexpr bool stashes = false;
    static constexpr std::string_view name = "flush";
    int every = 1;

    [[nodiscard]] constexpr bool update_due(std::int64_t n) const noexcept { return detail::every_nth(n, every); }
    [[nodiscard]] constexpr version_t backward_reads(version_t current, version_t) const noexcept { return current; }
    friend constexpr bool operator==(const flush&, const flush&) = default;
};
static_assert(version_controller<flush>);

inline std::ostream& operator<<(std::ostream& os, const flush& c) { return os << "flush{.every = " << c.every << "}"; }

} // namespace paci
