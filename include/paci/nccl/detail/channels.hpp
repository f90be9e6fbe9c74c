#pragma once
/// \file
/// Internals of `nccl_communicator`: the channels (one NCCL communicator and one stream each),
/// their creation, error polling, abort and shutdown. `nccl_channels` holds the mutex that guards
/// the NCCL handles, so that `abort` may come from any thread.

#include <paci/core/error.hpp>
#include <paci/nccl/error.hpp>
#include <paci/nccl/options.hpp>
#include <paci/runtime/detail/backoff.hpp>
#include <paci/runtime/detail/deadline.hpp>
#include <paci/runtime/errors.hpp>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace paci::detail {

/// The polling rhythm of the NCCL transport's waits: yield for the first millisecond (a transfer
/// between GPUs of one node takes microseconds), then sleep from 20 us, doubling up to 1 ms.
[[nodiscard]] inline backoff nccl_pace() {
    return backoff(std::chrono::milliseconds(1), std::chrono::microseconds(20), std::chrono::milliseconds(1));
}

/// Makes `device` current for a scope and restores the previous device (the communicator's
/// streams, events and buffers belong to the device it was created on).
class cuda_device_guard {
public:
    explicit cuda_device_guard(int device) noexcept {
        if (cudaGetDevice(&previous_) == cudaSuccess && previous_ != device) restore_ = cudaSetDevice(device) == cudaSuccess;
    }
    cuda_device_guard(const cuda_device_guard&) = delete;
    cuda_device_guard& operator=(const cuda_device_guard&) = delete;
    ~cuda_device_guard() {
        if (restore_) static_cast<void>(cudaSetDevice(previous_));
    }

private:
    int previous_ = 0;
    bool restore_ = false;
};

/// Device memory for the duration of a setup step, freed on every way out.
struct scratch_memory {
    void* data = nullptr;
    scratch_memory() = default;
    scratch_memory(const scratch_memory&) = delete;
    scratch_memory& operator=(const scratch_memory&) = delete;
    ~scratch_memory() {
        if (data != nullptr) static_cast<void>(cudaFree(data));
    }
};

/// The channels of one `nccl_communicator`: their configuration, creation, polling, abort and the
/// NCCL side of shutdown. The base of `nccl_state`.
class nccl_channels {
public:
    using clock = std::chrono::steady_clock;

    nccl_channels(int rank, int size, nccl_options options)
        : rank_(rank), size_(size), options_(std::move(options)) {
        const bool ring = options_.channels == 0 && !options_.channel_of;
        config_require(options_.channels >= 0, "nccl_communicator", "channels", options_.channels, "must be >= 0");
        config_require(ring || options_.channels >= 1, "nccl_communicator", "channels", options_.channels,
                       "must be >= 1 with a channel_of of one's own");
        config_require(ring || options_.channels == 1 || static_cast<bool>(options_.channel_of), "nccl_communicator",
                       "channels", options_.channels, "needs a channel_of when > 1");
        channel_count_ = ring ? nccl_ring_channels(size_) : options_.channels;
        early_receives_ = options_.early_receives.value_or(ring);
    }
    nccl_channels(const nccl_channels&) = delete;
    nccl_channels& operator=(const nccl_channels&) = delete;
    ~nccl_channels() = default;

    /// Creates the streams and the NCCL communicators on the current device: channel 0 from `id`,
    /// every other one split from channel 0 (or, with `nccl_channel_setup::init_rank`, initialized
    /// from an id of its own that rank 0 broadcasts over channel 0).
    ///
    /// The split of a non-blocking communicator is non-blocking too, and NCCL treats it like a
    /// collective on the parent: `ncclCommSplit` returns `ncclInProgress`, the parent stays
    /// `ncclInProgress` until the split is done, and the child's handle is written only then (so
    /// it is still null when the call returns; NVIDIA/nccl#1472, and PyTorch's non-blocking split
    /// waits on the parent for the same reason). paci used to treat that null handle as a failure:
    /// it reported `ncclInternalError` itself ("ncclCommSplit failed: internal error (nccl error
    /// 3)", with no NCCL text) and aborted the parent while the split job was running, which NCCL
    /// then logged as a failed job. So: the handle is written into storage that outlives the call
    /// (`split_slots_`), the parent is polled until it is idle, only then is the handle read, and
    /// the child is polled until its own initialization is done before it is used.
    void init(const ncclUniqueId& id) {
        cuda_check(cudaGetDevice(&device_), "nccl_communicator", "cudaGetDevice");
        int least = 0, greatest = 0;
        cuda_check(cudaDeviceGetStreamPriorityRange(&least, &greatest), "nccl_communicator",
                   "cudaDeviceGetStreamPriorityRange");
        channels_.resize(static_cast<std::size_t>(channel_count_));
        split_slots_.assign(static_cast<std::size_t>(channel_count_), nullptr);
        for (channel& ch : channels_)
            cuda_check(cudaStreamCreateWithPriority(&ch.stream, cudaStreamNonBlocking,
                                                    options_.high_priority_streams ? greatest : least),
                       "nccl_communicator", "cudaStreamCreateWithPriority");

        const auto deadline = deadline_after(options_.setup_timeout);
        ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
        config.blocking = options_.blocking ? 1 : 0;
        config.splitShare = 0; // each channel its own resources, so the channels run concurrently
        std::unique_lock lock(mutex_);
        ncclComm_t first = nullptr;
        const ncclResult_t status = ncclCommInitRankConfig(&first, size_, id, rank_, &config);
        channels_[0].comm = first;
        finish_setup(lock, 0, status, deadline, "ncclCommInitRankConfig");
        if (options_.channel_setup == nccl_channel_setup::init_rank) {
            init_by_id(lock, config, deadline);
            return;
        }
        for (std::size_t k = 1; k < channels_.size(); ++k) {
            ncclComm_t& slot = split_slots_[k];
            const ncclResult_t split = ncclCommSplit(channels_[0].comm, 0, rank_, &slot, &config);
            if (split != ncclSuccess && split != ncclInProgress) fail_locked(split, 0, "ncclCommSplit");
            // The parent is busy with the split until it is done: wait for it (this also reports
            // the split's own failure), then the child's handle has been written.
            finish_setup(lock, 0, ncclInProgress, deadline, "ncclCommSplit (waiting for the parent)");
            if (slot == nullptr) {
                const std::string what = concat("paci::nccl_communicator: ncclCommSplit (channel ", k,
                                                ") returned no communicator (null) although the parent is idle");
                abort_locked(what);
                throw nccl_error(what, ncclInternalError);
            }
            channels_[k].comm = std::exchange(slot, nullptr);
            finish_setup(lock, k, ncclInProgress, deadline, "ncclCommSplit");
        }
    }

    [[nodiscard]] int rank() const noexcept { return rank_; }
    [[nodiscard]] int size() const noexcept { return size_; }
    [[nodiscard]] int device() const noexcept { return device_; }
    [[nodiscard]] int channel_count() const noexcept { return channel_count_; }
    [[nodiscard]] bool early_receives() const noexcept { return early_receives_; }
    [[nodiscard]] bool aborted() const noexcept { return aborted_.load(); }
    [[nodiscard]] const nccl_options& options() const noexcept { return options_; }
    [[nodiscard]] cudaStream_t comm_stream(int k) const noexcept {
        return k >= 0 && k < channel_count_ && !channels_.empty() ? channels_[static_cast<std::size_t>(k)].stream : nullptr;
    }
    [[nodiscard]] ncclComm_t handle(int k) const {
        std::lock_guard lock(mutex_);
        return k >= 0 && k < channel_count_ && !channels_.empty() ? channels_[static_cast<std::size_t>(k)].comm : nullptr;
    }

    /// The channel of a message from `from` to `to` with `tag`.
    /// \throws config_error when a `channel_of` of the user's gives a channel out of range.
    [[nodiscard]] int channel_for(int from, int to, int tag) const {
        if (!options_.channel_of) return channel_count_ == 1 ? 0 : nccl_ring_channel(from, to, size_);
        const int k = options_.channel_of(from, to, tag);
        config_require(k >= 0 && k < channel_count_, "nccl_communicator", "channel_of(from, to, tag)", k,
                       concat("must be in [0, ", channel_count_, ")"));
        return k;
    }

    /// Aborts every NCCL communicator (`ncclCommAbort`): their kernels stop, every wait on this rank
    /// throws `aborted_error`. Returns true the first time. Any thread.
    bool abort(const char* why) noexcept {
        std::lock_guard lock(mutex_);
        return abort_locked(why != nullptr ? why : "aborted");
    }
    /// True the first time: whoever gets true calls the user's `on_abort`.
    bool claim_abort_hook() noexcept { return !hook_called_.exchange(true); }

protected:
    struct channel {
        ncclComm_t comm = nullptr; // guarded by mutex_
        cudaStream_t stream = nullptr;
    };

    [[nodiscard]] static double seconds(std::chrono::nanoseconds t) { return std::chrono::duration<double>(t).count(); }

    [[nodiscard]] std::string aborted_message() const {
        return concat("paci::nccl_communicator: aborted: ", reason_.empty() ? std::string("aborted") : reason_);
    }

    [[noreturn]] void throw_aborted() const {
        std::lock_guard lock(mutex_);
        throw aborted_error(aborted_message());
    }

    /// With `mutex_` held: ends the setup of channel `k` whose creating call returned `status`.
    void finish_setup(std::unique_lock<std::mutex>& lock, std::size_t k, ncclResult_t status,
                      clock::time_point deadline, const char* call) {
        if (status == ncclInProgress) status = poll_state(lock, k, deadline);
        if (status == ncclInProgress) {
            const std::string what = concat("paci::nccl_communicator: ", call, " (rank ", rank_, " of ", size_,
                                            ", channel ", k, ") did not complete within ",
                                            seconds(options_.setup_timeout),
                                            " s; do all ranks construct it with the same unique id and options?");
            abort_locked(what);
            throw nccl_error(what, ncclInProgress);
        }
        if (status != ncclSuccess) fail_locked(status, k, call);
    }

    /// With `mutex_` held. True the first time. Children (split from channel 0) before the parent.
    bool abort_locked(const std::string& why) noexcept {
        if (aborted_) return false;
        try {
            reason_ = why;
        } catch (...) {
        }
        aborted_ = true;
        for (std::size_t k = channels_.size(); k-- > 0;) {
            if (channels_[k].comm != nullptr) static_cast<void>(ncclCommAbort(channels_[k].comm));
            channels_[k].comm = nullptr;
        }
        return true;
    }

    /// With `mutex_` held: aborts and throws `nccl_error` for `status` from `call` on channel `k`.
    [[noreturn]] void fail_locked(ncclResult_t status, std::size_t k, const char* call) {
        const ncclComm_t comm = k < channels_.size() ? channels_[k].comm : nullptr;
        const std::string what =
            concat("paci::nccl_communicator: ", call, " failed: ", nccl_status_text(status, comm));
        abort_locked(what);
        throw nccl_error(what, status);
    }
    /// With `mutex_` held: aborts and throws `cuda_error` for `status` from `call`.
    [[noreturn]] void fail_cuda_locked(cudaError_t status, const char* call) {
        const std::string what = concat("paci::nccl_communicator: ", call, " failed: ", cudaGetErrorString(status),
                                        " (cuda error ", static_cast<int>(status), ")");
        abort_locked(what);
        throw cuda_error(what, status);
    }
    void cuda_or_abort(cudaError_t status, const char* call) {
        if (status == cudaSuccess) return;
        std::lock_guard lock(mutex_);
        fail_cuda_locked(status, call);
    }

    /// With `mutex_` held: polls channel `k`'s state while NCCL works in the background
    /// (non-blocking communicator), releasing the lock between polls so `abort` can come in.
    /// Returns the final state, or `ncclInProgress` when `deadline` passed first.
    /// \throws aborted_error when the communicator was aborted meanwhile.
    ncclResult_t poll_state(std::unique_lock<std::mutex>& lock, std::size_t k, clock::time_point deadline) {
        backoff pace = nccl_pace();
        for (;;) {
            if (channels_[k].comm == nullptr) throw aborted_error(aborted_message());
            ncclResult_t state = ncclSuccess;
            const ncclResult_t status = ncclCommGetAsyncError(channels_[k].comm, &state);
            if (status != ncclSuccess) return status;
            if (state != ncclInProgress) return state;
            if (clock::now() >= deadline) return ncclInProgress;
            lock.unlock();
            pace.pause(deadline);
            lock.lock();
        }
    }

    /// Throws `nccl_error` (after aborting) when NCCL reports an asynchronous error on a channel: a
    /// peer that failed or disconnected, a network error.
    void check_async() {
        std::lock_guard lock(mutex_);
        for (std::size_t k = 0; k < channels_.size(); ++k) {
            if (channels_[k].comm == nullptr) continue;
            ncclResult_t state = ncclSuccess;
            const ncclResult_t status = ncclCommGetAsyncError(channels_[k].comm, &state);
            if (status != ncclSuccess) fail_locked(status, k, "ncclCommGetAsyncError");
            if (state != ncclSuccess && state != ncclInProgress) fail_locked(state, k, "communication (asynchronous error)");
        }
    }

    /// The NCCL side of shutdown: waits (up to `setup_timeout`) until every channel's stream is
    /// idle, then `ncclCommFinalize` + `ncclCommDestroy` on every channel; aborts instead when that
    /// does not finish, when NCCL reported an error, or when it was aborted already. Then waits for
    /// the streams (after an abort the NCCL kernels exit, so this returns). Streams stay.
    void close_comms() noexcept {
        std::unique_lock lock(mutex_);
        const auto live = [&] {
            return std::any_of(channels_.begin(), channels_.end(), [](const channel& c) { return c.comm != nullptr; });
        };
        if (live()) {
            const auto deadline = deadline_after(options_.setup_timeout);
            bool clean = !aborted_ && drain(lock, deadline);
            std::vector<ncclResult_t> finalized(channels_.size(), ncclSuccess);
            for (std::size_t k = 0; clean && k < channels_.size(); ++k) {
                if (channels_[k].comm == nullptr) continue;
                finalized[k] = ncclCommFinalize(channels_[k].comm);
                clean = finalized[k] == ncclSuccess || finalized[k] == ncclInProgress;
            }
            for (std::size_t k = 0; clean && k < channels_.size(); ++k) {
                if (finalized[k] != ncclInProgress) continue;
                try {
                    clean = poll_state(lock, k, deadline) == ncclSuccess;
                } catch (...) {
                    clean = false;
                }
            }
            // Children (split from channel 0) before the parent.
            for (std::size_t k = channels_.size(); k-- > 0;) {
                ncclComm_t& comm = channels_[k].comm;
                if (comm == nullptr) continue;
                if (clean) static_cast<void>(ncclCommDestroy(comm));
                else static_cast<void>(ncclCommAbort(comm));
                comm = nullptr;
            }
        }
        lock.unlock();
        for (channel& ch : channels_)
            if (ch.stream != nullptr) static_cast<void>(cudaStreamSynchronize(ch.stream));
    }

    /// Destroys the streams (after `close_comms`).
    void destroy_streams() noexcept {
        for (channel& ch : channels_) {
            if (ch.stream != nullptr) static_cast<void>(cudaStreamDestroy(ch.stream));
            ch.stream = nullptr;
        }
    }

    const int rank_;
    const int size_;
    int device_ = 0;
    int channel_count_ = 1;
    bool early_receives_ = false;
    nccl_options options_;

    mutable std::mutex mutex_;
    std::vector<channel> channels_;       // the comm handles are guarded by mutex_
    std::vector<ncclComm_t> split_slots_; // where ncclCommSplit writes a child's handle (stable storage)
    std::string reason_;                  // guarded by mutex_
    std::atomic<bool> aborted_{false};
    std::atomic<bool> hook_called_{false};

private:
    /// With `mutex_` held: creates channels 1, 2, ... with `ncclCommInitRankConfig`, each from a
    /// unique id that rank 0 creates and broadcasts over channel 0 (`nccl_channel_setup::init_rank`).
    void init_by_id(std::unique_lock<std::mutex>& lock, ncclConfig_t& config, clock::time_point deadline) {
        const std::size_t extra = channels_.size() - 1;
        if (extra == 0) return;
        // The ids as bytes: a std::vector<ncclUniqueId> (an unnamed struct) crashes nvcc 13's
        // front end when a .cu file includes this header.
        const std::size_t bytes = extra * sizeof(ncclUniqueId);
        std::vector<unsigned char> ids(bytes, 0);
        if (rank_ == 0)
            for (std::size_t k = 0; k < extra; ++k) {
                ncclUniqueId id;
                const ncclResult_t r = ncclGetUniqueId(&id);
                if (r != ncclSuccess) fail_locked(r, 0, "ncclGetUniqueId (a channel's id)");
                std::memcpy(ids.data() + k * sizeof id, &id, sizeof id);
            }
        const cudaStream_t stream = channels_[0].stream;
        scratch_memory staged;
        cudaError_t c = cudaMalloc(&staged.data, bytes);
        if (c != cudaSuccess) fail_cuda_locked(c, "cudaMalloc (channel ids)");
        void* const staging = staged.data;
        c = cudaMemcpyAsync(staging, ids.data(), bytes, cudaMemcpyHostToDevice, stream);
        if (c != cudaSuccess) fail_cuda_locked(c, "cudaMemcpyAsync (channel ids)");
        const ncclResult_t sent = ncclBroadcast(staging, staging, bytes, ncclUint8, 0, channels_[0].comm, stream);
        if (sent != ncclSuccess && sent != ncclInProgress) fail_locked(sent, 0, "ncclBroadcast (channel ids)");
        finish_setup(lock, 0, ncclInProgress, deadline, "ncclBroadcast (channel ids)");
        c = cudaMemcpyAsync(ids.data(), staging, bytes, cudaMemcpyDeviceToHost, stream);
        if (c != cudaSuccess) fail_cuda_locked(c, "cudaMemcpyAsync (channel ids)");
        // Wait for the copy without blocking inside CUDA: a rank that never joins must not hang us.
        backoff pace = nccl_pace();
        for (;;) {
            c = cudaStreamQuery(stream);
            if (c == cudaSuccess) break;
            if (c != cudaErrorNotReady) fail_cuda_locked(c, "cudaStreamQuery (channel ids)");
            check_async_locked();
            if (clock::now() >= deadline) {
                const std::string what = concat("paci::nccl_communicator: the broadcast of the channel ids (rank ",
                                                rank_, " of ", size_, ") did not complete within ",
                                                seconds(options_.setup_timeout), " s");
                abort_locked(what);
                throw nccl_error(what, ncclInProgress);
            }
            lock.unlock();
            pace.pause(deadline);
            lock.lock();
            if (channels_[0].comm == nullptr) throw aborted_error(aborted_message());
        }
        for (std::size_t k = 1; k < channels_.size(); ++k) {
            ncclUniqueId id;
            std::memcpy(&id, ids.data() + (k - 1) * sizeof id, sizeof id);
            ncclComm_t comm = nullptr;
            const ncclResult_t r = ncclCommInitRankConfig(&comm, size_, id, rank_, &config);
            channels_[k].comm = comm;
            if (comm == nullptr && r == ncclInProgress) {
                const std::string what =
                    concat("paci::nccl_communicator: ncclCommInitRankConfig (channel ", k, ") returned no communicator (null)");
                abort_locked(what);
                throw nccl_error(what, ncclInternalError);
            }
            finish_setup(lock, k, r, deadline, "ncclCommInitRankConfig (channel)");
        }
    }

    /// With `mutex_` held: `check_async` for channel 0.
    void check_async_locked() {
        if (channels_[0].comm == nullptr) throw aborted_error(aborted_message());
        ncclResult_t state = ncclSuccess;
        const ncclResult_t status = ncclCommGetAsyncError(channels_[0].comm, &state);
        if (status != ncclSuccess) fail_locked(status, 0, "ncclCommGetAsyncError");
        if (state != ncclSuccess && state != ncclInProgress) fail_locked(state, 0, "ncclBroadcast (channel ids)");
    }

    /// With `mutex_` held: waits until every channel's stream is idle. False on an error, an abort
    /// or the deadline.
    bool drain(std::unique_lock<std::mutex>& lock, clock::time_point deadline) {
        backoff pace = nccl_pace();
        for (;;) {
            bool idle = true;
            for (const channel& ch : channels_) {
                if (ch.comm == nullptr) return false;
                const cudaError_t q = cudaStreamQuery(ch.stream);
                if (q == cudaErrorNotReady) idle = false;
                else if (q != cudaSuccess) return false;
                ncclResult_t state = ncclSuccess;
                if (ncclCommGetAsyncError(ch.comm, &state) != ncclSuccess) return false;
                if (state != ncclSuccess && state != ncclInProgress) return false;
            }
            if (idle) return true;
            if (clock::now() >= deadline) return false;
            lock.unlock();
            pace.pause(deadline);
            lock.lock();
        }
    }
};

} // namespace paci::detail
