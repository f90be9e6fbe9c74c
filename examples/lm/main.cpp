// paci-lm: a character-level language model trained on real text with every executable policy,
// in one process (one thread per stage), and the report of the whole demonstration.
//
//   paci-lm [--data FILE] [--stages 4] [--modelled-stages 8] [--policies gpipe:8,1f1b:8,paci:8,...]
//           [--samples N] [--target LOSS] [--results DIR] [--mpi-results FILE]
//
// 1. Every policy of --policies trains a fresh model (same seed, same micro-batch size, same samples)
//    at P = --stages; a line per evaluation.
// 2. At P = --modelled-stages (8), 1F1B-flush and PACI with a = 8 train for real; the time per
//    update of each is simulated (paci::simulate) with per-stage costs read off the recorded traces,
//    and multiplied by the real updates to target: the modelled time to target at P = 8.
// 3. The runs of `mpirun -np 2 paci-lm --mpi --out FILE` (measured wall-clock, one process per
//    stage; examples/lm/mpi.hpp), when --mpi-results names that FILE, join the table, training.json
//    and the plots.
// Bad input (missing or empty --data, a text shorter than one micro-batch, more stages than the
// model's layers, an unknown policy, a bad flag) prints a message and exits 2.

#include "cli.hpp"
#include "model.hpp"
#include "report.hpp"
#include "train.hpp"

#if PACI_LM_WITH_MPI
#include "mpi.hpp"
#endif

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace paci_lm;

std::string per_stage(const std::vector<int>& v) {
    std::string s;
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i) s += ' ';
        s += std::to_string(v[i]);
    }
    return s;
}

std::string seconds_or_dash(const std::optional<double>& v, const char* unit) {
    if (!v) return "-";
    char b[32];
    std::snprintf(b, sizeof b, "%.2f %s", *v, unit);
    return b;
}

void print_table(const std::vector<run_record>& runs) {
    std::printf("\n%-20s %2s %-9s %8s %6s %9s %13s %13s %-17s %-9s %s\n", "policy", "P", "transport", "held-out", "ppl",
                "samples/s", "to target", "modelled P=8", "peak activations", "versions", "max drift / bound");
    for (const auto& r : runs) {
        const int versions = r.weight_versions.empty() ? 0 : *std::max_element(r.weight_versions.begin(), r.weight_versions.end());
        std::printf("%-20s %2d %-9s %8.4f %6.2f %9.0f %13s %13s %-17s %-9d %s / %s\n", r.policy.c_str(), r.stages,
                    r.transport.c_str(), r.final_heldout, std::exp(r.final_heldout), r.samples_per_s,
                    seconds_or_dash(r.time_to_target, "s").c_str(),
                    seconds_or_dash(r.modelled_time_to_target, "s").c_str(), per_stage(r.peak_activations).c_str(), versions,
                    per_stage(r.max_drift).c_str(), per_stage(r.drift_bound).c_str());
    }
}

const run_record* find_run(const std::vector<run_record>& runs, const std::string& kind, int a, int P, const std::string& transport) {
    for (const auto& r : runs)
        if (r.kind == kind && r.a == a && r.stages == P && r.transport == transport) return &r;
    return nullptr;
}

bool write_file(const std::filesystem::path& p, const std::string& s) {
    std::ofstream f(p, std::ios::binary);
    f << s;
    return static_cast<bool>(f);
}

} // namespace

int main(int argc, char** argv) {
    for (int k = 1; k < argc; ++k)
        if (std::string_view(argv[k]) == "--mpi") {
#if PACI_LM_WITH_MPI
            return paci_lm::mpi_job::run(argc, argv);
#else
            std::cerr << "paci-lm: --mpi: this paci-lm was built without MPI (paci::mpi)\n";
            return 2;
#endif
        }
    const auto parsed = parse(std::vector<std::string>(argv + 1, argv + argc));
    if (const auto* e = std::get_if<usage_error>(&parsed)) {
        std::cerr << e->message << '\n';
        return 2;
    }
    const options o = std::get<options>(parsed);
    if (o.help) {
        std::cout << usage_text;
        return 0;
    }
    std::vector<int> stage_counts{o.stages};
    if (o.modelled_stages > 0) stage_counts.push_back(o.modelled_stages);
    auto prepared = prepare(o, stage_counts);
    if (const auto* e = std::get_if<usage_error>(&prepared)) {
        std::cerr << e->message << '\n';
        return 2;
    }
    std::vector<run_record> mpi_runs;
    if (!o.mpi_results.empty()) {
        std::ifstream in(o.mpi_results);
        if (!in) {
            std::cerr << "paci-lm: --mpi-results: cannot open '" << o.mpi_results << "'\n";
            return 2;
        }
        std::string line;
        try {
            while (std::getline(in, line))
                if (!line.empty()) mpi_runs.push_back(from_line(line));
        } catch (const std::exception& e) {
            std::cerr << "paci-lm: --mpi-results: '" << o.mpi_results << "' is not the output of paci-lm --mpi (" << e.what() << ")\n";
            return 2;
        }
    }

    const auto text = std::make_shared<const corpus>(std::move(std::get<corpus>(prepared)));
    const lm_task task{config_of(o), text};
    const std::vector<std::size_t> ends = heldout_ends(*text, task.config.context, 4096);
    std::size_t params = 0;
    for (const auto& s : make_model<float>(task, 1)) params = s->parameters().size();
    std::printf("Character-level language model on %s: %zu characters for training, %zu held out (%zu evaluated).\n",
                o.data.empty() ? "the fortunes package (/usr/share/games/fortunes)" : o.data.c_str(), text->train.size(),
                text->heldout.size(), ends.size());
    std::printf("Model: window %d x embedding %d, %d ReLU blocks of width %d (residual), softmax over %d characters; %zu "
                "parameters, float32, AdamW lr %g.\n",
                task.config.context, task.config.embed, task.config.blocks, task.config.hidden, vocab, params, task.config.lr);
    std::printf("Every run: %d samples per micro-batch, %lld samples, %d held-out evaluations (each drains the pipeline), "
                "seed %llu, target held-out loss %.2f.\n\n",
                o.microbatch, static_cast<long long>(o.samples), o.evals, static_cast<unsigned long long>(o.seed), o.target);

    std::vector<run_record> runs;
    try {
        std::printf("In process, P = %d (one thread per stage on this machine's cores):\n", o.stages);
        for (const auto& spec : o.policies)
            runs.push_back(with_policy(spec, o.stages, [&](const auto& policy) {
                return train_inprocess(policy, spec, task, ends, o).record;
            }));

        if (o.modelled_stages > 0) {
            const int P = o.modelled_stages, a = 8;
            std::printf("\nIn process, P = %d, a = %d: the real training behind the modelled times:\n", P, a);
            const policy_spec fs{"1f1b", a}, ps{"paci", a};
            const paci::one_f_one_b<> flush{.stages = P, .microbatches = a};
            const paci::paci_policy<> pacip{.stages = P, .microbatches = a};
            inprocess_result f = train_inprocess(flush, fs, task, ends, o);
            inprocess_result p = train_inprocess(pacip, ps, task, ends, o);
            const paci::cost_model costs = costs_from({&f.trace.ranks, &p.trace.ranks}, P);
            std::printf("  per-stage costs from the traces (median ms, F / B / STEP):");
            for (int s = 0; s < P; ++s) {
                const auto& c = costs.per_stage[static_cast<std::size_t>(s)];
                std::printf(" %.3f/%.3f/%.3f", c.f * 1e3, c.b * 1e3, c.step * 1e3);
            }
            const double seg_f = simulated_segment(flush, f.eval_every, costs);
            const double seg_p = simulated_segment(pacip, p.eval_every, costs);
            std::printf("\n  simulated time per update (segments of %d updates, filled and drained): 1F1B-flush %.3f ms, PACI %.3f ms (%.3fx)\n",
                        f.eval_every, seg_f / f.eval_every * 1e3, seg_p / p.eval_every * 1e3, seg_f / seg_p);
            for (auto* x : {&f, &p}) {
                const double seg = x == &f ? seg_f : seg_p;
                for (auto& pt : x->record.curve)
                    pt.modelled = static_cast<double>(pt.samples / (static_cast<std::int64_t>(a) * x->record.batch)) / x->eval_every * seg;
                x->record.time_to_target.reset();
                x->record.modelled_time_to_target.reset();
                find_target(x->record);
                runs.push_back(x->record);
            }
        }
    } catch (const std::exception& e) {
        std::cerr << "paci-lm: training failed: " << e.what() << '\n';
        return 1;
    }
    for (const auto& r : mpi_runs) runs.push_back(r);

    print_table(runs);
    std::printf("\nTime to target: training wall-clock (evaluations excluded) until the held-out loss first reaches %.2f, "
                "interpolated between the evaluations around the crossing;\nin process the stages share this machine's "
                "cores, so only the MPI rows measure pipelining.\n"
                "Modelled P=8: updates to target (real P=8 run) x simulated time per update (per-stage costs from the trace).\n",
                o.target);

    // ---- the targets ------------------------------------------------------------------------------
    std::printf("\nChecks against the targets:\n");
    for (const int a : {2, 4, 8}) {
        const run_record* p = find_run(runs, "paci", a, o.stages, "inprocess");
        const run_record* f = find_run(runs, "1f1b", a, o.stages, "inprocess");
        if (p && f)
            std::printf("  PACI a=%d final held-out %.4f vs 1F1B-flush a=%d %.4f: %+.2f%% (target within 2%%)\n", a,
                        p->final_heldout, a, f->final_heldout, 100 * (p->final_heldout - f->final_heldout) / f->final_heldout);
    }
    if (o.modelled_stages > 0) {
        const run_record* p = find_run(runs, "paci", 8, o.modelled_stages, "inprocess");
        const run_record* f = find_run(runs, "1f1b", 8, o.modelled_stages, "inprocess");
        if (p && f && p->modelled_time_to_target && f->modelled_time_to_target)
            std::printf("  modelled time to target at P=%d, a=8: 1F1B-flush %.2f s / PACI %.2f s = %.2fx (target >= 1.5x; "
                        "updates to target %lld and %lld)\n",
                        o.modelled_stages, *f->modelled_time_to_target, *p->modelled_time_to_target,
                        *f->modelled_time_to_target / *p->modelled_time_to_target,
                        static_cast<long long>(f->updates_to_target.value_or(-1)), static_cast<long long>(p->updates_to_target.value_or(-1)));
        else
            std::printf("  modelled time to target at P=%d, a=8: a run did not reach the target\n", o.modelled_stages);
    }
    for (const auto& r : mpi_runs)
        if (r.is_paci() && !std::isnan(r.measured_ratio))
            std::printf("  measured wall-clock with %d MPI processes, a=%d: 1F1B-flush / PACI = %.3fx, simulated %.3fx: %+.1f%% "
                        "(target within 10%%)\n",
                        r.stages, r.a, r.measured_ratio, r.predicted_ratio, 100 * (r.measured_ratio - r.predicted_ratio) / r.predicted_ratio);
    bool drift_ok = true;
    for (const auto& r : runs)
        for (std::size_t s = 0; s < r.max_drift.size(); ++s) drift_ok = drift_ok && r.max_drift[s] <= r.drift_bound[s];
    std::printf("  recorded drift within ceil((P-1-s)/a) at every stage of every run: %s\n", drift_ok ? "yes" : "NO");

    // ---- results/ ---------------------------------------------------------------------------------
    std::error_code ec;
    std::filesystem::create_directories(o.results, ec);
    const std::filesystem::path dir(o.results);
    bool ok = write_file(dir / "training.json", to_json(runs));
    std::string sub = "char-level LM on ";
    sub += o.data.empty() ? std::string("fortunes") : std::filesystem::path(o.data).filename().string();
    sub += ", " + std::to_string(o.microbatch) + " samples per micro-batch";
    {
        std::vector<series> lines;
        for (const auto& r : runs)
            if (r.transport == "inprocess" && r.stages == o.stages) {
                std::vector<std::pair<double, double>> pts;
                for (const auto& p : r.curve) pts.emplace_back(static_cast<double>(p.samples), p.heldout);
                lines.push_back(series_of(r, std::move(pts)));
            }
        ok = write_file(dir / "heldout-vs-samples.svg",
                        svg_plot("Held-out loss against samples, P = " + std::to_string(o.stages),
                                 sub + "; synchronous policies at one a compute the same bits",
                                 "training samples", "held-out loss (nats/char)", lines, o.target)) && ok;
    }
    if (o.modelled_stages > 0) {
        std::vector<series> lines;
        for (const auto& r : runs)
            if (r.stages == o.modelled_stages && r.transport == "inprocess") {
                std::vector<std::pair<double, double>> pts;
                for (const auto& p : r.curve) pts.emplace_back(p.modelled, p.heldout);
                lines.push_back(series_of(r, std::move(pts), true));
            }
        ok = write_file(dir / "heldout-vs-modelled-time.svg",
                        svg_plot("Held-out loss against modelled time, P = " + std::to_string(o.modelled_stages) + ", a = 8",
                                 "real P=8 training; time per update simulated with per-stage costs from its trace",
                                 "modelled time (s)", "held-out loss (nats/char)", lines, o.target)) && ok;
    }
    if (!mpi_runs.empty()) {
        std::vector<series> lines;
        for (const auto& r : mpi_runs) {
            std::vector<std::pair<double, double>> pts;
            for (const auto& p : r.curve) pts.emplace_back(p.seconds, p.heldout);
            lines.push_back(series_of(r, std::move(pts), true));
        }
        ok = write_file(dir / "heldout-vs-measured-time.svg",
                        svg_plot("Held-out loss against measured wall-clock, " + std::to_string(mpi_runs.front().stages) +
                                     " MPI processes",
                                 "one process per stage; training time, evaluations excluded", "wall-clock (s)",
                                 "held-out loss (nats/char)", lines, o.target)) && ok;
    }
    if (!ok) {
        std::cerr << "paci-lm: cannot write the results to '" << o.results << "'\n";
        return 1;
    }
    std::printf("\nWrote %s/training.json and the plots %s/heldout-vs-*.svg\n", o.results.c_str(), o.results.c_str());
    return 0;
}
