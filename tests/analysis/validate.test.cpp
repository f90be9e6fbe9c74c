// Unit tests for include/paci/analysis/validate.hpp (and the diagnostic type of diagnostic.hpp):
// hand-built schedules, each broken in one way, with the exact diagnosis expected (rule, rank,
// position, action, message), and deadlock reports with their wait cycles, under buffered and
// rendezvous sends. Messages are those the header builds; positions are counted by hand.

#include <paci/analysis/diagnostic.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/core/lower.hpp>
#include <paci/policy/one_f_one_b.hpp>

#include "support/catch.hpp"
#include "support/print.hpp"
#include "support/program_text.hpp"

#include <cstdint>
#include <string>
#include <vector>

using Catch::Matchers::ContainsSubstring;

namespace {

using paci::action;
using paci::op;
using paci::rule;
using paci::send_semantics;
using paci_test::make_schedule;
using paci_test::print;

constexpr paci::pipeline_shape one_stage{1, 1, paci::stage_map::loop};
constexpr paci::pipeline_shape two_ranks{2, 2, paci::stage_map::loop};

/// The report of a schedule with exactly one structural error, `expected`.
void check_single_error(const paci::schedule& s, const paci::diagnostic& expected) {
    const auto report = paci::validate(s);
    INFO(report);
    REQUIRE(report.error_count == 1);
    REQUIRE(report.errors.size() == 1);
    CHECK(report.errors[0] == expected);
    CHECK_FALSE(report.structure_ok());
    CHECK_FALSE(report.valid());
    CHECK_FALSE(static_cast<bool>(report));
    CHECK_FALSE(report.deadlock_free(send_semantics::buffered));
    CHECK_FALSE(report.deadlock_free(send_semantics::rendezvous));
    CHECK(report.buffered.message == "not run: the schedule has structural errors");
    CHECK(report.first_error() == print(expected));
    const std::string text = print(report);
    CHECK_THAT(text, ContainsSubstring("1 error:"));
    CHECK_THAT(text, ContainsSubstring(std::string(paci::to_string(expected.broken))));
    CHECK_THAT(text, ContainsSubstring(expected.message));
}

paci::diagnostic diag(rule r, int rank, std::int64_t position, action a, std::string message) {
    return paci::diagnostic{r, rank, position, a, std::move(message)};
}

} // namespace

TEST_CASE("validate: rule and semantics names", "[unit][validate]") {
    const char* names[] = {"placement",      "index_range",    "duplicate",           "missing",
                           "mixed_backward", "forward_order",  "backward_order",      "before_forward",
                           "weight_before_input", "recompute_order", "step_order",    "comm_edge",
                           "comm_order",     "unmatched_send", "unmatched_recv",      "comm_mismatch",
                           "deadlock"};
    for (int k = 0; k < 17; ++k) {
        CAPTURE(k);
        CHECK(paci::to_string(static_cast<rule>(k)) == names[k]);
    }
    CHECK(print(rule::comm_mismatch) == "comm_mismatch");
    CHECK(paci::to_string(send_semantics::buffered) == "buffered");
    CHECK(print(send_semantics::rendezvous) == "rendezvous");
}

TEST_CASE("validate: a diagnostic prints where, what and why", "[unit][validate]") {
    CHECK(print(diag(rule::backward_order, 1, 4, action{op::B, 1, 3}, "text")) == "rank 1, position 4, 1B3: backward_order: text");
    CHECK(print(diag(rule::step_order, 1, -1, action{op::STEP, 1, 0}, "text")) == "rank 1, step_order: text");
    CHECK(print(diag(rule::placement, -1, -1, action{}, "text")) == "placement: text");
}

TEST_CASE("validate: generated and lowered 1F1B schedules are valid", "[unit][validate]") {
    const paci::schedule compute = paci::one_f_one_b<>{.stages = 3, .microbatches = 4, .steps = 2}.generate();
    // The compute-only schedule and its rendezvous-safe lowering run under both semantics.
    for (const auto& s : {compute, paci::lower(compute, paci::lowering::rendezvous_safe)}) {
        const auto report = paci::validate(s);
        INFO(report);
        CHECK(report.valid());
        CHECK(static_cast<bool>(report));
        CHECK(report.structure_ok());
        CHECK(report.error_count == 0);
        CHECK(report.errors.empty());
        CHECK(report.deadlock_free(send_semantics::buffered));
        CHECK(report.deadlock_free(send_semantics::rendezvous));
        CHECK(report.buffered.cycle.empty());
        CHECK(report.first_error().empty());
        CHECK(print(report) == "structure ok; deadlock-free under buffered sends; deadlock-free under rendezvous sends");
    }
    // The eager lowering is valid (buffered); it is not meant for rendezvous sends.
    const auto eager = paci::validate(paci::lower(compute, paci::lowering::eager));
    INFO(eager);
    CHECK(eager.valid());
    CHECK(eager.structure_ok());
    CHECK(eager.deadlock_free(send_semantics::buffered));
}

TEST_CASE("validate: two ranks that each SEND before they RECV deadlock under rendezvous only", "[unit][validate][deadlock]") {
    // Rank 0 sends micro-batch 1 forward while rank 1 sends micro-batch 0's gradient back: each
    // blocking send waits for a peer that is itself blocked in a send.
    const paci::schedule s = make_schedule(two_ranks, 2, 0,
                                           {"0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1",
                                            "1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1"});
    const auto report = paci::validate(s);
    INFO(report);
    CHECK(report.structure_ok());
    CHECK(report.valid());
    CHECK(report.deadlock_free(send_semantics::buffered));
    CHECK_FALSE(report.deadlock_free(send_semantics::rendezvous));

    CHECK(report.buffered.deadlock_free);
    CHECK(report.buffered.message.empty());
    CHECK(report.buffered.cycle.empty());

    const auto& rv = report.rendezvous;
    CHECK(rv.semantics == send_semantics::rendezvous);
    CHECK_FALSE(rv.deadlock_free);
    CHECK_FALSE(rv.waits_on_finished);
    const std::vector<paci::wait_edge> cycle{{0, 3, action{op::SEND_F, 0, 1}, 1}, {1, 3, action{op::SEND_B, 1, 0}, 0}};
    CHECK(rv.cycle == cycle);
    CHECK(rv.message == "deadlock under rendezvous sends: rank 0 waits at position 3 (0SEND_F1) for rank 1 -> rank 1 "
                        "waits at position 3 (1SEND_B0) for rank 0, which closes the cycle");
    CHECK(report.first_error() == rv.message);
    CHECK(print(report) == "structure ok; deadlock-free under buffered sends; " + rv.message);

    // find_deadlock gives the same reports on its own.
    const auto direct = paci::find_deadlock(s, send_semantics::rendezvous);
    CHECK(direct.cycle == cycle);
    CHECK(paci::find_deadlock(s, send_semantics::buffered).deadlock_free);
}

TEST_CASE("validate: a compute-only cross-rank cycle deadlocks under buffered sends", "[unit][validate][deadlock]") {
    // Rank 0 waits for micro-batch 0's gradient from rank 1, which first wants micro-batch 1's input,
    // which rank 0 computes only after that backward.
    const paci::schedule s = make_schedule(two_ranks, 2, 0, {"0F0 0B0 0F1 0B1", "1F1 1B1 1F0 1B0"});
    const auto report = paci::validate(s);
    INFO(report);
    CHECK(report.structure_ok());
    CHECK_FALSE(report.valid());
    CHECK_FALSE(report.deadlock_free(send_semantics::buffered));
    CHECK_FALSE(report.deadlock_free(send_semantics::rendezvous));
    const std::vector<paci::wait_edge> cycle{{0, 1, action{op::B, 0, 0}, 1}, {1, 0, action{op::F, 1, 1}, 0}};
    CHECK(report.buffered.cycle == cycle);
    CHECK_FALSE(report.buffered.waits_on_finished);
    CHECK(report.buffered.message == "deadlock under buffered sends: rank 0 waits at position 1 (0B0) for rank 1 -> "
                                     "rank 1 waits at position 0 (1F1) for rank 0, which closes the cycle");
    CHECK(report.rendezvous.cycle == cycle);
    CHECK(report.first_error() == report.buffered.message);
    CHECK_THAT(print(report), ContainsSubstring("deadlock under buffered sends"));
}

TEST_CASE("validate: a three-rank compute cycle names every rank once", "[unit][validate][deadlock]") {
    // 6 stages on 3 ranks (loop map): rank r holds stages r and r + 3. Each rank runs its first
    // forward, then waits for the next stage's gradient: stage 1 (rank 1), stage 2 (rank 2) and stage
    // 3 (rank 0), none of which has run.
    const paci::schedule s = make_schedule({6, 3, paci::stage_map::loop}, 1, 0,
                                           {"0F0 0B0 3F0 3B0", "1F0 1B0 4F0 4B0", "2F0 2B0 5F0 5B0"});
    const auto report = paci::validate(s);
    INFO(report);
    CHECK(report.structure_ok());
    CHECK_FALSE(report.valid());
    const std::vector<paci::wait_edge> cycle{
        {0, 1, action{op::B, 0, 0}, 1}, {1, 1, action{op::B, 1, 0}, 2}, {2, 1, action{op::B, 2, 0}, 0}};
    CHECK(report.buffered.cycle == cycle);
    CHECK(report.buffered.message ==
          "deadlock under buffered sends: rank 0 waits at position 1 (0B0) for rank 1 -> rank 1 waits at position 1 "
          "(1B0) for rank 2 -> rank 2 waits at position 1 (2B0) for rank 0, which closes the cycle");
}

TEST_CASE("validate: a rank waiting on a cycle is not part of it", "[unit][validate][deadlock]") {
    // Ranks 1 and 2 wait for each other; rank 0 waits for rank 1 from outside the cycle.
    const paci::schedule s = make_schedule({3, 3, paci::stage_map::loop}, 2, 0,
                                           {"0F0 0F1 0B0 0B1", "1F0 1B0 1F1 1B1", "2F1 2B1 2F0 2B0"});
    const auto report = paci::validate(s);
    INFO(report);
    CHECK(report.structure_ok());
    const std::vector<paci::wait_edge> cycle{{1, 1, action{op::B, 1, 0}, 2}, {2, 0, action{op::F, 2, 1}, 1}};
    CHECK(report.buffered.cycle == cycle);
    CHECK_FALSE(report.buffered.waits_on_finished);
    CHECK(report.buffered.message == "deadlock under buffered sends: rank 1 waits at position 1 (1B0) for rank 2 -> "
                                     "rank 2 waits at position 0 (2F1) for rank 1, which closes the cycle");
}

TEST_CASE("validate: find_deadlock reports a wait on a rank that has finished", "[unit][validate][deadlock]") {
    // Structurally broken on purpose (a RECV with no SEND); find_deadlock still explains the hang.
    const paci::schedule s = make_schedule(two_ranks, 1, 0, {"0F0 0B0", "1RECV_F0 1F0 1B0"});
    const auto d = paci::find_deadlock(s, send_semantics::buffered);
    CHECK_FALSE(d.deadlock_free);
    CHECK(d.waits_on_finished);
    CHECK(d.cycle == std::vector<paci::wait_edge>{{1, 0, action{op::RECV_F, 1, 0}, 0}});
    CHECK(d.message == "deadlock under buffered sends: rank 1 waits at position 0 (1RECV_F0) for rank 0, which has finished");
    CHECK(print(d) == d.message);
    CHECK(print(paci::find_deadlock(make_schedule(one_stage, 1, 0, {"0F0 0B0"}), send_semantics::rendezvous)) ==
          "deadlock-free under rendezvous sends");
}

TEST_CASE("validate: missing forward or backward", "[unit][validate]") {
    SECTION("a forward without a backward") {
        check_single_error(make_schedule(two_ranks, 1, 0, {"0F0 0B0", "1F0"}),
                           diag(rule::missing, 1, 0, action{op::F, 1, 0},
                                "stage 1 micro-batch 0 has no backward (B, or I then W)"));
    }
    SECTION("a backward without a forward") {
        check_single_error(make_schedule(one_stage, 1, 0, {"0B0"}),
                           diag(rule::missing, 0, 0, action{op::B, 0, 0}, "stage 0 micro-batch 0 has no forward"));
    }
    SECTION("an input gradient without its weight gradient") {
        check_single_error(make_schedule(one_stage, 1, 0, {"0F0 0I0"}),
                           diag(rule::missing, 0, 1, action{op::I, 0, 0}, "stage 0 micro-batch 0 has I but no W"));
    }
    SECTION("a weight gradient without its input gradient") {
        check_single_error(make_schedule(one_stage, 1, 0, {"0F0 0W0"}),
                           diag(rule::missing, 0, 1, action{op::W, 0, 0}, "stage 0 micro-batch 0 has W but no I"));
    }
    SECTION("a micro-batch nobody runs") {
        // Stage 1 runs nothing for micro-batch 0: no action to blame, so position -1.
        const auto report = paci::validate(make_schedule(two_ranks, 1, 0, {"0F0 0B0", ""}));
        REQUIRE(report.error_count == 1);
        CHECK(report.errors[0] ==
              diag(rule::missing, 1, -1, action{op::F, 1, 0}, "stage 1 micro-batch 0 has no forward"));
        CHECK(report.first_error() == "rank 1, missing: stage 1 micro-batch 0 has no forward");
    }
}

TEST_CASE("validate: order of a micro-batch's actions at a stage", "[unit][validate]") {
    SECTION("a backward before its forward") {
        check_single_error(make_schedule(one_stage, 1, 0, {"0B0 0F0"}),
                           diag(rule::before_forward, 0, 0, action{op::B, 0, 0},
                                "backward of stage 0 micro-batch 0 runs before its forward at position 1"));
    }
    SECTION("a recompute before its forward") {
        check_single_error(make_schedule(one_stage, 1, 0, {"0R0 0F0 0B0"}),
                           diag(rule::before_forward, 0, 0, action{op::R, 0, 0},
                                "recompute of stage 0 micro-batch 0 runs before its forward at position 1"));
    }
    SECTION("a recompute after the backward it serves") {
        check_single_error(make_schedule(one_stage, 1, 0, {"0F0 0B0 0R0"}),
                           diag(rule::recompute_order, 0, 2, action{op::R, 0, 0},
                                "recompute of stage 0 micro-batch 0 runs after the backward it serves at position 1"));
    }
    SECTION("W before I") {
        check_single_error(make_schedule(one_stage, 1, 0, {"0F0 0W0 0I0"}),
                           diag(rule::weight_before_input, 0, 1, action{op::W, 0, 0},
                                "weight gradient of stage 0 micro-batch 0 runs before its input gradient at position 2"));
    }
    SECTION("B and I/W for the same stage and micro-batch") {
        check_single_error(make_schedule(one_stage, 1, 0, {"0F0 0I0 0B0 0W0"}),
                           diag(rule::mixed_backward, 0, 2, action{op::B, 0, 0},
                                "stage 0 micro-batch 0 has both a full backward B and a split backward I/W"));
    }
    SECTION("a duplicate forward") {
        check_single_error(make_schedule(one_stage, 1, 0, {"0F0 0F0 0B0"}),
                           diag(rule::duplicate, 0, 1, action{op::F, 0, 0}, "second 0F0, the first is at position 0"));
    }
    SECTION("a duplicate backward") {
        check_single_error(make_schedule(two_ranks, 1, 0, {"0F0 0B0", "1F0 1B0 1B0"}),
                           diag(rule::duplicate, 1, 2, action{op::B, 1, 0}, "second 1B0, the first is at position 1"));
    }
}

TEST_CASE("validate: order of stages that share a rank", "[unit][validate]") {
    SECTION("forward order with one rank (interleaved)") {
        check_single_error(make_schedule({2, 1, paci::stage_map::loop}, 1, 0, {"1F0 0F0 1B0 0B0"}),
                           diag(rule::forward_order, 0, 0, action{op::F, 1, 0},
                                "forward of stage 1 micro-batch 0 runs before the forward of stage 0 at position 1"));
    }
    SECTION("backward order with one rank (interleaved)") {
        check_single_error(make_schedule({2, 1, paci::stage_map::loop}, 1, 0, {"0F0 1F0 0B0 1B0"}),
                           diag(rule::backward_order, 0, 2, action{op::B, 0, 0},
                                "backward of stage 0 micro-batch 0 runs before the backward of stage 1 at position 3"));
    }
    SECTION("forward order on the v map's turn") {
        // v map, 4 stages on 2 ranks: rank 1 holds stages 1 and 2.
        const paci::pipeline_shape v{4, 2, paci::stage_map::v};
        REQUIRE(paci::validate(make_schedule(v, 1, 0, {"0F0 3F0 3B0 0B0", "1F0 2F0 2B0 1B0"})).valid());
        check_single_error(make_schedule(v, 1, 0, {"0F0 3F0 3B0 0B0", "2F0 1F0 2B0 1B0"}),
                           diag(rule::forward_order, 1, 0, action{op::F, 2, 0},
                                "forward of stage 2 micro-batch 0 runs before the forward of stage 1 at position 1"));
    }
}

TEST_CASE("validate: placement and ranges", "[unit][validate]") {
    SECTION("an action on the wrong rank") {
        const auto report = paci::validate(make_schedule(two_ranks, 1, 0, {"0F0 1F0 1B0 0B0", ""}));
        INFO(report);
        const std::vector<paci::diagnostic> expected{
            diag(rule::placement, 0, 1, action{op::F, 1, 0}, "stage 1 runs on rank 1, not rank 0"),
            diag(rule::placement, 0, 2, action{op::B, 1, 0}, "stage 1 runs on rank 1, not rank 0"),
            // Misplaced actions do not count, so stage 1 has no forward at all.
            diag(rule::missing, 1, -1, action{op::F, 1, 0}, "stage 1 micro-batch 0 has no forward"),
        };
        CHECK(report.errors == expected);
        CHECK(report.error_count == 3);
        CHECK_FALSE(report.valid());
        CHECK_THAT(print(report), ContainsSubstring("3 errors:"));
        CHECK_THAT(print(report), ContainsSubstring("placement"));
    }
    SECTION("a stage out of range") {
        check_single_error(make_schedule(one_stage, 1, 0, {"0F0 0B0 3F0"}),
                           diag(rule::placement, 0, 2, action{op::F, 3, 0}, "stage 3 is out of range [0, 1)"));
    }
    SECTION("a micro-batch out of range") {
        check_single_error(make_schedule(one_stage, 1, 0, {"0F0 0B0 0F1"}),
                           diag(rule::index_range, 0, 2, action{op::F, 0, 1}, "micro-batch 1 is out of range [0, 1)"));
    }
    SECTION("a negative micro-batch") {
        paci::schedule s = make_schedule(one_stage, 1, 0, {"0F0 0B0"});
        s.ranks[0].push_back(action{op::B, 0, -1});
        check_single_error(s, diag(rule::index_range, 0, 2, action{op::B, 0, -1}, "micro-batch -1 is out of range [0, 1)"));
    }
}

TEST_CASE("validate: an inconsistent shape is one error and nothing else runs", "[unit][validate]") {
    SECTION("fewer rank programs than ranks") {
        const auto report = paci::validate(make_schedule(two_ranks, 1, 0, {"0F0 0B0"}));
        REQUIRE(report.error_count == 1);
        CHECK(report.errors[0] ==
              diag(rule::placement, -1, -1, action{},
                   "schedule shape pipeline_shape{.stages = 2, .ranks = 2, .map = loop} with 1 rank programs and 1 "
                   "micro-batches is inconsistent"));
        CHECK_FALSE(report.valid());
        CHECK_FALSE(report.deadlock_free(send_semantics::rendezvous));
        CHECK(print(report) == "1 error:\n  placement: schedule shape pipeline_shape{.stages = 2, .ranks = 2, .map = "
                               "loop} with 1 rank programs and 1 micro-batches is inconsistent");
    }
    SECTION("stages not a multiple of ranks") {
        paci::schedule s = make_schedule(two_ranks, 1, 0, {"0F0 0B0", "1F0 1B0"});
        s.shape.stages = 3;
        const auto report = paci::validate(s);
        REQUIRE(report.error_count == 1);
        CHECK(report.errors[0].broken == rule::placement);
        CHECK_THAT(report.errors[0].message, ContainsSubstring("pipeline_shape{.stages = 3, .ranks = 2"));
    }
    SECTION("negative micro-batches") {
        paci::schedule s = make_schedule(one_stage, 1, 0, {""});
        s.microbatches = -1;
        const auto report = paci::validate(s);
        REQUIRE(report.error_count == 1);
        CHECK_THAT(report.errors[0].message, ContainsSubstring("with 1 rank programs and -1 micro-batches is inconsistent"));
    }
}

TEST_CASE("validate: STEP ordinals and counts", "[unit][validate]") {
    SECTION("an ordinal skipped") {
        check_single_error(make_schedule(one_stage, 1, 2, {"0F0 0B0 0STEP0 0STEP2"}),
                           diag(rule::step_order, 0, 3, action{op::STEP, 0, 2}, "update ordinal 2 of stage 0, expected 1"));
    }
    SECTION("unequal counts between stages, none declared") {
        // With steps = 0 the count of stage 0 is the reference.
        check_single_error(make_schedule(two_ranks, 1, 0, {"0F0 0B0 0STEP0 0STEP1", "1F0 1B0 1STEP0"}),
                           diag(rule::step_order, 1, 2, action{op::STEP, 1, 0}, "stage 1 has 1 STEP actions, expected 2"));
    }
    SECTION("a stage without its STEP") {
        const paci::schedule s = make_schedule(two_ranks, 1, 1, {"0F0 0B0 0STEP0", "1F0 1B0"});
        check_single_error(s, diag(rule::step_order, 1, -1, action{op::STEP, 1, 0}, "stage 1 has 0 STEP actions, expected 1"));
        CHECK(paci::validate(s).first_error() == "rank 1, step_order: stage 1 has 0 STEP actions, expected 1");
    }
    SECTION("more STEPs than declared") {
        check_single_error(make_schedule(one_stage, 1, 1, {"0F0 0B0 0STEP0 0STEP1"}),
                           diag(rule::step_order, 0, 3, action{op::STEP, 0, 1}, "stage 0 has 2 STEP actions, expected 1"));
    }
}

TEST_CASE("validate: communication pairing", "[unit][validate][comm]") {
    SECTION("a RECV without a SEND") {
        check_single_error(make_schedule(two_ranks, 1, 0, {"0F0 0SEND_F0 0RECV_B0 0B0", "1RECV_F0 1F0 1B0"}),
                           diag(rule::unmatched_recv, 0, 2, action{op::RECV_B, 0, 0}, "no 1SEND_B0 on rank 1"));
    }
    SECTION("a forward SEND without a RECV") {
        check_single_error(make_schedule(two_ranks, 1, 0, {"0F0 0SEND_F0 0RECV_B0 0B0", "1F0 1B0 1SEND_B0"}),
                           diag(rule::unmatched_send, 0, 1, action{op::SEND_F, 0, 0}, "no 1RECV_F0 on rank 1"));
    }
    SECTION("a gradient SEND without a RECV") {
        check_single_error(make_schedule(two_ranks, 1, 0, {"0F0 0SEND_F0 0B0", "1RECV_F0 1F0 1B0 1SEND_B0"}),
                           diag(rule::unmatched_send, 1, 3, action{op::SEND_B, 1, 0}, "no 0RECV_B0 on rank 0"));
    }
    SECTION("a cross-rank edge without any pair in a lowered schedule") {
        check_single_error(make_schedule(two_ranks, 1, 0, {"0F0 0RECV_B0 0B0", "1F0 1B0 1SEND_B0"}),
                           diag(rule::missing, 0, 0, action{op::F, 0, 0},
                                "the output of stage 0 micro-batch 0 crosses to rank 1 but has no SEND_F/RECV_F pair"));
    }
    SECTION("a SEND before the forward that produces it") {
        check_single_error(make_schedule(two_ranks, 1, 0, {"0SEND_F0 0F0 0RECV_B0 0B0", "1RECV_F0 1F0 1B0 1SEND_B0"}),
                           diag(rule::comm_order, 0, 0, action{op::SEND_F, 0, 0}, "sent before its forward at position 1"));
    }
    SECTION("a RECV after the backward that needs it") {
        check_single_error(make_schedule(two_ranks, 1, 0, {"0F0 0SEND_F0 0B0 0RECV_B0", "1RECV_F0 1F0 1B0 1SEND_B0"}),
                           diag(rule::comm_order, 0, 3, action{op::RECV_B, 0, 0}, "received after its backward at position 2"));
    }
    SECTION("communication between stages that share a rank") {
        const auto report = paci::validate(
            make_schedule({2, 1, paci::stage_map::loop}, 1, 0, {"0F0 0SEND_F0 1RECV_F0 1F0 1B0 0B0"}));
        INFO(report);
        const std::vector<paci::diagnostic> expected{
            diag(rule::comm_edge, 0, 1, action{op::SEND_F, 0, 0}, "stages 0 and 1 share rank 0; no send needed"),
            diag(rule::comm_edge, 0, 2, action{op::RECV_F, 1, 0}, "stages 0 and 1 share rank 0; no receive needed"),
        };
        CHECK(report.errors == expected);
        CHECK(report.error_count == 2);
    }
    SECTION("a gradient sent upstream of the first stage") {
        check_single_error(
            make_schedule(two_ranks, 1, 0, {"0F0 0SEND_F0 0RECV_B0 0B0 0SEND_B0", "1RECV_F0 1F0 1B0 1SEND_B0"}),
            diag(rule::comm_edge, 0, 4, action{op::SEND_B, 0, 0}, "the first stage has no previous stage to send to"));
    }
    SECTION("a channel whose sends and receives pair up differently") {
        // Rank 0 sends micro-batch 1 before micro-batch 0; rank 1 receives 0 first.
        check_single_error(make_schedule(two_ranks, 2, 0,
                                         {"0F0 0F1 0SEND_F1 0SEND_F0 0RECV_B0 0B0 0RECV_B1 0B1",
                                          "1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1"}),
                           diag(rule::comm_mismatch, 0, 2, action{op::SEND_F, 0, 1},
                                "send number 0 from rank 0 to rank 1 meets 1RECV_F0 at position 0 of rank 1, expected "
                                "1RECV_F1"));
    }
}

TEST_CASE("validate: keeps the first 100 errors and counts the rest", "[unit][validate]") {
    std::string prog;
    for (int m = 0; m < 150; ++m) prog += "0F" + std::to_string(m) + " ";
    const auto report = paci::validate(make_schedule(one_stage, 150, 0, {prog}));
    CHECK(report.error_count == 150);
    CHECK(report.errors.size() == paci::validation_report::max_kept);
    CHECK(paci::validation_report::max_kept == 100);
    CHECK(report.errors.back() == diag(rule::missing, 0, 99, action{op::F, 0, 99},
                                       "stage 0 micro-batch 99 has no backward (B, or I then W)"));
    const std::string text = print(report);
    CHECK_THAT(text, ContainsSubstring("150 errors:"));
    CHECK_THAT(text, ContainsSubstring("\n  ... 50 more"));
}

// Hostile input (issue 8).

TEST_CASE("validate: find_deadlock refuses actions that name a stage outside the pipeline", "[unit][validate][errors]") {
    // A RECV_F at the first stage would wait for rank_of(-1): a rank that does not exist (heap overflow).
    const paci::schedule first = make_schedule(two_ranks, 1, 0, {"0RECV_F0 0F0 0B0", "1F0 1B0"});
    REQUIRE_THROWS_WITH(paci::find_deadlock(first, send_semantics::buffered),
                        "paci::find_deadlock: action at rank 0, position 0 (0RECV_F0) must talk to a stage in [0, 2), "
                        "not -1");
    REQUIRE_THROWS_AS(paci::find_deadlock(first, send_semantics::rendezvous), paci::config_error);
    paci::schedule outside = make_schedule(two_ranks, 1, 0, {"0F0 0B0", "1F0 1B0"});
    outside.ranks[1].push_back(action{op::F, 7, 0});
    REQUIRE_THROWS_WITH(paci::find_deadlock(outside, send_semantics::buffered),
                        "paci::find_deadlock: action at rank 1, position 2 (7F0) must name a stage in [0, 2)");
    // validate() reports the same schedules as data.
    CHECK(paci::validate(first).errors.front().broken == rule::comm_edge);
    CHECK(paci::validate(outside).errors.front().broken == rule::placement);
}

TEST_CASE("validate: a schedule whose tables would pass paci::limits is refused with the size", "[unit][validate][errors]") {
    const paci::schedule huge = make_schedule({32767, 1, paci::stage_map::loop}, 2147483647, 0, {"0F0 0B0"});
    REQUIRE_THROWS_WITH(paci::validate(huge), ContainsSubstring("paci::validate: working memory (2 actions, "));
    REQUIRE_THROWS_WITH(paci::validate(huge), ContainsSubstring("must be within paci::limits"));
}

TEST_CASE("validate: an action whose op is none of the ten is a diagnostic; running it is a config error",
          "[unit][validate][errors]") {
    paci::schedule s = make_schedule(one_stage, 1, 0, {"0F0 0B0"});
    action bogus{op::F, 0, 0};
    bogus.kind = static_cast<op>(42); // indexed the per-op tables past their end
    s.ranks[0].insert(s.ranks[0].begin() + 1, bogus);
    const auto report = paci::validate(s);
    REQUIRE(report.error_count == 1U);
    CHECK(report.errors.front() ==
          diag(rule::unknown_op, 0, 1, bogus, "op 42 is none of F, B, I, W, R, STEP, SEND_F, RECV_F, SEND_B, RECV_B"));
    CHECK(paci::to_string(rule::unknown_op) == "unknown_op");
    REQUIRE_THROWS_WITH(paci::find_deadlock(s, send_semantics::buffered),
                        "paci::find_deadlock: op of the action at rank 0, position 1 (42) must be one of the 10 ops");
    REQUIRE_THROWS_WITH(paci::lower(s), "paci::lower: op of the action at rank 0, position 1 (42) must be one of the 10 ops");
    REQUIRE_THROWS_WITH(paci::replay(s), "paci::replay: op of the action at rank 0, position 1 (42) must be one of the 10 ops");
}
