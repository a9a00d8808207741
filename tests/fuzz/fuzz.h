/*
 * fuzz.h: shared pieces of the libFuzzer targets in tests/fuzz/.
 *
 * Each target defines LLVMFuzzerTestOneInput. Built with MC_FUZZ=ON (clang,
 * -fsanitize=fuzzer,address,undefined) it is a libFuzzer binary run by
 * ci/fuzz; in every build it is also linked with driver.c into a plain
 * program that runs the seed corpus as a ctest test (and under valgrind).
 *
 * A target fails by crashing: a sanitizer report, or mc_fuzz_fail() when a
 * property that must hold for every accepted input does not (a round trip
 * that changes the spec, an error without a message).
 */
#ifndef MC_FUZZ_H
#define MC_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include <minicluster/minicluster.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Prints the message and aborts (the fuzzer records the input). */
void mc_fuzz_fail(const char *fmt, ...) __attribute__((noreturn))
__attribute__((format(printf, 1, 2)));

#define MC_FUZZ_CHECK(cond)                                                    \
  do {                                                                         \
    if (!(cond))                                                               \
      mc_fuzz_fail("%s:%d: check failed: %s (last error %s: %s)", __FILE__,    \
                   __LINE__, #cond, mc_code_name(mc_error_last()->code),       \
                   mc_error_last()->message);                                  \
  } while (0)

/* The input as a NUL-terminated string (cut at the first NUL byte). The
 * caller frees it with free(). */
char *mc_fuzz_cstr(const uint8_t *data, size_t size);

/* A rejected input must leave `code` and a non-empty message. */
void mc_fuzz_check_error(mc_code got, mc_code want);

/* Properties of every valid spec: sorted jobs and indices, each address
 * valid, job_tasks consistent with task_indices, and equal specs after a
 * copy, a JSON round trip and a ClusterDef round trip. */
void mc_fuzz_check_spec(const mc_cluster_spec *spec);

/* 1 when the bytes are a TensorProto whose shape declares more than 2^20
 * elements. A TensorProto may give a shape and one value to repeat, so a
 * small input can ask for a large tensor: filling it is correct (up to
 * MC_TENSOR_FILL_MAX) but slow, so targets skip such inputs. */
int mc_fuzz_tensor_too_big(const uint8_t *data, size_t size);

#endif
