#pragma once
/// \file
/// The planner: rank the candidate policies and settings for a pipeline by modelled time per
/// micro-batch, within a memory budget and a drift budget.

#include <paci/analysis/drift.hpp>
#include <paci/analysis/memory.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/core/lower.hpp>
#include <paci/policy/dualpipe_v.hpp>
#include <paci/policy/gpipe.hpp>
#include <paci/policy/interleaved.hpp>
#include <paci/policy/interleaved_zero_bubble.hpp>
#include <paci/policy/looped_bfs.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/pipedream.hpp>
#include <paci/policy/zb_v.hpp>
#include <paci/policy/zero_bubble.hpp>
#include <paci/sim/simulate.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

namespace paci {

/// What to plan for.
struct plan_request {
    int stages = 1;
    int ranks = 0;        ///< 0: one stage per rank; fewer ranks than stages makes interleaved candidates
    int microbatches = 1; ///< micro-batches per update for the synchronous policies (and PACI without a drift budget)
    cost_model costs{};
    int memory_budget = 0; ///< most micro-batches' full activations a rank may hold; 0: unlimited
    int drift_budget = -1; ///< most updates a micro-batch may cross or its gradient may lag; -1: unlimited
    send_semantics sends = send_semantics::buffered;
};

/// One candidate: its modelled speed, memory and version guarantees, and why it was rejected.
struct plan_candidate {
    std::string policy;            ///< printed policy value
    double time_per_microbatch = 0; ///< steady state, from the simulator
    double bubble_fraction = 0;
    int peak_activations = 0; ///< most full activation sets on one rank
    int peak_stored = 0;      ///< most micro-batches with anything stored on one rank
    int drift_bound = 0;      ///< max over stages
    int staleness_bound = 0;  ///< max over stages
    int weight_versions = 0;  ///< most resident versions on one stage
    int effective_batch = 0;  ///< micro-batches per optimizer update
    std::vector<std::string> rejected_because; ///< empty when the candidate meets every budget
    [[nodiscard]] bool feasible() const noexcept { return rejected_because.empty(); }
};

/// Feasible candidates fastest first, then the rejected ones.
struct plan {
    std::vector<plan_candidate> candidates;
    [[nodiscard]] const plan_candidate* best() const noexcept {
        return !candidates.empty() && candidates.front().feasible() ? &candidates.front() : nullptr;
    }
};

namespace detail {

template <schedule_policy Policy>
plan_candidate evaluate(const Policy& policy, const plan_request& req) {
    plan_candidate c;
    c.policy = print(policy);
    const schedule compute = policy.generate();
    const bool rendezvous = req.sends == send_semantics::rendezvous;
    const schedule lowered = lower(compute, rendezvous ? lowering::rendezvous_safe : lowering::eager);
    const simulation sim = simulate(lowered, req.costs, req.sends);
    const replay_result rep = replay(compute, policy.controller());
    const memory_report mem = memory_of(rep);
    c.time_per_microbatch = sim.time_per_microbatch();
    c.bubble_fraction = sim.bubble_fraction;
    for (const int x : mem.rank_peak_activations) c.peak_activations = std::max(c.peak_activations, x);
    for (const int x : mem.rank_peak_stored) c.peak_stored = std::max(c.peak_stored, x);
    for (const int x : mem.peak_versions) c.weight_versions = std::max(c.weight_versions, x);
    for (int s = 0; s < policy.shape().stages; ++s) {
        c.drift_bound = std::max(c.drift_bound, policy.drift_bound(s));
        c.staleness_bound = std::max(c.staleness_bound, policy.staleness_bound(s));
    }
    c.effective_batch = compute.steps > 0 ? compute.microbatches / compute.steps : compute.microbatches;
    if (!sim.completed) c.rejected_because.push_back("does not complete: " + sim.deadlock.message);
    if (req.memory_budget > 0 && c.peak_activations > req.memory_budget)
        c.rejected_because.push_back(concat("peak activations ", c.peak_activations, " exceed the memory budget ",
                                            req.memory_budget));
    if (req.drift_budget >= 0 && c.drift_bound > req.drift_budget)
        c.rejected_because.push_back(concat("drift bound ", c.drift_bound, " exceeds the drift budget ", req.drift_budget));
    if (req.drift_budget >= 0 && c.staleness_bound > req.drift_budget)
        c.rejected_because.push_back(
            concat("staleness bound ", c.staleness_bound, " exceeds the drift budget ", req.drift_budget));
    return c;
}

/// Updates in an analysis window: enough for the steady state to dominate.
[[nodiscard]] inline int window_steps(int stages, int per_update) {
    return std::max(4, ceil_div(4 * stages, per_update) + 2);
}

} // namespace detail

/// The smallest accumulation factor whose PACI drift bound at stage 0, `ceil((cap_0 - 1) / a)`,
/// meets `drift_budget` (`stages - 1` caps it: at `a >= P - 1` the bound is 1). A budget of 0 cannot
/// be met asynchronously and returns 0.
/// \throws config_error for stages out of [1, max_stages] or a budget below -1.
[[nodiscard]] inline int paci_accumulation_for(int stages, int drift_budget) {
    detail::check_stages("paci_accumulation_for", stages);
    detail::config_require(drift_budget >= -1, "paci_accumulation_for", "drift_budget", drift_budget,
                           "must be >= 0, or -1 for none");
    if (drift_budget < 0) return 1;
    if (drift_budget == 0) return stages == 1 ? 1 : 0;
    return std::max(1, detail::ceil_div(stages - 1, drift_budget));
}

/// Ranks the built-in policies for `req` by modelled time per micro-batch. With ranks < stages the
/// multi-stage policies fit (chunks = stages / ranks): interleaved 1F1B, looped BFS, interleaved
/// zero-bubble, and with two chunks ZB-V and DualPipeV; a policy whose validate() refuses the request
/// is listed as rejected with its reason. Otherwise GPipe, 1F1B-flush, ZB-H1, ZB-H2,
/// PipeDream, PipeDream-2BW and PACI (perf and recompute), PACI with the smallest accumulation factor
/// that meets the drift budget (or `microbatches` without one).
/// \throws config_error for impossible requests (bad shape, costs, or counts).
[[nodiscard]] inline plan make_plan(const plan_request& req) {
    const int P = req.stages;
    const int R = req.ranks == 0 ? P : req.ranks;
    detail::check_stages("plan", P);
    if (!(R >= 1 && R <= P && P % R == 0)) detail::config_fail("plan", "ranks", R,
                           detail::concat("must divide stages (", P, ")"));
    detail::config_require(req.microbatches >= 1, "plan", "microbatches", req.microbatches, "must be >= 1");
    detail::config_require(req.memory_budget >= 0, "plan", "memory budget", req.memory_budget, "must be >= 0");
    detail::config_require(req.drift_budget >= -1, "plan", "drift budget", req.drift_budget, "must be >= 0, or -1 for none");
    if (req.sends != send_semantics::buffered && req.sends != send_semantics::rendezvous)
        detail::config_fail("plan", "sends", static_cast<int>(req.sends),
                            "must be send_semantics::buffered or send_semantics::rendezvous");
    req.costs.validate(P);
    const int M = req.microbatches;
    {
        // The largest candidate, lowered (a compute gains at most a RECV and a SEND), before any is built:
        // per stage at most three computes (F, R, B or F, I, W) per micro-batch of its window, and a STEP per update.
        const auto window = [&](std::int64_t per_update) {
            const std::int64_t n = detail::window_steps(P, static_cast<int>(std::min<std::int64_t>(per_update, 1 << 30)));
            return n * per_update + n;
        };
        const std::int64_t m2 = std::max(M, P - 1);
        const std::int64_t a = req.drift_budget >= 0 ? std::max(paci_accumulation_for(P, req.drift_budget), 1) : M;
        const std::int64_t per_stage =
            std::max({std::int64_t{4} * M + 4, window(1), window(m2), window(a)});
        detail::check_schedule_size("plan", detail::mul_sat(detail::mul_sat(static_cast<std::uint64_t>(P), 9),
                                                            static_cast<std::uint64_t>(per_stage)));
    }
    plan out;
    const auto add = [&](const auto& policy) { out.candidates.push_back(detail::evaluate(policy, req)); };
    const int flush_steps = 4;
    // A policy whose own validate() refuses the request is listed, rejected with its reason.
    const auto add_or_reject = [&](const auto& policy) {
        try {
            policy.validate();
        } catch (const config_error& e) {
            plan_candidate c;
            c.policy = detail::concat(policy);
            c.rejected_because.emplace_back(e.what());
            out.candidates.push_back(std::move(c));
            return;
        }
        add(policy);
    };
    if (R < P) {
        const int V = P / R;
        if (M % R == 0) add(interleaved_one_f_one_b{.ranks = R, .chunks = V, .microbatches = M, .steps = flush_steps});
        else {
            plan_candidate c;
            c.policy = detail::concat("interleaved_one_f_one_b{.ranks = ", R, ", .chunks = ", V, ", .microbatches = ", M, "}");
            c.rejected_because.push_back(detail::concat("microbatches (", M, ") must be a multiple of ranks (", R, ")"));
            out.candidates.push_back(c);
        }
        add_or_reject(looped_bfs{.ranks = R, .chunks = V, .microbatches = M, .steps = flush_steps});
        add_or_reject(interleaved_zero_bubble{.ranks = R, .chunks = V, .microbatches = M, .steps = flush_steps});
        if (V == 2) { // the V placement: stages r and 2R-1-r on rank r
            add_or_reject(zb_v{.ranks = R, .microbatches = M, .steps = flush_steps});
            add_or_reject(dualpipe_v{.ranks = R, .microbatches = M, .steps = flush_steps});
        }
    } else {
        add(gpipe<>{.stages = P, .microbatches = M, .steps = flush_steps});
        add(one_f_one_b<>{.stages = P, .microbatches = M, .steps = flush_steps});
        add(one_f_one_b<backward_flavour::recompute>{.stages = P, .microbatches = M, .steps = flush_steps});
        add(zb_h1{.stages = P, .microbatches = M, .steps = flush_steps});
        add(zb_h2{.stages = P, .microbatches = M, .steps = flush_steps});
        add(pipedream{.stages = P, .microbatches = 1, .steps = detail::window_steps(P, 1)});
        const int m2 = std::max(M, P - 1);
        add(pipedream_2bw{.stages = P, .microbatches = m2, .steps = detail::window_steps(P, m2)});
        int a = req.drift_budget >= 0 ? paci_accumulation_for(P, req.drift_budget) : M;
        if (a == 0) a = M; // a zero budget: show PACI at the user's setting, rejected for its drift
        add(paci_policy<>{.stages = P, .microbatches = a, .steps = detail::window_steps(P, a)});
        add(paci_policy<backward_flavour::recompute>{.stages = P, .microbatches = a, .steps = detail::window_steps(P, a)});
    }
    // Times equal to within rounding count as equal: each is rounded to a quantum shared by the
    // whole plan (so the order is a strict weak ordering), then fewer weight copies, less
    // staleness and less memory break the tie.
    double slowest = 0;
    for (const auto& c : out.candidates) slowest = std::max(slowest, c.time_per_microbatch);
    const double quantum = slowest > 0 ? slowest * 1e-9 : 1;
    const auto bucket = [quantum](const plan_candidate& c) { return std::llround(c.time_per_microbatch / quantum); };
    std::stable_sort(out.candidates.begin(), out.candidates.end(), [&](const plan_candidate& x, const plan_candidate& y) {
        if (x.feasible() != y.feasible()) return x.feasible();
        if (bucket(x) != bucket(y)) return bucket(x) < bucket(y);
        if (x.weight_versions != y.weight_versions) return x.weight_versions < y.weight_versions;
        if (x.staleness_bound != y.staleness_bound) return x.staleness_bound < y.staleness_bound;
        return x.peak_activations < y.peak_activations;
    });
    return out;
}

inline std::ostream& operator<<(std::ostream& os, const plan& p) {
    for (const auto& c : p.candidates) {
        os << (c.feasible() ? "  ok   " : "  no   ") << c.policy << "\n        time/micro-batch " << c.time_per_microbatch
           << ", bubble " << c.bubble_fraction << ", activations " << c.peak_activations << ", drift bound "
           << c.drift_bound << ", staleness bound " << c.staleness_bound << ", weight versions " << c.weight_versions
           << ", micro-batches per update " << c.effective_batch << '\n';
        for (const auto& why : c.rejected_because) os << "        rejected: " << why << '\n';
    }
    return os;
}

} // namespace paci
