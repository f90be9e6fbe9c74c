#pragma once
/// \file
/// GPipe: all forwards of a batch, then all backwards, then a synchronous update.

#include <paci/policy/schedule_policy.hpp>
#include <paci/version/flush.hpp>

#include <cstdint>
#include <ostream>
#include <vector>

namespace paci {

/// GPipe (Huang et al.): per optimizer step, every stage runs the forwards of all `microbatches`,
/// then their backwards in the same order, then updates. Stores `microbatches` activations per stage.
/// With `recompute`, only stage inputs are kept and an `R` precedes each backward (GPipe's
/// re-materialisation).
template <backward_flavour Flavour = backward_flavour::perf>
struct gpipe {
    static constexpr std::string_view name = "gpipe";
    static constexpr backward_flavour flavour = Flavour;
    static constexpr bool splits_backward = false;
    static constexpr bool recomputes = Flavour == backward_flavour::recompute;
    int stages = 1;
    int microbatches = 1; ///< micro-batches per optimizer update
    int steps = 1;        ///< optimizer updates described

    void validate() const {
        detail::check_stages(name, stages);
        detail::check_counts(name, microbatches, steps);
    }
    [[nodiscard]] pipeline_shape shape() const { return {stages, stages, stage_map::loop}; }
    [[nodiscard]] flush controller() const { return flush{microbatches}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }

    /// 1 / micro-batches per update: the last stage scales its loss by it.
    [[nodiscard]] double loss_scale() const noexcept { return 1.0 / static_cast<double>(microbatches); }
    /// Every update drains, so `executor::run(n)` takes whole updates.
    [[nodiscard]] int run_granularity() const noexcept { return microbatches; }
    /// Rank `rank`'s endless program, one update's program at a time. Validates the policy first.
    [[nodiscard]] update_program<gpipe> program(int rank) const {
        validate();
        detail::check_rank(name, rank, shape().ranks);
        // One update of the rank, what the stream buffers: F (and R) and B per micro-batch, a STEP.
        detail::check_schedule_size(name, detail::add_sat(detail::mul_sat(static_cast<std::uint64_t>(microbatches), recomputes ? 3U : 2U), 1U));
        return unchecked_program(rank);
    }
    /// `program(rank)` of a validated policy and a rank in range.
    [[nodiscard]] update_program<gpipe> unchecked_program(int rank) const { return update_program<gpipe>(*this, rank); }

    [[nodiscard]] schedule generate() const {
        validate();
        return detail::materialize(*this, static_cast<std::int64_t>(microbatches) * steps, detail::add_sat(detail::mul_sat(static_cast<std::uint64_t>(microbatches) * static_cast<std::uint64_t>(steps), recomputes ? 3U : 2U), static_cast<std::uint64_t>(steps)));
    }

    /// Appends update `g`'s program of rank `rank` (stage `rank`): the forwards of the group, their
    /// backwards in the same order, the update.
    void append_update(int rank, int g, std::vector<action>& prog) const {
        const int s = rank;
        const int base = g * microbatches;
        for (int m = 0; m < microbatches; ++m) prog.emplace_back(op::F, s, base + m);
        for (int m = 0; m < microbatches; ++m) {
            if (recomputes) prog.emplace_back(op::R, s, base + m);
            prog.emplace_back(op::B, s, base + m);
        }
        prog.emplace_back(op::STEP, s, g);
    }

    friend constexpr bool operator==(const gpipe&, const gpipe&) = default;
};

template <backward_flavour F>
std::ostream& operator<<(std::ostream& os, const gpipe<F>& p) {
    return os << "gpipe<" << F << ">{.stages = " << p.stages << ", .microbatches = " << p.microbatches
              << ", .steps = " << p.steps << "}";
}

static_assert(schedule_policy<gpipe<>>);
static_assert(schedule_policy<gpipe<backward_flavour::recompute>>);

} // namespace paci
