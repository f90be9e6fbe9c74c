#pragma once
/// \file
/// The executor: runs one rank's program of a policy, calling the user's stages and communicator,
/// stepping the optimizer when the version controller says so, and recording what ran.

#include <paci/policy/schedule_policy.hpp>
#include <paci/policy/zero_bubble.hpp>
#include <paci/runtime/communicator.hpp>
#include <paci/runtime/errors.hpp>
#include <paci/runtime/stage.hpp>
#include <paci/runtime/trace.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace paci {

/// How an executor runs.
struct executor_options {
    /// Longest wait on a peer before `timeout_error`.
    std::chrono::nanoseconds timeout = std::chrono::seconds(60);
    /// Record a trace event per action.
    bool record = true;
    /// Receives posted ahead of the action that needs them.
    int prefetch = 4;
    /// Time origin of the trace (share one across ranks to compare their timelines).
    std::chrono::steady_clock::time_point epoch = std::chrono::steady_clock::now();
};

/// Per local stage: weight version and backwards counted toward the next update.
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

namespace detail {

template <class P>
inline constexpr bool splits_backward = false;
template <zb_variant V>
inline constexpr bool splits_backward<zero_bubble<V>> = true;

template <class P>
[[nodiscard]] constexpr bool recomputes() {
    if constexpr (requires { P::flavour; }) return P::flavour == backward_flavour::recompute;
    else return false;
}

[[nodiscard]] inline std::uint64_t fnv1a(std::string_view s) noexcept {
    std::uint64_t h = 1469598103934665603ULL;
    for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
    return h;
}

/// Tag of a message into stage `s`: its forward input, or its output gradient.
[[nodiscard]] constexpr int forward_tag(int s) noexcept { return 2 * s; }
[[nodiscard]] constexpr int backward_tag(int s) noexcept { return 2 * s + 1; }

} // namespace detail

/// Runs rank `comm.rank()`'s share of `Policy`'s schedule on the user's `Stage`s (one per local
/// stage, in chunk order) over `Comm`. `run(n)` executes micro-batches `[next, next + n)` (a whole
/// number of updates) and drains: every micro-batch in flight finishes, so evaluation or a
/// checkpoint can follow; `state()` and `restore()` carry the version counters and accumulation
/// state across. Receives are posted ahead and waited on just before use; each update happens when
/// the policy's version controller says so (after a stage's backward, or weight backward).
///
/// Compile-time checks: a zero-bubble policy needs a `split_backward_stage`, a recompute flavour a
/// `recompute_stage`; stashing controllers (PipeDream, 2BW) need weight versions the executor does
/// not keep, and are rejected.
template <schedule_policy Policy, stage Stage, class Comm>
    requires communicator_for<Comm, typename Stage::buffer_type>
class executor {
    using buffer = typename Stage::buffer_type;
    using controller_type = decltype(std::declval<const Policy&>().controller());
    static_assert(!detail::splits_backward<Policy> || split_backward_stage<Stage>,
                  "paci::executor: a zero-bubble policy needs a Stage with backward_input(m, g) and "
                  "backward_weight(m) (split_backward_stage)");
    static_assert(!detail::recomputes<Policy>() || recompute_stage<Stage>,
                  "paci::executor: the recompute flavour needs a Stage with recompute(m) (recompute_stage)");
    static_assert(!controller_type::stashes,
                  "paci::executor: stashing controllers (PipeDream, PipeDream-2BW) need a Stage that keeps "
                  "weight versions, which the executor does not provide");

public:
    /// `stages[k]` is the user's object for this rank's k-th stage (`policy.shape().stages_of(rank)`).
    executor(Policy policy, std::vector<Stage*> stages, Comm& comm, executor_options options = {})
        : policy_(std::move(policy)), stages_(std::move(stages)), comm_(&comm), options_(options),
          shape_(policy_.shape()), controller_(policy_.controller()) {
        policy_.validate();
        detail::config_require(options_.timeout > std::chrono::nanoseconds::zero(), "executor", "timeout (ns)",
                               options_.timeout.count(), "must be > 0");
        rank_ = comm.rank();
        detail::config_require(comm.size() == shape_.ranks, "executor", "communicator size", comm.size(),
                               detail::concat("must equal the policy's ranks (", shape_.ranks, ")"));
        const auto mine = shape_.stages_of(rank_);
        detail::config_require(stages_.size() == mine.size(), "executor", "stages given", stages_.size(),
                               detail::concat("must equal the stages of rank ", rank_, " (", mine.size(), ")"));
        local_.assign(static_cast<std::size_t>(shape_.stages), -1);
        for (std::size_t k = 0; k < mine.size(); ++k) local_[static_cast<std::size_t>(mine[k])] = static_cast<int>(k);
        state_.stages.assign(mine.size(), stage_counters{});
    }

    /// Runs micro-batches `[next, next + n)` and drains. `n` must be a positive multiple of the
    /// policy's micro-batches per update.
    /// \throws config_error for a bad `n` or disagreeing ranks, timeout_error, aborted_error,
    /// pipeline_error (a stage or transport failed here; the original inside).
    void run(std::int64_t n) {
        const int M = policy_.microbatches;
        if (n <= 0 || n % M != 0)
            detail::config_fail("executor", "micro-batches to run", n,
                                detail::concat("must be a positive multiple of micro-batches per update (", M, ")"));
        Policy window = policy_;
        window.steps = static_cast<int>(n / M);
        const schedule sched = window.generate();
        if constexpr (requires(Comm& c) { c.agree(std::uint64_t{}, options_.timeout); }) {
            try {
                comm_->agree(detail::fnv1a(detail::concat(policy_, "|", shape_.stages, "|", shape_.ranks, "|", n,
                                                          "|", state_.next_microbatch)),
                             options_.timeout);
            } catch (const timeout_error&) {
                abort_world(action{}, "the start-up agreement timed out");
                throw;
            }
        }
        execute(sched.ranks[static_cast<std::size_t>(rank_)]);
        state_.next_microbatch += n;
    }

    [[nodiscard]] const executor_state& state() const noexcept { return state_; }
    /// Continue from a drained executor's state (same policy and rank).
    void restore(const executor_state& s) {
        detail::config_require(s.stages.size() == state_.stages.size(), "executor", "restored stages", s.stages.size(),
                               detail::concat("must equal this rank's stages (", state_.stages.size(), ")"));
        state_ = s;
    }
    /// Every action recorded since construction or the last `clear_trace()` (long training runs
    /// should check and clear it between runs, or turn `executor_options::record` off).
    [[nodiscard]] const std::vector<trace_event>& trace() const noexcept { return trace_; }
    void clear_trace() noexcept { trace_.clear(); }
    [[nodiscard]] int rank() const noexcept { return rank_; }

private:
    struct pending_recv {
        int peer;
        int tag;
        action needed_by;
        decltype(std::declval<Comm&>().irecv(0, 0)) request;
    };

    double now() const {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - options_.epoch).count();
    }

    void record(action a, version_t v, double start) {
        if (options_.record) trace_.push_back({a, v, start, now()});
    }

    /// The message a compute action waits for from another rank, if any.
    bool needs_recv(const action& a, int& peer, int& tag) const {
        if (a.kind == op::F && a.stage > 0 && local_[static_cast<std::size_t>(a.stage - 1)] < 0) {
            peer = shape_.rank_of(a.stage - 1);
            tag = detail::forward_tag(a.stage);
            return true;
        }
        if ((a.kind == op::B || a.kind == op::I) && a.stage + 1 < shape_.stages &&
            local_[static_cast<std::size_t>(a.stage + 1)] < 0) {
            peer = shape_.rank_of(a.stage + 1);
            tag = detail::backward_tag(a.stage);
            return true;
        }
        return false;
    }

    void execute(const std::vector<action>& prog) {
        const std::int64_t offset = state_.next_microbatch;
        // The receives this program needs, in the order it needs them; a few are kept posted ahead.
        std::vector<std::size_t> recv_at;
        for (std::size_t k = 0; k < prog.size(); ++k) {
            int peer = 0, tag = 0;
            if (needs_recv(prog[k], peer, tag)) recv_at.push_back(k);
        }
        std::size_t next_post = 0;
        std::deque<pending_recv> posted;
        const auto post_ahead = [&] {
            while (next_post < recv_at.size() && posted.size() < static_cast<std::size_t>(std::max(options_.prefetch, 1))) {
                const action a = prog[recv_at[next_post++]];
                int peer = 0, tag = 0;
                static_cast<void>(needs_recv(a, peer, tag));
                posted.push_back({peer, tag, a, post_recv(peer, tag, action{a.kind, a.stage, static_cast<int>(a.microbatch + offset)})});
            }
        };
        using send_req = decltype(comm_->isend(0, 0, buffer{}));
        std::deque<std::pair<send_req, action>> sends;
        std::unordered_map<std::uint64_t, buffer> handoff; // (stage, micro-batch) -> buffer between local stages
        const auto key = [](bool forward, int s, std::int64_t m) {
            return (static_cast<std::uint64_t>(m) << 17) | (forward ? 1U << 16 : 0U) | static_cast<std::uint16_t>(s);
        };

        action current{};
        try {
            post_ahead();
            for (const action a : prog) {
                if (a.kind == op::STEP || is_comm(a.kind)) continue; // updates come from the controller
                const int m = static_cast<int>(a.microbatch + offset);
                current = action{a.kind, a.stage, m};
                const auto li = local_[static_cast<std::size_t>(a.stage)];
                Stage& st = *stages_[static_cast<std::size_t>(li)];
                stage_counters& ctr = state_.stages[static_cast<std::size_t>(li)];

                const auto receive = [&]() -> buffer {
                    pending_recv& p = posted.front();
                    buffer b;
                    try {
                        b = p.request.wait(options_.timeout);
                    } catch (const timeout_error&) {
                        throw timeout_error(rank_, p.peer, p.tag, current, options_.timeout);
                    }
                    posted.pop_front();
                    post_ahead();
                    return b;
                };
                // Inputs come from a local neighbour stage (handed over in memory) or another rank.
                const auto take = [&](bool forward, int s) -> buffer {
                    if (local_[static_cast<std::size_t>(forward ? s - 1 : s + 1)] < 0) return receive();
                    auto it = handoff.find(key(forward, s, m));
                    buffer b = std::move(it->second);
                    handoff.erase(it);
                    return b;
                };
                const auto give = [&](bool forward, int to, buffer&& b) {
                    if (local_[static_cast<std::size_t>(to)] >= 0) {
                        handoff.emplace(key(forward, to, m), std::move(b));
                        return;
                    }
                    const int tag = forward ? detail::forward_tag(to) : detail::backward_tag(to);
                    sends.emplace_back(post_send(shape_.rank_of(to), tag, std::move(b), current), current);
                };
                const bool first = a.stage == 0;
                const bool last = a.stage == shape_.stages - 1;

                // Everything a stage throws, whatever its type, is that stage's failure: it is
                // reported with where it happened (a transport's own errors pass through as they are).
                const auto call = [&](auto&& f) -> decltype(auto) {
                    try {
                        return f();
                    } catch (...) {
                        fail_in_stage(current, std::current_exception());
                    }
                };
                const auto count_backward = [&] {
                    if (controller_.update_due(++ctr.backwards)) {
                        const double t = now();
                        call([&] { st.step(); }); // a failing update is reported at the backward that triggered it
                        record(action{op::STEP, a.stage, ctr.version}, ctr.version + 1, t);
                        ++ctr.version;
                    }
                };
                const version_t v = ctr.version;
                switch (a.kind) {
                case op::F: {
                    buffer in = first ? buffer{} : take(true, a.stage);
                    const double t0 = now(); // after the input arrived: the span is the compute alone
                    buffer out = call([&] { return st.forward(m, std::move(in)); });
                    record(current, v, t0);
                    if (!last) give(true, a.stage + 1, std::move(out));
                    break;
                }
                case op::B: {
                    buffer g = last ? buffer{} : take(false, a.stage);
                    const double t0 = now();
                    buffer out = call([&] { return st.backward(m, std::move(g)); });
                    record(current, v, t0);
                    if (!first) give(false, a.stage - 1, std::move(out));
                    count_backward();
                    break;
                }
                case op::I: {
                    if constexpr (split_backward_stage<Stage>) {
                        buffer g = last ? buffer{} : take(false, a.stage);
                        const double t0 = now();
                        buffer out = call([&] { return st.backward_input(m, std::move(g)); });
                        record(current, v, t0);
                        if (!first) give(false, a.stage - 1, std::move(out));
                    }
                    break;
                }
                case op::W: {
                    if constexpr (split_backward_stage<Stage>) {
                        const double t0 = now();
                        call([&] { st.backward_weight(m); });
                        record(current, v, t0);
                        count_backward();
                    }
                    break;
                }
                case op::R: {
                    if constexpr (recompute_stage<Stage>) {
                        const double t0 = now();
                        call([&] { st.recompute(m); });
                        record(current, v, t0);
                    }
                    break;
                }
                default: break;
                }
                while (!sends.empty() && sends.front().first.test()) sends.pop_front();
            }
            for (auto& [req, at] : sends) {
                current = at;
                req.wait(options_.timeout);
            }
        } catch (const pipeline_error&) {
            throw; // a stage failed: already reported and the world aborted
        } catch (const aborted_error&) {
            throw; // another rank failed first
        } catch (const timeout_error&) {
            abort_world(current, "timeout");
            throw;
        } catch (const std::exception& e) { // the transport failed
            abort_world(current, e.what());
            throw pipeline_error(rank_, current, std::current_exception(), e.what());
        } catch (...) {
            abort_world(current, "unknown exception");
            throw pipeline_error(rank_, current, std::current_exception(), "unknown exception");
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
        abort_world(at, what);
        throw pipeline_error(rank_, at, std::move(e), what);
    }

    // Transports that can name the action in their errors get it (MPI, NCCL).
    auto post_recv(int peer, int tag, const action& a) {
        if constexpr (requires { comm_->irecv(peer, tag, a); }) return comm_->irecv(peer, tag, a);
        else return comm_->irecv(peer, tag);
    }
    auto post_send(int peer, int tag, buffer&& b, const action& a) {
        if constexpr (requires { comm_->isend(peer, tag, std::move(b), a); }) return comm_->isend(peer, tag, std::move(b), a);
        else return comm_->isend(peer, tag, std::move(b));
    }

    void abort_world(const action& at, const std::string& why) {
        if constexpr (abortable<Comm>)
            comm_->abort(detail::concat("rank ", rank_, " failed at ", at, ": ", why).c_str());
    }

    Policy policy_;
    std::vector<Stage*> stages_;
    Comm* comm_;
    executor_options options_;
    pipeline_shape shape_;
    controller_type controller_;
    int rank_ = 0;
    std::vector<int> local_;
    executor_state state_;
    std::vector<trace_event> trace_;
};

} // namespace paci
