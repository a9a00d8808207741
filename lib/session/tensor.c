/* Tensors: construction, accessors, comparison and TensorProto conversion. */
#include "session/tensor.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pb.h"
#include "core/status.h"

typedef struct mc_tstr {
  char *p; /* NUL-terminated, malloc'ed; NULL means "" */
  size_t len;
} mc_tstr;

struct mc_tensor {
  atomic_int refs;
  mc_dtype dtype;
  int rank;
  int64_t dims[MC_TENSOR_MAX_DIMS];
  int64_t n;     /* number of elements */
  size_t nbytes; /* numeric: n * element size; strings: n * sizeof(mc_tstr) */
  void *data;    /* numeric elements, or an mc_tstr array */
};

const char *mc_dtype_name(mc_dtype dtype) {
  switch (dtype) {
  case MC_DT_FLOAT:
    return "float";
  case MC_DT_DOUBLE:
    return "double";
  case MC_DT_INT32:
    return "int32";
  case MC_DT_INT64:
    return "int64";
  case MC_DT_BOOL:
    return "bool";
  case MC_DT_STRING:
    return "string";
  default:
    return "invalid";
  }
}

size_t mc_dtype_size(mc_dtype dtype) {
  switch (dtype) {
  case MC_DT_FLOAT:
  case MC_DT_INT32:
    return 4;
  case MC_DT_DOUBLE:
  case MC_DT_INT64:
    return 8;
  case MC_DT_BOOL:
    return 1;
  default:
    return 0;
  }
}

static int dtype_supported(mc_dtype dtype) {
  return mc_dtype_size(dtype) > 0 || dtype == MC_DT_STRING;
}

const char *mc__shape_str(const int64_t *dims, int rank, char *buf,
                          size_t size) {
  size_t off = 0;
  off += (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < rank && off < size; i++)
    off += (size_t)snprintf(buf + off, size - off, "%s%lld", i ? "," : "",
                            (long long)dims[i]);
  if (off < size)
    snprintf(buf + off, size - off, "]");
  return buf;
}

const char *mc__tensor_shape_str(const mc_tensor *t, char *buf, size_t size) {
  return mc__shape_str(t->dims, t->rank, buf, size);
}

/* Validates a shape and computes its element count. */
static mc_code shape_elements(const int64_t *dims, int rank, int64_t *n) {
  if (rank < 0 || rank > MC_TENSOR_MAX_DIMS)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "tensor rank %d out of range (0..%d)", rank,
                         MC_TENSOR_MAX_DIMS);
  if (rank > 0 && dims == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "tensor of rank %d needs dims (got NULL)", rank);
  int64_t count = 1;
  for (int i = 0; i < rank; i++) {
    if (dims[i] < 0)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "tensor dimension %d is %lld (must be >= 0)", i,
                           (long long)dims[i]);
    if (dims[i] > 0 && count > (INT64_MAX / 16) / dims[i])
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "tensor shape has too many elements (dimension %d "
                           "is %lld)",
                           i, (long long)dims[i]);
    count *= dims[i];
  }
  *n = count;
  return MC_OK;
}

static mc_code tensor_alloc(mc_tensor **out, mc_dtype dtype,
                            const int64_t *dims, int rank, int zero) {
  *out = NULL;
  if (!dtype_supported(dtype))
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "unsupported tensor dtype %d (expected float, "
                         "double, int32, int64, bool or string)",
                         (int)dtype);
  int64_t n = 0;
  mc_code rc = shape_elements(dims, rank, &n);
  if (rc != MC_OK)
    return rc;
  size_t esize = dtype == MC_DT_STRING ? sizeof(mc_tstr) : mc_dtype_size(dtype);
  if ((uint64_t)n > SIZE_MAX / esize)
    return mc__error_set(MC_RESOURCE_EXHAUSTED,
                         "tensor of %lld elements is too large", (long long)n);
  mc_tensor *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory for a tensor");
  atomic_init(&t->refs, 1);
  t->dtype = dtype;
  t->rank = rank;
  for (int i = 0; i < rank; i++)
    t->dims[i] = dims[i];
  t->n = n;
  t->nbytes = (size_t)n * esize;
  t->data = dtype == MC_DT_STRING ? calloc(t->nbytes ? t->nbytes : 1, 1)
                                  : mc__tensor_buf_alloc(t->nbytes, zero);
  if (t->data == NULL) {
    free(t);
    return mc__error_set(MC_RESOURCE_EXHAUSTED,
                         "out of memory for a tensor of %zu bytes",
                         (size_t)n * esize);
  }
  *out = t;
  return MC_OK;
}

mc_code mc__tensor_alloc(mc_tensor **out, mc_dtype dtype, const int64_t *dims,
                         int rank) {
  return tensor_alloc(out, dtype, dims, rank, 1);
}

mc_code mc__tensor_alloc_uninit(mc_tensor **out, mc_dtype dtype,
                                const int64_t *dims, int rank) {
  return tensor_alloc(out, dtype, dims, rank, dtype == MC_DT_STRING);
}

void *mc__tensor_mutable_data(mc_tensor *t) {
  return t->data;
}

mc_code mc__tensor_set_string(mc_tensor *t, int64_t i, const char *s,
                              size_t len) {
  mc_tstr *e = (mc_tstr *)t->data + i;
  char *p = malloc(len + 1);
  if (p == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED,
                         "out of memory for a string of %zu bytes", len);
  if (len)
    memcpy(p, s, len);
  p[len] = '\0';
  free(e->p);
  e->p = p;
  e->len = len;
  return MC_OK;
}

mc_tensor *mc__tensor_ref(const mc_tensor *t) {
  mc_tensor *m = (mc_tensor *)t;
  atomic_fetch_add(&m->refs, 1);
  return m;
}

void mc_tensor_free(mc_tensor *t) {
  if (t == NULL || atomic_fetch_sub(&t->refs, 1) != 1)
    return;
  if (t->dtype == MC_DT_STRING) {
    mc_tstr *e = t->data;
    for (int64_t i = 0; i < t->n; i++)
      free(e[i].p);
    free(t->data);
  } else {
    mc__tensor_buf_free(t->data, t->nbytes);
  }
  free(t);
}

mc_code mc_tensor_new(mc_tensor **out, mc_dtype dtype, const int64_t *dims,
                      int rank, const void *data, size_t nbytes) {
  *out = NULL;
  if (dtype == MC_DT_STRING)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_tensor_new cannot build a string tensor (use "
                         "mc_tensor_new_strings)");
  mc_tensor *t;
  mc_code rc = mc__tensor_alloc(&t, dtype, dims, rank);
  if (rc != MC_OK)
    return rc;
  if (data != NULL) {
    if (nbytes != t->nbytes) {
      char sh[128];
      mc__tensor_shape_str(t, sh, sizeof sh);
      size_t want = t->nbytes;
      mc_tensor_free(t);
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "tensor data is %zu bytes but %s shape %s needs %zu",
                           nbytes, mc_dtype_name(dtype), sh, want);
    }
    memcpy(t->data, data, nbytes);
    if (dtype == MC_DT_BOOL) {
      uint8_t *b = t->data;
      for (int64_t i = 0; i < t->n; i++)
        b[i] = b[i] != 0;
    }
  }
  *out = t;
  return MC_OK;
}

mc_code mc_tensor_new_strings(mc_tensor **out, const int64_t *dims, int rank,
                              const char *const *strs, const size_t *lens) {
  *out = NULL;
  mc_tensor *t;
  mc_code rc = mc__tensor_alloc(&t, MC_DT_STRING, dims, rank);
  if (rc != MC_OK)
    return rc;
  if (t->n > 0 && strs == NULL) {
    long long n = (long long)t->n;
    mc_tensor_free(t);
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "string tensor of %lld elements needs strs (got "
                         "NULL)",
                         n);
  }
  for (int64_t i = 0; i < t->n; i++) {
    const char *s = strs[i] ? strs[i] : "";
    size_t len = lens ? lens[i] : strlen(s);
    rc = mc__tensor_set_string(t, i, s, len);
    if (rc != MC_OK) {
      mc_tensor_free(t);
      return rc;
    }
  }
  *out = t;
  return MC_OK;
}

mc_code mc_tensor_new_float(mc_tensor **out, float v) {
  return mc_tensor_new(out, MC_DT_FLOAT, NULL, 0, &v, sizeof v);
}
mc_code mc_tensor_new_double(mc_tensor **out, double v) {
  return mc_tensor_new(out, MC_DT_DOUBLE, NULL, 0, &v, sizeof v);
}
mc_code mc_tensor_new_int32(mc_tensor **out, int32_t v) {
  return mc_tensor_new(out, MC_DT_INT32, NULL, 0, &v, sizeof v);
}
mc_code mc_tensor_new_int64(mc_tensor **out, int64_t v) {
  return mc_tensor_new(out, MC_DT_INT64, NULL, 0, &v, sizeof v);
}
mc_code mc_tensor_new_bool(mc_tensor **out, int v) {
  uint8_t b = v != 0;
  return mc_tensor_new(out, MC_DT_BOOL, NULL, 0, &b, sizeof b);
}
mc_code mc_tensor_new_string(mc_tensor **out, const char *s, size_t len) {
  const char *strs[1] = {s};
  return mc_tensor_new_strings(out, NULL, 0, strs, &len);
}

mc_code mc_tensor_copy(const mc_tensor *t, mc_tensor **out) {
  *out = NULL;
  if (t->dtype != MC_DT_STRING)
    return mc_tensor_new(out, t->dtype, t->dims, t->rank, t->data, t->nbytes);
  mc_tensor *c;
  mc_code rc = mc__tensor_alloc(&c, MC_DT_STRING, t->dims, t->rank);
  if (rc != MC_OK)
    return rc;
  const mc_tstr *e = t->data;
  for (int64_t i = 0; i < t->n; i++) {
    rc = mc__tensor_set_string(c, i, e[i].p ? e[i].p : "", e[i].len);
    if (rc != MC_OK) {
      mc_tensor_free(c);
      return rc;
    }
  }
  *out = c;
  return MC_OK;
}

mc_dtype mc_tensor_dtype(const mc_tensor *t) {
  return t->dtype;
}
int mc_tensor_rank(const mc_tensor *t) {
  return t->rank;
}
int64_t mc_tensor_dim(const mc_tensor *t, int i) {
  return i >= 0 && i < t->rank ? t->dims[i] : -1;
}
const int64_t *mc_tensor_dims(const mc_tensor *t) {
  return t->rank > 0 ? t->dims : NULL;
}
int64_t mc_tensor_num_elements(const mc_tensor *t) {
  return t->n;
}
const void *mc_tensor_data(const mc_tensor *t) {
  return t->dtype == MC_DT_STRING ? NULL : t->data;
}
size_t mc_tensor_byte_size(const mc_tensor *t) {
  return t->dtype == MC_DT_STRING ? 0 : t->nbytes;
}
const char *mc_tensor_string(const mc_tensor *t, int64_t i, size_t *len) {
  if (t->dtype != MC_DT_STRING || i < 0 || i >= t->n)
    return NULL;
  const mc_tstr *e = (const mc_tstr *)t->data + i;
  if (len)
    *len = e->len;
  return e->p ? e->p : "";
}

int mc__tensor_same_shape(const mc_tensor *a, const mc_tensor *b) {
  if (a->rank != b->rank)
    return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i])
      return 0;
  return 1;
}

static int compare(const mc_tensor *a, const mc_tensor *b, double tol,
                   int approx) {
  if (a->dtype != b->dtype || !mc__tensor_same_shape(a, b))
    return 0;
  switch (a->dtype) {
  case MC_DT_STRING:
    for (int64_t i = 0; i < a->n; i++) {
      size_t la, lb;
      const char *sa = mc_tensor_string(a, i, &la);
      const char *sb = mc_tensor_string(b, i, &lb);
      if (la != lb || memcmp(sa, sb, la) != 0)
        return 0;
    }
    return 1;
  case MC_DT_FLOAT: {
    const float *x = a->data, *y = b->data;
    for (int64_t i = 0; i < a->n; i++)
      if (approx ? !(fabs((double)x[i] - (double)y[i]) <= tol) : x[i] != y[i])
        return 0;
    return 1;
  }
  case MC_DT_DOUBLE: {
    const double *x = a->data, *y = b->data;
    for (int64_t i = 0; i < a->n; i++)
      if (approx ? !(fabs(x[i] - y[i]) <= tol) : x[i] != y[i])
        return 0;
    return 1;
  }
  default:
    return memcmp(a->data, b->data, a->nbytes) == 0;
  }
}

int mc_tensor_equal(const mc_tensor *a, const mc_tensor *b) {
  return compare(a, b, 0, 0);
}

int mc_tensor_approx_equal(const mc_tensor *a, const mc_tensor *b, double tol) {
  return compare(a, b, tol, 1);
}

/* ---- TensorProto conversion ---- */

/* Copies `count` typed values into t, converting each with CONV, and fills
 * the rest with the last value (TensorFlow's rule); zeros when count is 0. */
#define FILL_FROM_VALS(CTYPE, vals, count, CONV)                               \
  do {                                                                         \
    CTYPE *dst_ = t->data;                                                     \
    for (int64_t i_ = 0; i_ < t->n; i_++) {                                    \
      if ((count) == 0)                                                        \
        break;                                                                 \
      size_t k_ = (size_t)i_ < (count) ? (size_t)i_ : (count)-1;               \
      dst_[i_] = (CTYPE)CONV((vals)[k_]);                                      \
    }                                                                          \
  } while (0)

#define AS_IS(x) (x)
#define AS_BOOL(x) ((x) != 0)

static size_t typed_count(const Tensorflow__TensorProto *p, mc_dtype dtype) {
  switch (dtype) {
  case MC_DT_FLOAT:
    return p->n_float_val;
  case MC_DT_DOUBLE:
    return p->n_double_val;
  case MC_DT_INT32:
    return p->n_int_val;
  case MC_DT_INT64:
    return p->n_int64_val;
  case MC_DT_BOOL:
    return p->n_bool_val;
  case MC_DT_STRING:
    return p->n_string_val;
  default:
    return 0;
  }
}

static const char *typed_field(mc_dtype dtype) {
  switch (dtype) {
  case MC_DT_FLOAT:
    return "float_val";
  case MC_DT_DOUBLE:
    return "double_val";
  case MC_DT_INT32:
    return "int_val";
  case MC_DT_INT64:
    return "int64_val";
  case MC_DT_BOOL:
    return "bool_val";
  default:
    return "string_val";
  }
}

/* Reads a varint of at most 32 bits (TensorFlow's GetVarint32) at *pos. */
static int get_varint32(const uint8_t *b, size_t len, size_t *pos,
                        uint32_t *out) {
  uint32_t v = 0;
  for (int shift = 0; shift <= 28 && *pos < len; shift += 7) {
    uint8_t byte = b[(*pos)++];
    if (shift == 28 && byte > 0x0f)
      return 0;
    v |= (uint32_t)(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *out = v;
      return 1;
    }
  }
  return 0;
}

/* String tensors in tensor_content, as TensorFlow's AsProtoTensorContent
 * writes them (port::EncodeStringList): the n lengths as varints, then the
 * n strings back to back, nothing after. */
static mc_code strings_from_content(mc_tensor *t, const uint8_t *b,
                                    size_t len) {
  size_t pos = 0;
  uint64_t total = 0;
  uint32_t *sizes = malloc((size_t)(t->n > 0 ? t->n : 1) * sizeof *sizes);
  if (sizes == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED,
                         "out of memory for %lld string lengths",
                         (long long)t->n);
  mc_code rc = MC_OK;
  for (int64_t i = 0; i < t->n; i++) {
    if (!get_varint32(b, len, &pos, &sizes[i])) {
      rc = mc__error_set(MC_INVALID_ARGUMENT,
                         "TensorProto tensor_content: length %lld of %lld "
                         "strings is not a valid varint32 (at byte %zu of %zu)",
                         (long long)i, (long long)t->n, pos, len);
      goto done;
    }
    total += sizes[i];
  }
  if (total != len - pos) {
    rc = mc__error_set(MC_INVALID_ARGUMENT,
                       "TensorProto tensor_content: %lld string lengths sum "
                       "to %llu bytes but %zu bytes follow them",
                       (long long)t->n, (unsigned long long)total, len - pos);
    goto done;
  }
  for (int64_t i = 0; i < t->n && rc == MC_OK; i++) {
    rc = mc__tensor_set_string(t, i, (const char *)b + pos, sizes[i]);
    pos += sizes[i];
  }
done:
  free(sizes);
  return rc;
}

mc_code mc__tensor_from_proto(const Tensorflow__TensorProto *p,
                              mc_tensor **out) {
  *out = NULL;
  mc_dtype dtype = (mc_dtype)p->dtype;
  if (!dtype_supported(dtype))
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "TensorProto has unsupported dtype %d (expected "
                         "DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64, DT_BOOL or "
                         "DT_STRING)",
                         (int)p->dtype);
  int64_t dims[MC_TENSOR_MAX_DIMS];
  int rank = 0;
  if (p->tensor_shape != NULL) {
    if (p->tensor_shape->unknown_rank)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "TensorProto has a shape of unknown rank");
    if (p->tensor_shape->n_dim > MC_TENSOR_MAX_DIMS)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "TensorProto has rank %zu (at most %d supported)",
                           p->tensor_shape->n_dim, MC_TENSOR_MAX_DIMS);
    rank = (int)p->tensor_shape->n_dim;
    for (int i = 0; i < rank; i++)
      dims[i] = p->tensor_shape->dim[i]->size;
  }
  /* Checked before anything is allocated: the proto may come from the
   * network, and its shape alone must not make us allocate. */
  int64_t n = 0;
  if (shape_elements(dims, rank, &n) != MC_OK)
    return mc__error_prefix("TensorProto: ");
  size_t esize = dtype == MC_DT_STRING ? sizeof(mc_tstr) : mc_dtype_size(dtype);
  uint64_t need = (uint64_t)n * esize; /* n < INT64_MAX / 16 */
  char sh[128];
  if (p->tensor_content.len > 0 && dtype == MC_DT_STRING) {
    /* Every string has a length of at least one byte in front: checked
     * before the n string slots are allocated. */
    if ((uint64_t)n > p->tensor_content.len) {
      mc__shape_str(dims, rank, sh, sizeof sh);
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "TensorProto tensor_content is %zu bytes, too few "
                           "for the %lld string lengths of shape %s",
                           p->tensor_content.len, (long long)n, sh);
    }
  } else if (p->tensor_content.len > 0) {
    if (p->tensor_content.len != need) {
      mc__shape_str(dims, rank, sh, sizeof sh);
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "TensorProto tensor_content is %zu bytes but %s "
                           "shape %s needs %llu",
                           p->tensor_content.len, mc_dtype_name(dtype), sh,
                           (unsigned long long)need);
    }
  } else if (typed_count(p, dtype) < (uint64_t)n && need > MC_TENSOR_FILL_MAX) {
    /* Fewer values than elements: TensorFlow repeats the last one (or
     * fills zeros), so a few bytes could ask for gigabytes. */
    mc__shape_str(dims, rank, sh, sizeof sh);
    return mc__error_set(MC_RESOURCE_EXHAUSTED,
                         "TensorProto fills a %s tensor of shape %s (%llu "
                         "bytes) from %zu values in %s; at most %u MiB may "
                         "be filled from fewer values than elements",
                         mc_dtype_name(dtype), sh, (unsigned long long)need,
                         typed_count(p, dtype), typed_field(dtype),
                         (unsigned)(MC_TENSOR_FILL_MAX >> 20));
  }
  mc_tensor *t;
  mc_code rc = mc__tensor_alloc(&t, dtype, dims, rank);
  if (rc != MC_OK)
    return mc__error_prefix("TensorProto: ");
  if (p->tensor_content.len > 0 && dtype == MC_DT_STRING) {
    if ((rc = strings_from_content(t, p->tensor_content.data,
                                   p->tensor_content.len)) != MC_OK) {
      mc_tensor_free(t);
      return rc;
    }
    *out = t;
    return MC_OK;
  }
  if (p->tensor_content.len > 0) {
    memcpy(t->data, p->tensor_content.data, t->nbytes);
    if (dtype == MC_DT_BOOL) {
      uint8_t *b = t->data;
      for (int64_t i = 0; i < t->n; i++)
        b[i] = b[i] != 0;
    }
    *out = t;
    return MC_OK;
  }
  size_t count = typed_count(p, dtype);
  if (count > (uint64_t)t->n) {
    mc__tensor_shape_str(t, sh, sizeof sh);
    mc_tensor_free(t);
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "TensorProto has %zu values in %s but shape %s holds "
                         "%lld elements",
                         count, typed_field(dtype), sh, (long long)n);
  }
  switch (dtype) {
  case MC_DT_FLOAT:
    FILL_FROM_VALS(float, p->float_val, count, AS_IS);
    break;
  case MC_DT_DOUBLE:
    FILL_FROM_VALS(double, p->double_val, count, AS_IS);
    break;
  case MC_DT_INT32:
    FILL_FROM_VALS(int32_t, p->int_val, count, AS_IS);
    break;
  case MC_DT_INT64:
    FILL_FROM_VALS(int64_t, p->int64_val, count, AS_IS);
    break;
  case MC_DT_BOOL:
    FILL_FROM_VALS(uint8_t, p->bool_val, count, AS_BOOL);
    break;
  default:
    for (int64_t i = 0; i < t->n && count > 0; i++) {
      size_t k = (size_t)i < count ? (size_t)i : count - 1;
      rc = mc__tensor_set_string(t, i, (const char *)p->string_val[k].data,
                                 p->string_val[k].len);
      if (rc != MC_OK) {
        mc_tensor_free(t);
        return rc;
      }
    }
  }
  *out = t;
  return MC_OK;
}

mc_code mc__tensor_to_proto(const mc_tensor *t, Tensorflow__TensorProto **out) {
  *out = NULL;
  Tensorflow__TensorProto *p = malloc(sizeof(*p));
  Tensorflow__TensorShapeProto *shape = malloc(sizeof(*shape));
  if (p == NULL || shape == NULL) {
    free(p);
    free(shape);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory for a proto");
  }
  tensorflow__tensor_proto__init(p);
  tensorflow__tensor_shape_proto__init(shape);
  p->dtype = (Tensorflow__DataType)t->dtype;
  p->tensor_shape = shape;
  if (t->rank > 0) {
    shape->dim = calloc((size_t)t->rank, sizeof(*shape->dim));
    if (shape->dim == NULL)
      goto oom;
    for (int i = 0; i < t->rank; i++) {
      Tensorflow__TensorShapeProto__Dim *d = malloc(sizeof(*d));
      if (d == NULL)
        goto oom;
      tensorflow__tensor_shape_proto__dim__init(d);
      d->size = t->dims[i];
      shape->dim[i] = d;
      shape->n_dim = (size_t)i + 1;
    }
  }
  if (t->dtype == MC_DT_STRING) {
    if (t->n > 0) {
      p->string_val = calloc((size_t)t->n, sizeof(*p->string_val));
      if (p->string_val == NULL)
        goto oom;
      const mc_tstr *e = t->data;
      for (int64_t i = 0; i < t->n; i++) {
        uint8_t *b = malloc(e[i].len ? e[i].len : 1);
        if (b == NULL)
          goto oom;
        if (e[i].len)
          memcpy(b, e[i].p, e[i].len);
        p->string_val[i].data = b;
        p->string_val[i].len = e[i].len;
        p->n_string_val = (size_t)i + 1;
      }
    }
  } else if (t->nbytes > 0) {
    p->tensor_content.data = malloc(t->nbytes);
    if (p->tensor_content.data == NULL)
      goto oom;
    memcpy(p->tensor_content.data, t->data, t->nbytes);
    p->tensor_content.len = t->nbytes;
  }
  *out = p;
  return MC_OK;
oom:
  protobuf_c_message_free_unpacked(&p->base, NULL);
  return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory for a proto");
}

mc_code mc_tensor_to_proto_bytes(const mc_tensor *t, uint8_t **buf,
                                 size_t *len) {
  *buf = NULL;
  *len = 0;
  Tensorflow__TensorProto *p;
  mc_code rc = mc__tensor_to_proto(t, &p);
  if (rc != MC_OK)
    return rc;
  size_t n = protobuf_c_message_get_packed_size(&p->base);
  uint8_t *b = malloc(n ? n : 1);
  if (b == NULL) {
    protobuf_c_message_free_unpacked(&p->base, NULL);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory for %zu bytes",
                         n);
  }
  protobuf_c_message_pack(&p->base, b);
  protobuf_c_message_free_unpacked(&p->base, NULL);
  *buf = b;
  *len = n;
  return MC_OK;
}

mc_code mc_tensor_from_proto_bytes(const uint8_t *buf, size_t len,
                                   mc_tensor **out) {
  *out = NULL;
  Tensorflow__TensorProto *p =
      MC_PB_UNPACK(tensorflow__tensor_proto, Tensorflow__TensorProto, len, buf);
  if (p == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "%zu bytes do not decode as a TensorProto", len);
  mc_code rc = mc__tensor_from_proto(p, out);
  tensorflow__tensor_proto__free_unpacked(p, NULL);
  return rc;
}
