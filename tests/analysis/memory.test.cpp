// Property tests for paci::memory_of: peak stored micro-batches, full activations and resident weight
// versions per stage and per rank. Expected values are closed forms derived by hand from each policy's
// documented construction (the derivation is written beside each test), never the library's output.

#include <paci/analysis/memory.hpp>

#include <paci/analysis/replay.hpp>
#include <paci/policy/gpipe.hpp>
#include <paci/policy/interleaved.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/pipedream.hpp>
#include <paci/policy/zero_bubble.hpp>

#include "support/catch.hpp"
#include "support/program_text.hpp"
#include "analysis/caps.hpp"
#include "support/property.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

using paci_test::at;
using paci_test::default_caps;
using paci_test::mismatches;
using paci_test::random_valid_caps;
using paci_test::steady_steps;

std::string show(const std::vector<int>& v) {
    std::ostringstream o;
    o << '{';
    for (std::size_t i = 0; i < v.size(); ++i) o << (i ? ", " : "") << v[i];
    o << '}';
    return o.str();
}

/// Per-stage expectations as functions of the stage; -1 means "not checked".
template <class Policy, class Stored, class Acts, class Versions>
void check_memory(const Policy& p, Stored stored, Acts acts, Versions versions, mismatches& mm) {
    const std::string what = paci::detail::print(p);
    const auto sch = p.generate();
    const auto r = paci::replay(sch, p.controller());
    const auto mem = paci::memory_of(r);
    const int P = sch.shape.stages;
    if (mem.peak_stored.size() != at(P) || mem.peak_activations.size() != at(P) || mem.peak_versions.size() != at(P)) {
        mm.add(what, ": report sizes ", mem.peak_stored.size(), " ", mem.peak_activations.size(), " ",
               mem.peak_versions.size());
        return;
    }
    for (int s = 0; s < P; ++s) {
        const int es = stored(s), ea = acts(s), ev = versions(s);
        if (mem.peak_stored[at(s)] != es || (ea >= 0 && mem.peak_activations[at(s)] != ea) ||
            mem.peak_versions[at(s)] != ev)
            mm.add(what, " stage ", s, ": stored/activations/versions ", mem.peak_stored[at(s)], "/",
                   mem.peak_activations[at(s)], "/", mem.peak_versions[at(s)], ", expected ", es, "/", ea, "/", ev);
    }
    // One stage per rank for these policies: a rank's peak is its stage's.
    if (sch.shape.ranks == P) {
        for (int s = 0; s < P; ++s)
            if (mem.rank_peak_stored[at(s)] != stored(s) ||
                (acts(s) >= 0 && mem.rank_peak_activations[at(s)] != acts(s)))
                mm.add(what, " rank ", s, ": rank peaks ", mem.rank_peak_stored[at(s)], "/",
                       mem.rank_peak_activations[at(s)], ", expected ", stored(s), "/", acts(s));
    }
    // Every forward of a complete window meets its backward: nothing is left stored at the end, and
    // the timeline has one entry per action.
    for (std::size_t k = 0; k < r.stored_timeline.size(); ++k) {
        const auto& line = r.stored_timeline[k];
        if (line.size() != sch.ranks[k].size() || (!line.empty() && line.back() != 0) ||
            (!r.activation_timeline[k].empty() && r.activation_timeline[k].back() != 0))
            mm.add(what, " rank ", k, ": timeline of ", line.size(), " entries ending at ",
                   line.empty() ? -1 : line.back());
    }
}

} // namespace

TEST_CASE("memory: 1F1B-flush stores min(M, P-s) per stage; recompute keeps 1 full activation",
          "[property][memory]") {
    // Each group fills min(cap, M) = min(P - s, M) forwards, then alternates backward (-1) and
    // forward (+1): the fill is the peak. With recompute a forward keeps its input only; R adds the
    // full activations right before B releases them, so at most 1 (the last stage runs F and B back
    // to back and also holds 1).
    using paci::backward_flavour;
    mismatches mm;
    for (int P = 1; P <= 12; ++P)
        for (const int M : {1, 2, 3, P - 1, P, P + 1, 3 * P})
            for (const int N : {1, 2, 4}) {
                if (M < 1) continue;
                const auto stored = [&](int s) { return std::min(M, P - s); };
                const auto one = [](int) { return 1; };
                check_memory(paci::one_f_one_b<>{.stages = P, .microbatches = M, .steps = N}, stored, stored, one, mm);
                check_memory(paci::one_f_one_b<backward_flavour::recompute>{.stages = P, .microbatches = M, .steps = N},
                             stored, one, one, mm);
            }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

TEST_CASE("memory: PACI stores min(a*N, L_s) per stage (1F1B's footprint); recompute keeps 1 activation",
          "[property][memory]") {
    // No flush: stage s fills min(L_s, a*N) forwards once and then alternates B and F.
    using paci::backward_flavour;
    mismatches mm;
    std::mt19937 rng(99U);
    for (int P = 1; P <= 16; ++P)
        for (int a = 1; a <= 17; a += 2)
            for (const int N : {1, 2, 8}) {
                for (const bool user_caps : {false, true}) {
                    const std::vector<int> caps = user_caps ? random_valid_caps(rng, P, 3U) : default_caps(P);
                    const auto stored = [&](int s) { return std::min(a * N, caps[at(s)]); };
                    const auto one = [](int) { return 1; };
                    paci::paci_policy<> p{.stages = P, .microbatches = a, .steps = N};
                    paci::paci_policy<backward_flavour::recompute> q{.stages = P, .microbatches = a, .steps = N};
                    if (user_caps) p.cap = q.cap = caps;
                    check_memory(p, stored, stored, one, mm);
                    check_memory(q, stored, one, one, mm);
                }
            }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

TEST_CASE("memory: PACI's peak equals 1F1B-flush's when the group covers the pipeline (M >= P)",
          "[property][memory]") {
    // PACI.md: "the same in-flight cap as 1F1B ... peak memory equal to 1F1B-flush": both are P - s at
    // stage s once a group has at least P micro-batches. Expected value: P - s, not each other.
    mismatches mm;
    for (int P = 1; P <= 12; ++P)
        for (const int a : {P, P + 1, 2 * P}) {
            const paci::paci_policy<> p{.stages = P, .microbatches = a, .steps = 3};
            const paci::one_f_one_b<> f{.stages = P, .microbatches = a, .steps = 3};
            const auto mp = paci::memory_of(paci::replay(p.generate(), p.controller()));
            const auto mf = paci::memory_of(paci::replay(f.generate(), f.controller()));
            std::vector<int> expected;
            for (int s = 0; s < P; ++s) expected.push_back(P - s);
            if (mp.peak_stored != expected || mf.peak_stored != expected)
                mm.add("P ", P, " a ", a, ": PACI ", show(mp.peak_stored), ", flush ", show(mf.peak_stored),
                       ", expected ", show(expected));
        }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

TEST_CASE("memory: GPipe stores all M micro-batches; with recompute only 1 full activation",
          "[property][memory]") {
    // All M forwards, then all M backwards: M stored at every stage. With recompute the forwards keep
    // inputs only and each R materializes one micro-batch's activations right before its B.
    // Unlike the 1F1B machine, GPipe's last stage also runs every forward before any backward, so it
    // recomputes too: one full activation set everywhere.
    using paci::backward_flavour;
    mismatches mm;
    for (int P = 1; P <= 10; ++P)
        for (const int M : {1, 2, P, 2 * P + 1})
            for (const int N : {1, 3}) {
                const auto all = [&](int) { return M; };
                const auto one = [](int) { return 1; };
                check_memory(paci::gpipe<>{.stages = P, .microbatches = M, .steps = N}, all, all, one, mm);
                check_memory(paci::gpipe<backward_flavour::recompute>{.stages = P, .microbatches = M, .steps = N}, all,
                             one, one, mm);
            }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

TEST_CASE("memory: ZB-H1 holds min(M, P) at every stage (1F1B's peak), ZB-H2 min(M, 2P-1)",
          "[property][memory]") {
    // ZB-H1 at stage s: warm-up w = min(M, P-s) forwards, then per step i: I(i), W once i >= s, F.
    // Activations live from F to W. For i < s no W has run and F count is min(M, w + i + 1), so at
    // i = s-1 the stage holds min(M, P). From i >= s one W and one F per step keep it <= min(M, P).
    // ZB-H2 is the same with w = min(M, 2(P-s)-1) and the W lag 2s: the peak is min(M, 2P-1) at every
    // stage (stage 0: Qi et al.'s 2P-1).
    mismatches mm;
    for (int P = 1; P <= 12; ++P)
        for (const int M : {1, 2, P - 1, P, P + 1, 2 * P - 1, 2 * P, 3 * P + 2})
            for (const int N : {1, 2}) {
                if (M < 1) continue;
                const auto one = [](int) { return 1; };
                const auto h1 = [&](int) { return std::min(M, P); };
                const auto h2 = [&](int) { return std::min(M, 2 * P - 1); };
                check_memory(paci::zb_h1{.stages = P, .microbatches = M, .steps = N}, h1, h1, one, mm);
                check_memory(paci::zb_h2{.stages = P, .microbatches = M, .steps = N}, h2, h2, one, mm);
            }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

TEST_CASE("memory: interleaved 1F1B rank r peaks at min(M*V, 2(R-r-1) + (V-1)R + 1) micro-batch chunks",
          "[property][memory]") {
    // Megatron's rule: rank r runs w = min(2(R-r-1) + (V-1)R, M*V) warm-up forwards, then forward,
    // backward pairs (peak w + 1 right after the first steady forward, if any), then the drain.
    SECTION("hand-worked cases") {
        struct row {
            int R, V, M;
            std::vector<int> peak;
        };
        // R=2, V=2, M=2: rank 0 warms up min(2+2, 4) = 4 -> 4; rank 1 warms up 2, then F -> 3.
        // R=4, V=2, M=8: rank r warms up 2(3-r) + 4 = 10, 8, 6, 4, then F -> 11, 9, 7, 5.
        // R=1, V=3, M=1: warm-up min(2, 3) = 2, then F -> 3 (all three chunks of the one micro-batch).
        // R=3, V=1, M=3 (plain 1F1B): 2(2-r) = 4, 2, 0 capped at 3 -> 3, 3, 1.
        const auto c = GENERATE(values<row>({{2, 2, 2, {4, 3}},
                                             {4, 2, 8, {11, 9, 7, 5}},
                                             {1, 3, 1, {3}},
                                             {3, 1, 3, {3, 3, 1}}}));
        CAPTURE(c.R, c.V, c.M);
        const paci::interleaved_one_f_one_b p{.ranks = c.R, .chunks = c.V, .microbatches = c.M, .steps = 2};
        const auto mem = paci::memory_of(paci::replay(p.generate(), p.controller()));
        CHECK(mem.rank_peak_stored == c.peak);
        CHECK(mem.rank_peak_activations == c.peak);
    }
    SECTION("grid") {
        mismatches mm;
        for (int R = 1; R <= 6; ++R)
            for (int V = 1; V <= 4; ++V)
                for (const int k : {1, 2, 3, 5})
                    for (const int N : {1, 2}) {
                        const int M = k * R;
                        const paci::interleaved_one_f_one_b p{.ranks = R, .chunks = V, .microbatches = M, .steps = N};
                        const auto mem = paci::memory_of(paci::replay(p.generate(), p.controller()));
                        std::vector<int> expected;
                        for (int r = 0; r < R; ++r) expected.push_back(std::min(M * V, 2 * (R - r - 1) + (V - 1) * R + 1));
                        if (mem.rank_peak_stored != expected || mem.rank_peak_activations != expected)
                            mm.add(paci::detail::print(p), ": rank peaks ", show(mem.rank_peak_stored), " / ",
                                   show(mem.rank_peak_activations), ", expected ", show(expected));
                        for (const int v : mem.peak_versions)
                            if (v != 1) mm.add(paci::detail::print(p), ": resident versions ", v);
                    }
        INFO(mm.summary());
        REQUIRE(mm.count == 0);
    }
}

TEST_CASE("memory: PipeDream keeps P-s weight versions at stage s, PipeDream-2BW at most 2",
          "[property][memory]") {
    // PACI.md: "PipeDream keeps P - s weight versions at stage s, PipeDream-2BW keeps 2" (derivations in
    // drift.test.cpp); activations follow the 1F1B footprint min(total, P - s).
    mismatches mm;
    for (int P = 1; P <= 14; ++P) {
        const int T = 3 * P + 2;
        const auto stored = [&](int s) { return std::min(T, P - s); };
        check_memory(paci::pipedream{.stages = P, .microbatches = 1, .steps = T}, stored, stored,
                     [&](int s) { return P - s; }, mm);
        if (P >= 2)
            for (const int a : {P - 1, P, 2 * P}) {
                const int N = steady_steps(P, a);
                const auto stored2 = [&](int s) { return std::min(a * N, P - s); };
                check_memory(paci::pipedream_2bw{.stages = P, .microbatches = a, .steps = N}, stored2, stored2,
                             [&](int s) { return s < P - 1 ? 2 : 1; }, mm);
            }
    }
    INFO(mm.summary());
    REQUIRE(mm.count == 0);
}

TEST_CASE("memory: a stashing stage counts its current version beside the stashed ones", "[property][memory]") {
    // Hand-built single stage, PipeDream's stash: 0F0 0F1 0B0 0STEP0 0B1 0STEP1.
    // F0 and F1 stash version 0. After STEP0 the stage holds version 0 (stashed by micro-batch 1, still
    // in flight) and its current version 1: 2 resident. After B1 nothing is stashed: 1.
    // Stored after each action: 1 2 1 1 0 0.
    const paci::schedule sch =
        paci_test::make_schedule({1, 1, paci::stage_map::loop}, 2, 2, {"0F0 0F1 0B0 0STEP0 0B1 0STEP1"});
    const auto r = paci::replay(sch, paci::stash{.every = 1});
    const auto mem = paci::memory_of(r);
    CHECK(mem.peak_versions == std::vector<int>{2});
    CHECK(mem.peak_stored == std::vector<int>{2});
    CHECK(r.stored_timeline[0] == std::vector<std::int32_t>{1, 2, 1, 1, 0, 0});
    // Without stashing the same program keeps one version.
    CHECK(paci::memory_of(paci::replay(sch, paci::accumulation{.every = 1})).peak_versions == std::vector<int>{1});
}
