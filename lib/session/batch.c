/* Parallel unary RPCs with one join: what the master uses to reach every
 * task of a step (or of a registration, a reset) at once. */
#include "session/batch.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"

typedef struct slot {
  mc__batch *b;
  size_t i;
} slot;

mc__batch *mc__batch_new(size_t n) {
  mc__batch *b = calloc(1, sizeof(*b));
  if (b == NULL)
    return NULL;
  b->n = n;
  b->resp = calloc(n + 1, sizeof(*b->resp));
  b->codes = calloc(n + 1, sizeof(*b->codes));
  b->msgs = calloc(n + 1, sizeof(*b->msgs));
  if (!b->resp || !b->codes || !b->msgs) {
    free(b->resp);
    free(b->codes);
    free(b->msgs);
    free(b);
    return NULL;
  }
  pthread_mutex_init(&b->mu, NULL);
  pthread_cond_init(&b->cv, NULL);
  return b;
}

void mc__batch_free(mc__batch *b) {
  if (b == NULL)
    return;
  for (size_t i = 0; i < b->n; i++) {
    if (b->resp[i])
      protobuf_c_message_free_unpacked(b->resp[i], NULL);
    free(b->msgs[i]);
  }
  free(b->resp);
  free(b->codes);
  free(b->msgs);
  pthread_mutex_destroy(&b->mu);
  pthread_cond_destroy(&b->cv);
  free(b);
}

/* One call of the batch is done: wake the waiter, or run on_complete when
 * it was the last (b may be freed by either as soon as the lock drops). */
void mc__batch_drop(mc__batch *b) {
  pthread_mutex_lock(&b->mu);
  int last = --b->pending == 0;
  mc__batch_fn complete = last ? b->on_complete : NULL;
  pthread_cond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
  if (complete)
    complete(b);
}

/* Records the outcome of call i (response owned by the batch). */
void mc__batch_record(mc__batch *b, size_t i, mc_code code, const char *message,
                      ProtobufCMessage *response) {
  pthread_mutex_lock(&b->mu);
  b->codes[i] = code;
  b->resp[i] = response;
  if (code != MC_OK)
    b->msgs[i] = strdup(message ? message : "");
  int first_error = code != MC_OK && !b->errored;
  if (first_error)
    b->errored = 1;
  pthread_mutex_unlock(&b->mu);
  /* Runs before pending drops, so the waiter cannot free ctx under it. */
  if (first_error && b->on_error)
    b->on_error(b);
  mc__batch_drop(b);
}

static void batch_done(void *arg, mc_code code, const char *message,
                       ProtobufCMessage *response) {
  slot *s = arg;
  mc__batch_record(s->b, s->i, code, message, response);
  free(s);
}

/* Starts call i of the batch; a call that cannot start completes at once
 * with its error. */
void mc__batch_start(mc__batch *b, size_t i, mc_rpc_channel *ch,
                     const char *path, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *resp_type,
                     int64_t timeout_ms) {
  slot *s = malloc(sizeof(*s));
  if (s == NULL) {
    pthread_mutex_lock(&b->mu);
    b->codes[i] = MC_RESOURCE_EXHAUSTED;
    pthread_mutex_unlock(&b->mu);
    return;
  }
  s->b = b;
  s->i = i;
  mc__batch_hold(b);
  if (timeout_ms < 1)
    timeout_ms = 1;
  mc_code rc =
      mc__rpc_unary_async(ch, path, req, resp_type, timeout_ms, batch_done, s);
  if (rc != MC_OK)
    batch_done(s, rc, mc_error_last()->message, NULL);
}

void mc__batch_hold(mc__batch *b) {
  pthread_mutex_lock(&b->mu);
  b->pending++;
  pthread_mutex_unlock(&b->mu);
}

void mc__batch_wait(mc__batch *b) {
  pthread_mutex_lock(&b->mu);
  while (b->pending > 0)
    pthread_cond_wait(&b->cv, &b->mu);
  pthread_mutex_unlock(&b->mu);
}

void mc__batch_ignore_done(void *arg, mc_code code, const char *message,
                           ProtobufCMessage *response) {
  (void)arg;
  (void)code;
  (void)message;
  if (response)
    protobuf_c_message_free_unpacked(response, NULL);
}
