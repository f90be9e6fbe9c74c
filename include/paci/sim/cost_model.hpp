#pragma once
/// \file
/// The cost model the simulator runs a schedule against: per-stage compute times, per-hop
/// communication, optional seeded jitter.

#include <paci/core/action.hpp>
#include <paci/core/error.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <vector>

namespace paci {

/// Durations of one stage's actions, in any time unit.
struct stage_costs {
    double f = 1;    ///< forward
    double b = 2;    ///< full backward (input and weight gradients)
    double i = 1;    ///< input-gradient backward
    double w = 1;    ///< weight-gradient backward
    double r = 1;    ///< recompute (a forward without keeping the result downstream)
    double step = 0; ///< optimizer update
    friend bool operator==(const stage_costs&, const stage_costs&) = default;
};

/// Per-stage costs (or one for all stages), a per-message cost `latency + bytes / bandwidth`, a
/// relative jitter: each compute's duration is scaled by `1 + u` with `u` uniform in
/// `[-jitter, jitter)`, drawn from `seed`, the rank and the position (so a run is reproducible), and
/// what an overlapped pair costs.
///
/// **Overlapped pairs** (`action::overlap_next`, PyTorch's `OVERLAP_F_B`). The two members start
/// together, when the rank is free and both their inputs are there, and both end at
///
///     start + max(dF, dB) + overlap_penalty * min(dF, dB)
///
/// with `dF` and `dB` the members' own (jittered) durations: `overlap_penalty` 0 is perfect overlap
/// (the shorter member hides entirely behind the longer), 1 is none (the pair takes the sum, as if
/// run one after the other), and values between model partial overlap (two kernels sharing the
/// device's compute). Neither member's output is available before the pair's end. The rank is busy
/// for the pair's length once, not for the sum of its members.
struct cost_model {
    stage_costs uniform{};
    std::vector<stage_costs> per_stage{}; ///< when non-empty, stage s uses per_stage[s]
    double latency = 0;
    double bandwidth = std::numeric_limits<double>::infinity(); ///< bytes per time unit
    double bytes = 1;                                            ///< bytes per message
    double jitter = 0;
    std::uint64_t seed = 0;
    /// How much of the shorter member of an overlapped pair does not hide behind the longer, in
    /// [0, 1]: 0 is perfect overlap, 1 (the default) none (see above). The default is the sum
    /// because these costs have no communication inside a stage: DualPipe overlaps a forward and a
    /// backward to hide one's expert-parallel all-to-all behind the other's compute, and two
    /// computes sharing one device take about their sum. Set it below 1 to model that hiding.
    double overlap_penalty = 1;

    /// The costs of `stage`. \throws config_error for a stage with no per-stage entry.
    [[nodiscard]] const stage_costs& of(int stage) const {
        if (per_stage.empty()) return uniform;
        if (stage < 0 || static_cast<std::size_t>(stage) >= per_stage.size())
            detail::config_fail("cost_model::of", "stage", stage,
                                detail::concat("must be in [0, ", per_stage.size(), ") (the per-stage costs given)"));
        return per_stage[static_cast<std::size_t>(stage)];
    }

    /// Nominal duration of an action (communication actions cost nothing on the rank that posts them;
    /// the transfer is `transfer()`).
    /// \throws config_error for an action on a stage with no per-stage entry.
    [[nodiscard]] double duration(const action& a) const {
        const stage_costs& c = of(a.stage);
        switch (a.kind) {
        case op::F: return c.f;
        case op::B: return c.b;
        case op::I: return c.i;
        case op::W: return c.w;
        case op::R: return c.r;
        case op::STEP: return c.step;
        default: return 0;
        }
    }

    /// The duration of an overlapped pair whose members take `forward` and `backward` alone:
    /// `max(forward, backward) + overlap_penalty * min(forward, backward)`.
    [[nodiscard]] double overlapped(double forward, double backward) const noexcept {
        const double longer = forward < backward ? backward : forward;
        const double shorter = forward < backward ? forward : backward;
        return longer + overlap_penalty * shorter;
    }

    /// Time from a SEND to its data being available at the receiver.
    [[nodiscard]] double transfer() const noexcept { return latency + (std::isinf(bandwidth) ? 0.0 : bytes / bandwidth); }

    /// Throws `config_error` naming the first bad field. (Durations whose sums overflow a double over
    /// a schedule are caught by `simulate`, which knows the schedule's length.)
    void validate(int stages) const {
        detail::config_require(stages >= 1, "cost_model", "stages", stages, "must be >= 1");
        const auto check = [](const stage_costs& c, const char* where) {
            const double v[] = {c.f, c.b, c.i, c.w, c.r, c.step};
            const char* n[] = {"f", "b", "i", "w", "r", "step"};
            for (int k = 0; k < 6; ++k)
                if (!(std::isfinite(v[k]) && v[k] >= 0)) detail::config_fail("cost_model", detail::concat(where, n[k]), v[k],
                                       "must be finite and >= 0");
        };
        check(uniform, "");
        for (std::size_t s = 0; s < per_stage.size(); ++s) check(per_stage[s], detail::concat("stage ", s, " ").c_str());
        if (!per_stage.empty())
            if (!(per_stage.size() == static_cast<std::size_t>(stages))) detail::config_fail("cost_model", "per-stage costs",
                                   per_stage.size(), detail::concat("must be given for every stage (", stages, ")"));
        detail::config_require(std::isfinite(latency) && latency >= 0, "cost_model", "latency", latency,
                               "must be finite and >= 0");
        detail::config_require(bandwidth > 0, "cost_model", "bandwidth", bandwidth, "must be > 0");
        detail::config_require(std::isfinite(bytes) && bytes >= 0, "cost_model", "bytes", bytes, "must be finite and >= 0");
        detail::config_require(std::isfinite(jitter) && jitter >= 0 && jitter < 1, "cost_model", "jitter", jitter,
                               "must be in [0, 1)");
        detail::config_require(std::isfinite(transfer()), "cost_model", "bytes / bandwidth", bytes / bandwidth,
                               "must be finite");
        detail::config_require(std::isfinite(overlap_penalty) && overlap_penalty >= 0 && overlap_penalty <= 1,
                               "cost_model", "overlap_penalty", overlap_penalty, "must be in [0, 1]");
    }

    /// The jittered duration of the action at `position` of `rank`.
    [[nodiscard]] double jittered(const action& a, int rank, std::size_t position) const {
        const double d = duration(a);
        if (jitter == 0 || d == 0) return d;
        // splitmix64 over (seed, rank, position): independent of the order the simulator visits actions.
        std::uint64_t z = seed ^ (static_cast<std::uint64_t>(rank) << 40) ^ static_cast<std::uint64_t>(position);
        z += 0x9e3779b97f4a7c15ULL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        const double u = static_cast<double>(z >> 11) * 0x1.0p-53; // [0, 1)
        return d * (1 + jitter * (2 * u - 1));
    }

    friend bool operator==(const cost_model&, const cost_model&) = default;
};

inline std::ostream& operator<<(std::ostream& os, const stage_costs& c) {
    return os << "f=" << c.f << ",b=" << c.b << ",i=" << c.i << ",w=" << c.w << ",r=" << c.r << ",step=" << c.step;
}

} // namespace paci
