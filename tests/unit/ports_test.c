/* Tests of the port picker (mc_pick_unused_port and friends) without a
 * working port server: local picking, uniqueness, returns, reserved ports,
 * the free check, and how server trouble is reported. */
#include "testutil.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <minicluster/ports.h>

#include "ports/picker_internal.h"
#include "ports/portutil.h"

static int setup(void **state) {
  (void)state;
  unsetenv("PORTSERVER_ADDRESS");
  return 0;
}

static int bind_tcp(int port, int reuse, int do_listen) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  if (reuse)
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = htons((uint16_t)port);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      (do_listen && listen(fd, 8) != 0)) {
    close(fd);
    return -1;
  }
  return fd;
}

static void picks_are_distinct_bindable_and_reusable(void **state) {
  (void)state;
  enum { N = 200 };
  static int ports[N];
  int fds_before = mc_test_count_fds();
  for (int i = 0; i < N; i++) {
    mc_pick_info info;
    MC_ASSERT_OK(mc_pick_unused_port_ex(&ports[i], NULL, &info));
    assert_true(ports[i] >= 1 && ports[i] <= 65535);
    assert_true(info.source == MC_PORT_FROM_KERNEL ||
                info.source == MC_PORT_FROM_RANDOM);
    assert_int_equal(info.server_code, MC_OK);
    for (int j = 0; j < i; j++)
      assert_int_not_equal(ports[i], ports[j]);
  }
  /* The picker leaves no descriptor behind. */
  assert_int_equal(mc_test_count_fds(), fds_before);
  /* A picked port is usable on TCP and UDP right away. */
  int fd = bind_tcp(ports[0], 0, 1);
  assert_true(fd >= 0);
  close(fd);
  int ufd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)ports[1]);
  assert_int_equal(bind(ufd, (struct sockaddr *)&a, sizeof a), 0);
  close(ufd);
  for (int i = 0; i < N; i++)
    MC_ASSERT_OK(mc_return_port(ports[i]));
  /* Returning twice, or a port never picked, names the port. */
  MC_ASSERT_ERR(mc_return_port(ports[0]), MC_NOT_FOUND, "port");
  char needle[32];
  snprintf(needle, sizeof needle, "port %d", ports[0]);
  MC_ASSERT_ERR(mc_return_port(ports[0]), MC_NOT_FOUND, needle);
  MC_ASSERT_ERR(mc_return_port(0), MC_NOT_FOUND, "port 0");
  MC_ASSERT_ERR(mc_return_port(70000), MC_NOT_FOUND, "port 70000");
}

typedef struct {
  int ports[100];
  mc_code rc;
} thread_arg;

static void *pick_many(void *p) {
  thread_arg *t = p;
  t->rc = MC_OK;
  for (int i = 0; i < 100 && t->rc == MC_OK; i++)
    t->rc = mc_pick_unused_port(&t->ports[i]);
  return NULL;
}

static void threads_never_get_the_same_port(void **state) {
  (void)state;
  enum { T = 4 };
  static thread_arg args[T];
  pthread_t th[T];
  for (int i = 0; i < T; i++)
    assert_int_equal(pthread_create(&th[i], NULL, pick_many, &args[i]), 0);
  for (int i = 0; i < T; i++)
    pthread_join(th[i], NULL);
  static unsigned char seen[65536];
  memset(seen, 0, sizeof seen);
  for (int i = 0; i < T; i++) {
    assert_int_equal(args[i].rc, MC_OK);
    for (int j = 0; j < 100; j++) {
      assert_int_equal(seen[args[i].ports[j]], 0);
      seen[args[i].ports[j]] = 1;
    }
  }
  for (int i = 0; i < T; i++)
    for (int j = 0; j < 100; j++)
      MC_ASSERT_OK(mc_return_port(args[i].ports[j]));
}

static void reserved_ports_come_first_and_come_back(void **state) {
  (void)state;
  int p;
  MC_ASSERT_OK(mc_pick_unused_port(&p));
  MC_ASSERT_OK(mc_return_port(p));
  MC_ASSERT_OK(mc_add_reserved_port(p));
  MC_ASSERT_ERR(mc_add_reserved_port(p), MC_ALREADY_EXISTS, "port");
  int got;
  mc_pick_info info;
  MC_ASSERT_OK(mc_pick_unused_port_ex(&got, NULL, &info));
  assert_int_equal(got, p);
  assert_int_equal(info.source, MC_PORT_FROM_RESERVED);
  MC_ASSERT_OK(mc_return_port(got));
  MC_ASSERT_OK(mc_pick_unused_port_ex(&got, NULL, &info));
  assert_int_equal(got, p);
  MC_ASSERT_OK(mc_return_port(got));
  MC_ASSERT_ERR(mc_return_port(got), MC_NOT_FOUND, "already returned");
  MC_ASSERT_ERR(mc_add_reserved_port(0), MC_INVALID_ARGUMENT, "port 0");
  MC_ASSERT_ERR(mc_add_reserved_port(65536), MC_INVALID_ARGUMENT, "port 65536");
  /* Leave the reserved port in the picker's pool: later tests pick from the
   * kernel only after it is used up, so take it out again. */
  MC_ASSERT_OK(mc_pick_unused_port(&got));
  assert_int_equal(got, p);
}

static void free_check_is_stricter_than_portpickers(void **state) {
  (void)state;
  int p;
  MC_ASSERT_OK(mc_pick_unused_port(&p));
  int is_free = -1;
  MC_ASSERT_OK(mc_port_is_free(p, &is_free));
  assert_int_equal(is_free, 1);

  /* A socket bound with SO_REUSEADDR that does not listen yet: portpicker's
   * check (SO_REUSEADDR bind) passes, ours does not. */
  int fd = bind_tcp(p, 1, 0);
  assert_true(fd >= 0);
  assert_int_equal(mc__port_bind(p, SOCK_STREAM, 1), p);
  MC_ASSERT_OK(mc_port_is_free(p, &is_free));
  assert_int_equal(is_free, 0);
  close(fd);

  /* A port in TIME_WAIT: a server that set SO_REUSEADDR (as servers do)
   * closed the connection first. A TIME_WAIT left by a socket without
   * SO_REUSEADDR fails portpicker's check too. */
  int lfd = bind_tcp(p, 1, 1);
  assert_true(lfd >= 0);
  int cfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)p);
  assert_int_equal(connect(cfd, (struct sockaddr *)&a, sizeof a), 0);
  int afd = accept(lfd, NULL, NULL);
  assert_true(afd >= 0);
  close(afd); /* active close: TIME_WAIT on port p */
  char b;
  assert_int_equal(read(cfd, &b, 1), 0);
  close(cfd);
  close(lfd);
  assert_int_equal(mc__port_bind(p, SOCK_STREAM, 1), p);
  MC_ASSERT_OK(mc_port_is_free(p, &is_free));
  assert_int_equal(is_free, 0);

  /* A listener: busy, and it accepts connections. */
  MC_ASSERT_OK(mc_pick_unused_port(&p));
  lfd = bind_tcp(p, 0, 1);
  assert_true(lfd >= 0);
  assert_int_equal(mc__port_accepts(p), 1);
  assert_int_equal(mc__port_free_strict(p), 0);
  /* The server's reusable probe: spent on a listener, reused while
   * refused. */
  int probe = -1;
  assert_int_equal(mc__port_accepts_probe(&probe, p), 1);
  assert_int_equal(probe, -1);
  close(lfd);
  assert_int_equal(mc__port_accepts(p), 0);
  assert_int_equal(mc__port_free_strict(p), 1);
  assert_int_equal(mc__port_accepts_probe(&probe, p), 0);
  int kept = probe;
  assert_true(kept >= 0);
  assert_int_equal(mc__port_accepts_probe(&probe, p), 0);
  assert_int_equal(mc__port_free_probe(&probe, p), 1);
  assert_int_equal(probe, kept);
  lfd = bind_tcp(p, 0, 1);
  assert_int_equal(mc__port_free_probe(&probe, p), 0); /* bind fails */
  assert_int_equal(mc__port_accepts_probe(&probe, p), 1);
  assert_int_equal(probe, -1);
  close(lfd);
  MC_ASSERT_OK(mc_return_port(p));

  MC_ASSERT_ERR(mc_port_is_free(0, &is_free), MC_INVALID_ARGUMENT, "port 0");
  MC_ASSERT_ERR(mc_port_is_free(65536, &is_free), MC_INVALID_ARGUMENT,
                "port 65536");
}

static void malformed_address_is_invalid_argument(void **state) {
  (void)state;
  int p;
  setenv("PORTSERVER_ADDRESS", "@", 1);
  MC_ASSERT_ERR(mc_pick_unused_port(&p), MC_INVALID_ARGUMENT,
                "PORTSERVER_ADDRESS: port server address \"@\"");
  /* Even with fallback: a malformed address is a configuration bug. */
  mc_pick_options o = MC_PICK_OPTIONS_INIT;
  o.server_fallback = 1;
  MC_ASSERT_ERR(mc_pick_unused_port_ex(&p, &o, NULL), MC_INVALID_ARGUMENT,
                "\"@\"");
  char longpath[200];
  memset(longpath, 'x', sizeof longpath - 1);
  longpath[0] = '/';
  longpath[sizeof longpath - 1] = '\0';
  setenv("PORTSERVER_ADDRESS", longpath, 1);
  MC_ASSERT_ERR(mc_pick_unused_port(&p), MC_INVALID_ARGUMENT, "199 bytes");
  unsetenv("PORTSERVER_ADDRESS");
  o.server_fallback = 0;
  o.portserver_address = "@";
  MC_ASSERT_ERR(mc_pick_unused_port_ex(&p, &o, NULL), MC_INVALID_ARGUMENT,
                "portserver_address: ");
  o = (mc_pick_options)MC_PICK_OPTIONS_INIT;
  o.version = 99;
  MC_ASSERT_ERR(mc_pick_unused_port_ex(&p, &o, NULL), MC_INVALID_ARGUMENT,
                "version 99");
  o = (mc_pick_options)MC_PICK_OPTIONS_INIT;
  o.timeout_ms = -5;
  MC_ASSERT_ERR(mc_pick_unused_port_ex(&p, &o, NULL), MC_INVALID_ARGUMENT,
                "-5");
  MC_ASSERT_ERR(mc_pick_unused_port(NULL), MC_INVALID_ARGUMENT, "NULL");
}

static void unreachable_server_is_reported_or_fallen_back(void **state) {
  (void)state;
  char addr[64];
  snprintf(addr, sizeof addr, "@mc-ports-test-nobody-%d", (int)getpid());
  setenv("PORTSERVER_ADDRESS", addr, 1);
  int p;
  MC_ASSERT_ERR(mc_pick_unused_port(&p), MC_UNAVAILABLE, addr);
  MC_ASSERT_ERR(mc_pick_unused_port(&p), MC_UNAVAILABLE, "unreachable");

  /* The caller opts into portpicker's behaviour and is told. */
  mc_pick_options o = MC_PICK_OPTIONS_INIT;
  o.server_fallback = 1;
  mc_pick_info info;
  MC_ASSERT_OK(mc_pick_unused_port_ex(&p, &o, &info));
  assert_true(info.source == MC_PORT_FROM_KERNEL ||
              info.source == MC_PORT_FROM_RANDOM);
  assert_int_equal(info.server_code, MC_UNAVAILABLE);
  assert_non_null(strstr(info.server_message, addr));
  MC_ASSERT_OK(mc_return_port(p));

  /* A filesystem path that does not exist. */
  setenv("PORTSERVER_ADDRESS", "/nonexistent-dir/portserver.sock", 1);
  MC_ASSERT_ERR(mc_pick_unused_port(&p), MC_UNAVAILABLE,
                "/nonexistent-dir/portserver.sock");
  /* An empty variable means no server (as `PORTSERVER_ADDRESS= cmd`). */
  setenv("PORTSERVER_ADDRESS", "", 1);
  MC_ASSERT_OK(mc_pick_unused_port(&p));
  MC_ASSERT_OK(mc_return_port(p));
  unsetenv("PORTSERVER_ADDRESS");
}

/* A Unix listener standing in for a port server, at
 * "@mc-ports-test-<what>-<pid>" (written to addr). Connections wait in its
 * backlog until someone accepts them. */
static int fake_listener(const char *what, char *addr, size_t cap) {
  snprintf(addr, cap, "@mc-ports-test-%s-%d", what, (int)getpid());
  struct sockaddr_un sa;
  socklen_t len;
  MC_ASSERT_OK(mc__portserver_sockaddr(addr, &sa, &len));
  int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
  assert_int_equal(bind(lfd, (struct sockaddr *)&sa, len), 0);
  assert_int_equal(listen(lfd, 16), 0);
  return lfd;
}

static void hung_server_times_out(void **state) {
  (void)state;
  /* A server that accepts connections (the kernel does, via the backlog)
   * but never replies: portpicker would hang here forever. */
  char addr[64];
  int lfd = fake_listener("hung", addr, sizeof addr);
  mc_pick_options o = MC_PICK_OPTIONS_INIT;
  o.portserver_address = addr;
  o.timeout_ms = 200;
  int p;
  MC_ASSERT_ERR(mc_pick_unused_port_ex(&p, &o, NULL), MC_DEADLINE_EXCEEDED,
                addr);
  MC_ASSERT_ERR(mc_pick_unused_port_ex(&p, &o, NULL), MC_DEADLINE_EXCEEDED,
                "200 ms");
  o.server_fallback = 1;
  mc_pick_info info;
  MC_ASSERT_OK(mc_pick_unused_port_ex(&p, &o, &info));
  assert_int_equal(info.server_code, MC_DEADLINE_EXCEEDED);
  MC_ASSERT_OK(mc_return_port(p));
  close(lfd);
}

typedef struct {
  int lfd;
  const char *replies[3];
} fake_server;

/* Accepts one connection per reply, reads the request line, answers and
 * closes, like portpicker's server. */
static void *fake_serve(void *p) {
  fake_server *f = p;
  for (int i = 0; i < 3; i++) {
    int c = accept(f->lfd, NULL, NULL);
    if (c < 0)
      return NULL;
    char buf[64];
    (void)!read(c, buf, sizeof buf);
    (void)!write(c, f->replies[i], strlen(f->replies[i]));
    close(c);
  }
  return NULL;
}

static void refusals_and_bad_replies_are_reported(void **state) {
  (void)state;
  char addr[64];
  int lfd = fake_listener("bad", addr, sizeof addr);
  fake_server f = {lfd, {"", "hello\n", "70000\n"}};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, fake_serve, &f), 0);
  mc_pick_options o = MC_PICK_OPTIONS_INIT;
  o.portserver_address = addr;
  int p;
  MC_ASSERT_ERR(mc_pick_unused_port_ex(&p, &o, NULL), MC_RESOURCE_EXHAUSTED,
                "refused");
  MC_ASSERT_ERR(mc_pick_unused_port_ex(&p, &o, NULL), MC_UNAVAILABLE,
                "\"hello\"");
  MC_ASSERT_ERR(mc_pick_unused_port_ex(&p, &o, NULL), MC_UNAVAILABLE,
                "\"70000\"");
  pthread_join(th, NULL);
  close(lfd);
}

/* Accepts one connection, answers its first request and then never
 * again, until the client hangs up. */
static void *answer_once_then_hang(void *p) {
  int lfd = *(int *)p;
  int c = accept(lfd, NULL, NULL);
  if (c < 0)
    return NULL;
  char buf[64];
  (void)!read(c, buf, sizeof buf);
  (void)!write(c, "29398\n", 6);
  while (read(c, buf, sizeof buf) > 0)
    ;
  close(c);
  return NULL;
}

static void kept_connection_that_hangs_times_out_once(void **state) {
  (void)state;
  char addr[64];
  int lfd = fake_listener("once", addr, sizeof addr);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, answer_once_then_hang, &lfd), 0);
  mc_pick_options o = MC_PICK_OPTIONS_INIT;
  o.portserver_address = addr;
  o.timeout_ms = 200;
  int p;
  MC_ASSERT_OK(mc_pick_unused_port_ex(&p, &o, NULL));
  assert_int_equal(p, 29398);
  /* The second request goes out on the kept connection and is never
   * answered: the deadline holds, and a server that hangs is not asked
   * again on a new connection. */
  MC_ASSERT_ERR(mc_pick_unused_port_ex(&p, &o, NULL), MC_DEADLINE_EXCEEDED,
                "200 ms");
  pthread_join(th, NULL); /* the timed-out connection was closed */
  fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
  assert_true(accept(lfd, NULL, NULL) < 0); /* no second connection */
  close(lfd);
}

static void random_fallback_stays_outside_the_ephemeral_range(void **state) {
  (void)state;
  int lo = 32768, hi = 60999;
  FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  if (f != NULL) {
    assert_int_equal(fscanf(f, "%d %d", &lo, &hi), 2);
    fclose(f);
  }
  mc__picker_kernel_tries = 0;
  enum { N = 50 };
  int ports[N];
  for (int i = 0; i < N; i++) {
    mc_pick_info info;
    MC_ASSERT_OK(mc_pick_unused_port_ex(&ports[i], NULL, &info));
    assert_int_equal(info.source, MC_PORT_FROM_RANDOM);
    assert_true(ports[i] >= 1024 && ports[i] <= 65535);
    assert_true(ports[i] < lo || ports[i] > hi);
    int is_free = 0;
    MC_ASSERT_OK(mc_port_is_free(ports[i], &is_free));
    assert_int_equal(is_free, 1);
    for (int j = 0; j < i; j++)
      assert_int_not_equal(ports[i], ports[j]);
  }
  /* Nothing left to try: RESOURCE_EXHAUSTED naming the range. */
  mc__picker_random_tries = 0;
  int p;
  char needle[64];
  snprintf(needle, sizeof needle, "ephemeral range %d-%d", lo, hi);
  MC_ASSERT_ERR(mc_pick_unused_port(&p), MC_RESOURCE_EXHAUSTED, needle);
  mc__picker_kernel_tries = 10;
  mc__picker_random_tries = 100;
  for (int i = 0; i < N; i++)
    MC_ASSERT_OK(mc_return_port(ports[i]));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(picks_are_distinct_bindable_and_reusable, setup),
      cmocka_unit_test_setup(threads_never_get_the_same_port, setup),
      cmocka_unit_test_setup(reserved_ports_come_first_and_come_back, setup),
      cmocka_unit_test_setup(free_check_is_stricter_than_portpickers, setup),
      cmocka_unit_test_setup(malformed_address_is_invalid_argument, setup),
      cmocka_unit_test_setup(unreachable_server_is_reported_or_fallen_back,
                             setup),
      cmocka_unit_test_setup(hung_server_times_out, setup),
      cmocka_unit_test_setup(random_fallback_stays_outside_the_ephemeral_range,
                             setup),
      cmocka_unit_test_setup(refusals_and_bad_replies_are_reported, setup),
      cmocka_unit_test_setup(kept_connection_that_hangs_times_out_once, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
