/* cluster_spec.c: the spec itself (jobs, tasks, validation, accessors,
 * equality) and its JSON form. ClusterDef/ServerDef bytes live in
 * cluster_def.c, TF_CONFIG in tf_config.c. */
#include "core/cluster_spec.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/status.h"

/* job_tasks() hands out a dense array of max_index + 1 pointers. A sparse
 * job such as {"ps": {"2000000000": ...}} is legal, so the dense view is only
 * kept up to this many entries (8 MiB of pointers); past it job_tasks()
 * fails with RESOURCE_EXHAUSTED instead of allocating gigabytes. */
#define MC_DENSE_MAX (1 << 20)

typedef struct mc_job {
  char *name;
  int *indices;     /* sorted ascending, unique */
  char **addresses; /* addresses[i] belongs to indices[i] */
  int *ports;       /* parsed port of addresses[i], for duplicate checks */
  size_t ntasks, cap;
  const char **dense; /* dense view; NULL at holes */
  size_t ndense, dense_cap;
  int dense_too_big; /* some index >= MC_DENSE_MAX: no dense view */
} mc_job;

struct mc_cluster_spec {
  mc_job *jobs; /* sorted by name */
  size_t njobs, cap;
};

void mc_free(void *ptr) {
  free(ptr);
}

static mc_code oom(const char *what) {
  return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory (%s)", what);
}

/* ---- jobs ---- */

/* TensorFlow's rule for job names (DeviceNameUtils: a letter, then letters,
 * digits or '_'): anything else could not appear in "/job:NAME/task:0". */
static mc_code check_job_name(const char *job) {
  if (job == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "job name is NULL");
  if (job[0] == '\0')
    return mc__error_set(MC_INVALID_ARGUMENT, "empty job name \"\"");
  int ok = (job[0] >= 'a' && job[0] <= 'z') || (job[0] >= 'A' && job[0] <= 'Z');
  for (const char *p = job; ok && *p != '\0'; p++)
    ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
         (*p >= '0' && *p <= '9') || *p == '_';
  if (!ok)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "invalid job name \"%s\" (expected a letter followed "
                         "by letters, digits or '_')",
                         job);
  return MC_OK;
}

/* Binary search; returns the job or NULL and sets *pos to the insertion
 * point. */
static mc_job *find_job(const mc_cluster_spec *spec, const char *job,
                        size_t *pos) {
  size_t lo = 0, hi = spec->njobs;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(spec->jobs[mid].name, job);
    if (c == 0) {
      if (pos != NULL)
        *pos = mid;
      return &spec->jobs[mid];
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (pos != NULL)
    *pos = lo;
  return NULL;
}

/* NOT_FOUND naming the job and listing the jobs that do exist. */
static mc_code job_not_found(const mc_cluster_spec *spec, const char *job) {
  char list[256] = "";
  size_t used = 0;
  for (size_t i = 0; i < spec->njobs && used < sizeof list; i++) {
    int n = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                     spec->jobs[i].name);
    if (n < 0)
      break;
    used += (size_t)n;
  }
  return mc__error_set(
      MC_NOT_FOUND, "job \"%s\" not in cluster spec (jobs: %s)",
      job != NULL ? job : "(null)", spec->njobs ? list : "none");
}

static mc_code lookup_job(const mc_cluster_spec *spec, const char *job,
                          mc_job **out) {
  if (spec == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "cluster spec is NULL");
  mc_job *j = job != NULL ? find_job(spec, job, NULL) : NULL;
  if (j == NULL)
    return job_not_found(spec, job);
  *out = j;
  return MC_OK;
}

static void job_clear(mc_job *j) {
  for (size_t i = 0; i < j->ntasks; i++)
    free(j->addresses[i]);
  free(j->name);
  free(j->indices);
  free(j->addresses);
  free(j->ports);
  free(j->dense);
}

mc_code mc_cluster_spec_new(mc_cluster_spec **out) {
  if (out == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "mc_cluster_spec_new: NULL out");
  *out = calloc(1, sizeof **out);
  return *out != NULL ? MC_OK : oom("cluster spec");
}

void mc_cluster_spec_free(mc_cluster_spec *spec) {
  if (spec == NULL)
    return;
  for (size_t i = 0; i < spec->njobs; i++)
    job_clear(&spec->jobs[i]);
  free(spec->jobs);
  free(spec);
}

static mc_code add_job(mc_cluster_spec *spec, const char *job, mc_job **out) {
  mc_code rc = check_job_name(job);
  if (rc != MC_OK)
    return rc;
  size_t pos;
  mc_job *j = find_job(spec, job, &pos);
  if (j != NULL) {
    *out = j;
    return MC_OK;
  }
  if (spec->njobs == spec->cap) {
    size_t cap = spec->cap ? spec->cap * 2 : 4;
    mc_job *jobs = realloc(spec->jobs, cap * sizeof *jobs);
    if (jobs == NULL)
      return oom("jobs");
    spec->jobs = jobs;
    spec->cap = cap;
  }
  char *name = strdup(job);
  if (name == NULL)
    return oom("job name");
  memmove(&spec->jobs[pos + 1], &spec->jobs[pos],
          (spec->njobs - pos) * sizeof *spec->jobs);
  j = &spec->jobs[pos];
  memset(j, 0, sizeof *j);
  j->name = name;
  spec->njobs++;
  *out = j;
  return MC_OK;
}

mc_code mc_cluster_spec_add_job(mc_cluster_spec *spec, const char *job) {
  if (spec == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "cluster spec is NULL");
  mc_job *j = NULL;
  return add_job(spec, job, &j);
}

/* Position of index in j (or its insertion point); 1 if present. */
static int find_task(const mc_job *j, int index, size_t *pos) {
  size_t lo = 0, hi = j->ntasks;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (j->indices[mid] == index) {
      *pos = mid;
      return 1;
    }
    if (j->indices[mid] < index)
      lo = mid + 1;
    else
      hi = mid;
  }
  *pos = lo;
  return 0;
}

/* Same host (case-insensitive) and same non-zero port as another task,
 * except the task being replaced. Port 0 means "bind any free port", so
 * "localhost:0" may appear many times before the servers start. */
static mc_code check_duplicate(const mc_cluster_spec *spec, const char *job,
                               int index, const char *address, int port) {
  if (port == 0)
    return MC_OK;
  size_t hlen = (size_t)(strrchr(address, ':') - address);
  for (size_t i = 0; i < spec->njobs; i++) {
    const mc_job *j = &spec->jobs[i];
    for (size_t t = 0; t < j->ntasks; t++) {
      const char *a = j->addresses[t];
      if (j->ports[t] != port || (size_t)(strrchr(a, ':') - a) != hlen ||
          strncasecmp(a, address, hlen) != 0)
        continue;
      if (strcmp(j->name, job) == 0 && j->indices[t] == index)
        continue;
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "duplicate address \"%s\": job \"%s\" task %d "
                           "already uses \"%s\"",
                           address, j->name, j->indices[t], a);
    }
  }
  return MC_OK;
}

static mc_code dense_set(mc_job *j, int index, const char *address) {
  if (j->dense_too_big)
    return MC_OK;
  if (index >= MC_DENSE_MAX) {
    j->dense_too_big = 1;
    free(j->dense);
    j->dense = NULL;
    j->ndense = j->dense_cap = 0;
    return MC_OK;
  }
  size_t need = (size_t)index + 1;
  if (need > j->dense_cap) {
    size_t cap = j->dense_cap ? j->dense_cap : 4;
    while (cap < need)
      cap *= 2;
    const char **d = realloc(j->dense, cap * sizeof *d);
    if (d == NULL)
      return oom("job_tasks view");
    j->dense = d;
    j->dense_cap = cap;
  }
  for (size_t i = j->ndense; i < need; i++)
    j->dense[i] = NULL;
  if (need > j->ndense)
    j->ndense = need;
  j->dense[index] = address;
  return MC_OK;
}

mc_code mc_cluster_spec_set_task(mc_cluster_spec *spec, const char *job,
                                 int task_index, const char *address) {
  if (spec == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "cluster spec is NULL");
  mc_code rc = check_job_name(job);
  if (rc != MC_OK)
    return rc;
  if (task_index < 0)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "negative task index %d in job \"%s\"", task_index,
                         job);
  int port;
  if ((rc = mc_address_parse(address, NULL, 0, &port)) != MC_OK ||
      (rc = check_duplicate(spec, job, task_index, address, port)) != MC_OK)
    return mc__error_prefix("job \"%s\" task %d: ", job, task_index);
  char *copy = strdup(address);
  if (copy == NULL)
    return oom("address");
  mc_job *j = NULL;
  if ((rc = add_job(spec, job, &j)) != MC_OK) {
    free(copy);
    return rc;
  }
  size_t pos;
  if (!find_task(j, task_index, &pos)) {
    if (j->ntasks == j->cap) {
      size_t cap = j->cap ? j->cap * 2 : 4;
      int *ix = realloc(j->indices, cap * sizeof *ix);
      if (ix != NULL)
        j->indices = ix;
      char **ad = realloc(j->addresses, cap * sizeof *ad);
      if (ad != NULL)
        j->addresses = ad;
      int *po = realloc(j->ports, cap * sizeof *po);
      if (po != NULL)
        j->ports = po;
      if (ix == NULL || ad == NULL || po == NULL) {
        free(copy);
        return oom("tasks");
      }
      j->cap = cap;
    }
    size_t tail = j->ntasks - pos;
    memmove(&j->indices[pos + 1], &j->indices[pos], tail * sizeof(int));
    memmove(&j->addresses[pos + 1], &j->addresses[pos], tail * sizeof(char *));
    memmove(&j->ports[pos + 1], &j->ports[pos], tail * sizeof(int));
    j->indices[pos] = task_index;
    j->addresses[pos] = NULL;
    j->ntasks++;
  }
  /* Grow the dense view first: if that fails, the old address stays. */
  if ((rc = dense_set(j, task_index, copy)) != MC_OK) {
    free(copy);
    if (j->addresses[pos] == NULL) {
      j->ntasks--;
      memmove(&j->indices[pos], &j->indices[pos + 1],
              (j->ntasks - pos) * sizeof(int));
      memmove(&j->addresses[pos], &j->addresses[pos + 1],
              (j->ntasks - pos) * sizeof(char *));
      memmove(&j->ports[pos], &j->ports[pos + 1],
              (j->ntasks - pos) * sizeof(int));
    }
    return rc;
  }
  free(j->addresses[pos]);
  j->addresses[pos] = copy;
  j->ports[pos] = port;
  return MC_OK;
}

mc_code mc_cluster_spec_copy(mc_cluster_spec **out,
                             const mc_cluster_spec *spec) {
  if (out == NULL || spec == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_cluster_spec_copy: NULL argument");
  mc_cluster_spec *c;
  mc_code rc = mc_cluster_spec_new(&c);
  for (size_t i = 0; rc == MC_OK && i < spec->njobs; i++) {
    const mc_job *j = &spec->jobs[i];
    rc = mc_cluster_spec_add_job(c, j->name);
    for (size_t t = 0; rc == MC_OK && t < j->ntasks; t++)
      rc = mc_cluster_spec_set_task(c, j->name, j->indices[t], j->addresses[t]);
  }
  if (rc != MC_OK) {
    mc_cluster_spec_free(c);
    return rc;
  }
  *out = c;
  return MC_OK;
}

/* ---- accessors ---- */

size_t mc_cluster_spec_num_jobs(const mc_cluster_spec *spec) {
  return spec != NULL ? spec->njobs : 0;
}

const char *mc_cluster_spec_job(const mc_cluster_spec *spec, size_t i) {
  return spec != NULL && i < spec->njobs ? spec->jobs[i].name : NULL;
}

int mc_cluster_spec_has_job(const mc_cluster_spec *spec, const char *job) {
  return spec != NULL && job != NULL && find_job(spec, job, NULL) != NULL;
}

mc_code mc_cluster_spec_num_tasks(const mc_cluster_spec *spec, const char *job,
                                  size_t *out) {
  mc_job *j = NULL;
  mc_code rc = lookup_job(spec, job, &j);
  if (rc == MC_OK && out != NULL)
    *out = j->ntasks;
  return rc;
}

mc_code mc_cluster_spec_task_indices(const mc_cluster_spec *spec,
                                     const char *job, const int **indices,
                                     size_t *count) {
  mc_job *j = NULL;
  mc_code rc = lookup_job(spec, job, &j);
  if (rc != MC_OK)
    return rc;
  if (indices != NULL)
    *indices = j->indices;
  if (count != NULL)
    *count = j->ntasks;
  return MC_OK;
}

mc_code mc_cluster_spec_task_address(const mc_cluster_spec *spec,
                                     const char *job, int task_index,
                                     const char **address) {
  mc_job *j = NULL;
  mc_code rc = lookup_job(spec, job, &j);
  if (rc != MC_OK)
    return rc;
  size_t pos;
  if (find_task(j, task_index, &pos)) {
    if (address != NULL)
      *address = j->addresses[pos];
    return MC_OK;
  }
  char list[200] = "";
  size_t used = 0;
  for (size_t t = 0; t < j->ntasks; t++) {
    int n = snprintf(list + used, sizeof list - used, "%s%d", t ? ", " : "",
                     j->indices[t]);
    if (n < 0 || used + (size_t)n >= sizeof list - 8) {
      snprintf(list + used, sizeof list - used, ", ...");
      break;
    }
    used += (size_t)n;
  }
  return mc__error_set(MC_NOT_FOUND,
                       "task index %d not in job \"%s\" (%zu tasks, indices: "
                       "%s)",
                       task_index, j->name, j->ntasks,
                       j->ntasks ? list : "none");
}

mc_code mc_cluster_spec_job_tasks(const mc_cluster_spec *spec, const char *job,
                                  const char *const **tasks, size_t *count) {
  mc_job *j = NULL;
  mc_code rc = lookup_job(spec, job, &j);
  if (rc != MC_OK)
    return rc;
  if (j->dense_too_big)
    return mc__error_set(MC_RESOURCE_EXHAUSTED,
                         "job \"%s\" has task index %d: a dense list of %lld "
                         "entries is over the limit of %d (use "
                         "mc_cluster_spec_task_indices)",
                         j->name, j->indices[j->ntasks - 1],
                         (long long)j->indices[j->ntasks - 1] + 1,
                         MC_DENSE_MAX);
  if (tasks != NULL)
    *tasks = j->dense;
  if (count != NULL)
    *count = j->ndense;
  return MC_OK;
}

int mc_cluster_spec_equal(const mc_cluster_spec *a, const mc_cluster_spec *b) {
  if (a == NULL || b == NULL)
    return a == b;
  if (a->njobs != b->njobs)
    return 0;
  for (size_t i = 0; i < a->njobs; i++) {
    const mc_job *x = &a->jobs[i], *y = &b->jobs[i];
    if (strcmp(x->name, y->name) != 0 || x->ntasks != y->ntasks)
      return 0;
    for (size_t t = 0; t < x->ntasks; t++)
      if (x->indices[t] != y->indices[t] ||
          strcmp(x->addresses[t], y->addresses[t]) != 0)
        return 0;
  }
  return 1;
}

/* ---- JSON ---- */

const char *mc__json_type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "object";
  case JSON_ARRAY:
    return "list";
  case JSON_STRING:
    return "string";
  case JSON_INTEGER:
    return "integer";
  case JSON_REAL:
    return "number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "boolean";
  case JSON_NULL:
    return "null";
  }
  return "value";
}

const char *mc__json_describe(const json_t *v, char *buf, size_t size) {
  char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
  const char *t = text != NULL ? text : "";
  snprintf(buf, size, "%s %.40s%s", mc__json_type_name(v), t,
           strlen(t) > 40 ? "..." : "");
  free(text);
  return buf;
}

mc_code mc__json_error(const char *what, const json_error_t *err) {
  return mc__error_set(MC_INVALID_ARGUMENT,
                       "%s: bad JSON at line %d, column %d: %s", what,
                       err->line, err->column, err->text);
}

/* Sparse keys are canonical decimal task indices: "0", "7", "12"; not "-1",
 * "x", "01" or "1.0" (so that two keys can never name the same task). */
static int parse_index_key(const char *key, int *out) {
  if (key[0] == '\0' || (key[0] == '0' && key[1] != '\0'))
    return 0;
  long long v = 0;
  for (const char *p = key; *p != '\0'; p++) {
    if (*p < '0' || *p > '9')
      return 0;
    v = v * 10 + (*p - '0');
    if (v > INT_MAX)
      return 0;
  }
  *out = (int)v;
  return 1;
}

static mc_code set_json_task(mc_cluster_spec *spec, const char *job, int index,
                             const json_t *v, const char *what) {
  char desc[64];
  if (!json_is_string(v))
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "%s: job \"%s\" task %d: address must be a string, "
                         "got %s",
                         what, job, index,
                         mc__json_describe(v, desc, sizeof desc));
  if (mc_cluster_spec_set_task(spec, job, index, json_string_value(v)) != MC_OK)
    return mc__error_prefix("%s: ", what);
  return MC_OK;
}

static mc_code add_json_job(mc_cluster_spec *spec, const char *job,
                            const json_t *tasks, const char *what) {
  if (mc_cluster_spec_add_job(spec, job) != MC_OK)
    return mc__error_prefix("%s: ", what);
  if (json_is_array(tasks)) {
    if (json_array_size(tasks) > (size_t)INT_MAX)
      return mc__error_set(MC_INVALID_ARGUMENT, "%s: job \"%s\" is too long",
                           what, job);
    for (size_t i = 0; i < json_array_size(tasks); i++) {
      mc_code rc =
          set_json_task(spec, job, (int)i, json_array_get(tasks, i), what);
      if (rc != MC_OK)
        return rc;
    }
    return MC_OK;
  }
  if (json_is_object(tasks)) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)tasks, key, v) {
      int index;
      if (!parse_index_key(key, &index))
        return mc__error_set(MC_INVALID_ARGUMENT,
                             "%s: job \"%s\": bad task index key \"%s\" "
                             "(expected a decimal integer 0..%d without "
                             "leading zeros)",
                             what, job, key, INT_MAX);
      mc_code rc = set_json_task(spec, job, index, v, what);
      if (rc != MC_OK)
        return rc;
    }
    return MC_OK;
  }
  char desc[64];
  return mc__error_set(MC_INVALID_ARGUMENT,
                       "%s: job \"%s\": expected a list of addresses or an "
                       "object of index -> address, got %s",
                       what, job, mc__json_describe(tasks, desc, sizeof desc));
}

mc_code mc__cluster_spec_from_json_value(mc_cluster_spec **out,
                                         const json_t *root, const char *what) {
  char desc[64];
  if (!json_is_object(root))
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "%s: expected an object of job -> tasks, got %s", what,
                         mc__json_describe(root, desc, sizeof desc));
  mc_cluster_spec *spec;
  mc_code rc = mc_cluster_spec_new(&spec);
  if (rc != MC_OK)
    return rc;
  const char *job;
  json_t *tasks;
  json_object_foreach((json_t *)root, job, tasks) {
    if ((rc = add_json_job(spec, job, tasks, what)) != MC_OK) {
      mc_cluster_spec_free(spec);
      return rc;
    }
  }
  *out = spec;
  return MC_OK;
}

mc_code mc_cluster_spec_from_json(mc_cluster_spec **out, const char *json) {
  if (out == NULL || json == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_cluster_spec_from_json: NULL argument");
  json_error_t err;
  /* Duplicate keys would silently drop a job or a task: reject them. */
  json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &err);
  if (root == NULL)
    return mc__json_error("cluster spec", &err);
  mc_code rc = mc__cluster_spec_from_json_value(out, root, "cluster spec");
  json_decref(root);
  return rc;
}

/* Jansson keeps object keys in insertion order, so inserting jobs in sorted
 * order and sparse indices in numeric order gives sorted output ("2" before
 * "10", which JSON_SORT_KEYS would not). */
static json_t *job_to_json(const mc_job *j) {
  int dense =
      j->ntasks > 0 && (size_t)j->indices[j->ntasks - 1] + 1 == j->ntasks;
  json_t *v = dense ? json_array() : json_object();
  for (size_t t = 0; v != NULL && t < j->ntasks; t++) {
    char key[16];
    snprintf(key, sizeof key, "%d", j->indices[t]);
    int bad = dense ? json_array_append_new(v, json_string(j->addresses[t]))
                    : json_object_set_new(v, key, json_string(j->addresses[t]));
    if (bad) {
      json_decref(v);
      v = NULL;
    }
  }
  return v;
}

mc_code mc_cluster_spec_to_json(const mc_cluster_spec *spec, char **json) {
  if (spec == NULL || json == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_cluster_spec_to_json: NULL argument");
  json_t *root = json_object();
  for (size_t i = 0; root != NULL && i < spec->njobs; i++) {
    if (json_object_set_new(root, spec->jobs[i].name,
                            job_to_json(&spec->jobs[i])) != 0) {
      json_decref(root);
      root = NULL;
    }
  }
  char *s = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
  json_decref(root);
  if (s == NULL)
    return oom("cluster spec JSON");
  *json = s;
  return MC_OK;
}
