#pragma once
/// \file
/// What a training run reports, and the outputs: the table, results/training.json, SVG plots, and a
/// line format that carries the MPI job's runs (paci-lm --mpi) to the report.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <limits>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

namespace paci_lm {

/// One evaluation: after `samples` training samples, the held-out loss, the mean training loss since
/// the previous evaluation, the measured training wall-clock so far (evaluations excluded) and, where
/// there is one, the modelled time.
struct curve_point {
    std::int64_t samples = 0;
    double heldout = 0;
    double train = 0;
    double seconds = 0;
    double modelled = std::numeric_limits<double>::quiet_NaN();
};

struct run_record {
    std::string policy;    ///< as printed ("PACI a=4")
    std::string kind;      ///< gpipe, 1f1b, zb-h1, paci, paci-recompute
    int stages = 0;
    int a = 0;             ///< micro-batches per update
    int batch = 0;         ///< samples per micro-batch
    std::string transport; ///< inprocess or mpi
    std::int64_t samples = 0;
    double final_heldout = 0;
    double target = 0;
    std::optional<double> time_to_target;          ///< measured wall-clock (training only), s
    std::optional<double> modelled_time_to_target; ///< modelled, s
    std::optional<std::int64_t> updates_to_target;
    double samples_per_s = 0;
    std::vector<int> max_drift, drift_bound, peak_activations, weight_versions;
    std::vector<curve_point> curve;
    double predicted_ratio = std::numeric_limits<double>::quiet_NaN(); ///< MPI: simulated flush/PACI time
    double measured_ratio = std::numeric_limits<double>::quiet_NaN();  ///< MPI: measured flush/PACI time

    [[nodiscard]] bool is_paci() const { return kind.rfind("paci", 0) == 0; }
};

// ---- the line format (paci-lm --mpi -> paci-lm) ------------------------------------------------------

namespace detail {
inline std::string num(double v) {
    if (std::isnan(v)) return "nan";
    std::ostringstream os;
    os << std::setprecision(17) << v;
    return os.str();
}
inline std::string ints(const std::vector<int>& v) {
    std::string s;
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i) s += ',';
        s += std::to_string(v[i]);
    }
    return s;
}
inline std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::string item;
    std::stringstream ss(s);
    while (std::getline(ss, item, sep)) out.push_back(item);
    return out;
}
inline std::vector<int> parse_ints(const std::string& s) {
    std::vector<int> out;
    for (const auto& x : split(s, ',')) out.push_back(std::stoi(x));
    return out;
}
inline double parse_num(const std::string& s) { return s == "nan" ? std::numeric_limits<double>::quiet_NaN() : std::stod(s); }
} // namespace detail

/// One line, tab-separated `key=value` fields.
[[nodiscard]] inline std::string to_line(const run_record& r) {
    using detail::num;
    std::ostringstream os;
    os << "policy=" << r.policy << "\tkind=" << r.kind << "\tstages=" << r.stages << "\ta=" << r.a << "\tbatch=" << r.batch
       << "\ttransport=" << r.transport << "\tsamples=" << r.samples << "\tfinal=" << num(r.final_heldout)
       << "\ttarget=" << num(r.target) << "\tttt=" << (r.time_to_target ? num(*r.time_to_target) : "null")
       << "\tmodelled=" << (r.modelled_time_to_target ? num(*r.modelled_time_to_target) : "null")
       << "\tupdates=" << (r.updates_to_target ? std::to_string(*r.updates_to_target) : "null")
       << "\tsps=" << num(r.samples_per_s) << "\tdrift=" << detail::ints(r.max_drift) << "\tbound=" << detail::ints(r.drift_bound)
       << "\tactivations=" << detail::ints(r.peak_activations) << "\tversions=" << detail::ints(r.weight_versions)
       << "\tpredicted=" << num(r.predicted_ratio) << "\tmeasured=" << num(r.measured_ratio) << "\tcurve=";
    for (std::size_t i = 0; i < r.curve.size(); ++i) {
        const auto& p = r.curve[i];
        os << (i ? ";" : "") << p.samples << ':' << num(p.heldout) << ':' << num(p.train) << ':' << num(p.seconds) << ':'
           << num(p.modelled);
    }
    return os.str();
}

/// Reads a line written by `to_line`. \throws std::invalid_argument / std::out_of_range on a bad line.
[[nodiscard]] inline run_record from_line(const std::string& line) {
    run_record r;
    for (const auto& field : detail::split(line, '\t')) {
        const auto eq = field.find('=');
        if (eq == std::string::npos) throw std::invalid_argument("field without '=': " + field);
        const std::string k = field.substr(0, eq), v = field.substr(eq + 1);
        const auto opt = [&](const std::string& x) { return x == "null" ? std::optional<double>{} : std::optional<double>{detail::parse_num(x)}; };
        if (k == "policy") r.policy = v;
        else if (k == "kind") r.kind = v;
        else if (k == "stages") r.stages = std::stoi(v);
        else if (k == "a") r.a = std::stoi(v);
        else if (k == "batch") r.batch = std::stoi(v);
        else if (k == "transport") r.transport = v;
        else if (k == "samples") r.samples = std::stoll(v);
        else if (k == "final") r.final_heldout = detail::parse_num(v);
        else if (k == "target") r.target = detail::parse_num(v);
        else if (k == "ttt") r.time_to_target = opt(v);
        else if (k == "modelled") r.modelled_time_to_target = opt(v);
        else if (k == "updates") r.updates_to_target = v == "null" ? std::optional<std::int64_t>{} : std::optional<std::int64_t>{std::stoll(v)};
        else if (k == "sps") r.samples_per_s = detail::parse_num(v);
        else if (k == "drift") r.max_drift = detail::parse_ints(v);
        else if (k == "bound") r.drift_bound = detail::parse_ints(v);
        else if (k == "activations") r.peak_activations = detail::parse_ints(v);
        else if (k == "versions") r.weight_versions = detail::parse_ints(v);
        else if (k == "predicted") r.predicted_ratio = detail::parse_num(v);
        else if (k == "measured") r.measured_ratio = detail::parse_num(v);
        else if (k == "curve") {
            for (const auto& pt : detail::split(v, ';')) {
                const auto f = detail::split(pt, ':');
                if (f.size() != 5) throw std::invalid_argument("curve point: " + pt);
                r.curve.push_back({std::stoll(f[0]), detail::parse_num(f[1]), detail::parse_num(f[2]), detail::parse_num(f[3]),
                                   detail::parse_num(f[4])});
            }
        }
    }
    return r;
}

// ---- training.json ---------------------------------------------------------------------------------

namespace detail {
inline std::string json_num(double v) {
    if (!std::isfinite(v)) return "null";
    std::ostringstream os;
    os << std::setprecision(6) << v;
    return os.str();
}
inline std::string json_opt(const std::optional<double>& v) { return v ? json_num(*v) : "null"; }
inline std::string json_ints(const std::vector<int>& v) {
    std::string s(1, '[');
    s += ints(v);
    s += ']';
    return s;
}
inline std::string json_str(const std::string& s) {
    std::string o = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        o += c;
    }
    return o + "\"";
}
} // namespace detail

/// `results/training.json`: one object per run.
[[nodiscard]] inline std::string to_json(const std::vector<run_record>& runs) {
    using namespace detail;
    std::ostringstream os;
    os << "[\n";
    for (std::size_t i = 0; i < runs.size(); ++i) {
        const run_record& r = runs[i];
        os << "  {\"policy\": " << json_str(r.policy) << ", \"stages\": " << r.stages
           << ", \"microbatches_per_update\": " << r.a << ", \"microbatch_size\": " << r.batch
           << ", \"transport\": " << json_str(r.transport) << ", \"samples\": " << r.samples
           << ", \"final_heldout_loss\": " << json_num(r.final_heldout) << ", \"target_loss\": " << json_num(r.target)
           << ", \"time_to_target_s\": " << json_opt(r.time_to_target)
           << ", \"modelled_time_to_target\": " << json_opt(r.modelled_time_to_target)
           << ", \"samples_per_s\": " << json_num(r.samples_per_s) << ", \"max_drift\": " << json_ints(r.max_drift)
           << ", \"drift_bound\": " << json_ints(r.drift_bound) << ", \"peak_activations\": " << json_ints(r.peak_activations)
           << ", \"weight_versions\": " << json_ints(r.weight_versions) << ", \"curve\": [";
        for (std::size_t k = 0; k < r.curve.size(); ++k) {
            const auto& p = r.curve[k];
            os << (k ? ", " : "") << "{\"samples\": " << p.samples << ", \"heldout_loss\": " << json_num(p.heldout)
               << ", \"train_loss\": " << json_num(p.train) << ", \"seconds\": " << json_num(p.seconds)
               << ", \"modelled_seconds\": " << json_num(p.modelled) << "}";
        }
        os << "]}" << (i + 1 < runs.size() ? "," : "") << "\n";
    }
    os << "]\n";
    return os.str();
}

// ---- SVG line plots --------------------------------------------------------------------------------

struct series {
    std::string name;
    std::vector<std::pair<double, double>> points;
    std::string colour;
    bool dashed = false;
};

namespace detail {
/// About `n` round tick values covering [lo, hi].
inline std::vector<double> ticks(double lo, double hi, int n) {
    const double raw = (hi - lo) / n;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    double step = mag;
    for (const double m : {1.0, 2.0, 2.5, 5.0, 10.0})
        if (m * mag >= raw) {
            step = m * mag;
            break;
        }
    std::vector<double> out;
    for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
    return out;
}
inline std::string fmt(double v) {
    std::ostringstream os;
    if (std::abs(v) >= 1000 && std::abs(v) < 1e9) os << std::fixed << std::setprecision(0) << v; // 20000, not 2e+04
    else os << std::setprecision(4) << v;
    return os.str();
}
inline std::string esc(const std::string& s) {
    std::string o;
    for (const char c : s) {
        if (c == '<') o += "&lt;";
        else if (c == '>') o += "&gt;";
        else if (c == '&') o += "&amp;";
        else o += c;
    }
    return o;
}
} // namespace detail

/// A self-contained SVG line plot: one line per series, a dashed horizontal line at `target`, and a
/// legend. The y range covers the points after the first (the first evaluation is far above the rest).
[[nodiscard]] inline std::string svg_plot(const std::string& title, const std::string& subtitle, const std::string& xlabel,
                                          const std::string& ylabel, const std::vector<series>& lines, double target) {
    using detail::fmt;
    const double W = 760, H = 470, L = 70, R = 220, T = 58, B = 52;
    const double pw = W - L - R, ph = H - T - B;
    double xmax = 0, ymin = target, ymax = target;
    for (const auto& s : lines)
        for (std::size_t i = 0; i < s.points.size(); ++i) {
            xmax = std::max(xmax, s.points[i].first);
            ymin = std::min(ymin, s.points[i].second);
            if (i >= 1) ymax = std::max(ymax, s.points[i].second);
        }
    if (xmax <= 0) xmax = 1;
    ymin -= 0.03 * (ymax - ymin + 0.1);
    ymax += 0.03 * (ymax - ymin + 0.1);
    const auto X = [&](double x) { return L + pw * x / xmax; };
    const auto Y = [&](double y) { return T + ph * (1 - (y - ymin) / (ymax - ymin)); };
    std::ostringstream o;
    o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W << ' ' << H
      << "\" font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << L << "\" y=\"22\" font-size=\"15\" font-weight=\"bold\">" << detail::esc(title) << "</text>\n"
      << "<text x=\"" << L << "\" y=\"40\" fill=\"#555\">" << detail::esc(subtitle) << "</text>\n"
      << "<defs><clipPath id=\"plot\"><rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << pw << "\" height=\"" << ph
      << "\"/></clipPath></defs>\n";
    for (const double t : detail::ticks(0, xmax, 6)) {
        o << "<line x1=\"" << X(t) << "\" y1=\"" << T << "\" x2=\"" << X(t) << "\" y2=\"" << T + ph << "\" stroke=\"#e4e4e4\"/>\n"
          << "<text x=\"" << X(t) << "\" y=\"" << T + ph + 17 << "\" text-anchor=\"middle\">" << fmt(t) << "</text>\n";
    }
    for (const double t : detail::ticks(ymin, ymax, 6)) {
        o << "<line x1=\"" << L << "\" y1=\"" << Y(t) << "\" x2=\"" << L + pw << "\" y2=\"" << Y(t) << "\" stroke=\"#e4e4e4\"/>\n"
          << "<text x=\"" << L - 6 << "\" y=\"" << Y(t) + 4 << "\" text-anchor=\"end\">" << fmt(t) << "</text>\n";
    }
    o << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << pw << "\" height=\"" << ph << "\" fill=\"none\" stroke=\"#333\"/>\n"
      << "<text x=\"" << L + pw / 2 << "\" y=\"" << H - 12 << "\" text-anchor=\"middle\">" << detail::esc(xlabel) << "</text>\n"
      << "<text transform=\"translate(18," << T + ph / 2 << ") rotate(-90)\" text-anchor=\"middle\">" << detail::esc(ylabel)
      << "</text>\n"
      << "<line x1=\"" << L << "\" y1=\"" << Y(target) << "\" x2=\"" << L + pw << "\" y2=\"" << Y(target)
      << "\" stroke=\"#888\" stroke-dasharray=\"2,4\"/>\n"
      << "<text x=\"" << L + pw - 4 << "\" y=\"" << Y(target) - 5 << "\" text-anchor=\"end\" fill=\"#666\">target "
      << fmt(target) << "</text>\n";
    for (std::size_t k = 0; k < lines.size(); ++k) {
        const series& s = lines[k];
        o << "<polyline clip-path=\"url(#plot)\" fill=\"none\" stroke=\"" << s.colour << "\" stroke-width=\"2\""
          << (s.dashed ? " stroke-dasharray=\"7,4\"" : "") << " points=\"";
        for (const auto& [x, y] : s.points) o << fmt(X(x)) << ',' << fmt(Y(y)) << ' ';
        o << "\"/>\n";
        const double ly = T + 10 + 20.0 * static_cast<double>(k);
        o << "<line x1=\"" << L + pw + 14 << "\" y1=\"" << ly << "\" x2=\"" << L + pw + 44 << "\" y2=\"" << ly << "\" stroke=\""
          << s.colour << "\" stroke-width=\"2\"" << (s.dashed ? " stroke-dasharray=\"7,4\"" : "") << "/>\n"
          << "<text x=\"" << L + pw + 50 << "\" y=\"" << ly + 4 << "\">" << detail::esc(s.name) << "</text>\n";
    }
    o << "</svg>\n";
    return o.str();
}

/// A colour per policy kind, lighter for smaller a (unless `strong`); flush-like policies solid,
/// PACI dashed.
[[nodiscard]] inline series series_of(const run_record& r, std::vector<std::pair<double, double>> pts, bool strong = false) {
    static const char* paci[] = {"#9ecae1", "#4292c6", "#08519c"};
    static const char* flush[] = {"#fdae6b", "#f16913", "#a63603"};
    const int shade = strong ? 2 : r.a <= 2 ? 0 : r.a <= 4 ? 1 : 2;
    std::string colour = r.kind == "paci"             ? paci[shade]
                         : r.kind == "paci-recompute" ? "#6a51a3"
                         : r.kind == "1f1b"           ? flush[shade]
                         : r.kind == "gpipe"          ? "#238b45"
                                                      : "#e7298a";
    std::string name = r.policy + (r.stages != 4 ? ", P=" + std::to_string(r.stages) : "");
    return {name, std::move(pts), colour, r.kind == "paci" || r.kind == "paci-recompute"};
}

} // namespace paci_lm
