/* fault.c: the fault injector (see <minicluster/fault.h>). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "fault/internal.h"

typedef enum fkind { F_PAUSE, F_PARTITION, F_DELAY, F_ERROR } fkind;

static const char *const fkind_names[] = {"pause", "partition", "delay",
                                          "error"};

typedef struct fault {
  int id;
  fkind kind;
  char *task; /* pause, delay, error: the callee */
  char **a, **b;
  size_t num_a, num_b;
  int one_way;
  char **methods;
  size_t num_methods;
  int64_t delay_ms, jitter_ms;
  mc_code code;
  double p;
  /* pause: servers that hold calls for this fault, resumed on heal */
  mc_rpc_server *held[8];
  size_t num_held;
  struct fault *next;
} fault;

/* Per (fault, caller, callee, method) call counters: the n in the random
 * decision of the n-th such call. */
typedef struct counter {
  uint64_t key;
  uint64_t n;
} counter;

struct mc_faults {
  uint64_t seed;
  int next_id;
  fault *faults;
  counter *counters;
  size_t num_counters, cap_counters;
  size_t injected;
  char *log;
  size_t log_len, log_cap;
};

static uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static uint64_t hash_str(uint64_t h, const char *s) {
  /* FNV-1a, then mixed: stable across runs and platforms. */
  h ^= 0xcbf29ce484222325ULL;
  for (; s && *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  return splitmix64(h);
}

/* A uniform double in [0, 1) for the next call of this key; *nth gets the
 * call's ordinal among calls of this key. */
static double next_uniform(mc_faults *f, uint64_t key, uint64_t *nth) {
  *nth = 0;
  counter *c = NULL;
  for (size_t i = 0; i < f->num_counters; i++)
    if (f->counters[i].key == key)
      c = &f->counters[i];
  if (c == NULL) {
    if (f->num_counters == f->cap_counters) {
      size_t cap = f->cap_counters ? f->cap_counters * 2 : 32;
      counter *grown = realloc(f->counters, cap * sizeof *grown);
      if (grown == NULL)
        return 0.5; /* out of memory: still deterministic enough */
      f->counters = grown;
      f->cap_counters = cap;
    }
    c = &f->counters[f->num_counters++];
    c->key = key;
    c->n = 0;
  }
  *nth = c->n;
  uint64_t r = splitmix64(f->seed ^ splitmix64(key + c->n++));
  return (double)(r >> 11) * (1.0 / 9007199254740992.0);
}

static void log_line(mc_faults *f, const fault *ft, const char *what,
                     const mc_rpc_call_info *info, uint64_t n) {
  char line[512];
  int len = snprintf(line, sizeof line, "%d %s %s -> %s %s #%llu\n", ft->id,
                     what, info->caller, info->server_name, info->method,
                     (unsigned long long)n);
  if (len <= 0)
    return;
  if ((size_t)len >= sizeof line)
    len = (int)sizeof line - 1;
  if (f->log_len + (size_t)len + 1 > f->log_cap) {
    size_t cap = f->log_cap ? f->log_cap * 2 : 4096;
    while (cap < f->log_len + (size_t)len + 1)
      cap *= 2;
    char *grown = realloc(f->log, cap);
    if (grown == NULL)
      return;
    f->log = grown;
    f->log_cap = cap;
  }
  memcpy(f->log + f->log_len, line, (size_t)len);
  f->log_len += (size_t)len;
  f->log[f->log_len] = '\0';
  f->injected++;
}

static int in_set(char **set, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(set[i], name) == 0)
      return 1;
  return 0;
}

/* "GetStatus" matches ".../GetStatus"; a path matches itself. */
static int method_matches(const fault *ft, const char *method) {
  if (ft->num_methods == 0)
    return 1;
  const char *slash = strrchr(method, '/');
  const char *bare = slash ? slash + 1 : method;
  for (size_t i = 0; i < ft->num_methods; i++)
    if (strcmp(ft->methods[i], method) == 0 ||
        strcmp(ft->methods[i], bare) == 0)
      return 1;
  return 0;
}

static uint64_t call_key(const fault *ft, const mc_rpc_call_info *info) {
  uint64_t h = splitmix64((uint64_t)ft->id);
  h = hash_str(h, info->caller);
  h = hash_str(h, info->server_name);
  return hash_str(h, info->method);
}

void mc__faults_decide(mc_faults *f, const mc_rpc_call_info *info,
                       mc_rpc_decision *d) {
  const char *callee = info->server_name ? info->server_name : "";
  const char *caller = info->caller ? info->caller : "client";
  /* Drops and holds win over everything: a partitioned or paused task does
   * not even see the call. */
  for (fault *ft = f->faults; ft != NULL; ft = ft->next) {
    if (ft->kind != F_PARTITION)
      continue;
    int cut = (in_set(ft->a, ft->num_a, caller) &&
               in_set(ft->b, ft->num_b, callee)) ||
              (!ft->one_way && in_set(ft->b, ft->num_b, caller) &&
               in_set(ft->a, ft->num_a, callee));
    if (cut) {
      d->action = MC_RPC_DROP;
      snprintf(d->fault, sizeof d->fault, "partition (fault %d)", ft->id);
      uint64_t n;
      next_uniform(f, call_key(ft, info), &n);
      log_line(f, ft, "drop", info, n);
      return;
    }
  }
  for (fault *ft = f->faults; ft != NULL; ft = ft->next) {
    if (ft->kind != F_PAUSE || strcmp(ft->task, callee) != 0)
      continue;
    d->action = MC_RPC_HOLD;
    snprintf(d->fault, sizeof d->fault, "pause (fault %d)", ft->id);
    int known = 0;
    for (size_t i = 0; i < ft->num_held; i++)
      known |= ft->held[i] == info->server;
    if (!known && ft->num_held < sizeof ft->held / sizeof ft->held[0])
      ft->held[ft->num_held++] = info->server;
    uint64_t n;
    next_uniform(f, call_key(ft, info), &n);
    log_line(f, ft, "hold", info, n);
    return;
  }
  for (fault *ft = f->faults; ft != NULL; ft = ft->next) {
    if ((ft->kind != F_DELAY && ft->kind != F_ERROR) ||
        strcmp(ft->task, callee) != 0 || !method_matches(ft, info->method))
      continue;
    uint64_t key = call_key(ft, info);
    uint64_t n;
    double u = next_uniform(f, key, &n);
    if (ft->kind == F_DELAY) {
      int64_t ms = ft->delay_ms;
      if (ft->jitter_ms > 0)
        ms += (int64_t)(u * (double)(2 * ft->jitter_ms + 1)) - ft->jitter_ms;
      if (ms < 0)
        ms = 0;
      d->delay_ms += ms;
      char what[40];
      snprintf(what, sizeof what, "delay %lldms", (long long)ms);
      if (d->fault[0] == '\0')
        snprintf(d->fault, sizeof d->fault, "%.40s (fault %d)", what, ft->id);
      log_line(f, ft, what, info, n);
    } else if (u < ft->p && d->action != MC_RPC_FAIL) {
      d->action = MC_RPC_FAIL;
      d->code = ft->code;
      snprintf(d->message, sizeof d->message, "injected %s (fault %d on %s)",
               mc_code_name(ft->code), ft->id, callee);
      snprintf(d->fault, sizeof d->fault, "error %s (fault %d)",
               mc_code_name(ft->code), ft->id);
      char what[64];
      snprintf(what, sizeof what, "error %s", mc_code_name(ft->code));
      log_line(f, ft, what, info, n);
    }
  }
}

/* ---- public API ---- */

mc_code mc_faults_new(mc_faults **out, const mc_fault_options *opts) {
  if (out == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "mc_faults_new: out is NULL");
  *out = NULL;
  if (opts != NULL && opts->version != MC_FAULT_OPTIONS_VERSION)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_fault_options version %d, expected %d",
                         opts->version, MC_FAULT_OPTIONS_VERSION);
  mc_faults *f = calloc(1, sizeof *f);
  if (f == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  f->seed = opts ? opts->seed : 0;
  f->next_id = 1;
  mc_code c = mc__hooks_set_faults(f);
  if (c != MC_OK) {
    free(f);
    return c;
  }
  *out = f;
  return MC_OK;
}

static void free_strings(char **v, size_t n) {
  for (size_t i = 0; v && i < n; i++)
    free(v[i]);
  free(v);
}

static void fault_free(fault *ft) {
  free(ft->task);
  free_strings(ft->a, ft->num_a);
  free_strings(ft->b, ft->num_b);
  free_strings(ft->methods, ft->num_methods);
  free(ft);
}

/* Unlinks a fault (hooks lock held) and returns the servers whose held
 * calls must be resumed once the lock is released. */
static void unlink_fault(mc_faults *f, fault *ft) {
  for (fault **pp = &f->faults; *pp; pp = &(*pp)->next)
    if (*pp == ft) {
      *pp = ft->next;
      return;
    }
}

/* Resumes held calls of a removed pause: outside the hooks lock, because
 * resumed calls run their handlers, which may make calls that reach the
 * interceptor. */
static void release(fault *ft) {
  for (size_t i = 0; i < ft->num_held; i++)
    mc__rpc_server_resume_held(ft->held[i]);
  fault_free(ft);
}

void mc_faults_heal_all(mc_faults *f) {
  if (f == NULL)
    return;
  mc__hooks_lock();
  fault *list = f->faults;
  f->faults = NULL;
  mc__hooks_unlock();
  while (list != NULL) {
    fault *next = list->next;
    release(list);
    list = next;
  }
}

void mc_faults_free(mc_faults *f) {
  if (f == NULL)
    return;
  mc__hooks_set_faults(NULL);
  mc_faults_heal_all(f);
  free(f->counters);
  free(f->log);
  free(f);
}

uint64_t mc_faults_seed(const mc_faults *f) {
  return f ? f->seed : 0;
}

static mc_code check_task(const char *task, const char *what) {
  char job[64];
  int idx = -1, n = 0;
  if (task == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "%s: task is NULL", what);
  if (strcmp(task, "client") == 0)
    return MC_OK;
  if (sscanf(task, "/job:%63[^/]/task:%d%n", job, &idx, &n) != 2 ||
      task[n] != '\0' || idx < 0)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "%s: bad task name \"%s\" (expected "
                         "/job:NAME/task:INDEX)",
                         what, task);
  return MC_OK;
}

static mc_code dup_strings(char ***out, const char *const *v, size_t n,
                           int tasks, const char *what) {
  *out = calloc(n ? n : 1, sizeof(char *));
  if (*out == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  for (size_t i = 0; i < n; i++) {
    if (v[i] == NULL || *v[i] == '\0')
      return mc__error_set(MC_INVALID_ARGUMENT, "%s: empty name at index %zu",
                           what, i);
    if (tasks && check_task(v[i], what) != MC_OK)
      return MC_INVALID_ARGUMENT;
    if (((*out)[i] = strdup(v[i])) == NULL)
      return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  return MC_OK;
}

static mc_code add(mc_faults *f, fault *ft, int *id) {
  mc__hooks_lock();
  ft->id = f->next_id++;
  ft->next = f->faults;
  f->faults = ft;
  mc__hooks_unlock();
  if (id != NULL)
    *id = ft->id;
  return MC_OK;
}

static fault *new_fault(fkind kind) {
  fault *ft = calloc(1, sizeof *ft);
  if (ft != NULL)
    ft->kind = kind;
  return ft;
}

mc_code mc_fault_pause(mc_faults *f, const char *task, int *id) {
  if (f == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "mc_fault_pause: no injector");
  if (check_task(task, "pause") != MC_OK)
    return MC_INVALID_ARGUMENT;
  mc__hooks_lock();
  for (fault *ft = f->faults; ft; ft = ft->next)
    if (ft->kind == F_PAUSE && strcmp(ft->task, task) == 0) {
      mc__hooks_unlock();
      return mc__error_set(MC_ALREADY_EXISTS,
                           "task \"%s\" is already paused (fault %d)", task,
                           ft->id);
    }
  mc__hooks_unlock();
  fault *ft = new_fault(F_PAUSE);
  if (ft == NULL || (ft->task = strdup(task)) == NULL) {
    free(ft);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  return add(f, ft, id);
}

mc_code mc_fault_resume(mc_faults *f, const char *task) {
  if (f == NULL || task == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "mc_fault_resume: NULL argument");
  mc__hooks_lock();
  fault *found = NULL;
  for (fault *ft = f->faults; ft; ft = ft->next)
    if (ft->kind == F_PAUSE && strcmp(ft->task, task) == 0)
      found = ft;
  if (found != NULL)
    unlink_fault(f, found);
  mc__hooks_unlock();
  if (found == NULL)
    return mc__error_set(MC_NOT_FOUND, "task \"%s\" is not paused", task);
  release(found);
  return MC_OK;
}

mc_code mc_fault_partition(mc_faults *f, const char *const *a, size_t num_a,
                           const char *const *b, size_t num_b, int one_way,
                           int *id) {
  if (f == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "partition: no injector");
  if (num_a == 0 || num_b == 0 || a == NULL || b == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "partition: both sides need at least one task (got "
                         "%zu and %zu)",
                         num_a, num_b);
  fault *ft = new_fault(F_PARTITION);
  if (ft == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  ft->num_a = num_a;
  ft->num_b = num_b;
  ft->one_way = one_way != 0;
  mc_code c = dup_strings(&ft->a, a, num_a, 1, "partition");
  if (c == MC_OK)
    c = dup_strings(&ft->b, b, num_b, 1, "partition");
  if (c != MC_OK) {
    fault_free(ft);
    return c;
  }
  return add(f, ft, id);
}

static mc_code method_fault(mc_faults *f, fkind kind, const char *task,
                            const char *const *methods, size_t num_methods,
                            fault **out) {
  const char *what = fkind_names[kind];
  if (f == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "%s: no injector", what);
  if (check_task(task, what) != MC_OK)
    return MC_INVALID_ARGUMENT;
  if (num_methods > 0 && methods == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "%s: methods is NULL", what);
  fault *ft = new_fault(kind);
  if (ft == NULL || (ft->task = strdup(task)) == NULL) {
    free(ft);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  }
  ft->num_methods = num_methods;
  mc_code c = dup_strings(&ft->methods, methods, num_methods, 0, what);
  if (c != MC_OK) {
    fault_free(ft);
    return c;
  }
  *out = ft;
  return MC_OK;
}

mc_code mc_fault_delay(mc_faults *f, const char *task,
                       const char *const *methods, size_t num_methods,
                       int64_t delay_ms, int64_t jitter_ms, int *id) {
  if (delay_ms < 0 || jitter_ms < 0)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "delay: delay_ms %lld and jitter_ms %lld must not be "
                         "negative",
                         (long long)delay_ms, (long long)jitter_ms);
  fault *ft = NULL;
  mc_code c = method_fault(f, F_DELAY, task, methods, num_methods, &ft);
  if (c != MC_OK)
    return c;
  ft->delay_ms = delay_ms;
  ft->jitter_ms = jitter_ms;
  return add(f, ft, id);
}

mc_code mc_fault_error(mc_faults *f, const char *task,
                       const char *const *methods, size_t num_methods,
                       mc_code code, double p, int *id) {
  if ((int)code <= 0 || (int)code >= MC_CODE_COUNT)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "error: code %d is not an error code (1..16)",
                         (int)code);
  if (!(p >= 0 && p <= 1))
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "error: probability %g outside 0..1", p);
  fault *ft = NULL;
  mc_code c = method_fault(f, F_ERROR, task, methods, num_methods, &ft);
  if (c != MC_OK)
    return c;
  ft->code = code;
  ft->p = p;
  return add(f, ft, id);
}

mc_code mc_fault_heal(mc_faults *f, int id) {
  if (f == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "heal: no injector");
  mc__hooks_lock();
  fault *found = NULL;
  for (fault *ft = f->faults; ft; ft = ft->next)
    if (ft->id == id)
      found = ft;
  if (found != NULL)
    unlink_fault(f, found);
  mc__hooks_unlock();
  if (found == NULL)
    return mc__error_set(MC_NOT_FOUND, "no active fault with id %d", id);
  release(found);
  return MC_OK;
}

size_t mc_faults_injected(const mc_faults *f) {
  if (f == NULL)
    return 0;
  mc__hooks_lock();
  size_t n = f->injected;
  mc__hooks_unlock();
  return n;
}

mc_code mc_faults_log(const mc_faults *f, char **text) {
  if (f == NULL || text == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "mc_faults_log: NULL argument");
  mc__hooks_lock();
  *text = strdup(f->log ? f->log : "");
  mc__hooks_unlock();
  return *text ? MC_OK : mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
}

static void describe_one(const fault *ft, char *buf, size_t size) {
  size_t len = 0;
  len += (size_t)snprintf(buf, size, "fault %d: %s", ft->id,
                          fkind_names[ft->kind]);
  if (ft->kind == F_PARTITION) {
    for (size_t i = 0; i < ft->num_a && len < size; i++)
      len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? "," : " ",
                              ft->a[i]);
    if (len < size)
      len += (size_t)snprintf(buf + len, size - len, " %s",
                              ft->one_way ? "->" : "<->");
    for (size_t i = 0; i < ft->num_b && len < size; i++)
      len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? "," : " ",
                              ft->b[i]);
  } else {
    len += (size_t)snprintf(buf + len, size - len, " %s", ft->task);
    if (ft->kind == F_DELAY && len < size)
      len +=
          (size_t)snprintf(buf + len, size - len, " %lldms +-%lldms",
                           (long long)ft->delay_ms, (long long)ft->jitter_ms);
    if (ft->kind == F_ERROR && len < size)
      len += (size_t)snprintf(buf + len, size - len, " %s p=%g",
                              mc_code_name(ft->code), ft->p);
    for (size_t i = 0; i < ft->num_methods && len < size; i++)
      len += (size_t)snprintf(buf + len, size - len, "%s%s",
                              i ? "," : " methods ", ft->methods[i]);
  }
}

mc_code mc_faults_describe(const mc_faults *f, char **text) {
  if (f == NULL || text == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_faults_describe: NULL argument");
  size_t cap = 256, len = 0;
  char *out = malloc(cap);
  if (out == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  out[0] = '\0';
  mc__hooks_lock();
  for (const fault *ft = f->faults; ft; ft = ft->next) {
    char line[1024];
    describe_one(ft, line, sizeof line);
    size_t n = strlen(line);
    if (len + n + 2 > cap) {
      while (len + n + 2 > cap)
        cap *= 2;
      char *grown = realloc(out, cap);
      if (grown == NULL)
        break;
      out = grown;
    }
    memcpy(out + len, line, n);
    len += n;
    out[len++] = '\n';
    out[len] = '\0';
  }
  mc__hooks_unlock();
  *text = out;
  return MC_OK;
}
