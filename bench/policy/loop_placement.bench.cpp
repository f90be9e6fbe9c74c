/// \file
/// Generation of the loop-placement multi-chunk policies, looped BFS and interleaved zero-bubble,
/// against interleaved 1F1B of the same size.
///
/// Workloads (one core, Release): 32 ranks, 2 chunks per rank (64 stages), 4096 micro-batches, one update:
/// - `looped_bfs`: `looped_bfs{.ranks = 32, .chunks = 2, .microbatches = 4096, .steps = 1}`,
///   64 x 4096 x (F + B) = 524288 compute actions;
/// - `interleaved_zero_bubble`: the same shape, 64 x 4096 x (F + I + W) = 786432 compute actions;
/// - `interleaved`: `interleaved_one_f_one_b` of the same shape, 524288 compute actions.
///
/// `items_per_second` counts compute actions. Target: at least interleaved 1F1B's rate (all three
/// are closed-form orders, one pass per update and rank, no allocation but the output).

#include <paci/core/schedule.hpp>
#include <paci/policy/interleaved.hpp>
#include <paci/policy/interleaved_zero_bubble.hpp>
#include <paci/policy/looped_bfs.hpp>

#include <benchmark/benchmark.h>

#include "support/measure.hpp"

#include <string>

namespace {

template <class Policy>
void BM_generate(benchmark::State& state, const Policy& policy) {
    const std::size_t items = policy.generate().compute_size();
    paci_bench::measure(state, std::string{}, items, [&] { return policy.generate(); });
}

} // namespace

BENCHMARK_CAPTURE(BM_generate, looped_bfs, paci::looped_bfs{.ranks = 32, .chunks = 2, .microbatches = 4096, .steps = 1})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_generate, interleaved_zero_bubble,
                  paci::interleaved_zero_bubble{.ranks = 32, .chunks = 2, .microbatches = 4096, .steps = 1})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_generate, interleaved,
                  paci::interleaved_one_f_one_b{.ranks = 32, .chunks = 2, .microbatches = 4096, .steps = 1})
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
