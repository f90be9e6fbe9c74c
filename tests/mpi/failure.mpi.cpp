// Jobs in which one process fails. Two kinds (tests/mpi/CMakeLists.txt):
//
// Failures every rank catches; the job must end normally (exit status 0, no MPI_Abort), every rank
// having checked what it caught ("[rank r] FAIL <check>: <what>" otherwise):
//   paci_mpi_failure abort         rank 1 calls mpi_communicator::abort("injected failure") in the
//                                  middle of a ring exchange of 64 KiB messages (sends that nobody
//                                  will receive stay pending); every other rank's wait throws
//                                  aborted_error naming rank 1 and carrying the text, and so do
//                                  rank 1's own later waits and agree()
//   paci_mpi_failure stage_throws  an executor's stage throws: stage 1's forward of micro-batch 5
//                                  (1F1B-flush), then the last stage's backward of micro-batch 6
//                                  (PACI); the failing rank's caller gets pipeline_error naming its
//                                  rank, stage and micro-batch, every other rank's gets
//                                  aborted_error whose message names the same rank, stage and
//                                  micro-batch ("rank R failed at <action>: <what>")
//   paci_mpi_failure stage_hangs   stage 1's forward of micro-batch 5 takes 3 s, the executors'
//                                  timeout is 1 s: some rank times out (timeout_error) and aborts,
//                                  every other rank, stage 1's included once its forward returns,
//                                  gets aborted_error carrying that rank's "failed at" and timeout
// Except where a timeout is the point, the ranks wait with a 20 s timeout, so a notice that never
// arrives is a timeout_error, which fails the check: an aborted_error is the proof that it arrived
// within the timeout.
//
// Jobs that must end with a non-zero exit status, quickly, instead of hanging (run by
// cmake/paciRunMpi.cmake):
//   paci_mpi_failure exit          the last rank calls std::_Exit(3) at iteration 10 of the ring
//   paci_mpi_failure sigkill       the last rank raises SIGKILL on itself there
//   paci_mpi_failure terminate     rank 1 calls mpi_communicator::terminate("injected failure")
//   paci_mpi_failure kill_job      stage 1 throws in an executor run with kill_job_on_failure (the
//                                  executor calls terminate; where the executor has no such option,
//                                  the program says so and exits 2)
// In those, survivors whose wait fails call terminate, so the job ends either way.
#include <paci/mpi/communicator.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/runtime/executor.hpp>

#include "mpi/support.hpp"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using paci_test::check;
using paci_test::g_failures;
using paci_test::g_rank;
using comm_type = paci::mpi_communicator<std::vector<float>>;
constexpr auto timeout = std::chrono::seconds(20);

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

/// A fresh duplicate of MPI_COMM_WORLD per job section: messages an aborted section left in flight
/// (sends to a rank that stopped receiving) stay on its communicator and never meet the next one's.
struct fresh_comm {
    MPI_Comm comm = MPI_COMM_NULL;
    fresh_comm() { MPI_Comm_dup(MPI_COMM_WORLD, &comm); }
    fresh_comm(const fresh_comm&) = delete;
    fresh_comm& operator=(const fresh_comm&) = delete;
    ~fresh_comm() { MPI_Comm_free(&comm); }
};

/// A ring exchange of 64 KiB messages (larger than the shared-memory eager limit, so a send to a
/// rank that stopped receiving stays pending); `victim` calls `fail()` at iteration 10.
template <class Fail>
void ring(comm_type& comm, int victim, Fail fail) {
    const int rank = comm.rank(), size = comm.size();
    const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
    for (int i = 0; i < 1000; ++i) {
        if (rank == victim && i == 10) {
            fail(i);
            return;
        }
        auto r = comm.irecv(prev, 0);
        auto s = comm.isend(next, 0, std::vector<float>(16384, static_cast<float>(i)));
        const auto got = r.wait(timeout);
        s.wait(timeout);
        if (got.size() != 16384 || got[0] != static_cast<float>(i))
            throw std::runtime_error("wrong data at iteration " + std::to_string(i));
    }
    throw std::runtime_error("the ring finished: the victim did not stop it");
}

/// Rank 1 aborts mid-exchange; everyone catches, checks and returns.
void abort_caught() {
    const char* name = "abort";
    fresh_comm world;
    comm_type comm(world.comm);
    const int victim = 1 % comm.size();
    try {
        ring(comm, victim, [&](int) { comm.abort("injected failure"); });
        if (g_rank != victim) check(false, name, "the ring ended without an exception");
    } catch (const paci::aborted_error& e) {
        check(g_rank != victim, name, std::string("the aborting rank's ring threw: ") + e.what());
        check(contains(e.what(), "rank " + std::to_string(victim) + " aborted the job: injected failure"), name,
              std::string("aborted_error does not name rank ") + std::to_string(victim) + " and the text: " + e.what());
    } catch (const std::exception& e) {
        check(false, name, std::string("expected aborted_error, got: ") + e.what());
    }
    check(comm.aborted(), name, "aborted() is false after the abort");
    // Every later wait, on every rank (the aborting one included), throws aborted_error at once.
    const int next = (g_rank + 1) % comm.size();
    try {
        auto r = comm.irecv(next, 7);
        static_cast<void>(r.wait(timeout));
        check(false, name, "a wait after the abort returned");
    } catch (const paci::aborted_error& e) {
        const std::string expect = g_rank == victim ? "this rank aborted the job: injected failure"
                                                    : "rank " + std::to_string(victim) + " aborted the job";
        check(contains(e.what(), expect), name, "a wait after the abort: " + std::string(e.what()));
    } catch (const std::exception& e) {
        check(false, name, std::string("a wait after the abort: expected aborted_error, got: ") + e.what());
    }
    try {
        comm.agree(1, timeout);
        check(false, name, "agree after the abort returned");
    } catch (const paci::aborted_error& e) {
        check(contains(e.what(), "the start-up agreement"), name, std::string("agree after the abort: ") + e.what());
    } catch (const std::exception& e) {
        check(false, name, std::string("agree after the abort: expected aborted_error, got: ") + e.what());
    }
} // the communicator, with sends still pending to or from rank 1, is destroyed before MPI_Finalize

/// A stage that passes 16384 floats (64 KiB: sent by rendezvous, so a send to a rank that stopped
/// receiving stays pending) along and throws at one (op, micro-batch) on one rank, or there
/// takes `hang` longer.
struct faulty_stage {
    using buffer_type = std::vector<float>;
    int stage = 0, fail_stage = -1, fail_microbatch = -1;
    bool fail_backward = false;
    std::chrono::milliseconds hang{0};
    buffer_type forward(int m, buffer_type in) {
        if (!fail_backward && stage == fail_stage && m == fail_microbatch) {
            if (hang.count() == 0) throw std::runtime_error("injected stage failure");
            std::this_thread::sleep_for(hang);
        }
        if (in.empty()) in.assign(16384, static_cast<float>(m));
        return in;
    }
    buffer_type backward(int m, buffer_type g) {
        if (fail_backward && stage == fail_stage && m == fail_microbatch)
            throw std::runtime_error("injected stage failure");
        if (g.empty()) g.assign(16384, static_cast<float>(m));
        return g;
    }
    void step() {}
};
static_assert(paci::stage<faulty_stage>);

template <class Policy>
void run_and_drain(Policy policy, faulty_stage& stage, comm_type& comm, int n, paci::executor_options options) {
    paci::executor exec(policy, std::vector<faulty_stage*>{&stage}, comm, options);
    exec.run(n);
    if constexpr (requires { exec.drain(); }) exec.drain();
}

/// One executor run in which `fail_stage` throws at `fail_microbatch`; every rank checks what it caught.
template <class Policy>
void stage_failure(const char* name, const Policy& policy, int n, int fail_stage, int fail_microbatch, bool backward) {
    fresh_comm world;
    comm_type comm(world.comm);
    faulty_stage stage{comm.rank(), fail_stage, fail_microbatch, backward};
    const std::string where = "rank " + std::to_string(fail_stage) + " failed at " + std::to_string(fail_stage) +
                              (backward ? "B" : "F") + std::to_string(fail_microbatch);
    try {
        paci::executor_options options;
        options.timeout = timeout;
        run_and_drain(policy, stage, comm, n, options);
        check(false, name, "the run returned although stage " + std::to_string(fail_stage) + " failed");
    } catch (const paci::pipeline_error& e) {
        check(g_rank == fail_stage, name, std::string("pipeline_error on a rank whose stage did not fail: ") + e.what());
        check(e.rank() == fail_stage && e.stage() == fail_stage && e.microbatch() == fail_microbatch, name,
              "pipeline_error names rank " + std::to_string(e.rank()) + ", stage " + std::to_string(e.stage()) +
                  ", micro-batch " + std::to_string(e.microbatch()) + ": " + e.what());
        check(contains(e.what(), "injected stage failure"), name, std::string("pipeline_error lacks the stage's message: ") + e.what());
    } catch (const paci::aborted_error& e) {
        if (g_rank == 0) std::printf("[rank 0] caught %s\n", e.what());
        check(g_rank != fail_stage, name, std::string("aborted_error on the failing rank: ") + e.what());
        check(contains(e.what(), where + ": injected stage failure"), name,
              "aborted_error does not contain '" + where + ": injected stage failure': " + e.what());
    } catch (const std::exception& e) {
        check(false, name, std::string("expected pipeline_error or aborted_error, got: ") + e.what());
    }
}

/// Stage 1 throws in a run with `kill_job_on_failure` (a template, so that an executor without the
/// option still compiles this file).
template <class Options>
void kill_job(Options options, comm_type& comm) {
    if constexpr (requires { options.kill_job_on_failure = true; }) {
        options.kill_job_on_failure = true;
        faulty_stage stage{comm.rank(), 1, 5, false};
        run_and_drain(paci::one_f_one_b<>{.stages = comm.size(), .microbatches = 2}, stage, comm, 16, options);
    } else {
        std::printf("[failure] this executor has no kill_job_on_failure option\n");
        std::exit(2);
    }
}

/// Stage 1's forward of micro-batch 5 takes 3 s against a 1 s timeout.
void stage_hangs() {
    const char* name = "stage_hangs";
    fresh_comm world;
    comm_type comm(world.comm);
    faulty_stage stage{comm.rank(), 1, 5, false, std::chrono::milliseconds(3000)};
    paci::executor_options options;
    options.timeout = std::chrono::seconds(1);
    int timed_out = 0;
    try {
        run_and_drain(paci::one_f_one_b<>{.stages = comm.size(), .microbatches = 2}, stage, comm, 16, options);
        check(false, name, "the run returned although stage 1 took longer than the timeout");
    } catch (const paci::timeout_error& e) {
        timed_out = 1;
        if (g_rank == 0) std::printf("[rank 0] caught %s\n", e.what());
        check(g_rank != 1, name, std::string("the slow stage's own rank timed out: ") + e.what());
    } catch (const paci::aborted_error& e) {
        if (g_rank == 0) std::printf("[rank 0] caught %s\n", e.what());
        check(contains(e.what(), "aborted the job: rank ") && contains(e.what(), "paci::timeout_error"), name,
              std::string("aborted_error does not carry the timed-out rank's report: ") + e.what());
    } catch (const std::exception& e) {
        check(false, name, std::string("expected timeout_error or aborted_error, got: ") + e.what());
    }
    int any = 0;
    MPI_Allreduce(&timed_out, &any, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    check(any >= 1, name, "no rank timed out");
}

[[noreturn]] void must_end(std::string_view mode) {
    fresh_comm world;
    comm_type comm(world.comm);
    try {
        if (mode == "kill_job") {
            paci::executor_options options;
            options.timeout = timeout;
            kill_job(options, comm);
        } else {
            const int victim = mode == "terminate" ? 1 % comm.size() : comm.size() - 1;
            ring(comm, victim, [&](int i) {
                std::printf("[failure] rank %d dies at iteration %d (%.*s)\n", comm.rank(), i,
                            static_cast<int>(mode.size()), mode.data());
                std::fflush(stdout);
                if (mode == "sigkill") std::raise(SIGKILL);
                if (mode == "terminate") comm.terminate("injected failure");
                std::_Exit(3);
            });
        }
    } catch (const std::exception& e) {
        comm.terminate(e.what());
    }
    std::printf("[failure] rank %d finished: the failure did not end the job\n", comm.rank());
    std::exit(0);
}

} // namespace

int main(int argc, char** argv) {
    paci::mpi_session session(&argc, &argv);
    int size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const std::string_view mode = argc > 1 ? argv[1] : "abort";
    if (mode == "abort") {
        paci_test::run("abort: every rank catches aborted_error", abort_caught);
    } else if (mode == "stage_throws") {
        paci_test::run("1F1B-flush, stage 1 throws at its forward of micro-batch 5", [&] {
            stage_failure("1F1B-flush, 1F5 throws", paci::one_f_one_b<>{.stages = size, .microbatches = 2}, 16, 1, 5,
                          false);
        });
        paci_test::run("PACI, the last stage throws at its backward of micro-batch 6", [&] {
            stage_failure("PACI, last stage's B6 throws", paci::paci_policy<>{.stages = size, .microbatches = 2}, 16,
                          size - 1, 6, true);
        });
    } else if (mode == "stage_hangs") {
        paci_test::run("1F1B-flush, stage 1's forward of micro-batch 5 outlasts the timeout", stage_hangs);
    } else {
        must_end(mode);
    }
    int failures = 0;
    MPI_Allreduce(&g_failures, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (g_rank == 0) std::printf("[rank 0] %s: %d failed check(s)\n", failures ? "FAILED" : "passed", failures);
    return failures ? 1 : 0;
}
