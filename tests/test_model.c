/* test_model.c — layer lists against published parameter counts. */
#include <glib.h>
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

static void test_hf_import(void) {
  g_autoptr(GError) error = NULL;
  g_autofree char *gpt2 = g_build_filename(px_data_dir(), "configs", "hf", "gpt2.json", NULL);
  g_autofree char *llama = g_build_filename(px_data_dir(), "configs", "hf", "llama-2-7b.json", NULL);
  g_autoptr(PxModel) a = px_model_load(gpt2, &error);
  g_assert_no_error(error);
  g_assert_cmpint(a->params, ==, 124439808);
  g_assert_true(a->desc.tied);
  g_autoptr(PxModel) b = px_model_load(llama, &error);
  g_assert_no_error(error);
  g_assert_cmpint(b->params, ==, 6738415616);
  g_assert_cmpint(b->desc.ffn_kind, ==, PX_FFN_SWIGLU);
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
  g_assert_cmpstr(error->message, ==, "model bad: 3 attention heads do not divide hidden size 100");
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  for (gsize i = 0; i < G_N_ELEMENTS(published); i++) {
    g_autofree char *path = g_strdup_printf("/model/published/%s", published[i].preset);
    g_test_add_data_func(path, &published[i], test_published);
  }
  g_test_add_func("/model/published/gpt3-175b", test_gpt3);
  g_test_add_func("/model/hf-import", test_hf_import);
  g_test_add_func("/model/tp-split", test_tp_split);
  g_test_add_func("/model/gqa", test_gqa);
  g_test_add_func("/model/flops/block", test_block_flops);
  g_test_add_func("/model/errors", test_errors);
  return g_test_run();
}
