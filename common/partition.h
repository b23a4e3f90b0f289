/* partition.h — layers over pipeline stages (× virtual chunks), with DeepSpeed
 * PipelineModule semantics (uniform, parameters, type:REGEX) plus optimal
 * min-max and profile-weighted splits. */
#pragma once
#include <glib.h>
#include "model.h"
#include "plan.h"

G_BEGIN_DECLS

#define PX_PARTITION_ERROR (px_partition_error_quark())
GQuark px_partition_error_quark(void);
typedef enum {
  PX_PARTITION_ERROR_METHOD,    /* unknown method / bad regex */
  PX_PARTITION_ERROR_INVALID,   /* impossible split (more parts than layers where refused) */
  PX_PARTITION_ERROR_PARSE,     /* a weight list that is not comma-separated numbers >= 0 */
} PxPartitionError;

typedef struct _PxBuckets PxBuckets; /* buckets.h */

typedef struct {
  int pp;          /* pipeline ranks */
  int vpp;         /* chunks per rank */
  int parts;       /* pp * vpp */
  int *bounds;     /* (parts+1) DeepSpeed "parts" list: part k holds layers [bounds[k], bounds[k+1]) */
  gint64 *params;  /* (parts) parameters per part (stored: tied copies included, whole TP group) */
  char *method;
  /* Tied layers: the LM head on the last part reuses the embedding of part 0;
   * their gradients are all-reduced between the first and last stage. */
  gboolean tied;
  int tied_first_part, tied_last_part;
  PxScheduleKind schedule;  /* whose part map places the parts (the plan's; 0 = Megatron's) */
  PxBuckets *buckets;       /* the DP reduction buckets of each part (buckets.h); NULL: one per part */
} PxPartition;

/* Where part k runs: px_schedule_part_of / px_schedule_part_place of the
 * plan's schedule (Megatron interleaving k % pp, k / pp; a V for zb-v and
 * dualpipev). */
static inline int px_partition_part_rank(const PxPartition *p, int part) {
  int s, c;
  px_schedule_part_place(p->schedule, p->pp, part, &s, &c);
  return s;
}
static inline int px_partition_part_chunk(const PxPartition *p, int part) {
  int s, c;
  px_schedule_part_place(p->schedule, p->pp, part, &s, &c);
  return c;
}
static inline int px_partition_part_of(const PxPartition *p, int rank, int chunk) {
  return px_schedule_part_of(p->schedule, p->pp, rank, chunk);
}

/* DeepSpeed deepspeed/runtime/utils.py, reproduced exactly (same boundaries):
 * returns a newly allocated array of num_parts+1 boundaries. */
int *px_partition_uniform(int num_items, int num_parts);
int *px_partition_balanced(const double *weights, int num_items, int num_parts);
/* Min over contiguous splits of the max part sum (provably optimal); ties broken
 * toward the earliest boundaries. */
int *px_partition_optimal(const double *weights, int num_items, int num_parts);

/* "3,1,4.5,0" → newly allocated weights (finite, >= 0), *n_out set; spaces
 * around numbers are allowed, empty fields are not. */
double *px_partition_parse_weights(const char *csv, int *n_out, GError **error);

/* Partition a model for a plan: method from plan->partition. weights for
 * "profile" (per-layer cost) may be NULL otherwise. */
PxPartition *px_partition_new(const PxModel *model, const PxPlan *plan,
                              const double *profile_weights, GError **error);
void px_partition_free(PxPartition *part);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxPartition, px_partition_free)

G_END_DECLS
