/* test_runtime.c — the executor runtime against the single-rank run:
 *  - loss parity (context parallelism too: cp 2 and 4, with tp, pp, dp, ZeRO;
 *    and flash attention): the first 5 steps of a covering subset of {pp 1,2,4} x {tp 1,2}
 *    x {dp 1,2} x {ZeRO 0-3} x {ckpt none, selective, full} x {gpipe, 1f1b,
 *    interleaved, zb-h1} x {sequence parallel or not} equal the single-rank losses on the same global batch
 *    (1e-5 relative in fp32, 1e-10 in fp64); the full product runs in
 *    scripts/nightly_parity.sh;
 *  - memory: measured weight / gradient / optimizer bytes per rank equal the
 *    planner's px_memory_new prediction exactly, and so do the peak
 *    activations (px_memory_new_act over the executor's activation list);
 *    one peak by hand;
 *  - the measured timeline holds one event per program instruction;
 *  - checkpoints: 6 steps straight equal 3 + resume + 3 bit for bit; a
 *    checkpoint of another run is refused (more in test_checkpoint.c);
 *  - bad input: a plan whose parts do not divide the model, tokens outside the
 *    vocabulary. */
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>
#include "checkpoint.h"
#include "data.h"
#include "runtime.h"
#include "schedule.h"

#include "parity.h"

/* A runtime for the layout with context parallelism over cp ranks and an
 * attention kernel that has run `steps` steps (their losses into loss when
 * non-NULL). */
static PxRuntime *stepped_attn(const PxModel *model, const Layout *l, int cp, PxAttention attn, PxDType dt, int steps,
                               double *loss) {
  g_autoptr(GError) error = NULL;
  PxRuntime *rt = layout_runtime_attn(model, l, cp, attn, dt, &error);
  g_assert_no_error(error);
  run_steps(rt, steps, loss, NULL);
  return rt;
}

static PxRuntime *stepped(const PxModel *model, const Layout *l, PxDType dt, int steps, double *loss) {
  return stepped_attn(model, l, 1, PX_ATTN_DEFAULT, dt, steps, loss);
}

static void run_losses(const PxModel *model, const Layout *l, PxDType dt, double *loss) {
  px_runtime_free(stepped(model, l, dt, STEPS, loss));
}

static void check_parity(const char *model_name, PxDType dt, double tol, gboolean fp64_subset) {
  g_autoptr(PxModel) model = load_model(model_name);
  double ref[STEPS];
  Layout single = {model_name, 1, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1};
  run_losses(model, &single, dt, ref);
  /* training moves: the run is not stuck at its initial loss */
  g_assert_cmpfloat(ref[STEPS - 1], <, ref[0]);
  for (gsize i = 0; i < G_N_ELEMENTS(parity_layouts); i++) {
    const Layout *l = &parity_layouts[i];
    if (strcmp(l->model, model_name)) continue;
    if (fp64_subset && l->dp * l->tp * l->pp < 8) continue;
    Layout ref_layout = single;
    ref_layout.mbs = l->mbs;
    double want[STEPS], got[STEPS];
    if (l->mbs != single.mbs) run_losses(model, &ref_layout, dt, want);
    else memcpy(want, ref, sizeof ref);
    run_losses(model, l, dt, got);
    for (int s = 0; s < STEPS; s++) {
      double rel = fabs(got[s] - want[s]) / fabs(want[s]);
      if (rel > tol)
        g_error("%s dp%d tp%d pp%d vpp%d %s zero%d ckpt %s: step %d loss %.12g, single rank %.12g (rel %.2e)",
                model_name, l->dp, l->tp, l->pp, l->vpp, l->schedule, l->zero, px_ckpt_name(l->ckpt), s + 1,
                got[s], want[s], rel);
    }
  }
}

static void test_parity_gpt_f32(void) { check_parity("tiny-gpt", PX_DTYPE_F32, 1e-5, FALSE); }
static void test_parity_llama_f32(void) { check_parity("tiny-llama", PX_DTYPE_F32, 1e-5, FALSE); }
static void test_parity_gpt_f64(void) { check_parity("tiny-gpt", PX_DTYPE_F64, 1e-10, TRUE); }
static void test_parity_llama_f64(void) { check_parity("tiny-llama", PX_DTYPE_F64, 1e-10, TRUE); }

/* Flash-style attention (tests/parity.h flash_parity_layouts): ring
 * attention over cp ranks, alone and with tp, pp, dp and ZeRO, and flash
 * attention on one block, equal the single rank (unfused attention) on the
 * same global batch. */
static void check_parity_cp(PxDType dt, double tol) {
  /* the single rank's losses, once per (model, micro-batch size, global batch) */
  const char *ref_model[4] = {NULL};
  int ref_mbs[4] = {0}, ref_gbs[4] = {0}, n_ref = 0;
  double refs[4][STEPS];
  for (gsize i = 0; i < G_N_ELEMENTS(flash_parity_layouts); i++) {
    const Layout *l = &flash_parity_layouts[i].l;
    int cp = flash_parity_layouts[i].cp;
    PxAttention attn = flash_parity_layouts[i].attention;
    if (dt == PX_DTYPE_F64 && l->dp * l->tp * l->pp * cp < 8) continue;
    g_autoptr(PxModel) model = load_model(l->model);
    int k = 0;
    while (k < n_ref && (strcmp(ref_model[k], l->model) || ref_mbs[k] != l->mbs || ref_gbs[k] != l->gbs)) k++;
    if (k == n_ref) {
      g_assert_cmpint(n_ref, <, 4);
      Layout single = {l->model, 1, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, l->mbs, l->gbs, FALSE, 1};
      run_losses(model, &single, dt, refs[k]);
      ref_model[k] = l->model;
      ref_mbs[k] = l->mbs;
      ref_gbs[k] = l->gbs;
      n_ref++;
    }
    const double *want = refs[k];
    double got[STEPS];
    px_runtime_free(stepped_attn(model, l, cp, attn, dt, STEPS, got));
    for (int s = 0; s < STEPS; s++) {
      double rel = fabs(got[s] - want[s]) / fabs(want[s]);
      if (rel > tol)
        g_error("%s cp%d %s attention dp%d tp%d pp%d %s zero%d ckpt %s: step %d loss %.12g, single rank %.12g (rel %.2e)",
                l->model, cp, px_attention_name(attn), l->dp, l->tp, l->pp, l->schedule, l->zero, px_ckpt_name(l->ckpt),
                s + 1, got[s], want[s], rel);
    }
  }
}

static void test_parity_cp_f32(void) { check_parity_cp(PX_DTYPE_F32, 1e-5); }
static void test_parity_cp_f64(void) { check_parity_cp(PX_DTYPE_F64, 1e-10); }

/* A vocabulary that tp does not divide (251, prime) is padded to 252 rows
 * over tp=2, 256 over tp=4: the padding takes no part in the loss. */
static void test_parity_padded_vocab(void) {
  g_autoptr(PxModel) model = prime_vocab_model();
  Layout single = {"prime-vocab", 1, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1};
  Layout layouts[] = {{"prime-vocab", 1, 2, 2, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1},
                      {"prime-vocab", 2, 4, 1, 1, "gpipe", 2, PX_CKPT_NONE, 2, 8, TRUE, 1}};
  double want[STEPS], got[STEPS];
  run_losses(model, &single, PX_DTYPE_F64, want);
  for (gsize i = 0; i < G_N_ELEMENTS(layouts); i++) {
    run_losses(model, &layouts[i], PX_DTYPE_F64, got);
    for (int s = 0; s < STEPS; s++) g_assert_cmpfloat(fabs(got[s] - want[s]), <, 1e-10 * want[s]);
  }
  /* the executor holds the padded shards the planner counts: ceil(251/4) rows */
  g_autoptr(PxRuntime) rt = stepped(model, &layouts[1], PX_DTYPE_F32, 1, NULL);
  PxRankMemory m;
  px_runtime_memory(rt, 3, &m);
  g_assert_cmpfloat((double)m.measured.current[PX_MEM_WEIGHTS], ==, m.predicted.weights);
  g_assert_cmpfloat((double)m.measured.current[PX_MEM_GRADS], ==, m.predicted.gradients);
  g_assert_cmpfloat((double)m.measured.current[PX_MEM_OPTIMIZER], ==, m.predicted.optimizer);
}

/* The model's own hyperparameters reach the executor. A Llama with head_dim
 * 16 over hidden 32 and 4 heads (q and o projections 64 wide, as Gemma's
 * 256 over 3072 / 16): the executor holds exactly the parameters the core
 * lists (hand count below) and tp 2 equals the single rank. rope_theta and
 * norm_eps change the loss when, and only when, they change the model
 * (the RoPE op itself is checked against Hugging Face in test_rope_ref). */
static double first_loss(const PxModelDesc *d, int tp) {
  g_autoptr(GError) error = NULL;
  g_autoptr(PxModel) model = px_model_new(d, &error);
  g_assert_no_error(error);
  Layout l = {d->name, 1, tp, 1, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1};
  double loss[STEPS];
  run_losses(model, &l, PX_DTYPE_F64, loss);
  return loss[STEPS - 1];
}

static void test_model_hyperparameters(void) {
  PxModelDesc d = {.name = "wide-heads", .layers = 2, .hidden = 32, .heads = 4, .kv_heads = 2, .ffn = 64,
                   .vocab = 64, .max_seq = 16, .ffn_kind = PX_FFN_SWIGLU, .norm = PX_NORM_RMSNORM,
                   .pos = PX_POS_ROPE, .bias = FALSE, .tied = FALSE, .head_dim = 16};
  g_autoptr(GError) error = NULL;
  g_autoptr(PxModel) model = px_model_new(&d, &error);
  g_assert_no_error(error);
  /* per block: 2 norms 2·32, qkv (4 + 2·2)·16 x 32 = 4096, o 32 x 64 = 2048, MLP 3 · 64·32 = 6144;
   * wte and lm_head 64·32 each, final norm 32 */
  gint64 block = 2 * 32 + 4096 + 2048 + 6144, total = 2 * block + 2 * 64 * 32 + 32;
  g_autoptr(PxRuntime) rt = stepped(model, &(Layout){"wide-heads", 1, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1},
                                    PX_DTYPE_F32, 1, NULL);
  PxRankMemory m;
  g_assert_true(px_runtime_memory(rt, 0, &m));
  g_assert_cmpint(m.measured.current[PX_MEM_WEIGHTS], ==, 4 * total);
  double one = first_loss(&d, 1), two = first_loss(&d, 2);
  g_assert_cmpfloat(fabs(one - two), <, 1e-12 * one);
  PxModelDesc base = d;
  base.rope_theta = 10000; /* the default, stated: the same model */
  g_assert_cmpfloat(first_loss(&base, 1), ==, one);
  PxModelDesc theta = d;
  theta.rope_theta = 500000; /* Llama-3's base */
  g_assert_cmpfloat(fabs(first_loss(&theta, 1) - one), >, 1e-9);
  PxModelDesc eps = d;
  eps.norm_eps = 0.5; /* large enough to move the normalised activations */
  g_assert_cmpfloat(fabs(first_loss(&eps, 1) - one), >, 1e-9);
}

/* The first step's loss is about log(V) for a freshly initialised model (tiny
 * logits): a wrong loss scale or a missing micro-batch would move it. */
static void test_initial_loss(void) {
  g_autoptr(PxModel) model = load_model("tiny-gpt");
  Layout l = {"tiny-gpt", 2, 2, 2, 1, "1f1b", 1, PX_CKPT_NONE, 2, 8, FALSE, 1};
  double loss[STEPS];
  run_losses(model, &l, PX_DTYPE_F32, loss);
  g_assert_cmpfloat(fabs(loss[0] - log(256.0)), <, 0.05);
}

/* After two steps the weights themselves agree with the single rank's, shards
 * joined (TP rows of the query/key/value heads, ZeRO-3 pieces over DP). */
static void test_weights_agree(void) {
  g_autoptr(PxModel) model = load_model("tiny-llama");
  g_autoptr(GError) error = NULL;
  Layout single = {"tiny-llama", 1, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1};
  Layout split = {"tiny-llama", 2, 2, 2, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1};
  g_autoptr(PxRuntime) a = stepped(model, &single, PX_DTYPE_F64, 2, NULL);
  g_autoptr(PxRuntime) b = stepped(model, &split, PX_DTYPE_F64, 2, NULL);
  const char *names[] = {"h.0.attn.qkv.weight", "h.3.mlp.down.weight", "wte.weight", "lm_head.weight", "ln_f.weight"};
  for (gsize k = 0; k < G_N_ELEMENTS(names); k++) {
    g_autofree double *x = px_runtime_get_param(a, names[k], &error);
    g_autofree double *y = px_runtime_get_param(b, names[k], &error);
    g_assert_no_error(error);
    gint64 n = tensor_numel(model, names[k]);
    g_assert_cmpint(n, >, 0);
    double mag = 0;
    for (gint64 i = 0; i < n; i++) {
      g_assert_cmpfloat(fabs(x[i] - y[i]), <=, 1e-12);
      mag += fabs(y[i]);
    }
    g_assert_cmpfloat(mag, >, 0); /* every element was filled */
  }
  g_assert_null(px_runtime_get_param(b, "h.9.nope", &error));
  g_assert_error(error, PX_RUNTIME_ERROR, PX_RUNTIME_ERROR_INVALID);
}

/* ---- memory ------------------------------------------------------------------------ */

static void check_memory_attn(const Layout *l, int cp, PxAttention attn, PxDType dt) {
  g_autoptr(PxModel) model = load_model(l->model);
  g_autoptr(PxRuntime) rt = stepped_attn(model, l, cp, attn, dt, 2, NULL);
  /* exact: the executor allocates what the planner counts, and the peak
   * activations are the core's activation list walked through the schedule */
  g_autofree char *what = g_strdup_printf("%s cp%d dp%d tp%d pp%d %s ckpt %s", l->model, cp, l->dp, l->tp, l->pp,
                                          l->schedule, px_ckpt_name(l->ckpt));
  expect_memory(rt, what);
}

static void check_memory(const Layout *l, PxDType dt) { check_memory_attn(l, 1, PX_ATTN_DEFAULT, dt); }

static void test_memory(void) {
  static const Layout layouts[] = {
    {"tiny-gpt", 1, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1},
    {"tiny-gpt", 2, 2, 2, 1, "1f1b", 1, PX_CKPT_NONE, 2, 8, FALSE, 1},
    {"tiny-gpt", 2, 1, 2, 1, "gpipe", 2, PX_CKPT_SELECTIVE, 2, 8, FALSE, 1},
    {"tiny-gpt", 2, 2, 2, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1},
    {"tiny-llama", 2, 2, 2, 1, "1f1b", 3, PX_CKPT_SELECTIVE, 2, 8, FALSE, 1},
    {"tiny-llama", 1, 2, 2, 2, "interleaved", 0, PX_CKPT_NONE, 2, 8, FALSE, 1},
    {"tiny-gpt", 2, 2, 2, 1, "1f1b", 2, PX_CKPT_NONE, 2, 8, TRUE, 1},
    {"tiny-llama", 1, 2, 2, 1, "gpipe", 0, PX_CKPT_SELECTIVE, 2, 8, TRUE, 1},
    /* full recompute: one input per segment kept, one segment recomputed at a
     * time (on the last stage after the logits are freed) */
    {"tiny-gpt", 1, 1, 2, 1, "1f1b", 0, PX_CKPT_FULL, 2, 8, FALSE, 1},
    {"tiny-gpt", 1, 1, 2, 1, "1f1b", 0, PX_CKPT_FULL, 2, 8, FALSE, 2},
    {"tiny-llama", 1, 1, 1, 1, "1f1b", 0, PX_CKPT_FULL, 2, 8, FALSE, 3},
    /* interleaved: rank 1's chunk 0 rebuilds a whole block in its backward
     * (its largest transient), but never while rank 1 holds chunk 1's LM
     * head and logits (its steady-state peak): each op's transient on the
     * level before it, not the largest on the peak */
    {"tiny-gpt", 1, 1, 2, 2, "interleaved", 0, PX_CKPT_FULL, 2, 8, FALSE, 1},
    {"tiny-gpt", 1, 1, 2, 2, "interleaved", 0, PX_CKPT_FULL, 1, 8, FALSE, 2},
    {"tiny-llama", 1, 2, 2, 2, "interleaved", 0, PX_CKPT_FULL, 2, 8, TRUE, 1},
    /* ZB-H2 holds up to 2p-1 micro-batches on rank 0; the V schedules two
     * chunks per rank, DualPipeV 2p+1 (micro-batch, chunk)s */
    {"tiny-gpt", 1, 1, 2, 1, "zb-h2", 0, PX_CKPT_NONE, 1, 8, FALSE, 1},
    {"tiny-gpt", 1, 1, 2, 2, "zb-v", 0, PX_CKPT_NONE, 1, 8, FALSE, 1},
    {"tiny-llama", 1, 1, 2, 2, "dualpipev", 0, PX_CKPT_SELECTIVE, 1, 8, FALSE, 1},
    {"tiny-gpt", 2, 2, 2, 2, "zb-v", 3, PX_CKPT_NONE, 1, 8, FALSE, 1},
    /* ZB-H1: each backward-input pass frees all but what its weight pass
     * reads (activations.h), which the weight pass frees; pp 2 and 4, every
     * recompute mode, TP with and without SP, a gated MLP */
    {"tiny-gpt", 1, 1, 2, 1, "zb-h1", 0, PX_CKPT_NONE, 2, 8, FALSE, 1},
    {"tiny-gpt", 1, 1, 4, 1, "zb-h1", 0, PX_CKPT_NONE, 1, 8, FALSE, 1},
    {"tiny-gpt", 1, 1, 2, 1, "zb-h1", 0, PX_CKPT_SELECTIVE, 2, 8, FALSE, 1},
    {"tiny-gpt", 1, 1, 4, 1, "zb-h1", 0, PX_CKPT_SELECTIVE, 1, 8, FALSE, 1},
    {"tiny-gpt", 1, 1, 2, 1, "zb-h1", 0, PX_CKPT_FULL, 2, 8, FALSE, 1},
    {"tiny-gpt", 1, 1, 4, 1, "zb-h1", 0, PX_CKPT_FULL, 1, 8, FALSE, 1},
    {"tiny-gpt", 1, 2, 2, 1, "zb-h1", 0, PX_CKPT_FULL, 2, 8, FALSE, 2},
    {"tiny-llama", 1, 2, 2, 1, "zb-h1", 0, PX_CKPT_NONE, 2, 8, TRUE, 1},
    {"tiny-llama", 2, 2, 2, 1, "zb-h1", 3, PX_CKPT_SELECTIVE, 2, 8, FALSE, 1},
    {"tiny-llama", 1, 2, 2, 1, "zb-h2", 0, PX_CKPT_FULL, 1, 8, TRUE, 1},
    {"tiny-gpt", 1, 2, 2, 2, "zb-v", 0, PX_CKPT_SELECTIVE, 1, 8, TRUE, 1},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(layouts); i++) check_memory(&layouts[i], PX_DTYPE_F32);
  check_memory(&layouts[1], PX_DTYPE_F64);
  /* flash-style attention (context parallelism, --attention flash): the
   * attention keeps its log-sum-exp; ZeRO shards over dp·cp */
  for (gsize i = 0; i < G_N_ELEMENTS(flash_parity_layouts); i++) {
    const FlashLayout *f = &flash_parity_layouts[i];
    check_memory_attn(&f->l, f->cp, f->attention, PX_DTYPE_F32);
  }
}

/* Weights per rank by hand: tiny-gpt (h 64, V 256, 4 blocks of 49,984
 * parameters: 2·64 + 192·64 + 192 + 64·64 + 64 + 2·64 + 256·64 + 256 + 64·256 + 64)
 * with wte 256·64 and wpe 64·64; pp=1, tp=1: 16,384 + 4,096 + 4·49,984 + 128 =
 * 220,544 parameters, 882,176 bytes in fp32; ZeRO-3 over dp=2 halves them. */
/* Peak activations by hand: tiny-gpt (h 64, a 4, f 256, V 256, 4 blocks,
 * LayerNorm), pp 1, mbs 2 × seq 16 = N 32 token rows, fp32, no recompute: one
 * micro-batch at a time, its peak is all it keeps at the end of its forward.
 * Per block, in elements: the input 32·64, ln1 32·64, its mean and 1/std 2·32,
 * Q K V 32·192, the probabilities 2·4·16·16, the attention output 32·64, the
 * residual x2 32·64, ln2 32·64, its statistics 2·32, GELU input and output
 * 2·32·256 — 34,944 elements, 139,776 B. Korthikanti's count for the same
 * block without dropout, in 4-byte elements, is sbh(16·4) + 4·as²b = 139,264 B:
 * the executor adds the norms' row statistics (4·32·4 = 512 B).
 * Plus token ids 32·4, the final norm's input 32·64·4 and statistics 2·32·4,
 * the LM head's input 32·64·4, fp32 logits 32·256·4 and target ids 32·4. */
static void test_activations_by_hand(void) {
  g_autoptr(PxModel) model = load_model("tiny-gpt");
  Layout l = {"tiny-gpt", 1, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, 2, 4, FALSE, 1};
  g_autoptr(PxRuntime) rt = stepped(model, &l, PX_DTYPE_F32, 1, NULL);
  PxRankMemory m;
  px_runtime_memory(rt, 0, &m);
  const double N = 32, h = 64, f = 256, a = 4, B = 2, T = 16;
  double block = 4 * (N * h * 5 + N * 192 + B * a * T * T + 4 * N + 2 * N * f);
  g_assert_cmpfloat(block, ==, 139776);
  g_assert_cmpfloat(block - 4 * 4 * N, ==, 16 * 4 * N * h + 4 * a * T * T * B);
  double head = 4 * N + 4 * (N * h + 2 * N) + 4 * N * h + 4 * N * 256 + 4 * N;
  g_assert_cmpint(m.measured.peak[PX_MEM_ACTIVATIONS], ==, (gint64)(4 * block + head));
  g_assert_cmpfloat(m.predicted.activations, ==, 4 * block + head);
}

static void test_memory_by_hand(void) {
  g_autoptr(PxModel) model = load_model("tiny-gpt");
  Layout l = {"tiny-gpt", 2, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1};
  g_autoptr(PxRuntime) rt = stepped(model, &l, PX_DTYPE_F32, 1, NULL);
  PxRankMemory m;
  px_runtime_memory(rt, 1, &m);
  g_assert_cmpint(m.measured.current[PX_MEM_WEIGHTS], ==, 882176 / 2);
  g_assert_cmpint(m.measured.current[PX_MEM_GRADS], ==, 882176 / 2);
  g_assert_cmpint(m.measured.current[PX_MEM_OPTIMIZER], ==, 882176);
  /* dp = 3 does not divide 220,544: ZeRO-1 shards of ceil(220,544 / 3) =
   * 73,515 elements, the weight and gradient buffers padded to 3 of them
   * (220,545 elements, 882,180 bytes), AdamW's two moments 2 · 4 · 73,515 =
   * 588,120 bytes; the planner counts the same */
  Layout l3 = {"tiny-gpt", 3, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 2, 6, FALSE, 1};
  g_autoptr(PxRuntime) rt3 = stepped(model, &l3, PX_DTYPE_F32, 1, NULL);
  for (int r = 0; r < 3; r++) {
    px_runtime_memory(rt3, r, &m);
    g_assert_cmpint(m.measured.current[PX_MEM_WEIGHTS], ==, 882180);
    g_assert_cmpint(m.measured.current[PX_MEM_GRADS], ==, 882180);
    g_assert_cmpint(m.measured.current[PX_MEM_OPTIMIZER], ==, 588120);
    g_assert_cmpfloat(m.predicted.weights, ==, 882180);
    g_assert_cmpfloat(m.predicted.gradients, ==, 882180);
    g_assert_cmpfloat(m.predicted.optimizer, ==, 588120);
  }
}

/* ---- timeline ---------------------------------------------------------------------- */

static void test_timeline(void) {
  g_autoptr(PxModel) model = load_model("tiny-gpt");
  Layout l = {"tiny-gpt", 1, 1, 2, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1};
  g_autoptr(PxRuntime) rt = stepped(model, &l, PX_DTYPE_F32, 1, NULL);
  const PxTimeline *tl = px_runtime_timeline(rt);
  /* 1F1B, pp=2, m=4: stage 0 runs 4 loads, 4 F, 4 SA, 4 RG, 4 B, OPT, RT = 22;
   * stage 1 runs 4 loads, 4 RA, 4 F, 4 B, 4 SG, RT, OPT = 22 */
  int per_stage[2] = {0, 0}, fwd = 0;
  for (guint i = 0; i < tl->events->len; i++) {
    const PxEvent *ev = &g_array_index(tl->events, PxEvent, i);
    per_stage[ev->stage]++;
    if (ev->kind == PX_OP_FORWARD) fwd++;
    g_assert_cmpfloat(ev->end, >=, ev->start);
    if (ev->kind == PX_OP_SEND_ACT) g_assert_cmpfloat(ev->bytes, ==, 2.0 * 16 * 64 * 4);
  }
  g_assert_cmpint(per_stage[0], ==, 22);
  g_assert_cmpint(per_stage[1], ==, 22);
  g_assert_cmpint(fwd, ==, 8);
  g_assert_cmpuint(tl->memory->len, ==, 44);
}

/* ---- checkpoints ------------------------------------------------------------------- */

static void test_checkpoint_resume(void) {
  g_autoptr(PxModel) model = load_model("tiny-gpt");
  g_autoptr(GError) error = NULL;
  Layout l = {"tiny-gpt", 2, 1, 2, 1, "1f1b", 1, PX_CKPT_NONE, 2, 8, FALSE, 1};
  g_autofree char *dir = g_dir_make_tmp("px-ckpt-XXXXXX", &error);
  g_assert_no_error(error);
  double straight[6], resumed[6];
  px_runtime_free(stepped(model, &l, PX_DTYPE_F32, 6, straight));
  {
    g_autoptr(PxRuntime) rt = stepped(model, &l, PX_DTYPE_F32, 3, resumed);
    g_assert_true(px_runtime_save(rt, dir, &error));
    g_assert_no_error(error);
  }
  {
    g_autoptr(PxRuntime) rt = layout_runtime(model, &l, PX_DTYPE_F32, &error);
    g_assert_true(px_runtime_resume(rt, dir, &error));
    g_assert_no_error(error);
    g_assert_cmpint(px_runtime_steps_done(rt), ==, 3);
    for (int s = 3; s < 6; s++) {
      PxStepResult r;
      g_assert_true(px_runtime_step(rt, &r, &error));
      g_assert_cmpint(r.step, ==, s + 1);
      resumed[s] = r.loss;
    }
  }
  for (int s = 0; s < 6; s++) g_assert_cmpmem(&straight[s], sizeof(double), &resumed[s], sizeof(double));
  /* the step directory and the pointer to it */
  g_autofree char *latest = g_build_filename(dir, "latest", NULL);
  g_autofree char *text = NULL;
  g_assert_true(g_file_get_contents(latest, &text, NULL, NULL));
  g_assert_cmpstr(text, ==, "step-00000003\n");

  /* another run (a global batch of 16 sequences instead of 8) refuses the
   * checkpoint with one error; another layout resumes (tests/test_checkpoint.c) */
  Layout other = l;
  other.gbs = 16;
  g_autoptr(PxRuntime) rt2 = layout_runtime(model, &other, PX_DTYPE_F32, &error);
  g_assert_false(px_runtime_resume(rt2, dir, &error));
  g_assert_error(error, PX_CHECKPOINT_ERROR, PX_CHECKPOINT_ERROR_MISMATCH);
  g_clear_error(&error);

  /* a half-written save (a temporary directory, no rename) leaves latest alone */
  g_autofree char *tmp = px_checkpoint_begin(dir, 9, &error);
  g_assert_no_error(error);
  g_autofree char *text2 = NULL;
  g_assert_true(g_file_get_contents(latest, &text2, NULL, NULL));
  g_assert_cmpstr(text2, ==, "step-00000003\n");

  /* a truncated rank file is refused as corrupt (its size and SHA-256 are in the manifest) */
  g_autofree char *rank0 = g_build_filename(dir, "step-00000003", "rank-00000.ckpt", NULL);
  g_autofree char *bytes = NULL;
  gsize len = 0;
  g_assert_true(g_file_get_contents(rank0, &bytes, &len, NULL));
  g_assert_true(g_file_set_contents(rank0, bytes, (gssize)len / 2, NULL));
  g_autoptr(PxRuntime) rt3 = layout_runtime(model, &l, PX_DTYPE_F32, &error);
  g_assert_false(px_runtime_resume(rt3, dir, &error));
  g_assert_error(error, PX_CHECKPOINT_ERROR, PX_CHECKPOINT_ERROR_CORRUPT);
}

/* ---- bad input ----------------------------------------------------------------------- */

static void test_bad_plan(void) {
  g_autoptr(PxModel) model = load_model("tiny-gpt");
  g_autoptr(GError) error = NULL;
  /* 4 blocks cannot fill pp=4 x vpp=2 = 8 chunks */
  Layout l = {"tiny-gpt", 1, 1, 4, 2, "interleaved", 0, PX_CKPT_NONE, 1, 8, FALSE, 1};
  g_autoptr(PxRuntime) rt = layout_runtime(model, &l, PX_DTYPE_F32, &error);
  g_assert_null(rt);
  g_assert_nonnull(error);
  g_assert_nonnull(strstr(error->message, "exceed"));
  g_clear_error(&error);
  /* sequence parallelism needs tp to divide a micro-batch's tokens */
  PxPlan p;
  Layout t = {"tiny-gpt", 1, 2, 1, 1, "1f1b", 0, PX_CKPT_NONE, 1, 8, TRUE, 1};
  layout_plan(&t, &p);
  p.seq = 15; /* 1 x 15 tokens over tp=2 */
  PxRunOptions o;
  px_run_options_init(&o);
  g_autoptr(PxRuntime) rt2 = px_runtime_new(model, &p, &o, &error);
  g_assert_null(rt2);
  g_assert_nonnull(error);
  g_assert_nonnull(strstr(error->message, "sequence parallelism"));
  px_plan_clear(&p);
  /* context parallelism cuts the sequence into 2·cp chunks */
  g_clear_error(&error);
  g_autoptr(PxRuntime) rt3 = layout_runtime_cp(model, &(Layout){"tiny-gpt", 1, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, 1, 6,
                                                                FALSE, 1}, 3, PX_DTYPE_F32, &error);
  g_assert_null(rt3);
  g_assert_nonnull(error);
  g_assert_nonnull(strstr(error->message, "not divisible by 6"));
}

/* A rank failing mid-step (here an injected fault on rank 3, stage 1, at its
 * 6th instruction) fails the step with its own sentence, naming rank, stage and
 * instruction, not one of the peers' "aborted" consequences; the peers are
 * released by the abort (with a 60 s timeout they would otherwise wait). */
static void test_rank_failure(void) {
  g_autoptr(PxModel) model = load_model("tiny-gpt");
  g_autoptr(GError) error = NULL;
  PxPlan p;
  Layout l = {"tiny-gpt", 2, 1, 2, 1, "1f1b", 1, PX_CKPT_NONE, 2, 8, FALSE, 1};
  layout_plan(&l, &p);
  PxRunOptions o;
  px_run_options_init(&o);
  o.timeout_s = 60;
  o.fault_rank = 3;
  o.fault_instr = 5;
  g_autoptr(PxRuntime) rt = px_runtime_new(model, &p, &o, &error);
  g_assert_no_error(error);
  g_assert_false(px_runtime_step(rt, NULL, &error));
  g_assert_error(error, PX_RUNTIME_ERROR, PX_RUNTIME_ERROR_FAILED);
  g_assert_nonnull(strstr(error->message, "rank 3 (stage 1)"));
  g_assert_nonnull(strstr(error->message, "injected fault"));
  g_assert_null(strstr(error->message, "abort"));
  px_plan_clear(&p);
}

static void test_bad_tokens(void) {
  g_autoptr(PxModel) model = load_model("tiny-gpt");
  g_autoptr(GError) error = NULL;
  g_autofree char *path = NULL;
  int fd = g_file_open_tmp("px-tokens-XXXXXX.bin", &path, &error);
  g_assert_cmpint(fd, >=, 0);
  close(fd);
  guint16 tok[200];
  for (int i = 0; i < 200; i++) tok[i] = (guint16)(i % 300 + 1); /* up to 200 < 256: fine */
  tok[150] = 1000;                                              /* outside the vocabulary */
  g_assert_true(px_token_file_write(path, tok, 200, &error));
  PxPlan p;
  Layout l = {"tiny-gpt", 1, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1};
  layout_plan(&l, &p);
  PxRunOptions o;
  px_run_options_init(&o);
  o.data = path;
  g_autoptr(PxRuntime) rt = px_runtime_new(model, &p, &o, &error);
  g_assert_null(rt);
  g_assert_error(error, PX_RUNTIME_ERROR, PX_RUNTIME_ERROR_INVALID);
  g_assert_nonnull(strstr(error->message, "1000"));
  g_unlink(path);
  px_plan_clear(&p);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/runtime/parity/gpt/f32", test_parity_gpt_f32);
  g_test_add_func("/runtime/parity/llama/f32", test_parity_llama_f32);
  g_test_add_func("/runtime/parity/gpt/f64", test_parity_gpt_f64);
  g_test_add_func("/runtime/parity/llama/f64", test_parity_llama_f64);
  g_test_add_func("/runtime/parity/padded-vocab", test_parity_padded_vocab);
  g_test_add_func("/runtime/parity/flash-cp/f32", test_parity_cp_f32);
  g_test_add_func("/runtime/parity/flash-cp/f64", test_parity_cp_f64);
  g_test_add_func("/runtime/loss/initial", test_initial_loss);
  g_test_add_func("/runtime/model/hyperparameters", test_model_hyperparameters);
  g_test_add_func("/runtime/weights/agree", test_weights_agree);
  g_test_add_func("/runtime/memory/prediction", test_memory);
  g_test_add_func("/runtime/memory/by-hand", test_memory_by_hand);
  g_test_add_func("/runtime/memory/activations-by-hand", test_activations_by_hand);
  g_test_add_func("/runtime/timeline/events", test_timeline);
  g_test_add_func("/runtime/checkpoint/resume", test_checkpoint_resume);
  g_test_add_func("/runtime/bad/plan", test_bad_plan);
  g_test_add_func("/runtime/bad/tokens", test_bad_tokens);
  g_test_add_func("/runtime/failure/propagates", test_rank_failure);
  return g_test_run();
}
