#pragma once
/// \file
/// One rank's program as a stream: actions produced one at a time, paused at a micro-batch cut,
/// and drained on request. The executor runs policies from these streams (memory independent of the
/// length of training); `generate()` materialises the same streams over a finite window.

#include <paci/core/action.hpp>
#include <paci/core/error.hpp>
#include <paci/core/limits.hpp>
#include <paci/core/schedule.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <sstream>
#include <utility>
#include <vector>

namespace paci {

/// One rank's program, produced one action at a time.
///
/// Requirements, on an `S s`, an `action a` and a `std::int64_t m`:
/// - `s.next(a, m)` → `bool`: writes the next action to `a` and returns true; returns false without
///   consuming anything when the next action is a forward of a micro-batch `>= m` (the program is
///   *paused at the cut* `m`: a later call with a larger `m` continues it);
/// - `s.next_draining(a, m)` → `bool`: the same program as if no forward of a micro-batch `>= m`
///   were ever to run: it finishes every micro-batch started (the drain) and then returns false. A
///   drained program continues with `next(a, m2)`, `m2 > m`, as a pipeline refilled from empty.
///
/// Pausing never changes the program: the actions of `next(a, m1)` ... then `next(a, m2)` ... are
/// those of `next(a, m2)` alone. Valid model: `paci::one_f_one_b_stream<paci::accumulation>`. Near
/// miss: a generator with only `next(a)`, which could not stop before a forward without consuming it.
template <class S>
concept program_stream = std::movable<S> && requires(S& s, action& a, std::int64_t m) {
    { s.next(a, m) } -> std::same_as<bool>;
    { s.next_draining(a, m) } -> std::same_as<bool>;
};

/// The program of a policy whose every update is a self-contained, flushed program (GPipe,
/// zero-bubble, interleaved 1F1B): update `g`'s actions for `rank` come from
/// `policy.append_update(rank, g, out)`, one update at a time, so memory holds one update's program.
template <class Policy>
class update_program {
public:
    update_program(Policy policy, int rank) : policy_(std::move(policy)), rank_(rank) {}

    bool next(action& out, std::int64_t cut) {
        if (pos_ == buf_.size()) {
            detail::config_require((static_cast<std::int64_t>(update_) + 1) * policy_.microbatches <=
                                       std::numeric_limits<std::int32_t>::max(),
                                   Policy::name, "micro-batch index",
                                   (static_cast<std::int64_t>(update_) + 1) * policy_.microbatches, "must fit in 32 bits");
            buf_.clear();
            pos_ = 0;
            policy_.append_update(rank_, update_++, buf_);
            if (buf_.empty()) return false;
        }
        const action& a = buf_[pos_];
        if (a.kind == op::F && a.microbatch >= cut) return false;
        out = a;
        ++pos_;
        return true;
    }
    /// Every update drains itself: draining at an update boundary is pausing there; the rest of an
    /// update in progress runs to its end (flushing policies run whole updates).
    bool next_draining(action& out, std::int64_t cut) {
        if (pos_ == 0 || pos_ == buf_.size()) return next(out, cut); // at an update boundary
        out = buf_[pos_++];
        return true;
    }

private:
    Policy policy_;
    int rank_;
    int update_ = 0;
    std::vector<action> buf_;
    std::size_t pos_ = 0;
};

namespace detail {

/// Every rank's program of `policy` over `total` micro-batches: run to the cut, then drain. This is
/// what an executor records for `run(total)` followed by `drain()`.
template <class Policy>
[[nodiscard]] schedule materialize(const Policy& policy, std::int64_t total, std::uint64_t actions_per_rank) {
    const pipeline_shape shape = policy.shape();
    // The size is known before anything is allocated: refuse one past paci::limits.
    detail::check_schedule_size(Policy::name, detail::mul_sat(static_cast<std::uint64_t>(shape.ranks), actions_per_rank));
    schedule out;
    out.shape = shape;
    out.microbatches = static_cast<int>(total);
    out.steps = policy.steps;
    std::ostringstream name;
    name << policy;
    out.policy = std::move(name).str();
    out.ranks.resize(static_cast<std::size_t>(shape.ranks));
    for (int r = 0; r < shape.ranks; ++r) {
        auto& prog = out.ranks[static_cast<std::size_t>(r)];
        prog.reserve(static_cast<std::size_t>(actions_per_rank));
        auto program = policy.unchecked_program(r);
        action a;
        while (program.next(a, total)) prog.push_back(a);
        while (program.next_draining(a, total)) prog.push_back(a);
    }
    return out;
}

} // namespace detail
} // namespace paci
