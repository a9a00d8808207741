/*
 * soak: a bounded soak test of the whole toolkit under faults.
 *
 * A local cluster of 4 workers + 4 ps runs a distributed SGD graph (the
 * weights split over the 4 ps tasks, one data shard per worker) from 8
 * client threads (thread i opens its session on worker i % 4), while a
 * data-service job (dispatcher + 2 workers, distributed_epoch) streams
 * range(elements).batch(1024) to a consumer thread, and a fault thread
 * injects random faults from a fixed seed: kill + restart of a task, pause
 * + resume, a partition between a worker and a ps, each healed after a
 * random 50-400 ms.
 *
 * Checks (exit status 1 and a FAIL line when one does not hold):
 *  - no hang: every step and every element fetch is bounded; a call that
 *    takes longer than its deadline + 5 s is a hang;
 *  - every step either succeeds with the correct check value (a Const on
 *    the ps times a Const on the worker, fetched with the training step) or
 *    fails with UNAVAILABLE, DEADLINE_EXCEEDED or ABORTED. A restarted task
 *    has fresh state, like a restarted TensorFlow process: its variables
 *    are uninitialized (FAILED_PRECONDITION naming the variable: the
 *    client re-runs the initializer; counted as "re-init", accepted only
 *    after a restart) and the sessions it was master of are gone (ABORTED,
 *    as in TensorFlow: the client reopens one; counted in ABORTED and
 *    "reopen");
 *  - the data job delivers exactly the elements 0..elements-1 (count and
 *    sum), data workers are not faulted;
 *  - no leak: RSS (after malloc_trim), fd and thread counts sampled after
 *    warm-up (25% of the steps) and at the end (faults healed, every
 *    session still open) stay within bounds (fds +8, threads +8, RSS
 *    +16 MiB; with the trim, runs here end 3-4 MiB below the warm-up
 *    sample);
 *  - after healing, training on the 4 ps converges to the true weights.
 *
 *   soak [--steps N] [--elements M] [--seed S] [--threads T]
 *        (defaults: 100000 steps, 10000000 elements, seed 1, 8 threads)
 */
#include <minicluster/minicluster.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { NW = 4, NPS = 4, N = 16, MAX_THREADS = 64 };
#define STEP_TIMEOUT_MS 2000
#define HANG_SLACK_MS 5000

static mc_cluster *cluster;
static mc_graph *graph;
static double true_w[NPS * 2];
static long total_steps = 100000;
static long total_elements = 10000000;
static uint64_t seed = 1;
static int nthreads = 8;

static atomic_long steps_started;
static atomic_long steps_ok, steps_unavail, steps_deadline, steps_aborted;
static atomic_long steps_reinit, steps_reopen, steps_bad, hangs;
static atomic_int restarts_done; /* restarts so far */
static atomic_int stop_faults;
static atomic_long faults_kill, faults_pause, faults_partition;
static char bad_msg[512];
static pthread_mutex_t bad_mu = PTHREAD_MUTEX_INITIALIZER;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what, mc_code rc) {
  fprintf(stderr, "soak: %s: %s: %s\n", what, mc_code_name(rc),
          mc_error_last()->message);
  exit(1);
}
#define CHECK(expr)                                                            \
  do {                                                                         \
    mc_code rc_ = (expr);                                                      \
    if (rc_ != MC_OK)                                                          \
      die(#expr, rc_);                                                         \
  } while (0)

static void record_bad(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static void record_bad(const char *fmt, ...) {
  atomic_fetch_add(&steps_bad, 1);
  pthread_mutex_lock(&bad_mu);
  if (bad_msg[0] == '\0') {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(bad_msg, sizeof bad_msg, fmt, ap);
    va_end(ap);
  }
  pthread_mutex_unlock(&bad_mu);
}

/* ---- process resources --------------------------------------------- */

static long count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL)
    return -1;
  long n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    n += e->d_name[0] != '.';
  closedir(d);
  return n - 1; /* the directory stream itself */
}

typedef struct usage {
  long rss_kib, fds, threads;
} usage;

/* RSS counts heap pages malloc keeps after free (per-thread arenas of
 * gRPC's and the data job's threads): the same run ended at 44 MiB or at
 * 173 MiB depending on that. malloc_trim hands those back first, so the
 * samples measure live memory, where a leak shows. */
static usage sample(void) {
  usage u = {0, 0, 0};
  malloc_trim(0);
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  while (f != NULL && fgets(line, sizeof line, f) != NULL) {
    sscanf(line, "VmRSS: %ld", &u.rss_kib);
    sscanf(line, "Threads: %ld", &u.threads);
  }
  if (f != NULL)
    fclose(f);
  u.fds = count_fds();
  return u;
}

/* ---- the graph ---------------------------------------------------- */

static uint64_t rng_state;
static double lcg(unsigned *s) {
  *s = *s * 1103515245u + 12345u;
  return ((*s >> 8) & 0xffff) / 32768.0 - 1.0;
}

static void cnst(mc_graph *g, const char *name, const double *v,
                 const int64_t *dims, int nd, const char *dev) {
  mc_tensor *t;
  size_t n = 1;
  for (int i = 0; i < nd; i++)
    n *= (size_t)dims[i];
  CHECK(mc_tensor_new(&t, MC_DT_DOUBLE, dims, nd, v, n * sizeof *v));
  CHECK(mc_graph_const(g, name, t, dev));
  mc_tensor_free(t);
}

static void op(mc_graph *g, const char *name, const char *type,
               const char *const *in, size_t nin, const char *dev) {
  CHECK(mc_graph_op(g, name, type, MC_DT_DOUBLE, in, nin, dev));
}

/* Weights w_p (2x1) on ps p; worker k has x_p_k (N x 2) for every p and
 * y_k; train_k applies one gradient step to every w_p; chk_k = c_k (on ps
 * k, value k + 1) * two_k (on worker k) = 2 (k + 1): the value every step
 * checks. init resets every w_p to zero. */
static void build_graph(mc_graph *g) {
  int64_t d21[2] = {2, 1}, dn2[2] = {N, 2}, dn1[2] = {N, 1};
  double zero[2] = {0, 0}, lr = 0.05, scale = 2.0 / N;
  const char *inits[NPS];
  char initn[NPS][16];
  unsigned s = 7;
  for (int i = 0; i < NPS * 2; i++)
    true_w[i] = lcg(&s) * 2;
  for (int p = 0; p < NPS; p++) {
    char dev[32], name[16], zeros[16];
    snprintf(dev, sizeof dev, "/job:ps/task:%d", p);
    snprintf(name, sizeof name, "w%d", p);
    snprintf(zeros, sizeof zeros, "zeros%d", p);
    snprintf(initn[p], sizeof initn[p], "init%d", p);
    CHECK(mc_graph_variable(g, name, MC_DT_DOUBLE, d21, 2, dev));
    cnst(g, zeros, zero, d21, 2, dev);
    const char *in[2] = {name, zeros};
    op(g, initn[p], "Assign", in, 2, NULL);
    inits[p] = initn[p];
  }
  char ctl[NPS][20];
  const char *ctlp[NPS];
  for (int p = 0; p < NPS; p++) {
    snprintf(ctl[p], sizeof ctl[p], "^%s", inits[p]);
    ctlp[p] = ctl[p];
  }
  CHECK(mc_graph_add(g, "init", "NoOp", ctlp, NPS, NULL, NULL));
  for (int k = 0; k < NW; k++) {
    char dev[32], psdev[32];
    snprintf(dev, sizeof dev, "/job:worker/task:%d", k);
    snprintf(psdev, sizeof psdev, "/job:ps/task:%d", k % NPS);
    double x[NPS][N * 2], y[N];
    for (int i = 0; i < N; i++) {
      y[i] = 0;
      for (int p = 0; p < NPS; p++)
        for (int j = 0; j < 2; j++) {
          double f = lcg(&s);
          x[p][i * 2 + j] = f;
          y[i] += f * true_w[p * 2 + j];
        }
    }
    char nm[64], prev[64] = "";
    for (int p = 0; p < NPS; p++) {
      char xn[32], pn[32], wn[16];
      snprintf(xn, sizeof xn, "x%d_%d", p, k);
      snprintf(pn, sizeof pn, "p%d_%d", p, k);
      snprintf(wn, sizeof wn, "w%d", p);
      cnst(g, xn, x[p], dn2, 2, dev);
      const char *in[2] = {xn, wn};
      op(g, pn, "MatMul", in, 2, dev);
      if (p > 0) {
        snprintf(nm, sizeof nm, "sum%d_%d", p, k);
        const char *in2[2] = {prev, pn};
        op(g, nm, "AddV2", in2, 2, dev);
        snprintf(prev, sizeof prev, "%s", nm);
      } else {
        snprintf(prev, sizeof prev, "%s", pn);
      }
    }
    char yn[16], lrn[16], scn[16], errn[16];
    snprintf(yn, sizeof yn, "y_%d", k);
    snprintf(lrn, sizeof lrn, "lr_%d", k);
    snprintf(scn, sizeof scn, "scale_%d", k);
    snprintf(errn, sizeof errn, "err_%d", k);
    cnst(g, yn, y, dn1, 2, dev);
    cnst(g, lrn, &lr, NULL, 0, dev);
    cnst(g, scn, &scale, NULL, 0, dev);
    const char *ein[2] = {prev, yn};
    op(g, errn, "Sub", ein, 2, dev);
    char upd[NPS][24];
    const char *updc[NPS];
    for (int p = 0; p < NPS; p++) {
      char gn[24], sn[24], xn[32], wn[16];
      snprintf(gn, sizeof gn, "g%d_%d", p, k);
      snprintf(sn, sizeof sn, "sg%d_%d", p, k);
      snprintf(upd[p], sizeof upd[p], "^upd%d_%d", p, k);
      snprintf(xn, sizeof xn, "x%d_%d", p, k);
      snprintf(wn, sizeof wn, "w%d", p);
      mc_node *mm;
      const char *gin[2] = {xn, errn};
      CHECK(mc_graph_add(g, gn, "MatMul", gin, 2, dev, &mm));
      CHECK(mc_node_set_bool(mm, "transpose_a", 1));
      const char *sin[2] = {gn, scn};
      op(g, sn, "Mul", sin, 2, dev);
      const char *uin[3] = {wn, lrn, sn};
      op(g, upd[p] + 1, "ApplyGradientDescent", uin, 3, dev);
      updc[p] = upd[p];
    }
    snprintf(nm, sizeof nm, "train_%d", k);
    CHECK(mc_graph_add(g, nm, "NoOp", updc, NPS, dev, NULL));
    double cv = k + 1, two = 2;
    char cn[16], tn[16], chk[16];
    snprintf(cn, sizeof cn, "c_%d", k);
    snprintf(tn, sizeof tn, "two_%d", k);
    snprintf(chk, sizeof chk, "chk_%d", k);
    cnst(g, cn, &cv, NULL, 0, psdev);
    cnst(g, tn, &two, NULL, 0, dev);
    const char *cin[2] = {cn, tn};
    op(g, chk, "Mul", cin, 2, dev);
  }
}

/* ---- client threads ------------------------------------------------ */

static int is_transient(mc_code rc) {
  return rc == MC_UNAVAILABLE || rc == MC_DEADLINE_EXCEEDED || rc == MC_ABORTED;
}

static mc_session *open_session(int k) {
  for (;;) {
    mc_session *s = NULL;
    mc_session_options o = MC_SESSION_OPTIONS_INIT;
    o.step_timeout_ms = STEP_TIMEOUT_MS;
    int64_t t0 = now_ms();
    mc_code rc = mc_session_open(&s, cluster->workers[k].target, graph, &o);
    if (now_ms() - t0 > STEP_TIMEOUT_MS + HANG_SLACK_MS)
      atomic_fetch_add(&hangs, 1);
    if (rc == MC_OK)
      return s;
    if (!is_transient(rc)) {
      record_bad("session open on worker %d: %s: %s", k, mc_code_name(rc),
                 mc_error_last()->message);
      return NULL;
    }
    usleep(20000);
  }
}

typedef struct client {
  int i;
  long steps;
} client;

static void *client_main(void *arg) {
  client *c = arg;
  int k = c->i % NW;
  char train[16], chk[16];
  snprintf(train, sizeof train, "train_%d", k);
  snprintf(chk, sizeof chk, "chk_%d", k);
  const char *targets[1] = {train}, *fetches[1] = {chk};
  mc_session *s = open_session(k);
  if (s == NULL)
    return NULL;
  while (atomic_fetch_add(&steps_started, 1) < total_steps) {
    mc_tensor *out[1] = {NULL};
    int64_t t0 = now_ms();
    mc_code rc =
        mc_session_run(s, NULL, NULL, 0, fetches, 1, targets, 1, 0, out);
    if (now_ms() - t0 > STEP_TIMEOUT_MS + HANG_SLACK_MS)
      atomic_fetch_add(&hangs, 1);
    c->steps++;
    if (rc == MC_OK) {
      double v = *(const double *)mc_tensor_data(out[0]);
      if (v != 2.0 * (k + 1))
        record_bad("worker %d: chk = %g, want %g", k, v, 2.0 * (k + 1));
      else
        atomic_fetch_add(&steps_ok, 1);
      mc_tensor_free(out[0]);
    } else if (rc == MC_UNAVAILABLE) {
      /* A client backs off a little: a restarted task is reachable again
       * after the channel's ~100 ms reconnect backoff. */
      atomic_fetch_add(&steps_unavail, 1);
      usleep(10000);
    } else if (rc == MC_DEADLINE_EXCEEDED) {
      atomic_fetch_add(&steps_deadline, 1);
    } else if (rc == MC_ABORTED) {
      atomic_fetch_add(&steps_aborted, 1);
      /* A restarted task forgot the session (master) or its graphs
       * (worker): recreate the session, as TensorFlow's
       * MonitoredSession does on AbortedError. */
      atomic_fetch_add(&steps_reopen, 1);
      (void)mc_session_close(s);
      if ((s = open_session(k)) == NULL)
        return NULL;
    } else if (atomic_load(&restarts_done) > 0 &&
               rc == MC_FAILED_PRECONDITION &&
               strstr(mc_error_last()->message, "uninitialized") != NULL) {
      atomic_fetch_add(&steps_reinit, 1);
      const char *init[1] = {"init"};
      (void)mc_session_run(s, NULL, NULL, 0, NULL, 0, init, 1, 0, NULL);
    } else {
      record_bad("worker %d step: %s: %s", k, mc_code_name(rc),
                 mc_error_last()->message);
    }
  }
  (void)mc_session_close(s);
  return NULL;
}

/* ---- the data job -------------------------------------------------- */

typedef struct datajob {
  mc_dispatch_server *d;
  long count;
  long double sum;
  mc_code rc;
  char msg[256];
} datajob;

static void *data_main(void *arg) {
  datajob *j = arg;
  mc_dataset *ds;
  CHECK(mc_dataset_range(&ds, 0, total_elements, 1));
  CHECK(mc_dataset_batch(ds, 1024, 0));
  mc_data_iterator *it;
  mc_distribute_options o = MC_DISTRIBUTE_OPTIONS_INIT;
  o.timeout_ms = 30000;
  j->rc = mc_data_distribute(&it, ds, MC_DISTRIBUTED_EPOCH,
                             mc_dispatch_server_target(j->d), &o);
  while (j->rc == MC_OK) {
    mc_element e = MC_ELEMENT_INIT;
    int eos = 0;
    int64_t t0 = now_ms();
    j->rc = mc_data_iterator_next(it, &e, &eos);
    if (now_ms() - t0 > 30000 + HANG_SLACK_MS)
      atomic_fetch_add(&hangs, 1);
    if (j->rc != MC_OK || eos)
      break;
    const mc_tensor *t = e.components[0];
    const int64_t *v = mc_tensor_data(t);
    size_t n = mc_tensor_num_elements(t);
    for (size_t i = 0; i < n; i++)
      j->sum += v[i];
    j->count += (long)n;
    mc_element_clear(&e);
  }
  if (j->rc != MC_OK)
    snprintf(j->msg, sizeof j->msg, "%s", mc_error_last()->message);
  mc_data_iterator_free(it);
  mc_dataset_free(ds);
  return NULL;
}

/* ---- faults -------------------------------------------------------- */

static uint64_t rnd(void) {
  /* xorshift64*: the one source of the fault schedule. */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ULL;
}

static const char *task_name(int ps, int idx, char *buf, size_t n) {
  snprintf(buf, n, "/job:%s/task:%d", ps ? "ps" : "worker", idx);
  return buf;
}

static void *fault_main(void *arg) {
  mc_faults *f = arg;
  while (!atomic_load(&stop_faults)) {
    usleep((useconds_t)(100000 + rnd() % 200000));
    if (atomic_load(&stop_faults))
      break;
    int kind = (int)(rnd() % 3), ps = (int)(rnd() % 2), idx = (int)(rnd() % 4);
    int64_t hold = 50 + (int64_t)(rnd() % 350);
    char name[32];
    task_name(ps, idx, name, sizeof name);
    if (kind == 0) {
      mc_server *srv =
          ps ? cluster->ps[idx].server : cluster->workers[idx].server;
      if (mc_server_kill(srv) == MC_OK) {
        atomic_fetch_add(&faults_kill, 1);
        usleep((useconds_t)hold * 1000);
        CHECK(mc_server_restart(srv));
        atomic_fetch_add(&restarts_done, 1);
      }
    } else if (kind == 1) {
      if (mc_fault_pause(f, name, NULL) == MC_OK) {
        atomic_fetch_add(&faults_pause, 1);
        usleep((useconds_t)hold * 1000);
        CHECK(mc_fault_resume(f, name));
      }
    } else {
      char other[32];
      task_name(!ps, (int)(rnd() % 4), other, sizeof other);
      const char *a[1] = {name}, *b[1] = {other};
      int id = -1;
      if (mc_fault_partition(f, a, 1, b, 1, 0, &id) == MC_OK) {
        atomic_fetch_add(&faults_partition, 1);
        usleep((useconds_t)hold * 1000);
        CHECK(mc_fault_heal(f, id));
      }
    }
  }
  return NULL;
}

/* ---- main ------------------------------------------------------------ */

static int converged(void) {
  mc_session *s = open_session(0);
  if (s == NULL)
    return 0;
  const char *init[1] = {"init"}, *train[1] = {"train_0"};
  CHECK(mc_session_run(s, NULL, NULL, 0, NULL, 0, init, 1, 0, NULL));
  for (int i = 0; i < 2000; i++)
    CHECK(mc_session_run(s, NULL, NULL, 0, NULL, 0, train, 1, 0, NULL));
  int ok = 1;
  for (int p = 0; p < NPS; p++) {
    char wn[8];
    snprintf(wn, sizeof wn, "w%d", p);
    const char *fetch[1] = {wn};
    mc_tensor *w;
    CHECK(mc_session_run(s, NULL, NULL, 0, fetch, 1, NULL, 0, 0, &w));
    const double *v = mc_tensor_data(w);
    for (int j = 0; j < 2; j++)
      if (v[j] - true_w[p * 2 + j] > 1e-3 || v[j] - true_w[p * 2 + j] < -1e-3) {
        printf("FAIL: w%d[%d] = %f, true %f\n", p, j, v[j], true_w[p * 2 + j]);
        ok = 0;
      }
    mc_tensor_free(w);
  }
  (void)mc_session_close(s);
  return ok;
}

int main(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--steps") == 0)
      total_steps = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--elements") == 0)
      total_elements = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--seed") == 0)
      seed = strtoull(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--threads") == 0)
      nthreads = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "soak: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  if (nthreads < 1 || nthreads > MAX_THREADS || total_steps < 1 ||
      total_elements < 1) {
    fprintf(stderr,
            "soak: --threads must be 1..%d, --steps and --elements "
            ">= 1\n",
            MAX_THREADS);
    return 2;
  }
  rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
  int64_t t_start = now_ms();
  CHECK(mc_create_local_cluster(NW, NPS, NULL, NULL, NULL, &cluster));
  CHECK(mc_graph_new(&graph));
  build_graph(graph);
  {
    mc_session *s = open_session(0);
    const char *init[1] = {"init"};
    CHECK(mc_session_run(s, NULL, NULL, 0, NULL, 0, init, 1, 0, NULL));
    CHECK(mc_session_close(s));
  }
  mc_dispatch_config dc = MC_DISPATCH_CONFIG_INIT;
  datajob dj;
  memset(&dj, 0, sizeof dj);
  CHECK(mc_dispatch_server_new(&dj.d, &dc, 1));
  mc_worker_server *dw[2];
  for (int i = 0; i < 2; i++) {
    mc_worker_config wc = MC_WORKER_CONFIG_INIT;
    wc.dispatcher_address = mc_dispatch_server_target(dj.d);
    wc.heartbeat_interval_ms = 100;
    CHECK(mc_worker_server_new(&dw[i], &wc, 1));
  }
  mc_faults *faults;
  mc_fault_options fo = MC_FAULT_OPTIONS_INIT;
  fo.seed = seed;
  CHECK(mc_faults_new(&faults, &fo));

  pthread_t dth, fth, cth[MAX_THREADS];
  client cl[MAX_THREADS];
  pthread_create(&dth, NULL, data_main, &dj);
  pthread_create(&fth, NULL, fault_main, faults);
  for (int i = 0; i < nthreads; i++) {
    cl[i].i = i;
    cl[i].steps = 0;
    pthread_create(&cth[i], NULL, client_main, &cl[i]);
  }
  /* Warm-up sample at 25% of the steps; the end sample after the clients
   * finished and the faults are healed, before anything is freed. */
  usage warm = {0, 0, 0}, peak = {0, 0, 0};
  int have_warm = 0;
  long last_report = 0;
  while (atomic_load(&steps_started) < total_steps) {
    usleep(200000);
    long done = atomic_load(&steps_started);
    if (!have_warm && done >= total_steps / 4) {
      warm = sample();
      have_warm = 1;
    }
    if (have_warm) {
      usage u = sample();
      peak.rss_kib = u.rss_kib > peak.rss_kib ? u.rss_kib : peak.rss_kib;
    }
    if (done - last_report >= total_steps / 10) {
      fprintf(stderr, "soak: %ld/%ld steps, %.0f s\n", done, total_steps,
              (now_ms() - t_start) / 1000.0);
      last_report = done;
    }
  }
  for (int i = 0; i < nthreads; i++)
    pthread_join(cth[i], NULL);
  atomic_store(&stop_faults, 1);
  pthread_join(fth, NULL);
  mc_faults_heal_all(faults);
  pthread_join(dth, NULL);
  int64_t t_steps = now_ms() - t_start;
  if (!have_warm)
    warm = sample();
  /* Let connection clean-up settle before the end sample. */
  usleep(500000);
  usage end = sample();
  int ok_conv = converged();

  long ok = atomic_load(&steps_ok), un = atomic_load(&steps_unavail),
       dl = atomic_load(&steps_deadline), ab = atomic_load(&steps_aborted),
       ri = atomic_load(&steps_reinit), ro = atomic_load(&steps_reopen),
       bad = atomic_load(&steps_bad), hg = atomic_load(&hangs);
  long double want_sum =
      (long double)total_elements * (long double)(total_elements - 1) / 2;
  printf("soak: seed %" PRIu64 ", %ld steps from %d threads on 4 workers + 4 "
         "ps, data job of %ld elements, %.1f s\n",
         seed, total_steps, nthreads, total_elements, t_steps / 1000.0);
  printf("  faults: %ld kill+restart, %ld pause, %ld partition\n",
         atomic_load(&faults_kill), atomic_load(&faults_pause),
         atomic_load(&faults_partition));
  printf("  steps: ok %ld, UNAVAILABLE %ld, DEADLINE_EXCEEDED %ld, ABORTED "
         "%ld (reopened session %ld), after restart: re-init %ld; other %ld; "
         "hangs %ld\n",
         ok, un, dl, ab, ro, ri, bad, hg);
  printf("  data: %s, %ld elements (want %ld), sum %s\n", mc_code_name(dj.rc),
         dj.count, total_elements, dj.sum == want_sum ? "correct" : "WRONG");
  printf("  resources after warm-up -> end: RSS %ld -> %ld KiB (peak %ld), "
         "fds %ld -> %ld, threads %ld -> %ld\n",
         warm.rss_kib, end.rss_kib, peak.rss_kib, warm.fds, end.fds,
         warm.threads, end.threads);
  int fail = 0;
  if (bad > 0) {
    printf("FAIL: %ld steps with an unexpected result; first: %s\n", bad,
           bad_msg);
    fail = 1;
  }
  if (hg > 0) {
    printf("FAIL: %ld calls took longer than their deadline + %d ms\n", hg,
           HANG_SLACK_MS);
    fail = 1;
  }
  if (dj.rc != MC_OK || dj.count != total_elements || dj.sum != want_sum) {
    printf("FAIL: data job: %s %s\n", mc_code_name(dj.rc), dj.msg);
    fail = 1;
  }
  if (end.fds - warm.fds > 8 || end.threads - warm.threads > 8 ||
      end.rss_kib - warm.rss_kib > 16 * 1024) {
    printf("FAIL: resources grew after warm-up\n");
    fail = 1;
  }
  if (!ok_conv) {
    printf("FAIL: training did not converge after healing\n");
    fail = 1;
  }
  if (ok == 0) {
    printf("FAIL: no step succeeded\n");
    fail = 1;
  }
  mc_faults_free(faults);
  for (int i = 0; i < 2; i++)
    mc_worker_server_free(dw[i]);
  mc_dispatch_server_free(dj.d);
  mc_graph_free(graph);
  mc_cluster_free(cluster);
  printf("soak: %s\n", fail ? "FAILED" : "passed");
  return fail;
}
