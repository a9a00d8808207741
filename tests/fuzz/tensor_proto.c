/* Fuzz target: serialized tensorflow.TensorProto
 * (mc_tensor_from_proto_bytes). An accepted tensor must survive a round
 * trip through mc_tensor_to_proto_bytes unchanged (bytewise, so NaNs
 * compare equal). Inputs whose shape declares more than 2^20 elements are
 * skipped: filling them is correct but only slow. */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

static void check_same(const mc_tensor *a, const mc_tensor *b) {
  MC_FUZZ_CHECK(mc_tensor_dtype(a) == mc_tensor_dtype(b));
  MC_FUZZ_CHECK(mc_tensor_rank(a) == mc_tensor_rank(b));
  for (int i = 0; i < mc_tensor_rank(a); i++)
    MC_FUZZ_CHECK(mc_tensor_dim(a, i) == mc_tensor_dim(b, i));
  if (mc_tensor_dtype(a) == MC_DT_STRING) {
    for (int64_t i = 0; i < mc_tensor_num_elements(a); i++) {
      size_t la, lb;
      const char *sa = mc_tensor_string(a, i, &la);
      const char *sb = mc_tensor_string(b, i, &lb);
      MC_FUZZ_CHECK(la == lb && memcmp(sa, sb, la) == 0);
    }
    return;
  }
  MC_FUZZ_CHECK(mc_tensor_byte_size(a) == mc_tensor_byte_size(b));
  MC_FUZZ_CHECK(memcmp(mc_tensor_data(a), mc_tensor_data(b),
                       mc_tensor_byte_size(a)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (mc_fuzz_tensor_too_big(data, size))
    return 0;
  mc_tensor *t = NULL;
  mc_code rc = mc_tensor_from_proto_bytes(data, size, &t);
  if (rc != MC_OK) {
    mc_fuzz_check_error(rc, MC_INVALID_ARGUMENT);
    MC_FUZZ_CHECK(t == NULL);
    return 0;
  }
  uint8_t *buf;
  size_t len;
  MC_FUZZ_CHECK(mc_tensor_to_proto_bytes(t, &buf, &len) == MC_OK);
  mc_tensor *back = NULL;
  MC_FUZZ_CHECK(mc_tensor_from_proto_bytes(buf, len, &back) == MC_OK);
  check_same(t, back);
  mc_tensor *copy;
  MC_FUZZ_CHECK(mc_tensor_copy(t, &copy) == MC_OK);
  check_same(t, copy);
  mc_tensor_free(copy);
  mc_tensor_free(back);
  mc_tensor_free(t);
  free(buf);
  return 0;
}
