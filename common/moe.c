/* moe.c — the experts' grid, its rules and token counts (see moe.h, docs/moe.md). */
#include "moe.h"
#include <math.h>

int px_plan_etp(const PxPlan *p) { return p->etp > 0 ? p->etp : p->tp; }

int px_plan_edp(const PxPlan *p) {
  gint64 model = (gint64)px_plan_etp(p) * MAX(p->ep, 1) * p->pp;
  return model > 0 ? (int)(px_plan_world(p) / model) : 1;
}

#define REFUSE(...)                                                              \
  do {                                                                           \
    g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID, __VA_ARGS__);       \
    return FALSE;                                                                \
  } while (0)

gboolean px_moe_validate(const PxPlan *p, const PxModel *model, GError **error) {
  const PxModelDesc *d = &model->desc;
  int etp = px_plan_etp(p), world = px_plan_world(p);
  /* 0 in ep, etp or imbalance: unset (a plan not made by px_plan_init) */
  if (p->ep < 0) REFUSE("ep=%d must be at least 1", p->ep);
  if (p->etp < 0) REFUSE("etp=%d must be at least 1", p->etp);
  if (p->imbalance != 0 && (!isfinite(p->imbalance) || p->imbalance < 1))
    REFUSE("imbalance %g must be at least 1 (the busiest expert's tokens over the balanced share)", p->imbalance);
  if (d->experts == 0) {
    if (p->ep > 1) REFUSE("ep=%d needs a mixture-of-experts model (%s has no experts)", p->ep, d->name);
    if (etp != p->tp) REFUSE("etp=%d needs a mixture-of-experts model (%s has no experts)", etp, d->name);
    /* a plan file's imbalance was ignored on a dense model (the flag's was refused) */
    if (p->imbalance > 1)
      REFUSE("imbalance %g needs a mixture-of-experts model (%s has no experts)", p->imbalance, d->name);
    return TRUE;
  }
  if (d->experts % MAX(p->ep, 1))
    REFUSE("ep=%d does not divide the %d experts (Megatron-Core: num_moe_experts %% expert_model_parallel_size == 0)",
           p->ep, d->experts);
  if (d->expert_ffn % etp) REFUSE("etp=%d does not divide the expert FFN size %d", etp, d->expert_ffn);
  if (d->shared_experts > 0 && ((gint64)d->shared_experts * d->shared_ffn) % p->tp)
    REFUSE("tp=%d does not divide the shared experts' FFN size %" G_GINT64_FORMAT, p->tp,
           (gint64)d->shared_experts * d->shared_ffn);
  gint64 emp = (gint64)etp * MAX(p->ep, 1) * p->pp;
  if (world % emp)
    REFUSE("MoE parallel folding: etp·ep·pp = %d·%d·%d = %" G_GINT64_FORMAT " does not divide the %d GPUs "
           "(experts use etp × ep × edp over each pipeline stage's ranks; Megatron-Core parallel_state.py)",
           etp, p->ep, p->pp, emp, world);
  int edp = (int)(world / emp);
  if (p->pp > 1 && p->order[2] != PX_AXIS_PP && edp != px_plan_data_ranks(p))
    REFUSE("MoE parallel folding: with pp not the outermost axis (order %s,%s,%s) the attention's dp·cp=%d and the "
           "experts' edp=%d must be equal (Megatron-Core parallel_state.py)",
           px_axis_name(p->order[0]), px_axis_name(p->order[1]), px_axis_name(p->order[2]), px_plan_data_ranks(p), edp);
  if (p->tp > 1 && !p->seq_parallel && (p->ep > 1 || etp != p->tp))
    REFUSE("expert parallelism with tp=%d needs sequence parallelism (--sp): Megatron-LM refuses ep > 1 or etp ≠ tp "
           "under tensor parallelism without it", p->tp);
  if (p->imbalance > (double)d->experts / d->top_k)
    REFUSE("imbalance %g exceeds E/k = %d/%d: an expert cannot receive more than every token", p->imbalance,
           d->experts, d->top_k);
  return TRUE;
}

/* ---- the expert grid ---- */

int px_moe_rank_of(const PxPlan *p, int stage, int etp_i, int ep_i, int edp_i) {
  /* the plan's order with tp -> etp and dp -> (ep inner, edp outer), innermost first */
  int rank = 0, stride = 1;
  for (int i = 0; i < 3; i++) {
    switch (p->order[i]) {
    case PX_AXIS_TP:
      rank += etp_i * stride;
      stride *= px_plan_etp(p);
      break;
    case PX_AXIS_DP:
      rank += ep_i * stride;
      stride *= MAX(p->ep, 1);
      rank += edp_i * stride;
      stride *= px_plan_edp(p);
      break;
    case PX_AXIS_PP:
      rank += stage * stride;
      stride *= p->pp;
      break;
    }
  }
  return rank;
}

static int per_node(const PxPlan *p, int stage, int gpn, gboolean ep) {
  int n = ep ? MAX(p->ep, 1) : px_plan_etp(p), k = 0;
  gpn = MAX(gpn, 1);
  int first = px_moe_rank_of(p, stage, 0, 0, 0) / gpn;
  for (int i = 0; i < n; i++) {
    int r = ep ? px_moe_rank_of(p, stage, 0, i, 0) : px_moe_rank_of(p, stage, i, 0, 0);
    k += r / gpn == first;
  }
  return k;
}

int px_moe_ep_per_node(const PxPlan *p, int stage, int gpn) { return per_node(p, stage, gpn, TRUE); }
int px_moe_etp_per_node(const PxPlan *p, int stage, int gpn) { return per_node(p, stage, gpn, FALSE); }

/* ---- tokens ---- */

gint64 px_moe_capacity(const PxModelDesc *d, gint64 tokens) {
  if (d->experts == 0 || d->capacity_factor <= 0) return 0;
  /* Megatron-Core: math.ceil((num_tokens / num_experts) * capacity_factor), num_tokens = tokens · topk */
  return (gint64)ceil((double)(tokens * d->top_k) / d->experts * d->capacity_factor);
}

void px_moe_tokens(const PxModel *model, const PxPlan *p, PxMoeTokens *t) {
  const PxModelDesc *d = &model->desc;
  *t = (PxMoeTokens){0};
  if (d->experts == 0) return;
  /* a CP rank routes its own seq/cp tokens (cp folds into the experts' ep × edp) */
  double seq = (p->seq > 0 ? p->seq : d->default_seq) / (double)MAX(p->cp, 1);
  double T = (double)p->mbs * seq, k = d->top_k;
  t->in = p->seq_parallel ? T / p->tp : T;
  /* without sequence parallelism under TP (then etp = tp, ep = 1) the TP ranks hold the same tokens */
  t->gather = p->tp > 1 && !p->seq_parallel ? 1 : px_plan_etp(p);
  t->local = (double)d->experts / MAX(p->ep, 1);
  t->balanced = k * t->in * t->gather / t->local;
  /* an expert takes at most the capacity from each of the ep ranks sending to
   * it, g times over when gathered */
  gint64 c = px_moe_capacity(d, (gint64)llround(t->in));
  double cap = c > 0 ? (double)c * MAX(p->ep, 1) * t->gather : INFINITY;
  t->busiest = MIN((p->imbalance > 1 ? p->imbalance : 1.0) * t->balanced, cap);
  t->other = MIN(t->balanced, cap);
  t->total = t->busiest + (t->local - 1) * t->other;
  t->sent = k * t->in;
  t->received = t->total / t->gather;
}

double px_moe_activation_bytes(const PxModel *model, const PxPlan *p) {
  const PxModelDesc *d = &model->desc;
  if (d->experts == 0) return 0;
  PxMoeTokens t;
  px_moe_tokens(model, p, &t);
  double e = px_plan_act_bytes(p), h = d->hidden, f = (double)d->expert_ffn / px_plan_etp(p);
  double router = t.in * d->experts * 4.0 + t.in * d->top_k * (4.0 + 4.0); /* fp32 probabilities; top-k prob + index */
  double permuted = e * t.total * h;                                        /* the experts' input (fc1 wgrad) */
  /* as a dense MLP's, per token: gate, up and their product; or the
   * activation's saved tensor (GELU's input, squared ReLU's relu output r,
   * activations.c) and the fc2 input */
  double inner = (px_ffn_gated(d->ffn_kind) ? 3.0 : 2.0) * e * t.total * f;
  double out = e * t.received * h;                                          /* expert output before the weighted combine */
  return router + permuted + inner + out;
}

double px_moe_buffer_bytes(const PxModel *model, const PxPlan *p) {
  const PxModelDesc *d = &model->desc;
  if (d->experts == 0) return 0;
  PxMoeTokens t;
  px_moe_tokens(model, p, &t);
  return px_plan_act_bytes(p) * (double)d->hidden * (t.sent + t.received);
}

void px_moe_exec_layout(const PxModelDesc *d, int ep, int etp, int gather, gint64 tokens, PxMoeExecLayout *o) {
  *o = (PxMoeExecLayout){0};
  if (d->experts == 0) return;
  gint64 E = d->experts, k = d->top_k, h = d->hidden;
  ep = MAX(ep, 1);
  etp = MAX(etp, 1);
  gather = MAX(gather, 1);
  o->tokens = tokens;
  o->sent = k * tokens;
  o->gather = gather;
  o->rows_max = gather * ep * tokens * MIN(k, E / ep);
  gint64 c = px_moe_capacity(d, tokens); /* a capacity: at most c rows per expert from each source */
  if (c > 0) o->rows_max = MIN(o->rows_max, gather * ep * c * (E / ep));
  o->fl = d->expert_ffn / etp;
  o->n_inner = px_ffn_gated(d->ffn_kind) ? 3 : 2;
  o->probs = 0;
  o->topk = o->probs + tokens * E;
  o->counts = o->topk + tokens * k;
  o->x = o->counts + (1 + gather) * E;
  o->inner = o->x + o->rows_max * h;
  o->yret = o->inner + o->n_inner * o->rows_max * o->fl;
  o->total = o->yret + o->sent * h;
}
