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
#
# Every source must also hold its positive control: the near miss fixed under
# `#ifdef PACI_COMPILE_FAIL_CONTROL`. The same source with that macro defined is the object library
# paci_compile_fail_<name>_control, built by the ctest `compile_fail.<name>.control`, which must
# succeed; so a must-not-compile test cannot pass for a reason other than the one it is about (the
# control differs from it only in the near miss). A source without a control is a configure error.
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

  # The positive control: the same source, near miss fixed, must compile.
  file(STRINGS "${source}" control REGEX "^[ \t]*#[ \t]*if(def[ \t]+|[ \t]+defined[ \t]*\\(?[ \t]*)PACI_COMPILE_FAIL_CONTROL")
  if(NOT control)
    message(FATAL_ERROR "paci_add_compile_fail_test: ${source} has no positive control: put the fix of its "
                        "near miss under #ifdef PACI_COMPILE_FAIL_CONTROL")
  endif()
  add_library(${target}_control OBJECT EXCLUDE_FROM_ALL "${source}")
  target_link_libraries(${target}_control PRIVATE paci::paci ${arg_LIBRARIES})
  target_compile_definitions(${target}_control PRIVATE PACI_COMPILE_FAIL_CONTROL)
  add_test(NAME ${test}.control
    COMMAND "${CMAKE_COMMAND}" --build "${CMAKE_BINARY_DIR}" --target ${target}_control --config $<CONFIG>)
  set_tests_properties(${test}.control PROPERTIES
    LABELS compile-fail
    RESOURCE_LOCK paci_build_tree)
endfunction()
