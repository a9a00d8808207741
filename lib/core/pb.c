/* pb.c: protobuf decoding that refuses what protobuf-c alone lets through
 * (see pb.h). */
#include "core/pb.h"

#include <stdbool.h>

static const void *member(const ProtobufCMessage *m, unsigned offset) {
  return (const char *)m + offset;
}

/* True if m and every message inside it hold no field numbered 0. The
 * recursion is no deeper than protobuf-c's own when it decoded m. */
static bool no_field_zero(const ProtobufCMessage *m) {
  for (unsigned i = 0; i < m->n_unknown_fields; i++)
    if (m->unknown_fields[i].tag == 0)
      return false;
  const ProtobufCMessageDescriptor *d = m->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type != PROTOBUF_C_TYPE_MESSAGE)
      continue;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)member(m, f->quantifier_offset);
      ProtobufCMessage *const *v =
          *(ProtobufCMessage *const *const *)member(m, f->offset);
      for (size_t k = 0; k < n; k++)
        if (!no_field_zero(v[k]))
          return false;
      continue;
    }
    /* A oneof's members share one slot: only the chosen one is a message. */
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
        *(const uint32_t *)member(m, f->quantifier_offset) != f->id)
      continue;
    const ProtobufCMessage *sub =
        *(const ProtobufCMessage *const *)member(m, f->offset);
    if (sub != NULL && !no_field_zero(sub))
      return false;
  }
  return true;
}

ProtobufCMessage *mc__pb_unpack(const ProtobufCMessageDescriptor *desc,
                                size_t len, const uint8_t *data) {
  ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, data);
  if (m != NULL && !no_field_zero(m)) {
    protobuf_c_message_free_unpacked(m, NULL);
    return NULL;
  }
  return m;
}
