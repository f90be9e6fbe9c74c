#pragma once
/// \file
/// DualPipeV (DeepSeek's DualPipe cut in half onto the V placement, after Sea AI Lab's "cut-in-half";
/// PyTorch's `ScheduleDualPipeV`): V placement with overlapped forward/backward pairs.

#include <paci/policy/schedule_policy.hpp>
#include <paci/version/flush.hpp>

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <vector>

namespace paci {

/// DualPipeV: `ranks` ranks each run two stages placed by the V map (stages `r` and
/// `2 ranks - 1 - r` on rank `r`, chunk 0 and chunk 1), so the pipeline has `2 ranks` stages. In the
/// steady phase a rank runs one chunk's forward overlapped with the other chunk's full backward (an
/// overlapped pair, `action::overlap_next`: the forward, then the backward right after it; the
/// members are different stages and neither consumes the other's output), so that one hides the
/// other's communication. The warm-up splits chunk 1's first backwards into `I` and `W`, and the
/// cool-down the later half of its own, whose `W`s then fill the drain. A flush, and each stage
/// updates right after its last weight-gradient work (`B` or `W`) of the update. Every stage runs its
/// weight-gradient work in micro-batch order (the `W` queue is first in, first out), so it sums its
/// gradients in the order a sequential run does.
///
/// Rank `r`'s program per update, with `F0`/`F1` a forward of chunk 0/1, `B0`/`B1` a full backward,
/// `I0`/`I1` an input-gradient backward whose `W` waits in a queue, `W` the queue's oldest, and
/// `(F; B)` an overlapped pair (every kind in micro-batch order), for `M` micro-batches:
/// 1. `2 (ranks - 1 - r)` times `F0`;
/// 2. `r + 1` times `F0 F1`;
/// 3. `ranks - 1 - r` times `I1 W F1`;
/// 4. `M - 2 ranks + r + 1` times `(F0; B1) (F1; B0)`, except that the last rank runs its first
///    `F0` and `B1` one after the other, not overlapped (its forward need not wait for the
///    backward's gradient);
/// 5. `ranks - 1 - r` times `B1 (F1; B0)`;
/// 6. `r + 1` times `B1 B0`, the later half of these `2 (r + 1)` backwards split (`I1`, `I0`);
/// 7. `ranks - 1 - r` times `W I0`;
/// 8. the `r + 1` queued `W`s.
///
/// These are the phases of DeepSeek's DualPipeV, which PyTorch 2.11's `ScheduleDualPipeV` writes
/// (identical programs for 4 ranks and 8 micro-batches).
///
/// Memory: phases 1 and 2 hold `2 ranks` chunk-activations on every rank, the forward of each pair
/// one more until its backward, so every rank peaks at `2 ranks + 1` (DualPipe's "PP + 1" with `PP =
/// 2 ranks` stages), and stage `s` at `2 ranks - s`.
///
/// Requires `ranks >= 1` (at most `max_stages / 2`) and `microbatches >= 2 ranks`, the number of
/// stages, so that every rank has at least one steady-phase round.
struct dualpipe_v {
    static constexpr std::string_view name = "dualpipe_v";
    static constexpr bool splits_backward = true;
    static constexpr bool recomputes = false;
    int ranks = 1;
    int microbatches = 2; ///< micro-batches per optimizer update (at least 2 ranks)
    int steps = 1;

    void validate() const {
        detail::config_require(ranks >= 1, name, "ranks", ranks, "must be >= 1");
        if (!(ranks <= max_stages / 2))
            detail::config_fail(name, "ranks", ranks, detail::concat("must be <= ", max_stages / 2, " (two stages per rank)"));
        detail::check_counts(name, microbatches, steps);
        if (!(microbatches >= 2 * ranks))
            detail::config_fail(name, "microbatches", microbatches,
                                detail::concat("must be >= 2 * ranks (", 2 * ranks, ", the number of stages)"));
    }
    /// `2 ranks` stages on `ranks` ranks, V map. \throws config_error for `ranks` out of range.
    [[nodiscard]] pipeline_shape shape() const {
        if (!(ranks >= 1 && ranks <= max_stages / 2))
            detail::config_fail(name, "ranks", ranks, detail::concat("must be in [1, ", max_stages / 2, "]"));
        return {2 * ranks, ranks, stage_map::v};
    }
    [[nodiscard]] flush controller() const { return flush{microbatches}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }

    /// 1 / micro-batches per update: the last stage scales its loss by it.
    [[nodiscard]] double loss_scale() const noexcept { return 1.0 / static_cast<double>(microbatches); }
    /// Every update drains, so `executor::run(n)` takes whole updates.
    [[nodiscard]] int run_granularity() const noexcept { return microbatches; }
    /// Rank `rank`'s endless program, one update's program at a time. Validates the policy first and
    /// refuses an update's program past `paci::limits` before anything is allocated.
    [[nodiscard]] update_program<dualpipe_v> program(int rank) const {
        validate();
        detail::check_rank(name, rank, ranks);
        detail::check_schedule_size(name, actions_per_update());
        return unchecked_program(rank);
    }
    /// `program(rank)` of a validated policy and a rank in range.
    [[nodiscard]] update_program<dualpipe_v> unchecked_program(int rank) const {
        return update_program<dualpipe_v>(*this, rank);
    }

    [[nodiscard]] schedule generate() const {
        validate();
        return detail::materialize(*this, static_cast<std::int64_t>(microbatches) * steps,
                                   detail::mul_sat(actions_per_update(), static_cast<std::uint64_t>(steps)));
    }

    /// Appends update `g`'s program of rank `r` (the phases above).
    void append_update(int r, int g, std::vector<action>& prog) const {
        const int R = ranks;
        const int M = microbatches;
        const int base = g * M;
        const int stage[2] = {r, 2 * R - 1 - r};
        int fwd[2] = {0, 0};
        int bwd[2] = {0, 0};
        int wgt[2] = {0, 0}; // B and W actions, for the STEP
        std::size_t queue = prog.size(); // the Is before this position have had their W
        const auto weight_done = [&](int c) {
            if (++wgt[c] == M) prog.emplace_back(op::STEP, stage[c], g);
        };
        const auto forward = [&](int c, bool pair) {
            action a{op::F, stage[c], base + fwd[c]++};
            a.overlap_next = pair;
            prog.push_back(a);
        };
        const auto full = [&](int c) {
            prog.emplace_back(op::B, stage[c], base + bwd[c]++);
            weight_done(c);
        };
        const auto split = [&](int c) { prog.emplace_back(op::I, stage[c], base + bwd[c]++); };
        const auto weight = [&] { // the W of the oldest I without one
            while (prog[queue].kind != op::I) ++queue;
            const action i = prog[queue++];
            prog.emplace_back(op::W, i.stage, i.microbatch);
            weight_done(i.stage == stage[0] ? 0 : 1);
        };
        for (int k = 0; k < 2 * (R - 1 - r); ++k) forward(0, false);
        for (int k = 0; k <= r; ++k) {
            forward(0, false);
            forward(1, false);
        }
        for (int k = 0; k < R - 1 - r; ++k) {
            split(1);
            weight();
            forward(1, false);
        }
        for (int k = 0; k < M - 2 * R + r + 1; ++k) {
            forward(0, !(k == 0 && r == R - 1));
            full(1);
            forward(1, true);
            full(0);
        }
        for (int k = 0; k < R - 1 - r; ++k) {
            full(1);
            forward(1, true);
            full(0);
        }
        for (int k = 0; k <= r; ++k) { // backwards 2k and 2k + 1 of 2 (r + 1); the later half split
            if (2 * k >= r + 1) split(1);
            else full(1);
            if (2 * k + 1 >= r + 1) split(0);
            else full(0);
        }
        for (int k = 0; k < R - 1 - r; ++k) {
            weight();
            split(0);
        }
        for (int k = 0; k <= r; ++k) weight();
    }

    friend constexpr bool operator==(const dualpipe_v&, const dualpipe_v&) = default;

private:
    /// Actions of one rank per update, at most: 2 M forwards, 2 M backwards of which at most
    /// 2 ranks - 1 split (an I and a W), and 2 STEPs.
    [[nodiscard]] std::uint64_t actions_per_update() const noexcept {
        return detail::add_sat(detail::mul_sat(static_cast<std::uint64_t>(microbatches), 4U),
                               2U * static_cast<std::uint64_t>(ranks) + 1U);
    }
};

inline std::ostream& operator<<(std::ostream& os, const dualpipe_v& p) {
    return os << "dualpipe_v{.ranks = " << p.ranks << ", .microbatches = " << p.microbatches << ", .steps = " << p.steps
              << "}";
}

static_assert(schedule_policy<dualpipe_v>);

} // namespace paci
