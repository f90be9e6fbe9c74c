#pragma once
/// \file
/// The benchmarks' shared workloads: about half a million compute actions each,
/// - `one_f_one_b`: `one_f_one_b<>{.stages = 64, .microbatches = 4096, .steps = 1}`;
/// - `paci`: `paci_policy<>{.stages = 64, .microbatches = 64, .steps = 64}` (4096 micro-batches);
/// both 64 x 4096 x (F + B) = 524288 compute actions.

#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>

namespace paci_bench {

enum class workload { one_f_one_b, paci };

[[nodiscard]] inline paci::one_f_one_b<> one_f_one_b_policy() {
    return paci::one_f_one_b<>{.stages = 64, .microbatches = 4096, .steps = 1, .cap = {}};
}

[[nodiscard]] inline paci::paci_policy<> paci_policy() {
    return paci::paci_policy<>{.stages = 64, .microbatches = 64, .steps = 64, .cap = {}};
}

/// The inputs of workload `w`, built by `prepare(policy)` on first use and kept for the run, so that
/// no benchmark times their construction.
template <class Prepare>
[[nodiscard]] const auto& prepared_once(workload w, Prepare prepare) {
    if (w == workload::one_f_one_b) {
        static const auto p = prepare(one_f_one_b_policy());
        return p;
    }
    static const auto p = prepare(paci_policy());
    return p;
}

} // namespace paci_bench
