// PyTorch 2.11's action grammar, written down as a fact, and every cell paci's CSV exporter writes
// held to it (issue 9, section 2: "export what PyTorch reads").
//
// Where the grammar comes from: torch/distributed/pipelining/schedules.py in PyTorch 2.11.
//   - `_ComputationType` names the action types: F, I, W, B (full backward), UNSHARD, RESHARD, SEND_F,
//     RECV_F, SEND_B, RECV_B, REDUCE_GRAD, and OVERLAP_F_B (the type of a group of sub-actions).
//   - `_action_regex` with `_Action.from_str` reads a plain cell as stage digits, one of those names
//     but OVERLAP_F_B, then optional micro-batch digits; `_Action.__repr__` writes the same shape.
//   - `_Action.from_str` reads a cell that starts with `(` as a group: the members up to the first
//     `)` split at `;`, each read as a plain cell, then the type name after `)`; `__repr__` writes a
//     group as `(` + members joined by `;` + `)` + type (DualPipeV: `(0F7;7B3)OVERLAP_F_B`).
//   - `_load_csv` reads rows with Python's csv module and each cell with `_Action.from_str`; an empty
//     cell is an idle slot (None). Anything else, `0STEP0` for one, raises.
// `from_str` is looser than this (it strips whitespace and matches the plain regex at the start of the
// cell only); the grammar below is the exact text `__repr__` writes, which `from_str` reads back to
// the same action, so a cell that matches it is read by PyTorch as written. No PyTorch code is copied:
// the matcher is written from the facts above.

#include <paci/io/csv.hpp>

#include <paci/core/lower.hpp>
#include <paci/policy/gpipe.hpp>
#include <paci/policy/interleaved.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/zero_bubble.hpp>

#include "support/catch.hpp"

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace {

using paci::action;
using paci::op;

/// True when `cell` is a cell PyTorch 2.11 writes and reads back unchanged: empty (idle), a plain
/// action, or a group of plain actions with the OVERLAP_F_B type.
bool pytorch_cell(const std::string& cell) {
    static const std::string plain = "[0-9]+(F|I|W|B|UNSHARD|RESHARD|SEND_F|RECV_F|SEND_B|RECV_B|REDUCE_GRAD)[0-9]*";
    static const std::regex grammar("|" + plain + "|\\(" + plain + "(;" + plain + ")*\\)OVERLAP_F_B");
    return std::regex_match(cell, grammar);
}

/// The cells of every line of `text`, split at commas (Python's csv module, no quoting).
std::vector<std::string> cells_of(const std::string& text) {
    std::vector<std::string> cells;
    for (std::size_t pos = 0; pos < text.size();) {
        std::size_t eol = text.find('\n', pos);
        if (eol == std::string::npos) eol = text.size();
        std::string line = text.substr(pos, eol - pos);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        for (std::size_t start = 0;;) {
            const std::size_t comma = line.find(',', start);
            cells.push_back(line.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
        pos = eol + 1;
    }
    return cells;
}

/// The first cell of `text` that PyTorch's grammar refuses, or "" when every cell matches.
std::string first_refused(const std::string& text) {
    for (const std::string& c : cells_of(text))
        if (!pytorch_cell(c)) return c.empty() ? std::string("(empty)") : c;
    return {};
}

std::string fixture(std::string_view name) {
    const std::filesystem::path path = std::filesystem::path(PACI_TEST_SOURCE_DIR) / "io" / "fixtures" / name;
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

} // namespace

TEST_CASE("pytorch grammar: accepts PyTorch's own examples and refuses paci's extensions", "[unit][io][pytorch]") {
    // `_Action.from_str`'s documented examples, and DualPipeV's group.
    for (const char* ok : {"2F0", "1UNSHARD", "3SEND_F1", "0I12", "5W3", "7REDUCE_GRAD", "0RECV_B4", "(0F7;7B3)OVERLAP_F_B", ""})
        CHECK(pytorch_cell(ok));
    // paci's STEP and R are no PyTorch action; a group needs its type; no whitespace or lower case.
    for (const char* bad : {"0STEP0", "0R0", "STEP", "F0", "0f0", "0F0 ", " 0F0", "(0F7;7B3)", "(0F7;7B3)OVERLAP",
                            "(0F7;0STEP0)OVERLAP_F_B", "(0F7;7B3)OVERLAP_F_B,", "0F0;1B0"})
        CHECK_FALSE(pytorch_cell(bad));
}

TEST_CASE("pytorch grammar: every cell of every PyTorch 2.11 file matches the grammar", "[unit][io][pytorch]") {
    const std::string name =
        GENERATE(as<std::string>{}, "DualPipeV_p4_v2_m8.comms.csv", "DualPipeV_p4_v2_m8.compute.csv",
                 "GPipe_p4_v1_m8.compute.csv", "Interleaved1F1B_p4_v2_m8.comms.csv", "Interleaved1F1B_p4_v2_m8.compute.csv",
                 "InterleavedZeroBubble_p4_v2_m8.comms.csv", "InterleavedZeroBubble_p4_v2_m8.compute.csv",
                 "LoopedBFS_p4_v2_m8.comms.csv", "LoopedBFS_p4_v2_m8.compute.csv", "ZBVZeroBubble_p4_v2_m8.comms.csv",
                 "ZBVZeroBubble_p4_v2_m8.compute.csv");
    CAPTURE(name);
    CHECK(first_refused(fixture(name)).empty());
}

TEST_CASE("pytorch grammar: every cell paci exports by default is one PyTorch reads", "[unit][io][pytorch]") {
    // Schedules holding every op paci has: F and B (1F1B, GPipe), I and W (ZB-H1), R (PACI and GPipe
    // with recompute), STEP (all of them), the four SEND/RECV (lowered), and overlapped pairs
    // (PyTorch's DualPipeV, compute-only and with communication, read by paci).
    std::vector<paci::schedule> cases{
        paci::one_f_one_b<>{.stages = 4, .microbatches = 8, .steps = 2}.generate(),
        paci::gpipe<paci::backward_flavour::recompute>{.stages = 3, .microbatches = 4, .steps = 1}.generate(),
        paci::paci_policy<paci::backward_flavour::recompute>{.stages = 4, .microbatches = 2, .steps = 3}.generate(),
        paci::interleaved_one_f_one_b{.ranks = 2, .chunks = 2, .microbatches = 4, .steps = 2}.generate(),
        paci::zb_h1{.stages = 4, .microbatches = 4, .steps = 1}.generate(),
    };
    const std::size_t generated = cases.size();
    for (std::size_t k = 0; k < generated; ++k) cases.push_back(paci::lower(cases[k]));
    cases.push_back(paci::import_csv(fixture("DualPipeV_p4_v2_m8.compute.csv")));
    cases.push_back(paci::import_csv(fixture("DualPipeV_p4_v2_m8.comms.csv")));
    {
        // A lowered pair with an update and a recompute around it, by hand: rank 0 runs stages 0 and 3
        // (V placement, 2 ranks), receives both members' inputs before the pair and sends both
        // outputs after it.
        paci::schedule s;
        s.shape = {4, 2, paci::stage_map::v};
        s.microbatches = 2;
        s.steps = 1;
        s.ranks = {{{op::F, 0, 0}, {op::SEND_F, 0, 0}, {op::RECV_F, 3, 0}, {op::F, 3, 0}, {op::R, 3, 0}, {op::B, 3, 0},
                    {op::RECV_F, 3, 1}, paci::overlapped({op::F, 0, 1}), {op::B, 3, 1}, {op::SEND_F, 0, 1},
                    {op::SEND_B, 3, 0}, {op::SEND_B, 3, 1}, {op::STEP, 3, 0}, {op::RECV_B, 0, 0}, {op::B, 0, 0},
                    {op::RECV_B, 0, 1}, {op::B, 0, 1}, {op::STEP, 0, 0}},
                   {}};
        cases.push_back(s);
    }

    // The cases hold every op and a pair, compute-only and lowered.
    std::set<op> kinds;
    bool pair = false;
    bool lowered_pair = false;
    for (const auto& s : cases)
        for (const auto& prog : s.ranks)
            for (const action& a : prog) {
                kinds.insert(a.kind);
                pair = pair || a.overlap_next;
                lowered_pair = lowered_pair || (a.overlap_next && s.lowered());
            }
    CHECK(kinds.size() == static_cast<std::size_t>(paci::op_count));
    CHECK(pair);
    CHECK(lowered_pair);

    for (const auto& s : cases) {
        CAPTURE(s);
        const std::string text = paci::export_csv(s);
        CHECK(first_refused(text).empty());
        CHECK(first_refused(paci::export_csv(s, {.newline = paci::line_ending::lf})).empty());
        // Writing the pairs as groups leaves no pair without its cell.
        std::size_t flags = 0;
        for (const auto& prog : s.ranks)
            for (const action& a : prog) flags += a.overlap_next ? 1U : 0U;
        std::size_t groups = 0;
        for (const std::string& c : cells_of(text)) groups += c.starts_with("(") ? 1U : 0U;
        CHECK(groups == flags);
        // paci's own cells are no PyTorch actions: the same matcher refuses them (so it can fail).
        if (s.steps > 0) {
            const std::vector<std::string> own = cells_of(paci::export_csv(s, {.updates = paci::csv_updates::step}));
            CHECK(std::find(own.begin(), own.end(), "0STEP0") != own.end());
            CHECK_FALSE(first_refused(paci::export_csv(s, {.updates = paci::csv_updates::step})).empty());
        }
    }
}

TEST_CASE("pytorch grammar: REDUCE_GRAD exports match the grammar too", "[unit][io][pytorch]") {
    for (const paci::schedule& s : {paci::one_f_one_b<>{.stages = 4, .microbatches = 8, .steps = 1}.generate(),
                                    paci::zb_h1{.stages = 4, .microbatches = 4, .steps = 1}.generate(),
                                    paci::interleaved_one_f_one_b{.ranks = 2, .chunks = 2, .microbatches = 4, .steps = 1}.generate()}) {
        CAPTURE(s);
        for (const paci::schedule& t : {s, paci::lower(s)}) {
            const std::string text = paci::export_csv(t, {.updates = paci::csv_updates::reduce_grad});
            CHECK(first_refused(text).empty());
            CHECK(text.find("REDUCE_GRAD") != std::string::npos);
        }
    }
}
