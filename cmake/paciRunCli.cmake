# Runs a command-line program and checks its exit status and output.
# Usage: cmake -DCOMMAND=<program;arg;...> -DEXPECT_RC=<n> [-DEXPECT=<regex>] [-DREJECT=<regex>]
#              [-DWORKDIR=<dir>] -P paciRunCli.cmake
# EXPECT must match standard output and error together; REJECT must not.
if(NOT WORKDIR)
  set(WORKDIR "${CMAKE_CURRENT_BINARY_DIR}")
endif()
execute_process(COMMAND ${COMMAND}
  WORKING_DIRECTORY "${WORKDIR}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(all "${out}${err}")
if(NOT rc STREQUAL EXPECT_RC)
  message(FATAL_ERROR "exit status ${rc}, expected ${EXPECT_RC}\n--- output ---\n${all}")
endif()
if(DEFINED EXPECT AND NOT all MATCHES "${EXPECT}")
  message(FATAL_ERROR "output does not match '${EXPECT}'\n--- output ---\n${all}")
endif()
if(DEFINED REJECT AND all MATCHES "${REJECT}")
  message(FATAL_ERROR "output matches '${REJECT}'\n--- output ---\n${all}")
endif()
message(STATUS "ok (exit ${rc})")
