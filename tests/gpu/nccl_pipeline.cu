// GPU check (b) of tests/gpu/run.sh: a two-stage pipeline whose activations and gradients travel
// through paci::nccl_communicator, checked against the same training computed on the host.
//
// Model: stage s computes y = w_s * x + b_s elementwise over N floats; the loss is
// 0.5 * mean(y^2) at stage 1. Each step runs M micro-batches GPipe-style (every forward, then every
// backward, then one SGD update per stage), for STEPS steps. After the last step both stages'
// (w, b) must match a double-precision host replay of the same run to 1e-4 (relative), and the
// first activation received must equal the one sent, byte for byte.
//
// Layouts:
// - one GPU: both stages on rank 0 of a world of one (NCCL allows only one rank per GPU), each
//   stage on its own CUDA stream; stage 0's sends to stage 1 are sends to self, matched with their
//   receives (forward: all sends queued first, then received in order; backward: each send and
//   receive in one explicit group);
// - two or more GPUs: also stage s on rank s (GPU s), one thread each, stage 1 posting its
//   receives ahead the way the executor does.
// Exit status 0 when every check passed.

#include <paci/nccl/communicator.hpp>

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int N = 4096;   // elements per micro-batch
constexpr int M = 4;      // micro-batches per step
constexpr int STEPS = 3;  // optimizer steps
constexpr float LR = 0.1f;
constexpr std::size_t BYTES = N * sizeof(float);
constexpr int THREADS = 256;
constexpr auto patience = std::chrono::seconds(60);
constexpr float INITIAL[2][2] = {{0.9f, 0.1f}, {1.1f, -0.2f}}; // (w, b) of stage 0 and stage 1

int failures = 0;
void check(bool ok, const std::string& what) {
    std::printf("  [%s] %s\n", ok ? "ok" : "FAILED", what.c_str());
    if (!ok) ++failures;
}
void cuda(cudaError_t status, const char* what) { paci::detail::cuda_check(status, "nccl_pipeline", what); }
void nccl(ncclResult_t status, const char* what) { paci::detail::nccl_check(status, nullptr, "nccl_pipeline", what); }

int tag_forward(int m) { return 2 * m; }
int tag_backward(int m) { return 2 * m + 1; }

float input_value(int step, int m, int i) { return std::sin(0.001f * static_cast<float>(i) + 0.7f * static_cast<float>(m + M * step)); }

__global__ void affine(const float* x, float* y, int n, const float* p) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = p[0] * x[i] + p[1];
}
__global__ void scale(const float* g, float* out, int n, const float* p) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = p[0] * g[i];
}
__global__ void loss_gradient(const float* y, float* g, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) g[i] = y[i] / static_cast<float>(n);
}
/// One block: grad[0] += sum(g * x), grad[1] += sum(g), in a fixed order (deterministic).
__global__ void accumulate(const float* g, const float* x, int n, float* grad) {
    __shared__ float dw[THREADS];
    __shared__ float db[THREADS];
    float sw = 0.0f, sb = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        sw += g[i] * x[i];
        sb += g[i];
    }
    dw[threadIdx.x] = sw;
    db[threadIdx.x] = sb;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            dw[threadIdx.x] += dw[threadIdx.x + half];
            db[threadIdx.x] += db[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        grad[0] += dw[0];
        grad[1] += db[0];
    }
}
__global__ void sgd(float* p, float* grad, float lr) {
    p[0] -= lr * grad[0];
    p[1] -= lr * grad[1];
    grad[0] = 0.0f;
    grad[1] = 0.0f;
}

void launched(const char* what) { cuda(cudaGetLastError(), what); }
unsigned blocks() { return (N + THREADS - 1) / THREADS; }

/// One pipeline stage on the current device: its parameters, gradients, stream and the inputs it
/// keeps for its backward.
class stage {
public:
    stage(int index, bool last) : index_(index), last_(last), inputs_(M), outputs_(M) {
        cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
        cuda(cudaMalloc(&params_, 2 * sizeof(float)), "cudaMalloc");
        cuda(cudaMalloc(&grads_, 2 * sizeof(float)), "cudaMalloc");
        cuda(cudaMemcpy(params_, INITIAL[index], 2 * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
        cuda(cudaMemset(grads_, 0, 2 * sizeof(float)), "cudaMemset");
    }
    stage(const stage&) = delete;
    stage& operator=(const stage&) = delete;
    ~stage() {
        cudaStreamSynchronize(stream_);
        inputs_.clear();
        outputs_.clear();
        cudaFree(params_);
        cudaFree(grads_);
        cudaStreamDestroy(stream_);
    }

    [[nodiscard]] cudaStream_t stream() const { return stream_; }

    /// Stage 0 loads its input; stage 1 gets it from stage 0. The last stage keeps its output for
    /// the loss and returns an empty buffer.
    paci::device_buffer forward(int step, int m, paci::device_buffer x) {
        if (index_ == 0) {
            std::vector<float> host(N);
            for (int i = 0; i < N; ++i) host[static_cast<std::size_t>(i)] = input_value(step, m, i);
            x = paci::device_buffer(BYTES);
            cuda(cudaMemcpyAsync(x.data(), host.data(), BYTES, cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync");
            cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); // `host` is about to go
        }
        x.wait_ready(stream_);
        paci::device_buffer y(BYTES);
        affine<<<blocks(), THREADS, 0, stream_>>>(x.data_as<float>(), y.data_as<float>(), N, params_);
        launched("affine");
        y.record_ready(stream_);
        inputs_[static_cast<std::size_t>(m)] = std::move(x);
        if (last_) {
            outputs_[static_cast<std::size_t>(m)] = std::move(y);
            return {};
        }
        return y;
    }

    /// The last stage starts from the loss; the first returns an empty buffer.
    paci::device_buffer backward(int m, paci::device_buffer g) {
        const auto k = static_cast<std::size_t>(m);
        if (last_) {
            g = paci::device_buffer(BYTES);
            loss_gradient<<<blocks(), THREADS, 0, stream_>>>(outputs_[k].data_as<float>(), g.data_as<float>(), N);
            launched("loss_gradient");
        } else {
            g.wait_ready(stream_);
        }
        accumulate<<<1, THREADS, 0, stream_>>>(g.data_as<float>(), inputs_[k].data_as<float>(), N, grads_);
        launched("accumulate");
        paci::device_buffer gin;
        if (index_ > 0) {
            gin = paci::device_buffer(BYTES);
            scale<<<blocks(), THREADS, 0, stream_>>>(g.data_as<float>(), gin.data_as<float>(), N, params_);
            launched("scale");
            gin.record_ready(stream_);
        }
        // Dropping `g`, the kept input and output frees them with cudaFree, which waits for the
        // device: the kernels above have read them by then.
        inputs_[k].reset();
        outputs_[k].reset();
        return gin;
    }

    void step() {
        sgd<<<1, 1, 0, stream_>>>(params_, grads_, LR);
        launched("sgd");
    }

    /// (w, b) after everything queued so far.
    std::pair<float, float> params() const {
        float p[2] = {0, 0};
        cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
        cuda(cudaMemcpy(p, params_, sizeof p, cudaMemcpyDeviceToHost), "cudaMemcpy");
        return {p[0], p[1]};
    }

private:
    int index_;
    bool last_;
    cudaStream_t stream_ = nullptr;
    float* params_ = nullptr;
    float* grads_ = nullptr;
    std::vector<paci::device_buffer> inputs_, outputs_;
};

/// The same training in double precision on the host: the final (w, b) of both stages.
std::array<std::pair<double, double>, 2> reference() {
    double w0 = INITIAL[0][0], b0 = INITIAL[0][1], w1 = INITIAL[1][0], b1 = INITIAL[1][1];
    for (int step = 0; step < STEPS; ++step) {
        double dw0 = 0, db0 = 0, dw1 = 0, db1 = 0;
        for (int m = 0; m < M; ++m) {
            for (int i = 0; i < N; ++i) {
                const double x = static_cast<double>(input_value(step, m, i));
                const double y0 = w0 * x + b0;
                const double y1 = w1 * y0 + b1;
                const double g1 = y1 / N;
                dw1 += g1 * y0;
                db1 += g1;
                const double g0 = w1 * g1;
                dw0 += g0 * x;
                db0 += g0;
            }
        }
        w0 -= static_cast<double>(LR) * dw0;
        b0 -= static_cast<double>(LR) * db0;
        w1 -= static_cast<double>(LR) * dw1;
        b1 -= static_cast<double>(LR) * db1;
    }
    return {{{w0, b0}, {w1, b1}}};
}

bool close_to(double got, double want) { return std::fabs(got - want) <= 1e-4 * std::max(1.0, std::fabs(want)); }

void check_params(const char* layout, int s, std::pair<float, float> got, std::pair<double, double> want) {
    char text[256];
    std::snprintf(text, sizeof text, "%s: stage %d after %d steps: w = %.7f (host %.7f), b = %.7f (host %.7f)", layout, s,
                  STEPS, static_cast<double>(got.first), want.first, static_cast<double>(got.second), want.second);
    check(close_to(got.first, want.first) && close_to(got.second, want.second), text);
}

std::vector<unsigned char> download(const paci::device_buffer& b) {
    std::vector<unsigned char> host(b.size());
    b.synchronize();
    cuda(cudaMemcpy(host.data(), b.data(), b.size(), cudaMemcpyDeviceToHost), "cudaMemcpy");
    return host;
}

/// Both stages on rank 0 of a world of one.
void one_gpu() {
    std::puts("one GPU: stages 0 and 1 on rank 0, talking to themselves through NCCL");
    cuda(cudaSetDevice(0), "cudaSetDevice");
    stage s0(0, false), s1(1, true);
    ncclUniqueId id;
    nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    // Sends are ordered after stage 0's stream (the compute stream) and after each buffer's own
    // readiness event (stage 1's gradients are made on stage 1's stream).
    paci::nccl_communicator comm(id, 0, 1, s0.stream(), [](int, int) { return BYTES; });
    bool exact = false;
    for (int step = 0; step < STEPS; ++step) {
        std::vector<paci::nccl_communicator::send_request> sends;
        std::vector<unsigned char> first_sent;
        for (int m = 0; m < M; ++m) {
            paci::device_buffer y = s0.forward(step, m, {});
            if (step == 0 && m == 0) first_sent = download(y);
            sends.push_back(comm.isend(0, tag_forward(m), std::move(y), paci::action{paci::op::SEND_F, 0, m}));
        }
        for (int m = 0; m < M; ++m) {
            paci::device_buffer x = comm.irecv(0, tag_forward(m), paci::action{paci::op::RECV_F, 1, m}).wait(patience);
            if (step == 0 && m == 0) exact = download(x) == first_sent;
            static_cast<void>(s1.forward(step, m, std::move(x)));
        }
        for (auto& s : sends) s.wait(patience);
        for (int m = 0; m < M; ++m) {
            paci::device_buffer g = s1.backward(m, {});
            std::optional<paci::nccl_communicator::send_request> send;
            std::optional<paci::nccl_communicator::recv_request> recv;
            comm.grouped([&] {
                send.emplace(comm.isend(0, tag_backward(m), std::move(g), paci::action{paci::op::SEND_B, 1, m}));
                recv.emplace(comm.irecv(0, tag_backward(m), paci::action{paci::op::RECV_B, 0, m}));
            });
            static_cast<void>(s0.backward(m, recv->wait(patience)));
            send->wait(patience);
        }
        s0.step();
        s1.step();
    }
    check(exact, "one GPU: the first activation stage 1 received is byte for byte what stage 0 sent");
    const auto want = reference();
    check_params("one GPU", 0, s0.params(), want[0]);
    check_params("one GPU", 1, s1.params(), want[1]);
    check(!comm.aborted(), "one GPU: the communicator is still live");
}

/// Stage s on rank s (GPU s), one thread each.
void two_gpus() {
    std::puts("two GPUs: stage s on rank s (GPU s), one thread per rank");
    ncclUniqueId id;
    nccl(ncclGetUniqueId(&id), "ncclGetUniqueId"); // shared in memory: the out-of-band exchange here
    std::array<std::pair<float, float>, 2> got{};
    std::array<std::string, 2> error;
    const auto rank_main = [&](int rank) {
        try {
            cuda(cudaSetDevice(rank), "cudaSetDevice");
            stage st(rank, rank == 1);
            paci::nccl_options options;
            options.setup_timeout = std::chrono::seconds(60);
            paci::nccl_communicator comm(id, rank, 2, st.stream(), [](int, int) { return BYTES; }, options);
            comm.agree(0xabcdefULL, patience);
            try {
                for (int step = 0; step < STEPS; ++step) {
                    std::vector<paci::nccl_communicator::send_request> sends;
                    if (rank == 0) {
                        for (int m = 0; m < M; ++m)
                            sends.push_back(comm.isend(1, tag_forward(m), st.forward(step, m, {}),
                                                       paci::action{paci::op::SEND_F, 0, m}));
                        for (int m = 0; m < M; ++m)
                            static_cast<void>(st.backward(
                                m, comm.irecv(1, tag_backward(m), paci::action{paci::op::RECV_B, 0, m}).wait(patience)));
                    } else {
                        std::vector<paci::nccl_communicator::recv_request> posted; // all posted ahead
                        for (int m = 0; m < M; ++m)
                            posted.push_back(comm.irecv(0, tag_forward(m), paci::action{paci::op::RECV_F, 1, m}));
                        for (int m = 0; m < M; ++m)
                            static_cast<void>(st.forward(step, m, posted[static_cast<std::size_t>(m)].wait(patience)));
                        for (int m = 0; m < M; ++m)
                            sends.push_back(comm.isend(0, tag_backward(m), st.backward(m, {}),
                                                       paci::action{paci::op::SEND_B, 1, m}));
                    }
                    for (auto& s : sends) s.wait(patience);
                    st.step();
                }
                got[static_cast<std::size_t>(rank)] = st.params();
            } catch (const std::exception& e) {
                comm.abort(e.what());
                throw;
            }
        } catch (const std::exception& e) {
            error[static_cast<std::size_t>(rank)] = e.what();
        }
    };
    std::thread other(rank_main, 1);
    rank_main(0);
    other.join();
    for (int r = 0; r < 2; ++r) {
        const auto& e = error[static_cast<std::size_t>(r)];
        check(e.empty(), "two GPUs: rank " + std::to_string(r) + " ran its program" + (e.empty() ? "" : ": " + e));
    }
    if (!error[0].empty() || !error[1].empty()) return;
    const auto want = reference();
    check_params("two GPUs", 0, got[0], want[0]);
    check_params("two GPUs", 1, got[1], want[1]);
}

} // namespace

int main() {
    try {
        int devices = 0;
        cuda(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
        std::printf("nccl_pipeline: %d GPU(s), NCCL %d.%d.%d; %d micro-batches x %d steps of %d floats\n", devices,
                    NCCL_MAJOR, NCCL_MINOR, NCCL_PATCH, M, STEPS, N);
        if (devices < 1) {
            std::puts("nccl_pipeline: FAILED: no CUDA device");
            return 1;
        }
        one_gpu();
        if (devices >= 2) two_gpus();
        else std::puts("(one GPU only: the two-rank layout was not run)");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "nccl_pipeline: FAILED: %s\n", e.what());
        return 1;
    }
    std::puts(failures == 0 ? "nccl_pipeline: all checks passed" : "nccl_pipeline: FAILED");
    return failures == 0 ? 0 : 1;
}
