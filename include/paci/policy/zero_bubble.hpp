#pragma once
/// \file
/// Zero-bubble handcrafted schedules ZB-H1 and ZB-H2 (Qi et al., "Zero Bubble Pipeline Parallelism").

#include <paci/policy/schedule_policy.hpp>
#include <paci/version/flush.hpp>

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <vector>

namespace paci {

/// Which handcrafted zero-bubble schedule.
enum class zb_variant : std::uint8_t {
    h1, ///< ZB-H1: 1F1B's peak memory (P activations), bubble (P-1)(F+I-W)
    h2, ///< ZB-H2: 2P-1 activations at stage 0, bubble only the forward fill (P-1)F
};

[[nodiscard]] constexpr std::string_view to_string(zb_variant v) noexcept { return v == zb_variant::h1 ? "h1" : "h2"; }

/// A zero-bubble schedule: the backward is split into `I` (input gradient, on the critical path) and
/// `W` (weight gradient, deferred into what would be bubbles). Stage `s` runs `warmup(s)` forwards,
/// then repeats `I`, `W` (lagging `defer(s)` micro-batches behind the `I`s), `F`, and ends with the
/// deferred `W`s. ZB-H1 uses `P - s` forwards and lags `s` (every stage holds at most `P`
/// activations, 1F1B's peak); ZB-H2 uses `2(P - s) - 1` forwards and lags `2s` (stage 0 holds
/// `2P - 1`). A flush and an update per stage after every `microbatches` micro-batches.
template <zb_variant Variant>
struct zero_bubble {
    static constexpr std::string_view name = Variant == zb_variant::h1 ? "zb_h1" : "zb_h2";
    static constexpr zb_variant variant = Variant;
    static constexpr bool splits_backward = true;
    static constexpr bool recomputes = false;
    int stages = 1;
    int microbatches = 1;
    int steps = 1;

    void validate() const {
        detail::check_stages(name, stages);
        detail::check_counts(name, microbatches, steps);
    }
    [[nodiscard]] pipeline_shape shape() const { return {stages, stages, stage_map::loop}; }
    [[nodiscard]] flush controller() const { return flush{microbatches}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }

    /// Forwards stage `s` runs before its first `I`.
    [[nodiscard]] int warmup(int s) const {
        return std::min(microbatches, Variant == zb_variant::h1 ? stages - s : 2 * (stages - s) - 1);
    }
    /// How many micro-batches stage `s`'s `W`s lag behind its `I`s in the steady state.
    [[nodiscard]] int defer(int s) const { return Variant == zb_variant::h1 ? s : 2 * s; }

    /// 1 / micro-batches per update: the last stage scales its loss by it.
    [[nodiscard]] double loss_scale() const noexcept { return 1.0 / static_cast<double>(microbatches); }
    /// Every update drains, so `executor::run(n)` takes whole updates.
    [[nodiscard]] int run_granularity() const noexcept { return microbatches; }
    /// Rank `rank`'s endless program, one update's program at a time. Validates the policy first.
    [[nodiscard]] update_program<zero_bubble> program(int rank) const {
        validate();
        detail::check_rank(name, rank, shape().ranks);
        // One update of the rank, what the stream buffers: F, I and W per micro-batch, a STEP.
        detail::check_schedule_size(name, detail::add_sat(detail::mul_sat(static_cast<std::uint64_t>(microbatches), 3U), 1U));
        return unchecked_program(rank);
    }
    /// `program(rank)` of a validated policy and a rank in range.
    [[nodiscard]] update_program<zero_bubble> unchecked_program(int rank) const { return update_program<zero_bubble>(*this, rank); }

    [[nodiscard]] schedule generate() const {
        validate();
        return detail::materialize(*this, static_cast<std::int64_t>(microbatches) * steps, detail::add_sat(detail::mul_sat(static_cast<std::uint64_t>(microbatches) * static_cast<std::uint64_t>(steps), 3U), static_cast<std::uint64_t>(steps)));
    }

    /// Appends update `g`'s program of rank `rank` (stage `rank`).
    void append_update(int rank, int g, std::vector<action>& prog) const {
        const int s = rank;
        const int base = g * microbatches;
        int f = 0;
        int w = 0;
        while (f < warmup(s)) prog.emplace_back(op::F, s, base + f++);
        for (int i = 0; i < microbatches; ++i) {
            prog.emplace_back(op::I, s, base + i);
            if (i - defer(s) >= w) prog.emplace_back(op::W, s, base + w++);
            if (f < microbatches) prog.emplace_back(op::F, s, base + f++);
        }
        while (w < microbatches) prog.emplace_back(op::W, s, base + w++);
        prog.emplace_back(op::STEP, s, g);
    }

    friend constexpr bool operator==(const zero_bubble&, const zero_bubble&) = default;
};

template <zb_variant V>
std::ostream& operator<<(std::ostream& os, const zero_bubble<V>& p) {
    return os << zero_bubble<V>::name << "{.stages = " << p.stages << ", .microbatches = " << p.microbatches
              << ", .steps = " << p.steps << "}";
}

using zb_h1 = zero_bubble<zb_variant::h1>;
using zb_h2 = zero_bubble<zb_variant::h2>;

static_assert(schedule_policy<zb_h1>);
static_assert(schedule_policy<zb_h2>);

} // namespace paci
