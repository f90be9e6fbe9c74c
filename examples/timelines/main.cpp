// Renders the README's timelines: PACI and 1F1B-flush on 4 stages, 4 micro-batches per update, 4
// updates, simulated with forward = 1 and backward = 2 time units, with the weight-version drift of
// each backward from a replay. `timelines DIR` writes DIR/paci-timeline.svg and DIR/1f1b-timeline.svg
// (the repository keeps them in docs/); without an argument it only builds and checks them.

#include <paci/io/svg.hpp>
#include <paci/paci.hpp>
#include <paci/sim/simulate.hpp>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>

namespace {

std::size_t count(std::string_view text, std::string_view what) {
    std::size_t n = 0;
    for (auto pos = text.find(what); pos != std::string_view::npos; pos = text.find(what, pos + what.size())) ++n;
    return n;
}

template <class Policy>
bool render(const Policy& policy, const char* dir, const char* file) {
    const paci::schedule compute = policy.generate();
    const paci::simulation sim = paci::simulate(compute, paci::cost_model{.uniform = {.f = 1, .b = 2}});
    const paci::replay_result versions = paci::replay(compute, policy.controller());
    const std::string svg = paci::to_svg(compute, sim.times, &versions);

    std::size_t steps = 0;
    std::size_t drifted = 0;
    for (const auto& prog : compute.ranks)
        for (const paci::action& a : prog) {
            steps += a.kind == paci::op::STEP ? 1U : 0U;
            drifted += a.kind == paci::op::B && versions.at(a.stage, a.microbatch).drift() > 0 ? 1U : 0U;
        }
    const bool ok = sim.completed && svg.starts_with("<svg") && svg.ends_with("</svg>\n") &&
                    count(svg, "class=\"blk ") == compute.compute_size() && count(svg, "class=\"step\"") == steps &&
                    count(svg, "class=\"drift\"") == drifted;
    std::cout << file << ": " << compute.policy << ", makespan " << sim.makespan << ", " << drifted
              << " backwards crossed an update" << (ok ? "" : "  <-- CHECK FAILED") << '\n';
    if (dir != nullptr) {
        std::ofstream out(std::filesystem::path(dir) / file, std::ios::binary);
        out << svg;
        if (!out) {
            std::cerr << "timelines: cannot write " << (std::filesystem::path(dir) / file).string() << '\n';
            return false;
        }
    }
    return ok;
}

} // namespace

int main(int argc, char** argv) {
    const char* dir = argc > 1 ? argv[1] : nullptr;
    const bool paci_ok = render(paci::paci_policy<>{.stages = 4, .microbatches = 4, .steps = 4}, dir, "paci-timeline.svg");
    const bool flush_ok = render(paci::one_f_one_b<>{.stages = 4, .microbatches = 4, .steps = 4}, dir, "1f1b-timeline.svg");
    return paci_ok && flush_ok ? 0 : 1;
}
