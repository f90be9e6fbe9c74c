// paci-demo: every built-in policy on an 8-stage pipeline — is its schedule valid, how far do its
// weight versions drift against the bound it promises, and what does it cost in memory.
//
// Run: bash scripts/demo.sh   (or build target paci-demo and run build/<preset>/bin/paci-demo)

#include <paci/paci.hpp>

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

namespace {

std::string pad(std::string s, std::size_t width) {
    if (s.size() < width) s.append(width - s.size(), ' ');
    return s;
}

template <class Row>
void print_row(const char* label, int stages, Row cell) {
    std::cout << "    " << pad(label, 26);
    for (int s = 0; s < stages; ++s) std::cout << pad(cell(s), 7);
    std::cout << '\n';
}

bool all_ok = true;

struct summary_row {
    std::string name;
    bool valid;
    int max_drift, drift_bound, peak_stored, peak_versions;
};
std::vector<summary_row> summary;

template <paci::schedule_policy Policy>
void report(const Policy& policy, const char* what) {
    const paci::analysis eager = paci::analyze(policy, paci::lowering::eager);
    const paci::analysis safe = paci::analyze(policy, paci::lowering::rendezvous_safe);
    const int P = policy.shape().stages;
    std::cout << what << "\n  " << eager.policy << "\n";
    std::cout << "    valid (eager lowering, non-blocking sends):      "
              << (eager.validation.valid() ? "yes" : "NO: " + eager.validation.first_error()) << "\n";
    std::cout << "    eager lowering under blocking sends:             "
              << (eager.validation.deadlock_free(paci::send_semantics::rendezvous) ? "deadlock-free" : "deadlocks")
              << "\n";
    std::cout << "    rendezvous-safe lowering under blocking sends:   "
              << (safe.validation.deadlock_free(paci::send_semantics::rendezvous)
                      ? "deadlock-free"
                      : "NO: " + safe.validation.first_error())
              << "\n";
    all_ok = all_ok && eager.validation.valid() && safe.validation.deadlock_free(paci::send_semantics::rendezvous) &&
             eager.drift.within_bounds();
    int bound = 0;
    for (const auto& d : eager.drift.stages) bound = d.drift_bound > bound ? d.drift_bound : bound;
    summary.push_back({what, eager.validation.valid(), eager.drift.max_drift(), bound,
                       *std::max_element(eager.memory.rank_peak_stored.begin(), eager.memory.rank_peak_stored.end()),
                       *std::max_element(eager.memory.peak_versions.begin(),
                                                                    eager.memory.peak_versions.end())});
    print_row("stage", P, [](int s) { return std::to_string(s); });
    print_row("drift observed/bound", P, [&](int s) {
        const auto& d = eager.drift.stages[static_cast<std::size_t>(s)];
        return std::to_string(d.max_drift) + "/" + std::to_string(d.drift_bound);
    });
    print_row("staleness observed/bound", P, [&](int s) {
        const auto& d = eager.drift.stages[static_cast<std::size_t>(s)];
        return std::to_string(d.max_staleness) + "/" + std::to_string(d.staleness_bound);
    });
    print_row("peak stored micro-batches", P,
              [&](int s) { return std::to_string(eager.memory.peak_stored[static_cast<std::size_t>(s)]); });
    print_row("peak full activations", P,
              [&](int s) { return std::to_string(eager.memory.peak_activations[static_cast<std::size_t>(s)]); });
    print_row("resident weight versions", P,
              [&](int s) { return std::to_string(eager.memory.peak_versions[static_cast<std::size_t>(s)]); });
    std::cout << "    ";
    if (eager.drift.within_bounds()) std::cout << "within every promised bound";
    else std::cout << "BOUND VIOLATED: " << *eager.drift.first_violation;
    std::cout << "; max vertical spread of forward versions across stages: " << eager.drift.max_vertical_spread
              << "\n\n";
}

} // namespace

int main() {
    using paci::backward_flavour;
    constexpr int P = 8;
    std::cout << "paci: " << P << "-stage pipeline, every built-in policy (windows: 2 flushed steps of 16 micro-batches, or 8 updates for\n"
                 "asynchronous policies). Drift = updates a micro-batch crosses between its forward and backward.\n\n";
    report(paci::gpipe<>{.stages = P, .microbatches = 16, .steps = 2}, "GPipe (synchronous)");
    report(paci::one_f_one_b<>{.stages = P, .microbatches = 16, .steps = 2}, "1F1B-flush (synchronous)");
    report(paci::interleaved_one_f_one_b{.ranks = 4, .chunks = 2, .microbatches = 16, .steps = 2},
           "Interleaved 1F1B, 4 ranks x 2 chunks (synchronous)");
    report(paci::zb_h1{.stages = P, .microbatches = 16, .steps = 2}, "ZB-H1 (synchronous, split backward)");
    report(paci::zb_h2{.stages = P, .microbatches = 16, .steps = 2}, "ZB-H2 (synchronous, split backward)");
    report(paci::pipedream{.stages = P, .microbatches = 1, .steps = 32}, "PipeDream (asynchronous, weight stashing)");
    report(paci::pipedream_2bw{.stages = P, .microbatches = 8, .steps = 8},
           "PipeDream-2BW (asynchronous, double-buffered weights)");
    report(paci::paci_policy<>{.stages = P, .microbatches = 4, .steps = 8},
           "PACI a=4 (asynchronous, no stash, drift bound ceil((P-1-s)/4))");
    report(paci::paci_policy<>{.stages = P, .microbatches = 8, .steps = 8},
           "PACI a=8 (asynchronous, no stash, at most one update crossed)");
    report(paci::paci_policy<backward_flavour::recompute>{.stages = P, .microbatches = 4, .steps = 8},
           "PACI a=4, recompute flavour (stores stage inputs only)");
    std::cout << "Summary (" << P << " stages)\n  " << pad("policy", 64) << pad("valid", 7) << pad("drift/bound", 13)
              << pad("stored/rank", 13) << "weight versions\n";
    for (const auto& r : summary)
        std::cout << "  " << pad(r.name, 64) << pad(r.valid ? "yes" : "NO", 7)
                  << pad(std::to_string(r.max_drift) + "/" + std::to_string(r.drift_bound), 13)
                  << pad(std::to_string(r.peak_stored), 13) << r.peak_versions << '\n';
    std::cout << (all_ok ? "every schedule is valid and within its bounds\n" : "SOME CHECK FAILED\n");
    return all_ok ? 0 : 1;
}
