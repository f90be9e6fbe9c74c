#pragma once
/// \file
/// PyTorch schedule CSV: import and export of the compute-only and compute-plus-communication forms,
/// byte-exact round trips, and file helpers.
///
/// The format is what `torch.distributed.pipelining` writes with `_dump_csv` and reads with
/// `_load_csv`: no header, row r is rank r's program, one action per cell in PyTorch's action text
/// (`0F0`, `1B3`, `2I0`, `2W0`, `0SEND_F0`, `1RECV_B1`), an overlapped forward and backward as one
/// cell (`(0F7;7B3)OVERLAP_F_B`), an empty cell is an idle slot, and lines end in CRLF (Python's csv
/// module). paci adds `R` (recompute) and `STEP` (optimizer update), which PyTorch cannot read: the
/// layout-free export leaves them out unless asked (`csv_updates`).

#include <paci/core/action.hpp>
#include <paci/core/error.hpp>
#include <paci/core/schedule.hpp>
#include <paci/core/shape.hpp>
#include <paci/io/detail/text.hpp>
#include <paci/io/grid.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace paci {

/// Which names the backward ops have in the text.
enum class csv_dialect : std::uint8_t {
    /// Import: `legacy` if any cell uses `BW`, or if no cell uses `I` and some stage runs both `B` and
    /// `W` for one micro-batch (read as modern, that is a full and a split backward of the same
    /// micro-batch, which no schedule does); else `modern`. Export: `modern`.
    automatic,
    /// Current PyTorch: `B` full backward, `I` input-gradient backward, `W` weight-gradient backward.
    modern,
    /// Older PyTorch: `B` input-gradient backward, `BW` full backward, `W` weight-gradient backward.
    legacy,
};

[[nodiscard]] constexpr std::string_view to_string(csv_dialect d) noexcept {
    return d == csv_dialect::automatic ? "automatic" : d == csv_dialect::modern ? "modern" : "legacy";
}
inline std::ostream& operator<<(std::ostream& os, csv_dialect d) { return os << to_string(d); }

/// How lines end: `crlf` is what Python's csv module (and so PyTorch) writes.
enum class line_ending : std::uint8_t { crlf, lf };

[[nodiscard]] constexpr std::string_view to_string(line_ending e) noexcept { return e == line_ending::crlf ? "CRLF" : "LF"; }
inline std::ostream& operator<<(std::ostream& os, line_ending e) { return os << to_string(e); }

/// What `import_csv` infers unless told.
struct import_options {
    int stages = 0;       ///< 0: the largest stage in the text plus one
    int microbatches = 0; ///< 0: the largest micro-batch in the text plus one
    /// Stage-to-rank map; unset: `loop` if it fits the rows, else `v`.
    std::optional<stage_map> map{};
    csv_dialect dialect = csv_dialect::automatic;
    /// Accept PyTorch's FSDP and gradient-reduction actions (`0UNSHARD`, `0RESHARD`, `0REDUCE_GRAD`),
    /// which paci has no op for: they stay out of the schedule and are kept verbatim in the layout, so
    /// the text still round-trips. `false` rejects them.
    bool pytorch_ops = true;
    /// Stored as the schedule's `policy`; empty gives `"csv"` (or the path, for `read_csv_file`).
    std::string source{};
};

/// A cell of the text that is not an action of the schedule.
struct csv_cell {
    std::size_t column = 0; ///< 0-based cell index in its row
    std::string text;       ///< empty: an idle slot; otherwise a PyTorch-only action, verbatim
    friend bool operator==(const csv_cell&, const csv_cell&) = default;
};

/// What the text holds beyond the schedule: enough to write the same bytes back.
struct csv_layout {
    csv_dialect dialect = csv_dialect::modern; ///< the dialect the text was read in (never `automatic`)
    line_ending newline = line_ending::crlf;
    bool final_newline = true;                  ///< whether the last row ends with a line ending
    bool byte_order_mark = false;               ///< whether the text starts with a UTF-8 byte-order mark
    std::vector<std::vector<csv_cell>> extras;  ///< per row, by column: idle slots and PyTorch-only cells
    friend bool operator==(const csv_layout&, const csv_layout&) = default;
};

/// A schedule read from CSV text, with the layout that writes the same text back.
struct imported_schedule {
    schedule sched;
    csv_layout layout;
    friend bool operator==(const imported_schedule&, const imported_schedule&) = default;
};

/// How `export_csv(schedule, options)` writes what PyTorch 2.11 has no action for: paci's optimizer
/// update `STEP` and, with it, the recompute `R`.
///
/// PyTorch updates the weights outside its schedule (`optimizer.step()` after `schedule.step()`); the
/// nearest it writes is `sREDUCE_GRAD` (no micro-batch), which its schedules place right after the
/// stage's last backward of the step, where the stage's gradient accumulation ends. PyTorch has no
/// recompute action either: it recomputes inside its backward when the stage's module uses
/// activation checkpointing (`torch.utils.checkpoint`), so paci's separate `R` before a backward has
/// no cell of its own there; the PyTorch forms leave it out, and the stage's module is checkpointed
/// to get the same memory behaviour.
enum class csv_updates : std::uint8_t {
    /// PyTorch's form (the default): no cell for a STEP or an R. A flushed schedule's update maps to
    /// nothing, as in PyTorch's own compute-only files before `REDUCE_GRAD` is added.
    omit,
    /// PyTorch's form: each stage's STEP as `sREDUCE_GRAD` in its place, no cell for an R. Only where
    /// that is faithful: every stage has exactly one STEP and none of its compute after it on its
    /// rank (a one-update flushed schedule); otherwise `export_csv` throws `config_error` naming the
    /// stage.
    reduce_grad,
    /// paci's own form (explicit opt-in): `sSTEPk` and `sRk` cells. PyTorch's reader refuses the
    /// text; `import_csv` reads it back to the same schedule.
    step,
};

[[nodiscard]] constexpr std::string_view to_string(csv_updates u) noexcept {
    return u == csv_updates::omit ? "omit" : u == csv_updates::reduce_grad ? "reduce_grad" : "step";
}
inline std::ostream& operator<<(std::ostream& os, csv_updates u) { return os << to_string(u); }

/// How `export_csv` writes a schedule that has no layout of its own.
struct export_options {
    csv_dialect dialect = csv_dialect::modern; ///< `automatic` writes `modern`
    line_ending newline = line_ending::crlf;
    bool final_newline = true;
    /// STEP and R cells: left out (PyTorch's form, the default), STEP as `REDUCE_GRAD`, or paci's own.
    csv_updates updates = csv_updates::omit;
    friend bool operator==(const export_options&, const export_options&) = default;
};

namespace detail {

/// Marks a legacy `BW` cell until the dialect of the whole text is known.
inline constexpr op legacy_full_backward = static_cast<op>(op_count);

inline constexpr std::array<std::string_view, 3> pytorch_only_ops{"UNSHARD", "RESHARD", "REDUCE_GRAD"};

/// What follows an overlapped pair's `)`: PyTorch's computation type of the group.
inline constexpr std::string_view overlap_suffix = "OVERLAP_F_B";

/// U+FEFF in UTF-8: what Excel and Python's `utf-8-sig` codec put before the first row.
inline constexpr std::string_view utf8_byte_order_mark = "\xEF\xBB\xBF";

[[nodiscard]] constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
[[nodiscard]] constexpr bool is_op_char(char c) noexcept { return c == '_' || (c >= 'A' && c <= 'Z'); }

struct text_location {
    std::size_t line = 0; ///< 1-based; 0 while unseen
    std::size_t column = 0;
};

class csv_parser {
public:
    csv_parser(std::string_view text, const import_options& options) : text_(text), opt_(options) {}

    imported_schedule run() {
        if (opt_.stages < 0 || opt_.stages > max_stages)
            config_fail(api, "import_options::stages", opt_.stages, concat("must be in [0, ", max_stages, "]"));
        config_require(opt_.microbatches >= 0, api, "import_options::microbatches", opt_.microbatches, "must be >= 0");
        out_.sched.policy = opt_.source.empty() ? std::string("csv") : opt_.source;
        if (text_.starts_with(utf8_byte_order_mark)) { // skipped, and written back by export_csv
            out_.layout.byte_order_mark = true;
            text_.remove_prefix(utf8_byte_order_mark.size());
        }
        read_rows();
        resolve_dialect();
        finish_shape();
        return std::move(out_);
    }

private:
    static constexpr std::string_view api = "import_csv";

    struct stage_info {
        int row = -1;
        text_location first{};
        int steps = 0;
    };

    std::string_view text_;
    const import_options& opt_;
    imported_schedule out_;
    std::vector<stage_info> seen_;
    int max_stage_ = -1;
    std::int64_t max_microbatch_ = -1;
    text_location first_bw_{};
    text_location first_i_{};
    text_location first_group_{};     ///< the first overlapped pair: modern names, like `I`
    std::int64_t actions_ = 0;        ///< actions read (the text's own size, for the index limits)
    text_location max_stage_at_{};    ///< the first cell holding the largest stage
    text_location max_microbatch_at_{};
    std::vector<std::uint64_t> b_keys_; ///< (stage, micro-batch) of every `B`, for the dialect's detection
    std::vector<std::uint64_t> w_keys_; ///< (stage, micro-batch) of every `W`

    void read_rows() {
        const std::size_t n = text_.size();
        if (n == 0) parse_fail(api, "empty input: expected one row per rank", 1, 1);
        csv_layout& lay = out_.layout;
        bool newline_known = false;
        std::size_t newline_line = 0;
        std::size_t pos = 0;
        std::size_t line = 1;
        while (true) {
            const void* hit = std::memchr(text_.data() + pos, '\n', n - pos);
            const bool terminated = hit != nullptr;
            const std::size_t eol = terminated ? static_cast<std::size_t>(static_cast<const char*>(hit) - text_.data()) : n;
            std::size_t end = eol;
            if (terminated) {
                const bool crlf = end > pos && text_[end - 1] == '\r';
                if (crlf) --end;
                const line_ending kind = crlf ? line_ending::crlf : line_ending::lf;
                if (!newline_known) {
                    lay.newline = kind;
                    newline_known = true;
                    newline_line = line;
                } else if (kind != lay.newline) {
                    parse_fail(api,
                               concat("mixed line endings: this line ends with ", to_string(kind), " but line ",
                                      newline_line, " with ", to_string(lay.newline)),
                               line, end - pos + 1);
                }
            }
            if (out_.sched.ranks.size() >= static_cast<std::size_t>(max_stages))
                parse_fail(api, concat("too many rows: at most ", max_stages, " ranks"), line, 1);
            read_row(text_.substr(pos, end - pos), line);
            if (!terminated) {
                lay.final_newline = false;
                break;
            }
            pos = eol + 1;
            if (pos == n) {
                lay.final_newline = true;
                break;
            }
            ++line;
        }
    }

    void read_row(std::string_view content, std::size_t line) {
        const int row = static_cast<int>(out_.sched.ranks.size());
        out_.sched.ranks.emplace_back();
        out_.layout.extras.emplace_back();
        if (content.empty()) return; // a rank with no actions
        // Python's csv module writes a row holding one empty field as `""`.
        if (content == "\"\"") {
            out_.layout.extras.back().push_back({0, {}});
            return;
        }
        std::size_t start = 0;
        std::size_t column = 0;
        while (true) {
            std::size_t comma = content.find(',', start);
            if (comma == std::string_view::npos) comma = content.size();
            read_cell(content.substr(start, comma - start), row, column, line, start + 1);
            if (comma == content.size()) break;
            start = comma + 1;
            ++column;
        }
    }

    void read_cell(std::string_view cell, int row, std::size_t index, std::size_t line, std::size_t column) {
        auto& extras = out_.layout.extras.back();
        if (cell.empty()) {
            extras.push_back({index, {}});
            return;
        }
        const auto fail = [&](std::size_t offset, std::string_view what) {
            parse_fail(api, concat(what, " in '", cell, "'"), line, column + offset);
        };
        for (std::size_t k = 0; k < cell.size(); ++k) {
            const auto u = static_cast<unsigned char>(cell[k]);
            if (u >= 0x80) fail_non_ascii(cell, k, line, column);
            if (u == '"') fail(k, "quoted cells are not supported (PyTorch writes none)");
            if (u < 0x20 || u == 0x7F)
                parse_fail(api,
                           u == '\r' ? std::string("carriage return inside a line")
                                     : concat("control character 0x", "0123456789abcdef"[u >> 4], "0123456789abcdef"[u & 0xF],
                                              " in a cell"),
                           line, column + k);
        }
        if (cell.front() == '(') [[unlikely]] {
            read_group(cell, row, line, column);
            return;
        }
        const token_shape t = shape_of(cell);
        check_leading_zeros(cell, t, fail);
        const std::string_view name = cell.substr(t.digits, t.name_end - t.digits);

        if (t.digits > 0 && is_pytorch_only(name)) {
            if (!opt_.pytorch_ops)
                fail(t.digits, concat("PyTorch op ", name, " has no paci equivalent (import_options::pytorch_ops is off)"));
            if (t.name_end != cell.size())
                fail(t.name_end, concat("unexpected trailing characters (", name, " takes no micro-batch)"));
            std::int64_t stage = 0;
            if (parse_index(cell, 0, stage) == std::string_view::npos || stage >= max_stages)
                fail(0, "stage number out of range");
            extras.push_back({index, std::string(cell)});
            return;
        }

        action a;
        if (name == "BW") {
            if (opt_.dialect == csv_dialect::modern)
                fail(t.digits, "op 'BW' is the legacy dialect's full backward, but import_options::dialect is modern");
            a = parse_legacy_full_backward(cell, t.digits, t.name_end, fail);
            if (first_bw_.line == 0) first_bw_ = {line, column};
        } else {
            a = parse_action(cell, line, column);
            if (a.kind == op::I && first_i_.line == 0) first_i_ = {line, column + t.digits};
        }
        record(a, row, line, column);
    }

    /// Where a plain token's parts end: `digits` stage digits, op letters up to `name_end`, then
    /// micro-batch digits up to `end`.
    struct token_shape {
        std::size_t digits = 0;
        std::size_t name_end = 0;
        std::size_t end = 0;
    };

    [[nodiscard]] static token_shape shape_of(std::string_view cell) noexcept {
        token_shape t;
        while (t.digits < cell.size() && is_digit(cell[t.digits])) ++t.digits;
        t.name_end = t.digits;
        while (t.name_end < cell.size() && is_op_char(cell[t.name_end])) ++t.name_end;
        t.end = t.name_end;
        while (t.end < cell.size() && is_digit(cell[t.end])) ++t.end;
        return t;
    }

    /// PyTorch prints plain integers; a leading zero would not survive a round trip.
    template <class Fail>
    static void check_leading_zeros(std::string_view cell, const token_shape& t, const Fail& fail) {
        if (t.digits > 1 && cell[0] == '0') fail(0, "leading zero in the stage number");
        if (t.end - t.name_end > 1 && cell[t.name_end] == '0') fail(t.name_end, "leading zero in the micro-batch number");
    }

    /// `UNSHARD`, `RESHARD` or `REDUCE_GRAD`; every paci op's name is shorter than those (at most 6 letters).
    [[nodiscard]] static bool is_pytorch_only(std::string_view name) noexcept {
        static_assert(std::all_of(pytorch_only_ops.begin(), pytorch_only_ops.end(),
                                  [](std::string_view n) { return n.size() >= 7; }));
        if (name.size() < 7) return false; // the common case, decided by the length alone
        for (const auto pt : pytorch_only_ops)
            if (name == pt) return true;
        return false;
    }

    /// Reads an overlapped pair, `(0F7;7B3)OVERLAP_F_B`, exactly as PyTorch writes it (see
    /// `parse_csv`): a forward member, `;`, a backward member (`B` or `I`), `)OVERLAP_F_B`, no spaces.
    /// The pair becomes two actions of the row, the forward with `overlap_next` set; it stays one
    /// cell (one column) of the text.
    void read_group(std::string_view cell, int row, std::size_t line, std::size_t column) {
        const auto fail = [&](std::size_t offset, std::string_view what) {
            parse_fail(api, concat(what, " in '", cell, "'"), line, column + offset);
        };
        if (opt_.dialect == csv_dialect::legacy)
            fail(0, "overlapped pairs (OVERLAP_F_B) do not exist in the legacy dialect (import_options::dialect is "
                    "legacy; PyTorch writes them with the modern names only)");
        const std::size_t close = cell.find(')');
        const std::size_t nested = cell.find('(', 1);
        if (nested < close) fail(nested, "nested parentheses in an overlapped pair");
        if (close == std::string_view::npos) fail(cell.size(), "missing ')' closing the overlapped pair");
        const std::string_view inner = cell.substr(1, close - 1);
        if (inner.empty()) fail(1, "empty overlapped pair: expected a forward and a backward, '(0F1;1B0)OVERLAP_F_B'");
        const std::size_t semi = inner.find(';');
        if (semi == std::string_view::npos)
            fail(1, "overlapped pair with one member: expected a forward and a backward, '(0F1;1B0)OVERLAP_F_B'");
        const std::size_t extra = inner.find(';', semi + 1);
        if (extra != std::string_view::npos)
            fail(1 + extra + 1, "overlapped pair with more than two members: expected a forward and a backward");
        action forward = parse_member(cell, 1, inner.substr(0, semi), true, line, column);
        const action backward = parse_member(cell, 1 + semi + 1, inner.substr(semi + 1), false, line, column);
        const std::string_view suffix = cell.substr(close + 1);
        if (suffix != overlap_suffix)
            fail(close + 1, suffix.empty() ? std::string("expected OVERLAP_F_B after the overlapped pair's ')'")
                                           : concat("unknown group type '", suffix, "', expected OVERLAP_F_B"));
        if (first_group_.line == 0) first_group_ = {line, column};
        forward.overlap_next = true;
        record(forward, row, line, column + 1, true);
        record(backward, row, line, column + 1 + semi + 1, true);
    }

    /// One member of an overlapped pair, at `cell[offset...]`: a forward (`first`) or a backward B/I.
    action parse_member(std::string_view cell, std::size_t offset, std::string_view member, bool first,
                        std::size_t line, std::size_t column) {
        const auto fail = [&](std::size_t at, std::string_view what) {
            parse_fail(api, concat(what, " in '", cell, "'"), line, column + offset + at);
        };
        const char* const role = first ? "the first member of an overlapped pair must be a forward F"
                                       : "the second member of an overlapped pair must be a backward B or I";
        if (member.empty()) fail(0, concat(role, ", found nothing"));
        const token_shape t = shape_of(member);
        const std::string_view name = member.substr(t.digits, t.name_end - t.digits);
        if (t.digits > 0 && name == "BW")
            fail(t.digits, concat(role, ", found the legacy dialect's BW (overlapped pairs use the modern names)"));
        if (t.digits > 0 && is_pytorch_only(name)) fail(t.digits, concat(role, ", found PyTorch's ", name));
        check_leading_zeros(member, t, fail);
        const action a = parse_action(member, line, column + offset);
        if (first ? a.kind != op::F : !(a.kind == op::B || a.kind == op::I))
            fail(t.digits, concat(role, ", found ", is_comm(a.kind) ? "the communication " : "", to_string(a)));
        if (a.kind == op::I && first_i_.line == 0) first_i_ = {line, column + offset + t.digits};
        return a;
    }

    /// Names the character (`U+FEFF`), never prints it alone: most of them are invisible in a terminal.
    [[noreturn]] static void fail_non_ascii(std::string_view cell, std::size_t k, std::size_t line, std::size_t column) {
        const std::size_t n = utf8_sequence(cell, k);
        if (n == 0) {
            const auto u = static_cast<unsigned char>(cell[k]);
            parse_fail(api,
                       concat("byte 0x", "0123456789abcdef"[u >> 4], "0123456789abcdef"[u & 0xF],
                              " is not UTF-8 (cells are ASCII action tokens)"),
                       line, column + k);
        }
        const std::uint32_t cp = utf8_code_point(cell, k, n);
        parse_fail(api,
                   concat("character ", code_point_name(cp),
                          cp == 0xFEFF ? " (a byte-order mark, allowed only at the start of the text)" : "",
                          " in a cell (cells are ASCII action tokens)"),
                   line, column + k);
    }

    template <class Fail>
    static action parse_legacy_full_backward(std::string_view cell, std::size_t d, std::size_t e, const Fail& fail) {
        std::int64_t stage = 0;
        if (d == 0) fail(0, "expected a stage number");
        if (parse_index(cell, 0, stage) == std::string_view::npos || stage > max_stages) fail(0, "stage number out of range");
        std::int64_t index = 0;
        const std::size_t md = parse_index(cell, e, index);
        if (md == 0) fail(e, "expected a micro-batch number");
        if (md == std::string_view::npos || index > std::numeric_limits<std::int32_t>::max())
            fail(e, "micro-batch number out of range");
        if (e + md != cell.size()) fail(e + md, "unexpected trailing characters");
        action a{op::B, static_cast<int>(stage), static_cast<int>(index)};
        a.kind = legacy_full_backward;
        return a;
    }

    void record(const action& a, int row, std::size_t line, std::size_t column, bool member = false) {
        const int s = a.stage;
        if (opt_.stages > 0 && s >= opt_.stages)
            parse_fail(api, concat("stage ", s, " is out of range for ", opt_.stages, " stages (import_options::stages)"),
                       line, column);
        if (s >= max_stages)
            parse_fail(api, concat("stage ", s, " is out of range: at most ", max_stages, " stages"), line, column);
        if (a.kind != op::STEP) {
            if (opt_.microbatches > 0 && a.microbatch >= opt_.microbatches)
                parse_fail(api,
                           concat("micro-batch ", a.microbatch, " is out of range for ", opt_.microbatches,
                                  " micro-batches (import_options::microbatches)"),
                           line, column);
            if (a.microbatch > max_microbatch_) {
                max_microbatch_ = a.microbatch;
                max_microbatch_at_ = {line, column};
            }
            if (opt_.dialect == csv_dialect::automatic && (a.kind == op::B || a.kind == op::W))
                (a.kind == op::B ? b_keys_ : w_keys_)
                    .push_back(static_cast<std::uint64_t>(s) << 32 | static_cast<std::uint32_t>(a.microbatch));
        }
        ++actions_;
        if (static_cast<std::size_t>(s) >= seen_.size()) seen_.resize(static_cast<std::size_t>(s) + 1);
        stage_info& info = seen_[static_cast<std::size_t>(s)];
        if (info.row < 0) {
            info.row = row;
            info.first = {line, column};
        } else if (info.row != row) {
            parse_fail(api,
                       concat("stage ", s, " is on rank ", info.row, " (line ", info.first.line, ") and on rank ", row,
                              ": a stage runs on one rank",
                              member ? " (both members of an overlapped pair run on the rank of their cell's row)" : ""),
                       line, column);
        }
        if (a.kind == op::STEP) ++info.steps;
        if (s > max_stage_) {
            max_stage_ = s;
            max_stage_at_ = {line, column};
        }
        out_.sched.ranks[static_cast<std::size_t>(row)].push_back(a);
    }

    /// Whether some stage runs both `B` and `W` for one micro-batch: the legacy dialect's input and
    /// weight backward (read as modern, a full and a split backward of the same micro-batch).
    [[nodiscard]] bool split_backward_in_b_and_w() {
        if (b_keys_.empty() || w_keys_.empty()) return false;
        std::sort(b_keys_.begin(), b_keys_.end());
        for (const std::uint64_t k : w_keys_)
            if (std::binary_search(b_keys_.begin(), b_keys_.end(), k)) return true;
        return false;
    }

    void resolve_dialect() {
        const bool legacy =
            opt_.dialect == csv_dialect::legacy ||
            (opt_.dialect == csv_dialect::automatic &&
             (first_bw_.line != 0 || (first_i_.line == 0 && first_group_.line == 0 && split_backward_in_b_and_w())));
        out_.layout.dialect = legacy ? csv_dialect::legacy : csv_dialect::modern;
        if (!legacy) return;
        if (first_i_.line != 0) {
            const std::string why =
                first_bw_.line != 0
                    ? concat("op 'I' in a legacy-dialect text (it uses BW at line ", first_bw_.line, ", column ",
                             first_bw_.column, "; there B is the input backward and BW the full backward)")
                    : std::string("op 'I' does not exist in the legacy dialect (B is its input backward, BW its full "
                                  "backward)");
            parse_fail(api, why, first_i_.line, first_i_.column);
        }
        if (first_group_.line != 0) // only a BW elsewhere makes it here: a forced legacy read refuses groups at once
            parse_fail(api,
                       concat("overlapped pair (OVERLAP_F_B) in a legacy-dialect text (it uses BW at line ", first_bw_.line,
                              ", column ", first_bw_.column, "; PyTorch writes overlapped pairs with the modern names only)"),
                       first_group_.line, first_group_.column);
        for (auto& prog : out_.sched.ranks)
            for (action& a : prog) {
                if (a.kind == op::B) a.kind = op::I;
                else if (a.kind == legacy_full_backward) a.kind = op::B;
            }
    }

    [[nodiscard]] text_location where(int stage, const pipeline_shape& shape) const {
        if (static_cast<std::size_t>(stage) < seen_.size() && seen_[static_cast<std::size_t>(stage)].row >= 0)
            return seen_[static_cast<std::size_t>(stage)].first;
        return {static_cast<std::size_t>(shape.rank_of(stage)) + 1, 1};
    }

    /// A few bytes must never ask for gigabytes: every stage runs every micro-batch, so a text of N
    /// actions holds at most N (stage, micro-batch) pairs, and its largest indices may ask for no more.
    /// This bounds everything sized by stages x micro-batches downstream by the text's own length.
    void check_size() const {
        const std::int64_t stages = max_stage_ + 1;
        const std::int64_t microbatches = max_microbatch_ + 1;
        const std::int64_t pairs = stages * std::max<std::int64_t>(microbatches, 1);
        if (pairs <= actions_) return;
        const bool stage_blamed = stages > microbatches;
        const text_location at = stage_blamed ? max_stage_at_ : max_microbatch_at_;
        parse_fail(api,
                   concat(stage_blamed ? "stage " : "micro-batch ", stage_blamed ? stages - 1 : microbatches - 1,
                          " is out of range for a text of ", actions_, actions_ == 1 ? " action" : " actions", ": ",
                          stages, stages == 1 ? " stage" : " stages", " x ", microbatches,
                          microbatches == 1 ? " micro-batch" : " micro-batches", " need at least ", pairs,
                          " (every stage runs every micro-batch)"),
                   at.line, at.column);
    }

    /// Throws the parse_error that names the missing rows when the rows fit `stages` stages on more
    /// ranks than the text has rows, with each row's rank above the one before (a row deleted from
    /// the file); returns when no such placement exists.
    void fail_if_rows_missing(int stages, int ranks) const {
        if (ranks >= stages) return;
        std::array<stage_map, 2> maps{stage_map::loop, stage_map::v};
        const std::size_t count = opt_.map ? 1 : 2;
        if (opt_.map) maps[0] = *opt_.map;
        std::vector<int> rank_of_row(static_cast<std::size_t>(ranks));
        for (int total = ranks + 1; total <= stages; ++total) {
            if (stages % total != 0) continue;
            for (std::size_t c = 0; c < count; ++c) {
                const pipeline_shape shape{stages, total, maps[c]};
                if (maps[c] == stage_map::v && shape.chunks() % 2 != 0) continue;
                std::fill(rank_of_row.begin(), rank_of_row.end(), -1);
                bool fits = true;
                for (std::size_t s = 0; s < seen_.size() && fits; ++s) {
                    if (seen_[s].row < 0) continue;
                    int& t = rank_of_row[static_cast<std::size_t>(seen_[s].row)];
                    const int r = shape.rank_of(static_cast<int>(s));
                    if (t < 0) t = r;
                    fits = t == r;
                }
                // Rows keep their order; a row without actions takes the next rank.
                int previous = -1;
                for (int& t : rank_of_row) {
                    if (t < 0) t = previous + 1;
                    fits = fits && t > previous;
                    previous = t;
                }
                if (!fits || previous >= total) continue;
                std::vector<int> missing;
                std::size_t next = 0;
                for (int k = 0; k < total; ++k) {
                    if (next < rank_of_row.size() && rank_of_row[next] == k) ++next;
                    else missing.push_back(k);
                }
                std::string list;
                for (std::size_t k = 0; k < missing.size() && k < 8; ++k)
                    list += concat(k == 0 ? "" : k + 1 == missing.size() ? " and " : ", ", missing[k]);
                if (missing.size() > 8) list += concat(" and ", missing.size() - 8, " more");
                text_location at{static_cast<std::size_t>(ranks) + 1, 1}; // a row missing at the end
                for (std::size_t r = 0; r < rank_of_row.size(); ++r)
                    if (rank_of_row[r] != static_cast<int>(r)) {
                        at = {r + 1, 1};
                        break;
                    }
                parse_fail(api,
                           concat(missing.size() == 1 ? "a row is missing: no row for rank " : "rows are missing: no rows for ranks ",
                                  list, " (the text has ", ranks, ranks == 1 ? " row" : " rows", "; its ", stages,
                                  " stages fit ", total, " ranks with the ", to_string(maps[c]), " map)"),
                           at.line, at.column);
            }
        }
    }

    void finish_shape() {
        check_size();
        schedule& sch = out_.sched;
        const int ranks = static_cast<int>(sch.ranks.size());
        const int stages = opt_.stages > 0 ? opt_.stages : max_stage_ + 1;
        if (stages == 0) parse_fail(api, "no action to infer the stage count from (set import_options::stages)", 1, 1);
        if (stages % ranks != 0) {
            fail_if_rows_missing(stages, ranks);
            if (opt_.stages > 0) pipeline_shape{stages, ranks, stage_map::loop}.validate(api); // the option's fault
            parse_fail(api,
                       concat("stages (", stages, ") must be a multiple of the rows (", ranks, "): stage ", max_stage_,
                              " is the largest in the text"),
                       max_stage_at_.line, max_stage_at_.column);
        }

        // The map: the given one, else loop, else v; each must put every stage on the row it was found on.
        std::array<stage_map, 2> candidates{stage_map::loop, stage_map::v};
        const std::size_t count = opt_.map ? 1 : 2;
        if (opt_.map) candidates[0] = *opt_.map;
        std::array<int, 2> mismatch{-1, -1}; // first stage off its row, -1 none, -2 map not applicable
        std::optional<stage_map> chosen;
        for (std::size_t c = 0; c < count && !chosen; ++c) {
            const pipeline_shape shape{stages, ranks, candidates[c]};
            if (candidates[c] == stage_map::v && (stages % 2 != 0 || shape.chunks() % 2 != 0)) {
                mismatch[c] = -2;
                continue;
            }
            for (std::size_t s = 0; s < seen_.size(); ++s)
                if (seen_[s].row >= 0 && shape.rank_of(static_cast<int>(s)) != seen_[s].row) {
                    mismatch[c] = static_cast<int>(s);
                    break;
                }
            if (mismatch[c] == -1) chosen = candidates[c];
        }
        if (!chosen) {
            if (count == 1 && mismatch[0] == -2) pipeline_shape{stages, ranks, candidates[0]}.validate(api);
            fail_if_rows_missing(stages, ranks);
            std::string why = "no stage map fits the rows:";
            int worst = -1;
            for (std::size_t c = 0; c < count; ++c) {
                why += c ? "; the " : " the ";
                why += to_string(candidates[c]);
                if (mismatch[c] == -2) {
                    why += " map needs an even number of stages per rank";
                    continue;
                }
                const int s = mismatch[c];
                const pipeline_shape shape{stages, ranks, candidates[c]};
                why += concat(" map puts stage ", s, " on rank ", shape.rank_of(s), ", found on rank ",
                              seen_[static_cast<std::size_t>(s)].row);
                worst = std::max(worst, s);
            }
            const text_location at = seen_[static_cast<std::size_t>(worst)].first;
            parse_fail(api, why, at.line, at.column);
        }
        sch.shape = pipeline_shape{stages, ranks, *chosen};

        // Every stage must update equally often (a schedule's `steps` is per stage).
        const auto steps_of = [&](int s) {
            return static_cast<std::size_t>(s) < seen_.size() ? seen_[static_cast<std::size_t>(s)].steps : 0;
        };
        int reference = 0;
        for (int s = 1; s < stages; ++s)
            if (steps_of(s) > steps_of(reference)) reference = s;
        for (int s = 0; s < stages; ++s)
            if (steps_of(s) != steps_of(reference)) {
                const text_location at = where(s, sch.shape);
                parse_fail(api,
                           concat("stage ", s, " has ", steps_of(s), " STEP actions but stage ", reference, " has ",
                                  steps_of(reference), ": every stage must update equally often"),
                           at.line, at.column);
            }
        sch.steps = steps_of(reference);
        sch.microbatches = opt_.microbatches > 0 ? opt_.microbatches : static_cast<int>(max_microbatch_ + 1);
    }
};

inline void append_int(std::string& out, std::int64_t v) {
    char buf[24];
    const auto res = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, res.ptr);
}

inline void append_action(std::string& out, const action& a, bool legacy) {
    append_int(out, a.stage);
    if (legacy && a.kind == op::I) out += 'B';
    else if (legacy && a.kind == op::B) out += "BW";
    else out += to_string(a.kind);
    append_int(out, a.microbatch);
}

/// `(0F7;7B3)OVERLAP_F_B`: PyTorch's group form (modern names only, see `check_pair`).
inline void append_pair(std::string& out, const action& forward, const action& backward) {
    out += '(';
    append_action(out, forward, false);
    out += ';';
    append_action(out, backward, false);
    out += ')';
    out += overlap_suffix;
}

/// Throws `config_error` unless the action at `prog[p]`, which has `overlap_next` set, opens a pair
/// the text can hold: a forward followed by a backward B or I, in the modern dialect.
inline void check_pair(const std::vector<action>& prog, std::size_t rank, std::size_t p, bool legacy) {
    const bool formed = p + 1 < prog.size() && prog[p].kind == op::F &&
                        (prog[p + 1].kind == op::B || prog[p + 1].kind == op::I);
    if (!formed)
        config_fail("export_csv", concat("overlapped pair at rank ", rank, ", position ", p),
                    p + 1 < prog.size() ? concat(prog[p], " then ", prog[p + 1]) : concat(prog[p], " ending the program"),
                    "must be a forward F followed by a backward B or I (action::overlap_next)");
    if (legacy)
        config_fail("export_csv", "dialect", "legacy",
                    concat("cannot write the overlapped pair at rank ", rank, ", position ", p,
                           ": OVERLAP_F_B exists only in the modern dialect"));
}

/// Throws `config_error` unless each stage's updates can be written as PyTorch's `REDUCE_GRAD`:
/// exactly one STEP per stage, with none of the stage's compute after it on its rank.
inline void check_reduce_grad(const schedule& sch) {
    int stages = std::max(sch.shape.stages, 0);
    for (const auto& prog : sch.ranks)
        for (const action& a : prog) stages = std::max(stages, a.stage + 1);
    std::vector<int> steps(static_cast<std::size_t>(stages), 0);
    std::vector<std::size_t> step_rank(static_cast<std::size_t>(stages), 0);
    const auto refuse = [](int stage, std::string_view why) {
        config_fail("export_csv", "export_options::updates", "reduce_grad",
                    concat("needs exactly one STEP per stage, after the stage's last compute action (where PyTorch "
                           "places REDUCE_GRAD): stage ", stage, " ", why));
    };
    for (std::size_t r = 0; r < sch.ranks.size(); ++r) {
        const auto& prog = sch.ranks[r];
        for (std::size_t p = 0; p < prog.size(); ++p) {
            const action& a = prog[p];
            if (a.stage < 0) continue; // no stage to name; validate() reports it
            const auto s = static_cast<std::size_t>(a.stage);
            if (a.kind == op::STEP) {
                if (++steps[s] > 1) refuse(a.stage, concat("has a second STEP (", a, ") at rank ", r, ", position ", p));
                step_rank[s] = r;
            } else if (is_compute(a.kind) && steps[s] > 0 && step_rank[s] == r) {
                refuse(a.stage, concat("runs ", a, " at rank ", r, ", position ", p, " after its STEP"));
            }
        }
    }
    for (int s = 0; s < stages; ++s)
        if (steps[static_cast<std::size_t>(s)] == 0) refuse(s, "has no STEP");
}

/// Calls `on_extra(column, text)`, `on_action(column, position, action)` or
/// `on_pair(column, position, forward, backward)` for each cell of a row, in order: the layout's cells
/// at their columns, the actions filling the columns between them. An overlapped pair (a forward with
/// `overlap_next` and the action after it) is one cell; `position` is the action's index in `acts`.
template <class OnExtra, class OnAction, class OnPair>
void visit_row(const std::vector<action>& acts, const std::vector<csv_cell>& extras, OnExtra&& on_extra,
               OnAction&& on_action, OnPair&& on_pair) {
    std::size_t ai = 0;
    std::size_t ei = 0;
    for (std::size_t col = 0; ai < acts.size() || ei < extras.size(); ++col) {
        if (ei < extras.size() && (extras[ei].column == col || ai == acts.size())) {
            on_extra(col, std::string_view(extras[ei++].text));
        } else if (acts[ai].overlap_next && ai + 1 < acts.size()) {
            on_pair(col, ai, acts[ai], acts[ai + 1]);
            ai += 2;
        } else {
            on_action(col, ai, acts[ai]);
            ++ai;
        }
    }
}

/// Writes an imported schedule in its own layout (every action as paci reads it, STEP and R included).
inline std::string write_csv(const schedule& sch, const csv_layout& layout) {
    const bool legacy = layout.dialect == csv_dialect::legacy;
    std::string out;
    out.reserve(sch.size() * 8 + sch.ranks.size() * 2 + 16);
    const std::string_view eol = layout.newline == line_ending::crlf ? "\r\n" : "\n";
    static const std::vector<csv_cell> none;
    if (layout.byte_order_mark) out += utf8_byte_order_mark;
    for (std::size_t r = 0; r < sch.ranks.size(); ++r) {
        const auto& acts = sch.ranks[r];
        const auto& extras = r < layout.extras.size() ? layout.extras[r] : none;
        if (acts.empty() && extras.size() == 1 && extras[0].text.empty()) {
            out += "\"\""; // Python's csv module quotes a lone empty field
        } else {
            visit_row(
                acts, extras,
                [&](std::size_t col, std::string_view text) {
                    if (col) out += ',';
                    out += text;
                },
                [&](std::size_t col, std::size_t p, const action& a) {
                    if (a.overlap_next) check_pair(acts, r, p, legacy); // a flag with no action after it
                    if (col) out += ',';
                    append_action(out, a, legacy);
                },
                [&](std::size_t col, std::size_t p, const action& f, const action& b) {
                    check_pair(acts, r, p, legacy);
                    if (b.overlap_next) check_pair(acts, r, p + 1, legacy); // a backward opens no pair
                    if (col) out += ',';
                    append_pair(out, f, b);
                });
        }
        // A last row without cells keeps its line ending: without it the row would vanish.
        if (r + 1 < sch.ranks.size() || layout.final_newline || (acts.empty() && extras.empty())) out += eol;
    }
    return out;
}

/// Writes a schedule without a layout: no idle cells; STEP and R as `options.updates` says.
inline std::string write_csv(const schedule& sch, const export_options& options) {
    const bool legacy = options.dialect == csv_dialect::legacy;
    const csv_updates updates = options.updates;
    if (updates == csv_updates::reduce_grad) check_reduce_grad(sch);
    std::string out;
    out.reserve(sch.size() * 8 + sch.ranks.size() * 2 + 16);
    const std::string_view eol = options.newline == line_ending::crlf ? "\r\n" : "\n";
    for (std::size_t r = 0; r < sch.ranks.size(); ++r) {
        const auto& prog = sch.ranks[r];
        bool empty = true;
        for (std::size_t p = 0; p < prog.size(); ++p) {
            const action& a = prog[p];
            if ((a.kind == op::STEP || a.kind == op::R) && updates != csv_updates::step) [[unlikely]] {
                if (a.kind == op::R || updates == csv_updates::omit) continue;
                if (!empty) out += ',';
                empty = false;
                append_int(out, a.stage);
                out += "REDUCE_GRAD";
                continue;
            }
            if (!empty) out += ',';
            empty = false;
            if (a.overlap_next) [[unlikely]] {
                check_pair(prog, r, p, legacy);
                if (prog[p + 1].overlap_next) check_pair(prog, r, p + 1, legacy); // a backward opens no pair
                append_pair(out, a, prog[p + 1]);
                ++p;
                continue;
            }
            append_action(out, a, legacy);
        }
        // A last row without cells keeps its line ending: without it the row would vanish.
        if (r + 1 < sch.ranks.size() || options.final_newline || empty) out += eol;
    }
    return out;
}

/// Removes `paci::<api>: ` and the trailing ` at line L, column C` from a parse error's message.
[[nodiscard]] inline std::string parse_message_core(const parse_error& e) {
    std::string_view m = e.what();
    if (m.starts_with("paci::")) {
        const auto colon = m.find(": ");
        if (colon != std::string_view::npos) m.remove_prefix(colon + 2);
    }
    const std::string suffix = concat(" at line ", e.line(), ", column ", e.column());
    if (m.ends_with(suffix)) m.remove_suffix(suffix.size());
    return std::string(m);
}

} // namespace detail

/// Reads PyTorch schedule CSV text (compute-only or with SEND/RECV) into a schedule and the layout
/// that writes the same bytes back (see `export_csv(const imported_schedule&)`).
///
/// Parsing is strict: every non-empty cell must be exactly one action token (`parse_action`; plus
/// `BW` in the legacy dialect and PyTorch's `UNSHARD`/`RESHARD`/`REDUCE_GRAD`, see `import_options`)
/// or one overlapped pair; no quotes (except Python's `""` for a row holding one idle slot), no
/// spaces, no leading zeros, one line ending throughout; a UTF-8 byte-order mark before the first row
/// is skipped (and kept in the layout).
///
/// **Overlapped pairs.** A cell `(0F7;7B3)OVERLAP_F_B` is read as two actions of its row, the forward
/// `0F7` with `action::overlap_next` set and then the backward `7B3`; it stays one cell of the text
/// (the layout's columns count it once). paci reads exactly the form PyTorch 2.11 writes
/// (`_Action.__repr__` of an action with `sub_actions`: `(`, the members joined by `;`, `)`, the
/// computation type): a forward `F` member, `;`, a backward `B` or `I` member, each a full token with
/// its micro-batch, then `)OVERLAP_F_B`. PyTorch's reader (`_Action.from_str`) is looser: it strips
/// whitespace around the cell and around each member, drops empty members, ends the group at the
/// first `)`, and takes any member count and any computation-type name after it. paci refuses all
/// of that with the line and column, as it refuses the spaces PyTorch strips around plain cells: a
/// space, an empty pair, one member or more than two, a first member that is not a forward or a
/// second that is not a B or I (communication, `W`, `UNSHARD`... included), a member with trailing
/// text, nested parentheses, a missing `)` and a missing or misspelt `OVERLAP_F_B`. Both members'
/// stages must be on the cell's row, like every other cell's. Pairs exist only in the modern
/// dialect (PyTorch added `OVERLAP_F_B` after it renamed its backward ops): a pair makes automatic
/// detection read the text as modern, like an `I` does, and a pair in a legacy text is an error. Rows are ranks; stages are the largest stage plus one, micro-batches the largest
/// micro-batch plus one (unless given); `steps` is the number of STEP actions per stage, which must be
/// equal over stages; the stage map is `loop` if it puts every stage on its row, else `v`. The dialect
/// is detected unless `options.dialect` names it (see `csv_dialect::automatic`).
///
/// Resources are bounded by the text: its largest stage and micro-batch may ask for at most as many
/// (stage, micro-batch) pairs as it holds actions (every stage runs every micro-batch), so a few bytes
/// such as `0F2147483646` fail here instead of asking the analyses for gigabytes.
/// \throws parse_error with the 1-based line and column of the offending cell or member (a stage on two rows,
/// a map that fits no row, unequal STEP counts, an index past the text's size, a non-ASCII character
/// named by its code point (`U+FEFF`), a stage count that is not a multiple of the rows, a missing row named by its
/// rank, all included).
/// \throws config_error for bad options (a given stage count or map that the rows cannot hold).
[[nodiscard]] inline imported_schedule parse_csv(std::string_view text, const import_options& options = {}) {
    return detail::csv_parser(text, options).run();
}

/// Reads PyTorch schedule CSV text into a schedule (see `parse_csv` for the rules and errors).
[[nodiscard]] inline schedule import_csv(std::string_view text, const import_options& options = {}) {
    return parse_csv(text, options).sched;
}

/// Writes a schedule as PyTorch CSV: row r is rank r's actions, comma-separated, no idle cells; an
/// overlapped pair is one `(0F7;7B3)OVERLAP_F_B` cell. With the default options the text is one that
/// PyTorch's `_Action.from_str` and `_load_csv` read: no STEP and no R cells (see `csv_updates` for
/// the other choices). A lowered schedule is written with its SEND/RECV cells, PyTorch's
/// `compute_comms` form.
/// \throws config_error for an `overlap_next` that opens no pair (not an F followed by a B or I), a
/// pair in the legacy dialect, or `csv_updates::reduce_grad` on a schedule it cannot describe
/// faithfully (the message names the stage).
[[nodiscard]] inline std::string export_csv(const schedule& sch, const export_options& options = {}) {
    if (options.updates != csv_updates::omit && options.updates != csv_updates::reduce_grad &&
        options.updates != csv_updates::step)
        detail::config_fail("export_csv", "export_options::updates", static_cast<int>(options.updates),
                            "must be csv_updates::omit, reduce_grad or step");
    return detail::write_csv(sch, options);
}

/// Writes an imported schedule back in its own layout (dialect, line endings, idle slots,
/// PyTorch-only cells): `export_csv(parse_csv(text)) == text` for every text `parse_csv` accepts.
/// Actions edited since the import are written in order around the layout's cells, every action as
/// paci reads it (STEP and R cells included: this is the text's own form, not `export_options`'s).
/// \throws config_error for an edited `overlap_next` that opens no pair, or a pair in a legacy layout.
[[nodiscard]] inline std::string export_csv(const imported_schedule& in) {
    return detail::write_csv(in.sched, in.layout);
}

/// The imported text as PyTorch prints its pipeline order: step k shows each row's k-th cell, idle
/// slots and PyTorch-only cells included (`to_grid(in.sched)` shows the actions alone).
[[nodiscard]] inline std::string to_grid(const imported_schedule& in) {
    std::vector<std::vector<std::string>> cells(in.sched.ranks.size());
    static const std::vector<csv_cell> none;
    for (std::size_t r = 0; r < cells.size(); ++r)
        detail::visit_row(
            in.sched.ranks[r], r < in.layout.extras.size() ? in.layout.extras[r] : none,
            [&](std::size_t, std::string_view text) { cells[r].emplace_back(text); },
            [&](std::size_t, std::size_t, const action& a) {
                cells[r].push_back(to_string(a)); // the grid shows modern names, as PyTorch does today
            },
            [&](std::size_t, std::size_t, const action& f, const action& b) { cells[r].push_back(to_string(f, b)); });
    return detail::format_grid(cells);
}

/// Reads a CSV file with `parse_csv`; the schedule's `policy` is the path unless `options.source` is set.
/// \throws config_error naming the path if it cannot be read; parse_error naming the path, with line and column.
[[nodiscard]] inline imported_schedule read_csv_file(const std::filesystem::path& path, import_options options = {}) {
    std::ifstream in(path, std::ios::binary);
    if (!in) detail::config_fail("read_csv_file", "path", path.string(), "cannot be opened for reading");
    std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (in.bad()) detail::config_fail("read_csv_file", "path", path.string(), "cannot be read");
    if (options.source.empty()) options.source = path.string();
    try {
        return parse_csv(text, options);
    } catch (const parse_error& e) {
        detail::parse_fail("read_csv_file", detail::concat(path.string(), ": ", detail::parse_message_core(e)), e.line(),
                           e.column());
    }
}

namespace detail {

inline void write_file(std::string_view api, const std::filesystem::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) config_fail(api, "path", path.string(), "cannot be opened for writing");
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.flush();
    if (!out) config_fail(api, "path", path.string(), "cannot be written");
}

} // namespace detail

/// Writes `export_csv(sch, options)` to `path`. \throws config_error naming the path on failure.
inline void write_csv_file(const std::filesystem::path& path, const schedule& sch, const export_options& options = {}) {
    detail::write_file("write_csv_file", path, export_csv(sch, options));
}

/// Writes `export_csv(in)` (its own layout) to `path`. \throws config_error naming the path on failure.
inline void write_csv_file(const std::filesystem::path& path, const imported_schedule& in) {
    detail::write_file("write_csv_file", path, export_csv(in));
}

} // namespace paci
