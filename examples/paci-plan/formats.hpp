// paci-plan's exports (grid, PyTorch CSV, Chrome trace, SVG) and the import of a PyTorch CSV.
#pragma once

#include "options.hpp"
#include "run.hpp"

#include <paci/io/chrome_trace.hpp>
#include <paci/io/csv.hpp>
#include <paci/io/grid.hpp>
#include <paci/io/svg.hpp>

#include <string>

namespace paci_plan {

/// Analyses the schedule in `--import FILE` (weights read as PACI and 1F1B do: the current version
/// at each action; no bounds are promised for an imported schedule).
inline result run_import(const options& o) {
    paci::imported_schedule in;
    try {
        in = paci::read_csv_file(o.import_file, {.dialect = o.dialect});
    } catch (const paci::config_error& e) { // unreadable path: a bad value of --import
        throw usage_error(std::string("--import: ") + e.what());
    }
    return analyse(std::move(in.sched), o, std::nullopt, paci::accumulation{});
}

/// The schedule in the export formats: the grid and the CSV show the compute schedule (what PyTorch
/// loads and lowers itself); the Chrome trace and the SVG show the simulated lowered schedule.
inline std::string render(const result& r, const options& o) {
    switch (o.output_format) {
    case format::grid: return paci::to_grid(r.compute);
    case format::csv: return paci::export_csv(r.compute);
    case format::chrome: return paci::to_chrome_trace(r.lowered, r.sim.times, &r.versions);
    case format::svg: return paci::to_svg(r.lowered, r.sim.times, &r.versions);
    default: return {};
    }
}

} // namespace paci_plan
