/* test_runtime_offload.c — the optimizer offloaded to host memory (ZeRO-Offload,
 * `--offload optimizer`; docs/executor.md): the fp32 master, both AdamW
 * moments and a copy of the gradient shard live on a cpu backend of their
 * own, AdamW runs there, and the updated parameters go back to the device.
 *
 * Reference: the same plan without offload. The update is the same
 * arithmetic on the same values in the same order, so the losses of 5 steps,
 * every parameter and every fp32 master after them are equal bit for bit
 * (fp32 runs without offload keep no master; their parameters are the
 * master). Layouts: dp 2 with ZeRO-1/2/3 (f32, bf16, fp16 with loss
 * scaling; f64, whose host master and moments are f64), pp 2 · dp 2 with buckets (the per-bucket shard layout), tp 2 ·
 * dp 2 with sequence parallelism, dp 1 (ZeRO-1 on one DP rank: unsharded) and
 * tiny-moe ep 2 · dp 4 (the experts' shard over EDP: the split layout).
 *
 * Memory: the device holds no optimizer bytes (measured, and the planner's
 * prediction with offload is 0), the host backend holds what the planner's
 * `host` says; by hand for tiny-gpt dp 2 ZeRO-2: 220,544 padded parameters,
 * a shard of 110,272, (12 + 4) B each in f32 = 1,764,352 B, (12 + 2) B in
 * bf16 = 1,543,808 B. The same bytes are counted in the device backend's
 * host-buffer category (PxMemStats.host_current: the host backend's memory
 * is the device's host buffers, px_backend_new_host; pinned on cuda,
 * ordinary memory on the cpu backend these tests run). A checkpoint saved with offload resumes without it and
 * the other way round, bit for bit.
 *
 * Parameter offload (`--offload optimizer+params`, ZeRO-Infinity's
 * offload_param, ZeRO-3 only): the rank's parameter shard lives in host
 * memory too, each layer's piece uploaded into the ZeRO-3 gather right
 * before it (forward, backward, recompute), the optimizer's rounding written
 * back into it. Against the run without offload and the one offloading the
 * optimizer, bit for bit: dp 2 f32 / bf16 / fp16 / f64, full recompute, pp 2 ·
 * dp 2, interleaved pp 2 · vpp 2 · dp 2, tp 2 · dp 2 with SP, tiny-moe ep 2 ·
 * dp 4 (split layout). The device holds no weights (measured and predicted);
 * its buffers are the optimizer-offload run's (the upload lands straight in
 * the gather slot: no staging buffer); the host holds the optimizer-offload
 * run's bytes plus that run's device weights. By hand for tiny-gpt dp 2
 * ZeRO-3 (220,544 parameters: wte 16,384 + wpe 4,096 + 4 blocks of 49,984 +
 * final norm 128; the LM head reads the tied wte; a shard of 110,272):
 * f32 (4 master + 8 moments + 4 gradient copy + 4 parameters) = 20 B ×
 * 110,272 = 2,205,440 B; bf16 (12 + 2 + 2) = 16 B × 110,272 = 1,764,352 B.
 * pp 2 · dp 2 f32: stage 0 (embeddings + 2 blocks, 120,448: a shard of
 * 60,224) 1,204,480 B, stage 1 (2 blocks + final norm + the LM head's copy
 * of wte, 116,480: a shard of 58,240) 1,164,800 B. dp 1 (one partition of
 * all 220,544, each layer uploaded before its use) f32: 4,410,880 B on the
 * host; on the device the two gathered layers (the largest a block,
 * 2 · 4 · 49,984 = 399,872 B) and the gradients' buffer (4 · 220,544 =
 * 882,176 B) added to the buffers: 1,282,048 B. With ZeRO < 3 parameter
 * offload is refused (the planner's rule: one line, the same in sim and exec). */
#include <glib.h>
#include <math.h>
#include <string.h>
#include "runtime.h"
#include "schedule.h"
#include "parity.h"

typedef struct {
  Layout l;
  int ep;
  PxDType dt;
  double bucket_bytes;
} Case;

static PxRuntime *case_runtime(const PxModel *model, const Case *c, PxOffload off) {
  PxPlan plan;
  layout_plan(&c->l, &plan);
  plan.ep = MAX(c->ep, 1);
  plan.bucket_bytes = c->bucket_bytes;
  plan.offload = off;
  PxRunOptions o;
  layout_options(&o, c->dt);
  if (c->dt == PX_DTYPE_F16) {
    o.loss_scale = 1024;
    o.loss_scale_window = 2;
  }
  g_autoptr(GError) error = NULL;
  PxRuntime *rt = px_runtime_new(model, &plan, &o, &error);
  px_plan_clear(&plan);
  g_assert_no_error(error);
  return rt;
}

/* every tensor's fp32 master of two runs, compared bit for bit */
static void masters_equal(PxRuntime *a, PxRuntime *b, const PxModel *model, const char *what) {
  for (guint li = 0; li < model->n_layers; li++)
    for (guint t = 0; t < model->layers[li].n_tensors; t++) {
      const PxTensorSpec *sp = &model->layers[li].tensors[t];
      g_autoptr(GError) err = NULL;
      g_autofree double *x = px_runtime_get_master(a, sp->name, &err);
      g_assert_no_error(err);
      g_autofree double *y = px_runtime_get_master(b, sp->name, &err);
      g_assert_no_error(err);
      gint64 n = sp->shape[0] * (sp->ndim > 1 ? sp->shape[1] : 1);
      if (memcmp(x, y, sizeof(double) * n)) g_error("%s: the master of %s differs", what, sp->name);
    }
}

static void check_case(gconstpointer data) {
  const Case *c = data;
  g_autoptr(PxModel) model = load_model(c->l.model);
  g_autofree char *what = g_strdup_printf("%s dp%d tp%d pp%d ep%d %s zero%d %s bucket %.0f", c->l.model, c->l.dp,
                                          c->l.tp, c->l.pp, MAX(c->ep, 1), c->l.schedule, c->l.zero,
                                          px_dtype_name(c->dt), c->bucket_bytes);
  g_autoptr(PxRuntime) a = case_runtime(model, c, PX_OFFLOAD_NONE);
  g_autoptr(PxRuntime) b = case_runtime(model, c, PX_OFFLOAD_OPTIMIZER);
  double want[STEPS], got[STEPS];
  run_steps(a, STEPS, want, NULL);
  run_steps(b, STEPS, got, NULL);
  for (int s = 0; s < STEPS; s++)
    if (memcmp(&want[s], &got[s], sizeof(double)))
      g_error("%s: step %d loss %.17g with offload, %.17g without", what, s + 1, got[s], want[s]);
  g_assert_cmpfloat(params_max_rel(a, b, model), ==, 0);
  if (c->dt != PX_DTYPE_F32 && c->dt != PX_DTYPE_F64) masters_equal(a, b, model, what);
  for (int r = 0; r < px_runtime_world(b); r++) {
    PxRankMemory m;
    g_assert_true(px_runtime_memory(b, r, &m));
    g_assert_cmpint(m.measured.peak[PX_MEM_OPTIMIZER], ==, 0);
    g_assert_cmpfloat(m.predicted.optimizer, ==, 0);
    double host = (double)m.host.current[PX_MEM_OPTIMIZER] + (double)m.host.current[PX_MEM_GRADS];
    if (host != m.predicted.host)
      g_error("%s rank %d: %.0f B in host memory, the planner says %.0f B", what, r, host, m.predicted.host);
    if ((double)m.measured.host_current != m.predicted.host)
      g_error("%s rank %d: %" G_GINT64_FORMAT " B in the device's host buffers, the planner says %.0f B", what, r,
              m.measured.host_current, m.predicted.host);
  }
  if (c->dt == PX_DTYPE_F32) expect_memory(b, what);
}

static const Case cases[] = {
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_F32, 0},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_BF16, 0},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_F32, 0},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_F64, 0},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_F16, 0},
  {{"tiny-gpt", 2, 1, 2, 1, "1f1b", 1, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_BF16, 60000},
  {{"tiny-gpt", 2, 2, 1, 1, "1f1b", 2, PX_CKPT_NONE, 2, 8, TRUE, 1}, 1, PX_DTYPE_F32, 0},
  {{"tiny-gpt", 1, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_F32, 0},
  {{"tiny-moe", 4, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 2, 8, FALSE, 1}, 2, PX_DTYPE_F32, 0},
};

/* ---- parameter offload ---- */

static const Case pcases[] = {
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_F32, 0},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_BF16, 0},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_F16, 0},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_F64, 0},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 3, PX_CKPT_FULL, 2, 8, FALSE, 1}, 1, PX_DTYPE_F32, 0},
  {{"tiny-gpt", 2, 1, 2, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_F32, 0},
  {{"tiny-gpt", 2, 1, 2, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_BF16, 0},
  {{"tiny-gpt", 2, 1, 2, 2, "interleaved", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, PX_DTYPE_F32, 0},
  {{"tiny-gpt", 2, 2, 1, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, TRUE, 1}, 1, PX_DTYPE_F32, 0},
  {{"tiny-moe", 4, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, 2, PX_DTYPE_F32, 0},
  /* dp·cp 1: one partition of everything, each layer uploaded before its use */
  {{"tiny-gpt", 1, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_F32, 0},
  {{"tiny-gpt", 1, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_BF16, 0},
  {{"tiny-gpt", 1, 1, 1, 1, "1f1b", 3, PX_CKPT_FULL, 2, 8, FALSE, 1}, 1, PX_DTYPE_F32, 0},
  {{"tiny-gpt", 1, 1, 2, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_F32, 0},
  {{"tiny-gpt", 1, 2, 1, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, TRUE, 1}, 1, PX_DTYPE_F32, 0},
};

static double host_bytes(const PxRankMemory *m) {
  return (double)m->host.peak[PX_MEM_WEIGHTS] + (double)m->host.peak[PX_MEM_GRADS] +
         (double)m->host.peak[PX_MEM_OPTIMIZER];
}

static void check_params_case(gconstpointer data) {
  const Case *c = data;
  g_autoptr(PxModel) model = load_model(c->l.model);
  g_autofree char *what = g_strdup_printf("params: %s dp%d tp%d pp%d vpp%d ep%d %s %s zero%d %s", c->l.model, c->l.dp,
                                          c->l.tp, c->l.pp, MAX(c->l.vpp, 1), MAX(c->ep, 1), c->l.schedule,
                                          px_ckpt_name(c->l.ckpt), c->l.zero, px_dtype_name(c->dt));
  g_autoptr(PxRuntime) a = case_runtime(model, c, PX_OFFLOAD_NONE);
  g_autoptr(PxRuntime) b = case_runtime(model, c, PX_OFFLOAD_OPTIMIZER);
  g_autoptr(PxRuntime) p = case_runtime(model, c, PX_OFFLOAD_OPTIMIZER_PARAMS);
  double want[STEPS], opt[STEPS], got[STEPS];
  run_steps(a, STEPS, want, NULL);
  run_steps(b, STEPS, opt, NULL);
  run_steps(p, STEPS, got, NULL);
  for (int s = 0; s < STEPS; s++)
    if (memcmp(&want[s], &got[s], sizeof(double)) || memcmp(&opt[s], &got[s], sizeof(double)))
      g_error("%s: step %d loss %.17g with parameter offload, %.17g without, %.17g offloading the optimizer", what,
              s + 1, got[s], want[s], opt[s]);
  g_assert_cmpfloat(params_max_rel(a, p, model), ==, 0);
  if (c->dt != PX_DTYPE_F32 && c->dt != PX_DTYPE_F64) masters_equal(a, p, model, what);
  for (int r = 0; r < px_runtime_world(p); r++) {
    PxRankMemory m, mo;
    g_assert_true(px_runtime_memory(p, r, &m));
    g_assert_true(px_runtime_memory(b, r, &mo));
    /* the device: no weights, no optimizer; the gradients and activations as predicted */
    g_assert_cmpint(m.measured.peak[PX_MEM_WEIGHTS], ==, 0);
    g_assert_cmpfloat(m.predicted.weights, ==, 0);
    g_assert_cmpint(m.measured.peak[PX_MEM_OPTIMIZER], ==, 0);
    g_assert_cmpfloat((double)m.measured.current[PX_MEM_GRADS], ==, m.predicted.gradients);
    if (c->dt == PX_DTYPE_F32 && m.measured.peak[PX_MEM_ACTIVATIONS] != m.predicted.activations)
      g_error("%s rank %d: peak activations %.0f B, predicted %.0f B", what, r,
              (double)m.measured.peak[PX_MEM_ACTIVATIONS], m.predicted.activations);
    /* the buffers: with dp·cp > 1 the optimizer-offload run's (the same
     * gathers: no staging buffer); with dp·cp 1 that run's plus what the
     * planner adds, the two gathered layers and the gradients' full buffer
     * (measured without pipeline parallelism only: there a send's payload is
     * freed once the send completes, so the peak depends on the threads'
     * timing; and in f32: mixed precision's fp32 staging of the gradients is
     * transient, and with dp·cp 1 only the partitioned run has it) */
    if (c->l.dp > 1) g_assert_cmpfloat(m.predicted.buffers, ==, mo.predicted.buffers);
    if (c->l.pp == 1 && (c->l.dp > 1 || c->dt == PX_DTYPE_F32))
      g_assert_cmpfloat((double)m.measured.peak[PX_MEM_BUFFERS] - (double)mo.measured.peak[PX_MEM_BUFFERS], ==,
                        m.predicted.buffers - mo.predicted.buffers);
    /* the host: the optimizer-offload run's, plus the shard that run keeps on the device */
    double host = host_bytes(&m);
    g_assert_cmpfloat(mo.measured.current[PX_MEM_WEIGHTS], >, 0);
    g_assert_cmpfloat(host, ==, host_bytes(&mo) + (double)mo.measured.current[PX_MEM_WEIGHTS]);
    g_assert_cmpfloat(m.predicted.host, ==, mo.predicted.host + mo.predicted.weights);
    if (host != m.predicted.host)
      g_error("%s rank %d: %.0f B in host memory, the planner says %.0f B", what, r, host, m.predicted.host);
    g_assert_cmpfloat((double)m.measured.host_current, ==, m.predicted.host); /* the device's host buffers */
  }
}

/* parameter offload, tiny-gpt dp 2 ZeRO-3 and pp 2 · dp 2: the host bytes by hand (header) */
static void test_params_host_by_hand(void) {
  g_autoptr(PxModel) model = load_model("tiny-gpt");
  struct {
    int dp, pp;
    PxDType dt;
    double want[2]; /* per stage */
  } k[] = {{2, 1, PX_DTYPE_F32, {2205440, 2205440}}, {2, 1, PX_DTYPE_BF16, {1764352, 1764352}},
           {2, 2, PX_DTYPE_F32, {1204480, 1164800}}, {1, 1, PX_DTYPE_F32, {4410880, 4410880}}};
  for (gsize i = 0; i < G_N_ELEMENTS(k); i++) {
    Case c = {{"tiny-gpt", k[i].dp, 1, k[i].pp, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, k[i].dt, 0};
    g_autoptr(PxRuntime) rt = case_runtime(model, &c, PX_OFFLOAD_OPTIMIZER_PARAMS);
    run_steps(rt, 1, NULL, NULL);
    for (int r = 0; r < px_runtime_world(rt); r++) {
      PxRankMemory m;
      g_assert_true(px_runtime_memory(rt, r, &m));
      g_assert_cmpfloat(host_bytes(&m), ==, k[i].want[m.stage]);
      g_assert_cmpfloat(m.predicted.host, ==, k[i].want[m.stage]);
      /* the device's host-buffer category: the same bytes (the step's staging is gone) */
      g_assert_cmpfloat((double)m.measured.host_current, ==, k[i].want[m.stage]);
      g_assert_false(m.host_pinned); /* the cpu backend's host buffers are ordinary memory */
      g_assert_cmpint(m.measured.peak[PX_MEM_WEIGHTS], ==, 0);
      /* one rank, f32: two gathered blocks 2 · 4 · 49,984 + the gradient buffer 4 · 220,544 */
      if (k[i].dp == 1) g_assert_cmpfloat(m.predicted.buffers, ==, 1282048);
    }
  }
}

/* tiny-gpt dp 2 ZeRO-2: the host bytes worked out by hand (header) */
static void test_host_by_hand(void) {
  g_autoptr(PxModel) model = load_model("tiny-gpt");
  const double want[2] = {1764352, 1543808};
  const PxDType dts[2] = {PX_DTYPE_F32, PX_DTYPE_BF16};
  for (int k = 0; k < 2; k++) {
    Case c = {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, dts[k], 0};
    g_autoptr(PxRuntime) rt = case_runtime(model, &c, PX_OFFLOAD_OPTIMIZER);
    run_steps(rt, 1, NULL, NULL);
    for (int r = 0; r < 2; r++) {
      PxRankMemory m;
      g_assert_true(px_runtime_memory(rt, r, &m));
      g_assert_cmpfloat((double)(m.host.current[PX_MEM_OPTIMIZER] + m.host.current[PX_MEM_GRADS]), ==, want[k]);
      g_assert_cmpfloat(m.predicted.host, ==, want[k]);
      g_assert_cmpfloat((double)m.measured.host_current, ==, want[k]); /* the device's host-buffer category */
      g_assert_cmpint(m.measured.host_peak, >=, m.measured.host_current);
    }
  }
}

/* Two steps with offload `save`, saved, resumed with offload `resume` for
 * the rest: the losses of the straight run, bit for bit. */
static void check_resume(const PxModel *model, const Case *c, PxOffload save, PxOffload resume,
                         const double *straight) {
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp("px-offload-XXXXXX", &error);
  g_assert_no_error(error);
  double resumed[STEPS];
  {
    g_autoptr(PxRuntime) rt = case_runtime(model, c, save);
    run_steps(rt, 2, resumed, NULL);
    g_assert_true(px_runtime_save(rt, dir, &error));
    g_assert_no_error(error);
  }
  g_autoptr(PxRuntime) rt = case_runtime(model, c, resume);
  g_assert_true(px_runtime_resume(rt, dir, &error));
  g_assert_no_error(error);
  run_steps(rt, STEPS - 2, resumed + 2, NULL);
  g_assert_cmpmem(straight, sizeof resumed, resumed, sizeof resumed);
  g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
  g_assert_cmpint(system(cmd), ==, 0);
}

/* saved with offload, resumed without (and the other way): the same run */
static void test_checkpoint(void) {
  g_autoptr(PxModel) model = load_model("tiny-gpt");
  Case c = {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_BF16, 0};
  double straight[STEPS];
  {
    g_autoptr(PxRuntime) rt = case_runtime(model, &c, PX_OFFLOAD_NONE);
    run_steps(rt, STEPS, straight, NULL);
  }
  check_resume(model, &c, PX_OFFLOAD_OPTIMIZER, PX_OFFLOAD_NONE, straight);
  check_resume(model, &c, PX_OFFLOAD_NONE, PX_OFFLOAD_OPTIMIZER, straight);
}

/* parameter offload saved, resumed without it or offloading the optimizer
 * only (and the other way round): the same run */
static void test_params_checkpoint(void) {
  g_autoptr(PxModel) model = load_model("tiny-gpt");
  Case c = {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, PX_DTYPE_BF16, 0};
  double straight[STEPS];
  {
    g_autoptr(PxRuntime) rt = case_runtime(model, &c, PX_OFFLOAD_NONE);
    run_steps(rt, STEPS, straight, NULL);
  }
  const PxOffload pairs[4][2] = {{PX_OFFLOAD_OPTIMIZER_PARAMS, PX_OFFLOAD_NONE},
                                 {PX_OFFLOAD_NONE, PX_OFFLOAD_OPTIMIZER_PARAMS},
                                 {PX_OFFLOAD_OPTIMIZER_PARAMS, PX_OFFLOAD_OPTIMIZER},
                                 {PX_OFFLOAD_OPTIMIZER, PX_OFFLOAD_OPTIMIZER_PARAMS}};
  for (int k = 0; k < 4; k++) check_resume(model, &c, pairs[k][0], pairs[k][1], straight);
}

/* ZeRO < 3: refused by the plan's validation (common/plan.c, the rule
 * parallax-sim applies too), in one line */
static void test_params_refused(void) {
  g_autoptr(PxModel) model = load_model("tiny-gpt");
  for (int zero = 0; zero < 3; zero++) {
    PxPlan plan;
    Layout l = {"tiny-gpt", 2, 1, 1, 1, "1f1b", zero, PX_CKPT_NONE, 2, 8, FALSE, 1};
    layout_plan(&l, &plan);
    plan.offload = PX_OFFLOAD_OPTIMIZER_PARAMS;
    g_autoptr(GError) error = NULL;
    PxRuntime *rt = plan_runtime(model, &plan, PX_DTYPE_F32, FALSE, &error);
    g_assert_null(rt);
    g_assert_nonnull(error);
    g_autofree char *want = g_strdup_printf("offloading parameters needs ZeRO stage 3 (stage is %d)", zero);
    g_assert_nonnull(strstr(error->message, want));
    g_assert_null(strchr(error->message, '\n'));
  }
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    const Case *c = &cases[i];
    g_autofree char *path = g_strdup_printf("/offload/parity/%s-dp%d-tp%d-pp%d-ep%d-zero%d-%s%s", c->l.model, c->l.dp,
                                            c->l.tp, c->l.pp, MAX(c->ep, 1), c->l.zero, px_dtype_name(c->dt),
                                            c->bucket_bytes > 0 ? "-buckets" : "");
    g_test_add_data_func(path, c, check_case);
  }
  for (gsize i = 0; i < G_N_ELEMENTS(pcases); i++) {
    const Case *c = &pcases[i];
    g_autofree char *path = g_strdup_printf("/offload/params/%s-dp%d-tp%d-pp%d-vpp%d-ep%d-%s-zero%d-%s", c->l.model,
                                            c->l.dp, c->l.tp, c->l.pp, MAX(c->l.vpp, 1), MAX(c->ep, 1),
                                            px_ckpt_name(c->l.ckpt), c->l.zero, px_dtype_name(c->dt));
    g_test_add_data_func(path, c, check_params_case);
  }
  g_test_add_func("/offload/memory/host-by-hand", test_host_by_hand);
  g_test_add_func("/offload/memory/params-host-by-hand", test_params_host_by_hand);
  g_test_add_func("/offload/checkpoint/params-across", test_params_checkpoint);
  g_test_add_func("/offload/checkpoint/across", test_checkpoint);
  g_test_add_func("/offload/refused/params", test_params_refused);
  return g_test_run();
}
