#pragma once
/// \file
/// A self-contained SVG timeline of a schedule: one lane per rank, a block per action coloured by
/// kind, optimizer steps marked, and the version drift of backwards that crossed an update.

#include <paci/analysis/replay.hpp>
#include <paci/core/action.hpp>
#include <paci/core/error.hpp>
#include <paci/core/schedule.hpp>
#include <paci/io/detail/text.hpp>
#include <paci/io/detail/times.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace paci {

/// How `to_svg` draws.
struct svg_options {
    std::string title{};            ///< empty: the schedule's `policy`
    double width = 1100;            ///< image width in pixels
    double row_height = 30;         ///< lane height in pixels
    bool microbatch_labels = true;  ///< micro-batch numbers on blocks wide enough to hold them
    friend bool operator==(const svg_options&, const svg_options&) = default;
};

namespace detail {

struct svg_style {
    std::string_view fill;
    std::string_view text;
    std::string_view legend;
};

/// Colours per op (F, B, I, W, R, STEP, communication), colour-blind-safe and legible in grey.
[[nodiscard]] constexpr svg_style style_of(op o) noexcept {
    switch (o) {
    case op::F: return {"#4e79a7", "#ffffff", "forward (F)"};
    case op::B: return {"#f28e2b", "#ffffff", "backward (B)"};
    case op::I: return {"#e15759", "#ffffff", "input grad (I)"};
    case op::W: return {"#59a14f", "#ffffff", "weight grad (W)"};
    case op::R: return {"#b07aa1", "#ffffff", "recompute (R)"};
    case op::STEP: return {"#1f2937", "#ffffff", "optimizer step"};
    default: return {"#6b7280", "#ffffff", "send / recv"};
    }
}

/// Appends `v` with at most two decimals, trailing zeros dropped.
inline void append_px(std::string& out, double v) {
    char buf[48];
    const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, 2);
    std::string_view s(buf, static_cast<std::size_t>(res.ptr - buf));
    if (s.find('.') != std::string_view::npos) {
        while (s.back() == '0') s.remove_suffix(1);
        if (s.back() == '.') s.remove_suffix(1);
    }
    if (s == "-0") s = "0";
    out += s;
}

/// Appends `text` escaped for XML content and attribute values: well-formed UTF-8 passes through, a
/// byte that is not becomes U+FFFD, control characters XML 1.0 forbids are dropped.
inline void append_xml_text(std::string& out, std::string_view text) {
    append_utf8_text(out, text, [&out](char c) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&apos;"; break;
        default:
            // XML 1.0 allows no control characters but tab, newline and carriage return.
            if (static_cast<unsigned char>(c) >= 0x20 || c == '\t' || c == '\n' || c == '\r') out += c;
        }
    });
}

/// A "nice" tick spacing (1, 2 or 5 times a power of ten) giving about `target` ticks over `span`.
[[nodiscard]] inline double tick_step(double span, double target) {
    const double raw = span / target;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    const double n = raw / mag;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * mag;
}

[[nodiscard]] inline std::string format_tick(double v) {
    char buf[32];
    const int n = std::snprintf(buf, sizeof buf, "%g", v);
    return std::string(buf, static_cast<std::size_t>(std::max(n, 0)));
}

class svg_writer {
public:
    std::string out;

    /// `<name attr="value" ...` with values already formatted; the caller closes the tag.
    void open(std::string_view name) {
        out += '<';
        out += name;
    }
    void attr(std::string_view name, std::string_view value) {
        out += ' ';
        out += name;
        out += "=\"";
        append_xml_text(out, value);
        out += '"';
    }
    void attr(std::string_view name, double value) {
        out += ' ';
        out += name;
        out += "=\"";
        append_px(out, value);
        out += '"';
    }
    void rect(std::string_view cls, double x, double y, double w, double h, std::string_view fill, double rx = 0) {
        open("rect");
        if (!cls.empty()) attr("class", cls);
        attr("x", x);
        attr("y", y);
        attr("width", w);
        attr("height", h);
        if (rx > 0) attr("rx", rx);
        attr("fill", fill);
    }
    void text(double x, double y, std::string_view content, std::string_view extra_attrs) {
        open("text");
        attr("x", x);
        attr("y", y);
        out += extra_attrs;
        out += '>';
        append_xml_text(out, content);
        out += "</text>\n";
    }
};

[[nodiscard]] inline std::string timeline_svg(const schedule& sch, const action_times& given, const replay_result* versions,
                                              const svg_options& options) {
    constexpr std::string_view api = "to_svg";
    config_require(std::isfinite(options.width) && options.width >= 200, api, "width", options.width, "must be >= 200");
    config_require(std::isfinite(options.row_height) && options.row_height >= 12 && options.row_height <= 200, api,
                   "row_height", options.row_height, "must be in [12, 200]");
    check_schedule(api, sch);
    check_size(api, "drawing size", sch.size(), mul_sat(sch.size(), 600)); // about 400 bytes of SVG per action, then times
    check_versions(api, sch, versions);
    const action_times times = resolve_times(api, sch, given);

    double makespan = 0;
    for (const auto& rank : times)
        for (const auto& [s, e] : rank) makespan = std::max(makespan, e);
    const double span = makespan > 0 ? makespan : 1;

    // Geometry.
    const std::size_t R = sch.ranks.size();
    const double row_h = options.row_height;
    const double gap = std::max(6.0, row_h * 0.25);
    const double left = 78;
    const double right = 24;
    const double plot_w = options.width - left - right;
    const double plot_top = 78;
    const double sx = plot_w / span;
    const auto lane_y = [&](std::size_t r) { return plot_top + static_cast<double>(r) * (row_h + gap); };
    const double plot_bottom = R == 0 ? plot_top : lane_y(R - 1) + row_h;
    const double axis_y = plot_bottom + 10;
    const double legend_y = axis_y + 46;
    const double height = legend_y + 30;
    const double font = std::clamp(row_h * 0.4, 9.0, 13.0);

    // What is present decides the legend.
    std::array<bool, op_count> present{};
    int drifted = 0;
    const auto drift_of = [&](const action& a) {
        if (versions == nullptr || (a.kind != op::B && a.kind != op::I)) return 0;
        if (a.stage < 0 || a.stage >= versions->stages || a.microbatch < 0 || a.microbatch >= versions->microbatches)
            return 0;
        return std::max(versions->at(a.stage, a.microbatch).drift(), 0);
    };
    for (const auto& prog : sch.ranks)
        for (const action& a : prog) {
            const auto k = static_cast<std::size_t>(is_comm(a.kind) ? op::SEND_F : a.kind);
            if (k < present.size()) present[k] = true; // ops were checked above; this keeps the bound visible
            drifted += drift_of(a) > 0 ? 1 : 0;
        }

    svg_writer w;
    w.out.reserve(sch.size() * 180 + 4096);
    w.out += "<svg xmlns=\"http://www.w3.org/2000/svg\"";
    w.attr("width", options.width);
    w.attr("height", height);
    w.out += " viewBox=\"0 0 ";
    append_px(w.out, options.width);
    w.out += ' ';
    append_px(w.out, height);
    w.out += "\" font-family=\"Helvetica, Arial, sans-serif\">\n";
    const std::string title = !options.title.empty() ? options.title : !sch.policy.empty() ? sch.policy : "schedule";
    w.out += "<title>";
    append_xml_text(w.out, title);
    w.out += "</title>\n";
    w.rect("bg", 0, 0, options.width, height, "#ffffff");
    w.out += "/>\n";

    // Title and a one-line summary.
    w.text(left, 30, title, " font-size=\"18\" font-weight=\"bold\" fill=\"#111827\"");
    {
        std::string sub = concat(sch.shape.stages, sch.shape.stages == 1 ? " stage on " : " stages on ", R,
                                 R == 1 ? " rank" : " ranks");
        if (sch.shape.chunks() > 1) sub += concat(" (", to_string(sch.shape.map), " map, odd chunks lighter)");
        sub += concat(" · ", sch.microbatches, " micro-batches");
        if (sch.steps > 0) sub += concat(" · ", sch.steps, sch.steps == 1 ? " update" : " updates", " per stage");
        sub += " · makespan " + format_tick(makespan);
        if (versions != nullptr) {
            int max_drift = 0;
            for (const auto& st : versions->per_stage) max_drift = std::max(max_drift, st.max_drift);
            sub += concat(" · max drift ", max_drift);
        }
        w.text(left, 52, sub, " font-size=\"12\" fill=\"#4b5563\"");
    }

    // Lanes, vertical grid, rank labels.
    const double step = tick_step(span, std::max(2.0, plot_w / 90));
    for (std::size_t r = 0; r < R; ++r) {
        w.rect("lane", left, lane_y(r), plot_w, row_h, "#f3f4f6", 3);
        w.out += "/>\n";
    }
    w.out += "<g stroke=\"#d1d5db\" stroke-width=\"1\">\n";
    for (double t = step; t < span + step * 1e-9; t += step) {
        const double x = left + t * sx;
        w.open("line");
        w.attr("x1", x);
        w.attr("x2", x);
        w.attr("y1", plot_top - 4);
        w.attr("y2", plot_bottom + 4);
        w.out += "/>\n";
    }
    w.out += "</g>\n";
    for (std::size_t r = 0; r < R; ++r)
        w.text(left - 10, lane_y(r) + row_h / 2 + 4, concat("rank ", r),
               " font-size=\"12\" text-anchor=\"end\" fill=\"#374151\"");

    // Blocks: communication first (thin, at the lane's foot), then compute, then step marks on top.
    const auto block_x = [&](double t) { return left + t * sx; };
    for (std::size_t r = 0; r < R; ++r) {
        const double y = lane_y(r);
        for (std::size_t p = 0; p < sch.ranks[r].size(); ++p) {
            const action a = sch.ranks[r][p];
            if (!is_comm(a.kind)) continue;
            const auto [s, e] = times[r][p];
            const double bw = std::max((e - s) * sx, 1.5);
            w.rect("comm", block_x(s) - (e > s ? 0 : 0.75), y + row_h - 4, bw, 3, style_of(a.kind).fill);
            w.out += " opacity=\"0.8\"><title>";
            append_xml_text(w.out, to_string(a));
            w.out += "</title></rect>\n";
        }
    }
    // An overlapped pair whose members' intervals overlap (the simulator gives both the pair's span)
    // is drawn in half lanes: the flagged member (the forward) on top, its partner below.
    const double half_h = (row_h - 4) / 2;
    const double half_font = std::min(font, std::floor(half_h * 0.9 * 2) / 2);
    std::size_t pairs_drawn = 0;
    for (std::size_t r = 0; r < R; ++r) {
        const double y = lane_y(r);
        const auto& prog = sch.ranks[r];
        std::size_t bottom = prog.size(); // position of the partner of the pair last drawn on top
        for (std::size_t p = 0; p < prog.size(); ++p) {
            const action a = prog[p];
            if (!is_compute(a.kind)) continue;
            const auto [s, e] = times[r][p];
            // 0: full height, 1: top half (opens a pair), 2: bottom half (closes one).
            int half = 0;
            if (p == bottom) {
                half = 2;
            } else if (detail::opens_pair(prog, p) && s < times[r][p + 1].second && times[r][p + 1].first < e) {
                half = 1;
                bottom = p + 1;
                ++pairs_drawn;
            }
            const double x = block_x(s);
            const double bw = std::max((e - s) * sx, 1.0);
            const double by = half == 2 ? y + 2 + half_h : y + 2;
            const double bh = half == 0 ? row_h - 4 : half_h;
            const svg_style st = style_of(a.kind);
            const int drift = drift_of(a);
            std::string cls = concat("blk op-", to_string(a.kind));
            if (half != 0) cls += half == 1 ? " pair-top" : " pair-bottom";
            w.rect(cls, x, by, bw, bh, st.fill, 2);
            // With several stages per rank, odd chunks are lighter so the chunks can be told apart.
            if (sch.shape.chunks() > 1 && a.stage >= 0 && sch.shape.chunk_of(a.stage) % 2 == 1)
                w.out += " fill-opacity=\"0.62\"";
            if (drift > 0) w.out += " stroke=\"#7f1d1d\" stroke-width=\"2\"";
            else w.out += " stroke=\"#ffffff\" stroke-width=\"0.75\"";
            w.out += "><title>";
            append_xml_text(w.out, to_string(a));
            if (half != 0) {
                w.out += " (overlapped pair ";
                append_xml_text(w.out, half == 1 ? to_string(a, prog[p + 1]) : to_string(prog[p - 1], a));
                w.out += ')';
            }
            if (versions != nullptr && drift > 0) append_xml_text(w.out, concat(" (drift ", drift, ")"));
            w.out += "</title></rect>\n";
            // The label shrinks to fit its block, down to 7 px; narrower blocks stay unlabelled.
            const std::string label = std::to_string(a.microbatch);
            const double fit = std::min(half == 0 ? font : half_font,
                                        std::floor((bw - 3) / (static_cast<double>(label.size()) * 0.62) * 2) / 2);
            if (options.microbatch_labels && fit >= 7)
                w.text(x + bw / 2, (half == 0 ? y + row_h / 2 : by + bh / 2) + fit * 0.36, label,
                       concat(" font-size=\"", format_tick(fit), "\" text-anchor=\"middle\" fill=\"", st.text, "\""));
            if (drift > 0) {
                const std::string badge = concat("+", drift);
                const double bw2 = static_cast<double>(badge.size()) * 5.6 + 6;
                const double bx = x + bw - bw2 + 3;
                w.out += "<g class=\"drift\">";
                w.rect("", bx, y - 4, bw2, 11, "#b91c1c", 5.5);
                w.out += " stroke=\"#ffffff\" stroke-width=\"1\"/>";
                w.text(bx + bw2 / 2, y + 4.5, badge,
                       " font-size=\"9\" font-weight=\"bold\" text-anchor=\"middle\" fill=\"#ffffff\"");
                w.out += "</g>\n";
            }
        }
    }
    for (std::size_t r = 0; r < R; ++r) {
        const double y = lane_y(r);
        for (std::size_t p = 0; p < sch.ranks[r].size(); ++p) {
            const action a = sch.ranks[r][p];
            if (a.kind != op::STEP) continue;
            const auto [s, e] = times[r][p];
            const double x = block_x(e);
            w.out += "<g class=\"step\">";
            if (e > s) {
                w.rect("", block_x(s), y + 2, (e - s) * sx, row_h - 4, style_of(op::STEP).fill, 2);
                w.out += " opacity=\"0.85\"/>";
            }
            w.open("line");
            w.attr("x1", x);
            w.attr("x2", x);
            w.attr("y1", y - 2);
            w.attr("y2", y + row_h + 2);
            w.out += " stroke=\"#111827\" stroke-width=\"2.5\"/><path d=\"M";
            append_px(w.out, x - 4.5);
            w.out += ' ';
            append_px(w.out, y - 7);
            w.out += " L";
            append_px(w.out, x + 4.5);
            w.out += ' ';
            append_px(w.out, y - 7);
            w.out += " L";
            append_px(w.out, x);
            w.out += ' ';
            append_px(w.out, y - 1);
            w.out += " Z\" fill=\"#111827\"/><title>";
            append_xml_text(w.out, to_string(a));
            w.out += "</title></g>\n";
        }
    }

    // Time axis.
    w.out += "<g class=\"axis\" stroke=\"#6b7280\" stroke-width=\"1\">\n";
    w.open("line");
    w.attr("x1", left);
    w.attr("x2", left + plot_w);
    w.attr("y1", axis_y);
    w.attr("y2", axis_y);
    w.out += "/>\n";
    for (double t = 0; t < span + step * 1e-9; t += step) {
        w.open("line");
        w.attr("x1", left + t * sx);
        w.attr("x2", left + t * sx);
        w.attr("y1", axis_y);
        w.attr("y2", axis_y + 5);
        w.out += "/>\n";
    }
    w.out += "</g>\n";
    for (double t = 0; t < span + step * 1e-9; t += step)
        w.text(left + t * sx, axis_y + 18, format_tick(std::abs(t) < step * 1e-9 ? 0 : t),
               " font-size=\"11\" text-anchor=\"middle\" fill=\"#374151\"");
    w.text(left + plot_w, axis_y + 34, "time", " font-size=\"11\" text-anchor=\"end\" fill=\"#6b7280\"");

    // Legend: the kinds present, then the step mark and the drift badge.
    double lx = left;
    const auto legend_item = [&](std::string_view label) {
        w.text(lx + 20, legend_y + 11, label, " font-size=\"12\" fill=\"#374151\"");
        lx += 20 + static_cast<double>(label.size()) * 6.6 + 18;
    };
    for (const op o : {op::F, op::B, op::I, op::W, op::R, op::SEND_F}) {
        if (!present[static_cast<std::size_t>(o)]) continue;
        const svg_style st = style_of(o);
        if (o == op::SEND_F) w.rect("key", lx, legend_y + 5, 14, 3, st.fill);
        else w.rect("key", lx, legend_y, 14, 14, st.fill, 2);
        w.out += "/>\n";
        legend_item(st.legend);
    }
    if (present[static_cast<std::size_t>(op::STEP)]) {
        w.open("line");
        w.attr("x1", lx + 7);
        w.attr("x2", lx + 7);
        w.attr("y1", legend_y);
        w.attr("y2", legend_y + 15);
        w.out += " stroke=\"#111827\" stroke-width=\"2.5\"/>\n";
        legend_item("optimizer step");
    }
    if (pairs_drawn > 0) {
        w.out += "<g class=\"key-pair\">";
        w.rect("", lx, legend_y, 14, 7, style_of(op::F).fill);
        w.out += "/>";
        w.rect("", lx, legend_y + 7, 14, 7, style_of(op::B).fill);
        w.out += "/></g>\n";
        legend_item("overlapped pair (F above, B below)");
    }
    if (drifted > 0) {
        w.rect("key", lx, legend_y + 1, 17, 11, "#b91c1c", 5.5);
        w.out += "/>\n";
        w.text(lx + 8.5, legend_y + 9.5, "+k", " font-size=\"8\" font-weight=\"bold\" text-anchor=\"middle\" fill=\"#ffffff\"");
        legend_item("backward read weights k updates newer than its forward");
    }
    w.out += "</svg>\n";
    return std::move(w.out);
}

} // namespace detail

/// The schedule as a self-contained SVG timeline (no scripts, no external fonts or styles).
///
/// One lane per rank; a block per compute action (class `blk op-<op>`: F blue, B orange, I red,
/// W green, R purple; lighter for odd chunks when a rank holds several stages) labelled with its
/// micro-batch; communication as thin grey bars at the lane's
/// foot (class `comm`); every STEP as a dark vertical mark with a triangle on top (one `<g class="step">`
/// each). Given a replay, every backward (B or I) whose drift k is positive gets a dark red border and a
/// `+k` badge (one `<g class="drift">` each). A title, a summary line, a time axis and a legend of the
/// kinds present frame it; each block carries a `<title>` tooltip with its action text.
///
/// **Overlapped pairs** (`action::overlap_next`): when the two members' intervals overlap (the
/// simulator gives both the pair's span), each is drawn in half the lane so that neither hides the
/// other: the flagged member (the forward) in the top half (class `blk op-F pair-top`), its partner
/// (the backward) in the bottom half (`blk op-B pair-bottom`, or `op-I`); each tooltip reads its
/// action then the pair, `7B3 (overlapped pair (0F7;7B3)OVERLAP_F_B)`, and the legend gains a
/// `key-pair` entry. A backward's drift badge stays at the top right corner of its interval. Members
/// whose intervals do not overlap (program-order times, a hand-given table that runs them in turn)
/// are drawn as any other action.
///
/// `times` as for `to_chrome_trace` (empty: unit time per compute action in program order).
/// \throws config_error for an inconsistent schedule header, times that do not match the schedule
/// (another rank count or program length, or a simulator timeline of another schedule), `versions`
/// of another shape, or a width or row height out of range.
template <detail::timeline_like Times = action_times>
[[nodiscard]] std::string to_svg(const schedule& sch, const Times& times = {}, const replay_result* versions = nullptr,
                                 const svg_options& options = {}) {
    detail::check_times_source("to_svg", sch, times);
    if constexpr (std::is_same_v<Times, action_times>) return detail::timeline_svg(sch, times, versions, options);
    else return detail::timeline_svg(sch, detail::to_action_times(times), versions, options);
}

} // namespace paci
