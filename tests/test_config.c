/* test_config.c — presets, units, and malformed model / cluster files: each
 * gives a GError naming the file and the key, never a crash. */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include "cluster.h"
#include "config.h"
#include "model.h"

static char *write_tmp(const char *name, const char *text) {
  char *path = g_build_filename(g_get_tmp_dir(), name, NULL);
  g_assert_true(g_file_set_contents(path, text, -1, NULL));
  return path;
}

static void test_units(void) {
  double v;
  g_assert_true(px_parse_bytes("80GB", &v));
  g_assert_cmpfloat(v, ==, 80e9);
  g_assert_true(px_parse_bytes("81920MiB", &v));
  g_assert_cmpfloat(v, ==, 85899345920.0);
  g_assert_true(px_parse_bytes("1.5 GiB", &v));
  g_assert_cmpfloat(v, ==, 1.5 * 1073741824.0);
  g_assert_true(px_parse_bytes("2TB", &v));
  g_assert_cmpfloat(v, ==, 2e12);
  g_assert_false(px_parse_bytes("80 GX", &v));
  g_assert_false(px_parse_bytes("-3GB", &v));
  g_assert_false(px_parse_bytes("", &v));
  g_assert_true(px_parse_count("4M", &v));
  g_assert_cmpfloat(v, ==, 4e6);
  g_assert_true(px_parse_count("2T", &v));
  g_assert_cmpfloat(v, ==, 2e12);
  g_assert_true(px_parse_count("19.5e12", &v));
  g_assert_cmpfloat(v, ==, 19.5e12);
  g_assert_false(px_parse_count("lots", &v));
}

/* Datasheet values as written in the presets. */
static void test_cluster_presets(void) {
  g_autoptr(GError) e = NULL;
  g_autoptr(PxCluster) a = px_cluster_load("dgx-a100-80g", &e);
  g_assert_no_error(e);
  g_assert_cmpint(a->gpu_memory, ==, 81920LL * 1048576);
  g_assert_cmpfloat(a->peak_bf16, ==, 312e12);
  g_assert_cmpint(px_cluster_gpus(a), ==, 8);
  g_autoptr(PxCluster) h = px_cluster_load("dgx-h100", &e);
  g_assert_no_error(e);
  g_assert_cmpfloat(h->peak_bf16, ==, 989.4e12);
  g_assert_cmpfloat(h->hbm_bw, ==, 3350e9);
  /* HBM3's achieved fraction: 3.01 of 3.35 TB/s on an H100 80GB HBM3 (Dao-AILab/quack,
   * "Getting Memory-bound Kernels to Speed-of-Light"): 0.8985 to three digits; the A100
   * preset keeps the A800 figure, 1727 of 1935 GB/s = 0.8925 -> 0.89 */
  g_assert_cmpfloat(h->hbm_eff, ==, 0.898);
  g_assert_cmpfloat(a->hbm_eff, ==, 0.89);
  g_autoptr(PxCluster) x = px_cluster_load("h200", &e);
  g_assert_no_error(e);
  g_assert_cmpint(x->gpu_memory, ==, 143771LL * 1048576);
  /* Jean Zay's A100 nodes: 4 Omni-Path links of 100 Gb/s per node of 8 GPUs
   * (BigScience tr11-176B-ml README, the BLOOM paper): 4 x 12.5 GB/s / 8 */
  g_autoptr(PxCluster) j = px_cluster_load("jean-zay-a100", &e);
  g_assert_no_error(e);
  g_assert_cmpfloat(j->inter_bw, ==, 4 * 100e9 / 8 / 8);
  g_assert_cmpfloat(j->peak_bf16, ==, 312e12);
  g_assert_null(px_cluster_load("dgx-z9000", &e));
  g_assert_error(e, PX_CLUSTER_ERROR, PX_CLUSTER_ERROR_NOT_FOUND);
  g_assert_nonnull(strstr(e->message, "dgx-h100"));
}

typedef struct {
  const char *name, *text, *contains;
  int code;
} Bad;

/* a llama config with 2 heads of 4 dimensions, 64 positions, and the rope_scaling object that follows */
#define LLAMA_ROPE                                                                                              \
  "{\"model_type\": \"llama\", \"num_hidden_layers\": 2, \"hidden_size\": 8, \"num_attention_heads\": 2, " \
  "\"intermediate_size\": 16, \"vocab_size\": 10, \"max_position_embeddings\": 64, \"rope_scaling\": "

/* 4097 = 4096 + 1 letters: 16 × 256 + 1 */
#define A16 "aaaaaaaaaaaaaaaa"
#define A256 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16 A16
#define LONG_4097 A256 A256 A256 A256 A256 A256 A256 A256 A256 A256 A256 A256 A256 A256 A256 A256 "a"

static const Bad bad_models[] = {
  {"m-trunc.ini", "[model\nlayers = 2", "m-trunc.ini", PX_MODEL_ERROR_PARSE},
  {"m-type.ini", "[model]\nlayers = many\nhidden = 8\nheads = 2\nvocab = 10\nmax_seq = 8\n",
   "layers = 'many' is not an integer", PX_MODEL_ERROR_INVALID},
  {"m-neg.ini", "[model]\nlayers = 2\nhidden = -8\nheads = 2\nvocab = 10\nmax_seq = 8\n",
   "hidden = -8 must be at least 1", PX_MODEL_ERROR_INVALID},
  {"m-missing.ini", "[model]\nlayers = 2\nhidden = 8\nvocab = 10\nmax_seq = 8\n", "[model] heads is missing",
   PX_MODEL_ERROR_INVALID},
  {"m-kind.ini", "[model]\nlayers = 2\nhidden = 8\nheads = 2\nvocab = 10\nmax_seq = 8\nffn_kind = relu\n",
   "ffn_kind = 'relu' is not one of gelu, swiglu, geglu, relu2", PX_MODEL_ERROR_INVALID},
  {"m-trunc.json", "{\"n_layer\": 12, \"n_embd\": 7", "m-trunc.json", PX_MODEL_ERROR_PARSE},
  {"m-type.json", "{\"model_type\": \"gpt2\", \"n_layer\": \"12\", \"n_embd\": 768, \"n_head\": 12, \"n_positions\": 1024, \"vocab_size\": 50257}",
   "\"n_layer\" must be an integer", PX_MODEL_ERROR_INVALID},
  {"m-neg.json", "{\"model_type\": \"llama\", \"num_hidden_layers\": -1}", "\"num_hidden_layers\" = -1 must be at least 1", PX_MODEL_ERROR_INVALID},
  {"m-array.json", "[1, 2, 3]", "not a JSON object", PX_MODEL_ERROR_PARSE},
  /* json-glib read 2^63 as -2^63 and 10^20 as -1, kept the last of a
   * member given twice, and read the first of two values */
  {"m-2p63.json", "{\"model_type\": \"gpt2\",\n \"n_layer\": 9223372036854775808}",
   "line 2: the integer 9223372036854775808 is beyond 64 bits", PX_MODEL_ERROR_PARSE},
  {"m-twice.json", "{\"model_type\": \"gpt2\", \"n_layer\": 12, \"n_layer\": 24}",
   "member \"n_layer\" is given twice in one object", PX_MODEL_ERROR_PARSE},
  {"m-two.json", "{\"model_type\": \"gpt2\"}\n{\"n_layer\": 12}", "line 2: text after the JSON value ends",
   PX_MODEL_ERROR_PARSE},
  /* a model_type of 500 kB was repeated whole in a message of 500 kB */
  {"m-long.json", "{\"model_type\": \"" LONG_4097 "\"}", "line 1: a string of 4097 bytes ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…'), more than 4096",
   PX_MODEL_ERROR_PARSE},
  /* 0 stood for the default: 1e-6, 10000 or the whole head without a word */
  {"m-eps0.json", "{\"model_type\": \"llama\", \"num_hidden_layers\": 2, \"hidden_size\": 8, \"num_attention_heads\": 2, "
   "\"intermediate_size\": 16, \"vocab_size\": 10, \"max_position_embeddings\": 8, \"rms_norm_eps\": 0}",
   "\"rms_norm_eps\" = 0 must be positive", PX_MODEL_ERROR_INVALID},
  {"m-huge.json", "{\"model_type\": \"gpt2\", \"n_layer\": 1e300, \"n_embd\": 768}", "\"n_layer\" must be an integer", PX_MODEL_ERROR_INVALID},
  {"m-notype.json", "{\"n_layer\": 12}", "no \"model_type\"", PX_MODEL_ERROR_INVALID},
  {"m-unknown.json", "{\"model_type\": \"falcon\"}", "model_type \"falcon\" is not one this tool reads", PX_MODEL_ERROR_INVALID},
  {"m-deepseek.json", "{\"model_type\": \"deepseek_v3\", \"n_routed_experts\": 256}", "model_type deepseek_v3 is a model with multi-head latent attention",
   PX_MODEL_ERROR_INVALID},
  {"m-experts.json", "{\"model_type\": \"llama\", \"num_local_experts\": 8}", "\"num_local_experts\" is set: a mixture of experts",
   PX_MODEL_ERROR_INVALID},
  {"m-key.json",
   "{\"model_type\": \"llama\", \"num_hidden_layers\": 2, \"hidden_size\": 8, \"num_attention_heads\": 2, "
   "\"intermediate_size\": 16, \"vocab_size\": 10, \"max_position_embeddings\": 8, \"use_magic\": true}",
   "key \"use_magic\" is not one this tool knows", PX_MODEL_ERROR_INVALID},
  {"m-act.json",
   "{\"model_type\": \"llama\", \"num_hidden_layers\": 2, \"hidden_size\": 8, \"num_attention_heads\": 2, "
   "\"intermediate_size\": 16, \"vocab_size\": 10, \"max_position_embeddings\": 8, \"hidden_act\": \"relu\"}",
   "hidden_act \"relu\" is not represented", PX_MODEL_ERROR_INVALID},
  {"m-bias.json", "{\"model_type\": \"llama\", \"attention_bias\": true}", "\"attention_bias\" is set", PX_MODEL_ERROR_INVALID},
  {"m-swa.json", "{\"model_type\": \"qwen2\", \"use_sliding_window\": true}", "\"use_sliding_window\" is set", PX_MODEL_ERROR_INVALID},
  /* rope_scaling was only asked whether it was there: a factor of 0, a
   * llama3 interpolation between equal wavelengths (a division by 0 in
   * transformers' _compute_llama3_parameters), a pre-training context above
   * the model's and a misspelt key were all carried */
  {"m-rope-factor0.json", LLAMA_ROPE "{\"rope_type\": \"linear\", \"factor\": 0}}",
   "rope_scaling \"factor\" = 0 must be a finite number above 0", PX_MODEL_ERROR_INVALID},
  {"m-rope-factor-neg.json", LLAMA_ROPE "{\"type\": \"dynamic\", \"factor\": -4}}",
   "rope_scaling \"factor\" = -4 must be a finite number above 0", PX_MODEL_ERROR_INVALID},
  {"m-rope-factor-inf.json", LLAMA_ROPE "{\"rope_type\": \"linear\", \"factor\": 1e999}}",
   "rope_scaling \"factor\" = inf must be a finite number above 0", PX_MODEL_ERROR_INVALID},
  {"m-rope-freq.json", LLAMA_ROPE "{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4, "
   "\"high_freq_factor\": 4, \"original_max_position_embeddings\": 32}}",
   "rope_scaling \"high_freq_factor\" = 4 must be above \"low_freq_factor\" = 4", PX_MODEL_ERROR_INVALID},
  {"m-rope-orig.json", LLAMA_ROPE "{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1, "
   "\"high_freq_factor\": 4, \"original_max_position_embeddings\": 128}}",
   "rope_scaling \"original_max_position_embeddings\" = 128 must be a whole number of at most "
   "\"max_position_embeddings\" = 64", PX_MODEL_ERROR_INVALID},
  {"m-rope-needs.json", LLAMA_ROPE "{\"rope_type\": \"llama3\", \"factor\": 8}}",
   "rope_scaling of rope_type llama3 needs \"original_max_position_embeddings\"", PX_MODEL_ERROR_INVALID},
  {"m-rope-key.json", LLAMA_ROPE "{\"rope_type\": \"linear\", \"factr\": 2}}",
   "rope_scaling of rope_type linear needs \"factor\"", PX_MODEL_ERROR_INVALID},
  {"m-rope-extra.json", LLAMA_ROPE "{\"rope_type\": \"linear\", \"factor\": 2, \"low_freq_factor\": 1}}",
   "rope_scaling \"low_freq_factor\" is not a key of rope_type linear (factor)", PX_MODEL_ERROR_INVALID},
  {"m-rope-type.json", LLAMA_ROPE "{\"rope_type\": \"llama4\", \"factor\": 2}}",
   "rope_scaling \"rope_type\" = \"llama4\" is not one of default, linear, dynamic, yarn, longrope, llama3",
   PX_MODEL_ERROR_INVALID},
  {"m-rope-notype.json", LLAMA_ROPE "{\"factor\": 2}}", "rope_scaling has no \"rope_type\" (nor \"type\")",
   PX_MODEL_ERROR_INVALID},
  {"m-rope-disagree.json", LLAMA_ROPE "{\"rope_type\": \"linear\", \"type\": \"dynamic\", \"factor\": 2}}",
   "rope_scaling \"rope_type\" = \"linear\" and \"type\" = \"dynamic\" disagree", PX_MODEL_ERROR_INVALID},
  {"m-rope-beta.json", LLAMA_ROPE "{\"rope_type\": \"yarn\", \"factor\": 4, \"beta_fast\": 1, \"beta_slow\": 32}}",
   "rope_scaling \"beta_fast\" = 1 must be at least \"beta_slow\" = 32", PX_MODEL_ERROR_INVALID},
  /* head_dim 4: two rotary frequencies, one factor each */
  {"m-rope-long.json", LLAMA_ROPE "{\"rope_type\": \"longrope\", \"short_factor\": [1, 1], \"long_factor\": [1, 1, 1]}}",
   "rope_scaling \"long_factor\" has 3 values, not 2", PX_MODEL_ERROR_INVALID},
  /* 1e308 overflowed the per-expert capacity's integer */
  {"m-capacity.ini", "[model]\nlayers = 2\nhidden = 8\nheads = 2\nvocab = 10\nmax_seq = 8\nexperts = 8\ntop_k = 2\n"
   "capacity_factor = 1e308\n",
   "capacity_factor = 1e+308 exceeds E/k = 8/2: an expert's capacity would be more than every token", PX_MODEL_ERROR_INVALID},
  /* int(16 × 0.01) = 0 dimensions rotated: rotary positions without any */
  {"m-rot-none.ini", "[model]\nlayers = 2\nhidden = 64\nheads = 4\nvocab = 10\nmax_seq = 8\nposition = rope\n"
   "rotary_pct = 0.01\n",
   "rotary_pct = 0.01 of head_dim 16 rotates 0 dimensions: rotary positions need pairs, at least one", PX_MODEL_ERROR_INVALID},
  /* head_dim 7: transformers' cos and sin have 8 values for 7 dimensions */
  {"m-rot-odd.json", "{\"model_type\": \"llama\", \"num_hidden_layers\": 2, \"hidden_size\": 8, \"num_attention_heads\": 2, "
   "\"intermediate_size\": 16, \"vocab_size\": 10, \"max_position_embeddings\": 64, \"head_dim\": 7}",
   "rotary_pct = 1 of head_dim 7 rotates 7 dimensions: rotary positions need pairs", PX_MODEL_ERROR_INVALID},
  /* a value of 900 kB was repeated whole in a message of 900 kB; here 9 × 121 characters */
  {"m-long.ini", "[model]\nlayers = 2\nhidden = 8\nheads = 2\nvocab = 10\nmax_seq = 8\ntied = "
   "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
   "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
   "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
   "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
   "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
   "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
   "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
   "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt"
   "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt\n",
   "[model] tied = 'tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt…' is 1089 bytes long, more than 1024",
   PX_MODEL_ERROR_INVALID},
  {"m-huge.ini", "[model]\nlayers = 7.7e123\nhidden = 8\nheads = 2\nvocab = 10\nmax_seq = 8\n",
   "layers = '7.7e123' is too large", PX_MODEL_ERROR_INVALID},
  {"m-layers.ini", "[model]\nlayers = 2147483647\nhidden = 8\nheads = 2\nvocab = 10\nmax_seq = 8\n",
   "layers = 2147483647 exceeds the limit 4096", PX_MODEL_ERROR_INVALID},
  {"m-vocab.ini", "[model]\nlayers = 2\nhidden = 8\nheads = 2\nvocab = 50000000\nmax_seq = 8\n",
   "vocab = 50000000 exceeds the limit 16777216", PX_MODEL_ERROR_INVALID},
  {"m-misspelt.ini", "[model]\nlayers = 2\nhidden = 8\nheads = 2\nvocab = 10\nmax_seq = 8\nkv_head = 1\n",
   "[model] kv_head is not a model key", PX_MODEL_ERROR_PARSE},
  {"m-eps.ini", "[model]\nlayers = 2\nhidden = 8\nheads = 2\nvocab = 10\nmax_seq = 8\nnorm_eps = 0\n",
   "norm_eps must be positive", PX_MODEL_ERROR_INVALID},
  {"m-rot.ini", "[model]\nlayers = 2\nhidden = 8\nheads = 2\nvocab = 10\nmax_seq = 8\nposition = rope\nrotary_pct = 1.5\n",
   "rotary_pct = 1.5 must be in (0, 1]", PX_MODEL_ERROR_INVALID},
  {"m-seq.ini", "[model]\nlayers = 2\nhidden = 8\nheads = 2\nvocab = 10\nmax_seq = 8\nseq = 16\n",
   "seq = 16 must be 1..max_seq (8)", PX_MODEL_ERROR_INVALID},
  /* rotary keys with learned positions were ignored; a second group, a key
   * given twice (the last won) and a localized key were accepted silently */
  {"m-rot-learned.ini", "[model]\nlayers = 2\nhidden = 8\nheads = 2\nvocab = 10\nmax_seq = 8\nrope_theta = 500000\n",
   "[model] rope_theta needs position = rope", PX_MODEL_ERROR_INVALID},
  {"m-group.ini", "[model]\nlayers = 2\nhidden = 8\nheads = 2\nvocab = 10\nmax_seq = 8\n[moe]\nexperts = 8\n",
   "[moe] is not a model group", PX_MODEL_ERROR_PARSE},
  {"m-twice.ini", "[model]\nlayers = 2\nhidden = 8\nheads = 2\nvocab = 10\nmax_seq = 8\nlayers = 4\n",
   "line 7: [model] layers is given twice (first on line 2)", PX_MODEL_ERROR_PARSE},
  {"m-twice-group.ini", "[model]\nlayers = 2\nhidden = 8\nheads = 2\nvocab = 10\nmax_seq = 8\n[model]\nlayers = 4\n",
   "line 8: [model] layers is given twice (first on line 2)", PX_MODEL_ERROR_PARSE},
  {"m-locale.ini", "[model]\nlayers = 2\nhidden = 8\nheads = 2\nvocab = 10\nmax_seq = 8\nlayers[de] = 4\n",
   "[model] layers[de] is a localized key", PX_MODEL_ERROR_PARSE},
};

/* What transformers' configs hold is still read: Qwen2.5's yarn (its
 * original context equal to max_position_embeddings), Phi-3's longrope under
 * the older name "su", Llama-3.1's llama3, an explicit "default". */
static void test_good_rope(void) {
  static const char *const scalings[] = {
    "{\"type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 64}",
    "{\"rope_type\": \"yarn\", \"factor\": 4.0, \"beta_fast\": 32, \"beta_slow\": 1, \"mscale\": 0.707, "
    "\"mscale_all_dim\": 0, \"truncate\": false, \"attention_factor\": null}",
    "{\"rope_type\": \"longrope\", \"short_factor\": [1, 1.5], \"long_factor\": [2, 4], \"factor\": 4}",
    "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
    "\"original_max_position_embeddings\": 32}",
    "{\"rope_type\": \"default\"}", "null"};
  for (gsize i = 0; i < G_N_ELEMENTS(scalings); i++) {
    g_autofree char *text = g_strconcat(LLAMA_ROPE, scalings[i], "}", NULL);
    g_autofree char *path = write_tmp("m-rope-good.json", text);
    g_autoptr(GError) e = NULL;
    g_autoptr(PxModel) m = px_model_load(path, &e);
    g_assert_no_error(e);
    g_assert_cmpint(m->desc.rope_scaled, ==, i + 1 < G_N_ELEMENTS(scalings));
    g_unlink(path);
  }
  g_autofree char *phi = write_tmp("m-rope-phi3.json",
      "{\"model_type\": \"phi3\", \"num_hidden_layers\": 2, \"hidden_size\": 8, \"num_attention_heads\": 2, "
      "\"intermediate_size\": 16, \"vocab_size\": 10, \"max_position_embeddings\": 64, "
      "\"rope_scaling\": {\"type\": \"su\", \"short_factor\": [1, 1], \"long_factor\": [1, 2]}}");
  g_autoptr(GError) e = NULL;
  g_autoptr(PxModel) m = px_model_load(phi, &e);
  g_assert_no_error(e);
  g_unlink(phi);
}

static void test_bad_model(gconstpointer data) {
  const Bad *b = data;
  g_autofree char *path = write_tmp(b->name, b->text);
  g_autoptr(GError) e = NULL;
  g_assert_null(px_model_load(path, &e));
  g_assert_error(e, PX_MODEL_ERROR, b->code);
  if (!strstr(e->message, b->contains)) g_error("'%s' lacks '%s'", e->message, b->contains);
  g_unlink(path);
}

/* a cluster file up to the end of its [gpu] group's required keys */
#define CLUSTER_GPU "[cluster]\nnodes = 1\n[gpu]\nmemory = 80GB\npeak_fp32 = 1e12\npeak_bf16 = 1e12\nhbm_bw = 1e12\n"

static const Bad bad_clusters[] = {
  {"c-mem.ini", "[gpu]\nmemory = lots\n", "memory = 'lots' is not a positive size", PX_CLUSTER_ERROR_INVALID},
  {"c-missing.ini", "[gpu]\nmemory = 80GB\n", "[gpu] peak_fp32 is missing", PX_CLUSTER_ERROR_INVALID},
  {"c-trunc.ini", "[gpu\n", "c-trunc.ini", PX_CLUSTER_ERROR_PARSE},
  {"c-zero.ini",
   "[cluster]\nnodes = 0\n[gpu]\nmemory = 80GB\npeak_fp32 = 1e12\npeak_bf16 = 1e12\nhbm_bw = 1e12\n"
   "[node]\ngpus = 8\nbandwidth = 1e11\n[network]\nbandwidth = 1e10\n",
   "nodes = 0 must be at least 1", PX_CLUSTER_ERROR_INVALID},
  {"c-curve-half.ini",
   "[cluster]\nnodes = 1\n[gpu]\nmemory = 80GB\npeak_fp32 = 1e12\npeak_bf16 = 1e12\nhbm_bw = 1e12\n"
   "[node]\ngpus = 8\nbandwidth = 1e11\nbusbw_curve = 1e9;2e9\n[network]\nbandwidth = 1e10\n",
   "busbw_curve_bytes and busbw_curve go together", PX_CLUSTER_ERROR_INVALID},
  {"c-curve-order.ini",
   "[cluster]\nnodes = 1\n[gpu]\nmemory = 80GB\npeak_fp32 = 1e12\npeak_bf16 = 1e12\nhbm_bw = 1e12\n"
   "[node]\ngpus = 8\nbandwidth = 1e11\nbusbw_curve_bytes = 65536;4096\nbusbw_curve = 1e9;2e9\n"
   "[network]\nbandwidth = 1e10\n",
   "sizes must ascend", PX_CLUSTER_ERROR_INVALID},
  /* a collective holding 200 of 132 SMs was cut to all of them; the SM
   * keys without the SM count, the FP8 rate without FP8 were not read */
  {"c-coll-sms.ini", CLUSTER_GPU "sms = 132\n[node]\ngpus = 8\nbandwidth = 1e11\ncollective_sms = 200\n[network]\nbandwidth = 1e10\n",
   "[node] collective_sms = 200 is more than the GPU's [gpu] sms = 132", PX_CLUSTER_ERROR_INVALID},
  {"c-coll-sms-intra.ini",
   CLUSTER_GPU "sms = 132\n[node]\ngpus = 8\nbandwidth = 1e11\ncollective_sms = 16\ncollective_sms_intra = 133\n"
   "[network]\nbandwidth = 1e10\n",
   "[node] collective_sms_intra = 133 is more than the GPU's [gpu] sms = 132", PX_CLUSTER_ERROR_INVALID},
  {"c-coll-nosms.ini", CLUSTER_GPU "[node]\ngpus = 8\nbandwidth = 1e11\ncollective_sms = 16\n[network]\nbandwidth = 1e10\n",
   "[node] collective_sms needs [gpu] sms", PX_CLUSTER_ERROR_INVALID},
  {"c-persistent-nosms.ini", CLUSTER_GPU "gemm_persistent = true\n[node]\ngpus = 8\nbandwidth = 1e11\n[network]\nbandwidth = 1e10\n",
   "[gpu] gemm_persistent needs [gpu] sms", PX_CLUSTER_ERROR_INVALID},
  {"c-tile-nosms.ini", CLUSTER_GPU "gemm_tile = 256\n[node]\ngpus = 8\nbandwidth = 1e11\n[network]\nbandwidth = 1e10\n",
   "[gpu] gemm_tile needs [gpu] sms", PX_CLUSTER_ERROR_INVALID},
  {"c-fp8-eff.ini", CLUSTER_GPU "gemm_efficiency_fp8 = 0.7\n[node]\ngpus = 8\nbandwidth = 1e11\n[network]\nbandwidth = 1e10\n",
   "[gpu] gemm_efficiency_fp8 needs [gpu] peak_fp8", PX_CLUSTER_ERROR_INVALID},
  /* a latency of 1e308 s and a rate of 1e-300 B/s gave steps of inf ms */
  {"c-lat.ini", CLUSTER_GPU "[node]\ngpus = 8\nbandwidth = 1e11\n[network]\nbandwidth = 1e10\nlatency = 1e308\n",
   "[network] latency = 1e+308 is more than 1 s", PX_CLUSTER_ERROR_INVALID},
  {"c-rate.ini", CLUSTER_GPU "membound_bw_ce_bwd = 1e-300\n[node]\ngpus = 8\nbandwidth = 1e11\n[network]\nbandwidth = 1e10\n",
   "[gpu] membound_bw_ce_bwd = 1e-300 is below 1e+06 B/s", PX_CLUSTER_ERROR_INVALID},
  {"c-curve-len.ini",
   "[cluster]\nnodes = 1\n[gpu]\nmemory = 80GB\npeak_fp32 = 1e12\npeak_bf16 = 1e12\nhbm_bw = 1e12\n"
   "[node]\ngpus = 8\nbandwidth = 1e11\nbusbw_curve_bytes = 4096;65536\nbusbw_curve = 1e9\n"
   "[network]\nbandwidth = 1e10\n",
   "has 2 sizes and busbw_curve 1 values", PX_CLUSTER_ERROR_INVALID},
};

static void test_bad_cluster(gconstpointer data) {
  const Bad *b = data;
  g_autofree char *path = write_tmp(b->name, b->text);
  g_autoptr(GError) e = NULL;
  g_assert_null(px_cluster_load(path, &e));
  g_assert_error(e, PX_CLUSTER_ERROR, b->code);
  if (!strstr(e->message, b->contains)) g_error("'%s' lacks '%s'", e->message, b->contains);
  g_unlink(path);
}

/* px_text_clip: a message quoting 64 bytes of a value cut "é" (2 bytes) in
 * half and printed an invalid byte. "t" + 40 × "é" is 81 bytes: byte 64 is
 * the second byte of the 32nd "é", so the head is "t" + 31 × "é" (63
 * bytes) + "…"; invalid bytes become U+FFFD; a short text is kept whole. */
static void test_text_clip(void) {
  g_autoptr(GString) v = g_string_new("t"), want = g_string_new("t");
  for (int i = 0; i < 40; i++) g_string_append(v, "\xc3\xa9");
  for (int i = 0; i < 31; i++) g_string_append(want, "\xc3\xa9");
  g_string_append(want, "\xe2\x80\xa6");
  g_autofree char *a = px_text_clip(v->str, -1, 64);
  g_assert_cmpstr(a, ==, want->str);
  g_assert_true(g_utf8_validate(a, -1, NULL));
  g_autofree char *b = px_text_clip("\xff\xfe" "ab", -1, 64);
  g_assert_cmpstr(b, ==, "\xef\xbf\xbd\xef\xbf\xbd" "ab");
  g_autofree char *c = px_text_clip("abc", -1, 64);
  g_assert_cmpstr(c, ==, "abc");
  g_autofree char *d = px_text_clip("abcdef", 3, 64); /* a length, not the NUL */
  g_assert_cmpstr(d, ==, "abc");
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/config/units", test_units);
  g_test_add_func("/config/text-clip", test_text_clip);
  g_test_add_func("/config/cluster/presets", test_cluster_presets);
  g_test_add_func("/config/model/rope-scaling", test_good_rope);
  for (gsize i = 0; i < G_N_ELEMENTS(bad_models); i++) {
    g_autofree char *path = g_strdup_printf("/config/model/bad/%s", bad_models[i].name);
    g_test_add_data_func(path, &bad_models[i], test_bad_model);
  }
  for (gsize i = 0; i < G_N_ELEMENTS(bad_clusters); i++) {
    g_autofree char *path = g_strdup_printf("/config/cluster/bad/%s", bad_clusters[i].name);
    g_test_add_data_func(path, &bad_clusters[i], test_bad_cluster);
  }
  return g_test_run();
}
