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

/// Analyses the schedule in the file `path` given to `--import` (weights read as PACI and 1F1B do: the
/// current version at each action; no bounds are promised for an imported schedule). A lowered file
/// (PyTorch's compute_comms) is analysed through its own SEND/RECV, never re-lowered.
inline result run_import(const std::string& path, const options& o) {
    paci::imported_schedule in;
    try {
        in = paci::read_csv_file(path, {.dialect = o.dialect});
    } catch (const paci::config_error& e) { // unreadable path: a bad value of --import
        throw usage_error(std::string("--import: ") + e.what());
    }
    result r = analyse(std::move(in.sched), o, std::nullopt, paci::accumulation{});
    r.layout = std::move(in.layout);
    return r;
}

/// The schedule in the export formats. The grid and the CSV show the compute schedule (what PyTorch
/// loads and lowers itself), or with --lowered the simulated lowered one; an imported file is written
/// back byte for byte unless --lowered or --csv-updates asks for something else. The Chrome trace and
/// the SVG show the simulated lowered schedule.
inline std::string render(const result& r, const options& o) {
    switch (o.output_format) {
    case format::grid: return o.lowered_output ? paci::to_grid(r.lowered, {.communication = true}) : paci::to_grid(r.compute);
    case format::csv:
        if (r.layout && !o.lowered_output && !o.given.contains("--csv-updates"))
            return paci::export_csv(paci::imported_schedule{r.compute, *r.layout});
        return paci::export_csv(o.lowered_output ? r.lowered : r.compute, {.updates = o.csv_updates});
    case format::chrome: return paci::to_chrome_trace(r.lowered, r.sim.times, &r.versions);
    case format::svg: return paci::to_svg(r.lowered, r.sim.times, &r.versions);
    default: return {};
    }
}

} // namespace paci_plan
