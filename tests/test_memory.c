/* test_memory.c — model states (ZeRO paper), activations (Korthikanti et al.
 * 2022), in-flight micro-batches per schedule, fits or not. */
#include <glib.h>
#include <math.h>
#include "memory.h"
#include "config.h"

static PxModel *load(const char *name) {
  g_autoptr(GError) e = NULL;
  PxModel *m = px_model_load(name, &e);
  g_assert_no_error(e);
  return m;
}

/* Build partition + memory for a validated plan. */
static PxMemory *memory_of(const PxModel *m, PxPlan *p, const PxCluster *c) {
  g_autoptr(GError) e = NULL;
  g_assert_true(px_plan_validate(p, m, c, &e));
  g_assert_no_error(e);
  g_autoptr(PxPartition) part = px_partition_new(m, p, NULL, &e);
  g_assert_no_error(e);
  return px_memory_new(m, p, part, c);
}

/* The seed's table: "7B" in fp32 with Adam: 28 GB weights, 28 GB gradients,
 * 56 GB optimizer (GB = 1e9 B): 4 + 4 + 8 bytes per parameter. */
static void test_seed_7b_fp32(void) {
  g_autoptr(PxModel) m = load("7b");
  g_assert_cmpint(m->params, ==, 7000559616);
  PxPlan p;
  px_plan_init(&p);
  p.precision = PX_PREC_FP32;
  g_autoptr(PxMemory) mem = memory_of(m, &p, NULL);
  g_assert_cmpfloat(mem->stages[0].weights, ==, 4.0 * 7000559616);
  g_assert_cmpfloat(mem->stages[0].gradients, ==, 4.0 * 7000559616);
  g_assert_cmpfloat(mem->stages[0].optimizer, ==, 8.0 * 7000559616);
  g_assert_cmpfloat(round(mem->stages[0].weights / 1e8) / 10, ==, 28.0);
  g_assert_cmpfloat(round(mem->stages[0].optimizer / 1e8) / 10, ==, 56.0);
  px_plan_clear(&p);
}

/* Mixed-precision Adam: 2 + 2 + 12 bytes/param; ZeRO-1 divides the 12 by dp,
 * ZeRO-2 the 2+12, ZeRO-3 all 16 (Rajbhandari et al. 2020, fig. 1). */
static void test_zero_stages(void) {
  g_autoptr(PxModel) m = load("gpt2-124m");
  const double P = 124439808, dp = 8;
  const double expect[4][3] = {
    {2 * P, 2 * P, 12 * P}, {2 * P, 2 * P, 12 * P / dp}, {2 * P, 2 * P / dp, 12 * P / dp},
    {2 * P / dp, 2 * P / dp, 12 * P / dp}};
  for (int z = 0; z <= 3; z++) {
    PxPlan p;
    px_plan_init(&p);
    p.dp = 8;
    p.zero = z;
    g_autoptr(PxMemory) mem = memory_of(m, &p, NULL);
    g_assert_cmpfloat_with_epsilon(mem->stages[0].weights, expect[z][0], 1e-3);
    g_assert_cmpfloat_with_epsilon(mem->stages[0].gradients, expect[z][1], 1e-3);
    g_assert_cmpfloat_with_epsilon(mem->stages[0].optimizer, expect[z][2], 1e-3);
    px_plan_clear(&p);
  }
}

/* The fsdp stack (torch 2.1 FSDP FULL_SHARD, llm-foundry's wrapping: each
 * block a unit, the rest in the root; torch/distributed/fsdp/_runtime_utils.py)
 * on GPT-2 124M, dp 8, bf16, by hand: a block has 12h² + 13h = 7,087,872
 * parameters (h 768: c_attn 768·2304 + 2304, c_proj 768·768 + 768, two
 * LayerNorms 4·768, c_fc 768·3072 + 3072, c_proj 3072·768 + 768), the root
 * the rest, wte 50257·768 + wpe 1024·768 + ln_f 2·768 = 39,385,344
 * (124,439,808 in all). Buffers: two gathered blocks and the gathered root
 * (not freed after the forward under FULL_SHARD), 2 B each; the root's
 * unsharded bf16 gradient, held through the backward; one block's bf16
 * unsharded gradient and, with Composer's DEFAULT (reduce dtype fp32), its
 * fp32 copy (_post_backward_hook's grad.to(reduce_dtype)): 2·(2·7,087,872
 * + 39,385,344) + 2·39,385,344 + (2 + 4)·7,087,872 = 228,420,096 B; with
 * PURE (bf16 reduction, grad_reduce_bytes 2) no copy: 200,068,608 B. The
 * parallax stack's ZeRO-3 keeps its accounting: a DDP bucket of all the
 * gradients (fewer than 5e8) and two copies of the largest layer, the
 * embedding (wte + wpe, 39,383,808; ln_f is a layer of its own):
 * 2·124,439,808 + 2·2·39,383,808 = 406,414,848 B. */
static void test_fsdp_buffers(void) {
  g_autoptr(PxModel) m = load("gpt2-124m");
  g_assert_cmpint(m->params, ==, 124439808);
  const double block = 7087872, root = 39385344;
  g_assert_cmpfloat(12 * block + root, ==, 124439808);
  const struct {
    PxStack stack;
    int reduce;
    double buffers;
  } cases[] = {
    {PX_STACK_FSDP, 0, 228420096}, {PX_STACK_FSDP, 2, 200068608}, {PX_STACK_PARALLAX, 0, 406414848}};
  g_assert_cmpfloat(2 * (2 * block + root) + 2 * root + 6 * block, ==, cases[0].buffers);
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    PxPlan p;
    px_plan_init(&p);
    p.dp = 8;
    p.zero = 3;
    p.precision = PX_PREC_BF16;
    p.stack = cases[i].stack;
    p.grad_reduce_bytes = cases[i].reduce;
    g_autoptr(PxMemory) mem = memory_of(m, &p, NULL);
    g_assert_cmpfloat(mem->stages[0].buffers, ==, cases[i].buffers);
    px_plan_clear(&p);
  }
}

/* The torchtitan stack's FSDP2 (apply_fsdp: fully_shard on tok_embeddings,
 * each block and [norm, output]; MixedPrecisionPolicy(bf16, reduce fp32)):
 * foreach_reduce (torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py)
 * copies a unit's unsharded bf16 gradients into a reduce-scatter input of
 * reduce_dtype, held until the next unit's post_backward: one unit's bf16
 * gradients and one fp32 copy, (2 + 4) B x the largest unit, in place of a
 * DDP bucket. Llama 3 8B by hand, dp 8, bf16, ZeRO-3: a block is
 * 4096·(4096 + 2·1024) + 4096·4096 + 3·4096·14336 + 2·4096 = 218,112,000
 * parameters, the embedding and the output 128256·4096 = 525,336,576 each,
 * the [norm, output] unit 525,340,672 (8,030,261,248 in all). Buffers: two
 * gathered copies of the largest layer, 2·2·525,336,576, and (2 + 4)·
 * 525,340,672 = 5,253,390,336 B (the copy alone 4·525,340,672 =
 * 2,101,362,688 B); with bf16 reduction (grad_reduce_bytes 2) the input is
 * still allocated, in bf16: 2·2·525,336,576 + 4·525,340,672 =
 * 4,202,708,992 B. The same block with a 32000-token vocabulary (output
 * 131,072,000 < block): the block is the largest unit, 2·2·218,112,000 +
 * (2 + 4)·218,112,000 = 2,181,120,000 B (its fp32 copy 872,448,000). The
 * parallax stack's ZeRO-3 keeps a 5e8-element bf16 bucket instead:
 * 1e9 + 2·2·525,336,576 = 3,101,346,304 B. dp 1: no FSDP, no buffers. */
static void test_torchtitan_buffers(void) {
  g_autoptr(PxModel) m = load("llama3-8b");
  g_assert_cmpint(m->params, ==, 8030261248);
  const double block = 218112000, out = 525336576, head = out + 4096;
  g_assert_cmpfloat(32 * block + 2 * out + 4096, ==, 8030261248);
  PxModelDesc d = m->desc;
  d.vocab = 32000;
  g_autoptr(GError) err = NULL;
  g_autoptr(PxModel) small = px_model_new(&d, &err);
  g_assert_no_error(err);
  const struct {
    const PxModel *m;
    PxStack stack;
    int dp, reduce;
    double buffers;
  } cases[] = {
    {m, PX_STACK_TORCHTITAN, 8, 0, 5253390336.0},
    {m, PX_STACK_TORCHTITAN, 8, 2, 4202708992.0},
    {small, PX_STACK_TORCHTITAN, 8, 0, 2181120000.0},
    {m, PX_STACK_PARALLAX, 8, 0, 3101346304.0},
    {m, PX_STACK_TORCHTITAN, 1, 0, 0.0},
  };
  g_assert_cmpfloat(2 * 2 * out + 6 * head, ==, cases[0].buffers);
  g_assert_cmpfloat(2 * 2 * out + 4 * head, ==, cases[1].buffers);
  g_assert_cmpfloat(10 * block, ==, cases[2].buffers);
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    PxPlan p;
    px_plan_init(&p);
    p.dp = cases[i].dp;
    p.zero = cases[i].dp > 1 ? 3 : 0;
    p.precision = PX_PREC_BF16;
    p.stack = cases[i].stack;
    p.grad_reduce_bytes = cases[i].reduce;
    g_autoptr(PxMemory) mem = memory_of(cases[i].m, &p, NULL);
    g_assert_cmpfloat(mem->stages[0].buffers, ==, cases[i].buffers);
    px_plan_clear(&p);
  }
}

/* torchtitan's FSDP2 under pipeline parallelism: torch.distributed.
 * pipelining runs every micro-batch's backward with
 * set_requires_gradient_sync(False) and reduces after the last, each
 * FSDPParam keeping its unsharded gradient in the reduce dtype meanwhile
 * (to_accumulated_grad_if_needed). Llama 3 8B, pp 2 (16 blocks a stage),
 * dp 8, ZeRO-2 (reshard_after_forward off under PP), bf16: stage 0 holds the
 * embedding and 16 blocks, 525,336,576 + 16·218,112,000 = 4,015,128,576
 * parameters, stage 1 16 blocks, the final norm and the output,
 * 4,015,132,672; their gradients 4 B each, unsharded: 16,060,514,304 and
 * 16,060,530,688 B (2 B each with bf16 reduction, grad_reduce_bytes 2). The
 * parallax stack's ZeRO-2 keeps 2 B per parameter of the dp shard:
 * 2·4,015,128,576/8 = 1,003,782,144 and 2·4,015,132,672/8 = 1,003,783,168. */
static void test_torchtitan_pp_gradients(void) {
  g_autoptr(PxModel) m = load("llama3-8b");
  const double s0 = 525336576.0 + 16 * 218112000.0, s1 = 16 * 218112000.0 + 4096 + 525336576.0;
  const struct {
    PxStack stack;
    int reduce;
    double g0, g1;
  } cases[] = {
    {PX_STACK_TORCHTITAN, 0, 16060514304.0, 16060530688.0},
    {PX_STACK_TORCHTITAN, 2, 8030257152.0, 8030265344.0},
    {PX_STACK_PARALLAX, 0, 1003782144.0, 1003783168.0},
  };
  g_assert_cmpfloat(4 * s0, ==, cases[0].g0);
  g_assert_cmpfloat(4 * s1, ==, cases[0].g1);
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    PxPlan p;
    px_plan_init(&p);
    p.pp = 2;
    p.dp = 8;
    p.mbs = 1;
    p.gbs = 16;
    p.zero = 2;
    p.precision = PX_PREC_BF16;
    p.stack = cases[i].stack;
    p.grad_reduce_bytes = cases[i].reduce;
    g_free(p.partition);
    p.partition = g_strdup("type:TransformerLayer");
    g_autoptr(PxMemory) mem = memory_of(m, &p, NULL);
    g_assert_cmpfloat(mem->stages[0].params, ==, s0);
    g_assert_cmpfloat(mem->stages[0].gradients, ==, cases[i].g0);
    g_assert_cmpfloat(mem->stages[1].gradients, ==, cases[i].g1);
    px_plan_clear(&p);
  }
}

/* Composer 0.16.4's Trainer._train_microbatch keeps the model's output
 * (state.outputs: the logits in the compute dtype) from the forward until
 * the training metrics after loss.backward(), so under full recompute the
 * recomputed block sits on top of them: the fsdp stack's activation peak
 * exceeds the parallax stack's by exactly E·s·b·V = 2·256·1·512 B when the
 * recomputed block is larger than the head's other activations (a block
 * much wider than the vocabulary: h 1024, V 512, s 256: a block keeps
 * about 34·s·h = 8.9 MB, the head 4·s·V + 2·s·h = 1.0 MB). */
static void test_fsdp_held_logits(void) {
  PxModelDesc d = {.name = "wide", .layers = 2, .hidden = 1024, .heads = 8, .kv_heads = 8, .ffn = 4096,
                   .vocab = 512, .max_seq = 256, .ffn_kind = PX_FFN_GELU, .norm = PX_NORM_LAYERNORM,
                   .pos = PX_POS_LEARNED, .bias = TRUE, .tied = TRUE, .dropout = FALSE};
  g_autoptr(GError) e = NULL;
  g_autoptr(PxModel) m = px_model_new(&d, &e);
  g_assert_no_error(e);
  double act[2];
  const PxStack stacks[2] = {PX_STACK_PARALLAX, PX_STACK_FSDP};
  for (int i = 0; i < 2; i++) {
    PxPlan p;
    px_plan_init(&p);
    p.dp = 8;
    p.zero = 3;
    p.seq = 256;
    p.mbs = 1;
    p.precision = PX_PREC_BF16;
    p.ckpt = PX_CKPT_FULL;
    p.stack = stacks[i];
    p.attention = PX_ATTN_FLASH;
    g_autoptr(PxMemory) mem = memory_of(m, &p, NULL);
    act[i] = mem->stages[0].activations;
    px_plan_clear(&p);
  }
  g_assert_cmpfloat(act[1] - act[0], ==, 2.0 * 256 * 1 * 512);
}

/* ZeRO-Offload (Ren et al. 2021, section 4.1): the GPU keeps the fp16
 * parameters (2M) and gradients, the CPU the fp16 gradients (2M) and the
 * fp32 parameters, momentum and variance (12M): 14 B per parameter of the
 * shard in host memory, none of the optimizer's on the GPU. GPT-2 124M,
 * dp 8, ZeRO-2. With parameter offload (ZeRO-3) the 2 B parameter shard
 * moves to the host too. */
static void test_offload(void) {
  g_autoptr(PxModel) m = load("gpt2-124m");
  const double P = 124439808, dp = 8;
  for (int k = 0; k < 2; k++) {
    PxPlan p;
    px_plan_init(&p);
    p.dp = 8;
    p.zero = k ? 3 : 2;
    p.offload = k ? PX_OFFLOAD_OPTIMIZER_PARAMS : PX_OFFLOAD_OPTIMIZER;
    g_autoptr(PxMemory) mem = memory_of(m, &p, NULL);
    g_assert_cmpfloat_with_epsilon(mem->stages[0].optimizer, 0, 1e-9);
    g_assert_cmpfloat_with_epsilon(mem->stages[0].weights, k ? 0 : 2 * P, 1e-3);
    g_assert_cmpfloat_with_epsilon(mem->stages[0].gradients, 2 * P / dp, 1e-3);
    g_assert_cmpfloat_with_epsilon(mem->stages[0].host, (k ? 16 : 14) * P / dp, 1e-3);
    px_plan_clear(&p);
  }
}

/* Korthikanti et al. 2022 on the GPT-3 175B configuration (s 2048, h 12288,
 * a 96, b 1, 16-bit): per-layer activation bytes. */
typedef struct {
  int tp;
  gboolean sp;
  PxCheckpoint ckpt;
  const char *what;
} ActCase;

static double korthikanti(const ActCase *c) {
  const double s = 2048, b = 1, h = 12288, a = 96, t = c->tp;
  const double sbh = s * b * h;
  if (c->ckpt == PX_CKPT_FULL) return 2 * sbh / (c->sp ? t : 1);
  double attn = c->ckpt == PX_CKPT_SELECTIVE ? 0 : 5 * a * s / (h * t);
  if (t == 1) return sbh * (34 + attn);
  if (!c->sp) return sbh * (10 + 24 / t + attn);
  return sbh * (34 / t + attn);
}

static const ActCase act_cases[] = {
  {1, FALSE, PX_CKPT_NONE, "none"},           {8, FALSE, PX_CKPT_NONE, "tp8"},
  {8, TRUE, PX_CKPT_NONE, "tp8-sp"},          {8, TRUE, PX_CKPT_SELECTIVE, "tp8-sp-selective"},
  {8, FALSE, PX_CKPT_SELECTIVE, "tp8-selective"}, {1, FALSE, PX_CKPT_FULL, "full"},
  {8, TRUE, PX_CKPT_FULL, "tp8-sp-full"},
};

static void test_korthikanti(gconstpointer data) {
  const ActCase *c = data;
  g_autoptr(PxModel) m = load("gpt3-175b");
  PxPlan p;
  px_plan_init(&p);
  p.tp = c->tp;
  p.seq_parallel = c->sp;
  p.ckpt = c->ckpt;
  g_assert_true(px_plan_validate(&p, m, NULL, NULL));
  double got = px_layer_activation_bytes(m, &m->layers[10], &p);
  g_assert_cmpfloat_with_epsilon(got / korthikanti(c), 1.0, 1e-12);
  px_plan_clear(&p);
}

/* Flash attention keeps no s x s scores: Korthikanti's counts without the
 * 5as/h term, whatever the checkpointing (GPT-3 175B, tp 8 with and without
 * SP: sbh(10 + 24/t), sbh·34/t); a stack that defaults to flash does the same. */
static void test_flash_drops_scores(void) {
  g_autoptr(PxModel) m = load("gpt3-175b");
  for (int sp = 0; sp <= 1; sp++) {
    PxPlan p;
    px_plan_init(&p);
    p.tp = 8;
    p.seq_parallel = sp;
    p.attention = PX_ATTN_FLASH;
    g_assert_true(px_plan_validate(&p, m, NULL, NULL));
    ActCase selective = {8, sp, PX_CKPT_SELECTIVE, ""};
    double want = korthikanti(&selective);
    g_assert_cmpfloat_with_epsilon(px_layer_activation_bytes(m, &m->layers[10], &p) / want, 1.0, 1e-12);
    p.attention = PX_ATTN_DEFAULT;
    p.stack = PX_STACK_MEGATRON_CORE;
    g_assert_cmpfloat_with_epsilon(px_layer_activation_bytes(m, &m->layers[10], &p) / want, 1.0, 1e-12);
    px_plan_clear(&p);
  }
}

/* In flight: GPipe m; 1F1B p - stage; interleaved rank 0 p·(1 + (p-1)/(p·v));
 * ZB-H1 micro-batches holding something (to their weight pass): rank 1 of 4
 * runs F0 F1 F2 B0 F3 B1 W0 (Qi et al.'s handcrafted order, W held back
 * one slot per rank), so four hold activations or W's share at F3. */
static void test_in_flight(void) {
  PxPlan p;
  px_plan_init(&p);
  p.pp = 4; p.m = 8; p.schedule = PX_SCHED_1F1B;
  for (int r = 0; r < 4; r++) g_assert_cmpfloat(px_memory_in_flight(&p, r), ==, 4 - r);
  p.m = 2;
  g_assert_cmpfloat(px_memory_in_flight(&p, 0), ==, 2);
  p.schedule = PX_SCHED_GPIPE; p.m = 8;
  g_assert_cmpfloat(px_memory_in_flight(&p, 3), ==, 8);
  p.schedule = PX_SCHED_ZB_H1;
  g_assert_cmpfloat(px_memory_in_flight(&p, 1), ==, 4);
  g_assert_cmpfloat(px_memory_in_flight(&p, 0), ==, 4);
  g_assert_cmpfloat(px_memory_in_flight(&p, 3), ==, 4);
  p.schedule = PX_SCHED_INTERLEAVED; p.vpp = 2;
  g_assert_cmpfloat_with_epsilon(px_memory_in_flight(&p, 0), 4 * (1 + 3.0 / 8), 1e-12);
  p.vpp = 4; p.pp = 8; p.m = 16;
  g_assert_cmpfloat_with_epsilon(px_memory_in_flight(&p, 0), 8 * (1 + 7.0 / 32), 1e-12);
  px_plan_clear(&p);
}

/* Interleaved, p 2, v 2, m 4, chunk activations a0 = 1, a1 = 10 (chunk 1
 * holds the LM head). Megatron's order: forwards run chunks 0,0,1,1,0,0,1,1,
 * backwards 1,1,0,0,1,1,0,0. Rank 1 warms up with (2-1-1)·2 + (2-1)·2 = 2
 * forwards; after its third forward it holds chunks {0,0,1} = 12, after
 * (F3, B0) {0,0,1} = 12, then {0,0,0} = 3: peak 12 (equal shares would say
 * 3/2 · 11 = 16.5). Rank 0 warms up with 4: {0,0,1,1,0} = 23, then 14, 14,
 * and {0,0,0,1,1} = 23: peak 23. */
static void test_interleaved_weighted(void) {
  PxPlan p;
  px_plan_init(&p);
  p.pp = 2; p.vpp = 2; p.m = 4; p.schedule = PX_SCHED_INTERLEAVED;
  const double act[2] = {1, 10};
  g_assert_cmpfloat(px_memory_peak_activations(&p, 1, act, NULL), ==, 12);
  g_assert_cmpfloat(px_memory_peak_activations(&p, 0, act, NULL), ==, 23);
  /* equal chunks of 5: rank 0's peak holds the 5 chunk-forwards {0,0,1,1,0}
   * = 25, rank 1's the 3 of {0,0,1} = 15 (Korthikanti §4.2.3: rank 0 holds
   * p·(1 + (p-1)/(p·v)) = 2.5 micro-batches of its 10) */
  const double eq[2] = {5, 5};
  g_assert_cmpfloat(px_memory_peak_activations(&p, 0, eq, NULL), ==, 25);
  g_assert_cmpfloat(px_memory_peak_activations(&p, 1, eq, NULL), ==, 15);
  g_assert_cmpfloat(px_memory_in_flight(&p, 0), ==, 2.5);
  px_plan_clear(&p);
}

/* 1F1B's first stage holds p micro-batches of L/p layers: L layers' worth,
 * whatever p. GPT-3 175B, s 2048, b 1, tp 8 with SP, bf16: one block is
 * Korthikanti's sbh(34/t + 5as/(ht)) = 2048·12288·(4.25 + 10) = 358,612,992 B;
 * stage 0 holds 96 of them plus p embedding dropout masks of sbh/t = 3,145,728 B. */
static void test_first_stage_whatever_p(void) {
  g_autoptr(PxModel) m = load("gpt3-175b");
  for (int pp = 4; pp <= 8; pp += 4) {
    PxPlan p;
    px_plan_init(&p);
    p.pp = pp; p.gbs = 64; p.tp = 8; p.seq_parallel = TRUE;
    g_free(p.partition);
    p.partition = g_strdup("type:TransformerLayer");
    g_autoptr(PxMemory) mem = memory_of(m, &p, NULL);
    const PxStageMemory *s = &mem->stages[0];
    g_assert_cmpfloat(s->activation_per_layer, ==, 358612992.0);
    g_assert_cmpfloat(s->activations, ==, 96 * 358612992.0 + pp * 3145728.0);
    px_plan_clear(&p);
  }
}

/* ZB-H1, p 4, m 8, by hand from Qi et al.'s handcrafted order (the program's,
 * test_schedule.c): stage 0 runs F0 F1 F2 F3 B0 W0 F4 B1 W1 ..., stage 3
 * F0 B0 F1 B1 F2 B2 F3 B3 W0 F4 B4 W1 ... (its W held back three slots). F
 * holds a micro-batch's a bytes, B frees a - w, W frees w. Stage 0: after
 * F3 4a, after B0 3a + w: peak max(4a, 3a + w). Stage 3: after F3 a + 3w,
 * after B3 4w: peak max(a + 3w, 4w). a 10, w 4: 40 and 22; full recompute
 * (W keeps more than F did) a 2, w 7: 13 and 28. */
static void test_zb_h1_by_hand(void) {
  PxPlan p;
  px_plan_init(&p);
  p.pp = 4; p.m = 8; p.schedule = PX_SCHED_ZB_H1;
  double a = 10, w = 4;
  g_assert_cmpfloat(px_memory_peak_activations(&p, 0, &a, &w), ==, 40);
  g_assert_cmpfloat(px_memory_peak_activations(&p, 3, &a, &w), ==, 22);
  a = 2, w = 7;
  g_assert_cmpfloat(px_memory_peak_activations(&p, 0, &a, &w), ==, 13);
  g_assert_cmpfloat(px_memory_peak_activations(&p, 3, &a, &w), ==, 28);
  px_plan_clear(&p);
  /* the planner on GPT-3 175B, pp 4, tp 8 + SP, m 8, 24 blocks a stage: a
   * block keeps sbh(34/t + 5as/(ht)) = 358,612,992 B and W reads (8 +
   * 24/t)·sbh = 11·sbh = 276,824,064 B of it (test_activations). Stage 0
   * adds the embedding's dropout mask sbh/t; stage 3 the final norm's input
   * and the head's (2sbh/t each), fp32 logits 4sb·6283 and, for W, the head's
   * gathered input 2sbh and its logits' gradient 2sb·6283. */
  g_autoptr(PxModel) m = load("gpt3-175b");
  px_plan_init(&p);
  p.pp = 4; p.gbs = 8; p.tp = 8; p.seq_parallel = TRUE; p.schedule = PX_SCHED_ZB_H1;
  g_free(p.partition);
  p.partition = g_strdup("type:TransformerLayer");
  g_autoptr(PxMemory) mem = memory_of(m, &p, NULL);
  const double sbh = 2048.0 * 12288, blk = 358612992.0, wblk = 11 * sbh;
  g_assert_cmpfloat(mem->stages[0].activation_per_layer, ==, blk);
  double a0 = 24 * blk + sbh / 8;
  double a3 = 24 * blk + 2 * (2 * sbh / 8) + 4 * 2048.0 * 6283, w3 = 24 * wblk + 2 * sbh + 2 * 2048.0 * 6283;
  g_assert_cmpfloat(mem->stages[0].activations, ==, 4 * a0);
  g_assert_cmpfloat(mem->stages[3].activations, ==, a3 + 3 * w3);
  /* no stage above 1F1B's peak, p micro-batches on stage 0 (Qi et al. §3.1) */
  g_assert_cmpfloat(mem->stages[3].activations, <, 4 * a0);
  px_plan_clear(&p);
}

/* head_dim apart from h/a, a sliding window and a parallel block change the
 * block's activations by hand-counted terms (bf16, s 4096, b 1, no TP, no
 * dropout). Gemma-7B: q = 4096 (16 × 256), kv = 4096, h = 3072, f = 24576:
 * rep 2·2sbh·2 = 8sbh; split 2s(q+kv) + 2s·kv + 2s·q = 2s·16384; gated MLP
 * 3·2·s·f; softmax 2·a·s² — for s = 4096. */
static void test_block_variants(void) {
  g_autofree char *gemma_path = g_build_filename(px_data_dir(), "configs", "hf", "gemma-7b.json", NULL);
  g_autoptr(PxModel) g = px_model_load(gemma_path, NULL);
  g_assert_nonnull(g);
  PxPlan p;
  px_plan_init(&p);
  p.seq = 4096;
  double s = 4096, h = 3072, f = 24576, a = 16;
  double expect = 8 * s * h + 2 * s * 16384 + 6 * s * f + 2 * a * s * s;
  g_assert_cmpfloat(px_layer_activation_bytes(g, &g->layers[1], &p), ==, expect);
  /* Mistral-7B at s 8192 with its 4096 window: the softmax is a·s·4096 */
  g_autofree char *mistral_path = g_build_filename(px_data_dir(), "configs", "hf", "mistral-7b.json", NULL);
  g_autoptr(PxModel) mi = px_model_load(mistral_path, NULL);
  p.seq = 8192;
  s = 8192, h = 4096;
  double kv = 1024, mf = 14336;
  expect = 8 * s * h + 2 * s * (h + kv) + 2 * s * kv + 2 * s * h + 6 * s * mf + 2 * 32 * s * 4096;
  g_assert_cmpfloat(px_layer_activation_bytes(mi, &mi->layers[1], &p), ==, expect);
  /* GPT-NeoX-20B's parallel block: the MLP's norm reads the block input the
   * attention's norm holds: one 2sbh less than sequential (s 2048, dropout 0) */
  g_autofree char *neox_path = g_build_filename(px_data_dir(), "configs", "hf", "gpt-neox-20b.json", NULL);
  g_autoptr(PxModel) nx = px_model_load(neox_path, NULL);
  p.seq = 2048;
  s = 2048, h = 6144;
  expect = 6 * s * h + 2 * s * 2 * h + 2 * s * h + 2 * s * h + 4 * s * 4 * h + 2 * 64 * s * s;
  g_assert_cmpfloat(px_layer_activation_bytes(nx, &nx->layers[1], &p), ==, expect);
  px_plan_clear(&p);
}

/* The seed's GPT-3 layout does not fit on A100-80GB: stage 0 holds a quarter
 * of the model over tp 2 in bf16, ~44 GB of weights alone, plus ZeRO-2 states
 * and 4 micro-batches of 25 layers' activations. */
static void test_seed_gpt3_does_not_fit(void) {
  g_autoptr(PxModel) m = load("gpt3-175b");
  g_autoptr(PxCluster) c = px_cluster_load("dgx-a100-80g", NULL);
  c->nodes = 8;
  PxPlan p;
  px_plan_init(&p);
  p.dp = 8; p.tp = 2; p.pp = 4; p.zero = 2; p.gbs = 1536;
  g_autoptr(PxMemory) mem = memory_of(m, &p, c);
  g_assert_false(mem->fits);
  g_assert_cmpfloat(mem->capacity, ==, 81920.0 * 1048576);
  const PxStageMemory *s = &mem->stages[0];
  /* weights: 2 B × stage-0 params per TP rank; ZeRO-2 shards the other 14 B by dp 8 */
  g_assert_cmpfloat_with_epsilon(s->gradients / s->weights, 1.0 / 8, 1e-12);
  g_assert_cmpfloat_with_epsilon(s->optimizer / s->weights, 6.0 / 8, 1e-12);
  g_assert_cmpfloat(s->weights, >, 40e9);
  g_assert_cmpfloat(mem->peak, >, mem->capacity);
  px_plan_clear(&p);
}

/* Context parallelism (Megatron's context-parallel doc: activation memory
 * divided by cp at equal tokens per rank). GPT-3 175B, s 2048, b 1, tp 8 with
 * SP: each CP rank holds s/cp tokens, and ring attention runs flash blocks,
 * so a block keeps Korthikanti's sbh(34/t + 5as/(ht)) at s/cp without the
 * 5as/(ht) scores: (s/cp)·b·h·34/8; the same as one rank holding a sequence
 * of s/cp. The ring's K/V buffers: max(cp, 4) blocks of K and V of the
 * rank's tokens, 2·2·(s/cp)·b·h/t bytes each (GPT-3 has kv = h): with pp 1
 * and dp 1 they are the stage's only buffers. */
static void test_cp_activations(void) {
  g_autoptr(PxModel) m = load("gpt3-175b");
  const double s = 2048, b = 1, h = 12288, t = 8;
  const double kv_buffers[] = {0, 0, 4 * 2 * 2 * 1024 * h / t, 0, 4 * 2 * 2 * 512 * h / t};
  g_assert_cmpfloat(kv_buffers[2], ==, 25165824.0);
  for (int cp = 2; cp <= 4; cp *= 2) {
    PxPlan p;
    px_plan_init(&p);
    p.tp = 8; p.seq_parallel = TRUE; p.cp = cp; p.seq = 2048;
    g_autoptr(PxMemory) mem = memory_of(m, &p, NULL);
    double want = s / cp * b * h * 34 / t;
    g_assert_cmpfloat_with_epsilon(px_layer_activation_bytes(m, &m->layers[10], &p) / want, 1.0, 1e-12);
    g_assert_cmpfloat(mem->stages[0].activation_per_layer, ==, want);
    g_assert_cmpfloat(mem->stages[0].cp_kv_buffers, ==, kv_buffers[cp]);
    g_assert_cmpfloat(mem->stages[0].buffers, ==, kv_buffers[cp]);
    /* the executor's ring in bf16 (its stack, 2-byte activations) adds its
     * fp32 accumulator of the merged output, 4 B × (s/cp)·b × a·head_dim/t
     * (a·head_dim = h), to the buffers; none in f32, none in the planner's
     * (Transformer Engine's) stacks */
    double acc = 4 * s / cp * b * h / t;
    g_assert_cmpfloat(px_memory_cp_out_acc(m, &p, 2), ==, acc);
    g_assert_cmpfloat(px_memory_cp_out_acc(m, &p, 4), ==, 0);
    g_assert_cmpfloat(mem->stages[0].cp_out_acc, ==, 0);
    {
      g_autoptr(PxPartition) part = px_partition_new(m, &p, NULL, NULL);
      PxActOptions ex = {PX_ACT_STACK_EXEC, 2};
      g_autoptr(PxMemory) me = px_memory_new_act(m, &p, part, NULL, &ex);
      g_assert_cmpfloat(me->stages[0].cp_out_acc, ==, acc);
      g_assert_cmpfloat(me->stages[0].buffers, ==, kv_buffers[cp] + acc);
      g_assert_cmpfloat(me->stages[0].act_buffers, ==, kv_buffers[cp] + acc);
      PxActOptions ex32 = {PX_ACT_STACK_EXEC, 4};
      g_autoptr(PxMemory) m32 = px_memory_new_act(m, &p, part, NULL, &ex32);
      g_assert_cmpfloat(m32->stages[0].cp_out_acc, ==, 0);
    }
    /* equal tokens per rank: one rank (flash) holding a sequence of s/cp */
    PxPlan q;
    px_plan_init(&q);
    q.tp = 8; q.seq_parallel = TRUE; q.seq = 2048 / cp; q.attention = PX_ATTN_FLASH;
    g_autoptr(PxMemory) mq = memory_of(m, &q, NULL);
    g_assert_cmpfloat(mem->stages[0].activations, ==, mq->stages[0].activations);
    px_plan_clear(&p);
    px_plan_clear(&q);
  }
  /* cp 16: the forward keeps all 16 K/V blocks */
  PxPlan p;
  px_plan_init(&p);
  p.tp = 8; p.seq_parallel = TRUE; p.cp = 16; p.seq = 2048;
  g_assert_true(px_plan_validate(&p, m, NULL, NULL));
  g_assert_cmpfloat(px_memory_cp_kv_buffers(m, &p), ==, 16 * 2 * 2 * 128 * h / t);
  px_plan_clear(&p);
}

/* torch's context_parallel under --stack torchtitan (torch _attention.py
 * at 0123248a, _templated_ring_attention / _backward, torchtitan's
 * "allgather" rotate method; px_cost_titan_cp's fwd_buffers / bwd_buffers),
 * by hand. tiny Llama: h 64, 4 heads, 2 KV heads (head_dim 16, kv 32 wide,
 * repeat_kv makes K and V 64 wide), bf16 (E 2), one sequence of 64 tokens,
 * tp 1. Q = (64/cp)·64 elements each of the rank's q, k and v.
 * cp 2: Q = 2048. All-gather output cp·2·E·Q = 2·2·2·2048 = 16384.
 *   forward step 0: k, v contiguous 2·2·2048 = 8192, the gathered cat 8192,
 *   block out 4096, its fp32 copy 8192: 28672 (14 Q); a later step: block
 *   out 4096, fp32 copy, merger _out, out - block_out, the product, 8192
 *   each: 36864 (18 Q). Forward 16384 + 36864 = 53248.
 *   backward at step 1's flash backward return: K/V cat 8192, old and new
 *   dq, dk, dv 6·4096 = 24576, fp32 grad_query 8192, grad_key + grad_value
 *   16384, their fp32 cat 16384, the permute's output 16384: 90112 (44 Q).
 *   Backward 16384 + 90112 = 106496: the larger, the ring's buffers.
 * cp 4: Q = 1024, all-gather 4·2·2·1024 = 16384; forward 16384 + 18·1024 =
 *   34816; backward 16384 + 44·1024 = 61440.
 * The megatron-core stack keeps Transformer Engine's p2p ring: max(cp, 4) = 4
 * K/V blocks of the rank's 64/cp tokens at the 2 KV heads, 4·2·2·(64/cp)·32:
 * 16384 at cp 2, 8192 at cp 4 (the value before this stack had its own).
 * With pp 1, dp 1 and no ZeRO the ring's buffers are the stage's only ones. */
static void test_torchtitan_cp_buffers(void) {
  PxModelDesc d = {.name = (char *)"tiny-llama", .layers = 2, .hidden = 64, .heads = 4, .kv_heads = 2,
                   .ffn = 128, .vocab = 100, .max_seq = 64, .ffn_kind = PX_FFN_SWIGLU, .norm = PX_NORM_RMSNORM,
                   .pos = PX_POS_ROPE, .bias = FALSE, .tied = FALSE, .dropout = FALSE};
  g_autoptr(GError) err = NULL;
  g_autoptr(PxModel) m = px_model_new(&d, &err);
  g_assert_no_error(err);
  const struct { int cp; double titan, te; } want[] = {{2, 106496, 16384}, {4, 61440, 8192}};
  for (guint i = 0; i < G_N_ELEMENTS(want); i++) {
    for (int titan = 0; titan <= 1; titan++) {
      PxPlan p;
      px_plan_init(&p);
      p.precision = PX_PREC_BF16;
      p.stack = titan ? PX_STACK_TORCHTITAN : PX_STACK_MEGATRON_CORE;
      p.seq = 64;
      p.cp = want[i].cp;
      double w = titan ? want[i].titan : want[i].te;
      g_assert_cmpfloat(px_memory_cp_kv_buffers(m, &p), ==, w);
      g_autoptr(PxMemory) mem = memory_of(m, &p, NULL);
      g_assert_cmpfloat(mem->stages[0].cp_kv_buffers, ==, w);
      /* TE's blocks in `buffers`; torch's ring in the activations' transient */
      g_assert_cmpfloat(mem->stages[0].buffers, ==, titan ? 0 : w);
      px_plan_clear(&p);
    }
  }
  /* Llama 3 8B, torchtitan, full AC, cp 2 (s 8192, 4096 tokens per rank):
   * the ring, 2·2EQ + (8E + 28)Q = 52Q with Q = 4096 · 4096 = 872,415,232 B,
   * is alive inside one block's backward, beside the recomputed block (well
   * under 1 GB), not beside the loss's two fp32 T × V gradients, 8 · 4096 ·
   * 128256 = 4,202,692,608 B, which set the peak: the activations are those
   * of cp 1 (/memory/torchtitan/op-sac-loss, 14,889,779,200 B) at half the
   * tokens, every term per token: 7,444,889,600 B, no ring added */
  g_autoptr(PxModel) l8 = load("llama3-8b");
  PxPlan f;
  px_plan_init(&f);
  f.stack = PX_STACK_TORCHTITAN;
  f.dp = 4;
  f.cp = 2;
  f.zero = 3;
  f.seq = 8192;
  f.mbs = 1;
  f.gbs = 4;
  f.ckpt = PX_CKPT_FULL;
  f.precision = PX_PREC_BF16;
  g_autoptr(PxMemory) fm = memory_of(l8, &f, NULL);
  g_assert_cmpfloat(fm->stages[0].cp_kv_buffers, ==, 52.0 * 4096 * 4096);
  g_assert_cmpfloat(fm->stages[0].activations, ==, 7444889600.0);
  px_plan_clear(&f);
}

/* ZeRO shards over dp·cp, the ranks holding the same parameters (Megatron's
 * distributed optimizer over the data-parallel group with context parallel):
 * GPT-2 124M, dp 2 × cp 4, ZeRO-1: 12 B / 8 per parameter. */
static void test_cp_zero(void) {
  g_autoptr(PxModel) m = load("gpt2-124m");
  PxPlan p;
  px_plan_init(&p);
  p.dp = 2; p.cp = 4; p.zero = 1; p.seq = 1024; p.stack = PX_STACK_MEGATRON_CORE;
  g_autoptr(PxMemory) mem = memory_of(m, &p, NULL);
  g_assert_cmpfloat_with_epsilon(mem->stages[0].optimizer, 12.0 * 124439808 / 8, 12.0);
  px_plan_clear(&p);
}

/* FP8 (Transformer Engine) on tiny-gpt (L 4, h 64, a 4, f 256, s 64, b 1,
 * GELU, no dropout, unfused attention), by hand:
 *  - GEMM weights per block: QKV 192·64 + proj 64·64 + fc 256·64 + proj
 *    64·256 = 49,152; FP8 copy + transpose 2 B each: 4 · 49,152 · 2 = 393,216 B;
 *  - scaling state: 16 GEMMs × 5 tensors × (1024 amax history + scale +
 *    scale_inv) × 4 B = 16 · 20,520 = 328,320 B;
 *  - a block's activations: the four GEMM inputs (QKV input sbh, proj input
 *    s·q, fc input sbh, fc2 input s·f) in 1 byte instead of 2:
 *    bf16 8sbh + 2s(q+kv) + 2s·kv + 2s·q + 4sf + 2as² = 163,840 B,
 *    fp8 the same less sbh + sbh + s·q + s·f = 28,672: 135,168 B. */
static void test_fp8_terms(void) {
  g_autoptr(PxModel) m = load("tiny-gpt");
  g_assert_cmpint(m->desc.ffn, ==, 256);
  PxPlan p;
  px_plan_init(&p);
  p.precision = PX_PREC_FP8;
  g_autoptr(PxMemory) mem = memory_of(m, &p, NULL);
  const PxStageMemory *st = &mem->stages[0];
  g_assert_cmpfloat(st->fp8_weights, ==, 393216.0);
  g_assert_cmpfloat(st->fp8_meta, ==, 328320.0);
  g_assert_cmpfloat(px_memory_fp8_meta_per_gemm(), ==, 20520.0);
  g_assert_cmpfloat(px_layer_activation_bytes(m, &m->layers[1], &p), ==, 135168.0);
  /* bf16 weights, gradients and fp32 optimizer as in mixed precision: 2 + 2 + 12 */
  g_assert_cmpfloat(st->weights, ==, 2.0 * st->params);
  g_assert_cmpfloat(st->optimizer, ==, 12.0 * st->params);
  g_assert_cmpfloat(st->total, ==, st->weights + st->gradients + st->optimizer + st->fp8_weights + st->fp8_meta +
                                       st->activations + st->buffers + st->workspace);
  p.precision = PX_PREC_BF16;
  g_assert_cmpfloat(px_layer_activation_bytes(m, &m->layers[1], &p), ==, 163840.0);
  g_autoptr(PxMemory) mb = memory_of(m, &p, NULL);
  g_assert_cmpfloat(mb->stages[0].fp8_weights + mb->stages[0].fp8_meta, ==, 0.0);
  px_plan_clear(&p);
}

/* The torchtitan stack's activations on Llama 3 8B, dp 8, s 8192, bf16
 * (suite 6's Table 1 row, b 2, op-level selective AC; Table 2's full AC,
 * b 1), by hand. Blocks: 1,042,284,544 B each under op-SAC
 * (test_activations /activations/torchtitan-op-sac); the final norm's input
 * and the head's input 2·T·4096 each and log_softmax's fp32 output
 * 4·T·128256 (T = s·b tokens): with T = 16384, 268,435,456 + 8,405,385,216.
 * The loss (9dec370 train.py: cross_entropy(pred.float())) then makes two
 * more fp32 T × V tensors at the start of the backward, NllLossBackward0's
 * and LogSoftmaxBackward0's gradients: 16,810,770,432 B. In all
 * 32·1,042,284,544 + 268,435,456 + 8,405,385,216 + 16,810,770,432 =
 * 58,837,696,512 B. The parallax stack: 32 Megatron blocks (2,281,701,376 B)
 * and the same head, no loss excursion: 81,688,264,704 B. Full AC, b 1
 * (T = 8192): 32 block inputs 32·67,108,864, the head 134,217,728 +
 * 4,202,692,608, the loss 8,405,385,216 (more than full recompute's one
 * block made again, 1,140,850,688, less the head freed by then):
 * 14,889,779,200 B. With tp 2, loss_parallel's excursion (below). */
static void test_torchtitan_op_sac_loss(void) {
  g_autoptr(PxModel) m = load("llama3-8b");
  const struct {
    PxStack stack;
    PxCheckpoint ckpt;
    int mbs;
    double act;
  } cases[] = {
    {PX_STACK_TORCHTITAN, PX_CKPT_SELECTIVE, 2, 58837696512.0},
    {PX_STACK_PARALLAX, PX_CKPT_SELECTIVE, 2, 81688264704.0},
    {PX_STACK_TORCHTITAN, PX_CKPT_FULL, 1, 14889779200.0},
  };
  g_assert_cmpfloat(32 * 1042284544.0 + 268435456.0 + 8405385216.0 + 16810770432.0, ==, cases[0].act);
  g_assert_cmpfloat(32 * 2281701376.0 + 268435456.0 + 8405385216.0, ==, cases[1].act);
  g_assert_cmpfloat(32 * 67108864.0 + 134217728.0 + 4202692608.0 + 8405385216.0, ==, cases[2].act);
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    PxPlan p;
    px_plan_init(&p);
    p.stack = cases[i].stack;
    p.dp = 8;
    p.zero = 3;
    p.seq = 8192;
    p.mbs = cases[i].mbs;
    p.gbs = 8 * cases[i].mbs;
    p.ckpt = cases[i].ckpt;
    p.precision = PX_PREC_BF16;
    g_autoptr(PxMemory) mem = memory_of(m, &p, NULL);
    g_assert_cmpfloat(mem->stages[0].activations, ==, cases[i].act);
    px_plan_clear(&p);
  }
  /* torchao float8 (eab345c, tensorwise, compiled): each block keeps 14 bf16
   * amax scalars more, 28 B (test_activations /activations/torchtitan-op-sac);
   * the output head is not float8 (9dec370 float8.py module_filter_fn), so
   * the head and loss are bf16's: 58,837,696,512 + 32·28 = 58,837,697,408 B.
   * No FP8 weight copies or scaling state: Float8Linear casts the weight in
   * every call and dynamic scaling keeps no amax history. */
  {
    PxPlan f;
    px_plan_init(&f);
    f.stack = PX_STACK_TORCHTITAN;
    f.dp = 8;
    f.zero = 3;
    f.seq = 8192;
    f.mbs = 2;
    f.gbs = 16;
    f.ckpt = PX_CKPT_SELECTIVE;
    f.precision = PX_PREC_FP8;
    g_autoptr(PxMemory) fm = memory_of(m, &f, NULL);
    g_assert_cmpfloat(fm->stages[0].activations, ==, 58837697408.0);
    g_assert_cmpfloat(fm->stages[0].fp8_weights, ==, 0.0);
    g_assert_cmpfloat(fm->stages[0].fp8_meta, ==, 0.0);
    px_plan_clear(&f);
  }
  /* tp 2, sequence parallel: the blocks (Megatron's count: op-SAC under TP
   * not traced) and head over 2, and loss_parallel's backward excursion,
   * three fp32 T × V/2 tensors (zeros_like, exp and their sum beside the
   * saved log_softmax output): 12 · 16384 · 64128 = 12,608,077,824 B;
   * 40,844,132,352 + 12,608,077,824 = 53,452,210,176 B */
  PxPlan p;
  px_plan_init(&p);
  p.stack = PX_STACK_TORCHTITAN;
  p.tp = 2;
  p.seq_parallel = TRUE;
  p.dp = 4;
  p.zero = 3;
  p.seq = 8192;
  p.mbs = 2;
  p.gbs = 8;
  p.ckpt = PX_CKPT_SELECTIVE;
  p.precision = PX_PREC_BF16;
  g_autoptr(PxMemory) mem = memory_of(m, &p, NULL);
  g_assert_cmpfloat(cases[1].act / 2 + 12608077824.0, ==, 53452210176.0);
  g_assert_cmpfloat(mem->stages[0].activations, ==, 53452210176.0);
  px_plan_clear(&p);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/memory/seed-7b-fp32", test_seed_7b_fp32);
  g_test_add_func("/memory/cp/activations", test_cp_activations);
  g_test_add_func("/memory/cp/zero", test_cp_zero);
  g_test_add_func("/memory/cp/torchtitan-buffers", test_torchtitan_cp_buffers);
  g_test_add_func("/memory/fp8/by-hand", test_fp8_terms);
  g_test_add_func("/memory/zero", test_zero_stages);
  g_test_add_func("/memory/offload", test_offload);
  g_test_add_func("/memory/fsdp/buffers", test_fsdp_buffers);
  g_test_add_func("/memory/fsdp/held-logits", test_fsdp_held_logits);
  g_test_add_func("/memory/torchtitan/buffers", test_torchtitan_buffers);
  g_test_add_func("/memory/torchtitan/pp-gradients", test_torchtitan_pp_gradients);
  g_test_add_func("/memory/torchtitan/op-sac-loss", test_torchtitan_op_sac_loss);
  for (gsize i = 0; i < G_N_ELEMENTS(act_cases); i++) {
    g_autofree char *path = g_strdup_printf("/memory/korthikanti/%s", act_cases[i].what);
    g_test_add_data_func(path, &act_cases[i], test_korthikanti);
  }
  g_test_add_func("/memory/flash-drops-scores", test_flash_drops_scores);
  g_test_add_func("/memory/in-flight", test_in_flight);
  g_test_add_func("/memory/interleaved-weighted", test_interleaved_weighted);
  g_test_add_func("/memory/1f1b-first-stage", test_first_stage_whatever_p);
  g_test_add_func("/memory/zb-h1-by-hand", test_zb_h1_by_hand);
  g_test_add_func("/memory/block-variants", test_block_variants);
  g_test_add_func("/memory/seed-gpt3-does-not-fit", test_seed_gpt3_does_not_fit);
  return g_test_run();
}
