#pragma once
/// \file
/// The NCCL transport: `nccl_communicator` moves `device_buffer`s between GPUs with
/// `ncclSend`/`ncclRecv` on communication streams of its own, with timeouts, asynchronous error
/// polling and abort. Part of the optional `paci::nccl` CMake component; the core headers never
/// include this one.
///
/// Setup: one process (or one thread) per GPU. Rank 0 calls `ncclGetUniqueId` and sends the id to
/// every other rank out of band (`MPI_Bcast`, a file on a shared file system, the launcher's
/// key-value store); every rank selects its GPU (`cudaSetDevice(local_rank)`) before it constructs
/// its `nccl_communicator` with that id, its rank and the world size:
///
///     cudaSetDevice(local_rank);
///     ncclUniqueId id;
///     if (rank == 0) ncclGetUniqueId(&id);
///     MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);       // or write/read a file
///     cudaStream_t compute;
///     cudaStreamCreateWithFlags(&compute, cudaStreamNonBlocking);   // where the stages' kernels run
///     paci::nccl_communicator comm(id, rank, world, compute,
///                                  [&](int peer, int tag) { return message_bytes(peer, tag); });
///
/// Two ranks of one communicator cannot share a GPU (NCCL rejects a duplicate device).

#include <paci/runtime/detail/deadline.hpp>
#include <paci/core/action.hpp>
#include <paci/core/error.hpp>
#include <paci/nccl/device_buffer.hpp>
#include <paci/nccl/error.hpp>
#include <paci/runtime/communicator.hpp>
#include <paci/runtime/errors.hpp>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace paci {

/// How an `nccl_communicator` spreads messages over NCCL communicators, and how it is set up and
/// shut down. Set members by name: `paci::nccl_options o; o.setup_timeout = std::chrono::seconds(30);`
/// (or designated initializers).
struct nccl_options {
    /// Longest time creating the NCCL communicators, handing operations to NCCL (the first one with
    /// a peer connects to it, which waits for that peer) and draining at destruction may take before
    /// the communicator is aborted.
    std::chrono::nanoseconds setup_timeout = std::chrono::minutes(5);
    /// How many NCCL communicators ("channels", each with its own stream) carry the messages, and
    /// which channel carries a message from rank `from` to rank `to` with `tag` (the same function
    /// on every rank). NCCL runs the operations of one communicator one after the other, so a send
    /// whose receiver is not ready yet holds up everything behind it on its channel.
    ///
    /// Default (`channels = 0`, no `channel_of`): the ring map, `nccl_ring_channel`: one channel per
    /// direction and colour of ring neighbours (2 for two ranks, 4 for an even world, 6 for an odd
    /// one), so each rank's traffic with its predecessor and successor (all the executor's layouts
    /// have) travels on four independent channels and a send holds up only later sends on the same
    /// edge, which the peer receives in that order anyway: the semantics of MPI's non-blocking
    /// sends. `channels = 1`: one NCCL communicator for everything (a send then holds up every later
    /// operation; pair opposite-direction transfers with `start_group`/`end_group`). A `channel_of`
    /// of one's own needs `channels >= 1`.
    int channels = 0;
    std::function<int(int from, int to, int tag)> channel_of;
    /// Hand a receive to NCCL when it is posted (`irecv`), so the data moves while this rank
    /// computes, rather than when it is first tested or waited on. Empty: early with the ring map,
    /// otherwise not (a receive issued early on a channel that also carries this rank's sends would
    /// hold them up).
    std::optional<bool> early_receives;
    /// A blocking NCCL communicator (`ncclConfig_t::blocking = 1`). The default, non-blocking, keeps
    /// initialization and connection setup under `setup_timeout` and lets `abort` interrupt them; a
    /// blocking communicator may wait without bound inside NCCL there.
    bool blocking = false;
    /// Give the communication streams the device's highest priority, so transfers are not queued
    /// behind the stages' kernels.
    bool high_priority_streams = true;
    /// Buffers of completed sends kept for reuse as receive buffers of the same size (saves a
    /// `cudaMalloc` and a device-synchronizing `cudaFree` per message in steady state).
    std::size_t pool_limit = 8;
    /// Called once, by the first `abort(why)`, after the NCCL communicators have been aborted: the
    /// place to stop the other processes at once (`MPI_Abort`), which otherwise find out when their
    /// own waits time out. Must not throw.
    std::function<void(const char* why)> on_abort;
};

/// The number of channels of the ring map for a world of `size` ranks: 1, 2 for two ranks, 4 for
/// an even size, 6 for an odd one.
[[nodiscard]] constexpr int nccl_ring_channels(int size) noexcept {
    return size <= 1 ? 1 : size == 2 ? 2 : size % 2 == 0 ? 4 : 6;
}

/// The ring map: the channel of a message from `from` to `to` in a world of `size` ranks. Ranks are
/// coloured so that ring neighbours differ (parity, and a third colour for the last rank of an odd
/// ring); the channel is (colour of the sender, whether `to` is its successor). At every rank the
/// four edges to and from its two neighbours get four different channels. Messages to self, and
/// to ranks that are not neighbours, share a channel with the sends to the predecessor.
[[nodiscard]] constexpr int nccl_ring_channel(int from, int to, int size) noexcept {
    if (size <= 1) return 0;
    if (size == 2) return from;
    const int colour = (size % 2 == 1 && from == size - 1) ? 2 : from % 2;
    const bool successor = to == (from + 1) % size && to != from;
    return 2 * colour + (successor ? 0 : 1);
}

namespace detail {

/// One wait's polling rhythm: yield between queries for the first millisecond (a transfer between
/// GPUs of one node takes microseconds), then sleep, doubling from 20 us up to 1 ms, so a long wait
/// does not take a core.
class nccl_backoff {
public:
    nccl_backoff() : busy_until_(deadline_after(std::chrono::milliseconds(1))) {}
    void pause(std::chrono::steady_clock::time_point deadline) {
        const auto now = std::chrono::steady_clock::now();
        if (now < busy_until_) {
            std::this_thread::yield();
            return;
        }
        sleep_ = sleep_ == std::chrono::nanoseconds::zero()
                     ? std::chrono::nanoseconds(std::chrono::microseconds(20))
                     : std::min(sleep_ * 2, std::chrono::nanoseconds(std::chrono::milliseconds(1)));
        if (deadline - now < sleep_) sleep_ = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
        if (sleep_ > std::chrono::nanoseconds::zero()) std::this_thread::sleep_for(sleep_);
        else std::this_thread::yield();
    }

private:
    std::chrono::steady_clock::time_point busy_until_;
    std::chrono::nanoseconds sleep_{0};
};

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

/// One send or receive. `deferred`: posted, not yet handed to NCCL; `issued`: enqueued on its
/// channel's stream, with `buffer`'s event recorded right after it; `done`: the stream has passed
/// it; `failed`: never completed (the communicator was aborted).
struct nccl_op {
    enum class phase : std::uint8_t { deferred, issued, done, failed };
    bool send = false;
    int peer = 0;
    int tag = 0;
    int channel = 0;
    action at{};
    std::size_t bytes = 0;
    device_buffer buffer;
    phase state = phase::deferred;
};

/// What an `nccl_communicator` and its requests share. Every member but `abort` runs on the thread
/// that owns the communicator; `mutex_` guards the NCCL handles (and the abort reason) so that
/// `abort` may come from any thread.
class nccl_state {
public:
    using op_ptr = std::shared_ptr<nccl_op>;
    using clock = std::chrono::steady_clock;

    nccl_state(int rank, int size, cudaStream_t compute, std::function<std::size_t(int, int)> recv_size,
               nccl_options options)
        : rank_(rank), size_(size), compute_(compute), recv_size_(std::move(recv_size)), options_(std::move(options)) {
        const bool ring = options_.channels == 0 && !options_.channel_of;
        config_require(options_.channels >= 0, "nccl_communicator", "channels", options_.channels, "must be >= 0");
        config_require(ring || options_.channels >= 1, "nccl_communicator", "channels", options_.channels,
                       "must be >= 1 with a channel_of of one's own");
        config_require(ring || options_.channels == 1 || static_cast<bool>(options_.channel_of), "nccl_communicator",
                       "channels", options_.channels, "needs a channel_of when > 1");
        channel_count_ = ring ? nccl_ring_channels(size_) : options_.channels;
        early_receives_ = options_.early_receives.value_or(ring);
    }
    nccl_state(const nccl_state&) = delete;
    nccl_state& operator=(const nccl_state&) = delete;
    ~nccl_state() { close(); }

    /// Creates the streams, the ordering event and the NCCL communicators (the first from `id`, the
    /// others split from it) on the current device.
    void init(const ncclUniqueId& id) {
        cuda_check(cudaGetDevice(&device_), "nccl_communicator", "cudaGetDevice");
        int least = 0, greatest = 0;
        cuda_check(cudaDeviceGetStreamPriorityRange(&least, &greatest), "nccl_communicator",
                   "cudaDeviceGetStreamPriorityRange");
        cuda_check(cudaEventCreateWithFlags(&order_, cudaEventDisableTiming), "nccl_communicator",
                   "cudaEventCreateWithFlags");
        channels_.resize(static_cast<std::size_t>(channel_count_));
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
        ncclResult_t status = ncclCommInitRankConfig(&first, size_, id, rank_, &config);
        channels_[0].comm = first;
        finish_setup(lock, 0, status, deadline, "ncclCommInitRankConfig");
        for (std::size_t k = 1; k < channels_.size(); ++k) {
            ncclComm_t child = nullptr;
            status = ncclCommSplit(channels_[0].comm, 0, rank_, &child, &config);
            channels_[k].comm = child;
            if (child == nullptr && (status == ncclSuccess || status == ncclInProgress)) status = ncclInternalError;
            finish_setup(lock, k, status, deadline, "ncclCommSplit");
            // A non-blocking parent takes part in the split too: wait until it is idle again.
            finish_setup(lock, 0, ncclInProgress, deadline, "ncclCommSplit (parent)");
        }
    }

    [[nodiscard]] int rank() const noexcept { return rank_; }
    [[nodiscard]] int size() const noexcept { return size_; }
    [[nodiscard]] int device() const noexcept { return device_; }
    [[nodiscard]] int channel_count() const noexcept { return channel_count_; }
    [[nodiscard]] cudaStream_t compute_stream() const noexcept { return compute_; }
    [[nodiscard]] cudaStream_t comm_stream(int k) const noexcept {
        return k >= 0 && k < channel_count_ && !channels_.empty() ? channels_[static_cast<std::size_t>(k)].stream : nullptr;
    }
    [[nodiscard]] ncclComm_t handle(int k) const {
        std::lock_guard lock(mutex_);
        return k >= 0 && k < channel_count_ && !channels_.empty() ? channels_[static_cast<std::size_t>(k)].comm : nullptr;
    }
    [[nodiscard]] bool aborted() const noexcept { return aborted_.load(); }
    [[nodiscard]] bool early_receives() const noexcept { return early_receives_; }

    /// The channel of a message from `from` to `to` with `tag`.
    /// \throws config_error when a `channel_of` of the user's gives a channel out of range.
    [[nodiscard]] int channel_for(int from, int to, int tag) const {
        if (!options_.channel_of) return channel_count_ == 1 ? 0 : nccl_ring_channel(from, to, size_);
        const int k = options_.channel_of(from, to, tag);
        config_require(k >= 0 && k < channel_count_, "nccl_communicator", "channel_of(from, to, tag)", k,
                       concat("must be in [0, ", channel_count_, ")"));
        return k;
    }

    // --- posting ------------------------------------------------------------------------------

    /// A send: issued at once, or deferred inside a group, or until its receive when the peer is
    /// this rank (NCCL needs a send to self and its receive in one group).
    op_ptr post_send(int peer, int tag, device_buffer&& buffer, action at) {
        cuda_device_guard guard(device_);
        check_open();
        check_peer(peer);
        sweep_orphans();
        auto op = std::make_shared<nccl_op>();
        op->send = true;
        op->peer = peer;
        op->tag = tag;
        op->channel = channel_for(rank_, peer, tag);
        op->at = at;
        op->bytes = buffer.size();
        op->buffer = std::move(buffer);
        if (op->bytes == 0) {
            op->state = nccl_op::phase::done; // nothing to move; the peer's receive size is 0 as well
        } else if (group_depth_ > 0) {
            deferred_.push_back(op);
        } else if (peer == rank_) {
            deferred_.push_back(op);
            issue_self(*op);
        } else {
            std::vector<op_ptr> batch{op};
            issue(batch);
        }
        return op;
    }

    /// A receive: issued at once with `early_receives`, else deferred until it is tested or waited
    /// on (or its group ends); a receive from self waits for its send.
    op_ptr post_recv(int peer, int tag, action at) {
        cuda_device_guard guard(device_);
        check_open();
        check_peer(peer);
        sweep_orphans();
        auto op = std::make_shared<nccl_op>();
        op->peer = peer;
        op->tag = tag;
        op->channel = channel_for(peer, rank_, tag);
        op->at = at;
        op->bytes = recv_size_(peer, tag);
        if (op->bytes == 0) {
            op->state = nccl_op::phase::done;
            return op;
        }
        deferred_.push_back(op);
        if (group_depth_ > 0) return op;
        if (peer == rank_) issue_self(*op);
        else if (early_receives_) issue_through(op.get());
        return op;
    }

    void start_group() noexcept { ++group_depth_; }
    void end_group() {
        PACI_ASSERT(group_depth_ > 0, "paci::nccl_communicator: end_group without start_group");
        if (group_depth_ == 0 || --group_depth_ > 0) return;
        cuda_device_guard guard(device_);
        check_open();
        if (!deferred_.empty()) issue_through(deferred_.back().get());
    }
    void cancel_group() noexcept {
        if (group_depth_ > 0) --group_depth_;
    }

    // --- completion ---------------------------------------------------------------------------

    /// True once `op` is complete; issues it first if it is still deferred.
    bool test(nccl_op& op) {
        cuda_device_guard guard(device_);
        if (op.state == nccl_op::phase::deferred && !aborted_ && !closed_) issue_through(&op);
        return progress(op);
    }

    /// Blocks until `op` is complete, polling NCCL for asynchronous errors; after `timeout`,
    /// aborts the communicator and throws `timeout_error`.
    void wait(nccl_op& op, std::chrono::nanoseconds timeout) {
        cuda_device_guard guard(device_);
        const auto deadline = deadline_after(timeout);
        if (op.state == nccl_op::phase::deferred && !aborted_ && !closed_) issue_through(&op);
        nccl_backoff backoff;
        while (!progress(op)) {
            if (clock::now() >= deadline) {
                {
                    std::lock_guard lock(mutex_);
                    abort_locked(concat("rank ", rank_, " timed out after ", seconds(timeout), " s waiting for rank ",
                                        op.peer, " (tag ", op.tag, ")"));
                }
                throw timeout_error(rank_, op.peer, op.tag, op.at, timeout);
            }
            backoff.pause(deadline);
        }
    }

    /// A request let go of `op`. A deferred operation stays queued (NCCL matches a peer's messages
    /// in order, so dropping it would hand its message to the next receive); an issued one is kept
    /// until its stream has passed it, then its buffer is reused.
    void release(op_ptr op) noexcept {
        if (closed_) return;
        try {
            if (op->state == nccl_op::phase::done) recycle(std::move(op->buffer));
            else if (op->state != nccl_op::phase::failed) orphans_.push_back(std::move(op));
        } catch (...) {
            // Out of memory while keeping it: the buffer is freed with the op (cudaFree waits for the device).
        }
    }

    /// Keeps the buffer of a completed send for a later receive of the same size.
    void recycle(device_buffer&& buffer) noexcept {
        if (closed_ || buffer.empty() || pool_.size() >= options_.pool_limit) return;
        try {
            pool_.push_back(std::move(buffer));
        } catch (...) {
        }
    }

    // --- collective agreement -----------------------------------------------------------------

    /// Every rank presents `fingerprint` (`ncclAllGather` on channel 0); all must agree.
    void agree(std::uint64_t fingerprint, std::chrono::nanoseconds timeout) {
        cuda_device_guard guard(device_);
        check_open();
        const auto n = static_cast<std::size_t>(size_);
        const std::size_t width = sizeof(std::uint64_t);
        auto op = std::make_shared<nccl_op>();
        op->peer = -1;
        op->tag = -1;
        op->bytes = n * width;
        op->buffer = device_buffer(n * width);
        std::vector<std::uint64_t> prints(n, 0);
        prints[static_cast<std::size_t>(rank_)] = fingerprint;
        auto* base = op->buffer.data_as<unsigned char>();
        unsigned char* mine = base + static_cast<std::size_t>(rank_) * width;
        cudaStream_t stream = channels_[0].stream;
        cuda_or_abort(cudaMemcpyAsync(mine, &prints[static_cast<std::size_t>(rank_)], width, cudaMemcpyHostToDevice, stream),
                      "cudaMemcpyAsync");
        {
            std::unique_lock lock(mutex_);
            if (channels_[0].comm == nullptr) throw aborted_error(aborted_message());
            ncclResult_t status = ncclAllGather(mine, base, width, ncclUint8, channels_[0].comm, stream);
            if (status == ncclInProgress) status = poll_state(lock, 0, deadline_after(options_.setup_timeout));
            if (status != ncclSuccess) fail_locked(status, 0, "ncclAllGather");
            record_locked(op->buffer, stream);
        }
        op->state = nccl_op::phase::issued;
        wait(*op, timeout);
        cuda_or_abort(cudaMemcpyAsync(prints.data(), base, n * width, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
        cuda_or_abort(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
        for (std::size_t r = 1; r < n; ++r)
            if (prints[r] != prints[0])
                config_fail("executor", "configuration of rank", r,
                            concat("differs from rank 0's (different policy, stage count or micro-batch count; "
                                   "fingerprints ",
                                   prints[r], " and ", prints[0], ")"));
    }

    // --- abort and shutdown -------------------------------------------------------------------

    /// Aborts every NCCL communicator (`ncclCommAbort`): their kernels stop, every wait on this rank
    /// throws `aborted_error`. Returns true the first time. Any thread.
    bool abort(const char* why) noexcept {
        std::lock_guard lock(mutex_);
        return abort_locked(why != nullptr ? why : "aborted");
    }
    /// True the first time: whoever gets true calls the user's `on_abort`.
    bool claim_abort_hook() noexcept { return !hook_called_.exchange(true); }
    [[nodiscard]] const nccl_options& options() const noexcept { return options_; }

    /// Ends the communicator without hanging: waits (up to `setup_timeout`) for what is in flight,
    /// then `ncclCommFinalize` + `ncclCommDestroy` on every channel; aborts instead when that does
    /// not finish, when NCCL reported an error, or when it was aborted already. Frees the streams,
    /// the event and the kept buffers. Requests that outlive it still report what completed before.
    void close() noexcept {
        if (closed_) return;
        closed_ = true;
        cuda_device_guard guard(device_);
        {
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
        }
        // After ncclCommAbort the NCCL kernels exit, so these return; afterwards no buffer is in use.
        for (channel& ch : channels_)
            if (ch.stream != nullptr) static_cast<void>(cudaStreamSynchronize(ch.stream));
        deferred_.clear();
        orphans_.clear();
        pool_.clear();
        for (channel& ch : channels_) {
            if (ch.stream != nullptr) static_cast<void>(cudaStreamDestroy(ch.stream));
            ch.stream = nullptr;
        }
        if (order_ != nullptr) static_cast<void>(cudaEventDestroy(order_));
        order_ = nullptr;
    }

private:
    struct channel {
        ncclComm_t comm = nullptr; // guarded by mutex_
        cudaStream_t stream = nullptr;
    };

    [[nodiscard]] static double seconds(std::chrono::nanoseconds t) { return std::chrono::duration<double>(t).count(); }

    [[nodiscard]] std::string aborted_message() const {
        return concat("paci::nccl_communicator: aborted: ", reason_.empty() ? std::string("aborted") : reason_);
    }

    void check_open() const {
        if (closed_) throw aborted_error("paci::nccl_communicator: used after it was destroyed");
        if (aborted_) {
            std::lock_guard lock(mutex_);
            throw aborted_error(aborted_message());
        }
    }

    void check_peer(int peer) const {
        config_require(peer >= 0 && peer < size_, "nccl_communicator", "peer", peer,
                       concat("must be in [0, ", size_, ")"));
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

    /// With `mutex_` held. True the first time.
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
    /// With `mutex_` held: records `buffer`'s readiness event on `stream` (right after what was just
    /// enqueued there); aborts when that fails.
    void record_locked(device_buffer& buffer, cudaStream_t stream) {
        try {
            buffer.record_ready(stream);
        } catch (const cuda_error& e) {
            abort_locked(e.what());
            throw;
        }
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
        nccl_backoff backoff;
        for (;;) {
            if (channels_[k].comm == nullptr) throw aborted_error(aborted_message());
            ncclResult_t state = ncclSuccess;
            const ncclResult_t status = ncclCommGetAsyncError(channels_[k].comm, &state);
            if (status != ncclSuccess) return status;
            if (state != ncclInProgress) return state;
            if (clock::now() >= deadline) return ncclInProgress;
            lock.unlock();
            backoff.pause(deadline);
            lock.lock();
        }
    }

    /// With `mutex_` held: waits until every channel's stream is idle. False on an error, an abort
    /// or the deadline.
    bool drain(std::unique_lock<std::mutex>& lock, clock::time_point deadline) {
        nccl_backoff backoff;
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
            backoff.pause(deadline);
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

    [[noreturn]] void throw_aborted() const {
        std::lock_guard lock(mutex_);
        throw aborted_error(aborted_message());
    }

    /// Advances `op` without blocking; true once it is complete.
    bool progress(nccl_op& op) {
        switch (op.state) {
        case nccl_op::phase::done: return true;
        case nccl_op::phase::failed: throw_aborted();
        case nccl_op::phase::deferred:
            if (closed_) throw aborted_error("paci::nccl_communicator: destroyed before the operation was issued");
            if (aborted_) throw_aborted();
            check_async(); // a send to self with no receive yet (or the reverse): only the deadline ends this
            return false;
        case nccl_op::phase::issued: break;
        }
        if (aborted_) throw_aborted();
        const cudaError_t status = cudaEventQuery(op.buffer.ready_event());
        if (status == cudaSuccess) {
            op.state = nccl_op::phase::done;
            return true;
        }
        if (status != cudaErrorNotReady) {
            std::lock_guard lock(mutex_);
            fail_cuda_locked(status, "cudaEventQuery");
        }
        check_async();
        return false;
    }

    [[nodiscard]] std::size_t position(const nccl_op* op) const noexcept {
        for (std::size_t i = 0; i < deferred_.size(); ++i)
            if (deferred_[i].get() == op) return i;
        return deferred_.size();
    }
    [[nodiscard]] bool self_send(std::size_t i, int tag) const noexcept {
        return deferred_[i]->send && deferred_[i]->peer == rank_ && deferred_[i]->tag == tag;
    }
    [[nodiscard]] bool self_recv(std::size_t i, int tag) const noexcept {
        return !deferred_[i]->send && deferred_[i]->peer == rank_ && deferred_[i]->tag == tag;
    }
    /// The deferred partner of the deferred self operation at `i`: the k-th send to self with a tag
    /// goes with the k-th receive from self with that tag.
    [[nodiscard]] std::size_t partner(std::size_t i) const noexcept {
        const nccl_op& op = *deferred_[i];
        std::size_t k = 0;
        for (std::size_t j = 0; j < i; ++j) k += (op.send ? self_send(j, op.tag) : self_recv(j, op.tag)) ? 1U : 0U;
        for (std::size_t j = 0; j < deferred_.size(); ++j)
            if ((op.send ? self_recv(j, op.tag) : self_send(j, op.tag)) && k-- == 0) return j;
        return deferred_.size();
    }

    /// Issues the deferred self operation `op` with its partner, if it has one yet.
    void issue_self(const nccl_op& op) {
        const std::size_t i = position(&op);
        if (i == deferred_.size()) return;
        const std::size_t j = partner(i);
        if (j == deferred_.size()) return;
        std::vector<bool> taken(deferred_.size(), false);
        taken[i] = taken[j] = true;
        std::vector<op_ptr> batch;
        add_pair(batch, i, j);
        take(batch, taken);
    }

    /// Appends the self pair (send, receive) at `i` and `j` to `batch`.
    void add_pair(std::vector<op_ptr>& batch, std::size_t i, std::size_t j) {
        const std::size_t s = deferred_[i]->send ? i : j, r = deferred_[i]->send ? j : i;
        config_require(deferred_[s]->bytes == deferred_[r]->bytes, "nccl_communicator",
                       concat("bytes sent to self with tag ", deferred_[s]->tag), deferred_[s]->bytes,
                       concat("must equal the receive size (", deferred_[r]->bytes, ")"));
        batch.push_back(deferred_[s]);
        batch.push_back(deferred_[r]);
    }

    /// Issues, as one group per channel, the deferred operations posted up to and including
    /// `target`, in the order they were posted (NCCL matches the messages between two ranks on a
    /// channel in order), each self operation with its partner (the partner of a self `target` is
    /// included even when posted after it). Self operations with no partner yet (the target too)
    /// stay deferred.
    void issue_through(const nccl_op* target) {
        std::size_t end = position(target);
        if (end == deferred_.size()) return;
        if (target->peer == rank_) {
            const std::size_t j = partner(end);
            if (j != deferred_.size()) end = std::max(end, j);
        }
        std::vector<bool> taken(deferred_.size(), false);
        std::vector<op_ptr> batch;
        for (std::size_t i = 0; i <= end; ++i) {
            if (taken[i]) continue;
            if (deferred_[i]->peer != rank_) {
                taken[i] = true;
                batch.push_back(deferred_[i]);
                continue;
            }
            const std::size_t j = partner(i);
            if (j == deferred_.size() || taken[j]) continue;
            taken[i] = taken[j] = true;
            add_pair(batch, i, j);
        }
        take(batch, taken);
    }

    /// Removes the `taken` operations from the deferred queue and issues `batch` (receive buffers
    /// first: a failed allocation leaves everything deferred).
    void take(std::vector<op_ptr>& batch, const std::vector<bool>& taken) {
        for (const op_ptr& op : batch)
            if (!op->send && op->buffer.empty()) op->buffer = take_buffer(op->bytes);
        std::size_t kept = 0;
        for (std::size_t i = 0; i < deferred_.size(); ++i)
            if (!taken[i]) deferred_[kept++] = std::move(deferred_[i]);
        deferred_.resize(kept);
        issue(batch);
    }

    /// Hands `batch` to NCCL: per channel, one group on that channel's stream, ordered after the
    /// work queued so far on the compute stream (and after each send buffer's own readiness event),
    /// with each buffer's event recorded right after it.
    void issue(std::vector<op_ptr>& batch) {
        if (batch.empty()) return;
        try {
            std::unique_lock lock(mutex_);
            if (aborted_) throw aborted_error(aborted_message());
            if (std::any_of(batch.begin(), batch.end(), [](const op_ptr& op) { return op->send; })) {
                const cudaError_t status = cudaEventRecord(order_, compute_);
                if (status != cudaSuccess) fail_cuda_locked(status, "cudaEventRecord (compute stream)");
            }
            for (std::size_t k = 0; k < channels_.size(); ++k) {
                if (std::none_of(batch.begin(), batch.end(),
                                 [&](const op_ptr& op) { return static_cast<std::size_t>(op->channel) == k; }))
                    continue;
                issue_channel(lock, k, batch);
            }
        } catch (...) {
            for (const op_ptr& op : batch)
                if (op->state == nccl_op::phase::deferred) op->state = nccl_op::phase::failed;
            throw;
        }
    }

    /// With `mutex_` held: the part of `batch` on channel `k` as one NCCL group.
    void issue_channel(std::unique_lock<std::mutex>& lock, std::size_t k, std::vector<op_ptr>& batch) {
        channel& ch = channels_[k];
        if (ch.comm == nullptr) throw aborted_error(aborted_message());
        const auto on_channel = [&](const op_ptr& op) { return static_cast<std::size_t>(op->channel) == k; };
        if (std::any_of(batch.begin(), batch.end(), [&](const op_ptr& op) { return on_channel(op) && op->send; })) {
            cudaError_t status = cudaStreamWaitEvent(ch.stream, order_, 0);
            if (status != cudaSuccess) fail_cuda_locked(status, "cudaStreamWaitEvent");
            for (const op_ptr& op : batch) {
                if (!on_channel(op) || !op->send || !op->buffer.recorded()) continue;
                status = cudaStreamWaitEvent(ch.stream, op->buffer.ready_event(), 0);
                if (status != cudaSuccess) fail_cuda_locked(status, "cudaStreamWaitEvent");
            }
        }
        ncclResult_t status = ncclGroupStart();
        if (status != ncclSuccess) fail_locked(status, k, "ncclGroupStart");
        const nccl_op* failed = nullptr;
        for (const op_ptr& op : batch) {
            if (!on_channel(op)) continue;
            const ncclResult_t r = op->send
                                       ? ncclSend(op->buffer.data(), op->bytes, ncclUint8, op->peer, ch.comm, ch.stream)
                                       : ncclRecv(op->buffer.data(), op->bytes, ncclUint8, op->peer, ch.comm, ch.stream);
            if (r != ncclSuccess && r != ncclInProgress && failed == nullptr) {
                failed = op.get();
                status = r;
            }
        }
        const ncclResult_t ended = ncclGroupEnd();
        if (failed != nullptr) {
            const std::string call = concat(failed->send ? "ncclSend to rank " : "ncclRecv from rank ", failed->peer,
                                            " (tag ", failed->tag, ", ", failed->bytes, " bytes)");
            fail_locked(status, k, call.c_str());
        }
        status = ended;
        if (status == ncclInProgress) status = poll_state(lock, k, deadline_after(options_.setup_timeout));
        if (status == ncclInProgress) {
            const auto first = std::find_if(batch.begin(), batch.end(), on_channel);
            const nccl_op& op = **first;
            abort_locked(concat("rank ", rank_, " could not hand its operations with rank ", op.peer, " (tag ", op.tag,
                                ") to NCCL within ", seconds(options_.setup_timeout), " s (connecting to the peer)"));
            lock.unlock();
            throw timeout_error(rank_, op.peer, op.tag, op.at, options_.setup_timeout);
        }
        if (status != ncclSuccess) fail_locked(status, k, "ncclGroupEnd");
        for (const op_ptr& op : batch) {
            if (!on_channel(op)) continue;
            record_locked(op->buffer, ch.stream);
            op->state = nccl_op::phase::issued;
        }
    }

    /// A receive buffer of `bytes`: a kept one of that size, or a new one.
    device_buffer take_buffer(std::size_t bytes) {
        for (auto it = pool_.begin(); it != pool_.end(); ++it) {
            if (it->size() != bytes) continue;
            device_buffer b = std::move(*it);
            pool_.erase(it);
            return b;
        }
        return device_buffer(bytes);
    }

    /// Frees (or keeps for reuse) what dropped requests left behind once its stream has passed it.
    void sweep_orphans() {
        std::erase_if(orphans_, [this](const op_ptr& op) {
            if (op->state == nccl_op::phase::deferred) return false;
            if (op->state == nccl_op::phase::issued) {
                if (cudaEventQuery(op->buffer.ready_event()) != cudaSuccess) return false;
                op->state = nccl_op::phase::done;
            }
            if (op->state == nccl_op::phase::done) recycle(std::move(op->buffer));
            return true;
        });
    }

    const int rank_;
    const int size_;
    int device_ = 0;
    int channel_count_ = 1;
    bool early_receives_ = false;
    cudaStream_t compute_;
    cudaEvent_t order_ = nullptr;
    std::function<std::size_t(int, int)> recv_size_;
    nccl_options options_;

    mutable std::mutex mutex_;
    std::vector<channel> channels_; // the comm handles are guarded by mutex_
    std::string reason_;            // guarded by mutex_
    std::atomic<bool> aborted_{false};
    std::atomic<bool> hook_called_{false};

    // Owner thread only.
    bool closed_ = false;
    int group_depth_ = 0;
    std::vector<op_ptr> deferred_; // in posting order
    std::vector<op_ptr> orphans_;
    std::vector<device_buffer> pool_;
};

} // namespace detail

/// One GPU's view of an NCCL world as a paci communicator: `isend`/`irecv` move `device_buffer`s
/// with `ncclSend`/`ncclRecv`. Satisfies `communicator_for<nccl_communicator, device_buffer>` and
/// `abortable`.
///
/// - Channels: the messages travel over a few NCCL communicators, each with its own stream
///   (`nccl_options::channels`). NCCL runs one communicator's operations one after the other, so a
///   send whose receiver is not ready would hold up every later operation of a single communicator
///   and let two neighbours deadlock; the default ring map gives each direction of each
///   neighbour pair its own channel, so a send holds up only later sends on its own edge.
/// - Streams: every issue records an event on the compute stream given at construction and makes
///   the channel's stream wait for it (and for a send buffer's own readiness event when it has been
///   recorded): a send goes out after the work that produced its buffer. A buffer's readiness event
///   is recorded on the channel's stream right after its send or receive; `wait` returns once it
///   has passed, and a received buffer carries it (`wait_ready(stream)`).
/// - Issue order: a send goes to NCCL when it is posted; a receive too with `early_receives` (the
///   default with the ring map), else when first tested or waited on, together with every receive
///   posted before it. NCCL has no tags: the messages from one rank to another on one channel are
///   matched in the order they are issued, so the receiver must receive a peer's messages in the
///   order the peer sent them (as MPI guarantees per tag; true of the executor's programs). The
///   tag selects the receive size (`recv_size(peer, tag)`, which must equal the size the peer
///   sends; 0 means no transfer) and names the message in errors. `start_group()`/`end_group()`
///   (or `grouped(f)`) hand everything posted in between to NCCL as one group per channel.
/// - Self: a send to this rank and the receive of its tag from this rank go to NCCL together, as
///   soon as both are posted (NCCL requires them in one group).
/// - Lifetime: a request owns its buffer until the stream has passed the operation; a request
///   dropped earlier leaves it with the communicator, which frees or reuses it later. Buffers of
///   completed sends are reused for receives of the same size (`nccl_options::pool_limit`).
/// - Errors and timeouts: a wait polls the buffer's event and `ncclCommGetAsyncError`; an NCCL
///   error becomes `nccl_error`, a CUDA error `cuda_error` (both `transport_error`, with the status
///   and its text); after `timeout` the communicator is aborted (`ncclCommAbort`) and
///   `timeout_error` names this rank, the peer, the tag and the action given to `isend`/`irecv`.
///   Once aborted, every operation throws `aborted_error`.
/// - Threads: one thread uses a communicator and its requests; `abort` may come from any thread.
/// - Destruction drains what is in flight (up to `nccl_options::setup_timeout`), then finalizes
///   and destroys the NCCL communicators, or aborts them when draining does not finish.
/// - `cudaFree` waits for the whole device, pending transfers included: a stage that frees
///   buffers while its sends wait for a slow peer waits with them (reuse buffers where it can).
///
/// Near miss: a `device_buffer` filled by a kernel on some other stream without `record_ready`
/// there; the send is ordered after the compute stream only, and may read the buffer too early.
class nccl_communicator {
public:
    using buffer_type = device_buffer;
    /// The size in bytes of the next message from `peer` with `tag` (NCCL receives need it up front).
    using recv_size_fn = std::function<std::size_t(int peer, int tag)>;

    /// A pending send; owns the buffer until the stream has passed the send.
    class send_request {
    public:
        send_request(send_request&& other) noexcept = default;
        send_request& operator=(send_request&& other) noexcept {
            if (this != &other) {
                release();
                state_ = std::move(other.state_);
                op_ = std::move(other.op_);
            }
            return *this;
        }
        send_request(const send_request&) = delete;
        send_request& operator=(const send_request&) = delete;
        ~send_request() { release(); }

        /// True once the buffer has left (then the buffer is released for reuse).
        /// \throws nccl_error, cuda_error, aborted_error.
        [[nodiscard]] bool test() {
            if (!op_) return true;
            if (!state_->test(*op_)) return false;
            finish();
            return true;
        }
        /// Blocks until the buffer has left.
        /// \throws timeout_error after `timeout` (the communicator is aborted); nccl_error,
        /// cuda_error, aborted_error.
        void wait(std::chrono::nanoseconds timeout) {
            if (!op_) return;
            state_->wait(*op_, timeout);
            finish();
        }

    private:
        friend class nccl_communicator;
        send_request(std::shared_ptr<detail::nccl_state> state, std::shared_ptr<detail::nccl_op> op)
            : state_(std::move(state)), op_(std::move(op)) {}
        void finish() noexcept {
            state_->recycle(std::move(op_->buffer));
            op_.reset();
        }
        void release() noexcept {
            if (op_) state_->release(std::move(op_));
            op_.reset();
        }

        std::shared_ptr<detail::nccl_state> state_;
        std::shared_ptr<detail::nccl_op> op_;
    };

    /// A pending receive; `wait` hands over the buffer once.
    class recv_request {
    public:
        recv_request(recv_request&& other) noexcept = default;
        recv_request& operator=(recv_request&& other) noexcept {
            if (this != &other) {
                release();
                state_ = std::move(other.state_);
                op_ = std::move(other.op_);
            }
            return *this;
        }
        recv_request(const recv_request&) = delete;
        recv_request& operator=(const recv_request&) = delete;
        ~recv_request() { release(); }

        /// True once the data has arrived (it stays true until `wait` takes the buffer). Issues the
        /// receive if it was still deferred.
        /// \throws nccl_error, cuda_error, aborted_error.
        [[nodiscard]] bool test() {
            if (!op_) return true;
            return state_->test(*op_);
        }
        /// Blocks until the data has arrived and returns it; its readiness event has passed.
        /// \throws timeout_error after `timeout` (the communicator is aborted); nccl_error,
        /// cuda_error, aborted_error.
        [[nodiscard]] device_buffer wait(std::chrono::nanoseconds timeout) {
            PACI_ASSERT(op_ != nullptr, "paci::nccl_communicator: wait on a receive already taken");
            if (!op_) return {};
            state_->wait(*op_, timeout);
            device_buffer out = std::move(op_->buffer);
            op_.reset();
            return out;
        }

    private:
        friend class nccl_communicator;
        recv_request(std::shared_ptr<detail::nccl_state> state, std::shared_ptr<detail::nccl_op> op)
            : state_(std::move(state)), op_(std::move(op)) {}
        void release() noexcept {
            if (op_) state_->release(std::move(op_));
            op_.reset();
        }

        std::shared_ptr<detail::nccl_state> state_;
        std::shared_ptr<detail::nccl_op> op_;
    };

    /// Joins the NCCL world identified by `id` as `rank` of `size`, on the current CUDA device
    /// (select it with `cudaSetDevice` first). Every rank must call this with the same `id`, `size`
    /// and channel options; it waits for all of them (up to `options.setup_timeout`).
    /// `compute_stream` is where the stages' kernels run (sends are ordered after it);
    /// `recv_size(peer, tag)` gives the byte size of the next message from `peer` with `tag`.
    /// \throws config_error for a bad rank, size, channel option or an empty `recv_size`;
    /// nccl_error (a setup that timed out carries `ncclInProgress`); cuda_error.
    nccl_communicator(const ncclUniqueId& id, int rank, int size, cudaStream_t compute_stream, recv_size_fn recv_size,
                      nccl_options options = {}) {
        detail::config_require(size >= 1, "nccl_communicator", "size", size, "must be >= 1");
        detail::config_require(rank >= 0 && rank < size, "nccl_communicator", "rank", rank,
                               detail::concat("must be in [0, ", size, ")"));
        detail::config_require(static_cast<bool>(recv_size), "nccl_communicator", "receive-size function", "empty",
                               "must be callable");
        state_ = std::make_shared<detail::nccl_state>(rank, size, compute_stream, std::move(recv_size),
                                                      std::move(options));
        state_->init(id);
    }

    nccl_communicator(nccl_communicator&& other) noexcept = default;
    nccl_communicator& operator=(nccl_communicator&& other) noexcept {
        if (this != &other) {
            close();
            state_ = std::move(other.state_);
        }
        return *this;
    }
    nccl_communicator(const nccl_communicator&) = delete;
    nccl_communicator& operator=(const nccl_communicator&) = delete;
    /// Drains, finalizes and destroys the NCCL communicators (or aborts them; see the class notes).
    ~nccl_communicator() { close(); }

    [[nodiscard]] int rank() const noexcept { return state_->rank(); }
    [[nodiscard]] int size() const noexcept { return state_->size(); }
    /// The CUDA device the communicator was created on.
    [[nodiscard]] int device() const noexcept { return state_->device(); }
    [[nodiscard]] cudaStream_t compute_stream() const noexcept { return state_->compute_stream(); }
    /// How many channels (NCCL communicators, each with a stream) carry the messages.
    [[nodiscard]] int channels() const noexcept { return state_->channel_count(); }
    /// The channel of a message from `from` to `to` with `tag`.
    [[nodiscard]] int channel_of(int from, int to, int tag) const { return state_->channel_for(from, to, tag); }
    /// Channel `k`'s stream (owned by the communicator; null once destroyed).
    [[nodiscard]] cudaStream_t comm_stream(int k = 0) const noexcept { return state_->comm_stream(k); }
    /// Channel `k`'s NCCL communicator (null once aborted): channel 0 spans the world and may carry
    /// collectives of the user's own, issued on the owning thread between paci's operations.
    [[nodiscard]] ncclComm_t native_handle(int k = 0) const { return state_->handle(k); }
    [[nodiscard]] bool aborted() const noexcept { return state_->aborted(); }
    /// Whether receives go to NCCL when posted (see `nccl_options::early_receives`).
    [[nodiscard]] bool early_receives() const noexcept { return state_->early_receives(); }

    /// Sends `buffer` to `peer` with `tag`; the request owns the buffer until the send is done.
    /// `at` names the action in a `timeout_error`.
    /// \throws config_error for a peer out of range; nccl_error, cuda_error, timeout_error
    /// (connecting to the peer took longer than `setup_timeout`), aborted_error.
    [[nodiscard]] send_request isend(int peer, int tag, device_buffer buffer, action at = {}) {
        return send_request(state_, state_->post_send(peer, tag, std::move(buffer), at));
    }

    /// Receives the next message from `peer` (of `recv_size(peer, tag)` bytes). `at` names the
    /// action in a `timeout_error`.
    /// \throws config_error for a peer out of range; whatever `recv_size` throws; as `isend`.
    [[nodiscard]] recv_request irecv(int peer, int tag, action at = {}) {
        return recv_request(state_, state_->post_recv(peer, tag, at));
    }

    /// Starts a group: sends and receives posted until the matching `end_group()` go to NCCL
    /// together (one `ncclGroupStart/End` per channel). Groups nest; testing or waiting on a request
    /// inside a group issues what it needs at once.
    void start_group() noexcept { state_->start_group(); }
    /// Ends a group; the outermost one issues what was posted.
    /// \throws as `isend`.
    void end_group() { state_->end_group(); }
    /// Calls `f()` inside a group. When `f` throws, what it posted stays queued (issued by the next
    /// test or wait) and the exception propagates.
    template <std::invocable F>
    void grouped(F&& f) {
        start_group();
        try {
            std::forward<F>(f)();
        } catch (...) {
            state_->cancel_group();
            throw;
        }
        end_group();
    }

    /// Every rank presents `fingerprint` (an `ncclAllGather` of 8 bytes on channel 0); all must
    /// agree. The executor calls this at the start of `run` when it is available.
    /// \throws config_error naming the first rank that differs from rank 0; timeout_error when the
    /// others do not arrive within `timeout`; nccl_error; cuda_error; aborted_error.
    void agree(std::uint64_t fingerprint, std::chrono::nanoseconds timeout) { state_->agree(fingerprint, timeout); }

    /// Aborts the NCCL communicators (`ncclCommAbort`): this rank's waits throw `aborted_error`;
    /// then the first call runs `nccl_options::on_abort(why)`. Peers learn of it through NCCL
    /// (a network transport reports the closed connection) or their own timeouts. Any thread.
    void abort(const char* why) noexcept {
        state_->abort(why);
        if (state_->claim_abort_hook() && state_->options().on_abort) state_->options().on_abort(why != nullptr ? why : "");
    }

private:
    void close() noexcept {
        if (state_) state_->close();
    }

    std::shared_ptr<detail::nccl_state> state_;
};

static_assert(communicator_for<nccl_communicator, device_buffer>);
static_assert(abortable<nccl_communicator>);
static_assert(std::movable<device_buffer> && std::default_initializable<device_buffer>);

// The ring map gives the four edges at every rank four different channels.
static_assert(nccl_ring_channel(0, 1, 4) != nccl_ring_channel(0, 3, 4) &&
              nccl_ring_channel(0, 1, 4) != nccl_ring_channel(3, 0, 4) &&
              nccl_ring_channel(0, 1, 4) != nccl_ring_channel(1, 0, 4) &&
              nccl_ring_channel(0, 3, 4) != nccl_ring_channel(3, 0, 4) &&
              nccl_ring_channel(0, 3, 4) != nccl_ring_channel(1, 0, 4) &&
              nccl_ring_channel(3, 0, 4) != nccl_ring_channel(1, 0, 4));
static_assert(nccl_ring_channel(0, 1, 2) != nccl_ring_channel(1, 0, 2));

} // namespace paci
