#pragma once
/// \file
/// Lowering: insert a SEND/RECV pair for every cross-rank edge of a compute-only schedule.

#include <paci/core/error.hpp>
#include <paci/core/schedule.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <ostream>
#include <string_view>
#include <vector>

namespace paci {

/// Where the lowering places communication.
enum class lowering : std::uint8_t {
    /// SEND right after the compute that produces it, RECV right before the compute that needs it
    /// (sends on a channel follow the receiver's order). For non-blocking transports; deadlock-free
    /// under buffered sends for any schedule whose compute order can run.
    eager,
    /// A pairing that follows one consistent execution of all ranks: each SEND sits where its
    /// receiver is ready for it. Deadlock-free under both buffered and rendezvous (blocking) sends.
    rendezvous_safe,
};

[[nodiscard]] constexpr std::string_view to_string(lowering l) noexcept {
    return l == lowering::eager ? "eager" : "rendezvous_safe";
}
inline std::ostream& operator<<(std::ostream& os, lowering l) { return os << to_string(l); }

namespace detail {

/// Cross-rank messages of a compute-only schedule: which compute produces and which consumes each.
struct message_plan {
    const schedule& sch;
    int P;
    int T;
    std::vector<std::int32_t> fwd_pos, bwd_pos; // producer positions of F(s,m) and B/I(s,m), -1 if absent

    explicit message_plan(const schedule& s)
        : sch(s), P(s.shape.stages), T(s.microbatches),
          fwd_pos(static_cast<std::size_t>(P) * static_cast<std::size_t>(T), -1), bwd_pos(fwd_pos.size(), -1) {
        for (std::size_t r = 0; r < s.ranks.size(); ++r) {
            const auto& prog = s.ranks[r];
            for (std::size_t p = 0; p < prog.size(); ++p) {
                const action a = prog[p];
                config_require(!is_comm(a.kind), "lower", "action", a, "is communication: the schedule is already lowered");
                if (a.stage < 0 || a.stage >= P || (a.kind != op::STEP && (a.microbatch < 0 || a.microbatch >= T)))
                    config_fail("lower", "action", a,
                                concat("is out of range for ", P, " stages and ", T, " micro-batches"));
                if (s.shape.rank_of(a.stage) != static_cast<int>(r))
                    config_fail("lower", "action", a,
                                concat("is on rank ", r, " but stage ", a.stage, " runs on rank ", s.shape.rank_of(a.stage)));
                if (a.kind == op::F) fwd_pos[idx(a.stage, a.microbatch)] = static_cast<std::int32_t>(p);
                if (a.kind == op::B || a.kind == op::I) bwd_pos[idx(a.stage, a.microbatch)] = static_cast<std::int32_t>(p);
            }
        }
    }
    [[nodiscard]] std::size_t idx(int s, int m) const noexcept {
        return static_cast<std::size_t>(s) * static_cast<std::size_t>(T) + static_cast<std::size_t>(m);
    }
    [[nodiscard]] bool crosses(int s, int t) const noexcept { return sch.shape.rank_of(s) != sch.shape.rank_of(t); }

    /// The RECV a compute needs first, if its input comes from another rank: RECV_F for F, RECV_B for B/I.
    [[nodiscard]] bool needs(const action& c, action& recv) const noexcept {
        if (c.kind == op::F && c.stage > 0 && crosses(c.stage, c.stage - 1)) {
            recv = {op::RECV_F, c.stage, c.microbatch};
            return true;
        }
        if ((c.kind == op::B || c.kind == op::I) && c.stage + 1 < P && crosses(c.stage, c.stage + 1)) {
            recv = {op::RECV_B, c.stage, c.microbatch};
            return true;
        }
        return false;
    }
    /// The SEND a compute's result needs, if it goes to another rank.
    [[nodiscard]] bool produces(const action& c, action& send) const noexcept {
        if (c.kind == op::F && c.stage + 1 < P && crosses(c.stage, c.stage + 1)) {
            send = {op::SEND_F, c.stage, c.microbatch};
            return true;
        }
        if ((c.kind == op::B || c.kind == op::I) && c.stage > 0 && crosses(c.stage, c.stage - 1)) {
            send = {op::SEND_B, c.stage, c.microbatch};
            return true;
        }
        return false;
    }
    /// The sender's side of a RECV and the position of the compute that produces it (-1 if none).
    [[nodiscard]] std::int32_t producer(const action& recv, action& send) const noexcept {
        if (recv.kind == op::RECV_F) {
            send = {op::SEND_F, recv.stage - 1, recv.microbatch};
            return fwd_pos[idx(recv.stage - 1, recv.microbatch)];
        }
        send = {op::SEND_B, recv.stage + 1, recv.microbatch};
        return bwd_pos[idx(recv.stage + 1, recv.microbatch)];
    }
};

inline schedule lower_eager(const schedule& in, const message_plan& plan) {
    const std::size_t R = in.ranks.size();
    // Bucket the SENDs by the position on the sender after which they go (CSR per rank).
    std::vector<std::vector<std::int32_t>> count(R);
    for (std::size_t r = 0; r < R; ++r) count[r].assign(in.ranks[r].size() + 1, 0);
    struct placed {
        int src;
        std::int32_t after;
        action send;
    };
    std::vector<placed> sends;
    struct channel_tail {
        int dst;
        std::int32_t last;
    };
    std::vector<std::vector<channel_tail>> tails(R);
    for (std::size_t r = 0; r < R; ++r) {
        for (const action c : in.ranks[r]) {
            action recv;
            if (!plan.needs(c, recv)) continue;
            action send;
            const std::int32_t at = plan.producer(recv, send);
            if (at < 0)
                config_fail("lower", "action", c, concat("needs ", send, " but no rank computes its input"));
            const int src = in.shape.rank_of(send.stage);
            auto& t = tails[static_cast<std::size_t>(src)];
            auto it = t.begin();
            while (it != t.end() && it->dst != static_cast<int>(r)) ++it;
            if (it == t.end()) it = t.insert(t.end(), {static_cast<int>(r), -1});
            const std::int32_t after = at > it->last ? at : it->last; // keep the receiver's order on the channel
            it->last = after;
            sends.push_back({src, after, send});
            ++count[static_cast<std::size_t>(src)][static_cast<std::size_t>(after) + 1];
        }
    }
    for (auto& c : count)
        for (std::size_t p = 1; p < c.size(); ++p) c[p] += c[p - 1];
    std::vector<std::vector<action>> bucket(R);
    for (std::size_t r = 0; r < R; ++r) bucket[r].resize(static_cast<std::size_t>(count[r].back()));
    {
        std::vector<std::vector<std::int32_t>> fill = count;
        for (const auto& s : sends) {
            auto& f = fill[static_cast<std::size_t>(s.src)][static_cast<std::size_t>(s.after)];
            bucket[static_cast<std::size_t>(s.src)][static_cast<std::size_t>(f++)] = s.send;
        }
    }
    schedule out = in;
    for (std::size_t r = 0; r < R; ++r) {
        const auto& prog = in.ranks[r];
        auto& dst = out.ranks[r];
        dst.clear();
        dst.reserve(prog.size() * 2);
        for (std::size_t p = 0; p < prog.size(); ++p) {
            action recv;
            if (plan.needs(prog[p], recv)) dst.push_back(recv);
            dst.push_back(prog[p]);
            for (auto k = count[r][p]; k < count[r][p + 1]; ++k) dst.push_back(bucket[r][static_cast<std::size_t>(k)]);
        }
    }
    return out;
}

inline schedule lower_rendezvous_safe(const schedule& in, const message_plan& plan) {
    const std::size_t R = in.ranks.size();
    const std::size_t n = static_cast<std::size_t>(plan.P) * static_cast<std::size_t>(plan.T);
    // Per message (indexed by its producer stage and micro-batch, forward and gradient apart):
    // 1 = produced, not yet sent; 2 = its receiver waits for it; 3 = sent.
    std::vector<std::uint8_t> fwd_state(n, 0), bwd_state(n, 0);
    schedule out = in;
    for (auto& r : out.ranks) {
        r.clear();
    }
    for (std::size_t r = 0; r < R; ++r) out.ranks[r].reserve(in.ranks[r].size() * 2);
    std::vector<std::size_t> pc(R, 0);
    std::deque<std::size_t> work;
    for (std::size_t r = 0; r < R; ++r) work.push_back(r);
    const auto state_of = [&](const action& send) -> std::uint8_t& {
        return (send.kind == op::SEND_F ? fwd_state : bwd_state)[plan.idx(send.stage, send.microbatch)];
    };
    while (!work.empty()) {
        const std::size_t r = work.front();
        work.pop_front();
        const auto& prog = in.ranks[r];
        // One compute per turn, round robin: the linearization advances the ranks in step, so a
        // SEND lands right after its producer whenever the receiver is ready by then.
        if (pc[r] < prog.size()) {
            const action c = prog[pc[r]];
            action recv;
            if (plan.needs(c, recv)) {
                action send;
                static_cast<void>(plan.producer(recv, send));
                auto& st = state_of(send);
                if (st == 0 || st == 2) { // not produced yet: wait for it
                    st = 2;
                    continue;
                }
                if (st == 1) { // produced earlier: the sender sends now, where it stands
                    out.ranks[static_cast<std::size_t>(in.shape.rank_of(send.stage))].push_back(send);
                    out.ranks[r].push_back(recv);
                    st = 3;
                }
            }
            out.ranks[r].push_back(c);
            ++pc[r];
            action send;
            if (plan.produces(c, send)) {
                auto& st = state_of(send);
                if (st == 2) { // the receiver is already waiting
                    const int dst = in.shape.rank_of(c.kind == op::F ? c.stage + 1 : c.stage - 1);
                    out.ranks[r].push_back(send);
                    out.ranks[static_cast<std::size_t>(dst)].push_back(
                        {c.kind == op::F ? op::RECV_F : op::RECV_B, c.kind == op::F ? c.stage + 1 : c.stage - 1,
                         c.microbatch});
                    st = 3;
                    work.push_back(static_cast<std::size_t>(dst));
                } else {
                    st = 1;
                }
            }
            if (pc[r] < prog.size()) work.push_back(r);
        }
    }
    for (std::size_t r = 0; r < R; ++r)
        if (pc[r] < in.ranks[r].size())
            config_fail("lower", "action", in.ranks[r][pc[r]],
                        concat("on rank ", r, " can never run: the compute order deadlocks (see validate())"));
    return out;
}

} // namespace detail

/// Inserts SEND/RECV pairs for every cross-rank edge of a compute-only schedule, deterministically.
/// Stages that share a rank hand over locally (no communication). The default placement is deadlock-free
/// under any send semantics; pass `lowering::eager` for non-blocking transports (earliest sends).
/// \throws config_error if the schedule already holds communication, names actions out of range,
/// or (rendezvous_safe) its compute order cannot run.
/// \throws config_error, too, for an inconsistent header (shape, one program per rank, counts >= 0),
/// an unknown `mode`, or a result or working tables past `paci::limits` (checked before allocating).
[[nodiscard]] inline schedule lower(const schedule& in, lowering mode = lowering::rendezvous_safe) {
    detail::check_schedule("lower", in);
    if (mode != lowering::eager && mode != lowering::rendezvous_safe)
        detail::config_fail("lower", "mode", static_cast<int>(mode), "must be lowering::eager or lowering::rendezvous_safe");
    for (std::size_t r = 0; r < in.ranks.size(); ++r)
        if (in.ranks[r].size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max() / 3))
            detail::config_fail("lower", detail::concat("rank ", r, " program length"), in.ranks[r].size(),
                                detail::concat("must be <= ", std::numeric_limits<std::int32_t>::max() / 3,
                                               " (positions are 32-bit)"));
    // Producer positions (8 bytes) and, rendezvous-safe, message states (2 bytes) per stage and micro-batch.
    detail::check_tables("lower", in.shape.stages, in.microbatches, 10, in.size());
    const detail::message_plan plan(in);
    // Each compute gains at most one RECV before it and one SEND after it: the result's size, known
    // before it is built.
    std::uint64_t added = 0;
    for (const auto& prog : in.ranks)
        for (const action& c : prog) {
            action x;
            added += (plan.needs(c, x) ? 1U : 0U) + (plan.produces(c, x) ? 1U : 0U);
        }
    detail::check_schedule_size("lower", detail::add_sat(in.size(), added));
    return mode == lowering::eager ? detail::lower_eager(in, plan) : detail::lower_rendezvous_safe(in, plan);
}

} // namespace paci
