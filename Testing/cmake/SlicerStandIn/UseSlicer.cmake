# Stand-in for Slicer's UseSlicer.cmake (included through ${Slicer_USE_FILE}): defines the macros an
# extension may call afterwards, with the keywords of the real Slicer and CTK macros.
# The real macros are:
#   slicerMacroBuildScriptedModule  Slicer CMake/SlicerMacroBuildScriptedModule.cmake
#   ctkMacroCompilePythonScript     CTK CMake/ctkMacroCompilePythonScript.cmake
#   slicer_add_python_unittest      Slicer CMake/SlicerMacroPythonTesting.cmake
# Any other Slicer macro is undefined here, so an extension that starts using one fails the
# configure until the stand-in learns it.

include_guard(GLOBAL)

if(NOT DEFINED EXTENSION_NAME)
  set(EXTENSION_NAME ${PROJECT_NAME})
endif()
if(NOT DEFINED BUILD_TESTING)
  set(BUILD_TESTING ${Slicer_BUILD_TESTING})
endif()

# Install dirs are relative to the extension package root.
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "${Slicer_QTSCRIPTEDMODULES_LIB_DIR}")

slicer_standin_record_variables(
  Slicer_VERSION
  Slicer_QTSCRIPTEDMODULES_LIB_DIR
  Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR
  CMAKE_SOURCE_DIR
  CMAKE_BINARY_DIR
  BUILD_TESTING
  )

function(_slicer_standin_fail_on_unparsed command prefix)
  if(${prefix}_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "${command}() given unknown arguments: \"${${prefix}_UNPARSED_ARGUMENTS}\"")
  endif()
  if(${prefix}_KEYWORDS_MISSING_VALUES)
    message(FATAL_ERROR "${command}() given keywords without values: ${${prefix}_KEYWORDS_MISSING_VALUES}")
  endif()
endfunction()

#-----------------------------------------------------------------------------
macro(slicerMacroBuildScriptedModule)
  set(_sbsm_options WITH_GENERIC_TESTS WITH_SUBDIR VERBOSE)
  set(_sbsm_one_value NAME)
  set(_sbsm_multi_value SCRIPTS RESOURCES)
  cmake_parse_arguments(MY_SLICER "${_sbsm_options}" "${_sbsm_one_value}" "${_sbsm_multi_value}" ${ARGN})
  _slicer_standin_fail_on_unparsed(slicerMacroBuildScriptedModule MY_SLICER)
  if(NOT DEFINED MY_SLICER_NAME)
    message(FATAL_ERROR "slicerMacroBuildScriptedModule(): NAME is mandatory")
  endif()
  if(NOT Slicer_USE_PYTHONQT)
    message(FATAL_ERROR "Attempting to build the Python scripted module '${MY_SLICER_NAME}' with Slicer_USE_PYTHONQT OFF")
  endif()
  # Like the real macro: every entry must exist, as given or with ".py" appended.
  foreach(_sbsm_keyword SCRIPTS RESOURCES)
    foreach(_sbsm_value IN LISTS MY_SLICER_${_sbsm_keyword})
      set(_sbsm_path "${_sbsm_value}")
      if(NOT IS_ABSOLUTE "${_sbsm_path}")
        set(_sbsm_path "${CMAKE_CURRENT_SOURCE_DIR}/${_sbsm_value}")
      endif()
      if(NOT EXISTS "${_sbsm_path}" AND NOT EXISTS "${_sbsm_path}.py")
        message(FATAL_ERROR "slicerMacroBuildScriptedModule(${_sbsm_keyword}) given nonexistent file or directory '${_sbsm_value}'")
      endif()
    endforeach()
  endforeach()
  slicer_standin_record_call(slicerMacroBuildScriptedModule MY_SLICER
    "${_sbsm_options}" "${_sbsm_one_value}" "${_sbsm_multi_value}")

  # Like the real macro: copy and install through ctkMacroCompilePythonScript.
  set(_sbsm_no_install_subdir NO_INSTALL_SUBDIR)
  set(_sbsm_destination_subdir "")
  if(MY_SLICER_WITH_SUBDIR)
    get_filename_component(_sbsm_destination_subdir ${CMAKE_CURRENT_SOURCE_DIR} NAME)
    set(_sbsm_destination_subdir "/${_sbsm_destination_subdir}")
    set(_sbsm_no_install_subdir "")
  endif()
  set(_sbsm_resources_args)
  if(MY_SLICER_RESOURCES)
    set(_sbsm_resources_args RESOURCES ${MY_SLICER_RESOURCES})
  endif()
  ctkMacroCompilePythonScript(
    TARGET_NAME ${MY_SLICER_NAME}
    SCRIPTS ${MY_SLICER_SCRIPTS}
    ${_sbsm_resources_args}
    DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}${_sbsm_destination_subdir}
    INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}
    ${_sbsm_no_install_subdir}
    )
endmacro()

#-----------------------------------------------------------------------------
# The real macro parses its arguments with ctkMacroParseArguments; the keywords are the same.
# Stricter than the real one: nonexistent files fail the configure (the real one fails the build),
# and so does a TARGET_NAME used twice (the real one silently skips the second call's copies).
macro(ctkMacroCompilePythonScript)
  set(_ctk_options NO_INSTALL_SUBDIR GLOBAL_TARGET)
  set(_ctk_one_value TARGET_NAME SOURCE_DIR DESTINATION_DIR INSTALL_DIR)
  set(_ctk_multi_value SCRIPTS RESOURCES)
  cmake_parse_arguments(MY "${_ctk_options}" "${_ctk_one_value}" "${_ctk_multi_value}" ${ARGN})
  _slicer_standin_fail_on_unparsed(ctkMacroCompilePythonScript MY)
  foreach(_ctk_keyword TARGET_NAME SCRIPTS DESTINATION_DIR INSTALL_DIR)
    if("${MY_${_ctk_keyword}}" STREQUAL "")
      message(FATAL_ERROR "ctkMacroCompilePythonScript(): ${_ctk_keyword} is mandatory")
    endif()
  endforeach()
  if(NOT DEFINED MY_SOURCE_DIR)
    set(MY_SOURCE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
  endif()
  _slicer_standin_copy_python_files()
endmacro()

# Copy rules, install rule and record of one ctkMacroCompilePythonScript() call (reads its MY_*).
function(_slicer_standin_copy_python_files)
  set(copy_target Copy${MY_TARGET_NAME}PythonFiles)
  if(TARGET ${copy_target})
    message(FATAL_ERROR "ctkMacroCompilePythonScript(): TARGET_NAME '${MY_TARGET_NAME}' is used twice")
  endif()
  get_filename_component(source_dir "${MY_SOURCE_DIR}" REALPATH)
  get_filename_component(destination_dir "${MY_DESTINATION_DIR}" REALPATH)
  get_filename_component(destination_name "${destination_dir}" NAME)

  set(files "[]")
  set(outputs)
  foreach(keyword SCRIPTS RESOURCES)
    foreach(file IN LISTS MY_${keyword})
      if(keyword STREQUAL "SCRIPTS")
        get_filename_component(extension "${file}" EXT)
        if(NOT extension MATCHES "py")
          set(file "${file}.py")
        endif()
      endif()
      if(IS_ABSOLUTE "${file}")
        set(source "${file}")
        file(RELATIVE_PATH target_file "${CMAKE_CURRENT_BINARY_DIR}" "${file}")
      else()
        set(source "${source_dir}/${file}")
        set(target_file "${file}")
      endif()
      if(NOT EXISTS "${source}")
        message(FATAL_ERROR
          "ctkMacroCompilePythonScript(${keyword}) of target '${MY_TARGET_NAME}' given nonexistent file"
          " '${file}' (looked for ${source})")
      endif()
      set(build_path "${destination_dir}/${target_file}")
      if(MY_NO_INSTALL_SUBDIR)
        set(install_path "${MY_INSTALL_DIR}/${target_file}")
      else()
        set(install_path "${MY_INSTALL_DIR}/${destination_name}/${target_file}")
      endif()
      add_custom_command(
        OUTPUT "${build_path}"
        DEPENDS "${source}"
        COMMAND ${CMAKE_COMMAND} -E copy "${source}" "${build_path}"
        COMMENT "Copying python ${keyword}: ${target_file}"
        )
      list(APPEND outputs "${build_path}")

      string(TOLOWER "${keyword}" kind)
      set(entry "{}")
      foreach(field kind source build_path install_path)
        slicer_standin_json_string(value "${${field}}")
        string(JSON entry SET "${entry}" ${field} "${value}")
      endforeach()
      string(JSON count LENGTH "${files}")
      string(JSON files SET "${files}" ${count} "${entry}")
    endforeach()
  endforeach()
  add_custom_target(${copy_target} ALL DEPENDS ${outputs})

  # Like CTK: install the whole destination folder (its content only, with NO_INSTALL_SUBDIR).
  set(directory_to_install "${destination_dir}")
  if(MY_NO_INSTALL_SUBDIR)
    set(directory_to_install "${destination_dir}/")
  endif()
  install(DIRECTORY "${directory_to_install}"
    DESTINATION "${MY_INSTALL_DIR}" COMPONENT RuntimeLibraries
    USE_SOURCE_PERMISSIONS)

  slicer_standin_record_call(ctkMacroCompilePythonScript MY
    "${_ctk_options}" "${_ctk_one_value}" "${_ctk_multi_value}" files files)
endfunction()

#-----------------------------------------------------------------------------
# The real macro adds a ctest that runs Slicer with
# slicer.testing.runUnitTest([<binary dir>, <source dir>], <SCRIPT name without extension>).
macro(slicer_add_python_unittest)
  set(_sapu_options)
  set(_sapu_one_value TESTNAME_PREFIX SCRIPT)
  set(_sapu_multi_value SLICER_ARGS)
  cmake_parse_arguments(MY "${_sapu_options}" "${_sapu_one_value}" "${_sapu_multi_value}" ${ARGN})
  _slicer_standin_fail_on_unparsed(slicer_add_python_unittest MY)
  if(NOT DEFINED MY_SCRIPT)
    message(FATAL_ERROR "slicer_add_python_unittest(): SCRIPT is mandatory")
  endif()
  if(NOT EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/${MY_SCRIPT}")
    message(FATAL_ERROR "slicer_add_python_unittest() given nonexistent SCRIPT '${MY_SCRIPT}'")
  endif()
  slicer_standin_record_call(slicer_add_python_unittest MY
    "${_sapu_options}" "${_sapu_one_value}" "${_sapu_multi_value}")
endmacro()
