#pragma once
/// \file
/// PipeDream (weight stashing) and PipeDream-2BW (double-buffered weights): the 1F1B machine without a
/// flush, with backwards reading the forward's weights.

#include <paci/policy/one_f_one_b.hpp>

namespace paci {

/// PipeDream (Narayanan et al., 2019): asynchronous 1F1B with weight stashing. Forward and backward
/// read the same version (drift 0); the gradient is applied `ceil((P - 1 - s) / microbatches)` versions
/// late (`P - 1 - s` with an update per micro-batch), and stage `s` keeps that many versions plus one.
using pipedream = one_f_one_b_machine<stash, backward_flavour::perf>;

/// PipeDream-2BW (Narayanan et al., 2021): like PipeDream with `microbatches >= P - 1` micro-batches per
/// update, so at most two weight versions are resident and every gradient is at most one version late.
using pipedream_2bw = one_f_one_b_machine<double_buffer, backward_flavour::perf>;

static_assert(schedule_policy<pipedream>);
static_assert(schedule_policy<pipedream_2bw>);

} // namespace paci
