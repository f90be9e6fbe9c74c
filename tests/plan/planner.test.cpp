// The planner ranks candidates by modelled time per micro-batch and explains each rejection.

#include <paci/plan/planner.hpp>

#include "support/catch.hpp"

#include <string>

namespace {

const paci::plan_candidate* find(const paci::plan& p, const std::string& prefix) {
    for (const auto& c : p.candidates)
        if (c.policy.rfind(prefix, 0) == 0) return &c;
    return nullptr;
}

} // namespace

TEST_CASE("paci_accumulation_for: the smallest a with ceil((P-1)/a) <= D", "[unit][plan]") {
    CHECK(paci::paci_accumulation_for(8, 1) == 7);
    CHECK(paci::paci_accumulation_for(8, 2) == 4);
    CHECK(paci::paci_accumulation_for(8, 3) == 3);
    CHECK(paci::paci_accumulation_for(8, 7) == 1);
    CHECK(paci::paci_accumulation_for(8, 100) == 1);
    CHECK(paci::paci_accumulation_for(8, 0) == 0); // an asynchronous schedule cannot promise no drift
    for (int P = 2; P <= 16; ++P)
        for (int D = 1; D < P; ++D) {
            const int a = paci::paci_accumulation_for(P, D);
            CAPTURE(P, D, a);
            REQUIRE((P - 1 + a - 1) / a <= D);                // meets the budget
            REQUIRE((a == 1 || (P - 1 + a - 2) / (a - 1) > D)); // and a - 1 would not
        }
}

TEST_CASE("make_plan: drift and memory budgets reject with reasons; the rest are ranked by speed", "[unit][plan]") {
    paci::plan_request req{.stages = 8, .microbatches = 8, .memory_budget = 4, .drift_budget = 1};
    const paci::plan p = paci::make_plan(req);

    const auto* pd = find(p, "pipedream<");
    REQUIRE(pd != nullptr);
    REQUIRE_FALSE(pd->feasible());
    REQUIRE(pd->rejected_because.size() == 2); // both budgets
    CHECK(pd->rejected_because[0] == "peak activations 8 exceed the memory budget 4");
    CHECK(pd->rejected_because[1] == "staleness bound 7 exceeds the drift budget 1");

    const auto* ofob = find(p, "one_f_one_b<perf>");
    REQUIRE(ofob != nullptr);
    REQUIRE_FALSE(ofob->feasible());
    CHECK(ofob->peak_activations == 8);
    CHECK_THAT(ofob->rejected_because.front(), Catch::Matchers::ContainsSubstring("peak activations 8 exceed the memory budget 4"));

    // Recompute keeps one set of full activations: it fits the budget, and PACI with a = 7 meets drift 1.
    const auto* pr = find(p, "paci<recompute>");
    REQUIRE(pr != nullptr);
    CHECK(pr->feasible());
    CHECK(pr->effective_batch == 7);
    CHECK(pr->drift_bound == 1);
    CHECK(pr->peak_activations == 1);
    const auto* fr = find(p, "one_f_one_b<recompute>");
    REQUIRE(fr != nullptr);
    CHECK(fr->feasible());

    // Feasible first, fastest first.
    bool seen_rejected = false;
    double last = 0;
    for (const auto& c : p.candidates) {
        if (!c.feasible()) {
            seen_rejected = true;
            continue;
        }
        REQUIRE_FALSE(seen_rejected);
        REQUIRE(c.time_per_microbatch >= last);
        last = c.time_per_microbatch;
    }
    REQUIRE(p.best() != nullptr);
    CHECK(p.best()->policy.rfind("paci<recompute>", 0) == 0);
}

TEST_CASE("make_plan: without budgets PACI is (M+P-1)/M times faster than 1F1B-flush", "[unit][plan]") {
    paci::plan_request req{.stages = 8, .microbatches = 8};
    req.costs.uniform = {.f = 1, .b = 2};
    const paci::plan p = paci::make_plan(req);
    const auto* a = find(p, "paci<perf>");
    const auto* f = find(p, "one_f_one_b<perf>");
    REQUIRE(a != nullptr);
    REQUIRE(f != nullptr);
    CHECK(a->effective_batch == 8);
    CHECK(std::abs(f->time_per_microbatch / a->time_per_microbatch - 15.0 / 8.0) < 0.01 * 15.0 / 8.0);
    CHECK(std::abs(a->time_per_microbatch - 3.0) < 1e-9);
    for (const auto& c : p.candidates) CHECK(c.feasible());
}

TEST_CASE("make_plan: fewer ranks than stages plans the multi-stage policies", "[unit][plan]") {
    const auto find = [](const paci::plan& p, std::string_view prefix) -> const paci::plan_candidate* {
        for (const auto& c : p.candidates)
            if (c.policy.rfind(prefix, 0) == 0) return &c;
        return nullptr;
    };
    // Two stages per rank: the loop placements and the V placements.
    const paci::plan p = paci::make_plan({.stages = 8, .ranks = 4, .microbatches = 8});
    REQUIRE(p.candidates.size() == 5);
    for (const std::string_view name : {"interleaved_one_f_one_b{.ranks = 4, .chunks = 2", "looped_bfs{.ranks = 4, .chunks = 2",
                                        "interleaved_zero_bubble{.ranks = 4, .chunks = 2", "zb_v{.ranks = 4",
                                        "dualpipe_v{.ranks = 4"}) {
        CAPTURE(name);
        const paci::plan_candidate* c = find(p, name);
        REQUIRE(c != nullptr);
        CHECK(c->feasible());
    }
    // ZB-V's step is 6M + R - 1 = 51 for 8 micro-batches with F = I = W = 1 (the published zero
    // bubble), against interleaved 1F1B's 57: it ranks above it.
    CHECK(find(p, "zb_v")->time_per_microbatch < find(p, "interleaved_one_f_one_b")->time_per_microbatch);
    // Three stages per rank: no V placement.
    CHECK(paci::make_plan({.stages = 12, .ranks = 4, .microbatches = 8}).candidates.size() == 3);
    // A request a policy refuses lists it as rejected, with the policy's own reason.
    const paci::plan bad = paci::make_plan({.stages = 8, .ranks = 4, .microbatches = 6});
    const paci::plan_candidate* interleaved = find(bad, "interleaved_one_f_one_b");
    REQUIRE(interleaved != nullptr);
    REQUIRE_FALSE(interleaved->feasible());
    CHECK_THAT(interleaved->rejected_because.front(),
               Catch::Matchers::ContainsSubstring("microbatches (6) must be a multiple of ranks (4)"));
    const paci::plan_candidate* dualpipe = find(bad, "dualpipe_v");
    REQUIRE(dualpipe != nullptr);
    REQUIRE_FALSE(dualpipe->feasible());
    CHECK_THAT(dualpipe->rejected_because.front(), Catch::Matchers::ContainsSubstring("microbatches (6) must be >= 2 * ranks"));
}

TEST_CASE("make_plan: impossible requests are config errors", "[unit][plan]") {
    REQUIRE_THROWS_WITH(paci::make_plan({.stages = 0}), "paci::plan: stages (0) must be >= 1");
    REQUIRE_THROWS_WITH(paci::make_plan({.stages = 8, .ranks = 3}), "paci::plan: ranks (3) must divide stages (8)");
    REQUIRE_THROWS_WITH(paci::make_plan({.stages = 8, .microbatches = 0}), "paci::plan: microbatches (0) must be >= 1");
    REQUIRE_THROWS_WITH(paci::make_plan({.stages = 8, .microbatches = 4, .drift_budget = -2}),
                        "paci::plan: drift budget (-2) must be >= 0, or -1 for none");
}

TEST_CASE("make_plan: a request too large to analyse fails fast with the size it would need", "[unit][plan][errors]") {
    // 32767 stages and 100000 micro-batches per update: the flushed candidates alone run 4 updates of
    // 100000 micro-batches, 3 computes each, at every stage: billions of actions, past paci::limits.
    // (It ran to 8 GB and std::bad_alloc.)
    REQUIRE_THROWS_WITH(paci::make_plan({.stages = 32767, .microbatches = 100000}),
                        Catch::Matchers::StartsWith("paci::plan: schedule size (") &&
                            Catch::Matchers::EndsWith("must be within paci::limits (134217728 actions, 4294967296 bytes); "
                                                      "raise them with paci::set_limits"));
    REQUIRE_THROWS_WITH(paci::make_plan({.stages = 8, .microbatches = 4, .sends = static_cast<paci::send_semantics>(5)}),
                        "paci::plan: sends (5) must be send_semantics::buffered or send_semantics::rendezvous");
}

TEST_CASE("paci_accumulation_for: stages and budgets out of range are config errors", "[unit][plan][errors]") {
    REQUIRE_THROWS_WITH(paci::paci_accumulation_for(0, 1), "paci::paci_accumulation_for: stages (0) must be >= 1");
    REQUIRE_THROWS_WITH(paci::paci_accumulation_for(8, -2),
                        "paci::paci_accumulation_for: drift_budget (-2) must be >= 0, or -1 for none");
}
