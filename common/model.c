/* model.c — the layer list of a transformer and its parameter tensors. */
#include "model.h"
#include "config.h"
#include <math.h>
#include <string.h>

G_DEFINE_QUARK(px-model-error-quark, px_model_error)

static const char *const ffn_names[] = {"gelu", "swiglu", "geglu", "relu2", NULL};
const char *px_ffn_kind_name(PxFfnKind k) { return ffn_names[k]; }
gboolean px_ffn_gated(PxFfnKind k) { return k == PX_FFN_SWIGLU || k == PX_FFN_GEGLU; }
gboolean px_model_llama_block(const PxModelDesc *d) {
  return d->norm == PX_NORM_RMSNORM && d->pos == PX_POS_ROPE && d->ffn_kind == PX_FFN_SWIGLU && !d->bias &&
         !d->qkv_bias && !d->dropout && !d->parallel_attn && !d->norm_offset && d->experts == 0 &&
         (d->rotary_pct == 0 || d->rotary_pct == 1);
}
gint64 px_model_q_dim(const PxModelDesc *d) { return (gint64)d->heads * d->head_dim; }
gint64 px_model_kv_dim(const PxModelDesc *d) { return (gint64)d->kv_heads * d->head_dim; }
double px_model_attn_span(const PxModelDesc *d, int seq) {
  return d->sliding_window > 0 && d->sliding_window < seq ? d->sliding_window : seq;
}
const char *px_norm_kind_name(PxNormKind k) { return k == PX_NORM_RMSNORM ? "rmsnorm" : "layernorm"; }
const char *px_layer_kind_name(PxLayerKind k) {
  static const char *names[] = {"embedding", "block", "final_norm", "lm_head"};
  return names[k];
}

/* ---- building the layer list ------------------------------------------- */

typedef struct {
  GArray *tensors; /* PxTensorSpec */
  const char *prefix;
} TensorList;

gboolean px_role_is_norm(PxTensorRole r) {
  return r == PX_ROLE_NORM1 || r == PX_ROLE_NORM1_BIAS || r == PX_ROLE_NORM2 || r == PX_ROLE_NORM2_BIAS ||
         r == PX_ROLE_FINAL_NORM || r == PX_ROLE_FINAL_NORM_BIAS;
}

gboolean px_role_is_residual_out(PxTensorRole r) { return r == PX_ROLE_ATTN_OUT || r == PX_ROLE_FFN_OUT; }

static void add_tensor(TensorList *tl, const char *name, PxTensorRole role, gint64 d0, gint64 d1, PxSplit split) {
  PxTensorSpec t = {0};
  t.role = role;
  t.name = g_strdup_printf("%s%s", tl->prefix, name);
  t.ndim = d1 > 0 ? 2 : 1;
  t.shape[0] = d0;
  t.shape[1] = d1 > 0 ? d1 : 1;
  t.split = split;
  g_array_append_val(tl->tensors, t);
}

/* A linear layer: weight (out, in) and optional bias (out). Column-parallel
 * splits the output dim (and the bias); row-parallel splits the input dim and
 * keeps the bias whole (added after the all-reduce). */
static void add_linear(TensorList *tl, const char *name, PxTensorRole role, gint64 out, gint64 in, gboolean bias,
                       gboolean column_parallel) {
  g_autofree char *w = g_strconcat(name, ".weight", NULL);
  g_autofree char *b = g_strconcat(name, ".bias", NULL);
  add_tensor(tl, w, role, out, in, column_parallel ? PX_SPLIT_ROWS : PX_SPLIT_COLS);
  if (bias) add_tensor(tl, b, role + 1, out, 0, column_parallel ? PX_SPLIT_ROWS : PX_SPLIT_NONE);
}

static void add_norm(TensorList *tl, const PxModelDesc *d, const char *name, PxTensorRole role) {
  g_autofree char *w = g_strconcat(name, ".weight", NULL);
  g_autofree char *b = g_strconcat(name, ".bias", NULL);
  add_tensor(tl, w, role, d->hidden, 0, PX_SPLIT_NONE);
  if (d->norm == PX_NORM_LAYERNORM && d->bias) add_tensor(tl, b, role + 1, d->hidden, 0, PX_SPLIT_NONE);
}

/* Routed experts stacked along dim 0: (E·out, in); split is the expert-TP
 * split within each expert. */
static void add_experts(TensorList *tl, const char *name, PxTensorRole role, int experts, gint64 out, gint64 in,
                        PxSplit split) {
  add_tensor(tl, name, role, experts * out, in, split);
  g_array_index(tl->tensors, PxTensorSpec, tl->tensors->len - 1).experts = experts;
}

/* An MoE block's MLP: router, routed experts, shared experts (a dense MLP of
 * shared_experts · shared_ffn, split over TP as Megatron's shared expert is)
 * and their gate. */
static void add_moe_mlp(TensorList *tl, const PxModelDesc *d) {
  gint64 h = d->hidden, f = d->expert_ffn, e = d->experts;
  add_tensor(tl, "mlp.router.weight", PX_ROLE_ROUTER, e, h, PX_SPLIT_NONE);
  if (px_ffn_gated(d->ffn_kind)) {
    add_experts(tl, "mlp.experts.gate.weight", PX_ROLE_EXPERT_GATE, d->experts, f, h, PX_SPLIT_ROWS);
    add_experts(tl, "mlp.experts.up.weight", PX_ROLE_EXPERT_UP, d->experts, f, h, PX_SPLIT_ROWS);
  } else {
    add_experts(tl, "mlp.experts.fc.weight", PX_ROLE_EXPERT_IN, d->experts, f, h, PX_SPLIT_ROWS);
  }
  add_experts(tl, "mlp.experts.down.weight", PX_ROLE_EXPERT_OUT, d->experts, h, f, PX_SPLIT_COLS);
  if (d->shared_experts > 0) {
    gint64 fs = (gint64)d->shared_experts * d->shared_ffn;
    if (px_ffn_gated(d->ffn_kind)) {
      add_linear(tl, "mlp.shared.gate", PX_ROLE_FFN_GATE, fs, h, d->bias, TRUE);
      add_linear(tl, "mlp.shared.up", PX_ROLE_FFN_UP, fs, h, d->bias, TRUE);
      add_linear(tl, "mlp.shared.down", PX_ROLE_FFN_OUT, h, fs, d->bias, FALSE);
    } else {
      add_linear(tl, "mlp.shared.fc", PX_ROLE_FFN_IN, fs, h, d->bias, TRUE);
      add_linear(tl, "mlp.shared.proj", PX_ROLE_FFN_OUT, h, fs, d->bias, FALSE);
    }
    if (d->shared_gate) add_tensor(tl, "mlp.shared_gate.weight", PX_ROLE_SHARED_GATE, 1, h, PX_SPLIT_NONE);
  }
}

static void finish_layer(PxLayer *layer, TensorList *tl) {
  layer->n_tensors = tl->tensors->len;
  layer->tensors = (PxTensorSpec *)g_array_free(tl->tensors, FALSE);
  layer->params = 0;
  for (guint i = 0; i < layer->n_tensors; i++)
    layer->params += layer->tensors[i].shape[0] * layer->tensors[i].shape[1];
}

#define INVALID(...)                                                                       \
  do {                                                                                     \
    g_set_error(error, PX_MODEL_ERROR, PX_MODEL_ERROR_INVALID, __VA_ARGS__);               \
    return FALSE;                                                                          \
  } while (0)

/* The mixture-of-experts fields: all zero for a dense model; else defaults
 * filled and each checked. */
static gboolean validate_moe(PxModelDesc *d, const char *name, GError **error) {
  if (d->experts < 0 || d->experts > PX_MODEL_MAX_EXPERTS)
    INVALID("model %s: experts = %d must be 0..%d", name, d->experts, PX_MODEL_MAX_EXPERTS);
  if (d->experts == 0) {
    if (d->top_k || d->expert_ffn || d->shared_experts || d->shared_ffn || d->shared_gate || d->moe_every > 1 ||
        d->moe_first_dense || d->capacity_factor > 0 || d->aux_loss_coef > 0 || d->norm_topk)
      INVALID("model %s: top_k, expert_ffn, shared experts, moe_every, moe_first_dense, capacity_factor, "
              "aux_loss_coef and norm_topk describe a mixture of experts: give experts too", name);
    return TRUE;
  }
  if (d->top_k < 1 || d->top_k > d->experts)
    INVALID("model %s: top_k = %d must be 1..%d (the experts)", name, d->top_k, d->experts);
  if (d->expert_ffn == 0) d->expert_ffn = d->ffn;
  if (d->shared_ffn == 0) d->shared_ffn = d->expert_ffn;
  if (d->moe_every == 0) d->moe_every = 1;
  if (d->expert_ffn < 0 || d->expert_ffn > PX_MODEL_MAX_FFN || d->shared_ffn < 0 || d->shared_ffn > PX_MODEL_MAX_FFN)
    INVALID("model %s: expert_ffn and shared_ffn must be 1..%d", name, PX_MODEL_MAX_FFN);
  if (d->shared_experts < 0 || (gint64)d->shared_experts * d->shared_ffn > PX_MODEL_MAX_FFN)
    INVALID("model %s: shared_experts = %d × %d exceeds the FFN limit %d", name, d->shared_experts, d->shared_ffn,
            PX_MODEL_MAX_FFN);
  if (d->shared_gate && d->shared_experts == 0) INVALID("model %s: shared_gate needs shared experts", name);
  if (d->moe_every < 1 || d->moe_first_dense < 0)
    INVALID("model %s: moe_every = %d must be ≥ 1 and moe_first_dense = %d ≥ 0", name, d->moe_every, d->moe_first_dense);
  if (!isfinite(d->capacity_factor) || d->capacity_factor < 0)
    INVALID("model %s: capacity_factor = %g must be ≥ 0 (0: dropless)", name, d->capacity_factor);
  /* a capacity above every token caps nothing; 1e308 overflowed the
   * capacity's integer (px_moe_capacity) */
  if (d->capacity_factor > (double)d->experts / d->top_k)
    INVALID("model %s: capacity_factor = %g exceeds E/k = %d/%d: an expert's capacity would be more than every token, "
            "which caps nothing (0: dropless)", name, d->capacity_factor, d->experts, d->top_k);
  if (!isfinite(d->aux_loss_coef) || d->aux_loss_coef < 0)
    INVALID("model %s: aux_loss_coef = %g must be ≥ 0", name, d->aux_loss_coef);
  if (px_model_moe_blocks(d) == 0)
    INVALID("model %s: %d experts but no block is MoE (moe_every %d, moe_first_dense %d, %d layers)", name,
            d->experts, d->moe_every, d->moe_first_dense, d->layers);
  return TRUE;
}

gboolean px_model_block_is_moe(const PxModelDesc *d, int b) {
  return d->experts > 0 && b >= d->moe_first_dense && (b + 1) % MAX(d->moe_every, 1) == 0;
}

int px_model_moe_blocks(const PxModelDesc *d) {
  int n = 0;
  for (int b = 0; b < d->layers; b++) n += px_model_block_is_moe(d, b);
  return n;
}

/* The dimensions of a head that rotary positions rotate: int(head_dim ×
 * rotary_pct), as transformers and GPT-NeoX take them; head_dim 0 is
 * hidden / heads, rotary_pct 0 the whole head (the defaults, before or after
 * validation fills them in). */
static int rotary_dims(const PxModelDesc *d) {
  int head_dim = d->head_dim > 0 ? d->head_dim : d->hidden / d->heads;
  return (int)(head_dim * (d->rotary_pct > 0 ? d->rotary_pct : 1.0));
}

/* Fill the defaults of zero fields (see PxModelDesc), then check every rule. */
static gboolean validate_desc(PxModelDesc *d, GError **error) {
  const char *name = d->name ? d->name : "?";
  if (d->name && !px_text_is_line(d->name)) {
    /* a file named "x\ntouch F\n#.ini" was emitted as a header comment whose
     * second line pretrain_gpt.sh ran */
    g_autofree char *shown = g_strescape(d->name, NULL);
    INVALID("model name '%s' is not one line of text (empty, or a control character or invalid UTF-8): it is "
            "written into reports and launch files; give [model] name", shown);
  }
  struct { const char *name; int v, max; } pos[] = {
    {"layers", d->layers, PX_MODEL_MAX_LAYERS}, {"hidden", d->hidden, PX_MODEL_MAX_HIDDEN},
    {"heads", d->heads, PX_MODEL_MAX_HIDDEN},   {"kv_heads", d->kv_heads, PX_MODEL_MAX_HIDDEN},
    {"ffn", d->ffn, PX_MODEL_MAX_FFN},          {"vocab", d->vocab, PX_MODEL_MAX_VOCAB},
    {"max_seq", d->max_seq, PX_MODEL_MAX_SEQ}};
  for (gsize i = 0; i < G_N_ELEMENTS(pos); i++) {
    if (pos[i].v <= 0) INVALID("model %s: %s = %d must be positive", name, pos[i].name, pos[i].v);
    if (pos[i].v > pos[i].max) INVALID("model %s: %s = %d exceeds the limit %d", name, pos[i].name, pos[i].v, pos[i].max);
  }
  if (d->head_dim < 0 || d->head_dim > PX_MODEL_MAX_HEAD_DIM)
    INVALID("model %s: head_dim = %d must be 1..%d", name, d->head_dim, PX_MODEL_MAX_HEAD_DIM);
  if (d->head_dim == 0) {
    if (d->hidden % d->heads)
      INVALID("model %s: %d attention heads do not divide hidden size %d (give head_dim)", name, d->heads, d->hidden);
    d->head_dim = d->hidden / d->heads;
  }
  if ((gint64)d->heads * d->head_dim > PX_MODEL_MAX_HIDDEN)
    INVALID("model %s: heads × head_dim = %d × %d exceeds the limit %d", name, d->heads, d->head_dim, PX_MODEL_MAX_HIDDEN);
  if (d->heads % d->kv_heads)
    INVALID("model %s: %d key-value heads do not divide %d attention heads", name, d->kv_heads, d->heads);
  if (d->rope_theta == 0) d->rope_theta = 10000.0;
  if (d->norm_eps == 0) d->norm_eps = 1e-5;
  if (d->rotary_pct == 0) d->rotary_pct = 1.0;
  if (d->default_seq == 0) d->default_seq = d->max_seq;
  if (!isfinite(d->rope_theta) || d->rope_theta <= 0)
    INVALID("model %s: rope_theta = %g must be a positive number", name, d->rope_theta);
  if (!isfinite(d->norm_eps) || d->norm_eps <= 0 || d->norm_eps >= 1)
    INVALID("model %s: norm_eps = %g must be in (0, 1)", name, d->norm_eps);
  if (!isfinite(d->rotary_pct) || d->rotary_pct <= 0 || d->rotary_pct > 1)
    INVALID("model %s: rotary_pct = %g must be in (0, 1]", name, d->rotary_pct);
  /* rotated in pairs (inv_freq over arange(0, dim, 2), cos and sin of dim
   * + 1 values for an odd dim: a shape error there): none is no positions */
  int rotary = rotary_dims(d);
  if (d->pos == PX_POS_ROPE && (rotary < 2 || rotary % 2))
    INVALID("model %s: rotary_pct = %g of head_dim %d rotates %d dimensions: rotary positions need pairs, at least one",
            name, d->rotary_pct, d->head_dim, rotary);
  if (d->default_seq < 1 || d->default_seq > d->max_seq)
    INVALID("model %s: seq = %d must be 1..max_seq (%d)", name, d->default_seq, d->max_seq);
  if (d->sliding_window < 0) INVALID("model %s: sliding_window = %d must be positive (0: none)", name, d->sliding_window);
  if ((guint)d->ffn_kind > PX_FFN_RELU2 || (guint)d->norm > PX_NORM_RMSNORM || (guint)d->pos > PX_POS_ROPE)
    INVALID("model %s: unknown MLP, norm or position kind", name);
  return validate_moe(d, name, error);
}

gboolean px_model_executable(const PxModel *model, GError **error) {
  const PxModelDesc *d = &model->desc;
  const char *name = d->name;
  if (d->ffn_kind == PX_FFN_GEGLU) INVALID("model %s: the executor has no GeGLU MLP (it runs GELU and SwiGLU)", name);
  if (d->ffn_kind == PX_FFN_RELU2)
    INVALID("model %s: the executor has no squared-ReLU MLP (it runs GELU and SwiGLU)", name);
  if (d->parallel_attn) INVALID("model %s: the executor has no parallel attention + MLP block", name);
  if (d->pos == PX_POS_ROPE && d->rotary_pct != 1.0)
    INVALID("model %s: the executor rotates the whole head, not rotary_pct = %g of it", name, d->rotary_pct);
  if (d->sliding_window > 0 && d->sliding_window < d->max_seq)
    INVALID("model %s: the executor has no sliding-window attention (window %d)", name, d->sliding_window);
  if (d->rope_scaled) INVALID("model %s: the executor has no rescaled rotary positions (rope_scaling)", name);
  if (d->embed_scale) INVALID("model %s: the executor does not scale embeddings by sqrt(hidden)", name);
  if (d->norm_offset) INVALID("model %s: the executor has no (1 + weight) RMSNorm", name);
  if (d->shared_gate) INVALID("model %s: the executor has no shared-expert gate (Qwen2-MoE's sigmoid gate)", name);
  if (d->qk_norm) INVALID("model %s: the executor has no query/key RMSNorm", name);
  if (d->pos == PX_POS_ROPE && d->head_dim % 2) INVALID("model %s: rotary embedding needs an even head_dim (%d)", name, d->head_dim);
  return TRUE;
}

PxModel *px_model_new(const PxModelDesc *desc, GError **error) {
  PxModelDesc checked = *desc;
  if (!validate_desc(&checked, error)) return NULL;
  PxModel *m = g_new0(PxModel, 1);
  m->desc = checked;
  m->desc.name = g_strdup(desc->name ? desc->name : "model");
  const PxModelDesc *d = &m->desc;
  gint64 h = d->hidden, q = px_model_q_dim(d), kv = px_model_kv_dim(d);
  m->n_layers = d->layers + 3;
  m->layers = g_new0(PxLayer, m->n_layers);
  guint li = 0;

  /* Embedding: token (vocab-parallel over TP) and learned positions. */
  {
    PxLayer *l = &m->layers[li];
    TensorList tl = {g_array_new(FALSE, TRUE, sizeof(PxTensorSpec)), ""};
    add_tensor(&tl, "wte.weight", PX_ROLE_TOKEN_EMBED, d->vocab, h, PX_SPLIT_ROWS);
    if (d->pos == PX_POS_LEARNED) add_tensor(&tl, "wpe.weight", PX_ROLE_POS_EMBED, d->max_seq, h, PX_SPLIT_NONE);
    l->kind = PX_LAYER_EMBEDDING;
    l->type_name = "Embedding";
    l->index = li++;
    l->block = -1;
    finish_layer(l, &tl);
  }
  for (int b = 0; b < d->layers; b++) {
    PxLayer *l = &m->layers[li];
    g_autofree char *prefix = g_strdup_printf("h.%d.", b);
    TensorList tl = {g_array_new(FALSE, TRUE, sizeof(PxTensorSpec)), prefix};
    add_norm(&tl, d, "ln_1", PX_ROLE_NORM1);
    add_linear(&tl, "attn.qkv", PX_ROLE_QKV, q + 2 * kv, h, d->bias || d->qkv_bias, TRUE);
    if (d->qk_norm) {
      add_tensor(&tl, "attn.q_norm.weight", PX_ROLE_Q_NORM, d->head_dim, 0, PX_SPLIT_NONE);
      add_tensor(&tl, "attn.k_norm.weight", PX_ROLE_K_NORM, d->head_dim, 0, PX_SPLIT_NONE);
    }
    add_linear(&tl, "attn.proj", PX_ROLE_ATTN_OUT, h, q, d->bias, FALSE);
    add_norm(&tl, d, "ln_2", PX_ROLE_NORM2);
    if (px_model_block_is_moe(d, b)) {
      add_moe_mlp(&tl, d);
    } else if (px_ffn_gated(d->ffn_kind)) {
      add_linear(&tl, "mlp.gate", PX_ROLE_FFN_GATE, d->ffn, h, d->bias, TRUE);
      add_linear(&tl, "mlp.up", PX_ROLE_FFN_UP, d->ffn, h, d->bias, TRUE);
      add_linear(&tl, "mlp.down", PX_ROLE_FFN_OUT, h, d->ffn, d->bias, FALSE);
    } else {
      add_linear(&tl, "mlp.fc", PX_ROLE_FFN_IN, d->ffn, h, d->bias, TRUE);
      add_linear(&tl, "mlp.proj", PX_ROLE_FFN_OUT, h, d->ffn, d->bias, FALSE);
    }
    l->kind = PX_LAYER_BLOCK;
    l->type_name = "TransformerLayer";
    l->index = li++;
    l->block = b;
    finish_layer(l, &tl);
  }
  {
    PxLayer *l = &m->layers[li];
    TensorList tl = {g_array_new(FALSE, TRUE, sizeof(PxTensorSpec)), ""};
    add_norm(&tl, d, "ln_f", PX_ROLE_FINAL_NORM);
    l->kind = PX_LAYER_FINAL_NORM;
    l->type_name = d->norm == PX_NORM_RMSNORM ? "RMSNorm" : "LayerNorm";
    l->index = li++;
    l->block = -1;
    finish_layer(l, &tl);
  }
  {
    PxLayer *l = &m->layers[li];
    TensorList tl = {g_array_new(FALSE, TRUE, sizeof(PxTensorSpec)), ""};
    if (!d->tied) add_tensor(&tl, "lm_head.weight", PX_ROLE_LM_HEAD, d->vocab, h, PX_SPLIT_ROWS);
    l->kind = PX_LAYER_LM_HEAD;
    l->type_name = "LMHead";
    l->index = li++;
    l->block = -1;
    finish_layer(l, &tl);
    l->tied_params = d->tied ? (gint64)d->vocab * h : 0;
    l->tied_tensor = d->tied ? &m->layers[0].tensors[0] : NULL; /* wte */
  }
  for (guint i = 0; i < m->n_layers; i++) {
    const PxLayer *l = &m->layers[i];
    m->params += l->params;
    m->active_params += l->params;
    for (guint t = 0; t < l->n_tensors; t++)
      if (l->tensors[t].experts > 0) /* a token uses k of the E experts */
        m->active_params -= l->tensors[t].shape[0] * l->tensors[t].shape[1] / d->experts * (d->experts - d->top_k);
  }
  return m;
}

void px_model_free(PxModel *m) {
  if (!m) return;
  for (guint i = 0; i < m->n_layers; i++) {
    for (guint t = 0; t < m->layers[i].n_tensors; t++) g_free(m->layers[i].tensors[t].name);
    g_free(m->layers[i].tensors);
  }
  g_free(m->layers);
  g_free(m->desc.name);
  g_free(m);
}

/* ---- per-TP-rank sizes and FLOPs ----------------------------------------- */

/* Elements of a tensor on one TP rank. A split dim is divided by tp, rounding
 * up: Megatron pads the vocabulary to a multiple of tp; other split dims are
 * checked divisible by the plan validator. */
static gint64 tensor_elems_tp(const PxTensorSpec *t, int tp) {
  gint64 d0 = t->shape[0], d1 = t->shape[1];
  if (t->split == PX_SPLIT_ROWS) d0 = (d0 + tp - 1) / tp;
  else if (t->split == PX_SPLIT_COLS) d1 = (d1 + tp - 1) / tp;
  return d0 * d1;
}

gint64 px_layer_params_tp(const PxLayer *layer, int tp) {
  gint64 n = 0;
  for (guint i = 0; i < layer->n_tensors; i++) n += tensor_elems_tp(&layer->tensors[i], tp);
  return n;
}

void px_layer_params_split(const PxLayer *layer, int tp, int ep, int etp, gint64 *dense, gint64 *expert) {
  gint64 nd = 0, ne = 0;
  for (guint i = 0; i < layer->n_tensors; i++) {
    const PxTensorSpec *t = &layer->tensors[i];
    if (t->experts > 0) {
      /* E/ep experts of (out, in) each, out (rows) or in (cols) over etp */
      PxTensorSpec one = *t;
      one.shape[0] = t->shape[0] / t->experts;
      ne += tensor_elems_tp(&one, MAX(etp, 1)) * (t->experts / MAX(ep, 1));
    } else {
      nd += tensor_elems_tp(t, tp);
    }
  }
  if (dense) *dense = nd;
  if (expert) *expert = ne;
}

gint64 px_layer_stored_params_tp(const PxLayer *layer, int tp) {
  return px_layer_params_tp(layer, tp) + (layer->tied_tensor ? tensor_elems_tp(layer->tied_tensor, tp) : 0);
}

gint64 px_model_range_stored_params_tp(const PxModel *model, int first, int end, int tp) {
  gint64 n = 0;
  for (int i = first; i < end; i++) {
    const PxLayer *l = &model->layers[i];
    gboolean owner_held = l->tied_tensor && first == 0; /* the embedding is layer 0 */
    n += owner_held ? px_layer_params_tp(l, tp) : px_layer_stored_params_tp(l, tp);
  }
  return n;
}

double px_layer_forward_flops(const PxModel *model, const PxLayer *layer, int seq) {
  const PxModelDesc *d = &model->desc;
  double s = seq, h = d->hidden;
  switch (layer->kind) {
  case PX_LAYER_BLOCK: {
    double gemm = 0;
    for (guint i = 0; i < layer->n_tensors; i++) {
      const PxTensorSpec *t = &layer->tensors[i];
      /* routed experts: each token multiplies by top_k of the E (active parameters) */
      double share = t->experts > 0 ? (double)d->top_k / t->experts : 1.0;
      if (t->ndim == 2) gemm += share * (double)t->shape[0] * t->shape[1];
    }
    /* QK^T and PV: 2 · 2 · s · span · (heads · head_dim) */
    return 2.0 * s * gemm + 4.0 * s * px_model_attn_span(d, seq) * (double)px_model_q_dim(d);
  }
  case PX_LAYER_LM_HEAD:
    return 2.0 * s * h * d->vocab;
  default:
    return 0.0; /* lookups and norms: memory-bound, negligible FLOPs */
  }
}

gint64 px_model_block_params(const PxModel *model) {
  gint64 n = 0;
  for (guint i = 0; i < model->n_layers; i++)
    if (model->layers[i].kind == PX_LAYER_BLOCK) n += model->layers[i].params;
  return n;
}

/* ---- loading: model INI ---------------------------------------------------- */

#define MODEL_INT(key, opt, def, min, field)                                                     \
  if (!px_config_get_int32(kf, path, "model", key, opt, def, min, &field, PX_MODEL_ERROR,            \
                           PX_MODEL_ERROR_INVALID, error))                                           \
    return NULL
#define MODEL_DOUBLE(key, field)                                                                     \
  if (!px_config_get_double(kf, path, "model", key, TRUE, 0, 0, &field, PX_MODEL_ERROR,              \
                            PX_MODEL_ERROR_INVALID, error))                                          \
    return NULL
#define MODEL_BOOL(key, field)                                                                       \
  if (!px_config_get_bool(kf, path, "model", key, FALSE, &field, PX_MODEL_ERROR,                     \
                          PX_MODEL_ERROR_INVALID, error))                                            \
    return NULL

/* Parse one of a fixed set of names; NULL string keeps *out. */
static gboolean parse_choice(const char *path, const char *key, const char *value,
                             const char *const *names, int n, int *out, GError **error) {
  if (!value) return TRUE;
  for (int i = 0; i < n; i++)
    if (!g_ascii_strcasecmp(value, names[i])) { *out = i; return TRUE; }
  g_autofree char *choices = g_strjoinv(", ", (char **)names);
  g_set_error(error, PX_MODEL_ERROR, PX_MODEL_ERROR_INVALID, "%s: %s = '%s' is not one of %s", path,
              key, value, choices);
  return FALSE;
}

static const char *const ini_keys[] = {
  "name", "layers", "hidden", "heads", "kv_heads", "ffn", "vocab", "max_seq", "seq", "ffn_kind", "norm",
  "position", "bias", "qkv_bias", "tied", "dropout", "head_dim", "rope_theta", "norm_eps", "rotary_pct",
  "sliding_window", "parallel_attn", "rope_scaled", "embed_scale", "norm_offset", "experts", "top_k", "expert_ffn",
  "shared_experts", "shared_ffn", "shared_gate", "moe_every", "moe_first_dense", "capacity_factor", "aux_loss_coef",
  "qk_norm", "norm_topk", NULL};

PxModel *px_model_load_ini(const char *path, GError **error) {
  g_autoptr(GKeyFile) kf = px_config_load_keyfile(path, PX_MODEL_ERROR, PX_MODEL_ERROR_PARSE, error);
  if (!kf) return NULL;
  if (!g_key_file_has_group(kf, "model")) {
    g_set_error(error, PX_MODEL_ERROR, PX_MODEL_ERROR_PARSE, "%s: no [model] group", path);
    return NULL;
  }
  /* a second group was never read */
  g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
  for (int i = 0; groups && groups[i]; i++)
    if (strcmp(groups[i], "model")) {
      g_set_error(error, PX_MODEL_ERROR, PX_MODEL_ERROR_PARSE, "%s: [%s] is not a model group (only [model])", path,
                  groups[i]);
      return NULL;
    }
  /* a misspelt key would silently keep a default */
  g_auto(GStrv) keys = g_key_file_get_keys(kf, "model", NULL, NULL);
  for (int i = 0; keys && keys[i]; i++)
    if (!g_strv_contains(ini_keys, keys[i])) {
      g_set_error(error, PX_MODEL_ERROR, PX_MODEL_ERROR_PARSE, "%s: [model] %s is not a model key", path, keys[i]);
      return NULL;
    }
  PxModelDesc d = {0};
  g_autofree char *name = NULL, *ffn_kind = NULL, *norm = NULL, *pos = NULL;
  if (!px_config_get_string(kf, path, "model", "name", TRUE, &name, PX_MODEL_ERROR,
                            PX_MODEL_ERROR_INVALID, error))
    return NULL;
  MODEL_INT("layers", FALSE, 0, 1, d.layers);
  MODEL_INT("hidden", FALSE, 0, 1, d.hidden);
  MODEL_INT("heads", FALSE, 0, 1, d.heads);
  MODEL_INT("kv_heads", TRUE, d.heads, 1, d.kv_heads);
  MODEL_INT("ffn", TRUE, MIN(4 * (gint64)d.hidden, G_MAXINT), 1, d.ffn);
  MODEL_INT("vocab", FALSE, 0, 1, d.vocab);
  MODEL_INT("max_seq", FALSE, 0, 1, d.max_seq);
  MODEL_INT("seq", TRUE, 0, 1, d.default_seq);
  MODEL_INT("head_dim", TRUE, 0, 1, d.head_dim);
  MODEL_INT("sliding_window", TRUE, 0, 1, d.sliding_window);
  MODEL_INT("experts", TRUE, 0, 0, d.experts);
  MODEL_INT("top_k", TRUE, 0, 1, d.top_k);
  MODEL_INT("expert_ffn", TRUE, 0, 1, d.expert_ffn);
  MODEL_INT("shared_experts", TRUE, 0, 0, d.shared_experts);
  MODEL_INT("shared_ffn", TRUE, 0, 1, d.shared_ffn);
  MODEL_INT("moe_every", TRUE, 0, 1, d.moe_every);
  MODEL_INT("moe_first_dense", TRUE, 0, 0, d.moe_first_dense);
  MODEL_DOUBLE("capacity_factor", d.capacity_factor);
  MODEL_DOUBLE("aux_loss_coef", d.aux_loss_coef);
  MODEL_BOOL("shared_gate", d.shared_gate);
  MODEL_BOOL("qk_norm", d.qk_norm);
  MODEL_BOOL("norm_topk", d.norm_topk);
  MODEL_DOUBLE("rope_theta", d.rope_theta);
  MODEL_DOUBLE("norm_eps", d.norm_eps);
  MODEL_DOUBLE("rotary_pct", d.rotary_pct);
  static const char *const norm_names[] = {"layernorm", "rmsnorm", NULL};
  static const char *const pos_names[] = {"learned", "rope", NULL};
  int fk = PX_FFN_GELU, nk = PX_NORM_LAYERNORM, pk = PX_POS_LEARNED;
  if (!px_config_get_string(kf, path, "model", "ffn_kind", TRUE, &ffn_kind, PX_MODEL_ERROR,
                            PX_MODEL_ERROR_INVALID, error) ||
      !px_config_get_string(kf, path, "model", "norm", TRUE, &norm, PX_MODEL_ERROR,
                            PX_MODEL_ERROR_INVALID, error) ||
      !px_config_get_string(kf, path, "model", "position", TRUE, &pos, PX_MODEL_ERROR,
                            PX_MODEL_ERROR_INVALID, error) ||
      !parse_choice(path, "ffn_kind", ffn_kind, ffn_names, 4, &fk, error) ||
      !parse_choice(path, "norm", norm, norm_names, 2, &nk, error) ||
      !parse_choice(path, "position", pos, pos_names, 2, &pk, error))
    return NULL;
  d.ffn_kind = fk;
  d.norm = nk;
  d.pos = pk;
  MODEL_BOOL("bias", d.bias);
  MODEL_BOOL("qkv_bias", d.qkv_bias);
  MODEL_BOOL("tied", d.tied);
  MODEL_BOOL("dropout", d.dropout);
  MODEL_BOOL("parallel_attn", d.parallel_attn);
  MODEL_BOOL("rope_scaled", d.rope_scaled);
  MODEL_BOOL("embed_scale", d.embed_scale);
  MODEL_BOOL("norm_offset", d.norm_offset);
  /* 0 in the description means "default"; a key given as 0 is not a default */
  struct { const char *key; double v; } nonzero[] = {
    {"rope_theta", d.rope_theta}, {"norm_eps", d.norm_eps}, {"rotary_pct", d.rotary_pct}};
  for (gsize i = 0; i < G_N_ELEMENTS(nonzero); i++)
    if (g_key_file_has_key(kf, "model", nonzero[i].key, NULL) && nonzero[i].v <= 0) {
      g_set_error(error, PX_MODEL_ERROR, PX_MODEL_ERROR_INVALID, "%s: [model] %s must be positive", path,
                  nonzero[i].key);
      return NULL;
    }
  /* the size of a shared expert without shared experts was ignored (validation fills it from expert_ffn) */
  if (g_key_file_has_key(kf, "model", "shared_ffn", NULL) && d.shared_experts == 0 && d.experts > 0) {
    g_set_error(error, PX_MODEL_ERROR, PX_MODEL_ERROR_INVALID, "%s: [model] shared_ffn needs shared_experts (the "
                "FFN size of a shared expert; there are none)", path);
    return NULL;
  }
  /* the rotary keys describe rotary positions: with learned ones they were ignored */
  static const char *const rope_keys[] = {"rope_theta", "rotary_pct", "rope_scaled"};
  for (gsize i = 0; d.pos != PX_POS_ROPE && i < G_N_ELEMENTS(rope_keys); i++)
    if (g_key_file_has_key(kf, "model", rope_keys[i], NULL) && (strcmp(rope_keys[i], "rope_scaled") || d.rope_scaled)) {
      g_set_error(error, PX_MODEL_ERROR, PX_MODEL_ERROR_INVALID, "%s: [model] %s needs position = rope (positions are learned)",
                  path, rope_keys[i]);
      return NULL;
    }
  g_autofree char *base = g_path_get_basename(path);
  if (g_str_has_suffix(base, ".ini")) base[strlen(base) - 4] = '\0';
  d.name = name ? name : base;
  return px_model_new(&d, error);
}

/* ---- loading: Hugging Face config.json -------------------------------------- */

/* Reading context: every key read is marked; a key neither read nor known
 * to leave the model unchanged is refused (never guessed). */
typedef struct {
  JsonObject *o;
  const char *path, *type;
  GHashTable *read; /* keys read (borrowed strings) */
  GError **error;
} Hf;

static gboolean hf_fail(Hf *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static gboolean hf_fail(Hf *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  g_autofree char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_set_error(c->error, PX_MODEL_ERROR, PX_MODEL_ERROR_INVALID, "%s: %s", c->path, msg);
  return FALSE;
}

/* The member, or NULL when absent or null; marks it read. */
static JsonNode *hf_member(Hf *c, const char *key) {
  g_hash_table_add(c->read, (gpointer)key);
  JsonNode *n = json_object_get_member(c->o, key);
  return n && !JSON_NODE_HOLDS_NULL(n) ? n : NULL;
}

static gboolean hf_int(Hf *c, const char *key, gboolean optional, int def, int *out) {
  hf_member(c, key);
  return px_json_get_int32(c->o, c->path, key, optional, def, 1, out, PX_MODEL_ERROR, PX_MODEL_ERROR_INVALID, c->error);
}

/* A number member ≥ 0 (int or float); absent keeps def. */
static gboolean hf_double(Hf *c, const char *key, double def, double *out) {
  JsonNode *n = hf_member(c, key);
  if (!n) { *out = def; return TRUE; }
  GType t = JSON_NODE_HOLDS_VALUE(n) ? json_node_get_value_type(n) : G_TYPE_INVALID;
  if (t != G_TYPE_INT64 && t != G_TYPE_DOUBLE) return hf_fail(c, "\"%s\" must be a number", key);
  double v = json_node_get_double(n);
  if (!isfinite(v) || v < 0) return hf_fail(c, "\"%s\" = %g must be a non-negative number", key, v);
  *out = v;
  return TRUE;
}

/* A positive number: 0 in PxModelDesc means "the default", so an epsilon,
 * rotary base or rotary share given as 0 became 1e-5, 10000 or the whole
 * head without a word. */
static gboolean hf_positive(Hf *c, const char *key, double def, double *out) {
  if (!hf_double(c, key, def, out)) return FALSE;
  if (*out == 0) return hf_fail(c, "\"%s\" = 0 must be positive", key);
  return TRUE;
}

static gboolean hf_bool(Hf *c, const char *key, gboolean def, gboolean *out) {
  JsonNode *n = hf_member(c, key);
  if (!n) { *out = def; return TRUE; }
  if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN)
    return hf_fail(c, "\"%s\" must be true or false", key);
  *out = json_node_get_boolean(n);
  return TRUE;
}

/* A string member (NULL when absent). */
static gboolean hf_string(Hf *c, const char *key, const char **out) {
  JsonNode *n = hf_member(c, key);
  *out = NULL;
  if (!n) return TRUE;
  if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
    return hf_fail(c, "\"%s\" must be a string", key);
  *out = json_node_get_string(n);
  return TRUE;
}

/* The key, if present and not null/false/0, changes the model in a way the
 * description cannot hold: refuse naming it. */
static gboolean hf_refuse_if_set(Hf *c, const char *key, const char *why) {
  JsonNode *n = hf_member(c, key);
  if (!n) return TRUE;
  if (JSON_NODE_HOLDS_VALUE(n)) {
    GType t = json_node_get_value_type(n);
    if ((t == G_TYPE_BOOLEAN && !json_node_get_boolean(n)) || (t == G_TYPE_INT64 && json_node_get_int(n) == 0) ||
        (t == G_TYPE_DOUBLE && json_node_get_double(n) == 0))
      return TRUE;
  }
  return hf_fail(c, "model_type %s: \"%s\" is set: %s, which this tool does not represent", c->type, key, why);
}

/* The activation must be one of names (NULL-terminated). */
static gboolean hf_activation(Hf *c, const char *key, const char *def, const char *const *names) {
  const char *act;
  if (!hf_string(c, key, &act)) return FALSE;
  if (!act) act = def;
  if (!g_strv_contains(names, act)) {
    g_autofree char *list = g_strjoinv(", ", (char **)names);
    return hf_fail(c, "model_type %s: %s \"%s\" is not represented (known: %s)", c->type, key, act, list);
  }
  return TRUE;
}

/* Dropout probabilities (absent: the config class's default def): any
 * non-zero one turns the description's dropout on. */
static gboolean hf_dropout(Hf *c, const char *const *keys, double def, gboolean *dropout) {
  for (int i = 0; keys[i]; i++) {
    double p = def; /* set by hf_double; initialised for -O3's flow analysis */
    if (!hf_double(c, keys[i], def, &p)) return FALSE;
    if (p >= 1) return hf_fail(c, "\"%s\" = %g must be below 1", keys[i], p);
    if (p > 0) *dropout = TRUE;
  }
  return TRUE;
}

/* Keys of every Hugging Face PretrainedConfig (and of the files around it)
 * that name tokens, generation defaults or bookkeeping, never the network. */
static const char *const hf_harmless[] = {
  "_name_or_path", "architectures", "auto_map", "bos_token_id", "eos_token_id", "pad_token_id",
  "sep_token_id", "decoder_start_token_id", "torch_dtype", "transformers_version", "use_cache",
  "initializer_range", "output_attentions", "output_hidden_states", "return_dict", "torchscript",
  "pruned_heads", "chunk_size_feed_forward", "tokenizer_class", "prefix", "task_specific_params",
  "problem_type", "id2label", "label2id", "finetuning_task", "max_length", "min_length", "do_sample",
  "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p",
  "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
  "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores",
  "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
  "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens", "tf_legacy_loss",
  "use_bfloat16", "pretraining_tp", "model_type", "summary_type", "summary_use_proj", "summary_activation",
  "summary_proj_to_labels", "summary_first_dropout", "classifier_dropout", "reorder_and_upcast_attn",
  "original_max_position_embeddings", "max_window_layers", "rope_parameters_comment", "quantization_comment",
  NULL};

/* Keys that change the network beyond what a dense decoder-only description
 * holds, whatever the model_type. */
static gboolean hf_refuse_common(Hf *c, gboolean moe) {
  static const struct { const char *key, *why; } refuse[] = {
    {"num_local_experts", "a mixture of experts"}, {"num_experts", "a mixture of experts"},
    {"n_routed_experts", "a mixture of experts"}, {"moe_intermediate_size", "a mixture of experts"},
    {"num_experts_per_tok", "a mixture of experts"}, {"is_encoder_decoder", "an encoder-decoder"},
    {"add_cross_attention", "cross-attention"}, {"quantization_config", "quantized weights"},
    {"tie_encoder_decoder", "an encoder-decoder"}, {"scale_attn_by_inverse_layer_idx", "per-layer attention scaling"},
    {"attn_logit_softcapping", "soft-capped attention logits"}, {"final_logit_softcapping", "soft-capped logits"}};
  for (gsize i = 0; i < G_N_ELEMENTS(refuse); i++) {
    /* an MoE model_type reads its own expert keys */
    if (moe && !strcmp(refuse[i].why, "a mixture of experts")) continue;
    if (!hf_refuse_if_set(c, refuse[i].key, refuse[i].why)) return FALSE;
  }
  return TRUE;
}

/* gpt2: n_layer, n_embd, n_head, n_inner (null: 4h), n_positions,
 * vocab_size; GELU MLP, LayerNorm with biases, learned positions, tied. */
static gboolean hf_gpt2(Hf *c, PxModelDesc *d) {
  static const char *const acts[] = {"gelu_new", "gelu", "gelu_fast", "gelu_pytorch_tanh", NULL};
  static const char *const drops[] = {"resid_pdrop", "embd_pdrop", "attn_pdrop", NULL};
  int n_ctx;
  gboolean scale = TRUE;
  if (!hf_int(c, "n_layer", FALSE, 0, &d->layers) || !hf_int(c, "n_embd", FALSE, 0, &d->hidden) ||
      !hf_int(c, "n_head", FALSE, 0, &d->heads) || !hf_int(c, "vocab_size", FALSE, 0, &d->vocab) ||
      !hf_int(c, "n_positions", FALSE, 0, &d->max_seq) || !hf_int(c, "n_ctx", TRUE, d->max_seq, &n_ctx) ||
      !hf_int(c, "n_inner", TRUE, (int)MIN(4 * (gint64)d->hidden, G_MAXINT), &d->ffn) ||
      !hf_positive(c, "layer_norm_epsilon", 1e-5, &d->norm_eps) ||
      !hf_activation(c, "activation_function", "gelu_new", acts) || !hf_dropout(c, drops, 0.1, &d->dropout) ||
      !hf_bool(c, "tie_word_embeddings", TRUE, &d->tied) || !hf_bool(c, "scale_attn_weights", TRUE, &scale))
    return FALSE;
  if (!scale) return hf_fail(c, "\"scale_attn_weights\" = false (unscaled attention) is not represented");
  d->kv_heads = d->heads;
  d->ffn_kind = PX_FFN_GELU;
  d->norm = PX_NORM_LAYERNORM;
  d->pos = PX_POS_LEARNED;
  d->bias = TRUE;
  return TRUE;
}

/* A number in rope_scaling: finite and above 0 (at least 0 when !positive);
 * absent leaves *out and gives *given FALSE. */
static gboolean rope_number(Hf *c, JsonObject *rs, const char *key, gboolean positive, double *out, gboolean *given) {
  JsonNode *n = json_object_get_member(rs, key);
  *given = n && !JSON_NODE_HOLDS_NULL(n);
  if (!*given) return TRUE;
  GType t = JSON_NODE_HOLDS_VALUE(n) ? json_node_get_value_type(n) : G_TYPE_INVALID;
  if (t != G_TYPE_INT64 && t != G_TYPE_DOUBLE) return hf_fail(c, "rope_scaling \"%s\" must be a number", key);
  double v = json_node_get_double(n);
  if (!isfinite(v) || v < 0 || (positive && v == 0))
    return hf_fail(c, "rope_scaling \"%s\" = %g must be a finite number %s 0", key, v, positive ? "above" : "of at least");
  *out = v;
  return TRUE;
}

/* longrope's per-frequency factors: one positive number for each of the
 * rotary_dim / 2 frequencies. */
static gboolean rope_factor_list(Hf *c, JsonObject *rs, const char *key, int rotary_dim) {
  JsonNode *n = json_object_get_member(rs, key);
  if (!JSON_NODE_HOLDS_ARRAY(n)) return hf_fail(c, "rope_scaling \"%s\" must be a list of numbers", key);
  JsonArray *a = json_node_get_array(n);
  guint len = json_array_get_length(a);
  if ((int)len != rotary_dim / 2)
    return hf_fail(c, "rope_scaling \"%s\" has %u values, not %d (one for each of the %d rotary dimensions' pairs)", key,
                   len, rotary_dim / 2, rotary_dim);
  for (guint i = 0; i < len; i++) {
    JsonNode *e = json_array_get_element(a, i);
    GType t = JSON_NODE_HOLDS_VALUE(e) ? json_node_get_value_type(e) : G_TYPE_INVALID;
    double v = t == G_TYPE_INT64 || t == G_TYPE_DOUBLE ? json_node_get_double(e) : NAN;
    if (!isfinite(v) || v <= 0)
      return hf_fail(c, "rope_scaling \"%s\" value %u is not a finite number above 0", key, i + 1);
  }
  return TRUE;
}

/* rope_scaling as transformers checks it (modeling_rope_utils.py,
 * rope_config_validation, and the configs' own renames): its rope_type (or
 * "type", older configs' spelling) names the keys it needs and those it may
 * have, and a factor no position could be scaled by is refused. The counts
 * and costs do not depend on it (the executor refuses rescaled positions);
 * a scaling no model could run with is refused here rather than carried. */
static gboolean hf_rope_scaling(Hf *c, const PxModelDesc *d) {
  static const struct { const char *type, *required, *optional; } kinds[] = {
    {"default", "", ""},
    {"linear", "factor", ""},
    {"dynamic", "factor", "original_max_position_embeddings"},
    {"yarn", "factor", "attention_factor beta_fast beta_slow original_max_position_embeddings mscale mscale_all_dim truncate"},
    {"longrope", "short_factor long_factor", "attention_factor factor original_max_position_embeddings"},
    {"llama3", "factor original_max_position_embeddings low_freq_factor high_freq_factor", ""},
  };
  JsonNode *node = json_object_get_member(c->o, "rope_scaling");
  if (!node || JSON_NODE_HOLDS_NULL(node)) return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT(node)) return hf_fail(c, "\"rope_scaling\" must be an object or null");
  JsonObject *rs = json_node_get_object(node);
  const char *type = NULL, *names[] = {"rope_type", "type"};
  for (int i = 0; i < 2; i++) {
    JsonNode *n = json_object_get_member(rs, names[i]);
    if (!n) continue;
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
      return hf_fail(c, "rope_scaling \"%s\" must be a string", names[i]);
    const char *t = json_node_get_string(n);
    if (type && strcmp(type, t))
      return hf_fail(c, "rope_scaling \"rope_type\" = \"%s\" and \"type\" = \"%s\" disagree", type, t);
    type = t;
  }
  if (!type) return hf_fail(c, "rope_scaling has no \"rope_type\" (nor \"type\"): it names the scaling");
  /* Phi3Config renames its older configs' "su" and "yarn" to longrope */
  if (!strcmp(c->type, "phi3") && (!strcmp(type, "su") || !strcmp(type, "yarn"))) type = "longrope";
  gsize k = 0;
  while (k < G_N_ELEMENTS(kinds) && strcmp(kinds[k].type, type)) k++;
  if (k == G_N_ELEMENTS(kinds))
    return hf_fail(c, "rope_scaling \"rope_type\" = \"%s\" is not one of default, linear, dynamic, yarn, longrope, llama3",
                   type);
  g_auto(GStrv) required = g_strsplit(kinds[k].required, " ", -1);
  g_auto(GStrv) optional = g_strsplit(kinds[k].optional, " ", -1);
  for (int i = 0; required[i] && *required[i]; i++) {
    JsonNode *n = json_object_get_member(rs, required[i]);
    if (!n || JSON_NODE_HOLDS_NULL(n))
      return hf_fail(c, "rope_scaling of rope_type %s needs \"%s\"", type, required[i]);
  }
  g_autoptr(GList) members = json_object_get_members(rs);
  for (GList *m = members; m; m = m->next)
    if (strcmp(m->data, "rope_type") && strcmp(m->data, "type") && !g_strv_contains((const char *const *)required, m->data) &&
        !g_strv_contains((const char *const *)optional, m->data))
      return hf_fail(c, "rope_scaling \"%s\" is not a key of rope_type %s (%s%s%s)", (const char *)m->data, type,
                     kinds[k].required, *kinds[k].required && *kinds[k].optional ? " " : "", kinds[k].optional);
  double factor, att, orig, low, high, fast = 32, slow = 1, mscale, mscale_all;
  gboolean given, has_low, has_high, has_fast, has_slow;
  if (!rope_number(c, rs, "factor", TRUE, &factor, &given) || !rope_number(c, rs, "attention_factor", TRUE, &att, &given) ||
      !rope_number(c, rs, "mscale", FALSE, &mscale, &given) || !rope_number(c, rs, "mscale_all_dim", FALSE, &mscale_all, &given) ||
      !rope_number(c, rs, "low_freq_factor", TRUE, &low, &has_low) ||
      !rope_number(c, rs, "high_freq_factor", TRUE, &high, &has_high) ||
      !rope_number(c, rs, "beta_fast", TRUE, &fast, &has_fast) || !rope_number(c, rs, "beta_slow", TRUE, &slow, &has_slow) ||
      !rope_number(c, rs, "original_max_position_embeddings", TRUE, &orig, &given))
    return FALSE;
  /* llama3 interpolates between the two wavelengths: (x - low) / (high - low) */
  if (has_low && has_high && high <= low)
    return hf_fail(c, "rope_scaling \"high_freq_factor\" = %g must be above \"low_freq_factor\" = %g", high, low);
  /* yarn ramps from beta_slow up to beta_fast (defaults 1 and 32) */
  if ((has_fast || has_slow) && fast < slow)
    return hf_fail(c, "rope_scaling \"beta_fast\" = %g must be at least \"beta_slow\" = %g", fast, slow);
  if (given && (orig != floor(orig) || orig > d->max_seq))
    return hf_fail(c, "rope_scaling \"original_max_position_embeddings\" = %g must be a whole number of at most "
                      "\"max_position_embeddings\" = %d (the context it was trained for, before the scaling)", orig, d->max_seq);
  JsonNode *trunc = json_object_get_member(rs, "truncate");
  if (trunc && (!JSON_NODE_HOLDS_VALUE(trunc) || json_node_get_value_type(trunc) != G_TYPE_BOOLEAN))
    return hf_fail(c, "rope_scaling \"truncate\" must be true or false");
  if (!strcmp(kinds[k].type, "longrope")) {
    int rotary_dim = rotary_dims(d);
    if (!rope_factor_list(c, rs, "short_factor", rotary_dim) || !rope_factor_list(c, rs, "long_factor", rotary_dim))
      return FALSE;
  }
  return TRUE;
}

/* The Llama family's keys (llama, mistral, qwen2, gemma, phi3): RMSNorm,
 * rotary positions, gated MLP, no biases. */
static gboolean hf_llama_like(Hf *c, PxModelDesc *d, gboolean tied_default) {
  static const char *const drops[] = {"attention_dropout", NULL};
  d->rope_scaled = hf_member(c, "rope_scaling") != NULL;
  if (!hf_refuse_if_set(c, "attention_bias", "biases on all attention projections") ||
      !hf_refuse_if_set(c, "mlp_bias", "biases in the MLP"))
    return FALSE;
  int hd = 0;
  if (!hf_int(c, "num_hidden_layers", FALSE, 0, &d->layers) || !hf_int(c, "hidden_size", FALSE, 0, &d->hidden) ||
      !hf_int(c, "num_attention_heads", FALSE, 0, &d->heads) ||
      !hf_int(c, "num_key_value_heads", TRUE, d->heads, &d->kv_heads) ||
      !hf_int(c, "intermediate_size", FALSE, 0, &d->ffn) || !hf_int(c, "vocab_size", FALSE, 0, &d->vocab) ||
      !hf_int(c, "max_position_embeddings", FALSE, 0, &d->max_seq) || !hf_int(c, "head_dim", TRUE, 0, &hd) ||
      !hf_positive(c, "rms_norm_eps", 1e-6, &d->norm_eps) || !hf_positive(c, "rope_theta", 10000, &d->rope_theta) ||
      !hf_positive(c, "partial_rotary_factor", 1.0, &d->rotary_pct) || !hf_dropout(c, drops, 0.0, &d->dropout) ||
      !hf_bool(c, "tie_word_embeddings", tied_default, &d->tied))
    return FALSE;
  d->head_dim = hd;
  if (!hf_rope_scaling(c, d)) return FALSE;
  d->ffn_kind = PX_FFN_SWIGLU;
  d->norm = PX_NORM_RMSNORM;
  d->pos = PX_POS_ROPE;
  return TRUE;
}

static const char *const silu_acts[] = {"silu", "swish", NULL};

static gboolean hf_llama(Hf *c, PxModelDesc *d) {
  return hf_llama_like(c, d, FALSE) && hf_activation(c, "hidden_act", "silu", silu_acts);
}

static gboolean hf_sliding_window(Hf *c, PxModelDesc *d) {
  int w = 0;
  if (!hf_int(c, "sliding_window", TRUE, 0, &w)) return FALSE;
  d->sliding_window = w;
  return TRUE;
}

static gboolean hf_mistral(Hf *c, PxModelDesc *d) {
  return hf_llama(c, d) && hf_sliding_window(c, d);
}

/* qwen2: Llama with biases on Q, K and V; a sliding window only when
 * use_sliding_window, and then only on some layers (not represented). */
static gboolean hf_qwen2(Hf *c, PxModelDesc *d) {
  int w;
  if (!hf_refuse_if_set(c, "use_sliding_window", "sliding-window attention on some layers") || !hf_llama(c, d) ||
      !hf_int(c, "sliding_window", TRUE, 0, &w))
    return FALSE;
  d->qkv_bias = TRUE;
  return TRUE;
}

/* gemma: GeGLU, head_dim, tied by default, embeddings scaled by sqrt(h),
 * RMSNorm by (1 + w). */
static gboolean hf_gemma(Hf *c, PxModelDesc *d) {
  static const char *const acts[] = {"gelu", "gelu_pytorch_tanh", "gelu_new", NULL};
  if (!hf_llama_like(c, d, TRUE) || !hf_activation(c, "hidden_act", "gelu_pytorch_tanh", acts) ||
      !hf_activation(c, "hidden_activation", "gelu_pytorch_tanh", acts))
    return FALSE;
  d->ffn_kind = PX_FFN_GEGLU;
  d->embed_scale = d->norm_offset = TRUE;
  return TRUE;
}

/* phi3: Llama's tensors (QKV and gate/up stored fused: same counts), untied,
 * an optional sliding window. */
static gboolean hf_phi3(Hf *c, PxModelDesc *d) {
  static const char *const drops[] = {"resid_pdrop", "embd_pdrop", NULL};
  return hf_llama(c, d) && hf_sliding_window(c, d) && hf_dropout(c, drops, 0.0, &d->dropout);
}

/* gpt_neox: LayerNorm and linear biases, GELU MLP, untied, rotary on
 * rotary_pct of each head (base rotary_emb_base), parallel attention + MLP. */
static gboolean hf_gpt_neox(Hf *c, PxModelDesc *d) {
  static const char *const acts[] = {"gelu", "gelu_fast", "gelu_new", "gelu_pytorch_tanh", NULL};
  static const char *const drops[] = {"hidden_dropout", "attention_dropout", NULL};
  d->rope_scaled = hf_member(c, "rope_scaling") != NULL;
  gboolean bias = TRUE;
  if (!hf_int(c, "num_hidden_layers", FALSE, 0, &d->layers) || !hf_int(c, "hidden_size", FALSE, 0, &d->hidden) ||
      !hf_int(c, "num_attention_heads", FALSE, 0, &d->heads) || !hf_int(c, "intermediate_size", FALSE, 0, &d->ffn) ||
      !hf_int(c, "vocab_size", FALSE, 0, &d->vocab) || !hf_int(c, "max_position_embeddings", FALSE, 0, &d->max_seq) ||
      !hf_positive(c, "layer_norm_eps", 1e-5, &d->norm_eps) || !hf_positive(c, "rotary_pct", 0.25, &d->rotary_pct) ||
      !hf_positive(c, "rotary_emb_base", 10000, &d->rope_theta) || !hf_dropout(c, drops, 0.0, &d->dropout) ||
      !hf_activation(c, "hidden_act", "gelu", acts) || !hf_bool(c, "tie_word_embeddings", FALSE, &d->tied) ||
      !hf_bool(c, "use_parallel_residual", TRUE, &d->parallel_attn) || !hf_bool(c, "attention_bias", TRUE, &bias) ||
      !hf_rope_scaling(c, d))
    return FALSE;
  if (!bias) return hf_fail(c, "model_type gpt_neox: \"attention_bias\" = false (a biased MLP with unbiased attention) is not represented");
  d->kv_heads = d->heads;
  d->ffn_kind = PX_FFN_GELU;
  d->norm = PX_NORM_LAYERNORM;
  d->pos = PX_POS_ROPE;
  d->bias = TRUE;
  return TRUE;
}

/* The router keys every MoE model_type shares: experts (under the type's
 * key), top-k, the load-balancing loss weight, and what only changes
 * outputs or noise. */
static gboolean hf_router(Hf *c, PxModelDesc *d, const char *experts_key) {
  gboolean out_logits, norm_topk;
  double jitter;
  if (!hf_int(c, experts_key, FALSE, 0, &d->experts) || !hf_int(c, "num_experts_per_tok", FALSE, 0, &d->top_k) ||
      !hf_double(c, "router_aux_loss_coef", 0.001, &d->aux_loss_coef) ||
      !hf_bool(c, "output_router_logits", FALSE, &out_logits) || !hf_bool(c, "norm_topk_prob", FALSE, &norm_topk) ||
      !hf_double(c, "router_jitter_noise", 0.0, &jitter))
    return FALSE;
  d->norm_topk = norm_topk;
  return TRUE;
}

/* Qwen-MoE's layer rule: block b is sparse when (b + 1) % decoder_sparse_step
 * == 0 and b is not in mlp_only_layers (only an empty list is represented). */
static gboolean hf_qwen_moe_layers(Hf *c, PxModelDesc *d) {
  JsonNode *only = hf_member(c, "mlp_only_layers");
  if (only && (!JSON_NODE_HOLDS_ARRAY(only) || json_array_get_length(json_node_get_array(only)) > 0))
    return hf_fail(c, "model_type %s: \"mlp_only_layers\" lists dense layers one by one, which this tool does not "
                      "represent (it has every k-th and first-k dense)", c->type);
  return hf_int(c, "decoder_sparse_step", TRUE, 1, &d->moe_every) && hf_int(c, "moe_intermediate_size", FALSE, 0, &d->expert_ffn);
}

/* mixtral: Mistral's attention, every block an MoE of num_local_experts
 * SwiGLU experts of intermediate_size, top num_experts_per_tok. */
static gboolean hf_mixtral(Hf *c, PxModelDesc *d) {
  if (!hf_mistral(c, d) || !hf_router(c, d, "num_local_experts")) return FALSE;
  d->expert_ffn = d->ffn;
  d->norm_topk = TRUE; /* MixtralSparseMoeBlock always renormalises its top-k weights */
  return TRUE;
}

/* qwen2_moe: Qwen2's attention (QKV biases); num_experts routed experts of
 * moe_intermediate_size, one shared expert of shared_expert_intermediate_size
 * behind a sigmoid gate (h -> 1). intermediate_size is the dense MLP of
 * non-sparse layers. */
static gboolean hf_qwen2_moe(Hf *c, PxModelDesc *d) {
  int shared = 0;
  if (!hf_qwen2(c, d) || !hf_router(c, d, "num_experts") || !hf_qwen_moe_layers(c, d) ||
      !hf_int(c, "shared_expert_intermediate_size", TRUE, 0, &shared))
    return FALSE;
  if (shared > 0) {
    d->shared_experts = 1;
    d->shared_ffn = shared;
    d->shared_gate = TRUE;
  }
  return TRUE;
}

/* qwen3_moe: Llama's attention with head_dim and an RMSNorm on every query
 * and key head, no shared expert. */
static gboolean hf_qwen3_moe(Hf *c, PxModelDesc *d) {
  int w;
  if (!hf_refuse_if_set(c, "use_sliding_window", "sliding-window attention on some layers") || !hf_llama(c, d) ||
      !hf_int(c, "sliding_window", TRUE, 0, &w) || !hf_router(c, d, "num_experts") || !hf_qwen_moe_layers(c, d))
    return FALSE;
  d->qk_norm = TRUE;
  return TRUE;
}

static const struct {
  const char *type;
  gboolean (*read)(Hf *c, PxModelDesc *d);
  gboolean moe;
} hf_types[] = {{"gpt2", hf_gpt2, FALSE},         {"llama", hf_llama, FALSE},         {"mistral", hf_mistral, FALSE},
                {"qwen2", hf_qwen2, FALSE},       {"gemma", hf_gemma, FALSE},         {"phi3", hf_phi3, FALSE},
                {"gpt_neox", hf_gpt_neox, FALSE}, {"mixtral", hf_mixtral, TRUE},      {"qwen2_moe", hf_qwen2_moe, TRUE},
                {"qwen3_moe", hf_qwen3_moe, TRUE}};

/* model_types known to be something this tool does not represent. */
static const struct { const char *type, *why; } hf_refused_types[] = {
  {"deepseek_v2", "a model with multi-head latent attention (compressed, low-rank keys and values)"},
  {"deepseek_v3", "a model with multi-head latent attention (compressed, low-rank keys and values) and multi-token prediction"},
  {"dbrx", "a mixture of experts whose nested attn_config / ffn_config this tool does not read"}, {"jamba", "a hybrid Mamba mixture of experts"},
  {"t5", "an encoder-decoder"}, {"bart", "an encoder-decoder"}, {"bert", "an encoder"},
  {"gemma2", "a model with soft-capped logits and alternating sliding windows"}, {"mamba", "a state-space model"}};

PxModel *px_model_load_hf_json(const char *path, GError **error) {
  JsonObject *o = NULL;
  g_autoptr(JsonParser) parser = px_json_load_object(path, &o, PX_MODEL_ERROR, PX_MODEL_ERROR_PARSE, error);
  if (!parser) return NULL;
  g_autoptr(GHashTable) read = g_hash_table_new(g_str_hash, g_str_equal);
  Hf c = {o, path, NULL, read, error};
  const char *mt;
  if (!hf_string(&c, "model_type", &mt)) return NULL;
  if (!mt) {
    hf_fail(&c, "no \"model_type\": the architecture cannot be told from the sizes alone");
    return NULL;
  }
  c.type = mt;
  for (gsize i = 0; i < G_N_ELEMENTS(hf_refused_types); i++)
    if (!strcmp(mt, hf_refused_types[i].type)) {
      hf_fail(&c, "model_type %s is %s, which this tool does not represent", mt, hf_refused_types[i].why);
      return NULL;
    }
  PxModelDesc d = {0};
  gsize t = 0;
  while (t < G_N_ELEMENTS(hf_types) && strcmp(hf_types[t].type, mt)) t++;
  if (t == G_N_ELEMENTS(hf_types)) {
    hf_fail(&c, "model_type \"%s\" is not one this tool reads (gpt2, llama, mistral, qwen2, gemma, phi3, gpt_neox, "
                "mixtral, qwen2_moe, qwen3_moe)", mt);
    return NULL;
  }
  if (!hf_refuse_common(&c, hf_types[t].moe) || !hf_types[t].read(&c, &d)) return NULL;
  /* every other key: bookkeeping (known harmless) or refused */
  JsonObjectIter it;
  const char *key;
  JsonNode *node;
  json_object_iter_init(&it, o);
  while (json_object_iter_next(&it, &key, &node))
    if (!g_hash_table_contains(read, key) && !g_strv_contains(hf_harmless, key)) {
      hf_fail(&c, "model_type %s: key \"%s\" is not one this tool knows; refusing rather than guessing whether it changes the model",
              mt, key);
      return NULL;
    }
  d.default_seq = MIN(d.max_seq, PX_MODEL_HF_DEFAULT_SEQ);
  g_autofree char *base = g_path_get_basename(path);
  g_autofree char *dir = g_path_get_dirname(path);
  g_autofree char *dirbase = g_path_get_basename(dir);
  /* "config.json" says little; name the model after its folder then. */
  if (!strcmp(base, "config.json")) d.name = dirbase;
  else {
    if (g_str_has_suffix(base, ".json")) base[strlen(base) - 5] = '\0';
    d.name = base;
  }
  return px_model_new(&d, error);
}

PxModel *px_model_load(const char *name_or_path, GError **error) {
  g_autofree char *path =
      px_config_find("models", "model", name_or_path, PX_MODEL_ERROR, PX_MODEL_ERROR_NOT_FOUND, error);
  if (!path) return NULL;
  if (g_str_has_suffix(path, ".json")) return px_model_load_hf_json(path, error);
  return px_model_load_ini(path, error);
}
