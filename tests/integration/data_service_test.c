/* The data service end to end: dispatcher, workers, distribute(). */
#include "testutil.h"

#include "data/data_service.h"
#include "data_dispatcher.pb-c.h"
#include "data_worker.pb-c.h"
#include "rpc/rpc.h"

#include <minicluster/data_service.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <unistd.h>

#define HB_MS 20

typedef struct cluster {
  mc_dispatch_server *d;
  mc_worker_server *w[8];
  int nw;
} cluster;

static void start_cluster(cluster *c, int nworkers,
                          const mc_dispatch_config *dc_in) {
  memset(c, 0, sizeof *c);
  mc_dispatch_config dc = MC_DISPATCH_CONFIG_INIT;
  if (dc_in != NULL)
    dc = *dc_in;
  MC_ASSERT_OK(mc_dispatch_server_new(&c->d, &dc, 1));
  for (int i = 0; i < nworkers; i++) {
    mc_worker_config wc = MC_WORKER_CONFIG_INIT;
    wc.dispatcher_address = mc_dispatch_server_target(c->d);
    wc.heartbeat_interval_ms = HB_MS;
    MC_ASSERT_OK(mc_worker_server_new(&c->w[i], &wc, 1));
  }
  c->nw = nworkers;
  /* Wait until every worker registered, so every iteration gets a task on
   * each of them. */
  int64_t deadline = mc_test_now_ms() + 20000;
  while (mc_dispatch_server_num_workers(c->d) < (size_t)nworkers &&
         mc_test_now_ms() < deadline)
    usleep(5000);
  assert_int_equal(mc_dispatch_server_num_workers(c->d), nworkers);
}

static void stop_cluster(cluster *c) {
  for (int i = 0; i < c->nw; i++)
    mc_worker_server_free(c->w[i]); /* NULL for killed workers */
  mc_dispatch_server_free(c->d);
}

/* The next element as a scalar int64 *v in [0, n), or 0 at the end of the
 * stream. Anything else fails the test with what the iterator returned. */
static int next_value(mc_data_iterator *it, int64_t n, int64_t *v) {
  mc_element e = MC_ELEMENT_INIT;
  int eos = 0;
  MC_ASSERT_OK(mc_data_iterator_next(it, &e, &eos));
  if (eos)
    return 0;
  if (e.num_components != 1 ||
      mc_tensor_dtype(e.components[0]) != MC_DT_INT64 ||
      mc_tensor_num_elements(e.components[0]) != 1)
    fail_msg("element with %zu components, expected one scalar int64",
             e.num_components);
  *v = *(const int64_t *)mc_tensor_data(e.components[0]);
  mc_element_clear(&e);
  if (*v < 0 || *v >= n)
    fail_msg("element %lld outside [0, %lld)", (long long)*v, (long long)n);
  return 1;
}

/* Reads exactly k elements; counts[v]++ for each. An early end of the
 * stream fails the test, saying how far it got and what was lost. */
static void read_n(mc_data_iterator *it, int *counts, int64_t n, int64_t k) {
  for (int64_t i = 0; i < k; i++) {
    int64_t v;
    if (!next_value(it, n, &v))
      fail_msg("end of stream after %lld of %lld elements (%zu workers "
               "lost, %zu splits lost)",
               (long long)i, (long long)k, mc_data_iterator_lost_workers(it),
               mc_data_iterator_lost_splits(it, NULL, 0));
    counts[v]++;
  }
}

/* Reads everything; counts[v]++ for each. Returns the number of elements. */
static int64_t drain(mc_data_iterator *it, int *counts, int64_t n) {
  int64_t total = 0;
  for (int64_t v; next_value(it, n, &v); total++)
    counts[v]++;
  return total;
}

/* A cluster with one reader of range(n), and counts[n] for drain. */
typedef struct reader {
  cluster c;
  int64_t n;
  mc_dataset *ds;
  mc_data_iterator *it;
  int *counts;
} reader;

static void start_reader(reader *r, int nworkers, const mc_dispatch_config *dc,
                         int64_t n, mc_processing_mode mode) {
  start_cluster(&r->c, nworkers, dc);
  r->n = n;
  MC_ASSERT_OK(mc_dataset_range(&r->ds, 0, n, 1));
  MC_ASSERT_OK(mc_data_distribute(&r->it, r->ds, mode,
                                  mc_dispatch_server_target(r->c.d), NULL));
  r->counts = calloc((size_t)n, sizeof *r->counts);
  assert_non_null(r->counts);
}

static void stop_reader(reader *r) {
  mc_data_iterator_free(r->it);
  mc_dataset_free(r->ds);
  free(r->counts);
  stop_cluster(&r->c);
}

/* Restarts worker i on its port: a new incarnation at the same address. */
static void restart_worker(cluster *c, int i) {
  int port = mc_worker_server_port(c->w[i]);
  mc_worker_server_free(c->w[i]);
  mc_worker_config wc = MC_WORKER_CONFIG_INIT;
  wc.dispatcher_address = mc_dispatch_server_target(c->d);
  wc.heartbeat_interval_ms = HB_MS;
  wc.port = port;
  MC_ASSERT_OK(mc_worker_server_new(&c->w[i], &wc, 1));
}

/* Every element was read lo..hi times. */
static void check_counts(const reader *r, int lo, int hi) {
  for (int64_t i = 0; i < r->n; i++)
    if (r->counts[i] < lo || r->counts[i] > hi)
      fail_msg("element %lld read %d times, expected %d..%d (%zu workers "
               "lost)",
               (long long)i, r->counts[i], lo, hi,
               mc_data_iterator_lost_workers(r->it));
}

/* distributed_epoch after a lost or restarted worker: no element twice, and
 * every missing element lies in a split reported lost (at least min_lost
 * of them). */
static void check_lost_splits(reader *r, size_t min_lost) {
  mc_lost_split lost[64];
  size_t nl = mc_data_iterator_lost_splits(r->it, lost, 64);
  assert_true(nl >= min_lost && nl <= 64);
  for (int64_t i = 0; i < r->n; i++) {
    assert_true(r->counts[i] <= 1); /* never twice */
    if (r->counts[i] == 1)
      continue;
    int covered = 0; /* a missing element lies in a lost split */
    for (size_t k = 0; k < nl; k++)
      covered |= i >= lost[k].begin && i < lost[k].end;
    assert_true(covered);
  }
}

/* worker_timeout_ms for the tests that kill a worker: the reader waits this
 * long for the dead one, so it is short, but a live worker heartbeating
 * every HB_MS must never miss it. Under valgrind, which runs one thread at
 * a time, a healthy worker's heartbeats arrived up to 0.9 s apart (load
 * average 5 on 2 cores): with the 500 ms this test once had, all three
 * workers were declared lost and the iteration ended after 0 to 64 of its
 * elements. 10 s leaves a tenfold margin. */
static int64_t lost_worker_timeout_ms(void) {
  return mc_test_under_valgrind() ? 10000 : 1500;
}

static void test_range10_one_worker(void **state) {
  (void)state;
  reader r;
  start_reader(&r, 1, NULL, 10, MC_PARALLEL_EPOCHS);
  for (int64_t i = 0; i < 10; i++) {
    int64_t v = -1;
    if (!next_value(r.it, 10, &v))
      fail_msg("end of stream after %lld of 10 elements", (long long)i);
    assert_int_equal(v, i);
  }
  int64_t v;
  assert_false(next_value(r.it, 10, &v));
  stop_reader(&r);
}

/* Element i of range(n) -> 69 int64 scalars 100 * i + k and the string
 * "s<i>". */
#define NCOMP 70
static mc_code seventy(void *arg, const mc_element *in, mc_element *out) {
  (void)arg;
  int64_t i = *(const int64_t *)mc_tensor_data(in->components[0]);
  mc_tensor *t[NCOMP] = {0};
  char str[32];
  int len = snprintf(str, sizeof str, "s%lld", (long long)i);
  const char *strs[1] = {str};
  size_t lens[1] = {(size_t)len};
  /* Runs on a worker thread: report failures as the map's error. */
  mc_code rc = mc_tensor_new_strings(&t[NCOMP - 1], NULL, 0, strs, lens);
  for (int k = 0; rc == MC_OK && k < NCOMP - 1; k++)
    rc = mc_tensor_new_int64(&t[k], 100 * i + k);
  if (rc != MC_OK) {
    for (int k = 0; k < NCOMP; k++)
      mc_tensor_free(t[k]);
    return rc;
  }
  return mc_element_take(out, t, NCOMP);
}

/* Elements of many components, dense and string ones, arrive whole and in
 * order (the worker once dropped components past the 64th). */
static void test_many_components(void **state) {
  (void)state;
  MC_ASSERT_OK(mc_dataset_register_map("seventy", seventy, NULL));
  cluster c;
  start_cluster(&c, 1, NULL);
  mc_dataset *ds;
  MC_ASSERT_OK(mc_dataset_range(&ds, 0, 5, 1));
  MC_ASSERT_OK(mc_dataset_map(ds, "seventy"));
  mc_data_iterator *it;
  MC_ASSERT_OK(mc_data_distribute(&it, ds, MC_PARALLEL_EPOCHS,
                                  mc_dispatch_server_target(c.d), NULL));
  for (int64_t i = 0; i < 5; i++) {
    mc_element e = MC_ELEMENT_INIT;
    int eos = 1;
    MC_ASSERT_OK(mc_data_iterator_next(it, &e, &eos));
    assert_false(eos);
    assert_int_equal(e.num_components, NCOMP);
    for (int k = 0; k < NCOMP - 1; k++)
      assert_int_equal(*(const int64_t *)mc_tensor_data(e.components[k]),
                       100 * i + k);
    char want[32];
    snprintf(want, sizeof want, "s%lld", (long long)i);
    assert_string_equal(mc_tensor_string(e.components[NCOMP - 1], 0, NULL),
                        want);
    mc_element_clear(&e);
  }
  mc_element e = MC_ELEMENT_INIT;
  int eos = 0;
  MC_ASSERT_OK(mc_data_iterator_next(it, &e, &eos));
  assert_true(eos);
  mc_data_iterator_free(it);
  mc_dataset_free(ds);
  stop_cluster(&c);
}

static void test_range10_three_workers(void **state) {
  (void)state;
  reader r;
  start_reader(&r, 3, NULL, 10, MC_PARALLEL_EPOCHS);
  assert_int_equal(drain(r.it, r.counts, 10), 30);
  check_counts(&r, 3, 3);
  stop_reader(&r);
}

typedef struct consumer {
  const char *target;
  const mc_dataset *ds;
  int *counts;
  int64_t n, got;
  const char *job;
  mc_processing_mode mode;
  pthread_barrier_t *ready;
} consumer;

static void *consume(void *arg) {
  consumer *c = arg;
  mc_distribute_options o = MC_DISTRIBUTE_OPTIONS_INIT;
  o.job_name = c->job;
  mc_data_iterator *it;
  MC_ASSERT_OK(mc_data_distribute(&it, c->ds, c->mode, c->target, &o));
  /* Both consumers join the job before either reads, so each gets a share
   * even when one thread starts late (valgrind). */
  pthread_barrier_wait(c->ready);
  c->got = drain(it, c->counts, c->n);
  mc_data_iterator_free(it);
  return NULL;
}

static void test_distributed_shared_job(void **state) {
  (void)state;
  int64_t n = mc_test_under_valgrind() ? 5000 : 100000;
  cluster c;
  start_cluster(&c, 3, NULL);
  mc_dataset *ds;
  MC_ASSERT_OK(mc_dataset_range(&ds, 0, n, 1));
  int *counts = calloc((size_t)n, sizeof *counts);
  int *counts2 = calloc((size_t)n, sizeof *counts2);
  pthread_barrier_t ready;
  pthread_barrier_init(&ready, NULL, 2);
  consumer a = {mc_dispatch_server_target(c.d), ds,    counts, n, 0, "shared",
                MC_DISTRIBUTED_EPOCH,           &ready};
  consumer b = a;
  b.counts = counts2;
  pthread_t ta, tb;
  assert_int_equal(pthread_create(&ta, NULL, consume, &a), 0);
  assert_int_equal(pthread_create(&tb, NULL, consume, &b), 0);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  pthread_barrier_destroy(&ready);
  assert_int_equal(a.got + b.got, n);
  assert_true(a.got > 0 && b.got > 0);
  for (int64_t i = 0; i < n; i++)
    assert_int_equal(counts[i] + counts2[i], 1);
  /* The same job name with another mode is refused, naming the job. */
  mc_distribute_options o = MC_DISTRIBUTE_OPTIONS_INIT;
  o.job_name = "shared";
  mc_data_iterator *it;
  MC_ASSERT_ERR(mc_data_distribute(&it, ds, MC_PARALLEL_EPOCHS,
                                   mc_dispatch_server_target(c.d), &o),
                MC_INVALID_ARGUMENT, "job \"shared\" exists");
  free(counts);
  free(counts2);
  mc_dataset_free(ds);
  stop_cluster(&c);
}

static void test_config_errors(void **state) {
  (void)state;
  mc_dispatch_config dc = MC_DISPATCH_CONFIG_INIT;
  dc.fault_tolerant_mode = 1;
  mc_dispatch_server *d;
  MC_ASSERT_ERR(mc_dispatch_server_new(&d, &dc, 1), MC_INVALID_ARGUMENT,
                "fault_tolerant_mode needs a work_dir");
  dc = (mc_dispatch_config)MC_DISPATCH_CONFIG_INIT;
  dc.protocol = "http";
  MC_ASSERT_ERR(mc_dispatch_server_new(&d, &dc, 1), MC_INVALID_ARGUMENT,
                "\"http\"");
  mc_worker_config wc = MC_WORKER_CONFIG_INIT;
  mc_worker_server *w;
  MC_ASSERT_ERR(mc_worker_server_new(&w, &wc, 1), MC_INVALID_ARGUMENT,
                "dispatcher_address is required");
  /* A taken port is refused, naming the address. */
  dc = (mc_dispatch_config)MC_DISPATCH_CONFIG_INIT;
  MC_ASSERT_OK(mc_dispatch_server_new(&d, &dc, 1));
  char port[16];
  snprintf(port, sizeof port, "%d", mc_dispatch_server_port(d));
  dc.port = mc_dispatch_server_port(d);
  mc_dispatch_server *d2;
  MC_ASSERT_ERR(mc_dispatch_server_new(&d2, &dc, 1), MC_UNAVAILABLE, port);
  /* Bad distribute arguments. */
  mc_dataset *ds;
  MC_ASSERT_OK(mc_dataset_range(&ds, 0, 3, 1));
  mc_data_iterator *it;
  MC_ASSERT_ERR(mc_data_distribute(&it, ds, (mc_processing_mode)7,
                                   mc_dispatch_server_target(d), NULL),
                MC_INVALID_ARGUMENT, "processing mode 7");
  mc_dataset_free(ds);
  mc_dispatch_server_free(d);
}

static void make_dir(char *buf, size_t n) {
  snprintf(buf, n, "/tmp/mc_data_XXXXXX");
  assert_non_null(mkdtemp(buf));
}

static void rm_dir(const char *dir) {
  char p[512];
  snprintf(p, sizeof p, "%s/tf_data_dispatcher_journal", dir);
  unlink(p);
  rmdir(dir);
}

static void test_dispatcher_restart_distributed(void **state) {
  (void)state;
  int64_t n = mc_test_under_valgrind() ? 3000 : 30000;
  char dir[64];
  make_dir(dir, sizeof dir);
  mc_dispatch_config dc = MC_DISPATCH_CONFIG_INIT;
  dc.work_dir = dir;
  dc.fault_tolerant_mode = 1;
  reader r;
  start_reader(&r, 2, &dc, n, MC_DISTRIBUTED_EPOCH);
  dc.port = mc_dispatch_server_port(r.c.d);
  int64_t total = n / 4;
  read_n(r.it, r.counts, n, total);
  /* Kill the dispatcher mid-epoch (no grace: calls in flight fail) and
   * bring it back on the same port. */
  mc__dispatch_server_set_grace_ms(r.c.d, 0);
  mc_dispatch_server_free(r.c.d);
  usleep(100000);
  MC_ASSERT_OK(mc_dispatch_server_new(&r.c.d, &dc, 1));
  total += drain(r.it, r.counts, n);
  assert_int_equal(total, n);
  check_counts(&r, 1, 1);
  stop_reader(&r);

  /* A torn last record is dropped with a warning: the dispatcher starts. */
  char path[512];
  snprintf(path, sizeof path, "%s/tf_data_dispatcher_journal", dir);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(truncate(path, st.st_size - 3), 0);
  dc.port = 0;
  mc_dispatch_server *d;
  MC_ASSERT_OK(mc_dispatch_server_new(&d, &dc, 1));
  mc_dispatch_server_free(d);
  /* Corruption before the tail is DATA_LOSS naming the file and offset. */
  FILE *f = fopen(path, "r+");
  assert_non_null(f);
  fseek(f, 20, SEEK_SET);
  fputc('X', f);
  fclose(f);
  MC_ASSERT_ERR(mc_dispatch_server_new(&d, &dc, 1), MC_DATA_LOSS, path);
  assert_non_null(strstr(mc_error_last()->message, "offset"));
  rm_dir(dir);
}

static void test_worker_lost_parallel(void **state) {
  (void)state;
  int64_t n = mc_test_under_valgrind() ? 2000 : 20000;
  mc_dispatch_config dc = MC_DISPATCH_CONFIG_INIT;
  dc.worker_timeout_ms = lost_worker_timeout_ms();
  reader r;
  start_reader(&r, 3, &dc, n, MC_PARALLEL_EPOCHS);
  int64_t total = n / 2;
  read_n(r.it, r.counts, n, total);
  mc_worker_server_free(r.c.w[0]);
  r.c.w[0] = NULL;
  total += drain(r.it, r.counts, n);
  /* The other two workers delivered the whole dataset each. */
  check_counts(&r, 2, 3);
  assert_true(total < 3 * n);
  assert_int_equal(mc_data_iterator_lost_workers(r.it), 1);
  stop_reader(&r);
}

static void test_worker_lost_distributed(void **state) {
  (void)state;
  int64_t n = mc_test_under_valgrind() ? 2000 : 20000;
  mc_dispatch_config dc = MC_DISPATCH_CONFIG_INIT;
  dc.worker_timeout_ms = lost_worker_timeout_ms();
  reader r;
  start_reader(&r, 2, &dc, n, MC_DISTRIBUTED_EPOCH);
  read_n(r.it, r.counts, n, n / 10);
  mc_worker_server_free(r.c.w[1]);
  r.c.w[1] = NULL;
  drain(r.it, r.counts, n);
  check_lost_splits(&r, 1);
  assert_int_equal(mc_data_iterator_lost_workers(r.it), 1);
  stop_reader(&r);
}

static void test_worker_restart_gets_tasks_back(void **state) {
  (void)state;
  int64_t n = mc_test_under_valgrind() ? 2000 : 20000;
  reader r;
  start_reader(&r, 2, NULL, n, MC_PARALLEL_EPOCHS);
  read_n(r.it, r.counts, n, n / 4);
  restart_worker(&r.c, 1);
  drain(r.it, r.counts, n);
  /* Both workers produced a whole epoch (the restarted one from the
   * start again); no worker was declared lost. */
  check_counts(&r, 2, INT_MAX);
  assert_int_equal(mc_data_iterator_lost_workers(r.it), 0);
  assert_true(mc_worker_server_num_tasks(r.c.w[1]) >= 1);
  stop_reader(&r);
}

static void test_iteration_gc(void **state) {
  (void)state;
  mc_dispatch_config dc = MC_DISPATCH_CONFIG_INIT;
  dc.job_gc_check_interval_ms = 20;
  dc.job_gc_timeout_ms = 50;
  cluster c;
  start_cluster(&c, 1, &dc);
  mc_dataset *ds;
  MC_ASSERT_OK(mc_dataset_range(&ds, 0, 1000000, 1));
  mc_data_iterator *it;
  MC_ASSERT_OK(mc_data_distribute(&it, ds, MC_PARALLEL_EPOCHS,
                                  mc_dispatch_server_target(c.d), NULL));
  mc_element e = MC_ELEMENT_INIT;
  int eos = 0;
  MC_ASSERT_OK(mc_data_iterator_next(it, &e, &eos));
  mc_element_clear(&e);
  assert_int_equal(mc_worker_server_num_tasks(c.w[0]), 1);
  mc_data_iterator_free(it); /* releases the only client */
  int64_t deadline = mc_test_now_ms() + 20000;
  while (mc_worker_server_num_tasks(c.w[0]) > 0 && mc_test_now_ms() < deadline)
    usleep(10000);
  assert_int_equal(mc_worker_server_num_tasks(c.w[0]), 0);
  /* The deleted task's producer thread is joined and its queue (it had
   * filled it: 256 elements) freed while the worker runs on, not only
   * when it stops. */
  size_t threads = 1, bytes = 1;
  deadline = mc_test_now_ms() + 20000;
  while ((threads > 0 || bytes > 0) && mc_test_now_ms() < deadline) {
    mc__worker_server_held(c.w[0], &threads, &bytes);
    if (threads > 0 || bytes > 0)
      usleep(10000);
  }
  assert_int_equal(threads, 0);
  assert_int_equal(bytes, 0);
  mc_dataset_free(ds);
  stop_cluster(&c);
}

/* distributed_epoch: a worker restarted on its address (a new incarnation)
 * gets its task back and asks for fresh splits; the splits its first
 * incarnation held are reported lost, and nothing is read twice. */
static void test_worker_restart_distributed(void **state) {
  (void)state;
  int64_t n = mc_test_under_valgrind() ? 2000 : 20000;
  reader r;
  start_reader(&r, 2, NULL, n, MC_DISTRIBUTED_EPOCH);
  read_n(r.it, r.counts, n, n / 10);
  restart_worker(&r.c, 1);
  drain(r.it, r.counts, n);
  check_lost_splits(&r, 0);
  assert_int_equal(mc_data_iterator_lost_workers(r.it), 0);
  stop_reader(&r);
}

/* With TensorFlow's default heartbeat (30 s) and a one-hour one here, the
 * iteration can only start and end promptly if the dispatcher pushes tasks
 * (ProcessTask) and the worker reports completion at once: otherwise this
 * test hangs until ctest's timeout. */
static void test_tasks_pushed_without_heartbeats(void **state) {
  (void)state;
  mc_dispatch_config dc = MC_DISPATCH_CONFIG_INIT;
  mc_dispatch_server *d;
  MC_ASSERT_OK(mc_dispatch_server_new(&d, &dc, 1));
  mc_worker_config wc = MC_WORKER_CONFIG_INIT;
  wc.dispatcher_address = mc_dispatch_server_target(d);
  wc.heartbeat_interval_ms = 3600 * 1000;
  mc_worker_server *w;
  MC_ASSERT_OK(mc_worker_server_new(&w, &wc, 1));
  while (mc_dispatch_server_num_workers(d) < 1)
    usleep(5000);
  mc_dataset *ds;
  MC_ASSERT_OK(mc_dataset_range(&ds, 0, 10, 1));
  mc_data_iterator *it;
  MC_ASSERT_OK(mc_data_distribute(&it, ds, MC_PARALLEL_EPOCHS,
                                  mc_dispatch_server_target(d), NULL));
  int counts[10] = {0};
  assert_int_equal(drain(it, counts, 10), 10);
  mc_data_iterator_free(it);
  mc_dataset_free(ds);
  mc_worker_server_free(w);
  mc_dispatch_server_free(d);
}

/* One unary call to target's method; the response is the caller's. */
static ProtobufCMessage *call(const char *target, const char *method,
                              const ProtobufCMessage *req,
                              const ProtobufCMessageDescriptor *resp_type) {
  mc_rpc_channel *ch;
  MC_ASSERT_OK(mc__rpc_channel_get(target, &ch));
  ProtobufCMessage *resp = NULL;
  MC_ASSERT_OK(mc__rpc_unary(ch, method, req, resp_type, 10000, &resp));
  mc__rpc_channel_release(ch);
  return resp;
}

/* GetWorkers lists the live workers by address; GetWorkerTasks lists a
 * worker's tasks. */
static void test_get_workers_and_tasks(void **state) {
  (void)state;
  reader r;
  start_reader(&r, 2, NULL, 10, MC_PARALLEL_EPOCHS);
  read_n(r.it, r.counts, 10, 1);
  Tensorflow__Data__GetWorkersRequest wreq =
      TENSORFLOW__DATA__GET_WORKERS_REQUEST__INIT;
  Tensorflow__Data__GetWorkersResponse *workers =
      (Tensorflow__Data__GetWorkersResponse *)call(
          mc_dispatch_server_target(r.c.d),
          "/tensorflow.data.DispatcherService/GetWorkers", &wreq.base,
          &tensorflow__data__get_workers_response__descriptor);
  assert_int_equal(workers->n_workers, 2);
  for (int i = 0; i < 2; i++) {
    int found = 0;
    for (size_t k = 0; k < workers->n_workers; k++)
      found += strcmp(workers->workers[k]->address,
                      mc_worker_server_address(r.c.w[i])) == 0;
    if (found != 1)
      fail_msg("worker %s listed %d times", mc_worker_server_address(r.c.w[i]),
               found);
  }
  protobuf_c_message_free_unpacked(&workers->base, NULL);
  Tensorflow__Data__GetWorkerTasksRequest treq =
      TENSORFLOW__DATA__GET_WORKER_TASKS_REQUEST__INIT;
  /* The first element may come from worker 1 before worker 0 has been
   * given its task (pushed, or taken at its next heartbeat): wait for it,
   * within 100 heartbeats. */
  Tensorflow__Data__GetWorkerTasksResponse *tasks = NULL;
  for (int i = 0; i < 100; i++) {
    if (tasks != NULL)
      protobuf_c_message_free_unpacked(&tasks->base, NULL);
    tasks = (Tensorflow__Data__GetWorkerTasksResponse *)call(
        mc_worker_server_address(r.c.w[0]),
        "/tensorflow.data.WorkerService/GetWorkerTasks", &treq.base,
        &tensorflow__data__get_worker_tasks_response__descriptor);
    if (tasks->n_tasks > 0)
      break;
    usleep(HB_MS * 1000);
  }
  assert_int_equal(tasks->n_tasks, 1);
  assert_string_equal(tasks->tasks[0]->worker_address,
                      mc_worker_server_address(r.c.w[0]));
  assert_true(tasks->tasks[0]->task_id > 0);
  assert_true(tasks->tasks[0]->iteration_id > 0);
  protobuf_c_message_free_unpacked(&tasks->base, NULL);
  stop_reader(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_range10_one_worker),
      cmocka_unit_test(test_range10_three_workers),
      cmocka_unit_test(test_many_components),
      cmocka_unit_test(test_distributed_shared_job),
      cmocka_unit_test(test_config_errors),
      cmocka_unit_test(test_dispatcher_restart_distributed),
      cmocka_unit_test(test_worker_lost_parallel),
      cmocka_unit_test(test_worker_lost_distributed),
      cmocka_unit_test(test_worker_restart_gets_tasks_back),
      cmocka_unit_test(test_worker_restart_distributed),
      cmocka_unit_test(test_iteration_gc),
      cmocka_unit_test(test_tasks_pushed_without_heartbeats),
      cmocka_unit_test(test_get_workers_and_tasks),
  };
  if (getenv("MC_TEST_FILTER") != NULL)
    cmocka_set_test_filter(getenv("MC_TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
