/* test_model.c — layer lists against published parameter counts. */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include "model.h"

typedef struct {
  const char *preset;
  gint64 params; /* published: Hugging Face model cards / config sums */
} Published;

static const Published published[] = {
  {"gpt2-124m", 124439808},     {"gpt2-355m", 354823168},     {"gpt2-774m", 774030080},
  {"gpt2-1.5b", 1557611200},    {"llama2-7b", 6738415616},    {"llama2-13b", 13015864320},
  {"llama2-70b", 68976648192},  {"llama3-8b", 8030261248},    {"llama3-70b", 70553706496},
  {"llama3-405b", 405853388800},
};

static void test_published(gconstpointer data) {
  const Published *p = data;
  g_autoptr(GError) error = NULL;
  g_autoptr(PxModel) m = px_model_load(p->preset, &error);
  g_assert_no_error(error);
  g_assert_cmpint(m->params, ==, p->params);
}

/* GPT-3 175B: 96 × (12h² + 13h) + V·h + 2048·h + 2h (tied), h = 12288, V = 50257. */
static void test_gpt3(void) {
  g_autoptr(PxModel) m = px_model_load("gpt3-175b", NULL);
  gint64 h = 12288;
  g_assert_cmpint(m->params, ==, 96 * (12 * h * h + 13 * h) + 50257 * h + 2048 * h + 2 * h);
  g_assert_cmpint(m->n_layers, ==, 99);
  g_assert_cmpstr(m->layers[1].type_name, ==, "TransformerLayer");
  g_assert_cmpint(m->layers[98].tied_params, ==, 50257 * h);
}

static PxModel *load_hf(const char *dir, const char *file) {
  g_autoptr(GError) error = NULL;
  g_autofree char *path = g_build_filename(px_data_dir(), dir, "hf", file, NULL);
  PxModel *m = px_model_load(path, &error);
  g_assert_no_error(error);
  return m;
}

/* Published parameter counts (the model cards / HF num_parameters()):
 * every model_type the import reads, with the keys that change the count. */
static void test_hf_import(void) {
  static const struct { const char *file; gint64 params; } cards[] = {
    {"gpt2.json", 124439808},           /* GPT-2 small, tied */
    {"llama-2-7b.json", 6738415616},    /* Llama-2-7b */
    {"llama-3-8b.json", 8030261248},    /* Meta-Llama-3-8B: GQA 8, vocab 128256 */
    {"llama-3.1-8b.json", 8030261248},  /* the same tensors; rope_scaling only */
    {"mistral-7b.json", 7241732096},    /* Mistral-7B-v0.1 */
    {"qwen2-7b.json", 7615616512},      /* Qwen2-7B: Q, K, V biases */
    {"qwen2-0.5b.json", 494032768},     /* Qwen2-0.5B: tied */
    {"gemma-7b.json", 8537680896},      /* gemma-7b: head_dim 256 ≠ 3072/16, GeGLU, tied by default */
    {"gemma-2b.json", 2506172416},      /* gemma-2b: MQA, head_dim 256 */
    {"gpt-neox-20b.json", 20554567680}, /* GPT-NeoX-20B: GELU MLP, biases, untied */
    {"phi-3-mini-4k.json", 3821079552}, /* Phi-3-mini-4k-instruct */
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cards); i++) {
    g_autoptr(PxModel) m = load_hf("configs", cards[i].file);
    if (m->params != cards[i].params) g_test_message("%s: %" G_GINT64_FORMAT, cards[i].file, m->params);
    g_assert_cmpint(m->params, ==, cards[i].params);
  }
  g_autoptr(PxModel) gpt2 = load_hf("configs", "gpt2.json");
  g_assert_true(gpt2->desc.tied);
  g_assert_true(gpt2->desc.dropout); /* GPT-2's pdrops default to 0.1 in HF; here none is given */
  g_assert_cmpint(gpt2->desc.default_seq, ==, 1024);
  g_autoptr(PxModel) llama = load_hf("configs", "llama-2-7b.json");
  g_assert_cmpint(llama->desc.ffn_kind, ==, PX_FFN_SWIGLU);
  g_assert_cmpint(llama->desc.head_dim, ==, 128);
  g_assert_cmpfloat(llama->desc.rope_theta, ==, 10000.0);
  g_assert_cmpfloat(llama->desc.norm_eps, ==, 1e-5);
  /* Llama-3.1: the context is 131072, the default training length is not */
  g_autoptr(PxModel) l31 = load_hf("configs", "llama-3.1-8b.json");
  g_assert_cmpint(l31->desc.max_seq, ==, 131072);
  g_assert_cmpint(l31->desc.default_seq, ==, PX_MODEL_HF_DEFAULT_SEQ);
  g_assert_cmpfloat(l31->desc.rope_theta, ==, 500000.0);
  g_assert_true(l31->desc.rope_scaled);
  g_autoptr(PxModel) gemma = load_hf("configs", "gemma-7b.json");
  g_assert_cmpint(gemma->desc.head_dim, ==, 256);
  g_assert_true(gemma->desc.tied);
  g_assert_cmpint(gemma->desc.ffn_kind, ==, PX_FFN_GEGLU);
  g_assert_cmpfloat(gemma->desc.norm_eps, ==, 1e-6);
  /* Q is 16 × 256 = 4096 wide: QKV (3 · 4096, 3072), proj (3072, 4096) */
  g_assert_cmpint(gemma->layers[1].tensors[1].shape[0], ==, 3 * 4096);
  g_assert_cmpint(gemma->layers[1].tensors[2].shape[1], ==, 4096);
  g_autoptr(PxModel) neox = load_hf("configs", "gpt-neox-20b.json");
  g_assert_true(neox->desc.parallel_attn);
  g_assert_false(neox->desc.tied);
  g_assert_cmpint(neox->desc.ffn_kind, ==, PX_FFN_GELU);
  g_assert_cmpfloat(neox->desc.rotary_pct, ==, 0.25);
  g_assert_cmpint(neox->desc.pos, ==, PX_POS_ROPE);
  g_autoptr(PxModel) qwen = load_hf("configs", "qwen2-7b.json");
  g_assert_true(qwen->desc.qkv_bias);
  g_assert_cmpstr(qwen->layers[1].tensors[2].name, ==, "h.0.attn.qkv.bias");
  g_assert_cmpint(qwen->layers[1].tensors[2].shape[0], ==, 3584 + 2 * 512);
  g_autoptr(PxModel) mistral = load_hf("configs", "mistral-7b.json");
  g_assert_cmpint(mistral->desc.sliding_window, ==, 4096);

  /* Mixtral imports as a mixture of experts (46.7 B total), never as a dense 7 B;
   * the MoE counts are asserted in test_moe.c */
  g_autoptr(GError) error = NULL;
  g_autofree char *mixtral = g_build_filename(px_data_dir(), "tests", "data", "hf", "mixtral-8x7b.json", NULL);
  g_autoptr(PxModel) mx = px_model_load(mixtral, &error);
  g_assert_no_error(error);
  g_assert_cmpint(mx->desc.experts, ==, 8);
  g_assert_cmpint(mx->desc.top_k, ==, 2);
  g_assert_cmpint(mx->params, ==, 46702792704);
}

/* What the executor cannot run is said, naming it; the planner takes all. */
static void test_executable(void) {
  static const struct { const char *file, *says; } cases[] = {
    {"gemma-7b.json", "GeGLU"},         {"gpt-neox-20b.json", "parallel attention"},
    {"mistral-7b.json", "sliding-window"}, {"llama-3.1-8b.json", "rope_scaling"},
    {"llama-3-8b.json", NULL},          {"qwen2-7b.json", NULL}, {"gpt2.json", NULL}};
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autoptr(PxModel) m = load_hf("configs", cases[i].file);
    g_autoptr(GError) error = NULL;
    gboolean ok = px_model_executable(m, &error);
    if (!cases[i].says) {
      g_assert_no_error(error);
      g_assert_true(ok);
    } else {
      g_assert_false(ok);
      g_assert_nonnull(strstr(error->message, cases[i].says));
    }
  }
}

/* Attention FLOPs follow heads · head_dim and the sliding window: Mistral's
 * block at s = 8192 attends to 4096 keys per query (Megatron's 4·s·span·q). */
static void test_attention_flops(void) {
  g_autoptr(PxModel) mistral = load_hf("configs", "mistral-7b.json");
  double s = 8192, h = 4096, kv = 1024, f = 14336;
  double gemm = h * (h + 2 * kv) + h * h + 3 * h * f;
  g_assert_cmpfloat_with_epsilon(px_layer_forward_flops(mistral, &mistral->layers[1], 8192),
                                 2 * s * gemm + 4 * s * 4096 * h, 1.0);
  g_assert_cmpfloat_with_epsilon(px_layer_forward_flops(mistral, &mistral->layers[1], 2048),
                                 2 * 2048 * gemm + 4 * 2048.0 * 2048 * h, 1.0);
  g_autoptr(PxModel) gemma = load_hf("configs", "gemma-7b.json");
  double gh = 3072, q = 4096, gf = 24576;
  double ggemm = gh * 3 * q + gh * q + 3 * gh * gf;
  g_assert_cmpfloat_with_epsilon(px_layer_forward_flops(gemma, &gemma->layers[1], 1024),
                                 2 * 1024 * ggemm + 4 * 1024.0 * 1024 * q, 1.0);
}

/* A model INI holds the same keys: head_dim, rope_theta, norm_eps. */
static void test_ini_keys(void) {
  g_autofree char *path = g_build_filename(g_get_tmp_dir(), "px-model-keys.ini", NULL);
  g_assert_true(g_file_set_contents(path,
                                    "[model]\nlayers = 2\nhidden = 64\nheads = 4\nhead_dim = 32\nvocab = 100\n"
                                    "max_seq = 256\nseq = 128\nrope_theta = 500000\nnorm_eps = 1e-6\nposition = rope\n"
                                    "norm = rmsnorm\nffn_kind = swiglu\nffn = 128\nqkv_bias = true\n",
                                    -1, NULL));
  g_autoptr(GError) error = NULL;
  g_autoptr(PxModel) m = px_model_load(path, &error);
  g_assert_no_error(error);
  g_assert_cmpint(m->desc.head_dim, ==, 32);
  g_assert_cmpint(m->desc.default_seq, ==, 128);
  g_assert_cmpfloat(m->desc.rope_theta, ==, 500000.0);
  g_assert_cmpfloat(m->desc.norm_eps, ==, 1e-6);
  /* block: QKV (3·128, 64) + bias 3·128, proj (64, 128), 3 · 64·128 MLP, 2 norms of 64 */
  g_assert_cmpint(m->layers[1].params, ==, 3 * 128 * 64 + 3 * 128 + 64 * 128 + 3 * 64 * 128 + 2 * 64);
  /* the defaults a preset gets */
  g_autoptr(PxModel) g = px_model_load("gpt2-124m", &error);
  g_assert_cmpint(g->desc.head_dim, ==, 64);
  g_assert_cmpfloat(g->desc.rope_theta, ==, 10000.0);
  g_assert_cmpfloat(g->desc.norm_eps, ==, 1e-5);
  g_assert_cmpint(g->desc.default_seq, ==, g->desc.max_seq);
  g_unlink(path);
}

/* Megatron TP: column-parallel QKV/fc split rows, row-parallel proj splits
 * columns; norms and the row-parallel bias stay whole. GPT-2 block, tp = 4:
 * 2·(2h) norms + (3h·h + 3h)/4 + (h·h)/4 + h + (4h·h + 4h)/4 + (4h·h)/4 + h. */
static void test_tp_split(void) {
  g_autoptr(PxModel) m = px_model_load("gpt2-124m", NULL);
  gint64 h = 768;
  gint64 expect = 4 * h + (3 * h * h + 3 * h) / 4 + h * h / 4 + h + (4 * h * h + 4 * h) / 4 + 4 * h * h / 4 + h;
  g_assert_cmpint(px_layer_params_tp(&m->layers[1], 4), ==, expect);
  /* vocab-parallel embedding pads 50257 rows to 12565 per rank (Megatron pads V) */
  g_assert_cmpint(px_layer_params_tp(&m->layers[0], 4), ==, 12565 * h + 1024 * h);
  /* the tied head stores its copy of wte, but not twice when the embedding is alongside */
  g_assert_cmpint(px_layer_stored_params_tp(&m->layers[14], 1), ==, 50257 * h);
  g_assert_cmpint(px_model_range_stored_params_tp(m, 0, 15, 1), ==, 124439808);
  g_assert_cmpint(px_model_range_stored_params_tp(m, 13, 15, 1), ==, 2 * h + 50257 * h);
}

/* GQA: Llama-2 70B QKV is (h + 2·8·128) × h. */
static void test_gqa(void) {
  g_autoptr(PxModel) m = px_model_load("llama2-70b", NULL);
  const PxLayer *b = &m->layers[1];
  g_assert_cmpstr(b->tensors[1].name, ==, "h.0.attn.qkv.weight");
  g_assert_cmpint(b->tensors[1].shape[0], ==, 8192 + 2 * 1024);
}

/* Forward FLOPs per sequence of a GPT-3 block: 24·s·h² + 4·s²·h (Megatron-LM). */
static void test_block_flops(void) {
  g_autoptr(PxModel) m = px_model_load("gpt3-175b", NULL);
  double s = 2048, h = 12288;
  g_assert_cmpfloat_with_epsilon(px_layer_forward_flops(m, &m->layers[5], 2048) / (24 * s * h * h + 4 * s * s * h),
                                 1.0, 1e-12);
  g_assert_cmpfloat(px_layer_forward_flops(m, &m->layers[98], 2048), ==, 2 * s * h * 50257);
}

static void test_errors(void) {
  g_autoptr(GError) error = NULL;
  g_assert_null(px_model_load("no-such-model", &error));
  g_assert_error(error, PX_MODEL_ERROR, PX_MODEL_ERROR_NOT_FOUND);
  g_clear_error(&error);
  PxModelDesc d = {.name = "bad", .layers = 2, .hidden = 100, .heads = 3, .kv_heads = 3, .ffn = 400,
                   .vocab = 10, .max_seq = 8};
  g_assert_null(px_model_new(&d, &error));
  g_assert_error(error, PX_MODEL_ERROR, PX_MODEL_ERROR_INVALID);
  g_assert_cmpstr(error->message, ==, "model bad: 3 attention heads do not divide hidden size 100 (give head_dim)");
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  for (gsize i = 0; i < G_N_ELEMENTS(published); i++) {
    g_autofree char *path = g_strdup_printf("/model/published/%s", published[i].preset);
    g_test_add_data_func(path, &published[i], test_published);
  }
  g_test_add_func("/model/published/gpt3-175b", test_gpt3);
  g_test_add_func("/model/hf-import", test_hf_import);
  g_test_add_func("/model/executable", test_executable);
  g_test_add_func("/model/attention-flops", test_attention_flops);
  g_test_add_func("/model/ini-keys", test_ini_keys);
  g_test_add_func("/model/tp-split", test_tp_split);
  g_test_add_func("/model/gqa", test_gqa);
  g_test_add_func("/model/flops/block", test_block_flops);
  g_test_add_func("/model/errors", test_errors);
  return g_test_run();
}
