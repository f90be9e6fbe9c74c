#pragma once
// cuda_stage: one pipeline stage whose layers are real CUDA work, as a user would write it.
//
// - Layers: `layers` dense layers of `width x width`: a cuBLAS SGEMM (`Z = W A`) and a kernel of
//   the example's own for the bias and tanh (kernels.cu); the last layer of the last stage is
//   linear and feeds a mean-squared-error loss against the regression target of the micro-batch
//   (computed on the device from the micro-batch number, like the first stage's input).
// - buffer_type is `paci::device_buffer`: device memory plus the event that marks its contents
//   ready on the stream that wrote them. A stage waits on a received buffer's event on its own
//   stream (`wait_ready`) and records the event after writing an outgoing one (`record_ready`):
//   every hand-over is stream-ordered, nothing is copied through the host, nothing waits on the
//   host.
// - No allocation in steady state: a received forward input is kept as the layer-0 activation and
//   goes back as the input gradient (written in place once the weight gradient has read it); a
//   received output gradient is kept for the next forward output. Per-micro-batch activations live
//   in slots that are reused. (A `device_buffer` that is destroyed calls `cudaFree`, which waits
//   for the whole device; the example's gate check would catch that.)
// - `step()` is SGD on the device (one kernel over all parameters).
// - `empty` mode: every call launches one empty kernel and hands a 4-byte buffer on (the
//   executor-overhead measurement).
//
// Every call runs on the thread the executor calls it from; the stage is used by one thread at a
// time. The device is the current one when the stage is constructed.

#include <paci/nccl/device_buffer.hpp>
#include <paci/nccl/error.hpp>

#include "kernels.hpp"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace cuex {

inline void cuda_ok(cudaError_t status, const char* what) {
    paci::detail::cuda_check(status, "cuda example", what);
}
inline void cublas_ok(cublasStatus_t status, const char* what) {
    if (status != CUBLAS_STATUS_SUCCESS)
        throw std::runtime_error(std::string("paci::cuda example: ") + what + " failed (cublas status " +
                                 std::to_string(static_cast<int>(status)) + ")");
}

/// Device memory freed in the destructor (only ever at the end of the program).
struct device_floats {
    float* data = nullptr;
    std::size_t size = 0;
    device_floats() = default;
    explicit device_floats(std::size_t n) : size(n) {
        if (n > 0) cuda_ok(cudaMalloc(reinterpret_cast<void**>(&data), n * sizeof(float)), "cudaMalloc");
    }
    device_floats(device_floats&& o) noexcept : data(std::exchange(o.data, nullptr)), size(std::exchange(o.size, 0)) {}
    device_floats& operator=(device_floats&& o) noexcept {
        std::swap(data, o.data);
        std::swap(size, o.size);
        return *this;
    }
    device_floats(const device_floats&) = delete;
    device_floats& operator=(const device_floats&) = delete;
    ~device_floats() {
        if (data != nullptr) static_cast<void>(cudaFree(data));
    }
};

struct stage_config {
    int index = 0;  ///< this stage's position
    int stages = 1; ///< how many stages the model has
    int width = 256;
    int batch = 64; ///< samples per micro-batch
    int layers = 2; ///< dense layers in this stage
    float learning_rate = 0.05f;
    std::uint32_t seed = 11;
    bool empty = false; ///< overhead measurement: one empty kernel per call
};

class cuda_stage {
public:
    using buffer_type = paci::device_buffer;

    /// `losses`: where the last stage writes micro-batch `m`'s loss (device memory, `losses[m]`);
    /// null on the other stages.
    cuda_stage(const stage_config& cfg, float* losses) : cfg_(cfg), losses_(losses) {
        cuda_ok(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
        if (cfg_.empty) return;
        params_ = device_floats(layer_floats() * static_cast<std::size_t>(cfg_.layers));
        grads_ = device_floats(params_.size);
        reset();
        scratch_[0] = device_floats(activation_floats());
        scratch_[1] = device_floats(activation_floats());
        if (last()) target_ = device_floats(activation_floats());
        cublas_ok(cublasCreate(&blas_), "cublasCreate");
        cublas_ok(cublasSetStream(blas_, stream_), "cublasSetStream");
        // A workspace of the stage's own, so cuBLAS never allocates (and the results do not depend
        // on sharing one between streams).
        workspace_ = device_floats(std::size_t{1} << 20);
        cublas_ok(cublasSetWorkspace(blas_, workspace_.data, workspace_.size * sizeof(float)), "cublasSetWorkspace");
        cublas_ok(cublasSetMathMode(blas_, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode"); // plain FP32, no TF32
    }
    cuda_stage(const cuda_stage&) = delete;
    cuda_stage& operator=(const cuda_stage&) = delete;
    ~cuda_stage() {
        if (stream_ != nullptr) static_cast<void>(cudaStreamSynchronize(stream_));
        if (blas_ != nullptr) static_cast<void>(cublasDestroy(blas_));
        active_.clear();
        free_slots_.clear();
        spare_.clear();
        if (stream_ != nullptr) static_cast<void>(cudaStreamDestroy(stream_));
    }

    /// Back to the initial parameters (a pure function of the seed, the stage and the layer) and
    /// zero gradients, on the stage's stream. Call it between runs, with no micro-batch in flight.
    void reset() {
        if (cfg_.empty) return;
        const auto w = static_cast<std::size_t>(cfg_.width);
        cuda_ok(cudaMemsetAsync(params_.data, 0, params_.size * sizeof(float), stream_), "cudaMemsetAsync");
        cuda_ok(cudaMemsetAsync(grads_.data, 0, grads_.size * sizeof(float), stream_), "cudaMemsetAsync");
        for (int l = 0; l < cfg_.layers; ++l)
            launch_fill_uniform(weight(l), w * w, 1.7320508f / std::sqrt(static_cast<float>(cfg_.width)), cfg_.seed,
                                static_cast<std::uint32_t>(1000 + 16 * cfg_.index + l), stream_);
    }

    [[nodiscard]] cudaStream_t stream() const noexcept { return stream_; }
    [[nodiscard]] const stage_config& config() const noexcept { return cfg_; }
    [[nodiscard]] std::size_t message_bytes() const noexcept {
        return cfg_.empty ? sizeof(float) : activation_floats() * sizeof(float);
    }
    /// Parameters as a device array (read it after the stream is idle).
    [[nodiscard]] const device_floats& parameters() const noexcept { return params_; }
    /// How many activation slots and spare buffers were ever made (constant in steady state).
    [[nodiscard]] std::size_t allocations() const noexcept { return allocations_.load(); }

    void set_loss_scale(double factor) { loss_scale_ = static_cast<float>(factor); }

    buffer_type forward(int m, buffer_type in) {
        if (cfg_.empty) return empty_call(std::move(in), !last());
        if (first()) {
            in = take_buffer();
            launch_fill_input(in.data_as<float>(), cfg_.width, cfg_.batch, m, cfg_.seed, stream_);
        } else {
            check_size(in, "forward input");
            in.wait_ready(stream_);
        }
        slot& s = acquire(m);
        s.input = std::move(in);
        const float* a = s.input.data_as<float>();
        buffer_type out;
        if (!last()) out = take_buffer();
        for (int l = 0; l < cfg_.layers; ++l) {
            float* z = s.acts.data + static_cast<std::size_t>(l) * activation_floats();
            gemm(CUBLAS_OP_N, CUBLAS_OP_N, cfg_.width, cfg_.batch, cfg_.width, 1.0f, weight(l), a, 0.0f, z);
            const bool head = last() && l + 1 == cfg_.layers;
            float* copy = (!last() && l + 1 == cfg_.layers) ? out.data_as<float>() : nullptr;
            launch_bias_act(z, bias(l), copy, cfg_.width, cfg_.batch, head, stream_);
            a = z;
        }
        if (last()) {
            launch_fill_target(target_.data, cfg_.width, cfg_.batch, m, cfg_.seed, stream_);
            launch_mse(a, target_.data, s.dy.data, losses_ + m, static_cast<int>(activation_floats()), cfg_.batch,
                       loss_scale_, stream_);
            return {};
        }
        out.record_ready(stream_);
        return out;
    }

    buffer_type backward(int m, buffer_type g) {
        if (cfg_.empty) return empty_call(std::move(g), !first());
        auto it = active_.find(m);
        if (it == active_.end())
            throw std::logic_error("paci::cuda example: backward of micro-batch (" + std::to_string(m) +
                                   ") without its forward");
        slot& s = *it->second;
        float* grad = nullptr;
        if (last()) {
            grad = s.dy.data;
        } else {
            check_size(g, "output gradient");
            g.wait_ready(stream_);
            grad = g.data_as<float>();
        }
        buffer_type result;
        for (int l = cfg_.layers - 1; l >= 0; --l) {
            const float* out = s.acts.data + static_cast<std::size_t>(l) * activation_floats();
            const bool head = last() && l + 1 == cfg_.layers;
            if (!head) launch_act_backward(grad, out, cfg_.width, cfg_.batch, stream_); // grad is now dZ
            const float* in = l == 0 ? s.input.data_as<float>() : s.acts.data + static_cast<std::size_t>(l - 1) * activation_floats();
            // dW += dZ A_in^T; db += rowsum(dZ)
            gemm(CUBLAS_OP_N, CUBLAS_OP_T, cfg_.width, cfg_.width, cfg_.batch, 1.0f, grad, in, 1.0f, weight_grad(l));
            launch_bias_grad(bias_grad(l), grad, cfg_.width, cfg_.batch, stream_);
            if (l > 0) {
                float* next = grad == scratch_[0].data ? scratch_[1].data : scratch_[0].data;
                gemm(CUBLAS_OP_T, CUBLAS_OP_N, cfg_.width, cfg_.batch, cfg_.width, 1.0f, weight(l), grad, 0.0f, next);
                grad = next;
            } else if (!first()) {
                // The input gradient goes into the input's own buffer: the weight gradient above has
                // read the input already (same stream), and the previous stage gets its buffer back.
                gemm(CUBLAS_OP_T, CUBLAS_OP_N, cfg_.width, cfg_.batch, cfg_.width, 1.0f, weight(0), grad, 0.0f,
                     s.input.data_as<float>());
                result = std::move(s.input);
                result.record_ready(stream_);
            } else {
                give_back(std::move(s.input));
            }
        }
        if (!last()) give_back(std::move(g));
        free_slots_.push_back(std::move(it->second));
        active_.erase(it);
        return result;
    }

    void step() {
        if (cfg_.empty) {
            launch_empty(stream_);
            return;
        }
        launch_sgd(params_.data, grads_.data, params_.size, cfg_.learning_rate, stream_);
    }

private:
    struct slot {
        buffer_type input;
        device_floats acts; // layers x (width x batch): each layer's output
        device_floats dy;   // last stage: the loss gradient
    };

    [[nodiscard]] bool first() const noexcept { return cfg_.index == 0; }
    [[nodiscard]] bool last() const noexcept { return cfg_.index + 1 == cfg_.stages; }
    [[nodiscard]] std::size_t activation_floats() const noexcept {
        return static_cast<std::size_t>(cfg_.width) * static_cast<std::size_t>(cfg_.batch);
    }
    [[nodiscard]] std::size_t layer_floats() const noexcept {
        return static_cast<std::size_t>(cfg_.width) * static_cast<std::size_t>(cfg_.width) + static_cast<std::size_t>(cfg_.width);
    }
    [[nodiscard]] float* weight(int l) const noexcept { return params_.data + static_cast<std::size_t>(l) * layer_floats(); }
    [[nodiscard]] float* bias(int l) const noexcept { return weight(l) + static_cast<std::size_t>(cfg_.width) * static_cast<std::size_t>(cfg_.width); }
    [[nodiscard]] float* weight_grad(int l) const noexcept { return grads_.data + static_cast<std::size_t>(l) * layer_floats(); }
    [[nodiscard]] float* bias_grad(int l) const noexcept { return weight_grad(l) + static_cast<std::size_t>(cfg_.width) * static_cast<std::size_t>(cfg_.width); }

    /// Column-major SGEMM on the stage's stream: C = alpha op(A) op(B) + beta C, all leading
    /// dimensions `width`.
    void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const float* a,
              const float* b, float beta, float* c) {
        cublas_ok(cublasSgemm(blas_, ta, tb, m, n, k, &alpha, a, cfg_.width, b, cfg_.width, &beta, c, cfg_.width),
                  "cublasSgemm");
    }

    void check_size(const buffer_type& b, const char* what) const {
        if (b.size() != message_bytes())
            throw std::logic_error(std::string("paci::cuda example: ") + what + " of (" + std::to_string(b.size()) +
                                   ") bytes must be " + std::to_string(message_bytes()) + " bytes");
    }

    buffer_type take_buffer() {
        if (!spare_.empty()) {
            buffer_type b = std::move(spare_.back());
            spare_.pop_back();
            return b;
        }
        ++allocations_;
        return buffer_type(message_bytes());
    }
    void give_back(buffer_type&& b) {
        if (b.size() == message_bytes()) spare_.push_back(std::move(b));
    }

    slot& acquire(int m) {
        if (active_.count(m) != 0)
            throw std::logic_error("paci::cuda example: second forward of micro-batch (" + std::to_string(m) + ")");
        std::unique_ptr<slot> s;
        if (!free_slots_.empty()) {
            s = std::move(free_slots_.back());
            free_slots_.pop_back();
        } else {
            ++allocations_;
            s = std::make_unique<slot>();
            s->acts = device_floats(activation_floats() * static_cast<std::size_t>(cfg_.layers));
            if (last()) s->dy = device_floats(activation_floats());
        }
        return *active_.emplace(m, std::move(s)).first->second;
    }

    /// The empty mode: wait for the input, launch one empty kernel, pass a buffer on.
    buffer_type empty_call(buffer_type in, bool pass_on) {
        in.wait_ready(stream_);
        launch_empty(stream_);
        if (!pass_on) {
            give_back(std::move(in));
            return {};
        }
        buffer_type out = in.empty() ? take_buffer() : std::move(in);
        out.record_ready(stream_);
        return out;
    }

    stage_config cfg_;
    float* losses_ = nullptr;
    float loss_scale_ = 1.0f;
    cudaStream_t stream_ = nullptr;
    cublasHandle_t blas_ = nullptr;
    device_floats params_, grads_, workspace_, target_;
    device_floats scratch_[2];
    std::map<int, std::unique_ptr<slot>> active_;
    std::vector<std::unique_ptr<slot>> free_slots_;
    std::vector<buffer_type> spare_;
    std::atomic<std::size_t> allocations_{0}; // read by another thread while the stage runs
};

} // namespace cuex
