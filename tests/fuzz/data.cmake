# The fuzz targets of the data service (see tests/fuzz/fuzz.h and
# mc_add_fuzzer in tests/CMakeLists.txt). Seed corpora: tests/fuzz/<name>/.
mc_add_fuzzer(dataset_def
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/dataset_def.c
          ${CMAKE_CURRENT_LIST_DIR}/fuzz_common.c)
mc_add_fuzzer(dispatcher_journal
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/dispatcher_journal.c
          ${CMAKE_CURRENT_LIST_DIR}/fuzz_common.c)
mc_add_fuzzer(element_wire
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/element_wire.c
          ${CMAKE_CURRENT_LIST_DIR}/fuzz_common.c)
