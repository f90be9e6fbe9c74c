/// \file
/// Generation and lowering of about half a million compute actions, against naive baselines.
///
/// Workloads (one core, Release):
/// - `one_f_one_b`: `one_f_one_b<>{.stages = 64, .microbatches = 4096, .steps = 1}`;
/// - `paci`: `paci_policy<>{.stages = 64, .microbatches = 64, .steps = 64}` (4096 micro-batches);
/// both 64 x 4096 x (F + B) = 524288 compute actions, about 1.56 million once lowered.
///
/// `items_per_second` counts compute actions for generation and lowered actions (the output,
/// SEND/RECV and STEP included) for lowering. Target: >= 10 million per second per phase.
///
/// Baselines (`BM_naive_*`) produce the same schedules, checked once before timing:
/// - generation: a step-by-step simulation of each stage's 1F1B rules with a `std::set` of
///   in-flight micro-batches and no reservation;
/// - eager lowering: producers looked up in a `std::map<(op, stage, micro-batch), (rank, position)>`,
///   SENDs collected per rank in a `std::map<position, std::vector<action>>`;
/// - rendezvous-safe lowering (the default of `lower()`): the same round-robin linearization as the
///   library, with message states in a `std::map<(op, stage, micro-batch), state>`.

#include <paci/core/lower.hpp>
#include <paci/core/schedule.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>

#include <benchmark/benchmark.h>

#include "support/measure.hpp"
#include "support/workloads.hpp"

#include <algorithm>
#include <cstddef>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using paci_bench::measure;
using paci_bench::one_f_one_b_policy;
using paci_bench::paci_policy;
using paci_bench::workload;

// ---------------------------------------------------------------------------------------------------
// Naive baselines
// ---------------------------------------------------------------------------------------------------

/// The 1F1B machine's rules simulated one decision at a time per stage: run a forward while fewer
/// than `cap` micro-batches are in flight (and, with a flush, while the current group has forwards
/// left), otherwise the backward of the oldest in-flight micro-batch, then an update when due.
template <class Controller, paci::backward_flavour Flavour>
[[nodiscard]] paci::schedule naive_generate(const paci::one_f_one_b_machine<Controller, Flavour>& p) {
    p.validate();
    const int total = p.microbatches * p.steps;
    paci::schedule out;
    out.shape = p.shape();
    out.microbatches = total;
    out.steps = p.steps;
    out.policy = paci::detail::print(p);
    out.ranks.resize(static_cast<std::size_t>(out.shape.ranks));
    const Controller ctl = p.controller();
    for (int s = 0; s < p.stages; ++s) {
        auto& prog = out.ranks[static_cast<std::size_t>(s)];
        const int cap = p.cap_of(s);
        std::set<int> in_flight;
        int next_forward = 0;
        int backwards = 0;
        int updates = 0;
        while (backwards < total) {
            const int group_end =
                Controller::flushes ? std::min((backwards / p.microbatches + 1) * p.microbatches, total) : total;
            if (next_forward < group_end && static_cast<int>(in_flight.size()) < cap) {
                prog.push_back(paci::action{paci::op::F, s, next_forward});
                in_flight.insert(next_forward++);
                continue;
            }
            const int m = *in_flight.begin();
            in_flight.erase(in_flight.begin());
            if (Flavour == paci::backward_flavour::recompute && s != p.stages - 1)
                prog.push_back(paci::action{paci::op::R, s, m});
            prog.push_back(paci::action{paci::op::B, s, m});
            if (ctl.update_due(++backwards)) prog.push_back(paci::action{paci::op::STEP, s, updates++});
        }
    }
    return out;
}

/// Whether compute `c` takes its input from a stage on another rank: then `recv` is the RECV that
/// must come before it and `send` the SEND that the producing stage's rank must post.
[[nodiscard]] bool needs_message(const paci::pipeline_shape& shape, const paci::action& c, paci::action& recv,
                                 paci::action& send) {
    const int rank = shape.rank_of(c.stage);
    if (c.kind == paci::op::F && c.stage > 0 && shape.rank_of(c.stage - 1) != rank) {
        recv = {paci::op::RECV_F, c.stage, c.microbatch};
        send = {paci::op::SEND_F, c.stage - 1, c.microbatch};
        return true;
    }
    if ((c.kind == paci::op::B || c.kind == paci::op::I) && c.stage + 1 < shape.stages &&
        shape.rank_of(c.stage + 1) != rank) {
        recv = {paci::op::RECV_B, c.stage, c.microbatch};
        send = {paci::op::SEND_B, c.stage + 1, c.microbatch};
        return true;
    }
    return false;
}

/// Eager lowering with map lookups: a RECV right before each compute whose input crosses ranks; its
/// SEND right after the producing compute, or later to keep the receiver's order on the channel.
[[nodiscard]] paci::schedule naive_lower(const paci::schedule& in) {
    using key = std::tuple<paci::op, int, int>;
    std::map<key, std::pair<int, int>> producer; // (F or B, stage, micro-batch) -> (rank, position)
    for (std::size_t r = 0; r < in.ranks.size(); ++r)
        for (std::size_t p = 0; p < in.ranks[r].size(); ++p) {
            const paci::action a = in.ranks[r][p];
            if (a.kind == paci::op::F || a.kind == paci::op::B || a.kind == paci::op::I)
                producer[key{a.kind == paci::op::F ? paci::op::F : paci::op::B, a.stage, a.microbatch}] = {
                    static_cast<int>(r), static_cast<int>(p)};
        }
    std::vector<std::map<int, std::vector<paci::action>>> sends(in.ranks.size()); // per sender: after position
    std::map<std::pair<int, int>, int> channel_last;                                // (src, dst) -> last position
    for (std::size_t r = 0; r < in.ranks.size(); ++r)
        for (const paci::action c : in.ranks[r]) {
            paci::action recv, send;
            if (!needs_message(in.shape, c, recv, send)) continue;
            // The producer: the forward before a SEND_F, the backward (B or I, keyed B) before a SEND_B.
            const auto it = producer.find(key{send.kind == paci::op::SEND_F ? paci::op::F : paci::op::B, send.stage,
                                              send.microbatch});
            if (it == producer.end()) throw paci::config_error("naive_lower: input never computed");
            const auto [src, at] = it->second;
            auto last = channel_last.try_emplace({src, static_cast<int>(r)}, -1).first;
            last->second = std::max(last->second, at);
            sends[static_cast<std::size_t>(src)][last->second].push_back(send);
        }
    paci::schedule out = in;
    for (std::size_t r = 0; r < in.ranks.size(); ++r) {
        auto& dst = out.ranks[r];
        dst.clear();
        const auto& prog = in.ranks[r];
        for (std::size_t p = 0; p < prog.size(); ++p) {
            paci::action recv, send;
            if (needs_message(in.shape, prog[p], recv, send)) dst.push_back(recv);
            dst.push_back(prog[p]);
            const auto it = sends[r].find(static_cast<int>(p));
            if (it != sends[r].end()) dst.insert(dst.end(), it->second.begin(), it->second.end());
        }
    }
    return out;
}

/// Rendezvous-safe lowering: advance the ranks one compute per turn (round robin over a work queue);
/// a compute whose input is not produced yet parks its rank until the producer runs; a SEND is
/// placed where both sides stand when the second of them gets there.
[[nodiscard]] paci::schedule naive_lower_rendezvous_safe(const paci::schedule& in) {
    using key = std::tuple<paci::op, int, int>;
    const paci::pipeline_shape& shape = in.shape;
    const int P = shape.stages;
    enum class state { produced, waiting, sent };
    std::map<key, state> messages; // (SEND_F or SEND_B, producer stage, micro-batch)
    const auto produces = [&](const paci::action& c, paci::action& send, paci::action& recv) {
        const int rank = shape.rank_of(c.stage);
        if (c.kind == paci::op::F && c.stage + 1 < P && shape.rank_of(c.stage + 1) != rank) {
            send = {paci::op::SEND_F, c.stage, c.microbatch};
            recv = {paci::op::RECV_F, c.stage + 1, c.microbatch};
            return true;
        }
        if ((c.kind == paci::op::B || c.kind == paci::op::I) && c.stage > 0 && shape.rank_of(c.stage - 1) != rank) {
            send = {paci::op::SEND_B, c.stage, c.microbatch};
            recv = {paci::op::RECV_B, c.stage - 1, c.microbatch};
            return true;
        }
        return false;
    };
    paci::schedule out = in;
    for (auto& r : out.ranks) r.clear();
    std::vector<std::size_t> pc(in.ranks.size(), 0);
    std::deque<std::size_t> work;
    for (std::size_t r = 0; r < in.ranks.size(); ++r) work.push_back(r);
    while (!work.empty()) {
        const std::size_t r = work.front();
        work.pop_front();
        const auto& prog = in.ranks[r];
        if (pc[r] >= prog.size()) continue;
        const paci::action c = prog[pc[r]];
        paci::action recv, send;
        if (needs_message(shape, c, recv, send)) {
            const auto it = messages.find(key{send.kind, send.stage, send.microbatch});
            if (it == messages.end() || it->second == state::waiting) {
                messages[key{send.kind, send.stage, send.microbatch}] = state::waiting;
                continue; // parked until the producer runs
            }
            if (it->second == state::produced) {
                out.ranks[static_cast<std::size_t>(shape.rank_of(send.stage))].push_back(send);
                out.ranks[r].push_back(recv);
                it->second = state::sent;
            }
        }
        out.ranks[r].push_back(c);
        ++pc[r];
        if (produces(c, send, recv)) {
            auto [it, fresh] = messages.try_emplace(key{send.kind, send.stage, send.microbatch}, state::produced);
            if (!fresh && it->second == state::waiting) {
                const auto dst = static_cast<std::size_t>(shape.rank_of(recv.stage));
                out.ranks[r].push_back(send);
                out.ranks[dst].push_back(recv);
                it->second = state::sent;
                work.push_back(dst);
            }
        }
        if (pc[r] < prog.size()) work.push_back(r);
    }
    for (std::size_t r = 0; r < in.ranks.size(); ++r)
        if (pc[r] < in.ranks[r].size()) throw paci::config_error("naive_lower_rendezvous_safe: the compute order deadlocks");
    return out;
}

// ---------------------------------------------------------------------------------------------------
// Inputs, prepared once outside the timed loops, and the baselines checked against the library
// ---------------------------------------------------------------------------------------------------

struct prepared {
    paci::schedule compute;
    paci::schedule eager;      ///< lower(compute, lowering::eager)
    paci::schedule rendezvous; ///< lower(compute, lowering::rendezvous_safe)
    std::string error; ///< non-empty when a baseline disagrees with the library
};

template <class Policy>
[[nodiscard]] prepared prepare(const Policy& policy) {
    prepared out;
    out.compute = policy.generate();
    out.eager = paci::lower(out.compute, paci::lowering::eager);
    out.rendezvous = paci::lower(out.compute, paci::lowering::rendezvous_safe);
    if (naive_generate(policy) != out.compute) out.error = "naive_generate differs from generate()";
    else if (naive_lower(out.compute) != out.eager) out.error = "naive_lower differs from lower(eager)";
    else if (naive_lower_rendezvous_safe(out.compute) != out.rendezvous)
        out.error = "naive_lower_rendezvous_safe differs from lower(rendezvous_safe)";
    return out;
}

[[nodiscard]] const prepared& inputs(workload w) {
    return paci_bench::prepared_once(w, [](const auto& policy) { return prepare(policy); });
}

// ---------------------------------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------------------------------

template <class Policy>
void BM_generate(benchmark::State& state, workload w, const Policy& policy) {
    const prepared& in = inputs(w);
    measure(state, in.error, in.compute.compute_size(), [&] { return policy.generate(); });
}

template <class Policy>
void BM_naive_generate(benchmark::State& state, workload w, const Policy& policy) {
    const prepared& in = inputs(w);
    measure(state, in.error, in.compute.compute_size(), [&] { return naive_generate(policy); });
}

void BM_lower(benchmark::State& state, workload w, paci::lowering mode) {
    const prepared& in = inputs(w);
    const std::size_t lowered = (mode == paci::lowering::eager ? in.eager : in.rendezvous).size();
    measure(state, in.error, lowered, [&] { return paci::lower(in.compute, mode); });
}

void BM_naive_lower(benchmark::State& state, workload w, paci::lowering mode) {
    const prepared& in = inputs(w);
    const std::size_t lowered = (mode == paci::lowering::eager ? in.eager : in.rendezvous).size();
    measure(state, in.error, lowered, [&] {
        return mode == paci::lowering::eager ? naive_lower(in.compute) : naive_lower_rendezvous_safe(in.compute);
    });
}

BENCHMARK_CAPTURE(BM_generate, one_f_one_b, workload::one_f_one_b, one_f_one_b_policy())->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_generate, one_f_one_b, workload::one_f_one_b, one_f_one_b_policy())
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_generate, paci, workload::paci, paci_policy())->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_generate, paci, workload::paci, paci_policy())->Unit(benchmark::kMillisecond);

BENCHMARK_CAPTURE(BM_lower, one_f_one_b_eager, workload::one_f_one_b, paci::lowering::eager)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_lower, one_f_one_b_eager, workload::one_f_one_b, paci::lowering::eager)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_lower, one_f_one_b_rendezvous_safe, workload::one_f_one_b, paci::lowering::rendezvous_safe)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_lower, one_f_one_b_rendezvous_safe, workload::one_f_one_b, paci::lowering::rendezvous_safe)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_lower, paci_eager, workload::paci, paci::lowering::eager)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_lower, paci_eager, workload::paci, paci::lowering::eager)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_lower, paci_rendezvous_safe, workload::paci, paci::lowering::rendezvous_safe)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_lower, paci_rendezvous_safe, workload::paci, paci::lowering::rendezvous_safe)
    ->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
