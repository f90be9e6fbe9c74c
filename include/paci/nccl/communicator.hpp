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
///
/// The parts: <paci/nccl/options.hpp> (`nccl_options`, the ring map), detail/channels.hpp (the NCCL
/// communicators, their creation, polling, abort and shutdown), detail/queue.hpp (deferred
/// operations and self pairing), detail/state.hpp (posting, issuing, completion, agreement, the
/// buffer pool); the shared waits, agreement check and buffer recycling are in runtime/detail/.

#include <paci/core/action.hpp>
#include <paci/core/error.hpp>
#include <paci/nccl/detail/state.hpp>
#include <paci/nccl/device_buffer.hpp>
#include <paci/nccl/error.hpp>
#include <paci/nccl/options.hpp>
#include <paci/runtime/communicator.hpp>
#include <paci/runtime/errors.hpp>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

namespace paci {

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

} // namespace paci
