#pragma once
/// \file
/// The 1F1B machine and its synchronous model, 1F1B-flush.
///
/// Every stage follows the same static order: a forward whenever fewer than `cap[s]` micro-batches
/// are in flight, otherwise the oldest stored micro-batch's backward (not the reference
/// implementation's run-time "any waiting gradient first": see `one_f_one_b_stream`); an update on
/// every `microbatches`-th local backward. With a `flush` controller each stage also waits for its
/// group to drain before the next group's forwards (1F1B-flush); with `accumulation` it does not
/// (PACI); with `stash` or `double_buffer` backwards read stashed weights (PipeDream, 2BW).

#include <paci/policy/schedule_policy.hpp>
#include <paci/version/accumulation.hpp>
#include <paci/version/double_buffer.hpp>
#include <paci/version/flush.hpp>
#include <paci/version/stash.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <cstddef>
#include <ostream>
#include <string_view>
#include <type_traits>
#include <vector>

namespace paci {

namespace detail {

template <class Controller>
[[nodiscard]] constexpr std::string_view machine_name() noexcept {
    if constexpr (std::is_same_v<Controller, flush>) return "one_f_one_b";
    else if constexpr (std::is_same_v<Controller, accumulation>) return "paci";
    else if constexpr (std::is_same_v<Controller, stash>) return "pipedream";
    else if constexpr (std::is_same_v<Controller, double_buffer>) return "pipedream_2bw";
    else return "one_f_one_b_machine";
}

} // namespace detail

/// One stage's program in the 1F1B machine, produced one action at a time. The order is static:
/// a forward whenever the stage is under its in-flight cap (and, with a flushing controller, the
/// current group is open), otherwise the oldest stored micro-batch's backward (preceded by `R` in the
/// recompute flavour, followed by `STEP` when the controller says an update is due). This is not the
/// reference implementation's run-time greedy choice (any waiting gradient first): with equal stage
/// costs both reach the same steady state, and under per-stage imbalance and jitter the static order
/// is as fast or faster with the same drift bound (tests/sim/greedy.test.cpp, bench/sim/greedy.bench.cpp).
/// Endless until `stop_after` is set, then it drains and ends; it satisfies `program_stream`, so the
/// executor can pause it at any micro-batch (`next(a, cut)`).
template <version_controller Controller>
class one_f_one_b_stream {
public:
    static constexpr std::int64_t unbounded = std::numeric_limits<std::int32_t>::max();

    one_f_one_b_stream(Controller controller, int stage, bool last_stage, int cap, int group, bool recompute,
                       std::int64_t limit = unbounded)
        : ctl_(controller), stage_(stage), cap_(cap), group_(group), last_(last_stage), recompute_(recompute),
          limit_(limit) {}

    /// Stop injecting micro-batches once `microbatches` have started; the stream then drains.
    void stop_after(std::int64_t microbatches) noexcept { limit_ = std::min(limit_, std::max<std::int64_t>(microbatches, forwards_)); }

    /// Writes the next action to `out`; false when the stream has drained.
    bool next(action& out) { return next(out, unbounded); }

    /// Writes the next action to `out` unless it is the forward of a micro-batch `>= cut` (then
    /// false, and nothing is consumed) or the stream has drained (false).
    bool next(action& out, std::int64_t cut) { return advance(out, cut, false); }
    /// The stream as if no forward of a micro-batch `>= cut` were to run: false once drained.
    bool next_draining(action& out, std::int64_t cut) { return advance(out, cut, true); }

    [[nodiscard]] std::int64_t forwards() const noexcept { return forwards_; }
    [[nodiscard]] std::int64_t backwards() const noexcept { return backwards_; }
    [[nodiscard]] int updates() const noexcept { return updates_; }

private:
    bool advance(action& out, std::int64_t cut, bool draining) {
        if (head_ < count_) {
            out = queue_[head_++];
            return true;
        }
        const bool group_open = !Controller::flushes || forwards_ < (backwards_ / group_ + 1) * group_;
        const bool may_inject = forwards_ < limit_ && (!draining || forwards_ < cut);
        if (may_inject && forwards_ - backwards_ < cap_ && group_open) {
            if (forwards_ >= cut) return false;
            out = action{op::F, stage_, static_cast<int>(forwards_++)};
            return true;
        }
        if (backwards_ >= forwards_) return false;
        const int m = static_cast<int>(backwards_++);
        // The first action goes straight to `out`; only what follows it waits in the queue.
        head_ = count_ = 0;
        if (recompute_ && !last_) {
            out = action{op::R, stage_, m};
            queue_[count_++] = action{op::B, stage_, m};
        } else {
            out = action{op::B, stage_, m};
        }
        if (ctl_.update_due(backwards_)) queue_[count_++] = action{op::STEP, stage_, updates_++};
        return true;
    }

    Controller ctl_;
    int stage_;
    int cap_;
    int group_;
    bool last_;
    bool recompute_;
    std::int64_t limit_;
    std::int64_t forwards_ = 0;
    std::int64_t backwards_ = 0;
    int updates_ = 0;
    std::array<action, 3> queue_{}; // R, B, STEP of one backward
    std::size_t head_ = 0;
    std::size_t count_ = 0;
};


/// The 1F1B machine over `stages` stages, one per rank.
/// - `microbatches`: micro-batches per optimizer update (PACI's accumulation factor `a`);
/// - `steps`: updates described (for asynchronous controllers, the window: fill, steady state, drain);
/// - `cap`: in-flight cap per stage; empty means `stages - s` (the 1F1B footprint). A user cap must be
///   >= 1, non-increasing along the pipeline, and 1 at the last stage (forward and backward back to back).
template <version_controller Controller, backward_flavour Flavour = backward_flavour::perf>
struct one_f_one_b_machine {
    using controller_type = Controller;
    static constexpr std::string_view name = detail::machine_name<Controller>();
    static constexpr backward_flavour flavour = Flavour;
    static constexpr bool splits_backward = false;
    static constexpr bool recomputes = Flavour == backward_flavour::recompute;
    int stages = 1;
    int microbatches = 1;
    int steps = 1;
    std::vector<int> cap{};

    /// In-flight cap of `stage` (`cap[stage]`, or `stages - stage` by default).
    [[nodiscard]] int cap_of(int stage) const {
        return cap.empty() ? stages - stage : cap[static_cast<std::size_t>(stage)];
    }

    void validate() const {
        detail::check_stages(name, stages);
        detail::check_counts(name, microbatches, steps);
        if (!cap.empty()) {
            if (!(cap.size() == static_cast<std::size_t>(stages))) detail::config_fail(name, "cap size", cap.size(),
                                   detail::concat("must equal stages (", stages, ")"));
            for (int s = 0; s < stages; ++s) {
                const int c = cap[static_cast<std::size_t>(s)];
                if (!(c >= 1)) detail::config_fail(name, detail::concat("cap[", s, "]"), c, "must be >= 1");
                if (s > 0)
                    if (!(c <= cap[static_cast<std::size_t>(s - 1)])) detail::config_fail(name,
                                           detail::concat("cap[", s, "]"), c,
                                           detail::concat("must be <= cap[", s - 1, "] (",
                                                          cap[static_cast<std::size_t>(s - 1)], ")"));
            }
            if (!(cap.back() == 1)) detail::config_fail(name, detail::concat("cap[", stages - 1, "]"), cap.back(),
                                   "must be 1: the last stage runs forward and backward back to back");
            // P - s in flight already keep stage s busy (the 1F1B footprint): a larger cap only raises
            // the drift bound and the stored activations, and where it leaves neighbours with equal
            // caps the static order makes each of their forwards wait for a backward's round trip
            // upstream (9, 9, ..., 9, 1 on 8 stages: one micro-batch per 7 (F + B), not per F + B).
            for (int s = 0; s < stages; ++s)
                if (!(cap[static_cast<std::size_t>(s)] <= stages - s))
                    detail::config_fail(name, detail::concat("cap[", s, "]"), cap[static_cast<std::size_t>(s)],
                                        detail::concat("must be <= stages - ", s, " (", stages - s,
                                                       "): a cap above P - s only adds drift and memory"));
        }
        if constexpr (std::is_same_v<Controller, double_buffer>) {
            if (!(microbatches >= cap_of(0) - 1)) detail::config_fail(name, "microbatches", microbatches,
                                   detail::concat("must be >= cap[0] - 1 (", cap_of(0) - 1,
                                                  ") so that two weight buffers suffice"));
        }
    }

    [[nodiscard]] pipeline_shape shape() const { return {stages, stages, stage_map::loop}; }
    [[nodiscard]] Controller controller() const { return Controller{microbatches}; }

    /// Updates a micro-batch can cross between forward and backward: `ceil((cap[s] - 1) / a)` without
    /// stashing and without a flush, 0 otherwise.
    [[nodiscard]] int drift_bound(int stage) const {
        if (Controller::flushes || Controller::stashes) return 0;
        return detail::ceil_div(cap_of(stage) - 1, microbatches);
    }
    /// Updates between a micro-batch's forward and the update that applies its gradient.
    [[nodiscard]] int staleness_bound(int stage) const {
        return Controller::flushes ? 0 : detail::ceil_div(cap_of(stage) - 1, microbatches);
    }
    /// Resident weight versions: one, or with stashing every distinct version still in flight.
    [[nodiscard]] int versions_bound(int stage) const {
        return Controller::stashes ? detail::ceil_div(cap_of(stage) - 1, microbatches) + 1 : 1;
    }

    /// 1 / micro-batches per update: the last stage scales its loss by it (an update applies the mean
    /// gradient of its micro-batches).
    [[nodiscard]] double loss_scale() const noexcept { return 1.0 / static_cast<double>(microbatches); }
    /// A flushing controller runs whole updates; otherwise the program can pause at any micro-batch.
    [[nodiscard]] int run_granularity() const noexcept { return Controller::flushes ? microbatches : 1; }

    /// Stage `stage`'s program as a stream: endless by default (execution), or ending after
    /// `limit` micro-batches and the drain (analysis windows). Validates the policy first.
    [[nodiscard]] one_f_one_b_stream<Controller> stream(int stage,
                                                        std::int64_t limit = one_f_one_b_stream<Controller>::unbounded) const {
        validate();
        if (!(stage >= 0 && stage < stages)) detail::config_fail(name, "stage", stage,
                               detail::concat("must be in [0, ", stages, ")"));
        if (!(limit >= 0 && limit <= one_f_one_b_stream<Controller>::unbounded))
            detail::config_fail(name, "limit", limit, "must be in [0, 2^31 - 1]: micro-batch ids are 32-bit");
        return unchecked_stream(stage, limit);
    }
    /// Rank `rank`'s endless program (rank `r` runs stage `r`). Validates the policy first.
    [[nodiscard]] one_f_one_b_stream<Controller> program(int rank) const {
        validate();
        detail::check_rank(name, rank, stages);
        return unchecked_stream(rank, one_f_one_b_stream<Controller>::unbounded);
    }
    /// `program(rank)` of a validated policy and a rank in range.
    [[nodiscard]] one_f_one_b_stream<Controller> unchecked_program(int rank) const {
        return unchecked_stream(rank, one_f_one_b_stream<Controller>::unbounded);
    }

    [[nodiscard]] schedule generate() const {
        validate();
        const int total = microbatches * steps;
        return detail::materialize(*this, total,
                                   detail::add_sat(detail::mul_sat(static_cast<std::uint64_t>(total), recomputes ? 3U : 2U),
                                                   static_cast<std::uint64_t>(steps)));
    }

    friend bool operator==(const one_f_one_b_machine&, const one_f_one_b_machine&) = default;

private:
    [[nodiscard]] one_f_one_b_stream<Controller> unchecked_stream(int stage, std::int64_t limit) const {
        return one_f_one_b_stream<Controller>(controller(), stage, stage == stages - 1, cap_of(stage), microbatches,
                                              Flavour == backward_flavour::recompute, limit);
    }
};

template <version_controller C, backward_flavour F>
std::ostream& operator<<(std::ostream& os, const one_f_one_b_machine<C, F>& p) {
    os << one_f_one_b_machine<C, F>::name << '<' << F << ">{.stages = " << p.stages
       << ", .microbatches = " << p.microbatches << ", .steps = " << p.steps;
    if (!p.cap.empty()) {
        os << ", .cap = {";
        for (std::size_t i = 0; i < p.cap.size(); ++i) os << (i ? ", " : "") << p.cap[i];
        os << '}';
    }
    return os << '}';
}

/// 1F1B with a flush (Narayanan et al., PipeDream-Flush): synchronous, drift 0, bubble (P-1)/(M+P-1).
template <backward_flavour Flavour = backward_flavour::perf>
using one_f_one_b = one_f_one_b_machine<flush, Flavour>;

static_assert(schedule_policy<one_f_one_b<>>);
static_assert(schedule_policy<one_f_one_b<backward_flavour::recompute>>);

} // namespace paci
