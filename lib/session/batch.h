/* Parallel unary RPCs with one join (internal to the master): start n
 * async calls, then wait for all of them, or let the last completion run a
 * callback. Outcomes are kept per call. */
#ifndef MC_SESSION_BATCH_H
#define MC_SESSION_BATCH_H

#include <pthread.h>

#include "rpc/rpc.h"

typedef struct mc__batch mc__batch;
typedef void (*mc__batch_fn)(mc__batch *b);

struct mc__batch {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t n;
  int pending;
  ProtobufCMessage **resp;
  mc_code *codes;
  char **msgs;
  int errored;
  /* Runs once, for the first failed call, before its pending count drops
   * (so ctx is still valid). */
  mc__batch_fn on_error;
  /* Set for an async batch: runs once, on the thread that completes the
   * last call, instead of waking a waiter. The starter holds one pending
   * count until every call is started, so it cannot run early. */
  mc__batch_fn on_complete;
  void *ctx; /* for on_error and on_complete */
};

/* A batch of n calls; NULL when out of memory. Free with mc__batch_free
 * once nothing is pending (frees the responses too). NULL is a no-op. */
mc__batch *mc__batch_new(size_t n);
void mc__batch_free(mc__batch *b);

/* Starts call i; a call that cannot start completes at once with its
 * error. timeout_ms below 1 is 1. */
void mc__batch_start(mc__batch *b, size_t i, mc_rpc_channel *ch,
                     const char *path, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *resp_type,
                     int64_t timeout_ms);

/* One more pending count: for work the caller completes itself with
 * mc__batch_record (a partition run in-process), or the starter's count
 * of an async batch, dropped with mc__batch_drop after the last start. */
void mc__batch_hold(mc__batch *b);

/* Records the outcome of call i (response owned by the batch) and drops
 * its pending count. on_error runs for the first failure. */
void mc__batch_record(mc__batch *b, size_t i, mc_code code, const char *message,
                      ProtobufCMessage *response);

/* Drops one pending count: wakes the waiter, or runs on_complete when it
 * was the last (b may be freed by either as soon as this returns). */
void mc__batch_drop(mc__batch *b);

/* Waits until nothing is pending. */
void mc__batch_wait(mc__batch *b);

/* An mc_rpc_done that drops the outcome (fire-and-forget calls). */
void mc__batch_ignore_done(void *arg, mc_code code, const char *message,
                           ProtobufCMessage *response);

#endif
