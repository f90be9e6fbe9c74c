#pragma once
/// \file
/// Chrome trace JSON (opens in Perfetto and chrome://tracing): one track per rank, a slice per action,
/// flow arrows from each SEND to its RECV, the weight version each action read.

#include <paci/analysis/replay.hpp>
#include <paci/core/action.hpp>
#include <paci/core/error.hpp>
#include <paci/core/schedule.hpp>
#include <paci/io/detail/text.hpp>
#include <paci/io/detail/times.hpp>

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace paci {

/// How `to_chrome_trace` names and scales things.
struct chrome_trace_options {
    double time_scale = 1.0; ///< microseconds per time unit of the times (the trace's `ts`/`dur` are in µs)
    std::string name{};      ///< process name; empty: the schedule's `policy` (or `"paci"`)
    friend bool operator==(const chrome_trace_options&, const chrome_trace_options&) = default;
};

namespace detail {

/// Appends `text` as a JSON string literal (quotes included): well-formed UTF-8 passes through, a
/// byte that is not becomes U+FFFD, so the document stays valid JSON whatever the names hold.
inline void append_json_string(std::string& out, std::string_view text) {
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    append_utf8_text(out, text, [&out](char c) {
        const auto u = static_cast<unsigned char>(c);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
            if (u < 0x20) {
                out += "\\u00";
                out += hex[u >> 4];
                out += hex[u & 0xF];
            } else {
                out += c;
            }
        }
    });
    out += '"';
}

/// Appends a finite double in its shortest round-trip form (valid JSON).
inline void append_json_number(std::string& out, double v) {
    char buf[32];
    const auto res = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, res.ptr);
}

inline void append_json_int(std::string& out, std::int64_t v) {
    char buf[24];
    const auto res = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, res.ptr);
}

/// The weight version `a` read, from a replay, or -1.
[[nodiscard]] inline version_t version_read(const action& a, const replay_result& rep) {
    if (a.stage < 0 || a.stage >= rep.stages || a.microbatch < 0 || a.microbatch >= rep.microbatches) return -1;
    const version_record& rec = rep.at(a.stage, a.microbatch);
    switch (a.kind) {
    case op::F: return rec.forward;
    case op::B:
    case op::I: return rec.backward;
    case op::W: return rec.weight;
    case op::R: return rec.recompute;
    default: return -1;
    }
}

[[nodiscard]] inline std::string chrome_trace(const schedule& sch, const action_times& given, const replay_result* versions,
                                              const chrome_trace_options& options) {
    constexpr std::string_view api = "to_chrome_trace";
    config_require(std::isfinite(options.time_scale) && options.time_scale > 0, api, "time_scale", options.time_scale,
                   "must be finite and > 0");
    check_schedule(api, sch);
    check_size(api, "trace size", sch.size(), mul_sat(sch.size(), 400)); // about 160 bytes of JSON per action, then times
    check_versions(api, sch, versions);
    const action_times times = resolve_times(api, sch, given);
    const double k = options.time_scale;
    // JSON has no infinity: every scaled time, and every scaled duration, must stay finite.
    for (std::size_t r = 0; r < times.size(); ++r)
        for (std::size_t p = 0; p < times[r].size(); ++p) {
            const auto [s, e] = times[r][p];
            if (!(std::isfinite(s * k) && std::isfinite(e * k) && std::isfinite((e - s) * k)))
                config_fail(api, concat("times[", r, "][", p, "] x time_scale"), concat(s * k, ", ", e * k),
                            "must be finite (JSON has no infinity)");
        }
    std::string out;
    out.reserve(sch.size() * 160 + 512);

    out += "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"generator\":\"paci\",\"policy\":";
    append_json_string(out, sch.policy);
    out += "},\"traceEvents\":[\n";
    bool first = true;
    const auto begin_event = [&] {
        if (!first) out += ",\n";
        first = false;
        out += '{';
    };
    const auto meta = [&](std::string_view what, std::size_t tid, std::string_view key, const auto& value) {
        begin_event();
        out += "\"name\":";
        append_json_string(out, what);
        out += ",\"ph\":\"M\",\"pid\":0,\"tid\":";
        append_json_int(out, static_cast<std::int64_t>(tid));
        out += ",\"args\":{";
        append_json_string(out, key);
        out += ':';
        if constexpr (std::is_convertible_v<decltype(value), std::string_view>) append_json_string(out, value);
        else append_json_int(out, static_cast<std::int64_t>(value));
        out += "}}";
    };
    const std::string process = !options.name.empty() ? options.name : !sch.policy.empty() ? sch.policy : "paci";
    meta("process_name", 0, "name", std::string_view(process));
    // An overlapped pair whose members' intervals overlap (the simulator gives both the pair's span)
    // would nest arbitrarily on one track: its second member goes to the rank's overlap track,
    // tid R + r, listed right after the rank's own (sort indices 2r and 2r + 1 then).
    const std::size_t R = sch.ranks.size();
    const auto opens_pair = [&](std::size_t r, std::size_t p) {
        const auto& prog = sch.ranks[r];
        return detail::opens_pair(prog, p) && times[r][p].first < times[r][p + 1].second &&
               times[r][p + 1].first < times[r][p].second;
    };
    std::vector<bool> overlap_track(R, false);
    bool any_pair = false;
    for (std::size_t r = 0; r < R; ++r)
        for (std::size_t p = 0; p < sch.ranks[r].size() && !overlap_track[r]; ++p)
            if (opens_pair(r, p)) overlap_track[r] = any_pair = true;
    for (std::size_t r = 0; r < R; ++r) {
        meta("thread_name", r, "name", std::string_view(concat("rank ", r)));
        meta("thread_sort_index", r, "sort_index", any_pair ? 2 * r : r);
        if (overlap_track[r]) {
            meta("thread_name", R + r, "name", std::string_view(concat("rank ", r, " (overlapped)")));
            meta("thread_sort_index", R + r, "sort_index", 2 * r + 1);
        }
    }

    // Slices, one per action; SENDs and RECVs remembered for the flow arrows.
    using key = std::tuple<int, int, int>; // partner-side identity: (kind, stage, micro-batch) of the SEND
    std::map<key, std::deque<std::pair<std::size_t, std::size_t>>> sends;
    std::vector<std::pair<std::size_t, std::size_t>> recvs;
    for (std::size_t r = 0; r < sch.ranks.size(); ++r) {
        const auto& prog = sch.ranks[r];
        std::size_t second = prog.size(); // position of the partner of the pair last opened
        for (std::size_t p = 0; p < prog.size(); ++p) {
            const action a = prog[p];
            const auto [start, end] = times[r][p];
            // 0: no pair, 1: opens an overlapped pair, 2: closes one (drawn on the overlap track).
            int member = 0;
            if (p == second) {
                member = 2;
            } else if (overlap_track[r] && opens_pair(r, p)) {
                member = 1;
                second = p + 1;
            }
            begin_event();
            out += "\"name\":";
            append_json_string(out, to_string(a));
            out += ",\"cat\":";
            out += is_comm(a.kind) ? "\"comm\"" : a.kind == op::STEP ? "\"optimizer\"" : "\"compute\"";
            out += ",\"ph\":\"X\",\"pid\":0,\"tid\":";
            append_json_int(out, static_cast<std::int64_t>(member == 2 ? R + r : r));
            out += ",\"ts\":";
            append_json_number(out, start * k);
            out += ",\"dur\":";
            append_json_number(out, (end - start) * k);
            out += ",\"args\":{\"op\":";
            append_json_string(out, to_string(a.kind));
            out += ",\"stage\":";
            append_json_int(out, a.stage);
            out += a.kind == op::STEP ? ",\"update\":" : ",\"microbatch\":";
            append_json_int(out, a.microbatch);
            if (member != 0) {
                out += ",\"overlapped_pair\":";
                append_json_string(out, member == 1 ? to_string(a, prog[p + 1]) : to_string(prog[p - 1], a));
            }
            if (is_comm(a.kind)) {
                const int peer = comm_peer_stage(a);
                if (peer >= 0 && peer < sch.shape.stages) {
                    out += ",\"peer_rank\":";
                    append_json_int(out, sch.shape.rank_of(peer));
                }
                if (a.kind == op::SEND_F || a.kind == op::SEND_B)
                    sends[{static_cast<int>(a.kind), a.stage, a.microbatch}].emplace_back(r, p);
                else
                    recvs.emplace_back(r, p);
            } else if (versions != nullptr && is_compute(a.kind)) {
                const version_t v = version_read(a, *versions);
                if (v >= 0) {
                    out += ",\"version\":";
                    append_json_int(out, v);
                }
                if ((a.kind == op::B || a.kind == op::I) && v >= 0) {
                    const int drift = versions->at(a.stage, a.microbatch).drift();
                    if (drift >= 0) {
                        out += ",\"drift\":";
                        append_json_int(out, drift);
                    }
                }
            }
            out += "}}";
        }
    }

    // Flow arrows: each RECV to the first unmatched SEND it pairs with, in program order.
    std::int64_t id = 0;
    for (const auto& [rr, rp] : recvs) {
        const action recv = sch.ranks[rr][rp];
        const action send = comm_partner(recv);
        const auto it = sends.find({static_cast<int>(send.kind), send.stage, send.microbatch});
        if (it == sends.end() || it->second.empty()) continue;
        const auto [sr, sp] = it->second.front();
        it->second.pop_front();
        const auto mid = [&](std::size_t r, std::size_t p) { return (times[r][p].first + times[r][p].second) / 2 * k; };
        const std::string name = to_string(sch.ranks[sr][sp]);
        for (int end = 0; end < 2; ++end) {
            begin_event();
            out += "\"name\":";
            append_json_string(out, name);
            out += end == 0 ? ",\"cat\":\"comm\",\"ph\":\"s\",\"id\":" : ",\"cat\":\"comm\",\"ph\":\"f\",\"bp\":\"e\",\"id\":";
            append_json_int(out, id);
            out += ",\"pid\":0,\"tid\":";
            append_json_int(out, static_cast<std::int64_t>(end == 0 ? sr : rr));
            out += ",\"ts\":";
            append_json_number(out, end == 0 ? mid(sr, sp) : mid(rr, rp));
            out += '}';
        }
        ++id;
    }
    out += "\n]}\n";
    return out;
}

} // namespace detail

/// The schedule as Chrome trace JSON, for Perfetto (ui.perfetto.dev) or chrome://tracing.
///
/// One process, one track (`tid`) per rank named `rank r` (and an overlap track for a rank that
/// runs overlapped pairs, see below); one complete event (`"ph":"X"`) per action,
/// named by its text (`0F3`), in category `compute` (F, B, I, W, R), `optimizer` (STEP) or `comm`
/// (SEND/RECV), with `ts`/`dur` in microseconds (`times` × `options.time_scale`); a flow arrow
/// (`"ph":"s"` then `"ph":"f"`, `"bp":"e"`, one id per pair) from every SEND to its matching RECV.
/// `args` hold the op, stage and micro-batch (or update ordinal), the peer rank of communication and,
/// given a replay, the weight `version` the action read (forward's for F, backward's for B and I,
/// weight's for W, recompute's for R) and the `drift` of backwards.
///
/// **Overlapped pairs** (`action::overlap_next`): when the two members' intervals overlap (the
/// simulator gives both the pair's span), two complete events on one track would nest arbitrarily,
/// so the second member (the backward) goes on the rank's overlap track, `tid` = ranks + r, named
/// `rank r (overlapped)`; the ranks' tracks then sort at `2r` and their overlap tracks at `2r + 1`.
/// Both members carry `args.overlapped_pair`, the pair's text (`(0F7;7B3)OVERLAP_F_B`), besides the
/// usual args. Members whose intervals do not overlap stay on the rank's track like any action, and a
/// schedule with no such pair is written exactly as before pairs existed.
///
/// `times[rank][position]` is {start, end} in any unit: `action_times`, or the simulator's
/// `simulation::times`; empty gives unit time per compute action in program order.
/// \throws config_error if the schedule's header is inconsistent, `times` does not match the schedule
/// (another rank count or program length, or a simulator timeline of another schedule), holds a
/// non-finite or reversed interval or one that `time_scale` makes infinite, or `versions` replays
/// another shape.
template <detail::timeline_like Times = action_times>
[[nodiscard]] std::string to_chrome_trace(const schedule& sch, const Times& times = {},
                                          const replay_result* versions = nullptr,
                                          const chrome_trace_options& options = {}) {
    detail::check_times_source("to_chrome_trace", sch, times);
    if constexpr (std::is_same_v<Times, action_times>) return detail::chrome_trace(sch, times, versions, options);
    else return detail::chrome_trace(sch, detail::to_action_times(times), versions, options);
}

} // namespace paci
