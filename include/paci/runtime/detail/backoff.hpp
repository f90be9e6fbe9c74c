#pragma once
/// \file
/// Internals shared by the transports: the polling rhythm of a wait (`backoff`) and a polling loop
/// with a deadline (`poll_until`). The in-process, MPI and NCCL transports all wait this way.

#include <paci/runtime/detail/deadline.hpp>

#include <algorithm>
#include <chrono>
#include <thread>

namespace paci::detail {

/// One wait's polling rhythm: yield between tests for the first `busy` (a neighbour usually
/// answers within microseconds), then sleep, doubling from `min_sleep` up to `max_sleep`, so a long
/// wait does not take a core. No pause extends past the wait's deadline. `max_sleep <= 0` never
/// sleeps (yield only).
class backoff {
public:
    backoff(std::chrono::nanoseconds busy, std::chrono::nanoseconds min_sleep, std::chrono::nanoseconds max_sleep)
        : busy_until_(deadline_after(busy)), min_sleep_(min_sleep), max_sleep_(max_sleep) {}

    /// Pauses before the next test, never past `deadline`.
    void pause(std::chrono::steady_clock::time_point deadline) {
        const auto now = std::chrono::steady_clock::now();
        if (now < busy_until_ || max_sleep_ <= std::chrono::nanoseconds::zero()) {
            std::this_thread::yield();
            return;
        }
        sleep_ = sleep_ == std::chrono::nanoseconds::zero() ? min_sleep_ : std::min(sleep_ * 2, max_sleep_);
        sleep_ = std::clamp(sleep_, std::chrono::nanoseconds(1), max_sleep_);
        auto nap = sleep_;
        if (deadline - now < nap) nap = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
        if (nap > std::chrono::nanoseconds::zero()) std::this_thread::sleep_for(nap);
        else std::this_thread::yield();
    }

private:
    std::chrono::steady_clock::time_point busy_until_;
    std::chrono::nanoseconds min_sleep_;
    std::chrono::nanoseconds max_sleep_;
    std::chrono::nanoseconds sleep_{0};
};

/// Tests `done()` until it returns true, pausing between tests with `pace` (a `backoff`). Before
/// each test calls `check()`, which throws when the wait must end early (an abort); once
/// `timeout` has passed without `done()`, calls `expire()`, which must throw.
template <class Done, class Check, class Expire>
void poll_until(backoff pace, std::chrono::nanoseconds timeout, Done done, Check check, Expire expire) {
    const auto deadline = deadline_after(timeout);
    for (;;) {
        check();
        if (done()) return;
        if (std::chrono::steady_clock::now() >= deadline) expire();
        pace.pause(deadline);
    }
}

} // namespace paci::detail
