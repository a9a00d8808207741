/* rpc_client.c: the client side of the gRPC runtime: a per-target channel
 * cache and unary calls (async on the shared completion queue; the blocking
 * form waits for the async one). */
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/pb.h"
#include "core/status.h"
#include "rpc/internal.h"

/* Reconnect backoff of every channel: a restarted task is reachable again
 * within about this long (GRPC-CORE-NOTES pitfall 10). */
#define RECONNECT_BACKOFF_MS 100
/* gRPC also uses GRPC_ARG_MIN_RECONNECT_BACKOFF_MS as the minimum time a
 * connection attempt (TCP + HTTP/2 SETTINGS) may take; at 100 ms attempts
 * time out under valgrind or a loaded machine, so it stays larger. The
 * retry delay itself starts at RECONNECT_BACKOFF_MS. */
#define CONNECT_TIMEOUT_MS 5000

struct mc_rpc_channel {
  char *target; /* without "grpc://" */
  grpc_channel *channel;
  int refs; /* under cache_mu */
  struct mc_rpc_channel *next;
};

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static mc_rpc_channel *cache;

/* Accepts "host:port", "[v6]:port" and "grpc://" + either. */
static mc_code check_target(const char *target, const char **bare) {
  if (target == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "rpc target is NULL");
  const char *t = target;
  if (strncmp(t, "grpc://", 7) == 0)
    t += 7;
  const char *colon = strrchr(t, ':');
  const char *bad = NULL;
  if (strstr(t, "://") != NULL)
    bad = "only grpc:// targets are supported";
  else if (colon == NULL || colon == t)
    bad = "expected \"host:port\"";
  else {
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 1 || port > 65535)
      bad = "port must be 1..65535";
  }
  if (bad != NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "bad rpc target \"%s\": %s",
                         target, bad);
  *bare = t;
  return MC_OK;
}

mc_code mc__rpc_channel_get(const char *target, mc_rpc_channel **out) {
  const char *bare = NULL;
  if (out == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "rpc channel: NULL out");
  *out = NULL;
  mc_code rc = check_target(target, &bare);
  if (rc != MC_OK)
    return rc;
  pthread_mutex_lock(&cache_mu);
  for (mc_rpc_channel *c = cache; c; c = c->next) {
    if (strcmp(c->target, bare) == 0) {
      c->refs++;
      pthread_mutex_unlock(&cache_mu);
      *out = c;
      return MC_OK;
    }
  }
  rc = mc__rpc_runtime_ref();
  if (rc != MC_OK) {
    pthread_mutex_unlock(&cache_mu);
    return rc;
  }
  mc_rpc_channel *c = calloc(1, sizeof *c);
  if (c == NULL || (c->target = strdup(bare)) == NULL) {
    free(c);
    pthread_mutex_unlock(&cache_mu);
    mc__rpc_runtime_unref();
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  grpc_arg args[4] = {
      {.type = GRPC_ARG_INTEGER,
       .key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
       .value.integer = RECONNECT_BACKOFF_MS},
      {.type = GRPC_ARG_INTEGER,
       .key = GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
       .value.integer = CONNECT_TIMEOUT_MS},
      {.type = GRPC_ARG_INTEGER,
       .key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
       .value.integer = 10 * RECONNECT_BACKOFF_MS},
      {.type = GRPC_ARG_INTEGER,
       .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
       .value.integer = -1},
  };
  grpc_channel_args cargs = {4, args};
  /* "localhost" is dialled as 127.0.0.1 directly: our servers bind there,
   * it skips a resolver round trip, and c-ares (gRPC's default resolver)
   * leaks a few bytes per resolution of "localhost". */
  char dial[300];
  if (strncmp(bare, "localhost:", 10) == 0)
    snprintf(dial, sizeof dial, "ipv4:127.0.0.1:%s", bare + 10);
  else
    snprintf(dial, sizeof dial, "%s", bare);
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  c->channel = grpc_channel_create(dial, creds, &cargs);
  grpc_channel_credentials_release(creds);
  c->refs = 1;
  c->next = cache;
  cache = c;
  pthread_mutex_unlock(&cache_mu);
  *out = c;
  return MC_OK;
}

void mc__rpc_channel_release(mc_rpc_channel *ch) {
  if (ch == NULL)
    return;
  pthread_mutex_lock(&cache_mu);
  if (--ch->refs > 0) {
    pthread_mutex_unlock(&cache_mu);
    return;
  }
  for (mc_rpc_channel **p = &cache; *p; p = &(*p)->next) {
    if (*p == ch) {
      *p = ch->next;
      break;
    }
  }
  pthread_mutex_unlock(&cache_mu);
  grpc_channel_destroy(ch->channel);
  free(ch->target);
  free(ch);
  mc__rpc_runtime_unref();
}

const char *mc__rpc_channel_target(const mc_rpc_channel *ch) {
  return ch->target;
}

/* ---- unary calls ---- */

typedef struct client_call {
  mc__rpc_op op;
  mc_rpc_channel *ch;
  grpc_call *call;
  const ProtobufCMessageDescriptor *response_type;
  mc_rpc_done done;
  /* Set instead of done for undecoded responses (response_type NULL). */
  mc_rpc_bytes_done bytes_done;
  void *arg;
  grpc_metadata caller_md;
  grpc_metadata_array recv_md, trailing_md;
  grpc_byte_buffer *send, *recv;
  grpc_status_code status;
  grpc_slice details;
  int64_t start_ns;
  char method[160];
  char caller[128];
  int owns_ref;
} client_call;

static void on_client_done(mc__rpc_op *op, int ok) {
  client_call *cc = (client_call *)op;
  mc_code code = ok ? mc__rpc_code(cc->status) : MC_INTERNAL;
  char message[1024];
  mc__rpc_slice_copy(message, sizeof message, cc->details);
  if (!ok)
    snprintf(message, sizeof message, "the call batch failed");
  /* Clients of this runtime never cancel their calls, so a CANCELLED with
   * gRPC's own text (no handler message) means the server cancelled it:
   * the task was stopped or killed (grpc_server_cancel_all_calls can reach
   * the client before the connection closes). Report it as the task going
   * away, UNAVAILABLE, as the other kill races are (bench/soak.c saw 4 in
   * 100000 steps). */
  if (code == MC_CANCELLED &&
      (message[0] == '\0' || strcasecmp(message, "cancelled") == 0)) {
    code = MC_UNAVAILABLE;
    snprintf(message, sizeof message,
             "%s to %s: the server cancelled the call (the task stopped)",
             cc->method, cc->ch->target);
  }
  ProtobufCMessage *resp = NULL;
  mc_rpc_payload *payload = NULL;
  if (code == MC_OK && cc->bytes_done != NULL) {
    payload = mc__rpc_payload_take(cc->recv);
    if (payload == NULL) {
      code = MC_RESOURCE_EXHAUSTED;
      snprintf(message, sizeof message,
               "%s from %s: out of memory for the response", cc->method,
               cc->ch->target);
    }
  } else if (code == MC_OK) {
    grpc_byte_buffer_reader reader;
    if (cc->recv != NULL && grpc_byte_buffer_reader_init(&reader, cc->recv)) {
      grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
      grpc_byte_buffer_reader_destroy(&reader);
      resp = mc__pb_unpack(cc->response_type, GRPC_SLICE_LENGTH(all),
                           GRPC_SLICE_START_PTR(all));
      grpc_slice_unref(all);
    }
    if (resp == NULL) {
      code = MC_DATA_LOSS;
      snprintf(message, sizeof message,
               "%s from %s: the response is missing or not a valid %s",
               cc->method, cc->ch->target, cc->response_type->name);
    }
  }
  mc_rpc_trace_event ev = {.server_side = 0,
                           .caller = cc->caller,
                           .callee = cc->ch->target,
                           .method = cc->method,
                           .start_ns = cc->start_ns,
                           .end_ns = mc__rpc_now_ns(),
                           .code = code,
                           .message = message,
                           .fault = ""};
  mc__rpc_trace(&ev);
  /* Release everything before `done`: a blocking caller may return (and
   * tear the runtime down) as soon as it is signalled. */
  grpc_slice_unref(cc->details);
  grpc_slice_unref(cc->caller_md.value);
  grpc_metadata_array_destroy(&cc->recv_md);
  grpc_metadata_array_destroy(&cc->trailing_md);
  grpc_byte_buffer_destroy(cc->send);
  if (cc->recv)
    grpc_byte_buffer_destroy(cc->recv);
  grpc_call_unref(cc->call);
  mc_rpc_channel *ch = cc->owns_ref ? cc->ch : NULL;
  mc_rpc_done done = cc->done;
  mc_rpc_bytes_done bytes_done = cc->bytes_done;
  void *arg = cc->arg;
  free(cc);
  /* The call's channel reference goes before `done`, so that a caller who
   * waits for `done` and then frees everything drops the last reference
   * on its own thread, where the runtime can shut down at once. */
  mc__rpc_channel_release(ch);
  if (bytes_done != NULL)
    bytes_done(arg, code, message, payload);
  else
    done(arg, code, message, resp);
}

/* Starts a call; take_ref: the call holds its own channel reference (async
 * calls), else the caller's blocking wait keeps the channel alive. Exactly
 * one of done (with response_type) and bytes_done is set. */
static mc_code start_call(mc_rpc_channel *ch, const char *method_path,
                          const ProtobufCMessage *request,
                          const ProtobufCMessageDescriptor *response_type,
                          int64_t timeout_ms, mc_rpc_done done,
                          mc_rpc_bytes_done bytes_done, void *arg,
                          int take_ref) {
  if (ch == NULL || method_path == NULL || request == NULL ||
      (bytes_done == NULL && (response_type == NULL || done == NULL)))
    return mc__error_set(MC_INVALID_ARGUMENT, "rpc call: NULL argument");
  if (method_path[0] != '/' || strlen(method_path) >= 160)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "bad method path \"%s\" (expected "
                         "\"/package.Service/Method\")",
                         method_path);
  if (timeout_ms <= 0)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "rpc %s: timeout %lld ms (every call needs a "
                         "positive deadline)",
                         method_path, (long long)timeout_ms);
  client_call *cc = calloc(1, sizeof *cc);
  if (cc == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  cc->op.cb = on_client_done;
  cc->response_type = response_type;
  cc->done = done;
  cc->bytes_done = bytes_done;
  cc->arg = arg;
  cc->start_ns = mc__rpc_now_ns();
  snprintf(cc->method, sizeof cc->method, "%s", method_path);
  snprintf(cc->caller, sizeof cc->caller, "%s", mc__rpc_get_caller());
  if (take_ref) {
    pthread_mutex_lock(&cache_mu);
    ch->refs++;
    pthread_mutex_unlock(&cache_mu);
  }
  cc->owns_ref = take_ref;
  cc->ch = ch;

  gpr_timespec deadline =
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                   gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
  grpc_slice method = grpc_slice_from_copied_string(cc->method);
  cc->call =
      grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS,
                               mc__rpc_cq(), method, NULL, deadline, NULL);
  grpc_slice_unref(method);
  size_t len = protobuf_c_message_get_packed_size(request);
  grpc_slice payload = grpc_slice_malloc(len);
  protobuf_c_message_pack(request, GRPC_SLICE_START_PTR(payload));
  cc->send = grpc_raw_byte_buffer_create(&payload, 1);
  grpc_slice_unref(payload);
  cc->caller_md.key = grpc_slice_from_static_string("mc-caller");
  cc->caller_md.value = grpc_slice_from_copied_string(cc->caller);
  grpc_metadata_array_init(&cc->recv_md);
  grpc_metadata_array_init(&cc->trailing_md);
  cc->details = grpc_empty_slice();

  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = 1;
  ops[0].data.send_initial_metadata.metadata = &cc->caller_md;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = cc->send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &cc->recv_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &cc->recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &cc->trailing_md;
  ops[5].data.recv_status_on_client.status = &cc->status;
  ops[5].data.recv_status_on_client.status_details = &cc->details;
  /* Nothing of cc may be read after the handoff: the completion may free
   * it on another thread before start_batch even returns. */
  grpc_call *call = cc->call;
  MC__RPC_HANDOFF(&cc->op);
  grpc_call_error err = grpc_call_start_batch(call, ops, 6, &cc->op, NULL);
  if (err != GRPC_CALL_OK) {
    /* Cannot happen with a well-formed batch; report it as a failed call
     * so `done` still runs exactly once. */
    cc->status = GRPC_STATUS_INTERNAL;
    grpc_slice_unref(cc->details);
    cc->details = grpc_slice_from_copied_string("grpc_call_start_batch failed");
    on_client_done(&cc->op, 1);
  }
  return MC_OK;
}

mc_code mc__rpc_unary_async(mc_rpc_channel *ch, const char *method_path,
                            const ProtobufCMessage *request,
                            const ProtobufCMessageDescriptor *response_type,
                            int64_t timeout_ms, mc_rpc_done done, void *arg) {
  return start_call(ch, method_path, request, response_type, timeout_ms, done,
                    NULL, arg, 1);
}

mc_code mc__rpc_unary_bytes_async(mc_rpc_channel *ch, const char *method_path,
                                  const ProtobufCMessage *request,
                                  int64_t timeout_ms, mc_rpc_bytes_done done,
                                  void *arg) {
  if (done == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "rpc call: NULL argument");
  return start_call(ch, method_path, request, NULL, timeout_ms, NULL, done, arg,
                    1);
}

/* ---- blocking form ---- */

typedef struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int finished;
  mc_code code;
  char message[1024];
  ProtobufCMessage *resp;
  mc_rpc_payload *payload;
} waiter;

static void on_sync_done(void *arg, mc_code code, const char *message,
                         ProtobufCMessage *resp) {
  waiter *w = arg;
  pthread_mutex_lock(&w->mu);
  w->code = code;
  snprintf(w->message, sizeof w->message, "%s", message ? message : "");
  w->resp = resp;
  w->finished = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static void on_sync_bytes_done(void *arg, mc_code code, const char *message,
                               mc_rpc_payload *payload) {
  waiter *w = arg;
  pthread_mutex_lock(&w->mu);
  w->payload = payload;
  pthread_mutex_unlock(&w->mu);
  on_sync_done(arg, code, message, NULL);
}

/* Runs a call started by start_call on the calling thread's behalf and
 * waits for it; the response lands in w. */
static mc_code wait_call(mc_rpc_channel *ch, const char *method_path,
                         const ProtobufCMessage *request,
                         const ProtobufCMessageDescriptor *response_type,
                         int64_t timeout_ms, waiter *w) {
  /* Waiting here would stall a completion-queue thread, and with both
   * stalled, the whole process's RPCs. */
  if (!mc__rpc_may_block())
    return mc__error_set(MC_FAILED_PRECONDITION,
                         "blocking rpc %s from a non-blocking handler or "
                         "callback: mark the method blocking or use "
                         "mc__rpc_unary_async",
                         method_path ? method_path : "(null)");
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  mc_code rc = start_call(ch, method_path, request, response_type, timeout_ms,
                          response_type ? on_sync_done : NULL,
                          response_type ? NULL : on_sync_bytes_done, w, 0);
  if (rc == MC_OK) {
    pthread_mutex_lock(&w->mu);
    while (!w->finished)
      pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    rc = w->code;
    if (rc != MC_OK)
      mc__error_set(rc, "%s", w->message);
  }
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  return rc;
}

mc_code mc__rpc_unary_bytes(mc_rpc_channel *ch, const char *method_path,
                            const ProtobufCMessage *request, int64_t timeout_ms,
                            mc_rpc_payload **response) {
  if (response == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "rpc call: NULL response");
  *response = NULL;
  waiter w = {.finished = 0};
  mc_code rc = wait_call(ch, method_path, request, NULL, timeout_ms, &w);
  if (rc == MC_OK)
    *response = w.payload;
  return rc;
}

mc_code mc__rpc_unary(mc_rpc_channel *ch, const char *method_path,
                      const ProtobufCMessage *request,
                      const ProtobufCMessageDescriptor *response_type,
                      int64_t timeout_ms, ProtobufCMessage **response) {
  if (response == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "rpc call: NULL response");
  *response = NULL;
  waiter w = {.finished = 0};
  mc_code rc =
      wait_call(ch, method_path, request, response_type, timeout_ms, &w);
  if (rc == MC_OK)
    *response = w.resp;
  return rc;
}
