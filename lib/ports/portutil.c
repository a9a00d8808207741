/* portutil.c: socket checks, /proc reads and the client side of the port
 * server protocol. */
#include "ports/portutil.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"

/* shutdown() before close() on a socket that listens or is connected: it
 * stops the socket at once even if a forked child inherited the descriptor.
 * The check sockets only bind (no listen, see bind_one), and for them
 * shutdown() is a failing no-op (ENOTCONN), so they are just closed. */
static void close_socket(int fd) {
  shutdown(fd, SHUT_RDWR);
  close(fd);
}

/* 1 when new IPv6 sockets are dual-stack by default (net.ipv6.bindv6only =
 * 0, Linux's default): then IPV6_V6ONLY need not be cleared per socket. */
static int v6_dual_default;
static pthread_once_t v6_once = PTHREAD_ONCE_INIT;

static void read_bindv6only(void) {
  FILE *f = fopen("/proc/sys/net/ipv6/bindv6only", "re");
  int v = 1;
  if (f != NULL) {
    if (fscanf(f, "%d", &v) != 1)
      v = 1;
    fclose(f);
  }
  v6_dual_default = v == 0;
}

/* Binds one socket of family/socktype to port. Returns the bound port, 0
 * when busy, -1 when the family is missing on this host. With dual set,
 * an IPv6 socket also covers IPv4 (IPV6_V6ONLY off): the kernel then checks
 * the port against IPv4 sockets too, so one bind answers for both
 * families. */
/* Fills *ss with the wildcard (loopback == 0) or loopback address of the
 * family and the port; returns the address length. */
static socklen_t fill_addr(struct sockaddr_storage *ss, int family,
                           int loopback, int port) {
  memset(ss, 0, sizeof *ss);
  if (family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_addr = loopback ? in6addr_loopback : in6addr_any;
    a->sin6_port = htons((uint16_t)port);
    return sizeof *a;
  }
  struct sockaddr_in *a = (struct sockaddr_in *)ss;
  a->sin_family = AF_INET;
  a->sin_addr.s_addr = htonl(loopback ? INADDR_LOOPBACK : INADDR_ANY);
  a->sin_port = htons((uint16_t)port);
  return sizeof *a;
}

static int bind_one(int family, int socktype, int port, int reuseaddr, int dual,
                    int *keep) {
  int fd = socket(family, socktype | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1; /* no such family on this host (EAFNOSUPPORT) */
  int one = 1, zero = 0;
  if (reuseaddr)
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  pthread_once(&v6_once, read_bindv6only);
  if (family == AF_INET6 && !(dual && v6_dual_default) &&
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, dual ? &zero : &one,
                 sizeof one) != 0 &&
      dual) {
    close(fd);
    return -1;
  }
  struct sockaddr_storage ss;
  socklen_t len = fill_addr(&ss, family, 0, port);
  if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
    int err = errno;
    close(fd);
    /* IPv6 sockets exist but IPv6 is disabled (sysctl): treat it like a
     * host without IPv6 rather than like a busy port. */
    if (family == AF_INET6 && err == EADDRNOTAVAIL)
      return -1;
    return 0;
  }
  if (port == 0) {
    struct sockaddr_storage got;
    socklen_t glen = sizeof got;
    if (getsockname(fd, (struct sockaddr *)&got, &glen) != 0) {
      close(fd);
      return 0;
    }
    port = ntohs(got.ss_family == AF_INET6
                     ? ((struct sockaddr_in6 *)&got)->sin6_port
                     : ((struct sockaddr_in *)&got)->sin_port);
  }
  /* No listen(): a bound socket already blocks other binds, and a
   * listening one would cost a teardown. */
  if (keep != NULL)
    *keep = fd;
  else
    close(fd);
  return port;
}

/* mc__port_bind; with keep (2 slots, -1 when unused) the bound sockets
 * stay open there instead of being closed. */
static int port_bind(int port, int socktype, int reuseaddr, int *keep) {
  /* portpicker binds IPv6 then IPv4, one socket each. A dual-stack IPv6
   * bind does both checks in one socket; hosts without IPv6 (or with
   * IPV6_V6ONLY forced) take the two-socket way. */
  int r = bind_one(AF_INET6, socktype, port, reuseaddr, 1, keep);
  if (r >= 0)
    return r;
  int v6 = bind_one(AF_INET6, socktype, port, reuseaddr, 0, keep);
  if (v6 == 0)
    return 0;
  if (v6 > 0)
    port = v6;
  int v4 = bind_one(AF_INET, socktype, port, reuseaddr, 0,
                    keep != NULL && v6 > 0 ? keep + 1 : keep);
  if (v4 < 0)
    return v6 > 0 ? v6 : 0;
  if (v4 == 0 && keep != NULL && keep[0] >= 0) {
    close(keep[0]);
    keep[0] = -1;
  }
  return v4;
}

int mc__port_bind(int port, int socktype, int reuseaddr) {
  return port_bind(port, socktype, reuseaddr, NULL);
}

static int accepts_on(int family, int port, int tries) {
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  /* Loopback connects finish (or are refused) at once; the timeout only
   * matters for a listener whose backlog is full, which counts as busy. */
  struct timeval tv = {0, 200 * 1000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_storage ss;
  socklen_t len = fill_addr(&ss, family, 1, port);
  int rc = connect(fd, (struct sockaddr *)&ss, len);
  int err = errno;
  if (rc == 0)
    close_socket(fd);
  else
    close(fd);
  if (rc == 0)
    return 1;
  /* A signal handler interrupted the connect (a host process's timer, for
   * one): that says nothing about the port; ask again on a new socket (a
   * few times: under a storm of signals the port counts as busy). */
  if (err == EINTR && tries < 8)
    return accepts_on(family, port, tries + 1);
  /* Refused, or no route to ::1 on a host without IPv6: nobody accepts. */
  if (err == ECONNREFUSED || err == ENETUNREACH || err == EADDRNOTAVAIL ||
      err == EAFNOSUPPORT)
    return 0;
  return 1;
}

int mc__port_accepts(int port) {
  return accepts_on(AF_INET, port, 0) || accepts_on(AF_INET6, port, 0);
}

int mc__port_accepts_v4(int port) {
  return accepts_on(AF_INET, port, 0);
}

static int accepts_probe(int *probe, int port, int tries) {
  if (*probe < 0) {
    *probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (*probe < 0)
      return accepts_on(AF_INET, port, 0);
    struct timeval tv = {0, 200 * 1000};
    setsockopt(*probe, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  int rc = connect(*probe, (struct sockaddr *)&a, sizeof a);
  int err = errno;
  if (rc != 0 && err == ECONNREFUSED)
    return 0; /* refused: the socket is closed again and can try anew */
  /* Connected, stuck, or interrupted by a signal (the attempt goes on in
   * the background): this socket is spent. An interruption says nothing
   * about the port, so it is asked again on a new socket; counting it as
   * busy would skip a free port. */
  close_socket(*probe);
  *probe = -1;
  if (rc != 0 && err == EINTR && tries < 8)
    return accepts_probe(probe, port, tries + 1);
  return 1;
}

int mc__port_accepts_probe(int *probe, int port) {
  return accepts_probe(probe, port, 0);
}

int mc__port_free_probe(int *probe, int port) {
  return mc__port_bind(port, SOCK_STREAM, 0) == port &&
         mc__port_bind(port, SOCK_DGRAM, 0) == port &&
         !mc__port_accepts_probe(probe, port);
}

void mc__port_hold_release(mc__port_hold *h) {
  for (int i = 0; i < 4; i++) {
    if (h->fd[i] >= 0)
      close(h->fd[i]);
    h->fd[i] = -1;
  }
}

int mc__port_hold_free(int *probe, int port, mc__port_hold *h) {
  for (int i = 0; i < 4; i++)
    h->fd[i] = -1;
  if (port_bind(port, SOCK_STREAM, 0, h->fd) != port ||
      port_bind(port, SOCK_DGRAM, 0, h->fd + 2) != port ||
      mc__port_accepts_probe(probe, port)) {
    mc__port_hold_release(h);
    return 0;
  }
  return 1;
}

int mc__port_free_strict(int port) {
  /* After a TCP bind without SO_REUSEADDR succeeded no socket of this
   * network namespace listens on the port, on any address or family; the
   * connect catches what binds cannot see (a NAT redirect, a proxy), and
   * IPv4 loopback is where such things are reached. */
  return mc__port_bind(port, SOCK_STREAM, 0) == port &&
         mc__port_bind(port, SOCK_DGRAM, 0) == port &&
         !mc__port_accepts_v4(port);
}

int mc__proc_start_time(int pid, unsigned long long *start) {
  if (pid <= 0)
    return -1;
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return -1;
  buf[n] = '\0';
  /* The command name (field 2) is in parentheses and may hold spaces or
   * parentheses itself: fields are counted from the last ')'. */
  char *p = strrchr(buf, ')');
  if (p == NULL)
    return -1;
  p++;
  /* After ')' come field 3 (state) ... field 22 (starttime). */
  for (int field = 3; field < 22; field++) {
    p = strchr(p + 1, ' ');
    if (p == NULL)
      return -1;
  }
  char *end = NULL;
  unsigned long long v = strtoull(p + 1, &end, 10);
  if (end == p + 1)
    return -1;
  *start = v;
  return 0;
}

mc_code mc__portserver_sockaddr(const char *address, struct sockaddr_un *sa,
                                socklen_t *len) {
  *len = 0;
  if (address == NULL || address[0] == '\0')
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "port server address \"\" is empty (expected "
                         "\"@name\" or a socket path)");
  size_t n = strlen(address);
  if (strcmp(address, "@") == 0)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "port server address \"@\" names no abstract socket "
                         "(expected \"@name\")");
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (n >= sizeof sa->sun_path)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "port server address \"%s\" is %zu bytes long (at "
                         "most %zu fit in a Unix socket address)",
                         address, n, sizeof sa->sun_path - 1);
  memcpy(sa->sun_path, address, n);
  if (address[0] == '@') {
    sa->sun_path[0] = '\0';
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  } else {
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  }
  return MC_OK;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connects a blocking Unix socket to the server; *fd gets it. A blocking
 * Unix connect waits while the server's backlog is full, up to SO_SNDTIMEO
 * (a non-blocking one fails with EAGAIN and would have to be retried).
 * SO_RCVTIMEO is set to the whole timeout for the first read. */
static mc_code conn_open(const char *address, const struct sockaddr_un *sa,
                         socklen_t salen, int timeout_ms, int *fd) {
  *fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (*fd < 0)
    return mc__error_set_os(MC_UNAVAILABLE, errno, "port server \"%s\": socket",
                            address);
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(*fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(*fd, (const struct sockaddr *)sa, salen) != 0) {
    int err = errno;
    close(*fd);
    *fd = -1;
    if (err == EAGAIN || err == EINPROGRESS)
      return mc__error_set(MC_DEADLINE_EXCEEDED,
                           "port server \"%s\" did not accept the connection "
                           "within %d ms",
                           address, timeout_ms);
    return mc__error_set_os(MC_UNAVAILABLE, err,
                            "port server \"%s\" unreachable: connect", address);
  }
  return MC_OK;
}

/* Sends request and reads the reply up to its newline, or to the end of
 * the stream (portpicker's server writes the reply and closes), within the
 * deadline. The socket stays blocking: each call waits at most for what is
 * left of the deadline (SO_SNDTIMEO, SO_RCVTIMEO), which costs fewer system
 * calls than non-blocking I/O and poll. *closed is set when the peer was
 * gone before anything was read (EPIPE, ECONNRESET, end of stream): an
 * empty reply, or a connection the server closed earlier. */
static mc_code conn_exchange(int fd, const char *address, const char *request,
                             int timeout_ms, int64_t deadline, char *reply,
                             size_t cap, int *closed) {
  *closed = 0;
  reply[0] = '\0';
  size_t len = strlen(request), sent = 0;
  while (sent < len) {
    ssize_t n = send(fd, request + sent, len - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    int err = errno;
    if (err == EAGAIN)
      return mc__error_set(MC_DEADLINE_EXCEEDED,
                           "port server \"%s\" did not take the request "
                           "within %d ms",
                           address, timeout_ms);
    if (err == EPIPE || err == ECONNRESET) {
      *closed = 1;
      return MC_OK;
    }
    return mc__error_set_os(MC_UNAVAILABLE, err, "port server \"%s\": send",
                            address);
  }
  size_t got = 0;
  int reads = 0;
  for (;;) {
    if (got + 1 >= cap || memchr(reply, '\n', got) != NULL)
      break;
    if (reads++ > 0) {
      int64_t left = deadline - now_ms();
      if (left <= 0)
        left = 1;
      struct timeval rtv = {(time_t)(left / 1000),
                            (suseconds_t)(left % 1000) * 1000};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rtv, sizeof rtv);
    }
    ssize_t n = recv(fd, reply + got, cap - 1 - got, 0);
    if (n > 0) {
      got += (size_t)n;
      reply[got] = '\0';
      continue;
    }
    if (n == 0)
      break;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || now_ms() >= deadline)
      return mc__error_set(MC_DEADLINE_EXCEEDED,
                           "port server \"%s\" did not reply within %d ms",
                           address, timeout_ms);
    if (errno == ECONNRESET)
      break; /* a refusal may close with unread data: same as empty */
    return mc__error_set_os(MC_UNAVAILABLE, errno, "port server \"%s\": recv",
                            address);
  }
  reply[got] = '\0';
  *closed = got == 0;
  if (reads > 1 && got > 0) {
    /* Several reads: put back the whole timeout for the next request on
     * a kept connection. */
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  return MC_OK;
}

mc_code mc__portserver_exchange(const char *address, const char *request,
                                int timeout_ms, char *reply, size_t cap) {
  struct sockaddr_un sa;
  socklen_t salen;
  mc_code rc = mc__portserver_sockaddr(address, &sa, &salen);
  if (rc != MC_OK)
    return rc;
  reply[0] = '\0';
  int64_t deadline = now_ms() + timeout_ms;
  int fd, closed;
  rc = conn_open(address, &sa, salen, timeout_ms, &fd);
  if (rc != MC_OK)
    return rc;
  rc = conn_exchange(fd, address, request, timeout_ms, deadline, reply, cap,
                     &closed);
  close(fd);
  return rc;
}

/* The connection kept to a port server between picks. A thread that finds
 * it busy uses a connection of its own; a forked child opens its own (the
 * server takes the owner from the connecting process's credentials). */
static struct {
  pthread_mutex_t mu;
  int fd;
  int pid;
  int timeout_ms;
  char address[sizeof((struct sockaddr_un *)0)->sun_path];
} kept = {PTHREAD_MUTEX_INITIALIZER, -1, 0, 0, ""};

static void kept_drop(void) {
  if (kept.fd >= 0)
    close(kept.fd); /* in a forked child: only its copy of the parent's */
  kept.fd = -1;
}

mc_code mc__portserver_pick(const char *address, int pid, int timeout_ms,
                            char *reply, size_t cap) {
  struct sockaddr_un sa;
  socklen_t salen;
  mc_code rc = mc__portserver_sockaddr(address, &sa, &salen);
  if (rc != MC_OK)
    return rc;
  char request[32];
  if (pthread_mutex_trylock(&kept.mu) != 0) {
    snprintf(request, sizeof request, "%d\n", pid);
    return mc__portserver_exchange(address, request, timeout_ms, reply, cap);
  }
  snprintf(request, sizeof request, "+%d\n", pid);
  int64_t deadline = now_ms() + timeout_ms;
  int me = (int)getpid(), closed = 0;
  if (kept.fd >= 0 && (kept.pid != me || strcmp(kept.address, address) != 0))
    kept_drop();
  if (kept.fd >= 0) {
    if (kept.timeout_ms != timeout_ms) {
      struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
      setsockopt(kept.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      setsockopt(kept.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      kept.timeout_ms = timeout_ms;
    }
    rc = conn_exchange(kept.fd, address, request, timeout_ms, deadline, reply,
                       cap, &closed);
    if (rc == MC_OK && !closed && strchr(reply, '\n') != NULL) {
      pthread_mutex_unlock(&kept.mu);
      return MC_OK;
    }
    /* Closed by the server (idle, restarted, or one that closes after
     * every reply as portpicker's does): ask again on a new connection.
     * A server that does not answer in time is not asked twice. */
    kept_drop();
    if (rc == MC_DEADLINE_EXCEEDED) {
      pthread_mutex_unlock(&kept.mu);
      return rc;
    }
    mc_error_clear();
    timeout_ms = (int)(deadline - now_ms());
    if (timeout_ms < 1)
      timeout_ms = 1;
  }
  int fd;
  rc = conn_open(address, &sa, salen, timeout_ms, &fd);
  if (rc == MC_OK)
    rc = conn_exchange(fd, address, request, timeout_ms, deadline, reply, cap,
                       &closed);
  if (rc == MC_OK && !closed && strchr(reply, '\n') != NULL) {
    kept.fd = fd;
    kept.pid = me;
    kept.timeout_ms = timeout_ms;
    snprintf(kept.address, sizeof kept.address, "%s", address);
  } else if (fd >= 0) {
    close(fd);
  }
  pthread_mutex_unlock(&kept.mu);
  return rc;
}

/* Decimal with optional surrounding whitespace and sign. */
static int parse_number(const char *s, long long *out) {
  while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
    s++;
  int neg = 0;
  if (*s == '+' || *s == '-')
    neg = *s++ == '-';
  if (*s < '0' || *s > '9')
    return -1;
  long long v = 0;
  while (*s >= '0' && *s <= '9') {
    v = v * 10 + (*s++ - '0');
    if (v > 1000000000000LL) /* checked after each digit: v stays < 10^13 */
      return -1;
  }
  while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
    s++;
  if (*s != '\0')
    return -1;
  *out = neg ? -v : v;
  return 0;
}

int mc__portserver_parse_request(const char *line, long long *value) {
  if (strcmp(line, "stats") == 0)
    return MC__REQ_STATS;
  if (strncmp(line, "return ", 7) == 0)
    return parse_number(line + 7, value) == 0 ? MC__REQ_RETURN
                                              : MC__REQ_INVALID;
  /* portpicker's server: more than 20 characters is an error. */
  if (strlen(line) > 20 || parse_number(line, value) != 0)
    return MC__REQ_INVALID;
  return MC__REQ_PID;
}

int mc__portserver_parse_reply(const char *reply, int *port) {
  size_t n = strcspn(reply, "\n");
  if (n == 0 || (n == 1 && reply[0] == '0'))
    return 0;
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (reply[i] < '0' || reply[i] > '9' || n > 5)
      return -1;
    v = v * 10 + (reply[i] - '0');
  }
  if (v < 1 || v > 65535)
    return -1;
  *port = (int)v;
  return 1;
}
