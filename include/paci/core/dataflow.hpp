#pragma once
/// \file
/// The IR's dependency rule, in one place: what each action consumes and produces, which SEND and
/// RECV carry a hand-off between ranks, and a dense per-(stage, micro-batch) table. Lowering,
/// validation, the deadlock search, the simulator, replay and the executor all read the rule from
/// here, so a new op or placement is one edit.

#include <paci/core/action.hpp>
#include <paci/core/shape.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

namespace paci {

/// What crosses a stage boundary: a forward's output, or a backward's input gradient.
enum class flow : std::uint8_t {
    activation, ///< F(s, m)'s output, consumed by F(s + 1, m)
    gradient,   ///< B(s, m)'s or I(s, m)'s input gradient, consumed by B/I(s - 1, m)
};

/// One hand-off of one micro-batch between neighbouring stages.
struct handoff {
    flow what = flow::activation;
    int from = 0;       ///< producing stage
    int to = 0;         ///< consuming stage
    int microbatch = 0;

    /// The SEND that carries it, on the producer's stage (`SEND_F` or `SEND_B`).
    [[nodiscard]] constexpr action send() const noexcept {
        return {what == flow::activation ? op::SEND_F : op::SEND_B, from, microbatch};
    }
    /// The RECV that takes it, on the consumer's stage (`RECV_F` or `RECV_B`).
    [[nodiscard]] constexpr action recv() const noexcept {
        return {what == flow::activation ? op::RECV_F : op::RECV_B, to, microbatch};
    }
    /// True when producer and consumer run on different ranks, so a lowered schedule carries the
    /// hand-off with a SEND/RECV pair; stages that share a rank hand over locally.
    [[nodiscard]] constexpr bool crosses(const pipeline_shape& shape) const noexcept {
        return shape.rank_of(from) != shape.rank_of(to);
    }

    friend constexpr bool operator==(const handoff&, const handoff&) = default;
};

/// True for the actions that consume a neighbour's output and produce one for the other neighbour:
/// F (activations forward) and B or I (gradients backward). W, R and STEP stay on their stage.
[[nodiscard]] constexpr bool moves_data(op o) noexcept { return o == op::F || o == op::B || o == op::I; }

/// The rule, consumer side: F(s, m) consumes stage s-1's activation of m; B(s, m) and I(s, m)
/// consume stage s+1's gradient of m. Empty at the ends of the pipeline (`stages` stages) and for
/// every other op.
[[nodiscard]] constexpr std::optional<handoff> consumes(const action& a, int stages) noexcept {
    if (a.kind == op::F && a.stage > 0) return handoff{flow::activation, a.stage - 1, a.stage, a.microbatch};
    if ((a.kind == op::B || a.kind == op::I) && a.stage + 1 < stages)
        return handoff{flow::gradient, a.stage + 1, a.stage, a.microbatch};
    return std::nullopt;
}

/// The rule, producer side: F(s, m) produces stage s+1's activation of m; B(s, m) and I(s, m)
/// produce stage s-1's gradient of m. Empty at the ends of the pipeline and for every other op.
[[nodiscard]] constexpr std::optional<handoff> produces(const action& a, int stages) noexcept {
    if (a.kind == op::F && a.stage + 1 < stages) return handoff{flow::activation, a.stage, a.stage + 1, a.microbatch};
    if ((a.kind == op::B || a.kind == op::I) && a.stage > 0)
        return handoff{flow::gradient, a.stage, a.stage - 1, a.microbatch};
    return std::nullopt;
}

/// The hand-off a SEND or RECV carries: `SEND_F(s, m)` and `RECV_F(s+1, m)` carry stage s's
/// activation to s+1; `SEND_B(s, m)` and `RECV_B(s-1, m)` carry stage s's gradient to s-1. Empty for
/// compute and STEP.
[[nodiscard]] constexpr std::optional<handoff> carries(const action& a) noexcept {
    switch (a.kind) {
    case op::SEND_F: return handoff{flow::activation, a.stage, a.stage + 1, a.microbatch};
    case op::RECV_F: return handoff{flow::activation, a.stage - 1, a.stage, a.microbatch};
    case op::SEND_B: return handoff{flow::gradient, a.stage, a.stage - 1, a.microbatch};
    case op::RECV_B: return handoff{flow::gradient, a.stage + 1, a.stage, a.microbatch};
    default: return std::nullopt;
    }
}

/// The compute that must have run on the same stage before `a`: B(s, m), I(s, m) and R(s, m) need
/// F(s, m) (a recomputing schedule may drop the stored output, and R rebuilds it before the
/// backward); W(s, m) needs I(s, m). Empty for F, STEP and communication.
[[nodiscard]] constexpr std::optional<action> local_prerequisite(const action& a) noexcept {
    switch (a.kind) {
    case op::B:
    case op::I:
    case op::R: return action{op::F, a.stage, a.microbatch};
    case op::W: return action{op::I, a.stage, a.microbatch};
    default: return std::nullopt;
    }
}

namespace detail {

/// The peer stage of a communication action: SEND_F/RECV_B talk to the next stage, SEND_B/RECV_F to
/// the previous.
[[nodiscard]] constexpr int comm_peer_stage(const action& a) noexcept {
    const auto h = carries(a);
    if (!h) return a.stage;
    return h->from == a.stage ? h->to : h->from;
}

/// The action at the other end of a SEND or RECV (the action itself for any other op).
[[nodiscard]] constexpr action comm_partner(const action& a) noexcept {
    const auto h = carries(a);
    if (!h) return a;
    return (a.kind == op::SEND_F || a.kind == op::SEND_B) ? h->recv() : h->send();
}

} // namespace detail

/// A dense table of one `T` per (stage, micro-batch), stage-major: the working tables of lowering,
/// validation, the simulator, replay and the executor. Its size is the caller's to check against
/// `paci::limits` (`detail::check_tables`) before constructing. `T` may not be `bool` (use
/// `std::uint8_t`: `std::vector<bool>` has no references).
template <class T>
class stage_grid {
    static_assert(!std::is_same_v<T, bool>, "stage_grid<bool> would be a std::vector<bool>; use std::uint8_t");

public:
    stage_grid() = default;
    stage_grid(int stages, int microbatches, const T& init = T{})
        : stages_(stages < 0 ? 0 : stages), microbatches_(microbatches < 0 ? 0 : microbatches),
          cells_(static_cast<std::size_t>(stages_) * static_cast<std::size_t>(microbatches_), init) {}

    [[nodiscard]] int stages() const noexcept { return stages_; }
    [[nodiscard]] int microbatches() const noexcept { return microbatches_; }
    [[nodiscard]] std::size_t size() const noexcept { return cells_.size(); }

    /// True for 0 <= s < stages() and 0 <= m < microbatches().
    [[nodiscard]] bool contains(int s, int m) const noexcept {
        return s >= 0 && s < stages_ && m >= 0 && m < microbatches_;
    }
    /// True when the action's (stage, micro-batch) is a cell (a STEP's index is an update ordinal:
    /// callers do not look STEPs up).
    [[nodiscard]] bool contains(const action& a) const noexcept { return contains(a.stage, a.microbatch); }

    /// The flat index of (s, m); the cell must be contained.
    [[nodiscard]] std::size_t index(int s, int m) const noexcept {
        return static_cast<std::size_t>(s) * static_cast<std::size_t>(microbatches_) + static_cast<std::size_t>(m);
    }

    [[nodiscard]] T& operator()(int s, int m) noexcept { return cells_[index(s, m)]; }
    [[nodiscard]] const T& operator()(int s, int m) const noexcept { return cells_[index(s, m)]; }
    [[nodiscard]] T& operator[](const action& a) noexcept { return (*this)(a.stage, a.microbatch); }
    [[nodiscard]] const T& operator[](const action& a) const noexcept { return (*this)(a.stage, a.microbatch); }
    [[nodiscard]] T& operator[](std::size_t i) noexcept { return cells_[i]; }
    [[nodiscard]] const T& operator[](std::size_t i) const noexcept { return cells_[i]; }

    /// Sets every cell to `value`.
    void fill(const T& value) { cells_.assign(cells_.size(), value); }

    [[nodiscard]] auto begin() noexcept { return cells_.begin(); }
    [[nodiscard]] auto end() noexcept { return cells_.end(); }
    [[nodiscard]] auto begin() const noexcept { return cells_.begin(); }
    [[nodiscard]] auto end() const noexcept { return cells_.end(); }

private:
    int stages_ = 0;
    int microbatches_ = 0;
    std::vector<T> cells_;
};

} // namespace paci
