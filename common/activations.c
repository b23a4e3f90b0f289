/* activations.c — the activation tensors of a layer (see activations.h).
 *
 * Korthikanti et al. 2022, §4, one block, s sequence, b micro-batch, h hidden,
 * a heads, t TP, e bytes per element (2 for 16-bit), dropout masks 1 byte:
 *   attention: norm input e·sbh, QKV input e·sbh, Q and K 2e·sbh, V e·sbh,
 *     softmax output e·as²b, dropout mask as²b and dropped output e·as²b,
 *     output-projection input e·sbh, dropout mask sbh            11sbh + 5as²b
 *   MLP: norm input e·sbh, first linear input e·sbh, GELU input 4e·sbh,
 *     GELU output 4e·sbh, dropout mask sbh                        23sbh... (e = 2)
 * which sum to sbh(34 + 5as/h). With TP the QKV, softmax, projection inputs and
 * MLP inner tensors split over t; with sequence parallelism the rest too. The
 * entries below generalise the paper's to GQA (K and V of kv heads), a
 * head_dim apart from h/a, sliding windows (a·s·min(s, window)), parallel
 * attention + MLP blocks (the MLP's norm reads the block input) and gated MLPs
 * (three s·b·f tensors). */
#include "activations.h"
#include "cost.h"
#include "moe.h"
#include <math.h>
#include <string.h>

typedef struct {
  PxActList *out;
  double e;          /* activation element bytes */
  double st;         /* EXEC: statistics' element bytes (px_act_role_is_stat): fp32 beside half activations */
  double s, b;       /* sequence, micro-batch */
  double n, nl;      /* token rows of a micro-batch, and of the residual stream on this rank */
  int t;
  gboolean split;    /* the backward is split (zero bubble): mark and add what W reads */
  gboolean gather;   /* sequence parallelism over t > 1: W reads all-gathered GEMM inputs */
} Ctx;

static PxActEntry *add(Ctx *c, PxActRole role, const char *name, const char *op, PxActLife life, double rows,
                       double cols, double elem) {
  g_assert(c->out->n < PX_ACT_MAX_ENTRIES);
  PxActEntry *x = &c->out->e[c->out->n++];
  memset(x, 0, sizeof *x);
  x->role = role;
  x->name = name;
  x->op = op;
  x->life = life;
  x->rows = rows;
  x->cols = cols;
  x->elem_bytes = (int)elem;
  x->bytes = rows * cols * elem;
  x->ndim = cols > 0 ? 2 : 1;
  x->shape[0] = (gint64)llround(rows);
  x->shape[1] = (gint64)llround(cols);
  if (cols <= 0) { /* a vector of rows: one per token */
    x->cols = 1;
    x->bytes = rows * elem;
    x->shape[1] = 0;
  }
  return x;
}

/* Residual-stream rows (split over TP with sequence parallelism), width w. */
static PxActEntry *rep(Ctx *c, PxActRole role, const char *name, const char *op, PxActLife life, double w,
                       double elem) {
  return add(c, role, name, op, life, c->nl, w, elem);
}

static void norm_stats(Ctx *c, const PxModelDesc *d, PxActRole mean, PxActRole rstd, const char *op, PxActLife life) {
  if (d->norm == PX_NORM_LAYERNORM) rep(c, mean, "mean", op, life, 0, c->st);
  rep(c, rstd, "rstd", op, life, 0, c->st);
}

void px_activations_segment(const PxModel *model, const PxPlan *plan, int first, int end, int li, int *s0, int *s1) {
  int fb = first;
  while (fb < end && model->layers[fb].kind != PX_LAYER_BLOCK) fb++;
  int k = MAX(plan->ckpt_interval, 1);
  *s0 = fb + (li - fb) / k * k;
  *s1 = *s0;
  /* k may be the largest int (one checkpoint for every block): compare in 64 bits */
  while (*s1 < end && (gint64)*s1 < (gint64)*s0 + k && model->layers[*s1].kind == PX_LAYER_BLOCK) (*s1)++;
}

/* torchtitan's selective activation checkpointing, option "op" (the
 * December 2024 benchmarks' torchtitan 9dec370,
 * torchtitan/parallelisms/parallelize_llama.py _apply_ac_to_transformer_block;
 * models/llama3/infra/parallelize.py and distributed/activation_checkpoint.py
 * in later releases): each TransformerBlock runs under
 * torch.utils.checkpoint with create_selective_checkpoint_contexts, whose
 * policy MUST_SAVEs the outputs of the ops in _save_list (aten.mm, SDPA's
 * flash and efficient kernels, c10d reduce_scatter_tensor, aten.abs,
 * aten.max) but every second aten.mm of the block (mm_count % 2 == 0), and
 * PREFER_RECOMPUTEs everything else; the checkpoint keeps the block's input.
 * The block's mms in forward order (models/llama/model.py: wq, wk, wv in
 * Attention.forward, wo; FeedForward w2(silu(w1(x)) * w3(x)): w1, w3, w2)
 * are counted 1..7: wq, wv, w1 and w2 are saved (for a non-gated MLP, w1,
 * w2: w1 alone), wk, wo and w3 recomputed. The SDPA saved is
 * _scaled_dot_product_flash_attention: its output (b, a, s, d) in the
 * activation dtype and its logsumexp (b, a, s) in fp32 (the philox seed and
 * offset, two scalars, left out). Nothing else: the norms (RMSNorm's fp32
 * copy), RoPE, repeat_kv, SiLU and the residual adds are made again. This
 * list holds for one TP rank without tensor or context parallelism (tp 1,
 * cp 1): with TP the row-parallel mms give partial sums and the
 * reduce-scatters are saved, under CP the ring runs the SDPA op per step —
 * those keep Megatron's accounting.
 *
 * Float8 (the benchmarks' torchao eab345c, torchao/float8/float8_linear.py:
 * Float8Linear with tensorwise dynamic scaling, torchtitan's float8.py
 * converting every Linear but the output head; all the float8 rows run
 * torch.compile, per block after AC wrapping, apply_compile): the forward
 * casts each linear's input and weight with hp_tensor_to_float8_dynamic,
 * whose scale comes from float8_utils.py tensor_to_amax,
 * torch.max(torch.abs(x)) — aten.abs (a full-size output) then aten.max (a
 * 0-dim one), both in _save_list — and multiplies with
 * manual_float8_matmul_with_args_in_float8, whose torch.mm on the two
 * Float8Tensors the SAC dispatch mode sees as aten.mm.default (modes run
 * before the subclass's __torch_dispatch__, which calls _scaled_mm): the mm
 * count, and so which outputs are kept (the bf16 _scaled_mm results of wq,
 * wv, w1, w2), are the bf16 block's. Under compile
 * (torch/utils/checkpoint.py _CachingTorchDispatchMode) the policy only tags
 * the traced nodes (node.meta["recompute"]), and AOTAutograd's min-cut
 * partitioner (torch/_functorch/partitioners.py: must_recompute covers
 * PREFER_RECOMPUTE) saves a MUST_SAVE node only when the backward needs it:
 * the backward needs the fp8 input and weight, remade from the recomputed
 * bf16 tensors and the saved amaxes, never abs's output (tensor_to_amax is
 * no_grad; the cast is x·scale). So a float8 block keeps the bf16 block's
 * tensors plus the amaxes: one per Float8Linear input and one per weight
 * (without FSDP float8 all-gather, 9dec370's default: the weight's amax is
 * computed inside the block), 2 · 7 bf16 scalars for a gated block. This is
 * torchtitan PR #820's finding (Feb 2025, which dropped aten.abs from the
 * list): with tensorwise scaling the saved abs costs nothing under compile,
 * with rowwise (torch.amax, not in the list) abs(W3) was saved. Eager, the
 * dispatch mode would cache every abs output too: not modelled (the plan's
 * compile changes the time only; torchtitan's float8.py says float8 is
 * meant to run compiled, and every published float8 row is). */
static gboolean titan_op_sac(const PxPlan *plan) {
  return plan->stack == PX_STACK_TORCHTITAN && plan->ckpt == PX_CKPT_SELECTIVE && plan->tp <= 1 &&
         plan->cp <= 1;
}

static void titan_op_sac_block(Ctx *c, const PxModelDesc *d, const PxPlan *plan, double q, double kv, double f) {
  gboolean gated = px_ffn_gated(d->ffn_kind);
  if (plan->precision == PX_PREC_FP8) {
    /* wq, wk, wv, wo and the MLP's linears (w1, w3, w2 or w1, w2): the
     * input's and the weight's max(abs), 0-dim tensors of the input dtype */
    int linears = 4 + (f > 0 ? (gated ? 3 : 2) : 0);
    add(c, PX_ACT_AMAX, "amax", "float8 casts' max(abs) (input and weight of each linear)", PX_ACT_KEPT,
        2.0 * linears, 0, c->e);
  }
  rep(c, PX_ACT_IN, "in", "checkpoint (block input)", PX_ACT_KEPT, d->hidden, c->e);
  add(c, PX_ACT_QKV, "q_v", "wq and wv mm outputs (mm 1 and 3 of the block)", PX_ACT_KEPT, c->n, q + kv, c->e);
  add(c, PX_ACT_LSE, "lse", "flash attention (logsumexp)", PX_ACT_KEPT, c->b * d->heads, c->s, c->st);
  add(c, PX_ACT_ATTN_OUT, "attn_out", "flash attention (output)", PX_ACT_KEPT, c->n, d->heads * (double)d->head_dim,
      c->e);
  if (f > 0) {
    add(c, PX_ACT_FFN_PRE, "fc", "w1 mm output (mm 5)", PX_ACT_KEPT, c->n, f, c->e);
    if (gated) rep(c, PX_ACT_FFN_OUT, "down_out", "w2 mm output (mm 7)", PX_ACT_KEPT, d->hidden, c->e);
  }
}

static void block(Ctx *c, const PxModel *model, const PxPlan *plan, gboolean exec, int first, int end, int li) {
  const PxModelDesc *d = &model->desc;
  double t = c->t, e = c->e;
  double q = (double)px_model_q_dim(d) / t, kv = (double)px_model_kv_dim(d) / t, f = d->ffn / t;
  /* a GEMM input saved for the backward: 1 byte under FP8 (Transformer
   * Engine's Linear / LayerNormLinear / LayerNormMLP save the casted input
   * for the wgrad GEMM), else the activation dtype */
  double eg = !exec && plan->precision == PX_PREC_FP8 ? 1.0 : e;
  /* an MoE block: its MLP here is the shared experts' (shared_experts ·
   * shared_ffn, maybe none); the routed experts' activations are moe.c's */
  gboolean moe = px_model_block_is_moe(d, model->layers[li].block);
  if (moe) f = (double)d->shared_experts * d->shared_ffn / t;
  gboolean full = plan->ckpt == PX_CKPT_FULL;
  gboolean paper_dropout = !exec && d->dropout;
  if (!exec && !moe && !c->split && titan_op_sac(plan)) {
    titan_op_sac_block(c, d, plan, q, kv, f);
    return;
  }
  /* full recompute keeps the input of each checkpoint segment's first block */
  PxActLife in_life = PX_ACT_KEPT, inner = full ? PX_ACT_RECOMPUTED : PX_ACT_KEPT;
  if (full) {
    int s0, s1;
    px_activations_segment(model, plan, first, end, li, &s0, &s1);
    if (li != s0) in_life = PX_ACT_SEGMENT;
  }
  /* attention */
  rep(c, PX_ACT_IN, "in", "norm1 (block input)", in_life, d->hidden, e);
  PxActEntry *ln1 = rep(c, PX_ACT_NORM1_OUT, "ln1", "qkv linear (norm1 output)", inner, d->hidden, eg);
  if (exec) norm_stats(c, d, PX_ACT_NORM1_MEAN, PX_ACT_NORM1_RSTD, "norm1", inner);
  add(c, PX_ACT_QKV, "qkv", "attention (Q, K for QK^T; V)", inner, c->n, q + 2 * kv, e);
  /* the s x s probabilities: unfused attention keeps them; selective recompute
   * drops them (recomputed in backward), and flash attention never makes them */
  double heads = d->heads / t, span = exec ? c->s : px_model_attn_span(d, (int)c->s);
  gboolean fused = px_cost_attention(plan) != PX_ATTN_UNFUSED, flash = !exec && fused;
  /* the executor's flash-style attention (its block op, over the CP ring
   * under context parallelism) keeps each query row's log-sum-exp and
   * recomputes the probabilities in backward (exec/gpt.c) */
  if (exec && fused) {
    add(c, PX_ACT_LSE, "lse", "attention (row log-sum-exp)", inner, c->b * heads, c->s, c->st);
  } else if (!flash) {
    PxActLife pl = plan->ckpt == PX_CKPT_NONE ? PX_ACT_KEPT : PX_ACT_RECOMPUTED;
    PxActEntry *p = add(c, PX_ACT_PROBS, "att", "attention over V (softmax output)", pl, c->b * heads * c->s, span, e);
    p->ndim = 4;
    p->shape[0] = (gint64)c->b;
    p->shape[1] = (gint64)llround(heads);
    p->shape[2] = (gint64)c->s;
    p->shape[3] = (gint64)llround(span);
    if (paper_dropout) {
      add(c, PX_ACT_PROBS_MASK, "att_mask", "attention dropout (mask)", pl, c->b * heads * c->s, span, 1);
      add(c, PX_ACT_PROBS_DROPPED, "att_drop", "attention over V (dropped-out probabilities)", pl,
          c->b * heads * c->s, span, e);
    }
  }
  PxActEntry *ao =
      add(c, PX_ACT_ATTN_OUT, "attn_out", "output projection (its input)", inner, c->n, d->heads * (double)d->head_dim / t, eg);
  if (paper_dropout) rep(c, PX_ACT_ATTN_MASK, "attn_mask", "attention output dropout (mask)", inner, d->hidden, 1);
  /* MLP: in a parallel block its norm reads the block input, held above */
  if (!d->parallel_attn) rep(c, PX_ACT_MID, "x2", "norm2 (residual after attention)", inner, d->hidden, e);
  PxActEntry *ln2 = rep(c, PX_ACT_NORM2_OUT, "ln2", "first MLP linear (norm2 output)", inner, d->hidden, eg);
  if (exec) norm_stats(c, d, PX_ACT_NORM2_MEAN, PX_ACT_NORM2_RSTD, "norm2", inner);
  gboolean gated = px_ffn_gated(d->ffn_kind);
  PxActEntry *act = NULL;
  if (f > 0) {
    /* squared ReLU, torch.pow(F.relu(x), 2): relu saves its output r for
     * threshold_backward(grad, result, 0), pow saves the same r for
     * pow_backward(grad, self, 2) (PyTorch tools/autograd/derivatives.yaml),
     * the fc output x is freed: one s·b·f tensor, as GELU's saved input */
    const char *pre = gated ? "gated activation (gate output)"
                      : d->ffn_kind == PX_FFN_RELU2 ? "squared ReLU (relu output, for both backwards)"
                                                     : "GELU (its input)";
    add(c, PX_ACT_FFN_PRE, "fc", pre, inner, c->n, f, e);
    act = add(c, PX_ACT_FFN_ACT, "act", "down projection (its input)", inner, c->n, f, eg);
    if (gated) add(c, PX_ACT_FFN_UP, "up", "gated activation (up output)", inner, c->n, f, e);
  }
  if (moe && exec) { /* the executor's dropless layer: its worst case, one tensor (moe.h) */
    PxMoeExecLayout ml;
    PxMoeTokens mt;
    px_moe_tokens(model, plan, &mt);
    px_moe_exec_layout(d, plan->ep, px_plan_etp(plan), (int)mt.gather, (gint64)llround(c->nl), &ml);
    add(c, PX_ACT_MOE, "moe", "routed experts (router, top-k, expert inputs and activations, outputs)", inner,
        (double)ml.total, 0, e);
  } else if (moe) {
    add(c, PX_ACT_MOE, "moe", "routed experts (router, permuted tokens, expert activations)", inner,
        px_moe_activation_bytes(model, plan), 0, 1);
  }
  if (paper_dropout) rep(c, PX_ACT_MLP_MASK, "mlp_mask", "MLP output dropout (mask)", inner, d->hidden, 1);
  if (!c->split) return;
  /* a split backward: each weight GEMM's (input, output gradient) for W (Qi
   * et al.'s WeightGradStore); under SP the input is the all-gathered copy
   * (total_input), made in B, and the s·b/t-row entry goes with B */
  if (f > 0) {
    act->w = TRUE;
    if (c->gather) add(c, PX_ACT_W_LN2, "ln2_gathered", "first MLP linear, weight pass (gathered input)", PX_ACT_W, c->n, d->hidden, eg);
    else ln2->w = TRUE;
    add(c, PX_ACT_D_DOWN, "d_down", "down projection, weight pass (output gradient)", PX_ACT_W, c->n, d->hidden, e);
    if (gated) add(c, PX_ACT_D_UP, "d_up", "up projection, weight pass (output gradient)", PX_ACT_W, c->n, f, e);
    add(c, PX_ACT_D_FC, "d_fc", gated ? "gate projection, weight pass (output gradient)" : "first MLP linear, weight pass (output gradient)",
        PX_ACT_W, c->n, f, e);
  }
  ao->w = TRUE;
  add(c, PX_ACT_D_PROJ, "d_proj", "output projection, weight pass (output gradient)", PX_ACT_W, c->n, d->hidden, e);
  if (c->gather) add(c, PX_ACT_W_LN1, "ln1_gathered", "qkv linear, weight pass (gathered input)", PX_ACT_W, c->n, d->hidden, eg);
  else ln1->w = TRUE;
  add(c, PX_ACT_D_QKV, "d_qkv", "qkv linear, weight pass (output gradient)", PX_ACT_W, c->n, q + 2 * kv, e);
}

gboolean px_act_role_is_stat(PxActRole role) {
  switch (role) {
  case PX_ACT_NORM1_MEAN:
  case PX_ACT_NORM1_RSTD:
  case PX_ACT_NORM2_MEAN:
  case PX_ACT_NORM2_RSTD:
  case PX_ACT_NORMF_MEAN:
  case PX_ACT_NORMF_RSTD:
  case PX_ACT_LSE:
  case PX_ACT_CE_MAX:
  case PX_ACT_CE_STATS: return TRUE;
  default: return FALSE;
  }
}

gboolean px_act_splits_backward(const PxPlan *plan) {
  return plan->schedule == PX_SCHED_ZB_H1 || plan->schedule == PX_SCHED_ZB_H2 || px_schedule_is_v(plan->schedule);
}

static void layer_list(const PxModel *model, const PxPlan *plan, const PxActOptions *opt, int first, int end, int li,
                       gboolean split, PxActList *out) {
  const PxModelDesc *d = &model->desc;
  gboolean exec = opt && opt->stack == PX_ACT_STACK_EXEC;
  Ctx c = {.out = out, .split = split, .gather = plan->seq_parallel && plan->tp > 1};
  out->n = 0;
  c.e = opt && opt->elem_bytes > 0 ? opt->elem_bytes : px_plan_act_bytes(plan);
  c.st = MAX(c.e, 4); /* norm statistics, lse, cross-entropy max and sums: fp32 at least (exec/backend.h) */
  c.s = plan->seq > 0 ? plan->seq : d->default_seq;
  if (exec && plan->seq <= 0) c.s = d->max_seq; /* what the executor runs */
  c.s /= MAX(plan->cp, 1);                      /* a CP rank's tokens (chunks i and 2cp-1-i) */
  c.b = plan->mbs;
  c.t = plan->tp;
  c.n = c.s * c.b;
  c.nl = plan->seq_parallel ? c.n / c.t : c.n;
  switch (model->layers[li].kind) {
  case PX_LAYER_EMBEDDING:
    if (exec) add(&c, PX_ACT_TOKENS, "tokens", "embedding lookup (token ids)", PX_ACT_CHUNK, c.n, 0, 4);
    else if (d->dropout) rep(&c, PX_ACT_EMBED_MASK, "embed_mask", "embedding dropout (mask)", PX_ACT_KEPT, d->hidden, 1);
    break;
  case PX_LAYER_FINAL_NORM:
    rep(&c, PX_ACT_IN, "in", "final norm (its input)", PX_ACT_KEPT, d->hidden, c.e);
    if (exec) norm_stats(&c, d, PX_ACT_NORMF_MEAN, PX_ACT_NORMF_RSTD, "final norm", PX_ACT_KEPT);
    break;
  case PX_LAYER_LM_HEAD: {
    double vl = ceil((double)d->vocab / c.t); /* the vocabulary padded to a multiple of t */
    PxActEntry *in = rep(&c, PX_ACT_IN, "ln_f", "LM head projection (final norm output)", PX_ACT_KEPT, d->hidden, c.e);
    /* the vocab-parallel cross-entropy keeps its logits (softmax) for backward:
     * fp32 in Megatron (4sbV/t), the run's dtype in the executor */
    add(&c, PX_ACT_LOGITS, "logits", "cross-entropy (logits)", PX_ACT_KEPT, c.n, vl, exec ? c.e : 4);
    if (exec) {
      add(&c, PX_ACT_TARGETS, "targets", "cross-entropy (target ids)", PX_ACT_CHUNK, c.n, 0, 4);
      if (c.t > 1) {
        add(&c, PX_ACT_CE_MAX, "ce_max", "vocab-parallel cross-entropy (row max)", PX_ACT_CHUNK, c.n, 0, c.st);
        add(&c, PX_ACT_CE_STATS, "ce_stats", "vocab-parallel cross-entropy (sum of exp, target logit)",
            PX_ACT_CHUNK, 2, c.n, c.st);
      }
    }
    /* the executor computes a tied head's gradient in B when its weight is
     * the embedding's, in another chunk of the same rank (pp 1, or the V's
     * rank 0, which holds the first and the last part) */
    gboolean other_chunk = exec && d->tied && first > 0 && (plan->pp == 1 || px_schedule_is_v(plan->schedule));
    if (split && !other_chunk) {
      if (c.gather)
        add(&c, PX_ACT_W_HEAD_IN, "ln_f_gathered", "LM head projection, weight pass (gathered input)", PX_ACT_W, c.n,
            d->hidden, c.e);
      else in->w = TRUE;
      add(&c, PX_ACT_D_LOGITS, "d_logits", "LM head projection, weight pass (output gradient)", PX_ACT_W, c.n, vl, c.e);
    }
    break;
  }
  case PX_LAYER_BLOCK: block(&c, model, plan, exec, first, end, li); break;
  }
}

void px_activations_layer(const PxModel *model, const PxPlan *plan, const PxActOptions *opt, int first, int end,
                          int li, PxActList *out) {
  layer_list(model, plan, opt, first, end, li, px_act_splits_backward(plan), out);
}

double px_act_w_bytes(const PxActList *list) {
  double sum = 0;
  for (int i = 0; i < list->n; i++)
    if (list->e[i].w || list->e[i].life == PX_ACT_W) sum += list->e[i].bytes;
  return sum;
}

double px_activations_w_bytes(const PxModel *model, const PxPlan *plan, const PxActOptions *opt, int first, int end) {
  double sum = 0;
  PxActList list;
  for (int li = first; li < end; li++) {
    layer_list(model, plan, opt, first, end, li, TRUE, &list);
    sum += px_act_w_bytes(&list);
  }
  return sum;
}

const PxActEntry *px_act_find(const PxActList *list, PxActRole role) {
  for (int i = 0; i < list->n; i++)
    if (list->e[i].role == role) return &list->e[i];
  return NULL;
}

double px_act_kept_bytes(const PxActList *list) {
  double sum = 0;
  for (int i = 0; i < list->n; i++)
    if (list->e[i].life == PX_ACT_KEPT || list->e[i].life == PX_ACT_CHUNK) sum += list->e[i].bytes;
  return sum;
}

const char *px_act_life_name(PxActLife life) {
  switch (life) {
  case PX_ACT_KEPT: return "kept";
  case PX_ACT_CHUNK: return "kept (chunk)";
  case PX_ACT_RECOMPUTED: return "recomputed";
  case PX_ACT_SEGMENT: return "segment";
  case PX_ACT_W: return "until W";
  }
  return "?";
}

/* ---- one micro-batch of a part, walked as the executor runs it ---------------------------- */

static double sum_life(const PxActList *l, int life_mask, gboolean with_in) {
  double s = 0;
  for (int i = 0; i < l->n; i++)
    if ((life_mask & (1 << l->e[i].life)) && (with_in || l->e[i].role != PX_ACT_IN)) s += l->e[i].bytes;
  return s;
}

static double role_bytes(const PxActList *l, PxActRole role) {
  const PxActEntry *x = px_act_find(l, role);
  return x ? x->bytes : 0;
}

static double in_bytes(const PxActList *l) { return role_bytes(l, PX_ACT_IN); }

#define ALL ((1 << PX_ACT_KEPT) | (1 << PX_ACT_CHUNK) | (1 << PX_ACT_RECOMPUTED) | (1 << PX_ACT_SEGMENT))

/* Forward then backward of one micro-batch (split: the backward-input pass
 * of a split backward), as exec/gpt.c runs them. A layer's input is held by
 * the layer before it (its output), freed with that layer's activations; the
 * part's own input lives until the part's backward ends, like the CHUNK
 * entries. Fills out's kept, fwd and, split, w and bwd_input, else bwd. */
static void walk(const PxModel *model, const PxPlan *plan, const PxActOptions *opt, int first, int end,
                 gboolean split, PxActProfile *out) {
  int n = end - first;
  g_autofree PxActList *L = g_new0(PxActList, n);
  for (int i = 0; i < n; i++) layer_list(model, plan, opt, first, end, first + i, split, &L[i]);
  gboolean full = plan->ckpt == PX_CKPT_FULL;
  /* the token and target ids are uploaded before the chunk's first layer runs */
  double cur = in_bytes(&L[0]), ids = 0;
  for (int i = 0; i < n; i++) ids += role_bytes(&L[i], PX_ACT_TOKENS) + role_bytes(&L[i], PX_ACT_TARGETS);
  cur += ids;
  double peak = cur;
  g_autofree gboolean *present = g_new0(gboolean, n); /* a layer's RECOMPUTED entries exist */
  for (int i = 0; i < n; i++) {
    cur += sum_life(&L[i], ALL, FALSE) - role_bytes(&L[i], PX_ACT_TOKENS) - role_bytes(&L[i], PX_ACT_TARGETS);
    if (i + 1 < n) cur += in_bytes(&L[i + 1]); /* its output: the next layer's input */
    peak = MAX(peak, cur);
    cur -= sum_life(&L[i], 1 << PX_ACT_RECOMPUTED, FALSE);
    int li = first + i, s0, s1;
    if (full && model->layers[li].kind == PX_LAYER_BLOCK) {
      px_activations_segment(model, plan, first, end, li, &s0, &s1);
      if (li == s1 - 1) /* the segment is done: its inner inputs go */
        for (int j = s0 + 1; j < s1; j++) cur -= sum_life(&L[j - first], 1 << PX_ACT_SEGMENT, TRUE);
    }
  }
  out->kept = cur;
  out->fwd = peak;
  double start = cur;
  peak = cur;
  for (int i = n - 1; i >= 0; i--) {
    int li = first + i;
    const PxLayer *layer = &model->layers[li];
    if (layer->kind == PX_LAYER_EMBEDDING) break; /* the rest goes with the part */
    double made = 0;
    if (full && layer->kind == PX_LAYER_BLOCK) {
      /* the segment up to li made again from its input, once */
      int s0, s1;
      px_activations_segment(model, plan, first, end, li, &s0, &s1);
      for (int j = s0; j <= li; j++) {
        if (present[j - first]) continue;
        present[j - first] = TRUE;
        made += sum_life(&L[j - first], 1 << PX_ACT_RECOMPUTED, FALSE);
        if (j < li) made += sum_life(&L[j + 1 - first], 1 << PX_ACT_SEGMENT, TRUE);
      }
    } else {
      /* selective: the dropped entries made again for this layer's backward */
      made = sum_life(&L[i], 1 << PX_ACT_RECOMPUTED, FALSE);
    }
    /* split: the weight GEMMs' gradients (and gathered inputs) are held as
     * the layer's backward makes them, with what it made again */
    cur += made + sum_life(&L[i], 1 << PX_ACT_W, FALSE);
    peak = MAX(peak, cur);
    /* this layer's activations and its output (the next layer's input),
     * but for what the weight pass reads */
    for (int k = 0; k < L[i].n; k++) {
      const PxActEntry *x = &L[i].e[k];
      if (x->role != PX_ACT_IN && !x->w && (x->life == PX_ACT_KEPT || x->life == PX_ACT_RECOMPUTED)) cur -= x->bytes;
    }
    const PxActEntry *next = i + 1 < n ? px_act_find(&L[i + 1], PX_ACT_IN) : NULL;
    if (next && !next->w) cur -= next->bytes;
  }
  if (!split) {
    out->bwd = peak - start;
    return;
  }
  out->bwd_input = peak - start;
  out->w = 0;
  for (int i = 0; i < n; i++) out->w += px_act_w_bytes(&L[i]);
}

void px_activations_profile(const PxModel *model, const PxPlan *plan, const PxActOptions *opt, int first, int end,
                            PxActProfile *out) {
  *out = (PxActProfile){0};
  walk(model, plan, opt, first, end, FALSE, out); /* a full backward (DualPipeV runs both kinds) */
  out->peak = MAX(out->fwd, out->kept + out->bwd);
  if (px_act_splits_backward(plan)) {
    walk(model, plan, opt, first, end, TRUE, out);
    out->peak = MAX(out->peak, out->kept + out->bwd_input);
  }
}
