// The executor on the V placement and with overlapped pairs, through fixed hand-written programs
// (a test policy that repeats one update's program per rank) and PyTorch 2.11's own V schedules:
// - V placement (stage_map::v): stages r and 2R-1-r on rank r, so stages R-1 and R share rank R-1
//   and hand over locally in both directions (activations and gradients, B and I): the run equals
//   the sequential reference bit for bit, every buffer arrives on the right edge, and nothing of a
//   local hand-off goes through the communicator.
// - Overlapped pairs (action::overlap_next): both members' inputs are received before the pair
//   starts and both outputs sent after it; a Stage with forward_backward (overlapping_stage) gets
//   each F + B pair in one call; F + I pairs and stages without the member run forward, then
//   backward. Malformed pairs are refused at run time with a pipeline_error naming the member at
//   fault, before any of it runs.

#include <paci/analysis/validate.hpp>
#include <paci/policy/program.hpp>
#include <paci/policy/schedule_policy.hpp>
#include <paci/runtime/executor.hpp>
#include <paci/runtime/inprocess.hpp>
#include <paci/runtime/pipeline.hpp>
#include <paci/version/flush.hpp>

#include "support/catch.hpp"
#include "support/equivalence.hpp"
#include "support/mlp.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace placement_test {

using paci::action;
using paci::op;
using programs = std::vector<std::vector<action>>;

/// One rank's program written as cells separated by spaces or commas (empty cells are idle slots):
/// action tokens (`3F12`, `0STEP0`) and overlapped pairs as PyTorch writes them, `(0F7;7B3)OVERLAP_F_B`
/// (the first member gets `overlap_next`, whatever its op, so malformed pairs can be written too).
std::vector<action> program_of(std::string_view text) {
    std::vector<action> out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t end = pos;
        while (end < text.size() && text[end] != ' ' && text[end] != ',' && text[end] != '\n' && text[end] != '\r') ++end;
        const std::string_view cell = text.substr(pos, end - pos);
        if (!cell.empty() && cell.front() == '(') {
            const std::size_t semi = cell.find(';'), close = cell.find(')');
            if (semi == std::string_view::npos || close == std::string_view::npos || cell.substr(close) != ")OVERLAP_F_B")
                throw std::invalid_argument("program_of: bad pair cell " + std::string(cell));
            out.push_back(paci::overlapped(paci::parse_action(cell.substr(1, semi - 1))));
            out.push_back(paci::parse_action(cell.substr(semi + 1, close - semi - 1)));
        } else if (!cell.empty()) {
            out.push_back(paci::parse_action(cell));
        }
        pos = end + 1;
    }
    return out;
}

/// A policy that runs one fixed program per rank, update after update: update `g` is the program
/// with every micro-batch shifted by `g * microbatches` and every STEP's ordinal by `g`. The program
/// must hold each update's STEPs itself (a flush: every update drains).
struct fixed_policy {
    static constexpr std::string_view name = "fixed";
    static constexpr bool splits_backward = true;
    static constexpr bool recomputes = false;
    paci::pipeline_shape layout{};
    int microbatches = 1;
    int steps = 1;
    programs update{};

    void validate() const {
        layout.validate(name);
        paci::detail::check_counts(name, microbatches, steps);
        paci::detail::config_require(update.size() == static_cast<std::size_t>(layout.ranks), name, "programs",
                                     update.size(), "must be one per rank");
    }
    [[nodiscard]] paci::pipeline_shape shape() const { return layout; }
    [[nodiscard]] paci::flush controller() const { return paci::flush{microbatches}; }
    [[nodiscard]] int drift_bound(int) const { return 0; }
    [[nodiscard]] int staleness_bound(int) const { return 0; }
    [[nodiscard]] int versions_bound(int) const { return 1; }
    [[nodiscard]] double loss_scale() const noexcept { return 1.0 / microbatches; }
    [[nodiscard]] int run_granularity() const noexcept { return microbatches; }
    [[nodiscard]] paci::update_program<fixed_policy> program(int rank) const {
        validate();
        return unchecked_program(rank);
    }
    [[nodiscard]] paci::update_program<fixed_policy> unchecked_program(int rank) const { return {*this, rank}; }
    [[nodiscard]] paci::schedule generate() const {
        validate();
        std::size_t longest = 0;
        for (const auto& p : update) longest = std::max(longest, p.size());
        return paci::detail::materialize(*this, static_cast<std::int64_t>(microbatches) * steps,
                                         static_cast<std::uint64_t>(longest) * static_cast<std::uint64_t>(steps));
    }
    void append_update(int rank, int g, std::vector<action>& out) const {
        for (action a : update[static_cast<std::size_t>(rank)]) {
            a.microbatch = a.kind == op::STEP ? g : a.microbatch + g * microbatches;
            out.push_back(a);
        }
    }
    friend bool operator==(const fixed_policy&, const fixed_policy&) = default;
};
std::ostream& operator<<(std::ostream& os, const fixed_policy& p) {
    return os << "fixed{" << p.layout << ", .microbatches = " << p.microbatches << "}";
}
static_assert(paci::schedule_policy<fixed_policy>);

/// `fixed_policy` of hand-written per-rank programs (STEPs included).
fixed_policy fixed(paci::pipeline_shape shape, int microbatches, const std::vector<std::string_view>& ranks) {
    fixed_policy p{.layout = shape, .microbatches = microbatches};
    for (const auto r : ranks) p.update.push_back(program_of(r));
    return p;
}

// ---- hand-written V schedules: 2 ranks, 4 stages (rank 0: stages 0 and 3; rank 1: stages 1 and 2) --------
// Stages 1 and 2 share rank 1: F(1, m) hands its activation to F(2, m) and B/I(2, m) its gradient to
// B/I(1, m) on the rank. Every stage runs its forwards and backwards in micro-batch order.

const paci::pipeline_shape v4{.stages = 4, .ranks = 2, .map = paci::stage_map::v};

/// Split backward: I on the critical path, W later (lagging at stages 0, 1 and 2).
fixed_policy v_split() {
    return fixed(v4, 4,
                 {"0F0 0F1 0F2 3F0 3I0 3W0 0F3 3F1 3I1 3W1 0I0 0W0 3F2 3I2 3W2 0I1 0W1 3F3 3I3 3W3 0I2 0W2 0I3 0W3 0STEP0 3STEP0",
                  "1F0 2F0 1F1 2F1 2I0 1I0 2W0 1W0 1F2 2F2 2I1 1I1 1F3 2F3 2I2 1I2 2W1 1W1 2I3 1I3 2W2 1W2 2W3 1W3 1STEP0 2STEP0"});
}
/// Full backward.
fixed_policy v_full() {
    return fixed(v4, 4,
                 {"0F0 0F1 0F2 3F0 3B0 0F3 3F1 3B1 0B0 3F2 3B2 0B1 3F3 3B3 0B2 0B3 0STEP0 3STEP0",
                  "1F0 2F0 1F1 2F1 2B0 1B0 1F2 2F2 2B1 1B1 1F3 2F3 2B2 1B2 2B3 1B3 1STEP0 2STEP0"});
}
/// Full backward with overlapped pairs: rank 0's pair sends both outputs to rank 1; rank 1's
/// (1F2;2B1) hands both outputs over locally, (1F3;2B2) receives both inputs from rank 0, and
/// (2F3;1B2) takes both inputs locally and sends both outputs to rank 0.
fixed_policy v_pairs() {
    return fixed(v4, 4,
                 {"0F0 0F1 0F2 3F0 3B0 3F1 (0F3;3B1)OVERLAP_F_B 0B0 3F2 3B2 0B1 3F3 3B3 0B2 0B3 0STEP0 3STEP0",
                  "1F0 2F0 1F1 2F1 2B0 1B0 (1F2;2B1)OVERLAP_F_B 2F2 1B1 (1F3;2B2)OVERLAP_F_B (2F3;1B2)OVERLAP_F_B 2B3 1B3 "
                  "1STEP0 2STEP0"});
}
/// The same pairs with a split backward: forward + input-gradient pairs, W after them.
fixed_policy v_split_pairs() {
    return fixed(v4, 4,
                 {"0F0 0F1 0F2 3F0 3I0 3W0 3F1 (0F3;3I1)OVERLAP_F_B 3W1 0I0 0W0 3F2 3I2 3W2 0I1 0W1 3F3 3I3 3W3 0I2 0W2 "
                  "0I3 0W3 0STEP0 3STEP0",
                  "1F0 2F0 1F1 2F1 2I0 2W0 1I0 1W0 (1F2;2I1)OVERLAP_F_B 2W1 2F2 1I1 1W1 (1F3;2I2)OVERLAP_F_B 2W2 "
                  "(2F3;1I2)OVERLAP_F_B 1W2 2I3 2W3 1I3 1W3 1STEP0 2STEP0"});
}

/// PyTorch 2.11's compute-only schedule `name` (tests/io/fixtures/, one row per rank, V placement,
/// 4 ranks, 8 micro-batches) as a fixed program, with one STEP per stage after its rank's program.
fixed_policy pytorch_v(const std::string& name) {
    std::ifstream in(std::filesystem::path(PACI_TEST_SOURCE_DIR) / "io" / "fixtures" / name);
    REQUIRE(in.good());
    fixed_policy p{.layout = {.stages = 8, .ranks = 4, .map = paci::stage_map::v}, .microbatches = 8};
    std::string line;
    while (std::getline(in, line))
        if (!line.empty()) p.update.push_back(program_of(line));
    REQUIRE(p.update.size() == 4U);
    for (int r = 0; r < 4; ++r)
        for (const int s : p.layout.stages_of(r)) p.update[static_cast<std::size_t>(r)].emplace_back(op::STEP, s, 0);
    return p;
}

/// The window of `n` micro-batches of `p` as a schedule (what the executor must record).
paci::schedule window(fixed_policy p, int n) {
    p.steps = n / p.microbatches;
    return p.generate();
}

/// The overlapped pairs of a schedule, as (forward, backward).
std::vector<std::pair<action, action>> pairs_of(const paci::schedule& s) {
    std::vector<std::pair<action, action>> out;
    for (const auto& prog : s.ranks)
        for (std::size_t p = 0; p + 1 < prog.size(); ++p)
            if (prog[p].overlap_next) out.emplace_back(prog[p], prog[p + 1]);
    return out;
}

// ---- stages -----------------------------------------------------------------------------------------

/// The MLP stage with `forward_backward`: it records each call (the forward's micro-batch, the
/// backward's stage and micro-batch) and runs the forward, then the other stage's backward.
class fused_mlp_stage : public paci_test::mlp_stage {
public:
    fused_mlp_stage(const paci_test::mlp_config& cfg, int layer) : mlp_stage(cfg, layer), id_(layer) {}

    std::pair<buffer_type, buffer_type> forward_backward(int mf, buffer_type x, fused_mlp_stage& other, int mb,
                                                         buffer_type g) {
        calls_.push_back({action(op::F, id_, mf), action(op::B, other.id_, mb)});
        buffer_type y = forward(mf, std::move(x));
        buffer_type dx = other.backward(mb, std::move(g));
        return {std::move(y), std::move(dx)};
    }
    /// Every forward_backward call on this stage, as (forward, backward).
    [[nodiscard]] const std::vector<std::pair<action, action>>& calls() const noexcept { return calls_; }

private:
    int id_;
    std::vector<std::pair<action, action>> calls_;
};
static_assert(paci::overlapping_stage<fused_mlp_stage>);
static_assert(!paci::overlapping_stage<paci_test::mlp_stage>);

std::vector<fused_mlp_stage> make_fused(const paci_test::mlp_config& cfg) {
    std::vector<fused_mlp_stage> out;
    out.reserve(static_cast<std::size_t>(cfg.layers()));
    for (int k = 0; k < cfg.layers(); ++k) out.emplace_back(cfg, k);
    return out;
}

/// What one rank did, in order: stage calls (`call 1F3`), receives as they complete (`recv 1F3`: the
/// input of 1F3 arrived) and sends (`send 0F3 to 1`). Written by the rank's own thread only.
using event_log = std::vector<std::string>;

/// A stage whose buffers say where they come from, `{producer stage, micro-batch, 0 forward / 1
/// backward}`: it throws unless each input is the one the IR's rule names, so every hand-off (local
/// or not) is checked to arrive on its edge, and logs its calls.
struct edge_stage {
    using buffer_type = std::vector<int>;
    int stage = 0;
    int last = 0;
    event_log* log = nullptr;
    int forwards = 0, backwards = 0, steps = 0;

    void expect(const buffer_type& got, int m, int from, int dir, const char* what) const {
        const buffer_type want = from < 0 ? buffer_type{} : buffer_type{from, m, dir};
        if (got != want)
            throw std::logic_error("edge_stage " + std::to_string(stage) + ": " + what + " of micro-batch " +
                                   std::to_string(m) + " got the wrong buffer");
    }
    buffer_type forward(int m, buffer_type in) {
        log->push_back("call " + paci::to_string(action(op::F, stage, m)));
        expect(in, m, stage == 0 ? -1 : stage - 1, 0, "forward");
        ++forwards;
        return {stage, m, 0};
    }
    buffer_type backward_input(int m, buffer_type g) {
        log->push_back("call " + paci::to_string(action(op::I, stage, m)));
        expect(g, m, stage == last ? -1 : stage + 1, 1, "backward");
        return {stage, m, 1};
    }
    void backward_weight(int m) {
        log->push_back("call " + paci::to_string(action(op::W, stage, m)));
        ++backwards;
    }
    buffer_type backward(int m, buffer_type g) {
        log->push_back("call " + paci::to_string(action(op::B, stage, m)));
        expect(g, m, stage == last ? -1 : stage + 1, 1, "backward");
        ++backwards;
        return {stage, m, 1};
    }
    void step() { ++steps; }
};
static_assert(paci::split_backward_stage<edge_stage>);

/// The in-process communicator, logging what it carries with the actions the executor names.
class logging_comm {
public:
    using inner_type = paci::inprocess_communicator<edge_stage::buffer_type>;
    using buffer_type = edge_stage::buffer_type;

    logging_comm(inner_type inner, event_log& log) : inner_(inner), log_(&log) {}

    struct recv_request {
        inner_type::recv_request inner;
        event_log* log;
        action needed_by;
        [[nodiscard]] bool test() { return inner.test(); }
        [[nodiscard]] buffer_type wait(std::chrono::nanoseconds t) {
            buffer_type b = inner.wait(t);
            log->push_back("recv " + paci::to_string(needed_by));
            return b;
        }
    };

    [[nodiscard]] int rank() const noexcept { return inner_.rank(); }
    [[nodiscard]] int size() const noexcept { return inner_.size(); }
    inner_type::send_request isend(int peer, int tag, buffer_type b) { return inner_.isend(peer, tag, std::move(b)); }
    recv_request irecv(int peer, int tag) { return {inner_.irecv(peer, tag), log_, action{}}; }
    inner_type::send_request isend(int peer, int tag, buffer_type b, const action& from) {
        log_->push_back("send " + paci::to_string(from) + " to " + std::to_string(peer));
        return inner_.isend(peer, tag, std::move(b));
    }
    recv_request irecv(int peer, int tag, const action& needed_by) { return {inner_.irecv(peer, tag), log_, needed_by}; }
    void abort(const char* why) { inner_.abort(why); }
    void agree(std::uint64_t fingerprint, std::chrono::nanoseconds timeout) { inner_.agree(fingerprint, timeout); }

private:
    inner_type inner_;
    event_log* log_;
};
static_assert(paci::communicator_for<logging_comm, edge_stage::buffer_type>);

/// Runs `n` micro-batches of `policy` with one thread per rank over `logging_comm`s; returns each
/// rank's log (stage calls and messages, in order) and checks every stage ran its work.
std::vector<event_log> run_logged(const fixed_policy& policy, int n) {
    const paci::pipeline_shape shape = policy.shape();
    paci::inprocess_world<edge_stage::buffer_type> world(shape.ranks);
    std::vector<event_log> logs(static_cast<std::size_t>(shape.ranks));
    std::vector<edge_stage> stages(static_cast<std::size_t>(shape.stages));
    for (int s = 0; s < shape.stages; ++s)
        stages[static_cast<std::size_t>(s)] =
            edge_stage{.stage = s, .last = shape.stages - 1, .log = &logs[static_cast<std::size_t>(shape.rank_of(s))]};
    std::vector<logging_comm> comms;
    for (int r = 0; r < shape.ranks; ++r) comms.emplace_back(world.communicator(r), logs[static_cast<std::size_t>(r)]);
    using exec_type = paci::executor<fixed_policy, edge_stage, logging_comm>;
    std::vector<std::unique_ptr<exec_type>> execs;
    for (int r = 0; r < shape.ranks; ++r) {
        std::vector<edge_stage*> mine;
        for (const int s : shape.stages_of(r)) mine.push_back(&stages[static_cast<std::size_t>(s)]);
        execs.push_back(std::make_unique<exec_type>(policy, mine, comms[static_cast<std::size_t>(r)],
                                                    paci::executor_options{.timeout = 10s}));
    }
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(shape.ranks));
    std::vector<std::thread> threads;
    for (std::size_t r = 0; r < execs.size(); ++r)
        threads.emplace_back([&, r] {
            try {
                execs[r]->run(n);
                execs[r]->drain();
            } catch (...) {
                errors[r] = std::current_exception();
                world.abort("a rank failed");
            }
        });
    for (auto& t : threads) t.join();
    for (const auto& e : errors)
        if (e) std::rethrow_exception(e);
    for (const auto& st : stages) {
        CAPTURE(st.stage);
        CHECK(st.forwards == n);
        CHECK(st.backwards == n);
        CHECK(st.steps == n / policy.microbatches);
    }
    return logs;
}

/// Position of `event` in `log`; fails the test if it is not there exactly once.
std::size_t at(const event_log& log, const std::string& event) {
    INFO(event);
    REQUIRE(std::count(log.begin(), log.end(), event) == 1);
    return static_cast<std::size_t>(std::find(log.begin(), log.end(), event) - log.begin());
}

} // namespace placement_test

using namespace placement_test;

TEST_CASE("V placement: hand-written schedules on 2 ranks equal the sequential reference; the trace is the program",
          "[unit][runtime]") {
    // 2 updates of 4 micro-batches: the second update's micro-batches are shifted by 4.
    const auto check = [](const fixed_policy& policy) {
        const int n = 8;
        const paci::run_trace trace = paci_test::check_matches_reference(policy, n);
        const paci::schedule ran = trace.to_schedule();
        const paci::schedule planned = window(policy, n);
        REQUIRE(ran.ranks == planned.ranks); // the pairs' flags included
        const paci::validation_report report = paci::validate(planned);
        INFO(report.first_error());
        CHECK(report.valid());
    };
    SECTION("split backward (I and W)") { check(v_split()); }
    SECTION("full backward") { check(v_full()); }
    SECTION("overlapped forward and full backward pairs, run member by member") { check(v_pairs()); }
    SECTION("overlapped forward and input-gradient pairs, W after them") { check(v_split_pairs()); }
}

TEST_CASE("V placement: PyTorch 2.11's ZBVZeroBubble and DualPipeV schedules (4 ranks, 8 stages) equal the "
          "sequential reference",
          "[unit][runtime]") {
    // PyTorch's own programs (stages r and 7-r on rank r; DualPipeV with its overlapped pairs), run
    // for 2 updates; stages 3 and 4 share rank 3.
    const std::string name = GENERATE(std::string("ZBVZeroBubble_p4_v2_m8.compute.csv"),
                                      std::string("DualPipeV_p4_v2_m8.compute.csv"));
    INFO(name);
    const fixed_policy policy = pytorch_v(name);
    const paci::run_trace trace = paci_test::check_matches_reference(policy, 16);
    CHECK(trace.to_schedule().ranks == window(policy, 16).ranks);
    if (name.rfind("DualPipeV", 0) == 0) CHECK(pairs_of(window(policy, 16)).size() == 2 * 25U);
}

TEST_CASE("V placement: local neighbours hand over without the communicator; a pair receives both inputs first and "
          "sends both outputs last",
          "[unit][runtime]") {
    const int n = 8;
    SECTION("full backward") {
        const auto logs = run_logged(v_full(), n);
        // Messages cross ranks only: per micro-batch F(0)->F(1) and B(3)->B(2) from rank 0 to rank 1,
        // F(2)->F(3) and B(1)->B(0) from rank 1 to rank 0; stages 1 and 2 hand over on rank 1.
        for (int r = 0; r < 2; ++r) {
            CAPTURE(r);
            const auto& log = logs[static_cast<std::size_t>(r)];
            const auto sends = std::count_if(log.begin(), log.end(), [](const std::string& e) { return e.rfind("send ", 0) == 0; });
            const auto to_other = std::count_if(log.begin(), log.end(), [&](const std::string& e) {
                return e.rfind("send ", 0) == 0 && e.substr(e.size() - 1) == std::to_string(1 - r);
            });
            const auto recvs = std::count_if(log.begin(), log.end(), [](const std::string& e) { return e.rfind("recv ", 0) == 0; });
            CHECK(sends == 2 * n);
            CHECK(to_other == 2 * n);
            CHECK(recvs == 2 * n);
        }
        for (int m = 0; m < n; ++m) {
            CAPTURE(m);
            const auto& r1 = logs[1];
            // 2F(m) and 1B(m) take their inputs on the rank: no receive, no send between stages 1 and 2.
            CHECK(std::count(r1.begin(), r1.end(), "recv 2F" + std::to_string(m)) == 0);
            CHECK(std::count(r1.begin(), r1.end(), "recv 1B" + std::to_string(m)) == 0);
            CHECK(std::count(r1.begin(), r1.end(), "send 1F" + std::to_string(m) + " to 1") == 0);
            CHECK(std::count(r1.begin(), r1.end(), "send 2B" + std::to_string(m) + " to 1") == 0);
            CHECK(at(r1, "call 1F" + std::to_string(m)) < at(r1, "call 2F" + std::to_string(m)));
            CHECK(at(r1, "call 2B" + std::to_string(m)) < at(r1, "call 1B" + std::to_string(m)));
            CHECK(at(r1, "recv 1F" + std::to_string(m)) < at(r1, "call 1F" + std::to_string(m)));
            CHECK(at(r1, "recv 2B" + std::to_string(m)) < at(r1, "call 2B" + std::to_string(m)));
        }
    }
    SECTION("overlapped pairs") {
        const auto logs = run_logged(v_pairs(), n);
        const auto& r0 = logs[0];
        const auto& r1 = logs[1];
        for (int g = 0; g < 2; ++g) {
            const auto mb = [g](int m) { return std::to_string(m + 4 * g); };
            CAPTURE(g);
            // (0F3;3B1) on rank 0: both outputs leave after the backward ran.
            CHECK(at(r0, "call 0F" + mb(3)) < at(r0, "call 3B" + mb(1)));
            CHECK(at(r0, "call 3B" + mb(1)) < at(r0, "send 0F" + mb(3) + " to 1"));
            CHECK(at(r0, "send 0F" + mb(3) + " to 1") < at(r0, "send 3B" + mb(1) + " to 1"));
            // (1F3;2B2) on rank 1: both inputs arrive before the forward starts.
            CHECK(at(r1, "recv 1F" + mb(3)) < at(r1, "call 1F" + mb(3)));
            CHECK(at(r1, "recv 2B" + mb(2)) < at(r1, "call 1F" + mb(3)));
            CHECK(at(r1, "call 1F" + mb(3)) < at(r1, "call 2B" + mb(2)));
            // (2F3;1B2) on rank 1: inputs handed over locally, both outputs sent after the backward.
            CHECK(at(r1, "call 1B" + mb(2)) < at(r1, "send 2F" + mb(3) + " to 0"));
            CHECK(at(r1, "send 2F" + mb(3) + " to 0") < at(r1, "send 1B" + mb(2) + " to 0"));
            // (1F2;2B1): both outputs stay on rank 1.
            CHECK(std::count(r1.begin(), r1.end(), "send 1F" + mb(2) + " to 1") == 0);
            CHECK(std::count(r1.begin(), r1.end(), "send 2B" + mb(1) + " to 1") == 0);
        }
    }
}

TEST_CASE("overlapped pairs: a Stage with forward_backward gets every F + B pair in one call", "[unit][runtime]") {
    SECTION("hand-written V schedule") {
        const fixed_policy policy = v_pairs();
        const paci_test::mlp_config cfg = paci_test::mlp_config_for(4, policy.microbatches);
        auto stages = make_fused(cfg);
        const paci::run_trace trace = paci_test::check_against_reference(policy, 8, cfg, stages);
        // The calls are the program's pairs, on the forward's stage, in program order.
        const auto want = pairs_of(window(policy, 8));
        REQUIRE(want.size() == 8U);
        std::size_t calls = 0;
        for (int s = 0; s < 4; ++s) {
            std::vector<std::pair<action, action>> mine;
            for (const auto& [f, b] : want)
                if (f.stage == s) mine.emplace_back(action(op::F, f.stage, f.microbatch), b);
            CAPTURE(s);
            CHECK(stages[static_cast<std::size_t>(s)].calls() == mine);
            calls += stages[static_cast<std::size_t>(s)].calls().size();
        }
        CHECK(calls == want.size());
        // Both members are recorded, forward (with its flag) first, over the one call's span.
        for (const auto& rank : trace.ranks)
            for (std::size_t p = 0; p + 1 < rank.size(); ++p)
                if (rank[p].act.overlap_next) {
                    CHECK(rank[p + 1].act.kind == op::B);
                    CHECK(rank[p + 1].start == rank[p].start);
                }
    }
    SECTION("PyTorch 2.11's DualPipeV: 25 pairs per update") {
        const fixed_policy policy = pytorch_v("DualPipeV_p4_v2_m8.compute.csv");
        const paci_test::mlp_config cfg = paci_test::mlp_config_for(8, policy.microbatches);
        auto stages = make_fused(cfg);
        static_cast<void>(paci_test::check_against_reference(policy, 16, cfg, stages));
        std::size_t calls = 0;
        for (const auto& st : stages) calls += st.calls().size();
        CHECK(calls == 2 * 25U);
    }
    SECTION("forward + input-gradient pairs run member by member") {
        const fixed_policy policy = v_split_pairs();
        const paci_test::mlp_config cfg = paci_test::mlp_config_for(4, policy.microbatches);
        auto stages = make_fused(cfg);
        static_cast<void>(paci_test::check_against_reference(policy, 8, cfg, stages));
        for (const auto& st : stages) CHECK(st.calls().empty());
    }
}

namespace placement_test {

/// A one-rank, two-stage program (loop map) of 2 micro-batches per update.
fixed_policy one_rank(std::string_view program) {
    return fixed({.stages = 2, .ranks = 1, .map = paci::stage_map::loop}, 2, {program});
}

/// Runs `policy` for one update and returns the pipeline_error it must end with.
paci::pipeline_error refused(const fixed_policy& policy, std::vector<edge_stage>& stages, event_log& log) {
    for (int s = 0; s < 2; ++s) stages[static_cast<std::size_t>(s)] = edge_stage{.stage = s, .last = 1, .log = &log};
    paci::inprocess_pipeline<fixed_policy, edge_stage> pipe(policy, {&stages[0], &stages[1]}, {.timeout = 5s});
    try {
        pipe.run(2);
        pipe.drain();
    } catch (const paci::pipeline_error& e) {
        CHECK_THROWS_AS(pipe.run(2), paci::aborted_error); // the pipeline is spent
        return e;
    }
    FAIL("the program ran");
    throw std::logic_error("unreachable");
}

} // namespace placement_test

TEST_CASE("overlapped pairs: a malformed pair is refused at run time with a pipeline_error naming the member at fault",
          "[unit][runtime]") {
    struct bad_case {
        const char* program;
        action blamed;
        const char* reason;
    };
    const bad_case c = GENERATE(
        bad_case{"0F0 1F0 (1B0;0B0)OVERLAP_F_B 0F1 1F1 1B1 0B1 0STEP0 1STEP0", action(op::B, 1, 0),
                 "opens an overlapped pair, which only a forward"},
        bad_case{"(0F0;1F0)OVERLAP_F_B 1B0 0B0 0F1 1F1 1B1 0B1 0STEP0 1STEP0", action(op::F, 1, 0), "must be a backward"},
        bad_case{"0F0 1F0 1I0 (0F1;1W0)OVERLAP_F_B 0I0 0W0 1F1 1I1 1W1 0I1 0W1 0STEP0 1STEP0", action(op::W, 1, 0),
                 "must be a backward"},
        bad_case{"0F0 1F0 1B0 0B0 (0F1;1B1)OVERLAP_F_B 1F1 0B1 0STEP0 1STEP0", action(op::B, 1, 1),
                 "the forward it is paired with"},
        bad_case{"0F0 1F0 1B0 0B0 0STEP0 1STEP0 (0F1;1F1)OVERLAP_F_B", action(op::F, 0, 1),
                 "last action"});
    CAPTURE(c.program);
    // The last case ends the update's program with the pair's forward: the next action the program
    // gives is the next update's first forward, past the cut, so the pair has no second member.
    fixed_policy policy = one_rank(c.program);
    if (c.blamed == action(op::F, 0, 1)) policy.update[0].pop_back(); // drop 1F1: 0F1 (flagged) ends the program
    std::vector<edge_stage> stages(2);
    event_log log;
    const paci::pipeline_error e = refused(policy, stages, log);
    CHECK(e.rank() == 0);
    CHECK(e.failed_action().kind == c.blamed.kind);
    CHECK(e.stage() == c.blamed.stage);
    CHECK(e.microbatch() == c.blamed.microbatch);
    CHECK_THAT(e.what(), Catch::Matchers::ContainsSubstring("is refused") && Catch::Matchers::ContainsSubstring(c.reason));
    CHECK_THROWS_AS(e.rethrow_original(), paci::config_error);
    // Neither member ran: the executor refuses the pair when it reads it, before running it.
    for (const auto& a : policy.update[0])
        if (a.overlap_next) {
            CHECK(std::count(log.begin(), log.end(), "call " + paci::to_string(a)) == 0);
        }
}

TEST_CASE("executor: a consumer run before its local producer is refused, not undefined", "[unit][runtime]") {
    // 1F0 needs stage 0's activation of micro-batch 0, which only 0F0, later on the same rank, makes.
    std::vector<edge_stage> stages(2);
    event_log log;
    const paci::pipeline_error e = refused(one_rank("1F0 0F0 1B0 0B0 0F1 1F1 1B1 0B1 0STEP0 1STEP0"), stages, log);
    CHECK(e.failed_action() == action(op::F, 1, 0));
    CHECK_THAT(e.what(), Catch::Matchers::ContainsSubstring("needs stage 0's activation of micro-batch 0, which this rank has "
                                                            "not produced"));
    CHECK(log.empty());
}
