#pragma once
/// \file
/// Interleaved zero-bubble (PyTorch's `InterleavedZeroBubble`): interleaved 1F1B's placement and
/// orders with the backward split into `I` and `W` as in Qi et al., "Zero Bubble Pipeline Parallelism".

#include <paci/policy/schedule_policy.hpp>
#include <paci/version/flush.hpp>

#include <cstdint>
#include <limits>
#include <ostream>
#include <vector>

namespace paci {

/// Interleaved zero-bubble: `ranks` ranks each run `chunks` stages placed by the loop map (stage
/// `c * ranks + r` on rank `r`), `ranks * chunks` stages in all; the backward is split into `I`
/// (input gradient, on the critical path) and `W` (weight gradient, deferred into what would be
/// bubbles).
///
/// Construction: ZB-H1's rule (see `zero_bubble`) with the rank `r` in place of the stage and
/// `chunks * ranks` in place of the stage count, over interleaved 1F1B's orders. Each rank visits its
/// forwards in interleaved 1F1B's order (forward `k`: chunk `(k / ranks) % chunks`, micro-batch
/// `(k / (ranks * chunks)) * ranks + k % ranks`) and its `I`s in the same order with the chunks
/// reversed; its `W`s follow its `I`s. Rank `r` runs `warmup(r) = chunks * ranks - r` forwards, then
/// repeats `I`, `W` (lagging `defer(r) = r` behind the `I`s), `F`, and ends with the deferred `W`s;
/// a flush, and each stage updates right after its last `W` of the update. Requires `microbatches` to
/// be a multiple of `ranks` (micro-batches advance through the chunks in blocks of `ranks`).
///
/// What it promises (checked by its tests, not assumed): every rank stores `chunks * ranks`
/// micro-batches at its peak, each from its forward to its `W` (ZB-H1's `P` with
/// `P = chunks * ranks`; interleaved 1F1B's rank 0 stores up to `(chunks + 1) * ranks - 1`). With
/// forward, input-gradient and weight-gradient costs `F`, `I`, `W` on every stage, `W <= min(F, I)`,
/// and free transfers, one update takes `chunks * M * (F + I + W) + (ranks - 1) (F + I - W)`:
/// ZB-H1's published bubble over `ranks` ranks, whose stage costs are a `1 / chunks` share of the
/// model's. With `F = I = W` that is the fewest possible, `ranks - 1` forwards (the last rank cannot
/// start earlier). One chunk is ZB-H1. At PyTorch 2.11's shape (4 ranks, 2 chunks, 8 micro-batches)
/// the programs are PyTorch's.
struct interleaved_zero_bubble {
    static constexpr std::string_view name = "interleaved_zero_bubble";
    static constexpr bool splits_backward = true;
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
        if (!(microbatches % ranks == 0)) detail::config_fail(name, "microbatches", microbatches,
                               detail::concat("must be a multiple of ranks (", ranks, ")"));
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

    /// Forwards rank `r` runs before its first `I`: `chunks * ranks - r`, never more than its forwards
    /// per update (`microbatches >= ranks`).
    [[nodiscard]] int warmup(int r) const { return chunks * ranks - r; }
    /// How many `I`s rank `r`'s `W`s lag behind in the steady state.
    [[nodiscard]] int defer(int r) const { return r; }

    /// 1 / micro-batches per update: the last stage scales its loss by it.
    [[nodiscard]] double loss_scale() const noexcept { return 1.0 / static_cast<double>(microbatches); }
    /// Every update drains, so `executor::run(n)` takes whole updates.
    [[nodiscard]] int run_granularity() const noexcept { return microbatches; }
    /// Rank `rank`'s endless program, one update's program at a time. Validates the policy first and
    /// refuses an update's program past `paci::limits` before anything is allocated.
    [[nodiscard]] update_program<interleaved_zero_bubble> program(int rank) const {
        validate();
        detail::check_rank(name, rank, shape().ranks);
        detail::check_schedule_size(name, actions_per_update());
        return unchecked_program(rank);
    }
    /// `program(rank)` of a validated policy and a rank in range.
    [[nodiscard]] update_program<interleaved_zero_bubble> unchecked_program(int rank) const {
        return update_program<interleaved_zero_bubble>(*this, rank);
    }

    [[nodiscard]] schedule generate() const {
        validate();
        return detail::materialize(*this, static_cast<std::int64_t>(microbatches) * steps,
                                   detail::mul_sat(actions_per_update(), static_cast<std::uint64_t>(steps)));
    }

    /// Appends update `g`'s program of rank `r`: `warmup(r)` forwards, then `I`, `W` (`defer(r)`
    /// behind), `F` repeated, then the deferred `W`s; each stage updates right after its last `W`.
    void append_update(int r, int g, std::vector<action>& prog) const {
        // A position in interleaved 1F1B's order, advanced without dividing: `ranks` consecutive
        // micro-batches per chunk, the chunks in turn, then the next block of `ranks` micro-batches.
        struct cursor {
            int in_block = 0; // micro-batch within the block
            int chunk = 0;    // chunk visit within the block (forwards: the chunk; backwards: reversed)
            int block = 0;    // first micro-batch of the block
            void advance(int block_size, int chunk_count) noexcept {
                if (++in_block < block_size) return;
                in_block = 0;
                if (++chunk < chunk_count) return;
                chunk = 0;
                block += block_size;
            }
        };
        const int per_step = microbatches * chunks; // forwards (and I, and W) per rank per update
        const int base = g * microbatches;
        cursor f, i, w;
        int forwards = 0;
        const auto fwd = [&] {
            prog.emplace_back(op::F, f.chunk * ranks + r, base + f.block + f.in_block);
            f.advance(ranks, chunks);
            ++forwards;
        };
        const auto stage_b = [&](const cursor& c) { return (chunks - 1 - c.chunk) * ranks + r; };
        int weights = 0;
        // A chunk's W's of the update end with its last block; its update follows.
        const auto wgt = [&] {
            const int s = stage_b(w);
            prog.emplace_back(op::W, s, base + w.block + w.in_block);
            if (w.block == microbatches - ranks && w.in_block == ranks - 1) prog.emplace_back(op::STEP, s, g);
            w.advance(ranks, chunks);
            ++weights;
        };
        const int warm = warmup(r);
        const int lag = defer(r);
        while (forwards < warm) fwd();
        for (int k = 0; k < per_step; ++k) {
            prog.emplace_back(op::I, stage_b(i), base + i.block + i.in_block);
            i.advance(ranks, chunks);
            if (k - lag >= weights) wgt();
            if (forwards < per_step) fwd();
        }
        while (weights < per_step) wgt();
    }

    friend constexpr bool operator==(const interleaved_zero_bubble&, const interleaved_zero_bubble&) = default;

private:
    /// Actions of one rank per update: F, I and W per chunk and micro-batch, a STEP per chunk.
    [[nodiscard]] std::uint64_t actions_per_update() const noexcept {
        const auto v = static_cast<std::uint64_t>(chunks);
        return detail::add_sat(detail::mul_sat(static_cast<std::uint64_t>(microbatches), 3U * v), v);
    }
};

inline std::ostream& operator<<(std::ostream& os, const interleaved_zero_bubble& p) {
    return os << "interleaved_zero_bubble{.ranks = " << p.ranks << ", .chunks = " << p.chunks
              << ", .microbatches = " << p.microbatches << ", .steps = " << p.steps << "}";
}

static_assert(schedule_policy<interleaved_zero_bubble>);

} // namespace paci
