#pragma once
/// \file
/// The command line of paci-lm (and of its MPI job, --mpi): options, their parsing, and the checks of the input
/// (each failure is a message and exit status 2).

#include "model.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace paci_lm {

/// One training run's policy: which schedule and its micro-batches per update.
struct policy_spec {
    std::string kind; ///< gpipe, 1f1b, zb-h1, paci, paci-recompute
    int a = 8;
    friend bool operator==(const policy_spec&, const policy_spec&) = default;
};

/// The name a person reads (tables, plots, JSON): "PACI a=4", "1F1B-flush a=8".
[[nodiscard]] inline std::string display_name(const policy_spec& p) {
    std::string n = p.kind == "gpipe"            ? "GPipe"
                    : p.kind == "1f1b"           ? "1F1B-flush"
                    : p.kind == "zb-h1"          ? "ZB-H1"
                    : p.kind == "paci"           ? "PACI"
                    : p.kind == "paci-recompute" ? "PACI-recompute"
                                                 : p.kind;
    return n + " a=" + std::to_string(p.a);
}

inline constexpr std::string_view policy_kinds = "gpipe, 1f1b, zb-h1, paci, paci-recompute";

struct options {
    std::string data;                 ///< empty: the fortunes package's text
    int stages = 4;                   ///< P of the in-process runs (the MPI job has one stage per process)
    int modelled_stages = 8;          ///< P of the runs behind the modelled times (0: none)
    std::vector<policy_spec> policies{{"gpipe", 8},     {"1f1b", 2}, {"1f1b", 4}, {"1f1b", 8},           {"zb-h1", 8},
                                      {"paci", 2},      {"paci", 4}, {"paci", 8}, {"paci-recompute", 8}};
    int a = 2;                        ///< --mpi: micro-batches per update of both policies
    int microbatch = 32;              ///< samples per micro-batch
    std::int64_t samples = 98304;     ///< training samples per run
    int evals = 16;                   ///< held-out evaluations per run (each drains the pipeline)
    double target = 2.45;             ///< target held-out loss (nats per character)
    std::uint64_t seed = 1;
    std::string results = "results";  ///< where plots and training.json go
    std::string mpi_results;          ///< records written by the MPI job to include in the report
    std::string out;                  ///< --mpi: where to write its records
    bool help = false;
};

/// A usage error: the message for stderr; the exit status is 2.
struct usage_error {
    std::string message;
};

namespace detail {

template <class I>
std::optional<I> to_int(std::string_view s) {
    I v{};
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
}
inline std::optional<double> to_double(const std::string& s) {
    if (s.empty()) return std::nullopt;
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(s.c_str(), &end);
    if (errno != 0 || end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
    return v;
}

} // namespace detail

/// Parses one `kind:a` policy (`paci:4`), or gives the usage error.
[[nodiscard]] inline std::optional<policy_spec> parse_policy(std::string_view s, std::string& error) {
    const auto colon = s.find(':');
    const std::string kind(s.substr(0, colon));
    if (kind != "gpipe" && kind != "1f1b" && kind != "zb-h1" && kind != "paci" && kind != "paci-recompute") {
        error = "paci-lm: --policies: unknown policy '" + kind + "' (expected " + std::string(policy_kinds) +
                ", each with :a, for example paci:4)";
        return std::nullopt;
    }
    if (colon == std::string_view::npos) {
        error = "paci-lm: --policies: '" + std::string(s) + "' needs its micro-batches per update, for example " + kind + ":8";
        return std::nullopt;
    }
    const auto a = detail::to_int<int>(s.substr(colon + 1));
    if (!a || *a < 1 || *a > 4096) {
        error = "paci-lm: --policies: '" + std::string(s) + "': the micro-batches per update must be an integer in [1, 4096]";
        return std::nullopt;
    }
    return policy_spec{kind, *a};
}

inline constexpr std::string_view usage_text =
    "usage: paci-lm [--data FILE] [--stages P] [--modelled-stages P8] [--policies LIST] [--microbatch B]\n"
    "               [--samples N] [--evals K] [--target LOSS] [--seed S] [--results DIR] [--mpi-results FILE]\n"
    "       mpirun -np P paci-lm --mpi --out FILE [--data FILE] [--a A] [--microbatch B] [--samples N]\n"
    "               [--evals K] [--target LOSS] [--seed S]\n"
    "Trains a character-level language model on real text (default: the fortunes package) with every\n"
    "policy of LIST (kind:a, comma-separated; kinds: gpipe, 1f1b, zb-h1, paci, paci-recompute).\n";

/// Parses the command line (`args` without the program name).
[[nodiscard]] inline std::variant<options, usage_error> parse(const std::vector<std::string>& args) {
    options o;
    const auto fail = [](std::string m) { return usage_error{"paci-lm: " + std::move(m)}; };
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& flag = args[i];
        if (flag == "--help" || flag == "-h") {
            o.help = true;
            continue;
        }
        static const std::vector<std::string> known = {"--data",   "--stages", "--modelled-stages", "--policies", "--a",
                                                       "--microbatch", "--samples", "--evals", "--target", "--seed",
                                                       "--results", "--mpi-results", "--out"};
        if (std::find(known.begin(), known.end(), flag) == known.end()) return fail("unknown flag '" + flag + "' (see --help)");
        if (i + 1 >= args.size()) return fail(flag + ": missing value");
        const std::string v = args[++i];
        const auto integer = [&](std::int64_t lo, std::int64_t hi) -> std::optional<std::int64_t> {
            const auto x = detail::to_int<std::int64_t>(v);
            if (!x || *x < lo || *x > hi) return std::nullopt;
            return x;
        };
        const auto range = [&](std::int64_t lo, std::int64_t hi) {
            return fail(flag + ": '" + v + "' must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
        };
        if (flag == "--data") o.data = v;
        else if (flag == "--results") o.results = v;
        else if (flag == "--mpi-results") o.mpi_results = v;
        else if (flag == "--out") o.out = v;
        else if (flag == "--policies") {
            o.policies.clear();
            std::stringstream ss(v);
            std::string item, error;
            while (std::getline(ss, item, ',')) {
                const auto p = parse_policy(item, error);
                if (!p) return usage_error{error};
                o.policies.push_back(*p);
            }
            if (o.policies.empty()) return fail("--policies: empty list");
        } else if (flag == "--target") {
            const auto x = detail::to_double(v);
            if (!x || *x <= 0) return fail("--target: '" + v + "' must be a positive number (nats per character)");
            o.target = *x;
        } else if (flag == "--seed") {
            const auto x = detail::to_int<std::uint64_t>(v);
            if (!x) return fail("--seed: '" + v + "' must be a non-negative integer");
            o.seed = *x;
        } else {
            struct bounds {
                std::int64_t lo, hi;
            };
            const bounds b = flag == "--stages"            ? bounds{1, 64}
                             : flag == "--modelled-stages" ? bounds{0, 64}
                             : flag == "--a"               ? bounds{1, 4096}
                             : flag == "--microbatch"      ? bounds{1, 65536}
                             : flag == "--samples"         ? bounds{1, std::int64_t{1} << 40}
                                                           : bounds{1, 10000}; // --evals
            const auto x = integer(b.lo, b.hi);
            if (!x) return range(b.lo, b.hi);
            if (flag == "--stages") o.stages = static_cast<int>(*x);
            else if (flag == "--modelled-stages") o.modelled_stages = static_cast<int>(*x);
            else if (flag == "--a") o.a = static_cast<int>(*x);
            else if (flag == "--microbatch") o.microbatch = static_cast<int>(*x);
            else if (flag == "--samples") o.samples = *x;
            else o.evals = static_cast<int>(*x);
        }
    }
    return o;
}

/// The model configuration the options describe.
[[nodiscard]] inline lm_config config_of(const options& o) {
    lm_config c;
    c.batch = o.microbatch;
    c.seed = o.seed;
    return c;
}

/// Loads the text and checks everything that depends on it and on the model: `--data` missing or
/// empty, a text shorter than one micro-batch, more stages than the model has layers.
[[nodiscard]] inline std::variant<corpus, usage_error> prepare(const options& o, const std::vector<int>& stage_counts) {
    const lm_config c = config_of(o);
    for (const int P : stage_counts)
        if (P > c.layers())
            return usage_error{"paci-lm: --stages: " + std::to_string(P) + " is larger than the model's layers (" +
                               std::to_string(c.layers()) + ": " + std::to_string(c.blocks) + " hidden blocks and the head)"};
    std::string text;
    if (o.data.empty()) {
        try {
            text = read_fortunes();
        } catch (const std::exception& e) {
            return usage_error{std::string("paci-lm: cannot read the fortunes package's text (") + e.what() +
                               "); install it (apt-get install fortunes) or give --data FILE"};
        }
        if (text.empty())
            return usage_error{"paci-lm: no text in /usr/share/games/fortunes; install the fortunes package or give --data FILE"};
    } else {
        std::error_code ec;
        if (!std::filesystem::is_regular_file(o.data, ec))
            return usage_error{"paci-lm: --data: '" + o.data + "' does not exist or is not a regular file"};
        try {
            text = read_file(o.data);
        } catch (const std::exception& e) {
            return usage_error{"paci-lm: --data: " + std::string(e.what())};
        }
        if (text.empty()) return usage_error{"paci-lm: --data: '" + o.data + "' is empty"};
    }
    corpus k = corpus_from_text(text);
    const std::size_t need = static_cast<std::size_t>(c.context) + static_cast<std::size_t>(c.batch);
    if (k.train.size() < need || k.heldout.size() < static_cast<std::size_t>(c.context) + 1)
        return usage_error{"paci-lm: the text (" + std::to_string(k.train.size() + k.heldout.size()) +
                           " usable characters: " + std::to_string(k.train.size()) + " for training, " +
                           std::to_string(k.heldout.size()) + " held out) is shorter than one micro-batch: it needs " +
                           std::to_string(need) + " training characters (" + std::to_string(c.batch) +
                           " samples after a window of " + std::to_string(c.context) + ") and " +
                           std::to_string(c.context + 1) + " held out"};
    return k;
}

} // namespace paci_lm
