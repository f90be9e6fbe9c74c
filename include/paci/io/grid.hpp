#pragma once
/// \file
/// Text grid of a schedule for the terminal: time steps down, ranks across, the view PyTorch's
/// `_format_pipeline_order` prints.

#include <paci/core/action.hpp>
#include <paci/core/schedule.hpp>

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace paci {

/// What `to_grid` shows.
struct grid_options {
    /// Show SEND/RECV actions too (the lowered program as it runs); by default a step is one
    /// compute or STEP action, as in PyTorch's compute-only view.
    bool communication = false;
    friend bool operator==(const grid_options&, const grid_options&) = default;
};

namespace detail {

/// Formats per-rank cells (an empty cell is an idle slot) exactly as PyTorch's
/// `_format_pipeline_order` does: a header of `Rank r` labels, then one `Step k: ` row per time step,
/// every column left-aligned and padded to the wider of the step label and its longest cell, cells
/// joined by one space, each line ending in `\n`.
[[nodiscard]] inline std::string format_grid(const std::vector<std::vector<std::string>>& cells) {
    std::size_t steps = 0;
    for (const auto& rank : cells) steps = std::max(steps, rank.size());
    const std::size_t digits = std::to_string(steps == 0 ? 0 : steps - 1).size();
    const std::size_t label = 5 + digits; // "Step " + zero-padded index
    std::vector<std::size_t> width(cells.size(), label);
    for (std::size_t r = 0; r < cells.size(); ++r)
        for (const auto& c : cells[r]) width[r] = std::max(width[r], c.size());

    std::string out;
    const auto pad_to = [&](std::string_view text, std::size_t w) {
        out += text;
        if (text.size() < w) out.append(w - text.size(), ' ');
    };
    out.append(label + 2, ' ');
    for (std::size_t r = 0; r < cells.size(); ++r) {
        if (r) out += ' ';
        pad_to("Rank " + std::to_string(r), width[r]);
    }
    out += '\n';
    for (std::size_t k = 0; k < steps; ++k) {
        const std::string index = std::to_string(k);
        out += "Step ";
        out.append(digits - index.size(), '0');
        out += index;
        out += ": ";
        for (std::size_t r = 0; r < cells.size(); ++r) {
            if (r) out += ' ';
            pad_to(k < cells[r].size() ? std::string_view(cells[r][k]) : std::string_view(), width[r]);
        }
        out += '\n';
    }
    return out;
}

} // namespace detail

/// The schedule as a text grid: row `Step k` holds each rank's k-th action (compute and STEP, or
/// every action with `options.communication`), column `Rank r` one rank; a rank that has run out of
/// actions shows an empty cell. An overlapped pair (a forward with `overlap_next` and the action
/// after it) takes one step, shown as PyTorch prints it: `(0F7;7B3)OVERLAP_F_B`. The text matches PyTorch's `_format_pipeline_order` for the same
/// per-rank lists, padding (and so trailing spaces) included:
///
///             Rank 0 Rank 1
///     Step 0: 0F0    1F0
///     Step 1: 0B0    1B0
[[nodiscard]] inline std::string to_grid(const schedule& sch, const grid_options& options = {}) {
    std::vector<std::vector<std::string>> cells(sch.ranks.size());
    for (std::size_t r = 0; r < sch.ranks.size(); ++r) {
        const auto& prog = sch.ranks[r];
        for (std::size_t p = 0; p < prog.size(); ++p) {
            const action& a = prog[p];
            if (a.overlap_next && p + 1 < prog.size()) { // one step, as PyTorch prints the pair
                cells[r].push_back(to_string(a, prog[p + 1]));
                ++p;
            } else if (options.communication || !is_comm(a.kind)) {
                cells[r].push_back(to_string(a));
            }
        }
    }
    return detail::format_grid(cells);
}

} // namespace paci
