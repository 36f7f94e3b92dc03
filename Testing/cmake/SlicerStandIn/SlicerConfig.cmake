# Stand-in for the SlicerConfig.cmake of a Slicer build tree, so the extension can be configured
# without a Slicer SDK:  cmake -S <repo> -B <build> -DSlicer_DIR=<this folder>
#
# It provides the variables and (through UseSlicer.cmake) the macros that DualDINOv3 uses, with the
# keyword names of the real ones, fails the configure on arguments the real ones would reject or
# mishandle, and records every call and the EXTENSION_* metadata in
# <build>/SlicerStandInRecord.json (see SlicerStandInRecord.cmake). Used by
# Testing/test_slicer_extension_cmake.py.

if(CMAKE_VERSION VERSION_LESS "3.19")
  message(FATAL_ERROR "The Slicer stand-in needs CMake >= 3.19 (string(JSON)); this is ${CMAKE_VERSION}.")
endif()

set(Slicer_VERSION_MAJOR 5)
set(Slicer_VERSION_MINOR 8)
set(Slicer_VERSION "${Slicer_VERSION_MAJOR}.${Slicer_VERSION_MINOR}")
set(Slicer_MAIN_PROJECT_APPLICATION_NAME Slicer)
set(Slicer_USE_PYTHONQT ON)
set(Slicer_BUILD_TESTING ON)

set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "lib/Slicer-${Slicer_VERSION}/qt-scripted-modules")

set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionGenerateConfig.cmake")
set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/SlicerExtensionCPack.cmake")

include("${CMAKE_CURRENT_LIST_DIR}/SlicerStandInRecord.cmake")
slicer_standin_record_reset()
