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
/// `transfer()` later; with `rendezvous` sends both ends wait for each other and then take
/// `transfer()` together. The schedule must be structurally valid (see `validate`); one whose ranks
/// block each other ends early with `completed == false` and the wait cycle. `times` records the
/// schedule's `fingerprint`, so the exporters refuse to draw them on another schedule.
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
    const double transfer = costs.transfer();
    constexpr double unknown = -1;
    const auto idx = [&](int s, int m) {
        return static_cast<std::size_t>(s) * static_cast<std::size_t>(T) + static_cast<std::size_t>(m);
    };
    const auto in_range = [&](int s, int m) { return s >= 0 && s < P && m >= 0 && m < T; };
    const std::size_t n = static_cast<std::size_t>(std::max(P, 0)) * static_cast<std::size_t>(T);
    std::vector<double> fwd_end(n, unknown), bwd_end(n, unknown), sent_f(n, unknown), sent_b(n, unknown);
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
    // Earliest time the current action's input is available, or `unknown` if not yet known.
    const auto ready_at = [&](std::size_t r, const action& a) -> double {
        const int rank = static_cast<int>(r);
        if (a.kind == op::F && a.stage > 0) {
            const bool cross = shape.rank_of(a.stage - 1) != rank;
            if (lowered && cross) return 0;
            const double e = in_range(a.stage - 1, a.microbatch) ? fwd_end[idx(a.stage - 1, a.microbatch)] : unknown;
            return e == unknown ? unknown : e + (cross ? transfer : 0);
        }
        if ((a.kind == op::B || a.kind == op::I) && a.stage + 1 < P) {
            const bool cross = shape.rank_of(a.stage + 1) != rank;
            if (lowered && cross) return 0;
            const double e = in_range(a.stage + 1, a.microbatch) ? bwd_end[idx(a.stage + 1, a.microbatch)] : unknown;
            return e == unknown ? unknown : e + (cross ? transfer : 0);
        }
        if (a.kind == op::RECV_F || a.kind == op::RECV_B) {
            const action partner = detail::comm_partner(a);
            if (!in_range(partner.stage, partner.microbatch)) return unknown;
            const double sent = (a.kind == op::RECV_F ? sent_f : sent_b)[idx(partner.stage, partner.microbatch)];
            return sent == unknown ? unknown : sent + transfer;
        }
        return 0;
    };
    const auto finish = [&](std::size_t r, double start, double end) {
        const action a = *current(r);
        if (!std::isfinite(end))
            detail::config_fail(api, detail::concat("end of ", a, " on rank ", r), end,
                                "must be finite: the cost model's durations overflow a double over this schedule");
        out.times[r][pc[r]] = {start, end};
        clock[r] = end;
        if (in_range(a.stage, a.microbatch)) {
            const auto k = idx(a.stage, a.microbatch);
            switch (a.kind) {
            case op::F:
                fwd_end[k] = end;
                if (a.stage == P - 1) first_forward_last_stage[static_cast<std::size_t>(a.microbatch)] = start;
                out.stored[r].emplace_back(end, ++stored[r]);
                break;
            case op::B:
                bwd_end[k] = end;
                out.stored[r].emplace_back(end, --stored[r]);
                break;
            case op::I: bwd_end[k] = end; break;
            case op::W: out.stored[r].emplace_back(end, --stored[r]); break;
            case op::SEND_F: sent_f[k] = start; break;
            case op::SEND_B: sent_b[k] = start; break;
            default: break;
            }
        }
        if (is_compute(a.kind) || a.kind == op::STEP) out.busy[r] += end - start;
        ++pc[r];
    };

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
                    finish(r, clock[r], clock[r]);
                } else {
                    const double ready = ready_at(r, *a);
                    if (ready == unknown) break;
                    const double start = std::max(clock[r], ready);
                    const bool recv = a->kind == op::RECV_F || a->kind == op::RECV_B;
                    finish(r, recv ? clock[r] : start, recv ? start : start + costs.jittered(*a, static_cast<int>(r), pc[r]));
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
