#pragma once
/// \file
/// The MPI transport: `mpi_communicator<Buffer>` moves contiguous buffers of trivially copyable
/// elements between the processes of an `MPI_Comm`; `mpi_session` initializes and finalizes MPI.
/// Part of the optional `paci::mpi` CMake component; the core headers never include this one.

#include <paci/runtime/detail/agreement.hpp>
#include <paci/runtime/detail/backoff.hpp>
#include <paci/runtime/detail/deadline.hpp>
#include <paci/runtime/detail/recycler.hpp>
#include <paci/core/action.hpp>
#include <paci/core/error.hpp>
#include <paci/runtime/communicator.hpp>
#include <paci/runtime/errors.hpp>

#include <mpi.h>

#include <algorithm>
#include <array>
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
/// Waits: a wait tests its request back to back, yielding the CPU between tests
/// (`std::this_thread::yield`), for `busy`; after that it sleeps between tests, doubling the sleep
/// from `min_sleep` up to `max_sleep` (`max_sleep` 0: never sleeps). Every test also drives MPI's
/// progress engine and looks for an abort notice (see `mpi_communicator::abort`). The trade-off:
/// - Wake-up latency: while polling, a wait returns about one `MPI_Test` plus one yield (a
///   microsecond or two) after its message arrives, like a blocking MPI call (Open MPI and MPICH
///   poll too). Once sleeping, it can return up to `max_sleep` plus the OS timer slack late (Linux
///   adds about 50 to 70 us to every sleep of an ordinary thread: a 1 us sleep takes about 70 us).
///   Sleeps therefore start only after `busy`, by default 100 ms: longer than the bubble of any
///   flushed schedule whose stages take up to a few milliseconds, so the transport does not slow
///   a flushed schedule after its bubbles, and a wait that does sleep is late by at most about
///   0.1% of its length.
/// - CPU: a polling wait takes its core; a sleeping one takes almost none. With no more ranks than
///   cores, polling costs nothing else. With more (an oversubscribed test machine), polling ranks
///   compete with computing ones for the cores (Linux's `sched_yield` gives a core up only
///   briefly): set `busy` to 0 there (sleep from the first test) and accept the latency. Lower
///   `busy` also where waits are long (a rank idle during another rank's evaluation) and cores are
///   shared; raise it (up to `std::chrono::nanoseconds::max()`, never sleep) for the lowest latency.
/// The timeout is exact either way: no sleep extends past a wait's deadline.
///
/// Buffers: a buffer whose send has completed is kept (up to `recycled_buffers` of them) and reused
/// for a later receive of at least half its size, so a steady exchange allocates and
/// zero-fills nothing per message; 0 turns this off.
struct mpi_options {
    std::chrono::nanoseconds busy = std::chrono::milliseconds(100);
    std::chrono::nanoseconds min_sleep = std::chrono::microseconds(1);
    std::chrono::nanoseconds max_sleep = std::chrono::microseconds(20);
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
/// `MPI_Finalize` waits for every other process to call it too. A job in which one rank fails ends
/// normally when every rank returns through its `catch` (the failing rank's `pipeline_error`, the
/// others' `aborted_error`): destroy the executors and `mpi_communicator`s (their destructors cancel
/// or free what is still pending, see `mpi_communicator`) and then this object, on every rank. A rank
/// that cannot return should `mpi_communicator::terminate` instead, which ends every process.
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

/// One wait's polling rhythm (see `mpi_options`): the transports' shared `detail::backoff`.
[[nodiscard]] inline backoff mpi_pace(const mpi_options& poll) {
    return backoff(poll.busy, poll.min_sleep, poll.max_sleep);
}

/// Tests `done()` until it returns true, pausing between tests as `options` says (`mpi_pace`).
/// Before each test calls `check()`, which throws when the job was aborted; once `timeout` has
/// passed without `done()`, calls `expire()`, which must throw.
template <class Done, class Check, class Expire>
void mpi_poll(const mpi_options& options, std::chrono::nanoseconds timeout, Done done, Check check, Expire expire) {
    poll_until(mpi_pace(options), timeout, std::move(done), std::move(check), std::move(expire));
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

/// Longest abort notice, in bytes (a longer `why` is cut).
inline constexpr int mpi_notice_bytes = 4096;
/// The tag of abort notices on the communicator's private duplicate.
inline constexpr int mpi_notice_tag = 1;

/// What every `mpi_communicator` copy and every request made from it share: the communicator, its
/// private duplicate (abort notices and the start-up agreement), the receive matching state per
/// (peer, tag), the requests abandoned before they completed, and whether the job was aborted.
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
    /// A request destroyed before it completed: MPI still owns its buffer until it does. A
    /// collective's request may not be freed (MPI forbids `MPI_Request_free` on it): it is left to
    /// `MPI_Finalize`.
    struct orphan {
        MPI_Request request = MPI_REQUEST_NULL;
        std::shared_ptr<void> storage;
        bool collective = false;
    };

    mpi_state(MPI_Comm c, std::function<std::size_t(int, int)> max, mpi_options o)
        : comm(c), max_elements(std::move(max)), options(o), spares(o.recycled_buffers) {
        config_require(o.busy >= std::chrono::nanoseconds::zero(), "mpi_communicator", "busy (ns)", o.busy.count(),
                       "must be >= 0");
        config_require(o.min_sleep >= std::chrono::nanoseconds::zero(), "mpi_communicator", "min_sleep (ns)",
                       o.min_sleep.count(), "must be >= 0");
        config_require(o.max_sleep >= o.min_sleep, "mpi_communicator", "max_sleep (ns)", o.max_sleep.count(),
                       concat("must be >= min_sleep (", o.min_sleep.count(), " ns)"));
        mpi_check(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
        mpi_check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
        mpi_check(MPI_Comm_size(comm, &size), "MPI_Comm_size");
        mpi_check(MPI_Comm_dup(comm, &control), "MPI_Comm_dup");
        const int rc = MPI_Comm_set_errhandler(control, MPI_ERRORS_RETURN) == MPI_SUCCESS
                           ? MPI_Irecv(notice_in.data(), mpi_notice_bytes, MPI_CHAR, MPI_ANY_SOURCE, mpi_notice_tag,
                                       control, &notice_request)
                           : MPI_ERR_OTHER;
        if (rc != MPI_SUCCESS) {
            MPI_Comm_free(&control);
            mpi_check(rc, "MPI_Irecv of abort notices");
        }
    }
    mpi_state(const mpi_state&) = delete;
    mpi_state& operator=(const mpi_state&) = delete;

    /// Leaves nothing of its own pending for `MPI_Finalize` to wait on: the receive of abort notices
    /// is cancelled, notices that arrived anyway are received and dropped, and the duplicate
    /// communicator is freed. Incomplete requests cannot be waited for here (a dead peer would hang
    /// the destructor): they are freed and their buffers deliberately leaked, since MPI may still
    /// write or read them. After `MPI_Finalize` (a communicator that outlived its `mpi_session`)
    /// nothing can be released, and everything is leaked.
    ~mpi_state() {
        int finalized = 0;
        MPI_Finalized(&finalized);
        const auto leak = [](std::shared_ptr<void> p) { new std::shared_ptr<void>(std::move(p)); };
        for (auto& o : orphans) {
            if (!finalized && o.request != MPI_REQUEST_NULL && !o.collective) {
                int done = 0;
                if (MPI_Test(&o.request, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done) continue;
                if (o.request != MPI_REQUEST_NULL) MPI_Request_free(&o.request);
            }
            leak(std::move(o.storage));
        }
        for (auto& n : notices_out) {
            if (!finalized && n.request != MPI_REQUEST_NULL) {
                int done = 0;
                if (MPI_Test(&n.request, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done) continue;
                if (n.request != MPI_REQUEST_NULL) MPI_Request_free(&n.request);
            }
            leak(std::move(n.text));
        }
        if (finalized) return;
        if (notice_request != MPI_REQUEST_NULL) {
            // Cancelling a receive completes it locally (cancelled, or matched meanwhile).
            MPI_Cancel(&notice_request);
            MPI_Wait(&notice_request, MPI_STATUS_IGNORE);
        }
        // Notices from ranks that aborted after the first one (or after this rank stopped looking).
        for (int found = 1; found;) {
            MPI_Status status;
            if (MPI_Iprobe(MPI_ANY_SOURCE, mpi_notice_tag, control, &found, &status) != MPI_SUCCESS) break;
            if (found && MPI_Recv(notice_in.data(), mpi_notice_bytes, MPI_CHAR, status.MPI_SOURCE, mpi_notice_tag,
                                  control, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                break;
        }
        MPI_Comm_free(&control);
    }

    /// True once the job is aborted: by this rank (`abort`) or by a notice from another rank, which
    /// this looks for (one `MPI_Test`).
    [[nodiscard]] bool aborted() {
        if (aborted_by >= 0) return true;
        if (notice_request == MPI_REQUEST_NULL) return false;
        int done = 0;
        MPI_Status status;
        if (MPI_Test(&notice_request, &done, &status) != MPI_SUCCESS || !done) return false;
        int bytes = 0;
        MPI_Get_count(&status, MPI_CHAR, &bytes);
        aborted_by = status.MPI_SOURCE;
        why = std::string(notice_in.data(), static_cast<std::size_t>(std::clamp(bytes, 0, mpi_notice_bytes)));
        return true;
    }

    /// Throws `aborted_error` when the job is aborted; `waiting` says what this rank was waiting
    /// for, e.g. `"rank 1 (tag 2) at 2F5"`.
    template <class... What>
    void throw_if_aborted(const What&... waiting) {
        if (!aborted()) return;
        if (aborted_by == rank)
            throw aborted_error(concat("paci::mpi_communicator: rank ", rank, " stopped waiting for ", waiting...,
                                       ": this rank aborted the job: ", why));
        throw aborted_error(concat("paci::mpi_communicator: rank ", rank, " stopped waiting for ", waiting...,
                                   ": rank ", aborted_by, " aborted the job: ", why));
    }

    /// Records the abort and sends a notice carrying `text` to every other rank (once).
    void abort(std::string text) noexcept {
        if (notices_sent) return;
        notices_sent = true;
        if (text.size() >= static_cast<std::size_t>(mpi_notice_bytes)) text.resize(mpi_notice_bytes - 1);
        try {
            if (!aborted()) {
                aborted_by = rank;
                why = text;
            }
            auto shared = std::make_shared<std::string>(std::move(text));
            for (int peer = 0; peer < size; ++peer) {
                if (peer == rank) continue;
                notice n{MPI_REQUEST_NULL, shared};
                // A small message: sent eagerly, so the send completes without the peer.
                if (MPI_Isend(shared->data(), static_cast<int>(shared->size()), MPI_CHAR, peer, mpi_notice_tag,
                              control, &n.request) == MPI_SUCCESS)
                    notices_out.push_back(std::move(n));
            }
        } catch (...) { // out of memory: the peers' timeouts remain
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
        if (b) static_cast<void>(spares.keep(std::move(b)));
    }

    /// A buffer of `n` elements: a spare one holding between `n` and `2n` (so reuse never more than
    /// doubles what a received buffer keeps) when there is one, else a new one.
    [[nodiscard]] std::unique_ptr<Buffer> fresh(std::size_t n) {
        const auto kept = [](const Buffer& b) {
            if constexpr (requires { b.capacity(); }) return static_cast<std::size_t>(b.capacity());
            else return static_cast<std::size_t>(std::ranges::size(b));
        };
        std::unique_ptr<Buffer> b;
        if (auto spare = spares.take_smallest(
                [&](const std::unique_ptr<Buffer>& spare_buffer) {
                    return std::ranges::size(*spare_buffer) >= n && kept(*spare_buffer) <= 2 * n + 4096 / sizeof(element);
                },
                [](const std::unique_ptr<Buffer>& spare_buffer) { return std::ranges::size(*spare_buffer); }))
            b = std::move(*spare);
        else
            b = std::make_unique<Buffer>();
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
    detail::recycler<std::unique_ptr<Buffer>> spares; ///< buffers of completed sends, for receives
    int rank = 0;
    int size = 0;
    std::map<std::pair<int, int>, channel> channels;
    std::vector<orphan> orphans;

    /// A sent abort notice: MPI reads `text` until the send completes.
    struct notice {
        MPI_Request request = MPI_REQUEST_NULL;
        std::shared_ptr<std::string> text;
    };
    MPI_Comm control = MPI_COMM_NULL;     ///< `MPI_Comm_dup(comm)`: abort notices, the start-up agreement
    std::array<char, mpi_notice_bytes> notice_in{};
    MPI_Request notice_request = MPI_REQUEST_NULL; ///< the receive of the first abort notice
    std::vector<notice> notices_out;
    bool notices_sent = false;
    int aborted_by = -1; ///< the rank that aborted the job, -1 while it runs
    std::string why;     ///< that rank's reason
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
/// - Timeouts: `wait(timeout)` polls (see `mpi_options` for its wake-up latency and CPU cost) until
///   a deadline and then throws `timeout_error` naming this rank, the peer, the tag and the action
///   given to `isend`/`irecv`.
/// - Errors: the constructor sets `MPI_ERRORS_RETURN` on the communicator (so it no longer aborts
///   on error for other users of it either); every failing MPI call becomes `transport_error`
///   carrying the MPI error code and `MPI_Error_string`.
/// - Failure: `abort(why)` notifies every other rank and returns; from then on every wait, on every
///   rank, throws `aborted_error` carrying `why` (within its timeout: waits look for the notice at
///   every test), so every rank's caller can `catch`. `terminate(why)` ends every process instead
///   (`MPI_Abort`). A peer that dies is noticed by the launcher (which ends the job) or, failing
///   that, by the survivors' timeouts.
/// - Construction is collective over `comm`, like `MPI_Comm_dup` (which it calls: a private
///   duplicate carries the abort notices and the start-up agreement, so they never meet the user's
///   messages): every rank constructs its communicators in the same order.
/// - Ending a job after a failure: destroy the communicator (its last copy and requests) on every
///   rank before `MPI_Finalize`. The destructor cancels the pending receive of abort notices,
///   receives notices still queued, frees the duplicate, and frees requests still pending (their
///   buffers leak, since MPI may still use them), so that `MPI_Finalize` does not wait on this
///   communicator's traffic. A communicator destroyed after `MPI_Finalize` only leaks. To go on
///   working on the same processes after an abort (a new executor, say), make the new communicator
///   over a fresh `MPI_Comm_dup` of `comm`: messages of the aborted run may still be in flight on
///   `comm`, and would be received as the new run's.
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
        /// \throws aborted_error once the job is aborted (`mpi_communicator::abort`, here or on any
        /// rank); timeout_error after `timeout`; transport_error when MPI reports a failure.
        void wait(std::chrono::nanoseconds timeout) {
            detail::mpi_poll(
                state_->options, timeout, [this] { return test(); },
                [this] { state_->throw_if_aborted("rank ", peer_, " to take a message (tag ", tag_, ") at ", at_); },
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
        /// \throws aborted_error once the job is aborted (`mpi_communicator::abort`, here or on any
        /// rank); timeout_error after `timeout`; transport_error when MPI reports a failure.
        [[nodiscard]] Buffer wait(std::chrono::nanoseconds timeout) {
            PACI_ASSERT(phase_ != phase::taken, "paci::mpi_communicator: wait on a receive already taken");
            if (phase_ == phase::taken) return Buffer{};
            detail::mpi_poll(
                state_->options, timeout, [this] { return test(); },
                [this] { state_->throw_if_aborted("rank ", peer_, " (tag ", tag_, ") at ", at_); },
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

    /// Every rank presents `fingerprint` (`MPI_Iallgather` on the private duplicate); all must agree.
    /// \throws config_error naming the first rank that differs from rank 0; aborted_error once the
    /// job is aborted; timeout_error when the others do not arrive within `timeout`; transport_error.
    void agree(std::uint64_t fingerprint, std::chrono::nanoseconds timeout) {
        auto prints = std::make_shared<std::vector<std::uint64_t>>(static_cast<std::size_t>(size()));
        auto mine = std::make_shared<std::uint64_t>(fingerprint);
        MPI_Request request = MPI_REQUEST_NULL;
        detail::mpi_check(MPI_Iallgather(mine.get(), 1, MPI_UINT64_T, prints->data(), 1, MPI_UINT64_T,
                                         state_->control, &request),
                          "MPI_Iallgather");
        // The collective may still write into the buffers after an early exit: keep them alive.
        const auto abandon = [&] {
            state_->orphans.push_back(
                {request, std::make_shared<std::pair<decltype(prints), decltype(mine)>>(prints, mine), true});
        };
        detail::mpi_poll(
            state_->options, timeout,
            [&] {
                int done = 0;
                detail::mpi_check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Iallgather");
                return done != 0;
            },
            [&] {
                if (!state_->aborted()) return;
                abandon();
                state_->throw_if_aborted("the start-up agreement");
            },
            [&] {
                abandon();
                throw timeout_error(rank(), -1, "the start-up agreement", timeout);
            });
        detail::require_same_fingerprints(*prints);
    }

    /// Stops every rank's waits without ending any process: records the abort here and sends a
    /// notice carrying `why` (cut to 4095 bytes) to every other rank, then returns. From then on,
    /// every `wait` of this communicator (and its copies and requests) on every rank, and every
    /// `agree`, throws `aborted_error` whose message names the rank that aborted and contains `why`;
    /// a rank that is computing sees it at its next wait. The executor calls this when a stage or
    /// the transport fails on its rank (`why` = "rank R failed at <action>: <what>"), then throws
    /// `pipeline_error` to its caller. Only the first call sends; errors are ignored (the peers'
    /// timeouts remain). Never blocks.
    void abort(const char* why) noexcept {
        std::string text;
        try {
            text = why ? why : "";
        } catch (...) { // out of memory: an empty notice still stops the waits
        }
        state_->abort(std::move(text));
    }

    /// Ends every process of the job: prints `why` with this rank to standard error and calls
    /// `MPI_Abort` (exit status 1). For a rank that cannot return to its caller; the executor calls
    /// it in place of `abort` with `executor_options::kill_job_on_failure`.
    [[noreturn]] void terminate(const char* why) noexcept {
        std::fprintf(stderr, "paci::mpi_communicator: rank %d terminates the job: %s\n", rank(), why ? why : "");
        std::fflush(stderr);
        MPI_Abort(state_->comm, 1);
        std::abort(); // MPI_Abort does not return; if it ever did, the process must still end
    }

    /// True once the job is aborted (by `abort` on this rank, or a notice from another), looking
    /// for a notice without waiting.
    [[nodiscard]] bool aborted() { return state_->aborted(); }

private:
    std::shared_ptr<state_type> state_;
};

static_assert(communicator_for<mpi_communicator<std::vector<float>>, std::vector<float>>);
static_assert(abortable<mpi_communicator<std::vector<float>>>);
static_assert(!mpi_buffer<std::vector<std::string>>);

} // namespace paci
