#pragma once
/// \file
/// The `version_controller` concept: when a stage applies an optimizer update, and which weight
/// version its backward reads.

#include <concepts>
#include <cstddef>
#include <type_traits>
#include <cstdint>
#include <string_view>

namespace paci {

/// A weight version: the number of optimizer updates a stage has applied so far.
using version_t = std::int32_t;

/// Decides when a stage updates its weights and which version a backward reads.
///
/// Requirements, on a `const C c`:
/// - `c.update_due(n)` → `bool`: after the stage's `n`-th completed backward (1-based), apply an update?
/// - `c.backward_reads(current, forward)` → `version_t`: the version a backward (and a weight-gradient
///   backward) reads, given the stage's current version and the one its forward read;
/// - `C::flushes` (static constexpr bool): the pipeline drains after every update's worth of
///   micro-batches (synchronous);
/// - `C::stashes` (static constexpr bool): backwards read a stashed copy of the forward's weights;
/// - `C::name` (static constexpr string_view); and `C` is `std::regular`.
///
/// Valid model: `paci::accumulation{.every = 4}`. Near miss: a type whose `update_due` takes no count
/// (it could not express "every a-th backward").
template <class C>
concept version_controller = std::regular<C> && requires(const C& c, std::int64_t n, version_t v) {
    { c.update_due(n) } -> std::same_as<bool>;
    { c.backward_reads(v, v) } -> std::same_as<version_t>;
    // Compile-time traits: static constant members, not per-object data.
    typename std::bool_constant<C::flushes>;
    typename std::bool_constant<C::stashes>;
    { &C::name } -> std::convertible_to<const std::string_view*>; // static: a plain pointer, not a member pointer
} && requires { typename std::integral_constant<std::size_t, C::name.size()>; };

namespace detail {
/// Shared rule: an update after every `every`-th backward.
[[nodiscard]] constexpr bool every_nth(std::int64_t n, int every) noexcept {
    return every > 0 && n > 0 && n % every == 0;
}
} // namespace detail

} // namespace paci
