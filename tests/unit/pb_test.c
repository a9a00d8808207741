/* Tests of mc__pb_unpack (lib/core/pb.h): a field numbered 0, which
 * protobuf-c alone accepts when its tag is an overlong varint, is refused
 * wherever it stands; every other encoding decodes as before. */
#include "testutil.h"

#include "cluster.pb-c.h"
#include "core/pb.h"
#include "data_common.pb-c.h"

/* Overlong tag of field 0, wire type varint (0x80 0x00), then the value 0. */
#define FIELD0 "\x80\x00\x00"
/* Field 15, wire type varint, value 0: an ordinary unknown field. */
#define FIELD15 "\x78\x00"

static Tensorflow__ClusterDef *cluster(const char *bytes, size_t len) {
  return MC_PB_UNPACK(tensorflow__cluster_def, Tensorflow__ClusterDef, len,
                      bytes);
}

static Tensorflow__Data__TaskDef *task(const char *bytes, size_t len) {
  return MC_PB_UNPACK(tensorflow__data__task_def, Tensorflow__Data__TaskDef,
                      len, bytes);
}

static void field_zero_at_the_top(void **state) {
  (void)state;
  /* protobuf-c by itself takes it, and could not decode its own re-encoding:
   * the reason for mc__pb_unpack. */
  Tensorflow__ClusterDef *raw =
      tensorflow__cluster_def__unpack(NULL, 3, (const uint8_t *)FIELD0);
  assert_non_null(raw);
  uint8_t again[8];
  size_t n = tensorflow__cluster_def__pack(raw, again);
  tensorflow__cluster_def__free_unpacked(raw, NULL);
  assert_null(tensorflow__cluster_def__unpack(NULL, n, again));

  assert_null(cluster(FIELD0, 3));
  Tensorflow__ClusterDef *ok = cluster(FIELD15, 2);
  assert_non_null(ok);
  assert_int_equal(ok->base.n_unknown_fields, 1);
  tensorflow__cluster_def__free_unpacked(ok, NULL);
  /* Empty input is the empty message. */
  ok = cluster("", 0);
  assert_non_null(ok);
  tensorflow__cluster_def__free_unpacked(ok, NULL);
}

static void field_zero_in_a_repeated_message(void **state) {
  (void)state;
  /* job { name: "w" <field> } */
  static const char bad[] = "\x0a\x06\x0a\x01w" FIELD0;
  static const char good[] = "\x0a\x05\x0a\x01w" FIELD15;
  assert_null(cluster(bad, sizeof bad - 1));
  Tensorflow__ClusterDef *ok = cluster(good, sizeof good - 1);
  assert_non_null(ok);
  assert_int_equal(ok->n_job, 1);
  assert_string_equal(ok->job[0]->name, "w");
  tensorflow__cluster_def__free_unpacked(ok, NULL);
}

static void field_zero_in_a_map_entry(void **state) {
  (void)state;
  /* job { name: "w" tasks { key: 0 value: "a:1" <field> } } */
  static const char bad[] = "\x0a\x0f\x0a\x01w\x12\x0a\x08\x00\x12\x03"
                            "a:1" FIELD0;
  static const char good[] = "\x0a\x0e\x0a\x01w\x12\x09\x08\x00\x12\x03"
                             "a:1" FIELD15;
  assert_null(cluster(bad, sizeof bad - 1));
  Tensorflow__ClusterDef *ok = cluster(good, sizeof good - 1);
  assert_non_null(ok);
  assert_int_equal(ok->job[0]->n_tasks, 1);
  assert_string_equal(ok->job[0]->tasks[0]->value, "a:1");
  tensorflow__cluster_def__free_unpacked(ok, NULL);
}

static void field_zero_in_a_oneof(void **state) {
  (void)state;
  /* dataset_def { <field> } (the oneof's message member) */
  static const char bad[] = "\x0a\x03" FIELD0;
  static const char good[] = "\x0a\x02" FIELD15;
  assert_null(task(bad, sizeof bad - 1));
  Tensorflow__Data__TaskDef *ok = task(good, sizeof good - 1);
  assert_non_null(ok);
  assert_int_equal(ok->dataset_case,
                   TENSORFLOW__DATA__TASK_DEF__DATASET_DATASET_DEF);
  tensorflow__data__task_def__free_unpacked(ok, NULL);
  /* path: "abc", the oneof's string member, shares the message's slot: it
   * must not be walked as a message (that would read the string as one). */
  ok = task("\x12\x03"
            "abc",
            5);
  assert_non_null(ok);
  assert_int_equal(ok->dataset_case, TENSORFLOW__DATA__TASK_DEF__DATASET_PATH);
  assert_string_equal(ok->path, "abc");
  tensorflow__data__task_def__free_unpacked(ok, NULL);
}

static void undecodable_bytes_stay_undecodable(void **state) {
  (void)state;
  /* A length prefix past the end. */
  assert_null(cluster("\x0a\x7f", 2));
  /* The one-byte tag of field 0, which protobuf-c refuses by itself. */
  assert_null(cluster("\x00\x00", 2));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(field_zero_at_the_top),
      cmocka_unit_test(field_zero_in_a_repeated_message),
      cmocka_unit_test(field_zero_in_a_map_entry),
      cmocka_unit_test(field_zero_in_a_oneof),
      cmocka_unit_test(undecodable_bytes_stay_undecodable),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
