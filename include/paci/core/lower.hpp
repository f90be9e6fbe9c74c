#pragma once
/// \file
/// Lowering: insert a SEND/RECV pair for every cross-rank edge of a compute-only schedule.

#include <paci/core/dataflow.hpp>
#include <paci/core/error.hpp>
#include <paci/core/schedule.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
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

/// Cross-rank messages of a compute-only schedule, by the IR's rule (`core/dataflow.hpp`): which
/// compute needs each, which produces it, and where on the producer's rank its SEND may go.
struct message_plan {
    int P;
    int T;
    /// Per producer (stage, micro-batch), one grid per `flow`: the position on its rank after which
    /// the SEND of what it hands over may go (the producer's own, or the second member's when it
    /// opens an overlapped pair), -1 if no rank computes it.
    stage_grid<std::int32_t> after[2];
    /// Per stage, its rank; which hand-offs cross ranks.
    std::vector<int> rank;
    crossings cross;

    explicit message_plan(const schedule& s)
        : P(s.shape.stages), T(s.microbatches), after{{P, T, -1}, {P, T, -1}}, rank(static_cast<std::size_t>(P)),
          cross(s.shape) {
        for (int st = 0; st < P; ++st) rank[static_cast<std::size_t>(st)] = s.shape.rank_of(st);
        for (std::size_t r = 0; r < s.ranks.size(); ++r) {
            const auto& prog = s.ranks[r];
            for (std::size_t p = 0; p < prog.size(); ++p) {
                const action a = prog[p];
                config_require(!is_comm(a.kind), "lower", "action", a, "is communication: the schedule is already lowered");
                if (a.stage < 0 || a.stage >= P || (a.kind != op::STEP && (a.microbatch < 0 || a.microbatch >= T)))
                    config_fail("lower", "action", a,
                                concat("is out of range for ", P, " stages and ", T, " micro-batches"));
                if (rank[static_cast<std::size_t>(a.stage)] != static_cast<int>(r))
                    config_fail("lower", "action", a,
                                concat("is on rank ", r, " but stage ", a.stage, " runs on rank ", s.shape.rank_of(a.stage)));
                if (a.overlap_next) check_pair(prog, p);
                if (const auto h = produces(a, P))
                    grid(h->what)[a] = static_cast<std::int32_t>(detail::opens_pair(prog, p) ? p + 1 : p);
            }
        }
    }

    [[nodiscard]] stage_grid<std::int32_t>& grid(flow f) noexcept { return after[static_cast<int>(f)]; }
    [[nodiscard]] const stage_grid<std::int32_t>& grid(flow f) const noexcept { return after[static_cast<int>(f)]; }

    /// Throws `config_error` unless the pair `prog[p]` opens has the form `action::overlap_next` asks for.
    static void check_pair(const std::vector<action>& prog, std::size_t p) {
        const pair_fault f = overlap_fault(prog, p);
        if (f.fault != pair_problem::none)
            config_fail("lower", "action", prog[f.position], pair_fault_message(f, prog));
    }

    /// The hand-off a compute receives from another rank, if its input comes from one.
    [[nodiscard]] std::optional<handoff> incoming(const action& c) const noexcept {
        std::optional<handoff> h = consumes(c, P);
        if (h && !cross(*h)) h.reset();
        return h;
    }
    /// The hand-off a compute sends to another rank, if its result goes to one.
    [[nodiscard]] std::optional<handoff> outgoing(const action& c) const noexcept {
        std::optional<handoff> h = produces(c, P);
        if (h && !cross(*h)) h.reset();
        return h;
    }
    /// The position after which the SEND of `h` may go on its producer's rank (-1 if none computes it).
    [[nodiscard]] std::int32_t send_after(const handoff& h) const noexcept {
        return grid(h.what)(h.from, h.microbatch);
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
            const auto h = plan.incoming(c);
            if (!h) continue;
            const std::int32_t at = plan.send_after(*h);
            if (at < 0)
                config_fail("lower", "action", c, concat("needs ", h->send(), " but no rank computes its input"));
            const int src = plan.rank[static_cast<std::size_t>(h->from)];
            auto& t = tails[static_cast<std::size_t>(src)];
            auto it = t.begin();
            while (it != t.end() && it->dst != static_cast<int>(r)) ++it;
            if (it == t.end()) it = t.insert(t.end(), {static_cast<int>(r), -1});
            const std::int32_t after = at > it->last ? at : it->last; // keep the receiver's order on the channel
            it->last = after;
            sends.push_back({src, after, h->send()});
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
        const auto& cnt = count[r];
        const auto& sent = bucket[r];
        auto& dst = out.ranks[r];
        dst.clear();
        dst.reserve(prog.size() * 2);
        for (std::size_t p = 0; p < prog.size(); ++p) {
            // An overlapped pair takes both members' RECVs before it and both SENDs after it (a
            // SEND its forward produces is bucketed after the second member).
            const bool pair = detail::opens_pair(prog, p);
            if (const auto h = plan.incoming(prog[p])) dst.push_back(h->recv());
            if (pair)
                if (const auto h = plan.incoming(prog[p + 1])) dst.push_back(h->recv());
            dst.push_back(prog[p]);
            if (pair) dst.push_back(prog[++p]);
            for (auto k = cnt[p - (pair ? 1 : 0)]; k < cnt[p + 1]; ++k) dst.push_back(sent[static_cast<std::size_t>(k)]);
        }
    }
    return out;
}

inline schedule lower_rendezvous_safe(const schedule& in, const message_plan& plan) {
    const std::size_t R = in.ranks.size();
    // Per message (indexed by its producer stage and micro-batch, one grid per flow):
    // 1 = produced, not yet sent; 2 = its receiver waits for it; 3 = sent.
    stage_grid<std::uint8_t> state[2] = {{plan.P, plan.T, 0}, {plan.P, plan.T, 0}};
    schedule out = in;
    for (auto& r : out.ranks) {
        r.clear();
    }
    for (std::size_t r = 0; r < R; ++r) out.ranks[r].reserve(in.ranks[r].size() * 2);
    std::vector<std::size_t> pc(R, 0);
    std::deque<std::size_t> work;
    for (std::size_t r = 0; r < R; ++r) work.push_back(r);
    const auto state_of = [&](const handoff& h) -> std::uint8_t& {
        return state[static_cast<int>(h.what)](h.from, h.microbatch);
    };
    while (!work.empty()) {
        const std::size_t r = work.front();
        work.pop_front();
        const auto& prog = in.ranks[r];
        // One compute (or one overlapped pair) per turn, round robin: the linearization advances the
        // ranks in step, so a SEND lands right after its producer whenever the receiver is ready by then.
        if (pc[r] < prog.size()) {
            const std::size_t first = pc[r];
            const std::size_t last = detail::opens_pair(prog, first) ? first + 1 : first;
            // Every input the step takes from another rank must have been produced; a pair receives
            // both before it runs (one may be received on this turn and the other on a later one).
            bool waits = false;
            for (std::size_t q = first; q <= last && !waits; ++q) {
                const auto h = plan.incoming(prog[q]);
                if (!h) continue;
                auto& st = state_of(*h);
                if (st == 0 || st == 2) { // not produced yet: wait for it
                    st = 2;
                    waits = true;
                } else if (st == 1) { // produced earlier: the sender sends now, where it stands
                    out.ranks[static_cast<std::size_t>(plan.rank[static_cast<std::size_t>(h->from)])].push_back(h->send());
                    out.ranks[r].push_back(h->recv());
                    st = 3;
                }
            }
            if (waits) continue;
            for (std::size_t q = first; q <= last; ++q) out.ranks[r].push_back(prog[q]);
            pc[r] = last + 1;
            for (std::size_t q = first; q <= last; ++q) {
                const auto h = plan.outgoing(prog[q]);
                if (!h) continue;
                auto& st = state_of(*h);
                if (st == 2) { // the receiver is already waiting
                    const int dst = plan.rank[static_cast<std::size_t>(h->to)];
                    out.ranks[r].push_back(h->send());
                    out.ranks[static_cast<std::size_t>(dst)].push_back(h->recv());
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
/// Which compute needs and produces what is the IR's rule (`core/dataflow.hpp`).
///
/// An overlapped pair (`action::overlap_next`) stays one block in both modes: the RECVs both members
/// need go right before it (the forward's first), the SENDs both produce right after it, and nothing
/// between its members. The rendezvous-safe mode runs the pair as one step of its linearization, when
/// the inputs of both members have been produced.
/// \throws config_error if the schedule already holds communication, names actions out of range,
/// holds a malformed overlapped pair (the sentence `validate()` gives it), or (rendezvous_safe) its
/// compute order cannot run.
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
        for (const action& c : prog) added += (plan.incoming(c) ? 1U : 0U) + (plan.outgoing(c) ? 1U : 0U);
    detail::check_schedule_size("lower", detail::add_sat(in.size(), added));
    return mode == lowering::eager ? detail::lower_eager(in, plan) : detail::lower_rendezvous_safe(in, plan);
}

} // namespace paci
