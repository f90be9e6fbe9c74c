#pragma once
/// \file
/// Test helpers for property tests that sweep policies over grids of parameters: a mismatch
/// accumulator (a test REQUIREs its count is 0 and prints the first few), stage indices, and the
/// per-stage in-flight caps and window lengths of the 1F1B machine.

#include <cstddef>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace paci_test {

/// Collects mismatches; a test REQUIREs the count is 0 and prints the first few.
struct mismatches {
    std::size_t count = 0;
    std::vector<std::string> first;

    template <class... T>
    void add(const T&... parts) {
        ++count;
        if (first.size() < 6) {
            std::ostringstream o;
            (o << ... << parts);
            first.push_back(o.str());
        }
    }
    [[nodiscard]] std::string summary() const {
        std::string s = std::to_string(count) + " mismatches";
        for (const auto& f : first) s += "\n  " + f;
        return s;
    }
};

/// A stage (or rank) number as an index into a per-stage vector.
inline std::size_t at(int s) { return static_cast<std::size_t>(s); }

/// Steps so that the window holds at least 3 * cap0 + 2a micro-batches (fill, steady state, drain).
inline int steady_steps(int cap0, int a) { return (3 * cap0 + 2 * a + a - 1) / a; }

/// The default caps of a P-stage 1F1B machine: P - s at stage s.
inline std::vector<int> default_caps(int P) {
    std::vector<int> c;
    for (int s = 0; s < P; ++s) c.push_back(P - s);
    return c;
}

/// Random valid caps (>= 1, non-increasing, last = 1), each one above the next by 0 to `spread` - 1,
/// from a fixed-seed generator. Uses the raw mt19937 output (standardized), not a distribution
/// (implementation-defined), and draws once per stage from P - 2 down to 0.
inline std::vector<int> random_caps(std::mt19937& rng, int P, unsigned spread) {
    std::vector<int> c(at(P), 1);
    for (int s = P - 2; s >= 0; --s) c[at(s)] = c[at(s) + 1] + static_cast<int>(rng() % spread);
    return c;
}

} // namespace paci_test
