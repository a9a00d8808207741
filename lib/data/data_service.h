/* Internal hooks of the data service servers, for tests. */
#ifndef MC_DATA_DATA_SERVICE_H
#define MC_DATA_DATA_SERVICE_H

#include <minicluster/data_service.h>

/* How long the dispatcher's stop lets in-flight calls finish before it
 * cancels them; 0 makes mc_dispatch_server_stop a kill (calls in flight,
 * such as a GetSplit whose split is already journaled, fail UNAVAILABLE). */
void mc__dispatch_server_set_grace_ms(mc_dispatch_server *d, int grace_ms);

/* What a worker holds for its tasks: producer threads not joined yet and
 * bytes of queued elements (deleted tasks included). For tests;
 * thread-safe (takes the worker's lock). */
void mc__worker_server_held(mc_worker_server *w, size_t *threads,
                            size_t *queued_bytes);

#endif
