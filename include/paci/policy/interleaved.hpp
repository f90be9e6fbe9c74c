#pragma once
/// \file
/// Interleaved 1F1B (Narayanan et al., 2021; Megatron-LM): several model chunks per rank.

#include <paci/policy/schedule_policy.hpp>
#include <paci/version/flush.hpp>

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <vector>

namespace paci {

/// Interleaved 1F1B: `ranks` ranks each run `chunks` stages placed by the loop map (stage
/// `c * ranks + r` on rank `r`), so the pipeline has `ranks * chunks` stages. Rank `r` runs
/// `2 (ranks - r - 1) + (chunks - 1) ranks` warm-up forwards, then alternates one forward and one
/// backward, then drains; a flush, and each stage updates right after its last backward of the step.
/// Requires `microbatches` to be a multiple of `ranks` (micro-batches advance through chunks in
/// blocks of `ranks`).
struct interleaved_one_f_one_b {
    static constexpr std::string_view name = "interleaved_one_f_one_b";
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
        if (!(microbatches % ranks == 0)) detail::config_fail(name, "microbatches", microbatches,
                               detail::concat("must be a multiple of ranks (", ranks, ")"));
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

    /// Warm-up forwards of rank `r` (capped by the forwards in a step).
    [[nodiscard]] int warmup(int r) const {
        return std::min(2 * (ranks - r - 1) + (chunks - 1) * ranks, microbatches * chunks);
    }

    /// 1 / micro-batches per update: the last stage scales its loss by it.
    [[nodiscard]] double loss_scale() const noexcept { return 1.0 / static_cast<double>(microbatches); }
    /// Every update drains, so `executor::run(n)` takes whole updates.
    [[nodiscard]] int run_granularity() const noexcept { return microbatches; }
    /// Rank `rank`'s endless program, one update's program at a time. Validates the policy first.
    [[nodiscard]] update_program<interleaved_one_f_one_b> program(int rank) const {
        validate();
        detail::check_rank(name, rank, shape().ranks);
        // One update of the rank, what the stream buffers: F and B per chunk and micro-batch, a STEP per chunk.
        detail::check_schedule_size(name, detail::add_sat(detail::mul_sat(detail::mul_sat(static_cast<std::uint64_t>(microbatches), static_cast<std::uint64_t>(chunks)), 2U), static_cast<std::uint64_t>(chunks)));
        return unchecked_program(rank);
    }
    /// `program(rank)` of a validated policy and a rank in range.
    [[nodiscard]] update_program<interleaved_one_f_one_b> unchecked_program(int rank) const { return update_program<interleaved_one_f_one_b>(*this, rank); }

    [[nodiscard]] schedule generate() const {
        validate();
        return detail::materialize(*this, static_cast<std::int64_t>(microbatches) * steps, detail::add_sat(detail::mul_sat(detail::mul_sat(static_cast<std::uint64_t>(microbatches) * static_cast<std::uint64_t>(steps), static_cast<std::uint64_t>(chunks)), 2U), static_cast<std::uint64_t>(steps) * static_cast<std::uint64_t>(chunks)));
    }

    /// Appends update `g`'s program of rank `r`: warm-up forwards, one forward and one backward
    /// alternating, the drain; each stage updates right after its last backward of the update.
    void append_update(int r, int g, std::vector<action>& prog) const {
        const int per_step = microbatches * chunks; // forwards (and backwards) per rank per step
        const int block = ranks * chunks;
        const int base = g * microbatches;
        const auto mb = [&](int k) { return base + (k / block) * ranks + k % ranks; };
        const auto fwd = [&](int k) { prog.emplace_back(op::F, ((k / ranks) % chunks) * ranks + r, mb(k)); };
        std::vector<int> done(static_cast<std::size_t>(chunks), 0);
        const auto bwd = [&](int k) {
            const int chunk = chunks - 1 - (k / ranks) % chunks;
            prog.emplace_back(op::B, chunk * ranks + r, mb(k));
            if (++done[static_cast<std::size_t>(chunk)] == microbatches) prog.emplace_back(op::STEP, chunk * ranks + r, g);
        };
        const int w = warmup(r);
        for (int k = 0; k < w; ++k) fwd(k);
        for (int k = 0; k < per_step - w; ++k) {
            fwd(w + k);
            bwd(k);
        }
        for (int k = per_step - w; k < per_step; ++k) bwd(k);
    }

    friend constexpr bool operator==(const interleaved_one_f_one_b&, const interleaved_one_f_one_b&) = default;
};

inline std::ostream& operator<<(std::ostream& os, const interleaved_one_f_one_b& p) {
    return os << "interleaved_one_f_one_b{.ranks = " << p.ranks << ", .chunks = " << p.chunks
              << ", .microbatches = " << p.microbatches << ", .steps = " << p.steps << "}";
}

static_assert(schedule_policy<interleaved_one_f_one_b>);

} // namespace paci
