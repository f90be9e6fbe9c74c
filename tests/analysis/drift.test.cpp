// Property tests for paci::check_drift and the drift / staleness / resident-version maxima of a
// replay. Expected values are closed forms from PACI.md (the bound and its table) and hand
// derivations from each policy's documented construction; a policy's own drift_bound() is the code's
// claim and is only ever compared with the closed form in separate assertions.

#include <paci/analysis/drift.hpp>
#include <paci/analysis/memory.hpp>

#include <paci/analysis/replay.hpp>
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

/// ceil(n / d) for n >= 0, d >= 1; 0 for n <= 0.
int ceil_over(int n, int d) { return n <= 0 ? 0 : (n + d - 1) / d; }

/// PACI.md: drift_s <= ceil((L_s - 1) / a), attained on long runs; with the default cap L_s = P - s.
int paci_bound(int cap, int a) { return ceil_over(cap - 1, a); }

using paci_test::at;
using paci_test::default_caps;
using paci_test::mismatches;
using paci_test::random_valid_caps;
using paci_test::steady_steps;

/// Checks a PACI replay's per-stage maxima against the closed form for `caps`, the code's claimed
/// bounds against the same closed form, and the report of check_drift against the policy.
template <class Policy>
void check_paci(const Policy& p, const std::vector<int>& caps, int a, mismatches& mm) {
    const std::string what = paci::detail::print(p);
    const auto r = paci::replay(p.generate(), p.controller());
    const int P = static_cast<int>(caps.size());
    for (int s = 0; s < P; ++s) {
        const int bound = paci_bound(caps[at(s)], a);
        const auto& st = r.per_stage[at(s)];
        if (st.max_drift != bound) mm.add(what, " stage ", s, ": max drift ", st.max_drift, ", expected ", bound);
        if (st.max_staleness != bound)
            mm.add(what, " stage ", s, ": max staleness ", st.max_staleness, ", expected ", bound);
        if (st.peak_versions != 1) mm.add(what, " stage ", s, ": resident versions ", st.peak_versions, ", expected 1");
        // Staleness equals drift record by record (the gradient is applied to the version its
        // backward read, since the update follows the backward at the same stage).
        for (int m = 0; m < r.microbatches; ++m)
            if (r.at(s, m).staleness() != r.at(s, m).drift()) {
                mm.add(what, " stage ", s, " micro-batch ", m, ": staleness ", r.at(s, m).staleness(), " != drift ",
                       r.at(s, m).drift());
                break;
            }
        // The code's claim, compared with the closed form (not used as an expectation elsewhere).
        if (p.drift_bound(s) != bound) mm.add(what, " stage ", s, ": drift_bound() ", p.drift_bound(s), " != ", bound);
        if (p.staleness_bound(s) != bound)
            mm.add(what, " stage ", s, ": staleness_bound() ", p.staleness_bound(s), " != ", bound);
        if (p.versions_bound(s) != 1) mm.add(what, " stage ", s, ": versions_bound() ", p.versions_bound(s), " != 1");
    }
    // Vertical spread: the forward of m reads floor(max(0, m - L_s + 1)/a), so the spread over stages is
    // floor(m/a) - floor(max(0, m - L_0 + 1)/a), whose maximum on a long run is ceil((L_0 - 1)/a).
    const int spread = paci_bound(caps.front(), a);
    if (r.max_vertical_spread != spread)
        mm.add(what, ": max vertical spread ", r.max_vertical_spread, ", expected ", spread);
    const auto d = paci::check_drift(r, p);
    if (!d.within_bounds()) mm.add(what, ": check_drift reports a violation");
    if (!d.drift_attained()) mm.add(what, ": check_drift says the bound is not attained");
    if (d.max_vertical_spread != spread)
        mm.add(what, ": report's vertical spread ", d.max_vertical_spread, ", expected ", spread);
    if (d.stages.size() != caps.size()) mm.add(what, ": report has ", d.stages.size(), " stage lines");
    else
        for (int s = 0; s < P; ++s)
            if (d.stages[at(s)].max_drift != paci_bound(caps[at(s)], a) ||
                d.stages[at(s)].max_staleness != paci_bound(caps[at(s)], a))
                mm.add(what, " stage ", s, ": report line drift ", d.stages[at(s)].max_drift, " staleness ",
                       d.stages[at(s)].max_staleness, ", expected ", paci_bound(caps[at(s)], a));
}

} // namespace

TEST_CASE("drift: PACI's observed maximum drift at stage s is exactly ceil((P-1-s)/a), P 2..16, a 1..17",
          "[property][drift]") {
    mismatches mm;
    for (int P = 2; P <= 16; ++P)
        for (int a = 1; a <= 17; ++a) {
            const int N = steady_steps(P, a);
            check_paci(paci::paci_policy<>{.stages = P, .microbatches = a, .steps = N}, default_caps(P), a, mm);
        }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

TEST_CASE("drift: PACI's recompute flavour has the same drift, P 2..16, a 1..17", "[property][drift]") {
    mismatches mm;
    for (int P = 2; P <= 16; ++P)
        for (int a = 1; a <= 17; ++a) {
            const int N = steady_steps(P, a);
            check_paci(paci::paci_policy<paci::backward_flavour::recompute>{.stages = P, .microbatches = a, .steps = N},
                       default_caps(P), a, mm);
        }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

TEST_CASE("drift: PACI with user caps L_s has maximum drift exactly ceil((L_s-1)/a)", "[property][drift]") {
    mismatches mm;
    std::mt19937 rng(1234U);
    std::vector<std::vector<int>> cap_sets{{3, 3, 2, 1}, {1, 1, 1, 1}, {5, 3, 3, 2, 1}, {4, 2, 2, 1}, {3, 2, 1}, {9, 8, 7, 6, 5, 4, 3, 2, 1}};
    for (int P = 2; P <= 16; ++P)
        for (int k = 0; k < 3; ++k) cap_sets.push_back(random_valid_caps(rng, P, 4U));
    for (const auto& caps : cap_sets)
        for (int a = 1; a <= 17; ++a) {
            const int P = static_cast<int>(caps.size());
            const int N = steady_steps(caps.front(), a);
            check_paci(paci::paci_policy<>{.stages = P, .microbatches = a, .steps = N, .cap = caps}, caps, a, mm);
            if (a % 4 == 1)
                check_paci(
                    paci::paci_policy<paci::backward_flavour::recompute>{.stages = P, .microbatches = a, .steps = N, .cap = caps},
                    caps, a, mm);
        }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

TEST_CASE("drift: PACI.md's table, row by row", "[property][drift]") {
    struct row {
        int P;
        int a;
        std::vector<int> bound;
    };
    const auto r = GENERATE(values<row>({{4, 1, {3, 2, 1, 0}},
                                         {4, 2, {2, 1, 1, 0}},
                                         {8, 4, {2, 2, 2, 1, 1, 1, 1, 0}},
                                         {8, 8, {1, 1, 1, 1, 1, 1, 1, 0}}}));
    CAPTURE(r.P, r.a);
    const paci::paci_policy<> p{.stages = r.P, .microbatches = r.a, .steps = steady_steps(r.P, r.a)};
    const auto rep = paci::replay(p.generate(), p.controller());
    std::vector<int> drift, staleness, claimed;
    for (int s = 0; s < r.P; ++s) {
        drift.push_back(rep.per_stage[at(s)].max_drift);
        staleness.push_back(rep.per_stage[at(s)].max_staleness);
        claimed.push_back(p.drift_bound(s));
    }
    CHECK(drift == r.bound);
    CHECK(staleness == r.bound);
    CHECK(claimed == r.bound);
}

TEST_CASE("drift: with a >= P-1 PACI crosses exactly one update at every stage but the last",
          "[property][drift]") {
    mismatches mm;
    for (int P = 2; P <= 12; ++P)
        for (const int a : {P - 1, P, P + 3, 3 * P}) {
            const paci::paci_policy<> p{.stages = P, .microbatches = a, .steps = steady_steps(P, a)};
            const auto r = paci::replay(p.generate(), p.controller());
            for (int s = 0; s < P; ++s) {
                const int expected = s == P - 1 ? 0 : 1;
                if (r.per_stage[at(s)].max_drift != expected)
                    mm.add(paci::detail::print(p), " stage ", s, ": max drift ", r.per_stage[at(s)].max_drift);
            }
        }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

namespace {

/// Synchronous schedules: drift, staleness and vertical spread 0, one resident version, and
/// check_drift within bounds.
template <class Policy>
void check_synchronous(const Policy& p, mismatches& mm) {
    const std::string what = paci::detail::print(p);
    const auto r = paci::replay(p.generate(), p.controller());
    for (int s = 0; s < r.stages; ++s) {
        const auto& st = r.per_stage[at(s)];
        if (st.max_drift != 0 || st.max_staleness != 0 || st.peak_versions != 1)
            mm.add(what, " stage ", s, ": drift ", st.max_drift, " staleness ", st.max_staleness, " versions ",
                   st.peak_versions, ", expected 0 0 1");
        if (p.drift_bound(s) != 0 || p.staleness_bound(s) != 0 || p.versions_bound(s) != 1)
            mm.add(what, " stage ", s, ": claimed bounds ", p.drift_bound(s), " ", p.staleness_bound(s), " ",
                   p.versions_bound(s), ", expected 0 0 1");
        // Every gradient of the window is applied (each group ends with its update), so staleness is
        // defined everywhere: a missing `applied` would hide a staleness of 0 behind -1.
        for (int m = 0; m < r.microbatches; ++m)
            if (r.at(s, m).staleness() != 0 || r.at(s, m).drift() != 0) {
                mm.add(what, " stage ", s, " micro-batch ", m, ": drift ", r.at(s, m).drift(), " staleness ",
                       r.at(s, m).staleness());
                break;
            }
    }
    if (r.max_vertical_spread != 0) mm.add(what, ": vertical spread ", r.max_vertical_spread);
    const auto d = paci::check_drift(r, p);
    if (!d.within_bounds()) mm.add(what, ": check_drift reports a violation");
    if (d.max_drift() != 0) mm.add(what, ": report max drift ", d.max_drift());
}

} // namespace

TEST_CASE("drift: 1F1B-flush, GPipe, interleaved 1F1B, ZB-H1 and ZB-H2 have drift and staleness 0",
          "[property][drift]") {
    mismatches mm;
    for (int P = 1; P <= 10; ++P)
        for (const int M : {1, 2, P, P + 1, 2 * P + 1})
            for (const int N : {1, 3})
                paci_test::for_each_synchronous_policy(P, M, N, [&](const auto& p) { check_synchronous(p, mm); });
    for (int R = 1; R <= 5; ++R)
        for (int V = 1; V <= 4; ++V)
            for (const int k : {1, 2, 3})
                for (const int N : {1, 2})
                    check_synchronous(
                        paci::interleaved_one_f_one_b{.ranks = R, .chunks = V, .microbatches = k * R, .steps = N}, mm);
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

TEST_CASE("drift: PipeDream (update per micro-batch) has drift 0, staleness P-1-s and P-s resident versions",
          "[property][drift]") {
    // a = 1, cap L = P - s: the forward of m reads max(0, m - L + 1) and stashes it for the backward
    // (drift 0); the update after m's backward is applied to version m, so staleness is min(m, L - 1),
    // maximum L - 1. Right after F(b + L) the in-flight micro-batches b+1 .. b+L stashed the L distinct
    // versions b-L+2 .. b+1 (the last is the current one), so L = P - s versions are resident.
    mismatches mm;
    for (int P = 1; P <= 16; ++P) {
        const paci::pipedream p{.stages = P, .microbatches = 1, .steps = 3 * P + 2};
        const std::string what = paci::detail::print(p);
        const auto r = paci::replay(p.generate(), p.controller());
        for (int s = 0; s < P; ++s) {
            const auto& st = r.per_stage[at(s)];
            if (st.max_drift != 0 || st.max_staleness != P - 1 - s || st.peak_versions != P - s)
                mm.add(what, " stage ", s, ": drift ", st.max_drift, " staleness ", st.max_staleness, " versions ",
                       st.peak_versions, ", expected 0 ", P - 1 - s, " ", P - s);
            for (int m = 0; m < r.microbatches; ++m)
                if (r.at(s, m).drift() != 0 || r.at(s, m).staleness() != std::min(m, P - 1 - s)) {
                    mm.add(what, " stage ", s, " micro-batch ", m, ": drift ", r.at(s, m).drift(), " staleness ",
                           r.at(s, m).staleness(), ", expected 0 ", std::min(m, P - 1 - s));
                    break;
                }
            if (p.drift_bound(s) != 0 || p.staleness_bound(s) != P - 1 - s || p.versions_bound(s) != P - s)
                mm.add(what, " stage ", s, ": claimed bounds ", p.drift_bound(s), " ", p.staleness_bound(s), " ",
                       p.versions_bound(s));
        }
        if (!paci::check_drift(r, p).within_bounds()) mm.add(what, ": check_drift reports a violation");
    }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

TEST_CASE("drift: PipeDream with a micro-batches per update: staleness ceil((P-1-s)/a), versions that plus one",
          "[property][drift]") {
    // v_F(m) = floor(max(0, m - L + 1)/a), applied to floor(m/a): staleness as PACI's drift. Right after
    // F(b + L) the stashed versions are floor(x/a) for x in b-L+2 .. b+1 (L consecutive integers, the
    // last one the current version): at most ceil((L-1)/a) + 1 distinct values, reached when
    // b - L + 2 = -1 (mod a).
    mismatches mm;
    for (int P = 2; P <= 12; ++P)
        for (int a = 1; a <= 9; ++a) {
            const paci::pipedream p{.stages = P, .microbatches = a, .steps = steady_steps(P, a) + 1};
            const auto r = paci::replay(p.generate(), p.controller());
            for (int s = 0; s < P; ++s) {
                const int k = paci_bound(P - s, a);
                const auto& st = r.per_stage[at(s)];
                if (st.max_drift != 0 || st.max_staleness != k || st.peak_versions != k + 1)
                    mm.add(paci::detail::print(p), " stage ", s, ": drift ", st.max_drift, " staleness ",
                           st.max_staleness, " versions ", st.peak_versions, ", expected 0 ", k, " ", k + 1);
            }
        }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

TEST_CASE("drift: PipeDream-2BW (a >= P-1) keeps at most 2 versions, staleness 1 (0 at the last stage), drift 0",
          "[property][drift]") {
    // With a >= L - 1 the L consecutive integers b-L+2 .. b+1 span at most two multiples-of-a buckets,
    // so at most 2 versions are resident; exactly 2 at s < P-1 right after an update while an older
    // micro-batch is in flight, 1 at the last stage (cap 1: nothing in flight across an update).
    mismatches mm;
    for (int P = 2; P <= 16; ++P)
        for (const int a : {P - 1, P, P + 2, 2 * P}) {
            const paci::pipedream_2bw p{.stages = P, .microbatches = a, .steps = steady_steps(P, a)};
            const std::string what = paci::detail::print(p);
            const auto r = paci::replay(p.generate(), p.controller());
            for (int s = 0; s < P; ++s) {
                const auto& st = r.per_stage[at(s)];
                const int stale = s < P - 1 ? 1 : 0;
                const int versions = s < P - 1 ? 2 : 1;
                if (st.max_drift != 0 || st.max_staleness != stale || st.peak_versions != versions)
                    mm.add(what, " stage ", s, ": drift ", st.max_drift, " staleness ", st.max_staleness, " versions ",
                           st.peak_versions, ", expected 0 ", stale, " ", versions);
                if (p.drift_bound(s) != 0 || p.staleness_bound(s) != stale || p.versions_bound(s) != versions)
                    mm.add(what, " stage ", s, ": claimed bounds ", p.drift_bound(s), " ", p.staleness_bound(s), " ",
                           p.versions_bound(s));
            }
            if (!paci::check_drift(r, p).within_bounds()) mm.add(what, ": check_drift reports a violation");
        }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

TEST_CASE("drift: PACI's vertical spread is 0 at P = 1 and ceil((P-1)/a) otherwise", "[property][drift]") {
    mismatches mm;
    for (int P = 1; P <= 16; ++P)
        for (int a = 1; a <= 17; ++a) {
            const paci::paci_policy<> p{.stages = P, .microbatches = a, .steps = steady_steps(P, a)};
            const auto r = paci::replay(p.generate(), p.controller());
            const int expected = ceil_over(P - 1, a);
            if (r.max_vertical_spread != expected)
                mm.add(paci::detail::print(p), ": max vertical spread ", r.max_vertical_spread, ", expected ",
                       expected);
        }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

namespace {

paci::version_bounds paci_closed_bounds(const std::vector<int>& caps, int a) {
    paci::version_bounds b;
    for (const int L : caps) {
        b.drift.push_back(paci_bound(L, a));
        b.staleness.push_back(paci_bound(L, a));
        b.versions.push_back(1);
    }
    return b;
}

} // namespace

TEST_CASE("drift: check_drift names the first micro-batch over a bound lowered by one at one stage",
          "[property][drift]") {
    // At stage s with c = ceil((L-1)/a) >= 1, the first micro-batch whose drift reaches c is m = c*a:
    // any m < c*a has v_B = floor(m/a) <= c-1, and at m = c*a, v_B = c and v_F = floor(max(0, c*a-L+1)/a)
    // = 0 because 0 <= c*a - (L-1) < a. Its gradient is applied to version c.
    mismatches mm;
    int cases = 0;
    for (int P = 2; P <= 12; ++P)
        for (int a = 1; a <= 13; ++a) {
            const auto caps = default_caps(P);
            const paci::paci_policy<> p{.stages = P, .microbatches = a, .steps = steady_steps(P, a)};
            const auto r = paci::replay(p.generate(), p.controller());
            for (int s0 = 0; s0 < P - 1; ++s0) {
                const int c = paci_bound(caps[at(s0)], a);
                for (const auto q : {paci::bounded_quantity::drift, paci::bounded_quantity::staleness}) {
                    auto b = paci_closed_bounds(caps, a);
                    (q == paci::bounded_quantity::drift ? b.drift : b.staleness)[at(s0)] = c - 1;
                    const auto d = paci::check_drift(r, b);
                    ++cases;
                    const std::string what = paci::detail::print(p) + " lowered " +
                                             std::string(paci::to_string(q)) + " bound at stage " + std::to_string(s0);
                    if (d.within_bounds()) {
                        mm.add(what, ": no violation reported");
                        continue;
                    }
                    const auto& v = *d.first_violation;
                    const paci::version_record expected_rec{0, -1, c, -1, c};
                    if (v.quantity != q || v.stage != s0 || v.microbatch != c * a || v.observed != c ||
                        v.bound != c - 1 || !(v.versions == expected_rec))
                        mm.add(what, ": got ", v, "; expected stage ", s0, ", micro-batch ", c * a, ", observed ", c,
                               ", bound ", c - 1, ", versions F 0 B ", c, " applied ", c);
                    if (d.stages.size() != caps.size() || d.stages[at(s0)].within() ||
                        (q == paci::bounded_quantity::drift ? d.stages[at(s0)].drift_bound
                                                            : d.stages[at(s0)].staleness_bound) != c - 1)
                        mm.add(what, ": stage line does not show the lowered bound");
                }
            }
        }
    CAPTURE(cases);
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

TEST_CASE("drift: the first violation is stage-major: the lowest offending stage wins", "[property][drift]") {
    const int P = 6, a = 2;
    const auto caps = default_caps(P);
    const paci::paci_policy<> p{.stages = P, .microbatches = a, .steps = steady_steps(P, a)};
    const auto r = paci::replay(p.generate(), p.controller());
    auto b = paci_closed_bounds(caps, a);
    // Stage 3: c = ceil(2/2) = 1, first at m = 2. Stage 1: c = ceil(4/2) = 2, first at m = 4.
    b.drift[3] = 0;
    b.drift[1] = 1;
    const auto d = paci::check_drift(r, b);
    REQUIRE_FALSE(d.within_bounds());
    CHECK(d.first_violation->stage == 1);
    CHECK(d.first_violation->microbatch == 4);
    CHECK(d.first_violation->observed == 2);
    CHECK(d.first_violation->bound == 1);
    // The closed-form bounds themselves hold, and missing entries count as unbounded.
    CHECK(paci::check_drift(r, paci_closed_bounds(caps, a)).within_bounds());
    CHECK(paci::check_drift(r, paci::version_bounds{}).within_bounds());
}

TEST_CASE("drift: check_drift reports PipeDream's resident versions over a bound lowered by one",
          "[property][drift]") {
    mismatches mm;
    for (int P = 2; P <= 10; ++P) {
        const paci::pipedream p{.stages = P, .microbatches = 1, .steps = 3 * P + 2};
        const auto r = paci::replay(p.generate(), p.controller());
        for (int s0 = 0; s0 < P; ++s0) {
            paci::version_bounds b;
            for (int s = 0; s < P; ++s) {
                b.drift.push_back(0);
                b.staleness.push_back(P - 1 - s);
                b.versions.push_back(s == s0 ? P - s - 1 : P - s);
            }
            const auto d = paci::check_drift(r, b);
            if (d.within_bounds()) {
                mm.add("P ", P, " stage ", s0, ": no violation");
                continue;
            }
            const auto& v = *d.first_violation;
            if (v.quantity != paci::bounded_quantity::versions || v.stage != s0 || v.microbatch != -1 ||
                v.observed != P - s0 || v.bound != P - s0 - 1)
                mm.add("P ", P, " stage ", s0, ": got ", v);
        }
    }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

// Hostile input (issue 8): check_drift validates the policy and the replay/policy pair before it
// computes a bound; each case crashed or answered wrongly before.

TEST_CASE("drift: check_drift refuses an invalid policy, naming it, instead of dividing by zero",
          "[unit][drift][errors]") {
    const paci::paci_policy<> good{.stages = 4, .microbatches = 2, .steps = 2};
    const paci::replay_result r = paci::replay(good.generate(), good.controller());
    // microbatches 0 was a division by zero in drift_bound (SIGFPE).
    REQUIRE_THROWS_WITH(paci::check_drift(r, paci::paci_policy<>{.stages = 4, .microbatches = 0}),
                        "paci::check_drift: policy (paci<perf>{.stages = 4, .microbatches = 0, .steps = 1}) must be "
                        "valid: paci::paci: microbatches (0) must be >= 1");
    // A cap vector shorter than the stages was read past its end (cap_of).
    REQUIRE_THROWS_WITH(paci::check_drift(r, paci::paci_policy<>{.stages = 4, .microbatches = 2, .cap = {2, 1}}),
                        "paci::check_drift: policy (paci<perf>{.stages = 4, .microbatches = 2, .steps = 1, .cap = {2, "
                        "1}}) must be valid: paci::paci: cap size (2) must equal stages (4)");
    REQUIRE_THROWS_AS(paci::version_bounds::of(paci::paci_policy<>{.stages = 4, .microbatches = 2, .cap = {2, 1}}),
                      paci::config_error);
}

TEST_CASE("drift: check_drift refuses a replay of another shape than the policy's", "[unit][drift][errors]") {
    const paci::paci_policy<> two{.stages = 2, .microbatches = 1, .steps = 4};
    const paci::replay_result r = paci::replay(two.generate(), two.controller());
    // The 8-stage bounds were applied to the 2 stages replayed, and the report said "within bounds".
    REQUIRE_THROWS_WITH(paci::check_drift(r, paci::paci_policy<>{.stages = 8, .microbatches = 1, .steps = 4}),
                        "paci::check_drift: replay stages (2) must equal the policy's stages (8) of paci<perf>{.stages = "
                        "8, .microbatches = 1, .steps = 4}");
    // The same through explicit bounds: a bound vector of another length is not "missing entries".
    REQUIRE_THROWS_WITH(paci::check_drift(r, paci::version_bounds::of(paci::paci_policy<>{.stages = 8, .microbatches = 1})),
                        "paci::check_drift: drift bounds (8) must equal the replay's stages (2) or be empty (unbounded)");
    // Its own policy and no bounds at all still work.
    CHECK(paci::check_drift(r, two).within_bounds());
    CHECK(paci::check_drift(r, paci::version_bounds{}).within_bounds());
}

TEST_CASE("drift: check_drift and memory_of refuse a replay whose tables disagree with its counts",
          "[unit][drift][errors]") {
    paci::replay_result r;
    r.stages = 2;
    r.microbatches = 3;
    r.per_stage.assign(2, paci::stage_replay{});
    r.records.assign(5, paci::version_record{}); // 6 needed
    REQUIRE_THROWS_WITH(paci::check_drift(r, paci::version_bounds{}),
                        "paci::check_drift: replay records (5) must equal stages x microbatches (2 x 3)");
    r.records.assign(6, paci::version_record{});
    r.per_stage.assign(1, paci::stage_replay{});
    REQUIRE_THROWS_WITH(paci::check_drift(r, paci::version_bounds{}),
                        "paci::check_drift: replay per_stage size (1) must equal stages (2)");
    REQUIRE_THROWS_WITH(paci::memory_of(r), "paci::memory_of: replay per_stage size (1) must equal stages (2)");
    r.stages = -1;
    REQUIRE_THROWS_WITH(paci::check_drift(r, paci::version_bounds{}), "paci::check_drift: replay stages (-1) must be >= 0");
}

TEST_CASE("drift: a cap above P - s is refused with the reason", "[unit][drift][errors]") {
    // The case: 9 on 8 stages. Caps at P - s (the default, written out) are accepted.
    const paci::paci_policy<> over{.stages = 8, .microbatches = 1, .steps = 4, .cap = {9, 9, 9, 9, 9, 9, 9, 1}};
    REQUIRE_THROWS_WITH(over.validate(),
                        "paci::paci: cap[0] (9) must be <= stages - 0 (8): a cap above P - s only adds drift and memory");
    REQUIRE_THROWS_WITH((paci::paci_policy<>{.stages = 4, .microbatches = 1, .cap = {4, 3, 3, 1}}.validate()),
                        "paci::paci: cap[2] (3) must be <= stages - 2 (2): a cap above P - s only adds drift and memory");
    CHECK_NOTHROW(paci::paci_policy<>{.stages = 8, .microbatches = 1, .cap = {8, 7, 6, 5, 4, 3, 2, 1}}.validate());
    const paci::paci_policy<> fine{.stages = 8, .microbatches = 1, .steps = 4};
    REQUIRE_THROWS_AS(paci::check_drift(paci::replay(fine.generate(), fine.controller()), over), paci::config_error);
}
