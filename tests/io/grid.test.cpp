// Unit tests for include/paci/io/grid.hpp: the text grid matches PyTorch's _format_pipeline_order
// (header of rank labels after label-width + 2 spaces, "Step k: " rows with zero-padded k, columns
// left-aligned to the wider of the step label and their longest cell, cells joined by one space).
// Expected grids are written out by hand.

#include <paci/io/grid.hpp>

#include <paci/core/lower.hpp>
#include <paci/policy/one_f_one_b.hpp>

#include "support/catch.hpp"

#include <algorithm>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace {

paci::schedule two_ranks(std::vector<paci::action> r0, std::vector<paci::action> r1) {
    paci::schedule s;
    s.shape = {2, 2, paci::stage_map::loop};
    s.microbatches = 2;
    s.ranks = {std::move(r0), std::move(r1)};
    return s;
}

} // namespace

TEST_CASE("grid: a small 1F1B prints as PyTorch's pipeline order", "[unit][io][grid]") {
    const paci::schedule s = paci::one_f_one_b<>{.stages = 2, .microbatches = 2, .steps = 1}.generate();
    // Label "Step 0" is 6 wide; the widest cell, 0STEP0, is 6 too. Padding keeps trailing spaces.
    CHECK(paci::to_grid(s) == "        Rank 0 Rank 1\n"
                              "Step 0: 0F0    1F0   \n"
                              "Step 1: 0F1    1B0   \n"
                              "Step 2: 0B0    1F1   \n"
                              "Step 3: 0B1    1B1   \n"
                              "Step 4: 0STEP0 1STEP0\n");
}

TEST_CASE("grid: step labels are zero-padded and columns fit their widest cell", "[unit][io][grid]") {
    using paci::op;
    std::vector<paci::action> r0;
    for (int m = 0; m < 10; ++m) r0.push_back({op::F, 0, m});
    r0.push_back({op::SEND_F, 0, 9});
    const paci::schedule s = two_ranks(r0, {{op::RECV_F, 1, 0}, {op::F, 1, 0}, {op::B, 1, 0}});

    SECTION("compute only: communication is left out, a rank that ran out shows blanks") {
        // 10 steps, 0..9: labels "Step 0".."Step 9" are 6 wide, wider than every cell.
        std::string expected = "        Rank 0 Rank 1\n";
        for (int k = 0; k < 10; ++k) {
            const std::string cell = "0F" + std::to_string(k);
            const std::string other = k == 0 ? "1F0" : k == 1 ? "1B0" : "";
            expected += "Step " + std::to_string(k) + ": " + cell + std::string(6 - cell.size(), ' ') + " " + other +
                        std::string(6 - other.size(), ' ') + "\n";
        }
        CHECK(paci::to_grid(s) == expected);
    }
    SECTION("with communication every action takes a step") {
        const std::string grid = paci::to_grid(s, {.communication = true});
        // 11 steps, labels "Step 00".."Step 10" (7 wide); rank 0's widest cell 0SEND_F9 (8) and rank
        // 1's 1RECV_F0 (8) are wider still.
        CHECK(grid.substr(0, grid.find('\n') + 1) == "         Rank 0   Rank 1  \n");
        CHECK(grid.find("Step 00: 0F0      1RECV_F0\n") != std::string::npos);
        CHECK(grid.find("Step 10: 0SEND_F9         \n") != std::string::npos);
        CHECK(std::count(grid.begin(), grid.end(), '\n') == 12);
    }
}

TEST_CASE("grid: edge shapes", "[unit][io][grid]") {
    SECTION("no ranks: the header alone") { CHECK(paci::to_grid(paci::schedule{}) == "        \n"); }
    SECTION("ranks without actions: labels only") {
        const paci::schedule s = two_ranks({}, {});
        CHECK(paci::to_grid(s) == "        Rank 0 Rank 1\n");
    }
    SECTION("a lowered schedule's compute view equals the unlowered grid") {
        const paci::schedule s = paci::one_f_one_b<>{.stages = 3, .microbatches = 4, .steps = 2}.generate();
        CHECK(paci::to_grid(paci::lower(s)) == paci::to_grid(s));
    }
}

TEST_CASE("grid: an overlapped pair takes one step, printed as PyTorch prints it", "[unit][io][grid]") {
    using paci::op;
    // Rank 0: 0F0, the pair (0F1;0B0), 0B1; rank 1: 1F0 1B0 1F1 1B1. Rank 0's column is as wide as
    // the pair's cell, "(0F1;0B0)OVERLAP_F_B" (20); rank 1's as the step label (6).
    const paci::schedule s = two_ranks({{op::F, 0, 0}, paci::overlapped({op::F, 0, 1}), {op::B, 0, 0}, {op::B, 0, 1}},
                                       {{op::F, 1, 0}, {op::B, 1, 0}, {op::F, 1, 1}, {op::B, 1, 1}});
    const std::string expected = "        Rank 0               Rank 1\n"
                                 "Step 0: 0F0                  1F0   \n"
                                 "Step 1: (0F1;0B0)OVERLAP_F_B 1B0   \n"
                                 "Step 2: 0B1                  1F1   \n"
                                 "Step 3:                      1B1   \n";
    CHECK(paci::to_grid(s) == expected);

    SECTION("communication around the pair stays out of the compute view and takes its own steps in the full one") {
        paci::schedule lowered = s;
        auto& r0 = lowered.ranks[0];
        r0.insert(r0.begin() + 1, paci::action{op::RECV_B, 0, 0});
        r0.insert(r0.begin() + 4, paci::action{op::SEND_F, 0, 1});
        CHECK(paci::to_grid(lowered) == expected);
        const std::string full = paci::to_grid(lowered, {.communication = true});
        CHECK(full.find("Step 1: 0RECV_B0             1B0   \n") != std::string::npos);
        CHECK(full.find("Step 2: (0F1;0B0)OVERLAP_F_B 1F1   \n") != std::string::npos);
        CHECK(full.find("Step 3: 0SEND_F1             1B1   \n") != std::string::npos);
    }
}
