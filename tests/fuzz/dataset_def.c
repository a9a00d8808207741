/* Fuzz target: serialized tensorflow.data.DatasetDef
 * (mc_dataset_from_def_bytes). Accepted definitions must serialize back to
 * a definition that parses to the same bytes again. Iteration is not
 * fuzzed: a valid definition may ask for any amount of work (range of 2^62,
 * batch of 2^40). */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mc_dataset *ds = NULL;
  mc_code rc = mc_dataset_from_def_bytes(data, size, &ds);
  if (rc != MC_OK) {
    MC_FUZZ_CHECK(ds == NULL);
    /* RESOURCE_EXHAUSTED: a tensor filled past 256 MiB from fewer values
     * (mc_tensor_from_proto_bytes refuses it before allocating; found by
     * seed 7, input regress-fill-limit). */
    MC_FUZZ_CHECK(rc == MC_INVALID_ARGUMENT || rc == MC_NOT_FOUND ||
                  (rc == MC_RESOURCE_EXHAUSTED &&
                   strstr(mc_error_last()->message, "may be filled") != NULL));
    MC_FUZZ_CHECK(mc_error_last()->message[0] != '\0');
    return 0;
  }
  uint8_t *a = NULL, *b = NULL;
  size_t alen = 0, blen = 0;
  MC_FUZZ_CHECK(mc_dataset_to_def_bytes(ds, &a, &alen) == MC_OK);
  mc_dataset *back = NULL;
  MC_FUZZ_CHECK(mc_dataset_from_def_bytes(a, alen, &back) == MC_OK);
  MC_FUZZ_CHECK(mc_dataset_to_def_bytes(back, &b, &blen) == MC_OK);
  MC_FUZZ_CHECK(alen == blen && memcmp(a, b, alen) == 0);
  free(a);
  free(b);
  mc_dataset_free(back);
  mc_dataset_free(ds);
  return 0;
}
