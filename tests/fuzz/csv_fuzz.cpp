// libFuzzer target for include/paci/io/csv.hpp (built with PACI_BUILD_FUZZERS=ON, run by
// scripts/fuzz.sh). For any input: parse_csv either throws paci::parse_error / paci::config_error or
// returns a schedule whose layout writes back the very same bytes, which parse again to the same
// result; the layout-free export in paci's own form (STEP and R cells) re-imports (in the dialect it
// was written in) to the same schedule, and PyTorch's forms (no STEP or R cells, or STEP as
// REDUCE_GRAD where that is faithful) re-import to the schedule without its STEP and R actions.
// Overlapped pairs (`(0F7;7B3)OVERLAP_F_B`) come back as pairs in every form, and both grids print.
// An accepted text is also bounded by its own size: its (stage, micro-batch) pairs are at most its
// actions. Any other exception, a sanitizer report or a broken property is a finding.

#include <paci/io/csv.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    paci::imported_schedule in;
    try {
        in = paci::parse_csv(text);
    } catch (const paci::parse_error&) {
        return 0;
    } catch (const paci::config_error&) {
        return 0;
    }
    // Accepted text round-trips byte for byte, and reads back to the same schedule and layout.
    const std::string out = paci::export_csv(in);
    if (out != text) __builtin_trap();
    if (!(paci::parse_csv(out) == in)) __builtin_trap();
    // Without the layout (no idle cells, modern names, CRLF) the schedule itself survives in paci's own
    // form. The dialect is named: detection reads B and W of one micro-batch as legacy, which a modern
    // text of an invalid schedule (a full and a split backward of one micro-batch) can hold.
    const paci::import_options modern{.dialect = paci::csv_dialect::modern};
    if (!(paci::import_csv(paci::export_csv(in.sched, {.updates = paci::csv_updates::step}), modern) == in.sched))
        __builtin_trap();
    // PyTorch's forms: the schedule less its STEP and R actions, read with the counts and map it had
    // (the text no longer shows them when an R held a stage's last micro-batch). Removing actions can
    // leave a text that its own size no longer bounds: that parse_error is an answer, a different
    // schedule is not.
    paci::schedule pytorch = in.sched;
    pytorch.steps = 0;
    for (auto& prog : pytorch.ranks)
        std::erase_if(prog, [](const paci::action& a) { return a.kind == paci::op::STEP || a.kind == paci::op::R; });
    const paci::import_options counted{.stages = in.sched.shape.stages,
                                       .microbatches = in.sched.microbatches,
                                       .map = in.sched.shape.map,
                                       .dialect = paci::csv_dialect::modern};
    for (const auto updates : {paci::csv_updates::omit, paci::csv_updates::reduce_grad}) {
        std::string text_out;
        try {
            text_out = paci::export_csv(in.sched, {.updates = updates});
        } catch (const paci::config_error&) {
            if (updates == paci::csv_updates::omit) __builtin_trap(); // only REDUCE_GRAD may refuse
            continue;
        }
        if (text_out.find("STEP") != std::string::npos) __builtin_trap();
        try {
            if (!(paci::import_csv(text_out, counted) == pytorch)) __builtin_trap();
        } catch (const paci::parse_error&) {
        }
    }
    static_cast<void>(paci::to_grid(in));
    static_cast<void>(paci::to_grid(in.sched));
    // A few bytes never ask for much: stages x micro-batches within the text's actions.
    int largest_stage = -1;
    int largest_microbatch = -1;
    for (const auto& prog : in.sched.ranks)
        for (const paci::action& a : prog) {
            largest_stage = std::max(largest_stage, static_cast<int>(a.stage));
            if (a.kind != paci::op::STEP) largest_microbatch = std::max(largest_microbatch, a.microbatch);
        }
    if (static_cast<std::int64_t>(largest_stage + 1) * std::max(largest_microbatch + 1, 1) >
        static_cast<std::int64_t>(in.sched.size()))
        __builtin_trap();
    return 0;
}
