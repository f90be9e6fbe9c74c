// The simulator's cost model for overlapped pairs and its posted receives, against closed forms
// worked out by hand on 2-rank schedules:
// - a pair's members start together when the rank is free and both inputs are there, and end at
//   start + max(dF, dB) + overlap_penalty * min(dF, dB) (cost_model.hpp);
// - with buffered sends a RECV is posted and the compute that needs the data waits for it, so a
//   RECV placed early (as PyTorch places them) does not hold its rank up.

#include <paci/analysis/validate.hpp>
#include <paci/core/error.hpp>
#include <paci/core/lower.hpp>
#include <paci/sim/cost_model.hpp>
#include <paci/sim/simulate.hpp>

#include "analysis/pytorch_fixtures.hpp"
#include "support/catch.hpp"
#include "support/program_text.hpp"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace {

using paci::action;
using paci::op;
using paci::send_semantics;

constexpr paci::pipeline_shape two_ranks{2, 2, paci::stage_map::loop};

bool near(double x, double y) { return std::abs(x - y) <= 1e-12 * std::max(1.0, std::abs(y)); }

paci::cost_model pair_costs(double f, double b, double penalty, double latency = 0) {
    paci::cost_model c;
    c.uniform = {.f = f, .b = b};
    c.overlap_penalty = penalty;
    c.latency = latency;
    return c;
}

/// 2 stages on 2 ranks, 2 micro-batches; the last stage overlaps F(1,1) with B(1,0).
paci::schedule last_stage_pair() {
    return paci_test::make_schedule(two_ranks, 2, 0, {"0F0 0F1 0B0 0B1", "1F0 (1F1;1B0) 1B1"});
}

} // namespace

TEST_CASE("simulate: an overlapped pair takes max(dF, dB) + penalty * min(dF, dB)", "[unit][sim][overlap]") {
    // By hand, with forward f, backward b, latency L per hop, pair span S = max(f, b) + p min(f, b):
    //   rank 0: F(0,0) [0, f], F(0,1) [f, 2f]
    //   rank 1: F(1,0) [f+L, 2f+L]; the pair: F(1,1)'s input at 2f+L, B(1,0)'s (local) at 2f+L,
    //           so both members run [2f+L, 2f+L+S]; B(1,1) [2f+L+S, 2f+L+S+b]
    //   rank 0: B(0,0) [2f+2L+S, 2f+2L+S+b], B(0,1) needs B(1,1) + L = 2f+2L+S+b: ends 2f+2L+S+2b.
    // Makespan 2f + 2b + 2L + S; rank 1 busy f + S + b (the pair counts once).
    const double f = 1, b = 3;
    for (const double p : {0.0, 0.25, 1.0})
        for (const double L : {0.0, 0.5}) {
            CAPTURE(p, L);
            const double S = std::max(f, b) + p * std::min(f, b);
            const paci::simulation sim = paci::simulate(last_stage_pair(), pair_costs(f, b, p, L));
            REQUIRE(sim.completed);
            CHECK(near(sim.makespan, 2 * f + 2 * b + 2 * L + S));
            CHECK(sim.times[1][1] == paci::action_time{2 * f + L, 2 * f + L + S}); // 1F1
            CHECK(sim.times[1][2] == paci::action_time{2 * f + L, 2 * f + L + S}); // 1B0
            CHECK(near(sim.times[0][2].start, 2 * f + 2 * L + S));                  // 0B0 after the pair's end
            CHECK(near(sim.busy[1], f + S + b));
            CHECK(near(sim.busy[0], 2 * f + 2 * b));
            CHECK(near(sim.utilization[1], (f + S + b) / sim.makespan));
        }
    // Penalty 1 is no overlap: the same span as the two run one after the other (both inputs are
    // there when the pair starts, so the sequential run starts them no earlier).
    paci::schedule plain = last_stage_pair();
    plain.ranks[1][1].overlap_next = false;
    CHECK(paci::simulate(last_stage_pair(), pair_costs(f, b, 1)).makespan ==
          paci::simulate(plain, pair_costs(f, b, 0)).makespan);
    CHECK(paci::cost_model{.overlap_penalty = 0.5}.overlapped(2, 6) == 7);
    CHECK(paci::cost_model{.overlap_penalty = 0.5}.overlapped(6, 2) == 7);
    CHECK(paci::cost_model{}.overlapped(6, 2) == 8); // the default, 1: the sum
}

TEST_CASE("simulate: a pair waits for the later of its two inputs", "[unit][sim][overlap]") {
    // Rank 1 (last stage) pairs F(1,1) with B(1,0) but F(1,1)'s input comes late: stage 0's forward
    // takes 5, stage 1's 1, backwards 2:
    //   rank 0: F(0,0) [0, 5], F(0,1) [5, 10]
    //   rank 1: F(1,0) [5, 6]; pair inputs at 10 (F) and 6 (B's local F): [10, 10 + max(1, 2)] = [10, 12]
    paci::cost_model c;
    c.per_stage = {paci::stage_costs{.f = 5, .b = 2}, paci::stage_costs{.f = 1, .b = 2}};
    c.overlap_penalty = 0; // perfect overlap: the pair takes max(1, 2)
    const paci::simulation sim = paci::simulate(last_stage_pair(), c);
    CHECK(sim.times[1][0] == paci::action_time{5, 6});
    CHECK(sim.times[1][1] == paci::action_time{10, 12});
    CHECK(sim.times[1][2] == paci::action_time{10, 12});
    CHECK(sim.times[1][3] == paci::action_time{12, 14});
    // rank 0: B(0,0) [12, 14], B(0,1) [14, 16].
    CHECK(sim.makespan == 16);
}

TEST_CASE("simulate: a lowered pair runs in the time of its compute-only form", "[unit][sim][overlap]") {
    const paci::schedule s = last_stage_pair();
    for (const double p : {0.0, 1.0})
        for (const paci::lowering mode : {paci::lowering::eager, paci::lowering::rendezvous_safe}) {
            CAPTURE(p, mode);
            const paci::schedule lowered = paci::lower(s, mode);
            const paci::simulation sim = paci::simulate(lowered, pair_costs(1, 3, p));
            REQUIRE(sim.completed);
            CHECK(sim.makespan == paci::simulate(s, pair_costs(1, 3, p)).makespan);
        }
}

TEST_CASE("simulate: a buffered RECV is posted, the compute that needs its data waits", "[unit][sim]") {
    // Rank 1 posts both forward receives first, as PyTorch's runtime does. F = 1, B = 2, no latency.
    // Compute-only, by hand: rank 0 F(0,0) [0,1], F(0,1) [1,2]; rank 1 F(1,0) [1,2], B(1,0) [2,4],
    // F(1,1) [4,5], B(1,1) [5,7]; rank 0 B(0,0) [4,6], B(0,1) [7,9]: makespan 9.
    const paci::schedule compute = paci_test::make_schedule(two_ranks, 2, 0, {"0F0 0F1 0B0 0B1", "1F0 1B0 1F1 1B1"});
    const paci::schedule early = paci_test::make_schedule(
        two_ranks, 2, 0,
        {"0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1", "1RECV_F0 1RECV_F1 1F0 1B0 1SEND_B0 1F1 1B1 1SEND_B1"});
    REQUIRE(paci::validate(early).valid());
    paci::cost_model c;
    c.uniform = {.f = 1, .b = 2};
    CHECK(paci::simulate(compute, c).makespan == 9);
    const paci::simulation posted = paci::simulate(early, c);
    CHECK(posted.makespan == 9);
    CHECK(posted.times[1][0] == paci::action_time{0, 1}); // 1RECV_F0: posted at 0, 0F0's output at 1
    CHECK(posted.times[1][1] == paci::action_time{0, 2}); // 1RECV_F1: posted at 0, arrives at 2
    CHECK(posted.times[1][2] == paci::action_time{1, 2}); // 1F0 runs before 1RECV_F1's data arrives
    CHECK(posted.times[1][5] == paci::action_time{4, 5}); // 1F1
    // Blocking receives (rendezvous) hold rank 1 at 1RECV_F1 until rank 0 sends it at 2:
    // F(1,0) [2,3], B(1,0) [3,5], F(1,1) [5,6], B(1,1) [6,8]; rank 0's B(0,0) [5,7], B(0,1) [8,10].
    const paci::simulation blocking = paci::simulate(early, c, send_semantics::rendezvous);
    CHECK(blocking.times[1][2] == paci::action_time{2, 3});
    CHECK(blocking.makespan == 10);
}

TEST_CASE("simulate: overlap_penalty outside [0, 1] is refused", "[unit][sim][overlap][errors]") {
    const paci::schedule s = last_stage_pair();
    for (const double bad : {-0.25, 1.5, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
        CAPTURE(bad);
        paci::cost_model c;
        c.overlap_penalty = bad;
        try {
            static_cast<void>(paci::simulate(s, c));
            FAIL("simulate accepted overlap_penalty " << bad);
        } catch (const paci::config_error& e) {
            const std::string what = e.what();
            CHECK(what.rfind("paci::cost_model: overlap_penalty (", 0) == 0);
            CHECK(what.ends_with(") must be in [0, 1]"));
        }
    }
    for (const double good : {0.0, 0.5, 1.0}) {
        paci::cost_model c;
        c.overlap_penalty = good;
        CHECK_NOTHROW(c.validate(2));
    }
    CHECK_THROWS_WITH(paci::cost_model{.overlap_penalty = 2}.validate(2), "paci::cost_model: overlap_penalty (2) must be in [0, 1]");
}
