/*
 * distribute.c: mc_data_distribute(), the reading side of the data service.
 * A heartbeat thread keeps the task list current (ClientHeartbeat); one
 * fetch thread per task pulls elements (GetElement) into a bounded queue
 * that next() drains.
 */
#include "core/pb.h"
#include "core/status.h"
#include "data/dataset.h"
#include "data/element_wire.h"
#include "data/dispatcher_state.h"
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

/* Deadline of one GetElement; the worker answers "nothing yet" well before
 * it (see PARK_MARGIN_MS in data_worker.c). */
#define GET_ELEMENT_MS 10000
/* Retries of a failed GetElement wait 1 ms, then twice as long each time up
 * to this: the usual failure is a reader faster than the dispatcher's
 * ProcessTask push (NOT_FOUND for a millisecond or two), which a fixed 20 ms
 * sleep turned into 20 ms before the first element. */
#define RETRY_SLEEP_US 20000
#define RETRY_FIRST_US 1000

typedef struct ctask {
  mc_data_iterator *it;
  int64_t id;
  char *address;
  mc_rpc_channel *ch;
  pthread_t thread;
  int started, done, removed;
  /* The task's GetElement in flight (at most one), completed by on_answer
   * under fmu. */
  pthread_mutex_t fmu;
  pthread_cond_t fcv;
  int answered;
  mc_code code;
  char message[512];
  mc_rpc_payload *payload;
} ctask;

typedef struct qnode {
  mc_element e;
  struct qnode *next;
} qnode;

struct mc_data_iterator {
  mc_distribute_options opt;
  mc_rpc_channel *disp;
  int64_t client_id;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  ctask **tasks;
  size_t ntasks;
  qnode *head, *tail;
  size_t qlen;
  int finished, stop;
  mc_code err;
  char errmsg[1024];
  mc_lost_split *lost;
  size_t nlost;
  size_t nlost_workers;
  pthread_t hb;
  int hb_started;
};

static void set_err(mc_data_iterator *it, mc_code rc, const char *msg) {
  if (it->err == MC_OK) {
    it->err = rc;
    snprintf(it->errmsg, sizeof it->errmsg, "%s", msg);
  }
  pthread_cond_broadcast(&it->cv);
}

/* Calls the dispatcher, retrying while it is unreachable, up to
 * opt.timeout_ms in total. */
static mc_code disp_call(mc_data_iterator *it, const char *method,
                         const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *resp_type,
                         ProtobufCMessage **resp) {
  char path[128];
  snprintf(path, sizeof path, "/tensorflow.data.DispatcherService/%s", method);
  int64_t deadline = mc__data_now_ms() + it->opt.timeout_ms;
  for (;;) {
    mc_code rc = mc__rpc_unary(
        it->disp, path, req, resp_type,
        it->opt.timeout_ms < 5000 ? it->opt.timeout_ms : 5000, resp);
    if (rc == MC_OK || !mc__data_retryable(rc))
      return rc;
    if (mc__data_now_ms() >= deadline || it->stop)
      return mc__error_prefix("%s: dispatcher unreachable for %lld ms: ",
                              method, (long long)it->opt.timeout_ms);
    usleep(50000);
  }
}

/* Decodes a GetElementResponse into a list of queue nodes. */
static mc_code decode_response(const mc_rpc_payload *p, qnode **first,
                               qnode **last, size_t *nnodes, int *eos) {
  size_t np = mc__rpc_payload_num_parts(p);
  mc_rpc_bytes *parts = malloc((np > 0 ? np : 1) * sizeof *parts);
  if (parts == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  for (size_t i = 0; i < np; i++)
    parts[i] = mc__rpc_payload_part(p, i);
  mc_element *es = NULL;
  size_t n = 0;
  mc_code rc = mc__wire_response_decode(parts, np, &es, &n, eos);
  free(parts);
  *first = *last = NULL;
  *nnodes = 0;
  for (size_t i = 0; i < n; i++) {
    qnode *node = rc == MC_OK ? calloc(1, sizeof *node) : NULL;
    if (node == NULL) {
      if (rc == MC_OK)
        rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
      mc_element_clear(&es[i]);
      continue;
    }
    node->e = es[i];
    if (*last)
      (*last)->next = node;
    else
      *first = node;
    *last = node;
    (*nnodes)++;
  }
  free(es);
  return rc;
}

static void on_answer(void *arg, mc_code code, const char *message,
                      mc_rpc_payload *p) {
  ctask *ct = arg;
  pthread_mutex_lock(&ct->fmu);
  ct->code = code;
  snprintf(ct->message, sizeof ct->message, "%s", message ? message : "");
  ct->payload = p;
  ct->answered = 1;
  pthread_cond_signal(&ct->fcv);
  pthread_mutex_unlock(&ct->fmu);
}

/* Sends the task's GetElement; 1 when it is in flight. */
static int ask(ctask *ct, const Tensorflow__Data__GetElementRequest *req) {
  pthread_mutex_lock(&ct->fmu);
  ct->answered = 0;
  pthread_mutex_unlock(&ct->fmu);
  return mc__rpc_unary_bytes_async(
             ct->ch, "/tensorflow.data.WorkerService/GetElement", &req->base,
             GET_ELEMENT_MS, on_answer, ct) == MC_OK;
}

/* Waits for the answer to ask(): its code (message in ct->message) and, on
 * MC_OK, its payload. */
static mc_code await_answer(ctask *ct, mc_rpc_payload **p) {
  pthread_mutex_lock(&ct->fmu);
  while (!ct->answered)
    pthread_cond_wait(&ct->fcv, &ct->fmu);
  *p = ct->payload;
  ct->payload = NULL;
  mc_code code = ct->code;
  pthread_mutex_unlock(&ct->fmu);
  return code;
}

/* 1 while the task should fetch and the queue has room; with wait, waits
 * for room first. */
static int has_room(ctask *ct, size_t cap, int wait) {
  mc_data_iterator *it = ct->it;
  pthread_mutex_lock(&it->mu);
  while (wait && !it->stop && !ct->removed && it->qlen >= cap * it->ntasks)
    pthread_cond_wait(&it->cv, &it->mu);
  int room = !it->stop && !ct->removed && it->qlen < cap * it->ntasks;
  pthread_mutex_unlock(&it->mu);
  return room;
}

static void *fetch_main(void *arg) {
  ctask *ct = arg;
  mc_data_iterator *it = ct->it;
  size_t cap = (size_t)it->opt.max_outstanding;
  Tensorflow__Data__GetElementRequest req =
      TENSORFLOW__DATA__GET_ELEMENT_REQUEST__INIT;
  req.task_id = ct->id;
  req.max_elements = 64;
  useconds_t backoff = RETRY_FIRST_US;
  int pending = 0;
  for (;;) {
    if (!pending) {
      if (!has_room(ct, cap, 1))
        break;
      if (!ask(ct, &req)) {
        pthread_mutex_lock(&it->mu);
        set_err(it, mc_error_last()->code, mc_error_last()->message);
        pthread_mutex_unlock(&it->mu);
        break;
      }
    }
    mc_rpc_payload *msg = NULL;
    mc_code rc = await_answer(ct, &msg);
    pending = 0;
    if (rc == MC_OK) {
      backoff = RETRY_FIRST_US;
      /* Ask for the next batch before decoding this one, so that the
       * worker's reply and its transfer overlap the decode. Still one
       * request in flight per task, sent after this one was answered, so
       * the worker's elements keep their order. */
      if (has_room(ct, cap, 0))
        pending = ask(ct, &req);
      int eos = 0;
      qnode *first = NULL, *last = NULL;
      size_t nnodes = 0;
      rc = decode_response(msg, &first, &last, &nnodes, &eos);
      mc__rpc_payload_free(msg);
      pthread_mutex_lock(&it->mu);
      if (rc != MC_OK) {
        set_err(it, rc, mc_error_last()->message);
        pthread_mutex_unlock(&it->mu);
        while (first != NULL) {
          qnode *nx = first->next;
          mc_element_clear(&first->e);
          free(first);
          first = nx;
        }
        break;
      }
      if (first != NULL) {
        if (it->tail)
          it->tail->next = first;
        else
          it->head = first;
        it->tail = last;
        it->qlen += nnodes;
      }
      if (eos)
        ct->done = 1;
      pthread_cond_broadcast(&it->cv);
      pthread_mutex_unlock(&it->mu);
      if (eos)
        break;
      continue;
    }
    /* The worker may be restarting, not have the task yet, or be gone:
     * retry until the dispatcher drops the task (worker_timeout_ms). */
    if (mc__data_retryable(rc) || rc == MC_NOT_FOUND) {
      usleep(backoff);
      backoff = backoff * 2 < RETRY_SLEEP_US ? backoff * 2 : RETRY_SLEEP_US;
      continue;
    }
    pthread_mutex_lock(&it->mu);
    char m[700];
    snprintf(m, sizeof m, "task %lld on %s: %s", (long long)ct->id, ct->address,
             ct->message);
    set_err(it, rc, m);
    pthread_mutex_unlock(&it->mu);
    break;
  }
  /* A request sent ahead of an end, an error or a stop: its answer (an
   * end again, or elements nobody will read) is dropped. */
  if (pending) {
    mc_rpc_payload *msg = NULL;
    await_answer(ct, &msg);
    mc__rpc_payload_free(msg);
  }
  return NULL;
}

static mc_code add_ctask(mc_data_iterator *it,
                         const Tensorflow__Data__TaskInfo *ti) {
  ctask *ct = calloc(1, sizeof *ct);
  ctask **a = realloc(it->tasks, (it->ntasks + 1) * sizeof *a);
  if (a != NULL)
    it->tasks = a;
  if (ct == NULL || a == NULL ||
      (ct->address = strdup(ti->worker_address)) == NULL) {
    free(ct);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  ct->it = it;
  ct->id = ti->task_id;
  mc_code rc = mc__rpc_channel_get(ct->address, &ct->ch);
  if (rc != MC_OK) {
    free(ct->address);
    free(ct);
    return rc;
  }
  pthread_mutex_init(&ct->fmu, NULL);
  pthread_cond_init(&ct->fcv, NULL);
  it->tasks[it->ntasks++] = ct;
  if (pthread_create(&ct->thread, NULL, fetch_main, ct) != 0)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "cannot start a fetch thread");
  ct->started = 1;
  return MC_OK;
}

static void
apply_heartbeat(mc_data_iterator *it,
                const Tensorflow__Data__ClientHeartbeatResponse *r) {
  for (size_t i = 0; i < r->n_task_info; i++) {
    int known = 0;
    for (size_t k = 0; k < it->ntasks; k++)
      known |= it->tasks[k]->id == r->task_info[i]->task_id;
    if (!known) {
      mc_code rc = add_ctask(it, r->task_info[i]);
      if (rc != MC_OK)
        set_err(it, rc, mc_error_last()->message);
    }
  }
  for (size_t k = 0; k < it->ntasks; k++) {
    int listed = 0;
    for (size_t i = 0; i < r->n_task_info; i++)
      listed |= it->tasks[k]->id == r->task_info[i]->task_id;
    if (!listed)
      it->tasks[k]->removed = 1;
  }
  mc_lost_split *lost = calloc(r->n_lost_splits + 1, sizeof *lost);
  if (lost != NULL) {
    for (size_t i = 0; i < r->n_lost_splits; i++) {
      lost[i].task_id = r->lost_splits[i]->task_id;
      lost[i].begin = r->lost_splits[i]->begin;
      lost[i].end = r->lost_splits[i]->end;
      snprintf(lost[i].worker_address, sizeof lost[i].worker_address, "%s",
               r->lost_splits[i]->worker_address);
    }
    free(it->lost);
    it->lost = lost;
    it->nlost = r->n_lost_splits;
  }
  it->nlost_workers = r->n_lost_workers;
  it->finished = r->iteration_finished;
  pthread_cond_broadcast(&it->cv);
}

static int all_done(mc_data_iterator *it) {
  for (size_t k = 0; k < it->ntasks; k++)
    if (!it->tasks[k]->done && !it->tasks[k]->removed)
      return 0;
  return 1;
}

static void *heartbeat_main(void *arg) {
  mc_data_iterator *it = arg;
  Tensorflow__Data__ClientHeartbeatRequest req =
      TENSORFLOW__DATA__CLIENT_HEARTBEAT_REQUEST__INIT;
  req.iteration_client_id = it->client_id;
  int64_t last_ok = mc__data_now_ms();
  pthread_mutex_lock(&it->mu);
  while (!it->stop) {
    pthread_mutex_unlock(&it->mu);
    ProtobufCMessage *msg = NULL;
    mc_code rc = mc__rpc_unary(
        it->disp, "/tensorflow.data.DispatcherService/ClientHeartbeat",
        &req.base, &tensorflow__data__client_heartbeat_response__descriptor,
        it->opt.timeout_ms < 5000 ? it->opt.timeout_ms : 5000, &msg);
    pthread_mutex_lock(&it->mu);
    if (rc == MC_OK) {
      last_ok = mc__data_now_ms();
      apply_heartbeat(it,
                      (const Tensorflow__Data__ClientHeartbeatResponse *)msg);
      protobuf_c_message_free_unpacked(msg, NULL);
    } else if (!mc__data_retryable(rc)) {
      set_err(it, rc, mc_error_last()->message);
      break;
    } else if (mc__data_now_ms() - last_ok > it->opt.timeout_ms) {
      char m[600];
      snprintf(m, sizeof m, "dispatcher unreachable for %lld ms: %s",
               (long long)it->opt.timeout_ms, mc_error_last()->message);
      set_err(it, MC_UNAVAILABLE, m);
      break;
    }
    /* Once every task delivered its end, only the dispatcher's "finished"
     * is missing: ask again soon instead of a full interval later. */
    if (!it->stop)
      mc__data_cond_wait_ms(&it->cv, &it->mu,
                            it->ntasks > 0 && all_done(it) && !it->finished
                                ? 5
                                : it->opt.heartbeat_interval_ms);
  }
  pthread_mutex_unlock(&it->mu);
  return NULL;
}

mc_code mc_data_iterator_next(mc_data_iterator *it, mc_element *out,
                              int *end_of_sequence) {
  out->num_components = 0;
  out->components = NULL;
  *end_of_sequence = 0;
  pthread_mutex_lock(&it->mu);
  for (;;) {
    if (it->head != NULL) {
      qnode *n = it->head;
      it->head = n->next;
      if (it->head == NULL)
        it->tail = NULL;
      it->qlen--;
      pthread_cond_broadcast(&it->cv);
      pthread_mutex_unlock(&it->mu);
      *out = n->e;
      free(n);
      return MC_OK;
    }
    if (it->err != MC_OK) {
      mc_code rc = mc__error_set(it->err, "%s", it->errmsg);
      pthread_mutex_unlock(&it->mu);
      return rc;
    }
    if (it->finished && all_done(it)) {
      *end_of_sequence = 1;
      pthread_mutex_unlock(&it->mu);
      return MC_OK;
    }
    mc__data_cond_wait_ms(&it->cv, &it->mu, 1000);
  }
}

size_t mc_data_iterator_lost_splits(mc_data_iterator *it, mc_lost_split *out,
                                    size_t max) {
  pthread_mutex_lock(&it->mu);
  size_t n = it->nlost;
  for (size_t i = 0; out != NULL && i < n && i < max; i++)
    out[i] = it->lost[i];
  pthread_mutex_unlock(&it->mu);
  return n;
}

size_t mc_data_iterator_lost_workers(mc_data_iterator *it) {
  pthread_mutex_lock(&it->mu);
  size_t n = it->nlost_workers;
  pthread_mutex_unlock(&it->mu);
  return n;
}

void mc_data_iterator_free(mc_data_iterator *it) {
  if (it == NULL)
    return;
  pthread_mutex_lock(&it->mu);
  it->stop = 1;
  pthread_cond_broadcast(&it->cv);
  pthread_mutex_unlock(&it->mu);
  if (it->hb_started)
    pthread_join(it->hb, NULL);
  for (size_t k = 0; k < it->ntasks; k++) {
    ctask *ct = it->tasks[k];
    if (ct->started)
      pthread_join(ct->thread, NULL);
    mc__rpc_channel_release(ct->ch);
    pthread_mutex_destroy(&ct->fmu);
    pthread_cond_destroy(&ct->fcv);
    free(ct->address);
    free(ct);
  }
  free(it->tasks);
  if (it->client_id > 0) {
    Tensorflow__Data__ReleaseIterationClientRequest req =
        TENSORFLOW__DATA__RELEASE_ITERATION_CLIENT_REQUEST__INIT;
    req.iteration_client_id = it->client_id;
    ProtobufCMessage *msg = NULL;
    if (mc__rpc_unary(
            it->disp,
            "/tensorflow.data.DispatcherService/ReleaseIterationClient",
            &req.base,
            &tensorflow__data__release_iteration_client_response__descriptor,
            1000, &msg) == MC_OK)
      protobuf_c_message_free_unpacked(msg, NULL);
  }
  while (it->head != NULL) {
    qnode *n = it->head;
    it->head = n->next;
    mc_element_clear(&n->e);
    free(n);
  }
  free(it->lost);
  mc__rpc_channel_release(it->disp);
  pthread_mutex_destroy(&it->mu);
  pthread_cond_destroy(&it->cv);
  free(it);
}

static mc_code setup(mc_data_iterator *it, const mc_dataset *ds,
                     mc_processing_mode mode) {
  uint8_t *buf;
  size_t len;
  mc_code rc = mc_dataset_to_def_bytes(ds, &buf, &len);
  if (rc != MC_OK)
    return rc;
  Tensorflow__Data__DatasetDef *def = MC_PB_UNPACK(
      tensorflow__data__dataset_def, Tensorflow__Data__DatasetDef, len, buf);
  free(buf);
  if (def == NULL)
    return mc__error_set(MC_INTERNAL, "cannot re-read the DatasetDef");
  Tensorflow__Data__GetOrRegisterDatasetRequest rreq =
      TENSORFLOW__DATA__GET_OR_REGISTER_DATASET_REQUEST__INIT;
  rreq.dataset = def;
  ProtobufCMessage *msg = NULL;
  rc = disp_call(
      it, "GetOrRegisterDataset", &rreq.base,
      &tensorflow__data__get_or_register_dataset_response__descriptor, &msg);
  tensorflow__data__dataset_def__free_unpacked(def, NULL);
  if (rc != MC_OK)
    return rc;
  Tensorflow__Data__GetOrCreateJobRequest jreq =
      TENSORFLOW__DATA__GET_OR_CREATE_JOB_REQUEST__INIT;
  Tensorflow__Data__ProcessingModeDef pm =
      TENSORFLOW__DATA__PROCESSING_MODE_DEF__INIT;
  pm.sharding_policy =
      mode == MC_DISTRIBUTED_EPOCH
          ? TENSORFLOW__DATA__PROCESSING_MODE_DEF__SHARDING_POLICY__DYNAMIC
          : TENSORFLOW__DATA__PROCESSING_MODE_DEF__SHARDING_POLICY__OFF;
  jreq.dataset_id =
      ((Tensorflow__Data__GetOrRegisterDatasetResponse *)msg)->dataset_id;
  jreq.processing_mode_def = &pm;
  if (it->opt.job_name != NULL && it->opt.job_name[0] != '\0') {
    jreq.optional_job_name_case =
        TENSORFLOW__DATA__GET_OR_CREATE_JOB_REQUEST__OPTIONAL_JOB_NAME_JOB_NAME;
    jreq.job_name = (char *)it->opt.job_name;
  }
  ProtobufCMessage *jmsg = NULL;
  rc = disp_call(it, "GetOrCreateJob", &jreq.base,
                 &tensorflow__data__get_or_create_job_response__descriptor,
                 &jmsg);
  protobuf_c_message_free_unpacked(msg, NULL);
  if (rc != MC_OK)
    return rc;
  Tensorflow__Data__GetOrCreateIterationRequest ireq =
      TENSORFLOW__DATA__GET_OR_CREATE_ITERATION_REQUEST__INIT;
  ireq.job_id = ((Tensorflow__Data__GetOrCreateJobResponse *)jmsg)->job_id;
  protobuf_c_message_free_unpacked(jmsg, NULL);
  rc = disp_call(
      it, "GetOrCreateIteration", &ireq.base,
      &tensorflow__data__get_or_create_iteration_response__descriptor, &msg);
  if (rc != MC_OK)
    return rc;
  it->client_id = ((Tensorflow__Data__GetOrCreateIterationResponse *)msg)
                      ->iteration_client_id;
  protobuf_c_message_free_unpacked(msg, NULL);
  return MC_OK;
}

mc_code mc_data_distribute(mc_data_iterator **out, const mc_dataset *ds,
                           mc_processing_mode mode, const char *service_target,
                           const mc_distribute_options *options) {
  *out = NULL;
  mc_distribute_options def = MC_DISTRIBUTE_OPTIONS_INIT;
  if (options == NULL)
    options = &def;
  if (options->version != MC_DISTRIBUTE_OPTIONS_VERSION)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "distribute options version %d, expected %d",
                         options->version, MC_DISTRIBUTE_OPTIONS_VERSION);
  if (mode != MC_PARALLEL_EPOCHS && mode != MC_DISTRIBUTED_EPOCH)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "processing mode %d is not parallel_epochs (0) or "
                         "distributed_epoch (1)",
                         (int)mode);
  if (ds == NULL || service_target == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_data_distribute needs a dataset and a "
                         "service_target");
  mc_data_iterator *it = calloc(1, sizeof *it);
  if (it == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  it->opt = *options;
  it->opt.job_name = NULL;
  if (it->opt.heartbeat_interval_ms <= 0)
    it->opt.heartbeat_interval_ms = 100;
  if (it->opt.timeout_ms <= 0)
    it->opt.timeout_ms = 60000;
  if (it->opt.max_outstanding <= 0)
    it->opt.max_outstanding = 64;
  pthread_mutex_init(&it->mu, NULL);
  pthread_cond_init(&it->cv, NULL);
  mc_code rc = mc__rpc_channel_get(service_target, &it->disp);
  if (rc == MC_OK) {
    it->opt.job_name = options->job_name;
    rc = setup(it, ds, mode);
    it->opt.job_name = NULL;
  }
  if (rc == MC_OK) {
    if (pthread_create(&it->hb, NULL, heartbeat_main, it) != 0)
      rc = mc__error_set(MC_RESOURCE_EXHAUSTED,
                         "cannot start the client heartbeat thread");
    else
      it->hb_started = 1;
  }
  if (rc != MC_OK) {
    mc_code keep = rc;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", mc_error_last()->message);
    mc_data_iterator_free(it);
    return mc__error_set(keep, "%s", msg);
  }
  *out = it;
  return MC_OK;
}
