#pragma once
/// \file
/// Test helpers shared by the policy tests: PyTorch 2.11's compute fixtures, programs without their
/// STEPs, the checks every generated schedule and its lowerings must pass, per-stage order, peak
/// memory against PyTorch's, and training through the in-process runtime against a sequential run.

#include <paci/analysis/memory.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/core/action.hpp>
#include <paci/core/lower.hpp>
#include <paci/core/schedule.hpp>
#include <paci/io/csv.hpp>
#include <paci/runtime/pipeline.hpp>

#include "support/catch.hpp"
#include "support/mlp.hpp"

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string_view>
#include <vector>

namespace paci_test {

/// PyTorch 2.11's schedule in `tests/io/fixtures/<name>`, imported.
inline paci::imported_schedule pytorch_fixture(std::string_view name) {
    return paci::read_csv_file(std::filesystem::path(PACI_TEST_SOURCE_DIR) / "io" / "fixtures" / name);
}

/// Each rank's program without its STEPs (PyTorch writes none).
inline std::vector<std::vector<paci::action>> compute_only(const paci::schedule& s) {
    std::vector<std::vector<paci::action>> out;
    for (const auto& prog : s.ranks) {
        auto& o = out.emplace_back();
        for (const auto& a : prog)
            if (a.kind != paci::op::STEP) o.push_back(a);
    }
    return out;
}

/// The two lowerings of a schedule.
struct lowered_pair {
    paci::schedule eager;
    paci::schedule safe;
};

/// Checks `s` valid and deadlock-free under rendezvous sends, and its rendezvous_safe lowering well
/// formed and deadlock-free under buffered and rendezvous sends; returns both lowerings (the caller
/// checks the eager one under the sends it is made for).
inline lowered_pair check_valid_and_safe_lowering(const paci::schedule& s) {
    const auto report = paci::validate(s);
    INFO(report);
    REQUIRE(report.valid());
    CHECK(report.deadlock_free(paci::send_semantics::rendezvous));
    lowered_pair out{paci::lower(s, paci::lowering::eager), paci::lower(s, paci::lowering::rendezvous_safe)};
    CHECK(paci::validate(out.safe).structure_ok());
    CHECK(paci::find_deadlock(out.safe, paci::send_semantics::buffered).deadlock_free);
    CHECK(paci::find_deadlock(out.safe, paci::send_semantics::rendezvous).deadlock_free);
    return out;
}

/// Checks stages `stages` of rank program `prog` (`updates` updates of `microbatches` each): forwards,
/// backwards (ops in `backward`) and weight-gradient work (ops in `weight`) each in micro-batch order
/// (a sequential run's gradient summation order); each STEP counts the updates and comes right after
/// its stage's last weight-gradient work of the update.
inline void check_stage_order(const std::vector<paci::action>& prog, std::initializer_list<int> stages, int microbatches,
                              int updates, std::initializer_list<paci::op> backward, std::initializer_list<paci::op> weight) {
    const auto in = [](paci::op kind, std::initializer_list<paci::op> ops) {
        return std::find(ops.begin(), ops.end(), kind) != ops.end();
    };
    for (const int st : stages) {
        int next_f = 0, next_b = 0, next_w = 0, steps = 0;
        for (const auto& a : prog) {
            if (a.stage != st) continue;
            if (a.kind == paci::op::F) CHECK(a.microbatch == next_f++);
            if (in(a.kind, backward)) CHECK(a.microbatch == next_b++);
            if (in(a.kind, weight)) CHECK(a.microbatch == next_w++);
            if (a.kind == paci::op::STEP) {
                CHECK(a.microbatch == steps++);
                CHECK(next_w == steps * microbatches);
            }
        }
        CHECK(steps == updates);
    }
    // Each STEP comes right after its stage's last weight-gradient work of the update.
    for (std::size_t p = 0; p < prog.size(); ++p) {
        if (prog[p].kind != paci::op::STEP) continue;
        REQUIRE(p > 0);
        CHECK(in(prog[p - 1].kind, weight));
        CHECK(prog[p - 1].stage == prog[p].stage);
    }
}

/// Checks paci's peak stored micro-batches and activations (`mine`) at most PyTorch's (`theirs`), per
/// stage and per rank over `ranks` ranks; with `their_rank_peak`, also that every rank of PyTorch's
/// peaks at that many stored micro-batches.
inline void check_peaks_at_most(const paci::memory_report& mine, const paci::memory_report& theirs, std::size_t ranks,
                                std::optional<int> their_rank_peak = std::nullopt) {
    REQUIRE(mine.peak_stored.size() == theirs.peak_stored.size());
    for (std::size_t st = 0; st < mine.peak_stored.size(); ++st) {
        CAPTURE(st);
        CHECK(mine.peak_stored[st] <= theirs.peak_stored[st]);
        CHECK(mine.peak_activations[st] <= theirs.peak_activations[st]);
    }
    REQUIRE(mine.rank_peak_stored.size() == ranks);
    for (std::size_t r = 0; r < ranks; ++r) {
        CAPTURE(r);
        if (their_rank_peak) CHECK(theirs.rank_peak_stored[r] == *their_rank_peak);
        CHECK(mine.rank_peak_stored[r] <= theirs.rank_peak_stored[r]);
        CHECK(mine.rank_peak_activations[r] <= theirs.rank_peak_activations[r]);
    }
}

/// Trains `updates` updates of `policy` through the in-process runtime on the test MLP (one layer per
/// stage) and checks the parameters against the same model trained without a pipeline, bit for bit:
/// a flush, and every stage summing its weight gradients in micro-batch order, give the sequential
/// run's arithmetic exactly. The recorded trace is a valid schedule.
template <class Policy>
void check_trains_like_the_reference(const Policy& policy, int updates) {
    INFO(policy);
    const int n = policy.microbatches * updates;
    const mlp_config cfg = mlp_config_for(policy.shape().stages, policy.microbatches);
    auto stages = make_stages(cfg);
    const auto initial = parameters(stages);
    paci::inprocess_pipeline pipeline(policy, pointers(stages));
    pipeline.run(n);
    pipeline.drain();
    mlp_reference ref(cfg);
    static_cast<void>(ref.train(0, n));
    const auto got = parameters(stages);
    REQUIRE_FALSE(bitwise_equal(got, initial));
    CHECK(bitwise_equal(got, ref.parameters()));
    for (const auto& st : stages) {
        CHECK(st.forwards() == n);
        CHECK(st.backwards() == n);
        CHECK(st.steps() == updates);
        CHECK(st.stored() == 0);
    }
    CHECK(paci::validate(pipeline.trace().to_schedule()).valid());
}

/// Checks that `policy`'s executor program streams `generate()`'s actions one update at a time over
/// `ranks` ranks: paused at the second update's first micro-batch nothing of it is taken, then
/// the rest up to the end.
template <class Policy>
void check_program_streams(const Policy& policy, int ranks) {
    const paci::schedule s = policy.generate();
    const int cut = policy.microbatches;
    const int end = policy.microbatches * policy.steps;
    for (int r = 0; r < ranks; ++r) {
        CAPTURE(r);
        auto stream = policy.program(r);
        std::vector<paci::action> got;
        paci::action a;
        while (stream.next(a, cut)) got.push_back(a);
        CHECK(got.size() == s.ranks[static_cast<std::size_t>(r)].size() / static_cast<std::size_t>(policy.steps));
        while (stream.next(a, end)) got.push_back(a);
        while (stream.next_draining(a, end)) got.push_back(a);
        CHECK(got == s.ranks[static_cast<std::size_t>(r)]);
    }
}

} // namespace paci_test
