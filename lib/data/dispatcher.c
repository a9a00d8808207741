/*
 * dispatcher.c: the tf.data DispatcherService (RPC table and handlers) and
 * the dispatch server's lifecycle. State lives in dispatcher_state.c.
 */
#include "core/pb.h"
#include "core/status.h"
#include "data/data_service.h"
#include "data/dispatcher_state.h"
#include "data_dispatcher.pb-c.h"
#include "data_worker.pb-c.h"
#include "rpc/rpc.h"

#include <minicluster/data_service.h>
#include <minicluster/tensor.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Version reported by GetVersion. */
#define MC_DATA_SERVICE_VERSION 2
/* Splits hold at most this many source elements. */
#define MAX_SPLIT 8192

#define POLICY_OFF TENSORFLOW__DATA__PROCESSING_MODE_DEF__SHARDING_POLICY__OFF
#define POLICY_DYNAMIC                                                         \
  TENSORFLOW__DATA__PROCESSING_MODE_DEF__SHARDING_POLICY__DYNAMIC

struct mc_dispatch_server {
  mc_dispatch_config cfg;
  char *work_dir;
  char **worker_addresses;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  mc__dstate st;
  mc_rpc_server *server;
  char target[64];
  int started, stopped;
  pthread_t maint;
  int maint_started;
};

static mc_code reply_err(mc_rpc_call *call, mc_code rc) {
  mc__rpc_call_reply(call, NULL, rc, mc_error_last()->message);
  return rc;
}

/* The end of most handlers: resp when rc is MC_OK, else the error that rc
 * left in mc_error_last(). */
static void reply(mc_rpc_call *call, mc_code rc, const ProtobufCMessage *resp) {
  if (rc == MC_OK)
    mc__rpc_call_reply(call, resp, MC_OK, NULL);
  else
    reply_err(call, rc);
}

static mc_code oom(void) {
  return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
}

/* ---- commits: every state change is one journal record ------------------ */

static mc_code commit(mc_dispatch_server *d, const ProtobufCMessage *record) {
  return mc__dstate_commit_record(&d->st, record);
}

static mc_code commit_register_worker(mc_dispatch_server *d, const char *addr,
                                      int64_t uid) {
  Tensorflow__Data__JournalRegisterWorker r =
      TENSORFLOW__DATA__JOURNAL_REGISTER_WORKER__INIT;
  r.address = (char *)addr;
  r.uid = uid;
  return commit(d, &r.base);
}

static mc_code commit_create_task(mc_dispatch_server *d, int64_t iteration_id,
                                  const char *worker) {
  Tensorflow__Data__JournalCreateTask r =
      TENSORFLOW__DATA__JOURNAL_CREATE_TASK__INIT;
  r.task_id = d->st.next_task_id;
  r.iteration_id = iteration_id;
  r.worker_address = (char *)worker;
  return commit(d, &r.base);
}

static mc_code commit_finish_task(mc_dispatch_server *d, int64_t task_id) {
  Tensorflow__Data__JournalFinishTask r =
      TENSORFLOW__DATA__JOURNAL_FINISH_TASK__INIT;
  r.task_id = task_id;
  return commit(d, &r.base);
}

static mc_code commit_restart_task(mc_dispatch_server *d, int64_t task_id) {
  Tensorflow__Data__JournalRestartTask r =
      TENSORFLOW__DATA__JOURNAL_RESTART_TASK__INIT;
  r.task_id = task_id;
  return commit(d, &r.base);
}

static mc_code commit_release_client(mc_dispatch_server *d, int64_t id) {
  Tensorflow__Data__JournalReleaseClient r =
      TENSORFLOW__DATA__JOURNAL_RELEASE_CLIENT__INIT;
  r.client_id = id;
  return commit(d, &r.base);
}

static mc_code task_def(mc_dispatch_server *d, const mc__dtask *t,
                        Tensorflow__Data__TaskDef **out);
static void free_task_defs(Tensorflow__Data__TaskDef **defs, size_t n);

static void pushed(void *arg, mc_code code, const char *message,
                   ProtobufCMessage *response) {
  (void)arg;
  (void)code;
  (void)message;
  /* Best effort: a worker that misses the push gets the task with its next
   * heartbeat. */
  if (response != NULL)
    protobuf_c_message_free_unpacked(response, NULL);
}

/* Sends the new tasks to their workers right away (ProcessTask), so they
 * start without waiting for the next worker heartbeat. Frees defs. */
static void push_tasks(Tensorflow__Data__TaskDef **defs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    mc_rpc_channel *ch;
    if (mc__rpc_channel_get(defs[i]->worker_address, &ch) != MC_OK)
      continue;
    Tensorflow__Data__ProcessTaskRequest req =
        TENSORFLOW__DATA__PROCESS_TASK_REQUEST__INIT;
    req.task = defs[i];
    mc__rpc_unary_async(ch, "/tensorflow.data.WorkerService/ProcessTask",
                        &req.base,
                        &tensorflow__data__process_task_response__descriptor,
                        5000, pushed, NULL);
    mc__rpc_channel_release(ch);
  }
  free_task_defs(defs, n);
}

static int iter_active(mc_dispatch_server *d, const mc__diter *it) {
  return !it->gc && !mc__dstate_iter_finished(&d->st, it);
}

/* Creates a task on every live worker for a new iteration. */
static mc_code tasks_for_iteration(mc_dispatch_server *d, int64_t iter_id) {
  for (size_t i = 0; i < d->st.nworkers; i++) {
    if (d->st.workers[i]->lost)
      continue;
    mc_code rc = commit_create_task(d, iter_id, d->st.workers[i]->address);
    if (rc != MC_OK)
      return rc;
  }
  return MC_OK;
}

/* ---- handlers ------------------------------------------------------------ */

static void h_get_version(mc_rpc_call *call, const ProtobufCMessage *req,
                          void *arg) {
  (void)req;
  (void)arg;
  Tensorflow__Data__GetVersionResponse resp =
      TENSORFLOW__DATA__GET_VERSION_RESPONSE__INIT;
  resp.version = MC_DATA_SERVICE_VERSION;
  mc__rpc_call_reply(call, &resp.base, MC_OK, NULL);
}

static void h_get_workers(mc_rpc_call *call, const ProtobufCMessage *req,
                          void *arg) {
  (void)req;
  mc_dispatch_server *d = arg;
  pthread_mutex_lock(&d->mu);
  ProtobufCMessage **infos = mc__data_messages_new(
      &tensorflow__data__worker_info__descriptor, d->st.nworkers);
  Tensorflow__Data__GetWorkersResponse resp =
      TENSORFLOW__DATA__GET_WORKERS_RESPONSE__INIT;
  resp.workers = (Tensorflow__Data__WorkerInfo **)infos;
  for (size_t i = 0; infos != NULL && i < d->st.nworkers; i++)
    if (!d->st.workers[i]->lost)
      ((Tensorflow__Data__WorkerInfo *)infos[resp.n_workers++])->address =
          d->st.workers[i]->address;
  reply(call, infos != NULL ? MC_OK : oom(), &resp.base);
  pthread_mutex_unlock(&d->mu);
  free(infos);
}

static void h_register_dataset(mc_rpc_call *call, const ProtobufCMessage *msg,
                               void *arg) {
  mc_dispatch_server *d = arg;
  const Tensorflow__Data__GetOrRegisterDatasetRequest *req =
      (const Tensorflow__Data__GetOrRegisterDatasetRequest *)msg;
  if (req->dataset == NULL || req->dataset->n_ops == 0) {
    mc__rpc_call_reply(call, NULL, MC_INVALID_ARGUMENT,
                       "GetOrRegisterDataset: the DatasetDef has no ops "
                       "(GraphDef datasets are not supported)");
    return;
  }
  size_t len = tensorflow__data__dataset_def__get_packed_size(req->dataset);
  uint8_t *buf = malloc(len + 1);
  if (buf == NULL) {
    mc__rpc_call_reply(call, NULL, MC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  tensorflow__data__dataset_def__pack(req->dataset, buf);
  pthread_mutex_lock(&d->mu);
  const char *id = NULL;
  for (size_t i = 0; i < d->st.ndatasets; i++) {
    mc__ddataset *ds = d->st.datasets[i];
    if (ds->len == len && memcmp(ds->def, buf, len) == 0)
      id = ds->id;
  }
  char idbuf[32];
  mc_code rc = MC_OK;
  if (id == NULL) {
    if (req->optional_dataset_id_case ==
            TENSORFLOW__DATA__GET_OR_REGISTER_DATASET_REQUEST__OPTIONAL_DATASET_ID_DATASET_ID &&
        req->dataset_id[0] != '\0')
      snprintf(idbuf, sizeof idbuf, "%.31s", req->dataset_id);
    else
      snprintf(idbuf, sizeof idbuf, "%lld",
               (long long)(d->st.next_dataset_id > 0 ? d->st.next_dataset_id
                                                     : 1000));
    Tensorflow__Data__JournalRegisterDataset r =
        TENSORFLOW__DATA__JOURNAL_REGISTER_DATASET__INIT;
    r.dataset_id = idbuf;
    r.dataset_def = req->dataset;
    rc = commit(d, &r.base);
    id = idbuf;
  }
  Tensorflow__Data__GetOrRegisterDatasetResponse resp =
      TENSORFLOW__DATA__GET_OR_REGISTER_DATASET_RESPONSE__INIT;
  resp.dataset_id = (char *)id;
  reply(call, rc, &resp.base);
  pthread_mutex_unlock(&d->mu);
  free(buf);
}

static void h_get_dataset_def(mc_rpc_call *call, const ProtobufCMessage *msg,
                              void *arg) {
  mc_dispatch_server *d = arg;
  const Tensorflow__Data__GetDatasetDefRequest *req =
      (const Tensorflow__Data__GetDatasetDefRequest *)msg;
  pthread_mutex_lock(&d->mu);
  mc__ddataset *ds = mc__dstate_dataset(&d->st, req->dataset_id);
  Tensorflow__Data__DatasetDef *def =
      ds ? MC_PB_UNPACK(tensorflow__data__dataset_def,
                        Tensorflow__Data__DatasetDef, ds->len, ds->def)
         : NULL;
  pthread_mutex_unlock(&d->mu);
  if (def == NULL) {
    mc__error_set(MC_NOT_FOUND, "dataset \"%s\" not found", req->dataset_id);
    reply_err(call, MC_NOT_FOUND);
    return;
  }
  Tensorflow__Data__GetDatasetDefResponse resp =
      TENSORFLOW__DATA__GET_DATASET_DEF_RESPONSE__INIT;
  resp.dataset_def = def;
  mc__rpc_call_reply(call, &resp.base, MC_OK, NULL);
  tensorflow__data__dataset_def__free_unpacked(def, NULL);
}

static void h_get_or_create_job(mc_rpc_call *call, const ProtobufCMessage *msg,
                                void *arg) {
  mc_dispatch_server *d = arg;
  const Tensorflow__Data__GetOrCreateJobRequest *req =
      (const Tensorflow__Data__GetOrCreateJobRequest *)msg;
  int policy = req->processing_mode_def
                   ? (int)req->processing_mode_def->sharding_policy
                   : POLICY_OFF;
  const char *name =
      req->optional_job_name_case ==
              TENSORFLOW__DATA__GET_OR_CREATE_JOB_REQUEST__OPTIONAL_JOB_NAME_JOB_NAME
          ? req->job_name
          : "";
  int64_t consumers =
      req->optional_num_consumers_case ==
              TENSORFLOW__DATA__GET_OR_CREATE_JOB_REQUEST__OPTIONAL_NUM_CONSUMERS_NUM_CONSUMERS
          ? req->num_consumers
          : 0;
  if (policy != POLICY_OFF && policy != POLICY_DYNAMIC) {
    mc__error_set(MC_UNIMPLEMENTED,
                  "sharding policy %d is not implemented (only OFF and "
                  "DYNAMIC)",
                  policy);
    reply_err(call, MC_UNIMPLEMENTED);
    return;
  }
  if (consumers != 0) {
    mc__error_set(MC_UNIMPLEMENTED,
                  "num_consumers (round-robin reads) is not implemented");
    reply_err(call, MC_UNIMPLEMENTED);
    return;
  }
  pthread_mutex_lock(&d->mu);
  mc_code rc = MC_OK;
  int64_t job_id = 0;
  mc__djob *j = name[0] ? mc__dstate_job_by_name(&d->st, name) : NULL;
  if (mc__dstate_dataset(&d->st, req->dataset_id) == NULL) {
    rc = mc__error_set(MC_NOT_FOUND, "dataset \"%s\" not found",
                       req->dataset_id);
  } else if (j != NULL) {
    if (strcmp(j->dataset_id, req->dataset_id) != 0 || j->policy != policy)
      rc = mc__error_set(MC_INVALID_ARGUMENT,
                         "job \"%s\" exists with dataset \"%s\" and "
                         "sharding policy %d; requested dataset \"%s\" and "
                         "sharding policy %d",
                         name, j->dataset_id, j->policy, req->dataset_id,
                         policy);
    job_id = j->id;
  } else {
    Tensorflow__Data__JournalCreateJob r =
        TENSORFLOW__DATA__JOURNAL_CREATE_JOB__INIT;
    r.job_id = job_id = d->st.next_job_id;
    r.job_name = (char *)name;
    r.dataset_id = req->dataset_id;
    r.sharding_policy = policy;
    rc = commit(d, &r.base);
  }
  Tensorflow__Data__GetOrCreateJobResponse resp =
      TENSORFLOW__DATA__GET_OR_CREATE_JOB_RESPONSE__INIT;
  resp.job_id = job_id;
  reply(call, rc, &resp.base);
  pthread_mutex_unlock(&d->mu);
}

static void h_get_or_create_iteration(mc_rpc_call *call,
                                      const ProtobufCMessage *msg, void *arg) {
  mc_dispatch_server *d = arg;
  const Tensorflow__Data__GetOrCreateIterationRequest *req =
      (const Tensorflow__Data__GetOrCreateIterationRequest *)msg;
  pthread_mutex_lock(&d->mu);
  mc_code rc = MC_OK;
  mc__diter *it = NULL;
  Tensorflow__Data__TaskDef **defs = NULL;
  size_t ndefs = 0;
  if (mc__dstate_job(&d->st, req->job_id) == NULL)
    rc = mc__error_set(MC_NOT_FOUND, "job %lld not found",
                       (long long)req->job_id);
  for (size_t i = 0; rc == MC_OK && i < d->st.niters; i++) {
    mc__diter *c = d->st.iters[i];
    if (c->job_id == req->job_id && c->repetition == req->repetition && !c->gc)
      it = c;
  }
  if (rc == MC_OK && it == NULL) {
    Tensorflow__Data__JournalCreateIteration r =
        TENSORFLOW__DATA__JOURNAL_CREATE_ITERATION__INIT;
    r.iteration_id = d->st.next_iter_id;
    r.job_id = req->job_id;
    r.repetition = req->repetition;
    rc = commit(d, &r.base);
    if (rc == MC_OK) {
      it = mc__dstate_iter(&d->st, r.iteration_id);
      rc = tasks_for_iteration(d, it->id);
    }
    if (rc == MC_OK && (defs = calloc(d->st.ntasks + 1, sizeof *defs)) != NULL)
      for (size_t i = 0; i < d->st.ntasks; i++)
        if (d->st.tasks[i]->iteration_id == it->id &&
            task_def(d, d->st.tasks[i], &defs[ndefs]) == MC_OK)
          ndefs++;
  }
  int64_t client_id = d->st.next_client_id;
  if (rc == MC_OK) {
    Tensorflow__Data__JournalAcquireClient r =
        TENSORFLOW__DATA__JOURNAL_ACQUIRE_CLIENT__INIT;
    r.client_id = client_id;
    r.iteration_id = it->id;
    rc = commit(d, &r.base);
  }
  Tensorflow__Data__GetOrCreateIterationResponse resp =
      TENSORFLOW__DATA__GET_OR_CREATE_ITERATION_RESPONSE__INIT;
  resp.iteration_client_id = client_id;
  reply(call, rc, &resp.base);
  pthread_mutex_unlock(&d->mu);
  if (defs != NULL)
    push_tasks(defs, ndefs);
}

static void h_release_client(mc_rpc_call *call, const ProtobufCMessage *msg,
                             void *arg) {
  mc_dispatch_server *d = arg;
  const Tensorflow__Data__ReleaseIterationClientRequest *req =
      (const Tensorflow__Data__ReleaseIterationClientRequest *)msg;
  pthread_mutex_lock(&d->mu);
  mc__dclient *c = mc__dstate_client(&d->st, req->iteration_client_id);
  mc_code rc = MC_OK;
  if (c == NULL)
    rc = mc__error_set(MC_NOT_FOUND, "iteration client %lld not found",
                       (long long)req->iteration_client_id);
  else if (!c->released)
    rc = commit_release_client(d, c->id);
  Tensorflow__Data__ReleaseIterationClientResponse resp =
      TENSORFLOW__DATA__RELEASE_ITERATION_CLIENT_RESPONSE__INIT;
  reply(call, rc, &resp.base);
  pthread_mutex_unlock(&d->mu);
}

static void h_client_heartbeat(mc_rpc_call *call, const ProtobufCMessage *msg,
                               void *arg) {
  mc_dispatch_server *d = arg;
  const Tensorflow__Data__ClientHeartbeatRequest *req =
      (const Tensorflow__Data__ClientHeartbeatRequest *)msg;
  pthread_mutex_lock(&d->mu);
  mc__dclient *c = mc__dstate_client(&d->st, req->iteration_client_id);
  mc__diter *it = c ? mc__dstate_iter(&d->st, c->iteration_id) : NULL;
  if (c == NULL || c->released || it == NULL || it->gc) {
    pthread_mutex_unlock(&d->mu);
    mc__error_set(MC_NOT_FOUND,
                  "iteration client %lld not found (released or garbage "
                  "collected)",
                  (long long)req->iteration_client_id);
    reply_err(call, MC_NOT_FOUND);
    return;
  }
  c->last_seen_ms = mc__data_now_ms();
  size_t nl = it->nlost;
  ProtobufCMessage **infos = mc__data_messages_new(
      &tensorflow__data__task_info__descriptor, d->st.ntasks);
  ProtobufCMessage **lost =
      mc__data_messages_new(&tensorflow__data__lost_split__descriptor, nl);
  Tensorflow__Data__ClientHeartbeatResponse resp =
      TENSORFLOW__DATA__CLIENT_HEARTBEAT_RESPONSE__INIT;
  int ok = infos != NULL && lost != NULL;
  for (size_t i = 0; ok && i < d->st.ntasks; i++) {
    mc__dtask *t = d->st.tasks[i];
    if (t->iteration_id != it->id || t->lost)
      continue;
    Tensorflow__Data__TaskInfo *ti =
        (Tensorflow__Data__TaskInfo *)infos[resp.n_task_info++];
    ti->worker_address = t->worker;
    ti->task_id = t->id;
    ti->iteration_id = it->id;
  }
  resp.task_info = (Tensorflow__Data__TaskInfo **)infos;
  resp.iteration_finished = mc__dstate_iter_finished(&d->st, it);
  for (size_t i = 0; ok && i < nl; i++) {
    Tensorflow__Data__LostSplit *ls = (Tensorflow__Data__LostSplit *)lost[i];
    ls->task_id = it->lost[i].task_id;
    ls->worker_address = it->lost[i].worker;
    ls->begin = it->lost[i].begin;
    ls->end = it->lost[i].end;
  }
  resp.n_lost_splits = nl;
  resp.lost_splits = (Tensorflow__Data__LostSplit **)lost;
  resp.n_lost_workers = it->nlost_workers;
  resp.lost_workers = it->lost_workers;
  reply(call, ok ? MC_OK : oom(), &resp.base);
  pthread_mutex_unlock(&d->mu);
  free(infos);
  free(lost);
}

static int has_task(const Tensorflow__Data__WorkerHeartbeatRequest *req,
                    int64_t id) {
  for (size_t i = 0; i < req->n_current_tasks; i++)
    if (req->current_tasks[i] == id)
      return 1;
  return 0;
}

static void free_task_defs(Tensorflow__Data__TaskDef **defs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (defs[i]->dataset_def != NULL)
      tensorflow__data__dataset_def__free_unpacked(defs[i]->dataset_def, NULL);
    free(defs[i]->processing_mode_def);
    free(defs[i]);
  }
  free(defs);
}

static mc_code task_def(mc_dispatch_server *d, const mc__dtask *t,
                        Tensorflow__Data__TaskDef **out) {
  mc__diter *it = mc__dstate_iter(&d->st, t->iteration_id);
  mc__djob *j = it ? mc__dstate_job(&d->st, it->job_id) : NULL;
  mc__ddataset *ds = j ? mc__dstate_dataset(&d->st, j->dataset_id) : NULL;
  if (ds == NULL)
    return mc__error_set(MC_INTERNAL, "task %lld has no dataset",
                         (long long)t->id);
  Tensorflow__Data__TaskDef *td = calloc(1, sizeof *td);
  Tensorflow__Data__ProcessingModeDef *pm = calloc(1, sizeof *pm);
  if (td == NULL || pm == NULL) {
    free(td);
    free(pm);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  tensorflow__data__task_def__init(td);
  tensorflow__data__processing_mode_def__init(pm);
  pm->sharding_policy = j->policy;
  td->processing_mode_def = pm;
  td->dataset_case = TENSORFLOW__DATA__TASK_DEF__DATASET_DATASET_DEF;
  td->dataset_def =
      MC_PB_UNPACK(tensorflow__data__dataset_def, Tensorflow__Data__DatasetDef,
                   ds->len, ds->def);
  td->dataset_id = ds->id;
  td->task_id = t->id;
  td->iteration_id = it->id;
  td->worker_address = t->worker;
  td->num_split_providers = j->policy == POLICY_DYNAMIC ? 1 : 0;
  *out = td;
  return MC_OK;
}

static void h_worker_heartbeat(mc_rpc_call *call, const ProtobufCMessage *msg,
                               void *arg) {
  mc_dispatch_server *d = arg;
  const Tensorflow__Data__WorkerHeartbeatRequest *req =
      (const Tensorflow__Data__WorkerHeartbeatRequest *)msg;
  if (req->worker_address[0] == '\0') {
    mc__rpc_call_reply(call, NULL, MC_INVALID_ARGUMENT,
                       "WorkerHeartbeat: worker_address is empty");
    return;
  }
  pthread_mutex_lock(&d->mu);
  mc_code rc = MC_OK;
  mc__dworker *w = mc__dstate_worker(&d->st, req->worker_address);
  int is_new = w == NULL || w->lost;
  int restarted = w != NULL && !w->lost && w->uid != req->worker_uid;
  if (is_new || restarted)
    rc = commit_register_worker(d, req->worker_address, req->worker_uid);
  w = mc__dstate_worker(&d->st, req->worker_address);
  /* A new worker joins every iteration that is still running. */
  for (size_t i = 0; rc == MC_OK && is_new && i < d->st.niters; i++) {
    mc__diter *it = d->st.iters[i];
    int has = 0;
    for (size_t k = 0; k < d->st.ntasks; k++)
      if (d->st.tasks[k]->iteration_id == it->id && !d->st.tasks[k]->lost &&
          strcmp(d->st.tasks[k]->worker, w->address) == 0)
        has = 1;
    if (!has && iter_active(d, it))
      rc = commit_create_task(d, it->id, w->address);
  }
  Tensorflow__Data__TaskDef **defs = NULL;
  int64_t *del = NULL;
  size_t ndefs = 0, ndel = 0;
  if (rc == MC_OK) {
    w->last_seen_ms = mc__data_now_ms();
    defs = calloc(d->st.ntasks + 1, sizeof *defs);
    del = calloc(req->n_current_tasks + 1, sizeof *del);
    if (defs == NULL || del == NULL)
      rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  for (size_t i = 0; rc == MC_OK && i < d->st.ntasks; i++) {
    mc__dtask *t = d->st.tasks[i];
    mc__diter *it = mc__dstate_iter(&d->st, t->iteration_id);
    if (strcmp(t->worker, w->address) != 0 || t->lost || t->finished ||
        it == NULL || it->gc)
      continue;
    if (restarted && t->nsplits > 0)
      rc = commit_restart_task(d, t->id);
    if (rc == MC_OK && !has_task(req, t->id)) {
      rc = task_def(d, t, &defs[ndefs]);
      if (rc == MC_OK)
        ndefs++;
    }
  }
  for (size_t i = 0; rc == MC_OK && i < req->n_current_tasks; i++) {
    mc__dtask *t = mc__dstate_task(&d->st, req->current_tasks[i]);
    mc__diter *it = t ? mc__dstate_iter(&d->st, t->iteration_id) : NULL;
    if (t == NULL || t->lost || it == NULL || it->gc ||
        strcmp(t->worker, req->worker_address) != 0)
      del[ndel++] = req->current_tasks[i];
  }
  Tensorflow__Data__WorkerHeartbeatResponse resp =
      TENSORFLOW__DATA__WORKER_HEARTBEAT_RESPONSE__INIT;
  resp.n_new_tasks = ndefs;
  resp.new_tasks = defs;
  resp.n_tasks_to_delete = ndel;
  resp.tasks_to_delete = del;
  reply(call, rc, &resp.base);
  pthread_mutex_unlock(&d->mu);
  if (defs != NULL)
    free_task_defs(defs, ndefs);
  free(del);
}

static void h_worker_update(mc_rpc_call *call, const ProtobufCMessage *msg,
                            void *arg) {
  mc_dispatch_server *d = arg;
  const Tensorflow__Data__WorkerUpdateRequest *req =
      (const Tensorflow__Data__WorkerUpdateRequest *)msg;
  pthread_mutex_lock(&d->mu);
  mc_code rc = MC_OK;
  for (size_t i = 0; rc == MC_OK && i < req->n_updates; i++) {
    mc__dtask *t = mc__dstate_task(&d->st, req->updates[i]->task_id);
    if (t != NULL && req->updates[i]->completed && !t->finished && !t->lost)
      rc = commit_finish_task(d, t->id);
  }
  Tensorflow__Data__WorkerUpdateResponse resp =
      TENSORFLOW__DATA__WORKER_UPDATE_RESPONSE__INIT;
  reply(call, rc, &resp.base);
  pthread_mutex_unlock(&d->mu);
}

static mc_code split_reply(mc_rpc_call *call, int64_t b, int64_t e, int eos) {
  Tensorflow__Data__GetSplitResponse resp =
      TENSORFLOW__DATA__GET_SPLIT_RESPONSE__INIT;
  uint8_t *buf = NULL;
  if (eos) {
    resp.end_of_splits = 1;
  } else {
    int64_t v[2] = {b, e}, dim = 2;
    mc_tensor *t;
    mc_code rc = mc_tensor_new(&t, MC_DT_INT64, &dim, 1, v, sizeof v);
    if (rc == MC_OK) {
      rc = mc_tensor_to_proto_bytes(t, &buf, &resp.split.len);
      mc_tensor_free(t);
    }
    if (rc != MC_OK)
      return reply_err(call, rc);
    resp.split.data = buf;
  }
  mc__rpc_call_reply(call, &resp.base, MC_OK, NULL);
  free(buf);
  return MC_OK;
}

static void h_get_split(mc_rpc_call *call, const ProtobufCMessage *msg,
                        void *arg) {
  mc_dispatch_server *d = arg;
  const Tensorflow__Data__GetSplitRequest *req =
      (const Tensorflow__Data__GetSplitRequest *)msg;
  pthread_mutex_lock(&d->mu);
  mc__diter *it = mc__dstate_iter(&d->st, req->iteration_id);
  mc__dtask *t = mc__dstate_task(&d->st, req->task_id);
  mc__djob *j = it ? mc__dstate_job(&d->st, it->job_id) : NULL;
  mc_code rc = MC_OK;
  if (it == NULL || j == NULL) {
    rc = mc__error_set(MC_NOT_FOUND, "iteration %lld not found",
                       (long long)req->iteration_id);
  } else if (j->policy != POLICY_DYNAMIC) {
    rc = mc__error_set(MC_FAILED_PRECONDITION,
                       "iteration %lld is not in distributed_epoch mode",
                       (long long)req->iteration_id);
  } else if (it->cardinality < 0) {
    rc = mc__error_set(MC_FAILED_PRECONDITION,
                       "the source of iteration %lld cannot be split",
                       (long long)req->iteration_id);
  } else if (t != NULL && t->lost) {
    rc = mc__error_set(MC_FAILED_PRECONDITION,
                       "task %lld was lost with its worker", (long long)t->id);
  }
  if (rc != MC_OK) {
    pthread_mutex_unlock(&d->mu);
    reply_err(call, rc);
    return;
  }
  if (t != NULL && req->split_index >= 0 &&
      (size_t)req->split_index < t->nsplits) {
    /* A retry: hand out the same split again. */
    mc__dsplit sp = t->splits[req->split_index];
    pthread_mutex_unlock(&d->mu);
    split_reply(call, sp.begin, sp.end, 0);
    return;
  }
  if (it->next_split >= it->cardinality) {
    pthread_mutex_unlock(&d->mu);
    split_reply(call, 0, 0, 1);
    return;
  }
  size_t live = 0;
  for (size_t i = 0; i < d->st.nworkers; i++)
    live += !d->st.workers[i]->lost;
  int64_t size = it->cardinality / (int64_t)(8 * (live ? live : 1));
  size = size < 1 ? 1 : size > MAX_SPLIT ? MAX_SPLIT : size;
  Tensorflow__Data__JournalProduceSplit r =
      TENSORFLOW__DATA__JOURNAL_PRODUCE_SPLIT__INIT;
  r.iteration_id = it->id;
  r.task_id = t ? t->id : 0;
  r.begin = it->next_split;
  r.end = r.begin + size < it->cardinality ? r.begin + size : it->cardinality;
  rc = commit(d, &r.base);
  pthread_mutex_unlock(&d->mu);
  if (rc != MC_OK)
    reply_err(call, rc);
  else
    split_reply(call, r.begin, r.end, 0);
}

#define M(name, req, resp, fn)                                                 \
  {                                                                            \
    "/tensorflow.data.DispatcherService/" name,                                \
        &tensorflow__data__##req##__descriptor,                                \
        &tensorflow__data__##resp##__descriptor, fn, 1                         \
  }

static const mc_rpc_method dispatcher_methods[] = {
    M("WorkerHeartbeat", worker_heartbeat_request, worker_heartbeat_response,
      h_worker_heartbeat),
    M("WorkerUpdate", worker_update_request, worker_update_response,
      h_worker_update),
    M("GetSplit", get_split_request, get_split_response, h_get_split),
    M("GetDatasetDef", get_dataset_def_request, get_dataset_def_response,
      h_get_dataset_def),
    M("GetVersion", get_version_request, get_version_response, h_get_version),
    M("GetOrRegisterDataset", get_or_register_dataset_request,
      get_or_register_dataset_response, h_register_dataset),
    M("GetOrCreateJob", get_or_create_job_request, get_or_create_job_response,
      h_get_or_create_job),
    M("GetOrCreateIteration", get_or_create_iteration_request,
      get_or_create_iteration_response, h_get_or_create_iteration),
    M("ClientHeartbeat", client_heartbeat_request, client_heartbeat_response,
      h_client_heartbeat),
    M("ReleaseIterationClient", release_iteration_client_request,
      release_iteration_client_response, h_release_client),
    M("GetWorkers", get_workers_request, get_workers_response, h_get_workers),
};

/* ---- maintenance: lost workers, silent clients, garbage collection ----- */

static void maintain(mc_dispatch_server *d, int64_t now, int gc) {
  for (size_t i = 0; i < d->st.nworkers; i++) {
    mc__dworker *w = d->st.workers[i];
    if (w->lost || now - w->last_seen_ms < d->cfg.worker_timeout_ms)
      continue;
    Tensorflow__Data__JournalLoseWorker r =
        TENSORFLOW__DATA__JOURNAL_LOSE_WORKER__INIT;
    r.address = w->address;
    if (commit(d, &r.base) != MC_OK)
      fprintf(stderr, "minicluster: dispatcher: %s\n",
              mc_error_last()->message);
  }
  for (size_t i = 0; i < d->st.nclients; i++) {
    mc__dclient *c = d->st.clients[i];
    if (!c->released && now - c->last_seen_ms >= d->cfg.client_timeout_ms)
      commit_release_client(d, c->id);
  }
  for (size_t i = 0; gc && i < d->st.niters; i++) {
    mc__diter *it = d->st.iters[i];
    if (it->gc || it->num_clients > 0 ||
        now - it->idle_since_ms < d->cfg.job_gc_timeout_ms)
      continue;
    Tensorflow__Data__JournalGarbageCollect r =
        TENSORFLOW__DATA__JOURNAL_GARBAGE_COLLECT__INIT;
    r.iteration_id = it->id;
    commit(d, &r.base);
  }
}

static void *maint_main(void *arg) {
  mc_dispatch_server *d = arg;
  int64_t period = d->cfg.worker_timeout_ms < d->cfg.client_timeout_ms
                       ? d->cfg.worker_timeout_ms
                       : d->cfg.client_timeout_ms;
  period /= 4;
  if (period > d->cfg.job_gc_check_interval_ms)
    period = d->cfg.job_gc_check_interval_ms;
  period = period < 5 ? 5 : period > 1000 ? 1000 : period;
  int64_t next_gc = mc__data_now_ms() + d->cfg.job_gc_check_interval_ms;
  pthread_mutex_lock(&d->mu);
  while (!d->stopped) {
    mc__data_cond_wait_ms(&d->cv, &d->mu, period);
    if (d->stopped)
      break;
    int64_t now = mc__data_now_ms();
    int gc = now >= next_gc;
    if (gc)
      next_gc = now + d->cfg.job_gc_check_interval_ms;
    maintain(d, now, gc);
  }
  pthread_mutex_unlock(&d->mu);
  return NULL;
}

/* ---- lifecycle ----------------------------------------------------------- */

static int64_t or_default(int64_t v, int64_t def) {
  return v > 0 ? v : def;
}

mc_code mc_dispatch_server_new(mc_dispatch_server **out,
                               const mc_dispatch_config *config, int start) {
  *out = NULL;
  if (config == NULL || config->version != MC_DISPATCH_CONFIG_VERSION)
    return mc__error_set(
        MC_INVALID_ARGUMENT, "dispatch config version %d, expected %d",
        config ? config->version : -1, MC_DISPATCH_CONFIG_VERSION);
  mc_code rc = mc__data_check_protocol_port("dispatch config", config->protocol,
                                            config->port);
  if (rc != MC_OK)
    return rc;
  int has_dir = config->work_dir != NULL && config->work_dir[0] != '\0';
  if (config->fault_tolerant_mode && !has_dir)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "dispatch config fault_tolerant_mode needs a "
                         "work_dir");
  mc_dispatch_server *d = calloc(1, sizeof *d);
  if (d == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  d->cfg = *config;
  d->cfg.job_gc_check_interval_ms =
      or_default(config->job_gc_check_interval_ms, 600000);
  d->cfg.job_gc_timeout_ms = or_default(config->job_gc_timeout_ms, 300000);
  d->cfg.worker_timeout_ms = or_default(config->worker_timeout_ms, 300000);
  d->cfg.client_timeout_ms = or_default(config->client_timeout_ms, 120000);
  d->work_dir = has_dir ? strdup(config->work_dir) : NULL;
  d->cfg.work_dir = d->work_dir;
  d->cfg.protocol = "grpc";
  d->worker_addresses =
      calloc(config->num_worker_addresses + 1, sizeof(char *));
  for (size_t i = 0; d->worker_addresses && i < config->num_worker_addresses;
       i++)
    d->worker_addresses[i] = strdup(config->worker_addresses[i]);
  d->cfg.worker_addresses = (const char *const *)d->worker_addresses;
  pthread_mutex_init(&d->mu, NULL);
  pthread_cond_init(&d->cv, NULL);
  d->st.next_dataset_id = 1000;
  d->st.next_job_id = d->st.next_iter_id = d->st.next_task_id =
      d->st.next_client_id = 1;
  if (config->fault_tolerant_mode) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tf_data_dispatcher_journal", d->work_dir);
    rc = mc__dstate_restore(&d->st, path);
  }
  if (rc == MC_OK) {
    mc_rpc_server_options o = MC_RPC_SERVER_OPTIONS_INIT;
    o.port = config->port;
    o.name = "/job:dispatcher/task:0";
    rc = mc__rpc_server_new(&d->server, &o);
  }
  if (rc == MC_OK) {
    mc_rpc_service svc = {
        "tensorflow.data.DispatcherService", dispatcher_methods,
        sizeof dispatcher_methods / sizeof dispatcher_methods[0], d};
    rc = mc__rpc_server_add_service(d->server, &svc);
  }
  if (rc == MC_OK && start)
    rc = mc_dispatch_server_start(d);
  if (rc != MC_OK) {
    mc_dispatch_server_free(d);
    return rc;
  }
  *out = d;
  return MC_OK;
}

mc_code mc_dispatch_server_start(mc_dispatch_server *d) {
  pthread_mutex_lock(&d->mu);
  int already = d->started || d->stopped;
  d->started = 1;
  pthread_mutex_unlock(&d->mu);
  if (already)
    return mc__error_set(MC_FAILED_PRECONDITION,
                         "dispatcher was started or stopped before");
  /* Restored workers and clients get a full timeout to come back. */
  int64_t now = mc__data_now_ms();
  for (size_t i = 0; i < d->st.nworkers; i++)
    d->st.workers[i]->last_seen_ms = now;
  for (size_t i = 0; i < d->st.nclients; i++)
    d->st.clients[i]->last_seen_ms = now;
  mc_code rc = mc__rpc_server_start(d->server);
  if (rc != MC_OK)
    return mc__error_prefix("dispatcher: ");
  snprintf(d->target, sizeof d->target, "grpc://localhost:%d",
           mc__rpc_server_port(d->server));
  if (pthread_create(&d->maint, NULL, maint_main, d) != 0) {
    mc__rpc_server_stop(d->server);
    return mc__error_set(MC_RESOURCE_EXHAUSTED,
                         "dispatcher: cannot start its maintenance thread");
  }
  d->maint_started = 1;
  return MC_OK;
}

void mc_dispatch_server_join(mc_dispatch_server *d) {
  pthread_mutex_lock(&d->mu);
  while (!d->stopped)
    pthread_cond_wait(&d->cv, &d->mu);
  pthread_mutex_unlock(&d->mu);
}

void mc_dispatch_server_stop(mc_dispatch_server *d) {
  pthread_mutex_lock(&d->mu);
  d->stopped = 1;
  pthread_cond_broadcast(&d->cv);
  pthread_mutex_unlock(&d->mu);
  if (d->server != NULL)
    mc__rpc_server_stop(d->server);
  if (d->maint_started) {
    pthread_join(d->maint, NULL);
    d->maint_started = 0;
  }
}

void mc_dispatch_server_free(mc_dispatch_server *d) {
  if (d == NULL)
    return;
  mc_dispatch_server_stop(d);
  mc__rpc_server_free(d->server);
  mc__dstate_clear(&d->st);
  for (size_t i = 0; d->worker_addresses && i < d->cfg.num_worker_addresses;
       i++)
    free(d->worker_addresses[i]);
  free(d->worker_addresses);
  free(d->work_dir);
  pthread_mutex_destroy(&d->mu);
  pthread_cond_destroy(&d->cv);
  free(d);
}

const char *mc_dispatch_server_target(const mc_dispatch_server *d) {
  return d->target;
}

int mc_dispatch_server_port(const mc_dispatch_server *d) {
  return mc__rpc_server_port(d->server);
}

size_t mc_dispatch_server_num_workers(const mc_dispatch_server *d) {
  mc_dispatch_server *m = (mc_dispatch_server *)d;
  pthread_mutex_lock(&m->mu);
  size_t n = 0;
  for (size_t i = 0; i < m->st.nworkers; i++)
    n += !m->st.workers[i]->lost;
  pthread_mutex_unlock(&m->mu);
  return n;
}

void mc__dispatch_server_set_grace_ms(mc_dispatch_server *d, int grace_ms) {
  mc__rpc_server_set_grace_ms(d->server, grace_ms);
}
