# paci_add_component(<name> <ExportSetName> LINK <targets...>)
# An optional component (a transport, the Catch2 matchers): INTERFACE target paci_<name> (alias paci::<name>, exported as
# <name>) over the headers in include/paci/<name>/, linked to paci::paci and LINK, with its own
# header set (checked standalone in developer builds) and its own export set, installed under the
# install component <name> so paciConfig.cmake loads it only when the component is asked for.
function(paci_add_component name export_set)
  cmake_parse_arguments(PARSE_ARGV 2 arg "" "" "LINK")
  file(GLOB_RECURSE headers
    CONFIGURE_DEPENDS
    RELATIVE "${PROJECT_SOURCE_DIR}"
    "${PROJECT_SOURCE_DIR}/include/paci/${name}/*.hpp")
  add_library(paci_${name} INTERFACE)
  add_library(paci::${name} ALIAS paci_${name})
  set_target_properties(paci_${name} PROPERTIES EXPORT_NAME ${name})
  target_link_libraries(paci_${name} INTERFACE paci::paci ${arg_LINK})
  target_sources(paci_${name}
    INTERFACE
      FILE_SET HEADERS
      BASE_DIRS "${PROJECT_SOURCE_DIR}/include"
      FILES ${headers})
  if(PROJECT_IS_TOP_LEVEL AND PACI_BUILD_TESTS)
    set_target_properties(paci_${name} PROPERTIES VERIFY_INTERFACE_HEADER_SETS ON)
  endif()
  if(PACI_INSTALL)
    install(TARGETS paci_${name}
      EXPORT ${export_set}
      FILE_SET HEADERS DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}" COMPONENT ${name})
    install(EXPORT ${export_set}
      NAMESPACE paci::
      DESTINATION "${PACI_INSTALL_CMAKEDIR}"
      COMPONENT ${name})
  endif()
endfunction()
