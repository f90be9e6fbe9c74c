#include <paci/mpi/communicator.hpp>

#include <chrono>
#include <vector>

// A single process (MPI singleton): a message to itself over MPI_COMM_SELF.
int main(int argc, char** argv) {
    paci::mpi_session mpi(&argc, &argv);
    paci::mpi_communicator<std::vector<int>> comm(MPI_COMM_SELF);
    auto r = comm.irecv(0, 1);
    auto s = comm.isend(0, 1, std::vector<int>{1, 2, 3});
    const std::vector<int> got = r.wait(std::chrono::seconds(10));
    s.wait(std::chrono::seconds(10));
    return got == std::vector<int>{1, 2, 3} ? 0 : 1;
}
