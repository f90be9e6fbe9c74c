// The 1F1B machine's two orders at P = 8 over 512 micro-batches, a = 2 and 8, under per-stage
// imbalance and seeded jitter: the static order `generate()` emits (a forward whenever the cap
// allows, otherwise the oldest backward; timed by paci::simulate) against the greedy order PACI's
// reference implementation chooses at run time (any waiting gradient first; paci::simulate_greedy),
// which is the baseline in the same run.
//
// Counters of the static rows (jittered patterns: mean, min and max over seeds 1..8):
//   static/greedy         static makespan / greedy makespan (below 1: the static order is faster)
//   steady static/greedy  the same ratio for the steady-state time per micro-batch
// and of every row: makespan (of seed 1), the modelled time of the 512 micro-batches. Both orders
// keep PACI's drift bound (paci::replay + check_drift); a row whose order breaks it is skipped with
// the violation. Timed: one simulation (items = actions); the greedy one decides the order as it
// goes and then times it with paci::simulate, so it costs about two static ones.

#include <paci/analysis/drift.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/policy/paci.hpp>
#include <paci/sim/greedy.hpp>
#include <paci/sim/simulate.hpp>

#include "support/measure.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace {

constexpr int stages = 8;
constexpr int microbatches = 512;
constexpr std::uint64_t seeds = 8;

enum class pattern { equal, slow_middle, slow_first, increasing, decreasing, jitter_0_1, jitter_0_3, slow_middle_jitter_0_3 };

/// F = k, B = 2k per stage: one stage (P/2, or 0) at k = 1.5, or k rising linearly from 1 to 2 (or
/// falling from 2 to 1), or equal; with or without jitter.
paci::cost_model costs(pattern p, std::uint64_t seed) {
    paci::cost_model c;
    c.seed = seed;
    c.jitter = p == pattern::jitter_0_1 ? 0.1 : p == pattern::jitter_0_3 || p == pattern::slow_middle_jitter_0_3 ? 0.3 : 0;
    for (int s = 0; s < stages; ++s) {
        double k = 1;
        if ((p == pattern::slow_middle || p == pattern::slow_middle_jitter_0_3) && s == stages / 2) k = 1.5;
        if (p == pattern::slow_first && s == 0) k = 1.5;
        if (p == pattern::increasing) k = 1 + static_cast<double>(s) / (stages - 1);
        if (p == pattern::decreasing) k = 2 - static_cast<double>(s) / (stages - 1);
        c.per_stage.push_back({.f = k, .b = 2 * k});
    }
    return c;
}

struct prepared {
    paci::paci_policy<> policy;
    paci::cost_model costs;   // seed 1
    paci::schedule fixed;     // the static order
    double greedy_makespan = 0;
    double static_makespan = 0;
    double ratio = 0, ratio_min = 0, ratio_max = 0; // static / greedy makespan
    double steady = 0, steady_min = 0, steady_max = 0; // static / greedy time per micro-batch
    std::string error;
};

const prepared& inputs(pattern p, int a) {
    static std::map<std::pair<pattern, int>, prepared> cache;
    auto [it, fresh] = cache.try_emplace({p, a});
    prepared& out = it->second;
    if (!fresh) return out;
    out.policy = paci::paci_policy<>{.stages = stages, .microbatches = a, .steps = microbatches / a, .cap = {}};
    out.costs = costs(p, 1);
    out.fixed = out.policy.generate();
    const auto fixed_drift = paci::check_drift(paci::replay(out.fixed), out.policy);
    if (!fixed_drift.within_bounds()) out.error = "static order: " + paci::detail::print(*fixed_drift.first_violation);
    const bool jittered = out.costs.jitter > 0;
    std::vector<double> ratios, steadies;
    for (std::uint64_t seed = 1; seed <= (jittered ? seeds : 1); ++seed) {
        const paci::cost_model c = costs(p, seed);
        const auto g = paci::simulate_greedy(out.policy, c);
        const auto s = paci::simulate(out.fixed, c);
        const auto drift = paci::check_drift(paci::replay(g.order), out.policy);
        if (!drift.within_bounds() && out.error.empty())
            out.error = "greedy order: " + paci::detail::print(*drift.first_violation);
        if (seed == 1) {
            out.greedy_makespan = g.timeline.makespan;
            out.static_makespan = s.makespan;
        }
        ratios.push_back(s.makespan / g.timeline.makespan);
        steadies.push_back(g.timeline.throughput / s.throughput);
    }
    const auto summarize = [](const std::vector<double>& v, double& mean, double& lo, double& hi) {
        mean = 0;
        for (double x : v) mean += x / static_cast<double>(v.size());
        lo = *std::min_element(v.begin(), v.end());
        hi = *std::max_element(v.begin(), v.end());
    };
    summarize(ratios, out.ratio, out.ratio_min, out.ratio_max);
    summarize(steadies, out.steady, out.steady_min, out.steady_max);
    return out;
}

void BM_greedy_order(benchmark::State& state, pattern p, int a) {
    const prepared& in = inputs(p, a);
    paci_bench::measure(state, in.error, in.fixed.size(),
                        [&] { return paci::simulate_greedy(in.policy, in.costs).timeline.makespan; });
    state.counters["makespan"] = in.greedy_makespan;
}

void BM_static_order(benchmark::State& state, pattern p, int a) {
    const prepared& in = inputs(p, a);
    paci_bench::measure(state, in.error, in.fixed.size(), [&] { return paci::simulate(in.fixed, in.costs).makespan; });
    state.counters["makespan"] = in.static_makespan;
    state.counters["static/greedy"] = in.ratio;
    state.counters["steady static/greedy"] = in.steady;
    if (in.costs.jitter > 0) {
        state.counters["min"] = in.ratio_min;
        state.counters["max"] = in.ratio_max;
        state.counters["steady min"] = in.steady_min;
        state.counters["steady max"] = in.steady_max;
    }
}

#define PACI_ORDERS(pat, a)                                                                                \
    BENCHMARK_CAPTURE(BM_greedy_order, pat##_a##a, pattern::pat, a)->Unit(benchmark::kMillisecond);       \
    BENCHMARK_CAPTURE(BM_static_order, pat##_a##a, pattern::pat, a)->Unit(benchmark::kMillisecond)

PACI_ORDERS(equal, 2);
PACI_ORDERS(equal, 8);
PACI_ORDERS(slow_middle, 2);
PACI_ORDERS(slow_middle, 8);
PACI_ORDERS(slow_first, 2);
PACI_ORDERS(slow_first, 8);
PACI_ORDERS(increasing, 2);
PACI_ORDERS(increasing, 8);
PACI_ORDERS(decreasing, 2);
PACI_ORDERS(decreasing, 8);
PACI_ORDERS(jitter_0_1, 2);
PACI_ORDERS(jitter_0_1, 8);
PACI_ORDERS(jitter_0_3, 2);
PACI_ORDERS(jitter_0_3, 8);
PACI_ORDERS(slow_middle_jitter_0_3, 2);
PACI_ORDERS(slow_middle_jitter_0_3, 8);

} // namespace

BENCHMARK_MAIN();
