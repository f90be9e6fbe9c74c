# Driver for paci's package tests; run with `cmake -D... -P paciRunPackageTest.cmake`.
#
# MODE=install   stage a fresh install of BUILD_DIR into PREFIX and check its layout
#   BUILD_DIR, PREFIX, INCLUDEDIR, CMAKEDIR (both relative to PREFIX), CONFIG
# MODE=consumer  configure, build and run a consumer project from scratch
#   SOURCE_DIR, BINARY_DIR, GENERATOR, CXX_COMPILER, CONFIG, EXECUTABLE (file name, with suffix),
#   optional MAKE_PROGRAM, PREFIX_PATH (find_package), PACI_SOURCE_DIR (add_subdirectory)
cmake_minimum_required(VERSION 3.25)

function(paci_run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result COMMAND_ECHO STDOUT)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "paci package test: command failed (${result})")
  endif()
endfunction()

function(paci_require_vars)
  foreach(var IN LISTS ARGN)
    if(NOT DEFINED ${var})
      message(FATAL_ERROR "paci package test: -D${var}=... is required for MODE=${MODE}")
    endif()
  endforeach()
endfunction()

if(MODE STREQUAL "install")
  paci_require_vars(BUILD_DIR PREFIX INCLUDEDIR CMAKEDIR)
  # A fresh stage, so a header removed from the source tree cannot linger in the package.
  file(REMOVE_RECURSE "${PREFIX}")
  set(config_args)
  if(CONFIG)
    set(config_args --config "${CONFIG}")
  endif()
  paci_run("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" ${config_args})

  foreach(file IN ITEMS
      "${INCLUDEDIR}/paci/paci.hpp"
      "${CMAKEDIR}/paciConfig.cmake"
      "${CMAKEDIR}/paciConfigVersion.cmake"
      "${CMAKEDIR}/paciTargets.cmake")
    if(NOT EXISTS "${PREFIX}/${file}")
      message(FATAL_ERROR "paci package test: ${file} missing from the install")
    endif()
  endforeach()
  file(GLOB_RECURSE installed_headers RELATIVE "${PREFIX}/${INCLUDEDIR}" "${PREFIX}/${INCLUDEDIR}/paci/*")
  set(optional_headers ${installed_headers})
  list(FILTER optional_headers INCLUDE REGEX "/(mpi|nccl|cuda|testing)/")
  file(READ "${PREFIX}/${CMAKEDIR}/paciTargets.cmake" targets)
  # Optional-component headers never belong to the core target; each installed one must belong to
  # a component's own export set (paci<Component>Targets.cmake).
  if(targets MATCHES "paci/(mpi|nccl|cuda|testing)/")
    message(FATAL_ERROR "paci package test: the core target paci::paci lists optional-component headers")
  endif()
  file(GLOB component_exports "${PREFIX}/${CMAKEDIR}/paci?*Targets.cmake")
  set(component_targets "")
  foreach(file IN LISTS component_exports)
    file(READ "${file}" text)
    string(APPEND component_targets "${text}")
  endforeach()
  foreach(header IN LISTS optional_headers)
    string(FIND "${component_targets}" "/${INCLUDEDIR}/${header}\"" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "paci package test: ${header} is installed but no component's export set lists it")
    endif()
  endforeach()
  if(targets MATCHES "paci_dev_flags")
    message(FATAL_ERROR "paci package test: paci_dev_flags leaked into the exported targets")
  endif()

elseif(MODE STREQUAL "consumer")
  paci_require_vars(SOURCE_DIR BINARY_DIR GENERATOR CXX_COMPILER EXECUTABLE)
  file(REMOVE_RECURSE "${BINARY_DIR}")

  set(configure_args
    -S "${SOURCE_DIR}" -B "${BINARY_DIR}" -G "${GENERATOR}"
    "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
  if(CONFIG)
    list(APPEND configure_args "-DCMAKE_BUILD_TYPE=${CONFIG}")
  endif()
  if(MAKE_PROGRAM)
    list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
  endif()
  if(PREFIX_PATH)
    list(APPEND configure_args
      "-DCMAKE_PREFIX_PATH=${PREFIX_PATH}"
      "-DPACI_EXPECTED_PREFIX=${PREFIX_PATH}"
      -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  endif()
  if(PACI_SOURCE_DIR)
    list(APPEND configure_args "-DPACI_SOURCE_DIR=${PACI_SOURCE_DIR}")
  endif()
  paci_run("${CMAKE_COMMAND}" ${configure_args})

  set(build_args)
  if(CONFIG)
    set(build_args --config "${CONFIG}")
  endif()
  paci_run("${CMAKE_COMMAND}" --build "${BINARY_DIR}" ${build_args})

  # Single-config generators put the executable at the top of the tree, multi-config ones under
  # the configuration's directory.
  set(exe "${BINARY_DIR}/${EXECUTABLE}")
  if(CONFIG AND NOT EXISTS "${exe}")
    set(exe "${BINARY_DIR}/${CONFIG}/${EXECUTABLE}")
  endif()
  paci_run("${exe}")

else()
  message(FATAL_ERROR "paci package test: MODE must be install or consumer, not '${MODE}'")
endif()
