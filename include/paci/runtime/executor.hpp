#pragma once
/// \file
/// The executor: runs one rank's program of a policy as a stream, calling the user's stages and
/// communicator, and reporting what ran to its observers (the trace is one of them).

#include <paci/core/dataflow.hpp>
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
/// Tag of the message that carries `h`: the consumer stage's forward input or output gradient.
[[nodiscard]] constexpr int tag_of(const handoff& h) noexcept {
    return h.what == flow::activation ? forward_tag(h.to) : backward_tag(h.to);
}

/// One side of an action's data flow on a rank, from the IR's rule: the hand-off that `consumes`
/// (or `produces`) names for an (op, stage), whether it `crosses` to another rank, and if so the
/// peer rank and the message tag. The rule keeps the micro-batch, so one route serves them all.
struct route {
    bool present = false; ///< the op takes (gives) a hand-off at this stage
    bool remote = false;  ///< it crosses ranks: a message to or from `peer`
    int peer = -1;
    int tag = 0;
    handoff h{};          ///< its micro-batch is filled in per action
};

/// The route of `h` (a hand-off of `shape`) seen from the rank at its `self` end (`h.from` or `h.to`).
[[nodiscard]] constexpr route route_of(const std::optional<handoff>& h, const pipeline_shape& shape, int self) noexcept {
    route r;
    if (!h) return r;
    r.present = true;
    r.remote = h->crosses(shape);
    r.peer = r.remote ? shape.rank_of(self == h->to ? h->from : h->to) : -1;
    r.tag = tag_of(*h);
    r.h = *h;
    return r;
}

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

    /// Keeps `h`'s buffer for its consumer on this rank. \throws config_error (naming `from`) when
    /// `h` was handed over already and not yet taken (the program produced it twice).
    void hand(const handoff& h, Buffer&& b, const action& from) {
        if (!local_.emplace(key(h), std::move(b)).second) [[unlikely]]
            produced_twice(h, from);
    }
    /// The buffer of `h`, handed over on this rank. \throws config_error (naming `at`) when it has not
    /// been produced: the rank's program runs the consumer before the producer.
    Buffer take(const handoff& h, const action& at) {
        auto it = local_.find(key(h));
        if (it == local_.end()) [[unlikely]]
            not_produced(h, at);
        Buffer b = std::move(it->second);
        local_.erase(it);
        return b;
    }

private:
    static std::uint64_t key(const handoff& h) noexcept {
        return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(h.microbatch)) << 17) |
               (h.what == flow::activation ? 1U << 16 : 0U) | static_cast<std::uint16_t>(h.to);
    }
    static std::string describe(const handoff& h) {
        return concat("stage ", h.from, "'s ", h.what == flow::activation ? "activation" : "gradient",
                      " of micro-batch ", h.microbatch);
    }
    [[noreturn]] static void produced_twice(const handoff& h, const action& from) {
        config_fail("executor", "program action", print(from),
                    concat("produces ", describe(h), " a second time before stage ", h.to, " used it"));
    }
    [[noreturn]] static void not_produced(const handoff& h, const action& at) {
        config_fail("executor", "program action", print(at),
                    concat("needs ", describe(h), ", which this rank has not produced: its program runs the "
                           "consumer before the producer"));
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
/// - Data moves by the IR's rule (`core/dataflow.hpp`): `F(s, m)` takes stage `s - 1`'s activation of
///   `m`, `B(s, m)` and `I(s, m)` take stage `s + 1`'s gradient of `m`. A hand-off between stages of
///   this rank (interleaved's single rank, or stages `R - 1` and `R` of the V placement, in both
///   directions) stays on the rank, moved from producer to consumer without the communicator; the
///   others go through `Comm`, one tag per (consumer stage, direction), so each stage must consume
///   a neighbour's hand-offs in the order the neighbour produced them (every built-in policy runs a
///   stage's forwards, and its backwards, in micro-batch order).
/// - Overlapped pairs (`action::overlap_next`: an `F` and the next action, a `B` or `I` of another
///   micro-batch on this rank): both members' inputs are received before the pair starts, and both
///   outputs are sent (or handed over) after it ends, the forward's first. A `Stage` with
///   `forward_backward` (`overlapping_stage`) runs an `F` + `B` pair in that one call; otherwise, and
///   for `F` + `I`, the executor calls the forward, then the backward: always a correct execution of
///   the pair. The trace records both members, in that order, the forward with its flag. A pair of
///   another form (`detail::overlap_fault`: the flag on anything but a forward; a forward followed
///   by no action before the cut, by one that is not a `B` or `I`, or by a backward that needs its
///   output) is refused when the executor reads it from the program, before running it, as a
///   `pipeline_error` naming the member at fault.
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
        pair_.reserve(2);
        // The IR's rule, per (local stage, op), once: what each action takes and gives, and from where.
        inputs_.resize(mine.size() * static_cast<std::size_t>(op_count));
        outputs_.resize(inputs_.size());
        for (std::size_t k = 0; k < mine.size(); ++k)
            for (int o = 0; o < op_count; ++o) {
                const action a{static_cast<op>(o), mine[k], 0};
                inputs_[k * op_count + static_cast<std::size_t>(o)] = detail::route_of(consumes(a, shape_.stages), shape_, mine[k]);
                outputs_[k * op_count + static_cast<std::size_t>(o)] = detail::route_of(produces(a, shape_.stages), shape_, mine[k]);
            }
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
            const auto pull = [&](action& a) { return draining ? program.next_draining(a, cut) : program.next(a, cut); };
            bool more = true;
            for (;;) {
                while (more && (ahead_.empty() || (ahead_.size() < max_ahead &&
                                                   xfer_.posted_recvs() < static_cast<std::size_t>(std::max(options_.prefetch, 1))))) {
                    action a;
                    more = pull(a);
                    if (!more) break;
                    if (!runnable(a)) [[unlikely]] {
                        current = a; // a refused action is reported as the failed one
                        refuse_action(a);
                    }
                    accept(a);
                    if (a.overlap_next) { // the pair's second member comes with it
                        action second;
                        const bool has_second = pull(second);
                        check_pair(a, has_second ? &second : nullptr, current);
                        accept(second);
                    }
                }
                if (ahead_.empty()) break;
                current = ahead_.front();
                ahead_.pop_front();
                if (current.overlap_next) {
                    const action second = ahead_.front();
                    ahead_.pop_front();
                    execute_pair(current, second, current);
                } else {
                    execute(current);
                }
                xfer_.progress();
            }
        });
    }

    /// Queues a checked action and posts the receive of its input, if another rank sends it.
    void accept(const action& a) {
        ahead_.push_back(a);
        if (const detail::route& r = input_route(a); r.remote) xfer_.post_recv(r.peer, r.tag, a);
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

    /// A program action this rank can run at all: a compute op or STEP of one of its stages; only a
    /// forward may open an overlapped pair.
    [[nodiscard]] bool runnable(const action& a) const noexcept {
        return a.stage >= 0 && a.stage < shape_.stages && local_[static_cast<std::size_t>(a.stage)] >= 0 &&
               (is_compute(a.kind) || a.kind == op::STEP) && (a.kind == op::STEP || a.microbatch >= 0) &&
               (!a.overlap_next || a.kind == op::F);
    }
    /// Throws the reason `runnable` refuses `a`.
    [[noreturn]] void refuse_action(const action& a) const {
        if (!(a.stage >= 0 && a.stage < shape_.stages && local_[static_cast<std::size_t>(a.stage)] >= 0))
            detail::config_fail("executor", "program action", detail::print(a),
                                detail::concat("is for a stage rank ", rank_, " does not run"));
        if (!(is_compute(a.kind) || a.kind == op::STEP))
            detail::config_fail("executor", "program action", detail::print(a),
                                "is communication: the executor sends and receives itself");
        if (a.kind != op::STEP && !(a.microbatch >= 0))
            detail::config_fail("executor", "program action", detail::print(a), "must have a micro-batch >= 0");
        const std::vector<action> one{a};
        detail::config_fail("executor", "program action", detail::print(a),
                            detail::concat("is refused: ", detail::pair_fault_message(detail::overlap_fault(one, 0), one)));
    }

    /// Checks the pair that the runnable forward `f` opens with `second`, the program's next action
    /// (null when it gave none before the cut), by the IR's rule for pairs (`detail::overlap_fault`:
    /// a backward B or I that does not need `f`'s output, so of another micro-batch) and as an action
    /// of this rank. \throws config_error; `current` is then the member to blame.
    void check_pair(const action& f, const action* second, action& current) {
        pair_.clear(); // reserved for two: no allocation
        pair_.push_back(f);
        if (second != nullptr) pair_.push_back(*second);
        const detail::pair_fault fault = detail::overlap_fault(pair_, 0);
        if (fault.fault != detail::pair_problem::none) [[unlikely]] {
            current = pair_[fault.position];
            detail::config_fail("executor", "overlapped pair", second != nullptr ? to_string(f, *second) : detail::print(f),
                                detail::concat("is refused: ", detail::pair_fault_message(fault, pair_)));
        }
        if (!runnable(*second)) [[unlikely]] {
            current = *second;
            refuse_action(*second);
        }
    }

    [[nodiscard]] Stage& stage_of(const action& a) const noexcept {
        return *stages_[static_cast<std::size_t>(local_[static_cast<std::size_t>(a.stage)])];
    }
    [[nodiscard]] stage_counters& counters_of(const action& a) noexcept {
        return state_.stages[static_cast<std::size_t>(local_[static_cast<std::size_t>(a.stage)])];
    }

    void execute(const action& a) {
        Stage& st = stage_of(a);
        stage_counters& ctr = counters_of(a);
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

    /// Runs the overlapped pair `f` + `b` (checked by `check_pair`): both inputs in, the pair, both
    /// outputs out. `current` names the member being waited on or run.
    void execute_pair(const action f, const action b, action& current) { // copies: `current` changes
        Stage& sf = stage_of(f);
        Stage& sb = stage_of(b);
        stage_counters& cf = counters_of(f);
        stage_counters& cb = counters_of(b);
        buffer x = receive(f);
        current = b;
        buffer g = receive(b);
        current = f;
        buffer y, dx;
        bool fused = false;
        if constexpr (overlapping_stage<Stage>) {
            if (b.kind == op::B) {
                auto out = call(f, [&] { return sf.forward_backward(f.microbatch, std::move(x), sb, b.microbatch, std::move(g)); });
                emit(f, cf.version);
                emit(b, cb.version); // one call ran both: their spans start together
                ++cb.backwards;
                y = std::move(out.first);
                dx = std::move(out.second);
                fused = true;
            }
        }
        if (!fused) {
            y = run_forward(f, sf, cf, x);
            current = b;
            dx = b.kind == op::B ? run_backward(b, sb, cb, g) : run_backward_input(b, sb, cb, g);
            current = f;
        }
        deliver(f, std::move(y));
        current = b;
        deliver(b, std::move(dx));
    }

    void forward(const action& a, Stage& st, stage_counters& ctr) {
        buffer in = receive(a);
        buffer out = run_forward(a, st, ctr, in);
        deliver(a, std::move(out));
    }
    void backward(const action& a, Stage& st, stage_counters& ctr) {
        buffer g = receive(a);
        buffer out = run_backward(a, st, ctr, g);
        deliver(a, std::move(out));
    }
    void backward_input(const action& a, Stage& st, stage_counters& ctr) {
        buffer g = receive(a);
        buffer out = run_backward_input(a, st, ctr, g);
        deliver(a, std::move(out));
    }

    /// The stage's forward of `a` on `in` (moved from); returns its output.
    buffer run_forward(const action& a, Stage& st, stage_counters& ctr, buffer& in) {
        buffer out = call(a, [&] { return st.forward(a.microbatch, std::move(in)); });
        emit(a, ctr.version);
        return out;
    }

    /// The stage's full backward of `a` from `g` (moved from); returns the input gradient.
    buffer run_backward(const action& a, Stage& st, stage_counters& ctr, buffer& g) {
        buffer out = call(a, [&] { return st.backward(a.microbatch, std::move(g)); });
        emit(a, ctr.version);
        ++ctr.backwards;
        return out;
    }

    /// The stage's input-gradient backward of `a` from `g` (moved from); returns the input gradient.
    buffer run_backward_input(const action& a, Stage& st, stage_counters& ctr, buffer& g) {
        if constexpr (split_backward_stage<Stage>) {
            buffer out = call(a, [&] { return st.backward_input(a.microbatch, std::move(g)); });
            emit(a, ctr.version);
            return out;
        } else {
            cannot_run(a, "backward_input(m, g) (split_backward_stage)");
        }
    }
    void backward_weight(const action& a, Stage& st, stage_counters& ctr) {
        if constexpr (split_backward_stage<Stage>) {
            call(a, [&] { st.backward_weight(a.microbatch); });
            emit(a, ctr.version);
            ++ctr.backwards;
        } else {
            cannot_run(a, "backward_weight(m) (split_backward_stage)");
        }
    }

    void recompute(const action& a, Stage& st, stage_counters& ctr) {
        if constexpr (recompute_stage<Stage>) {
            call(a, [&] { st.recompute(a.microbatch); });
            emit(a, ctr.version);
        } else {
            cannot_run(a, "recompute(m) (recompute_stage)");
        }
    }

    void step(const action& a, Stage& st, stage_counters& ctr) {
        call(a, [&] { st.step(); });
        ++ctr.version;
        emit(a, ctr.version); // a STEP records the version it produced
    }

    [[noreturn]] void cannot_run(const action& a, std::string_view needs) const {
        detail::config_fail("executor", "program action", detail::print(a),
                            detail::concat("needs a Stage with ", needs, ", which this Stage does not have (",
                                           Policy::name, " does not declare it)"));
    }

    // ---- transfers ----------------------------------------------------------------------------------

    /// Where `a`'s input comes from (`consumes`) and its output goes (`produces`); `a` is checked.
    [[nodiscard]] const detail::route& input_route(const action& a) const noexcept { return inputs_[route_index(a)]; }
    [[nodiscard]] const detail::route& output_route(const action& a) const noexcept { return outputs_[route_index(a)]; }
    [[nodiscard]] std::size_t route_index(const action& a) const noexcept {
        return static_cast<std::size_t>(local_[static_cast<std::size_t>(a.stage)]) * op_count + static_cast<std::size_t>(a.kind);
    }
    /// `r`'s hand-off for `a`'s micro-batch.
    [[nodiscard]] static handoff of(const detail::route& r, const action& a) noexcept {
        handoff h = r.h;
        h.microbatch = a.microbatch;
        return h;
    }

    /// `a`'s input (what `consumes(a)` names): received from its rank, or taken from the local
    /// hand-off; empty at the ends of the pipeline (the first stage's forward, the last stage's
    /// backward) and for ops that take none.
    buffer receive(const action& a) {
        const detail::route& r = input_route(a);
        if (!r.present) return buffer{};
        if (!r.remote) return xfer_.take(of(r, a), a);
        waiting_on_.store(r.peer, std::memory_order_relaxed);
        buffer b = xfer_.receive(rank_, a, options_.timeout);
        waiting_on_.store(-1, std::memory_order_relaxed);
        return b;
    }
    /// Sends `a`'s output (what `produces(a)` names) to its consumer's rank, or hands it over on this
    /// rank; drops it at the ends of the pipeline.
    void deliver(const action& a, buffer&& b) {
        const detail::route& r = output_route(a);
        if (!r.present) return;
        if (!r.remote) return xfer_.hand(of(r, a), std::move(b), a);
        xfer_.send(r.peer, r.tag, std::move(b), a);
    }

    // ---- stage calls and observers ------------------------------------------------------------------

    /// Calls into the user's stage: whatever it throws is that stage's failure, reported with where
    /// it happened. The call is visible to `activity()` while it runs.
    template <class F>
    decltype(auto) call(const action& a, F&& f) {
        busy_action_.store(detail::pack(a), std::memory_order_relaxed);
        call_start_ = std::chrono::steady_clock::now(); // also the start of the action's trace event
        busy_since_.store(call_start_.time_since_epoch().count(), std::memory_order_release);
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

    /// Reports `a`, which the last `call` ran, to the trace and the observer (`v`: its weight version).
    void emit(const action& a, version_t v) {
        if (!options_.record && !options_.observer) return;
        const trace_event e{a, v, std::chrono::duration<double>(call_start_ - options_.epoch).count(), now()};
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
    std::vector<int> local_;   // per stage: its index among this rank's stages, -1 if another rank's
    std::vector<detail::route> inputs_, outputs_; // per (local stage, op): route_index
    executor_state state_;
    std::optional<program_type> program_; // the rank's program (set in the constructor, replaced by restore)
    std::deque<action> ahead_;
    std::vector<action> pair_; // the overlapped pair being checked
    detail::transfers<buffer, Comm> xfer_;
    std::vector<trace_event> trace_;
    bool drained_ = true;
    bool failed_ = false;
    bool agreed_ = false;
    std::atomic<std::uint64_t> busy_action_{0};
    std::atomic<std::int64_t> busy_since_{0};
    std::chrono::steady_clock::time_point call_start_{}; // when the last call into a stage started
    std::atomic<int> waiting_on_{-1};
};

} // namespace paci
