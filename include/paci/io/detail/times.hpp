#pragma once
/// \file
/// Internals shared by the timeline exporters (Chrome trace, SVG): per-action times, their checks and
/// the program-order fallback.

#include <paci/analysis/replay.hpp>
#include <paci/core/error.hpp>
#include <paci/core/schedule.hpp>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <ios>
#include <string_view>
#include <utility>
#include <vector>

namespace paci {

/// When each action ran: `times[rank][position] = {start, end}`, in any one time unit.
using action_times = std::vector<std::vector<std::pair<double, double>>>;

namespace detail {

/// An element with `.start`/`.end` (the simulator's `action_time`) or `.first`/`.second` (a pair).
template <class T>
concept start_end_pair = requires(const T& t) {
    { t.start } -> std::convertible_to<double>;
    { t.end } -> std::convertible_to<double>;
} || requires(const T& t) {
    { t.first } -> std::convertible_to<double>;
    { t.second } -> std::convertible_to<double>;
};

/// `[rank][position]` of start/end pairs: `action_times`, or the simulator's `simulation::times`.
template <class Times>
concept timeline_like = requires(const Times& t, std::size_t i) {
    { t.size() } -> std::convertible_to<std::size_t>;
    { t[i].size() } -> std::convertible_to<std::size_t>;
    requires start_end_pair<std::remove_cvref_t<decltype(t[i][i])>>;
};

template <start_end_pair T>
[[nodiscard]] std::pair<double, double> start_end(const T& t) {
    if constexpr (requires { t.start; }) return {static_cast<double>(t.start), static_cast<double>(t.end)};
    else return {static_cast<double>(t.first), static_cast<double>(t.second)};
}

/// Copies any `timeline_like` into `action_times`.
template <timeline_like Times>
[[nodiscard]] action_times to_action_times(const Times& in) {
    action_times out(in.size());
    for (std::size_t r = 0; r < in.size(); ++r) {
        out[r].reserve(in[r].size());
        for (std::size_t p = 0; p < in[r].size(); ++p) out[r].push_back(start_end(in[r][p]));
    }
    return out;
}

/// Unit time per compute action (F, B, I, W, R) in each rank's program order; STEP and
/// communication take no time. The view PyTorch's grid gives, as times.
[[nodiscard]] inline action_times program_order_times(const schedule& sch) {
    action_times out(sch.ranks.size());
    for (std::size_t r = 0; r < sch.ranks.size(); ++r) {
        double t = 0;
        out[r].reserve(sch.ranks[r].size());
        for (const action& a : sch.ranks[r]) {
            const double d = is_compute(a.kind) ? 1.0 : 0.0;
            out[r].emplace_back(t, t + d);
            t += d;
        }
    }
    return out;
}

/// Throws `config_error` (naming `api`) unless `times` has one finite, ordered (start <= end) pair per action.
inline void check_times(std::string_view api, const schedule& sch, const action_times& times) {
    // Messages are built only on failure: this runs once per action.
    if (times.size() != sch.ranks.size())
        config_fail(api, "times ranks", times.size(), concat("must equal the schedule's ranks (", sch.ranks.size(), ")"));
    for (std::size_t r = 0; r < times.size(); ++r) {
        if (times[r].size() != sch.ranks[r].size())
            config_fail(api, concat("times[", r, "] size"), times[r].size(),
                        concat("must equal rank ", r, "'s actions (", sch.ranks[r].size(), ")"));
        for (std::size_t p = 0; p < times[r].size(); ++p) {
            const auto [s, e] = times[r][p];
            if (!(std::isfinite(s) && std::isfinite(e) && s <= e))
                config_fail(api, concat("times[", r, "][", p, "]"), concat(s, ", ", e), "must be finite with start <= end");
        }
    }
}

/// Throws `config_error` (naming `api`) when `times` records the fingerprint of the schedule it was
/// computed for (the simulator's `timeline`) and that is not `sch`: the same sizes with other
/// positions (another lowering of one compute order) would otherwise be drawn without a word.
template <class Times>
void check_times_source(std::string_view api, const schedule& sch, const Times& times) {
    if constexpr (requires { times.schedule_fingerprint; }) {
        const std::uint64_t recorded = times.schedule_fingerprint;
        if (recorded == 0) return; // not recorded
        const std::uint64_t here = fingerprint(sch);
        if (recorded != here)
            config_fail(api, "times", concat("computed for schedule ", std::hex, recorded),
                        concat("must be computed for the schedule drawn (", std::hex, here,
                               "): simulate this schedule, not another lowering or version of it"));
    }
}

/// Throws `config_error` (naming `api`) unless `versions` (when given) is a consistent replay of a
/// schedule with `sch`'s stages and micro-batches.
inline void check_versions(std::string_view api, const schedule& sch, const replay_result* versions) {
    if (versions == nullptr) return;
    if (versions->stages != sch.shape.stages || versions->microbatches != sch.microbatches)
        config_fail(api, "versions", concat(versions->stages, " stages x ", versions->microbatches, " micro-batches"),
                    concat("must replay the schedule drawn (", sch.shape.stages, " stages x ", sch.microbatches,
                           " micro-batches)"));
    const std::size_t cells = static_cast<std::size_t>(sch.shape.stages) * static_cast<std::size_t>(sch.microbatches);
    if (versions->records.size() != cells || versions->per_stage.size() != static_cast<std::size_t>(sch.shape.stages))
        config_fail(api, "versions records", versions->records.size(),
                    concat("must hold one record per stage and micro-batch (", cells, ") and one line per stage"));
}

/// The given times checked, or the program-order fallback when `times` is empty.
[[nodiscard]] inline action_times resolve_times(std::string_view api, const schedule& sch, const action_times& times) {
    if (times.empty()) return program_order_times(sch);
    check_times(api, sch, times);
    return times;
}

} // namespace detail
} // namespace paci
