/* gpt.c — the model on a backend: parameters of a rank's chunks, forward and
 * backward of one chunk for one micro-batch, Megatron tensor parallelism,
 * activation checkpointing (none, selective, full with an interval) and the
 * zero-bubble split of backward into input and weight halves. See gpt.h. */
#include "gpt.h"
#include "check.h"
#include "flat.h"
#include "activations.h"
#include "moe.h"
#include "moe_layer.h"
#include <math.h>
#include <string.h>

G_DEFINE_QUARK(px-gpt-error-quark, px_gpt_error)

#define TRY(x)                                                                                     \
  do {                                                                                             \
    if (!(x)) return FALSE;                                                                        \
  } while (0)
#define TRYN(x)                                                                                    \
  do {                                                                                             \
    if (!(x)) return NULL;                                                                         \
  } while (0)

struct _PxGpt {
  const PxModel *model;
  PxPlan plan;
  PxGptRank r;
  int tp, B, T, N;            /* T: tokens per sequence on this rank (seq / cp) */
  int cp;                     /* context-parallel degree (1: none) */
  gboolean sp;                /* sequence parallel: norm / residual rows split over TP */
  int Nl;                     /* rows of the residual stream on this rank: N / tp with sp, else N */
  int h, hd, heads_l, kv_l, ffn_l, qkv_l;
  int vocab_l;                /* vocabulary rows per TP rank: ceil(V / tp) (Megatron pads) */
  int vocab_real;             /* of which real on this rank; the rest are zero padding */
  int n_chunks;
  PxGptChunk *chunks;
  gboolean holds_embedding;
  int emb_chunk, emb_param;   /* wte of the embedding, if held */
  /* the activation tensors each layer of each chunk keeps: the core's list
   * (common/activations.h), allocated entry by entry, never re-derived here */
  PxActList **acts;           /* (n_chunks) x (end - first) */
  PxActEntry io;              /* a block's input entry: the shape of what chunks send and receive */
  double aux_sum;             /* MoE load-balancing losses since px_gpt_take_aux_loss */
  double dloss;               /* the backward in progress: its seed (the MoE aux loss's gradient) */
  PxGptLayerDone layer_done;  /* the per-layer hook of the backward (px_gpt_set_layer_hook), NULL */
  void *layer_done_data;
  PxGptLayerBefore layer_before; /* the per-layer hook before a layer runs (px_gpt_set_layer_before), NULL */
  void *layer_before_data;
};

/* Slots of one layer's stash: one per role of the core's activation list,
 * and the layer's output (the next layer's PX_ACT_IN entry; a chunk's last
 * output is the p2p message, a buffer). The layer's input is not owned. */
enum {
  A_LN1 = PX_ACT_NORM1_OUT, A_QKV = PX_ACT_QKV, A_ATT = PX_ACT_PROBS, A_AO = PX_ACT_ATTN_OUT, A_X2 = PX_ACT_MID,
  A_LN2 = PX_ACT_NORM2_OUT, A_FC = PX_ACT_FFN_PRE, A_UP = PX_ACT_FFN_UP, A_ACT = PX_ACT_FFN_ACT,
  A_LOGITS = PX_ACT_LOGITS, A_OUT = PX_ACT_N_ROLES, A_N
};

typedef struct {
  PxTensor *s[A_N];
} LayerActs;

typedef struct {
  int chunk, w, b;  /* param indices (b may be -1) */
  PxTensor *dy;     /* owned */
  PxTensor *x;      /* in the stash, or x_owned */
  PxTensor *x_owned;/* an all-gathered input (sequence parallel), owned */
} Deferred;

struct _PxGptActs {
  PxGpt *gpt;
  int chunk;
  PxTensor *input;         /* received input (owned), NULL on the first part */
  PxTensor *tok_t, *tgt_t; /* device copies */
  LayerActs *layers;       /* (end - first) */
  PxTensor *ce_max;        /* vocab-parallel cross-entropy: global row max (N) */
  PxTensor *ce_stats;      /* and the summed (sum of exp, target logit) (2, N) */
  GArray *deferred;        /* Deferred, zb-h1 */
};

/* ---- construction ---------------------------------------------------------- */

#define fail(error, code, ...) px_fail((error), PX_GPT_ERROR, (code), __VA_ARGS__)

static gboolean is_qkv(const PxTensorSpec *s) { return s->role == PX_ROLE_QKV || s->role == PX_ROLE_QKV_BIAS; }

static gboolean check_plan(const PxModel *model, const PxPlan *plan, const PxGptRank *rank, GError **error) {
  const PxModelDesc *d = &model->desc;
  int t = plan->tp;
  int T = plan->seq > 0 ? plan->seq : d->max_seq;
  if (plan->seq_parallel && t > 1 && (plan->mbs * T) % t)
    return fail(error, PX_GPT_ERROR_INVALID, "sequence parallelism needs tp=%d to divide the %d tokens of a micro-batch",
                t, plan->mbs * T);
  if (d->heads % t || d->kv_heads % t || d->ffn % t || d->hidden % t)
    return fail(error, PX_GPT_ERROR_INVALID,
                "tp=%d must divide heads %d, kv heads %d, ffn %d and hidden %d", t, d->heads,
                d->kv_heads, d->ffn, d->hidden);
  int cp = MAX(plan->cp, 1);
  if (cp > 1 && T % (2 * cp))
    return fail(error, PX_GPT_ERROR_INVALID,
                "context parallelism cuts the sequence into 2·cp = %d chunks: %d tokens are not divisible by %d",
                2 * cp, T, 2 * cp);
  if (cp > 1 && !rank->cp)
    return fail(error, PX_GPT_ERROR_INVALID, "context parallelism (cp=%d) needs a CP communicator", cp);
  if (d->pos == PX_POS_ROPE && (d->hidden / d->heads) % 2)
    return fail(error, PX_GPT_ERROR_INVALID, "rotary embedding needs an even head size");
  if (d->experts > 0) {
    int etp = px_plan_etp(plan);
    if (d->expert_ffn % etp)
      return fail(error, PX_GPT_ERROR_INVALID, "etp=%d does not divide the expert FFN size %d", etp, d->expert_ffn);
    if (t > 1 && !plan->seq_parallel && (etp != t || plan->ep > 1))
      return fail(error, PX_GPT_ERROR_UNSUPPORTED,
                  "an MoE model with tp=%d, ep=%d, etp=%d needs sequence parallelism (--sp): each TP rank routes its "
                  "own tokens", t, plan->ep, etp);
    if (d->experts % MAX(plan->ep, 1))
      return fail(error, PX_GPT_ERROR_INVALID, "ep=%d does not divide the %d experts", plan->ep, d->experts);
  } else if (plan->ep > 1) {
    return fail(error, PX_GPT_ERROR_INVALID, "ep=%d needs a mixture-of-experts model", plan->ep);
  }
  return TRUE;
}

PxGpt *px_gpt_new(const PxModel *model, const PxPlan *plan, const PxPartition *part,
                  const PxGptRank *rank, GError **error) {
  if (!check_plan(model, plan, rank, error)) return NULL;
  if (rank->dtype == PX_DTYPE_I32) {
    fail(error, PX_GPT_ERROR_UNSUPPORTED, "the model runs in f32, f64, bf16 or f16, not %s", px_dtype_name(rank->dtype));
    return NULL;
  }
  PxGpt *g = g_new0(PxGpt, 1);
  const PxModelDesc *d = &model->desc;
  g->model = model;
  px_plan_copy(&g->plan, plan);
  g->r = *rank;
  g->tp = plan->tp;
  g->B = plan->mbs;
  g->cp = MAX(plan->cp, 1);
  g->T = (plan->seq > 0 ? plan->seq : d->max_seq) / g->cp;
  g->N = g->B * g->T;
  g->sp = plan->seq_parallel && plan->tp > 1;
  g->Nl = g->sp ? g->N / plan->tp : g->N;
  g->h = d->hidden;
  g->hd = d->head_dim; /* the model's (px_model_new fills hidden / heads when not given) */
  g->heads_l = d->heads / g->tp;
  g->kv_l = d->kv_heads / g->tp;
  g->ffn_l = d->ffn / g->tp;
  g->vocab_l = (d->vocab + g->tp - 1) / g->tp;
  g->vocab_real = CLAMP(d->vocab - rank->tp_rank * g->vocab_l, 0, g->vocab_l);
  g->qkv_l = (g->heads_l + 2 * g->kv_l) * g->hd;
  g->n_chunks = part->vpp;
  g->chunks = g_new0(PxGptChunk, g->n_chunks);
  g->emb_chunk = g->emb_param = -1;
  for (int c = 0; c < g->n_chunks; c++)
    if (part->bounds[px_partition_part_of(part, rank->stage, c)] == 0) g->holds_embedding = TRUE;
  for (int c = 0; c < g->n_chunks; c++) {
    PxGptChunk *ch = &g->chunks[c];
    ch->chunk = c;
    ch->part = px_partition_part_of(part, rank->stage, c);
    ch->first = part->bounds[ch->part];
    ch->end = part->bounds[ch->part + 1];
    /* the core's flat layout (common/flat.h), the one the ZeRO-3 walk counts */
    g_autoptr(PxFlatChunk) fl = px_flat_chunk_new(model, plan, ch->first, ch->end, g->holds_embedding);
    ch->layer_param = g_memdup2(fl->layer_first, sizeof(int) * (gsize)(ch->end - ch->first + 1));
    ch->n_params = fl->n;
    ch->params = g_new0(PxGptParam, fl->n);
    for (guint i = 0; i < fl->n; i++) {
      const PxFlatTensor *t = &fl->t[i];
      PxGptParam *p = &ch->params[i];
      p->spec = t->spec;
      p->layer = t->layer;
      p->tied_copy = t->tied_copy;
      p->replicated = t->spec->split == PX_SPLIT_NONE;
      p->expert = t->expert;
      p->ndim = t->ndim;
      p->shape[0] = t->shape[0];
      p->shape[1] = t->shape[1];
      p->numel = t->numel;
      p->offset = t->offset;
    }
    ch->numel = fl->numel;
    if (ch->first == 0) {
      g->emb_chunk = c;
      g->emb_param = 0; /* wte is the embedding's first tensor */
    }
  }
  PxActOptions ao = {PX_ACT_STACK_EXEC, (int)px_dtype_size(rank->dtype)};
  g->acts = g_new0(PxActList *, g->n_chunks);
  for (int c = 0; c < g->n_chunks; c++) {
    PxGptChunk *ch = &g->chunks[c];
    g->acts[c] = g_new0(PxActList, ch->end - ch->first);
    for (int li = ch->first; li < ch->end; li++)
      px_activations_layer(model, &g->plan, &ao, ch->first, ch->end, li, &g->acts[c][li - ch->first]);
  }
  PxActList io;
  px_activations_layer(model, &g->plan, &ao, 1, 2, 1, &io); /* layer 1: the first block */
  g->io = *px_act_find(&io, PX_ACT_IN);
  return g;
}

void px_gpt_free(PxGpt *g) {
  if (!g) return;
  for (int c = 0; c < g->n_chunks; c++) {
    PxGptChunk *ch = &g->chunks[c];
    for (guint i = 0; i < ch->n_params; i++) {
      px_tensor_free(ch->params[i].w);
      px_tensor_free(ch->params[i].g);
    }
    g_free(ch->params);
    g_free(ch->layer_param);
    if (g->acts) g_free(g->acts[c]);
  }
  g_free(g->acts);
  g_free(g->chunks);
  px_plan_clear(&g->plan);
  g_free(g);
}

int px_gpt_n_chunks(const PxGpt *g) { return g->n_chunks; }
const PxGptChunk *px_gpt_chunk(const PxGpt *g, int c) { return &g->chunks[c]; }

void px_gpt_io_shape(const PxGpt *g, gint64 shape[2]) {
  shape[0] = g->io.shape[0];
  shape[1] = g->io.shape[1];
}

gboolean px_gpt_find_param(const PxGpt *g, const char *name, gboolean tied_copy, int *chunk, int *param) {
  for (int c = 0; c < g->n_chunks; c++)
    for (guint i = 0; i < g->chunks[c].n_params; i++) {
      const PxGptParam *p = &g->chunks[c].params[i];
      if (p->tied_copy == tied_copy && !strcmp(p->spec->name, name)) {
        if (chunk) *chunk = c;
        if (param) *param = (int)i;
        return TRUE;
      }
    }
  return FALSE;
}

gboolean px_gpt_param_tp_partial(const PxGpt *g, const PxGptParam *p) {
  /* the norms and the MoE router see only the rank's N/t rows */
  return g->sp && (px_role_is_norm(p->spec->role) || p->spec->role == PX_ROLE_ROUTER);
}

double px_gpt_take_aux_loss(PxGpt *g) {
  double a = g->aux_sum;
  g->aux_sum = 0;
  return a;
}

gboolean px_gpt_chunk_bind(PxGpt *g, int chunk, PxTensor *flat_w, PxTensor *flat_g, GError **error) {
  return px_gpt_chunk_bind_at(g, chunk, flat_w, flat_g, NULL, error);
}

gboolean px_gpt_chunk_bind_at(PxGpt *g, int chunk, PxTensor *flat_w, PxTensor *flat_g, const gint64 *offsets,
                              GError **error) {
  PxGptChunk *ch = &g->chunks[chunk];
  for (guint i = 0; i < ch->n_params; i++) {
    PxGptParam *p = &ch->params[i];
    gint64 at = offsets ? offsets[i] : p->offset;
    g_clear_pointer(&p->w, px_tensor_free);
    g_clear_pointer(&p->g, px_tensor_free);
    g_autofree char *gname = g_strconcat(p->spec->name, ".grad", NULL);
    if (flat_w && !(p->w = px_tensor_view(flat_w, p->spec->name, at, p->ndim, p->shape, error)))
      return FALSE;
    if (flat_g && !(p->g = px_tensor_view(flat_g, gname, at, p->ndim, p->shape, error)))
      return FALSE;
  }
  return TRUE;
}

/* ---- deterministic initial values ------------------------------------------ */

/* The full tensor of spec, seeded by (seed, name). */
static double *full_init(const PxGpt *g, const PxTensorSpec *spec, guint64 seed) {
  gint64 n = spec->shape[0] * spec->shape[1];
  double *v = g_new0(double, n);
  const char *nm = spec->name;
  if (spec->ndim == 1) {
    /* norm weights start at 1, their biases and every other bias at 0 */
    gboolean norm_weight = spec->role == PX_ROLE_NORM1 || spec->role == PX_ROLE_NORM2 || spec->role == PX_ROLE_FINAL_NORM;
    for (gint64 i = 0; i < n; i++) v[i] = norm_weight ? 1.0 : 0.0;
    return v;
  }
  double std = 0.02;
  if (px_role_is_residual_out(spec->role))
    std = 0.02 / sqrt(2.0 * g->model->desc.layers);
  guint32 seeds[3] = {(guint32)seed, (guint32)(seed >> 32), g_str_hash(nm)};
  GRand *rng = g_rand_new_with_seed_array(seeds, 3);
  for (gint64 i = 0; i < n; i += 2) {
    double u1 = g_rand_double(rng), u2 = g_rand_double(rng);
    double r = sqrt(-2.0 * log(1.0 - u1)), th = 2 * G_PI * u2;
    v[i] = std * r * cos(th);
    if (i + 1 < n) v[i + 1] = std * r * sin(th);
  }
  g_rand_free(rng);
  return v;
}

/* Global row of local row lr of a ROWS-split tensor on this TP rank. */
static gint64 global_row(const PxGpt *g, const PxGptParam *p, gint64 lr) {
  int r = g->r.tp_rank;
  if (is_qkv(p->spec)) {
    gint64 q = (gint64)g->heads_l * g->hd, k = (gint64)g->kv_l * g->hd;
    gint64 H = (gint64)g->model->desc.heads * g->hd, KV = (gint64)g->model->desc.kv_heads * g->hd;
    if (lr < q) return r * q + lr;
    lr -= q;
    if (lr < k) return H + r * k + lr;
    return H + KV + r * k + (lr - k);
  }
  return r * p->shape[0] + lr;
}

void px_gpt_param_shard(const PxGpt *g, const PxGptParam *p, const double *full, double *shard) {
  gint64 cols_full = p->spec->ndim == 2 ? p->spec->shape[1] : 1;
  if (p->expert) { /* this EP rank's experts, each its ETP rank's slice (rows of gate / up, columns of down) */
    int etp = px_plan_etp(&g->plan), er = g->r.etp_rank;
    gint64 E = p->spec->experts, loc = E / MAX(g->plan.ep, 1), e0 = (gint64)g->r.ep_rank * loc;
    gint64 out = p->spec->shape[0] / E, in = p->spec->shape[1]; /* one expert's (out, in) */
    for (gint64 j = 0; j < loc; j++) {
      const double *src = full + (e0 + j) * out * in;
      if (p->spec->split == PX_SPLIT_ROWS) {
        gint64 rl = out / etp;
        memcpy(shard + j * rl * in, src + er * rl * in, sizeof(double) * rl * in);
      } else {
        gint64 cl = in / etp;
        for (gint64 i = 0; i < out; i++) memcpy(shard + (j * out + i) * cl, src + i * in + er * cl, sizeof(double) * cl);
      }
    }
    return;
  }
  for (gint64 i = 0; i < p->shape[0]; i++) {
    gint64 gr = p->spec->split == PX_SPLIT_ROWS ? global_row(g, p, i) : i;
    gint64 c0 = p->spec->split == PX_SPLIT_COLS ? (gint64)g->r.tp_rank * p->shape[1] : 0;
    if (gr >= p->spec->shape[0]) /* vocabulary padding */
      memset(shard + i * p->shape[1], 0, sizeof(double) * p->shape[1]);
    else
      memcpy(shard + i * p->shape[1], full + gr * cols_full + c0, sizeof(double) * p->shape[1]);
  }
}

void px_gpt_chunk_init_values(const PxGpt *g, int chunk, guint64 seed, double *flat) {
  const PxGptChunk *ch = &g->chunks[chunk];
  for (guint i = 0; i < ch->n_params; i++) {
    const PxGptParam *p = &ch->params[i];
    g_autofree double *full = full_init(g, p->spec, seed);
    px_gpt_param_shard(g, p, full, flat + p->offset);
  }
}

/* ---- small helpers ----------------------------------------------------------- */

/* TP collectives run on the compute stream, in order with the ops around them. */
#define CS(g) px_backend_compute_stream((g)->r.be)

/* What statistics (norm mean / rstd, lse, per-token losses, the
 * cross-entropy's max and sums) are kept in: fp32 beside bf16 / fp16
 * activations (backend.h, "Half activations"), else the run's dtype. */
static PxDType stat_dtype(const PxGpt *g) { return px_dtype_is_half(g->r.dtype) ? PX_DTYPE_F32 : g->r.dtype; }

static PxTensor *new_stat(PxGpt *g, const char *name, gint64 rows, gint64 cols, GError **error) {
  gint64 shape[2] = {rows, cols};
  return px_tensor_new(g->r.be, name, stat_dtype(g), PX_MEM_BUFFERS, cols > 0 ? 2 : 1, shape, error);
}

/* An entry of the core's activation list, allocated as it says (ids int32). */
static PxTensor *alloc_entry(PxGpt *g, const PxActEntry *e, PxMemCategory cat, GError **error) {
  PxDType dt = e->role == PX_ACT_TOKENS || e->role == PX_ACT_TARGETS ? PX_DTYPE_I32
               : px_act_role_is_stat(e->role)                       ? stat_dtype(g)
                                                                    : g->r.dtype;
  return px_tensor_new(g->r.be, e->name, dt, cat, e->ndim, e->shape, error);
}

static const PxActList *layer_acts(const PxGpt *g, int chunk, int li) {
  return &g->acts[chunk][li - g->chunks[chunk].first];
}

static const PxActEntry *act_entry(const PxGpt *g, int chunk, int li, PxActRole role, GError **error) {
  const PxActEntry *e = px_act_find(layer_acts(g, chunk, li), role);
  if (!e) px_fail(error, PX_GPT_ERROR, PX_GPT_ERROR_INVALID, "layer %d keeps no activation of role %d", li, role);
  return e;
}

/* The activation of role saved by layer li (the core's list entry). */
static PxTensor *new_act(PxGpt *g, int chunk, int li, PxActRole role, GError **error) {
  const PxActEntry *e = act_entry(g, chunk, li, role, error);
  return e ? alloc_entry(g, e, PX_MEM_ACTIVATIONS, error) : NULL;
}

/* Layer li's output: the next layer's input entry, or past the chunk's end the
 * message to the next stage (a p2p buffer, as the planner counts it). */
static const PxActEntry *output_entry(const PxGpt *g, int chunk, int li, PxMemCategory *cat) {
  gboolean inside = li + 1 < g->chunks[chunk].end;
  *cat = inside ? PX_MEM_ACTIVATIONS : PX_MEM_BUFFERS;
  return inside ? px_act_find(layer_acts(g, chunk, li + 1), PX_ACT_IN) : &g->io;
}

static PxTensor *new_output(PxGpt *g, int chunk, int li, GError **error) {
  PxMemCategory cat;
  const PxActEntry *e = output_entry(g, chunk, li, &cat);
  if (!e) {
    px_fail(error, PX_GPT_ERROR, PX_GPT_ERROR_INVALID, "layer %d: the next layer keeps no input", li);
    return NULL;
  }
  return alloc_entry(g, e, cat, error);
}

/* Working memory that lives within one op (gradients in backward, the
 * projection before its residual): counted as buffers, so that the measured
 * activations are what a micro-batch keeps between forward and backward —
 * the quantity the planner predicts. new_tmp for what an op overwrites,
 * new_grad (zeroed) for what backward ops add into. */
static PxTensor *new_tmp(PxGpt *g, const char *name, gint64 rows, gint64 cols, GError **error) {
  gint64 shape[2] = {rows, cols};
  return px_tensor_new(g->r.be, name, g->r.dtype, PX_MEM_BUFFERS, cols > 0 ? 2 : 1, shape, error);
}

static PxTensor *new_grad(PxGpt *g, const char *name, gint64 rows, gint64 cols, GError **error) {
  gint64 shape[2] = {rows, cols};
  return px_tensor_new_zeroed(g->r.be, name, g->r.dtype, PX_MEM_BUFFERS, cols > 0 ? 2 : 1, shape, error);
}

static gboolean tp_all_reduce(PxGpt *g, PxTensor *t, GError **error) {
  if (g->tp == 1) return TRUE;
  return px_comm_all_reduce(g->r.tp, t->data, (gsize)t->numel, t->dtype, PX_RED_SUM, CS(g), error);
}

/* Sequence parallelism (Korthikanti et al. 2022, §4.2.2): the residual stream,
 * norms and their outputs hold N/t rows per TP rank (a contiguous block of the
 * B*T token rows; which tokens does not matter to token-wise ops). g is an
 * all-gather of the rows before a column-parallel linear, ḡ a reduce-scatter
 * after a row-parallel one, in place of the all-reduce. */

/* The full (N, c) rows of x: x itself without SP, else a gathered copy in *hold. */
static const PxTensor *full_rows(PxGpt *g, const PxTensor *x, PxTensor **hold, GError **error) {
  *hold = NULL;
  if (!g->sp) return x;
  gint64 shape[2] = {g->N, x->shape[x->ndim - 1]};
  *hold = px_tensor_new(g->r.be, "gathered", x->dtype, PX_MEM_BUFFERS, 2, shape, error);
  if (!*hold) return NULL;
  if (!px_comm_all_gather(g->r.tp, x->data, (*hold)->data, (gsize)x->numel, x->dtype, CS(g), error)) {
    g_clear_pointer(hold, px_tensor_free);
    return NULL;
  }
  return *hold;
}

/* An (N, c) tensor for partial sums over TP ranks: of category cat without SP
 * (it becomes the result), a temporary with SP. zeroed for backward ops,
 * which add into it. */
static PxTensor *new_partial(PxGpt *g, const char *name, gint64 cols, PxMemCategory cat, gboolean zeroed,
                             GError **error) {
  gint64 shape[2] = {g->N, cols};
  return (zeroed ? px_tensor_new_zeroed : px_tensor_new)(g->r.be, name, g->r.dtype, g->sp ? PX_MEM_BUFFERS : cat,
                                                         2, shape, error);
}

/* Reduce-scatter partial (N, c) into out (N/t, c); takes both, returns out. */
static PxTensor *scatter_rows(PxGpt *g, PxTensor *partial, PxTensor *out_, GError **error) {
  g_autoptr(PxTensor) full = partial;
  g_autoptr(PxTensor) out = out_;
  if (!out || !px_comm_reduce_scatter(g->r.tp, full->data, out->data, (gsize)out->numel, full->dtype, CS(g), error))
    return NULL;
  return g_steal_pointer(&out);
}

/* Sum partial (N, c) over the TP group: in place without SP (returned), else
 * reduce-scattered into a new (N/t, c) tensor of category cat (partial freed). */
static PxTensor *reduce_rows(PxGpt *g, PxTensor *partial, PxMemCategory cat, GError **error) {
  if (!g->sp) {
    if (!tp_all_reduce(g, partial, error)) {
      px_tensor_free(partial);
      return NULL;
    }
    return partial;
  }
  gint64 shape[2] = {g->Nl, partial->shape[1]};
  return scatter_rows(g, partial, px_tensor_new(g->r.be, partial->name, partial->dtype, cat, 2, shape, error), error);
}

/* The parameter of layer li with a role (the core's PxTensorSpec.role), or NULL. */
static PxGptParam *param(PxGpt *g, int chunk, int li, PxTensorRole role) {
  PxGptChunk *ch = &g->chunks[chunk];
  for (int i = ch->layer_param[li - ch->first]; i < ch->layer_param[li - ch->first + 1]; i++)
    if (ch->params[i].spec->role == role) return &ch->params[i];
  return NULL;
}

static int param_index(PxGpt *g, int chunk, const PxGptParam *p) {
  return p ? (int)(p - g->chunks[chunk].params) : -1;
}

static PxTensor *W(PxGptParam *p) { return p ? p->w : NULL; }
static PxTensor *G(PxGptParam *p) { return p ? p->g : NULL; }

static PxGptParam *lm_head_weight(PxGpt *g, int chunk, int li) {
  PxGptParam *p = param(g, chunk, li, PX_ROLE_LM_HEAD);
  if (!p) p = param(g, chunk, li, PX_ROLE_TOKEN_EMBED); /* the LM head layer's tied copy of wte */
  if (p) return p;
  return &g->chunks[g->emb_chunk].params[g->emb_param];
}

static void free_slots(LayerActs *la) {
  for (int k = 0; k < A_N; k++) g_clear_pointer(&la->s[k], px_tensor_free);
}

static gboolean norm_fwd(PxGpt *g, PxTensor *out, PxTensor *mean, PxTensor *rstd, const PxTensor *x,
                         PxGptParam *w, PxGptParam *b, GError **error) {
  if (g->model->desc.norm == PX_NORM_RMSNORM)
    return px_op_rmsnorm_fwd(g->r.be, out, rstd, x, w->w, g->model->desc.norm_eps, error);
  return px_op_layernorm_fwd(g->r.be, out, mean, rstd, x, w->w, W(b), g->model->desc.norm_eps, error);
}

static gboolean norm_bwd(PxGpt *g, PxTensor *dx, const PxTensor *dout, const PxTensor *x,
                         PxGptParam *w, PxGptParam *b, const PxTensor *mean, const PxTensor *rstd,
                         GError **error) {
  if (g->model->desc.norm == PX_NORM_RMSNORM)
    return px_op_rmsnorm_bwd(g->r.be, dx, w->g, dout, x, w->w, rstd, error);
  return px_op_layernorm_bwd(g->r.be, dx, w->g, G(b), dout, x, w->w, mean, rstd, error);
}

/* The norm's per-row statistics the list has (RMSNorm keeps no mean). */
static gboolean norm_stats(PxGpt *g, int chunk, int li, LayerActs *la, PxActRole mean, PxActRole rstd, GError **error) {
  const PxActList *l = layer_acts(g, chunk, li);
  if (px_act_find(l, mean) && !(la->s[mean] = new_act(g, chunk, li, mean, error))) return FALSE;
  return (la->s[rstd] = new_act(g, chunk, li, rstd, error)) != NULL;
}

/* y = x W^T (+ b on TP rank 0 only: the bias is added once, before the TP
 * sum) for a row-parallel linear; returns the summed (N/t or N, out) rows. */
static PxTensor *row_parallel_fwd(PxGpt *g, const PxTensor *x, PxGptParam *w, PxGptParam *b, GError **error) {
  PxTensor *y = new_partial(g, "row_parallel", w->shape[0], PX_MEM_BUFFERS, FALSE, error);
  if (!y) return NULL;
  if (!px_op_linear_fwd(g->r.be, y, x, w->w, g->r.tp_rank == 0 ? W(b) : NULL, error)) {
    px_tensor_free(y);
    return NULL;
  }
  return reduce_rows(g, y, PX_MEM_BUFFERS, error);
}

/* y = x_full W^T + b for a column-parallel linear, x gathered first with SP. */
static gboolean column_parallel_fwd(PxGpt *g, PxTensor *y, const PxTensor *x, PxGptParam *w, PxGptParam *b,
                                    GError **error) {
  g_autoptr(PxTensor) hold = NULL;
  const PxTensor *xf = full_rows(g, x, &hold, error);
  return xf && px_op_linear_fwd(g->r.be, y, xf, w->w, W(b), error);
}

/* ---- layers: forward --------------------------------------------------------- */

/* The attention shape of CP rank c's tokens: chunks c and 2cp-1-c of T/2
 * tokens each (Megatron's get_batch_on_this_cp_rank); plain positions without CP. */
static PxAttnShape attn_shape_of(const PxGpt *g, int c) {
  PxAttnShape s = {.B = g->B, .T = g->T, .heads = g->heads_l, .kv_heads = g->kv_l, .head_dim = g->hd};
  if (g->cp > 1) {
    int half = g->T / 2;
    s.pos_split = half;
    s.pos_start0 = c * half;
    s.pos_start1 = (2 * g->cp - 1 - c) * half;
  }
  return s;
}

static PxAttnShape attn_shape(const PxGpt *g) { return attn_shape_of(g, g->r.cp_rank); }

void px_gpt_local_tokens(const PxGpt *g, const gint32 *full, gint32 *local) {
  PxAttnShape s = attn_shape(g);
  int Tf = g->T * g->cp;
  for (int b = 0; b < g->B; b++)
    for (int t = 0; t < g->T; t++) local[(gint64)b * g->T + t] = full[(gint64)b * Tf + px_attn_pos(&s, t)];
}

/* ---- ring attention (context parallelism) -------------------------------------
 * Megatron / TransformerEngine's ring: at step k a rank holds the K/V of CP
 * rank (r - k) mod cp, sends them on to r + 1 while receiving the next from
 * r - 1 (one grouped send / recv), and merges its block's partial output by
 * the log-sum-exp. The whole qkv rows travel (the op reads the K and V
 * columns). In backward the K/V go around again with their dK/dV, which
 * start at the next rank, gather every other rank's contribution and take
 * one last hop home; the rank's own block adds into its dqkv directly. */

static gboolean ring_pass(PxGpt *g, PxTensor *const *send, int n_send, PxTensor *const *recv, int n_recv,
                          GError **error) {
  int next = (g->r.cp_rank + 1) % g->cp, prev = (g->r.cp_rank + g->cp - 1) % g->cp;
  px_comm_group_start(g->r.cp);
  gboolean ok = TRUE;
  for (int i = 0; ok && i < n_send; i++)
    ok = px_comm_send(g->r.cp, send[i]->data, (gsize)send[i]->numel, send[i]->dtype, next, CS(g), error);
  for (int i = 0; ok && i < n_recv; i++)
    ok = px_comm_recv(g->r.cp, recv[i]->data, (gsize)recv[i]->numel, recv[i]->dtype, prev, CS(g), error);
  /* end the group even after a failure, so that the communicator stays usable */
  gboolean ended = px_comm_group_end(g->r.cp, CS(g), ok ? error : NULL);
  return ok && ended;
}

/* Half activations: every block's partial output (rounded once to the half
 * dtype by its kernel) is merged into an fp32 accumulator by the fp32 lse, and
 * the merged output rounded to the half dtype once, after the last merge,
 * rather than at each of the cp - 1 merges (backend.h, attn_merge's f32 out;
 * flash attention's split-KV combine, combine_attn_seqk_parallel in
 * csrc/flash_attn/src/flash_fwd_kernel.h, likewise sums its partial outputs in
 * fp32 and converts once; Transformer Engine's AttnFuncWithCPAndKVP2P,
 * pytorch/attention/dot_product_attention/context_parallel.py, rescales each
 * step's output by exp(softmax_lse_per_step - softmax_lse),
 * flash_attn_fwd_out_correction, attn_merge's correction: in its FP8 path
 * into an fp32 out ("fwd output correction: out in torch.float32") cast once,
 * out.to(fwd_nominal_dtype); in bf16 / fp16 into an out of q's dtype, rounding
 * at each add as this ring used to). The accumulator, B·T × heads·head_dim
 * floats, is a PX_MEM_BUFFERS transient of the forward; common/memory.c counts
 * it (cp_out_acc). f32 / f64 runs merge into out itself, as before. */
static gboolean ring_attention_fwd(PxGpt *g, PxTensor *out, PxTensor *lse, const PxTensor *qkv, GError **error) {
  PxBackend *be = g->r.be;
  PxAttnShape qs = attn_shape(g);
  TRY(px_op_attn_block_fwd(be, out, lse, qkv, qkv, &qs, &qs, error));
  if (g->cp == 1) return TRUE;
  gint64 C = (gint64)g->heads_l * g->hd;
  g_autoptr(PxTensor) buf0 = new_tmp(g, "kv_ring", g->N, g->qkv_l, error);
  g_autoptr(PxTensor) buf1 = new_tmp(g, "kv_ring", g->N, g->qkv_l, error);
  g_autoptr(PxTensor) out_b = new_tmp(g, "attn_block_out", g->N, C, error);
  g_autoptr(PxTensor) lse_b = new_stat(g, "attn_block_lse", (gint64)g->B * g->heads_l, g->T, error);
  TRY(buf0 && buf1 && out_b && lse_b);
  g_autoptr(PxTensor) acc = NULL; /* the fp32 accumulator of a half run (new_stat: f32 beside half) */
  if (px_dtype_is_half(g->r.dtype))
    TRY((acc = new_stat(g, "attn_out_acc", g->N, C, error)) && px_op_cast(be, acc, out, FALSE, error)); /* exact */
  PxTensor *merged = acc ? acc : out;
  const PxTensor *cur = qkv;
  PxTensor *bufs[2] = {buf0, buf1};
  for (int k = 1; k < g->cp; k++) {
    PxTensor *nxt = bufs[k % 2];
    TRY(ring_pass(g, (PxTensor *const[]){(PxTensor *)cur}, 1, &nxt, 1, error));
    PxAttnShape ks = attn_shape_of(g, (g->r.cp_rank - k + g->cp) % g->cp);
    TRY(px_op_attn_block_fwd(be, out_b, lse_b, qkv, nxt, &qs, &ks, error));
    TRY(px_op_attn_merge(be, merged, lse, out_b, lse_b, &qs, error));
    cur = nxt;
  }
  return !acc || px_op_cast(be, out, acc, FALSE, error); /* the one rounding to the half dtype */
}

static gboolean ring_attention_bwd(PxGpt *g, PxTensor *dqkv, const PxTensor *dout, const PxTensor *qkv,
                                   const PxTensor *out, const PxTensor *lse, GError **error) {
  PxBackend *be = g->r.be;
  PxAttnShape qs = attn_shape(g);
  TRY(px_op_attn_block_bwd(be, dqkv, dqkv, dout, qkv, qkv, out, lse, &qs, &qs, error));
  if (g->cp == 1) return TRUE;
  PxTensor *kv[2] = {new_tmp(g, "kv_ring", g->N, g->qkv_l, error), new_tmp(g, "kv_ring", g->N, g->qkv_l, error)};
  PxTensor *dkv[2] = {new_tmp(g, "dkv_ring", g->N, g->qkv_l, error), new_tmp(g, "dkv_ring", g->N, g->qkv_l, error)};
  gboolean ok = kv[0] && kv[1] && dkv[0] && dkv[1];
  const PxTensor *cur = qkv;
  PxTensor *dcur = NULL;
  for (int k = 1; ok && k < g->cp; k++) {
    PxTensor *nxt = kv[k % 2], *dnxt = dkv[k % 2];
    PxTensor *send[2] = {(PxTensor *)cur, dcur}, *recv[2] = {nxt, dnxt};
    /* the dK/dV of a block start at the rank after its owner */
    ok = ring_pass(g, send, dcur ? 2 : 1, recv, k > 1 ? 2 : 1, error) && (k > 1 || px_tensor_zero(dnxt, error));
    PxAttnShape ks = attn_shape_of(g, (g->r.cp_rank - k + g->cp) % g->cp);
    ok = ok && px_op_attn_block_bwd(be, dqkv, dnxt, dout, qkv, nxt, out, lse, &qs, &ks, error);
    cur = nxt;
    dcur = dnxt;
  }
  /* the last hop: every block's dK/dV to its owner */
  PxTensor *mine = dkv[g->cp % 2];
  ok = ok && ring_pass(g, &dcur, 1, &mine, 1, error) && px_op_residual_bwd(be, dqkv, NULL, mine, error);
  for (int i = 0; i < 2; i++) {
    px_tensor_free(kv[i]);
    px_tensor_free(dkv[i]);
  }
  return ok;
}

/* Learned positions under context parallelism: the rows of wpe at the
 * tokens' true positions (an embedding lookup of the position ids), added
 * into x (N, h); backward adds dout's rows into dwpe. */
static PxTensor *position_ids(PxGpt *g, GError **error) {
  PxAttnShape s = attn_shape(g);
  g_autofree gint32 *ids = g_new(gint32, g->N);
  for (int i = 0; i < g->N; i++) ids[i] = px_attn_pos(&s, i % g->T);
  gint64 n = g->N;
  g_autoptr(PxTensor) t = px_tensor_new(g->r.be, "position_ids", PX_DTYPE_I32, PX_MEM_BUFFERS, 1, &n, error);
  if (!t || !px_tensor_upload(t, ids, error)) return NULL;
  return g_steal_pointer(&t);
}

static gboolean add_positions(PxGpt *g, PxTensor *x, PxGptParam *wpe, GError **error) {
  g_autoptr(PxTensor) ids = position_ids(g, error);
  g_autoptr(PxTensor) rows = new_tmp(g, "position_rows", g->N, g->h, error);
  return ids && rows && px_op_embedding_fwd(g->r.be, rows, ids, wpe->w, NULL, g->B, g->T, error) &&
         px_op_residual_fwd(g->r.be, x, x, rows, error);
}

static gboolean positions_bwd(PxGpt *g, const PxTensor *dout, PxGptParam *wpe, GError **error) {
  g_autoptr(PxTensor) ids = position_ids(g, error);
  return ids && px_op_embedding_bwd(g->r.be, wpe->g, NULL, dout, ids, g->B, g->T, error);
}

/* Does layer li keep the attention's log-sum-exp (ring / flash attention)
 * rather than its probabilities? The core's list says. */
static gboolean keeps_lse(const PxGpt *g, int chunk, int li) {
  return px_act_find(layer_acts(g, chunk, li), PX_ACT_LSE) != NULL;
}

static PxTensor *mlp_fwd(PxGpt *g, int chunk, int li, LayerActs *la, GError **error);

/* ---- MoE blocks: the routed experts (exec/moe_layer.c) ---- */

static gboolean is_moe(const PxGpt *g, int li) {
  return px_model_block_is_moe(&g->model->desc, g->model->layers[li].block);
}

static PxMoeRun moe_run(PxGpt *g) {
  int etp = px_plan_etp(&g->plan);
  /* the ETP ranks hold different tokens unless tp > 1 without sequence parallelism (then etp = tp) */
  gboolean gather = !(g->tp > 1 && !g->sp);
  return (PxMoeRun){g->r.be, g->r.ep, MAX(g->plan.ep, 1), g->r.ep_rank, g->r.dtype, &g->model->desc, g->Nl,
                    g->sp ? g->r.tp : NULL, g->r.etp, etp, g->r.etp_rank, gather, g->cp > 1 ? g->r.cp : NULL};
}

static PxMoeWeight moe_weight(PxGpt *g, int chunk, int li, PxTensorRole role) {
  PxGptParam *p = param(g, chunk, li, role);
  return (PxMoeWeight){W(p), G(p)};
}

static PxMoeWeights moe_weights(PxGpt *g, int chunk, int li) {
  return (PxMoeWeights){moe_weight(g, chunk, li, PX_ROLE_ROUTER), moe_weight(g, chunk, li, PX_ROLE_EXPERT_GATE),
                        moe_weight(g, chunk, li, PX_ROLE_EXPERT_UP), moe_weight(g, chunk, li, PX_ROLE_EXPERT_IN),
                        moe_weight(g, chunk, li, PX_ROLE_EXPERT_OUT)};
}

/* y2 += the routed experts' output for the block's ln2 rows (y2 made when
 * the block has no shared experts). */
static gboolean moe_fwd(PxGpt *g, int chunk, int li, LayerActs *la, PxTensor **y2, GError **error) {
  TRY(la->s[PX_ACT_MOE] = new_act(g, chunk, li, PX_ACT_MOE, error));
  g_autoptr(PxTensor) yr = new_tmp(g, "moe_out", g->Nl, g->h, error);
  TRY(yr);
  PxMoeRun run = moe_run(g);
  PxMoeWeights w = moe_weights(g, chunk, li);
  double aux = 0;
  TRY(px_moe_layer_fwd(&run, &w, la->s[PX_ACT_MOE], la->s[A_LN2], yr, &aux, error));
  if (!g->sp || g->r.tp_rank == 0) g->aux_sum += aux;
  if (!*y2) {
    *y2 = g_steal_pointer(&yr);
    return TRUE;
  }
  return px_op_residual_fwd(g->r.be, *y2, *y2, yr, error);
}

static gboolean block_fwd(PxGpt *g, int chunk, int li, LayerActs *la, const PxTensor *x, GError **error) {
  const PxModelDesc *d = &g->model->desc;
  PxBackend *be = g->r.be;
  PxAttnShape as = attn_shape(g);
  free_slots(la);
  TRY(la->s[A_LN1] = new_act(g, chunk, li, PX_ACT_NORM1_OUT, error));
  TRY(norm_stats(g, chunk, li, la, PX_ACT_NORM1_MEAN, PX_ACT_NORM1_RSTD, error));
  TRY(norm_fwd(g, la->s[A_LN1], la->s[PX_ACT_NORM1_MEAN], la->s[PX_ACT_NORM1_RSTD], x, param(g, chunk, li, PX_ROLE_NORM1),
               param(g, chunk, li, PX_ROLE_NORM1_BIAS), error));
  TRY(la->s[A_QKV] = new_act(g, chunk, li, PX_ACT_QKV, error));
  TRY(column_parallel_fwd(g, la->s[A_QKV], la->s[A_LN1], param(g, chunk, li, PX_ROLE_QKV),
                          param(g, chunk, li, PX_ROLE_QKV_BIAS), error));
  if (d->pos == PX_POS_ROPE) TRY(px_op_rope_fwd(be, la->s[A_QKV], la->s[A_QKV], &as, g->model->desc.rope_theta, error));
  if (keeps_lse(g, chunk, li)) { /* flash-style: ring attention over the CP group */
    TRY(la->s[PX_ACT_LSE] = new_act(g, chunk, li, PX_ACT_LSE, error));
    TRY(la->s[A_AO] = new_act(g, chunk, li, PX_ACT_ATTN_OUT, error));
    TRY(ring_attention_fwd(g, la->s[A_AO], la->s[PX_ACT_LSE], la->s[A_QKV], error));
  } else {
    TRY(la->s[A_ATT] = new_act(g, chunk, li, PX_ACT_PROBS, error));
    TRY(la->s[A_AO] = new_act(g, chunk, li, PX_ACT_ATTN_OUT, error));
    TRY(px_op_attention_fwd(be, la->s[A_AO], la->s[A_ATT], la->s[A_QKV], &as, error));
  }
  g_autoptr(PxTensor) y1 = row_parallel_fwd(g, la->s[A_AO], param(g, chunk, li, PX_ROLE_ATTN_OUT),
                                            param(g, chunk, li, PX_ROLE_ATTN_OUT_BIAS), error);
  TRY(y1);
  TRY(la->s[A_X2] = new_act(g, chunk, li, PX_ACT_MID, error));
  TRY(px_op_residual_fwd(be, la->s[A_X2], x, y1, error));
  TRY(la->s[A_LN2] = new_act(g, chunk, li, PX_ACT_NORM2_OUT, error));
  TRY(norm_stats(g, chunk, li, la, PX_ACT_NORM2_MEAN, PX_ACT_NORM2_RSTD, error));
  TRY(norm_fwd(g, la->s[A_LN2], la->s[PX_ACT_NORM2_MEAN], la->s[PX_ACT_NORM2_RSTD], la->s[A_X2],
               param(g, chunk, li, PX_ROLE_NORM2), param(g, chunk, li, PX_ROLE_NORM2_BIAS), error));
  g_autoptr(PxTensor) y2 = NULL;
  if (!is_moe(g, li) || d->shared_experts > 0) TRY(y2 = mlp_fwd(g, chunk, li, la, error));
  if (is_moe(g, li)) TRY(moe_fwd(g, chunk, li, la, &y2, error));
  TRY(la->s[A_OUT] = new_output(g, chunk, li, error));
  return px_op_residual_fwd(be, la->s[A_OUT], la->s[A_X2], y2, error);
}

/* The block's MLP (an MoE block's shared experts): the row-parallel output,
 * before the residual. */
static PxTensor *mlp_fwd(PxGpt *g, int chunk, int li, LayerActs *la, GError **error) {
  const PxModelDesc *d = &g->model->desc;
  PxBackend *be = g->r.be;
  TRYN(la->s[A_FC] = new_act(g, chunk, li, PX_ACT_FFN_PRE, error));
  TRYN(la->s[A_ACT] = new_act(g, chunk, li, PX_ACT_FFN_ACT, error));
  gboolean swiglu = d->ffn_kind == PX_FFN_SWIGLU;
  if (swiglu) {
    TRYN(la->s[A_UP] = new_act(g, chunk, li, PX_ACT_FFN_UP, error));
    g_autoptr(PxTensor) hold = NULL;
    const PxTensor *xf = full_rows(g, la->s[A_LN2], &hold, error);
    TRYN(xf);
    TRYN(px_op_linear_fwd(be, la->s[A_FC], xf, param(g, chunk, li, PX_ROLE_FFN_GATE)->w,
                         W(param(g, chunk, li, PX_ROLE_FFN_GATE_BIAS)), error));
    TRYN(px_op_linear_fwd(be, la->s[A_UP], xf, param(g, chunk, li, PX_ROLE_FFN_UP)->w,
                         W(param(g, chunk, li, PX_ROLE_FFN_UP_BIAS)), error));
    TRYN(px_op_swiglu_fwd(be, la->s[A_ACT], la->s[A_FC], la->s[A_UP], error));
  } else {
    TRYN(column_parallel_fwd(g, la->s[A_FC], la->s[A_LN2], param(g, chunk, li, PX_ROLE_FFN_IN),
                            param(g, chunk, li, PX_ROLE_FFN_IN_BIAS), error));
    TRYN(px_op_gelu_fwd(be, la->s[A_ACT], la->s[A_FC], error));
  }
  return row_parallel_fwd(g, la->s[A_ACT], param(g, chunk, li, PX_ROLE_FFN_OUT),
                          param(g, chunk, li, PX_ROLE_FFN_OUT_BIAS), error);
}

/* Vocabulary-parallel embedding (Megatron): each TP rank looks up the tokens
 * of its vocabulary rows (others give zero rows) and the partial rows are
 * summed over the TP group; positions are added on TP rank 0 only. */
static gboolean embedding_fwd(PxGpt *g, int chunk, PxGptActs *a, LayerActs *la, GError **error) {
  PxGptParam *wte = param(g, chunk, 0, PX_ROLE_TOKEN_EMBED), *wpe = param(g, chunk, 0, PX_ROLE_POS_EMBED);
  PxMemCategory cat;
  const PxActEntry *oe = output_entry(g, chunk, 0, &cat); /* block 0's input */
  TRY(oe);
  /* context parallelism: positions added apart, at the tokens' true places */
  PxGptParam *wpe_op = g->cp > 1 ? NULL : wpe, *wpe_cp = g->cp > 1 ? wpe : NULL;
  if (g->tp == 1) {
    TRY(la->s[A_OUT] = alloc_entry(g, oe, cat, error));
    return px_op_embedding_fwd(g->r.be, la->s[A_OUT], a->tok_t, wte->w, W(wpe_op), g->B, g->T, error) &&
           (!wpe_cp || add_positions(g, la->s[A_OUT], wpe_cp, error));
  }
  gint64 v0 = (gint64)g->r.tp_rank * g->vocab_l;
  /* the partial rows: the output itself without SP, else all N rows to scatter */
  PxTensor *partial = g->sp ? new_partial(g, "embed_partial", g->h, PX_MEM_BUFFERS, FALSE, error)
                            : alloc_entry(g, oe, cat, error);
  TRY(partial);
  if (!px_op_embedding_vp_fwd(g->r.be, partial, a->tok_t, wte->w, g->r.tp_rank == 0 ? W(wpe_op) : NULL, v0,
                              g->vocab_real, g->B, g->T, error) ||
      (wpe_cp && g->r.tp_rank == 0 && !add_positions(g, partial, wpe_cp, error))) {
    px_tensor_free(partial);
    return FALSE;
  }
  if (!g->sp) {
    if (!tp_all_reduce(g, partial, error)) {
      px_tensor_free(partial);
      return FALSE;
    }
    la->s[A_OUT] = partial;
    return TRUE;
  }
  return (la->s[A_OUT] = scatter_rows(g, partial, alloc_entry(g, oe, cat, error), error)) != NULL;
}

static gboolean embedding_bwd(PxGpt *g, int chunk, PxGptActs *a, const PxTensor *dout, GError **error) {
  PxGptParam *wte = param(g, chunk, 0, PX_ROLE_TOKEN_EMBED), *wpe = param(g, chunk, 0, PX_ROLE_POS_EMBED);
  PxGptParam *wpe_op = g->cp > 1 ? NULL : wpe, *wpe_cp = g->cp > 1 ? wpe : NULL;
  if (g->tp == 1)
    return px_op_embedding_bwd(g->r.be, wte->g, G(wpe_op), dout, a->tok_t, g->B, g->T, error) &&
           (!wpe_cp || positions_bwd(g, dout, wpe_cp, error));
  g_autoptr(PxTensor) hold = NULL;
  dout = full_rows(g, dout, &hold, error);
  TRY(dout);
  gint64 v0 = (gint64)g->r.tp_rank * g->vocab_l;
  return px_op_embedding_vp_bwd(g->r.be, wte->g, G(wpe_op), dout, a->tok_t, v0, g->vocab_real, g->B, g->T, error) &&
         (!wpe_cp || positions_bwd(g, dout, wpe_cp, error));
}

/* Vocab-parallel cross-entropy (Megatron), on the device: the global row max
 * by all-reduce MAX of the local maxima, the sum of exponentials and the
 * target logit by all-reduce SUM. Columns past vocab_real (padding) take no
 * part. The max and sums stay in the stash for backward. */
static gboolean vocab_parallel_ce(PxGpt *g, int chunk, int li, PxGptActs *a, const PxTensor *logits,
                                  PxTensor *loss_acc, GError **error) {
  PxBackend *be = g->r.be;
  gint64 v0 = (gint64)g->r.tp_rank * g->vocab_l;
  g_autoptr(PxTensor) losses = new_stat(g, "losses", g->N, 0, error);
  TRY(losses);
  TRY(a->ce_max = new_act(g, chunk, li, PX_ACT_CE_MAX, error));
  TRY(px_op_ce_vp_max(be, a->ce_max, logits, g->vocab_real, error));
  TRY(px_comm_all_reduce(g->r.tp, a->ce_max->data, (gsize)g->N, a->ce_max->dtype, PX_RED_MAX, CS(g), error));
  TRY(a->ce_stats = new_act(g, chunk, li, PX_ACT_CE_STATS, error));
  TRY(px_op_ce_vp_stats(be, a->ce_stats, logits, a->tgt_t, a->ce_max, v0, g->vocab_real, error));
  TRY(tp_all_reduce(g, a->ce_stats, error));
  return px_op_ce_vp_loss(be, losses, loss_acc, a->ce_max, a->ce_stats, error);
}

static gboolean head_fwd(PxGpt *g, int chunk, int li, PxGptActs *a, LayerActs *la, const PxTensor *x,
                         PxTensor *loss_acc, GError **error) {
  PxGptParam *w = lm_head_weight(g, chunk, li);
  TRY(la->s[A_LOGITS] = new_act(g, chunk, li, PX_ACT_LOGITS, error));
  TRY(column_parallel_fwd(g, la->s[A_LOGITS], x, w, NULL, error));
  if (g->tp > 1) return vocab_parallel_ce(g, chunk, li, a, la->s[A_LOGITS], loss_acc, error);
  g_autoptr(PxTensor) losses = new_stat(g, "losses", g->N, 0, error);
  TRY(losses);
  return px_op_cross_entropy_fwd(g->r.be, losses, loss_acc, la->s[A_LOGITS], a->tgt_t, error);
}

/* ---- forward of a chunk ---------------------------------------------------------- */

static gboolean is_block(const PxGpt *g, int li) { return g->model->layers[li].kind == PX_LAYER_BLOCK; }

/* Full checkpointing: blocks [s0, s1) form the segment of li (the core's). */
static gboolean layer_before(PxGpt *g, int chunk, int li, GError **error) {
  return !g->layer_before || g->layer_before(chunk, li, g->layer_before_data, error);
}

static void segment_of(const PxGpt *g, const PxGptChunk *ch, int li, int *s0, int *s1) {
  px_activations_segment(g->model, &g->plan, ch->first, ch->end, li, s0, s1);
}

/* After layer li's forward: free what the list says is dropped once the
 * layer's forward ends (selective: the probabilities; full recompute: all
 * but the output), and once a checkpoint segment ends the inputs inside it. */
static void drop_after_forward(PxGpt *g, PxGptActs *a, int li) {
  PxGptChunk *ch = &g->chunks[a->chunk];
  const PxActList *l = layer_acts(g, a->chunk, li);
  LayerActs *la = &a->layers[li - ch->first];
  for (int i = 0; i < l->n; i++)
    if (l->e[i].life == PX_ACT_RECOMPUTED) g_clear_pointer(&la->s[l->e[i].role], px_tensor_free);
  if (!is_block(g, li) || g->plan.ckpt != PX_CKPT_FULL) return;
  int s0, s1;
  segment_of(g, ch, li, &s0, &s1);
  if (li != s1 - 1) return;
  for (int k = s0 + 1; k < s1; k++) {
    const PxActEntry *in = px_act_find(layer_acts(g, a->chunk, k), PX_ACT_IN);
    if (in && in->life == PX_ACT_SEGMENT) g_clear_pointer(&a->layers[k - 1 - ch->first].s[A_OUT], px_tensor_free);
  }
}

static const PxTensor *layer_input(PxGptActs *a, int li) {
  PxGptChunk *ch = &a->gpt->chunks[a->chunk];
  return li == ch->first ? a->input : a->layers[li - 1 - ch->first].s[A_OUT];
}

PxGptActs *px_gpt_forward(PxGpt *g, int chunk, PxTensor *input, const gint32 *tokens, const gint32 *targets,
                          double *loss, GError **error) {
  PxGptChunk *ch = &g->chunks[chunk];
  if (ch->end != (int)g->model->n_layers || !loss) return px_gpt_forward_acc(g, chunk, input, tokens, targets, NULL, error);
  g_autoptr(PxTensor) acc = px_tensor_new_zeroed(g->r.be, "loss", PX_DTYPE_F64, PX_MEM_BUFFERS, 1, (gint64[]){1}, error);
  if (!acc) {
    px_tensor_free(input);
    return NULL;
  }
  PxGptActs *a = px_gpt_forward_acc(g, chunk, input, tokens, targets, acc, error);
  if (a && !px_tensor_download(acc, loss, error)) g_clear_pointer(&a, px_gpt_acts_free);
  return a;
}

/* Every id of the micro-batch in [0, vocab), else an error naming the first bad one. */
static gboolean ids_in_vocab(const PxGpt *g, const char *what, const gint32 *ids, GError **error) {
  for (int i = 0; i < g->N; i++)
    if (ids[i] < 0 || ids[i] >= g->model->desc.vocab)
      return fail(error, PX_GPT_ERROR_INVALID, "%s %d outside the vocabulary %d", what, ids[i], g->model->desc.vocab);
  return TRUE;
}

PxGptActs *px_gpt_forward_acc(PxGpt *g, int chunk, PxTensor *input, const gint32 *tokens, const gint32 *targets,
                              PxTensor *loss_acc, GError **error) {
  PxGptChunk *ch = &g->chunks[chunk];
  PxGptActs *a = g_new0(PxGptActs, 1);
  a->gpt = g;
  a->chunk = chunk;
  a->input = input;
  a->layers = g_new0(LayerActs, ch->end - ch->first);
  a->deferred = g_array_new(FALSE, TRUE, sizeof(Deferred));
  gboolean ok = TRUE;
  /* ids are checked here, on the host copy the caller gives: with a
   * vocabulary split over TP no single rank's op could tell */
  if (ch->first == 0)
    ok = ids_in_vocab(g, "token", tokens, error) && (a->tok_t = new_act(g, chunk, 0, PX_ACT_TOKENS, error)) &&
         px_tensor_upload(a->tok_t, tokens, error);
  if (ok && ch->end == (int)g->model->n_layers)
    ok = ids_in_vocab(g, "target", targets, error) &&
         (a->tgt_t = new_act(g, chunk, ch->end - 1, PX_ACT_TARGETS, error)) && px_tensor_upload(a->tgt_t, targets, error);
  for (int li = ch->first; ok && li < ch->end; li++) {
    LayerActs *la = &a->layers[li - ch->first];
    const PxTensor *x = layer_input(a, li);
    if (!(ok = layer_before(g, chunk, li, error))) break;
    switch (g->model->layers[li].kind) {
    case PX_LAYER_EMBEDDING: ok = embedding_fwd(g, chunk, a, la, error); break;
    case PX_LAYER_BLOCK:
      ok = block_fwd(g, chunk, li, la, x, error);
      if (ok) drop_after_forward(g, a, li);
      break;
    case PX_LAYER_FINAL_NORM:
      ok = (la->s[A_OUT] = new_output(g, chunk, li, error)) &&
           norm_stats(g, chunk, li, la, PX_ACT_NORMF_MEAN, PX_ACT_NORMF_RSTD, error) &&
           norm_fwd(g, la->s[A_OUT], la->s[PX_ACT_NORMF_MEAN], la->s[PX_ACT_NORMF_RSTD], x,
                    param(g, chunk, li, PX_ROLE_FINAL_NORM), param(g, chunk, li, PX_ROLE_FINAL_NORM_BIAS), error);
      break;
    case PX_LAYER_LM_HEAD: ok = head_fwd(g, chunk, li, a, la, x, loss_acc, error); break;
    }
  }
  if (!ok) {
    px_gpt_acts_free(a);
    return NULL;
  }
  return a;
}

PxTensor *px_gpt_acts_output(PxGptActs *a) {
  PxGptChunk *ch = &a->gpt->chunks[a->chunk];
  if (ch->end == (int)a->gpt->model->n_layers) return NULL;
  return a->layers[ch->end - 1 - ch->first].s[A_OUT];
}

const PxTensor *px_gpt_acts_logits(PxGptActs *a) {
  PxGptChunk *ch = &a->gpt->chunks[a->chunk];
  if (ch->end != (int)a->gpt->model->n_layers) return NULL;
  return a->layers[ch->end - 1 - ch->first].s[A_LOGITS];
}

void px_gpt_acts_drop_output(PxGptActs *a) {
  PxGptChunk *ch = &a->gpt->chunks[a->chunk];
  if (ch->end == (int)a->gpt->model->n_layers) return;
  g_clear_pointer(&a->layers[ch->end - 1 - ch->first].s[A_OUT], px_tensor_free);
}

void px_gpt_acts_free(PxGptActs *a) {
  if (!a) return;
  PxGptChunk *ch = &a->gpt->chunks[a->chunk];
  for (int i = 0; i < ch->end - ch->first; i++) free_slots(&a->layers[i]);
  for (guint i = 0; i < a->deferred->len; i++) {
    px_tensor_free(g_array_index(a->deferred, Deferred, i).dy);
    px_tensor_free(g_array_index(a->deferred, Deferred, i).x_owned);
  }
  g_array_free(a->deferred, TRUE);
  g_free(a->layers);
  px_tensor_free(a->input);
  px_tensor_free(a->tok_t);
  px_tensor_free(a->tgt_t);
  px_tensor_free(a->ce_max);
  px_tensor_free(a->ce_stats);
  g_free(a);
}

/* ---- backward -------------------------------------------------------------------- */

/* dx += dy W; dW and db now, or (defer) later in px_gpt_backward_weight, in
 * which case *dy moves to the deferred list (set to NULL), and so does
 * *x_hold (a gathered input) when given and set. */
static gboolean linear_bwd(PxGpt *g, PxGptActs *a, PxTensor *dx, PxTensor **dy, const PxTensor *x,
                           PxTensor **x_hold, PxGptParam *w, PxGptParam *b, gboolean defer, GError **error) {
  if (!defer) return px_op_linear_bwd(g->r.be, dx, w->g, G(b), *dy, x, w->w, error);
  TRY(px_op_linear_bwd(g->r.be, dx, NULL, NULL, *dy, x, w->w, error));
  /* held for the weight pass: the core's PX_ACT_W entries (activations.h) */
  px_tensor_set_category(*dy, PX_MEM_ACTIVATIONS);
  if (x_hold) px_tensor_set_category(*x_hold, PX_MEM_ACTIVATIONS);
  Deferred df = {a->chunk, param_index(g, a->chunk, w), param_index(g, a->chunk, b), *dy, (PxTensor *)x,
                 x_hold ? *x_hold : NULL};
  g_array_append_val(a->deferred, df);
  *dy = NULL;
  if (x_hold) *x_hold = NULL;
  return TRUE;
}

/* The MLP's backward (an MoE block's shared experts): the ln2 rows'
 * gradient (N/t rows with SP, else N), reduced over TP; may take *dout. */
static PxTensor *mlp_bwd(PxGpt *g, int chunk, int li, PxGptActs *a, LayerActs *la, PxTensor **dout, gboolean swiglu,
                         gboolean defer, GError **error) {
  PxBackend *be = g->r.be;
  gint64 fl = la->s[A_FC]->shape[1]; /* ffn / t, or the shared experts' */
  g_autoptr(PxTensor) dact = new_grad(g, "dact", g->N, fl, error);
  g_autoptr(PxTensor) dfc = new_grad(g, "dfc", g->N, fl, error);
  g_autoptr(PxTensor) dln2 = new_partial(g, "dln2", g->h, PX_MEM_BUFFERS, TRUE, error);
  TRYN(dact && dfc && dln2);
  g_autoptr(PxTensor) dout_h = NULL;
  TRYN(full_rows(g, *dout, &dout_h, error));
  TRYN(linear_bwd(g, a, dact, g->sp ? &dout_h : dout, la->s[A_ACT], NULL, param(g, chunk, li, PX_ROLE_FFN_OUT),
                  param(g, chunk, li, PX_ROLE_FFN_OUT_BIAS), defer, error));
  g_autoptr(PxTensor) ln2_h = NULL;
  const PxTensor *ln2 = full_rows(g, la->s[A_LN2], &ln2_h, error);
  TRYN(ln2);
  if (swiglu) {
    g_autoptr(PxTensor) dup = new_grad(g, "dup", g->N, fl, error);
    TRYN(dup);
    TRYN(px_op_swiglu_bwd(be, dfc, dup, dact, la->s[A_FC], la->s[A_UP], error));
    TRYN(linear_bwd(g, a, dln2, &dup, ln2, &ln2_h, param(g, chunk, li, PX_ROLE_FFN_UP),
                    param(g, chunk, li, PX_ROLE_FFN_UP_BIAS), defer, error));
    TRYN(linear_bwd(g, a, dln2, &dfc, ln2, &ln2_h, param(g, chunk, li, PX_ROLE_FFN_GATE),
                    param(g, chunk, li, PX_ROLE_FFN_GATE_BIAS), defer, error));
  } else {
    TRYN(px_op_gelu_bwd(be, dfc, dact, la->s[A_FC], error));
    TRYN(linear_bwd(g, a, dln2, &dfc, ln2, &ln2_h, param(g, chunk, li, PX_ROLE_FFN_IN),
                    param(g, chunk, li, PX_ROLE_FFN_IN_BIAS), defer, error));
  }
  return reduce_rows(g, g_steal_pointer(&dln2), PX_MEM_BUFFERS, error);
}

/* Backward of one block: dx += d(block)/dx · dout; takes *dout. Rows of x, dx,
 * dout: N/t with sequence parallelism, else N. */
static gboolean block_bwd(PxGpt *g, int chunk, int li, PxGptActs *a, LayerActs *la, const PxTensor *x,
                          PxTensor **dout, PxTensor *dx, gboolean defer, GError **error) {
  const PxModelDesc *d = &g->model->desc;
  PxBackend *be = g->r.be;
  PxAttnShape as = attn_shape(g);
  gboolean swiglu = d->ffn_kind == PX_FFN_SWIGLU;
  gboolean moe = is_moe(g, li), mlp = !moe || d->shared_experts > 0;
  /* the residual of the MLP: dx2 = dout + ln_2 backward */
  g_autoptr(PxTensor) dx2 = new_tmp(g, "dx2", g->Nl, g->h, error);
  TRY(dx2);
  TRY(px_tensor_copy_async(dx2, *dout, CS(g), error));
  /* the routed experts (before the MLP's backward, which may take dout) */
  g_autoptr(PxTensor) dmoe = NULL;
  if (moe) {
    TRY(dmoe = new_grad(g, "dmoe", g->Nl, g->h, error));
    PxMoeRun run = moe_run(g);
    PxMoeWeights w = moe_weights(g, chunk, li);
    /* the aux loss's seed: dloss weighs a micro-batch's share on each of the
     * dp·cp data ranks, but the CP ranks share one aux loss (statistics over
     * the CP group), whose gradient each takes for its own tokens only: cp
     * times dloss (under sequence parallelism the TP ranks, outside the
     * data ranks, already take dloss each) */
    TRY(px_moe_layer_bwd(&run, &w, la->s[PX_ACT_MOE], la->s[A_LN2], *dout, dmoe, g->dloss * g->cp, error));
  }
  g_autoptr(PxTensor) dln2_r = NULL;
  if (mlp) {
    TRY(dln2_r = mlp_bwd(g, chunk, li, a, la, dout, swiglu, defer, error));
    if (dmoe) TRY(px_op_residual_bwd(be, dln2_r, NULL, dmoe, error));
  } else {
    dln2_r = g_steal_pointer(&dmoe);
  }
  TRY(norm_bwd(g, dx2, dln2_r, la->s[A_X2], param(g, chunk, li, PX_ROLE_NORM2), param(g, chunk, li, PX_ROLE_NORM2_BIAS),
               la->s[PX_ACT_NORM2_MEAN], la->s[PX_ACT_NORM2_RSTD], error));
  /* the residual of the attention: dx = dx2 + ln_1 backward */
  TRY(px_op_residual_bwd(be, dx, NULL, dx2, error));
  g_autoptr(PxTensor) dao = new_grad(g, "dao", g->N, (gint64)g->heads_l * g->hd, error);
  TRY(dao);
  g_autoptr(PxTensor) dx2_h = NULL;
  TRY(full_rows(g, dx2, &dx2_h, error));
  TRY(linear_bwd(g, a, dao, g->sp ? &dx2_h : &dx2, la->s[A_AO], NULL, param(g, chunk, li, PX_ROLE_ATTN_OUT),
                 param(g, chunk, li, PX_ROLE_ATTN_OUT_BIAS), defer, error));
  g_autoptr(PxTensor) att_re = NULL;
  g_autoptr(PxTensor) dqkv = new_grad(g, "dqkv", g->N, g->qkv_l, error);
  TRY(dqkv);
  const PxTensor *att = la->s[A_ATT];
  if (keeps_lse(g, chunk, li)) {
    TRY(ring_attention_bwd(g, dqkv, dao, la->s[A_QKV], la->s[A_AO], la->s[PX_ACT_LSE], error));
  } else if (!att) { /* selective recompute of the attention core: its entry made again, for this backward */
    const PxActEntry *ao = act_entry(g, chunk, li, PX_ACT_ATTN_OUT, error);
    TRY(ao);
    g_autoptr(PxTensor) tmp = alloc_entry(g, ao, PX_MEM_BUFFERS, error);
    TRY(tmp);
    TRY(att_re = new_act(g, chunk, li, PX_ACT_PROBS, error));
    TRY(px_op_attention_fwd(be, tmp, att_re, la->s[A_QKV], &as, error));
    att = att_re;
  }
  if (att) TRY(px_op_attention_bwd(be, dqkv, dao, la->s[A_QKV], att, &as, error));
  if (d->pos == PX_POS_ROPE) {
    g_autoptr(PxTensor) rot = g_steal_pointer(&dqkv);
    TRY(dqkv = new_grad(g, "dqkv_pre", g->N, g->qkv_l, error));
    TRY(px_op_rope_bwd(be, dqkv, rot, &as, g->model->desc.rope_theta, error));
  }
  g_autoptr(PxTensor) dln1 = new_partial(g, "dln1", g->h, PX_MEM_BUFFERS, TRUE, error);
  g_autoptr(PxTensor) ln1_h = NULL;
  const PxTensor *ln1 = full_rows(g, la->s[A_LN1], &ln1_h, error);
  TRY(dln1 && ln1);
  TRY(linear_bwd(g, a, dln1, &dqkv, ln1, &ln1_h, param(g, chunk, li, PX_ROLE_QKV),
                 param(g, chunk, li, PX_ROLE_QKV_BIAS), defer, error));
  g_autoptr(PxTensor) dln1_r = reduce_rows(g, g_steal_pointer(&dln1), PX_MEM_BUFFERS, error);
  TRY(dln1_r);
  return norm_bwd(g, dx, dln1_r, x, param(g, chunk, li, PX_ROLE_NORM1), param(g, chunk, li, PX_ROLE_NORM1_BIAS),
                  la->s[PX_ACT_NORM1_MEAN], la->s[PX_ACT_NORM1_RSTD], error);
}

static gboolean head_bwd(PxGpt *g, int chunk, int li, PxGptActs *a, LayerActs *la, const PxTensor *x,
                         double dloss, PxTensor *dx, gboolean defer, GError **error) {
  PxGptParam *w = lm_head_weight(g, chunk, li);
  g_autoptr(PxTensor) dlogits = new_grad(g, "dlogits", g->N, g->vocab_l, error);
  TRY(dlogits);
  if (g->tp > 1)
    TRY(px_op_ce_vp_bwd(g->r.be, dlogits, la->s[A_LOGITS], a->tgt_t, a->ce_max, a->ce_stats,
                        (gint64)g->r.tp_rank * g->vocab_l, g->vocab_real, dloss, error));
  else TRY(px_op_cross_entropy_bwd(g->r.be, dlogits, la->s[A_LOGITS], a->tgt_t, dloss, error));
  /* the head's weight may live in another chunk (tied, pp = 1): never deferred */
  gboolean own_chunk = w >= g->chunks[chunk].params && w < g->chunks[chunk].params + g->chunks[chunk].n_params;
  g_autoptr(PxTensor) x_h = NULL;
  const PxTensor *xf = full_rows(g, x, &x_h, error);
  g_autoptr(PxTensor) dxp = new_partial(g, "dx_head", g->h, PX_MEM_BUFFERS, TRUE, error);
  TRY(xf && dxp);
  TRY(linear_bwd(g, a, dxp, &dlogits, xf, &x_h, w, NULL, defer && own_chunk, error));
  g_autoptr(PxTensor) dxr = reduce_rows(g, g_steal_pointer(&dxp), PX_MEM_BUFFERS, error);
  return dxr && px_op_residual_bwd(g->r.be, dx, NULL, dxr, error);
}

/* Recompute the forward of blocks [s0, s1) from the segment's input (within
 * the backward of block s1 - 1, which uses its weights next). */
static gboolean recompute_segment(PxGpt *g, PxGptActs *a, int s0, int s1, GError **error) {
  PxGptChunk *ch = &g->chunks[a->chunk];
  for (int li = s0; li < s1; li++) {
    LayerActs *la = &a->layers[li - ch->first];
    if (la->s[A_LN1]) continue; /* already there */
    TRY(layer_before(g, a->chunk, li, error));
    TRY(block_fwd(g, a->chunk, li, la, layer_input(a, li), error));
  }
  return TRUE;
}

void px_gpt_set_layer_hook(PxGpt *g, PxGptLayerDone fn, void *data) {
  g->layer_done = fn;
  g->layer_done_data = data;
}

void px_gpt_set_layer_before(PxGpt *g, PxGptLayerBefore fn, void *data) {
  g->layer_before = fn;
  g->layer_before_data = data;
}

gboolean px_gpt_layer_borrows(const PxGpt *g, int chunk, int li, int *from_chunk, int *param) {
  const PxGptChunk *ch = &g->chunks[chunk];
  if (g->model->layers[li].kind != PX_LAYER_LM_HEAD || g->emb_chunk < 0) return FALSE;
  for (int i = ch->layer_param[li - ch->first]; i < ch->layer_param[li - ch->first + 1]; i++)
    if (ch->params[i].spec->role == PX_ROLE_LM_HEAD || ch->params[i].spec->role == PX_ROLE_TOKEN_EMBED) return FALSE;
  *from_chunk = g->emb_chunk;
  *param = g->emb_param;
  return TRUE;
}

gboolean px_gpt_param_bind_w(PxGpt *g, int chunk, guint i, PxTensor *flat, gint64 at, GError **error) {
  PxGptParam *p = &g->chunks[chunk].params[i];
  g_clear_pointer(&p->w, px_tensor_free);
  return (p->w = px_tensor_view(flat, p->spec->name, at, p->ndim, p->shape, error)) != NULL;
}

static gboolean layer_done(PxGpt *g, int chunk, int li, GError **error) {
  return !g->layer_done || g->layer_done(chunk, li, g->layer_done_data, error);
}

/* A split backward: after layer li's backward-input pass, free what the
 * core's list does not mark as read by the weight pass (its `w` entries; a
 * layer's output stays when it is the next layer's `w` input). */
static void free_unless_w(PxGpt *g, PxGptActs *a, int li) {
  PxGptChunk *ch = &g->chunks[a->chunk];
  const PxActList *l = layer_acts(g, a->chunk, li);
  LayerActs *la = &a->layers[li - ch->first];
  for (int k = 0; k < A_N; k++) {
    const PxActEntry *e = k == A_OUT ? (li + 1 < ch->end ? px_act_find(layer_acts(g, a->chunk, li + 1), PX_ACT_IN) : NULL)
                                     : px_act_find(l, (PxActRole)k);
    if (!e || !e->w) g_clear_pointer(&la->s[k], px_tensor_free);
  }
}

gboolean px_gpt_backward(PxGpt *g, PxGptActs *a, PxTensor *dout, double dloss, gboolean defer_weight,
                         PxTensor **dinput, GError **error) {
  PxGptChunk *ch = &g->chunks[a->chunk];
  if (dinput) *dinput = NULL;
  g->dloss = dloss; /* every micro-batch's load-balancing loss weighs as its mean loss */
  gboolean split_listed = px_act_splits_backward(&g->plan);
  g_autoptr(PxTensor) dcur = dout; /* gradient w.r.t. the current layer's output */
  for (int li = ch->end - 1; li >= ch->first; li--) {
    LayerActs *la = &a->layers[li - ch->first];
    const PxTensor *x = layer_input(a, li);
    PxLayerKind kind = g->model->layers[li].kind;
    gboolean full = kind == PX_LAYER_BLOCK && g->plan.ckpt == PX_CKPT_FULL;
    if (!full) TRY(layer_before(g, a->chunk, li, error));
    if (kind == PX_LAYER_EMBEDDING) {
      TRY(embedding_bwd(g, a->chunk, a, dcur, error));
      if (!defer_weight) TRY(layer_done(g, a->chunk, li, error));
      break;
    }
    g_autoptr(PxTensor) dx = new_grad(g, "dx", g->Nl, g->h, error);
    TRY(dx);
    switch (kind) {
    case PX_LAYER_LM_HEAD: TRY(head_bwd(g, a->chunk, li, a, la, x, dloss, dx, defer_weight, error)); break;
    case PX_LAYER_FINAL_NORM:
      TRY(norm_bwd(g, dx, dcur, x, param(g, a->chunk, li, PX_ROLE_FINAL_NORM), param(g, a->chunk, li, PX_ROLE_FINAL_NORM_BIAS),
                   la->s[PX_ACT_NORMF_MEAN], la->s[PX_ACT_NORMF_RSTD], error));
      break;
    case PX_LAYER_BLOCK:
      if (g->plan.ckpt == PX_CKPT_FULL) {
        int s0, s1;
        segment_of(g, ch, li, &s0, &s1);
        (void)s1;
        /* blocks after li in the segment are done (and freed): recompute up to li only */
        TRY(recompute_segment(g, a, s0, li + 1, error));
        x = layer_input(a, li); /* inside a segment the input was recomputed just now */
        TRY(layer_before(g, a->chunk, li, error));
      }
      TRY(block_bwd(g, a->chunk, li, a, la, x, &dcur, dx, defer_weight, error));
      break;
    default: break;
    }
    g_clear_pointer(&dcur, px_tensor_free);
    dcur = g_steal_pointer(&dx);
    /* what this layer kept is no longer needed, but for what its weight pass
     * reads (the lists mark it when the plan's schedule splits the backward;
     * a split asked for under another schedule keeps everything to W) */
    if (!defer_weight) {
      free_slots(la);
      TRY(layer_done(g, a->chunk, li, error));
    } else if (split_listed) {
      free_unless_w(g, a, li);
    }
  }
  if (defer_weight && split_listed) {
    /* the weight pass reads no ids, cross-entropy statistics, embedding
     * output or (unless its first layer's input is a `w` entry) the input */
    for (int li = ch->first; li < ch->end; li++) free_unless_w(g, a, li);
    const PxActEntry *in = px_act_find(layer_acts(g, a->chunk, ch->first), PX_ACT_IN);
    if (!in || !in->w) g_clear_pointer(&a->input, px_tensor_free);
    g_clear_pointer(&a->tok_t, px_tensor_free);
    g_clear_pointer(&a->tgt_t, px_tensor_free);
    g_clear_pointer(&a->ce_max, px_tensor_free);
    g_clear_pointer(&a->ce_stats, px_tensor_free);
  }
  if (ch->first > 0 && dinput) *dinput = g_steal_pointer(&dcur);
  return TRUE;
}

gboolean px_gpt_backward_weight(PxGpt *g, PxGptActs *a, GError **error) {
  /* the deferred GEMMs stand in backward order (last layer first): a layer is
   * complete once the next item belongs to a layer before it */
  const PxGptChunk *own = &g->chunks[a->chunk];
  int next = own->end - 1; /* the next layer to announce */
  for (guint i = 0; i < a->deferred->len; i++) {
    Deferred *df = &g_array_index(a->deferred, Deferred, i);
    PxGptChunk *ch = &g->chunks[df->chunk];
    PxGptParam *w = &ch->params[df->w], *b = df->b >= 0 ? &ch->params[df->b] : NULL;
    for (; df->chunk == a->chunk && next > w->layer; next--) TRY(layer_done(g, a->chunk, next, error));
    TRY(px_op_linear_bwd(g->r.be, NULL, w->g, G(b), df->dy, df->x, w->w, error));
  }
  for (; next >= own->first; next--) TRY(layer_done(g, a->chunk, next, error));
  return TRUE;
}
