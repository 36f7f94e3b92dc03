# Recording helpers of the Slicer stand-in.
#
# The record is one JSON file, <build>/SlicerStandInRecord.json, rewritten after every recorded
# event so that it is complete up to the point where a configure stopped:
#   {
#     "slicer":    {"<Slicer_* variable>": "<value>", ...},   // set by UseSlicer.cmake
#     "calls":     [{"command": "<macro>", "current_source_dir": ..., "current_binary_dir": ...,
#                    "<OPTION>": true|false, "<ONE_VALUE_KEYWORD>": "<value>"|null,
#                    "<MULTI_VALUE_KEYWORD>": ["<value>", ...], <extra fields>}, ...],
#     "extension": {"EXTENSION_<NAME>": "<value>", ...} | null,  // by Slicer_EXTENSION_GENERATE_CONFIG
#     "cpack_included": true|false                                // by Slicer_EXTENSION_CPACK
#   }

set(SLICER_STANDIN_RECORD_FILE "${CMAKE_BINARY_DIR}/SlicerStandInRecord.json")

# JSON text of a string value.
function(slicer_standin_json_string out value)
  string(REPLACE "\\" "\\\\" value "${value}")
  string(REPLACE "\"" "\\\"" value "${value}")
  string(REPLACE "\n" "\\n" value "${value}")
  string(REPLACE "\t" "\\t" value "${value}")
  set(${out} "\"${value}\"" PARENT_SCOPE)
endfunction()

# JSON text of an array holding the remaining arguments as strings.
function(slicer_standin_json_list out)
  set(items)
  foreach(item IN LISTS ARGN)
    slicer_standin_json_string(quoted "${item}")
    list(APPEND items "${quoted}")
  endforeach()
  list(JOIN items ", " joined)
  set(${out} "[${joined}]" PARENT_SCOPE)
endfunction()

function(slicer_standin_record_reset)
  set_property(GLOBAL PROPERTY SLICER_STANDIN_SLICER "{}")
  set_property(GLOBAL PROPERTY SLICER_STANDIN_CALLS "[]")
  set_property(GLOBAL PROPERTY SLICER_STANDIN_EXTENSION "null")
  set_property(GLOBAL PROPERTY SLICER_STANDIN_CPACK "false")
  slicer_standin_record_write()
endfunction()

function(slicer_standin_record_write)
  set(record "{}")
  foreach(part slicer calls extension cpack_included)
    string(TOUPPER "${part}" property)
    string(REPLACE "CPACK_INCLUDED" "CPACK" property "${property}")
    get_property(value GLOBAL PROPERTY SLICER_STANDIN_${property})
    string(JSON record SET "${record}" "${part}" "${value}")
  endforeach()
  file(WRITE "${SLICER_STANDIN_RECORD_FILE}" "${record}\n")
endfunction()

# Record the variables named in ARGN as strings of the "slicer" section.
function(slicer_standin_record_variables)
  get_property(section GLOBAL PROPERTY SLICER_STANDIN_SLICER)
  foreach(name IN LISTS ARGN)
    slicer_standin_json_string(value "${${name}}")
    string(JSON section SET "${section}" "${name}" "${value}")
  endforeach()
  set_property(GLOBAL PROPERTY SLICER_STANDIN_SLICER "${section}")
  slicer_standin_record_write()
endfunction()

# Record one macro call whose arguments were parsed by cmake_parse_arguments(<prefix> ...):
#   slicer_standin_record_call(<command> <prefix> "<options>" "<one_value_keywords>"
#                              "<multi_value_keywords>" [<extra field> <variable holding its JSON>]...)
# Must be called from the macro, so that the <prefix>_<keyword> variables are visible.
function(slicer_standin_record_call command prefix options one_value multi_value)
  slicer_standin_json_string(call_json "${command}")
  set(call "{}")
  string(JSON call SET "${call}" command "${call_json}")
  foreach(field current_source_dir current_binary_dir)
    string(TOUPPER "CMAKE_${field}" variable)
    slicer_standin_json_string(value "${${variable}}")
    string(JSON call SET "${call}" ${field} "${value}")
  endforeach()
  foreach(keyword IN LISTS options)
    if(${prefix}_${keyword})
      string(JSON call SET "${call}" ${keyword} true)
    else()
      string(JSON call SET "${call}" ${keyword} false)
    endif()
  endforeach()
  foreach(keyword IN LISTS one_value)
    if(DEFINED ${prefix}_${keyword})
      slicer_standin_json_string(value "${${prefix}_${keyword}}")
    else()
      set(value null)
    endif()
    string(JSON call SET "${call}" ${keyword} "${value}")
  endforeach()
  foreach(keyword IN LISTS multi_value)
    slicer_standin_json_list(value ${${prefix}_${keyword}})
    string(JSON call SET "${call}" ${keyword} "${value}")
  endforeach()
  set(extra ${ARGN})
  while(extra)
    list(POP_FRONT extra field json_variable)
    string(JSON call SET "${call}" "${field}" "${${json_variable}}")
  endwhile()

  get_property(calls GLOBAL PROPERTY SLICER_STANDIN_CALLS)
  string(JSON count LENGTH "${calls}")
  string(JSON calls SET "${calls}" ${count} "${call}")
  set_property(GLOBAL PROPERTY SLICER_STANDIN_CALLS "${calls}")
  slicer_standin_record_write()
endfunction()
