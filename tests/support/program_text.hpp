#pragma once
/// \file
/// Test helpers: write a rank's program as space-separated action tokens (`"0F0 0SEND_F0 (0F1;1B0)"`) and
/// build small schedules by hand, and count simple facts about programs and schedules.

#include <paci/core/action.hpp>
#include <paci/core/schedule.hpp>
#include <paci/core/shape.hpp>

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace paci_test {

/// The actions of a program written as space-separated tokens, an overlapped pair as PyTorch writes it
/// without its suffix: `"1F0 (1F1;1B0) 1B1"` (the pair's forward gets `paci::overlapped`, its backward
/// follows). A pair token without its `;` or closing `)` throws `std::invalid_argument`.
inline std::vector<paci::action> program(std::string_view text) {
    std::vector<paci::action> out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t end = std::min(text.find(' ', pos), text.size());
        const std::string_view token = text.substr(pos, end - pos);
        pos = end + 1;
        if (token.empty()) continue;
        if (token.front() == '(') {
            const std::size_t semi = token.find(';');
            if (semi == std::string_view::npos || token.back() != ')')
                throw std::invalid_argument("program: malformed overlapped pair '" + std::string(token) + "'");
            out.push_back(paci::overlapped(paci::parse_action(token.substr(1, semi - 1))));
            out.push_back(paci::parse_action(token.substr(semi + 1, token.size() - semi - 2)));
        } else {
            out.push_back(paci::parse_action(token));
        }
    }
    return out;
}

/// A hand-built schedule, one `program` text per rank.
inline paci::schedule make_schedule(paci::pipeline_shape shape, int microbatches, int steps,
                                    const std::vector<std::string_view>& ranks) {
    paci::schedule s;
    s.shape = shape;
    s.microbatches = microbatches;
    s.steps = steps;
    s.policy = "hand-built";
    for (const auto r : ranks) s.ranks.push_back(program(r));
    return s;
}

/// Number of actions of `kind` in `prog`.
inline std::size_t count(const std::vector<paci::action>& prog, paci::op kind) {
    return static_cast<std::size_t>(
        std::count_if(prog.begin(), prog.end(), [&](const paci::action& a) { return a.kind == kind; }));
}

/// Number of actions over every rank of `s` whose op satisfies `pred`.
template <class Pred>
std::size_t count_if(const paci::schedule& s, Pred pred) {
    std::size_t n = 0;
    for (const auto& prog : s.ranks)
        for (const paci::action& a : prog) n += pred(a.kind) ? 1U : 0U;
    return n;
}

/// Number of actions of `kind` over every rank of `s`.
inline std::size_t count(const paci::schedule& s, paci::op kind) {
    return count_if(s, [kind](paci::op o) { return o == kind; });
}

/// Largest number of micro-batches between a forward (`F`) and the action that releases them
/// (`release`, e.g. `B` or `W`) over all prefixes of a one-stage program.
inline int peak_in_flight(const std::vector<paci::action>& prog, paci::op release) {
    int now = 0;
    int peak = 0;
    for (const auto& a : prog) {
        if (a.kind == paci::op::F) ++now;
        if (a.kind == release) --now;
        peak = std::max(peak, now);
    }
    return peak;
}

} // namespace paci_test
