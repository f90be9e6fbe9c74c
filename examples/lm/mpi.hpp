#pragma once
/// \file
/// paci-lm --mpi: measured wall-clock of PACI against 1F1B-flush, one MPI process per stage.
///
///   mpirun -np P paci-lm --mpi --out FILE [--a 2] [--microbatch 32] [--samples N] [--evals K]
///                        [--target LOSS] [--data FILE]
///
/// Each process holds its stage of two models with the same seed, one trained with 1F1B-flush and
/// one with PACI at the same a, each through its own paci::executor over paci::mpi_communicator. The
/// runs alternate segment by segment (so both see the same machine), a segment being the updates
/// between two held-out evaluations: `run(a)` per update, `drain()` at the segment's end. Each
/// segment is timed from a barrier to a barrier on rank 0; evaluations are not timed. Afterwards
/// the recorded traces give per-stage costs (mean F, B and STEP) and the simulator's prediction of
/// the same segments (paci::simulate, with the one-way latency measured by ping-pong as the per-hop
/// cost), printed beside the measured ratio. The records go to --out for paci-lm's report.

#include "cli.hpp"
#include "model.hpp"
#include "report.hpp"
#include "train.hpp"

#include <paci/mpi/communicator.hpp>
#include <paci/runtime/executor.hpp>

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace paci_lm::mpi_job {

using clock_type = std::chrono::steady_clock;
using buffer = std::vector<float>;
using comm_type = paci::mpi_communicator<buffer>;

/// The 1-minute load average (other processes competing for the cores), or -1.
inline double load_average() {
    std::ifstream f("/proc/loadavg");
    double l = -1;
    f >> l;
    return l;
}

/// CPU seconds this process has used (user and system).
inline double cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

inline double elapsed(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

/// Held-out loss of the model whose stage `rank` holds, evaluated along the ranks (rank 0 embeds,
/// each rank applies its blocks and sends on, the last applies the head); every rank gets it.
inline double heldout_mpi(const lm_stage<float>& stage, const corpus& text, const std::vector<std::size_t>& ends, int rank, int P,
                   int hidden) {
    double sum = 0;
    constexpr std::size_t chunk = 512;
    for (std::size_t from = 0; from < ends.size(); from += chunk) {
        const std::span<const std::size_t> part(ends.data() + from, std::min(chunk, ends.size() - from));
        const int cols = static_cast<int>(part.size());
        matrix<float> h;
        if (rank == 0) h = stage.embed_windows(text.heldout, part);
        else {
            h.resize(hidden, cols);
            MPI_Recv(h.data(), hidden * cols, MPI_FLOAT, rank - 1, 7000, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        }
        h = stage.infer_layers(h);
        if (rank + 1 < P) MPI_Send(h.data(), static_cast<int>(h.size()), MPI_FLOAT, rank + 1, 7000, MPI_COMM_WORLD);
        else sum += stage.head_loss_sum(h, text.heldout, part);
    }
    double mean = sum / static_cast<double>(ends.size());
    MPI_Bcast(&mean, 1, MPI_DOUBLE, P - 1, MPI_COMM_WORLD);
    return mean;
}

/// One-way latency (s) of an activation-sized message between ranks 0 and 1 (half a round trip).
inline double hop_latency(std::size_t floats) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    std::vector<float> b(floats, 1.0f);
    constexpr int rounds = 200;
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = clock_type::now();
    for (int k = 0; k < rounds && rank < 2; ++k) {
        if (rank == 0) {
            MPI_Send(b.data(), static_cast<int>(floats), MPI_FLOAT, 1, 7100, MPI_COMM_WORLD);
            MPI_Recv(b.data(), static_cast<int>(floats), MPI_FLOAT, 1, 7100, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(b.data(), static_cast<int>(floats), MPI_FLOAT, 0, 7100, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(b.data(), static_cast<int>(floats), MPI_FLOAT, 0, 7100, MPI_COMM_WORLD);
        }
    }
    double s = elapsed(t0) / (2.0 * rounds);
    MPI_Bcast(&s, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    return s;
}

/// Every rank's trace events, on rank 0 (`[rank][k]`); empty elsewhere.
inline std::vector<std::vector<paci::trace_event>> gather_trace(const std::vector<paci::trace_event>& mine, int rank, int P) {
    std::vector<double> packed;
    for (const auto& e : mine)
        packed.insert(packed.end(), {static_cast<double>(static_cast<int>(e.act.kind)), static_cast<double>(e.act.stage),
                                     static_cast<double>(e.act.microbatch), static_cast<double>(e.version), e.start, e.end});
    int n = static_cast<int>(packed.size());
    std::vector<int> counts(static_cast<std::size_t>(P)), displs(static_cast<std::size_t>(P));
    MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
    std::vector<double> all;
    if (rank == 0) {
        int total = 0;
        for (int r = 0; r < P; ++r) displs[static_cast<std::size_t>(r)] = total, total += counts[static_cast<std::size_t>(r)];
        all.resize(static_cast<std::size_t>(total));
    }
    MPI_Gatherv(packed.data(), n, MPI_DOUBLE, all.data(), counts.data(), displs.data(), MPI_DOUBLE, 0, MPI_COMM_WORLD);
    std::vector<std::vector<paci::trace_event>> out;
    if (rank != 0) return out;
    out.resize(static_cast<std::size_t>(P));
    for (int r = 0; r < P; ++r)
        for (int k = displs[static_cast<std::size_t>(r)]; k < displs[static_cast<std::size_t>(r)] + counts[static_cast<std::size_t>(r)]; k += 6) {
            const double* x = all.data() + k;
            paci::trace_event e;
            e.act = paci::action(static_cast<paci::op>(static_cast<int>(x[0])), static_cast<std::int16_t>(x[1]), static_cast<std::int32_t>(x[2]));
            e.version = static_cast<paci::version_t>(x[3]);
            e.start = x[4];
            e.end = x[5];
            out[static_cast<std::size_t>(r)].push_back(e);
        }
    return out;
}

/// One policy's share of the job on this rank.
template <class Policy>
struct job {
    Policy policy;
    lm_stage<float> stage;
    MPI_Comm comm_handle;
    comm_type comm;
    paci::executor<Policy, lm_stage<float>, comm_type> exec;
    run_record record;
    double seconds = 0;
    std::size_t logged = 0;

    job(const Policy& p, const policy_spec& spec, const lm_task& task, int rank, int P, MPI_Comm dup)
        : policy(p), stage(task, rank, P), comm_handle(dup), comm(dup),
          exec(p, {&stage}, comm, {.timeout = std::chrono::seconds(120)}) {
        record.policy = display_name(spec);
        record.kind = spec.kind;
        record.stages = P;
        record.a = p.microbatches;
        record.batch = task.config.batch;
        record.transport = "mpi";
    }

    /// `updates` updates and a drain, from a barrier to a barrier; returns rank 0's seconds on every rank.
    double segment(int updates) {
        MPI_Barrier(MPI_COMM_WORLD);
        const auto t0 = clock_type::now();
        for (int u = 0; u < updates; ++u) exec.run(policy.microbatches);
        exec.drain();
        MPI_Barrier(MPI_COMM_WORLD);
        double s = elapsed(t0);
        MPI_Bcast(&s, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        return s;
    }

    void evaluate(std::int64_t samples, const corpus& text, const std::vector<std::size_t>& ends, int rank, int P, int hidden,
                  std::int64_t updates) {
        const double heldout = heldout_mpi(stage, text, ends, rank, P, hidden);
        double train = std::numeric_limits<double>::quiet_NaN();
        if (rank == P - 1) {
            const auto log = stage.losses();
            double sum = 0;
            for (std::size_t k = logged; k < log.size(); ++k) sum += log[k].second;
            if (log.size() > logged) train = sum / static_cast<double>(log.size() - logged);
            logged = log.size();
        }
        MPI_Bcast(&train, 1, MPI_DOUBLE, P - 1, MPI_COMM_WORLD);
        record.curve.push_back({samples, heldout, train, seconds});
        if (rank == 0 && samples > 0) print_eval(record, record.curve.back(), updates);
    }
};

/// The whole MPI job on this rank; returns its exit status.
inline int run(int argc, char** argv) {
    paci::mpi_session session(&argc, &argv);
    int rank = 0, P = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    const auto fail = [&](const std::string& m) {
        if (rank == 0) std::cerr << m << '\n';
        return 2;
    };
    std::vector<std::string> args(argv + 1, argv + argc);
    std::erase(args, std::string("--mpi"));
    const auto parsed = parse(args);
    if (const auto* e = std::get_if<usage_error>(&parsed)) return fail(e->message);
    const options o = std::get<options>(parsed);
    if (o.help) {
        if (rank == 0) std::cout << usage_text;
        return 0;
    }
    if (P < 2) return fail("paci-lm --mpi: run it with one process per stage, at least 2 (mpirun -np 2 paci-lm --mpi ...)");
    if (o.out.empty()) return fail("paci-lm --mpi: --out FILE is required (where the records for the report go)");
    auto prepared = prepare(o, {P});
    if (const auto* e = std::get_if<usage_error>(&prepared)) return fail(e->message);

    const auto text = std::make_shared<const corpus>(std::move(std::get<corpus>(prepared)));
    const lm_task task{config_of(o), text};
    const std::vector<std::size_t> ends = heldout_ends(*text, task.config.context, 4096);
    const int a = o.a;
    const policy_spec fs{"1f1b", a}, ps{"paci", a};
    MPI_Comm cf = MPI_COMM_NULL, cp = MPI_COMM_NULL;
    MPI_Comm_dup(MPI_COMM_WORLD, &cf);
    MPI_Comm_dup(MPI_COMM_WORLD, &cp);
    int status = 0;
    {
        job<paci::one_f_one_b<>> flush(paci::one_f_one_b<>{.stages = P, .microbatches = a}, fs, task, rank, P, cf);
        job<paci::paci_policy<>> pacij(paci::paci_policy<>{.stages = P, .microbatches = a}, ps, task, rank, P, cp);
        for (auto* r : {&flush.record, &pacij.record}) r->target = o.target;
        const run_plan plan = plan_of(o, a);
        const double latency = hop_latency(static_cast<std::size_t>(task.config.hidden * task.config.batch));
        if (rank == 0)
            std::printf("%d MPI processes, one stage each; 1F1B-flush and PACI at a = %d, %lld updates each in segments of %d "
                        "(alternating); one-way latency %.1f us; load average %.2f on %u cores\n",
                        P, a, static_cast<long long>(plan.updates), plan.eval_every, latency * 1e6, load_average(),
                        std::thread::hardware_concurrency());
        const int hidden = task.config.hidden;
        const double cpu0 = cpu_seconds();
        const auto wall0 = clock_type::now();
        try {
            flush.evaluate(0, *text, ends, rank, P, hidden, 0);
            pacij.evaluate(0, *text, ends, rank, P, hidden, 0);
            for (std::int64_t seg = 0; seg < plan.updates / plan.eval_every; ++seg) {
                const std::int64_t samples = (seg + 1) * plan.eval_every * a * task.config.batch;
                const std::int64_t updates = (seg + 1) * plan.eval_every;
                if (seg % 2 == 0) {
                    flush.seconds += flush.segment(plan.eval_every);
                    pacij.seconds += pacij.segment(plan.eval_every);
                } else {
                    pacij.seconds += pacij.segment(plan.eval_every);
                    flush.seconds += flush.segment(plan.eval_every);
                }
                flush.evaluate(samples, *text, ends, rank, P, hidden, updates);
                pacij.evaluate(samples, *text, ends, rank, P, hidden, updates);
            }
        } catch (const std::exception& e) {
            std::cerr << "paci-lm --mpi: rank " << rank << ": training failed: " << e.what() << '\n';
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        // This process's CPU time over the job's wall-clock: below 1 when other processes held the
        // cores (waits poll, so a rank that had its core the whole time would be at about 1).
        double share = (cpu_seconds() - cpu0) / elapsed(wall0);
        std::vector<double> shares(static_cast<std::size_t>(P));
        MPI_Gather(&share, 1, MPI_DOUBLE, shares.data(), 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        const auto tf = gather_trace(flush.exec.trace(), rank, P);
        const auto tp = gather_trace(pacij.exec.trace(), rank, P);
        if (rank == 0) {
            paci::run_trace rf{flush.policy.shape(), tf}, rp{pacij.policy.shape(), tp};
            // Mean durations: on a shared machine a stage's actions are interrupted, and the wall-clock
            // holds every interruption; the simulator spreads them over the actions that had them.
            paci::cost_model costs = costs_from({&rf.ranks, &rp.ranks}, P, summary::mean);
            costs.latency = latency;
            const double seg_f = simulated_segment(flush.policy, plan.eval_every, costs);
            const double seg_p = simulated_segment(pacij.policy, plan.eval_every, costs);
            const double segments = static_cast<double>(plan.updates / plan.eval_every);
            std::printf("per-stage costs from the traces (mean ms, F / B / STEP):");
            for (int s = 0; s < P; ++s) {
                const auto& c = costs.per_stage[static_cast<std::size_t>(s)];
                std::printf(" %.3f/%.3f/%.3f", c.f * 1e3, c.b * 1e3, c.step * 1e3);
            }
            std::printf("\n%-18s %10s %10s %10s\n", "", "measured", "simulated", "meas/sim");
            for (auto* j : {&flush.record, &pacij.record}) {
                const bool f = j == &flush.record;
                const double secs = f ? flush.seconds : pacij.seconds, sim = (f ? seg_f : seg_p) * segments;
                j->samples = plan.updates * a * task.config.batch;
                j->final_heldout = j->curve.back().heldout;
                j->samples_per_s = static_cast<double>(j->samples) / secs;
                j->predicted_ratio = seg_f / seg_p;
                j->measured_ratio = flush.seconds / pacij.seconds;
                find_target(*j);
                std::printf("%-18s %9.3fs %9.3fs %10.3f\n", j->policy.c_str(), secs, sim, secs / sim);
            }
            read_trace(flush.policy, rf, flush.record);
            read_trace(pacij.policy, rp, pacij.record);
            std::printf("1F1B-flush / PACI wall-clock: measured %.3fx, simulated %.3fx (%+.1f%%); load average now %.2f\n",
                        flush.seconds / pacij.seconds, seg_f / seg_p,
                        100 * (flush.seconds / pacij.seconds - seg_f / seg_p) / (seg_f / seg_p), load_average());
            std::printf("CPU time / wall-clock of each process during training:");
            for (const double x : shares) std::printf(" %.2f", x);
            std::printf(" (1 = it had a core all the time)\n");
            for (auto* j : {&flush.record, &pacij.record})
                std::printf("%-18s time to held-out %.2f: %s\n", j->policy.c_str(), o.target,
                            j->time_to_target ? (std::to_string(*j->time_to_target) + " s").c_str() : "not reached");
            std::ofstream out(o.out);
            out << to_line(flush.record) << '\n' << to_line(pacij.record) << '\n';
            if (!out) {
                std::cerr << "paci-lm --mpi: cannot write '" << o.out << "'\n";
                status = 1;
            }
        }
    }
    MPI_Comm_free(&cf);
    MPI_Comm_free(&cp);
    return status;
}

} // namespace paci_lm::mpi_job
