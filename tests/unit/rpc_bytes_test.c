/* rpc_bytes_test.c: replies given as runs of bytes (borrowed runs released
 * exactly once, copied runs copied) and responses received undecoded, in
 * both directions against protobuf-c. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "health.pb-c.h"
#include "rpc/rpc.h"

typedef Grpc__Health__V1__HealthCheckRequest Req;
#define REQ_DESC (&grpc__health__v1__health_check_request__descriptor)

#define BIG (3u << 20)

static atomic_int released;
static uint8_t *big_buf; /* borrowed by replies; filled once */

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static void on_release(void *arg) {
  atomic_fetch_add(&released, *(int *)arg);
}

static int one = 1, ten = 10;

/* The runs: "head" copied, BIG bytes borrowed, an empty copied run, an
 * empty borrowed run (released too), "tail" copied. */
static void h_runs(mc_rpc_call *call, const ProtobufCMessage *req, void *a) {
  (void)req;
  (void)a;
  mc_rpc_bytes parts[5] = {
      {"head", 4, NULL, NULL}, {big_buf, BIG, on_release, &one},
      {"", 0, NULL, NULL},     {big_buf, 0, on_release, &ten},
      {"tail", 4, NULL, NULL},
  };
  mc__rpc_call_reply_bytes(call, parts, 5);
}

static void h_empty(mc_rpc_call *call, const ProtobufCMessage *req, void *a) {
  (void)req;
  (void)a;
  mc__rpc_call_reply_bytes(call, NULL, 0);
}

static void h_fail(mc_rpc_call *call, const ProtobufCMessage *req, void *a) {
  (void)req;
  (void)a;
  mc__rpc_call_reply(call, NULL, MC_NOT_FOUND, "no such thing \"x\"");
}

/* Echoes the request, serialized by hand into three borrowed runs of a
 * buffer released after the send. */
static void free_arg(void *p) {
  atomic_fetch_add(&released, 100);
  free(p);
}
static void h_echo(mc_rpc_call *call, const ProtobufCMessage *req, void *a) {
  (void)a;
  size_t len = protobuf_c_message_get_packed_size(req);
  uint8_t *buf = malloc(len);
  protobuf_c_message_pack(req, buf);
  size_t third = len / 3;
  mc_rpc_bytes parts[3] = {
      {buf, third, NULL, NULL},
      {buf + third, third, NULL, NULL},
      {buf + 2 * third, len - 2 * third, free_arg, buf},
  };
  mc__rpc_call_reply_bytes(call, parts, 3);
}

static const mc_rpc_method methods[] = {
    {"/t.B/Runs", REQ_DESC, REQ_DESC, h_runs, 0},
    {"/t.B/Empty", REQ_DESC, REQ_DESC, h_empty, 0},
    {"/t.B/Fail", REQ_DESC, REQ_DESC, h_fail, 0},
    {"/t.B/Echo", REQ_DESC, REQ_DESC, h_echo, 1},
};

static mc_rpc_server *start_server(void) {
  mc_rpc_server *s = NULL;
  MC_ASSERT_OK(mc__rpc_server_new(&s, NULL));
  mc_rpc_service svc = {"t.B", methods, 4, NULL};
  MC_ASSERT_OK(mc__rpc_server_add_service(s, &svc));
  MC_ASSERT_OK(mc__rpc_server_start(s));
  return s;
}

static mc_rpc_channel *channel_to(mc_rpc_server *s) {
  char target[64];
  snprintf(target, sizeof target, "localhost:%d", mc__rpc_server_port(s));
  mc_rpc_channel *ch = NULL;
  MC_ASSERT_OK(mc__rpc_channel_get(target, &ch));
  return ch;
}

/* The payload's runs, concatenated (malloc'ed). */
static uint8_t *flatten(const mc_rpc_payload *p) {
  uint8_t *out = malloc(mc__rpc_payload_len(p) + 1);
  size_t o = 0;
  for (size_t i = 0; i < mc__rpc_payload_num_parts(p); i++) {
    mc_rpc_bytes b = mc__rpc_payload_part(p, i);
    assert_null(b.release);
    memcpy(out + o, b.data, b.len);
    o += b.len;
  }
  assert_int_equal(o, mc__rpc_payload_len(p));
  return out;
}

/* Releases run on the server after its send completes, which may be just
 * after the client has the response: wait for them (bounded). */
static void wait_released(int want) {
  for (int i = 0; i < 500 && atomic_load(&released) < want; i++)
    sleep_ms(10);
  assert_int_equal(atomic_load(&released), want);
}

static void test_runs_both_ways(void **state) {
  (void)state;
  big_buf = malloc(BIG);
  for (size_t i = 0; i < BIG; i++)
    big_buf[i] = (uint8_t)(i * 13 + 5);
  atomic_store(&released, 0);
  mc_rpc_server *s = start_server();
  mc_rpc_channel *ch = channel_to(s);
  Req r = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  r.service = "";

  for (int k = 1; k <= 2; k++) {
    mc_rpc_payload *p = NULL;
    MC_ASSERT_OK(mc__rpc_unary_bytes(ch, "/t.B/Runs", &r.base, 10000, &p));
    assert_int_equal(mc__rpc_payload_len(p), BIG + 8);
    uint8_t *flat = flatten(p);
    assert_memory_equal(flat, "head", 4);
    assert_memory_equal(flat + 4, big_buf, BIG);
    assert_memory_equal(flat + 4 + BIG, "tail", 4);
    free(flat);
    mc__rpc_payload_free(p);
    /* Each borrowed run once per call, the empty one included. */
    wait_released(11 * k);
  }

  /* An empty reply is an empty payload, not an error. */
  mc_rpc_payload *p = NULL;
  MC_ASSERT_OK(mc__rpc_unary_bytes(ch, "/t.B/Empty", &r.base, 5000, &p));
  assert_int_equal(mc__rpc_payload_len(p), 0);
  assert_int_equal(mc__rpc_payload_num_parts(p), 0);
  mc_rpc_bytes none = mc__rpc_payload_part(p, 0);
  assert_null(none.data);
  assert_int_equal(none.len, 0);
  mc__rpc_payload_free(p);

  /* Errors reach a bytes call like any other. */
  p = (mc_rpc_payload *)&r;
  MC_ASSERT_ERR(mc__rpc_unary_bytes(ch, "/t.B/Fail", &r.base, 5000, &p),
                MC_NOT_FOUND, "no such thing \"x\"");
  assert_null(p);
  MC_ASSERT_ERR(mc__rpc_unary_bytes(ch, "/t.B/Fail", &r.base, 5000, NULL),
                MC_INVALID_ARGUMENT, "NULL response");
  MC_ASSERT_ERR(mc__rpc_unary_bytes(ch, "/t.B/Runs", &r.base, 0, &p),
                MC_INVALID_ARGUMENT, "timeout 0 ms");

  /* Hand-serialized runs are an ordinary message to a protobuf-c client. */
  atomic_store(&released, 0);
  char *text = malloc(100001);
  memset(text, 'q', 100000);
  text[100000] = '\0';
  r.service = text;
  ProtobufCMessage *echo = NULL;
  MC_ASSERT_OK(mc__rpc_unary(ch, "/t.B/Echo", &r.base, REQ_DESC, 10000, &echo));
  assert_string_equal(((Req *)echo)->service, text);
  protobuf_c_message_free_unpacked(echo, NULL);
  wait_released(100);
  free(text);

  mc__rpc_channel_release(ch);
  mc__rpc_server_free(s);
  free(big_buf);
}

typedef struct async_result {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  mc_code code;
  size_t len;
} async_result;

static void on_done(void *arg, mc_code code, const char *message,
                    mc_rpc_payload *p) {
  (void)message;
  async_result *r = arg;
  size_t len = p ? mc__rpc_payload_len(p) : 0;
  mc__rpc_payload_free(p);
  pthread_mutex_lock(&r->mu);
  r->code = code;
  r->len = len;
  r->done = 1;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static void test_async(void **state) {
  (void)state;
  big_buf = malloc(BIG);
  memset(big_buf, 1, BIG);
  atomic_store(&released, 0);
  mc_rpc_server *s = start_server();
  mc_rpc_channel *ch = channel_to(s);
  Req r = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  r.service = "";
  const char *paths[2] = {"/t.B/Runs", "/t.B/Fail"};
  for (int k = 0; k < 2; k++) {
    async_result res = {.done = 0};
    pthread_mutex_init(&res.mu, NULL);
    pthread_cond_init(&res.cv, NULL);
    MC_ASSERT_OK(
        mc__rpc_unary_bytes_async(ch, paths[k], &r.base, 10000, on_done, &res));
    pthread_mutex_lock(&res.mu);
    while (!res.done)
      pthread_cond_wait(&res.cv, &res.mu);
    pthread_mutex_unlock(&res.mu);
    assert_int_equal(res.code, k == 0 ? MC_OK : MC_NOT_FOUND);
    assert_int_equal(res.len, k == 0 ? BIG + 8 : 0);
    pthread_mutex_destroy(&res.mu);
    pthread_cond_destroy(&res.cv);
  }
  MC_ASSERT_ERR(
      mc__rpc_unary_bytes_async(ch, "/t.B/Runs", &r.base, 1000, NULL, NULL),
      MC_INVALID_ARGUMENT, "NULL argument");
  wait_released(11);
  mc__rpc_channel_release(ch);
  mc__rpc_server_free(s);
  free(big_buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_runs_both_ways),
      cmocka_unit_test(test_async),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
