/* model.c — the layer list of a transformer and its parameter tensors. */
#include "model.h"
#include <string.h>

G_DEFINE_QUARK(px-model-error-quark, px_model_error)

const char *px_ffn_kind_name(PxFfnKind k) { return k == PX_FFN_SWIGLU ? "swiglu" : "gelu"; }
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

static void add_tensor(TensorList *tl, const char *name, gint64 d0, gint64 d1, PxSplit split) {
  PxTensorSpec t = {0};
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
static void add_linear(TensorList *tl, const char *name, gint64 out, gint64 in, gboolean bias,
                       gboolean column_parallel) {
  g_autofree char *w = g_strconcat(name, ".weight", NULL);
  g_autofree char *b = g_strconcat(name, ".bias", NULL);
  add_tensor(tl, w, out, in, column_parallel ? PX_SPLIT_ROWS : PX_SPLIT_COLS);
  if (bias) add_tensor(tl, b, out, 0, column_parallel ? PX_SPLIT_ROWS : PX_SPLIT_NONE);
}

static void add_norm(TensorList *tl, const PxModelDesc *d, const char *name) {
  g_autofree char *w = g_strconcat(name, ".weight", NULL);
  g_autofree char *b = g_strconcat(name, ".bias", NULL);
  add_tensor(tl, w, d->hidden, 0, PX_SPLIT_NONE);
  if (d->norm == PX_NORM_LAYERNORM && d->bias) add_tensor(tl, b, d->hidden, 0, PX_SPLIT_NONE);
}

static void finish_layer(PxLayer *layer, TensorList *tl) {
  layer->n_tensors = tl->tensors->len;
  layer->tensors = (PxTensorSpec *)g_array_free(tl->tensors, FALSE);
  layer->params = 0;
  for (guint i = 0; i < layer->n_tensors; i++)
    layer->params += layer->tensors[i].shape[0] * layer->tensors[i].shape[1];
}

static gboolean validate_desc(const PxModelDesc *d, GError **error) {
  struct { const char *name; int v; } pos[] = {
    {"layers", d->layers}, {"hidden", d->hidden}, {"heads", d->heads}, {"kv_heads", d->kv_heads},
    {"ffn", d->ffn}, {"vocab", d->vocab}, {"max_seq", d->max_seq}};
  for (gsize i = 0; i < G_N_ELEMENTS(pos); i++)
    if (pos[i].v <= 0) {
      g_set_error(error, PX_MODEL_ERROR, PX_MODEL_ERROR_INVALID, "model %s: %s = %d must be positive",
                  d->name ? d->name : "?", pos[i].name, pos[i].v);
      return FALSE;
    }
  if (d->hidden % d->heads) {
    g_set_error(error, PX_MODEL_ERROR, PX_MODEL_ERROR_INVALID,
                "model %s: %d attention heads do not divide hidden size %d", d->name, d->heads, d->hidden);
    return FALSE;
  }
  if (d->heads % d->kv_heads) {
    g_set_error(error, PX_MODEL_ERROR, PX_MODEL_ERROR_INVALID,
                "model %s: %d key-value heads do not divide %d attention heads", d->name, d->kv_heads,
                d->heads);
    return FALSE;
  }
  return TRUE;
}

PxModel *px_model_new(const PxModelDesc *desc, GError **error) {
  if (!validate_desc(desc, error)) return NULL;
  PxModel *m = g_new0(PxModel, 1);
  m->desc = *desc;
  m->desc.name = g_strdup(desc->name ? desc->name : "model");
  const PxModelDesc *d = &m->desc;
  gint64 h = d->hidden, kv = (gint64)d->hidden / d->heads * d->kv_heads;
  m->n_layers = d->layers + 3;
  m->layers = g_new0(PxLayer, m->n_layers);
  guint li = 0;

  /* Embedding: token (vocab-parallel over TP) and learned positions. */
  {
    PxLayer *l = &m->layers[li];
    TensorList tl = {g_array_new(FALSE, TRUE, sizeof(PxTensorSpec)), ""};
    add_tensor(&tl, "wte.weight", d->vocab, h, PX_SPLIT_ROWS);
    if (d->pos == PX_POS_LEARNED) add_tensor(&tl, "wpe.weight", d->max_seq, h, PX_SPLIT_NONE);
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
    add_norm(&tl, d, "ln_1");
    add_linear(&tl, "attn.qkv", h + 2 * kv, h, d->bias, TRUE);
    add_linear(&tl, "attn.proj", h, h, d->bias, FALSE);
    add_norm(&tl, d, "ln_2");
    if (d->ffn_kind == PX_FFN_SWIGLU) {
      add_linear(&tl, "mlp.gate", d->ffn, h, d->bias, TRUE);
      add_linear(&tl, "mlp.up", d->ffn, h, d->bias, TRUE);
      add_linear(&tl, "mlp.down", h, d->ffn, d->bias, FALSE);
    } else {
      add_linear(&tl, "mlp.fc", d->ffn, h, d->bias, TRUE);
      add_linear(&tl, "mlp.proj", h, d->ffn, d->bias, FALSE);
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
    add_norm(&tl, d, "ln_f");
    l->kind = PX_LAYER_FINAL_NORM;
    l->type_name = d->norm == PX_NORM_RMSNORM ? "RMSNorm" : "LayerNorm";
    l->index = li++;
    l->block = -1;
    finish_layer(l, &tl);
  }
  {
    PxLayer *l = &m->layers[li];
    TensorList tl = {g_array_new(FALSE, TRUE, sizeof(PxTensorSpec)), ""};
    if (!d->tied) add_tensor(&tl, "lm_head.weight", d->vocab, h, PX_SPLIT_ROWS);
    l->kind = PX_LAYER_LM_HEAD;
    l->type_name = "LMHead";
    l->index = li++;
    l->block = -1;
    finish_layer(l, &tl);
    l->tied_params = d->tied ? (gint64)d->vocab * h : 0;
    l->tied_tensor = d->tied ? &m->layers[0].tensors[0] : NULL; /* wte */
  }
  for (guint i = 0; i < m->n_layers; i++) m->params += m->layers[i].params;
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
    for (guint i = 0; i < layer->n_tensors; i++)
      if (layer->tensors[i].ndim == 2) gemm += (double)layer->tensors[i].shape[0] * layer->tensors[i].shape[1];
    return 2.0 * s * gemm + 4.0 * s * s * h;
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

/* ---- loading ------------------------------------------------------------- */

#define MODEL_INT(key, opt, def, min, field)                                                     \
  if (!px_config_get_int32(kf, path, "model", key, opt, def, min, &field, PX_MODEL_ERROR,            \
                           PX_MODEL_ERROR_INVALID, error))                                           \
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

PxModel *px_model_load_ini(const char *path, GError **error) {
  g_autoptr(GKeyFile) kf = px_config_load_keyfile(path, PX_MODEL_ERROR, PX_MODEL_ERROR_PARSE, error);
  if (!kf) return NULL;
  if (!g_key_file_has_group(kf, "model")) {
    g_set_error(error, PX_MODEL_ERROR, PX_MODEL_ERROR_PARSE, "%s: no [model] group", path);
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
  MODEL_INT("ffn", TRUE, 4 * (gint64)d.hidden, 1, d.ffn);
  MODEL_INT("vocab", FALSE, 0, 1, d.vocab);
  MODEL_INT("max_seq", FALSE, 0, 1, d.max_seq);
  static const char *const ffn_names[] = {"gelu", "swiglu", NULL};
  static const char *const norm_names[] = {"layernorm", "rmsnorm", NULL};
  static const char *const pos_names[] = {"learned", "rope", NULL};
  int fk = PX_FFN_GELU, nk = PX_NORM_LAYERNORM, pk = PX_POS_LEARNED;
  if (!px_config_get_string(kf, path, "model", "ffn_kind", TRUE, &ffn_kind, PX_MODEL_ERROR,
                            PX_MODEL_ERROR_INVALID, error) ||
      !px_config_get_string(kf, path, "model", "norm", TRUE, &norm, PX_MODEL_ERROR,
                            PX_MODEL_ERROR_INVALID, error) ||
      !px_config_get_string(kf, path, "model", "position", TRUE, &pos, PX_MODEL_ERROR,
                            PX_MODEL_ERROR_INVALID, error) ||
      !parse_choice(path, "ffn_kind", ffn_kind, ffn_names, 2, &fk, error) ||
      !parse_choice(path, "norm", norm, norm_names, 2, &nk, error) ||
      !parse_choice(path, "position", pos, pos_names, 2, &pk, error))
    return NULL;
  d.ffn_kind = fk;
  d.norm = nk;
  d.pos = pk;
  if (!px_config_get_bool(kf, path, "model", "bias", TRUE, &d.bias, PX_MODEL_ERROR,
                          PX_MODEL_ERROR_INVALID, error) ||
      !px_config_get_bool(kf, path, "model", "tied", TRUE, &d.tied, PX_MODEL_ERROR,
                          PX_MODEL_ERROR_INVALID, error) ||
      !px_config_get_bool(kf, path, "model", "dropout", TRUE, &d.dropout, PX_MODEL_ERROR,
                          PX_MODEL_ERROR_INVALID, error))
    return NULL;
  g_autofree char *base = g_path_get_basename(path);
  if (g_str_has_suffix(base, ".ini")) base[strlen(base) - 4] = '\0';
  d.name = name ? name : base;
  return px_model_new(&d, error);
}

/* Hugging Face config.json: GPT-2 keys (n_layer, n_embd, n_head, n_positions,
 * vocab_size) or Llama keys (num_hidden_layers, hidden_size, num_attention_heads,
 * num_key_value_heads, intermediate_size, vocab_size, max_position_embeddings,
 * tie_word_embeddings). */
PxModel *px_model_load_hf_json(const char *path, GError **error) {
  JsonObject *o = NULL;
  g_autoptr(JsonParser) parser = px_json_load_object(path, &o, PX_MODEL_ERROR, PX_MODEL_ERROR_PARSE, error);
  if (!parser) return NULL;
  PxModelDesc d = {0};
#define HF_INT(key, opt, def, field)                                                                 \
  if (!px_json_get_int32(o, path, key, opt, def, 1, &field, PX_MODEL_ERROR, PX_MODEL_ERROR_INVALID, error)) \
    return NULL
  const char *mt = json_object_has_member(o, "model_type") && JSON_NODE_HOLDS_VALUE(json_object_get_member(o, "model_type"))
                       ? json_object_get_string_member(o, "model_type") : NULL;
  gboolean gpt2 = json_object_has_member(o, "n_layer") || (mt && !strcmp(mt, "gpt2"));
  /* the two families' keys for: layers, hidden, heads, kv heads, FFN, vocab, positions */
  static const char *const gpt2_keys[] = {"n_layer", "n_embd", "n_head", NULL, "n_inner", "vocab_size", "n_positions"};
  static const char *const llama_keys[] = {"num_hidden_layers", "hidden_size", "num_attention_heads",
                                           "num_key_value_heads", "intermediate_size", "vocab_size",
                                           "max_position_embeddings"};
  const char *const *keys = gpt2 ? gpt2_keys : llama_keys;
  int *fields[] = {&d.layers, &d.hidden, &d.heads, &d.kv_heads, &d.ffn, &d.vocab, &d.max_seq};
  for (gsize i = 0; i < G_N_ELEMENTS(fields); i++) {
    gboolean optional = fields[i] == &d.kv_heads || (gpt2 && fields[i] == &d.ffn);
    if (keys[i]) HF_INT(keys[i], optional, 0, *fields[i]);
  }
  if (d.kv_heads == 0) d.kv_heads = d.heads;             /* MHA */
  if (d.ffn == 0) d.ffn = 4 * d.hidden;                  /* GPT-2: n_inner null means 4h */
  /* GPT-2: GELU MLP, LayerNorm, learned positions, biases, dropout, tied head;
   * Llama: SwiGLU, RMSNorm, rotary, no biases or dropout, untied unless told */
  d.ffn_kind = gpt2 ? PX_FFN_GELU : PX_FFN_SWIGLU;
  d.norm = gpt2 ? PX_NORM_LAYERNORM : PX_NORM_RMSNORM;
  d.pos = gpt2 ? PX_POS_LEARNED : PX_POS_ROPE;
  d.bias = d.dropout = d.tied = gpt2;
#undef HF_INT
  if (json_object_has_member(o, "tie_word_embeddings")) {
    JsonNode *n = json_object_get_member(o, "tie_word_embeddings");
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN) {
      g_set_error(error, PX_MODEL_ERROR, PX_MODEL_ERROR_INVALID,
                  "%s: \"tie_word_embeddings\" must be true or false", path);
      return NULL;
    }
    d.tied = json_node_get_boolean(n);
  }
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
