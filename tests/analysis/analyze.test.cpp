// Property tests for paci::analyze and, through it, lower + validate: every built-in policy's schedule,
// lowered eagerly or rendezvous-safely, is structurally valid and runs to completion; rendezvous-safe
// lowerings also under blocking sends; and analyze()'s drift and memory reports match closed forms.

#include <paci/analysis/analyze.hpp>

#include <paci/analysis/validate.hpp>
#include <paci/core/lower.hpp>
#include <paci/policy/gpipe.hpp>
#include <paci/policy/interleaved.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/pipedream.hpp>
#include <paci/policy/zero_bubble.hpp>

#include "support/catch.hpp"
#include "analysis/caps.hpp"
#include "support/property.hpp"
#include "support/synchronous.hpp"

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace {

using paci_test::at;
using paci_test::mismatches;
using paci_test::random_valid_caps;
using paci_test::steady_steps;

/// The compute schedule, and both of its lowerings, validate; the rendezvous-safe lowering is also
/// deadlock-free under rendezvous sends. Every compute action survives lowering (same count).
template <class Policy>
void check_valid(const Policy& p, mismatches& mm, int& checked) {
    const std::string what = paci::detail::print(p);
    const auto sch = p.generate();
    const auto plain = paci::validate(sch);
    if (!plain.valid()) mm.add(what, " (compute only): ", plain.first_error());
    for (const auto mode : {paci::lowering::eager, paci::lowering::rendezvous_safe}) {
        const auto lowered = paci::lower(sch, mode);
        const auto v = paci::validate(lowered);
        ++checked;
        if (!v.valid()) mm.add(what, " lowered ", mode, ": ", v.first_error());
        if (mode == paci::lowering::rendezvous_safe && !v.deadlock_free(paci::send_semantics::rendezvous))
            mm.add(what, " lowered ", mode, ": not deadlock-free under rendezvous sends: ", v.rendezvous.message);
        if (lowered.compute_size() != sch.compute_size())
            mm.add(what, " lowered ", mode, ": ", lowered.compute_size(), " compute actions, expected ",
                   sch.compute_size());
        // A single-rank pipeline has no cross-rank edge; otherwise every rank talks.
        if (lowered.lowered() != (sch.shape.ranks > 1))
            mm.add(what, " lowered ", mode, ": lowered() is ", lowered.lowered());
    }
}

} // namespace

TEST_CASE("analyze: every built-in policy validates under eager and rendezvous-safe lowering",
          "[property][analyze]") {
    using paci::backward_flavour;
    mismatches mm;
    int checked = 0;
    std::mt19937 rng(31U);
    for (const int P : {1, 2, 3, 4, 5, 8})
        for (const int M : {1, 2, P, 2 * P + 1})
            for (const int N : {1, 3}) {
                paci_test::for_each_synchronous_policy(P, M, N, [&](const auto& p) { check_valid(p, mm, checked); });
                check_valid(paci::paci_policy<>{.stages = P, .microbatches = M, .steps = N}, mm, checked);
                check_valid(paci::paci_policy<backward_flavour::recompute>{.stages = P, .microbatches = M, .steps = N}, mm,
                            checked);
                // User caps: >= 1, non-increasing, last = 1.
                const std::vector<int> caps = random_valid_caps(rng, P, 3U);
                check_valid(paci::paci_policy<>{.stages = P, .microbatches = M, .steps = N, .cap = caps}, mm, checked);
                check_valid(paci::pipedream{.stages = P, .microbatches = std::max(1, M / P), .steps = N * P}, mm, checked);
                if (M >= P - 1)
                    check_valid(paci::pipedream_2bw{.stages = P, .microbatches = M, .steps = N}, mm, checked);
            }
    check_valid(paci::paci_policy<>{.stages = 4, .microbatches = 2, .steps = 5, .cap = {3, 3, 2, 1}}, mm, checked);
    for (int R = 1; R <= 4; ++R)
        for (int V = 1; V <= 3; ++V)
            for (const int k : {1, 2, 3})
                for (const int N : {1, 2})
                    check_valid(paci::interleaved_one_f_one_b{.ranks = R, .chunks = V, .microbatches = k * R, .steps = N},
                                mm, checked);
    CAPTURE(checked);
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

TEST_CASE("analyze: PACI's one-call report carries the closed-form drift, bound and memory",
          "[property][analyze]") {
    mismatches mm;
    for (int P = 2; P <= 8; ++P)
        for (const int a : {1, 2, 3, P - 1, P, 2 * P}) {
            if (a < 1) continue;
            const int N = steady_steps(P, a);
            for (const auto mode : {paci::lowering::eager, paci::lowering::rendezvous_safe}) {
                const paci::paci_policy<> p{.stages = P, .microbatches = a, .steps = N};
                const auto an = paci::analyze(p, mode);
                const std::string what = an.policy + " " + std::string(paci::to_string(mode));
                if (!an.validation.valid()) mm.add(what, ": ", an.validation.first_error());
                if (!an.drift.within_bounds() || !an.drift.drift_attained())
                    mm.add(what, ": drift report not within bounds or not attained");
                if (an.drift.stages.size() != at(P) || an.memory.peak_stored.size() != at(P)) {
                    mm.add(what, ": report sizes");
                    continue;
                }
                for (int s = 0; s < P; ++s) {
                    const int bound = (P - 1 - s + a - 1) / a; // ceil((P-1-s)/a)
                    const auto& line = an.drift.stages[at(s)];
                    if (line.max_drift != bound || line.drift_bound != bound || line.max_staleness != bound)
                        mm.add(what, " stage ", s, ": drift ", line.max_drift, " bound ", line.drift_bound,
                               " staleness ", line.max_staleness, ", expected ", bound);
                    if (an.memory.peak_stored[at(s)] != std::min(a * N, P - s) ||
                        an.memory.peak_activations[at(s)] != std::min(a * N, P - s))
                        mm.add(what, " stage ", s, ": stored ", an.memory.peak_stored[at(s)], ", expected ",
                               std::min(a * N, P - s));
                }
                if (an.drift.max_drift() != (P - 1 + a - 1) / a)
                    mm.add(what, ": report max drift ", an.drift.max_drift());
            }
        }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

TEST_CASE("analyze: synchronous policies report drift 0 and their closed-form peak memory",
          "[property][analyze]") {
    mismatches mm;
    for (int P = 1; P <= 6; ++P)
        for (const int M : {1, P, 2 * P + 1}) {
            const auto f = paci::analyze(paci::one_f_one_b<>{.stages = P, .microbatches = M, .steps = 2});
            const auto g = paci::analyze(paci::gpipe<>{.stages = P, .microbatches = M, .steps = 2});
            const auto h1 = paci::analyze(paci::zb_h1{.stages = P, .microbatches = M, .steps = 2});
            const auto h2 = paci::analyze(paci::zb_h2{.stages = P, .microbatches = M, .steps = 2});
            for (const auto* an : {&f, &g, &h1, &h2}) {
                if (!an->validation.valid()) mm.add(an->policy, ": ", an->validation.first_error());
                if (!an->drift.within_bounds() || an->drift.max_drift() != 0 || an->drift.max_vertical_spread != 0)
                    mm.add(an->policy, ": drift ", an->drift.max_drift(), " spread ", an->drift.max_vertical_spread);
            }
            for (int s = 0; s < P; ++s) {
                if (f.memory.peak_stored[at(s)] != std::min(M, P - s))
                    mm.add(f.policy, " stage ", s, ": stored ", f.memory.peak_stored[at(s)]);
                if (g.memory.peak_stored[at(s)] != M) mm.add(g.policy, " stage ", s, ": stored ", g.memory.peak_stored[at(s)]);
                if (h1.memory.peak_stored[at(s)] != std::min(M, P))
                    mm.add(h1.policy, " stage ", s, ": stored ", h1.memory.peak_stored[at(s)]);
                if (h2.memory.peak_stored[at(s)] != std::min(M, 2 * P - 1))
                    mm.add(h2.policy, " stage ", s, ": stored ", h2.memory.peak_stored[at(s)]);
            }
        }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}
