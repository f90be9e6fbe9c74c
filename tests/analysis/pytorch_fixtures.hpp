#pragma once
/// \file
/// Test support: PyTorch 2.11's own schedules (tests/io/fixtures/, copied from shared/pytorch-2.11/),
/// read as text, imported, and edited the way the analysis tests need: overlapped pairs spelled out
/// by hand (for when the importer refuses `OVERLAP_F_B`), and one stage's micro-batch indices shifted.
/// Hand-written programs with pairs (`"1F0 (1F1;1B0) 1B1"`) are support/program_text.hpp's `program`.

#include <paci/core/action.hpp>
#include <paci/core/schedule.hpp>
#include <paci/io/csv.hpp>

#include "support/catch.hpp"
#include "support/program_text.hpp"

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace paci_test {

/// The fixtures with communication that import today (DualPipeV's holds overlapped pairs).
inline const std::vector<std::string>& comms_fixtures() {
    static const std::vector<std::string> names{"Interleaved1F1B_p4_v2_m8", "InterleavedZeroBubble_p4_v2_m8",
                                                "LoopedBFS_p4_v2_m8", "ZBVZeroBubble_p4_v2_m8"};
    return names;
}

inline constexpr std::string_view dualpipev = "DualPipeV_p4_v2_m8";

/// The bytes of `tests/io/fixtures/<file>`.
inline std::string fixture_text(std::string_view file) {
    const std::filesystem::path path = std::filesystem::path(PACI_TEST_SOURCE_DIR) / "io" / "fixtures" / file;
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// `parse_csv(text)`; a refusal fails the test, naming `what` (every PyTorch 2.11 file imports).
inline std::optional<paci::imported_schedule> try_parse(const std::string& text, std::string_view what) {
    try {
        return paci::parse_csv(text);
    } catch (const paci::parse_error& e) {
        FAIL("paci::parse_csv refuses " << what << " (" << e.what() << ")");
        return std::nullopt;
    }
}

/// Splits a CSV text into its rows' cells (CRLF or LF).
inline std::vector<std::vector<std::string>> cells_of(const std::string& text) {
    std::vector<std::vector<std::string>> rows;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t eol = text.find('\n', pos);
        if (eol == std::string::npos) eol = text.size();
        std::string_view line(text.data() + pos, eol - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        std::vector<std::string> row;
        std::size_t c = 0;
        while (true) {
            const std::size_t comma = line.find(',', c);
            row.emplace_back(line.substr(c, comma == std::string_view::npos ? std::string_view::npos : comma - c));
            if (comma == std::string_view::npos) break;
            c = comma + 1;
        }
        rows.push_back(std::move(row));
        pos = eol + 1;
    }
    return rows;
}

/// The schedule of a text that holds `(A;B)OVERLAP_F_B` cells, built by hand: each such cell becomes
/// its two actions, the first with `overlap_next` set; UNSHARD, RESHARD, REDUCE_GRAD and idle cells
/// are dropped. Stages and micro-batches are the largest plus one, the map `v` unless `loop` fits.
/// Independent of `parse_csv`, so pairs can be analysed whatever the importer accepts.
inline paci::schedule schedule_by_hand(const std::string& text, paci::stage_map map, std::string policy) {
    paci::schedule s;
    s.policy = std::move(policy);
    int stages = 0;
    int microbatches = 0;
    const auto add = [&](std::vector<paci::action>& prog, std::string_view token, bool opens) {
        paci::action a = paci::parse_action(token);
        a.overlap_next = opens;
        prog.push_back(a);
        if (a.stage + 1 > stages) stages = a.stage + 1;
        if (a.kind != paci::op::STEP && a.microbatch + 1 > microbatches) microbatches = a.microbatch + 1;
    };
    for (const auto& row : cells_of(text)) {
        std::vector<paci::action> prog;
        for (const std::string& cell : row) {
            if (cell.empty() || cell.find("UNSHARD") != std::string::npos || cell.find("RESHARD") != std::string::npos ||
                cell.find("REDUCE_GRAD") != std::string::npos)
                continue;
            if (cell.front() == '(') {
                const std::size_t semi = cell.find(';');
                const std::size_t close = cell.find(')');
                REQUIRE(semi != std::string::npos);
                REQUIRE(close != std::string::npos);
                REQUIRE(cell.substr(close + 1) == "OVERLAP_F_B");
                add(prog, std::string_view(cell).substr(1, semi - 1), true);
                add(prog, std::string_view(cell).substr(semi + 1, close - semi - 1), false);
            } else {
                add(prog, cell, false);
            }
        }
        s.ranks.push_back(std::move(prog));
    }
    s.shape = {stages, static_cast<int>(s.ranks.size()), map};
    s.microbatches = microbatches;
    return s;
}

/// `text` with every action of `stage` (compute and communication; not UNSHARD, RESHARD or
/// REDUCE_GRAD, which have no micro-batch) moved `by` micro-batches on: `5F3` becomes `5F4`.
inline std::string shift_stage(const std::string& text, int stage, int by) {
    std::string out;
    const std::string prefix = std::to_string(stage);
    std::size_t pos = 0;
    while (pos < text.size()) {
        // One cell: up to the next ',' or line ending.
        std::size_t end = pos;
        while (end < text.size() && text[end] != ',' && text[end] != '\r' && text[end] != '\n') ++end;
        std::string cell = text.substr(pos, end - pos);
        std::size_t digits = 0;
        while (digits < cell.size() && cell[digits] >= '0' && cell[digits] <= '9') ++digits;
        std::size_t tail = cell.size();
        while (tail > 0 && cell[tail - 1] >= '0' && cell[tail - 1] <= '9') --tail;
        if (digits > 0 && cell.substr(0, digits) == prefix && tail > digits && tail < cell.size())
            cell = cell.substr(0, tail) + std::to_string(std::stoi(cell.substr(tail)) + by);
        out += cell;
        // The separator(s) after it.
        std::size_t next = end;
        if (next < text.size() && text[next] == ',') ++next;
        else
            while (next < text.size() && (text[next] == '\r' || text[next] == '\n')) ++next;
        out += text.substr(end, next - end);
        pos = next;
    }
    return out;
}

/// Number of actions with `overlap_next` set over every rank.
inline std::size_t pair_count(const paci::schedule& s) {
    std::size_t n = 0;
    for (const auto& prog : s.ranks)
        for (const paci::action& a : prog) n += a.overlap_next ? 1U : 0U;
    return n;
}

} // namespace paci_test
