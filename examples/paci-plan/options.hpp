// paci-plan's command line: flags, values and their checks. Every bad flag or value becomes a
// usage_error naming the flag and the value (exit status 2).
#pragma once

#include <paci/analysis/validate.hpp>
#include <paci/core/limits.hpp>
#include <paci/core/lower.hpp>
#include <paci/io/csv.hpp>
#include <paci/policy/schedule_policy.hpp>
#include <paci/sim/cost_model.hpp>

#include <charconv>
#include <functional>
#include <initializer_list>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace paci_plan {

/// A bad command line: exit status 2.
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum class format { table, grid, csv, chrome, svg, json };

struct options {
    std::string policy = "paci";
    std::vector<std::string> policies; ///< --policy's list (one name unless --compare)
    int stages = 8;
    int ranks = 0; ///< 0: same as stages
    int chunks = 0; ///< 0: stages / ranks
    int microbatches = 8;
    int steps = 0; ///< 0: a window long enough for the steady state
    std::vector<int> cap;
    paci::backward_flavour flavour = paci::backward_flavour::perf;
    bool flavour_given = false;
    paci::cost_model costs{};
    paci::send_semantics sends = paci::send_semantics::buffered;
    int memory_budget = 0;
    int drift_budget = -1;
    std::vector<std::string> import_files; ///< --import, once or more (several only with --compare)
    bool lowered_output = false;           ///< --lowered: grid and csv show the lowered schedule
    paci::csv_dialect dialect = paci::csv_dialect::automatic; ///< --dialect: the CSV's op names
    paci::limits limits = paci::current_limits();             ///< --max-actions, --max-bytes
    format output_format = format::table;
    paci::csv_updates csv_updates = paci::csv_updates::omit; ///< --csv-updates
    std::string output_file;
    bool compare = false;
    bool plan = false;
    bool help = false;
    std::set<std::string, std::less<>> given; ///< flags that appeared on the command line
};

inline constexpr std::string_view policy_names[] = {"gpipe",     "1f1b", "interleaved", "looped-bfs",
                                                    "interleaved-zb", "zb-v", "dualpipev",  "zb-h1",
                                                    "zb-h2",     "pipedream", "2bw",     "paci"};

/// Policies that place several stages on a rank: --ranks below --stages.
inline bool multi_stage(std::string_view name) {
    return name == "interleaved" || name == "looped-bfs" || name == "interleaved-zb" || name == "zb-v" ||
           name == "dualpipev";
}
/// The V placement: stages r and 2R-1-r on rank r, so --stages must be 2 x --ranks.
inline bool v_shaped(std::string_view name) { return name == "zb-v" || name == "dualpipev"; }
/// Policies with a --chunks setting (stages per rank, the loop placement).
inline bool chunked(std::string_view name) {
    return name == "interleaved" || name == "looped-bfs" || name == "interleaved-zb";
}

inline const char* usage_text =
    "usage: paci-plan [options]\n"
    "  --policy NAME        gpipe|1f1b|interleaved|looped-bfs|interleaved-zb|zb-v|dualpipev|zb-h1|zb-h2|\n"
    "                       pipedream|2bw|paci (default paci); with --compare, a comma-separated list\n"
    "  --stages P           pipeline stages (default 8; zb-v and dualpipev: 2 x --ranks)\n"
    "  --ranks R            ranks (default P; R < P places P/R stages on each rank: interleaved,\n"
    "                       looped-bfs, interleaved-zb, and the V placements zb-v and dualpipev)\n"
    "  --chunks V           stages per rank for interleaved, looped-bfs, interleaved-zb (default P/R, or 2)\n"
    "  --microbatches M     micro-batches per optimizer update, every policy (PACI's a) (default 8)\n"
    "  --steps N            updates in the window (default: enough for the steady state)\n"
    "  --cap L              PACI in-flight cap: one number (min(L, P-s) per stage) or a list L0,L1,...\n"
    "  --flavour F          perf|recompute (gpipe, 1f1b, paci)\n"
    "  --costs K=V,...      f,b,i,w,r,step,latency,bandwidth,bytes,overlap (default f=1,b=2,i=1,w=1,r=1,\n"
    "                       step=0,latency=0,bandwidth=inf,bytes=1,overlap=1; overlap: an overlapped F/B\n"
    "                       pair takes max(F, B) + overlap x min(F, B))\n"
    "  --send S             buffered|rendezvous (default buffered)\n"
    "  --jitter X --seed S  relative jitter in [0, 1) per action, seeded\n"
    "  --memory-budget K    planner: most full activations per rank\n"
    "  --drift-budget D     planner: most updates crossed (drift) or lagged (staleness)\n"
    "  --import FILE        analyse a PyTorch schedule CSV (compute only, or lowered with SEND/RECV: analysed\n"
    "                       as given) instead of a policy; repeat it with --compare to tabulate several\n"
    "  --dialect D          legacy|modern: the CSV's backward names (default: detected from the file)\n"
    "  --max-actions N      refuse schedules of more actions (default 134217728)\n"
    "  --max-bytes N        refuse schedules and analysis tables of more bytes (default 4294967296)\n"
    "  --format F           table|grid|csv|chrome|svg|json (default table); csv is what PyTorch's\n"
    "                       _load_csv reads (no STEP cells) unless --csv-updates says otherwise\n"
    "  --lowered            grid and csv: the lowered schedule, with SEND/RECV (PyTorch's compute_comms)\n"
    "  --csv-updates U      omit|reduce-grad|step: how csv writes paci's STEP (and R) cells: left out\n"
    "                       (default), STEP as REDUCE_GRAD (one-update flushed schedules), or paci's own\n"
    "                       STEP and R cells\n"
    "  --output FILE        write there instead of standard output\n"
    "  --compare            every policy (or the --policy list, and every --import) side by side for the\n"
    "                       same stages, micro-batches and costs\n"
    "  --plan               rank policies and settings within the budgets\n"
    "  --help               this text\n";

inline std::string quote(std::string_view v) { return "'" + std::string(v) + "'"; }

inline long long parse_integer(std::string_view flag, std::string_view text, long long lo, long long hi) {
    long long v = 0;
    const auto res = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || res.ec != std::errc{} || res.ptr != text.data() + text.size())
        throw usage_error(std::string(flag) + ": " + quote(text) + " is not an integer");
    if (v < lo || v > hi)
        throw usage_error(std::string(flag) + ": " + quote(text) + " must be in [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "]");
    return v;
}

/// The range every simulated time (a cost, the latency, bytes / bandwidth) must be 0 or lie in: sums
/// over any schedule within paci::limits stay finite, and so do rates such as micro-batches per time
/// unit (a denormal cost would make them infinite).
inline constexpr double min_time = 1e-100;
inline constexpr double max_time = 1e100;

inline bool time_in_range(double v) { return v == 0 || (v >= min_time && v <= max_time); }

inline std::string time_range_text() { return "must be 0 or in [1e-100, 1e100] so simulated times stay finite"; }

inline double parse_number(std::string_view flag, std::string_view text) {
    if (text == "inf") return std::numeric_limits<double>::infinity();
    double v = 0;
    const auto res = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || res.ec != std::errc{} || res.ptr != text.data() + text.size() || std::isnan(v))
        throw usage_error(std::string(flag) + ": " + quote(text) + " is not a number");
    return v;
}

inline std::vector<std::string_view> split(std::string_view text, char sep) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    while (true) {
        const auto at = text.find(sep, start);
        out.push_back(text.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
        if (at == std::string_view::npos) break;
        start = at + 1;
    }
    return out;
}

inline void parse_costs(std::string_view text, paci::cost_model& costs) {
    for (const auto item : split(text, ',')) {
        const auto eq = item.find('=');
        if (eq == std::string_view::npos)
            throw usage_error("--costs: " + quote(item) + " is not KEY=VALUE");
        const auto key = item.substr(0, eq);
        const std::string flag = "--costs " + std::string(key);
        const double v = parse_number(flag, item.substr(eq + 1));
        auto& c = costs.uniform;
        if (key == "f") c.f = v;
        else if (key == "b") c.b = v;
        else if (key == "i") c.i = v;
        else if (key == "w") c.w = v;
        else if (key == "r") c.r = v;
        else if (key == "step") c.step = v;
        else if (key == "latency") costs.latency = v;
        else if (key == "bandwidth") costs.bandwidth = v;
        else if (key == "bytes") costs.bytes = v;
        else if (key == "overlap") costs.overlap_penalty = v;
        else
            throw usage_error("--costs: unknown key " + quote(key) +
                              " (expected f, b, i, w, r, step, latency, bandwidth, bytes, overlap)");
        if (key != "bandwidth" && key != "bytes" && key != "overlap" && v >= 0 && !time_in_range(v)) // negatives: costs.validate() below
            throw usage_error(flag + ": " + quote(item.substr(eq + 1)) + " " + time_range_text());
    }
    // bytes / bandwidth is the time of a hop: in range like any other time, or 0 (no bytes, or bandwidth=inf).
    const double transfer = std::isinf(costs.bandwidth) || costs.bytes == 0 ? 0.0 : costs.bytes / costs.bandwidth;
    if (costs.bandwidth > 0 && costs.bytes >= 0 && std::isfinite(costs.bytes) && !time_in_range(transfer))
        throw usage_error(paci::detail::concat("--costs bytes/bandwidth: bytes (", costs.bytes, ") / bandwidth (",
                                               costs.bandwidth, ") = ", transfer, ", the time of a hop, ", time_range_text()));
    try {
        costs.validate(1);
    } catch (const paci::config_error& e) {
        throw usage_error(std::string("--costs: ") + e.what());
    }
}

inline options finish_shape(options o);

inline options parse(int argc, const char* const* argv) {
    options o;
    const auto value = [&](int& k, std::string_view flag) -> std::string_view {
        if (k + 1 >= argc) throw usage_error(std::string(flag) + ": missing value");
        return argv[++k];
    };
    constexpr long long big = std::numeric_limits<std::int32_t>::max();
    for (int k = 1; k < argc; ++k) {
        const std::string_view flag = argv[k];
        o.given.emplace(flag);
        if (flag == "--help" || flag == "-h") o.help = true;
        else if (flag == "--compare") o.compare = true;
        else if (flag == "--plan") o.plan = true;
        else if (flag == "--lowered") o.lowered_output = true;
        else if (flag == "--policy") {
            const auto v = value(k, flag);
            o.policies.clear();
            for (const auto item : split(v, ',')) {
                bool known = false;
                for (const auto n : policy_names) known = known || n == item;
                if (!known)
                    throw usage_error("--policy: unknown policy " + quote(item) +
                                      " (expected gpipe, 1f1b, interleaved, looped-bfs, interleaved-zb, zb-v, dualpipev, "
                                      "zb-h1, zb-h2, pipedream, 2bw, paci)");
                o.policies.emplace_back(item);
            }
            o.policy = o.policies.front();
        } else if (flag == "--stages") o.stages = static_cast<int>(parse_integer(flag, value(k, flag), 1, paci::max_stages));
        else if (flag == "--ranks") o.ranks = static_cast<int>(parse_integer(flag, value(k, flag), 1, paci::max_stages));
        else if (flag == "--chunks") o.chunks = static_cast<int>(parse_integer(flag, value(k, flag), 1, paci::max_stages));
        else if (flag == "--microbatches") o.microbatches = static_cast<int>(parse_integer(flag, value(k, flag), 1, big));
        else if (flag == "--steps") o.steps = static_cast<int>(parse_integer(flag, value(k, flag), 1, big));
        else if (flag == "--cap") {
            o.cap.clear();
            for (const auto item : split(value(k, flag), ','))
                o.cap.push_back(static_cast<int>(parse_integer(flag, item, 1, big)));
        } else if (flag == "--flavour") {
            const auto v = value(k, flag);
            if (v == "perf") o.flavour = paci::backward_flavour::perf;
            else if (v == "recompute") o.flavour = paci::backward_flavour::recompute;
            else throw usage_error("--flavour: " + quote(v) + " (expected perf or recompute)");
            o.flavour_given = true;
        } else if (flag == "--costs") parse_costs(value(k, flag), o.costs);
        else if (flag == "--send") {
            const auto v = value(k, flag);
            if (v == "buffered") o.sends = paci::send_semantics::buffered;
            else if (v == "rendezvous") o.sends = paci::send_semantics::rendezvous;
            else throw usage_error("--send: " + quote(v) + " (expected buffered or rendezvous)");
        } else if (flag == "--jitter") {
            const auto text = value(k, flag);
            const double v = parse_number(flag, text);
            if (!(v >= 0 && v < 1)) throw usage_error("--jitter: " + quote(text) + " must be in [0, 1)");
            o.costs.jitter = v;
        } else if (flag == "--seed")
            o.costs.seed = static_cast<std::uint64_t>(parse_integer(flag, value(k, flag), 0, std::numeric_limits<long long>::max()));
        else if (flag == "--memory-budget") o.memory_budget = static_cast<int>(parse_integer(flag, value(k, flag), 1, big));
        else if (flag == "--drift-budget") o.drift_budget = static_cast<int>(parse_integer(flag, value(k, flag), 0, big));
        else if (flag == "--import") o.import_files.emplace_back(value(k, flag));
        else if (flag == "--csv-updates") {
            const auto v = value(k, flag);
            if (v == "omit") o.csv_updates = paci::csv_updates::omit;
            else if (v == "reduce-grad") o.csv_updates = paci::csv_updates::reduce_grad;
            else if (v == "step") o.csv_updates = paci::csv_updates::step;
            else throw usage_error("--csv-updates: " + quote(v) + " (expected omit, reduce-grad or step)");
        }
        else if (flag == "--dialect") {
            const auto v = value(k, flag);
            if (v == "legacy") o.dialect = paci::csv_dialect::legacy;
            else if (v == "modern") o.dialect = paci::csv_dialect::modern;
            else throw usage_error("--dialect: " + quote(v) + " (expected legacy or modern)");
        } else if (flag == "--max-actions")
            o.limits.max_actions = static_cast<std::uint64_t>(parse_integer(flag, value(k, flag), 1, std::numeric_limits<long long>::max()));
        else if (flag == "--max-bytes")
            o.limits.max_bytes = static_cast<std::uint64_t>(parse_integer(flag, value(k, flag), 1, std::numeric_limits<long long>::max()));
        else if (flag == "--format") {
            const auto v = value(k, flag);
            if (v == "table") o.output_format = format::table;
            else if (v == "grid") o.output_format = format::grid;
            else if (v == "csv") o.output_format = format::csv;
            else if (v == "chrome") o.output_format = format::chrome;
            else if (v == "svg") o.output_format = format::svg;
            else if (v == "json") o.output_format = format::json;
            else throw usage_error("--format: " + quote(v) + " (expected table, grid, csv, chrome, svg or json)");
        } else if (flag == "--output") o.output_file = std::string(value(k, flag));
        else throw usage_error("unknown flag " + quote(flag) + " (see --help)");
    }
    const auto given = [&](std::string_view f) { return o.given.contains(f); };
    // A flag that would change nothing is a mistake worth naming, not something to ignore.
    const auto no_effect = [&](std::initializer_list<std::string_view> flags, std::string_view because) {
        for (const auto f : flags)
            if (given(f)) throw usage_error(std::string(f) + ": has no effect " + std::string(because));
    };
    if (o.compare && o.plan) throw usage_error("--compare and --plan: choose one");
    if (o.plan && !o.import_files.empty()) throw usage_error("--import: cannot be combined with --plan");
    if (o.import_files.size() > 1 && !o.compare)
        throw usage_error(paci::detail::concat("--import: given ", o.import_files.size(),
                                               " times; several files need --compare"));
    if (o.policies.size() > 1 && !o.compare)
        throw usage_error("--policy: a list ('" + o.policies.front() + ",...') needs --compare");
    if (o.import_files.empty()) no_effect({"--dialect"}, "without --import");
    if (!given("--format") || (o.output_format != format::csv && o.output_format != format::grid))
        no_effect({"--lowered"}, "without --format csv or grid");
    if (o.output_format != format::csv) no_effect({"--csv-updates"}, "without --format csv");
    if (!o.import_files.empty() && o.compare) {
        no_effect({"--stages", "--ranks", "--chunks", "--microbatches", "--cap", "--flavour", "--memory-budget",
                   "--drift-budget"},
                  "with --import (the first file gives the shape the policies are compared at)");
        return o; // the shape comes from the files
    }
    if (!o.import_files.empty()) {
        no_effect({"--policy", "--stages", "--ranks", "--chunks", "--microbatches", "--steps", "--cap", "--flavour",
                   "--memory-budget", "--drift-budget"},
                  "with --import (the file gives the schedule)");
        return o; // the shape comes from the file
    }
    return finish_shape(std::move(o));
}

/// Fills in --ranks and --chunks and checks the shape against the policy: after `parse`, and for
/// --compare with --import, once the first file has given --stages, --ranks and --microbatches.
inline options finish_shape(options o) {
    const auto given = [&](std::string_view f) { return o.given.contains(f); };
    const auto no_effect = [&](std::initializer_list<std::string_view> flags, std::string_view because) {
        for (const auto f : flags)
            if (given(f)) throw usage_error(std::string(f) + ": has no effect " + std::string(because));
    };
    if (o.plan) no_effect({"--policy", "--steps", "--cap", "--flavour"}, "with --plan (it tries every policy)");
    if (!o.plan) no_effect({"--memory-budget", "--drift-budget"}, "without --plan");
    if (o.compare) no_effect({"--flavour"}, "with --compare (it runs every policy)");
    if (given("--seed") && !given("--jitter")) throw usage_error("--seed: has no effect without --jitter");
    if (given("--chunks") && !chunked(o.policy) && !o.compare && !o.plan)
        throw usage_error("--chunks: '" + std::to_string(o.chunks) +
                          "' applies only to --policy interleaved, looped-bfs and interleaved-zb");
    if (v_shaped(o.policy) && !o.compare && !o.plan) {
        if (!given("--ranks") && o.stages % 2 == 0) o.ranks = o.stages / 2; // the V placement: two stages per rank
        if (o.ranks * 2 != o.stages)
            throw usage_error("--stages: '" + std::to_string(o.stages) + "' must be 2 x --ranks (" +
                              std::to_string(o.ranks) + ") for --policy " + o.policy + " (stages r and 2R-1-r on rank r)");
    }
    if ((o.compare || o.plan) && o.output_format != format::table && o.output_format != format::json)
        throw usage_error("--format: --compare and --plan print table or json");
    if (o.ranks == 0) o.ranks = o.chunks > 0 ? std::max(1, o.stages / o.chunks) : o.stages;
    if (o.stages % o.ranks != 0)
        throw usage_error("--ranks: '" + std::to_string(o.ranks) + "' must divide --stages (" + std::to_string(o.stages) + ")");
    if (o.chunks == 0) o.chunks = o.stages / o.ranks;
    if (o.chunks * o.ranks != o.stages)
        throw usage_error("--chunks: '" + std::to_string(o.chunks) + "' times --ranks (" + std::to_string(o.ranks) +
                          ") must equal --stages (" + std::to_string(o.stages) + ")");
    if (multi_stage(o.policy) && !given("--chunks") && !given("--ranks") && o.stages % 2 == 0 && !o.compare &&
        !o.plan) {
        o.chunks = 2; // interleaving needs chunks: by default two per rank
        o.ranks = o.stages / 2;
    }
    if (!multi_stage(o.policy) && o.ranks != o.stages && !o.compare && !o.plan)
        throw usage_error("--ranks: '" + std::to_string(o.ranks) + "' differs from --stages (" + std::to_string(o.stages) +
                          "): only interleaved, looped-bfs, interleaved-zb, zb-v and dualpipev place several stages "
                          "on a rank");
    if (o.flavour_given && o.flavour == paci::backward_flavour::recompute && o.policy != "gpipe" && o.policy != "1f1b" &&
        o.policy != "paci" && !o.compare && !o.plan)
        throw usage_error("--flavour: 'recompute' is available for gpipe, 1f1b and paci, not " + quote(o.policy));
    if (!o.cap.empty() && o.policy != "paci" && o.policy != "1f1b" && o.policy != "pipedream" && o.policy != "2bw")
        throw usage_error("--cap: applies to paci, 1f1b, pipedream and 2bw, not " + quote(o.policy));
    if (o.cap.size() > 1 && o.cap.size() != static_cast<std::size_t>(o.stages))
        throw usage_error("--cap: " + std::to_string(o.cap.size()) + " entries, but --stages is " +
                          std::to_string(o.stages) + " (give one number or " + std::to_string(o.stages) + ")");
    if (o.cap.size() == 1) {
        const int l = o.cap.front();
        o.cap.clear();
        for (int s = 0; s < o.stages; ++s) o.cap.push_back(std::min(l, o.stages - s));
    }
    try {
        o.costs.validate(o.stages);
    } catch (const paci::config_error& e) {
        throw usage_error(std::string("--costs: ") + e.what());
    }
    return o;
}

} // namespace paci_plan
