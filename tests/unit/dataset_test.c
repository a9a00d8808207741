/* Dataset pipelines: every op, serialization, registry errors. */
#include "testutil.h"

#include "core/status.h"
#include "data/dataset.h"

#include <minicluster/dataset.h>
#include <stdlib.h>

static mc_code square(void *arg, const mc_element *in, mc_element *out) {
  (void)arg;
  int64_t v = *(const int64_t *)mc_tensor_data(in->components[0]);
  mc_tensor *t;
  mc_code rc = mc_tensor_new_int64(&t, v * v);
  if (rc != MC_OK)
    return rc;
  return mc_element_take(out, &t, 1);
}

static mc_code is_even(void *arg, const mc_element *in, int *keep) {
  (void)arg;
  *keep = *(const int64_t *)mc_tensor_data(in->components[0]) % 2 == 0;
  return MC_OK;
}

static mc_code failing(void *arg, const mc_element *in, mc_element *out) {
  (void)arg;
  (void)in;
  (void)out;
  return mc__error_set(MC_ABORTED, "failing on purpose");
}

static int setup(void **state) {
  (void)state;
  if (mc_dataset_register_map("square", square, NULL) != MC_OK ||
      mc_dataset_register_filter("is_even", is_even, NULL) != MC_OK ||
      mc_dataset_register_map("failing", failing, NULL) != MC_OK)
    return -1;
  return 0;
}

/* Collects scalar int64 elements (or the first value of each) into out;
 * returns the count. */
static int collect(const mc_dataset *ds, int64_t *out, int max) {
  mc_dataset_iterator *it;
  MC_ASSERT_OK(mc_dataset_iterator_new(ds, &it));
  int n = 0;
  for (;;) {
    mc_element e = MC_ELEMENT_INIT;
    int eos = 0;
    MC_ASSERT_OK(mc_dataset_iterator_next(it, &e, &eos));
    if (eos)
      break;
    assert_true(n < max);
    out[n++] = *(const int64_t *)mc_tensor_data(e.components[0]);
    mc_element_clear(&e);
  }
  mc_dataset_iterator_free(it);
  return n;
}

static void expect(const mc_dataset *ds, const int64_t *want, int nwant) {
  int64_t got[256];
  int n = collect(ds, got, 256);
  assert_int_equal(n, nwant);
  for (int i = 0; i < n; i++)
    assert_int_equal(got[i], want[i]);
}

static void test_range(void **state) {
  (void)state;
  mc_dataset *ds;
  MC_ASSERT_OK(mc_dataset_range(&ds, 0, 5, 1));
  expect(ds, (int64_t[]){0, 1, 2, 3, 4}, 5);
  mc_dataset_free(ds);
  MC_ASSERT_OK(mc_dataset_range(&ds, 10, 0, -3));
  expect(ds, (int64_t[]){10, 7, 4, 1}, 4);
  assert_int_equal(mc__dataset_source_cardinality(ds), 4);
  mc_dataset_free(ds);
  MC_ASSERT_ERR(mc_dataset_range(&ds, 0, 5, 0), MC_INVALID_ARGUMENT,
                "step must not be 0");
}

static void test_map_filter(void **state) {
  (void)state;
  mc_dataset *ds;
  MC_ASSERT_OK(mc_dataset_range(&ds, 0, 6, 1));
  MC_ASSERT_OK(mc_dataset_filter(ds, "is_even"));
  MC_ASSERT_OK(mc_dataset_map(ds, "square"));
  expect(ds, (int64_t[]){0, 4, 16}, 3);
  /* Unregistered names fail when the step is added, not later. */
  MC_ASSERT_ERR(mc_dataset_map(ds, "cube"), MC_NOT_FOUND, "\"cube\"");
  MC_ASSERT_ERR(mc_dataset_filter(ds, "square"), MC_NOT_FOUND,
                "filter function registered under \"square\"");
  expect(ds, (int64_t[]){0, 4, 16}, 3);
  mc_dataset_free(ds);
  MC_ASSERT_ERR(mc_dataset_register_map("", square, NULL), MC_INVALID_ARGUMENT,
                "must not be empty");
}

static void test_map_error_propagates(void **state) {
  (void)state;
  mc_dataset *ds;
  MC_ASSERT_OK(mc_dataset_range(&ds, 0, 3, 1));
  MC_ASSERT_OK(mc_dataset_map(ds, "failing"));
  mc_dataset_iterator *it;
  MC_ASSERT_OK(mc_dataset_iterator_new(ds, &it));
  mc_element e = MC_ELEMENT_INIT;
  int eos = 0;
  MC_ASSERT_ERR(mc_dataset_iterator_next(it, &e, &eos), MC_ABORTED,
                "map \"failing\": failing on purpose");
  mc_dataset_iterator_free(it);
  mc_dataset_free(ds);
}

static void test_batch(void **state) {
  (void)state;
  mc_dataset *ds;
  MC_ASSERT_OK(mc_dataset_range(&ds, 0, 7, 1));
  MC_ASSERT_OK(mc_dataset_batch(ds, 3, 0));
  mc_dataset_iterator *it;
  MC_ASSERT_OK(mc_dataset_iterator_new(ds, &it));
  int64_t sizes[3];
  int nb = 0;
  for (;;) {
    mc_element e = MC_ELEMENT_INIT;
    int eos = 0;
    MC_ASSERT_OK(mc_dataset_iterator_next(it, &e, &eos));
    if (eos)
      break;
    assert_int_equal(mc_tensor_rank(e.components[0]), 1);
    sizes[nb] = mc_tensor_dim(e.components[0], 0);
    const int64_t *v = mc_tensor_data(e.components[0]);
    assert_int_equal(v[0], nb * 3);
    nb++;
    mc_element_clear(&e);
  }
  mc_dataset_iterator_free(it);
  assert_int_equal(nb, 3);
  assert_int_equal(sizes[0], 3);
  assert_int_equal(sizes[2], 1);
  mc_dataset_free(ds);

  MC_ASSERT_OK(mc_dataset_range(&ds, 0, 7, 1));
  MC_ASSERT_OK(mc_dataset_batch(ds, 3, 1));
  expect(ds, (int64_t[]){0, 3}, 2);
  MC_ASSERT_ERR(mc_dataset_batch(ds, 0, 0), MC_INVALID_ARGUMENT,
                "batch size 0");
  mc_dataset_free(ds);
}

static void test_shuffle(void **state) {
  (void)state;
  mc_dataset *a, *b;
  MC_ASSERT_OK(mc_dataset_range(&a, 0, 100, 1));
  MC_ASSERT_OK(mc_dataset_shuffle(a, 20, 42));
  MC_ASSERT_OK(mc_dataset_range(&b, 0, 100, 1));
  MC_ASSERT_OK(mc_dataset_shuffle(b, 20, 42));
  int64_t x[100], y[100];
  assert_int_equal(collect(a, x, 100), 100);
  assert_int_equal(collect(b, y, 100), 100);
  int seen[100] = {0}, moved = 0;
  for (int i = 0; i < 100; i++) {
    assert_int_equal(x[i], y[i]); /* same seed, same order */
    seen[x[i]]++;
    moved += x[i] != i;
  }
  for (int i = 0; i < 100; i++)
    assert_int_equal(seen[i], 1); /* a permutation */
  assert_true(moved > 50);
  mc_dataset_free(a);
  mc_dataset_free(b);
}

static void test_repeat_take_skip(void **state) {
  (void)state;
  mc_dataset *ds;
  MC_ASSERT_OK(mc_dataset_range(&ds, 0, 3, 1));
  MC_ASSERT_OK(mc_dataset_repeat(ds, 2));
  expect(ds, (int64_t[]){0, 1, 2, 0, 1, 2}, 6);
  mc_dataset_free(ds);
  MC_ASSERT_OK(mc_dataset_range(&ds, 0, 3, 1));
  MC_ASSERT_OK(mc_dataset_repeat(ds, -1));
  MC_ASSERT_OK(mc_dataset_skip(ds, 2));
  MC_ASSERT_OK(mc_dataset_take(ds, 5));
  expect(ds, (int64_t[]){2, 0, 1, 2, 0}, 5);
  MC_ASSERT_ERR(mc_dataset_take(ds, -2), MC_INVALID_ARGUMENT, "take count -2");
  mc_dataset_free(ds);
  /* repeat(-1) of an empty dataset ends. */
  MC_ASSERT_OK(mc_dataset_range(&ds, 0, 0, 1));
  MC_ASSERT_OK(mc_dataset_repeat(ds, -1));
  expect(ds, NULL, 0);
  mc_dataset_free(ds);
}

static void test_shard_prefetch(void **state) {
  (void)state;
  mc_dataset *ds;
  MC_ASSERT_OK(mc_dataset_range(&ds, 0, 10, 1));
  MC_ASSERT_OK(mc_dataset_shard(ds, 3, 1));
  MC_ASSERT_OK(mc_dataset_prefetch(ds, 2));
  expect(ds, (int64_t[]){1, 4, 7}, 3);
  MC_ASSERT_ERR(mc_dataset_shard(ds, 3, 3), MC_INVALID_ARGUMENT,
                "shard index 3 out of range for 3 shards");
  MC_ASSERT_ERR(mc_dataset_prefetch(ds, 0), MC_INVALID_ARGUMENT,
                "prefetch buffer_size 0");
  mc_dataset_free(ds);
  /* Freeing an iterator with a busy prefetch thread stops it. */
  MC_ASSERT_OK(mc_dataset_range(&ds, 0, 1000, 1));
  MC_ASSERT_OK(mc_dataset_prefetch(ds, 4));
  mc_dataset_iterator *it;
  MC_ASSERT_OK(mc_dataset_iterator_new(ds, &it));
  mc_element e = MC_ELEMENT_INIT;
  int eos = 0;
  MC_ASSERT_OK(mc_dataset_iterator_next(it, &e, &eos));
  mc_element_clear(&e);
  mc_dataset_iterator_free(it);
  mc_dataset_free(ds);
}

static void test_tensor_slices(void **state) {
  (void)state;
  int64_t dims[2] = {3, 2};
  int64_t vals[6] = {1, 2, 3, 4, 5, 6};
  mc_tensor *t, *s;
  MC_ASSERT_OK(mc_tensor_new(&t, MC_DT_INT64, dims, 2, vals, sizeof vals));
  const char *strs[3] = {"a", "bb", "ccc"};
  MC_ASSERT_OK(mc_tensor_new_strings(&s, dims, 1, strs, NULL));
  const mc_tensor *comps[2] = {t, s};
  mc_dataset *ds;
  MC_ASSERT_OK(mc_dataset_from_tensor_slices(&ds, comps, 2));
  mc_dataset_iterator *it;
  MC_ASSERT_OK(mc_dataset_iterator_new(ds, &it));
  for (int i = 0; i < 3; i++) {
    mc_element e = MC_ELEMENT_INIT;
    int eos = 0;
    MC_ASSERT_OK(mc_dataset_iterator_next(it, &e, &eos));
    assert_false(eos);
    assert_int_equal(e.num_components, 2);
    assert_int_equal(mc_tensor_dim(e.components[0], 0), 2);
    assert_int_equal(((const int64_t *)mc_tensor_data(e.components[0]))[1],
                     vals[i * 2 + 1]);
    assert_string_equal(mc_tensor_string(e.components[1], 0, NULL), strs[i]);
    mc_element_clear(&e);
  }
  mc_dataset_iterator_free(it);
  /* Batched slices of strings stack too. */
  MC_ASSERT_OK(mc_dataset_batch(ds, 2, 1));
  MC_ASSERT_OK(mc_dataset_iterator_new(ds, &it));
  mc_element e = MC_ELEMENT_INIT;
  int eos = 0;
  MC_ASSERT_OK(mc_dataset_iterator_next(it, &e, &eos));
  assert_int_equal(mc_tensor_dim(e.components[0], 0), 2);
  assert_int_equal(mc_tensor_dim(e.components[0], 1), 2);
  assert_string_equal(mc_tensor_string(e.components[1], 1, NULL), "bb");
  mc_element_clear(&e);
  mc_dataset_iterator_free(it);
  mc_dataset_free(ds);

  mc_tensor *scalar;
  MC_ASSERT_OK(mc_tensor_new_int64(&scalar, 3));
  const mc_tensor *bad[2] = {t, scalar};
  MC_ASSERT_ERR(mc_dataset_from_tensor_slices(&ds, bad, 2), MC_INVALID_ARGUMENT,
                "component 1 must have rank >= 1");
  mc_tensor_free(scalar);
  mc_tensor_free(t);
  mc_tensor_free(s);
}

/* A from_tensor_slices whose TensorProto asks for an int64 tensor of 2^26
 * elements (512 MiB) filled from one value: refused before allocating, with
 * the code mc_tensor_from_proto_bytes gives (the dataset_def fuzz target,
 * seed 7, expected only INVALID_ARGUMENT or NOT_FOUND here). */
static void test_def_fill_limit(void **state) {
  (void)state;
  static const char def[] = "\xa2\x06\x24" /* ops, 36 bytes */
                            "\x0a\x12"     /* op */
                            "from_tensor_slices"
                            "\x22\x0e" /* tensors[0] */
                            "\x08\x09" /* DT_INT64 */
                            "\x12\x07\x12\x05\x08\x80\x80\x80\x20" /* [2^26] */
                            "\x52\x01\x01"; /* int64_val 1 */
  mc_dataset *ds = NULL;
  MC_ASSERT_ERR(
      mc_dataset_from_def_bytes((const uint8_t *)def, sizeof def - 1, &ds),
      MC_RESOURCE_EXHAUSTED, "at most 256 MiB may be filled");
  assert_null(ds);
}

static void test_def_round_trip(void **state) {
  (void)state;
  mc_dataset *ds;
  MC_ASSERT_OK(mc_dataset_range(&ds, 0, 20, 1));
  MC_ASSERT_OK(mc_dataset_filter(ds, "is_even"));
  MC_ASSERT_OK(mc_dataset_map(ds, "square"));
  MC_ASSERT_OK(mc_dataset_skip(ds, 1));
  MC_ASSERT_OK(mc_dataset_take(ds, 3));
  uint8_t *buf;
  size_t len;
  MC_ASSERT_OK(mc_dataset_to_def_bytes(ds, &buf, &len));
  mc_dataset *back;
  MC_ASSERT_OK(mc_dataset_from_def_bytes(buf, len, &back));
  expect(back, (int64_t[]){4, 16, 36}, 3);
  mc_dataset_free(back);
  mc_dataset_free(ds);
  free(buf);
  uint8_t junk[3] = {0xff, 0xff, 0xff};
  MC_ASSERT_ERR(mc_dataset_from_def_bytes(junk, 3, &back), MC_INVALID_ARGUMENT,
                "3 bytes do not decode");
  /* A definition naming a function this process lacks. */
  Tensorflow__Data__DatasetOpDef o0 = TENSORFLOW__DATA__DATASET_OP_DEF__INIT,
                                 o1 = TENSORFLOW__DATA__DATASET_OP_DEF__INIT;
  int64_t args[3] = {0, 5, 1};
  o0.op = "range";
  o0.n_args = 3;
  o0.args = args;
  o1.op = "map";
  o1.function = "not_here";
  Tensorflow__Data__DatasetOpDef *ops[2] = {&o0, &o1};
  Tensorflow__Data__DatasetDef def = TENSORFLOW__DATA__DATASET_DEF__INIT;
  def.n_ops = 2;
  def.ops = ops;
  MC_ASSERT_ERR(mc__dataset_from_def(&def, &back), MC_NOT_FOUND,
                "\"not_here\"");
  o1.op = "explode";
  MC_ASSERT_ERR(mc__dataset_from_def(&def, &back), MC_INVALID_ARGUMENT,
                "unknown op \"explode\"");
  def.n_ops = 0;
  MC_ASSERT_ERR(mc__dataset_from_def(&def, &back), MC_INVALID_ARGUMENT,
                "no ops");
}

typedef struct splits {
  int64_t next, card, step;
} splits;

static mc_code give_split(void *arg, int64_t *b, int64_t *e, int *end) {
  splits *s = arg;
  if (s->next >= s->card) {
    *end = 1;
    return MC_OK;
  }
  *b = s->next;
  *e = s->next + s->step < s->card ? s->next + s->step : s->card;
  s->next = *e;
  return MC_OK;
}

static void test_split_mode(void **state) {
  (void)state;
  mc_dataset *ds;
  MC_ASSERT_OK(mc_dataset_range(&ds, 100, 110, 1));
  MC_ASSERT_OK(mc_dataset_map(ds, "square"));
  splits s = {4, 10, 3}; /* hand out only indices 4..9 */
  mc_dataset_iterator *it;
  MC_ASSERT_OK(mc__dataset_iterator_new_split(ds, give_split, &s, &it));
  int n = 0;
  for (;;) {
    mc_element e = MC_ELEMENT_INIT;
    int eos = 0;
    MC_ASSERT_OK(mc_dataset_iterator_next(it, &e, &eos));
    if (eos)
      break;
    int64_t v = *(const int64_t *)mc_tensor_data(e.components[0]);
    assert_int_equal(v, (104 + n) * (104 + n));
    n++;
    mc_element_clear(&e);
  }
  assert_int_equal(n, 6);
  mc_dataset_iterator_free(it);
  mc_dataset_free(ds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_range),
      cmocka_unit_test(test_map_filter),
      cmocka_unit_test(test_map_error_propagates),
      cmocka_unit_test(test_batch),
      cmocka_unit_test(test_shuffle),
      cmocka_unit_test(test_repeat_take_skip),
      cmocka_unit_test(test_shard_prefetch),
      cmocka_unit_test(test_tensor_slices),
      cmocka_unit_test(test_def_round_trip),
      cmocka_unit_test(test_def_fill_limit),
      cmocka_unit_test(test_split_mode),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
