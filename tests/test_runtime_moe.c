/* test_runtime_moe.c — the executor on a mixture-of-experts model
 * (configs/models/tiny-moe.ini: 4 experts of 32, top 2 renormalised, every
 * second block MoE, load-balancing loss 0.01), every rank a thread:
 *  - loss parity, fp32 and dropless: the first 5 steps of ep 2 and ep 4,
 *    alone and with tp (sequence parallel, etp 1 or 2; etp = tp without it),
 *    pp, dp beyond ep (edp > 1), recompute and zero-bubble schedules, and ZeRO
 *    1, 2 and 3, where the experts follow DP and where they have groups of
 *    their own (expert shards over EDP, dense ones over DP: ep 2 · dp 2,
 *    ep 4 · dp 4, ep 2 · dp 4, ep 2 · tp 2 · dp 2 with etp 1, ep 2 · pp 2,
 *    etp 2 under tp 1, and dp 1 with tp 2 · etp 1 where only the experts
 *    shard, over edp 2),
 *    equal the single rank's on the same global batch to 1e-5 relative; the
 *    gradient norm too (expert gradients reduced over EDP, counted once);
 *  - the weights after two steps, experts joined over EP and ETP ranks, equal
 *    the single rank's (fp64), also gathered from ZeRO-3 shards over DP and EDP;
 *  - checkpoints: ep 2 · dp 2 ZeRO-1 saved after 3 steps resumes under one
 *    rank and under ep 2 · dp 4 ZeRO-3 with the straight run's losses (1e-5);
 *  - memory: weights, gradients and optimizer states per rank equal the
 *    planner's, and the peak activations equal the executor-stack prediction
 *    byte for byte (the MoE layer's saved tensor is px_moe_exec_layout's),
 *    with ZeRO over expert groups of their own too (common/memory.c's split:
 *    dense shards of dp·cp, expert shards of edp). ZeRO-3 with dp 1 and the
 *    experts over edp 2 (once refused) runs in test_runtime_zero3. */
#include <glib.h>
#include <math.h>
#include <string.h>
#include <glib/gstdio.h>
#include "runtime.h"
#include "schedule.h"
#include "parity.h"

typedef struct {
  int dp, tp, pp, vpp, ep, etp;
  const char *schedule;
  int zero;
  PxCheckpoint ckpt;
  gboolean sp;
} MoeLayout;

static PxRuntime *moe_runtime(const PxModel *model, const MoeLayout *m, PxDType dt, GError **error) {
  Layout l = {"tiny-moe", m->dp, m->tp, m->pp, m->vpp, m->schedule, m->zero, m->ckpt, 1, 8, m->sp, 1};
  PxPlan plan;
  layout_plan(&l, &plan);
  plan.ep = m->ep;
  plan.etp = m->etp;
  PxRunOptions o;
  layout_options(&o, dt);
  PxRuntime *rt = px_runtime_new(model, &plan, &o, error);
  px_plan_clear(&plan);
  return rt;
}

static PxRuntime *moe_stepped(const PxModel *model, const MoeLayout *m, PxDType dt, int steps, double *loss,
                              double *norm) {
  g_autoptr(GError) error = NULL;
  PxRuntime *rt = moe_runtime(model, m, dt, &error);
  g_assert_no_error(error);
  run_steps(rt, steps, loss, norm);
  return rt;
}

static const MoeLayout single = {1, 1, 1, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, FALSE};

static const MoeLayout moe_layouts[] = {
  {2, 1, 1, 1, 2, 1, "1f1b", 0, PX_CKPT_NONE, FALSE},      /* ep 2 */
  {4, 1, 1, 1, 4, 1, "1f1b", 0, PX_CKPT_NONE, FALSE},      /* ep 4 */
  {4, 1, 1, 1, 2, 1, "1f1b", 0, PX_CKPT_NONE, FALSE},      /* ep 2, edp 2 */
  {2, 2, 1, 1, 2, 1, "1f1b", 0, PX_CKPT_NONE, TRUE},       /* ep 2 · tp 2 (sp, etp 1: edp 2) */
  {1, 2, 1, 1, 1, 1, "gpipe", 0, PX_CKPT_NONE, TRUE},      /* tp 2, etp 1: the experts' edp 2 under dp 1 */
  {2, 1, 2, 1, 2, 1, "1f1b", 0, PX_CKPT_NONE, FALSE},      /* ep 2 · pp 2 */
  {2, 1, 2, 2, 2, 1, "interleaved", 0, PX_CKPT_SELECTIVE, FALSE},
  {2, 1, 2, 1, 2, 1, "zb-h1", 0, PX_CKPT_FULL, FALSE},     /* recompute through the all-to-all; B then W */
  {2, 2, 2, 1, 4, 1, "1f1b", 0, PX_CKPT_NONE, TRUE},       /* ep 4 over dp 2 · tp 2 */
  {2, 1, 1, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, FALSE},      /* ZeRO-1: ep 1, the experts follow DP */
  {4, 1, 1, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, FALSE},      /* ZeRO-3 likewise */
  /* expert tensor parallelism: each expert's f over etp */
  {2, 2, 1, 1, 2, 2, "1f1b", 0, PX_CKPT_NONE, TRUE},       /* ep 2 · etp 2 = tp 2, sp: all-gather / reduce-scatter over ETP */
  {1, 2, 1, 1, 1, 0, "1f1b", 0, PX_CKPT_NONE, FALSE},      /* etp = tp = 2 without sp: the same tokens, all-reduce */
  {2, 2, 1, 1, 1, 0, "gpipe", 2, PX_CKPT_SELECTIVE, FALSE}, /* ... with ZeRO-2 (the experts follow DP) */
  {4, 1, 1, 1, 2, 2, "1f1b", 0, PX_CKPT_NONE, FALSE},      /* etp 2 under tp 1: the ETP ranks are DP ranks */
  {2, 2, 2, 1, 2, 2, "1f1b", 0, PX_CKPT_FULL, TRUE},       /* ep 2 · etp 2 · pp 2, full recompute */
};

/* ZeRO with expert groups of their own: expert shards over EDP, dense ones
 * over DP (parity and memory) */
static const MoeLayout expert_zero[] = {
  {2, 1, 1, 1, 2, 1, "1f1b", 1, PX_CKPT_NONE, FALSE},      /* ep 2 · dp 2 ZeRO-1 (edp 1) */
  {2, 1, 1, 1, 2, 1, "1f1b", 2, PX_CKPT_NONE, FALSE},      /* ... ZeRO-2 */
  {4, 1, 1, 1, 4, 1, "1f1b", 3, PX_CKPT_NONE, FALSE},      /* ep 4 · dp 4 ZeRO-3 */
  {4, 1, 1, 1, 2, 1, "1f1b", 3, PX_CKPT_NONE, FALSE},      /* ep 2 · dp 4 ZeRO-3: experts over edp 2 */
  {2, 2, 1, 1, 2, 1, "1f1b", 1, PX_CKPT_NONE, TRUE},       /* ep 2 · tp 2 · dp 2 ZeRO-1, etp 1 (edp 2) */
  {2, 1, 2, 1, 2, 1, "1f1b", 1, PX_CKPT_NONE, FALSE},      /* ep 2 · pp 2 · dp 2 ZeRO-1 */
  {4, 1, 1, 1, 1, 2, "1f1b", 2, PX_CKPT_NONE, FALSE},      /* etp 2 under tp 1 ZeRO-2: edp 2, dp 4 */
  {1, 2, 1, 1, 1, 1, "gpipe", 1, PX_CKPT_NONE, TRUE},      /* dp 1, tp 2, etp 1 ZeRO-1: only the experts shard (edp 2) */
  {1, 2, 2, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, TRUE},       /* ... ZeRO-2 with pp 2 */
};

static void expect_parity(const PxModel *model, const MoeLayout *m, const double *ref, const double *ref_norm) {
  double got[STEPS], norm[STEPS];
  px_runtime_free(moe_stepped(model, m, PX_DTYPE_F32, STEPS, got, norm));
  for (int s = 0; s < STEPS; s++) {
    double rel = fabs(got[s] - ref[s]) / fabs(ref[s]), reln = fabs(norm[s] - ref_norm[s]) / ref_norm[s];
    if (rel > 1e-5 || reln > 1e-4)
      g_error("tiny-moe dp%d tp%d pp%d vpp%d ep%d %s zero%d: step %d loss %.9g (single %.9g, rel %.1e), "
              "grad norm %.9g (single %.9g)", m->dp, m->tp, m->pp, m->vpp, m->ep, m->schedule, m->zero, s + 1,
              got[s], ref[s], rel, norm[s], ref_norm[s]);
  }
}

static void test_parity(void) {
  g_autoptr(PxModel) model = load_model("tiny-moe");
  double ref[STEPS], ref_norm[STEPS];
  px_runtime_free(moe_stepped(model, &single, PX_DTYPE_F32, STEPS, ref, ref_norm));
  g_assert_cmpfloat(ref[STEPS - 1], <, ref[0]); /* it trains */
  for (gsize i = 0; i < G_N_ELEMENTS(moe_layouts); i++) expect_parity(model, &moe_layouts[i], ref, ref_norm);
  for (gsize i = 0; i < G_N_ELEMENTS(expert_zero); i++) expect_parity(model, &expert_zero[i], ref, ref_norm);
}

/* The weights after two steps, the experts joined over EP ranks. */
static void test_weights(void) {
  g_autoptr(PxModel) model = load_model("tiny-moe");
  g_autoptr(GError) error = NULL;
  MoeLayout split = {2, 2, 2, 1, 4, 1, "1f1b", 0, PX_CKPT_NONE, TRUE};
  MoeLayout sliced = {2, 2, 1, 1, 2, 2, "1f1b", 0, PX_CKPT_NONE, TRUE}; /* experts over ep 2 and etp 2 */
  g_autoptr(PxRuntime) a = moe_stepped(model, &single, PX_DTYPE_F64, 2, NULL, NULL);
  g_autoptr(PxRuntime) b = moe_stepped(model, &split, PX_DTYPE_F64, 2, NULL, NULL);
  g_autoptr(PxRuntime) c = moe_stepped(model, &sliced, PX_DTYPE_F64, 2, NULL, NULL);
  MoeLayout zero3 = {4, 1, 1, 1, 2, 1, "1f1b", 3, PX_CKPT_NONE, FALSE}; /* shards over dp 4 and edp 2 */
  g_autoptr(PxRuntime) d = moe_stepped(model, &zero3, PX_DTYPE_F64, 2, NULL, NULL);
  const char *names[] = {"h.1.mlp.router.weight", "h.1.mlp.experts.gate.weight", "h.3.mlp.experts.down.weight",
                         "h.2.mlp.up.weight"};
  for (gsize k = 0; k < G_N_ELEMENTS(names); k++) {
    g_autofree double *x = px_runtime_get_param(a, names[k], &error);
    g_assert_no_error(error);
    g_autofree double *y = px_runtime_get_param(b, names[k], &error);
    g_assert_no_error(error);
    g_autofree double *z = px_runtime_get_param(c, names[k], &error);
    g_assert_no_error(error);
    g_autofree double *u = px_runtime_get_param(d, names[k], &error);
    g_assert_no_error(error);
    gint64 n = tensor_numel(model, names[k]);
    g_assert_cmpint(n, >, 0);
    for (gint64 i = 0; i < n; i++)
      if (fabs(x[i] - y[i]) > 1e-12 || fabs(x[i] - z[i]) > 1e-12 || fabs(x[i] - u[i]) > 1e-12)
        g_error("%s[%" G_GINT64_FORMAT "]: %.15g (ep 4), %.15g (ep 2 · etp 2), %.15g (ep 2 · dp 4 ZeRO-3), single "
                "rank %.15g", names[k], i, y[i], z[i], u[i], x[i]);
  }
}

static void test_memory(void) {
  g_autoptr(PxModel) model = load_model("tiny-moe");
  static const MoeLayout layouts[] = {
    {1, 1, 1, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, FALSE},
    {2, 1, 2, 1, 2, 1, "1f1b", 0, PX_CKPT_NONE, FALSE},
    {2, 2, 1, 1, 4, 1, "1f1b", 0, PX_CKPT_SELECTIVE, TRUE},
    {2, 1, 2, 1, 2, 1, "gpipe", 0, PX_CKPT_NONE, FALSE},
    {2, 1, 2, 1, 2, 1, "1f1b", 0, PX_CKPT_FULL, FALSE},
    {2, 1, 1, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, FALSE},
    {2, 2, 1, 1, 2, 2, "1f1b", 0, PX_CKPT_NONE, TRUE},
    {1, 2, 2, 1, 1, 0, "1f1b", 0, PX_CKPT_SELECTIVE, FALSE},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(layouts) + G_N_ELEMENTS(expert_zero); i++) {
    const MoeLayout *l = i < G_N_ELEMENTS(layouts) ? &layouts[i] : &expert_zero[i - G_N_ELEMENTS(layouts)];
    g_autoptr(PxRuntime) rt = moe_stepped(model, l, PX_DTYPE_F32, 2, NULL, NULL);
    g_autofree char *what = g_strdup_printf("tiny-moe dp%d tp%d pp%d ep%d etp%d %s ckpt %s zero%d", l->dp, l->tp, l->pp,
                                            l->ep, l->etp, l->schedule, px_ckpt_name(l->ckpt), l->zero);
    expect_memory(rt, what);
  }
}

/* Steps 4..6 after resuming, in layout m, the checkpoint in dir. */
static void resumed_losses(const PxModel *model, const MoeLayout *m, const char *dir, double *loss) {
  g_autoptr(GError) error = NULL;
  g_autoptr(PxRuntime) rt = moe_runtime(model, m, PX_DTYPE_F32, &error);
  g_assert_no_error(error);
  g_assert_true(px_runtime_resume(rt, dir, &error));
  g_assert_no_error(error);
  g_assert_cmpint(px_runtime_steps_done(rt), ==, 3);
  run_steps(rt, 3, loss + 3, NULL);
}

/* Remove the checkpoint tree under path (two levels: step directories and their files). */
static void remove_tree(const char *path) {
  g_autoptr(GDir) d = g_dir_open(path, 0, NULL);
  for (const char *n; d && (n = g_dir_read_name(d));) {
    g_autofree char *sub = g_build_filename(path, n, NULL);
    if (g_file_test(sub, G_FILE_TEST_IS_DIR)) remove_tree(sub);
    else g_remove(sub);
  }
  g_rmdir(path);
}

/* A checkpoint saved under ep 2 · dp 2 ZeRO-1 (dense shards over DP, the
 * experts' over EDP: every element written once) resumes under one rank and
 * under ep 2 · dp 4 ZeRO-3 with the losses of the straight run. */
static void test_checkpoint(void) {
  g_autoptr(PxModel) model = load_model("tiny-moe");
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp("px-moeckpt-XXXXXX", &error);
  g_assert_no_error(error);
  MoeLayout saved = {2, 1, 1, 1, 2, 1, "1f1b", 1, PX_CKPT_NONE, FALSE};
  MoeLayout zero3 = {4, 1, 1, 1, 2, 1, "1f1b", 3, PX_CKPT_NONE, FALSE};
  double straight[6], one[6], three[6];
  px_runtime_free(moe_stepped(model, &saved, PX_DTYPE_F32, 6, straight, NULL));
  {
    g_autoptr(PxRuntime) rt = moe_stepped(model, &saved, PX_DTYPE_F32, 3, NULL, NULL);
    g_assert_true(px_runtime_save(rt, dir, &error));
    g_assert_no_error(error);
  }
  resumed_losses(model, &single, dir, one);
  resumed_losses(model, &zero3, dir, three);
  for (int s = 3; s < 6; s++)
    if (fabs(one[s] - straight[s]) > 1e-5 * straight[s] || fabs(three[s] - straight[s]) > 1e-5 * straight[s])
      g_error("step %d after resuming: one rank %.9g, ep 2 · dp 4 ZeRO-3 %.9g, straight ep 2 · dp 2 ZeRO-1 %.9g", s + 1,
              one[s], three[s], straight[s]);
  remove_tree(dir);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/runtime-moe/parity/f32", test_parity);
  g_test_add_func("/runtime-moe/weights/agree", test_weights);
  g_test_add_func("/runtime-moe/memory/prediction", test_memory);
  g_test_add_func("/runtime-moe/checkpoint/cross-layout", test_checkpoint);
  return g_test_run();
}
