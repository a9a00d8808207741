/* Tests of mc_tensor: constructors, accessors, comparison and the
 * TensorProto conversion in both directions. */
#include "testutil.h"

#include <stdlib.h>

#include "session/tensor.h"

static void numeric_round_trip(void **state) {
  (void)state;
  float v[6] = {1, 2, 3, 4, 5, 6};
  int64_t dims[2] = {2, 3};
  mc_tensor *t;
  MC_ASSERT_OK(mc_tensor_new(&t, MC_DT_FLOAT, dims, 2, v, sizeof v));
  assert_int_equal(mc_tensor_dtype(t), MC_DT_FLOAT);
  assert_int_equal(mc_tensor_rank(t), 2);
  assert_int_equal(mc_tensor_dim(t, 1), 3);
  assert_int_equal(mc_tensor_dim(t, 2), -1);
  assert_int_equal(mc_tensor_num_elements(t), 6);
  assert_int_equal(mc_tensor_byte_size(t), sizeof v);
  assert_memory_equal(mc_tensor_data(t), v, sizeof v);
  assert_null(mc_tensor_string(t, 0, NULL));

  uint8_t *buf;
  size_t len;
  MC_ASSERT_OK(mc_tensor_to_proto_bytes(t, &buf, &len));
  /* What we write is tensor_content, never float_val. */
  Tensorflow__TensorProto *p = tensorflow__tensor_proto__unpack(NULL, len, buf);
  assert_non_null(p);
  assert_int_equal(p->dtype, TENSORFLOW__DATA_TYPE__DT_FLOAT);
  assert_int_equal(p->tensor_content.len, sizeof v);
  assert_int_equal(p->n_float_val, 0);
  assert_int_equal(p->tensor_shape->n_dim, 2);
  tensorflow__tensor_proto__free_unpacked(p, NULL);

  mc_tensor *back;
  MC_ASSERT_OK(mc_tensor_from_proto_bytes(buf, len, &back));
  assert_true(mc_tensor_equal(t, back));
  free(buf);

  mc_tensor *c;
  MC_ASSERT_OK(mc_tensor_copy(t, &c));
  assert_true(mc_tensor_equal(t, c));
  mc_tensor_free(c);
  mc_tensor_free(back);
  mc_tensor_free(t);
  mc_tensor_free(NULL);
}

static void every_dtype_round_trips(void **state) {
  (void)state;
  mc_tensor *ts[6];
  MC_ASSERT_OK(mc_tensor_new_float(&ts[0], 1.5f));
  MC_ASSERT_OK(mc_tensor_new_double(&ts[1], -2.25));
  MC_ASSERT_OK(mc_tensor_new_int32(&ts[2], -7));
  MC_ASSERT_OK(mc_tensor_new_int64(&ts[3], INT64_C(1) << 40));
  MC_ASSERT_OK(mc_tensor_new_bool(&ts[4], 5));
  MC_ASSERT_OK(mc_tensor_new_string(&ts[5], "a\0b", 3));
  assert_int_equal(*(const uint8_t *)mc_tensor_data(ts[4]), 1);
  for (int i = 0; i < 6; i++) {
    uint8_t *buf;
    size_t len;
    mc_tensor *back;
    MC_ASSERT_OK(mc_tensor_to_proto_bytes(ts[i], &buf, &len));
    MC_ASSERT_OK(mc_tensor_from_proto_bytes(buf, len, &back));
    assert_true(mc_tensor_equal(ts[i], back));
    assert_int_equal(mc_tensor_rank(back), 0);
    free(buf);
    mc_tensor_free(back);
  }
  size_t l;
  assert_memory_equal(mc_tensor_string(ts[5], 0, &l), "a\0b", 3);
  assert_int_equal(l, 3);
  for (int i = 0; i < 6; i++)
    mc_tensor_free(ts[i]);
}

static void strings(void **state) {
  (void)state;
  const char *s[3] = {"x", "", "hello"};
  int64_t dims[1] = {3};
  mc_tensor *t, *u;
  MC_ASSERT_OK(mc_tensor_new_strings(&t, dims, 1, s, NULL));
  assert_string_equal(mc_tensor_string(t, 2, NULL), "hello");
  assert_string_equal(mc_tensor_string(t, 1, NULL), "");
  assert_null(mc_tensor_string(t, 3, NULL));
  assert_null(mc_tensor_data(t));
  const char *s2[3] = {"x", "", "hellO"};
  MC_ASSERT_OK(mc_tensor_new_strings(&u, dims, 1, s2, NULL));
  assert_false(mc_tensor_equal(t, u));
  mc_tensor_free(u);
  MC_ASSERT_OK(mc_tensor_copy(t, &u));
  assert_true(mc_tensor_equal(t, u));
  mc_tensor_free(u);
  mc_tensor_free(t);
}

static void equality_and_approx(void **state) {
  (void)state;
  double a[2] = {1.0, 2.0}, b[2] = {1.0, 2.0005};
  int64_t d2[1] = {2}, d21[2] = {2, 1};
  mc_tensor *ta, *tb, *tc, *ti;
  MC_ASSERT_OK(mc_tensor_new(&ta, MC_DT_DOUBLE, d2, 1, a, sizeof a));
  MC_ASSERT_OK(mc_tensor_new(&tb, MC_DT_DOUBLE, d2, 1, b, sizeof b));
  MC_ASSERT_OK(mc_tensor_new(&tc, MC_DT_DOUBLE, d21, 2, a, sizeof a));
  MC_ASSERT_OK(mc_tensor_new(&ti, MC_DT_INT64, d2, 1, NULL, 0));
  assert_false(mc_tensor_equal(ta, tb));
  assert_true(mc_tensor_approx_equal(ta, tb, 1e-3));
  assert_false(mc_tensor_approx_equal(ta, tb, 1e-4));
  assert_false(mc_tensor_equal(ta, tc));            /* shape differs */
  assert_false(mc_tensor_approx_equal(ta, ti, 10)); /* dtype differs */
  assert_int_equal(((const int64_t *)mc_tensor_data(ti))[1], 0);
  mc_tensor_free(ta);
  mc_tensor_free(tb);
  mc_tensor_free(tc);
  mc_tensor_free(ti);
}

static void bad_constructor_arguments(void **state) {
  (void)state;
  mc_tensor *t = (mc_tensor *)1;
  int64_t dims[9] = {2, 1, 1, 1, 1, 1, 1, 1, 1};
  float v[2] = {0};
  MC_ASSERT_ERR(mc_tensor_new(&t, MC_DT_FLOAT, dims, 1, v, 4),
                MC_INVALID_ARGUMENT, "4 bytes but float shape [2] needs 8");
  assert_null(t);
  MC_ASSERT_ERR(mc_tensor_new(&t, MC_DT_FLOAT, dims, 9, v, 8),
                MC_INVALID_ARGUMENT, "rank 9");
  int64_t neg[1] = {-3};
  MC_ASSERT_ERR(mc_tensor_new(&t, MC_DT_FLOAT, neg, 1, NULL, 0),
                MC_INVALID_ARGUMENT, "is -3");
  MC_ASSERT_ERR(mc_tensor_new(&t, (mc_dtype)8, dims, 1, NULL, 0),
                MC_INVALID_ARGUMENT, "dtype 8");
  MC_ASSERT_ERR(mc_tensor_new(&t, MC_DT_STRING, dims, 1, NULL, 0),
                MC_INVALID_ARGUMENT, "mc_tensor_new_strings");
  MC_ASSERT_ERR(mc_tensor_new_strings(&t, dims, 1, NULL, NULL),
                MC_INVALID_ARGUMENT, "2 elements");
}

/* Packs a hand-built proto and parses it back. */
static mc_code parse(Tensorflow__TensorProto *p, mc_tensor **out) {
  size_t n = protobuf_c_message_get_packed_size(&p->base);
  uint8_t *b = malloc(n + 1);
  protobuf_c_message_pack(&p->base, b);
  mc_code rc = mc_tensor_from_proto_bytes(b, n, out);
  free(b);
  return rc;
}

static void reads_typed_fields_and_broadcasts(void **state) {
  (void)state;
  Tensorflow__TensorProto p = TENSORFLOW__TENSOR_PROTO__INIT;
  Tensorflow__TensorShapeProto shape = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT;
  Tensorflow__TensorShapeProto__Dim d0 =
      TENSORFLOW__TENSOR_SHAPE_PROTO__DIM__INIT;
  Tensorflow__TensorShapeProto__Dim *dimv[1] = {&d0};
  d0.size = 3;
  shape.n_dim = 1;
  shape.dim = dimv;
  p.tensor_shape = &shape;

  /* A scalar in float_val, as TF clients send it. */
  float f[1] = {4.5f};
  p.dtype = TENSORFLOW__DATA_TYPE__DT_FLOAT;
  p.n_float_val = 1;
  p.float_val = f;
  p.tensor_shape = NULL;
  mc_tensor *t;
  MC_ASSERT_OK(parse(&p, &t));
  assert_int_equal(mc_tensor_rank(t), 0);
  assert_true(*(const float *)mc_tensor_data(t) == 4.5f);
  mc_tensor_free(t);

  /* One value for shape [3]: repeated to fill. */
  p.tensor_shape = &shape;
  MC_ASSERT_OK(parse(&p, &t));
  const float *fv = mc_tensor_data(t);
  assert_true(fv[0] == 4.5f && fv[1] == 4.5f && fv[2] == 4.5f);
  mc_tensor_free(t);

  /* Two values for three elements: the last one fills the rest. */
  int64_t i64[2] = {7, 9};
  p.n_float_val = 0;
  p.float_val = NULL;
  p.dtype = TENSORFLOW__DATA_TYPE__DT_INT64;
  p.n_int64_val = 2;
  p.int64_val = i64;
  MC_ASSERT_OK(parse(&p, &t));
  const int64_t *iv = mc_tensor_data(t);
  assert_true(iv[0] == 7 && iv[1] == 9 && iv[2] == 9);
  mc_tensor_free(t);

  /* No values at all: zeros. */
  p.n_int64_val = 0;
  MC_ASSERT_OK(parse(&p, &t));
  iv = mc_tensor_data(t);
  assert_true(iv[0] == 0 && iv[2] == 0);
  mc_tensor_free(t);

  /* int32, bool, double and string typed fields. */
  int32_t i32[3] = {1, -2, 3};
  p.dtype = TENSORFLOW__DATA_TYPE__DT_INT32;
  p.n_int_val = 3;
  p.int_val = i32;
  MC_ASSERT_OK(parse(&p, &t));
  assert_int_equal(((const int32_t *)mc_tensor_data(t))[1], -2);
  mc_tensor_free(t);
  p.n_int_val = 0;
  protobuf_c_boolean bv[2] = {1, 0};
  p.dtype = TENSORFLOW__DATA_TYPE__DT_BOOL;
  p.n_bool_val = 2;
  p.bool_val = bv;
  MC_ASSERT_OK(parse(&p, &t));
  const uint8_t *b = mc_tensor_data(t);
  assert_true(b[0] == 1 && b[1] == 0 && b[2] == 0);
  mc_tensor_free(t);
  p.n_bool_val = 0;
  double dv[1] = {0.25};
  p.dtype = TENSORFLOW__DATA_TYPE__DT_DOUBLE;
  p.n_double_val = 1;
  p.double_val = dv;
  MC_ASSERT_OK(parse(&p, &t));
  assert_true(((const double *)mc_tensor_data(t))[2] == 0.25);
  mc_tensor_free(t);
  p.n_double_val = 0;
  ProtobufCBinaryData sv[1] = {{2, (uint8_t *)"hi"}};
  p.dtype = TENSORFLOW__DATA_TYPE__DT_STRING;
  p.n_string_val = 1;
  p.string_val = sv;
  MC_ASSERT_OK(parse(&p, &t));
  assert_string_equal(mc_tensor_string(t, 2, NULL), "hi");
  mc_tensor_free(t);
}

static void bad_protos_are_rejected(void **state) {
  (void)state;
  Tensorflow__TensorProto p = TENSORFLOW__TENSOR_PROTO__INIT;
  Tensorflow__TensorShapeProto shape = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT;
  Tensorflow__TensorShapeProto__Dim d0 =
      TENSORFLOW__TENSOR_SHAPE_PROTO__DIM__INIT;
  Tensorflow__TensorShapeProto__Dim *dimv[1] = {&d0};
  d0.size = 2;
  shape.n_dim = 1;
  shape.dim = dimv;
  p.tensor_shape = &shape;
  p.dtype = TENSORFLOW__DATA_TYPE__DT_FLOAT;
  mc_tensor *t;

  uint8_t content[12] = {0};
  p.tensor_content.data = content;
  p.tensor_content.len = 12;
  MC_ASSERT_ERR(parse(&p, &t), MC_INVALID_ARGUMENT,
                "tensor_content is 12 bytes but float shape [2] needs 8");
  p.tensor_content.len = 0;

  float f[3] = {1, 2, 3};
  p.n_float_val = 3;
  p.float_val = f;
  MC_ASSERT_ERR(parse(&p, &t), MC_INVALID_ARGUMENT,
                "3 values in float_val but shape [2] holds 2");
  p.n_float_val = 0;

  p.dtype = TENSORFLOW__DATA_TYPE__DT_COMPLEX64;
  MC_ASSERT_ERR(parse(&p, &t), MC_INVALID_ARGUMENT, "unsupported dtype 8");
  p.dtype = TENSORFLOW__DATA_TYPE__DT_FLOAT;

  d0.size = -1;
  MC_ASSERT_ERR(parse(&p, &t), MC_INVALID_ARGUMENT, "is -1");
  d0.size = 2;

  shape.unknown_rank = 1;
  MC_ASSERT_ERR(parse(&p, &t), MC_INVALID_ARGUMENT, "unknown rank");
  shape.unknown_rank = 0;

  /* Eight zero bytes as two strings: lengths 0 and 0, then 6 stray bytes. */
  p.dtype = TENSORFLOW__DATA_TYPE__DT_STRING;
  p.tensor_content.len = 8;
  MC_ASSERT_ERR(parse(&p, &t), MC_INVALID_ARGUMENT,
                "2 string lengths sum to 0 bytes but 6 bytes follow");

  p.dtype = TENSORFLOW__DATA_TYPE__DT_FLOAT;
  p.tensor_content.len = 0;

  /* A few bytes must not make the decoder allocate gigabytes (the element
   * fuzz target found a 3.9 GB calloc): a fill of more than
   * MC_TENSOR_FILL_MAX from fewer values than elements is refused before
   * anything is allocated, with or without values to repeat. */
  d0.size = (int64_t)(MC_TENSOR_FILL_MAX / sizeof(float)) + 1;
  MC_ASSERT_ERR(parse(&p, &t), MC_RESOURCE_EXHAUSTED,
                "from 0 values in float_val");
  p.n_float_val = 1;
  MC_ASSERT_ERR(parse(&p, &t), MC_RESOURCE_EXHAUSTED,
                "from 1 values in float_val");
  /* ... and tensor_content must match the shape before allocation. */
  p.n_float_val = 0;
  p.tensor_content.len = 12;
  MC_ASSERT_ERR(parse(&p, &t), MC_INVALID_ARGUMENT,
                "tensor_content is 12 bytes");
  p.tensor_content.len = 0;
  /* A fill up to the limit still works (TensorFlow's broadcast). */
  d0.size = 1 << 20;
  p.n_float_val = 1;
  MC_ASSERT_OK(parse(&p, &t));
  assert_int_equal(mc_tensor_num_elements(t), 1 << 20);
  assert_true(((const float *)mc_tensor_data(t))[(1 << 20) - 1] == 1.0f);
  mc_tensor_free(t);
  p.n_float_val = 0;
  d0.size = 2;

  uint8_t junk[3] = {0xff, 0xff, 0xff};
  MC_ASSERT_ERR(mc_tensor_from_proto_bytes(junk, 3, &t), MC_INVALID_ARGUMENT,
                "3 bytes do not decode");
}

/* Parses a TensorProto of dtype string, shape [n], with the given
 * tensor_content. */
static mc_code parse_string_content(int64_t n, const char *content, size_t len,
                                    mc_tensor **t) {
  Tensorflow__TensorProto p = TENSORFLOW__TENSOR_PROTO__INIT;
  Tensorflow__TensorShapeProto shape = TENSORFLOW__TENSOR_SHAPE_PROTO__INIT;
  Tensorflow__TensorShapeProto__Dim d0 =
      TENSORFLOW__TENSOR_SHAPE_PROTO__DIM__INIT;
  Tensorflow__TensorShapeProto__Dim *dimv[1] = {&d0};
  d0.size = n;
  shape.n_dim = 1;
  shape.dim = dimv;
  p.tensor_shape = &shape;
  p.dtype = TENSORFLOW__DATA_TYPE__DT_STRING;
  p.tensor_content.data = (uint8_t *)content;
  p.tensor_content.len = len;
  return parse(&p, t);
}

/* TensorFlow's AsProtoTensorContent (its RecvTensor and RunStep replies)
 * writes string tensors into tensor_content as port::EncodeStringList does:
 * every length as a varint32, then the bytes back to back. */
static void strings_in_tensor_content(void **state) {
  (void)state;
  mc_tensor *t;
  static const char three[] = "\x02\x00\x03"
                              "ab"
                              "xyz";
  MC_ASSERT_OK(parse_string_content(3, three, sizeof three - 1, &t));
  size_t l;
  assert_memory_equal(mc_tensor_string(t, 0, &l), "ab", 2);
  assert_int_equal(l, 2);
  mc_tensor_string(t, 1, &l);
  assert_int_equal(l, 0);
  assert_memory_equal(mc_tensor_string(t, 2, &l), "xyz", 3);
  assert_int_equal(l, 3);
  mc_tensor_free(t);

  /* A 300-byte string has a two-byte length (0xac 0x02). */
  char big[2 + 300];
  big[0] = (char)0xac;
  big[1] = 0x02;
  memset(big + 2, 'q', 300);
  MC_ASSERT_OK(parse_string_content(1, big, sizeof big, &t));
  assert_int_equal(mc_tensor_num_elements(t), 1);
  assert_memory_equal(mc_tensor_string(t, 0, &l), big + 2, 300);
  assert_int_equal(l, 300);
  mc_tensor_free(t);

  MC_ASSERT_ERR(parse_string_content(3, "\x02\x00", 2, &t), MC_INVALID_ARGUMENT,
                "tensor_content is 2 bytes, too few for the 3 string lengths");
  MC_ASSERT_ERR(parse_string_content(1,
                                     "\x05"
                                     "ab",
                                     3, &t),
                MC_INVALID_ARGUMENT,
                "1 string lengths sum to 5 bytes but 2 bytes follow them");
  MC_ASSERT_ERR(parse_string_content(1,
                                     "\x01"
                                     "ab",
                                     3, &t),
                MC_INVALID_ARGUMENT, "sum to 1 bytes but 2 bytes follow");
  /* A length that does not end, and one beyond 32 bits. */
  MC_ASSERT_ERR(parse_string_content(1, "\x80\x80", 2, &t), MC_INVALID_ARGUMENT,
                "length 0 of 1 strings is not a valid varint32");
  MC_ASSERT_ERR(parse_string_content(1, "\xff\xff\xff\xff\x1f", 5, &t),
                MC_INVALID_ARGUMENT, "not a valid varint32");
  /* Lengths that add up past 32 bits must not wrap around. */
  MC_ASSERT_ERR(parse_string_content(
                    2, "\xff\xff\xff\xff\x0f\xff\xff\xff\xff\x0f", 10, &t),
                MC_INVALID_ARGUMENT,
                "sum to 8589934590 bytes but 0 bytes follow");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(numeric_round_trip),
      cmocka_unit_test(every_dtype_round_trips),
      cmocka_unit_test(strings),
      cmocka_unit_test(equality_and_approx),
      cmocka_unit_test(bad_constructor_arguments),
      cmocka_unit_test(reads_typed_fields_and_broadcasts),
      cmocka_unit_test(bad_protos_are_rejected),
      cmocka_unit_test(strings_in_tensor_content),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
