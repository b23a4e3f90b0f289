/* moe_layer.h — the routed experts of an MoE block on a backend (docs/moe.md,
 * "The executor"): router linear (replicated, no bias) → softmax → top-k
 * (renormalised when the model says norm_topk) → with a capacity factor, the
 * copies over an expert's capacity dropped (px_moe_capacity, Megatron-Core's
 * "probs" policy: moe_layer.c route_capacity) → dispatch (token copies
 * permuted by expert, all-to-all-v over the EP group) → each local
 * expert's MLP (the model's kind: SwiGLU or GELU, no biases) → all-to-all-v
 * back → the gate-weighted combine; and the backward of all of it, router
 * included, plus the load-balancing loss (Switch Transformer / Megatron-Core's
 * switch_load_balancing_loss: aux = coef · E · Σ_i f_i · P_i, f_i the share of
 * the T·k routed copies that go to expert i, P_i the mean router probability
 * of expert i over the T tokens; its gradient flows through P only).
 *
 * Everything of size T·h or T·E stays on the device: the router's softmax
 * and top-k and their backward (px_op_router_topk / px_op_router_bwd), the
 * dispatch and combine (px_op_rows_gather / px_op_rows_dot), the GEMMs and
 * activations, all backend ops. The host decides the routing (gate weights,
 * capacity drops, send order, counts) from the T·k choices and their
 * probabilities brought down, and sends T·k row indices and gate weights up.
 * Expert tensor parallelism (etp > 1): each rank holds an f/etp slice of
 * every local expert (gate and up rows, down columns, Megatron's column- and
 * row-parallel split) and adds its partial outputs over the ETP group.
 *
 * What forward keeps for backward is one tensor laid out by
 * px_moe_exec_layout (common/moe.h), the core's PX_ACT_MOE entry. */
#pragma once
#include "backend.h"
#include "comm.h"
#include "model.h"

G_BEGIN_DECLS

typedef struct {
  PxBackend *be;
  PxComm *ep;        /* the EP communicator (exec/grid.h); NULL when ep == 1 */
  int ep_size, ep_rank;
  PxDType dtype;     /* f32 or f64 */
  const PxModelDesc *d;
  gint64 tokens;     /* rows entering the layer on this rank */
  PxComm *stats;     /* the group whose tokens the load-balancing loss covers together (the TP
                        group under sequence parallelism: one micro-batch's N tokens); NULL: this rank's */
  PxComm *etp;       /* the ETP communicator (each expert's FFN split over it); NULL when etp == 1 */
  int etp_size, etp_rank;
  gboolean gather;   /* the ETP ranks hold different tokens: what each receives is all-gathered over
                        ETP and the experts' partial outputs reduce-scattered back (Megatron-Core's
                        sequence-parallel MoE); FALSE: the same tokens (tp > 1 without sequence
                        parallelism, etp = tp), the partial outputs all-reduced */
  PxComm *stats_cp;  /* the statistics then summed over this group too: the CP group (each CP rank routes
                        its seq/cp tokens of the same sequences; Megatron-Core reduces tokens_per_expert
                        over TP × CP); NULL without context parallelism */
} PxMoeRun;

typedef struct {
  PxTensor *w, *g;   /* weight and its gradient (g may be NULL in forward) */
} PxMoeWeight;

/* This rank's shards: the router (E, h); the E/ep local experts stacked,
 * gate and up (or fc) (E/ep · f/etp, h), down (E/ep · h, f/etp). */
typedef struct {
  PxMoeWeight router, gate, up, fc, down;
} PxMoeWeights;

/* y (T, h) = the routed experts' combined output for x (T, h); saved (the
 * layout's total elements) gets what backward needs; *aux the micro-batch's
 * load-balancing loss (coefficient included). Collective over the EP group. */
gboolean px_moe_layer_fwd(const PxMoeRun *r, const PxMoeWeights *w, PxTensor *saved, const PxTensor *x, PxTensor *y,
                          double *aux, GError **error);
/* dx += d/dx of the layer for output gradient dy; weight gradients added
 * into w->*.g; daux = d(objective)/d(aux loss). Collective over the EP group. */
gboolean px_moe_layer_bwd(const PxMoeRun *r, const PxMoeWeights *w, PxTensor *saved, const PxTensor *x,
                          const PxTensor *dy, PxTensor *dx, double daux, GError **error);

G_END_DECLS
