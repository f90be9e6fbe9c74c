#pragma once
/// \file
/// The benchmarks' timing loop.

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace paci_bench {

/// Times `work()` after one untimed call, counting `items` per call; skips the benchmark with `error`
/// when it is not empty (a baseline that disagrees with the library). The warm-up keeps the previous
/// benchmark's debris out of the first timed iteration: a naive baseline frees millions of map nodes,
/// and glibc consolidates them on the next large allocation (a one-off ~0.2 s that otherwise lands on
/// whichever benchmark runs next and, with a short --benchmark_min_time, is all that gets measured).
template <class Work>
void measure(benchmark::State& state, const std::string& error, std::size_t items, Work work) {
    if (!error.empty()) {
        state.SkipWithError(error.c_str());
        return;
    }
    {
        auto warm = work();
        benchmark::DoNotOptimize(warm);
    }
    for (auto _ : state) {
        auto result = work();
        benchmark::DoNotOptimize(result);
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(items));
}

} // namespace paci_bench
