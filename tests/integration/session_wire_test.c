/* Drives the MasterService of a local server with hand-written
 * TensorFlow-format bytes, and reads the responses byte by byte, to pin
 * the wire format (field numbers, tensor encoding) independently of the
 * library's own proto definitions: requests travel as the unknown fields of
 * an empty message, responses are decoded as one. */
#include "testutil.h"

#include <minicluster/server.h>
#include <stdio.h>
#include <stdlib.h>

#include "rpc/rpc.h"
#include "worker.pb-c.h"

typedef struct buf {
  uint8_t b[4096];
  size_t n;
} buf;

static void put_varint(buf *o, uint64_t v) {
  do {
    uint8_t byte = v & 0x7f;
    v >>= 7;
    o->b[o->n++] = byte | (v ? 0x80 : 0);
  } while (v);
}

static void put_key(buf *o, int field, int wt) {
  put_varint(o, (uint64_t)field << 3 | (uint64_t)wt);
}

static void put_bytes(buf *o, int field, const void *p, size_t n) {
  put_key(o, field, 2);
  put_varint(o, n);
  memcpy(o->b + o->n, p, n);
  o->n += n;
}

static void put_str(buf *o, int field, const char *s) {
  put_bytes(o, field, s, strlen(s));
}

static void put_msg(buf *o, int field, const buf *m) {
  put_bytes(o, field, m->b, m->n);
}

static void put_uint(buf *o, int field, uint64_t v) {
  put_key(o, field, 0);
  put_varint(o, v);
}

/* AttrValue{type: t} under NodeDef.attr[key] (map entry: key 1, value 2). */
static void put_type_attr(buf *node, const char *key, int t) {
  buf av = {0}, entry = {0};
  put_uint(&av, 6, (uint64_t)t);
  put_str(&entry, 1, key);
  put_msg(&entry, 2, &av);
  put_msg(node, 5, &entry);
}

/* A scalar DT_FLOAT TensorProto with its value in float_val (packed), the
 * way TensorFlow clients send scalars. */
static void put_float_tensor(buf *o, int field, float v) {
  buf t = {0};
  put_uint(&t, 1, 1); /* dtype DT_FLOAT */
  put_bytes(&t, 5, &v, sizeof v);
  put_msg(o, field, &t);
}

/* Finds the n-th (0-based) length-delimited field `field` in p[0..len);
 * skips varints and fixed fields. */
static const uint8_t *find_ld(const uint8_t *p, size_t len, int field, int nth,
                              size_t *out_len) {
  size_t i = 0;
  while (i < len) {
    uint64_t key = 0;
    int shift = 0;
    while (p[i] & 0x80)
      key |= (uint64_t)(p[i++] & 0x7f) << shift, shift += 7;
    key |= (uint64_t)p[i++] << shift;
    int wt = (int)(key & 7), f = (int)(key >> 3);
    uint64_t v = 0;
    shift = 0;
    switch (wt) {
    case 0:
      while (p[i] & 0x80)
        i++;
      i++;
      break;
    case 1:
      i += 8;
      break;
    case 5:
      i += 4;
      break;
    case 2:
      while (p[i] & 0x80)
        v |= (uint64_t)(p[i++] & 0x7f) << shift, shift += 7;
      v |= (uint64_t)p[i++] << shift;
      if (f == field && nth-- == 0) {
        *out_len = (size_t)v;
        return p + i;
      }
      i += (size_t)v;
      break;
    default:
      return NULL;
    }
  }
  return NULL;
}

/* Sends `fields` (already encoded, one top-level field each) as a request
 * and returns the response's raw fields re-encoded into *resp. */
static mc_code raw_call(mc_rpc_channel *ch, const char *method,
                        const buf *fields, buf *resp) {
  /* Split the encoded request into top-level unknown fields. */
  ProtobufCMessageUnknownField uf[8];
  size_t nuf = 0, i = 0;
  /* protobuf-c keeps an unknown length-delimited field as its length
   * prefix plus payload. */
  while (i < fields->n) {
    uint64_t key = fields->b[i++]; /* field numbers < 16: one byte */
    size_t start = i;
    uint64_t len = 0;
    int shift = 0;
    while (fields->b[i] & 0x80)
      len |= (uint64_t)(fields->b[i++] & 0x7f) << shift, shift += 7;
    len |= (uint64_t)fields->b[i++] << shift;
    uf[nuf].tag = (uint32_t)(key >> 3);
    uf[nuf].wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
    uf[nuf].len = (i - start) + (size_t)len;
    uf[nuf].data = (uint8_t *)fields->b + start;
    nuf++;
    i += (size_t)len;
  }
  Tensorflow__CleanupAllResponse empty = TENSORFLOW__CLEANUP_ALL_RESPONSE__INIT;
  empty.base.n_unknown_fields = (unsigned)nuf;
  empty.base.unknown_fields = uf;
  char path[128];
  snprintf(path, sizeof path, "/tensorflow.MasterService/%s", method);
  ProtobufCMessage *r = NULL;
  mc_code rc =
      mc__rpc_unary(ch, path, &empty.base,
                    &tensorflow__cleanup_all_response__descriptor, 10000, &r);
  if (rc != MC_OK)
    return rc;
  resp->n = 0;
  for (unsigned k = 0; k < r->n_unknown_fields; k++) {
    ProtobufCMessageUnknownField *f = &r->unknown_fields[k];
    assert_int_equal(f->wire_type, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
    put_key(resp, (int)f->tag, 2);
    memcpy(resp->b + resp->n, f->data, f->len); /* prefix + payload */
    resp->n += f->len;
  }
  protobuf_c_message_free_unpacked(r, NULL);
  return MC_OK;
}

static void master_speaks_tensorflow_bytes(void **state) {
  (void)state;
  mc_server *srv;
  MC_ASSERT_OK(mc_create_local_server(NULL, 1, &srv));
  mc_rpc_channel *ch;
  MC_ASSERT_OK(mc__rpc_channel_get(mc_server_target(srv), &ch));

  /* GraphDef: x = Placeholder(float); c = Const(2.5); y = AddV2(x, c:0). */
  buf x = {0}, c = {0}, y = {0}, graph = {0}, req = {0}, resp = {0};
  put_str(&x, 1, "x");
  put_str(&x, 2, "Placeholder");
  put_type_attr(&x, "dtype", 1);
  put_str(&c, 1, "c");
  put_str(&c, 2, "Const");
  {
    buf av = {0}, entry = {0};
    put_float_tensor(&av, 8, 2.5f);
    put_str(&entry, 1, "value");
    put_msg(&entry, 2, &av);
    put_msg(&c, 5, &entry);
  }
  put_type_attr(&c, "dtype", 1);
  put_str(&y, 1, "y");
  put_str(&y, 2, "AddV2");
  put_str(&y, 3, "x");
  put_str(&y, 3, "c:0");
  put_str(&y, 4, "/job:localhost/replica:0/task:0/device:CPU:0");
  put_type_attr(&y, "T", 1);
  put_msg(&graph, 1, &x);
  put_msg(&graph, 1, &c);
  put_msg(&graph, 1, &y);
  {
    buf versions = {0};
    put_uint(&versions, 1, 27);
    put_msg(&graph, 4, &versions);
  }
  put_msg(&req, 1, &graph); /* CreateSessionRequest.graph_def */
  MC_ASSERT_OK(raw_call(ch, "CreateSession", &req, &resp));
  size_t hlen;
  const uint8_t *h = find_ld(resp.b, resp.n, 1, 0, &hlen);
  assert_non_null(h); /* CreateSessionResponse.session_handle */
  char handle[256];
  snprintf(handle, sizeof handle, "%.*s", (int)hlen, (const char *)h);

  /* RunStep: feed x = 3 (float_val), fetch y:0, timeout 5000 ms. */
  req.n = 0;
  put_str(&req, 1, handle);
  {
    buf feed = {0}, opts = {0};
    put_str(&feed, 1, "x:0");
    put_float_tensor(&feed, 2, 3.0f);
    put_msg(&req, 2, &feed);
    put_str(&req, 3, "y:0");
    put_uint(&opts, 2, 5000);
    put_msg(&req, 5, &opts);
  }
  MC_ASSERT_OK(raw_call(ch, "RunStep", &req, &resp));
  size_t nlen, tlen, clen, slen;
  const uint8_t *nt = find_ld(resp.b, resp.n, 1, 0, &nlen); /* tensor */
  assert_non_null(nt);
  const uint8_t *name = find_ld(nt, nlen, 1, 0, &slen);
  assert_non_null(name);
  assert_int_equal(slen, 3);
  assert_memory_equal(name, "y:0", 3);
  const uint8_t *tp = find_ld(nt, nlen, 2, 0, &tlen); /* TensorProto */
  assert_non_null(tp);
  assert_int_equal(tp[0], 0x08); /* field 1 varint: dtype */
  assert_int_equal(tp[1], 1);    /* DT_FLOAT */
  const uint8_t *content = find_ld(tp, tlen, 4, 0, &clen);
  assert_non_null(content); /* tensor_content, 4 bytes */
  assert_int_equal(clen, 4);
  float v;
  memcpy(&v, content, 4);
  assert_true(v == 5.5f);

  /* An unknown session is ABORTED (as in TensorFlow: the master may have
   * restarted; the client recreates the session) with the handle in the
   * message. */
  req.n = 0;
  put_str(&req, 1, "no-such-session");
  put_str(&req, 3, "y:0");
  MC_ASSERT_ERR(raw_call(ch, "RunStep", &req, &resp), MC_ABORTED,
                "no-such-session");

  /* ListDevices: DeviceAttributes.name (field 1) of the local CPU. */
  req.n = 0;
  MC_ASSERT_OK(raw_call(ch, "ListDevices", &req, &resp));
  const uint8_t *dev = find_ld(resp.b, resp.n, 1, 0, &nlen);
  assert_non_null(dev);
  const uint8_t *dname = find_ld(dev, nlen, 1, 0, &slen);
  assert_non_null(dname);
  char dn[128];
  snprintf(dn, sizeof dn, "%.*s", (int)slen, (const char *)dname);
  assert_string_equal(dn, "/job:localhost/replica:0/task:0/device:CPU:0");

  req.n = 0;
  put_str(&req, 1, handle);
  MC_ASSERT_OK(raw_call(ch, "CloseSession", &req, &resp));
  /* Closing it again: ABORTED naming the handle, as TensorFlow answers. */
  MC_ASSERT_ERR(raw_call(ch, "CloseSession", &req, &resp), MC_ABORTED, handle);
  mc__rpc_channel_release(ch);
  mc_server_free(srv);
}

/* A RunStep request on session handle: feed s:0 a DT_STRING tensor of
 * shape [2] whose tensor_content is the 7 bytes at content; fetch t:0. */
static void string_step(buf *req, const char *handle, const char *content) {
  buf feed = {0}, tp = {0}, shape = {0}, dim = {0};
  req->n = 0;
  put_str(req, 1, handle);
  put_uint(&tp, 1, 7);
  put_uint(&dim, 1, 2);
  put_msg(&shape, 2, &dim);
  put_msg(&tp, 2, &shape);
  put_bytes(&tp, 4, content, 7);
  put_str(&feed, 1, "s:0");
  put_msg(&feed, 2, &tp);
  put_msg(req, 2, &feed);
  put_str(req, 3, "t:0");
}

/* A string feed the way TensorFlow's C++ side encodes one
 * (AsProtoTensorContent: port::EncodeStringList in tensor_content) comes
 * back whole; we answer strings in string_val, which every TensorFlow
 * reader takes (Python's MakeNdarray cannot read strings from
 * tensor_content). */
static void string_feed_in_tensor_content(void **state) {
  (void)state;
  mc_server *srv;
  MC_ASSERT_OK(mc_create_local_server(NULL, 1, &srv));
  mc_rpc_channel *ch;
  MC_ASSERT_OK(mc__rpc_channel_get(mc_server_target(srv), &ch));

  /* GraphDef: s = Placeholder(string); t = Identity(s). */
  buf s = {0}, t = {0}, graph = {0}, req = {0}, resp = {0};
  put_str(&s, 1, "s");
  put_str(&s, 2, "Placeholder");
  put_type_attr(&s, "dtype", 7);
  put_str(&t, 1, "t");
  put_str(&t, 2, "Identity");
  put_str(&t, 3, "s");
  put_type_attr(&t, "T", 7);
  put_msg(&graph, 1, &s);
  put_msg(&graph, 1, &t);
  put_msg(&req, 1, &graph);
  MC_ASSERT_OK(raw_call(ch, "CreateSession", &req, &resp));
  size_t hlen;
  const uint8_t *h = find_ld(resp.b, resp.n, 1, 0, &hlen);
  assert_non_null(h);
  char handle[256];
  snprintf(handle, sizeof handle, "%.*s", (int)hlen, (const char *)h);

  /* Feed s = ["ab", "xyz"]: lengths 2 and 3, then the bytes. */
  string_step(&req, handle,
              "\x02\x03"
              "abxyz");
  MC_ASSERT_OK(raw_call(ch, "RunStep", &req, &resp));
  size_t nlen, tlen, slen;
  const uint8_t *nt = find_ld(resp.b, resp.n, 1, 0, &nlen);
  assert_non_null(nt);
  const uint8_t *tp = find_ld(nt, nlen, 2, 0, &tlen);
  assert_non_null(tp);
  assert_int_equal(tp[0], 0x08);
  assert_int_equal(tp[1], 7);                         /* DT_STRING */
  const uint8_t *s0 = find_ld(tp, tlen, 8, 0, &slen); /* string_val */
  assert_non_null(s0);
  assert_int_equal(slen, 2);
  assert_memory_equal(s0, "ab", 2);
  const uint8_t *s1 = find_ld(tp, tlen, 8, 1, &slen);
  assert_non_null(s1);
  assert_int_equal(slen, 3);
  assert_memory_equal(s1, "xyz", 3);

  /* Lengths that do not match the bytes: INVALID_ARGUMENT naming them. */
  string_step(&req, handle,
              "\x02\x09"
              "abxyz");
  MC_ASSERT_ERR(raw_call(ch, "RunStep", &req, &resp), MC_INVALID_ARGUMENT,
                "2 string lengths sum to 11 bytes but 5 bytes follow");
  mc__rpc_channel_release(ch);
  mc_server_free(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(master_speaks_tensorflow_bytes),
      cmocka_unit_test(string_feed_in_tensor_content),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
