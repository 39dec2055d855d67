# genrelay_ui_assets(SRC OUT): the build step that embeds SRC/ui into the C
# file OUT (cmake/embed_assets.cmake), rerun when a file under ui/ changes.
# Included by the main build and by the fuzz targets' build.
function(genrelay_ui_assets src out)
  file(GLOB_RECURSE ui_files CONFIGURE_DEPENDS ${src}/ui/*)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DDIR=${src}/ui -DOUT=${out} -P ${src}/cmake/embed_assets.cmake
    DEPENDS ${ui_files} ${src}/cmake/embed_assets.cmake
    COMMENT "Embedding ui/")
endfunction()
