# libFuzzer targets (tests/fuzz), included from the top-level CMakeLists.txt.
#
# GENRELAY_FUZZ=AUTO (default) builds them when clang and its fuzzer runtime
# (libclang-rt-*-dev) work, as an external project under build/fuzz (clang
# there, whatever compiler the main build uses), and registers one ctest per
# target that fuzzes for GENRELAY_FUZZ_TEST_SECONDS (3 s each, 12 s in all).
# Without clang they are registered as skipped. `make fuzz` runs them longer.
set(GENRELAY_FUZZ AUTO CACHE STRING "Build the libFuzzer targets: AUTO, ON or OFF")
set(GENRELAY_FUZZ_TEST_SECONDS 3 CACHE STRING "Seconds each fuzz target runs under ctest")
set(GENRELAY_FUZZ_TARGETS urlguard sign api callbacks multipart)

set(_fuzz_ok FALSE)
if(NOT GENRELAY_FUZZ STREQUAL "OFF")
  find_program(GENRELAY_CLANG NAMES clang clang-16 clang-15 clang-14)
  if(GENRELAY_CLANG)
    set(_probe ${CMAKE_BINARY_DIR}/CMakeFiles/fuzz_probe)
    file(MAKE_DIRECTORY ${_probe})
    file(WRITE ${_probe}/probe.c
      "#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n")
    execute_process(
      COMMAND ${GENRELAY_CLANG} -fsanitize=fuzzer,address,undefined ${_probe}/probe.c -o ${_probe}/probe
      RESULT_VARIABLE _rc OUTPUT_QUIET ERROR_QUIET)
    if(_rc EQUAL 0)
      set(_fuzz_ok TRUE)
    endif()
  endif()
  if(NOT _fuzz_ok AND GENRELAY_FUZZ STREQUAL "ON")
    message(FATAL_ERROR "GENRELAY_FUZZ=ON but clang with -fsanitize=fuzzer does not work (install clang and libclang-rt-14-dev)")
  endif()
endif()

if(_fuzz_ok)
  message(STATUS "fuzz targets: on (${GENRELAY_CLANG})")
  include(ExternalProject)
  ExternalProject_Add(genrelay_fuzz
    SOURCE_DIR ${CMAKE_SOURCE_DIR}/tests/fuzz
    BINARY_DIR ${CMAKE_BINARY_DIR}/fuzz
    CMAKE_ARGS -DCMAKE_C_COMPILER=${GENRELAY_CLANG} -DGENRELAY_SRC=${CMAKE_SOURCE_DIR}
               -DCMAKE_BUILD_TYPE=RelWithDebInfo
    INSTALL_COMMAND ""
    BUILD_ALWAYS 1)
  foreach(name ${GENRELAY_FUZZ_TARGETS})
    add_test(NAME fuzz_${name}
      COMMAND ${CMAKE_SOURCE_DIR}/tests/fuzz/run-fuzzer ${name} ${GENRELAY_FUZZ_TEST_SECONDS} ${CMAKE_BINARY_DIR})
    set_tests_properties(fuzz_${name} PROPERTIES TIMEOUT 120
      ENVIRONMENT "GENRELAY_SRC=${CMAKE_SOURCE_DIR}")
  endforeach()
else()
  message(STATUS "fuzz targets: off (clang with libFuzzer not found; tools/install-deps installs clang and libclang-rt-14-dev)")
  foreach(name ${GENRELAY_FUZZ_TARGETS})
    add_test(NAME fuzz_${name} COMMAND ${CMAKE_COMMAND} -E echo "skipped: clang with libFuzzer not found")
    set_tests_properties(fuzz_${name} PROPERTIES DISABLED TRUE)
  endforeach()
endif()
