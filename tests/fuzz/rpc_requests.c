/* Fuzz target: the request path of every RPC handler of every service.
 *
 * Input: byte 0 chooses the method (index into the table below, modulo its
 * size); the rest is the serialized request. The runtime decodes a request
 * with mc__pb_unpack before any handler runs (an undecodable
 * request is answered INVALID_ARGUMENT without reaching the handler), so the
 * target decodes it the same way here: that exercises the decoder on every
 * input, and every input that decodes is sent through a real loopback
 * server to its handler. The runtime has no in-process dispatch, so the
 * servers (one task of a local cluster: Health, WorkerService and
 * MasterService; a data-service dispatcher and worker) start once per
 * process and serve every input.
 *
 * Properties checked: every call returns a canonical code within its
 * deadline; a failed call carries a non-empty message; every server still
 * answers a health check / GetVersion afterwards (a handler that crashes or
 * wedges the server fails the target). */
#include "fuzz.h"

#include "core/pb.h"
#include "rpc/rpc.h"

#include "data_dispatcher.pb-c.h"
#include "data_worker.pb-c.h"
#include "health.pb-c.h"
#include "master.pb-c.h"
#include "worker.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { TASK, DISPATCHER, DATA_WORKER };

typedef struct method {
  const char *path;
  const ProtobufCMessageDescriptor *req;
  const ProtobufCMessageDescriptor *resp;
  int server;
} method;

#define TF(svc, name, req, resp)                                               \
  {                                                                            \
    "/tensorflow." svc "/" name, &tensorflow__##req##__descriptor,             \
        &tensorflow__##resp##__descriptor, TASK                                \
  }
#define DATA(svc, name, req, resp, server)                                     \
  {                                                                            \
    "/tensorflow.data." svc "/" name, &tensorflow__data__##req##__descriptor,  \
        &tensorflow__data__##resp##__descriptor, server                        \
  }

/* The order is the corpus format: append new methods at the end only. */
static const method methods[] = {
    {"/grpc.health.v1.Health/Check",
     &grpc__health__v1__health_check_request__descriptor,
     &grpc__health__v1__health_check_response__descriptor, TASK},
    TF("WorkerService", "GetStatus", get_status_request, get_status_response),
    TF("WorkerService", "CreateWorkerSession", create_worker_session_request,
       create_worker_session_response),
    TF("WorkerService", "DeleteWorkerSession", delete_worker_session_request,
       delete_worker_session_response),
    TF("WorkerService", "RegisterGraph", register_graph_request,
       register_graph_response),
    TF("WorkerService", "DeregisterGraph", deregister_graph_request,
       deregister_graph_response),
    TF("WorkerService", "RunGraph", run_graph_request, run_graph_response),
    TF("WorkerService", "CleanupGraph", cleanup_graph_request,
       cleanup_graph_response),
    TF("WorkerService", "CleanupAll", cleanup_all_request,
       cleanup_all_response),
    TF("WorkerService", "RecvTensor", recv_tensor_request,
       recv_tensor_response),
    TF("MasterService", "CreateSession", create_session_request,
       create_session_response),
    TF("MasterService", "ExtendSession", extend_session_request,
       extend_session_response),
    TF("MasterService", "RunStep", run_step_request, run_step_response),
    TF("MasterService", "CloseSession", close_session_request,
       close_session_response),
    TF("MasterService", "ListDevices", list_devices_request,
       list_devices_response),
    TF("MasterService", "Reset", reset_request, reset_response),
    DATA("DispatcherService", "WorkerHeartbeat", worker_heartbeat_request,
         worker_heartbeat_response, DISPATCHER),
    DATA("DispatcherService", "WorkerUpdate", worker_update_request,
         worker_update_response, DISPATCHER),
    DATA("DispatcherService", "GetSplit", get_split_request, get_split_response,
         DISPATCHER),
    DATA("DispatcherService", "GetDatasetDef", get_dataset_def_request,
         get_dataset_def_response, DISPATCHER),
    DATA("DispatcherService", "GetVersion", get_version_request,
         get_version_response, DISPATCHER),
    DATA("DispatcherService", "GetOrRegisterDataset",
         get_or_register_dataset_request, get_or_register_dataset_response,
         DISPATCHER),
    DATA("DispatcherService", "GetOrCreateJob", get_or_create_job_request,
         get_or_create_job_response, DISPATCHER),
    DATA("DispatcherService", "GetOrCreateIteration",
         get_or_create_iteration_request, get_or_create_iteration_response,
         DISPATCHER),
    DATA("DispatcherService", "ClientHeartbeat", client_heartbeat_request,
         client_heartbeat_response, DISPATCHER),
    DATA("DispatcherService", "ReleaseIterationClient",
         release_iteration_client_request, release_iteration_client_response,
         DISPATCHER),
    DATA("DispatcherService", "GetWorkers", get_workers_request,
         get_workers_response, DISPATCHER),
    DATA("WorkerService", "ProcessTask", process_task_request,
         process_task_response, DATA_WORKER),
    DATA("WorkerService", "GetElement", get_element_request,
         get_element_response, DATA_WORKER),
    DATA("WorkerService", "GetWorkerTasks", get_worker_tasks_request,
         get_worker_tasks_response, DATA_WORKER),
};
#define NUM_METHODS (sizeof methods / sizeof methods[0])

/* A handler may wait (RecvTensor for a tensor nobody sends, GetElement for
 * an element that never comes): the deadline bounds each call. */
#define CALL_TIMEOUT_MS 300

static mc_cluster *cluster;
static mc_dispatch_server *dispatcher;
static mc_worker_server *data_worker;
static mc_rpc_channel *chans[3];

static void start_servers(void) {
  MC_FUZZ_CHECK(mc_create_local_cluster(1, 0, NULL, NULL, NULL, &cluster) ==
                MC_OK);
  mc_dispatch_config dc = MC_DISPATCH_CONFIG_INIT;
  MC_FUZZ_CHECK(mc_dispatch_server_new(&dispatcher, &dc, 1) == MC_OK);
  mc_worker_config wc = MC_WORKER_CONFIG_INIT;
  wc.dispatcher_address = mc_dispatch_server_target(dispatcher);
  MC_FUZZ_CHECK(mc_worker_server_new(&data_worker, &wc, 1) == MC_OK);
  MC_FUZZ_CHECK(mc__rpc_channel_get(cluster->workers[0].target, &chans[TASK]) ==
                MC_OK);
  MC_FUZZ_CHECK(mc__rpc_channel_get(mc_dispatch_server_target(dispatcher),
                                    &chans[DISPATCHER]) == MC_OK);
  MC_FUZZ_CHECK(mc__rpc_channel_get(mc_worker_server_address(data_worker),
                                    &chans[DATA_WORKER]) == MC_OK);
}

/* Frees everything at exit, so leak checkers see only real leaks. */
static void stop_servers(void) {
  for (int i = 0; i < 3; i++)
    mc__rpc_channel_release(chans[i]);
  mc_worker_server_free(data_worker);
  mc_dispatch_server_free(dispatcher);
  mc_cluster_free(cluster);
}

/* One call of a request that always succeeds on a live server. */
static mc_code call_alive(int server) {
  ProtobufCMessage *resp = NULL;
  mc_code rc;
  if (server == TASK) {
    Grpc__Health__V1__HealthCheckRequest req =
        GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    rc = mc__rpc_unary(chans[TASK], methods[0].path, &req.base, methods[0].resp,
                       10000, &resp);
  } else {
    /* Every data-service server answers an unknown task list / version. */
    const method *m = &methods[server == DISPATCHER ? 20 : 29];
    Tensorflow__Data__GetVersionRequest v =
        TENSORFLOW__DATA__GET_VERSION_REQUEST__INIT;
    Tensorflow__Data__GetWorkerTasksRequest t =
        TENSORFLOW__DATA__GET_WORKER_TASKS_REQUEST__INIT;
    rc = mc__rpc_unary(chans[server], m->path,
                       server == DISPATCHER ? &v.base : &t.base, m->resp, 10000,
                       &resp);
  }
  protobuf_c_message_free_unpacked(resp, NULL);
  return rc;
}

/* Calls are fail-fast, so one failed connection attempt fails a call with
 * UNAVAILABLE although the server is up: CI once saw "failed to connect to
 * all addresses ... 127.0.0.1:41197: No such file or directory" on the
 * first check, 20 ms into the run (never reproduced here in 600 runs). A
 * live server answers within a few reconnects (100 ms backoff); a dead or
 * wedged one fails every attempt, for at most ALIVE_ATTEMPTS x 10 s. */
#define ALIVE_ATTEMPTS 20
static void check_alive(int server) {
  mc_code rc = MC_UNAVAILABLE;
  for (int i = 0; i < ALIVE_ATTEMPTS && rc == MC_UNAVAILABLE; i++) {
    if (i > 0) {
      fprintf(stderr, "rpc_requests: server %d: attempt %d: %s\n", server, i,
              mc_error_last()->message);
      struct timespec ts = {0, 50 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
    rc = call_alive(server);
  }
  MC_FUZZ_CHECK(rc == MC_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  if (cluster == NULL) {
    start_servers();
    atexit(stop_servers);
  }
  const method *m = &methods[data[0] % NUM_METHODS];
  ProtobufCMessage *req = mc__pb_unpack(m->req, size - 1, data + 1);
  if (req == NULL)
    return 0; /* the runtime answers INVALID_ARGUMENT before any handler */
  ProtobufCMessage *resp = NULL;
  mc_code rc = mc__rpc_unary(chans[m->server], m->path, req, m->resp,
                             CALL_TIMEOUT_MS, &resp);
  protobuf_c_message_free_unpacked(req, NULL);
  MC_FUZZ_CHECK(rc >= MC_OK && rc <= MC_UNAUTHENTICATED);
  if (rc == MC_OK)
    MC_FUZZ_CHECK(resp != NULL);
  else
    MC_FUZZ_CHECK(resp == NULL && mc_error_last()->message[0] != '\0');
  protobuf_c_message_free_unpacked(resp, NULL);
  check_alive(m->server);
  return 0;
}
