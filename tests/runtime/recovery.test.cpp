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
    REQUIRE_THROWS_WITH(pipeline.run(6), "paci::inprocess_pipeline::run: micro-batches (6) must be a positive multiple of "
                                         "4: one_f_one_b drains after every update of 4 micro-batches");
    REQUIRE_THROWS_AS(pipeline.run(0), paci::config_error);
    REQUIRE_NOTHROW(pipeline.run(8));
    REQUIRE_NOTHROW(pipeline.drain());
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
        pipeline.drain();
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
    pipeline.drain();
    // 4 micro-batches: per rank 4 forwards, 4 backwards and 2 updates.
    for (const auto& events : pipeline.trace().ranks) CHECK(events.size() == 10);
    pipeline.clear_trace();
    for (const auto& events : pipeline.trace().ranks) CHECK(events.empty());
    pipeline.run(2);
    pipeline.drain();
    for (const auto& events : pipeline.trace().ranks) {
        REQUIRE(events.size() == 5);
        CHECK(events.front().act.microbatch == 4); // numbering continues after the first run
    }
}

TEST_CASE("inprocess_world: an unbounded timeout waits instead of failing; the missing rank is named", "[unit][runtime]") {
    paci::inprocess_world<std::vector<int>> world(3);
    auto c0 = world.communicator(0);
    auto c1 = world.communicator(1);
    {
        std::jthread late([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            static_cast<void>(c1.isend(0, 5, std::vector<int>{9}));
        });
        auto r = c0.irecv(1, 5);
        CHECK(r.wait(std::chrono::nanoseconds::max()) == std::vector<int>{9}); // "forever" must not overflow
    }
    // Ranks 0 and 1 reach the agreement, rank 2 never does: rank 0's timeout names rank 2.
    std::jthread other([&] {
        try {
            c1.agree(3, std::chrono::milliseconds(200));
        } catch (const paci::timeout_error&) {
        }
    });
    try {
        c0.agree(3, std::chrono::milliseconds(100));
        FAIL("agree returned without rank 2");
    } catch (const paci::timeout_error& e) {
        CHECK(e.peer() == 2);
    }
}

TEST_CASE("executor: a timeout of zero is rejected", "[unit][runtime]") {
    std::vector<echo_stage> stages(1);
    paci::inprocess_world<std::vector<int>> world(1);
    auto c = world.communicator(0);
    using exec = paci::executor<paci::one_f_one_b<>, echo_stage, paci::inprocess_communicator<std::vector<int>>>;
    REQUIRE_THROWS_WITH(exec(paci::one_f_one_b<>{.stages = 1, .microbatches = 1}, {&stages[0]}, c,
                             {.timeout = std::chrono::nanoseconds::zero()}),
                        "paci::executor: timeout (ns) (0) must be > 0");
}
