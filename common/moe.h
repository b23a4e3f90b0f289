/* moe.h — mixture of experts with expert parallelism: the experts' grid
 * (Megatron-Core's MoE parallel folding), its rules, and the token counts the
 * memory and cost models size the expert layers by (docs/moe.md).
 *
 * Grid. Attention uses tp × dp × pp as the plan orders them; the experts of
 * an MoE layer use etp × ep × edp over the same ranks of each pipeline stage,
 * edp = world / (etp · ep · pp). Megatron-Core's parallel_state.py builds both
 * grids with one RankGenerator order ("tp-cp-ep-dp-pp"): the expert grid puts
 * etp where tp is and ep just inside edp where dp is. Here likewise: in the
 * plan's order (innermost first) tp is replaced by etp and dp by (ep, edp).
 *
 * Tokens. A rank's MoE layer receives T_in tokens of a micro-batch (b·s, ÷ tp
 * with sequence parallelism), routes each to top_k experts, sends them to the
 * experts' ranks (all-to-all over ep), which all-gather them over etp: with
 * balanced routing a rank's E/ep experts see k · T_in · g tokens, g = etp (1
 * when tp > 1 without sequence parallelism: the TP ranks already hold the
 * same tokens and etp = tp). --imbalance f gives the busiest expert f times
 * its balanced share (capped by a capacity factor: tokens beyond it are
 * dropped); the busiest rank is the one holding it. */
#pragma once
#include <glib.h>
#include "model.h"
#include "plan.h"

G_BEGIN_DECLS

/* The experts' tensor parallelism (plan etp, 0 meaning tp). */
int px_plan_etp(const PxPlan *plan);
/* The experts' data parallelism edp = world / (etp · ep · pp). */
int px_plan_edp(const PxPlan *plan);

/* The folding's rules, each refused naming it: the model has experts when ep
 * > 1 or etp ≠ tp; ep divides the experts; etp divides the expert FFN;
 * etp · ep · pp divides the world; pp not the outermost axis needs edp = dp;
 * tp > 1 with ep > 1 or etp ≠ tp needs sequence parallelism; imbalance ≥ 1
 * and at most the experts a rank holds... (see moe.c). Called by px_plan_validate. */
gboolean px_moe_validate(const PxPlan *plan, const PxModel *model, GError **error);

/* Global rank of expert coordinates (etp_i, ep_i, edp_i) on pipeline rank stage. */
int px_moe_rank_of(const PxPlan *plan, int stage, int etp_i, int ep_i, int edp_i);
/* Members of the EP group of replica 0 on `stage` that share the first
 * member's node (gpus_per_node), and the same for the ETP group. */
int px_moe_ep_per_node(const PxPlan *plan, int stage, int gpus_per_node);
int px_moe_etp_per_node(const PxPlan *plan, int stage, int gpus_per_node);

/* The expert capacity of a capacity-factor model (Switch Transformer;
 * Megatron-Core moe_utils.py get_capacity, called by
 * topk_softmax_with_capacity with num_tokens · topk): the most token copies
 * a rank's `tokens` may send to one expert, ceil(tokens · k / E ·
 * capacity_factor); the rest are dropped at the source (the executor's MoE
 * layer, exec/moe_layer.c). 0 when the model is dropless (capacity_factor 0).
 * An expert then sees at most ep · g of them (g: px_moe_tokens' gather). The
 * one figure the planner's token counts, the executor's layout and its
 * routing read. */
gint64 px_moe_capacity(const PxModelDesc *d, gint64 tokens);

/* Token counts of one MoE layer, one micro-batch, on the busiest rank. */
typedef struct {
  double in;         /* tokens entering the layer on a rank (T_in) */
  double gather;     /* g: the ETP all-gather's factor (etp, or 1) */
  double local;      /* experts a rank holds, E / ep */
  double balanced;   /* tokens of one expert under balanced routing: k · T_in · g / (E / ep) */
  double busiest;    /* the busiest expert's: min(imbalance × balanced, cap) */
  double other;      /* each other expert's on that rank: min(balanced, cap); cap = ep · g ·
                        px_moe_capacity(T_in) rows (none when dropless) */
  double total;      /* tokens through the rank's experts: busiest + (local - 1) · other */
  double sent;       /* token copies a rank sends in the dispatch all-to-all: k · T_in */
  double received;   /* and the busiest rank receives (before the ETP gather): total / g */
} PxMoeTokens;
void px_moe_tokens(const PxModel *model, const PxPlan *plan, PxMoeTokens *out);

/* Activation bytes the routed part of one MoE block keeps for backward, one
 * micro-batch, on the busiest rank: router probabilities (fp32) and top-k
 * choices, the permuted tokens (the experts' input), the experts' inner
 * activations (3 or 2 × f/etp per token, as a dense MLP's) and their output
 * before the weighted combine. The block's attention, norms and shared
 * experts are counted as a dense block's (memory.c). */
double px_moe_activation_bytes(const PxModel *model, const PxPlan *plan);
/* Dispatch / combine buffers of one MoE layer (transient, one layer at a
 * time): the all-to-all send and receive buffers. */
double px_moe_buffer_bytes(const PxModel *model, const PxPlan *plan);

/* What the executor's MoE layer (exec/moe_layer.c) keeps for
 * backward, one micro-batch, as one tensor of `total` elements of the run's
 * dtype (PX_ACT_MOE of the EXEC stack), at these element offsets. T tokens
 * enter on the rank, E experts over ep ranks, each expert's FFN f over etp
 * ranks (fl = f/etp), k experts per token; S = k·T token copies are sent; g
 * is px_moe_tokens' gather factor (etp when the ETP ranks hold different
 * tokens and all-gather what they receive, 1 when tp > 1 without sequence
 * parallelism: the same tokens). A rank's experts may see up to
 * R = g·ep·T·min(k, E/ep) rows (every token of its EP and ETP groups choosing
 * its experts: dropless routing sizes nothing by the data, so the worst case
 * is kept, and the measured peak is the prediction whatever the router does);
 * with a capacity C = px_moe_capacity(d, T) per expert and source rank,
 * R = g·ep·min(T·min(k, E/ep), C·E/ep):
 *   probs   T·E      the router's softmax (its backward)
 *   topk    T·k      the chosen experts' indices (the permutation, the combine)
 *   counts  (1+g)·E  d aux / d p per expert; rows received from each (source, local
 *                    expert), for each ETP rank
 *   x       R·h      the experts' input (their weight gradients)
 *   inner   n·R·fl   gate output, up output, their SwiGLU (n = 3), or fc output, GELU (n = 2)
 *   yret    S·h      the experts' outputs back in send order (the gate gradient) */
typedef struct {
  gint64 tokens, sent, rows_max, fl;
  int gather;
  gint64 probs, topk, counts, x, inner, yret, total;
  int n_inner;
} PxMoeExecLayout;
void px_moe_exec_layout(const PxModelDesc *d, int ep, int etp, int gather, gint64 tokens, PxMoeExecLayout *out);

G_END_DECLS
