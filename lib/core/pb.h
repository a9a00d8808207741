/* pb.h: the one way lib/ decodes protobuf bytes.
 *
 * protobuf-c accepts one encoding that every other protobuf implementation
 * refuses: a field numbered 0, when its tag is written as an overlong varint
 * (0x81 0x00 instead of 0x01; protobuf-c tests only the first byte for 0).
 * It keeps such a field as an unknown field and writes it back with the
 * one-byte tag 0x01, which it then refuses. Bytes accepted once would stop
 * decoding after a re-encode: a DatasetDef the dispatcher accepted and
 * journals would make the journal unreadable at the next restart, a ServerDef
 * would parse but not serialize (the server_def fuzz target found it). So
 * every decode in lib/ goes through mc__pb_unpack, which refuses field 0
 * anywhere in the message as TensorFlow's C++ protobuf does. */
#ifndef MC_CORE_PB_H
#define MC_CORE_PB_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Decodes data[0..len) as a message of type desc, like
 * protobuf_c_message_unpack with the default allocator. Returns the message
 * (free it with protobuf_c_message_free_unpacked), or NULL when the bytes
 * are not a valid encoding, including a field numbered 0 in the message or
 * in any message inside it. Sets no error: callers name what they decoded.
 * Thread-safe. */
ProtobufCMessage *mc__pb_unpack(const ProtobufCMessageDescriptor *desc,
                                size_t len, const uint8_t *data);

/* The typed form: MC_PB_UNPACK(tensorflow__graph_def, Tensorflow__GraphDef,
 * len, data) for the generated tensorflow__graph_def__unpack. */
#define MC_PB_UNPACK(prefix, type, len, data)                                  \
  ((type *)mc__pb_unpack(&prefix##__descriptor, (len), (const uint8_t *)(data)))

#endif
