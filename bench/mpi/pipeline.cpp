// PACI and 1F1B-flush over MPI, one process per stage, measured against paci::simulate.
//
//   mpiexec -n P paci_mpi_pipeline_bench [updates=8] [repetitions=15] [a ...] [default|old|sleep ...]
//
// Every stage spins (does not sleep) 200 us per forward and 400 us per backward and passes 1024
// floats along. For each accumulation a (default 2 4 8 16), each wait rhythm (default: all three)
// and each policy, one executor runs `updates` updates as a training loop (`run(a)` per update) and drains,
// `repetitions` times, the policies alternating so that both see the same machine state. The
// report gives the fastest and the median wall time (rank 0, from a barrier before the run to a
// barrier after it; on a shared machine other processes only ever add time, so the fastest is the
// estimate and the median shows the noise) against the simulator's makespan for the same schedule
// and costs, with the transport's one-way latency (measured by ping-pong in the same run) as the
// per-hop latency, and the PACI / 1F1B-flush throughput ratio, measured and simulated.
//
// Wait rhythms (mpi_options): "default" (poll 100 ms, then sleep up to 20 us); "old" (the previous
// defaults: poll 5 ms, then sleep doubling from 20 us to 500 us), which differs from "default" only
// after waits longer than 5 ms (bubbles of 8 or more stages of these costs); and "sleep" (the old
// sleeps from the first test), which shows what the old rhythm did to every wait after such a
// bubble.
//
// First, for each rhythm, the wake-up latency itself: rank 0 spins for a bubble (0.5 ms, then
// 10 ms: longer than the old 5 ms of polling), stamps the time and sends 1024 floats to rank 1,
// which is waiting; rank 1 takes the time its wait returned (steady_clock is the same clock in
// every process of one machine). Median and 90th percentile over 100 messages per bubble.
//
// Message size matters on the critical path of a flushed schedule: with Open MPI's shared-memory
// transport and no single-copy mechanism (containers), a message above the eager limit (4096 bytes
// with its header, so 1024 floats is above) is sent by rendezvous and completes only as the
// sender, busy in its next stage call, comes back into MPI. On a quiet 2-core machine (P = 2),
// 1F1B-flush measured 7-12% above its simulation with 1024 floats, and within 0.6% with
// `--mca btl_vader_eager_limit 8192` or 256-float messages (PACI within 0.5% too).
//
// Its own main: Google Benchmark does not fit a program run by mpiexec.
#include <paci/mpi/communicator.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/runtime/executor.hpp>
#include <paci/sim/simulate.hpp>

#include "support/busy_stage.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using buffer = std::vector<float>;
constexpr std::size_t buffer_floats = 1024;
constexpr auto forward_time = paci_bench::busy_stage<buffer_floats>::forward_time;
constexpr auto backward_time = paci_bench::busy_stage<buffer_floats>::backward_time;
constexpr auto patience = std::chrono::seconds(60);

using busy_stage = paci_bench::busy_stage<buffer_floats>;

double seconds_since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

double fastest(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

/// One-way latency of a `buffer_floats` message between ranks 0 and 1, in us (half a round trip).
double hop_latency_us(const paci::mpi_options& options) {
    paci::mpi_communicator<buffer> comm(MPI_COMM_WORLD, options);
    constexpr int rounds = 500;
    buffer b(buffer_floats, 1.0f);
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = clock_type::now();
    if (comm.rank() < 2 && comm.size() >= 2) {
        const int peer = 1 - comm.rank();
        for (int k = 0; k < rounds; ++k) {
            if (comm.rank() == 0) {
                comm.isend(peer, 0, std::move(b)).wait(patience);
                b = comm.irecv(peer, 0).wait(patience);
            } else {
                b = comm.irecv(peer, 0).wait(patience);
                comm.isend(peer, 0, std::move(b)).wait(patience);
            }
        }
    }
    double us = seconds_since(t0) / (2.0 * rounds) * 1e6;
    MPI_Bcast(&us, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    return us;
}

/// Wake-up latency after `bubble`: from rank 0's send to rank 1's wait returning, in us (on rank 0:
/// median and 90th percentile).
std::pair<double, double> wake_up_us(const paci::mpi_options& options, std::chrono::microseconds bubble) {
    paci::mpi_communicator<std::vector<std::int64_t>> comm(MPI_COMM_WORLD, options);
    constexpr int samples = 100;
    std::vector<double> us;
    MPI_Barrier(MPI_COMM_WORLD);
    if (comm.rank() == 0) {
        for (int k = 0; k < samples; ++k) {
            busy_stage::spin(bubble);
            std::vector<std::int64_t> b(buffer_floats / 2, 0);
            b[0] = clock_type::now().time_since_epoch().count();
            comm.isend(1, 0, std::move(b)).wait(patience);
            static_cast<void>(comm.irecv(1, 1).wait(patience)); // rank 1 is waiting again
        }
    } else if (comm.rank() == 1) {
        for (int k = 0; k < samples; ++k) {
            auto r = comm.irecv(0, 0);
            auto ack = comm.isend(0, 1, {});
            const auto b = r.wait(patience);
            const auto now = clock_type::now().time_since_epoch().count();
            us.push_back(static_cast<double>(now - b[0]) / 1e3);
            ack.wait(patience);
        }
    }
    double out[2] = {0, 0};
    if (comm.rank() == 1) {
        std::sort(us.begin(), us.end());
        out[0] = us[us.size() / 2];
        out[1] = us[us.size() * 9 / 10];
    }
    MPI_Bcast(out, 2, MPI_DOUBLE, 1, MPI_COMM_WORLD);
    return {out[0], out[1]};
}

/// The executor of one policy on this rank, reused across repetitions.
template <class Policy>
struct runner {
    busy_stage stage;
    paci::mpi_communicator<buffer> comm;
    paci::executor<Policy, busy_stage, paci::mpi_communicator<buffer>> exec;
    runner(const Policy& policy, const paci::mpi_options& options)
        : comm(MPI_COMM_WORLD, options), exec(policy, std::vector<busy_stage*>{&stage}, comm, executor_options()) {}
    static paci::executor_options executor_options() {
        paci::executor_options o;
        o.timeout = patience;
        o.record = false;
        return o;
    }
    /// Seconds for `updates` updates of `a` micro-batches as a training loop runs them (`run(a)` per
    /// update, one drain), from a barrier to a barrier.
    double time(int a, int updates) {
        MPI_Barrier(MPI_COMM_WORLD);
        const auto t0 = clock_type::now();
        for (int u = 0; u < updates; ++u) exec.run(a);
        exec.drain();
        MPI_Barrier(MPI_COMM_WORLD);
        double s = seconds_since(t0);
        MPI_Bcast(&s, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        return s;
    }
};

template <class Policy>
double simulated_us(Policy policy, int updates, double latency_us) {
    policy.steps = updates;
    paci::cost_model costs;
    costs.uniform = paci::stage_costs{.f = 200, .b = 400, .i = 0, .w = 0, .r = 0, .step = 0};
    costs.latency = latency_us;
    return paci::simulate(policy.generate(), costs).makespan;
}

struct rhythm {
    const char* name;
    paci::mpi_options options;
};

} // namespace

int main(int argc, char** argv) {
    paci::mpi_session session(&argc, &argv);
    int rank = 0, P = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    const int updates = argc > 1 ? std::atoi(argv[1]) : 8;
    const int reps = argc > 2 ? std::atoi(argv[2]) : 15;
    std::vector<int> as;
    std::vector<std::string> names;
    for (int k = 3; k < argc; ++k) {
        if (argv[k][0] >= '0' && argv[k][0] <= '9') as.push_back(std::atoi(argv[k]));
        else names.emplace_back(argv[k]);
    }
    if (as.empty()) as = {2, 4, 8, 16};
    if (P < 2 || updates < 1 || reps < 1) {
        if (rank == 0) std::fprintf(stderr, "usage: mpiexec -n P (>= 2) paci_mpi_pipeline_bench [updates] [reps] [a ...]\n");
        return 2;
    }

    std::vector<rhythm> rhythms = {{"default", {}}, {"old", {}}, {"sleep", {}}};
    rhythms[1].options.busy = std::chrono::milliseconds(5);
    rhythms[1].options.min_sleep = std::chrono::microseconds(20);
    rhythms[1].options.max_sleep = std::chrono::microseconds(500);
    rhythms[2].options = rhythms[1].options;
    rhythms[2].options.busy = std::chrono::nanoseconds::zero();
    if (!names.empty())
        std::erase_if(rhythms, [&](const rhythm& r) { return std::find(names.begin(), names.end(), r.name) == names.end(); });

    if (rank == 0) std::printf("wake-up latency of a wait after a bubble, us: median (90th percentile)\n");
    for (const rhythm& r : rhythms) {
        const auto short_bubble = wake_up_us(r.options, std::chrono::microseconds(500));
        const auto long_bubble = wake_up_us(r.options, std::chrono::microseconds(10000));
        if (rank == 0)
            std::printf("  waits \"%s\": after 0.5 ms %.1f (%.1f), after 10 ms %.1f (%.1f)\n", r.name,
                        short_bubble.first, short_bubble.second, long_bubble.first, long_bubble.second);
    }
    if (rank == 0)
        std::printf("\n%d processes = %d stages, F 200 us, B 400 us, %d updates per run, %d runs\n", P, P, updates,
                    reps);
    for (const rhythm& r : rhythms) {
        const double latency = hop_latency_us(r.options);
        if (rank == 0)
            std::printf("\nwaits \"%s\": one-way latency %.1f us; times in ms, fastest (median)\n"
                        "%4s %18s %9s %7s %18s %9s %7s %11s %9s\n",
                        r.name, latency, "a", "1F1B-flush", "sim", "ratio", "PACI", "sim", "ratio", "PACI/flush",
                        "sim");
        for (const int a : as) {
            const paci::one_f_one_b<> flush{.stages = P, .microbatches = a};
            const paci::paci_policy<> paci{.stages = P, .microbatches = a};
            runner<paci::one_f_one_b<>> f(flush, r.options);
            runner<paci::paci_policy<>> p(paci, r.options);
            f.time(a, 1); // warm-up: the start-up agreement, first allocations
            p.time(a, 1);
            std::vector<double> tf, tp;
            for (int k = 0; k < reps; ++k) {
                tf.push_back(f.time(a, updates));
                tp.push_back(p.time(a, updates));
            }
            const double mf = fastest(tf) * 1e3, mp = fastest(tp) * 1e3;
            const double df = median(tf) * 1e3, dp = median(tp) * 1e3;
            const double sf = simulated_us(flush, updates, latency) / 1e3, sp = simulated_us(paci, updates, latency) / 1e3;
            if (rank == 0)
                std::printf("%4d %8.2f (%7.2f) %9.2f %7.3f %8.2f (%7.2f) %9.2f %7.3f %11.3f %9.3f\n", a, mf, df, sf,
                            mf / sf, mp, dp, sp, mp / sp, mf / mp, sf / sp);
        }
    }
    return 0;
}
