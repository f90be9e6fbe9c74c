// The streaming runtime as a training loop calls it: run(a) once per update, drain() only to
// evaluate. Every executable policy records, over k calls of run(a), exactly the program of one
// run(k a) and of policy.generate() over k updates; PACI's program keeps the pipeline full across
// updates (and so differs from 1F1B-flush's); the cut after run(n) follows the closed form; state()
// and restore() are defined at drained points only; a stage that does not return, null stages and
// programs the stage cannot run are named errors; the loss scale reaches the last stage.

#include <paci/policy/dualpipe_v.hpp>
#include <paci/policy/gpipe.hpp>
#include <paci/policy/interleaved.hpp>
#include <paci/policy/interleaved_zero_bubble.hpp>
#include <paci/policy/looped_bfs.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/policy/zb_v.hpp>
#include <paci/policy/zero_bubble.hpp>
#include <paci/runtime/executor.hpp>
#include <paci/runtime/inprocess.hpp>
#include <paci/runtime/pipeline.hpp>

#include "support/catch.hpp"
#include "support/mlp.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using paci::backward_flavour;

namespace streaming_test {

/// A stage that does no work but checks that each buffer it gets belongs to its micro-batch, and
/// can run every op (B, I, W, R).
struct noop_stage {
    using buffer_type = std::vector<int>;
    int steps = 0;
    static void expect(int m, const buffer_type& in) {
        if (!in.empty() && (in.size() != 1 || in[0] != m))
            throw std::logic_error("noop_stage: a buffer of another micro-batch arrived for " + std::to_string(m));
    }
    buffer_type forward(int m, buffer_type in) {
        expect(m, in);
        return {m};
    }
    buffer_type backward(int m, buffer_type g) {
        expect(m, g);
        return {m};
    }
    buffer_type backward_input(int m, buffer_type g) { return backward(m, std::move(g)); }
    void backward_weight(int) {}
    void recompute(int) {}
    void step() { ++steps; }
};
static_assert(paci::split_backward_stage<noop_stage> && paci::recompute_stage<noop_stage>);

/// A stage with only forward, backward and step.
struct plain_stage {
    using buffer_type = std::vector<int>;
    buffer_type forward(int m, buffer_type) { return {m}; }
    buffer_type backward(int m, buffer_type) { return {m}; }
    void step() {}
};

using programs = std::vector<std::vector<paci::action>>;

template <class Policy, class Stage = noop_stage>
programs run_calls(const Policy& policy, const std::vector<std::int64_t>& calls, bool drain = true) {
    std::vector<Stage> stages(static_cast<std::size_t>(policy.shape().stages));
    std::vector<Stage*> ptrs;
    for (auto& s : stages) ptrs.push_back(&s);
    paci::inprocess_pipeline pipeline(policy, ptrs, {.timeout = 20s});
    for (const auto n : calls) pipeline.run(n);
    if (drain) pipeline.drain();
    return pipeline.trace().to_schedule().ranks;
}

template <class Policy>
void check_streaming(Policy policy, int k) {
    INFO(policy << ", " << k << " updates");
    const int a = policy.microbatches;
    Policy window = policy;
    window.steps = k;
    const programs planned = window.generate().ranks;
    const programs per_update = run_calls(policy, std::vector<std::int64_t>(static_cast<std::size_t>(k), a));
    const programs at_once = run_calls(policy, {static_cast<std::int64_t>(k) * a});
    CHECK(per_update == at_once);
    CHECK(per_update == planned);
    if (policy.run_granularity() == 1) { // PACI: any n, the controller counts across calls
        CHECK(run_calls(policy, std::vector<std::int64_t>(static_cast<std::size_t>(k * a), 1)) == planned);
        CHECK(run_calls(policy, {1, static_cast<std::int64_t>(k * a - 1)}) == planned);
    }
}

/// Position of `x` in `prog`, or -1.
std::ptrdiff_t position(const std::vector<paci::action>& prog, paci::action x) {
    const auto it = std::find(prog.begin(), prog.end(), x);
    return it == prog.end() ? -1 : it - prog.begin();
}

} // namespace streaming_test

using namespace streaming_test;

TEST_CASE("streaming: k calls of run(a) then drain() run exactly generate() over k updates, every executable policy",
          "[unit][runtime]") {
    const int P = GENERATE(2, 4, 8);
    const int k = 3;
    check_streaming(paci::paci_policy<>{.stages = P, .microbatches = 2}, k);
    check_streaming(paci::paci_policy<>{.stages = P, .microbatches = P}, k);
    check_streaming(paci::paci_policy<backward_flavour::recompute>{.stages = P, .microbatches = 2}, k);
    check_streaming(paci::one_f_one_b<>{.stages = P, .microbatches = P}, k);
    check_streaming(paci::one_f_one_b<backward_flavour::recompute>{.stages = P, .microbatches = 2}, k);
    check_streaming(paci::gpipe<>{.stages = P, .microbatches = 3}, k);
    check_streaming(paci::gpipe<backward_flavour::recompute>{.stages = P, .microbatches = 2}, k);
    check_streaming(paci::zb_h1{.stages = P, .microbatches = P}, k);
    check_streaming(paci::zb_h2{.stages = P, .microbatches = P}, k);
    check_streaming(paci::interleaved_one_f_one_b{.ranks = P, .chunks = 2, .microbatches = P}, k);
    check_streaming(paci::looped_bfs{.ranks = P, .chunks = 2, .microbatches = 3}, k);
    check_streaming(paci::interleaved_zero_bubble{.ranks = P, .chunks = 2, .microbatches = P}, k);
    check_streaming(paci::zb_v{.ranks = P, .microbatches = 2 * P}, k);
    check_streaming(paci::dualpipe_v{.ranks = P, .microbatches = 2 * P}, k); // overlapped pairs
}

TEST_CASE("streaming: PACI's training loop keeps the pipeline full across updates; 1F1B-flush's drains", "[unit][runtime]") {
    const int P = GENERATE(2, 4, 8);
    const int a = GENERATE(2, 8);
    const int k = 4;
    INFO("P = " << P << ", a = " << a);
    const std::vector<std::int64_t> loop(static_cast<std::size_t>(k), a);
    const programs paci_ran = run_calls(paci::paci_policy<>{.stages = P, .microbatches = a}, loop);
    const programs flush_ran = run_calls(paci::one_f_one_b<>{.stages = P, .microbatches = a}, loop);
    CHECK(paci_ran != flush_ran);
    // At stage 0 (cap P), PACI injects the first micro-batch of update g (g a) once g a - P + 1
    // backwards are done: before the backward of g a - 1, the last micro-batch of the update before.
    // 1F1B-flush injects it only after that backward and the update (the flush).
    for (int g = 1; g < k; ++g) {
        const int N = g * a;
        INFO("update " << g);
        const auto f_next = paci::action(paci::op::F, 0, N);
        const auto b_last = paci::action(paci::op::B, 0, N - 1);
        const auto step = paci::action(paci::op::STEP, 0, g - 1);
        CHECK(position(paci_ran[0], f_next) < position(paci_ran[0], b_last));
        CHECK(position(flush_ran[0], f_next) > position(flush_ran[0], b_last));
        CHECK(position(flush_ran[0], f_next) > position(flush_ran[0], step));
    }
}

TEST_CASE("streaming: the cut after run(n) is every action before the first forward of micro-batch next + n",
          "[unit][runtime]") {
    // Closed form for PACI with the default cap L_s = P - s: stage s injects micro-batch N once
    // N - L_s + 1 backwards are done, so at the cut N it has run N forwards, max(0, N - L_s + 1)
    // backwards and floor(backwards / a) updates, and nothing of micro-batch >= N.
    const int P = GENERATE(2, 4, 8);
    const int a = GENERATE(1, 3, 4);
    const std::vector<std::int64_t> calls = GENERATE(std::vector<std::int64_t>{5}, std::vector<std::int64_t>{2, 3, 7},
                                                     std::vector<std::int64_t>{9, 1});
    std::int64_t N = 0;
    for (const auto n : calls) N += n;
    INFO("P = " << P << ", a = " << a << ", cut " << N);
    const programs ran = run_calls(paci::paci_policy<>{.stages = P, .microbatches = a}, calls, false);
    REQUIRE(ran.size() == static_cast<std::size_t>(P));
    for (int s = 0; s < P; ++s) {
        INFO("stage " << s);
        const auto& prog = ran[static_cast<std::size_t>(s)];
        const std::int64_t backwards = std::clamp<std::int64_t>(N - (P - s) + 1, 0, N);
        CHECK(std::count_if(prog.begin(), prog.end(), [](auto x) { return x.kind == paci::op::F; }) == N);
        CHECK(std::count_if(prog.begin(), prog.end(), [](auto x) { return x.kind == paci::op::B; }) == backwards);
        CHECK(std::count_if(prog.begin(), prog.end(), [](auto x) { return x.kind == paci::op::STEP; }) == backwards / a);
        for (const auto& x : prog)
            if (x.kind != paci::op::STEP) CHECK(x.microbatch < N);
    }
}

TEST_CASE("streaming: flushing policies take whole updates, PACI any count; the error says why", "[unit][runtime]") {
    std::vector<noop_stage> st(4);
    std::vector<noop_stage*> ptrs{&st[0], &st[1], &st[2], &st[3]};
    paci::inprocess_pipeline flush(paci::one_f_one_b<>{.stages = 4, .microbatches = 4}, ptrs);
    REQUIRE_THROWS_WITH(flush.run(3), "paci::inprocess_pipeline::run: micro-batches (3) must be a positive multiple of 4: "
                                      "one_f_one_b drains after every update of 4 micro-batches");
    paci::inprocess_pipeline gp(paci::gpipe<>{.stages = 4, .microbatches = 2}, ptrs);
    REQUIRE_THROWS_WITH(gp.run(1), Catch::Matchers::ContainsSubstring("gpipe drains after every update of 2"));
    paci::inprocess_pipeline pc(paci::paci_policy<>{.stages = 4, .microbatches = 4}, ptrs);
    REQUIRE_THROWS_WITH(pc.run(0), "paci::inprocess_pipeline::run: micro-batches (0) must be >= 1");
    REQUIRE_NOTHROW(pc.run(3));
    REQUIRE_NOTHROW(pc.drain());
    CHECK(pc.state().at(0).next_microbatch == 3);
    CHECK(pc.state().at(0).stages.at(0) == paci::stage_counters{.version = 0, .backwards = 3});
}

TEST_CASE("streaming: state() and restore() are defined at drained points only", "[unit][runtime]") {
    std::vector<noop_stage> st(4);
    std::vector<noop_stage*> ptrs{&st[0], &st[1], &st[2], &st[3]};
    const paci::paci_policy<> policy{.stages = 4, .microbatches = 2};
    paci::inprocess_pipeline pipe(policy, ptrs);
    pipe.run(4);
    pipe.run(4);
    REQUIRE_THROWS_AS(pipe.state(), paci::config_error);
    REQUIRE_THROWS_WITH(pipe.state(), "paci::inprocess_pipeline::state: drained (false) must be true: micro-batches are in "
                                      "flight, call drain() first");
    pipe.drain();
    const auto saved = pipe.state();
    // Closed form after 8 micro-batches with a = 2: 8 backwards and 4 updates at every stage.
    for (const auto& r : saved) CHECK(r.stages.at(0) == paci::stage_counters{.version = 4, .backwards = 8});

    SECTION("restore checks the counters against the program: a state edited or of another policy is refused") {
        std::vector<noop_stage> st2(4);
        paci::inprocess_pipeline other(policy, std::vector<noop_stage*>{&st2[0], &st2[1], &st2[2], &st2[3]});
        auto edited = saved;
        edited[1].stages[0].backwards = 7; // would change the update cadence silently
        REQUIRE_THROWS_WITH(other.restore(edited),
                            "paci::executor::restore: stages[0] (version, backwards) ((4, 7)) must be (4, 8), what paci's "
                            "program reaches at micro-batch 8");
        REQUIRE_NOTHROW(other.restore(saved));
        other.run(2);
        other.drain();
        CHECK(other.state().at(0).stages.at(0) == paci::stage_counters{.version = 5, .backwards = 10});
    }
    SECTION("the executor alone") {
        paci::inprocess_world<std::vector<int>> world(1);
        auto comm = world.communicator(0);
        noop_stage one;
        paci::executor<paci::paci_policy<>, noop_stage, paci::inprocess_communicator<std::vector<int>>> x(
            paci::paci_policy<>{.stages = 1, .microbatches = 2}, {&one}, comm);
        x.run(3);
        CHECK_FALSE(x.drained());
        REQUIRE_THROWS_WITH(x.state(), "paci::executor::state: drained (false) must be true: micro-batches are in flight, "
                                       "call drain() first");
        x.drain();
        CHECK(x.drained());
        CHECK(x.state() == paci::executor_state{.next_microbatch = 3, .stages = {{.version = 1, .backwards = 3}}});
    }
}

TEST_CASE("executor: null or repeated stage pointers are config errors", "[unit][runtime]") {
    std::vector<noop_stage> st(2);
    REQUIRE_THROWS_WITH((paci::inprocess_pipeline(paci::paci_policy<>{.stages = 2}, std::vector<noop_stage*>{&st[0], nullptr})),
                        "paci::inprocess_pipeline: stages[1] (nullptr) must point to the object of stage 1");
    REQUIRE_THROWS_WITH((paci::inprocess_pipeline(paci::paci_policy<>{.stages = 2}, std::vector<noop_stage*>{&st[0], &st[0]})),
                        "paci::inprocess_pipeline: stages[1] (the object of stages[0]) must be a distinct object per "
                        "stage (each rank runs on its own thread)");
    paci::inprocess_world<std::vector<int>> world(2);
    auto comm = world.communicator(0);
    using exec = paci::executor<paci::interleaved_one_f_one_b, noop_stage, paci::inprocess_communicator<std::vector<int>>>;
    const paci::interleaved_one_f_one_b il{.ranks = 2, .chunks = 2, .microbatches = 2};
    REQUIRE_THROWS_WITH(exec(il, {nullptr, &st[1]}, comm), "paci::executor: stages[0] (nullptr) must point to the object of stage 0");
    REQUIRE_THROWS_WITH(exec(il, {&st[1], &st[1]}, comm),
                        "paci::executor: stages[1] (the object of stages[0]) must be a distinct object per stage");
}

namespace streaming_test {
/// A user's policy that emits ZB-H1's program (I and W actions) but does not declare that its
/// program splits the backward: the executor cannot refuse it at compile time, so it must at run time.
struct undeclared_split : paci::zb_h1 {
    static constexpr bool splits_backward = false;
};
std::ostream& operator<<(std::ostream& os, const undeclared_split& p) { return os << static_cast<const paci::zb_h1&>(p); }
static_assert(paci::schedule_policy<undeclared_split>);
static_assert(!paci::split_backward_stage<plain_stage>);

/// The smallest policy the concept admits, written from its documented requirements alone: one
/// stage, F m then B m, an update after every `a` backwards.
struct archetype_policy {
    static constexpr std::string_view name = "archetype";
    static constexpr bool splits_backward = false;
    static constexpr bool recomputes = false;
    int a = 2;
    struct stream {
        int a;
        std::int64_t m = 0;
        int phase = 0; // 0: F next, 1: B next, 2: STEP next
        bool next(paci::action& out, std::int64_t cut) {
            if (phase == 0) {
                if (m >= cut) return false;
                out = paci::action(paci::op::F, 0, static_cast<int>(m));
                phase = 1;
            } else if (phase == 1) {
                out = paci::action(paci::op::B, 0, static_cast<int>(m));
                ++m;
                phase = m % a == 0 ? 2 : 0;
            } else {
                out = paci::action(paci::op::STEP, 0, static_cast<int>(m / a - 1));
                phase = 0;
            }
            return true;
        }
        bool next_draining(paci::action& out, std::int64_t cut) { return next(out, cut); }
    };
    void validate() const {}
    [[nodiscard]] paci::pipeline_shape shape() const { return {1, 1, paci::stage_map::loop}; }
    [[nodiscard]] paci::schedule generate() const { return {}; }
    [[nodiscard]] stream program(int) const { return stream{a}; }
    [[nodiscard]] paci::accumulation controller() const { return paci::accumulation{a}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    [[nodiscard]] double loss_scale() const { return 1.0 / a; }
    [[nodiscard]] int run_granularity() const { return 1; }
    friend bool operator==(const archetype_policy&, const archetype_policy&) = default;
};
std::ostream& operator<<(std::ostream& os, const archetype_policy& p) { return os << "archetype{" << p.a << "}"; }
static_assert(paci::schedule_policy<archetype_policy>);
} // namespace streaming_test

TEST_CASE("executor: a program action the stage cannot run is an error, never skipped", "[unit][runtime]") {
    std::vector<plain_stage> st(2);
    paci::inprocess_pipeline pipe(undeclared_split{{.stages = 2, .microbatches = 2}}, std::vector<plain_stage*>{&st[0], &st[1]},
                                  {.timeout = 5s});
    try {
        pipe.run(2);
        pipe.drain();
        FAIL("a program with I and W ran on a stage without a split backward");
    } catch (const paci::pipeline_error& e) {
        CHECK(e.failed_action().kind == paci::op::I);
        CHECK_THAT(e.what(), Catch::Matchers::ContainsSubstring("needs a Stage with backward_input(m, g)"));
        REQUIRE_THROWS_AS(e.rethrow_original(), paci::config_error);
    }
    REQUIRE_THROWS_AS(pipe.run(2), paci::aborted_error);
    REQUIRE_THROWS_AS(pipe.state(), paci::config_error);
}

TEST_CASE("executor: runs a minimal archetype policy that satisfies schedule_policy and nothing more", "[unit][runtime]") {
    noop_stage one;
    paci::inprocess_pipeline pipe(archetype_policy{.a = 2}, std::vector<noop_stage*>{&one});
    pipe.run(3);
    pipe.run(3);
    pipe.drain();
    const auto ran = pipe.trace().to_schedule().ranks.at(0);
    REQUIRE(ran.size() == 6 * 2 + 3);
    CHECK(one.steps == 3);
    CHECK(pipe.state().at(0).stages.at(0) == paci::stage_counters{.version = 3, .backwards = 6});
}

namespace streaming_test {
/// A stage that blocks in the forward of one micro-batch until released.
struct stuck_stage {
    using buffer_type = std::vector<int>;
    int hang_at = -1;
    std::mutex* mutex = nullptr;
    std::condition_variable* cv = nullptr;
    bool* released = nullptr;
    buffer_type forward(int m, buffer_type) {
        if (m == hang_at) {
            std::unique_lock lock(*mutex);
            cv->wait(lock, [&] { return *released; });
        }
        return {m};
    }
    buffer_type backward(int m, buffer_type) { return {m}; }
    void step() {}
};
} // namespace streaming_test

TEST_CASE("inprocess_pipeline: a stage that never returns is named within the timeout; the pipeline is then spent",
          "[unit][runtime]") {
    const int stuck = GENERATE(0, 1, 2);
    const auto timeout = 300ms;
    std::mutex mutex;
    std::condition_variable cv;
    bool released = false;
    std::vector<stuck_stage> st(4);
    for (auto& s : st) s = stuck_stage{-1, &mutex, &cv, &released};
    st[static_cast<std::size_t>(stuck)].hang_at = 3;
    INFO("stage " << stuck << " hangs in 1F3");
    {
        paci::inprocess_pipeline pipe(paci::paci_policy<>{.stages = 4, .microbatches = 2},
                                      std::vector<stuck_stage*>{&st[0], &st[1], &st[2], &st[3]},
                                      {.timeout = timeout});
        const auto t0 = std::chrono::steady_clock::now();
        try {
            pipe.run(8);
            pipe.drain();
            FAIL("drain returned");
        } catch (const paci::timeout_error& e) {
            CHECK(e.stage_call());
            CHECK(e.rank() == stuck);
            CHECK(e.waited_on() == paci::action(paci::op::F, stuck, 3));
            CHECK_THAT(e.what(), Catch::Matchers::StartsWith("paci::timeout_error: rank " + std::to_string(stuck) +
                                                             "'s stage " + std::to_string(stuck) + " did not return from " +
                                                             std::to_string(stuck) + "F3"));
        }
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        INFO("returned after " << elapsed << " s");
        CHECK(elapsed < 0.3 + 1.0);
        REQUIRE_THROWS_AS(pipe.run(2), paci::aborted_error);
        REQUIRE_THROWS_WITH(pipe.drain(), Catch::Matchers::ContainsSubstring("aborted by an earlier failure"));
        REQUIRE_THROWS_AS(pipe.state(), paci::config_error);
        {
            std::lock_guard lock(mutex);
            released = true;
        }
        cv.notify_all();
    } // the released stage returns; the pipeline joins its threads
}

namespace streaming_test {
/// An MLP stage that measures each of its updates (the norm of the parameter change).
struct measuring_stage : paci_test::mlp_stage {
    using mlp_stage::mlp_stage;
    std::vector<double> update_norms;
    void step() {
        const auto before = parameters();
        mlp_stage::step();
        const auto after = parameters();
        double sq = 0;
        for (std::size_t i = 0; i < after.size(); ++i) sq += (after[i] - before[i]) * (after[i] - before[i]);
        update_norms.push_back(std::sqrt(sq));
    }
};
static_assert(paci::loss_scaling_stage<measuring_stage>);
} // namespace streaming_test

TEST_CASE("loss scaling: PACI and 1F1B-flush with the same accumulation take updates of the same magnitude",
          "[unit][runtime]") {
    // The executor gives the last stage policy.loss_scale() = 1/a, so an update applies the mean
    // gradient of a micro-batches whatever a is. Each stage's first update reads the same weights for
    // the same micro-batches under both policies, so it is the same update bit for bit (and the
    // sequential reference's, which divides by a itself); later PACI updates differ (its forwards
    // may read older weights) but keep the magnitude. Run as a training loop: run(a) per update.
    const int P = 4;
    const int a = GENERATE(2, 4, 8);
    const int updates = 6;
    INFO("a = " << a);
    const auto cfg = paci_test::mlp_config_for(P, a);
    const auto train = [&](auto policy) {
        std::vector<measuring_stage> stages;
        for (int s = 0; s < P; ++s) stages.emplace_back(cfg, s);
        paci::inprocess_pipeline pipe(policy, paci_test::pointers(stages));
        for (int u = 0; u < updates; ++u) pipe.run(a);
        pipe.drain();
        CHECK(stages.back().loss_scale() == 1.0 / a);
        std::vector<std::vector<double>> norms;
        for (const auto& st : stages) norms.push_back(st.update_norms);
        return norms;
    };
    const auto paci_norms = train(paci::paci_policy<>{.stages = P, .microbatches = a});
    const auto flush_norms = train(paci::one_f_one_b<>{.stages = P, .microbatches = a});
    paci_test::mlp_reference ref(cfg);
    const auto start = ref.parameters();
    static_cast<void>(ref.train(0, a));
    const auto end = ref.parameters();
    for (int s = 0; s < P; ++s) {
        INFO("stage " << s);
        const auto& pn = paci_norms[static_cast<std::size_t>(s)];
        const auto& fn = flush_norms[static_cast<std::size_t>(s)];
        REQUIRE(pn.size() == static_cast<std::size_t>(updates));
        REQUIRE(fn.size() == static_cast<std::size_t>(updates));
        double sq = 0;
        for (std::size_t i = 0; i < end[static_cast<std::size_t>(s)].size(); ++i) {
            const double d = end[static_cast<std::size_t>(s)][i] - start[static_cast<std::size_t>(s)][i];
            sq += d * d;
        }
        CHECK(pn.front() == fn.front());
        CHECK(fn.front() == std::sqrt(sq));
        for (std::size_t u = 0; u < pn.size(); ++u) {
            INFO("update " << u << ": PACI " << pn[u] << ", flush " << fn[u]);
            CHECK(pn[u] > 0);
            CHECK(pn[u] / fn[u] > 0.5);
            CHECK(pn[u] / fn[u] < 2.0);
        }
    }
}
