/* Tests of the port server run in-process (mc_portserver_*): allocation,
 * refusals, returns, reclaim when the owner exits and not before, pid-reuse
 * detection, bad requests, idle clients, socket files, and O(1)
 * allocation. */
#include "testutil.h"

#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <minicluster/ports.h>

#include "ports/portserver_internal.h"
#include "ports/portutil.h"

/* Ports 25000-25999 and 26100-29199 are this test's (ports_cli_test uses
 * 15000-24999, 26000-26099 and 29200-29299; bench/ports 10000-14999), so
 * tests running in parallel do not compete. */
static int pool_base(void) {
  return 25000;
}

static mc_portserver *start_server(const char *pool, char *addr, size_t cap,
                                   int timeout_ms) {
  static int n;
  snprintf(addr, cap, "@mc-portserver-test-%d-%d", (int)getpid(), n++);
  mc_portserver_options o = MC_PORTSERVER_OPTIONS_INIT;
  o.address = addr;
  o.static_pool = pool;
  o.conn_timeout_ms = timeout_ms;
  mc_portserver *ps = NULL;
  MC_ASSERT_OK(mc_portserver_new(&ps, &o));
  MC_ASSERT_OK(mc_portserver_start(ps));
  return ps;
}

static int connect_to(const char *addr) {
  struct sockaddr_un sa;
  socklen_t len;
  if (mc__portserver_sockaddr(addr, &sa, &len) != MC_OK)
    return -1;
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Sends raw bytes (no newline added), optionally half-closes, and reads the
 * whole reply. Uses only system calls, so a forked child may call it. */
static int raw_request(const char *addr, const char *req, size_t len,
                       int half_close, char *reply, size_t cap) {
  int fd = connect_to(addr);
  if (fd < 0)
    return -1;
  /* The server may close before reading everything (overlong requests):
   * no SIGPIPE, and the reply (none) is still read. */
  if (len > 0)
    (void)!send(fd, req, len, MSG_NOSIGNAL);
  if (half_close)
    shutdown(fd, SHUT_WR);
  size_t got = 0;
  ssize_t n;
  while (got + 1 < cap && (n = read(fd, reply + got, cap - 1 - got)) > 0)
    got += (size_t)n;
  reply[got] = '\0';
  close(fd);
  return (int)got;
}

static int request_port(const char *addr, int pid) {
  char req[32], reply[64];
  int n = snprintf(req, sizeof req, "%d\n", pid);
  if (raw_request(addr, req, (size_t)n, 0, reply, sizeof reply) <= 0)
    return 0;
  return atoi(reply);
}

static json_t *stats(mc_portserver *ps) {
  char *s = NULL;
  MC_ASSERT_OK(mc_portserver_stats(ps, 0, &s));
  json_t *j = json_loads(s, 0, NULL);
  free(s);
  assert_non_null(j);
  return j;
}

static long long stat_int(mc_portserver *ps, const char *key) {
  json_t *j = stats(ps);
  json_t *v = json_object_get(j, key);
  if (v == NULL)
    fail_msg("no stat \"%s\"", key);
  long long r = json_integer_value(v);
  json_decref(j);
  return r;
}

static void bad_options_name_the_value(void **state) {
  (void)state;
  mc_portserver *ps = NULL;
  mc_portserver_options o = MC_PORTSERVER_OPTIONS_INIT;
  const char *bad[][2] = {{"10-5", "\"10-5\""},
                          {"abc", "\"abc\""},
                          {"0-10", "\"0-10\""},
                          {"65000-70000", "\"65000-70000\""},
                          {"15000-15010,", "15000-15010,"},
                          {"1-2-3", "\"1-2-3\""}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    o.static_pool = bad[i][0];
    MC_ASSERT_ERR(mc_portserver_new(&ps, &o), MC_INVALID_ARGUMENT, bad[i][1]);
    assert_null(ps);
  }
  o.static_pool = NULL;
  o.address = "@";
  MC_ASSERT_ERR(mc_portserver_new(&ps, &o), MC_INVALID_ARGUMENT, "\"@\"");
  o.address = "";
  MC_ASSERT_ERR(mc_portserver_new(&ps, &o), MC_INVALID_ARGUMENT, "\"\"");
  o.address = NULL;
  o.conn_timeout_ms = -1;
  MC_ASSERT_ERR(mc_portserver_new(&ps, &o), MC_INVALID_ARGUMENT, "-1");
  o.conn_timeout_ms = 0;
  o.version = 7;
  MC_ASSERT_ERR(mc_portserver_new(&ps, &o), MC_INVALID_ARGUMENT, "version 7");
  mc_portserver_free(NULL);
  mc_portserver_stop(NULL);
}

static void serves_returns_and_refuses(void **state) {
  (void)state;
  char addr[80], pool[32];
  snprintf(pool, sizeof pool, "%d-%d", pool_base(), pool_base() + 2);
  mc_portserver *ps = start_server(pool, addr, sizeof addr, 0);
  assert_string_equal(mc_portserver_address(ps), addr);

  mc_pick_options o = MC_PICK_OPTIONS_INIT;
  o.portserver_address = addr;
  int got[3];
  for (int i = 0; i < 3; i++) {
    mc_pick_info info;
    MC_ASSERT_OK(mc_pick_unused_port_ex(&got[i], &o, &info));
    assert_int_equal(info.source, MC_PORT_FROM_SERVER);
    assert_true(got[i] >= pool_base() && got[i] <= pool_base() + 2);
    for (int j = 0; j < i; j++)
      assert_int_not_equal(got[i], got[j]);
  }
  json_t *j = stats(ps);
  assert_int_equal(json_integer_value(json_object_get(j, "ports_in_use")), 3);
  json_t *owner = json_array_get(json_object_get(j, "in_use_by_pid"), 0);
  assert_int_equal(json_integer_value(json_object_get(owner, "pid")), getpid());
  assert_int_equal(json_array_size(json_object_get(owner, "ports")), 3);
  json_decref(j);

  /* Pool exhausted while the owner lives: refused, reported. */
  int p;
  MC_ASSERT_ERR(mc_pick_unused_port_ex(&p, &o, NULL), MC_RESOURCE_EXHAUSTED,
                addr);
  assert_int_equal(stat_int(ps, "denied_pool_exhausted"), 1);

  /* A returned port goes back to the server and out again. */
  MC_ASSERT_OK(mc_return_port(got[1]));
  assert_int_equal(stat_int(ps, "returned_ports"), 1);
  assert_int_equal(stat_int(ps, "ports_in_use"), 2);
  MC_ASSERT_OK(mc_pick_unused_port_ex(&p, &o, NULL));
  assert_int_equal(p, got[1]);

  /* Someone else cannot return our port. */
  char reply[64], req[32];
  int n = snprintf(req, sizeof req, "return %d\n", p);
  /* The child reports through a pipe: under valgrind its exit status is
   * valgrind's verdict on the parent's heap it inherited. */
  int res[2];
  assert_int_equal(pipe(res), 0);
  pid_t child = fork();
  if (child == 0) {
    int r = raw_request(addr, req, (size_t)n, 0, reply, sizeof reply);
    (void)!write(res[1], &r, sizeof r);
    _exit(0);
  }
  int r = -1, status;
  assert_int_equal(read(res[0], &r, sizeof r), sizeof r);
  assert_int_equal(r, 0); /* empty reply: refused */
  waitpid(child, &status, 0);
  close(res[0]);
  close(res[1]);
  assert_int_equal(stat_int(ps, "return_denied"), 1);

  /* Refused pids: init, nonsense, and a process that is gone. */
  assert_int_equal(request_port(addr, 1), 0);
  assert_int_equal(request_port(addr, 0), 0);
  assert_int_equal(request_port(addr, -5), 0);
  assert_int_equal(stat_int(ps, "denied_invalid_pid"), 3);
  child = fork();
  if (child == 0)
    _exit(0);
  waitpid(child, &status, 0);
  assert_int_equal(request_port(addr, child), 0);
  assert_int_equal(stat_int(ps, "denied_dead_pid"), 1);

  for (int i = 0; i < 3; i++)
    MC_ASSERT_OK(mc_return_port(i == 1 ? p : got[i]));
  assert_int_equal(stat_int(ps, "ports_in_use"), 0);
  mc_portserver_free(ps);
}

static void reclaims_after_owner_exit_and_not_before(void **state) {
  (void)state;
  char addr[80], pool[32];
  snprintf(pool, sizeof pool, "%d-%d", pool_base() + 10, pool_base() + 10);
  mc_portserver *ps = start_server(pool, addr, sizeof addr, 0);
  int to_child[2], from_child[2];
  assert_int_equal(pipe(to_child), 0);
  assert_int_equal(pipe(from_child), 0);
  pid_t child = fork();
  if (child == 0) {
    /* System calls only: the parent has threads. */
    int port = request_port(addr, getpid());
    (void)!write(from_child[1], &port, sizeof port);
    char go;
    (void)!read(to_child[0], &go, 1);
    _exit(0);
  }
  int port = 0;
  assert_int_equal(read(from_child[0], &port, sizeof port), sizeof port);
  assert_int_equal(port, pool_base() + 10);
  /* The owner lives: the only port is not handed out again, however
   * often we ask (the sweep runs once a second meanwhile). */
  for (int i = 0; i < 3; i++) {
    assert_int_equal(request_port(addr, getpid()), 0);
    usleep(400 * 1000);
  }
  assert_int_equal(stat_int(ps, "reclaimed_ports"), 0);
  (void)!write(to_child[1], "x", 1);
  int status;
  waitpid(child, &status, 0);
  /* The owner is gone: the port comes back (pidfd at once, the sweep
   * within a second). */
  int again = 0;
  for (int i = 0; i < 100 && again == 0; i++) {
    again = request_port(addr, getpid());
    if (again == 0)
      usleep(50 * 1000);
  }
  assert_int_equal(again, port);
  assert_int_equal(stat_int(ps, "reclaimed_ports"), 1);
  close(to_child[0]);
  close(to_child[1]);
  close(from_child[0]);
  close(from_child[1]);
  mc_portserver_free(ps);
}

static void detects_pid_reuse(void **state) {
  (void)state;
  char addr[80], pool[32];
  snprintf(pool, sizeof pool, "%d-%d", pool_base() + 20, pool_base() + 20);
  mc_portserver *ps = start_server(pool, addr, sizeof addr, 0);
  int port = request_port(addr, getpid());
  assert_int_equal(port, pool_base() + 20);
  assert_int_equal(request_port(addr, getpid()), 0);
  /* Record a start time that is not this process's: to the server, the
   * reservation now belongs to an earlier process that had our pid. A pid
   * cannot be recycled on demand, so this is how the test reaches it. */
  unsigned long long start;
  assert_int_equal(mc__proc_start_time(getpid(), &start), 0);
  MC_ASSERT_OK(mc__portserver_set_owner_start(ps, getpid(), start + 1));
  MC_ASSERT_ERR(mc__portserver_set_owner_start(ps, 1, 0), MC_NOT_FOUND,
                "pid 1");
  assert_int_equal(request_port(addr, getpid()), port);
  assert_true(stat_int(ps, "pid_reuse_detected") >= 1);
  assert_int_equal(stat_int(ps, "reclaimed_ports"), 1);
  /* The new reservation has the right start time and is kept. */
  assert_int_equal(request_port(addr, getpid()), 0);
  json_t *j = stats(ps);
  json_t *owner = json_array_get(json_object_get(j, "in_use_by_pid"), 0);
  assert_int_equal((unsigned long long)json_integer_value(
                       json_object_get(owner, "start_time")),
                   start);
  json_decref(j);
  mc_portserver_free(ps);
}

static void requests_for_other_pids_are_visible(void **state) {
  (void)state;
  char addr[80], pool[32];
  snprintf(pool, sizeof pool, "%d-%d", pool_base() + 30, pool_base() + 31);
  mc_portserver *ps = start_server(pool, addr, sizeof addr, 0);
  int parent = getppid();
  int port = request_port(addr, parent);
  assert_true(port >= pool_base() + 30);
  json_t *j = stats(ps);
  assert_int_equal(
      json_integer_value(json_object_get(j, "allocations_for_other_pid")), 1);
  json_t *owner = json_array_get(json_object_get(j, "in_use_by_pid"), 0);
  assert_int_equal(json_integer_value(json_object_get(owner, "pid")), parent);
  json_t *proxy =
      json_array_get(json_object_get(owner, "requested_by_other_pid"), 0);
  assert_int_equal(json_integer_value(json_object_get(proxy, "requested_by")),
                   getpid());
  json_decref(j);
  /* The requester may give it back. */
  char req[32], reply[16];
  int n = snprintf(req, sizeof req, "return %d\n", port);
  raw_request(addr, req, (size_t)n, 0, reply, sizeof reply);
  assert_string_equal(reply, "ok\n");
  mc_portserver_free(ps);
}

static void bad_requests_neither_crash_nor_stall(void **state) {
  (void)state;
  char addr[80], pool[32];
  snprintf(pool, sizeof pool, "%d-%d", pool_base() + 40, pool_base() + 49);
  mc_portserver *ps = start_server(pool, addr, sizeof addr, 300);
  char reply[128];
  /* Garbage, an overlong pid, an overlong line without newline, a binary
   * blob, a line longer than portpicker's 20 characters. */
  assert_int_equal(raw_request(addr, "hello\n", 6, 0, reply, sizeof reply), 0);
  assert_int_equal(raw_request(addr, "12345678901234567890123\n", 24, 0, reply,
                               sizeof reply),
                   0);
  char big[4096];
  memset(big, '7', sizeof big);
  assert_int_equal(raw_request(addr, big, sizeof big, 0, reply, sizeof reply),
                   0);
  char bin[16] = {0, 1, 2, '\n'};
  assert_int_equal(raw_request(addr, bin, sizeof bin, 0, reply, sizeof reply),
                   0);
  assert_int_equal(stat_int(ps, "client_request_errors"), 4);
  /* A pid without its newline, then hang-up of the write side: served, as
   * portpicker's server does. */
  char pidreq[32];
  int n = snprintf(pidreq, sizeof pidreq, "%d", (int)getpid());
  assert_true(raw_request(addr, pidreq, (size_t)n, 1, reply, sizeof reply) > 0);
  assert_true(atoi(reply) >= pool_base() + 40);
  /* Connect and hang up without a byte. */
  int fd = connect_to(addr);
  close(fd);

  /* Idle connections do not stall others, and are closed by the
   * per-connection timeout. */
  enum { IDLE = 200 };
  int idle[IDLE];
  for (int i = 0; i < IDLE; i++) {
    idle[i] = connect_to(addr);
    assert_true(idle[i] >= 0);
  }
  (void)!write(idle[0], "12", 2); /* a partial request, never finished */
  int port = request_port(addr, getpid());
  assert_true(port >= pool_base() + 40);
  for (int i = 0; i < IDLE; i++) {
    struct pollfd p = {idle[i], POLLIN, 0};
    assert_int_equal(poll(&p, 1, 10000), 1);
    char b;
    assert_int_equal(read(idle[i], &b, 1), 0);
    close(idle[i]);
  }
  assert_true(stat_int(ps, "connection_timeouts") >= IDLE);
  assert_true(request_port(addr, getpid()) > 0);
  mc_portserver_free(ps);
}

static void allocation_cost_does_not_grow_with_ports_held(void **state) {
  (void)state;
  /* Hold many ports, then check that each new allocation examined one pool
   * slot: held ports are never scanned. */
  int held = mc_test_under_valgrind() ? 300 : 3000;
  char addr[80], pool[32];
  snprintf(pool, sizeof pool, "%d-%d", 26100, 26100 + held + 9);
  mc_portserver *ps = start_server(pool, addr, sizeof addr, 0);
  size_t max_checked = 0;
  for (int i = 0; i < held; i++) {
    assert_true(request_port(addr, getpid()) > 0);
    size_t c = mc__portserver_last_checked(ps);
    if (c > max_checked)
      max_checked = c;
  }
  assert_int_equal(stat_int(ps, "ports_in_use"), held);
  /* A port in the pool may be busy for reasons outside the server, which
   * costs one extra check each; none are expected in this private range. */
  assert_true(max_checked <= 2);
  assert_true(request_port(addr, getpid()) > 0);
  assert_true(mc__portserver_last_checked(ps) <= 2);
  mc_portserver_free(ps);
}

/* Reads one reply line (through its newline) from fd. Returns its length
 * without the newline, or -1 when the stream ends first. */
static int read_line(int fd, char *buf, size_t cap) {
  size_t got = 0;
  while (got + 1 < cap) {
    ssize_t n = read(fd, buf + got, 1);
    if (n <= 0)
      return -1;
    if (buf[got] == '\n') {
      buf[got] = '\0';
      return (int)got;
    }
    got++;
  }
  return -1;
}

static int ask(int fd, const char *req, char *line, size_t cap) {
  if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
    return -1;
  return read_line(fd, line, cap);
}

static void keeps_connections_when_asked(void **state) {
  (void)state;
  char addr[80], pool[32], req[64], line[64];
  snprintf(pool, sizeof pool, "%d-%d", pool_base() + 200, pool_base() + 209);
  mc_portserver *ps = start_server(pool, addr, sizeof addr, 300);
  int fd = connect_to(addr);
  assert_true(fd >= 0);
  /* "+<pid>" (with or without leading blanks): a port, and the connection
   * stays open for the next request. */
  snprintf(req, sizeof req, "+%d\n", (int)getpid());
  assert_true(ask(fd, req, line, sizeof line) > 0);
  int first = atoi(line);
  assert_true(first >= pool_base() + 200 && first <= pool_base() + 209);
  snprintf(req, sizeof req, " +%d\n", (int)getpid());
  assert_true(ask(fd, req, line, sizeof line) > 0);
  assert_int_not_equal(atoi(line), first);
  /* A refusal on a kept connection is "0", and the connection stays. */
  assert_int_equal(ask(fd, "+1\n", line, sizeof line), 1);
  assert_string_equal(line, "0");
  /* Two requests in one write: two replies, in order. */
  snprintf(req, sizeof req, "+%d\n+%d\n", (int)getpid(), (int)getpid());
  assert_true(ask(fd, req, line, sizeof line) > 0);
  int a = atoi(line);
  assert_true(read_line(fd, line, sizeof line) > 0);
  assert_true(a > 0 && atoi(line) > 0 && a != atoi(line));
  /* A plain request gets portpicker's exchange: the reply, then the end. */
  snprintf(req, sizeof req, "%d\n", (int)getpid());
  assert_true(ask(fd, req, line, sizeof line) > 0);
  assert_true(atoi(line) >= pool_base() + 200);
  char b;
  assert_int_equal(read(fd, &b, 1), 0);
  close(fd);
  assert_int_equal(stat_int(ps, "connections_accepted"), 1);
  assert_int_equal(stat_int(ps, "ports_in_use"), 5);
  assert_int_equal(stat_int(ps, "denied_invalid_pid"), 1);

  /* A kept connection left idle is closed after the connection timeout,
   * counted apart from clients that stall mid-request. */
  fd = connect_to(addr);
  snprintf(req, sizeof req, "+%d\n", (int)getpid());
  assert_true(ask(fd, req, line, sizeof line) > 0);
  struct pollfd pf = {fd, POLLIN, 0};
  assert_int_equal(poll(&pf, 1, 10000), 1);
  assert_int_equal(read(fd, &b, 1), 0);
  close(fd);
  assert_int_equal(stat_int(ps, "kept_connections_closed_idle"), 1);
  assert_int_equal(stat_int(ps, "connection_timeouts"), 0);
  mc_portserver_free(ps);
}

/* 1 when a TCP or UDP socket can bind port (no SO_REUSEADDR). */
static int can_bind(int port, int type) {
  int fd = socket(AF_INET6, type, 0);
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof a);
  a.sin6_family = AF_INET6;
  a.sin6_port = htons((uint16_t)port);
  int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
  close(fd);
  return ok;
}

static void checks_ports_ahead_and_holds_them(void **state) {
  (void)state;
  int lo = pool_base() + 220, hi = lo + 7, busy = lo + 3;
  /* Something outside the server holds one pool port. */
  int outsider = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)busy);
  assert_int_equal(bind(outsider, (struct sockaddr *)&a, sizeof a), 0);
  int fds = mc_test_count_fds();
  char addr[80], pool[32];
  snprintf(pool, sizeof pool, "%d-%d", lo, hi);
  mc_portserver *ps = start_server(pool, addr, sizeof addr, 0);
  /* The checks ahead take the 7 free ports (the pool is smaller
   * than its ready set) and skips the busy one. */
  for (int i = 0; i < 1000 && stat_int(ps, "ports_checked_ahead") < 7; i++)
    usleep(10 * 1000);
  assert_int_equal(stat_int(ps, "ports_checked_ahead"), 7);
  assert_int_equal(stat_int(ps, "free_ports"), 8);
  assert_true(stat_int(ps, "busy_ports_skipped") >= 1);
  /* Held bound from the check on: nobody else can take them meanwhile. */
  for (int p = lo; p <= hi; p++) {
    if (p == busy)
      continue;
    assert_false(can_bind(p, SOCK_STREAM));
    assert_false(can_bind(p, SOCK_DGRAM));
  }
  /* Handed out released: the client binds each at once. */
  for (int i = 0; i < 7; i++) {
    int p = request_port(addr, getpid());
    assert_true(p >= lo && p <= hi && p != busy);
    assert_true(can_bind(p, SOCK_STREAM));
    assert_true(can_bind(p, SOCK_DGRAM));
  }
  assert_int_equal(stat_int(ps, "allocations_checked_ahead"), 7);
  assert_int_equal(request_port(addr, getpid()), 0);
  assert_int_equal(stat_int(ps, "denied_pool_exhausted"), 1);
  mc_portserver_free(ps);
  assert_int_equal(mc_test_count_fds(), fds);
  close(outsider);
  for (int p = lo; p <= hi; p++)
    assert_true(can_bind(p, SOCK_STREAM) && can_bind(p, SOCK_DGRAM));
}

/* More busy ports in a row than the checks ahead examine before resting:
 * they resume after the rest by themselves and find the free ports behind
 * the busy ones. */
static void checks_ahead_rest_and_resume(void **state) {
  (void)state;
  enum { BUSY = 70, FREE = 10 };
  int lo = pool_base() + 300, hi = lo + BUSY + FREE - 1;
  int outsiders[BUSY];
  for (int i = 0; i < BUSY; i++) {
    outsiders[i] = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)(lo + i));
    assert_int_equal(bind(outsiders[i], (struct sockaddr *)&a, sizeof a), 0);
  }
  char addr[80], pool[32];
  snprintf(pool, sizeof pool, "%d-%d", lo, hi);
  mc_portserver *ps = start_server(pool, addr, sizeof addr, 0);
  /* No request comes: after 64 busy ports the checks ahead rest, then
   * resume on their own and reach the free ports. */
  for (int i = 0; i < 1000 && stat_int(ps, "ports_checked_ahead") < FREE; i++)
    usleep(10 * 1000);
  assert_int_equal(stat_int(ps, "ports_checked_ahead"), FREE);
  assert_true(stat_int(ps, "busy_ports_skipped") >= BUSY);
  int got[FREE];
  for (int i = 0; i < FREE; i++) {
    got[i] = request_port(addr, getpid());
    assert_true(got[i] >= lo + BUSY && got[i] <= hi);
    for (int j = 0; j < i; j++)
      assert_int_not_equal(got[i], got[j]);
  }
  assert_int_equal(stat_int(ps, "allocations_checked_ahead"), FREE);
  mc_portserver_free(ps);
  for (int i = 0; i < BUSY; i++)
    close(outsiders[i]);
}

static int owner_of(mc_portserver *ps, int port) {
  json_t *j = stats(ps);
  json_t *o;
  size_t i;
  int pid = 0;
  json_array_foreach(json_object_get(j, "in_use_by_pid"), i, o) {
    json_t *v;
    size_t k;
    json_array_foreach(json_object_get(o, "ports"), k, v) {
      if (json_integer_value(v) == port)
        pid = (int)json_integer_value(json_object_get(o, "pid"));
    }
  }
  json_decref(j);
  return pid;
}

static void client_keeps_one_connection(void **state) {
  (void)state;
  char addr[80], pool[32];
  snprintf(pool, sizeof pool, "%d-%d", pool_base() + 240, pool_base() + 259);
  mc_portserver *ps = start_server(pool, addr, sizeof addr, 0);
  mc_pick_options o = MC_PICK_OPTIONS_INIT;
  o.portserver_address = addr;
  int got[5];
  for (int i = 0; i < 5; i++) {
    MC_ASSERT_OK(mc_pick_unused_port_ex(&got[i], &o, NULL));
    for (int k = 0; k < i; k++)
      assert_int_not_equal(got[i], got[k]);
  }
  assert_int_equal(stat_int(ps, "connections_accepted"), 1);
  assert_int_equal(stat_int(ps, "open_connections"), 1);

  /* A forked child does not talk on its parent's connection: the server
   * sees the child itself asking. */
  int res[2], go[2];
  assert_int_equal(pipe(res), 0);
  assert_int_equal(pipe(go), 0);
  pid_t child = fork();
  if (child == 0) {
    int p = 0;
    if (mc_pick_unused_port_ex(&p, &o, NULL) != MC_OK)
      p = -1;
    (void)!write(res[1], &p, sizeof p);
    char b;
    (void)!read(go[0], &b, 1);
    _exit(0);
  }
  int cp = 0;
  assert_int_equal(read(res[0], &cp, sizeof cp), sizeof cp);
  assert_true(cp >= pool_base() + 240);
  assert_int_equal(owner_of(ps, cp), child);
  assert_int_equal(stat_int(ps, "allocations_for_other_pid"), 0);
  assert_int_equal(stat_int(ps, "connections_accepted"), 2);
  (void)!write(go[1], "x", 1);
  int status;
  waitpid(child, &status, 0);
  close(res[0]);
  close(res[1]);
  close(go[0]);
  close(go[1]);

  /* The server restarts on the same address: the kept connection is dead;
   * the next pick asks the new server on a new one. */
  mc_portserver_free(ps);
  mc_portserver_options so = MC_PORTSERVER_OPTIONS_INIT;
  so.address = addr;
  so.static_pool = pool;
  MC_ASSERT_OK(mc_portserver_new(&ps, &so));
  MC_ASSERT_OK(mc_portserver_start(ps));
  int p;
  MC_ASSERT_OK(mc_pick_unused_port_ex(&p, &o, NULL));
  assert_int_equal(owner_of(ps, p), getpid());
  assert_int_equal(stat_int(ps, "connections_accepted"), 1);
  mc_portserver_free(ps);
}

static void socket_files_live_stale_and_foreign(void **state) {
  (void)state;
  char dir[] = "/tmp/mc-portserver-test-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[128];
  snprintf(path, sizeof path, "%s/ps.sock", dir);

  /* A stale socket file: bound, then its process (here: socket) gone. */
  struct sockaddr_un sa;
  socklen_t len;
  MC_ASSERT_OK(mc__portserver_sockaddr(path, &sa, &len));
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  assert_int_equal(bind(s, (struct sockaddr *)&sa, len), 0);
  close(s);

  mc_portserver_options o = MC_PORTSERVER_OPTIONS_INIT;
  o.address = path;
  o.static_pool = "25100-25101";
  mc_portserver *ps = NULL, *second = NULL;
  MC_ASSERT_OK(mc_portserver_new(&ps, &o));
  MC_ASSERT_OK(mc_portserver_start(ps));
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_true(request_port(path, getpid()) >= 25100);
  MC_ASSERT_ERR(mc_portserver_start(ps), MC_FAILED_PRECONDITION, path);

  /* A live server on the same path: refuse, and leave it alone. */
  MC_ASSERT_OK(mc_portserver_new(&second, &o));
  MC_ASSERT_ERR(mc_portserver_start(second), MC_ALREADY_EXISTS, path);
  mc_portserver_free(second);
  assert_true(request_port(path, getpid()) >= 25100);

  mc_portserver_stop(ps);
  mc_portserver_stop(ps);
  assert_int_equal(stat(path, &st), -1);
  mc_portserver_free(ps);

  /* The same for an abstract address. */
  char addr[80];
  ps = start_server("25102-25103", addr, sizeof addr, 0);
  o.address = addr;
  MC_ASSERT_OK(mc_portserver_new(&second, &o));
  MC_ASSERT_ERR(mc_portserver_start(second), MC_ALREADY_EXISTS, addr);
  mc_portserver_free(second);
  mc_portserver_free(ps);

  /* A regular file is not replaced. */
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fclose(f);
  o.address = path;
  MC_ASSERT_OK(mc_portserver_new(&ps, &o));
  MC_ASSERT_ERR(mc_portserver_start(ps), MC_FAILED_PRECONDITION,
                "is not a socket");
  mc_portserver_free(ps);
  assert_int_equal(stat(path, &st), 0);
  unlink(path);
  rmdir(dir);
}

/* The server's thread takes none of the host process's signals. Seen in
 * the portserver_wire fuzz target: libFuzzer's SIGALRM lands on whichever
 * thread does not block it, and on the server's thread it would interrupt
 * its blocking port probes (a free port counted as busy) and run the
 * host's handler there. Here the main thread blocks SIGUSR1 and raises it:
 * with a server thread that accepted it, the handler would run there at
 * once (it is the only thread not blocking it); with the fix it waits,
 * pending, until the main thread unblocks it. */
static volatile sig_atomic_t usr1_elsewhere, usr1_here;
static pid_t usr1_main_tid;

static void on_usr1(int sig) {
  (void)sig;
  if ((pid_t)syscall(SYS_gettid) == usr1_main_tid)
    usr1_here++;
  else
    usr1_elsewhere++;
}

static void server_thread_takes_no_signals(void **state) {
  (void)state;
  char addr[80], pool[32];
  snprintf(pool, sizeof pool, "%d-%d", pool_base() + 60, pool_base() + 69);
  mc_portserver *ps = start_server(pool, addr, sizeof addr, 300);
  struct sigaction sa, old_sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1; /* no SA_RESTART, as libFuzzer's handlers */
  sigemptyset(&sa.sa_mask);
  assert_int_equal(sigaction(SIGUSR1, &sa, &old_sa), 0);
  usr1_main_tid = (pid_t)syscall(SYS_gettid);
  usr1_elsewhere = usr1_here = 0;
  sigset_t usr1, old_mask;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  assert_int_equal(pthread_sigmask(SIG_BLOCK, &usr1, &old_mask), 0);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(kill(getpid(), SIGUSR1), 0);
    /* A round trip: the server's thread ran, and left the kernel, since
     * the signal was raised. */
    assert_true(request_port(addr, getpid()) >= pool_base() + 60);
  }
  assert_int_equal(usr1_elsewhere, 0);
  assert_int_equal(usr1_here, 0);
  assert_int_equal(pthread_sigmask(SIG_SETMASK, &old_mask, NULL), 0);
  /* Unblocked, the pending signal is taken here. */
  assert_int_equal(usr1_here, 1);
  assert_int_equal(usr1_elsewhere, 0);
  assert_int_equal(stat_int(ps, "busy_ports_skipped"), 0);
  assert_int_equal(sigaction(SIGUSR1, &old_sa, NULL), 0);
  mc_portserver_free(ps);
}

static void stats_text_and_json(void **state) {
  (void)state;
  char addr[80];
  mc_portserver *ps = start_server("25110-25111", addr, sizeof addr, 0);
  assert_true(request_port(addr, getpid()) > 0);
  char *text = NULL;
  MC_ASSERT_OK(mc_portserver_stats(ps, 1, &text));
  assert_non_null(strstr(text, "num_ports_managed 2\n"));
  assert_non_null(strstr(text, "total_allocations 1\n"));
  char needle[32];
  snprintf(needle, sizeof needle, "pid %d ports [", (int)getpid());
  assert_non_null(strstr(text, needle));
  free(text);
  /* The "stats" control request answers with the same JSON. */
  char reply[4096];
  assert_true(raw_request(addr, "stats\n", 6, 0, reply, sizeof reply) > 0);
  json_t *j = json_loads(reply, 0, NULL);
  assert_non_null(j);
  assert_int_equal(json_integer_value(json_object_get(j, "ports_in_use")), 1);
  json_decref(j);
  MC_ASSERT_ERR(mc_portserver_stats(ps, 0, NULL), MC_INVALID_ARGUMENT, "NULL");
  mc_portserver_free(ps);
}

/* Request numbers are bounded at 10^12 as documented in portutil.h. The
 * bound was checked before the last digit was added, so up to ~10^13 got
 * through (found by the portserver_request fuzz target with
 * "0010000000000001"). */
static void request_numbers_are_bounded(void **state) {
  (void)state;
  long long v = 0;
  assert_int_equal(mc__portserver_parse_request("1000000000000", &v),
                   MC__REQ_PID);
  assert_true(v == 1000000000000LL);
  assert_int_equal(mc__portserver_parse_request("-1000000000000", &v),
                   MC__REQ_PID);
  assert_int_equal(mc__portserver_parse_request("1000000000001", &v),
                   MC__REQ_INVALID);
  assert_int_equal(mc__portserver_parse_request("0010000000000001", &v),
                   MC__REQ_INVALID);
  assert_int_equal(mc__portserver_parse_request("return 10000000000001", &v),
                   MC__REQ_INVALID);
  assert_int_equal(mc__portserver_parse_request(" 42 ", &v), MC__REQ_PID);
  assert_true(v == 42);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(request_numbers_are_bounded),
      cmocka_unit_test(bad_options_name_the_value),
      cmocka_unit_test(serves_returns_and_refuses),
      cmocka_unit_test(reclaims_after_owner_exit_and_not_before),
      cmocka_unit_test(detects_pid_reuse),
      cmocka_unit_test(requests_for_other_pids_are_visible),
      cmocka_unit_test(bad_requests_neither_crash_nor_stall),
      cmocka_unit_test(allocation_cost_does_not_grow_with_ports_held),
      cmocka_unit_test(socket_files_live_stale_and_foreign),
      cmocka_unit_test(stats_text_and_json),
      cmocka_unit_test(keeps_connections_when_asked),
      cmocka_unit_test(checks_ports_ahead_and_holds_them),
      cmocka_unit_test(checks_ahead_rest_and_resume),
      cmocka_unit_test(client_keeps_one_connection),
      cmocka_unit_test(server_thread_takes_no_signals),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
