#pragma once
/// \file
/// Version replay: the weight version every forward, recompute, backward and weight backward reads,
/// and what each stage stores over time.

#include <paci/core/dataflow.hpp>
#include <paci/core/error.hpp>
#include <paci/core/schedule.hpp>
#include <paci/version/accumulation.hpp>
#include <paci/version/version_controller.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace paci {

/// Versions of one (stage, micro-batch); -1 where the action did not run (or, for `applied`, no
/// update inside the schedule consumed the gradient).
struct version_record {
    version_t forward = -1;   ///< read by F
    version_t recompute = -1; ///< read by R
    version_t backward = -1;  ///< read by B (or I)
    version_t weight = -1;    ///< read by W (split backward)
    version_t applied = -1;   ///< the stage's version just before the update that applied this gradient

    /// Updates crossed between forward and backward: `backward - forward` (-1 if either is missing).
    [[nodiscard]] constexpr int drift() const noexcept { return forward < 0 || backward < 0 ? -1 : backward - forward; }
    /// Version the gradient is applied to minus the forward's version (-1 if not applied in the window).
    [[nodiscard]] constexpr int staleness() const noexcept { return forward < 0 || applied < 0 ? -1 : applied - forward; }
    friend constexpr bool operator==(const version_record&, const version_record&) = default;
};

/// Per-stage maxima of a replay.
struct stage_replay {
    int max_drift = 0;
    int max_staleness = 0;
    int peak_versions = 1;    ///< resident weight versions (current plus distinct stashed ones)
    int peak_stored = 0;      ///< micro-batches with anything stored (forward done, backward not finished)
    int peak_activations = 0; ///< of those, holding full activations (not just the stage input)
    int updates = 0;          ///< STEP actions
    friend bool operator==(const stage_replay&, const stage_replay&) = default;
};

/// Everything a replay yields.
struct replay_result {
    int stages = 0;
    int microbatches = 0;
    std::vector<version_record> records; ///< index `stage * microbatches + microbatch`
    std::vector<stage_replay> per_stage;
    /// Per micro-batch: max minus min of the forward versions over stages (-1 if some forward is missing).
    std::vector<int> vertical_spread;
    int max_vertical_spread = 0;
    /// Per rank, after each of its actions: micro-batches stored (summed over its stages).
    std::vector<std::vector<std::int32_t>> stored_timeline;
    /// Per rank, after each of its actions: micro-batches holding full activations.
    std::vector<std::vector<std::int32_t>> activation_timeline;

    /// The record of (`stage`, `microbatch`).
    /// \throws config_error for a pair out of range (or records that do not cover it).
    [[nodiscard]] const version_record& at(int stage, int microbatch) const {
        const std::size_t i = detail::cell_index(stage, microbatch, microbatches);
        if (stage < 0 || stage >= stages || microbatch < 0 || microbatch >= microbatches || i >= records.size())
            detail::config_fail("replay_result::at", "stage, micro-batch", detail::concat(stage, ", ", microbatch),
                                detail::concat("must be in [0, ", stages, ") x [0, ", microbatches, ") with ",
                                               records.size(), " records"));
        return records[i];
    }
};

/// Replays a schedule's programs and records the version each action reads. A stage's version is
/// the number of its STEP actions before the action (a stage runs on one rank, so no cross-rank
/// timing is needed); `controller.backward_reads` says whether backwards read the current or the
/// stashed weights. Robust to invalid actions (missing actions leave -1 in the records; actions out
/// of range are skipped).
///
/// Programs are replayed in order, communication skipped, so a lowered schedule (paci's, or
/// PyTorch's `*.comms.csv` as imported) replays exactly as its compute-only form. The two members of
/// an overlapped pair (`action::overlap_next`) replay in order, forward first: the forward's
/// micro-batch is stored before the backward releases its own, so stored and activation counts peak
/// with both held, as a rank that runs the two concurrently holds them.
///
/// A schedule without STEP actions (a PyTorch schedule: its text has no optimizer step) reads
/// version 0 everywhere: as if each stage applied one flushed update after its last backward, which
/// is where PyTorch puts the stage's `REDUCE_GRAD` (the end of its gradient accumulation; the
/// importer keeps that cell in the layout, outside the schedule). That update lies outside the
/// schedule, so `applied` (and `staleness()`) stay -1 and `updates` 0.
/// \throws config_error if the schedule's header is inconsistent (shape, one program per rank,
/// counts >= 0) or its tables (about 24 bytes per stage and micro-batch) would pass `paci::limits`.
template <version_controller Controller = accumulation>
[[nodiscard]] replay_result replay(const schedule& sch, const Controller& controller = Controller{}) {
    detail::check_schedule("replay", sch);
    detail::check_tables("replay", sch.shape.stages, sch.microbatches, sizeof(version_record) + 1, sch.size());
    replay_result out;
    const int P = sch.shape.stages;
    const int T = sch.microbatches;
    out.stages = P;
    out.microbatches = T;
    stage_grid<version_record> records(P, T);
    out.per_stage.assign(static_cast<std::size_t>(std::max(P, 0)), stage_replay{});
    const auto valid = [&](const action& a) {
        return a.stage >= 0 && a.stage < P && (a.kind == op::STEP || (a.microbatch >= 0 && a.microbatch < T));
    };

    // Which micro-batches recompute (they store only their input until R) and which split the backward.
    stage_grid<std::uint8_t> flags(P, T, 0);
    constexpr std::uint8_t has_r = 1, has_w = 2;
    std::vector<int> steps_at(static_cast<std::size_t>(std::max(P, 0)), 0);
    for (const auto& prog : sch.ranks)
        for (const action a : prog) {
            if (!valid(a)) continue;
            if (a.kind == op::STEP) ++steps_at[static_cast<std::size_t>(a.stage)];
            else if (a.kind == op::R) flags[a] |= has_r;
            else if (a.kind == op::W) flags[a] |= has_w;
        }

    struct stage_state {
        version_t current = 0;
        int stored = 0;
        int activations = 0;
        std::vector<std::int32_t> pending;  // gradients accumulated since the last update
        std::vector<std::int32_t> in_use;   // per version: in-flight micro-batches that stashed it
        int distinct_in_use = 0;
    };
    std::vector<stage_state> st(static_cast<std::size_t>(std::max(P, 0)));
    for (int s = 0; s < P; ++s)
        if (Controller::stashes) st[static_cast<std::size_t>(s)].in_use.assign(static_cast<std::size_t>(steps_at[static_cast<std::size_t>(s)]) + 1, 0);

    const auto resident = [&](const stage_state& x) {
        if (!Controller::stashes) return 1;
        const auto cur = static_cast<std::size_t>(x.current);
        const bool current_in_use = cur < x.in_use.size() && x.in_use[cur] > 0;
        return x.distinct_in_use + (current_in_use ? 0 : 1);
    };
    const auto release = [&](stage_state& x, stage_replay& sum, int s, int m) {
        version_record& rec = records(s, m);
        x.pending.push_back(m);
        if (rec.forward < 0) return; // a backward without a forward (invalid schedule): nothing was stored
        --x.stored;
        --x.activations;
        if (Controller::stashes && rec.forward >= 0) {
            auto& c = x.in_use[static_cast<std::size_t>(rec.forward)];
            if (--c == 0) --x.distinct_in_use;
        }
        sum.peak_versions = std::max(sum.peak_versions, resident(x));
    };

    out.stored_timeline.resize(sch.ranks.size());
    out.activation_timeline.resize(sch.ranks.size());
    for (std::size_t r = 0; r < sch.ranks.size(); ++r) {
        const auto& prog = sch.ranks[r];
        auto& stored_line = out.stored_timeline[r];
        auto& act_line = out.activation_timeline[r];
        stored_line.reserve(prog.size());
        act_line.reserve(prog.size());
        std::int32_t rank_stored = 0;
        std::int32_t rank_acts = 0;
        for (const action a : prog) {
            if (valid(a) && !is_comm(a.kind)) {
                const int s = a.stage;
                stage_state& x = st[static_cast<std::size_t>(s)];
                stage_replay& sum = out.per_stage[static_cast<std::size_t>(s)];
                const int before_stored = x.stored;
                const int before_acts = x.activations;
                if (a.kind == op::STEP) {
                    for (const auto m : x.pending) records(s, m).applied = x.current;
                    x.pending.clear();
                    ++x.current;
                    ++sum.updates;
                    sum.peak_versions = std::max(sum.peak_versions, resident(x));
                } else {
                    const int m = a.microbatch;
                    version_record& rec = records(s, m);
                    const auto f = flags(s, m);
                    switch (a.kind) {
                    case op::F:
                        rec.forward = x.current;
                        ++x.stored;
                        if (!(f & has_r)) ++x.activations;
                        if (Controller::stashes) {
                            auto& c = x.in_use[static_cast<std::size_t>(x.current)];
                            if (c++ == 0) ++x.distinct_in_use;
                            sum.peak_versions = std::max(sum.peak_versions, resident(x));
                        }
                        break;
                    case op::R:
                        rec.recompute = x.current;
                        ++x.activations;
                        break;
                    case op::B:
                        rec.backward = controller.backward_reads(x.current, rec.forward);
                        release(x, sum, s, m);
                        break;
                    case op::I:
                        rec.backward = controller.backward_reads(x.current, rec.forward);
                        if (!(f & has_w)) release(x, sum, s, m);
                        break;
                    case op::W:
                        rec.weight = controller.backward_reads(x.current, rec.forward);
                        release(x, sum, s, m);
                        break;
                    default: break;
                    }
                    if (rec.forward >= 0 && rec.backward >= 0) sum.max_drift = std::max(sum.max_drift, rec.drift());
                }
                sum.peak_stored = std::max(sum.peak_stored, x.stored);
                sum.peak_activations = std::max(sum.peak_activations, x.activations);
                rank_stored += x.stored - before_stored;
                rank_acts += x.activations - before_acts;
            }
            stored_line.push_back(rank_stored);
            act_line.push_back(rank_acts);
        }
    }

    for (int s = 0; s < P; ++s)
        for (int m = 0; m < T; ++m) {
            const int k = records(s, m).staleness();
            auto& sum = out.per_stage[static_cast<std::size_t>(s)];
            sum.max_staleness = std::max(sum.max_staleness, k);
        }
    out.vertical_spread.assign(static_cast<std::size_t>(T), 0);
    for (int m = 0; m < T; ++m) {
        version_t lo = 0, hi = 0;
        bool complete = true;
        for (int s = 0; s < P; ++s) {
            const version_t v = records(s, m).forward;
            if (v < 0) complete = false;
            lo = s == 0 ? v : std::min(lo, v);
            hi = s == 0 ? v : std::max(hi, v);
        }
        out.vertical_spread[static_cast<std::size_t>(m)] = complete ? hi - lo : -1;
        if (complete) out.max_vertical_spread = std::max(out.max_vertical_spread, hi - lo);
    }
    out.records = std::move(records).release();
    return out;
}

} // namespace paci
