#include <paci/paci.hpp>

#include "support/catch.hpp"

TEST_CASE("paci.hpp: the umbrella header compiles and paci::action stays compact", "[smoke]") {
  STATIC_REQUIRE(sizeof(paci::action) <= 8);
  CHECK(paci::action{} == paci::action{});
}
