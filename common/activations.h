/* activations.h — the activation tensors a layer saves for its backward, one
 * micro-batch, one TP rank: the one description the memory model sums
 * (common/memory.c) and the executor allocates (exec/gpt.c).
 *
 * Each entry says what the tensor is (role, name), which forward op saves it,
 * its local shape (rows × cols of the TP shard; with sequence parallelism the
 * residual-stream tensors hold s·b/t rows), its bytes and its lifetime under
 * the plan's recompute mode.
 *
 * Two stacks read the same list:
 *  - PX_ACT_STACK_PAPER: Megatron-LM's kernels as Korthikanti et al. 2022 (§4)
 *    count them: 16-bit (or fp32) activations, 1-byte dropout masks, fp32
 *    logits for the vocab-parallel cross-entropy, nothing else. One block sums
 *    to sbh(34 + 5as/h), with TP + SP sbh(34/t + 5as/(ht)); selective recompute
 *    (and flash attention) drop the 5as/h entries. The planner uses this.
 *  - PX_ACT_STACK_EXEC: parallax-exec's own kernels (exec/gpt.c on a backend),
 *    in the run's dtype (statistics fp32 beside bf16 / fp16 activations:
 *    px_act_role_is_stat). The same entries minus dropout (the executor has
 *    none), an unfused attention (the s × s probabilities are kept) unless
 *    the plan's attention is fused (px_cost_attention: --attention flash,
 *    or context parallelism), where the executor's flash-style attention
 *    (one block, or the CP ring's blocks) keeps each query row's
 *    log-sum-exp (b·a/t × s/cp) instead and recomputes the probabilities in
 *    backward (flash attention's rule), plus
 *    what its kernels need besides: the norms' per-row statistics (mean and
 *    1/rms for LayerNorm, 1/rms for RMSNorm), the token and target ids (int32),
 *    the logits in the run's dtype, and with TP the vocab-parallel
 *    cross-entropy's row max and (sum of exp, target logit) pairs.
 *
 * A layer's input (role PX_ACT_IN) is saved by its first op (the norm, or the
 * LM head's projection) but made by the layer before it, as its output, or
 * received from the previous pipeline stage: the executor allocates a layer's
 * output with the shape of the next layer's PX_ACT_IN entry, and a chunk's
 * last output (sent on to the next stage) is a p2p buffer, not an activation. */
#pragma once
#include <glib.h>
#include "model.h"
#include "plan.h"

G_BEGIN_DECLS

typedef enum {
  PX_ACT_STACK_PAPER, /* Megatron-LM / Korthikanti accounting (the planner) */
  PX_ACT_STACK_EXEC,  /* parallax-exec's kernels */
} PxActStack;

typedef struct {
  PxActStack stack;
  int elem_bytes;     /* bytes of an activation element; 0: px_plan_act_bytes (PAPER) */
} PxActOptions;

typedef enum {
  PX_ACT_IN,            /* the layer's input (block: the first norm's input) */
  PX_ACT_NORM1_OUT,     /* first norm's output = the QKV projection's input */
  PX_ACT_NORM1_MEAN,    /* EXEC: LayerNorm row means (s·b/t rows with SP) */
  PX_ACT_NORM1_RSTD,    /* EXEC: 1/std (LayerNorm) or 1/rms (RMSNorm) per row */
  PX_ACT_QKV,           /* Q, K (for QK^T) and V (for the attention over V) */
  PX_ACT_PROBS,         /* softmax output, a·s·span per sequence */
  PX_ACT_PROBS_MASK,    /* PAPER, dropout: the attention dropout mask (1 B) */
  PX_ACT_PROBS_DROPPED, /* PAPER, dropout: the dropped-out probabilities */
  PX_ACT_LSE,           /* EXEC, fused attention (flash, context parallelism): the row
                         * log-sum-exp of the scores, (b·a/t) × s, in place of the probabilities */
  PX_ACT_ATTN_OUT,      /* attention output = the output projection's input */
  PX_ACT_ATTN_MASK,     /* PAPER, dropout: the attention block's dropout mask */
  PX_ACT_MID,           /* residual after attention = the second norm's input */
  PX_ACT_NORM2_OUT,     /* second norm's output = the first MLP linear's input */
  PX_ACT_NORM2_MEAN,
  PX_ACT_NORM2_RSTD,
  PX_ACT_FFN_PRE,       /* GELU input, or the gate projection's output (gated) */
  PX_ACT_FFN_ACT,       /* GELU output, or gate·up (the down projection's input) */
  PX_ACT_FFN_UP,        /* gated MLPs: the up projection's output */
  PX_ACT_MLP_MASK,      /* PAPER, dropout: the MLP's dropout mask */
  PX_ACT_FFN_OUT,       /* the down projection's output: kept only by torchtitan's op-level
                         * selective checkpointing, which saves mm outputs, not GEMM inputs */
  PX_ACT_AMAX,          /* torchtitan op-SAC under torchao float8 (tensorwise dynamic scaling):
                         * the saved aten.max outputs, max(abs(x)) of each Float8Linear's input and
                         * weight, 0-dim tensors in the activation dtype (rows = their count) */
  PX_ACT_MOE,           /* MoE blocks, the routed experts: PAPER, their activations on the busiest rank
                           (px_moe_activation_bytes); EXEC, the executor layer's one saved tensor, in
                           elements of the run's dtype, sized for the routing's worst case
                           (px_moe_exec_layout) */
  PX_ACT_EMBED_MASK,    /* PAPER, dropout: the embedding's dropout mask */
  PX_ACT_TOKENS,        /* EXEC: token ids (int32) */
  PX_ACT_NORMF_MEAN,    /* EXEC: the final norm's statistics (its output is the LM head's input) */
  PX_ACT_NORMF_RSTD,
  PX_ACT_LOGITS,        /* the LM head's logits, s·b × ceil(V/t) */
  PX_ACT_TARGETS,       /* EXEC: target ids (int32) */
  PX_ACT_CE_MAX,        /* EXEC, tp > 1: the vocab-parallel cross-entropy's row max */
  PX_ACT_CE_STATS,      /* EXEC, tp > 1: its (sum of exp, target logit) per row */
  /* a split backward (zero bubble): what the backward-input pass makes for the
   * weight pass, life PX_ACT_W (see px_act_splits_backward) */
  PX_ACT_W_LN1,         /* sequence parallel: the all-gathered QKV input (s·b rows) */
  PX_ACT_W_LN2,         /* sequence parallel: the all-gathered first MLP linear's input */
  PX_ACT_W_HEAD_IN,     /* sequence parallel: the all-gathered LM head input */
  PX_ACT_D_QKV,         /* the QKV projection's output gradient */
  PX_ACT_D_PROJ,        /* the attention output projection's output gradient (s·b rows) */
  PX_ACT_D_FC,          /* the first MLP linear's (gated: the gate projection's) output gradient */
  PX_ACT_D_UP,          /* gated MLPs: the up projection's output gradient */
  PX_ACT_D_DOWN,        /* the down projection's output gradient (s·b rows) */
  PX_ACT_D_LOGITS,      /* the LM head projection's output gradient */
  PX_ACT_N_ROLES
} PxActRole;

typedef enum {
  PX_ACT_KEPT,       /* saved by the forward, freed after the layer's backward */
  PX_ACT_CHUNK,      /* saved by the forward, freed when the chunk's backward ends */
  PX_ACT_RECOMPUTED, /* freed when the layer's forward ends, made again in its backward */
  PX_ACT_SEGMENT,    /* full recompute, a block input inside a checkpoint segment:
                      * freed when the segment's forward ends, made again in backward */
  PX_ACT_W,          /* split backward only: made by the backward-input pass for the
                      * weight pass (a weight GEMM's output gradient, or its all-gathered
                      * input under SP), freed by the weight pass */
} PxActLife;

typedef struct {
  PxActRole role;
  const char *name;   /* static string */
  const char *op;     /* the forward op that saves it (static string) */
  PxActLife life;
  int ndim;           /* 1, 2 or 4 (the probabilities: b, a/t, s, span) */
  gint64 shape[4];    /* local shape (the executor's allocation) */
  double rows, cols;  /* rows × cols of the local shard (rows: all dims but the last) */
  int elem_bytes;     /* 1 (masks), 4 (ids, PAPER logits) or the activation size */
  double bytes;       /* rows · cols · elem_bytes */
  gboolean w;         /* split backward only: read by the weight pass, so held (or, recomputed,
                       * made again) until it, not freed by the backward-input pass */
} PxActEntry;

#define PX_ACT_MAX_ENTRIES 32

typedef struct {
  int n;
  PxActEntry e[PX_ACT_MAX_ENTRIES];
} PxActList;

/* The activation tensors layer li of part [first, end) saves, one micro-batch,
 * one TP rank (opt NULL: the PAPER stack). The part matters only for full
 * recompute, where the first block of each checkpoint segment keeps its input
 * (PX_ACT_KEPT) and the other blocks' inputs are PX_ACT_SEGMENT. */
void px_activations_layer(const PxModel *model, const PxPlan *plan, const PxActOptions *opt, int first, int end,
                          int li, PxActList *out);

/* Zero bubble (Qi et al. 2024): the schedule splits a layer's backward into
 * a backward-input pass (B: the input gradients; the norms', embedding's and
 * routed experts' weight gradients too) and a weight pass (W: the weight
 * GEMMs' gradients, with their biases). What W reads is what the paper's
 * WeightGradStore keeps per weight GEMM, (total_input, grad_output): the GEMM's
 * input, all-gathered under sequence parallelism, and its output gradient.
 * In a layer's list (built for such a schedule) the inputs are the entries
 * flagged `w` (without SP: ln1, attention output, ln2, the FFN activation,
 * the LM head's input; with SP the gathered copies, PX_ACT_W entries, stand
 * for the s·b/t-row ones) and the gradients PX_ACT_W entries. A GPT-3 block,
 * 16-bit, no TP: inputs 2 + 2 + 2 + 8 = 14 sbh, gradients 6 + 2 + 8 + 2 = 18
 * sbh: 32 sbh, Qi et al.'s M_W. Not split: the MoE routed experts (their
 * weight gradients are made in B), and in the executor's stack an LM head
 * whose tied weight is the embedding's in another chunk of the rank. */
gboolean px_act_splits_backward(const PxPlan *plan);

/* EXEC: whether entries of role are statistics (norm mean / rstd, attention
 * lse, the vocab-parallel cross-entropy's max and sums), which the executor
 * keeps in fp32 beside bf16 / fp16 activations (exec/backend.h, "Half
 * activations") and in the run's dtype otherwise. */
gboolean px_act_role_is_stat(PxActRole role);

/* The entry of a role, or NULL. */
const PxActEntry *px_act_find(const PxActList *list, PxActRole role);

/* Sum of the entries saved from forward to backward (KEPT and CHUNK). */
double px_act_kept_bytes(const PxActList *list);

/* Sum of what a split backward holds from the backward-input pass to the
 * weight pass: the `w` entries and the PX_ACT_W ones (0 when not split). */
double px_act_w_bytes(const PxActList *list);

/* One micro-batch of part [first, end) under a split backward (whatever the
 * plan's schedule): the bytes held from its backward-input pass to its
 * weight pass, the sum of px_act_w_bytes over the part's layers. The planner,
 * the engine (sim/predict.c) and the search read this one amount. */
double px_activations_w_bytes(const PxModel *model, const PxPlan *plan, const PxActOptions *opt, int first, int end);

/* Full recompute: the checkpoint segment [*s0, *s1) of block li in part
 * [first, end): ckpt_interval blocks from the part's first block. */
void px_activations_segment(const PxModel *model, const PxPlan *plan, int first, int end, int li, int *s0, int *s1);

/* One micro-batch of part [first, end): the bytes kept from its forward to
 * its backward (sum of KEPT, CHUNK and segment inputs), and the peak of its
 * activations over its forward and its backward walked entry by entry in the
 * order the executor runs them (allocation at the entry's op, frees at its
 * lifetime's end; full recompute rebuilds one segment in backward, from its
 * last block down). Under a split backward (px_act_splits_backward) the
 * backward-input pass frees, layer by layer, all but what the weight pass
 * reads, and holds each layer's PX_ACT_W gradients from the layer's own
 * backward on; `w` is what it leaves for the weight pass, which frees it. */
typedef struct {
  double kept;     /* held from the forward to the backward (or backward-input pass) */
  double peak;     /* the largest of fwd, kept + bwd, kept + bwd_input: over the forward and the backward */
  double w;        /* split: held from the backward-input pass to the weight pass */
  double fwd;      /* the forward's peak above the level before it (>= kept) */
  double bwd;      /* a full backward's peak above the level before it */
  double bwd_input;/* split: the backward-input pass's peak above the level before it */
} PxActProfile;
void px_activations_profile(const PxModel *model, const PxPlan *plan, const PxActOptions *opt, int first, int end,
                            PxActProfile *out);

const char *px_act_life_name(PxActLife life);

G_END_DECLS
