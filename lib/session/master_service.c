/* master_service.c: TensorFlow's MasterService on every task, at
 * TensorFlow's method paths: RPC table + handlers over master.c. */
#include <stdlib.h>

#include "core/status.h"
#include "server/task.h"
#include "session/master.h"

static void reply_status(mc_rpc_call *call, const ProtobufCMessage *resp,
                         mc_code rc) {
  mc__rpc_call_reply(call, resp, rc,
                     rc == MC_OK ? NULL : mc_error_last()->message);
}

static void create_session(mc_rpc_call *call, const ProtobufCMessage *request,
                           void *arg) {
  Tensorflow__CreateSessionResponse resp =
      TENSORFLOW__CREATE_SESSION_RESPONSE__INIT;
  mc_code rc = mc__master_create_session(
      arg, (const Tensorflow__CreateSessionRequest *)request, &resp);
  reply_status(call, &resp.base, rc);
  if (rc == MC_OK)
    free(resp.session_handle);
}

static void extend_session(mc_rpc_call *call, const ProtobufCMessage *request,
                           void *arg) {
  Tensorflow__ExtendSessionResponse resp =
      TENSORFLOW__EXTEND_SESSION_RESPONSE__INIT;
  mc_code rc = mc__master_extend_session(
      arg, (const Tensorflow__ExtendSessionRequest *)request, &resp);
  reply_status(call, &resp.base, rc);
}

/* RunStep replies: an error goes into the body when the client asked. */
static void step_reply(void *arg, const Tensorflow__RunStepRequest *req,
                       mc_code rc, const char *message,
                       Tensorflow__RunStepResponse *resp,
                       mc__step_result *keep) {
  if (rc != MC_OK && req->store_errors_in_response_body) {
    resp->status_code = (Tensorflow__Error__Code)rc;
    resp->status_error_message = (char *)message;
    rc = MC_OK;
  }
  mc__rpc_call_reply(arg, &resp->base, rc, rc == MC_OK ? NULL : message);
  mc__master_run_step_release(resp, keep);
}

typedef struct blocking_step {
  mc_rpc_call *call;
  const Tensorflow__RunStepRequest *req; /* valid until the reply */
  mc__master *m;
} blocking_step;

static void run_step_blocking(void *arg) {
  blocking_step *bs = arg;
  /* The step's calls to other tasks are attributed to this task. */
  mc__rpc_set_caller(mc__rpc_server_name(mc__rpc_call_server(bs->call)));
  Tensorflow__RunStepResponse resp = TENSORFLOW__RUN_STEP_RESPONSE__INIT;
  mc__step_result *keep;
  mc_code rc = mc__master_run_step(
      bs->m, bs->req, mc__rpc_call_remaining_ms(bs->call), &resp, &keep);
  step_reply(bs->call, bs->req, rc,
             rc == MC_OK ? NULL : mc_error_last()->message, &resp, keep);
  free(bs);
}

/* RunStep: on the completion-queue thread when the step can run without
 * blocking (a registered plan whose partition on this task, if any, never
 * waits: the reply then goes out from the thread that completes the last
 * RunGraph, saving two thread hand-offs per step); otherwise on the
 * blocking pool. */
static void run_step(mc_rpc_call *call, const ProtobufCMessage *request,
                     void *arg) {
  const Tensorflow__RunStepRequest *req =
      (const Tensorflow__RunStepRequest *)request;
  if (mc__master_run_step_async(arg, req, mc__rpc_call_remaining_ms(call),
                                step_reply, call))
    return;
  blocking_step *bs = malloc(sizeof(*bs));
  if (bs == NULL) {
    mc__rpc_call_reply(call, NULL, MC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  bs->call = call;
  bs->req = req;
  bs->m = arg;
  if (mc__rpc_run_blocking(run_step_blocking, bs) != MC_OK) {
    free(bs);
    reply_status(call, NULL, mc_error_last()->code);
  }
}

static void close_session(mc_rpc_call *call, const ProtobufCMessage *request,
                          void *arg) {
  const Tensorflow__CloseSessionRequest *req =
      (const Tensorflow__CloseSessionRequest *)request;
  Tensorflow__CloseSessionResponse resp =
      TENSORFLOW__CLOSE_SESSION_RESPONSE__INIT;
  reply_status(call, &resp.base,
               mc__master_close_session(arg, req->session_handle));
}

static void list_devices(mc_rpc_call *call, const ProtobufCMessage *request,
                         void *arg) {
  (void)request;
  Tensorflow__ListDevicesResponse resp =
      TENSORFLOW__LIST_DEVICES_RESPONSE__INIT;
  mc_code rc = mc__master_list_devices(arg, &resp);
  reply_status(call, &resp.base, rc);
  mc__master_list_devices_release(&resp);
}

static void reset(mc_rpc_call *call, const ProtobufCMessage *request,
                  void *arg) {
  Tensorflow__ResetResponse resp = TENSORFLOW__RESET_RESPONSE__INIT;
  reply_status(call, &resp.base,
               mc__master_reset(arg, (const Tensorflow__ResetRequest *)request,
                                mc__rpc_call_remaining_ms(call)));
}

#define METHOD(name, req, resp, fn, blocking)                                  \
  {                                                                            \
    "/tensorflow.MasterService/" name, &tensorflow__##req##__descriptor,       \
        &tensorflow__##resp##__descriptor, fn, blocking                        \
  }

static const mc_rpc_method methods[] = {
    METHOD("CreateSession", create_session_request, create_session_response,
           create_session, 0),
    METHOD("ExtendSession", extend_session_request, extend_session_response,
           extend_session, 0),
    METHOD("RunStep", run_step_request, run_step_response, run_step, 0),
    METHOD("CloseSession", close_session_request, close_session_response,
           close_session, 1),
    METHOD("ListDevices", list_devices_request, list_devices_response,
           list_devices, 0),
    METHOD("Reset", reset_request, reset_response, reset, 1),
};

static mc_code attach(mc_task *task, void **state) {
  mc__master *m;
  mc_code rc = mc__master_new(&m, task);
  if (rc != MC_OK)
    return rc;
  mc_rpc_service svc = {"tensorflow.MasterService", methods,
                        sizeof methods / sizeof methods[0], m};
  rc = mc__rpc_server_add_service(task->rpc, &svc);
  if (rc != MC_OK) {
    mc__master_free(m);
    return rc;
  }
  *state = m;
  return MC_OK;
}

static void detach(mc_task *task, void *state) {
  (void)task;
  mc__master_free(state);
}

const mc_task_service mc__master_task_service = {"master service", attach,
                                                 detach};
