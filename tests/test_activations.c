/* test_activations.c — the core's list of saved activation tensors
 * (common/activations.h) against Korthikanti et al. 2022 (§4, table 2) entry
 * by entry on GPT-3 175B, full recompute's segments, the executor's stack
 * against the paper's (which entries it adds and why), and one micro-batch's
 * walk by hand. The executor's measured peaks against the same list are in
 * test_runtime.c (/runtime/memory/...). */
#include <glib.h>
#include <math.h>
#include "activations.h"
#include "memory.h"

static PxModel *load(const char *name) {
  g_autoptr(GError) e = NULL;
  PxModel *m = px_model_load(name, &e);
  g_assert_no_error(e);
  return m;
}

/* A validated fp32 plan of one micro-batch of 2 × 16 tokens. */
static void small_plan(PxPlan *p, const PxModel *m, int tp, int pp, PxCheckpoint ckpt, int interval) {
  px_plan_init(p);
  p->tp = tp;
  p->seq_parallel = tp > 1;
  p->pp = pp;
  p->mbs = 2;
  p->seq = 16;
  p->gbs = 2;
  p->ckpt = ckpt;
  p->ckpt_interval = interval;
  p->precision = PX_PREC_FP32;
  g_assert_true(px_plan_validate(p, m, NULL, NULL));
}

static double sum_all(const PxActList *l) {
  double s = 0;
  for (int i = 0; i < l->n; i++) s += l->e[i].bytes;
  return s;
}

static double bytes_of(const PxActList *l, PxActRole role) {
  const PxActEntry *e = px_act_find(l, role);
  return e ? e->bytes : 0;
}

/* GPT-3 175B (s 2048, h 12288, a 96, b 1, bf16, dropout): block 10 alone. */
static void gpt3_block(const PxModel *m, int tp, gboolean sp, PxCheckpoint ckpt, PxActList *l) {
  PxPlan p;
  px_plan_init(&p);
  p.tp = tp;
  p.seq_parallel = sp;
  p.ckpt = ckpt;
  g_assert_true(px_plan_validate(&p, m, NULL, NULL));
  g_assert_cmpint(px_plan_act_bytes(&p), ==, 2);
  px_activations_layer(m, &p, NULL, 10, 11, 10, l);
  px_plan_clear(&p);
}

/* sbh(34 + 5as/h) as the paper adds it up: 11sbh + 5as²b for attention,
 * 19sbh for the MLP, 4sbh for the two norms' inputs. */
static void test_korthikanti_entries(void) {
  g_autoptr(PxModel) m = load("gpt3-175b");
  const double s = 2048, b = 1, h = 12288, a = 96, sbh = s * b * h;
  PxActList l;
  gpt3_block(m, 1, FALSE, PX_CKPT_NONE, &l);
  g_assert_cmpfloat(px_act_kept_bytes(&l), ==, sbh * (34 + 5 * a * s / h));
  g_assert_cmpfloat(sum_all(&l), ==, px_act_kept_bytes(&l));
  /* entry by entry (Korthikanti §4.1) */
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_IN), ==, 2 * sbh);          /* LayerNorm input */
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_NORM1_OUT), ==, 2 * sbh);   /* QKV input */
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_QKV), ==, 6 * sbh);         /* Q, K 4sbh; V 2sbh */
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_PROBS), ==, 2 * a * s * s * b);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_PROBS_MASK), ==, a * s * s * b);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_PROBS_DROPPED), ==, 2 * a * s * s * b);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_ATTN_OUT), ==, 2 * sbh);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_ATTN_MASK), ==, sbh);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_MID) + bytes_of(&l, PX_ACT_NORM2_OUT), ==, 4 * sbh);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_FFN_PRE) + bytes_of(&l, PX_ACT_FFN_ACT), ==, 16 * sbh);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_MLP_MASK), ==, sbh);
  g_assert_cmpint(px_act_find(&l, PX_ACT_PROBS_MASK)->elem_bytes, ==, 1);
  /* the paper counts no norm statistics, ids or cross-entropy state */
  g_assert_null(px_act_find(&l, PX_ACT_NORM1_RSTD));
  g_assert_null(px_act_find(&l, PX_ACT_NORM1_MEAN));

  /* tensor parallel without SP: sbh(10 + 24/t + 5as/(ht)) */
  const double t = 8;
  gpt3_block(m, 8, FALSE, PX_CKPT_NONE, &l);
  g_assert_cmpfloat(px_act_kept_bytes(&l), ==, sbh * (10 + 24 / t + 5 * a * s / (h * t)));
  /* TP + SP: sbh(34/t + 5as/(ht)); the residual tensors hold s·b/t rows */
  gpt3_block(m, 8, TRUE, PX_CKPT_NONE, &l);
  g_assert_cmpfloat(px_act_kept_bytes(&l), ==, sbh * (34 / t + 5 * a * s / (h * t)));
  g_assert_cmpfloat(px_act_find(&l, PX_ACT_IN)->rows, ==, s * b / t);
  g_assert_cmpfloat(px_act_find(&l, PX_ACT_QKV)->cols, ==, 3 * h / t);
  g_assert_cmpint(px_act_find(&l, PX_ACT_PROBS)->shape[1], ==, 96 / 8);
  /* selective recompute: exactly the 5as/(ht) entries are recomputed */
  gpt3_block(m, 8, TRUE, PX_CKPT_SELECTIVE, &l);
  g_assert_cmpfloat(px_act_kept_bytes(&l), ==, sbh * 34 / t);
  double dropped = 0;
  for (int i = 0; i < l.n; i++)
    if (l.e[i].life == PX_ACT_RECOMPUTED) {
      g_assert_true(l.e[i].role == PX_ACT_PROBS || l.e[i].role == PX_ACT_PROBS_MASK ||
                    l.e[i].role == PX_ACT_PROBS_DROPPED);
      dropped += l.e[i].bytes;
    }
  g_assert_cmpfloat(dropped, ==, sbh * 5 * a * s / (h * t));
  /* full recompute keeps the block input: 2sbh/t with SP */
  gpt3_block(m, 8, TRUE, PX_CKPT_FULL, &l);
  g_assert_cmpfloat(px_act_kept_bytes(&l), ==, 2 * sbh / t);
  g_assert_cmpint(px_act_find(&l, PX_ACT_IN)->life, ==, PX_ACT_KEPT);
  g_assert_cmpint(px_act_find(&l, PX_ACT_QKV)->life, ==, PX_ACT_RECOMPUTED);
}

/* The LM head keeps its input and fp32 logits, 4sbV/t with the vocabulary
 * padded to a multiple of t (50257 -> 50264 at t 8): 4·2048·6283 B. */
static void test_head_entries(void) {
  g_autoptr(PxModel) m = load("gpt3-175b");
  PxPlan p;
  px_plan_init(&p);
  p.tp = 8;
  p.seq_parallel = TRUE;
  g_assert_true(px_plan_validate(&p, m, NULL, NULL));
  int head = (int)m->n_layers - 1;
  PxActList l;
  px_activations_layer(m, &p, NULL, head, head + 1, head, &l);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_LOGITS), ==, 4.0 * 2048 * 6283);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_IN), ==, 2.0 * 2048 * 12288 / 8);
  g_assert_cmpint(l.n, ==, 2);
  /* the embedding keeps its dropout mask: sbh/t bytes with SP */
  px_activations_layer(m, &p, NULL, 0, 1, 0, &l);
  g_assert_cmpfloat(px_act_kept_bytes(&l), ==, 2048.0 * 12288 / 8);
  px_plan_clear(&p);
}

/* DeepSpeed's activation_checkpoint_interval k: the first block of each
 * segment of k keeps its input; a part of 6 blocks with k 4 keeps 2 inputs. */
static void test_full_recompute_segments(void) {
  g_autoptr(PxModel) m = load("gpt3-175b");
  PxPlan p;
  px_plan_init(&p);
  p.ckpt = PX_CKPT_FULL;
  p.ckpt_interval = 4;
  g_assert_true(px_plan_validate(&p, m, NULL, NULL));
  const double sbh2 = 2.0 * 2048 * 12288;
  PxActList l;
  for (int li = 5; li < 11; li++) {
    px_activations_layer(m, &p, NULL, 5, 11, li, &l);
    g_assert_cmpint(px_act_find(&l, PX_ACT_IN)->life, ==, li == 5 || li == 9 ? PX_ACT_KEPT : PX_ACT_SEGMENT);
  }
  g_assert_cmpfloat(px_part_activation_bytes(m, &p, 5, 11), ==, 2 * sbh2);
  int s0, s1;
  px_activations_segment(m, &p, 5, 11, 10, &s0, &s1);
  g_assert_cmpint(s0, ==, 9);
  g_assert_cmpint(s1, ==, 11);
  px_plan_clear(&p);
}

/* The executor's stack on tiny-llama (RMSNorm, SwiGLU, GQA 4/2 heads, h 64,
 * f 176), fp32, tp 2 with SP, mbs 2 × seq 16: the same tensors as the paper's
 * (no dropout) plus what its kernels keep besides — each RMSNorm's 1/rms per
 * row (N/t = 16 values), and at the head the target ids and the
 * vocab-parallel cross-entropy's row max and (sum of exp, target logit). */
static void test_exec_stack(void) {
  g_autoptr(PxModel) m = load("tiny-llama");
  PxPlan p;
  small_plan(&p, m, 2, 1, PX_CKPT_NONE, 1);
  PxActOptions ex = {PX_ACT_STACK_EXEC, 4};
  PxActList paper, exec;
  px_activations_layer(m, &p, NULL, 1, 2, 1, &paper);
  px_activations_layer(m, &p, &ex, 1, 2, 1, &exec);
  const double N = 32, t = 2;
  g_assert_cmpfloat(px_act_kept_bytes(&exec) - px_act_kept_bytes(&paper), ==, 2 * 4 * N / t);
  g_assert_cmpfloat(bytes_of(&exec, PX_ACT_NORM1_RSTD), ==, 4 * N / t);
  g_assert_null(px_act_find(&exec, PX_ACT_NORM1_MEAN)); /* RMSNorm keeps no mean */
  /* q 64/2, k and v 2 heads of 16 over 2 ranks: 32 + 16 + 16 columns */
  g_assert_cmpint(px_act_find(&exec, PX_ACT_QKV)->shape[1], ==, 64);
  g_assert_cmpint(px_act_find(&exec, PX_ACT_FFN_UP)->shape[1], ==, 88);
  const PxActEntry *pr = px_act_find(&exec, PX_ACT_PROBS);
  g_assert_cmpint(pr->ndim, ==, 4);
  g_assert_cmpint(pr->shape[0] * pr->shape[1] * pr->shape[2] * pr->shape[3], ==, 2 * 2 * 16 * 16);
  int head = (int)m->n_layers - 1;
  px_activations_layer(m, &p, NULL, head, head + 1, head, &paper);
  px_activations_layer(m, &p, &ex, head, head + 1, head, &exec);
  g_assert_cmpfloat(px_act_kept_bytes(&exec) - px_act_kept_bytes(&paper), ==, 4 * N + 4 * N + 4 * 2 * N);
  g_assert_cmpint(px_act_find(&exec, PX_ACT_CE_STATS)->life, ==, PX_ACT_CHUNK);
  px_plan_clear(&p);
}

/* One micro-batch of a part of two tiny-gpt blocks (not the last part), full
 * recompute with interval 2, the executor's stack in fp32 (N 32): X = 32·64·4
 * B is a block input, R = 139,776 - X the rest of a block (its entries by
 * hand in test_runtime.c). Forward: the input, block 1 whole and its output
 * (block 2's input) 2X + R; block 2 whole (its output is the p2p buffer)
 * 2X + R. Backward rebuilds the segment from its input: X + (R + X) + R. */
static void test_profile_by_hand(void) {
  g_autoptr(PxModel) m = load("tiny-gpt");
  PxPlan p;
  small_plan(&p, m, 1, 2, PX_CKPT_FULL, 2);
  PxActOptions ex = {PX_ACT_STACK_EXEC, 4};
  PxActProfile prof;
  px_activations_profile(m, &p, &ex, 1, 3, &prof);
  const double X = 32 * 64 * 4, R = 139776 - X;
  g_assert_cmpfloat(prof.kept, ==, X);
  g_assert_cmpfloat(prof.peak, ==, 2 * X + 2 * R);
  /* no recompute: the peak is what it keeps (the backward only frees) */
  p.ckpt = PX_CKPT_NONE;
  px_activations_profile(m, &p, &ex, 1, 3, &prof);
  g_assert_cmpfloat(prof.kept, ==, 2 * 139776);
  g_assert_cmpfloat(prof.peak, ==, prof.kept);
  px_plan_clear(&p);
}

/* Context parallelism (and flash attention) in the executor's stack: tiny-gpt (h 64, a 4), fp32,
 * mbs 2 × seq 16 over cp 2 = 8 tokens per sequence on a rank (N 16). A
 * block without CP is 139,776 B at N 32 (test_profile_by_hand), of which the
 * probabilities 2·4·16·16·4 = 8,192 B; with CP every per-token tensor halves,
 * the probabilities go and the row log-sum-exp (b·a × s/cp = 8 × 8 values)
 * comes: (139,776 - 8,192) / 2 + 8·8·4 = 66,048 B. Selective recompute has
 * nothing left to drop; full recompute makes it again with the rest. */
static void test_exec_cp(void) {
  g_autoptr(PxModel) m = load("tiny-gpt");
  PxPlan p;
  small_plan(&p, m, 1, 1, PX_CKPT_NONE, 1);
  p.cp = 2;
  PxActOptions ex = {PX_ACT_STACK_EXEC, 4};
  PxActList l;
  px_activations_layer(m, &p, &ex, 1, 2, 1, &l);
  g_assert_null(px_act_find(&l, PX_ACT_PROBS));
  const PxActEntry *lse = px_act_find(&l, PX_ACT_LSE);
  g_assert_nonnull(lse);
  g_assert_cmpint(lse->shape[0], ==, 8);
  g_assert_cmpint(lse->shape[1], ==, 8);
  g_assert_cmpint(lse->life, ==, PX_ACT_KEPT);
  g_assert_cmpfloat(px_act_kept_bytes(&l), ==, 66048);
  p.ckpt = PX_CKPT_SELECTIVE;
  px_activations_layer(m, &p, &ex, 1, 2, 1, &l);
  g_assert_cmpfloat(px_act_kept_bytes(&l), ==, 66048);
  p.ckpt = PX_CKPT_FULL;
  px_activations_layer(m, &p, &ex, 1, 2, 1, &l);
  g_assert_cmpint(px_act_find(&l, PX_ACT_LSE)->life, ==, PX_ACT_RECOMPUTED);
  /* flash attention without CP: one block of 16 tokens, 139,776 - 8,192 +
   * 8·16·4 = 132,096 B; unfused (the fp32 default) keeps the probabilities */
  p.cp = 1;
  p.ckpt = PX_CKPT_NONE;
  p.attention = PX_ATTN_FLASH;
  px_activations_layer(m, &p, &ex, 1, 2, 1, &l);
  g_assert_null(px_act_find(&l, PX_ACT_PROBS));
  g_assert_cmpfloat(px_act_kept_bytes(&l), ==, 132096);
  p.attention = PX_ATTN_DEFAULT;
  px_activations_layer(m, &p, &ex, 1, 2, 1, &l);
  g_assert_null(px_act_find(&l, PX_ACT_LSE));
  g_assert_cmpfloat(px_act_kept_bytes(&l), ==, 139776);
  px_plan_clear(&p);
}

/* Zero bubble: what W reads, Qi et al. 2024 (M_W, Table 1 / §3): per weight
 * GEMM its input and output gradient. GPT-3 175B block 10, 16-bit, no TP:
 * inputs ln1 2sbh + attention output 2sbh + ln2 2sbh + GELU output 8sbh =
 * 14 sbh; gradients QKV 6sbh + projection 2sbh + fc1 8sbh + fc2 2sbh =
 * 18 sbh: 32 sbh, against the 34 sbh + 5as²b the forward keeps. With TP 8 the
 * row-parallel GEMMs' output gradients and the column-parallel GEMMs' inputs
 * stay whole (s·b × h), the rest split: (2 + 2 + 2 + 2) + (2 + 8 + 6 + 8)/t =
 * 8 + 24/t sbh; with SP the gathered copies of ln1 and ln2 are what W reads,
 * the same bytes. A schedule that does not split the backward has none. */
static void test_w_qi(void) {
  g_autoptr(PxModel) m = load("gpt3-175b");
  const double sbh = 2048.0 * 1 * 12288, t = 8;
  int tps[] = {1, 8, 8};
  gboolean sps[] = {FALSE, FALSE, TRUE};
  double want[] = {32 * sbh, (8 + 24 / t) * sbh, (8 + 24 / t) * sbh};
  for (int k = 0; k < 3; k++) {
    PxPlan p;
    px_plan_init(&p);
    p.tp = tps[k];
    p.seq_parallel = sps[k];
    p.schedule = PX_SCHED_ZB_H1;
    g_assert_true(px_plan_validate(&p, m, NULL, NULL));
    PxActList l;
    px_activations_layer(m, &p, NULL, 10, 11, 10, &l);
    g_assert_cmpfloat(px_act_w_bytes(&l), ==, want[k]);
    g_assert_cmpfloat(px_activations_w_bytes(m, &p, NULL, 10, 11), ==, want[k]);
    /* what the forward keeps does not change */
    g_assert_cmpfloat(px_act_kept_bytes(&l), ==, sbh * (sps[k] ? 34 / t + 5 * 96 * 2048 / (12288 * t)
                                                              : 10 + 24 / tps[k] + 5 * 96 * 2048 / (12288.0 * tps[k])));
    g_assert_cmpint(px_act_find(&l, PX_ACT_NORM1_OUT)->w, ==, !sps[k]);
    g_assert_cmpint(px_act_find(&l, PX_ACT_QKV)->w, ==, FALSE); /* B's attention backward reads Q, K, V */
    p.schedule = PX_SCHED_1F1B;
    px_activations_layer(m, &p, NULL, 10, 11, 10, &l);
    g_assert_cmpfloat(px_act_w_bytes(&l), ==, 0);
    px_plan_clear(&p);
  }
}

/* A tiny block by hand: tiny-gpt (h 64, f 256, a 4), s 16, b 2 (N = s·b = 32
 * token rows), fp32, the executor's stack, no TP, ZB-H1. W reads, in
 * elements: ln1 32·64 = 2048, attention output 32·64 = 2048, ln2 32·64 =
 * 2048, GELU output 32·256 = 8192 (14,336); gradients d_qkv 32·192 = 6144,
 * d_proj 32·64 = 2048, d_fc 32·256 = 8192, d_down 32·64 = 2048 (18,432):
 * 32,768 elements, 131,072 B (16 sbh elements: 32 sbh at 2 B). The LM head
 * (V 256): its input 32·64 and d_logits 32·256: 10,240 elements, 40,960 B. */
static void test_w_by_hand(void) {
  g_autoptr(PxModel) m = load("tiny-gpt");
  PxPlan p;
  small_plan(&p, m, 1, 1, PX_CKPT_NONE, 1);
  p.schedule = PX_SCHED_ZB_H1;
  PxActOptions ex = {PX_ACT_STACK_EXEC, 4};
  PxActList l;
  px_activations_layer(m, &p, &ex, 1, 2, 1, &l);
  g_assert_cmpfloat(px_act_w_bytes(&l), ==, 4.0 * (2048 + 2048 + 2048 + 8192 + 6144 + 2048 + 8192 + 2048));
  g_assert_cmpfloat(px_act_w_bytes(&l), ==, 131072);
  int head = (int)m->n_layers - 1;
  px_activations_layer(m, &p, &ex, 0, head + 1, head, &l); /* one chunk: the tied head's weight is its own */
  g_assert_cmpfloat(px_act_w_bytes(&l), ==, 4.0 * (32 * 64 + 32 * 256));
  /* full recompute: W reads what B made again, so a block holds more from
   * B to W (131,072 B) than from F to B (its input, 32·64·4 = 8,192 B) */
  px_plan_clear(&p);
  small_plan(&p, m, 1, 1, PX_CKPT_FULL, 1);
  p.schedule = PX_SCHED_ZB_H1;
  px_activations_layer(m, &p, &ex, 1, 2, 1, &l);
  g_assert_cmpfloat(px_act_kept_bytes(&l), ==, 8192);
  g_assert_cmpfloat(px_act_w_bytes(&l), ==, 131072);
  px_plan_clear(&p);
}

/* torchtitan's op-level selective checkpointing (9dec370, the December
 * 2024 benchmarks' commit: parallelisms/parallelize_llama.py _save_list and
 * _custom_policy; models/llama/model.py for the mm order wq wk wv wo w1 w3
 * w2): a block keeps its input, the outputs of mm 1, 3, 5 and 7 (wq, wv, w1,
 * w2) and flash attention's output and fp32 logsumexp. Llama 3 8B (h 4096,
 * 32 heads of 128, 8 KV heads, FFN 14336), s 8192, b 2, bf16, T = 16384
 * tokens, by hand:
 *   input  16384·4096·2            = 134,217,728
 *   wq, wv 16384·(4096 + 1024)·2   = 167,772,160
 *   lse    2·32·8192·4             =   2,097,152
 *   SDPA   16384·32·128·2          = 134,217,728
 *   w1     16384·14336·2           = 469,762,048
 *   w2     16384·4096·2            = 134,217,728
 * 1,042,284,544 B (994 MiB) a block, where Megatron's selective count
 * (the parallax stack) keeps the input, both norms' outputs, Q K V, the
 * attention output, the residual and the three FFN tensors: 2176 MiB,
 * 2,281,701,376 B. A non-gated MLP (w1, w2: mm 5 and 6) keeps w1 alone.
 * Under torchao float8 (tensorwise, compiled) the same tensors plus the 14
 * saved max(abs) of the 7 linears' inputs and weights, bf16 scalars: 28 B,
 * 1,042,284,572 B (activations.c, titan_op_sac). With tp 2 the torchtitan
 * stack keeps Megatron's count. */
static void titan_plan(PxPlan *p, const PxModel *m, PxStack stack, int tp, PxPrecision prec) {
  px_plan_init(p);
  p->stack = stack;
  p->tp = tp;
  p->seq_parallel = tp > 1;
  p->dp = 8 / tp;
  p->zero = 3;
  p->seq = 8192;
  p->mbs = 2;
  p->gbs = 2 * p->dp;
  p->ckpt = PX_CKPT_SELECTIVE;
  p->precision = prec;
  g_assert_true(px_plan_validate(p, m, NULL, NULL));
}

static void test_torchtitan_op_sac(void) {
  g_autoptr(PxModel) m = load("llama3-8b");
  PxPlan p;
  PxActList l;
  titan_plan(&p, m, PX_STACK_TORCHTITAN, 1, PX_PREC_BF16);
  px_activations_layer(m, &p, NULL, 1, 2, 1, &l);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_IN), ==, 134217728.0);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_QKV), ==, 167772160.0);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_LSE), ==, 2097152.0);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_ATTN_OUT), ==, 134217728.0);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_FFN_PRE), ==, 469762048.0);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_FFN_OUT), ==, 134217728.0);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_NORM1_OUT) + bytes_of(&l, PX_ACT_FFN_ACT) + bytes_of(&l, PX_ACT_FFN_UP), ==, 0);
  g_assert_cmpfloat(px_act_kept_bytes(&l), ==, 1042284544.0);
  g_assert_cmpfloat(sum_all(&l), ==, 1042284544.0);
  px_plan_clear(&p);
  /* Megatron's selective count: the parallax stack, and torchtitan where op-SAC is not traced */
  const struct {
    PxStack stack;
    int tp;
    PxPrecision prec;
    double block;
  } megatron[] = {
      {PX_STACK_PARALLAX, 1, PX_PREC_BF16, 2281701376.0},
      {PX_STACK_TORCHTITAN, 2, PX_PREC_BF16, 2281701376.0 / 2},
      {PX_STACK_PARALLAX, 2, PX_PREC_BF16, 2281701376.0 / 2},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(megatron); i++) {
    titan_plan(&p, m, megatron[i].stack, megatron[i].tp, megatron[i].prec);
    px_activations_layer(m, &p, NULL, 1, 2, 1, &l);
    g_assert_cmpfloat(px_act_kept_bytes(&l), ==, megatron[i].block);
    px_plan_clear(&p);
  }
  /* float8 (torchao tensorwise, compiled): the bf16 block's tensors, the
   * bf16 _scaled_mm outputs of wq, wv, w1, w2 the same size, plus the 7
   * linears' input and weight max(abs), 14 bf16 scalars: 28 B; no abs output */
  titan_plan(&p, m, PX_STACK_TORCHTITAN, 1, PX_PREC_FP8);
  px_activations_layer(m, &p, NULL, 1, 2, 1, &l);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_QKV), ==, 167772160.0);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_FFN_PRE), ==, 469762048.0);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_FFN_OUT), ==, 134217728.0);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_AMAX), ==, 28.0);
  g_assert_cmpfloat(px_act_kept_bytes(&l), ==, 1042284572.0);
  g_assert_cmpfloat(sum_all(&l), ==, 1042284572.0);
  px_plan_clear(&p);
  /* with tp 2 under fp8 the torchtitan stack's block is the parallax stack's */
  PxPlan q;
  titan_plan(&p, m, PX_STACK_TORCHTITAN, 2, PX_PREC_FP8);
  titan_plan(&q, m, PX_STACK_PARALLAX, 2, PX_PREC_FP8);
  PxActList lq;
  px_activations_layer(m, &p, NULL, 1, 2, 1, &l);
  px_activations_layer(m, &q, NULL, 1, 2, 1, &lq);
  g_assert_cmpfloat(px_act_kept_bytes(&l), ==, px_act_kept_bytes(&lq));
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_AMAX), ==, 0);
  px_plan_clear(&p);
  px_plan_clear(&q);
  /* a non-gated MLP: w1 is mm 5 (kept), w2 mm 6 (recomputed) */
  PxModelDesc d = m->desc;
  d.ffn_kind = PX_FFN_GELU;
  g_autoptr(GError) err = NULL;
  g_autoptr(PxModel) gelu = px_model_new(&d, &err);
  g_assert_no_error(err);
  titan_plan(&p, gelu, PX_STACK_TORCHTITAN, 1, PX_PREC_BF16);
  px_activations_layer(gelu, &p, NULL, 1, 2, 1, &l);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_FFN_OUT), ==, 0);
  g_assert_cmpfloat(px_act_kept_bytes(&l), ==, 1042284544.0 - 134217728.0);
  px_plan_clear(&p);
  /* ... under float8: 6 linears, 12 amaxes, 24 B */
  titan_plan(&p, gelu, PX_STACK_TORCHTITAN, 1, PX_PREC_FP8);
  px_activations_layer(gelu, &p, NULL, 1, 2, 1, &l);
  g_assert_cmpfloat(bytes_of(&l, PX_ACT_AMAX), ==, 24.0);
  g_assert_cmpfloat(px_act_kept_bytes(&l), ==, 1042284544.0 - 134217728.0 + 24.0);
  px_plan_clear(&p);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/activations/korthikanti-entries", test_korthikanti_entries);
  g_test_add_func("/activations/head", test_head_entries);
  g_test_add_func("/activations/full-recompute-segments", test_full_recompute_segments);
  g_test_add_func("/activations/exec-stack", test_exec_stack);
  g_test_add_func("/activations/profile-by-hand", test_profile_by_hand);
  g_test_add_func("/activations/zero-bubble-w/qi-m-w", test_w_qi);
  g_test_add_func("/activations/zero-bubble-w/by-hand", test_w_by_hand);
  g_test_add_func("/activations/exec-cp", test_exec_cp);
  g_test_add_func("/activations/torchtitan-op-sac", test_torchtitan_op_sac);
  return g_test_run();
}
