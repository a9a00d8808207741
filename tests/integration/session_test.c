/* Sessions on a local cluster of 2 workers and 2 ps: placement, ops across
 * tasks, errors over the wire, deadlines, concurrent sessions, distributed
 * SGD, and a stopped ps task. The ps-down test runs last: it stops ps 1. */
#include "testutil.h"

#include <minicluster/server.h>
#include <minicluster/session.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "master.pb-c.h"
#include "rpc/rpc.h"
#include "session/worker.h"

#define IN(...) ((const char *const[]){__VA_ARGS__})
#define NIN(...) (sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *))

static mc_cluster *cluster;

static int group_setup(void **state) {
  (void)state;
  MC_ASSERT_OK(mc_create_local_cluster(2, 2, NULL, NULL, NULL, &cluster));
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  mc_cluster_free(cluster);
  return 0;
}

static const char *worker(int i) {
  return cluster->workers[i].target;
}

static void add_const_d(mc_graph *g, const char *name, const double *v,
                        const int64_t *dims, int rank, const char *dev) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++)
    n *= dims[i];
  mc_tensor *t;
  MC_ASSERT_OK(mc_tensor_new(&t, MC_DT_DOUBLE, dims, rank, v,
                             (size_t)n * sizeof(double)));
  MC_ASSERT_OK(mc_graph_const(g, name, t, dev));
  mc_tensor_free(t);
}

static void op(mc_graph *g, const char *name, const char *opname,
               const char *const *in, size_t nin, const char *dev) {
  MC_ASSERT_OK(mc_graph_op(g, name, opname, MC_DT_DOUBLE, in, nin, dev));
}

static double scalar(const mc_tensor *t) {
  return *(const double *)mc_tensor_data(t);
}

/* A Const on the master's task, a variable on each ps, and a MatMul of a ps
 * variable computed on worker 1. */
static void runs_across_tasks(void **state) {
  (void)state;
  mc_graph *g;
  MC_ASSERT_OK(mc_graph_new(&g));
  double two = 2, m[4] = {1, 2, 3, 4}, init[2] = {10, 20};
  int64_t d22[2] = {2, 2}, d21[2] = {2, 1};
  add_const_d(g, "two", &two, NULL, 0, NULL);
  add_const_d(g, "m", m, d22, 2, "/job:worker/task:1");
  add_const_d(g, "vinit", init, d21, 2, "/job:ps/task:1");
  MC_ASSERT_OK(mc_graph_variable(g, "v", MC_DT_DOUBLE, d21, 2,
                                 "/job:ps/replica:0/task:1/device:CPU:0"));
  op(g, "v_init", "Assign", IN("v", "vinit"), 2, NULL);
  op(g, "mv", "MatMul", IN("m", "v"), 2, "/job:worker/task:1");
  op(g, "mv2", "Mul", IN("mv", "two"), 2, NULL);
  mc_session *s;
  MC_ASSERT_OK(mc_session_open(&s, worker(0), g, NULL));
  mc_tensor *out[3];
  MC_ASSERT_OK(mc_session_run(s, NULL, NULL, 0, IN("two"), 1, NULL, 0, 0, out));
  assert_true(scalar(out[0]) == 2);
  mc_tensor_free(out[0]);
  MC_ASSERT_OK(
      mc_session_run(s, NULL, NULL, 0, NULL, 0, IN("v_init"), 1, 0, NULL));
  MC_ASSERT_OK(mc_session_run(s, NULL, NULL, 0, IN("mv:0", "mv2", "v"), 3, NULL,
                              0, 0, out));
  const double *mv = mc_tensor_data(out[0]);
  assert_true(mv[0] == 50 && mv[1] == 110);
  assert_true(((const double *)mc_tensor_data(out[1]))[1] == 220);
  assert_true(((const double *)mc_tensor_data(out[2]))[0] == 10);
  for (int i = 0; i < 3; i++)
    mc_tensor_free(out[i]);

  /* Feeds reach the task of their consumer; a fed fetch comes back. */
  mc_graph *g2;
  MC_ASSERT_OK(mc_graph_new(&g2));
  MC_ASSERT_OK(mc_graph_placeholder(g2, "x", MC_DT_DOUBLE, "/job:ps/task:0"));
  op(g2, "xx", "Square", IN("x"), 1, "/job:worker/task:1");
  MC_ASSERT_OK(mc_session_extend(s, g2));
  mc_graph_free(g2);
  mc_tensor *x;
  MC_ASSERT_OK(mc_tensor_new_double(&x, 3));
  MC_ASSERT_OK(
      mc_session_run(s, IN("x:0"), &x, 1, IN("xx", "x"), 2, NULL, 0, 0, out));
  assert_true(scalar(out[0]) == 9 && scalar(out[1]) == 3);
  mc_tensor_free(out[0]);
  mc_tensor_free(out[1]);
  mc_tensor_free(x);

  /* A second session sees the variable: it lives on ps 1, not in the
   * session. */
  mc_session *s2;
  MC_ASSERT_OK(mc_session_open(&s2, worker(1), g, NULL));
  MC_ASSERT_OK(mc_session_run(s2, NULL, NULL, 0, IN("v"), 1, NULL, 0, 0, out));
  assert_true(((const double *)mc_tensor_data(out[0]))[1] == 20);
  mc_tensor_free(out[0]);
  MC_ASSERT_OK(mc_session_close(s2));
  MC_ASSERT_OK(mc_session_close(s));
  mc_graph_free(g);
}

static void errors_come_back_named(void **state) {
  (void)state;
  mc_graph *g;
  MC_ASSERT_OK(mc_graph_new(&g));
  double one = 1;
  int64_t d1[1] = {1};
  add_const_d(g, "one", &one, NULL, 0, "/job:ps/task:0");
  op(g, "fancy", "FancyOp", IN("one"), 1, "/job:worker/task:1");
  MC_ASSERT_OK(
      mc_graph_variable(g, "never_set", MC_DT_DOUBLE, d1, 1, "/job:ps/task:0"));
  op(g, "read", "Identity", IN("never_set"), 1, "/job:worker/task:1");
  op(g, "nowhere", "Neg", IN("one"), 1, "/job:ps/task:7");
  MC_ASSERT_OK(mc_graph_placeholder(g, "p", MC_DT_DOUBLE, NULL));
  mc_session *s;
  MC_ASSERT_OK(mc_session_open(&s, worker(0), g, NULL));
  mc_tensor *out[1];
  MC_ASSERT_ERR(
      mc_session_run(s, NULL, NULL, 0, IN("fancy"), 1, NULL, 0, 0, out),
      MC_UNIMPLEMENTED, "op 'FancyOp' of node 'fancy'");
  MC_ASSERT_ERR(
      mc_session_run(s, NULL, NULL, 0, IN("read"), 1, NULL, 0, 0, out),
      MC_FAILED_PRECONDITION, "uninitialized variable 'never_set'");
  MC_ASSERT_ERR(
      mc_session_run(s, NULL, NULL, 0, IN("nowhere"), 1, NULL, 0, 0, out),
      MC_INVALID_ARGUMENT, "node 'nowhere': device \"/job:ps/task:7\"");
  MC_ASSERT_ERR(mc_session_run(s, NULL, NULL, 0, IN("p"), 1, NULL, 0, 0, out),
                MC_INVALID_ARGUMENT, "placeholder tensor 'p'");
  MC_ASSERT_ERR(
      mc_session_run(s, NULL, NULL, 0, IN("ghost"), 1, NULL, 0, 0, out),
      MC_INVALID_ARGUMENT, "fetch 'ghost'");
  /* The session still works after failed steps. */
  MC_ASSERT_OK(mc_session_run(s, NULL, NULL, 0, IN("one"), 1, NULL, 0, 0, out));
  mc_tensor_free(out[0]);
  MC_ASSERT_OK(mc_session_close(s));
  mc_graph_free(g);
}

/* Drops every RunGraph call to ps 0: its steps hit their deadline. */
static void drop_ps0_rungraph(void *arg, const mc_rpc_call_info *info,
                              mc_rpc_decision *d) {
  (void)arg;
  if (strcmp(info->method, "/tensorflow.WorkerService/RunGraph") == 0 &&
      strstr(info->server_name, "ps/task:0") != NULL)
    d->action = MC_RPC_DROP;
}

static void step_timeout_is_deadline_exceeded(void **state) {
  (void)state;
  mc_graph *g;
  MC_ASSERT_OK(mc_graph_new(&g));
  double one = 1;
  add_const_d(g, "one", &one, NULL, 0, "/job:ps/task:0");
  op(g, "neg", "Neg", IN("one"), 1, "/job:worker/task:0");
  mc_session *s;
  MC_ASSERT_OK(mc_session_open(&s, worker(0), g, NULL));
  mc_tensor *out[1];
  MC_ASSERT_OK(mc_session_run(s, NULL, NULL, 0, IN("neg"), 1, NULL, 0, 0, out));
  mc_tensor_free(out[0]);
  mc__rpc_set_interceptor(drop_ps0_rungraph, NULL);
  MC_ASSERT_ERR(
      mc_session_run(s, NULL, NULL, 0, IN("neg"), 1, NULL, 0, 300, out),
      MC_DEADLINE_EXCEEDED, "");
  mc__rpc_set_interceptor(NULL, NULL);
  /* Nothing of the failed step is left that breaks the next one. */
  MC_ASSERT_OK(mc_session_run(s, NULL, NULL, 0, IN("neg"), 1, NULL, 0, 0, out));
  assert_true(scalar(out[0]) == -1);
  mc_tensor_free(out[0]);
  MC_ASSERT_OK(mc_session_close(s));
  mc_graph_free(g);
}

/* A failed step leaves nothing behind: a partition that fails to register
 * is undone on the tasks that accepted theirs, and a step that fails while
 * other tasks wait for its tensors leaves no transfer state on them. */
static void failed_steps_leave_no_state(void **state) {
  (void)state;
  mc_graph *g;
  MC_ASSERT_OK(mc_graph_new(&g));
  double one = 1;
  int64_t d1[1] = {1};
  add_const_d(g, "one", &one, NULL, 0, "/job:ps/task:0");
  op(g, "neg", "Neg", IN("one"), 1, "/job:ps/task:0");
  op(g, "fancy", "FancyOp", IN("neg"), 1, "/job:worker/task:1");
  MC_ASSERT_OK(
      mc_graph_variable(g, "unset", MC_DT_DOUBLE, d1, 1, "/job:ps/task:1"));
  op(g, "a", "Square", IN("one"), 1, "/job:worker/task:1");
  op(g, "b", "Identity", IN("unset"), 1, "/job:ps/task:1");
  op(g, "ab", "Add", IN("a", "b"), 2, "/job:worker/task:1");
  mc_session *s;
  MC_ASSERT_OK(mc_session_open(&s, worker(0), g, NULL));
  size_t graphs = mc__workers_graph_count();
  mc_tensor *out[1];
  MC_ASSERT_ERR(
      mc_session_run(s, NULL, NULL, 0, IN("fancy"), 1, NULL, 0, 0, out),
      MC_UNIMPLEMENTED, "FancyOp");
  assert_int_equal(mc__workers_graph_count(), graphs);
  for (int i = 0; i < 5; i++)
    MC_ASSERT_ERR(
        mc_session_run(s, NULL, NULL, 0, IN("ab"), 1, NULL, 0, 0, out),
        MC_FAILED_PRECONDITION, "variable 'unset'");
  /* CleanupGraph is sent without waiting; give it a bounded moment. */
  for (int i = 0; i < 500 && mc__workers_step_count() > 0; i++)
    usleep(10000);
  assert_int_equal(mc__workers_step_count(), 0);
  /* The step's partitions stay registered for the session (as in
   * TensorFlow) and closing the session deregisters them everywhere. */
  assert_true(mc__workers_graph_count() > graphs);
  MC_ASSERT_OK(mc_session_close(s));
  assert_int_equal(mc__workers_graph_count(), graphs);
  mc_graph_free(g);
}

/* A variable on ps 0, a Const on the master's task and a Neg computed on
 * the master's task, for the master's two ways of running a step. */
static mc_graph *light_and_compute_graph(void) {
  mc_graph *g;
  MC_ASSERT_OK(mc_graph_new(&g));
  double init[2] = {3, 4}, seven = 7;
  int64_t d2[1] = {2};
  add_const_d(g, "lc_init", init, d2, 1, "/job:ps/task:0");
  add_const_d(g, "lc_seven", &seven, NULL, 0, NULL);
  MC_ASSERT_OK(
      mc_graph_variable(g, "lc_v", MC_DT_DOUBLE, d2, 1, "/job:ps/task:0"));
  op(g, "lc_assign", "Assign", IN("lc_v", "lc_init"), 2, NULL);
  op(g, "lc_neg", "Neg", IN("lc_v"), 1, "/job:worker/task:0");
  return g;
}

static void expect_v(mc_session *s, const char *fetch, double a, double b) {
  mc_tensor *out[1];
  MC_ASSERT_OK(mc_session_run(s, NULL, NULL, 0, &fetch, 1, NULL, 0, 0, out));
  const double *v = mc_tensor_data(out[0]);
  assert_true(v[0] == a && v[1] == b);
  mc_tensor_free(out[0]);
}

/* A step whose partitions never wait (a ps variable read, a Const on the
 * master's task) is answered from the completion-queue thread that
 * completes it, with no hand-off to the blocking pool; a step that computes
 * on the master's task still runs on the pool. That is decided per plan
 * (per signature), also for nodes added by ExtendSession. The async form
 * keeps the step's deadline: a dropped RunGraph fails it with
 * DEADLINE_EXCEEDED. */
static void light_steps_skip_the_pool(void **state) {
  (void)state;
  mc_graph *g = light_and_compute_graph();
  mc_session *s;
  MC_ASSERT_OK(mc_session_open(&s, worker(0), g, NULL));
  MC_ASSERT_OK(
      mc_session_run(s, NULL, NULL, 0, NULL, 0, IN("lc_assign"), 1, 0, NULL));
  mc_tensor *out[1];
  /* First steps of a signature plan and register: blocking. */
  expect_v(s, "lc_v", 3, 4);
  MC_ASSERT_OK(
      mc_session_run(s, NULL, NULL, 0, IN("lc_seven"), 1, NULL, 0, 0, out));
  mc_tensor_free(out[0]);
  expect_v(s, "lc_neg", -3, -4);

  uint64_t before = mc__rpc_pool_count();
  for (int i = 0; i < 10; i++) {
    expect_v(s, "lc_v", 3, 4);
    MC_ASSERT_OK(
        mc_session_run(s, NULL, NULL, 0, IN("lc_seven"), 1, NULL, 0, 0, out));
    assert_true(scalar(out[0]) == 7);
    mc_tensor_free(out[0]);
  }
  assert_int_equal(mc__rpc_pool_count(), before);
  expect_v(s, "lc_neg", -3, -4);
  assert_true(mc__rpc_pool_count() > before);

  /* Nodes added later get plans of their own, each with its own path:
   * an Identity on the ps never waits, a Square on the master computes. */
  mc_graph *more;
  MC_ASSERT_OK(mc_graph_new(&more));
  op(more, "lc_id", "Identity", IN("lc_v"), 1, "/job:ps/task:0");
  op(more, "lc_sq", "Square", IN("lc_v"), 1, "/job:worker/task:0");
  MC_ASSERT_OK(mc_session_extend(s, more));
  mc_graph_free(more);
  expect_v(s, "lc_id", 3, 4);
  expect_v(s, "lc_sq", 9, 16);
  before = mc__rpc_pool_count();
  expect_v(s, "lc_id", 3, 4);
  expect_v(s, "lc_v", 3, 4);
  assert_int_equal(mc__rpc_pool_count(), before);
  expect_v(s, "lc_sq", 9, 16);
  assert_true(mc__rpc_pool_count() > before);

  mc__rpc_set_interceptor(drop_ps0_rungraph, NULL);
  MC_ASSERT_ERR(
      mc_session_run(s, NULL, NULL, 0, IN("lc_v"), 1, NULL, 0, 300, out),
      MC_DEADLINE_EXCEEDED, "");
  mc__rpc_set_interceptor(NULL, NULL);
  expect_v(s, "lc_v", 3, 4);
  MC_ASSERT_OK(mc_session_close(s));
  mc_graph_free(g);
}

static mc_rpc_server *_Atomic held_at;

/* Holds RunGraph calls to ps 0 and remembers the server. */
static void hold_ps0_rungraph(void *arg, const mc_rpc_call_info *info,
                              mc_rpc_decision *d) {
  (void)arg;
  if (strcmp(info->method, "/tensorflow.WorkerService/RunGraph") == 0 &&
      strstr(info->server_name, "ps/task:0") != NULL) {
    d->action = MC_RPC_HOLD;
    held_at = info->server;
  }
}

typedef struct step_thread {
  mc_session *s;
  mc_code rc;
} step_thread;

static void *read_v(void *arg) {
  step_thread *st = arg;
  mc_tensor *out[1];
  st->rc = mc_session_run(st->s, NULL, NULL, 0, IN("lc_v"), 1, NULL, 0, 0, out);
  if (st->rc == MC_OK)
    mc_tensor_free(out[0]);
  return NULL;
}

/* Reset closes a session while one of its async steps waits for the ps:
 * the step still ends (reading the variable Reset cleared), and the
 * session's graphs are deregistered everywhere once it has: its last
 * reference drops on a completion-queue thread, which hands the blocking
 * deregistration to the pool. */
static void reset_during_async_step(void **state) {
  (void)state;
  size_t graphs = mc__workers_graph_count();
  mc_graph *g = light_and_compute_graph();
  mc_session *s;
  MC_ASSERT_OK(mc_session_open(&s, worker(0), g, NULL));
  MC_ASSERT_OK(
      mc_session_run(s, NULL, NULL, 0, NULL, 0, IN("lc_assign"), 1, 0, NULL));
  expect_v(s, "lc_v", 3, 4);

  held_at = NULL;
  mc__rpc_set_interceptor(hold_ps0_rungraph, NULL);
  step_thread st = {s, MC_UNKNOWN};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, read_v, &st), 0);
  for (int i = 0; i < 1000 && held_at == NULL; i++)
    usleep(10000);
  assert_non_null(held_at);
  MC_ASSERT_OK(mc_session_reset(worker(0), NULL, 0));
  assert_true(mc__workers_graph_count() > graphs); /* the step holds them */
  mc__rpc_set_interceptor(NULL, NULL);
  mc__rpc_server_resume_held(held_at);
  pthread_join(t, NULL);
  assert_int_equal(st.rc, MC_FAILED_PRECONDITION);
  for (int i = 0; i < 500 && mc__workers_graph_count() > graphs; i++)
    usleep(10000);
  assert_int_equal(mc__workers_graph_count(), graphs);
  MC_ASSERT_ERR(mc_session_close(s), MC_ABORTED, "not known");
  mc_graph_free(g);
}

static Tensorflow__RunStepResponse *
raw_step(mc_rpc_channel *ch, const char *handle, const char *fetch) {
  Tensorflow__RunStepRequest req = TENSORFLOW__RUN_STEP_REQUEST__INIT;
  char *f = (char *)fetch;
  req.session_handle = (char *)handle;
  req.n_fetch = 1;
  req.fetch = &f;
  req.store_errors_in_response_body = 1;
  ProtobufCMessage *resp = NULL;
  MC_ASSERT_OK(mc__rpc_unary(ch, "/tensorflow.MasterService/RunStep", &req.base,
                             &tensorflow__run_step_response__descriptor, 10000,
                             &resp));
  return (Tensorflow__RunStepResponse *)resp;
}

/* store_errors_in_response_body (as TensorFlow's clients send it): a
 * failed step is answered OK with its code and message in the body, both
 * when the master runs it without blocking (a ps variable read, from the
 * second step of its signature on) and on the blocking pool (a Neg on the
 * master's task). */
static void errors_in_response_body(void **state) {
  (void)state;
  mc_graph *g;
  MC_ASSERT_OK(mc_graph_new(&g));
  int64_t d1[1] = {1};
  MC_ASSERT_OK(
      mc_graph_variable(g, "eb_unset", MC_DT_DOUBLE, d1, 1, "/job:ps/task:0"));
  op(g, "eb_neg", "Neg", IN("eb_unset"), 1, "/job:worker/task:0");
  uint8_t *bytes;
  size_t len;
  MC_ASSERT_OK(mc_graph_to_graphdef(g, &bytes, &len));
  Tensorflow__CreateSessionRequest cr =
      TENSORFLOW__CREATE_SESSION_REQUEST__INIT;
  cr.graph_def = tensorflow__graph_def__unpack(NULL, len, bytes);
  assert_non_null(cr.graph_def);
  mc_rpc_channel *ch;
  MC_ASSERT_OK(mc__rpc_channel_get(worker(0), &ch));
  ProtobufCMessage *out = NULL;
  MC_ASSERT_OK(mc__rpc_unary(
      ch, "/tensorflow.MasterService/CreateSession", &cr.base,
      &tensorflow__create_session_response__descriptor, 10000, &out));
  char *handle =
      strdup(((Tensorflow__CreateSessionResponse *)out)->session_handle);
  protobuf_c_message_free_unpacked(out, NULL);

  const char *fetches[2] = {"eb_unset", "eb_neg"};
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 2; i++) {
      uint64_t before = mc__rpc_pool_count();
      Tensorflow__RunStepResponse *r = raw_step(ch, handle, fetches[k]);
      assert_int_equal(r->status_code, MC_FAILED_PRECONDITION);
      assert_non_null(strstr(r->status_error_message, "eb_unset"));
      assert_int_equal(r->n_tensor, 0);
      protobuf_c_message_free_unpacked(&r->base, NULL);
      /* Which path ran: none of the pool for the second read, the pool
       * for every Neg. */
      if (k == 0 && i == 1)
        assert_true(mc__rpc_pool_count() == before);
      if (k == 1)
        assert_true(mc__rpc_pool_count() > before);
    }

  Tensorflow__CloseSessionRequest close =
      TENSORFLOW__CLOSE_SESSION_REQUEST__INIT;
  close.session_handle = handle;
  MC_ASSERT_OK(mc__rpc_unary(
      ch, "/tensorflow.MasterService/CloseSession", &close.base,
      &tensorflow__close_session_response__descriptor, 10000, &out));
  protobuf_c_message_free_unpacked(out, NULL);
  free(handle);
  mc__rpc_channel_release(ch);
  protobuf_c_message_free_unpacked(&cr.graph_def->base, NULL);
  free(bytes);
  mc_graph_free(g);
}

/* ---- distributed SGD: y = X w, w split over the two ps tasks ---- */

enum { N = 16, STEPS = 300 };
static const double true_w[4] = {0.5, -1.0, 2.0, 0.25};

static double lcg(unsigned *s) {
  *s = *s * 1103515245u + 12345u;
  return ((*s >> 8) & 0xffff) / 32768.0 - 1.0;
}

static void build_sgd(mc_graph *g) {
  int64_t d21[2] = {2, 1}, dn2[2] = {N, 2}, dn1[2] = {N, 1};
  double zero[2] = {0, 0}, lr = 0.1, scale = 2.0 / N;
  for (int p = 0; p < 2; p++) {
    char dev[32], name[32], init[32], zeros[32];
    snprintf(dev, sizeof dev, "/job:ps/task:%d", p);
    snprintf(name, sizeof name, "w%d", p);
    snprintf(zeros, sizeof zeros, "zeros%d", p);
    snprintf(init, sizeof init, "init%d", p);
    MC_ASSERT_OK(mc_graph_variable(g, name, MC_DT_DOUBLE, d21, 2, dev));
    add_const_d(g, zeros, zero, d21, 2, dev);
    op(g, init, "Assign", IN(name, zeros), 2, NULL);
  }
  MC_ASSERT_OK(
      mc_graph_add(g, "init", "NoOp", IN("^init0", "^init1"), 2, NULL, NULL));
  unsigned seed = 7;
  for (int k = 0; k < 2; k++) {
    char dev[32];
    snprintf(dev, sizeof dev, "/job:worker/task:%d", k);
    double x[2][N * 2], y[N];
    for (int i = 0; i < N; i++) {
      double f[4];
      y[i] = 0;
      for (int j = 0; j < 4; j++) {
        f[j] = lcg(&seed);
        y[i] += f[j] * true_w[j];
      }
      for (int j = 0; j < 2; j++) {
        x[0][i * 2 + j] = f[j];
        x[1][i * 2 + j] = f[2 + j];
      }
    }
    char n[16][32];
#define NM(i, fmt) (snprintf(n[i], 32, fmt "%d", k), n[i])
    add_const_d(g, NM(0, "x0_"), x[0], dn2, 2, dev);
    add_const_d(g, NM(1, "x1_"), x[1], dn2, 2, dev);
    add_const_d(g, NM(2, "y_"), y, dn1, 2, dev);
    add_const_d(g, NM(3, "lr_"), &lr, NULL, 0, dev);
    add_const_d(g, NM(4, "scale_"), &scale, NULL, 0, dev);
    op(g, NM(5, "p0_"), "MatMul", IN(n[0], "w0"), 2, dev);
    op(g, NM(6, "p1_"), "MatMul", IN(n[1], "w1"), 2, dev);
    op(g, NM(7, "pred_"), "AddV2", IN(n[5], n[6]), 2, dev);
    op(g, NM(8, "err_"), "Sub", IN(n[7], n[2]), 2, dev);
    for (int p = 0; p < 2; p++) {
      mc_node *mm;
      char gname[32], sname[32], uname[32], wname[8];
      snprintf(gname, sizeof gname, "g%d_%d", p, k);
      snprintf(sname, sizeof sname, "sg%d_%d", p, k);
      snprintf(uname, sizeof uname, "upd%d_%d", p, k);
      snprintf(wname, sizeof wname, "w%d", p);
      MC_ASSERT_OK(
          mc_graph_add(g, gname, "MatMul", IN(n[p], n[8]), 2, dev, &mm));
      MC_ASSERT_OK(mc_node_set_bool(mm, "transpose_a", 1));
      op(g, sname, "Mul", IN(gname, n[4]), 2, dev);
      /* Placed on the variable's ps task by colocation. */
      op(g, uname, "ApplyGradientDescent", IN(wname, n[3], sname), 3, dev);
    }
    char c0[32], c1[32];
    snprintf(c0, sizeof c0, "^upd0_%d", k);
    snprintf(c1, sizeof c1, "^upd1_%d", k);
    MC_ASSERT_OK(
        mc_graph_add(g, NM(9, "train_"), "NoOp", IN(c0, c1), 2, dev, NULL));
#undef NM
  }
}

typedef struct trainer {
  int k;
  const mc_graph *g;
  mc_code rc;
  char msg[512];
} trainer;

static void *train(void *arg) {
  trainer *t = arg;
  mc_session *s;
  char target[32];
  snprintf(target, sizeof target, "train_%d", t->k);
  const char *targets[1] = {target};
  t->rc = mc_session_open(&s, worker(t->k), t->g, NULL);
  for (int i = 0; i < STEPS && t->rc == MC_OK; i++)
    t->rc = mc_session_run(s, NULL, NULL, 0, NULL, 0, targets, 1, 0, NULL);
  if (t->rc != MC_OK)
    snprintf(t->msg, sizeof t->msg, "%s", mc_error_last()->message);
  if (t->rc == MC_OK)
    t->rc = mc_session_close(s);
  return NULL;
}

static void distributed_sgd_converges(void **state) {
  (void)state;
  mc_graph *g;
  MC_ASSERT_OK(mc_graph_new(&g));
  build_sgd(g);
  mc_session *s;
  MC_ASSERT_OK(mc_session_open(&s, worker(0), g, NULL));
  MC_ASSERT_OK(
      mc_session_run(s, NULL, NULL, 0, NULL, 0, IN("init"), 1, 0, NULL));
  trainer t[2] = {{0, g, MC_OK, ""}, {1, g, MC_OK, ""}};
  pthread_t th[2];
  for (int k = 0; k < 2; k++)
    pthread_create(&th[k], NULL, train, &t[k]);
  for (int k = 0; k < 2; k++) {
    pthread_join(th[k], NULL);
    if (t[k].rc != MC_OK)
      fail_msg("trainer %d: %s: %s", k, mc_code_name(t[k].rc), t[k].msg);
  }
  mc_tensor *w[2];
  MC_ASSERT_OK(
      mc_session_run(s, NULL, NULL, 0, IN("w0", "w1"), 2, NULL, 0, 0, w));
  for (int p = 0; p < 2; p++) {
    const double *v = mc_tensor_data(w[p]);
    for (int j = 0; j < 2; j++) {
      double err = v[j] - true_w[p * 2 + j];
      if (err > 1e-3 || err < -1e-3)
        fail_msg("w%d[%d] = %f, true %f", p, j, v[j], true_w[p * 2 + j]);
    }
    mc_tensor_free(w[p]);
  }
  MC_ASSERT_OK(mc_session_close(s));
  mc_graph_free(g);
}

/* ---- concurrent steps on one session, resource variables, Reset ---- */

typedef struct stepper {
  mc_session *s;
  int n;
  mc_code rc;
} stepper;

static void *step_loop(void *arg) {
  stepper *st = arg;
  const char *targets[1] = {"bump"};
  for (int i = 0; i < st->n && st->rc == MC_OK; i++)
    st->rc = mc_session_run(st->s, NULL, NULL, 0, NULL, 0, targets, 1, 0, NULL);
  return NULL;
}

static void concurrent_steps_and_reset(void **state) {
  (void)state;
  mc_graph *g;
  MC_ASSERT_OK(mc_graph_new(&g));
  mc_node *n;
  MC_ASSERT_OK(
      mc_graph_add(g, "h", "VarHandleOp", NULL, 0, "/job:ps/task:1", &n));
  MC_ASSERT_OK(mc_node_set_type(n, "dtype", MC_DT_DOUBLE));
  MC_ASSERT_OK(mc_node_set_string(n, "shared_name", "hits"));
  double zero = 0, one = 1;
  add_const_d(g, "zero", &zero, NULL, 0, NULL);
  add_const_d(g, "one", &one, NULL, 0, "/job:worker/task:1");
  MC_ASSERT_OK(mc_graph_add(g, "set0", "AssignVariableOp", IN("h", "zero"), 2,
                            NULL, &n));
  MC_ASSERT_OK(mc_node_set_type(n, "dtype", MC_DT_DOUBLE));
  MC_ASSERT_OK(mc_graph_add(g, "bump", "AssignAddVariableOp", IN("h", "one"), 2,
                            NULL, &n));
  MC_ASSERT_OK(mc_node_set_type(n, "dtype", MC_DT_DOUBLE));
  MC_ASSERT_OK(mc_graph_add(g, "read", "ReadVariableOp", IN("h"), 1, NULL, &n));
  MC_ASSERT_OK(mc_node_set_type(n, "dtype", MC_DT_DOUBLE));
  mc_session *s;
  MC_ASSERT_OK(mc_session_open(&s, worker(1), g, NULL));
  MC_ASSERT_OK(
      mc_session_run(s, NULL, NULL, 0, NULL, 0, IN("set0"), 1, 0, NULL));
  enum { THREADS = 4 };
  int per = mc_test_under_valgrind() ? 10 : 50;
  stepper st[THREADS];
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++) {
    st[i] = (stepper){s, per, MC_OK};
    pthread_create(&th[i], NULL, step_loop, &st[i]);
  }
  for (int i = 0; i < THREADS; i++) {
    pthread_join(th[i], NULL);
    MC_ASSERT_OK(st[i].rc);
  }
  mc_tensor *out[1];
  MC_ASSERT_OK(
      mc_session_run(s, NULL, NULL, 0, IN("read"), 1, NULL, 0, 0, out));
  assert_true(scalar(out[0]) == THREADS * per);
  mc_tensor_free(out[0]);
  MC_ASSERT_OK(mc_session_close(s));

  /* Reset clears the default container on every task (and closes the
   * master's sessions): the variable on ps 1 is gone. */
  MC_ASSERT_OK(mc_session_reset(worker(1), NULL, 0));
  MC_ASSERT_OK(mc_session_open(&s, worker(1), g, NULL));
  MC_ASSERT_ERR(
      mc_session_run(s, NULL, NULL, 0, IN("read"), 1, NULL, 0, 0, out),
      MC_FAILED_PRECONDITION, "uninitialized variable 'hits'");
  MC_ASSERT_OK(mc_session_close(s));
  mc_graph_free(g);
}

/* Stops ps 1: a step that reads its variable fails UNAVAILABLE well before
 * the step timeout, and steps that do not touch ps 1 still succeed. */
static void stopped_ps_is_unavailable(void **state) {
  (void)state;
  mc_graph *g;
  MC_ASSERT_OK(mc_graph_new(&g));
  double v = 4;
  int64_t d1[1] = {1};
  for (int p = 0; p < 2; p++) {
    char dev[32], name[16], c[16], a[16];
    snprintf(dev, sizeof dev, "/job:ps/task:%d", p);
    snprintf(name, sizeof name, "pv%d", p);
    snprintf(c, sizeof c, "pc%d", p);
    snprintf(a, sizeof a, "pa%d", p);
    MC_ASSERT_OK(mc_graph_variable(g, name, MC_DT_DOUBLE, d1, 1, dev));
    add_const_d(g, c, &v, d1, 1, dev);
    op(g, a, "Assign", IN(name, c), 2, NULL);
  }
  op(g, "r0", "Square", IN("pv0"), 1, "/job:worker/task:1");
  op(g, "r1", "Square", IN("pv1"), 1, "/job:worker/task:1");
  mc_session *s;
  MC_ASSERT_OK(mc_session_open(&s, worker(0), g, NULL));
  MC_ASSERT_OK(
      mc_session_run(s, NULL, NULL, 0, NULL, 0, IN("pa0", "pa1"), 2, 0, NULL));
  mc_tensor *out[1];
  MC_ASSERT_OK(mc_session_run(s, NULL, NULL, 0, IN("r1"), 1, NULL, 0, 0, out));
  mc_tensor_free(out[0]);

  mc_server_stop(cluster->ps[1].server);
  /* 30 s of step timeout: UNAVAILABLE (not DEADLINE_EXCEEDED) shows the
   * failure was detected, not waited out. */
  MC_ASSERT_ERR(
      mc_session_run(s, NULL, NULL, 0, IN("r1"), 1, NULL, 0, 30000, out),
      MC_UNAVAILABLE, "");
  for (int i = 0; i < 3; i++) {
    MC_ASSERT_OK(
        mc_session_run(s, NULL, NULL, 0, IN("r0"), 1, NULL, 0, 0, out));
    assert_true(((const double *)mc_tensor_data(out[0]))[0] == 16);
    mc_tensor_free(out[0]);
  }
  MC_ASSERT_OK(mc_session_close(s));
  mc_graph_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(runs_across_tasks),
      cmocka_unit_test(errors_come_back_named),
      cmocka_unit_test(step_timeout_is_deadline_exceeded),
      cmocka_unit_test(failed_steps_leave_no_state),
      cmocka_unit_test(light_steps_skip_the_pool),
      cmocka_unit_test(reset_during_async_step),
      cmocka_unit_test(errors_in_response_body),
      cmocka_unit_test(distributed_sgd_converges),
      cmocka_unit_test(concurrent_steps_and_reset),
      cmocka_unit_test(stopped_ps_is_unavailable),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
