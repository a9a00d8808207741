/* Dataset pipelines: definitions, (de)serialization and local iteration. */
#include "data/dataset.h"

#include "core/pb.h"
#include "core/status.h"
#include "data/element_codec.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- function registry ------------------------------------------------ */

typedef struct reg_entry {
  char *name;
  int is_filter;
  mc_map_fn map;
  mc_filter_fn filter;
  void *arg;
  struct reg_entry *next;
} reg_entry;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static reg_entry *reg_head;

static mc_code reg_add(const char *name, int is_filter, mc_map_fn map,
                       mc_filter_fn filter, void *arg) {
  if (name == NULL || name[0] == '\0')
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "%s function name must not be empty",
                         is_filter ? "filter" : "map");
  if (map == NULL && filter == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "%s function \"%s\" is NULL",
                         is_filter ? "filter" : "map", name);
  pthread_mutex_lock(&reg_mu);
  for (reg_entry *e = reg_head; e != NULL; e = e->next) {
    if (e->is_filter == is_filter && strcmp(e->name, name) == 0) {
      e->map = map;
      e->filter = filter;
      e->arg = arg;
      pthread_mutex_unlock(&reg_mu);
      return MC_OK;
    }
  }
  reg_entry *e = calloc(1, sizeof *e);
  if (e == NULL || (e->name = strdup(name)) == NULL) {
    free(e);
    pthread_mutex_unlock(&reg_mu);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  e->is_filter = is_filter;
  e->map = map;
  e->filter = filter;
  e->arg = arg;
  e->next = reg_head;
  reg_head = e;
  pthread_mutex_unlock(&reg_mu);
  return MC_OK;
}

/* Registered entries live for the process: iterators on other threads may
 * hold them. */
static int reg_find(const char *name, int is_filter, reg_entry *out) {
  int found = 0;
  pthread_mutex_lock(&reg_mu);
  for (reg_entry *e = reg_head; e != NULL; e = e->next) {
    if (e->is_filter == is_filter && strcmp(e->name, name) == 0) {
      *out = *e;
      found = 1;
      break;
    }
  }
  pthread_mutex_unlock(&reg_mu);
  return found;
}

mc_code mc_dataset_register_map(const char *name, mc_map_fn fn, void *arg) {
  return reg_add(name, 0, fn, NULL, arg);
}

mc_code mc_dataset_register_filter(const char *name, mc_filter_fn fn,
                                   void *arg) {
  return reg_add(name, 1, NULL, fn, arg);
}

/* ---- elements ----------------------------------------------------------- */

void mc_element_clear(mc_element *e) {
  if (e == NULL)
    return;
  for (size_t i = 0; i < e->num_components; i++)
    mc_tensor_free(e->components[i]);
  free(e->components);
  e->components = NULL;
  e->num_components = 0;
}

mc_code mc_element_take(mc_element *e, mc_tensor *const *components, size_t n) {
  e->num_components = 0;
  e->components = calloc(n > 0 ? n : 1, sizeof *e->components);
  if (e->components == NULL) {
    for (size_t i = 0; i < n; i++)
      mc_tensor_free(components[i]);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  if (n > 0) /* components may be NULL for an element of no components */
    memcpy(e->components, components, n * sizeof *components);
  e->num_components = n;
  return MC_OK;
}

size_t mc__element_byte_size(const mc_element *e) {
  size_t n = 0;
  for (size_t i = 0; i < e->num_components; i++) {
    const mc_tensor *t = e->components[i];
    if (mc_tensor_dtype(t) != MC_DT_STRING) {
      n += mc_tensor_byte_size(t);
    } else {
      for (int64_t k = 0; k < mc_tensor_num_elements(t); k++) {
        size_t l = 0;
        mc_tensor_string(t, k, &l);
        n += l;
      }
    }
  }
  return n;
}

mc_code mc__element_to_protos(const mc_element *e, uint8_t ***bufs,
                              size_t **lens) {
  size_t n = e->num_components;
  *bufs = calloc(n > 0 ? n : 1, sizeof **bufs);
  *lens = calloc(n > 0 ? n : 1, sizeof **lens);
  if (*bufs == NULL || *lens == NULL) {
    free(*bufs);
    free(*lens);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    mc_code rc = mc__tensor_encode(e->components[i], &(*bufs)[i], &(*lens)[i]);
    if (rc != MC_OK) {
      for (size_t k = 0; k < i; k++)
        free((*bufs)[k]);
      free(*bufs);
      free(*lens);
      return rc;
    }
  }
  return MC_OK;
}

/* ---- definitions -------------------------------------------------------- */

typedef enum op_kind {
  OP_RANGE,
  OP_SLICES,
  OP_MAP,
  OP_FILTER,
  OP_BATCH,
  OP_SHUFFLE,
  OP_REPEAT,
  OP_TAKE,
  OP_SKIP,
  OP_SHARD,
  OP_PREFETCH,
  OP_COUNT_
} op_kind;

static const char *const op_names[OP_COUNT_] = {"range",   "from_tensor_slices",
                                                "map",     "filter",
                                                "batch",   "shuffle",
                                                "repeat",  "take",
                                                "skip",    "shard",
                                                "prefetch"};
static const int op_nargs[OP_COUNT_] = {3, 0, 0, 0, 2, 2, 1, 1, 1, 2, 1};

typedef struct op {
  op_kind kind;
  int64_t a[3];
  char *fn;
  mc_tensor **tensors;
  size_t ntensors;
} op;

struct mc_dataset {
  op *ops;
  size_t n, cap;
};

static void op_clear(op *o) {
  free(o->fn);
  for (size_t i = 0; i < o->ntensors; i++)
    mc_tensor_free(o->tensors[i]);
  free(o->tensors);
}

void mc_dataset_free(mc_dataset *ds) {
  if (ds == NULL)
    return;
  for (size_t i = 0; i < ds->n; i++)
    op_clear(&ds->ops[i]);
  free(ds->ops);
  free(ds);
}

static op *push_op(mc_dataset *ds, op_kind kind) {
  if (ds->n == ds->cap) {
    size_t cap = ds->cap ? ds->cap * 2 : 8;
    op *ops = realloc(ds->ops, cap * sizeof *ops);
    if (ops == NULL)
      return NULL;
    ds->ops = ops;
    ds->cap = cap;
  }
  op *o = &ds->ops[ds->n++];
  memset(o, 0, sizeof *o);
  o->kind = kind;
  return o;
}

static mc_code check_args(op_kind kind, const int64_t *a) {
  switch (kind) {
  case OP_RANGE:
    if (a[2] == 0)
      return mc__error_set(MC_INVALID_ARGUMENT, "range step must not be 0");
    break;
  case OP_BATCH:
    if (a[0] <= 0)
      return mc__error_set(MC_INVALID_ARGUMENT, "batch size %lld must be > 0",
                           (long long)a[0]);
    break;
  case OP_SHUFFLE:
    if (a[0] <= 0)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "shuffle buffer_size %lld must be > 0",
                           (long long)a[0]);
    break;
  case OP_PREFETCH:
    if (a[0] <= 0)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "prefetch buffer_size %lld must be > 0",
                           (long long)a[0]);
    break;
  case OP_REPEAT:
  case OP_TAKE:
  case OP_SKIP:
    if (a[0] < -1)
      return mc__error_set(MC_INVALID_ARGUMENT, "%s count %lld must be >= -1",
                           op_names[kind], (long long)a[0]);
    break;
  case OP_SHARD:
    if (a[0] <= 0 || a[1] < 0 || a[1] >= a[0])
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "shard index %lld out of range for %lld shards",
                           (long long)a[1], (long long)a[0]);
    break;
  default:
    break;
  }
  return MC_OK;
}

static mc_code add_int_op(mc_dataset *ds, op_kind kind, int64_t a0, int64_t a1,
                          int64_t a2) {
  if (ds == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "dataset is NULL");
  int64_t a[3] = {a0, a1, a2};
  mc_code rc = check_args(kind, a);
  if (rc != MC_OK)
    return rc;
  op *o = push_op(ds, kind);
  if (o == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  memcpy(o->a, a, sizeof a);
  return MC_OK;
}

mc_code mc_dataset_range(mc_dataset **out, int64_t start, int64_t stop,
                         int64_t step) {
  *out = NULL;
  mc_dataset *ds = calloc(1, sizeof *ds);
  if (ds == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  mc_code rc = add_int_op(ds, OP_RANGE, start, stop, step);
  if (rc != MC_OK) {
    mc_dataset_free(ds);
    return rc;
  }
  *out = ds;
  return MC_OK;
}

static mc_code check_slices(mc_tensor *const *t, size_t n) {
  if (n == 0)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "from_tensor_slices needs at least one tensor");
  for (size_t i = 0; i < n; i++) {
    if (t[i] == NULL || mc_tensor_rank(t[i]) < 1)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "from_tensor_slices component %zu must have rank "
                           ">= 1 (got %d)",
                           i, t[i] ? mc_tensor_rank(t[i]) : -1);
    if (mc_tensor_dim(t[i], 0) != mc_tensor_dim(t[0], 0))
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "from_tensor_slices component %zu has first "
                           "dimension %lld, component 0 has %lld",
                           i, (long long)mc_tensor_dim(t[i], 0),
                           (long long)mc_tensor_dim(t[0], 0));
  }
  return MC_OK;
}

/* Takes ownership of the n tensors. */
static mc_code slices_take(mc_dataset **out, mc_tensor **t, size_t n) {
  mc_code rc = check_slices(t, n);
  mc_dataset *ds = NULL;
  op *o = NULL;
  if (rc == MC_OK && ((ds = calloc(1, sizeof *ds)) == NULL ||
                      (o = push_op(ds, OP_SLICES)) == NULL))
    rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  if (rc != MC_OK) {
    for (size_t i = 0; i < n; i++)
      mc_tensor_free(t[i]);
    free(t);
    mc_dataset_free(ds);
    return rc;
  }
  o->tensors = t;
  o->ntensors = n;
  *out = ds;
  return MC_OK;
}

mc_code mc_dataset_from_tensor_slices(mc_dataset **out,
                                      const mc_tensor *const *tensors,
                                      size_t n) {
  *out = NULL;
  mc_tensor **t = calloc(n > 0 ? n : 1, sizeof *t);
  if (t == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  for (size_t i = 0; i < n; i++) {
    if (tensors[i] == NULL)
      continue;
    mc_code rc = mc_tensor_copy(tensors[i], &t[i]);
    if (rc != MC_OK) {
      for (size_t k = 0; k < i; k++)
        mc_tensor_free(t[k]);
      free(t);
      return rc;
    }
  }
  return slices_take(out, t, n);
}

static mc_code add_fn_op(mc_dataset *ds, op_kind kind, const char *name) {
  if (ds == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "dataset is NULL");
  reg_entry e;
  if (name == NULL || !reg_find(name, kind == OP_FILTER, &e))
    return mc__error_set(MC_NOT_FOUND, "no %s function registered under \"%s\"",
                         op_names[kind], name ? name : "(null)");
  op *o = push_op(ds, kind);
  if (o == NULL || (o->fn = strdup(name)) == NULL) {
    if (o != NULL)
      ds->n--;
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  return MC_OK;
}

mc_code mc_dataset_map(mc_dataset *ds, const char *name) {
  return add_fn_op(ds, OP_MAP, name);
}
mc_code mc_dataset_filter(mc_dataset *ds, const char *name) {
  return add_fn_op(ds, OP_FILTER, name);
}
mc_code mc_dataset_batch(mc_dataset *ds, int64_t size, int drop_remainder) {
  return add_int_op(ds, OP_BATCH, size, drop_remainder ? 1 : 0, 0);
}
mc_code mc_dataset_shuffle(mc_dataset *ds, int64_t buffer_size, uint64_t seed) {
  return add_int_op(ds, OP_SHUFFLE, buffer_size, (int64_t)seed, 0);
}
mc_code mc_dataset_repeat(mc_dataset *ds, int64_t count) {
  return add_int_op(ds, OP_REPEAT, count, 0, 0);
}
mc_code mc_dataset_take(mc_dataset *ds, int64_t count) {
  return add_int_op(ds, OP_TAKE, count, 0, 0);
}
mc_code mc_dataset_skip(mc_dataset *ds, int64_t count) {
  return add_int_op(ds, OP_SKIP, count, 0, 0);
}
mc_code mc_dataset_shard(mc_dataset *ds, int64_t num_shards, int64_t index) {
  return add_int_op(ds, OP_SHARD, num_shards, index, 0);
}
mc_code mc_dataset_prefetch(mc_dataset *ds, int64_t buffer_size) {
  return add_int_op(ds, OP_PREFETCH, buffer_size, 0, 0);
}

int64_t mc__dataset_source_cardinality(const mc_dataset *ds) {
  const op *o = &ds->ops[0];
  if (o->kind == OP_SLICES)
    return mc_tensor_dim(o->tensors[0], 0);
  int64_t start = o->a[0], stop = o->a[1], step = o->a[2];
  if (step > 0)
    return stop > start ? (stop - start + step - 1) / step : 0;
  return start > stop ? (start - stop + (-step) - 1) / (-step) : 0;
}

/* ---- serialization ------------------------------------------------------ */

mc_code mc_dataset_to_def_bytes(const mc_dataset *ds, uint8_t **buf,
                                size_t *len) {
  *buf = NULL;
  *len = 0;
  Tensorflow__Data__DatasetDef def = TENSORFLOW__DATA__DATASET_DEF__INIT;
  Tensorflow__Data__DatasetOpDef *opdefs = calloc(ds->n, sizeof *opdefs);
  Tensorflow__Data__DatasetOpDef **ptrs = calloc(ds->n, sizeof *ptrs);
  mc_code rc = MC_OK;
  if (opdefs == NULL || ptrs == NULL)
    rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  for (size_t i = 0; rc == MC_OK && i < ds->n; i++) {
    const op *o = &ds->ops[i];
    Tensorflow__Data__DatasetOpDef *d = &opdefs[i];
    tensorflow__data__dataset_op_def__init(d);
    ptrs[i] = d;
    d->op = (char *)op_names[o->kind];
    d->n_args = (size_t)op_nargs[o->kind];
    d->args = (int64_t *)o->a;
    if (o->fn != NULL)
      d->function = o->fn;
    if (o->ntensors > 0) {
      d->tensors = calloc(o->ntensors, sizeof *d->tensors);
      if (d->tensors == NULL) {
        rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
        break;
      }
      d->n_tensors = o->ntensors;
      for (size_t k = 0; k < o->ntensors && rc == MC_OK; k++)
        rc = mc_tensor_to_proto_bytes(o->tensors[k], &d->tensors[k].data,
                                      &d->tensors[k].len);
    }
  }
  if (rc == MC_OK) {
    def.n_ops = ds->n;
    def.ops = ptrs;
    *len = tensorflow__data__dataset_def__get_packed_size(&def);
    *buf = malloc(*len > 0 ? *len : 1);
    if (*buf == NULL)
      rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
    else
      tensorflow__data__dataset_def__pack(&def, *buf);
  }
  for (size_t i = 0; opdefs != NULL && i < ds->n; i++) {
    for (size_t k = 0; k < opdefs[i].n_tensors; k++)
      free(opdefs[i].tensors[k].data);
    free(opdefs[i].tensors);
  }
  free(opdefs);
  free(ptrs);
  if (rc != MC_OK)
    *len = 0;
  return rc;
}

static mc_code op_from_def(mc_dataset **ds,
                           const Tensorflow__Data__DatasetOpDef *d,
                           size_t index) {
  int kind = -1;
  for (int k = 0; k < OP_COUNT_; k++)
    if (d->op != NULL && strcmp(d->op, op_names[k]) == 0)
      kind = k;
  if (kind < 0)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "DatasetDef op %zu: unknown op \"%s\"", index,
                         d->op ? d->op : "");
  int is_source = kind == OP_RANGE || kind == OP_SLICES;
  if (is_source != (index == 0))
    return mc__error_set(
        MC_INVALID_ARGUMENT, "DatasetDef op %zu: \"%s\" %s", index, d->op,
        is_source ? "may only be the first op" : "cannot be the first op");
  if (d->n_args != (size_t)op_nargs[kind])
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "DatasetDef op %zu (\"%s\"): %zu args, expected %d",
                         index, d->op, d->n_args, op_nargs[kind]);
  int64_t a[3] = {0, 0, 0};
  for (size_t i = 0; i < d->n_args; i++)
    a[i] = d->args[i];
  if (kind == OP_SLICES) {
    mc_tensor **t = calloc(d->n_tensors > 0 ? d->n_tensors : 1, sizeof *t);
    if (t == NULL)
      return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < d->n_tensors; i++) {
      mc_code rc = mc_tensor_from_proto_bytes(d->tensors[i].data,
                                              d->tensors[i].len, &t[i]);
      if (rc != MC_OK) {
        for (size_t k = 0; k < i; k++)
          mc_tensor_free(t[k]);
        free(t);
        return mc__error_prefix("DatasetDef op 0 tensor %zu: ", i);
      }
    }
    return slices_take(ds, t, d->n_tensors);
  }
  if (kind == OP_RANGE)
    return mc_dataset_range(ds, a[0], a[1], a[2]);
  if (kind == OP_MAP || kind == OP_FILTER)
    return add_fn_op(*ds, (op_kind)kind, d->function);
  return add_int_op(*ds, (op_kind)kind, a[0], a[1], a[2]);
}

mc_code mc__dataset_from_def(const Tensorflow__Data__DatasetDef *def,
                             mc_dataset **out) {
  *out = NULL;
  if (def == NULL || def->n_ops == 0)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "DatasetDef has no ops (a TensorFlow GraphDef "
                         "dataset is not supported)");
  mc_dataset *ds = NULL;
  for (size_t i = 0; i < def->n_ops; i++) {
    mc_code rc = op_from_def(&ds, def->ops[i], i);
    if (rc != MC_OK) {
      mc_dataset_free(ds);
      return rc;
    }
  }
  *out = ds;
  return MC_OK;
}

mc_code mc_dataset_from_def_bytes(const uint8_t *buf, size_t len,
                                  mc_dataset **out) {
  *out = NULL;
  Tensorflow__Data__DatasetDef *def = MC_PB_UNPACK(
      tensorflow__data__dataset_def, Tensorflow__Data__DatasetDef, len, buf);
  if (def == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "%zu bytes do not decode as a DatasetDef", len);
  mc_code rc = mc__dataset_from_def(def, out);
  tensorflow__data__dataset_def__free_unpacked(def, NULL);
  return rc;
}

/* ---- iteration ---------------------------------------------------------- */

typedef struct node node;
typedef struct iter_ctx {
  mc_dataset *ds; /* private copy */
  mc__split_fn split_fn;
  void *split_arg;
  uint64_t passes; /* re-seeds shuffles on every rebuild */
} iter_ctx;

struct node {
  iter_ctx *ctx;
  size_t index; /* of ds->ops */
  const op *op;
  node *input;
  reg_entry fn;
  int64_t i, count;  /* position, counters */
  int64_t split_end; /* split mode: end of the current split */
  int done;          /* 1 once end of sequence was returned */
  uint64_t rng;      /* shuffle */
  mc_element *buf;   /* shuffle buffer */
  int64_t nbuf;
  int input_done;
  /* prefetch */
  pthread_t thread;
  int thread_started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  mc_element *queue;
  int64_t qhead, qlen;
  int stop, producer_done;
  mc_code producer_rc;
  char producer_msg[512];
};

struct mc_dataset_iterator {
  iter_ctx ctx;
  node *top;
};

static mc_code node_new(iter_ctx *ctx, size_t index, node **out);
static void node_free(node *n);
static mc_code node_next(node *n, mc_element *out, int *eos);

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static mc_code slice_row(const mc_tensor *t, int64_t row, mc_tensor **out) {
  int rank = mc_tensor_rank(t);
  const int64_t *dims = mc_tensor_dims(t);
  int64_t per_row = 1;
  for (int d = 1; d < rank; d++)
    per_row *= dims[d];
  if (mc_tensor_dtype(t) == MC_DT_STRING) {
    const char **strs = calloc(per_row > 0 ? (size_t)per_row : 1, sizeof *strs);
    size_t *lens = calloc(per_row > 0 ? (size_t)per_row : 1, sizeof *lens);
    mc_code rc = MC_OK;
    if (strs == NULL || lens == NULL)
      rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
    for (int64_t k = 0; rc == MC_OK && k < per_row; k++)
      strs[k] = mc_tensor_string(t, row * per_row + k, &lens[k]);
    if (rc == MC_OK)
      rc = mc_tensor_new_strings(out, dims + 1, rank - 1, strs, lens);
    free(strs);
    free(lens);
    return rc;
  }
  size_t es = mc_dtype_size(mc_tensor_dtype(t));
  size_t nbytes = (size_t)per_row * es;
  return mc_tensor_new(out, mc_tensor_dtype(t), dims + 1, rank - 1,
                       (const char *)mc_tensor_data(t) + (size_t)row * nbytes,
                       nbytes);
}

static mc_code source_element(node *n, int64_t idx, mc_element *out) {
  const op *o = n->op;
  if (o->kind == OP_RANGE) {
    mc_tensor *t;
    mc_code rc = mc_tensor_new_int64(&t, o->a[0] + idx * o->a[2]);
    if (rc != MC_OK)
      return rc;
    return mc_element_take(out, &t, 1);
  }
  mc_tensor *comps[64];
  if (o->ntensors > 64)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "from_tensor_slices supports at most 64 components");
  for (size_t c = 0; c < o->ntensors; c++) {
    mc_code rc = slice_row(o->tensors[c], idx, &comps[c]);
    if (rc != MC_OK) {
      for (size_t k = 0; k < c; k++)
        mc_tensor_free(comps[k]);
      return rc;
    }
  }
  return mc_element_take(out, comps, o->ntensors);
}

static mc_code source_next(node *n, mc_element *out, int *eos) {
  int64_t card = mc__dataset_source_cardinality(n->ctx->ds);
  if (n->ctx->split_fn == NULL) {
    if (n->i >= card) {
      *eos = 1;
      return MC_OK;
    }
    return source_element(n, n->i++, out);
  }
  while (n->i >= n->split_end) {
    int64_t b = 0, e = 0;
    int end = 0;
    mc_code rc = n->ctx->split_fn(n->ctx->split_arg, &b, &e, &end);
    if (rc != MC_OK)
      return rc;
    if (end) {
      *eos = 1;
      return MC_OK;
    }
    if (b < 0 || e > card || b > e)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "split [%lld, %lld) outside the source's %lld "
                           "elements",
                           (long long)b, (long long)e, (long long)card);
    n->i = b;
    n->split_end = e;
  }
  return source_element(n, n->i++, out);
}

static mc_code stack(mc_element *items, int64_t count, mc_element *out) {
  size_t nc = items[0].num_components;
  mc_tensor *comps[64];
  if (nc > 64)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "batch supports at most 64 components");
  for (size_t c = 0; c < nc; c++) {
    const mc_tensor *t0 = items[0].components[c];
    int rank = mc_tensor_rank(t0);
    if (rank + 1 > MC_TENSOR_MAX_DIMS) {
      for (size_t k = 0; k < c; k++)
        mc_tensor_free(comps[k]);
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "batch of rank-%d components exceeds rank %d", rank,
                           MC_TENSOR_MAX_DIMS);
    }
    int64_t dims[MC_TENSOR_MAX_DIMS];
    dims[0] = count;
    for (int d = 0; d < rank; d++)
      dims[d + 1] = mc_tensor_dim(t0, d);
    mc_code rc = MC_OK;
    for (int64_t b = 1; b < count; b++) {
      const mc_tensor *tb = items[b].components[c];
      int same = items[b].num_components == nc &&
                 mc_tensor_dtype(tb) == mc_tensor_dtype(t0) &&
                 mc_tensor_rank(tb) == rank;
      for (int d = 0; same && d < rank; d++)
        same = mc_tensor_dim(tb, d) == dims[d + 1];
      if (!same) {
        rc = mc__error_set(MC_INVALID_ARGUMENT,
                           "batch: element %lld component %zu has dtype %s "
                           "rank %d, element 0 has dtype %s rank %d (or "
                           "another shape)",
                           (long long)b, c, mc_dtype_name(mc_tensor_dtype(tb)),
                           mc_tensor_rank(tb),
                           mc_dtype_name(mc_tensor_dtype(t0)), rank);
        break;
      }
    }
    if (rc == MC_OK && mc_tensor_dtype(t0) == MC_DT_STRING) {
      int64_t per = mc_tensor_num_elements(t0);
      int64_t total = per * count;
      const char **strs = calloc(total > 0 ? (size_t)total : 1, sizeof *strs);
      size_t *lens = calloc(total > 0 ? (size_t)total : 1, sizeof *lens);
      if (strs == NULL || lens == NULL)
        rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
      for (int64_t b = 0; rc == MC_OK && b < count; b++)
        for (int64_t k = 0; k < per; k++)
          strs[b * per + k] =
              mc_tensor_string(items[b].components[c], k, &lens[b * per + k]);
      if (rc == MC_OK)
        rc = mc_tensor_new_strings(&comps[c], dims, rank + 1, strs, lens);
      free(strs);
      free(lens);
    } else if (rc == MC_OK) {
      size_t each = mc_tensor_byte_size(t0);
      char *data = malloc(each * (size_t)count + 1);
      if (data == NULL) {
        rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
      } else {
        for (int64_t b = 0; b < count; b++)
          memcpy(data + (size_t)b * each,
                 mc_tensor_data(items[b].components[c]), each);
        rc = mc_tensor_new(&comps[c], mc_tensor_dtype(t0), dims, rank + 1, data,
                           each * (size_t)count);
        free(data);
      }
    }
    if (rc != MC_OK) {
      for (size_t k = 0; k < c; k++)
        mc_tensor_free(comps[k]);
      return rc;
    }
  }
  return mc_element_take(out, comps, nc);
}

static mc_code batch_next(node *n, mc_element *out, int *eos) {
  int64_t size = n->op->a[0];
  mc_element *items = calloc((size_t)size, sizeof *items);
  if (items == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  int64_t got = 0;
  mc_code rc = MC_OK;
  while (got < size) {
    int in_eos = 0;
    rc = node_next(n->input, &items[got], &in_eos);
    if (rc != MC_OK || in_eos)
      break;
    got++;
  }
  if (rc == MC_OK) {
    if (got == 0 || (got < size && n->op->a[1]))
      *eos = 1;
    else
      rc = stack(items, got, out);
  }
  for (int64_t i = 0; i < got; i++)
    mc_element_clear(&items[i]);
  free(items);
  return rc;
}

static mc_code shuffle_next(node *n, mc_element *out, int *eos) {
  int64_t cap = n->op->a[0];
  if (n->buf == NULL) {
    n->buf = calloc((size_t)cap, sizeof *n->buf);
    if (n->buf == NULL)
      return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  while (!n->input_done && n->nbuf < cap) {
    int in_eos = 0;
    mc_code rc = node_next(n->input, &n->buf[n->nbuf], &in_eos);
    if (rc != MC_OK)
      return rc;
    if (in_eos)
      n->input_done = 1;
    else
      n->nbuf++;
  }
  if (n->nbuf == 0) {
    *eos = 1;
    return MC_OK;
  }
  int64_t r = (int64_t)(splitmix(&n->rng) % (uint64_t)n->nbuf);
  *out = n->buf[r];
  n->buf[r] = n->buf[--n->nbuf];
  memset(&n->buf[n->nbuf], 0, sizeof n->buf[n->nbuf]);
  return MC_OK;
}

static void *prefetch_main(void *arg) {
  node *n = arg;
  int64_t cap = n->op->a[0];
  for (;;) {
    mc_element e = MC_ELEMENT_INIT;
    int in_eos = 0;
    mc_code rc = node_next(n->input, &e, &in_eos);
    pthread_mutex_lock(&n->mu);
    if (rc != MC_OK || in_eos) {
      n->producer_done = 1;
      n->producer_rc = rc;
      if (rc != MC_OK)
        snprintf(n->producer_msg, sizeof n->producer_msg, "%s",
                 mc_error_last()->message);
      pthread_cond_broadcast(&n->cv);
      pthread_mutex_unlock(&n->mu);
      return NULL;
    }
    while (n->qlen == cap && !n->stop)
      pthread_cond_wait(&n->cv, &n->mu);
    if (n->stop) {
      pthread_mutex_unlock(&n->mu);
      mc_element_clear(&e);
      return NULL;
    }
    n->queue[(n->qhead + n->qlen) % cap] = e;
    n->qlen++;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
  }
}

static mc_code prefetch_next(node *n, mc_element *out, int *eos) {
  int64_t cap = n->op->a[0];
  if (!n->thread_started) {
    n->queue = calloc((size_t)cap, sizeof *n->queue);
    if (n->queue == NULL)
      return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    if (pthread_create(&n->thread, NULL, prefetch_main, n) != 0) {
      pthread_mutex_destroy(&n->mu);
      pthread_cond_destroy(&n->cv);
      free(n->queue);
      n->queue = NULL;
      return mc__error_set(MC_RESOURCE_EXHAUSTED,
                           "cannot start the prefetch thread");
    }
    n->thread_started = 1;
  }
  pthread_mutex_lock(&n->mu);
  while (n->qlen == 0 && !n->producer_done)
    pthread_cond_wait(&n->cv, &n->mu);
  mc_code rc = MC_OK;
  if (n->qlen > 0) {
    *out = n->queue[n->qhead];
    memset(&n->queue[n->qhead], 0, sizeof n->queue[n->qhead]);
    n->qhead = (n->qhead + 1) % cap;
    n->qlen--;
    pthread_cond_broadcast(&n->cv);
  } else if (n->producer_rc != MC_OK) {
    rc = mc__error_set(n->producer_rc, "%s", n->producer_msg);
  } else {
    *eos = 1;
  }
  pthread_mutex_unlock(&n->mu);
  return rc;
}

static mc_code node_next(node *n, mc_element *out, int *eos) {
  *eos = 0;
  if (n->done) {
    *eos = 1;
    return MC_OK;
  }
  mc_code rc = MC_OK;
  int in_eos = 0;
  switch (n->op->kind) {
  case OP_RANGE:
  case OP_SLICES:
    rc = source_next(n, out, eos);
    break;
  case OP_MAP: {
    mc_element in = MC_ELEMENT_INIT;
    rc = node_next(n->input, &in, eos);
    if (rc == MC_OK && !*eos) {
      rc = n->fn.map(n->fn.arg, &in, out);
      if (rc != MC_OK) {
        mc_element_clear(out);
        mc__error_prefix("map \"%s\": ", n->op->fn);
      }
    }
    mc_element_clear(&in);
    break;
  }
  case OP_FILTER:
    for (;;) {
      rc = node_next(n->input, out, eos);
      if (rc != MC_OK || *eos)
        break;
      int keep = 0;
      rc = n->fn.filter(n->fn.arg, out, &keep);
      if (rc != MC_OK) {
        mc__error_prefix("filter \"%s\": ", n->op->fn);
        mc_element_clear(out);
        break;
      }
      if (keep)
        break;
      mc_element_clear(out);
    }
    break;
  case OP_BATCH:
    rc = batch_next(n, out, eos);
    break;
  case OP_SHUFFLE:
    rc = shuffle_next(n, out, eos);
    break;
  case OP_REPEAT:
    for (;;) {
      rc = node_next(n->input, out, &in_eos);
      if (rc != MC_OK || !in_eos)
        break;
      n->count++;
      /* An empty pass ends the repeat, so repeat(-1) of an empty dataset
       * terminates. */
      if ((n->op->a[0] >= 0 && n->count >= n->op->a[0]) || n->i == 0) {
        *eos = 1;
        break;
      }
      n->i = 0;
      node_free(n->input);
      n->input = NULL;
      n->ctx->passes++;
      rc = node_new(n->ctx, n->index - 1, &n->input);
      if (rc != MC_OK)
        break;
    }
    if (rc == MC_OK && !*eos)
      n->i++;
    break;
  case OP_TAKE:
    if (n->op->a[0] >= 0 && n->i >= n->op->a[0]) {
      *eos = 1;
      break;
    }
    rc = node_next(n->input, out, eos);
    n->i++;
    break;
  case OP_SKIP:
    while (n->op->a[0] < 0 || n->i < n->op->a[0]) {
      rc = node_next(n->input, out, eos);
      if (rc != MC_OK || *eos)
        break;
      mc_element_clear(out);
      n->i++;
    }
    if (rc == MC_OK && !*eos)
      rc = node_next(n->input, out, eos);
    break;
  case OP_SHARD:
    for (;;) {
      rc = node_next(n->input, out, eos);
      if (rc != MC_OK || *eos)
        break;
      int64_t idx = n->i++;
      if (idx % n->op->a[0] == n->op->a[1])
        break;
      mc_element_clear(out);
    }
    break;
  case OP_PREFETCH:
    rc = prefetch_next(n, out, eos);
    break;
  default:
    rc = mc__error_set(MC_INTERNAL, "bad op");
  }
  if (rc == MC_OK && *eos)
    n->done = 1;
  return rc;
}

static void node_free(node *n) {
  if (n == NULL)
    return;
  if (n->thread_started) {
    pthread_mutex_lock(&n->mu);
    n->stop = 1;
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    pthread_join(n->thread, NULL);
    for (int64_t k = 0; k < n->qlen; k++)
      mc_element_clear(&n->queue[(n->qhead + k) % n->op->a[0]]);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
  }
  free(n->queue);
  for (int64_t k = 0; k < n->nbuf; k++)
    mc_element_clear(&n->buf[k]);
  free(n->buf);
  node_free(n->input);
  free(n);
}

static mc_code node_new(iter_ctx *ctx, size_t index, node **out) {
  *out = NULL;
  node *n = calloc(1, sizeof *n);
  if (n == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  n->ctx = ctx;
  n->index = index;
  n->op = &ctx->ds->ops[index];
  if (n->op->kind == OP_MAP || n->op->kind == OP_FILTER) {
    if (!reg_find(n->op->fn, n->op->kind == OP_FILTER, &n->fn)) {
      const op *o = n->op;
      free(n);
      return mc__error_set(MC_NOT_FOUND,
                           "no %s function registered under \"%s\"",
                           op_names[o->kind], o->fn);
    }
  }
  if (n->op->kind == OP_SHUFFLE)
    n->rng = (uint64_t)n->op->a[1] + ctx->passes * 0x632BE59BD9B4E019ull;
  if (index > 0) {
    mc_code rc = node_new(ctx, index - 1, &n->input);
    if (rc != MC_OK) {
      free(n);
      return rc;
    }
  }
  *out = n;
  return MC_OK;
}

static mc_code copy_dataset(const mc_dataset *ds, mc_dataset **out) {
  uint8_t *buf;
  size_t len;
  mc_code rc = mc_dataset_to_def_bytes(ds, &buf, &len);
  if (rc != MC_OK)
    return rc;
  rc = mc_dataset_from_def_bytes(buf, len, out);
  free(buf);
  return rc;
}

mc_code mc__dataset_iterator_new_split(const mc_dataset *ds, mc__split_fn fn,
                                       void *arg, mc_dataset_iterator **out) {
  *out = NULL;
  if (ds == NULL || ds->n == 0)
    return mc__error_set(MC_INVALID_ARGUMENT, "dataset is NULL or empty");
  mc_dataset_iterator *it = calloc(1, sizeof *it);
  if (it == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  mc_code rc = copy_dataset(ds, &it->ctx.ds);
  if (rc == MC_OK) {
    it->ctx.split_fn = fn;
    it->ctx.split_arg = arg;
    rc = node_new(&it->ctx, it->ctx.ds->n - 1, &it->top);
  }
  if (rc != MC_OK) {
    mc_dataset_free(it->ctx.ds);
    free(it);
    return rc;
  }
  *out = it;
  return MC_OK;
}

mc_code mc_dataset_iterator_new(const mc_dataset *ds,
                                mc_dataset_iterator **out) {
  return mc__dataset_iterator_new_split(ds, NULL, NULL, out);
}

mc_code mc_dataset_iterator_next(mc_dataset_iterator *it, mc_element *out,
                                 int *end_of_sequence) {
  out->num_components = 0;
  out->components = NULL;
  return node_next(it->top, out, end_of_sequence);
}

void mc_dataset_iterator_free(mc_dataset_iterator *it) {
  if (it == NULL)
    return;
  node_free(it->top);
  mc_dataset_free(it->ctx.ds);
  free(it);
}
