#include <paci/paci.hpp>

#include <iostream>

int main() {
    // 8 stages, an optimizer update every 4 local backwards, a window of 16 updates.
    const paci::paci_policy<> policy{.stages = 8, .microbatches = 4, .steps = 16};

    const paci::schedule compute = policy.generate();            // per-rank F / B / STEP programs
    const paci::schedule lowered = paci::lower(compute);         // + SEND / RECV pairs
    const paci::validation_report check = paci::validate(lowered); // structure, pairing, deadlocks
    const paci::replay_result versions = paci::replay(compute, policy.controller());
    const paci::drift_report drift = paci::check_drift(versions, policy);
    std::cout << check << '\n' << drift;

    // PACI's promise: stage s crosses at most ceil((P - 1 - s) / a) updates, and long runs reach it.
    for (int s = 0; s < 8; ++s)
        if (drift.stages[static_cast<std::size_t>(s)].max_drift != (8 - 1 - s + 3) / 4) return 1;
    return check.valid() && drift.within_bounds() ? 0 : 1;
}
