// The runtime numerics over MPI: one process per stage, paci::executor over paci::mpi_communicator,
// a real MLP (tests/support/mlp.hpp) with one layer per stage. Run with 2 and 4 processes.
// - 1F1B-flush and GPipe: the parameters after training equal those of the unsplit model trained
//   sequentially on the same micro-batches, bit for bit (every stage accumulates its gradients in
//   micro-batch order, which is checked on the recorded trace), and so do the losses.
// - PACI: every (stage, micro-batch)'s recorded forward and backward versions equal paci::replay of
//   the policy's own schedule for the window; the drift is within ceil((L_s - 1) / a) and attains
//   it; what ran is what the policy planned; and the loss goes down.
// With an argument ("throw" or "die") stage 1 fails mid-run instead, and the job must end.
// Rank 0 gathers every rank's parameters, losses and trace and checks them; a failed check prints
// "FAIL <check>: <what>" and makes the exit status non-zero.
#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/mpi/communicator.hpp>
#include <paci/policy/gpipe.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/runtime/executor.hpp>

#include "mpi/support.hpp"
#include "support/mlp.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using paci_test::activations;
using paci_test::mlp_config;
using paci_test::mlp_reference;
using paci_test::mlp_stage;
using comm_type = paci::mpi_communicator<mlp_stage::buffer_type>;

using paci_test::check;
using paci_test::g_failures;
using paci_test::g_rank;
using paci_test::run;

int g_size = 1;

/// Every rank's `mine`, on rank 0 (empty elsewhere).
template <class T>
std::vector<std::vector<T>> gather(const std::vector<T>& mine) {
    static_assert(std::is_trivially_copyable_v<T>);
    const int bytes = static_cast<int>(mine.size() * sizeof(T));
    std::vector<int> counts(static_cast<std::size_t>(g_size)), displs(static_cast<std::size_t>(g_size));
    MPI_Gather(&bytes, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
    int total = 0;
    for (int r = 0; r < g_size; ++r) {
        displs[static_cast<std::size_t>(r)] = total;
        total += counts[static_cast<std::size_t>(r)];
    }
    std::vector<char> all(static_cast<std::size_t>(g_rank == 0 ? total : 0));
    MPI_Gatherv(mine.data(), bytes, MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE, 0, MPI_COMM_WORLD);
    std::vector<std::vector<T>> out;
    if (g_rank != 0) return out;
    for (int r = 0; r < g_size; ++r) {
        std::vector<T> v(static_cast<std::size_t>(counts[static_cast<std::size_t>(r)]) / sizeof(T));
        if (!v.empty()) std::memcpy(v.data(), all.data() + displs[static_cast<std::size_t>(r)], v.size() * sizeof(T));
        out.push_back(std::move(v));
    }
    return out;
}


/// What one training run over MPI left, gathered on rank 0.
struct gathered {
    std::vector<std::vector<double>> parameters; ///< by stage
    std::vector<double> losses;                  ///< by micro-batch (the last stage's)
    paci::run_trace trace;
};

/// Trains `runs` x `n` micro-batches with `policy` over MPI; this rank runs its one stage.
template <class Policy>
gathered train(const Policy& policy, const mlp_config& cfg, int n, int runs = 1) {
    comm_type comm(MPI_COMM_WORLD);
    mlp_stage stage(cfg, g_rank);
    paci::executor exec(policy, std::vector<mlp_stage*>{&stage}, comm,
                        paci::executor_options{.timeout = std::chrono::seconds(30)});
    for (int k = 0; k < runs; ++k) exec.run(n);

    std::vector<double> losses;
    for (const auto& [m, l] : stage.losses()) losses.push_back(l);
    const auto params = gather(stage.parameters());
    const auto loss_parts = gather(losses);
    const auto traces = gather(exec.trace());
    gathered g;
    if (g_rank != 0) return g;
    g.parameters = params;
    g.losses = loss_parts.back();
    g.trace.shape = policy.shape();
    g.trace.ranks = traces;
    return g;
}

std::string describe(const auto& policy) {
    std::ostringstream out;
    out << policy;
    return out.str();
}

/// 1F1B-flush or GPipe over MPI equals the unsplit model trained sequentially, bit for bit.
template <class Policy>
void check_matches_reference(const Policy& policy, int n, int runs = 1) {
    const int P = g_size, a = policy.microbatches, total = n * runs;
    const std::string name = describe(policy) + ", " + std::to_string(runs) + " x " + std::to_string(n) + " micro-batches";
    const mlp_config cfg = paci_test::mlp_config_for(P, a);
    const gathered g = train(policy, cfg, n, runs);
    if (g_rank != 0) return;

    // The premise of bitwise equality: per stage, gradients accumulated in micro-batch order.
    for (const auto& rank : g.trace.ranks) {
        std::vector<int> order;
        int stage = -1;
        for (const auto& e : rank)
            if (e.act.kind == paci::op::B) {
                order.push_back(e.act.microbatch);
                stage = e.act.stage;
            }
        bool fifo = order.size() == static_cast<std::size_t>(total);
        for (int m = 0; fifo && m < total; ++m) fifo = order[static_cast<std::size_t>(m)] == m;
        check(fifo, name, "stage " + std::to_string(stage) + " did not run its backwards in micro-batch order");
    }
    const paci::validation_report report = paci::validate(g.trace.to_schedule());
    check(report.valid(), name, "the recorded trace is not a valid schedule: " + report.first_error());

    mlp_reference ref(cfg);
    const std::vector<double> ref_losses = ref.train(0, total);
    mlp_reference initial(cfg);
    check(!paci_test::bitwise_equal(g.parameters, initial.parameters()), name, "training did not move the parameters");
    check(paci_test::bitwise_equal(g.parameters, ref.parameters()), name,
          "parameters differ from the sequential reference (max relative difference " +
              std::to_string(paci_test::max_relative_difference(g.parameters, ref.parameters())) + ")");
    check(paci_test::bitwise_equal(g.losses, ref_losses), name, "losses differ from the sequential reference");
    std::printf("[rank 0] ok   %s: parameters and losses equal the sequential reference bit for bit\n", name.c_str());
}

/// PACI over MPI: recorded versions equal the replay of the policy's schedule, drift within the bound.
void check_paci(int a, int n) {
    const int P = g_size;
    const paci::paci_policy<> policy{.stages = P, .microbatches = a};
    const std::string name = describe(policy) + ", " + std::to_string(n) + " micro-batches";
    mlp_config cfg = paci_test::mlp_config_for(P, a);
    cfg.learning_rate = 0.3;
    const gathered g = train(policy, cfg, n);
    if (g_rank != 0) return;

    paci::paci_policy<> window = policy;
    window.steps = n / a;
    const paci::schedule planned = window.generate();
    const paci::replay_result pred = paci::replay(planned, policy.controller());

    // What ran is what the policy planned, action for action (compute and STEP, per rank).
    const paci::schedule ran = g.trace.to_schedule();
    bool same = ran.ranks.size() == planned.ranks.size();
    for (std::size_t r = 0; same && r < ran.ranks.size(); ++r) same = ran.ranks[r] == planned.ranks[r];
    check(same, name, "the executed programs differ from the policy's schedule");

    std::vector<int> vf(static_cast<std::size_t>(P * n), -1), vb(static_cast<std::size_t>(P * n), -1);
    int mismatches = 0;
    for (const auto& rank : g.trace.ranks)
        for (const auto& e : rank) {
            const int s = e.act.stage, m = e.act.microbatch;
            if (e.act.kind == paci::op::F) {
                vf[static_cast<std::size_t>(s * n + m)] = e.version;
                if (e.version != pred.at(s, m).forward) ++mismatches;
            } else if (e.act.kind == paci::op::B) {
                vb[static_cast<std::size_t>(s * n + m)] = e.version;
                if (e.version != pred.at(s, m).backward) ++mismatches;
            }
        }
    check(mismatches == 0, name, std::to_string(mismatches) + " recorded versions differ from paci::replay");

    for (int s = 0; s < P; ++s) {
        const int bound = (policy.cap_of(s) - 1 + a - 1) / a; // ceil((L_s - 1) / a)
        check(bound == policy.drift_bound(s), name, "closed-form bound differs from drift_bound at stage " + std::to_string(s));
        int worst = 0, bad = 0;
        for (int m = 0; m < n; ++m) {
            const auto at = static_cast<std::size_t>(s * n + m);
            const int drift = vb[at] - vf[at];
            if (vf[at] < 0 || vb[at] < 0 || drift != pred.at(s, m).drift() || drift < 0 || drift > bound) ++bad;
            worst = std::max(worst, drift);
        }
        check(bad == 0, name, "stage " + std::to_string(s) + ": " + std::to_string(bad) +
                                  " micro-batches with a missing version, a drift unlike the replay's, or beyond " +
                                  std::to_string(bound));
        check(worst == bound, name, "stage " + std::to_string(s) + ": worst drift " + std::to_string(worst) +
                                        " does not attain the bound " + std::to_string(bound));
    }
    const paci::replay_result from_trace = paci::replay(ran, policy.controller());
    check(from_trace.records == pred.records, name, "replaying the recorded schedule gives other versions");

    // The loss goes down: the last 8 micro-batches' mean loss is well below the first 8's.
    bool complete = g.losses.size() == static_cast<std::size_t>(n);
    check(complete, name, "the last stage recorded " + std::to_string(g.losses.size()) + " losses");
    if (complete) {
        double first = 0, last = 0;
        for (int m = 0; m < 8; ++m) {
            first += g.losses[static_cast<std::size_t>(m)] / 8;
            last += g.losses[static_cast<std::size_t>(n - 8 + m)] / 8;
        }
        check(last < 0.5 * first, name,
              "mean loss of the first 8 micro-batches " + std::to_string(first) + ", of the last 8 " + std::to_string(last));
        std::printf("[rank 0] ok   %s: versions equal the replay, drift within ceil((L_s-1)/a) and attained; "
                    "loss %.4f -> %.4f\n",
                    name.c_str(), first, last);
    }
}

/// Stage 1 of a 1F1B-flush run fails at its forward of micro-batch 5: it throws (the executor names
/// the failure and aborts the job) or its process dies (the launcher ends the job). Either way the
/// job must end with a non-zero status (tests/mpi/CMakeLists.txt, cmake/paciRunMpi.cmake).
struct faulty_stage {
    using buffer_type = mlp_stage::buffer_type;
    mlp_stage inner;
    std::string mode;
    buffer_type forward(int m, buffer_type in) {
        if (g_rank == 1 && m == 5) {
            std::printf("[rank 1] stage 1 %s at micro-batch 5\n", mode == "die" ? "dies" : "throws");
            std::fflush(stdout);
            if (mode == "die") std::_Exit(3);
            throw std::runtime_error("injected stage failure");
        }
        return inner.forward(m, std::move(in));
    }
    buffer_type backward(int m, buffer_type g) { return inner.backward(m, std::move(g)); }
    void step() { inner.step(); }
};
static_assert(paci::stage<faulty_stage>);

[[noreturn]] void fail_mid_run(const std::string& mode) {
    comm_type comm(MPI_COMM_WORLD);
    faulty_stage stage{mlp_stage(paci_test::mlp_config_for(g_size, 2), g_rank), mode};
    paci::executor exec(paci::one_f_one_b<>{.stages = g_size, .microbatches = 2}, std::vector<faulty_stage*>{&stage},
                        comm, paci::executor_options{.timeout = std::chrono::seconds(20)});
    exec.run(16);
    std::printf("[rank %d] the run finished although stage 1 failed\n", g_rank);
    std::exit(0);
}

} // namespace

int main(int argc, char** argv) {
    paci::mpi_session session(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    static_assert(std::is_trivially_copyable_v<paci::trace_event>);
    if (g_rank == 0) std::printf("[rank 0] pipeline numerics over MPI, %d processes = %d stages\n", g_size, g_size);
    const int P = g_size;
    if (argc > 1) fail_mid_run(argv[1]); // "throw" or "die"

    run("1F1B-flush equals the sequential reference", [&] {
        check_matches_reference(paci::one_f_one_b<>{.stages = P, .microbatches = 4}, 16);
    });
    run("1F1B-flush, 2 micro-batches per update, two runs", [&] {
        check_matches_reference(paci::one_f_one_b<>{.stages = P, .microbatches = 2}, 6, 2);
    });
    run("GPipe equals the sequential reference", [&] {
        check_matches_reference(paci::gpipe<>{.stages = P, .microbatches = 4}, 16);
    });
    run("PACI, a = 1", [] { check_paci(1, 32); });
    run("PACI, a = 2", [] { check_paci(2, 128); });
    run("PACI, a = 4", [] { check_paci(4, 128); });

    int failures = 0;
    MPI_Allreduce(&g_failures, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (g_rank == 0) std::printf("[rank 0] %s: %d failed check(s)\n", failures ? "FAILED" : "passed", failures);
    return failures ? 1 : 0;
}
