/* pool.c: the port server's pool: the queue of free ports, owners and
 * their reclaim, allocation, the checks ahead of requests and the
 * statistics.
 *
 * Design: ports believed free wait in a FIFO queue; a held port is not in
 * the queue at all, so an allocation looks at the queue's head only (plus a
 * bounded number of ports that something outside the server holds), whatever
 * the number of ports held. Each owner (pid + start time from /proc) keeps the
 * list of its ports; when it exits its ports go back to the queue's tail.
 * Exit is noticed through a pidfd (Linux >= 5.3) at once, and by a sweep once
 * a second that compares start times (pid reuse, hosts without pidfd). */
#include "ports/pool.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"
#include "ports/portserver_internal.h"

/* ---- pool ---- */

static void queue_push(mc_portserver *ps, uint16_t port) {
  ps->queue[(ps->qhead + ps->qlen) % ps->pool_size] = port;
  ps->qlen++;
}

void mc__pool_push(mc_portserver *ps, uint16_t port) {
  queue_push(ps, port);
  mc__pool_want_checks(ps);
}

static uint16_t queue_pop(mc_portserver *ps) {
  uint16_t p = ps->queue[ps->qhead];
  ps->qhead = (ps->qhead + 1) % ps->pool_size;
  ps->qlen--;
  return p;
}

void mc__pool_release(mc_portserver *ps, uint16_t port) {
  slot *s = &ps->slots[port];
  owner *o = s->own;
  /* Swap-remove from the owner's list, keeping the moved port's index. */
  uint16_t last = o->ports[--o->n];
  o->ports[s->idx] = last;
  ps->slots[last].idx = s->idx;
  s->held = 0;
  s->own = NULL;
  s->requester = 0;
  ps->n_held--;
  mc__pool_push(ps, port);
}

owner **mc__pool_owner_link(mc_portserver *ps, int pid) {
  owner **l = &ps->buckets[(unsigned)pid % OWNER_BUCKETS];
  while (*l != NULL && (*l)->pid != pid)
    l = &(*l)->next;
  return l;
}

void mc__pool_owner_free(mc_portserver *ps, owner *o) {
  owner **l = mc__pool_owner_link(ps, o->pid);
  if (*l == o)
    *l = o->next;
  ps->n_owners--;
  if (o->ev != NULL)
    event_free(o->ev);
  if (o->pidfd >= 0)
    close(o->pidfd);
  free(o->ports);
  free(o);
}

/* The owner is gone (exited, or its pid now names another process): its
 * ports go back to the pool. */
static void reclaim_owner(mc_portserver *ps, owner *o) {
  ps->st.reclaimed += o->n;
  while (o->n > 0)
    mc__pool_release(ps, o->ports[0]);
  mc__pool_owner_free(ps, o);
}

static void on_owner_exit(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  owner *o = arg;
  mc_portserver *ps = o->ps;
  pthread_mutex_lock(&ps->mu);
  reclaim_owner(ps, o);
  pthread_mutex_unlock(&ps->mu);
}

static int pidfd_for(int pid) {
#ifdef SYS_pidfd_open
  return (int)syscall(SYS_pidfd_open, pid, 0);
#else
  (void)pid;
  return -1;
#endif
}

/* 1 while the process of a pidfd runs (the pidfd turns readable at exit). */
static int pidfd_alive(int pidfd) {
  struct pollfd p = {pidfd, POLLIN, 0};
  return poll(&p, 1, 0) == 0;
}

/* Creates the owner record of (pid, start). NULL when the process is gone
 * or memory is short (both refuse the request). */
static owner *owner_new(mc_portserver *ps, int pid, unsigned long long start) {
  owner *o = calloc(1, sizeof *o);
  if (o == NULL)
    return NULL;
  o->pid = pid;
  o->start = start;
  o->ps = ps;
  o->pidfd = pidfd_for(pid);
  if (o->pidfd >= 0) {
    /* The pidfd names whoever held pid when it was opened; if that process
     * still has the start time read before, it is the requester. */
    unsigned long long again;
    if (mc__proc_start_time(pid, &again) != 0 || again != start) {
      close(o->pidfd);
      free(o);
      return NULL;
    }
    o->ev = event_new(ps->base, o->pidfd, EV_READ, on_owner_exit, o);
    if (o->ev == NULL || event_add(o->ev, NULL) != 0) {
      /* Without the event the once-a-second sweep still reclaims. */
      if (o->ev != NULL)
        event_free(o->ev);
      o->ev = NULL;
      close(o->pidfd);
      o->pidfd = -1;
    }
  }
  owner **l = mc__pool_owner_link(ps, pid);
  o->next = *l;
  *l = o;
  ps->n_owners++;
  return o;
}

static int owner_add_port(owner *o, slot *slots, uint16_t port) {
  if (o->n == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 4;
    uint16_t *p = realloc(o->ports, cap * sizeof *p);
    if (p == NULL)
      return -1;
    o->ports = p;
    o->cap = cap;
  }
  slots[port].idx = (uint32_t)o->n;
  o->ports[o->n++] = port;
  return 0;
}

/* Takes the oldest ready port and releases its sockets. */
static int take_ready(mc_portserver *ps) {
  size_t i = ps->ready_head;
  int port = ps->ready[i].port;
  mc__port_hold_release(&ps->ready[i].hold);
  ps->ready_head = (i + 1) % READY_MAX;
  ps->n_ready--;
  return port;
}

void mc__pool_want_checks(mc_portserver *ps) {
  /* Not while resting after a run of busy ports (the timer is pending). */
  if (ps->check_ev != NULL && ps->n_ready < READY_MAX && ps->qlen > 0 &&
      !event_pending(ps->check_ev, EV_TIMEOUT, NULL))
    event_active(ps->check_ev, EV_TIMEOUT, 0);
}

/* The check event (lowest priority: it runs only when no connection has
 * anything to do; see check_ev). Checks the queue's head port and keeps it
 * bound in ready[], or sends it to the back when busy; then asks to run
 * again while ready[] has room. After MAX_CHECKS busy ports in a row it
 * rests for 100 ms (requests then check inline). */
void mc__pool_check_ahead(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  mc_portserver *ps = arg;
  pthread_mutex_lock(&ps->mu);
  if (ps->n_ready < READY_MAX && ps->qlen > 0) {
    uint16_t p = queue_pop(ps);
    mc__port_hold h;
    if (mc__port_hold_free(&ps->probe_fd, p, &h)) {
      size_t r = (ps->ready_head + ps->n_ready) % READY_MAX;
      ps->ready[r].port = p;
      ps->ready[r].hold = h;
      ps->n_ready++;
      ps->busy_run = 0;
    } else {
      ps->st.busy_skipped++;
      queue_push(ps, p);
      ps->busy_run++;
    }
  }
  if (ps->busy_run >= MAX_CHECKS) {
    ps->busy_run = 0;
    struct timeval rest = {0, 100 * 1000};
    event_add(ps->check_ev, &rest);
  } else {
    mc__pool_want_checks(ps);
  }
  pthread_mutex_unlock(&ps->mu);
}

/* Puts the ready ports back in the queue (released); at shutdown. */
void mc__pool_ready_drain(mc_portserver *ps) {
  while (ps->n_ready > 0)
    queue_push(ps, (uint16_t)take_ready(ps));
}

/* Returns the port given to pid, or 0 when refused. */
int mc__pool_allocate(mc_portserver *ps, int pid, int requester) {
  if (pid <= 1) {
    /* pid 1 usually means a client that meant its parent and was
     * reparented to init (portpicker's reasoning). */
    ps->st.denied++;
    ps->st.denied_pid++;
    return 0;
  }
  owner *o = *mc__pool_owner_link(ps, pid);
  unsigned long long start;
  if (o != NULL && o->pidfd >= 0 && pidfd_alive(o->pidfd)) {
    /* A live pidfd names the very process recorded: same pid, same start
     * time, no need to read /proc. */
    start = o->start;
  } else if (mc__proc_start_time(pid, &start) != 0) {
    ps->st.denied++;
    ps->st.denied_dead++;
    return 0;
  }
  if (o != NULL && o->start != start) {
    ps->st.pid_reuse++;
    reclaim_owner(ps, o);
    o = NULL;
  }
  size_t limit = ps->qlen < MAX_CHECKS ? ps->qlen : MAX_CHECKS;
  size_t checked = 0;
  int port = 0;
  if (ps->n_ready > 0) {
    /* Checked ahead and held bound since: release and hand out. */
    port = take_ready(ps);
    mc__pool_want_checks(ps); /* a replacement, once the reply is out */
    ps->st.from_ready++;
    checked = 1;
    limit = 0;
  }
  while (checked < limit) {
    uint16_t p = queue_pop(ps);
    checked++;
    if (mc__port_free_probe(&ps->probe_fd, p)) {
      port = p;
      break;
    }
    ps->st.busy_skipped++;
    mc__pool_push(ps, p);
  }
  ps->st.last_checked = checked;
  if (port == 0) {
    ps->st.denied++;
    ps->st.denied_exhausted++;
    return 0;
  }
  if (o == NULL)
    o = owner_new(ps, pid, start);
  if (o == NULL || owner_add_port(o, ps->slots, (uint16_t)port) != 0) {
    mc__pool_push(ps, (uint16_t)port);
    if (o != NULL && o->n == 0)
      mc__pool_owner_free(ps, o);
    ps->st.denied++;
    ps->st.denied_dead++;
    return 0;
  }
  slot *s = &ps->slots[port];
  s->held = 1;
  s->own = o;
  s->requester = requester;
  ps->n_held++;
  ps->st.allocations++;
  if (requester != pid)
    ps->st.proxy++;
  return port;
}

void mc__pool_sweep(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  mc_portserver *ps = arg;
  pthread_mutex_lock(&ps->mu);
  for (size_t b = 0; b < OWNER_BUCKETS; b++) {
    owner *o = ps->buckets[b];
    while (o != NULL) {
      owner *next = o->next;
      if (o->pidfd >= 0 && pidfd_alive(o->pidfd)) {
        o = next; /* the pidfd vouches for it; its exit fires an event */
        continue;
      }
      unsigned long long start;
      int gone = mc__proc_start_time(o->pid, &start) != 0;
      if (!gone && start != o->start) {
        ps->st.pid_reuse++;
        gone = 1;
      }
      if (gone)
        reclaim_owner(ps, o);
      o = next;
    }
  }
  pthread_mutex_unlock(&ps->mu);
}

/* ---- statistics ---- */

json_t *mc__pool_stats_json(mc_portserver *ps) {
  json_t *owners = json_array();
  for (size_t b = 0; b < OWNER_BUCKETS; b++) {
    for (owner *o = ps->buckets[b]; o != NULL; o = o->next) {
      json_t *ports = json_array();
      json_t *proxies = json_array();
      for (size_t i = 0; i < o->n; i++) {
        json_array_append_new(ports, json_integer(o->ports[i]));
        int r = ps->slots[o->ports[i]].requester;
        if (r != o->pid)
          json_array_append_new(proxies,
                                json_pack("{s:i,s:i}", "port", (int)o->ports[i],
                                          "requested_by", r));
      }
      json_array_append_new(
          owners, json_pack("{s:i,s:I,s:o,s:o}", "pid", o->pid, "start_time",
                            (json_int_t)o->start, "ports", ports,
                            "requested_by_other_pid", proxies));
    }
  }
#define I(x) ((json_int_t)(x))
  return json_pack(
      "{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:"
      "I,s:"
      "I,"
      "s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
      "address", ps->address, "num_ports_managed", I(ps->pool_size),
      "free_ports", I(ps->qlen + ps->n_ready), "ports_checked_ahead",
      I(ps->n_ready), "allocations_checked_ahead", I(ps->st.from_ready),
      "ports_in_use", I(ps->n_held), "owners_alive", I(ps->n_owners),
      "in_use_by_pid", owners, "total_allocations", I(ps->st.allocations),
      "denied_allocations", I(ps->st.denied), "denied_invalid_pid",
      I(ps->st.denied_pid), "denied_dead_pid", I(ps->st.denied_dead),
      "denied_pool_exhausted", I(ps->st.denied_exhausted),
      "client_request_errors", I(ps->st.request_errors), "reclaimed_ports",
      I(ps->st.reclaimed), "pid_reuse_detected", I(ps->st.pid_reuse),
      "returned_ports", I(ps->st.returned), "return_denied",
      I(ps->st.return_denied), "allocations_for_other_pid", I(ps->st.proxy),
      "busy_ports_skipped", I(ps->st.busy_skipped), "connection_timeouts",
      I(ps->st.timeouts), "kept_connections_closed_idle", I(ps->st.idle_closed),
      "open_connections", I(ps->n_conns), "connections_accepted",
      I(ps->st.conns), "accept_errors", I(ps->st.accept_errors),
      "num_ports_checked_for_last_request", I(ps->st.last_checked));
#undef I
}

mc_code mc_portserver_stats(mc_portserver *ps, int text, char **out) {
  if (ps == NULL || out == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "mc_portserver_stats: NULL");
  pthread_mutex_lock(&ps->mu);
  json_t *j = mc__pool_stats_json(ps);
  pthread_mutex_unlock(&ps->mu);
  if (j == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "port server stats: no memory");
  char *s = NULL;
  if (!text) {
    s = json_dumps(j, JSON_COMPACT);
  } else {
    /* portpicker's dump_stats lines ("name value"), then one line per
     * owner. */
    size_t cap = 4096, len = 0;
    s = malloc(cap);
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
      char line[512];
      int n;
      if (json_is_integer(v))
        n = snprintf(line, sizeof line, "%s %lld\n", key,
                     (long long)json_integer_value(v));
      else if (json_is_string(v))
        n = snprintf(line, sizeof line, "%s %s\n", key, json_string_value(v));
      else
        continue;
      while (s != NULL && len + (size_t)n + 1 > cap) {
        char *t = realloc(s, cap *= 2);
        if (t == NULL)
          free(s);
        s = t;
      }
      if (s == NULL)
        break;
      memcpy(s + len, line, (size_t)n + 1);
      len += (size_t)n;
    }
    size_t i;
    json_array_foreach(json_object_get(j, "in_use_by_pid"), i, v) {
      char *ports = json_dumps(json_object_get(v, "ports"), JSON_COMPACT);
      size_t need = (ports ? strlen(ports) : 0) + 64;
      while (s != NULL && len + need > cap) {
        char *t = realloc(s, cap *= 2);
        if (t == NULL)
          free(s);
        s = t;
      }
      if (s != NULL)
        len += (size_t)snprintf(
            s + len, cap - len, "pid %lld ports %s\n",
            (long long)json_integer_value(json_object_get(v, "pid")),
            ports ? ports : "[]");
      free(ports);
    }
  }
  json_decref(j);
  if (s == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "port server stats: no memory");
  *out = s;
  return MC_OK;
}

mc_code mc__portserver_set_owner_start(mc_portserver *ps, int pid,
                                       unsigned long long start) {
  pthread_mutex_lock(&ps->mu);
  owner *o = *mc__pool_owner_link(ps, pid);
  if (o != NULL) {
    o->start = start;
    /* A pidfd would still vouch for the process; without one the server
     * goes by start times, as on hosts without pidfd_open. */
    if (o->ev != NULL)
      event_free(o->ev);
    if (o->pidfd >= 0)
      close(o->pidfd);
    o->ev = NULL;
    o->pidfd = -1;
  }
  pthread_mutex_unlock(&ps->mu);
  return o != NULL ? MC_OK
                   : mc__error_set(MC_NOT_FOUND, "pid %d owns no port", pid);
}

size_t mc__portserver_last_checked(mc_portserver *ps) {
  pthread_mutex_lock(&ps->mu);
  size_t n = ps->st.last_checked;
  pthread_mutex_unlock(&ps->mu);
  return n;
}
