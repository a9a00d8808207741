/*
 * element_codec.h: TensorProto bytes for element components on the data
 * service's hot path (internal). Dense numeric tensors are written and read
 * with one copy of their data; anything else (strings, bool, typed *_val
 * fields, unknown fields) goes through mc_tensor_to/from_proto_bytes. Both
 * paths produce and accept the same wire format.
 */
#ifndef MC_DATA_ELEMENT_CODEC_H
#define MC_DATA_ELEMENT_CODEC_H

#include <minicluster/tensor.h>
#include <stddef.h>
#include <stdint.h>

/* Same contract as mc_tensor_to_proto_bytes. */
mc_code mc__tensor_encode(const mc_tensor *t, uint8_t **buf /* OUT: free() */,
                          size_t *len /* OUT */);

/* Same contract as mc_tensor_from_proto_bytes. */
mc_code mc__tensor_decode(const uint8_t *buf, size_t len,
                          mc_tensor **out /* OUT */);

/* The encoding of mc__tensor_encode split in two, for sending a tensor's
 * data without copying it: *head (free()) holds the TensorProto's bytes
 * before the data and *body_len bytes of mc_tensor_data(t) follow it on the
 * wire (0 for non-dense tensors, whose head is the whole TensorProto). */
mc_code mc__tensor_encode_head(const mc_tensor *t, uint8_t **head /* OUT */,
                               size_t *head_len /* OUT */,
                               size_t *body_len /* OUT */);

/* For decoding a TensorProto of `total` bytes whose first `avail` bytes are
 * at head: when it is a dense numeric tensor in the layout
 * mc__tensor_encode writes (tensor_content last, its length matching dtype
 * and shape), allocates *out (not zero-filled) and sets *content_off to where
 * the content starts, for the caller to copy it in. Otherwise *out is NULL
 * (the caller decodes the whole TensorProto with mc__tensor_decode).
 * Errors: only MC_RESOURCE_EXHAUSTED/MC_INVALID_ARGUMENT from allocating. */
mc_code mc__tensor_alloc_head(const uint8_t *head, size_t avail, size_t total,
                              mc_tensor **out /* OUT */,
                              size_t *content_off /* OUT */);

/* Protobuf base-128 varints, shared by the element encoders: writes v at p
 * (at most 10 bytes) and returns the bytes written; mc__varint_len says
 * how many that will be. */
size_t mc__varint_put(uint8_t *p, uint64_t v);
size_t mc__varint_len(uint64_t v);

#endif
