// libFuzzer target for include/paci/io/csv.hpp (built with PACI_BUILD_FUZZERS=ON, run by
// scripts/fuzz.sh). For any input: parse_csv either throws paci::parse_error / paci::config_error or
// returns a schedule whose layout writes back the very same bytes, which parse again to the same
// result; the layout-free export re-imports (in the dialect it was written in) to the same schedule.
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
    // Without the layout (no idle cells, modern names, CRLF) the schedule itself survives. The dialect is
    // named: detection reads B and W of one micro-batch as legacy, which a modern text of an invalid
    // schedule (a full and a split backward of one micro-batch) can hold.
    if (!(paci::import_csv(paci::export_csv(in.sched), {.dialect = paci::csv_dialect::modern}) == in.sched))
        __builtin_trap();
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
