// The CUDA kernels of the example (see kernels.hpp).
#include "kernels.hpp"

#include <cstdint>

namespace cuex {
namespace {

constexpr int threads = 256;

__host__ __device__ inline std::uint32_t mix32(std::uint32_t z) {
    z ^= z >> 16;
    z *= 0x7feb352dU;
    z ^= z >> 15;
    z *= 0x846ca68bU;
    z ^= z >> 16;
    return z;
}

__device__ inline float uniform_pm1(std::uint32_t seed, std::uint32_t a, std::uint32_t b) {
    const std::uint32_t z = mix32(mix32(mix32(seed ^ 0x9e3779b9U) ^ a) ^ b);
    return static_cast<float>(z >> 8) * (1.0f / 8388608.0f) - 1.0f; // [-1, 1)
}

__device__ inline float input_at(std::uint32_t seed, std::int64_t m, int i, int j, int width) {
    return uniform_pm1(seed, static_cast<std::uint32_t>(m), static_cast<std::uint32_t>(i + width * j));
}

__global__ void fill_input(float* x, int width, int batch, std::int64_t m, std::uint32_t seed) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= width * batch) return;
    x[k] = input_at(seed, m, k % width, k / width, width);
}

__global__ void fill_target(float* t, int width, int batch, std::int64_t m, std::uint32_t seed) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= width * batch) return;
    const int i = k % width, j = k / width;
    t[k] = 0.5f * sinf(2.0f * input_at(seed, m, i, j, width)) + 0.25f * input_at(seed, m, (i + 1) % width, j, width);
}

__global__ void fill_uniform(float* p, std::size_t n, float scale, std::uint32_t seed, std::uint32_t salt) {
    const std::size_t k = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
    if (k >= n) return;
    p[k] = scale * uniform_pm1(seed, salt, static_cast<std::uint32_t>(k));
}

__global__ void bias_act(float* z, const float* b, float* copy, int width, int batch, bool linear) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= width * batch) return;
    const float v = z[k] + b[k % width];
    const float a = linear ? v : tanhf(v);
    z[k] = a;
    if (copy != nullptr) copy[k] = a;
}

__global__ void act_backward(float* g, const float* a, int n) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n) return;
    g[k] *= 1.0f - a[k] * a[k];
}

__global__ void bias_grad(float* db, const float* dz, int width, int batch) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= width) return;
    float sum = 0.0f;
    for (int j = 0; j < batch; ++j) sum += dz[i + width * j];
    db[i] += sum;
}

__global__ void mse(const float* y, const float* t, float* dy, float* loss, int n, int batch, float grad_scale) {
    __shared__ float part[threads];
    float sum = 0.0f;
    const float inv_batch = 1.0f / static_cast<float>(batch);
    for (int k = threadIdx.x; k < n; k += blockDim.x) {
        const float d = y[k] - t[k];
        dy[k] = d * grad_scale * inv_batch;
        sum += d * d;
    }
    part[threadIdx.x] = sum;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (static_cast<int>(threadIdx.x) < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) *loss = 0.5f * part[0] * inv_batch;
}

__global__ void sgd(float* p, float* g, std::size_t n, float lr) {
    const std::size_t k = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
    if (k >= n) return;
    p[k] -= lr * g[k];
    g[k] = 0.0f;
}

__global__ void empty() {}

__global__ void gate(const volatile int* flag) {
    while (*flag == 0) {
#if __CUDA_ARCH__ >= 700
        __nanosleep(1000);
#endif
    }
}

unsigned blocks(std::size_t n) { return static_cast<unsigned>((n + threads - 1) / threads); }

} // namespace

void launch_fill_input(float* x, int width, int batch, std::int64_t microbatch, std::uint32_t seed, cudaStream_t stream) {
    fill_input<<<blocks(static_cast<std::size_t>(width) * batch), threads, 0, stream>>>(x, width, batch, microbatch, seed);
}
void launch_fill_target(float* t, int width, int batch, std::int64_t microbatch, std::uint32_t seed, cudaStream_t stream) {
    fill_target<<<blocks(static_cast<std::size_t>(width) * batch), threads, 0, stream>>>(t, width, batch, microbatch, seed);
}
void launch_fill_uniform(float* p, std::size_t n, float scale, std::uint32_t seed, std::uint32_t salt, cudaStream_t stream) {
    fill_uniform<<<blocks(n), threads, 0, stream>>>(p, n, scale, seed, salt);
}
void launch_bias_act(float* z, const float* bias, float* copy, int width, int batch, bool linear, cudaStream_t stream) {
    bias_act<<<blocks(static_cast<std::size_t>(width) * batch), threads, 0, stream>>>(z, bias, copy, width, batch, linear);
}
void launch_act_backward(float* g, const float* a, int width, int batch, cudaStream_t stream) {
    act_backward<<<blocks(static_cast<std::size_t>(width) * batch), threads, 0, stream>>>(g, a, width * batch);
}
void launch_bias_grad(float* db, const float* dz, int width, int batch, cudaStream_t stream) {
    bias_grad<<<blocks(static_cast<std::size_t>(width)), threads, 0, stream>>>(db, dz, width, batch);
}
void launch_mse(const float* y, const float* t, float* dy, float* loss, int n, int batch, float grad_scale,
                cudaStream_t stream) {
    mse<<<1, threads, 0, stream>>>(y, t, dy, loss, n, batch, grad_scale);
}
void launch_sgd(float* p, float* g, std::size_t n, float lr, cudaStream_t stream) {
    sgd<<<blocks(n), threads, 0, stream>>>(p, g, n, lr);
}
void launch_empty(cudaStream_t stream) { empty<<<1, 1, 0, stream>>>(); }
void launch_gate(const volatile int* flag, cudaStream_t stream) { gate<<<1, 1, 0, stream>>>(flag); }

} // namespace cuex
