# Install libsae into a scratch prefix, then build and run tests/install_consumer/consumer.c
# against it twice: with pkg-config (sae.pc) and with find_package(sae).
set(prefix ${SAE_WORK_DIR}/prefix)
file(REMOVE_RECURSE ${SAE_WORK_DIR})

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

run(${CMAKE_COMMAND} --install ${SAE_BINARY_DIR} --prefix ${prefix})
set(src ${SAE_SOURCE_DIR}/tests/install_consumer)

# pkg-config
set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig)
execute_process(COMMAND pkg-config --cflags --libs sae OUTPUT_VARIABLE flags
  OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not find sae in ${prefix}")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(cc ${src}/consumer.c -o ${SAE_WORK_DIR}/consumer_pkgconfig ${flags} -Wl,-rpath,${prefix}/lib)
run(${SAE_WORK_DIR}/consumer_pkgconfig)

# find_package
run(${CMAKE_COMMAND} -S ${src} -B ${SAE_WORK_DIR}/cmake_build -DCMAKE_PREFIX_PATH=${prefix}
  -DCMAKE_BUILD_RPATH=${prefix}/lib)
run(${CMAKE_COMMAND} --build ${SAE_WORK_DIR}/cmake_build)
run(${SAE_WORK_DIR}/cmake_build/consumer)
