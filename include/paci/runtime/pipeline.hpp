#pragma once
/// \file
/// A whole pipeline in one process: one persistent thread per rank over the in-process transport.
/// The embedded default: tests and the demonstration run on it.

#include <paci/runtime/executor.hpp>
#include <paci/runtime/inprocess.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace paci {

/// Runs every rank of `Policy` on its own thread; `stages[s]` is the user's object for stage `s`.
///
/// A training loop calls `run` once per update and `drain` only to evaluate, checkpoint or stop:
///
///     paci::inprocess_pipeline pipe(policy, stages);
///     for (int step = 0; step < steps; ++step) pipe.run(policy.microbatches); // the pipeline stays full
///     pipe.drain();                                                           // then read the stages
///
/// - `run(n)` hands micro-batches `[next, next + n)` to every rank and returns once every rank has
///   reached the cut of the *previous* call (each rank's cut is the executor's: every action before
///   the first forward of the new `next`). So the ranks never wait for the caller between updates
///   (one call's work is queued ahead) and never wait for each other at a cut: PACI does not drain.
///   While ranks run, the caller must not touch the stages except through what the stages make
///   thread-safe themselves (a loss log behind a mutex, say).
/// - `drain()` returns when every micro-batch has finished on every rank: then the stages, `state()`
///   and `trace()` may be read, evaluation and checkpoints run.
/// - Failures: `run` or `drain` throws the first failure: a stage's exception as `pipeline_error`
///   (rank, stage, micro-batch, the original inside), a peer that never answers as `timeout_error`
///   naming the rank that stopped (a stage call that does not return is found by a watchdog within
///   the timeout and named with its rank, stage and action). The other ranks stop within the
///   timeout. The pipeline is then spent: later calls throw `aborted_error`; build a new one,
///   restoring a `state()` saved at a drain. A thread stuck in a stage call is detached when the
///   pipeline is destroyed (the stage objects must outlive it).
template <schedule_policy Policy, stage Stage>
class inprocess_pipeline {
    using buffer = typename Stage::buffer_type;
    using comm_type = inprocess_communicator<buffer>;
    using exec_type = executor<Policy, Stage, comm_type>;

public:
    /// \throws config_error for an invalid policy, a stage list of the wrong size, a null or repeated
    /// stage pointer (and what `executor` checks).
    inprocess_pipeline(const Policy& policy, std::vector<Stage*> stages, executor_options options = {})
        : shape_(policy.shape()), granularity_(0), timeout_(options.timeout), shared_(std::make_shared<shared_state>()) {
        policy.validate();
        granularity_ = policy.run_granularity();
        detail::config_require(stages.size() == static_cast<std::size_t>(shape_.stages), "inprocess_pipeline",
                               "stages given", stages.size(),
                               detail::concat("must equal the policy's stages (", shape_.stages, ")"));
        for (std::size_t s = 0; s < stages.size(); ++s) {
            if (stages[s] == nullptr)
                detail::config_fail("inprocess_pipeline", detail::concat("stages[", s, "]"), "nullptr",
                                    detail::concat("must point to the object of stage ", s));
            for (std::size_t j = 0; j < s; ++j)
                if (stages[j] == stages[s])
                    detail::config_fail("inprocess_pipeline", detail::concat("stages[", s, "]"),
                                        detail::concat("the object of stages[", j, "]"),
                                        "must be a distinct object per stage (each rank runs on its own thread)");
        }
        shared_state& st = *shared_;
        st.world = std::make_unique<inprocess_world<buffer>>(shape_.ranks);
        for (int r = 0; r < shape_.ranks; ++r) st.comms.push_back(st.world->communicator(r));
        for (int r = 0; r < shape_.ranks; ++r) {
            std::vector<Stage*> mine;
            for (const int s : shape_.stages_of(r)) mine.push_back(stages[static_cast<std::size_t>(s)]);
            st.executors.push_back(std::make_unique<exec_type>(policy, std::move(mine), st.comms[static_cast<std::size_t>(r)], options));
        }
        st.workers.resize(static_cast<std::size_t>(shape_.ranks));
        try {
            for (std::size_t r = 0; r < st.workers.size(); ++r)
                threads_.emplace_back([state = shared_, r] { work(*state, r); });
        } catch (...) { // a thread could not start: stop the ones that did
            stop_threads();
            throw;
        }
    }

    inprocess_pipeline(const inprocess_pipeline&) = delete;
    inprocess_pipeline& operator=(const inprocess_pipeline&) = delete;

    /// Stops every rank (without draining) and joins their threads; a thread stuck in a stage call
    /// is detached.
    ~inprocess_pipeline() { stop_threads(); }

    /// Hands micro-batches `[next, next + n)` to every rank; returns when every rank has reached the
    /// previous call's cut. \throws config_error for a bad `n` (before any rank sees it), the first
    /// failure, or `aborted_error` after one.
    void run(std::int64_t n) {
        check_usable("run");
        if (n <= 0 || n % granularity_ != 0)
            detail::config_fail("inprocess_pipeline::run", "micro-batches", n,
                                granularity_ == 1
                                    ? std::string("must be >= 1")
                                    : detail::concat("must be a positive multiple of ", granularity_, ": ", Policy::name,
                                                     " drains after every update of ", granularity_, " micro-batches"));
        if (n > std::numeric_limits<std::int32_t>::max() - next_)
            detail::config_fail("inprocess_pipeline::run", "micro-batches", n,
                                detail::concat("would take micro-batch ids past 2^31 - 1 (next is ", next_, ")"));
        const std::uint64_t previous = seq_;
        post(command{command::run_cmd, n, ++seq_});
        next_ += n;
        drained_ = false;
        wait_for(previous);
    }

    /// Finishes every micro-batch in flight on every rank. \throws the first failure.
    void drain() {
        check_usable("drain");
        if (!drained_) post(command{command::drain_cmd, 0, ++seq_});
        wait_for(seq_);
        drained_ = true;
    }

    /// True when no micro-batch is in flight (after `drain()`, or before the first `run`).
    [[nodiscard]] bool drained() const noexcept { return drained_; }

    /// Every rank's counters. \throws config_error unless drained (call `drain()` first), or after a failure.
    [[nodiscard]] std::vector<executor_state> state() {
        if (failed_) detail::config_fail("inprocess_pipeline::state", "pipeline", "failed",
                                         "has no consistent state after a failure: restore the last state saved at a drain");
        if (!drained_) detail::config_fail("inprocess_pipeline::state", "drained", "false",
                                           "must be true: micro-batches are in flight, call drain() first");
        std::vector<executor_state> out;
        for (const auto& e : shared_->executors) out.push_back(e->state());
        return out;
    }
    /// Continue from a drained pipeline's `state()` (same policy). \throws config_error as `executor::restore`.
    void restore(const std::vector<executor_state>& s) {
        check_usable("restore");
        detail::config_require(s.size() == shared_->executors.size(), "inprocess_pipeline", "restored ranks", s.size(),
                               detail::concat("must equal ranks (", shared_->executors.size(), ")"));
        if (!drained_) detail::config_fail("inprocess_pipeline::restore", "drained", "false",
                                           "must be true: micro-batches are in flight, call drain() first");
        for (std::size_t r = 0; r < s.size(); ++r) shared_->executors[r]->restore(s[r]);
        next_ = s.empty() ? 0 : s.front().next_microbatch;
    }
    /// Forgets the recorded events of every rank (waits until the ranks reach the last cut).
    void clear_trace() {
        settle();
        for (auto& e : shared_->executors) e->clear_trace();
    }
    /// Every rank's recorded events, in the order they ran (waits until the ranks reach the last cut).
    [[nodiscard]] run_trace trace() {
        settle();
        run_trace t;
        t.shape = shape_;
        for (const auto& e : shared_->executors) t.ranks.push_back(e->trace());
        return t;
    }

private:
    struct command {
        enum kind_t { run_cmd, drain_cmd, stop_cmd } kind;
        std::int64_t n;
        std::uint64_t seq;
    };
    struct worker {
        std::deque<command> todo;
        std::uint64_t done = 0;
        bool ended = false;
        std::exception_ptr error;
        int order = -1;         // rank of this failure among causes (not consequences); -1 if none
        bool consequence = false; // failed with aborted_error: another rank's failure stopped it
    };
    /// What the threads share with the pipeline; kept alive by a detached thread stuck in a stage.
    struct shared_state {
        std::unique_ptr<inprocess_world<buffer>> world;
        std::vector<comm_type> comms;
        std::vector<std::unique_ptr<exec_type>> executors;
        std::mutex mutex;
        std::condition_variable work_cv, done_cv;
        std::vector<worker> workers;
        int causes = 0;
    };

    static void work(shared_state& st, std::size_t r) {
        worker& w = st.workers[r];
        exec_type& exec = *st.executors[r];
        for (;;) {
            command c{};
            {
                std::unique_lock lock(st.mutex);
                st.work_cv.wait(lock, [&] { return !w.todo.empty(); });
                c = w.todo.front();
                w.todo.pop_front();
            }
            if (c.kind == command::stop_cmd) break;
            try {
                if (c.kind == command::run_cmd) exec.run(c.n);
                else exec.drain();
            } catch (const aborted_error&) {
                std::lock_guard lock(st.mutex);
                w.error = std::current_exception();
                w.consequence = true;
                break;
            } catch (...) {
                {
                    std::lock_guard lock(st.mutex);
                    w.error = std::current_exception();
                    w.order = st.causes++;
                }
                st.world->abort(detail::concat("rank ", r, " failed"));
                break;
            }
            std::lock_guard lock(st.mutex);
            w.done = c.seq;
            st.done_cv.notify_all();
        }
        std::lock_guard lock(st.mutex);
        w.ended = true;
        st.done_cv.notify_all();
    }

    void post(const command& c) {
        {
            std::lock_guard lock(shared_->mutex);
            for (auto& w : shared_->workers) w.todo.push_back(c);
        }
        shared_->work_cv.notify_all();
    }

    /// Waits until every rank has finished command `seq`, watching for failures and stage calls that
    /// do not return.
    void wait_for(std::uint64_t seq) {
        shared_state& st = *shared_;
        const auto poll = std::clamp<std::chrono::nanoseconds>(timeout_ / 16, std::chrono::milliseconds(1),
                                                               std::chrono::milliseconds(50));
        std::unique_lock lock(st.mutex);
        for (;;) {
            bool all = true, any_error = false, cause = false, settled = true;
            for (std::size_t r = 0; r < st.workers.size(); ++r) {
                const worker& w = st.workers[r];
                all = all && w.done >= seq;
                any_error = any_error || w.error != nullptr;
                cause = cause || w.order >= 0;
                // A rank that is neither ended nor stuck in a stage may still report the cause.
                settled = settled && (w.ended || (w.todo.empty() && w.done >= seq_) || st.executors[r]->activity().in_stage);
            }
            // A failing rank aborts the world before it records its error, so the others' aborted_errors
            // can arrive first: wait for the cause unless every rank has ended (or is stuck).
            if (any_error && (cause || settled)) {
                lock.unlock();
                fail(first_failure());
            }
            if (all && !any_error) return;
            st.done_cv.wait_for(lock, poll);
            lock.unlock();
            watch();
            lock.lock();
        }
    }

    /// The watchdog: a stage call running longer than the timeout stops the pipeline.
    void watch() {
        const auto now = std::chrono::steady_clock::now();
        for (std::size_t r = 0; r < shared_->executors.size(); ++r) {
            const executor_activity a = shared_->executors[r]->activity();
            if (a.in_stage && now - a.since > timeout_) {
                stuck_.push_back(r);
                shared_->world->abort(detail::concat("rank ", r, "'s stage ", a.current.stage, " did not return from ",
                                                     a.current));
                fail(std::make_exception_ptr(timeout_error(static_cast<int>(r), a.current,
                                                           std::chrono::duration_cast<std::chrono::nanoseconds>(now - a.since),
                                                           timeout_, "")));
            }
        }
    }

    /// The first cause among the ranks' failures; a timeout waiting on a peer is traced along the
    /// chain of waits to the rank that stopped: one inside a stage call is named instead.
    std::exception_ptr first_failure() {
        shared_state& st = *shared_;
        std::lock_guard lock(st.mutex);
        std::exception_ptr first;
        int best = -1;
        std::size_t who = 0;
        for (std::size_t r = 0; r < st.workers.size(); ++r)
            if (st.workers[r].order >= 0 && (best < 0 || st.workers[r].order < best)) {
                best = st.workers[r].order;
                first = st.workers[r].error;
                who = r;
            }
        if (!first) {
            for (const auto& w : st.workers)
                if (w.error) return w.error;
            return first;
        }
        try {
            std::rethrow_exception(first);
        } catch (const timeout_error& e) {
            if (e.stage_call() || e.peer() < 0) return first;
            std::vector<bool> seen(st.workers.size(), false);
            seen[who] = true;
            int peer = e.peer();
            while (peer >= 0 && static_cast<std::size_t>(peer) < st.workers.size() && !seen[static_cast<std::size_t>(peer)]) {
                seen[static_cast<std::size_t>(peer)] = true;
                const executor_activity a = st.executors[static_cast<std::size_t>(peer)]->activity();
                if (a.in_stage) {
                    stuck_.push_back(static_cast<std::size_t>(peer));
                    return std::make_exception_ptr(timeout_error(
                        peer, a.current,
                        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - a.since),
                        timeout_, detail::concat("; rank ", e.rank(), " waited ",
                                                 std::chrono::duration<double>(timeout_).count(), " s for it at ",
                                                 e.waited_on())));
                }
                peer = a.waiting_on;
            }
        } catch (...) {
        }
        return first;
    }

    [[noreturn]] void fail(std::exception_ptr e) {
        failed_ = true;
        if (!first_error_) first_error_ = e;
        shared_->world->abort("a rank failed");
        std::rethrow_exception(e);
    }

    void check_usable(std::string_view api) const {
        if (!failed_) return;
        std::string why = "unknown";
        try {
            std::rethrow_exception(first_error_);
        } catch (const std::exception& e) {
            why = e.what();
        } catch (...) {
        }
        throw aborted_error(detail::concat("paci::inprocess_pipeline::", api, ": the pipeline was aborted by an earlier failure (",
                                           why, "); build a new one, restoring a state saved at a drain"));
    }

    /// Waits for every posted command (a failure is rethrown unless the pipeline already failed).
    void settle() {
        if (failed_) return;
        wait_for(seq_);
    }

    void stop_threads() {
        if (!failed_ && !drained_) shared_->world->abort("the pipeline was destroyed with micro-batches in flight");
        {
            std::lock_guard lock(shared_->mutex);
            for (auto& w : shared_->workers) {
                w.todo.clear();
                w.todo.push_back(command{command::stop_cmd, 0, 0});
            }
        }
        shared_->work_cv.notify_all();
        for (std::size_t r = 0; r < threads_.size(); ++r) {
            if (!threads_[r].joinable()) continue;
            if (std::find(stuck_.begin(), stuck_.end(), r) != stuck_.end()) {
                // A stage call that did not return gets one more timeout to do so; then its thread is
                // left behind (it holds `shared_`, and stops at its next wait on the aborted world).
                const auto give_up = std::chrono::steady_clock::now() + timeout_;
                while (shared_->executors[r]->activity().in_stage && std::chrono::steady_clock::now() < give_up)
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
                if (shared_->executors[r]->activity().in_stage) {
                    threads_[r].detach();
                    continue;
                }
            }
            threads_[r].join();
        }
    }

    pipeline_shape shape_;
    int granularity_;
    std::chrono::nanoseconds timeout_;
    std::shared_ptr<shared_state> shared_;
    std::vector<std::thread> threads_;
    std::vector<std::size_t> stuck_;
    std::uint64_t seq_ = 0;
    std::int64_t next_ = 0;
    bool drained_ = true;
    bool failed_ = false;
    std::exception_ptr first_error_;
};

} // namespace paci
