mc_add_test(pb_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/pb_test.c TIMEOUT 30)
