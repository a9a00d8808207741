mc_add_test(element_wire_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/element_wire_test.c TIMEOUT 60)
