#pragma once
/// \file
/// Test support: one compute schedule and its two lowerings, which hold the same actions per rank in
/// other orders (same ranks, same program lengths), so sizes alone cannot tell them apart. The tests
/// of fingerprints and of times drawn on a schedule use them.

#include <paci/core/lower.hpp>
#include <paci/policy/one_f_one_b.hpp>

#include "support/catch.hpp"

namespace paci_test {

struct two_lowerings {
    paci::schedule compute, eager, safe;
};

/// 1F1B-flush over 2 stages and 3 micro-batches, lowered eagerly and rendezvous-safe; checks the
/// premise (equal lengths, different schedules) before a test relies on it.
[[nodiscard]] inline two_lowerings lowerings_of_one_schedule() {
    two_lowerings l;
    l.compute = paci::one_f_one_b<>{.stages = 2, .microbatches = 3, .steps = 1}.generate();
    l.eager = paci::lower(l.compute, paci::lowering::eager);
    l.safe = paci::lower(l.compute, paci::lowering::rendezvous_safe);
    REQUIRE(l.eager.ranks[0].size() == l.safe.ranks[0].size());
    REQUIRE(l.eager.ranks[1].size() == l.safe.ranks[1].size());
    REQUIRE(l.eager != l.safe);
    return l;
}

} // namespace paci_test
