/* fuzz_common.c: the checks shared by the fuzz targets (see fuzz.h). */
#include "fuzz.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor.pb-c.h"

void mc_fuzz_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

char *mc_fuzz_cstr(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (s == NULL)
    mc_fuzz_fail("out of memory");
  if (size > 0)
    memcpy(s, data, size);
  s[size] = '\0';
  return s;
}

void mc_fuzz_check_error(mc_code got, mc_code want) {
  MC_FUZZ_CHECK(got == want);
  MC_FUZZ_CHECK(mc_error_last()->code == want);
  MC_FUZZ_CHECK(mc_error_last()->message[0] != '\0');
}

static void check_job(const mc_cluster_spec *spec, const char *job) {
  const int *idx;
  size_t n, n2;
  MC_FUZZ_CHECK(mc_cluster_spec_has_job(spec, job));
  MC_FUZZ_CHECK(mc_cluster_spec_task_indices(spec, job, &idx, &n) == MC_OK);
  MC_FUZZ_CHECK(mc_cluster_spec_num_tasks(spec, job, &n2) == MC_OK && n == n2);
  for (size_t t = 0; t < n; t++) {
    const char *addr;
    MC_FUZZ_CHECK(idx[t] >= 0 && (t == 0 || idx[t - 1] < idx[t]));
    MC_FUZZ_CHECK(mc_cluster_spec_task_address(spec, job, idx[t], &addr) ==
                  MC_OK);
    char host[MC_ADDRESS_HOST_MAX];
    int port;
    MC_FUZZ_CHECK(mc_address_parse(addr, host, sizeof host, &port) == MC_OK);
  }
  const char *const *tasks;
  size_t count;
  mc_code rc = mc_cluster_spec_job_tasks(spec, job, &tasks, &count);
  if (rc == MC_RESOURCE_EXHAUSTED) {
    MC_FUZZ_CHECK(n > 0 && idx[n - 1] >= (1 << 20));
    return;
  }
  MC_FUZZ_CHECK(rc == MC_OK);
  MC_FUZZ_CHECK(count == (n ? (size_t)idx[n - 1] + 1 : 0));
  size_t present = 0;
  for (size_t i = 0; i < count; i++)
    present += tasks[i] != NULL;
  MC_FUZZ_CHECK(present == n);
}

void mc_fuzz_check_spec(const mc_cluster_spec *spec) {
  size_t njobs = mc_cluster_spec_num_jobs(spec);
  for (size_t i = 0; i < njobs; i++) {
    const char *job = mc_cluster_spec_job(spec, i);
    MC_FUZZ_CHECK(job != NULL);
    MC_FUZZ_CHECK(i == 0 || strcmp(mc_cluster_spec_job(spec, i - 1), job) < 0);
    check_job(spec, job);
  }
  MC_FUZZ_CHECK(mc_cluster_spec_job(spec, njobs) == NULL);

  mc_cluster_spec *copy, *back;
  MC_FUZZ_CHECK(mc_cluster_spec_copy(&copy, spec) == MC_OK);
  MC_FUZZ_CHECK(mc_cluster_spec_equal(spec, copy));
  mc_cluster_spec_free(copy);

  char *json;
  MC_FUZZ_CHECK(mc_cluster_spec_to_json(spec, &json) == MC_OK);
  MC_FUZZ_CHECK(mc_cluster_spec_from_json(&back, json) == MC_OK);
  MC_FUZZ_CHECK(mc_cluster_spec_equal(spec, back));
  /* to_json is canonical: the round-tripped spec prints the same text. */
  char *json2;
  MC_FUZZ_CHECK(mc_cluster_spec_to_json(back, &json2) == MC_OK);
  MC_FUZZ_CHECK(strcmp(json, json2) == 0);
  mc_free(json);
  mc_free(json2);
  mc_cluster_spec_free(back);

  uint8_t *bytes;
  size_t len;
  MC_FUZZ_CHECK(mc_cluster_spec_to_cluster_def(spec, &bytes, &len) == MC_OK);
  MC_FUZZ_CHECK(mc_cluster_spec_from_cluster_def(&back, bytes, len) == MC_OK);
  MC_FUZZ_CHECK(mc_cluster_spec_equal(spec, back));
  mc_free(bytes);
  mc_cluster_spec_free(back);
}

int mc_fuzz_tensor_too_big(const uint8_t *data, size_t size) {
  Tensorflow__TensorProto *p =
      tensorflow__tensor_proto__unpack(NULL, size, data);
  if (p == NULL)
    return 0;
  double n = 1;
  if (p->tensor_shape)
    for (size_t i = 0; i < p->tensor_shape->n_dim; i++)
      n *= (double)(p->tensor_shape->dim[i]->size > 0
                        ? p->tensor_shape->dim[i]->size
                        : 1);
  tensorflow__tensor_proto__free_unpacked(p, NULL);
  return n > (double)(1 << 20);
}
