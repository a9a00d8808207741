mc_add_test(rpc_bytes_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/rpc_bytes_test.c TIMEOUT 60 LABELS threaded)
