#pragma once
/// \file
/// What a run recorded: per rank, every action with the weight version it read and when it ran. A
/// trace turns into a schedule (for validation and replay) and into times (for the Chrome trace).

#include <paci/core/schedule.hpp>
#include <paci/version/version_controller.hpp>

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

namespace paci {

/// One executed action: its weight version (for STEP, the version it produced) and its span in
/// seconds since the run's epoch. The two members of an overlapped pair that ran as one call
/// (`overlapping_stage`) share its start, so their spans overlap.
struct trace_event {
    action act{};
    version_t version = 0;
    double start = 0;
    double end = 0;
    friend bool operator==(const trace_event&, const trace_event&) = default;
};

/// The events of every rank of a run.
struct run_trace {
    pipeline_shape shape{};
    std::vector<std::vector<trace_event>> ranks;

    /// The executed programs as a schedule (compute and STEP actions, in the order they ran). The
    /// forward of an overlapped pair is recorded with its `overlap_next` flag and right before its
    /// backward, so the pair reads back as the program had it.
    /// Micro-batch and update numbers are absolute: the trace of a pipeline that was restored from
    /// another's state starts at the restored numbers, so validate the trace of a whole run (every
    /// `run()` of the pipelines involved) rather than the resumed part alone.
    [[nodiscard]] schedule to_schedule(std::string source = "trace") const {
        schedule s;
        s.shape = shape;
        s.policy = std::move(source);
        s.ranks.resize(ranks.size());
        int max_mb = -1;
        std::vector<int> steps(static_cast<std::size_t>(shape.stages), 0);
        for (std::size_t r = 0; r < ranks.size(); ++r)
            for (const auto& e : ranks[r]) {
                s.ranks[r].push_back(e.act);
                if (e.act.kind == op::STEP) ++steps[static_cast<std::size_t>(e.act.stage)];
                else max_mb = std::max(max_mb, e.act.microbatch);
            }
        s.microbatches = max_mb + 1;
        s.steps = steps.empty() ? 0 : *std::max_element(steps.begin(), steps.end());
        return s;
    }
    /// `[rank][position] = {start, end}` in seconds, aligned with `to_schedule()`.
    [[nodiscard]] std::vector<std::vector<std::pair<double, double>>> times() const {
        std::vector<std::vector<std::pair<double, double>>> t(ranks.size());
        for (std::size_t r = 0; r < ranks.size(); ++r)
            for (const auto& e : ranks[r]) t[r].emplace_back(e.start, e.end);
        return t;
    }
};

} // namespace paci
