# Runs an MPI job that must fail, and fail quickly: one of its processes dies or aborts, and the
# others must end (killed by the launcher, or by their own timeout and MPI_Abort) instead of hanging.
# Usage: cmake -DCOMMAND=<mpiexec;-n;N;...;program;args> -DMAX_SECONDS=<s> [-DEXPECT=<regex>]
#              -P paciRunMpi.cmake
# Passes when the job's exit status is non-zero, it ended within MAX_SECONDS, and (with EXPECT) its
# standard output and error together match EXPECT. The job is killed after 2 * MAX_SECONDS.
if(NOT DEFINED COMMAND OR NOT DEFINED MAX_SECONDS)
  message(FATAL_ERROR "paciRunMpi: -DCOMMAND=... and -DMAX_SECONDS=... are required")
endif()
math(EXPR kill_after "2 * ${MAX_SECONDS}")
string(TIMESTAMP t0 "%s" UTC)
execute_process(COMMAND ${COMMAND}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
  TIMEOUT ${kill_after})
string(TIMESTAMP t1 "%s" UTC)
math(EXPR elapsed "${t1} - ${t0}")
set(all "${out}${err}")
message(STATUS "exit status '${rc}' after ${elapsed} s\n--- output ---\n${all}")
if(rc STREQUAL "0")
  message(FATAL_ERROR "the job succeeded; it must fail when one of its processes dies")
endif()
if(NOT rc MATCHES "^[0-9]+$")
  message(FATAL_ERROR "the job did not end by itself (${rc})")
endif()
if(elapsed GREATER MAX_SECONDS)
  message(FATAL_ERROR "the job took ${elapsed} s, more than ${MAX_SECONDS} s")
endif()
if(NOT "${EXPECT}" STREQUAL "" AND NOT all MATCHES "${EXPECT}")
  message(FATAL_ERROR "output does not match '${EXPECT}'")
endif()
message(STATUS "ok: failed with exit status ${rc} in ${elapsed} s")
