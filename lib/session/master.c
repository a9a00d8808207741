/* Master sessions: a session holds its graph; the first step with a given
 * signature (feeds, fetches, targets) is planned (placement, partitioning)
 * and its partitions registered with their tasks; every step then runs
 * RunGraph on each involved task in parallel. When one partition fails the
 * master sends CleanupGraph to every task of the step at once, so the
 * others stop waiting for tensors that will never come. */
#include "session/master.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.pb-c.h"
#include "core/pb.h"
#include "core/status.h"
#include "session/batch.h"
#include "session/executor.h"
#include "session/partition.h"
#include "session/worker.h"
#include "worker.pb-c.h"

#define DEFAULT_STEP_MS 60000
/* Bound of control RPCs (register, deregister, cleanup). */
#define CONTROL_RPC_MS 5000

typedef struct reg_plan {
  char *sig;
  mc__plan *plan;
  char **handles;         /* per partition */
  mc_rpc_channel **chans; /* per partition */
  /* This task's partition, if any, never waits (no _Recv, no compute), so
   * the plan's steps may run without blocking. */
  int nowait;
  struct reg_plan *next;
} reg_plan;

typedef struct msession {
  char *handle;
  Tensorflow__GraphDef *gd;
  int64_t version;
  int64_t default_timeout_ms;
  pthread_mutex_t mu; /* gd, version, plans */
  reg_plan *plans;
  int refs; /* guarded by the master's lock */
  struct msession *next;
} msession;

struct mc__master {
  mc_task *task;
  pthread_mutex_t mu;
  msession *sessions;
  uint64_t next_session;
  atomic_llong next_step;
};

/* ---- sessions ---- */

mc_code mc__master_new(mc__master **out, mc_task *task) {
  mc__master *m = calloc(1, sizeof(*m));
  if (m == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  m->task = task;
  pthread_mutex_init(&m->mu, NULL);
  atomic_init(&m->next_step, (long long)((task->incarnation >> 24) << 20));
  *out = m;
  return MC_OK;
}

static void deregister_plan(reg_plan *rp, const char *session) {
  if (rp->plan == NULL || rp->handles == NULL || rp->chans == NULL)
    return;
  mc__batch *b = mc__batch_new(rp->plan->nparts);
  for (size_t i = 0; b && i < rp->plan->nparts; i++) {
    if (rp->handles[i] == NULL || rp->chans[i] == NULL)
      continue;
    Tensorflow__DeregisterGraphRequest req =
        TENSORFLOW__DEREGISTER_GRAPH_REQUEST__INIT;
    req.graph_handle = rp->handles[i];
    req.session_handle = (char *)session;
    mc__batch_start(b, i, rp->chans[i],
                    "/tensorflow.WorkerService/DeregisterGraph", &req.base,
                    &tensorflow__deregister_graph_response__descriptor,
                    CONTROL_RPC_MS);
  }
  if (b) {
    mc__batch_wait(b);
    mc__batch_free(b);
  }
}

static void reg_plan_free(reg_plan *rp) {
  if (rp == NULL)
    return;
  for (size_t i = 0; rp->plan && i < rp->plan->nparts; i++) {
    if (rp->handles)
      free(rp->handles[i]);
    if (rp->chans)
      mc__rpc_channel_release(rp->chans[i]);
  }
  free(rp->handles);
  free(rp->chans);
  mc__plan_free(rp->plan);
  free(rp->sig);
  free(rp);
}

/* deregister: 0 when the task is shutting down (its peers may be gone
 * too; they drop their graphs when they are freed). */
static void session_destroy(msession *s, int deregister) {
  for (reg_plan *rp = s->plans, *next; rp != NULL; rp = next) {
    next = rp->next;
    if (deregister)
      deregister_plan(rp, s->handle);
    reg_plan_free(rp);
  }
  if (s->gd)
    protobuf_c_message_free_unpacked(&s->gd->base, NULL);
  pthread_mutex_destroy(&s->mu);
  free(s->handle);
  free(s);
}

static void session_unref(mc__master *m, msession *s) {
  pthread_mutex_lock(&m->mu);
  int last = --s->refs == 0;
  pthread_mutex_unlock(&m->mu);
  if (last)
    session_destroy(s, 1);
}

static msession *session_get(mc__master *m, const char *handle) {
  pthread_mutex_lock(&m->mu);
  msession *s = m->sessions;
  while (s != NULL && strcmp(s->handle, handle) != 0)
    s = s->next;
  if (s)
    s->refs++;
  pthread_mutex_unlock(&m->mu);
  /* ABORTED, as TensorFlow's master answers an unknown handle: the usual
   * cause is a restarted master, and ABORTED tells the client to recreate
   * the session and retry (INVALID_ARGUMENT would say "never retry"). */
  if (s == NULL)
    mc__error_set(MC_ABORTED,
                  "session handle \"%s\" is not known to the master on %s "
                  "(closed, reset, never created, or the master restarted)",
                  handle, m->task->device_prefix);
  return s;
}

void mc__master_free(mc__master *m) {
  if (m == NULL)
    return;
  for (msession *s = m->sessions, *next; s != NULL; s = next) {
    next = s->next;
    session_destroy(s, 0);
  }
  pthread_mutex_destroy(&m->mu);
  free(m);
}

static Tensorflow__GraphDef *copy_graph(const Tensorflow__GraphDef *g) {
  Tensorflow__GraphDef empty = TENSORFLOW__GRAPH_DEF__INIT;
  if (g == NULL)
    g = &empty;
  size_t len = tensorflow__graph_def__get_packed_size(g);
  uint8_t *buf = malloc(len ? len : 1);
  if (buf == NULL)
    return NULL;
  tensorflow__graph_def__pack(g, buf);
  Tensorflow__GraphDef *c =
      MC_PB_UNPACK(tensorflow__graph_def, Tensorflow__GraphDef, len, buf);
  free(buf);
  return c;
}

static mc_code check_names(const Tensorflow__GraphDef *base,
                           const Tensorflow__GraphDef *add) {
  for (size_t i = 0; i < add->n_node; i++) {
    if (add->node[i]->name[0] == '\0')
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "node %zu of the graph has no name", i);
    for (size_t j = 0; j < i; j++)
      if (strcmp(add->node[i]->name, add->node[j]->name) == 0)
        return mc__error_set(MC_INVALID_ARGUMENT, "duplicate node name '%s'",
                             add->node[i]->name);
    for (size_t j = 0; base && j < base->n_node; j++)
      if (strcmp(add->node[i]->name, base->node[j]->name) == 0)
        return mc__error_set(MC_INVALID_ARGUMENT,
                             "node '%s' already exists in the session's "
                             "graph",
                             add->node[i]->name);
  }
  return MC_OK;
}

mc_code mc__master_create_session(mc__master *m,
                                  const Tensorflow__CreateSessionRequest *req,
                                  Tensorflow__CreateSessionResponse *resp) {
  if (req->graph_def && check_names(NULL, req->graph_def) != MC_OK)
    return MC_INVALID_ARGUMENT;
  msession *s = calloc(1, sizeof(*s));
  if (s == NULL || (s->gd = copy_graph(req->graph_def)) == NULL) {
    free(s);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  pthread_mutex_init(&s->mu, NULL);
  s->refs = 1;
  if (req->config && req->config->operation_timeout_in_ms > 0)
    s->default_timeout_ms = req->config->operation_timeout_in_ms;
  char buf[96];
  pthread_mutex_lock(&m->mu);
  snprintf(buf, sizeof buf, "session-%016llx-%llu",
           (unsigned long long)m->task->incarnation,
           (unsigned long long)++m->next_session);
  s->handle = strdup(buf);
  resp->session_handle = strdup(buf);
  if (s->handle == NULL || resp->session_handle == NULL) {
    pthread_mutex_unlock(&m->mu);
    free(resp->session_handle);
    resp->session_handle = NULL;
    session_destroy(s, 0);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  s->next = m->sessions;
  m->sessions = s;
  pthread_mutex_unlock(&m->mu);
  resp->graph_version = 0;
  return MC_OK;
}

mc_code mc__master_extend_session(mc__master *m,
                                  const Tensorflow__ExtendSessionRequest *req,
                                  Tensorflow__ExtendSessionResponse *resp) {
  msession *s = session_get(m, req->session_handle);
  if (s == NULL)
    return mc_error_last()->code;
  mc_code rc = MC_OK;
  pthread_mutex_lock(&s->mu);
  Tensorflow__GraphDef *add = NULL;
  if (req->current_graph_version != s->version) {
    rc = mc__error_set(MC_FAILED_PRECONDITION,
                       "current_graph_version %lld does not match the "
                       "session's graph version %lld",
                       (long long)req->current_graph_version,
                       (long long)s->version);
  } else if (req->graph_def != NULL &&
             (rc = check_names(s->gd, req->graph_def)) == MC_OK) {
    add = copy_graph(req->graph_def);
    Tensorflow__NodeDef **nodes =
        add ? realloc(s->gd->node,
                      (s->gd->n_node + add->n_node + 1) * sizeof(*nodes))
            : NULL;
    if (nodes == NULL) {
      rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
    } else {
      s->gd->node = nodes;
      for (size_t i = 0; i < add->n_node; i++)
        nodes[s->gd->n_node++] = add->node[i];
      add->n_node = 0; /* moved */
    }
  }
  if (rc == MC_OK)
    resp->new_graph_version = ++s->version;
  pthread_mutex_unlock(&s->mu);
  if (add)
    protobuf_c_message_free_unpacked(&add->base, NULL);
  session_unref(m, s);
  return rc;
}

mc_code mc__master_close_session(mc__master *m, const char *handle) {
  pthread_mutex_lock(&m->mu);
  msession **pp = &m->sessions;
  while (*pp != NULL && strcmp((*pp)->handle, handle) != 0)
    pp = &(*pp)->next;
  msession *s = *pp;
  if (s)
    *pp = s->next;
  pthread_mutex_unlock(&m->mu);
  if (s == NULL)
    return mc__error_set(MC_ABORTED,
                         "session handle \"%s\" is not known to the master "
                         "on %s",
                         handle, m->task->device_prefix);
  session_unref(m, s);
  return MC_OK;
}

/* ---- planning and registration ---- */

static char *signature(const Tensorflow__RunStepRequest *req) {
  size_t len = 8;
  for (size_t i = 0; i < req->n_feed; i++)
    len += strlen(req->feed[i]->name) + 1;
  for (size_t i = 0; i < req->n_fetch; i++)
    len += strlen(req->fetch[i]) + 1;
  for (size_t i = 0; i < req->n_target; i++)
    len += strlen(req->target[i]) + 1;
  char *sig = malloc(len), *p = sig;
  if (sig == NULL)
    return NULL;
  for (size_t i = 0; i < req->n_feed; i++)
    p += sprintf(p, "%s,", req->feed[i]->name);
  *p++ = '|';
  for (size_t i = 0; i < req->n_fetch; i++)
    p += sprintf(p, "%s,", req->fetch[i]);
  *p++ = '|';
  for (size_t i = 0; i < req->n_target; i++)
    p += sprintf(p, "%s,", req->target[i]);
  *p = '\0';
  return sig;
}

static mc_code register_plan(msession *s, reg_plan *rp, int64_t timeout_ms) {
  size_t n = rp->plan->nparts;
  rp->handles = calloc(n + 1, sizeof(char *));
  rp->chans = calloc(n + 1, sizeof(mc_rpc_channel *));
  mc__batch *b = mc__batch_new(n);
  if (!rp->handles || !rp->chans || !b) {
    mc__batch_free(b);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    mc__partition *p = &rp->plan->parts[i];
    if (mc__rpc_channel_get(p->address, &rp->chans[i]) != MC_OK) {
      b->codes[i] = mc_error_last()->code;
      b->msgs[i] = strdup(mc_error_last()->message);
      rp->chans[i] = NULL;
      continue;
    }
    Tensorflow__RegisterGraphRequest req =
        TENSORFLOW__REGISTER_GRAPH_REQUEST__INIT;
    req.session_handle = s->handle;
    req.graph_def = p->gd;
    mc__batch_start(b, i, rp->chans[i],
                    "/tensorflow.WorkerService/RegisterGraph", &req.base,
                    &tensorflow__register_graph_response__descriptor,
                    timeout_ms < CONTROL_RPC_MS ? timeout_ms : CONTROL_RPC_MS);
  }
  mc__batch_wait(b);
  mc_code rc = MC_OK;
  for (size_t i = 0; i < n; i++) {
    if (b->codes[i] != MC_OK) {
      if (rc == MC_OK)
        rc = mc__error_set(b->codes[i], "RegisterGraph on /job:%s/task:%d: %s",
                           rp->plan->parts[i].job, rp->plan->parts[i].task,
                           b->msgs[i] ? b->msgs[i] : "");
      continue;
    }
    Tensorflow__RegisterGraphResponse *r =
        (Tensorflow__RegisterGraphResponse *)b->resp[i];
    rp->handles[i] = strdup(r->graph_handle);
  }
  mc__batch_free(b);
  if (rc != MC_OK) {
    /* Leave nothing registered behind on the tasks that accepted. */
    deregister_plan(rp, s->handle);
  }
  return rc;
}

/* The index of this task's partition in the plan, or nparts when it has
 * none or no worker service (its partition is then reached by RPC like
 * the others). */
static size_t local_part(const mc__master *m, const mc__plan *plan,
                         const mc__worker *self) {
  for (size_t i = 0; self != NULL && i < plan->nparts; i++)
    if (plan->parts[i].task == m->task->index &&
        strcmp(plan->parts[i].job, m->task->job) == 0)
      return i;
  return plan->nparts;
}

/* The registered plan for the request's signature, planning and
 * registering it on first use. Borrowed from the session. */
static mc_code get_plan(mc__master *m, msession *s,
                        const Tensorflow__RunStepRequest *req,
                        int64_t timeout_ms, reg_plan **out) {
  char *sig = signature(req);
  if (sig == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  pthread_mutex_lock(&s->mu);
  for (reg_plan *rp = s->plans; rp != NULL; rp = rp->next)
    if (strcmp(rp->sig, sig) == 0) {
      pthread_mutex_unlock(&s->mu);
      free(sig);
      *out = rp;
      return MC_OK;
    }
  mc_code rc = MC_OK;
  reg_plan *rp = calloc(1, sizeof(*rp));
  const char **feeds = calloc(req->n_feed + 1, sizeof(char *));
  mc_cluster_spec *spec = mc__task_cluster_copy(m->task);
  if (rp == NULL || feeds == NULL || spec == NULL)
    rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  if (rc == MC_OK) {
    rp->sig = sig;
    sig = NULL;
    for (size_t i = 0; i < req->n_feed; i++)
      feeds[i] = req->feed[i]->name;
    mc__plan_args a = {0};
    a.graph = s->gd;
    a.feeds = feeds;
    a.nfeeds = req->n_feed;
    a.fetches = (const char *const *)req->fetch;
    a.nfetches = req->n_fetch;
    a.targets = (const char *const *)req->target;
    a.ntargets = req->n_target;
    a.master_job = m->task->job;
    a.master_task = m->task->index;
    a.spec = spec;
    rc = mc__plan_build(&a, &rp->plan);
  }
  if (rc == MC_OK)
    rc = register_plan(s, rp, timeout_ms);
  if (rc == MC_OK) {
    mc__worker *self = mc__worker_of_task(m->task);
    size_t l = local_part(m, rp->plan, self);
    rp->nowait = l == rp->plan->nparts ||
                 (rp->handles[l] != NULL &&
                  mc__worker_graph_is_light(self, rp->handles[l]));
    rp->next = s->plans;
    s->plans = rp;
    *out = rp;
  } else {
    reg_plan_free(rp);
  }
  pthread_mutex_unlock(&s->mu);
  free(sig);
  free(feeds);
  mc_cluster_spec_free(spec);
  return rc;
}

/* ---- steps ---- */

/* One step from start to reply. The blocking form waits for the batch on
 * the calling thread; the async form finishes on the thread of the last
 * completion. */
struct mc__step_result {
  mc__batch *b;
  Tensorflow__RunGraphResponse *local; /* this task's partition, if any */
  Tensorflow__NamedTensorProto *named; /* one per fetch */
  Tensorflow__NamedTensorProto **ptrs;
  mc__master *m;
  msession *s; /* referenced until the step is finished */
  reg_plan *rp;
  const Tensorflow__RunStepRequest *req;
  int64_t timeout, deadline, step_id;
  size_t local_part; /* index into the plan's partitions; nparts: none */
  mc__step_done done;
  void *done_arg;
};

/* First failure of a step: tell every task to drop the step, which wakes
 * partitions waiting for tensors from the failed one. */
static void abort_step(mc__batch *b) {
  mc__step_result *st = b->ctx;
  Tensorflow__CleanupGraphRequest req = TENSORFLOW__CLEANUP_GRAPH_REQUEST__INIT;
  req.step_id = st->step_id;
  for (size_t i = 0; i < st->rp->plan->nparts; i++)
    if (st->rp->chans[i])
      (void)mc__rpc_unary_async(
          st->rp->chans[i], "/tensorflow.WorkerService/CleanupGraph", &req.base,
          &tensorflow__cleanup_graph_response__descriptor, CONTROL_RPC_MS,
          mc__batch_ignore_done, NULL);
}

/* How likely a failure is the root cause of a failed step: 0 for a code
 * other than ABORTED/CANCELLED (a task down, a bad graph...); 1 for an
 * ABORTED that is not marked as derived (an unknown graph handle on a
 * restarted task); 2 for the reactions to another task's failure (a
 * cancelled call, a partition cleaned up because another failed; a marker
 * lost to message truncation in a long chain only demotes it to 1). */
static int error_rank(mc_code c, const char *message) {
  if (c != MC_ABORTED && c != MC_CANCELLED)
    return 0;
  if (c == MC_ABORTED &&
      (message == NULL || strstr(message, MC__DERIVED_STEP_ERROR) == NULL))
    return 1;
  return 2;
}

void mc__master_run_step_release(Tensorflow__RunStepResponse *resp,
                                 mc__step_result *keep) {
  if (resp) {
    resp->tensor = NULL;
    resp->n_tensor = 0;
  }
  if (keep == NULL)
    return;
  mc__batch_free(keep->b);
  if (keep->local) {
    mc__worker_run_response_clear(keep->local);
    free(keep->local);
  }
  free(keep->named);
  free(keep->ptrs);
  free(keep);
}

static int64_t step_timeout(const msession *s,
                            const Tensorflow__RunStepRequest *req,
                            int64_t call_timeout_ms) {
  int64_t timeout = DEFAULT_STEP_MS;
  if (req->options && req->options->timeout_in_ms > 0)
    timeout = req->options->timeout_in_ms;
  else if (s->default_timeout_ms > 0)
    timeout = s->default_timeout_ms;
  if (call_timeout_ms > 0 && call_timeout_ms < timeout)
    timeout = call_timeout_ms;
  return timeout;
}

/* A new step on a registered plan; takes over the caller's reference on s.
 * NULL (error set) when out of memory; s is then still the caller's. */
static mc__step_result *step_new(mc__master *m, msession *s, reg_plan *rp,
                                 const Tensorflow__RunStepRequest *req,
                                 int64_t timeout, const mc__worker *self) {
  mc__step_result *st = calloc(1, sizeof(*st));
  if (st == NULL || (st->b = mc__batch_new(rp->plan->nparts)) == NULL) {
    free(st);
    mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
    return NULL;
  }
  st->m = m;
  st->s = s;
  st->rp = rp;
  st->req = req;
  st->timeout = timeout;
  st->deadline = mc__now_ms() + timeout;
  st->step_id = (int64_t)(atomic_fetch_add(&m->next_step, 1) & INT64_MAX);
  st->local_part = local_part(m, rp->plan, self);
  st->b->on_error = abort_step;
  st->b->ctx = st;
  return st;
}

/* Starts RunGraph on every other task of the step, then runs this task's
 * own partition right here, without an RPC to itself. The batch holds one
 * pending count for the starter, which the caller drops (mc__batch_drop). */
static void step_launch(mc__step_result *st, mc__worker *self) {
  mc__plan *plan = st->rp->plan;
  mc__batch *b = st->b;
  mc__batch_hold(b); /* the starter's */
  for (size_t pass = 0; pass < 2; pass++)
    for (size_t i = 0; i < plan->nparts; i++) {
      if ((pass == 0) == (i == st->local_part))
        continue;
      mc__partition *p = &plan->parts[i];
      Tensorflow__RunGraphRequest rg = TENSORFLOW__RUN_GRAPH_REQUEST__INIT;
      Tensorflow__NamedTensorProto *send[p->nfeeds + 1];
      char *keys[p->nfetches + 1];
      rg.session_handle = st->s->handle;
      rg.graph_handle = st->rp->handles[i];
      rg.step_id = st->step_id;
      rg.n_send = p->nfeeds;
      rg.send = send;
      for (size_t j = 0; j < p->nfeeds; j++)
        send[j] = st->req->feed[p->feeds[j]];
      rg.n_recv_key = p->nfetches;
      rg.recv_key = keys;
      for (size_t j = 0; j < p->nfetches; j++)
        keys[j] = st->req->fetch[p->fetches[j]];
      if (i != st->local_part) {
        mc__batch_start(b, i, st->rp->chans[i],
                        "/tensorflow.WorkerService/RunGraph", &rg.base,
                        &tensorflow__run_graph_response__descriptor,
                        st->deadline - mc__now_ms());
        continue;
      }
      st->local = malloc(sizeof(*st->local));
      mc__batch_hold(b);
      if (st->local == NULL) {
        mc__batch_record(b, i, MC_RESOURCE_EXHAUSTED, "out of memory", NULL);
        continue;
      }
      tensorflow__run_graph_response__init(st->local);
      mc_code lrc =
          mc__worker_run(self, &rg, st->deadline - mc__now_ms(), st->local);
      mc__batch_record(b, i, lrc, lrc == MC_OK ? "" : mc_error_last()->message,
                       NULL);
    }
}

/* Every partition is done: the step's status and, on success, resp's
 * tensors (borrowed from st and the request). */
static mc_code step_finish(mc__step_result *st,
                           Tensorflow__RunStepResponse *resp) {
  const Tensorflow__RunStepRequest *req = st->req;
  mc__plan *plan = st->rp->plan;
  mc__batch *b = st->b;
  b->on_error = NULL;
  mc_code rc = MC_OK;
  /* The root cause: the first failure that is not another task's reaction
   * to it. */
  for (int rank = 0; rank <= 2 && rc == MC_OK; rank++)
    for (size_t i = 0; i < plan->nparts && rc == MC_OK; i++)
      if (b->codes[i] != MC_OK && error_rank(b->codes[i], b->msgs[i]) == rank)
        rc = mc__error_set(b->codes[i], "RunGraph on /job:%s/task:%d: %s",
                           plan->parts[i].job, plan->parts[i].task,
                           b->msgs[i] ? b->msgs[i] : "");
  if (rc == MC_OK && mc__now_ms() > st->deadline + 1000)
    rc = mc__error_set(MC_DEADLINE_EXCEEDED,
                       "step exceeded its timeout of "
                       "%lld ms",
                       (long long)st->timeout);
  if (rc == MC_OK) {
    st->named = calloc(req->n_fetch + 1, sizeof(*st->named));
    st->ptrs = calloc(req->n_fetch + 1, sizeof(*st->ptrs));
    if (st->named == NULL || st->ptrs == NULL)
      rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  for (size_t f = 0; rc == MC_OK && f < req->n_fetch; f++) {
    Tensorflow__NamedTensorProto *nt = &st->named[f];
    tensorflow__named_tensor_proto__init(nt);
    nt->name = req->fetch[f];
    st->ptrs[f] = nt;
    if (plan->fetch_from_feed[f] >= 0) {
      nt->tensor = req->feed[plan->fetch_from_feed[f]]->tensor;
      continue;
    }
    for (size_t i = 0; i < plan->nparts && nt->tensor == NULL; i++) {
      Tensorflow__RunGraphResponse *r =
          i == st->local_part ? st->local
                              : (Tensorflow__RunGraphResponse *)b->resp[i];
      for (size_t j = 0; j < plan->parts[i].nfetches; j++)
        if (plan->parts[i].fetches[j] == f && r != NULL && j < r->n_recv)
          nt->tensor = r->recv[j]->tensor;
    }
    if (nt->tensor == NULL)
      rc = mc__error_set(MC_INTERNAL, "no task returned fetch '%s'",
                         req->fetch[f]);
  }
  if (rc == MC_OK) {
    resp->n_tensor = req->n_fetch;
    resp->tensor = st->ptrs;
  }
  return rc;
}

mc_code mc__master_run_step(mc__master *m,
                            const Tensorflow__RunStepRequest *req,
                            int64_t call_timeout_ms,
                            Tensorflow__RunStepResponse *resp,
                            mc__step_result **keep) {
  *keep = NULL;
  if (req->partial_run_handle && req->partial_run_handle[0] != '\0')
    return mc__error_set(MC_UNIMPLEMENTED, "partial runs are not supported");
  msession *s = session_get(m, req->session_handle);
  if (s == NULL)
    return mc_error_last()->code;
  int64_t timeout = step_timeout(s, req, call_timeout_ms);
  reg_plan *rp = NULL;
  mc_code rc = get_plan(m, s, req, timeout, &rp);
  mc__worker *self = mc__worker_of_task(m->task);
  mc__step_result *st =
      rc == MC_OK ? step_new(m, s, rp, req, timeout, self) : NULL;
  if (st == NULL) {
    rc = mc_error_last()->code;
    session_unref(m, s);
    return rc;
  }
  step_launch(st, self);
  mc__batch_drop(st->b);
  mc__batch_wait(st->b);
  rc = step_finish(st, resp);
  session_unref(m, s);
  if (rc != MC_OK) {
    mc__master_run_step_release(resp, st);
    return rc;
  }
  *keep = st;
  return MC_OK;
}

/* The last reference of a session may drop on a completion-queue thread
 * (the session was closed during the step); destroying it deregisters its
 * graphs with blocking calls, so that goes to the blocking pool. */
static void session_destroy_task(void *arg) {
  session_destroy(arg, 1);
}

static void session_unref_nowait(mc__master *m, msession *s) {
  pthread_mutex_lock(&m->mu);
  int last = --s->refs == 0;
  pthread_mutex_unlock(&m->mu);
  if (last && mc__rpc_run_blocking(session_destroy_task, s) != MC_OK)
    session_destroy(s, 1); /* out of memory: block rather than leak */
}

static void step_complete(mc__batch *b) {
  mc__step_result *st = b->ctx;
  Tensorflow__RunStepResponse resp = TENSORFLOW__RUN_STEP_RESPONSE__INIT;
  mc_code rc = step_finish(st, &resp);
  session_unref_nowait(st->m, st->s);
  st->s = NULL;
  st->done(st->done_arg, st->req, rc,
           rc == MC_OK ? "" : mc_error_last()->message, &resp,
           rc == MC_OK ? st : NULL);
  if (rc != MC_OK)
    mc__master_run_step_release(NULL, st);
}

int mc__master_run_step_async(mc__master *m,
                              const Tensorflow__RunStepRequest *req,
                              int64_t call_timeout_ms, mc__step_done done,
                              void *arg) {
  if (req->partial_run_handle && req->partial_run_handle[0] != '\0')
    return 0;
  pthread_mutex_lock(&m->mu);
  msession *s = m->sessions;
  while (s != NULL && strcmp(s->handle, req->session_handle) != 0)
    s = s->next;
  if (s)
    s->refs++;
  pthread_mutex_unlock(&m->mu);
  if (s == NULL)
    return 0;
  /* Only a plan registered already: planning and registering block. The
   * session's lock is held across a registration, hence trylock. */
  reg_plan *rp = NULL;
  char *sig = signature(req);
  if (sig != NULL && pthread_mutex_trylock(&s->mu) == 0) {
    for (rp = s->plans; rp != NULL && strcmp(rp->sig, sig) != 0;)
      rp = rp->next;
    pthread_mutex_unlock(&s->mu);
  }
  free(sig);
  /* This task's partition runs on the calling thread: only one that never
   * waits may. */
  mc__worker *self = mc__worker_of_task(m->task);
  mc__step_result *st = NULL;
  if (rp != NULL && rp->nowait)
    st = step_new(m, s, rp, req, step_timeout(s, req, call_timeout_ms), self);
  if (st == NULL) {
    session_unref_nowait(m, s);
    return 0;
  }
  st->done = done;
  st->done_arg = arg;
  st->b->on_complete = step_complete;
  step_launch(st, self);
  mc__batch_drop(st->b);
  return 1;
}

/* ---- devices and reset ---- */

static Tensorflow__DeviceAttributes *device(const char *job, int task,
                                            uint64_t incarnation) {
  Tensorflow__DeviceAttributes *d = malloc(sizeof(*d));
  char *name = malloc(300);
  if (d == NULL || name == NULL) {
    free(d);
    free(name);
    return NULL;
  }
  tensorflow__device_attributes__init(d);
  snprintf(name, 300, "/job:%s/replica:0/task:%d/device:CPU:0", job, task);
  d->name = name;
  d->device_type = "CPU";
  d->memory_limit = 268435456;
  d->incarnation = incarnation;
  return d;
}

mc_code mc__master_list_devices(mc__master *m,
                                Tensorflow__ListDevicesResponse *resp) {
  mc_cluster_spec *spec = mc__task_cluster_copy(m->task);
  if (spec == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  size_t total = 0;
  for (size_t j = 0; j < mc_cluster_spec_num_jobs(spec); j++) {
    size_t n = 0;
    mc_cluster_spec_num_tasks(spec, mc_cluster_spec_job(spec, j), &n);
    total += n;
  }
  resp->local_device = calloc(2, sizeof(*resp->local_device));
  resp->remote_device = calloc(total + 1, sizeof(*resp->remote_device));
  mc_code rc = MC_OK;
  if (!resp->local_device || !resp->remote_device)
    rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  for (size_t j = 0; rc == MC_OK && j < mc_cluster_spec_num_jobs(spec); j++) {
    const char *job = mc_cluster_spec_job(spec, j);
    const int *idx;
    size_t n;
    if (mc_cluster_spec_task_indices(spec, job, &idx, &n) != MC_OK)
      continue;
    for (size_t k = 0; k < n && rc == MC_OK; k++) {
      int mine = strcmp(job, m->task->job) == 0 && idx[k] == m->task->index;
      Tensorflow__DeviceAttributes *d =
          device(job, idx[k], mine ? m->task->incarnation : 0);
      if (d == NULL)
        rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
      else if (mine)
        resp->local_device[resp->n_local_device++] = d;
      else
        resp->remote_device[resp->n_remote_device++] = d;
    }
  }
  mc_cluster_spec_free(spec);
  return rc;
}

void mc__master_list_devices_release(Tensorflow__ListDevicesResponse *resp) {
  for (size_t i = 0; i < resp->n_local_device; i++) {
    free(resp->local_device[i]->name);
    free(resp->local_device[i]);
  }
  for (size_t i = 0; i < resp->n_remote_device; i++) {
    free(resp->remote_device[i]->name);
    free(resp->remote_device[i]);
  }
  free(resp->local_device);
  free(resp->remote_device);
}

mc_code mc__master_reset(mc__master *m, const Tensorflow__ResetRequest *req,
                         int64_t call_timeout_ms) {
  /* Close this master's sessions first (like TensorFlow's Reset). */
  pthread_mutex_lock(&m->mu);
  msession *list = m->sessions;
  m->sessions = NULL;
  pthread_mutex_unlock(&m->mu);
  for (msession *s = list, *next; s != NULL; s = next) {
    next = s->next;
    session_unref(m, s);
  }
  mc_cluster_spec *spec = mc__task_cluster_copy(m->task);
  if (spec == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  size_t total = 0;
  for (size_t j = 0; j < mc_cluster_spec_num_jobs(spec); j++) {
    size_t n = 0;
    mc_cluster_spec_num_tasks(spec, mc_cluster_spec_job(spec, j), &n);
    total += n;
  }
  mc__batch *b = mc__batch_new(total);
  char(*names)[300] = calloc(total + 1, sizeof(*names));
  if (b == NULL || names == NULL) {
    mc__batch_free(b);
    free(names);
    mc_cluster_spec_free(spec);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  Tensorflow__CleanupAllRequest ca = TENSORFLOW__CLEANUP_ALL_REQUEST__INIT;
  ca.n_container = req->n_container;
  ca.container = req->container;
  int64_t timeout = call_timeout_ms > 0 && call_timeout_ms < CONTROL_RPC_MS
                        ? call_timeout_ms
                        : CONTROL_RPC_MS;
  size_t k = 0;
  for (size_t j = 0; j < mc_cluster_spec_num_jobs(spec); j++) {
    const char *job = mc_cluster_spec_job(spec, j);
    const int *idx;
    size_t n;
    if (mc_cluster_spec_task_indices(spec, job, &idx, &n) != MC_OK)
      continue;
    for (size_t t = 0; t < n; t++, k++) {
      const char *addr;
      mc_rpc_channel *ch;
      snprintf(names[k], sizeof names[k], "/job:%s/task:%d", job, idx[t]);
      if (mc_cluster_spec_task_address(spec, job, idx[t], &addr) != MC_OK ||
          mc__rpc_channel_get(addr, &ch) != MC_OK) {
        b->codes[k] = mc_error_last()->code;
        b->msgs[k] = strdup(mc_error_last()->message);
        continue;
      }
      mc__batch_start(b, k, ch, "/tensorflow.WorkerService/CleanupAll",
                      &ca.base, &tensorflow__cleanup_all_response__descriptor,
                      timeout);
      mc__rpc_channel_release(ch);
    }
  }
  mc__batch_wait(b);
  mc_code rc = MC_OK;
  for (size_t i = 0; i < k && rc == MC_OK; i++)
    if (b->codes[i] != MC_OK)
      rc = mc__error_set(b->codes[i], "Reset: CleanupAll on %s: %s", names[i],
                         b->msgs[i] ? b->msgs[i] : "");
  mc__batch_free(b);
  free(names);
  mc_cluster_spec_free(spec);
  return rc;
}
