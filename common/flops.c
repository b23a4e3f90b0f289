/* flops.c — FLOPs per step (see flops.h). */
#include "flops.h"

double px_flops_block_recompute(const PxModel *model, const PxLayer *block, int seq, PxCheckpoint ckpt) {
  if (block->kind != PX_LAYER_BLOCK) return 0;
  switch (ckpt) {
  case PX_CKPT_FULL: return px_layer_forward_flops(model, block, seq);
  case PX_CKPT_SELECTIVE: /* the attention core: QK^T and PV */
    return 4.0 * seq * px_model_attn_span(&model->desc, seq) * (double)px_model_q_dim(&model->desc);
  default: return 0;
  }
}

void px_flops_compute(const PxModel *model, const PxPlan *plan, PxFlops *out) {
  int s = plan->seq > 0 ? plan->seq : model->desc.default_seq;
  double fwd = 0, re = 0;
  for (guint i = 0; i < model->n_layers; i++) {
    fwd += px_layer_forward_flops(model, &model->layers[i], s);
    re += px_flops_block_recompute(model, &model->layers[i], s, plan->ckpt);
  }
  double seqs = plan->gbs > 0 ? plan->gbs : plan->mbs * plan->dp;
  out->forward_per_seq = fwd;
  out->model_per_step = 3.0 * fwd * seqs;
  out->hardware_per_step = (3.0 * fwd + re) * seqs;
  out->model_per_token = 3.0 * fwd / s;
  out->approx_6n_per_token =
      6.0 * (double)model->active_params + 12.0 * model->desc.layers * (double)model->desc.hidden * s;
}
