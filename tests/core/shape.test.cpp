// Unit tests for include/paci/core/shape.hpp: the loop and v stage-to-rank maps, and the exact
// messages of pipeline_shape::validate().

#include <paci/core/error.hpp>
#include <paci/core/shape.hpp>

#include "support/catch.hpp"
#include "support/print.hpp"

#include <vector>

namespace {

using paci_test::print;

} // namespace

TEST_CASE("pipeline_shape: the default is one stage on one rank", "[unit][core][shape]") {
    const paci::pipeline_shape s{};
    CHECK(s.stages == 1);
    CHECK(s.ranks == 1);
    CHECK(s.map == paci::stage_map::loop);
    CHECK(s.chunks() == 1);
    CHECK(s.rank_of(0) == 0);
    CHECK(s.stages_of(0) == std::vector<int>{0});
    CHECK_NOTHROW(s.validate());
}

TEST_CASE("pipeline_shape: one stage per rank maps stage s to rank s", "[unit][core][shape]") {
    const paci::stage_map map = GENERATE(paci::stage_map::loop, paci::stage_map::v);
    const paci::pipeline_shape s{5, 5, map};
    if (map == paci::stage_map::loop) CHECK_NOTHROW(s.validate());
    CHECK(s.chunks() == 1);
    for (int st = 0; st < 5; ++st) {
        CAPTURE(st);
        CHECK(s.rank_of(st) == st);
        CHECK(s.chunk_of(st) == 0);
        CHECK(s.stages_of(st) == std::vector<int>{st});
    }
}

TEST_CASE("pipeline_shape: the loop map places stage s on rank s % ranks", "[unit][core][shape]") {
    const paci::pipeline_shape s{8, 4, paci::stage_map::loop};
    REQUIRE_NOTHROW(s.validate());
    CHECK(s.chunks() == 2);
    const int expected_rank[] = {0, 1, 2, 3, 0, 1, 2, 3};
    const int expected_chunk[] = {0, 0, 0, 0, 1, 1, 1, 1};
    for (int st = 0; st < 8; ++st) {
        CAPTURE(st);
        CHECK(s.rank_of(st) == expected_rank[st]);
        CHECK(s.chunk_of(st) == expected_chunk[st]);
    }
    CHECK(s.stages_of(0) == std::vector<int>{0, 4});
    CHECK(s.stages_of(1) == std::vector<int>{1, 5});
    CHECK(s.stages_of(3) == std::vector<int>{3, 7});

    const paci::pipeline_shape three{9, 3, paci::stage_map::loop};
    CHECK(three.stages_of(2) == std::vector<int>{2, 5, 8});
    CHECK(three.rank_of(7) == 1);
    CHECK(three.chunk_of(7) == 2);

    const paci::pipeline_shape single{4, 1, paci::stage_map::loop};
    CHECK(single.stages_of(0) == std::vector<int>{0, 1, 2, 3});
    CHECK(single.rank_of(3) == 0);
    CHECK(single.chunk_of(3) == 3);
}

TEST_CASE("pipeline_shape: the v map zigzags, odd chunks running ranks backwards", "[unit][core][shape]") {
    SECTION("ranks = 4, stages = 8") {
        const paci::pipeline_shape s{8, 4, paci::stage_map::v};
        REQUIRE_NOTHROW(s.validate());
        const int expected_rank[] = {0, 1, 2, 3, 3, 2, 1, 0};
        for (int st = 0; st < 8; ++st) {
            CAPTURE(st);
            CHECK(s.rank_of(st) == expected_rank[st]);
            CHECK(s.chunk_of(st) == st / 4);
        }
        CHECK(s.stages_of(0) == std::vector<int>{0, 7});
        CHECK(s.stages_of(1) == std::vector<int>{1, 6});
        CHECK(s.stages_of(2) == std::vector<int>{2, 5});
        CHECK(s.stages_of(3) == std::vector<int>{3, 4});
    }
    SECTION("ranks = 2, stages = 8: chunks alternate direction") {
        const paci::pipeline_shape s{8, 2, paci::stage_map::v};
        REQUIRE_NOTHROW(s.validate());
        const int expected_rank[] = {0, 1, 1, 0, 0, 1, 1, 0};
        for (int st = 0; st < 8; ++st) {
            CAPTURE(st);
            CHECK(s.rank_of(st) == expected_rank[st]);
        }
        CHECK(s.stages_of(0) == std::vector<int>{0, 3, 4, 7});
        CHECK(s.stages_of(1) == std::vector<int>{1, 2, 5, 6});
    }
}

TEST_CASE("pipeline_shape: stages_of inverts rank_of", "[unit][core][shape]") {
    const paci::stage_map map = GENERATE(paci::stage_map::loop, paci::stage_map::v);
    const int ranks = GENERATE(1, 2, 3, 5);
    const int chunks = GENERATE(2, 4);
    const paci::pipeline_shape s{ranks * chunks, ranks, map};
    CAPTURE(s);
    REQUIRE_NOTHROW(s.validate());
    std::vector<int> seen(static_cast<std::size_t>(s.stages), 0);
    for (int r = 0; r < ranks; ++r) {
        const auto mine = s.stages_of(r);
        REQUIRE(mine.size() == static_cast<std::size_t>(chunks));
        for (std::size_t c = 0; c < mine.size(); ++c) {
            CHECK(s.rank_of(mine[c]) == r);
            CHECK(s.chunk_of(mine[c]) == static_cast<int>(c));
            ++seen[static_cast<std::size_t>(mine[c])];
        }
    }
    CHECK(seen == std::vector<int>(static_cast<std::size_t>(s.stages), 1));
}

TEST_CASE("pipeline_shape: printing and equality", "[unit][core][shape]") {
    CHECK(print(paci::pipeline_shape{8, 4, paci::stage_map::v}) == "pipeline_shape{.stages = 8, .ranks = 4, .map = v}");
    CHECK(print(paci::pipeline_shape{3, 3, paci::stage_map::loop}) == "pipeline_shape{.stages = 3, .ranks = 3, .map = loop}");
    CHECK(paci::to_string(paci::stage_map::loop) == "loop");
    CHECK(paci::to_string(paci::stage_map::v) == "v");

    const paci::pipeline_shape a{8, 4, paci::stage_map::v};
    CHECK(a == paci::pipeline_shape{8, 4, paci::stage_map::v});
    CHECK_FALSE(a == paci::pipeline_shape{8, 4, paci::stage_map::loop});
    CHECK_FALSE(a == paci::pipeline_shape{8, 2, paci::stage_map::v});
    CHECK_FALSE(a == paci::pipeline_shape{4, 4, paci::stage_map::v});
}

TEST_CASE("pipeline_shape: validate() names the offending value and requirement", "[unit][core][shape][errors]") {
    using paci::stage_map;
    SECTION("zero stages") {
        REQUIRE_THROWS_AS((paci::pipeline_shape{0, 1, stage_map::loop}.validate()), paci::config_error);
        REQUIRE_THROWS_WITH((paci::pipeline_shape{0, 1, stage_map::loop}.validate()),
                            "paci::pipeline_shape: stages (0) must be >= 1");
    }
    SECTION("negative stages") {
        REQUIRE_THROWS_WITH((paci::pipeline_shape{-3, 1, stage_map::loop}.validate()),
                            "paci::pipeline_shape: stages (-3) must be >= 1");
    }
    SECTION("more stages than an action can name") {
        REQUIRE_THROWS_WITH((paci::pipeline_shape{32768, 1, stage_map::loop}.validate()),
                            "paci::pipeline_shape: stages (32768) must be <= 32767");
        CHECK_NOTHROW(paci::pipeline_shape{32767, 1, stage_map::loop}.validate());
    }
    SECTION("zero ranks") {
        REQUIRE_THROWS_AS((paci::pipeline_shape{4, 0, stage_map::loop}.validate()), paci::config_error);
        REQUIRE_THROWS_WITH((paci::pipeline_shape{4, 0, stage_map::loop}.validate()),
                            "paci::pipeline_shape: ranks (0) must be >= 1");
    }
    SECTION("negative ranks") {
        REQUIRE_THROWS_WITH((paci::pipeline_shape{4, -2, stage_map::loop}.validate()),
                            "paci::pipeline_shape: ranks (-2) must be >= 1");
    }
    SECTION("stages not a multiple of ranks") {
        REQUIRE_THROWS_WITH((paci::pipeline_shape{6, 4, stage_map::loop}.validate()),
                            "paci::pipeline_shape: stages (6) must be a multiple of ranks (4)");
        REQUIRE_THROWS_WITH((paci::pipeline_shape{2, 3, stage_map::loop}.validate()),
                            "paci::pipeline_shape: stages (2) must be a multiple of ranks (3)");
    }
    SECTION("v map with an odd number of stages") {
        REQUIRE_THROWS_AS((paci::pipeline_shape{5, 5, stage_map::v}.validate()), paci::config_error);
        REQUIRE_THROWS_WITH((paci::pipeline_shape{5, 5, stage_map::v}.validate()),
                            "paci::pipeline_shape: stages (5) must be even for the v map");
        REQUIRE_THROWS_WITH((paci::pipeline_shape{9, 3, stage_map::v}.validate()),
                            "paci::pipeline_shape: stages (9) must be even for the v map");
        // The same shape is fine under the loop map.
        CHECK_NOTHROW(paci::pipeline_shape{9, 3, stage_map::loop}.validate());
    }
    SECTION("v map with an odd number of chunks") {
        REQUIRE_THROWS_WITH((paci::pipeline_shape{6, 2, stage_map::v}.validate()),
                            "paci::pipeline_shape: stages / ranks (3) must be even for the v map");
        REQUIRE_THROWS_WITH((paci::pipeline_shape{4, 4, stage_map::v}.validate()),
                            "paci::pipeline_shape: stages / ranks (1) must be even for the v map");
        CHECK_NOTHROW(paci::pipeline_shape{6, 2, stage_map::loop}.validate());
        CHECK_NOTHROW(paci::pipeline_shape{12, 3, stage_map::v}.validate());
    }
    SECTION("the caller's API name leads the message") {
        REQUIRE_THROWS_WITH((paci::pipeline_shape{0, 1, stage_map::loop}.validate("lower")),
                            "paci::lower: stages (0) must be >= 1");
        REQUIRE_THROWS_WITH((paci::pipeline_shape{6, 2, stage_map::v}.validate("my_api")),
                            "paci::my_api: stages / ranks (3) must be even for the v map");
    }
}

TEST_CASE("shape: a shape with no ranks answers without dividing by zero", "[unit][core][shape][errors]") {
    const paci::pipeline_shape none{4, 0, paci::stage_map::loop};
    CHECK(none.chunks() == 0);
    CHECK(none.rank_of(1) == -1);
    CHECK(none.chunk_of(1) == -1);
    CHECK(none.stages_of(0).empty());
    REQUIRE_THROWS_WITH(none.validate("api"), "paci::api: ranks (0) must be >= 1");
    const paci::pipeline_shape two{4, 2, paci::stage_map::loop};
    CHECK(two.stages_of(2).empty()); // rank 2 does not exist
    CHECK(two.stages_of(1) == std::vector<int>{1, 3});
}
