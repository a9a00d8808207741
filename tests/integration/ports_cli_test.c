/* Tests of `minicluster portserver` as a process, and interoperability with
 * Debian's python3-portpicker in both directions: Python's client against
 * our daemon, our client against portpicker's own portserver. Registered
 * NO_VALGRIND: the subjects are other processes (the daemon, Python). */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <minicluster/ports.h>

#include "ports/portutil.h"

#define PYTHON "/usr/bin/python3"
#define PY_PORTSERVER "/usr/bin/portserver"

static char tmpdir[64];
static int lock_fd = -1;

/* Daemons of the running test: killed by the teardown when an assertion
 * leaves a test early, so no daemon outlives its test. */
static pid_t daemons[8];
static int n_daemons;

static int kill_daemons(void **state) {
  (void)state;
  for (int i = 0; i < n_daemons; i++) {
    if (daemons[i] > 0 && waitpid(daemons[i], NULL, WNOHANG) == 0) {
      kill(daemons[i], SIGKILL);
      waitpid(daemons[i], NULL, 0);
    }
  }
  n_daemons = 0;
  return 0;
}

static int setup_dir(void **state) {
  (void)state;
  /* These tests hand out fixed port ranges and bind them: two copies of
   * this test (other build trees on the same host) would compete for the
   * same ports, so copies take turns. */
  lock_fd = open("/tmp/minicluster-ports-cli-test.lock",
                 O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (lock_fd < 0 || flock(lock_fd, LOCK_EX) != 0)
    return -1;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mc-ports-cli-XXXXXX");
  if (mkdtemp(tmpdir) == NULL)
    return -1;
  unsetenv("PORTSERVER_ADDRESS");
  return 0;
}

static int teardown_dir(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  int rc = system(cmd) == 0 ? 0 : -1;
  close(lock_fd); /* releases the lock */
  return rc;
}

static const char *tmp_path(const char *name) {
  static char buf[4][160];
  static int i;
  i = (i + 1) % 4;
  snprintf(buf[i], sizeof buf[i], "%s/%s", tmpdir, name);
  return buf[i];
}

/* Starts argv with stdout and stderr sent to files; nofile > 0 sets the
 * child's descriptor limit (soft and hard) first. */
static pid_t spawn(char *const argv[], const char *out, const char *err,
                   rlim_t nofile) {
  pid_t pid = fork();
  if (pid == 0) {
    /* Dies with the test, whatever happens to the test. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, 1);
    dup2(e, 2);
    if (nofile > 0) {
      struct rlimit rl = {nofile, nofile};
      setrlimit(RLIMIT_NOFILE, &rl);
    }
    execv(argv[0], argv);
    _exit(127);
  }
  return pid;
}

static const char *cli(void) {
  static char path[512];
  snprintf(path, sizeof path, "%s", mc_test_binary_path("harness/minicluster"));
  return path;
}

static char *slurp(const char *path) {
  static char buf[1 << 16];
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f)
    fclose(f);
  buf[n] = '\0';
  return buf;
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

static int raw_request(const char *addr, const char *req, size_t len,
                       int half_close, char *reply, size_t cap) {
  int fd = connect_to(addr);
  if (fd < 0)
    return -1;
  if (len > 0)
    (void)!send(fd, req, len, MSG_NOSIGNAL);
  if (half_close)
    shutdown(fd, SHUT_WR);
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  size_t got = 0;
  ssize_t n;
  while (got + 1 < cap && (n = read(fd, reply + got, cap - 1 - got)) > 0)
    got += (size_t)n;
  reply[got] = '\0';
  close(fd);
  return (int)got;
}

static json_t *server_stats(const char *addr) {
  static char reply[1 << 20];
  if (raw_request(addr, "stats\n", 6, 0, reply, sizeof reply) <= 0)
    return NULL;
  return json_loads(reply, 0, NULL);
}

static long long stat_int(const char *addr, const char *key) {
  json_t *j = server_stats(addr);
  if (j == NULL)
    fail_msg("no stats from %s", addr);
  long long v = json_integer_value(json_object_get(j, key));
  json_decref(j);
  return v;
}

/* Polls until the daemon answers "stats" (ours) or accepts (Python's). */
static void wait_ready(const char *addr, pid_t pid, int ours) {
  for (int i = 0; i < 400; i++) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid)
      fail_msg("server for %s exited early (status %d)", addr, status);
    if (ours) {
      json_t *j = server_stats(addr);
      if (j != NULL) {
        json_decref(j);
        return;
      }
    } else {
      int fd = connect_to(addr);
      if (fd >= 0) {
        close(fd);
        return;
      }
    }
    usleep(25 * 1000);
  }
  fail_msg("server for %s never became ready", addr);
}

static pid_t start_daemon(const char *addr, const char *pool, const char *extra,
                          const char *tag, rlim_t nofile) {
  char a[160], p[64];
  snprintf(a, sizeof a, "--portserver_address=%s", addr);
  snprintf(p, sizeof p, "--portserver_static_pool=%s", pool);
  char out[64], err[64];
  snprintf(out, sizeof out, "%s.out", tag);
  snprintf(err, sizeof err, "%s.err", tag);
  char *argv[] = {
      (char *)cli(), "portserver", a, p, extra[0] ? (char *)extra : NULL, NULL};
  pid_t pid = spawn(argv, tmp_path(out), tmp_path(err), nofile);
  if (n_daemons < 8)
    daemons[n_daemons++] = pid;
  wait_ready(addr, pid, 1);
  return pid;
}

static int stop_daemon(pid_t pid, int sig) {
  kill(pid, sig);
  int status = -1;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void help_documents_every_flag(void **state) {
  (void)state;
  char *argv[] = {(char *)cli(), "portserver", "--help", NULL};
  pid_t pid = spawn(argv, tmp_path("help.out"), tmp_path("help.err"), 0);
  int status;
  waitpid(pid, &status, 0);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const char *out = slurp(tmp_path("help.out"));
  const char *flags[] = {"--portserver_address",
                         "--portserver_static_pool",
                         "--json-stats",
                         "--timeout-ms",
                         "--verbose",
                         "--help",
                         "SIGUSR1",
                         "SIGTERM",
                         "--portserver_unix_socket_address"};
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
    if (strstr(out, flags[i]) == NULL)
      fail_msg("--help does not mention %s", flags[i]);
  /* Bad flags: usage error, naming the value. */
  char *bad[] = {(char *)cli(), "portserver", "--timeout-ms=abc", NULL};
  pid = spawn(bad, tmp_path("bad.out"), tmp_path("bad.err"), 0);
  waitpid(pid, &status, 0);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 2);
  assert_non_null(strstr(slurp(tmp_path("bad.err")), "\"abc\""));
  char *badpool[] = {(char *)cli(), "portserver",
                     "--portserver_address=@mc-never",
                     "--portserver_static_pool=9-3", NULL};
  pid = spawn(badpool, tmp_path("bad.out"), tmp_path("bad.err"), 0);
  waitpid(pid, &status, 0);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
  assert_non_null(strstr(slurp(tmp_path("bad.err")), "\"9-3\""));
}

/* 16 processes x 500 picks each through the daemon, every port held bound
 * (TCP listening) until all processes have picked: no port is given to two
 * live processes, and every bind succeeds. Then the owners exit and all
 * ports come back, and not before. */
static void sixteen_processes_never_share_a_port(void **state) {
  (void)state;
  enum { PROCS = 16, PICKS = 500 };
  char addr[64];
  snprintf(addr, sizeof addr, "@mc-ports-cli-stress-%d", (int)getpid());
  pid_t d =
      start_daemon(addr, "15000-24999", "--timeout-ms=10000", "stress", 0);
  int results[PROCS][2], barrier[2];
  assert_int_equal(pipe(barrier), 0);
  pid_t kids[PROCS];
  for (int k = 0; k < PROCS; k++) {
    assert_int_equal(pipe(results[k]), 0);
    kids[k] = fork();
    if (kids[k] == 0) {
      close(barrier[1]);
      mc_pick_options o = MC_PICK_OPTIONS_INIT;
      o.portserver_address = addr;
      int ports[PICKS + 1];
      int failures = 0;
      for (int i = 0; i < PICKS; i++) {
        ports[i] = 0;
        if (mc_pick_unused_port_ex(&ports[i], &o, NULL) != MC_OK) {
          failures++;
          continue;
        }
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)ports[i]);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
            listen(fd, 1) != 0)
          failures++;
        /* fd stays open: the port is in use until this process exits. */
      }
      ports[PICKS] = failures;
      (void)!write(results[k][1], ports, sizeof ports);
      char b;
      (void)!read(barrier[0], &b, 1); /* hold until the parent is done */
      _exit(0);
    }
    close(results[k][1]);
  }
  close(barrier[0]);
  static unsigned char seen[65536];
  memset(seen, 0, sizeof seen);
  int dups = 0, failures = 0;
  for (int k = 0; k < PROCS; k++) {
    int ports[PICKS + 1];
    size_t got = 0;
    while (got < sizeof ports) {
      ssize_t n = read(results[k][0], (char *)ports + got, sizeof ports - got);
      assert_true(n > 0);
      got += (size_t)n;
    }
    close(results[k][0]);
    failures += ports[PICKS];
    for (int i = 0; i < PICKS; i++) {
      if (ports[i] == 0)
        continue;
      assert_true(ports[i] >= 15000 && ports[i] <= 24999);
      dups += seen[ports[i]];
      seen[ports[i]] = 1;
    }
  }
  assert_int_equal(dups, 0);
  assert_int_equal(failures, 0);
  /* All owners alive: nothing reclaimed, everything in use. */
  assert_int_equal(stat_int(addr, "ports_in_use"), PROCS * PICKS);
  assert_int_equal(stat_int(addr, "owners_alive"), PROCS);
  assert_int_equal(stat_int(addr, "reclaimed_ports"), 0);
  close(barrier[1]);
  for (int k = 0; k < PROCS; k++)
    waitpid(kids[k], NULL, 0);
  long long in_use = -1;
  for (int i = 0; i < 200 && in_use != 0; i++) {
    in_use = stat_int(addr, "ports_in_use");
    if (in_use != 0)
      usleep(50 * 1000);
  }
  assert_int_equal(in_use, 0);
  assert_int_equal(stat_int(addr, "reclaimed_ports"), PROCS * PICKS);
  assert_int_equal(stop_daemon(d, SIGTERM), 0);
}

static void bad_requests_and_idle_crowds(void **state) {
  (void)state;
  char addr[64];
  snprintf(addr, sizeof addr, "@mc-ports-cli-bad-%d", (int)getpid());
  pid_t d = start_daemon(addr, "26000-26049", "--timeout-ms=60000", "bad", 0);
  char reply[256];
  assert_int_equal(raw_request(addr, "garbage\n", 8, 0, reply, sizeof reply),
                   0);
  char big[8192];
  memset(big, '1', sizeof big);
  assert_true(raw_request(addr, big, sizeof big, 0, reply, sizeof reply) <= 0);
  char pidreq[32];
  int n = snprintf(pidreq, sizeof pidreq, "%d", (int)getpid());
  assert_true(raw_request(addr, pidreq, (size_t)n, 1, reply, sizeof reply) > 0);
  assert_true(atoi(reply) >= 26000);
  assert_int_equal(stat_int(addr, "client_request_errors"), 2);

  /* 10,000 idle connections (the daemon raises its descriptor limit to the
   * hard limit; so does this test, within what the host allows). */
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  int want = 10000;
  if ((rlim_t)want + 200 > rl.rlim_cur)
    want = (int)rl.rlim_cur - 200;
  int *idle = calloc((size_t)want, sizeof *idle);
  int opened = 0;
  for (int i = 0; i < want; i++) {
    idle[i] = connect_to(addr);
    if (idle[i] < 0)
      break;
    opened++;
  }
  print_message("opened %d idle connections (limit %llu)\n", opened,
                (unsigned long long)rl.rlim_cur);
  assert_int_equal(opened, want);
  /* While they sit there, real requests are served. */
  mc_pick_options o = MC_PICK_OPTIONS_INIT;
  o.portserver_address = addr;
  int p;
  MC_ASSERT_OK(mc_pick_unused_port_ex(&p, &o, NULL));
  assert_true(stat_int(addr, "open_connections") >= want);
  for (int i = 0; i < opened; i++)
    close(idle[i]);
  free(idle);
  MC_ASSERT_OK(mc_return_port(p));
  assert_int_equal(kill(d, 0), 0);
  assert_int_equal(waitpid(d, NULL, WNOHANG), 0);
  assert_int_equal(stop_daemon(d, SIGINT), 0);

  /* Beyond the daemon's descriptor limit: it stops accepting for a moment
   * instead of spinning or dying, and serves again once the idle clients
   * time out. */
  snprintf(addr, sizeof addr, "@mc-ports-cli-emfile-%d", (int)getpid());
  d = start_daemon(addr, "26050-26059", "--timeout-ms=500", "emfile", 64);
  int crowd[300];
  for (int i = 0; i < 300; i++)
    crowd[i] = connect_to(addr); /* the backlog takes what accept cannot */
  int got = 0;
  for (int i = 0; i < 100 && got == 0; i++) {
    if (mc_pick_unused_port_ex(&got, &o, NULL) != MC_OK) {
      got = 0;
      usleep(100 * 1000);
    }
  }
  assert_true(got >= 26050 && got <= 26059);
  for (int i = 0; i < 300; i++)
    if (crowd[i] >= 0)
      close(crowd[i]);
  assert_true(stat_int(addr, "connection_timeouts") > 0);
  assert_true(stat_int(addr, "accept_errors") > 0);
  MC_ASSERT_OK(mc_return_port(got));
  assert_int_equal(stop_daemon(d, SIGTERM), 0);
}

static void signals_stats_and_socket_files(void **state) {
  (void)state;
  char path[160];
  snprintf(path, sizeof path, "%s", tmp_path("ps.sock"));
  /* A stale socket file from a dead daemon. */
  struct sockaddr_un sa;
  socklen_t len;
  MC_ASSERT_OK(mc__portserver_sockaddr(path, &sa, &len));
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  assert_int_equal(bind(s, (struct sockaddr *)&sa, len), 0);
  close(s);
  pid_t d = start_daemon(path, "26060-26069", "--json-stats", "sig", 0);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);

  /* A second daemon on the same address refuses with a clear error. */
  char a[200];
  snprintf(a, sizeof a, "--portserver_address=%s", path);
  char *argv[] = {(char *)cli(), "portserver", a, NULL};
  pid_t second = spawn(argv, tmp_path("2.out"), tmp_path("2.err"), 0);
  int status;
  waitpid(second, &status, 0);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
  const char *err = slurp(tmp_path("2.err"));
  assert_non_null(strstr(err, "already running"));
  assert_non_null(strstr(err, path));

  setenv("PORTSERVER_ADDRESS", path, 1);
  int p;
  MC_ASSERT_OK(mc_pick_unused_port(&p));
  assert_true(p >= 26060 && p <= 26069);
  unsetenv("PORTSERVER_ADDRESS");

  /* SIGUSR1: one JSON line on stdout with the ports by pid. */
  kill(d, SIGUSR1);
  json_t *j = NULL;
  for (int i = 0; i < 200 && j == NULL; i++) {
    j = json_loads(slurp(tmp_path("sig.out")), JSON_DISABLE_EOF_CHECK, NULL);
    if (j == NULL)
      usleep(25 * 1000);
  }
  assert_non_null(j);
  assert_int_equal(json_integer_value(json_object_get(j, "total_allocations")),
                   1);
  json_t *owner = json_array_get(json_object_get(j, "in_use_by_pid"), 0);
  assert_int_equal(json_integer_value(json_object_get(owner, "pid")), getpid());
  json_decref(j);
  MC_ASSERT_OK(mc_return_port(p));

  assert_int_equal(stop_daemon(d, SIGTERM), 0);
  assert_int_equal(stat(path, &st), -1); /* removed on a clean stop */

  /* Text statistics on stderr without --json-stats. */
  d = start_daemon(path, "26060-26069", "--verbose", "sig2", 0);
  kill(d, SIGUSR1);
  int found = 0;
  for (int i = 0; i < 200 && !found; i++) {
    found = strstr(slurp(tmp_path("sig2.err")), "denied_allocations") != NULL;
    if (!found)
      usleep(25 * 1000);
  }
  assert_true(found);
  assert_int_equal(stop_daemon(d, SIGINT), 0);
}

/* Python's portpicker, unchanged, gets its ports from our daemon. */
static void python_portpicker_uses_our_daemon(void **state) {
  (void)state;
  char addr[64];
  snprintf(addr, sizeof addr, "@mc-ports-cli-py-%d", (int)getpid());
  pid_t d = start_daemon(addr, "26070-26099", "", "py", 0);
  setenv("PORTSERVER_ADDRESS", addr, 1);
  char *argv[] = {PYTHON, "-c",
                  "import os, portpicker\n"
                  "ports = [portpicker.pick_unused_port() for _ in range(10)]\n"
                  "assert len(set(ports)) == 10, ports\n"
                  "direct = portpicker.get_port_from_port_server(os.environ["
                  "'PORTSERVER_ADDRESS'])\n"
                  "print(os.getpid(), ' '.join(map(str, ports + [direct])))\n",
                  NULL};
  pid_t py = spawn(argv, tmp_path("pyc.out"), tmp_path("pyc.err"), 0);
  int status;
  waitpid(py, &status, 0);
  unsetenv("PORTSERVER_ADDRESS");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("python failed: %s", slurp(tmp_path("pyc.err")));
  char *out = slurp(tmp_path("pyc.out"));
  char *tok = strtok(out, " \n");
  assert_non_null(tok);
  int count = 0;
  while ((tok = strtok(NULL, " \n")) != NULL) {
    int port = atoi(tok);
    /* Only our daemon hands out ports in this range. */
    assert_true(port >= 26070 && port <= 26099);
    count++;
  }
  assert_int_equal(count, 11);
  assert_int_equal(stat_int(addr, "total_allocations"), 11);
  /* Python has exited: its ports come back. */
  long long in_use = -1;
  for (int i = 0; i < 100 && in_use != 0; i++) {
    in_use = stat_int(addr, "ports_in_use");
    if (in_use != 0)
      usleep(50 * 1000);
  }
  assert_int_equal(in_use, 0);
  assert_int_equal(stop_daemon(d, SIGTERM), 0);
}

/* Our client gets ports from portpicker's own portserver. */
static void our_client_uses_portpickers_server(void **state) {
  (void)state;
  char addr[64], a[128];
  snprintf(addr, sizeof addr, "@mc-ports-cli-pyserver-%d", (int)getpid());
  snprintf(a, sizeof a, "--portserver_address=%s", addr);
  char *argv[] = {PYTHON, PY_PORTSERVER, a,
                  "--portserver_static_pool=29200-29299", NULL};
  pid_t d = spawn(argv, tmp_path("pys.out"), tmp_path("pys.err"), 0);
  daemons[n_daemons++] = d;
  wait_ready(addr, d, 0);
  setenv("PORTSERVER_ADDRESS", addr, 1);
  int ports[5];
  for (int i = 0; i < 5; i++) {
    mc_pick_info info;
    MC_ASSERT_OK(mc_pick_unused_port_ex(&ports[i], NULL, &info));
    assert_int_equal(info.source, MC_PORT_FROM_SERVER);
    assert_true(ports[i] >= 29200 && ports[i] <= 29299);
    for (int k = 0; k < i; k++)
      assert_int_not_equal(ports[i], ports[k]);
  }
  /* portpicker's server refuses init: reported, not hidden. */
  mc_pick_options o = MC_PICK_OPTIONS_INIT;
  o.pid = 1;
  int p;
  MC_ASSERT_ERR(mc_pick_unused_port_ex(&p, &o, NULL), MC_RESOURCE_EXHAUSTED,
                "refused");
  /* It ignores returns: the port stays with this process for reuse, as
   * portpicker does, and comes out of the next pick. */
  MC_ASSERT_OK(mc_return_port(ports[0]));
  mc_pick_info info;
  MC_ASSERT_OK(mc_pick_unused_port_ex(&p, NULL, &info));
  assert_int_equal(p, ports[0]);
  assert_int_equal(info.source, MC_PORT_FROM_RESERVED);
  unsetenv("PORTSERVER_ADDRESS");
  kill(d, SIGINT);
  int status;
  waitpid(d, &status, 0);
  /* Our client asks with "+<pid>" (for a kept connection); portpicker's
   * server reads it as the pid: five allocations, and the one denial is
   * the request for init. */
  const char *st = slurp(tmp_path("pys.err"));
  assert_non_null(strstr(st, "total-allocations 5"));
  assert_non_null(strstr(st, "denied-allocations 1"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(help_documents_every_flag, kill_daemons),
      cmocka_unit_test_teardown(sixteen_processes_never_share_a_port,
                                kill_daemons),
      cmocka_unit_test_teardown(bad_requests_and_idle_crowds, kill_daemons),
      cmocka_unit_test_teardown(signals_stats_and_socket_files, kill_daemons),
      cmocka_unit_test_teardown(python_portpicker_uses_our_daemon,
                                kill_daemons),
      cmocka_unit_test_teardown(our_client_uses_portpickers_server,
                                kill_daemons),
  };
  return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
