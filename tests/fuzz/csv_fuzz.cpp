// libFuzzer target for include/paci/io/csv.hpp (built with PACI_BUILD_FUZZERS=ON, run by
// scripts/fuzz.sh). For any input: parse_csv either throws paci::parse_error / paci::config_error or
// returns a schedule whose layout writes back the very same bytes, which parse again to the same
// result; the layout-free export re-imports to the same schedule. Any other exception, a sanitizer
// report or a broken property is a finding.

#include <paci/io/csv.hpp>

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
    // Without the layout (no idle cells, modern names, CRLF) the schedule itself survives.
    if (!(paci::import_csv(paci::export_csv(in.sched)) == in.sched)) __builtin_trap();
    return 0;
}
