#pragma once
/// \file
/// Drift and staleness reports: per stage, the observed maximum beside the bound the policy promises.

#include <paci/analysis/replay.hpp>
#include <paci/policy/schedule_policy.hpp>

#include <cstddef>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace paci {

namespace detail {

/// Throws `config_error` naming `api` and the policy when `policy.validate()` refuses it, so that no
/// bound is computed from an invalid policy (a zero divisor, a cap vector of the wrong size).
template <schedule_policy Policy>
void require_valid_policy(std::string_view api, const Policy& policy) {
    std::string why;
    try {
        policy.validate();
        return;
    } catch (const config_error& e) {
        why = e.what();
    }
    config_fail(api, "policy", print(policy), concat("must be valid: ", why));
}

/// Throws `config_error` naming `api` unless the replay's tables agree with its counts (a
/// `replay_result` built or edited by hand).
inline void check_replay(std::string_view api, const replay_result& r) {
    config_require(r.stages >= 0, api, "replay stages", r.stages, "must be >= 0");
    config_require(r.microbatches >= 0, api, "replay microbatches", r.microbatches, "must be >= 0");
    const std::size_t cells = static_cast<std::size_t>(r.stages) * static_cast<std::size_t>(r.microbatches);
    if (r.records.size() != cells)
        config_fail(api, "replay records", r.records.size(),
                    concat("must equal stages x microbatches (", r.stages, " x ", r.microbatches, ")"));
    if (r.per_stage.size() != static_cast<std::size_t>(r.stages))
        config_fail(api, "replay per_stage size", r.per_stage.size(), concat("must equal stages (", r.stages, ")"));
}

} // namespace detail

/// Bounds a policy promises, per stage.
struct version_bounds {
    std::vector<int> drift;
    std::vector<int> staleness;
    std::vector<int> versions;

    /// The bounds of `policy` for each of its stages.
    /// \throws config_error if the policy is invalid.
    template <schedule_policy Policy>
    [[nodiscard]] static version_bounds of(const Policy& policy) {
        detail::require_valid_policy("version_bounds::of", policy);
        version_bounds b;
        const int P = policy.shape().stages;
        for (int s = 0; s < P; ++s) {
            b.drift.push_back(policy.drift_bound(s));
            b.staleness.push_back(policy.staleness_bound(s));
            b.versions.push_back(policy.versions_bound(s));
        }
        return b;
    }
};

/// Which promised quantity a violation breaks.
enum class bounded_quantity : std::uint8_t { drift, staleness, versions };

[[nodiscard]] constexpr std::string_view to_string(bounded_quantity q) noexcept {
    return q == bounded_quantity::drift ? "drift" : q == bounded_quantity::staleness ? "staleness" : "versions";
}

/// The first (stage-major, then micro-batch) place where an observed value exceeds its bound.
struct bound_violation {
    bounded_quantity quantity = bounded_quantity::drift;
    int stage = -1;
    int microbatch = -1; ///< -1 for resident versions (a stage-wide peak)
    version_record versions{};
    int observed = 0;
    int bound = 0;
    friend bool operator==(const bound_violation&, const bound_violation&) = default;
};

inline std::ostream& operator<<(std::ostream& os, const bound_violation& v) {
    os << to_string(v.quantity) << " " << v.observed << " exceeds its bound " << v.bound << " at stage " << v.stage;
    if (v.microbatch >= 0)
        os << ", micro-batch " << v.microbatch << " (forward read version " << v.versions.forward
           << ", backward read " << v.versions.backward << ", applied to " << v.versions.applied << ")";
    return os;
}

/// One stage's line of the report.
struct stage_drift {
    int stage = 0;
    int max_drift = 0;
    int drift_bound = 0;
    int max_staleness = 0;
    int staleness_bound = 0;
    int peak_versions = 0;
    int versions_bound = 0;
    /// The drift bound is reached by some micro-batch (the bound is tight here).
    [[nodiscard]] bool drift_attained() const noexcept { return max_drift == drift_bound; }
    [[nodiscard]] bool staleness_attained() const noexcept { return max_staleness == staleness_bound; }
    [[nodiscard]] bool within() const noexcept {
        return max_drift <= drift_bound && max_staleness <= staleness_bound && peak_versions <= versions_bound;
    }
    friend bool operator==(const stage_drift&, const stage_drift&) = default;
};

/// Observed versus promised drift, staleness and resident versions, with the first violation in full.
struct drift_report {
    std::vector<stage_drift> stages;
    std::optional<bound_violation> first_violation;
    int max_vertical_spread = 0;

    [[nodiscard]] bool within_bounds() const noexcept { return !first_violation.has_value(); }
    /// Every stage reaches its drift bound.
    [[nodiscard]] bool drift_attained() const noexcept {
        for (const auto& s : stages)
            if (!s.drift_attained()) return false;
        return true;
    }
    [[nodiscard]] int max_drift() const noexcept {
        int m = 0;
        for (const auto& s : stages) m = s.max_drift > m ? s.max_drift : m;
        return m;
    }
};

/// Compares a replay with bounds. An empty bound vector means unbounded (an imported schedule has
/// no promise); a non-empty one must hold one bound per stage of the replay.
/// \throws config_error if the replay's tables are inconsistent or a bound vector has another length.
[[nodiscard]] inline drift_report check_drift(const replay_result& r, const version_bounds& bounds) {
    detail::check_replay("check_drift", r);
    const auto check_len = [&](const std::vector<int>& v, std::string_view what) {
        if (!v.empty() && v.size() != static_cast<std::size_t>(r.stages))
            detail::config_fail("check_drift", what, v.size(),
                                detail::concat("must equal the replay's stages (", r.stages, ") or be empty (unbounded)"));
    };
    check_len(bounds.drift, "drift bounds");
    check_len(bounds.staleness, "staleness bounds");
    check_len(bounds.versions, "versions bounds");
    drift_report out;
    out.max_vertical_spread = r.max_vertical_spread;
    constexpr int unbounded = 1 << 30;
    const auto bound_at = [](const std::vector<int>& v, int s) {
        return static_cast<std::size_t>(s) < v.size() ? v[static_cast<std::size_t>(s)] : unbounded;
    };
    for (int s = 0; s < r.stages; ++s) {
        const auto& st = r.per_stage[static_cast<std::size_t>(s)];
        stage_drift line{s,
                         st.max_drift,
                         bound_at(bounds.drift, s),
                         st.max_staleness,
                         bound_at(bounds.staleness, s),
                         st.peak_versions,
                         bound_at(bounds.versions, s)};
        out.stages.push_back(line);
        if (out.first_violation) continue;
        for (int m = 0; m < r.microbatches && !out.first_violation; ++m) {
            const auto& rec = r.at(s, m);
            if (rec.drift() > line.drift_bound)
                out.first_violation = bound_violation{bounded_quantity::drift, s, m, rec, rec.drift(), line.drift_bound};
            else if (rec.staleness() > line.staleness_bound)
                out.first_violation =
                    bound_violation{bounded_quantity::staleness, s, m, rec, rec.staleness(), line.staleness_bound};
        }
        if (!out.first_violation && line.peak_versions > line.versions_bound)
            out.first_violation =
                bound_violation{bounded_quantity::versions, s, -1, {}, line.peak_versions, line.versions_bound};
    }
    return out;
}

/// Compares a replay with the bounds `policy` promises.
/// \throws config_error if the policy is invalid, or the replay is not of a schedule of the policy's
/// shape (another number of stages, or of ranks).
template <schedule_policy Policy>
[[nodiscard]] drift_report check_drift(const replay_result& r, const Policy& policy) {
    detail::require_valid_policy("check_drift", policy);
    detail::check_replay("check_drift", r);
    const pipeline_shape shape = policy.shape();
    if (r.stages != shape.stages)
        detail::config_fail("check_drift", "replay stages", r.stages,
                            detail::concat("must equal the policy's stages (", shape.stages, ") of ",
                                           detail::print(policy)));
    if (!r.stored_timeline.empty() && r.stored_timeline.size() != static_cast<std::size_t>(shape.ranks))
        detail::config_fail("check_drift", "replay ranks", r.stored_timeline.size(),
                            detail::concat("must equal the policy's ranks (", shape.ranks, ") of ",
                                           detail::print(policy)));
    return check_drift(r, version_bounds::of(policy));
}

/// A table: stage, drift (observed / bound, `*` when attained), staleness, resident versions.
inline std::ostream& operator<<(std::ostream& os, const drift_report& d) {
    os << "stage  drift/bound  staleness/bound  versions/bound\n";
    for (const auto& s : d.stages) {
        os << "  " << s.stage << (s.stage < 10 ? "    " : "   ") << s.max_drift << " / " << s.drift_bound
           << (s.drift_attained() ? "*" : " ") << "        " << s.max_staleness << " / " << s.staleness_bound
           << "            " << s.peak_versions << " / " << s.versions_bound << '\n';
    }
    if (d.first_violation) os << "first violation: " << *d.first_violation << '\n';
    else os << "within bounds (* = bound attained)\n";
    return os;
}

} // namespace paci
