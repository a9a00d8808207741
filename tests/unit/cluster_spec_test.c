/* Tests of cluster specs: accessors with TensorFlow's semantics, every
 * validation error (code and the value named in the message), the JSON and
 * ClusterDef forms, ServerDef and TF_CONFIG. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>

#include <minicluster/cluster_spec.h>

static mc_cluster_spec *parse(const char *json) {
  mc_cluster_spec *s = NULL;
  MC_ASSERT_OK(mc_cluster_spec_from_json(&s, json));
  return s;
}

static void assert_json(const mc_cluster_spec *s, const char *want) {
  char *json = NULL;
  MC_ASSERT_OK(mc_cluster_spec_to_json(s, &json));
  assert_string_equal(json, want);
  mc_free(json);
}

/* Parsing must fail with INVALID_ARGUMENT and a message containing needle. */
static void assert_bad_json(const char *json, const char *needle) {
  mc_cluster_spec *s = (mc_cluster_spec *)0x1;
  MC_ASSERT_ERR(mc_cluster_spec_from_json(&s, json), MC_INVALID_ARGUMENT,
                needle);
  assert_ptr_equal(s, (mc_cluster_spec *)0x1); /* *out untouched */
}

static void accessors_follow_tensorflow(void **state) {
  (void)state;
  mc_cluster_spec *s = parse("{\"worker\": [\"localhost:2222\", "
                             "\"localhost:2223\"], \"ps\": {\"3\": "
                             "\"[::1]:2224\", \"1\": \"localhost:2225\"}, "
                             "\"chief\": []}");
  assert_int_equal(mc_cluster_spec_num_jobs(s), 3);
  assert_string_equal(mc_cluster_spec_job(s, 0), "chief");
  assert_string_equal(mc_cluster_spec_job(s, 1), "ps");
  assert_string_equal(mc_cluster_spec_job(s, 2), "worker");
  assert_null(mc_cluster_spec_job(s, 3));
  assert_true(mc_cluster_spec_has_job(s, "ps"));
  assert_false(mc_cluster_spec_has_job(s, "evaluator"));
  assert_false(mc_cluster_spec_has_job(s, NULL));

  size_t n = 99;
  MC_ASSERT_OK(mc_cluster_spec_num_tasks(s, "chief", &n));
  assert_int_equal(n, 0);
  MC_ASSERT_OK(mc_cluster_spec_num_tasks(s, "ps", &n));
  assert_int_equal(n, 2);

  const int *idx;
  MC_ASSERT_OK(mc_cluster_spec_task_indices(s, "ps", &idx, &n));
  assert_int_equal(n, 2);
  assert_int_equal(idx[0], 1); /* sorted, although "3" came first */
  assert_int_equal(idx[1], 3);
  MC_ASSERT_OK(mc_cluster_spec_task_indices(s, "worker", &idx, &n));
  assert_int_equal(n, 2);
  assert_int_equal(idx[0], 0);
  assert_int_equal(idx[1], 1);

  const char *addr;
  MC_ASSERT_OK(mc_cluster_spec_task_address(s, "ps", 3, &addr));
  assert_string_equal(addr, "[::1]:2224");
  MC_ASSERT_OK(mc_cluster_spec_task_address(s, "worker", 1, &addr));
  assert_string_equal(addr, "localhost:2223");

  /* job_tasks: dense, max_index + 1 entries, NULL at holes. */
  const char *const *tasks;
  MC_ASSERT_OK(mc_cluster_spec_job_tasks(s, "ps", &tasks, &n));
  assert_int_equal(n, 4);
  assert_null(tasks[0]);
  assert_string_equal(tasks[1], "localhost:2225");
  assert_null(tasks[2]);
  assert_string_equal(tasks[3], "[::1]:2224");
  MC_ASSERT_OK(mc_cluster_spec_job_tasks(s, "worker", &tasks, &n));
  assert_int_equal(n, 2);
  assert_string_equal(tasks[0], "localhost:2222");
  MC_ASSERT_OK(mc_cluster_spec_job_tasks(s, "chief", &tasks, &n));
  assert_int_equal(n, 0);
  mc_cluster_spec_free(s);
}

static void to_json_dense_as_list_sparse_as_object(void **state) {
  (void)state;
  mc_cluster_spec *s = parse("{\"worker\": {\"1\": \"b:1\", \"0\": \"a:1\"}, "
                             "\"ps\": {\"10\": \"c:1\", \"2\": \"d:1\"}, "
                             "\"chief\": []}");
  /* Jobs sorted; "worker" is dense (0, 1) so it becomes a list; "ps" keeps
   * numeric key order (2 before 10); an empty job is {} as in as_dict(). */
  assert_json(s, "{\"chief\":{},\"ps\":{\"2\":\"d:1\",\"10\":\"c:1\"},"
                 "\"worker\":[\"a:1\",\"b:1\"]}");
  mc_cluster_spec_free(s);
  s = parse("{}");
  assert_json(s, "{}");
  mc_cluster_spec_free(s);
}

static void equality_ignores_the_form(void **state) {
  (void)state;
  mc_cluster_spec *dense = parse("{\"w\": [\"a:1\", \"b:1\"], \"ps\": []}");
  mc_cluster_spec *sparse =
      parse("{\"ps\": {}, \"w\": {\"1\": \"b:1\", \"0\": \"a:1\"}}");
  mc_cluster_spec *other = parse("{\"w\": [\"a:1\", \"c:1\"], \"ps\": []}");
  mc_cluster_spec *no_ps = parse("{\"w\": [\"a:1\", \"b:1\"]}");
  mc_cluster_spec *shifted = parse("{\"w\": {\"1\": \"a:1\", \"2\": \"b:1\"}, "
                                   "\"ps\": []}");
  assert_true(mc_cluster_spec_equal(dense, sparse));
  assert_true(mc_cluster_spec_equal(sparse, dense));
  assert_false(mc_cluster_spec_equal(dense, other));
  assert_false(mc_cluster_spec_equal(dense, no_ps));
  assert_false(mc_cluster_spec_equal(dense, shifted));
  assert_false(mc_cluster_spec_equal(dense, NULL));
  assert_true(mc_cluster_spec_equal(NULL, NULL));
  mc_cluster_spec_free(dense);
  mc_cluster_spec_free(sparse);
  mc_cluster_spec_free(other);
  mc_cluster_spec_free(no_ps);
  mc_cluster_spec_free(shifted);
}

static void build_task_by_task_and_copy(void **state) {
  (void)state;
  mc_cluster_spec *s;
  MC_ASSERT_OK(mc_cluster_spec_new(&s));
  assert_int_equal(mc_cluster_spec_num_jobs(s), 0);
  MC_ASSERT_OK(mc_cluster_spec_add_job(s, "ps"));
  MC_ASSERT_OK(mc_cluster_spec_add_job(s, "ps")); /* exists: no-op */
  MC_ASSERT_OK(mc_cluster_spec_set_task(s, "worker", 2, "localhost:0"));
  MC_ASSERT_OK(mc_cluster_spec_set_task(s, "worker", 0, "localhost:0"));
  MC_ASSERT_OK(mc_cluster_spec_set_task(s, "worker", 1, "h:5"));
  /* Replacing a task, also with its own address, is not a duplicate. */
  MC_ASSERT_OK(mc_cluster_spec_set_task(s, "worker", 1, "h:5"));
  MC_ASSERT_OK(mc_cluster_spec_set_task(s, "worker", 1, "h:6"));
  assert_json(s, "{\"ps\":{},\"worker\":[\"localhost:0\",\"h:6\","
                 "\"localhost:0\"]}");

  mc_cluster_spec *c;
  MC_ASSERT_OK(mc_cluster_spec_copy(&c, s));
  assert_true(mc_cluster_spec_equal(s, c));
  MC_ASSERT_OK(mc_cluster_spec_set_task(c, "worker", 1, "h:7"));
  assert_false(mc_cluster_spec_equal(s, c));
  const char *addr;
  MC_ASSERT_OK(mc_cluster_spec_task_address(s, "worker", 1, &addr));
  assert_string_equal(addr, "h:6");
  mc_cluster_spec_free(c);
  mc_cluster_spec_free(s);
  mc_cluster_spec_free(NULL);
  mc_free(NULL);
}

static void unknown_job_and_task_are_named(void **state) {
  (void)state;
  mc_cluster_spec *s = parse("{\"worker\": [\"a:1\", \"a:2\"], \"ps\": "
                             "{\"4\": \"a:3\"}}");
  size_t n;
  const int *idx;
  const char *addr;
  const char *const *tasks;
  MC_ASSERT_ERR(mc_cluster_spec_num_tasks(s, "chief", &n), MC_NOT_FOUND,
                "job \"chief\" not in cluster spec (jobs: ps, worker)");
  MC_ASSERT_ERR(mc_cluster_spec_task_indices(s, "chief", &idx, &n),
                MC_NOT_FOUND, "\"chief\"");
  MC_ASSERT_ERR(mc_cluster_spec_task_address(s, "chief", 0, &addr),
                MC_NOT_FOUND, "\"chief\"");
  MC_ASSERT_ERR(mc_cluster_spec_job_tasks(s, "chief", &tasks, &n), MC_NOT_FOUND,
                "\"chief\"");
  MC_ASSERT_ERR(mc_cluster_spec_task_address(s, "worker", 2, &addr),
                MC_NOT_FOUND,
                "task index 2 not in job \"worker\" (2 tasks, indices: 0, 1)");
  MC_ASSERT_ERR(mc_cluster_spec_task_address(s, "ps", 0, &addr), MC_NOT_FOUND,
                "task index 0 not in job \"ps\" (1 tasks, indices: 4)");
  MC_ASSERT_ERR(mc_cluster_spec_task_address(s, "ps", -1, &addr), MC_NOT_FOUND,
                "task index -1");
  mc_cluster_spec_free(s);
}

static void addresses_are_validated(void **state) {
  (void)state;
  char host[MC_ADDRESS_HOST_MAX];
  int port = -1;
  MC_ASSERT_OK(mc_address_parse("localhost:2222", host, sizeof host, &port));
  assert_string_equal(host, "localhost");
  assert_int_equal(port, 2222);
  MC_ASSERT_OK(mc_address_parse("[::1]:80", host, sizeof host, &port));
  assert_string_equal(host, "::1");
  assert_int_equal(port, 80);
  MC_ASSERT_OK(mc_address_parse("[fe80::1%eth0]:0", host, sizeof host, &port));
  assert_string_equal(host, "fe80::1%eth0");
  assert_int_equal(port, 0);
  MC_ASSERT_OK(mc_address_parse("10.0.0.1:65535", NULL, 0, &port));
  assert_int_equal(port, 65535);
  MC_ASSERT_OK(mc_address_parse("my_host-1.example.com:1", NULL, 0, NULL));

  static const char *const malformed[] = {
      "localhost", "localhost:", ":2222",   "host:abc",   "host:-1",
      "a b:1",     "::1:80",     "[::1]80", "[::1",       "[]:80",
      "[host]:80", "",           "h:+80",   "grpc://h:1", "[::1%]:80"};
  for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\"", malformed[i]);
    MC_ASSERT_ERR(mc_address_parse(malformed[i], host, sizeof host, &port),
                  MC_INVALID_ARGUMENT, needle);
    MC_ASSERT_ERR(mc_address_parse(malformed[i], NULL, 0, NULL),
                  MC_INVALID_ARGUMENT, "malformed address");
  }
  MC_ASSERT_ERR(mc_address_parse("::1:80", NULL, 0, NULL), MC_INVALID_ARGUMENT,
                "\"[::1]:2222\"");
  MC_ASSERT_ERR(mc_address_parse("h:65536", NULL, 0, NULL), MC_INVALID_ARGUMENT,
                "port 65536 of address \"h:65536\" out of range 0..65535");
  MC_ASSERT_ERR(mc_address_parse("h:99999999999999999999", NULL, 0, NULL),
                MC_INVALID_ARGUMENT, "port 99999999999999999999 of address");
  MC_ASSERT_ERR(mc_address_parse(NULL, NULL, 0, NULL), MC_INVALID_ARGUMENT,
                "NULL");
  MC_ASSERT_ERR(mc_address_parse("longhostname:1", host, 5, &port),
                MC_INVALID_ARGUMENT, "\"longhostname:1\" does not fit in 5");
  char longname[400];
  memset(longname, 'a', 300);
  strcpy(longname + 300, ":1");
  MC_ASSERT_ERR(mc_address_parse(longname, NULL, 0, NULL), MC_INVALID_ARGUMENT,
                "longer than 255");
}

static void bad_addresses_in_specs(void **state) {
  (void)state;
  assert_bad_json("{\"worker\": [\"a:1\", 5]}",
                  "job \"worker\" task 1: address must be a string, got "
                  "integer 5");
  assert_bad_json("{\"worker\": {\"3\": null}}",
                  "job \"worker\" task 3: address must be a string, got null");
  assert_bad_json("{\"worker\": [[\"a:1\"]]}", "got list [\"a:1\"]");
  assert_bad_json("{\"worker\": [\"a:1\", \"nocolon\"]}",
                  "job \"worker\" task 1: malformed address \"nocolon\"");
  assert_bad_json("{\"ps\": [\"h:70000\"]}",
                  "port 70000 of address \"h:70000\" out of range");
  assert_bad_json("{\"worker\": \"a:1\"}",
                  "job \"worker\": expected a list of addresses or an object "
                  "of index -> address, got string \"a:1\"");
  mc_cluster_spec *s;
  MC_ASSERT_OK(mc_cluster_spec_new(&s));
  MC_ASSERT_ERR(mc_cluster_spec_set_task(s, "w", 0, "bad address:1"),
                MC_INVALID_ARGUMENT,
                "job \"w\" task 0: malformed address "
                "\"bad address:1\"");
  MC_ASSERT_ERR(mc_cluster_spec_set_task(s, "w", 0, NULL), MC_INVALID_ARGUMENT,
                "NULL");
  MC_ASSERT_ERR(mc_cluster_spec_set_task(s, "w", -2, "a:1"),
                MC_INVALID_ARGUMENT, "negative task index -2 in job \"w\"");
  /* A failed set_task leaves no trace, not even the job. */
  assert_int_equal(mc_cluster_spec_num_jobs(s), 0);
  mc_cluster_spec_free(s);
}

static void duplicate_addresses_are_rejected(void **state) {
  (void)state;
  /* JSON objects are read in document order: "ps" comes second here. */
  assert_bad_json("{\"worker\": [\"localhost:2222\"], \"ps\": "
                  "[\"localhost:2222\"]}",
                  "job \"ps\" task 0: duplicate address \"localhost:2222\": "
                  "job \"worker\" task 0 already uses \"localhost:2222\"");
  assert_bad_json("{\"w\": [\"h:1\", \"H:1\"]}",
                  "duplicate address \"H:1\": job \"w\" task 0");
  assert_bad_json("{\"w\": [\"[::1]:7\", \"[::1]:7\"]}",
                  "duplicate address \"[::1]:7\"");
  /* Port 0 means "pick a free port when binding": many tasks may share it. */
  mc_cluster_spec *s = parse("{\"w\": [\"localhost:0\", \"localhost:0\"], "
                             "\"ps\": [\"localhost:0\", \"h:1\", \"h:2\"]}");
  size_t n;
  MC_ASSERT_OK(mc_cluster_spec_num_tasks(s, "ps", &n));
  assert_int_equal(n, 3);
  MC_ASSERT_ERR(mc_cluster_spec_set_task(s, "w", 5, "h:2"), MC_INVALID_ARGUMENT,
                "job \"w\" task 5: duplicate address \"h:2\": job \"ps\" "
                "task 2");
  mc_cluster_spec_free(s);
}

static void bad_json_has_line_and_column(void **state) {
  (void)state;
  assert_bad_json("{\n  \"worker\": [\"a:1\",]\n}",
                  "cluster spec: bad JSON at line 2, column 20");
  assert_bad_json("{\"worker\": [\"a:1\"]", "bad JSON at line 1, column 18");
  assert_bad_json("", "bad JSON at line 1, column 0");
  assert_bad_json("{\"w\": [], \"w\": []}", "duplicate object key");
  assert_bad_json("[\"a:1\"]", "expected an object of job -> tasks, got list");
  assert_bad_json("\"x\"", "bad JSON at line 1");
}

static void job_names_and_sparse_keys_are_validated(void **state) {
  (void)state;
  assert_bad_json("{\"\": [\"a:1\"]}", "empty job name \"\"");
  assert_bad_json("{\"my job\": []}", "invalid job name \"my job\"");
  assert_bad_json("{\"1worker\": []}", "invalid job name \"1worker\"");
  assert_bad_json("{\"ps\": {\"x\": \"a:1\"}}",
                  "job \"ps\": bad task index key \"x\"");
  assert_bad_json("{\"ps\": {\"-1\": \"a:1\"}}", "bad task index key \"-1\"");
  assert_bad_json("{\"ps\": {\"01\": \"a:1\"}}", "bad task index key \"01\"");
  assert_bad_json("{\"ps\": {\"\": \"a:1\"}}", "bad task index key \"\"");
  assert_bad_json("{\"ps\": {\"2147483648\": \"a:1\"}}",
                  "bad task index key \"2147483648\"");
  mc_cluster_spec *s = parse("{\"ps\": {\"2147483647\": \"a:1\"}}");
  /* A legal but huge sparse index: no dense view of 2^31 entries. */
  const char *const *tasks;
  size_t n;
  MC_ASSERT_ERR(mc_cluster_spec_job_tasks(s, "ps", &tasks, &n),
                MC_RESOURCE_EXHAUSTED, "job \"ps\" has task index 2147483647");
  assert_json(s, "{\"ps\":{\"2147483647\":\"a:1\"}}");
  MC_ASSERT_ERR(mc_cluster_spec_add_job(s, ""), MC_INVALID_ARGUMENT,
                "empty job name \"\"");
  MC_ASSERT_ERR(mc_cluster_spec_add_job(s, NULL), MC_INVALID_ARGUMENT,
                "job name is NULL");
  MC_ASSERT_ERR(mc_cluster_spec_set_task(s, "", 0, "a:2"), MC_INVALID_ARGUMENT,
                "empty job name \"\"");
  MC_ASSERT_ERR(mc_cluster_spec_set_task(s, "a.b", 0, "a:2"),
                MC_INVALID_ARGUMENT, "invalid job name \"a.b\"");
  mc_cluster_spec_free(s);
}

static void null_arguments_are_errors(void **state) {
  (void)state;
  mc_cluster_spec *s;
  char *json;
  MC_ASSERT_ERR(mc_cluster_spec_from_json(&s, NULL), MC_INVALID_ARGUMENT,
                "NULL");
  MC_ASSERT_ERR(mc_cluster_spec_new(NULL), MC_INVALID_ARGUMENT, "NULL");
  MC_ASSERT_ERR(mc_cluster_spec_to_json(NULL, &json), MC_INVALID_ARGUMENT,
                "NULL");
  MC_ASSERT_ERR(mc_cluster_spec_add_job(NULL, "w"), MC_INVALID_ARGUMENT,
                "NULL");
  MC_ASSERT_ERR(mc_cluster_spec_copy(&s, NULL), MC_INVALID_ARGUMENT, "NULL");
  MC_ASSERT_ERR(mc_cluster_spec_num_tasks(NULL, "w", NULL), MC_INVALID_ARGUMENT,
                "NULL");
  MC_ASSERT_ERR(mc_cluster_spec_from_cluster_def(&s, NULL, 3),
                MC_INVALID_ARGUMENT, "NULL");
  assert_int_equal(mc_cluster_spec_num_jobs(NULL), 0);
  assert_null(mc_cluster_spec_job(NULL, 0));
}

/* ---- ClusterDef bytes ---- */

static void json_cluster_def_json_round_trip(void **state) {
  (void)state;
  static const char *const specs[] = {
      "{}",
      "{\"ps\":{}}",
      "{\"worker\":[\"localhost:2222\",\"localhost:2223\"]}",
      ("{\"chief\":[\"[::1]:1\"],\"ps\":{\"1\":\"a:1\",\"7\":\"b:2\"},"
       "\"worker\":[\"localhost:0\",\"localhost:0\",\"c:65535\"]}"),
  };
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    mc_cluster_spec *a = parse(specs[i]), *b = NULL;
    uint8_t *bytes = NULL;
    size_t len = 0;
    MC_ASSERT_OK(mc_cluster_spec_to_cluster_def(a, &bytes, &len));
    MC_ASSERT_OK(mc_cluster_spec_from_cluster_def(&b, bytes, len));
    assert_true(mc_cluster_spec_equal(a, b));
    assert_json(b, specs[i]);
    mc_free(bytes);
    mc_cluster_spec_free(a);
    mc_cluster_spec_free(b);
  }
}

/* ClusterDef {job {name "ps" tasks {0: "localhost:2224"}}
 *             job {name "worker" tasks {0: "localhost:2222",
 *                                       1: "localhost:2223"}}},
 * written by hand from cluster.proto: ClusterDef.job = 1, JobDef.name = 1,
 * JobDef.tasks = 2 (map<int32, string>: each entry is a nested message
 * {int32 key = 1; string value = 2;}). Tag byte = field << 3 | wire type
 * (0 varint, 2 length-delimited). Map entries carry both key and value, as
 * TensorFlow's C++ encoder writes them. */
static const char cluster_def_sorted[] =
    "\x0a\x18"        /* ClusterDef.job (1, LEN), 24 bytes */
    "\x0a\x02"        /*   JobDef.name (1, LEN), 2 bytes */
    "ps"              /*     */
    "\x12\x12"        /*   JobDef.tasks (2, LEN), entry of 18 bytes */
    "\x08\x00"        /*     key (1, varint) = 0 */
    "\x12\x0e"        /*     value (2, LEN), 14 bytes */
    "localhost:2224"  /*     */
    "\x0a\x30"        /* ClusterDef.job (1, LEN), 48 bytes */
    "\x0a\x06"        /*   JobDef.name (1, LEN), 6 bytes */
    "worker"          /*     */
    "\x12\x12"        /*   JobDef.tasks (2, LEN), 18 bytes */
    "\x08\x00"        /*     key = 0 */
    "\x12\x0e"        /*     value, 14 bytes */
    "localhost:2222"  /*     */
    "\x12\x12"        /*   JobDef.tasks (2, LEN), 18 bytes */
    "\x08\x01"        /*     key = 1 */
    "\x12\x0e"        /*     value, 14 bytes */
    "localhost:2223"; /*     */

/* The same ClusterDef as protobuf-c writes it: proto3 leaves out fields at
 * their default, so the entries of task 0 have no key (it decodes as 0). */
static const char cluster_def_sorted_protobuf_c[] =
    "\x0a\x16"        /* ClusterDef.job (1, LEN), 22 bytes */
    "\x0a\x02"        /*   JobDef.name (1, LEN), 2 bytes */
    "ps"              /*     */
    "\x12\x10"        /*   JobDef.tasks (2, LEN), entry of 16 bytes */
    "\x12\x0e"        /*     value (2, LEN), 14 bytes; no key: 0 */
    "localhost:2224"  /*     */
    "\x0a\x2e"        /* ClusterDef.job (1, LEN), 46 bytes */
    "\x0a\x06"        /*   JobDef.name (1, LEN), 6 bytes */
    "worker"          /*     */
    "\x12\x10"        /*   JobDef.tasks (2, LEN), 16 bytes */
    "\x12\x0e"        /*     value, 14 bytes; no key: 0 */
    "localhost:2222"  /*     */
    "\x12\x12"        /*   JobDef.tasks (2, LEN), 18 bytes */
    "\x08\x01"        /*     key = 1 */
    "\x12\x0e"        /*     value, 14 bytes */
    "localhost:2223"; /*     */

static void cluster_def_bytes_written_by_hand(void **state) {
  (void)state;
  /* Jobs and tasks out of order, a sparse job, an IPv6 address, and a
   * field this version does not know (JobDef field 9, varint), which a
   * decoder must skip. */
  static const char unsorted[] =
      "\x0a\x30"       /* ClusterDef.job (1, LEN), 48 bytes */
      "\x0a\x06"       /*   JobDef.name (1, LEN), 6 bytes */
      "worker"         /*     */
      "\x12\x12"       /*   JobDef.tasks (2, LEN), 18 bytes */
      "\x08\x01"       /*     key (1, varint) = 1 */
      "\x12\x0e"       /*     value (2, LEN), 14 bytes */
      "localhost:2223" /*     */
      "\x12\x12"       /*   JobDef.tasks (2, LEN), 18 bytes */
      "\x08\x00"       /*     key = 0 */
      "\x12\x0e"       /*     value, 14 bytes */
      "localhost:2222" /*     */
      "\x0a\x16"       /* ClusterDef.job (1, LEN), 22 bytes */
      "\x0a\x02"       /*   JobDef.name (1, LEN), 2 bytes */
      "ps"             /*     */
      "\x12\x0e"       /*   JobDef.tasks (2, LEN), 14 bytes */
      "\x08\x03"       /*     key = 3 */
      "\x12\x0a"       /*     value, 10 bytes */
      "[::1]:2224"     /*     */
      "\x48\x01";      /*   JobDef field 9 (varint) = 1: unknown */
  mc_cluster_spec *s, *sorted;
  MC_ASSERT_OK(
      mc_cluster_spec_from_cluster_def(&s, unsorted, sizeof unsorted - 1));
  assert_json(s, "{\"ps\":{\"3\":\"[::1]:2224\"},"
                 "\"worker\":[\"localhost:2222\",\"localhost:2223\"]}");
  mc_cluster_spec_free(s);

  /* Both encodings of the sorted ClusterDef decode to the same spec. */
  MC_ASSERT_OK(mc_cluster_spec_from_cluster_def(&sorted, cluster_def_sorted,
                                                sizeof cluster_def_sorted - 1));
  MC_ASSERT_OK(mc_cluster_spec_from_cluster_def(
      &s, cluster_def_sorted_protobuf_c,
      sizeof cluster_def_sorted_protobuf_c - 1));
  assert_true(mc_cluster_spec_equal(s, sorted));
  mc_cluster_spec_free(s);

  /* Our encoder sorts jobs by name and tasks by index, whatever the order
   * of construction: it writes exactly the sorted bytes above. */
  s = parse("{\"worker\": {\"1\": \"localhost:2223\", \"0\": "
            "\"localhost:2222\"}, \"ps\": [\"localhost:2224\"]}");
  assert_true(mc_cluster_spec_equal(s, sorted));
  uint8_t *out;
  size_t len;
  MC_ASSERT_OK(mc_cluster_spec_to_cluster_def(s, &out, &len));
  assert_int_equal(len, sizeof cluster_def_sorted_protobuf_c - 1);
  assert_memory_equal(out, cluster_def_sorted_protobuf_c, len);
  mc_free(out);
  mc_cluster_spec_free(s);
  mc_cluster_spec_free(sorted);

  MC_ASSERT_OK(mc_cluster_spec_from_cluster_def(&s, "", 0));
  assert_int_equal(mc_cluster_spec_num_jobs(s), 0);
  mc_cluster_spec_free(s);
}

static void bad_cluster_def_bytes(void **state) {
  (void)state;
  mc_cluster_spec *s;
  /* Truncated: the job claims 48 bytes, 4 follow. */
  MC_ASSERT_ERR(mc_cluster_spec_from_cluster_def(&s, "\x0a\x30\x0a\x06wo", 6),
                MC_INVALID_ARGUMENT, "undecodable ClusterDef (6 bytes)");
  /* The same job twice. */
  static const char twice[] = "\x0a\x03\x0a\x01w"
                              "\x0a\x03\x0a\x01w";
  MC_ASSERT_ERR(mc_cluster_spec_from_cluster_def(&s, twice, sizeof twice - 1),
                MC_INVALID_ARGUMENT, "ClusterDef: job \"w\" appears twice");
  /* A negative key: int32 -1 is a ten-byte varint. */
  static const char negative[] =
      "\x0a\x15\x0a\x01w"                                    /* job "w" */
      "\x12\x10\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01" /* key -1 */
      "\x12\x03"
      "a:1";
  MC_ASSERT_ERR(
      mc_cluster_spec_from_cluster_def(&s, negative, sizeof negative - 1),
      MC_INVALID_ARGUMENT, "ClusterDef: negative task index -1 in job \"w\"");
  static const char bad_addr[] = "\x0a\x0c\x0a\x01w"
                                 "\x12\x07\x08\x00\x12\x03"
                                 "a:x";
  MC_ASSERT_ERR(
      mc_cluster_spec_from_cluster_def(&s, bad_addr, sizeof bad_addr - 1),
      MC_INVALID_ARGUMENT,
      "ClusterDef: job \"w\" task 0: malformed address "
      "\"a:x\"");
  static const char empty_name[] = "\x0a\x00";
  MC_ASSERT_ERR(
      mc_cluster_spec_from_cluster_def(&s, empty_name, sizeof empty_name - 1),
      MC_INVALID_ARGUMENT, "ClusterDef: empty job name \"\"");
}

/* ---- ServerDef ---- */

/* ServerDef {cluster {job {name "ps" tasks {0: "localhost:2224"}}
 *                     job {name "worker" tasks {0: ..2222, 1: ..2223}}}
 *            job_name "worker" task_index 1
 *            default_session_config {operation_timeout_in_ms: 1000}
 *            protocol "grpc" port 2223 cluster_device_filters {}}
 * from tensorflow_server.proto: cluster = 1, job_name = 2, task_index = 3,
 * default_session_config = 4, protocol = 5, port = 6; field 7
 * (cluster_device_filters in TensorFlow) is unknown here and skipped. */
static const char server_def_bytes[] =
    "\x0a\x4c"       /* ServerDef.cluster (1, LEN), 76 bytes: */
    "\x0a\x18"       /*   ClusterDef.job (1, LEN), 24 bytes */
    "\x0a\x02"       /*     JobDef.name (1, LEN), 2 bytes */
    "ps"             /*       */
    "\x12\x12"       /*     JobDef.tasks (2, LEN), 18 bytes */
    "\x08\x00"       /*       key (1, varint) = 0 */
    "\x12\x0e"       /*       value (2, LEN), 14 bytes */
    "localhost:2224" /*       */
    "\x0a\x30"       /*   ClusterDef.job (1, LEN), 48 bytes */
    "\x0a\x06"       /*     JobDef.name, 6 bytes */
    "worker"         /*       */
    "\x12\x12"       /*     JobDef.tasks, 18 bytes */
    "\x08\x00"       /*       key = 0 */
    "\x12\x0e"       /*       value, 14 bytes */
    "localhost:2222" /*       */
    "\x12\x12"       /*     JobDef.tasks, 18 bytes */
    "\x08\x01"       /*       key = 1 */
    "\x12\x0e"       /*       value, 14 bytes */
    "localhost:2223" /*       */
    "\x12\x06"       /* ServerDef.job_name (2, LEN), 6 bytes */
    "worker"         /*   */
    "\x18\x01"       /* ServerDef.task_index (3, varint) = 1 */
    "\x22\x03"       /* ServerDef.default_session_config (4, LEN), 3 bytes */
    "\x58\xe8\x07"   /*   ConfigProto.operation_timeout_in_ms (11, varint)
                        = 1000: 0xe8 0x07, low 7 bits first */
    "\x2a\x04"       /* ServerDef.protocol (5, LEN), 4 bytes */
    "grpc"           /*   */
    "\x30\xaf\x11" /* ServerDef.port (6, varint) = 2223 = 0x2f + (0x11 << 7) */
    "\x3a\x00";    /* field 7 (LEN), empty: unknown here, skipped */

static void server_def_bytes_written_by_hand(void **state) {
  (void)state;
  mc_server_def *d;
  MC_ASSERT_OK(
      mc_server_def_parse(&d, server_def_bytes, sizeof server_def_bytes - 1));
  assert_string_equal(d->job_name, "worker");
  assert_int_equal(d->task_index, 1);
  assert_int_equal(d->port, 2223);
  assert_string_equal(d->protocol, "grpc");
  assert_int_equal(mc_cluster_spec_num_jobs(d->cluster), 2);
  const char *addr;
  MC_ASSERT_OK(mc_cluster_spec_task_address(d->cluster, "worker", 1, &addr));
  assert_string_equal(addr, "localhost:2223");
  MC_ASSERT_OK(mc_cluster_spec_task_address(d->cluster, "ps", 0, &addr));
  assert_string_equal(addr, "localhost:2224");
  assert_json(d->cluster, "{\"ps\":[\"localhost:2224\"],\"worker\":"
                          "[\"localhost:2222\",\"localhost:2223\"]}");
  assert_int_equal(d->default_session_config_len, 3);
  assert_memory_equal(d->default_session_config, "\x58\xe8\x07", 3);

  /* Serialize and parse again: same content. */
  uint8_t *bytes;
  size_t len;
  MC_ASSERT_OK(mc_server_def_serialize(d, &bytes, &len));
  mc_server_def *e;
  MC_ASSERT_OK(mc_server_def_parse(&e, bytes, len));
  assert_true(mc_cluster_spec_equal(d->cluster, e->cluster));
  assert_string_equal(e->job_name, "worker");
  assert_int_equal(e->task_index, 1);
  assert_int_equal(e->port, 2223);
  assert_string_equal(e->protocol, "grpc");
  assert_int_equal(e->default_session_config_len, 3);
  assert_memory_equal(e->default_session_config, "\x58\xe8\x07", 3);
  mc_free(bytes);
  mc_server_def_free(e);
  mc_server_def_free(d);
  mc_server_def_free(NULL);

  /* Empty bytes: every field at its default. */
  MC_ASSERT_OK(mc_server_def_parse(&d, "", 0));
  assert_string_equal(d->job_name, "");
  assert_string_equal(d->protocol, "");
  assert_int_equal(d->task_index, 0);
  assert_int_equal(d->port, 0);
  assert_int_equal(mc_cluster_spec_num_jobs(d->cluster), 0);
  assert_null(d->default_session_config);
  mc_server_def_free(d);
}

static void bad_server_defs(void **state) {
  (void)state;
  mc_server_def *d;
  MC_ASSERT_ERR(mc_server_def_parse(&d, "\x0a\x4a\x0a", 3), MC_INVALID_ARGUMENT,
                "undecodable ServerDef (3 bytes)");
  /* cluster {job "w" {0: "a:1"}}, job_name "ps". */
  static const char no_job[] = "\x0a\x0e\x0a\x0c\x0a\x01w\x12\x07\x08\x00\x12"
                               "\x03"
                               "a:1"
                               "\x12\x02"
                               "ps";
  MC_ASSERT_ERR(mc_server_def_parse(&d, no_job, sizeof no_job - 1),
                MC_INVALID_ARGUMENT,
                "ServerDef job_name/task_index: job \"ps\" not in cluster");
  /* Same cluster, job_name "w", task_index 4. */
  static const char no_task[] = "\x0a\x0e\x0a\x0c\x0a\x01w\x12\x07\x08\x00\x12"
                                "\x03"
                                "a:1"
                                "\x12\x01w\x18\x04";
  MC_ASSERT_ERR(mc_server_def_parse(&d, no_task, sizeof no_task - 1),
                MC_INVALID_ARGUMENT, "task index 4 not in job \"w\"");
  /* port = 70000: varint 0xf0 0xa2 0x04. */
  MC_ASSERT_ERR(mc_server_def_parse(&d, "\x30\xf0\xa2\x04", 4),
                MC_INVALID_ARGUMENT, "ServerDef: port 70000 out of range");
  /* task_index = -1 (ten-byte varint). */
  MC_ASSERT_ERR(mc_server_def_parse(
                    &d, "\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11),
                MC_INVALID_ARGUMENT, "ServerDef: negative task_index -1");
  /* An invalid cluster inside. */
  static const char bad_cluster[] = "\x0a\x02\x0a\x00";
  MC_ASSERT_ERR(mc_server_def_parse(&d, bad_cluster, sizeof bad_cluster - 1),
                MC_INVALID_ARGUMENT,
                "ServerDef.cluster: ClusterDef: empty job");

  /* default_session_config { rpc_options { <field 0> ... } }: protobuf-c
   * alone decodes a field numbered 0 whose tag is an overlong varint (0x81
   * 0x00), and the ServerDef then failed to serialize (found by the
   * server_def fuzz target in ci/test-all; the input is in its corpus as
   * regress-field-zero). */
  static const char field_zero[] = "\x22\x0e\x6a\x0c\x81\x00\x00\x00\x56\x22"
                                   "\x0e\x0a\x5d\x02\x70\x56";
  MC_ASSERT_ERR(mc_server_def_parse(&d, field_zero, sizeof field_zero - 1),
                MC_INVALID_ARGUMENT, "undecodable ServerDef (16 bytes)");
  /* The same config without the field 0 parses and serializes. */
  static const char no_field_zero[] = "\x22\x04\x6a\x02\x70\x56";
  MC_ASSERT_OK(
      mc_server_def_parse(&d, no_field_zero, sizeof no_field_zero - 1));
  uint8_t *again;
  size_t again_len;
  MC_ASSERT_OK(mc_server_def_serialize(d, &again, &again_len));
  mc_free(again);
  mc_server_def_free(d);

  mc_server_def def = {0};
  uint8_t garbage[] = {0x0a, 0x7f};
  def.default_session_config = garbage;
  def.default_session_config_len = sizeof garbage;
  uint8_t *bytes;
  size_t len;
  MC_ASSERT_ERR(mc_server_def_serialize(&def, &bytes, &len),
                MC_INVALID_ARGUMENT,
                "default_session_config (2 bytes) is not a valid");
  /* All-NULL fields serialize to the empty message. */
  def.default_session_config = NULL;
  def.default_session_config_len = 0;
  MC_ASSERT_OK(mc_server_def_serialize(&def, &bytes, &len));
  assert_int_equal(len, 0);
  mc_free(bytes);
}

/* ---- TF_CONFIG ---- */

static void tf_config_is_parsed(void **state) {
  (void)state;
  mc_tf_config *c;
  MC_ASSERT_OK(mc_tf_config_parse(
      &c, "{\"cluster\": {\"chief\": [\"h:1\"], \"worker\": [\"h:2\", "
          "\"h:3\"]}, \"task\": {\"type\": \"worker\", \"index\": 1}, "
          "\"rpc_layer\": \"grpc\", \"environment\": \"cloud\"}"));
  assert_string_equal(c->task_type, "worker");
  assert_int_equal(c->task_index, 1);
  assert_string_equal(c->rpc_layer, "grpc");
  assert_json(c->cluster, "{\"chief\":[\"h:1\"],\"worker\":[\"h:2\",\"h:3\"]}");
  mc_tf_config_free(c);

  /* TensorFlow's resolver accepts the index as a string too. */
  MC_ASSERT_OK(mc_tf_config_parse(
      &c, "{\"cluster\": {\"ps\": {\"2\": \"h:1\"}}, \"task\": {\"type\": "
          "\"ps\", \"index\": \"2\"}}"));
  assert_int_equal(c->task_index, 2);
  assert_null(c->rpc_layer);
  mc_tf_config_free(c);

  MC_ASSERT_OK(mc_tf_config_parse(&c, "{}"));
  assert_null(c->task_type);
  assert_int_equal(c->task_index, -1);
  assert_null(c->rpc_layer);
  assert_int_equal(mc_cluster_spec_num_jobs(c->cluster), 0);
  mc_tf_config_free(c);
  mc_tf_config_free(NULL);

  /* json == NULL reads the environment. */
  setenv("TF_CONFIG",
         "{\"cluster\": {\"w\": [\"h:9\"]}, \"task\": {\"type\": "
         "\"w\", \"index\": 0}}",
         1);
  MC_ASSERT_OK(mc_tf_config_parse(&c, NULL));
  assert_string_equal(c->task_type, "w");
  assert_int_equal(c->task_index, 0);
  mc_tf_config_free(c);
  setenv("TF_CONFIG", "{\"cluster\": [}", 1);
  MC_ASSERT_ERR(mc_tf_config_parse(&c, NULL), MC_INVALID_ARGUMENT,
                "TF_CONFIG: bad JSON at line 1, column 14");
  unsetenv("TF_CONFIG");
  MC_ASSERT_ERR(mc_tf_config_parse(&c, NULL), MC_NOT_FOUND,
                "TF_CONFIG is not set");
}

static void bad_tf_configs(void **state) {
  (void)state;
  static const struct {
    const char *json, *needle;
  } cases[] = {
      {"{\"cluster\": {\"w\": [\"h:1\"]}, \"task\": {\"type\": \"ps\", "
       "\"index\": 0}}",
       "TF_CONFIG task.type: job \"ps\" not in cluster spec (jobs: w)"},
      {"{\"cluster\": {\"w\": [\"h:1\"]}, \"task\": {\"type\": \"w\", "
       "\"index\": 3}}",
       "TF_CONFIG task.index: task index 3 not in job \"w\" (1 tasks, "
       "indices: 0)"},
      {"{\"cluster\": {\"w\": [\"h:1\"]}, \"task\": {\"type\": \"w\", "
       "\"index\": -1}}",
       "task.index -1 out of range"},
      {"{\"cluster\": {\"w\": [\"h:1\"]}, \"task\": {\"type\": \"w\", "
       "\"index\": \"x1\"}}",
       "task.index \"x1\" is not a task index"},
      {"{\"cluster\": {\"w\": [\"h:1\"]}, \"task\": {\"type\": \"w\", "
       "\"index\": 1.5}}",
       "task.index must be an integer, got number 1.5"},
      {"{\"cluster\": {\"w\": [\"h:1\"]}, \"task\": {\"type\": 7}}",
       "task.type must be a string, got integer 7"},
      {"{\"task\": {\"index\": 0}}", "task.index 0 given without task.type"},
      {"{\"task\": [\"w\"]}", "\"task\" must be an object, got list [\"w\"]"},
      {"{\"rpc_layer\": 1}", "rpc_layer must be a string, got integer 1"},
      {"{\"cluster\": {\"w\": [\"h:1\", \"h:1\"]}}",
       "TF_CONFIG cluster: job \"w\" task 1: duplicate address \"h:1\""},
      {"{\"cluster\": {\"\": []}}", "TF_CONFIG cluster: empty job name \"\""},
      {"{\"cluster\": 3}", "TF_CONFIG cluster: expected an object of job -> "
                           "tasks, got integer 3"},
      {"[1]", "TF_CONFIG must be a JSON object, got list [1]"},
      {"{\"cluster\": {}\n,,}", "TF_CONFIG: bad JSON at line 2, column 2"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mc_tf_config *c = NULL;
    MC_ASSERT_ERR(mc_tf_config_parse(&c, cases[i].json), MC_INVALID_ARGUMENT,
                  cases[i].needle);
    assert_null(c);
  }
  MC_ASSERT_ERR(mc_tf_config_parse(NULL, "{}"), MC_INVALID_ARGUMENT, "NULL");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(accessors_follow_tensorflow),
      cmocka_unit_test(to_json_dense_as_list_sparse_as_object),
      cmocka_unit_test(equality_ignores_the_form),
      cmocka_unit_test(build_task_by_task_and_copy),
      cmocka_unit_test(unknown_job_and_task_are_named),
      cmocka_unit_test(addresses_are_validated),
      cmocka_unit_test(bad_addresses_in_specs),
      cmocka_unit_test(duplicate_addresses_are_rejected),
      cmocka_unit_test(bad_json_has_line_and_column),
      cmocka_unit_test(job_names_and_sparse_keys_are_validated),
      cmocka_unit_test(null_arguments_are_errors),
      cmocka_unit_test(json_cluster_def_json_round_trip),
      cmocka_unit_test(cluster_def_bytes_written_by_hand),
      cmocka_unit_test(bad_cluster_def_bytes),
      cmocka_unit_test(server_def_bytes_written_by_hand),
      cmocka_unit_test(bad_server_defs),
      cmocka_unit_test(tf_config_is_parsed),
      cmocka_unit_test(bad_tf_configs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
