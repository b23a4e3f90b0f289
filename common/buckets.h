/* buckets.h — the DP gradient-reduction buckets of each model chunk: one
 * layout, computed once here, that the program (REDUCE_GRADS chunk=c
 * bucket=b, schedule.h), the cost model (cost.c), the event engine
 * (sim/engine.c), the search and the executor's runtime all read.
 *
 * Buckets are filled in backward order, the chunk's last layer first, as
 * PyTorch DDP (torch/csrc/distributed/c10d/reducer.cpp,
 * compute_bucket_assignment_by_size over the parameters in reverse order)
 * and Megatron-Core (core/distributed/param_and_grad_buffer.py: parameters
 * taken params[::-1], a bucket closed once it holds bucket_size elements or
 * more) do: walking the chunk's layers from its last to its first, a layer's
 * gradient elements are added to the open bucket, and the bucket closes as
 * soon as it holds at least the bucket size. A layer never straddles two
 * buckets (Megatron closes buckets at parameter granularity, so one of its
 * layers may; here the unit is the layer). The chunk's first layers end up
 * in the last, possibly smaller, bucket.
 *
 * An MoE model's routed experts form a second, independent sequence of
 * buckets, as Megatron-Core keeps the parameters with allreduce False in
 * buffers of their own (core/distributed/distributed_data_parallel.py:
 * expert_parallel_params go to _allocate_buffers_for_parameters with the
 * expert data-parallel group, expert_parallel_buffers and
 * expert_parallel_bucket_groups, each _ParamAndGradBuffer bucketed by the
 * same bucket_size on its own): the dense sequence counts each layer's
 * elements less its routed experts', the experts' sequence only theirs, each
 * closed at the bucket size on its own elements; the experts' sequence ends
 * at the part's lowest layer holding experts (its last bucket is ready once
 * that layer's backward is done) and a layer without experts never opens
 * one. A dense bucket is reduced over dp·cp, an expert bucket over edp. The
 * two sequences are merged into one list per part in the order they become
 * ready (the layer closing them, highest first); where one layer closes one
 * of each, the experts' comes first (in a block's backward the MoE MLP's
 * gradients are done before its attention's). A dense model has the dense
 * sequence only.
 *
 * The bucket size (elements): the plan's bucket_bytes over the activation
 * dtype's bytes, else the stack's default (Megatron-Core: max(4e7, 1e6·dp)
 * as distributed_data_parallel.py; DeepSpeed 5e8), else one bucket per layer
 * (FSDP's per-block flat parameters; also the executor's stack when it has no
 * bucket size: its program then has one bucket per chunk, because the stack
 * does not overlap, px_cost_overlap_dp). */
#pragma once
#include <glib.h>
#include "model.h"
#include "plan.h"
#include "partition.h"

G_BEGIN_DECLS

typedef struct {
  int first, end;   /* model layers [first, end) whose gradients of its kind it holds (first: the
                       layer whose backward completes it) */
  double elems;     /* its gradient elements per GPU (TP-sharded): the layers' dense tensors, or
                       (expert) their routed experts' (E/ep experts over etp) */
  double share;     /* elems / the part's of its kind: its share of the part's dense (or experts')
                       reduction time and bytes */
  double after;     /* fraction of the chunk's backward left once its layers are done (by the
                       layers' FLOPs: 0 for a bucket closed by the part's first layer, which waits
                       for the whole backward) */
  gboolean expert;  /* a routed experts' bucket, reduced over edp; else dense, over dp·cp */
} PxBucket;

struct _PxBuckets {
  int parts;
  double bucket_elems;  /* the size used (elements); 0: one bucket per layer */
  int *n;               /* (parts) buckets of each part (>= 1), both kinds */
  PxBucket **b;         /* (parts) of n[k], in reduction order (the order they become ready): b[k][0]
                           holds the part's last layers */
};

/* The bucket size (elements) of the plan under its stack (above); 0 for
 * one bucket per layer. */
double px_buckets_size(const PxPlan *plan);
/* Per-GPU gradient elements of layer li on part k: TP-sharded, the tied LM
 * head's own copy counted where it lives apart from the embedding, routed
 * experts E/ep over etp (*expert, may be NULL; included in the total). */
double px_buckets_layer_elems(const PxModel *model, const PxPlan *plan, const PxPartition *part, int k, int li,
                              double *expert);
/* The layout of every part of the partition. */
PxBuckets *px_buckets_new(const PxModel *model, const PxPlan *plan, const PxPartition *part);
/* A layout from explicit per-layer elements and backward weights (tests,
 * hand-made programs): part k holds layers [bounds[k], bounds[k+1]); elems
 * and flops indexed by layer; size 0: one bucket per layer (per layer with
 * experts, for the experts' sequence). */
PxBuckets *px_buckets_from_layers(int parts, const int *bounds, const double *elems, const double *flops,
                                  double size);
/* The same with each layer's routed-expert elements (expert, indexed by
 * layer, included in elems; NULL: none): the dense and the experts'
 * sequences (above). */
PxBuckets *px_buckets_from_layers_moe(int parts, const int *bounds, const double *elems, const double *expert,
                                      const double *flops, double size);
PxBuckets *px_buckets_copy(const PxBuckets *b);
void px_buckets_free(PxBuckets *b);
/* The dense bucket of part k holding layer li (its dense tensors: the tied
 * embedding's bucket), -1 if none. */
int px_buckets_of_layer(const PxBuckets *b, int k, int li);
/* The bucket of part k holding layer li's tensors of one kind (expert: its
 * routed experts'), -1 if none. */
int px_buckets_find(const PxBuckets *b, int k, int li, gboolean expert);

/* ZeRO-1/2 shards per bucket (Megatron-Core's distributed optimizer,
 * core/distributed/param_and_grad_buffer.py: each bucket padded so that it
 * divides by the data-parallel size, and each DP rank owning one contiguous
 * 1/dp slice of every bucket, distributed_optimizer.py
 * _build_model_gbuf_range). The part's flat buffers hold its buckets in
 * layer order (the part's first layers, its last bucket, first), each
 * bucket's region zero-padded to dp slices; the bucket is reduce-scattered
 * over its region into the rank's slice, AdamW updates the slices and the
 * updated parameters are all-gathered per bucket. A rank's shard is its
 * slices, in buffer order.
 *
 * An MoE model's routed experts have a buffer of their own after the dense
 * one, as Megatron-Core's expert-parallel buffers (distributed_data_parallel.py:
 * the parameters with allreduce False go to expert_parallel_buffers, whose
 * group is the expert data-parallel one, edp ranks), holding the expert
 * buckets (PxBucket.expert), each padded to edp slices, in layer order too,
 * each reduce-scattered over EDP at its own REDUCE_GRADS, the dense buckets'
 * regions over DP at theirs. The rank's shard: its dense slices in buffer
 * order, then its expert slices. The executor lays its buffers out from
 * this, the planner's memory counts the padded shards from it and the cost
 * model the padded
 * bytes: one description. */
typedef struct {
  gint64 elems; /* the bucket's gradient elements (PxBucket.elems) */
  gint64 base;  /* its first element in the part's flat buffers */
  gint64 slice; /* each rank's slice, ceil(elems / ranks): the region is ranks · slice elements */
  gint64 at;    /* where the slice starts in a rank's shard */
} PxBucketShard;

/* Does plan shard part k's buffers per bucket: the executor's stack
 * (parallax) and Megatron-Core (the distributed optimizer itself; the other
 * stacks keep their own layouts), ZeRO 1 or 2 over dp·cp > 1
 * ranks, and the DP reduction in buckets during the backward (the program splits
 * it: px_cost_overlap_dp, px_program_new) into more than one bucket on part
 * k? MoE models too (the experts' regions over edp). b may be NULL (no). With
 * one bucket the layout is the whole chunk's flat shard anyway. */
gboolean px_buckets_sharded(const PxBuckets *b, const PxModel *model, const PxPlan *plan, int k);
/* Part k's layout, the dense buckets' regions over dp ranks and the
 * experts' over edp: out (n[k], may be NULL) holds bucket i's region at i;
 * *padded (may be NULL) the buffers' elements (Σ dp · slice + Σ edp ·
 * slice); *expert (may be NULL) the expert buckets' slices per rank. Returns
 * the shard's elements per rank (Σ slice, both kinds). */
gint64 px_buckets_shard_layout(const PxBuckets *b, int k, int dp, int edp, PxBucketShard *out, gint64 *padded,
                               gint64 *expert);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxBuckets, px_buckets_free)

G_END_DECLS
