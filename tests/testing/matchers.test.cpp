// Unit tests for include/paci/testing/matchers.hpp: each matcher accepts a good input (through
// REQUIRE_THAT, as users write it) and rejects a bad one (through match(), so the test can check the
// false result), and after a failed match its description names the problem.

#include "support/catch.hpp"
#include "support/program_text.hpp"

#include <paci/testing/matchers.hpp>

#include <paci/analysis/drift.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/core/lower.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>

#include <cstddef>
#include <string>
#include <vector>

using Catch::Matchers::ContainsSubstring;

namespace {

/// 1F1B with 2 stages and 3 micro-batches; its eager lowering sends before receiving on both ranks.
paci::schedule small_1f1b() { return paci::one_f_one_b<>{.stages = 2, .microbatches = 3, .steps = 1}.generate(); }

/// Stage 1 never runs the backward of micro-batch 0.
paci::schedule missing_backward() {
    return paci_test::make_schedule({2, 2, paci::stage_map::loop}, 1, 0, {"0F0 0B0", "1F0"});
}

/// PACI, 4 stages, an update per micro-batch, 4 micro-batches. At stage 0 every forward reads
/// version 0 (4 forwards fill the cap before any backward) and backward m reads version m (after m
/// updates), so micro-batch 3 crosses 3 updates, the bound ceil((P - 1 - 0) / 1) = 3.
paci::replay_result paci_replay() {
    const paci::paci_policy<> policy{.stages = 4, .microbatches = 1, .steps = 4};
    return paci::replay(policy.generate(), policy.controller());
}

} // namespace

TEST_CASE("matchers: is_valid", "[unit][testing][matchers]") {
    REQUIRE_THAT(small_1f1b(), paci::testing::is_valid());
    REQUIRE_THAT(paci::lower(small_1f1b(), paci::lowering::eager), paci::testing::is_valid());
    REQUIRE_THAT(paci::lower(small_1f1b(), paci::lowering::rendezvous_safe), paci::testing::is_valid());

    const auto m = paci::testing::is_valid();
    CHECK(m.describe() == "is a valid schedule");
    CHECK_FALSE(m.match(missing_backward()));
    CHECK(m.describe() == "is a valid schedule (1 error: rank 1, position 0, 1F0: missing: stage 1 micro-batch 0 has no "
                          "backward (B, or I then W))");

    // A compute order that cannot run is structurally fine but not valid.
    const auto cyclic = paci_test::make_schedule({2, 2, paci::stage_map::loop}, 2, 0, {"0F0 0B0 0F1 0B1", "1F1 1B1 1F0 1B0"});
    const auto m2 = paci::testing::is_valid();
    CHECK_FALSE(m2.match(cyclic));
    CHECK_THAT(m2.describe(), ContainsSubstring("deadlock under buffered sends: rank 0 waits at position 1 (0B0)"));
}

TEST_CASE("matchers: is_deadlock_free", "[unit][testing][matchers]") {
    const paci::schedule eager = paci::lower(small_1f1b(), paci::lowering::eager);
    const paci::schedule safe = paci::lower(small_1f1b(), paci::lowering::rendezvous_safe);

    REQUIRE_THAT(eager, paci::testing::is_deadlock_free());
    REQUIRE_THAT(eager, paci::testing::is_deadlock_free(paci::send_semantics::buffered));
    REQUIRE_THAT(safe, paci::testing::is_deadlock_free(paci::send_semantics::rendezvous));

    const auto rv = paci::testing::is_deadlock_free(paci::send_semantics::rendezvous);
    CHECK(rv.describe() == "is deadlock-free under rendezvous sends");
    CHECK_FALSE(rv.match(eager));
    CHECK(rv.describe() == "is deadlock-free under rendezvous sends (deadlock under rendezvous sends: rank 0 waits at "
                           "position 3 (0SEND_F1) for rank 1 -> rank 1 waits at position 3 (1SEND_B0) for rank 0, which "
                           "closes the cycle)");

    // A structurally broken schedule is not deadlock-free either; the description says why.
    const auto buf = paci::testing::is_deadlock_free(paci::send_semantics::buffered);
    CHECK_FALSE(buf.match(missing_backward()));
    CHECK_THAT(buf.describe(), ContainsSubstring("is deadlock-free under buffered sends (1 error: rank 1, position 0, 1F0: missing"));
}

TEST_CASE("matchers: has_drift_at_most on a hand-made replay", "[unit][testing][matchers]") {
    paci::replay_result r;
    r.stages = 2;
    r.microbatches = 2;
    r.records.assign(4, paci::version_record{});
    // index stage * microbatches + microbatch
    const auto set = [&](std::size_t i, int forward, int backward) {
        r.records[i].forward = forward;
        r.records[i].backward = backward;
    };
    set(0, 0, 0);
    set(1, 0, 2);  // stage 0, micro-batch 1: drift 2
    set(2, 1, 1);
    set(3, -1, 5); // forward missing: no drift to speak of

    REQUIRE_THAT(r, paci::testing::has_drift_at_most(2));
    REQUIRE_THAT(r, paci::testing::has_drift_at_most(5));

    const auto m = paci::testing::has_drift_at_most(1);
    CHECK(m.describe() == "has drift at most 1");
    CHECK_FALSE(m.match(r));
    CHECK(m.describe() == "has drift at most 1 (stage 0 micro-batch 1 read version 0 in its forward and 2 in its backward)");
    // A later successful match clears the detail.
    CHECK(m.match(paci::replay_result{}));
    CHECK(m.describe() == "has drift at most 1");
}

TEST_CASE("matchers: has_drift_at_most on a replayed PACI schedule", "[unit][testing][matchers]") {
    const paci::replay_result r = paci_replay();
    REQUIRE_THAT(r, paci::testing::has_drift_at_most(3));
    const auto m = paci::testing::has_drift_at_most(2);
    CHECK_FALSE(m.match(r));
    CHECK(m.describe() == "has drift at most 2 (stage 0 micro-batch 3 read version 0 in its forward and 3 in its backward)");
}

TEST_CASE("matchers: stays_within_bounds", "[unit][testing][matchers]") {
    SECTION("hand-made reports") {
        paci::drift_report ok;
        REQUIRE_THAT(ok, paci::testing::stays_within_bounds());

        paci::drift_report bad;
        paci::version_record rec;
        rec.forward = 1;
        rec.backward = 4;
        rec.applied = 4;
        bad.first_violation = paci::bound_violation{paci::bounded_quantity::drift, 2, 7, rec, 3, 1};
        const auto m = paci::testing::stays_within_bounds();
        CHECK(m.describe() == "stays within the policy's drift, staleness and version bounds");
        CHECK_FALSE(m.match(bad));
        CHECK(m.describe() == "stays within the policy's drift, staleness and version bounds (drift 3 exceeds its bound 1 "
                              "at stage 2, micro-batch 7 (forward read version 1, backward read 4, applied to 4))");

        paci::drift_report versions;
        versions.first_violation = paci::bound_violation{paci::bounded_quantity::versions, 0, -1, {}, 3, 2};
        const auto v = paci::testing::stays_within_bounds();
        CHECK_FALSE(v.match(versions));
        CHECK(v.describe() == "stays within the policy's drift, staleness and version bounds (versions 3 exceeds its "
                              "bound 2 at stage 0)");
    }
    SECTION("a replayed PACI schedule against its own and tighter bounds") {
        const paci::paci_policy<> policy{.stages = 4, .microbatches = 1, .steps = 4};
        const paci::replay_result r = paci_replay();
        REQUIRE_THAT(paci::check_drift(r, policy), paci::testing::stays_within_bounds());

        paci::version_bounds tight;
        tight.drift = {2, 2, 1, 0};
        const auto m = paci::testing::stays_within_bounds();
        CHECK_FALSE(m.match(paci::check_drift(r, tight)));
        // Stage 0, micro-batch 3: forward version 0, backward version 3, its gradient applied by the
        // update right after that backward, to version 3.
        CHECK_THAT(m.describe(), ContainsSubstring("(drift 3 exceeds its bound 2 at stage 0, micro-batch 3 (forward read "
                                                   "version 0, backward read 3, applied to 3))"));
    }
}

TEST_CASE("matchers: a failure shows the schedule's size and first diagnostics, the programs only on request",
          "[unit][testing][matchers]") {
    // 1F1B-flush, 16 stages, 256 micro-batches, one update: each stage runs 256 F, 256 B and 1 STEP.
    paci::schedule big = paci::one_f_one_b<>{.stages = 16, .microbatches = 256, .steps = 1}.generate();
    const std::string header = "schedule{one_f_one_b<perf>{.stages = 16, .microbatches = 256, .steps = 1}, "
                               "pipeline_shape{.stages = 16, .ranks = 16, .map = loop}, .microbatches = 256, .steps = 1}";
    // What Catch2 prints for the schedule under test (it printed every program before: 51 KB).
    CHECK(Catch::StringMaker<paci::schedule>::convert(big) == header + " with 8208 actions on 16 ranks");
    CHECK(paci::testing::summary(big) == header + " with 8208 actions on 16 ranks");

    // Drop the last stage's backwards: its 256 forwards (at positions 0..255) have none.
    auto& last = big.ranks.back();
    std::erase_if(last, [](const paci::action& a) { return a.kind == paci::op::B; });
    const auto m = paci::testing::is_valid();
    CHECK_FALSE(m.match(big));
    const std::string d = m.describe();
    CHECK_THAT(d, Catch::Matchers::StartsWith(
                      "is a valid schedule (256 errors, the first 3: rank 15, position 0, 15F0: missing: stage 15 "
                      "micro-batch 0 has no backward (B, or I then W); rank 15, position 1, 15F1: missing: "));
    CHECK_THAT(d, Catch::Matchers::EndsWith("rank 15, position 2, 15F2: missing: stage 15 micro-batch 2 has no backward "
                                            "(B, or I then W))"));
    CHECK(d.size() < 400U);

    // On request, every program follows.
    const auto full = paci::testing::is_valid(paci::testing::dump::full);
    CHECK_FALSE(full.match(big));
    CHECK_THAT(full.describe(), Catch::Matchers::StartsWith(d + "\n" + header + "\nrank 0: 0F0 0F1 0F2"));
    CHECK_THAT(full.describe(), ContainsSubstring("\nrank 15: 15F0 15F1 15F2"));
    const auto rv = paci::testing::is_deadlock_free(paci::send_semantics::rendezvous, paci::testing::dump::full);
    CHECK_FALSE(rv.match(big));
    CHECK_THAT(rv.describe(), ContainsSubstring("\nrank 15: 15F0 15F1 15F2"));
    // A match clears both.
    CHECK(full.match(small_1f1b()));
    CHECK(full.describe() == "is a valid schedule");
}

TEST_CASE("matchers: has_drift_at_most fails, with the reason, on an inconsistent replay", "[unit][testing][matchers]") {
    paci::replay_result r;
    r.stages = 2;
    r.microbatches = 2;
    r.records.assign(3, paci::version_record{}); // 4 needed: at(1, 1) was read past the end
    const auto m = paci::testing::has_drift_at_most(0);
    CHECK_FALSE(m.match(r));
    CHECK(m.describe() == "has drift at most 0 (the replay is inconsistent: 3 records for 2 stages x 2 micro-batches)");
}
