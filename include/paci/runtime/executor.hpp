#pragma once
/// \file
/// The executor: runs one rank's program of a policy as a stream, calling the user's stages and
/// communicator, and reporting what ran to its observers (the trace is one of them).

#include <paci/policy/schedule_policy.hpp>
#include <paci/runtime/communicator.hpp>
#include <paci/runtime/errors.hpp>
#include <paci/runtime/stage.hpp>
#include <paci/runtime/trace.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace paci {

/// How an executor runs.
struct executor_options {
    /// Longest wait on a peer before `timeout_error` (and, in `inprocess_pipeline`, the longest a
    /// stage call may take).
    std::chrono::nanoseconds timeout = std::chrono::seconds(60);
    /// Keep every executed action in `trace()` (clear it with `clear_trace()`, or turn this off and
    /// use `observer` for a bounded record).
    bool record = true;
    /// Called with each executed action as it completes (on the rank's own thread): a trace sink.
    std::function<void(int rank, const trace_event&)> observer{};
    /// Receives posted ahead of the action that needs them.
    int prefetch = 4;
    /// On a failure, after telling the other ranks, end the whole job through the communicator's
    /// `terminate(why)` (MPI: `MPI_Abort`) instead of throwing to this rank's caller. For launchers
    /// that do not notice a rank that exits with an error.
    bool kill_job_on_failure = false;
    /// Time origin of the trace (share one across ranks to compare their timelines).
    std::chrono::steady_clock::time_point epoch = std::chrono::steady_clock::now();
};

/// Per local stage: weight version (updates applied) and backwards (B or W) run so far.
struct stage_counters {
    version_t version = 0;
    std::int64_t backwards = 0;
    friend bool operator==(const stage_counters&, const stage_counters&) = default;
};

/// What a drained executor needs to continue exactly where it stopped (with the stages' own
/// parameters, which the user saves): the next micro-batch and each local stage's counters.
struct executor_state {
    std::int64_t next_microbatch = 0;
    std::vector<stage_counters> stages;
    friend bool operator==(const executor_state&, const executor_state&) = default;
};

/// What a rank is doing now, for a watchdog on another thread (`inprocess_pipeline` uses it to name
/// a stage call that does not return).
struct executor_activity {
    bool in_stage = false;                       ///< inside a call into the user's stage
    action current{};                            ///< the action being run
    std::chrono::steady_clock::time_point since; ///< when that call started
    int waiting_on = -1;                         ///< the peer rank of the receive last waited on and not received
};

namespace detail {

[[nodiscard]] inline std::uint64_t fnv1a(std::string_view s) noexcept {
    std::uint64_t h = 1469598103934665603ULL;
    for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
    return h;
}

/// Tag of a message into stage `s`: its forward input, or its output gradient.
[[nodiscard]] constexpr int forward_tag(int s) noexcept { return 2 * s; }
[[nodiscard]] constexpr int backward_tag(int s) noexcept { return 2 * s + 1; }

[[nodiscard]] constexpr std::uint64_t pack(const action& a) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a.microbatch)) << 32) |
           (static_cast<std::uint64_t>(static_cast<std::uint16_t>(a.stage)) << 8) | static_cast<std::uint8_t>(a.kind);
}
[[nodiscard]] constexpr action unpack(std::uint64_t v) noexcept {
    return action{static_cast<op>(v & 0xFFU), static_cast<std::int16_t>(static_cast<std::uint16_t>((v >> 8) & 0xFFFFU)),
                  static_cast<std::int32_t>(static_cast<std::uint32_t>(v >> 32))};
}

/// A buffer's way between the stages of one rank and to other ranks: the receives posted ahead (in
/// the order the program needs them), the hand-offs between local neighbour stages, and the sends
/// not yet complete.
template <class Buffer, class Comm>
class transfers {
public:
    using recv_type = decltype(std::declval<Comm&>().irecv(0, 0));
    using send_type = decltype(std::declval<Comm&>().isend(0, 0, std::declval<Buffer>()));

    struct posted {
        int peer;
        int tag;
        action needed_by;
        recv_type request;
    };

    explicit transfers(Comm& comm) : comm_(&comm) {}

    void post_recv(int peer, int tag, const action& needed_by) {
        if constexpr (requires { comm_->irecv(peer, tag, needed_by); })
            recvs_.push_back({peer, tag, needed_by, comm_->irecv(peer, tag, needed_by)});
        else
            recvs_.push_back({peer, tag, needed_by, comm_->irecv(peer, tag)});
    }
    [[nodiscard]] std::size_t posted_recvs() const noexcept { return recvs_.size(); }

    /// The oldest posted receive's buffer (it belongs to `at`, the action that needs it).
    Buffer receive(int rank, const action& at, std::chrono::nanoseconds timeout) {
        posted& p = recvs_.front();
        PACI_ASSERT(p.needed_by == at, "transfers::receive: receives are consumed in the order they were posted");
        Buffer b;
        try {
            b = p.request.wait(timeout);
        } catch (const timeout_error&) {
            throw timeout_error(rank, p.peer, p.tag, at, timeout);
        }
        recvs_.pop_front();
        return b;
    }

    void send(int peer, int tag, Buffer&& b, const action& from) {
        if constexpr (requires { comm_->isend(peer, tag, std::move(b), from); })
            sends_.emplace_back(comm_->isend(peer, tag, std::move(b), from), from);
        else
            sends_.emplace_back(comm_->isend(peer, tag, std::move(b)), from);
    }
    /// Forgets the sends that have completed.
    void progress() {
        while (!sends_.empty() && sends_.front().first.test()) sends_.pop_front();
    }
    /// Waits for every send; `at` names the send being waited on if it times out.
    void complete_sends(std::chrono::nanoseconds timeout, action& at) {
        while (!sends_.empty()) {
            at = sends_.front().second;
            sends_.front().first.wait(timeout);
            sends_.pop_front();
        }
    }

    void hand(bool forward, int to_stage, std::int64_t m, Buffer&& b) { local_.emplace(key(forward, to_stage, m), std::move(b)); }
    Buffer take(bool forward, int stage, std::int64_t m) {
        auto it = local_.find(key(forward, stage, m));
        PACI_ASSERT(it != local_.end(), "transfers::take: a local hand-off precedes its use");
        Buffer b = std::move(it->second);
        local_.erase(it);
        return b;
    }

private:
    static std::uint64_t key(bool forward, int s, std::int64_t m) noexcept {
        return (static_cast<std::uint64_t>(m) << 17) | (forward ? 1U << 16 : 0U) | static_cast<std::uint16_t>(s);
    }
    Comm* comm_;
    std::deque<posted> recvs_;
    std::deque<std::pair<send_type, action>> sends_;
    std::unordered_map<std::uint64_t, Buffer> local_;
};

} // namespace detail

/// Runs rank `comm.rank()`'s share of `Policy`'s program on the user's `Stage`s (one per local stage,
/// in chunk order) over `Comm`, as a stream: memory does not grow with the length of training.
///
/// A training loop advances it update by update and drains only to evaluate, checkpoint or stop:
///
///     for (int step = 0; step < steps; ++step) exec.run(policy.microbatches); // never drains
///     exec.drain();                                                           // before eval / checkpoint
///
/// - `run(n)` injects micro-batches `[next, next + n)` and returns without draining. **The cut:** when
///   `run(n)` returns, this rank has executed every action of its program that precedes the first
///   forward of micro-batch `next + n` (at any of its stages), and nothing after it. Every rank
///   computes its cut alone; no rank waits for another at the cut, so PACI's pipeline stays full
///   across calls, and `k` calls of `run(a)` execute exactly the program of one `run(k * a)`.
///   Policies whose updates drain (flushing ones) take whole updates: `n` must be a multiple of
///   `policy.run_granularity()`; PACI takes any `n >= 1`.
/// - `drain()` finishes every micro-batch in flight and completes every send: then `state()`,
///   `restore()`, evaluation and checkpoints are defined.
/// - Updates are the program's own `STEP` actions (the policy decides them; the analysis replays
///   them against the policy's version controller independently).
/// - The last stage is given `policy.loss_scale()` through `set_loss_scale` when it has one
///   (`loss_scaling_stage`); otherwise the user's last stage applies it to its loss.
/// - Failures: a stage's exception (or a program action the stage cannot run) is reported to the
///   other ranks (`comm.abort`) and thrown here as `pipeline_error` with the rank, stage and
///   micro-batch; a peer that does not answer within the timeout is `timeout_error`; another
///   rank's failure arrives as `aborted_error`. After a failure the executor is spent: every later
///   call throws `aborted_error`.
///
/// Compile-time checks: a policy whose program splits the backward needs a `split_backward_stage`, one
/// that recomputes a `recompute_stage`; stashing controllers (PipeDream, 2BW) need weight versions the
/// executor does not keep, and are rejected.
template <schedule_policy Policy, stage Stage, class Comm>
    requires communicator_for<Comm, typename Stage::buffer_type>
class executor {
    using buffer = typename Stage::buffer_type;
    using controller_type = decltype(std::declval<const Policy&>().controller());
    using program_type = decltype(std::declval<const Policy&>().program(0));
    static_assert(!Policy::splits_backward || split_backward_stage<Stage>,
                  "paci::executor: a policy whose program splits the backward (I and W actions) needs a Stage "
                  "with backward_input(m, g) and backward_weight(m) (split_backward_stage)");
    static_assert(!Policy::recomputes || recompute_stage<Stage>,
                  "paci::executor: a policy whose program recomputes (R actions) needs a Stage with recompute(m) "
                  "(recompute_stage)");
    static_assert(!controller_type::stashes,
                  "paci::executor: stashing controllers (PipeDream, PipeDream-2BW) need a Stage that keeps "
                  "weight versions, which the executor does not provide");

public:
    /// `stages[k]` is the user's object for this rank's k-th stage (`policy.shape().stages_of(rank)`).
    /// \throws config_error for an invalid policy, a communicator of another size, a stage list that
    /// does not match the rank's stages, a null or repeated stage pointer, or a timeout <= 0.
    executor(Policy policy, std::vector<Stage*> stages, Comm& comm, executor_options options = {})
        : policy_(std::move(policy)), stages_(std::move(stages)), comm_(&comm), options_(std::move(options)),
          shape_(policy_.shape()), xfer_(comm) {
        policy_.validate();
        detail::config_require(options_.timeout > std::chrono::nanoseconds::zero(), "executor", "timeout (ns)",
                               options_.timeout.count(), "must be > 0");
        rank_ = comm.rank();
        detail::config_require(comm.size() == shape_.ranks, "executor", "communicator size", comm.size(),
                               detail::concat("must equal the policy's ranks (", shape_.ranks, ")"));
        const auto mine = shape_.stages_of(rank_);
        detail::config_require(stages_.size() == mine.size(), "executor", "stages given", stages_.size(),
                               detail::concat("must equal the stages of rank ", rank_, " (", mine.size(), ")"));
        for (std::size_t k = 0; k < stages_.size(); ++k) {
            if (stages_[k] == nullptr)
                detail::config_fail("executor", detail::concat("stages[", k, "]"), "nullptr",
                                    detail::concat("must point to the object of stage ", mine[k]));
            for (std::size_t j = 0; j < k; ++j)
                if (stages_[j] == stages_[k])
                    detail::config_fail("executor", detail::concat("stages[", k, "]"), "the object of stages[" + std::to_string(j) + "]",
                                        "must be a distinct object per stage");
        }
        local_.assign(static_cast<std::size_t>(shape_.stages), -1);
        for (std::size_t k = 0; k < mine.size(); ++k) local_[static_cast<std::size_t>(mine[k])] = static_cast<int>(k);
        state_.stages.assign(mine.size(), stage_counters{});
        program_.emplace(policy_.program(rank_));
        if constexpr (loss_scaling_stage<Stage>) {
            const int last = shape_.stages - 1;
            if (local_[static_cast<std::size_t>(last)] >= 0)
                stages_[static_cast<std::size_t>(local_[static_cast<std::size_t>(last)])]->set_loss_scale(policy_.loss_scale());
        }
    }

    executor(const executor&) = delete;
    executor& operator=(const executor&) = delete;

    /// Injects micro-batches `[next, next + n)` and returns at this rank's cut (see the class
    /// comment), without draining.
    /// \throws config_error for a bad `n` (or ranks whose configurations differ, found at the first
    /// run), timeout_error, aborted_error, pipeline_error (a stage or transport failed here).
    void run(std::int64_t n) {
        check_usable("run");
        const int g = policy_.run_granularity();
        if (n <= 0 || n % g != 0)
            detail::config_fail("executor::run", "micro-batches", n,
                                g == 1 ? std::string("must be >= 1")
                                       : detail::concat("must be a positive multiple of ", g, ": ", Policy::name,
                                                        " drains after every update of ", g, " micro-batches"));
        if (n > std::numeric_limits<std::int32_t>::max() - state_.next_microbatch)
            detail::config_fail("executor::run", "micro-batches", n,
                                detail::concat("would take micro-batch ids past 2^31 - 1 (next is ", state_.next_microbatch, ")"));
        agree_once();
        drained_ = false;
        pump(state_.next_microbatch + n, false);
        state_.next_microbatch += n;
    }

    /// Finishes every micro-batch in flight and waits for every send to complete.
    /// \throws timeout_error, aborted_error, pipeline_error as `run`.
    void drain() {
        check_usable("drain");
        if (drained_) return;
        pump(state_.next_microbatch, true);
        guarded([&](action& current) { xfer_.complete_sends(options_.timeout, current); });
        drained_ = true;
    }

    /// True when no micro-batch is in flight on this rank (after `drain()`, before the first `run`).
    [[nodiscard]] bool drained() const noexcept { return drained_; }

    /// The counters to continue from. \throws config_error while micro-batches are in flight (call
    /// `drain()` first) or after a failure (the counters no longer describe a consistent point).
    [[nodiscard]] const executor_state& state() const {
        if (failed_)
            detail::config_fail("executor::state", "executor", "failed",
                                "has no consistent state after a failure: restore the last state saved at a drain");
        if (!drained_) detail::config_fail("executor::state", "drained", "false", "must be true: micro-batches are in flight, call drain() first");
        return state_;
    }

    /// Continue from a drained executor's state (same policy and rank). The program is advanced to
    /// `s.next_microbatch`, and the counters must be the ones it reaches there.
    /// \throws config_error on a state of another shape, or counters the policy's program does not
    /// reach at that micro-batch (a state of another policy, or edited).
    void restore(const executor_state& s) {
        check_usable("restore");
        if (!drained_) detail::config_fail("executor::restore", "drained", "false", "must be true: micro-batches are in flight, call drain() first");
        detail::config_require(s.stages.size() == state_.stages.size(), "executor::restore", "restored stages", s.stages.size(),
                               detail::concat("must equal this rank's stages (", state_.stages.size(), ")"));
        detail::config_require(s.next_microbatch >= 0 && s.next_microbatch <= std::numeric_limits<std::int32_t>::max(),
                               "executor::restore", "next_microbatch", s.next_microbatch, "must be in [0, 2^31)");
        // Replay the program to the restored point without running it: O(micro-batches), no memory.
        program_type program = policy_.program(rank_);
        std::vector<stage_counters> reached(state_.stages.size());
        action a;
        const auto count = [&](const action& x) {
            stage_counters& c = reached[static_cast<std::size_t>(local_[static_cast<std::size_t>(x.stage)])];
            if (x.kind == op::STEP) ++c.version;
            else if (x.kind == op::B || x.kind == op::W) ++c.backwards;
        };
        while (program.next(a, s.next_microbatch)) count(a);
        while (program.next_draining(a, s.next_microbatch)) count(a);
        for (std::size_t k = 0; k < reached.size(); ++k)
            if (!(reached[k] == s.stages[k]))
                detail::config_fail("executor::restore", detail::concat("stages[", k, "] (version, backwards)"),
                                    detail::concat("(", s.stages[k].version, ", ", s.stages[k].backwards, ")"),
                                    detail::concat("must be (", reached[k].version, ", ", reached[k].backwards, "), what ",
                                                   Policy::name, "'s program reaches at micro-batch ", s.next_microbatch));
        program_.emplace(std::move(program));
        state_ = s;
        agreed_ = false;
    }

    /// Every action recorded since construction or the last `clear_trace()` (with
    /// `executor_options::record`). Call between runs, not while this rank runs.
    [[nodiscard]] const std::vector<trace_event>& trace() const noexcept { return trace_; }
    void clear_trace() noexcept { trace_.clear(); }
    [[nodiscard]] int rank() const noexcept { return rank_; }
    [[nodiscard]] const Policy& policy() const noexcept { return policy_; }

    /// What this rank is doing now; safe to call from another thread.
    [[nodiscard]] executor_activity activity() const noexcept {
        const auto since = busy_since_.load(std::memory_order_acquire);
        executor_activity out;
        out.in_stage = since != 0;
        out.current = detail::unpack(busy_action_.load(std::memory_order_relaxed));
        out.since = std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(since));
        out.waiting_on = waiting_on_.load(std::memory_order_relaxed);
        return out;
    }

private:
    // ---- the loop -----------------------------------------------------------------------------------

    /// Runs the program up to the cut (or, draining, to its end), keeping a few receives posted ahead.
    void pump(std::int64_t cut, bool draining) {
        guarded([&](action& current) {
            program_type& program = *program_;
            const std::size_t max_ahead = static_cast<std::size_t>(std::max(options_.prefetch, 1)) * 8U + 8U;
            bool more = true;
            for (;;) {
                while (more && (ahead_.empty() || (ahead_.size() < max_ahead &&
                                                   xfer_.posted_recvs() < static_cast<std::size_t>(std::max(options_.prefetch, 1))))) {
                    action a;
                    more = draining ? program.next_draining(a, cut) : program.next(a, cut);
                    if (!more) break;
                    check_action(a);
                    ahead_.push_back(a);
                    if (const int peer = remote_source(a); peer >= 0) xfer_.post_recv(peer, input_tag(a), a);
                }
                if (ahead_.empty()) break;
                current = ahead_.front();
                ahead_.pop_front();
                execute(current);
                xfer_.progress();
            }
        });
    }

    /// Runs `body(current)`, turning every failure into the rank's report: the other ranks are told
    /// and this rank's caller gets `pipeline_error` (a stage or the transport failed here),
    /// `timeout_error` or `aborted_error`.
    template <class Body>
    void guarded(Body&& body) {
        action current{};
        try {
            body(current);
        } catch (const pipeline_error&) {
            failed_ = true;
            throw; // a stage failed: already reported
        } catch (const aborted_error&) {
            failed_ = true;
            throw; // another rank failed first
        } catch (const timeout_error& e) {
            failed_ = true;
            report_failure(current, e.what());
            throw;
        } catch (const std::exception& e) { // the transport, or an action the stage cannot run
            failed_ = true;
            report_failure(current, e.what());
            throw pipeline_error(rank_, current, std::current_exception(), e.what());
        } catch (...) {
            failed_ = true;
            report_failure(current, "unknown exception");
            throw pipeline_error(rank_, current, std::current_exception(), "unknown exception");
        }
    }

    // ---- one member per op --------------------------------------------------------------------------

    /// A program action this rank can run at all: a compute op or STEP of one of its stages.
    void check_action(const action& a) const {
        if (!(a.stage >= 0 && a.stage < shape_.stages && local_[static_cast<std::size_t>(a.stage)] >= 0))
            detail::config_fail("executor", "program action", detail::print(a),
                                detail::concat("is for a stage rank ", rank_, " does not run"));
        if (!(is_compute(a.kind) || a.kind == op::STEP))
            detail::config_fail("executor", "program action", detail::print(a),
                                "is communication: the executor sends and receives itself");
        if (a.kind != op::STEP && !(a.microbatch >= 0))
            detail::config_fail("executor", "program action", detail::print(a), "must have a micro-batch >= 0");
    }

    void execute(const action& a) {
        const int li = local_[static_cast<std::size_t>(a.stage)];
        Stage& st = *stages_[static_cast<std::size_t>(li)];
        stage_counters& ctr = state_.stages[static_cast<std::size_t>(li)];
        switch (a.kind) {
        case op::F: return forward(a, st, ctr);
        case op::B: return backward(a, st, ctr);
        case op::I: return backward_input(a, st, ctr);
        case op::W: return backward_weight(a, st, ctr);
        case op::R: return recompute(a, st, ctr);
        case op::STEP: return step(a, st, ctr);
        default: break;
        }
    }

    void forward(const action& a, Stage& st, stage_counters& ctr) {
        buffer in = a.stage == 0 ? buffer{} : input(a, true);
        const double t0 = now();
        buffer out = call(a, [&] { return st.forward(a.microbatch, std::move(in)); });
        emit(a, ctr.version, t0);
        if (a.stage + 1 < shape_.stages) output(a, true, a.stage + 1, std::move(out));
    }

    void backward(const action& a, Stage& st, stage_counters& ctr) {
        buffer g = a.stage + 1 == shape_.stages ? buffer{} : input(a, false);
        const double t0 = now();
        buffer out = call(a, [&] { return st.backward(a.microbatch, std::move(g)); });
        emit(a, ctr.version, t0);
        ++ctr.backwards;
        if (a.stage > 0) output(a, false, a.stage - 1, std::move(out));
    }

    void backward_input(const action& a, Stage& st, stage_counters& ctr) {
        if constexpr (split_backward_stage<Stage>) {
            buffer g = a.stage + 1 == shape_.stages ? buffer{} : input(a, false);
            const double t0 = now();
            buffer out = call(a, [&] { return st.backward_input(a.microbatch, std::move(g)); });
            emit(a, ctr.version, t0);
            if (a.stage > 0) output(a, false, a.stage - 1, std::move(out));
        } else {
            cannot_run(a, "backward_input(m, g) (split_backward_stage)");
        }
    }

    void backward_weight(const action& a, Stage& st, stage_counters& ctr) {
        if constexpr (split_backward_stage<Stage>) {
            const double t0 = now();
            call(a, [&] { st.backward_weight(a.microbatch); });
            emit(a, ctr.version, t0);
            ++ctr.backwards;
        } else {
            cannot_run(a, "backward_weight(m) (split_backward_stage)");
        }
    }

    void recompute(const action& a, Stage& st, stage_counters& ctr) {
        if constexpr (recompute_stage<Stage>) {
            const double t0 = now();
            call(a, [&] { st.recompute(a.microbatch); });
            emit(a, ctr.version, t0);
        } else {
            cannot_run(a, "recompute(m) (recompute_stage)");
        }
    }

    void step(const action& a, Stage& st, stage_counters& ctr) {
        const double t0 = now();
        call(a, [&] { st.step(); });
        ++ctr.version;
        emit(a, ctr.version, t0); // a STEP records the version it produced
    }

    [[noreturn]] void cannot_run(const action& a, std::string_view needs) const {
        detail::config_fail("executor", "program action", detail::print(a),
                            detail::concat("needs a Stage with ", needs, ", which this Stage does not have (",
                                           Policy::name, " does not declare it)"));
    }

    // ---- transfers ----------------------------------------------------------------------------------

    /// The rank that sends `a`'s input, or -1 when it is local (or there is none).
    [[nodiscard]] int remote_source(const action& a) const {
        int from = -1;
        if (a.kind == op::F && a.stage > 0) from = a.stage - 1;
        else if ((a.kind == op::B || a.kind == op::I) && a.stage + 1 < shape_.stages) from = a.stage + 1;
        if (from < 0 || local_[static_cast<std::size_t>(from)] >= 0) return -1;
        return shape_.rank_of(from);
    }
    [[nodiscard]] static int input_tag(const action& a) noexcept {
        return a.kind == op::F ? detail::forward_tag(a.stage) : detail::backward_tag(a.stage);
    }

    buffer input(const action& a, bool forward) {
        if (const int peer = remote_source(a); peer >= 0) {
            waiting_on_.store(peer, std::memory_order_relaxed);
            buffer b = xfer_.receive(rank_, a, options_.timeout);
            waiting_on_.store(-1, std::memory_order_relaxed);
            return b;
        }
        return xfer_.take(forward, a.stage, a.microbatch);
    }
    void output(const action& from, bool forward, int to, buffer&& b) {
        if (local_[static_cast<std::size_t>(to)] >= 0) return xfer_.hand(forward, to, from.microbatch, std::move(b));
        xfer_.send(shape_.rank_of(to), forward ? detail::forward_tag(to) : detail::backward_tag(to), std::move(b), from);
    }

    // ---- stage calls and observers ------------------------------------------------------------------

    /// Calls into the user's stage: whatever it throws is that stage's failure, reported with where
    /// it happened. The call is visible to `activity()` while it runs.
    template <class F>
    decltype(auto) call(const action& a, F&& f) {
        busy_action_.store(detail::pack(a), std::memory_order_relaxed);
        busy_since_.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_release);
        struct idle_on_exit {
            std::atomic<std::int64_t>* since;
            ~idle_on_exit() { since->store(0, std::memory_order_release); }
        } idle{&busy_since_};
        try {
            return f();
        } catch (...) {
            busy_since_.store(0, std::memory_order_release); // out of the stage before the others hear of it
            fail_in_stage(a, std::current_exception());
        }
    }

    [[noreturn]] void fail_in_stage(const action& at, std::exception_ptr e) {
        std::string what = "unknown exception";
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& x) {
            what = x.what();
        } catch (...) {
        }
        failed_ = true;
        report_failure(at, what);
        throw pipeline_error(rank_, at, std::move(e), what);
    }

    void emit(const action& a, version_t v, double start) {
        if (!options_.record && !options_.observer) return;
        const trace_event e{a, v, start, now()};
        if (options_.observer) options_.observer(rank_, e);
        if (options_.record) trace_.push_back(e);
    }

    [[nodiscard]] double now() const {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - options_.epoch).count();
    }

    // ---- agreement and failure ----------------------------------------------------------------------

    /// Once after construction or `restore`: every rank presents a fingerprint of its configuration.
    void agree_once() {
        if (agreed_) return;
        if constexpr (requires(Comm& c) { c.agree(std::uint64_t{}, options_.timeout); }) {
            try {
                comm_->agree(detail::fnv1a(detail::concat(policy_, "|", shape_.stages, "|", shape_.ranks, "|",
                                                          state_.next_microbatch)),
                             options_.timeout);
            } catch (const aborted_error&) {
                failed_ = true;
                throw;
            } catch (const std::exception& e) { // a timeout, or ranks that disagree (config_error)
                failed_ = true;
                report_failure(action{}, e.what());
                throw;
            }
        }
        agreed_ = true;
    }

    void check_usable(std::string_view api) const {
        if (failed_)
            throw aborted_error(detail::concat("paci::executor::", api, ": rank ", rank_,
                                               " failed earlier; build a new executor (restore a state saved at a drain)"));
    }

    void report_failure(const action& at, const std::string& why) {
        const std::string msg = detail::concat("rank ", rank_, " failed at ", at, ": ", why);
        if constexpr (abortable<Comm>) comm_->abort(msg.c_str());
        if constexpr (requires(Comm& c) { c.terminate(msg.c_str()); })
            if (options_.kill_job_on_failure) comm_->terminate(msg.c_str());
    }

    Policy policy_;
    std::vector<Stage*> stages_;
    Comm* comm_;
    executor_options options_;
    pipeline_shape shape_;
    int rank_ = 0;
    std::vector<int> local_;
    executor_state state_;
    std::optional<program_type> program_; // the rank's program (set in the constructor, replaced by restore)
    std::deque<action> ahead_;
    detail::transfers<buffer, Comm> xfer_;
    std::vector<trace_event> trace_;
    bool drained_ = true;
    bool failed_ = false;
    bool agreed_ = false;
    std::atomic<std::uint64_t> busy_action_{0};
    std::atomic<std::int64_t> busy_since_{0};
    std::atomic<int> waiting_on_{-1};
};

} // namespace paci
