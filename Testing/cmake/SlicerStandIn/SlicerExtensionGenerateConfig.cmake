# Stand-in for Slicer's SlicerExtensionGenerateConfig.cmake (${Slicer_EXTENSION_GENERATE_CONFIG}):
# checks that the extension metadata is set and records every EXTENSION_* variable.

foreach(_sseg_variable
    EXTENSION_NAME EXTENSION_HOMEPAGE EXTENSION_CATEGORY EXTENSION_CONTRIBUTORS EXTENSION_DESCRIPTION
    EXTENSION_ICONURL EXTENSION_SCREENSHOTURLS EXTENSION_DEPENDS)
  if("${${_sseg_variable}}" STREQUAL "")
    message(FATAL_ERROR "Extension metadata ${_sseg_variable} is not set (set it before this include)")
  endif()
endforeach()

get_cmake_property(_sseg_variables VARIABLES)
list(FILTER _sseg_variables INCLUDE REGEX "^EXTENSION_")
set(_sseg_extension "{}")
foreach(_sseg_variable IN LISTS _sseg_variables)
  slicer_standin_json_string(_sseg_value "${${_sseg_variable}}")
  string(JSON _sseg_extension SET "${_sseg_extension}" "${_sseg_variable}" "${_sseg_value}")
endforeach()
set_property(GLOBAL PROPERTY SLICER_STANDIN_EXTENSION "${_sseg_extension}")
slicer_standin_record_write()
