#pragma once
/// \file
/// Runtime errors: a wait that ran past its timeout, a transport failure, and a failure on one rank
/// reported with where it happened.

#include <paci/core/action.hpp>
#include <paci/core/error.hpp>

#include <chrono>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

namespace paci {

/// A wait on a peer did not complete within the timeout: names the rank, the peer, the tag and the
/// action waited on.
class timeout_error : public std::runtime_error {
public:
    timeout_error(int rank, int peer, int tag, action waited_on, std::chrono::nanoseconds timeout)
        : std::runtime_error(detail::concat("paci::timeout_error: rank ", rank, " waited ",
                                            std::chrono::duration<double>(timeout).count(), " s for rank ", peer,
                                            " (tag ", tag, ") at ", waited_on)),
          rank_(rank), peer_(peer), tag_(tag), action_(waited_on) {}
    /// A wait that is not for one action (for example, the ranks' start-up agreement): `what_waited`
    /// says what it was; `waited_on()` is a default action and `tag()` is -1.
    timeout_error(int rank, int peer, const std::string& what_waited, std::chrono::nanoseconds timeout)
        : std::runtime_error(detail::concat("paci::timeout_error: rank ", rank, " waited ",
                                            std::chrono::duration<double>(timeout).count(), " s for rank ", peer,
                                            " at ", what_waited)),
          rank_(rank), peer_(peer), tag_(-1), action_() {}
    /// A call into rank `rank`'s stage that did not return: `running` for `elapsed` (at least the
    /// timeout, or as long as another rank waited for it); `peer()` is `rank`, `tag()` is -1 and
    /// `stage_call()` is true.
    timeout_error(int rank, action running, std::chrono::nanoseconds elapsed, std::chrono::nanoseconds timeout,
                  const std::string& noticed_by)
        : std::runtime_error(detail::concat("paci::timeout_error: rank ", rank, "'s stage ", running.stage,
                                            " did not return from ", running, " (running for ",
                                            std::chrono::duration<double>(elapsed).count(), " s, timeout ",
                                            std::chrono::duration<double>(timeout).count(), " s", noticed_by, ")")),
          rank_(rank), peer_(rank), tag_(-1), action_(running), stage_call_(true) {}
    [[nodiscard]] int rank() const noexcept { return rank_; }
    [[nodiscard]] int peer() const noexcept { return peer_; }
    [[nodiscard]] int tag() const noexcept { return tag_; }
    [[nodiscard]] action waited_on() const noexcept { return action_; }
    /// True when a stage call did not return (rather than a wait on a peer).
    [[nodiscard]] bool stage_call() const noexcept { return stage_call_; }

private:
    int rank_, peer_, tag_;
    action action_;
    bool stage_call_ = false;
};

/// A transport reported a failure (MPI or NCCL status inside the message; `code()` holds it).
class transport_error : public std::runtime_error {
public:
    transport_error(std::string message, int code = 0) : std::runtime_error(std::move(message)), code_(code) {}
    [[nodiscard]] int code() const noexcept { return code_; }

private:
    int code_;
};

/// Another rank failed and the world was aborted: this rank stopped waiting.
class aborted_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A failure on one rank, with where it happened and the original exception. `rethrow_original()`
/// throws the stage's (or transport's) own exception unchanged.
class pipeline_error : public std::runtime_error {
public:
    pipeline_error(int rank, action at, std::exception_ptr original, const std::string& what)
        : std::runtime_error(detail::concat("paci::pipeline_error: rank ", rank, ", stage ", at.stage, ", micro-batch ",
                                            at.microbatch, " (", at, "): ", what)),
          rank_(rank), action_(at), original_(std::move(original)) {}
    [[nodiscard]] int rank() const noexcept { return rank_; }
    [[nodiscard]] int stage() const noexcept { return action_.stage; }
    [[nodiscard]] int microbatch() const noexcept { return action_.microbatch; }
    [[nodiscard]] action failed_action() const noexcept { return action_; }
    [[nodiscard]] std::exception_ptr original() const noexcept { return original_; }
    [[noreturn]] void rethrow_original() const { std::rethrow_exception(original_); }

private:
    int rank_;
    action action_;
    std::exception_ptr original_;
};

} // namespace paci
