/*
 * tensor.h: owned, immutable tensors (dtype, shape, data), shared by the
 * session API and the data service.
 *
 * A tensor is built once by one of the constructors below and never changes
 * afterwards, so one tensor may be read from any number of threads at once.
 * Every constructor returns a tensor through `**out` that the caller owns
 * and frees with mc_tensor_free(). Accessors return pointers borrowed from
 * the tensor, valid until it is freed.
 *
 * Data types use TensorFlow's DataType numbers, so converting to and from
 * tensorflow.DataType is a cast. Numeric data is stored densely in row-major
 * order in host (little-endian) byte order; bool elements take one byte
 * (0 or 1).
 */
#ifndef MINICLUSTER_TENSOR_H
#define MINICLUSTER_TENSOR_H

#include "common.h"
#include "status.h"

#include <stddef.h>
#include <stdint.h>

MC_BEGIN_DECLS

typedef enum mc_dtype {
  MC_DT_INVALID = 0,
  MC_DT_FLOAT = 1,  /* float */
  MC_DT_DOUBLE = 2, /* double */
  MC_DT_INT32 = 3,  /* int32_t */
  MC_DT_STRING = 7, /* byte strings of any length (may contain NUL) */
  MC_DT_INT64 = 9,  /* int64_t */
  MC_DT_BOOL = 10   /* uint8_t, 0 or 1 */
} mc_dtype;

/* The largest rank a tensor may have. */
#define MC_TENSOR_MAX_DIMS 8

typedef struct mc_tensor mc_tensor;

/* "float", "double", "int32", "int64", "bool", "string"; "invalid" for any
 * other value. Static string. */
MC_EXTERN const char *mc_dtype_name(mc_dtype dtype);

/* Bytes per element of a numeric dtype (4, 8, 4, 8, 1); 0 for strings and
 * unsupported values. */
MC_EXTERN size_t mc_dtype_size(mc_dtype dtype);

/* Builds a numeric tensor of the given shape by copying `nbytes` bytes from
 * `data` (row-major). `dims` holds `rank` sizes (>= 0; rank 0 is a scalar,
 * `dims` may then be NULL). `data` may be NULL to get zeros. Bool bytes are
 * normalized to 0/1.
 * Returns MC_INVALID_ARGUMENT naming the problem for a string or unknown
 * dtype, rank outside 0..8, a negative dimension, or nbytes != elements *
 * element size; MC_RESOURCE_EXHAUSTED when out of memory. */
MC_EXTERN mc_code mc_tensor_new(mc_tensor **out /* OUT: owned */,
                                mc_dtype dtype, const int64_t *dims, int rank,
                                const void *data, size_t nbytes);

/* Builds a string tensor: element i is lens[i] bytes at strs[i] (copied).
 * `lens` may be NULL for NUL-terminated strings. The number of strings is
 * the product of dims. Same errors as mc_tensor_new. */
MC_EXTERN mc_code mc_tensor_new_strings(mc_tensor **out /* OUT: owned */,
                                        const int64_t *dims, int rank,
                                        const char *const *strs,
                                        const size_t *lens);

/* Scalars (rank 0). Return MC_OK or MC_RESOURCE_EXHAUSTED. */
MC_EXTERN mc_code mc_tensor_new_float(mc_tensor **out /* OUT */, float v);
MC_EXTERN mc_code mc_tensor_new_double(mc_tensor **out /* OUT */, double v);
MC_EXTERN mc_code mc_tensor_new_int32(mc_tensor **out /* OUT */, int32_t v);
MC_EXTERN mc_code mc_tensor_new_int64(mc_tensor **out /* OUT */, int64_t v);
MC_EXTERN mc_code mc_tensor_new_bool(mc_tensor **out /* OUT */, int v);
/* A scalar string of len bytes (copied). */
MC_EXTERN mc_code mc_tensor_new_string(mc_tensor **out /* OUT */, const char *s,
                                       size_t len);

/* A deep copy of t, owned by the caller. MC_RESOURCE_EXHAUSTED when out of
 * memory. */
MC_EXTERN mc_code mc_tensor_copy(const mc_tensor *t,
                                 mc_tensor **out /* OUT: owned */);

/* Releases a tensor returned by any mc_tensor_ or mc_session_ function.
 * NULL is a no-op. */
MC_EXTERN void mc_tensor_free(mc_tensor *t);

MC_EXTERN mc_dtype mc_tensor_dtype(const mc_tensor *t);
MC_EXTERN int mc_tensor_rank(const mc_tensor *t);
/* Size of dimension i; -1 when i is out of range. */
MC_EXTERN int64_t mc_tensor_dim(const mc_tensor *t, int i);
/* The rank sizes (borrowed; may be NULL for a scalar). */
MC_EXTERN const int64_t *mc_tensor_dims(const mc_tensor *t);
/* Number of elements (1 for a scalar). */
MC_EXTERN int64_t mc_tensor_num_elements(const mc_tensor *t);
/* The element bytes of a numeric tensor (borrowed), NULL for a string
 * tensor; mc_tensor_byte_size() bytes long. */
MC_EXTERN const void *mc_tensor_data(const mc_tensor *t);
MC_EXTERN size_t mc_tensor_byte_size(const mc_tensor *t);
/* String element i (borrowed, NUL-terminated after *len bytes); NULL when t
 * is not a string tensor or i is out of range. len may be NULL. */
MC_EXTERN const char *mc_tensor_string(const mc_tensor *t, int64_t i,
                                       size_t *len /* OUT, optional */);

/* 1 when a and b have the same dtype, shape and elements (floating point
 * compared with ==, so NaN differs from itself), else 0. */
MC_EXTERN int mc_tensor_equal(const mc_tensor *a, const mc_tensor *b);
/* Like mc_tensor_equal, but float and double elements may differ by at most
 * tol (absolute). */
MC_EXTERN int mc_tensor_approx_equal(const mc_tensor *a, const mc_tensor *b,
                                     double tol);

/* Serializes t as a tensorflow.TensorProto (dtype, tensor_shape, and
 * tensor_content, or string_val for strings). *buf is malloc'ed and owned by
 * the caller (free()). MC_RESOURCE_EXHAUSTED when out of memory. */
MC_EXTERN mc_code mc_tensor_to_proto_bytes(const mc_tensor *t,
                                           uint8_t **buf /* OUT: free() */,
                                           size_t *len /* OUT */);

/* Parses a serialized tensorflow.TensorProto, reading tensor_content or the
 * typed *_val fields (fewer values than elements repeat the last one, as in
 * TensorFlow; none fill zeros). Strings may be in string_val or, as
 * TensorFlow's C++ side writes them, in tensor_content (the lengths as
 * varint32s, then the bytes). Returns MC_INVALID_ARGUMENT naming the
 * problem for bytes that do not decode, an unsupported dtype, a bad shape,
 * or a content size that does not match the shape (for strings: lengths
 * that do not add up to the bytes after them); MC_RESOURCE_EXHAUSTED
 * when such a fill would expand to more than 256 MiB (refused before any
 * allocation: a few bytes must not allocate gigabytes) or memory is short.
 * Thread-safe. */
MC_EXTERN mc_code mc_tensor_from_proto_bytes(const uint8_t *buf, size_t len,
                                             mc_tensor **out /* OUT: owned */);

MC_END_DECLS

#endif /* MINICLUSTER_TENSOR_H */
