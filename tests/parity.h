/* parity.h — the layouts of the CI parity subset and how a test makes a
 * runtime for one, shared by test_runtime.c (every rank a thread) and
 * test_parity_mpi.c (every rank a process under mpirun). */
#pragma once
#include <glib.h>
#include <math.h>
#include <string.h>
#include "model.h"
#include "runtime.h"
#include "schedule.h"

#define STEPS 5

typedef struct {
  const char *model;
  int dp, tp, pp, vpp;
  const char *schedule;
  int zero;
  PxCheckpoint ckpt;
  int mbs, gbs;
  gboolean sp;
  int interval;  /* full recompute: blocks per checkpoint segment (0: 1) */
} Layout;

static G_GNUC_UNUSED PxModel *load_model(const char *name) {
  g_autoptr(GError) error = NULL;
  PxModel *m = px_model_load(name, &error);
  g_assert_no_error(error);
  return m;
}

/* A GPT-2-style model whose vocabulary (251, prime) no tp divides: the
 * vocabulary-parallel shards are padded. */
static G_GNUC_UNUSED PxModel *prime_vocab_model(void) {
  g_autoptr(GError) error = NULL;
  PxModelDesc d = {.name = "prime-vocab", .layers = 2, .hidden = 32, .heads = 4, .kv_heads = 4, .ffn = 64,
                   .vocab = 251, .max_seq = 16, .ffn_kind = PX_FFN_GELU, .norm = PX_NORM_LAYERNORM,
                   .pos = PX_POS_LEARNED, .bias = TRUE, .tied = TRUE};
  PxModel *model = px_model_new(&d, &error);
  g_assert_no_error(error);
  return model;
}

/* Run steps steps of rt, their losses (and gradient norms) into loss (norm)
 * when non-NULL; every step must succeed. */
static G_GNUC_UNUSED void run_steps(PxRuntime *rt, int steps, double *loss, double *norm) {
  g_autoptr(GError) error = NULL;
  for (int s = 0; s < steps; s++) {
    PxStepResult r;
    g_assert_true(px_runtime_step(rt, &r, &error));
    g_assert_no_error(error);
    g_assert_cmpint(r.step, ==, px_runtime_steps_done(rt));
    if (loss) loss[s] = r.loss;
    if (norm) norm[s] = r.grad_norm;
  }
}

/* Every rank's measured memory equals the planner's prediction exactly:
 * weights, gradients and optimizer states (the executor allocates what the
 * planner counts) and the peak activations (the executor allocates the core's
 * activation list, common/activations.h, and the prediction walks the same
 * list through the schedule: each in-flight pair weighted by its own chunk,
 * plus one micro-batch's transients: recompute, the next layer's input);
 * nothing left over between steps. what names the run in a failure. */
static G_GNUC_UNUSED void expect_memory(PxRuntime *rt, const char *what) {
  for (int r = 0; r < px_runtime_world(rt); r++) {
    PxRankMemory m;
    px_runtime_memory(rt, r, &m);
    g_assert_cmpfloat((double)m.measured.current[PX_MEM_WEIGHTS], ==, m.predicted.weights);
    g_assert_cmpfloat((double)m.measured.current[PX_MEM_GRADS], ==, m.predicted.gradients);
    g_assert_cmpfloat((double)m.measured.current[PX_MEM_OPTIMIZER], ==, m.predicted.optimizer);
    g_assert_cmpfloat(m.predicted.weights, >, 0);
    double act = (double)m.measured.peak[PX_MEM_ACTIVATIONS], want = m.predicted.activations;
    if (act != want) g_error("%s rank %d: peak activations %.0f B, predicted %.0f B", what, r, act, want);
    g_assert_cmpint(m.measured.current[PX_MEM_ACTIVATIONS], ==, 0);
  }
}

/* |a - b| relative to the larger (0 where they are equal). */
static inline double rel_diff(double a, double b) { return a == b ? 0 : fabs(a - b) / MAX(fabs(a), fabs(b)); }

/* The largest difference between every parameter of two runs of model,
 * relative to the larger of the two values or floor, whichever is larger (0
 * where they are equal). */
static G_GNUC_UNUSED double params_max_diff(PxRuntime *a, PxRuntime *b, const PxModel *model, double floor) {
  double worst = 0;
  for (guint li = 0; li < model->n_layers; li++)
    for (guint t = 0; t < model->layers[li].n_tensors; t++) {
      const PxTensorSpec *sp = &model->layers[li].tensors[t];
      g_autoptr(GError) err = NULL;
      g_autofree double *x = px_runtime_get_param(a, sp->name, &err);
      g_assert_no_error(err);
      g_autofree double *y = px_runtime_get_param(b, sp->name, &err);
      g_assert_no_error(err);
      gint64 n = sp->shape[0] * (sp->ndim > 1 ? sp->shape[1] : 1);
      for (gint64 e = 0; e < n; e++)
        if (x[e] != y[e]) worst = MAX(worst, fabs(x[e] - y[e]) / MAX(MAX(fabs(x[e]), fabs(y[e])), floor));
    }
  return worst;
}

/* The largest relative difference between every parameter of two runs of
 * model (0 where they are equal). */
static G_GNUC_UNUSED double params_max_rel(PxRuntime *a, PxRuntime *b, const PxModel *model) {
  return params_max_diff(a, b, model, 0);
}

/* Elements of the model's tensor called name (0: none). */
static G_GNUC_UNUSED gint64 tensor_numel(const PxModel *model, const char *name) {
  for (guint i = 0; i < model->n_layers; i++)
    for (guint t = 0; t < model->layers[i].n_tensors; t++)
      if (!strcmp(model->layers[i].tensors[t].name, name))
        return model->layers[i].tensors[t].shape[0] * model->layers[i].tensors[t].shape[1];
  return 0;
}

static G_GNUC_UNUSED void layout_plan(const Layout *l, PxPlan *p) {
  px_plan_init(p);
  p->dp = l->dp;
  p->tp = l->tp;
  p->pp = l->pp;
  p->vpp = l->vpp ? l->vpp : 1;
  g_assert_true(px_schedule_parse(l->schedule, &p->schedule));
  p->zero = l->zero;
  p->ckpt = l->ckpt;
  p->mbs = l->mbs;
  p->gbs = l->gbs;
  p->seq = 16;
  p->seq_parallel = l->sp;
  p->ckpt_interval = l->interval ? l->interval : 1;
  p->precision = PX_PREC_FP32;
}

/* The options every parity run uses. */
static inline void layout_options(PxRunOptions *o, PxDType dt) {
  px_run_options_init(o);
  o->dtype = dt;
  o->seed = 7;
  o->lr = 3e-3;
  o->warmup = 2;
  o->decay_steps = STEPS;
  o->timeout_s = 30;
}

/* The runtime of a plan (cleared here) with the parity options, under the
 * local communicator's rendezvous mode or not. */
static G_GNUC_UNUSED PxRuntime *plan_runtime(const PxModel *model, PxPlan *plan, PxDType dt, gboolean rendezvous,
                                             GError **error) {
  PxRunOptions o;
  layout_options(&o, dt);
  o.rendezvous = rendezvous;
  PxRuntime *rt = px_runtime_new(model, plan, &o, error);
  px_plan_clear(plan);
  return rt;
}

/* The runtime of a layout with context parallelism over cp ranks (1: none)
 * and an attention kernel (PX_ATTN_DEFAULT: the plan's). */
static G_GNUC_UNUSED PxRuntime *layout_runtime_attn(const PxModel *model, const Layout *l, int cp, PxAttention attn,
                                                    PxDType dt, GError **error) {
  PxPlan plan;
  layout_plan(l, &plan);
  plan.cp = cp;
  plan.attention = attn;
  /* the plan a CP stack or a fused attention kernel runs (the planner refuses
   * both in fp32: Transformer Engine's ring attention and FlashAttention are
   * 16-bit); the executor computes in dt */
  if (cp > 1 || px_attention_fused(attn)) plan.precision = PX_PREC_BF16;
  return plan_runtime(model, &plan, dt, FALSE, error);
}

static G_GNUC_UNUSED PxRuntime *layout_runtime_cp(const PxModel *model, const Layout *l, int cp, PxDType dt,
                                                  GError **error) {
  return layout_runtime_attn(model, l, cp, PX_ATTN_DEFAULT, dt, error);
}

static G_GNUC_UNUSED PxRuntime *layout_runtime(const PxModel *model, const Layout *l, PxDType dt, GError **error) {
  PxPlan plan;
  layout_plan(l, &plan);
  return plan_runtime(model, &plan, dt, FALSE, error);
}

/* Registers data's check twice: at path, and at the path with "rendezvous/"
 * after the first component's slash, run under the rendezvous mode. */
static G_GNUC_UNUSED void add_with_rendezvous(const char *prefix, const char *rest, gconstpointer data,
                                              GTestDataFunc plain, GTestDataFunc rendezvous) {
  g_autofree char *a = g_strdup_printf("%s%s", prefix, rest), *b = g_strdup_printf("%srendezvous/%s", prefix, rest);
  g_test_add_data_func(a, data, plain);
  g_test_add_data_func(b, data, rendezvous);
}

/* The parity subset: every value of every axis appears, and the pairs that
 * interact (ZeRO x dp, tied x pp, TP x vocab-parallel loss, zb-h1 x ckpt,
 * interleaved x tp) are covered. */
static const G_GNUC_UNUSED Layout parity_layouts[] = {
  {"tiny-gpt", 1, 1, 2, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1},
  {"tiny-gpt", 1, 1, 4, 1, "gpipe", 0, PX_CKPT_NONE, 2, 8, FALSE, 1},
  {"tiny-gpt", 1, 1, 2, 1, "zb-h1", 0, PX_CKPT_FULL, 2, 8, FALSE, 1},
  {"tiny-gpt", 1, 1, 2, 2, "interleaved", 0, PX_CKPT_NONE, 2, 8, FALSE, 1},
  {"tiny-gpt", 1, 2, 1, 1, "1f1b", 0, PX_CKPT_SELECTIVE, 2, 8, FALSE, 1},
  {"tiny-gpt", 2, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1},
  {"tiny-gpt", 2, 1, 2, 1, "1f1b", 1, PX_CKPT_NONE, 2, 8, FALSE, 1},
  {"tiny-gpt", 2, 2, 1, 1, "gpipe", 2, PX_CKPT_FULL, 2, 8, FALSE, 1},
  {"tiny-gpt", 2, 2, 2, 1, "1f1b", 3, PX_CKPT_FULL, 2, 8, FALSE, 1},
  {"tiny-gpt", 2, 1, 4, 1, "zb-h1", 3, PX_CKPT_NONE, 1, 8, FALSE, 1},
  {"tiny-llama", 1, 2, 2, 2, "interleaved", 0, PX_CKPT_NONE, 2, 8, FALSE, 1},
  {"tiny-llama", 2, 1, 2, 1, "zb-h1", 2, PX_CKPT_SELECTIVE, 2, 8, FALSE, 1},
  {"tiny-llama", 2, 2, 4, 1, "gpipe", 1, PX_CKPT_FULL, 1, 8, FALSE, 1},
  {"tiny-gpt", 2, 2, 2, 1, "zb-h1", 1, PX_CKPT_NONE, 2, 8, TRUE, 1},
  {"tiny-llama", 2, 2, 2, 1, "1f1b", 3, PX_CKPT_FULL, 2, 8, TRUE, 1},
  {"tiny-gpt", 1, 2, 2, 2, "interleaved", 0, PX_CKPT_SELECTIVE, 2, 8, TRUE, 1},
  /* the V schedules (two chunks per rank, parts by px_schedule_part_of; the
   * last rank passes between its chunks to itself), ZB-H2, DualPipeV's
   * overlapped F&B pairs run one after the other */
  {"tiny-gpt", 1, 1, 2, 1, "zb-h2", 0, PX_CKPT_NONE, 2, 8, FALSE, 1},
  {"tiny-gpt", 2, 1, 4, 1, "zb-h2", 2, PX_CKPT_FULL, 1, 8, FALSE, 1},
  {"tiny-gpt", 1, 1, 2, 2, "zb-v", 0, PX_CKPT_NONE, 2, 8, FALSE, 1},
  {"tiny-gpt", 1, 2, 2, 2, "dualpipev", 0, PX_CKPT_SELECTIVE, 2, 8, TRUE, 1},
  {"tiny-llama", 2, 2, 2, 2, "zb-v", 1, PX_CKPT_FULL, 1, 8, FALSE, 1},
  {"tiny-llama", 2, 1, 2, 2, "dualpipev", 3, PX_CKPT_NONE, 1, 8, FALSE, 1},
  /* checkpoint segments of several blocks (DeepSpeed's interval), one uneven */
  {"tiny-gpt", 1, 1, 2, 1, "1f1b", 0, PX_CKPT_FULL, 2, 8, FALSE, 2},
  {"tiny-llama", 2, 1, 1, 1, "1f1b", 0, PX_CKPT_FULL, 2, 8, FALSE, 3},
};


/* Flash-style attention (the block op keeping the row log-sum-exp):
 * context parallelism (ring attention over cp ranks inside the data axis),
 * cp 2 and 4 alone and with tp, pp, dp, ZeRO, sequence parallelism, the
 * recompute modes and a split backward; and --attention flash on one block.
 * Against the same single rank (unfused attention). */
typedef struct {
  Layout l;
  int cp;
  PxAttention attention;
} FlashLayout;

static const G_GNUC_UNUSED FlashLayout flash_parity_layouts[] = {
  {{"tiny-gpt", 1, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1}, 2, PX_ATTN_DEFAULT},
  {{"tiny-gpt", 1, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1}, 4, PX_ATTN_DEFAULT},
  {{"tiny-gpt", 1, 2, 1, 1, "1f1b", 0, PX_CKPT_SELECTIVE, 2, 8, FALSE, 1}, 2, PX_ATTN_DEFAULT},
  {{"tiny-gpt", 1, 1, 2, 1, "1f1b", 0, PX_CKPT_FULL, 2, 8, FALSE, 1}, 2, PX_ATTN_DEFAULT},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 2, 8, FALSE, 1}, 2, PX_ATTN_DEFAULT},
  {{"tiny-gpt", 1, 2, 2, 1, "1f1b", 1, PX_CKPT_NONE, 2, 8, FALSE, 1}, 2, PX_ATTN_DEFAULT},
  {{"tiny-llama", 1, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1}, 4, PX_ATTN_DEFAULT},
  {{"tiny-llama", 1, 2, 2, 1, "zb-h1", 1, PX_CKPT_NONE, 2, 8, TRUE, 1}, 2, PX_ATTN_DEFAULT},
  {{"tiny-llama", 2, 1, 2, 1, "1f1b", 3, PX_CKPT_SELECTIVE, 1, 8, FALSE, 1}, 2, PX_ATTN_DEFAULT},
  /* flash attention without CP: one block over the whole sequence */
  {{"tiny-gpt", 1, 2, 2, 1, "1f1b", 0, PX_CKPT_SELECTIVE, 2, 8, TRUE, 1}, 1, PX_ATTN_FLASH},
  {{"tiny-llama", 2, 1, 2, 1, "1f1b", 1, PX_CKPT_FULL, 1, 8, FALSE, 1}, 1, PX_ATTN_FLASH},
  {{"tiny-llama", 1, 2, 2, 2, "interleaved", 0, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_ATTN_FLASH},
};
