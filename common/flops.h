/* flops.h — FLOPs of a training step, for MFU and HFU.
 * Model FLOPs count forward + backward (3 × forward) with no recompute; hardware
 * FLOPs add what recomputation runs again. Per layer, forward: 2 FLOPs per
 * multiply-add of every GEMM and 4·s·h per token for attention (scores and
 * values), as Megatron-LM counts; for GPT-3-style blocks this gives Megatron's
 * F = 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)) with full recompute. */
#pragma once
#include <glib.h>
#include "model.h"
#include "plan.h"

G_BEGIN_DECLS

typedef struct {
  double forward_per_seq;    /* one sequence, all layers */
  double model_per_step;     /* 3 × forward × sequences per step (gbs) */
  double hardware_per_step;  /* model + recomputed forward */
  double model_per_token;
  double approx_6n_per_token;/* 6·N + 12·L·h·s (Kaplan et al. / PaLM appendix B); N the active parameters of an MoE */
} PxFlops;

void px_flops_compute(const PxModel *model, const PxPlan *plan, PxFlops *out);
/* Recomputed forward FLOPs of one block for one sequence under a checkpoint policy. */
double px_flops_block_recompute(const PxModel *model, const PxLayer *block, int seq, PxCheckpoint ckpt);

G_END_DECLS
