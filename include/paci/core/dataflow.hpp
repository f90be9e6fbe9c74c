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
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace paci {

/// What crosses a stage boundary: a forward's output, or a backward's input gradient.
enum class flow : std::uint8_t {
    activation, ///< F(s, m)'s output, consumed by F(s + 1, m)
    gradient,   ///< B(s, m)'s or I(s, m)'s input gradient, consumed by B/I(s - 1, m)
};

// Tables keep one grid per flow, indexed by it; `consumes` and `produces` compute it from the kind.
static_assert(static_cast<int>(flow::activation) == 0 && static_cast<int>(flow::gradient) == 1);

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

/// `handoff::crosses` for every hand-off of one shape, worked out once per pair of neighbouring
/// stages: the hot loops of lowering, the deadlock search and the simulator look it up instead of
/// computing two ranks per action.
class crossings {
public:
    crossings() = default;
    explicit crossings(const pipeline_shape& shape)
        : cross_(static_cast<std::size_t>(shape.stages > 0 ? shape.stages : 0), 0) {
        for (int s = 0; s + 1 < shape.stages; ++s)
            cross_[static_cast<std::size_t>(s)] = handoff{flow::activation, s, s + 1, 0}.crosses(shape) ? 1 : 0;
    }
    /// `h.crosses(shape)` for a hand-off between two stages of the shape.
    [[nodiscard]] bool operator()(const handoff& h) const noexcept {
        return cross_[static_cast<std::size_t>(h.from < h.to ? h.from : h.to)] != 0;
    }

private:
    std::vector<std::uint8_t> cross_; // [s]: stages s and s + 1 run on different ranks
};

/// True for the actions that consume a neighbour's output and produce one for the other neighbour:
/// F (activations forward) and B or I (gradients backward). W, R and STEP stay on their stage.
[[nodiscard]] constexpr bool moves_data(op o) noexcept { return o == op::F || o == op::B || o == op::I; }

/// The rule, consumer side: F(s, m) consumes stage s-1's activation of m; B(s, m) and I(s, m)
/// consume stage s+1's gradient of m. Empty at the ends of the pipeline (`stages` stages) and for
/// every other op.
[[nodiscard]] constexpr std::optional<handoff> consumes(const action& a, int stages) noexcept {
    // Arithmetic rather than a branch on F versus B/I: schedules alternate them (1F1B), and such a
    // branch mispredicts in the analyses' hot loops. F: s - 1; B, I: s + 1.
    const int forward = a.kind == op::F ? 1 : 0;
    const int from = a.stage + 1 - 2 * forward;
    if (!(moves_data(a.kind) && from >= 0 && from < stages)) return std::nullopt;
    return handoff{static_cast<flow>(1 - forward), from, a.stage, a.microbatch};
}

/// The rule, producer side: F(s, m) produces stage s+1's activation of m; B(s, m) and I(s, m)
/// produce stage s-1's gradient of m. Empty at the ends of the pipeline and for every other op.
[[nodiscard]] constexpr std::optional<handoff> produces(const action& a, int stages) noexcept {
    const int forward = a.kind == op::F ? 1 : 0; // as in `consumes`: F: s + 1; B, I: s - 1
    const int to = a.stage - 1 + 2 * forward;
    if (!(moves_data(a.kind) && to >= 0 && to < stages)) return std::nullopt;
    return handoff{static_cast<flow>(1 - forward), a.stage, to, a.microbatch};
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

/// True when `later` can start only after `earlier` has run, by the rule above applied through any
/// number of stages: both are compute of the same micro-batch m and
/// - `later` is F(s, m) and `earlier` is F(k, m) with k < s (activations travel up the stages);
/// - `later` is R(s, m) and `earlier` is F(k, m) with k <= s (the recompute rebuilds F(s, m)'s output
///   from the stage input);
/// - `later` is B(s, m) or I(s, m) and `earlier` is any F(k, m) (the last stage's gradient is its
///   own forward's loss, and every forward of m feeds it), or B(k, m) or I(k, m) with k > s;
/// - `later` is W(s, m) and `earlier` is I(s, m) or anything I(s, m) needs.
///
/// A forward and a backward of one micro-batch therefore never overlap: an overlapped pair's members
/// must be of different micro-batches (see `action::overlap_next`).
[[nodiscard]] constexpr bool depends_on(const action& later, const action& earlier) noexcept {
    if (later.microbatch != earlier.microbatch || !is_compute(later.kind) || !is_compute(earlier.kind)) return false;
    const int s = later.stage;
    const int k = earlier.stage;
    switch (later.kind) {
    case op::F: return earlier.kind == op::F && k < s;
    case op::R: return earlier.kind == op::F && k <= s;
    case op::B:
    case op::I: return earlier.kind == op::F || ((earlier.kind == op::B || earlier.kind == op::I) && k > s);
    case op::W:
        return earlier.kind == op::F || (earlier.kind == op::I && k == s) ||
               ((earlier.kind == op::B || earlier.kind == op::I) && k > s);
    default: return false;
    }
}

namespace detail {

/// The flat, stage-major index of (s, m) in a table of `microbatches` micro-batches per stage: the
/// layout of `stage_grid` and of the per-(stage, micro-batch) vectors the analyses return
/// (`replay_result::records`).
[[nodiscard]] constexpr std::size_t cell_index(int s, int m, int microbatches) noexcept {
    return static_cast<std::size_t>(s) * static_cast<std::size_t>(microbatches) + static_cast<std::size_t>(m);
}

/// What is wrong with an overlapped pair (`action::overlap_next`), if anything.
enum class pair_problem : std::uint8_t {
    none,
    communication, ///< a member is a SEND or RECV (a lowered program communicates around the pair)
    not_forward,   ///< the flag is on an action other than a forward F
    last_action,   ///< the flag is on the last action of its program: there is no second member
    not_backward,  ///< the second member is not a backward B or I
    chained,       ///< the second member opens a pair itself
    dependent,     ///< the second member needs the first's output (`depends_on`), so they cannot overlap
};

/// A pair's problem and the position (in its program) of the member to blame.
struct pair_fault {
    pair_problem fault = pair_problem::none;
    std::size_t position = 0;
};

/// The first problem of the overlapped pair `prog[p]` opens (`prog[p].overlap_next` is set): the
/// opener's own (communication, not a forward, last action; blamed on `p`) before the second
/// member's (communication, not a backward, chained, dependent; blamed on `p + 1`).
[[nodiscard]] inline pair_fault overlap_fault(const std::vector<action>& prog, std::size_t p) noexcept {
    const action first = prog[p];
    if (is_comm(first.kind)) return {pair_problem::communication, p};
    if (first.kind != op::F) return {pair_problem::not_forward, p};
    if (p + 1 >= prog.size()) return {pair_problem::last_action, p};
    const action second = prog[p + 1];
    if (is_comm(second.kind)) return {pair_problem::communication, p + 1};
    if (second.kind != op::B && second.kind != op::I) return {pair_problem::not_backward, p + 1};
    if (second.overlap_next) return {pair_problem::chained, p + 1};
    if (depends_on(second, first)) return {pair_problem::dependent, p + 1};
    return {};
}

/// True when `prog[p]` opens an overlapped pair of computes: its `overlap_next` is set and it and
/// `prog[p + 1]` are compute actions (`overlap_fault` says whether the pair is well formed). The
/// simulator, the deadlock search, lowering and the timelines read a pair this way.
[[nodiscard]] inline bool opens_pair(const std::vector<action>& prog, std::size_t p) noexcept {
    return prog[p].overlap_next && p + 1 < prog.size() && is_compute(prog[p].kind) && is_compute(prog[p + 1].kind);
}

/// True when the opener's own checks pass, so `prog[p + 1]` is the pair's second member (whatever its faults).
[[nodiscard]] inline bool claims_second(const std::vector<action>& prog, std::size_t p) noexcept {
    return prog[p].kind == op::F && p + 1 < prog.size();
}

/// The sentence for a pair fault, about the blamed action (`prog[f.position]`), naming its stage and
/// micro-batch: `paci::lower: action (0B0) <sentence>` and `validate()`'s `overlap_pair` diagnostics.
[[nodiscard]] inline std::string pair_fault_message(const pair_fault& f, const std::vector<action>& prog) {
    const action a = prog[f.position];
    const auto what = [&] { return concat(to_string(a.kind), " of stage ", a.stage, " micro-batch ", a.microbatch); };
    const auto opener = [&] { return prog[f.position - 1]; };
    switch (f.fault) {
    case pair_problem::communication:
        return concat(what(), " is communication, which cannot be a member of an overlapped pair");
    case pair_problem::not_forward: return concat(what(), " opens an overlapped pair, which only a forward F may");
    case pair_problem::last_action:
        return concat(what(), " opens an overlapped pair but is the last action of its program");
    case pair_problem::not_backward:
        return concat(what(), " is the second member of the overlapped pair ", opener(),
                      " opens, which must be a backward B or I");
    case pair_problem::chained:
        return concat(what(), " is the second member of the overlapped pair ", opener(), " opens and opens another pair");
    case pair_problem::dependent:
        return concat(what(), " needs the output of ", opener(),
                      ", the forward it is paired with: the two cannot run concurrently");
    default: return {};
    }
}

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
    [[nodiscard]] std::size_t index(int s, int m) const noexcept { return detail::cell_index(s, m, microbatches_); }

    [[nodiscard]] T& operator()(int s, int m) noexcept { return cells_[index(s, m)]; }
    [[nodiscard]] const T& operator()(int s, int m) const noexcept { return cells_[index(s, m)]; }
    [[nodiscard]] T& operator[](const action& a) noexcept { return (*this)(a.stage, a.microbatch); }
    [[nodiscard]] const T& operator[](const action& a) const noexcept { return (*this)(a.stage, a.microbatch); }
    [[nodiscard]] T& operator[](std::size_t i) noexcept { return cells_[i]; }
    [[nodiscard]] const T& operator[](std::size_t i) const noexcept { return cells_[i]; }

    /// Sets every cell to `value`.
    void fill(const T& value) { cells_.assign(cells_.size(), value); }

    /// The cells, stage-major (`detail::cell_index`), moved out; the grid is left empty.
    [[nodiscard]] std::vector<T> release() && noexcept {
        stages_ = microbatches_ = 0;
        return std::move(cells_);
    }

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
