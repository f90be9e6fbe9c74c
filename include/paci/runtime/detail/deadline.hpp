#pragma once
/// \file
/// Internals shared by the transports: deadlines that do not overflow.

#include <chrono>

namespace paci::detail {

/// `now + timeout`, saturating instead of overflowing for huge timeouts.
[[nodiscard]] inline std::chrono::steady_clock::time_point deadline_after(std::chrono::nanoseconds timeout) {
    using clock = std::chrono::steady_clock;
    const auto now = clock::now();
    if (timeout <= std::chrono::nanoseconds::zero()) return now;
    if (timeout >= std::chrono::duration_cast<std::chrono::nanoseconds>(clock::time_point::max() - now))
        return clock::time_point::max();
    return now + std::chrono::duration_cast<clock::duration>(timeout);
}

} // namespace paci::detail
