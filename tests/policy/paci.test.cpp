// Unit tests for include/paci/policy/paci.hpp: the PACI policy (1F1B machine with accumulation, no
// flush) as a value, its errors, its promised bounds against the table in PACI.md, and its schedules,
// written out by hand for small cases: an update after every a-th local backward, no drain between
// updates, recompute before every backward off the last stage.

#include <paci/analysis/validate.hpp>
#include <paci/core/error.hpp>
#include <paci/policy/paci.hpp>
#include <paci/version/accumulation.hpp>

#include "support/catch.hpp"
#include "support/print.hpp"
#include "support/program_text.hpp"

#include <algorithm>
#include <vector>

namespace {

using paci::backward_flavour;
using paci_test::print;
using paci_test::program;
using Paci = paci::paci_policy<>;
using PaciR = paci::paci_policy<backward_flavour::recompute>;

} // namespace

TEST_CASE("paci: a regular, printable policy value", "[unit][policy][paci]") {
    STATIC_REQUIRE(paci::schedule_policy<Paci>);
    STATIC_REQUIRE(paci::schedule_policy<PaciR>);
    STATIC_REQUIRE(Paci::name == "paci");
    STATIC_REQUIRE(PaciR::flavour == backward_flavour::recompute);

    CHECK(print(Paci{.stages = 8, .microbatches = 4, .steps = 2}) == "paci<perf>{.stages = 8, .microbatches = 4, .steps = 2}");
    CHECK(print(PaciR{.stages = 3, .microbatches = 2, .steps = 16, .cap = {3, 1, 1}}) ==
          "paci<recompute>{.stages = 3, .microbatches = 2, .steps = 16, .cap = {3, 1, 1}}");

    const Paci p{.stages = 8, .microbatches = 4, .steps = 16};
    CHECK(p == Paci{.stages = 8, .microbatches = 4, .steps = 16});
    CHECK_FALSE(p == Paci{.stages = 8, .microbatches = 8, .steps = 16});
    CHECK_FALSE(p == Paci{.stages = 4, .microbatches = 4, .steps = 16});
    CHECK_FALSE(p == Paci{.stages = 8, .microbatches = 4, .steps = 15});
}

TEST_CASE("paci: shape and controller", "[unit][policy][paci]") {
    const Paci p{.stages = 6, .microbatches = 4, .steps = 3};
    CHECK(p.shape() == paci::pipeline_shape{6, 6, paci::stage_map::loop});
    CHECK(p.controller() == paci::accumulation{4});
}

TEST_CASE("paci: promised drift and staleness match PACI.md's table", "[unit][policy][paci]") {
    // ceil((P - 1 - s) / a) with the default cap, from "The bound".
    struct row {
        int P, a;
        std::vector<int> bound;
    };
    const row rows[] = {
        {4, 1, {3, 2, 1, 0}},
        {4, 2, {2, 1, 1, 0}},
        {8, 4, {2, 2, 2, 1, 1, 1, 1, 0}},
        {8, 8, {1, 1, 1, 1, 1, 1, 1, 0}},
        {8, 16, {1, 1, 1, 1, 1, 1, 1, 0}},
        {1, 3, {0}},
    };
    for (const auto& r : rows) {
        const Paci p{.stages = r.P, .microbatches = r.a, .steps = 1};
        for (int s = 0; s < r.P; ++s) {
            CAPTURE(r.P, r.a, s);
            CHECK(p.drift_bound(s) == r.bound[static_cast<std::size_t>(s)]);
            CHECK(p.staleness_bound(s) == r.bound[static_cast<std::size_t>(s)]);
            CHECK(p.versions_bound(s) == 1); // no stashing: one resident version
        }
    }
}

TEST_CASE("paci: a user cap changes the bound to ceil((cap[s] - 1) / a)", "[unit][policy][paci]") {
    const Paci p{.stages = 6, .microbatches = 2, .steps = 1, .cap = {6, 3, 3, 2, 2, 1}};
    REQUIRE_NOTHROW(p.validate());
    CHECK(p.drift_bound(0) == 3); // ceil(5 / 2)
    CHECK(p.drift_bound(1) == 1); // ceil(2 / 2)
    CHECK(p.drift_bound(3) == 1); // ceil(1 / 2)
    CHECK(p.drift_bound(5) == 0);
    CHECK(p.staleness_bound(0) == 3);
    CHECK(p.cap_of(0) == 6);
}

TEST_CASE("paci: configuration errors name paci", "[unit][policy][paci][errors]") {
    REQUIRE_THROWS_AS((Paci{.stages = 0}.validate()), paci::config_error);
    REQUIRE_THROWS_WITH((Paci{.stages = 0}.validate()), "paci::paci: stages (0) must be >= 1");
    REQUIRE_THROWS_WITH((Paci{.stages = 4, .microbatches = 0}.generate()), "paci::paci: microbatches (0) must be >= 1");
    REQUIRE_THROWS_WITH((Paci{.stages = 4, .microbatches = 2, .steps = 0}.validate()),
                        "paci::paci: steps (0) must be >= 1");
    REQUIRE_THROWS_WITH((Paci{.stages = 2, .microbatches = 2, .steps = 1, .cap = {1}}.validate()),
                        "paci::paci: cap size (1) must equal stages (2)");
    REQUIRE_THROWS_WITH((Paci{.stages = 2, .microbatches = 2, .steps = 1, .cap = {0, 1}}.validate()),
                        "paci::paci: cap[0] (0) must be >= 1");
    REQUIRE_THROWS_WITH((Paci{.stages = 3, .microbatches = 2, .steps = 1, .cap = {1, 2, 1}}.validate()),
                        "paci::paci: cap[1] (2) must be <= cap[0] (1)");
    REQUIRE_THROWS_WITH((PaciR{.stages = 2, .microbatches = 2, .steps = 1, .cap = {2, 2}}.generate()),
                        "paci::paci: cap[1] (2) must be 1: the last stage runs forward and backward back to back");
}

TEST_CASE("paci: 2 stages, a = 2, 2 updates, by hand", "[unit][policy][paci]") {
    const paci::schedule s = Paci{.stages = 2, .microbatches = 2, .steps = 2}.generate();
    CHECK(s.microbatches == 4);
    CHECK(s.steps == 2);
    CHECK(s.policy == "paci<perf>{.stages = 2, .microbatches = 2, .steps = 2}");
    // Unlike 1F1B-flush, stage 0 injects micro-batch 2 before micro-batch 1's backward: no drain.
    CHECK(s.ranks[0] == program("0F0 0F1 0B0 0F2 0B1 0STEP0 0F3 0B2 0B3 0STEP1"));
    CHECK(s.ranks[1] == program("1F0 1B0 1F1 1B1 1STEP0 1F2 1B2 1F3 1B3 1STEP1"));
}

TEST_CASE("paci: 3 stages, a = 2, by hand", "[unit][policy][paci]") {
    const paci::schedule s = Paci{.stages = 3, .microbatches = 2, .steps = 2}.generate();
    CHECK(s.ranks[0] == program("0F0 0F1 0F2 0B0 0F3 0B1 0STEP0 0B2 0B3 0STEP1"));
    CHECK(s.ranks[1] == program("1F0 1F1 1B0 1F2 1B1 1STEP0 1F3 1B2 1B3 1STEP1"));
    CHECK(s.ranks[2] == program("2F0 2B0 2F1 2B1 2STEP0 2F2 2B2 2F3 2B3 2STEP1"));
}

TEST_CASE("paci: recompute flavour, by hand", "[unit][policy][paci]") {
    const paci::schedule s = PaciR{.stages = 2, .microbatches = 2, .steps = 1}.generate();
    CHECK(s.policy == "paci<recompute>{.stages = 2, .microbatches = 2, .steps = 1}");
    CHECK(s.ranks[0] == program("0F0 0F1 0R0 0B0 0R1 0B1 0STEP0"));
    CHECK(s.ranks[1] == program("1F0 1B0 1F1 1B1 1STEP0"));
}

TEST_CASE("paci: a STEP after every a-th backward, in-flight never reaches the cap",
          "[unit][policy][paci][property]") {
    const int P = GENERATE(1, 2, 3, 5, 8);
    const int a = GENERATE(1, 2, 3, 4, 8);
    const int N = GENERATE(1, 2, 5);
    const Paci policy{.stages = P, .microbatches = a, .steps = N};
    CAPTURE(policy);
    const paci::schedule s = policy.generate();
    const int T = a * N;
    for (int st = 0; st < P; ++st) {
        CAPTURE(st);
        const auto& prog = s.ranks[static_cast<std::size_t>(st)];
        CHECK(prog.size() == static_cast<std::size_t>(2 * T + N));
        int backwards = 0, updates = 0, next_f = 0, in_flight = 0, peak = 0;
        for (std::size_t i = 0; i < prog.size(); ++i) {
            const auto& act = prog[i];
            CHECK(act.stage == st);
            if (act.kind == paci::op::F) {
                CHECK(act.microbatch == next_f++);
                peak = std::max(peak, ++in_flight);
            } else if (act.kind == paci::op::B) {
                CHECK(act.microbatch == backwards++);
                --in_flight;
                // Rule 3: on every a-th backward, the update comes right after it.
                if (backwards % a == 0) {
                    REQUIRE(i + 1 < prog.size());
                    CHECK(prog[i + 1] == paci::action{paci::op::STEP, st, backwards / a - 1});
                }
            } else {
                REQUIRE(act.kind == paci::op::STEP);
                CHECK(act.microbatch == updates++);
                CHECK(backwards == updates * a);
            }
        }
        // Rule 2 with the default cap P - s: no flush, so the pipeline stays full across updates.
        CHECK(peak == std::min(P - st, T));
        CHECK(updates == N);
    }
}

TEST_CASE("paci: stage 0 never drains between updates when the cap exceeds 1", "[unit][policy][paci][property]") {
    // With a flush the in-flight count at stage 0 returns to 0 after every group; PACI keeps
    // injecting, so it reaches 0 only after the last forward.
    const int P = GENERATE(2, 3, 6);
    const int a = GENERATE(1, 2, 4);
    const paci::schedule s = Paci{.stages = P, .microbatches = a, .steps = 4}.generate();
    CAPTURE(P, a);
    const auto& prog = s.ranks[0];
    int in_flight = 0, forwards = 0;
    for (const auto& act : prog) {
        if (act.kind == paci::op::F) ++in_flight, ++forwards;
        if (act.kind == paci::op::B) --in_flight;
        if (forwards < 4 * a) CHECK(in_flight > 0);
    }
}

TEST_CASE("paci: recompute puts R right before every B except on the last stage", "[unit][policy][paci][property]") {
    const int P = GENERATE(1, 2, 3, 5);
    const int a = GENERATE(1, 3);
    const int N = GENERATE(1, 3);
    const paci::schedule s = PaciR{.stages = P, .microbatches = a, .steps = N}.generate();
    CAPTURE(P, a, N);
    const int T = a * N;
    CHECK(s.compute_size() == static_cast<std::size_t>(2 * P * T + (P - 1) * T));
    for (int st = 0; st < P; ++st) {
        const auto& prog = s.ranks[static_cast<std::size_t>(st)];
        CHECK(paci_test::count(prog, paci::op::R) == static_cast<std::size_t>(st == P - 1 ? 0 : T));
        for (std::size_t i = 0; i < prog.size(); ++i) {
            if (prog[i].kind != paci::op::B || st == P - 1) continue;
            CAPTURE(st, i);
            REQUIRE(i > 0);
            CHECK(prog[i - 1] == paci::action{paci::op::R, st, prog[i].microbatch});
        }
    }
    // Same order as the perf flavour once the R actions are removed.
    const paci::schedule perf = Paci{.stages = P, .microbatches = a, .steps = N}.generate();
    for (std::size_t r = 0; r < s.ranks.size(); ++r) {
        std::vector<paci::action> no_r;
        for (const auto& act : s.ranks[r])
            if (act.kind != paci::op::R) no_r.push_back(act);
        CHECK(no_r == perf.ranks[r]);
    }
}

TEST_CASE("paci: every generated schedule validates, default and user caps", "[unit][policy][paci][property]") {
    const int P = GENERATE(1, 2, 3, 4, 6, 8);
    const int a = GENERATE(1, 2, 4, 8);
    const int N = GENERATE(1, 3);
    CAPTURE(P, a, N);
    const auto perf = paci::validate(Paci{.stages = P, .microbatches = a, .steps = N}.generate());
    INFO(perf);
    CHECK(perf.valid());
    const auto rec = paci::validate(PaciR{.stages = P, .microbatches = a, .steps = N}.generate());
    INFO(rec);
    CHECK(rec.valid());
    // A smaller cap (less memory, less drift): ceil((P - s) / 2), non-increasing and 1 at the end.
    std::vector<int> cap;
    for (int s = 0; s < P; ++s) cap.push_back(s == P - 1 ? 1 : (P - s + 1) / 2);
    const Paci narrow{.stages = P, .microbatches = a, .steps = N, .cap = cap};
    REQUIRE_NOTHROW(narrow.validate());
    const paci::schedule w = narrow.generate();
    CHECK(paci::validate(w).valid());
    for (int s = 0; s < P; ++s)
        CHECK(paci_test::peak_in_flight(w.ranks[static_cast<std::size_t>(s)], paci::op::B) ==
              std::min(cap[static_cast<std::size_t>(s)], a * N));
}

TEST_CASE("paci: bounds of a policy with micro-batches near 2^31 do not overflow", "[unit][policy][paci]") {
    // Found by the API fuzzer (tests/fuzz/findings/api/drift-bound-ceil-div-overflow): ceil((L - 1) / a)
    // was computed as (L - 1 + a - 1) / a in int.
    const Paci p{.stages = 15, .microbatches = 2147483647, .steps = 1};
    REQUIRE_NOTHROW(p.validate());
    CHECK(p.drift_bound(0) == 1); // ceil(14 / (2^31 - 1))
    CHECK(p.staleness_bound(0) == 1);
    CHECK(p.drift_bound(14) == 0);
    CHECK(Paci{.stages = 15, .microbatches = 4, .steps = 1}.drift_bound(0) == 4); // ceil(14 / 4)
}
