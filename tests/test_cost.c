/* test_cost.c — the cost model against hand-computed values and the FLOP
 * formulas of Megatron-LM (Narayanan et al. 2021, appendix; Korthikanti et al.
 * 2022). */
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include "cost.h"
#include "moe.h"

#define REL(a, b) (fabs((a) - (b)) / fabs(b))

/* n nodes of g GPUs: NVLink 400 GB/s / 2 us, network 25 GB/s / 10 us. */
static PxCluster make_cluster(int g, int n) {
  PxCluster c = {0};
  c.gpus_per_node = g;
  c.nodes = n;
  c.peak_fp32 = 60e12;
  c.peak_tf32 = 400e12;
  c.peak_fp16 = c.peak_bf16 = 1e15;
  c.hbm_bw = 3e12;
  c.intra_bw = 400e9;
  c.intra_lat = 2e-6;
  c.inter_bw = 25e9;
  c.inter_lat = 10e-6;
  c.pcie_bw = 25e9;
  c.gpu_memory = 80000000000;
  return c;
}

static void set_plan(PxPlan *p, int dp, int tp, int pp, int mbs, int gbs) {
  px_plan_init(p);
  p->dp = dp;
  p->tp = tp;
  p->pp = pp;
  p->vpp = 1;
  p->mbs = mbs;
  p->gbs = gbs;
  p->m = gbs / (mbs * dp);
}

/* One micro-batch of 32 tokens in bf16 on one GPU, under `stack`. */
static void set_bf16_token_plan(PxPlan *p, PxStack stack) {
  set_plan(p, 1, 1, 1, 1, 1);
  p->precision = PX_PREC_BF16;
  p->seq = 32;
  p->stack = stack;
}

/* A 2-block GPT with biases, tied embedding, learned positions. Parameters
 * (h = 64, V = 100, s = 32): embedding V h + s h = 8448; each block
 * qkv 3h^2+3h, proj h^2+h, fc 4h^2+4h, fc2 4h^2+h, 2 LayerNorms 4h:
 * 12 h^2 + 13 h = 49984; final norm 2h = 128; LM head tied (0 own). */
static PxModel *tiny_model(void) {
  PxModelDesc d = {.name = (char *)"tiny", .layers = 2, .hidden = 64, .heads = 4, .kv_heads = 4,
                   .ffn = 256, .vocab = 100, .max_seq = 32, .ffn_kind = PX_FFN_GELU,
                   .norm = PX_NORM_LAYERNORM, .pos = PX_POS_LEARNED, .bias = TRUE, .tied = TRUE,
                   .dropout = FALSE};
  g_autoptr(GError) err = NULL;
  PxModel *m = px_model_new(&d, &err);
  g_assert_no_error(err);
  return m;
}
#define TINY_PARAMS (8448.0 + 2 * 49984.0 + 128.0)

/* A cluster INI with calibrate's per-class keys: read back as written, and
 * each class charged at its own rate, bytes / rate + kernels x overhead
 * (hand-computed on the tiny model at T = 1 x 32 tokens, h 64, V 100, fp32:
 * E = 4). Without the keys the same terms run at hbm_bw. */
static PxCostTable *tiny_table(PxPlan *p, const PxCluster *c, PxModel **model_out);

/* A cluster profile from INI text, through a temporary file (as --cluster
 * FILE reads it); NULL and *error when the loader refuses it. */
static PxCluster *cluster_from_ini_or_error(const char *ini, GError **error) {
  g_autoptr(GError) err = NULL;
  g_autofree char *path = NULL;
  int fd = g_file_open_tmp("px-cluster-XXXXXX.ini", &path, &err);
  g_assert_no_error(err);
  close(fd);
  g_assert_true(g_file_set_contents(path, ini, -1, &err));
  PxCluster *c = px_cluster_load_ini(path, error);
  g_remove(path);
  return c;
}

static PxCluster *cluster_from_ini(const char *ini) {
  g_autoptr(GError) err = NULL;
  PxCluster *c = cluster_from_ini_or_error(ini, &err);
  g_assert_no_error(err);
  return c;
}

/* [cluster] calibrated_dtype (calibrate --dtype): absent in a hand-written
 * profile; f32, bf16, f16 kept (fp32 / fp16 spelled as f32 / f16), through
 * px_cluster_copy too; any other value refused with the key named. */
static void test_calibrated_dtype(void) {
  static const char *body = "[gpu]\nmemory = 16GiB\npeak_fp32 = 1e12\npeak_bf16 = 2e12\nhbm_bw = 1e11\n"
                            "[node]\ngpus = 1\nbandwidth = 1e10\n[network]\nbandwidth = 1e9\n";
  g_autofree char *none = g_strdup_printf("[cluster]\nname = x\n%s", body);
  g_autoptr(PxCluster) plain = cluster_from_ini(none);
  g_assert_null(plain->calibrated_dtype);
  static const char *given[][2] = {{"f32", "f32"}, {"bf16", "bf16"}, {"f16", "f16"}, {"FP32", "f32"}, {"fp16", "f16"}};
  for (gsize i = 0; i < G_N_ELEMENTS(given); i++) {
    g_autofree char *ini = g_strdup_printf("[cluster]\nname = x\ncalibrated_dtype = %s\n%s", given[i][0], body);
    g_autoptr(PxCluster) c = cluster_from_ini(ini);
    g_assert_cmpstr(c->calibrated_dtype, ==, given[i][1]);
    g_autoptr(PxCluster) copy = px_cluster_copy(c);
    g_assert_cmpstr(copy->calibrated_dtype, ==, given[i][1]);
    g_assert_true(copy->calibrated_dtype != c->calibrated_dtype); /* its own string: both are freed */
  }
  static const char *bad[] = {"f64", "int8", ""};
  for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
    g_autofree char *ini = g_strdup_printf("[cluster]\nname = x\ncalibrated_dtype = %s\n%s", bad[i], body);
    g_autoptr(GError) err = NULL;
    g_autoptr(PxCluster) c = cluster_from_ini_or_error(ini, &err);
    g_assert_null(c);
    g_assert_error(err, PX_CLUSTER_ERROR, PX_CLUSTER_ERROR_INVALID);
    g_assert_nonnull(strstr(err->message, "calibrated_dtype"));
  }
}

/* A stack whose LayerNorms are PyTorch's native kernels run eagerly (fsdp,
 * llm-foundry's low_precision_layernorm) charges them at the cluster's
 * eager_layernorm_efficiency_* (docs/cost.md section 7, "eager LayerNorm").
 * Hand-computed on the tiny model's final LayerNorm, bf16 (E = 2), T = 32,
 * h = 64: forward 2 x 32 x 64 x 2 = 8192 B, backward 5 x 4096 = 20480 B in 2
 * kernels; hbm_bw 3 TB/s, hbm_efficiency 0.9, eager 0.5 / 0.6, 1 us per kernel. */
static void test_eager_layernorm(void) {
  static const char *ini =
      "[cluster]\nname = eager\nnodes = 1\n[gpu]\nmemory = 16GiB\npeak_fp32 = 60e12\npeak_bf16 = 1e15\n"
      "hbm_bw = 3e12\nhbm_efficiency = 0.9\nkernel_overhead = 1e-6\n"
      "eager_layernorm_efficiency_fwd = 0.5\neager_layernorm_efficiency_bwd = 0.6\n"
      "[node]\ngpus = 1\nbandwidth = 400e9\n[network]\nbandwidth = 25e9\n";
  g_autoptr(PxCluster) c = cluster_from_ini(ini);
  g_assert_cmpfloat(c->eager_ln_eff[0], ==, 0.5);
  g_assert_cmpfloat(c->eager_ln_eff[1], ==, 0.6);
  g_autoptr(PxModel) m = tiny_model();
  PxPlan p;
  set_plan(&p, 1, 1, 1, 1, 1);
  p.precision = PX_PREC_BF16;
  p.seq = 32;
  PxLink l = {400e9, 2e-6, TRUE, NULL};
  PxLayerTimes fn;
  p.stack = PX_STACK_FSDP;
  px_cost_layer_times(m, &m->layers[3], c, &p, &l, &fn);
  g_assert_cmpfloat(REL(fn.fwd, 8192 / 1.5e12 + 1e-6), <, 1e-12);
  g_assert_cmpfloat(REL(fn.bwd_input, 20480 / 1.8e12 + 2e-6), <, 1e-12);
  /* the other stacks' LayerNorms (apex, this executor) at the HBM rate, 2.7 TB/s */
  p.stack = PX_STACK_PARALLAX;
  px_cost_layer_times(m, &m->layers[3], c, &p, &l, &fn);
  g_assert_cmpfloat(REL(fn.fwd, 8192 / 2.7e12 + 1e-6), <, 1e-12);
  g_assert_cmpfloat(REL(fn.bwd_input, 20480 / 2.7e12 + 2e-6), <, 1e-12);
  /* Transformer Engine's backward (megatron-core) reads dy and x once, writes
   * dx and dgamma / dbeta partials, summed by a second kernel
   * (ln_bwd_kernels.cuh): 3 x 32 x 64 x 2 = 12288 B, 2 kernels */
  p.stack = PX_STACK_MEGATRON_CORE;
  px_cost_layer_times(m, &m->layers[3], c, &p, &l, &fn);
  g_assert_cmpfloat(REL(fn.fwd, 8192 / 2.7e12 + 1e-6), <, 1e-12);
  g_assert_cmpfloat(REL(fn.bwd_input, 12288 / 2.7e12 + 2e-6), <, 1e-12);
  /* a calibrated norm rate is the cluster's own measurement: it wins */
  g_autoptr(PxCluster) cal = px_cluster_copy(c);
  cal->membound_bw[PX_OPC_NORM][0] = 2e9;
  p.stack = PX_STACK_FSDP;
  px_cost_layer_times(m, &m->layers[3], cal, &p, &l, &fn);
  g_assert_cmpfloat(REL(fn.fwd, 8192 / 2e9 + 1e-6), <, 1e-12);
  g_assert_cmpfloat(REL(fn.bwd_input, 20480 / 1.8e12 + 2e-6), <, 1e-12);
  /* an RMSNorm is not that kernel: 2 B per element forward, 3 backward, at the HBM rate */
  g_autoptr(PxModel) r = tiny_model();
  r->desc.norm = PX_NORM_RMSNORM;
  px_cost_layer_times(r, &r->layers[3], c, &p, &l, &fn);
  g_assert_cmpfloat(REL(fn.fwd, 8192 / 2.7e12 + 1e-6), <, 1e-12);
  g_assert_cmpfloat(REL(fn.bwd_input, 12288 / 2.7e12 + 1e-6), <, 1e-12);
  px_plan_clear(&p);
}

/* The one rate lookup (px_cost_class_rate), hand-computed: hbm_bw 3 TB/s,
 * hbm_efficiency 0.9 (the default rate 2.7 TB/s), eager LayerNorm 0.5 / 0.6
 * (1.5 / 1.8 TB/s). The fsdp stack's LayerNorms take the eager rate; a
 * calibrated membound_bw_norm_* wins over it; an RMSNorm model, a stack
 * without eager LayerNorms, another class or a kernel of no class get the
 * default; so does a cluster without the eager keys. */
static void test_class_rate(void) {
  PxCluster c = make_cluster(8, 1);
  c.hbm_eff = 0.9;
  c.eager_ln_eff[0] = 0.5;
  c.eager_ln_eff[1] = 0.6;
  PxModelDesc ln = {.norm = PX_NORM_LAYERNORM}, rms = {.norm = PX_NORM_RMSNORM};
  g_assert_cmpfloat(REL(px_cost_class_rate(&c, PX_STACK_FSDP, &ln, PX_OPC_NORM, 0), 1.5e12), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_class_rate(&c, PX_STACK_FSDP, &ln, PX_OPC_NORM, 1), 1.8e12), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_class_rate(&c, PX_STACK_FSDP, &rms, PX_OPC_NORM, 0), 2.7e12), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_class_rate(&c, PX_STACK_FSDP, NULL, PX_OPC_NORM, 0), 2.7e12), <, 1e-12);
  for (PxStack st = 0; st < PX_N_STACKS; st++)
    if (st != PX_STACK_FSDP) g_assert_cmpfloat(REL(px_cost_class_rate(&c, st, &ln, PX_OPC_NORM, 1), 2.7e12), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_class_rate(&c, PX_STACK_FSDP, &ln, PX_OPC_ACT, 0), 2.7e12), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_class_rate(&c, PX_STACK_FSDP, &ln, (PxOpClass)-1, 0), 2.7e12), <, 1e-12);
  /* only the direction the cluster gives */
  c.eager_ln_eff[1] = 0;
  g_assert_cmpfloat(REL(px_cost_class_rate(&c, PX_STACK_FSDP, &ln, PX_OPC_NORM, 0), 1.5e12), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_class_rate(&c, PX_STACK_FSDP, &ln, PX_OPC_NORM, 1), 2.7e12), <, 1e-12);
  /* calibrated: the cluster's own measurement wins, on every stack and norm */
  c.eager_ln_eff[1] = 0.6;
  c.membound_bw[PX_OPC_NORM][0] = 2e9;
  c.membound_bw[PX_OPC_ACT][1] = 3e9;
  g_assert_cmpfloat(px_cost_class_rate(&c, PX_STACK_FSDP, &ln, PX_OPC_NORM, 0), ==, 2e9);
  g_assert_cmpfloat(REL(px_cost_class_rate(&c, PX_STACK_FSDP, &ln, PX_OPC_NORM, 1), 1.8e12), <, 1e-12);
  g_assert_cmpfloat(px_cost_class_rate(&c, PX_STACK_PARALLAX, &rms, PX_OPC_NORM, 0), ==, 2e9);
  g_assert_cmpfloat(px_cost_class_rate(&c, PX_STACK_MEGATRON_CORE, &ln, PX_OPC_ACT, 1), ==, 3e9);
  /* and the charge is bytes / that rate + kernels x overhead: 8192 B, 2 kernels of 1 us */
  c.kernel_overhead = 1e-6;
  g_assert_cmpfloat(REL(px_cost_membound_class(&c, PX_STACK_FSDP, &ln, PX_OPC_NORM, 1, 8192, 2), 8192 / 1.8e12 + 2e-6),
                    <, 1e-12);
}

/* Squared ReLU (PX_FFN_RELU2) as NeMo's squared_relu runs it, eagerly:
 * torch.pow(F.relu(x), 2). Forward relu (read x, write r) and pow (read r,
 * write y): 4 passes, 2 kernels. Backward, from PyTorch's derivatives:
 * pow_backward = grad * (2 * r.pow(1)): the copy r.pow(1) (2 passes), the
 * scalar multiply (2), the product (3); relu's threshold_backward (3): 10
 * passes, 4 kernels. GELU's fused kernel: 2 | 3 passes, 1 kernel each. */
static void test_squared_relu(void) {
  /* Nemotron-4 15B at tp 2, micro-batch 2 x 4096: T = 8192 rows of
   * ffn / tp = 12288 bf16 elements, 201326592 B a pass */
  PxModelDesc d = {.ffn_kind = PX_FFN_RELU2, .norm = PX_NORM_LAYERNORM, .pos = PX_POS_ROPE};
  int k = 0;
  g_assert_cmpfloat(px_cost_class_bytes(&d, PX_OPC_ACT, 0, 8192, 12288, 2, &k), ==, 805306368.0);
  g_assert_cmpint(k, ==, 2);
  g_assert_cmpfloat(px_cost_class_bytes(&d, PX_OPC_ACT, 1, 8192, 12288, 2, &k), ==, 2013265920.0);
  g_assert_cmpint(k, ==, 4);
  d.ffn_kind = PX_FFN_GELU;
  g_assert_cmpfloat(px_cost_class_bytes(&d, PX_OPC_ACT, 0, 8192, 12288, 2, &k), ==, 402653184.0);
  g_assert_cmpint(k, ==, 1);
  g_assert_cmpfloat(px_cost_class_bytes(&d, PX_OPC_ACT, 1, 8192, 12288, 2, &k), ==, 603979776.0);
  g_assert_cmpint(k, ==, 1);

  /* a block of the tiny model (T = 32 tokens, ffn 256, bf16) with either
   * activation, everything else equal: the squared ReLU's block is slower by
   * 2 x 32 x 256 x 2 = 32768 B and one kernel forward, 7 x 16384 = 114688 B
   * and three kernels backward, at 3 TB/s x 0.9 with 1 us per kernel */
  static const char *ini =
      "[cluster]\nname = relu2\nnodes = 1\n[gpu]\nmemory = 16GiB\npeak_fp32 = 60e12\npeak_bf16 = 1e15\n"
      "hbm_bw = 3e12\nhbm_efficiency = 0.9\nkernel_overhead = 1e-6\n"
      "[node]\ngpus = 1\nbandwidth = 400e9\n[network]\nbandwidth = 25e9\n";
  g_autoptr(PxCluster) c = cluster_from_ini(ini);
  g_autoptr(PxModel) gelu = tiny_model();
  g_autoptr(PxModel) relu2 = NULL;
  {
    PxModelDesc rd = gelu->desc;
    rd.ffn_kind = PX_FFN_RELU2;
    g_autoptr(GError) err = NULL;
    relu2 = px_model_new(&rd, &err);
    g_assert_no_error(err);
  }
  PxPlan p;
  set_bf16_token_plan(&p, PX_STACK_MEGATRON_CORE);
  PxLink l = {400e9, 2e-6, TRUE, NULL};
  g_assert_cmpint(gelu->layers[1].kind, ==, PX_LAYER_BLOCK);
  PxLayerTimes tg, tr;
  px_cost_layer_times(gelu, &gelu->layers[1], c, &p, &l, &tg);
  px_cost_layer_times(relu2, &relu2->layers[1], c, &p, &l, &tr);
  g_assert_cmpfloat(REL(tr.fwd - tg.fwd, 32768 / 2.7e12 + 1e-6), <, 1e-9);
  g_assert_cmpfloat(REL(tr.bwd_input - tg.bwd_input, 114688 / 2.7e12 + 3e-6), <, 1e-9);
  g_assert_cmpfloat(tr.bwd_weight, ==, tg.bwd_weight);
  /* the same tensors: the memory and the parameters do not change */
  g_assert_cmpint(relu2->params, ==, gelu->params);
  /* the executor has no squared-ReLU MLP */
  g_autoptr(GError) err = NULL;
  g_assert_false(px_model_executable(relu2, &err));
  g_assert_error(err, PX_MODEL_ERROR, PX_MODEL_ERROR_INVALID);
  px_plan_clear(&p);
}

/* Routed experts with squared ReLU: their activation goes through the same
 * class bytes and rate as a dense MLP's (px_cost_class_bytes PX_OPC_ACT).
 * A 2-block MoE model (h 64, every block 4 experts of 96, top 2, no shared
 * experts), one micro-batch of 32 tokens, tp = ep = 1: the 4 experts take
 * 2 x 32 = 64 routed rows, one pass over their activations 64 x 96 x 2 B =
 * 12288 B. Squared ReLU against GELU, all else equal (the same tensors):
 * forward 4 - 2 passes = 24576 B and 2 - 1 kernels, backward 10 - 3 passes =
 * 86016 B and 4 - 1 kernels, at 3 TB/s x 0.9 with 1 us per kernel (no dense
 * MLP in the block, so no activation kernel of its own). With calibrated
 * activation rates (1e12 forward, 5e11 backward) the experts' 4 | 10 passes,
 * 49152 | 122880 B, move from 2.7e12 to those rates. The saved tensors:
 * router 32 x 4 x 4 + 32 x 2 x 8 = 1024 B, the permuted input 2 x 64 x 64 =
 * 8192, relu's output r (saved for threshold_backward and pow_backward
 * alike) and the fc2 input 2 x 2 x 64 x 96 = 24576, the expert output
 * 2 x 64 x 64 = 8192: 41984 B, GELU's too. */
static void test_moe_squared_relu(void) {
  static const char *head = "[cluster]\nname = moe-relu2\nnodes = 1\n[gpu]\nmemory = 16GiB\npeak_fp32 = 60e12\n"
                            "peak_bf16 = 1e15\nhbm_bw = 3e12\nhbm_efficiency = 0.9\nkernel_overhead = 1e-6\n";
  static const char *tail = "[node]\ngpus = 1\nbandwidth = 400e9\n[network]\nbandwidth = 25e9\n";
  g_autofree char *plain_ini = g_strconcat(head, tail, NULL);
  g_autofree char *cal_ini =
      g_strconcat(head, "membound_bw_act_fwd = 1e12\nmembound_bw_act_bwd = 5e11\n", tail, NULL);
  g_autoptr(PxCluster) c = cluster_from_ini(plain_ini);
  g_autoptr(PxCluster) cal = cluster_from_ini(cal_ini);
  PxModelDesc d = {.name = (char *)"tiny-moe-relu2", .layers = 2, .hidden = 64, .heads = 4, .kv_heads = 4,
                   .ffn = 256, .vocab = 100, .max_seq = 32, .ffn_kind = PX_FFN_RELU2,
                   .norm = PX_NORM_RMSNORM, .pos = PX_POS_ROPE, .experts = 4, .top_k = 2, .expert_ffn = 96};
  g_autoptr(GError) err = NULL;
  g_autoptr(PxModel) relu2 = px_model_new(&d, &err);
  g_assert_no_error(err);
  d.ffn_kind = PX_FFN_GELU;
  g_autoptr(PxModel) gelu = px_model_new(&d, &err);
  g_assert_no_error(err);
  g_assert_true(px_model_block_is_moe(&relu2->desc, 0));
  PxPlan p;
  set_bf16_token_plan(&p, PX_STACK_MEGATRON_CORE);
  PxLink l = {400e9, 2e-6, TRUE, NULL};
  g_assert_cmpint(relu2->layers[1].kind, ==, PX_LAYER_BLOCK);
  PxLayerTimes tg, tr, tc;
  px_cost_layer_times(gelu, &gelu->layers[1], c, &p, &l, &tg);
  px_cost_layer_times(relu2, &relu2->layers[1], c, &p, &l, &tr);
  g_assert_cmpfloat(REL(tr.fwd - tg.fwd, 24576 / 2.7e12 + 1e-6), <, 1e-9);
  g_assert_cmpfloat(REL(tr.bwd_input - tg.bwd_input, 86016 / 2.7e12 + 3e-6), <, 1e-9);
  g_assert_cmpfloat(tr.bwd_weight, ==, tg.bwd_weight);
  px_cost_layer_times(relu2, &relu2->layers[1], cal, &p, &l, &tc);
  g_assert_cmpfloat(REL(tc.fwd - tr.fwd, 49152 / 1e12 - 49152 / 2.7e12), <, 1e-9);
  g_assert_cmpfloat(REL(tc.bwd_input - tr.bwd_input, 122880 / 5e11 - 122880 / 2.7e12), <, 1e-9);
  g_assert_cmpfloat(px_moe_activation_bytes(relu2, &p), ==, 41984.0);
  g_assert_cmpfloat(px_moe_activation_bytes(gelu, &p), ==, 41984.0);
  px_plan_clear(&p);
}

/* Megatron-Core's fused vocab-parallel cross entropy (fused_cross_entropy.py,
 * core_v0.11.0): three compiled functions, each writing what it returns.
 * Forward per logit: the fp32 copy (read 2, write 4), max-subtract and exp in
 * place (4 + 4), the division into the softmax (4 + 4): 22 B; backward: mul_
 * in place (4 + 4) and the bf16 gradient (2): 10 B. The default class: 8 | 8.
 * Tiny model's head (T = 32 tokens, V = 100, bf16): 3200 logits, so the
 * megatron-core head is slower than the parallax stack's by 3200 x 14 B
 * forward and 3200 x 2 B backward at 2.7 TB/s, the kernels the same. */
static void test_megatron_core_cross_entropy(void) {
  static const char *ini =
      "[cluster]\nname = ce\nnodes = 1\n[gpu]\nmemory = 16GiB\npeak_fp32 = 60e12\npeak_bf16 = 1e15\n"
      "hbm_bw = 3e12\nhbm_efficiency = 0.9\nkernel_overhead = 1e-6\n"
      "[node]\ngpus = 1\nbandwidth = 400e9\n[network]\nbandwidth = 25e9\n";
  g_autoptr(PxCluster) c = cluster_from_ini(ini);
  g_autoptr(PxModel) m = tiny_model();
  const PxLayer *head = &m->layers[m->n_layers - 1];
  g_assert_cmpint(head->kind, ==, PX_LAYER_LM_HEAD);
  PxPlan p;
  set_bf16_token_plan(&p, PX_STACK_MEGATRON_CORE);
  PxLink l = {400e9, 2e-6, TRUE, NULL};
  PxLayerTimes mc, px;
  px_cost_layer_times(m, head, c, &p, &l, &mc);
  p.stack = PX_STACK_PARALLAX;
  px_cost_layer_times(m, head, c, &p, &l, &px);
  g_assert_cmpfloat(REL(mc.fwd - px.fwd, 3200 * 14 / 2.7e12), <, 1e-9);
  g_assert_cmpfloat(REL(mc.bwd_input - px.bwd_input, 3200 * 2 / 2.7e12), <, 1e-9);
  g_assert_cmpfloat(mc.bwd_weight, ==, px.bwd_weight);
  px_plan_clear(&p);
}

/* The presets reproduce the published times they come from: Liger-Kernel's
 * torch.nn.LayerNorm rows (benchmark/data/all_benchmark_data.csv), fp32,
 * 4096 x 16384: H100 80GB HBM3 forward 306.784 us, forward + backward
 * 950.576 us; A100-SXM4-80GB 506.688 / 1621.280 us. The constants are rounded
 * to three digits: within 0.5 %. */
static void test_eager_layernorm_presets(void) {
  PxModelDesc d = {.name = (char *)"wide", .layers = 1, .hidden = 16384, .heads = 128, .kv_heads = 128,
                   .ffn = 65536, .vocab = 128, .max_seq = 4096, .ffn_kind = PX_FFN_GELU,
                   .norm = PX_NORM_LAYERNORM, .pos = PX_POS_LEARNED, .bias = TRUE, .tied = TRUE, .dropout = FALSE};
  g_autoptr(GError) err = NULL;
  g_autoptr(PxModel) m = px_model_new(&d, &err);
  g_assert_no_error(err);
  const PxLayer *fnl = &m->layers[m->n_layers - 2];
  g_assert_cmpint(fnl->kind, ==, PX_LAYER_FINAL_NORM);
  PxPlan p;
  set_plan(&p, 1, 1, 1, 1, 1);
  p.precision = PX_PREC_FP32;
  p.seq = 4096;
  p.stack = PX_STACK_FSDP;
  PxLink l = {400e9, 2e-6, TRUE, NULL};
  static const struct { const char *preset; double fwd, full; } pub[] = {
      {"dgx-h100", 306.784e-6, 950.576e-6}, {"dgx-a100-80g", 506.688e-6, 1621.280e-6}};
  for (gsize i = 0; i < G_N_ELEMENTS(pub); i++) {
    g_autoptr(PxCluster) c = px_cluster_load(pub[i].preset, &err);
    g_assert_no_error(err);
    PxLayerTimes fn;
    px_cost_layer_times(m, fnl, c, &p, &l, &fn);
    g_assert_cmpfloat(REL(fn.fwd, pub[i].fwd), <, 5e-3);
    g_assert_cmpfloat(REL(fn.bwd_input, pub[i].full - pub[i].fwd), <, 5e-3);
  }
  px_plan_clear(&p);
}

/* The unfused attention core (Megatron's baddbmm + fused masked softmax +
 * dropout + bmm) against the FlashAttention paper (Dao et al. 2022, arXiv
 * 2205.14135, Appendix E.6): one A100 40 GB (1555 GB/s), fp16, batch 16,
 * 8 heads of dim 64 (h 512), row "Megatron", forward + backward:
 *   Table 11 (dropout + masking)  s 2048: 16.50 ms, s 1024: 4.21 ms
 *   Table 14 (masking alone)      s 2048: 12.39 ms, s 1024: 3.36 ms
 * The dgx-a100-80g preset with the 40 GB part's HBM. By hand at s 2048, no
 * dropout: S = 16 * 8 * 2048^2 = 536870912 scores; each batched GEMM moves
 * 128 * 2 B * (2 * 2048 * 64 + 2048^2) = 1140850688 B (memory-bound: the
 * (s, 64, s) ones' 6.87e10 FLOPs at 312 T x 0.859 x 0.5 (half the 128-wide
 * tile) take 0.514 ms), the softmax 2 S E forward, 3 S E backward, all at
 * 1555e9 x 0.624 = 970.32 GB/s, 3 us a kernel:
 *   forward  (2 x 1140850688 + 2147483648) / 970.32e9 + 3 x 3 us = 4.5737 ms
 *   backward (4 x 1140850688 + 3221225472) / 970.32e9 + 5 x 3 us = 8.0377 ms
 * 12.611 ms against Table 14's 12.39 (+1.8 %). The dropout (2 S E + S bytes
 * each way at the element-wise rate, 1555e9 x 0.89) adds 3.885 ms: 16.50 ms,
 * Table 11 (whose value unfused_attention_efficiency was read from). At
 * s 1024 (not used for it): 4.25 ms against 4.21, 3.27 against 3.36. */
static void test_unfused_attention_fa_paper(void) {
  static const struct { int seq; gboolean dropout; double ms; } rows[] = {
      {2048, FALSE, 12.39}, {2048, TRUE, 16.50}, {1024, FALSE, 3.36}, {1024, TRUE, 4.21}};
  g_autoptr(GError) err = NULL;
  g_autoptr(PxCluster) c = px_cluster_load("dgx-a100-80g", &err);
  g_assert_no_error(err);
  c->hbm_bw = 1555e9; /* A100 40 GB */
  g_assert_cmpfloat(REL(px_cost_unfused_attn_rate(c), 970.32e9), <, 1e-9);
  for (gsize i = 0; i < G_N_ELEMENTS(rows); i++) {
    PxModelDesc d = {.name = (char *)"fa-bench", .layers = 1, .hidden = 512, .heads = 8, .kv_heads = 8,
                     .ffn = 2048, .vocab = 128, .max_seq = rows[i].seq, .ffn_kind = PX_FFN_GELU,
                     .norm = PX_NORM_LAYERNORM, .pos = PX_POS_LEARNED, .bias = TRUE, .tied = TRUE,
                     .dropout = rows[i].dropout};
    g_autoptr(PxModel) m = px_model_new(&d, &err);
    g_assert_no_error(err);
    const PxLayer *block = &m->layers[1];
    g_assert_cmpint(block->kind, ==, PX_LAYER_BLOCK);
    PxPlan p;
    set_plan(&p, 1, 1, 1, 16, 16);
    p.seq = rows[i].seq;
    p.precision = PX_PREC_FP16;
    p.stack = PX_STACK_MEGATRON_2021;
    g_assert_cmpint(px_cost_attention(&p), ==, PX_ATTN_UNFUSED);
    PxLink l = {400e9, 2e-6, TRUE, NULL};
    PxLayerTimes lt;
    px_cost_layer_times(m, block, c, &p, &l, &lt);
    if (rows[i].seq == 2048 && !rows[i].dropout) {
      g_assert_cmpfloat(REL(lt.attn_fwd, 4.5737e-3), <, 1e-4);
      g_assert_cmpfloat(REL(lt.attn_bwd, 8.0377e-3), <, 1e-4);
    }
    g_assert_cmpfloat(REL(lt.attn_fwd + lt.attn_bwd, rows[i].ms * 1e-3), <, 0.03);
    px_plan_clear(&p);
  }
  /* without the key the core runs at the element-wise rate, as before */
  c->unfused_attn_eff = 0;
  g_assert_cmpfloat(REL(px_cost_unfused_attn_rate(c), 1555e9 * 0.89), <, 1e-12);
}

static void test_calibrated_classes(void) {
  static const char *ini =
      "[cluster]\nname = cal\nnodes = 1\n[gpu]\nmemory = 16GiB\npeak_fp32 = 60e12\npeak_bf16 = 1e15\n"
      "hbm_bw = 3e12\nkernel_overhead = 1e-6\n"
      "membound_bw_norm_fwd = 2e9\nmembound_bw_norm_bwd = 4e9\nmembound_bw_act_fwd = 1e9\n"
      "membound_bw_act_bwd = 3e9\nmembound_bw_residual_fwd = 8e9\nmembound_bw_residual_bwd = 16e9\n"
      "membound_bw_ce_fwd = 1e9\nmembound_bw_ce_bwd = 2e9\nmembound_bw_embedding_fwd = 5e9\n"
      "membound_bw_embedding_bwd = 6e9\nmembound_bw_optimizer = 10e9\n"
      "attention_fwd_flops = 1e10\nattention_bwd_flops = 2e10\n"
      "[node]\ngpus = 1\nbandwidth = 400e9\np2p_latency = 30e-6\n[network]\nbandwidth = 25e9\n";
  g_autoptr(PxCluster) c = cluster_from_ini(ini);
  g_assert_cmpfloat(c->membound_bw[PX_OPC_NORM][0], ==, 2e9);
  g_assert_cmpfloat(c->membound_bw[PX_OPC_ACT][1], ==, 3e9);
  g_assert_cmpfloat(c->membound_bw[PX_OPC_EMBEDDING][1], ==, 6e9);
  g_assert_cmpfloat(c->optimizer_bw, ==, 10e9);
  g_assert_cmpfloat(c->attn_bwd_flops, ==, 2e10);
  g_assert_cmpfloat(c->intra_p2p_lat, ==, 30e-6);
  g_assert_cmpfloat(c->intra_lat, ==, 3e-6); /* the collectives' default, apart */
  g_assert_cmpstr(px_op_class_name(PX_OPC_RESIDUAL), ==, "residual");

  g_autoptr(PxModel) m = tiny_model();
  PxPlan p;
  set_plan(&p, 1, 1, 1, 1, 1);
  p.precision = PX_PREC_FP32;
  p.seq = 32;
  PxLink l = {400e9, 2e-6, TRUE, NULL};
  PxLayerTimes e, b, fn;
  px_cost_layer_times(m, &m->layers[0], c, &p, &l, &e);
  px_cost_layer_times(m, &m->layers[1], c, &p, &l, &b);
  px_cost_layer_times(m, &m->layers[3], c, &p, &l, &fn);
  g_assert_cmpint(m->layers[3].kind, ==, PX_LAYER_FINAL_NORM);
  /* final LayerNorm: read x, write y = 2 * 32 * 64 * 4 = 16384 B at 2 GB/s + 1 us;
   * backward dy, x twice, dx = 40960 B at 4 GB/s in 2 kernels */
  g_assert_cmpfloat(REL(fn.fwd, 16384 / 2e9 + 1e-6), <, 1e-12);
  g_assert_cmpfloat(REL(fn.bwd_input, 40960 / 4e9 + 2e-6), <, 1e-12);
  /* embedding with learned positions: gather + positions 4 * 8192 B at 5 GB/s,
   * 2 kernels; scatter-add 6 * 8192 B at 6 GB/s */
  g_assert_cmpfloat(REL(e.fwd, 32768 / 5e9 + 2e-6), <, 1e-12);
  g_assert_cmpfloat(REL(e.bwd_input, 49152 / 6e9 + 2e-6), <, 1e-12);
  /* the attention core: 4 * 32^2 * 64 = 262144 FLOP at 10 GFLOP/s + 1 us,
   * backward 524288 at 20 GFLOP/s + 1 us */
  g_assert_cmpfloat(REL(b.attn_fwd, 262144 / 1e10 + 1e-6), <, 1e-12);
  g_assert_cmpfloat(REL(b.attn_bwd, 524288 / 2e10 + 1e-6), <, 1e-12);
  /* the block's forward beyond its GEMMs and attention: two LayerNorms
   * (2 x 16384 B at 2 GB/s), two residual adds (2 x 24576 B at 8 GB/s), GELU
   * (2 x 32 x 256 x 4 = 65536 B at 1 GB/s), 5 kernels; backward: norms
   * 2 x 40960 B at 4 GB/s in 4 kernels, residuals 2 x 24576 at 16 GB/s, GELU
   * 98304 B at 3 GB/s. The GEMMs: the same cluster without the keys gives them */
  double mb_f = 32768 / 2e9 + 49152 / 8e9 + 65536 / 1e9 + 5e-6;
  double mb_b = 81920 / 4e9 + 49152 / 16e9 + 98304 / 3e9 + 7e-6;
  g_autoptr(PxCluster) plain = px_cluster_copy(c);
  memset(plain->membound_bw, 0, sizeof plain->membound_bw);
  plain->attn_fwd_flops = plain->attn_bwd_flops = plain->optimizer_bw = 0;
  PxLayerTimes pb;
  px_cost_layer_times(m, &m->layers[1], plain, &p, &l, &pb);
  /* plain: the same memory-bound bytes in one term at 3 TB/s (as before the keys) */
  double plain_mb_f = (32768 + 49152 + 65536) / 3e12 + 5e-6, plain_mb_b = (81920 + 49152 + 98304) / 3e12 + 7e-6;
  g_assert_cmpfloat(REL(b.fwd - b.attn_fwd - mb_f, pb.fwd - pb.attn_fwd - plain_mb_f), <, 1e-9);
  g_assert_cmpfloat(REL(b.bwd_input - b.attn_bwd - mb_b, pb.bwd_input - pb.attn_bwd - plain_mb_b), <, 1e-9);
  /* the optimizer: 108544 parameters x (24 + 4 + 4) B at 10 GB/s */
  p.gbs = p.m = 1;
  PxModel *tm = NULL;
  g_autoptr(PxCostTable) t = tiny_table(&p, c, &tm);
  g_assert_cmpfloat(REL(t->optimizer[0], TINY_PARAMS * 32 / 10e9), <, 1e-12);
  px_model_free(tm);
  px_plan_clear(&p);
}

static void test_ring_allreduce(void) {
  /* 1 GiB over 8 ranks at 100 GB/s, alpha 10 us:
   * ring 2*7*10us + 2*7/8 * 2^30 / 1e11 = 1.4e-4 + 0.01879048192 = 0.01893048192 s
   * tree 2*3*10us + 2 * 2^30 / 1e11     = 6e-5  + 0.02147483648 = 0.02153483648 s */
  PxLink l = {100e9, 10e-6, TRUE, NULL};
  double bytes = 1073741824.0;
  g_assert_cmpfloat(REL(px_cost_allreduce_ring(bytes, 8, &l), 0.01893048192), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_allreduce_tree(bytes, 8, &l), 0.02153483648), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_allreduce(bytes, 8, &l), 0.01893048192), <, 1e-12);
  /* reduce-scatter / all-gather: 7 * 10us + 7/8 * 2^30 / 1e11 = 7e-5 + 0.00939524096 */
  g_assert_cmpfloat(REL(px_cost_reduce_scatter(bytes, 8, &l), 0.00946524096), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_allgather(bytes, 8, &l), 0.00946524096), <, 1e-12);
  /* p2p 10 MB: 10us + 1e7 / 1e11 = 1.1e-4 */
  g_assert_cmpfloat(REL(px_cost_p2p(1e7, &l), 1.1e-4), <, 1e-12);
}

/* A measured bus bandwidth by size ([node] busbw_curve_bytes / busbw_curve,
 * as calibrate writes it): points 4096 B at 1 GB/s and 65536 B at 4 GB/s.
 * 16384 B sits halfway in log size: busbw sqrt(1e9 x 4e9) = 2e9, so an
 * all-reduce over 2 ranks takes 2 x 1/2 x 16384 / 2e9 = 8.192 us (no alpha:
 * the curve holds the latency); 1024 B below the first point takes that
 * point's time, 4096 / 1e9 = 4.096 us; 1 MiB above the last runs at 4 GB/s:
 * 1048576 / 4e9 = 262.144 us. A reduce-scatter of 16384 B over 4 ranks moves
 * 3/4 of it: 6.144 us. The curve comes from the INI through the cluster's
 * intra-node link; p2p keeps alpha-beta. */
static void test_busbw_curve(void) {
  static const char *ini =
      "[cluster]\nname = curve\nnodes = 1\n[gpu]\nmemory = 16GiB\npeak_fp32 = 60e12\npeak_bf16 = 1e15\n"
      "hbm_bw = 3e12\n[node]\ngpus = 4\nbandwidth = 10e9\nlatency = 5e-6\n"
      "busbw_curve_bytes = 4096;65536\nbusbw_curve = 1e9;4e9\n[network]\nbandwidth = 25e9\n";
  g_autoptr(PxCluster) c = cluster_from_ini(ini);
  g_assert_cmpint(c->intra_curve.n, ==, 2);
  int ranks[4] = {0, 1, 2, 3};
  PxLink l = px_cost_group_link(c, ranks, 2);
  g_assert_true(l.curve == &c->intra_curve);
  g_assert_cmpfloat(REL(px_cost_curve_busbw(&l, 16384), 2e9), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_allreduce(16384, 2, &l), 8.192e-6), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_allreduce(1024, 2, &l), 4.096e-6), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_allreduce(1048576, 2, &l), 262.144e-6), <, 1e-12);
  PxLink l4 = px_cost_group_link(c, ranks, 4);
  g_assert_cmpfloat(REL(px_cost_reduce_scatter(16384, 4, &l4), 6.144e-6), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_allgather(16384, 4, &l4), 6.144e-6), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_p2p(1e6, &l), 5e-6 + 1e6 / 10e9), <, 1e-12);
  /* without the curve: alpha-beta, 2 x 5 us + 16384 / 10e9 */
  c->intra_curve.n = 0;
  g_assert_cmpfloat(REL(px_cost_allreduce(16384, 2, &l), 10e-6 + 16384 / 10e9), <, 1e-12);
}

static void test_tree_for_small(void) {
  /* 1 KiB over 64 ranks: ring 126 * 10us + 2*63/64*1024/1e11 = 1.26002016e-3,
   * tree 2*6*10us + 2048/1e11 = 1.2002048e-4: latency-bound, the tree wins. */
  PxLink l = {100e9, 10e-6, FALSE, NULL};
  g_assert_cmpfloat(REL(px_cost_allreduce_ring(1024, 64, &l), 1.26002016e-3), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_allreduce(1024, 64, &l), 1.2002048e-4), <, 1e-12);
  g_assert_cmpfloat(px_cost_allreduce(1024, 1, &l), ==, 0.0);
}

/* Tile and wave quantisation (NVIDIA, "Matrix Multiplication Background User's
 * Guide"): an A100 (108 SMs), 128 x 128 output tiles, best GEMM 85.9 % of peak. */
static void test_gemm_efficiency(void) {
  PxCluster c = make_cluster(8, 1);
  c.sms = 108;
  c.gemm_tile = 128;
  c.gemm_eff = 0.859;
  /* 8192^3: 64 x 64 = 4096 tiles, ceil(4096 / 108) = 38 waves = 4104 slots */
  g_assert_cmpfloat(REL(px_cost_gemm_efficiency(&c, 1, 8192, 8192, 8192), 0.859 * 4096 / 4104), <, 1e-12);
  /* GPT-3's QKV at tp 8 (2048 tokens x 4608): 16 x 36 = 576 tiles, 6 waves of 108 = 648 slots */
  g_assert_cmpfloat(REL(px_cost_gemm_efficiency(&c, 1, 2048, 4608, 12288), 0.859 * 576 / 648), <, 1e-12);
  /* 1024 x 1024: 64 tiles, too few to split (108 / 64 = 1): one wave, 64 of 108 SMs */
  g_assert_cmpfloat(REL(px_cost_gemm_efficiency(&c, 1, 1024, 1024, 8192), 0.859 * 64 / 108), <, 1e-12);
  /* 512 x 512, k 8192: 16 tiles split 6 ways along k (108 / 16 = 6, k / 512 = 16): 96 of 108 */
  g_assert_cmpfloat(REL(px_cost_gemm_efficiency(&c, 1, 512, 512, 8192), 0.859 * 96 / 108), <, 1e-12);
  /* 100 x 128, k 128: one padded tile (100 / 128 of it useful), no split (k < 4 tiles) */
  g_assert_cmpfloat(REL(px_cost_gemm_efficiency(&c, 1, 100, 128, 128), 0.859 * (100.0 / 128) / 108), <, 1e-12);
  /* a batch of 96 (128 x 128) GEMMs fills 96 of 108 SMs */
  g_assert_cmpfloat(REL(px_cost_gemm_efficiency(&c, 96, 128, 128, 64), 0.859 * 96 / 108), <, 1e-12);
  /* no SM count: no quantisation, the ceiling only; no ceiling either: 1 */
  c.sms = 0;
  g_assert_cmpfloat(px_cost_gemm_efficiency(&c, 1, 100, 100, 100), ==, 0.859);
  c.gemm_eff = 0;
  g_assert_cmpfloat(px_cost_gemm_efficiency(&c, 1, 100, 100, 100), ==, 1.0);
  /* a skinny GEMM: 1 x 8192 x 8192 bf16 moves 2 * (8192 + 8192^2 + 8192) bytes,
   * = 134250496 B; at 2 TB/s x 0.9 that is 74.58 us, more than its compute; plus
   * one 4 us kernel overhead */
  c.peak_bf16 = 1e15;
  c.hbm_bw = 2e12;
  c.hbm_eff = 0.9;
  c.kernel_overhead = 4e-6;
  double t = px_cost_gemm_time(&c, PX_PREC_BF16, 1, 1, 8192, 8192, 2);
  g_assert_cmpfloat(REL(t, 134250496.0 / 1.8e12 + 4e-6), <, 1e-12);
}

/* A tile's fixed cost worth K0 = gemm_k_overhead elements of its k loop:
 * efficiency x k / (k + K0) (docs/cost.md section 2), on an H100-like GPU
 * (132 SMs, 128 x 128 tiles, ceiling 0.8, K0 = 150). */
static void test_gemm_k_overhead(void) {
  PxCluster c = make_cluster(8, 1);
  c.sms = 132;
  c.gemm_tile = 128;
  c.gemm_eff = 0.8;
  c.gemm_k_overhead = 150;
  /* 4096^3: 1024 tiles in ceil(1024 / 132) = 8 waves = 1056 slots; k 4096 */
  g_assert_cmpfloat(REL(px_cost_gemm_efficiency(&c, 1, 4096, 4096, 4096), 0.8 * 1024 / 1056 * 4096 / 4246), <, 1e-12);
  /* k = 256: the fixed cost is 150 / 406 of the tile's time */
  g_assert_cmpfloat(REL(px_cost_gemm_efficiency(&c, 4, 4096, 4096, 256), 0.8 * 4096 / 4224 * 256 / 406), <, 1e-12);
  /* one tile, k 8192, split 16 ways (132 / 1, 8192 / 512 = 16): each split
   * runs k = 512 and pays the fixed cost on it: 16 of 132 SMs x 512 / 662 */
  g_assert_cmpfloat(REL(px_cost_gemm_efficiency(&c, 1, 128, 128, 8192), 0.8 * 16 / 132 * 512.0 / 662), <, 1e-12);
  /* without an SM count the fixed cost stays */
  c.sms = 0;
  g_assert_cmpfloat(REL(px_cost_gemm_efficiency(&c, 1, 100, 100, 300), 0.8 * 300 / 450), <, 1e-12);
  /* FP8 GEMMs do not pay it (measured on bf16 kernels): 4096^3 at 2e15 x 0.7
   * x 1024 / 1056 with 1-byte operands through a fast HBM, plus a 3 us overhead */
  c.sms = 132;
  c.peak_fp8 = 2e15;
  c.gemm_eff_fp8 = 0.7;
  c.hbm_bw = 1e30;
  c.kernel_overhead = 3e-6;
  double t = px_cost_gemm_time(&c, PX_PREC_FP8, 1, 4096, 4096, 4096, 1);
  g_assert_cmpfloat(REL(t, 2.0 * 4096 * 4096 * 4096 / (2e15 * 0.7 * 1024 / 1056) + 3e-6), <, 1e-12);
  /* unset: no fixed cost */
  c.gemm_k_overhead = 0;
  g_assert_cmpfloat(REL(px_cost_gemm_efficiency(&c, 1, 4096, 4096, 4096), 0.8 * 1024 / 1056), <, 1e-12);
}

/* The dgx-h100 preset against OpenXLA's measured sm_90 bf16 GEMM table
 * (bench/validate/openxla_sm90_gemm.csv, column flops_a: openxla/xla commit
 * b2766086, matmul_interpolator_data.h) at three shapes of the small
 * llm-foundry models' kind (m, n, k of 2048 / 4096). The model's rate by
 * hand: 0.808 x tiles / slots (128 x 128 tiles, 132 SMs) x k / (k + 150) of
 * 989.4 TFLOP/s, compute above the bytes / (3.35 TB/s x 0.898), plus 3 us.
 *   1 x 2048 x 2048 x 4096:  256 tiles in 264 slots, eff 0.755836, 45.946 us
 *     + 3 us -> 701.99 TFLOP/s; measured 737.97
 *   1 x 4096 x 4096 x 2048: 1024 tiles in 1056 slots, eff 0.730045, 95.139 us
 *     + 3 us -> 700.23; measured 738.74
 *   4 x 4096 x 2048 x 4096: 2048 tiles in 2112 slots, eff 0.755836, 367.570 us
 *     + 3 us -> 741.77; measured 808.70
 * Within 10 % of the table, below it: the table's level is above the
 * preset's MAMF-based ceiling (0.808 x 989.4 = 799 TFLOP/s; docs/cost.md
 * section 2, "OpenXLA's whole sm_90 table"), so a model that came out faster
 * than these entries would be optimistic at d 1536..2560 shapes. */
static void test_gemm_openxla_sm90(void) {
  g_autoptr(GError) err = NULL;
  g_autoptr(PxCluster) c = px_cluster_load("dgx-h100", &err);
  g_assert_no_error(err);
  static const struct {
    double b, m, n, k, model, measured; /* TFLOP/s */
  } e[] = {
    {1, 2048, 2048, 4096, 701.99, 737.97},
    {1, 4096, 4096, 2048, 700.23, 738.74},
    {4, 4096, 2048, 4096, 741.77, 808.70},
  };
  for (guint i = 0; i < G_N_ELEMENTS(e); i++) {
    double t = px_cost_gemm_time(c, PX_PREC_BF16, e[i].b, e[i].m, e[i].n, e[i].k, 2);
    double rate = 2 * e[i].b * e[i].m * e[i].n * e[i].k / t / 1e12;
    g_assert_cmpfloat(REL(rate, e[i].model), <, 1e-4);
    g_assert_cmpfloat(rate, <, e[i].measured);
    g_assert_cmpfloat(rate, >, 0.9 * e[i].measured);
  }
}

/* One GPT block, h = 4096, 32 heads, ffn 16384, GELU, 2048 positions, with or
 * without biases, LayerNorm or RMSNorm. */
static PxModel *block_model_with(gboolean bias, PxNormKind norm) {
  PxModelDesc d = {.name = (char *)"block", .layers = 1, .hidden = 4096, .heads = 32, .kv_heads = 32,
                   .ffn = 16384, .vocab = 32000, .max_seq = 2048, .ffn_kind = PX_FFN_GELU,
                   .norm = norm, .pos = PX_POS_ROPE, .bias = bias, .tied = FALSE};
  g_autoptr(GError) err = NULL;
  PxModel *m = px_model_new(&d, &err);
  g_assert_no_error(err);
  return m;
}

/* ... without biases, LayerNorm. */
static PxModel *gemm_block_model(void) { return block_model_with(FALSE, PX_NORM_LAYERNORM); }

/* One GPT block, h = 4096, s = 2048, 32 heads, ffn 16384, no biases, tp 1,
 * HBM so fast that memory-bound kernels vanish, no quantisation, efficiency 1:
 * the block is its GEMMs at peak (1e15). Weight GEMMs 24 s h^2 = 824633720832
 * FLOPs; the attention core 4 s^2 h = 68719476736, of which causal flash
 * computes half forward and 2.5 x that backward.
 *   flash forward   (824633720832 + 34359738368) / 1e15 = 8.589934592e-4 s
 *   unfused         (824633720832 + 68719476736) / 1e15 = 8.93353197568e-4 s
 *   backward-input  dgrad 8.24633720832e-4 + 2.5 x 3.4359738368e-5 = 9.10533066752e-4 s
 *   backward-weight wgrad 8.24633720832e-4 s */
static void test_block_gemm_bound(void) {
  g_autoptr(PxModel) m = gemm_block_model();
  PxCluster c = make_cluster(8, 1);
  c.hbm_bw = 1e30;
  PxPlan p;
  set_plan(&p, 1, 1, 1, 1, 1);
  p.seq = 2048;
  const PxLayer *block = &m->layers[1];
  g_assert_cmpint(block->kind, ==, PX_LAYER_BLOCK);
  g_assert_cmpint(px_cost_attention(&p), ==, PX_ATTN_UNFUSED); /* parallax: the executor's kernel */
  p.attention = PX_ATTN_FLASH;
  PxLink l = px_cost_tp_link(&c, &p, 0);
  double compute = -1, comm = -1;
  px_cost_layer_forward(m, block, &c, &p, &l, &compute, &comm);
  g_assert_cmpfloat(REL(compute, 8.589934592e-4), <, 1e-9);
  g_assert_cmpfloat(comm, ==, 0.0);
  PxLayerTimes lt;
  px_cost_layer_times(m, block, &c, &p, &l, &lt);
  g_assert_cmpfloat(REL(lt.bwd_input, 9.10533066752e-4), <, 1e-9);
  g_assert_cmpfloat(REL(lt.bwd_weight, 8.24633720832e-4), <, 1e-9);
  p.attention = PX_ATTN_UNFUSED;
  px_cost_layer_forward(m, block, &c, &p, &l, &compute, &comm);
  g_assert_cmpfloat(REL(compute, 8.93353197568e-4), <, 1e-9);
  p.attention = PX_ATTN_FLASH;
  /* megatron-2021 defaults to unfused; fp32 never runs flash */
  p.attention = PX_ATTN_DEFAULT;
  p.stack = PX_STACK_MEGATRON_2021;
  g_assert_cmpint(px_cost_attention(&p), ==, PX_ATTN_UNFUSED);
  p.stack = PX_STACK_FSDP;
  g_assert_cmpint(px_cost_attention(&p), ==, PX_ATTN_FLASH);
  p.precision = PX_PREC_FP32;
  g_assert_cmpint(px_cost_attention(&p), ==, PX_ATTN_UNFUSED);
  p.precision = PX_PREC_BF16;
  p.stack = PX_STACK_PARALLAX;
  /* FlashAttention v1 as llm-foundry calls it: half FlashAttention-2's rate
   * (f / peak more: f = 0.5 * 4 * 2048^2 * 4096 = 3.4359738368e10 FLOPs) and
   * the unpad / pad copies of q, k, v and the output, 9 T h E forward and
   * 11 T h E backward (T h E = 2048 * 4096 * 2 B) at 1 TB/s; everything else
   * is the same kernel for kernel, so the differences are those alone:
   * forward 3.4359738368e-5 + 1.50994944e-4, backward 8.589934592e-5 + 1.84549376e-4 s */
  c.hbm_bw = 1e12;
  p.attention = PX_ATTN_FLASH;
  PxLayerTimes l2, l1;
  px_cost_layer_times(m, block, &c, &p, &l, &l2);
  p.attention = PX_ATTN_FLASH1;
  px_cost_layer_times(m, block, &c, &p, &l, &l1);
  g_assert_cmpfloat(REL(l1.fwd - l2.fwd, 3.4359738368e-5 + 1.50994944e-4), <, 1e-9);
  g_assert_cmpfloat(REL(l1.bwd_input - l2.bwd_input, 8.589934592e-5 + 1.84549376e-4), <, 1e-9);
  c.hbm_bw = 1e30;
  p.attention = PX_ATTN_FLASH;
  /* the fused kernel's rate on a sequence of s tokens: s / (s + s0) of its
   * asymptotic rate (flash_seq_half = s0, docs/cost.md section 2). With
   * s0 = s = 2048 attention runs at half its rate: the forward pays f / peak
   * more (3.4359738368e-5 s), the backward 2.5 f / peak more */
  g_assert_cmpfloat(REL(px_cost_flash_seq_factor(&c, 2048), 1.0), <, 1e-12); /* unset */
  px_cost_layer_times(m, block, &c, &p, &l, &l2);
  c.flash_seq_half = 2048;
  g_assert_cmpfloat(REL(px_cost_flash_seq_factor(&c, 2048), 0.5), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_flash_seq_factor(&c, 6144), 0.75), <, 1e-12);
  px_cost_layer_times(m, block, &c, &p, &l, &l1);
  g_assert_cmpfloat(REL(l1.fwd - l2.fwd, 3.4359738368e-5), <, 1e-9);
  g_assert_cmpfloat(REL(l1.bwd_input - l2.bwd_input, 2.5 * 3.4359738368e-5), <, 1e-9);
  /* Triton at half FlashAttention-2's rate, on top: 4 x the forward's 3.4359738368e-5 s */
  p.attention = PX_ATTN_TRITON;
  px_cost_layer_times(m, block, &c, &p, &l, &l1);
  g_assert_cmpfloat(REL(l1.attn_fwd, 4 * 3.4359738368e-5), <, 1e-9);
  c.flash_seq_half = 0;
  p.attention = PX_ATTN_FLASH;
  /* tp 2 halves every GEMM's FLOPs: 4.294967296e-4 s; plus 2 all-reduces of
   * s h 2 B = 16 MiB over NVLink, each a ring of 2: 2 * 2us + 2 * 1/2 * 16777216 / 4e11
   * = 4.594304e-5 s (the tree would pay 2 * 16 MiB / bw) -> 9.188608e-5 s */
  p.tp = 2;
  l = px_cost_tp_link(&c, &p, 0);
  px_cost_layer_forward(m, block, &c, &p, &l, &compute, &comm);
  g_assert_cmpfloat(REL(compute, 4.294967296e-4), <, 1e-9);
  g_assert_cmpfloat(REL(comm, 9.188608e-5), <, 1e-9);
  /* at 70 % of the nominal NVLink bandwidth: 2 * (2 * 2us + 16777216 / 2.8e11) */
  c.intra_eff = 0.7;
  l = px_cost_tp_link(&c, &p, 0);
  px_cost_layer_forward(m, block, &c, &p, &l, &compute, &comm);
  g_assert_cmpfloat(REL(comm, 2 * (4e-6 + 16777216 / 2.8e11)), <, 1e-9);
  px_plan_clear(&p);
}

/* The memory-bound terms that depend on the software, each by hand on the
 * gemm_block_model block (h = 4096, ffn 16384, s = 2048, micro-batch 1, tp 1,
 * bf16: T h E = 2048 * 4096 * 2 = 16777216 B) at hbm_bw 1 TB/s (efficiency 1)
 * and a 5 us kernel overhead, GEMMs at 1e15 (their time cancels in every
 * difference below).
 *  - Triton FlashAttention vs FlashAttention-2: v1's rate, so f / peak more
 *    forward (f = 0.5 * 4 * 2048^2 * 4096 = 3.4359738368e10 FLOPs) and
 *    2.5 f / peak more backward, plus the backward's preprocess (o, do: 2 T h E),
 *    the fp32 dq copy ((4 + E) T h) and the chunk backward joining dq, dk, dv
 *    (6 T h E): 9 T h E + 4 T h = 1.50994944e8 + 3.3554432e7 B over 3 kernels
 *    = 1.84549376e-4 + 1.5e-5 s; nothing more forward.
 *  - Biases: the same block with biases reduces each output gradient over
 *    the tokens, qkv 3h + proj h + fc 4h + fc2 h = 9h columns: 9 T h E =
 *    1.50994944e-4 s + 4 kernels (2e-5 s), backward only.
 *  - LayerNorm vs RMSNorm (Transformer Engine's fused backward): LayerNorm's
 *    dgamma / dbeta kernel reads dy and x again: 2 norms x 2 T h E =
 *    6.7108864e-5 s + 2 kernels (1e-5 s), backward only. */
static void test_software_terms(void) {
  PxCluster c = make_cluster(8, 1);
  c.hbm_bw = 1e12;
  c.kernel_overhead = 5e-6;
  PxPlan p;
  set_plan(&p, 1, 1, 1, 1, 1);
  p.seq = 2048;
  PxLink l = px_cost_tp_link(&c, &p, 0);
  PxLayerTimes a, b;
  g_autoptr(PxModel) m = block_model_with(FALSE, PX_NORM_LAYERNORM);
  p.attention = PX_ATTN_FLASH;
  px_cost_layer_times(m, &m->layers[1], &c, &p, &l, &a);
  p.attention = PX_ATTN_TRITON;
  px_cost_layer_times(m, &m->layers[1], &c, &p, &l, &b);
  g_assert_cmpfloat(REL(b.fwd - a.fwd, 3.4359738368e-5), <, 1e-9);
  g_assert_cmpfloat(REL(b.bwd_input - a.bwd_input, 8.589934592e-5 + 1.84549376e-4 + 1.5e-5), <, 1e-9);
  g_assert_cmpfloat(b.bwd_weight, ==, a.bwd_weight);
  g_assert_cmpstr(px_attention_name(PX_ATTN_TRITON), ==, "triton");
  PxAttention parsed = PX_ATTN_DEFAULT;
  g_assert_true(px_attention_parse("triton", &parsed));
  g_assert_cmpint(parsed, ==, PX_ATTN_TRITON);

  p.attention = PX_ATTN_FLASH;
  g_autoptr(PxModel) mb = block_model_with(TRUE, PX_NORM_LAYERNORM);
  px_cost_layer_times(mb, &mb->layers[1], &c, &p, &l, &b);
  g_assert_cmpfloat(b.fwd, ==, a.fwd);
  g_assert_cmpfloat(REL(b.bwd_input - a.bwd_input, 1.50994944e-4 + 2e-5), <, 1e-9);

  /* The LM head's cross entropy (V = 32000, T V = 65536000 logits): the
   * default fp32 one reads + writes 4 B forward (3 kernels) and backward (2);
   * the fsdp stack (llm-foundry's MPT under Composer) runs flash-attn's fused
   * one, 2 E forward and 2 E backward (1 kernel each), plus Composer's two
   * training metrics after the backward, each (E + 20) B per logit over 3
   * kernels. Forward: (8 - 4) T V = 2.62144e-4 s and 2 kernels less;
   * backward: 4 T V + 44 T V - 8 T V = 40 T V = 2.62144e-3 s and 5 kernels more. */
  const PxLayer *head = &m->layers[m->n_layers - 1];
  g_assert_cmpint(head->kind, ==, PX_LAYER_LM_HEAD);
  PxLayerTimes ha, hb;
  p.stack = PX_STACK_PARALLAX;
  px_cost_layer_times(m, head, &c, &p, &l, &ha);
  p.stack = PX_STACK_FSDP;
  px_cost_layer_times(m, head, &c, &p, &l, &hb);
  g_assert_cmpfloat(REL(ha.fwd - hb.fwd, 2.62144e-4 + 1e-5), <, 1e-9);
  g_assert_cmpfloat(REL(hb.bwd_input - ha.bwd_input, 2.62144e-3 + 2.5e-5), <, 1e-9);
  p.stack = PX_STACK_PARALLAX;

  g_autoptr(PxModel) mr = block_model_with(FALSE, PX_NORM_RMSNORM);
  px_cost_layer_times(mr, &mr->layers[1], &c, &p, &l, &b);
  g_assert_cmpfloat(b.fwd, ==, a.fwd);
  g_assert_cmpfloat(REL(a.bwd_input - b.bwd_input, 6.7108864e-5 + 1e-5), <, 1e-9);
  px_plan_clear(&p);
}

/* Sequence parallelism's TP collectives per block (Korthikanti et al. 2022,
 * section 4.2.2: g all-gathers before, g-bar reduce-scatters after each of
 * the two TP regions) and the second all-gather of each column-parallel
 * input in the backward, for the weight-gradient GEMM (Megatron-LM
 * mpu/layers.py LinearWithGradAccumulationAndAsyncCommunication.backward,
 * Transformer Engine layernorm_linear.py, exec/gpt.c full_rows). tiny's
 * block on tp 4 inside a node (400 GB/s, 2 us), micro-batch 1, s 32, bf16:
 * the s b h activation is 32 * 64 * 2 = 4096 B, an all-gather or a
 * reduce-scatter 3 * 2e-6 + 3/4 * 4096 / 4e11 = 6.00768e-6 s. Forward 2 AG
 * + 2 RS = 2.403072e-5 s; backward 2 RS + 2 AG + 2 AG again = 3.604608e-5 s.
 * Without sequence parallelism: two all-reduces each way (the ring,
 * 6 * 2e-6 + 1.5 * 4096 / 4e11, against the tree 4 * 2e-6 + 2 * 4096 / 4e11:
 * the tree, 8.02048e-6 s), none again in the backward. */
static void test_sp_regather(void) {
  g_autoptr(PxModel) m = tiny_model();
  PxCluster c = make_cluster(8, 1);
  PxPlan p;
  set_plan(&p, 1, 4, 1, 1, 1);
  p.seq = 32;
  p.precision = PX_PREC_BF16;
  p.seq_parallel = TRUE;
  const PxLayer *block = &m->layers[1];
  g_assert_cmpint(block->kind, ==, PX_LAYER_BLOCK);
  PxLink l = px_cost_tp_link(&c, &p, 0);
  PxLayerTimes lt;
  px_cost_layer_times(m, block, &c, &p, &l, &lt);
  g_assert_cmpfloat(REL(lt.tp_fwd, 2.403072e-5), <, 1e-9);
  g_assert_cmpfloat(REL(lt.tp_bwd, 3.604608e-5), <, 1e-9);
  p.seq_parallel = FALSE;
  px_cost_layer_times(m, block, &c, &p, &l, &lt);
  g_assert_cmpfloat(REL(lt.tp_fwd, 2 * 8.02048e-6), <, 1e-9);
  g_assert_cmpfloat(REL(lt.tp_bwd, 2 * 8.02048e-6), <, 1e-9);
  px_plan_clear(&p);
}

static void test_tp_links(void) {
  PxCluster c = make_cluster(8, 4);
  PxPlan p;
  /* order tp,dp,pp: TP group of 8 = ranks 0..7, one node: NVLink */
  set_plan(&p, 4, 8, 1, 1, 4);
  PxLink l = px_cost_tp_link(&c, &p, 0);
  g_assert_true(l.intra);
  g_assert_cmpfloat(l.bw, ==, 400e9);
  /* ... and its DP group (ranks 0, 8, 16, 24) crosses nodes */
  l = px_cost_dp_link(&c, &p, 0);
  g_assert_false(l.intra);
  g_assert_cmpfloat(l.bw, ==, 25e9);
  g_assert_cmpfloat(l.lat, ==, 10e-6);
  /* tp 16 spans two nodes: the network */
  p.tp = 16;
  p.dp = 2;
  l = px_cost_tp_link(&c, &p, 0);
  g_assert_false(l.intra);
  /* 8 members per node: hierarchical rings over the node's 8 NICs, 8 x 25 GB/s
   * (under NVLink's 400) */
  g_assert_cmpfloat(l.bw, ==, 200e9);
  /* its DP group (ranks 0 and 16: one per node) has one NIC: 25 GB/s, and at
   * a 90 % bus-bandwidth efficiency 22.5 GB/s */
  c.inter_eff = 0.9;
  l = px_cost_dp_link(&c, &p, 0);
  g_assert_false(l.intra);
  g_assert_cmpfloat(fabs(l.bw - 22.5e9), <, 1.0);
  c.inter_eff = 0;
  /* order dp,tp,pp with tp 8, dp 4: TP ranks 0, 4, ..., 28 cross nodes */
  p.tp = 8;
  p.dp = 4;
  g_assert_true(px_order_parse("dp,tp,pp", p.order));
  l = px_cost_tp_link(&c, &p, 0);
  g_assert_false(l.intra);
  /* tp 8, pp 4 in default order: stage s on node s, p2p between stages crosses nodes */
  px_plan_clear(&p);
  set_plan(&p, 1, 8, 4, 1, 4);
  g_assert_false(px_cost_p2p_link(&c, &p, 0, 1).intra);
  g_assert_true(px_cost_tp_link(&c, &p, 3).intra);
  /* tp 2, pp 4: stages 0..3 on ranks 0..7 of node 0, p2p on NVLink */
  p.tp = 2;
  g_assert_true(px_cost_p2p_link(&c, &p, 2, 3).intra);
  px_plan_clear(&p);
}

static PxCostTable *tiny_table(PxPlan *p, const PxCluster *c, PxModel **model_out) {
  g_autoptr(GError) err = NULL;
  PxModel *m = tiny_model();
  gboolean ok = px_plan_validate(p, m, c, &err);
  g_assert_no_error(err);
  g_assert_true(ok);
  g_autoptr(PxPartition) part = px_partition_new(m, p, NULL, &err);
  g_assert_no_error(err);
  PxCostTable *t = px_cost_table_new(m, c, p, part, &err);
  g_assert_no_error(err);
  *model_out = m;
  return t;
}

/* MoE ZeRO-1/2 in buckets under this executor's stack: the dense regions of
 * the padded buckets reduce-scattered over dp, the experts' over edp
 * (buckets.h px_buckets_shard_layout; the padded counts by hand in
 * test_buckets.c /buckets/moe-shards). tiny-moe, buckets of 2000 fp32
 * elements: dp 3 · ep 1 pads the dense 33312 elements to 33321 and the
 * experts' 24576 need none over edp 3: a ring sends 2/3 · 4 B · (33321 +
 * 24576) = 154392 B per rank (unbucketed: 2/3 · 4 · (33312 + 24576) =
 * 154368 B); dp 4 · ep 2: 3/4 · 4 · 33312 + 1/2 · 4 · 12288 = 124512 B. */
static void test_moe_bucket_shards(void) {
  g_autoptr(GError) err = NULL;
  g_autoptr(PxModel) m = px_model_load("tiny-moe", &err);
  g_assert_no_error(err);
  struct { int dp, ep; double bucket_bytes, sent; } cases[] = {
    {3, 1, 8000, 154392}, {3, 1, 0, 154368}, {4, 2, 8000, 124512}};
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    PxCluster c = make_cluster(cases[i].dp, 1);
    PxPlan p;
    set_plan(&p, cases[i].dp, 1, 1, 1, 2 * cases[i].dp);
    p.ep = cases[i].ep;
    p.seq = 16;
    p.zero = 1;
    p.precision = PX_PREC_FP32;
    p.bucket_bytes = cases[i].bucket_bytes;
    g_assert_true(px_plan_validate(&p, m, &c, &err));
    g_assert_no_error(err);
    g_autoptr(PxPartition) part = px_partition_new(m, &p, NULL, &err);
    g_assert_no_error(err);
    g_autoptr(PxCostTable) t = px_cost_table_new(m, &c, &p, part, &err);
    g_assert_no_error(err);
    g_test_message("tiny-moe dp %d ep %d bucket %.0f B: %.0f B sent per rank", cases[i].dp, cases[i].ep,
                   cases[i].bucket_bytes, t->dp_bytes[0]);
    g_assert_cmpfloat(REL(t->dp_bytes[0], cases[i].sent), <, 1e-12);
    px_plan_clear(&p);
  }
}

static void test_dp_reduction(void) {
  PxCluster c = make_cluster(4, 1);
  PxPlan p;
  /* dp 4, one stage: every GPU holds all TINY_PARAMS = 108544 parameters (the
   * tied head shares the embedding's copy on the same rank), 2-byte gradients. */
  set_plan(&p, 4, 1, 1, 1, 4);
  PxModel *m = NULL;
  g_autoptr(PxCostTable) t0 = tiny_table(&p, &c, &m);
  /* ZeRO 0: all-reduce, ring sends 2 * 3/4 * 217088 = 325632 B */
  g_assert_cmpfloat(REL(t0->dp_bytes[0], 325632.0), <, 1e-12);
  px_model_free(m);
  /* ZeRO 2: reduce-scatter sends 3/4 * 217088 = 162816 B in 3 * 2us + 162816 / 4e11 s */
  p.zero = 2;
  g_autoptr(PxCostTable) t2 = tiny_table(&p, &c, &m);
  g_assert_cmpfloat(REL(t2->dp_bytes[0], 162816.0), <, 1e-12);
  g_assert_cmpfloat(REL(t2->dp_reduce[0], 6e-6 + 162816.0 / 4e11), <, 1e-12);
  /* Adam on the shard 108544 / 4 = 27136 params, 24 + 2 + 2 B each over 3 TB/s,
   * then the all-gather of 217088 B: 3 * 2us + 162816 / 4e11 */
  double opt = 27136.0 * 28 / 3e12 + 6e-6 + 162816.0 / 4e11;
  g_assert_cmpfloat(REL(t2->optimizer[0], opt), <, 1e-12);
  g_assert_cmpfloat(t2->gather[0], ==, 0.0);
  px_model_free(m);
  /* ZeRO 3: no all-gather after the step; the chunk's 16-bit parameters are
   * gathered instead before every forward and every backward pass (one part
   * holding everything: embedding, 2 blocks, final norm, head = 5 layers; the program's GATHER_PARAMS is the first
   * layer's share), and what exceeds the pass's compute is exposed in it */
  p.zero = 3;
  g_autoptr(PxCostTable) t3 = tiny_table(&p, &c, &m);
  double g = 6e-6 + 162816.0 / 4e11;
  g_assert_cmpfloat(REL(t3->optimizer[0], 27136.0 * 28 / 3e12), <, 1e-12);
  g_assert_cmpfloat(REL(t3->gather_pass[0], g), <, 1e-12);
  g_assert_cmpfloat(REL(t3->gather[0], g / 5), <, 1e-12);
  g_assert_cmpfloat(REL(t3->fwd[0], t2->fwd[0] + MAX(0.0, g - t2->fwd[0])), <, 1e-12);
  double b2 = t2->bwd_input[0] + t2->bwd_weight[0];
  g_assert_cmpfloat(REL(t3->bwd_input[0] + t3->bwd_weight[0], b2 + MAX(0.0, g - b2)), <, 1e-12);
  px_model_free(m);
  /* ZeRO 1 under this executor's stack (parallax: exec/runtime.c dp_reduce
   * reduce-scatters into the shard from ZeRO-1 on): 162816 B as ZeRO 2; under
   * DeepSpeed's ZeRO-1 an all-reduce, 325632 B. With buckets (dp reduction in
   * the backward, buckets of 60000 B = 30000 elements, filled from the last
   * layer: head 0 + final norm 128 + block 49984 = 50112; block 49984;
   * embedding 8448) this executor pads each bucket to dp slices and
   * reduce-scatters it (buckets.h px_buckets_shard_layout, Megatron-Core's
   * distributed optimizer): a ring reduce-scatter sends (dp-1)/dp of the
   * padded bucket per rank. dp 4 divides every bucket (slices 12528, 12496,
   * 2112): 3/4 * 2 * 108544 = 162816 B, as unbucketed. */
  p.zero = 1;
  g_autoptr(PxCostTable) t1 = tiny_table(&p, &c, &m);
  g_assert_cmpfloat(REL(t1->dp_bytes[0], 162816.0), <, 1e-12);
  px_model_free(m);
  p.stack = PX_STACK_DEEPSPEED;
  g_autoptr(PxCostTable) t1d = tiny_table(&p, &c, &m);
  g_assert_cmpfloat(REL(t1d->dp_bytes[0], 325632.0), <, 1e-12);
  px_model_free(m);
  p.stack = PX_STACK_PARALLAX;
  p.bucket_bytes = 60000;
  g_autoptr(PxCostTable) t1b = tiny_table(&p, &c, &m);
  g_assert_cmpfloat(REL(t1b->dp_bytes[0], 162816.0), <, 1e-12);
  px_model_free(m);
  {
    /* dp 3 pads: slices ceil(50112/3) = 16704, ceil(49984/3) = 16662 (2
     * elements of padding), ceil(8448/3) = 2816: 3 * 36182 = 108546 elements,
     * 217092 B. ZeRO-1 and ZeRO-2: the reduce-scatter sends 2/3 * 217092 =
     * 144728 B in 2 * 2us + 144728 / 4e11 s; the optimizer step is Adam on
     * 108544 / 3 params (24 + 2 + 2 B each over 3 TB/s) then the all-gather
     * of the padded buckets, again 2 * 2us + 144728 / 4e11 s. DeepSpeed's
     * stack keeps its own figures (ZeRO-1 all-reduces, unpadded: 2 * 2/3 *
     * 217088 B). */
    PxCluster c3 = make_cluster(3, 1);
    PxPlan p3;
    set_plan(&p3, 3, 1, 1, 1, 3);
    p3.bucket_bytes = 60000;
    for (int z = 1; z <= 2; z++) {
      p3.zero = z;
      g_autoptr(PxCostTable) t = tiny_table(&p3, &c3, &m);
      g_assert_cmpfloat(REL(t->dp_bytes[0], 144728.0), <, 1e-12);
      g_assert_cmpfloat(REL(t->dp_reduce[0], 4e-6 + 144728.0 / 4e11), <, 1e-12);
      g_assert_cmpfloat(REL(t->optimizer[0], 108544.0 / 3 * 28 / 3e12 + 4e-6 + 144728.0 / 4e11), <, 1e-12);
      px_model_free(m);
    }
    p3.zero = 1;
    p3.stack = PX_STACK_DEEPSPEED;
    g_autoptr(PxCostTable) td = tiny_table(&p3, &c3, &m);
    g_assert_cmpfloat(REL(td->dp_bytes[0], 2 * 2.0 / 3 * 217088.0), <, 1e-12);
    px_model_free(m);
    px_plan_clear(&p3);
  }
  p.bucket_bytes = 0;
  /* The gathers hold collective_sms of the SMs while they run (NCCL issue
   * #689): with 25 of 100 SMs the pass computes on 75 % of the GPU for the
   * gather's g seconds, so a pass of C takes max(g, C + g / 4): it is exposed
   * by max(g - C, g / 4) (C from the ZeRO-2 table on the same GPU, its
   * compute and HBM 100 x slower than above so that C outlasts g) */
  c.sms = 100;
  c.coll_sms = 25;
  c.peak_bf16 = c.peak_fp16 = c.peak_fp32 = 1e13;
  c.hbm_bw = 3e10;
  g_assert_cmpfloat(REL(px_cost_collective_sm_share(&c), 0.25), <, 1e-12);
  p.zero = 2;
  g_autoptr(PxCostTable) t2s = tiny_table(&p, &c, &m);
  px_model_free(m);
  p.zero = 3;
  g_autoptr(PxCostTable) t3s = tiny_table(&p, &c, &m);
  g_assert_cmpfloat(t2s->fwd[0], >, 0.75 * g); /* the compute outlasts the gather: the share is what shows */
  g_assert_cmpfloat(REL(t3s->fwd[0], t2s->fwd[0] + MAX(g - t2s->fwd[0], g / 4)), <, 1e-12);
  double b2s = t2s->bwd_input[0] + t2s->bwd_weight[0];
  g_assert_cmpfloat(REL(t3s->bwd_input[0] + t3s->bwd_weight[0], b2s + MAX(g - b2s, g / 4)), <, 1e-12);
  px_model_free(m);
  /* Inside one node NCCL builds more rings (24 channels on 8 x A100 or
   * 8 x H100 against 16 across nodes; the presets name the logs): with
   * collective_sms_intra = 40 a group on one node holds 40 of the 100 SMs,
   * one across nodes still 25, and without it the node's group falls back
   * to collective_sms. This DP group of 4 is on one node (4 GPUs per node):
   * the pass is exposed by max(g - C, 0.4 g), and the search's share is 0.4 */
  PxLink in_node = {4e11, 2e-6, TRUE, NULL}, across = {25e9, 10e-6, FALSE, NULL};
  c.coll_sms_intra = 40;
  g_assert_cmpfloat(REL(px_cost_collective_sm_share_link(&c, &in_node), 0.40), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_collective_sm_share_link(&c, &across), 0.25), <, 1e-12);
  g_autoptr(PxCostTable) t3i = tiny_table(&p, &c, &m);
  g_assert_cmpfloat(REL(t3i->fwd[0], t2s->fwd[0] + MAX(g - t2s->fwd[0], 0.4 * g)), <, 1e-12);
  g_assert_cmpfloat(REL(t3i->bwd_input[0] + t3i->bwd_weight[0], b2s + MAX(g - b2s, 0.4 * g)), <, 1e-12);
  g_assert_cmpfloat(REL(t3i->coll_sm_share, 0.40), <, 1e-12);
  px_model_free(m);
  c.coll_sms_intra = 0;
  g_assert_cmpfloat(REL(px_cost_collective_sm_share_link(&c, &in_node), 0.25), <, 1e-12);
  c.sms = c.coll_sms = 0;
  g_assert_cmpfloat(px_cost_collective_sm_share(&c), ==, 0.0);
  /* the rule itself: 4 s of NCCL beside 10 s of compute at a quarter of the
   * SMs cost 1 s; beside 2 s of compute the transfer's own excess, 2 s; of 4 s
   * of transfers only the 1 s on NCCL (3 s over PCIe) holds SMs: 0.25 s */
  g_assert_cmpfloat(REL(px_cost_pass_exposed(10, 4, 4, 0.25), 1.0), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_pass_exposed(2, 4, 4, 0.25), 2.0), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_pass_exposed(10, 4, 1, 0.25), 0.25), <, 1e-12);
  /* persistent GEMMs (cluster gemm_persistent; PyTorch issue #143988): one
   * CTA per SM, so beside a collective holding 16 or 24 of 132 SMs their 132
   * CTAs fit in ceil(132 / 116) = ceil(132 / 108) = 2 waves; a share of 0.6
   * leaves 52.8 SMs: ceil(2.5) = 3; none without the key or the share */
  c = make_cluster(4, 1);
  c.sms = 132;
  g_assert_cmpfloat(px_cost_persistent_waves(&c, 16.0 / 132), ==, 1.0);
  c.gemm_persistent = TRUE;
  g_assert_cmpfloat(px_cost_persistent_waves(&c, 16.0 / 132), ==, 2.0);
  g_assert_cmpfloat(px_cost_persistent_waves(&c, 24.0 / 132), ==, 2.0);
  g_assert_cmpfloat(px_cost_persistent_waves(&c, 0.6), ==, 3.0);
  g_assert_cmpfloat(px_cost_persistent_waves(&c, 0), ==, 1.0);
  /* a pass 60 % GEMMs in 2 waves, 40 % on 3/4 of the SMs: 1 s of it takes
   * 0.6 x 2 + 0.4 / 0.75 = 26/15 s meanwhile, the share 1 - 15/26 = 11/26;
   * no GEMMs: the SM share 0.25; one wave: the SM share */
  g_assert_cmpfloat(REL(px_cost_overlap_share(0.25, 0.6, 2), 11.0 / 26), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_overlap_share(0.25, 0, 2), 0.25), <, 1e-12);
  g_assert_cmpfloat(px_cost_overlap_share(0.25, 0.6, 1), ==, 0.25);
  /* one GEMM launched after a collective: 4 s beside a 10 s GEMM, its second
   * wave waits the 4 s; beside a 2 s GEMM the second wave runs 2 s after the
   * first, within the collective's 4 s: 2 s; 5 s beside 3 s: the transfer's
   * excess, 2 s < 3 s of the second wave: 3 s; one wave: the share, 1 s */
  g_assert_cmpfloat(REL(px_cost_gemm_beside_exposed(10, 4, 0.25, 2), 4.0), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_gemm_beside_exposed(2, 4, 0.25, 2), 2.0), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_gemm_beside_exposed(3, 5, 0.25, 2), 3.0), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_gemm_beside_exposed(10, 4, 0.25, 1), 1.0), <, 1e-12);
  /* the fold: a forward of 10 s (6 s GEMMs) beside 4 s of gathers, share
   * 11/26: 44/26 s more; a backward of 12 + 8 s (14 s GEMMs, 0.7) beside
   * 4 + 2 s: 0.7 x 2 + 0.3 / 0.75 = 1.8, the share 4/9: 24/9 s, half each */
  {
    double f = 10, bi = 12, bw = 8;
    px_cost_zero3_fold(&f, &bi, &bw, 4, 0, 2, 0, 0.25, 2, 6, 14);
    g_assert_cmpfloat(REL(f, 10 + 44.0 / 26), <, 1e-12);
    g_assert_cmpfloat(REL(bi, 12 + 12.0 / 9), <, 1e-12);
    g_assert_cmpfloat(REL(bw, 8 + 12.0 / 9), <, 1e-12);
  }
  c = make_cluster(4, 1);
  /* Offload: 27136 params, gradient down + parameter up (4 B) over 25 GB/s PCIe,
   * CPU Adam at 4e9 params/s per node shared by 4 GPUs, then the ZeRO-2 all-gather */
  p.zero = 2;
  p.offload = PX_OFFLOAD_OPTIMIZER;
  g_autoptr(PxCostTable) to = tiny_table(&p, &c, &m);
  opt = 27136.0 * 4 / 25e9 + 27136.0 / 1e9 + 6e-6 + 162816.0 / 4e11;
  g_assert_cmpfloat(REL(to->optimizer[0], opt), <, 1e-12);
  px_model_free(m);
  /* a measured host AdamW ([node] cpu_adam_rate, per GPU) replaces 4e9 / 4 */
  c.cpu_adam_rate = 5e8;
  g_autoptr(PxCostTable) tr = tiny_table(&p, &c, &m);
  g_assert_cmpfloat(REL(tr->optimizer[0], opt - 27136.0 / 1e9 + 27136.0 / 5e8), <, 1e-12);
  px_model_free(m);
  px_plan_clear(&p);
}

/* What the stacks change, on the tiny model (108544 parameters, one stage, dp 4). */
static void test_stacks(void) {
  PxCluster c = make_cluster(4, 1);
  PxPlan p;
  set_plan(&p, 4, 1, 1, 1, 4);
  PxModel *m = NULL;
  /* Megatron-LM 2021 reduces bf16 gradients in fp32 main_grad: the ring sends
   * 2 * 3/4 * 108544 * 4 = 651264 B, after the backward; fp16 in 2 bytes */
  p.stack = PX_STACK_MEGATRON_2021;
  g_autoptr(PxCostTable) t = tiny_table(&p, &c, &m);
  g_assert_cmpint(t->grad_reduce_bytes, ==, 4);
  g_assert_cmpfloat(REL(t->dp_bytes[0], 651264.0), <, 1e-12);
  g_assert_false(t->overlap_dp);
  g_assert_cmpint(t->attention, ==, PX_ATTN_UNFUSED);
  /* its main_grad.add_ hook: every micro-batch reads the 2-byte gradient and
   * reads + writes the 4-byte main_grad, 10 B per parameter at 3 TB/s, on top
   * of what Megatron-Core (fused into the wgrad GEMM) spends; Megatron-Core
   * still accumulates the embedding table's dense gradient by hand
   * (F.embedding's backward zero-fills the whole table, 2 B, and the DDP
   * hook's main_grad.add_ reads 2 + 4 and writes 4): the tied table and
   * its positions, 8448 elements x 12 B, less */
  px_model_free(m);
  p.stack = PX_STACK_MEGATRON_CORE;
  p.attention = PX_ATTN_UNFUSED; /* as the 2021 stack, so that only the accumulation differs */
  g_autoptr(PxCostTable) tc = tiny_table(&p, &c, &m);
  p.attention = PX_ATTN_DEFAULT;
  g_assert_cmpfloat(REL(t->bwd_weight[0] - tc->bwd_weight[0], (108544.0 * 10 - 8448.0 * 12) / 3e12), <, 1e-9);
  /* and its cross entropy on an fp32 copy of the logits (mpu/cross_entropy.py,
   * gpt_model.py's output.float()): 32 x 100 logits, forward cast 2 + 4, max
   * 4, sub_ 8, exp 8, sum 4, div_ 8 = 38 B, backward mul_ 8 + the cast's
   * backward 6 = 14 B, where Megatron-Core's fused one (three compiled
   * functions: cast 6, sub + exp in place 8, div_ 8 = 22 B; backward mul_ in
   * place 8 + the bf16 gradient 2 = 10 B) is charged less: 3200 * 16 and
   * 3200 * 4 B more at 3 TB/s; and its five LayerNorms' backward (apex's
   * two passes over dy and x where Transformer Engine's kernel makes one:
   * 2 x 32 x 64 x 2 = 8192 B each, the kernels the same) */
  g_assert_cmpfloat(REL(t->fwd[0] - tc->fwd[0], 3200.0 * 16 / 3e12), <, 1e-9);
  g_assert_cmpfloat(REL(t->bwd_input[0] - tc->bwd_input[0], (3200.0 * 4 + 5 * 8192.0) / 3e12), <, 1e-9);
  px_model_free(m);
  p.stack = PX_STACK_MEGATRON_2021;
  p.precision = PX_PREC_FP16;
  g_autoptr(PxCostTable) t16 = tiny_table(&p, &c, &m);
  g_assert_cmpint(t16->grad_reduce_bytes, ==, 2);
  px_model_free(m);
  p.precision = PX_PREC_BF16;
  /* an explicit grad_reduce_bytes wins */
  p.grad_reduce_bytes = 2;
  g_autoptr(PxCostTable) t2 = tiny_table(&p, &c, &m);
  g_assert_cmpfloat(REL(t2->dp_bytes[0], 325632.0), <, 1e-12);
  px_model_free(m);
  p.grad_reduce_bytes = 0;
  /* DeepSpeed ZeRO-2: no overlap unless a bucket size is given (where the
   * buckets run is the program's, from the partition's layout: test_buckets) */
  p.stack = PX_STACK_DEEPSPEED;
  p.zero = 2;
  g_autoptr(PxCostTable) td = tiny_table(&p, &c, &m);
  g_assert_false(td->overlap_dp);
  /* its pipeline engine's p2p is synchronous (runtime/pipe/p2p.py), as
   * Megatron-LM 2021's; Megatron-Core's is not */
  g_assert_true(td->p2p_blocking);
  g_assert_true(t->p2p_blocking);
  g_assert_false(tc->p2p_blocking);
  px_model_free(m);
  p.bucket_bytes = 5e4;
  g_autoptr(PxCostTable) tb = tiny_table(&p, &c, &m);
  g_assert_true(tb->overlap_dp);
  px_model_free(m);
  p.bucket_bytes = 0;
  /* DeepSpeed's BF16_Optimizer (fp32 gradients of bf16 parameters,
   * grad_reduce_bytes 4) adds each micro-batch's gradient with
   * hp_grad.add_(lp.grad.to(float32)) (runtime/bf16_optimizer.py
   * update_hp_grads): read the 2-byte gradient, write the 4-byte temporary,
   * read it and the 4-byte accumulator, write that: 2 + 4 + 4 + 4 + 4 = 18 B
   * per parameter; 16-bit gradients (grad_reduce_bytes 2, PyTorch's
   * AccumulateGrad): 2 + 2 + 2 = 6 B. 108544 * 12 B more at 3 TB/s. */
  p.zero = 1;
  p.grad_reduce_bytes = 4;
  g_autoptr(PxCostTable) tbf = tiny_table(&p, &c, &m);
  px_model_free(m);
  p.grad_reduce_bytes = 2;
  g_autoptr(PxCostTable) tbh = tiny_table(&p, &c, &m);
  px_model_free(m);
  p.grad_reduce_bytes = 0;
  g_assert_cmpfloat(REL(tbf->bwd_weight[0] - tbh->bwd_weight[0], 108544.0 * 12 / 3e12), <, 1e-9);
  /* FSDP (ZeRO-3): every backward reduce-scatters its fp32 gradients beside
   * the gathers, 3 * 2us + 3/4 * 434176 / 4e11, and one reduce-scatter per
   * wrapped module (2 blocks and the root: 2 x 3 x 2us more, /cost/table/
   * fsdp-units-latency); after the last backward only the last of the 5
   * layers' share of the one collective is left; Composer's AdamW moves 92 B per
   * parameter of the 27136-parameter shard at 3 TB/s, after FSDP's
   * clip_grad_norm_ read the fp32 shard for its norm (4 B) and scaled it in
   * place (4 + 4 B): 104 B */
  p.stack = PX_STACK_FSDP;
  p.zero = 3;
  g_autoptr(PxCostTable) tf = tiny_table(&p, &c, &m);
  double rs = 6e-6 + 0.75 * 434176.0 / 4e11;
  g_assert_cmpfloat(REL(tf->reduce_pass[0], rs + 12e-6), <, 1e-12);
  g_assert_cmpfloat(REL(tf->dp_reduce[0], rs / 5), <, 1e-12);
  g_assert_cmpfloat(REL(tf->optimizer[0], 27136.0 * (92 + 4 + 4 + 4) / 3e12), <, 1e-12);
  g_assert_cmpint(tf->attention, ==, PX_ATTN_FLASH);
  px_model_free(m);
  /* FSDP's post-backward passes over the unsharded flat gradient of the
   * part's 108544 parameters every micro-batch (torch FSDP _runtime_utils.py):
   * DEFAULT (bf16 compute, fp32 reduce): view grads into the flat grad 2 + 2 B,
   * cast 2 + 4 B, pre-divide 4 + 4 B = 18 B, and the shard's accumulation
   * (2 + 2·4) / 4 B; PURE (bf16 reduce): 2 + 2 + 2 + 2 = 8 B and (2 + 2·2) / 4 B.
   * The difference, 108544 (18 + 2.5 − 8 − 1.5) B at 3 TB/s, is the bf16
   * backward-weight's saving (ZeRO-2 here: no gathers folded into the passes) */
  p.zero = 2;
  g_autoptr(PxCostTable) tdef = tiny_table(&p, &c, &m);
  px_model_free(m);
  p.grad_reduce_bytes = 2;
  g_autoptr(PxCostTable) tpure = tiny_table(&p, &c, &m);
  g_assert_cmpfloat(REL(tdef->bwd_weight[0] - tpure->bwd_weight[0], 108544.0 * 11 / 3e12), <, 1e-9);
  p.grad_reduce_bytes = 0;
  px_model_free(m);
  px_plan_clear(&p);
}

/* Megatron-LM's mixed-precision optimizer step (optimizer.py
 * Float16OptimizerWithFloat16Params.step, clip_grads.py), tiny on dp 4 without
 * ZeRO: all 108544 parameters on the rank, at 3 TB/s. fp16: the fp16
 * main_grad copied to fp32 (2 + 4), unscaled with the inf check (4 + 4), its
 * l2 norm (4), FusedAdam (16 read + 12 written), the fp32 master copied to
 * the fp16 parameter (4 + 2): 52 B; bf16 (main_grad already fp32, no loss
 * scaler): 4 + 28 + 6 = 38 B. */
static void test_megatron_optimizer(void) {
  PxCluster c = make_cluster(4, 1);
  PxPlan p;
  set_plan(&p, 4, 1, 1, 1, 4);
  p.stack = PX_STACK_MEGATRON_2021;
  p.precision = PX_PREC_FP16;
  PxModel *m = NULL;
  g_autoptr(PxCostTable) t16 = tiny_table(&p, &c, &m);
  g_assert_cmpfloat(REL(t16->optimizer[0], 108544.0 * 52 / 3e12), <, 1e-12);
  px_model_free(m);
  p.precision = PX_PREC_BF16;
  g_autoptr(PxCostTable) tb = tiny_table(&p, &c, &m);
  g_assert_cmpfloat(REL(tb->optimizer[0], 108544.0 * 38 / 3e12), <, 1e-12);
  px_model_free(m);
  px_plan_clear(&p);
}

/* Megatron-Core's distributed optimizer all-gathers the updated parameters
 * bucket by bucket at the next step's first forward (finish_param_sync in the
 * forward pre-hook): the first bucket waited for, bucket b's beside bucket
 * b-1's forward on NCCL's share of the SMs. By hand, gathers 4, 3, 2 and
 * forwards 1, 5, 6 (any unit), share 0.1: 4 + max(3, 1 + 0.3) + max(2, 5 +
 * 0.2) + 6 = 18.2 against 12 of forward: 6.2 exposed. One bucket: its whole
 * gather. Gathers shorter than every forward, share 0: the first only. */
static void test_param_gather_exposed(void) {
  double g[] = {4, 3, 2}, f[] = {1, 5, 6};
  g_assert_cmpfloat(fabs(px_cost_param_gather_exposed(3, g, f, 0.1) - 6.2), <, 1e-12);
  g_assert_cmpfloat(fabs(px_cost_param_gather_exposed(1, g, f, 0.1) - 4.0), <, 1e-12);
  double gs[] = {0.5, 0.5, 0.5};
  g_assert_cmpfloat(fabs(px_cost_param_gather_exposed(3, gs, f, 0) - 0.5), <, 1e-12);
  g_assert_cmpfloat(px_cost_param_gather_exposed(0, g, f, 0.1), ==, 0);
}

/* The cost table's part of it: tiny (108544 parameters) on dp 4 inside a
 * node, Megatron-Core, ZeRO-1 (the distributed optimizer), bf16. Part 0's
 * gather as one collective, the ring's 3 · 2 us + 3/4 · 108544 · 2 B / 400
 * GB/s = 6.40704 us, its latency term 6 us (each bucket pays it; the engine
 * splits the rest, tests/test_engine.c); the gradients reduce-scattered per
 * bucket (start_grad_sync with use_distributed_optimizer): dp_bytes 3/4 ·
 * 108544 · 2 B = 162816 B and a latency term of 6 us, not the all-reduce's.
 * Megatron-LM 2021 (no distributed optimizer gather): none. */
static void test_megatron_param_gather(void) {
  PxCluster c = make_cluster(4, 1);
  PxPlan p;
  set_plan(&p, 4, 1, 1, 1, 4);
  p.stack = PX_STACK_MEGATRON_CORE;
  p.precision = PX_PREC_BF16;
  p.grad_reduce_bytes = 2;
  p.zero = 1;
  PxModel *m = NULL;
  g_autoptr(PxCostTable) t = tiny_table(&p, &c, &m);
  px_model_free(m);
  g_assert_cmpfloat(REL(t->param_gather[0], 6.40704e-6), <, 1e-12);
  g_assert_cmpfloat(REL(t->param_gather_lat[0], 6e-6), <, 1e-12);
  g_assert_cmpfloat(REL(t->dp_lat[0], 6e-6), <, 1e-12);
  g_assert_cmpfloat(REL(t->dp_bytes[0], 162816.0), <, 1e-12);
  p.stack = PX_STACK_MEGATRON_2021;
  g_autoptr(PxCostTable) t21 = tiny_table(&p, &c, &m);
  px_model_free(m);
  g_assert_cmpfloat(t21->param_gather[0], ==, 0);
  px_plan_clear(&p);
}

/* FSDP's shard cast before every all-gather (torch 2.1 flat_param.py,
 * _use_low_precision_shard): the fp32 shard read (4 B) and written in bf16
 * (2 B). tiny on dp 4, one part of 108544 parameters: 108544 / 4 * 6 =
 * 162816 B at 3 TB/s = 5.4272e-8 s added to the forward and to the
 * backward's input pass. The link is made free (no latency, 1e18 B/s) and
 * the cluster gives no collective SMs, so nothing else of the gathers shows:
 * ZeRO-3's passes are ZeRO-2's plus the casts. DeepSpeed's ZeRO-3 gathers
 * the 16-bit parameters as stored: no cast; fp32 plans do not cast either. */
static void test_fsdp_shard_cast(void) {
  PxCluster c = make_cluster(4, 1);
  c.intra_lat = 0;
  c.intra_bw = 1e18;
  PxPlan p;
  set_plan(&p, 4, 1, 1, 1, 4);
  p.precision = PX_PREC_BF16;
  PxModel *m = NULL;
  for (int s = 0; s < 3; s++) {
    p.stack = s == 0 ? PX_STACK_FSDP : s == 1 ? PX_STACK_DEEPSPEED : PX_STACK_FSDP;
    p.precision = s == 2 ? PX_PREC_FP32 : PX_PREC_BF16;
    double cast = s == 0 ? 162816.0 / 3e12 : 0.0;
    p.zero = 2;
    g_autoptr(PxCostTable) t2 = tiny_table(&p, &c, &m);
    px_model_free(m);
    p.zero = 3;
    g_autoptr(PxCostTable) t3 = tiny_table(&p, &c, &m);
    px_model_free(m);
    g_assert_cmpfloat(fabs(t3->fwd[0] - t2->fwd[0] - cast), <, 1e-18);
    g_assert_cmpfloat(fabs(t3->bwd_input[0] - t2->bwd_input[0] - cast), <, 1e-18);
  }
  px_plan_clear(&p);
}

/* dp 4, micro-batch 1, global batch 4, bf16, ZeRO-3: the sharded-data-parallel
 * plan of the FSDP and torchtitan stack tests */
static void set_zero3_bf16_plan(PxPlan *p) {
  set_plan(p, 4, 1, 1, 1, 4);
  p->precision = PX_PREC_BF16;
  p->zero = 3;
}

/* FSDP gathers and reduce-scatters per wrapped module (torch 2.1
 * flat_param.py _all_gather_flat_param per handle; llm-foundry wraps each
 * block, the root the rest), each with its latency term. tiny on dp 4 in
 * one node (2us, 4e11 B/s), ZeRO-3, bf16: units 2 blocks + the root = 3, so
 * 2 latency terms of 3 x 2us more per pass than one collective of the
 * part: the gathers 3 x 2us + 3/4 x 217088 B / 4e11 + 12us, the
 * reduce-scatter of fp32 gradients (434176 B) 6us + 325632 / 4e11 + 12us.
 * DeepSpeed's ZeRO-3 keeps the one collective per pass. */
static void test_fsdp_units_latency(void) {
  PxCluster c = make_cluster(4, 1);
  PxPlan p;
  set_zero3_bf16_plan(&p);
  PxModel *m = NULL;
  p.stack = PX_STACK_FSDP;
  g_autoptr(PxCostTable) tf = tiny_table(&p, &c, &m);
  px_model_free(m);
  g_assert_cmpfloat(REL(tf->gather_pass[0], 18e-6 + 162816.0 / 4e11), <, 1e-12);
  g_assert_cmpfloat(REL(tf->reduce_pass[0], 18e-6 + 325632.0 / 4e11), <, 1e-12);
  p.stack = PX_STACK_DEEPSPEED;
  g_autoptr(PxCostTable) td = tiny_table(&p, &c, &m);
  px_model_free(m);
  g_assert_cmpfloat(REL(td->gather_pass[0], 6e-6 + 162816.0 / 4e11), <, 1e-12);
  g_assert_cmpfloat(REL(td->reduce_pass[0], 6e-6 + 162816.0 / 4e11), <, 1e-12);
  px_plan_clear(&p);
}

static void test_tied_and_p2p(void) {
  PxCluster c = make_cluster(2, 1);
  PxPlan p;
  set_plan(&p, 1, 1, 2, 2, 8);
  PxModel *m = NULL;
  g_autoptr(PxCostTable) t = tiny_table(&p, &c, &m);
  /* Tied wte (100 x 64) gradient, 12800 B, all-reduced by stages 0 and 1 over
   * NVLink: ring 2 * 2us + 1/2 * 2 * 12800 / 4e11 = 4.032e-6 s (tree 4.064e-6) */
  g_assert_cmpfloat(REL(t->tied_reduce[0], 4.032e-6), <, 1e-12);
  g_assert_cmpfloat(REL(t->tied_reduce[1], 4.032e-6), <, 1e-12);
  /* The activation between the stages: mbs 2 x s 32 x h 64 x 2 B = 8192 B,
   * 2us + 8192 / 4e11 = 2.02048e-6 s; none out of the last part forward or the
   * first part backward. */
  g_assert_cmpfloat(t->p2p_bytes[0], ==, 8192.0);
  g_assert_cmpfloat(REL(t->p2p_act[0], 2.02048e-6), <, 1e-12);
  g_assert_cmpfloat(REL(t->p2p_grad[1], 2.02048e-6), <, 1e-12);
  g_assert_cmpfloat(t->p2p_act[1], ==, 0.0);
  g_assert_cmpfloat(t->p2p_grad[0], ==, 0.0);
  px_model_free(m);
  /* A pipeline latency of its own ([node] p2p_latency, calibrate): the
   * transfers take 30us + 8192 / 4e11 = 3.002048e-5 s; the tied all-reduce
   * between the same stages keeps the node latency, 4.032e-6 s */
  c.intra_p2p_lat = 30e-6;
  g_autoptr(PxCostTable) tl = tiny_table(&p, &c, &m);
  g_assert_cmpfloat(REL(tl->p2p_act[0], 3.002048e-5), <, 1e-12);
  g_assert_cmpfloat(REL(tl->p2p_grad[1], 3.002048e-5), <, 1e-12);
  g_assert_cmpfloat(REL(tl->tied_reduce[0], 4.032e-6), <, 1e-12);
  px_model_free(m);
  px_plan_clear(&p);
}

/* DeepSpeed's pipeline engine with tp > 1 passes 1/tp of each activation and
 * gradient per TP rank and all-gathers it over the TP group
 * (runtime/pipe/engine.py is_pipe_partitioned, runtime/utils.py
 * PartitionedTensor). tiny, tp 2, pp 2, mbs 2, one node of 4 (NVLink: 2us,
 * 4e11 B/s): the activation is 2 x 32 x 64 x 2 B = 8192 B, each rank sends
 * 4096 B: 2us + 4096 / 4e11 = 2.01024e-6 s; the all-gather of 8192 B over 2
 * ranks 2us + 1/2 x 8192 / 4e11 = 2.01024e-6 s. Forward: one gather (the
 * receiver's input), 4.02048e-6 s; backward: two (the sender of the
 * activation restores its own output and gathers the gradient),
 * 6.03072e-6 s. This executor's stack sends the whole activation from each
 * rank: 2us + 8192 / 4e11 = 2.02048e-6 s both ways. */
static void test_deepspeed_pipe_partition(void) {
  PxCluster c = make_cluster(4, 1);
  PxPlan p;
  set_plan(&p, 1, 2, 2, 2, 8);
  PxModel *m = NULL;
  p.stack = PX_STACK_DEEPSPEED;
  g_autoptr(PxCostTable) t = tiny_table(&p, &c, &m);
  g_assert_cmpfloat(t->p2p_bytes[0], ==, 4096.0);
  g_assert_cmpfloat(REL(t->p2p_act[0], 4.02048e-6), <, 1e-12);
  g_assert_cmpfloat(REL(t->p2p_grad[1], 6.03072e-6), <, 1e-12);
  px_model_free(m);
  p.stack = PX_STACK_PARALLAX;
  g_autoptr(PxCostTable) tp = tiny_table(&p, &c, &m);
  g_assert_cmpfloat(tp->p2p_bytes[0], ==, 8192.0);
  g_assert_cmpfloat(REL(tp->p2p_act[0], 2.02048e-6), <, 1e-12);
  g_assert_cmpfloat(REL(tp->p2p_grad[1], 2.02048e-6), <, 1e-12);
  px_model_free(m);
  px_plan_clear(&p);
}

/* GPT-3 175B (l = 96, h = 12288, a = 96, V = 51200, s = 2048), global batch B.
 * Per block forward: QKV 6 s h^2, proj 2 s h^2, MLP 16 s h^2 -> 24 s h^2 for
 * the GEMMs, and QK^T + PV 4 s^2 h; the logits 2 s h V. Forward per step:
 * B (24 s l h^2 + 4 s^2 l h + 2 s h V). Backward is twice that:
 * model FLOPs = 3 x forward = 72 B s l h^2 + 12 B s^2 l h + 6 B s h V
 *             = 72 B s l h^2 (1 + s / (6h) + V / (12 l h)).
 * Full recompute runs every block's forward once more (not the logits):
 * + 24 B s l h^2 + 4 B s^2 l h, giving Megatron-LM's
 * F = 96 B s l h^2 (1 + s / (6h) + V / (16 l h)). */
static void test_gpt3_flops(void) {
  PxModelDesc d = {.name = (char *)"gpt3-175b", .layers = 96, .hidden = 12288, .heads = 96,
                   .kv_heads = 96, .ffn = 49152, .vocab = 51200, .max_seq = 2048,
                   .ffn_kind = PX_FFN_GELU, .norm = PX_NORM_LAYERNORM, .pos = PX_POS_LEARNED,
                   .bias = TRUE, .tied = TRUE, .dropout = TRUE};
  g_autoptr(GError) err = NULL;
  g_autoptr(PxModel) m = px_model_new(&d, &err);
  g_assert_no_error(err);
  PxCluster c = make_cluster(8, 128);
  PxPlan p;
  set_plan(&p, 16, 8, 8, 1, 1536);
  p.ckpt = PX_CKPT_FULL;
  gboolean ok = px_plan_validate(&p, m, &c, &err);
  g_assert_no_error(err);
  g_assert_true(ok);
  g_autoptr(PxPartition) part = px_partition_new(m, &p, NULL, &err);
  g_assert_no_error(err);
  g_autoptr(PxCostTable) t = px_cost_table_new(m, &c, &p, part, &err);
  g_assert_no_error(err);
  double B = 1536, s = 2048, l = 96, h = 12288, V = 51200;
  double hw = 96 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h));
  double model = 72 * B * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h));
  g_assert_cmpfloat(REL(t->hardware_flops_per_step, hw), <, 1e-9);
  g_assert_cmpfloat(REL(t->model_flops_per_step, model), <, 1e-9);
  g_assert_cmpfloat(t->peak_flops, ==, 1e15);
  /* without recompute the two counts agree */
  p.ckpt = PX_CKPT_NONE;
  g_autoptr(PxCostTable) t2 = px_cost_table_new(m, &c, &p, part, &err);
  g_assert_no_error(err);
  g_assert_cmpfloat(REL(t2->hardware_flops_per_step, model), <, 1e-9);
  /* selective recompute adds only the attention core 4 B s^2 l h (unfused
   * attention: flash has nothing to recompute) */
  p.ckpt = PX_CKPT_SELECTIVE;
  p.attention = PX_ATTN_UNFUSED;
  g_autoptr(PxCostTable) t2u = px_cost_table_new(m, &c, &p, part, &err);
  g_assert_no_error(err);
  p.ckpt = PX_CKPT_NONE;
  g_autoptr(PxCostTable) t2n = px_cost_table_new(m, &c, &p, part, &err);
  g_assert_no_error(err);
  p.ckpt = PX_CKPT_SELECTIVE;
  g_autoptr(PxCostTable) t3 = px_cost_table_new(m, &c, &p, part, &err);
  g_assert_no_error(err);
  g_assert_cmpfloat(REL(t3->hardware_flops_per_step, model + 4 * B * s * s * l * h), <, 1e-9);
  /* recompute lengthens only the input half of the backward */
  g_assert_cmpfloat(t3->bwd_input[3], >, t2n->bwd_input[3]);
  g_assert_cmpfloat(REL(t3->bwd_weight[3], t2n->bwd_weight[3]), <, 1e-12);
  g_assert_cmpfloat(REL(t2u->bwd_input[3], t3->bwd_input[3]), <, 1e-12);
  px_plan_clear(&p);
}

/* Transformer Engine's TP communication overlap (docs/cost.md "TP
 * communication overlap"), the exposure formulas by hand:
 *  - ring exchange, 4 steps of 1 ms GEMM, 1.5 ms per chunk on the copy
 *    engines: the 3 hops after the first chunk each wait 0.5 ms: 1.5 ms;
 *    with 2 ms GEMMs nothing waits; aggregate (2 steps of two chunks, a
 *    0.5 ms neighbour exchange first, 3 ms per hop): 0.5 + 2 ms.
 *  - pipeline of 4 splits, 1 ms GEMM chunks, 0.5 ms reduce-scatter chunks
 *    on 16 of 132 SMs: the last chunk's 0.5 ms, and the 3 overlapped ones
 *    take 16/132 x 1.5 ms from their GEMMs: 0.5 + 0.181818... ms; with
 *    1.5 ms chunks on a margin (share 0) and 0.5 ms GEMMs: 1.5 + 3 x 1 ms.
 * And one block on the dgx-h100 preset (the gemm_block_model block: h 4096,
 * 32 heads, ffn 16384, s 2048, micro-batch 1), tp 2 with sequence
 * parallelism, bf16, megatron-core, T = 2048 tokens, act = T h E =
 * 16777216 B; NVLink busbw 450e9 x 0.82 = 369e9 B/s, alpha 3 us. The rank's
 * weights (out, in): qkv (6144, 4096), proj (4096, 2048), fc1 (8192, 4096),
 * fc2 (4096, 8192). A GEMM is max(2mnk / (989.4e12 eff), 2(mk + kn + mn) /
 * (3350e9 x 0.898)) + 3 us, eff = 0.808 x (useful tiles / slots over 132
 * SMs) x k / (k + 150) (section 2); all below are compute-bound.
 *  Without overlap: two all-gather + reduce-scatter pairs each way, each
 *   collective 3 us + 1/2 x 16777216 / 369e9 = 25.733355 us:
 *   tp_fwd = tp_bwd = 4 x 25.733355 = 102.93342 us.
 *  te (TE initialize_ub's defaults):
 *   qkv_fprop ring, 2 steps of (1024, 6144, 4096): 384 tiles in 3 waves
 *     (396 slots), eff 0.808 x 384/396 x 4096/4246 = 0.755836, 71.919 us;
 *     the hop p2p(act / 2) = 3 us + 8388608 / 369e9 = 25.733 us: hidden;
 *   fc1_fprop ring, 2 steps of (1024, 8192, 4096): 512 tiles, 528 slots,
 *     94.893 us: hidden;
 *   proj_fprop pipeline, 4 chunks of (2048, 1024, 2048): 128 tiles on 132
 *     SMs, eff 0.808 x 128/132 x 2048/2198 = 0.730045, 14.892 us; each
 *     chunk's reduce-scatter 3 us + 1/2 x 4194304 / 369e9 = 8.683339 us,
 *     on 16 of the 132 SMs beside GEMM chunks launched on all of them: the
 *     preset's persistent GEMMs run in ceil(132 / 116) = 2 waves meanwhile,
 *     the share 1 - 1/2 = 1/2 (px_cost_overlap_share of the GEMM alone):
 *     exposed 8.683339 + max(3 x (8.683 - 14.892), 1/2 x 3 x 8.683339)
 *     = 2.5 x 8.683339 = 21.708347 us;
 *   fc2_fprop pipeline, chunks of (2048, 1024, 8192): 48.135 us, the same
 *     21.708347 us exposed;
 *   tp_fwd = 2 x 21.708347 = 43.416694 us. The GEMMs: the chunks quantise as
 *     the whole GEMMs here (384/396 = 768/792 ...), so the forward only
 *     pays 1 + 1 + 3 + 3 more kernels: +24 us;
 *   backward: proj_dgrad / fc2_dgrad ring steps (1024, 2048, 4096) 25.973 us
 *     and (1024, 4096, 8192) 94.893 us, hops 25.733 us: hidden, 1 + 1 more
 *     kernels: +6 us; qkv / fc1 bulk all-gather (25.733 us, 16 SMs) beside
 *     their dgrad GEMMs (139.2 / 183.5 us) and bulk reduce-scatter beside
 *     the wgrad GEMMs: the persistent GEMM's CTAs that find no SM start
 *     when the collective ends, so each GEMM ends 25.733355 us late
 *     (px_cost_gemm_beside_exposed: min(coll, gemm)), four of them:
 *   tp_bwd = 102.933420 us; the wgrad GEMMs unchanged.
 *  NeMo's userbuffers_bf16_h100_h8192_tp4_mbs1_seqlen8192: proj_fprop on a
 *   24-SM margin (108 SMs): the 128 tiles take 2 waves (216 slots), eff
 *   0.808 x 128/216 x 2048/2198 = 0.446139, 22.460 us a chunk; fc2_fprop on
 *   116 SMs, 232 slots, eff 0.437777, 82.328 us; their reduce-scatters on
 *   the margin take nothing more: 8.683339 us each exposed. tp_fwd =
 *   17.366678 us; forward GEMMs +191.043 us (4 x 22.460 - 50.569 +
 *   4 x 82.328 - 183.539 + 2 x 3 us); bulk on 4 / 24 / 2 / 4 SMs without a
 *   margin: the GEMMs' second waves wait for each collective, as te's:
 *   4 x 25.733355 = 102.933420 us. */
static void test_tp_overlap(void) {
  g_assert_cmpfloat(REL(px_cost_ub_ring_exposed(4, 1e-3, 1.5e-3, 0), 1.5e-3), <, 1e-12);
  g_assert_cmpfloat(px_cost_ub_ring_exposed(4, 2e-3, 1e-3, 0), ==, 0.0);
  g_assert_cmpfloat(REL(px_cost_ub_ring_exposed(2, 1e-3, 3e-3, 0.5e-3), 2.5e-3), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_ub_pipeline_exposed(4, 1e-3, 0.5e-3, 16.0 / 132), 0.5e-3 + 1.5e-3 * 16 / 132), <, 1e-12);
  g_assert_cmpfloat(REL(px_cost_ub_pipeline_exposed(4, 0.5e-3, 1.5e-3, 0), 4.5e-3), <, 1e-12);
  g_assert_null(px_tp_overlap_config(PX_TPO_NONE));
  const PxTpOverlapConfig *te = px_tp_overlap_config(PX_TPO_TE);
  g_assert_cmpint(te->proj_fprop.method, ==, PX_UB_PIPELINE);
  g_assert_cmpint(te->proj_fprop.num_splits, ==, 4);
  g_assert_cmpint(te->qkv_dgrad.num_sm, ==, 16);

  g_autoptr(GError) err = NULL;
  g_autoptr(PxCluster) c = px_cluster_load("dgx-h100", &err);
  g_assert_no_error(err);
  g_autoptr(PxModel) m = gemm_block_model();
  const PxLayer *block = &m->layers[1];
  g_assert_cmpint(block->kind, ==, PX_LAYER_BLOCK);
  PxPlan p;
  set_plan(&p, 1, 2, 1, 1, 1);
  p.seq = 2048;
  p.seq_parallel = TRUE;
  p.stack = PX_STACK_MEGATRON_CORE;
  PxLink l = px_cost_tp_link(c, &p, 0);
  g_assert_true(l.intra);
  PxLayerTimes none, te_t, nemo;
  px_cost_layer_times(m, block, c, &p, &l, &none);
  g_assert_cmpfloat(REL(none.tp_fwd, 102.93342005420055e-6), <, 1e-9);
  /* the backward also gathers each column-parallel linear's input again for
   * its wgrad (sequence parallelism's second all-gather, sp_regather): two
   * more all-gathers of 102.93342 / 4 = 25.733355 us */
  g_assert_cmpfloat(REL(none.tp_bwd, 102.93342005420055e-6 * 1.5), <, 1e-9);
  p.tp_overlap = PX_TPO_TE;
  px_cost_layer_times(m, block, c, &p, &l, &te_t);
  g_assert_cmpfloat(REL(te_t.tp_fwd, 43.416693766937676e-6), <, 1e-9);
  g_assert_cmpfloat(REL(te_t.tp_bwd, 102.93342005420055e-6), <, 1e-9);
  g_assert_cmpfloat(REL(te_t.fwd - none.fwd, 24e-6), <, 1e-9);
  g_assert_cmpfloat(REL(te_t.bwd_input - none.bwd_input, 6e-6), <, 1e-9);
  g_assert_cmpfloat(REL(te_t.bwd_weight, none.bwd_weight), <, 1e-12);
  p.tp_overlap = PX_TPO_NEMO_H8192_TP4;
  px_cost_layer_times(m, block, c, &p, &l, &nemo);
  g_assert_cmpfloat(REL(nemo.tp_fwd, 17.36667750677507e-6), <, 1e-9);
  g_assert_cmpfloat(REL(nemo.tp_bwd, 102.93342005420055e-6), <, 1e-9);
  g_assert_cmpfloat(REL(nemo.fwd - none.fwd, 191.04336749745327e-6), <, 1e-9);
  g_assert_cmpfloat(REL(nemo.bwd_input - none.bwd_input, 6e-6), <, 1e-9);
  /* without sequence parallelism (or at tp 1) nothing is overlapped: the
   * plan refuses it (test_plan), the layer is costed as without */
  p.seq_parallel = FALSE;
  PxLayerTimes nosp_ov, nosp;
  px_cost_layer_times(m, block, c, &p, &l, &nosp_ov);
  p.tp_overlap = PX_TPO_NONE;
  px_cost_layer_times(m, block, c, &p, &l, &nosp);
  g_assert_cmpfloat(nosp_ov.tp_fwd, ==, nosp.tp_fwd);
  g_assert_cmpfloat(nosp_ov.fwd, ==, nosp.fwd);
  px_plan_clear(&p);
}

static void test_ideal(void) {
  g_autoptr(PxCostTable) t = px_cost_table_ideal(4, 2);
  g_assert_cmpint(t->parts, ==, 8);
  for (int k = 0; k < 8; k++) {
    g_assert_cmpfloat(t->fwd[k], ==, 1.0);
    g_assert_cmpfloat(t->bwd_input[k], ==, 1.0);
    g_assert_cmpfloat(t->bwd_weight[k], ==, 1.0);
    g_assert_cmpfloat(t->p2p_act[k] + t->p2p_grad[k] + t->gather[k] + t->tp_comm_fwd[k], ==, 0.0);
  }
  for (int r = 0; r < 4; r++)
    g_assert_cmpfloat(t->dp_reduce[r] + t->optimizer[r] + t->load[r] + t->tied_reduce[r], ==, 0.0);
}

static void test_refuses(void) {
  PxCluster c = make_cluster(4, 1);
  c.peak_bf16 = 0;
  PxPlan p;
  set_plan(&p, 1, 1, 1, 1, 1);
  g_autoptr(PxModel) m = tiny_model();
  g_autoptr(GError) err = NULL;
  g_autoptr(PxPartition) part = px_partition_new(m, &p, NULL, &err);
  g_assert_no_error(err);
  PxCostTable *t = px_cost_table_new(m, &c, &p, part, &err);
  g_assert_null(t);
  g_assert_error(err, PX_COST_ERROR, PX_COST_ERROR_INVALID);
  px_plan_clear(&p);
}

/* The block of test_block_gemm_bound (h 4096, s 2048, 32 heads, ffn 16384,
 * GELU, no biases) with context parallelism and FP8, on the same ideal GPU
 * (peak 1e15, HBM so fast that memory-bound kernels vanish):
 *  - cp 2, flash: each CP rank runs the weight GEMMs on half the tokens and,
 *    load-balanced, half the causal attention: every time halves, forward
 *    8.589934592e-4 / 2, backward-input 9.10533066752e-4 / 2 (the total FLOPs
 *    are unchanged); its attention core is 3.4359738368e-5 / 2;
 *  - fp8 at an FP8 peak of 2e15: the weight GEMMs (24 s h² = 824633720832
 *    FLOPs) halve, the attention stays bf16: 4.12316860416e-4 +
 *    3.4359738368e-5 = 4.46676598784e-4 s; at an FP8 GEMM efficiency of 0.5,
 *    8.24633720832e-4 + 3.4359738368e-5 = 8.589934592e-4 s;
 *  - MFU is taken against bf16's peak for fp8 plans. */
static void test_cp_fp8_block(void) {
  g_autoptr(PxModel) m = gemm_block_model();
  PxCluster c = make_cluster(8, 1);
  c.hbm_bw = 1e30;
  c.peak_fp8 = 2e15;
  PxPlan p;
  set_plan(&p, 1, 1, 1, 1, 1);
  p.seq = 2048;
  p.cp = 2;
  const PxLayer *block = &m->layers[1];
  g_assert_cmpint(px_cost_attention(&p), ==, PX_ATTN_FLASH); /* ring attention runs flash blocks */
  PxLink l = px_cost_tp_link(&c, &p, 0);
  PxLayerTimes lt;
  px_cost_layer_times(m, block, &c, &p, &l, &lt);
  g_assert_cmpfloat(REL(lt.fwd, 8.589934592e-4 / 2), <, 1e-9);
  g_assert_cmpfloat(REL(lt.bwd_input, 9.10533066752e-4 / 2), <, 1e-9);
  g_assert_cmpfloat(REL(lt.attn_fwd, 3.4359738368e-5 / 2), <, 1e-9);
  p.cp = 1;
  p.attention = PX_ATTN_FLASH;
  p.precision = PX_PREC_FP8;
  px_cost_layer_times(m, block, &c, &p, &l, &lt);
  g_assert_cmpfloat(REL(lt.fwd, 4.46676598784e-4), <, 1e-9);
  c.gemm_eff_fp8 = 0.5;
  px_cost_layer_times(m, block, &c, &p, &l, &lt);
  g_assert_cmpfloat(REL(lt.fwd, 8.589934592e-4), <, 1e-9);
  g_assert_cmpfloat(px_cost_mfu_peak(&c, PX_PREC_FP8), ==, 1e15);
  g_assert_cmpfloat(px_cost_peak_flops(&c, PX_PREC_FP8), ==, 2e15);
  px_plan_clear(&p);
}

/* The CP ring, by hand: the same block at cp 2 (tp 1, b 1, bf16): a K/V block
 * is K and V of 1024 tokens × 4096, 2·2·1024·4096 = 16,777,216 B; over a link
 * of 100 GB/s and 10 us one hop takes 1.7777216e-4 s.
 *   forward: (cp-1)·max(0, 1.7777216e-4 - 2e-4/2) = 7.777216e-5 s
 *   backward: (cp-1)·max(0, p2p(2 blocks) 3.4554432e-4 - 4e-4/2) + last hop
 *     1.7777216e-4 = 1.4554432e-4 + 1.7777216e-4 = 3.2331648e-4 s
 * and no exposure where the attention block outlasts the hop. The ring's link:
 * 2 nodes of 8, tp 8 × cp 2 spans them (one NIC per hop: 25 GB/s, 10 us); tp 2
 * × cp 4 stays on NVLink. */
static void test_cp_ring(void) {
  g_autoptr(PxModel) m = gemm_block_model();
  PxPlan p;
  set_plan(&p, 1, 1, 1, 1, 1);
  p.seq = 2048;
  p.cp = 2;
  PxLink l = {100e9, 10e-6, FALSE, NULL};
  double f, b;
  px_cost_cp_ring(m, &p, &l, 2e-4, 4e-4, &f, &b);
  g_assert_cmpfloat(REL(f, 7.777216e-5), <, 1e-9);
  g_assert_cmpfloat(REL(b, 3.2331648e-4), <, 1e-9);
  px_cost_cp_ring(m, &p, &l, 1e-3, 1e-3, &f, &b);
  g_assert_cmpfloat(f, ==, 0.0);
  g_assert_cmpfloat(REL(b, 1.7777216e-4), <, 1e-9);
  p.cp = 1;
  px_cost_cp_ring(m, &p, &l, 2e-4, 4e-4, &f, &b);
  g_assert_cmpfloat(f + b, ==, 0.0);
  PxCluster c = make_cluster(8, 2);
  px_plan_clear(&p);
  set_plan(&p, 1, 8, 1, 1, 1);
  p.cp = 2;
  PxLink cl = px_cost_cp_link(&c, &p, 0);
  g_assert_false(cl.intra);
  g_assert_cmpfloat(cl.bw, ==, 25e9);
  g_assert_cmpfloat(cl.lat, ==, 10e-6);
  px_plan_clear(&p);
  set_plan(&p, 2, 2, 1, 1, 2);
  p.cp = 4;
  cl = px_cost_cp_link(&c, &p, 0);
  g_assert_true(cl.intra);
  g_assert_cmpfloat(cl.bw, ==, 400e9);
  /* the gradients are reduced over dp·cp = 8 ranks of stride tp 2: both nodes */
  PxLink dl = px_cost_dp_link(&c, &p, 0);
  g_assert_false(dl.intra);
  px_plan_clear(&p);
}

/* The torchtitan stack (docs/cost.md section 4) against parallax on tiny, dp 4
 * on one node (NVLink 400 GB/s, 2 us), bf16, one micro-batch, ZeRO-3 (FSDP2
 * fully_shard). The part holds all 108544 parameters, 27136 per shard.
 * - Gradient reduction: torchtitan's MixedPrecisionPolicy reduces in fp32,
 *   4 B per element: the ring reduce-scatter sends 3/4 * 108544 * 4 = 325632 B
 *   per rank; parallax reduces in the activation dtype, 2 B: 162816 B. Per
 *   backward pass torchtitan's reduce-scatter takes 3 * 2 us + 325632 / 4e11
 *   = 6.81408e-6 s, and one reduce-scatter per fully_shard'ed module (2
 *   blocks and the root: 2 x 3 x 2us more, 1.881408e-5 s; overlapped: only
 *   the last of the 5 layers' share of the one collective, 6.81408e-6 / 5, is
 *   left after the backward); parallax (no bucket: after the backward)
 *   3 * 2 us + 162816 / 4e11 = 6.40704e-6 s.
 * - Optimizer: fused AdamW over the fp32 shard, 28 B (p, g, m, v read; p, m,
 *   v written) + clip_grad_norm_ 12 B = 40 B * 27136 at 3 TB/s = 3.618133e-7 s.
 * - FSDP2's copies around each all-gather (cast of the fp32 shard 4 + 2,
 *   copy-in 2 + 2, per shard element; copy-out 2 + 2 per gathered element):
 *   27136 * 10 + 108544 * 4 = 705536 B at 3 TB/s = 2.351787e-7 s more in the
 *   forward and in the backward's input pass of ZeRO-3 than of ZeRO-2 (link
 *   free, no collective SMs: nothing else of the gathers shows).
 * - Post-backward, every micro-batch: _chunk_cat widens the bf16 gradients
 *   into the fp32 reduce-scatter input (2 + 4 B per element) and the shard
 *   accumulates (2 + 2 * 4) / 4 B: 108544 * 8.5 B at 3 TB/s more backward-
 *   weight time than Megatron-Core (nothing charged) at ZeRO-2. */
static void test_torchtitan_stack(void) {
  PxCluster c = make_cluster(4, 1);
  PxPlan p;
  set_zero3_bf16_plan(&p);
  PxModel *m = NULL;
  PxStack parsed;
  g_assert_true(px_stack_parse("torchtitan", &parsed));
  g_assert_cmpint(parsed, ==, PX_STACK_TORCHTITAN);
  g_assert_cmpstr(px_stack_name(PX_STACK_TORCHTITAN), ==, "torchtitan");
  p.stack = PX_STACK_TORCHTITAN;
  g_autoptr(PxCostTable) tt = tiny_table(&p, &c, &m);
  px_model_free(m);
  g_assert_cmpint(tt->grad_reduce_bytes, ==, 4);
  g_assert_true(tt->overlap_dp);
  g_assert_cmpint(tt->attention, ==, PX_ATTN_FLASH);
  g_assert_cmpfloat(REL(tt->dp_bytes[0], 325632.0), <, 1e-12);
  g_assert_cmpfloat(REL(tt->reduce_pass[0], 1.881408e-5), <, 1e-12);
  g_assert_cmpfloat(REL(tt->dp_reduce[0], 6.81408e-6 / 5), <, 1e-12);
  g_assert_cmpfloat(REL(tt->optimizer[0], 3.6181333333333333e-7), <, 1e-9);
  p.stack = PX_STACK_PARALLAX;
  g_autoptr(PxCostTable) tp = tiny_table(&p, &c, &m);
  px_model_free(m);
  g_assert_cmpint(tp->grad_reduce_bytes, ==, 2);
  g_assert_cmpfloat(REL(tp->dp_bytes[0], 162816.0), <, 1e-12);
  g_assert_cmpfloat(REL(tp->dp_reduce[0], 6.40704e-6), <, 1e-12);

  /* the gathers' copies: ZeRO-3 minus ZeRO-2 on a free link */
  PxCluster free_link = c;
  free_link.intra_lat = 0;
  free_link.intra_bw = 1e18;
  p.stack = PX_STACK_TORCHTITAN;
  g_autoptr(PxCostTable) t3 = tiny_table(&p, &free_link, &m);
  px_model_free(m);
  p.zero = 2;
  g_autoptr(PxCostTable) t2 = tiny_table(&p, &free_link, &m);
  px_model_free(m);
  g_assert_cmpfloat(REL(t3->fwd[0] - t2->fwd[0], 705536.0 / 3e12), <, 1e-9);
  g_assert_cmpfloat(REL(t3->bwd_input[0] - t2->bwd_input[0], 705536.0 / 3e12), <, 1e-9);

  /* the post-backward copy-in and the shard's accumulation */
  p.stack = PX_STACK_MEGATRON_CORE;
  g_autoptr(PxCostTable) tc = tiny_table(&p, &c, &m);
  px_model_free(m);
  p.stack = PX_STACK_TORCHTITAN;
  g_autoptr(PxCostTable) tt2 = tiny_table(&p, &c, &m);
  px_model_free(m);
  /* (less Megatron-Core's own embedding accumulation: 8448 elements x 12 B,
   * test_stacks) */
  g_assert_cmpfloat(REL(tt2->bwd_weight[0] - tc->bwd_weight[0], (108544.0 * 8.5 - 8448.0 * 12) / 3e12), <, 1e-9);
  /* ZeRO-1 is FSDP2 too (reshard "never"): still the reduce-scatter's
   * 325632 B, not an all-reduce's twice that */
  p.zero = 1;
  g_autoptr(PxCostTable) t1 = tiny_table(&p, &c, &m);
  px_model_free(m);
  g_assert_cmpfloat(REL(t1->dp_bytes[0], 325632.0), <, 1e-12);
  px_plan_clear(&p);
}


/* A small Llama block (h 64, 4 heads, 2 KV heads, SwiGLU ffn 128, RMSNorm,
 * RoPE, vocabulary 100), the torchtitan tests' hand-computed model. */
static PxModel *tiny_llama(int max_seq) {
  PxModelDesc d = {.name = (char *)"tiny-llama", .layers = 2, .hidden = 64, .heads = 4, .kv_heads = 2,
                   .ffn = 128, .vocab = 100, .max_seq = max_seq, .ffn_kind = PX_FFN_SWIGLU, .norm = PX_NORM_RMSNORM,
                   .pos = PX_POS_ROPE, .bias = FALSE, .tied = FALSE, .dropout = FALSE};
  g_autoptr(GError) err = NULL;
  PxModel *m = px_model_new(&d, &err);
  g_assert_no_error(err);
  return m;
}
/* torchtitan's selective AC ("op": every mm's output saved but every second
 * one's, in the block's forward order wq wk wv wo w1 w3 w2) recomputes wk, wo
 * and w3 before the backward. A Llama-shaped block, h 64, 4 heads, 2 KV heads
 * (wk 32 x 64), SwiGLU ffn 128 (w3 128 x 64), wo 64 x 64, no biases; T = 32
 * tokens; GEMMs at the 1e15 FLOP/s peak (no efficiency, HBM made free):
 * 2 * 32 * 64 * (32 + 64 + 128) = 917504 FLOPs = 9.17504e-10 s. Parallax
 * with flash recomputes nothing under selective. */
static void test_torchtitan_op_sac(void) {
  g_autoptr(PxModel) m = tiny_llama(32);
  PxCluster c = make_cluster(1, 1);
  c.hbm_bw = 1e30;
  PxPlan p;
  set_plan(&p, 1, 1, 1, 1, 1);
  p.seq = 32;
  p.precision = PX_PREC_BF16;
  p.ckpt = PX_CKPT_SELECTIVE;
  const PxLayer *block = &m->layers[1];
  g_assert_cmpint(block->kind, ==, PX_LAYER_BLOCK);
  PxLink l = px_cost_tp_link(&c, &p, 0);
  PxLayerTimes lt;
  p.stack = PX_STACK_TORCHTITAN;
  px_cost_layer_times(m, block, &c, &p, &l, &lt);
  g_assert_cmpfloat(REL(lt.recompute, 9.17504e-10), <, 1e-9);
  p.stack = PX_STACK_PARALLAX;
  p.attention = PX_ATTN_FLASH;
  px_cost_layer_times(m, block, &c, &p, &l, &lt);
  g_assert_cmpfloat(lt.recompute, ==, 0.0);
  px_plan_clear(&p);
}

/* torchtitan's Llama block, eager and compiled (px_cost_titan_block;
 * docs/cost.md section 4), by hand for h 64, 4 heads, 2 KV heads (head_dim
 * 16: q 64, kv 32 wide), SwiGLU ffn 128, T = 32 tokens, bf16 (E = 2): T h =
 * T q = 2048, T kv = 1024, T f = 4096 elements.
 * Eager forward: two RMSNorms, 36 B per element (float() 6, pow 8, mean 4,
 *   x * rsqrt 8, type_as 6, * weight 4), 2 x 36 x 2048 = 147456 B, 2 x 8
 *   kernels; RoPE on xq: 2048 x (6 + 8 + 6) = 40960 B, 3 kernels; on xk:
 *   1024 x (6 + 8 + 6) = 20480 B, 3; repeat_kv of keys and values: 2 x (1024
 *   + 2048) x 2 = 12288 B, 2; two residual adds 2 x 6 x 2048 = 24576 B, 2;
 *   silu and mul 5 x 2 x 4096 = 40960 B, 2. 286720 B, 28 kernels.
 * Eager backward: RMSNorms 92 B per element (dy*w 4, dy*c 6, the weight's
 *   sum 2, to fp32 6, g*r 8, g*x 12, its sum 4, mean's expand / N 4, pow's
 *   copy, scale and product 8 + 8 + 12, the two gradients summed 12, to bf16
 *   6; 16 kernels), 2 x 92 x 2048 = 376832 B, 32; RoPE as forward 40960 +
 *   20480 B, 6; repeat_kv's sums 12288 B, 2; the residual forks 24576 B, 2;
 *   the dgrad sums at the norms' outputs (wq + wk + wv: 2, w1 + w3: 1) 3 x 6
 *   x 2048 = 36864 B, 3; mul's two products and silu_backward 9 x 2 x 4096
 *   = 73728 B, 3. 585728 B, 48 kernels.
 * Compiled forward: norm 2 x 2 x 2048 = 8192 B and add + norm 4 x 2 x 2048
 *   = 16384 B, 2 kernels; the output add 12288 B, 1; silu * mul 3 x 2 x 4096
 *   = 24576 B, 1; RoPE: xq as eager 40960 B, 3 (the complex product falls
 *   back to eager under Inductor), xk.float() 6144 and the product 8192, 2,
 *   the cast back fused with repeat_kv's copy, read 1024 x 4, write 2048 x 2
 *   = 8192 B, 1; the values' copy 6144 B, 1. 131072 B, 11 kernels.
 * Compiled backward: silu-mul 5 x 2 x 4096 = 40960 B, 1; attention_norm dx
 *   (3 dgrads, x, residual gradient read, dx written: 6 x 2) + dweight (3
 *   dgrads and x: 4 x 2), ffn_norm (5 + 3) x 2: 36 x 2048 = 73728 B, 4;
 *   RoPE: xq 40960 B, 3; xk: repeat's sum fused with the cast to fp32, read
 *   2048 x 2, write 1024 x 4 = 8192 B, the product 8192, the cast back 6144,
 *   3; the values' sum 6144 B, 1. 184320 B, 12 kernels.
 * With tp 2 and sequence parallelism (T 32, Tn 16; q 32, kv 16, f 64),
 *   compiled backward: silu-mul 10 x 32 x 64 = 20480 B, 1; the dgrads'
 *   partial sums before the reduce-scatter, (4 + 3) x 2 x 32 x 64 = 28672 B,
 *   2; each norm dx (dy, x, residual read, dx written) + dweight (dy, x): 2
 *   x 6 x 2 x 16 x 64 = 24576 B, 4; xq 32 x 32 x 20 = 20480 B, 3; xk
 *   512 x 8 + 512 x 6 + 32 x (32 x 2 + 16 x 4) = 11264 B, 3; values 32 x 48 x
 *   2 = 3072 B, 1: 108544 B, 14 kernels. */
static double titan_total(const PxTitanKernels *k, int *kernels) {
  double b = 0;
  *kernels = 0;
  for (int i = 0; i <= PX_N_OPC; i++) {
    b += k->bytes[i];
    *kernels += k->kernels[i];
  }
  return b;
}

/* torch's ring attention under --stack torchtitan (px_cost_titan_cp: torch
 * 1963fc8 _attention.py, _templated_ring_attention / _backward, all-gather
 * rotater), by hand. tiny Llama: h 64, 4 heads (q 64; repeat_kv makes K, V
 * 64 wide too), bf16 (E 2), one sequence of 64 tokens, tp 1. Rank cp - 1:
 * every off-diagonal step is the full-q, half-K/V branch.
 * cp 2: T 32, Q = 32·64 = 2048, L = 32·4 = 128, one off-diagonal step.
 *   forward: k, v contiguous 2·(2·2·2048) = 16384; one K/V cat (read, write
 *   2·2048·2) 16384; step 0's out.to(float32) (2 + 4)·2048 = 12288; step 1:
 *   cast 12288, out - block_out 12·2048, sigmoid(block_lse - lse) 12·128 +
 *   8·128, its product (4·128 + 4·2048 read, 4·2048 written), out - that
 *   12·2048, lse - block_lse 12·128, logsigmoid 8·128, lse - that 12·128:
 *   12288 + 32·2048 + 56·128 = 84992; the result's .to(bf16) 12288.
 *   142336 B, kernels 2 + 1 + 1 + 9 + 1 = 14.
 *   backward: 3 fp32 zeros 12·2048 = 24576; contiguous 16384; one cat 16384;
 *   step 0: dk, dv, dq += (read 4 + 2, write 4) 3·10·2048 = 61440 and the
 *   fp32 dK/dV cat 16·2048 = 32768; step 1: the two half adds 2·10·1024 =
 *   20480, their cats 2·8·2048 = 32768, dq += 20480, the dK/dV cat 32768;
 *   end: dq.to(bf16) 6·2048 and the dK/dV's 6·4096: 36864.
 *   294912 B, kernels 3 + 2 + 1 + 4 + 6 + 2 = 18.
 *   comm: all-gather output 2 ranks · (K + V) 2·2048·2 = 16384 B; a dK/dV
 *   hop 2·2048·4 = 16384 B.
 * cp 4: T 16, Q 1024, L 64, three off-diagonal steps.
 *   forward: 8192 + 3·8192 + 6144 + 3·(38·1024 + 56·64 = 42496) + 6144 =
 *   172544 B, kernels 2 + 3 + 1 + 27 + 1 = 34.
 *   backward: 12288 + 8192 + 3·8192 + (30 + 16)·1024 + 3·52·1024 + 18·1024
 *   = 270336 B, kernels 3 + 2 + 3 + 4 + 18 + 2 = 32.
 *   comm: all-gather 4·2·1024·2 = 16384 B; a hop 2·1024·4 = 8192 B.
 * Exposed (px_cost_cp_ring), link 100 GB/s, 10 us, no curve:
 *   cp 2, attention 1e-5 s forward and backward (5e-6 a block): all-gather
 *   1e-5 + 0.5·16384/1e11 = 1.008192e-5, hop 1e-5 + 1.6384e-7 =
 *   1.016384e-5; forward 1.008192e-5 - 5e-6 = 5.08192e-6; backward
 *   5.08192e-6 + (1.016384e-5 - 5e-6) + 1.016384e-5 = 2.040960e-5.
 *   cp 4, attention 4e-5 s (1e-5 a block): all-gather 3e-5 + 0.75·16384/1e11
 *   = 3.012288e-5, hop 1e-5 + 8.192e-8; forward 2.012288e-5; backward
 *   2.012288e-5 + 3·8.192e-8 + 1.008192e-5 = 3.045056e-5.
 * Under --compile each step's merge is one fused kernel: read out (4 Q),
 * block_out (2 Q), lse and block_lse (8 L), write out (4 Q), lse (4 L):
 * cp 2: 10·2048 + 12·128 = 22016 for 84992, forward 16384 + 16384 + 12288 +
 * 22016 + 12288 = 79360 B, 2 + 1 + 1 + 1 + 1 = 6 kernels; cp 4: 3·(10·1024
 * + 12·64) = 33024, forward 8192 + 24576 + 6144 + 33024 + 6144 = 78080 B,
 * 2 + 3 + 1 + 3 + 1 = 10 kernels; the backward as eager.
 * The megatron-core stack keeps Transformer Engine's p2p ring: none of it. */
static void test_torchtitan_cp(void) {
  g_autoptr(PxModel) m = tiny_llama(64);
  PxPlan p;
  set_plan(&p, 1, 1, 1, 1, 1);
  p.precision = PX_PREC_BF16;
  p.stack = PX_STACK_TORCHTITAN;
  p.seq = 64;
  const struct { int cp; double fb, bb; int fk, bk; double ag, hop, att, fx, bx, cfb; int cfk; } want[] = {
    {2, 142336, 294912, 14, 18, 16384, 16384, 1e-5, 5.08192e-6, 2.040960e-5, 79360, 6},
    {4, 172544, 270336, 34, 32, 16384, 8192, 4e-5, 2.012288e-5, 3.045056e-5, 78080, 10},
  };
  PxLink l = {100e9, 10e-6, FALSE, NULL};
  for (gsize i = 0; i < G_N_ELEMENTS(want); i++) {
    p.cp = want[i].cp;
    PxTitanCp t;
    px_cost_titan_cp(m, &p, &t);
    g_assert_cmpfloat(t.fwd_bytes, ==, want[i].fb);
    g_assert_cmpfloat(t.bwd_bytes, ==, want[i].bb);
    g_assert_cmpint(t.fwd_kernels, ==, want[i].fk);
    g_assert_cmpint(t.bwd_kernels, ==, want[i].bk);
    g_assert_cmpfloat(t.kv_gather_bytes, ==, want[i].ag);
    g_assert_cmpfloat(t.dkv_bytes, ==, want[i].hop);
    double f, b;
    px_cost_cp_ring(m, &p, &l, want[i].att, want[i].att, &f, &b);
    g_assert_cmpfloat(REL(f, want[i].fx), <, 1e-9);
    g_assert_cmpfloat(REL(b, want[i].bx), <, 1e-9);
    p.compile = TRUE;
    px_cost_titan_cp(m, &p, &t);
    g_assert_cmpfloat(t.fwd_bytes, ==, want[i].cfb);
    g_assert_cmpint(t.fwd_kernels, ==, want[i].cfk);
    g_assert_cmpfloat(t.bwd_bytes, ==, want[i].bb);
    g_assert_cmpint(t.bwd_kernels, ==, want[i].bk);
    p.compile = FALSE;
  }
  p.stack = PX_STACK_MEGATRON_CORE;
  PxTitanCp t;
  px_cost_titan_cp(m, &p, &t);
  g_assert_cmpfloat(t.fwd_bytes + t.bwd_bytes + t.kv_gather_bytes + t.dkv_bytes, ==, 0.0);
  px_plan_clear(&p);
}

static void test_torchtitan_compile(void) {
  g_autoptr(PxModel) m = tiny_llama(32);
  g_assert_true(px_model_llama_block(&m->desc));
  const struct { gboolean compiled; int dir, tp; double bytes; int kernels; } want[] = {
    {FALSE, 0, 1, 286720, 28}, {FALSE, 1, 1, 585728, 48}, {TRUE, 0, 1, 131072, 11},
    {TRUE, 1, 1, 184320, 12},  {TRUE, 1, 2, 108544, 14},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(want); i++) {
    PxTitanKernels k;
    int n;
    px_cost_titan_block(&m->desc, want[i].compiled, want[i].dir, 32, 32.0 / want[i].tp, want[i].tp, 2, &k);
    g_assert_cmpfloat(titan_total(&k, &n), ==, want[i].bytes);
    g_assert_cmpint(n, ==, want[i].kernels);
  }
  /* the block's time: the same GEMMs and attention, the memory-bound bytes
   * above at the HBM rate (no calibrated classes, no kernel overhead) */
  PxCluster c = make_cluster(1, 1);
  c.kernel_overhead = 0;
  PxPlan p;
  set_plan(&p, 1, 1, 1, 1, 1);
  p.seq = 32;
  p.precision = PX_PREC_BF16;
  p.stack = PX_STACK_TORCHTITAN;
  const PxLayer *block = &m->layers[1];
  g_assert_cmpint(block->kind, ==, PX_LAYER_BLOCK);
  PxLink l = px_cost_tp_link(&c, &p, 0);
  PxLayerTimes eager, compiled;
  px_cost_layer_times(m, block, &c, &p, &l, &eager);
  p.compile = TRUE;
  px_cost_layer_times(m, block, &c, &p, &l, &compiled);
  double rate = px_cost_hbm_rate(&c);
  g_assert_cmpfloat(REL(eager.fwd - compiled.fwd, (286720.0 - 131072.0) / rate), <, 1e-9);
  g_assert_cmpfloat(REL(eager.bwd_input - compiled.bwd_input, (585728.0 - 184320.0) / rate), <, 1e-9);
  /* a GPT block keeps the class charges */
  g_autoptr(GError) err = NULL;
  g_autoptr(PxModel) gpt = px_model_load("gpt2-124m", &err);
  g_assert_no_error(err);
  g_assert_false(px_model_llama_block(&gpt->desc));
  px_plan_clear(&p);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/cost/collective/ring-allreduce", test_ring_allreduce);
  g_test_add_func("/cost/compute/calibrated-classes", test_calibrated_classes);
  g_test_add_func("/cost/compute/eager-layernorm", test_eager_layernorm);
  g_test_add_func("/cost/compute/class-rate", test_class_rate);
  g_test_add_func("/cost/compute/eager-layernorm-presets", test_eager_layernorm_presets);
  g_test_add_func("/cost/compute/unfused-attention-fa-paper", test_unfused_attention_fa_paper);
  g_test_add_func("/cost/compute/squared-relu", test_squared_relu);
  g_test_add_func("/cost/compute/megatron-core-cross-entropy", test_megatron_core_cross_entropy);
  g_test_add_func("/cost/cluster/calibrated-dtype", test_calibrated_dtype);
  g_test_add_func("/cost/collective/tree-for-small", test_tree_for_small);
  g_test_add_func("/cost/collective/busbw-curve", test_busbw_curve);
  g_test_add_func("/cost/compute/gemm-efficiency", test_gemm_efficiency);
  g_test_add_func("/cost/compute/gemm-k-overhead", test_gemm_k_overhead);
  g_test_add_func("/cost/compute/gemm-openxla-sm90", test_gemm_openxla_sm90);
  g_test_add_func("/cost/compute/block-gemm-bound", test_block_gemm_bound);
  g_test_add_func("/cost/compute/software-terms", test_software_terms);
  g_test_add_func("/cost/links/tp-nvlink-vs-network", test_tp_links);
  g_test_add_func("/cost/tp/sp-regather", test_sp_regather);
  g_test_add_func("/cost/table/dp-reduction-zero", test_dp_reduction);
  g_test_add_func("/cost/table/moe-bucket-shards", test_moe_bucket_shards);
  g_test_add_func("/cost/moe-squared-relu", test_moe_squared_relu);
  g_test_add_func("/cost/table/fsdp-shard-cast", test_fsdp_shard_cast);
  g_test_add_func("/cost/table/fsdp-units-latency", test_fsdp_units_latency);
  g_test_add_func("/cost/table/tied-and-p2p", test_tied_and_p2p);
  g_test_add_func("/cost/table/deepspeed-pipe-partition", test_deepspeed_pipe_partition);
  g_test_add_func("/cost/table/stacks", test_stacks);
  g_test_add_func("/cost/table/megatron-optimizer", test_megatron_optimizer);
  g_test_add_func("/cost/collective/param-gather-exposed", test_param_gather_exposed);
  g_test_add_func("/cost/table/megatron-param-gather", test_megatron_param_gather);
  g_test_add_func("/cost/flops/gpt3-megatron", test_gpt3_flops);
  g_test_add_func("/cost/table/ideal", test_ideal);
  g_test_add_func("/cost/cp-fp8/block", test_cp_fp8_block);
  g_test_add_func("/cost/cp/ring", test_cp_ring);
  g_test_add_func("/cost/tp-overlap/block", test_tp_overlap);
  g_test_add_func("/cost/table/refuses-missing-peak", test_refuses);
  g_test_add_func("/cost/stack/torchtitan", test_torchtitan_stack);
  g_test_add_func("/cost/stack/torchtitan-op-sac", test_torchtitan_op_sac);
  g_test_add_func("/cost/stack/torchtitan-compile", test_torchtitan_compile);
  g_test_add_func("/cost/stack/torchtitan-cp", test_torchtitan_cp);
  return g_test_run();
}
