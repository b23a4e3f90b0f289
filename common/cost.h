/* cost.h — durations of every instruction of a program, from the model, the
 * cluster and the plan. The event engine (sim/) consumes a PxCostTable; the
 * ideal table (forward 1, backward-input 1, backward-weight 1, no
 * communication) checks the schedule formulas. Seconds. */
#pragma once
#include <glib.h>
#include "model.h"
#include "plan.h"
#include "cluster.h"
#include "partition.h"

G_BEGIN_DECLS

typedef struct {
  int pp, vpp, parts;
  /* per part (model chunk), one micro-batch, one GPU of that stage */
  double *fwd;          /* (parts) forward, TP collectives included */
  double *bwd_input;    /* (parts) backward w.r.t. inputs (+ recompute forward) */
  double *bwd_weight;   /* (parts) backward w.r.t. weights; full backward = input + weight */
  double *tp_comm_fwd;  /* (parts) share of fwd spent in TP collectives (for the breakdown) */
  double *tp_comm_bwd;  /* (parts) share of bwd_input+bwd_weight spent in TP collectives */
  double *p2p_act;      /* (parts) sending part k's output activation to part k+1 */
  double *p2p_grad;     /* (parts) sending part k's input gradient to part k-1 */
  double *gather;       /* (parts) ZeRO-3 all-gather of the chunk's parameters (0 otherwise) */
  double *p2p_bytes;    /* (parts) bytes of one activation / gradient message out of part k */
  /* per pipeline rank */
  double *dp_reduce;    /* (pp) DP gradient all-reduce / reduce-scatter of the whole rank */
  double *tied_reduce;  /* (pp) tied-embedding gradient all-reduce (first and last stage) */
  double *optimizer;    /* (pp) optimizer step (+ ZeRO all-gather of updated params, offload copies) */
  double *load;         /* (pp) loading a micro-batch (first and last stage) */
  double *dp_bytes;     /* (pp) bytes each GPU sends in the DP reduction */
  /* FLOPs for MFU/HFU */
  double model_flops_per_step;     /* whole cluster, one step, no recompute */
  double hardware_flops_per_step;  /* with recompute */
  double peak_flops;               /* per GPU, for the plan's precision */
  gboolean overlap_dp;             /* DP reduction may overlap backward */
} PxCostTable;

PxCostTable *px_cost_table_new(const PxModel *model, const PxCluster *cluster, const PxPlan *plan,
                               const PxPartition *part, GError **error);
/* The ideal setting: T_F = 1, T_B = T_W = 1 (backward = 2 × forward), all
 * communication, load and optimizer 0. */
PxCostTable *px_cost_table_ideal(int pp, int vpp);
void px_cost_table_free(PxCostTable *t);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxCostTable, px_cost_table_free)

G_END_DECLS
