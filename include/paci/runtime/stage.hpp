#pragma once
/// \file
/// The `stage` concept and its refinements: what the executor needs from the user's layers.

#include <concepts>
#include <type_traits>
#include <utility>

namespace paci {

/// A pipeline stage: the user's layers for one stage, with its own buffer type (a CPU vector, a
/// device pointer with its stream, a tensor handle).
///
/// Requirements, on an `S s`, an `int m` (the micro-batch) and an `S::buffer_type b`:
/// - `S::buffer_type` is movable and default-constructible (the executor moves buffers, never copies);
/// - `s.forward(m, std::move(b))` → `buffer_type`: the output for the next stage. The first stage gets
///   an empty buffer and loads micro-batch `m`'s input itself; the last stage computes the loss and
///   may return an empty buffer;
/// - `s.backward(m, std::move(g))` → `buffer_type`: the gradient for the previous stage (the first
///   stage may return an empty buffer). The last stage gets an empty buffer and starts from its loss;
/// - `s.step()`: apply the accumulated gradients (the optimizer update) and zero them.
///
/// Loss scaling: an update applies the mean gradient of its micro-batches only if the last stage
/// starts its backward from `loss * policy.loss_scale()` (1 / micro-batches per update). A last stage
/// with `set_loss_scale(double)` (`loss_scaling_stage`) is given the factor by the executor; any other
/// last stage must apply it itself.
///
/// Valid model: a struct with `using buffer_type = std::vector<float>;` and those three members.
/// Near miss: a stage whose `backward` takes the micro-batch only (no gradient to start from).
template <class S>
concept stage = requires(S& s, int m, typename S::buffer_type b) {
    typename S::buffer_type;
    requires std::movable<typename S::buffer_type> && std::default_initializable<typename S::buffer_type>;
    { s.forward(m, std::move(b)) } -> std::same_as<typename S::buffer_type>;
    { s.backward(m, std::move(b)) } -> std::same_as<typename S::buffer_type>;
    s.step();
};

/// A stage that splits its backward (zero-bubble policies): `backward_input(m, g)` → the gradient
/// for the previous stage; `backward_weight(m)` accumulates the weight gradient later.
template <class S>
concept split_backward_stage = stage<S> && requires(S& s, int m, typename S::buffer_type b) {
    { s.backward_input(m, std::move(b)) } -> std::same_as<typename S::buffer_type>;
    s.backward_weight(m);
};

/// A stage that can drop a forward's activations and recompute them (the recompute flavour):
/// `recompute(m)` rebuilds micro-batch `m`'s activations from its stored input right before its backward.
template <class S>
concept recompute_stage = stage<S> && requires(S& s, int m) { s.recompute(m); };

} // namespace paci

namespace paci {

/// A stage that takes the policy's loss scale: the executor calls `s.set_loss_scale(policy.loss_scale())`
/// on the last stage once, before it runs anything; the stage multiplies the gradient its backward
/// starts from (d loss / d output) by it.
template <class S>
concept loss_scaling_stage = stage<S> && requires(S& s, double factor) { s.set_loss_scale(factor); };

/// A stage that runs a forward and a full backward together: an overlapped pair of the program
/// (`action::overlap_next`, PyTorch's `OVERLAP_F_B`), as DualPipe overlaps one chunk's forward with
/// another chunk's backward to hide communication behind compute.
///
/// `s.forward_backward(mf, std::move(x), other, mb, std::move(g))` → `std::pair<buffer_type,
/// buffer_type>`: runs `s.forward(mf, x)` and `other.backward(mb, g)` (in any order, or concurrently)
/// and returns their results, {the forward's output, the backward's input gradient}. `s` is the
/// forward's stage, `other` the backward's: another stage of the same rank, or `s` itself when the
/// pair runs two micro-batches of one stage. The executor calls it for every `F` + `B` pair, with
/// both inputs received, and sends both results after it returns; a pair whose backward is split
/// (`F` + `I`), and every pair of a stage without this member, run as the two calls, forward first.
/// An exception from it is the failure of the pair's forward (`pipeline_error::failed_action`).
///
/// Valid model: a `stage` with that member. Near miss: `forward_backward(mf, x, mb, g)` without the
/// backward's stage (the pair's two members are usually different stages).
template <class S>
concept overlapping_stage = stage<S> && requires(S& s, S& other, int m, typename S::buffer_type b) {
    {
        s.forward_backward(m, std::move(b), other, m, std::move(b))
    } -> std::same_as<std::pair<typename S::buffer_type, typename S::buffer_type>>;
};

} // namespace paci
