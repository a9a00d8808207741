/* The master side of sessions on one task: master sessions (graph,
 * version, registered partitions per step signature) and the running of
 * steps across the cluster. lib/session/master_service.c exposes it as
 * TensorFlow's MasterService. Thread-safe. */
#ifndef MC_SESSION_MASTER_H
#define MC_SESSION_MASTER_H

#include "master.pb-c.h"
#include "server/task.h"

typedef struct mc__master mc__master;

mc_code mc__master_new(mc__master **out, mc_task *task);
/* Closes every session (deregistering graphs, bounded) and frees. */
void mc__master_free(mc__master *m);

/* resp->session_handle is malloc'ed (free it after replying). */
mc_code mc__master_create_session(mc__master *m,
                                  const Tensorflow__CreateSessionRequest *req,
                                  Tensorflow__CreateSessionResponse *resp);
mc_code mc__master_extend_session(mc__master *m,
                                  const Tensorflow__ExtendSessionRequest *req,
                                  Tensorflow__ExtendSessionResponse *resp);
mc_code mc__master_close_session(mc__master *m, const char *handle);

/* Runs one step; call_timeout_ms is what the client's deadline leaves.
 * resp borrows from req and from *keep, which the caller releases with
 * mc__master_run_step_release after replying. Blocks until the step is
 * done (call it from the blocking pool). */
typedef struct mc__step_result mc__step_result;
mc_code mc__master_run_step(mc__master *m,
                            const Tensorflow__RunStepRequest *req,
                            int64_t call_timeout_ms,
                            Tensorflow__RunStepResponse *resp,
                            mc__step_result **keep);
void mc__master_run_step_release(Tensorflow__RunStepResponse *resp,
                                 mc__step_result *keep);

/* The end of an async step, run exactly once on the thread that completed
 * it (a completion-queue thread, or the caller of _run_step_async): it must
 * not block. rc and message (borrowed) as mc__master_run_step returns
 * them; on MC_OK resp borrows from req and keep, and the callee releases
 * both with mc__master_run_step_release after replying; otherwise keep is
 * NULL and resp empty. */
typedef void (*mc__step_done)(void *arg, const Tensorflow__RunStepRequest *req,
                              mc_code rc, const char *message,
                              Tensorflow__RunStepResponse *resp,
                              mc__step_result *keep);

/* Starts the step without blocking if it can: its plan is registered
 * already and this task's own partition, if any, never waits (the RunGraph
 * calls to other tasks are async). Returns 1 when it took the step (done
 * runs exactly once, possibly before this returns), 0 when the caller must
 * run it with mc__master_run_step on a thread that may block (first step
 * of a signature, compute or a _Recv on this task, unknown session: the
 * blocking form reports the error). req must stay valid until done. Never
 * blocks: callable from a non-blocking handler. */
int mc__master_run_step_async(mc__master *m,
                              const Tensorflow__RunStepRequest *req,
                              int64_t call_timeout_ms, mc__step_done done,
                              void *arg);

/* Fills resp (malloc'ed arrays; release with
 * mc__master_list_devices_release). */
mc_code mc__master_list_devices(mc__master *m,
                                Tensorflow__ListDevicesResponse *resp);
void mc__master_list_devices_release(Tensorflow__ListDevicesResponse *resp);

/* Clears containers on every task and closes this master's sessions. */
mc_code mc__master_reset(mc__master *m, const Tensorflow__ResetRequest *req,
                         int64_t call_timeout_ms);

#endif
