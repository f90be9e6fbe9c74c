// Tests of paci::mpi_communicator, run under mpiexec with 2 and 4 processes (tests/mpi/CMakeLists.txt).
// Its own main: every rank runs every check; a failed check prints "[rank r] FAIL <check>: <what>"
// and the exit status is non-zero if any rank failed any check. Every wait has a timeout.
#include <paci/mpi/communicator.hpp>

#include "mpi/support.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
constexpr auto patience = std::chrono::seconds(20); // waits that must succeed

using paci_test::check;
using paci_test::g_failures;
using paci_test::g_rank;
using paci_test::run;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

template <class T>
std::vector<T> pattern(std::size_t n, int from, int salt) {
    std::vector<T> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>((i * 31 + static_cast<std::size_t>(from) * 7 + static_cast<std::size_t>(salt)) % 251);
    return v;
}

int mpi_class(int code) {
    int cls = 0;
    MPI_Error_class(code, &cls);
    return cls;
}

// Every rank sends to the next and receives from the previous, for several sizes (0 and 1 MiB
// included) and element types.
template <class T>
void ring(const char* name) {
    paci::mpi_communicator<std::vector<T>> comm(MPI_COMM_WORLD);
    const int size = comm.size(), next = (g_rank + 1) % size, prev = (g_rank + size - 1) % size;
    const std::size_t sizes[] = {0, 1, 7, 1000, (1U << 20) / sizeof(T), (3U << 20) / sizeof(T) + 1};
    int salt = 0;
    for (const std::size_t n : sizes) {
        auto r = comm.irecv(prev, 3);
        auto s = comm.isend(next, 3, pattern<T>(n, g_rank, salt));
        const std::vector<T> got = r.wait(patience);
        s.wait(patience);
        check(got == pattern<T>(n, prev, salt), name,
              "ring message of " + std::to_string(n) + " elements differs (got " + std::to_string(got.size()) + ")");
        ++salt;
    }
}

// Many messages with one (peer, tag): received in send order, whatever order the requests are
// waited on (here: reversed and shuffled), with sends posted before and after the receives.
void fifo(bool fixed_size) {
    const char* name = fixed_size ? "fifo, fixed-size receives" : "fifo, probed receives";
    using comm_t = paci::mpi_communicator<std::vector<std::int32_t>>;
    comm_t comm = fixed_size ? comm_t(MPI_COMM_WORLD, [](int, int) { return std::size_t{64}; })
                             : comm_t(MPI_COMM_WORLD);
    const int size = comm.size(), next = (g_rank + 1) % size, prev = (g_rank + size - 1) % size;
    constexpr int count = 400;
    const auto message = [](int from, int i) {
        std::vector<std::int32_t> v(static_cast<std::size_t>(i % 50), from);
        v.push_back(i);
        return v;
    };
    std::deque<comm_t::send_request> sends;
    for (int i = 0; i < count / 2; ++i) sends.push_back(comm.isend(next, 5, message(g_rank, i)));
    std::vector<comm_t::recv_request> recvs;
    for (int i = 0; i < count; ++i) recvs.push_back(comm.irecv(prev, 5));
    for (int i = count / 2; i < count; ++i) sends.push_back(comm.isend(next, 5, message(g_rank, i)));

    std::vector<int> order(count);
    std::iota(order.begin(), order.end(), 0);
    std::reverse(order.begin(), order.begin() + count / 2);
    std::shuffle(order.begin() + count / 2, order.end(), std::mt19937(42U + static_cast<unsigned>(g_rank)));
    int wrong = 0;
    for (const int i : order)
        if (recvs[static_cast<std::size_t>(i)].wait(patience) != message(prev, i)) ++wrong;
    for (auto& s : sends) s.wait(patience);
    check(wrong == 0, name, std::to_string(wrong) + " of " + std::to_string(count) + " messages out of order");
}

// test() is false before the message exists and true after it has arrived (and stays true); a
// large send is not complete before the receiver takes it, and is after.
void test_before_after() {
    paci::mpi_communicator<std::vector<double>> comm(MPI_COMM_WORLD);
    paci::mpi_communicator<std::vector<char>> control(MPI_COMM_WORLD);
    const int size = comm.size(), next = (g_rank + 1) % size, prev = (g_rank + size - 1) % size;
    const char* name = "test() before and after completion";
    constexpr std::size_t big = (8U << 20) / sizeof(double); // 8 MiB: beyond any eager limit

    auto r = comm.irecv(prev, 21);
    check(!r.test(), name, "receive complete before anything was sent");
    // Tell the previous rank it may send, then wait for the message.
    auto go = control.isend(prev, 22, std::vector<char>{1});
    auto go_in = control.irecv(next, 22);
    static_cast<void>(go_in.wait(patience));
    auto s = comm.isend(next, 21, pattern<double>(big, g_rank, 1));
    // The next rank does not receive until we say so: the 8 MiB send cannot have completed.
    check(!s.test(), name, "8 MiB send complete before the receiver took it");
    auto go2 = control.isend(next, 23, std::vector<char>{1});
    static_cast<void>(control.irecv(prev, 23).wait(patience));

    const auto deadline = std::chrono::steady_clock::now() + patience;
    bool arrived = false;
    while (!(arrived = r.test()) && std::chrono::steady_clock::now() < deadline) {
        static_cast<void>(s.test()); // keep our own send moving
    }
    check(arrived, name, "receive never tested complete");
    check(r.test(), name, "test() false again after completion");
    check(r.wait(patience) == pattern<double>(big, prev, 1), name, "8 MiB message differs");
    s.wait(patience);
    check(s.test() && s.test(), name, "send test() false after wait");
    go.wait(patience);
    go2.wait(patience);
}

// A receive whose peer never sends times out, naming this rank, the peer, the tag and the action;
// so does a send nobody receives, whose buffer must stay intact after its request is gone. With
// every wait rhythm: `options` may sleep longer than the timeout, which must still hold.
void timeouts(const paci::mpi_options& options) {
    paci::mpi_communicator<std::vector<float>> comm(MPI_COMM_WORLD, options);
    const int size = comm.size(), next = (g_rank + 1) % size, prev = (g_rank + size - 1) % size;
    const char* name = "timeout_error";
    const paci::action at{paci::op::RECV_F, 1, 7};
    {
        auto r = comm.irecv(prev, 99, at);
        const auto t0 = std::chrono::steady_clock::now();
        bool thrown = false;
        try {
            static_cast<void>(r.wait(200ms));
        } catch (const paci::timeout_error& e) {
            thrown = true;
            const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            const std::string what = e.what();
            check(e.rank() == g_rank && e.peer() == prev && e.tag() == 99 && e.waited_on() == at, name,
                  "fields: " + what);
            check(contains(what, "rank " + std::to_string(g_rank)) && contains(what, "rank " + std::to_string(prev)) &&
                      contains(what, "tag 99") && contains(what, "1RECV_F7"),
                  name, "message does not name rank, peer, tag and action: " + what);
            check(waited >= 0.19 && waited < 5.0, name, "waited " + std::to_string(waited) + " s for a 0.2 s timeout");
        }
        check(thrown, name, "receive from a silent peer did not throw");
        // A zero timeout is a single test.
        thrown = false;
        try {
            static_cast<void>(r.wait(0ns));
        } catch (const paci::timeout_error&) {
            thrown = true;
        }
        check(thrown, name, "wait(0) on a silent peer did not throw");
    }
    // An 8 MiB send to a rank that only receives after our wait has timed out and our request is gone.
    {
        const std::size_t big = (8U << 20) / sizeof(float);
        bool thrown = false;
        {
            auto s = comm.isend(next, 98, pattern<float>(big, g_rank, 5), paci::action{paci::op::SEND_F, 0, 3});
            try {
                s.wait(100ms);
            } catch (const paci::timeout_error& e) {
                thrown = e.peer() == next && e.tag() == 98 && contains(e.what(), "0SEND_F3");
            }
        } // the request is destroyed with the send still pending
        check(thrown, name, "send nobody receives did not time out naming peer, tag and action");
        MPI_Barrier(MPI_COMM_WORLD);
        auto got = comm.irecv(prev, 98).wait(patience);
        check(got == pattern<float>(big, prev, 5), name, "abandoned send delivered wrong data");
        // Acknowledge to the sender; waiting for the next rank's acknowledgement drives our
        // abandoned send to completion, so the communicator has nothing left to leak at its end.
        auto ack = comm.isend(prev, 97, {});
        static_cast<void>(comm.irecv(next, 97).wait(patience));
        ack.wait(patience);
    }
}

// Wait rhythms that make no sense are config_errors, named with their value.
void bad_options() {
    const char* name = "mpi_options";
    const auto expect = [&](const paci::mpi_options& o, const std::string& message) {
        try {
            paci::mpi_communicator<std::vector<float>> comm(MPI_COMM_WORLD, o);
            check(false, name, "no config_error for " + message);
        } catch (const paci::config_error& e) {
            check(contains(e.what(), message), name, std::string("message: ") + e.what());
        }
    };
    paci::mpi_options o;
    o.busy = -1ns;
    expect(o, "paci::mpi_communicator: busy (ns) (-1) must be >= 0");
    o = {};
    o.min_sleep = -2ns;
    expect(o, "paci::mpi_communicator: min_sleep (ns) (-2) must be >= 0");
    o = {};
    o.min_sleep = 10us;
    o.max_sleep = 5us;
    expect(o, "paci::mpi_communicator: max_sleep (ns) (5000) must be >= min_sleep (10000 ns)");
}

// MPI errors arrive as transport_error with the MPI error code and MPI_Error_string.
void transport_errors() {
    paci::mpi_communicator<std::vector<float>> comm(MPI_COMM_WORLD);
    const int size = comm.size(), next = (g_rank + 1) % size, prev = (g_rank + size - 1) % size;
    const char* name = "transport_error";
    const auto expect = [&](const char* what, int mpi_class_expected, auto&& f) {
        try {
            f();
            check(false, name, std::string(what) + ": no exception");
        } catch (const paci::transport_error& e) {
            const std::string msg = e.what();
            check(mpi_class(e.code()) == mpi_class_expected, name,
                  std::string(what) + ": error class " + std::to_string(mpi_class(e.code())) + ", expected " +
                      std::to_string(mpi_class_expected) + ": " + msg);
            check(contains(msg, "paci::mpi_communicator") && contains(msg, paci::detail::mpi_error_string(e.code())) &&
                      contains(msg, "MPI error " + std::to_string(e.code())),
                  name, std::string(what) + ": message lacks the API, the MPI text or the code: " + msg);
        }
    };
    expect("isend to rank size", MPI_ERR_RANK, [&] { static_cast<void>(comm.isend(size, 0, {1.0f})); });
    expect("irecv from rank -5", MPI_ERR_RANK, [&] { static_cast<void>(comm.irecv(-5, 0)); });
    expect("isend with tag -2", MPI_ERR_TAG, [&] { static_cast<void>(comm.isend(next, -2, {1.0f})); });

    // A fixed-size receive smaller than the message: MPI_ERR_TRUNCATE, when the receive completes.
    paci::mpi_communicator<std::vector<float>> small(MPI_COMM_WORLD, [](int, int) { return std::size_t{4}; });
    auto r = small.irecv(prev, 31);
    auto s = small.isend(next, 31, std::vector<float>(8, 1.0f));
    expect("8 floats into room for 4", MPI_ERR_TRUNCATE, [&] { static_cast<void>(r.wait(patience)); });
    s.wait(patience);

    // Bytes that are not a whole number of elements.
    paci::mpi_communicator<std::vector<std::uint8_t>> bytes(MPI_COMM_WORLD);
    auto s2 = bytes.isend(next, 32, std::vector<std::uint8_t>{1, 2, 3});
    auto r2 = comm.irecv(prev, 32);
    try {
        static_cast<void>(r2.wait(patience));
        check(false, name, "3 bytes received as floats: no exception");
    } catch (const paci::transport_error& e) {
        check(contains(e.what(), "not a whole number of elements"), name, std::string("3 bytes as floats: ") + e.what());
    }
    s2.wait(patience);
}

// Requests are movable values; the executor keeps them in deques.
void moved_requests() {
    using comm_t = paci::mpi_communicator<std::vector<std::uint16_t>>;
    comm_t comm(MPI_COMM_WORLD);
    const comm_t copy = comm; // copies share the matching state
    const int size = comm.size(), next = (g_rank + 1) % size, prev = (g_rank + size - 1) % size;
    std::deque<comm_t::recv_request> recvs;
    std::deque<comm_t::send_request> sends;
    for (int i = 0; i < 20; ++i) {
        recvs.push_back(i % 2 ? comm.irecv(prev, 41) : comm_t(copy).irecv(prev, 41));
        sends.push_back(comm.isend(next, 41, std::vector<std::uint16_t>(static_cast<std::size_t>(i) * 1000, static_cast<std::uint16_t>(i))));
    }
    comm_t::recv_request moved = std::move(recvs.front());
    recvs.pop_front();
    recvs.push_front(std::move(moved));
    int wrong = 0;
    for (int i = 0; i < 20; ++i) {
        const auto v = recvs[static_cast<std::size_t>(i)].wait(patience);
        if (v != std::vector<std::uint16_t>(static_cast<std::size_t>(i) * 1000, static_cast<std::uint16_t>(i))) ++wrong;
    }
    while (!sends.empty()) {
        sends.front().wait(patience);
        sends.pop_front();
    }
    check(wrong == 0, "moved requests", std::to_string(wrong) + " messages wrong");
}

// Ranks agree on a fingerprint; a rank that differs is named.
void agree() {
    paci::mpi_communicator<std::vector<float>> comm(MPI_COMM_WORLD);
    comm.agree(1234, patience);
    try {
        comm.agree(g_rank == 1 ? 99 : 1234, patience);
        check(false, "agree", "differing rank 1 not reported");
    } catch (const paci::config_error& e) {
        check(contains(e.what(), "configuration of rank (1)"), "agree", e.what());
    }
}

} // namespace

int main(int argc, char** argv) {
    paci::mpi_session session(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    int size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (g_rank == 0) std::printf("[rank 0] mpi_communicator tests on %d processes\n", size);

    static_assert(paci::communicator_for<paci::mpi_communicator<std::vector<double>>, std::vector<double>>);
    static_assert(paci::abortable<paci::mpi_communicator<std::vector<double>>>);

    run("ring of float vectors (0 .. 3 MiB)", [] { ring<float>("ring<float>"); });
    run("ring of byte vectors (0 .. 3 MiB)", [] { ring<std::uint8_t>("ring<uint8_t>"); });
    run("fifo, probed receives", [] { fifo(false); });
    run("fifo, fixed-size receives", [] { fifo(true); });
    run("test() before and after completion", test_before_after);
    run("timeout_error", [] { timeouts({}); });
    run("timeout_error, sleeping from the first test up to 50 ms", [] {
        paci::mpi_options o;
        o.busy = 0ns;
        o.max_sleep = 50ms;
        timeouts(o);
    });
    run("timeout_error, polling without sleeps", [] {
        paci::mpi_options o;
        o.min_sleep = 0ns;
        o.max_sleep = 0ns;
        timeouts(o);
    });
    run("mpi_options", bad_options);
    run("transport_error", transport_errors);
    run("moved requests", moved_requests);
    run("agree", agree);

    int failures = 0;
    MPI_Allreduce(&g_failures, &failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (g_rank == 0) std::printf("[rank 0] %s: %d failed check(s) over all ranks\n", failures ? "FAILED" : "passed", failures);
    return failures ? 1 : 0;
}
