/*
 * element_wire.h: GetElementResponse on the wire without protobuf-c
 * (internal). The worker sends each dense numeric tensor's data as its own
 * borrowed run (no copy on the way to the socket); the client decodes
 * tensors straight from the runs gRPC received into their final buffers
 * (one copy). The bytes are exactly those protobuf-c packs for the same
 * message (field order by number, TensorProto as mc__tensor_encode writes
 * it); any response outside that layout is decoded by protobuf-c instead.
 */
#ifndef MC_DATA_ELEMENT_WIRE_H
#define MC_DATA_ELEMENT_WIRE_H

#include "rpc/rpc.h"

#include <minicluster/dataset.h>
#include <stddef.h>
#include <stdint.h>

/* One component ready to send: its TensorProto is head followed by
 * body_len bytes of body's data (body NULL, body_len 0 when head is the
 * whole TensorProto). */
typedef struct mc__wire_component {
  uint8_t *head;
  size_t head_len;
  mc_tensor *body; /* a reference of its own */
  size_t body_len;
} mc__wire_component;

/* An element ready to send; bytes is the sum of its TensorProto sizes,
 * index its position in the task's sequence (element_index). */
typedef struct mc__wire_element {
  mc__wire_component *c;
  size_t n;
  size_t bytes;
  int64_t index;
} mc__wire_element;

/* Encodes e (borrowed; its tensors gain a reference, no data is copied).
 * Clear *out with mc__wire_element_clear. Errors: MC_RESOURCE_EXHAUSTED,
 * or those of mc_tensor_to_proto_bytes. */
mc_code mc__wire_element_encode(const mc_element *e,
                                mc__wire_element *out /* OUT */);

/* Frees what an encoded element holds and zeroes it. */
void mc__wire_element_clear(mc__wire_element *we);

/* Replies to call with a GetElementResponse holding es[0] as `uncompressed`
 * (element_index es[0].index) and es[1..n) as more_elements (n >= 1). The
 * tensor data is borrowed by the reply (each run holds its own tensor
 * reference), so es may be cleared as soon as this returns. */
void mc__wire_reply_elements(mc_rpc_call *call, const mc__wire_element *es,
                             size_t n);

/* The message bytes mc__wire_reply_elements sends, as runs (for tests):
 * *parts (free()) points into *scratch (free()) and into the tensors. */
mc_code mc__wire_response_parts(const mc__wire_element *es, size_t n,
                                mc_rpc_bytes **parts /* OUT */,
                                size_t *nparts /* OUT */,
                                uint8_t **scratch /* OUT */);

/* Decodes a GetElementResponse given as runs: *elems (free() the array
 * after mc_element_clear on each) receives `uncompressed` and then
 * more_elements, *eos its end_of_sequence. An element with no uncompressed
 * element yields none. Errors: MC_DATA_LOSS (not a GetElementResponse),
 * a component's decode error prefixed "element component N: ",
 * MC_RESOURCE_EXHAUSTED. */
mc_code mc__wire_response_decode(const mc_rpc_bytes *parts, size_t nparts,
                                 mc_element **elems /* OUT */,
                                 size_t *n /* OUT */, int *eos /* OUT */);

#endif
