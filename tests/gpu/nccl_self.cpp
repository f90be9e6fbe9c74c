// GPU check (a) of tests/gpu/run.sh: a world of one NCCL rank sends to itself and receives, and
// every byte is compared. Raw NCCL first (so a failure below can be told apart from a broken NCCL
// install), then through paci::nccl_communicator: several sizes, sends to self queued before their
// receives and received out of posting order by tag, FIFO order within a tag, buffer reuse.
// Needs one GPU. Exit status 0 when every check passed.

#include <paci/nccl/communicator.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <vector>

namespace {

constexpr auto patience = std::chrono::seconds(60);
int failures = 0;

void check(bool ok, const char* what) {
    std::printf("  [%s] %s\n", ok ? "ok" : "FAILED", what);
    if (!ok) ++failures;
}
void cuda(cudaError_t status, const char* what) { paci::detail::cuda_check(status, "nccl_self", what); }
void nccl(ncclResult_t status, const char* what) { paci::detail::nccl_check(status, nullptr, "nccl_self", what); }

std::vector<unsigned char> pattern(std::size_t bytes, unsigned seed) {
    std::vector<unsigned char> p(bytes);
    for (std::size_t i = 0; i < bytes; ++i) p[i] = static_cast<unsigned char>((i * 131U + seed * 7919U + (i >> 8)) & 0xffU);
    return p;
}

paci::device_buffer upload(const std::vector<unsigned char>& host, cudaStream_t stream) {
    paci::device_buffer b(host.size());
    cuda(cudaMemcpyAsync(b.data(), host.data(), host.size(), cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync");
    b.record_ready(stream);
    return b;
}

std::vector<unsigned char> download(const paci::device_buffer& b) {
    std::vector<unsigned char> host(b.size());
    b.synchronize();
    if (!host.empty()) cuda(cudaMemcpy(host.data(), b.data(), b.size(), cudaMemcpyDeviceToHost), "cudaMemcpy");
    return host;
}

void raw_nccl(cudaStream_t stream) {
    const std::size_t bytes = 1U << 20;
    ncclUniqueId id;
    nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    ncclComm_t comm = nullptr;
    nccl(ncclCommInitRank(&comm, 1, id, 0), "ncclCommInitRank");
    const auto sent = pattern(bytes, 1);
    void* src = nullptr;
    void* dst = nullptr;
    cuda(cudaMalloc(&src, bytes), "cudaMalloc");
    cuda(cudaMalloc(&dst, bytes), "cudaMalloc");
    cuda(cudaMemcpy(src, sent.data(), bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
    nccl(ncclGroupStart(), "ncclGroupStart");
    nccl(ncclSend(src, bytes, ncclUint8, 0, comm, stream), "ncclSend");
    nccl(ncclRecv(dst, bytes, ncclUint8, 0, comm, stream), "ncclRecv");
    nccl(ncclGroupEnd(), "ncclGroupEnd");
    cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    std::vector<unsigned char> got(bytes);
    cuda(cudaMemcpy(got.data(), dst, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
    check(got == sent, "raw NCCL: 1 MiB ncclSend/ncclRecv to self in one group");
    cuda(cudaFree(src), "cudaFree");
    cuda(cudaFree(dst), "cudaFree");
    nccl(ncclCommDestroy(comm), "ncclCommDestroy");
}

int run() {
    int devices = 0;
    cuda(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
    if (devices < 1) {
        std::puts("nccl_self: no CUDA device");
        return 1;
    }
    cuda(cudaSetDevice(0), "cudaSetDevice");
    cudaDeviceProp prop{};
    cuda(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    int version = 0;
    nccl(ncclGetVersion(&version), "ncclGetVersion");
    std::printf("nccl_self: %s, NCCL %d (headers %d.%d.%d)\n", prop.name, version, NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH);
    cudaStream_t compute = nullptr;
    cuda(cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");

    raw_nccl(compute);

    // Tag t carries sizes[t] bytes.
    const std::vector<std::size_t> sizes = {1, 1000, (4U << 20) + 3, 64U << 20, 4096};
    ncclUniqueId id;
    nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    paci::nccl_communicator comm(id, 0, 1, compute,
                                 [&](int, int tag) { return sizes[static_cast<std::size_t>(tag)]; });
    comm.agree(12345, patience);
    check(true, "paci: a world of one agrees with itself (ncclAllGather)");

    // One size at a time: receive posted first, then the send.
    bool each = true;
    for (std::size_t t = 0; t < 4; ++t) {
        const auto sent = pattern(sizes[t], static_cast<unsigned>(t));
        auto r = comm.irecv(0, static_cast<int>(t));
        auto s = comm.isend(0, static_cast<int>(t), upload(sent, compute));
        const auto got = download(r.wait(patience));
        s.wait(patience);
        each = each && got == sent;
    }
    check(each, "paci: 1 B, 1000 B, 4 MiB + 3 B and 64 MiB sent to self arrive byte for byte");

    // Sends queued first (they wait for their receives), then received by tag in reverse order.
    {
        std::vector<paci::nccl_communicator::send_request> sends;
        std::vector<std::vector<unsigned char>> sent;
        for (std::size_t t = 0; t < 4; ++t) {
            sent.push_back(pattern(sizes[t], static_cast<unsigned>(10 + t)));
            sends.push_back(comm.isend(0, static_cast<int>(t), upload(sent.back(), compute)));
        }
        check(!sends[0].test(), "paci: a send to self is not done before its receive is posted");
        bool ok = true;
        for (std::size_t t = 4; t-- > 0;) ok = ok && download(comm.irecv(0, static_cast<int>(t)).wait(patience)) == sent[t];
        for (auto& s : sends) s.wait(patience);
        check(ok, "paci: queued sends to self are matched by tag, whatever order they are received in");
    }

    // Same tag: first in, first out; the buffers of completed sends are reused for receives.
    {
        const auto a = pattern(4096, 21), b = pattern(4096, 22), c = pattern(4096, 23);
        auto sa = comm.isend(0, 4, upload(a, compute));
        auto sb = comm.isend(0, 4, upload(b, compute));
        auto ra = comm.irecv(0, 4);
        auto rb = comm.irecv(0, 4);
        const bool first = download(rb.wait(patience)) == b; // each receive pairs with the oldest send of its tag
        const bool second = download(ra.wait(patience)) == a;
        sa.wait(patience);
        sb.wait(patience);
        check(first && second, "paci: messages with one tag arrive in the order they were sent");
        bool all = true;
        for (int k = 0; k < 20; ++k) {
            std::optional<paci::nccl_communicator::recv_request> r;
            std::optional<paci::nccl_communicator::send_request> s;
            comm.grouped([&] {
                s.emplace(comm.isend(0, 4, upload(c, compute)));
                r.emplace(comm.irecv(0, 4));
            });
            all = all && download(r->wait(patience)) == c;
            s->wait(patience);
        }
        check(all, "paci: 20 grouped send/receive pairs (reusing completed send buffers)");
    }
    check(!comm.aborted(), "paci: the communicator is still live");
    return failures == 0 ? 0 : 1;
}

} // namespace

int main() {
    try {
        const int rc = run();
        std::puts(rc == 0 ? "nccl_self: all checks passed" : "nccl_self: FAILED");
        return rc;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "nccl_self: FAILED: %s\n", e.what());
        return 1;
    }
}
