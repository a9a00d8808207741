/* GetElementResponse without protobuf-c (see element_wire.h). Field
 * numbers are TensorFlow's: GetElementResponse end_of_sequence = 2,
 * skip_task = 4, uncompressed = 5, element_index = 6, minicluster's
 * more_elements = 100; UncompressedElement components = 1. */
#include "data/element_wire.h"

#include "core/pb.h"
#include "core/status.h"
#include "data/element_codec.h"
#include "data_worker.pb-c.h"
#include "session/tensor.h"

#include <stdlib.h>
#include <string.h>

/* Header bytes of a TensorProto looked at before its content: dtype and a
 * shape of up to MC_TENSOR_MAX_DIMS dimensions take far less. */
#define HEAD_PEEK 256

void mc__wire_element_clear(mc__wire_element *we) {
  for (size_t i = 0; i < we->n; i++) {
    free(we->c[i].head);
    mc_tensor_free(we->c[i].body);
  }
  free(we->c);
  memset(we, 0, sizeof *we);
}

mc_code mc__wire_element_encode(const mc_element *e, mc__wire_element *out) {
  memset(out, 0, sizeof *out);
  size_t n = e->num_components;
  out->c = calloc(n > 0 ? n : 1, sizeof *out->c);
  if (out->c == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  for (size_t i = 0; i < n; i++) {
    mc__wire_component *c = &out->c[i];
    mc_code rc = mc__tensor_encode_head(e->components[i], &c->head,
                                        &c->head_len, &c->body_len);
    if (rc != MC_OK) {
      mc__wire_element_clear(out);
      return rc;
    }
    out->n = i + 1;
    if (c->body_len > 0)
      c->body = mc__tensor_ref(e->components[i]);
    out->bytes += c->head_len + c->body_len;
  }
  return MC_OK;
}

/* Size of an UncompressedElement holding we's components. */
static size_t ue_len(const mc__wire_element *we) {
  size_t len = 0;
  for (size_t i = 0; i < we->n; i++) {
    size_t clen = we->c[i].head_len + we->c[i].body_len;
    len += 1 + mc__varint_len(clen) + clen;
  }
  return len;
}

static void release_tensor(void *arg) {
  mc_tensor_free(arg);
}

/* mc__wire_response_parts; with refs, each tensor run holds a reference
 * of its own that its release drops. */
static mc_code build_parts(const mc__wire_element *es, size_t n, int refs,
                           mc_rpc_bytes **parts, size_t *nparts,
                           uint8_t **scratch) {
  size_t scratch_len = 11, max_parts = 2;
  for (size_t k = 0; k < n; k++) {
    scratch_len += 12;
    max_parts += 1;
    for (size_t i = 0; i < es[k].n; i++) {
      scratch_len += 11 + es[k].c[i].head_len;
      max_parts += 2;
    }
  }
  uint8_t *s = malloc(scratch_len);
  mc_rpc_bytes *p = calloc(max_parts, sizeof *p);
  if (s == NULL || p == NULL) {
    free(s);
    free(p);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  size_t o = 0, run = 0, np = 0;
  for (size_t k = 0; k < n; k++) {
    if (k == 0) {
      s[o++] = 0x2a; /* uncompressed = 5 */
    } else {
      s[o++] = 0xa2; /* more_elements = 100 */
      s[o++] = 0x06;
    }
    o += mc__varint_put(s + o, ue_len(&es[k]));
    for (size_t i = 0; i < es[k].n; i++) {
      const mc__wire_component *c = &es[k].c[i];
      s[o++] = 0x0a; /* components = 1 */
      o += mc__varint_put(s + o, c->head_len + c->body_len);
      memcpy(s + o, c->head, c->head_len);
      o += c->head_len;
      if (c->body_len > 0) {
        p[np++] = (mc_rpc_bytes){s + run, o - run, NULL, NULL};
        p[np++] = (mc_rpc_bytes){mc_tensor_data(c->body), c->body_len,
                                 refs ? release_tensor : NULL,
                                 refs ? mc__tensor_ref(c->body) : NULL};
        run = o;
      }
    }
    /* element_index = 6 follows uncompressed (protobuf-c packs by field
     * number); 0 is not sent. */
    if (k == 0 && es[0].index != 0) {
      s[o++] = 0x30;
      o += mc__varint_put(s + o, (uint64_t)es[0].index);
    }
  }
  if (o > run)
    p[np++] = (mc_rpc_bytes){s + run, o - run, NULL, NULL};
  *parts = p;
  *nparts = np;
  *scratch = s;
  return MC_OK;
}

mc_code mc__wire_response_parts(const mc__wire_element *es, size_t n,
                                mc_rpc_bytes **parts, size_t *nparts,
                                uint8_t **scratch) {
  return build_parts(es, n, 0, parts, nparts, scratch);
}

void mc__wire_reply_elements(mc_rpc_call *call, const mc__wire_element *es,
                             size_t n) {
  mc_rpc_bytes *parts;
  size_t np;
  uint8_t *scratch;
  if (build_parts(es, n, 1, &parts, &np, &scratch) != MC_OK) {
    mc__rpc_call_reply(call, NULL, MC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  /* Tensor runs go out without a copy, each holding a tensor reference
   * until gRPC has written it. */
  mc__rpc_call_reply_bytes(call, parts, np);
  free(parts);
  free(scratch);
}

/* ---- decoding ------------------------------------------------------------ */

/* A read position in runs of bytes; pos counts from the first run. */
typedef struct cursor {
  const mc_rpc_bytes *parts;
  size_t i, off, pos, len;
} cursor;

/* Copies n bytes to dst (or skips them when dst is NULL); 0 past the end. */
static int cur_read(cursor *c, void *dst, size_t n) {
  if (n > c->len - c->pos)
    return 0;
  uint8_t *d = dst;
  while (n > 0) {
    while (c->off == c->parts[c->i].len) {
      c->i++;
      c->off = 0;
    }
    size_t k = c->parts[c->i].len - c->off;
    if (k > n)
      k = n;
    if (d != NULL) {
      memcpy(d, (const uint8_t *)c->parts[c->i].data + c->off, k);
      d += k;
    }
    c->off += k;
    c->pos += k;
    n -= k;
  }
  return 1;
}

/* Reads a varint ending before end; 0 when malformed. */
static int cur_varint(cursor *c, size_t end, uint64_t *v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64 && c->pos < end; shift += 7) {
    uint8_t b;
    if (!cur_read(c, &b, 1))
      return 0;
    r |= (uint64_t)(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      *v = r;
      return 1;
    }
  }
  return 0;
}

/* Skips a field body of wire type wt ending before end; 0 when malformed
 * or a group (which protobuf-c decides about). */
static int cur_skip(cursor *c, size_t end, int wt) {
  uint64_t v;
  switch (wt) {
  case 0:
    return cur_varint(c, end, &v);
  case 1:
    return end - c->pos >= 8 && cur_read(c, NULL, 8);
  case 2:
    return cur_varint(c, end, &v) && v <= end - c->pos &&
           cur_read(c, NULL, (size_t)v);
  case 5:
    return end - c->pos >= 4 && cur_read(c, NULL, 4);
  default:
    return 0;
  }
}

/* 1 when the bytes up to end are fields framed as protobuf-c requires
 * (no field number 0, no groups, lengths within bounds, the known fields
 * of their wire type), looked at one level into the UncompressedElement
 * messages (fields 5 and 100, whose field 1 holds the TensorProtos). Run
 * before any component is decoded, so that a malformed response is
 * rejected without first allocating the tensors its components ask for. */
static int framing_ok(cursor *c, size_t end, int in_element) {
  while (c->pos < end) {
    uint64_t key, len;
    if (!cur_varint(c, end, &key) || key >> 3 == 0)
      return 0;
    uint64_t field = key >> 3;
    int wt = (int)(key & 7);
    int element = !in_element && (field == 5 || field == 100);
    if (element || (in_element && field == 1)) {
      if (wt != 2 || !cur_varint(c, end, &len) || len > end - c->pos)
        return 0;
      if (element ? !framing_ok(c, c->pos + (size_t)len, 1)
                  : !cur_read(c, NULL, (size_t)len))
        return 0;
    } else if (!in_element && (field == 2 || field == 4 || field == 6) &&
               wt != 0) {
      return 0;
    } else if (!cur_skip(c, end, wt)) {
      return 0;
    }
  }
  return 1;
}

enum { WIRE_OK, WIRE_FALLBACK, WIRE_ERROR };

typedef struct elist {
  mc_element *a;
  size_t n, cap;
} elist;

static void elist_clear(elist *l) {
  for (size_t i = 0; i < l->n; i++)
    mc_element_clear(&l->a[i]);
  free(l->a);
  memset(l, 0, sizeof *l);
}

/* Appends e (taken over). */
static mc_code elist_push(elist *l, mc_element *e) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 4;
    mc_element *a = realloc(l->a, cap * sizeof *a);
    if (a == NULL) {
      mc_element_clear(e);
      return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
    }
    l->a = a;
    l->cap = cap;
  }
  l->a[l->n++] = *e;
  return MC_OK;
}

/* A TensorProto of len bytes at c: a dense one straight into its tensor,
 * anything else through one contiguous copy and mc__tensor_decode. */
static mc_code decode_component(cursor *c, size_t len, mc_tensor **t) {
  uint8_t head[HEAD_PEEK];
  size_t avail = len < sizeof head ? len : sizeof head;
  cursor peek = *c;
  cur_read(&peek, head, avail);
  size_t off = 0;
  mc_code rc = mc__tensor_alloc_head(head, avail, len, t, &off);
  if (rc != MC_OK)
    return rc;
  if (*t != NULL) {
    cur_read(c, NULL, off);
    cur_read(c, mc__tensor_mutable_data(*t), len - off);
    return MC_OK;
  }
  uint8_t *buf = malloc(len > 0 ? len : 1);
  if (buf == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory for %zu bytes",
                         len);
  cur_read(c, buf, len);
  rc = mc__tensor_decode(buf, len, t);
  free(buf);
  return rc;
}

/* An UncompressedElement ending at end, appended to out. */
static int decode_ue(cursor *c, size_t end, elist *out) {
  mc_tensor **t = NULL;
  size_t n = 0, cap = 0;
  int r = WIRE_OK;
  while (r == WIRE_OK && c->pos < end) {
    uint64_t key, len;
    if (!cur_varint(c, end, &key)) {
      r = WIRE_FALLBACK;
    } else if (key >> 3 != 1) {
      r = cur_skip(c, end, (int)(key & 7)) ? WIRE_OK : WIRE_FALLBACK;
    } else if ((key & 7) != 2 || !cur_varint(c, end, &len) ||
               len > end - c->pos) {
      r = WIRE_FALLBACK;
    } else {
      if (n == cap) {
        cap = cap ? 2 * cap : 4;
        mc_tensor **a = realloc(t, cap * sizeof *a);
        if (a == NULL) {
          mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
          r = WIRE_ERROR;
          break;
        }
        t = a;
      }
      if (decode_component(c, (size_t)len, &t[n]) != MC_OK) {
        mc__error_prefix("element component %zu: ", n);
        r = WIRE_ERROR;
      } else {
        n++;
      }
    }
  }
  if (r == WIRE_OK) {
    mc_element e = MC_ELEMENT_INIT;
    if (mc_element_take(&e, t, n) != MC_OK || elist_push(out, &e) != MC_OK)
      r = WIRE_ERROR;
  } else {
    for (size_t i = 0; i < n; i++)
      mc_tensor_free(t[i]);
  }
  free(t);
  return r;
}

/* The layout build_parts writes (fields in any order, but uncompressed at
 * most once and before any more_elements); WIRE_FALLBACK for anything
 * else, which protobuf-c then decodes with the generated code's rules. */
static int decode_fast(cursor *c, elist *out, int *eos) {
  int seen_uncompressed = 0;
  while (c->pos < c->len) {
    uint64_t key, v;
    if (!cur_varint(c, c->len, &key))
      return WIRE_FALLBACK;
    uint64_t field = key >> 3;
    int wt = (int)(key & 7);
    if (field == 5 || field == 100) {
      if (wt != 2 || (field == 5) == seen_uncompressed ||
          !cur_varint(c, c->len, &v) || v > c->len - c->pos)
        return WIRE_FALLBACK;
      seen_uncompressed = 1;
      int r = decode_ue(c, c->pos + (size_t)v, out);
      if (r != WIRE_OK)
        return r;
    } else if (field == 2 || field == 4 || field == 6) {
      if (wt != 0 || !cur_varint(c, c->len, &v))
        return WIRE_FALLBACK;
      if (field == 2)
        *eos = v != 0;
    } else if (!cur_skip(c, c->len, wt)) {
      return WIRE_FALLBACK;
    }
  }
  return WIRE_OK;
}

/* The general path: one flat copy, protobuf-c, then each component. */
static mc_code decode_slow(const mc_rpc_bytes *parts, size_t len, elist *out,
                           int *eos) {
  uint8_t *flat = malloc(len > 0 ? len : 1);
  if (flat == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory for %zu bytes",
                         len);
  cursor c = {parts, 0, 0, 0, len};
  cur_read(&c, flat, len);
  Tensorflow__Data__GetElementResponse *r =
      MC_PB_UNPACK(tensorflow__data__get_element_response,
                   Tensorflow__Data__GetElementResponse, len, flat);
  free(flat);
  if (r == NULL)
    return mc__error_set(MC_DATA_LOSS,
                         "GetElement response of %zu bytes is not a valid "
                         "tensorflow.data.GetElementResponse",
                         len);
  *eos = r->end_of_sequence;
  mc_code rc = MC_OK;
  if (r->element_case ==
      TENSORFLOW__DATA__GET_ELEMENT_RESPONSE__ELEMENT_UNCOMPRESSED) {
    for (size_t i = 0; rc == MC_OK && i <= r->n_more_elements; i++) {
      const Tensorflow__Data__UncompressedElement *ue =
          i == 0 ? r->uncompressed : r->more_elements[i - 1];
      mc_tensor **t = calloc(ue->n_components + 1, sizeof *t);
      if (t == NULL) {
        rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
        break;
      }
      size_t k = 0;
      for (; rc == MC_OK && k < ue->n_components; k++) {
        rc = mc__tensor_decode(ue->components[k].data, ue->components[k].len,
                               &t[k]);
        if (rc != MC_OK)
          mc__error_prefix("element component %zu: ", k);
      }
      if (rc != MC_OK) {
        for (size_t j = 0; j + 1 < k; j++)
          mc_tensor_free(t[j]);
      } else {
        mc_element e = MC_ELEMENT_INIT;
        rc = mc_element_take(&e, t, k);
        if (rc == MC_OK)
          rc = elist_push(out, &e);
      }
      free(t);
    }
  }
  tensorflow__data__get_element_response__free_unpacked(r, NULL);
  return rc;
}

mc_code mc__wire_response_decode(const mc_rpc_bytes *parts, size_t nparts,
                                 mc_element **elems, size_t *n, int *eos) {
  size_t len = 0;
  for (size_t i = 0; i < nparts; i++)
    len += parts[i].len;
  *elems = NULL;
  *n = 0;
  *eos = 0;
  elist out = {0};
  cursor c = {parts, 0, 0, 0, len};
  int r = framing_ok(&c, len, 0) ? WIRE_OK : WIRE_FALLBACK;
  if (r == WIRE_OK) {
    cursor start = {parts, 0, 0, 0, len};
    r = decode_fast(&start, &out, eos);
  }
  mc_code rc = MC_OK;
  if (r == WIRE_ERROR) {
    rc = mc_error_last()->code;
  } else if (r == WIRE_FALLBACK) {
    elist_clear(&out);
    *eos = 0;
    rc = decode_slow(parts, len, &out, eos);
  }
  if (rc != MC_OK) {
    elist_clear(&out);
    return rc;
  }
  *elems = out.a;
  *n = out.n;
  return MC_OK;
}
