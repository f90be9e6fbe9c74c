// Unit and property tests for include/paci/core/lower.hpp: where each lowering mode puts SEND and
// RECV, local hand-over between stages on one rank, deadlock freedom of the result, and errors.
//
// The hand-written programs below follow the header's rules:
// - eager: a RECV right before the compute that needs it; a SEND right after the compute that
//   produces it (later only when an earlier message on the same channel is produced later);
// - rendezvous_safe: ranks advance one compute per turn, round robin from rank 0; a SEND is placed
//   when both its producer has run and its receiver is waiting for it, at the end of both programs.

#include <paci/analysis/validate.hpp>
#include <paci/core/action.hpp>
#include <paci/core/error.hpp>
#include <paci/core/lower.hpp>
#include <paci/core/schedule.hpp>
#include <paci/core/shape.hpp>
#include <paci/policy/gpipe.hpp>
#include <paci/policy/interleaved.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/pipedream.hpp>
#include <paci/policy/zero_bubble.hpp>

#include "support/catch.hpp"
#include "support/print.hpp"
#include "support/program_text.hpp"

#include <cstddef>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

using Catch::Matchers::ContainsSubstring;

namespace {

using paci_test::print;
using paci_test::program;

std::vector<paci::action> without_comm(const std::vector<paci::action>& prog) {
    std::vector<paci::action> out;
    for (const auto& a : prog)
        if (!paci::is_comm(a.kind)) out.push_back(a);
    return out;
}

struct named {
    std::string name;
    paci::schedule compute;
    bool fifo; ///< one stage per rank, forwards and backwards in micro-batch order at every stage
};

/// Every built-in policy with `P` stages and `M` micro-batches per update (those whose parameters allow it).
std::vector<named> built_in(int P, int M, int steps) {
    using paci::backward_flavour;
    std::vector<named> out;
    const auto add = [&](const auto& policy, bool fifo) { out.push_back({print(policy), policy.generate(), fifo}); };
    add(paci::gpipe<>{.stages = P, .microbatches = M, .steps = steps}, true);
    add(paci::gpipe<backward_flavour::recompute>{.stages = P, .microbatches = M, .steps = steps}, true);
    add(paci::one_f_one_b<>{.stages = P, .microbatches = M, .steps = steps}, true);
    add(paci::one_f_one_b<backward_flavour::recompute>{.stages = P, .microbatches = M, .steps = steps}, true);
    add(paci::paci_policy<>{.stages = P, .microbatches = M, .steps = steps}, true);
    add(paci::paci_policy<backward_flavour::recompute>{.stages = P, .microbatches = M, .steps = steps}, true);
    add(paci::pipedream{.stages = P, .microbatches = M, .steps = steps}, true);
    if (M >= P - 1) add(paci::pipedream_2bw{.stages = P, .microbatches = M, .steps = steps}, true);
    add(paci::zb_h1{.stages = P, .microbatches = M, .steps = steps}, true);
    add(paci::zb_h2{.stages = P, .microbatches = M, .steps = steps}, true);
    for (const int ranks : {1, 2, 3})
        if (P % ranks == 0 && P / ranks >= 1 && M % ranks == 0)
            add(paci::interleaved_one_f_one_b{.ranks = ranks, .chunks = P / ranks, .microbatches = M, .steps = steps},
                false);
    return out;
}

/// True when the compute consumes what `recv` delivers.
bool consumes(const paci::action& c, const paci::action& recv) {
    if (c.stage != recv.stage || c.microbatch != recv.microbatch) return false;
    if (recv.kind == paci::op::RECV_F) return c.kind == paci::op::F;
    return c.kind == paci::op::B || c.kind == paci::op::I;
}

/// True when the compute produces what `send` carries.
bool produces(const paci::action& c, const paci::action& send) {
    if (c.stage != send.stage || c.microbatch != send.microbatch) return false;
    if (send.kind == paci::op::SEND_F) return c.kind == paci::op::F;
    return c.kind == paci::op::B || c.kind == paci::op::I;
}

/// A random compute-only schedule whose compute order can run: one random execution of the whole
/// pipeline (any ready action, chosen by a fixed-seed generator), split into per-rank programs.
/// Every (stage, micro-batch) runs F then B, or F, I, W when `split`.
paci::schedule random_runnable(paci::pipeline_shape shape, int T, bool split, std::mt19937& rng) {
    const int P = shape.stages;
    paci::schedule out;
    out.shape = shape;
    out.microbatches = T;
    out.policy = "random";
    out.ranks.resize(static_cast<std::size_t>(shape.ranks));
    // Per (stage, micro-batch): 0 nothing run, 1 F done, 2 B (or I) done, 3 W done.
    std::vector<int> state(static_cast<std::size_t>(P * T), 0);
    const auto at = [&](int st, int m) -> int& { return state[static_cast<std::size_t>(st * T + m)]; };
    const int final_state = split ? 3 : 2;
    for (;;) {
        std::vector<paci::action> ready;
        for (int st = 0; st < P; ++st)
            for (int m = 0; m < T; ++m) {
                const int x = at(st, m);
                if (x == 0 && (st == 0 || at(st - 1, m) >= 1)) ready.push_back({paci::op::F, st, m});
                if (x == 1 && (st == P - 1 || at(st + 1, m) >= 2)) ready.push_back({split ? paci::op::I : paci::op::B, st, m});
                if (x == 2 && split) ready.push_back({paci::op::W, st, m});
            }
        if (ready.empty()) break;
        const paci::action a = ready[static_cast<std::size_t>(rng() % ready.size())];
        ++at(a.stage, a.microbatch);
        out.ranks[static_cast<std::size_t>(shape.rank_of(a.stage))].push_back(a);
    }
    for (const int x : state) REQUIRE(x == final_state);
    return out;
}

} // namespace

TEST_CASE("lower: lowering modes print their names", "[unit][core][lower]") {
    CHECK(paci::to_string(paci::lowering::eager) == "eager");
    CHECK(paci::to_string(paci::lowering::rendezvous_safe) == "rendezvous_safe");
    std::ostringstream out;
    out << paci::lowering::rendezvous_safe;
    CHECK(out.str() == "rendezvous_safe");
}

TEST_CASE("lower: eager lowering of 1F1B, 2 stages, 3 micro-batches, by hand", "[unit][core][lower]") {
    const paci::schedule compute = paci::one_f_one_b<>{.stages = 2, .microbatches = 3, .steps = 1}.generate();
    // 1F1B with cap 2 at stage 0 and 1 at stage 1 (checked in the policy's own tests):
    REQUIRE(compute.ranks.size() == 2);
    REQUIRE(compute.ranks[0] == program("0F0 0F1 0B0 0F2 0B1 0B2 0STEP0"));
    REQUIRE(compute.ranks[1] == program("1F0 1B0 1F1 1B1 1F2 1B2 1STEP0"));

    const paci::schedule eager = paci::lower(compute, paci::lowering::eager);
    CHECK(eager.ranks[0] ==
          program("0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0F2 0SEND_F2 0RECV_B1 0B1 0RECV_B2 0B2 0STEP0"));
    CHECK(eager.ranks[1] ==
          program("1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1 1RECV_F2 1F2 1B2 1SEND_B2 1STEP0"));
    CHECK(eager.lowered());
    CHECK(eager.shape == compute.shape);
    CHECK(eager.microbatches == 3);
    CHECK(eager.steps == 1);
    CHECK(eager.policy == compute.policy);

    // Both ranks send before they receive: fine on a buffered transport, a deadlock under rendezvous.
    const auto report = paci::validate(eager);
    CHECK(report.valid());
    CHECK(report.deadlock_free(paci::send_semantics::buffered));
    CHECK_FALSE(report.deadlock_free(paci::send_semantics::rendezvous));
}

TEST_CASE("lower: rendezvous_safe lowering of 1F1B, 2 stages, 3 micro-batches, by hand", "[unit][core][lower]") {
    const paci::schedule compute = paci::one_f_one_b<>{.stages = 2, .microbatches = 3, .steps = 1}.generate();
    const paci::schedule safe = paci::lower(compute, paci::lowering::rendezvous_safe);
    // Rank 0 sends micro-batch 1's output only once rank 1 has finished micro-batch 0 and waits for it.
    CHECK(safe.ranks[0] ==
          program("0F0 0SEND_F0 0F1 0RECV_B0 0B0 0SEND_F1 0F2 0RECV_B1 0B1 0SEND_F2 0RECV_B2 0B2 0STEP0"));
    CHECK(safe.ranks[1] ==
          program("1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1 1RECV_F2 1F2 1B2 1SEND_B2 1STEP0"));
    CHECK(safe.shape == compute.shape);
    CHECK(safe.microbatches == compute.microbatches);
    CHECK(safe.steps == compute.steps);
    CHECK(safe.policy == compute.policy);

    const auto report = paci::validate(safe);
    CHECK(report.valid());
    CHECK(report.deadlock_free(paci::send_semantics::rendezvous));
}

TEST_CASE("lower: the default placement is rendezvous_safe", "[unit][core][lower]") {
    // The 1F1B case above tells the two modes apart.
    const paci::schedule compute = paci::one_f_one_b<>{.stages = 2, .microbatches = 3, .steps = 1}.generate();
    const paci::schedule by_default = paci::lower(compute);
    CHECK(by_default == paci::lower(compute, paci::lowering::rendezvous_safe));
    CHECK_FALSE(by_default == paci::lower(compute, paci::lowering::eager));
    CHECK(paci::validate(by_default).deadlock_free(paci::send_semantics::rendezvous));
}

TEST_CASE("lower: GPipe, 2 stages, 2 micro-batches, lowers the same way in both modes", "[unit][core][lower]") {
    const paci::schedule compute = paci::gpipe<>{.stages = 2, .microbatches = 2, .steps = 1}.generate();
    const auto rank0 = program("0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1 0STEP0");
    const auto rank1 = program("1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1 1STEP0");
    const paci::lowering mode = GENERATE(paci::lowering::eager, paci::lowering::rendezvous_safe);
    CAPTURE(mode);
    const paci::schedule lowered = paci::lower(compute, mode);
    CHECK(lowered.ranks[0] == rank0);
    CHECK(lowered.ranks[1] == rank1);
    const auto report = paci::validate(lowered);
    CHECK(report.valid());
    CHECK(report.deadlock_free(paci::send_semantics::rendezvous));
}

TEST_CASE("lower: eager keeps each channel in the receiver's order", "[unit][core][lower]") {
    // Rank 1 wants micro-batch 1 before micro-batch 0, so rank 0's SEND of micro-batch 0 waits until
    // micro-batch 1 has been produced (one channel, rank 0 -> rank 1, in rank 1's order).
    const paci::schedule compute =
        paci_test::make_schedule({2, 2, paci::stage_map::loop}, 2, 0, {"0F0 0F1 0B1 0B0", "1F1 1B1 1F0 1B0"});
    const paci::schedule eager = paci::lower(compute, paci::lowering::eager);
    CHECK(eager.ranks[0] == program("0F0 0F1 0SEND_F1 0SEND_F0 0RECV_B1 0B1 0RECV_B0 0B0"));
    CHECK(eager.ranks[1] == program("1RECV_F1 1F1 1B1 1SEND_B1 1RECV_F0 1F0 1B0 1SEND_B0"));
    const auto report = paci::validate(eager);
    CHECK(report.valid());
    INFO(report);
    CHECK(report.errors.empty());
}

TEST_CASE("lower: stages on the same rank hand over locally", "[unit][core][lower]") {
    SECTION("interleaved with one rank: no communication at all") {
        const paci::schedule compute =
            paci::interleaved_one_f_one_b{.ranks = 1, .chunks = 2, .microbatches = 2, .steps = 1}.generate();
        REQUIRE(compute.shape == paci::pipeline_shape{2, 1, paci::stage_map::loop});
        const paci::lowering mode = GENERATE(paci::lowering::eager, paci::lowering::rendezvous_safe);
        CAPTURE(mode);
        const paci::schedule lowered = paci::lower(compute, mode);
        CHECK_FALSE(lowered.lowered());
        CHECK(lowered == compute);
        CHECK(paci::validate(lowered).valid());
    }
    SECTION("v map, 4 stages on 2 ranks: the turn at rank 1 (stage 1 -> 2) has no communication") {
        // rank_of: stage 0 -> 0, 1 -> 1, 2 -> 1, 3 -> 0.
        const paci::schedule compute =
            paci_test::make_schedule({4, 2, paci::stage_map::v}, 1, 0, {"0F0 3F0 3B0 0B0", "1F0 2F0 2B0 1B0"});
        REQUIRE(paci::validate(compute).valid());
        const auto rank0 = program("0F0 0SEND_F0 3RECV_F0 3F0 3B0 3SEND_B0 0RECV_B0 0B0");
        const auto rank1 = program("1RECV_F0 1F0 2F0 2SEND_F0 2RECV_B0 2B0 1B0 1SEND_B0");
        SECTION("eager") {
            const paci::schedule lowered = paci::lower(compute, paci::lowering::eager);
            CHECK(lowered.ranks[0] == rank0);
            CHECK(lowered.ranks[1] == rank1);
        }
        SECTION("rendezvous_safe") {
            const paci::schedule lowered = paci::lower(compute, paci::lowering::rendezvous_safe);
            // Here every message's receiver is already waiting or ready when it is produced, so the
            // round-robin linearization gives the same placement as eager.
            CHECK(lowered.ranks[0] == rank0);
            CHECK(lowered.ranks[1] == rank1);
            const auto report = paci::validate(lowered);
            CHECK(report.valid());
            CHECK(report.deadlock_free(paci::send_semantics::rendezvous));
        }
    }
}

TEST_CASE("lower: an empty schedule and a single stage need no communication", "[unit][core][lower]") {
    const paci::schedule single = paci_test::make_schedule({1, 1, paci::stage_map::loop}, 2, 1, {"0F0 0F1 0B0 0B1 0STEP0"});
    const paci::lowering mode = GENERATE(paci::lowering::eager, paci::lowering::rendezvous_safe);
    CAPTURE(mode);
    CHECK(paci::lower(single, mode) == single);

    const paci::schedule empty = paci_test::make_schedule({3, 3, paci::stage_map::loop}, 0, 0, {"", "", ""});
    CHECK(paci::lower(empty, mode) == empty);
}

TEST_CASE("lower: errors name paci::lower", "[unit][core][lower][errors]") {
    const paci::schedule compute = paci::one_f_one_b<>{.stages = 2, .microbatches = 1, .steps = 1}.generate();
    const paci::lowering mode = GENERATE(paci::lowering::eager, paci::lowering::rendezvous_safe);
    CAPTURE(mode);

    SECTION("lowering an already-lowered schedule") {
        const paci::schedule once = paci::lower(compute, paci::lowering::eager);
        // The first communication action in rank order is rank 0's SEND of micro-batch 0.
        REQUIRE(once.ranks[0] == program("0F0 0SEND_F0 0RECV_B0 0B0 0STEP0"));
        REQUIRE_THROWS_AS(paci::lower(once, mode), paci::config_error);
        REQUIRE_THROWS_WITH(paci::lower(once, mode),
                            "paci::lower: action (0SEND_F0) is communication: the schedule is already lowered");
    }
    SECTION("a micro-batch out of range") {
        paci::schedule bad = compute;
        bad.ranks[0].insert(bad.ranks[0].begin() + 1, paci::action{paci::op::F, 0, 5});
        REQUIRE_THROWS_AS(paci::lower(bad, mode), paci::config_error);
        REQUIRE_THROWS_WITH(paci::lower(bad, mode),
                            "paci::lower: action (0F5) is out of range for 2 stages and 1 micro-batches");
    }
    SECTION("a negative micro-batch") {
        paci::schedule bad = compute;
        bad.ranks[1].push_back(paci::action{paci::op::B, 1, -1});
        REQUIRE_THROWS_WITH(paci::lower(bad, mode),
                            "paci::lower: action (1B-1) is out of range for 2 stages and 1 micro-batches");
    }
    SECTION("a stage out of range") {
        paci::schedule bad = compute;
        bad.ranks[1].push_back(paci::action{paci::op::F, 2, 0});
        REQUIRE_THROWS_WITH(paci::lower(bad, mode),
                            "paci::lower: action (2F0) is out of range for 2 stages and 1 micro-batches");
    }
    SECTION("a STEP ordinal is not a micro-batch and is never out of range") {
        paci::schedule ok = compute;
        ok.ranks[0].push_back(paci::action{paci::op::STEP, 0, 7});
        CHECK_NOTHROW(paci::lower(ok, mode));
    }
    SECTION("an unusable shape") {
        paci::schedule bad = compute;
        bad.shape.stages = 0;
        REQUIRE_THROWS_WITH(paci::lower(bad, mode), "paci::lower: stages (0) must be >= 1");
        bad.shape = {3, 2, paci::stage_map::loop};
        REQUIRE_THROWS_WITH(paci::lower(bad, mode), "paci::lower: stages (3) must be a multiple of ranks (2)");
    }
    SECTION("one program per rank") {
        paci::schedule bad = compute;
        bad.ranks.pop_back();
        REQUIRE_THROWS_WITH(paci::lower(bad, mode), "paci::lower: rank programs (1) must equal ranks (2)");
    }
}

TEST_CASE("lower: a compute that no rank feeds", "[unit][core][lower][errors]") {
    // Stage 1 runs micro-batch 0 but stage 0 never computes its forward.
    const paci::schedule bad = paci_test::make_schedule({2, 2, paci::stage_map::loop}, 1, 0, {"", "1F0 1B0"});
    REQUIRE_THROWS_WITH(paci::lower(bad, paci::lowering::eager),
                        "paci::lower: action (1F0) needs 0SEND_F0 but no rank computes its input");
    REQUIRE_THROWS_WITH(paci::lower(bad, paci::lowering::rendezvous_safe),
                        "paci::lower: action (1F0) on rank 1 can never run: the compute order deadlocks (see "
                        "validate())");
}

TEST_CASE("lower: rendezvous_safe refuses a compute order that cannot run", "[unit][core][lower][errors]") {
    // Rank 0 waits for micro-batch 0's gradient, rank 1 for micro-batch 1's input: a cycle.
    const paci::schedule cyclic =
        paci_test::make_schedule({2, 2, paci::stage_map::loop}, 2, 0, {"0F0 0B0 0F1 0B1", "1F1 1B1 1F0 1B0"});
    REQUIRE_THROWS_AS(paci::lower(cyclic, paci::lowering::rendezvous_safe), paci::config_error);
    REQUIRE_THROWS_WITH(paci::lower(cyclic, paci::lowering::rendezvous_safe),
                        "paci::lower: action (0B0) on rank 0 can never run: the compute order deadlocks (see "
                        "validate())");
    // Eager lowering does not run the schedule; the result keeps the cycle, which validate() reports.
    const paci::schedule eager = paci::lower(cyclic, paci::lowering::eager);
    const auto report = paci::validate(eager);
    CHECK(report.structure_ok());
    CHECK_FALSE(report.deadlock_free(paci::send_semantics::buffered));
}

TEST_CASE("lower: every built-in policy lowers to a valid schedule in both modes", "[unit][core][lower][property]") {
    const int P = GENERATE(range(2, 7));
    const int M = GENERATE(range(1, 9));
    const int steps = GENERATE(1, 2);
    for (const auto& [name, compute, fifo] : built_in(P, M, steps)) {
        CAPTURE(name, P, M, steps);
        const int stages = compute.shape.stages;
        const int ranks = compute.shape.ranks;
        const auto T = static_cast<std::size_t>(compute.microbatches);
        // Every edge between consecutive stages on different ranks carries each micro-batch once
        // forward and once backward.
        std::size_t crossings = 0;
        for (int s = 0; s + 1 < stages; ++s)
            crossings += compute.shape.rank_of(s) != compute.shape.rank_of(s + 1) ? 1U : 0U;
        const std::size_t messages = 2U * crossings * T;
        if (ranks > 1) CHECK(crossings == static_cast<std::size_t>(stages - 1));

        for (const paci::lowering mode : {paci::lowering::eager, paci::lowering::rendezvous_safe}) {
            CAPTURE(mode);
            const paci::schedule lowered = paci::lower(compute, mode);
            REQUIRE(lowered.ranks.size() == compute.ranks.size());
            for (std::size_t r = 0; r < lowered.ranks.size(); ++r) CHECK(without_comm(lowered.ranks[r]) == compute.ranks[r]);
            CHECK(lowered.shape == compute.shape);
            CHECK(lowered.microbatches == compute.microbatches);
            CHECK(lowered.steps == compute.steps);
            CHECK(paci_test::count(lowered, paci::op::SEND_F) + paci_test::count(lowered, paci::op::SEND_B) == messages);
            CHECK(paci_test::count(lowered, paci::op::RECV_F) + paci_test::count(lowered, paci::op::RECV_B) == messages);
            CHECK(paci_test::count(lowered, paci::op::SEND_F) == paci_test::count(lowered, paci::op::RECV_F));

            const auto report = paci::validate(lowered);
            INFO(report);
            CHECK(report.valid());
            if (mode == paci::lowering::rendezvous_safe) CHECK(report.deadlock_free(paci::send_semantics::rendezvous));
            CHECK(paci::lower(compute, mode) == lowered); // deterministic
        }
    }
}

TEST_CASE("lower: eager puts each RECV right before its consumer and each SEND right after its producer",
          "[unit][core][lower][property]") {
    const int P = GENERATE(range(2, 6));
    const int M = GENERATE(range(1, 7));
    for (const auto& [name, compute, fifo] : built_in(P, M, 2)) {
        CAPTURE(name, P, M);
        const paci::schedule lowered = paci::lower(compute, paci::lowering::eager);
        for (std::size_t r = 0; r < lowered.ranks.size(); ++r) {
            const auto& prog = lowered.ranks[r];
            for (std::size_t p = 0; p < prog.size(); ++p) {
                const paci::action a = prog[p];
                CAPTURE(r, p, a);
                if (a.kind == paci::op::RECV_F || a.kind == paci::op::RECV_B) {
                    REQUIRE(p + 1 < prog.size());
                    CHECK(consumes(prog[p + 1], a));
                }
                if (fifo && (a.kind == paci::op::SEND_F || a.kind == paci::op::SEND_B)) {
                    // With every stage in micro-batch order, no message waits for another on its
                    // channel: the nearest compute before the SEND (past other SENDs) produced it.
                    std::size_t q = p;
                    while (q > 0 && (prog[q - 1].kind == paci::op::SEND_F || prog[q - 1].kind == paci::op::SEND_B)) --q;
                    REQUIRE(q > 0);
                    CHECK(produces(prog[q - 1], a));
                }
            }
        }
    }
}

TEST_CASE("lower: interleaved schedules lower to valid schedules", "[unit][core][lower][property]") {
    const int ranks = GENERATE(1, 2, 3, 4);
    const int chunks = GENERATE(1, 2, 3);
    const int k = GENERATE(1, 2, 3);
    const paci::interleaved_one_f_one_b policy{.ranks = ranks, .chunks = chunks, .microbatches = k * ranks, .steps = 2};
    CAPTURE(policy);
    const paci::schedule compute = policy.generate();
    const std::size_t expected = ranks > 1 ? 2U * static_cast<std::size_t>(ranks * chunks - 1) *
                                                 static_cast<std::size_t>(compute.microbatches)
                                           : 0U;
    for (const paci::lowering mode : {paci::lowering::eager, paci::lowering::rendezvous_safe}) {
        CAPTURE(mode);
        const paci::schedule lowered = paci::lower(compute, mode);
        CHECK(paci_test::count(lowered, paci::op::SEND_F) + paci_test::count(lowered, paci::op::SEND_B) == expected);
        const auto report = paci::validate(lowered);
        INFO(report);
        CHECK(report.valid());
        if (mode == paci::lowering::rendezvous_safe) CHECK(report.deadlock_free(paci::send_semantics::rendezvous));
    }
}

TEST_CASE("lower: random runnable compute orders lower to valid schedules", "[unit][core][lower][property]") {
    const paci::pipeline_shape shape = GENERATE(paci::pipeline_shape{2, 2, paci::stage_map::loop},
                                                paci::pipeline_shape{3, 3, paci::stage_map::loop},
                                                paci::pipeline_shape{5, 5, paci::stage_map::loop},
                                                paci::pipeline_shape{4, 2, paci::stage_map::loop},
                                                paci::pipeline_shape{6, 3, paci::stage_map::loop},
                                                paci::pipeline_shape{4, 2, paci::stage_map::v},
                                                paci::pipeline_shape{8, 4, paci::stage_map::v},
                                                paci::pipeline_shape{8, 2, paci::stage_map::v},
                                                paci::pipeline_shape{3, 1, paci::stage_map::loop});
    const int T = GENERATE(1, 2, 5);
    const bool split = GENERATE(false, true);
    CAPTURE(shape, T, split);
    std::mt19937 rng(20260607U + static_cast<std::uint32_t>(shape.stages * 100 + shape.ranks * 10 + T));
    for (int trial = 0; trial < 20; ++trial) {
        CAPTURE(trial);
        const paci::schedule compute = random_runnable(shape, T, split, rng);
        INFO(compute);
        REQUIRE(paci::validate(compute).valid());
        const auto eager = paci::validate(paci::lower(compute, paci::lowering::eager));
        INFO(eager);
        CHECK(eager.valid());
        const auto safe = paci::validate(paci::lower(compute, paci::lowering::rendezvous_safe));
        INFO(safe);
        CHECK(safe.valid());
        CHECK(safe.deadlock_free(paci::send_semantics::rendezvous));
    }
}

TEST_CASE("lower: an action on the wrong rank is a config_error", "[unit][core][lower][errors]") {
    // Stage 1 runs on rank 1, but rank 0's program holds 1F0 and 1B0.
    const paci::schedule bad =
        paci_test::make_schedule({2, 2, paci::stage_map::loop}, 1, 0, {"0F0 1F0 1B0 0B0", ""});
    const paci::lowering mode = GENERATE(paci::lowering::rendezvous_safe, paci::lowering::eager);
    CAPTURE(mode);
    REQUIRE_THROWS_AS(paci::lower(bad, mode), paci::config_error);
    REQUIRE_THROWS_WITH(paci::lower(bad, mode), Catch::Matchers::ContainsSubstring("paci::lower: action (1F0)"));
}

// Hostile input (issue 8): the header is checked and the size computed before anything is allocated.

TEST_CASE("lower: negative counts and unknown modes are config errors, not std exceptions",
          "[unit][core][lower][errors]") {
    paci::schedule bad = paci::one_f_one_b<>{.stages = 2, .microbatches = 1, .steps = 1}.generate();
    bad.microbatches = -1; // was std::length_error from a vector of -1 * 2 elements
    REQUIRE_THROWS_WITH(paci::lower(bad), "paci::lower: microbatches (-1) must be >= 0");
    bad.microbatches = 1;
    bad.steps = -3;
    REQUIRE_THROWS_WITH(paci::lower(bad), "paci::lower: steps (-3) must be >= 0");
    bad.steps = 1;
    REQUIRE_THROWS_WITH(paci::lower(bad, static_cast<paci::lowering>(7)),
                        "paci::lower: mode (7) must be lowering::eager or lowering::rendezvous_safe");
}

TEST_CASE("lower: a schedule that claims billions of micro-batches fails fast with the size it would need",
          "[unit][core][lower][errors]") {
    // Two actions, but 32767 stages x (2^31 - 1) micro-batches of producer tables (hundreds of TB).
    const paci::schedule huge = paci_test::make_schedule({32767, 1, paci::stage_map::loop}, 2147483647, 0, {"0F0 0B0"});
    REQUIRE_THROWS_AS(paci::lower(huge), paci::config_error);
    REQUIRE_THROWS_WITH(paci::lower(huge), ContainsSubstring("paci::lower: working memory (2 actions, "));
    REQUIRE_THROWS_WITH(paci::lower(huge), ContainsSubstring("bytes) must be within paci::limits (134217728 actions, "
                                                             "4294967296 bytes); raise them with paci::set_limits"));
}

TEST_CASE("lower: the lowered size is checked against paci::limits before the result is built",
          "[unit][core][lower][errors]") {
    // 1F1B, 2 stages, 3 micro-batches, 1 update: 3 F + 3 B + 1 STEP per stage = 14 actions; lowering
    // adds SEND_F, RECV_F, SEND_B and RECV_B per micro-batch: 14 + 12 = 26.
    const paci::schedule compute = paci::one_f_one_b<>{.stages = 2, .microbatches = 3, .steps = 1}.generate();
    REQUIRE(compute.size() == 14U);
    REQUIRE(paci::lower(compute).size() == 26U);
    {
        const paci::scoped_limits small{{.max_actions = 20, .max_bytes = 1 << 20}};
        REQUIRE_THROWS_WITH(paci::lower(compute),
                            "paci::lower: schedule size (26 actions, 208 bytes) must be within paci::limits (20 actions, "
                            "1048576 bytes); raise them with paci::set_limits");
    }
    {
        const paci::scoped_limits tiny{{.max_actions = 10, .max_bytes = 1 << 20}};
        REQUIRE_THROWS_WITH(paci::lower(compute),
                            "paci::lower: schedule size (14 actions, 112 bytes) must be within paci::limits (10 actions, "
                            "1048576 bytes); raise them with paci::set_limits");
    }
    CHECK(paci::lower(compute).size() == 26U); // the limits are back
}
