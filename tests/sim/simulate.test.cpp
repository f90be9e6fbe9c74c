// The simulator against closed forms (equal stage costs unless stated): GPipe and 1F1B-flush
// makespan N (M + P - 1)(F + B) and bubble (P - 1)/(M + P - 1); ZB-H1's idle time (P - 1)(F + I - W)
// against 1F1B's (P - 1)(F + I + W); ZB-H2's idle time only the forward fill (P - 1) F; PACI's
// steady throughput 1 / (F + B), i.e. (M + P - 1)/M times 1F1B-flush's; PACI limited by its slowest
// stage; a per-hop latency lengthening the fill by (P - 1) L each way.

#include <paci/core/lower.hpp>
#include <paci/policy/gpipe.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/zero_bubble.hpp>
#include <paci/sim/simulate.hpp>

#include "support/catch.hpp"

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

namespace {

bool near(double x, double y, double rel = 1e-9) { return std::abs(x - y) <= rel * std::max(1.0, std::abs(y)); }

paci::cost_model costs(double f, double b, double i = 1, double w = 1) {
    paci::cost_model c;
    c.uniform = {.f = f, .b = b, .i = i, .w = w, .r = f, .step = 0};
    return c;
}

} // namespace

TEST_CASE("simulate: GPipe and 1F1B-flush makespan and bubble match the closed forms", "[unit][sim]") {
    const double F = GENERATE(1.0, 1.5);
    const double B = GENERATE(2.0, 2.5);
    std::vector<std::string> bad;
    for (int P = 1; P <= 8; ++P)
        for (int M = 1; M <= 12; ++M)
            for (int N = 1; N <= 3; ++N) {
                const double makespan = N * (M + P - 1) * (F + B);
                const double bubble = static_cast<double>(P - 1) / (M + P - 1);
                const auto g = paci::simulate(paci::gpipe<>{.stages = P, .microbatches = M, .steps = N}.generate(), costs(F, B));
                const auto o =
                    paci::simulate(paci::one_f_one_b<>{.stages = P, .microbatches = M, .steps = N}.generate(), costs(F, B));
                const auto e = paci::simulate(
                    paci::lower(paci::one_f_one_b<>{.stages = P, .microbatches = M, .steps = N}.generate(),
                                paci::lowering::eager),
                    costs(F, B));
                for (const auto* s : {&g, &o, &e})
                    if (!s->completed || !near(s->makespan, makespan) || !near(s->bubble_fraction, bubble))
                        bad.push_back(paci::detail::concat("P=", P, " M=", M, " N=", N, ": makespan ", s->makespan,
                                                           " (want ", makespan, "), bubble ", s->bubble_fraction,
                                                           " (want ", bubble, ")"));
                if (N >= 2 && !near(o.throughput, M / ((M + P - 1) * (F + B))))
                    bad.push_back(paci::detail::concat("P=", P, " M=", M, " N=", N, ": 1F1B throughput ", o.throughput));
            }
    CAPTURE(bad.size());
    REQUIRE(bad.empty());
}

TEST_CASE("simulate: ZB-H1 idles (P-1)(F+I-W) per rank, 1F1B (P-1)(F+I+W), ZB-H2 only the fill (P-1)F",
          "[unit][sim]") {
    struct c3 {
        double f, i, w;
    };
    const auto c = GENERATE(c3{1, 1, 1}, c3{1, 2, 1}, c3{2, 3, 1.5});
    std::vector<std::string> bad;
    for (int P = 2; P <= 8; ++P)
        for (int M : {P, 2 * P, 3 * P}) {
            const paci::cost_model model = costs(c.f, c.i + c.w, c.i, c.w);
            const double work = M * (c.f + c.i + c.w);
            const auto h1 = paci::simulate(paci::zb_h1{.stages = P, .microbatches = M}.generate(), model);
            const auto ob = paci::simulate(paci::one_f_one_b<>{.stages = P, .microbatches = M}.generate(), model);
            if (!near(h1.makespan - work, (P - 1) * (c.f + c.i - c.w)))
                bad.push_back(paci::detail::concat("zb_h1 P=", P, " M=", M, " idle ", h1.makespan - work));
            if (!near(ob.makespan - work, (P - 1) * (c.f + c.i + c.w)))
                bad.push_back(paci::detail::concat("1f1b P=", P, " M=", M, " idle ", ob.makespan - work));
            if (M >= 2 * P) {
                const auto h2 = paci::simulate(paci::zb_h2{.stages = P, .microbatches = M}.generate(), model);
                if (!near(h2.makespan - work, (P - 1) * c.f))
                    bad.push_back(paci::detail::concat("zb_h2 P=", P, " M=", M, " idle ", h2.makespan - work));
            }
        }
    for (std::size_t k = 0; k < bad.size() && k < 5; ++k) INFO(bad[k]);
    REQUIRE(bad.empty());
}

TEST_CASE("simulate: PACI's steady throughput is 1/(F+B), (M+P-1)/M times 1F1B-flush's", "[unit][sim]") {
    // The issue's figures for P = 8: 2.75 at M = 4, 1.875 at M = 8, 1.4375 at M = 16.
    const auto [M, ratio] = GENERATE(std::pair{4, 2.75}, std::pair{8, 1.875}, std::pair{16, 1.4375});
    const auto model = costs(1, 2);
    const auto flush = paci::simulate(paci::one_f_one_b<>{.stages = 8, .microbatches = M, .steps = 4}.generate(), model);
    const auto async = paci::simulate(paci::paci_policy<>{.stages = 8, .microbatches = M, .steps = 8}.generate(), model);
    REQUIRE(near(async.throughput, 1.0 / 3.0));
    CHECK(std::abs(async.throughput / flush.throughput - ratio) <= 0.01 * ratio);
    CHECK(std::abs(async.throughput / flush.throughput - (M + 8 - 1.0) / M) <= 0.01 * ratio);
}

TEST_CASE("simulate: PACI with unequal stages runs at its slowest stage", "[unit][sim]") {
    paci::cost_model model;
    model.per_stage = {{.f = 1, .b = 2}, {.f = 2, .b = 3}, {.f = 1, .b = 1}, {.f = 0.5, .b = 1}};
    const auto s = paci::simulate(paci::paci_policy<>{.stages = 4, .microbatches = 4, .steps = 12}.generate(), model);
    REQUIRE(s.completed);
    CHECK(near(s.throughput, 1.0 / 5.0)); // stage 1: F + B = 5
    // Per-rank busy time is the work of that stage: 48 micro-batches at F_s + B_s.
    CHECK(near(s.busy[1], 48 * 5.0));
    CHECK(near(s.busy[3], 48 * 1.5));
}

TEST_CASE("simulate: a latency on each hop lengthens the fill and the drain by (P-1) L", "[unit][sim]") {
    const double L = GENERATE(0.25, 1.0, 3.0);
    const int P = GENERATE(2, 4, 7);
    const int M = 5;
    paci::cost_model model = costs(1, 2);
    model.latency = L;
    const auto g = paci::gpipe<>{.stages = P, .microbatches = M}.generate();
    for (const auto& sched : {g, paci::lower(g, paci::lowering::eager)}) {
        const auto s = paci::simulate(sched, model);
        REQUIRE(near(s.makespan, (M + P - 1) * 3.0 + 2 * (P - 1) * L));
    }
    // Whatever the policy, the last stage's first forward starts after P - 1 forwards and hops.
    const auto p = paci::paci_policy<>{.stages = P, .microbatches = 2, .steps = 4}.generate();
    const auto s = paci::simulate(p, model);
    const auto& last = p.ranks[static_cast<std::size_t>(P - 1)];
    REQUIRE(last.front() == paci::action(paci::op::F, P - 1, 0));
    CHECK(near(s.times[static_cast<std::size_t>(P - 1)].front().start, (P - 1) * (1 + L)));
    // Bandwidth adds bytes / bandwidth to every hop.
    paci::cost_model bw = costs(1, 2);
    bw.bandwidth = 4;
    bw.bytes = 2;
    CHECK(near(paci::simulate(g, bw).makespan, (M + P - 1) * 3.0 + 2 * (P - 1) * 0.5));
}

TEST_CASE("simulate: rendezvous sends on an eager 1F1B lowering block; the rendezvous-safe one completes",
          "[unit][sim]") {
    const auto compute = paci::one_f_one_b<>{.stages = 4, .microbatches = 8}.generate();
    const auto blocked = paci::simulate(paci::lower(compute, paci::lowering::eager), costs(1, 2), paci::send_semantics::rendezvous);
    REQUIRE_FALSE(blocked.completed);
    REQUIRE_FALSE(blocked.deadlock.cycle.empty());
    CHECK_THAT(blocked.deadlock.message, Catch::Matchers::ContainsSubstring("rendezvous"));
    const auto ok = paci::simulate(paci::lower(compute, paci::lowering::rendezvous_safe), costs(1, 2),
                                   paci::send_semantics::rendezvous);
    REQUIRE(ok.completed);
    CHECK(ok.makespan >= (8 + 3) * 3.0); // blocking sends can only be slower than the bubble bound
}

TEST_CASE("simulate: seeded jitter is reproducible and bounded", "[unit][sim]") {
    const auto sched = paci::paci_policy<>{.stages = 4, .microbatches = 3, .steps = 5}.generate();
    paci::cost_model model = costs(1, 2);
    model.jitter = 0.2;
    model.seed = 7;
    const auto a = paci::simulate(sched, model);
    const auto b = paci::simulate(sched, model);
    REQUIRE(a.times == b.times);
    model.seed = 8;
    const auto c = paci::simulate(sched, model);
    CHECK(a.times != c.times);
    for (std::size_t r = 0; r < sched.ranks.size(); ++r)
        for (std::size_t k = 0; k < sched.ranks[r].size(); ++k) {
            const auto& act = sched.ranks[r][k];
            const double d = a.times[r][k].end - a.times[r][k].start;
            const double nominal = act.kind == paci::op::F ? 1.0 : act.kind == paci::op::B ? 2.0 : 0.0;
            REQUIRE(d >= nominal * 0.8 - 1e-12);
            REQUIRE(d <= nominal * 1.2 + 1e-12);
        }
}

TEST_CASE("simulate: stored micro-batches over time peak at min(M, P - s) for 1F1B", "[unit][sim]") {
    const int P = 5, M = 7;
    const auto s = paci::simulate(paci::one_f_one_b<>{.stages = P, .microbatches = M, .steps = 2}.generate(), costs(1, 2));
    for (int r = 0; r < P; ++r) {
        int peak = 0;
        for (const auto& [t, n] : s.stored[static_cast<std::size_t>(r)]) peak = std::max(peak, n);
        CHECK(peak == std::min(M, P - r));
        CHECK(s.stored[static_cast<std::size_t>(r)].back().second == 0);
    }
}

TEST_CASE("simulate: a bad cost model is rejected naming the field", "[unit][sim]") {
    const auto sched = paci::one_f_one_b<>{.stages = 2, .microbatches = 2}.generate();
    paci::cost_model m;
    m.uniform.b = -1;
    REQUIRE_THROWS_WITH(paci::simulate(sched, m), "paci::cost_model: b (-1) must be finite and >= 0");
    m = {};
    m.bandwidth = 0;
    REQUIRE_THROWS_WITH(paci::simulate(sched, m), "paci::cost_model: bandwidth (0) must be > 0");
    m = {};
    m.jitter = 1;
    REQUIRE_THROWS_WITH(paci::simulate(sched, m), "paci::cost_model: jitter (1) must be in [0, 1)");
    m = {};
    m.per_stage = {paci::stage_costs{}};
    REQUIRE_THROWS_WITH(paci::simulate(sched, m), "paci::cost_model: per-stage costs (1) must be given for every stage (2)");
}

// Hostile input (issue 8).

TEST_CASE("simulate: a structurally invalid schedule is a config error, not a heap overrun", "[unit][sim][errors]") {
    // A SEND_B at the first stage sends to stage -1; its rendezvous partner was looked up on rank -1.
    paci::schedule bad = paci::lower(paci::one_f_one_b<>{.stages = 2, .microbatches = 2}.generate());
    bad.ranks[0].insert(bad.ranks[0].begin(), paci::action{paci::op::SEND_B, 0, 0});
    for (const auto sends : {paci::send_semantics::buffered, paci::send_semantics::rendezvous})
        REQUIRE_THROWS_WITH(paci::simulate(bad, costs(1, 2), sends),
                            Catch::Matchers::StartsWith("paci::simulate: schedule (") &&
                                Catch::Matchers::EndsWith(") must be structurally valid (see paci::validate)"));
    // An action on a stage outside the pipeline read past the per-stage costs.
    paci::schedule outside = paci::one_f_one_b<>{.stages = 2, .microbatches = 2}.generate();
    outside.ranks[1].push_back(paci::action{paci::op::F, 5, 0});
    paci::cost_model per_stage = costs(1, 2);
    per_stage.per_stage.assign(2, per_stage.uniform);
    REQUIRE_THROWS_WITH(paci::simulate(outside, per_stage),
                        "paci::simulate: schedule (1 structural error, first: rank 1, position 5, 5F0: placement: stage 5 "
                        "is out of range [0, 2)) must be structurally valid (see paci::validate)");
    // An inconsistent header.
    paci::schedule header = paci::one_f_one_b<>{.stages = 2, .microbatches = 2}.generate();
    header.shape.ranks = 0;
    REQUIRE_THROWS_WITH(paci::simulate(header, costs(1, 2)), "paci::simulate: ranks (0) must be >= 1");
    REQUIRE_THROWS_WITH(paci::simulate(paci::one_f_one_b<>{.stages = 2, .microbatches = 2}.generate(), costs(1, 2),
                                       static_cast<paci::send_semantics>(9)),
                        "paci::simulate: sends (9) must be send_semantics::buffered or send_semantics::rendezvous");
}

TEST_CASE("simulate: durations whose sums overflow a double are an error, not makespan inf and bubble nan",
          "[unit][sim][errors]") {
    // 1F1B-flush, 2 stages, 2 micro-batches, F = 1, B = 1e308. Rank 1 runs 1F0 [1, 2], 1B0 [2, 1e308],
    // 1F1 [1e308, 1e308], then 1B1 would end at 2e308, past the largest double.
    const auto sched = paci::one_f_one_b<>{.stages = 2, .microbatches = 2}.generate();
    REQUIRE_THROWS_WITH(paci::simulate(sched, costs(1, 1e308)),
                        "paci::simulate: end of 1B1 on rank 1 (inf) must be finite: the cost model's durations overflow a "
                        "double over this schedule");
    // One such duration alone is fine: 1 stage, 1 micro-batch.
    const auto one = paci::simulate(paci::one_f_one_b<>{.stages = 1, .microbatches = 1}.generate(), costs(1, 1e308));
    CHECK(one.makespan == 1e308);
    CHECK(std::isfinite(one.bubble_fraction));
    // A transfer time that is infinite by itself is refused by the cost model.
    paci::cost_model slow = costs(1, 2);
    slow.bytes = 1e308;
    slow.bandwidth = 1e-308;
    REQUIRE_THROWS_WITH(paci::simulate(sched, slow), "paci::cost_model: bytes / bandwidth (inf) must be finite");
}

TEST_CASE("simulate: a deadlock is still data, not an error", "[unit][sim][errors]") {
    const auto compute = paci::one_f_one_b<>{.stages = 2, .microbatches = 2}.generate();
    const auto blocked = paci::simulate(paci::lower(compute, paci::lowering::eager), costs(1, 2),
                                        paci::send_semantics::rendezvous);
    CHECK_FALSE(blocked.completed);
    CHECK_FALSE(blocked.deadlock.cycle.empty());
}

namespace {

/// The static 1F1B order (a forward whenever the stage is under its cap, otherwise the oldest
/// backward) of PACI with `caps` and one update per micro-batch, built from the stream directly so
/// that caps validate() refuses can be studied.
paci::schedule static_order(const std::vector<int>& caps, int microbatches) {
    const int P = static_cast<int>(caps.size());
    paci::schedule out;
    out.shape = {P, P, paci::stage_map::loop};
    out.microbatches = microbatches;
    out.steps = microbatches;
    out.policy = "static order";
    for (int s = 0; s < P; ++s) {
        paci::one_f_one_b_stream<paci::accumulation> stream(paci::accumulation{1}, s, s == P - 1,
                                                            caps[static_cast<std::size_t>(s)], 1, false, microbatches);
        out.ranks.emplace_back();
        paci::action a;
        while (stream.next(a)) out.ranks.back().push_back(a);
    }
    return out;
}

} // namespace

TEST_CASE("simulate: why a cap above P - s collapsed throughput: equal caps on neighbours serialize the static order",
          "[unit][sim]") {
    // With cap c at stages s - 1 and s, stage s runs F(j + c) right after B(j), and stage s - 1 runs
    // F(j + c) right after its own B(j), which needs stage s's B(j): each forward waits for a backward's
    // round trip. With equal caps on stages 0..P-2 (and 1 at the last) the chain is B(j) down from
    // P - 2 to 0, then F(j + c) up from 0 to P - 2, then B(j + 1) at P - 2: one micro-batch per
    // (P - 1)(F + B), against 1 / (F + B) with the default caps P - s.
    const auto model = costs(1, 2);
    for (int P = 2; P <= 8; ++P) {
        CAPTURE(P);
        const int M = 48;
        std::vector<int> plateau(static_cast<std::size_t>(P), 2); // valid: 2 <= P - s for s <= P - 2
        plateau.back() = 1;
        const paci::paci_policy<> valid{.stages = P, .microbatches = 1, .steps = M, .cap = plateau};
        REQUIRE_NOTHROW(valid.validate());
        const double serial = 1.0 / ((P - 1) * 3.0);
        CHECK(near(paci::simulate(valid.generate(), model).throughput, serial));
        CHECK(near(paci::simulate(paci::paci_policy<>{.stages = P, .microbatches = 1, .steps = M}.generate(), model)
                       .throughput,
                   1.0 / 3.0));
    }
    // The issue's caps 9, 9, 9, 9, 9, 9, 9, 1 on 8 stages (refused now) give the same chain once the
    // first micro-batches have passed: the last stage starts a forward every (P - 1)(F + B) = 21,
    // against every F + B = 3 with the caps P - s, which have no such chain.
    const std::vector<int> issue{9, 9, 9, 9, 9, 9, 9, 1};
    const auto forward_period = [&](const std::vector<int>& caps) {
        const paci::schedule order = static_order(caps, 64);
        const paci::simulation sim = paci::simulate(order, model);
        std::vector<double> starts; // of the last stage's forwards, in micro-batch order
        for (std::size_t p = 0; p < order.ranks.back().size(); ++p)
            if (order.ranks.back()[p].kind == paci::op::F) starts.push_back(sim.times.back()[p].start);
        std::vector<double> gaps;
        for (std::size_t m = 40; m + 1 < starts.size(); ++m) gaps.push_back(starts[m + 1] - starts[m]);
        return gaps;
    };
    for (const double gap : forward_period(issue)) CHECK(near(gap, 21.0));
    for (const double gap : forward_period({8, 7, 6, 5, 4, 3, 2, 1})) CHECK(near(gap, 3.0));
    CHECK(paci::simulate(static_order(issue, 64), model).throughput < 0.06);
    REQUIRE_THROWS_AS((paci::paci_policy<>{.stages = 8, .microbatches = 1, .steps = 64, .cap = issue}.validate()),
                      paci::config_error);
}

TEST_CASE("simulate: cost_model::of refuses a stage without per-stage costs", "[unit][sim][errors]") {
    paci::cost_model m;
    m.per_stage = {paci::stage_costs{.f = 3}, paci::stage_costs{.f = 4}};
    CHECK(m.of(1).f == 4);
    REQUIRE_THROWS_WITH(m.of(2), "paci::cost_model::of: stage (2) must be in [0, 2) (the per-stage costs given)");
    REQUIRE_THROWS_AS(m.duration(paci::action{paci::op::F, -1, 0}), paci::config_error);
    CHECK(paci::cost_model{}.of(7).f == 1); // one cost for every stage
}

TEST_CASE("simulate: an action whose op is none of the ten is a config error", "[unit][sim][errors]") {
    paci::schedule s = paci::one_f_one_b<>{.stages = 2, .microbatches = 1}.generate();
    s.ranks[1][0].kind = static_cast<paci::op>(200);
    REQUIRE_THROWS_WITH(paci::simulate(s, costs(1, 2)),
                        "paci::simulate: op of the action at rank 1, position 0 (200) must be one of the 10 ops");
}
