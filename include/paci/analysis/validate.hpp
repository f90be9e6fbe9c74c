#pragma once
/// \file
/// Schedule validation: structure, pairing of communication, and deadlock detection under buffered
/// and rendezvous send semantics.

#include <paci/analysis/diagnostic.hpp>
#include <paci/core/error.hpp>
#include <paci/core/schedule.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace paci {

/// How a SEND completes.
enum class send_semantics : std::uint8_t {
    buffered,   ///< eager: a SEND completes at once (non-blocking transports, NCCL/MPI isend)
    rendezvous, ///< a SEND completes only when the peer reaches the matching RECV (blocking MPI_Ssend)
};

[[nodiscard]] constexpr std::string_view to_string(send_semantics s) noexcept {
    return s == send_semantics::buffered ? "buffered" : "rendezvous";
}
inline std::ostream& operator<<(std::ostream& os, send_semantics s) { return os << to_string(s); }

/// One rank blocked at one action, waiting for another rank.
struct wait_edge {
    int rank = -1;
    std::int64_t position = -1;
    action act{};
    int waits_for = -1;
    friend bool operator==(const wait_edge&, const wait_edge&) = default;
};

/// Result of running a schedule's programs against each other until they finish or block.
struct deadlock_report {
    send_semantics semantics = send_semantics::buffered;
    bool deadlock_free = true;
    /// The wait cycle (each edge waits for the next, the last for the first), or, when
    /// `waits_on_finished`, a chain of waits ending at a rank that has finished.
    std::vector<wait_edge> cycle;
    bool waits_on_finished = false;
    std::string message; ///< empty when deadlock-free
};

inline std::ostream& operator<<(std::ostream& os, const deadlock_report& d) {
    return os << (d.deadlock_free ? std::string("deadlock-free under ") + std::string(to_string(d.semantics)) + " sends"
                                   : d.message);
}

/// Everything `validate()` found.
struct validation_report {
    std::vector<diagnostic> errors; ///< structural errors, the first `max_kept` of them, in rank order
    std::size_t error_count = 0;    ///< all structural errors, including those not kept
    deadlock_report buffered{send_semantics::buffered, true, {}, false, {}};
    deadlock_report rendezvous{send_semantics::rendezvous, true, {}, false, {}};

    static constexpr std::size_t max_kept = 100;

    /// No structural error.
    [[nodiscard]] bool structure_ok() const noexcept { return error_count == 0; }
    /// Runs to completion under `s` sends.
    [[nodiscard]] bool deadlock_free(send_semantics s) const noexcept {
        return structure_ok() && (s == send_semantics::buffered ? buffered : rendezvous).deadlock_free;
    }
    /// Structurally sound and runs to completion on a non-blocking transport.
    [[nodiscard]] bool valid() const noexcept { return deadlock_free(send_semantics::buffered); }
    explicit operator bool() const noexcept { return valid(); }
    /// First problem, or empty.
    [[nodiscard]] std::string first_error() const;
};

namespace detail {

inline constexpr std::int32_t absent = -1;

/// Positions of every action of a schedule, indexed by kind and (stage, micro-batch).
struct position_index {
    stage_grid<std::int32_t> pos[op_count]; // STEP slot unused

    position_index(int p, int t) {
        for (int k = 0; k < op_count; ++k)
            if (static_cast<op>(k) != op::STEP) pos[k] = stage_grid<std::int32_t>(p, t, absent);
    }
    [[nodiscard]] std::int32_t at(op k, int s, int m) const noexcept { return pos[static_cast<int>(k)](s, m); }
    [[nodiscard]] std::int32_t at(const action& a) const noexcept { return pos[static_cast<int>(a.kind)][a]; }
    /// Position of the backward that needs the next stage's gradient: B, or I when split.
    [[nodiscard]] std::int32_t backward(int s, int m) const noexcept {
        const auto b = at(op::B, s, m);
        return b != absent ? b : at(op::I, s, m);
    }
    /// True when some compute of (s, m) is in the schedule.
    [[nodiscard]] bool runs(int s, int m) const noexcept {
        return at(op::F, s, m) != absent || at(op::B, s, m) != absent || at(op::I, s, m) != absent ||
               at(op::W, s, m) != absent || at(op::R, s, m) != absent;
    }
    /// The first position of a compute of (s, m), or `absent`.
    [[nodiscard]] std::int32_t first(int s, int m) const noexcept {
        std::int32_t best = absent;
        for (const op k : {op::F, op::B, op::I, op::W, op::R}) {
            const auto p = at(k, s, m);
            if (p != absent && (best == absent || p < best)) best = p;
        }
        return best;
    }
};

class error_sink {
public:
    explicit error_sink(validation_report& r) : report_(r) {}
    void add(rule broken, int rank, std::int64_t position, action act, std::string message) {
        ++report_.error_count;
        if (report_.errors.size() < validation_report::max_kept)
            report_.errors.push_back({broken, rank, position, act, std::move(message)});
    }

private:
    validation_report& report_;
};

inline std::string describe(int s, int m) { return concat("stage ", s, " micro-batch ", m); }

/// Stages that run micro-batches past the end the others agree on (PyTorch output with one stage's
/// indices shifted, say): per stage whether it is such an outlier, per micro-batch whether it is past
/// that end. Both empty when every stage runs every micro-batch or no stage is an outlier.
struct microbatch_outliers {
    std::vector<std::uint8_t> stage;      ///< per stage: runs a micro-batch past the agreed end
    std::vector<std::uint8_t> past_end;   ///< per micro-batch: past the end, run by a minority of stages
    /// True when (s, m) runs nothing and that is the outlier's fault, already reported.
    [[nodiscard]] bool excuses(const position_index& ix, int s, int m) const noexcept {
        return !stage.empty() && (past_end[static_cast<std::size_t>(m)] || stage[static_cast<std::size_t>(s)]) &&
               !ix.runs(s, m);
    }
};

/// Finds and reports the stages that run micro-batches past the end a majority of stages agrees on:
/// with `agreed` the micro-batches more than half the stages run and `end` one past the last of
/// them, a stage that runs some micro-batch at or past `end` that fewer than half the stages run is
/// wrong, not the stages that lack it. One `microbatch_mismatch` diagnostic per such stage, at its
/// first action on such a micro-batch, names the first one and the first agreed micro-batch it
/// never runs.
inline microbatch_outliers find_outliers(const schedule& sch, const position_index& ix, error_sink& err) {
    const int P = sch.shape.stages;
    const int T = sch.microbatches;
    microbatch_outliers out;
    std::vector<int> runners(static_cast<std::size_t>(T), 0);
    for (int s = 0; s < P; ++s)
        for (int m = 0; m < T; ++m) runners[static_cast<std::size_t>(m)] += ix.runs(s, m) ? 1 : 0;
    const auto count = [&](int m) { return runners[static_cast<std::size_t>(m)]; };
    int end = 0;
    for (int m = 0; m < T; ++m)
        if (2 * count(m) > P) end = m + 1;
    std::vector<std::uint8_t> past(static_cast<std::size_t>(T), 0);
    bool any = false;
    for (int m = end; m < T; ++m)
        if (count(m) > 0 && 2 * count(m) < P) {
            past[static_cast<std::size_t>(m)] = 1;
            any = true;
        }
    if (end == 0 || !any) return out;
    std::vector<std::uint8_t> outlier(static_cast<std::size_t>(P), 0);
    for (int s = 0; s < P; ++s)
        for (int m = end; m < T && !outlier[static_cast<std::size_t>(s)]; ++m)
            outlier[static_cast<std::size_t>(s)] = past[static_cast<std::size_t>(m)] && ix.runs(s, m) ? 1 : 0;
    // "the other stages" when every stage but the outliers runs exactly 0 .. end-1.
    bool others_agree = true;
    for (int s = 0; s < P && others_agree; ++s) {
        if (outlier[static_cast<std::size_t>(s)]) continue;
        for (int m = 0; m < T && others_agree; ++m) others_agree = ix.runs(s, m) == (m < end);
    }
    for (int s = 0; s < P; ++s) {
        if (!outlier[static_cast<std::size_t>(s)]) continue;
        int extra = -1, extras = 0, missing = -1, missings = 0;
        for (int m = 0; m < T; ++m) {
            const bool runs = ix.runs(s, m);
            if (m >= end && runs && past[static_cast<std::size_t>(m)]) {
                if (extra < 0) extra = m;
                ++extras;
            }
            if (m < end && !runs && 2 * count(m) > P) {
                if (missing < 0) missing = m;
                ++missings;
            }
        }
        const int rank = sch.shape.rank_of(s);
        const auto pos = ix.first(s, extra);
        std::string msg = concat("stage ", s);
        if (missing >= 0)
            msg += concat(" never runs micro-batch ", missing,
                          missings > 1 ? concat(" (nor ", missings - 1, " more before ", end, ")") : std::string(), " and");
        msg += concat(" runs micro-batch ", extra, extras > 1 ? concat(" (and ", extras - 1, " more)") : std::string(),
                      extra == end ? ", one past the end" : ", past the end", " of the micro-batches 0..", end - 1,
                      others_agree ? " that the other stages run" : " that most stages run");
        err.add(rule::microbatch_mismatch, rank, pos, sch.ranks[static_cast<std::size_t>(rank)][static_cast<std::size_t>(pos)],
                std::move(msg));
    }
    out.stage = std::move(outlier);
    out.past_end = std::move(past);
    return out;
}

inline void check_structure(const schedule& sch, position_index& ix, error_sink& err) {
    const pipeline_shape& shape = sch.shape;
    const int P = shape.stages;
    const int T = sch.microbatches;
    std::vector<int> steps_seen(static_cast<std::size_t>(P), 0);
    std::vector<int> step_rank_pos(static_cast<std::size_t>(P), absent);
    std::vector<int> forwards(static_cast<std::size_t>(P), 0);

    for (std::size_t r = 0; r < sch.ranks.size(); ++r) {
        const int rank = static_cast<int>(r);
        const auto& prog = sch.ranks[r];
        // The fault of the pair opened at p - 1 that blames its second member, reported at p.
        pair_fault pending{};
        bool second = false; // prog[p] is the second member of the pair prog[p - 1] opens
        for (std::size_t p = 0; p < prog.size(); ++p) {
            const action a = prog[p];
            const auto pos = static_cast<std::int64_t>(p);
            if (!is_op(a.kind)) {
                err.add(rule::unknown_op, rank, pos, a,
                        concat("op ", static_cast<int>(a.kind), " is none of F, B, I, W, R, STEP, SEND_F, RECV_F, "
                                                                "SEND_B, RECV_B"));
                second = false;
                continue;
            }
            // Overlapped pairs: the opener's faults here, the second member's at the next position.
            bool member = second;
            if (second) {
                second = false;
                if (pending.fault != pair_problem::none) err.add(rule::overlap_pair, rank, pos, a, pair_fault_message(pending, prog));
            } else if (a.overlap_next) {
                const pair_fault f = overlap_fault(prog, p);
                if (f.fault != pair_problem::none && f.position == p)
                    err.add(rule::overlap_pair, rank, pos, a, pair_fault_message(f, prog));
                second = member = claims_second(prog, p);
                pending = f;
            }
            if (a.stage < 0 || a.stage >= P) {
                err.add(rule::placement, rank, pos, a, concat("stage ", a.stage, " is out of range [0, ", P, ")"));
                continue;
            }
            if (shape.rank_of(a.stage) != rank) {
                if (member)
                    err.add(rule::overlap_pair, rank, pos, a,
                            concat("stage ", a.stage, " runs on rank ", shape.rank_of(a.stage), ", not rank ", rank,
                                   ", which runs the overlapped pair it is a member of"));
                else
                    err.add(rule::placement, rank, pos, a,
                            concat("stage ", a.stage, " runs on rank ", shape.rank_of(a.stage), ", not rank ", rank));
                continue;
            }
            if (a.kind == op::STEP) {
                auto& seen = steps_seen[static_cast<std::size_t>(a.stage)];
                if (a.microbatch != seen)
                    err.add(rule::step_order, rank, pos, a,
                            concat("update ordinal ", a.microbatch, " of stage ", a.stage, ", expected ", seen));
                ++seen;
                step_rank_pos[static_cast<std::size_t>(a.stage)] = static_cast<int>(p);
                continue;
            }
            if (a.microbatch < 0 || a.microbatch >= T) {
                err.add(rule::index_range, rank, pos, a,
                        concat("micro-batch ", a.microbatch, " is out of range [0, ", T, ")"));
                continue;
            }
            auto& slot = ix.pos[static_cast<int>(a.kind)][a];
            if (slot != absent) {
                err.add(rule::duplicate, rank, pos, a, concat("second ", a, ", the first is at position ", slot));
                continue;
            }
            slot = static_cast<std::int32_t>(p);
            forwards[static_cast<std::size_t>(a.stage)] += a.kind == op::F ? 1 : 0;
        }
    }

    // Stages that disagree on the micro-batches are blamed first, and their neighbours are not.
    microbatch_outliers outliers;
    if (P >= 3)
        for (int s = 0; s < P; ++s)
            if (forwards[static_cast<std::size_t>(s)] < T) {
                outliers = find_outliers(sch, ix, err);
                break;
            }

    const bool lowered = sch.lowered();
    const crossings crosses(shape);
    for (int s = 0; s < P; ++s) {
        const int rank = shape.rank_of(s);
        const auto& prog = sch.ranks[static_cast<std::size_t>(rank)];
        const auto at = [&](std::int32_t p) { return prog[static_cast<std::size_t>(p)]; };
        // The stage's hand-offs (their stages; micro-batch 0): activations in and out, gradients in.
        // Empty at the ends of the pipeline.
        const auto act_in = consumes(action{op::F, s, 0}, P);
        const auto act_out = produces(action{op::F, s, 0}, P);
        const auto grad_in = consumes(action{op::B, s, 0}, P);
        const bool cross_in = act_in && crosses(*act_in);
        const bool cross_down = act_out && crosses(*act_out);
        const bool grad_cross_in = grad_in && crosses(*grad_in);
        // Whether this stage's SEND_F, RECV_F, SEND_B and RECV_B carry a hand-off that crosses ranks
        // (not at a pipeline end, not between stages that share a rank), and the diagnostic if not.
        const auto edge_ok = [&](op k) {
            const handoff h = *carries(action{k, s, 0});
            const int other = h.from == s ? h.to : h.from;
            return other >= 0 && other < P && crosses(h);
        };
        const bool send_f_ok = edge_ok(op::SEND_F), recv_f_ok = edge_ok(op::RECV_F);
        const bool send_b_ok = edge_ok(op::SEND_B), recv_b_ok = edge_ok(op::RECV_B);
        const auto bad_edge = [&](std::int32_t p) {
            const action c = at(p);
            const handoff h = *carries(c);
            const int other = h.from == s ? h.to : h.from;
            const bool send = c.kind == op::SEND_F || c.kind == op::SEND_B;
            if (other < 0 || other >= P)
                err.add(rule::comm_edge, rank, p, c,
                        concat(other < 0 ? "the first stage has no previous stage to " : "the last stage has no next stage to ",
                               send ? "send to" : "receive from"));
            else
                err.add(rule::comm_edge, rank, p, c,
                        concat("stages ", std::min(h.from, h.to), " and ", std::max(h.from, h.to), " share rank ", rank,
                               send ? "; no send needed" : "; no receive needed"));
        };
        for (int m = 0; m < T; ++m) {
            const auto f = ix.at(op::F, s, m);
            const auto b = ix.at(op::B, s, m);
            const auto i = ix.at(op::I, s, m);
            const auto w = ix.at(op::W, s, m);
            const auto r = ix.at(op::R, s, m);
            const auto bwd = b != absent ? b : i;
            if (f == absent && !outliers.excuses(ix, s, m)) {
                const auto blame = bwd != absent ? bwd : (r != absent ? r : w);
                err.add(rule::missing, rank, blame, blame != absent ? at(blame) : action{op::F, s, m},
                        concat(describe(s, m), " has no forward"));
            }
            if (b != absent && (i != absent || w != absent)) {
                err.add(rule::mixed_backward, rank, b, at(b),
                        concat(describe(s, m), " has both a full backward B and a split backward I/W"));
            } else if (b == absent && i == absent && w == absent) {
                if (f != absent)
                    err.add(rule::missing, rank, f, at(f), concat(describe(s, m), " has no backward (B, or I then W)"));
            } else if (b == absent && (i == absent || w == absent)) {
                const auto have = i != absent ? i : w;
                err.add(rule::missing, rank, have, at(have),
                        concat(describe(s, m), i == absent ? " has W but no I" : " has I but no W"));
            }
            if (f != absent && act_in && !cross_in) {
                const auto prev = ix.at(op::F, act_in->from, m);
                if (prev != absent && prev > f)
                    err.add(rule::forward_order, rank, f, at(f),
                            concat("forward of ", describe(s, m), " runs before the forward of stage ", act_in->from,
                                   " at position ", prev));
            }
            if (bwd != absent && grad_in && !grad_cross_in) {
                const auto next = ix.backward(grad_in->from, m);
                if (next != absent && next > bwd)
                    err.add(rule::backward_order, rank, bwd, at(bwd),
                            concat("backward of ", describe(s, m), " runs before the backward of stage ", grad_in->from,
                                   " at position ", next));
            }
            if (f != absent) {
                if (bwd != absent && bwd < f)
                    err.add(rule::before_forward, rank, bwd, at(bwd),
                            concat("backward of ", describe(s, m), " runs before its forward at position ", f));
                if (r != absent && r < f)
                    err.add(rule::before_forward, rank, r, at(r),
                            concat("recompute of ", describe(s, m), " runs before its forward at position ", f));
            }
            if (i != absent && w != absent && w < i)
                err.add(rule::weight_before_input, rank, w, at(w),
                        concat("weight gradient of ", describe(s, m), " runs before its input gradient at position ", i));
            if (r != absent && bwd != absent && r > bwd)
                err.add(rule::recompute_order, rank, r, at(r),
                        concat("recompute of ", describe(s, m), " runs after the backward it serves at position ", bwd));

            // Communication: each cross-rank edge has one SEND and one RECV, around the right computes.
            const auto sf = ix.at(op::SEND_F, s, m);
            const auto rf = ix.at(op::RECV_F, s, m);
            const auto sb = ix.at(op::SEND_B, s, m);
            const auto rb = ix.at(op::RECV_B, s, m);
            if (sf != absent && !send_f_ok) bad_edge(sf);
            if (rf != absent && !recv_f_ok) bad_edge(rf);
            if (sb != absent && !send_b_ok) bad_edge(sb);
            if (rb != absent && !recv_b_ok) bad_edge(rb);
            if (sf != absent && f != absent && sf < f)
                err.add(rule::comm_order, rank, sf, at(sf), concat("sent before its forward at position ", f));
            if (sf != absent && f == absent)
                err.add(rule::comm_order, rank, sf, at(sf), concat("sends the output of a forward that never runs"));
            if (rf != absent && f != absent && rf > f)
                err.add(rule::comm_order, rank, rf, at(rf), concat("received after its forward at position ", f));
            if (sb != absent && bwd != absent && sb < bwd)
                err.add(rule::comm_order, rank, sb, at(sb), concat("sent before its backward at position ", bwd));
            if (sb != absent && bwd == absent)
                err.add(rule::comm_order, rank, sb, at(sb), concat("sends the gradient of a backward that never runs"));
            if (rb != absent && bwd != absent && rb > bwd)
                err.add(rule::comm_order, rank, rb, at(rb), concat("received after its backward at position ", bwd));
            if (cross_down) {
                // This stage's activation goes to the next stage's rank, whose gradient comes back.
                handoff down = *act_out;
                handoff up = *grad_in;
                down.microbatch = up.microbatch = m;
                const int peer = shape.rank_of(down.to);
                const auto recv = ix.at(down.recv());
                if (sf != absent && recv == absent)
                    err.add(rule::unmatched_send, rank, sf, at(sf), concat("no ", down.recv(), " on rank ", peer));
                if (sf == absent && recv != absent)
                    err.add(rule::unmatched_recv, peer, recv, down.recv(), concat("no ", down.send(), " on rank ", rank));
                if (lowered && sf == absent && recv == absent && f != absent)
                    err.add(rule::missing, rank, f, at(f),
                            concat("the output of ", describe(s, m), " crosses to rank ", peer,
                                   " but has no SEND_F/RECV_F pair"));
                const auto recvb = rb;
                const auto sendb = ix.at(up.send());
                if (sendb != absent && recvb == absent)
                    err.add(rule::unmatched_send, peer, sendb, up.send(), concat("no ", up.recv(), " on rank ", rank));
                if (sendb == absent && recvb != absent)
                    err.add(rule::unmatched_recv, rank, recvb, at(recvb), concat("no ", up.send(), " on rank ", peer));
                if (lowered && sendb == absent && recvb == absent && bwd != absent)
                    err.add(rule::missing, rank, bwd, at(bwd),
                            concat("the gradient of stage ", up.from, " micro-batch ", m, " crosses from rank ", peer,
                                   " but has no SEND_B/RECV_B pair"));
            }
        }
        const int steps = steps_seen[static_cast<std::size_t>(s)];
        const int expected = sch.steps > 0 ? sch.steps : steps_seen[0];
        if (steps != expected)
            err.add(rule::step_order, rank, step_rank_pos[static_cast<std::size_t>(s)],
                    step_rank_pos[static_cast<std::size_t>(s)] != absent
                        ? prog[static_cast<std::size_t>(step_rank_pos[static_cast<std::size_t>(s)])]
                        : action{op::STEP, s, 0},
                    concat("stage ", s, " has ", steps, " STEP actions, expected ", expected));
    }
}

/// Per channel (sender rank, receiver rank), the k-th SEND must pair with the k-th RECV.
inline void check_channels(const schedule& sch, error_sink& err) {
    struct channel {
        std::vector<std::pair<action, std::int32_t>> sends, recvs;
    };
    std::unordered_map<std::int64_t, channel> channels;
    const auto key = [&](int src, int dst) { return static_cast<std::int64_t>(src) * (1LL << 32) + dst; };
    for (std::size_t r = 0; r < sch.ranks.size(); ++r) {
        const auto& prog = sch.ranks[r];
        for (std::size_t p = 0; p < prog.size(); ++p) {
            const action a = prog[p];
            if (!is_comm(a.kind)) continue;
            const int peer = sch.shape.rank_of(comm_peer_stage(a));
            const bool is_send = a.kind == op::SEND_F || a.kind == op::SEND_B;
            auto& ch = channels[is_send ? key(static_cast<int>(r), peer) : key(peer, static_cast<int>(r))];
            (is_send ? ch.sends : ch.recvs).emplace_back(a, static_cast<std::int32_t>(p));
        }
    }
    for (const auto& [k, ch] : channels) {
        const int src = static_cast<int>(k >> 32);
        const int dst = static_cast<int>(k & 0xffffffff);
        const std::size_t n = std::min(ch.sends.size(), ch.recvs.size());
        for (std::size_t j = 0; j < n; ++j) {
            const auto [send, sp] = ch.sends[j];
            const auto [recv, rp] = ch.recvs[j];
            if (comm_partner(send) != recv) {
                err.add(rule::comm_mismatch, src, sp, send,
                        concat("send number ", j, " from rank ", src, " to rank ", dst, " meets ", recv,
                               " at position ", rp, " of rank ", dst, ", expected ", comm_partner(send)));
                break;
            }
        }
    }
}

} // namespace detail

namespace detail {

/// `find_deadlock` without its checks, for callers that have validated the structure.
[[nodiscard]] inline deadlock_report find_deadlock_unchecked(const schedule& sch, send_semantics semantics) {
    deadlock_report out;
    out.semantics = semantics;
    const pipeline_shape& shape = sch.shape;
    const int P = shape.stages;
    const int T = sch.microbatches;
    const std::size_t R = sch.ranks.size();
    const bool lowered = sch.lowered();
    // Per hand-off (by its producer's stage and micro-batch, one grid per flow): computed, and sent.
    stage_grid<std::uint8_t> done[2] = {{P, T, 0}, {P, T, 0}};
    stage_grid<std::uint8_t> sent[2] = {{P, T, 0}, {P, T, 0}};
    const auto cell = [](stage_grid<std::uint8_t>* grids, const handoff& h) -> std::uint8_t* {
        auto& g = grids[static_cast<int>(h.what)];
        return g.contains(h.from, h.microbatch) ? &g(h.from, h.microbatch) : nullptr;
    };
    std::vector<std::size_t> pc(R, 0);
    const auto current = [&](std::size_t r) -> const action* {
        return pc[r] < sch.ranks[r].size() ? &sch.ranks[r][pc[r]] : nullptr;
    };
    // The rank that `r` waits for before it can run `a`, or -1 if it can run it now.
    const auto blocker_of = [&](std::size_t r, const action& a) -> int {
        const int rank = static_cast<int>(r);
        if (is_comm(a.kind)) {
            const int peer = shape.rank_of(detail::comm_peer_stage(a));
            const action partner = detail::comm_partner(a);
            if (semantics == send_semantics::rendezvous) {
                const action* there = current(static_cast<std::size_t>(peer));
                return there != nullptr && *there == partner ? -1 : peer;
            }
            if (a.kind == op::SEND_F || a.kind == op::SEND_B) return -1;
            const std::uint8_t* s = cell(sent, *carries(a));
            return s != nullptr && *s ? -1 : peer;
        }
        const auto h = consumes(a, P);
        if (!h || (lowered && shape.rank_of(h->from) != rank)) return -1;
        const std::uint8_t* d = cell(done, *h);
        return d != nullptr && *d ? -1 : shape.rank_of(h->from);
    };
    // An overlapped pair of computes runs as one step, when both members can (running them in order,
    // forward first, is also a correct execution, and whatever passes here passes that way too).
    const auto pair_at = [&](std::size_t r) { return detail::opens_pair(sch.ranks[r], pc[r]); };
    // The member of `r`'s next step that waits (its position), and for which rank; -1 if it can run.
    const auto blocker = [&](std::size_t r, std::size_t& at) -> int {
        at = pc[r];
        const int first = blocker_of(r, sch.ranks[r][at]);
        if (first >= 0 || !pair_at(r)) return first;
        ++at;
        return blocker_of(r, sch.ranks[r][at]);
    };
    const auto complete = [&](std::size_t r) {
        const action a = *current(r);
        if (is_comm(a.kind)) {
            if (a.kind == op::SEND_F || a.kind == op::SEND_B)
                if (std::uint8_t* s = cell(sent, *carries(a))) *s = 1;
        } else if (const auto h = produces(a, P)) {
            if (std::uint8_t* d = cell(done, *h)) *d = 1;
        }
        ++pc[r];
    };
    bool progress = true;
    while (progress) {
        progress = false;
        for (std::size_t r = 0; r < R; ++r) {
            std::size_t at = 0;
            while (current(r) != nullptr && blocker(r, at) < 0) {
                const action a = *current(r);
                const bool pair = semantics == send_semantics::rendezvous && is_comm(a.kind);
                if (at != pc[r]) complete(r); // the first member of an overlapped pair
                complete(r);
                if (pair) complete(static_cast<std::size_t>(shape.rank_of(detail::comm_peer_stage(a))));
                progress = true;
            }
        }
    }
    std::size_t start = R;
    for (std::size_t r = 0; r < R && start == R; ++r)
        if (current(r) != nullptr) start = r;
    if (start == R) return out;

    out.deadlock_free = false;
    std::vector<int> seen_at(R, -1);
    std::vector<wait_edge> chain;
    std::size_t r = start;
    while (true) {
        if (current(r) == nullptr) {
            out.waits_on_finished = true;
            break;
        }
        if (seen_at[r] >= 0) {
            chain.erase(chain.begin(), chain.begin() + seen_at[r]);
            break;
        }
        seen_at[r] = static_cast<int>(chain.size());
        std::size_t at = 0;
        const int next = blocker(r, at);
        chain.push_back({static_cast<int>(r), static_cast<std::int64_t>(at), sch.ranks[r][at], next});
        r = static_cast<std::size_t>(next);
    }
    out.cycle = std::move(chain);
    std::string msg = detail::concat("deadlock under ", to_string(semantics), " sends: ");
    for (std::size_t k = 0; k < out.cycle.size(); ++k) {
        const auto& e = out.cycle[k];
        msg += detail::concat(k ? " -> " : "", "rank ", e.rank, " waits at position ", e.position, " (", e.act,
                              ") for rank ", e.waits_for);
    }
    if (out.waits_on_finished) msg += detail::concat(", which has finished");
    else msg += ", which closes the cycle";
    out.message = std::move(msg);
    return out;
}

/// Throws `config_error` for what `validate()` cannot report as data: a schedule whose programs or
/// tables (about 40 bytes per stage and micro-batch) would pass `paci::limits`, or a program too long
/// for 32-bit positions.
inline void check_validate_size(std::string_view api, const schedule& sch) {
    for (std::size_t r = 0; r < sch.ranks.size(); ++r)
        if (sch.ranks[r].size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
            config_fail(api, concat("rank ", r, " program length"), sch.ranks[r].size(),
                        concat("must be <= ", std::numeric_limits<std::int32_t>::max(), " (positions are 32-bit)"));
    check_tables(api, sch.shape.stages, sch.microbatches, 40, sch.size());
}

/// Throws `config_error` naming `api` unless the schedule can be run against itself without
/// leaving its ranks: a consistent header, tables within `paci::limits`, every action's stage in
/// range and every SEND/RECV's peer stage in range. What `find_deadlock` needs; it explains the
/// hangs of schedules that are otherwise broken (a RECV with no SEND).
inline void require_runnable(std::string_view api, const schedule& sch) {
    check_schedule(api, sch);
    check_validate_size(api, sch);
    const int P = sch.shape.stages;
    for (std::size_t r = 0; r < sch.ranks.size(); ++r)
        for (std::size_t p = 0; p < sch.ranks[r].size(); ++p) {
            const action a = sch.ranks[r][p];
            if (a.stage < 0 || a.stage >= P)
                config_fail(api, concat("action at rank ", r, ", position ", p), a,
                            concat("must name a stage in [0, ", P, ")"));
            if (is_comm(a.kind) && (comm_peer_stage(a) < 0 || comm_peer_stage(a) >= P))
                config_fail(api, concat("action at rank ", r, ", position ", p), a,
                            concat("must talk to a stage in [0, ", P, "), not ", comm_peer_stage(a)));
        }
}

/// Throws `config_error` naming `api` unless the schedule is structurally valid (its header
/// consistent and no `validate()` error): the precondition of simulating it. Deadlocks are not
/// errors here.
inline void require_structure(std::string_view api, const schedule& sch);

} // namespace detail

/// Runs every rank's program against the others under `semantics` and reports whether all finish;
/// if not, the wait cycle (or the chain of waits ending at a finished rank). Compute-only schedules
/// are run with their cross-rank dependencies satisfied on completion, as if every transfer were
/// instantaneous. A RECV waits for its SEND under either semantics (a blocking receive), so a
/// schedule that passes here also runs where receives are posted early and the consuming compute
/// waits, as in PyTorch's runtime. An overlapped pair (`action::overlap_next`) is one step: it
/// proceeds when both members can, and a rank blocked on it waits at the member that cannot (its
/// position in the report). Running the members one after the other, forward first, is also a
/// correct execution, and a schedule that passes here passes that way too; a pair whose backward
/// needs what its forward sends (through other ranks) deadlocks here, because the two cannot run
/// concurrently. A flag on an action that is not a compute, or on a compute followed by none, is
/// ignored here (`validate()` reports it). A structurally broken schedule is run as it stands (a
/// RECV whose SEND is missing waits for its peer), so the report explains why it hangs.
/// \throws config_error for an inconsistent header, an action whose stage (or a SEND/RECV whose peer
/// stage) is out of range, or tables past `paci::limits`.
[[nodiscard]] inline deadlock_report find_deadlock(const schedule& sch, send_semantics semantics) {
    detail::require_runnable("find_deadlock", sch);
    if (semantics != send_semantics::buffered && semantics != send_semantics::rendezvous)
        detail::config_fail("find_deadlock", "semantics", static_cast<int>(semantics),
                            "must be send_semantics::buffered or send_semantics::rendezvous");
    return detail::find_deadlock_unchecked(sch, semantics);
}

namespace detail {

/// A structural check without the deadlock search: what `validate()` reports before running.
[[nodiscard]] inline validation_report structure_of(const schedule& sch) {
    validation_report report;
    error_sink err(report);
    const pipeline_shape& shape = sch.shape;
    if (shape.stages < 1 || shape.ranks < 1 || shape.stages % shape.ranks != 0 ||
        static_cast<int>(sch.ranks.size()) != shape.ranks || sch.microbatches < 0) {
        err.add(rule::placement, -1, -1, {},
                concat("schedule shape ", shape, " with ", sch.ranks.size(), " rank programs and ", sch.microbatches,
                       " micro-batches is inconsistent"));
        return report;
    }
    position_index ix(shape.stages, sch.microbatches);
    check_structure(sch, ix, err);
    if (report.error_count == 0 && sch.lowered()) check_channels(sch, err);
    return report;
}

inline void require_structure(std::string_view api, const schedule& sch) {
    check_validate_size(api, sch);
    const validation_report report = structure_of(sch);
    if (!report.structure_ok())
        config_fail(api, "schedule", concat(report.error_count, " structural error", report.error_count == 1 ? "" : "s",
                                            ", first: ", report.errors.front()),
                    "must be structurally valid (see paci::validate)");
}

} // namespace detail

/// Checks a schedule (compute-only or lowered): placement, ranges, exactly one forward and one
/// backward (B, or I then W) per stage and micro-batch, same-rank ordering, STEP ordinals, SEND/RECV
/// pairing and order per channel, the form of overlapped pairs, and, when the structure is sound,
/// deadlock freedom under buffered and rendezvous sends. Problems with the schedule are data (an
/// inconsistent header is a `placement` error); it throws only for resources.
///
/// A lowered schedule is checked as given (PyTorch's `*.comms.csv` as imported, say): each cross-rank
/// hand-off needs its SEND after the compute that produces it and its RECV before the one that
/// consumes it; stages that share a rank (R-1 and R under the v map) need none.
///
/// An overlapped pair (`action::overlap_next`) must be a forward followed by a backward B or I of
/// another micro-batch, neither communication, neither on another rank's stage, the backward not
/// opening a pair itself and not needing the forward's output (`depends_on`): each fault is one
/// `overlap_pair` diagnostic at the member to blame, naming its stage and micro-batch.
///
/// Stages that disagree on which micro-batches they run are blamed at the source: when a minority of
/// stages runs micro-batches past the end that more than half of the stages agree on (one stage
/// running 1..8 where the others run 0..7, say), each such stage gets one `microbatch_mismatch`
/// diagnostic, before any other from the per-(stage, micro-batch) checks, naming the first such
/// micro-batch and the first agreed one it never runs; the other stages are not blamed for lacking
/// those micro-batches, nor the stage for lacking the agreed ones.
/// \throws config_error if the schedule or its tables (about 40 bytes per stage and micro-batch)
/// would pass `paci::limits`.
[[nodiscard]] inline validation_report validate(const schedule& sch) {
    detail::check_validate_size("validate", sch);
    validation_report report = detail::structure_of(sch);
    if (report.error_count != 0) {
        report.buffered.deadlock_free = report.rendezvous.deadlock_free = false;
        report.buffered.message = report.rendezvous.message = "not run: the schedule has structural errors";
        return report;
    }
    report.buffered = detail::find_deadlock_unchecked(sch, send_semantics::buffered);
    report.rendezvous = detail::find_deadlock_unchecked(sch, send_semantics::rendezvous);
    return report;
}

inline std::string validation_report::first_error() const {
    if (!errors.empty()) return detail::concat(errors.front());
    if (!buffered.deadlock_free) return buffered.message;
    if (!rendezvous.deadlock_free) return rendezvous.message;
    return {};
}

inline std::ostream& operator<<(std::ostream& os, const validation_report& r) {
    if (r.structure_ok()) {
        os << "structure ok; " << r.buffered << "; " << r.rendezvous;
        return os;
    }
    os << r.error_count << " error" << (r.error_count == 1 ? "" : "s") << ":";
    for (const auto& e : r.errors) os << "\n  " << e;
    if (r.error_count > r.errors.size()) os << "\n  ... " << (r.error_count - r.errors.size()) << " more";
    return os;
}

} // namespace paci
