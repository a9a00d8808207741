/* One-copy TensorProto encoding of dense numeric tensors (see
 * element_codec.h). Field numbers are TensorFlow's: TensorProto dtype = 1,
 * tensor_shape = 2, version_number = 3, tensor_content = 4;
 * TensorShapeProto dim = 2; Dim size = 1. */
#include "data/element_codec.h"

#include "core/status.h"
#include "session/tensor.h"

#include <stdlib.h>
#include <string.h>

size_t mc__varint_put(uint8_t *p, uint64_t v) {
  size_t n = 0;
  do {
    uint8_t b = v & 0x7f;
    v >>= 7;
    p[n++] = b | (v ? 0x80 : 0);
  } while (v);
  return n;
}

size_t mc__varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static int fast_dtype(mc_dtype d) {
  return d == MC_DT_FLOAT || d == MC_DT_DOUBLE || d == MC_DT_INT32 ||
         d == MC_DT_INT64;
}

/* The TensorProto of a dense numeric tensor up to and including the
 * tensor_content key and length, with room for extra bytes after it. */
static mc_code encode_head(const mc_tensor *t, size_t extra, uint8_t **buf,
                           size_t *len) {
  mc_dtype dt = mc_tensor_dtype(t);
  int rank = mc_tensor_rank(t);
  size_t shape_len = 0;
  for (int i = 0; i < rank; i++) {
    size_t dim_len = 1 + mc__varint_len((uint64_t)mc_tensor_dim(t, i));
    shape_len += 1 + mc__varint_len(dim_len) + dim_len;
  }
  size_t nbytes = mc_tensor_byte_size(t);
  size_t total = 1 + mc__varint_len((uint64_t)dt) + 1 +
                 mc__varint_len(shape_len) + shape_len + 1 +
                 mc__varint_len(nbytes) + extra;
  uint8_t *b = malloc(total);
  if (b == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory for %zu bytes",
                         total);
  size_t o = 0;
  b[o++] = 0x08; /* dtype, varint */
  o += mc__varint_put(b + o, (uint64_t)dt);
  b[o++] = 0x12; /* tensor_shape */
  o += mc__varint_put(b + o, shape_len);
  for (int i = 0; i < rank; i++) {
    uint64_t size = (uint64_t)mc_tensor_dim(t, i);
    b[o++] = 0x12; /* dim */
    o += mc__varint_put(b + o, 1 + mc__varint_len(size));
    b[o++] = 0x08; /* size */
    o += mc__varint_put(b + o, size);
  }
  b[o++] = 0x22; /* tensor_content */
  o += mc__varint_put(b + o, nbytes);
  *buf = b;
  *len = o;
  return MC_OK;
}

mc_code mc__tensor_encode(const mc_tensor *t, uint8_t **buf, size_t *len) {
  if (!fast_dtype(mc_tensor_dtype(t)))
    return mc_tensor_to_proto_bytes(t, buf, len);
  size_t nbytes = mc_tensor_byte_size(t);
  mc_code rc = encode_head(t, nbytes, buf, len);
  if (rc == MC_OK && nbytes > 0)
    memcpy(*buf + *len, mc_tensor_data(t), nbytes);
  if (rc == MC_OK)
    *len += nbytes;
  return rc;
}

mc_code mc__tensor_encode_head(const mc_tensor *t, uint8_t **head,
                               size_t *head_len, size_t *body_len) {
  if (!fast_dtype(mc_tensor_dtype(t))) {
    *body_len = 0;
    return mc_tensor_to_proto_bytes(t, head, head_len);
  }
  *body_len = mc_tensor_byte_size(t);
  return encode_head(t, 0, head, head_len);
}

/* Reads a varint at *p (before end); 0 on malformed input. */
static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    r |= (uint64_t)(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      *v = r;
      return 1;
    }
  }
  return 0;
}

/* Reads a length-delimited field body; 0 on malformed input. */
static int get_bytes(const uint8_t **p, const uint8_t *end,
                     const uint8_t **body, size_t *n) {
  uint64_t l;
  if (!get_varint(p, end, &l) || l > (uint64_t)(end - *p))
    return 0;
  *body = *p;
  *n = (size_t)l;
  *p += l;
  return 1;
}

static int parse_shape(const uint8_t *p, const uint8_t *end, int64_t *dims,
                       int *rank) {
  *rank = 0;
  while (p < end) {
    uint64_t key;
    const uint8_t *body;
    size_t n;
    if (!get_varint(&p, end, &key) || key != 0x12 ||
        !get_bytes(&p, end, &body, &n) || *rank == MC_TENSOR_MAX_DIMS)
      return 0;
    const uint8_t *q = body, *qend = body + n;
    uint64_t size = 0;
    while (q < qend) {
      uint64_t k;
      if (!get_varint(&q, qend, &k) || k != 0x08 ||
          !get_varint(&q, qend, &size))
        return 0; /* a dim name or anything else: slow path */
    }
    if (size > (uint64_t)INT64_MAX)
      return 0;
    dims[(*rank)++] = (int64_t)size;
  }
  return 1;
}

mc_code mc__tensor_alloc_head(const uint8_t *head, size_t avail, size_t total,
                              mc_tensor **out, size_t *content_off) {
  const uint8_t *p = head, *end = head + avail;
  uint64_t dtype = 0;
  int64_t dims[MC_TENSOR_MAX_DIMS];
  int rank = 0;
  *out = NULL;
  while (p < end) {
    uint64_t key, v;
    const uint8_t *body;
    size_t n;
    if (!get_varint(&p, end, &key))
      return MC_OK;
    if (key == 0x08 || key == 0x18) { /* dtype, version_number */
      if (!get_varint(&p, end, &v))
        return MC_OK;
      if (key == 0x08)
        dtype = v;
    } else if (key == 0x12) {
      if (!get_bytes(&p, end, &body, &n) ||
          !parse_shape(body, body + n, dims, &rank))
        return MC_OK;
    } else if (key == 0x22) {
      /* The content must be the last field and its length must match the
       * dtype and shape read so far. */
      if (!get_varint(&p, end, &v) || dtype > 100 ||
          !fast_dtype((mc_dtype)dtype) ||
          v != (uint64_t)(total - (size_t)(p - head)))
        return MC_OK;
      uint64_t count = 1;
      for (int i = 0; i < rank; i++) {
        if (dims[i] != 0 && count > UINT64_MAX / (uint64_t)dims[i])
          return MC_OK;
        count *= (uint64_t)dims[i];
      }
      size_t es = mc_dtype_size((mc_dtype)dtype);
      if (count > SIZE_MAX / es || count * es != v)
        return MC_OK;
      *content_off = (size_t)(p - head);
      return mc__tensor_alloc_uninit(out, (mc_dtype)dtype, dims, rank);
    } else {
      return MC_OK;
    }
  }
  return MC_OK;
}

mc_code mc__tensor_decode(const uint8_t *buf, size_t len, mc_tensor **out) {
  static const uint8_t none[1];
  if (buf == NULL) /* an empty component (protobuf-c gives NULL data) */
    buf = none, len = 0;
  const uint8_t *p = buf, *end = buf + len;
  uint64_t dtype = 0;
  int64_t dims[MC_TENSOR_MAX_DIMS];
  int rank = 0, fast = 1;
  const uint8_t *content = NULL;
  size_t content_len = 0;
  while (fast && p < end) {
    uint64_t key, v;
    const uint8_t *body;
    size_t n;
    if (!get_varint(&p, end, &key)) {
      fast = 0;
    } else if (key == 0x08 || key == 0x18) { /* dtype, version_number */
      fast = get_varint(&p, end, &v);
      if (key == 0x08)
        dtype = v;
    } else if (key == 0x12) {
      fast = get_bytes(&p, end, &body, &n) &&
             parse_shape(body, body + n, dims, &rank);
    } else if (key == 0x22) {
      fast = get_bytes(&p, end, &content, &content_len);
    } else {
      fast = 0;
    }
  }
  if (fast && dtype <= 100 && fast_dtype((mc_dtype)dtype)) {
    uint64_t count = 1;
    for (int i = 0; i < rank && fast; i++) {
      if (dims[i] != 0 && count > UINT64_MAX / (uint64_t)dims[i])
        fast = 0;
      count *= (uint64_t)dims[i];
    }
    size_t es = mc_dtype_size((mc_dtype)dtype);
    if (fast && count <= SIZE_MAX / es && count * es == content_len) {
      mc_code rc = mc__tensor_alloc_uninit(out, (mc_dtype)dtype, dims, rank);
      if (rc != MC_OK)
        return rc;
      if (content_len > 0)
        memcpy(mc__tensor_mutable_data(*out), content, content_len);
      return MC_OK;
    }
  }
  return mc_tensor_from_proto_bytes(buf, len, out);
}
