// Unit tests for include/paci/io/chrome_trace.hpp: the output is well-formed JSON in the Trace Event
// Format, with one complete event per action at the given times, one flow pair per SEND, the weight
// versions a replay reports, and properly escaped names. A small strict JSON reader checks it.

#include <paci/io/chrome_trace.hpp>

#include <paci/analysis/replay.hpp>
#include <paci/core/lower.hpp>
#include <paci/policy/dualpipe_v.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/sim/simulate.hpp>

#include "io/json_reader.hpp"
#include "io/pairs.hpp"
#include "support/catch.hpp"
#include "support/lowerings.hpp"
#include "support/program_text.hpp"

#include <algorithm>
#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace {

using paci_test::json;
using paci_test::json_reader;

std::vector<const json*> events_with(const json& trace, std::string_view ph) {
    std::vector<const json*> out;
    for (const json& e : trace["traceEvents"].items)
        if (e["ph"].str == ph) out.push_back(&e);
    return out;
}

/// Times where rank r's p-th action runs in [10 r + p, 10 r + p + 0.5).
paci::action_times staggered(const paci::schedule& s) {
    paci::action_times t(s.ranks.size());
    for (std::size_t r = 0; r < s.ranks.size(); ++r)
        for (std::size_t p = 0; p < s.ranks[r].size(); ++p) {
            const double start = 10.0 * static_cast<double>(r) + static_cast<double>(p);
            t[r].emplace_back(start, start + 0.5);
        }
    return t;
}

} // namespace

TEST_CASE("chrome trace: one complete event per action, on its rank's track, at its times", "[unit][io][chrome_trace]") {
    const paci::schedule s = paci::lower(paci::one_f_one_b<>{.stages = 3, .microbatches = 3, .steps = 2}.generate());
    const paci::action_times times = staggered(s);
    const json trace = json_reader::parse(paci::to_chrome_trace(s, times, nullptr, {.time_scale = 1000}));

    CHECK(trace["displayTimeUnit"].str == "ms");
    CHECK(trace["otherData"]["policy"].str == s.policy);
    const auto slices = events_with(trace, "X");
    REQUIRE(slices.size() == s.size());
    std::size_t k = 0;
    for (std::size_t r = 0; r < s.ranks.size(); ++r)
        for (std::size_t p = 0; p < s.ranks[r].size(); ++p, ++k) {
            const json& e = *slices[k];
            const paci::action a = s.ranks[r][p];
            CHECK(e["name"].str == paci::to_string(a));
            CHECK(e["pid"].number == 0);
            CHECK(e["tid"].number == static_cast<double>(r));
            CHECK(e["ts"].number == times[r][p].first * 1000);
            CHECK(e["dur"].number == 500);
            CHECK(e["cat"].str == (paci::is_comm(a.kind) ? "comm" : a.kind == paci::op::STEP ? "optimizer" : "compute"));
            CHECK(e["args"]["op"].str == paci::to_string(a.kind));
            CHECK(e["args"]["stage"].number == a.stage);
            CHECK(e["args"][a.kind == paci::op::STEP ? "update" : "microbatch"].number == a.microbatch);
            if (paci::is_comm(a.kind)) CHECK(e["args"].has("peer_rank"));
        }

    // Metadata names the process and every rank's track.
    const auto meta = events_with(trace, "M");
    std::set<std::string> names;
    for (const json* m : meta)
        if ((*m)["name"].str == "thread_name") names.insert((*m)["args"]["name"].str);
    CHECK(names == std::set<std::string>{"rank 0", "rank 1", "rank 2"});
}

TEST_CASE("chrome trace: a flow arrow from every SEND to its RECV", "[unit][io][chrome_trace]") {
    const paci::schedule s = paci::lower(paci::paci_policy<>{.stages = 4, .microbatches = 2, .steps = 3}.generate());
    const json trace = json_reader::parse(paci::to_chrome_trace(s));
    std::size_t sends = 0;
    for (const auto& prog : s.ranks)
        for (const paci::action& a : prog) sends += a.kind == paci::op::SEND_F || a.kind == paci::op::SEND_B ? 1U : 0U;
    REQUIRE(sends > 0);

    const auto starts = events_with(trace, "s");
    const auto finishes = events_with(trace, "f");
    CHECK(starts.size() == sends);
    CHECK(finishes.size() == sends);
    std::map<double, std::pair<const json*, const json*>> by_id;
    for (const json* e : starts) by_id[(*e)["id"].number].first = e;
    for (const json* e : finishes) by_id[(*e)["id"].number].second = e;
    CHECK(by_id.size() == sends);
    for (const auto& [id, pair] : by_id) {
        REQUIRE(pair.first != nullptr);
        REQUIRE(pair.second != nullptr);
        const json& from = *pair.first;
        const json& to = *pair.second;
        CHECK(to["bp"].str == "e");
        CHECK(from["name"].str == to["name"].str);
        // The SEND's name gives its stage; its rank is the sender's track, the peer stage's the receiver's.
        const paci::action send = paci::parse_action(from["name"].str);
        const int peer = send.kind == paci::op::SEND_F ? send.stage + 1 : send.stage - 1;
        CHECK(from["tid"].number == s.shape.rank_of(send.stage));
        CHECK(to["tid"].number == s.shape.rank_of(peer));
    }
}

TEST_CASE("chrome trace: args carry the weight version each action read", "[unit][io][chrome_trace]") {
    const paci::paci_policy<paci::backward_flavour::recompute> policy{.stages = 3, .microbatches = 2, .steps = 3};
    const paci::schedule s = policy.generate();
    const paci::replay_result versions = paci::replay(s, policy.controller());
    const json trace = json_reader::parse(paci::to_chrome_trace(s, paci::action_times{}, &versions));
    const auto slices = events_with(trace, "X");
    REQUIRE(slices.size() == s.size());
    std::size_t k = 0;
    std::size_t with_drift = 0;
    for (const auto& prog : s.ranks)
        for (const paci::action& a : prog) {
            const json& args = (*slices[k++])["args"];
            const paci::version_record& rec = a.kind == paci::op::STEP ? versions.records[0] : versions.at(a.stage, a.microbatch);
            switch (a.kind) {
            case paci::op::F: CHECK(args["version"].number == rec.forward); break;
            case paci::op::R: CHECK(args["version"].number == rec.recompute); break;
            case paci::op::B:
                CHECK(args["version"].number == rec.backward);
                CHECK(args["drift"].number == rec.drift());
                with_drift += rec.drift() > 0 ? 1U : 0U;
                break;
            default: CHECK_FALSE(args.has("version"));
            }
        }
    CHECK(with_drift > 0); // PACI with a = 2 on 3 stages: stage 0's backwards cross an update
}

TEST_CASE("chrome trace: default times are unit time per compute in program order", "[unit][io][chrome_trace]") {
    const paci::schedule s = paci_test::make_schedule({2, 2, paci::stage_map::loop}, 1, 1,
                                                      {"0F0 0SEND_F0 0RECV_B0 0B0 0STEP0", "1RECV_F0 1F0 1B0 1SEND_B0 1STEP0"});
    const json trace = json_reader::parse(paci::to_chrome_trace(s));
    const auto slices = events_with(trace, "X");
    REQUIRE(slices.size() == 10);
    const double ts[10] = {0, 1, 1, 1, 2, 0, 0, 1, 2, 2};
    const double dur[10] = {1, 0, 0, 1, 0, 0, 1, 1, 0, 0};
    for (std::size_t k = 0; k < 10; ++k) {
        CAPTURE(k);
        CHECK((*slices[k])["ts"].number == ts[k]);
        CHECK((*slices[k])["dur"].number == dur[k]);
    }
    // Flows start at the middle of their SEND and come in RECV order: rank 0's 0RECV_B0 pairs with
    // 1SEND_B0 (at 2 on rank 1), then rank 1's 1RECV_F0 with 0SEND_F0 (at 1 on rank 0).
    const auto starts = events_with(trace, "s");
    REQUIRE(starts.size() == 2);
    CHECK((*starts[0])["name"].str == "1SEND_B0");
    CHECK((*starts[0])["ts"].number == 2);
    CHECK((*starts[1])["name"].str == "0SEND_F0");
    CHECK((*starts[1])["ts"].number == 1);
}

TEST_CASE("chrome trace: names are escaped", "[unit][io][chrome_trace]") {
    paci::schedule s = paci::one_f_one_b<>{.stages = 2, .microbatches = 2, .steps = 1}.generate();
    s.policy = std::string("a \"quoted\" \\ name\nwith\ttabs and \x01 control", 40);
    const json trace = json_reader::parse(paci::to_chrome_trace(s));
    CHECK(trace["otherData"]["policy"].str == s.policy);
    CHECK(events_with(trace, "M").front()->operator[]("args")["name"].str == s.policy);
    const json named = json_reader::parse(paci::to_chrome_trace(s, paci::action_times{}, nullptr, {.name = "</script>"}));
    CHECK(events_with(named, "M").front()->operator[]("args")["name"].str == "</script>");
    // Well-formed UTF-8 passes through; a stray byte (a Latin-1 file name, a cut sequence) becomes U+FFFD.
    s.policy = "t\xC2\xB5s \xFF latin1 \xE2\x82 cut";
    const json utf8 = json_reader::parse(paci::to_chrome_trace(s));
    CHECK(utf8["otherData"]["policy"].str == "t\xC2\xB5s \xEF\xBF\xBD latin1 \xEF\xBF\xBD\xEF\xBF\xBD cut");
}

TEST_CASE("chrome trace: simulator-style times are accepted", "[unit][io][chrome_trace]") {
    struct interval {
        double start;
        double end;
    };
    const paci::schedule s = paci::one_f_one_b<>{.stages = 2, .microbatches = 2, .steps = 1}.generate();
    std::vector<std::vector<interval>> times(2);
    paci::action_times pairs(2);
    for (std::size_t r = 0; r < 2; ++r)
        for (std::size_t p = 0; p < s.ranks[r].size(); ++p) {
            times[r].push_back({static_cast<double>(p) * 2, static_cast<double>(p) * 2 + 1.5});
            pairs[r].emplace_back(static_cast<double>(p) * 2, static_cast<double>(p) * 2 + 1.5);
        }
    CHECK(paci::to_chrome_trace(s, times) == paci::to_chrome_trace(s, pairs));
}

TEST_CASE("chrome trace: bad times are configuration errors", "[unit][io][chrome_trace]") {
    const paci::schedule s = paci::one_f_one_b<>{.stages = 2, .microbatches = 1, .steps = 1}.generate();
    paci::action_times t(1);
    CHECK_THROWS_MATCHES(paci::to_chrome_trace(s, t), paci::config_error,
                         Catch::Matchers::Message("paci::to_chrome_trace: times ranks (1) must equal the schedule's ranks (2)"));
    t = paci::action_times(2);
    CHECK_THROWS_MATCHES(paci::to_chrome_trace(s, t), paci::config_error,
                         Catch::Matchers::Message("paci::to_chrome_trace: times[0] size (0) must equal rank 0's actions (3)"));
    for (std::size_t r = 0; r < 2; ++r) t[r].assign(s.ranks[r].size(), {0, 1});
    t[1][2] = {2, 1};
    CHECK_THROWS_MATCHES(paci::to_chrome_trace(s, t), paci::config_error,
                         Catch::Matchers::Message("paci::to_chrome_trace: times[1][2] (2, 1) must be finite with start <= end"));
    t[1][2] = {0, 1};
    CHECK_THROWS_AS(paci::to_chrome_trace(s, t, nullptr, {.time_scale = 0}), paci::config_error);
}

// Overlapped pairs (issue 9).

TEST_CASE("chrome trace: the backward of an overlapped pair runs on its rank's overlap track",
          "[unit][io][chrome_trace][pair]") {
    const paci::dualpipe_v policy{.ranks = 2, .microbatches = 4, .steps = 1};
    const paci::schedule s = paci::lower(policy.generate());
    const paci::replay_result versions = paci::replay(s, policy.controller());
    const std::size_t R = s.ranks.size();
    for (const double penalty : {1.0, 0.0}) {
        CAPTURE(penalty);
        paci::cost_model costs{};
        costs.overlap_penalty = penalty;
        const paci::simulation sim = paci::simulate(s, costs);
        REQUIRE(sim.completed);
        const json trace = json_reader::parse(paci::to_chrome_trace(s, sim.times, &versions));
        const auto slices = events_with(trace, "X");
        REQUIRE(slices.size() == s.size()); // every member is there
        std::size_t k = 0;
        std::size_t pairs = 0;
        for (std::size_t r = 0; r < R; ++r) {
            const auto& prog = s.ranks[r];
            for (std::size_t p = 0; p < prog.size(); ++p, ++k) {
                const json& e = *slices[k];
                const paci::action a = prog[p];
                const bool opens = a.overlap_next;
                const bool closes = p > 0 && prog[p - 1].overlap_next;
                CAPTURE(r, p, paci::to_string(a));
                CHECK(e["name"].str == paci::to_string(a));
                CHECK(e["tid"].number == static_cast<double>(closes ? R + r : r));
                CHECK(e["ts"].number == sim.times[r][p].start);
                if (!opens && !closes) {
                    CHECK_FALSE(e["args"].has("overlapped_pair"));
                    continue;
                }
                const paci::action f = opens ? a : prog[p - 1];
                const paci::action b = opens ? prog[p + 1] : a;
                CHECK(e["args"]["overlapped_pair"].str == paci::to_string(f, b));
                // Both members span the pair: max(F, B) + penalty * min(F, B) with F = 1, B = 2.
                CHECK(e["dur"].number == 2 + penalty);
                // Their args are those of any compute: the version each read, and the backward's drift.
                const paci::version_record& rec = versions.at(a.stage, a.microbatch);
                CHECK(e["args"]["op"].str == paci::to_string(a.kind));
                CHECK(e["args"]["version"].number == (opens ? rec.forward : rec.backward));
                if (closes) CHECK(e["args"]["drift"].number == 0);
                pairs += opens ? 1U : 0U;
            }
        }
        CHECK(pairs == 6); // dualpipe_v, R = 2, M = 4: 3 pairs per rank (phases 4 and 5)

        // Each rank's overlap track is named after it and listed right after it.
        std::map<double, std::string> names;
        std::map<double, double> order;
        for (const json* m : events_with(trace, "M")) {
            if ((*m)["name"].str == "thread_name") names[(*m)["tid"].number] = (*m)["args"]["name"].str;
            if ((*m)["name"].str == "thread_sort_index") order[(*m)["tid"].number] = (*m)["args"]["sort_index"].number;
        }
        CHECK(names == std::map<double, std::string>{{0, "rank 0"}, {1, "rank 1"}, {2, "rank 0 (overlapped)"},
                                                     {3, "rank 1 (overlapped)"}});
        CHECK(order == std::map<double, double>{{0, 0}, {1, 2}, {2, 1}, {3, 3}});

        // On every track the computes are disjoint: nothing for a viewer to nest.
        std::map<double, std::vector<std::pair<double, double>>> by_tid;
        for (const json* e : slices)
            if ((*e)["cat"].str == "compute" && (*e)["dur"].number > 0)
                by_tid[(*e)["tid"].number].emplace_back((*e)["ts"].number, (*e)["ts"].number + (*e)["dur"].number);
        CHECK(by_tid.size() == 4);
        for (auto& [tid, spans] : by_tid) {
            CAPTURE(tid);
            std::sort(spans.begin(), spans.end());
            for (std::size_t i = 1; i < spans.size(); ++i) CHECK(spans[i - 1].second <= spans[i].first);
        }
    }
}

TEST_CASE("chrome trace: pair members that run in turn stay on their rank's track", "[unit][io][chrome_trace][pair]") {
    const paci::schedule s = paci_test::dualpipe_lowered();
    const paci::schedule plain = paci_test::without_pairs(s);
    // Program-order times run the forward, then the backward: the trace of the same programs unpaired.
    const std::string trace = paci::to_chrome_trace(s);
    CHECK(trace == paci::to_chrome_trace(plain));
    CHECK(trace.find("overlapped") == std::string::npos);
    // So does a hand-given table that moves each pair's backward after its forward.
    const paci::action_times times = paci_test::pairs_in_turn(s);
    CHECK(paci::to_chrome_trace(s, times) == paci::to_chrome_trace(plain, times));
}

// Hostile input (issue 8).

TEST_CASE("chrome trace: times simulated for another lowering of the same schedule are refused",
          "[unit][io][chrome_trace][errors]") {
    const auto [compute, eager, safe] = paci_test::lowerings_of_one_schedule();
    const paci::simulation sim = paci::simulate(eager, paci::cost_model{});
    CHECK_NOTHROW(paci::to_chrome_trace(eager, sim.times));
    REQUIRE_THROWS_WITH(paci::to_chrome_trace(safe, sim.times),
                        Catch::Matchers::StartsWith("paci::to_chrome_trace: times (computed for schedule ") &&
                            Catch::Matchers::EndsWith("): simulate this schedule, not another lowering or version of it"));
}

TEST_CASE("chrome trace: versions of another shape, a bad header and infinite scaled times are refused",
          "[unit][io][chrome_trace][errors]") {
    const paci::paci_policy<> policy{.stages = 2, .microbatches = 1, .steps = 2};
    const paci::schedule s = policy.generate();
    const paci::paci_policy<> other{.stages = 3, .microbatches = 1, .steps = 2};
    const paci::replay_result wrong = paci::replay(other.generate(), other.controller());
    REQUIRE_THROWS_WITH(paci::to_chrome_trace(s, paci::action_times{}, &wrong),
                        "paci::to_chrome_trace: versions (3 stages x 2 micro-batches) must replay the schedule drawn (2 "
                        "stages x 2 micro-batches)");
    paci::schedule header = s;
    header.shape.ranks = 0;
    REQUIRE_THROWS_WITH(paci::to_chrome_trace(header), "paci::to_chrome_trace: ranks (0) must be >= 1");
    // Finite times that the scale makes infinite would print `inf`, which is not JSON.
    REQUIRE_THROWS_WITH(paci::to_chrome_trace(s, paci::action_times{}, nullptr, {.time_scale = 1e308}),
                        Catch::Matchers::StartsWith("paci::to_chrome_trace: times[0][") &&
                            Catch::Matchers::EndsWith("must be finite (JSON has no infinity)"));
}

TEST_CASE("chrome trace: an action whose op is none of the ten is a config error", "[unit][io][chrome_trace][errors]") {
    paci::schedule s = paci::one_f_one_b<>{.stages = 2, .microbatches = 1, .steps = 1}.generate();
    s.ranks[0][1].kind = static_cast<paci::op>(42); // its name was read past the table of op names
    REQUIRE_THROWS_WITH(paci::to_chrome_trace(s),
                        "paci::to_chrome_trace: op of the action at rank 0, position 1 (42) must be one of the 10 ops");
}
