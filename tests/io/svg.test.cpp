// Unit tests for include/paci/io/svg.hpp: the timeline is well-formed XML starting with <svg>, with
// one block per compute action placed by its times, one mark per STEP, one thin bar per SEND/RECV,
// and one drift badge per backward whose replayed drift is positive. A small XML reader checks it.

#include <paci/io/svg.hpp>

#include <paci/analysis/replay.hpp>
#include <paci/core/lower.hpp>
#include <paci/policy/dualpipe_v.hpp>
#include <paci/policy/one_f_one_b.hpp>
#include <paci/policy/paci.hpp>
#include <paci/sim/simulate.hpp>
#include <paci/policy/zero_bubble.hpp>

#include "io/pairs.hpp"
#include "support/catch.hpp"
#include "support/lowerings.hpp"
#include "support/program_text.hpp"

#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct element {
    std::string name;
    std::map<std::string, std::string> attrs;
    std::string text; // direct text content, entities decoded
};

/// Reads an XML document strictly enough for these tests: every tag closes in order, attribute
/// values are quoted, only the five predefined entities appear. Returns the elements in document order.
std::vector<element> read_xml(std::string_view doc) {
    std::vector<element> out;
    std::vector<std::size_t> open; // indices into out
    std::size_t i = 0;
    const auto fail = [&](const std::string& what) { throw std::runtime_error("xml: " + what + " at " + std::to_string(i)); };
    const auto decode = [&](std::string_view raw) {
        std::string s;
        for (std::size_t k = 0; k < raw.size(); ++k) {
            if (raw[k] == '<') fail("raw '<' in text");
            if (raw[k] != '&') {
                s += raw[k];
                continue;
            }
            const auto semi = raw.find(';', k);
            if (semi == std::string_view::npos) fail("unterminated entity");
            const std::string_view ent = raw.substr(k + 1, semi - k - 1);
            if (ent == "amp") s += '&';
            else if (ent == "lt") s += '<';
            else if (ent == "gt") s += '>';
            else if (ent == "quot") s += '"';
            else if (ent == "apos") s += '\'';
            else fail("unknown entity");
            k = semi;
        }
        return s;
    };
    while (i < doc.size()) {
        if (doc[i] != '<') {
            const auto next = doc.find('<', i);
            const std::string_view raw = doc.substr(i, next - i);
            if (!open.empty()) out[open.back()].text += decode(raw);
            else if (raw.find_first_not_of(" \n") != std::string_view::npos) fail("text outside the root");
            i = next == std::string_view::npos ? doc.size() : next;
            continue;
        }
        if (doc.compare(i, 2, "</") == 0) {
            const auto end = doc.find('>', i);
            const std::string name(doc.substr(i + 2, end - i - 2));
            if (open.empty() || out[open.back()].name != name) fail("mismatched </" + name + ">");
            open.pop_back();
            i = end + 1;
            continue;
        }
        ++i;
        element e;
        while (i < doc.size() && doc[i] != ' ' && doc[i] != '>' && doc[i] != '/') e.name += doc[i++];
        if (e.name.empty()) fail("empty tag name");
        bool self_closing = false;
        while (true) {
            while (i < doc.size() && doc[i] == ' ') ++i;
            if (i >= doc.size()) fail("unterminated tag");
            if (doc[i] == '>') {
                ++i;
                break;
            }
            if (doc.compare(i, 2, "/>") == 0) {
                i += 2;
                self_closing = true;
                break;
            }
            std::string key;
            while (i < doc.size() && doc[i] != '=' && doc[i] != ' ') key += doc[i++];
            if (doc.compare(i, 2, "=\"") != 0) fail("unquoted attribute " + key);
            i += 2;
            const auto close = doc.find('"', i);
            if (close == std::string_view::npos) fail("unterminated attribute");
            if (e.attrs.count(key)) fail("duplicate attribute " + key);
            e.attrs[key] = decode(doc.substr(i, close - i));
            i = close + 1;
        }
        if (open.empty() && !out.empty()) fail("second root element");
        out.push_back(std::move(e));
        if (!self_closing) open.push_back(out.size() - 1);
    }
    if (!open.empty()) throw std::runtime_error("xml: unclosed <" + out[open.back()].name + ">");
    return out;
}

std::size_t count_class(const std::vector<element>& doc, std::string_view prefix) {
    std::size_t n = 0;
    for (const element& e : doc) {
        const auto it = e.attrs.find("class");
        if (it != e.attrs.end() && std::string_view(it->second).starts_with(prefix)) ++n;
    }
    return n;
}

} // namespace

TEST_CASE("svg: a well-formed document with a block per compute action and a mark per STEP", "[unit][io][svg]") {
    const paci::schedule s = paci::one_f_one_b<>{.stages = 4, .microbatches = 4, .steps = 4}.generate();
    const std::string svg = paci::to_svg(s);
    CHECK(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    CHECK(svg.ends_with("</svg>\n"));
    const std::vector<element> doc = read_xml(svg);
    REQUIRE(doc.front().name == "svg");
    CHECK(count_class(doc, "blk ") == s.compute_size());
    CHECK(count_class(doc, "blk op-F") == s.compute_size() / 2);
    CHECK(count_class(doc, "step") == paci_test::count(s, paci::op::STEP));
    CHECK(count_class(doc, "step") == 16);
    CHECK(count_class(doc, "lane") == 4);
    CHECK(count_class(doc, "drift") == 0);
    CHECK(count_class(doc, "comm") == 0);
    // The title is the policy; each block's tooltip is its action.
    CHECK(doc[1].name == "title");
    CHECK(doc[1].text == s.policy);
    std::size_t tooltips = 0;
    for (std::size_t k = 0; k + 1 < doc.size(); ++k)
        if (doc[k].attrs.count("class") && doc[k].attrs.at("class").starts_with("blk ")) {
            REQUIRE(doc[k + 1].name == "title");
            CHECK_NOTHROW(paci::parse_action(doc[k + 1].text)); // a valid action text
            ++tooltips;
        }
    CHECK(tooltips == s.compute_size());
}

TEST_CASE("svg: drift badges mark exactly the backwards that crossed an update", "[unit][io][svg]") {
    const paci::paci_policy<> policy{.stages = 4, .microbatches = 4, .steps = 4};
    const paci::schedule s = policy.generate();
    const paci::replay_result versions = paci::replay(s, policy.controller());
    std::size_t drifted = 0;
    for (const auto& prog : s.ranks)
        for (const paci::action& a : prog)
            drifted += a.kind == paci::op::B && versions.at(a.stage, a.microbatch).drift() > 0 ? 1U : 0U;
    REQUIRE(drifted > 0);

    const std::vector<element> doc = read_xml(paci::to_svg(s, paci::action_times{}, &versions));
    CHECK(count_class(doc, "drift") == drifted);
    // Each badge reads +k with the drift of its backward, here 1 (PACI's bound with a = 4, P = 4).
    for (const element& e : doc)
        if (e.name == "text" && e.text.starts_with("+") && e.text != "+k") CHECK(e.text == "+1"); // +k: the legend
    // Without a replay there is nothing to badge; with a flush there is no drift.
    CHECK(count_class(read_xml(paci::to_svg(s)), "drift") == 0);
    const paci::one_f_one_b<> flush{.stages = 4, .microbatches = 4, .steps = 4};
    const paci::replay_result none = paci::replay(flush.generate(), flush.controller());
    CHECK(count_class(read_xml(paci::to_svg(flush.generate(), paci::action_times{}, &none)), "drift") == 0);
}

TEST_CASE("svg: blocks are placed and sized by their times", "[unit][io][svg]") {
    using paci::op;
    paci::schedule s;
    s.shape = {2, 2, paci::stage_map::loop};
    s.microbatches = 1;
    s.policy = "hand-made";
    s.ranks = {{{op::F, 0, 0}, {op::B, 0, 0}}, {{op::F, 1, 0}, {op::B, 1, 0}}};
    const paci::action_times times{{{0, 1}, {5, 7}}, {{1, 2}, {2, 4}}};
    // Width 1100 with 78 px on the left and 24 on the right: 998 px for a makespan of 7.
    const std::vector<element> doc = read_xml(paci::to_svg(s, times));
    std::vector<const element*> blocks;
    for (const element& e : doc)
        if (e.attrs.count("class") && e.attrs.at("class").starts_with("blk ")) blocks.push_back(&e);
    REQUIRE(blocks.size() == 4);
    const double sx = 998.0 / 7.0;
    const double starts[4] = {0, 5, 1, 2};
    const double ends[4] = {1, 7, 2, 4};
    for (std::size_t k = 0; k < 4; ++k) {
        CAPTURE(k);
        // Coordinates are written with two decimals.
        CHECK(std::abs(std::strtod(blocks[k]->attrs.at("x").c_str(), nullptr) - (78 + starts[k] * sx)) <= 0.005);
        CHECK(std::abs(std::strtod(blocks[k]->attrs.at("width").c_str(), nullptr) - (ends[k] - starts[k]) * sx) <= 0.005);
    }
    CHECK(blocks[0]->attrs.at("class") == "blk op-F");
    CHECK(blocks[1]->attrs.at("class") == "blk op-B");
}

TEST_CASE("svg: communication as thin bars, split backwards in their own colours", "[unit][io][svg]") {
    const paci::schedule zb = paci::lower(paci::zb_h1{.stages = 3, .microbatches = 3, .steps = 1}.generate());
    const std::vector<element> doc = read_xml(paci::to_svg(zb));
    CHECK(count_class(doc, "comm") == paci_test::count_if(zb, paci::is_comm));
    CHECK(count_class(doc, "blk op-I") == 9);
    CHECK(count_class(doc, "blk op-W") == 9);
    CHECK(count_class(doc, "key") == 4); // F, I, W, send/recv (the step mark has its own glyph)
}

TEST_CASE("svg: text is escaped and labels can be turned off", "[unit][io][svg]") {
    paci::schedule s = paci::one_f_one_b<>{.stages = 2, .microbatches = 2, .steps = 1}.generate();
    s.policy = "a<b> & \"c\" 'd'";
    const std::string svg = paci::to_svg(s);
    const std::vector<element> doc = read_xml(svg);
    CHECK(doc[1].text == s.policy);
    s.policy = "t\xC2\xB5s \xFF";
    CHECK(read_xml(paci::to_svg(s))[1].text == "t\xC2\xB5s \xEF\xBF\xBD");
    std::size_t labels = 0;
    for (const element& e : doc)
        if (e.name == "text" && e.attrs.count("fill") && e.attrs.at("fill") == "#ffffff" && (e.text == "0" || e.text == "1"))
            ++labels;
    CHECK(labels == s.compute_size());
    std::size_t none = 0;
    for (const element& e : read_xml(paci::to_svg(s, paci::action_times{}, nullptr, {.title = "custom", .microbatch_labels = false})))
        if (e.name == "text" && (e.text == "0" || e.text == "1") && e.attrs.count("fill") && e.attrs.at("fill") == "#ffffff")
            ++none;
    CHECK(none == 0);
}

TEST_CASE("svg: bad options are configuration errors", "[unit][io][svg]") {
    const paci::schedule s = paci::one_f_one_b<>{.stages = 2, .microbatches = 2, .steps = 1}.generate();
    CHECK_THROWS_MATCHES(paci::to_svg(s, paci::action_times{}, nullptr, {.width = 100}), paci::config_error,
                         Catch::Matchers::Message("paci::to_svg: width (100) must be >= 200"));
    CHECK_THROWS_AS(paci::to_svg(s, paci::action_times{}, nullptr, {.row_height = 5}), paci::config_error);
    CHECK_THROWS_AS(paci::to_svg(s, paci::action_times(1)), paci::config_error);
}

// Overlapped pairs (issue 9).

namespace {

using paci_test::dualpipe_lowered;
using paci_test::without_pairs;

double num(const element& e, const char* attr) { return std::strtod(e.attrs.at(attr).c_str(), nullptr); }

/// The block (a `blk ` rect) whose tooltip reads `title`, or null.
const element* block_titled(const std::vector<element>& doc, const std::string& title) {
    for (std::size_t k = 0; k + 1 < doc.size(); ++k)
        if (doc[k].attrs.count("class") && doc[k].attrs.at("class").starts_with("blk ") && doc[k + 1].name == "title" &&
            doc[k + 1].text == title)
            return &doc[k];
    return nullptr;
}

} // namespace

TEST_CASE("svg: an overlapped pair shares its lane, the forward in the top half and the backward below",
          "[unit][io][svg][pair]") {
    const paci::schedule s = dualpipe_lowered();
    std::size_t pairs = 0;
    for (const auto& prog : s.ranks)
        for (const paci::action& a : prog) pairs += a.overlap_next ? 1U : 0U;
    // dualpipe_v's phases 4 and 5 for R = 2, M = 4: rank 0 runs 2 + 1 pairs, rank 1 runs 4 - 1 (its
    // first F0 and B1 run in turn).
    REQUIRE(pairs == 6);
    for (const double penalty : {1.0, 0.0}) {
        CAPTURE(penalty);
        paci::cost_model costs{};
        costs.overlap_penalty = penalty;
        const paci::simulation sim = paci::simulate(s, costs);
        REQUIRE(sim.completed);
        const std::vector<element> doc = read_xml(paci::to_svg(s, sim.times));
        CHECK(count_class(doc, "blk ") == s.compute_size()); // every member is drawn
        CHECK(count_class(doc, "blk op-F pair-top") == pairs);
        CHECK(count_class(doc, "blk op-B pair-bottom") == pairs);
        CHECK(count_class(doc, "key-pair") == 1);
        std::vector<const element*> lanes;
        for (const element& e : doc)
            if (e.attrs.count("class") && e.attrs.at("class") == "lane") lanes.push_back(&e);
        REQUIRE(lanes.size() == s.ranks.size());
        // Width 1100 with 78 px on the left and 24 on the right: 998 px for the makespan. Lanes are
        // 30 px high; a full block leaves 2 px above and below (26 px), a half block is 13 px.
        const double sx = 998.0 / sim.makespan;
        for (std::size_t r = 0; r < s.ranks.size(); ++r) {
            const double lane_y = num(*lanes[r], "y");
            const auto& prog = s.ranks[r];
            for (std::size_t p = 0; p < prog.size(); ++p) {
                const paci::action a = prog[p];
                if (!paci::is_compute(a.kind)) continue;
                const bool opens = a.overlap_next;
                const bool closes = p > 0 && prog[p - 1].overlap_next;
                const std::string pair = opens ? paci::to_string(a, prog[p + 1]) : closes ? paci::to_string(prog[p - 1], a) : "";
                const std::string title = paci::to_string(a) + (pair.empty() ? "" : " (overlapped pair " + pair + ")");
                CAPTURE(r, p, title);
                const element* blk = block_titled(doc, title);
                REQUIRE(blk != nullptr);
                const double start = sim.times[r][p].start;
                CHECK(std::abs(num(*blk, "x") - (78 + start * sx)) <= 0.005);
                if (opens || closes) {
                    CHECK(blk->attrs.at("class") == (opens ? "blk op-F pair-top" : "blk op-B pair-bottom"));
                    CHECK(std::abs(num(*blk, "y") - (lane_y + (opens ? 2 : 15))) <= 0.005);
                    CHECK(num(*blk, "height") == 13);
                    // Both members span the pair: max(F, B) + penalty * min(F, B) with F = 1, B = 2.
                    CHECK(std::abs(num(*blk, "width") - (2 + penalty) * sx) <= 0.005);
                } else {
                    CHECK(std::abs(num(*blk, "y") - (lane_y + 2)) <= 0.005);
                    CHECK(num(*blk, "height") == 26);
                }
            }
        }
    }
}

TEST_CASE("svg: pair members that run in turn are drawn as any action", "[unit][io][svg][pair]") {
    const paci::schedule s = dualpipe_lowered();
    const paci::schedule plain = without_pairs(s);
    // Program-order times run the forward, then the backward.
    const std::string svg = paci::to_svg(s);
    CHECK(svg.find("pair") == std::string::npos);
    CHECK(svg == paci::to_svg(plain));
    // So does a hand-given table that moves each pair's backward after its forward.
    const paci::action_times times = paci_test::pairs_in_turn(s);
    CHECK(paci::to_svg(s, times) == paci::to_svg(plain, times));
    CHECK(paci::to_svg(s, times).find("pair") == std::string::npos);
}

TEST_CASE("svg: the backward of an overlapped pair keeps its drift badge", "[unit][io][svg][pair]") {
    const paci::dualpipe_v policy{.ranks = 2, .microbatches = 4, .steps = 1};
    const paci::schedule s = paci::lower(policy.generate());
    paci::replay_result versions = paci::replay(s, policy.controller());
    // A flush drifts nothing; make the backward of rank 0's first pair read one update newer.
    paci::action forward{};
    paci::action backward{};
    for (std::size_t p = 0; p + 1 < s.ranks[0].size() && !forward.overlap_next; ++p)
        if (s.ranks[0][p].overlap_next) {
            forward = s.ranks[0][p];
            backward = s.ranks[0][p + 1];
        }
    REQUIRE(forward.overlap_next);
    const auto cell = static_cast<std::size_t>(&versions.at(backward.stage, backward.microbatch) - versions.records.data());
    versions.records[cell].backward = versions.records[cell].forward + 1;
    REQUIRE(versions.at(backward.stage, backward.microbatch).drift() == 1);

    const paci::simulation sim = paci::simulate(s, paci::cost_model{});
    const std::vector<element> doc = read_xml(paci::to_svg(s, sim.times, &versions));
    CHECK(count_class(doc, "drift") == 1);
    const std::string pair = paci::to_string(forward, backward);
    const element* blk = block_titled(doc, paci::to_string(backward) + " (overlapped pair " + pair + ") (drift 1)");
    REQUIRE(blk != nullptr);
    CHECK(blk->attrs.at("class") == "blk op-B pair-bottom");
    CHECK(blk->attrs.at("stroke") == "#7f1d1d");
    REQUIRE(block_titled(doc, paci::to_string(forward) + " (overlapped pair " + pair + ")") != nullptr);
    // The badge (+1) ends 3 px past the backward's right edge, as for any backward.
    for (std::size_t k = 0; k + 1 < doc.size(); ++k)
        if (doc[k].name == "g" && doc[k].attrs.count("class") && doc[k].attrs.at("class") == "drift") {
            CHECK(std::abs(num(doc[k + 1], "x") + num(doc[k + 1], "width") - (num(*blk, "x") + num(*blk, "width") + 3)) <=
                  0.02);
            CHECK(doc[k + 2].text == "+1");
        }
}

// Hostile input (issue 8).

TEST_CASE("svg: times simulated for another lowering of the same schedule are refused", "[unit][io][svg][errors]") {
    // The README's example drew the eager lowering's simulated times on the rendezvous-safe lowering.
    const auto [compute, eager, safe] = paci_test::lowerings_of_one_schedule();
    const paci::simulation sim = paci::simulate(eager, paci::cost_model{});
    CHECK_NOTHROW(paci::to_svg(eager, sim.times));
    CHECK_NOTHROW(paci::to_svg(safe, paci::simulate(safe, paci::cost_model{}).times));
    REQUIRE_THROWS_WITH(paci::to_svg(safe, sim.times),
                        Catch::Matchers::StartsWith("paci::to_svg: times (computed for schedule ") &&
                            Catch::Matchers::EndsWith("): simulate this schedule, not another lowering or version of it"));
    // The compute schedule has other lengths: refused by the size check, as before.
    REQUIRE_THROWS_AS(paci::to_svg(compute, sim.times), paci::config_error);
}

TEST_CASE("svg: a header with no ranks and versions of another shape are refused", "[unit][io][svg][errors]") {
    paci::schedule s = paci::one_f_one_b<>{.stages = 2, .microbatches = 2, .steps = 1}.generate();
    const paci::replay_result versions = paci::replay(s, paci::flush{2});
    const paci::schedule longer = paci::one_f_one_b<>{.stages = 2, .microbatches = 4, .steps = 1}.generate();
    REQUIRE_THROWS_WITH(paci::to_svg(longer, paci::action_times{}, &versions),
                        "paci::to_svg: versions (2 stages x 2 micro-batches) must replay the schedule drawn (2 stages x 4 "
                        "micro-batches)");
    s.shape.ranks = 0; // chunks() divided by it
    REQUIRE_THROWS_WITH(paci::to_svg(s), "paci::to_svg: ranks (0) must be >= 1");
}

TEST_CASE("svg: an action whose op is none of the ten is a config error", "[unit][io][svg][errors]") {
    paci::schedule s = paci::one_f_one_b<>{.stages = 2, .microbatches = 1, .steps = 1}.generate();
    s.ranks[0][1].kind = static_cast<paci::op>(42); // indexed the legend's table past its end
    REQUIRE_THROWS_WITH(paci::to_svg(s), "paci::to_svg: op of the action at rank 0, position 1 (42) must be one of the 10 ops");
}
