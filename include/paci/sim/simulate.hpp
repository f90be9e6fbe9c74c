#pragma once
/// \file
/// Event-driven simulation of a schedule over a cost model: start and end of every action,
/// makespan, per-rank utilization, bubble fraction, steady-state throughput, stored micro-batches
/// over time.

#include <paci/analysis/validate.hpp>
#include <paci/core/schedule.hpp>
#include <paci/sim/cost_model.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string_view>
#include <utility>
#include <vector>

namespace paci {

/// When an action ran.
struct action_time {
    double start = 0;
    double end = 0;
    friend bool operator==(const action_time&, const action_time&) = default;
};

/// Start and end of every action, `times[rank][position]`, with the fingerprint of the schedule they
/// were computed for (`paci::fingerprint`; 0 when not recorded), so an exporter can refuse to draw them
/// on another schedule (another lowering of the same compute order has the same sizes, other positions).
struct timeline : std::vector<std::vector<action_time>> {
    std::uint64_t schedule_fingerprint = 0;
};

/// What a simulation yields.
struct simulation {
    send_semantics sends = send_semantics::buffered;
    bool completed = true;          ///< false when the ranks block each other (see `deadlock`)
    deadlock_report deadlock{};     ///< the wait cycle when `!completed`
    timeline times; ///< [rank][position]; unrun actions keep {0, 0}
    double makespan = 0;
    std::vector<double> busy;        ///< per rank: time spent computing (F, B, I, W, R, STEP)
    std::vector<double> utilization; ///< per rank: busy / makespan
    double bubble_fraction = 0;      ///< 1 - total busy / (ranks * makespan)
    /// Steady-state micro-batches per time unit: between the last stage's forwards of the first
    /// micro-batch of the second (with two groups, the first) and of the last update group, so the
    /// first fill and the last drain are excluded (a flushed step's own fill and drain are part of
    /// its period). Falls back to micro-batches / makespan with fewer than two groups.
    double throughput = 0;
    /// Per rank: (time, micro-batches stored on the rank) after each change.
    std::vector<std::vector<std::pair<double, int>>> stored;

    /// Time per micro-batch in the steady state (1 / throughput).
    [[nodiscard]] double time_per_microbatch() const noexcept { return throughput > 0 ? 1 / throughput : 0; }
};

/// Runs every rank's program over `costs`. Compute-only schedules move data between ranks at the
/// producer's end plus `costs.transfer()`; lowered schedules move it by their SEND/RECV actions:
/// with `buffered` sends a SEND costs its rank nothing and the data reaches the receiver
/// `transfer()` later, and a RECV is posted, as a non-blocking receive is (PyTorch's runtime posts
/// its `irecv` early and waits for it at the compute that needs the data): it costs its rank
/// nothing, its recorded interval runs from the post to the data's arrival, and the compute that
/// consumes the data starts no earlier than the arrival. A RECV right before its consumer, as
/// `lower` places them, gives the times a blocking receive would. A run completes exactly when
/// `find_deadlock` finds no deadlock under the same semantics (whose receives wait for their SEND). With `rendezvous` sends both ends
/// wait for each other and then take `transfer()` together. So a lowered schedule, as PyTorch writes
/// it or as `lower` makes it, runs in the time of its compute-only form when `transfer()` is 0 and
/// sends are buffered.
///
/// An overlapped pair (`action::overlap_next`) starts when the rank is free and both members' inputs
/// are there, and both members end together after `cost_model::overlapped` of their durations; the
/// rank is busy for that span once. The schedule must be structurally valid (see `validate`); one
/// whose ranks block each other ends early with `completed == false` and the wait cycle. `times`
/// records the schedule's `fingerprint`, so the exporters refuse to draw them on another schedule.
/// \throws config_error for a bad cost model, a schedule that is not structurally valid (see
/// `validate`; a deadlock is not an error, it is reported), tables past `paci::limits`, or times that
/// overflow a double (durations too large for the schedule's length).
[[nodiscard]] inline simulation simulate(const schedule& sch, const cost_model& costs,
                                         send_semantics sends = send_semantics::buffered) {
    constexpr std::string_view api = "simulate";
    detail::check_schedule(api, sch);
    if (sends != send_semantics::buffered && sends != send_semantics::rendezvous)
        detail::config_fail(api, "sends", static_cast<int>(sends),
                            "must be send_semantics::buffered or send_semantics::rendezvous");
    costs.validate(sch.shape.stages);
    // Four times per stage and micro-batch, and per action its interval and a stored-count change.
    detail::check_tables(api, sch.shape.stages, sch.microbatches, 40, sch.size(), 32);
    detail::require_structure(api, sch);
    simulation out;
    out.sends = sends;
    out.times.schedule_fingerprint = fingerprint(sch);
    const pipeline_shape& shape = sch.shape;
    const int P = shape.stages;
    const int T = std::max(sch.microbatches, 0);
    const std::size_t R = sch.ranks.size();
    const bool lowered = sch.lowered();
    const bool posted = lowered && sends == send_semantics::buffered; // RECVs are posted, computes wait
    const double transfer = costs.transfer();
    constexpr double unknown = -1;
    // Per hand-off (by its producer's stage and micro-batch, one grid per flow): when its producer
    // ended, and when its SEND ran. The structure is valid, so every hand-off indexes a cell.
    stage_grid<double> produced[2] = {{P, T, unknown}, {P, T, unknown}};
    stage_grid<double> sent[2] = {{P, T, unknown}, {P, T, unknown}};
    const auto time_of = [](stage_grid<double>* grids, const handoff& h) -> double& {
        return grids[static_cast<int>(h.what)](h.from, h.microbatch);
    };
    const crossings crosses(shape);
    std::vector<double> first_forward_last_stage(static_cast<std::size_t>(T), unknown);

    out.times.resize(R);
    out.busy.assign(R, 0);
    out.stored.resize(R);
    for (std::size_t r = 0; r < R; ++r) out.times[r].assign(sch.ranks[r].size(), action_time{});
    std::vector<std::size_t> pc(R, 0);
    std::vector<double> clock(R, 0);
    std::vector<int> stored(R, 0);

    const auto current = [&](std::size_t r) -> const action* {
        return pc[r] < sch.ranks[r].size() ? &sch.ranks[r][pc[r]] : nullptr;
    };
    // Earliest time a compute's input is available, or `unknown` if not yet known.
    const auto ready_at = [&](const action& a) -> double {
        const auto h = consumes(a, P);
        if (!h) return 0;
        const bool cross = crosses(*h);
        if (lowered && cross) {
            // Its RECV, before it, has run: blocking, it waited for the data; posted, its SEND has
            // run and the data arrives `transfer` after it.
            return posted ? time_of(sent, *h) + transfer : 0;
        }
        const double e = time_of(produced, *h);
        return e == unknown ? unknown : e + (cross ? transfer : 0);
    };
    // Records the current action of `r` as run from `start` to `end` and moves past it.
    const auto record = [&](std::size_t r, double start, double end) {
        const action a = *current(r);
        if (!std::isfinite(end))
            detail::config_fail(api, detail::concat("end of ", a, " on rank ", r), end,
                                "must be finite: the cost model's durations overflow a double over this schedule");
        out.times[r][pc[r]] = {start, end};
        if (is_comm(a.kind)) {
            if (a.kind == op::SEND_F || a.kind == op::SEND_B) time_of(sent, *carries(a)) = start;
        } else if (const auto h = produces(a, P)) {
            time_of(produced, *h) = end;
        }
        switch (a.kind) {
        case op::F:
            if (a.stage == P - 1) first_forward_last_stage[static_cast<std::size_t>(a.microbatch)] = start;
            out.stored[r].emplace_back(end, ++stored[r]);
            break;
        case op::B:
        case op::W: out.stored[r].emplace_back(end, --stored[r]); break;
        default: break;
        }
        ++pc[r];
    };
    const auto finish = [&](std::size_t r, double start, double end) {
        const action a = *current(r);
        record(r, start, end);
        if (is_compute(a.kind) || a.kind == op::STEP) out.busy[r] += end - start;
        clock[r] = end;
    };
    // True when the current action of `r` opens an overlapped pair of computes.
    const auto opens_pair = [&](std::size_t r) { return detail::opens_pair(sch.ranks[r], pc[r]); };

    bool progress = true;
    while (progress) {
        progress = false;
        for (std::size_t r = 0; r < R; ++r) {
            while (const action* a = current(r)) {
                if (is_comm(a->kind) && sends == send_semantics::rendezvous) {
                    const auto peer = static_cast<std::size_t>(shape.rank_of(detail::comm_peer_stage(*a)));
                    const action* there = current(peer);
                    if (there == nullptr || *there != detail::comm_partner(*a)) break;
                    const double t0 = std::max(clock[r], clock[peer]);
                    const double t1 = t0 + transfer;
                    const bool is_send = a->kind == op::SEND_F || a->kind == op::SEND_B;
                    // The SEND is recorded first so that its start is known to the RECV side.
                    if (is_send) {
                        finish(r, t0, t1);
                        finish(peer, t0, t1);
                    } else {
                        finish(peer, t0, t1);
                        finish(r, t0, t1);
                    }
                } else if (a->kind == op::SEND_F || a->kind == op::SEND_B) {
                    record(r, clock[r], clock[r]); // buffered: a SEND costs its rank nothing
                } else if (is_comm(a->kind)) {
                    // Buffered: a RECV is posted; it lasts until its data arrives, but the rank's
                    // clock does not wait for it, the compute that needs the data does. It is taken
                    // once its SEND has run (as find_deadlock's receive waits), which changes no time.
                    const double s = time_of(sent, *carries(*a));
                    if (s == unknown) break;
                    record(r, clock[r], std::max(clock[r], s + transfer));
                } else if (a->overlap_next && opens_pair(r)) {
                    const action second = sch.ranks[r][pc[r] + 1];
                    const double ready_f = ready_at(*a);
                    const double ready_b = ready_at(second);
                    if (ready_f == unknown || ready_b == unknown) break;
                    const double start = std::max({clock[r], ready_f, ready_b});
                    const double span = costs.overlapped(costs.jittered(*a, static_cast<int>(r), pc[r]),
                                                         costs.jittered(second, static_cast<int>(r), pc[r] + 1));
                    record(r, start, start + span);
                    finish(r, start, start + span); // busy for the pair's span once
                } else {
                    const double ready = ready_at(*a);
                    if (ready == unknown) break;
                    const double start = std::max(clock[r], ready);
                    finish(r, start, start + costs.jittered(*a, static_cast<int>(r), pc[r]));
                }
                progress = true;
            }
        }
    }
    for (std::size_t r = 0; r < R; ++r)
        if (current(r) != nullptr) {
            out.completed = false;
            out.deadlock = detail::find_deadlock_unchecked(sch, sends);
            break;
        }

    for (std::size_t r = 0; r < R; ++r) out.makespan = std::max(out.makespan, clock[r]);
    // Utilizations are summed rather than busy times, so that no sum passes the largest double.
    double total_utilization = 0;
    for (std::size_t r = 0; r < R; ++r) {
        out.utilization.push_back(out.makespan > 0 ? out.busy[r] / out.makespan : 0);
        total_utilization += out.utilization.back();
    }
    out.bubble_fraction = out.makespan > 0 && R > 0 ? 1 - total_utilization / static_cast<double>(R) : 0;

    const int N = sch.steps;
    if (N >= 2 && T > 0 && T % N == 0) {
        const int M = T / N;
        const int first = N >= 3 ? 1 : 0; // skip the first group's fill when there is a group to spare
        const double t0 = first_forward_last_stage[static_cast<std::size_t>(first * M)];
        const double t1 = first_forward_last_stage[static_cast<std::size_t>((N - 1) * M)];
        if (t0 != unknown && t1 != unknown && t1 > t0)
            out.throughput = static_cast<double>((N - 1 - first) * M) / (t1 - t0);
    }
    if (out.throughput == 0 && out.makespan > 0) out.throughput = static_cast<double>(T) / out.makespan;
    return out;
}

inline std::ostream& operator<<(std::ostream& os, const simulation& s) {
    os << "makespan " << s.makespan << ", bubble " << s.bubble_fraction << ", throughput " << s.throughput
       << " micro-batches per time unit";
    if (!s.completed) os << "; " << s.deadlock.message;
    return os;
}

} // namespace paci
