#pragma once
/// \file
/// Internals of `nccl_communicator`: `nccl_state`, what a communicator and its requests share:
/// posting, issuing to NCCL, completion, the start-up agreement, the buffer pool and shutdown.
/// Every member but `abort` runs on the thread that owns the communicator.

#include <paci/core/action.hpp>
#include <paci/core/error.hpp>
#include <paci/nccl/detail/channels.hpp>
#include <paci/nccl/detail/queue.hpp>
#include <paci/nccl/device_buffer.hpp>
#include <paci/nccl/error.hpp>
#include <paci/runtime/detail/agreement.hpp>
#include <paci/runtime/detail/backoff.hpp>
#include <paci/runtime/detail/deadline.hpp>
#include <paci/runtime/detail/recycler.hpp>
#include <paci/runtime/errors.hpp>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace paci::detail {

class nccl_state : public nccl_channels {
public:
    using op_ptr = std::shared_ptr<nccl_op>;

    nccl_state(int rank, int size, cudaStream_t compute, std::function<std::size_t(int, int)> recv_size,
               nccl_options options)
        : nccl_channels(rank, size, std::move(options)), compute_(compute), recv_size_(std::move(recv_size)),
          deferred_(rank), pool_(options_.pool_limit) {}
    nccl_state(const nccl_state&) = delete;
    nccl_state& operator=(const nccl_state&) = delete;
    ~nccl_state() { close(); }

    /// Creates the ordering event, the streams and the NCCL communicators on the current device.
    void init(const ncclUniqueId& id) {
        cuda_check(cudaEventCreateWithFlags(&order_, cudaEventDisableTiming), "nccl_communicator",
                   "cudaEventCreateWithFlags");
        nccl_channels::init(id);
    }

    [[nodiscard]] cudaStream_t compute_stream() const noexcept { return compute_; }

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
            deferred_.push(op);
        } else if (peer == rank_) {
            deferred_.push(op);
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
        deferred_.push(op);
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
        if (!deferred_.empty()) issue_through(deferred_.back());
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
        if (op.state == nccl_op::phase::deferred && !aborted_ && !closed_) issue_through(&op);
        poll_until(
            nccl_pace(), timeout, [&] { return progress(op); }, [] {},
            [&] {
                {
                    std::lock_guard lock(mutex_);
                    abort_locked(concat("rank ", rank_, " timed out after ", seconds(timeout), " s waiting for rank ",
                                        op.peer, " (tag ", op.tag, ")"));
                }
                throw timeout_error(rank_, op.peer, op.tag, op.at, timeout);
            });
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
        if (closed_ || buffer.empty()) return;
        static_cast<void>(pool_.keep(std::move(buffer)));
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
        require_same_fingerprints(prints);
    }

    // --- shutdown -----------------------------------------------------------------------------

    /// Ends the communicator without hanging (`nccl_channels::close_comms`), then frees the
    /// streams, the event and the kept buffers. Requests that outlive it still report what
    /// completed before.
    void close() noexcept {
        if (closed_) return;
        closed_ = true;
        cuda_device_guard guard(device_);
        close_comms(); // afterwards no buffer is in use
        deferred_.clear();
        orphans_.clear();
        pool_.clear();
        destroy_streams();
        if (order_ != nullptr) static_cast<void>(cudaEventDestroy(order_));
        order_ = nullptr;
    }

private:
    void check_open() const {
        if (closed_) throw aborted_error("paci::nccl_communicator: used after it was destroyed");
        if (aborted_) throw_aborted();
    }

    void check_peer(int peer) const {
        config_require(peer >= 0 && peer < size_, "nccl_communicator", "peer", peer,
                       concat("must be in [0, ", size_, ")"));
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

    /// Issues the deferred self operation `op` with its partner, if it has one yet.
    void issue_self(const nccl_op& op) { take(deferred_.select_self(op)); }
    /// Issues the deferred operations posted up to and including `target` (see `nccl_queue`).
    void issue_through(const nccl_op* target) { take(deferred_.select_through(target)); }

    /// Removes the selected operations from the deferred queue and issues them (receive buffers
    /// first: a failed allocation leaves everything deferred).
    void take(nccl_queue::selection s) {
        if (s.batch.empty()) return;
        for (const op_ptr& op : s.batch)
            if (!op->send && op->buffer.empty()) op->buffer = take_buffer(op->bytes);
        deferred_.remove(s);
        issue(s.batch);
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
        if (auto kept = pool_.take([bytes](const device_buffer& b) { return b.size() == bytes; })) return std::move(*kept);
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

    cudaStream_t compute_;
    cudaEvent_t order_ = nullptr;
    std::function<std::size_t(int, int)> recv_size_;

    // Owner thread only.
    bool closed_ = false;
    int group_depth_ = 0;
    nccl_queue deferred_; // in posting order
    std::vector<op_ptr> orphans_;
    recycler<device_buffer> pool_;
};

} // namespace paci::detail
