#pragma once
/// \file
/// GPipe: all forwards of a batch, then all backwards, then a synchronous update.

#include <paci/policy/schedule_policy.hpp>
#include <paci/version/flush.hpp>

#include <ostream>

namespace paci {

/// GPipe (Huang et al.): per optimizer step, every stage runs the forwards of all `microbatches`,
/// then their backwards in the same order, then updates. Stores `microbatches` activations per stage.
/// With `recompute`, only stage inputs are kept and an `R` precedes each backward (GPipe's
/// re-materialisation).
template <backward_flavour Flavour = backward_flavour::perf>
struct gpipe {
    static constexpr std::string_view name = "gpipe";
    static constexpr backward_flavour flavour = Flavour;
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

    [[nodiscard]] schedule generate() const {
        validate();
        schedule out = detail::make_schedule(shape(), microbatches * steps, steps, detail::print(*this));
        for (int s = 0; s < stages; ++s) {
            auto& prog = out.ranks[static_cast<std::size_t>(s)];
            prog.reserve(static_cast<std::size_t>(microbatches * steps) * (Flavour == backward_flavour::recompute ? 3U : 2U) +
                         static_cast<std::size_t>(steps));
            for (int g = 0; g < steps; ++g) {
                const int base = g * microbatches;
                for (int m = 0; m < microbatches; ++m) prog.emplace_back(op::F, s, base + m);
                for (int m = 0; m < microbatches; ++m) {
                    if (Flavour == backward_flavour::recompute) prog.emplace_back(op::R, s, base + m);
                    prog.emplace_back(op::B, s, base + m);
                }
                prog.emplace_back(op::STEP, s, g);
            }
        }
        return out;
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
