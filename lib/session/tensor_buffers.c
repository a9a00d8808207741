/* tensor_buffers.c: recycling of large tensor buffers.
 *
 * A program that streams large tensors (the data service's 1 MiB elements,
 * step inputs) frees a buffer and soon allocates one of the same size,
 * often on another thread. glibc returns such memory to the kernel (heap
 * trimming, munmap) and takes it back page by page: with 1 MiB tensors the
 * page faults and the kernel's zeroing cost more than the copies
 * themselves (measured with perf on the data service: about half the CPU).
 * A few recently freed buffers of each size are kept here and handed out
 * again, bounded in count and bytes, like the free lists of a caching
 * allocator. */
#include "session/tensor.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Buffers below this size are left to malloc, which recycles them well. */
#define BUF_MIN (64u << 10)
#define CACHE_SLOTS 16
#define CACHE_BYTES (32u << 20)

typedef struct slot {
  void *p;
  size_t cap;
} slot;

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static slot cache[CACHE_SLOTS]; /* oldest first */
static size_t ncache, cache_bytes;

static size_t round_cap(size_t n) {
  return (n + 4095) & ~(size_t)4095;
}

void *mc__tensor_buf_alloc(size_t nbytes, int zero) {
  if (nbytes < BUF_MIN)
    return zero ? calloc(nbytes ? nbytes : 1, 1) : malloc(nbytes ? nbytes : 1);
  size_t cap = round_cap(nbytes);
  void *p = NULL;
  pthread_mutex_lock(&cache_mu);
  for (size_t i = ncache; i-- > 0;) {
    if (cache[i].cap == cap) {
      p = cache[i].p;
      cache_bytes -= cap;
      memmove(&cache[i], &cache[i + 1], (ncache - i - 1) * sizeof *cache);
      ncache--;
      break;
    }
  }
  pthread_mutex_unlock(&cache_mu);
  if (p == NULL)
    return zero ? calloc(cap, 1) : malloc(cap);
  if (zero)
    memset(p, 0, nbytes);
  return p;
}

void mc__tensor_buf_free(void *p, size_t nbytes) {
  if (p == NULL || nbytes < BUF_MIN) {
    free(p);
    return;
  }
  size_t cap = round_cap(nbytes);
  void *evict = NULL;
  pthread_mutex_lock(&cache_mu);
  if (cap <= CACHE_BYTES) {
    /* Full: the oldest buffer makes room (a workload that changed sizes
     * does not pin stale buffers). */
    while (ncache > 0 &&
           (ncache == CACHE_SLOTS || cache_bytes + cap > CACHE_BYTES)) {
      free(evict);
      evict = cache[0].p;
      cache_bytes -= cache[0].cap;
      memmove(&cache[0], &cache[1], (ncache - 1) * sizeof *cache);
      ncache--;
    }
    cache[ncache].p = p;
    cache[ncache].cap = cap;
    ncache++;
    cache_bytes += cap;
    p = NULL;
  }
  pthread_mutex_unlock(&cache_mu);
  free(evict);
  free(p);
}

void mc__tensor_buf_stats(size_t *count, size_t *bytes) {
  pthread_mutex_lock(&cache_mu);
  *count = ncache;
  *bytes = cache_bytes;
  pthread_mutex_unlock(&cache_mu);
}
