/* Placement and partitioning. A node runs on the task its device names
 * (job defaults to the master's job, task to the master's task within the
 * master's job, else 0). Ops that take a ref or resource as input 0
 * (Assign, ReadVariableOp, ...) run on the task of that input's producer,
 * as TensorFlow colocates them with their variable. Every data or control
 * edge between tasks becomes a _Send on the producer's task and a _Recv on
 * the consumer's task, keyed by the edge. */
#include "session/partition.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pb.h"
#include "core/status.h"
#include "session/device.h"
#include "session/executor.h"
#include "session/graph.h"

typedef struct pnode {
  const Tensorflow__NodeDef *def;
  int needed;
  int part;     /* partition index */
  int *in_node; /* per input: node index or -1 */
  int *in_port; /* per input: port, -1 for control */
  int *in_feed; /* per input: feed index or -1 */
} pnode;

typedef struct ctx {
  const mc__plan_args *a;
  pnode *nodes;
  int n;
  char (*feed_node)[1024];
  int *feed_port;
  mc__plan *plan;
} ctx;

static int find(const ctx *c, const char *name) {
  for (int i = 0; i < c->n; i++)
    if (strcmp(c->nodes[i].def->name, name) == 0)
      return i;
  return -1;
}

static int feed_of(const ctx *c, const char *name, int port) {
  for (size_t i = 0; i < c->a->nfeeds; i++)
    if (c->feed_port[i] == port && strcmp(c->feed_node[i], name) == 0)
      return (int)i;
  return -1;
}

static mc_code mark(ctx *c, int root) {
  int *stack = malloc((size_t)(c->n + 1) * sizeof(int));
  if (stack == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  int sp = 0;
  if (!c->nodes[root].needed) {
    c->nodes[root].needed = 1;
    stack[sp++] = root;
  }
  while (sp > 0) {
    pnode *p = &c->nodes[stack[--sp]];
    for (size_t j = 0; j < p->def->n_input; j++) {
      if (p->in_feed[j] >= 0)
        continue;
      int k = p->in_node[j];
      if (k < 0) {
        free(stack);
        return mc__error_set(MC_INVALID_ARGUMENT,
                             "node '%s': input '%s' names no node in the "
                             "graph and is not fed",
                             p->def->name, p->def->input[j]);
      }
      if (!c->nodes[k].needed) {
        c->nodes[k].needed = 1;
        stack[sp++] = k;
      }
    }
  }
  free(stack);
  return MC_OK;
}

/* Kahn's algorithm over the needed nodes. */
static mc_code check_acyclic(ctx *c) {
  int *cnt = calloc((size_t)c->n + 1, sizeof(int));
  int *queue = malloc(((size_t)c->n + 1) * sizeof(int));
  if (cnt == NULL || queue == NULL) {
    free(cnt);
    free(queue);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  int qh = 0, qt = 0, needed = 0;
  for (int i = 0; i < c->n; i++) {
    if (!c->nodes[i].needed)
      continue;
    needed++;
    for (size_t j = 0; j < c->nodes[i].def->n_input; j++)
      cnt[i] += c->nodes[i].in_feed[j] < 0;
    if (cnt[i] == 0)
      queue[qt++] = i;
  }
  while (qh < qt) {
    int k = queue[qh++];
    for (int i = 0; i < c->n; i++) {
      if (!c->nodes[i].needed)
        continue;
      for (size_t j = 0; j < c->nodes[i].def->n_input; j++)
        if (c->nodes[i].in_feed[j] < 0 && c->nodes[i].in_node[j] == k &&
            --cnt[i] == 0)
          queue[qt++] = i;
    }
  }
  mc_code rc = MC_OK;
  if (qt < needed)
    for (int i = 0; i < c->n; i++)
      if (c->nodes[i].needed && cnt[i] > 0) {
        rc = mc__error_set(MC_INVALID_ARGUMENT,
                           "graph has a cycle through node '%s'",
                           c->nodes[i].def->name);
        break;
      }
  free(cnt);
  free(queue);
  return rc;
}

static int part_index(ctx *c, const char *job, int task) {
  mc__plan *p = c->plan;
  for (size_t i = 0; i < p->nparts; i++)
    if (p->parts[i].task == task && strcmp(p->parts[i].job, job) == 0)
      return (int)i;
  mc__partition *parts = realloc(p->parts, (p->nparts + 1) * sizeof(*parts));
  if (parts == NULL)
    return -1;
  p->parts = parts;
  mc__partition *q = &parts[p->nparts];
  memset(q, 0, sizeof(*q));
  snprintf(q->job, sizeof q->job, "%s", job);
  q->task = task;
  mc__device_name(job, task, q->device, sizeof q->device);
  const char *addr = "";
  (void)mc_cluster_spec_task_address(c->a->spec, job, task, &addr);
  snprintf(q->address, sizeof q->address, "%s", addr);
  return (int)p->nparts++;
}

static mc_code place(ctx *c) {
  for (int i = 0; i < c->n; i++) {
    pnode *p = &c->nodes[i];
    if (!p->needed)
      continue;
    mc__device d;
    if (mc__device_parse(p->def->device, &d) != MC_OK)
      return mc__error_prefix("node '%s': ", p->def->name);
    if (d.job[0] == '\0')
      snprintf(d.job, sizeof d.job, "%s", c->a->master_job);
    if (d.task < 0)
      d.task = strcmp(d.job, c->a->master_job) == 0 ? c->a->master_task : 0;
    const char *addr;
    if (mc_cluster_spec_task_address(c->a->spec, d.job, d.task, &addr) !=
        MC_OK) {
      char why[512];
      snprintf(why, sizeof why, "%s", mc_error_last()->message);
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "node '%s': device \"%s\" is not a task of the "
                           "cluster (%s)",
                           p->def->name, p->def->device, why);
    }
    p->part = part_index(c, d.job, d.task);
    if (p->part < 0)
      return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  /* Colocate ref/resource consumers with the producer of input 0; chains
   * (Assign of an Assign) settle within n passes. */
  for (int pass = 0, changed = 1; changed && pass <= c->n; pass++) {
    changed = 0;
    for (int i = 0; i < c->n; i++) {
      pnode *p = &c->nodes[i];
      const mc__op_def *op = mc__op_lookup(p->def->op);
      if (!p->needed || op == NULL ||
          !(op->flags & (MC__OP_REF_IN0 | MC__OP_RES_IN0)) ||
          p->def->n_input == 0 || p->in_feed[0] >= 0 || p->in_node[0] < 0)
        continue;
      int want = c->nodes[p->in_node[0]].part;
      if (p->part != want) {
        p->part = want;
        changed = 1;
      }
    }
  }
  return MC_OK;
}

static mc_code add_index(size_t **arr, size_t *n, size_t v) {
  size_t *a = realloc(*arr, (*n + 1) * sizeof(size_t));
  if (a == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  a[(*n)++] = v;
  *arr = a;
  return MC_OK;
}

static Tensorflow__NodeDef *copy_node(const Tensorflow__NodeDef *n) {
  size_t len = tensorflow__node_def__get_packed_size(n);
  uint8_t *buf = malloc(len ? len : 1);
  if (buf == NULL)
    return NULL;
  tensorflow__node_def__pack(n, buf);
  Tensorflow__NodeDef *c =
      MC_PB_UNPACK(tensorflow__node_def, Tensorflow__NodeDef, len, buf);
  free(buf);
  return c;
}

static mc_code set_str(char **field, const char *v) {
  char *s = strdup(v);
  if (s == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  if (*field != NULL && *field != protobuf_c_empty_string)
    free(*field);
  *field = s;
  return MC_OK;
}

/* Adds a _Send or _Recv for edge "<src>:<port>" (port -1: control). */
static mc_code add_transfer(mc_graph *g, const char *name, int send,
                            const char *src, int port, const char *from,
                            const char *to) {
  char in[1100], edge[1100];
  if (port >= 0) {
    snprintf(in, sizeof in, "%s:%d", src, port);
    snprintf(edge, sizeof edge, "%s:%d", src, port);
  } else {
    snprintf(in, sizeof in, "^%s", src);
    snprintf(edge, sizeof edge, "%s:control", src);
  }
  const char *inputs[1] = {in};
  mc_node *n;
  mc_code rc = mc_graph_add(g, name, send ? "_Send" : "_Recv", inputs,
                            send ? 1 : 0, send ? from : to, &n);
  if (rc == MC_OK)
    rc = mc_node_set_string(n, "tensor_name", edge);
  if (rc == MC_OK)
    rc = mc_node_set_string(n, "send_device", from);
  if (rc == MC_OK)
    rc = mc_node_set_string(n, "recv_device", to);
  if (rc == MC_OK)
    rc = mc_node_set_int(n, "send_device_incarnation", 1);
  if (rc == MC_OK)
    rc = mc_node_set_bool(n, "client_terminated", 0);
  return rc;
}

static int has_node(mc_graph *g, const char *name) {
  const Tensorflow__GraphDef *gd = mc__graph_def(g);
  for (size_t i = 0; i < gd->n_node; i++)
    if (strcmp(gd->node[i]->name, name) == 0)
      return 1;
  return 0;
}

static mc_code build_parts(ctx *c) {
  mc__plan *p = c->plan;
  mc_graph **gs = calloc(p->nparts ? p->nparts : 1, sizeof(*gs));
  if (gs == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  mc_code rc = MC_OK;
  for (size_t i = 0; i < p->nparts && rc == MC_OK; i++)
    rc = mc_graph_new(&gs[i]);
  for (int i = 0; i < c->n && rc == MC_OK; i++) {
    pnode *x = &c->nodes[i];
    if (!x->needed)
      continue;
    mc__partition *dst = &p->parts[x->part];
    Tensorflow__NodeDef *copy = copy_node(x->def);
    if (copy == NULL) {
      rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
      break;
    }
    rc = set_str(&copy->device, dst->device);
    for (size_t j = 0; j < copy->n_input && rc == MC_OK; j++) {
      if (x->in_feed[j] >= 0) {
        /* The partition gets the fed value itself. */
        size_t f = (size_t)x->in_feed[j];
        int dup = 0;
        for (size_t k = 0; k < dst->nfeeds; k++)
          dup |= dst->feeds[k] == f;
        if (!dup)
          rc = add_index(&dst->feeds, &dst->nfeeds, f);
        continue;
      }
      pnode *src = &c->nodes[x->in_node[j]];
      if (src->part == x->part)
        continue;
      mc__partition *from = &p->parts[src->part];
      int port = x->in_port[j];
      char recv[1200], sendn[1500], in[1300];
      if (port >= 0)
        snprintf(recv, sizeof recv, "_recv_%s_%d", src->def->name, port);
      else
        snprintf(recv, sizeof recv, "_recv_%s_control", src->def->name);
      snprintf(sendn, sizeof sendn, "_send_%s_%s_%d", recv + 6, dst->job,
               dst->task);
      if (!has_node(gs[x->part], recv))
        rc = add_transfer(gs[x->part], recv, 0, src->def->name, port,
                          from->device, dst->device);
      if (rc == MC_OK && !has_node(gs[src->part], sendn))
        rc = add_transfer(gs[src->part], sendn, 1, src->def->name, port,
                          from->device, dst->device);
      if (port >= 0)
        snprintf(in, sizeof in, "%s", recv);
      else
        snprintf(in, sizeof in, "^%s", recv);
      if (rc == MC_OK)
        rc = set_str(&copy->input[j], in);
    }
    if (rc == MC_OK)
      rc = mc__graph_append(gs[x->part], copy);
    else
      protobuf_c_message_free_unpacked(&copy->base, NULL);
  }
  for (size_t i = 0; i < p->nparts; i++)
    if (gs[i] != NULL)
      p->parts[i].gd = mc__graph_release(gs[i]);
  free(gs);
  return rc;
}

void mc__plan_free(mc__plan *p) {
  if (p == NULL)
    return;
  for (size_t i = 0; i < p->nparts; i++) {
    if (p->parts[i].gd)
      protobuf_c_message_free_unpacked(&p->parts[i].gd->base, NULL);
    free(p->parts[i].feeds);
    free(p->parts[i].fetches);
  }
  free(p->parts);
  free(p->fetch_from_feed);
  free(p);
}

static mc_code plan_fetches(ctx *c) {
  const mc__plan_args *a = c->a;
  for (size_t i = 0; i < a->nfetches; i++) {
    char name[1024];
    int port;
    if (mc__parse_tensor_name(a->fetches[i], name, sizeof name, &port) !=
            MC_OK ||
        port < 0)
      return mc__error_set(MC_INVALID_ARGUMENT, "bad fetch name \"%s\"",
                           a->fetches[i]);
    int f = feed_of(c, name, port);
    c->plan->fetch_from_feed[i] = f;
    if (f >= 0)
      continue;
    int k = find(c, name);
    if (k < 0)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "fetch '%s' names no node in the graph",
                           a->fetches[i]);
    if (port > 0)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "fetch '%s': node '%s' (%s) has one output",
                           a->fetches[i], name, c->nodes[k].def->op);
    mc_code rc = mark(c, k);
    if (rc != MC_OK)
      return rc;
  }
  for (size_t i = 0; i < a->ntargets; i++) {
    const char *t = a->targets[i][0] == '^' ? a->targets[i] + 1 : a->targets[i];
    int k = find(c, t);
    if (k < 0)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "target '%s' names no node in the graph", t);
    mc_code rc = mark(c, k);
    if (rc != MC_OK)
      return rc;
  }
  return MC_OK;
}

static mc_code assign_fetches(ctx *c) {
  for (size_t i = 0; i < c->a->nfetches; i++) {
    if (c->plan->fetch_from_feed[i] >= 0)
      continue;
    char name[1024];
    int port;
    mc__parse_tensor_name(c->a->fetches[i], name, sizeof name, &port);
    mc__partition *q = &c->plan->parts[c->nodes[find(c, name)].part];
    mc_code rc = add_index(&q->fetches, &q->nfetches, i);
    if (rc != MC_OK)
      return rc;
  }
  return MC_OK;
}

mc_code mc__plan_build(const mc__plan_args *a, mc__plan **out) {
  *out = NULL;
  ctx c;
  memset(&c, 0, sizeof c);
  c.a = a;
  c.n = (int)a->graph->n_node;
  c.nodes = calloc((size_t)c.n + 1, sizeof(*c.nodes));
  c.feed_node = calloc(a->nfeeds + 1, sizeof(*c.feed_node));
  c.feed_port = calloc(a->nfeeds + 1, sizeof(int));
  c.plan = calloc(1, sizeof(*c.plan));
  mc_code rc = MC_OK;
  if (c.nodes == NULL || c.feed_node == NULL || c.feed_port == NULL ||
      c.plan == NULL ||
      (c.plan->fetch_from_feed = calloc(a->nfetches + 1, sizeof(long))) ==
          NULL) {
    rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
    goto done;
  }
  c.plan->nfetches = a->nfetches;
  for (size_t i = 0; i < a->nfeeds && rc == MC_OK; i++)
    if (mc__parse_tensor_name(a->feeds[i], c.feed_node[i],
                              sizeof c.feed_node[i],
                              &c.feed_port[i]) != MC_OK ||
        c.feed_port[i] < 0)
      rc = mc__error_set(MC_INVALID_ARGUMENT, "bad feed name \"%s\"",
                         a->feeds[i]);
  /* Every def first: inputs may name nodes that come later. */
  for (int i = 0; c.nodes && i < c.n; i++)
    c.nodes[i].def = a->graph->node[i];
  for (int i = 0; i < c.n && rc == MC_OK; i++) {
    pnode *p = &c.nodes[i];
    size_t ni = p->def->n_input + 1;
    p->in_node = calloc(ni, sizeof(int));
    p->in_port = calloc(ni, sizeof(int));
    p->in_feed = calloc(ni, sizeof(int));
    if (!p->in_node || !p->in_port || !p->in_feed) {
      rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
      break;
    }
    for (size_t j = 0; j < p->def->n_input && rc == MC_OK; j++) {
      char name[1024];
      if (mc__parse_tensor_name(p->def->input[j], name, sizeof name,
                                &p->in_port[j]) != MC_OK) {
        rc = mc__error_prefix("node '%s': ", p->def->name);
        break;
      }
      p->in_node[j] = find(&c, name);
      p->in_feed[j] =
          p->in_port[j] >= 0 ? feed_of(&c, name, p->in_port[j]) : -1;
    }
  }
  if (rc == MC_OK)
    rc = plan_fetches(&c);
  if (rc == MC_OK)
    rc = check_acyclic(&c);
  if (rc == MC_OK)
    rc = place(&c);
  if (rc == MC_OK)
    rc = build_parts(&c);
  if (rc == MC_OK)
    rc = assign_fetches(&c);
done:
  for (int i = 0; c.nodes && i < c.n; i++) {
    free(c.nodes[i].in_node);
    free(c.nodes[i].in_port);
    free(c.nodes[i].in_feed);
  }
  free(c.nodes);
  free(c.feed_node);
  free(c.feed_port);
  if (rc != MC_OK) {
    mc__plan_free(c.plan);
    return rc;
  }
  *out = c.plan;
  return MC_OK;
}
