/*
 * ports.h: free TCP/UDP ports for tests, and the port server.
 *
 * The picker follows Google's portpicker: it asks a port server first when
 * PORTSERVER_ADDRESS is set, otherwise it binds TCP port 0 and checks that
 * the port the kernel chose is also free on UDP (IPv6 and IPv4 where the
 * host has them), falling back to random ports outside the kernel's
 * ephemeral range. Unlike portpicker it never falls back silently: when the
 * server refuses or cannot be reached the call fails unless the caller set
 * mc_pick_options.server_fallback.
 *
 * The port server (`minicluster portserver`, or mc_portserver_* in-process)
 * speaks portpicker's protocol byte for byte: the client sends "<pid>\n" on a
 * Unix stream socket and reads "<port>\n", or an empty reply when refused.
 * Extensions: "+<pid>\n" keeps the connection open for more requests
 * (portpicker's server reads it as "<pid>\n" and closes as usual; ours
 * answers a refusal there with "0\n"); "stats\n" (a JSON reply) and
 * "return <port>\n" ("ok\n" when taken back), which portpicker's server
 * ignores. mc_pick_unused_port keeps one such connection per process.
 *
 * Binding port 0 in your own process is still race-free and cheaper; pick a
 * port only when another process must bind it. See docs/ports.md for what
 * stays racy and why.
 */
#ifndef MINICLUSTER_PORTS_H
#define MINICLUSTER_PORTS_H

#include "common.h"
#include "status.h"

MC_BEGIN_DECLS

/* Where a picked port came from. */
typedef enum mc_port_source {
  MC_PORT_FROM_RESERVED = 0, /* a port added with mc_add_reserved_port() */
  MC_PORT_FROM_SERVER = 1,   /* the port server */
  MC_PORT_FROM_KERNEL = 2,   /* bind(port 0) */
  MC_PORT_FROM_RANDOM = 3    /* a random port outside the ephemeral range */
} mc_port_source;

#define MC_PICK_OPTIONS_VERSION 1

typedef struct mc_pick_options {
  int version; /* MC_PICK_OPTIONS_VERSION */
  /* The port server: "@name" for a Linux abstract socket, otherwise a
   * filesystem path. NULL (the default) reads PORTSERVER_ADDRESS; "" means
   * no server. Borrowed for the duration of the call. */
  const char *portserver_address;
  /* 0 (the default): a refusing or unreachable server fails the call.
   * 1: do what portpicker does and pick locally instead; mc_pick_info says
   * that it happened and why. */
  int server_fallback;
  /* The pid the server reserves the port for; 0 means the calling process.
   * Like portpicker's pid argument (a shell script passes $BASHPID). */
  int pid;
  /* Limit on each exchange with the server, connect to reply, in
   * milliseconds; 0 means 5000. portpicker has none and hangs on a hung
   * server. */
  int timeout_ms;
} mc_pick_options;

#define MC_PICK_OPTIONS_INIT                                                   \
  { MC_PICK_OPTIONS_VERSION, NULL, 0, 0, 0 }

typedef struct mc_pick_info {
  mc_port_source source;
  /* MC_OK, or the error of the server exchange that server_fallback
   * skipped (the fallback happened). */
  mc_code server_code;
  char server_message[256]; /* that error's message, "" when none */
} mc_pick_info;

/* Picks a port that is free on TCP and UDP, with default options (see
 * mc_pick_options): the server named by PORTSERVER_ADDRESS if set, without
 * fallback. The same port is never returned twice by one process until it is
 * given back with mc_return_port(). Thread-safe.
 * Returns MC_OK; MC_RESOURCE_EXHAUSTED when no free port was found or the
 * server refused; MC_UNAVAILABLE naming the address when the server cannot be
 * reached; MC_DEADLINE_EXCEEDED when it does not answer in time;
 * MC_INVALID_ARGUMENT for a malformed PORTSERVER_ADDRESS. */
MC_EXTERN mc_code mc_pick_unused_port(int *port /* OUT */);

/* mc_pick_unused_port with explicit options. opts may be NULL (defaults);
 * info may be NULL. Same codes; with server_fallback set, server errors lead
 * to local picking and are reported in info instead. A malformed address is
 * an error either way. */
MC_EXTERN mc_code mc_pick_unused_port_ex(int *port /* OUT */,
                                         const mc_pick_options *opts,
                                         mc_pick_info *info /* OUT */);

/* Gives a picked port back. A port from the server goes back to that server
 * ("return <port>\n"; portpicker keeps it reserved until the process
 * exits); if the server declines (portpicker's own server ignores returns)
 * it is kept for reuse by this process's next pick, as portpicker does.
 * Thread-safe; blocks for at most 5 s on the server.
 * Returns MC_OK; MC_NOT_FOUND naming the port when this process does not
 * hold it (never picked, or already returned); MC_UNAVAILABLE or
 * MC_DEADLINE_EXCEEDED naming the server when it cannot be reached, in which
 * case the port is kept for reuse by this process. */
MC_EXTERN mc_code mc_return_port(int port);

/* Adds a port obtained by other means (portpicker's add_reserved_port): the
 * next picks hand it out before asking a server or the kernel. Thread-safe.
 * Returns MC_OK, MC_INVALID_ARGUMENT for a port outside 1..65535 or
 * MC_ALREADY_EXISTS when the port is already known to the picker. */
MC_EXTERN mc_code mc_add_reserved_port(int port);

/* Checks that port is bindable on TCP and UDP (every address family the host
 * has), without SO_REUSEADDR, so that a port in TIME_WAIT or bound by a
 * socket that is not listening yet counts as busy (portpicker counts both as
 * free). *is_free is set to 1 or 0. Thread-safe.
 * Returns MC_OK or MC_INVALID_ARGUMENT for a port outside 1..65535. */
MC_EXTERN mc_code mc_port_is_free(int port, int *is_free /* OUT */);

/* ---- the port server ----
 *
 * Lifecycle: mc_portserver_new -> mc_portserver_start (serves on a thread of
 * its own) -> mc_portserver_stop -> mc_portserver_free. A port goes to one
 * live process at a time: before a port is handed out the server binds it on
 * TCP and UDP (no SO_REUSEADDR) and checks that nothing accepts on
 * 127.0.0.1; it comes back when its owner exits (pidfd, and pid + start time
 * from /proc, so pid reuse is seen), on "return <port>\n" from the owner or
 * the process that asked for it, or never. Requests for pid <= 1 or a dead
 * pid are refused. The requesting process is known from SO_PEERCRED;
 * reservations on behalf of another pid show in the statistics. */

typedef struct mc_portserver mc_portserver;

#define MC_PORTSERVER_OPTIONS_VERSION 1

typedef struct mc_portserver_options {
  int version; /* MC_PORTSERVER_OPTIONS_VERSION */
  /* "@name" (abstract) or a filesystem path; NULL means portpicker's default
   * "@unittest-portserver". Copied. */
  const char *address;
  /* Comma-separated LOW-HIGH ranges (inclusive), portpicker's
   * --portserver_static_pool; NULL means "15000-24999". Copied. */
  const char *static_pool;
  /* A connection that has not sent a full request after this many
   * milliseconds is closed; 0 means 2000. */
  int conn_timeout_ms;
} mc_portserver_options;

#define MC_PORTSERVER_OPTIONS_INIT                                             \
  { MC_PORTSERVER_OPTIONS_VERSION, NULL, NULL, 0 }

/* Creates a stopped server. *out is owned by the caller (mc_portserver_free).
 * Returns MC_OK, or MC_INVALID_ARGUMENT naming a malformed address, pool
 * range or timeout. */
MC_EXTERN mc_code mc_portserver_new(mc_portserver **out /* OUT */,
                                    const mc_portserver_options *opts);

/* Binds the address and serves on a thread of its own. A filesystem socket is
 * created with mode 0600; a stale socket file left by a dead server is
 * replaced. Returns MC_OK; MC_ALREADY_EXISTS when a live server answers on the
 * address; MC_FAILED_PRECONDITION when the path exists and is not a socket;
 * MC_UNAVAILABLE/MC_PERMISSION_DENIED for other bind errors, with strerror.
 * Not thread-safe with stop/free on the same server. */
MC_EXTERN mc_code mc_portserver_start(mc_portserver *ps);

/* Stops serving, closes every connection and removes the socket file (if it
 * is still the one this server created). Blocking and idempotent. The
 * reservations end with the server. */
MC_EXTERN void mc_portserver_stop(mc_portserver *ps);

/* Stops ps if needed and frees it. NULL is a no-op. */
MC_EXTERN void mc_portserver_free(mc_portserver *ps);

/* The address the server listens on. Borrowed from ps. */
MC_EXTERN const char *mc_portserver_address(const mc_portserver *ps);

/* The statistics as a JSON object (pool size, free ports, ports in use by
 * pid, allocations, denials, reclaims, request errors, ...). With text set,
 * portpicker-style "name value" lines instead. *out is malloc'ed and owned by
 * the caller (free()). Thread-safe with the serving thread.
 * Returns MC_OK or MC_RESOURCE_EXHAUSTED when out of memory. */
MC_EXTERN mc_code mc_portserver_stats(mc_portserver *ps, int text,
                                      char **out /* OUT */);

MC_END_DECLS

#endif /* MINICLUSTER_PORTS_H */
