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

#include <string>

namespace paci::testing {

/// Matches a schedule that `validate()` accepts (structure and deadlock freedom under buffered
/// sends); on failure the description names the first error.
class valid_schedule_matcher : public PACI_DETAIL_MATCHER_BASE<schedule> {
public:
    bool match(const schedule& s) const override {
        const auto report = validate(s);
        detail_ = !report.errors.empty() ? detail::concat(report.errors.front())
                                         : (report.buffered.deadlock_free ? std::string{} : report.buffered.message);
        return report.valid();
    }
    std::string describe() const override { return "is a valid schedule" + (detail_.empty() ? "" : " (" + detail_ + ")"); }

private:
    mutable std::string detail_;
};

/// Matches a schedule whose ranks all finish under `semantics` sends.
class deadlock_free_matcher : public PACI_DETAIL_MATCHER_BASE<schedule> {
public:
    explicit deadlock_free_matcher(send_semantics semantics) : semantics_(semantics) {}
    bool match(const schedule& s) const override {
        const auto report = validate(s);
        detail_ = report.structure_ok() ? (semantics_ == send_semantics::buffered ? report.buffered : report.rendezvous).message
                                        : report.first_error();
        return report.deadlock_free(semantics_);
    }
    std::string describe() const override {
        return "is deadlock-free under " + std::string(to_string(semantics_)) + " sends" +
               (detail_.empty() ? "" : " (" + detail_ + ")");
    }

private:
    send_semantics semantics_;
    mutable std::string detail_;
};

/// Matches a replay in which no micro-batch crosses more than `k` updates at any stage.
class drift_at_most_matcher : public PACI_DETAIL_MATCHER_BASE<replay_result> {
public:
    explicit drift_at_most_matcher(int k) : k_(k) {}
    bool match(const replay_result& r) const override {
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

[[nodiscard]] inline valid_schedule_matcher is_valid() { return {}; }
[[nodiscard]] inline deadlock_free_matcher is_deadlock_free(send_semantics s = send_semantics::buffered) {
    return deadlock_free_matcher{s};
}
[[nodiscard]] inline drift_at_most_matcher has_drift_at_most(int k) { return drift_at_most_matcher{k}; }
[[nodiscard]] inline within_bounds_matcher stays_within_bounds() { return {}; }

} // namespace paci::testing
