// Ping-pong bandwidth of paci::mpi_communicator against raw MPI_Send/MPI_Recv, in the same run.
//
//   mpiexec -n 2 paci_mpi_bandwidth [bytes=1048576] [round-trips per repetition=200] [repetitions=11]
//
// Rank 0 sends a message to rank 1, which sends it back; bandwidth counts the bytes of both
// directions over the repetition's wall time. Each repetition runs the variants back to back (raw
// MPI; mpi_communicator with probed receives, the default; with fixed-size receives; and probed
// without buffer recycling, which allocates and zero-fills every received buffer) after a warm-up,
// so they see the same machine state; the report gives each variant's median and its ratio to raw
// MPI. Its own main: Google Benchmark does not fit a program started by mpiexec.
#include <paci/mpi/communicator.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using element = float;
using buffer = std::vector<element>;
constexpr auto patience = std::chrono::seconds(60);

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Raw MPI: blocking send and receive into preallocated buffers.
double raw_pingpong(int rank, std::size_t n, int trips) {
    buffer out(n, 1.0f), in(n);
    const int bytes = static_cast<int>(n * sizeof(element));
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < trips; ++i) {
        if (rank == 0) {
            MPI_Send(out.data(), bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
            MPI_Recv(in.data(), bytes, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(in.data(), bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(in.data(), bytes, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
        }
    }
    return seconds_since(t0);
}

// mpi_communicator: the buffer travels by move; what arrives is sent back.
double paci_pingpong(paci::mpi_communicator<buffer>& comm, std::size_t n, int trips) {
    buffer b(n, 1.0f);
    const int peer = 1 - comm.rank();
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < trips; ++i) {
        if (comm.rank() == 0) {
            auto s = comm.isend(peer, 0, std::move(b));
            auto r = comm.irecv(peer, 0);
            s.wait(patience);
            b = r.wait(patience);
        } else {
            b = comm.irecv(peer, 0).wait(patience);
            comm.isend(peer, 0, std::move(b)).wait(patience);
        }
    }
    return seconds_since(t0);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

} // namespace

int main(int argc, char** argv) {
    paci::mpi_session session(&argc, &argv);
    int rank = 0, size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 2) {
        if (rank == 0) std::fprintf(stderr, "paci_mpi_bandwidth: run with exactly 2 processes (got %d)\n", size);
        return 2;
    }
    const std::size_t bytes = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : (1U << 20);
    const int trips = argc > 2 ? std::atoi(argv[2]) : 200;
    const int reps = argc > 3 ? std::atoi(argv[3]) : 11;
    const std::size_t n = bytes / sizeof(element);

    paci::mpi_communicator<buffer> probed(MPI_COMM_WORLD);
    paci::mpi_communicator<buffer> fixed(MPI_COMM_WORLD, [n](int, int) { return n; });
    paci::mpi_communicator<buffer> fresh(MPI_COMM_WORLD, paci::mpi_options{.recycled_buffers = 0});

    // Warm-up: connections, registration caches, page faults, the allocator's free lists.
    raw_pingpong(rank, n, trips / 4 + 1);
    paci_pingpong(probed, n, trips / 4 + 1);
    paci_pingpong(fixed, n, trips / 4 + 1);
    paci_pingpong(fresh, n, trips / 4 + 1);

    std::vector<double> raw, pro, fix, fre;
    const double moved = 2.0 * static_cast<double>(n * sizeof(element)) * trips; // both directions
    for (int r = 0; r < reps; ++r) {
        raw.push_back(moved / raw_pingpong(rank, n, trips));
        pro.push_back(moved / paci_pingpong(probed, n, trips));
        fix.push_back(moved / paci_pingpong(fixed, n, trips));
        fre.push_back(moved / paci_pingpong(fresh, n, trips));
    }
    if (rank == 0) {
        const double gib = 1024.0 * 1024.0 * 1024.0;
        const double m_raw = median(raw), m_pro = median(pro), m_fix = median(fix), m_fre = median(fre);
        std::printf("ping-pong, %zu-byte messages, %d round trips x %d repetitions (median)\n",
                    n * sizeof(element), trips, reps);
        std::printf("  raw MPI_Send/MPI_Recv                 %8.3f GiB/s\n", m_raw / gib);
        std::printf("  mpi_communicator (probed receives)    %8.3f GiB/s   ratio %.3f\n", m_pro / gib, m_pro / m_raw);
        std::printf("  mpi_communicator (fixed-size receives)%8.3f GiB/s   ratio %.3f\n", m_fix / gib, m_fix / m_raw);
        std::printf("  mpi_communicator (probed, no recycling)%7.3f GiB/s   ratio %.3f\n", m_fre / gib, m_fre / m_raw);
        std::printf("  target: ratio >= 0.9 -> %s\n", m_pro / m_raw >= 0.9 ? "met" : "NOT met");
    }
    return 0;
}
