// Simulation of the 1F1B and PACI workloads (64 stages, 4096 micro-batches, lowered eagerly: about
// 1.5 million actions) against a naive simulator in the same run: the same semantics, with every
// completion time kept in a std::map keyed by (op, stage, micro-batch).
// Target: at least 5 million actions per second.

#include <paci/core/lower.hpp>
#include <paci/sim/simulate.hpp>

#include "support/measure.hpp"
#include "support/workloads.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace {

using paci_bench::workload;

struct prepared {
    paci::schedule lowered;
    paci::cost_model costs;
    std::string error; // the naive simulator disagrees with the library
};

/// Buffered sends, zero transfer: what paci::simulate does for a lowered schedule, written plainly.
double naive_makespan(const paci::schedule& s, const paci::cost_model& costs) {
    std::map<std::tuple<int, int, int>, double> done; // (op, stage, micro-batch) -> end (SENDs: start)
    std::vector<std::size_t> pc(s.ranks.size(), 0);
    std::vector<double> clock(s.ranks.size(), 0);
    bool progress = true;
    while (progress) {
        progress = false;
        for (std::size_t r = 0; r < s.ranks.size(); ++r)
            while (pc[r] < s.ranks[r].size()) {
                const paci::action a = s.ranks[r][pc[r]];
                double start = clock[r];
                if (a.kind == paci::op::RECV_F || a.kind == paci::op::RECV_B) {
                    const paci::action from = paci::detail::comm_partner(a);
                    const auto it = done.find({static_cast<int>(from.kind), from.stage, from.microbatch});
                    if (it == done.end()) break;
                    start = std::max(start, it->second + costs.transfer());
                    done[{static_cast<int>(a.kind), a.stage, a.microbatch}] = start;
                    clock[r] = start;
                } else if (a.kind == paci::op::SEND_F || a.kind == paci::op::SEND_B) {
                    done[{static_cast<int>(a.kind), a.stage, a.microbatch}] = start;
                } else {
                    clock[r] = start + costs.duration(a);
                    done[{static_cast<int>(a.kind), a.stage, a.microbatch}] = clock[r];
                }
                ++pc[r];
                progress = true;
            }
    }
    return *std::max_element(clock.begin(), clock.end());
}

template <class Policy>
prepared prepare(const Policy& policy) {
    prepared p;
    p.lowered = paci::lower(policy.generate(), paci::lowering::eager);
    p.costs.uniform = {.f = 1, .b = 2};
    const double ours = paci::simulate(p.lowered, p.costs).makespan;
    const double naive = naive_makespan(p.lowered, p.costs);
    if (ours != naive) p.error = "naive makespan " + std::to_string(naive) + " != paci " + std::to_string(ours);
    return p;
}

const prepared& inputs(workload w) {
    return paci_bench::prepared_once(w, [](const auto& policy) { return prepare(policy); });
}

void BM_simulate(benchmark::State& state, workload w) {
    const prepared& p = inputs(w);
    paci_bench::measure(state, p.error, p.lowered.size(), [&] { return paci::simulate(p.lowered, p.costs).makespan; });
}

void BM_naive_simulate(benchmark::State& state, workload w) {
    const prepared& p = inputs(w);
    paci_bench::measure(state, p.error, p.lowered.size(), [&] { return naive_makespan(p.lowered, p.costs); });
}

BENCHMARK_CAPTURE(BM_simulate, one_f_one_b, workload::one_f_one_b)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_simulate, one_f_one_b, workload::one_f_one_b)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_simulate, paci, workload::paci)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_simulate, paci, workload::paci)->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
