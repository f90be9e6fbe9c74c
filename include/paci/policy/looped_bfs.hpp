#pragma once
/// \file
/// Looped breadth-first pipeline parallelism (Lamy-Poirier, 2023, "Breadth-First Pipeline
/// Parallelism"; PyTorch's `LoopedBFS`): several chunks per rank, each chunk runs all the
/// micro-batches of an update before the rank moves to its next chunk.

#include <paci/policy/schedule_policy.hpp>
#include <paci/version/flush.hpp>

#include <cstdint>
#include <limits>
#include <ostream>
#include <vector>

namespace paci {

/// Looped BFS: `ranks` ranks each run `chunks` stages placed by the loop map (stage `c * ranks + r`
/// on rank `r`), so the pipeline has `ranks * chunks` stages. Per update, rank `r` runs the forwards
/// of all `microbatches` micro-batches on its chunks in stage order, then their backwards on its
/// chunks in reverse stage order, each chunk's micro-batches in order; each stage updates right after
/// its last backward of the update (a flush).
///
/// With forward cost `F` and backward cost `B` on every stage and free transfers, one update takes
/// `(F + B) (max(chunks * ranks + M, chunks * M + ranks) - 1)` for `M` micro-batches: GPipe's
/// `(F + B) (M + P - 1)` over `P = chunks * ranks` stages when `M <= ranks`, and
/// `(F + B) (chunks * M + ranks - 1)` when `M >= ranks`: the fill and the drain take `ranks - 1`
/// slots of one stage, against GPipe's `chunks * ranks - 1` over the same stages. Every stage stores
/// all `M` micro-batches of an update at its peak, a rank `chunks * M`.
///
/// PyTorch 2.11's `LoopedBFS` runs each chunk's backwards last in, first out; here they run in
/// micro-batch order (as GPipe's do), which keeps a sequential run's gradient summation order. Per
/// stage, a micro-batch is stored from its forward to its backward either way, so the makespan and
/// the peaks above are the same. Any number of micro-batches; one chunk is GPipe.
struct looped_bfs {
    static constexpr std::string_view name = "looped_bfs";
    static constexpr bool splits_backward = false;
    static constexpr bool recomputes = false;
    int ranks = 1;
    int chunks = 2;       ///< stages per rank (virtual stages)
    int microbatches = 1; ///< micro-batches per optimizer update
    int steps = 1;

    void validate() const {
        detail::config_require(ranks >= 1, name, "ranks", ranks, "must be >= 1");
        detail::config_require(chunks >= 1, name, "chunks", chunks, "must be >= 1");
        if (!(static_cast<long long>(ranks) * chunks <= max_stages)) detail::config_fail(name, "ranks * chunks",
                               static_cast<long long>(ranks) * chunks, detail::concat("must be <= ", max_stages));
        detail::check_counts(name, microbatches, steps);
        // A rank's forwards per update are counted in int.
        if (!(static_cast<long long>(microbatches) * chunks <= std::numeric_limits<std::int32_t>::max()))
            detail::config_fail(name, "microbatches * chunks", static_cast<long long>(microbatches) * chunks,
                                "must fit in 32 bits");
    }
    /// \throws config_error when `ranks * chunks` is not a stage count (checked before it is computed).
    [[nodiscard]] pipeline_shape shape() const {
        const long long stages = static_cast<long long>(ranks) * chunks;
        if (!(ranks >= 1 && chunks >= 1 && stages <= max_stages))
            detail::config_fail(name, "ranks * chunks", stages, detail::concat("must be in [1, ", max_stages, "]"));
        return {static_cast<int>(stages), ranks, stage_map::loop};
    }
    [[nodiscard]] flush controller() const { return flush{microbatches}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }

    /// 1 / micro-batches per update: the last stage scales its loss by it.
    [[nodiscard]] double loss_scale() const noexcept { return 1.0 / static_cast<double>(microbatches); }
    /// Every update drains, so `executor::run(n)` takes whole updates.
    [[nodiscard]] int run_granularity() const noexcept { return microbatches; }
    /// Rank `rank`'s endless program, one update's program at a time. Validates the policy first and
    /// refuses an update's program past `paci::limits` before anything is allocated.
    [[nodiscard]] update_program<looped_bfs> program(int rank) const {
        validate();
        detail::check_rank(name, rank, shape().ranks);
        detail::check_schedule_size(name, actions_per_update());
        return unchecked_program(rank);
    }
    /// `program(rank)` of a validated policy and a rank in range.
    [[nodiscard]] update_program<looped_bfs> unchecked_program(int rank) const {
        return update_program<looped_bfs>(*this, rank);
    }

    [[nodiscard]] schedule generate() const {
        validate();
        return detail::materialize(*this, static_cast<std::int64_t>(microbatches) * steps,
                                   detail::mul_sat(actions_per_update(), static_cast<std::uint64_t>(steps)));
    }

    /// Appends update `g`'s program of rank `r`: the forwards chunk by chunk in stage order, the
    /// backwards chunk by chunk in reverse stage order, each stage's update right after its last backward.
    void append_update(int r, int g, std::vector<action>& prog) const {
        const int base = g * microbatches;
        for (int c = 0; c < chunks; ++c)
            for (int m = 0; m < microbatches; ++m) prog.emplace_back(op::F, c * ranks + r, base + m);
        for (int c = chunks - 1; c >= 0; --c) {
            for (int m = 0; m < microbatches; ++m) prog.emplace_back(op::B, c * ranks + r, base + m);
            prog.emplace_back(op::STEP, c * ranks + r, g);
        }
    }

    friend constexpr bool operator==(const looped_bfs&, const looped_bfs&) = default;

private:
    /// Actions of one rank per update: a forward and a backward per chunk and micro-batch, a STEP per chunk.
    [[nodiscard]] std::uint64_t actions_per_update() const noexcept {
        const auto v = static_cast<std::uint64_t>(chunks);
        return detail::add_sat(detail::mul_sat(static_cast<std::uint64_t>(microbatches), 2U * v), v);
    }
};

inline std::ostream& operator<<(std::ostream& os, const looped_bfs& p) {
    return os << "looped_bfs{.ranks = " << p.ranks << ", .chunks = " << p.chunks
              << ", .microbatches = " << p.microbatches << ", .steps = " << p.steps << "}";
}

static_assert(schedule_policy<looped_bfs>);

} // namespace paci
