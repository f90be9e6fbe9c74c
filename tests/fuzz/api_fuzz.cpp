// libFuzzer target for paci's public API (built with PACI_BUILD_FUZZERS=ON, run by scripts/fuzz.sh and
// the ctest fuzz.api). From the input bytes it builds a policy (every one in include/paci/policy/, with
// fuzzed stages, micro-batches, steps, caps and flavours), a cost model, a plan request and schedules:
// the policy's own (valid), that one mutated, and garbage ones; then it calls every public analysis,
// simulation, export and planning function on them.
//
// The rule it checks is the README's: every call returns a result or throws paci::config_error /
// paci::parse_error. Any other exception, a sanitizer report (ASan, UBSan) or a blown time or memory
// budget is a finding. For valid inputs it also checks what must hold:
//   - validate(lower(s)) is valid for a schedule s a valid policy generated (both lowerings);
//   - export then import is the identity (PyTorch CSV, for generated and lowered schedules);
//   - a replay of a generated schedule with its policy's controller stays within the policy's bounds;
//   - a simulation that returns has a finite makespan, throughput and bubble fraction.
// A broken property prints what broke and traps.
//
// PACI_API_FUZZ_SKIP=shape,simulate (an environment variable: entry-point names as in the calls below)
// skips those calls, so a long run can look past a finding that is known and being fixed; the ctest
// and scripts/fuzz.sh never set it.

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
#include <paci/policy/gpipe.hpp>
#include <paci/policy/interleaved.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/pipedream.hpp>
#include <paci/policy/zero_bubble.hpp>
#include <paci/sim/cost_model.hpp>
#include <paci/sim/simulate.hpp>
#include <paci/version/accumulation.hpp>
#include <paci/version/double_buffer.hpp>
#include <paci/version/flush.hpp>
#include <paci/version/stash.hpp>

#include <fuzzer/FuzzedDataProvider.h>

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
    return c;
}

paci::action random_action(fuzz_input& in, int stages, int microbatches) {
    // Rarely an op value past the last one: the enum holds any byte, and a garbage schedule may too.
    const auto kind = static_cast<paci::op>(in.ConsumeIntegralInRange(0, 31) == 0 ? in.ConsumeIntegral<std::uint8_t>()
                                                                                 : in.ConsumeIntegralInRange(0, paci::op_count - 1));
    const int s = in.ConsumeIntegralInRange(0, 7) == 0 ? count(in, 0, paci::max_stages) : in.ConsumeIntegralInRange(0, std::max(0, stages));
    const int m = in.ConsumeIntegralInRange(0, 7) == 0 ? in.ConsumeIntegral<int>() : in.ConsumeIntegralInRange(0, std::max(0, microbatches));
    return {kind, std::clamp(s, 0, paci::max_stages), m};
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

/// A few local edits of a schedule: swap, drop, duplicate, retarget an action, or change the header.
paci::schedule mutate(paci::schedule s, fuzz_input& in) {
    const int edits = in.ConsumeIntegralInRange(1, 4);
    for (int e = 0; e < edits; ++e) {
        const auto what = in.ConsumeIntegralInRange(0, 9);
        if (what >= 7) { // the header
            switch (what) {
            case 7: s.shape.stages = count(in, 1, s.shape.stages + 2); break;
            case 8: s.microbatches = count(in, 0, s.microbatches + 2); break;
            default: s.steps = count(in, 0, s.steps + 2); break;
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

/// Every schedule-level entry point on `s` (any schedule: valid, mutated or garbage).
void exercise_schedule(const paci::schedule& s, fuzz_input& in, const paci::cost_model& cm) {
    static_cast<void>(paci::fingerprint(s));
    std::optional<paci::validation_report> report;
    call("validate", [&] { report = paci::validate(s); });
    call("find_deadlock", [&] { static_cast<void>(paci::find_deadlock(s, paci::send_semantics::buffered)); });
    call("find_deadlock", [&] { static_cast<void>(paci::find_deadlock(s, paci::send_semantics::rendezvous)); });
    std::optional<paci::schedule> lowered;
    call("lower", [&] { lowered = paci::lower(s, in.ConsumeBool() ? paci::lowering::eager : paci::lowering::rendezvous_safe); });

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

    // CSV: whatever is exported either imports or is refused with a parse error.
    std::string text;
    const paci::export_options eo{.dialect = in.ConsumeBool() ? paci::csv_dialect::modern : paci::csv_dialect::legacy,
                                  .newline = in.ConsumeBool() ? paci::line_ending::crlf : paci::line_ending::lf,
                                  .final_newline = in.ConsumeBool()};
    if (call("export_csv", [&] { text = paci::export_csv(s, eo); }))
        call("import_csv", [&] { static_cast<void>(paci::import_csv(text, {.dialect = eo.dialect})); });
    // The importer's options, any values.
    paci::import_options io{.stages = count(in, 0, 8), .microbatches = count(in, 0, 8)};
    if (in.ConsumeBool()) io.map = in.ConsumeBool() ? paci::stage_map::loop : paci::stage_map::v;
    io.dialect = static_cast<paci::csv_dialect>(in.ConsumeIntegralInRange(0, 2));
    io.pytorch_ops = in.ConsumeBool();
    std::optional<paci::imported_schedule> imported;
    call("parse_csv", [&] { imported = paci::parse_csv(text, io); });
    if (imported) call("to_grid", [&] { static_cast<void>(paci::to_grid(*imported)); });
    call("parse_action", [&] { static_cast<void>(paci::parse_action(in.ConsumeRandomLengthString(12))); });
}

/// The identities of a valid generated schedule.
void check_generated(const paci::schedule& s, const std::string& policy) {
    for (const auto mode : {paci::lowering::eager, paci::lowering::rendezvous_safe}) {
        std::optional<paci::schedule> lowered;
        call("lower", [&] { lowered = paci::lower(s, mode); });
        if (!lowered) continue; // past the limits: a config error is a fine answer
        std::optional<paci::validation_report> report;
        call("validate", [&] { report = paci::validate(*lowered); });
        if (report)
            require(report->valid() && (mode == paci::lowering::eager || report->deadlock_free(paci::send_semantics::rendezvous)),
                    paci::detail::concat("validate(lower(", policy, ".generate(), ",
                                         mode == paci::lowering::eager ? "eager" : "rendezvous_safe",
                                         ")) is not valid: ", report->first_error()));
        // Export then import is the identity, for the lowered schedule too.
        std::optional<paci::schedule> back;
        const std::string text = paci::export_csv(*lowered);
        call("import_csv", [&] { back = paci::import_csv(text, {.source = lowered->policy}); });
        require(back && *back == *lowered,
                paci::detail::concat("import_csv(export_csv(lower(", policy, ".generate()))) is not the schedule"));
    }
    std::optional<paci::schedule> back;
    const std::string text = paci::export_csv(s);
    call("import_csv", [&] { back = paci::import_csv(text, {.source = s.policy}); });
    require(back && *back == s, paci::detail::concat("import_csv(export_csv(", policy, ".generate())) is not the schedule"));
}

template <class Policy>
void exercise_policy(const Policy& p, fuzz_input& in) {
    const std::string name = paci::detail::concat(p);
    const bool valid = call("validate", [&] { p.validate(); });
    call("version_bounds::of", [&] { static_cast<void>(paci::version_bounds::of(p)); });
    call("shape", [&] { static_cast<void>(p.shape()); });
    std::optional<paci::schedule> s;
    call("generate", [&] { s = p.generate(); });
    require(valid || !s, name + ": generate() returned a schedule for a policy validate() refuses");
    if (in.ConsumeIntegralInRange(0, 7) == 0)
        call("analyze", [&] { static_cast<void>(paci::analyze(p, in.ConsumeBool() ? paci::lowering::eager : paci::lowering::rendezvous_safe)); });
    const paci::cost_model cm = costs(in, s ? s->shape.stages : 1);
    if (!s) {
        exercise_schedule(garbage_schedule(in), in, cm);
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
    switch (in.ConsumeIntegralInRange(0, 2)) {
    case 0: exercise_schedule(*s, in, cm); break;
    case 1: exercise_schedule(mutate(*s, in), in, cm); break;
    default: exercise_schedule(garbage_schedule(in), in, cm); break;
    }
    // A replay checked against a policy of another shape must be refused or judged, never misread.
    if (r) {
        const paci::paci_policy<> other{.stages = count(in, 1, 6), .microbatches = count(in, 1, 4), .steps = count(in, 1, 3),
                                        .cap = caps(in, 4)};
        call("check_drift", [&] { static_cast<void>(paci::check_drift(*r, other)); });
    }
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
    const auto which = in.ConsumeIntegralInRange(0, 11);
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
    default: {
        const paci::schedule s = garbage_schedule(in);
        exercise_schedule(s, in, costs(in, s.shape.stages));
        if (in.ConsumeBool()) exercise_schedule(mutate(s, in), in, costs(in, s.shape.stages));
    }
    }
    return 0;
}
