#pragma once
// Overlapped-pair schedules shared by the timeline tests (svg, chrome trace).

#include <paci/core/lower.hpp>
#include <paci/core/schedule.hpp>
#include <paci/io/detail/times.hpp>
#include <paci/policy/dualpipe_v.hpp>
#include <paci/sim/simulate.hpp>

namespace paci_test {

/// DualPipeV on 2 ranks, 4 micro-batches, lowered: its overlapped pairs are (F; B) of two stages.
inline paci::schedule dualpipe_lowered() {
    return paci::lower(paci::dualpipe_v{.ranks = 2, .microbatches = 4, .steps = 1}.generate());
}

/// The same programs with every `overlap_next` cleared: no pair left.
inline paci::schedule without_pairs(paci::schedule s) {
    for (auto& prog : s.ranks)
        for (paci::action& a : prog) a.overlap_next = false;
    return s;
}

/// `s`'s simulated times (default costs), with each pair's backward moved after its forward: the
/// members run in turn, so no interval of a pair overlaps its partner's.
inline paci::action_times pairs_in_turn(const paci::schedule& s) {
    const paci::simulation sim = paci::simulate(s, paci::cost_model{});
    paci::action_times times(s.ranks.size());
    for (std::size_t r = 0; r < s.ranks.size(); ++r)
        for (std::size_t p = 0; p < s.ranks[r].size(); ++p) times[r].emplace_back(sim.times[r][p].start, sim.times[r][p].end);
    for (std::size_t r = 0; r < s.ranks.size(); ++r)
        for (std::size_t p = 0; p + 1 < s.ranks[r].size(); ++p)
            if (s.ranks[r][p].overlap_next) {
                times[r][p].second = times[r][p].first + 1;
                times[r][p + 1].first = times[r][p].second;
            }
    return times;
}

} // namespace paci_test
