#pragma once
/// \file
/// A whole pipeline in one process: one thread per rank over the in-process transport. The embedded
/// default: tests and the demonstration run on it.

#include <paci/runtime/executor.hpp>
#include <paci/runtime/inprocess.hpp>

#include <atomic>
#include <exception>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

namespace paci {

/// Runs every rank of `Policy` on its own thread. `stages[s]` is the user's object for stage `s`.
/// `run(n)` returns when every rank has drained, or throws the first failure: a stage's exception
/// arrives as `pipeline_error` (rank, stage, micro-batch, the original inside); a peer that never
/// answers as `timeout_error`; the other ranks stop within the timeout. After a failure the
/// pipeline is spent (its world stays aborted): build a new one, restoring `state()` if needed.
template <schedule_policy Policy, stage Stage>
class inprocess_pipeline {
    using buffer = typename Stage::buffer_type;
    using comm_type = inprocess_communicator<buffer>;
    using exec_type = executor<Policy, Stage, comm_type>;

public:
    inprocess_pipeline(const Policy& policy, std::vector<Stage*> stages, executor_options options = {})
        : shape_(policy.shape()), microbatches_(policy.microbatches) {
        policy.validate();
        detail::config_require(stages.size() == static_cast<std::size_t>(shape_.stages), "inprocess_pipeline",
                               "stages given", stages.size(),
                               detail::concat("must equal the policy's stages (", shape_.stages, ")"));
        world_ = std::make_unique<inprocess_world<buffer>>(shape_.ranks);
        for (int r = 0; r < shape_.ranks; ++r) comms_.push_back(world_->communicator(r));
        for (int r = 0; r < shape_.ranks; ++r) {
            std::vector<Stage*> mine;
            for (const int s : shape_.stages_of(r)) mine.push_back(stages[static_cast<std::size_t>(s)]);
            executors_.push_back(std::make_unique<exec_type>(policy, std::move(mine), comms_[static_cast<std::size_t>(r)], options));
        }
    }

    /// Runs micro-batches `[next, next + n)` on every rank and drains.
    void run(std::int64_t n) {
        // Reject a bad count here, before any rank starts: a failure inside would abort the world.
        if (n <= 0 || n % microbatches_ != 0)
            detail::config_fail("executor", "micro-batches to run", n,
                                detail::concat("must be a positive multiple of micro-batches per update (",
                                               microbatches_, ")"));
        const auto R = executors_.size();
        std::vector<std::exception_ptr> errors(R);
        std::vector<int> order(R, -1);
        std::atomic<int> failures{0};
        {
            std::vector<std::jthread> threads;
            try {
                for (std::size_t r = 0; r < R; ++r)
                    threads.emplace_back([&, r] {
                    try {
                        executors_[r]->run(n);
                    } catch (const aborted_error&) {
                        errors[r] = std::current_exception(); // a consequence, not a cause
                    } catch (...) {
                        errors[r] = std::current_exception();
                        order[r] = failures++;
                        world_->abort("a rank failed");
                    }
                });
            } catch (...) { // a thread could not start: release the ones waiting for it, then report
                world_->abort("a rank's thread could not be started");
                throw;
            }
        }
        std::exception_ptr first;
        int best = -1;
        for (std::size_t r = 0; r < R; ++r)
            if (order[r] >= 0 && (best < 0 || order[r] < best)) {
                best = order[r];
                first = errors[r];
            }
        if (!first)
            for (const auto& e : errors)
                if (e) first = e;
        if (first) std::rethrow_exception(first);
    }

    [[nodiscard]] std::vector<executor_state> state() const {
        std::vector<executor_state> out;
        for (const auto& e : executors_) out.push_back(e->state());
        return out;
    }
    void restore(const std::vector<executor_state>& s) {
        detail::config_require(s.size() == executors_.size(), "inprocess_pipeline", "restored ranks", s.size(),
                               detail::concat("must equal ranks (", executors_.size(), ")"));
        for (std::size_t r = 0; r < s.size(); ++r) executors_[r]->restore(s[r]);
    }
    /// Forgets the recorded events of every rank (see `executor::clear_trace`).
    void clear_trace() noexcept {
        for (auto& e : executors_) e->clear_trace();
    }
    /// Every rank's recorded events, in the order they ran.
    [[nodiscard]] run_trace trace() const {
        run_trace t;
        t.shape = shape_;
        for (const auto& e : executors_) t.ranks.push_back(e->trace());
        return t;
    }

private:
    pipeline_shape shape_;
    int microbatches_;
    std::unique_ptr<inprocess_world<buffer>> world_;
    std::vector<comm_type> comms_;
    std::vector<std::unique_ptr<exec_type>> executors_;
};

} // namespace paci
