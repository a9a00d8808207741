/*
 * rpc.h: the one gRPC runtime of minicluster (internal API).
 *
 * Every server and client in the project goes through this wrapper over gRPC
 * core's C API; no service file contains gRPC calls. A service is a table of
 * methods (full path -> handler); messages are protobuf-c.
 *
 * Threads: all servers and client calls of the process share one completion
 * queue polled by a fixed pool of MC_RPC_CQ_THREADS threads, so the thread
 * count does not grow with the number of servers. Handlers marked blocking
 * run on a separate pool that grows on demand (a blocking handler may make
 * blocking client calls or wait for another call) and keeps at most a few
 * idle threads.
 *
 * Lifetime: gRPC is initialised when the first server or channel is
 * created and shut down (grpc_shutdown_blocking) when the last one is freed,
 * so a program that frees everything leaves no thread, fd or byte behind.
 *
 * Errors: functions returning mc_code leave a message naming the bad value
 * (<minicluster/status.h>). gRPC status codes and mc_code have the same
 * numbers; a server's code and message reach the client unchanged.
 */
#ifndef MC_RPC_RPC_H
#define MC_RPC_RPC_H

#include <minicluster/status.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Completion-queue threads shared by every server and client call. */
#define MC_RPC_CQ_THREADS 2

typedef struct mc_rpc_server mc_rpc_server;
typedef struct mc_rpc_call mc_rpc_call;
typedef struct mc_rpc_channel mc_rpc_channel;

/* ------------------------------------------------------------------------ */
/* Server side                                                              */
/* ------------------------------------------------------------------------ */

/* Handles one incoming call. request is decoded already (an undecodable
 * request never reaches a handler: the runtime answers INVALID_ARGUMENT) and
 * is borrowed: it lives until the call is replied to. The handler must make
 * sure mc__rpc_call_reply() is called exactly once for the call, now or
 * later, from any thread. */
typedef void (*mc_rpc_handler)(mc_rpc_call *call,
                               const ProtobufCMessage *request,
                               void *service_arg);

typedef struct mc_rpc_method {
  /* Full method path, "/tensorflow.WorkerService/GetStatus". Borrowed: must
   * outlive every server the service is added to (use string literals). */
  const char *path;
  const ProtobufCMessageDescriptor *request_type;
  const ProtobufCMessageDescriptor *response_type;
  mc_rpc_handler handler;
  /* 1: run on the blocking pool (the handler may block: client calls,
   * waits). 0: run inline on a completion-queue thread; the handler must
   * return quickly and never block. */
  int blocking;
} mc_rpc_method;

typedef struct mc_rpc_service {
  const char *name;             /* "tensorflow.WorkerService", for messages */
  const mc_rpc_method *methods; /* borrowed; must outlive the server */
  size_t num_methods;
  void *arg; /* passed to every handler of this service */
} mc_rpc_service;

typedef struct mc_rpc_server_options {
  int version; /* MC_RPC_SERVER_OPTIONS_VERSION */
  /* Host to bind; NULL means "127.0.0.1", or "0.0.0.0" when bind_all is
   * set. Copied. */
  const char *host;
  int port;     /* 0 binds a free port; read it back with _port() */
  int bind_all; /* 1: bind every interface (0.0.0.0) instead of loopback */
  /* The server's identity in logs, traces, faults and the caller metadata
   * of client calls its handlers make: "/job:worker/task:0". NULL means
   * "server". Copied. */
  const char *name;
  /* How long stop waits for in-flight calls before cancelling them.
   * Negative means the default (100 ms). */
  int grace_ms;
} mc_rpc_server_options;

#define MC_RPC_SERVER_OPTIONS_VERSION 1
#define MC_RPC_SERVER_OPTIONS_INIT                                             \
  { MC_RPC_SERVER_OPTIONS_VERSION, NULL, 0, 0, NULL, -1 }

/* Creates a server (not bound yet). opts may be NULL for the defaults. The
 * caller owns *out and frees it with mc__rpc_server_free(). Errors:
 * MC_INVALID_ARGUMENT (bad version, port outside 0..65535), MC_INTERNAL. */
mc_code mc__rpc_server_new(mc_rpc_server **out /* OUT */,
                           const mc_rpc_server_options *opts);

/* Adds a service; only before start. The service struct is copied, its
 * method table is borrowed. Errors: MC_FAILED_PRECONDITION (already
 * started), MC_ALREADY_EXISTS (a path registered twice, named),
 * MC_INVALID_ARGUMENT (a method without path, types or handler). */
mc_code mc__rpc_server_add_service(mc_rpc_server *s, const mc_rpc_service *svc);

/* Binds host:port without serving yet (connections wait in the backlog);
 * after this mc__rpc_server_port() is the bound port. Services can no
 * longer be added. Errors: MC_UNAVAILABLE naming the address when it
 * cannot be bound (port in use: never a silently shared port, SO_REUSEPORT
 * is off); MC_FAILED_PRECONDITION if already bound, started or stopped. A
 * server whose bind failed is stopped. */
mc_code mc__rpc_server_bind(mc_rpc_server *s);

/* Starts serving, binding first if needed (errors as _bind). Errors:
 * MC_FAILED_PRECONDITION when started or stopped before: a server starts
 * once. */
mc_code mc__rpc_server_start(mc_rpc_server *s);

/* 1 if a service of that name ("tensorflow.WorkerService") was added. */
int mc__rpc_server_has_service(const mc_rpc_server *s, const char *name);

/* The bound port (after a successful bind or start), else 0. Thread-safe. */
int mc__rpc_server_port(const mc_rpc_server *s);

/* The name given in the options (borrowed from the server). */
const char *mc__rpc_server_name(const mc_rpc_server *s);

/* Begins a stop without waiting: no new calls are accepted. Lets a caller
 * stop many servers in parallel (stop_begin on all, then stop on each).
 * Idempotent; thread-safe. */
void mc__rpc_server_stop_begin(mc_rpc_server *s);

/* Stops the server and waits: new calls are refused, in-flight calls get
 * grace_ms to finish, then are cancelled; returns once every call context is
 * released and the port is closed. Idempotent and thread-safe; must not be
 * called from a handler of the same server. */
void mc__rpc_server_stop(mc_rpc_server *s);

/* Changes the grace period of a later stop (0: cancel in-flight calls at
 * once, so their clients see UNAVAILABLE: how fault injection kills a
 * task). Thread-safe. */
void mc__rpc_server_set_grace_ms(mc_rpc_server *s, int grace_ms);

/* Stops (if needed) and frees the server. NULL is a no-op. */
void mc__rpc_server_free(mc_rpc_server *s);

/* Runs the calls held by the interceptor (MC_RPC_HOLD) on this server, in
 * arrival order. Thread-safe. */
void mc__rpc_server_resume_held(mc_rpc_server *s);

/* Completes a call: exactly once per call, from any thread, at any time
 * (handlers may keep the call and reply later). response is serialized here
 * and stays owned by the caller; it may be NULL when code != MC_OK (and is
 * ignored then). message (copied; may be NULL) is the status message. After
 * this returns the call and its request must not be used. */
void mc__rpc_call_reply(mc_rpc_call *call, const ProtobufCMessage *response,
                        mc_code code, const char *message);

/* A run of bytes of a message given or received without protobuf-c
 * (mc__rpc_call_reply_bytes, mc__rpc_unary_bytes). */
typedef struct mc_rpc_bytes {
  const void *data;
  size_t len;
  /* NULL: the bytes are copied before the function taking them returns.
   * Otherwise they are borrowed without a copy (a large tensor's data) and
   * release(release_arg) runs exactly once, on any thread, when the runtime
   * no longer needs them; possibly before the function returns, and also
   * when the reply cannot be sent. */
  void (*release)(void *release_arg);
  void *release_arg;
} mc_rpc_bytes;

/* Completes a call with MC_OK and a response already serialized: the wire
 * message is the concatenation of parts[0..nparts), which must be a valid
 * message of the method's response_type (the runtime does not check it).
 * Borrowed parts are sent without copying them, so a large payload is
 * never copied in user space on the way to the socket. Exactly once per
 * call, instead of mc__rpc_call_reply; from any thread. Each borrowed
 * part is released exactly once, even when the call was replied to
 * already (a service bug, reported on stderr as for mc__rpc_call_reply). */
void mc__rpc_call_reply_bytes(mc_rpc_call *call, const mc_rpc_bytes *parts,
                              size_t nparts);

/* The caller's identity from the call's metadata: "/job:worker/task:1", or
 * "client" when the caller did not say. Borrowed from the call. */
const char *mc__rpc_call_caller(const mc_rpc_call *call);

/* The full method path of the call (borrowed from the call). */
const char *mc__rpc_call_method(const mc_rpc_call *call);

/* The server that received the call (borrowed). */
mc_rpc_server *mc__rpc_call_server(const mc_rpc_call *call);

/* Milliseconds left until the client's deadline (INT64_MAX without one,
 * <= 0 when passed). */
int64_t mc__rpc_call_remaining_ms(const mc_rpc_call *call);

/* 1 once the call was cancelled (client deadline or cancel, server stop),
 * else 0. A handler that parks a call should still reply to it. */
int mc__rpc_call_cancelled(const mc_rpc_call *call);

/* Registers fn(arg) to run once if the call is cancelled before it is
 * replied to (on a completion-queue thread: must not block; it may call
 * mc__rpc_call_reply). If the call is already cancelled, fn runs now on the
 * calling thread. Replaces any earlier callback. After a reply, a callback
 * that has not started never runs; one that already started may still be
 * running, so arg must stay valid until the server has stopped (stop waits
 * for every callback to return). */
void mc__rpc_call_on_cancel(mc_rpc_call *call, void (*fn)(void *arg),
                            void *arg);

/* ------------------------------------------------------------------------ */
/* Client side                                                              */
/* ------------------------------------------------------------------------ */

/* A channel to target "host:port" or "grpc://host:port". Channels are cached
 * per target and reference-counted: every successful get needs one
 * mc__rpc_channel_release(). Reconnect backoff is ~100 ms, so a restarted
 * task is reachable again quickly. Errors: MC_INVALID_ARGUMENT naming a
 * malformed target. Thread-safe. */
mc_code mc__rpc_channel_get(const char *target, mc_rpc_channel **out /* OUT */);

/* Drops one reference; the last one closes the channel. NULL is a no-op. */
void mc__rpc_channel_release(mc_rpc_channel *ch);

/* The target as given to mc__rpc_channel_get without "grpc://" (borrowed). */
const char *mc__rpc_channel_target(const mc_rpc_channel *ch);

/* One blocking unary call with a deadline of timeout_ms (must be > 0: every
 * call is bounded). On MC_OK *response is a new message of response_type
 * that the caller frees with protobuf_c_message_free_unpacked(*response,
 * NULL); on failure *response is NULL and the message is the server's (or
 * gRPC's). Codes: whatever the server replied, MC_DEADLINE_EXCEEDED,
 * MC_UNAVAILABLE (no server at the target), MC_INVALID_ARGUMENT (bad
 * arguments), MC_DATA_LOSS (undecodable response), MC_FAILED_PRECONDITION
 * when called from a non-blocking handler or an async callback (it would
 * stall a completion-queue thread). Thread-safe. The call carries the calling
 * thread's caller identity (see mc__rpc_set_caller). */
mc_code mc__rpc_unary(mc_rpc_channel *ch, const char *method_path,
                      const ProtobufCMessage *request,
                      const ProtobufCMessageDescriptor *response_type,
                      int64_t timeout_ms,
                      ProtobufCMessage **response /* OUT */);

/* Completion of an async call, run once on a completion-queue thread (must
 * not block). message is borrowed for the duration of the callback;
 * response (NULL unless code == MC_OK) is owned by the callee, which frees
 * it with protobuf_c_message_free_unpacked(). */
typedef void (*mc_rpc_done)(void *arg, mc_code code, const char *message,
                            ProtobufCMessage *response);

/* Starts a unary call and returns at once. method_path is copied; request
 * is serialized before return. On MC_OK, done runs exactly once later; on
 * any other return (bad arguments), done never runs. The call keeps its own
 * reference to the channel. */
mc_code mc__rpc_unary_async(mc_rpc_channel *ch, const char *method_path,
                            const ProtobufCMessage *request,
                            const ProtobufCMessageDescriptor *response_type,
                            int64_t timeout_ms, mc_rpc_done done, void *arg);

/* A response received undecoded (mc__rpc_unary_bytes): its bytes as the
 * runs gRPC received them in, without flattening them into one buffer. */
typedef struct mc_rpc_payload mc_rpc_payload;

/* Like mc__rpc_unary, but the response is not decoded: on MC_OK *response
 * holds its bytes (an empty response has zero parts), to be freed with
 * mc__rpc_payload_free(). Lets a caller decode large fields straight into
 * their final buffers. Same codes as mc__rpc_unary except that an
 * undecodable response is the caller's to detect. */
mc_code mc__rpc_unary_bytes(mc_rpc_channel *ch, const char *method_path,
                            const ProtobufCMessage *request, int64_t timeout_ms,
                            mc_rpc_payload **response /* OUT */);

/* Completion of mc__rpc_unary_bytes_async, like mc_rpc_done: response
 * (NULL unless code == MC_OK) is owned by the callee, which frees it with
 * mc__rpc_payload_free(). */
typedef void (*mc_rpc_bytes_done)(void *arg, mc_code code, const char *message,
                                  mc_rpc_payload *response);

/* Starts a call like mc__rpc_unary_async whose response arrives undecoded,
 * as for mc__rpc_unary_bytes. */
mc_code mc__rpc_unary_bytes_async(mc_rpc_channel *ch, const char *method_path,
                                  const ProtobufCMessage *request,
                                  int64_t timeout_ms, mc_rpc_bytes_done done,
                                  void *arg);

/* Number of runs of a payload, and run i (0 <= i < num_parts; borrowed
 * from the payload; release is NULL). */
size_t mc__rpc_payload_num_parts(const mc_rpc_payload *p);
mc_rpc_bytes mc__rpc_payload_part(const mc_rpc_payload *p, size_t i);

/* Total bytes of a payload. */
size_t mc__rpc_payload_len(const mc_rpc_payload *p);

/* Frees a payload. NULL is a no-op. */
void mc__rpc_payload_free(mc_rpc_payload *p);

/* Sets the caller identity sent by client calls made on the calling thread
 * ("/job:worker/task:1"); NULL restores the default. The name is copied
 * (up to 127 bytes). While a handler runs, its thread's caller identity is
 * the server's name, so calls made from handlers are attributed to the
 * task without any code in the service. */
void mc__rpc_set_caller(const char *name);

/* The calling thread's current caller identity (borrowed, thread-local). */
const char *mc__rpc_get_caller(void);

/* ------------------------------------------------------------------------ */
/* Blocking work                                                            */
/* ------------------------------------------------------------------------ */

/* Runs fn(arg) once on the blocking pool (the pool of blocking handlers),
 * where it may block and make blocking client calls, and returns at once.
 * This is how a non-blocking handler that finds it has to wait (a RunStep
 * whose plan is not registered yet) or an async callback that has to do
 * blocking cleanup hands the work off without stalling a completion-queue
 * thread; a handler that does so keeps its call and replies from fn. fn
 * runs with the default caller identity ("client"): set it with
 * mc__rpc_set_caller if fn makes calls on a server's behalf (the pool
 * restores the default afterwards). The pending task holds the runtime
 * (gRPC stays initialised until fn has returned). Thread-safe; callable
 * from any thread. Errors: MC_INVALID_ARGUMENT (fn NULL), MC_RESOURCE_-
 * EXHAUSTED; fn does not run then. */
mc_code mc__rpc_run_blocking(void (*fn)(void *arg), void *arg);

/* How many tasks were ever handed to the blocking pool (blocking handlers
 * and mc__rpc_run_blocking), process-wide: lets tests check that a path
 * meant to run without a thread hand-off really does. Thread-safe. */
uint64_t mc__rpc_pool_count(void);

/* How many retired blocking-pool threads are not joined yet: at most one
 * or two at any time (each retiring thread joins the ones before it).
 * For tests. Thread-safe. */
size_t mc__rpc_pool_unjoined(void);

/* ------------------------------------------------------------------------ */
/* Hooks: fault injection and tracing (helper modules fill them in)         */
/* ------------------------------------------------------------------------ */

/* What the runtime knows about an incoming call when it asks the
 * interceptor. All strings are borrowed for the duration of the hook. */
typedef struct mc_rpc_call_info {
  mc_rpc_server *server;
  const char *server_name; /* callee, "/job:ps/task:0" */
  const char *method;      /* "/tensorflow.WorkerService/GetStatus" */
  const char *caller;      /* "/job:worker/task:1" or "client" */
} mc_rpc_call_info;

typedef enum mc_rpc_action {
  MC_RPC_PROCEED = 0, /* run the handler (after delay_ms, if any) */
  MC_RPC_FAIL,        /* reply code/message (after delay_ms, if any) */
  MC_RPC_DROP,        /* never answer: the client hits its deadline */
  MC_RPC_HOLD         /* park until mc__rpc_server_resume_held() */
} mc_rpc_action;

typedef struct mc_rpc_decision {
  mc_rpc_action action;
  int64_t delay_ms; /* > 0: wait this long first (PROCEED, FAIL) */
  mc_code code;     /* FAIL: the code to reply */
  char message[256];
  /* Short label of the injected fault for traces ("delay 50ms"); "" for
   * none. */
  char fault[64];
} mc_rpc_decision;

/* Called once per incoming call, on a completion-queue thread, before the
 * handler; it must not block. *decision arrives zeroed (PROCEED, no delay).
 * Calls that the runtime itself rejects (unknown method, undecodable
 * request) are not intercepted. */
typedef void (*mc_rpc_interceptor)(void *arg, const mc_rpc_call_info *info,
                                   mc_rpc_decision *decision);

/* One completed call, client or server side. Strings are borrowed for the
 * duration of the hook. Times are CLOCK_MONOTONIC nanoseconds. */
typedef struct mc_rpc_trace_event {
  int server_side; /* 1: seen by the server; 0: by the client */
  const char *caller;
  const char *callee; /* server name, or the target on the client side */
  const char *method;
  int64_t start_ns;
  int64_t end_ns;
  mc_code code;
  const char *message; /* "" when OK */
  const char *fault;   /* injected fault label, "" for none */
} mc_rpc_trace_event;

/* Called once per completed call from a runtime thread; must not block. */
typedef void (*mc_rpc_trace_hook)(void *arg, const mc_rpc_trace_event *ev);

/* Install (or, with fn == NULL, remove) the process-wide interceptor and
 * trace hook. Thread-safe; calls already past the hook point are not
 * affected. After a setter returns, the previous hook is no longer called,
 * so its arg may be freed. */
void mc__rpc_set_interceptor(mc_rpc_interceptor fn, void *arg);
void mc__rpc_set_trace_hook(mc_rpc_trace_hook fn, void *arg);

/* Monotonic time in nanoseconds, the clock of trace events. */
int64_t mc__rpc_now_ns(void);

#endif /* MC_RPC_RPC_H */
