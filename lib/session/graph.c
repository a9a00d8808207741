/* The graph builder: a GraphDef under construction, every field malloc'ed
 * so protobuf_c_message_free_unpacked releases it. */
#include <minicluster/session.h>

#include <stdlib.h>
#include <string.h>

#include "core/pb.h"
#include "core/status.h"
#include "graph.pb-c.h"
#include "session/executor.h"
#include "session/graph.h"
#include "session/tensor.h"

struct mc_graph {
  Tensorflow__GraphDef *gd;
  size_t cap;
};

static mc_code oom(void) {
  return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory for a graph");
}

mc_code mc_graph_new(mc_graph **out) {
  *out = NULL;
  mc_graph *g = calloc(1, sizeof(*g));
  Tensorflow__GraphDef *gd = malloc(sizeof(*gd));
  Tensorflow__VersionDef *v = malloc(sizeof(*v));
  if (g == NULL || gd == NULL || v == NULL) {
    free(g);
    free(gd);
    free(v);
    return oom();
  }
  tensorflow__graph_def__init(gd);
  tensorflow__version_def__init(v);
  /* TensorFlow's graph version that introduced every op we support. */
  v->producer = 27;
  gd->versions = v;
  g->gd = gd;
  *out = g;
  return MC_OK;
}

void mc_graph_free(mc_graph *g) {
  if (g == NULL)
    return;
  protobuf_c_message_free_unpacked(&g->gd->base, NULL);
  free(g);
}

const Tensorflow__GraphDef *mc__graph_def(const mc_graph *g) {
  return g->gd;
}

size_t mc_graph_num_nodes(const mc_graph *g) {
  return g->gd->n_node;
}

static Tensorflow__NodeDef *find(const mc_graph *g, const char *name) {
  for (size_t i = 0; i < g->gd->n_node; i++)
    if (strcmp(g->gd->node[i]->name, name) == 0)
      return g->gd->node[i];
  return NULL;
}

static mc_code grow(mc_graph *g) {
  if (g->gd->n_node < g->cap)
    return MC_OK;
  size_t cap = g->cap ? g->cap * 2 : 16;
  Tensorflow__NodeDef **nodes =
      realloc(g->gd->node, cap * sizeof(*g->gd->node));
  if (nodes == NULL)
    return oom();
  g->gd->node = nodes;
  g->cap = cap;
  return MC_OK;
}

mc_code mc__graph_append(mc_graph *g, Tensorflow__NodeDef *node) {
  if (grow(g) != MC_OK) {
    protobuf_c_message_free_unpacked(&node->base, NULL);
    return MC_RESOURCE_EXHAUSTED;
  }
  g->gd->node[g->gd->n_node++] = node;
  return MC_OK;
}

Tensorflow__GraphDef *mc__graph_release(mc_graph *g) {
  Tensorflow__GraphDef *gd = g->gd;
  free(g);
  return gd;
}

mc_code mc_graph_add(mc_graph *g, const char *name, const char *op,
                     const char *const *inputs, size_t ninputs,
                     const char *device, mc_node **out) {
  if (out)
    *out = NULL;
  if (name == NULL || name[0] == '\0' || strchr(name, ':') || name[0] == '^')
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "bad node name \"%s\" (must be non-empty, without "
                         "':' or a leading '^')",
                         name ? name : "(null)");
  if (op == NULL || op[0] == '\0')
    return mc__error_set(MC_INVALID_ARGUMENT, "node '%s' has no op", name);
  if (find(g, name) != NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "duplicate node name '%s'", name);
  int seen_ctrl = 0;
  for (size_t i = 0; i < ninputs; i++) {
    char buf[1024];
    int port;
    if (inputs[i] == NULL ||
        mc__parse_tensor_name(inputs[i], buf, sizeof buf, &port) != MC_OK)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "node '%s': malformed input \"%s\" (expected "
                           "node, node:k or ^node)",
                           name, inputs[i] ? inputs[i] : "(null)");
    if (port >= 0 && seen_ctrl)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "node '%s': data input \"%s\" after a control "
                           "input",
                           name, inputs[i]);
    seen_ctrl |= port < 0;
  }
  if (grow(g) != MC_OK)
    return MC_RESOURCE_EXHAUSTED;
  Tensorflow__NodeDef *n = malloc(sizeof(*n));
  if (n == NULL)
    return oom();
  tensorflow__node_def__init(n);
  n->name = strdup(name);
  n->op = strdup(op);
  n->device = strdup(device ? device : "");
  n->input = calloc(ninputs ? ninputs : 1, sizeof(char *));
  int ok = n->name && n->op && n->device && n->input;
  for (size_t i = 0; ok && i < ninputs; i++) {
    n->input[i] = strdup(inputs[i]);
    ok = n->input[i] != NULL;
    n->n_input = i + 1;
  }
  if (!ok) {
    protobuf_c_message_free_unpacked(&n->base, NULL);
    return oom();
  }
  g->gd->node[g->gd->n_node++] = n;
  if (out)
    *out = (mc_node *)n;
  return MC_OK;
}

/* Returns the AttrValue for key, reset to empty (created if needed). */
static Tensorflow__AttrValue *attr_slot(mc_node *node, const char *key) {
  Tensorflow__NodeDef *n = (Tensorflow__NodeDef *)node;
  for (size_t i = 0; i < n->n_attr; i++)
    if (strcmp(n->attr[i]->key, key) == 0) {
      protobuf_c_message_free_unpacked(&n->attr[i]->value->base, NULL);
      n->attr[i]->value = malloc(sizeof(Tensorflow__AttrValue));
      if (n->attr[i]->value == NULL)
        return NULL;
      tensorflow__attr_value__init(n->attr[i]->value);
      return n->attr[i]->value;
    }
  Tensorflow__NodeDef__AttrEntry **a =
      realloc(n->attr, (n->n_attr + 1) * sizeof(*n->attr));
  if (a == NULL)
    return NULL;
  n->attr = a;
  Tensorflow__NodeDef__AttrEntry *e = malloc(sizeof(*e));
  Tensorflow__AttrValue *v = malloc(sizeof(*v));
  char *k = strdup(key);
  if (e == NULL || v == NULL || k == NULL) {
    free(e);
    free(v);
    free(k);
    return NULL;
  }
  tensorflow__node_def__attr_entry__init(e);
  tensorflow__attr_value__init(v);
  e->key = k;
  e->value = v;
  n->attr[n->n_attr++] = e;
  return v;
}

mc_code mc_node_set_type(mc_node *n, const char *key, mc_dtype v) {
  Tensorflow__AttrValue *a = attr_slot(n, key);
  if (a == NULL)
    return oom();
  a->value_case = TENSORFLOW__ATTR_VALUE__VALUE_TYPE;
  a->type = (Tensorflow__DataType)v;
  return MC_OK;
}

mc_code mc_node_set_bool(mc_node *n, const char *key, int v) {
  Tensorflow__AttrValue *a = attr_slot(n, key);
  if (a == NULL)
    return oom();
  a->value_case = TENSORFLOW__ATTR_VALUE__VALUE_B;
  a->b = v != 0;
  return MC_OK;
}

mc_code mc_node_set_int(mc_node *n, const char *key, int64_t v) {
  Tensorflow__AttrValue *a = attr_slot(n, key);
  if (a == NULL)
    return oom();
  a->value_case = TENSORFLOW__ATTR_VALUE__VALUE_I;
  a->i = v;
  return MC_OK;
}

mc_code mc_node_set_float(mc_node *n, const char *key, float v) {
  Tensorflow__AttrValue *a = attr_slot(n, key);
  if (a == NULL)
    return oom();
  a->value_case = TENSORFLOW__ATTR_VALUE__VALUE_F;
  a->f = v;
  return MC_OK;
}

mc_code mc_node_set_string(mc_node *n, const char *key, const char *v) {
  Tensorflow__AttrValue *a = attr_slot(n, key);
  if (a == NULL)
    return oom();
  size_t len = strlen(v);
  uint8_t *b = malloc(len ? len : 1);
  if (b == NULL)
    return oom();
  memcpy(b, v, len);
  a->value_case = TENSORFLOW__ATTR_VALUE__VALUE_S;
  a->s.data = b;
  a->s.len = len;
  return MC_OK;
}

mc_code mc_node_set_shape(mc_node *n, const char *key, const int64_t *dims,
                          int rank) {
  if (rank < 0 || rank > MC_TENSOR_MAX_DIMS)
    return mc__error_set(MC_INVALID_ARGUMENT, "shape rank %d out of range",
                         rank);
  Tensorflow__AttrValue *a = attr_slot(n, key);
  if (a == NULL)
    return oom();
  Tensorflow__TensorShapeProto *s = malloc(sizeof(*s));
  if (s == NULL)
    return oom();
  tensorflow__tensor_shape_proto__init(s);
  a->value_case = TENSORFLOW__ATTR_VALUE__VALUE_SHAPE;
  a->shape = s;
  if (rank > 0) {
    s->dim = calloc((size_t)rank, sizeof(*s->dim));
    if (s->dim == NULL)
      return oom();
    for (int i = 0; i < rank; i++) {
      Tensorflow__TensorShapeProto__Dim *d = malloc(sizeof(*d));
      if (d == NULL)
        return oom();
      tensorflow__tensor_shape_proto__dim__init(d);
      d->size = dims[i];
      s->dim[s->n_dim++] = d;
    }
  }
  return MC_OK;
}

mc_code mc_node_set_tensor(mc_node *n, const char *key, const mc_tensor *t) {
  Tensorflow__TensorProto *p;
  mc_code rc = mc__tensor_to_proto(t, &p);
  if (rc != MC_OK)
    return rc;
  Tensorflow__AttrValue *a = attr_slot(n, key);
  if (a == NULL) {
    protobuf_c_message_free_unpacked(&p->base, NULL);
    return oom();
  }
  a->value_case = TENSORFLOW__ATTR_VALUE__VALUE_TENSOR;
  a->tensor = p;
  return MC_OK;
}

mc_code mc_graph_const(mc_graph *g, const char *name, const mc_tensor *t,
                       const char *device) {
  mc_node *n;
  mc_code rc = mc_graph_add(g, name, "Const", NULL, 0, device, &n);
  if (rc == MC_OK)
    rc = mc_node_set_tensor(n, "value", t);
  if (rc == MC_OK)
    rc = mc_node_set_type(n, "dtype", mc_tensor_dtype(t));
  return rc;
}

mc_code mc_graph_placeholder(mc_graph *g, const char *name, mc_dtype dtype,
                             const char *device) {
  mc_node *n;
  mc_code rc = mc_graph_add(g, name, "Placeholder", NULL, 0, device, &n);
  return rc == MC_OK ? mc_node_set_type(n, "dtype", dtype) : rc;
}

mc_code mc_graph_variable(mc_graph *g, const char *name, mc_dtype dtype,
                          const int64_t *dims, int rank, const char *device) {
  mc_node *n;
  mc_code rc = mc_graph_add(g, name, "VariableV2", NULL, 0, device, &n);
  if (rc == MC_OK)
    rc = mc_node_set_type(n, "dtype", dtype);
  if (rc == MC_OK)
    rc = mc_node_set_shape(n, "shape", dims, rank);
  return rc;
}

mc_code mc_graph_op(mc_graph *g, const char *name, const char *op,
                    mc_dtype dtype, const char *const *inputs, size_t ninputs,
                    const char *device) {
  mc_node *n;
  mc_code rc = mc_graph_add(g, name, op, inputs, ninputs, device, &n);
  return rc == MC_OK ? mc_node_set_type(n, "T", dtype) : rc;
}

mc_code mc_graph_to_graphdef(const mc_graph *g, uint8_t **buf, size_t *len) {
  size_t n = tensorflow__graph_def__get_packed_size(g->gd);
  *buf = malloc(n ? n : 1);
  *len = 0;
  if (*buf == NULL)
    return oom();
  tensorflow__graph_def__pack(g->gd, *buf);
  *len = n;
  return MC_OK;
}

mc_code mc_graph_from_graphdef(const uint8_t *buf, size_t len, mc_graph **out) {
  *out = NULL;
  Tensorflow__GraphDef *gd =
      MC_PB_UNPACK(tensorflow__graph_def, Tensorflow__GraphDef, len, buf);
  if (gd == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "%zu bytes do not decode as a GraphDef", len);
  for (size_t i = 0; i < gd->n_node; i++)
    for (size_t j = 0; j < i; j++)
      if (strcmp(gd->node[i]->name, gd->node[j]->name) == 0) {
        mc__error_set(MC_INVALID_ARGUMENT, "duplicate node name '%s'",
                      gd->node[i]->name);
        tensorflow__graph_def__free_unpacked(gd, NULL);
        return MC_INVALID_ARGUMENT;
      }
  /* Re-home the decoded message in a builder. protobuf-c's default
   * allocator is malloc, so the unpacked message can be extended and
   * freed like one we built. */
  mc_graph *g = calloc(1, sizeof(*g));
  if (g == NULL) {
    tensorflow__graph_def__free_unpacked(gd, NULL);
    return oom();
  }
  g->gd = gd;
  g->cap = gd->n_node;
  *out = g;
  return MC_OK;
}
