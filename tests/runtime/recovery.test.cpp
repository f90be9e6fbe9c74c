// What the runtime reports when start-up or an argument goes wrong, and what it leaves usable.

#include <paci/policy/one_f_one_b.hpp>
#include <paci/runtime/executor.hpp>
#include <paci/runtime/inprocess.hpp>
#include <paci/runtime/pipeline.hpp>

#include "support/catch.hpp"

#include <chrono>
#include <stdexcept>
#include <vector>

namespace {

struct echo_stage {
    using buffer_type = std::vector<int>;
    bool throw_config = false;
    buffer_type forward(int m, buffer_type b) {
        if (throw_config) throw paci::config_error("user stage: bad layer shape");
        if (b.empty()) b = {m};
        return b;
    }
    buffer_type backward(int m, buffer_type g) {
        if (g.empty()) g = {m};
        return g;
    }
    void step() {}
};

} // namespace

TEST_CASE("inprocess_world: a rank alone at start-up times out naming the rank it waited for", "[unit][runtime]") {
    paci::inprocess_world<std::vector<int>> world(3);
    auto c1 = world.communicator(1);
    try {
        c1.agree(42, std::chrono::milliseconds(50));
        FAIL("agree returned without the other ranks");
    } catch (const paci::timeout_error& e) {
        CHECK(e.rank() == 1);
        CHECK(e.peer() == 0); // rank 0 is the first that never arrived
        CHECK(e.tag() == -1);
        CHECK_THAT(e.what(), Catch::Matchers::ContainsSubstring("rank 1 waited 0.05 s for rank 0 at the start-up agreement"));
    }
    // The failed round left nothing behind: all three ranks agree afterwards.
    auto c0 = world.communicator(0);
    auto c2 = world.communicator(2);
    std::vector<std::jthread> threads;
    for (auto* c : {&c0, &c1, &c2}) threads.emplace_back([c] { c->agree(7, std::chrono::seconds(10)); });
}

TEST_CASE("inprocess_pipeline: a rejected micro-batch count leaves the pipeline usable", "[unit][runtime]") {
    std::vector<echo_stage> stages(3);
    std::vector<echo_stage*> ptrs{&stages[0], &stages[1], &stages[2]};
    paci::inprocess_pipeline<paci::one_f_one_b<>, echo_stage> pipeline(paci::one_f_one_b<>{.stages = 3, .microbatches = 4}, ptrs);
    REQUIRE_THROWS_WITH(pipeline.run(6),
                        "paci::executor: micro-batches to run (6) must be a positive multiple of micro-batches per update (4)");
    REQUIRE_THROWS_AS(pipeline.run(0), paci::config_error);
    REQUIRE_NOTHROW(pipeline.run(8));
    CHECK(pipeline.state().front().next_microbatch == 8);
}

TEST_CASE("executor: whatever a stage throws is reported as that stage's failure", "[unit][runtime]") {
    // A stage's own config_error is not the executor's configuration problem: it arrives as
    // pipeline_error with the rank, stage and micro-batch, and the original inside.
    std::vector<echo_stage> stages(2);
    stages[1].throw_config = true;
    std::vector<echo_stage*> ptrs{&stages[0], &stages[1]};
    paci::inprocess_pipeline<paci::one_f_one_b<>, echo_stage> pipeline(paci::one_f_one_b<>{.stages = 2, .microbatches = 2},
                                                                       ptrs, {.timeout = std::chrono::seconds(5)});
    try {
        pipeline.run(2);
        FAIL("the run did not fail");
    } catch (const paci::pipeline_error& e) {
        CHECK(e.rank() == 1);
        CHECK(e.failed_action() == paci::action(paci::op::F, 1, 0));
        REQUIRE_THROWS_WITH(e.rethrow_original(), "user stage: bad layer shape");
        REQUIRE_THROWS_AS(e.rethrow_original(), paci::config_error);
    }
}

TEST_CASE("inprocess_pipeline: clear_trace forgets what was recorded; the next run records afresh", "[unit][runtime]") {
    std::vector<echo_stage> stages(2);
    std::vector<echo_stage*> ptrs{&stages[0], &stages[1]};
    paci::inprocess_pipeline<paci::one_f_one_b<>, echo_stage> pipeline(paci::one_f_one_b<>{.stages = 2, .microbatches = 2}, ptrs);
    pipeline.run(4);
    // 4 micro-batches: per rank 4 forwards, 4 backwards and 2 updates.
    for (const auto& events : pipeline.trace().ranks) CHECK(events.size() == 10);
    pipeline.clear_trace();
    for (const auto& events : pipeline.trace().ranks) CHECK(events.empty());
    pipeline.run(2);
    for (const auto& events : pipeline.trace().ranks) {
        REQUIRE(events.size() == 5);
        CHECK(events.front().act.microbatch == 4); // numbering continues after the first run
    }
}
