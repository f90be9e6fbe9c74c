#pragma once
/// \file
/// The MPI transport: `mpi_communicator<Buffer>` moves contiguous buffers of trivially copyable
/// elements between the processes of an `MPI_Comm`; `mpi_session` initializes and finalizes MPI.
/// Part of the optional `paci::mpi` CMake component; the core headers never include this one.

#include <paci/runtime/detail/deadline.hpp>
#include <paci/core/action.hpp>
#include <paci/core/error.hpp>
#include <paci/runtime/communicator.hpp>
#include <paci/runtime/errors.hpp>

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <ranges>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace paci {

/// A buffer `mpi_communicator` can move: a contiguous, resizable, default-constructible container of
/// trivially copyable elements, sent as its bytes.
///
/// Valid model: `std::vector<float>`. Near miss: `std::array<float, 4>` (cannot be resized to the
/// size of the message that arrives), or `std::vector<std::string>` (elements are not bytes).
template <class B>
concept mpi_buffer = std::ranges::contiguous_range<B> && std::ranges::sized_range<B> && std::movable<B> &&
                     std::default_initializable<B> &&
                     std::is_trivially_copyable_v<std::ranges::range_value_t<B>> &&
                     requires(B& b, std::size_t n) { b.resize(n); };

/// How an `mpi_communicator` waits and allocates.
///
/// Waits: a wait tests back to back (yielding the CPU between tests) for `busy`, then sleeps
/// between tests, doubling the sleep from `min_sleep` up to `max_sleep`. The busy phase keeps short
/// waits as fast as a blocking MPI call (every test drives MPI's progress engine); the sleeps keep a
/// long wait from taking a core that an oversubscribed rank needs.
///
/// Buffers: a buffer whose send has completed is kept (up to `recycled_buffers` of them) and reused
/// for a later receive of at least half its size, so a steady exchange allocates and
/// zero-fills nothing per message; 0 turns this off.
struct mpi_options {
    std::chrono::nanoseconds busy = std::chrono::milliseconds(5);
    std::chrono::nanoseconds min_sleep = std::chrono::microseconds(20);
    std::chrono::nanoseconds max_sleep = std::chrono::microseconds(500);
    std::size_t recycled_buffers = 4;
};

/// Initializes MPI for the lifetime of the object (`MPI_Init_thread`) and finalizes it
/// (`MPI_Finalize`) on destruction, unless MPI was already initialized when it was made (then it
/// neither initializes nor finalizes). For tests and examples; one per process.
///
///     int main(int argc, char** argv) {
///         paci::mpi_session mpi(&argc, &argv);
///         paci::mpi_communicator<std::vector<float>> comm(MPI_COMM_WORLD);
///         ...
///     }
///
/// `MPI_Finalize` waits for the other processes, so a rank that fails should `abort` (ending every
/// process) rather than return.
class mpi_session {
public:
    /// \throws transport_error if MPI fails to initialize or provides less than `required`
    /// (`MPI_THREAD_SERIALIZED` by default: one thread at a time calls MPI, which is what the
    /// executor does).
    explicit mpi_session(int* argc = nullptr, char*** argv = nullptr, int required = MPI_THREAD_SERIALIZED) {
        int initialized = 0;
        MPI_Initialized(&initialized);
        if (initialized) {
            MPI_Query_thread(&provided_);
        } else {
            const int rc = MPI_Init_thread(argc, argv, required, &provided_);
            if (rc != MPI_SUCCESS)
                throw transport_error(detail::concat("paci::mpi_session: MPI_Init_thread failed (MPI error ", rc, ")"), rc);
            owner_ = true;
        }
        if (provided_ < required) {
            const int provided = provided_;
            finalize();
            throw transport_error(detail::concat("paci::mpi_session: MPI provides thread level (", provided,
                                                 ") below the required level (", required, ")"));
        }
    }
    mpi_session(const mpi_session&) = delete;
    mpi_session& operator=(const mpi_session&) = delete;
    ~mpi_session() { finalize(); }

    /// The thread level MPI provides (`MPI_THREAD_SINGLE` ... `MPI_THREAD_MULTIPLE`).
    [[nodiscard]] int provided() const noexcept { return provided_; }
    /// True when this object initialized MPI and will finalize it.
    [[nodiscard]] bool owner() const noexcept { return owner_; }

private:
    void finalize() noexcept {
        if (!owner_) return;
        owner_ = false;
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
    }

    int provided_ = MPI_THREAD_SINGLE;
    bool owner_ = false;
};

namespace detail {

/// `MPI_Error_string(code)`, e.g. `"MPI_ERR_RANK: invalid rank"`.
[[nodiscard]] inline std::string mpi_error_string(int code) {
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "unknown MPI error";
    return std::string(text, static_cast<std::size_t>(length));
}

/// Throws `transport_error("paci::mpi_communicator: <what...> failed: <MPI text> (MPI error <code>)",
/// code)` when `code` is not `MPI_SUCCESS`; the message is built only on failure.
template <class... What>
void mpi_check(int code, const What&... what) {
    if (code == MPI_SUCCESS) return;
    throw transport_error(concat("paci::mpi_communicator: ", what..., " failed: ", mpi_error_string(code),
                                 " (MPI error ", code, ")"),
                          code);
}

/// One wait's polling rhythm (see `mpi_options`).
class mpi_backoff {
public:
    explicit mpi_backoff(const mpi_options& poll) : poll_(poll), busy_until_(deadline_after(poll.busy)) {}
    /// Pauses before the next test, never past `deadline`.
    void pause(std::chrono::steady_clock::time_point deadline) {
        const auto now = std::chrono::steady_clock::now();
        if (now < busy_until_) {
            std::this_thread::yield();
            return;
        }
        sleep_ = sleep_ == std::chrono::nanoseconds::zero() ? poll_.min_sleep : std::min(sleep_ * 2, poll_.max_sleep);
        if (deadline - now < sleep_) sleep_ = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
        if (sleep_ > std::chrono::nanoseconds::zero()) std::this_thread::sleep_for(sleep_);
        else std::this_thread::yield();
    }

private:
    mpi_options poll_;
    std::chrono::steady_clock::time_point busy_until_;
    std::chrono::nanoseconds sleep_{0};
};

/// Tests `done()` until it returns true, pausing between tests as `options` says (`mpi_backoff`);
/// once `timeout` has passed without it, calls `expire()`, which must throw.
template <class Done, class Expire>
void mpi_poll(const mpi_options& options, std::chrono::nanoseconds timeout, Done done, Expire expire) {
    const auto deadline = deadline_after(timeout);
    mpi_backoff backoff(options);
    while (!done()) {
        if (std::chrono::steady_clock::now() >= deadline) expire();
        backoff.pause(deadline);
    }
}

/// Byte count of `n` elements of `T` as MPI's `int`, or `config_error` past `INT_MAX`.
template <class T>
[[nodiscard]] int mpi_byte_count(std::size_t n) {
    const auto limit = static_cast<std::size_t>(INT_MAX) / sizeof(T);
    if (n > limit)
        config_fail("mpi_communicator", "message size (bytes)", static_cast<unsigned long long>(n) * sizeof(T),
                    "must be <= INT_MAX (2147483647)");
    return static_cast<int>(n * sizeof(T));
}

/// What every `mpi_communicator` copy and every request made from it share: the communicator, the
/// receive matching state per (peer, tag) and the requests abandoned before they completed.
template <class Buffer>
struct mpi_state {
    using element = std::ranges::range_value_t<Buffer>;

    /// A receive already matched to a message (`MPI_Improbe` + `MPI_Imrecv` posted) whose request
    /// has not asked for it yet.
    struct matched {
        std::unique_ptr<Buffer> buffer;
        MPI_Request request = MPI_REQUEST_NULL;
    };
    /// Receives from one (peer, tag) in the order they were posted: ticket `t` gets the `t`-th
    /// message, whichever request is tested first. MPI's non-overtaking rule orders the messages;
    /// the tickets order the requests.
    struct channel {
        std::uint64_t next_ticket = 0; ///< the ticket of the next `irecv`
        std::uint64_t next_match = 0;  ///< the ticket the next probed message goes to
        std::map<std::uint64_t, matched> stash;
        std::set<std::uint64_t> dropped; ///< tickets whose request was destroyed before matching
    };
    /// A request destroyed before it completed: MPI still owns its buffer until it does.
    struct orphan {
        MPI_Request request = MPI_REQUEST_NULL;
        std::shared_ptr<void> storage;
    };

    mpi_state(MPI_Comm c, std::function<std::size_t(int, int)> max, mpi_options o)
        : comm(c), max_elements(std::move(max)), options(o) {
        mpi_check(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
        mpi_check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
        mpi_check(MPI_Comm_size(comm, &size), "MPI_Comm_size");
    }
    mpi_state(const mpi_state&) = delete;
    mpi_state& operator=(const mpi_state&) = delete;

    /// Incomplete requests cannot be waited for here (a dead peer would hang the destructor): they
    /// are freed and their buffers deliberately leaked, since MPI may still write or read them.
    ~mpi_state() {
        int finalized = 0;
        MPI_Finalized(&finalized);
        for (auto& o : orphans) {
            if (!finalized && o.request != MPI_REQUEST_NULL) {
                int done = 0;
                if (MPI_Test(&o.request, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done) continue;
                if (o.request != MPI_REQUEST_NULL) MPI_Request_free(&o.request);
            }
            new std::shared_ptr<void>(std::move(o.storage)); // leaked on purpose
        }
    }

    void adopt(MPI_Request request, std::shared_ptr<void> storage) {
        if (request != MPI_REQUEST_NULL) orphans.push_back({request, std::move(storage)});
    }

    /// Completes what abandoned requests it can (cheap when there are none).
    void reap() {
        std::erase_if(orphans, [](orphan& o) {
            int done = 0;
            return MPI_Test(&o.request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || done != 0;
        });
    }

    /// Keeps the buffer of a completed send for a later receive.
    void recycle(std::unique_ptr<Buffer> b) {
        if (b && spares.size() < options.recycled_buffers) spares.push_back(std::move(b));
    }

    /// A buffer of `n` elements: a spare one holding between `n` and `2n` (so reuse never more than
    /// doubles what a received buffer keeps) when there is one, else a new one.
    [[nodiscard]] std::unique_ptr<Buffer> fresh(std::size_t n) {
        const auto kept = [](const Buffer& b) {
            if constexpr (requires { b.capacity(); }) return static_cast<std::size_t>(b.capacity());
            else return static_cast<std::size_t>(std::ranges::size(b));
        };
        auto best = spares.end();
        for (auto it = spares.begin(); it != spares.end(); ++it) {
            const std::size_t have = std::ranges::size(**it);
            if (have >= n && kept(**it) <= 2 * n + 4096 / sizeof(element) &&
                (best == spares.end() || have < std::ranges::size(**best)))
                best = it;
        }
        std::unique_ptr<Buffer> b;
        if (best != spares.end()) {
            b = std::move(*best);
            spares.erase(best);
        } else {
            b = std::make_unique<Buffer>();
        }
        b->resize(n); // shrinking a spare writes nothing
        return b;
    }

    [[nodiscard]] channel& channel_of(int peer, int tag) { return channels[{peer, tag}]; }

    /// Matches probed messages to tickets up to `ticket`; when `ticket`'s message has been matched,
    /// moves it to `out` and returns true.
    bool match(int peer, int tag, std::uint64_t ticket, matched& out) {
        channel& ch = channel_of(peer, tag);
        while (ch.next_match <= ticket) {
            int found = 0;
            MPI_Message message = MPI_MESSAGE_NULL;
            MPI_Status status;
            mpi_check(MPI_Improbe(peer, tag, comm, &found, &message, &status), "MPI_Improbe from rank ", peer,
                      " (tag ", tag, ")");
            if (!found) break;
            int bytes = 0;
            mpi_check(MPI_Get_count(&status, MPI_BYTE, &bytes), "MPI_Get_count");
            // A message whose size is not a whole number of elements is still received (so the
            // channel stays in step) and reported when its request completes.
            const auto n = (static_cast<std::size_t>(bytes) + sizeof(element) - 1) / sizeof(element);
            matched m;
            m.buffer = fresh(n);
            // Nonblocking: a blocking MPI_Mrecv of a large message would wait for the sender to
            // make progress, with no timeout.
            mpi_check(MPI_Imrecv(std::ranges::data(*m.buffer), bytes, MPI_BYTE, &message, &m.request),
                      "MPI_Imrecv from rank ", peer, " (tag ", tag, ")");
            const std::uint64_t t = ch.next_match++;
            if (ch.dropped.erase(t) != 0) adopt(m.request, std::shared_ptr<Buffer>(std::move(m.buffer)));
            else ch.stash.emplace(t, std::move(m));
        }
        const auto it = ch.stash.find(ticket);
        if (it == ch.stash.end()) return false;
        out = std::move(it->second);
        ch.stash.erase(it);
        return true;
    }

    /// The request holding `ticket` was destroyed before completing.
    void drop(int peer, int tag, std::uint64_t ticket) {
        channel& ch = channel_of(peer, tag);
        if (const auto it = ch.stash.find(ticket); it != ch.stash.end()) {
            adopt(it->second.request, std::shared_ptr<Buffer>(std::move(it->second.buffer)));
            ch.stash.erase(it);
        } else if (ticket >= ch.next_match) {
            ch.dropped.insert(ticket);
        }
    }

    MPI_Comm comm;
    std::function<std::size_t(int, int)> max_elements; ///< empty: probe for the size
    mpi_options options;
    std::vector<std::unique_ptr<Buffer>> spares; ///< buffers of completed sends, for receives
    int rank = 0;
    int size = 0;
    std::map<std::pair<int, int>, channel> channels;
    std::vector<orphan> orphans;
};

} // namespace detail

/// One process's view of an `MPI_Comm` as a paci communicator: buffers travel as their bytes with
/// `MPI_Isend`, and a receive learns the size of what arrives (`MPI_Improbe`, `MPI_Get_count`,
/// `MPI_Imrecv`), or, given a maximum size per (peer, tag), posts `MPI_Irecv` at once.
/// Satisfies `communicator_for<mpi_communicator<Buffer>, Buffer>` and `abortable`.
///
/// - Order: messages with the same (peer, tag) are received in the order they were sent (MPI's
///   non-overtaking rule), and handed to receive requests in the order the requests were made,
///   whichever request is tested or waited on first.
/// - Timeouts: `wait(timeout)` polls (see `mpi_options`) until a deadline and then throws
///   `timeout_error` naming this rank, the peer, the tag and the action given to `isend`/`irecv`.
/// - Errors: the constructor sets `MPI_ERRORS_RETURN` on the communicator (so it no longer aborts
///   on error for other users of it either); every failing MPI call becomes `transport_error`
///   carrying the MPI error code and `MPI_Error_string`.
/// - Failure: `abort(why)` ends every process of the job (`MPI_Abort`), which is how a failing rank
///   stops the others under MPI; a peer that dies is noticed by the launcher (which ends the job)
///   or, failing that, by the survivors' timeouts.
/// - Lifetime: does not own the `MPI_Comm`, which must outlive the communicator and its requests.
///   Copies share their matching state; two communicators made separately over the same `MPI_Comm`
///   must not use the same tags (or use `MPI_Comm_dup`). A request destroyed before it completes
///   still takes its message (the next one from that peer and tag), which is discarded.
/// - Buffers: a sent buffer is kept once its send completes and reused for a later receive (see
///   `mpi_options`), so a received `std::vector` may have up to about twice its size in capacity.
/// - Threads: a communicator, its copies and their requests are used by one thread at a time
///   (`MPI_THREAD_SERIALIZED` suffices).
///
///     paci::mpi_session mpi(&argc, &argv);
///     paci::mpi_communicator<std::vector<float>> comm(MPI_COMM_WORLD);
///     const int next = (comm.rank() + 1) % comm.size(), prev = (comm.rank() + comm.size() - 1) % comm.size();
///     auto r = comm.irecv(prev, 0);
///     auto s = comm.isend(next, 0, std::vector<float>(1024, 1.0f));
///     std::vector<float> got = r.wait(std::chrono::seconds(10));
///     s.wait(std::chrono::seconds(10));
template <mpi_buffer Buffer>
class mpi_communicator {
    using state_type = detail::mpi_state<Buffer>;
    using element = std::ranges::range_value_t<Buffer>;

public:
    using buffer_type = Buffer;
    /// Largest message, in elements, that `peer` sends with `tag` (fixed-size receives).
    using max_elements_fn = std::function<std::size_t(int peer, int tag)>;

    /// A pending send; owns the buffer until the send completes.
    class send_request {
    public:
        send_request(send_request&& o) noexcept
            : state_(std::move(o.state_)), buffer_(std::move(o.buffer_)),
              request_(std::exchange(o.request_, MPI_REQUEST_NULL)), peer_(o.peer_), tag_(o.tag_), at_(o.at_) {}
        send_request& operator=(send_request&& o) noexcept {
            if (this != &o) {
                release();
                state_ = std::move(o.state_);
                buffer_ = std::move(o.buffer_);
                request_ = std::exchange(o.request_, MPI_REQUEST_NULL);
                peer_ = o.peer_;
                tag_ = o.tag_;
                at_ = o.at_;
            }
            return *this;
        }
        send_request(const send_request&) = delete;
        send_request& operator=(const send_request&) = delete;
        ~send_request() { release(); }

        /// True once the buffer has left (and has been released).
        /// \throws transport_error when MPI reports a failure.
        [[nodiscard]] bool test() {
            if (request_ == MPI_REQUEST_NULL) return true;
            int done = 0;
            detail::mpi_check(MPI_Test(&request_, &done, MPI_STATUS_IGNORE), "MPI_Isend to rank ", peer_, " (tag ",
                              tag_, ")");
            if (done) state_->recycle(std::move(buffer_));
            return done != 0;
        }
        /// Blocks until the send completes.
        /// \throws timeout_error after `timeout`; transport_error when MPI reports a failure.
        void wait(std::chrono::nanoseconds timeout) {
            detail::mpi_poll(state_->options, timeout, [this] { return test(); },
                             [&] { throw timeout_error(state_->rank, peer_, tag_, at_, timeout); });
        }

    private:
        friend class mpi_communicator;
        send_request(std::shared_ptr<state_type> s, int peer, int tag, action at)
            : state_(std::move(s)), peer_(peer), tag_(tag), at_(at) {}
        void release() noexcept {
            if (request_ != MPI_REQUEST_NULL) state_->adopt(request_, std::shared_ptr<Buffer>(std::move(buffer_)));
            request_ = MPI_REQUEST_NULL;
        }

        std::shared_ptr<state_type> state_;
        std::unique_ptr<Buffer> buffer_;
        MPI_Request request_ = MPI_REQUEST_NULL;
        int peer_ = 0, tag_ = 0;
        action at_{};
    };

    /// A pending receive from (peer, tag); `wait` hands over the buffer once.
    class recv_request {
    public:
        recv_request(recv_request&& o) noexcept
            : state_(std::move(o.state_)), buffer_(std::move(o.buffer_)),
              request_(std::exchange(o.request_, MPI_REQUEST_NULL)), ticket_(o.ticket_), peer_(o.peer_),
              tag_(o.tag_), at_(o.at_), phase_(std::exchange(o.phase_, phase::taken)) {}
        recv_request& operator=(recv_request&& o) noexcept {
            if (this != &o) {
                release();
                state_ = std::move(o.state_);
                buffer_ = std::move(o.buffer_);
                request_ = std::exchange(o.request_, MPI_REQUEST_NULL);
                ticket_ = o.ticket_;
                peer_ = o.peer_;
                tag_ = o.tag_;
                at_ = o.at_;
                phase_ = std::exchange(o.phase_, phase::taken);
            }
            return *this;
        }
        recv_request(const recv_request&) = delete;
        recv_request& operator=(const recv_request&) = delete;
        ~recv_request() { release(); }

        /// True once the data has arrived (it stays true until `wait` takes the buffer).
        /// \throws transport_error when MPI reports a failure or the message is not a whole number
        /// of elements.
        [[nodiscard]] bool test() {
            if (phase_ == phase::complete || phase_ == phase::taken) return true;
            if (phase_ == phase::unmatched) {
                typename state_type::matched m;
                if (!state_->match(peer_, tag_, ticket_, m)) return false;
                buffer_ = std::move(m.buffer);
                request_ = m.request;
                phase_ = phase::posted;
            }
            int done = 0;
            MPI_Status status;
            detail::mpi_check(MPI_Test(&request_, &done, &status), "receive from rank ", peer_, " (tag ", tag_, ")");
            if (!done) return false;
            phase_ = phase::complete;
            int bytes = 0;
            detail::mpi_check(MPI_Get_count(&status, MPI_BYTE, &bytes), "MPI_Get_count");
            if (static_cast<std::size_t>(bytes) % sizeof(element) != 0)
                throw transport_error(detail::concat("paci::mpi_communicator: message from rank ", peer_, " (tag ",
                                                     tag_, ") has ", bytes,
                                                     " bytes, not a whole number of elements of size ",
                                                     sizeof(element)));
            buffer_->resize(static_cast<std::size_t>(bytes) / sizeof(element));
            return true;
        }
        /// Blocks until the data arrives and returns it.
        /// \throws timeout_error after `timeout`; transport_error when MPI reports a failure.
        [[nodiscard]] Buffer wait(std::chrono::nanoseconds timeout) {
            PACI_ASSERT(phase_ != phase::taken, "paci::mpi_communicator: wait on a receive already taken");
            if (phase_ == phase::taken) return Buffer{};
            detail::mpi_poll(state_->options, timeout, [this] { return test(); },
                             [&] { throw timeout_error(state_->rank, peer_, tag_, at_, timeout); });
            phase_ = phase::taken;
            Buffer out = std::move(*buffer_);
            buffer_.reset();
            return out;
        }

    private:
        friend class mpi_communicator;
        enum class phase : std::uint8_t { unmatched, posted, complete, taken };
        recv_request(std::shared_ptr<state_type> s, int peer, int tag, action at)
            : state_(std::move(s)), peer_(peer), tag_(tag), at_(at) {}
        void release() noexcept {
            if (phase_ == phase::unmatched) state_->drop(peer_, tag_, ticket_);
            else if (phase_ == phase::posted) state_->adopt(request_, std::shared_ptr<Buffer>(std::move(buffer_)));
            request_ = MPI_REQUEST_NULL;
            phase_ = phase::taken;
        }

        std::shared_ptr<state_type> state_;
        std::unique_ptr<Buffer> buffer_;
        MPI_Request request_ = MPI_REQUEST_NULL;
        std::uint64_t ticket_ = 0;
        int peer_ = 0, tag_ = 0;
        action at_{};
        phase phase_ = phase::unmatched;
    };

    /// Transport over `comm`, receiving messages of any size (probed as they arrive).
    /// \throws transport_error if `comm` is not a valid communicator.
    explicit mpi_communicator(MPI_Comm comm, mpi_options options = {})
        : state_(std::make_shared<state_type>(comm, max_elements_fn{}, options)) {}
    /// Transport over `comm` whose receives are posted at once (`MPI_Irecv`) with room for
    /// `max_elements(peer, tag)` elements; a larger message is a `transport_error` (`MPI_ERR_TRUNCATE`).
    mpi_communicator(MPI_Comm comm, max_elements_fn max_elements, mpi_options options = {})
        : state_(std::make_shared<state_type>(comm, std::move(max_elements), options)) {}

    [[nodiscard]] int rank() const noexcept { return state_->rank; }
    [[nodiscard]] int size() const noexcept { return state_->size; }
    [[nodiscard]] MPI_Comm comm() const noexcept { return state_->comm; }

    /// Sends `buffer` to `peer` with `tag`; the request owns the buffer until the send completes.
    /// `at` names the action in a `timeout_error`.
    /// \throws transport_error (an invalid peer or tag, ...); config_error past 2 GiB.
    [[nodiscard]] send_request isend(int peer, int tag, Buffer buffer, action at = {}) {
        state_->reap();
        send_request r(state_, peer, tag, at);
        r.buffer_ = std::make_unique<Buffer>(std::move(buffer));
        const int bytes = detail::mpi_byte_count<element>(std::ranges::size(*r.buffer_));
        detail::mpi_check(MPI_Isend(std::ranges::data(*r.buffer_), bytes, MPI_BYTE, peer, tag, state_->comm, &r.request_),
                          "MPI_Isend to rank ", peer, " (tag ", tag, ")");
        return r;
    }

    /// Receives the next message from `peer` with `tag`. `at` names the action in a `timeout_error`.
    /// \throws transport_error (an invalid peer or tag, ...).
    [[nodiscard]] recv_request irecv(int peer, int tag, action at = {}) {
        state_->reap();
        recv_request r(state_, peer, tag, at);
        if (state_->max_elements) {
            r.buffer_ = state_->fresh(state_->max_elements(peer, tag));
            const int bytes = detail::mpi_byte_count<element>(std::ranges::size(*r.buffer_));
            detail::mpi_check(MPI_Irecv(std::ranges::data(*r.buffer_), bytes, MPI_BYTE, peer, tag, state_->comm, &r.request_),
                              "MPI_Irecv from rank ", peer, " (tag ", tag, ")");
            r.phase_ = recv_request::phase::posted;
        } else {
            r.ticket_ = state_->channel_of(peer, tag).next_ticket++;
            // Probe once now: MPI reports an invalid peer or tag here rather than at the first
            // test, and a message that has already arrived is matched (and its copy started) early.
            typename state_type::matched m;
            if (state_->match(peer, tag, r.ticket_, m)) {
                r.buffer_ = std::move(m.buffer);
                r.request_ = m.request;
                r.phase_ = recv_request::phase::posted;
            }
        }
        return r;
    }

    /// Every rank presents `fingerprint` (`MPI_Iallgather`); all must agree.
    /// \throws config_error naming the first rank that differs from rank 0; timeout_error when the
    /// others do not arrive within `timeout`; transport_error.
    void agree(std::uint64_t fingerprint, std::chrono::nanoseconds timeout) {
        auto prints = std::make_shared<std::vector<std::uint64_t>>(static_cast<std::size_t>(size()));
        auto mine = std::make_shared<std::uint64_t>(fingerprint);
        MPI_Request request = MPI_REQUEST_NULL;
        detail::mpi_check(MPI_Iallgather(mine.get(), 1, MPI_UINT64_T, prints->data(), 1, MPI_UINT64_T, comm(), &request),
                          "MPI_Iallgather");
        detail::mpi_poll(
            state_->options, timeout,
            [&] {
                int done = 0;
                detail::mpi_check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Iallgather");
                return done != 0;
            },
            [&] {
                // The collective is still running and may write into the buffers: keep them alive.
                state_->orphans.push_back({request, std::make_shared<std::pair<decltype(prints), decltype(mine)>>(prints, mine)});
                throw timeout_error(rank(), -1, -1, action{}, timeout);
            });
        const auto& p = *prints;
        for (std::size_t r = 1; r < p.size(); ++r)
            if (p[r] != p[0])
                detail::config_fail("executor", "configuration of rank", r,
                                    detail::concat("differs from rank 0's (different policy, stage count or "
                                                   "micro-batch count; fingerprints ",
                                                   p[r], " and ", p[0], ")"));
    }

    /// Ends every process of the job: prints `why` with this rank to standard error and calls
    /// `MPI_Abort` (exit status 1). This is how a failing rank stops the others under MPI: their
    /// waits end because their processes end, so they never see an `aborted_error`.
    [[noreturn]] void abort(const char* why) noexcept {
        std::fprintf(stderr, "paci::mpi_communicator: rank %d aborts the job: %s\n", rank(), why ? why : "");
        std::fflush(stderr);
        MPI_Abort(state_->comm, 1);
        std::abort(); // MPI_Abort does not return; if it ever did, the process must still end
    }

private:
    std::shared_ptr<state_type> state_;
};

static_assert(communicator_for<mpi_communicator<std::vector<float>>, std::vector<float>>);
static_assert(abortable<mpi_communicator<std::vector<float>>>);
static_assert(!mpi_buffer<std::vector<std::string>>);

} // namespace paci
