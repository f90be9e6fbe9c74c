#pragma once
/// \file
/// ZB-V (Qi et al., "Zero Bubble Pipeline Parallelism", the ZB-V schedule of its later version;
/// PyTorch's `ScheduleZBVZeroBubble`): zero-bubble with the V placement, two stages per rank.

#include <paci/policy/schedule_policy.hpp>
#include <paci/version/flush.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <vector>

namespace paci {

/// ZB-V: `ranks` ranks each run two stages placed by the V map (stages `r` and `2 ranks - 1 - r` on
/// rank `r`, chunk 0 and chunk 1), so the pipeline has `2 ranks` stages and a micro-batch goes down
/// the ranks and back up. The backward is split into `I` (input gradient) and `W` (weight
/// gradient); the `W`s fill what would be bubbles. A flush, and each stage updates right after its
/// last `W` of the update.
///
/// Rank `r`'s program per update, with `F0`/`F1` a forward of chunk 0/1 and `IW1`, `IW0` an `I`
/// directly followed by its `W` (every kind in micro-batch order, skipped once done):
/// - warm-up: `2 (ranks - r) - 1` times `F0`; `F1`; `r` times `F0 F1`;
/// - `ranks - 1 - r` times `IW1 F1` (chunk 0's gradients are not back yet);
/// - steady state until the update is done: `IW1 F0 IW0 F1`;
/// - after the update's last forward (the cool-down), each `W` runs `2 r` `I`s after its own (a
///   first-in, first-out lag, as ZB-H1 defers its `W`s), the last `2 r` at the end of the update:
///   the cool-down's `I`s, the critical path back up the V, then never wait behind a `W`.
/// Every stage runs its `W`s in micro-batch order, so it sums its weight gradients in the order a
/// sequential run does.
///
/// Memory: every forward before rank `r`'s first `W` is still held, and after it at most one forward
/// runs between two `W`s, so rank `r` holds at most `min(M, 2 ranks - 1 - r) + min(M, r + 1)`
/// chunk-activations for `M` micro-batches: `2 ranks` once `M >= 2 ranks - 1`, that is `ranks` full
/// stages of the 2-chunk model, 1F1B's peak (rank 0's) on `ranks` stages. Stage `s` holds at most
/// `min(M, 2 ranks - s)`.
///
/// Bubble: Qi et al. report ZB-V's bubble as zero when a chunk's forward, input-gradient and
/// weight-gradient times are equal (sail-sg/zero-bubble-pipeline-parallelism, README, the comparison
/// of schedules: "ZBV: bubble rate 0, assuming T_F = T_B = T_W"; ZB-V is the V schedule of the later
/// version of "Zero Bubble Pipeline Parallelism"): every rank is busy from its first forward to its
/// last action. With chunk costs `F = I = W` and free transfers rank `r` starts at `r F` and ends at
/// `r F + 6 M F`, so one update takes `(ranks - 1) F + 6 M F` (`6 M + ranks - 1` for unit costs), the
/// least any schedule can take (rank `ranks - 1` waits `ranks - 1` forwards, then has `6 M` to do),
/// and `N` updates `(ranks - 1) F + 6 M N F`. This holds for `M >= 2 ranks - 1`; fewer micro-batches
/// leave a bubble (as 1F1B's do).
///
/// Requires `ranks >= 1` (at most `max_stages / 2`) and `microbatches >= 1`: any number of
/// micro-batches gives a valid, deadlock-free schedule; the zero bubble needs `M >= 2 ranks - 1`.
struct zb_v {
    static constexpr std::string_view name = "zb_v";
    static constexpr bool splits_backward = true;
    static constexpr bool recomputes = false;
    int ranks = 1;
    int microbatches = 1; ///< micro-batches per optimizer update
    int steps = 1;

    void validate() const {
        detail::config_require(ranks >= 1, name, "ranks", ranks, "must be >= 1");
        if (!(ranks <= max_stages / 2))
            detail::config_fail(name, "ranks", ranks, detail::concat("must be <= ", max_stages / 2, " (two stages per rank)"));
        detail::check_counts(name, microbatches, steps);
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
    [[nodiscard]] update_program<zb_v> program(int rank) const {
        validate();
        detail::check_rank(name, rank, ranks);
        detail::check_schedule_size(name, actions_per_update());
        return unchecked_program(rank);
    }
    /// `program(rank)` of a validated policy and a rank in range.
    [[nodiscard]] update_program<zb_v> unchecked_program(int rank) const { return update_program<zb_v>(*this, rank); }

    [[nodiscard]] schedule generate() const {
        validate();
        return detail::materialize(*this, static_cast<std::int64_t>(microbatches) * steps,
                                   detail::mul_sat(actions_per_update(), static_cast<std::uint64_t>(steps)));
    }

    /// Appends update `g`'s program of rank `r` (the phases above); each stage's STEP follows its last `W`.
    void append_update(int r, int g, std::vector<action>& prog) const {
        const int M = microbatches;
        const int base = g * M;
        const int stage[2] = {r, 2 * ranks - 1 - r};
        int fwd[2] = {0, 0};
        int inp[2] = {0, 0};
        int wgt[2] = {0, 0};
        bool cooling = false; // every forward of the update has been issued
        std::size_t queue = 0; // in the cool-down: the Is before this position have had their W
        int queued = 0;        // cool-down Is whose W has not run yet
        const auto weight = [&](int c, int m) {
            prog.emplace_back(op::W, stage[c], m);
            if (++wgt[c] == M) prog.emplace_back(op::STEP, stage[c], g);
        };
        const auto oldest_weight = [&] {
            while (prog[queue].kind != op::I) ++queue;
            const action i = prog[queue++];
            --queued;
            weight(i.stage == stage[0] ? 0 : 1, i.microbatch);
        };
        const auto forward = [&](int c) {
            if (fwd[c] == M) return;
            prog.emplace_back(op::F, stage[c], base + fwd[c]++);
            if (fwd[0] == M && fwd[1] == M) {
                cooling = true;
                queue = prog.size();
            }
        };
        const auto backward = [&](int c) {
            if (inp[c] == M) return;
            const int m = base + inp[c]++;
            prog.emplace_back(op::I, stage[c], m);
            if (!cooling) {
                weight(c, m);
            } else if (++queued > 2 * r) {
                oldest_weight();
            }
        };
        for (int k = std::min(2 * (ranks - r) - 1, M); k > 0; --k) forward(0);
        forward(1);
        for (int k = std::min(r, M); k > 0; --k) {
            forward(0);
            forward(1);
        }
        for (int k = std::min(ranks - 1 - r, M); k > 0; --k) {
            backward(1);
            forward(1);
        }
        while (inp[0] < M || inp[1] < M) {
            backward(1);
            forward(0);
            backward(0);
            forward(1);
        }
        while (queued > 0) oldest_weight();
    }

    friend constexpr bool operator==(const zb_v&, const zb_v&) = default;

private:
    /// Actions of one rank per update: F, I and W for 2 stages and M micro-batches, and 2 STEPs.
    [[nodiscard]] std::uint64_t actions_per_update() const noexcept {
        return detail::add_sat(detail::mul_sat(static_cast<std::uint64_t>(microbatches), 6U), 2U);
    }
};

inline std::ostream& operator<<(std::ostream& os, const zb_v& p) {
    return os << "zb_v{.ranks = " << p.ranks << ", .microbatches = " << p.microbatches << ", .steps = " << p.steps << "}";
}

static_assert(schedule_policy<zb_v>);

} // namespace paci
