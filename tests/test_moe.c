/* test_moe.c — mixture of experts: published total and active parameter
 * counts, the expert grid and its rules (Megatron-Core's MoE parallel
 * folding), hand-computed memory bytes (a case with etp·ep ≠ tp), token
 * counts, all-to-all bytes and times by hand, FLOPs from active parameters. */
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include "config.h"
#include "cost.h"
#include "flops.h"
#include "memory.h"
#include "moe.h"
#include "search.h"

static PxModel *load(const char *name_or_file) {
  g_autoptr(GError) e = NULL;
  g_autofree char *path = strchr(name_or_file, '/') ? g_build_filename(px_data_dir(), name_or_file, NULL)
                                                    : g_strdup(name_or_file);
  PxModel *m = px_model_load(path, &e);
  g_assert_no_error(e);
  return m;
}

/* Billions rounded to the published precision (one decimal). */
static double billions(gint64 n) { return round(n / 1e8) / 10; }

/* Published pairs: Mixtral-8x7B 46.7 B / 12.9 B (Mistral AI, "Mixtral of
 * experts"); Qwen1.5-MoE-A2.7B 14.3 B / 2.7 B (Qwen blog, "Qwen1.5-MoE:
 * Matching 7B Model Performance with 1/3 Activated Parameters"); Qwen3-30B-A3B
 * 30.5 B / 3.3 B (its model card); DeepSeekMoE 16B 16.4 B / 2.8 B (Dai et al.
 * 2024, arXiv 2401.06066). The exact sums are those of the HF checkpoints'
 * tensors (hand-summed in docs/moe.md's table). */
static void test_published_counts(void) {
  static const struct {
    const char *model;
    gint64 total, active;
    double total_b, active_b;
  } cases[] = {
    {"configs/hf/mixtral-8x7b.json", 46702792704, 12879925248, 46.7, 12.9},
    {"mixtral-8x7b", 46702792704, 12879925248, 46.7, 12.9},
    {"configs/hf/qwen1.5-moe-a2.7b.json", 14315784192, 2689173504, 14.3, 2.7},
    /* the Qwen3 card gives 3.35 B active as "3.3B" (truncated; its 30.53 B total rounds either way) */
    {"configs/hf/qwen3-30b-a3b.json", 30532122624, 3353032704, 30.5, 3.4},
    {"deepseek-moe-16b", 16375728128, 2828650496, 16.4, 2.8},
  };
  g_autoptr(PxModel) q3 = load("configs/hf/qwen3-30b-a3b.json");
  g_assert_cmpfloat(floor(q3->active_params / 1e8) / 10, ==, 3.3);
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autoptr(PxModel) m = load(cases[i].model);
    g_assert_cmpfloat(billions(m->params), ==, cases[i].total_b);
    g_assert_cmpfloat(billions(m->active_params), ==, cases[i].active_b);
    g_assert_cmpint(m->params, ==, cases[i].total);
    g_assert_cmpint(m->active_params, ==, cases[i].active);
  }
  /* Mixtral by hand: 32 × (attention 4096·(4096 + 2·1024) + 4096·4096, router 8·4096,
   * 8 experts × 3·4096·14336, two norms) + 2 · 32000·4096 + 4096 */
  gint64 attn = 4096LL * (4096 + 2 * 1024) + 4096LL * 4096, expert = 3LL * 4096 * 14336;
  g_assert_cmpint(32 * (attn + 8 * 4096 + 8 * expert + 2 * 4096) + 2LL * 32000 * 4096 + 4096, ==, 46702792704);
  g_assert_cmpint(32 * (attn + 8 * 4096 + 2 * expert + 2 * 4096) + 2LL * 32000 * 4096 + 4096, ==, 12879925248);
}

static void test_layer_rule(void) {
  g_autoptr(PxModel) ds = load("deepseek-moe-16b");
  g_assert_false(px_model_block_is_moe(&ds->desc, 0)); /* first_k_dense_replace = 1 */
  for (int b = 1; b < 28; b++) g_assert_true(px_model_block_is_moe(&ds->desc, b));
  g_assert_cmpint(px_model_moe_blocks(&ds->desc), ==, 27);
  /* block 0's MLP is the dense 10944; block 1's has router, experts, shared experts */
  g_assert_cmpint(ds->layers[1].params, ==, 4LL * 2048 * 2048 + 3LL * 2048 * 10944 + 2 * 2048);
  gboolean router = FALSE;
  for (guint t = 0; t < ds->layers[2].n_tensors; t++) router |= ds->layers[2].tensors[t].role == PX_ROLE_ROUTER;
  g_assert_true(router);
  /* HF decoder_sparse_step 2: blocks 1, 3, 5, ... */
  PxModelDesc d = {.name = "every2", .layers = 4, .hidden = 64, .heads = 4, .kv_heads = 4, .ffn = 128, .vocab = 100,
                   .max_seq = 64, .ffn_kind = PX_FFN_SWIGLU, .norm = PX_NORM_RMSNORM, .pos = PX_POS_ROPE,
                   .experts = 4, .top_k = 1, .moe_every = 2};
  g_autoptr(GError) e = NULL;
  g_autoptr(PxModel) m = px_model_new(&d, &e);
  g_assert_no_error(e);
  g_assert_false(px_model_block_is_moe(&m->desc, 0));
  g_assert_true(px_model_block_is_moe(&m->desc, 1));
  g_assert_false(px_model_block_is_moe(&m->desc, 2));
  g_assert_true(px_model_block_is_moe(&m->desc, 3));
  /* k > E and experts without top_k are refused */
  d.top_k = 5;
  g_assert_null(px_model_new(&d, &e));
  g_assert_nonnull(strstr(e->message, "top_k = 5 must be 1..4"));
}

static void test_hf_refusals(void) {
  static const struct { const char *name, *json, *says; } cases[] = {
    {"ds3.json", "{\"model_type\": \"deepseek_v3\", \"n_routed_experts\": 256}", "multi-head latent attention"},
    {"only.json",
     "{\"model_type\": \"qwen2_moe\", \"num_hidden_layers\": 2, \"hidden_size\": 8, \"num_attention_heads\": 2, "
     "\"intermediate_size\": 16, \"vocab_size\": 10, \"max_position_embeddings\": 8, \"num_experts\": 4, "
     "\"num_experts_per_tok\": 2, \"moe_intermediate_size\": 8, \"mlp_only_layers\": [0]}",
     "mlp_only_layers"},
    {"llama-experts.json", "{\"model_type\": \"llama\", \"num_local_experts\": 8}", "a mixture of experts"},
  };
  g_autofree char *dir = g_dir_make_tmp("px-moe-XXXXXX", NULL);
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autofree char *path = g_build_filename(dir, cases[i].name, NULL);
    g_assert_true(g_file_set_contents(path, cases[i].json, -1, NULL));
    g_autoptr(GError) e = NULL;
    g_assert_null(px_model_load(path, &e));
    g_assert_nonnull(e);
    if (!strstr(e->message, cases[i].says)) g_test_message("%s", e->message);
    g_assert_nonnull(strstr(e->message, cases[i].says));
    g_remove(path);
  }
  g_rmdir(dir);
  /* the executor runs Mixtral's MoE (top-k renormalised, as the HF import
   * says too) but not Qwen2-MoE's shared-expert gate */
  g_autoptr(PxModel) m = load("mixtral-8x7b");
  g_autoptr(GError) e = NULL;
  g_assert_true(m->desc.norm_topk);
  g_assert_true(px_model_executable(m, &e));
  g_autoptr(PxModel) hm = load("configs/hf/mixtral-8x7b.json");
  g_assert_true(hm->desc.norm_topk);
  g_autoptr(PxModel) q = load("configs/hf/qwen1.5-moe-a2.7b.json");
  g_assert_false(q->desc.norm_topk); /* norm_topk_prob false */
  g_autoptr(PxModel) q3 = load("configs/hf/qwen3-30b-a3b.json");
  g_assert_true(q3->desc.norm_topk); /* norm_topk_prob true */
  g_assert_false(px_model_executable(q, &e));
  g_assert_nonnull(strstr(e->message, "shared-expert gate"));
}

static gboolean validate(PxPlan *p, const PxModel *m, int gpus, const char *says) {
  g_autoptr(GError) e = NULL;
  g_autoptr(PxCluster) c = px_cluster_load("dgx-h100", NULL);
  c->gpus_per_node = gpus % 8 ? gpus : MIN(gpus, 8);
  c->nodes = gpus / c->gpus_per_node;
  p->gbs = 0; /* one micro-batch per DP rank, whatever dp the case sets */
  gboolean ok = px_plan_validate(p, m, c, &e);
  if (says) {
    g_assert_false(ok);
    if (!strstr(e->message, says)) g_test_message("%s", e->message);
    g_assert_nonnull(strstr(e->message, says));
  } else {
    g_assert_no_error(e);
  }
  return ok;
}

/* Megatron-Core's folding: etp·ep·pp divides the world, ep divides the
 * experts, and the rest of px_moe_validate's rules. */
static void test_rules(void) {
  g_autoptr(PxModel) mx = load("mixtral-8x7b");
  g_autoptr(PxModel) dense = load("llama3-8b");
  PxPlan p;
  px_plan_init(&p);
  p.dp = 64;
  p.ep = 8;
  validate(&p, mx, 64, NULL);
  g_assert_cmpint(px_plan_edp(&p), ==, 8);
  p.ep = 3;
  p.dp = 63;
  validate(&p, mx, 63, "ep=3 does not divide the 8 experts");
  /* 8·2·... : etp 2 × ep 8 × pp 1 = 16 does not divide 24 */
  px_plan_clear(&p);
  px_plan_init(&p);
  p.dp = 12;
  p.tp = 2;
  p.seq_parallel = TRUE;
  p.ep = 8;
  validate(&p, mx, 24, "etp·ep·pp = 2·8·1 = 16 does not divide the 24 GPUs");
  /* ep under TP without sequence parallelism (Megatron-LM's check) */
  p.dp = 8;
  p.seq_parallel = FALSE;
  p.ep = 4;
  validate(&p, mx, 16, "needs sequence parallelism");
  /* pp not outermost: edp must equal dp */
  px_plan_clear(&p);
  px_plan_init(&p);
  p.dp = 8;
  p.pp = 2;
  p.ep = 4;
  px_order_parse("tp,pp,dp", p.order);
  validate(&p, mx, 16, "edp=2 must be equal");
  /* a dense model takes no ep */
  px_plan_clear(&p);
  px_plan_init(&p);
  p.dp = 8;
  p.ep = 2;
  validate(&p, dense, 8, "needs a mixture-of-experts model");
  px_plan_clear(&p);
}

/* The expert grid by hand: 16 GPUs, tp 2 × dp 8 for attention; experts etp 1
 * × ep 4 × edp 4, default order (tp,dp,pp): rank = etp_i + 1·(ep_i + 4·edp_i). */
static void test_grid(void) {
  PxPlan p;
  px_plan_init(&p);
  p.tp = 2;
  p.dp = 8;
  p.ep = 4;
  p.etp = 1;
  g_assert_cmpint(px_plan_edp(&p), ==, 4);
  g_assert_cmpint(px_moe_rank_of(&p, 0, 0, 3, 1), ==, 7);
  g_assert_cmpint(px_moe_rank_of(&p, 0, 0, 0, 3), ==, 12);
  /* etp 2 × ep 2 × edp 4: rank = etp_i + 2·(ep_i + 2·edp_i) */
  p.etp = 2;
  p.ep = 2;
  g_assert_cmpint(px_moe_rank_of(&p, 0, 1, 1, 2), ==, 1 + 2 * (1 + 2 * 2));
  /* 8 GPUs per node: an EP group of 2 within a node, of 8 across two nodes when etp 2 */
  g_assert_cmpint(px_moe_ep_per_node(&p, 0, 8), ==, 2);
  p.ep = 8;
  p.dp = 16;
  g_assert_cmpint(px_moe_ep_per_node(&p, 0, 8), ==, 4);
  px_plan_clear(&p);
}

/* Mixtral on 16 GPUs: attention tp 2 (SP) × dp 8, experts etp 1 × ep 4 × edp 4. */
static void mixtral16(PxPlan *p, const PxModel *mx, int zero) {
  px_plan_init(p);
  p->tp = 2;
  p->dp = 8;
  p->seq_parallel = TRUE;
  p->ep = 4;
  p->etp = 1;
  p->zero = zero;
  p->seq = 4096;
  validate(p, mx, 16, NULL);
}

/* Megatron-Bridge#3744: when etp·ep ≠ tp the experts per GPU and their ZeRO
 * divisor differ from the attention's. Mixtral on 16 GPUs: tp 2 (SP), dp 8;
 * experts etp 1 × ep 4 × edp 4; ZeRO-1, bf16 + Adam. By hand:
 *   dense per GPU (over tp 2): per block QKV 6144·4096/2 + proj 4096·4096/2 +
 *     2 norms 2·4096 + router 8·4096 = 21,012,480; × 32 = 672,399,360;
 *     embedding and LM head 32000·4096/2 each, final norm 4096:
 *     Pd = 803,475,456;
 *   experts per GPU: 8/4 = 2 experts × 3·4096·14336 per block × 32:
 *     Pe = 11,274,289,152;
 *   weights 2·(Pd + Pe), gradients the same, optimizer 12·(Pd/8 + Pe/4). */
static void test_memory_etp_ep_not_tp(void) {
  g_autoptr(PxModel) mx = load("mixtral-8x7b");
  PxPlan p;
  mixtral16(&p, mx, 1);
  g_autoptr(GError) e = NULL;
  g_autoptr(PxPartition) part = px_partition_new(mx, &p, NULL, &e);
  g_assert_no_error(e);
  g_autoptr(PxMemory) mem = px_memory_new(mx, &p, part, NULL);
  const double Pd = 803475456.0, Pe = 11274289152.0;
  g_assert_cmpfloat(mem->stages[0].params, ==, Pd + Pe);
  g_assert_cmpfloat(mem->stages[0].weights, ==, 2 * (Pd + Pe));
  g_assert_cmpfloat(mem->stages[0].gradients, ==, 2 * (Pd + Pe));
  g_assert_cmpfloat(mem->stages[0].optimizer, ==, 12 * (Pd / 8 + Pe / 4));
  g_assert_cmpfloat(mem->stages[0].optimizer, ==, 35028080640.0);
  /* ZeRO-3: everything sharded, dense over 8, experts over 4 */
  px_plan_clear(&p);
  mixtral16(&p, mx, 3);
  g_autoptr(PxPartition) part3 = px_partition_new(mx, &p, NULL, &e);
  g_autoptr(PxMemory) mem3 = px_memory_new(mx, &p, part3, NULL);
  g_assert_cmpfloat(mem3->stages[0].weights, ==, 2 * (Pd / 8 + Pe / 4));
  g_assert_cmpfloat(mem3->stages[0].gradients, ==, 2 * (Pd / 8 + Pe / 4));
  px_plan_clear(&p);
}

/* ZeRO-3 with the experts alone sharded (dp 1, tp 2, etp 1: the experts over
 * edp 2, the dense parameters whole on each rank) gathers the experts layer by
 * layer (px_zero3_by_layer; the executor runs it), so the cost table charges
 * each pass the all-gather of Mixtral's 8 · 32 · 3 · 4096 · 14336 =
 * 45,097,156,608 expert parameters in bf16: at least half of their
 * 90,194,313,216 B over NVLink's achieved 450 GB/s · 0.82 = 0.2444 s. ZeRO-2
 * gathers nothing. */
static void test_zero3_experts_only(void) {
  g_autoptr(PxModel) mx = load("mixtral-8x7b");
  g_autoptr(PxCluster) c = px_cluster_load("dgx-h100", NULL);
  c->gpus_per_node = 2;
  c->nodes = 1;
  for (int zero = 2; zero <= 3; zero++) {
    PxPlan p;
    px_plan_init(&p);
    p.tp = 2;
    p.seq_parallel = TRUE;
    p.etp = 1;
    p.zero = zero;
    p.seq = 4096;
    g_assert_true(validate(&p, mx, 2, NULL));
    g_autoptr(GError) e = NULL;
    g_autoptr(PxPartition) part = px_partition_new(mx, &p, NULL, &e);
    g_assert_no_error(e);
    g_autoptr(PxCostTable) t = px_cost_table_new(mx, c, &p, part, &e);
    g_assert_no_error(e);
    if (zero == 2) g_assert_cmpfloat(t->gather_pass[0], ==, 0);
    else g_assert_cmpfloat(t->gather_pass[0], >=, 0.5 * 90194313216.0 / (450e9 * 0.82));
    px_plan_clear(&p);
  }
}

/* The routed part's activations of one MoE block, by hand (moe.h): Mixtral,
 * mbs 1, seq 4096, tp 2 with SP, ep 4, etp 1, bf16: T_in = 2048 tokens, each
 * to k = 2 experts; the rank's 2 experts see 4096 tokens (2048 each).
 *   router 2048·8·4 + 2048·2·8          =      98,304
 *   permuted input 2·4096·4096           =  33,554,432
 *   SwiGLU inner 3·2·4096·14336          = 352,321,536
 *   expert output 2·4096·4096            =  33,554,432
 * With --imbalance 2 the busiest expert takes 4096 tokens: 6144 on the rank. */
static void test_activations(void) {
  g_autoptr(PxModel) mx = load("mixtral-8x7b");
  PxPlan p;
  mixtral16(&p, mx, 0);
  PxMoeTokens t;
  px_moe_tokens(mx, &p, &t);
  g_assert_cmpfloat(t.in, ==, 2048);
  g_assert_cmpfloat(t.total, ==, 4096);
  g_assert_cmpfloat(px_moe_activation_bytes(mx, &p), ==, 98304.0 + 33554432 + 352321536 + 33554432);
  p.imbalance = 2;
  px_moe_tokens(mx, &p, &t);
  g_assert_cmpfloat(t.busiest, ==, 4096);
  g_assert_cmpfloat(t.total, ==, 6144);
  g_assert_cmpfloat(px_moe_activation_bytes(mx, &p),
                    ==, 98304.0 + 2.0 * 6144 * 4096 + 3.0 * 2 * 6144 * 14336 + 2.0 * 6144 * 4096);
  /* a capacity factor caps the busiest expert: 1.25 × 2048 */
  g_autoptr(PxModel) capped = NULL;
  {
    PxModelDesc d = mx->desc;
    d.capacity_factor = 1.25;
    capped = px_model_new(&d, NULL);
  }
  px_moe_tokens(capped, &p, &t);
  g_assert_cmpfloat(t.busiest, ==, 2560);
  /* the capacity is whole copies per source rank (px_moe_capacity, Megatron-Core's
   * get_capacity): 1.3 gives ceil(2048·2/8 · 1.3) = ceil(665.6) = 666 from each
   * of the ep 4 ranks, 2664 (not 1.3 × 2048 = 2662.4) */
  g_autoptr(PxModel) capped13 = NULL;
  {
    PxModelDesc d = mx->desc;
    d.capacity_factor = 1.3;
    capped13 = px_model_new(&d, NULL);
  }
  g_assert_cmpint(px_moe_capacity(&capped13->desc, 2048), ==, 666);
  px_moe_tokens(capped13, &p, &t);
  g_assert_cmpfloat(t.busiest, ==, 2664);
  px_plan_clear(&p);
}

/* px_cost_alltoall by hand on a round cluster: NVLink 100 GB/s, NIC 10 GB/s
 * per GPU, no latency, efficiencies 1. B = 1.6 GB per rank.
 *   8 ranks in a node: 7/8 · 1.6e9 / 100e9 = 14 ms;
 *   16 ranks on two nodes of 8: max(7/16 · 1.6e9 / 100e9, 8/16 · 1.6e9 / 10e9) = 80 ms. */
static void test_alltoall(void) {
  PxCluster c = {.intra_bw = 100e9, .inter_bw = 10e9, .gpus_per_node = 8, .nodes = 2};
  g_assert_cmpfloat(fabs(px_cost_alltoall(&c, 1.6e9, 8, 8) - 0.014), <, 1e-12);
  g_assert_cmpfloat(fabs(px_cost_alltoall(&c, 1.6e9, 16, 8) - 0.080), <, 1e-12);
  g_assert_cmpfloat(px_cost_alltoall(&c, 1.6e9, 1, 1), ==, 0);
}

/* The layer's all-to-all: Mixtral, tp 1, ep 8 on one node, mbs 1, seq 4096:
 * each rank sends k · T = 2 · 4096 token copies of 4096 bf16 values =
 * 67,108,864 bytes in each of dispatch and combine: forward 2 all-to-alls. */
static void test_layer_alltoall(void) {
  g_autoptr(PxModel) mx = load("mixtral-8x7b");
  g_autoptr(PxCluster) c = px_cluster_load("dgx-h100", NULL);
  PxPlan p;
  px_plan_init(&p);
  p.dp = 8;
  p.ep = 8;
  p.seq = 4096;
  validate(&p, mx, 8, NULL);
  PxLayerTimes lt;
  PxLink tpl = px_cost_tp_link(c, &p, 0);
  px_cost_layer_times(mx, &mx->layers[1], c, &p, &tpl, &lt);
  double a2a = px_cost_alltoall(c, 2.0 * 4096 * 4096 * 2, 8, 8);
  g_assert_cmpfloat(fabs(lt.ep_fwd - 2 * a2a), <, 1e-15);
  g_assert_cmpfloat(lt.ep_fwd, >, 0);
  /* the imbalance slows the busiest rank's experts */
  PxLayerTimes slow;
  p.imbalance = 3;
  px_cost_layer_times(mx, &mx->layers[1], c, &p, &tpl, &slow);
  g_assert_cmpfloat(slow.fwd, >, lt.fwd);
  px_plan_clear(&p);
}

/* The load-balancing statistics' all-reduces (exec/moe_layer.c: 2E + 1
 * doubles, Mixtral's E 8: 136 bytes) in the layer's forward model-parallel
 * communication, by hand from docs/cost.md section 3 on one node of 8 with
 * NVLink α 5 µs and busbw 100 GB/s (no curve):
 *   over 2 ranks: ring 2·1·α + 2·(1/2)·136/1e11 = 10.00136 µs, tree
 *     2·ceil(log2 2)·α + 2·136/1e11 = 10.00272 µs: the ring, 10.00136 µs;
 *   over 4 ranks: ring 2·3·α + 2·(3/4)·136/1e11 = 30.00204 µs, tree
 *     2·2·α + 2·136/1e11 = 20.00272 µs: the tree, 20.00272 µs.
 * tp 2 with sequence parallelism: the TP group's, 10.00136 µs; without it
 * (every TP rank routes the same tokens): none; tp 2 sp · cp 2: TP then CP,
 * 20.00272 µs; cp 4: 20.00272 µs. None in the backward. */
static void test_layer_stats(void) {
  g_autoptr(PxModel) mx = load("mixtral-8x7b");
  g_autoptr(PxCluster) c = px_cluster_load("dgx-h100", NULL);
  c->gpus_per_node = 8;
  c->nodes = 1;
  c->intra_lat = 5e-6;
  c->intra_p2p_lat = 0;
  c->intra_bw = 100e9;
  c->intra_eff = 1;
  c->intra_curve.n = 0;
  const struct {
    int tp, cp, dp;
    gboolean sp;
    double want;
  } cases[] = {
    {2, 1, 4, TRUE, 10.00136e-6}, {2, 1, 4, FALSE, 0}, {2, 2, 2, TRUE, 20.00272e-6}, {1, 4, 2, FALSE, 20.00272e-6},
  };
  for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
    PxPlan p;
    px_plan_init(&p);
    p.tp = cases[i].tp;
    p.cp = cases[i].cp;
    p.dp = cases[i].dp;
    p.seq_parallel = cases[i].sp;
    p.seq = 4096;
    validate(&p, mx, 8, NULL);
    PxLayerTimes lt;
    PxLink tpl = px_cost_tp_link(c, &p, 0);
    px_cost_layer_times(mx, &mx->layers[1], c, &p, &tpl, &lt);
    g_test_message("tp %d%s cp %d: statistics %.5f us", p.tp, p.seq_parallel ? " sp" : "", p.cp, lt.moe_stats * 1e6);
    g_assert_cmpfloat(fabs(lt.moe_stats - cases[i].want), <, 1e-15);
    g_assert_cmpfloat(lt.tp_fwd, >=, lt.ep_fwd + lt.moe_stats);
    px_plan_clear(&p);
  }
}

/* Forward FLOPs of a Mixtral block at seq 1: 2 per multiply-add of the
 * active GEMM weights (attention 41,943,040 + router 32,768 + 2 of 8 experts
 * 352,321,536) plus 4·1·1·4096 for the attention core. */
static void test_flops_active(void) {
  g_autoptr(PxModel) mx = load("mixtral-8x7b");
  double f = px_layer_forward_flops(mx, &mx->layers[1], 1);
  g_assert_cmpfloat(f, ==, 2.0 * (41943040 + 32768 + 352321536) + 4.0 * 4096);
  PxPlan p;
  px_plan_init(&p);
  p.seq = 4096;
  PxFlops fl;
  px_flops_compute(mx, &p, &fl);
  /* 6N with N the active parameters */
  g_assert_cmpfloat(fl.approx_6n_per_token, ==, 6.0 * 12879925248 + 12.0 * 32 * 4096 * 4096);
  px_plan_clear(&p);
}

/* The search evaluates an MoE layout with the core's memory model (exactly)
 * and its analytic time near the engine's (search.h). */
static void test_search_consistent(void) {
  g_autoptr(PxModel) mx = load("mixtral-8x7b");
  g_autoptr(PxCluster) c = px_cluster_load("dgx-h100", NULL);
  c->nodes = 4;
  PxPlan base;
  px_plan_init(&base);
  base.seq = 2048;
  base.gbs = 64;
  PxLayout l = {.tp = 2, .pp = 2, .dp = 8, .vpp = 1, .mbs = 1, .zero = 1, .ckpt = PX_CKPT_SELECTIVE, .sp = 1,
                .schedule = PX_SCHED_1F1B, .ep = 4, .etp = 1};
  PxSearchCandidate cand = {.layout = l};
  g_assert_true(px_search_evaluate(mx, c, &base, &l, &cand.memory, &cand.analytic_time));
  PxPlan p;
  px_plan_copy(&p, &base);
  px_layout_apply(&l, &p);
  g_autoptr(GError) e = NULL;
  g_assert_true(px_plan_validate(&p, mx, c, &e));
  g_assert_cmpint(px_plan_edp(&p), ==, 4);
  g_autoptr(PxPartition) part = px_partition_new(mx, &p, NULL, &e);
  g_autoptr(PxMemory) mem = px_memory_new(mx, &p, part, c);
  g_assert_cmpfloat(fabs(cand.memory - mem->peak), <=, 1e-6 * mem->peak);
  g_assert_true(px_search_confirm(mx, c, &base, &cand, &e));
  g_assert_no_error(e);
  g_test_message("analytic %.4f s, simulated %.4f s", cand.analytic_time, cand.step_time);
  g_assert_cmpfloat(fabs(cand.analytic_time - cand.step_time) / cand.step_time, <, 0.05);
  px_plan_clear(&p);
  px_plan_clear(&base);
}

/* ep, etp and imbalance travel through a plan INI and back. */
static void test_plan_ini(void) {
  PxPlan p, q;
  px_plan_init(&p);
  px_plan_init(&q);
  p.ep = 8;
  p.etp = 1;
  p.imbalance = 1.5;
  p.gbs = 8; /* a validated plan's batch and sequence */
  p.seq = 4096;
  g_autofree char *ini = px_plan_to_ini(&p);
  g_autofree char *path = g_build_filename(g_get_tmp_dir(), "px-moe-plan.ini", NULL);
  g_assert_true(g_file_set_contents(path, ini, -1, NULL));
  g_autoptr(GError) e = NULL;
  g_assert_true(px_plan_load_ini(&q, path, &e));
  g_assert_no_error(e);
  g_assert_cmpint(q.ep, ==, 8);
  g_assert_cmpint(q.etp, ==, 1);
  g_assert_cmpfloat(q.imbalance, ==, 1.5);
  g_remove(path);
  /* an expert cannot take more than every token: imbalance ≤ E/k = 4 for Mixtral */
  g_autoptr(PxModel) mx = load("mixtral-8x7b");
  q.imbalance = 5;
  q.dp = 8;
  validate(&q, mx, 8, "imbalance 5 exceeds E/k = 8/2");
  px_plan_clear(&p);
  px_plan_clear(&q);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/moe/published-counts", test_published_counts);
  g_test_add_func("/moe/layer-rule", test_layer_rule);
  g_test_add_func("/moe/hf-refusals", test_hf_refusals);
  g_test_add_func("/moe/rules", test_rules);
  g_test_add_func("/moe/grid", test_grid);
  g_test_add_func("/moe/memory-etp-ep-not-tp", test_memory_etp_ep_not_tp);
  g_test_add_func("/moe/zero3-experts-only-cost", test_zero3_experts_only);
  g_test_add_func("/moe/activations", test_activations);
  g_test_add_func("/moe/alltoall", test_alltoall);
  g_test_add_func("/moe/layer-alltoall", test_layer_alltoall);
  g_test_add_func("/moe/layer-stats", test_layer_stats);
  g_test_add_func("/moe/flops-active", test_flops_active);
  g_test_add_func("/moe/search-consistent", test_search_consistent);
  g_test_add_func("/moe/plan-ini", test_plan_ini);
  return g_test_run();
}
