/* GetElementResponse without protobuf-c: the zero-copy encoder writes the
 * bytes protobuf-c packs for the same message, and the run-by-run decoder
 * gives the elements protobuf-c's unpack gives, however the bytes are cut
 * into runs; other layouts and bad bytes are decoded or refused the way
 * protobuf-c does, never a crash. */
#include "testutil.h"

#include "data/dataset.h"
#include "data/element_wire.h"
#include "data_worker.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mc_tensor *numeric(mc_dtype dt, const int64_t *dims, int rank) {
  size_t n = 1;
  for (int i = 0; i < rank; i++)
    n *= (size_t)dims[i];
  size_t bytes = n * mc_dtype_size(dt);
  unsigned char *data = malloc(bytes + 1);
  for (size_t i = 0; i < bytes; i++)
    data[i] = dt == MC_DT_BOOL ? (unsigned char)(i % 3 == 0)
                               : (unsigned char)(i * 7 + 3);
  mc_tensor *t;
  MC_ASSERT_OK(mc_tensor_new(&t, dt, dims, rank, data, bytes));
  free(data);
  return t;
}

/* Elements covering the cases: multi-component dense, a string tensor
 * (not dense: whole TensorProto in the head), bool (typed bool_val), an
 * empty tensor, a scalar and a 1.2 MB tensor. */
#define NELEM 5
static void make_elements(mc_element *e) {
  int64_t d23[2] = {2, 3}, d0[1] = {0}, d3[1] = {3}, dbig[1] = {300000};
  mc_tensor *t[3];
  t[0] = numeric(MC_DT_FLOAT, d23, 2);
  t[1] = numeric(MC_DT_INT64, NULL, 0);
  t[2] = numeric(MC_DT_DOUBLE, d0, 1);
  MC_ASSERT_OK(mc_element_take(&e[0], t, 3));
  const char *strs[2] = {"a", "bc"};
  size_t lens[2] = {1, 2};
  int64_t d2[1] = {2};
  MC_ASSERT_OK(mc_tensor_new_strings(&t[0], d2, 1, strs, lens));
  t[1] = numeric(MC_DT_INT32, d3, 1);
  MC_ASSERT_OK(mc_element_take(&e[1], t, 2));
  t[0] = numeric(MC_DT_BOOL, d3, 1);
  MC_ASSERT_OK(mc_element_take(&e[2], t, 1));
  t[0] = numeric(MC_DT_FLOAT, dbig, 1);
  MC_ASSERT_OK(mc_element_take(&e[3], t, 1));
  MC_ASSERT_OK(mc_element_take(&e[4], t, 0)); /* no components */
}

/* What protobuf-c packs for es[0..n) with element_index index. */
static uint8_t *pack_reference(const mc_element *es, size_t n, int64_t index,
                               size_t *len) {
  Tensorflow__Data__UncompressedElement ue[NELEM];
  Tensorflow__Data__UncompressedElement *more[NELEM];
  ProtobufCBinaryData comps[NELEM][3];
  uint8_t **bufs[NELEM];
  size_t *lens[NELEM];
  for (size_t k = 0; k < n; k++) {
    MC_ASSERT_OK(mc__element_to_protos(&es[k], &bufs[k], &lens[k]));
    tensorflow__data__uncompressed_element__init(&ue[k]);
    for (size_t i = 0; i < es[k].num_components; i++) {
      comps[k][i].data = bufs[k][i];
      comps[k][i].len = lens[k][i];
    }
    ue[k].n_components = es[k].num_components;
    ue[k].components = comps[k];
    more[k] = &ue[k];
  }
  Tensorflow__Data__GetElementResponse r =
      TENSORFLOW__DATA__GET_ELEMENT_RESPONSE__INIT;
  r.element_case = TENSORFLOW__DATA__GET_ELEMENT_RESPONSE__ELEMENT_UNCOMPRESSED;
  r.uncompressed = &ue[0];
  r.element_index = index;
  r.n_more_elements = n - 1;
  r.more_elements = more + 1;
  *len = protobuf_c_message_get_packed_size(&r.base);
  uint8_t *out = malloc(*len);
  protobuf_c_message_pack(&r.base, out);
  for (size_t k = 0; k < n; k++) {
    for (size_t i = 0; i < es[k].num_components; i++)
      free(bufs[k][i]);
    free(bufs[k]);
    free(lens[k]);
  }
  return out;
}

static void expect_elements(const mc_element *got, size_t ngot,
                            const mc_element *want, size_t nwant) {
  assert_int_equal(ngot, nwant);
  for (size_t k = 0; k < nwant; k++) {
    assert_int_equal(got[k].num_components, want[k].num_components);
    for (size_t i = 0; i < want[k].num_components; i++)
      assert_true(mc_tensor_equal(got[k].components[i], want[k].components[i]));
  }
}

static void free_elements(mc_element *es, size_t n) {
  for (size_t i = 0; i < n; i++)
    mc_element_clear(&es[i]);
  free(es);
}

/* Decodes buf cut into runs of `step` bytes (0: one run). */
static mc_code decode_cut(const uint8_t *buf, size_t len, size_t step,
                          mc_element **es, size_t *n, int *eos) {
  size_t np = step == 0 ? 1 : (len + step - 1) / step;
  mc_rpc_bytes *parts = calloc(np + 1, sizeof *parts);
  for (size_t i = 0; i < np; i++) {
    parts[i].data = buf + i * step;
    parts[i].len = step == 0 || len - i * step < step ? len - i * step : step;
  }
  mc_code rc = mc__wire_response_decode(parts, np, es, n, eos);
  free(parts);
  return rc;
}

static void test_same_bytes_as_protobuf_c(void **state) {
  (void)state;
  mc_element e[NELEM] = {0};
  make_elements(e);
  const int64_t indices[3] = {0, 7, -1};
  for (size_t n = 1; n <= NELEM; n++) {
    for (int x = 0; x < 3; x++) {
      /* es[k] starts at element (x + k) % NELEM so that every element is
       * the first (uncompressed) in some message. */
      mc_element order[NELEM];
      mc__wire_element we[NELEM];
      for (size_t k = 0; k < n; k++) {
        order[k] = e[(k + (size_t)x) % NELEM];
        MC_ASSERT_OK(mc__wire_element_encode(&order[k], &we[k]));
      }
      we[0].index = indices[x];
      mc_rpc_bytes *parts;
      size_t np;
      uint8_t *scratch;
      MC_ASSERT_OK(mc__wire_response_parts(we, n, &parts, &np, &scratch));
      size_t len = 0;
      for (size_t i = 0; i < np; i++)
        len += parts[i].len;
      uint8_t *flat = malloc(len + 1);
      for (size_t i = 0, o = 0; i < np; o += parts[i].len, i++)
        memcpy(flat + o, parts[i].data, parts[i].len);
      size_t ref_len;
      uint8_t *ref = pack_reference(order, n, indices[x], &ref_len);
      assert_int_equal(len, ref_len);
      assert_memory_equal(flat, ref, len);

      /* Decoded from the runs as sent, from one run, and from runs cut
       * anywhere (including inside varints and TensorProto headers). */
      mc_element *got;
      size_t ngot;
      int eos = 1;
      MC_ASSERT_OK(mc__wire_response_decode(parts, np, &got, &ngot, &eos));
      assert_int_equal(eos, 0);
      expect_elements(got, ngot, order, n);
      free_elements(got, ngot);
      const size_t steps[3] = {0, 1, 4093};
      for (int s = 0; s < 3; s++) {
        if (steps[s] == 1 && len > 100000)
          continue; /* one-byte runs of the big tensor: slow under valgrind */
        MC_ASSERT_OK(decode_cut(flat, len, steps[s], &got, &ngot, &eos));
        expect_elements(got, ngot, order, n);
        free_elements(got, ngot);
      }
      free(ref);
      free(flat);
      free(parts);
      free(scratch);
      for (size_t k = 0; k < n; k++)
        mc__wire_element_clear(&we[k]);
    }
  }
  for (int i = 0; i < NELEM; i++)
    mc_element_clear(&e[i]);
}

static void test_other_layouts(void **state) {
  (void)state;
  mc_element e[NELEM] = {0};
  make_elements(e);
  mc_element *got;
  size_t ngot;
  int eos;

  /* end_of_sequence without an element. */
  const uint8_t end[2] = {0x10, 0x01};
  MC_ASSERT_OK(decode_cut(end, 2, 1, &got, &ngot, &eos));
  assert_int_equal(eos, 1);
  assert_int_equal(ngot, 0);
  free(got);
  /* The empty message: nothing, not the end. */
  MC_ASSERT_OK(decode_cut(end, 0, 0, &got, &ngot, &eos));
  assert_int_equal(eos, 0);
  assert_int_equal(ngot, 0);
  free(got);

  /* more_elements before uncompressed (legal protobuf, not what workers
   * write): protobuf-c's order, uncompressed first. Built from two
   * one-element messages: field 5 of the second renumbered to 100. */
  size_t la, lb;
  uint8_t *a = pack_reference(&e[0], 1, 0, &la);
  uint8_t *b = pack_reference(&e[1], 1, 0, &lb);
  uint8_t *swapped = malloc(la + lb + 1);
  swapped[0] = 0xa2;
  swapped[1] = 0x06;
  memcpy(swapped + 2, b + 1, lb - 1);
  memcpy(swapped + 1 + lb, a, la);
  MC_ASSERT_OK(decode_cut(swapped, la + lb + 1, 3, &got, &ngot, &eos));
  mc_element want[2] = {e[0], e[1]};
  expect_elements(got, ngot, want, 2);
  free_elements(got, ngot);
  free(swapped);
  free(b);

  /* A TensorProto whose content is not last (unknown field 200 after it)
   * is decoded whole: same tensor. */
  mc_tensor *t = e[0].components[0];
  uint8_t *tp;
  size_t tl;
  MC_ASSERT_OK(mc_tensor_to_proto_bytes(t, &tp, &tl));
  uint8_t msg[256];
  size_t o = 0;
  msg[o++] = 0x2a;
  msg[o++] = (uint8_t)(tl + 3 + 2);
  msg[o++] = 0x0a;
  msg[o++] = (uint8_t)(tl + 3);
  memcpy(msg + o, tp, tl);
  o += tl;
  msg[o++] = 0xc0; /* field 200, varint */
  msg[o++] = 0x0c;
  msg[o++] = 0x01;
  free(tp);
  MC_ASSERT_OK(decode_cut(msg, o, 5, &got, &ngot, &eos));
  assert_int_equal(ngot, 1);
  assert_int_equal(got[0].num_components, 1);
  assert_true(mc_tensor_equal(got[0].components[0], t));
  free_elements(got, ngot);

  /* Every truncation of a valid message is refused or decoded, never a
   * crash; cutting inside the last component is refused as DATA_LOSS
   * naming the size. */
  for (size_t cut = 0; cut < la; cut++) {
    mc_code rc = decode_cut(a, cut, 7, &got, &ngot, &eos);
    if (rc == MC_OK)
      free_elements(got, ngot);
    else
      assert_int_equal(rc, MC_DATA_LOSS);
  }
  char needle[64];
  snprintf(needle, sizeof needle, "of %zu bytes", la - 1);
  MC_ASSERT_ERR(decode_cut(a, la - 1, 7, &got, &ngot, &eos), MC_DATA_LOSS,
                needle);
  assert_null(got);
  free(a);

  /* A component that is not a TensorProto: the component's error. */
  const uint8_t bad[] = {0x2a, 0x04, 0x0a, 0x02, 0x08, 0x63}; /* dtype 99 */
  MC_ASSERT_ERR(decode_cut(bad, sizeof bad, 1, &got, &ngot, &eos),
                MC_INVALID_ARGUMENT, "element component 0");
  /* A length past the end. */
  const uint8_t over[] = {0x2a, 0x7f, 0x0a, 0x02};
  MC_ASSERT_ERR(decode_cut(over, sizeof over, 0, &got, &ngot, &eos),
                MC_DATA_LOSS, "GetElementResponse");
  for (int i = 0; i < NELEM; i++)
    mc_element_clear(&e[i]);
}

/* A response that is malformed further on (a field numbered 0 after the
 * element) is rejected as a whole before any component is decoded: its
 * component asks for a float tensor of 2^40 elements (a shape and one
 * float_val to repeat, valid TensorProto), which must never be allocated.
 * Found by the element_wire fuzz target (an allocation of 5 GB). */
static void test_malformed_tail_rejected_before_decoding(void **state) {
  (void)state;
  static const uint8_t tensor[] = {
      0x08, 0x01,                                     /* dtype FLOAT */
      0x12, 0x09, 0x12, 0x07, 0x08, 0x80, 0x80, 0x80, /* shape {dim {size */
      0x80, 0x80, 0x20,                               /*   2^40 }} */
      0x2a, 0x04, 0x00, 0x00, 0x80, 0x3f};            /* float_val 1.0 */
  uint8_t msg[64];
  size_t n = 0;
  msg[n++] = 0x2a; /* uncompressed */
  msg[n++] = (uint8_t)(2 + sizeof tensor);
  msg[n++] = 0x0a; /* components */
  msg[n++] = (uint8_t)sizeof tensor;
  memcpy(msg + n, tensor, sizeof tensor);
  n += sizeof tensor;
  msg[n++] = 0x00; /* field 0: invalid in protobuf */
  msg[n++] = 0x00;
  mc_element *got = NULL;
  size_t ngot = 0;
  int eos = 0;
  for (size_t step = 0; step <= 3; step++) {
    MC_ASSERT_ERR(decode_cut(msg, n, step, &got, &ngot, &eos), MC_DATA_LOSS,
                  "not a valid tensorflow.data.GetElementResponse");
    assert_null(got);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_same_bytes_as_protobuf_c),
      cmocka_unit_test(test_other_layouts),
      cmocka_unit_test(test_malformed_tail_rejected_before_decoding),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
