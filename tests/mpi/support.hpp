#pragma once
// What the MPI test programs share: their failure count and the check-and-report helpers. Each
// program sets `g_rank` in its main, counts with `check`, and groups checks with `run`.

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>

namespace paci_test {

inline int g_rank = 0;
inline int g_failures = 0;

/// Counts and prints a failed check: "[rank r] FAIL <name>: <what>".
inline void check(bool ok, const std::string& name, const std::string& what) {
    if (ok) return;
    ++g_failures;
    std::printf("[rank %d] FAIL %s: %s\n", g_rank, name.c_str(), what.c_str());
    std::fflush(stdout);
}

/// Runs one named check on every rank; an exception it lets out is a failure. Rank 0 reports it.
template <class F>
void run(const char* name, F&& body) {
    const int before = g_failures;
    const auto t0 = std::chrono::steady_clock::now();
    try {
        body();
    } catch (const std::exception& e) {
        check(false, name, std::string("unexpected exception: ") + e.what());
    }
    // Keep the checks in step across ranks, so one check's traffic never meets another's.
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0)
        std::printf("[rank 0] %s %s (%.3f s)\n", g_failures == before ? "ok  " : "FAIL", name,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

} // namespace paci_test
