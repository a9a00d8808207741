/* rpc_bytes.c: messages as runs of bytes instead of protobuf-c structs:
 * building a send buffer whose large runs are borrowed (zero-copy replies)
 * and keeping a received buffer's slices as they came (undecoded
 * responses). */
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/internal.h"

struct mc_rpc_payload {
  grpc_slice *slices;
  size_t n, len;
};

void mc__rpc_bytes_release(const mc_rpc_bytes *parts, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (parts[i].release != NULL)
      parts[i].release(parts[i].release_arg);
}

grpc_byte_buffer *mc__rpc_bytes_buffer(const mc_rpc_bytes *parts, size_t n) {
  grpc_slice *slices = malloc((n > 0 ? n : 1) * sizeof *slices);
  if (slices == NULL) {
    mc__rpc_bytes_release(parts, n);
    return NULL;
  }
  size_t ns = 0;
  for (size_t i = 0; i < n;) {
    if (parts[i].release != NULL) {
      if (parts[i].len == 0)
        parts[i].release(parts[i].release_arg);
      else
        slices[ns++] = grpc_slice_new_with_user_data(
            (void *)parts[i].data, parts[i].len, parts[i].release,
            parts[i].release_arg);
      i++;
      continue;
    }
    /* Consecutive copied runs (protobuf framing, small fields) become one
     * slice rather than many tiny ones. */
    size_t end = i, len = 0;
    while (end < n && parts[end].release == NULL)
      len += parts[end++].len;
    if (len > 0) {
      grpc_slice s = grpc_slice_malloc(len);
      uint8_t *p = GRPC_SLICE_START_PTR(s);
      for (; i < end; i++) {
        if (parts[i].len > 0)
          memcpy(p, parts[i].data, parts[i].len);
        p += parts[i].len;
      }
      slices[ns++] = s;
    }
    i = end;
  }
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(slices, ns);
  for (size_t i = 0; i < ns; i++)
    grpc_slice_unref(slices[i]);
  free(slices);
  return bb;
}

mc_rpc_payload *mc__rpc_payload_take(grpc_byte_buffer *bb) {
  mc_rpc_payload *p = calloc(1, sizeof *p);
  if (p == NULL)
    return NULL;
  if (bb == NULL)
    return p;
  grpc_byte_buffer_reader r;
  if (!grpc_byte_buffer_reader_init(&r, bb)) {
    free(p);
    return NULL;
  }
  size_t cap = 0;
  grpc_slice s;
  while (grpc_byte_buffer_reader_next(&r, &s)) {
    if (p->n == cap) {
      size_t ncap = cap ? 2 * cap : 8;
      grpc_slice *a = realloc(p->slices, ncap * sizeof *a);
      if (a == NULL) {
        grpc_slice_unref(s);
        grpc_byte_buffer_reader_destroy(&r);
        mc__rpc_payload_free(p);
        return NULL;
      }
      p->slices = a;
      cap = ncap;
    }
    p->len += GRPC_SLICE_LENGTH(s);
    p->slices[p->n++] = s;
  }
  grpc_byte_buffer_reader_destroy(&r);
  return p;
}

size_t mc__rpc_payload_num_parts(const mc_rpc_payload *p) {
  return p->n;
}

mc_rpc_bytes mc__rpc_payload_part(const mc_rpc_payload *p, size_t i) {
  mc_rpc_bytes b = {NULL, 0, NULL, NULL};
  if (i < p->n) {
    b.data = GRPC_SLICE_START_PTR(p->slices[i]);
    b.len = GRPC_SLICE_LENGTH(p->slices[i]);
  }
  return b;
}

size_t mc__rpc_payload_len(const mc_rpc_payload *p) {
  return p->len;
}

void mc__rpc_payload_free(mc_rpc_payload *p) {
  if (p == NULL)
    return;
  for (size_t i = 0; i < p->n; i++) {
    /* Slices of different calls can share one gRPC buffer, freed by
     * whichever call drops the last reference, through gRPC's atomic
     * reference count that TSan cannot see. The refcount object is shared
     * by those slices: release and acquire on it state that edge, as an
     * instrumented acq_rel decrement would. */
    if (p->slices[i].refcount != NULL) {
      MC__RPC_HANDOFF(p->slices[i].refcount);
      MC__RPC_RECEIVED(p->slices[i].refcount);
    }
    grpc_slice_unref(p->slices[i]);
  }
  free(p->slices);
  free(p);
}
