#pragma once
/// \file
/// User caps the 1F1B machine accepts, for the analysis property tests: `paci_test::random_caps`
/// clamped to `P - s` (validate() refuses a cap above `P - s`: it only adds drift and memory).

#include "support/property.hpp"

#include <algorithm>
#include <random>
#include <vector>

namespace paci_test {

/// `random_caps(rng, P, spread)` with each `cap[s]` lowered to at most `P - s`; still >= 1,
/// non-increasing and 1 at the last stage (the minimum of two non-increasing sequences).
inline std::vector<int> random_valid_caps(std::mt19937& rng, int P, unsigned spread) {
    std::vector<int> c = random_caps(rng, P, spread);
    for (int s = 0; s < P; ++s) c[at(s)] = std::min(c[at(s)], P - s);
    return c;
}

} // namespace paci_test
