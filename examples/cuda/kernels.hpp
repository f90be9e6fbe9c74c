#pragma once
// The CUDA work of the example's stages: launchers of the kernels in kernels.cu (compiled by nvcc)
// for the host code (compiled by the C++ compiler). Every launcher enqueues on `stream` and
// returns at once; none synchronizes. Activations are column-major `width x batch` (one sample
// per column), as cuBLAS expects.

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace cuex {

/// `x[i + width * j]` = the input of sample `j` of micro-batch `microbatch`, uniform in [-1, 1).
void launch_fill_input(float* x, int width, int batch, std::int64_t microbatch, std::uint32_t seed, cudaStream_t stream);
/// The regression target of micro-batch `microbatch`: `t = 0.5 sin(2 x_i) + 0.25 x_{i+1}` of its input.
void launch_fill_target(float* t, int width, int batch, std::int64_t microbatch, std::uint32_t seed, cudaStream_t stream);
/// `n` values uniform in [-scale, scale), a pure function of (`seed`, `salt`, index).
void launch_fill_uniform(float* p, std::size_t n, float scale, std::uint32_t seed, std::uint32_t salt, cudaStream_t stream);
/// In place: `z = act(z + b)` per column (`act` = tanh, or the identity when `linear`); when
/// `copy` is not null the result is also written there.
void launch_bias_act(float* z, const float* bias, float* copy, int width, int batch, bool linear, cudaStream_t stream);
/// In place: `g = g * act'(a)` where `a = act(z)` is the layer's output (tanh: 1 - a^2).
void launch_act_backward(float* g, const float* a, int width, int batch, cudaStream_t stream);
/// `db[i] += sum_j dz[i + width * j]` (one thread per row, fixed order: deterministic).
void launch_bias_grad(float* db, const float* dz, int width, int batch, cudaStream_t stream);
/// Squared error of `y` against `t` (`n` values, `batch` samples), averaged over the samples:
/// `*loss = 0.5 sum (y - t)^2 / batch` (one block, fixed reduction order: deterministic) and
/// `dy = (y - t) * grad_scale / batch`.
void launch_mse(const float* y, const float* t, float* dy, float* loss, int n, int batch, float grad_scale,
                cudaStream_t stream);
/// Plain SGD over `n` parameters: `p -= lr * g; g = 0`.
void launch_sgd(float* p, float* g, std::size_t n, float lr, cudaStream_t stream);
/// A kernel that does nothing (for the overhead measurement).
void launch_empty(cudaStream_t stream);
/// A kernel that spins until `*flag != 0` (host-mapped memory): holds back everything queued on
/// `stream` after it, so the host can show that it runs ahead without waiting for the device.
void launch_gate(const volatile int* flag, cudaStream_t stream);

} // namespace cuex
