mc_add_test(tensor_buffers_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tensor_buffers_test.c TIMEOUT 30)
