/* picker.c: mc_pick_unused_port and friends, portpicker's client algorithm
 * in C. One table of 65,536 states under one mutex records what this
 * process holds, so a port is never handed out twice until it is returned. */
#include <minicluster/ports.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/status.h"
#include "ports/picker_internal.h"
#include "ports/portutil.h"

enum port_state {
  P_NONE = 0,      /* not known to this process */
  P_LOCAL,         /* picked locally and handed out */
  P_SERVER,        /* from a port server, handed out */
  P_RESERVED_FREE, /* reserved or returned server port, ready to hand out */
  P_RESERVED_GIVEN /* such a port, handed out */
};

#define KERNEL_TRIES 10
#define RANDOM_TRIES 100
#define DEFAULT_TIMEOUT_MS 5000
#define MAX_SERVERS 16

int mc__picker_kernel_tries = KERNEL_TRIES;
int mc__picker_random_tries = RANDOM_TRIES;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t state[65536];
/* For P_SERVER ports: 1 + index into servers[] of the server that gave it,
 * 0 when the table was full (the port is then kept, not given back). */
static uint8_t server_of[65536];
static char *servers[MAX_SERVERS];
static uint16_t free_ports[65536];
static size_t n_free;
static uint64_t rng_state;

/* xorshift64*, seeded from time, pid and address; only to spread guesses. */
static uint32_t next_random_locked(void) {
  if (rng_state == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rng_state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
                ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)&ts;
    if (rng_state == 0)
      rng_state = 0x9e3779b97f4a7c15ull;
  }
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

/* Marks port handed out as st if nobody in this process holds it. */
static int claim(int port, uint8_t st) {
  pthread_mutex_lock(&lock);
  int ok = state[port] == P_NONE;
  if (ok)
    state[port] = st;
  pthread_mutex_unlock(&lock);
  return ok;
}

static uint8_t server_index_locked(const char *address) {
  for (int i = 0; i < MAX_SERVERS; i++) {
    if (servers[i] == NULL) {
      servers[i] = strdup(address);
      return servers[i] == NULL ? 0 : (uint8_t)(i + 1);
    }
    if (strcmp(servers[i], address) == 0)
      return (uint8_t)(i + 1);
  }
  return 0;
}

/* The ephemeral range, default Linux values when /proc cannot tell. */
static void ephemeral_range(int *lo, int *hi) {
  *lo = 32768;
  *hi = 60999;
  FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
  if (f == NULL)
    return;
  int a, b;
  if (fscanf(f, "%d %d", &a, &b) == 2 && a >= 1 && b <= 65535 && a <= b) {
    *lo = a;
    *hi = b;
  }
  fclose(f);
}

static mc_code pick_local(int *port, mc_pick_info *info) {
  /* The kernel's choice first, as portpicker does: TCP decides (on 2.6
   * kernels UDP port 0 kept returning the same port), UDP confirms. No
   * SO_REUSEADDR: with it the kernel only offers odd ports in the lower half
   * of the range, which doubles collisions between processes, and a
   * TIME_WAIT port would pass. */
  for (int i = 0; i < mc__picker_kernel_tries; i++) {
    int p = mc__port_bind(0, SOCK_STREAM, 0);
    if (p > 0 && mc__port_bind(p, SOCK_DGRAM, 0) == p && claim(p, P_LOCAL)) {
      *port = p;
      info->source = MC_PORT_FROM_KERNEL;
      return MC_OK;
    }
  }
  /* Then random ports outside the ephemeral range, where outgoing
   * connections do not take ports behind our back. */
  int lo, hi;
  ephemeral_range(&lo, &hi);
  int below = lo > 1024 ? lo - 1024 : 0;
  int above = hi < 65535 ? 65535 - hi : 0;
  for (int i = 0; i < mc__picker_random_tries && below + above > 0; i++) {
    pthread_mutex_lock(&lock);
    uint32_t r = next_random_locked() % (uint32_t)(below + above);
    pthread_mutex_unlock(&lock);
    int p = (int)r < below ? 1024 + (int)r : hi + 1 + ((int)r - below);
    if (mc__port_bind(p, SOCK_STREAM, 0) == p &&
        mc__port_bind(p, SOCK_DGRAM, 0) == p && claim(p, P_LOCAL)) {
      *port = p;
      info->source = MC_PORT_FROM_RANDOM;
      return MC_OK;
    }
  }
  return mc__error_set(MC_RESOURCE_EXHAUSTED,
                       "no free port: %d kernel-chosen ports and %d random "
                       "ports outside the ephemeral range %d-%d were busy "
                       "or already held by this process",
                       mc__picker_kernel_tries, mc__picker_random_tries, lo,
                       hi);
}

static mc_code pick_from_server(const char *address, int pid, int timeout_ms,
                                int *port) {
  char reply[128];
  mc_code rc =
      mc__portserver_pick(address, pid, timeout_ms, reply, sizeof reply);
  if (rc != MC_OK)
    return rc;
  /* portpicker reads int(reply.split('\n')[0]); an empty reply (or "0") is
   * a refusal. */
  int v = 0;
  int kind = mc__portserver_parse_reply(reply, &v);
  if (kind == 0)
    return mc__error_set(MC_RESOURCE_EXHAUSTED,
                         "port server \"%s\" refused the request for pid %d "
                         "(empty reply or \"0\": its pool is exhausted or it "
                         "rejected the pid)",
                         address, pid);
  if (kind < 0) {
    char *nl = strchr(reply, '\n');
    if (nl != NULL)
      *nl = '\0';
    return mc__error_set(MC_UNAVAILABLE,
                         "port server \"%s\" sent an unusable reply \"%.32s\" "
                         "(expected a port 1-65535)",
                         address, reply);
  }
  pthread_mutex_lock(&lock);
  state[v] = P_SERVER;
  server_of[v] = server_index_locked(address);
  pthread_mutex_unlock(&lock);
  *port = v;
  return MC_OK;
}

mc_code mc_pick_unused_port_ex(int *port, const mc_pick_options *opts,
                               mc_pick_info *info) {
  mc_pick_options defaults = MC_PICK_OPTIONS_INIT;
  mc_pick_info scratch;
  if (opts == NULL)
    opts = &defaults;
  if (info == NULL)
    info = &scratch;
  memset(info, 0, sizeof *info);
  if (port == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_pick_unused_port: port is NULL");
  if (opts->version != MC_PICK_OPTIONS_VERSION)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_pick_options version %d (expected %d)",
                         opts->version, MC_PICK_OPTIONS_VERSION);
  if (opts->timeout_ms < 0 || opts->pid < 0)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc_pick_options: timeout_ms %d and pid %d must not "
                         "be negative",
                         opts->timeout_ms, opts->pid);
  *port = 0;

  pthread_mutex_lock(&lock);
  if (n_free > 0) {
    int p = free_ports[--n_free];
    state[p] = P_RESERVED_GIVEN;
    pthread_mutex_unlock(&lock);
    *port = p;
    info->source = MC_PORT_FROM_RESERVED;
    return MC_OK;
  }
  pthread_mutex_unlock(&lock);

  const char *address = opts->portserver_address;
  const char *what = "portserver_address";
  if (address == NULL) {
    address = getenv("PORTSERVER_ADDRESS");
    what = "PORTSERVER_ADDRESS";
  }
  if (address != NULL && address[0] != '\0') {
    struct sockaddr_un sa;
    socklen_t salen;
    if (mc__portserver_sockaddr(address, &sa, &salen) != MC_OK)
      return mc__error_prefix("%s: ", what);
    int pid = opts->pid > 0 ? opts->pid : (int)getpid();
    int timeout = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    mc_code rc = pick_from_server(address, pid, timeout, port);
    if (rc == MC_OK) {
      info->source = MC_PORT_FROM_SERVER;
      return MC_OK;
    }
    if (!opts->server_fallback)
      return rc;
    info->server_code = rc;
    snprintf(info->server_message, sizeof info->server_message, "%s",
             mc_error_last()->message);
  }
  return pick_local(port, info);
}

mc_code mc_pick_unused_port(int *port) {
  return mc_pick_unused_port_ex(port, NULL, NULL);
}

mc_code mc_return_port(int port) {
  if (port < 1 || port > 65535)
    return mc__error_set(MC_NOT_FOUND,
                         "port %d was not picked by this process (ports are "
                         "1-65535)",
                         port);
  pthread_mutex_lock(&lock);
  uint8_t st = state[port];
  char address[128] = "";
  if (st == P_SERVER && server_of[port] != 0)
    snprintf(address, sizeof address, "%s", servers[server_of[port] - 1]);
  switch (st) {
  case P_LOCAL:
    state[port] = P_NONE;
    break;
  case P_RESERVED_GIVEN:
    state[port] = P_RESERVED_FREE;
    free_ports[n_free++] = (uint16_t)port;
    break;
  case P_SERVER:
    break;
  case P_RESERVED_FREE:
    pthread_mutex_unlock(&lock);
    return mc__error_set(MC_NOT_FOUND, "port %d was already returned", port);
  default:
    pthread_mutex_unlock(&lock);
    return mc__error_set(MC_NOT_FOUND, "port %d was not picked by this process",
                         port);
  }
  pthread_mutex_unlock(&lock);
  if (st != P_SERVER)
    return MC_OK;

  /* Give it back to the server ("return <port>\n" -> "ok\n"). portpicker's
   * own server ignores the request: the port is then kept for this process,
   * which is what portpicker itself does with every server port. */
  mc_code rc = MC_OK;
  int taken = 0;
  if (address[0] != '\0') {
    char request[32], reply[64];
    snprintf(request, sizeof request, "return %d\n", port);
    rc = mc__portserver_exchange(address, request, DEFAULT_TIMEOUT_MS, reply,
                                 sizeof reply);
    taken = rc == MC_OK && strcmp(reply, "ok\n") == 0;
  }
  pthread_mutex_lock(&lock);
  if (state[port] == P_SERVER) {
    server_of[port] = 0;
    if (taken) {
      state[port] = P_NONE;
    } else {
      state[port] = P_RESERVED_FREE;
      free_ports[n_free++] = (uint16_t)port;
    }
  }
  pthread_mutex_unlock(&lock);
  if (rc != MC_OK)
    return mc__error_prefix("port %d kept for reuse by this process: ", port);
  return MC_OK;
}

mc_code mc_add_reserved_port(int port) {
  if (port < 1 || port > 65535)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "port %d out of range (expected 1-65535)", port);
  pthread_mutex_lock(&lock);
  if (state[port] != P_NONE) {
    pthread_mutex_unlock(&lock);
    return mc__error_set(MC_ALREADY_EXISTS,
                         "port %d is already known to this process's picker",
                         port);
  }
  state[port] = P_RESERVED_FREE;
  free_ports[n_free++] = (uint16_t)port;
  pthread_mutex_unlock(&lock);
  return MC_OK;
}

mc_code mc_port_is_free(int port, int *is_free) {
  if (is_free == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT, "mc_port_is_free: is_free NULL");
  if (port < 1 || port > 65535)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "port %d out of range (expected 1-65535)", port);
  *is_free = mc__port_bind(port, SOCK_STREAM, 0) == port &&
             mc__port_bind(port, SOCK_DGRAM, 0) == port;
  return MC_OK;
}
