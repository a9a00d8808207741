/*
 * dataset.h: tf.data-style input pipelines whose definitions serialize into
 * a tensorflow.data.DatasetDef, so the data service's dispatcher can store
 * them and ship them to workers (see data_service.h).
 *
 * A dataset is a pipeline built step by step: a source (mc_dataset_range,
 * mc_dataset_from_tensor_slices) followed by transformations that each
 * append one step to the same handle:
 *
 *   mc_dataset *ds;
 *   mc_dataset_range(&ds, 0, 100, 1);
 *   mc_dataset_map(ds, "square");      // a function registered by name
 *   mc_dataset_batch(ds, 8, 0);
 *
 * Elements are tuples of tensors (mc_element). A failing step leaves the
 * pipeline unchanged. Map and filter functions are C functions registered
 * in the process under a name (mc_dataset_register_map/_filter); the name is
 * what the DatasetDef stores, so every process that iterates the dataset
 * (the workers of the data service) must register the same functions under
 * the same names. Adding a map or filter step with a name that is not
 * registered fails at once with MC_NOT_FOUND.
 *
 * Thread-safety: a dataset handle is not synchronized; build it on one
 * thread. Iterators are independent of each other and of the dataset they
 * were made from (they copy the definition); one iterator is used by one
 * thread at a time. The function registry is thread-safe.
 */
#ifndef MINICLUSTER_DATASET_H
#define MINICLUSTER_DATASET_H

#include "common.h"
#include "status.h"
#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

MC_BEGIN_DECLS

/* One dataset element: a tuple of tensors. The element owns its tensors and
 * the array; release it with mc_element_clear(). */
typedef struct mc_element {
  size_t num_components;
  mc_tensor **components;
} mc_element;

/* An empty element, for initialization. */
#define MC_ELEMENT_INIT                                                        \
  { 0, NULL }

/* Frees the components and resets e to empty. NULL is a no-op. */
MC_EXTERN void mc_element_clear(mc_element *e);

/* Makes an element of n components; the element takes ownership of the n
 * tensors in `components` (the array itself is copied). On failure the
 * tensors are freed. Returns MC_OK or MC_RESOURCE_EXHAUSTED. */
MC_EXTERN mc_code mc_element_take(mc_element *e /* OUT */,
                                  mc_tensor *const *components, size_t n);

/* A map function: reads `in` (borrowed) and fills `out` (starts empty; the
 * caller owns what the function puts there). A non-OK return stops the
 * iteration with that code. */
typedef mc_code (*mc_map_fn)(void *arg, const mc_element *in,
                             mc_element *out /* OUT */);

/* A filter predicate: sets *keep to 1 to keep the element, 0 to drop it. */
typedef mc_code (*mc_filter_fn)(void *arg, const mc_element *in,
                                int *keep /* OUT */);

/* Registers fn under name for this process (name is copied; arg is
 * borrowed and must outlive every use). Registering a name again replaces
 * the function. Returns MC_OK, MC_INVALID_ARGUMENT for an empty name or
 * NULL fn, MC_RESOURCE_EXHAUSTED. Thread-safe. */
MC_EXTERN mc_code mc_dataset_register_map(const char *name, mc_map_fn fn,
                                          void *arg);
MC_EXTERN mc_code mc_dataset_register_filter(const char *name, mc_filter_fn fn,
                                             void *arg);

typedef struct mc_dataset mc_dataset;

/* Source: the int64 scalars start, start+step, ... up to stop (exclusive),
 * like Python's range. step must not be 0 (MC_INVALID_ARGUMENT naming it).
 * *out is owned by the caller (mc_dataset_free). */
MC_EXTERN mc_code mc_dataset_range(mc_dataset **out /* OUT */, int64_t start,
                                   int64_t stop, int64_t step);

/* Source: slices the n tensors (copied; borrowed for the call) along their
 * first dimension; element i is (t0[i], t1[i], ...). Every tensor must have
 * rank >= 1 and the same first dimension (MC_INVALID_ARGUMENT naming the
 * component and sizes otherwise). */
MC_EXTERN mc_code mc_dataset_from_tensor_slices(mc_dataset **out /* OUT */,
                                                const mc_tensor *const *tensors,
                                                size_t n);

/* Transformations: each appends one step to ds. */
/* MC_NOT_FOUND naming `name` when no map/filter is registered under it. */
MC_EXTERN mc_code mc_dataset_map(mc_dataset *ds, const char *name);
MC_EXTERN mc_code mc_dataset_filter(mc_dataset *ds, const char *name);
/* Stacks `size` (> 0) consecutive elements into one whose components gain a
 * leading dimension; the last, smaller batch is dropped when drop_remainder
 * is set. Components must agree in dtype and shape across the batch (else
 * iteration fails with MC_INVALID_ARGUMENT). */
MC_EXTERN mc_code mc_dataset_batch(mc_dataset *ds, int64_t size,
                                   int drop_remainder);
/* Shuffles with a buffer of buffer_size (> 0) elements; the order depends
 * only on seed. Each new pass (after repeat) reshuffles with the next seed. */
MC_EXTERN mc_code mc_dataset_shuffle(mc_dataset *ds, int64_t buffer_size,
                                     uint64_t seed);
/* Repeats count times; count -1 repeats forever. count must be >= -1. */
MC_EXTERN mc_code mc_dataset_repeat(mc_dataset *ds, int64_t count);
/* The first count elements (-1: all). */
MC_EXTERN mc_code mc_dataset_take(mc_dataset *ds, int64_t count);
/* Drops the first count elements (-1: all). */
MC_EXTERN mc_code mc_dataset_skip(mc_dataset *ds, int64_t count);
/* Keeps elements i with i % num_shards == index; 0 <= index < num_shards. */
MC_EXTERN mc_code mc_dataset_shard(mc_dataset *ds, int64_t num_shards,
                                   int64_t index);
/* Produces up to buffer_size (> 0) elements ahead on a background thread. */
MC_EXTERN mc_code mc_dataset_prefetch(mc_dataset *ds, int64_t buffer_size);

/* Frees the dataset. NULL is a no-op. */
MC_EXTERN void mc_dataset_free(mc_dataset *ds);

/* Serializes the definition as a tensorflow.data.DatasetDef (the pipeline
 * in the `ops` field, number 100; see docs/data-service.md). *buf is
 * malloc'ed, owned by the caller (free()). */
MC_EXTERN mc_code mc_dataset_to_def_bytes(const mc_dataset *ds,
                                          uint8_t **buf /* OUT: free() */,
                                          size_t *len /* OUT */);

/* Parses a DatasetDef. MC_INVALID_ARGUMENT naming the problem for bytes
 * that do not decode, an unknown op, bad arguments; MC_NOT_FOUND naming a
 * map/filter function that is not registered in this process;
 * MC_RESOURCE_EXHAUSTED when a tensor in it (from_tensor_slices) would be
 * filled to more than 256 MiB from fewer values than elements, as
 * mc_tensor_from_proto_bytes refuses, or memory is short. Thread-safe. */
MC_EXTERN mc_code mc_dataset_from_def_bytes(const uint8_t *buf, size_t len,
                                            mc_dataset **out /* OUT */);

typedef struct mc_dataset_iterator mc_dataset_iterator;

/* Starts iterating ds locally. The iterator copies what it needs; ds may be
 * freed afterwards. */
MC_EXTERN mc_code mc_dataset_iterator_new(const mc_dataset *ds,
                                          mc_dataset_iterator **out /* OUT */);

/* Produces the next element into *out (owned by the caller, empty on
 * entry), or sets *end_of_sequence to 1 (and leaves *out empty). Returns
 * MC_OK or the error of a step (a map function's code, a batch of
 * mismatched shapes). */
MC_EXTERN mc_code mc_dataset_iterator_next(mc_dataset_iterator *it,
                                           mc_element *out /* OUT */,
                                           int *end_of_sequence /* OUT */);

/* Frees the iterator (and stops its prefetch threads). NULL is a no-op. */
MC_EXTERN void mc_dataset_iterator_free(mc_dataset_iterator *it);

MC_END_DECLS

#endif /* MINICLUSTER_DATASET_H */
