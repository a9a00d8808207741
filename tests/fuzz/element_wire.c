/* Fuzz target: GetElementResponse bytes as a reader receives them from a
 * worker (mc__wire_response_decode, the data service's hand-written decoder
 * of network input). The first input byte chooses how the rest is cut into
 * runs (0: one run; k: runs of k bytes), as gRPC may deliver a message in
 * any number of slices. Properties: no crash; an error has a message; and
 * the outcome does not depend on the cut: the same code, elements, end of
 * sequence flag and component tensors as when the bytes come in one run.
 * Components that declare more than 2^20 elements are skipped (see
 * mc_fuzz_tensor_too_big). */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "data/element_wire.h"
#include "data_worker.pb-c.h"

static int element_too_big(const Tensorflow__Data__UncompressedElement *e) {
  for (size_t i = 0; e != NULL && i < e->n_components; i++)
    if (mc_fuzz_tensor_too_big(e->components[i].data, e->components[i].len))
      return 1;
  return 0;
}

static int too_big(const uint8_t *data, size_t size) {
  Tensorflow__Data__GetElementResponse *r =
      tensorflow__data__get_element_response__unpack(NULL, size, data);
  if (r == NULL)
    return 0;
  int big = element_too_big(r->uncompressed);
  for (size_t i = 0; !big && i < r->n_more_elements; i++)
    big = element_too_big(r->more_elements[i]);
  tensorflow__data__get_element_response__free_unpacked(r, NULL);
  return big;
}

typedef struct outcome {
  mc_code rc;
  mc_element *elems;
  size_t n;
  int eos;
} outcome;

static outcome decode(const uint8_t *data, size_t size, size_t cut) {
  size_t nparts = cut == 0 || size == 0 ? 1 : (size + cut - 1) / cut;
  mc_rpc_bytes *parts = calloc(nparts, sizeof *parts);
  MC_FUZZ_CHECK(parts != NULL);
  for (size_t i = 0; i < nparts; i++) {
    size_t off = cut == 0 ? 0 : i * cut;
    parts[i].data = data + off;
    parts[i].len = cut == 0 || size - off < cut ? size - off : cut;
  }
  outcome o = {MC_OK, NULL, 0, 0};
  o.rc = mc__wire_response_decode(parts, size == 0 ? 0 : nparts, &o.elems, &o.n,
                                  &o.eos);
  if (o.rc != MC_OK)
    MC_FUZZ_CHECK(mc_error_last()->message[0] != '\0');
  free(parts);
  return o;
}

static void clear(outcome *o) {
  for (size_t i = 0; i < o->n; i++)
    mc_element_clear(&o->elems[i]);
  free(o->elems);
}

/* Same dtype, shape and bytes (mc_tensor_equal compares floats with ==,
 * and a NaN decoded twice is still unequal to itself). */
static int same_tensor(const mc_tensor *a, const mc_tensor *b) {
  uint8_t *x = NULL, *y = NULL;
  size_t xl = 0, yl = 0;
  MC_FUZZ_CHECK(mc_tensor_to_proto_bytes(a, &x, &xl) == MC_OK);
  MC_FUZZ_CHECK(mc_tensor_to_proto_bytes(b, &y, &yl) == MC_OK);
  int same = xl == yl && memcmp(x, y, xl) == 0;
  free(x);
  free(y);
  return same;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  size_t cut = data[0];
  data++;
  size--;
  if (too_big(data, size))
    return 0;
  outcome whole = decode(data, size, 0);
  outcome cuts = decode(data, size, cut);
  if (whole.rc != cuts.rc)
    mc_fuzz_fail("runs of %zu bytes give %s, one run gives %s", cut,
                 mc_code_name(cuts.rc), mc_code_name(whole.rc));
  if (whole.rc == MC_OK) {
    MC_FUZZ_CHECK(whole.n == cuts.n && whole.eos == cuts.eos);
    for (size_t i = 0; i < whole.n; i++) {
      const mc_element *a = &whole.elems[i], *b = &cuts.elems[i];
      MC_FUZZ_CHECK(a->num_components == b->num_components);
      for (size_t k = 0; k < a->num_components; k++)
        MC_FUZZ_CHECK(same_tensor(a->components[k], b->components[k]));
    }
  }
  clear(&whole);
  clear(&cuts);
  return 0;
}
