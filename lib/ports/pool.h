/* pool.h: the port server's state and its pool (pool.c), shared with the
 * connection and lifecycle code (portserver.c). Internal. */
#ifndef MC_PORTS_POOL_H
#define MC_PORTS_POOL_H

#include <minicluster/ports.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "ports/portutil.h"

/* Ports held by something other than our clients are moved to the tail;
 * at most this many are examined per request. */
#define MAX_CHECKS 64
#define OWNER_BUCKETS 4096
/* Ports kept checked and held bound ahead of requests (each holds a TCP
 * and a UDP socket, two of each without dual-stack). */
#define READY_MAX 16

typedef struct owner {
  int pid;
  unsigned long long start;
  int pidfd;
  struct event *ev;
  uint16_t *ports;
  size_t n, cap;
  struct owner *next;
  struct mc_portserver *ps;
} owner;

typedef struct slot {
  uint8_t in_pool;
  uint8_t held;
  uint32_t idx; /* position in owner->ports */
  owner *own;
  int requester; /* the peer pid that asked for it */
} slot;

struct conn;

struct mc_portserver {
  char *address;
  int conn_timeout_ms;
  pthread_mutex_t mu;
  slot *slots; /* 65536 */
  uint16_t *queue;
  size_t pool_size, qhead, qlen;
  owner *buckets[OWNER_BUCKETS];
  size_t n_owners, n_held;
  struct conn *conns;
  size_t n_conns;

  struct event_base *base;
  struct evconnlistener *lis;
  struct event *stop_ev, *sweep_ev, *reenable_ev;
  int stop_fd;
  int probe_fd; /* the accept probe's socket, reused while refused */
  pthread_t thread;
  int running;

  /* Checks ahead of requests: check_ev, an event of the loop's lowest
   * priority, takes ports from the queue's head, checks them (TCP and UDP
   * bind, connect probe) and keeps them bound in ready[] (a ring) until a
   * request takes one. It runs only when no connection has anything to do
   * (between a reply and the next request), so a request waits for at most
   * one check, and nobody can bind a ready port between its check and its
   * hand-out. */
  struct {
    uint16_t port;
    mc__port_hold hold;
  } ready[READY_MAX];
  size_t ready_head, n_ready;
  struct event *check_ev;
  int busy_run; /* busy ports in a row met by check_ev */
  dev_t sock_dev;
  ino_t sock_ino;

  struct {
    unsigned long long allocations, denied, denied_pid, denied_dead,
        denied_exhausted, request_errors, reclaimed, pid_reuse, returned,
        return_denied, proxy, busy_skipped, timeouts, idle_closed, from_ready,
        accept_errors, conns;
    size_t last_checked;
  } st;
};

/* Pool operations; all are called with ps->mu held, except where noted. */

/* Puts a free port at the queue's tail (and schedules checks). */
void mc__pool_push(mc_portserver *ps, uint16_t port);

/* Takes a held port from its owner and puts it back in the queue. */
void mc__pool_release(mc_portserver *ps, uint16_t port);

/* The link that holds (or would hold) pid's owner record. */
owner **mc__pool_owner_link(mc_portserver *ps, int pid);

/* Frees an owner record (its ports must be released first). */
void mc__pool_owner_free(mc_portserver *ps, owner *o);

/* Returns the port given to pid (asked by requester, the peer), or 0 when
 * refused; counts the outcome in ps->st. */
int mc__pool_allocate(mc_portserver *ps, int pid, int requester);

/* The once-a-second sweep (a libevent callback; takes ps->mu itself). */
void mc__pool_sweep(evutil_socket_t fd, short what, void *arg);

/* Schedules check_ev when ready[] has room and the queue has ports. */
void mc__pool_want_checks(mc_portserver *ps);

/* check_ev's callback (arg: ps; takes ps->mu itself). */
void mc__pool_check_ahead(evutil_socket_t fd, short what, void *arg);

/* Puts the ready ports back in the queue, released (the loop has
 * stopped). */
void mc__pool_ready_drain(mc_portserver *ps);

/* The statistics as a JSON object (NULL when memory is short). */
json_t *mc__pool_stats_json(mc_portserver *ps);

#endif
