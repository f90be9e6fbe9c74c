# paci_add_compile_fail_test(<name> <source> [EXPECT <regex>] [LIBRARIES <lib>...])
#
# Registers the ctest `compile_fail.<name>`, which builds <source> as an EXCLUDE_FROM_ALL object
# library linked to paci::paci and passes only if that build fails. With EXPECT the test instead
# passes only if the build output matches <regex>, so a source that fails for an unrelated reason
# (a typo, a missing include) does not count as a pass: prefer EXPECT with the static_assert or
# concept name the test is about.
#
# The object library does not use paci_dev_flags: a warning turned into an error must not pass for
# the expected diagnostic.
include_guard(GLOBAL)

function(paci_add_compile_fail_test name source)
  cmake_parse_arguments(PARSE_ARGV 2 arg "" "EXPECT" "LIBRARIES")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "paci_add_compile_fail_test: unexpected arguments: ${arg_UNPARSED_ARGUMENTS}")
  endif()

  set(target "paci_compile_fail_${name}")
  add_library(${target} OBJECT EXCLUDE_FROM_ALL "${source}")
  target_link_libraries(${target} PRIVATE paci::paci ${arg_LIBRARIES})

  set(test "compile_fail.${name}")
  add_test(NAME ${test}
    COMMAND "${CMAKE_COMMAND}" --build "${CMAKE_BINARY_DIR}" --target ${target} --config $<CONFIG>)
  # Tests that drive the build tree must not run two build tools in it at once.
  set_tests_properties(${test} PROPERTIES
    LABELS compile-fail
    RESOURCE_LOCK paci_build_tree)
  if(arg_EXPECT)
    set_tests_properties(${test} PROPERTIES PASS_REGULAR_EXPRESSION "${arg_EXPECT}")
  else()
    set_tests_properties(${test} PROPERTIES WILL_FAIL TRUE)
  endif()
endfunction()
