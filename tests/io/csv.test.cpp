// Unit tests for include/paci/io/csv.hpp: PyTorch schedule CSV import and export, byte-exact round
// trips (modern and legacy dialects, idle cells, CRLF/LF, PyTorch-only ops), inference of the shape,
// and every malformed input with the exact line and column of its parse_error.
//
// Expected texts are written by hand from PyTorch's format (Python's csv module: CRLF line endings,
// empty fields for idle slots, `""` for a row holding one empty field) and from the 1F1B rules.

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
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

using Catch::Matchers::ContainsSubstring;

namespace {

using paci::action;
using paci::op;

/// Imports `text` and returns the parse_error it must throw (fails the test if none is thrown).
paci::parse_error parse_failure(std::string_view text, const paci::import_options& options = {}) {
    try {
        static_cast<void>(paci::parse_csv(text, options));
    } catch (const paci::parse_error& e) {
        return e;
    }
    FAIL("parse_csv did not throw for: " << std::string(text));
    return paci::parse_error("unreachable", 0, 0);
}

struct location {
    std::size_t line;
    std::size_t column;
};

void check_fails_at(std::string_view text, location at, std::string_view message,
                    const paci::import_options& options = {}) {
    CAPTURE(std::string(text));
    const paci::parse_error e = parse_failure(text, options);
    CHECK(e.line() == at.line);
    CHECK(e.column() == at.column);
    CHECK_THAT(e.what(), ContainsSubstring(std::string(message)));
    CHECK_THAT(e.what(), ContainsSubstring("at line " + std::to_string(at.line) + ", column " + std::to_string(at.column)));
}

} // namespace

TEST_CASE("csv: a small 1F1B exports as PyTorch writes it", "[unit][io][csv]") {
    // 1F1B-flush, 2 stages, 2 micro-batches, 1 update: stage 0 (cap 2) runs F0 F1 B0 B1 then STEP;
    // stage 1 (cap 1) alternates F0 B0 F1 B1 then STEP. Python's csv module ends lines with CRLF.
    const paci::schedule s = paci::one_f_one_b<>{.stages = 2, .microbatches = 2, .steps = 1}.generate();
    // By default PyTorch's form: the update has no cell.
    CHECK(paci::export_csv(s) == "0F0,0F1,0B0,0B1\r\n"
                                 "1F0,1B0,1F1,1B1\r\n");
    // The one update per stage, after the stage's last backward, is where PyTorch writes REDUCE_GRAD
    // (no micro-batch), as in its own GPipe file.
    CHECK(paci::export_csv(s, {.updates = paci::csv_updates::reduce_grad}) == "0F0,0F1,0B0,0B1,0REDUCE_GRAD\r\n"
                                                                             "1F0,1B0,1F1,1B1,1REDUCE_GRAD\r\n");
    // paci's own cells, asked for.
    const paci::export_options own{.updates = paci::csv_updates::step};
    CHECK(paci::export_csv(s, own) == "0F0,0F1,0B0,0B1,0STEP0\r\n"
                                      "1F0,1B0,1F1,1B1,1STEP0\r\n");
    CHECK(paci::export_csv(s, {.newline = paci::line_ending::lf, .updates = paci::csv_updates::step}) ==
          "0F0,0F1,0B0,0B1,0STEP0\n"
          "1F0,1B0,1F1,1B1,1STEP0\n");
    CHECK(paci::export_csv(s, {.final_newline = false, .updates = paci::csv_updates::step}) ==
          "0F0,0F1,0B0,0B1,0STEP0\r\n"
          "1F0,1B0,1F1,1B1,1STEP0");
}

TEST_CASE("csv: import infers stages, ranks, micro-batches, steps and the map", "[unit][io][csv]") {
    const paci::schedule s = paci::import_csv("0F0,0F1,0B0,0B1,0STEP0\r\n1F0,1B0,1F1,1B1,1STEP0\r\n");
    CHECK(s.shape == paci::pipeline_shape{2, 2, paci::stage_map::loop});
    CHECK(s.microbatches == 2);
    CHECK(s.steps == 1);
    CHECK(s.policy == "csv");
    REQUIRE(s.ranks.size() == 2);
    CHECK(s.ranks[0] == std::vector<action>{{op::F, 0, 0}, {op::F, 0, 1}, {op::B, 0, 0}, {op::B, 0, 1}, {op::STEP, 0, 0}});
    CHECK(s.ranks[1] == std::vector<action>{{op::F, 1, 0}, {op::B, 1, 0}, {op::F, 1, 1}, {op::B, 1, 1}, {op::STEP, 1, 0}});

    SECTION("the same schedule as the policy generates, but for the source name") {
        paci::schedule expected = paci::one_f_one_b<>{.stages = 2, .microbatches = 2, .steps = 1}.generate();
        expected.policy = "csv";
        CHECK(s == expected);
    }
    SECTION("options override the inference and name the source") {
        const paci::schedule t = paci::import_csv("0F0,0B0\r\n1F0,1B0\r\n",
                                                  {.stages = 2, .microbatches = 8, .source = "from pytorch"});
        CHECK(t.microbatches == 8);
        CHECK(t.steps == 0);
        CHECK(t.policy == "from pytorch");
    }
}

TEST_CASE("csv: PyTorch's compute-only 1F1B with idle cells round-trips byte for byte", "[unit][io][csv]") {
    // Schedule1F1B's pipeline order for 2 ranks and 2 micro-batches: rank 0 does its warm-up forward,
    // waits 2 slots, runs F1 B0, waits a slot, runs B1; rank 1 waits a slot, then F B F B.
    const std::string text = "0F0,,,0F1,0B0,,0B1\r\n"
                             ",1F0,1B0,1F1,1B1\r\n";
    const paci::imported_schedule in = paci::parse_csv(text);
    CHECK(in.sched.ranks[0] == std::vector<action>{{op::F, 0, 0}, {op::F, 0, 1}, {op::B, 0, 0}, {op::B, 0, 1}});
    CHECK(in.sched.ranks[1] == std::vector<action>{{op::F, 1, 0}, {op::B, 1, 0}, {op::F, 1, 1}, {op::B, 1, 1}});
    CHECK(in.sched.microbatches == 2);
    CHECK(in.layout.dialect == paci::csv_dialect::modern);
    CHECK(in.layout.newline == paci::line_ending::crlf);
    CHECK(in.layout.final_newline);
    CHECK(in.layout.extras == std::vector<std::vector<paci::csv_cell>>{{{1, ""}, {2, ""}, {5, ""}}, {{0, ""}}});
    CHECK(paci::export_csv(in) == text);
    // Without the layout the idle slots are gone.
    CHECK(paci::export_csv(in.sched) == "0F0,0F1,0B0,0B1\r\n1F0,1B0,1F1,1B1\r\n");
}

TEST_CASE("csv: an imported text prints as PyTorch's grid, idle slots included", "[unit][io][csv]") {
    const paci::imported_schedule in = paci::parse_csv("0F0,,,0F1,0B0,,0B1\r\n,1F0,1B0,1F1,1B1\r\n");
    // 7 steps: labels "Step 0".."Step 6" (6 wide) are wider than every cell.
    const auto row = [](int k, std::string a, std::string b) {
        return "Step " + std::to_string(k) + ": " + a + std::string(6 - a.size(), ' ') + " " + b +
               std::string(6 - b.size(), ' ') + "\n";
    };
    CHECK(paci::to_grid(in) == "        Rank 0 Rank 1\n" + row(0, "0F0", "") + row(1, "", "1F0") + row(2, "", "1B0") +
                                   row(3, "0F1", "1F1") + row(4, "0B0", "1B1") + row(5, "", "") + row(6, "0B1", ""));
    // The schedule alone has no idle slots.
    CHECK(paci::to_grid(in.sched) == "        Rank 0 Rank 1\n" + row(0, "0F0", "1F0") + row(1, "0F1", "1B0") +
                                         row(2, "0B0", "1F1") + row(3, "0B1", "1B1"));
}

TEST_CASE("csv: the legacy dialect (B input backward, BW full backward) is detected and kept", "[unit][io][csv]") {
    // A zero-bubble-like order in the older names: B is the input backward, W the weight backward,
    // BW the full backward.
    const std::string text = "0F0,0F1,0B0,0W0,0BW1\r\n"
                             "1F0,1B0,1F1,1W0,1BW1\r\n";
    const paci::imported_schedule in = paci::parse_csv(text);
    CHECK(in.layout.dialect == paci::csv_dialect::legacy);
    CHECK(in.sched.ranks[0] == std::vector<action>{{op::F, 0, 0}, {op::F, 0, 1}, {op::I, 0, 0}, {op::W, 0, 0}, {op::B, 0, 1}});
    CHECK(in.sched.ranks[1] == std::vector<action>{{op::F, 1, 0}, {op::I, 1, 0}, {op::F, 1, 1}, {op::W, 1, 0}, {op::B, 1, 1}});
    CHECK(paci::export_csv(in) == text);
    CHECK(paci::export_csv(in.sched) == "0F0,0F1,0I0,0W0,0B1\r\n1F0,1I0,1F1,1W0,1B1\r\n");
    CHECK(paci::export_csv(in.sched, {.dialect = paci::csv_dialect::legacy}) == text);

    SECTION("without BW, B and W of one micro-batch read as legacy unless the modern dialect is asked for") {
        const std::string old = "0F0,0B0,0W0\r\n";
        const paci::imported_schedule detected = paci::parse_csv(old);
        CHECK(detected.layout.dialect == paci::csv_dialect::legacy);
        CHECK(detected.sched.ranks[0][1] == action{op::I, 0, 0});
        CHECK(paci::export_csv(detected) == old);
        const paci::imported_schedule forced = paci::parse_csv(old, {.dialect = paci::csv_dialect::modern});
        CHECK(forced.layout.dialect == paci::csv_dialect::modern);
        CHECK(forced.sched.ranks[0][1] == action{op::B, 0, 0});
        CHECK(paci::export_csv(forced) == old);
    }
    SECTION("B and W of different micro-batches, or any I, keep the modern reading") {
        CHECK(paci::parse_csv("0F0,0F1,0B0,0W1\r\n").layout.dialect == paci::csv_dialect::modern);
        CHECK(paci::parse_csv("0F0,0F1,0I0,0W0,0B1,0W1\r\n").layout.dialect == paci::csv_dialect::modern);
    }
}

TEST_CASE("csv: layouts round-trip byte for byte", "[unit][io][csv]") {
    const std::string text = GENERATE(as<std::string>{},
                                      // LF line endings, no final newline
                                      "0F0,0B0\n1F0,1B0",
                                      // LF with a final newline, a trailing idle cell
                                      "0F0,0B0,\n1F0,1B0\n",
                                      // a rank with no actions (empty line) between two
                                      "0F0,0B0\r\n\r\n2F0,2B0\r\n",
                                      // Python's quoted lone empty field: a rank with one idle slot
                                      "0F0,0B0\r\n\"\"\r\n2F0,2B0\r\n",
                                      // only idle cells on a row
                                      "0F0,0B0\r\n,,\r\n2F0,2B0\r\n",
                                      // PyTorch's FSDP and gradient-reduction actions, kept verbatim
                                      "0UNSHARD,0F0,0B0,0REDUCE_GRAD,0RESHARD\r\n1UNSHARD,1F0,1B0,1REDUCE_GRAD,1RESHARD\r\n",
                                      // compute plus communication, recompute and steps
                                      "0F0,0SEND_F0,0RECV_B0,0B0,0STEP0\r\n1RECV_F0,1F0,1R0,1B0,1SEND_B0,1STEP0\r\n");
    CAPTURE(text);
    const paci::imported_schedule in = paci::parse_csv(text);
    CHECK(paci::export_csv(in) == text);
    // Reading the export again gives the same schedule and layout.
    CHECK(paci::parse_csv(paci::export_csv(in)) == in);
}

TEST_CASE("csv: PyTorch-only actions stay out of the schedule", "[unit][io][csv]") {
    const paci::imported_schedule in = paci::parse_csv("0UNSHARD,0F0,0B0,0REDUCE_GRAD,0RESHARD\r\n");
    CHECK(in.sched.ranks[0] == std::vector<action>{{op::F, 0, 0}, {op::B, 0, 0}});
    CHECK(in.layout.extras[0] == std::vector<paci::csv_cell>{{0, "0UNSHARD"}, {3, "0REDUCE_GRAD"}, {4, "0RESHARD"}});
}

TEST_CASE("csv: generated schedules round-trip through export and import", "[unit][io][csv]") {
    std::vector<paci::schedule> cases{
        paci::one_f_one_b<>{.stages = 4, .microbatches = 8, .steps = 2}.generate(),
        paci::paci_policy<paci::backward_flavour::recompute>{.stages = 4, .microbatches = 2, .steps = 3}.generate(),
        paci::gpipe{.stages = 3, .microbatches = 4, .steps = 2}.generate(),
        paci::interleaved_one_f_one_b{.ranks = 2, .chunks = 2, .microbatches = 4, .steps = 2}.generate(),
        paci::zb_h1{.stages = 4, .microbatches = 4, .steps = 1}.generate(),
    };
    const std::size_t n = cases.size();
    for (std::size_t k = 0; k < n; ++k) cases.push_back(paci::lower(cases[k]));
    for (const auto& s : cases) {
        CAPTURE(s);
        // paci's own cells: the very schedule comes back.
        const std::string text = paci::export_csv(s, {.updates = paci::csv_updates::step});
        const paci::imported_schedule in = paci::parse_csv(text, {.source = s.policy});
        CHECK(in.sched == s);
        CHECK(paci::export_csv(in) == text);
        // PyTorch's form: the schedule without its STEP and R actions comes back (given the counts,
        // which the text no longer shows when R held the last micro-batch of a stage).
        paci::schedule pytorch = s;
        pytorch.steps = 0;
        for (auto& prog : pytorch.ranks)
            std::erase_if(prog, [](const action& a) { return a.kind == op::STEP || a.kind == op::R; });
        CHECK(paci::import_csv(paci::export_csv(s), {.stages = s.shape.stages,
                                                     .microbatches = s.microbatches,
                                                     .map = s.shape.map,
                                                     .source = s.policy}) == pytorch);
    }
}

TEST_CASE("csv: the v map is inferred from which stage sits on which row", "[unit][io][csv]") {
    // 4 stages on 2 ranks in a V: rank 0 holds stages 0 and 3, rank 1 holds stages 1 and 2.
    const std::string text = "0F0,3F0,3B0,0B0\r\n1F0,2F0,2B0,1B0\r\n";
    const paci::schedule s = paci::import_csv(text);
    CHECK(s.shape == paci::pipeline_shape{4, 2, paci::stage_map::v});
    // The loop map puts stage 2 on rank 0: the same rows read as loop fail.
    const std::string loop = "0F0,2F0,2B0,0B0\r\n1F0,3F0,3B0,1B0\r\n";
    CHECK(paci::import_csv(loop).shape.map == paci::stage_map::loop);
    check_fails_at(text, {2, 5}, "the loop map puts stage 2 on rank 0, found on rank 1",
                   {.map = paci::stage_map::loop});
}

TEST_CASE("csv: malformed cells fail at their line and column", "[unit][io][csv]") {
    SECTION("unknown op") { check_fails_at("0F0,0X0\r\n", {1, 6}, "unknown op 'X'"); }
    SECTION("trailing garbage in a cell") {
        check_fails_at("0F0,0F1\r\n1F0,1F1x\r\n", {2, 8}, "unexpected trailing characters in '1F1x'");
    }
    SECTION("lowercase op") { check_fails_at("0f0", {1, 2}, "expected an op"); }
    SECTION("missing micro-batch number") { check_fails_at("0F0,0F", {1, 7}, "expected a micro-batch number"); }
    SECTION("missing stage number") { check_fails_at("0F0\r\nF1\r\n", {2, 1}, "expected a stage number"); }
    SECTION("stage out of int16") { check_fails_at("0F0,32768F0", {1, 5}, "stage number out of range"); }
    SECTION("stage at int16's maximum leaves no room for the count") {
        check_fails_at("32767F0", {1, 1}, "stage 32767 is out of range: at most 32767 stages");
    }
    SECTION("micro-batch out of int32") { check_fails_at("0F2147483648", {1, 3}, "micro-batch number out of range"); }
    SECTION("quoted cell") {
        check_fails_at("0F0,\"0F1\"\r\n", {1, 5}, "quoted cells are not supported");
        check_fails_at("0F0,0F\"1\"\r\n", {1, 7}, "quoted cells are not supported");
    }
    SECTION("spaces") {
        check_fails_at("0F0, 0F1\r\n", {1, 5}, "expected a stage number");
        check_fails_at("0F0,0F1 \r\n", {1, 8}, "unexpected trailing characters");
    }
    SECTION("leading zeros") {
        check_fails_at("00F0", {1, 1}, "leading zero in the stage number");
        check_fails_at("0F0,0F01", {1, 7}, "leading zero in the micro-batch number");
    }
    SECTION("control characters and stray carriage returns") {
        check_fails_at("0F0\r1F0\r\n", {1, 4}, "carriage return inside a line");
        check_fails_at("0F0\r", {1, 4}, "carriage return inside a line");
        check_fails_at(std::string_view("0F0,0F\x00" "1", 8), {1, 7}, "control character 0x00");
        check_fails_at("0F0\t", {1, 4}, "control character 0x09");
    }
    SECTION("PyTorch-only ops") {
        check_fails_at("0UNSHARD,0F0", {1, 2}, "PyTorch op UNSHARD has no paci equivalent", {.pytorch_ops = false});
        check_fails_at("0F0,0UNSHARD1", {1, 13}, "UNSHARD takes no micro-batch");
    }
    SECTION("legacy and modern names mixed") {
        check_fails_at("0F0,0I0,0BW1\r\n", {1, 6}, "op 'I' in a legacy-dialect text (it uses BW at line 1, column 9");
        check_fails_at("0F0,0I0\r\n", {1, 6}, "op 'I' does not exist in the legacy dialect",
                       {.dialect = paci::csv_dialect::legacy});
        check_fails_at("0F0,0BW0\r\n", {1, 6}, "op 'BW' is the legacy dialect's full backward",
                       {.dialect = paci::csv_dialect::modern});
    }
    SECTION("numbers out of the given ranges") {
        check_fails_at("0F0,1F0", {1, 5}, "stage 1 is out of range for 1 stages", {.stages = 1});
        check_fails_at("0F0\r\n0F2", {2, 1}, "micro-batch 2 is out of range for 2 micro-batches", {.microbatches = 2});
    }
}

TEST_CASE("csv: malformed structure fails at the cell that shows it", "[unit][io][csv]") {
    SECTION("empty input") { check_fails_at("", {1, 1}, "empty input"); }
    SECTION("no action to count stages from") { check_fails_at("\r\n,\r\n", {1, 1}, "no action to infer the stage count"); }
    SECTION("a stage on two rows") {
        check_fails_at("0F0,1F0\r\n1F1\r\n", {2, 1}, "stage 1 is on rank 0 (line 1) and on rank 1");
    }
    SECTION("unequal STEP counts") {
        check_fails_at("0F0,0B0,0STEP0\r\n1F0,1B0\r\n", {2, 1}, "stage 1 has 0 STEP actions but stage 0 has 1");
        check_fails_at("0F0,0B0\r\n1F0,1B0,1STEP0\r\n", {1, 1}, "stage 0 has 0 STEP actions but stage 1 has 1");
    }
    SECTION("a stage that never appears lacks its STEPs on its own row") {
        check_fails_at("0F0,0STEP0\r\n1F0,1STEP0\r\n", {1, 1}, "stage 2 has 0 STEP actions", {.stages = 4});
    }
    SECTION("mixed line endings") {
        check_fails_at("0F0\r\n1F0\n", {2, 4}, "mixed line endings: this line ends with LF but line 1 with CRLF");
    }
    SECTION("rows that fit no stage map") {
        check_fails_at("0F0,1F0\r\n2F0,3F0\r\n", {1, 5},
                       "no stage map fits the rows: the loop map puts stage 1 on rank 1, found on rank 0; "
                       "the v map puts stage 1 on rank 1, found on rank 0");
    }
    SECTION("stage count not a multiple of the rows: the text is at fault, at its largest stage") {
        check_fails_at("0F0,2F0\r\n1F0\r\n", {1, 5},
                       "stages (3) must be a multiple of the rows (2): stage 2 is the largest in the text");
    }
    SECTION("a given stage count the rows cannot hold: the option is at fault") {
        CHECK_THROWS_MATCHES(paci::import_csv("0F0,1F0\r\n2F0\r\n", {.stages = 3}), paci::config_error,
                             Catch::Matchers::Message("paci::import_csv: stages (3) must be a multiple of ranks (2)"));
    }
    SECTION("bad options") {
        CHECK_THROWS_MATCHES(paci::import_csv("0F0", {.stages = -1}), paci::config_error,
                             Catch::Matchers::Message("paci::import_csv: import_options::stages (-1) must be in [0, 32767]"));
        CHECK_THROWS_AS(paci::import_csv("0F0", {.microbatches = -2}), paci::config_error);
    }
}

TEST_CASE("csv: files round-trip and errors name the path", "[unit][io][csv]") {
    const auto dir = std::filesystem::temp_directory_path();
    const auto path = dir / "paci-csv-test-roundtrip.csv";
    const std::string text = "0F0,,0B0\r\n,1F0,1B0\r\n";
    {
        std::ofstream out(path, std::ios::binary);
        out << text;
    }
    const paci::imported_schedule in = paci::read_csv_file(path);
    CHECK(in.sched.policy == path.string());
    const auto copy = dir / "paci-csv-test-copy.csv";
    paci::write_csv_file(copy, in);
    {
        std::ifstream back(copy, std::ios::binary);
        const std::string bytes{std::istreambuf_iterator<char>(back), std::istreambuf_iterator<char>()};
        CHECK(bytes == text);
    }
    paci::write_csv_file(copy, in.sched, {.newline = paci::line_ending::lf});
    CHECK(paci::read_csv_file(copy).layout.newline == paci::line_ending::lf);

    const auto missing = dir / "paci-csv-test-does-not-exist" / "x.csv";
    CHECK_THROWS_MATCHES(paci::read_csv_file(missing), paci::config_error,
                         Catch::Matchers::Message("paci::read_csv_file: path (" + missing.string() +
                                                  ") cannot be opened for reading"));
    CHECK_THROWS_AS(paci::write_csv_file(missing, in.sched), paci::config_error);

    {
        std::ofstream out(path, std::ios::binary);
        out << "0F0\r\n1X0\r\n";
    }
    try {
        static_cast<void>(paci::read_csv_file(path));
        FAIL("read_csv_file accepted an unknown op");
    } catch (const paci::parse_error& e) {
        CHECK(e.line() == 2);
        CHECK(e.column() == 2);
        CHECK(std::string(e.what()) == "paci::read_csv_file: " + path.string() +
                                           ": unknown op 'X', expected one of F, B, I, W, R, STEP, SEND_F, RECV_F, "
                                           "SEND_B, RECV_B in '1X0' at line 2, column 2");
    }
    std::filesystem::remove(path);
    std::filesystem::remove(copy);
}

// ---------------------------------------------------------------------------------------------------
// Hostile input (issue 8): a few bytes never ask for gigabytes, invisible characters are named, the
// dialect is read from the file, and a missing row is named as such. The fixtures are PyTorch 2.11's
// own compute-only schedules (tests/io/fixtures/README.md); the variants are derived from them here.
// ---------------------------------------------------------------------------------------------------

namespace {

std::string fixture(std::string_view name) {
    const std::filesystem::path path = std::filesystem::path(PACI_TEST_SOURCE_DIR) / "io" / "fixtures" / name;
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// `text` without its (0-based) lines `rows`, line endings kept.
std::string without_rows(const std::string& text, std::vector<std::size_t> rows) {
    std::string out;
    std::size_t row = 0;
    for (std::size_t pos = 0; pos < text.size(); ++row) {
        const std::size_t eol = text.find('\n', pos);
        const std::size_t end = eol == std::string::npos ? text.size() : eol + 1;
        if (std::find(rows.begin(), rows.end(), row) == rows.end()) out += text.substr(pos, end - pos);
        pos = end;
    }
    return out;
}

/// The legacy dialect's names for a modern text without full backwards: `I` (input backward) becomes `B`.
std::string to_legacy_names(std::string text) {
    for (std::size_t k = 1; k + 1 < text.size(); ++k)
        if (text[k] == 'I' && text[k - 1] >= '0' && text[k - 1] <= '9') text[k] = 'B';
    return text;
}

} // namespace

TEST_CASE("csv: PyTorch 2.11's own compute-only files import and round-trip byte for byte", "[unit][io][csv]") {
    const std::string name = GENERATE(as<std::string>{}, "GPipe_p4_v1_m8.compute.csv", "Interleaved1F1B_p4_v2_m8.compute.csv",
                                      "InterleavedZeroBubble_p4_v2_m8.compute.csv", "ZBVZeroBubble_p4_v2_m8.compute.csv");
    CAPTURE(name);
    const std::string text = fixture(name);
    const paci::imported_schedule in = paci::parse_csv(text);
    CHECK(in.layout.dialect == paci::csv_dialect::modern);
    CHECK(in.sched.microbatches == 8);
    CHECK(in.sched.shape.ranks == 4);
    CHECK(in.sched.shape.map == (name.starts_with("ZBV") ? paci::stage_map::v : paci::stage_map::loop));
    CHECK(paci::export_csv(in) == text);
}

TEST_CASE("csv: stage and micro-batch indices are limited by the text's own size", "[unit][io][csv]") {
    SECTION("23 bytes asking for 10^8 micro-batches") {
        check_fails_at("0F100000000,0B100000000", {1, 1},
                       "micro-batch 100000000 is out of range for a text of 2 actions: 1 stage x 100000001 "
                       "micro-batches need at least 100000001 (every stage runs every micro-batch)");
    }
    SECTION("one action asking for 2^31 - 1 micro-batches") {
        check_fails_at("0F2147483646", {1, 1}, "micro-batch 2147483646 is out of range for a text of 1 action");
    }
    SECTION("one action asking for 32767 stages") {
        check_fails_at("0F0,32766F0", {1, 5}, "stage 32766 is out of range for a text of 2 actions: 32767 stages x 1 "
                                              "micro-batch need at least 32767");
    }
    SECTION("the product counts: 6 stages x 6 micro-batches from 2 cells") {
        check_fails_at("5F0,0F5", {1, 5}, "micro-batch 5 is out of range for a text of 2 actions");
    }
    SECTION("a STEP's index is an update ordinal, not a micro-batch") {
        CHECK(paci::import_csv("0F0,0B0,0STEP0,0F1,0B1,0STEP1\r\n").microbatches == 2);
    }
    SECTION("given counts are the caller's, not the text's") {
        CHECK(paci::import_csv("0F0,0B0", {.microbatches = 1000}).microbatches == 1000);
    }
}

TEST_CASE("csv: a UTF-8 byte-order mark is skipped and written back; other non-ASCII is named", "[unit][io][csv]") {
    const std::string bom = "\xEF\xBB\xBF";
    SECTION("PyTorch's GPipe file saved with a byte-order mark") {
        const std::string plain = fixture("GPipe_p4_v1_m8.compute.csv");
        const paci::imported_schedule in = paci::parse_csv(bom + plain);
        CHECK(in.layout.byte_order_mark);
        CHECK(in.sched == paci::import_csv(plain));
        CHECK(paci::export_csv(in) == bom + plain);
        CHECK(paci::export_csv(in.sched).starts_with("0F0,"));
        CHECK_FALSE(paci::parse_csv(plain).layout.byte_order_mark);
    }
    SECTION("columns count from the first character after the mark") {
        check_fails_at(bom + "0F0,0X0\r\n", {1, 6}, "unknown op 'X'");
    }
    SECTION("a mark anywhere else is named U+FEFF") {
        check_fails_at("0F0," + bom + "0B0\r\n", {1, 5},
                       "character U+FEFF (a byte-order mark, allowed only at the start of the text) in a cell");
        check_fails_at(bom + bom + "0F0\r\n", {1, 1}, "character U+FEFF");
        check_fails_at("0F0\r\n" + bom + "1F0\r\n", {2, 1}, "character U+FEFF");
    }
    SECTION("other characters and bytes") {
        check_fails_at("0F0,0F\xC3\xA9", {1, 7}, "character U+00E9 in a cell (cells are ASCII action tokens)");
        check_fails_at("0F0,0F\xF0\x9F\x98\x80", {1, 7}, "character U+1F600 in a cell");
        check_fails_at("0F0,0F\xFF", {1, 7}, "byte 0xff is not UTF-8");
        check_fails_at("\xEF\xBB", {1, 1}, "byte 0xef is not UTF-8"); // a truncated mark
    }
}

TEST_CASE("csv: a legacy-dialect zero-bubble file (B and W, no BW) is detected from its content", "[unit][io][csv]") {
    const std::string name = GENERATE(as<std::string>{}, "ZBVZeroBubble_p4_v2_m8.compute.csv",
                                      "InterleavedZeroBubble_p4_v2_m8.compute.csv");
    CAPTURE(name);
    const std::string modern = fixture(name);
    const std::string legacy = to_legacy_names(modern);
    REQUIRE(legacy.find('I') == std::string::npos);
    const paci::imported_schedule in = paci::parse_csv(legacy);
    CHECK(in.layout.dialect == paci::csv_dialect::legacy);
    CHECK(in.sched == paci::import_csv(modern)); // B read as the input backward I, as PyTorch meant it
    CHECK(paci::export_csv(in) == legacy);
    paci::imported_schedule in_modern_names = in;
    in_modern_names.layout.dialect = paci::csv_dialect::modern;
    CHECK(paci::export_csv(in_modern_names) == modern);
    // The override stays: forced modern, B is the full backward.
    const paci::schedule forced = paci::import_csv(legacy, {.dialect = paci::csv_dialect::modern});
    CHECK(forced.ranks[0] != in.sched.ranks[0]);
}

TEST_CASE("csv: a missing rank row is named as such", "[unit][io][csv]") {
    SECTION("GPipe without rank 2's row: loop map") {
        check_fails_at(without_rows(fixture("GPipe_p4_v1_m8.compute.csv"), {2}), {3, 1},
                       "a row is missing: no row for rank 2 (the text has 3 rows; its 4 stages fit 4 ranks with the "
                       "loop map)");
    }
    SECTION("interleaved 1F1B without rank 1's row: loop map, two stages per rank") {
        check_fails_at(without_rows(fixture("Interleaved1F1B_p4_v2_m8.compute.csv"), {1}), {2, 1},
                       "a row is missing: no row for rank 1 (the text has 3 rows; its 8 stages fit 4 ranks with the "
                       "loop map)");
    }
    SECTION("ZB-V without rank 1's row: v map") {
        check_fails_at(without_rows(fixture("ZBVZeroBubble_p4_v2_m8.compute.csv"), {1}), {2, 1},
                       "a row is missing: no row for rank 1 (the text has 3 rows; its 8 stages fit 4 ranks with the "
                       "v map)");
    }
    SECTION("two rows missing") {
        check_fails_at("0F0,0B0\r\n3F0,3B0\r\n4F0,4B0\r\n", {2, 1},
                       "rows are missing: no rows for ranks 1 and 2 (the text has 3 rows; its 5 stages fit 5 ranks");
    }
    SECTION("the file is read with its path, as paci-plan reads it") {
        const auto path = std::filesystem::temp_directory_path() / "paci-csv-test-missing-row.csv";
        {
            std::ofstream out(path, std::ios::binary);
            out << without_rows(fixture("GPipe_p4_v1_m8.compute.csv"), {2});
        }
        CHECK_THROWS_MATCHES(paci::read_csv_file(path), paci::parse_error,
                             Catch::Matchers::Message("paci::read_csv_file: " + path.string() +
                                                      ": a row is missing: no row for rank 2 (the text has 3 rows; its "
                                                      "4 stages fit 4 ranks with the loop map) at line 3, column 1"));
        std::filesystem::remove(path);
    }
}

// ---------------------------------------------------------------------------------------------------
// Issue 9: overlapped pairs (`(0F7;7B3)OVERLAP_F_B`, what PyTorch's DualPipeV writes), every PyTorch
// 2.11 file in tests/io/fixtures/ byte for byte, and the export PyTorch reads (no STEP cells).
// ---------------------------------------------------------------------------------------------------

namespace {

/// Every fixture PyTorch 2.11 wrote (tests/io/fixtures/README.md lists them).
const std::vector<std::string>& pytorch_fixtures() {
    static const std::vector<std::string> names{
        "DualPipeV_p4_v2_m8.comms.csv",         "DualPipeV_p4_v2_m8.compute.csv",
        "GPipe_p4_v1_m8.compute.csv",           "Interleaved1F1B_p4_v2_m8.comms.csv",
        "Interleaved1F1B_p4_v2_m8.compute.csv", "InterleavedZeroBubble_p4_v2_m8.comms.csv",
        "InterleavedZeroBubble_p4_v2_m8.compute.csv", "LoopedBFS_p4_v2_m8.comms.csv",
        "LoopedBFS_p4_v2_m8.compute.csv",       "ZBVZeroBubble_p4_v2_m8.comms.csv",
        "ZBVZeroBubble_p4_v2_m8.compute.csv"};
    return names;
}

/// The cells of each line of `text` (CRLF or LF), split at commas: the text's own cells, as
/// PyTorch's `_load_csv` reads them with Python's csv module (no quoting in these files).
std::vector<std::vector<std::string>> cells_of(const std::string& text) {
    std::vector<std::vector<std::string>> rows;
    for (std::size_t pos = 0; pos < text.size();) {
        std::size_t eol = text.find('\n', pos);
        if (eol == std::string::npos) eol = text.size();
        std::string line = text.substr(pos, eol - pos);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        auto& row = rows.emplace_back();
        for (std::size_t start = 0;;) {
            const std::size_t comma = line.find(',', start);
            row.push_back(line.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
        pos = eol + 1;
    }
    return rows;
}

/// Joins rows of cells back into CRLF text.
std::string join_cells(const std::vector<std::vector<std::string>>& rows) {
    std::string out;
    for (const auto& row : rows) {
        for (std::size_t k = 0; k < row.size(); ++k) out += (k ? "," : "") + row[k];
        out += "\r\n";
    }
    return out;
}

/// `text` with every cell for which `drop(cell)` holds removed, and every cell `edit` rewrites.
template <class Drop, class Edit>
std::string rewrite_cells(const std::string& text, Drop drop, Edit edit) {
    auto rows = cells_of(text);
    for (auto& row : rows) {
        std::erase_if(row, drop);
        for (auto& c : row) c = edit(c);
    }
    return join_cells(rows);
}

bool ends_with_name(const std::string& cell, std::string_view name) {
    return cell.size() > name.size() && cell.ends_with(name) && cell[cell.size() - name.size() - 1] >= '0' &&
           cell[cell.size() - name.size() - 1] <= '9';
}

std::size_t count_substrings(const std::string& text, std::string_view what) {
    std::size_t n = 0;
    for (std::size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + what.size())) ++n;
    return n;
}

} // namespace

TEST_CASE("csv: the fixture list is the fixture folder", "[unit][io][csv]") {
    std::vector<std::string> found;
    for (const auto& entry :
         std::filesystem::directory_iterator(std::filesystem::path(PACI_TEST_SOURCE_DIR) / "io" / "fixtures"))
        if (entry.path().extension() == ".csv") found.push_back(entry.path().filename().string());
    std::sort(found.begin(), found.end());
    CHECK(found == pytorch_fixtures());
}

TEST_CASE("csv: every PyTorch 2.11 file imports and round-trips byte for byte", "[unit][io][csv]") {
    const std::string name = GENERATE(from_range(pytorch_fixtures()));
    CAPTURE(name);
    const std::string text = fixture(name);
    const paci::imported_schedule in = paci::parse_csv(text);
    CHECK(paci::export_csv(in) == text);
    CHECK(paci::parse_csv(paci::export_csv(in)) == in);
    // The README's shapes: 4 ranks, 8 micro-batches, 2 stages per rank (GPipe 1); the V placement for
    // ZBVZeroBubble and DualPipeV.
    const bool v_shape = name.starts_with("ZBV") || name.starts_with("DualPipeV");
    CHECK(in.sched.shape == paci::pipeline_shape{name.starts_with("GPipe") ? 4 : 8, 4,
                                                 v_shape ? paci::stage_map::v : paci::stage_map::loop});
    CHECK(in.sched.microbatches == 8);
    CHECK(in.layout.dialect == paci::csv_dialect::modern);
    CHECK(in.sched.lowered() == name.ends_with(".comms.csv"));
    // Each stage runs every micro-batch's forward once and its backward once (B, or I and W), pairs
    // counting both their members: F = B + I = stages x micro-batches, W = I.
    const auto count = [&](op k) {
        std::size_t n = 0;
        for (const auto& prog : in.sched.ranks) n += static_cast<std::size_t>(std::count_if(prog.begin(), prog.end(), [&](const action& a) { return a.kind == k; }));
        return n;
    };
    const auto pairs_total = static_cast<std::size_t>(in.sched.shape.stages * 8);
    CHECK(count(op::F) == pairs_total);
    CHECK(count(op::B) + count(op::I) == pairs_total);
    CHECK(count(op::W) == count(op::I));
    // One pair flag per OVERLAP_F_B cell of the text.
    std::size_t flags = 0;
    for (const auto& prog : in.sched.ranks)
        flags += static_cast<std::size_t>(std::count_if(prog.begin(), prog.end(), [](const action& a) { return a.overlap_next; }));
    CHECK(flags == count_substrings(text, "OVERLAP_F_B"));
    // The grid shows the text's own cells, a pair as one, as PyTorch's _format_pipeline_order does.
    CHECK(paci::to_grid(in) == paci::detail::format_grid(cells_of(text)));
    // Without the layout: the text less its idle slots and UNSHARD/RESHARD/REDUCE_GRAD cells.
    const std::string bare = rewrite_cells(
        text,
        [](const std::string& c) {
            return c.empty() || ends_with_name(c, "UNSHARD") || ends_with_name(c, "RESHARD") || ends_with_name(c, "REDUCE_GRAD");
        },
        [](const std::string& c) { return c; });
    CHECK(paci::export_csv(in.sched) == bare);
}

TEST_CASE("csv: DualPipeV's overlapped pairs become a forward with overlap_next and the backward after it",
          "[unit][io][csv]") {
    const std::string text = fixture("DualPipeV_p4_v2_m8.compute.csv");
    const paci::imported_schedule in = paci::parse_csv(text);
    // Rank 0's cells 0..16 are single actions (0F0..0F6, 7F0, 7I0, 7W0, ..., 7F3); cell 17 is
    // (0F7;7B3)OVERLAP_F_B, cell 18 (7F4;0B0)OVERLAP_F_B, cell 19 7B4.
    const auto& r0 = in.sched.ranks[0];
    REQUIRE(r0.size() > 21);
    CHECK(r0[16] == action{op::F, 7, 3});
    CHECK(r0[17] == paci::overlapped(action{op::F, 0, 7}));
    CHECK(r0[18] == action{op::B, 7, 3});
    CHECK(r0[19] == paci::overlapped(action{op::F, 7, 4}));
    CHECK(r0[20] == action{op::B, 0, 0});
    CHECK(r0[21] == action{op::B, 7, 4});
    CHECK_FALSE(r0[18].overlap_next);
    // The grid's step 17 shows the pair as one cell (rank 0's column is as wide as that cell).
    CHECK(paci::to_grid(in).find("\nStep 17: (0F7;7B3)OVERLAP_F_B ") != std::string::npos);
    CHECK(paci::to_grid(in.sched).find("\nStep 17: (0F7;7B3)OVERLAP_F_B ") != std::string::npos);
}

TEST_CASE("csv: a pair is one cell among idle slots and PyTorch-only cells", "[unit][io][csv]") {
    // The V placement on 2 ranks: rank 0 holds stages 0 and 3, rank 1 stages 1 and 2.
    const std::string text = "0F0,,(0F1;3B0)OVERLAP_F_B,0UNSHARD,,3B1,0REDUCE_GRAD\r\n"
                             "1F0,2F0,(2F1;1B0)OVERLAP_F_B,,1B1\r\n";
    const paci::imported_schedule in = paci::parse_csv(text);
    CHECK(in.sched.shape == paci::pipeline_shape{4, 2, paci::stage_map::v});
    CHECK(in.sched.ranks[0] ==
          std::vector<action>{{op::F, 0, 0}, paci::overlapped({op::F, 0, 1}), {op::B, 3, 0}, {op::B, 3, 1}});
    CHECK(in.sched.ranks[1] ==
          std::vector<action>{{op::F, 1, 0}, {op::F, 2, 0}, paci::overlapped({op::F, 2, 1}), {op::B, 1, 0}, {op::B, 1, 1}});
    // Columns count the pair once.
    CHECK(in.layout.extras[0] == std::vector<paci::csv_cell>{{1, ""}, {3, "0UNSHARD"}, {4, ""}, {6, "0REDUCE_GRAD"}});
    CHECK(in.layout.extras[1] == std::vector<paci::csv_cell>{{3, ""}});
    CHECK(paci::export_csv(in) == text);
    CHECK(paci::export_csv(in.sched) == "0F0,(0F1;3B0)OVERLAP_F_B,3B1\r\n1F0,2F0,(2F1;1B0)OVERLAP_F_B,1B1\r\n");
    // Step k of the grid is cell k of each row; the pair's column is 20 wide.
    const std::string pair_row = "Step 2: (0F1;3B0)OVERLAP_F_B (2F1;1B0)OVERLAP_F_B\n";
    CHECK(paci::to_grid(in).find(pair_row) != std::string::npos);
    CHECK(paci::to_grid(in).find("\nStep 3: 0UNSHARD             " + std::string(20, ' ') + "\n") != std::string::npos);

    SECTION("an edited pair flag is written as the actions now stand, around the layout's cells") {
        // Rank 1's idle slot stays at column 3; the two former members take columns 2 and 4.
        paci::imported_schedule edited = in;
        edited.sched.ranks[1][2].overlap_next = false;
        CHECK(paci::export_csv(edited) == "0F0,,(0F1;3B0)OVERLAP_F_B,0UNSHARD,,3B1,0REDUCE_GRAD\r\n"
                                          "1F0,2F0,2F1,,1B0,1B1\r\n");
    }
}

TEST_CASE("csv: a text with a pair reads in the modern dialect", "[unit][io][csv]") {
    // B and W of one micro-batch and no I would read as legacy; the pair is modern evidence, like I.
    const std::string text = "0F0,0F1,0B0,0W0,(0F2;0B1)OVERLAP_F_B,0W1\r\n";
    const paci::imported_schedule in = paci::parse_csv(text);
    CHECK(in.layout.dialect == paci::csv_dialect::modern);
    CHECK(in.sched.ranks[0][2] == action{op::B, 0, 0});
    CHECK(in.sched.ranks[0][5] == action{op::B, 0, 1});
    CHECK(paci::export_csv(in) == text);
    // Without the pair the same order reads as legacy.
    CHECK(paci::parse_csv("0F0,0F1,0B0,0W0,0F2,0B1,0W1\r\n").layout.dialect == paci::csv_dialect::legacy);
}

TEST_CASE("csv: malformed overlapped pairs fail at their line and column", "[unit][io][csv]") {
    // Each pair is the second cell, which starts at column 5.
    SECTION("missing ')'") { check_fails_at("0F0,(0F1;1B0OVERLAP_F_B", {1, 24}, "missing ')' closing the overlapped pair"); }
    SECTION("empty pair") { check_fails_at("0F0,()OVERLAP_F_B", {1, 6}, "empty overlapped pair"); }
    SECTION("one member") { check_fails_at("0F0,(0F1)OVERLAP_F_B", {1, 6}, "overlapped pair with one member"); }
    SECTION("more than two members") {
        check_fails_at("0F0,(0F1;1B0;1F2)OVERLAP_F_B", {1, 14}, "overlapped pair with more than two members");
    }
    SECTION("members not a forward then a backward B or I") {
        check_fails_at("0F0,(1B0;0F1)OVERLAP_F_B", {1, 7},
                       "the first member of an overlapped pair must be a forward F, found 1B0");
        check_fails_at("0F0,(0F1;1W0)OVERLAP_F_B", {1, 11},
                       "the second member of an overlapped pair must be a backward B or I, found 1W0");
        check_fails_at("0F0,(0F1;1F0)OVERLAP_F_B", {1, 11}, "must be a backward B or I, found 1F0");
        check_fails_at("0F0,(0F1;1STEP0)OVERLAP_F_B", {1, 11}, "must be a backward B or I, found 1STEP0");
        check_fails_at("0F0,(0R1;1B0)OVERLAP_F_B", {1, 7}, "must be a forward F, found 0R1");
        check_fails_at("0F0,(;1B0)OVERLAP_F_B", {1, 6}, "must be a forward F, found nothing");
        check_fails_at("0F0,(0F1;)OVERLAP_F_B", {1, 10}, "must be a backward B or I, found nothing");
    }
    SECTION("a member with trailing text, a space or a leading zero") {
        check_fails_at("0F0,(0F1x;1B0)OVERLAP_F_B", {1, 9}, "unexpected trailing characters in '0F1x'");
        check_fails_at("0F0,(0F1;1B0 )OVERLAP_F_B", {1, 13}, "unexpected trailing characters in '1B0 '");
        check_fails_at("0F0,(0F1; 1B0)OVERLAP_F_B", {1, 10}, "expected a stage number");
        check_fails_at("0F0,(0F01;1B0)OVERLAP_F_B", {1, 8}, "leading zero in the micro-batch number");
        check_fails_at("0F0,(0F;1B0)OVERLAP_F_B", {1, 8}, "expected a micro-batch number");
    }
    SECTION("a member that is communication or a PyTorch-only op") {
        check_fails_at("0F0,(0SEND_F0;1B0)OVERLAP_F_B", {1, 7}, "must be a forward F, found the communication 0SEND_F0");
        check_fails_at("0F0,(0F1;1RECV_B0)OVERLAP_F_B", {1, 11}, "found the communication 1RECV_B0");
        check_fails_at("0F0,(0F1;1UNSHARD)OVERLAP_F_B", {1, 11}, "must be a backward B or I, found PyTorch's UNSHARD");
        check_fails_at("0F0,(0REDUCE_GRAD;1B0)OVERLAP_F_B", {1, 7}, "found PyTorch's REDUCE_GRAD");
    }
    SECTION("nested parentheses") {
        check_fails_at("0F0,((0F1;1B0)OVERLAP_F_B;1B1)OVERLAP_F_B", {1, 6}, "nested parentheses in an overlapped pair");
        check_fails_at("0F0,(0F1;(1B0))OVERLAP_F_B", {1, 10}, "nested parentheses");
    }
    SECTION("a missing or misspelt OVERLAP_F_B") {
        check_fails_at("0F0,(0F1;1B0)", {1, 14}, "expected OVERLAP_F_B after the overlapped pair's ')'");
        check_fails_at("0F0,(0F1;1B0)OVERLAP_FB", {1, 14}, "unknown group type 'OVERLAP_FB', expected OVERLAP_F_B");
        check_fails_at("0F0,(0F1;1B0)overlap_f_b", {1, 14}, "unknown group type 'overlap_f_b'");
        check_fails_at("0F0,(0F1;1B0)F", {1, 14}, "unknown group type 'F'");
        check_fails_at("0F0,(0F1;1B0)OVERLAP_F_B)", {1, 14}, "unknown group type 'OVERLAP_F_B)'");
        check_fails_at("0F0,(0F1;1B0) OVERLAP_F_B", {1, 14}, "unknown group type ' OVERLAP_F_B'");
    }
    SECTION("no opening parenthesis: a plain cell with trailing text") {
        check_fails_at("0F0,0F1;1B0)OVERLAP_F_B", {1, 8}, "unexpected trailing characters");
    }
    SECTION("members on stages of another rank") {
        check_fails_at("0F0,0F1\r\n1F0,(1F1;0B0)OVERLAP_F_B\r\n", {2, 10},
                       "stage 0 is on rank 0 (line 1) and on rank 1: a stage runs on one rank (both members of an "
                       "overlapped pair run on the rank of their cell's row)");
        check_fails_at("0F0,0B0\r\n1F0,(0F1;1B0)OVERLAP_F_B\r\n", {2, 6}, "stage 0 is on rank 0 (line 1) and on rank 1");
    }
    SECTION("pairs and the legacy dialect") {
        check_fails_at("0F0,(0F1;1B0)OVERLAP_F_B", {1, 5}, "overlapped pairs (OVERLAP_F_B) do not exist in the legacy dialect",
                       {.dialect = paci::csv_dialect::legacy});
        check_fails_at("0F0,0BW0,(0F1;1B0)OVERLAP_F_B", {1, 10},
                       "overlapped pair (OVERLAP_F_B) in a legacy-dialect text (it uses BW at line 1, column 5");
        check_fails_at("0F0,(0F1;1BW0)OVERLAP_F_B", {1, 11}, "found the legacy dialect's BW");
    }
    SECTION("the size bound counts both members") {
        check_fails_at("(0F3;0B0)OVERLAP_F_B", {1, 2}, "micro-batch 3 is out of range for a text of 2 actions");
    }
}

TEST_CASE("csv: export writes pairs in PyTorch's group form and refuses ill-formed ones", "[unit][io][csv]") {
    paci::schedule s;
    s.shape = {4, 2, paci::stage_map::v};
    s.microbatches = 2;
    s.ranks = {{{op::F, 0, 0}, paci::overlapped({op::F, 0, 1}), {op::I, 3, 0}, {op::W, 3, 0}},
               {{op::F, 1, 0}, {op::F, 2, 0}, paci::overlapped({op::F, 2, 1}), {op::B, 1, 0}}};
    CHECK(paci::export_csv(s) == "0F0,(0F1;3I0)OVERLAP_F_B,3W0\r\n1F0,2F0,(2F1;1B0)OVERLAP_F_B\r\n");
    CHECK(paci::import_csv(paci::export_csv(s)) == [&] {
        paci::schedule t = s;
        t.policy = "csv";
        return t;
    }());
    SECTION("the legacy dialect has no pairs") {
        CHECK_THROWS_MATCHES(paci::export_csv(s, {.dialect = paci::csv_dialect::legacy}), paci::config_error,
                             Catch::Matchers::Message("paci::export_csv: dialect (legacy) cannot write the overlapped pair "
                                                      "at rank 0, position 1: OVERLAP_F_B exists only in the modern dialect"));
    }
    SECTION("a flag that opens no pair") {
        paci::schedule bad = s;
        bad.ranks[0][2].overlap_next = true; // on 3I0, the pair's backward, followed by 3W0
        CHECK_THROWS_MATCHES(paci::export_csv(bad), paci::config_error,
                             Catch::Matchers::Message("paci::export_csv: overlapped pair at rank 0, position 2 (3I0 then "
                                                      "3W0) must be a forward F followed by a backward B or I "
                                                      "(action::overlap_next)"));
        bad = s;
        bad.ranks[1][3].overlap_next = true; // the last action of rank 1, the pair's backward
        CHECK_THROWS_WITH(paci::export_csv(bad), ContainsSubstring("position 3 (1B0 ending the program)"));
        bad = s;
        bad.ranks[1][0].overlap_next = true; // 1F0 then 2F0
        CHECK_THROWS_WITH(paci::export_csv(bad), ContainsSubstring("position 0 (1F0 then 2F0)"));
        bad = s;
        bad.ranks[0][0].overlap_next = true; // 0F0 followed by a forward that opens a pair itself
        CHECK_THROWS_WITH(paci::export_csv(bad), ContainsSubstring("(0F0 then 0F1) must be a forward F followed by"));
        // The imported overload checks edited flags too.
        paci::imported_schedule in = paci::parse_csv(paci::export_csv(s));
        in.sched.ranks[1][3].overlap_next = true;
        CHECK_THROWS_AS(paci::export_csv(in), paci::config_error);
    }
}

TEST_CASE("csv: updates are written as PyTorch's REDUCE_GRAD only where that is faithful", "[unit][io][csv]") {
    const paci::export_options reduce{.updates = paci::csv_updates::reduce_grad};
    SECTION("PyTorch's own files, their REDUCE_GRAD read as paci's one update, are written back byte for byte") {
        // GPipe writes REDUCE_GRAD in its compute-only file, every schedule in its comms files: each
        // stage's, right after the stage's last backward. Read as one STEP per stage (and without the
        // UNSHARD/RESHARD cells paci has no op for), the REDUCE_GRAD export is PyTorch's text again.
        const std::string name = GENERATE(as<std::string>{}, "GPipe_p4_v1_m8.compute.csv", "DualPipeV_p4_v2_m8.comms.csv",
                                          "Interleaved1F1B_p4_v2_m8.comms.csv", "InterleavedZeroBubble_p4_v2_m8.comms.csv",
                                          "LoopedBFS_p4_v2_m8.comms.csv", "ZBVZeroBubble_p4_v2_m8.comms.csv");
        CAPTURE(name);
        const auto is_fsdp = [](const std::string& c) {
            return c.empty() || ends_with_name(c, "UNSHARD") || ends_with_name(c, "RESHARD");
        };
        const std::string pytorch = rewrite_cells(fixture(name), is_fsdp, [](const std::string& c) { return c; });
        const std::string with_steps = rewrite_cells(fixture(name), is_fsdp, [](const std::string& c) {
            return ends_with_name(c, "REDUCE_GRAD") ? c.substr(0, c.size() - 11) + "STEP0" : c;
        });
        REQUIRE(with_steps != pytorch);
        const paci::schedule s = paci::import_csv(with_steps);
        CHECK(s.steps == 1);
        CHECK(paci::export_csv(s, reduce) == pytorch);
        CHECK(paci::export_csv(s, {.updates = paci::csv_updates::step}) == with_steps);
    }
    SECTION("refused, naming the stage, where it is not") {
        const auto refused = [&](const paci::schedule& s, const std::string& why) {
            CHECK_THROWS_MATCHES(paci::export_csv(s, reduce), paci::config_error,
                                 Catch::Matchers::Message(
                                     "paci::export_csv: export_options::updates (reduce_grad) needs exactly one STEP "
                                     "per stage, after the stage's last compute action (where PyTorch places "
                                     "REDUCE_GRAD): " + why));
        };
        // Two updates per stage: 1F1B's stage 0 runs F2 (position 5) after its first STEP.
        refused(paci::one_f_one_b<>{.stages = 2, .microbatches = 2, .steps = 2}.generate(),
                "stage 0 runs 0F2 at rank 0, position 5 after its STEP");
        refused(paci::import_csv("0F0,0B0,0STEP0,0STEP1\r\n"), "stage 0 has a second STEP (0STEP1) at rank 0, position 3");
        // No update at all.
        refused(paci::import_csv("0F0,0B0\r\n1F0,1B0\r\n"), "stage 0 has no STEP");
        // An update before the stage's last backward.
        refused(paci::import_csv("0F0,0F1,0B0,0STEP0,0B1\r\n1F0,1B0,1F1,1B1,1STEP0\r\n"),
                "stage 0 runs 0B1 at rank 0, position 4 after its STEP");
        refused(paci::import_csv("0F0,0F1,0B0,0B1,0STEP0\r\n1F0,1B0,1F1,1STEP0,1W1\r\n"),
                "stage 1 runs 1W1 at rank 1, position 4 after its STEP");
        // A stage of the shape without any action.
        paci::schedule four = paci::import_csv("0F0,0B0,0STEP0\r\n1F0,1B0,1STEP0\r\n");
        four.shape.stages = 4;
        four.shape.map = paci::stage_map::loop;
        refused(four, "stage 2 has no STEP");
    }
    SECTION("the other choices do not look at the updates") {
        const paci::schedule two = paci::one_f_one_b<>{.stages = 2, .microbatches = 2, .steps = 2}.generate();
        CHECK(paci::export_csv(two).find("STEP") == std::string::npos);
        CHECK(paci::import_csv(paci::export_csv(two, {.updates = paci::csv_updates::step})) == [&] {
            paci::schedule t = two;
            t.policy = "csv";
            return t;
        }());
    }
}

TEST_CASE("csv: recompute has no PyTorch cell; paci's own form keeps it", "[unit][io][csv]") {
    // PACI with recompute, 2 stages, 1 micro-batch, 1 update: stage 0 runs F0, R0, B0, STEP; the last
    // stage needs no recompute (its backward follows its forward at once).
    const paci::schedule s =
        paci::paci_policy<paci::backward_flavour::recompute>{.stages = 2, .microbatches = 1, .steps = 1}.generate();
    REQUIRE(s.ranks[0] == std::vector<action>{{op::F, 0, 0}, {op::R, 0, 0}, {op::B, 0, 0}, {op::STEP, 0, 0}});
    REQUIRE(s.ranks[1] == std::vector<action>{{op::F, 1, 0}, {op::B, 1, 0}, {op::STEP, 1, 0}});
    CHECK(paci::export_csv(s) == "0F0,0B0\r\n1F0,1B0\r\n");
    CHECK(paci::export_csv(s, {.updates = paci::csv_updates::reduce_grad}) == "0F0,0B0,0REDUCE_GRAD\r\n1F0,1B0,1REDUCE_GRAD\r\n");
    CHECK(paci::export_csv(s, {.updates = paci::csv_updates::step}) == "0F0,0R0,0B0,0STEP0\r\n1F0,1B0,1STEP0\r\n");
}

TEST_CASE("csv: a row left without cells keeps its line", "[unit][io][csv]") {
    // Rank 1 holds only its update: PyTorch's form leaves an empty line, which reads back as a rank
    // without actions.
    paci::schedule s;
    s.shape = {2, 2, paci::stage_map::loop};
    s.microbatches = 1;
    s.ranks = {{{op::F, 0, 0}, {op::STEP, 0, 0}}, {{op::STEP, 1, 0}}};
    CHECK(paci::export_csv(s) == "0F0\r\n\r\n");
    CHECK(paci::export_csv(s, {.final_newline = false}) == "0F0\r\n\r\n");
    CHECK(paci::import_csv(paci::export_csv(s), {.stages = 2}).ranks.size() == 2);
}
