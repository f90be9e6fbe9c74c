/// \file
/// Generation of the V-placement policies, ZB-V and DualPipeV, against direct constructions of the
/// same schedules and against interleaved 1F1B of the same size (two stages per rank, loop
/// placement).
///
/// Workloads (one core, Release): 32 ranks, 64 stages, 4096 micro-batches, one update:
/// - `zb_v`: `zb_v{.ranks = 32, .microbatches = 4096, .steps = 1}`, 64 x 4096 x (F + I + W) =
///   786432 compute actions;
/// - `dualpipe_v`: `dualpipe_v{.ranks = 32, .microbatches = 4096, .steps = 1}`, 64 x 4096 x (F + B)
///   plus the Ws of the 1520 split backwards, 525808 compute actions;
/// - `interleaved`: `interleaved_one_f_one_b{.ranks = 32, .chunks = 2, .microbatches = 4096}`,
///   64 x 4096 x (F + B) = 524288 compute actions.
///
/// `items_per_second` counts compute actions. Target: at least interleaved 1F1B's rate (the V
/// policies are closed-form phase constructions, one pass per update and rank).
///
/// Baselines (`BM_direct_*`) produce the same schedules from the same phase rules, checked once
/// before timing, the plain way: the weight-gradient queue a `std::deque` of actions, each rank's
/// program a fresh vector grown without reservation, every (op, stage) counter a `std::map` entry,
/// and no program stream. `generate()` goes through the stream the executor runs (`update_program`,
/// one `next()` per action, then a copy into the schedule), so the two measure about the same: the
/// phase rules cost little next to producing the actions at all.

#include <paci/core/schedule.hpp>
#include <paci/policy/dualpipe_v.hpp>
#include <paci/policy/interleaved.hpp>
#include <paci/policy/zb_v.hpp>

#include <benchmark/benchmark.h>

#include "support/measure.hpp"

#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace {

/// Per-stage counters of the direct constructions, one map entry per (op, stage).
struct op_counters {
    std::map<std::pair<paci::op, int>, int> next;
    int take(paci::op o, int stage) { return next[{o, stage}]++; }
    int count(paci::op o, int stage) { return next[{o, stage}]; }
};

/// The header's phases for ZB-V, spelled out with a deque for the cool-down's W lag.
paci::schedule direct_generate(const paci::zb_v& p) {
    p.validate();
    paci::schedule out = paci::detail::make_schedule(p.shape(), p.microbatches, 1, paci::detail::print(p));
    const int R = p.ranks, M = p.microbatches;
    for (int r = 0; r < R; ++r) {
        std::vector<paci::action> prog;
        op_counters n;
        std::deque<paci::action> lag;
        const int st[2] = {r, 2 * R - 1 - r};
        const auto weight = [&](paci::action i) {
            prog.emplace_back(paci::op::W, i.stage, i.microbatch);
            if (n.take(paci::op::W, i.stage) + 1 == M) prog.emplace_back(paci::op::STEP, i.stage, 0);
        };
        const auto cooling = [&] { return n.count(paci::op::F, st[0]) == M && n.count(paci::op::F, st[1]) == M; };
        const auto fwd = [&](int c) {
            if (n.count(paci::op::F, st[c]) < M) prog.emplace_back(paci::op::F, st[c], n.take(paci::op::F, st[c]));
        };
        const auto iw = [&](int c) {
            if (n.count(paci::op::I, st[c]) == M) return;
            const paci::action i{paci::op::I, st[c], n.take(paci::op::I, st[c])};
            prog.push_back(i);
            if (!cooling()) return weight(i);
            lag.push_back(i);
            if (static_cast<int>(lag.size()) > 2 * r) {
                weight(lag.front());
                lag.pop_front();
            }
        };
        for (int k = 0; k < 2 * (R - r) - 1; ++k) fwd(0);
        fwd(1);
        for (int k = 0; k < r; ++k) fwd(0), fwd(1);
        for (int k = 0; k < R - 1 - r; ++k) iw(1), fwd(1);
        while (n.count(paci::op::I, st[0]) < M || n.count(paci::op::I, st[1]) < M) iw(1), fwd(0), iw(0), fwd(1);
        for (; !lag.empty(); lag.pop_front()) weight(lag.front());
        out.ranks[static_cast<std::size_t>(r)] = std::move(prog);
    }
    return out;
}

/// The header's eight phases for DualPipeV, spelled out with a deque for the W queue.
paci::schedule direct_generate(const paci::dualpipe_v& p) {
    p.validate();
    paci::schedule out = paci::detail::make_schedule(p.shape(), p.microbatches, 1, paci::detail::print(p));
    const int R = p.ranks, M = p.microbatches;
    for (int r = 0; r < R; ++r) {
        std::vector<paci::action> prog;
        op_counters n;
        std::deque<paci::action> queue;
        const int st[2] = {r, 2 * R - 1 - r};
        const auto done = [&](int stage) {
            if (n.take(paci::op::W, stage) + 1 == M) prog.emplace_back(paci::op::STEP, stage, 0);
        };
        const auto fwd = [&](int c, bool pair) {
            paci::action a{paci::op::F, st[c], n.take(paci::op::F, st[c])};
            prog.push_back(pair ? paci::overlapped(a) : a);
        };
        const auto full = [&](int c) {
            prog.emplace_back(paci::op::B, st[c], n.take(paci::op::B, st[c]));
            done(st[c]);
        };
        const auto split = [&](int c) {
            prog.emplace_back(paci::op::I, st[c], n.take(paci::op::B, st[c]));
            queue.push_back(prog.back());
        };
        const auto weight = [&] {
            const paci::action i = queue.front();
            queue.pop_front();
            prog.emplace_back(paci::op::W, i.stage, i.microbatch);
            done(i.stage);
        };
        for (int k = 0; k < 2 * (R - 1 - r); ++k) fwd(0, false);
        for (int k = 0; k <= r; ++k) fwd(0, false), fwd(1, false);
        for (int k = 0; k < R - 1 - r; ++k) split(1), weight(), fwd(1, false);
        for (int k = 0; k < M - 2 * R + r + 1; ++k) fwd(0, !(k == 0 && r == R - 1)), full(1), fwd(1, true), full(0);
        for (int k = 0; k < R - 1 - r; ++k) full(1), fwd(1, true), full(0);
        for (int k = 0; k <= r; ++k) {
            if (2 * k >= r + 1) split(1);
            else full(1);
            if (2 * k + 1 >= r + 1) split(0);
            else full(0);
        }
        for (int k = 0; k < R - 1 - r; ++k) weight(), split(0);
        while (!queue.empty()) weight();
        out.ranks[static_cast<std::size_t>(r)] = std::move(prog);
    }
    return out;
}

template <class Policy>
std::string disagreement(const Policy& policy) {
    return direct_generate(policy) == policy.generate() ? std::string{} : "direct_generate differs from generate()";
}

template <class Policy>
void BM_generate(benchmark::State& state, const Policy& policy) {
    const std::size_t items = policy.generate().compute_size();
    paci_bench::measure(state, std::string{}, items, [&] { return policy.generate(); });
}

template <class Policy>
void BM_direct_generate(benchmark::State& state, const Policy& policy) {
    const std::size_t items = policy.generate().compute_size();
    paci_bench::measure(state, disagreement(policy), items, [&] { return direct_generate(policy); });
}

const paci::zb_v zb_v_policy{.ranks = 32, .microbatches = 4096, .steps = 1};
const paci::dualpipe_v dualpipe_v_policy{.ranks = 32, .microbatches = 4096, .steps = 1};

} // namespace

BENCHMARK_CAPTURE(BM_generate, zb_v, zb_v_policy)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_direct_generate, zb_v, zb_v_policy)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_generate, dualpipe_v, dualpipe_v_policy)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_direct_generate, dualpipe_v, dualpipe_v_policy)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_generate, interleaved,
                  paci::interleaved_one_f_one_b{.ranks = 32, .chunks = 2, .microbatches = 4096, .steps = 1})
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
