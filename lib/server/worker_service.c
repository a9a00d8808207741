/* worker_service.c: TensorFlow's WorkerService on every task, at
 * TensorFlow's method paths: RPC table + handlers. */
#include <stdio.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "rpc/rpc.h"
#include "server/task.h"
#include "session/tensor.h"
#include "session/worker.h"
#include "worker.pb-c.h"

/* Per-task state of the service. */
typedef struct ws {
  mc_task *task;
  mc__worker *worker; /* graphs, rendezvous and variables of sessions */
} ws;

/* TensorFlow's default memory_limit of a CPU device (256 MiB). */
#define CPU_MEMORY_LIMIT 268435456

/* GetStatus: the task's devices (one CPU). */
static void get_status(mc_rpc_call *call, const ProtobufCMessage *request,
                       void *arg) {
  (void)request;
  mc_task *task = ((ws *)arg)->task;
  char name[300];
  snprintf(name, sizeof name, "%s/device:CPU:0", task->device_prefix);
  Tensorflow__DeviceAttributes cpu = TENSORFLOW__DEVICE_ATTRIBUTES__INIT;
  cpu.name = name;
  cpu.device_type = "CPU";
  cpu.memory_limit = CPU_MEMORY_LIMIT;
  cpu.incarnation = task->incarnation;
  Tensorflow__DeviceAttributes *devices[] = {&cpu};
  Tensorflow__GetStatusResponse resp = TENSORFLOW__GET_STATUS_RESPONSE__INIT;
  resp.n_device_attributes = 1;
  resp.device_attributes = devices;
  mc__rpc_call_reply(call, &resp.base, MC_OK, NULL);
}

/* CreateWorkerSession: graphs are registered under the session handle
 * anyway; nothing else to set up. */
static void create_worker_session(mc_rpc_call *call,
                                  const ProtobufCMessage *request, void *arg) {
  (void)request;
  (void)arg;
  Tensorflow__CreateWorkerSessionResponse resp =
      TENSORFLOW__CREATE_WORKER_SESSION_RESPONSE__INIT;
  mc__rpc_call_reply(call, &resp.base, MC_OK, NULL);
}

/* DeleteWorkerSession: drops every graph registered by the session. */
static void delete_worker_session(mc_rpc_call *call,
                                  const ProtobufCMessage *request, void *arg) {
  const Tensorflow__DeleteWorkerSessionRequest *req =
      (const Tensorflow__DeleteWorkerSessionRequest *)request;
  mc__worker_delete_session(((ws *)arg)->worker, req->session_handle);
  Tensorflow__DeleteWorkerSessionResponse resp =
      TENSORFLOW__DELETE_WORKER_SESSION_RESPONSE__INIT;
  mc__rpc_call_reply(call, &resp.base, MC_OK, NULL);
}

/* RegisterGraph: compiles this task's partition (unknown ops fail here). */
static void register_graph(mc_rpc_call *call, const ProtobufCMessage *request,
                           void *arg) {
  const Tensorflow__RegisterGraphRequest *req =
      (const Tensorflow__RegisterGraphRequest *)request;
  Tensorflow__GraphDef empty = TENSORFLOW__GRAPH_DEF__INIT;
  char *handle;
  mc_code rc =
      mc__worker_register(((ws *)arg)->worker, req->session_handle,
                          req->graph_def ? req->graph_def : &empty, &handle);
  if (rc != MC_OK) {
    mc__rpc_call_reply(call, NULL, rc, mc_error_last()->message);
    return;
  }
  Tensorflow__RegisterGraphResponse resp =
      TENSORFLOW__REGISTER_GRAPH_RESPONSE__INIT;
  resp.graph_handle = handle;
  mc__rpc_call_reply(call, &resp.base, MC_OK, NULL);
  free(handle);
}

static void deregister_graph(mc_rpc_call *call, const ProtobufCMessage *request,
                             void *arg) {
  const Tensorflow__DeregisterGraphRequest *req =
      (const Tensorflow__DeregisterGraphRequest *)request;
  mc_code rc = mc__worker_deregister(((ws *)arg)->worker, req->graph_handle);
  Tensorflow__DeregisterGraphResponse resp =
      TENSORFLOW__DEREGISTER_GRAPH_RESPONSE__INIT;
  mc__rpc_call_reply(call, &resp.base, rc,
                     rc == MC_OK ? NULL : mc_error_last()->message);
}

/* RunGraph: runs the partition for one step, bounded by the caller's
 * deadline. */
static void run_graph_now(mc_rpc_call *call,
                          const Tensorflow__RunGraphRequest *req, ws *s) {
  Tensorflow__RunGraphResponse resp = TENSORFLOW__RUN_GRAPH_RESPONSE__INIT;
  mc_code rc =
      mc__worker_run(s->worker, req, mc__rpc_call_remaining_ms(call), &resp);
  if (rc != MC_OK && req->store_errors_in_response_body) {
    resp.status_code = (Tensorflow__Error__Code)rc;
    resp.status_error_message = (char *)mc_error_last()->message;
    rc = MC_OK;
  }
  mc__rpc_call_reply(call, &resp.base, rc,
                     rc == MC_OK ? NULL : mc_error_last()->message);
  mc__worker_run_response_clear(&resp);
}

typedef struct deferred_run {
  mc_rpc_call *call;
  const Tensorflow__RunGraphRequest *req; /* valid until the reply */
  ws *s;
} deferred_run;

static void run_graph_task(void *arg) {
  deferred_run *d = arg;
  /* Client calls of the step (RecvTensor) are attributed to this task. */
  mc__rpc_set_caller(mc__rpc_server_name(mc__rpc_call_server(d->call)));
  run_graph_now(d->call, d->req, d->s);
  free(d);
}

/* A partition that only moves references (a variable read, a Const) runs
 * inline on the completion-queue thread, saving a thread hand-off per
 * step; anything that may wait for another task or compute goes to the
 * runtime's blocking pool. */
static void run_graph(mc_rpc_call *call, const ProtobufCMessage *request,
                      void *arg) {
  const Tensorflow__RunGraphRequest *req =
      (const Tensorflow__RunGraphRequest *)request;
  ws *s = arg;
  if (mc__worker_graph_is_light(s->worker, req->graph_handle)) {
    run_graph_now(call, req, s);
    return;
  }
  deferred_run *d = calloc(1, sizeof(*d));
  if (d == NULL) {
    mc__rpc_call_reply(call, NULL, MC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  d->call = call;
  d->req = req;
  d->s = s;
  if (mc__rpc_run_blocking(run_graph_task, d) != MC_OK) {
    free(d);
    mc__rpc_call_reply(call, NULL, MC_RESOURCE_EXHAUSTED,
                       mc_error_last()->message);
  }
}

/* CleanupGraph: the master gave up on a step; wake its waiters. */
static void cleanup_graph(mc_rpc_call *call, const ProtobufCMessage *request,
                          void *arg) {
  const Tensorflow__CleanupGraphRequest *req =
      (const Tensorflow__CleanupGraphRequest *)request;
  mc__worker_cleanup_step(((ws *)arg)->worker, req->step_id);
  Tensorflow__CleanupGraphResponse resp =
      TENSORFLOW__CLEANUP_GRAPH_RESPONSE__INIT;
  mc__rpc_call_reply(call, &resp.base, MC_OK, NULL);
}

static void cleanup_all(mc_rpc_call *call, const ProtobufCMessage *request,
                        void *arg) {
  const Tensorflow__CleanupAllRequest *req =
      (const Tensorflow__CleanupAllRequest *)request;
  mc__worker_cleanup_all(((ws *)arg)->worker,
                         (const char *const *)req->container, req->n_container);
  Tensorflow__CleanupAllResponse resp = TENSORFLOW__CLEANUP_ALL_RESPONSE__INIT;
  mc__rpc_call_reply(call, &resp.base, MC_OK, NULL);
}

/* RecvTensor parks its call until the tensor is sent on this task. A
 * parked call is answered exactly once: by the rendezvous or, if the call
 * is cancelled first (client deadline, server stop), by the cancel hook.
 * Both sides find the call by id in this table, so neither touches memory
 * the other may have freed. */
typedef struct parked {
  uint64_t id;
  mc_rpc_call *call;
  struct parked *next;
} parked;

static pthread_mutex_t parked_mu = PTHREAD_MUTEX_INITIALIZER;
static parked *parked_head;
static uint64_t parked_next_id;

/* Unlinks and returns the entry with id, or NULL if the other side took
 * it. */
static parked *take_parked(uint64_t id) {
  pthread_mutex_lock(&parked_mu);
  parked *found = NULL;
  for (parked **pp = &parked_head; *pp != NULL; pp = &(*pp)->next)
    if ((*pp)->id == id) {
      found = *pp;
      *pp = found->next;
      break;
    }
  pthread_mutex_unlock(&parked_mu);
  return found;
}

static void recv_tensor_done(void *arg, mc_code code, const char *msg,
                             mc_tensor *t) {
  parked *p = take_parked((uint64_t)(uintptr_t)arg);
  if (p == NULL) { /* cancelled and answered already */
    mc_tensor_free(t);
    return;
  }
  Tensorflow__RecvTensorResponse resp = TENSORFLOW__RECV_TENSOR_RESPONSE__INIT;
  if (code == MC_OK && mc__tensor_to_proto(t, &resp.tensor) != MC_OK) {
    code = mc_error_last()->code;
    msg = mc_error_last()->message;
  }
  mc__rpc_call_reply(p->call, &resp.base, code, code == MC_OK ? NULL : msg);
  if (resp.tensor)
    protobuf_c_message_free_unpacked(&resp.tensor->base, NULL);
  mc_tensor_free(t);
  free(p);
}

static void recv_tensor_cancelled(void *arg) {
  parked *p = take_parked((uint64_t)(uintptr_t)arg);
  if (p == NULL)
    return;
  mc__rpc_call_reply(p->call, NULL, MC_CANCELLED,
                     "RecvTensor cancelled before the tensor was sent");
  free(p);
}

static void recv_tensor(mc_rpc_call *call, const ProtobufCMessage *request,
                        void *arg) {
  const Tensorflow__RecvTensorRequest *req =
      (const Tensorflow__RecvTensorRequest *)request;
  parked *p = calloc(1, sizeof(*p));
  if (p == NULL) {
    mc__rpc_call_reply(call, NULL, MC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  p->call = call;
  pthread_mutex_lock(&parked_mu);
  p->id = ++parked_next_id;
  p->next = parked_head;
  parked_head = p;
  pthread_mutex_unlock(&parked_mu);
  void *id = (void *)(uintptr_t)p->id;
  /* The reply may happen inside the recv below, which ends the request's
   * life: copy the key first. */
  int64_t step = req->step_id;
  char *key = strdup(req->rendezvous_key);
  mc__rpc_call_on_cancel(call, recv_tensor_cancelled, id);
  if (key == NULL) {
    recv_tensor_done(id, MC_RESOURCE_EXHAUSTED, "out of memory", NULL);
    return;
  }
  mc__worker_recv_local(((ws *)arg)->worker, step, key, recv_tensor_done, id);
  free(key);
}

#define METHOD(name, req, resp, fn, blocking)                                  \
  {                                                                            \
    "/tensorflow.WorkerService/" name, &tensorflow__##req##__descriptor,       \
        &tensorflow__##resp##__descriptor, fn, blocking                        \
  }

static const mc_rpc_method methods[] = {
    METHOD("GetStatus", get_status_request, get_status_response, get_status, 0),
    METHOD("CreateWorkerSession", create_worker_session_request,
           create_worker_session_response, create_worker_session, 0),
    METHOD("DeleteWorkerSession", delete_worker_session_request,
           delete_worker_session_response, delete_worker_session, 0),
    METHOD("RegisterGraph", register_graph_request, register_graph_response,
           register_graph, 1),
    METHOD("DeregisterGraph", deregister_graph_request,
           deregister_graph_response, deregister_graph, 0),
    METHOD("RunGraph", run_graph_request, run_graph_response, run_graph, 0),
    METHOD("CleanupGraph", cleanup_graph_request, cleanup_graph_response,
           cleanup_graph, 0),
    METHOD("CleanupAll", cleanup_all_request, cleanup_all_response, cleanup_all,
           0),
    METHOD("RecvTensor", recv_tensor_request, recv_tensor_response, recv_tensor,
           0),
};

static mc_code attach(mc_task *task, void **state) {
  *state = NULL;
  ws *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  s->task = task;
  mc_code rc = mc__worker_new(&s->worker, task);
  if (rc == MC_OK) {
    mc_rpc_service svc = {"tensorflow.WorkerService", methods,
                          sizeof methods / sizeof methods[0], s};
    rc = mc__rpc_server_add_service(task->rpc, &svc);
  }
  if (rc != MC_OK) {
    mc__worker_free(s->worker);
    free(s);
    return rc;
  }
  *state = s;
  return MC_OK;
}

static void detach(mc_task *task, void *state) {
  (void)task;
  ws *s = state;
  if (s == NULL)
    return;
  mc__worker_free(s->worker);
  free(s);
}

const mc_task_service mc__worker_task_service = {"worker service", attach,
                                                 detach};
