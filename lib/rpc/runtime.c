/* runtime.c: the process-wide part of the gRPC runtime: refcounted
 * grpc_init/grpc_shutdown_blocking, the shared completion queue and its
 * fixed thread pool, the blocking-handler pool, the timer thread, gRPC log
 * capture and the interceptor/trace hooks. */
#include <dlfcn.h>
#include <errno.h>
#include <grpc/support/log.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "rpc/internal.h"

/* Idle blocking-pool threads kept for reuse; more exit when they go idle. */
#define POOL_MAX_IDLE 4

typedef struct pool_thread {
  pthread_t tid;
  struct pool_thread *next;
} pool_thread;

static struct {
  pthread_mutex_t mu; /* refs, alive, teardown */
  int refs;
  int alive;
  grpc_completion_queue *cq;
  pthread_t cq_threads[MC_RPC_CQ_THREADS];

  pthread_mutex_t pool_mu;
  pthread_cond_t pool_cv;
  mc__rpc_task *pool_head, *pool_tail;
  int pool_idle, pool_stop;
  int pool_queued;           /* tasks submitted and not yet taken by a thread */
  uint64_t pool_submitted;   /* tasks ever submitted (mc__rpc_pool_count) */
  pool_thread *pool_threads; /* every started thread, joined at teardown */
  pool_thread *pool_exited;  /* exited threads waiting to be joined */
  size_t pool_unjoined;      /* retired, not joined yet (tests) */

  pthread_mutex_t timer_mu;
  pthread_cond_t timer_cv;
  mc__rpc_task *timers; /* sorted by when_ns */
  int timer_stop;
  pthread_t timer_thread;
} rt = {.mu = PTHREAD_MUTEX_INITIALIZER,
        .pool_mu = PTHREAD_MUTEX_INITIALIZER,
        .timer_mu = PTHREAD_MUTEX_INITIALIZER};

/* 1 on the runtime's own threads (CQ, pool, timer): they must never join
 * themselves, so a last unref there defers the shutdown. */
static _Thread_local int tls_internal;
/* 1 on completion-queue and timer threads, where nothing may block. */
static _Thread_local int tls_no_block;

int mc__rpc_may_block(void) {
  return !tls_no_block;
}

int64_t mc__rpc_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- gRPC log capture ---- */

static _Thread_local int tls_capturing;
static _Thread_local char tls_log[4096];

static void log_fn(gpr_log_func_args *args) {
  if (tls_capturing) {
    size_t used = strlen(tls_log);
    snprintf(tls_log + used, sizeof tls_log - used, "%s%s", used ? "; " : "",
             args->message);
    return;
  }
  /* gRPC's default logger is not part of its C API; print the same
   * essentials. gpr_log has already applied GRPC_VERBOSITY. */
  fprintf(stderr, "%s %s:%d] %s\n", gpr_log_severity_string(args->severity),
          args->file, args->line, args->message);
}

void mc__rpc_log_capture_begin(void) {
  tls_log[0] = '\0';
  tls_capturing = 1;
}

const char *mc__rpc_log_capture_end(void) {
  tls_capturing = 0;
  return tls_log;
}

/* ---- completion-queue threads ---- */

static void *cq_main(void *unused) {
  (void)unused;
  tls_internal = 1;
  tls_no_block = 1;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(
        rt.cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
      break;
    if (ev.type == GRPC_OP_COMPLETE) {
      mc__rpc_op *op = ev.tag;
      MC__RPC_RECEIVED(op);
      op->cb(op, ev.success);
    }
  }
  return NULL;
}

/* ---- blocking pool ---- */

/* Joins and frees a list of retired pool threads (taken off
 * rt.pool_exited); called with pool_mu NOT held. */
static void join_retired(pool_thread *list) {
  size_t n = 0;
  while (list != NULL) {
    pool_thread *next = list->next;
    pthread_join(list->tid, NULL);
    free(list);
    list = next;
    n++;
  }
  if (n > 0) {
    pthread_mutex_lock(&rt.pool_mu);
    rt.pool_unjoined -= n;
    pthread_mutex_unlock(&rt.pool_mu);
  }
}

static void *pool_main(void *self_) {
  pool_thread *self = self_;
  tls_internal = 1;
  pthread_mutex_lock(&rt.pool_mu);
  for (;;) {
    while (rt.pool_head == NULL && !rt.pool_stop)
      pthread_cond_wait(&rt.pool_cv, &rt.pool_mu);
    if (rt.pool_head == NULL)
      break; /* stopping and nothing left */
    mc__rpc_task *t = rt.pool_head;
    rt.pool_head = t->next;
    if (rt.pool_head == NULL)
      rt.pool_tail = NULL;
    rt.pool_idle--;
    rt.pool_queued--;
    pthread_mutex_unlock(&rt.pool_mu);
    t->fn(t);
    mc__rpc_set_caller(NULL);
    pthread_mutex_lock(&rt.pool_mu);
    if (rt.pool_idle >= POOL_MAX_IDLE && !rt.pool_stop) {
      /* Enough idle threads already: retire, to be joined later. */
      for (pool_thread **p = &rt.pool_threads; *p; p = &(*p)->next) {
        if (*p == self) {
          *p = self->next;
          break;
        }
      }
      /* Join the threads that retired before this one (they have
       * returned, or are about to), and leave only this one for the next
       * to join: retired threads are joined here, not only by
       * mc__rpc_pool_submit from an outside thread, which a server whose
       * blocking work comes in through its handlers never makes (each
       * unjoined thread kept its 8 MiB stack mapped: the soak bench grew
       * by 6,000 of them in 5,000 steps). */
      pool_thread *before = rt.pool_exited;
      self->next = NULL;
      rt.pool_exited = self;
      rt.pool_unjoined++;
      pthread_mutex_unlock(&rt.pool_mu);
      join_retired(before);
      return NULL;
    }
    rt.pool_idle++;
  }
  pthread_mutex_unlock(&rt.pool_mu);
  return NULL;
}

/* Joins retired pool threads; called with pool_mu NOT held. */
static void pool_reap(void) {
  pthread_mutex_lock(&rt.pool_mu);
  pool_thread *list = rt.pool_exited;
  rt.pool_exited = NULL;
  pthread_mutex_unlock(&rt.pool_mu);
  join_retired(list);
}

void mc__rpc_pool_submit(mc__rpc_task *t) {
  t->next = NULL;
  pthread_mutex_lock(&rt.pool_mu);
  if (rt.pool_tail)
    rt.pool_tail->next = t;
  else
    rt.pool_head = t;
  rt.pool_tail = t;
  rt.pool_queued++;
  rt.pool_submitted++;
  /* Every queued task needs its own thread: a blocking handler may wait
   * for one queued behind it (RunStep waits for RunGraph on the same
   * process), so an idle count of one for two queued tasks deadlocks. */
  int inline_run = 0;
  if (rt.pool_queued > rt.pool_idle) {
    pool_thread *pt = calloc(1, sizeof *pt);
    if (pt != NULL && pthread_create(&pt->tid, NULL, pool_main, pt) == 0) {
      rt.pool_idle++; /* counts as idle until it takes a task */
      pt->next = rt.pool_threads;
      rt.pool_threads = pt;
    } else {
      free(pt);
      if (rt.pool_idle == 0) {
        /* No thread to take it: run it here rather than never. t is the
         * tail of the queue; unlink it. */
        mc__rpc_task *prev = NULL;
        for (mc__rpc_task *q = rt.pool_head; q != t; q = q->next)
          prev = q;
        if (prev)
          prev->next = NULL;
        else
          rt.pool_head = NULL;
        rt.pool_tail = prev;
        rt.pool_queued--;
        inline_run = 1;
      }
      fprintf(stderr, "minicluster: cannot start a blocking-pool thread\n");
    }
  }
  pthread_cond_signal(&rt.pool_cv);
  pthread_mutex_unlock(&rt.pool_mu);
  if (inline_run)
    t->fn(t);
  if (!tls_internal)
    pool_reap();
}

size_t mc__rpc_pool_unjoined(void) {
  pthread_mutex_lock(&rt.pool_mu);
  size_t n = rt.pool_unjoined;
  pthread_mutex_unlock(&rt.pool_mu);
  return n;
}

uint64_t mc__rpc_pool_count(void) {
  pthread_mutex_lock(&rt.pool_mu);
  uint64_t n = rt.pool_submitted;
  pthread_mutex_unlock(&rt.pool_mu);
  return n;
}

typedef struct spawned {
  mc__rpc_task task; /* first: the pool hands this pointer back */
  void (*fn)(void *arg);
  void *arg;
} spawned;

static void spawned_run(mc__rpc_task *t) {
  spawned *sp = (spawned *)t;
  void (*fn)(void *) = sp->fn;
  void *arg = sp->arg;
  free(sp);
  fn(arg);
  mc__rpc_runtime_unref();
}

mc_code mc__rpc_run_blocking(void (*fn)(void *arg), void *arg) {
  if (fn == NULL)
    return mc__error_set(MC_INVALID_ARGUMENT,
                         "mc__rpc_run_blocking: fn is NULL");
  spawned *sp = calloc(1, sizeof *sp);
  if (sp == NULL)
    return mc__error_set(MC_RESOURCE_EXHAUSTED, "out of memory");
  mc_code rc = mc__rpc_runtime_ref();
  if (rc != MC_OK) {
    free(sp);
    return rc;
  }
  sp->task.fn = spawned_run;
  sp->fn = fn;
  sp->arg = arg;
  mc__rpc_pool_submit(&sp->task);
  return MC_OK;
}

/* ---- timer ---- */

static void *timer_main(void *unused) {
  (void)unused;
  tls_internal = 1;
  tls_no_block = 1;
  pthread_mutex_lock(&rt.timer_mu);
  while (!rt.timer_stop) {
    if (rt.timers == NULL) {
      pthread_cond_wait(&rt.timer_cv, &rt.timer_mu);
      continue;
    }
    int64_t now = mc__rpc_now_ns();
    mc__rpc_task *t = rt.timers;
    if (t->when_ns > now) {
      struct timespec ts = {(time_t)(t->when_ns / 1000000000),
                            (long)(t->when_ns % 1000000000)};
      pthread_cond_timedwait(&rt.timer_cv, &rt.timer_mu, &ts);
      continue;
    }
    rt.timers = t->next;
    t->next = NULL;
    pthread_mutex_unlock(&rt.timer_mu);
    t->fn(t);
    pthread_mutex_lock(&rt.timer_mu);
  }
  pthread_mutex_unlock(&rt.timer_mu);
  return NULL;
}

void mc__rpc_timer_add(mc__rpc_task *t) {
  pthread_mutex_lock(&rt.timer_mu);
  mc__rpc_task **p = &rt.timers;
  while (*p && (*p)->when_ns <= t->when_ns)
    p = &(*p)->next;
  t->next = *p;
  *p = t;
  pthread_cond_signal(&rt.timer_cv);
  pthread_mutex_unlock(&rt.timer_mu);
}

int mc__rpc_timer_cancel(mc__rpc_task *t) {
  int removed = 0;
  pthread_mutex_lock(&rt.timer_mu);
  for (mc__rpc_task **p = &rt.timers; *p; p = &(*p)->next) {
    if (*p == t) {
      *p = t->next;
      removed = 1;
      break;
    }
  }
  pthread_mutex_unlock(&rt.timer_mu);
  return removed;
}

/* ---- lifetime ---- */

/* grpc_shutdown_blocking() is not the end: a destroyed channel holds its
 * own grpc_init reference until gRPC's threads finish tearing it down, and
 * when that last reference goes on a gRPC thread the clean-up runs in a
 * detached thread. Wait (bounded) for the count to reach zero, then for the
 * asynchronous clean-up, so that "everything freed" really means no gRPC
 * thread left. grpc_maybe_wait_for_async_shutdown() is exported by
 * libgrpc but not declared in its C headers (C++ linkage), hence dlsym;
 * without it we only wait for the count. */
static void wait_grpc_gone(void) {
  for (int i = 0; i < 2000 && grpc_is_initialized(); i++) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  void (*wait_async)(void);
  void *sym = dlsym(RTLD_DEFAULT, "_Z34grpc_maybe_wait_for_async_shutdownv");
  memcpy(&wait_async, &sym, sizeof wait_async); /* POSIX dlsym idiom */
  if (wait_async != NULL)
    wait_async();
}

static void teardown_locked(void) {
  grpc_completion_queue_shutdown(rt.cq);
  for (int i = 0; i < MC_RPC_CQ_THREADS; i++)
    pthread_join(rt.cq_threads[i], NULL);
  grpc_completion_queue_destroy(rt.cq);
  rt.cq = NULL;

  pthread_mutex_lock(&rt.pool_mu);
  rt.pool_stop = 1;
  pthread_cond_broadcast(&rt.pool_cv);
  pool_thread *list = rt.pool_threads;
  rt.pool_threads = NULL;
  pthread_mutex_unlock(&rt.pool_mu);
  while (list != NULL) {
    pool_thread *next = list->next;
    pthread_join(list->tid, NULL);
    free(list);
    list = next;
  }
  pool_reap();
  rt.pool_stop = 0;
  rt.pool_idle = 0;

  pthread_mutex_lock(&rt.timer_mu);
  rt.timer_stop = 1;
  pthread_cond_signal(&rt.timer_cv);
  pthread_mutex_unlock(&rt.timer_mu);
  pthread_join(rt.timer_thread, NULL);
  rt.timer_stop = 0;

  grpc_shutdown_blocking();
  wait_grpc_gone();
  rt.alive = 0;
}

/* Condition variables live for the whole process; the timer's uses the
 * monotonic clock of mc__rpc_now_ns. */
static void init_once(void) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&rt.timer_cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_cond_init(&rt.pool_cv, NULL);
  gpr_set_log_function(log_fn);
}

mc_code mc__rpc_runtime_ref(void) {
  pthread_mutex_lock(&rt.mu);
  if (rt.alive) {
    rt.refs++;
    pthread_mutex_unlock(&rt.mu);
    return MC_OK;
  }
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, init_once);
  grpc_init();
  rt.cq = grpc_completion_queue_create_for_next(NULL);
  int started = 0, err = 0;
  for (; started < MC_RPC_CQ_THREADS; started++) {
    if ((err = pthread_create(&rt.cq_threads[started], NULL, cq_main, NULL)) !=
        0)
      break;
  }
  if (err == 0)
    err = pthread_create(&rt.timer_thread, NULL, timer_main, NULL);
  if (err != 0) {
    grpc_completion_queue_shutdown(rt.cq);
    for (int i = 0; i < started; i++)
      pthread_join(rt.cq_threads[i], NULL);
    grpc_completion_queue_destroy(rt.cq);
    rt.cq = NULL;
    grpc_shutdown_blocking();
    pthread_mutex_unlock(&rt.mu);
    return mc__error_set_os(MC_INTERNAL, err,
                            "cannot start the gRPC runtime threads");
  }
  rt.alive = 1;
  rt.refs = 1;
  pthread_mutex_unlock(&rt.mu);
  return MC_OK;
}

void mc__rpc_runtime_unref(void) {
  pthread_mutex_lock(&rt.mu);
  if (--rt.refs == 0 && !tls_internal)
    teardown_locked();
  pthread_mutex_unlock(&rt.mu);
}

/* A runtime whose last reference was dropped on one of its own threads is
 * shut down at process exit, so valgrind sees no running gRPC threads. */
__attribute__((destructor)) static void runtime_at_exit(void) {
  pthread_mutex_lock(&rt.mu);
  if (rt.alive && rt.refs == 0)
    teardown_locked();
  pthread_mutex_unlock(&rt.mu);
}

grpc_completion_queue *mc__rpc_cq(void) {
  return rt.cq;
}

/* ---- hooks ---- */

static pthread_rwlock_t hook_lock = PTHREAD_RWLOCK_INITIALIZER;
static mc_rpc_interceptor hook_intercept;
static void *hook_intercept_arg;
static mc_rpc_trace_hook hook_trace;
static void *hook_trace_arg;

void mc__rpc_set_interceptor(mc_rpc_interceptor fn, void *arg) {
  pthread_rwlock_wrlock(&hook_lock);
  hook_intercept = fn;
  hook_intercept_arg = arg;
  pthread_rwlock_unlock(&hook_lock);
}

void mc__rpc_set_trace_hook(mc_rpc_trace_hook fn, void *arg) {
  pthread_rwlock_wrlock(&hook_lock);
  hook_trace = fn;
  hook_trace_arg = arg;
  pthread_rwlock_unlock(&hook_lock);
}

int mc__rpc_intercept(const mc_rpc_call_info *info, mc_rpc_decision *d) {
  memset(d, 0, sizeof *d);
  pthread_rwlock_rdlock(&hook_lock);
  int called = hook_intercept != NULL;
  if (called)
    hook_intercept(hook_intercept_arg, info, d);
  pthread_rwlock_unlock(&hook_lock);
  d->message[sizeof d->message - 1] = '\0';
  d->fault[sizeof d->fault - 1] = '\0';
  return called;
}

void mc__rpc_trace(const mc_rpc_trace_event *ev) {
  pthread_rwlock_rdlock(&hook_lock);
  if (hook_trace != NULL)
    hook_trace(hook_trace_arg, ev);
  pthread_rwlock_unlock(&hook_lock);
}

/* ---- small shared helpers ---- */

static _Thread_local char tls_caller[128];

void mc__rpc_set_caller(const char *name) {
  if (name == NULL)
    tls_caller[0] = '\0';
  else
    snprintf(tls_caller, sizeof tls_caller, "%s", name);
}

const char *mc__rpc_get_caller(void) {
  return tls_caller[0] ? tls_caller : "client";
}

mc_code mc__rpc_code(grpc_status_code status) {
  if ((int)status < 0 || (int)status >= MC_CODE_COUNT)
    return MC_UNKNOWN;
  return (mc_code)status;
}

void mc__rpc_slice_copy(char *dst, size_t size, grpc_slice s) {
  size_t n = GRPC_SLICE_LENGTH(s);
  if (n >= size)
    n = size - 1;
  memcpy(dst, GRPC_SLICE_START_PTR(s), n);
  dst[n] = '\0';
}
