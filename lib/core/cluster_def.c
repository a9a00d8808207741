/* cluster_def.c: cluster specs as tensorflow.ClusterDef bytes, and
 * tensorflow.ServerDef (tensorflow_server.proto), both through protobuf-c. */
#include "core/cluster_spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.pb-c.h"
#include "core/pb.h"
#include "core/status.h"
#include "tensorflow_server.pb-c.h"

mc_code mc__cluster_spec_from_proto(mc_cluster_spec **out,
                                    const Tensorflow__ClusterDef *def) {
  mc_cluster_spec *spec;
  mc_code rc = mc_cluster_spec_new(&spec);
  for (size_t i = 0; rc == MC_OK && i < def->n_job; i++) {
    const Tensorflow__JobDef *job = def->job[i];
    const char *name = job->name != NULL ? job->name : "";
    /* TensorFlow rejects a ClusterDef that names a job twice. */
    if (mc_cluster_spec_has_job(spec, name)) {
      rc = mc__error_set(MC_INVALID_ARGUMENT,
                         "ClusterDef: job \"%s\" appears twice", name);
      break;
    }
    if ((rc = mc_cluster_spec_add_job(spec, name)) != MC_OK) {
      mc__error_prefix("ClusterDef: ");
      break;
    }
    /* A map field may repeat a key on the wire; as in every protobuf
     * implementation, the last entry wins (set_task replaces). */
    for (size_t t = 0; rc == MC_OK && t < job->n_tasks; t++) {
      const Tensorflow__JobDef__TasksEntry *e = job->tasks[t];
      rc = mc_cluster_spec_set_task(spec, name, e->key,
                                    e->value != NULL ? e->value : "");
      if (rc != MC_OK)
        mc__error_prefix("ClusterDef: ");
    }
  }
  if (rc != MC_OK) {
    mc_cluster_spec_free(spec);
    return rc;
  }
  *out = spec;
  return MC_OK;
}

mc_code mc_cluster_spec_from_cluster_def(mc_cluster_spec **out,
                                         const void *data, size_t len) {
  if (out == NULL || (data == NULL && len > 0))
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_cluster_spec_from_cluster_def: NULL argument");
  Tensorflow__ClusterDef *def =
      MC_PB_UNPACK(tensorflow__cluster_def, Tensorflow__ClusterDef, len, data);
  if (def == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "undecodable ClusterDef (%zu bytes): not a valid "
                         "tensorflow.ClusterDef encoding",
                         len);
  mc_code rc = mc__cluster_spec_from_proto(out, def);
  tensorflow__cluster_def__free_unpacked(def, NULL);
  return rc;
}

void mc__cluster_def_proto_clear(Tensorflow__ClusterDef *def) {
  for (size_t i = 0; i < def->n_job; i++) {
    Tensorflow__JobDef *job = def->job[i];
    if (job == NULL)
      continue;
    free(job->tasks != NULL ? job->tasks[0] : NULL);
    free(job->tasks);
    free(job);
  }
  free(def->job);
  def->job = NULL;
  def->n_job = 0;
}

mc_code mc__cluster_spec_to_proto(const mc_cluster_spec *spec,
                                  Tensorflow__ClusterDef *def) {
  tensorflow__cluster_def__init(def);
  size_t njobs = mc_cluster_spec_num_jobs(spec);
  if (njobs == 0)
    return MC_OK;
  def->job = calloc(njobs, sizeof *def->job);
  if (def->job == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory (ClusterDef)");
  def->n_job = njobs;
  for (size_t i = 0; i < njobs; i++) {
    const char *name = mc_cluster_spec_job(spec, i);
    const int *idx;
    size_t n;
    mc_cluster_spec_task_indices(spec, name, &idx, &n);
    Tensorflow__JobDef *job = malloc(sizeof *job);
    /* One block of entries per job, and an array pointing into it. */
    Tensorflow__JobDef__TasksEntry *entries =
        n ? malloc(n * sizeof *entries) : NULL;
    Tensorflow__JobDef__TasksEntry **ptrs = n ? malloc(n * sizeof *ptrs) : NULL;
    if (job == NULL || (n && (entries == NULL || ptrs == NULL))) {
      free(job);
      free(entries);
      free(ptrs);
      mc__cluster_def_proto_clear(def);
      return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory (ClusterDef)");
    }
    tensorflow__job_def__init(job);
    job->name = (char *)name;
    for (size_t t = 0; t < n; t++) {
      const char *address;
      mc_cluster_spec_task_address(spec, name, idx[t], &address);
      tensorflow__job_def__tasks_entry__init(&entries[t]);
      entries[t].key = idx[t];
      entries[t].value = (char *)address;
      ptrs[t] = &entries[t];
    }
    job->n_tasks = n;
    job->tasks = ptrs;
    def->job[i] = job;
  }
  return MC_OK;
}

mc_code mc_cluster_spec_to_cluster_def(const mc_cluster_spec *spec,
                                       uint8_t **data, size_t *len) {
  if (spec == NULL || data == NULL || len == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_cluster_spec_to_cluster_def: NULL argument");
  Tensorflow__ClusterDef def;
  mc_code rc = mc__cluster_spec_to_proto(spec, &def);
  if (rc != MC_OK)
    return rc;
  size_t n = tensorflow__cluster_def__get_packed_size(&def);
  /* malloc(0) may return NULL; one spare byte keeps success unambiguous. */
  uint8_t *buf = malloc(n + 1);
  if (buf == NULL) {
    mc__cluster_def_proto_clear(&def);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory (ClusterDef)");
  }
  tensorflow__cluster_def__pack(&def, buf);
  mc__cluster_def_proto_clear(&def);
  *data = buf;
  *len = n;
  return MC_OK;
}

/* ---- ServerDef ---- */

void mc_server_def_free(mc_server_def *def) {
  if (def == NULL)
    return;
  mc_cluster_spec_free(def->cluster);
  free(def->job_name);
  free(def->protocol);
  free(def->default_session_config);
  free(def);
}

/* TensorFlow's server refuses a ServerDef whose job or task is missing from
 * its cluster; checking at decode time reports it before any port opens.
 * An empty cluster is allowed (a lone server fills it in). */
static mc_code check_server_def(const mc_server_def *d) {
  if (d->task_index < 0)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "ServerDef: negative task_index %d", d->task_index);
  if (d->port < 0 || d->port > 65535)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "ServerDef: port %d out of range 0..65535", d->port);
  if (d->job_name[0] == '\0' || mc_cluster_spec_num_jobs(d->cluster) == 0)
    return MC_OK;
  if (mc_cluster_spec_task_address(d->cluster, d->job_name, d->task_index,
                                   NULL) == MC_OK)
    return MC_OK;
  /* The lookup said NOT_FOUND; for the caller the bytes are the bad
   * argument. Copy the message out of the buffer mc__error_set writes. */
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", mc_error_last()->message);
  return mc__error_set(MC_INVALID_ARGUMENT, "ServerDef job_name/task_index: %s",
                       msg);
}

mc_code mc_server_def_parse(mc_server_def **out, const void *data, size_t len) {
  if (out == NULL || (data == NULL && len > 0))
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_server_def_parse: NULL argument");
  Tensorflow__ServerDef *msg =
      MC_PB_UNPACK(tensorflow__server_def, Tensorflow__ServerDef, len, data);
  if (msg == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "undecodable ServerDef (%zu bytes): not a valid "
                         "tensorflow.ServerDef encoding",
                         len);
  mc_code rc = MC_OK;
  mc_server_def *d = calloc(1, sizeof *d);
  if (d == NULL) {
    rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory (ServerDef)");
    goto done;
  }
  if (msg->cluster != NULL) {
    if ((rc = mc__cluster_spec_from_proto(&d->cluster, msg->cluster)) !=
        MC_OK) {
      mc__error_prefix("ServerDef.cluster: ");
      goto done;
    }
  } else if ((rc = mc_cluster_spec_new(&d->cluster)) != MC_OK) {
    goto done;
  }
  d->job_name = strdup(msg->job_name != NULL ? msg->job_name : "");
  d->protocol = strdup(msg->protocol != NULL ? msg->protocol : "");
  d->task_index = msg->task_index;
  d->port = msg->port;
  if (d->job_name == NULL || d->protocol == NULL) {
    rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory (ServerDef)");
    goto done;
  }
  if (msg->default_session_config != NULL) {
    const ProtobufCMessage *cfg = &msg->default_session_config->base;
    size_t n = protobuf_c_message_get_packed_size(cfg);
    d->default_session_config = malloc(n + 1);
    if (d->default_session_config == NULL) {
      rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory (ServerDef)");
      goto done;
    }
    d->default_session_config_len =
        protobuf_c_message_pack(cfg, d->default_session_config);
  }
  rc = check_server_def(d);
done:
  tensorflow__server_def__free_unpacked(msg, NULL);
  if (rc != MC_OK) {
    mc_server_def_free(d);
    return rc;
  }
  *out = d;
  return MC_OK;
}

mc_code mc_server_def_serialize(const mc_server_def *def, uint8_t **data,
                                size_t *len) {
  if (def == NULL || data == NULL || len == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_server_def_serialize: NULL argument");
  Tensorflow__ServerDef msg;
  Tensorflow__ClusterDef cluster;
  Tensorflow__ConfigProto *config = NULL;
  tensorflow__server_def__init(&msg);
  tensorflow__cluster_def__init(&cluster);
  if (def->default_session_config != NULL) {
    config = MC_PB_UNPACK(tensorflow__config_proto, Tensorflow__ConfigProto,
                          def->default_session_config_len,
                          def->default_session_config);
    if (config == NULL)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "ServerDef: default_session_config (%zu bytes) is "
                           "not a valid tensorflow.ConfigProto encoding",
                           def->default_session_config_len);
    msg.default_session_config = config;
  }
  mc_code rc = MC_OK;
  if (def->cluster != NULL) {
    if ((rc = mc__cluster_spec_to_proto(def->cluster, &cluster)) != MC_OK)
      goto done;
    msg.cluster = &cluster;
  }
  msg.job_name = (char *)(def->job_name != NULL ? def->job_name : "");
  msg.protocol = (char *)(def->protocol != NULL ? def->protocol : "");
  msg.task_index = def->task_index;
  msg.port = def->port;
  size_t n = tensorflow__server_def__get_packed_size(&msg);
  uint8_t *buf = malloc(n + 1);
  if (buf == NULL) {
    rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory (ServerDef)");
    goto done;
  }
  *len = tensorflow__server_def__pack(&msg, buf);
  *data = buf;
done:
  mc__cluster_def_proto_clear(&cluster);
  if (config != NULL)
    tensorflow__config_proto__free_unpacked(config, NULL);
  return rc;
}
