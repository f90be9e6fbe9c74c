#pragma once
/// \file
/// Test helpers for the synchronous (flushing) policies: the built-in ones of a grid point, and the
/// bounds every such policy must promise.

#include <paci/policy/gpipe.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/zero_bubble.hpp>

#include "support/catch.hpp"

namespace paci_test {

/// Calls `f` with each built-in one-chunk synchronous policy of `P` stages, `M` micro-batches per
/// update and `N` steps, in this order: 1F1B-flush, 1F1B-flush recompute, GPipe, GPipe recompute,
/// ZB-H1, ZB-H2.
template <class F>
void for_each_synchronous_policy(int P, int M, int N, F&& f) {
    using paci::backward_flavour;
    f(paci::one_f_one_b<>{.stages = P, .microbatches = M, .steps = N});
    f(paci::one_f_one_b<backward_flavour::recompute>{.stages = P, .microbatches = M, .steps = N});
    f(paci::gpipe<>{.stages = P, .microbatches = M, .steps = N});
    f(paci::gpipe<backward_flavour::recompute>{.stages = P, .microbatches = M, .steps = N});
    f(paci::zb_h1{.stages = P, .microbatches = M, .steps = N});
    f(paci::zb_h2{.stages = P, .microbatches = M, .steps = N});
}

/// Checks that `p` promises, at each of its `stages` stages, what a synchronous policy must: drift
/// 0, staleness 0 and one resident weight version.
template <class Policy>
void check_synchronous_bounds(const Policy& p, int stages) {
    for (int s = 0; s < stages; ++s) {
        CAPTURE(s);
        CHECK(p.drift_bound(s) == 0);
        CHECK(p.staleness_bound(s) == 0);
        CHECK(p.versions_bound(s) == 1);
    }
}

} // namespace paci_test
