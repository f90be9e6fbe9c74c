#pragma once
/// \file
/// `device_buffer`: a move-only block of device memory with the CUDA event that marks when its
/// contents are ready. The buffer type of `nccl_communicator`. Part of the optional `paci::nccl`
/// CMake component.

#include <paci/nccl/error.hpp>

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

namespace paci {

/// A block of device memory (`cudaMalloc` on the current device) of `size()` bytes, with a
/// readiness event: whoever writes the contents on a stream records the event there
/// (`record_ready(stream)`), and whoever reads them on another stream waits for it first
/// (`wait_ready(stream)`). Move-only; the destructor frees the memory (`cudaFree`, which waits
/// for the device to finish what it was doing) and the event.
///
/// A default-constructed (or moved-from) buffer is empty: no memory, no event; every member is
/// still valid on it (`wait_ready` does nothing, `ready()` is true). This is the "empty buffer" a
/// stage receives as the first stage's forward input or the last stage's output gradient.
///
///     paci::device_buffer out(bytes);                 // on the current device
///     my_kernel<<<grid, block, 0, compute>>>(in.data_as<float>(), out.data_as<float>());
///     out.record_ready(compute);                      // contents valid once `compute` gets here
///     auto send = comm.isend(next, tag, std::move(out));
///
/// `cudaFree` synchronizes the device; a stage that allocates and frees a buffer per micro-batch
/// pays for that. `nccl_communicator` reuses the buffers of completed sends for receives of the
/// same size, so a pipeline in steady state allocates little.
class device_buffer {
public:
    /// An empty buffer.
    device_buffer() noexcept = default;

    /// `bytes` bytes of uninitialized device memory on the current device and an unrecorded event
    /// (no memory and no event when `bytes` is 0).
    /// \throws cuda_error when `cudaMalloc` or `cudaEventCreateWithFlags` fails.
    explicit device_buffer(std::size_t bytes) {
        if (bytes == 0) return;
        detail::cuda_check(cudaMalloc(&data_, bytes), "device_buffer", "cudaMalloc of ", bytes, " bytes");
        size_ = bytes;
        const cudaError_t status = cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming);
        if (status != cudaSuccess) {
            reset();
            detail::cuda_check(status, "device_buffer", "cudaEventCreateWithFlags");
        }
    }

    device_buffer(device_buffer&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)),
          ready_(std::exchange(other.ready_, nullptr)), recorded_(std::exchange(other.recorded_, false)) {}
    device_buffer& operator=(device_buffer&& other) noexcept {
        if (this != &other) {
            reset();
            data_ = std::exchange(other.data_, nullptr);
            size_ = std::exchange(other.size_, 0);
            ready_ = std::exchange(other.ready_, nullptr);
            recorded_ = std::exchange(other.recorded_, false);
        }
        return *this;
    }
    device_buffer(const device_buffer&) = delete;
    device_buffer& operator=(const device_buffer&) = delete;
    ~device_buffer() { reset(); }

    /// The device pointer (null when empty).
    [[nodiscard]] void* data() const noexcept { return data_; }
    /// The device pointer as `T*` (the caller knows what the bytes hold).
    template <class T>
    [[nodiscard]] T* data_as() const noexcept {
        return static_cast<T*>(data_);
    }
    /// Size in bytes.
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

    /// The readiness event (null when empty). Recorded by `record_ready`; a stream that reads the
    /// contents waits on it (`cudaStreamWaitEvent`).
    [[nodiscard]] cudaEvent_t ready_event() const noexcept { return ready_; }
    /// True once `record_ready` has been called (an event never recorded orders nothing).
    [[nodiscard]] bool recorded() const noexcept { return recorded_; }

    /// Marks the contents ready once the work queued on `stream` so far has run.
    /// \throws cuda_error.
    void record_ready(cudaStream_t stream) {
        if (ready_ == nullptr) return;
        detail::cuda_check(cudaEventRecord(ready_, stream), "device_buffer", "cudaEventRecord");
        recorded_ = true;
    }
    /// Makes later work on `stream` wait until the contents are ready (no host wait).
    /// \throws cuda_error.
    void wait_ready(cudaStream_t stream) const {
        if (ready_ == nullptr || !recorded_) return;
        detail::cuda_check(cudaStreamWaitEvent(stream, ready_, 0), "device_buffer", "cudaStreamWaitEvent");
    }
    /// True when the contents are ready now (`cudaEventQuery`); true for an empty or unrecorded buffer.
    /// \throws cuda_error when the device reports an error.
    [[nodiscard]] bool ready() const {
        if (ready_ == nullptr || !recorded_) return true;
        const cudaError_t status = cudaEventQuery(ready_);
        if (status == cudaErrorNotReady) return false;
        detail::cuda_check(status, "device_buffer", "cudaEventQuery");
        return true;
    }
    /// Blocks the host until the contents are ready (`cudaEventSynchronize`).
    /// \throws cuda_error.
    void synchronize() const {
        if (ready_ == nullptr || !recorded_) return;
        detail::cuda_check(cudaEventSynchronize(ready_), "device_buffer", "cudaEventSynchronize");
    }

    /// Frees the memory and the event; the buffer becomes empty.
    void reset() noexcept {
        if (ready_ != nullptr) static_cast<void>(cudaEventDestroy(ready_));
        if (data_ != nullptr) static_cast<void>(cudaFree(data_));
        data_ = nullptr;
        size_ = 0;
        ready_ = nullptr;
        recorded_ = false;
    }

    friend void swap(device_buffer& a, device_buffer& b) noexcept {
        std::swap(a.data_, b.data_);
        std::swap(a.size_, b.size_);
        std::swap(a.ready_, b.ready_);
        std::swap(a.recorded_, b.recorded_);
    }

private:
    void* data_ = nullptr;
    std::size_t size_ = 0;
    cudaEvent_t ready_ = nullptr;
    bool recorded_ = false;
};

} // namespace paci
