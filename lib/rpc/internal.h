/* internal.h: what the pieces of the gRPC runtime share (runtime.c owns the
 * process-wide state; rpc_server.c and rpc_client.c use it). Nothing outside
 * lib/rpc includes this file. */
#ifndef MC_RPC_INTERNAL_H
#define MC_RPC_INTERNAL_H

#include <grpc/grpc.h>

#include "rpc/rpc.h"

/* Every tag posted to the shared completion queue is one of these; the CQ
 * thread calls cb with the op's success bit. */
typedef struct mc__rpc_op {
  void (*cb)(struct mc__rpc_op *op, int ok);
} mc__rpc_op;

/* A unit of work for the blocking pool or the timer; embedded in its owner
 * so scheduling never allocates. */
typedef struct mc__rpc_task {
  void (*fn)(struct mc__rpc_task *t);
  int64_t when_ns; /* timer only */
  struct mc__rpc_task *next;
} mc__rpc_task;

/* 0 on the runtime's completion-queue and timer threads (non-blocking
 * handlers and async callbacks run there), 1 elsewhere. */
int mc__rpc_may_block(void);

/* Takes a reference on the runtime, initialising gRPC and starting the
 * threads on first use. Errors: MC_INTERNAL (thread creation). */
mc_code mc__rpc_runtime_ref(void);

/* Drops a reference. The last one, from an application thread, shuts the
 * runtime down (joins its threads, grpc_shutdown_blocking). From a runtime
 * thread the shutdown is deferred to the next application-thread unref or
 * to process exit. */
void mc__rpc_runtime_unref(void);

/* The shared completion queue (valid while a reference is held). */
grpc_completion_queue *mc__rpc_cq(void);

/* Runs t->fn(t) on the blocking pool. */
void mc__rpc_pool_submit(mc__rpc_task *t);

/* Runs t->fn(t) on the timer thread at t->when_ns (mc__rpc_now_ns clock). */
void mc__rpc_timer_add(mc__rpc_task *t);

/* Removes a pending timer task; 1 if it was removed (and so will not run),
 * 0 if it already ran or is running. */
int mc__rpc_timer_cancel(mc__rpc_task *t);

/* Starts capturing gRPC's log lines on the calling thread; _end stops and
 * returns the captured text (thread-local buffer, "" if none). */
void mc__rpc_log_capture_begin(void);
const char *mc__rpc_log_capture_end(void);

/* The hooks, read under a lock so that a setter's return is a barrier. */
int mc__rpc_intercept(const mc_rpc_call_info *info, mc_rpc_decision *d);
void mc__rpc_trace(const mc_rpc_trace_event *ev);

/* gRPC status -> mc_code (same numbers; anything else is MC_UNKNOWN). */
mc_code mc__rpc_code(grpc_status_code status);

/* Copies a slice into a NUL-terminated string of at most size - 1 bytes. */
void mc__rpc_slice_copy(char *dst, size_t size, grpc_slice s);

/* A send buffer of the concatenated parts: copied runs are copied now,
 * borrowed runs are referenced and released when gRPC drops the buffer.
 * NULL when out of memory (every borrowed part is released then). */
grpc_byte_buffer *mc__rpc_bytes_buffer(const mc_rpc_bytes *parts, size_t n);

/* Runs the release of every borrowed part. */
void mc__rpc_bytes_release(const mc_rpc_bytes *parts, size_t n);

/* A payload holding references to bb's slices (bb stays the caller's; NULL
 * gives an empty payload). NULL when out of memory or undecompressable. */
mc_rpc_payload *mc__rpc_payload_take(grpc_byte_buffer *bb);

/* gRPC core is not built with ThreadSanitizer, so TSan cannot see that
 * handing a tag to gRPC (start_batch, request_call, shutdown_and_notify)
 * happens before the completion queue returns that tag on another thread,
 * and reports every access to the call context as a race. These two
 * annotations state that edge to TSan: what the handing thread wrote before
 * MC__RPC_HANDOFF(tag) is visible to the thread after MC__RPC_RECEIVED(tag).
 * They compile to nothing without TSan. */
#if defined(__SANITIZE_THREAD__)
#define MC__RPC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MC__RPC_TSAN 1
#endif
#endif
#ifdef MC__RPC_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define MC__RPC_HANDOFF(tag) __tsan_release(tag)
#define MC__RPC_RECEIVED(tag) __tsan_acquire(tag)
#else
#define MC__RPC_HANDOFF(tag) ((void)0)
#define MC__RPC_RECEIVED(tag) ((void)0)
#endif

#endif
