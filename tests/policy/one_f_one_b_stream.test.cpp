// The endless per-stage stream that executes asynchronous policies, against the materialized window
// that the analysis checks: the window is a prefix of the stream until the window starts to drain.

#include <paci/policy/paci.hpp>
#include <paci/policy/pipedream.hpp>

#include "support/catch.hpp"

#include <vector>

namespace {

template <class Policy>
std::vector<paci::action> take(paci::one_f_one_b_stream<typename Policy::controller_type> s, std::size_t n) {
    std::vector<paci::action> out;
    paci::action a;
    while (out.size() < n && s.next(a)) out.push_back(a);
    return out;
}

} // namespace

TEST_CASE("one_f_one_b_stream: an endless stream starts with the window's program", "[unit][policy][stream]") {
    const int P = GENERATE(2, 3, 5, 8);
    const int a = GENERATE(1, 2, 3, 7);
    const paci::paci_policy<> policy{.stages = P, .microbatches = a, .steps = 6};
    const paci::schedule window = policy.generate();
    const int total = a * 6;
    for (int s = 0; s < P; ++s) {
        CAPTURE(P, a, s);
        const auto& prog = window.ranks[static_cast<std::size_t>(s)];
        // The window stops injecting after `total` forwards; up to the last forward both agree.
        std::size_t last_f = 0;
        for (std::size_t k = 0; k < prog.size(); ++k)
            if (prog[k].kind == paci::op::F) last_f = k;
        REQUIRE(prog[last_f].microbatch == total - 1);
        const auto endless = take<paci::paci_policy<>>(policy.stream(s), prog.size() + 50);
        REQUIRE(endless.size() == prog.size() + 50); // it does not end
        for (std::size_t k = 0; k <= last_f; ++k) REQUIRE(endless[k] == prog[k]);
        // Past the window the stream keeps injecting: a forward of micro-batch `total` appears.
        bool beyond = false;
        for (const auto& x : endless) beyond = beyond || (x.kind == paci::op::F && x.microbatch == total);
        REQUIRE(beyond);
    }
}

TEST_CASE("one_f_one_b_stream: stop_after drains every started micro-batch and then ends", "[unit][policy][stream]") {
    const paci::pipedream policy{.stages = 4, .microbatches = 1, .steps = 1};
    auto s = policy.stream(0);
    paci::action a;
    for (int k = 0; k < 10; ++k) REQUIRE(s.next(a));
    s.stop_after(0); // cannot un-start micro-batches: keeps what already began
    int forwards = 0, backwards = 0;
    const auto started = s.forwards();
    while (s.next(a)) {
        forwards += a.kind == paci::op::F ? 1 : 0;
        backwards += a.kind == paci::op::B ? 1 : 0;
    }
    REQUIRE(forwards == 0);
    REQUIRE(s.backwards() == started);
    REQUIRE(backwards > 0);
    REQUIRE_FALSE(s.next(a));
}

TEST_CASE("one_f_one_b_machine::stream: rejects a stage outside the pipeline", "[unit][policy][stream]") {
    const paci::paci_policy<> policy{.stages = 4, .microbatches = 2, .steps = 1};
    REQUIRE_THROWS_WITH(policy.stream(4), "paci::paci: stage (4) must be in [0, 4)");
    REQUIRE_THROWS_AS(policy.stream(-1), paci::config_error);
}
