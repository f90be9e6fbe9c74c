// The 1F1B machine run greedily (PACI's reference implementation: any waiting gradient first)
// against the static order `generate()` emits (a forward whenever the cap allows, otherwise the
// oldest backward):
// - equal stage costs: the greedy machine runs exactly the static program, with PACI's closed-form
//   makespan (M + P - 1)(F + B) and steady throughput 1 / (F + B) (1F1B-flush: N (M + P - 1)(F + B));
// - the recorded order is a valid schedule and, timed by paci::simulate, every action in it follows
//   the greedy rule (checked here from that timeline alone);
// - under per-stage imbalance and seeded jitter both orders keep PACI's drift bound ceil((L_s - 1)/a)
//   by paci's own replay, the static order attains it, and the greedy order never drifts further.
// Which order is faster is measured in bench/sim/greedy.bench.cpp.

#include <paci/analysis/drift.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/sim/greedy.hpp>
#include <paci/sim/simulate.hpp>

#include "support/catch.hpp"
#include "support/property.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

using paci_test::at;

bool near(double x, double y, double rel = 1e-9) { return std::abs(x - y) <= rel * std::max(1.0, std::abs(y)); }

int ceil_div(int x, int y) { return (x + y - 1) / y; }

/// Per-stage cost patterns: F = k, B = 2k with a per-stage factor k.
enum class pattern { equal, slow_middle, increasing, random, free_odd };

const char* name(pattern p) {
    switch (p) {
    case pattern::equal: return "equal";
    case pattern::slow_middle: return "slow middle 1.5x";
    case pattern::increasing: return "increasing 1..2";
    case pattern::random: return "random 0.5..2";
    default: return "odd stages free";
    }
}

paci::cost_model costs(int P, pattern p, double jitter, std::uint64_t seed, double latency = 0) {
    paci::cost_model c;
    c.jitter = jitter;
    c.seed = seed;
    c.latency = latency;
    std::mt19937 rng(static_cast<std::mt19937::result_type>(seed));
    for (int s = 0; s < P; ++s) {
        double k = 1;
        if (p == pattern::slow_middle && s == P / 2) k = 1.5;
        if (p == pattern::increasing) k = 1 + static_cast<double>(s) / std::max(P - 1, 1);
        if (p == pattern::random) k = 0.5 + 1.5 * static_cast<double>(rng() % 1024) / 1023;
        if (p == pattern::free_odd && s % 2 == 1) k = 0; // simultaneous events: ties the greedy loop must see
        c.per_stage.push_back({.f = k, .b = 2 * k, .step = 0.1 * k});
    }
    return c;
}

/// Random valid caps below the default: 1 at the last stage, non-increasing, L_s <= P - s.
std::vector<int> lower_caps(std::mt19937& rng, int P) {
    std::vector<int> c(at(P), 1);
    for (int s = P - 2; s >= 0; --s) c[at(s)] = std::min(P - s, c[at(s) + 1] + static_cast<int>(rng() % 3));
    return c;
}

/// The greedy rule, checked against the recorded timeline of `g` with nothing from the simulator but
/// its output: FIFO forwards and backwards; a STEP right after every a-th backward and nowhere else;
/// at most `cap(s)` in flight; every action starts as soon as the stage is free and its input (or
/// gradient) has arrived; a forward only when the oldest stored micro-batch's gradient has not
/// arrived yet (backwards first); and a stage idles before a backward only when no forward could run.
template <class Policy>
void check_greedy_rule(const Policy& p, const paci::cost_model& c, const paci::greedy_simulation& g,
                       paci_test::mismatches& bad, const std::string& where) {
    const int P = p.stages;
    const int a = p.microbatches;
    const int T = a * p.steps;
    const double tr = c.transfer();
    const auto& order = g.order.ranks;
    const auto& times = g.timeline.times;
    // End of F and B of (stage, micro-batch), from the timeline.
    std::vector<double> f_end(at(P * T), -1), b_end(at(P * T), -1);
    for (int s = 0; s < P; ++s) {
        if (order[at(s)].size() != times[at(s)].size()) {
            bad.add(where, " stage ", s, ": ", order[at(s)].size(), " actions but ", times[at(s)].size(), " times");
            return;
        }
        for (std::size_t i = 0; i < order[at(s)].size(); ++i) {
            const paci::action x = order[at(s)][i];
            if (x.stage != s || (x.kind != paci::op::STEP && (x.microbatch < 0 || x.microbatch >= T))) {
                bad.add(where, " stage ", s, ": stray action ", x);
                return;
            }
            if (x.kind == paci::op::F) f_end[at(s * T + x.microbatch)] = times[at(s)][i].end;
            if (x.kind == paci::op::B) b_end[at(s * T + x.microbatch)] = times[at(s)][i].end;
        }
    }
    const auto input_at = [&](int s, int m) { return s == 0 ? 0.0 : f_end[at((s - 1) * T + m)] + tr; };
    const auto gradient_at = [&](int s, int m) {
        return s == P - 1 ? f_end[at(s * T + m)] : b_end[at((s + 1) * T + m)] + tr;
    };
    for (int s = 0; s < P; ++s) {
        int forwards = 0, backwards = 0, steps = 0;
        double free = 0;
        for (std::size_t i = 0; i < order[at(s)].size(); ++i) {
            const paci::action x = order[at(s)][i];
            const double start = times[at(s)][i].start;
            const bool step_due = backwards > 0 && backwards % a == 0 && steps < backwards / a;
            if (step_due != (x.kind == paci::op::STEP)) {
                bad.add(where, " stage ", s, " position ", i, ": ", x, step_due ? " where a STEP is due" : " out of place");
                return;
            }
            double ready = free;
            if (x.kind == paci::op::STEP) {
                if (x.microbatch != steps) bad.add(where, " stage ", s, ": ", x, " is update ", steps);
                ++steps;
            } else if (x.kind == paci::op::F) {
                if (x.microbatch != forwards) bad.add(where, " stage ", s, ": ", x, " after ", forwards, " forwards");
                if (forwards - backwards >= p.cap_of(s))
                    bad.add(where, " stage ", s, ": ", x, " with ", forwards - backwards, " in flight, cap ", p.cap_of(s));
                if (backwards < forwards && gradient_at(s, backwards) <= start)
                    bad.add(where, " stage ", s, ": ", x, " at ", start, " while the gradient of ", backwards,
                            " waited since ", gradient_at(s, backwards));
                ready = std::max(free, input_at(s, forwards));
                ++forwards;
            } else if (x.kind == paci::op::B) {
                if (x.microbatch != backwards) bad.add(where, " stage ", s, ": ", x, " after ", backwards, " backwards");
                ready = std::max(free, gradient_at(s, backwards));
                const bool could_forward = forwards < T && forwards - backwards < p.cap_of(s) &&
                                           (!Policy::controller_type::flushes || forwards < (backwards / a + 1) * a);
                if (start > free && could_forward && input_at(s, forwards) < start)
                    bad.add(where, " stage ", s, ": idle from ", free, " to ", x, " at ", start, " though the input of ",
                            forwards, " arrived at ", input_at(s, forwards));
                ++backwards;
            } else {
                bad.add(where, " stage ", s, ": unexpected ", x);
            }
            if (!near(start, ready))
                bad.add(where, " stage ", s, ": ", x, " starts at ", start, ", ready at ", ready);
            free = times[at(s)][i].end;
        }
        if (forwards != T || backwards != T || steps != p.steps)
            bad.add(where, " stage ", s, ": ", forwards, " F, ", backwards, " B, ", steps, " STEP (want ", T, ", ", T,
                    ", ", p.steps, ")");
    }
}

} // namespace

TEST_CASE("simulate_greedy: with equal stage costs the greedy machine runs the static program, at PACI's closed form",
          "[unit][sim]") {
    const double F = GENERATE(1.0, 1.5);
    const double B = GENERATE(2.0, 2.5);
    paci_test::mismatches bad;
    for (int P = 1; P <= 8; ++P)
        for (int a : {1, 2, 4, 8})
            for (int N : {1, 3, 6}) {
                paci::cost_model c;
                c.uniform = {.f = F, .b = B};
                const int M = N * a;
                const paci::paci_policy<> p{.stages = P, .microbatches = a, .steps = N};
                const auto g = paci::simulate_greedy(p, c);
                const auto s = paci::simulate(p.generate(), c);
                const auto where = paci::detail::concat("P=", P, " a=", a, " N=", N, " F=", F, " B=", B);
                if (g.order.ranks != p.generate().ranks) bad.add(where, ": greedy order differs from generate()");
                if (!near(g.timeline.makespan, (M + P - 1) * (F + B)))
                    bad.add(where, ": greedy makespan ", g.timeline.makespan, ", want ", (M + P - 1) * (F + B));
                if (!near(s.makespan, (M + P - 1) * (F + B)))
                    bad.add(where, ": static makespan ", s.makespan, ", want ", (M + P - 1) * (F + B));
                if (N >= 3 && !(near(g.timeline.throughput, 1 / (F + B)) && near(s.throughput, 1 / (F + B))))
                    bad.add(where, ": steady throughput greedy ", g.timeline.throughput, ", static ", s.throughput,
                            ", want ", 1 / (F + B));
                // The same machine with a flush: 1F1B-flush, N (M + P - 1)(F + B).
                const paci::one_f_one_b<> f{.stages = P, .microbatches = a, .steps = N};
                const auto gf = paci::simulate_greedy(f, c);
                if (gf.order.ranks != f.generate().ranks) bad.add(where, ": greedy 1F1B-flush order differs");
                if (!near(gf.timeline.makespan, N * (a + P - 1) * (F + B)))
                    bad.add(where, ": greedy 1F1B-flush makespan ", gf.timeline.makespan, ", want ",
                            N * (a + P - 1) * (F + B));
            }
    INFO(bad.summary());
    REQUIRE(bad.count == 0);
}

TEST_CASE("simulate_greedy: with equal stage costs and a per-hop latency both orders are the same, and so is their time",
          "[unit][sim]") {
    const double latency = GENERATE(0.25, 1.0);
    paci_test::mismatches bad;
    for (int P : {2, 4, 8})
        for (int a : {1, 2, 4, 8}) {
            paci::cost_model c;
            c.latency = latency;
            const paci::paci_policy<> p{.stages = P, .microbatches = a, .steps = 48 / a};
            const auto g = paci::simulate_greedy(p, c);
            const auto s = paci::simulate(p.generate(), c);
            const auto where = paci::detail::concat("P=", P, " a=", a, " latency ", latency);
            if (g.order.ranks != p.generate().ranks) bad.add(where, ": greedy order differs from generate()");
            if (!near(g.timeline.makespan, s.makespan) || !near(g.timeline.throughput, s.throughput))
                bad.add(where, ": greedy ", g.timeline.makespan, " / ", g.timeline.throughput, ", static ", s.makespan,
                        " / ", s.throughput);
            // The fill and the drain each cross P - 1 hops.
            if (!(g.timeline.makespan >= (48 + P - 1) * 3.0 + 2 * (P - 1) * latency - 1e-9))
                bad.add(where, ": makespan ", g.timeline.makespan, " below the latency-free fill and drain");
        }
    INFO(bad.summary());
    REQUIRE(bad.count == 0);
}

TEST_CASE("simulate_greedy: the recorded order is valid and, timed by simulate(), follows the greedy rule at every action",
          "[property][sim]") {
    paci_test::mismatches bad;
    std::mt19937 rng(20260601);
    for (int P : {1, 2, 4, 8})
        for (int a : {1, 2, 4, 8})
            for (pattern pat : {pattern::equal, pattern::slow_middle, pattern::increasing, pattern::random, pattern::free_odd})
                for (double jitter : {0.0, 0.1, 0.3})
                    for (double latency : {0.0, 0.25})
                        for (int flushes = 0; flushes < 2; ++flushes) {
                            const std::uint64_t seed = rng();
                            const paci::cost_model c = costs(P, pat, jitter, seed, latency);
                            const int N = std::max(3, 48 / a);
                            const auto where = paci::detail::concat("P=", P, " a=", a, " ", name(pat), " jitter ", jitter,
                                                                    " latency ", latency, " seed ", seed,
                                                                    flushes ? " 1F1B-flush" : " PACI");
                            const auto check = [&](const auto& policy) {
                                const auto g = paci::simulate_greedy(policy, c);
                                const auto v = paci::validate(g.order);
                                if (!v.valid()) bad.add(where, ": invalid order: ", v.first_error());
                                if (g.order.microbatches != a * N || g.order.steps != N || g.order.shape != policy.shape())
                                    bad.add(where, ": order header ", g.order.shape, ", ", g.order.microbatches, " / ",
                                            g.order.steps);
                                if (!g.timeline.completed) bad.add(where, ": the order does not run to the end");
                                else check_greedy_rule(policy, c, g, bad, where);
                            };
                            if (flushes) check(paci::one_f_one_b<>{.stages = P, .microbatches = a, .steps = N});
                            else check(paci::paci_policy<>{.stages = P, .microbatches = a, .steps = N});
                        }
    INFO(bad.summary());
    REQUIRE(bad.count == 0);
}

TEST_CASE("simulate_greedy: under imbalance and jitter both orders keep the drift bound ceil((L_s - 1)/a), "
          "the greedy one never further than the static one",
          "[property][sim]") {
    paci_test::mismatches bad;
    for (int P : {4, 8})
        for (int a : {1, 2, 4, 8})
            for (int custom_cap = 0; custom_cap < 2; ++custom_cap) {
                std::mt19937 cap_rng(static_cast<std::mt19937::result_type>(1000 * P + 10 * a));
                const std::vector<int> L = custom_cap ? lower_caps(cap_rng, P) : paci_test::default_caps(P);
                const int N = std::max(paci_test::steady_steps(L[0], a), 64 / a);
                const paci::paci_policy<> p{
                    .stages = P, .microbatches = a, .steps = N, .cap = custom_cap ? L : std::vector<int>{}};
                // The static order does not depend on the costs: its drift is checked once per policy.
                const paci::schedule fixed = p.generate();
                const auto fixed_drift = paci::check_drift(paci::replay(fixed), p);
                for (int s = 0; s < P; ++s) {
                    const int bound = ceil_div(L[at(s)] - 1, a);
                    if (p.drift_bound(s) != bound)
                        bad.add("P=", P, " a=", a, " stage ", s, ": drift_bound ", p.drift_bound(s), ", want ", bound);
                    if (fixed_drift.stages[at(s)].max_drift != bound)
                        bad.add("P=", P, " a=", a, " stage ", s, ": static order drifts ",
                                fixed_drift.stages[at(s)].max_drift, ", want the bound ", bound, " attained");
                }
                for (pattern pat : {pattern::slow_middle, pattern::increasing, pattern::random})
                    for (double jitter : {0.1, 0.3})
                        for (std::uint64_t seed : {1U, 2U, 3U}) {
                            const paci::cost_model c = costs(P, pat, jitter, seed);
                            const auto where = paci::detail::concat("P=", P, " a=", a, " caps ", custom_cap ? "random" : "P - s",
                                                                    " ", name(pat), " jitter ", jitter, " seed ", seed);
                            const auto g = paci::simulate_greedy(p, c);
                            if (!paci::validate(g.order).valid()) bad.add(where, ": invalid greedy order");
                            const auto r = paci::replay(g.order);
                            const auto d = paci::check_drift(r, p);
                            if (!d.within_bounds()) bad.add(where, ": greedy order ", *d.first_violation);
                            for (int s = 0; s < P; ++s) {
                                const int bound = ceil_div(L[at(s)] - 1, a);
                                const int drift = r.per_stage[at(s)].max_drift;
                                if (drift > bound || drift > fixed_drift.stages[at(s)].max_drift)
                                    bad.add(where, " stage ", s, ": greedy drift ", drift, ", bound ", bound,
                                            ", static order ", fixed_drift.stages[at(s)].max_drift);
                                if (r.per_stage[at(s)].peak_stored > L[at(s)])
                                    bad.add(where, " stage ", s, ": ", r.per_stage[at(s)].peak_stored,
                                            " stored, cap ", L[at(s)]);
                            }
                        }
            }
    INFO(bad.summary());
    REQUIRE(bad.count == 0);
}

TEST_CASE("simulate_greedy: a bad policy or cost model is a config_error naming the API", "[unit][sim]") {
    paci::cost_model two_stages;
    two_stages.per_stage = {{}, {}};
    REQUIRE_THROWS_AS(paci::simulate_greedy(paci::paci_policy<>{.stages = 4, .microbatches = 2, .steps = 2}, two_stages),
                      paci::config_error);
    REQUIRE_THROWS_WITH(paci::simulate_greedy(paci::paci_policy<>{.stages = 4, .microbatches = 0, .steps = 2},
                                              paci::cost_model{}),
                        Catch::Matchers::ContainsSubstring("paci::paci: microbatches (0)"));
    REQUIRE_THROWS_WITH(paci::simulate_greedy(paci::paci_policy<>{.stages = 2, .microbatches = 1, .cap = {1, 1}},
                                              paci::cost_model{.jitter = 1}),
                        Catch::Matchers::ContainsSubstring("paci::cost_model: jitter (1)"));
}
