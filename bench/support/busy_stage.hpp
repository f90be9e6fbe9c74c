#pragma once
/// \file
/// A stage that spins (busy-waits on steady_clock, never sleeps) a fixed time per forward and
/// backward and passes a `Floats`-float buffer on, allocating one where a model would (the first
/// stage's input, the last stage's loss gradient). The runtime benchmarks time pipelines of it
/// against `paci::simulate` under the same costs.

#include <chrono>
#include <cstddef>
#include <vector>

namespace paci_bench {

template <std::size_t Floats>
struct busy_stage {
    using buffer_type = std::vector<float>;
    using clock_type = std::chrono::steady_clock;
    static constexpr auto forward_time = std::chrono::microseconds(200);
    static constexpr auto backward_time = std::chrono::microseconds(400);

    static void spin(clock_type::duration d) {
        const auto end = clock_type::now() + d;
        while (clock_type::now() < end) {
        }
    }
    buffer_type forward(int, buffer_type in) {
        spin(forward_time);
        if (in.empty()) in.assign(Floats, 1.0f);
        return in;
    }
    buffer_type backward(int, buffer_type g) {
        spin(backward_time);
        if (g.empty()) g.assign(Floats, 1.0f);
        return g;
    }
    void step() {}
};

} // namespace paci_bench
