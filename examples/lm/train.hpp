#pragma once
/// \file
/// The training loop on paci's in-process runtime (one thread per stage): `run(a)` once per update,
/// `drain()` only before an evaluation; and what is read off the recorded trace afterwards (drift
/// per stage against the policy's bound, peak stored activations, weight versions, per-stage costs).

#include "cli.hpp"
#include "model.hpp"
#include "report.hpp"

#include <paci/analysis/memory.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/policy/gpipe.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/zero_bubble.hpp>
#include <paci/runtime/pipeline.hpp>
#include <paci/sim/simulate.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <utility>
#include <vector>

namespace paci_lm {

/// Calls `f(policy)` with the paci policy `spec` names, over `P` stages.
template <class F>
decltype(auto) with_policy(const policy_spec& spec, int P, F&& f) {
    using paci::backward_flavour;
    if (spec.kind == "gpipe") return f(paci::gpipe<>{.stages = P, .microbatches = spec.a});
    if (spec.kind == "1f1b") return f(paci::one_f_one_b<>{.stages = P, .microbatches = spec.a});
    if (spec.kind == "zb-h1") return f(paci::zb_h1{.stages = P, .microbatches = spec.a});
    if (spec.kind == "paci") return f(paci::paci_policy<>{.stages = P, .microbatches = spec.a});
    return f(paci::paci_policy<backward_flavour::recompute>{.stages = P, .microbatches = spec.a});
}

[[nodiscard]] inline double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
}

[[nodiscard]] inline double mean(const std::vector<double>& v) {
    return v.empty() ? 0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

/// How `costs_from` summarizes the recorded durations of one kind of action of one stage.
enum class summary { median, mean };

/// Per-stage costs (seconds) for `paci::simulate`: the median (what one action costs when nothing
/// interrupts it) or the mean (every interruption included: the recorded time spread evenly) of the
/// durations of each kind of action of each stage over the events of `traces` (pooled).
[[nodiscard]] inline paci::cost_model costs_from(const std::vector<const std::vector<std::vector<paci::trace_event>>*>& traces, int P,
                                                 summary how = summary::median) {
    std::vector<std::array<std::vector<double>, 6>> d(static_cast<std::size_t>(P));
    for (const auto* t : traces)
        for (const auto& rank : *t)
            for (const auto& e : rank) {
                int k = -1;
                switch (e.act.kind) {
                case paci::op::F: k = 0; break;
                case paci::op::B: k = 1; break;
                case paci::op::I: k = 2; break;
                case paci::op::W: k = 3; break;
                case paci::op::R: k = 4; break;
                case paci::op::STEP: k = 5; break;
                default: break;
                }
                if (k >= 0 && e.act.stage >= 0 && e.act.stage < P)
                    d[static_cast<std::size_t>(e.act.stage)][static_cast<std::size_t>(k)].push_back(e.end - e.start);
            }
    paci::cost_model c;
    for (int s = 0; s < P; ++s) {
        const auto& x = d[static_cast<std::size_t>(s)];
        const auto sum = [&](const std::vector<double>& v) { return how == summary::median ? median(v) : mean(v); };
        c.per_stage.push_back({.f = sum(x[0]), .b = sum(x[1]), .i = sum(x[2]), .w = sum(x[3]), .r = sum(x[4]), .step = sum(x[5])});
    }
    return c;
}

/// Simulated seconds of one training segment of `updates` updates (the pipeline filled from empty and
/// drained at the end, as before each evaluation) under `costs`.
template <class Policy>
[[nodiscard]] double simulated_segment(Policy policy, int updates, const paci::cost_model& costs) {
    policy.steps = updates;
    return paci::simulate(policy.generate(), costs).makespan;
}

/// Drift, memory and versions of what ran, from the recorded trace.
template <class Policy>
void read_trace(const Policy& policy, const paci::run_trace& trace, run_record& r) {
    const paci::schedule ran = trace.to_schedule();
    const paci::replay_result rep = paci::replay(ran, policy.controller());
    const paci::memory_report mem = paci::memory_of(rep);
    r.max_drift.clear(), r.drift_bound.clear(), r.peak_activations.clear(), r.weight_versions.clear();
    for (int s = 0; s < policy.stages; ++s) {
        r.max_drift.push_back(rep.per_stage[static_cast<std::size_t>(s)].max_drift);
        r.drift_bound.push_back(policy.drift_bound(s));
        r.peak_activations.push_back(mem.peak_activations[static_cast<std::size_t>(s)]);
        r.weight_versions.push_back(rep.per_stage[static_cast<std::size_t>(s)].peak_versions);
    }
}

/// Updates per run and per evaluation segment.
struct run_plan {
    std::int64_t updates = 1;
    int eval_every = 1;
};
[[nodiscard]] inline run_plan plan_of(const options& o, int a) {
    run_plan p;
    p.updates = std::max<std::int64_t>(1, o.samples / (static_cast<std::int64_t>(a) * o.microbatch));
    p.eval_every = static_cast<int>(std::max<std::int64_t>(1, p.updates / o.evals));
    p.updates -= p.updates % p.eval_every; // whole segments: every one ends in an evaluation
    return p;
}

/// Fills the time to target (and updates to target) from the curve: where the held-out loss first
/// reaches the target, interpolated linearly between the two evaluations around the crossing (the
/// evaluations are a whole segment of updates apart).
inline void find_target(run_record& r) {
    for (std::size_t k = 0; k < r.curve.size(); ++k) {
        const curve_point& p = r.curve[k];
        if (p.heldout > r.target) continue;
        double f = 1; // fraction of the way from the previous evaluation to this one
        const curve_point& q = k > 0 ? r.curve[k - 1] : p;
        if (k > 0 && q.heldout > p.heldout) f = (q.heldout - r.target) / (q.heldout - p.heldout);
        const auto at = [&](double a, double b) { return a + f * (b - a); };
        r.time_to_target = at(q.seconds, p.seconds);
        const double samples = at(static_cast<double>(q.samples), static_cast<double>(p.samples));
        r.updates_to_target = std::llround(samples / (static_cast<double>(r.a) * r.batch));
        if (!std::isnan(p.modelled)) r.modelled_time_to_target = at(std::isnan(q.modelled) ? 0.0 : q.modelled, p.modelled);
        return;
    }
}

inline void print_eval(const run_record& r, const curve_point& p, std::int64_t updates) {
    std::printf("  %-18s P=%d  update %5lld  samples %7lld  held-out %.4f  train %.4f  %7.2f s\n", r.policy.c_str(), r.stages,
                static_cast<long long>(updates), static_cast<long long>(p.samples), p.heldout, p.train, p.seconds);
    std::fflush(stdout);
}

struct inprocess_result {
    run_record record;
    paci::run_trace trace;
    int eval_every = 1;
};

/// Trains a fresh model with `policy` in one process and evaluates it `o.evals` times.
template <class Policy>
[[nodiscard]] inprocess_result train_inprocess(const Policy& policy, const policy_spec& spec, const lm_task& task,
                                               const std::vector<std::size_t>& ends, const options& o) {
    using clock = std::chrono::steady_clock;
    const int P = policy.stages, a = policy.microbatches;
    auto model = make_model<float>(task, P);
    if (spec.kind == "paci-recompute")
        for (auto& s : model) s->set_recompute(true);
    paci::inprocess_pipeline<Policy, lm_stage<float>> pipe(policy, pointers(model), {.timeout = std::chrono::seconds(300)});

    inprocess_result out;
    run_record& r = out.record;
    r.policy = display_name(spec);
    r.kind = spec.kind;
    r.stages = P;
    r.a = a;
    r.batch = task.config.batch;
    r.transport = "inprocess";
    r.target = o.target;
    const run_plan plan = plan_of(o, a);
    out.eval_every = plan.eval_every;
    r.curve.push_back({0, heldout_loss(model, *task.text, ends), std::numeric_limits<double>::quiet_NaN(), 0.0});

    double seconds = 0;
    std::size_t logged = 0;
    auto t0 = clock::now();
    for (std::int64_t u = 1; u <= plan.updates; ++u) {
        pipe.run(a);
        if (u % plan.eval_every == 0 || u == plan.updates) {
            pipe.drain();
            seconds += std::chrono::duration<double>(clock::now() - t0).count();
            const auto log = model.back()->losses();
            double sum = 0;
            for (std::size_t k = logged; k < log.size(); ++k) sum += log[k].second;
            const double train = log.size() > logged ? sum / static_cast<double>(log.size() - logged) : 0.0;
            logged = log.size();
            r.curve.push_back({u * a * r.batch, heldout_loss(model, *task.text, ends), train, seconds});
            print_eval(r, r.curve.back(), u);
            t0 = clock::now();
        }
    }
    r.samples = plan.updates * a * r.batch;
    r.final_heldout = r.curve.back().heldout;
    r.samples_per_s = static_cast<double>(r.samples) / seconds;
    out.trace = pipe.trace();
    read_trace(policy, out.trace, r);
    find_target(r);
    return out;
}

} // namespace paci_lm
