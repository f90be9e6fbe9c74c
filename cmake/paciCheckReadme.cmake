# Checks that the first ```cpp block of README.md is exactly examples/quickstart/main.cpp, so the
# quick start the README shows is the one the build compiles and ctest runs.
# Usage: cmake -DREADME=<README.md> -DEXAMPLE=<main.cpp> -P paciCheckReadme.cmake
file(READ "${README}" readme)
file(READ "${EXAMPLE}" example)
string(FIND "${readme}" "```cpp\n" start)
if(start EQUAL -1)
  message(FATAL_ERROR "README.md has no ```cpp block")
endif()
math(EXPR start "${start} + 7")
string(SUBSTRING "${readme}" ${start} -1 rest)
string(FIND "${rest}" "```" stop)
string(SUBSTRING "${rest}" 0 ${stop} block)
if(NOT block STREQUAL example)
  message(FATAL_ERROR "the README's quick start differs from ${EXAMPLE}; keep them identical")
endif()
message(STATUS "README quick start matches ${EXAMPLE}")
