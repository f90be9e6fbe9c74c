/// \file
/// Validation, deadlock detection and version replay of about half a million compute actions,
/// against naive baselines.
///
/// Workloads (one core, Release), generated and lowered once outside the timed loops:
/// - `one_f_one_b`: `one_f_one_b<>{.stages = 64, .microbatches = 4096, .steps = 1}`;
/// - `paci`: `paci_policy<>{.stages = 64, .microbatches = 64, .steps = 64}` (4096 micro-batches);
/// both 524288 compute actions; lowered with `lower()`'s default (rendezvous-safe) placement to
/// about 1.56 million actions.
///
/// `items_per_second` counts lowered actions for `validate` and `find_deadlock`, and compute actions
/// for `replay` (which runs on the compute schedule, as `analyze()` does). Target: >= 10 million
/// per second per phase.
///
/// Baselines (`BM_naive_*`), checked once against the library before timing (same verdicts on the
/// workloads and on a few hundred mutated small schedules; identical replay results):
/// - validation: the same rules, with every action keyed in a
///   `std::map<std::tuple<op, int, int>, (rank, position)>` and each check a map lookup; channels
///   in a `std::map<(src, dst), std::vector<action>>`; deadlock by `naive_deadlock_free`;
/// - deadlock detection: repeated scans over the ranks, each rank running until it blocks, with the
///   completed actions in a `std::set<std::tuple<op, int, int>>`;
/// - replay: versions, pending gradients, stashed versions and stored counts in `std::map`s keyed
///   by stage or (stage, micro-batch).

#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/core/lower.hpp>
#include <paci/core/schedule.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/pipedream.hpp>
#include <paci/policy/zero_bubble.hpp>

#include <benchmark/benchmark.h>

#include "support/measure.hpp"
#include "support/workloads.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using paci_bench::measure;
using paci_bench::one_f_one_b_policy;
using paci_bench::paci_policy;
using paci_bench::workload;

using key = std::tuple<paci::op, int, int>;

[[nodiscard]] key key_of(const paci::action& a) { return key{a.kind, a.stage, a.microbatch}; }

[[nodiscard]] bool has_comm(const paci::schedule& sch) {
    for (const auto& prog : sch.ranks)
        for (const auto& a : prog)
            if (paci::is_comm(a.kind)) return true;
    return false;
}

/// The other end of a SEND or RECV.
[[nodiscard]] paci::action partner_of(const paci::action& a) {
    switch (a.kind) {
    case paci::op::SEND_F: return {paci::op::RECV_F, a.stage + 1, a.microbatch};
    case paci::op::RECV_F: return {paci::op::SEND_F, a.stage - 1, a.microbatch};
    case paci::op::SEND_B: return {paci::op::RECV_B, a.stage - 1, a.microbatch};
    case paci::op::RECV_B: return {paci::op::SEND_B, a.stage + 1, a.microbatch};
    default: return a;
    }
}

// ---------------------------------------------------------------------------------------------------
// Naive deadlock detection: repeated scans until no rank moves
// ---------------------------------------------------------------------------------------------------

/// True when every rank runs to its end. A forward needs the previous stage's forward, a backward
/// the next stage's backward (B or I), unless a RECV carries it (lowered, cross-rank); a buffered
/// RECV needs its SEND done; under rendezvous a SEND and its RECV complete together.
[[nodiscard]] bool naive_deadlock_free(const paci::schedule& sch, paci::send_semantics semantics) {
    const paci::pipeline_shape& shape = sch.shape;
    const int P = shape.stages;
    const bool lowered = has_comm(sch);
    const bool rendezvous = semantics == paci::send_semantics::rendezvous;
    std::set<key> done; // F, B (for B and I), SEND_F, SEND_B
    std::vector<std::size_t> pc(sch.ranks.size(), 0);
    const auto current = [&](std::size_t r) -> const paci::action* {
        return pc[r] < sch.ranks[r].size() ? &sch.ranks[r][pc[r]] : nullptr;
    };
    const auto peer_of = [&](const paci::action& a) {
        const paci::action p = partner_of(a);
        return static_cast<std::size_t>(shape.rank_of(p.stage));
    };
    const auto ready = [&](std::size_t r) {
        const paci::action a = *current(r);
        const int rank = static_cast<int>(r);
        switch (a.kind) {
        case paci::op::F:
            if (a.stage == 0 || (lowered && shape.rank_of(a.stage - 1) != rank)) return true;
            return done.count(key{paci::op::F, a.stage - 1, a.microbatch}) != 0;
        case paci::op::B:
        case paci::op::I:
            if (a.stage == P - 1 || (lowered && shape.rank_of(a.stage + 1) != rank)) return true;
            return done.count(key{paci::op::B, a.stage + 1, a.microbatch}) != 0;
        case paci::op::SEND_F:
        case paci::op::SEND_B:
        case paci::op::RECV_F:
        case paci::op::RECV_B:
            if (rendezvous) {
                const paci::action* there = current(peer_of(a));
                return there != nullptr && *there == partner_of(a);
            }
            if (a.kind == paci::op::SEND_F || a.kind == paci::op::SEND_B) return true;
            return done.count(key_of(partner_of(a))) != 0;
        default: return true;
        }
    };
    const auto complete = [&](std::size_t r) {
        const paci::action a = *current(r);
        if (a.kind == paci::op::F || a.kind == paci::op::SEND_F || a.kind == paci::op::SEND_B) done.insert(key_of(a));
        if (a.kind == paci::op::B || a.kind == paci::op::I) done.insert(key{paci::op::B, a.stage, a.microbatch});
        ++pc[r];
    };
    bool progress = true;
    while (progress) {
        progress = false;
        for (std::size_t r = 0; r < sch.ranks.size(); ++r)
            while (current(r) != nullptr && ready(r)) {
                const paci::action a = *current(r);
                complete(r);
                if (rendezvous && paci::is_comm(a.kind)) complete(peer_of(a));
                progress = true;
            }
    }
    for (std::size_t r = 0; r < sch.ranks.size(); ++r)
        if (current(r) != nullptr) return false;
    return true;
}

// ---------------------------------------------------------------------------------------------------
// Naive validation: the same rules as validate(), every check a map lookup
// ---------------------------------------------------------------------------------------------------

struct naive_report {
    std::size_t errors = 0;
    bool buffered = false;   ///< deadlock-free under buffered sends (only run without structural errors)
    bool rendezvous = false; ///< deadlock-free under rendezvous sends
    [[nodiscard]] bool valid() const { return errors == 0 && buffered; }
};

[[nodiscard]] naive_report naive_validate(const paci::schedule& sch) {
    naive_report out;
    const paci::pipeline_shape& shape = sch.shape;
    const int P = shape.stages;
    const int T = sch.microbatches;
    if (P < 1 || shape.ranks < 1 || P % shape.ranks != 0 || static_cast<int>(sch.ranks.size()) != shape.ranks ||
        T < 0) {
        out.errors = 1;
        return out;
    }
    std::map<key, std::pair<int, std::int64_t>> where; // -> (rank, position)
    std::map<int, int> steps_seen;
    for (std::size_t r = 0; r < sch.ranks.size(); ++r)
        for (std::size_t p = 0; p < sch.ranks[r].size(); ++p) {
            const paci::action a = sch.ranks[r][p];
            if (a.stage < 0 || a.stage >= P || shape.rank_of(a.stage) != static_cast<int>(r)) {
                ++out.errors;
                continue;
            }
            if (a.kind == paci::op::STEP) {
                if (a.microbatch != steps_seen[a.stage]) ++out.errors;
                ++steps_seen[a.stage];
                continue;
            }
            if (a.microbatch < 0 || a.microbatch >= T) {
                ++out.errors;
                continue;
            }
            if (!where.emplace(key_of(a), std::pair{static_cast<int>(r), static_cast<std::int64_t>(p)}).second)
                ++out.errors;
        }
    const auto pos = [&](paci::op k, int s, int m) -> std::int64_t {
        const auto it = where.find(key{k, s, m});
        return it == where.end() ? -1 : it->second.second;
    };
    const bool lowered = has_comm(sch);
    for (int s = 0; s < P; ++s) {
        const int rank = shape.rank_of(s);
        const bool cross_down = s + 1 < P && shape.rank_of(s + 1) != rank;
        const bool cross_up = s > 0 && shape.rank_of(s - 1) != rank;
        for (int m = 0; m < T; ++m) {
            const auto f = pos(paci::op::F, s, m);
            const auto b = pos(paci::op::B, s, m);
            const auto i = pos(paci::op::I, s, m);
            const auto w = pos(paci::op::W, s, m);
            const auto r = pos(paci::op::R, s, m);
            const auto bwd = b >= 0 ? b : i;
            int e = 0;
            e += f < 0;
            if (b >= 0 && (i >= 0 || w >= 0)) ++e;
            else if (b < 0 && i < 0 && w < 0) e += f >= 0;
            else if (b < 0 && (i < 0 || w < 0)) ++e;
            if (f >= 0 && s > 0 && shape.rank_of(s - 1) == rank) e += pos(paci::op::F, s - 1, m) > f;
            if (bwd >= 0 && s + 1 < P && shape.rank_of(s + 1) == rank) {
                const auto nb = pos(paci::op::B, s + 1, m);
                e += (nb >= 0 ? nb : pos(paci::op::I, s + 1, m)) > bwd;
            }
            if (f >= 0) e += (bwd >= 0 && bwd < f) + (r >= 0 && r < f);
            e += i >= 0 && w >= 0 && w < i;
            e += r >= 0 && bwd >= 0 && r > bwd;
            const auto sf = pos(paci::op::SEND_F, s, m);
            const auto rf = pos(paci::op::RECV_F, s, m);
            const auto sb = pos(paci::op::SEND_B, s, m);
            const auto rb = pos(paci::op::RECV_B, s, m);
            e += (sf >= 0 && !cross_down) + (rf >= 0 && !cross_up) + (sb >= 0 && !cross_up) + (rb >= 0 && !cross_down);
            e += sf >= 0 && (f < 0 || sf < f);
            e += rf >= 0 && f >= 0 && rf > f;
            e += sb >= 0 && (bwd < 0 || sb < bwd);
            e += rb >= 0 && bwd >= 0 && rb > bwd;
            if (cross_down) {
                const auto recv = pos(paci::op::RECV_F, s + 1, m);
                e += (sf >= 0) != (recv >= 0);
                e += lowered && sf < 0 && recv < 0 && f >= 0;
                const auto send = pos(paci::op::SEND_B, s + 1, m);
                e += (send >= 0) != (rb >= 0);
                e += lowered && send < 0 && rb < 0 && bwd >= 0;
            }
            out.errors += static_cast<std::size_t>(e);
        }
        const int expected = sch.steps > 0 ? sch.steps : steps_seen[0];
        if (steps_seen[s] != expected) ++out.errors;
    }
    if (out.errors == 0 && lowered) {
        std::map<std::pair<int, int>, std::vector<paci::action>> sends, recvs; // (src, dst) in program order
        for (std::size_t r = 0; r < sch.ranks.size(); ++r)
            for (const paci::action a : sch.ranks[r]) {
                if (!paci::is_comm(a.kind)) continue;
                const int here = static_cast<int>(r);
                const int peer = shape.rank_of(partner_of(a).stage);
                if (a.kind == paci::op::SEND_F || a.kind == paci::op::SEND_B) sends[{here, peer}].push_back(a);
                else recvs[{peer, here}].push_back(a);
            }
        for (const auto& [channel, s] : sends) {
            const auto& rv = recvs[channel];
            for (std::size_t j = 0; j < std::min(s.size(), rv.size()); ++j)
                if (partner_of(s[j]) != rv[j]) {
                    ++out.errors;
                    break;
                }
        }
    }
    if (out.errors == 0) {
        out.buffered = naive_deadlock_free(sch, paci::send_semantics::buffered);
        out.rendezvous = naive_deadlock_free(sch, paci::send_semantics::rendezvous);
    }
    return out;
}

// ---------------------------------------------------------------------------------------------------
// Naive replay: the same quantities as replay(), state in maps
// ---------------------------------------------------------------------------------------------------

template <class Controller>
[[nodiscard]] paci::replay_result naive_replay(const paci::schedule& sch, const Controller& ctl) {
    using sm = std::pair<int, int>;
    const int P = sch.shape.stages;
    const int T = std::max(sch.microbatches, 0);
    const auto valid = [&](const paci::action& a) {
        return a.stage >= 0 && a.stage < P && (a.kind == paci::op::STEP || (a.microbatch >= 0 && a.microbatch < T));
    };
    std::set<sm> recomputed, split;
    for (const auto& prog : sch.ranks)
        for (const auto& a : prog) {
            if (!valid(a)) continue;
            if (a.kind == paci::op::R) recomputed.insert({a.stage, a.microbatch});
            if (a.kind == paci::op::W) split.insert({a.stage, a.microbatch});
        }
    std::map<sm, paci::version_record> records;
    std::map<int, paci::stage_replay> per_stage;
    std::map<int, paci::version_t> current;
    std::map<int, std::vector<int>> pending;
    std::map<int, std::map<paci::version_t, int>> stashed; // stage -> version -> in-flight micro-batches
    std::map<int, int> stored, activations;
    const auto resident = [&](int s) {
        if (!Controller::stashes) return 1;
        const auto& v = stashed[s];
        return static_cast<int>(v.size()) + (v.count(current[s]) != 0 ? 0 : 1);
    };
    paci::replay_result out;
    out.stages = P;
    out.microbatches = T;
    out.stored_timeline.resize(sch.ranks.size());
    out.activation_timeline.resize(sch.ranks.size());
    for (std::size_t r = 0; r < sch.ranks.size(); ++r) {
        std::int32_t rank_stored = 0;
        std::int32_t rank_acts = 0;
        for (const paci::action a : sch.ranks[r]) {
            if (valid(a) && !paci::is_comm(a.kind)) {
                const int s = a.stage;
                auto& sum = per_stage[s];
                const int before_stored = stored[s];
                const int before_acts = activations[s];
                if (a.kind == paci::op::STEP) {
                    for (const int m : pending[s]) records[{s, m}].applied = current[s];
                    pending[s].clear();
                    ++current[s];
                    ++sum.updates;
                    sum.peak_versions = std::max(sum.peak_versions, resident(s));
                } else {
                    const int m = a.microbatch;
                    auto& rec = records[{s, m}];
                    const auto release = [&] {
                        pending[s].push_back(m);
                        if (rec.forward < 0) return;
                        --stored[s];
                        --activations[s];
                        if (Controller::stashes) {
                            auto& v = stashed[s];
                            if (--v[rec.forward] == 0) v.erase(rec.forward);
                        }
                        sum.peak_versions = std::max(sum.peak_versions, resident(s));
                    };
                    switch (a.kind) {
                    case paci::op::F:
                        rec.forward = current[s];
                        ++stored[s];
                        if (recomputed.count({s, m}) == 0) ++activations[s];
                        if (Controller::stashes) {
                            ++stashed[s][current[s]];
                            sum.peak_versions = std::max(sum.peak_versions, resident(s));
                        }
                        break;
                    case paci::op::R:
                        rec.recompute = current[s];
                        ++activations[s];
                        break;
                    case paci::op::B:
                        rec.backward = ctl.backward_reads(current[s], rec.forward);
                        release();
                        break;
                    case paci::op::I:
                        rec.backward = ctl.backward_reads(current[s], rec.forward);
                        if (split.count({s, m}) == 0) release();
                        break;
                    case paci::op::W:
                        rec.weight = ctl.backward_reads(current[s], rec.forward);
                        release();
                        break;
                    default: break;
                    }
                    if (rec.forward >= 0 && rec.backward >= 0) sum.max_drift = std::max(sum.max_drift, rec.drift());
                }
                sum.peak_stored = std::max(sum.peak_stored, stored[s]);
                sum.peak_activations = std::max(sum.peak_activations, activations[s]);
                rank_stored += stored[s] - before_stored;
                rank_acts += activations[s] - before_acts;
            }
            out.stored_timeline[r].push_back(rank_stored);
            out.activation_timeline[r].push_back(rank_acts);
        }
    }
    out.records.resize(static_cast<std::size_t>(P) * static_cast<std::size_t>(T));
    out.per_stage.resize(static_cast<std::size_t>(std::max(P, 0)));
    for (const auto& [at, rec] : records)
        out.records[static_cast<std::size_t>(at.first) * static_cast<std::size_t>(T) + static_cast<std::size_t>(at.second)] = rec;
    for (auto& [s, sum] : per_stage) out.per_stage[static_cast<std::size_t>(s)] = sum;
    for (int s = 0; s < P; ++s)
        for (int m = 0; m < T; ++m) {
            auto& sum = out.per_stage[static_cast<std::size_t>(s)];
            sum.max_staleness = std::max(sum.max_staleness, out.at(s, m).staleness());
        }
    out.vertical_spread.assign(static_cast<std::size_t>(T), 0);
    for (int m = 0; m < T; ++m) {
        std::vector<paci::version_t> v;
        for (int s = 0; s < P; ++s) v.push_back(out.at(s, m).forward);
        const bool complete = std::find(v.begin(), v.end(), -1) == v.end();
        const int spread = v.empty() ? 0 : *std::max_element(v.begin(), v.end()) - *std::min_element(v.begin(), v.end());
        out.vertical_spread[static_cast<std::size_t>(m)] = complete ? spread : -1;
        if (complete) out.max_vertical_spread = std::max(out.max_vertical_spread, spread);
    }
    return out;
}

[[nodiscard]] bool same_replay(const paci::replay_result& a, const paci::replay_result& b) {
    return a.stages == b.stages && a.microbatches == b.microbatches && a.records == b.records &&
           a.per_stage == b.per_stage && a.vertical_spread == b.vertical_spread &&
           a.max_vertical_spread == b.max_vertical_spread && a.stored_timeline == b.stored_timeline &&
           a.activation_timeline == b.activation_timeline;
}

// ---------------------------------------------------------------------------------------------------
// Inputs, prepared once outside the timed loops, and the baselines checked against the library
// ---------------------------------------------------------------------------------------------------

/// The baselines agree with the library on mutations (swap, drop, duplicate an action) of small
/// lowered schedules; returns a description of the first disagreement, or empty.
[[nodiscard]] std::string check_validators_agree() {
    std::mt19937 rng(12345);
    const std::vector<paci::schedule> seeds = {
        paci::lower(paci::paci_policy<>{.stages = 4, .microbatches = 3, .steps = 3, .cap = {}}.generate()),
        paci::lower(paci::one_f_one_b<>{.stages = 4, .microbatches = 8, .steps = 2, .cap = {}}.generate(),
                    paci::lowering::eager),
        paci::lower(paci::zb_h1{.stages = 3, .microbatches = 5, .steps = 1}.generate()),
        paci::paci_policy<paci::backward_flavour::recompute>{.stages = 3, .microbatches = 2, .steps = 3, .cap = {}}
            .generate(),
    };
    for (const auto& seed : seeds) {
        for (int trial = 0; trial < 150; ++trial) {
            paci::schedule s = seed;
            auto& prog = s.ranks[rng() % s.ranks.size()];
            const std::size_t at = rng() % prog.size();
            switch (trial % 3) {
            case 0: std::swap(prog[at], prog[(at + 1) % prog.size()]); break;
            case 1: prog.erase(prog.begin() + static_cast<std::ptrdiff_t>(at)); break;
            default: prog.insert(prog.begin() + static_cast<std::ptrdiff_t>(rng() % prog.size()), prog[at]); break;
            }
            const auto lib = paci::validate(s);
            const auto naive = naive_validate(s);
            if (lib.valid() != naive.valid() || lib.structure_ok() != (naive.errors == 0) ||
                lib.deadlock_free(paci::send_semantics::rendezvous) != (naive.errors == 0 && naive.rendezvous))
                return "naive_validate disagrees with validate() on a mutated schedule";
        }
    }
    return {};
}

struct prepared {
    paci::schedule compute;
    paci::schedule lowered; ///< lower(compute): rendezvous-safe placement
    std::string error;      ///< non-empty when a baseline disagrees with the library
};

template <class Policy>
[[nodiscard]] prepared prepare(const Policy& policy) {
    prepared out;
    out.compute = policy.generate();
    out.lowered = paci::lower(out.compute);
    static const std::string mutations = check_validators_agree();
    const auto lib = paci::validate(out.lowered);
    const auto naive = naive_validate(out.lowered);
    if (!mutations.empty()) out.error = mutations;
    else if (!lib.valid() || !lib.deadlock_free(paci::send_semantics::rendezvous))
        out.error = "the lowered workload is not valid";
    else if (naive.errors != 0 || !naive.buffered || !naive.rendezvous)
        out.error = "naive_validate rejects the lowered workload";
    else if (!same_replay(paci::replay(out.compute, policy.controller()), naive_replay(out.compute, policy.controller())))
        out.error = "naive_replay differs from replay()";
    else {
        const paci::pipedream stash_policy{.stages = 5, .microbatches = 2, .steps = 4, .cap = {}};
        const paci::schedule stash_schedule = stash_policy.generate();
        if (!same_replay(paci::replay(stash_schedule, stash_policy.controller()),
                         naive_replay(stash_schedule, stash_policy.controller())))
            out.error = "naive_replay differs from replay() with stashing";
    }
    return out;
}

[[nodiscard]] const prepared& inputs(workload w) {
    return paci_bench::prepared_once(w, [](const auto& policy) { return prepare(policy); });
}

// ---------------------------------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------------------------------

void BM_validate(benchmark::State& state, workload w) {
    const prepared& in = inputs(w);
    measure(state, in.error, in.lowered.size(), [&] { return paci::validate(in.lowered); });
}

void BM_naive_validate(benchmark::State& state, workload w) {
    const prepared& in = inputs(w);
    measure(state, in.error, in.lowered.size(), [&] { return naive_validate(in.lowered); });
}

void BM_find_deadlock(benchmark::State& state, workload w, paci::send_semantics semantics) {
    const prepared& in = inputs(w);
    measure(state, in.error, in.lowered.size(), [&] { return paci::find_deadlock(in.lowered, semantics); });
}

void BM_naive_find_deadlock(benchmark::State& state, workload w, paci::send_semantics semantics) {
    const prepared& in = inputs(w);
    measure(state, in.error, in.lowered.size(), [&] { return naive_deadlock_free(in.lowered, semantics); });
}

template <class Policy>
void BM_replay(benchmark::State& state, workload w, const Policy& policy) {
    const prepared& in = inputs(w);
    const auto controller = policy.controller();
    measure(state, in.error, in.compute.compute_size(), [&] { return paci::replay(in.compute, controller); });
}

template <class Policy>
void BM_naive_replay(benchmark::State& state, workload w, const Policy& policy) {
    const prepared& in = inputs(w);
    const auto controller = policy.controller();
    measure(state, in.error, in.compute.compute_size(), [&] { return naive_replay(in.compute, controller); });
}

using paci::send_semantics;

BENCHMARK_CAPTURE(BM_validate, one_f_one_b, workload::one_f_one_b)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_validate, one_f_one_b, workload::one_f_one_b)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_validate, paci, workload::paci)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_validate, paci, workload::paci)->Unit(benchmark::kMillisecond);

BENCHMARK_CAPTURE(BM_find_deadlock, one_f_one_b_buffered, workload::one_f_one_b, send_semantics::buffered)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_find_deadlock, one_f_one_b_buffered, workload::one_f_one_b, send_semantics::buffered)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_find_deadlock, one_f_one_b_rendezvous, workload::one_f_one_b, send_semantics::rendezvous)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_find_deadlock, one_f_one_b_rendezvous, workload::one_f_one_b, send_semantics::rendezvous)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_find_deadlock, paci_buffered, workload::paci, send_semantics::buffered)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_find_deadlock, paci_buffered, workload::paci, send_semantics::buffered)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_find_deadlock, paci_rendezvous, workload::paci, send_semantics::rendezvous)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_find_deadlock, paci_rendezvous, workload::paci, send_semantics::rendezvous)
    ->Unit(benchmark::kMillisecond);

BENCHMARK_CAPTURE(BM_replay, one_f_one_b, workload::one_f_one_b, one_f_one_b_policy())->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_replay, one_f_one_b, workload::one_f_one_b, one_f_one_b_policy())
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_replay, paci, workload::paci, paci_policy())->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_naive_replay, paci, workload::paci, paci_policy())->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
