#pragma once
/// \file
/// The 1F1B machine run greedily at run time, as PACI's reference implementation runs it: an
/// event-driven simulation that decides each stage's next action from what has arrived, and records
/// the order the stages ran so that it can be replayed, checked and exported like a generated schedule.

#include <paci/core/dataflow.hpp>
#include <paci/core/error.hpp>
#include <paci/core/limits.hpp>
#include <paci/core/schedule.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/sim/cost_model.hpp>
#include <paci/sim/simulate.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string_view>
#include <vector>

namespace paci {

/// What a greedy run yields: the order every stage ran its actions in (a compute-only schedule over
/// the policy's window, STEPs included) and its timeline, which is `simulate(order, costs)`: the
/// order is all that the greedy choice adds, so it replays, validates and exports like `generate()`.
struct greedy_simulation {
    schedule order;      ///< per stage, the actions in the order they ran
    simulation timeline; ///< start and end of every action of `order`, makespan, busy time, throughput
};

/// Runs the 1F1B machine of `policy` (stages, accumulation `microbatches`, in-flight caps, and the
/// flush gate when its controller flushes) over `microbatches * steps` micro-batches, choosing each
/// stage's next action at run time as PACI's reference implementation does (PACI.md, "How the
/// reference implementation runs it"): whenever an output-gradient is waiting, the backward of the
/// oldest stored micro-batch, followed by `STEP` when the controller says an update is due; otherwise
/// a forward if the stage is under its cap and its input is waiting; otherwise it waits for whichever
/// arrives first (a gradient on a tie). The last stage's gradient is its own loss, ready when its
/// forward ends. Stage 0's inputs are always waiting.
///
/// Costs and their semantics are those of `simulate` on a compute-only schedule: an action's
/// duration is `costs.jittered(action, stage, position)` with `position` its index in the stage's
/// recorded program, and a stage's output reaches its neighbour `costs.transfer()` after it ends.
/// Simultaneous events resolve as the greedy loop would see them: a decision at time `t` sees
/// everything that arrives at `t`.
///
/// `generate()` gives the same machine's static order (a forward whenever the cap allows, otherwise
/// the oldest backward); comparing the two under imbalanced and jittered costs is what this is for.
///
///     paci::paci_policy<> p{.stages = 8, .microbatches = 4, .steps = 64};
///     const auto greedy = paci::simulate_greedy(p, costs);
///     const auto fixed = paci::simulate(p.generate(), costs);
///     const auto drift = paci::check_drift(paci::replay(greedy.order), p);
///
/// Perf flavour only: the reference implementation's recompute runs once the gradient is waiting,
/// which a static program cannot say (`simulate` runs an `R` as soon as its stage is free).
/// \throws config_error for an invalid policy or cost model, a run past `paci::limits`, or times that
/// overflow a double.
template <version_controller Controller>
[[nodiscard]] greedy_simulation simulate_greedy(const one_f_one_b_machine<Controller, backward_flavour::perf>& policy,
                                                const cost_model& costs) {
    constexpr std::string_view api = "simulate_greedy";
    policy.validate();
    const int P = policy.stages;
    costs.validate(P);
    const int a = policy.microbatches;
    const int N = policy.steps;
    const std::int64_t T = static_cast<std::int64_t>(a) * N; // validate(): fits in 32 bits
    // Per stage 2T + N actions; per (stage, micro-batch) the ends of its forward and its backward.
    const std::uint64_t actions = static_cast<std::uint64_t>(P) * static_cast<std::uint64_t>(2 * T + N);
    detail::check_schedule_size(api, actions);
    detail::check_tables(api, P, T, 2 * sizeof(double), actions, 0);
    const Controller controller = policy.controller();
    const double transfer = costs.transfer();
    constexpr double unknown = -1;
    constexpr double never = std::numeric_limits<double>::infinity();
    const auto at = [](int s) { return static_cast<std::size_t>(s); };

    greedy_simulation out;
    out.order = detail::make_schedule(policy.shape(), static_cast<int>(T), N,
                                      detail::concat(detail::print(policy), " run greedily"));
    for (auto& prog : out.order.ranks) prog.reserve(static_cast<std::size_t>(2 * T + N));

    struct stage_state {
        double clock = 0;
        std::int64_t forwards = 0;
        std::int64_t backwards = 0;
        int updates = 0;
    };
    std::vector<stage_state> st(at(P));
    // When each stage's forward and backward of each micro-batch ended.
    stage_grid<double> fwd_end(P, static_cast<int>(T), unknown);
    stage_grid<double> bwd_end(P, static_cast<int>(T), unknown);

    // A stage's next action given what has arrived so far; `start == never` when nothing it could
    // run is on its way yet.
    struct choice {
        op kind = op::F;
        double start = never;
    };
    const auto decide = [&](int s) {
        const stage_state& x = st[at(s)];
        double gradient = never;
        // Inputs by the IR's rule (`consumes`): a backward takes the next stage's gradient, except
        // at the last stage, whose gradient is its own loss, ready when its forward (the backward's
        // local prerequisite) ends; a forward takes the previous stage's output, always there at stage 0.
        if (x.backwards < x.forwards) {
            const int m = static_cast<int>(x.backwards);
            const auto h = consumes(action{op::B, s, m}, P);
            const double e = h ? bwd_end(h->from, m) : fwd_end(s, m);
            if (e != unknown) gradient = h ? e + transfer : e;
        }
        double input = never;
        const bool group_open = !Controller::flushes || x.forwards < (x.backwards / a + 1) * a;
        if (x.forwards < T && x.forwards - x.backwards < policy.cap_of(s) && group_open) {
            const int m = static_cast<int>(x.forwards);
            const auto h = consumes(action{op::F, s, m}, P);
            const double e = h ? fwd_end(h->from, m) : 0;
            if (e != unknown) input = h ? e + transfer : 0;
        }
        if (gradient <= x.clock) return choice{op::B, x.clock};
        if (input <= x.clock) return choice{op::F, x.clock};
        return gradient <= input ? choice{op::B, gradient} : choice{op::F, input};
    };
    const auto run = [&](int s, action act, double start) {
        auto& prog = out.order.ranks[at(s)];
        const double end = start + costs.jittered(act, s, prog.size());
        if (!std::isfinite(end))
            detail::config_fail(api, detail::concat("end of ", act), end,
                                "must be finite: the cost model's durations overflow a double over this run");
        prog.push_back(act);
        st[at(s)].clock = end;
        return end;
    };

    // Commit the earliest decision of all stages: whatever is still undecided starts no earlier, so
    // nothing can arrive before it that would change it. On a tie the highest stage goes first, since
    // gradients travel down the stage index: a backward at s + 1 that ends at once is then seen by
    // the decision at s at the same time.
    for (;;) {
        int best = -1;
        choice pick;
        for (int s = P - 1; s >= 0; --s) {
            const choice c = decide(s);
            if (c.start < pick.start) {
                best = s;
                pick = c;
            }
        }
        if (best < 0) break;
        stage_state& x = st[at(best)];
        if (pick.kind == op::F) {
            const std::int64_t m = x.forwards++;
            fwd_end(best, static_cast<int>(m)) = run(best, action{op::F, best, static_cast<int>(m)}, pick.start);
        } else {
            const std::int64_t m = x.backwards++;
            const double end = run(best, action{op::B, best, static_cast<int>(m)}, pick.start);
            bwd_end(best, static_cast<int>(m)) = end;
            if (controller.update_due(x.backwards)) static_cast<void>(run(best, action{op::STEP, best, x.updates++}, end));
        }
    }
    // Stage 0's inputs are always there and every cap is >= 1, so the machine cannot block.
    for ([[maybe_unused]] const stage_state& x : st)
        PACI_ASSERT(x.forwards == T && x.backwards == T, "paci::simulate_greedy: the machine blocked");

    // The timeline is the library simulator's own for this order (and equals the one the decisions
    // above were taken on), so every figure in it is defined as `simulate` defines it.
    out.timeline = simulate(out.order, costs);
    return out;
}

} // namespace paci
