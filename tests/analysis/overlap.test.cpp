// Overlapped pairs (`action::overlap_next`, PyTorch's `OVERLAP_F_B`) in the analyses: validate()'s
// `overlap_pair` diagnostics for every malformed pair, lowering that keeps communication off the
// pair's inside, the deadlock search (a pair proceeds when both members can), and replay and memory
// (members in order). Schedules are hand-built in PyTorch's text (`(1F1;1B0)` is one pair); positions
// and messages are counted and written by hand from the headers' documented rules.

#include <paci/analysis/memory.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/core/dataflow.hpp>
#include <paci/core/error.hpp>
#include <paci/core/lower.hpp>

#include "analysis/pytorch_fixtures.hpp"
#include "support/catch.hpp"
#include "support/print.hpp"
#include "support/program_text.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using paci::action;
using paci::op;
using paci::rule;
using paci::send_semantics;
using paci_test::make_schedule;

constexpr paci::pipeline_shape two_ranks{2, 2, paci::stage_map::loop};
constexpr paci::pipeline_shape three_ranks{3, 3, paci::stage_map::loop};

/// 2 stages on 2 ranks, 2 micro-batches; rank 1 (the last stage) overlaps F(1,1) with B(1,0).
paci::schedule last_stage_pair() {
    return make_schedule(two_ranks, 2, 0, {"0F0 0F1 0B0 0B1", "1F0 (1F1;1B0) 1B1"});
}

/// 3 stages on 3 ranks, 2 micro-batches; the middle rank overlaps F(1,1) with B(1,0), so both members
/// receive from another rank and both send to one.
paci::schedule middle_stage_pair() {
    return make_schedule(three_ranks, 2, 0, {"0F0 0F1 0B0 0B1", "1F0 (1F1;1B0) 1B1", "2F0 2B0 2F1 2B1"});
}

paci::diagnostic diag(rule r, int rank, std::int64_t position, action a, std::string message) {
    return paci::diagnostic{r, rank, position, a, std::move(message)};
}

/// The report of a schedule whose only structural error is `expected`.
void check_single_error(const paci::schedule& s, const paci::diagnostic& expected) {
    const auto report = paci::validate(s);
    INFO(report);
    REQUIRE(report.error_count == 1);
    CHECK(report.errors[0] == expected);
    CHECK_FALSE(report.valid());
}

std::string lower_error(const paci::schedule& s, paci::lowering mode) {
    try {
        static_cast<void>(paci::lower(s, mode));
    } catch (const paci::config_error& e) {
        return e.what();
    }
    FAIL("lower did not throw");
    return {};
}

} // namespace

TEST_CASE("overlap: rule names", "[unit][overlap][validate]") {
    CHECK(paci::to_string(rule::overlap_pair) == "overlap_pair");
    CHECK(paci::to_string(rule::microbatch_mismatch) == "microbatch_mismatch");
    CHECK(paci_test::print(rule::overlap_pair) == "overlap_pair");
    // Appended after the existing rules: their numbers are unchanged.
    CHECK(static_cast<int>(rule::unknown_op) == 17);
    CHECK(static_cast<int>(rule::overlap_pair) == 18);
    CHECK(static_cast<int>(rule::microbatch_mismatch) == 19);
}

TEST_CASE("overlap: a well-formed pair validates, and so do both of its lowerings", "[unit][overlap][validate]") {
    for (const paci::schedule& s : {last_stage_pair(), middle_stage_pair()}) {
        CAPTURE(s);
        const auto report = paci::validate(s);
        INFO(report);
        CHECK(report.valid());
        CHECK(report.deadlock_free(send_semantics::rendezvous));
        for (const paci::lowering mode : {paci::lowering::eager, paci::lowering::rendezvous_safe}) {
            CAPTURE(mode);
            const paci::schedule lowered = paci::lower(s, mode);
            const auto lowered_report = paci::validate(lowered);
            INFO(lowered_report);
            CHECK(lowered_report.valid());
            if (mode == paci::lowering::rendezvous_safe) CHECK(lowered_report.deadlock_free(send_semantics::rendezvous));
        }
    }
}

TEST_CASE("overlap: lowering receives both members' inputs before the pair and sends both outputs after it",
          "[unit][overlap][lower]") {
    const paci::schedule s = middle_stage_pair();
    for (const paci::lowering mode : {paci::lowering::eager, paci::lowering::rendezvous_safe}) {
        CAPTURE(mode);
        const paci::schedule lowered = paci::lower(s, mode);
        const auto& prog = lowered.ranks[1];
        CAPTURE(prog);
        const auto opener = std::find(prog.begin(), prog.end(), paci::overlapped(action{op::F, 1, 1}));
        REQUIRE(opener != prog.end());
        const auto p = static_cast<std::size_t>(opener - prog.begin());
        REQUIRE(p >= 2);
        REQUIRE(p + 3 < prog.size());
        // Nothing between the members.
        CHECK(prog[p + 1] == action{op::B, 1, 0});
        // F(1,1) takes stage 0's activation and B(1,0) stage 2's gradient: both RECVs right before.
        std::vector<action> before{prog[p - 2], prog[p - 1]};
        std::vector<action> want_before{{op::RECV_F, 1, 1}, {op::RECV_B, 1, 0}};
        std::sort(before.begin(), before.end(), [](auto x, auto y) { return paci::to_string(x) < paci::to_string(y); });
        std::sort(want_before.begin(), want_before.end(), [](auto x, auto y) { return paci::to_string(x) < paci::to_string(y); });
        CHECK(before == want_before);
        // F(1,1) feeds stage 2 and B(1,0) stage 0: both SENDs right after.
        std::vector<action> after{prog[p + 2], prog[p + 3]};
        std::vector<action> want_after{{op::SEND_F, 1, 1}, {op::SEND_B, 1, 0}};
        std::sort(after.begin(), after.end(), [](auto x, auto y) { return paci::to_string(x) < paci::to_string(y); });
        std::sort(want_after.begin(), want_after.end(), [](auto x, auto y) { return paci::to_string(x) < paci::to_string(y); });
        CHECK(after == want_after);
    }
    // Eager, by hand: rank 1 receives F(1,0)'s input, sends its output, then the pair's two RECVs in
    // program order, the pair, its two SENDs (rank 0's RECV_B0 is counted before rank 2's RECV_F1),
    // and B(1,1) with its RECV and SEND.
    const auto eager = paci::lower(s, paci::lowering::eager);
    CHECK(eager.ranks[1] ==
          paci_test::program("1RECV_F0 1F0 1SEND_F0 1RECV_F1 1RECV_B0 (1F1;1B0) 1SEND_B0 1SEND_F1 1RECV_B1 1B1 1SEND_B1"));
}

TEST_CASE("overlap: validate names the rank, position, stage and micro-batch of a malformed pair", "[unit][overlap][validate]") {
    SECTION("the flag on an action that is not a forward") {
        check_single_error(make_schedule(two_ranks, 2, 0, {"0F0 0F1 0B0 0B1", "1F0 1F1 (1B0;1B1)"}),
                           diag(rule::overlap_pair, 1, 2, paci::overlapped(action{op::B, 1, 0}),
                                "B of stage 1 micro-batch 0 opens an overlapped pair, which only a forward F may"));
    }
    SECTION("the flag on the last action of a program") {
        paci::schedule s = make_schedule(paci::pipeline_shape{1, 1, paci::stage_map::loop}, 2, 0, {"0F0 0B0 0F1"});
        s.ranks[0][2].overlap_next = true;
        const auto report = paci::validate(s);
        INFO(report);
        REQUIRE(report.errors.size() == 2);
        CHECK(report.errors[0] == diag(rule::overlap_pair, 0, 2, paci::overlapped(action{op::F, 0, 1}),
                                       "F of stage 0 micro-batch 1 opens an overlapped pair but is the last action of its "
                                       "program"));
        CHECK(report.errors[1].broken == rule::missing); // and micro-batch 1 has no backward
    }
    SECTION("a second member that is not a backward") {
        check_single_error(make_schedule(two_ranks, 2, 0, {"0F0 0F1 0B0 0B1", "(1F0;1F1) 1B0 1B1"}),
                           diag(rule::overlap_pair, 1, 1, action{op::F, 1, 1},
                                "F of stage 1 micro-batch 1 is the second member of the overlapped pair 1F0 opens, which "
                                "must be a backward B or I"));
    }
    SECTION("a second member that opens a pair itself") {
        paci::schedule s = last_stage_pair();
        s.ranks[1][2].overlap_next = true; // 1B0, second member of (1F1;1B0), flagged: (1F1;1B0;1B1)
        check_single_error(s, diag(rule::overlap_pair, 1, 2, paci::overlapped(action{op::B, 1, 0}),
                                   "B of stage 1 micro-batch 0 is the second member of the overlapped pair 1F1 opens and "
                                   "opens another pair"));
    }
    SECTION("a member that is communication") {
        paci::schedule s = paci::lower(last_stage_pair(), paci::lowering::eager);
        // Rank 0: 0F0 0SEND_F0 ...: flag 0F0, so its partner would be the SEND.
        REQUIRE(s.ranks[0][1] == action{op::SEND_F, 0, 0});
        s.ranks[0][0].overlap_next = true;
        check_single_error(s, diag(rule::overlap_pair, 0, 1, action{op::SEND_F, 0, 0},
                                   "SEND_F of stage 0 micro-batch 0 is communication, which cannot be a member of an "
                                   "overlapped pair"));
        // The flag on the SEND itself.
        paci::schedule t = paci::lower(last_stage_pair(), paci::lowering::eager);
        t.ranks[0][1].overlap_next = true;
        check_single_error(t, diag(rule::overlap_pair, 0, 1, paci::overlapped(action{op::SEND_F, 0, 0}),
                                   "SEND_F of stage 0 micro-batch 0 is communication, which cannot be a member of an "
                                   "overlapped pair"));
    }
    SECTION("a member on another rank's stage") {
        const auto report =
            paci::validate(make_schedule(two_ranks, 2, 0, {"0F0 0F1 0B1", "1F0 (1F1;0B0) 1B0 1B1"}));
        INFO(report);
        REQUIRE_FALSE(report.errors.empty());
        CHECK(report.errors[0] == diag(rule::overlap_pair, 1, 2, action{op::B, 0, 0},
                                       "stage 0 runs on rank 0, not rank 1, which runs the overlapped pair it is a member of"));
        // The misplaced backward does not count, so stage 0 lacks it (and nothing else is blamed).
        CHECK(report.error_count == 2);
        CHECK(report.errors[1] ==
              diag(rule::missing, 0, 0, action{op::F, 0, 0}, "stage 0 micro-batch 0 has no backward (B, or I then W)"));
    }
    SECTION("a backward paired with its own forward") {
        check_single_error(make_schedule(two_ranks, 2, 0, {"0F0 0F1 0B0 0B1", "(1F0;1B0) 1F1 1B1"}),
                           diag(rule::overlap_pair, 1, 1, action{op::B, 1, 0},
                                "B of stage 1 micro-batch 0 needs the output of 1F0, the forward it is paired with: the two "
                                "cannot run concurrently"));
    }
    SECTION("a backward paired with another stage's forward of its micro-batch (v map, stages 1 and 2 on rank 1)") {
        // B(1,0) needs stage 2's gradient of micro-batch 0, which needs F(2,0): the pair (2F0;1B0)
        // cannot overlap even though the members are of different stages.
        const paci::pipeline_shape v{4, 2, paci::stage_map::v};
        const auto report = paci::validate(make_schedule(v, 1, 0, {"0F0 3F0 3B0 0B0", "1F0 (2F0;1B0) 2B0"}));
        INFO(report);
        REQUIRE_FALSE(report.errors.empty());
        CHECK(report.errors[0] == diag(rule::overlap_pair, 1, 2, action{op::B, 1, 0},
                                       "B of stage 1 micro-batch 0 needs the output of 2F0, the forward it is paired with: "
                                       "the two cannot run concurrently"));
    }
}

TEST_CASE("overlap: lower refuses a malformed pair with the same sentence", "[unit][overlap][lower][errors]") {
    for (const paci::lowering mode : {paci::lowering::eager, paci::lowering::rendezvous_safe}) {
        CAPTURE(mode);
        CHECK(lower_error(make_schedule(two_ranks, 2, 0, {"0F0 0F1 0B0 0B1", "1F0 1F1 (1B0;1B1)"}), mode) ==
              "paci::lower: action (1B0) B of stage 1 micro-batch 0 opens an overlapped pair, which only a forward F may");
        CHECK(lower_error(make_schedule(two_ranks, 2, 0, {"0F0 0F1 0B0 0B1", "(1F0;1B0) 1F1 1B1"}), mode) ==
              "paci::lower: action (1B0) B of stage 1 micro-batch 0 needs the output of 1F0, the forward it is paired "
              "with: the two cannot run concurrently");
        // lower checks the pair's form, not the rest of the schedule (B(0,1) before F(0,1) is validate's).
        paci::schedule last = make_schedule(paci::pipeline_shape{1, 1, paci::stage_map::loop}, 2, 0, {"0F0 0B0 0B1 0F1"});
        last.ranks[0][3].overlap_next = true;
        CHECK(lower_error(last, mode) == "paci::lower: action (0F1) F of stage 0 micro-batch 1 opens an overlapped pair "
                                         "but is the last action of its program");
        paci::schedule comm = last_stage_pair();
        comm.ranks[1].insert(comm.ranks[1].begin() + 2, action{op::SEND_B, 1, 0});
        CHECK(lower_error(comm, mode) == "paci::lower: action (1SEND_B0) SEND_B of stage 1 micro-batch 0 is communication, "
                                         "which cannot be a member of an overlapped pair");
    }
}

TEST_CASE("overlap: a pair proceeds only when both members can", "[unit][overlap][deadlock]") {
    // Rank 0 overlaps F(0,1) with B(0,0); B(0,0) needs B(1,0), which rank 1 runs after F(1,1), which needs
    // F(0,1)'s output. In order (F first) this runs; as a pair, whose outputs appear at its end, it
    // cannot: rank 0 waits at B(0,0) (position 2) for rank 1, rank 1 at F(1,1) (position 1) for rank 0.
    const paci::schedule in_order = paci_test::make_schedule(two_ranks, 2, 0, {"0F0 0F1 0B0 0B1", "1F0 1F1 1B0 1B1"});
    const paci::schedule paired = paci_test::make_schedule(two_ranks, 2, 0, {"0F0 (0F1;0B0) 0B1", "1F0 1F1 1B0 1B1"});
    CHECK(paci::validate(in_order).valid());
    CHECK(paci::validate(paired).structure_ok());
    for (const send_semantics sem : {send_semantics::buffered, send_semantics::rendezvous}) {
        CAPTURE(sem);
        CHECK(paci::find_deadlock(in_order, sem).deadlock_free);
        const paci::deadlock_report d = paci::find_deadlock(paired, sem);
        CHECK_FALSE(d.deadlock_free);
        CHECK_FALSE(d.waits_on_finished);
        const std::vector<paci::wait_edge> cycle{{0, 2, action{op::B, 0, 0}, 1}, {1, 1, action{op::F, 1, 1}, 0}};
        CHECK(d.cycle == cycle);
        CHECK(d.message == "deadlock under " + std::string(paci::to_string(sem)) +
                               " sends: rank 0 waits at position 2 (0B0) for rank 1 -> rank 1 waits at position 1 (1F1) "
                               "for rank 0, which closes the cycle");
    }
    // Lowered, the deadlock stays: rendezvous-safe lowering cannot place it.
    CHECK_THROWS_AS(paci::lower(paired), paci::config_error);
    // A pair whose members' inputs are both there runs as one step.
    CHECK(paci::find_deadlock(last_stage_pair(), send_semantics::buffered).deadlock_free);
}

TEST_CASE("overlap: replay and memory run a pair's members in order", "[unit][overlap][replay][memory]") {
    // Rank 1 stores F(1,0), then the pair: F(1,1) stores a second micro-batch before B(1,0) releases the
    // first. A rank running the two concurrently holds both: peak 2. The flags do not change versions.
    const paci::schedule s = last_stage_pair();
    paci::schedule plain = s;
    for (auto& prog : plain.ranks)
        for (auto& a : prog) a.overlap_next = false;
    const paci::replay_result r = paci::replay(s);
    CHECK(r.records == paci::replay(plain).records);
    CHECK(r.stored_timeline[1] == std::vector<std::int32_t>{1, 2, 1, 0});
    const paci::memory_report m = paci::memory_of(r);
    CHECK(m.rank_peak_stored[1] == 2);
    CHECK(m.rank_peak_activations[1] == 2);
    CHECK(m.peak_activations == std::vector<int>{2, 2});
}
