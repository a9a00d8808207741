/* portserver.c: the port server, portpicker's protocol on libevent:
 * connections, requests and the server's lifecycle. The pool (free ports,
 * owners, allocation, checks ahead, statistics) is in pool.c. */
#include <minicluster/ports.h>

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/status.h"
#include "ports/pool.h"
#include "ports/portutil.h"

#define DEFAULT_ADDRESS "@unittest-portserver"
#define DEFAULT_POOL "15000-24999"
#define DEFAULT_CONN_TIMEOUT_MS 2000
/* A request line is a pid (portpicker refuses more than 20 characters),
 * "stats" or "return <port>". */
#define MAX_LINE 32

typedef struct conn {
  struct mc_portserver *ps;
  int fd;
  struct event *ev;
  int peer_pid;
  int keep;   /* the request being answered asked to keep the connection */
  int served; /* requests answered on this connection */
  size_t len;
  char buf[MAX_LINE + 1];
  char *out; /* a reply that did not fit the socket buffer at once */
  size_t out_len, out_off;
  struct conn *prev, *next;
} conn;

/* ---- connections ---- */

static void conn_close(conn *c) {
  mc_portserver *ps = c->ps;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    ps->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  ps->n_conns--;
  event_free(c->ev);
  close(c->fd);
  free(c->out);
  free(c);
}

static void on_conn(evutil_socket_t fd, short what, void *arg);
static int conn_lines(conn *c);

/* (Re)arms c's event for what (EV_READ or EV_WRITE) under the connection
 * timeout. Returns 0, or -1 after closing c. */
static int conn_arm(conn *c, short what) {
  struct timeval tv = {c->ps->conn_timeout_ms / 1000,
                       (c->ps->conn_timeout_ms % 1000) * 1000};
  event_del(c->ev);
  if (event_assign(c->ev, c->ps->base, c->fd, what | EV_PERSIST, on_conn, c) !=
          0 ||
      event_add(c->ev, &tv) != 0) {
    conn_close(c);
    return -1;
  }
  return 0;
}

/* Sends what is left of c->out; then closes c, or with keep-alive reads
 * on. */
static void conn_flush(conn *c) {
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c->out_off += (size_t)n;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return; /* the write event continues, under the same timeout */
    conn_close(c);
    return;
  }
  free(c->out);
  c->out = NULL;
  if (!c->keep) {
    conn_close(c);
    return;
  }
  if (conn_arm(c, EV_READ) == 0)
    conn_lines(c);
}

/* Replies; then closes, or keeps c open for the next request when the
 * request asked for it (c->keep). A port reply is one short write into an
 * empty socket buffer; only a large stats reply may have to wait for the
 * client to read, and then on a write event, never blocking the loop.
 * reply is copied. Returns 1 when c is open and its reply sent (ready for
 * the next request), else 0 (closed, or waiting to write). */
static int conn_reply(conn *c, const char *reply) {
  size_t len = strlen(reply);
  ssize_t n = len ? send(c->fd, reply, len, MSG_NOSIGNAL | MSG_DONTWAIT) : 0;
  if (n < 0 && errno == EAGAIN) {
    n = 0;
  } else if (n < 0 || (size_t)n == len) {
    if (n >= 0 && c->keep)
      return 1;
    conn_close(c);
    return 0;
  }
  c->out = malloc(len - (size_t)n);
  if (c->out == NULL) {
    conn_close(c);
    return 0;
  }
  memcpy(c->out, reply + n, len - (size_t)n);
  c->out_len = len - (size_t)n;
  c->out_off = 0;
  conn_arm(c, EV_WRITE);
  return 0;
}

/* Answers one request line. Returns conn_reply's result. */
static int handle_line(conn *c, char *line) {
  mc_portserver *ps = c->ps;
  char reply[32] = "";
  long long value;
  c->keep = 0;
  int kind = mc__portserver_parse_request(line, &value);
  if (kind == MC__REQ_STATS) {
    json_t *j = mc__pool_stats_json(ps);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s == NULL) {
      conn_close(c);
      return 0;
    }
    size_t len = strlen(s);
    char *full = realloc(s, len + 2);
    if (full == NULL) {
      free(s);
      conn_close(c);
      return 0;
    }
    memcpy(full + len, "\n", 2);
    int r = conn_reply(c, full);
    free(full);
    return r;
  }
  if (kind == MC__REQ_RETURN) {
    long long port = value;
    if (port >= 1 && port <= 65535 && ps->slots[port].held &&
        (ps->slots[port].own->pid == c->peer_pid ||
         ps->slots[port].requester == c->peer_pid)) {
      owner *o = ps->slots[port].own;
      mc__pool_release(ps, (uint16_t)port);
      if (o->n == 0)
        mc__pool_owner_free(ps, o);
      ps->st.returned++;
      snprintf(reply, sizeof reply, "ok\n");
    } else {
      ps->st.return_denied++;
    }
    return conn_reply(c, reply);
  }
  if (kind != MC__REQ_PID) {
    ps->st.request_errors++;
    return conn_reply(c, "");
  }
  /* "+<pid>" (which portpicker's server reads as <pid>) asks to keep the
   * connection for further requests; a refusal is then "0\n" instead of
   * an empty reply and a close. */
  c->keep = line[strspn(line, " \t")] == '+';
  long long pid = value;
  if (pid > 0x7fffffff)
    pid = -1;
  int port = mc__pool_allocate(ps, (int)pid, c->peer_pid);
  if (port > 0)
    snprintf(reply, sizeof reply, "%d\n", port);
  else if (c->keep)
    snprintf(reply, sizeof reply, "0\n");
  return conn_reply(c, reply);
}

/* Answers the complete lines in c->buf, in order. Returns 1 while c stays
 * open waiting for input, 0 when it is closed or waits to write. */
static int conn_lines(conn *c) {
  for (;;) {
    c->buf[c->len] = '\0';
    char *nl = memchr(c->buf, '\n', c->len);
    if (nl == NULL)
      break;
    *nl = '\0';
    size_t used = (size_t)(nl + 1 - c->buf);
    c->served++;
    if (!handle_line(c, c->buf))
      return 0;
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
  }
  if (c->len >= MAX_LINE) {
    c->ps->st.request_errors++;
    conn_close(c);
    return 0;
  }
  return 1;
}

/* Advances c on a read, write or timeout event. Returns 1 while c stays
 * open waiting for input, 0 when it is closed or waits to write. Called
 * with ps->mu held. */
static int conn_step(conn *c, short what) {
  mc_portserver *ps = c->ps;
  if (what & EV_TIMEOUT) {
    /* A kept connection closed while idle is no client's fault. */
    if (c->served > 0 && c->len == 0 && c->out == NULL)
      ps->st.idle_closed++;
    else
      ps->st.timeouts++;
    conn_close(c);
    return 0;
  }
  if (c->out != NULL) {
    conn_flush(c);
    return 0;
  }
  ssize_t n = recv(c->fd, c->buf + c->len, MAX_LINE - c->len, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return 1;
  if (n <= 0) {
    /* End of stream: a request without its newline counts, as with
     * portpicker's server (it reads once, up to 100 bytes); its reply is
     * the last. */
    if (c->len > 0 && n == 0) {
      c->buf[c->len] = '\0';
      if (handle_line(c, c->buf))
        conn_close(c);
    } else {
      conn_close(c);
    }
    return 0;
  }
  c->len += (size_t)n;
  return conn_lines(c);
}

static void on_conn(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  conn *c = arg;
  mc_portserver *ps = c->ps;
  pthread_mutex_lock(&ps->mu);
  conn_step(c, what);
  pthread_mutex_unlock(&ps->mu);
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg) {
  (void)lis;
  (void)sa;
  (void)salen;
  mc_portserver *ps = arg;
  conn *c = calloc(1, sizeof *c);
  if (c == NULL) {
    close(fd);
    return;
  }
  c->ps = ps;
  c->fd = fd;
  struct ucred cred;
  socklen_t clen = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0)
    c->peer_pid = cred.pid;
  c->ev = event_new(ps->base, fd, EV_READ | EV_PERSIST, on_conn, c);
  if (c->ev == NULL) {
    close(fd);
    free(c);
    return;
  }
  pthread_mutex_lock(&ps->mu);
  c->next = ps->conns;
  if (c->next != NULL)
    c->next->prev = c;
  ps->conns = c;
  ps->n_conns++;
  ps->st.conns++;
  /* Clients write their request right after connecting: it is usually
   * there already, and then the connection never enters the event loop. */
  if (conn_step(c, EV_READ)) {
    struct timeval tv = {ps->conn_timeout_ms / 1000,
                         (ps->conn_timeout_ms % 1000) * 1000};
    if (event_add(c->ev, &tv) != 0)
      conn_close(c);
  }
  pthread_mutex_unlock(&ps->mu);
}

static void on_accept_error(struct evconnlistener *lis, void *arg) {
  mc_portserver *ps = arg;
  pthread_mutex_lock(&ps->mu);
  ps->st.accept_errors++;
  pthread_mutex_unlock(&ps->mu);
  /* Out of descriptors (or memory): stop accepting for a moment instead of
   * spinning on a listener that stays readable. Clients wait in the
   * backlog. */
  evconnlistener_disable(lis);
  struct timeval tv = {0, 50 * 1000};
  evtimer_add(ps->reenable_ev, &tv);
}

static void on_reenable(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  mc_portserver *ps = arg;
  evconnlistener_enable(ps->lis);
}

static void on_stop(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  uint64_t v;
  (void)!read(fd, &v, sizeof v);
  event_base_loopbreak(((mc_portserver *)arg)->base);
}

/* ---- lifecycle ---- */

static mc_code parse_pool(const char *spec, uint8_t *in_pool, size_t *count) {
  *count = 0;
  const char *p = spec;
  for (;;) {
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    char range[64];
    int lo, hi, used = 0;
    if (n == 0 || n >= sizeof range)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "port pool \"%s\": range \"%.*s\" is not LOW-HIGH",
                           spec, (int)(n < 40 ? n : 40), p);
    memcpy(range, p, n);
    range[n] = '\0';
    if (sscanf(range, "%d-%d%n", &lo, &hi, &used) != 2 || (size_t)used != n)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "port pool \"%s\": range \"%s\" is not LOW-HIGH",
                           spec, range);
    if (lo < 1 || hi > 65535 || lo > hi)
      return mc__error_set(MC_INVALID_ARGUMENT,
                           "port pool \"%s\": range \"%s\" is outside 1-65535 "
                           "or empty",
                           spec, range);
    for (int q = lo; q <= hi; q++) {
      if (!in_pool[q])
        (*count)++;
      in_pool[q] = 1;
    }
    if (end == NULL)
      break;
    p = end + 1;
  }
  return MC_OK;
}

mc_code mc_portserver_new(mc_portserver **out,
                          const mc_portserver_options *opts) {
  mc_portserver_options defaults = MC_PORTSERVER_OPTIONS_INIT;
  if (out == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "mc_portserver_new: out NULL");
  *out = NULL;
  if (opts == NULL)
    opts = &defaults;
  if (opts->version != MC_PORTSERVER_OPTIONS_VERSION)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_portserver_options version %d (expected %d)",
                         opts->version, MC_PORTSERVER_OPTIONS_VERSION);
  if (opts->conn_timeout_ms < 0)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "connection timeout %d ms is negative",
                         opts->conn_timeout_ms);
  const char *address = opts->address ? opts->address : DEFAULT_ADDRESS;
  struct sockaddr_un sa;
  socklen_t salen;
  if (mc__portserver_sockaddr(address, &sa, &salen) != MC_OK)
    return mc_error_last()->code;
  mc_portserver *ps = calloc(1, sizeof *ps);
  if (ps == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "port server: no memory");
  ps->stop_fd = -1;
  ps->probe_fd = -1;
  ps->address = strdup(address);
  ps->slots = calloc(65536, sizeof *ps->slots);
  uint8_t *in_pool = calloc(65536, 1);
  if (ps->address == NULL || ps->slots == NULL || in_pool == NULL) {
    free(in_pool);
    mc_portserver_free(ps);
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "port server: no memory");
  }
  const char *pool = opts->static_pool ? opts->static_pool : DEFAULT_POOL;
  mc_code rc = parse_pool(pool, in_pool, &ps->pool_size);
  if (rc == MC_OK) {
    ps->queue = malloc(ps->pool_size * sizeof *ps->queue);
    if (ps->queue == NULL)
      rc = mc__error_set(MC_RESOURCE_EXHAUSTED, "port server: no memory");
  }
  if (rc != MC_OK) {
    free(in_pool);
    mc_portserver_free(ps);
    return rc;
  }
  for (int p = 1; p <= 65535; p++) {
    if (in_pool[p]) {
      ps->slots[p].in_pool = 1;
      mc__pool_push(ps, (uint16_t)p);
    }
  }
  free(in_pool);
  ps->conn_timeout_ms =
      opts->conn_timeout_ms ? opts->conn_timeout_ms : DEFAULT_CONN_TIMEOUT_MS;
  pthread_mutex_init(&ps->mu, NULL);
  *out = ps;
  return MC_OK;
}

const char *mc_portserver_address(const mc_portserver *ps) {
  return ps ? ps->address : NULL;
}

/* Creates the listening socket. For a path: refuse a live server and a
 * non-socket file, replace a stale socket; bind under a temporary name,
 * chmod 0600 and rename into place, so the socket is never reachable with
 * looser permissions. */
static mc_code listen_socket(mc_portserver *ps, int *out) {
  struct sockaddr_un sa;
  socklen_t salen;
  if (mc__portserver_sockaddr(ps->address, &sa, &salen) != MC_OK)
    return mc_error_last()->code;
  int abstract = ps->address[0] == '@';
  if (!abstract) {
    struct stat stt;
    if (lstat(ps->address, &stt) == 0) {
      if (!S_ISSOCK(stt.st_mode))
        return mc__error_set(MC_FAILED_PRECONDITION,
                             "port server address \"%s\" exists and is not a "
                             "socket; not replacing it",
                             ps->address);
      int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      int live =
          probe >= 0 && (connect(probe, (struct sockaddr *)&sa, salen) == 0 ||
                         errno == EAGAIN);
      if (probe >= 0)
        close(probe);
      if (live)
        return mc__error_set(MC_ALREADY_EXISTS,
                             "a port server is already running on \"%s\"; "
                             "stop it first or choose another "
                             "--portserver_address",
                             ps->address);
    }
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return mc__error_set_os(MC_UNAVAILABLE, errno, "port server: socket");
  if (abstract) {
    if (bind(fd, (struct sockaddr *)&sa, salen) != 0) {
      int err = errno;
      close(fd);
      if (err == EADDRINUSE)
        return mc__error_set(MC_ALREADY_EXISTS,
                             "a port server is already running on \"%s\"; "
                             "stop it first or choose another "
                             "--portserver_address",
                             ps->address);
      return mc__error_set_os(mc__code_from_errno(err), err,
                              "port server: bind \"%s\"", ps->address);
    }
  } else {
    struct sockaddr_un tmp;
    socklen_t tmplen;
    char tmpname[sizeof sa.sun_path + 32];
    snprintf(tmpname, sizeof tmpname, "%s.%d.tmp", ps->address, (int)getpid());
    int use_tmp = mc__portserver_sockaddr(tmpname, &tmp, &tmplen) == MC_OK;
    if (!use_tmp) {
      /* No room for a temporary name: bind in place, then chmod. */
      mc_error_clear();
      unlink(ps->address);
      tmp = sa;
      tmplen = salen;
    } else {
      unlink(tmpname);
    }
    const char *bound = use_tmp ? tmpname : ps->address;
    if (bind(fd, (struct sockaddr *)&tmp, tmplen) != 0) {
      int err = errno;
      close(fd);
      return mc__error_set_os(mc__code_from_errno(err), err,
                              "port server: bind \"%s\"", bound);
    }
    if (chmod(bound, 0600) != 0 ||
        (use_tmp && rename(tmpname, ps->address) != 0)) {
      int err = errno;
      unlink(bound);
      close(fd);
      return mc__error_set_os(mc__code_from_errno(err), err,
                              "port server: install socket \"%s\"",
                              ps->address);
    }
    struct stat stt;
    if (stat(ps->address, &stt) == 0) {
      ps->sock_dev = stt.st_dev;
      ps->sock_ino = stt.st_ino;
    }
  }
  if (listen(fd, 4096) != 0) {
    int err = errno;
    close(fd);
    if (!abstract)
      unlink(ps->address);
    return mc__error_set_os(MC_UNAVAILABLE, err, "port server: listen");
  }
  *out = fd;
  return MC_OK;
}

static void *serve(void *arg) {
  mc_portserver *ps = arg;
  event_base_dispatch(ps->base);
  return NULL;
}

static void teardown(mc_portserver *ps) {
  while (ps->conns != NULL)
    conn_close(ps->conns);
  if (ps->check_ev != NULL)
    event_free(ps->check_ev);
  ps->check_ev = NULL;
  mc__pool_ready_drain(ps);
  for (size_t b = 0; b < OWNER_BUCKETS; b++) {
    while (ps->buckets[b] != NULL) {
      owner *o = ps->buckets[b];
      /* Keep the reservations' accounting: ports go back to the pool. */
      while (o->n > 0)
        mc__pool_release(ps, o->ports[0]);
      mc__pool_owner_free(ps, o);
    }
  }
  if (ps->lis != NULL) {
    evconnlistener_free(ps->lis);
    ps->lis = NULL;
    if (ps->address[0] != '@') {
      struct stat stt;
      /* Remove the socket file only if it is still ours. */
      if (stat(ps->address, &stt) == 0 && stt.st_dev == ps->sock_dev &&
          stt.st_ino == ps->sock_ino)
        unlink(ps->address);
    }
  }
  if (ps->stop_ev != NULL)
    event_free(ps->stop_ev);
  if (ps->sweep_ev != NULL)
    event_free(ps->sweep_ev);
  if (ps->reenable_ev != NULL)
    event_free(ps->reenable_ev);
  ps->stop_ev = ps->sweep_ev = ps->reenable_ev = NULL;
  if (ps->stop_fd >= 0)
    close(ps->stop_fd);
  ps->stop_fd = -1;
  if (ps->probe_fd >= 0)
    close(ps->probe_fd);
  ps->probe_fd = -1;
  if (ps->base != NULL)
    event_base_free(ps->base);
  ps->base = NULL;
}

mc_code mc_portserver_start(mc_portserver *ps) {
  if (ps == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "mc_portserver_start: NULL");
  if (ps->running)
    return mc__error_set(MC_FAILED_PRECONDITION,
                         "port server on \"%s\" is already running",
                         ps->address);
  int fd = -1;
  mc_code rc = listen_socket(ps, &fd);
  if (rc != MC_OK)
    return rc;
  ps->base = event_base_new();
  ps->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  /* Three priorities: everything runs at the default (1) except the
   * checks ahead (2), which run only when nothing else is active. */
  if (ps->base == NULL || ps->stop_fd < 0 ||
      event_base_priority_init(ps->base, 3) != 0) {
    close(fd);
    teardown(ps);
    return mc__error_set(MC_RESOURCE_EXHAUSTED,
                         "port server: cannot create the event loop");
  }
  ps->lis =
      evconnlistener_new(ps->base, on_accept, ps,
                         LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
  if (ps->lis == NULL) {
    close(fd);
    teardown(ps);
    return mc__error_set(MC_RESOURCE_EXHAUSTED,
                         "port server: cannot create the listener");
  }
  evconnlistener_set_error_cb(ps->lis, on_accept_error);
  ps->stop_ev = event_new(ps->base, ps->stop_fd, EV_READ, on_stop, ps);
  ps->sweep_ev = event_new(ps->base, -1, EV_PERSIST, mc__pool_sweep, ps);
  ps->reenable_ev = evtimer_new(ps->base, on_reenable, ps);
  ps->check_ev = event_new(ps->base, -1, 0, mc__pool_check_ahead, ps);
  struct timeval second = {1, 0};
  if (ps->stop_ev == NULL || ps->sweep_ev == NULL || ps->reenable_ev == NULL ||
      ps->check_ev == NULL || event_priority_set(ps->check_ev, 2) != 0 ||
      event_add(ps->stop_ev, NULL) != 0 ||
      event_add(ps->sweep_ev, &second) != 0) {
    teardown(ps);
    return mc__error_set(MC_RESOURCE_EXHAUSTED,
                         "port server: cannot create its events");
  }
  mc__pool_want_checks(ps);
  /* The server's thread takes none of the process's signals: it inherits
   * a full mask. Otherwise a signal meant for the host process (libFuzzer's
   * SIGALRM, a test's timer) may be delivered to this thread and interrupt
   * its blocking probes, and the host's handlers would run here. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int err = pthread_create(&ps->thread, NULL, serve, ps);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0) {
    teardown(ps);
    return mc__error_set_os(MC_RESOURCE_EXHAUSTED, err,
                            "port server: pthread_create");
  }
  ps->running = 1;
  return MC_OK;
}

void mc_portserver_stop(mc_portserver *ps) {
  if (ps == NULL || !ps->running)
    return;
  uint64_t one = 1;
  (void)!write(ps->stop_fd, &one, sizeof one);
  pthread_join(ps->thread, NULL);
  ps->running = 0;
  teardown(ps);
}

void mc_portserver_free(mc_portserver *ps) {
  if (ps == NULL)
    return;
  mc_portserver_stop(ps);
  if (ps->queue != NULL)
    pthread_mutex_destroy(&ps->mu);
  free(ps->queue);
  free(ps->slots);
  free(ps->address);
  free(ps);
}
