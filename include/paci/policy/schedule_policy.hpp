#pragma once
/// \file
/// The `schedule_policy` concept and the backward flavour shared by the policies.

#include <paci/core/schedule.hpp>
#include <paci/core/shape.hpp>
#include <paci/policy/program.hpp>
#include <paci/version/version_controller.hpp>

#include <concepts>
#include <cstdint>
#include <limits>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace paci {

/// How a backward gets the activations it needs.
enum class backward_flavour : std::uint8_t {
    perf,      ///< keep the forward's activations until the backward (more memory, no extra work)
    recompute, ///< keep only the stage input; an `R` action recomputes the forward just before the backward
};

[[nodiscard]] constexpr std::string_view to_string(backward_flavour f) noexcept {
    return f == backward_flavour::perf ? "perf" : "recompute";
}
inline std::ostream& operator<<(std::ostream& os, backward_flavour f) { return os << to_string(f); }

/// A schedule policy: a regular value holding a schedule's runtime numbers, whose type fixes its
/// structure (version controller, backward flavour).
///
/// Requirements, on a `const P p`, an `int stage` and an `int rank`:
/// - `p.validate()`: throws `config_error` naming the policy, parameter, value and requirement;
/// - `p.shape()` → `pipeline_shape`; `p.generate()` → `schedule` (compute actions and STEPs over
///   `steps` updates; validates first);
/// - `p.program(rank)` → a `program_stream`: the rank's program without end, one action at a time
///   (what the executor runs; `generate()` is the same program cut after `steps` updates and drained);
/// - `p.controller()` → a `version_controller` (what replay uses to check the program's STEPs);
/// - `p.drift_bound(stage)`, `p.staleness_bound(stage)`, `p.versions_bound(stage)` → `int`: what the
///   policy promises (updates crossed between forward and backward, updates between forward and the
///   update that applies the gradient, resident weight versions);
/// - `p.loss_scale()` → `double`: the factor the last stage applies to its loss so that an update
///   applies the mean gradient of its micro-batches (1 / micro-batches per update);
/// - `p.run_granularity()` → `int`: `executor::run(n)` needs `n` to be a multiple of it (1 where the
///   program can pause at any micro-batch, micro-batches per update where every update drains);
/// - `P::splits_backward`, `P::recomputes` (static constexpr bool): the program contains `I`/`W`
///   actions, `R` actions (the executor requires a stage that can run them);
/// - `P::name` (string_view), `os << p` prints it, and `std::regular<P>`.
///
/// Valid model: `paci::one_f_one_b<>`. Near miss: a type with `generate()` but no `controller()`
/// (its schedule could not be replayed for versions).
template <class P>
concept schedule_policy = std::regular<P> && requires(const P& p, int stage, std::ostream& os) {
    p.validate();
    { p.shape() } -> std::same_as<pipeline_shape>;
    { p.generate() } -> std::same_as<schedule>;
    { p.program(stage) } -> program_stream;
    { p.controller() } -> version_controller;
    { p.drift_bound(stage) } -> std::same_as<int>;
    { p.staleness_bound(stage) } -> std::same_as<int>;
    { p.versions_bound(stage) } -> std::same_as<int>;
    { p.loss_scale() } -> std::same_as<double>;
    { p.run_granularity() } -> std::same_as<int>;
    typename std::bool_constant<P::splits_backward>;
    typename std::bool_constant<P::recomputes>;
    { P::name } -> std::convertible_to<std::string_view>;
    { os << p } -> std::same_as<std::ostream&>;
};

namespace detail {

/// `ceil(a / b)` for `a >= 0`, `b >= 1`, without forming `a + b - 1` (which overflows for large `b`);
/// 0 for `a <= 0` or `b <= 0` (an unvalidated policy's bound is never used: callers validate first).
[[nodiscard]] constexpr int ceil_div(int a, int b) noexcept { return a <= 0 || b <= 0 ? 0 : 1 + (a - 1) / b; }

/// Common checks of micro-batches per update and steps.
inline void check_counts(std::string_view api, int microbatches, int steps) {
    config_require(microbatches >= 1, api, "microbatches", microbatches, "must be >= 1");
    config_require(steps >= 1, api, "steps", steps, "must be >= 1");
    config_require(static_cast<std::int64_t>(microbatches) * steps <= std::numeric_limits<std::int32_t>::max(),
                   api, "microbatches * steps", static_cast<std::int64_t>(microbatches) * steps,
                   "must fit in 32 bits");
}

inline void check_stages(std::string_view api, int stages) {
    config_require(stages >= 1, api, "stages", stages, "must be >= 1");
    if (!(stages <= max_stages)) config_fail(api, "stages", stages, concat("must be <= ", max_stages));
}

inline void check_rank(std::string_view api, int rank, int ranks) {
    if (!(rank >= 0 && rank < ranks)) config_fail(api, "rank", rank, concat("must be in [0, ", ranks, ")"));
}

/// A schedule with one empty program per rank, ready for a generator to fill.
[[nodiscard]] inline schedule make_schedule(const pipeline_shape& shape, int microbatches, int steps,
                                            std::string policy) {
    schedule s;
    s.shape = shape;
    s.microbatches = microbatches;
    s.steps = steps;
    s.policy = std::move(policy);
    s.ranks.resize(static_cast<std::size_t>(shape.ranks));
    return s;
}

template <class T>
[[nodiscard]] std::string print(const T& value) {
    std::ostringstream out;
    out << value;
    return std::move(out).str();
}

} // namespace detail
} // namespace paci
