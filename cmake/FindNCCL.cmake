# FindNCCL
# --------
# Finds the NVIDIA Collective Communications Library (NCCL), which ships no CMake package.
#
#   find_package(NCCL [<version>] [REQUIRED] [QUIET])
#
# Imported target
#   NCCL::NCCL          the shared library with its include directory; it also links CUDA::cudart
#                       when that target exists (find_package(CUDAToolkit) first)
#
# Result variables
#   NCCL_FOUND          true when nccl.h and the library were found (and the version fits)
#   NCCL_VERSION        <major>.<minor>.<patch>, read from nccl.h (NCCL_MAJOR/MINOR/PATCH)
#   NCCL_INCLUDE_DIRS   the directory holding nccl.h
#   NCCL_LIBRARIES      the library
#
# Cache variables
#   NCCL_INCLUDE_DIR, NCCL_LIBRARY (set them to point at a particular NCCL)
#
# Hints (CMake or environment variables), searched first, in this order:
#   NCCL_ROOT, NCCL_HOME, CUDAToolkit_ROOT, CUDA_HOME, CUDA_PATH, then the CUDA toolkit that
#   find_package(CUDAToolkit) found, /usr/local/cuda and the system locations (Debian/Ubuntu's
#   libnccl-dev installs into /usr/include and /usr/lib/x86_64-linux-gnu).

include(FindPackageHandleStandardArgs)

set(_nccl_hints)
foreach(_nccl_var IN ITEMS NCCL_ROOT NCCL_HOME CUDAToolkit_ROOT CUDA_HOME CUDA_PATH)
  if(DEFINED ${_nccl_var} AND NOT "${${_nccl_var}}" STREQUAL "")
    list(APPEND _nccl_hints "${${_nccl_var}}")
  endif()
  if(DEFINED ENV{${_nccl_var}} AND NOT "$ENV{${_nccl_var}}" STREQUAL "")
    list(APPEND _nccl_hints "$ENV{${_nccl_var}}")
  endif()
endforeach()
if(CUDAToolkit_LIBRARY_ROOT)
  list(APPEND _nccl_hints "${CUDAToolkit_LIBRARY_ROOT}")
endif()

set(_nccl_include_hints)
set(_nccl_library_hints)
if(CUDAToolkit_INCLUDE_DIRS)
  list(APPEND _nccl_include_hints ${CUDAToolkit_INCLUDE_DIRS})
endif()
if(CUDAToolkit_LIBRARY_DIR)
  list(APPEND _nccl_library_hints "${CUDAToolkit_LIBRARY_DIR}")
endif()

find_path(NCCL_INCLUDE_DIR
  NAMES nccl.h
  HINTS ${_nccl_hints} ${_nccl_include_hints}
  PATH_SUFFIXES include
  PATHS /usr/local/cuda /usr/local/cuda/include
  DOC "Directory holding nccl.h")

find_library(NCCL_LIBRARY
  # libnccl.so.2: the pip/conda wheels (nvidia-nccl-cu*) ship no unversioned libnccl.so.
  NAMES nccl libnccl.so.2
  HINTS ${_nccl_hints} ${_nccl_library_hints}
  PATH_SUFFIXES lib64 lib lib/x86_64-linux-gnu lib/aarch64-linux-gnu
  PATHS /usr/local/cuda/lib64 /usr/local/cuda /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu
  DOC "The NCCL library")

unset(NCCL_VERSION)
if(NCCL_INCLUDE_DIR AND EXISTS "${NCCL_INCLUDE_DIR}/nccl.h")
  file(STRINGS "${NCCL_INCLUDE_DIR}/nccl.h" _nccl_version_lines
    REGEX "^#define[ \t]+NCCL_(MAJOR|MINOR|PATCH)[ \t]+[0-9]+")
  foreach(_nccl_part IN ITEMS MAJOR MINOR PATCH)
    set(_nccl_${_nccl_part})
    foreach(_nccl_line IN LISTS _nccl_version_lines)
      if(_nccl_line MATCHES "^#define[ \t]+NCCL_${_nccl_part}[ \t]+([0-9]+)")
        set(_nccl_${_nccl_part} "${CMAKE_MATCH_1}")
      endif()
    endforeach()
  endforeach()
  if(NOT "${_nccl_MAJOR}" STREQUAL "" AND NOT "${_nccl_MINOR}" STREQUAL "" AND NOT "${_nccl_PATCH}" STREQUAL "")
    set(NCCL_VERSION "${_nccl_MAJOR}.${_nccl_MINOR}.${_nccl_PATCH}")
  endif()
endif()

find_package_handle_standard_args(NCCL
  REQUIRED_VARS NCCL_LIBRARY NCCL_INCLUDE_DIR
  VERSION_VAR NCCL_VERSION)

if(NCCL_FOUND)
  set(NCCL_INCLUDE_DIRS "${NCCL_INCLUDE_DIR}")
  set(NCCL_LIBRARIES "${NCCL_LIBRARY}")
  if(NOT TARGET NCCL::NCCL)
    add_library(NCCL::NCCL UNKNOWN IMPORTED)
    set_target_properties(NCCL::NCCL PROPERTIES
      IMPORTED_LOCATION "${NCCL_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${NCCL_INCLUDE_DIR}")
    # nccl.h includes cuda_runtime.h, and the library calls into the CUDA runtime.
    if(TARGET CUDA::cudart)
      set_property(TARGET NCCL::NCCL APPEND PROPERTY INTERFACE_LINK_LIBRARIES CUDA::cudart)
    endif()
  endif()
endif()

mark_as_advanced(NCCL_INCLUDE_DIR NCCL_LIBRARY)
unset(_nccl_hints)
unset(_nccl_include_hints)
unset(_nccl_library_hints)
unset(_nccl_version_lines)
unset(_nccl_line)
unset(_nccl_part)
unset(_nccl_var)
unset(_nccl_MAJOR)
unset(_nccl_MINOR)
unset(_nccl_PATCH)
