/* rpc_server.c: the server side of the gRPC runtime. A method table maps
 * paths to handlers. Each server keeps a few generic requests
 * (grpc_server_request_call) posted on the shared completion queue; a call
 * is routed by its path, its message received and decoded, and unknown
 * paths are answered UNIMPLEMENTED (never left hanging).
 *
 * A call context lives from the moment its request is posted until its last
 * reference is gone: one reference for the RECV_CLOSE_ON_SERVER op (which
 * also reports cancellation), one for the reply (owned by whoever must
 * reply: the handler, the timer of a delayed call, the held list), and one
 * more while a timer or the held list points at it. The server counts
 * contexts; stop waits for the shutdown tag AND a count of zero before
 * destroying anything (GRPC-CORE-NOTES pitfall 1). */
#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/pb.h"
#include "core/status.h"
#include "rpc/internal.h"

/* Requests kept posted per server. Every call arrives through these
 * generic requests and is routed by path here: a server costs a few posted
 * requests however many methods it has (registering each method with gRPC
 * would need one posted request per method, most of a server's start-up
 * time and idle memory). */
#define POSTED_REQUESTS 4
#define DEFAULT_GRACE_MS 100

enum srv_state { SRV_NEW, SRV_BOUND, SRV_STARTED, SRV_STOPPING, SRV_STOPPED };

/* What happens to a call between arrival and reply (atomic, CAS'd). */
enum call_state {
  CALL_DISPATCHED, /* a handler (or the runtime) owes the reply */
  CALL_DELAYED,    /* parked on the timer */
  CALL_HELD,       /* parked on the held list */
  CALL_DROPPED,    /* never answered; released on cancellation */
  CALL_REPLIED,
  CALL_FINISHED /* released without a reply (cancelled) */
};

typedef struct srv_method {
  mc_rpc_method m;
  void *arg;
} srv_method;

struct mc_rpc_call {
  mc__rpc_op req_op, recv_op, close_op, send_op;
  mc__rpc_task task; /* pool or timer */
  mc_rpc_server *server;
  int method; /* index into server->methods, -1 for the catch-all */
  atomic_int refs;
  atomic_int state;
  atomic_int cancelled;
  grpc_call *call;
  gpr_timespec deadline;
  grpc_byte_buffer *payload;
  grpc_metadata_array md;
  grpc_call_details details;
  ProtobufCMessage *request;
  int close_cancelled; /* RECV_CLOSE_ON_SERVER output */
  /* reply batch resources, released when the batch completes */
  grpc_byte_buffer *send_payload;
  grpc_slice status_details;
  pthread_mutex_t mu; /* on_cancel callback */
  void (*cancel_fn)(void *);
  void *cancel_arg;
  mc_rpc_decision decision;
  mc_code reply_code;
  char reply_message[256];
  char caller[128];
  char path[160];
  int64_t start_ns;
  struct mc_rpc_call *held_next;
};

struct mc_rpc_server {
  char *name, *host;
  int req_port, grace_ms;
  atomic_int port;
  srv_method *methods;
  size_t num_methods;
  grpc_server *server;
  mc__rpc_op shutdown_op;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int state;
  int shutdown_done; /* the shutdown tag arrived */
  int destroying;    /* one stopper destroys, the others wait */
  int live;          /* call contexts alive (posted requests included) */
  mc_rpc_call *held_head, *held_tail;
};

static void call_unref(mc_rpc_call *c);
static void reply_internal(mc_rpc_call *c, const ProtobufCMessage *resp,
                           mc_code code, const char *message);

/* ---- server object ---- */

mc_code mc__rpc_server_new(mc_rpc_server **out,
                           const mc_rpc_server_options *opts) {
  mc_rpc_server_options defaults = MC_RPC_SERVER_OPTIONS_INIT;
  if (out == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "rpc server: NULL out");
  *out = NULL;
  if (opts == NULL)
    opts = &defaults;
  if (opts->version != MC_RPC_SERVER_OPTIONS_VERSION)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "rpc server options version %d (expected %d)",
                         opts->version, MC_RPC_SERVER_OPTIONS_VERSION);
  if (opts->port < 0 || opts->port > 65535)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "rpc server port %d outside 0..65535", opts->port);
  const char *host = opts->host;
  if (host == NULL || *host == '\0')
    host = opts->bind_all ? "0.0.0.0" : "127.0.0.1";
  mc_rpc_server *s = calloc(1, sizeof *s);
  if (s == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  s->name = strdup(opts->name ? opts->name : "server");
  s->host = strdup(host);
  if (s->name == NULL || s->host == NULL) {
    free(s->name);
    free(s->host);
    free(s);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  s->req_port = opts->port;
  s->grace_ms = opts->grace_ms < 0 ? DEFAULT_GRACE_MS : opts->grace_ms;
  pthread_mutex_init(&s->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->cv, &ca);
  pthread_condattr_destroy(&ca);
  mc_code rc = mc__rpc_runtime_ref();
  if (rc != MC_OK) {
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->name);
    free(s->host);
    free(s);
    return rc;
  }
  *out = s;
  return MC_OK;
}

const char *mc__rpc_server_name(const mc_rpc_server *s) {
  return s->name;
}

int mc__rpc_server_port(const mc_rpc_server *s) {
  return atomic_load(&((mc_rpc_server *)s)->port);
}

mc_code mc__rpc_server_add_service(mc_rpc_server *s,
                                   const mc_rpc_service *svc) {
  if (s == NULL || svc == NULL || (svc->num_methods && svc->methods == NULL))
    return mc__error_set(MC_INVALID_ARGUMENT, "rpc add_service: NULL argument");
  pthread_mutex_lock(&s->mu);
  int state = s->state;
  pthread_mutex_unlock(&s->mu);
  if (state != SRV_NEW)
    return mc__error_set(MC_FAILED_PRECONDITION,
                         "cannot add service %s to server %s: already bound",
                         svc->name ? svc->name : "?", s->name);
  for (size_t i = 0; i < svc->num_methods; i++) {
    const mc_rpc_method *m = &svc->methods[i];
    if (m->path == NULL || m->path[0] != '/' || m->request_type == NULL ||
        m->response_type == NULL || m->handler == NULL)
      return mc__error_set(
          MC_INVALID_ARGUMENT,
          "service %s: method %zu (\"%s\") needs a \"/pkg.Service/Method\" "
          "path, request and response types and a handler",
          svc->name ? svc->name : "?", i, m->path ? m->path : "(null)");
    if (strlen(m->path) >= sizeof(((mc_rpc_call *)0)->path))
      return mc__error_set(MC_INVALID_ARGUMENT, "method path \"%s\" too long",
                           m->path);
    for (size_t j = 0; j < s->num_methods; j++)
      if (strcmp(s->methods[j].m.path, m->path) == 0)
        return mc__error_set(MC_ALREADY_EXISTS,
                             "method %s registered twice on server %s", m->path,
                             s->name);
    for (size_t j = 0; j < i; j++)
      if (strcmp(svc->methods[j].path, m->path) == 0)
        return mc__error_set(MC_ALREADY_EXISTS,
                             "method %s listed twice in service %s", m->path,
                             svc->name ? svc->name : "?");
  }
  srv_method *grown = realloc(
      s->methods, (s->num_methods + svc->num_methods + 1) * sizeof *grown);
  if (grown == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  s->methods = grown;
  for (size_t i = 0; i < svc->num_methods; i++) {
    srv_method *sm = &s->methods[s->num_methods++];
    sm->m = svc->methods[i];
    sm->arg = svc->arg;
  }
  return MC_OK;
}

int mc__rpc_server_has_service(const mc_rpc_server *s, const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < s->num_methods; i++) {
    const char *p = s->methods[i].m.path;
    if (strncmp(p + 1, name, n) == 0 && p[n + 1] == '/')
      return 1;
  }
  return 0;
}

/* ---- call contexts ---- */

static void on_request(mc__rpc_op *op, int ok);
static void on_recv(mc__rpc_op *op, int ok);
static void on_close(mc__rpc_op *op, int ok);
static void on_send(mc__rpc_op *op, int ok);

/* Posts one generic request. */
static void arm(mc_rpc_server *s) {
  mc_rpc_call *c = calloc(1, sizeof *c);
  if (c == NULL)
    return; /* one fewer posted request; the others still serve */
  c->server = s;
  c->method = -1;
  c->req_op.cb = on_request;
  c->recv_op.cb = on_recv;
  c->close_op.cb = on_close;
  c->send_op.cb = on_send;
  atomic_init(&c->refs, 1);
  pthread_mutex_init(&c->mu, NULL);
  grpc_metadata_array_init(&c->md);
  grpc_call_details_init(&c->details);
  pthread_mutex_lock(&s->mu);
  if (s->state != SRV_STARTED) {
    pthread_mutex_unlock(&s->mu);
    grpc_metadata_array_destroy(&c->md);
    grpc_call_details_destroy(&c->details);
    pthread_mutex_destroy(&c->mu);
    free(c);
    return;
  }
  s->live++;
  /* Posting under the lock orders it before shutdown_and_notify. */
  MC__RPC_HANDOFF(&c->req_op);
  grpc_call_error err =
      grpc_server_request_call(s->server, &c->call, &c->details, &c->md,
                               mc__rpc_cq(), mc__rpc_cq(), &c->req_op);
  pthread_mutex_unlock(&s->mu);
  if (err != GRPC_CALL_OK)
    call_unref(c);
}

static void call_unref(mc_rpc_call *c) {
  if (atomic_fetch_sub(&c->refs, 1) != 1)
    return;
  mc_rpc_server *s = c->server;
  if (c->call)
    grpc_call_unref(c->call);
  if (c->request)
    protobuf_c_message_free_unpacked(c->request, NULL);
  if (c->payload)
    grpc_byte_buffer_destroy(c->payload);
  grpc_metadata_array_destroy(&c->md);
  grpc_call_details_destroy(&c->details);
  pthread_mutex_destroy(&c->mu);
  free(c);
  pthread_mutex_lock(&s->mu);
  if (--s->live == 0)
    pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void trace_server(mc_rpc_call *c, mc_code code, const char *message) {
  mc_rpc_trace_event ev = {.server_side = 1,
                           .caller = c->caller,
                           .callee = c->server->name,
                           .method = c->path,
                           .start_ns = c->start_ns,
                           .end_ns = mc__rpc_now_ns(),
                           .code = code,
                           .message = message ? message : "",
                           .fault = c->decision.fault};
  mc__rpc_trace(&ev);
}

/* Releases a parked call without replying (it was cancelled). */
static void finish_unreplied(mc_rpc_call *c) {
  trace_server(c, MC_CANCELLED, "cancelled before reply");
  call_unref(c); /* the reply reference */
}

static void run_handler(mc_rpc_call *c) {
  srv_method *sm = &c->server->methods[c->method];
  char saved[128];
  snprintf(saved, sizeof saved, "%s", mc__rpc_get_caller());
  mc__rpc_set_caller(c->server->name);
  /* The handler's own reference: the server's stop (which waits for every
   * context) then also waits for handlers that replied but have not
   * returned, so whatever they still touch (a service's lock, unlocked
   * after the reply) outlives them. */
  atomic_fetch_add(&c->refs, 1);
  sm->m.handler(c, c->request, sm->arg);
  call_unref(c);
  mc__rpc_set_caller(strcmp(saved, "client") == 0 ? NULL : saved);
}

static void pool_task(mc__rpc_task *t) {
  mc_rpc_call *c = (mc_rpc_call *)((char *)t - offsetof(mc_rpc_call, task));
  run_handler(c);
}

/* The call is CALL_DISPATCHED: apply a FAIL decision or run the handler. */
static void dispatch(mc_rpc_call *c) {
  if (c->decision.action == MC_RPC_FAIL) {
    mc_code code =
        c->decision.code == MC_OK ? MC_UNAVAILABLE : c->decision.code;
    reply_internal(c, NULL, code, c->decision.message);
    return;
  }
  if (c->server->methods[c->method].m.blocking) {
    c->task.fn = pool_task;
    mc__rpc_pool_submit(&c->task);
  } else {
    run_handler(c);
  }
}

static void timer_task(mc__rpc_task *t) {
  mc_rpc_call *c = (mc_rpc_call *)((char *)t - offsetof(mc_rpc_call, task));
  int expected = CALL_DELAYED;
  if (atomic_compare_exchange_strong(&c->state, &expected, CALL_DISPATCHED))
    dispatch(c);
  call_unref(c); /* the timer's reference */
}

static void handle_call(mc_rpc_call *c) {
  mc_rpc_server *s = c->server;
  c->start_ns = mc__rpc_now_ns();
  snprintf(c->caller, sizeof c->caller, "client");
  for (size_t i = 0; i < c->md.count; i++)
    if (grpc_slice_str_cmp(c->md.metadata[i].key, "mc-caller") == 0)
      mc__rpc_slice_copy(c->caller, sizeof c->caller, c->md.metadata[i].value);
  mc__rpc_slice_copy(c->path, sizeof c->path, c->details.method);
  c->deadline = c->details.deadline;
  for (size_t i = 0; i < s->num_methods; i++) {
    if (grpc_slice_str_cmp(c->details.method, s->methods[i].m.path) == 0) {
      c->method = (int)i;
      break;
    }
  }

  /* Two references from here: the close op and the reply. */
  atomic_store(&c->refs, 2);
  atomic_store(&c->state, CALL_DISPATCHED);
  grpc_op close = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER};
  close.data.recv_close_on_server.cancelled = &c->close_cancelled;
  {
    grpc_call *call = c->call; /* c may be freed once handed off */
    MC__RPC_HANDOFF(&c->close_op);
    if (grpc_call_start_batch(call, &close, 1, &c->close_op, NULL) !=
        GRPC_CALL_OK)
      call_unref(c);
  }

  if (c->method < 0) {
    char msg[256];
    snprintf(msg, sizeof msg, "unknown method %s on %s", c->path, s->name);
    reply_internal(c, NULL, MC_UNIMPLEMENTED, msg);
    return;
  }
  /* The reply reference rides on the receive op until on_recv. */
  grpc_op recv = {.op = GRPC_OP_RECV_MESSAGE};
  recv.data.recv_message.recv_message = &c->payload;
  {
    grpc_call *call = c->call; /* c may be freed once handed off */
    MC__RPC_HANDOFF(&c->recv_op);
    if (grpc_call_start_batch(call, &recv, 1, &c->recv_op, NULL) !=
        GRPC_CALL_OK)
      on_recv(&c->recv_op, 0);
  }
}

/* The request message arrived (or the call died first). */
static void on_recv(mc__rpc_op *op, int ok) {
  mc_rpc_call *c = (mc_rpc_call *)((char *)op - offsetof(mc_rpc_call, recv_op));
  mc_rpc_server *s = c->server;
  if (!ok) {
    int expected = CALL_DISPATCHED;
    if (atomic_compare_exchange_strong(&c->state, &expected, CALL_FINISHED))
      finish_unreplied(c);
    return;
  }
  const srv_method *sm = &s->methods[c->method];
  grpc_byte_buffer_reader reader;
  if (c->payload == NULL ||
      !grpc_byte_buffer_reader_init(&reader, c->payload)) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s on %s: request has no message", c->path,
             s->name);
    reply_internal(c, NULL, MC_INVALID_ARGUMENT, msg);
    return;
  }
  grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
  grpc_byte_buffer_reader_destroy(&reader);
  c->request = mc__pb_unpack(sm->m.request_type, GRPC_SLICE_LENGTH(all),
                             GRPC_SLICE_START_PTR(all));
  size_t len = GRPC_SLICE_LENGTH(all);
  grpc_slice_unref(all);
  if (c->request == NULL) {
    char msg[256];
    snprintf(msg, sizeof msg,
             "%s on %s: cannot decode the request as %s (%zu bytes)", c->path,
             s->name, sm->m.request_type->name, len);
    reply_internal(c, NULL, MC_INVALID_ARGUMENT, msg);
    return;
  }

  mc_rpc_call_info info = {s, s->name, c->path, c->caller};
  mc__rpc_intercept(&info, &c->decision);
  switch (c->decision.action) {
  case MC_RPC_DROP:
    /* Once the state says DROPPED, on_close (on another CQ thread) may
     * finish the call and drop the last references, so hold one of our own
     * while we still look at it. */
    atomic_fetch_add(&c->refs, 1);
    atomic_store(&c->state, CALL_DROPPED);
    if (atomic_load(&c->cancelled)) {
      int expected = CALL_DROPPED;
      if (atomic_compare_exchange_strong(&c->state, &expected, CALL_FINISHED))
        finish_unreplied(c);
    }
    call_unref(c);
    return;
  case MC_RPC_HOLD:
    atomic_fetch_add(&c->refs, 1); /* the held list's reference */
    atomic_store(&c->state, CALL_HELD);
    pthread_mutex_lock(&s->mu);
    c->held_next = NULL;
    if (s->held_tail)
      s->held_tail->held_next = c;
    else
      s->held_head = c;
    s->held_tail = c;
    pthread_mutex_unlock(&s->mu);
    return;
  default:
    break;
  }
  if (c->decision.delay_ms > 0) {
    atomic_fetch_add(&c->refs, 1); /* the timer's reference */
    atomic_store(&c->state, CALL_DELAYED);
    c->task.fn = timer_task;
    c->task.when_ns = mc__rpc_now_ns() + c->decision.delay_ms * 1000000;
    mc__rpc_timer_add(&c->task);
    return;
  }
  dispatch(c);
}

static void on_request(mc__rpc_op *op, int ok) {
  mc_rpc_call *c = (mc_rpc_call *)((char *)op - offsetof(mc_rpc_call, req_op));
  if (!ok) { /* the server is shutting down */
    call_unref(c);
    return;
  }
  arm(c->server); /* re-arm first; arm() checks the state */
  handle_call(c);
}

static void on_close(mc__rpc_op *op, int ok) {
  mc_rpc_call *c =
      (mc_rpc_call *)((char *)op - offsetof(mc_rpc_call, close_op));
  if (!ok || c->close_cancelled) {
    atomic_store(&c->cancelled, 1);
    pthread_mutex_lock(&c->mu);
    void (*fn)(void *) = c->cancel_fn;
    void *arg = c->cancel_arg;
    c->cancel_fn = NULL;
    pthread_mutex_unlock(&c->mu);
    if (fn)
      fn(arg);
    int st = atomic_load(&c->state);
    if ((st == CALL_DROPPED || st == CALL_HELD || st == CALL_DELAYED) &&
        atomic_compare_exchange_strong(&c->state, &st, CALL_FINISHED)) {
      if (st == CALL_DELAYED && mc__rpc_timer_cancel(&c->task))
        call_unref(c); /* the timer's reference */
      finish_unreplied(c);
    }
  }
  call_unref(c);
}

static void on_send(mc__rpc_op *op, int ok) {
  (void)ok;
  mc_rpc_call *c = (mc_rpc_call *)((char *)op - offsetof(mc_rpc_call, send_op));
  if (c->send_payload)
    grpc_byte_buffer_destroy(c->send_payload);
  grpc_slice_unref(c->status_details);
  trace_server(c, c->reply_code, c->reply_message);
  call_unref(c);
}

/* Sends the reply: payload (taken over; NULL unless code is MC_OK) and the
 * status. */
static void reply_payload(mc_rpc_call *c, grpc_byte_buffer *payload,
                          mc_code code, const char *message) {
  grpc_op ops[3];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (payload != NULL) {
    c->send_payload = payload;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->send_payload;
  }
  snprintf(c->reply_message, sizeof c->reply_message, "%s",
           message ? message : "");
  c->reply_code = code;
  c->status_details = grpc_slice_from_copied_string(c->reply_message);
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = (grpc_status_code)code;
  ops[n++].data.send_status_from_server.status_details = &c->status_details;
  {
    grpc_call *call = c->call; /* c may be freed once handed off */
    MC__RPC_HANDOFF(&c->send_op);
    if (grpc_call_start_batch(call, ops, n, &c->send_op, NULL) != GRPC_CALL_OK)
      on_send(&c->send_op, 0);
  }
}

static void reply_internal(mc_rpc_call *c, const ProtobufCMessage *resp,
                           mc_code code, const char *message) {
  grpc_byte_buffer *payload = NULL;
  if (code == MC_OK && resp == NULL) {
    code = MC_INTERNAL;
    message = "handler replied OK without a response";
  } else if (code == MC_OK) {
    size_t len = protobuf_c_message_get_packed_size(resp);
    grpc_slice slice = grpc_slice_malloc(len);
    protobuf_c_message_pack(resp, GRPC_SLICE_START_PTR(slice));
    payload = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
  }
  reply_payload(c, payload, code, message);
}

/* Claims the reply of a call: 0 (and a complaint) when it was replied to
 * already. */
static int claim_reply(mc_rpc_call *c, const char *fn) {
  int expected = CALL_DISPATCHED;
  if (c == NULL ||
      !atomic_compare_exchange_strong(&c->state, &expected, CALL_REPLIED)) {
    fprintf(stderr,
            "minicluster: %s on a call that was already replied to (a "
            "service bug)\n",
            fn);
    return 0;
  }
  /* A cancel callback that has not started will not run after a reply. */
  pthread_mutex_lock(&c->mu);
  c->cancel_fn = NULL;
  pthread_mutex_unlock(&c->mu);
  return 1;
}

void mc__rpc_call_reply(mc_rpc_call *c, const ProtobufCMessage *response,
                        mc_code code, const char *message) {
  if (claim_reply(c, "mc__rpc_call_reply"))
    reply_internal(c, response, code, message);
}

void mc__rpc_call_reply_bytes(mc_rpc_call *c, const mc_rpc_bytes *parts,
                              size_t nparts) {
  if (!claim_reply(c, "mc__rpc_call_reply_bytes")) {
    mc__rpc_bytes_release(parts, nparts);
    return;
  }
  grpc_byte_buffer *payload = mc__rpc_bytes_buffer(parts, nparts);
  if (payload == NULL)
    reply_payload(c, NULL, MC_RESOURCE_EXHAUSTED,
                  "out of memory for the reply");
  else
    reply_payload(c, payload, MC_OK, NULL);
}

const char *mc__rpc_call_caller(const mc_rpc_call *c) {
  return c->caller;
}
const char *mc__rpc_call_method(const mc_rpc_call *c) {
  return c->path;
}
mc_rpc_server *mc__rpc_call_server(const mc_rpc_call *c) {
  return c->server;
}

int64_t mc__rpc_call_remaining_ms(const mc_rpc_call *c) {
  gpr_timespec dl = gpr_convert_clock_type(c->deadline, GPR_CLOCK_MONOTONIC);
  if (gpr_time_cmp(dl, gpr_inf_future(GPR_CLOCK_MONOTONIC)) == 0 ||
      dl.tv_sec > INT64_MAX / 2000)
    return INT64_MAX;
  gpr_timespec left = gpr_time_sub(dl, gpr_now(GPR_CLOCK_MONOTONIC));
  return gpr_time_to_millis(left);
}

int mc__rpc_call_cancelled(const mc_rpc_call *c) {
  return atomic_load(&((mc_rpc_call *)c)->cancelled);
}

void mc__rpc_call_on_cancel(mc_rpc_call *c, void (*fn)(void *), void *arg) {
  pthread_mutex_lock(&c->mu);
  int now = atomic_load(&c->cancelled);
  c->cancel_fn = now ? NULL : fn;
  c->cancel_arg = arg;
  pthread_mutex_unlock(&c->mu);
  if (now && fn)
    fn(arg);
}

/* ---- start / stop ---- */

static void on_shutdown(mc__rpc_op *op, int ok) {
  (void)ok;
  mc_rpc_server *s =
      (mc_rpc_server *)((char *)op - offsetof(mc_rpc_server, shutdown_op));
  pthread_mutex_lock(&s->mu);
  s->shutdown_done = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* gRPC reports a failed bind only in its log, as a nested error tree; the
 * OS error inside it is what a user needs ("Address already in use"). */
static const char *bind_reason(const char *log) {
  static const int errs[] = {EADDRINUSE,   EACCES, EADDRNOTAVAIL,
                             EAFNOSUPPORT, EMFILE, ENFILE};
  for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++)
    if (strcasestr(log, strerror(errs[i])) != NULL)
      return strerror(errs[i]);
  return log[0] ? log : "gRPC gave no reason";
}

/* Creates the gRPC server and binds; called with s->mu held in SRV_NEW. */
static mc_code bind_locked(mc_rpc_server *s) {
  grpc_arg args[3] = {
      /* Never share a taken port (GRPC-CORE-NOTES pitfall 4). */
      {.type = GRPC_ARG_INTEGER,
       .key = GRPC_ARG_ALLOW_REUSEPORT,
       .value.integer = 0},
      {.type = GRPC_ARG_INTEGER,
       .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
       .value.integer = -1},
      {.type = GRPC_ARG_INTEGER,
       .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
       .value.integer = -1},
  };
  grpc_channel_args cargs = {3, args};
  s->server = grpc_server_create(&cargs, NULL);
  grpc_server_register_completion_queue(s->server, mc__rpc_cq(), NULL);
  char addr[300];
  int v6 = strchr(s->host, ':') != NULL;
  snprintf(addr, sizeof addr, v6 ? "[%s]:%d" : "%s:%d", s->host, s->req_port);
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  mc__rpc_log_capture_begin();
  int port = grpc_server_add_http2_port(s->server, addr, creds);
  const char *why = mc__rpc_log_capture_end();
  grpc_server_credentials_release(creds);
  if (port <= 0) {
    grpc_server_destroy(s->server);
    s->server = NULL;
    s->state = SRV_STOPPED;
    return mc__error_set(MC_UNAVAILABLE, "server %s: cannot bind %s: %s",
                         s->name, addr, bind_reason(why));
  }
  atomic_store(&s->port, port);
  s->state = SRV_BOUND;
  return MC_OK;
}

mc_code mc__rpc_server_bind(mc_rpc_server *s) {
  if (s == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "rpc server bind: NULL");
  pthread_mutex_lock(&s->mu);
  mc_code rc = s->state == SRV_NEW
                   ? bind_locked(s)
                   : mc__error_set(MC_FAILED_PRECONDITION,
                                   "server %s was already bound", s->name);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

mc_code mc__rpc_server_start(mc_rpc_server *s) {
  if (s == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "rpc server start: NULL");
  pthread_mutex_lock(&s->mu);
  mc_code rc = MC_OK;
  if (s->state == SRV_NEW)
    rc = bind_locked(s);
  else if (s->state != SRV_BOUND)
    rc = mc__error_set(MC_FAILED_PRECONDITION,
                       "server %s was already started or stopped", s->name);
  if (rc != MC_OK) {
    pthread_mutex_unlock(&s->mu);
    return rc;
  }
  grpc_server_start(s->server);
  s->state = SRV_STARTED;
  s->shutdown_op.cb = on_shutdown;
  pthread_mutex_unlock(&s->mu);
  for (int k = 0; k < POSTED_REQUESTS; k++)
    arm(s);
  return MC_OK;
}

void mc__rpc_server_stop_begin(mc_rpc_server *s) {
  if (s == NULL)
    return;
  pthread_mutex_lock(&s->mu);
  if (s->state == SRV_STARTED) {
    s->state = SRV_STOPPING;
    MC__RPC_HANDOFF(&s->shutdown_op);
    grpc_server_shutdown_and_notify(s->server, mc__rpc_cq(), &s->shutdown_op);
  } else if (s->state == SRV_NEW) {
    s->state = SRV_STOPPED;
  } else if (s->state == SRV_BOUND) {
    /* Never started: gRPC allows destroying it without a shutdown. */
    grpc_server_destroy(s->server);
    s->server = NULL;
    s->state = SRV_STOPPED;
  }
  pthread_mutex_unlock(&s->mu);
}

/* Releases the calls parked on the held list (the server is stopping and
 * has cancelled them). */
static void drain_held(mc_rpc_server *s) {
  pthread_mutex_lock(&s->mu);
  mc_rpc_call *list = s->held_head;
  s->held_head = s->held_tail = NULL;
  pthread_mutex_unlock(&s->mu);
  while (list) {
    mc_rpc_call *next = list->held_next;
    int expected = CALL_HELD;
    if (atomic_compare_exchange_strong(&list->state, &expected, CALL_FINISHED))
      finish_unreplied(list);
    call_unref(list); /* the list's reference */
    list = next;
  }
}

void mc__rpc_server_stop(mc_rpc_server *s) {
  if (s == NULL)
    return;
  mc__rpc_server_stop_begin(s);
  pthread_mutex_lock(&s->mu);
  if (s->state == SRV_STOPPED) {
    pthread_mutex_unlock(&s->mu);
    return;
  }
  if (s->destroying) { /* another thread is finishing the stop */
    while (s->state != SRV_STOPPED)
      pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return;
  }
  s->destroying = 1;
  int64_t deadline = mc__rpc_now_ns() + (int64_t)s->grace_ms * 1000000;
  struct timespec ts = {(time_t)(deadline / 1000000000),
                        (long)(deadline % 1000000000)};
  while (!(s->shutdown_done && s->live == 0))
    if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) != 0)
      break;
  if (!(s->shutdown_done && s->live == 0)) {
    pthread_mutex_unlock(&s->mu);
    grpc_server_cancel_all_calls(s->server);
    drain_held(s);
    pthread_mutex_lock(&s->mu);
    while (!(s->shutdown_done && s->live == 0))
      pthread_cond_wait(&s->cv, &s->mu);
  }
  grpc_server_destroy(s->server);
  s->server = NULL;
  s->state = SRV_STOPPED;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

void mc__rpc_server_set_grace_ms(mc_rpc_server *s, int grace_ms) {
  pthread_mutex_lock(&s->mu);
  s->grace_ms = grace_ms < 0 ? 0 : grace_ms;
  pthread_mutex_unlock(&s->mu);
}

void mc__rpc_server_resume_held(mc_rpc_server *s) {
  pthread_mutex_lock(&s->mu);
  mc_rpc_call *list = s->held_head;
  s->held_head = s->held_tail = NULL;
  pthread_mutex_unlock(&s->mu);
  while (list) {
    mc_rpc_call *next = list->held_next;
    int expected = CALL_HELD;
    if (atomic_compare_exchange_strong(&list->state, &expected,
                                       CALL_DISPATCHED))
      dispatch(list);
    call_unref(list);
    list = next;
  }
}

void mc__rpc_server_free(mc_rpc_server *s) {
  if (s == NULL)
    return;
  mc__rpc_server_stop(s);
  free(s->methods);
  free(s->name);
  free(s->host);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s);
  mc__rpc_runtime_unref();
}
