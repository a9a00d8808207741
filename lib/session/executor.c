/* The executor: compiles a GraphDef once, then runs steps over it. A step
 * prunes the graph to what its fetches and targets need (fed tensors cut
 * the graph), checks for cycles before running anything, and executes
 * ready nodes in dependency order on the calling thread. _Recv nodes are
 * asynchronous: each one is issued as soon as it is ready and completes
 * through the rendezvous, so partitions that wait on each other never
 * deadlock. */
#include "session/executor.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/pb.h"
#include "core/status.h"
#include "session/tensor.h"

int64_t mc__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct xin {
  char *name; /* node name */
  int port;   /* -1: control input */
  int node;   /* index, or -1 when not in the graph (must be fed) */
} xin;

typedef struct xnode {
  Tensorflow__NodeDef *def;
  const mc__op_def *op;
  xin *in; /* data inputs first, then control inputs */
  int ndata, nin;
  mc_tensor *cached; /* Const value */
} xnode;

struct mc__exec {
  Tensorflow__GraphDef *gd;
  xnode *nodes;
  int n;
  int *slots; /* open-addressing name index, nslots entries, -1 = empty */
  int nslots;
  int light;
  mc__exec_env env;
};

/* Ops whose kernels only move references or copy small attrs. */
static int light_op(const char *op) {
  static const char *const light[] = {
      "Const",      "Identity",       "NoOp",   "Placeholder",
      "VariableV2", "VarHandleOp",    "Assign", "AssignVariableOp",
      "_Send",      "ReadVariableOp",
  };
  for (size_t i = 0; i < sizeof light / sizeof light[0]; i++)
    if (strcmp(op, light[i]) == 0)
      return 1;
  return 0;
}

int mc__exec_is_light(const mc__exec *e) {
  return e->light;
}

static uint32_t hash_str(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (uint8_t)*s) * 16777619u;
  return h;
}

static int find_node(const mc__exec *e, const char *name) {
  for (uint32_t i = hash_str(name) % (uint32_t)e->nslots;;
       i = (i + 1) % (uint32_t)e->nslots) {
    int k = e->slots[i];
    if (k < 0)
      return -1;
    if (strcmp(e->nodes[k].def->name, name) == 0)
      return k;
  }
}

mc_code mc__parse_tensor_name(const char *s, char *buf, size_t size,
                              int *port) {
  const char *name = s;
  *port = 0;
  if (*name == '^') {
    name++;
    *port = -1;
  }
  const char *colon = strrchr(name, ':');
  size_t len = strlen(name);
  if (colon != NULL && *port == 0) {
    char *end;
    long k = strtol(colon + 1, &end, 10);
    if (*end != '\0' || colon[1] == '\0' || k < 0 || k > 1000000)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "malformed tensor name \"%s\" (expected node, "
                           "node:k or ^node)",
                           s);
    *port = (int)k;
    len = (size_t)(colon - name);
  }
  if (len == 0 || len >= size)
    return mc__error_set(MC_INVALID_ARGUMENT, "malformed tensor name \"%s\"",
                         s);
  memcpy(buf, name, len);
  buf[len] = '\0';
  return MC_OK;
}

void mc__exec_free(mc__exec *e) {
  if (e == NULL)
    return;
  for (int i = 0; i < e->n; i++) {
    for (int j = 0; j < e->nodes[i].nin; j++)
      free(e->nodes[i].in[j].name);
    free(e->nodes[i].in);
    mc_tensor_free(e->nodes[i].cached);
  }
  free(e->nodes);
  free(e->slots);
  if (e->gd)
    tensorflow__graph_def__free_unpacked(e->gd, NULL);
  free(e);
}

/* Deep-copies a GraphDef by packing and unpacking it. */
static Tensorflow__GraphDef *copy_graph(const Tensorflow__GraphDef *def) {
  size_t len = tensorflow__graph_def__get_packed_size(def);
  uint8_t *buf = malloc(len ? len : 1);
  if (buf == NULL)
    return NULL;
  tensorflow__graph_def__pack(def, buf);
  Tensorflow__GraphDef *g =
      MC_PB_UNPACK(tensorflow__graph_def, Tensorflow__GraphDef, len, buf);
  free(buf);
  return g;
}

static mc_code compile_node(mc__exec *e, xnode *x) {
  const Tensorflow__NodeDef *d = x->def;
  x->op = mc__op_lookup(d->op);
  if (x->op == NULL)
    return mc__error_set(MC_UNIMPLEMENTED,
                         "op '%s' of node '%s' is not implemented", d->op,
                         d->name);
  x->in = calloc(d->n_input ? d->n_input : 1, sizeof(*x->in));
  if (x->in == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  for (size_t i = 0; i < d->n_input; i++) {
    char name[1024];
    int port;
    if (mc__parse_tensor_name(d->input[i], name, sizeof name, &port) != MC_OK)
      return mc__error_prefix("node '%s': ", d->name);
    if (port >= 0 && x->nin > x->ndata)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "node '%s': data input '%s' after a control input",
                           d->name, d->input[i]);
    xin *in = &x->in[x->nin++];
    in->port = port;
    in->name = strdup(name);
    if (in->name == NULL)
      return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
    if (port >= 0)
      x->ndata++;
  }
  if (x->ndata < x->op->min_inputs || x->ndata > x->op->max_inputs)
    return mc__error_set(
        MC_INVALID_ARGUMENT, "node '%s' (%s) has %d inputs, expected %d%s%d",
        d->name, d->op, x->ndata, x->op->min_inputs,
        x->op->max_inputs > x->op->min_inputs ? ".." : "",
        x->op->max_inputs > x->op->min_inputs ? x->op->max_inputs
                                              : x->op->min_inputs);
  if (strcmp(d->op, "Const") == 0) {
    const Tensorflow__AttrValue *v = mc__node_attr(d, "value");
    if (v == NULL || v->value_case != TENSORFLOW__ATTR_VALUE__VALUE_TENSOR)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "node '%s' (Const) has no tensor attr \"value\"",
                           d->name);
    if (mc__tensor_from_proto(v->tensor, &x->cached) != MC_OK)
      return mc__error_prefix("node '%s' (Const): ", d->name);
    const Tensorflow__AttrValue *t = mc__node_attr(d, "dtype");
    if (t != NULL && t->value_case == TENSORFLOW__ATTR_VALUE__VALUE_TYPE &&
        (mc_dtype)t->type != mc_tensor_dtype(x->cached))
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "node '%s' (Const): attr dtype %s but value is %s",
                           d->name, mc_dtype_name((mc_dtype)t->type),
                           mc_dtype_name(mc_tensor_dtype(x->cached)));
  }
  (void)e;
  return MC_OK;
}

mc_code mc__exec_new(mc__exec **out, const Tensorflow__GraphDef *def,
                     const mc__exec_env *env) {
  *out = NULL;
  mc__exec *e = calloc(1, sizeof(*e));
  if (e == NULL || (e->gd = copy_graph(def)) == NULL) {
    free(e);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory for a graph");
  }
  e->env = *env;
  e->n = (int)e->gd->n_node;
  e->nslots = e->n * 2 + 1;
  e->nodes = calloc((size_t)(e->n ? e->n : 1), sizeof(*e->nodes));
  e->slots = malloc((size_t)e->nslots * sizeof(int));
  if (e->nodes == NULL || e->slots == NULL) {
    mc__exec_free(e);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory for a graph");
  }
  for (int i = 0; i < e->nslots; i++)
    e->slots[i] = -1;
  for (int i = 0; i < e->n; i++) {
    e->nodes[i].def = e->gd->node[i];
    const char *name = e->nodes[i].def->name;
    if (name[0] == '\0') {
      mc__exec_free(e);
      return mc__error_set(MC_INVALID_ARGUMENT, "node %d has an empty name", i);
    }
    uint32_t h = hash_str(name) % (uint32_t)e->nslots;
    while (e->slots[h] >= 0) {
      if (strcmp(e->nodes[e->slots[h]].def->name, name) == 0) {
        mc__exec_free(e);
        return mc__error_set(MC_INVALID_ARGUMENT, "duplicate node name '%s'",
                             name);
      }
      h = (h + 1) % (uint32_t)e->nslots;
    }
    e->slots[h] = i;
  }
  e->light = 1;
  for (int i = 0; i < e->n; i++) {
    e->light &= light_op(e->nodes[i].def->op);
    mc_code rc = compile_node(e, &e->nodes[i]);
    if (rc != MC_OK) {
      mc__exec_free(e);
      return rc;
    }
    for (int j = 0; j < e->nodes[i].nin; j++)
      e->nodes[i].in[j].node = find_node(e, e->nodes[i].in[j].name);
  }
  *out = e;
  return MC_OK;
}

/* ---- one run ---- */

typedef struct completion {
  int node;
  mc_code code;
  char *msg;
  mc_tensor *t;
  struct completion *next;
} completion;

/* State shared with in-flight _Recv callbacks, which may outlive the run
 * (a failed run returns while recvs are still pending). */
typedef struct shared {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int refs;
  completion *head, *tail;
} shared;

typedef struct recv_arg {
  shared *sh;
  int node;
} recv_arg;

static void shared_unref(shared *sh) {
  pthread_mutex_lock(&sh->mu);
  int last = --sh->refs == 0;
  pthread_mutex_unlock(&sh->mu);
  if (!last)
    return;
  for (completion *c = sh->head, *next; c != NULL; c = next) {
    next = c->next;
    mc_tensor_free(c->t);
    free(c->msg);
    free(c);
  }
  pthread_cond_destroy(&sh->cv);
  pthread_mutex_destroy(&sh->mu);
  free(sh);
}

static void recv_done(void *arg, mc_code code, const char *msg, mc_tensor *t) {
  recv_arg *ra = arg;
  shared *sh = ra->sh;
  completion *c = calloc(1, sizeof(*c));
  if (c != NULL) {
    c->node = ra->node;
    c->code = code;
    c->msg = strdup(msg ? msg : "");
    c->t = t;
  } else {
    mc_tensor_free(t);
  }
  free(ra);
  pthread_mutex_lock(&sh->mu);
  if (c != NULL) {
    if (sh->tail)
      sh->tail->next = c;
    else
      sh->head = c;
    sh->tail = c;
  }
  pthread_cond_signal(&sh->cv);
  pthread_mutex_unlock(&sh->mu);
  shared_unref(sh);
}

typedef struct feed {
  char name[1024];
  int port;
  mc_tensor *t;
} feed;

typedef struct run {
  mc__exec *e;
  const mc__exec_args *a;
  feed *feeds;
  size_t nfeeds;
  char *needed;
  int *pending;
  int **succ; /* successors per node (needed nodes only) */
  int *nsucc;
  mc__value *vals;
  int *ready;
  int nready, nneeded;
  shared *sh;
} run;

static mc_tensor *fed(const run *r, const char *name, int port) {
  for (size_t i = 0; i < r->nfeeds; i++)
    if (r->feeds[i].port == port && strcmp(r->feeds[i].name, name) == 0)
      return r->feeds[i].t;
  return NULL;
}

static void value_clear(run *r, mc__value *v) {
  mc_tensor_free(v->t);
  if (v->var)
    mc__var_release(r->e->env.resources, v->var);
  memset(v, 0, sizeof(*v));
}

/* Marks node k and everything it needs. Iterative to bound the stack. */
static mc_code mark_needed(run *r, int root, int *stack) {
  int sp = 0;
  if (r->needed[root])
    return MC_OK;
  r->needed[root] = 1;
  r->nneeded++;
  stack[sp++] = root;
  while (sp > 0) {
    xnode *x = &r->e->nodes[stack[--sp]];
    for (int j = 0; j < x->nin; j++) {
      xin *in = &x->in[j];
      if (in->port >= 0 && fed(r, in->name, in->port))
        continue;
      if (in->node < 0)
        return mc__error_set(MC_INVALID_ARGUMENT,
                             "node '%s': input '%s' names no node in the "
                             "graph and is not fed",
                             x->def->name, x->def->input[j]);
      if (in->port > 0)
        return mc__error_set(MC_INVALID_ARGUMENT,
                             "node '%s': input '%s' asks for output %d, but "
                             "'%s' (%s) has one output",
                             x->def->name, x->def->input[j], in->port, in->name,
                             r->e->nodes[in->node].def->op);
      if (!r->needed[in->node]) {
        r->needed[in->node] = 1;
        r->nneeded++;
        stack[sp++] = in->node;
      }
    }
  }
  return MC_OK;
}

/* Builds successor lists and pending counts; fails naming a node on a
 * cycle, before anything runs. */
static mc_code plan(run *r) {
  mc__exec *e = r->e;
  for (int i = 0; i < e->n; i++) {
    if (!r->needed[i])
      continue;
    xnode *x = &e->nodes[i];
    for (int j = 0; j < x->nin; j++) {
      xin *in = &x->in[j];
      if (in->port >= 0 && fed(r, in->name, in->port))
        continue;
      r->nsucc[in->node]++;
      r->pending[i]++;
    }
  }
  for (int i = 0; i < e->n; i++) {
    if (r->nsucc[i] == 0)
      continue;
    r->succ[i] = malloc((size_t)r->nsucc[i] * sizeof(int));
    if (r->succ[i] == NULL)
      return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
    r->nsucc[i] = 0;
  }
  for (int i = 0; i < e->n; i++) {
    if (!r->needed[i])
      continue;
    xnode *x = &e->nodes[i];
    for (int j = 0; j < x->nin; j++) {
      xin *in = &x->in[j];
      if (in->port >= 0 && fed(r, in->name, in->port))
        continue;
      r->succ[in->node][r->nsucc[in->node]++] = i;
    }
  }
  /* Kahn's algorithm on a copy of the counts: whatever is left is on or
   * behind a cycle. */
  int *cnt = malloc((size_t)(e->n ? e->n : 1) * sizeof(int));
  int *queue = malloc((size_t)(e->n ? e->n : 1) * sizeof(int));
  if (cnt == NULL || queue == NULL) {
    free(cnt);
    free(queue);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  int qh = 0, qt = 0;
  for (int i = 0; i < e->n; i++) {
    cnt[i] = r->pending[i];
    if (r->needed[i] && cnt[i] == 0)
      queue[qt++] = i;
  }
  while (qh < qt) {
    int k = queue[qh++];
    for (int s = 0; s < r->nsucc[k]; s++)
      if (--cnt[r->succ[k][s]] == 0)
        queue[qt++] = r->succ[k][s];
  }
  mc_code rc = MC_OK;
  if (qt < r->nneeded) {
    /* Report a node that is on a cycle: walk back from any leftover node
     * through leftover inputs until a node repeats. */
    int k = -1;
    for (int i = 0; i < e->n && k < 0; i++)
      if (r->needed[i] && cnt[i] > 0)
        k = i;
    char *seen = calloc((size_t)e->n, 1);
    while (seen != NULL && !seen[k]) {
      seen[k] = 1;
      xnode *x = &e->nodes[k];
      for (int j = 0; j < x->nin; j++) {
        int p = x->in[j].node;
        if (p >= 0 && r->needed[p] && cnt[p] > 0 &&
            !(x->in[j].port >= 0 && fed(r, x->in[j].name, x->in[j].port))) {
          k = p;
          break;
        }
      }
    }
    free(seen);
    rc = mc__error_set(MC_INVALID_ARGUMENT,
                       "graph has a cycle through node '%s'",
                       e->nodes[k].def->name);
  }
  free(cnt);
  free(queue);
  for (int i = 0; i < e->n; i++)
    if (r->needed[i] && r->pending[i] == 0)
      r->ready[r->nready++] = i;
  return rc;
}

static mc_code node_error(const xnode *x) {
  return mc__error_prefix("node '%s' (%s): ", x->def->name, x->def->op);
}

/* Collects input j of node x into *v (a new reference). */
static mc_code get_input(run *r, xnode *x, int j, mc__value *v) {
  xin *in = &x->in[j];
  mc_tensor *f = fed(r, in->name, in->port);
  int want_ref = j == 0 && (x->op->flags & MC__OP_REF_IN0);
  int want_res = j == 0 && (x->op->flags & MC__OP_RES_IN0);
  const mc__value *src = f ? NULL : &r->vals[in->node];
  if (f != NULL || src->kind == MC__V_TENSOR) {
    if (want_ref || want_res)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "input 0 ('%s') must be a %s, got a tensor",
                           x->def->input[j], want_ref ? "ref" : "resource");
    v->kind = MC__V_TENSOR;
    v->t = mc__tensor_ref(f ? f : src->t);
    return MC_OK;
  }
  if (src->kind == MC__V_NONE)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "input '%s' has no value ('%s' is %s and produces "
                         "no output)",
                         x->def->input[j], in->name,
                         r->e->nodes[in->node].def->op);
  if (src->kind == MC__V_REF && !want_ref) {
    if (want_res)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "input 0 ('%s') must be a resource, got a ref",
                           x->def->input[j]);
    v->kind = MC__V_TENSOR;
    return mc__var_read(src->var, &v->t);
  }
  if (src->kind == MC__V_RESOURCE && !want_res)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "input '%s' is a resource handle; read it with "
                         "ReadVariableOp",
                         x->def->input[j]);
  v->kind = src->kind;
  v->var = mc__var_retain(r->e->env.resources, src->var);
  return MC_OK;
}

static void finish_node(run *r, int k) {
  for (int s = 0; s < r->nsucc[k]; s++)
    if (--r->pending[r->succ[k][s]] == 0)
      r->ready[r->nready++] = r->succ[k][s];
}

static mc_code start_recv(run *r, xnode *x, int k) {
  char key[1200];
  if (mc__send_recv_key(x->def, key, sizeof key) != MC_OK)
    return node_error(x);
  if (r->a->rdv == NULL)
    return mc__error_set(MC_INTERNAL, "node '%s' (_Recv): no rendezvous",
                         x->def->name);
  recv_arg *ra = malloc(sizeof(*ra));
  if (ra == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  ra->sh = r->sh;
  ra->node = k;
  pthread_mutex_lock(&r->sh->mu);
  r->sh->refs++;
  pthread_mutex_unlock(&r->sh->mu);
  r->a->rdv->recv(r->a->rdv, r->a->step_id, key, r->a->deadline_ms, recv_done,
                  ra);
  return MC_OK;
}

static mc_code run_node(run *r, int k) {
  xnode *x = &r->e->nodes[k];
  mc__value in[4];
  memset(in, 0, sizeof in);
  mc_code rc = MC_OK;
  int nin = 0;
  for (; nin < x->ndata; nin++)
    if ((rc = get_input(r, x, nin, &in[nin])) != MC_OK)
      break;
  if (rc == MC_OK) {
    mc__opctx c;
    memset(&c, 0, sizeof c);
    c.node = x->def;
    c.in = in;
    c.nin = x->ndata;
    c.env = &r->e->env;
    c.cached = x->cached;
    c.step_id = r->a->step_id;
    c.rdv = r->a->rdv;
    rc = x->op->fn(&c);
    r->vals[k] = c.out;
  }
  for (int j = 0; j < nin; j++)
    value_clear(r, &in[j]);
  if (rc != MC_OK)
    return node_error(x);
  finish_node(r, k);
  return MC_OK;
}

static mc_code wait_completion(run *r, int *done) {
  pthread_mutex_lock(&r->sh->mu);
  while (r->sh->head == NULL) {
    if (r->a->deadline_ms > 0) {
      int64_t left = r->a->deadline_ms - mc__now_ms();
      if (left <= 0) {
        pthread_mutex_unlock(&r->sh->mu);
        return mc__error_set(MC_DEADLINE_EXCEEDED,
                             "step %lld timed out waiting for a tensor from "
                             "another task",
                             (long long)r->a->step_id);
      }
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      ts.tv_sec += left / 1000;
      ts.tv_nsec += (left % 1000) * 1000000;
      if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
      }
      pthread_cond_timedwait(&r->sh->cv, &r->sh->mu, &ts);
    } else {
      pthread_cond_wait(&r->sh->cv, &r->sh->mu);
    }
  }
  completion *c = r->sh->head;
  r->sh->head = c->next;
  if (r->sh->head == NULL)
    r->sh->tail = NULL;
  pthread_mutex_unlock(&r->sh->mu);
  mc_code rc = c->code;
  xnode *x = &r->e->nodes[c->node];
  if (rc != MC_OK) {
    mc__error_set(rc, "node '%s' (_Recv): %s", x->def->name, c->msg);
  } else {
    r->vals[c->node].kind = MC__V_TENSOR;
    r->vals[c->node].t = c->t;
    c->t = NULL;
    finish_node(r, c->node);
    (*done)++;
  }
  free(c->msg);
  free(c);
  return rc;
}

static mc_code execute(run *r) {
  int done = 0, inflight = 0;
  while (done < r->nneeded) {
    if (r->nready > 0) {
      int k = r->ready[--r->nready];
      xnode *x = &r->e->nodes[k];
      mc_code rc;
      if (x->op->flags & MC__OP_RECV) {
        rc = start_recv(r, x, k);
        inflight++;
      } else {
        rc = run_node(r, k);
        done++;
      }
      if (rc != MC_OK)
        return rc;
      continue;
    }
    if (inflight == 0)
      return mc__error_set(MC_INTERNAL,
                           "executor stalled with %d of %d "
                           "nodes done",
                           done, r->nneeded);
    mc_code rc = wait_completion(r, &done);
    inflight--;
    if (rc != MC_OK)
      return rc;
  }
  return MC_OK;
}

static mc_code collect_fetch(run *r, size_t i, mc_tensor **out) {
  char name[1024];
  int port;
  if (mc__parse_tensor_name(r->a->fetches[i], name, sizeof name, &port) !=
      MC_OK)
    return mc__error_prefix("fetch: ");
  mc_tensor *f = fed(r, name, port);
  if (f != NULL) {
    *out = mc__tensor_ref(f);
    return MC_OK;
  }
  int k = find_node(r->e, name);
  const mc__value *v = &r->vals[k];
  switch (v->kind) {
  case MC__V_TENSOR:
    *out = mc__tensor_ref(v->t);
    return MC_OK;
  case MC__V_REF:
    if (mc__var_read(v->var, out) != MC_OK)
      return mc__error_prefix("fetch '%s': ", r->a->fetches[i]);
    return MC_OK;
  default:
    return mc__error_set(
        MC_INVALID_ARGUMENT, "fetch '%s': %s has no tensor value to fetch",
        r->a->fetches[i],
        v->kind == MC__V_RESOURCE ? "a resource handle" : "the node");
  }
}

static mc_code setup(run *r, mc__exec *e, const mc__exec_args *a) {
  r->e = e;
  r->a = a;
  size_t n = (size_t)(e->n ? e->n : 1);
  r->feeds = calloc(a->nfeeds ? a->nfeeds : 1, sizeof(*r->feeds));
  r->needed = calloc(n, 1);
  r->pending = calloc(n, sizeof(int));
  r->succ = calloc(n, sizeof(int *));
  r->nsucc = calloc(n, sizeof(int));
  r->vals = calloc(n, sizeof(mc__value));
  r->ready = calloc(n, sizeof(int));
  r->sh = calloc(1, sizeof(*r->sh));
  if (!r->feeds || !r->needed || !r->pending || !r->succ || !r->nsucc ||
      !r->vals || !r->ready || !r->sh) {
    free(r->sh);
    r->sh = NULL;
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory for a step");
  }
  pthread_mutex_init(&r->sh->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->sh->cv, &ca);
  pthread_condattr_destroy(&ca);
  r->sh->refs = 1;
  for (size_t i = 0; i < a->nfeeds; i++) {
    feed *f = &r->feeds[i];
    if (mc__parse_tensor_name(a->feed_names[i], f->name, sizeof f->name,
                              &f->port) != MC_OK ||
        f->port < 0)
      return mc__error_set(MC_INVALID_ARGUMENT, "bad feed name \"%s\"",
                           a->feed_names[i]);
    f->t = a->feeds[i];
    r->nfeeds++;
  }
  int *stack = malloc(n * sizeof(int));
  if (stack == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  mc_code rc = MC_OK;
  if (a->run_all) {
    for (int i = 0; i < e->n && rc == MC_OK; i++)
      rc = mark_needed(r, i, stack);
  }
  for (size_t i = 0; i < a->nfetches && rc == MC_OK; i++) {
    char name[1024];
    int port;
    if (mc__parse_tensor_name(a->fetches[i], name, sizeof name, &port) !=
            MC_OK ||
        port < 0) {
      rc = mc__error_set(MC_INVALID_ARGUMENT, "bad fetch name \"%s\"",
                         a->fetches[i]);
      break;
    }
    if (fed(r, name, port))
      continue;
    int k = find_node(e, name);
    if (k < 0)
      rc =
          mc__error_set(MC_INVALID_ARGUMENT,
                        "fetch '%s' names no node in the graph", a->fetches[i]);
    else if (port > 0)
      rc = mc__error_set(MC_INVALID_ARGUMENT,
                         "fetch '%s': node '%s' (%s) has one output",
                         a->fetches[i], name, e->nodes[k].def->op);
    else
      rc = mark_needed(r, k, stack);
  }
  for (size_t i = 0; i < a->ntargets && rc == MC_OK; i++) {
    const char *t = a->targets[i][0] == '^' ? a->targets[i] + 1 : a->targets[i];
    int k = find_node(e, t);
    if (k < 0)
      rc = mc__error_set(MC_INVALID_ARGUMENT,
                         "target '%s' names no node in the graph", t);
    else
      rc = mark_needed(r, k, stack);
  }
  free(stack);
  if (rc == MC_OK)
    rc = plan(r);
  return rc;
}

static void teardown(run *r) {
  if (r->vals)
    for (int i = 0; i < r->e->n; i++)
      value_clear(r, &r->vals[i]);
  if (r->succ)
    for (int i = 0; i < r->e->n; i++)
      free(r->succ[i]);
  free(r->feeds);
  free(r->needed);
  free(r->pending);
  free(r->succ);
  free(r->nsucc);
  free(r->vals);
  free(r->ready);
  if (r->sh)
    shared_unref(r->sh);
}

mc_code mc__exec_run(mc__exec *e, const mc__exec_args *a, mc_tensor **outputs) {
  run r;
  memset(&r, 0, sizeof r);
  for (size_t i = 0; i < a->nfetches; i++)
    outputs[i] = NULL;
  mc_code rc = setup(&r, e, a);
  if (rc == MC_OK)
    rc = execute(&r);
  for (size_t i = 0; i < a->nfetches && rc == MC_OK; i++)
    rc = collect_fetch(&r, i, &outputs[i]);
  if (rc != MC_OK)
    for (size_t i = 0; i < a->nfetches; i++) {
      mc_tensor_free(outputs[i]);
      outputs[i] = NULL;
    }
  teardown(&r);
  return rc;
}
