#pragma once
/// \file
/// The action IR: one operation of one stage on one micro-batch, and its PyTorch-style text form.

#include <paci/core/error.hpp>

#include <array>
#include <charconv>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>

namespace paci {

/// What an action does. The text names follow PyTorch's pipelining IR; `R` and `STEP` are extensions.
enum class op : std::uint8_t {
    F,      ///< forward
    B,      ///< full backward (input and weight gradients)
    I,      ///< input-gradient backward (split backward, zero-bubble policies)
    W,      ///< weight-gradient backward (split backward)
    R,      ///< recompute the forward before a backward (memory-saving flavour)
    STEP,   ///< optimizer update of the stage; the index is the update's ordinal
    SEND_F, ///< send the forward output of the stage to the next stage
    RECV_F, ///< receive the forward input of the stage from the previous stage
    SEND_B, ///< send the input gradient of the stage to the previous stage
    RECV_B, ///< receive the output gradient of the stage from the next stage
};

inline constexpr int op_count = 10;

/// True for the ten ops above; an `op` cast from any other number is not one.
[[nodiscard]] constexpr bool is_op(op o) noexcept { return static_cast<int>(o) < op_count; }

/// The text name of an op (`"F"`, `"SEND_B"`, ...); `"?"` for a value that is not an op.
[[nodiscard]] constexpr std::string_view to_string(op o) noexcept {
    constexpr std::array<std::string_view, op_count> names{"F",    "B",      "I",      "W",      "R",
                                                          "STEP", "SEND_F", "RECV_F", "SEND_B", "RECV_B"};
    return is_op(o) ? names[static_cast<std::size_t>(o)] : std::string_view("?");
}

/// True for the compute ops F, B, I, W and R.
[[nodiscard]] constexpr bool is_compute(op o) noexcept { return o <= op::R; }
/// True for SEND_F, RECV_F, SEND_B and RECV_B.
[[nodiscard]] constexpr bool is_comm(op o) noexcept { return o >= op::SEND_F && is_op(o); }
/// True for the backward ops B, I and W.
[[nodiscard]] constexpr bool is_backward(op o) noexcept { return o == op::B || o == op::I || o == op::W; }

/// One operation: (op, stage, micro-batch). For `STEP` the index is the update's ordinal at that stage.
/// Small and trivially copyable; schedules store them densely per rank.
///
/// **Overlapped pairs.** `overlap_next` set on a forward `F` makes it and the next action of the same
/// rank's program, a backward (`B` or `I`) of another (stage, micro-batch), one overlapped pair: the
/// rank may run the two concurrently (PyTorch's `OVERLAP_F_B`, written `(0F7;7B3)OVERLAP_F_B`, as
/// DualPipe does to hide communication behind compute). Running them one after the other, forward
/// first, is always a correct execution of the pair; analyses that do not model overlap read the pair
/// that way. The members take no communication between them: a lowered program receives both inputs
/// before the pair and sends both outputs after it. `validate()` checks the pair's form.
struct action {
    std::int32_t microbatch = 0; ///< micro-batch index (or update ordinal for STEP)
    std::int16_t stage = 0;      ///< global (virtual) stage index
    op kind = op::F;
    bool overlap_next = false;   ///< this F and the next action (a backward) form an overlapped pair

    constexpr action() = default;
    constexpr action(op k, int s, int m) noexcept
        : microbatch(static_cast<std::int32_t>(m)), stage(static_cast<std::int16_t>(s)), kind(k) {}

    friend constexpr bool operator==(const action&, const action&) = default;
};

static_assert(std::is_trivially_copyable_v<action>);
static_assert(sizeof(action) <= 8);

/// Largest stage index an action can carry.
inline constexpr int max_stages = std::numeric_limits<std::int16_t>::max();

/// The action with `overlap_next` set: the forward that opens an overlapped pair.
[[nodiscard]] constexpr action overlapped(action forward) noexcept {
    forward.overlap_next = true;
    return forward;
}

/// `3F12`, `0SEND_B4`, `2STEP1` (one action alone: the pair flag is not printed; see `to_string(action, action)`).
[[nodiscard]] inline std::string to_string(const action& a) {
    std::string out = std::to_string(a.stage);
    out += to_string(a.kind);
    out += std::to_string(a.microbatch);
    return out;
}

/// An overlapped pair as PyTorch writes it: `(0F7;7B3)OVERLAP_F_B`.
[[nodiscard]] inline std::string to_string(const action& forward, const action& backward) {
    return "(" + to_string(forward) + ";" + to_string(backward) + ")OVERLAP_F_B";
}

inline std::ostream& operator<<(std::ostream& os, const action& a) { return os << to_string(a); }
inline std::ostream& operator<<(std::ostream& os, op o) { return os << to_string(o); }

namespace detail {

/// Parses a non-negative decimal at `text[pos...]`; returns the number of digits read (0 if none).
inline std::size_t parse_index(std::string_view text, std::size_t pos, std::int64_t& value) {
    std::size_t end = pos;
    while (end < text.size() && text[end] >= '0' && text[end] <= '9') ++end;
    if (end == pos) return 0;
    const auto res = std::from_chars(text.data() + pos, text.data() + end, value);
    if (res.ec != std::errc{}) return std::string_view::npos; // too large for 64 bits
    return end - pos;
}

} // namespace detail

/// Parses one action token (`3F12`, `0SEND_B4`, `2STEP1`). The whole token must match;
/// `line` and `column` locate the token for error messages (1-based).
/// \throws parse_error naming what was expected and where.
[[nodiscard]] inline action parse_action(std::string_view token, std::size_t line = 1, std::size_t column = 1) {
    const auto fail = [&](std::size_t offset, std::string_view what) {
        detail::parse_fail("parse_action",
                           detail::concat(what, " in '", token, "'"), line, column + offset);
    };
    std::int64_t stage = 0;
    const std::size_t sd = detail::parse_index(token, 0, stage);
    if (sd == 0) fail(0, "expected a stage number");
    if (sd == std::string_view::npos || stage > max_stages) fail(0, "stage number out of range");
    std::size_t pos = sd;
    std::size_t op_end = pos;
    while (op_end < token.size() && (token[op_end] == '_' || (token[op_end] >= 'A' && token[op_end] <= 'Z')))
        ++op_end;
    const std::string_view name = token.substr(pos, op_end - pos);
    if (name.empty())
        fail(pos, "expected an op (F, B, I, W, R, STEP, SEND_F, RECV_F, SEND_B, RECV_B)");
    int found = -1;
    for (int k = 0; k < op_count; ++k)
        if (to_string(static_cast<op>(k)) == name) found = k;
    if (found < 0)
        fail(pos, detail::concat("unknown op '", name,
                                 "', expected one of F, B, I, W, R, STEP, SEND_F, RECV_F, SEND_B, RECV_B"));
    pos = op_end;
    std::int64_t index = 0;
    const std::size_t md = detail::parse_index(token, pos, index);
    if (md == 0) fail(pos, "expected a micro-batch number");
    if (md == std::string_view::npos || index > std::numeric_limits<std::int32_t>::max())
        fail(pos, "micro-batch number out of range");
    pos += md;
    if (pos != token.size()) fail(pos, "unexpected trailing characters");
    return action{static_cast<op>(found), static_cast<int>(stage), static_cast<int>(index)};
}

} // namespace paci
