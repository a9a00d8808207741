/* Fuzz target: the port server's wire protocol, and its pool option.
 *
 * A port server (small pool, abstract socket named after the pid) starts
 * once per process. Each input is sent as one connection's bytes (then the
 * write side is shut, as portpicker's client does after its request); the
 * reply must be made of the protocol's answers (see check_reply): several
 * when "+PID" requests keep the connection open.
 * Afterwards a "stats" request must still be answered. The input, cut at
 * the first NUL byte, is also tried as the static_pool option: accepted,
 * or INVALID_ARGUMENT with a message. */
#include "fuzz.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define POOL_LOW 20000
#define POOL_HIGH 20015

static mc_portserver *server;
static char address[64];

static void stop_server(void) {
  mc_portserver_free(server);
}

static void start_server(void) {
  snprintf(address, sizeof address, "@mc-fuzz-portserver-%ld", (long)getpid());
  mc_portserver_options o = MC_PORTSERVER_OPTIONS_INIT;
  char pool[32];
  snprintf(pool, sizeof pool, "%d-%d", POOL_LOW, POOL_HIGH);
  o.address = address;
  o.static_pool = pool;
  o.conn_timeout_ms = 200;
  MC_FUZZ_CHECK(mc_portserver_new(&server, &o) == MC_OK);
  MC_FUZZ_CHECK(mc_portserver_start(server) == MC_OK);
  atexit(stop_server);
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A reply that does not come: fails with what is known (the server's own
 * idle timeout is 200 ms, so 8 s means a connection the server forgot, or a
 * stalled event loop). */
static void fail_stall(const uint8_t *data, size_t size, long long waited,
                       size_t got) {
  fprintf(stderr,
          "portserver_wire: no reply and no close within %lld ms (server "
          "idle timeout 200 ms); %zu input bytes sent, %zu reply bytes "
          "read; input:",
          waited, size, got);
  for (size_t i = 0; i < size && i < 64; i++)
    fprintf(stderr, " %02x", data[i]);
  fprintf(stderr, "%s\n", size > 64 ? " ..." : "");
  /* Taken under the server's lock: if its loop is stuck holding it, this
   * hangs and libFuzzer's -timeout reports the threads instead. */
  char *st = NULL;
  if (mc_portserver_stats(server, 0, &st) == MC_OK)
    fprintf(stderr, "portserver_wire: server stats: %s\n", st);
  mc_free(st);
  mc_fuzz_fail("portserver_wire: connection stalled");
}

/* Sends data on a new connection and reads the whole reply (up to cap-1
 * bytes) within 8 s. Returns the reply length. Every wait restarts after
 * a signal with the time that is left: libFuzzer's -timeout timer sends
 * SIGALRM every timeout/2+1 s, and a poll() it interrupts returns at once
 * (EINTR), which is not a stall. */
static size_t exchange(const uint8_t *data, size_t size, char *reply,
                       size_t cap) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  MC_FUZZ_CHECK(fd >= 0);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t alen = strlen(address);
  memcpy(sa.sun_path, address, alen);
  sa.sun_path[0] = '\0';
  if (connect(fd, (struct sockaddr *)&sa,
              (socklen_t)(offsetof(struct sockaddr_un, sun_path) + alen)) != 0)
    mc_fuzz_fail("connect %s: %s", address, strerror(errno));
  /* The server may close early (a full line was read, or too long a
   * line): later sends may fail, which is fine. */
  size_t off = 0;
  while (off < size) {
    ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    off += (size_t)n;
  }
  shutdown(fd, SHUT_WR);
  size_t len = 0;
  long long start = now_ms(), deadline = start + 8000;
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    long long left = deadline - now_ms();
    int r = left > 0 ? poll(&p, 1, (int)left) : 0;
    if (r < 0 && errno == EINTR)
      continue;
    MC_FUZZ_CHECK(r >= 0);
    if (r == 0)
      fail_stall(data, size, now_ms() - start, len);
    ssize_t n = recv(fd, reply + len, cap - 1 - len, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == ECONNRESET)
      break;
    MC_FUZZ_CHECK(n >= 0);
    if (n == 0 || len + (size_t)n >= cap - 1) {
      len += (size_t)n;
      break;
    }
    len += (size_t)n;
  }
  reply[len] = '\0';
  close(fd);
  return len;
}

/* A reply is "" (refused), or lines: "PORT" in the pool, "0" (refused on
 * a kept connection: "+PID" requests), "ok" (a port returned) or a
 * one-line JSON object ("stats"), each ending with a newline. */
static void check_reply(const char *r, size_t len) {
  if (len == 0)
    return;
  if (r[len - 1] != '\n')
    mc_fuzz_fail("reply \"%s\" does not end with a newline", r);
  for (const char *line = r; *line != '\0';) {
    const char *nl = strchr(line, '\n');
    size_t n = (size_t)(nl - line);
    char *end;
    long port = strtol(line, &end, 10);
    if (line[0] == '{' && line[n - 1] == '}') {
      /* stats */
    } else if (n == 2 && strncmp(line, "ok", 2) == 0) {
      /* a return taken */
    } else if (end != nl || end == line ||
               (port != 0 && (port < POOL_LOW || port > POOL_HIGH))) {
      mc_fuzz_fail("unexpected reply line \"%.*s\"", (int)n, line);
    }
    line = nl + 1;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (server == NULL)
    start_server();
  static char reply[1 << 16];
  size_t len = exchange(data, size, reply, sizeof reply);
  check_reply(reply, len);
  len = exchange((const uint8_t *)"stats\n", 6, reply, sizeof reply);
  MC_FUZZ_CHECK(len > 0 && reply[0] == '{');

  char *pool = mc_fuzz_cstr(data, size);
  mc_portserver_options o = MC_PORTSERVER_OPTIONS_INIT;
  o.address = "@mc-fuzz-portserver-unused";
  o.static_pool = pool;
  mc_portserver *ps = NULL;
  mc_code rc = mc_portserver_new(&ps, &o);
  if (rc != MC_OK)
    mc_fuzz_check_error(rc, MC_INVALID_ARGUMENT);
  mc_portserver_free(ps);
  free(pool);
  return 0;
}
