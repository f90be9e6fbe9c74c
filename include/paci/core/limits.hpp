#pragma once
/// \file
/// Resource limits: the most actions and bytes one call may allocate, checked before it allocates.

#include <paci/core/error.hpp>

#include <atomic>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string_view>

namespace paci {

/// The most one call may allocate for a schedule (its actions) or for the tables an analysis keeps
/// (bytes). Every entry point that builds a schedule or a per-(stage, micro-batch) table computes the
/// size it would need first and throws `config_error` stating that size when it is past these.
/// The limits are process-wide: read them with `current_limits()`, change them with `set_limits()`,
/// or for one scope with `scoped_limits`.
///
///     paci::scoped_limits bigger{{.max_actions = std::uint64_t{1} << 30, .max_bytes = std::uint64_t{1} << 34}};
struct limits {
    /// Actions in one schedule: 2^27 (134,217,728 actions, 1 GiB at 8 bytes each).
    std::uint64_t max_actions = std::uint64_t{1} << 27;
    /// Bytes one call allocates for a schedule or for its analysis tables: 2^32 (4 GiB).
    std::uint64_t max_bytes = std::uint64_t{1} << 32;
    friend bool operator==(const limits&, const limits&) = default;
};

inline std::ostream& operator<<(std::ostream& os, const limits& l) {
    return os << "limits{.max_actions = " << l.max_actions << ", .max_bytes = " << l.max_bytes << "}";
}

namespace detail {
inline std::atomic<std::uint64_t> limit_actions{limits{}.max_actions};
inline std::atomic<std::uint64_t> limit_bytes{limits{}.max_bytes};

/// `a * b`, saturating at the largest `uint64_t` (sizes are compared with limits, never allocated as is).
[[nodiscard]] constexpr std::uint64_t mul_sat(std::uint64_t a, std::uint64_t b) noexcept {
    constexpr std::uint64_t top = std::numeric_limits<std::uint64_t>::max();
    return a != 0 && b > top / a ? top : a * b;
}
/// `a + b`, saturating.
[[nodiscard]] constexpr std::uint64_t add_sat(std::uint64_t a, std::uint64_t b) noexcept {
    constexpr std::uint64_t top = std::numeric_limits<std::uint64_t>::max();
    return b > top - a ? top : a + b;
}
} // namespace detail

/// The limits in force.
[[nodiscard]] inline limits current_limits() noexcept {
    return {detail::limit_actions.load(std::memory_order_relaxed), detail::limit_bytes.load(std::memory_order_relaxed)};
}

/// Replaces the process-wide limits and returns the previous ones.
/// \throws config_error if a limit is 0.
inline limits set_limits(const limits& l) {
    detail::config_require(l.max_actions >= 1, "set_limits", "max_actions", l.max_actions, "must be >= 1");
    detail::config_require(l.max_bytes >= 1, "set_limits", "max_bytes", l.max_bytes, "must be >= 1");
    return {detail::limit_actions.exchange(l.max_actions), detail::limit_bytes.exchange(l.max_bytes)};
}

/// Sets the limits for the lifetime of this object, then restores the previous ones (process-wide,
/// so not meant for two threads at once).
class scoped_limits {
public:
    explicit scoped_limits(const limits& l) : previous_(set_limits(l)) {}
    ~scoped_limits() { static_cast<void>(set_limits(previous_)); }
    scoped_limits(const scoped_limits&) = delete;
    scoped_limits& operator=(const scoped_limits&) = delete;

private:
    limits previous_;
};

namespace detail {

/// Throws `config_error` ("paci::<api>: <what> (<n> actions, <b> bytes) must be within paci::limits ...")
/// when `actions` or `bytes` is past the current limits. Call it before allocating.
inline void check_size(std::string_view api, std::string_view what, std::uint64_t actions, std::uint64_t bytes) {
    const limits l = current_limits();
    if (actions > l.max_actions || bytes > l.max_bytes)
        config_fail(api, what, concat(actions, " actions, ", bytes, " bytes"),
                    concat("must be within paci::limits (", l.max_actions, " actions, ", l.max_bytes,
                           " bytes); raise them with paci::set_limits"));
}

/// Checks a schedule of `actions` actions (8 bytes each) against the limits.
inline void check_schedule_size(std::string_view api, std::uint64_t actions) {
    check_size(api, "schedule size", actions, mul_sat(actions, 8));
}

/// Checks the dense per-(stage, micro-batch) tables an analysis keeps, `cell_bytes` per cell, plus
/// `action_bytes` per action of a schedule of `actions` actions, against the limits.
inline void check_tables(std::string_view api, std::int64_t stages, std::int64_t microbatches, std::uint64_t cell_bytes,
                         std::uint64_t actions, std::uint64_t action_bytes = 16) {
    const auto p = static_cast<std::uint64_t>(stages < 0 ? 0 : stages);
    const auto t = static_cast<std::uint64_t>(microbatches < 0 ? 0 : microbatches);
    check_size(api, "working memory", actions,
               add_sat(mul_sat(mul_sat(p, t), cell_bytes), mul_sat(actions, action_bytes)));
}

} // namespace detail
} // namespace paci
