/* The dispatcher's state and its journal (see dispatcher_state.h). */
#include "data/dispatcher_state.h"

#include "core/pb.h"
#include "core/status.h"
#include "data/dataset.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t mc__data_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mc__data_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu,
                           int64_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  ts.tv_sec += ms / 1000 + ts.tv_nsec / 1000000000L;
  ts.tv_nsec %= 1000000000L;
  pthread_cond_timedwait(cv, mu, &ts);
}

int mc__data_retryable(mc_code rc) {
  return rc == MC_UNAVAILABLE || rc == MC_DEADLINE_EXCEEDED ||
         rc == MC_CANCELLED || rc == MC_ABORTED;
}

ProtobufCMessage **mc__data_messages_new(const ProtobufCMessageDescriptor *desc,
                                         size_t n) {
  size_t align = _Alignof(max_align_t);
  size_t head =
      ((n + 1) * sizeof(ProtobufCMessage *) + align - 1) / align * align;
  char *block = calloc(1, head + n * desc->sizeof_message);
  if (block == NULL)
    return NULL;
  ProtobufCMessage **ptrs = (ProtobufCMessage **)(void *)block;
  for (size_t i = 0; i < n; i++) {
    ptrs[i] =
        (ProtobufCMessage *)(void *)(block + head + i * desc->sizeof_message);
    protobuf_c_message_init(desc, ptrs[i]);
  }
  return ptrs;
}

mc_code mc__data_check_protocol_port(const char *what, const char *protocol,
                                     int port) {
  if (protocol != NULL && strcmp(protocol, "grpc") != 0)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "%s protocol \"%s\": only \"grpc\" is supported", what,
                         protocol);
  if (port < 0 || port > 65535)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "%s port %d out of range 0..65535", what, port);
  return MC_OK;
}

/* Appends p to a pointer array; returns 0 when out of memory. */
static int push_ptr(void ***arr, size_t *n, void *p) {
  if ((*n & (*n - 1)) == 0) { /* grow at powers of two */
    void **a = realloc(*arr, (*n ? *n * 2 : 4) * sizeof *a);
    if (a == NULL)
      return 0;
    *arr = a;
  }
  (*arr)[(*n)++] = p;
  return 1;
}

#define PUSH(arr, n, p) push_ptr((void ***)&(arr), &(n), (p))

static mc_code oom(void) {
  return mc__error_set(MC_RESOURCE_EXHAUSTED, "dispatcher: out of memory");
}

mc__ddataset *mc__dstate_dataset(mc__dstate *s, const char *id) {
  for (size_t i = 0; i < s->ndatasets; i++)
    if (strcmp(s->datasets[i]->id, id) == 0)
      return s->datasets[i];
  return NULL;
}
mc__djob *mc__dstate_job(mc__dstate *s, int64_t id) {
  for (size_t i = 0; i < s->njobs; i++)
    if (s->jobs[i]->id == id)
      return s->jobs[i];
  return NULL;
}
mc__djob *mc__dstate_job_by_name(mc__dstate *s, const char *name) {
  for (size_t i = 0; i < s->njobs; i++)
    if (s->jobs[i]->name[0] != '\0' && strcmp(s->jobs[i]->name, name) == 0)
      return s->jobs[i];
  return NULL;
}
mc__diter *mc__dstate_iter(mc__dstate *s, int64_t id) {
  for (size_t i = 0; i < s->niters; i++)
    if (s->iters[i]->id == id)
      return s->iters[i];
  return NULL;
}
mc__dtask *mc__dstate_task(mc__dstate *s, int64_t id) {
  for (size_t i = 0; i < s->ntasks; i++)
    if (s->tasks[i]->id == id)
      return s->tasks[i];
  return NULL;
}
mc__dworker *mc__dstate_worker(mc__dstate *s, const char *address) {
  for (size_t i = 0; i < s->nworkers; i++)
    if (strcmp(s->workers[i]->address, address) == 0)
      return s->workers[i];
  return NULL;
}
mc__dclient *mc__dstate_client(mc__dstate *s, int64_t id) {
  for (size_t i = 0; i < s->nclients; i++)
    if (s->clients[i]->id == id)
      return s->clients[i];
  return NULL;
}

int mc__dstate_iter_finished(mc__dstate *s, const mc__diter *it) {
  size_t n = 0;
  for (size_t i = 0; i < s->ntasks; i++) {
    const mc__dtask *t = s->tasks[i];
    if (t->iteration_id != it->id)
      continue;
    n++;
    if (!t->finished && !t->lost)
      return 0;
  }
  return n > 0;
}

static int64_t def_cardinality(const uint8_t *def, size_t len) {
  mc_dataset *ds;
  /* Only the source matters; map/filter functions need not be registered
   * in the dispatcher's process, so parse just the first op. */
  Tensorflow__Data__DatasetDef *d = MC_PB_UNPACK(
      tensorflow__data__dataset_def, Tensorflow__Data__DatasetDef, len, def);
  if (d == NULL)
    return -1;
  int64_t card = -1;
  size_t n = d->n_ops;
  if (n > 0) {
    d->n_ops = 1;
    if (mc__dataset_from_def(d, &ds) == MC_OK) {
      card = mc__dataset_source_cardinality(ds);
      mc_dataset_free(ds);
    }
    d->n_ops = n;
  }
  tensorflow__data__dataset_def__free_unpacked(d, NULL);
  return card;
}

static mc_code lose_splits(mc__dstate *s, mc__dtask *t) {
  mc__diter *it = mc__dstate_iter(s, t->iteration_id);
  if (it == NULL)
    return MC_OK;
  for (size_t k = 0; k < t->nsplits; k++) {
    mc__dlost *l = realloc(it->lost, (it->nlost + 1) * sizeof *l);
    if (l == NULL)
      return oom();
    it->lost = l;
    l = &it->lost[it->nlost];
    l->task_id = t->id;
    l->begin = t->splits[k].begin;
    l->end = t->splits[k].end;
    if ((l->worker = strdup(t->worker)) == NULL)
      return oom();
    it->nlost++;
  }
  free(t->splits);
  t->splits = NULL;
  t->nsplits = 0;
  return MC_OK;
}

static mc_code jerr(const char *what, long long id) {
  return mc__error_set(MC_DATA_LOSS,
                       "journal record references unknown %s %lld", what, id);
}

mc_code mc__dstate_apply(mc__dstate *s, const mc__jupdate *u) {
  int64_t now = mc__data_now_ms();
  switch (u->update_case) {
  case TENSORFLOW__DATA__JOURNAL_UPDATE__UPDATE_REGISTER_DATASET: {
    const Tensorflow__Data__JournalRegisterDataset *r = u->register_dataset;
    mc__ddataset *d = calloc(1, sizeof *d);
    if (d == NULL)
      return oom();
    d->len =
        r->dataset_def
            ? tensorflow__data__dataset_def__get_packed_size(r->dataset_def)
            : 0;
    d->def = malloc(d->len + 1);
    d->id = strdup(r->dataset_id);
    if (d->def == NULL || d->id == NULL ||
        !PUSH(s->datasets, s->ndatasets, d)) {
      free(d->def);
      free(d->id);
      free(d);
      return oom();
    }
    if (r->dataset_def)
      tensorflow__data__dataset_def__pack(r->dataset_def, d->def);
    d->cardinality = def_cardinality(d->def, d->len);
    int64_t num = strtoll(d->id, NULL, 10);
    if (num >= s->next_dataset_id)
      s->next_dataset_id = num + 1;
    return MC_OK;
  }
  case TENSORFLOW__DATA__JOURNAL_UPDATE__UPDATE_CREATE_JOB: {
    const Tensorflow__Data__JournalCreateJob *r = u->create_job;
    mc__djob *j = calloc(1, sizeof *j);
    if (j == NULL)
      return oom();
    j->id = r->job_id;
    j->name = strdup(r->job_name);
    j->dataset_id = strdup(r->dataset_id);
    j->policy = r->sharding_policy;
    j->num_consumers = r->num_consumers;
    if (j->name == NULL || j->dataset_id == NULL ||
        !PUSH(s->jobs, s->njobs, j)) {
      free(j->name);
      free(j->dataset_id);
      free(j);
      return oom();
    }
    if (j->id >= s->next_job_id)
      s->next_job_id = j->id + 1;
    return MC_OK;
  }
  case TENSORFLOW__DATA__JOURNAL_UPDATE__UPDATE_CREATE_ITERATION: {
    const Tensorflow__Data__JournalCreateIteration *r = u->create_iteration;
    mc__djob *j = mc__dstate_job(s, r->job_id);
    if (j == NULL)
      return jerr("job", (long long)r->job_id);
    mc__ddataset *d = mc__dstate_dataset(s, j->dataset_id);
    mc__diter *it = calloc(1, sizeof *it);
    if (it == NULL || !PUSH(s->iters, s->niters, it)) {
      free(it);
      return oom();
    }
    it->id = r->iteration_id;
    it->job_id = r->job_id;
    it->repetition = r->repetition;
    it->idle_since_ms = now;
    it->cardinality = d ? d->cardinality : -1;
    if (it->id >= s->next_iter_id)
      s->next_iter_id = it->id + 1;
    return MC_OK;
  }
  case TENSORFLOW__DATA__JOURNAL_UPDATE__UPDATE_REGISTER_WORKER: {
    const Tensorflow__Data__JournalRegisterWorker *r = u->register_worker;
    mc__dworker *w = mc__dstate_worker(s, r->address);
    if (w == NULL) {
      w = calloc(1, sizeof *w);
      if (w == NULL || (w->address = strdup(r->address)) == NULL ||
          !PUSH(s->workers, s->nworkers, w)) {
        if (w != NULL)
          free(w->address);
        free(w);
        return oom();
      }
    }
    w->uid = r->uid;
    w->lost = 0;
    w->last_seen_ms = now;
    return MC_OK;
  }
  case TENSORFLOW__DATA__JOURNAL_UPDATE__UPDATE_CREATE_TASK: {
    const Tensorflow__Data__JournalCreateTask *r = u->create_task;
    mc__dtask *t = calloc(1, sizeof *t);
    if (t == NULL || (t->worker = strdup(r->worker_address)) == NULL ||
        !PUSH(s->tasks, s->ntasks, t)) {
      if (t != NULL)
        free(t->worker);
      free(t);
      return oom();
    }
    t->id = r->task_id;
    t->iteration_id = r->iteration_id;
    if (t->id >= s->next_task_id)
      s->next_task_id = t->id + 1;
    return MC_OK;
  }
  case TENSORFLOW__DATA__JOURNAL_UPDATE__UPDATE_PRODUCE_SPLIT: {
    const Tensorflow__Data__JournalProduceSplit *r = u->produce_split;
    mc__diter *it = mc__dstate_iter(s, r->iteration_id);
    if (it == NULL)
      return jerr("iteration", (long long)r->iteration_id);
    it->next_split = r->end;
    mc__dtask *t = mc__dstate_task(s, r->task_id);
    if (t != NULL) {
      mc__dsplit *sp = realloc(t->splits, (t->nsplits + 1) * sizeof *sp);
      if (sp == NULL)
        return oom();
      t->splits = sp;
      sp[t->nsplits].begin = r->begin;
      sp[t->nsplits].end = r->end;
      t->nsplits++;
    }
    return MC_OK;
  }
  case TENSORFLOW__DATA__JOURNAL_UPDATE__UPDATE_FINISH_TASK: {
    mc__dtask *t = mc__dstate_task(s, u->finish_task->task_id);
    if (t == NULL)
      return jerr("task", (long long)u->finish_task->task_id);
    t->finished = 1;
    return MC_OK;
  }
  case TENSORFLOW__DATA__JOURNAL_UPDATE__UPDATE_ACQUIRE_CLIENT: {
    const Tensorflow__Data__JournalAcquireClient *r = u->acquire_client;
    mc__diter *it = mc__dstate_iter(s, r->iteration_id);
    if (it == NULL)
      return jerr("iteration", (long long)r->iteration_id);
    mc__dclient *c = calloc(1, sizeof *c);
    if (c == NULL || !PUSH(s->clients, s->nclients, c)) {
      free(c);
      return oom();
    }
    c->id = r->client_id;
    c->iteration_id = r->iteration_id;
    c->last_seen_ms = now;
    it->num_clients++;
    if (c->id >= s->next_client_id)
      s->next_client_id = c->id + 1;
    return MC_OK;
  }
  case TENSORFLOW__DATA__JOURNAL_UPDATE__UPDATE_RELEASE_CLIENT: {
    mc__dclient *c = mc__dstate_client(s, u->release_client->client_id);
    if (c == NULL)
      return jerr("client", (long long)u->release_client->client_id);
    if (!c->released) {
      c->released = 1;
      mc__diter *it = mc__dstate_iter(s, c->iteration_id);
      if (it != NULL && --it->num_clients == 0)
        it->idle_since_ms = now;
    }
    return MC_OK;
  }
  case TENSORFLOW__DATA__JOURNAL_UPDATE__UPDATE_GARBAGE_COLLECT: {
    mc__diter *it = mc__dstate_iter(s, u->garbage_collect->iteration_id);
    if (it == NULL)
      return jerr("iteration", (long long)u->garbage_collect->iteration_id);
    it->gc = 1;
    return MC_OK;
  }
  case TENSORFLOW__DATA__JOURNAL_UPDATE__UPDATE_LOSE_WORKER: {
    mc__dworker *w = mc__dstate_worker(s, u->lose_worker->address);
    if (w == NULL)
      return mc__error_set(MC_DATA_LOSS,
                           "journal record references unknown worker \"%s\"",
                           u->lose_worker->address);
    w->lost = 1;
    for (size_t i = 0; i < s->ntasks; i++) {
      mc__dtask *t = s->tasks[i];
      if (strcmp(t->worker, w->address) != 0 || t->finished || t->lost)
        continue;
      t->lost = 1;
      mc__diter *it = mc__dstate_iter(s, t->iteration_id);
      if (it != NULL) {
        char **lw =
            realloc(it->lost_workers, (it->nlost_workers + 1) * sizeof *lw);
        if (lw == NULL)
          return oom();
        it->lost_workers = lw;
        if ((lw[it->nlost_workers] = strdup(w->address)) == NULL)
          return oom();
        it->nlost_workers++;
      }
      mc_code rc = lose_splits(s, t);
      if (rc != MC_OK)
        return rc;
    }
    return MC_OK;
  }
  case TENSORFLOW__DATA__JOURNAL_UPDATE__UPDATE_RESTART_TASK: {
    mc__dtask *t = mc__dstate_task(s, u->restart_task->task_id);
    if (t == NULL)
      return jerr("task", (long long)u->restart_task->task_id);
    return lose_splits(s, t);
  }
  default:
    return mc__error_set(MC_DATA_LOSS, "journal record of unknown kind %d",
                         (int)u->update_case);
  }
}

mc_code mc__dstate_commit(mc__dstate *s, const mc__jupdate *u) {
  if (s->journal != NULL) {
    size_t len = tensorflow__data__journal_update__get_packed_size(u);
    uint8_t *buf = malloc(len + 1);
    if (buf == NULL)
      return oom();
    tensorflow__data__journal_update__pack(u, buf);
    mc_code rc = mc__journal_append(s->journal, buf, len);
    free(buf);
    if (rc != MC_OK)
      return rc;
  }
  return mc__dstate_apply(s, u);
}

mc_code mc__dstate_commit_record(mc__dstate *s,
                                 const ProtobufCMessage *record) {
  const ProtobufCMessageDescriptor *ud =
      &tensorflow__data__journal_update__descriptor;
  for (unsigned i = 0; i < ud->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &ud->fields[i];
    if (f->descriptor != record->descriptor)
      continue;
    mc__jupdate u = TENSORFLOW__DATA__JOURNAL_UPDATE__INIT;
    u.update_case = (Tensorflow__Data__JournalUpdate__UpdateCase)f->id;
    /* The oneof's members are all message pointers; protobuf-c reads the
     * one at f->offset, as this writes it. */
    memcpy((char *)&u + f->offset, &record, sizeof record);
    return mc__dstate_commit(s, &u);
  }
  return mc__error_set(MC_INTERNAL, "%s is not a journal record",
                       record->descriptor->name);
}

static mc_code replay_one(void *arg, const uint8_t *data, size_t len) {
  mc__jupdate *u = MC_PB_UNPACK(tensorflow__data__journal_update,
                                Tensorflow__Data__JournalUpdate, len, data);
  if (u == NULL)
    return mc__error_set(MC_DATA_LOSS, "record does not decode");
  mc_code rc = mc__dstate_apply(arg, u);
  tensorflow__data__journal_update__free_unpacked(u, NULL);
  return rc;
}

mc_code mc__dstate_restore(mc__dstate *s, const char *journal_path) {
  uint64_t valid = 0;
  mc_code rc = mc__journal_replay(journal_path, replay_one, s, &valid);
  if (rc != MC_OK)
    return rc;
  return mc__journal_open(journal_path, valid, &s->journal);
}

void mc__dstate_clear(mc__dstate *s) {
  for (size_t i = 0; i < s->ndatasets; i++) {
    free(s->datasets[i]->id);
    free(s->datasets[i]->def);
    free(s->datasets[i]);
  }
  for (size_t i = 0; i < s->njobs; i++) {
    free(s->jobs[i]->name);
    free(s->jobs[i]->dataset_id);
    free(s->jobs[i]);
  }
  for (size_t i = 0; i < s->niters; i++) {
    mc__diter *it = s->iters[i];
    for (size_t k = 0; k < it->nlost; k++)
      free(it->lost[k].worker);
    free(it->lost);
    for (size_t k = 0; k < it->nlost_workers; k++)
      free(it->lost_workers[k]);
    free(it->lost_workers);
    free(it);
  }
  for (size_t i = 0; i < s->ntasks; i++) {
    free(s->tasks[i]->worker);
    free(s->tasks[i]->splits);
    free(s->tasks[i]);
  }
  for (size_t i = 0; i < s->nworkers; i++) {
    free(s->workers[i]->address);
    free(s->workers[i]);
  }
  for (size_t i = 0; i < s->nclients; i++)
    free(s->clients[i]);
  free(s->datasets);
  free(s->jobs);
  free(s->iters);
  free(s->tasks);
  free(s->workers);
  free(s->clients);
  mc__journal_free(s->journal);
  memset(s, 0, sizeof *s);
}
