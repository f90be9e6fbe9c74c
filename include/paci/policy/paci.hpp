#pragma once
/// \file
/// PACI: the 1F1B machine without a flush; bubble-free, drift bounded by ceil((cap[s] - 1) / a).

#include <paci/policy/one_f_one_b.hpp>

namespace paci {

/// PACI (Elam et al., 2026): every stage updates after each `microbatches` (= `a`) local backwards on
/// its own counter; no flush, no stashing, no extra weight copies. A micro-batch crosses at most
/// `ceil((cap[s] - 1) / a)` updates at stage `s` (`ceil((P - 1 - s) / a)` with the default cap), and
/// the bound is attained. `recompute` keeps stage inputs only and recomputes before each backward.
///
///     paci::paci_policy<> p{.stages = 8, .microbatches = 4, .steps = 16};
template <backward_flavour Flavour = backward_flavour::perf>
using paci_policy = one_f_one_b_machine<accumulation, Flavour>;

static_assert(schedule_policy<paci_policy<>>);
static_assert(schedule_policy<paci_policy<backward_flavour::recompute>>);

} // namespace paci
