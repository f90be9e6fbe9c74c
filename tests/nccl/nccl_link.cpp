// Compile-and-link test of the paci::nccl component (ctest nccl.link, label `nccl`).
//
// Every member of nccl_communicator, its requests and device_buffer is used below, so building this
// program instantiates all of them and links every CUDA runtime and NCCL symbol they call. Without a
// GPU (`nvidia-smi -L` lists none) that is all it checks: it says so and exits 77, which ctest
// reports as skipped. With a GPU it also runs them on a world of one rank (sends to itself).

#include <paci/nccl/communicator.hpp>
#include <paci/nccl/device_buffer.hpp>
#include <paci/nccl/error.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <utility>
#include <vector>

static_assert(paci::communicator_for<paci::nccl_communicator, paci::device_buffer>);
static_assert(paci::abortable<paci::nccl_communicator>);
static_assert(paci::send_request<paci::nccl_communicator::send_request>);
static_assert(paci::recv_request_for<paci::nccl_communicator::recv_request, paci::device_buffer>);
static_assert(!std::copy_constructible<paci::device_buffer>);
static_assert(!std::copy_constructible<paci::nccl_communicator>);

namespace {

constexpr int skipped = 77;
constexpr auto patience = std::chrono::seconds(30);

bool nvidia_smi_lists_a_gpu() {
    FILE* pipe = popen("nvidia-smi -L 2>/dev/null", "r");
    if (pipe == nullptr) return false;
    bool found = false;
    char line[512];
    while (std::fgets(line, sizeof line, pipe) != nullptr)
        if (std::strncmp(line, "GPU ", 4) == 0) found = true;
    pclose(pipe);
    return found;
}

int failures = 0;
void check(bool ok, const char* what) {
    std::printf("  [%s] %s\n", ok ? "ok" : "FAILED", what);
    if (!ok) ++failures;
}

void cuda(cudaError_t status, const char* what) { paci::detail::cuda_check(status, "nccl_link", what); }
void nccl(ncclResult_t status, const char* what) { paci::detail::nccl_check(status, nullptr, "nccl_link", what); }

/// A buffer of `bytes` bytes set to `value`, ready on `stream`.
paci::device_buffer filled(std::size_t bytes, int value, cudaStream_t stream) {
    paci::device_buffer b(bytes);
    cuda(cudaMemsetAsync(b.data(), value, bytes, stream), "cudaMemsetAsync");
    b.record_ready(stream);
    return b;
}

bool all_bytes(const paci::device_buffer& b, unsigned char value) {
    std::vector<unsigned char> host(b.size());
    b.synchronize();
    cuda(cudaMemcpy(host.data(), b.data(), b.size(), cudaMemcpyDeviceToHost), "cudaMemcpy");
    return std::all_of(host.begin(), host.end(), [&](unsigned char c) { return c == value; });
}

int run_on_gpu() {
    int devices = 0;
    cuda(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
    check(devices > 0, "the CUDA runtime sees the GPU nvidia-smi lists");
    if (devices == 0) return 1;
    cuda(cudaSetDevice(0), "cudaSetDevice");
    cudaStream_t compute = nullptr;
    cuda(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");

    // device_buffer on its own.
    {
        paci::device_buffer empty;
        check(empty.empty() && empty.size() == 0 && empty.data() == nullptr && empty.ready_event() == nullptr &&
                  empty.ready() && !empty.recorded(),
              "an empty device_buffer has no memory and is ready");
        empty.wait_ready(compute);
        empty.synchronize();
        paci::device_buffer a = filled(256, 0x11, compute);
        paci::device_buffer b = filled(512, 0x22, compute);
        swap(a, b);
        check(a.size() == 512 && b.size() == 256 && a.recorded(), "swap exchanges device_buffers");
        a.wait_ready(compute);
        static_cast<void>(a.ready());
        check(a.data_as<unsigned char>() == static_cast<unsigned char*>(a.data()), "data_as is data");
        paci::device_buffer c = std::move(a);
        check(a.empty() && c.size() == 512 && all_bytes(c, 0x22), "moving a device_buffer moves its memory");
        c.reset();
        check(c.empty(), "reset frees it");
    }

    ncclUniqueId id;
    nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    // Tag 0: 1 MiB; tag 1: empty messages; tag 2: 4 KiB.
    const auto sizes = [](int, int tag) -> std::size_t { return tag == 0 ? (1U << 20) : tag == 1 ? 0U : 4096U; };
    bool hook_ran = false;
    // Three channels created with ncclCommInitRankConfig from ids broadcast over channel 0 (the
    // alternative to splitting); a failure here is reported and the checks go on.
    try {
        ncclUniqueId first;
        nccl(ncclGetUniqueId(&first), "ncclGetUniqueId");
        paci::nccl_options options;
        options.setup_timeout = std::chrono::seconds(60);
        options.channels = 3;
        options.channel_of = [](int, int, int tag) { return tag == 2 ? 2 : 0; };
        options.channel_setup = paci::nccl_channel_setup::init_rank;
        paci::nccl_communicator comm(first, 0, 1, compute, sizes, options);
        check(comm.channels() == 3 && comm.native_handle(1) != nullptr && comm.native_handle(2) != nullptr &&
                  comm.native_handle(1) != comm.native_handle(2),
              "three channels from ncclCommInitRankConfig (nccl_channel_setup::init_rank)");
        auto r = comm.irecv(0, 2);
        auto s = comm.isend(0, 2, filled(4096, 0x77, compute));
        check(all_bytes(r.wait(patience), 0x77), "4 KiB sent to self on channel 2 (init_rank) arrives intact");
        s.wait(patience);
    } catch (const std::exception& e) {
        check(false, (std::string("channels by ncclCommInitRankConfig: ") + e.what()).c_str());
    }
    {
        // Two channels (the second split from the first); tag 2 travels on channel 1.
        paci::nccl_options options;
        options.setup_timeout = std::chrono::seconds(60);
        options.channels = 2;
        options.channel_of = [](int, int, int tag) { return tag == 2 ? 1 : 0; };
        options.on_abort = [&](const char*) { hook_ran = true; };
        paci::nccl_communicator comm(id, 0, 1, compute, sizes, options);
        check(comm.rank() == 0 && comm.size() == 1 && comm.device() == 0, "rank, size and device");
        check(comm.channels() == 2 && comm.channel_of(0, 0, 2) == 1 && comm.channel_of(0, 0, 0) == 0 &&
                  !comm.early_receives(),
              "two channels, mapped by channel_of; receives issued when waited on");
        check(comm.compute_stream() == compute && comm.comm_stream(0) != nullptr && comm.comm_stream(1) != nullptr &&
                  comm.comm_stream(0) != comm.comm_stream(1) && comm.comm_stream() != compute,
              "a communication stream per channel");
        check(comm.native_handle() != nullptr && comm.native_handle(1) != nullptr &&
                  comm.native_handle(0) != comm.native_handle(1) && !comm.aborted(),
              "a live NCCL communicator per channel (ncclCommSplit)");
        comm.agree(0x5eedULL, patience);
        check(true, "agree (ncclAllGather of the fingerprint)");

        // A send to self waits for its receive; both then go to NCCL in one group.
        auto r = comm.irecv(0, 0);
        auto s = comm.isend(0, 0, filled(1U << 20, 0x5a, compute));
        paci::device_buffer got = r.wait(patience);
        s.wait(patience);
        check(got.size() == (1U << 20) && got.recorded() && all_bytes(got, 0x5a), "1 MiB sent to self arrives intact");
        got.wait_ready(compute);

        // An explicit group, and the request moves.
        paci::nccl_communicator::send_request s2 = comm.isend(0, 2, filled(4096, 0x33, compute));
        paci::nccl_communicator::recv_request r2 = comm.irecv(0, 2);
        comm.grouped([&] {
            s2 = comm.isend(0, 2, filled(4096, 0x44, compute));
            r2 = comm.irecv(0, 2);
        });
        while (!r2.test()) {
        }
        check(s2.test() || (s2.wait(patience), true), "a grouped send completes");
        check(all_bytes(r2.wait(patience), 0x44), "a grouped receive gets the grouped send's bytes");
        comm.start_group();
        auto s3 = comm.isend(0, 2, filled(4096, 0x55, compute));
        auto r3 = comm.irecv(0, 2);
        comm.end_group();
        check(all_bytes(r3.wait(patience), 0x55), "start_group/end_group");
        s3.wait(patience);

        // Empty messages never reach NCCL.
        auto se = comm.isend(0, 1, paci::device_buffer{});
        auto re = comm.irecv(0, 1);
        check(se.test() && re.test() && re.wait(patience).empty(), "an empty message completes at once");
        check(!comm.aborted(), "still live");
    }
    check(!hook_ran, "a clean shutdown does not call on_abort");

    // A receive nobody sends times out, aborts the communicator and names what it waited for.
    nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    {
        paci::nccl_options options;
        options.on_abort = [&](const char*) { hook_ran = true; };
        paci::nccl_communicator comm(id, 0, 1, compute, sizes, options);
        check(comm.channels() == paci::nccl_ring_channels(1) && comm.early_receives(),
              "the ring map by default (one channel in a world of one), receives issued early");
        auto r = comm.irecv(0, 2, paci::action{paci::op::RECV_F, 1, 3});
        bool timed_out = false;
        try {
            static_cast<void>(r.wait(std::chrono::milliseconds(50)));
        } catch (const paci::timeout_error& e) {
            timed_out = e.rank() == 0 && e.peer() == 0 && e.tag() == 2 && e.waited_on() == paci::action{paci::op::RECV_F, 1, 3};
            std::printf("  (%s)\n", e.what());
        }
        check(timed_out, "an unmatched receive throws timeout_error naming rank, peer, tag and action");
        check(comm.aborted() && comm.native_handle() == nullptr, "the timeout aborted the NCCL communicator");
        bool refused = false;
        try {
            auto s = comm.isend(0, 2, filled(4096, 0x66, compute));
        } catch (const paci::aborted_error&) {
            refused = true;
        }
        check(refused, "an aborted communicator refuses new sends (aborted_error)");
        comm.abort("test");
        check(hook_ran, "abort runs on_abort once");
    }

    // Bad arguments are config_errors.
    nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    bool bad_rank = false;
    try {
        paci::nccl_communicator comm(id, 1, 1, compute, sizes);
    } catch (const paci::config_error& e) {
        bad_rank = std::string(e.what()).find("rank (1)") != std::string::npos;
    }
    check(bad_rank, "a rank out of range is a config_error");

    cuda(cudaStreamDestroy(compute), "cudaStreamDestroy");
    return failures == 0 ? 0 : 1;
}

} // namespace

int main() {
    if (!nvidia_smi_lists_a_gpu()) {
        std::puts("nccl.link: nvidia-smi -L lists no GPU: this run only checked that paci::nccl compiles and links "
                  "against the CUDA runtime and NCCL (reported as skipped); tests/gpu/run.sh runs the GPU checks");
        return skipped;
    }
    std::printf("nccl.link: NCCL %d.%d.%d, running on the GPU\n", NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH);
    try {
        const int rc = run_on_gpu();
        std::puts(rc == 0 ? "nccl.link: all checks passed" : "nccl.link: FAILED");
        return rc;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "nccl.link: FAILED: %s\n", e.what());
        return 1;
    }
}
