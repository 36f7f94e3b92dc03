# Stand-in for Slicer's SlicerExtensionCPack.cmake (${Slicer_EXTENSION_CPACK}): records that the
# extension packaging was set up, after the extension config was generated.

get_property(_ssec_extension GLOBAL PROPERTY SLICER_STANDIN_EXTENSION)
if(_ssec_extension STREQUAL "null")
  message(FATAL_ERROR "include(\${Slicer_EXTENSION_CPACK}) must follow include(\${Slicer_EXTENSION_GENERATE_CONFIG})")
endif()
set_property(GLOBAL PROPERTY SLICER_STANDIN_CPACK "true")
slicer_standin_record_write()
