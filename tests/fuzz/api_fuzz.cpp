// libFuzzer target for paci's public API (built with PACI_BUILD_FUZZERS=ON, run by scripts/fuzz.sh and
// the ctest fuzz.api). From the input bytes it builds a policy (every one in include/paci/policy/, with
// fuzzed stages or ranks, chunks, micro-batches, steps, caps and flavours), a cost model, a plan request
// and schedules: the policy's own (valid), that one or its lowering mutated, and garbage ones, any of
// whose actions may carry the overlapped-pair flag `action::overlap_next`; then it calls every public
// analysis, simulation, export and planning function on them, and pulls the policy's `program(rank)`
// streams with any rank and any micro-batch cut.
//
// The rule it checks is the README's: every call returns a result or throws paci::config_error /
// paci::parse_error. Any other exception, a sanitizer report (ASan, UBSan) or a blown time or memory
// budget is a finding. For valid inputs it also checks what must hold:
//   - validate(lower(s)) is valid for a schedule s a valid policy generated (both lowerings);
//   - export then import is the identity in paci's CSV form (STEP and R cells) and keeps the programs
//     less STEP and R in PyTorch's, for generated and lowered schedules;
//   - a replay of a generated schedule with its policy's controller stays within the policy's bounds;
//   - a simulation that returns has a finite makespan, throughput and bubble fraction, and completes
//     exactly when find_deadlock finds the same schedule deadlock-free under the same sends;
//   - for any valid compute-only schedule (mutated, overlapped pairs included), lower(s) in either mode
//     is valid, and deadlock-free under rendezvous sends when rendezvous_safe;
//   - for any schedule, export then import keeps the programs (less STEP and R cells where the form
//     drops them), and export_csv(parse_csv(text)) is the text;
//   - a policy's program(rank) stream paused at any cuts and then drained is generate()'s program.
// A broken property prints what broke and traps.
//
// PACI_API_FUZZ_SKIP=shape,simulate (an environment variable: entry-point names as in the calls below)
// skips those calls, so a long run can look past a finding that is known and being fixed; the ctest
// and scripts/fuzz.sh never set it. Streams are named per policy (`program:zb_v`; `program` skips them
// all), and `program-size` skips only pulling from a stream whose one update is past paci::limits.

#include <paci/analysis/analyze.hpp>
#include <paci/analysis/drift.hpp>
#include <paci/analysis/memory.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/core/action.hpp>
#include <paci/core/limits.hpp>
#include <paci/core/lower.hpp>
#include <paci/core/schedule.hpp>
#include <paci/io/chrome_trace.hpp>
#include <paci/io/csv.hpp>
#include <paci/io/grid.hpp>
#include <paci/io/svg.hpp>
#include <paci/plan/planner.hpp>
#include <paci/policy/dualpipe_v.hpp>
#include <paci/policy/gpipe.hpp>
#include <paci/policy/interleaved.hpp>
#include <paci/policy/interleaved_zero_bubble.hpp>
#include <paci/policy/looped_bfs.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/pipedream.hpp>
#include <paci/policy/zb_v.hpp>
#include <paci/policy/zero_bubble.hpp>
#include <paci/sim/cost_model.hpp>
#include <paci/sim/simulate.hpp>
#include <paci/version/accumulation.hpp>
#include <paci/version/double_buffer.hpp>
#include <paci/version/flush.hpp>
#include <paci/version/stash.hpp>

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using fuzz_input = FuzzedDataProvider;

[[noreturn]] void finding(const std::string& what) {
    std::fprintf(stderr, "paci api fuzz: %s\n", what.c_str());
    std::fflush(stderr);
    __builtin_trap();
}

bool skipped(std::string_view api) {
    static const std::string list = [] {
        const char* env = std::getenv("PACI_API_FUZZ_SKIP");
        return env == nullptr ? std::string() : "," + std::string(env) + ",";
    }();
    return !list.empty() && list.find("," + std::string(api) + ",") != std::string::npos;
}

/// Runs `f`: a result or a paci error is fine; any other exception is a finding. True if it returned.
template <class F>
bool call(const char* api, F&& f) {
    if (skipped(api)) return false;
    try {
        f();
        return true;
    } catch (const paci::config_error&) {
    } catch (const paci::parse_error&) {
    } catch (const std::exception& e) {
        finding(std::string(api) + ": a std:: exception escaped: " + e.what());
    } catch (...) {
        finding(std::string(api) + ": a non-std exception escaped");
    }
    return false;
}

void require(bool ok, const std::string& what) {
    if (!ok) finding(what);
}

/// A count: mostly small (so the interesting shapes are explored quickly), sometimes anything.
int count(fuzz_input& in, int lo, int hi) {
    switch (in.ConsumeIntegralInRange(0, 15)) {
    case 0: return in.ConsumeIntegral<int>();
    case 1: return in.ConsumeIntegralInRange(-3, 0);
    case 2: return in.ConsumeIntegralInRange(hi, 4 * hi);
    default: return in.ConsumeIntegralInRange(lo, hi);
    }
}

double number(fuzz_input& in) {
    switch (in.ConsumeIntegralInRange(0, 15)) {
    case 0: return std::numeric_limits<double>::quiet_NaN();
    case 1: return std::numeric_limits<double>::infinity();
    case 2: return -in.ConsumeFloatingPointInRange(0.0, 10.0);
    case 3: return in.ConsumeFloatingPoint<double>();
    case 4: return 0.0;
    case 5: return std::numeric_limits<double>::denorm_min();
    default: return in.ConsumeFloatingPointInRange(0.0, 8.0);
    }
}

std::vector<int> caps(fuzz_input& in, int stages) {
    std::vector<int> out;
    switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0: return out; // the default cap
    case 1: // a sound cap: non-increasing, at most P - s
        for (int s = 0; s < stages && s < 64; ++s) {
            const int limit = std::max(1, std::min(stages - s, out.empty() ? stages : out.back()));
            out.push_back(in.ConsumeIntegralInRange(1, limit));
        }
        return out;
    default: { // anything
        const auto n = in.ConsumeIntegralInRange<std::size_t>(0, 12);
        for (std::size_t k = 0; k < n; ++k) out.push_back(count(in, 0, 10));
        return out;
    }
    }
}

paci::cost_model costs(fuzz_input& in, int stages) {
    paci::cost_model c;
    if (in.ConsumeBool()) return c;
    const auto stage_costs = [&] {
        return paci::stage_costs{.f = number(in), .b = number(in), .i = number(in), .w = number(in), .r = number(in),
                                 .step = number(in)};
    };
    c.uniform = stage_costs();
    if (in.ConsumeIntegralInRange(0, 3) == 0) {
        const int n = in.ConsumeBool() ? stages : in.ConsumeIntegralInRange(0, 10);
        for (int s = 0; s < n && s < 64; ++s) c.per_stage.push_back(stage_costs());
    }
    c.latency = number(in);
    c.bandwidth = in.ConsumeBool() ? std::numeric_limits<double>::infinity() : number(in);
    c.bytes = number(in);
    c.jitter = in.ConsumeBool() ? 0.0 : number(in) / 8;
    c.seed = in.ConsumeIntegral<std::uint64_t>();
    // What an overlapped pair costs: mostly in [0, 1], sometimes anything.
    c.overlap_penalty = in.ConsumeBool() ? in.ConsumeFloatingPointInRange(0.0, 1.0) : number(in);
    return c;
}

paci::action random_action(fuzz_input& in, int stages, int microbatches) {
    // Rarely an op value past the last one: the enum holds any byte, and a garbage schedule may too.
    // The same draw sets the overlapped-pair flag on about one action in sixteen, whatever its op.
    const int pick = in.ConsumeIntegralInRange(0, 31);
    const auto kind = static_cast<paci::op>(pick == 0 ? in.ConsumeIntegral<std::uint8_t>() : in.ConsumeIntegralInRange(0, paci::op_count - 1));
    const int s = in.ConsumeIntegralInRange(0, 7) == 0 ? count(in, 0, paci::max_stages) : in.ConsumeIntegralInRange(0, std::max(0, stages));
    const int m = in.ConsumeIntegralInRange(0, 7) == 0 ? in.ConsumeIntegral<int>() : in.ConsumeIntegralInRange(0, std::max(0, microbatches));
    paci::action a{kind, std::clamp(s, 0, paci::max_stages), m};
    a.overlap_next = pick >= 30;
    return a;
}

/// A schedule built from nothing but the input: any header, any programs.
paci::schedule garbage_schedule(fuzz_input& in) {
    paci::schedule s;
    s.policy = in.ConsumeRandomLengthString(16);
    s.shape.stages = count(in, 1, 8);
    s.shape.ranks = count(in, 1, 8);
    s.shape.map = in.ConsumeBool() ? paci::stage_map::loop : paci::stage_map::v;
    s.microbatches = count(in, 0, 8);
    s.steps = count(in, 0, 4);
    const int rows = in.ConsumeBool() ? s.shape.ranks : in.ConsumeIntegralInRange(0, 9);
    for (int r = 0; r < rows && r < 64; ++r) {
        auto& prog = s.ranks.emplace_back();
        const auto n = in.ConsumeIntegralInRange<std::size_t>(0, 24);
        for (std::size_t k = 0; k < n; ++k) prog.push_back(random_action(in, s.shape.stages, s.microbatches));
    }
    return s;
}

/// Makes `prog[k]`, or the next forward after it, open an overlapped pair with the first backward (B or
/// I) that follows it, moved right after it: a well-formed pair unless they share a micro-batch.
void pair_up(std::vector<paci::action>& prog, std::size_t k) {
    while (k < prog.size() && prog[k].kind != paci::op::F) ++k;
    if (k >= prog.size()) return;
    std::size_t b = k + 1;
    while (b < prog.size() && prog[b].kind != paci::op::B && prog[b].kind != paci::op::I) ++b;
    if (b >= prog.size()) return;
    const paci::action second = prog[b];
    prog.erase(prog.begin() + static_cast<std::ptrdiff_t>(b));
    prog.insert(prog.begin() + static_cast<std::ptrdiff_t>(k) + 1, second);
    prog[k].overlap_next = true;
}

/// A few local edits of a schedule: swap, drop, duplicate, retarget an action, change the header, flip
/// an action's overlapped-pair flag, or pair a forward with a later backward.
paci::schedule mutate(paci::schedule s, fuzz_input& in) {
    const int edits = in.ConsumeIntegralInRange(1, 4);
    for (int e = 0; e < edits; ++e) {
        const auto what = in.ConsumeIntegralInRange(0, 11);
        if (what >= 7 && what <= 9) { // the header
            // Near the old value; a bound at least `lo` (a header edited before may hold anything).
            const auto near = [](int old, int lo) { return std::clamp(old, lo, 1 << 16) + 2; };
            switch (what) {
            case 7: s.shape.stages = count(in, 1, near(s.shape.stages, 1)); break;
            case 8: s.microbatches = count(in, 0, near(s.microbatches, 0)); break;
            default: s.steps = count(in, 0, near(s.steps, 0)); break;
            }
            continue;
        }
        if (s.ranks.empty()) return s;
        auto& prog = s.ranks[in.ConsumeIntegralInRange<std::size_t>(0, s.ranks.size() - 1)];
        if (prog.empty()) {
            prog.push_back(random_action(in, s.shape.stages, s.microbatches));
            continue;
        }
        const auto k = in.ConsumeIntegralInRange<std::size_t>(0, prog.size() - 1);
        switch (what) {
        case 0: std::swap(prog[k], prog[in.ConsumeIntegralInRange<std::size_t>(0, prog.size() - 1)]); break;
        case 1: prog.erase(prog.begin() + static_cast<std::ptrdiff_t>(k)); break;
        case 2: prog.insert(prog.begin() + static_cast<std::ptrdiff_t>(k), prog[k]); break;
        case 3: prog[k] = random_action(in, s.shape.stages, s.microbatches); break;
        case 4: prog[k].microbatch = in.ConsumeIntegral<std::int32_t>(); break;
        case 5: prog[k].stage = static_cast<std::int16_t>(in.ConsumeIntegralInRange(0, paci::max_stages)); break;
        case 10: prog[k].overlap_next = !prog[k].overlap_next; break;
        case 11: pair_up(prog, k); break;
        default: { // move it to another rank
            const paci::action a = prog[k];
            prog.erase(prog.begin() + static_cast<std::ptrdiff_t>(k));
            auto& other = s.ranks[in.ConsumeIntegralInRange<std::size_t>(0, s.ranks.size() - 1)];
            other.insert(other.begin() + static_cast<std::ptrdiff_t>(in.ConsumeIntegralInRange<std::size_t>(0, other.size())), a);
        }
        }
    }
    return s;
}

paci::version_bounds random_bounds(fuzz_input& in) {
    paci::version_bounds b;
    for (auto* v : {&b.drift, &b.staleness, &b.versions}) {
        const auto n = in.ConsumeIntegralInRange<std::size_t>(0, 10);
        for (std::size_t k = 0; k < n; ++k) v->push_back(count(in, 0, 4));
    }
    return b;
}

paci::action_times random_times(fuzz_input& in, const paci::schedule& s) {
    paci::action_times t(in.ConsumeBool() ? s.ranks.size() : in.ConsumeIntegralInRange<std::size_t>(0, 4));
    for (std::size_t r = 0; r < t.size(); ++r) {
        const std::size_t n = r < s.ranks.size() && in.ConsumeBool() ? s.ranks[r].size() : in.ConsumeIntegralInRange<std::size_t>(0, 8);
        for (std::size_t k = 0; k < n; ++k) {
            const double a = number(in);
            t[r].emplace_back(a, in.ConsumeBool() ? a + number(in) : number(in));
        }
    }
    return t;
}

/// Replays `s` with each controller and checks the reports the replays feed.
template <class Controller>
void replay_with(const paci::schedule& s, const Controller& c, fuzz_input& in, std::optional<paci::replay_result>& keep) {
    std::optional<paci::replay_result> r;
    call("replay", [&] { r = paci::replay(s, c); });
    if (!r) return;
    call("check_drift", [&] { static_cast<void>(paci::check_drift(*r, random_bounds(in))); });
    call("memory_of", [&] { static_cast<void>(paci::memory_of(*r)); });
    if (!keep) keep = std::move(r);
}

/// `s`'s programs as a PyTorch-form import reads them back: STEP and R cells left out unless written.
std::vector<std::vector<paci::action>> exported_programs(const paci::schedule& s, paci::csv_updates updates) {
    std::vector<std::vector<paci::action>> out = s.ranks;
    if (updates == paci::csv_updates::step) return out;
    for (auto& prog : out)
        std::erase_if(prog, [](const paci::action& a) { return a.kind == paci::op::STEP || a.kind == paci::op::R; });
    return out;
}

/// A lowering of a valid compute-only schedule is valid, and deadlock-free under rendezvous sends
/// when rendezvous-safe.
void check_lowered(const paci::schedule& lowered, paci::lowering mode, const std::string& what) {
    std::optional<paci::validation_report> report;
    call("validate", [&] { report = paci::validate(lowered); });
    if (report)
        require(report->valid() && (mode == paci::lowering::eager || report->deadlock_free(paci::send_semantics::rendezvous)),
                paci::detail::concat("validate(lower(", what, ", ", mode, ")) is not valid: ", report->first_error()));
}

/// Every schedule-level entry point on `s` (any schedule: valid, mutated or garbage).
void exercise_schedule(const paci::schedule& s, fuzz_input& in, const paci::cost_model& cm) {
    static_cast<void>(paci::fingerprint(s));
    std::optional<paci::validation_report> report;
    call("validate", [&] { report = paci::validate(s); });
    call("find_deadlock", [&] { static_cast<void>(paci::find_deadlock(s, paci::send_semantics::buffered)); });
    call("find_deadlock", [&] { static_cast<void>(paci::find_deadlock(s, paci::send_semantics::rendezvous)); });
    // Both lowerings, the drawn one first (it is the one the simulation may run); a valid
    // compute-only schedule's are valid, overlapped pairs and all.
    std::optional<paci::schedule> lowered;
    const bool eager_first = in.ConsumeBool();
    for (const auto mode : {eager_first ? paci::lowering::eager : paci::lowering::rendezvous_safe,
                            eager_first ? paci::lowering::rendezvous_safe : paci::lowering::eager}) {
        std::optional<paci::schedule> l;
        call("lower", [&] { l = paci::lower(s, mode); });
        if (!l) continue;
        if (report && report->valid()) check_lowered(*l, mode, "a valid schedule (" + s.policy + ")");
        if (!lowered) lowered = std::move(l);
    }

    std::optional<paci::replay_result> versions;
    const int every = count(in, 1, 4);
    switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0: replay_with(s, paci::accumulation{.every = every}, in, versions); break;
    case 1: replay_with(s, paci::flush{.every = every}, in, versions); break;
    case 2: replay_with(s, paci::stash{.every = every}, in, versions); break;
    default: replay_with(s, paci::double_buffer{.every = every}, in, versions); break;
    }

    const paci::schedule& target = lowered && in.ConsumeBool() ? *lowered : s;
    const auto sends = in.ConsumeBool() ? paci::send_semantics::buffered : paci::send_semantics::rendezvous;
    std::optional<paci::simulation> sim;
    call("simulate", [&] { sim = paci::simulate(target, cm, sends); });
    if (sim && sim->completed)
        require(std::isfinite(sim->makespan) && !std::isnan(sim->throughput) && !std::isnan(sim->bubble_fraction),
                paci::detail::concat("simulate returned a non-finite result: makespan ", sim->makespan, ", throughput ",
                                     sim->throughput, ", bubble ", sim->bubble_fraction));
    if (sim) { // the simulator and the deadlock search agree on whether the ranks block each other
        std::optional<paci::deadlock_report> d;
        call("find_deadlock", [&] { d = paci::find_deadlock(target, sends); });
        if (d)
            require(d->deadlock_free == sim->completed,
                    paci::detail::concat("simulate ", sim->completed ? "completed" : "blocked", " but find_deadlock says ",
                                         *d, " (", sends, " sends, ", target.lowered() ? "lowered" : "compute-only", ")"));
    }

    // Exports: with the simulated times, program order, or garbage times; with or without versions.
    const paci::replay_result* v = versions && in.ConsumeBool() ? &*versions : nullptr;
    switch (in.ConsumeIntegralInRange(0, 2)) {
    case 0:
        if (sim) {
            call("to_svg", [&] { static_cast<void>(paci::to_svg(target, sim->times, v)); });
            call("to_chrome_trace", [&] { static_cast<void>(paci::to_chrome_trace(target, sim->times, v)); });
            // The same times drawn on another schedule must be refused or drawn, never read out of bounds.
            call("to_svg", [&] { static_cast<void>(paci::to_svg(s, sim->times, v)); });
        }
        break;
    case 1: {
        const paci::svg_options so{.title = in.ConsumeRandomLengthString(8), .width = number(in), .row_height = number(in),
                                   .microbatch_labels = in.ConsumeBool()};
        call("to_svg", [&] { static_cast<void>(paci::to_svg(target, paci::action_times{}, v, so)); });
        const paci::chrome_trace_options co{.time_scale = number(in), .name = in.ConsumeRandomLengthString(8)};
        call("to_chrome_trace", [&] { static_cast<void>(paci::to_chrome_trace(target, paci::action_times{}, v, co)); });
        break;
    }
    default: {
        const paci::action_times t = random_times(in, target);
        call("to_svg", [&] { static_cast<void>(paci::to_svg(target, t, v)); });
        call("to_chrome_trace", [&] { static_cast<void>(paci::to_chrome_trace(target, t, v)); });
    }
    }
    call("to_grid", [&] { static_cast<void>(paci::to_grid(s, {.communication = in.ConsumeBool()})); });

    // CSV: whatever is exported either imports, with the programs it was written from, or is refused
    // with a parse error. STEP and R cells in any of the export's forms (3 is no form: it must be
    // refused or written as one).
    std::string text;
    const paci::export_options eo{.dialect = in.ConsumeBool() ? paci::csv_dialect::modern : paci::csv_dialect::legacy,
                                  .newline = in.ConsumeBool() ? paci::line_ending::crlf : paci::line_ending::lf,
                                  .final_newline = in.ConsumeBool(),
                                  .updates = static_cast<paci::csv_updates>(in.ConsumeIntegralInRange(0, 3))};
    if (call("export_csv", [&] { text = paci::export_csv(s, eo); })) {
        std::optional<paci::schedule> back;
        call("import_csv", [&] { back = paci::import_csv(text, {.dialect = eo.dialect}); });
        if (back)
            require(back->ranks == exported_programs(s, eo.updates),
                    paci::detail::concat("import_csv(export_csv(s, {", eo.dialect, ", updates ", static_cast<int>(eo.updates),
                                         "})) has other programs than s:\n", s, "\ntext:\n", text, "\nread back:\n", *back));
    }
    // The importer's options, any values.
    paci::import_options io{.stages = count(in, 0, 8), .microbatches = count(in, 0, 8)};
    if (in.ConsumeBool()) io.map = in.ConsumeBool() ? paci::stage_map::loop : paci::stage_map::v;
    io.dialect = static_cast<paci::csv_dialect>(in.ConsumeIntegralInRange(0, 2));
    io.pytorch_ops = in.ConsumeBool();
    std::optional<paci::imported_schedule> imported;
    call("parse_csv", [&] { imported = paci::parse_csv(text, io); });
    if (imported) {
        // Every text parse_csv accepts is written back byte for byte.
        std::optional<std::string> again;
        call("export_csv", [&] { again = paci::export_csv(*imported); });
        require(again && *again == text, paci::detail::concat("export_csv(parse_csv(text)) is not the text:\n", text, "\nwritten back:\n",
                                                               again ? *again : std::string("(refused)")));
        call("to_grid", [&] { static_cast<void>(paci::to_grid(*imported)); });
    }
    call("parse_action", [&] { static_cast<void>(paci::parse_action(in.ConsumeRandomLengthString(12))); });
}

/// Export then import is the identity in paci's own CSV form (STEP and R cells), and keeps the
/// programs less STEP and R in PyTorch's (the default).
void check_csv_identity(const paci::schedule& s, const std::string& what) {
    std::optional<paci::schedule> back;
    const std::string text = paci::export_csv(s, {.updates = paci::csv_updates::step});
    call("import_csv", [&] { back = paci::import_csv(text, {.source = s.policy}); });
    // One rank: the loop and the v map place every stage on it, and the text cannot tell them apart.
    if (back && s.shape.ranks == 1 && back->shape.ranks == 1) back->shape.map = s.shape.map;
    require(back && *back == s, paci::detail::concat("import_csv(export_csv(", what, ", csv_updates::step)) is not the schedule"));
    std::optional<paci::schedule> pytorch;
    const std::string plain = paci::export_csv(s);
    call("import_csv", [&] { pytorch = paci::import_csv(plain); });
    require(pytorch && pytorch->ranks == exported_programs(s, paci::csv_updates::omit),
            paci::detail::concat("import_csv(export_csv(", what, ")) does not hold its programs less STEP and R"));
}

/// The identities of a valid generated schedule.
void check_generated(const paci::schedule& s, const std::string& policy) {
    for (const auto mode : {paci::lowering::eager, paci::lowering::rendezvous_safe}) {
        std::optional<paci::schedule> lowered;
        call("lower", [&] { lowered = paci::lower(s, mode); });
        if (!lowered) continue; // past the limits: a config error is a fine answer
        check_lowered(*lowered, mode, policy + ".generate()");
        check_csv_identity(*lowered, paci::detail::concat("lower(", policy, ".generate(), ", mode, ")"));
    }
    check_csv_identity(s, policy + ".generate()");
}

/// Pulls rank programs of `p` as streams (`program(rank)`, any rank). For a generated schedule `s`,
/// the stream paused at increasing cuts, then run to its micro-batch count and drained, is `s`'s
/// program of that rank (pausing never changes a program); then any cuts, drains and refills, which
/// must answer or throw a paci error within bounded pulls, with actions in the policy's shape.
template <class Policy>
void exercise_program(const Policy& p, bool valid, const std::optional<paci::pipeline_shape>& shape, const paci::schedule* s,
                      fuzz_input& in) {
    const std::string api = paci::detail::concat("program:", Policy::name);
    if (skipped(api) || skipped("program")) return;
    const int ranks = shape ? shape->ranks : 1;
    int rank = 0; // the draws are ordered so that an input that has run out asks for rank 0, and pulls
    switch (in.ConsumeIntegralInRange(0, 7)) {
    case 6: rank = in.ConsumeIntegral<int>(); break;
    case 7: rank = in.ConsumeBool() ? -1 : ranks; break;
    default: rank = in.ConsumeIntegralInRange(0, ranks > 1 ? ranks - 1 : 0);
    }
    using stream = decltype(p.program(0));
    std::optional<stream> prog;
    call(api.c_str(), [&] { prog.emplace(p.program(rank)); });
    require(valid || !prog, paci::detail::concat(p, ": program(", rank, ") returned a stream for a policy validate() refuses"));
    if (!prog) return;
    require(shape && rank >= 0 && rank < shape->ranks, paci::detail::concat(p, ": program(", rank, ") accepted a rank out of range"));
    // PACI_API_FUZZ_SKIP=program-size looks past a known finding: a stream that builds a whole update at
    // a time, with more actions than paci::limits allow (at least one forward per micro-batch and stage
    // of the rank), which program() did not refuse. Nothing is pulled from such a stream.
    if (skipped("program-size") &&
        static_cast<std::uint64_t>(p.microbatches) * static_cast<std::uint64_t>(shape->chunks()) > paci::current_limits().max_actions)
        return;
    const auto in_shape = [&](const paci::action& a) {
        require(a.stage >= 0 && a.stage < shape->stages && shape->rank_of(a.stage) == rank && a.microbatch >= 0 &&
                    (paci::is_compute(a.kind) || a.kind == paci::op::STEP),
                paci::detail::concat(p, ": program(", rank, ") gave ", a, ", not an action of this rank"));
    };
    paci::action a;
    if (s && static_cast<std::size_t>(rank) < s->ranks.size()) {
        const auto& expected = s->ranks[static_cast<std::size_t>(rank)];
        const std::int64_t total = s->microbatches;
        const std::size_t bound = expected.size() + 1; // one more than expected shows a longer program
        std::vector<paci::action> got;
        std::int64_t cut = 0;
        const bool ran = call(api.c_str(), [&] {
            for (int round = in.ConsumeIntegralInRange(0, 6); round > 0 && got.size() < bound; --round) {
                cut = std::min(total, cut + in.ConsumeIntegralInRange<std::int64_t>(0, std::max<std::int64_t>(total, 1)));
                while (got.size() < bound && prog->next(a, cut)) got.push_back(a);
            }
            while (got.size() < bound && prog->next(a, total)) got.push_back(a);
            while (got.size() < bound && prog->next_draining(a, total)) got.push_back(a);
        });
        require(ran && got == expected,
                paci::detail::concat(p, ": program(", rank, ") paused at cuts up to ", cut, ", then run to ", total,
                                     " and drained, gave ", ran ? "" : "an error after ", got.size(), " actions, not the ",
                                     expected.size(), " of generate()"));
    }
    call(api.c_str(), [&] {
        for (int round = in.ConsumeIntegralInRange(1, 8); round > 0; --round) {
            std::int64_t cut = 0;
            switch (in.ConsumeIntegralInRange(0, 3)) {
            case 2: cut = in.ConsumeIntegral<std::int64_t>(); break;
            case 3: cut = in.ConsumeBool() ? std::numeric_limits<std::int64_t>::max() : std::numeric_limits<std::int32_t>::max(); break;
            default: cut = in.ConsumeIntegralInRange<std::int64_t>(-2, 64); break;
            }
            const bool drain = in.ConsumeBool();
            for (int k = in.ConsumeIntegralInRange(1, 1024); k > 0 && (drain ? prog->next_draining(a, cut) : prog->next(a, cut)); --k)
                in_shape(a);
        }
    });
}

template <class Policy>
void exercise_policy(const Policy& p, fuzz_input& in) {
    const std::string name = paci::detail::concat(p);
    const bool valid = call("validate", [&] { p.validate(); });
    call("version_bounds::of", [&] { static_cast<void>(paci::version_bounds::of(p)); });
    std::optional<paci::pipeline_shape> shape;
    call("shape", [&] { shape = p.shape(); });
    require(!valid || shape || skipped("shape"), name + ": shape() refuses a policy validate() accepts");
    std::optional<paci::schedule> s;
    call("generate", [&] { s = p.generate(); });
    require(valid || !s, name + ": generate() returned a schedule for a policy validate() refuses");
    if (s && shape) require(s->shape == *shape, name + ": generate()'s shape is not shape()");
    if (in.ConsumeIntegralInRange(0, 7) == 0)
        call("analyze", [&] { static_cast<void>(paci::analyze(p, in.ConsumeBool() ? paci::lowering::eager : paci::lowering::rendezvous_safe)); });
    const paci::cost_model cm = costs(in, s ? s->shape.stages : 1);
    if (!s) {
        exercise_schedule(garbage_schedule(in), in, cm);
        exercise_program(p, valid, shape, nullptr, in);
        return;
    }
    check_generated(*s, name);
    // The policy's bounds hold for its own schedule.
    std::optional<paci::replay_result> r;
    call("replay", [&] { r = paci::replay(*s, p.controller()); });
    if (r) {
        std::optional<paci::drift_report> d;
        call("check_drift", [&] { d = paci::check_drift(*r, p); });
        require(d && d->within_bounds(), name + ": the replay of its own schedule exceeds its bounds" +
                                             (d && d->first_violation ? ": " + paci::detail::concat(*d->first_violation) : ""));
    }
    switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0: exercise_schedule(*s, in, cm); break;
    case 1: exercise_schedule(mutate(*s, in), in, cm); break;
    case 3: { // its lowering, as it is or mutated: SEND/RECV around overlapped pairs, flags on communication
        std::optional<paci::schedule> lowered;
        call("lower", [&] { lowered = paci::lower(*s, in.ConsumeBool() ? paci::lowering::eager : paci::lowering::rendezvous_safe); });
        if (lowered) {
            exercise_schedule(in.ConsumeBool() ? mutate(*lowered, in) : *lowered, in, cm);
            break;
        }
        [[fallthrough]];
    }
    default: exercise_schedule(garbage_schedule(in), in, cm); break;
    }
    // A replay checked against a policy of another shape must be refused or judged, never misread.
    if (r) {
        const paci::paci_policy<> other{.stages = count(in, 1, 6), .microbatches = count(in, 1, 4), .steps = count(in, 1, 3),
                                        .cap = caps(in, 4)};
        call("check_drift", [&] { static_cast<void>(paci::check_drift(*r, other)); });
    }
    exercise_program(p, valid, shape, &*s, in);
}

template <template <paci::backward_flavour> class Family>
void flavoured(fuzz_input& in, auto&& fill) {
    if (in.ConsumeBool()) {
        Family<paci::backward_flavour::perf> p;
        fill(p);
        exercise_policy(p, in);
    } else {
        Family<paci::backward_flavour::recompute> p;
        fill(p);
        exercise_policy(p, in);
    }
}

template <paci::backward_flavour F>
using one_f_one_b_family = paci::one_f_one_b<F>;
template <paci::backward_flavour F>
using paci_family = paci::paci_policy<F>;
template <paci::backward_flavour F>
using gpipe_family = paci::gpipe<F>;

void exercise_plan(fuzz_input& in) {
    paci::plan_request req{.stages = count(in, 1, 6),
                           .ranks = in.ConsumeBool() ? 0 : count(in, 1, 6),
                           .microbatches = count(in, 1, 8),
                           .costs = costs(in, 4),
                           .memory_budget = count(in, 0, 8),
                           .drift_budget = count(in, -1, 3),
                           .sends = in.ConsumeBool() ? paci::send_semantics::buffered : paci::send_semantics::rendezvous};
    call("make_plan", [&] { static_cast<void>(paci::make_plan(req)); });
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    // Small limits keep every execution fast; a call past them must throw config_error, which is fine.
    static_cast<void>(paci::set_limits({.max_actions = std::uint64_t{1} << 16, .max_bytes = std::uint64_t{1} << 24}));
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz_input in(data, size);
    // 18 choices: the policies before issue 9 and the plan (0 to 8) keep their numbers, and the kept
    // findings (tests/fuzz/findings/api/) still decode to the calls they were found with.
    const auto which = in.ConsumeIntegralInRange(0, 17);
    const int P = count(in, 1, 8);
    const int M = count(in, 1, 8);
    const int N = count(in, 1, 4);
    switch (which) {
    case 0: flavoured<gpipe_family>(in, [&](auto& p) { p.stages = P, p.microbatches = M, p.steps = N; }); break;
    case 1: flavoured<one_f_one_b_family>(in, [&](auto& p) { p.stages = P, p.microbatches = M, p.steps = N, p.cap = caps(in, P); }); break;
    case 2: flavoured<paci_family>(in, [&](auto& p) { p.stages = P, p.microbatches = M, p.steps = N, p.cap = caps(in, P); }); break;
    case 3: exercise_policy(paci::pipedream{.stages = P, .microbatches = M, .steps = N, .cap = caps(in, P)}, in); break;
    case 4: exercise_policy(paci::pipedream_2bw{.stages = P, .microbatches = M, .steps = N, .cap = caps(in, P)}, in); break;
    case 5:
        exercise_policy(paci::interleaved_one_f_one_b{.ranks = P, .chunks = count(in, 1, 4), .microbatches = M, .steps = N}, in);
        break;
    case 6: exercise_policy(paci::zb_h1{.stages = P, .microbatches = M, .steps = N}, in); break;
    case 7: exercise_policy(paci::zb_h2{.stages = P, .microbatches = M, .steps = N}, in); break;
    case 8: exercise_plan(in); break;
    case 9: exercise_policy(paci::looped_bfs{.ranks = P, .chunks = count(in, 1, 4), .microbatches = M, .steps = N}, in); break;
    case 10:
        exercise_policy(paci::interleaved_zero_bubble{.ranks = P, .chunks = count(in, 1, 4), .microbatches = M, .steps = N}, in);
        break;
    case 11: exercise_policy(paci::zb_v{.ranks = P, .microbatches = M, .steps = N}, in); break;
    case 12: exercise_policy(paci::dualpipe_v{.ranks = P, .microbatches = M, .steps = N}, in); break;
    default: {
        const paci::schedule s = garbage_schedule(in);
        exercise_schedule(s, in, costs(in, s.shape.stages));
        if (in.ConsumeBool()) exercise_schedule(mutate(s, in), in, costs(in, s.shape.stages));
    }
    }
    return 0;
}
