// Unit tests for include/paci/core/action.hpp: op names and classes, the action value, its
// PyTorch-style text form, and strict parsing with located errors.
//
// Expected messages follow the header's documented form
//   "paci::parse_action: <what> in '<token>' at line L, column C"
// where C is the caller's column plus the 0-based offset of the offending character in the token.

#include <paci/core/action.hpp>
#include <paci/core/error.hpp>

#include "support/catch.hpp"

#include <cstddef>
#include <sstream>
#include <string>
#include <type_traits>

using Catch::Matchers::ContainsSubstring;

namespace {

/// Parses `token` and returns the parse_error it must throw (fails the test if none is thrown).
paci::parse_error parse_failure(std::string_view token, std::size_t line, std::size_t column) {
    try {
        static_cast<void>(paci::parse_action(token, line, column));
    } catch (const paci::parse_error& e) {
        return e;
    }
    FAIL("parse_action('" << std::string(token) << "') did not throw");
    return paci::parse_error("unreachable", 0, 0);
}

} // namespace

TEST_CASE("action: op names follow PyTorch's IR plus R and STEP", "[unit][core][action]") {
    CHECK(paci::to_string(paci::op::F) == "F");
    CHECK(paci::to_string(paci::op::B) == "B");
    CHECK(paci::to_string(paci::op::I) == "I");
    CHECK(paci::to_string(paci::op::W) == "W");
    CHECK(paci::to_string(paci::op::R) == "R");
    CHECK(paci::to_string(paci::op::STEP) == "STEP");
    CHECK(paci::to_string(paci::op::SEND_F) == "SEND_F");
    CHECK(paci::to_string(paci::op::RECV_F) == "RECV_F");
    CHECK(paci::to_string(paci::op::SEND_B) == "SEND_B");
    CHECK(paci::to_string(paci::op::RECV_B) == "RECV_B");

    std::ostringstream out;
    out << paci::op::SEND_B;
    CHECK(out.str() == "SEND_B");
}

TEST_CASE("action: compute and communication classes partition the ops except STEP", "[unit][core][action]") {
    using paci::op;
    for (const op o : {op::F, op::B, op::I, op::W, op::R}) {
        CAPTURE(paci::to_string(o));
        CHECK(paci::is_compute(o));
        CHECK_FALSE(paci::is_comm(o));
    }
    for (const op o : {op::SEND_F, op::RECV_F, op::SEND_B, op::RECV_B}) {
        CAPTURE(paci::to_string(o));
        CHECK(paci::is_comm(o));
        CHECK_FALSE(paci::is_compute(o));
        CHECK_FALSE(paci::is_backward(o));
    }
    CHECK_FALSE(paci::is_compute(op::STEP));
    CHECK_FALSE(paci::is_comm(op::STEP));
    CHECK_FALSE(paci::is_backward(op::STEP));

    CHECK(paci::is_backward(op::B));
    CHECK(paci::is_backward(op::W));
    CHECK_FALSE(paci::is_backward(op::F));
    CHECK_FALSE(paci::is_backward(op::R));
    STATIC_REQUIRE(paci::is_compute(op::R));
    STATIC_REQUIRE(paci::is_comm(op::RECV_B));
}

TEST_CASE("action: a small, trivially copyable regular value", "[unit][core][action]") {
    STATIC_REQUIRE(std::is_trivially_copyable_v<paci::action>);
    STATIC_REQUIRE(sizeof(paci::action) <= 8);

    constexpr paci::action def{};
    STATIC_REQUIRE(def.kind == paci::op::F);
    STATIC_REQUIRE(def.stage == 0);
    STATIC_REQUIRE(def.microbatch == 0);

    constexpr paci::action a{paci::op::B, 3, 12};
    STATIC_REQUIRE(a.kind == paci::op::B);
    STATIC_REQUIRE(a.stage == 3);
    STATIC_REQUIRE(a.microbatch == 12);

    CHECK(a == paci::action{paci::op::B, 3, 12});
    CHECK_FALSE(a == paci::action{paci::op::F, 3, 12});
    CHECK_FALSE(a == paci::action{paci::op::B, 2, 12});
    CHECK_FALSE(a == paci::action{paci::op::B, 3, 11});
    CHECK(paci::max_stages == 32767);
}

TEST_CASE("action: to_string writes <stage><op><index>", "[unit][core][action]") {
    using paci::op;
    CHECK(paci::to_string(paci::action{op::F, 3, 12}) == "3F12");
    CHECK(paci::to_string(paci::action{op::SEND_B, 0, 4}) == "0SEND_B4");
    CHECK(paci::to_string(paci::action{op::I, 2, 0}) == "2I0");
    CHECK(paci::to_string(paci::action{op::W, 2, 0}) == "2W0");
    CHECK(paci::to_string(paci::action{op::R, 1, 5}) == "1R5");
    CHECK(paci::to_string(paci::action{op::STEP, 2, 1}) == "2STEP1");
    CHECK(paci::to_string(paci::action{op::RECV_F, 32767, 2147483647}) == "32767RECV_F2147483647");

    std::ostringstream out;
    out << paci::action{op::RECV_B, 7, 9};
    CHECK(out.str() == "7RECV_B9");
}

TEST_CASE("action: parse_action reads the documented examples", "[unit][core][action]") {
    using paci::op;
    CHECK(paci::parse_action("3F12") == paci::action{op::F, 3, 12});
    CHECK(paci::parse_action("0SEND_B4") == paci::action{op::SEND_B, 0, 4});
    CHECK(paci::parse_action("2I0") == paci::action{op::I, 2, 0});
    CHECK(paci::parse_action("2W0") == paci::action{op::W, 2, 0});
    CHECK(paci::parse_action("1R5") == paci::action{op::R, 1, 5});
    CHECK(paci::parse_action("2STEP1") == paci::action{op::STEP, 2, 1});
    CHECK(paci::parse_action("0B0") == paci::action{op::B, 0, 0});
    CHECK(paci::parse_action("4SEND_F1") == paci::action{op::SEND_F, 4, 1});
    CHECK(paci::parse_action("5RECV_F6") == paci::action{op::RECV_F, 5, 6});
    CHECK(paci::parse_action("6RECV_B7") == paci::action{op::RECV_B, 6, 7});
    // Leading zeros are digits like any other.
    CHECK(paci::parse_action("007F010") == paci::action{op::F, 7, 10});
}

TEST_CASE("action: to_string and parse_action round-trip every op", "[unit][core][action]") {
    const int k = GENERATE(range(0, paci::op_count));
    const auto o = static_cast<paci::op>(k);
    const int stage = GENERATE(0, 1, 17, paci::max_stages);
    const int index = GENERATE(0, 9, 10, 123456, 2147483647);
    const paci::action a{o, stage, index};
    const std::string text = paci::to_string(a);
    CAPTURE(text);
    CHECK(text == std::to_string(stage) + std::string(paci::to_string(o)) + std::to_string(index));
    CHECK(paci::parse_action(text) == a);
}

TEST_CASE("action: parse_action rejects trailing characters", "[unit][core][action][parse]") {
    const auto e = parse_failure("3F12x", 1, 1);
    CHECK(e.line() == 1);
    CHECK(e.column() == 5); // 'x' is the 5th character
    CHECK_THAT(e.what(), ContainsSubstring("paci::parse_action"));
    CHECK_THAT(e.what(), ContainsSubstring("unexpected trailing characters"));
    CHECK_THAT(e.what(), ContainsSubstring("'3F12x'"));
    CHECK_THAT(e.what(), ContainsSubstring("line 1, column 5"));

    // The column is relative to where the caller says the token starts.
    const auto shifted = parse_failure("3F12x", 7, 10);
    CHECK(shifted.line() == 7);
    CHECK(shifted.column() == 14);
    CHECK(std::string(shifted.what()) ==
          "paci::parse_action: unexpected trailing characters in '3F12x' at line 7, column 14");

    const auto space = parse_failure("0B1 ", 2, 3);
    CHECK(space.column() == 6);
    CHECK_THAT(space.what(), ContainsSubstring("unexpected trailing characters"));
}

TEST_CASE("action: parse_action requires a stage number first", "[unit][core][action][parse]") {
    SECTION("no digits") {
        const auto e = parse_failure("F12", 3, 4);
        CHECK(e.line() == 3);
        CHECK(e.column() == 4);
        CHECK(std::string(e.what()) == "paci::parse_action: expected a stage number in 'F12' at line 3, column 4");
    }
    SECTION("a sign is not a digit") {
        const auto e = parse_failure("-1F0", 1, 1);
        CHECK(e.column() == 1);
        CHECK_THAT(e.what(), ContainsSubstring("expected a stage number"));
    }
    SECTION("empty token") {
        const auto e = parse_failure("", 5, 2);
        CHECK(e.line() == 5);
        CHECK(e.column() == 2);
        CHECK(std::string(e.what()) == "paci::parse_action: expected a stage number in '' at line 5, column 2");
    }
}

TEST_CASE("action: parse_action rejects stages that do not fit", "[unit][core][action][parse]") {
    SECTION("more digits than any 32-bit number") {
        const auto e = parse_failure("99999999999F0", 1, 1);
        CHECK(e.column() == 1);
        CHECK_THAT(e.what(), ContainsSubstring("stage number out of range"));
        CHECK_THAT(e.what(), ContainsSubstring("'99999999999F0'"));
    }
    SECTION("beyond int64") {
        const auto e = parse_failure("99999999999999999999999F0", 2, 8);
        CHECK(e.line() == 2);
        CHECK(e.column() == 8);
        CHECK_THAT(e.what(), ContainsSubstring("stage number out of range"));
    }
    SECTION("one above the largest stage index") {
        const auto e = parse_failure("32768F0", 1, 1);
        CHECK(e.column() == 1);
        CHECK(std::string(e.what()) == "paci::parse_action: stage number out of range in '32768F0' at line 1, column 1");
    }
    SECTION("the largest stage index itself is accepted") {
        CHECK(paci::parse_action("32767F0") == paci::action{paci::op::F, 32767, 0});
    }
}

TEST_CASE("action: parse_action requires a known upper-case op", "[unit][core][action][parse]") {
    SECTION("lower case is not an op") {
        const auto e = parse_failure("3f12", 1, 1);
        CHECK(e.column() == 2); // the 'f'
        CHECK_THAT(e.what(), ContainsSubstring("expected an op"));
        CHECK_THAT(e.what(), ContainsSubstring("F, B, I, W, R, STEP, SEND_F, RECV_F, SEND_B, RECV_B"));
        CHECK_THAT(e.what(), ContainsSubstring("'3f12'"));
    }
    SECTION("digits only") {
        const auto e = parse_failure("12", 1, 1);
        CHECK(e.column() == 3); // right after the stage number
        CHECK_THAT(e.what(), ContainsSubstring("expected an op"));
    }
    SECTION("an unknown name") {
        const auto e = parse_failure("3FOO1", 4, 20);
        CHECK(e.line() == 4);
        CHECK(e.column() == 21); // 'F' of FOO, offset 1
        CHECK_THAT(e.what(), ContainsSubstring("unknown op 'FOO'"));
        CHECK_THAT(e.what(), ContainsSubstring("expected one of F, B, I, W, R, STEP, SEND_F, RECV_F, SEND_B, RECV_B"));
        CHECK_THAT(e.what(), ContainsSubstring("line 4, column 21"));
    }
    SECTION("a prefix of a real name") {
        const auto e = parse_failure("0SEND1", 1, 1);
        CHECK(e.column() == 2);
        CHECK_THAT(e.what(), ContainsSubstring("unknown op 'SEND'"));
    }
    SECTION("a real name with a suffix") {
        const auto e = parse_failure("0STEPS1", 1, 1);
        CHECK_THAT(e.what(), ContainsSubstring("unknown op 'STEPS'"));
    }
}

TEST_CASE("action: parse_action requires a micro-batch number last", "[unit][core][action][parse]") {
    SECTION("missing") {
        const auto e = parse_failure("3F", 1, 1);
        CHECK(e.column() == 3); // one past the op
        CHECK(std::string(e.what()) == "paci::parse_action: expected a micro-batch number in '3F' at line 1, column 3");
    }
    SECTION("missing after a long op") {
        const auto e = parse_failure("10SEND_B", 6, 1);
        CHECK(e.line() == 6);
        CHECK(e.column() == 9);
        CHECK_THAT(e.what(), ContainsSubstring("expected a micro-batch number"));
    }
    SECTION("a lower-case letter where the number belongs") {
        const auto e = parse_failure("3Fa1", 1, 1);
        CHECK(e.column() == 3);
        CHECK_THAT(e.what(), ContainsSubstring("expected a micro-batch number"));
    }
    SECTION("above the 32-bit range") {
        const auto e = parse_failure("0F2147483648", 1, 1);
        CHECK(e.column() == 3);
        CHECK_THAT(e.what(), ContainsSubstring("micro-batch number out of range"));
        CHECK(paci::parse_action("0F2147483647") == paci::action{paci::op::F, 0, 2147483647});
    }
    SECTION("too many digits") {
        const auto e = parse_failure("1B99999999999", 1, 1);
        CHECK(e.column() == 3);
        CHECK_THAT(e.what(), ContainsSubstring("micro-batch number out of range"));
    }
}

TEST_CASE("action: every malformed token throws parse_error", "[unit][core][action][parse]") {
    const std::string token =
        GENERATE(as<std::string>{}, "3F12x", "F12", "3F", "3f12", "3FOO1", "-1F0", "", "99999999999F0", "32768F0",
                 " 3F1", "3 F1", "3F 1", "3F-1", "3F+1", "3_F1");
    CAPTURE(token);
    REQUIRE_THROWS_AS(paci::parse_action(token), paci::parse_error);
    REQUIRE_THROWS_WITH(paci::parse_action(token), ContainsSubstring("paci::parse_action: "));
}

TEST_CASE("action: a number cast to op is not an op, and prints as ?", "[unit][core][action][errors]") {
    const auto bogus = static_cast<paci::op>(42);
    CHECK_FALSE(paci::is_op(bogus));
    CHECK(paci::is_op(paci::op::RECV_B));
    CHECK(paci::to_string(bogus) == "?"); // was an index past the 10 names
    CHECK_FALSE(paci::is_comm(bogus));
    CHECK_FALSE(paci::is_compute(bogus));
    paci::action a{paci::op::F, 3, 7};
    a.kind = bogus;
    CHECK(paci::to_string(a) == "3?7");
}
