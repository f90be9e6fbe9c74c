#pragma once
/// \file
/// One call from a policy to every report: generate, lower, validate, replay, drift and memory.

#include <paci/analysis/drift.hpp>
#include <paci/analysis/memory.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/core/lower.hpp>
#include <paci/policy/schedule_policy.hpp>

#include <ostream>
#include <string>

namespace paci {

/// The reports of one policy.
struct analysis {
    std::string policy;
    schedule compute;   ///< the policy's compute schedule (with STEPs)
    schedule lowered;   ///< with SEND/RECV
    validation_report validation; ///< of the lowered schedule
    replay_result versions;
    drift_report drift;
    memory_report memory;
};

/// Generates, lowers (with `mode`), validates, replays with the policy's controller and compares
/// with its bounds. \throws config_error for invalid policy parameters.
template <schedule_policy Policy>
[[nodiscard]] analysis analyze(const Policy& policy, lowering mode = lowering::rendezvous_safe) {
    analysis a;
    a.policy = detail::print(policy);
    a.compute = policy.generate();
    a.lowered = lower(a.compute, mode);
    a.validation = validate(a.lowered);
    a.versions = replay(a.compute, policy.controller());
    a.drift = check_drift(a.versions, policy);
    a.memory = memory_of(a.versions);
    return a;
}

inline std::ostream& operator<<(std::ostream& os, const analysis& a) {
    return os << a.policy << "\n" << a.validation << "\n" << a.drift << a.memory;
}

} // namespace paci
