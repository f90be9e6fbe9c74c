#pragma once
/// \file
/// Diagnostics: which rule a schedule breaks, where, and on which action.

#include <paci/core/action.hpp>

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

namespace paci {

/// The rules `validate()` checks.
enum class rule : std::uint8_t {
    placement,        ///< the action's stage does not run on this rank, or is out of range
    index_range,      ///< micro-batch (or STEP ordinal) out of range
    duplicate,        ///< a second action of the same kind for the same stage and micro-batch
    missing,          ///< a stage and micro-batch without its forward or backward, or a step without its STEP
    mixed_backward,   ///< both a full backward B and a split backward I/W for the same stage and micro-batch
    forward_order,    ///< forward of stage s before the forward of stage s-1 on the same rank
    backward_order,   ///< backward of stage s before the backward of stage s+1 on the same rank
    before_forward,   ///< a backward or recompute before its own forward
    weight_before_input, ///< W before its I
    recompute_order,  ///< R after the backward it serves
    step_order,       ///< STEP ordinals not 0, 1, 2, ... at a stage, or counts differ between stages
    comm_edge,        ///< a SEND/RECV on an edge that does not cross ranks, or at a pipeline end
    comm_order,       ///< SEND before the compute that produces it, or RECV after the compute that needs it
    unmatched_send,   ///< a SEND with no RECV
    unmatched_recv,   ///< a RECV with no SEND
    comm_mismatch,    ///< SEND and RECV on a channel pair up differently (kind, stage, micro-batch or order)
    deadlock,         ///< the ranks wait for each other in a cycle, or for a rank that has finished
    unknown_op,       ///< an action whose op is none of the ten (a number cast to `op`)
    overlap_pair,     ///< a malformed overlapped pair: the flag on a non-F or on the last action, a second
                      ///< member that is not a B or I or opens a pair itself, a member that is communication
                      ///< or on another rank's stage, or a backward that needs its own pair's forward
    microbatch_mismatch, ///< a stage runs micro-batches past the end most stages agree on (it, not they, is wrong)
};

[[nodiscard]] constexpr std::string_view to_string(rule r) noexcept {
    constexpr std::string_view names[] = {"placement",      "index_range",    "duplicate",
                                          "missing",        "mixed_backward", "forward_order",
                                          "backward_order", "before_forward", "weight_before_input",
                                          "recompute_order", "step_order",    "comm_edge",
                                          "comm_order",     "unmatched_send", "unmatched_recv",
                                          "comm_mismatch",  "deadlock",       "unknown_op",
                                          "overlap_pair",   "microbatch_mismatch"};
    return names[static_cast<std::size_t>(r)];
}
inline std::ostream& operator<<(std::ostream& os, rule r) { return os << to_string(r); }

/// One violation: the rule, where (rank and position in its program; -1 when no single action is to
/// blame), the action, and a sentence.
struct diagnostic {
    rule broken = rule::missing;
    int rank = -1;
    std::int64_t position = -1;
    action act{};
    std::string message;

    friend bool operator==(const diagnostic&, const diagnostic&) = default;
};

/// `rank 1, position 4, 1B3: backward_order: ...`
inline std::ostream& operator<<(std::ostream& os, const diagnostic& d) {
    if (d.rank >= 0) os << "rank " << d.rank << ", ";
    if (d.position >= 0) os << "position " << d.position << ", " << d.act << ": ";
    return os << d.broken << ": " << d.message;
}

} // namespace paci
