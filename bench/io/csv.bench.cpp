// PyTorch schedule CSV import and export throughput (bytes per second) on a large lowered 1F1B
// schedule (64 stages, 4096 micro-batches, SEND/RECV included), against a naive baseline in the same
// run: std::getline + std::stringstream splitting + std::regex per cell for import, an
// std::ostringstream written cell by cell for export. Target: >= 50 MB/s for paci's import and export.
// The imported text is paci's own form (its STEP cells included, as before PyTorch's form became the
// default export); `export_paci` writes the default PyTorch form, `export_paci_own` paci's own. The
// `pairs` cases time the overlapped-pair cell, `(0F7;7B3)OVERLAP_F_B`, on the compute-only 1F1B with
// every forward that directly precedes a backward paired with it (DualPipeV's cell, at scale).

#include <paci/core/lower.hpp>
#include <paci/io/csv.hpp>
#include <paci/policy/one_f_one_b.hpp>

#include <benchmark/benchmark.h>

#include "support/workloads.hpp"

#include <cstddef>
#include <cstdint>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

const paci::schedule& big_schedule() {
    static const paci::schedule s = paci::lower(paci_bench::one_f_one_b_policy().generate());
    return s;
}

const std::string& big_text() {
    static const std::string text = paci::export_csv(big_schedule(), {.updates = paci::csv_updates::step});
    return text;
}

/// The compute-only 1F1B with each forward that is directly followed by a backward made an
/// overlapped pair with it (about half its actions become pair members).
const paci::schedule& paired_schedule() {
    static const paci::schedule s = [] {
        paci::schedule t = paci_bench::one_f_one_b_policy().generate();
        for (auto& prog : t.ranks)
            for (std::size_t p = 0; p + 1 < prog.size(); ++p)
                if (prog[p].kind == paci::op::F && prog[p + 1].kind == paci::op::B) {
                    prog[p].overlap_next = true;
                    ++p;
                }
        return t;
    }();
    return s;
}

const std::string& paired_text() {
    static const std::string text = paci::export_csv(paired_schedule(), {.updates = paci::csv_updates::step});
    return text;
}

/// Times `import(text)` on a schedule's CSV text (the big one by default), counting its bytes and actions.
template <class Import>
void measure_import(benchmark::State& state, Import import, const std::string& text = big_text(),
                    const paci::schedule& s = big_schedule()) {
    for (auto _ : state) {
        auto in = import(text);
        benchmark::DoNotOptimize(in);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(text.size()));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(s.size()));
}

/// Times `export_text(s)` on a schedule (the big one by default), counting the bytes it writes and the actions.
template <class Export>
void measure_export(benchmark::State& state, Export export_text, const paci::schedule& s = big_schedule()) {
    std::size_t bytes = 0;
    for (auto _ : state) {
        std::string text = export_text(s);
        bytes = text.size();
        benchmark::DoNotOptimize(text);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(s.size()));
}

void BM_import_paci(benchmark::State& state) {
    measure_import(state, [](const std::string& text) { return paci::parse_csv(text); });
}

void BM_export_paci(benchmark::State& state) {
    measure_export(state, [](const paci::schedule& s) { return paci::export_csv(s); });
}

void BM_export_paci_own(benchmark::State& state) {
    measure_export(state, [](const paci::schedule& s) { return paci::export_csv(s, {.updates = paci::csv_updates::step}); });
}

void BM_import_pairs(benchmark::State& state) {
    measure_import(state, [](const std::string& text) { return paci::parse_csv(text); }, paired_text(), paired_schedule());
}

void BM_export_pairs(benchmark::State& state) {
    measure_export(state, [](const paci::schedule& s) { return paci::export_csv(s); }, paired_schedule());
}

/// What a first implementation would do: lines, then cells, then a regex per cell.
std::vector<std::vector<paci::action>> naive_import(const std::string& text) {
    static const std::regex cell_re("([0-9]+)(SEND_F|RECV_F|SEND_B|RECV_B|STEP|F|B|I|W|R)([0-9]+)");
    std::vector<std::vector<paci::action>> ranks;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        auto& prog = ranks.emplace_back();
        std::stringstream cells(line);
        std::string cell;
        while (std::getline(cells, cell, ',')) {
            if (cell.empty()) continue;
            std::smatch m;
            if (!std::regex_match(cell, m, cell_re)) throw std::runtime_error("naive_import: bad cell " + cell);
            int kind = 0;
            while (paci::to_string(static_cast<paci::op>(kind)) != m[2].str()) ++kind;
            prog.emplace_back(static_cast<paci::op>(kind), std::stoi(m[1].str()), std::stoi(m[3].str()));
        }
    }
    return ranks;
}

std::string naive_export(const paci::schedule& s) {
    std::ostringstream out;
    for (const auto& prog : s.ranks) {
        for (std::size_t p = 0; p < prog.size(); ++p) {
            if (p) out << ',';
            std::ostringstream cell;
            cell << prog[p].stage << paci::to_string(prog[p].kind) << prog[p].microbatch;
            out << cell.str();
        }
        out << "\r\n";
    }
    return std::move(out).str();
}

void BM_import_naive(benchmark::State& state) { measure_import(state, naive_import); }

void BM_export_naive(benchmark::State& state) { measure_export(state, naive_export); }

} // namespace

BENCHMARK(BM_import_paci)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_import_naive)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_export_paci)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_export_paci_own)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_import_pairs)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_export_pairs)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_export_naive)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
