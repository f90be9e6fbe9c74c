// Unit tests for include/paci/core/dataflow.hpp: the IR's dependency rule in one place. What each
// action consumes and produces, which SEND/RECV carries a hand-off, when a hand-off crosses ranks under
// the loop and v maps, the local prerequisites, the transitive dependency an overlapped pair must not
// have, the shape of a well-formed pair, and the per-(stage, micro-batch) grid.
//
// The expected values are the rule as action.hpp and dataflow.hpp state it ("F(s, m) needs stage s-1's
// output; B/I(s, m) needs stage s+1's gradient"), written out per case; `depends_on` is checked
// against a transitive closure the test builds from the direct edges alone.

#include <paci/core/action.hpp>
#include <paci/core/dataflow.hpp>
#include <paci/core/shape.hpp>

#include "support/catch.hpp"
#include "support/program_text.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace {

using paci::action;
using paci::flow;
using paci::handoff;
using paci::op;

constexpr handoff activation(int from, int to, int m) { return {flow::activation, from, to, m}; }
constexpr handoff gradient(int from, int to, int m) { return {flow::gradient, from, to, m}; }

} // namespace

TEST_CASE("dataflow: F consumes the previous stage's activation, B and I the next stage's gradient",
          "[unit][core][dataflow]") {
    constexpr int P = 4;
    CHECK(paci::consumes(action{op::F, 2, 5}, P) == activation(1, 2, 5));
    CHECK(paci::consumes(action{op::B, 2, 5}, P) == gradient(3, 2, 5));
    CHECK(paci::consumes(action{op::I, 0, 1}, P) == gradient(1, 0, 1));
    // The ends of the pipeline: stage 0's input and the last stage's loss are no hand-off.
    CHECK_FALSE(paci::consumes(action{op::F, 0, 3}, P).has_value());
    CHECK_FALSE(paci::consumes(action{op::B, 3, 3}, P).has_value());
    CHECK_FALSE(paci::consumes(action{op::I, 3, 3}, P).has_value());
    // W, R and STEP stay on their stage; communication carries, it does not consume.
    for (const op o : {op::W, op::R, op::STEP, op::SEND_F, op::RECV_F, op::SEND_B, op::RECV_B}) {
        CAPTURE(paci::to_string(o));
        CHECK_FALSE(paci::consumes(action{o, 1, 0}, P).has_value());
        CHECK_FALSE(paci::produces(action{o, 1, 0}, P).has_value());
    }
}

TEST_CASE("dataflow: F produces the next stage's activation, B and I the previous stage's gradient",
          "[unit][core][dataflow]") {
    constexpr int P = 4;
    CHECK(paci::produces(action{op::F, 2, 5}, P) == activation(2, 3, 5));
    CHECK(paci::produces(action{op::B, 2, 5}, P) == gradient(2, 1, 5));
    CHECK(paci::produces(action{op::I, 3, 0}, P) == gradient(3, 2, 0));
    CHECK_FALSE(paci::produces(action{op::F, 3, 0}, P).has_value());
    CHECK_FALSE(paci::produces(action{op::B, 0, 0}, P).has_value());
    CHECK_FALSE(paci::produces(action{op::I, 0, 0}, P).has_value());
    CHECK(paci::moves_data(op::F));
    CHECK(paci::moves_data(op::B));
    CHECK(paci::moves_data(op::I));
    CHECK_FALSE(paci::moves_data(op::W));
    CHECK_FALSE(paci::moves_data(op::R));
    CHECK_FALSE(paci::moves_data(op::STEP));
}

TEST_CASE("dataflow: what one stage produces is what the neighbour consumes", "[unit][core][dataflow]") {
    constexpr int P = 5;
    for (int s = 0; s < P; ++s)
        for (const op o : {op::F, op::B, op::I}) {
            CAPTURE(s, paci::to_string(o));
            const action a{o, s, 7};
            if (const auto h = paci::produces(a, P)) {
                // The consumer is the neighbour's action of the same flow.
                const action consumer{o == op::F ? op::F : op::B, h->to, 7};
                CHECK(paci::consumes(consumer, P) == h);
                CHECK(h->to == (o == op::F ? s + 1 : s - 1));
            }
        }
}

TEST_CASE("dataflow: SEND and RECV carry one hand-off each, and each names the other", "[unit][core][dataflow]") {
    CHECK(paci::carries(action{op::SEND_F, 2, 4}) == activation(2, 3, 4));
    CHECK(paci::carries(action{op::RECV_F, 3, 4}) == activation(2, 3, 4));
    CHECK(paci::carries(action{op::SEND_B, 3, 4}) == gradient(3, 2, 4));
    CHECK(paci::carries(action{op::RECV_B, 2, 4}) == gradient(3, 2, 4));
    for (const op o : {op::F, op::B, op::I, op::W, op::R, op::STEP}) CHECK_FALSE(paci::carries(action{o, 1, 1}).has_value());

    const handoff h = activation(2, 3, 4);
    CHECK(h.send() == action{op::SEND_F, 2, 4});
    CHECK(h.recv() == action{op::RECV_F, 3, 4});
    const handoff g = gradient(3, 2, 4);
    CHECK(g.send() == action{op::SEND_B, 3, 4});
    CHECK(g.recv() == action{op::RECV_B, 2, 4});

    CHECK(paci::detail::comm_partner(action{op::SEND_F, 2, 4}) == action{op::RECV_F, 3, 4});
    CHECK(paci::detail::comm_partner(action{op::RECV_B, 2, 4}) == action{op::SEND_B, 3, 4});
    CHECK(paci::detail::comm_peer_stage(action{op::SEND_B, 3, 4}) == 2);
    CHECK(paci::detail::comm_peer_stage(action{op::RECV_F, 3, 4}) == 2);
    CHECK(paci::detail::comm_partner(action{op::F, 1, 1}) == action{op::F, 1, 1});
}

TEST_CASE("dataflow: a hand-off crosses ranks unless both stages share one (v map: R-1 and R)", "[unit][core][dataflow]") {
    const paci::pipeline_shape loop{8, 4, paci::stage_map::loop};
    const paci::pipeline_shape v{8, 4, paci::stage_map::v};
    // loop: stage s on rank s % 4, so every neighbour pair crosses.
    for (int s = 0; s + 1 < 8; ++s) CHECK(activation(s, s + 1, 0).crosses(loop));
    // v: rank r runs stages r and 7 - r; stages 3 and 4 share rank 3, every other pair crosses.
    for (int s = 0; s + 1 < 8; ++s) {
        CAPTURE(s);
        CHECK(activation(s, s + 1, 0).crosses(v) == (s != 3));
        CHECK(gradient(s + 1, s, 0).crosses(v) == (s != 3));
    }
    // One rank: nothing crosses.
    CHECK_FALSE(activation(0, 1, 0).crosses(paci::pipeline_shape{2, 1, paci::stage_map::loop}));
}

TEST_CASE("dataflow: local prerequisites: B, I and R need their forward, W its input gradient", "[unit][core][dataflow]") {
    CHECK(paci::local_prerequisite(action{op::B, 3, 2}) == action{op::F, 3, 2});
    CHECK(paci::local_prerequisite(action{op::I, 3, 2}) == action{op::F, 3, 2});
    CHECK(paci::local_prerequisite(action{op::R, 3, 2}) == action{op::F, 3, 2});
    CHECK(paci::local_prerequisite(action{op::W, 3, 2}) == action{op::I, 3, 2});
    for (const op o : {op::F, op::STEP, op::SEND_F, op::RECV_F, op::SEND_B, op::RECV_B})
        CHECK_FALSE(paci::local_prerequisite(action{o, 3, 2}).has_value());
}

TEST_CASE("dataflow: depends_on is the transitive closure of the direct rule", "[unit][core][dataflow]") {
    // Every compute of 4 stages and 2 micro-batches, split backward and full backward apart (a
    // schedule has one or the other per cell; the closure is taken over each world separately).
    constexpr int P = 4;
    for (const bool split : {false, true}) {
        CAPTURE(split);
        std::vector<action> all;
        for (int s = 0; s < P; ++s)
            for (int m = 0; m < 2; ++m) {
                all.push_back({op::F, s, m});
                all.push_back({op::R, s, m});
                if (split) {
                    all.push_back({op::I, s, m});
                    all.push_back({op::W, s, m});
                } else {
                    all.push_back({op::B, s, m});
                }
            }
        // Direct edges: the hand-off consumed (from its producer: F for activations, the backward of
        // this world for gradients) and the local prerequisite (which also covers the last stage's
        // loss, its own forward's output, and the recompute's input, its forward's).
        const auto direct = [&](const action& a) {
            std::vector<action> out;
            if (const auto h = paci::consumes(a, P))
                out.push_back({h->what == flow::activation ? op::F : (split ? op::I : op::B), h->from, h->microbatch});
            if (const auto l = paci::local_prerequisite(a)) out.push_back(*l);
            return out;
        };
        const auto key = [](const action& a) { return paci::to_string(a); };
        for (const action& later : all) {
            std::set<std::string> reach;
            std::vector<action> todo = direct(later);
            while (!todo.empty()) {
                const action x = todo.back();
                todo.pop_back();
                if (!reach.insert(key(x)).second) continue;
                for (const action& y : direct(x)) todo.push_back(y);
            }
            for (const action& earlier : all) {
                CAPTURE(later, earlier);
                CHECK(paci::depends_on(later, earlier) == (reach.count(key(earlier)) == 1));
            }
        }
    }
}

TEST_CASE("dataflow: a backward depends on every forward of its micro-batch and on none of another", "[unit][core][dataflow]") {
    // DualPipeV's pairs, as PyTorch 2.11 writes them on 8 stages: (0F7;7B3) and (4F4;3B0) are independent.
    CHECK_FALSE(paci::depends_on(action{op::B, 7, 3}, action{op::F, 0, 7}));
    CHECK_FALSE(paci::depends_on(action{op::B, 3, 0}, action{op::F, 4, 4}));
    // Its own forward, a later stage's forward (through the loss), an earlier stage's forward.
    CHECK(paci::depends_on(action{op::B, 3, 2}, action{op::F, 3, 2}));
    CHECK(paci::depends_on(action{op::B, 3, 2}, action{op::F, 4, 2}));
    CHECK(paci::depends_on(action{op::I, 3, 2}, action{op::F, 0, 2}));
    // A forward never depends on a backward; communication depends on nothing here.
    CHECK_FALSE(paci::depends_on(action{op::F, 3, 2}, action{op::B, 4, 2}));
    CHECK_FALSE(paci::depends_on(action{op::SEND_F, 3, 2}, action{op::F, 3, 2}));
}

TEST_CASE("dataflow: overlap_fault names the first problem of a pair and the member to blame", "[unit][core][dataflow]") {
    using paci::detail::pair_problem;
    const auto fault_of = [](std::vector<action> prog, std::size_t p) {
        prog[p].overlap_next = true;
        return paci::detail::overlap_fault(prog, p);
    };
    const auto check = [](paci::detail::pair_fault f, pair_problem expected, std::size_t position) {
        CHECK(f.fault == expected);
        CHECK(f.position == position);
    };
    const auto prog = [](std::string_view text) { return paci_test::program(text); };
    check(fault_of(prog("0F7 7B3"), 0), pair_problem::none, 0);
    check(fault_of(prog("0F7 7I3"), 0), pair_problem::none, 0);
    check(fault_of(prog("0B7 7B3"), 0), pair_problem::not_forward, 0);
    check(fault_of(prog("0SEND_F7 7B3"), 0), pair_problem::communication, 0);
    check(fault_of(prog("7B3 0F7"), 1), pair_problem::last_action, 1);
    check(fault_of(prog("0F7 0RECV_B2"), 0), pair_problem::communication, 1);
    check(fault_of(prog("0F7 7W3"), 0), pair_problem::not_backward, 1);
    check(fault_of(prog("0F7 7F3"), 0), pair_problem::not_backward, 1);
    check(fault_of(prog("0F7 0B7"), 0), pair_problem::dependent, 1);
    check(fault_of(prog("0F3 7B3"), 0), pair_problem::dependent, 1);
    std::vector<action> chained = prog("0F7 7B3 0F6");
    chained[1].overlap_next = true;
    check(fault_of(chained, 0), pair_problem::chained, 1);

    // The sentences name the blamed member's stage and micro-batch, and the pair's forward.
    std::vector<action> p = prog("0F7 0B7");
    p[0].overlap_next = true;
    CHECK(paci::detail::pair_fault_message(paci::detail::overlap_fault(p, 0), p) ==
          "B of stage 0 micro-batch 7 needs the output of 0F7, the forward it is paired with: the two cannot run "
          "concurrently");
}

TEST_CASE("dataflow: stage_grid is a dense stage-major table", "[unit][core][dataflow]") {
    paci::stage_grid<std::int32_t> g(3, 4, -1);
    CHECK(g.stages() == 3);
    CHECK(g.microbatches() == 4);
    CHECK(g.size() == 12);
    CHECK(g.index(0, 0) == 0);
    CHECK(g.index(0, 3) == 3);
    CHECK(g.index(1, 0) == 4);
    CHECK(g.index(2, 3) == 11);
    CHECK(paci::detail::cell_index(2, 3, 4) == 11);
    CHECK(g.contains(2, 3));
    CHECK_FALSE(g.contains(3, 0));
    CHECK_FALSE(g.contains(0, 4));
    CHECK_FALSE(g.contains(-1, 0));
    CHECK_FALSE(g.contains(action{op::F, 0, -1}));
    for (const auto x : g) CHECK(x == -1);
    g(1, 2) = 7;
    g[action{op::B, 2, 0}] = 9;
    CHECK(g[g.index(1, 2)] == 7);
    CHECK(g(2, 0) == 9);
    const std::vector<std::int32_t> cells = std::move(g).release();
    REQUIRE(cells.size() == 12);
    CHECK(cells[6] == 7); // 1 * 4 + 2
    CHECK(cells[8] == 9); // 2 * 4 + 0
    CHECK(g.size() == 0); // NOLINT(bugprone-use-after-move): release() leaves it empty, as documented
    CHECK(g.stages() == 0);

    paci::stage_grid<double> h(2, 2, 0.5);
    h.fill(1.5);
    for (const double x : h) CHECK(x == 1.5);
    // Negative dimensions give an empty grid.
    CHECK(paci::stage_grid<int>(-1, 5).size() == 0);
    CHECK(paci::stage_grid<int>(5, -1).size() == 0);
}

TEST_CASE("dataflow: crossings looks up what handoff::crosses computes", "[unit][core][dataflow]") {
    for (const paci::stage_map map : {paci::stage_map::loop, paci::stage_map::v})
        for (const int R : {1, 2, 3, 4})
            for (const int chunks : {2, 4}) {
                const paci::pipeline_shape shape{R * chunks, R, map};
                CAPTURE(shape);
                const paci::crossings cross(shape);
                for (int s = 0; s + 1 < shape.stages; ++s)
                    for (const handoff h : {activation(s, s + 1, 3), gradient(s + 1, s, 3)}) {
                        CAPTURE(s);
                        CHECK(cross(h) == h.crosses(shape));
                        // And crossing means the two stages' ranks differ.
                        CHECK(cross(h) == (shape.rank_of(s) != shape.rank_of(s + 1)));
                    }
            }
}
