#pragma once
/// \file
/// Memory report: peak stored micro-batches and full activations per stage and per rank, resident
/// weight versions, and the per-rank timelines.

#include <paci/analysis/replay.hpp>
#include <paci/core/error.hpp>

#include <algorithm>
#include <cstddef>
#include <ostream>
#include <vector>

namespace paci {

struct memory_report {
    std::vector<int> peak_stored;      ///< per stage: micro-batches with anything kept (inputs or activations)
    std::vector<int> peak_activations; ///< per stage: micro-batches holding full activations
    std::vector<int> peak_versions;    ///< per stage: resident weight versions
    std::vector<int> rank_peak_stored; ///< per rank, over time (summed over the rank's stages)
    std::vector<int> rank_peak_activations;

    [[nodiscard]] int max_activations() const noexcept {
        return peak_activations.empty() ? 0 : *std::max_element(peak_activations.begin(), peak_activations.end());
    }
    [[nodiscard]] int max_stored() const noexcept {
        return peak_stored.empty() ? 0 : *std::max_element(peak_stored.begin(), peak_stored.end());
    }
};

/// Summarizes the memory a replayed schedule needs. The counts are `replay`'s, which runs each
/// program in order: an overlapped pair's forward stores its micro-batch before the backward
/// releases its own, so a rank's peak includes both, as PyTorch holds them while it runs the pair.
/// \throws config_error if the replay's per-stage table does not match its stage count, or its two
/// timelines cover different numbers of ranks.
[[nodiscard]] inline memory_report memory_of(const replay_result& r) {
    detail::config_require(r.stages >= 0, "memory_of", "replay stages", r.stages, "must be >= 0");
    if (r.per_stage.size() != static_cast<std::size_t>(r.stages))
        detail::config_fail("memory_of", "replay per_stage size", r.per_stage.size(),
                            detail::concat("must equal stages (", r.stages, ")"));
    if (r.stored_timeline.size() != r.activation_timeline.size())
        detail::config_fail("memory_of", "replay activation_timeline ranks", r.activation_timeline.size(),
                            detail::concat("must equal stored_timeline's (", r.stored_timeline.size(), ")"));
    memory_report out;
    for (const auto& s : r.per_stage) {
        out.peak_stored.push_back(s.peak_stored);
        out.peak_activations.push_back(s.peak_activations);
        out.peak_versions.push_back(s.peak_versions);
    }
    const auto peak = [](const std::vector<std::int32_t>& line) {
        return line.empty() ? 0 : static_cast<int>(*std::max_element(line.begin(), line.end()));
    };
    for (const auto& line : r.stored_timeline) out.rank_peak_stored.push_back(peak(line));
    for (const auto& line : r.activation_timeline) out.rank_peak_activations.push_back(peak(line));
    return out;
}

inline std::ostream& operator<<(std::ostream& os, const memory_report& m) {
    const auto row = [&](const char* name, const std::vector<int>& v) {
        os << name;
        for (const int x : v) os << ' ' << x;
        os << '\n';
    };
    row("peak stored micro-batches per stage:", m.peak_stored);
    row("peak full activations per stage:    ", m.peak_activations);
    row("resident weight versions per stage: ", m.peak_versions);
    return os;
}

} // namespace paci
