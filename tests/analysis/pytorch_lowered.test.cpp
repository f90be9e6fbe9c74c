// PyTorch 2.11's own schedules analysed as given (issue 9, section 1): its lowered programs
// (`*.comms.csv`, `_PipelineScheduleRuntime.pipeline_order_with_comms`) validate with their own
// SEND/RECV, run deadlock-free under both send semantics, simulate through their own communication to
// the makespan of their compute-only form, replay and give the compute-only form's memory; each
// stage's REDUCE_GRAD comes after its last backward (where replay's implicit update of a STEP-less
// schedule sits); a stage whose micro-batch indices are off by one is blamed itself, not its
// neighbours. Fixtures: tests/io/fixtures/ (copies of shared/pytorch-2.11/, see its README.md).
//
// Expected values are PyTorch's own output (the compute-only file beside each lowered one), closed
// forms where a schedule has a published one, or facts read off the text by the test itself.

#include <paci/analysis/memory.hpp>
#include <paci/analysis/replay.hpp>
#include <paci/analysis/validate.hpp>
#include <paci/core/dataflow.hpp>
#include <paci/core/lower.hpp>
#include <paci/io/csv.hpp>
#include <paci/sim/simulate.hpp>

#include "analysis/pytorch_fixtures.hpp"
#include "support/catch.hpp"
#include "support/print.hpp"

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

using Catch::Matchers::ContainsSubstring;

namespace {

using paci::action;
using paci::op;
using paci::send_semantics;
using paci_test::fixture_text;

/// The program of each rank without its SEND/RECV.
std::vector<std::vector<action>> compute_of(const paci::schedule& s) {
    std::vector<std::vector<action>> out;
    for (const auto& prog : s.ranks) {
        out.emplace_back();
        for (const action& a : prog)
            if (!paci::is_comm(a.kind)) out.back().push_back(a);
    }
    return out;
}

/// Equal F, B, I and W costs as PyTorch's own simulator takes them (unit steps), B = I + W.
paci::cost_model unit_costs(double latency = 0) {
    paci::cost_model c;
    c.uniform = {.f = 1, .b = 2, .i = 1, .w = 1};
    c.latency = latency;
    return c;
}

/// Everything section 1 asks of a lowered PyTorch schedule, against its compute-only file.
void check_lowered_as_given(const paci::schedule& comms, const paci::schedule& compute) {
    REQUIRE(comms.lowered());
    REQUIRE_FALSE(compute.lowered());
    CHECK(comms.shape == compute.shape);
    CHECK(comms.microbatches == compute.microbatches);
    // PyTorch's lowering only adds communication: the compute order is the compute-only file's.
    CHECK(compute_of(comms) == compute.ranks);
    // Every SEND/RECV carries a hand-off that crosses ranks (stages sharing a rank hand over locally).
    for (const auto& prog : comms.ranks)
        for (const action& a : prog)
            if (paci::is_comm(a.kind)) {
                CAPTURE(a);
                CHECK(paci::carries(a)->crosses(comms.shape));
            }

    // Structure and channels, then deadlock freedom under both semantics.
    const paci::validation_report report = paci::validate(comms);
    INFO(report);
    CHECK(report.structure_ok());
    CHECK(report.errors.empty());
    CHECK(report.deadlock_free(send_semantics::buffered));
    CHECK(report.deadlock_free(send_semantics::rendezvous));
    CHECK(paci::find_deadlock(comms, send_semantics::buffered).deadlock_free);
    CHECK(paci::find_deadlock(comms, send_semantics::rendezvous).deadlock_free);

    // Simulated through its own SEND/RECV: with buffered sends and posted receives, the makespan is
    // the compute-only form's when messages take no time. PyTorch puts each SEND right after the
    // compute (or the overlapped pair) that produces it, so a latency on every message keeps them equal.
    for (const double latency : {0.0, 0.5}) {
        CAPTURE(latency);
        const paci::simulation lowered = paci::simulate(comms, unit_costs(latency));
        const paci::simulation plain = paci::simulate(compute, unit_costs(latency));
        REQUIRE(lowered.completed);
        REQUIRE(plain.completed);
        CHECK(lowered.makespan == plain.makespan);
        CHECK(lowered.busy == plain.busy);
    }
    // Rendezvous sends block both ends, so PyTorch's early RECVs can only lengthen the run.
    const paci::simulation blocking = paci::simulate(comms, unit_costs(), send_semantics::rendezvous);
    REQUIRE(blocking.completed);
    CHECK(blocking.makespan >= paci::simulate(compute, unit_costs()).makespan);

    // Replay and memory: communication does not change versions or what is stored.
    const paci::replay_result versions = paci::replay(comms);
    const paci::replay_result plain_versions = paci::replay(compute);
    CHECK(versions.records == plain_versions.records);
    CHECK(versions.per_stage == plain_versions.per_stage);
    const paci::memory_report memory = paci::memory_of(versions);
    const paci::memory_report plain_memory = paci::memory_of(plain_versions);
    CHECK(memory.peak_activations == plain_memory.peak_activations);
    CHECK(memory.rank_peak_activations == plain_memory.rank_peak_activations);
    CHECK(memory.rank_peak_stored == plain_memory.rank_peak_stored);
    // A PyTorch schedule has no STEP: every action reads version 0 and no update is inside it.
    for (const auto& rec : versions.records) {
        CHECK(rec.forward == 0);
        CHECK(rec.backward == 0);
        CHECK(rec.applied == -1);
    }
    for (const auto& st : versions.per_stage) CHECK(st.updates == 0);
}

/// Rank r's peak of stored micro-batch chunks under interleaved 1F1B with R ranks, V chunks and M
/// micro-batches: its warm-up forwards, (V-1)R + 2(R-1-r), plus the one in flight (capped at MV).
int interleaved_peak(int R, int V, int M, int r) { return std::min(M * V, (V - 1) * R + 2 * (R - 1 - r) + 1); }

} // namespace

TEST_CASE("pytorch: every lowered schedule PyTorch 2.11 writes is analysed as given", "[unit][pytorch]") {
    const std::string name = GENERATE(from_range(paci_test::comms_fixtures()));
    CAPTURE(name);
    const std::string text = fixture_text(name + ".comms.csv");
    const auto path = [](const std::string& file) {
        return std::filesystem::path(PACI_TEST_SOURCE_DIR) / "io" / "fixtures" / file;
    };
    const paci::imported_schedule comms = paci::read_csv_file(path(name + ".comms.csv"));
    const paci::imported_schedule compute = paci::read_csv_file(path(name + ".compute.csv"));
    check_lowered_as_given(comms.sched, compute.sched);

    // UNSHARD, RESHARD and REDUCE_GRAD stay out of the schedule, in the layout, and the text round-trips.
    std::size_t pytorch_only = 0;
    for (const auto& row : paci_test::cells_of(text))
        for (const auto& cell : row)
            pytorch_only += cell.find("UNSHARD") != std::string::npos || cell.find("RESHARD") != std::string::npos ||
                                    cell.find("REDUCE_GRAD") != std::string::npos
                                ? 1U
                                : 0U;
    std::size_t kept = 0;
    for (const auto& row : comms.layout.extras)
        for (const auto& cell : row) kept += cell.text.empty() ? 0U : 1U;
    CHECK(pytorch_only > 0);
    CHECK(kept == pytorch_only);
    CHECK(paci::export_csv(comms) == text);
}

TEST_CASE("pytorch: memory of PyTorch's lowered schedules meets the published closed forms", "[unit][pytorch][memory]") {
    constexpr int R = 4, V = 2, M = 8;
    const auto memory = [](const std::string& name) {
        return paci::memory_of(paci::replay(paci::parse_csv(fixture_text(name + ".comms.csv")).sched));
    };
    SECTION("interleaved 1F1B: rank r stores (V-1)R + 2(R-1-r) + 1 chunks at its peak") {
        const auto m = memory("Interleaved1F1B_p4_v2_m8");
        for (int r = 0; r < R; ++r) CHECK(m.rank_peak_activations[static_cast<std::size_t>(r)] == interleaved_peak(R, V, M, r));
    }
    SECTION("looped BFS: every forward of both chunks before any backward, M V chunks per rank") {
        const auto m = memory("LoopedBFS_p4_v2_m8");
        for (const int x : m.rank_peak_activations) CHECK(x == M * V);
        for (const int x : m.peak_activations) CHECK(x == M);
    }
    SECTION("ZB-V: 1F1B's peak, 2R chunks per rank (half-size chunks), stage s holding 2R - s") {
        const auto m = memory("ZBVZeroBubble_p4_v2_m8");
        for (const int x : m.rank_peak_activations) CHECK(x == 2 * R);
        for (int s = 0; s < 2 * R; ++s) CHECK(m.peak_activations[static_cast<std::size_t>(s)] == 2 * R - s);
    }
}

TEST_CASE("pytorch: each stage's REDUCE_GRAD comes right where replay puts a STEP-less schedule's update",
          "[unit][pytorch][replay]") {
    // Replay's documented reading of a schedule without STEP: one flushed update after each stage's
    // last backward. PyTorch's REDUCE_GRAD (kept in the layout's extras) sits there: after every
    // backward (B, I or W) of its stage on the rank's row, once per stage.
    const std::string name = GENERATE(from_range(paci_test::comms_fixtures()));
    CAPTURE(name);
    const paci::imported_schedule in = paci::parse_csv(fixture_text(name + ".comms.csv"));
    const paci::schedule& s = in.sched;
    for (std::size_t r = 0; r < s.ranks.size(); ++r) {
        CAPTURE(r);
        const auto& extras = in.layout.extras[r];
        const auto& prog = s.ranks[r];
        // The column of every action: the columns the extras do not take, in order.
        std::vector<std::size_t> column(prog.size());
        {
            std::size_t col = 0;
            std::size_t e = 0;
            for (std::size_t p = 0; p < prog.size(); ++p, ++col) {
                while (e < extras.size() && extras[e].column == col) {
                    ++e;
                    ++col;
                }
                column[p] = col;
            }
        }
        std::vector<int> reduced;
        for (const auto& cell : extras) {
            const std::size_t at = cell.text.find("REDUCE_GRAD");
            if (at == std::string::npos) continue;
            const int stage = std::stoi(cell.text.substr(0, at));
            CAPTURE(stage, cell.column);
            reduced.push_back(stage);
            std::size_t last_backward = 0;
            bool any = false;
            for (std::size_t p = 0; p < prog.size(); ++p)
                if (prog[p].stage == stage && paci::is_backward(prog[p].kind)) {
                    last_backward = column[p];
                    any = true;
                }
            CHECK(any);
            CHECK(cell.column > last_backward);
        }
        // One REDUCE_GRAD per stage of the rank.
        std::vector<int> expected = s.shape.stages_of(static_cast<int>(r));
        std::sort(reduced.begin(), reduced.end());
        std::sort(expected.begin(), expected.end());
        CHECK(reduced == expected);
    }
}

TEST_CASE("pytorch: a stage that runs micro-batches 1..8 where the others run 0..7 is blamed itself",
          "[unit][pytorch][validate]") {
    // The rank, the stage and the micro-batch at fault, not every other stage "missing micro-batch 8".
    struct shifted {
        std::string file;
        int stage;
        int rank;
    };
    const shifted c = GENERATE(shifted{"Interleaved1F1B_p4_v2_m8.compute.csv", 5, 1},
                               shifted{"Interleaved1F1B_p4_v2_m8.comms.csv", 5, 1},
                               shifted{"ZBVZeroBubble_p4_v2_m8.comms.csv", 6, 1},
                               shifted{"GPipe_p4_v1_m8.compute.csv", 0, 0});
    CAPTURE(c.file, c.stage);
    const std::string text = paci_test::shift_stage(fixture_text(c.file), c.stage, 1);
    const paci::imported_schedule in = paci::parse_csv(text);
    REQUIRE(in.sched.microbatches == 9); // the importer reads one micro-batch past PyTorch's 8
    const auto& prog = in.sched.ranks[static_cast<std::size_t>(c.rank)];
    const auto first = std::find(prog.begin(), prog.end(), action{op::F, c.stage, 8});
    REQUIRE(first != prog.end());

    const paci::validation_report report = paci::validate(in.sched);
    REQUIRE_FALSE(report.errors.empty());
    CHECK(report.errors.front() ==
          paci::diagnostic{paci::rule::microbatch_mismatch, c.rank, first - prog.begin(), action{op::F, c.stage, 8},
                           "stage " + std::to_string(c.stage) +
                               " never runs micro-batch 0 and runs micro-batch 8, one past the end of the "
                               "micro-batches 0..7 that the other stages run"});
    // The stage is blamed once, and no other stage for lacking micro-batch 8 (or stage c for lacking 0).
    for (std::size_t k = 1; k < report.errors.size(); ++k) {
        CAPTURE(report.errors[k]);
        CHECK(report.errors[k].broken != paci::rule::microbatch_mismatch);
        CHECK(report.errors[k].broken != paci::rule::missing);
    }
    CHECK_THAT(report.first_error(), ContainsSubstring("rank " + std::to_string(c.rank)));
}

TEST_CASE("pytorch: a stage that runs one micro-batch more than the others is blamed for it", "[unit][pytorch][validate]") {
    // GPipe's stage 2 runs 0..8: micro-batch 8 appended after its other forwards and backwards.
    paci::schedule s = paci::parse_csv(fixture_text("GPipe_p4_v1_m8.compute.csv")).sched;
    s.microbatches = 9;
    s.ranks[2].push_back(action{op::F, 2, 8});
    s.ranks[2].push_back(action{op::B, 2, 8});
    const auto report = paci::validate(s);
    INFO(report);
    REQUIRE(report.error_count == 1);
    CHECK(report.errors.front() ==
          paci::diagnostic{paci::rule::microbatch_mismatch, 2, static_cast<std::int64_t>(s.ranks[2].size() - 2),
                           action{op::F, 2, 8},
                           "stage 2 runs micro-batch 8, one past the end of the micro-batches 0..7 that the other "
                           "stages run"});
}

TEST_CASE("pytorch: DualPipeV's overlapped pairs validate, lower, simulate and replay", "[unit][pytorch][overlap]") {
    // Built by hand from PyTorch's text (each `(A;B)OVERLAP_F_B` cell as A with the pair flag, then B),
    // so pairs are analysed whatever the importer accepts; when it accepts the text, the two agree.
    const std::string compute_text = fixture_text(std::string(paci_test::dualpipev) + ".compute.csv");
    const std::string comms_text = fixture_text(std::string(paci_test::dualpipev) + ".comms.csv");
    const paci::schedule compute = paci_test::schedule_by_hand(compute_text, paci::stage_map::v, "DualPipeV");
    const paci::schedule comms = paci_test::schedule_by_hand(comms_text, paci::stage_map::v, "DualPipeV");
    const auto groups = [](const std::string& t) {
        std::size_t n = 0;
        for (std::size_t at = t.find("OVERLAP_F_B"); at != std::string::npos; at = t.find("OVERLAP_F_B", at + 1)) ++n;
        return n;
    };
    REQUIRE(groups(compute_text) > 0);
    CHECK(paci_test::pair_count(compute) == groups(compute_text));
    CHECK(paci_test::pair_count(comms) == groups(comms_text));
    CHECK(compute.shape == paci::pipeline_shape{8, 4, paci::stage_map::v});
    CHECK(compute.microbatches == 8);

    // Pairs are well formed and independent; the compute-only form is valid and lowers cleanly.
    const auto report = paci::validate(compute);
    INFO(report);
    CHECK(report.structure_ok());
    CHECK(report.deadlock_free(send_semantics::buffered));
    CHECK(report.deadlock_free(send_semantics::rendezvous));
    for (const paci::lowering mode : {paci::lowering::eager, paci::lowering::rendezvous_safe}) {
        CAPTURE(mode);
        const paci::schedule lowered = paci::lower(compute, mode);
        CHECK(paci_test::pair_count(lowered) == paci_test::pair_count(compute));
        CHECK(compute_of(lowered) == compute.ranks);
        const auto lowered_report = paci::validate(lowered);
        INFO(lowered_report);
        CHECK(lowered_report.structure_ok());
        CHECK(lowered_report.deadlock_free(send_semantics::buffered));
        // Eager lowering is for non-blocking transports; the default placement also runs with blocking sends.
        if (mode == paci::lowering::rendezvous_safe) CHECK(lowered_report.deadlock_free(send_semantics::rendezvous));
    }

    // PyTorch's own lowering, analysed as given, against its compute-only file; at every penalty.
    check_lowered_as_given(comms, compute);
    for (const double penalty : {0.0, 0.5, 1.0}) {
        CAPTURE(penalty);
        paci::cost_model c = unit_costs();
        c.overlap_penalty = penalty;
        const auto lowered = paci::simulate(comms, c);
        const auto plain = paci::simulate(compute, c);
        REQUIRE(lowered.completed);
        CHECK(lowered.makespan == plain.makespan);
    }

    // The importer, once it reads OVERLAP_F_B, gives the same schedules.
    if (const auto imported = paci_test::try_parse(compute_text, "DualPipeV's OVERLAP_F_B cells")) {
        CHECK(imported->sched.ranks == compute.ranks);
        CHECK(imported->sched.shape == compute.shape);
        CHECK(imported->sched.microbatches == compute.microbatches);
    }
    if (const auto imported = paci_test::try_parse(comms_text, "DualPipeV's OVERLAP_F_B cells")) {
        CHECK(imported->sched.ranks == comms.ranks);
        check_lowered_as_given(imported->sched, compute);
    }
}
