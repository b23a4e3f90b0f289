/* test_plan.c — the rules of a plan, its files, rank layout and bubble. */
#include <glib.h>
#include <math.h>
#include <glib/gstdio.h>
#include <string.h>
#include "plan.h"

static PxModel *load(const char *name) {
  g_autoptr(GError) e = NULL;
  PxModel *m = px_model_load(name, &e);
  g_assert_no_error(e);
  return m;
}

typedef struct {
  const char *model;
  int dp, tp, pp, vpp, mbs, gbs, seq;
  PxScheduleKind schedule;
  int zero;
  PxOffload offload;
  gboolean sp;
  int nodes; /* 0: no cluster */
  const char *message;
} Rule;

static const Rule rules[] = {
  {"llama2-7b", 1, 3, 1, 1, 1, 0, 0, PX_SCHED_1F1B, 0, 0, FALSE, 0, "tp=3 does not divide 32 attention heads"},
  {"llama2-70b", 1, 16, 1, 1, 1, 0, 0, PX_SCHED_1F1B, 0, 0, FALSE, 0, "tp=16 does not divide 8 key-value heads"},
  {"gpt3-175b", 1, 1, 200, 1, 1, 0, 0, PX_SCHED_1F1B, 0, 0, FALSE, 0, "pp=200 exceeds 96 layers"},
  {"gpt3-175b", 8, 2, 3, 1, 1, 0, 0, PX_SCHED_1F1B, 0, 0, FALSE, 8, "dp·tp·pp=48 but the cluster has 64 GPUs (8 nodes × 8)"},
  {"gpt3-175b", 1, 1, 4, 2, 1, 6, 0, PX_SCHED_INTERLEAVED, 0, 0, FALSE, 0,
   "interleaved schedule needs micro-batches divisible by pp (m=6, pp=4)"},
  {"gpt2-124m", 8, 1, 1, 1, 3, 1000, 0, PX_SCHED_1F1B, 0, 0, FALSE, 0,
   "global batch 1000 is not divisible by micro-batch 3 × dp 8 = 24"},
  {"gpt2-124m", 1, 1, 1, 1, 1, 0, 2048, PX_SCHED_1F1B, 0, 0, FALSE, 0, "sequence 2048 exceeds the model's 1024 positions"},
  {"gpt2-124m", 2, 1, 1, 1, 1, 0, 0, PX_SCHED_1F1B, 2, PX_OFFLOAD_OPTIMIZER_PARAMS, FALSE, 0,
   "offloading parameters needs ZeRO stage 3 (stage is 2)"},
  {"gpt2-124m", 1, 1, 1, 1, 1, 0, 0, PX_SCHED_1F1B, 0, 0, TRUE, 0, "sequence parallelism needs tp > 1"},
  {"gpt2-124m", 1, 1, 2, 2, 1, 0, 0, PX_SCHED_1F1B, 0, 0, FALSE, 0, "vpp=2 needs the interleaved schedule (schedule is 1f1b)"},
  {"gpt2-124m", 1, 1, 1, 1, 1, 0, 0, PX_SCHED_1F1B, 4, 0, FALSE, 0, "ZeRO stage 4 is not 0, 1, 2 or 3"},
  {"gpt2-124m", 1, 1, 2, 3, 1, 0, 0, PX_SCHED_ZB_V, 0, 0, FALSE, 0, "zb-v runs two model chunks per rank in a V, not vpp=3"},
  {"gpt2-124m", 1, 1, 4, 1, 1, 6, 0, PX_SCHED_DUALPIPEV, 0, 0, FALSE, 0, "dualpipev needs at least 2·pp = 8 micro-batches (m=6)"},
  {"gpt2-124m", 1, 1, 8, 1, 1, 0, 0, PX_SCHED_ZB_V, 0, 0, FALSE, 0, "pp·vpp=8·2=16 model chunks exceed 12 layers"},
};

static void test_rule(gconstpointer data) {
  const Rule *r = data;
  g_autoptr(PxModel) m = load(r->model);
  g_autoptr(PxCluster) c = NULL;
  if (r->nodes) {
    c = px_cluster_load("dgx-a100-80g", NULL);
    c->nodes = r->nodes;
  }
  PxPlan p;
  px_plan_init(&p);
  p.dp = r->dp; p.tp = r->tp; p.pp = r->pp; p.vpp = r->vpp; p.mbs = r->mbs; p.gbs = r->gbs;
  p.seq = r->seq; p.schedule = r->schedule; p.zero = r->zero; p.offload = r->offload; p.seq_parallel = r->sp;
  g_autoptr(GError) e = NULL;
  g_assert_false(px_plan_validate(&p, m, c, &e));
  g_assert_error(e, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID);
  g_assert_cmpstr(e->message, ==, r->message);
  px_plan_clear(&p);
}

/* m = gbs / (mbs·dp); the seed's GPT-3 layout: 1536 / (1·8) = 192. */
static void test_valid(void) {
  g_autoptr(PxModel) m = load("gpt3-175b");
  g_autoptr(PxCluster) c = px_cluster_load("dgx-a100-80g", NULL);
  c->nodes = 8;
  PxPlan p;
  px_plan_init(&p);
  p.dp = 8; p.tp = 2; p.pp = 4; p.gbs = 1536; p.zero = 2;
  g_autoptr(GError) e = NULL;
  g_assert_true(px_plan_validate(&p, m, c, &e));
  g_assert_cmpint(p.m, ==, 192);
  g_assert_cmpint(p.seq, ==, 2048);
  /* 1F1B bubble (p-1)/(m+p-1) = 3/195 */
  g_assert_cmpfloat_with_epsilon(px_plan_bubble_fraction(&p), 3.0 / 195.0, 1e-15);
  px_plan_clear(&p);
}

/* Unequal passes, p = 4, m = 8, idle / step with busy m·v·(T_F+T_B+T_W):
 * ZB-H1 with T_F,T_B,T_W = 1,2,1: Qi et al.'s (p-1)(T_F+T_B-T_W) = 6 idle on
 * 8·4 = 32 busy: 6/38; with 1,1,2 (T_W > T_B, outside the paper's setting):
 * no closed form. ZB-H2 with 1,1.5,0.5: (p-1)(T_F+T_B-2T_W) = 4.5 on 8·3 = 24:
 * 4.5/28.5; with 1,1.2,0.7 the formula's 2.4 is below the last rank's wait
 * 3·T_F = 3: 3/(8·2.9 + 3) = 3/26.2. ZB-V (2 chunks) with 1,3,1: X = max(3, 4)
 * = 4, idle 4 + 2·4 = 12 on 8·2·5 = 80: 12/92. 1F1B's fraction is 3/11
 * whatever the costs; DualPipeV's (the DualPipe README's) needs T_F = T_B. */
static void test_bubble_costs(void) {
  PxPlan p;
  px_plan_init(&p);
  p.pp = 4; p.m = 8; p.schedule = PX_SCHED_ZB_H1;
  g_assert_cmpfloat_with_epsilon(px_plan_bubble_fraction_costs(&p, 1, 2, 1), 6.0 / 38.0, 1e-15);
  g_assert_true(isnan(px_plan_bubble_fraction_costs(&p, 1, 1, 2)));
  p.schedule = PX_SCHED_ZB_H2;
  g_assert_cmpfloat_with_epsilon(px_plan_bubble_fraction_costs(&p, 1, 1.5, 0.5), 4.5 / 28.5, 1e-15);
  g_assert_cmpfloat_with_epsilon(px_plan_bubble_fraction_costs(&p, 1, 1.2, 0.7), 3.0 / 26.2, 1e-15);
  p.schedule = PX_SCHED_1F1B;
  g_assert_cmpfloat_with_epsilon(px_plan_bubble_fraction_costs(&p, 2, 1, 3), 3.0 / 11.0, 1e-15);
  p.schedule = PX_SCHED_ZB_V; p.vpp = 2;
  g_assert_cmpfloat_with_epsilon(px_plan_bubble_fraction_costs(&p, 1, 3, 1), 12.0 / 92.0, 1e-15);
  g_assert_true(isnan(px_plan_bubble_fraction_costs(&p, 2, 1, 1))); /* T_B < T_F */
  p.schedule = PX_SCHED_DUALPIPEV;
  g_assert_true(isnan(px_plan_bubble_fraction_costs(&p, 1, 2, 1)));
  /* T_F = T_B = 1, T_W = 0.5: (p-1)(F&B + B - 3W) = 3·(2.5 + 1.5 - 1.5) = 7.5 on 8·2·2.5 = 40 */
  g_assert_cmpfloat_with_epsilon(px_plan_bubble_fraction_costs(&p, 1, 1, 0.5), 7.5 / 47.5, 1e-15);
  g_assert_cmpfloat_with_epsilon(px_plan_bubble_fraction_costs(&p, 1, 1, 1), 6.0 / 54.0, 1e-15);
  g_assert_true(isnan(px_plan_bubble_fraction_costs(&p, 0, 1, 1)));
  px_plan_clear(&p);
}

/* Analytic bubbles (idle / step): GPipe 4 stages 4 micro-batches 3/7;
 * interleaved p=4 v=2 m=8: 3/19; ZB-H1 p=4 m=4: 3/15; naive p=4: 3/4. */
static void test_bubble(void) {
  PxPlan p;
  px_plan_init(&p);
  p.pp = 4; p.m = 4; p.schedule = PX_SCHED_GPIPE;
  g_assert_cmpfloat_with_epsilon(px_plan_bubble_fraction(&p), 3.0 / 7.0, 1e-15);
  p.schedule = PX_SCHED_INTERLEAVED; p.vpp = 2; p.m = 8;
  g_assert_cmpfloat_with_epsilon(px_plan_bubble_fraction(&p), 3.0 / 19.0, 1e-15);
  p.schedule = PX_SCHED_ZB_H1; p.vpp = 1; p.m = 4;
  g_assert_cmpfloat_with_epsilon(px_plan_bubble_fraction(&p), 3.0 / 15.0, 1e-15);
  p.schedule = PX_SCHED_NAIVE;
  g_assert_cmpfloat_with_epsilon(px_plan_bubble_fraction(&p), 0.75, 1e-15);
  /* p = 4, m = 8: ZB-H2 3/27, ZB-V 3/51 (half-stage chunks), DualPipeV 6/54 */
  p.m = 8;
  p.schedule = PX_SCHED_ZB_H2;
  g_assert_cmpfloat_with_epsilon(px_plan_bubble_fraction(&p), 3.0 / 27.0, 1e-15);
  p.schedule = PX_SCHED_ZB_V;
  g_assert_cmpfloat_with_epsilon(px_plan_bubble_fraction(&p), 3.0 / 51.0, 1e-15);
  p.schedule = PX_SCHED_DUALPIPEV;
  g_assert_cmpfloat_with_epsilon(px_plan_bubble_fraction(&p), 6.0 / 54.0, 1e-15);
  /* where the formulas start to hold (p = 4) */
  g_assert_cmpint(px_plan_bubble_exact_from(&p), ==, 8);
  p.schedule = PX_SCHED_ZB_V;
  g_assert_cmpint(px_plan_bubble_exact_from(&p), ==, 7);
  p.schedule = PX_SCHED_ZB_H1;
  g_assert_cmpint(px_plan_bubble_exact_from(&p), ==, 4);
  p.schedule = PX_SCHED_1F1B;
  g_assert_cmpint(px_plan_bubble_exact_from(&p), ==, 1);
  px_plan_clear(&p);
}

/* The V schedules' names and their two chunks per rank. */
static void test_v_schedules(void) {
  PxScheduleKind k;
  g_assert_true(px_schedule_parse("zb-v", &k) && k == PX_SCHED_ZB_V);
  g_assert_true(px_schedule_parse("ZBV", &k) && k == PX_SCHED_ZB_V);
  g_assert_true(px_schedule_parse("dualpipev", &k) && k == PX_SCHED_DUALPIPEV);
  g_assert_true(px_schedule_parse("zb-h2", &k) && k == PX_SCHED_ZB_H2);
  g_assert_cmpstr(px_schedule_name(PX_SCHED_DUALPIPEV), ==, "dualpipev");
  g_autoptr(PxModel) m = load("gpt2-124m");
  PxPlan p;
  px_plan_init(&p);
  p.pp = 4;
  p.gbs = 8;
  p.schedule = PX_SCHED_DUALPIPEV;
  g_autoptr(GError) err = NULL;
  g_assert_true(px_plan_validate(&p, m, NULL, &err));
  g_assert_no_error(err);
  g_assert_cmpint(p.vpp, ==, 2);
  g_assert_cmpint(p.m, ==, 8);
  px_plan_clear(&p);
}

/* Rank order tp,dp,pp (Megatron: tp innermost): with dp 2, tp 2, pp 2,
 * rank = tp + 2·dp + 4·pp, so rank 5 = (dp 0, tp 1, pp 1) and rank 6 = (dp 1, tp 0, pp 1).
 * Order dp,tp,pp puts dp innermost: rank 1 = (dp 1, tp 0, pp 0). */
static void test_rank_order(void) {
  PxPlan p;
  px_plan_init(&p);
  p.dp = 2; p.tp = 2; p.pp = 2;
  int dp, tp, pp;
  px_plan_rank_coords(&p, 5, &dp, &tp, &pp);
  g_assert_cmpint(dp, ==, 0); g_assert_cmpint(tp, ==, 1); g_assert_cmpint(pp, ==, 1);
  px_plan_rank_coords(&p, 6, &dp, &tp, &pp);
  g_assert_cmpint(dp, ==, 1); g_assert_cmpint(tp, ==, 0); g_assert_cmpint(pp, ==, 1);
  g_assert_cmpint(px_plan_rank_of(&p, 1, 1, 1), ==, 7);
  g_assert_true(px_order_parse("dp,tp,pp", p.order));
  px_plan_rank_coords(&p, 1, &dp, &tp, &pp);
  g_assert_cmpint(dp, ==, 1); g_assert_cmpint(tp, ==, 0); g_assert_cmpint(pp, ==, 0);
  g_assert_false(px_order_parse("tp,tp,pp", p.order));
  px_plan_clear(&p);
}

static char *write_tmp(const char *name, const char *text) {
  char *path = g_build_filename(g_get_tmp_dir(), name, NULL);
  g_assert_true(g_file_set_contents(path, text, -1, NULL));
  return path;
}

/* --tp-overlap (Transformer Engine's userbuffers under Megatron-Core): needs
 * tp > 1, sequence parallelism (Megatron-LM's arguments.py asserts it), the
 * megatron-core stack and every TP group on one node (userbuffers run over
 * NVLink); the names: te, NeMo's configurations, their fp8 twins. */
static void test_tp_overlap_rules(void) {
  PxTpOverlap t;
  g_assert_true(px_tp_overlap_parse("te", &t) && t == PX_TPO_TE);
  g_assert_true(px_tp_overlap_parse("userbuffers_fp8_h100_h8192_tp4_mbs1_seqlen8192", &t) && t == PX_TPO_NEMO_H8192_TP4);
  g_assert_true(px_tp_overlap_parse("none", &t) && t == PX_TPO_NONE);
  g_assert_false(px_tp_overlap_parse("userbuffers_bf16_b200_h8192_tp2_mbs1_seqlen8192", &t));
  g_autoptr(PxModel) m = load("llama3-70b");
  g_autoptr(PxCluster) c = px_cluster_load("dgx-h100", NULL);
  g_assert_nonnull(c);
  c->nodes = 2;
  struct { int tp, dp; gboolean sp; PxStack stack; const char *order, *msg; } cases[] = {
    {1, 16, FALSE, PX_STACK_MEGATRON_CORE, "tp,dp,pp", "--tp-overlap te needs tp > 1"},
    {4, 4, FALSE, PX_STACK_MEGATRON_CORE, "tp,dp,pp", "--tp-overlap te needs sequence parallelism (--sp)"},
    {4, 4, TRUE, PX_STACK_PARALLAX, "tp,dp,pp", "it needs --stack megatron-core (stack is parallax)"},
    {4, 4, TRUE, PX_STACK_MEGATRON_CORE, "dp,tp,pp", "needs every TP group on one node"},
    {4, 4, TRUE, PX_STACK_MEGATRON_CORE, "tp,dp,pp", NULL},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    PxPlan p;
    px_plan_init(&p);
    p.tp = cases[i].tp; p.dp = cases[i].dp; p.seq_parallel = cases[i].sp; p.stack = cases[i].stack;
    p.seq = 8192;
    p.tp_overlap = PX_TPO_TE;
    g_assert_true(px_order_parse(cases[i].order, p.order));
    g_autoptr(GError) e = NULL;
    gboolean ok = px_plan_validate(&p, m, c, &e);
    if (!cases[i].msg) {
      g_assert_no_error(e);
      g_assert_true(ok);
    } else {
      g_assert_false(ok);
      g_assert_error(e, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID);
      g_assert_nonnull(strstr(e->message, cases[i].msg));
    }
    px_plan_clear(&p);
  }
}

/* --compile is torchtitan's torch.compile per TransformerBlock: refused
 * under any other stack, and for a block that is not torchtitan's Llama
 * (the compiled kernels are counted for that block only). */
static void test_compile_rules(void) {
  g_autoptr(PxModel) llama = load("llama3-8b");
  g_autoptr(PxModel) gpt = load("gpt2-124m");
  struct { const PxModel *m; PxStack stack; const char *msg; } cases[] = {
    {llama, PX_STACK_FSDP, "--compile is torch.compile per TransformerBlock as torchtitan applies it: it needs "
                           "--stack torchtitan (stack is fsdp)"},
    {llama, PX_STACK_PARALLAX, "it needs --stack torchtitan (stack is parallax)"},
    {gpt, PX_STACK_TORCHTITAN, "torchtitan's Llama block (RMSNorm, RoPE, SwiGLU, no biases, dropout or experts); "
                               "gpt2-124m is not one"},
    {llama, PX_STACK_TORCHTITAN, NULL},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    PxPlan p;
    px_plan_init(&p);
    p.stack = cases[i].stack;
    p.seq = 1024;
    p.compile = TRUE;
    g_autoptr(GError) e = NULL;
    gboolean ok = px_plan_validate(&p, cases[i].m, NULL, &e);
    if (!cases[i].msg) {
      g_assert_no_error(e);
      g_assert_true(ok);
    } else {
      g_assert_false(ok);
      g_assert_error(e, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID);
      g_assert_nonnull(strstr(e->message, cases[i].msg));
    }
    px_plan_clear(&p);
  }
}

static void test_ini_roundtrip(void) {
  PxPlan a, b;
  px_plan_init(&a);
  a.dp = 4; a.tp = 2; a.pp = 8; a.vpp = 3; a.mbs = 2; a.gbs = 512; a.seq = 4096;
  a.schedule = PX_SCHED_INTERLEAVED; a.zero = 3; a.offload = PX_OFFLOAD_OPTIMIZER_PARAMS;
  a.ckpt = PX_CKPT_FULL; a.ckpt_interval = 2; a.seq_parallel = TRUE; a.precision = PX_PREC_FP16;
  g_assert_true(px_order_parse("dp,tp,pp", a.order));
  g_free(a.partition);
  a.partition = g_strdup("type:transformer");
  a.workspace_bytes = 3e9;
  a.bucket_bytes = 2e8;
  a.stack = PX_STACK_MEGATRON_CORE;
  a.attention = PX_ATTN_FLASH1;
  a.grad_reduce_bytes = 4;
  a.tp_overlap = PX_TPO_NEMO_H16384_TP8;
  g_autofree char *ini = px_plan_to_ini(&a);
  g_autofree char *path = write_tmp("px-test-plan.ini", ini);
  px_plan_init(&b);
  g_autoptr(GError) e = NULL;
  g_assert_true(px_plan_load_ini(&b, path, &e));
  g_assert_no_error(e);
  g_assert_cmpint(b.dp, ==, 4); g_assert_cmpint(b.tp, ==, 2); g_assert_cmpint(b.pp, ==, 8);
  g_assert_cmpint(b.vpp, ==, 3); g_assert_cmpint(b.mbs, ==, 2); g_assert_cmpint(b.gbs, ==, 512);
  g_assert_cmpint(b.seq, ==, 4096); g_assert_cmpint(b.schedule, ==, PX_SCHED_INTERLEAVED);
  g_assert_cmpint(b.zero, ==, 3); g_assert_cmpint(b.offload, ==, PX_OFFLOAD_OPTIMIZER_PARAMS);
  g_assert_cmpint(b.ckpt, ==, PX_CKPT_FULL); g_assert_cmpint(b.ckpt_interval, ==, 2);
  g_assert_true(b.seq_parallel); g_assert_cmpint(b.precision, ==, PX_PREC_FP16);
  g_assert_cmpint(b.order[0], ==, PX_AXIS_DP); g_assert_cmpint(b.order[1], ==, PX_AXIS_TP);
  g_assert_cmpstr(b.partition, ==, "type:transformer");
  g_assert_cmpint(b.stack, ==, PX_STACK_MEGATRON_CORE);
  g_assert_cmpint(b.attention, ==, PX_ATTN_FLASH1);
  g_assert_cmpint(b.grad_reduce_bytes, ==, 4);
  g_assert_cmpint(b.tp_overlap, ==, PX_TPO_NEMO_H16384_TP8);
  g_assert_cmpfloat(b.workspace_bytes, ==, 3e9);
  g_assert_cmpfloat(b.bucket_bytes, ==, 2e8);
  g_unlink(path);
  px_plan_clear(&a);
  px_plan_clear(&b);
}

/* Every key of the loader's table is accepted and read: a file giving that
 * key alone (a value other than the default, chosen here by hand) loads and
 * changes the plan (as px_plan_to_ini writes it) or the file's targets. A
 * key added to the table without a value here fails the test; so does one
 * the loader accepts but ignores. Misspelt keys are refused with one line
 * naming the key. */
static void test_ini_keys(void) {
  static const struct { const char *key, *value; } vals[] = {
    {"model", "gpt2-124m"}, {"cluster", "dgx-h100"}, {"nodes", "4"}, {"dp", "2"}, {"tp", "2"}, {"pp", "2"},
    {"vpp", "2"}, {"mbs", "2"}, {"gbs", "64"}, {"seq", "512"}, {"zero", "2"}, {"ckpt_interval", "2"},
    {"grad_reduce_bytes", "2"}, {"cp", "2"}, {"ep", "2"}, {"etp", "2"}, {"imbalance", "1.5"},
    {"schedule", "gpipe"}, {"ckpt", "full"}, {"offload", "optimizer"}, {"precision", "fp16"},
    {"stack", "fsdp"}, {"attention", "unfused"}, {"tp_overlap", "te"}, {"order", "dp,tp,pp"},
    {"seq_parallel", "true"}, {"partition", "uniform"}, {"workspace_gb", "3"}, {"bucket_bytes", "1e8"},
    {"compile", "true"},
  };
  PxPlan def;
  px_plan_init(&def);
  g_autofree char *def_ini = px_plan_to_ini(&def);
  guint n = 0;
  for (const char *key; (key = px_plan_ini_key(n)); n++) {
    const char *value = NULL;
    for (gsize j = 0; j < G_N_ELEMENTS(vals); j++)
      if (!strcmp(vals[j].key, key)) value = vals[j].value;
    if (!value) g_error("[plan] %s: no value in test_ini_keys", key);
    g_autofree char *text = g_strdup_printf("[plan]\n%s = %s\n", key, value);
    g_autofree char *path = write_tmp("px-test-plan-key.ini", text);
    PxPlan p;
    px_plan_init(&p);
    PxPlanIniTargets t;
    g_autoptr(GError) e = NULL;
    g_assert_true(px_plan_load_ini_targets(&p, path, &t, &e));
    g_assert_no_error(e);
    g_autofree char *ini = px_plan_to_ini(&p);
    gboolean target = !strcmp(key, "model") || !strcmp(key, "cluster") || !strcmp(key, "nodes");
    if (target) {
      g_assert_cmpstr(ini, ==, def_ini);
      if (!strcmp(key, "model")) g_assert_cmpstr(t.model, ==, "gpt2-124m");
      if (!strcmp(key, "cluster")) g_assert_cmpstr(t.cluster, ==, "dgx-h100");
      g_assert_cmpint(t.nodes, ==, !strcmp(key, "nodes") ? 4 : -1);
    } else {
      if (!strcmp(ini, def_ini)) g_error("[plan] %s = %s was accepted but changed nothing", key, value);
      g_assert_null(t.model);
      g_assert_null(t.cluster);
      g_assert_cmpint(t.nodes, ==, -1);
    }
    g_assert_cmpint(t.has_dp, ==, !strcmp(key, "dp"));
    px_plan_ini_targets_clear(&t);
    g_unlink(path);
    px_plan_clear(&p);
  }
  g_assert_cmpuint(n, ==, G_N_ELEMENTS(vals));
  /* misspelt: the file is refused in one line naming the key */
  static const char *const bad[] = {"tensor_parallel", "micro_batch", "workspace_bytes", "nodess", "Model"};
  for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
    g_autofree char *text = g_strdup_printf("[plan]\ndp = 2\n%s = 2\n", bad[i]);
    g_autofree char *path = write_tmp("px-test-plan-key.ini", text);
    PxPlan p;
    px_plan_init(&p);
    g_autoptr(GError) e = NULL;
    g_assert_false(px_plan_load_ini(&p, path, &e));
    g_assert_error(e, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE);
    g_autofree char *want = g_strdup_printf("%s: [plan] %s is not a plan key", path, bad[i]);
    g_assert_cmpstr(e->message, ==, want);
    g_unlink(path);
    px_plan_clear(&p);
  }
  px_plan_clear(&def);
}

typedef struct {
  const char *name, *text;
  int code;
  const char *contains;
} BadFile;

static const BadFile bad_ini[] = {
  {"trunc.ini", "[plan\ndp = 2\n", PX_PLAN_ERROR_PARSE, "trunc.ini"},
  {"type.ini", "[plan]\ndp = two\n", PX_PLAN_ERROR_PARSE, "dp = 'two' is not an integer"},
  {"neg.ini", "[plan]\ntp = -2\n", PX_PLAN_ERROR_PARSE, "tp = -2 must be at least 1"},
  {"sched.ini", "[plan]\nschedule = pipedream\n", PX_PLAN_ERROR_PARSE, "schedule = 'pipedream' is not one of"},
  {"nogroup.ini", "[model]\nlayers = 2\n", PX_PLAN_ERROR_PARSE, "no [plan] group"},
  {"bool.ini", "[plan]\nseq_parallel = maybe\n", PX_PLAN_ERROR_PARSE, "is not true or false"},
};

static void test_bad_ini(gconstpointer data) {
  const BadFile *b = data;
  g_autofree char *path = write_tmp(b->name, b->text);
  PxPlan p;
  px_plan_init(&p);
  g_autoptr(GError) e = NULL;
  g_assert_false(px_plan_load_ini(&p, path, &e));
  g_assert_error(e, PX_PLAN_ERROR, b->code);
  g_assert_nonnull(strstr(e->message, b->contains));
  g_unlink(path);
  px_plan_clear(&p);
}

/* DeepSpeed: train_batch_size = micro × accumulation × dp. */
static void test_deepspeed(void) {
  g_autofree char *path = g_build_filename(PX_DATA_DIR, "configs", "deepspeed", "zero2-offload.json", NULL);
  PxPlan p;
  px_plan_init(&p);
  p.dp = 8;
  g_autoptr(GError) e = NULL;
  g_assert_true(px_plan_load_deepspeed(&p, path, NULL, &e));
  g_assert_no_error(e);
  g_assert_cmpint(p.gbs, ==, 256); /* 4 × 8 × 8 */
  g_assert_cmpint(p.mbs, ==, 4);
  g_assert_cmpint(p.zero, ==, 2);
  g_assert_cmpint(p.offload, ==, PX_OFFLOAD_OPTIMIZER);
  g_assert_cmpint(p.precision, ==, PX_PREC_BF16);
  g_assert_cmpint(p.ckpt, ==, PX_CKPT_FULL);
  /* the same file with dp 4 breaks the batch rule */
  p.dp = 4;
  g_assert_false(px_plan_load_deepspeed(&p, path, NULL, &e));
  g_assert_error(e, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID);
  g_assert_nonnull(strstr(e->message, "train_batch_size 256 != micro 4 × accumulation 8 × dp 4 = 128"));
  g_clear_error(&e);
  g_autofree char *bad = write_tmp("ds-bad.json", "{\"train_batch_size\": \"many\"}");
  g_assert_false(px_plan_load_deepspeed(&p, bad, NULL, &e));
  g_assert_error(e, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE);
  g_clear_error(&e);
  g_autofree char *trunc = write_tmp("ds-trunc.json", "{\"train_batch_size\": 8, \"zero_optim");
  g_assert_false(px_plan_load_deepspeed(&p, trunc, NULL, &e));
  g_assert_error(e, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE);
  g_unlink(bad);
  g_unlink(trunc);
  px_plan_clear(&p);
}

/* Unknown ds_config keys are refused, naming the key and the nearest known
 * one (keys from DeepSpeed v0.16.5's source, see ds_known_keys in plan.c);
 * a full ds_config assembled from DeepSpeed's own docs still loads. */
static void test_deepspeed_unknown_keys(void) {
  g_autofree char *full = g_build_filename(PX_DATA_DIR, "configs", "deepspeed", "deepspeed-docs-zero3-full.json", NULL);
  PxPlan p;
  px_plan_init(&p);
  p.dp = 8;
  g_autoptr(GError) e = NULL;
  g_assert_true(px_plan_load_deepspeed(&p, full, NULL, &e));
  g_assert_no_error(e);
  g_assert_cmpint(p.gbs, ==, 256); /* micro 4 × accumulation 8 × dp 8 */
  g_assert_cmpint(p.mbs, ==, 4);
  g_assert_cmpint(p.zero, ==, 3);
  g_assert_cmpint(p.precision, ==, PX_PREC_FP16);
  g_assert_cmpint(p.offload, ==, PX_OFFLOAD_OPTIMIZER_PARAMS);
  g_assert_cmpint(p.ckpt, ==, PX_CKPT_FULL);
  g_assert_cmpfloat(p.bucket_bytes, ==, 1e7 * 2); /* reduce_bucket_size 1e7 fp16 elements */
  static const struct {
    const char *name, *text, *message;
  } cases[] = {
      /* the British spelling left ZeRO-0 */
      {"ds-uk.json", "{\"train_batch_size\": 64, \"zero_optimisation\": {\"stage\": 3}}",
       "unknown ds_config key \"zero_optimisation\" (did you mean 'zero_optimization'?)"},
      /* the same letters without '_' */
      {"ds-camel.json", "{\"train_batch_size\": 64, \"ZeroOptimization\": {\"stage\": 3}}",
       "unknown ds_config key \"ZeroOptimization\" (did you mean 'zero_optimization'?)"},
      /* a key inside zero_optimization, nothing close */
      {"ds-zkey.json", "{\"train_batch_size\": 64, \"zero_optimization\": {\"stage\": 3, \"shard_everything\": true}}",
       "unknown ds_config key \"zero_optimization.shard_everything\""},
      /* a stage-3 alias one letter off */
      {"ds-alias.json", "{\"train_batch_size\": 64, \"zero_optimization\": {\"stage\": 3, \"stage3_max_live_parameter\": 1}}",
       "unknown ds_config key \"zero_optimization.stage3_max_live_parameter\" (did you mean "
       "'zero_optimization.stage3_max_live_parameters'?)"},
      /* inside an offload object */
      {"ds-off.json",
       "{\"train_batch_size\": 64, \"zero_optimization\": {\"stage\": 3, \"offload_param\": {\"devise\": \"cpu\"}}}",
       "unknown ds_config key \"zero_optimization.offload_param.devise\" (did you mean "
       "'zero_optimization.offload_param.device'?)"},
      {"ds-bf16.json", "{\"train_batch_size\": 64, \"bf16\": {\"enable\": true}}",
       "unknown ds_config key \"bf16.enable\" (did you mean 'bf16.enabled'?)"},
      {"ds-pipe.json", "{\"train_batch_size\": 64, \"pipeline\": {\"activation_checkpoint_intervals\": 1}}",
       "unknown ds_config key \"pipeline.activation_checkpoint_intervals\" (did you mean "
       "'pipeline.activation_checkpoint_interval'?)"},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autofree char *path = write_tmp(cases[i].name, cases[i].text);
    g_assert_false(px_plan_load_deepspeed(&p, path, NULL, &e));
    g_assert_error(e, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE);
    g_autofree char *want = g_strdup_printf("%s: %s", path, cases[i].message);
    g_assert_cmpstr(e->message, ==, want);
    g_clear_error(&e);
    g_unlink(path);
  }
  /* a '_' key is a comment; optimizer params are not checked inside */
  g_autofree char *ok = write_tmp("ds-ok.json", "{\"_comment\": \"x\", \"train_batch_size\": 64, "
                                                "\"optimizer\": {\"type\": \"Lion\", \"params\": {\"anything\": 1}}}");
  g_assert_true(px_plan_load_deepspeed(&p, ok, NULL, &e));
  g_assert_no_error(e);
  g_unlink(ok);
  px_plan_clear(&p);
}

/* The Hugging Face Trainer's ds_config: "auto" batch sizes, precision and
 * bucket come from the command line or are refused, naming the key; the
 * batch rule is checked after the command line's values. */
static void test_deepspeed_auto(void) {
  g_autofree char *path = g_build_filename(PX_DATA_DIR, "configs", "deepspeed", "hf-trainer-zero3-auto.json", NULL);
  PxPlan p;
  px_plan_init(&p);
  p.dp = 8;
  g_autoptr(GError) e = NULL;
  /* nothing given: the first "auto" met is named */
  g_assert_false(px_plan_load_deepspeed(&p, path, NULL, &e));
  g_assert_nonnull(strstr(e->message, "\"train_batch_size\" is \"auto\": give --gbs or --gbs-tokens"));
  g_clear_error(&e);
  PxDsOverrides cli = {.gbs = 64, .hidden = 4096};
  g_assert_false(px_plan_load_deepspeed(&p, path, &cli, &e));
  g_assert_nonnull(strstr(e->message, "\"train_micro_batch_size_per_gpu\" is \"auto\": give --mbs"));
  g_clear_error(&e);
  /* bf16 "auto" is not fp32: it needs --precision */
  cli.mbs = 2;
  g_assert_false(px_plan_load_deepspeed(&p, path, &cli, &e));
  g_assert_nonnull(strstr(e->message, "bf16.enabled is \"auto\": give --precision"));
  g_clear_error(&e);
  cli.precision_given = TRUE;
  p.precision = PX_PREC_BF16;
  g_assert_true(px_plan_load_deepspeed(&p, path, &cli, &e));
  g_assert_no_error(e);
  g_assert_cmpint(p.gbs, ==, 64);
  g_assert_cmpint(p.mbs, ==, 2);      /* accumulation "auto" = 64 / (2 × 8) = 4 */
  g_assert_cmpint(p.zero, ==, 3);
  g_assert_cmpint(p.precision, ==, PX_PREC_BF16);
  g_assert_cmpfloat(p.bucket_bytes, ==, 4096.0 * 4096 * 2); /* h² elements of bf16 */
  /* after the command line: --mbs 3 with gbs 64 and dp 8 breaks the rule */
  cli.mbs = 3;
  g_assert_false(px_plan_load_deepspeed(&p, path, &cli, &e));
  g_assert_nonnull(strstr(e->message, "train_batch_size 64 is not divisible by micro 3 × dp 8 (after the command line"));
  g_clear_error(&e);
  /* the seed file: --mbs 2 with its train_batch_size 256 and accumulation 8
   * at dp 8 gives 2 × 8 × 8 = 128 ≠ 256: refused, not silently m = 16 */
  g_autofree char *seed = g_build_filename(PX_DATA_DIR, "configs", "deepspeed", "zero2-offload.json", NULL);
  PxDsOverrides mbs_only = {.mbs = 2};
  g_assert_false(px_plan_load_deepspeed(&p, seed, &mbs_only, &e));
  g_assert_nonnull(strstr(e->message, "train_batch_size 256 != micro 2 × accumulation 8 × dp 8 = 128 (after the command line"));
  g_clear_error(&e);
  /* --mbs 2 --gbs 128 agrees with the file's accumulation 8 */
  PxDsOverrides both = {.mbs = 2, .gbs = 128};
  g_assert_true(px_plan_load_deepspeed(&p, seed, &both, &e));
  g_assert_cmpint(p.gbs, ==, 128);
  px_plan_clear(&p);
}

/* Context parallelism sits inside DP as Megatron-Core's default order
 * "tp-cp-ep-dp-pp" places it (parallel_state.py initialize_model_parallel):
 * global rank = t + tp·c + tp·cp·d + tp·cp·dp·s for TP rank t, CP rank c,
 * DP rank d, pipeline rank s. Here the data coordinate is d·cp + c. */
static void test_cp_grid(void) {
  PxPlan p;
  px_plan_init(&p);
  p.tp = 2; p.cp = 4; p.dp = 3; p.pp = 2;
  g_assert_cmpint(px_plan_world(&p), ==, 48);
  g_assert_cmpint(px_plan_data_ranks(&p), ==, 12);
  for (int s = 0; s < 2; s++)
    for (int d = 0; d < 3; d++)
      for (int c = 0; c < 4; c++)
        for (int t = 0; t < 2; t++) {
          int megatron = t + 2 * c + 2 * 4 * d + 2 * 4 * 3 * s;
          g_assert_cmpint(px_plan_rank_of(&p, d * 4 + c, t, s), ==, megatron);
          int dd, tt, ss;
          px_plan_rank_coords(&p, megatron, &dd, &tt, &ss);
          g_assert_cmpint(dd, ==, d * 4 + c);
          g_assert_cmpint(tt, ==, t);
          g_assert_cmpint(ss, ==, s);
        }
  px_plan_clear(&p);
}

/* The rules context parallelism and FP8 add, each refused with its sentence. */
static void test_cp_fp8_rules(void) {
  g_autoptr(PxModel) m = load("llama3-8b");
  g_autoptr(PxCluster) a100 = px_cluster_load("dgx-a100-80g", NULL);
  g_autoptr(PxCluster) h100 = px_cluster_load("dgx-h100", NULL);
  g_assert_nonnull(a100);
  g_assert_nonnull(h100);
  struct { int cp, seq, tp; gboolean sp; PxPrecision prec; PxAttention attn; const char *msg; } cases[] = {
    {3, 8188, 1, FALSE, PX_PREC_BF16, PX_ATTN_DEFAULT,
     "context parallelism cuts the sequence into 2·cp = 6 chunks: 8188 tokens are not divisible by 6"},
    {2, 8192, 1, FALSE, PX_PREC_FP32, PX_ATTN_DEFAULT, "needs bf16, fp16 or fp8, not fp32"},
    {2, 8192, 1, FALSE, PX_PREC_BF16, PX_ATTN_UNFUSED, "not --attention unfused"},
    {4, 8184, 4, TRUE, PX_PREC_BF16, PX_ATTN_DEFAULT,
     "sequence parallelism needs tp=4 to divide the 2046 tokens per CP rank (seq 8184 / cp 4)"},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    PxPlan p;
    px_plan_init(&p);
    p.cp = cases[i].cp; p.seq = cases[i].seq; p.tp = cases[i].tp; p.seq_parallel = cases[i].sp;
    p.precision = cases[i].prec; p.attention = cases[i].attn;
    g_autoptr(GError) e = NULL;
    g_assert_false(px_plan_validate(&p, m, NULL, &e));
    g_assert_error(e, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID);
    g_assert_nonnull(strstr(e->message, cases[i].msg));
    px_plan_clear(&p);
  }
  /* cp counts in the GPUs: dp 2 × cp 4 = one 8-GPU node */
  PxPlan p;
  px_plan_init(&p);
  p.dp = 2; p.cp = 4; p.seq = 8192;
  g_assert_true(px_plan_validate(&p, m, h100, NULL));
  /* FP8: H100 yes, A100 (no FP8 tensor cores) refused with a sentence */
  p.precision = PX_PREC_FP8;
  g_assert_true(px_plan_validate(&p, m, h100, NULL));
  g_autoptr(GError) e = NULL;
  g_assert_false(px_plan_validate(&p, m, a100, &e));
  g_assert_error(e, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID);
  g_assert_nonnull(strstr(e->message, "--precision fp8 needs FP8 tensor cores, which the A100-SXM4-80GB"));
  g_assert_cmpfloat(h100->peak_fp8, ==, 1979e12);
  g_assert_cmpfloat(a100->peak_fp8, ==, 0);
  PxPrecision prec;
  g_assert_true(px_precision_parse("fp8", &prec));
  g_assert_cmpint(prec, ==, PX_PREC_FP8);
  px_plan_clear(&p);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  for (gsize i = 0; i < G_N_ELEMENTS(rules); i++) {
    g_autofree char *path = g_strdup_printf("/plan/rules/%zu", i);
    g_test_add_data_func(path, &rules[i], test_rule);
  }
  for (gsize i = 0; i < G_N_ELEMENTS(bad_ini); i++) {
    g_autofree char *path = g_strdup_printf("/plan/ini/bad/%s", bad_ini[i].name);
    g_test_add_data_func(path, &bad_ini[i], test_bad_ini);
  }
  g_test_add_func("/plan/valid/gpt3-seed", test_valid);
  g_test_add_func("/plan/bubble", test_bubble);
  g_test_add_func("/plan/bubble/unequal-costs", test_bubble_costs);
  g_test_add_func("/plan/v-schedules", test_v_schedules);
  g_test_add_func("/plan/rank-order", test_rank_order);
  g_test_add_func("/plan/cp/grid-megatron-order", test_cp_grid);
  g_test_add_func("/plan/cp-fp8/rules", test_cp_fp8_rules);
  g_test_add_func("/plan/ini/roundtrip", test_ini_roundtrip);
  g_test_add_func("/plan/ini/keys", test_ini_keys);
  g_test_add_func("/plan/tp-overlap/rules", test_tp_overlap_rules);
  g_test_add_func("/plan/compile/rules", test_compile_rules);
  g_test_add_func("/plan/deepspeed", test_deepspeed);
  g_test_add_func("/plan/deepspeed-auto", test_deepspeed_auto);
  g_test_add_func("/plan/deepspeed-unknown-keys", test_deepspeed_unknown_keys);
  return g_test_run();
}
