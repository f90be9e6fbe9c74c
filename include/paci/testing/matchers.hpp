#pragma once
/// \file
/// Catch2 matchers (v2 and v3) for users' own unit tests:
///
///     REQUIRE_THAT(lower(policy.generate()), paci::testing::is_valid());
///     REQUIRE_THAT(lowered, paci::testing::is_deadlock_free(paci::send_semantics::rendezvous));
///     REQUIRE_THAT(paci::replay(schedule, policy.controller()), paci::testing::has_drift_at_most(1));
///     REQUIRE_THAT(paci::check_drift(replayed, policy), paci::testing::stays_within_bounds());
///
/// Include after Catch2 (or let this header include it: v3 when present, else v2's single header).

#if defined(PACI_CATCH2_V3) || (!defined(PACI_CATCH2_V2) && __has_include(<catch2/matchers/catch_matchers.hpp>))
#include <catch2/matchers/catch_matchers.hpp>
#define PACI_DETAIL_MATCHER_BASE Catch::Matchers::MatcherBase
#elif __has_include(<catch2/catch.hpp>)
#include <catch2/catch.hpp>
#define PACI_DETAIL_MATCHER_BASE Catch::MatcherBase
#else
#error "paci/testing/matchers.hpp needs Catch2 (v2 or v3)"
#endif

#include <paci/analysis/drift.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/core/schedule.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

namespace paci::testing {

/// How much of a schedule a failure shows: its header and size (the default), or every program too.
enum class dump : std::uint8_t {
    summary, ///< the schedule's header, its size and the first diagnostics
    full,    ///< the same, then every rank's program (can be large: 51 KB at 16 stages x 256 micro-batches)
};

/// A schedule's header and size in one line: `schedule{<policy>, <shape>, .microbatches = 4, .steps = 1}
/// with 24 actions on 2 ranks`. What Catch2 prints for a schedule once this header is included.
[[nodiscard]] inline std::string summary(const schedule& s) {
    return detail::concat("schedule{", s.policy, ", ", s.shape, ", .microbatches = ", s.microbatches,
                          ", .steps = ", s.steps, "} with ", s.size(), " action", s.size() == 1 ? "" : "s", " on ",
                          s.ranks.size(), " rank", s.ranks.size() == 1 ? "" : "s");
}

} // namespace paci::testing

namespace paci::detail {

inline constexpr std::size_t matcher_shown_errors = 3;

/// The first diagnostics of a report (at most `shown_errors`) and their total.
[[nodiscard]] inline std::string matcher_first_diagnostics(const validation_report& report) {
    if (report.error_count == 0) return {};
    std::string out = concat(report.error_count, report.error_count == 1 ? " error: " : " errors, ");
    const std::size_t n = std::min(report.errors.size(), matcher_shown_errors);
    if (report.error_count > 1) out += n < report.error_count ? concat("the first ", n, ": ") : "all: ";
    for (std::size_t k = 0; k < n; ++k) out += concat(k ? "; " : "", report.errors[k]);
    return out;
}

/// `(<detail>)`, then the full programs when asked for.
[[nodiscard]] inline std::string matcher_failure_text(const std::string& why, const std::string& full) {
    return (why.empty() ? std::string{} : " (" + why + ")") + (full.empty() ? std::string{} : "\n" + full);
}

} // namespace paci::detail

namespace paci::testing {

/// Matches a schedule that `validate()` accepts (structure and deadlock freedom under buffered
/// sends). On failure the description names the first diagnostics (up to 3, and how many there
/// are); Catch2 shows the schedule itself as `summary()`. `is_valid(dump::full)` adds every program.
class valid_schedule_matcher : public PACI_DETAIL_MATCHER_BASE<schedule> {
public:
    explicit valid_schedule_matcher(dump d = dump::summary) : dump_(d) {}
    bool match(const schedule& s) const override {
        const auto report = validate(s);
        detail_ = !report.errors.empty() ? detail::matcher_first_diagnostics(report)
                                         : (report.buffered.deadlock_free ? std::string{} : report.buffered.message);
        full_ = report.valid() || dump_ == dump::summary ? std::string{} : detail::concat(s);
        return report.valid();
    }
    std::string describe() const override { return "is a valid schedule" + detail::matcher_failure_text(detail_, full_); }

private:
    dump dump_;
    mutable std::string detail_;
    mutable std::string full_;
};

/// Matches a schedule whose ranks all finish under `semantics` sends.
class deadlock_free_matcher : public PACI_DETAIL_MATCHER_BASE<schedule> {
public:
    explicit deadlock_free_matcher(send_semantics semantics, dump d = dump::summary) : semantics_(semantics), dump_(d) {}
    bool match(const schedule& s) const override {
        const auto report = validate(s);
        detail_ = report.structure_ok() ? (semantics_ == send_semantics::buffered ? report.buffered : report.rendezvous).message
                                        : detail::matcher_first_diagnostics(report);
        const bool ok = report.deadlock_free(semantics_);
        full_ = ok || dump_ == dump::summary ? std::string{} : detail::concat(s);
        return ok;
    }
    std::string describe() const override {
        return "is deadlock-free under " + std::string(to_string(semantics_)) + " sends" +
               detail::matcher_failure_text(detail_, full_);
    }

private:
    send_semantics semantics_;
    dump dump_;
    mutable std::string detail_;
    mutable std::string full_;
};

/// Matches a replay in which no micro-batch crosses more than `k` updates at any stage.
class drift_at_most_matcher : public PACI_DETAIL_MATCHER_BASE<replay_result> {
public:
    explicit drift_at_most_matcher(int k) : k_(k) {}
    bool match(const replay_result& r) const override {
        const std::size_t cells = r.stages < 0 || r.microbatches < 0
                                      ? std::size_t{0}
                                      : static_cast<std::size_t>(r.stages) * static_cast<std::size_t>(r.microbatches);
        if (r.stages < 0 || r.microbatches < 0 || r.records.size() != cells) {
            detail_ = detail::concat("the replay is inconsistent: ", r.records.size(), " records for ", r.stages,
                                           " stages x ", r.microbatches, " micro-batches");
            return false;
        }
        for (int s = 0; s < r.stages; ++s)
            for (int m = 0; m < r.microbatches; ++m)
                if (r.at(s, m).drift() > k_) {
                    detail_ = detail::concat("stage ", s, " micro-batch ", m, " read version ", r.at(s, m).forward,
                                             " in its forward and ", r.at(s, m).backward, " in its backward");
                    return false;
                }
        detail_.clear();
        return true;
    }
    std::string describe() const override {
        return detail::concat("has drift at most ", k_) + (detail_.empty() ? "" : " (" + detail_ + ")");
    }

private:
    int k_;
    mutable std::string detail_;
};

/// Matches a drift report with no violation of the policy's bounds.
class within_bounds_matcher : public PACI_DETAIL_MATCHER_BASE<drift_report> {
public:
    bool match(const drift_report& d) const override {
        detail_ = d.first_violation ? detail::concat(*d.first_violation) : std::string{};
        return d.within_bounds();
    }
    std::string describe() const override {
        return "stays within the policy's drift, staleness and version bounds" + (detail_.empty() ? "" : " (" + detail_ + ")");
    }

private:
    mutable std::string detail_;
};

[[nodiscard]] inline valid_schedule_matcher is_valid(dump d = dump::summary) { return valid_schedule_matcher{d}; }
[[nodiscard]] inline deadlock_free_matcher is_deadlock_free(send_semantics s = send_semantics::buffered,
                                                          dump d = dump::summary) {
    return deadlock_free_matcher{s, d};
}
[[nodiscard]] inline drift_at_most_matcher has_drift_at_most(int k) { return drift_at_most_matcher{k}; }
[[nodiscard]] inline within_bounds_matcher stays_within_bounds() { return {}; }

} // namespace paci::testing

/// Catch2 prints a schedule under test as its summary (header and size), not its programs: a failed
/// check on a large schedule stays readable. Ask a schedule matcher for `dump::full` to see them.
template <>
struct Catch::StringMaker<paci::schedule> {
    static std::string convert(const paci::schedule& s) { return paci::testing::summary(s); }
};
