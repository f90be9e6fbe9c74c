#pragma once
/// \file
/// The `communicator` concept: how ranks exchange buffers.

#include <chrono>
#include <concepts>
#include <utility>

namespace paci {

/// A pending send. `test()` → `bool`: the buffer has left (the request is complete);
/// `wait(timeout)` blocks until then or throws `paci::timeout_error`.
template <class R>
concept send_request = std::movable<R> && requires(R& r, std::chrono::nanoseconds t) {
    { r.test() } -> std::same_as<bool>;
    { r.wait(t) } -> std::same_as<void>;
};

/// A pending receive of a `Buffer`. `test()` → `bool`: the data has arrived; `wait(timeout)` →
/// `Buffer`: the received buffer, or throws `paci::timeout_error` (or `aborted_error` when another
/// rank failed).
template <class R, class Buffer>
concept recv_request_for = std::movable<R> && requires(R& r, std::chrono::nanoseconds t) {
    { r.test() } -> std::same_as<bool>;
    { r.wait(t) } -> std::same_as<Buffer>;
};

/// Moves `Buffer`s between ranks: `rank()`, `size()`, `isend(peer, tag, buffer)` → a `send_request`,
/// `irecv(peer, tag)` → a `recv_request_for<Buffer>`. Messages between two ranks with the same tag
/// arrive in the order they were sent (MPI's non-overtaking rule). A communicator may also offer
/// `abort(message)`, which the executor calls when its rank fails so that the others stop waiting.
///
/// Valid model: `paci::inprocess_communicator<std::vector<float>>`. Near miss: a communicator whose
/// `isend` returns nothing (the executor could never tell when the buffer may be released).
template <class C, class Buffer>
concept communicator_for = requires(C& c, const C& cc, int peer, int tag, Buffer b) {
    { cc.rank() } -> std::same_as<int>;
    { cc.size() } -> std::same_as<int>;
    { c.isend(peer, tag, std::move(b)) } -> send_request;
    { c.irecv(peer, tag) } -> recv_request_for<Buffer>;
};

/// A communicator that can stop every rank's waits when one fails.
template <class C>
concept abortable = requires(C& c, const char* why) { c.abort(why); };

} // namespace paci
