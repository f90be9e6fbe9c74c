// paci-plan: build the schedule a command line asks for and run every analysis on it.
#pragma once

#include "options.hpp"

#include <paci/paci.hpp>
#include <paci/plan/planner.hpp>
#include <paci/policy/dualpipe_v.hpp>
#include <paci/policy/interleaved_zero_bubble.hpp>
#include <paci/policy/looped_bfs.hpp>
#include <paci/policy/zb_v.hpp>
#include <paci/sim/simulate.hpp>

#include <optional>
#include <string>
#include <vector>

namespace paci_plan {

/// Everything paci-plan reports about one schedule.
struct result {
    std::string policy;
    int stages = 0;
    int ranks = 0;
    int microbatches = 0; ///< per update
    int steps = 0;
    paci::schedule compute; ///< as generated or imported (an imported lowered schedule keeps its SEND/RECV)
    paci::schedule lowered; ///< what was simulated: `lower(compute)`, or `compute` itself if it came lowered
    std::optional<paci::csv_layout> layout; ///< an imported file's layout: --format csv writes its bytes back
    paci::validation_report validation;
    paci::simulation sim;
    paci::replay_result versions;
    paci::memory_report memory;
    std::optional<paci::version_bounds> bounds; ///< none for imported schedules
    paci::drift_report drift;
};

inline int default_steps(const options& o, int per_update) {
    return o.steps > 0 ? o.steps : std::max(4, paci::detail::ceil_div(4 * o.stages, per_update) + 2);
}

/// Refuses, before anything is generated, a command line whose schedule would be past `o.limits`: the
/// lowered schedule (the largest one paci-plan builds) holds, per stage and micro-batch, its compute
/// (F and B, or three ops for recompute and zero-bubble policies; three for --compare and --plan, which
/// run them), per stage boundary and micro-batch a SEND and a RECV each way, and a STEP per stage and
/// update. \throws usage_error stating the size needed.
inline void check_schedule_size(const options& o) {
    const int N = default_steps(o, o.microbatches);
    const bool three_ops = o.compare || o.plan || o.flavour == paci::backward_flavour::recompute ||
                           o.policy == "zb-h1" || o.policy == "zb-h2" || o.policy == "zb-v" || o.policy == "dualpipev" ||
                           o.policy == "interleaved-zb";
    const std::uint64_t P = static_cast<std::uint64_t>(o.stages);
    const std::uint64_t cells = paci::detail::mul_sat(P, paci::detail::mul_sat(static_cast<std::uint64_t>(o.microbatches),
                                                                               static_cast<std::uint64_t>(N)));
    using paci::detail::add_sat;
    using paci::detail::mul_sat;
    const std::uint64_t microbatches = mul_sat(static_cast<std::uint64_t>(o.microbatches), static_cast<std::uint64_t>(N));
    const std::uint64_t messages = o.ranks > 1 ? mul_sat(4 * (P - 1), microbatches) : 0;
    const std::uint64_t actions =
        add_sat(add_sat(mul_sat(cells, three_ops ? 3U : 2U), messages), mul_sat(P, static_cast<std::uint64_t>(N)));
    const std::uint64_t bytes = paci::detail::mul_sat(actions, sizeof(paci::action));
    if (actions <= o.limits.max_actions && bytes <= o.limits.max_bytes) return;
    throw usage_error(paci::detail::concat(
        "--stages ", o.stages, ", --microbatches ", o.microbatches, ", ", N, " updates",
        o.given.contains("--steps") ? " (--steps)" : "", ": the lowered schedule needs up to ", actions, " actions (", bytes,
        " bytes), past the limit of ", o.limits.max_actions, " actions and ", o.limits.max_bytes,
        " bytes (raise it with --max-actions and --max-bytes)"));
}

/// Lowering, validation, simulation and replay of a schedule. A compute-only schedule is lowered for
/// the chosen send semantics; one that already holds SEND/RECV (PyTorch's compute_comms files) is
/// analysed as given: its own communication is validated, searched for deadlock and simulated.
inline result analyse(paci::schedule compute, const options& o, std::optional<paci::version_bounds> bounds,
                      const auto& controller) {
    result r;
    r.policy = compute.policy;
    r.stages = compute.shape.stages;
    r.ranks = compute.shape.ranks;
    r.steps = compute.steps;
    r.microbatches = compute.steps > 0 ? compute.microbatches / compute.steps : compute.microbatches;
    r.validation = paci::validate(compute);
    if (r.validation.valid()) {
        r.lowered = compute.lowered()
                        ? compute
                        : paci::lower(compute, o.sends == paci::send_semantics::rendezvous ? paci::lowering::rendezvous_safe
                                                                                           : paci::lowering::eager);
        r.validation = paci::validate(r.lowered);
        r.sim = paci::simulate(r.lowered, o.costs, o.sends);
    }
    r.versions = paci::replay(compute, controller);
    r.memory = paci::memory_of(r.versions);
    r.bounds = std::move(bounds);
    r.drift = paci::check_drift(r.versions, r.bounds ? *r.bounds : paci::version_bounds{});
    r.compute = std::move(compute);
    return r;
}

template <paci::schedule_policy Policy>
result analyse_policy(const Policy& policy, const options& o) {
    return analyse(policy.generate(), o, paci::version_bounds::of(policy), policy.controller());
}

template <template <paci::backward_flavour> class Family>
result with_flavour(const options& o, auto&& make) {
    if (o.flavour == paci::backward_flavour::recompute)
        return analyse_policy(make(Family<paci::backward_flavour::recompute>{}), o);
    return analyse_policy(make(Family<paci::backward_flavour::perf>{}), o);
}

template <paci::backward_flavour F>
using one_f_one_b_t = paci::one_f_one_b<F>;
template <paci::backward_flavour F>
using paci_t = paci::paci_policy<F>;

/// The named policy at the command line's settings. \throws paci::config_error for bad settings.
inline result run_policy(const std::string& name, const options& o) {
    const int P = o.stages;
    const int M = o.microbatches;
    const int N = default_steps(o, M);
    if (name == "gpipe")
        return with_flavour<paci::gpipe>(o, [&](auto p) {
            p.stages = P, p.microbatches = M, p.steps = N;
            return p;
        });
    if (name == "1f1b")
        return with_flavour<one_f_one_b_t>(o, [&](auto p) {
            p.stages = P, p.microbatches = M, p.steps = N, p.cap = o.cap;
            return p;
        });
    if (name == "paci")
        return with_flavour<paci_t>(o, [&](auto p) {
            p.stages = P, p.microbatches = M, p.steps = N, p.cap = o.cap;
            return p;
        });
    if (name == "interleaved")
        return analyse_policy(paci::interleaved_one_f_one_b{.ranks = o.ranks, .chunks = o.chunks, .microbatches = M, .steps = N}, o);
    if (name == "looped-bfs")
        return analyse_policy(paci::looped_bfs{.ranks = o.ranks, .chunks = o.chunks, .microbatches = M, .steps = N}, o);
    if (name == "interleaved-zb")
        return analyse_policy(
            paci::interleaved_zero_bubble{.ranks = o.ranks, .chunks = o.chunks, .microbatches = M, .steps = N}, o);
    if (name == "zb-v") return analyse_policy(paci::zb_v{.ranks = o.ranks, .microbatches = M, .steps = N}, o);
    if (name == "dualpipev") return analyse_policy(paci::dualpipe_v{.ranks = o.ranks, .microbatches = M, .steps = N}, o);
    if (name == "zb-h1") return analyse_policy(paci::zb_h1{.stages = P, .microbatches = M, .steps = N}, o);
    if (name == "zb-h2") return analyse_policy(paci::zb_h2{.stages = P, .microbatches = M, .steps = N}, o);
    if (name == "pipedream")
        return analyse_policy(paci::pipedream{.stages = P, .microbatches = M, .steps = N, .cap = o.cap}, o);
    return analyse_policy(paci::pipedream_2bw{.stages = P, .microbatches = M, .steps = N, .cap = o.cap}, o);
}

} // namespace paci_plan
