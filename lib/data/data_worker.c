/*
 * data_worker.c: the tf.data WorkerService (RPC table and handlers) and the
 * worker server: heartbeats to the dispatcher, one producer thread per task
 * filling a bounded queue, GetElement calls parked until an element exists.
 */
#include "core/status.h"
#include "data/data_service.h"
#include "data/dataset.h"
#include "data/dispatcher_state.h"
#include "data/element_wire.h"
#include "data_dispatcher.pb-c.h"
#include "data_worker.pb-c.h"
#include "rpc/rpc.h"

#include <minicluster/data_service.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Elements buffered per task before the producer waits, by count and by
 * bytes. */
#define QUEUE_CAP 256
#define QUEUE_BYTES (16u << 20)
/* Bytes of further elements packed into one GetElement response. */
#define BATCH_BYTES (4u << 20)
/* A parked GetElement is answered "no element yet" this long before its
 * deadline, so an element is never sent into a call the client has given
 * up on (that element would be lost). */
#define PARK_MARGIN_MS 4000
/* Per-call deadline of calls to the dispatcher. */
#define DISPATCHER_CALL_MS 5000

typedef mc__wire_element welem;

typedef struct wtask wtask;

struct mc_worker_server {
  mc_worker_config cfg;
  char *dispatcher_address;
  char *address_template;
  char address[160];
  int64_t uid;
  mc_rpc_server *server;
  mc_rpc_channel *disp;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  /* Including deleted ones: their producer is joined and their queue and
   * dataset freed soon after (release_deleted_locked), but the struct
   * stays until the end, since a cancel callback may still hold it. */
  wtask **tasks;
  size_t ntasks, cap;
  int started, stopping, stopped;
  pthread_t hb, reaper;
  int hb_started, reaper_started;
};

struct wtask {
  mc_worker_server *w;
  int64_t id, iteration_id;
  int distributed;
  mc_dataset *ds;
  pthread_t thread;
  int thread_started;
  welem q[QUEUE_CAP];
  int qhead, qlen;
  size_t qbytes;
  mc_rpc_call **waiters;
  size_t nwait, capwait;
  int eos, stop, deleted, completed_reported;
  int done; /* the producer has finished (set by it, under w->mu) */
  mc_code err;
  char errmsg[512];
  int64_t next_index, split_index;
  pthread_cond_t cv;
};

static void welem_free(welem *e) {
  mc__wire_element_clear(e);
}

/* An empty response: neither an element nor the end; the client asks
 * again. */
static void reply_empty(mc_rpc_call *call, int eos) {
  Tensorflow__Data__GetElementResponse resp =
      TENSORFLOW__DATA__GET_ELEMENT_RESPONSE__INIT;
  resp.end_of_sequence = eos;
  mc__rpc_call_reply(call, &resp.base, MC_OK, NULL);
}

/* Removes and returns all parked calls of t matching pred (NULL: all).
 * Called with w->mu held; the caller replies after unlocking. */
static size_t take_waiters(wtask *t, mc_rpc_call **out, size_t max,
                           int (*pred)(mc_rpc_call *)) {
  size_t n = 0, keep = 0;
  for (size_t i = 0; i < t->nwait; i++) {
    if (n < max && (pred == NULL || pred(t->waiters[i])))
      out[n++] = t->waiters[i];
    else
      t->waiters[keep++] = t->waiters[i];
  }
  t->nwait = keep;
  return n;
}

static int is_cancelled(mc_rpc_call *c) {
  return mc__rpc_call_cancelled(c);
}

static int near_deadline(mc_rpc_call *c) {
  return mc__rpc_call_remaining_ms(c) < PARK_MARGIN_MS;
}

static void on_cancel(void *arg) {
  wtask *t = arg;
  mc_rpc_call *calls[64];
  pthread_mutex_lock(&t->w->mu);
  size_t n = take_waiters(t, calls, 64, is_cancelled);
  pthread_mutex_unlock(&t->w->mu);
  for (size_t i = 0; i < n; i++)
    mc__rpc_call_reply(calls[i], NULL, MC_CANCELLED, "GetElement cancelled");
}

/* ---- producer ----------------------------------------------------------- */

static int task_stopped(wtask *t) {
  pthread_mutex_lock(&t->w->mu);
  int s = t->stop;
  pthread_mutex_unlock(&t->w->mu);
  return s;
}

static mc_code get_split(void *arg, int64_t *begin, int64_t *end, int *eos) {
  wtask *t = arg;
  mc_worker_server *w = t->w;
  Tensorflow__Data__GetSplitRequest req =
      TENSORFLOW__DATA__GET_SPLIT_REQUEST__INIT;
  req.iteration_id = t->iteration_id;
  req.task_id = t->id;
  req.split_index = t->split_index;
  int64_t deadline = mc__data_now_ms() + w->cfg.dispatcher_timeout_ms;
  for (;;) {
    if (task_stopped(t))
      return mc__error_set(MC_CANCELLED, "task %lld stopped", (long long)t->id);
    ProtobufCMessage *resp = NULL;
    mc_code rc = mc__rpc_unary(
        w->disp, "/tensorflow.data.DispatcherService/GetSplit", &req.base,
        &tensorflow__data__get_split_response__descriptor, DISPATCHER_CALL_MS,
        &resp);
    if (rc == MC_OK) {
      Tensorflow__Data__GetSplitResponse *r =
          (Tensorflow__Data__GetSplitResponse *)resp;
      if (r->end_of_splits) {
        *eos = 1;
      } else {
        mc_tensor *sp = NULL;
        rc = mc_tensor_from_proto_bytes(r->split.data, r->split.len, &sp);
        if (rc == MC_OK && (mc_tensor_dtype(sp) != MC_DT_INT64 ||
                            mc_tensor_num_elements(sp) != 2))
          rc = mc__error_set(MC_INVALID_ARGUMENT,
                             "split is not an int64 [begin, end] pair");
        if (rc == MC_OK) {
          const int64_t *v = mc_tensor_data(sp);
          *begin = v[0];
          *end = v[1];
          t->split_index++;
        }
        mc_tensor_free(sp);
      }
      protobuf_c_message_free_unpacked(resp, NULL);
      return rc;
    }
    if (!mc__data_retryable(rc) || mc__data_now_ms() >= deadline)
      return mc__error_prefix("GetSplit for task %lld: ", (long long)t->id);
    usleep(50000);
  }
}

static void *producer_main(void *arg) {
  wtask *t = arg;
  mc_worker_server *w = t->w;
  mc_dataset_iterator *it = NULL;
  mc_code rc = mc__dataset_iterator_new_split(
      t->ds, t->distributed ? get_split : NULL, t, &it);
  for (;;) {
    mc_element e = MC_ELEMENT_INIT;
    int eos = 0;
    if (rc == MC_OK)
      rc = mc_dataset_iterator_next(it, &e, &eos);
    welem we = {0};
    if (rc == MC_OK && !eos) {
      rc = mc__wire_element_encode(&e, &we);
      mc_element_clear(&e);
    }
    pthread_mutex_lock(&w->mu);
    if (rc != MC_OK || eos) {
      mc_rpc_call *calls[256];
      size_t n = 0;
      if (!t->stop) {
        t->eos = eos;
        t->err = rc;
        if (rc != MC_OK)
          snprintf(t->errmsg, sizeof t->errmsg, "%s", mc_error_last()->message);
        n = take_waiters(t, calls, 256, NULL);
        pthread_cond_broadcast(&w->cv); /* report completion */
      }
      char msg[512];
      snprintf(msg, sizeof msg, "%s", t->errmsg);
      pthread_mutex_unlock(&w->mu);
      for (size_t i = 0; i < n; i++) {
        if (rc == MC_OK)
          reply_empty(calls[i], 1);
        else
          mc__rpc_call_reply(calls[i], NULL, rc, msg);
      }
      break;
    }
    we.index = t->next_index++;
    while ((t->qlen == QUEUE_CAP || t->qbytes >= QUEUE_BYTES) && !t->stop &&
           t->nwait == 0)
      pthread_cond_wait(&t->cv, &w->mu);
    if (t->stop) {
      pthread_mutex_unlock(&w->mu);
      welem_free(&we);
      break;
    }
    if (t->nwait > 0) {
      mc_rpc_call *c = t->waiters[0];
      memmove(t->waiters, t->waiters + 1, (t->nwait - 1) * sizeof *t->waiters);
      t->nwait--;
      pthread_mutex_unlock(&w->mu);
      mc__wire_reply_elements(c, &we, 1);
      welem_free(&we);
      continue;
    }
    t->q[(t->qhead + t->qlen) % QUEUE_CAP] = we;
    t->qlen++;
    t->qbytes += we.bytes;
    pthread_mutex_unlock(&w->mu);
  }
  mc_dataset_iterator_free(it);
  pthread_mutex_lock(&w->mu);
  t->done = 1;
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

/* ---- handlers ------------------------------------------------------------ */

static wtask *find_task(mc_worker_server *w, int64_t id) {
  for (size_t i = 0; i < w->ntasks; i++)
    if (w->tasks[i]->id == id && !w->tasks[i]->deleted)
      return w->tasks[i];
  return NULL;
}

static void h_get_element(mc_rpc_call *call, const ProtobufCMessage *msg,
                          void *arg) {
  mc_worker_server *w = arg;
  const Tensorflow__Data__GetElementRequest *req =
      (const Tensorflow__Data__GetElementRequest *)msg;
  pthread_mutex_lock(&w->mu);
  wtask *t = find_task(w, req->task_id);
  if (w->stopping || t == NULL) {
    int stopping = w->stopping;
    pthread_mutex_unlock(&w->mu);
    char m[256];
    snprintf(m, sizeof m, "task %lld %s on worker %s", (long long)req->task_id,
             stopping ? "unavailable: the worker is stopping" : "not found",
             w->address);
    mc__rpc_call_reply(call, NULL, stopping ? MC_UNAVAILABLE : MC_NOT_FOUND, m);
    return;
  }
  if (t->qlen > 0) {
    size_t max = req->max_elements > 1 ? (size_t)req->max_elements : 1;
    if (max > 64)
      max = 64;
    welem es[64];
    size_t n = 0, bytes = 0;
    while (t->qlen > 0 && n < max &&
           (n == 0 || bytes + t->q[t->qhead].bytes <= BATCH_BYTES)) {
      es[n] = t->q[t->qhead];
      bytes += es[n].bytes;
      t->qbytes -= es[n].bytes;
      n++;
      t->qhead = (t->qhead + 1) % QUEUE_CAP;
      t->qlen--;
    }
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&w->mu);
    mc__wire_reply_elements(call, es, n);
    for (size_t i = 0; i < n; i++)
      welem_free(&es[i]);
    return;
  }
  if (t->eos || t->err != MC_OK) {
    mc_code err = t->err;
    char m[512];
    snprintf(m, sizeof m, "%s", t->errmsg);
    pthread_mutex_unlock(&w->mu);
    if (err == MC_OK)
      reply_empty(call, 1);
    else
      mc__rpc_call_reply(call, NULL, err, m);
    return;
  }
  pthread_mutex_unlock(&w->mu);
  /* Registered before parking: if the call is already cancelled, on_cancel
   * runs now and finds nothing; the check below then answers it. */
  mc__rpc_call_on_cancel(call, on_cancel, t);
  pthread_mutex_lock(&w->mu);
  if (mc__rpc_call_cancelled(call) || w->stopping) {
    pthread_mutex_unlock(&w->mu);
    mc__rpc_call_reply(call, NULL, MC_CANCELLED, "GetElement cancelled");
    return;
  }
  if (t->stop) {
    /* Deleted while the lock was released: nobody would answer it. */
    pthread_mutex_unlock(&w->mu);
    char m[256];
    snprintf(m, sizeof m, "task %lld was deleted on worker %s",
             (long long)req->task_id, w->address);
    mc__rpc_call_reply(call, NULL, MC_NOT_FOUND, m);
    return;
  }
  if (t->nwait == t->capwait) {
    size_t cap = t->capwait ? t->capwait * 2 : 8;
    mc_rpc_call **wt = realloc(t->waiters, cap * sizeof *wt);
    if (wt == NULL) {
      pthread_mutex_unlock(&w->mu);
      mc__rpc_call_reply(call, NULL, MC_RESOURCE_EXHAUSTED, "out of memory");
      return;
    }
    t->waiters = wt;
    t->capwait = cap;
  }
  t->waiters[t->nwait++] = call;
  pthread_cond_broadcast(&t->cv);
  pthread_mutex_unlock(&w->mu);
}

/* Adds and starts a task from its definition (w->mu held). */
static mc_code add_task(mc_worker_server *w,
                        const Tensorflow__Data__TaskDef *def) {
  if (find_task(w, def->task_id) != NULL)
    return MC_OK;
  wtask *t = calloc(1, sizeof *t);
  if (t == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  t->w = w;
  t->id = def->task_id;
  t->iteration_id = def->iteration_id;
  t->distributed =
      def->processing_mode_def != NULL &&
      def->processing_mode_def->sharding_policy ==
          TENSORFLOW__DATA__PROCESSING_MODE_DEF__SHARDING_POLICY__DYNAMIC;
  mc_code rc = MC_OK;
  if (def->dataset_case != TENSORFLOW__DATA__TASK_DEF__DATASET_DATASET_DEF)
    rc = mc__error_set(MC_INVALID_ARGUMENT, "task %lld has no dataset_def",
                       (long long)t->id);
  else
    rc = mc__dataset_from_def(def->dataset_def, &t->ds);
  if (rc == MC_OK && w->ntasks == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 8;
    wtask **a = realloc(w->tasks, cap * sizeof *a);
    if (a == NULL)
      rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
    else {
      w->tasks = a;
      w->cap = cap;
    }
  }
  if (rc != MC_OK) {
    /* A task whose dataset cannot be built still exists, failed: readers
     * get the error instead of waiting. */
    if (w->ntasks == w->cap) {
      mc_dataset_free(t->ds);
      free(t);
      return rc;
    }
    t->err = rc;
    snprintf(t->errmsg, sizeof t->errmsg, "%s", mc_error_last()->message);
  }
  pthread_cond_init(&t->cv, NULL);
  w->tasks[w->ntasks++] = t;
  if (rc == MC_OK) {
    if (pthread_create(&t->thread, NULL, producer_main, t) == 0) {
      t->thread_started = 1;
    } else {
      t->err = MC_RESOURCE_EXHAUSTED;
      snprintf(t->errmsg, sizeof t->errmsg, "cannot start a task thread");
    }
  }
  return MC_OK;
}

static void h_process_task(mc_rpc_call *call, const ProtobufCMessage *msg,
                           void *arg) {
  mc_worker_server *w = arg;
  const Tensorflow__Data__ProcessTaskRequest *req =
      (const Tensorflow__Data__ProcessTaskRequest *)msg;
  if (req->task == NULL) {
    mc__rpc_call_reply(call, NULL, MC_INVALID_ARGUMENT, "ProcessTask: no task");
    return;
  }
  pthread_mutex_lock(&w->mu);
  mc_code rc = w->stopping ? MC_UNAVAILABLE : add_task(w, req->task);
  pthread_mutex_unlock(&w->mu);
  Tensorflow__Data__ProcessTaskResponse resp =
      TENSORFLOW__DATA__PROCESS_TASK_RESPONSE__INIT;
  mc__rpc_call_reply(call, &resp.base, rc, rc ? "worker is stopping" : NULL);
}

static void h_get_worker_tasks(mc_rpc_call *call, const ProtobufCMessage *msg,
                               void *arg) {
  (void)msg;
  mc_worker_server *w = arg;
  pthread_mutex_lock(&w->mu);
  ProtobufCMessage **infos = mc__data_messages_new(
      &tensorflow__data__task_info__descriptor, w->ntasks);
  Tensorflow__Data__GetWorkerTasksResponse resp =
      TENSORFLOW__DATA__GET_WORKER_TASKS_RESPONSE__INIT;
  resp.tasks = (Tensorflow__Data__TaskInfo **)infos;
  for (size_t i = 0; infos != NULL && i < w->ntasks; i++) {
    if (w->tasks[i]->deleted)
      continue;
    Tensorflow__Data__TaskInfo *ti =
        (Tensorflow__Data__TaskInfo *)infos[resp.n_tasks++];
    ti->worker_address = w->address;
    ti->task_id = w->tasks[i]->id;
    ti->iteration_id = w->tasks[i]->iteration_id;
  }
  if (infos != NULL)
    mc__rpc_call_reply(call, &resp.base, MC_OK, NULL);
  else
    mc__rpc_call_reply(call, NULL, MC_RESOURCE_EXHAUSTED, "out of memory");
  pthread_mutex_unlock(&w->mu);
  free(infos);
}

#define M(name, req, resp, fn, blocking)                                       \
  {                                                                            \
    "/tensorflow.data.WorkerService/" name,                                    \
        &tensorflow__data__##req##__descriptor,                                \
        &tensorflow__data__##resp##__descriptor, fn, blocking                  \
  }

static const mc_rpc_method worker_methods[] = {
    M("ProcessTask", process_task_request, process_task_response,
      h_process_task, 1),
    M("GetElement", get_element_request, get_element_response, h_get_element,
      0),
    M("GetWorkerTasks", get_worker_tasks_request, get_worker_tasks_response,
      h_get_worker_tasks, 0),
};

/* ---- background threads -------------------------------------------------- */

/* Stops a task's producer (w->mu held on entry and exit). */
static void stop_task_locked(mc_worker_server *w, wtask *t, mc_code code,
                             const char *why) {
  t->stop = 1;
  pthread_cond_broadcast(&t->cv);
  mc_rpc_call *calls[256];
  size_t n = take_waiters(t, calls, 256, NULL);
  pthread_mutex_unlock(&w->mu);
  for (size_t i = 0; i < n; i++)
    mc__rpc_call_reply(calls[i], NULL, code, why);
  pthread_mutex_lock(&w->mu);
}

static void send_updates(mc_worker_server *w) {
  Tensorflow__Data__TaskProgress prog[64], *ptrs[64];
  size_t n = 0;
  pthread_mutex_lock(&w->mu);
  for (size_t i = 0; i < w->ntasks && n < 64; i++) {
    wtask *t = w->tasks[i];
    if (t->deleted || t->completed_reported || !(t->eos || t->err))
      continue;
    tensorflow__data__task_progress__init(&prog[n]);
    prog[n].task_id = t->id;
    prog[n].completed = 1;
    ptrs[n] = &prog[n];
    n++;
  }
  pthread_mutex_unlock(&w->mu);
  if (n == 0)
    return;
  Tensorflow__Data__WorkerUpdateRequest req =
      TENSORFLOW__DATA__WORKER_UPDATE_REQUEST__INIT;
  req.worker_address = w->address;
  req.n_updates = n;
  req.updates = ptrs;
  ProtobufCMessage *resp = NULL;
  if (mc__rpc_unary(w->disp, "/tensorflow.data.DispatcherService/WorkerUpdate",
                    &req.base,
                    &tensorflow__data__worker_update_response__descriptor,
                    DISPATCHER_CALL_MS, &resp) != MC_OK)
    return;
  protobuf_c_message_free_unpacked(resp, NULL);
  pthread_mutex_lock(&w->mu);
  for (size_t k = 0; k < n; k++) {
    wtask *t = find_task(w, prog[k].task_id);
    if (t != NULL)
      t->completed_reported = 1;
  }
  pthread_mutex_unlock(&w->mu);
}

static void heartbeat_once(mc_worker_server *w) {
  Tensorflow__Data__WorkerHeartbeatRequest req =
      TENSORFLOW__DATA__WORKER_HEARTBEAT_REQUEST__INIT;
  pthread_mutex_lock(&w->mu);
  int64_t *cur = calloc(w->ntasks + 1, sizeof *cur);
  for (size_t i = 0; cur != NULL && i < w->ntasks; i++)
    if (!w->tasks[i]->deleted)
      cur[req.n_current_tasks++] = w->tasks[i]->id;
  pthread_mutex_unlock(&w->mu);
  if (cur == NULL)
    return;
  req.worker_address = w->address;
  req.worker_uid = w->uid;
  req.current_tasks = cur;
  ProtobufCMessage *msg = NULL;
  mc_code rc = mc__rpc_unary(
      w->disp, "/tensorflow.data.DispatcherService/WorkerHeartbeat", &req.base,
      &tensorflow__data__worker_heartbeat_response__descriptor,
      DISPATCHER_CALL_MS, &msg);
  free(cur);
  if (rc != MC_OK)
    return;
  Tensorflow__Data__WorkerHeartbeatResponse *resp =
      (Tensorflow__Data__WorkerHeartbeatResponse *)msg;
  pthread_mutex_lock(&w->mu);
  for (size_t i = 0; !w->stopping && i < resp->n_new_tasks; i++)
    add_task(w, resp->new_tasks[i]);
  for (size_t i = 0; i < resp->n_tasks_to_delete; i++) {
    wtask *t = find_task(w, resp->tasks_to_delete[i]);
    if (t == NULL)
      continue;
    t->deleted = 1;
    stop_task_locked(w, t, MC_NOT_FOUND, "task deleted by the dispatcher");
  }
  pthread_mutex_unlock(&w->mu);
  protobuf_c_message_free_unpacked(msg, NULL);
}

static void *heartbeat_main(void *arg) {
  mc_worker_server *w = arg;
  for (;;) {
    send_updates(w);
    heartbeat_once(w);
    pthread_mutex_lock(&w->mu);
    if (!w->stopping)
      mc__data_cond_wait_ms(&w->cv, &w->mu, w->cfg.heartbeat_interval_ms);
    int stop = w->stopping;
    pthread_mutex_unlock(&w->mu);
    if (stop)
      return NULL;
  }
}

/* Frees what deleted tasks hold once their producer has finished: the
 * thread (joined: it has returned or is returning), the queued elements
 * (up to QUEUE_BYTES each) and the dataset. Without this a long-lived
 * worker kept all of it for every iteration it ever served. w->mu held. */
static void release_deleted_locked(mc_worker_server *w) {
  for (size_t i = 0; i < w->ntasks; i++) {
    wtask *t = w->tasks[i];
    if (!t->deleted || !t->done || !t->thread_started)
      continue;
    pthread_join(t->thread, NULL);
    t->thread_started = 0;
    for (int k = 0; k < t->qlen; k++)
      welem_free(&t->q[(t->qhead + k) % QUEUE_CAP]);
    t->qlen = 0;
    t->qbytes = 0;
    mc_dataset_free(t->ds);
    t->ds = NULL;
  }
}

void mc__worker_server_held(mc_worker_server *w, size_t *threads,
                            size_t *queued_bytes) {
  pthread_mutex_lock(&w->mu);
  *threads = 0;
  *queued_bytes = 0;
  for (size_t i = 0; i < w->ntasks; i++) {
    *threads += (size_t)w->tasks[i]->thread_started;
    *queued_bytes += w->tasks[i]->qbytes;
  }
  pthread_mutex_unlock(&w->mu);
}

static void *reaper_main(void *arg) {
  mc_worker_server *w = arg;
  pthread_mutex_lock(&w->mu);
  while (!w->stopping) {
    for (size_t i = 0; i < w->ntasks; i++) {
      mc_rpc_call *calls[64];
      size_t n = take_waiters(w->tasks[i], calls, 64, near_deadline);
      if (n == 0)
        continue;
      pthread_mutex_unlock(&w->mu);
      for (size_t k = 0; k < n; k++)
        reply_empty(calls[k], 0);
      pthread_mutex_lock(&w->mu);
    }
    release_deleted_locked(w);
    mc__data_cond_wait_ms(&w->cv, &w->mu, 100);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

/* ---- lifecycle ----------------------------------------------------------- */

mc_code mc_worker_server_new(mc_worker_server **out,
                             const mc_worker_config *config, int start) {
  *out = NULL;
  if (config == NULL || config->version != MC_WORKER_CONFIG_VERSION)
    return mc__error_set(
        MC_INVALID_ARGUMENT, "worker config version %d, expected %d",
        config ? config->version : -1, MC_WORKER_CONFIG_VERSION);
  if (config->dispatcher_address == NULL ||
      config->dispatcher_address[0] == '\0')
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "worker config dispatcher_address is required");
  mc_code rc = mc__data_check_protocol_port("worker config", config->protocol,
                                            config->port);
  if (rc != MC_OK)
    return rc;
  mc_worker_server *w = calloc(1, sizeof *w);
  if (w == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  w->cfg = *config;
  w->cfg.heartbeat_interval_ms =
      config->heartbeat_interval_ms > 0 ? config->heartbeat_interval_ms : 30000;
  w->cfg.dispatcher_timeout_ms = config->dispatcher_timeout_ms > 0
                                     ? config->dispatcher_timeout_ms
                                     : 3600000;
  w->dispatcher_address = strdup(config->dispatcher_address);
  w->address_template = strdup(config->worker_address ? config->worker_address
                                                      : "localhost:%port%");
  w->cfg.dispatcher_address = w->dispatcher_address;
  w->cfg.worker_address = w->address_template;
  w->cfg.protocol = "grpc";
  w->cfg.name = NULL; /* the caller's string; the rpc server keeps a copy */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  w->uid = ((int64_t)ts.tv_sec * 1000000007LL + ts.tv_nsec) ^
           ((int64_t)(intptr_t)w << 16);
  if (w->uid == 0)
    w->uid = 1;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  if (w->dispatcher_address == NULL || w->address_template == NULL)
    rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  if (rc == MC_OK)
    rc = mc__rpc_channel_get(w->dispatcher_address, &w->disp);
  if (rc == MC_OK) {
    mc_rpc_server_options o = MC_RPC_SERVER_OPTIONS_INIT;
    o.port = config->port;
    o.name = config->name != NULL ? config->name : "/job:data_worker";
    rc = mc__rpc_server_new(&w->server, &o);
  }
  if (rc == MC_OK) {
    mc_rpc_service svc = {"tensorflow.data.WorkerService", worker_methods,
                          sizeof worker_methods / sizeof worker_methods[0], w};
    rc = mc__rpc_server_add_service(w->server, &svc);
  }
  if (rc == MC_OK && start)
    rc = mc_worker_server_start(w);
  if (rc != MC_OK) {
    mc_worker_server_free(w);
    return rc;
  }
  *out = w;
  return MC_OK;
}

static void fill_address(mc_worker_server *w, int port) {
  char portstr[16];
  snprintf(portstr, sizeof portstr, "%d", port);
  const char *tpl = w->address_template;
  size_t o = 0;
  while (*tpl != '\0' && o + 1 < sizeof w->address) {
    if (strncmp(tpl, "%port%", 6) == 0) {
      for (const char *p = portstr; *p && o + 1 < sizeof w->address; p++)
        w->address[o++] = *p;
      tpl += 6;
    } else {
      w->address[o++] = *tpl++;
    }
  }
  w->address[o] = '\0';
}

mc_code mc_worker_server_start(mc_worker_server *w) {
  pthread_mutex_lock(&w->mu);
  int already = w->started || w->stopping;
  w->started = 1;
  pthread_mutex_unlock(&w->mu);
  if (already)
    return mc__error_set(MC_FAILED_PRECONDITION,
                         "worker was started or stopped before");
  mc_code rc = mc__rpc_server_start(w->server);
  if (rc != MC_OK)
    return mc__error_prefix("data worker: ");
  fill_address(w, mc__rpc_server_port(w->server));
  if (pthread_create(&w->hb, NULL, heartbeat_main, w) != 0)
    return mc__error_set(MC_RESOURCE_EXHAUSTED,
                         "data worker: cannot start its heartbeat thread");
  w->hb_started = 1;
  if (pthread_create(&w->reaper, NULL, reaper_main, w) != 0)
    return mc__error_set(MC_RESOURCE_EXHAUSTED,
                         "data worker: cannot start its reaper thread");
  w->reaper_started = 1;
  return MC_OK;
}

void mc_worker_server_join(mc_worker_server *w) {
  pthread_mutex_lock(&w->mu);
  while (!w->stopped)
    pthread_cond_wait(&w->cv, &w->mu);
  pthread_mutex_unlock(&w->mu);
}

void mc_worker_server_stop(mc_worker_server *w) {
  pthread_mutex_lock(&w->mu);
  if (w->stopped) {
    pthread_mutex_unlock(&w->mu);
    return;
  }
  w->stopping = 1;
  pthread_cond_broadcast(&w->cv);
  for (size_t i = 0; i < w->ntasks; i++)
    stop_task_locked(w, w->tasks[i], MC_UNAVAILABLE, "the worker is stopping");
  pthread_mutex_unlock(&w->mu);
  if (w->hb_started)
    pthread_join(w->hb, NULL);
  if (w->reaper_started)
    pthread_join(w->reaper, NULL);
  w->hb_started = w->reaper_started = 0;
  for (size_t i = 0; i < w->ntasks; i++) {
    if (w->tasks[i]->thread_started)
      pthread_join(w->tasks[i]->thread, NULL);
    w->tasks[i]->thread_started = 0;
  }
  if (w->server != NULL)
    mc__rpc_server_stop(w->server);
  pthread_mutex_lock(&w->mu);
  w->stopped = 1;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

void mc_worker_server_free(mc_worker_server *w) {
  if (w == NULL)
    return;
  mc_worker_server_stop(w);
  mc__rpc_server_free(w->server);
  mc__rpc_channel_release(w->disp);
  for (size_t i = 0; i < w->ntasks; i++) {
    wtask *t = w->tasks[i];
    for (int k = 0; k < t->qlen; k++)
      welem_free(&t->q[(t->qhead + k) % QUEUE_CAP]);
    free(t->waiters);
    mc_dataset_free(t->ds);
    pthread_cond_destroy(&t->cv);
    free(t);
  }
  free(w->tasks);
  free(w->dispatcher_address);
  free(w->address_template);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w);
}

const char *mc_worker_server_address(const mc_worker_server *w) {
  return w->address;
}

int mc_worker_server_port(const mc_worker_server *w) {
  return mc__rpc_server_port(w->server);
}

size_t mc_worker_server_num_tasks(const mc_worker_server *w) {
  mc_worker_server *m = (mc_worker_server *)w;
  pthread_mutex_lock(&m->mu);
  size_t n = 0;
  for (size_t i = 0; i < m->ntasks; i++)
    n += !m->tasks[i]->deleted;
  pthread_mutex_unlock(&m->mu);
  return n;
}
