/* Large tensor buffers are recycled through a bounded cache: a recycled
 * buffer is zeroed for mc__tensor_alloc, small buffers bypass the cache,
 * and the cache never holds more than its bounds. */
#include "testutil.h"

#include "session/tensor.h"

#include <stdlib.h>
#include <string.h>

static mc_tensor *big(int64_t n, int zero) {
  mc_tensor *t;
  if (zero)
    MC_ASSERT_OK(mc__tensor_alloc(&t, MC_DT_FLOAT, &n, 1));
  else
    MC_ASSERT_OK(mc__tensor_alloc_uninit(&t, MC_DT_FLOAT, &n, 1));
  return t;
}

static void test_recycled_and_zeroed(void **state) {
  (void)state;
  size_t count0, bytes0, count, bytes;
  mc__tensor_buf_stats(&count0, &bytes0);
  mc_tensor *t = big(1 << 18, 1); /* 1 MiB */
  memset(mc__tensor_mutable_data(t), 0xff, 1 << 20);
  mc_tensor_free(t);
  mc__tensor_buf_stats(&count, &bytes);
  assert_int_equal(count, count0 + 1);
  assert_int_equal(bytes, bytes0 + (1 << 20));
  /* Taken back out, and zero-filled although the last user wrote 0xff. */
  t = big(1 << 18, 1);
  mc__tensor_buf_stats(&count, &bytes);
  assert_int_equal(count, count0);
  const float *f = mc_tensor_data(t);
  for (int i = 0; i < 1 << 18; i++)
    if (f[i] != 0.0f)
      fail_msg("recycled buffer not zeroed at %d", i);
  mc_tensor_free(t);
  /* Small buffers are malloc's business. */
  mc__tensor_buf_stats(&count0, &bytes0);
  mc_tensor *s = big(16, 1);
  mc_tensor_free(s);
  mc__tensor_buf_stats(&count, &bytes);
  assert_int_equal(count, count0);
  /* A string tensor never goes through the cache. */
  int64_t n = 20000;
  MC_ASSERT_OK(mc__tensor_alloc(&s, MC_DT_STRING, &n, 1));
  mc_tensor_free(s);
  mc__tensor_buf_stats(&count, &bytes);
  assert_int_equal(count, count0);
}

static void test_bounded(void **state) {
  (void)state;
  mc_tensor *t[40];
  for (int i = 0; i < 40; i++)
    t[i] = big(1 << 20, 0); /* 4 MiB each: 160 MiB in all */
  for (int i = 0; i < 40; i++)
    mc_tensor_free(t[i]);
  size_t count, bytes;
  mc__tensor_buf_stats(&count, &bytes);
  assert_true(bytes <= (32u << 20));
  assert_true(count <= 16);
  assert_true(count >= 1);
  /* Many sizes: still bounded, and the newest size is kept. */
  for (int i = 0; i < 40; i++)
    t[i] = big(20000 + 1024 * i, 0);
  for (int i = 0; i < 40; i++)
    mc_tensor_free(t[i]);
  mc__tensor_buf_stats(&count, &bytes);
  assert_true(bytes <= (32u << 20));
  assert_true(count <= 16);
  size_t before = count;
  mc_tensor *last = big(20000 + 1024 * 39, 0);
  mc__tensor_buf_stats(&count, &bytes);
  assert_int_equal(count, before - 1);
  mc_tensor_free(last);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_recycled_and_zeroed),
      cmocka_unit_test(test_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
