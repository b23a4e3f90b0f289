/* memory.h — per-rank memory of a plan: weights, gradients, optimizer states,
 * activations at their peak in-flight count, buffers, workspace. Bytes. */
#pragma once
#include <glib.h>
#include "model.h"
#include "plan.h"
#include "cluster.h"
#include "partition.h"
#include "activations.h"

G_BEGIN_DECLS

/* Activation bytes one layer keeps for backward, per micro-batch, per TP rank
 * (Korthikanti et al. 2022, generalised to GQA / SwiGLU / RMSNorm / no dropout;
 * equals sbh(34 + 5as/h) for a GPT-3 block with tp=1, no recompute, 16-bit). */
double px_layer_activation_bytes(const PxModel *model, const PxLayer *layer, const PxPlan *plan);

/* Activation bytes of layers [first, end) (one part), one micro-batch, per TP
 * rank: the layers' own, except that full recompute keeps one block input per
 * checkpoint segment of ckpt_interval blocks (DeepSpeed's interval). */
double px_part_activation_bytes(const PxModel *model, const PxPlan *plan, int first, int end);

typedef struct {
  int stage;                  /* pipeline rank */
  gint64 params;              /* parameters held by one GPU of this stage before ZeRO sharding */
  double weights;             /* bytes of parameters (fp16/bf16 copy, or fp32) after ZeRO-3 sharding */
  double gradients;
  double optimizer;           /* fp32 master + Adam moments (offload: 0 on GPU) */
  double activation_per_layer;/* bytes of one transformer block, one micro-batch */
  double activation_per_mb;   /* bytes of all this rank's layers (all chunks), one micro-batch */
  double in_flight;           /* peak micro-batches in flight (may be fractional for interleaved) */
  double activations;         /* peak activation bytes */
  double buffers;             /* p2p send/recv, logits, DP buckets, ZeRO-3 gather */
  double workspace;
  double total;
  double host;                /* offload: bytes in host memory per GPU, not in total: fp32 master, both
                                 moments and the gradient shard's copy ((12 + gradient bytes) per shard
                                 parameter), with parameter offload the parameter shard too */
  /* context parallelism and FP8 (docs/memory.md); 0 when not used */
  double cp_kv_buffers;       /* ring attention's buffers: max(cp, 4) K/V blocks (in `buffers`); torchtitan:
                                 torch's all-gathered K/V and fp32 merge / gradient tensors (in the
                                 activations' transient: one block's, beside the recomputed segment) */
  double cp_out_acc;          /* the executor's ring attention in bf16 / fp16 (PX_ACT_STACK_EXEC, cp > 1):
                                 its fp32 accumulator of the merged output, 4 B × (s/cp)·b·a·head_dim/t
                                 (in `buffers` and `act_buffers`) */
  double act_buffers;         /* the part of `buffers` made of activations (p2p messages, ring K/V, the
                                 ring's fp32 accumulator, MoE all-to-all), in the activation bytes the
                                 prediction was made with */
  double fp8_weights;         /* FP8 copies of the GEMM weights, with their transposes (2 B / GEMM parameter) */
  double fp8_meta;            /* delayed scaling state: amax history and scales of every FP8 GEMM (fp32) */
} PxStageMemory;

typedef struct {
  int n_stages;
  PxStageMemory *stages;      /* (pp) */
  double capacity;            /* GPU memory, bytes (0 if no cluster) */
  gboolean fits;
  int peak_stage;
  double peak;                /* max total */
  gboolean cp_kv_transient;   /* the stages' cp_kv_buffers are in their activations' transient (torch's ring,
                                 torchtitan), not in `buffers` */
} PxMemory;

/* Peak micro-batches in flight on pipeline rank `stage` for the schedule:
 * GPipe m; 1F1B min(p - stage, m); interleaved per Megatron; ZB-H1, ZB-H2,
 * ZB-V and DualPipeV from the program's compute order, a micro-batch held
 * from its forward to its weight pass (px_schedule_peak_activations over the
 * chunks per rank: ZB-H2 2p - 1; ZB-V p; DualPipeV (2p + 1)/2 when m is large
 * enough). */
double px_memory_in_flight(const PxPlan *plan, int stage);

/* Peak activation bytes on pipeline rank `stage` over a step, given one
 * micro-batch's activation bytes on each of its chunks (chunk_act[vpp]) and,
 * for a split backward (px_act_splits_backward), what it holds from its
 * backward-input pass to its weight pass (chunk_w[vpp],
 * px_activations_w_bytes; NULL: all of chunk_act): GPipe m × the sum, 1F1B
 * min(p - stage, m) × the sum, interleaved the largest set of (micro-batch,
 * chunk) pairs in flight in Megatron-LM's order, each weighted by its own
 * chunk (the chunk with the LM head keeps the logits); the zero-bubble
 * schedules the program's order, F adding chunk_act, B-input freeing
 * chunk_act - chunk_w, W freeing chunk_w (px_schedule_peak_held). */
double px_memory_peak_activations(const PxPlan *plan, int stage, const double *chunk_act, const double *chunk_w);

/* ZeRO's partition of a chunk's flat buffer of numel elements over dp ranks:
 * each rank holds ceil(numel / dp) elements, and the flat buffers that are
 * not partitioned are padded to dp of those (DeepSpeed pads its flat groups
 * likewise). The executor allocates, and the planner counts, these sizes. */
gint64 px_zero_shard(gint64 numel, int dp);

/* Transformer Engine's delayed-scaling recipe (DelayedScaling defaults):
 * amax history of 1024 steps per FP8 tensor; a GEMM tracks 3 forward tensors
 * (input, weight, output) and 2 backward (output gradient, input gradient),
 * each with an fp32 amax history, scale and inverse scale. */
#define PX_FP8_AMAX_HISTORY 1024
#define PX_FP8_TENSORS_PER_GEMM 5
double px_memory_fp8_meta_per_gemm(void);
/* Bytes of one ring-attention K/V block (the K and V of one CP rank's
 * seq/cp tokens, one micro-batch, one TP rank), and of the buffers the ring
 * holds: max(cp, 4) blocks (Transformer Engine's p2p ring, see memory.c);
 * under --stack torchtitan torch's all-gather ring instead, its larger
 * peak of px_cost_titan_cp's fwd_buffers and bwd_buffers. 0 with cp = 1. */
double px_memory_cp_kv_block(const PxModel *model, const PxPlan *plan);
double px_memory_cp_kv_buffers(const PxModel *model, const PxPlan *plan);
/* Bytes of the executor's fp32 accumulator of ring attention's merged output
 * (exec/gpt.c ring_attention_fwd), present when its activations are half
 * (elem_bytes 2) and cp > 1: 4 × (seq/cp) × mbs × heads·head_dim / tp. 0
 * otherwise. */
double px_memory_cp_out_acc(const PxModel *model, const PxPlan *plan, int elem_bytes);

PxMemory *px_memory_new(const PxModel *model, const PxPlan *plan, const PxPartition *part,
                        const PxCluster *cluster);
/* The same with the activations of a given stack (activations.h; NULL: the
 * planner's, Megatron's kernels as Korthikanti count them). For
 * PX_ACT_STACK_EXEC the activations are the executor's exactly: each chunk's
 * micro-batch keeps px_activations_profile's `kept`, in flight as the schedule
 * holds them, plus the largest excess (peak - kept) of one micro-batch's walk;
 * under a split backward the program's order walked with each op's own
 * transient (px_schedule_peak_held with px_activations_profile's amounts). */
PxMemory *px_memory_new_act(const PxModel *model, const PxPlan *plan, const PxPartition *part,
                            const PxCluster *cluster, const PxActOptions *act);
void px_memory_free(PxMemory *mem);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxMemory, px_memory_free)

G_END_DECLS
