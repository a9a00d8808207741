/* Internal tensor helpers: building tensors in place, sharing them by
 * reference count, and converting to and from tensorflow.TensorProto. */
#ifndef MC_SESSION_TENSOR_H
#define MC_SESSION_TENSOR_H

#include <minicluster/tensor.h>

#include "tensor.pb-c.h"

/* A zero-filled numeric tensor, or a tensor of empty strings, that the
 * caller fills through mc__tensor_mutable_data / mc__tensor_set_string
 * before sharing it. Same errors as mc_tensor_new. */
mc_code mc__tensor_alloc(mc_tensor **out, mc_dtype dtype, const int64_t *dims,
                         int rank);

/* As mc__tensor_alloc, but a numeric tensor's buffer is not zeroed: for a
 * caller that overwrites all of it before sharing the tensor. */
mc_code mc__tensor_alloc_uninit(mc_tensor **out, mc_dtype dtype,
                                const int64_t *dims, int rank);

/* Buffers of numeric tensors (tensor_buffers.c): large ones are recycled
 * through a small bounded cache instead of going back to malloc, whose
 * trimming makes every reuse page-fault. zero: fill with zeros. NULL when
 * out of memory. Thread-safe. */
void *mc__tensor_buf_alloc(size_t nbytes, int zero);
/* Releases a buffer of mc__tensor_buf_alloc(nbytes); NULL is a no-op. */
void mc__tensor_buf_free(void *p, size_t nbytes);
/* Buffers and bytes held by the cache now (for tests). */
void mc__tensor_buf_stats(size_t *count /* OUT */, size_t *bytes /* OUT */);

/* The element buffer of a tensor still being built (numeric dtypes). */
void *mc__tensor_mutable_data(mc_tensor *t);

/* Sets string element i of a tensor still being built (copies len bytes).
 * MC_RESOURCE_EXHAUSTED when out of memory. */
mc_code mc__tensor_set_string(mc_tensor *t, int64_t i, const char *s,
                              size_t len);

/* Another reference to t (thread-safe, atomic); release each reference with
 * mc_tensor_free(). Tensors are immutable, so sharing needs no copy. */
mc_tensor *mc__tensor_ref(const mc_tensor *t);

/* 1 when a and b have the same rank and dimensions. */
int mc__tensor_same_shape(const mc_tensor *a, const mc_tensor *b);

/* Writes "[2,3]" (or "[]" for a scalar) into buf. Returns buf. */
const char *mc__tensor_shape_str(const mc_tensor *t, char *buf, size_t size);

/* Writes "[2,3]" for rank sizes dims. Returns buf. */
/* The most a TensorProto with fewer values than elements (filled by
 * repeating the last value, or with zeros) may expand to when decoded;
 * larger ones are refused with RESOURCE_EXHAUSTED before any allocation.
 * A proto that carries every value is bounded by its own size. */
#define MC_TENSOR_FILL_MAX ((uint64_t)256 << 20)

const char *mc__shape_str(const int64_t *dims, int rank, char *buf,
                          size_t size);

/* Converts a decoded TensorProto. Errors as mc_tensor_from_proto_bytes. */
mc_code mc__tensor_from_proto(const Tensorflow__TensorProto *p,
                              mc_tensor **out);

/* A malloc'ed TensorProto (tensor_content, or string_val for strings) that
 * the caller frees with protobuf_c_message_free_unpacked(&(*out)->base,
 * NULL). MC_RESOURCE_EXHAUSTED when out of memory. */
mc_code mc__tensor_to_proto(const mc_tensor *t, Tensorflow__TensorProto **out);

#endif
