#pragma once

/// Catch2 include shim: the tests build against Catch2 v3 where it is installed and against the
/// v2 single header otherwise (Debian 12 ships 2.13). tests/CMakeLists.txt defines
/// PACI_CATCH2_V3 or PACI_CATCH2_V2 to match the library it links; the __has_include fallback
/// only serves tools that compile a test without the build's definitions.
///
/// Write tests against the subset both versions share. For substring matching use the v3 name
/// Catch::Matchers::ContainsSubstring, which this shim provides on v2.

#if defined(PACI_CATCH2_V3)
#define PACI_CATCH2_USE_V3 1
#elif defined(PACI_CATCH2_V2)
#define PACI_CATCH2_USE_V3 0
#elif __has_include(<catch2/catch_test_macros.hpp>)
#define PACI_CATCH2_USE_V3 1
#else
#define PACI_CATCH2_USE_V3 0
#endif

#if PACI_CATCH2_USE_V3

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/generators/catch_generators_adapters.hpp>
#include <catch2/generators/catch_generators_random.hpp>
#include <catch2/generators/catch_generators_range.hpp>
#include <catch2/matchers/catch_matchers.hpp>
#include <catch2/matchers/catch_matchers_exception.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#else

#include <catch2/catch.hpp>

#include <string>

namespace Catch::Matchers {
// Catch2 v3 renamed the v2 substring matcher Contains to ContainsSubstring.
inline StdString::ContainsMatcher ContainsSubstring(std::string const& str,
                                                    CaseSensitive::Choice case_sensitivity = CaseSensitive::Yes) {
  return Contains(str, case_sensitivity);
}
} // namespace Catch::Matchers

#endif
