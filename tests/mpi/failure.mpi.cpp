// A job in which one process fails mid-exchange; run by cmake/paciRunMpi.cmake, which requires the
// job to end with a non-zero exit status, quickly, instead of hanging.
//
//   paci_mpi_failure exit     the last rank calls std::_Exit(3) at iteration 10 of a ring exchange
//   paci_mpi_failure sigkill  the last rank raises SIGKILL on itself there
//   paci_mpi_failure abort    rank 1 calls mpi_communicator::abort("injected failure") there
//
// The survivors keep exchanging with a 20 s timeout; if the launcher did not end them, their
// timeout_error ends the job through abort (MPI_Abort).
#include <paci/mpi/communicator.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>
#include <vector>

int main(int argc, char** argv) {
    paci::mpi_session session(&argc, &argv);
    paci::mpi_communicator<std::vector<float>> comm(MPI_COMM_WORLD);
    const std::string_view mode = argc > 1 ? argv[1] : "exit";
    const int rank = comm.rank(), size = comm.size();
    const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
    const int victim = mode == "abort" ? 1 % size : size - 1;
    constexpr auto timeout = std::chrono::seconds(20);
    try {
        for (int i = 0; i < 1000; ++i) {
            if (rank == victim && i == 10) {
                std::printf("[failure] rank %d dies at iteration %d (%.*s)\n", rank, i, static_cast<int>(mode.size()),
                            mode.data());
                std::fflush(stdout);
                if (mode == "sigkill") std::raise(SIGKILL);
                if (mode == "abort") comm.abort("injected failure");
                std::_Exit(3);
            }
            auto r = comm.irecv(prev, 0);
            auto s = comm.isend(next, 0, std::vector<float>(16384, static_cast<float>(i)));
            const auto got = r.wait(timeout);
            s.wait(timeout);
            if (got.size() != 16384 || got[0] != static_cast<float>(i)) comm.abort("wrong data");
        }
    } catch (const std::exception& e) {
        comm.abort(e.what());
    }
    std::printf("[failure] rank %d finished the exchange: the victim did not stop it\n", rank);
    return 0;
}
