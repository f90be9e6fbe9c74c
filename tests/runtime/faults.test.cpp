// Runtime failures and recovery: a stage that throws, a peer that never sends, ranks that disagree
// on the configuration, bad arguments, and resuming from a drained state. Expected messages are
// written out from the formats documented in the headers (core/error.hpp, runtime/errors.hpp).

#include <paci/policy/interleaved.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/runtime/executor.hpp>
#include <paci/runtime/inprocess.hpp>
#include <paci/runtime/pipeline.hpp>

#include "support/catch.hpp"
#include "support/mlp.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using paci_test::mlp_config;
using paci_test::mlp_stage;

namespace {

/// The exception a faulty stage throws (its own type, so `rethrow_original` can be told apart).
struct injected_fault : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A stage that passes a small buffer through and throws `injected_fault` at one point:
/// the forward or the backward of micro-batch `m`, or its `n`-th step.
struct faulty_stage {
    using buffer_type = std::vector<double>;
    enum class where { nowhere, forward, backward, step };
    int index = 0;
    where fail = where::nowhere;
    int at = -1;
    int steps = 0;

    void maybe_fail(where w, int m) const {
        if (fail == w && m == at)
            throw injected_fault("injected fault at stage " + std::to_string(index) + ", micro-batch " +
                                 std::to_string(m));
    }
    buffer_type forward(int m, buffer_type in) {
        maybe_fail(where::forward, m);
        if (in.empty()) in.assign(4, static_cast<double>(m));
        return in;
    }
    buffer_type backward(int m, buffer_type g) {
        maybe_fail(where::backward, m);
        if (g.empty()) g.assign(4, 1.0);
        return g;
    }
    void step() { maybe_fail(where::step, steps++); }
};
static_assert(paci::stage<faulty_stage>);

std::vector<faulty_stage> faulty_stages(int n) {
    std::vector<faulty_stage> out(static_cast<std::size_t>(n));
    for (int s = 0; s < n; ++s) out[static_cast<std::size_t>(s)].index = s;
    return out;
}

/// Runs `f` on its own thread and returns what it threw (or null).
template <class F>
std::thread run_catching(std::exception_ptr& error, F f) {
    return std::thread([&error, f = std::move(f)]() mutable {
        try {
            f();
        } catch (...) {
            error = std::current_exception();
        }
    });
}

/// Forwards everything to an inprocess_communicator except the start-up agreement: a transport
/// that cannot compare configurations (the executor then goes straight to its first receive).
struct no_agree_communicator {
    paci::inprocess_communicator<std::vector<double>> inner;
    [[nodiscard]] int rank() const noexcept { return inner.rank(); }
    [[nodiscard]] int size() const noexcept { return inner.size(); }
    auto isend(int peer, int tag, std::vector<double> b) { return inner.isend(peer, tag, std::move(b)); }
    auto irecv(int peer, int tag) { return inner.irecv(peer, tag); }
    void abort(const char* why) { inner.abort(why); }
};
static_assert(paci::communicator_for<no_agree_communicator, std::vector<double>>);

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace

TEST_CASE("a stage that throws: pipeline_error names rank, stage and micro-batch; every rank stops", "[unit][runtime]") {
    using where = faulty_stage::where;
    struct fault {
        where w;
        int stage;
        int at;
    };
    const fault f = GENERATE(fault{where::forward, 0, 5}, fault{where::forward, 2, 6}, fault{where::backward, 3, 2},
                             fault{where::backward, 1, 0}, fault{where::backward, 0, 7});
    const int P = 4;
    auto stages = faulty_stages(P);
    stages[static_cast<std::size_t>(f.stage)].fail = f.w;
    stages[static_cast<std::size_t>(f.stage)].at = f.at;
    const auto timeout = 2s;
    paci::inprocess_pipeline pipeline(paci::one_f_one_b<>{.stages = P, .microbatches = 4}, paci_test::pointers(stages),
                                      {.timeout = timeout});
    const paci::action failed{f.w == where::forward ? paci::op::F : paci::op::B, f.stage, f.at};
    INFO("fault at " << failed);

    const auto t0 = std::chrono::steady_clock::now();
    bool thrown = false;
    try {
        pipeline.run(8);
        pipeline.drain();
    } catch (const paci::pipeline_error& e) {
        thrown = true;
        CHECK(e.rank() == f.stage); // 1F1B: stage s on rank s
        CHECK(e.stage() == f.stage);
        CHECK(e.microbatch() == f.at);
        CHECK(e.failed_action() == failed);
        const std::string expected_original =
            "injected fault at stage " + std::to_string(f.stage) + ", micro-batch " + std::to_string(f.at);
        CHECK_THAT(e.what(), Catch::Matchers::ContainsSubstring("paci::pipeline_error: rank " + std::to_string(f.stage) +
                                                                ", stage " + std::to_string(f.stage) + ", micro-batch " +
                                                                std::to_string(f.at) + " (" + paci::to_string(failed) +
                                                                "): " + expected_original));
        REQUIRE(e.original() != nullptr);
        REQUIRE_THROWS_AS(e.rethrow_original(), injected_fault);
        REQUIRE_THROWS_WITH(e.rethrow_original(), expected_original);
    }
    const double elapsed = seconds_since(t0);
    CHECK(thrown);
    // drain() returns once every rank has stopped; the others were woken by the abort, not by their
    // own timeouts (which would take at least 2 s).
    INFO("run returned after " << elapsed << " s");
    CHECK(elapsed < std::chrono::duration<double>(timeout).count());
}

TEST_CASE("a stage that throws on another rank than its index (interleaved) and in its optimizer step",
          "[unit][runtime]") {
    using where = faulty_stage::where;
    SECTION("interleaved 1F1B: stage 3 runs on rank 1") {
        auto stages = faulty_stages(4);
        stages[3].fail = where::backward;
        stages[3].at = 4;
        paci::inprocess_pipeline pipeline(paci::interleaved_one_f_one_b{.ranks = 2, .chunks = 2, .microbatches = 4},
                                          paci_test::pointers(stages), {.timeout = 2s});
        const auto t0 = std::chrono::steady_clock::now();
        try {
            pipeline.run(8);
            pipeline.drain();
            FAIL("run() returned normally");
        } catch (const paci::pipeline_error& e) {
            CHECK(e.rank() == 1);
            CHECK(e.stage() == 3);
            CHECK(e.microbatch() == 4);
            CHECK(e.failed_action() == paci::action(paci::op::B, 3, 4));
            REQUIRE_THROWS_AS(e.rethrow_original(), injected_fault);
        }
        CHECK(seconds_since(t0) < 2.0);
    }
    SECTION("the second update of PACI's stage 2: reported at that STEP") {
        // a = 2: stage 2's updates (2STEP0, 2STEP1, ...) follow its backwards of micro-batches 1, 3, 5, ...
        auto stages = faulty_stages(4);
        stages[2].fail = where::step;
        stages[2].at = 1;
        paci::inprocess_pipeline pipeline(paci::paci_policy<>{.stages = 4, .microbatches = 2}, paci_test::pointers(stages),
                                          {.timeout = 2s});
        const auto t0 = std::chrono::steady_clock::now();
        try {
            pipeline.run(8);
            pipeline.drain();
            FAIL("run() returned normally");
        } catch (const paci::pipeline_error& e) {
            CHECK(e.rank() == 2);
            CHECK(e.failed_action() == paci::action(paci::op::STEP, 2, 1));
            REQUIRE_THROWS_WITH(e.rethrow_original(), "injected fault at stage 2, micro-batch 1");
        }
        CHECK(seconds_since(t0) < 2.0);
    }
}

TEST_CASE("a peer that never sends: timeout_error names rank, peer, tag and the action waited on", "[unit][runtime]") {
    using clock = std::chrono::steady_clock;
    const auto timeout = 200ms;
    paci::inprocess_world<std::vector<double>> world(2);
    faulty_stage stage1{.index = 1};
    const paci::one_f_one_b<> policy{.stages = 2, .microbatches = 2};

    SECTION("at the first receive") {
        // Rank 0 does nothing. Rank 1's first action is 1F0, whose input comes from rank 0 with the
        // forward tag of stage 1 (2 * 1 = 2, runtime/executor.hpp).
        no_agree_communicator comm{world.communicator(1)};
        paci::executor<paci::one_f_one_b<>, faulty_stage, no_agree_communicator> exec(policy, {&stage1}, comm,
                                                                                       {.timeout = timeout});
        const auto t0 = clock::now();
        try {
            exec.run(2);
            FAIL("run() returned normally");
        } catch (const paci::timeout_error& e) {
            CHECK(e.rank() == 1);
            CHECK(e.peer() == 0);
            CHECK(e.tag() == 2);
            CHECK(e.waited_on() == paci::action(paci::op::F, 1, 0));
            CHECK(std::string(e.what()) == "paci::timeout_error: rank 1 waited 0.2 s for rank 0 (tag 2) at 1F0");
        }
        const double elapsed = seconds_since(t0);
        INFO("returned after " << elapsed << " s");
        CHECK(elapsed >= 0.2);
        CHECK(elapsed < 0.2 + 1.5);
        // The failing rank aborted the world, so a peer would stop waiting too.
        CHECK(world.aborted());
        CHECK_THAT(world.abort_reason(), Catch::Matchers::ContainsSubstring("rank 1 failed at 1F0"));
    }
    SECTION("at the start-up agreement of the in-process transport") {
        // inprocess_communicator agrees on the configuration before the first action, so there the
        // wait on the silent rank 0 ends as a timeout of that agreement.
        auto comm = world.communicator(1);
        paci::executor<paci::one_f_one_b<>, faulty_stage, paci::inprocess_communicator<std::vector<double>>> exec(
            policy, {&stage1}, comm, {.timeout = timeout});
        const auto t0 = clock::now();
        try {
            exec.run(2);
            FAIL("run() returned normally");
        } catch (const paci::timeout_error& e) {
            CHECK(e.rank() == 1);
            CHECK_THAT(e.what(), Catch::Matchers::ContainsSubstring("paci::timeout_error: rank 1 waited 0.2 s"));
        }
        const double elapsed = seconds_since(t0);
        CHECK(elapsed >= 0.2);
        CHECK(elapsed < 0.2 + 1.5);
    }
}

TEST_CASE("ranks that disagree on the configuration fail on start with config_error", "[unit][runtime]") {
    using comm_type = paci::inprocess_communicator<std::vector<double>>;
    paci::inprocess_world<std::vector<double>> world(2);
    auto stages = faulty_stages(4);
    auto c0 = world.communicator(0);
    auto c1 = world.communicator(1);
    std::exception_ptr e0, e1;
    const paci::executor_options opts{.timeout = 2s};

    const auto require_differs = [](const std::exception_ptr& e) {
        REQUIRE(e != nullptr);
        REQUIRE_THROWS_AS(std::rethrow_exception(e), paci::config_error);
        REQUIRE_THROWS_WITH(std::rethrow_exception(e),
                            Catch::Matchers::ContainsSubstring("paci::executor: configuration of rank (1) differs from "
                                                               "rank 0's (a different policy, stage count or micro-batch "
                                                               "count; fingerprints "));
    };
    // Runs `a.run(na)` as rank 0 and `b.run(nb)` as rank 1, side by side, and waits for both; what
    // either throws lands in e0 / e1.
    const auto run_both = [&](auto& a, std::int64_t na, auto& b, std::int64_t nb) {
        auto t0 = run_catching(e0, [&] {
            a.run(na);
            a.drain();
        });
        auto t1 = run_catching(e1, [&] {
            b.run(nb);
            b.drain();
        });
        t0.join();
        t1.join();
    };

    SECTION("PACI a = 2 on rank 0, a = 4 on rank 1") {
        paci::executor<paci::paci_policy<>, faulty_stage, comm_type> x0(paci::paci_policy<>{.stages = 2, .microbatches = 2},
                                                                        {&stages[0]}, c0, opts);
        paci::executor<paci::paci_policy<>, faulty_stage, comm_type> x1(paci::paci_policy<>{.stages = 2, .microbatches = 4},
                                                                        {&stages[1]}, c1, opts);
        run_both(x0, 8, x1, 8);
        require_differs(e0);
        require_differs(e1);
    }
    SECTION("interleaved 1F1B (4 stages) on rank 0, 1F1B-flush (2 stages) on rank 1: both 2 ranks") {
        paci::executor<paci::interleaved_one_f_one_b, faulty_stage, comm_type> x0(
            paci::interleaved_one_f_one_b{.ranks = 2, .chunks = 2, .microbatches = 2}, {&stages[0], &stages[2]}, c0, opts);
        paci::executor<paci::one_f_one_b<>, faulty_stage, comm_type> x1(paci::one_f_one_b<>{.stages = 2, .microbatches = 2},
                                                                        {&stages[1]}, c1, opts);
        run_both(x0, 4, x1, 4);
        require_differs(e0);
        require_differs(e1);
    }
    SECTION("the same policy, different micro-batch counts to run: no agreement per run, the cut tells") {
        // Ranks agree once, not at every run (that would be a barrier per update). Rank 1 asked for
        // 8 micro-batches waits at 1F4 for rank 0, which stopped at 4: a timeout naming both.
        const paci::one_f_one_b<> p{.stages = 2, .microbatches = 2};
        paci::executor<paci::one_f_one_b<>, faulty_stage, comm_type> x0(p, {&stages[0]}, c0, {.timeout = 300ms});
        paci::executor<paci::one_f_one_b<>, faulty_stage, comm_type> x1(p, {&stages[1]}, c1, {.timeout = 300ms});
        auto t0 = run_catching(e0, [&] { x0.run(4); });
        auto t1 = run_catching(e1, [&] { x1.run(8); });
        t0.join();
        t1.join();
        CHECK(e0 == nullptr);
        REQUIRE(e1 != nullptr);
        REQUIRE_THROWS_WITH(std::rethrow_exception(e1), "paci::timeout_error: rank 1 waited 0.3 s for rank 0 (tag 2) at 1F4");
    }
    SECTION("control: the same configuration runs") {
        const paci::one_f_one_b<> p{.stages = 2, .microbatches = 2};
        paci::executor<paci::one_f_one_b<>, faulty_stage, comm_type> x0(p, {&stages[0]}, c0, opts);
        paci::executor<paci::one_f_one_b<>, faulty_stage, comm_type> x1(p, {&stages[1]}, c1, opts);
        run_both(x0, 4, x1, 4);
        CHECK(e0 == nullptr);
        CHECK(e1 == nullptr);
        CHECK(x0.state().next_microbatch == 4);
        CHECK(x1.state().stages.at(0) == paci::stage_counters{.version = 2, .backwards = 4});
    }
}

TEST_CASE("bad arguments to the runtime throw config_error with the documented message", "[unit][runtime]") {
    using comm_type = paci::inprocess_communicator<std::vector<double>>;
    auto stages = faulty_stages(4);

    SECTION("run(n): n must be a positive multiple of the micro-batches per update") {
        paci::inprocess_pipeline pipeline(paci::one_f_one_b<>{.stages = 2, .microbatches = 4},
                                          std::vector<faulty_stage*>{&stages[0], &stages[1]}, {.timeout = 2s});
        const std::string req = " must be a positive multiple of 4: one_f_one_b drains after every update of 4 micro-batches";
        REQUIRE_THROWS_AS(pipeline.run(0), paci::config_error);
        REQUIRE_THROWS_WITH(pipeline.run(0), "paci::inprocess_pipeline::run: micro-batches (0)" + req);
        REQUIRE_THROWS_WITH(pipeline.run(6), "paci::inprocess_pipeline::run: micro-batches (6)" + req);
        REQUIRE_THROWS_WITH(pipeline.run(-4), "paci::inprocess_pipeline::run: micro-batches (-4)" + req);
        // Rejected before any rank started: nothing ran.
        for (const auto& st : pipeline.state()) CHECK(st.next_microbatch == 0);
        CHECK(stages[0].steps == 0);
    }
    SECTION("a stage vector of the wrong size") {
        REQUIRE_THROWS_WITH((paci::inprocess_pipeline(paci::one_f_one_b<>{.stages = 4, .microbatches = 4},
                                                      std::vector<faulty_stage*>{&stages[0], &stages[1], &stages[2]})),
                            "paci::inprocess_pipeline: stages given (3) must equal the policy's stages (4)");
        paci::inprocess_world<std::vector<double>> world(2);
        auto comm = world.communicator(0);
        using exec = paci::executor<paci::one_f_one_b<>, faulty_stage, comm_type>;
        REQUIRE_THROWS_AS((exec(paci::one_f_one_b<>{.stages = 2}, {&stages[0], &stages[1]}, comm)), paci::config_error);
        REQUIRE_THROWS_WITH((exec(paci::one_f_one_b<>{.stages = 2}, {&stages[0], &stages[1]}, comm)),
                            "paci::executor: stages given (2) must equal the stages of rank 0 (1)");
        REQUIRE_THROWS_WITH((exec(paci::one_f_one_b<>{.stages = 2}, {}, comm)),
                            "paci::executor: stages given (0) must equal the stages of rank 0 (1)");
    }
    SECTION("a communicator whose size is not the policy's ranks") {
        paci::inprocess_world<std::vector<double>> world(3);
        auto comm = world.communicator(2);
        using exec = paci::executor<paci::one_f_one_b<>, faulty_stage, comm_type>;
        REQUIRE_THROWS_AS(exec(paci::one_f_one_b<>{.stages = 2}, {&stages[0]}, comm), paci::config_error);
        REQUIRE_THROWS_WITH(exec(paci::one_f_one_b<>{.stages = 2}, {&stages[0]}, comm),
                            "paci::executor: communicator size (3) must equal the policy's ranks (2)");
    }
    SECTION("restoring a state of the wrong shape") {
        paci::inprocess_world<std::vector<double>> world(2);
        auto comm = world.communicator(1);
        paci::executor<paci::one_f_one_b<>, faulty_stage, comm_type> x(paci::one_f_one_b<>{.stages = 2}, {&stages[1]}, comm);
        REQUIRE_THROWS_WITH((x.restore(paci::executor_state{.next_microbatch = 0, .stages = {{}, {}}})),
                            "paci::executor::restore: restored stages (2) must equal this rank's stages (1)");
        paci::inprocess_pipeline pipeline(paci::one_f_one_b<>{.stages = 2}, std::vector<faulty_stage*>{&stages[0], &stages[1]});
        REQUIRE_THROWS_WITH(pipeline.restore({paci::executor_state{}}),
                            "paci::inprocess_pipeline: restored ranks (1) must equal ranks (2)");
    }
    SECTION("an invalid policy, world or rank") {
        REQUIRE_THROWS_WITH((paci::inprocess_pipeline(paci::one_f_one_b<>{.stages = 2, .microbatches = 0},
                                                      std::vector<faulty_stage*>{&stages[0], &stages[1]})),
                            "paci::one_f_one_b: microbatches (0) must be >= 1");
        REQUIRE_THROWS_WITH(paci::inprocess_world<std::vector<double>>(0), "paci::inprocess_world: size (0) must be >= 1");
        paci::inprocess_world<std::vector<double>> world(2);
        REQUIRE_THROWS_WITH(world.communicator(2), "paci::inprocess_world: rank (2) must be in [0, 2)");
        REQUIRE_THROWS_WITH(world.communicator(-1), "paci::inprocess_world: rank (-1) must be in [0, 2)");
    }
}

namespace {

struct checkpoint {
    std::vector<paci::executor_state> state;
    std::vector<std::vector<double>> params;
};

/// Event (action, version) pairs of every rank from position `from[r]` on.
std::vector<std::vector<std::pair<paci::action, paci::version_t>>> events_from(const paci::run_trace& t,
                                                                                 const std::vector<std::size_t>& from) {
    std::vector<std::vector<std::pair<paci::action, paci::version_t>>> out(t.ranks.size());
    for (std::size_t r = 0; r < t.ranks.size(); ++r)
        for (std::size_t k = from.empty() ? 0 : from[r]; k < t.ranks[r].size(); ++k)
            out[r].emplace_back(t.ranks[r][k].act, t.ranks[r][k].version);
    return out;
}

/// Trains `first` micro-batches, checkpoints (executor state and stage parameters), then trains `second`
/// more on a new pipeline with new stage objects restored from the checkpoint. Returns the new stages;
/// `trace_after` gets the new pipeline's trace.
template <class Policy>
std::vector<mlp_stage> interrupted(const Policy& policy, const mlp_config& cfg, int first, int second,
                                   paci::run_trace& trace_after, checkpoint& saved) {
    {
        auto stages = paci_test::make_stages(cfg);
        paci::inprocess_pipeline pipeline(policy, paci_test::pointers(stages));
        pipeline.run(first);
        pipeline.drain();
        saved.state = pipeline.state();
        saved.params = paci_test::parameters(stages);
        for (const auto& s : stages) {
            REQUIRE(s.stored() == 0);       // drained
            REQUIRE(s.gradients_zero());    // a whole number of updates: nothing accumulated
        }
    } // the old pipeline and its stages are gone
    auto stages = paci_test::make_stages(cfg);
    for (std::size_t s = 0; s < stages.size(); ++s) stages[s].load(saved.params[s]);
    paci::inprocess_pipeline pipeline(policy, paci_test::pointers(stages));
    pipeline.restore(saved.state);
    pipeline.run(second);
    pipeline.drain();
    trace_after = pipeline.trace();
    return stages;
}

} // namespace

TEST_CASE("resume: a run drained, checkpointed and restored equals an uninterrupted run", "[unit][runtime]") {
    const int P = 4;
    SECTION("1F1B-flush: run(8), checkpoint, restore, run(8) == run(16)") {
        const int a = 4;
        const paci::one_f_one_b<> policy{.stages = P, .microbatches = a};
        const mlp_config cfg = [] {
            mlp_config c;
            c.widths = {4, 8, 8, 8, 2};
            c.accumulation = 4;
            return c;
        }();

        auto whole = paci_test::make_stages(cfg);
        paci::inprocess_pipeline uninterrupted(policy, paci_test::pointers(whole));
        uninterrupted.run(16);
        uninterrupted.drain();

        paci::run_trace after;
        checkpoint saved;
        auto resumed = interrupted(policy, cfg, 8, 8, after, saved);

        // The drained state, by closed form: 8 micro-batches, 8 backwards and 8 / a updates per stage.
        REQUIRE(saved.state.size() == static_cast<std::size_t>(P));
        for (const auto& st : saved.state) {
            CHECK(st.next_microbatch == 8);
            REQUIRE(st.stages.size() == 1);
            CHECK(st.stages[0] == paci::stage_counters{.version = 2, .backwards = 8});
        }
        CHECK(paci_test::bitwise_equal(paci_test::parameters(resumed), paci_test::parameters(whole)));
        CHECK_FALSE(paci_test::bitwise_equal(paci_test::parameters(resumed), saved.params)); // the second half trained

        // The restored counters continue: micro-batches 8.., update ordinals 2.., versions 2 -> 3 -> 4.
        for (const auto& rank : after.ranks) {
            REQUIRE_FALSE(rank.empty());
            CHECK(rank.front().act.microbatch == 8);
            CHECK(rank.front().version == 2);
            std::vector<std::pair<int, int>> steps;
            for (const auto& e : rank)
                if (e.act.kind == paci::op::STEP) steps.emplace_back(e.act.microbatch, e.version);
            CHECK(steps == std::vector<std::pair<int, int>>{{2, 3}, {3, 4}});
        }
        // And it ran exactly what the uninterrupted run did for micro-batches 8..15.
        const auto full = uninterrupted.trace();
        std::vector<std::size_t> half;
        for (const auto& rank : full.ranks) half.push_back(rank.size() / 2);
        CHECK(events_from(after, {}) == events_from(full, half));
    }
    SECTION("PACI: run(8), drain, checkpoint, restore, run(8) == run(8), drain, run(8) on one pipeline") {
        // A drain is a synchronization point for PACI: drain() finishes every backward before
        // micro-batch 8 starts, whereas run(8), run(8) lets micro-batch 8's forwards overlap the
        // backwards of 5..7 (and read older weights). So the uninterrupted reference must drain at the
        // same point; without the drain it is a different schedule with different parameters.
        const int a = 2;
        const paci::paci_policy<> policy{.stages = P, .microbatches = a};
        mlp_config cfg;
        cfg.widths = {4, 8, 8, 8, 2};
        cfg.accumulation = a;

        auto whole = paci_test::make_stages(cfg);
        paci::inprocess_pipeline uninterrupted(policy, paci_test::pointers(whole));
        uninterrupted.run(8);
        uninterrupted.drain();
        const auto first_half = uninterrupted.trace();
        uninterrupted.run(8);
        uninterrupted.drain();

        paci::run_trace after;
        checkpoint saved;
        auto resumed = interrupted(policy, cfg, 8, 8, after, saved);

        for (const auto& st : saved.state) {
            CHECK(st.next_microbatch == 8);
            REQUIRE(st.stages.size() == 1);
            CHECK(st.stages[0] == paci::stage_counters{.version = 4, .backwards = 8});
        }
        CHECK(paci_test::bitwise_equal(paci_test::parameters(resumed), paci_test::parameters(whole)));

        // Versions continue where they stopped: update ordinals 4..7 producing versions 5..8, and the
        // first forward after the restore reads version 4 at every stage.
        for (const auto& rank : after.ranks) {
            REQUIRE_FALSE(rank.empty());
            CHECK(rank.front().act == paci::action(paci::op::F, rank.front().act.stage, 8));
            CHECK(rank.front().version == 4);
            std::vector<std::pair<int, int>> steps;
            for (const auto& e : rank)
                if (e.act.kind == paci::op::STEP) steps.emplace_back(e.act.microbatch, e.version);
            CHECK(steps == std::vector<std::pair<int, int>>{{4, 5}, {5, 6}, {6, 7}, {7, 8}});
        }
        std::vector<std::size_t> half;
        for (const auto& rank : first_half.ranks) half.push_back(rank.size());
        CHECK(events_from(after, {}) == events_from(uninterrupted.trace(), half));

        // Without the drain the schedule, and so the result, is different.
        auto undrained = paci_test::make_stages(cfg);
        paci::inprocess_pipeline one_window(policy, paci_test::pointers(undrained));
        one_window.run(8);
        one_window.run(8);
        one_window.drain();
        CHECK_FALSE(paci_test::bitwise_equal(paci_test::parameters(undrained), paci_test::parameters(whole)));
    }
}
