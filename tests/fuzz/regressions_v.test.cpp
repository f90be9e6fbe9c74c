// Regression tests for what the API fuzzer (tests/fuzz/api_fuzz.cpp) found in issue 9's policies and
// the stream interface they share (include/paci/policy/program.hpp). Each case is the smallest call
// that shows the finding; the fuzzer's input is kept in tests/fuzz/findings/api/ under the name given.
// Cases tagged [fuzz-finding] fail until the library is fixed.

#include <paci/core/error.hpp>
#include <paci/core/limits.hpp>
#include <paci/policy/dualpipe_v.hpp>
#include <paci/policy/gpipe.hpp>
#include <paci/policy/interleaved.hpp>
#include <paci/policy/zb_v.hpp>
#include <paci/policy/zero_bubble.hpp>

#include "support/catch.hpp"

#include <cstdint>

namespace {

/// 2^28 micro-batches in one update: the policies accept it (the product with `steps` fits 32 bits),
/// and one update of one rank holds at least 2^28 forwards per stage of the rank, past the default
/// `paci::limits` (2^27 actions). A program stream builds one update at a time, so `program(rank)`
/// must refuse it before the first action is asked for, as looped_bfs and interleaved_zero_bubble do.
constexpr int huge_update = 1 << 28;

} // namespace

// findings/api/zb-v-program-update-past-limits: zb_v{.ranks = 1, .microbatches = 2^28}.program(0)
// returned a stream whose first next() built the whole update, 6 M + 2 actions (48 GiB at 8 bytes
// each): the fuzzer's allocator stopped it at 2 GiB.
TEST_CASE("zb_v: program(rank) refuses an update past paci::limits before allocating", "[fuzz-finding][policy][zb_v]") {
    const paci::zb_v p{.ranks = 1, .microbatches = huge_update, .steps = 1};
    REQUIRE_NOTHROW(p.validate());
    REQUIRE_THROWS_AS(p.generate(), paci::config_error); // the whole schedule is refused already
    REQUIRE_THROWS_WITH(p.program(0), Catch::Matchers::ContainsSubstring("paci::zb_v: schedule size ("));
}

// findings/api/dualpipe-v-program-update-past-limits: dualpipe_v{.ranks = 1, .microbatches = 2^28}.program(0),
// the same: one update of rank 0 is 4 M + 2 ranks + 1 actions (2 M forwards, 2 M backwards, one W per
// split backward, 2 STEPs).
TEST_CASE("dualpipe_v: program(rank) refuses an update past paci::limits before allocating",
          "[fuzz-finding][policy][dualpipe_v]") {
    const paci::dualpipe_v p{.ranks = 1, .microbatches = huge_update, .steps = 1};
    REQUIRE_NOTHROW(p.validate());
    REQUIRE_THROWS_AS(p.generate(), paci::config_error);
    REQUIRE_THROWS_WITH(p.program(0), Catch::Matchers::ContainsSubstring("paci::dualpipe_v: schedule size ("));
}

// The same gap in the update-at-a-time policies that predate issue 9 (findings/api/gpipe-, interleaved-
// and zb-h1-program-update-past-limits): their program(rank) checks the policy and the rank, not the
// size of the update it will build.
TEST_CASE("update-at-a-time policies before issue 9: program(rank) refuses an update past paci::limits",
          "[fuzz-finding][policy]") {
    SECTION("gpipe") {
        const paci::gpipe<> p{.stages = 1, .microbatches = huge_update, .steps = 1};
        REQUIRE_NOTHROW(p.validate());
        REQUIRE_THROWS_WITH(p.program(0), Catch::Matchers::ContainsSubstring("paci::gpipe: schedule size ("));
    }
    SECTION("interleaved_one_f_one_b") {
        const paci::interleaved_one_f_one_b p{.ranks = 1, .chunks = 1, .microbatches = huge_update, .steps = 1};
        REQUIRE_NOTHROW(p.validate());
        REQUIRE_THROWS_WITH(p.program(0),
                            Catch::Matchers::ContainsSubstring("paci::interleaved_one_f_one_b: schedule size ("));
    }
    SECTION("zb_h1") {
        const paci::zb_h1 p{.stages = 1, .microbatches = huge_update, .steps = 1};
        REQUIRE_NOTHROW(p.validate());
        REQUIRE_THROWS_WITH(p.program(0), Catch::Matchers::ContainsSubstring("paci::zb_h1: schedule size ("));
    }
}

// What the fix must keep: an update within the limits is still streamed (rank 0 of ZB-V with 2 ranks
// and 4 micro-batches starts with its warm-up, 2 (ranks - r) - 1 = 3 forwards of chunk 0, stage 0),
// and a size check happens before anything is pulled, so a program the limits allow once raised is
// accepted under them.
TEST_CASE("zb_v and dualpipe_v: program(rank) within paci::limits still streams", "[unit][policy][zb_v][dualpipe_v]") {
    paci::action a;
    auto zb = paci::zb_v{.ranks = 2, .microbatches = 4, .steps = 1}.program(0);
    for (int m = 0; m < 3; ++m) {
        REQUIRE(zb.next(a, 4));
        CHECK(a == paci::action{paci::op::F, 0, m});
    }
    // DualPipeV rank 0 of 2: phase 1 is 2 (ranks - 1 - r) = 2 forwards of chunk 0.
    auto dp = paci::dualpipe_v{.ranks = 2, .microbatches = 4, .steps = 1}.program(0);
    for (int m = 0; m < 2; ++m) {
        REQUIRE(dp.next(a, 4));
        CHECK(a == paci::action{paci::op::F, 0, m});
    }
    const paci::scoped_limits bigger{{.max_actions = std::uint64_t{1} << 31, .max_bytes = std::uint64_t{1} << 34}};
    REQUIRE_NOTHROW(static_cast<void>(paci::zb_v{.ranks = 1, .microbatches = huge_update, .steps = 1}.program(0)));
}
