/* server.c: task servers (tf.train.Server): TensorFlow's job/task
 * inference, binding, the start/join/stop/free state machine. The services
 * come from the task-service table (task.h); this file knows none of them. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "config.pb-c.h"
#include "core/pb.h"
#include "core/status.h"
#include "server/task.h"

enum { ST_NEW, ST_STARTED, ST_STOPPED };

struct mc_server {
  mc_task task;
  char *job;
  char *device_prefix;
  uint8_t *config;
  size_t config_len;
  char target[64];
  pthread_mutex_t mu; /* state, cluster */
  pthread_cond_t cv;  /* state changes, for join */
  int state;
  mc_cluster_spec *cluster;      /* owned */
  const mc_cluster_spec *shared; /* a local cluster's spec, if set */
  void **svc_state;              /* one per entry of mc__task_services */
  size_t num_attached;
  int bind_all;
  int port;   /* the bound port, kept across kill and restart */
  int killed; /* stopped by mc_server_kill: may restart */
};

mc_cluster_spec *mc__task_cluster_copy(const mc_task *task) {
  mc_server *s = task->server;
  mc_cluster_spec *copy = NULL;
  pthread_mutex_lock(&s->mu);
  if (mc_cluster_spec_copy(&copy, s->shared ? s->shared : s->cluster) != MC_OK)
    copy = NULL;
  pthread_mutex_unlock(&s->mu);
  return copy;
}

static uint64_t new_incarnation(void) {
  uint64_t v = 0;
  while (v == 0)
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
      v = (uint64_t)mc__rpc_now_ns() * 0x9E3779B97F4A7C15ull;
  return v;
}

static void detach_all(mc_server *s) {
  while (s->num_attached > 0) {
    size_t i = --s->num_attached;
    if (mc__task_services[i]->detach)
      mc__task_services[i]->detach(&s->task, s->svc_state[i]);
  }
}

static void server_destroy(mc_server *s) {
  mc__rpc_server_free(s->task.rpc); /* stops first: no handler runs after */
  detach_all(s);
  mc_cluster_spec_free(s->cluster);
  free(s->svc_state);
  free(s->job);
  free(s->device_prefix);
  free(s->config);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s);
}

/* Checks the protocol and the config, and picks job and task the way
 * tf.train.Server does. *job is borrowed from spec or job_name. */
static mc_code resolve_task(const mc_cluster_spec *spec, const char *job_name,
                            int task_index, const char **job, int *index) {
  if (job_name == NULL || job_name[0] == '\0') {
    size_t n = spec ? mc_cluster_spec_num_jobs(spec) : 0;
    if (n != 1)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "must specify an explicit job_name: the cluster "
                           "has %zu jobs",
                           n);
    job_name = mc_cluster_spec_job(spec, 0);
  }
  if (spec == NULL || !mc_cluster_spec_has_job(spec, job_name))
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "job \"%s\" is not defined in the cluster", job_name);
  const int *indices = NULL;
  size_t count = 0;
  mc_code rc = mc_cluster_spec_task_indices(spec, job_name, &indices, &count);
  if (rc != MC_OK)
    return rc;
  if (task_index < 0) {
    if (count != 1)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "must specify an explicit task_index: job \"%s\" "
                           "has %zu tasks",
                           job_name, count);
    task_index = indices[0];
  }
  const char *addr = NULL;
  if (mc_cluster_spec_task_address(spec, job_name, task_index, &addr) != MC_OK)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "task %d is not defined in job \"%s\" (%zu tasks)",
                         task_index, job_name, count);
  *job = job_name;
  *index = task_index;
  return MC_OK;
}

static mc_code check_protocol(const char *protocol) {
  if (protocol == NULL || protocol[0] == '\0' || strcmp(protocol, "grpc") == 0)
    return MC_OK;
  return mc__error_set(MC_INVALID_ARGUMENT,
                       "protocol \"%s\" is not supported (only \"grpc\")",
                       protocol);
}

static mc_code check_config(const mc_bytes *config) {
  if (config == NULL || config->len == 0)
    return MC_OK;
  if (config->data == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "config: NULL data with length %zu", config->len);
  Tensorflow__ConfigProto *c =
      MC_PB_UNPACK(tensorflow__config_proto, Tensorflow__ConfigProto,
                   config->len, config->data);
  if (c == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "config (%zu bytes) is not a valid serialized "
                         "tensorflow.ConfigProto",
                         config->len);
  tensorflow__config_proto__free_unpacked(c, NULL);
  return MC_OK;
}

/* Rewrites this task's address to localhost:PORT after binding. */
static mc_code set_own_address(mc_server *s) {
  char addr[32];
  snprintf(addr, sizeof addr, "localhost:%d", mc__rpc_server_port(s->task.rpc));
  pthread_mutex_lock(&s->mu);
  mc_code rc =
      mc_cluster_spec_set_task(s->cluster, s->job, s->task.index, addr);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* Creates the task's RPC server, attaches every task service and binds
 * port (0: a free one). On failure everything it did is undone. Shared by
 * creation and by mc_server_restart. */
static mc_code rpc_up(mc_server *s, int port, int bind_all) {
  size_t nsvc = 0;
  while (mc__task_services[nsvc] != NULL)
    nsvc++;
  char name[300];
  snprintf(name, sizeof name, "/job:%s/task:%d", s->job, s->task.index);
  mc_rpc_server_options ro = MC_RPC_SERVER_OPTIONS_INIT;
  ro.port = port;
  ro.bind_all = bind_all;
  ro.name = name;
  mc_code rc = mc__rpc_server_new(&s->task.rpc, &ro);
  if (rc != MC_OK)
    return rc;
  while (rc == MC_OK && s->num_attached < nsvc) {
    const mc_task_service *ts = mc__task_services[s->num_attached];
    rc = ts->attach(&s->task, &s->svc_state[s->num_attached]);
    if (rc != MC_OK)
      mc__error_prefix("%s of %s: ", ts->name, name);
    else
      s->num_attached++;
  }
  if (rc == MC_OK)
    rc = mc__rpc_server_bind(s->task.rpc);
  if (rc != MC_OK) {
    mc__rpc_server_free(s->task.rpc);
    s->task.rpc = NULL;
    detach_all(s);
  }
  return rc;
}

/* The common constructor: spec already validated, job/index resolved. */
static mc_code server_create(mc_server **out, const mc_cluster_spec *spec,
                             const char *job, int index, int port,
                             const mc_bytes *config, int bind_all, int start) {
  mc_server *s = calloc(1, sizeof *s);
  if (s == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  size_t nsvc = 0;
  while (mc__task_services[nsvc] != NULL)
    nsvc++;
  s->job = strdup(job);
  size_t plen = strlen(job) + 64;
  s->device_prefix = malloc(plen);
  s->svc_state = calloc(nsvc + 1, sizeof *s->svc_state);
  mc_code rc = MC_OK;
  if (s->job == NULL || s->device_prefix == NULL || s->svc_state == NULL ||
      mc_cluster_spec_copy(&s->cluster, spec) != MC_OK) {
    rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
    goto fail;
  }
  snprintf(s->device_prefix, plen, "/job:%s/replica:0/task:%d", job, index);
  if (config != NULL && config->len > 0) {
    s->config = malloc(config->len);
    if (s->config == NULL) {
      rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
      goto fail;
    }
    memcpy(s->config, config->data, config->len);
    s->config_len = config->len;
  }
  s->task.job = s->job;
  s->task.index = index;
  s->task.device_prefix = s->device_prefix;
  s->task.config = s->config;
  s->task.config_len = s->config_len;
  s->task.incarnation = new_incarnation();
  s->task.server = s;

  if ((rc = rpc_up(s, port, bind_all)) != MC_OK ||
      (rc = set_own_address(s)) != MC_OK)
    goto fail;
  snprintf(s->target, sizeof s->target, "grpc://localhost:%d",
           mc__rpc_server_port(s->task.rpc));
  s->port = mc__rpc_server_port(s->task.rpc);
  s->bind_all = bind_all;
  if (start && (rc = mc_server_start(s)) != MC_OK)
    goto fail;
  *out = s;
  return MC_OK;
fail:
  server_destroy(s);
  return rc;
}

mc_code mc_server_new(mc_server **out, const mc_server_options *opts) {
  if (out == NULL || opts == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "mc_server_new: NULL argument");
  *out = NULL;
  if (opts->version != MC_SERVER_OPTIONS_VERSION)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_server_options version %d (expected %d)",
                         opts->version, MC_SERVER_OPTIONS_VERSION);
  if (opts->port < 0 || opts->port > 65535)
    return mc__error_set(MC_INVALID_ARGUMENT, "port %d outside 0..65535",
                         opts->port);
  mc_code rc;
  if ((rc = check_protocol(opts->protocol)) != MC_OK ||
      (rc = check_config(&opts->config)) != MC_OK)
    return rc;
  const char *job = NULL;
  int index = 0;
  if ((rc = resolve_task(opts->cluster, opts->job_name, opts->task_index, &job,
                         &index)) != MC_OK)
    return rc;
  int port = opts->port;
  if (port == 0) {
    const char *addr = NULL;
    char host[256];
    mc_cluster_spec_task_address(opts->cluster, job, index, &addr);
    if ((rc = mc_address_parse(addr, host, sizeof host, &port)) != MC_OK)
      return rc;
  }
  return server_create(out, opts->cluster, job, index, port, &opts->config,
                       opts->bind_all, opts->start);
}

mc_code mc_server_new_from_server_def(mc_server **out, const void *server_def,
                                      size_t len, int start) {
  if (out == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_server_new_from_server_def: NULL out");
  *out = NULL;
  mc_server_def *def = NULL;
  mc_code rc = mc_server_def_parse(&def, server_def, len);
  if (rc != MC_OK)
    return rc;
  mc_server_options o = MC_SERVER_OPTIONS_INIT;
  o.cluster = def->cluster;
  o.job_name = def->job_name;
  o.task_index = def->job_name[0] == '\0' ? -1 : def->task_index;
  o.protocol = def->protocol;
  o.config.data = def->default_session_config;
  o.config.len = def->default_session_config_len;
  o.port = def->port;
  o.start = start;
  rc = mc_server_new(out, &o);
  mc_server_def_free(def);
  return rc;
}

mc_code mc__server_new_task(mc_server **out, const char *job, int index,
                            const char *protocol, const mc_bytes *config,
                            int start) {
  mc_code rc;
  *out = NULL;
  if ((rc = check_protocol(protocol)) != MC_OK ||
      (rc = check_config(config)) != MC_OK)
    return rc;
  mc_cluster_spec *spec = NULL;
  if ((rc = mc_cluster_spec_new(&spec)) != MC_OK)
    return rc;
  if ((rc = mc_cluster_spec_set_task(spec, job, index, "localhost:0")) == MC_OK)
    rc = server_create(out, spec, job, index, 0, config, 0, start);
  mc_cluster_spec_free(spec);
  return rc;
}

void mc__server_share_cluster(mc_server *s, const mc_cluster_spec *spec) {
  pthread_mutex_lock(&s->mu);
  s->shared = spec;
  pthread_mutex_unlock(&s->mu);
}

mc_code mc_create_local_server(const mc_bytes *config, int start,
                               mc_server **out) {
  if (out == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_create_local_server: NULL out");
  return mc__server_new_task(out, "localhost", 0, NULL, config, start);
}

/* ---- state machine ---- */

mc_code mc_server_start(mc_server *s) {
  if (s == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "mc_server_start: NULL server");
  pthread_mutex_lock(&s->mu);
  int state = s->state;
  pthread_mutex_unlock(&s->mu);
  if (state == ST_STARTED)
    return MC_OK;
  if (state == ST_STOPPED)
    return mc__error_set(MC_FAILED_PRECONDITION,
                         "server %s (%s) has been stopped; a stopped server "
                         "cannot restart (create a new one)",
                         s->target, s->device_prefix);
  mc_code rc = mc__rpc_server_start(s->task.rpc);
  if (rc != MC_OK)
    return rc;
  pthread_mutex_lock(&s->mu);
  s->state = ST_STARTED;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return MC_OK;
}

mc_code mc_server_join(mc_server *s) {
  if (s == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "mc_server_join: NULL server");
  pthread_mutex_lock(&s->mu);
  if (s->state == ST_NEW) {
    pthread_mutex_unlock(&s->mu);
    return mc__error_set(MC_FAILED_PRECONDITION,
                         "server %s was never started: join would block "
                         "forever",
                         s->target);
  }
  while (s->state != ST_STOPPED)
    pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
  return MC_OK;
}

void mc__server_stop_begin(mc_server *s) {
  if (s != NULL)
    mc__rpc_server_stop_begin(s->task.rpc);
}

void mc_server_stop(mc_server *s) {
  if (s == NULL)
    return;
  mc__rpc_server_stop(s->task.rpc);
  pthread_mutex_lock(&s->mu);
  s->state = ST_STOPPED;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

void mc_server_free(mc_server *s) {
  if (s == NULL)
    return;
  mc_server_stop(s);
  server_destroy(s);
}

/* ---- accessors ---- */

const char *mc_server_target(const mc_server *s) {
  return s->target;
}
int mc_server_port(const mc_server *s) {
  return s->port;
}
const char *mc_server_job_name(const mc_server *s) {
  return s->job;
}
int mc_server_task_index(const mc_server *s) {
  return s->task.index;
}

mc_code mc_server_server_def(const mc_server *s, uint8_t **data, size_t *len) {
  if (s == NULL || data == NULL || len == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_server_server_def: NULL argument");
  mc_server_def def = {0};
  def.cluster = mc__task_cluster_copy(&s->task);
  if (def.cluster == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  def.job_name = s->job;
  def.task_index = s->task.index;
  def.protocol = "grpc";
  def.port = mc_server_port(s);
  def.default_session_config = s->config;
  def.default_session_config_len = s->config_len;
  mc_code rc = mc_server_def_serialize(&def, data, len);
  mc_cluster_spec_free(def.cluster);
  return rc;
}

mc_code mc_server_cluster_json(const mc_server *s, char **json) {
  if (s == NULL || json == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_server_cluster_json: NULL argument");
  mc_cluster_spec *spec = mc__task_cluster_copy(&s->task);
  if (spec == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  mc_code rc = mc_cluster_spec_to_json(spec, json);
  mc_cluster_spec_free(spec);
  return rc;
}

/* ---- kill and restart (fault injection) ---- */

mc_code mc_server_kill(mc_server *s) {
  if (s == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "mc_server_kill: NULL server");
  pthread_mutex_lock(&s->mu);
  int state = s->state;
  pthread_mutex_unlock(&s->mu);
  if (state != ST_STARTED)
    return mc__error_set(MC_FAILED_PRECONDITION,
                         "server %s (%s) is not running", s->target,
                         s->device_prefix);
  mc__rpc_server_set_grace_ms(s->task.rpc, 0);
  mc__rpc_server_free(s->task.rpc); /* no handler runs after this */
  s->task.rpc = NULL;
  detach_all(s); /* the task's state dies with it */
  pthread_mutex_lock(&s->mu);
  s->state = ST_STOPPED;
  s->killed = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return MC_OK;
}

mc_code mc_server_restart(mc_server *s) {
  if (s == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "mc_server_restart: NULL server");
  pthread_mutex_lock(&s->mu);
  int killed = s->killed;
  pthread_mutex_unlock(&s->mu);
  if (!killed)
    return mc__error_set(MC_FAILED_PRECONDITION,
                         "server %s (%s) was not killed; only a killed "
                         "server restarts",
                         s->target, s->device_prefix);
  s->task.incarnation = new_incarnation();
  mc_code rc = rpc_up(s, s->port, s->bind_all);
  if (rc == MC_OK && (rc = mc__rpc_server_start(s->task.rpc)) != MC_OK) {
    mc__rpc_server_free(s->task.rpc);
    s->task.rpc = NULL;
    detach_all(s);
  }
  if (rc != MC_OK)
    return mc__error_prefix("restart of %s on port %d: ", s->device_prefix,
                            s->port);
  pthread_mutex_lock(&s->mu);
  s->killed = 0;
  s->state = ST_STARTED;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return MC_OK;
}

int mc_server_running(const mc_server *s) {
  if (s == NULL)
    return 0;
  mc_server *m = (mc_server *)s;
  pthread_mutex_lock(&m->mu);
  int running = m->state == ST_STARTED;
  pthread_mutex_unlock(&m->mu);
  return running;
}
