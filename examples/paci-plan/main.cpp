// paci-plan: generate a policy's schedule (or import one from PyTorch's CSV), validate it, replay
// its weight versions, simulate it, and print or export the result; compare every policy, or plan.
//
// Exit status: 0 ok, 1 an invalid schedule (after its diagnosis) or an output error, 2 a bad flag
// or value.

#include "formats.hpp"
#include "json.hpp"
#include "options.hpp"
#include "run.hpp"

#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace paci_plan {
namespace {

std::string fixed(double v, int digits = 3) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(digits) << v;
    return s.str();
}

std::string pad(std::string s, std::size_t w) {
    if (s.size() < w) s.append(w - s.size(), ' ');
    return s;
}

std::vector<std::string> errors_of(const result& r, const options& o) {
    std::vector<std::string> out;
    for (const auto& e : r.validation.errors) out.push_back(paci::detail::concat(e));
    if (r.validation.error_count > r.validation.errors.size())
        out.push_back(paci::detail::concat(r.validation.error_count - r.validation.errors.size(), " more errors"));
    if (r.validation.structure_ok()) {
        if (!r.validation.buffered.deadlock_free) out.push_back(r.validation.buffered.message);
        else if (o.sends == paci::send_semantics::rendezvous && !r.validation.rendezvous.deadlock_free)
            out.push_back(r.validation.rendezvous.message);
    }
    if (r.drift.first_violation) out.push_back(paci::detail::concat(*r.drift.first_violation));
    return out;
}

bool deadlock_free(const result& r, const options& o) { return r.validation.deadlock_free(o.sends); }

template <class F>
std::vector<int> per_stage(const result& r, F f) {
    std::vector<int> v;
    for (const auto& s : r.drift.stages) v.push_back(f(s));
    return v;
}

void write_json(json_writer& j, const result& r, const options& o) {
    j.begin_object();
    j.key("policy").value(r.policy);
    j.key("stages").value(r.stages);
    j.key("ranks").value(r.ranks);
    j.key("microbatches").value(r.microbatches);
    j.key("steps").value(r.steps);
    j.key("send").value(paci::to_string(o.sends));
    j.key("valid").value(r.validation.valid());
    j.key("deadlock_free").value(deadlock_free(r, o));
    j.key("errors").array(errors_of(r, o));
    j.key("makespan").value(r.sim.makespan);
    j.key("throughput").value(r.sim.throughput);
    j.key("bubble_fraction").value(r.sim.bubble_fraction);
    j.key("utilization").array(r.sim.utilization);
    j.key("peak_activations").array(r.memory.peak_activations);
    j.key("peak_stored").array(r.memory.peak_stored);
    j.key("weight_versions").array(r.memory.peak_versions);
    j.key("max_drift").array(per_stage(r, [](const auto& s) { return s.max_drift; }));
    if (r.bounds) j.key("drift_bound").array(r.bounds->drift);
    else j.key("drift_bound").null();
    j.key("max_staleness").array(per_stage(r, [](const auto& s) { return s.max_staleness; }));
    if (r.bounds) j.key("staleness_bound").array(r.bounds->staleness);
    else j.key("staleness_bound").null();
    j.key("within_bounds").value(r.drift.within_bounds());
    j.end_object();
}

std::string table(const result& r, const options& o) {
    std::ostringstream out;
    out << r.policy << "\n";
    out << "  " << r.stages << " stages on " << r.ranks << " ranks, " << r.microbatches << " micro-batches per update, "
        << r.steps << " updates\n";
    out << "  valid: " << (r.validation.valid() ? "yes" : "no") << "; deadlock-free under " << paci::to_string(o.sends)
        << " sends: " << (deadlock_free(r, o) ? "yes" : "no") << "\n";
    for (const auto& e : errors_of(r, o)) out << "  error: " << e << "\n";
    out << "  makespan " << fixed(r.sim.makespan) << ", throughput " << fixed(r.sim.throughput, 4)
        << " micro-batches per time unit, bubble " << fixed(r.sim.bubble_fraction) << "\n";
    out << "  " << pad("stage", 10) << pad("drift", 10) << pad("stale", 10) << pad("stored", 8) << pad("activ.", 8)
        << "versions\n";
    for (const auto& s : r.drift.stages) {
        const auto k = static_cast<std::size_t>(s.stage);
        out << "  " << pad(std::to_string(s.stage), 10)
            << pad(std::to_string(s.max_drift) + (r.bounds ? "/" + std::to_string(s.drift_bound) : ""), 10)
            << pad(std::to_string(s.max_staleness) + (r.bounds ? "/" + std::to_string(s.staleness_bound) : ""), 10)
            << pad(std::to_string(r.memory.peak_stored[k]), 8) << pad(std::to_string(r.memory.peak_activations[k]), 8)
            << r.memory.peak_versions[k] << "\n";
    }
    out << "  utilization per rank:";
    for (const double u : r.sim.utilization) out << ' ' << fixed(u, 2);
    out << "\n";
    return out.str();
}

int max_of(const std::vector<int>& v) {
    int m = 0;
    for (const int x : v) m = x > m ? x : m;
    return m;
}

struct compare_row {
    std::string name;
    std::optional<result> r;
    std::string error;
    std::string label; ///< empty: the policy's label
};

/// The policies --compare runs when --policy names none: those that fit the shape.
std::vector<std::string> default_policies(const options& o) {
    if (o.ranks < o.stages) {
        std::vector<std::string> names = {"interleaved", "looped-bfs", "interleaved-zb"};
        if (o.stages == 2 * o.ranks) {
            names.emplace_back("zb-v");
            names.emplace_back("dualpipev");
        }
        return names;
    }
    std::vector<std::string> names = {"gpipe", "1f1b", "zb-h1", "zb-h2", "pipedream", "2bw", "paci"};
    if (o.microbatches != 1) names.insert(names.begin() + 4, "pipedream-1"); // PipeDream as published: an update per micro-batch
    return names;
}

/// Every --import, then the policies at the first file's shape (one update each unless --steps says
/// otherwise, as a PyTorch file holds one), or at the command line's shape without --import.
std::vector<compare_row> compare_all(options& o) {
    std::vector<compare_row> rows;
    for (const auto& path : o.import_files) {
        compare_row row{path, std::nullopt, {}, path};
        row.r = run_import(path, o);
        rows.push_back(std::move(row));
    }
    if (!rows.empty()) {
        const result& first = *rows.front().r;
        o.stages = first.stages;
        o.ranks = first.ranks;
        o.chunks = first.stages / first.ranks;
        o.microbatches = first.microbatches;
        if (o.steps == 0) o.steps = 1;
        if (o.policies.empty()) o.policy = o.ranks < o.stages ? "interleaved" : "paci";
        o = finish_shape(std::move(o));
        check_schedule_size(o);
    }
    const std::vector<std::string> names = o.policies.empty() ? default_policies(o) : o.policies;
    for (const auto& n : names) {
        compare_row row{n, std::nullopt, {}, {}};
        try {
            options one = o;
            one.policy = n == "pipedream-1" ? "pipedream" : n;
            if (n == "pipedream-1") one.microbatches = 1;
            if (n != "gpipe" && n != "1f1b" && n != "paci") one.flavour = paci::backward_flavour::perf;
            if (n != "paci" && n != "1f1b" && n != "pipedream" && n != "pipedream-1" && n != "2bw") one.cap.clear();
            if (v_shaped(n) && one.stages != 2 * one.ranks)
                throw paci::config_error(paci::detail::concat("paci-plan: ", n, " needs --stages = 2 x --ranks (",
                                                              one.stages, " stages on ", one.ranks, " ranks)"));
            if (!multi_stage(n) && one.ranks != one.stages)
                throw paci::config_error(paci::detail::concat("paci-plan: ", n, " runs one stage per rank (",
                                                              one.stages, " stages on ", one.ranks, " ranks)"));
            row.r = run_policy(one.policy, one);
        } catch (const paci::config_error& e) {
            row.error = e.what();
        }
        rows.push_back(std::move(row));
    }
    return rows;
}

std::string label(const std::string& name) {
    if (name == "gpipe") return "GPipe";
    if (name == "1f1b") return "1F1B-flush";
    if (name == "interleaved") return "interleaved 1F1B";
    if (name == "looped-bfs") return "looped BFS";
    if (name == "interleaved-zb") return "interleaved ZB";
    if (name == "zb-v") return "ZB-V";
    if (name == "dualpipev") return "DualPipeV";
    if (name == "zb-h1") return "ZB-H1";
    if (name == "zb-h2") return "ZB-H2";
    if (name == "pipedream") return "PipeDream";
    if (name == "pipedream-1") return "PipeDream, M=1";
    if (name == "2bw") return "PipeDream-2BW";
    return "PACI";
}

std::string compare_table(const std::vector<compare_row>& rows, const options& o) {
    std::ostringstream out;
    std::size_t w = 18;
    for (const auto& row : rows)
        if (!row.label.empty()) w = std::max(w, row.label.size() + 2);
    out << (o.import_files.empty() ? "Every policy: " : "Imported schedules and policies: ") << o.stages
        << " stages on " << o.ranks << " ranks, " << o.microbatches << " micro-batches per update, "
        << paci::to_string(o.sends) << " sends, costs " << o.costs.uniform << ", latency " << o.costs.latency;
    out << ", overlap " << o.costs.overlap_penalty;
    out << "\n\n";
    out << pad("policy", w) << pad("valid", 7) << pad("time/mb", 9) << pad("bubble", 8) << pad("makespan", 10)
        << pad("activ.", 8) << pad("versions", 10) << pad("drift", 8) << "staleness\n";
    for (const auto& row : rows) {
        const std::string name = row.label.empty() ? label(row.name) : row.label;
        if (!row.r) {
            out << pad(name, w) << "rejected: " << row.error << "\n";
            continue;
        }
        const result& r = *row.r;
        const int drift = r.drift.max_drift();
        int stale = 0;
        for (const auto& s : r.drift.stages) stale = std::max(stale, s.max_staleness);
        const int dbound = r.bounds ? max_of(r.bounds->drift) : 0;
        const int sbound = r.bounds ? max_of(r.bounds->staleness) : 0;
        out << pad(name, w) << pad(r.validation.valid() ? "yes" : "NO", 7)
            << pad(fixed(r.sim.time_per_microbatch()), 9) << pad(fixed(r.sim.bubble_fraction), 8)
            << pad(fixed(r.sim.makespan), 10) << pad(std::to_string(max_of(r.memory.rank_peak_activations)), 8)
            << pad(std::to_string(max_of(r.memory.peak_versions)), 10)
            << pad(std::to_string(drift) + "/" + std::to_string(dbound), 8) << stale << "/" << sbound << "\n";
    }
    out << "\ntime/mb: steady-state time per micro-batch (simulated); makespan: the whole window (one update\n"
           "for an imported file); activ.: most full activations on one rank;\n"
           "drift: most updates crossed between a forward and its backward (observed/bound); staleness: most\n"
           "updates between a forward and the update that applies its gradient (observed/bound).\n";
    return out.str();
}

std::string plan_text(const paci::plan& p, const options& o) {
    std::ostringstream out;
    out << "Plan for " << o.stages << " stages on " << o.ranks << " ranks, memory budget "
        << (o.memory_budget > 0 ? std::to_string(o.memory_budget) + " activations" : std::string("none"))
        << ", drift budget " << (o.drift_budget >= 0 ? std::to_string(o.drift_budget) : std::string("none")) << "\n"
        << p;
    if (const auto* best = p.best()) out << "best: " << best->policy << "\n";
    else out << "no candidate meets the budgets\n";
    return out.str();
}

std::string plan_json(const paci::plan& p) {
    json_writer j;
    j.begin_array();
    for (const auto& c : p.candidates) {
        j.begin_object();
        j.key("policy").value(c.policy);
        j.key("feasible").value(c.feasible());
        j.key("rejected_because").array(c.rejected_because);
        j.key("time_per_microbatch").value(c.time_per_microbatch);
        j.key("bubble_fraction").value(c.bubble_fraction);
        j.key("peak_activations").value(c.peak_activations);
        j.key("peak_stored").value(c.peak_stored);
        j.key("drift_bound").value(c.drift_bound);
        j.key("staleness_bound").value(c.staleness_bound);
        j.key("weight_versions").value(c.weight_versions);
        j.key("microbatches_per_update").value(c.effective_batch);
        j.end_object();
    }
    j.end_array();
    return j.str() + "\n";
}

void emit(const std::string& text, const options& o) {
    if (o.output_file.empty()) {
        std::cout << text;
        return;
    }
    std::ofstream f(o.output_file, std::ios::binary);
    f << text;
    f.close();
    if (!f) throw std::runtime_error("--output: cannot write '" + o.output_file + "'");
}

int run(int argc, const char* const* argv) {
    options o;
    try {
        o = parse(argc, argv);
    } catch (const usage_error& e) {
        std::cerr << "paci-plan: " << e.what() << "\n";
        return 2;
    }
    if (o.help) {
        std::cout << usage_text;
        return 0;
    }
    try {
        static_cast<void>(paci::set_limits(o.limits));
        if (o.import_files.empty()) check_schedule_size(o);
        if (o.plan) {
            const paci::plan p = paci::make_plan({.stages = o.stages,
                                                  .ranks = o.ranks,
                                                  .microbatches = o.microbatches,
                                                  .costs = o.costs,
                                                  .memory_budget = o.memory_budget,
                                                  .drift_budget = o.drift_budget,
                                                  .sends = o.sends});
            emit(o.output_format == format::json ? plan_json(p) : plan_text(p, o), o);
            return 0;
        }
        if (o.compare) {
            const auto rows = compare_all(o);
            if (o.output_format == format::json) {
                json_writer j;
                j.begin_array();
                for (const auto& row : rows)
                    if (row.r) write_json(j, *row.r, o);
                j.end_array();
                emit(j.str() + "\n", o);
            } else {
                emit(compare_table(rows, o), o);
            }
            bool ok = true;
            for (const auto& row : rows) ok = ok && (!row.r || row.r->validation.valid());
            return ok ? 0 : 1;
        }
        const result r = o.import_files.empty() ? run_policy(o.policy, o) : run_import(o.import_files.front(), o);
        if (!r.validation.valid()) {
            std::cerr << "paci-plan: invalid schedule " << r.policy << "\n";
            for (const auto& e : errors_of(r, o)) std::cerr << "  " << e << "\n";
            if (o.output_format == format::json) {
                json_writer j;
                write_json(j, r, o);
                emit(j.str() + "\n", o);
            } else if (o.output_format == format::table) {
                emit(table(r, o), o);
            }
            return 1;
        }
        switch (o.output_format) {
        case format::table: emit(table(r, o), o); break;
        case format::json: {
            json_writer j;
            write_json(j, r, o);
            emit(j.str() + "\n", o);
            break;
        }
        default: emit(render(r, o), o); break;
        }
        return 0;
    } catch (const usage_error& e) {
        std::cerr << "paci-plan: " << e.what() << "\n";
        return 2;
    } catch (const paci::config_error& e) {
        std::cerr << "paci-plan: " << e.what() << "\n";
        return 2;
    } catch (const paci::parse_error& e) {
        std::cerr << "paci-plan: --import: " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "paci-plan: " << e.what() << "\n";
        return 1;
    }
}

} // namespace
} // namespace paci_plan

int main(int argc, char** argv) { return paci_plan::run(argc, argv); }
