/* test_flops.c — FLOPs per step against Megatron-LM's formulas
 * (Narayanan et al. 2021, appendix / eq. 3). */
#include <glib.h>
#include <math.h>
#include "flops.h"

static void gpt3_plan(PxPlan *p, PxCheckpoint ckpt) {
  px_plan_init(p);
  p->gbs = 1536;
  p->ckpt = ckpt;
  p->seq = 2048;
}

/* With full recompute: F = 96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h)). */
static void test_megatron_recompute(void) {
  g_autoptr(PxModel) m = px_model_load("gpt3-175b", NULL);
  PxPlan p;
  gpt3_plan(&p, PX_CKPT_FULL);
  PxFlops f;
  px_flops_compute(m, &p, &f);
  const double B = 1536, s = 2048, l = 96, h = 12288, V = 50257;
  double F = 96 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h));
  g_assert_cmpfloat_with_epsilon(f.hardware_per_step / F, 1.0, 1e-9);
  px_plan_clear(&p);
}

/* Without recompute (3 passes instead of 4 for the blocks):
 * 3·(24Bslh² + 4Bs²lh) + 6BshV = 72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h)). */
static void test_model_flops(void) {
  g_autoptr(PxModel) m = px_model_load("gpt3-175b", NULL);
  /* context parallelism splits each sequence's tokens over cp ranks, not the
   * work: the same count at cp 4 (and the MFU, FLOPs over step · GPUs · peak,
   * compares layouts by their time alone) */
  for (int cp = 1; cp <= 4; cp *= 4) {
    PxPlan p;
    gpt3_plan(&p, PX_CKPT_NONE);
    p.cp = cp;
    PxFlops f;
    px_flops_compute(m, &p, &f);
    const double B = 1536, s = 2048, l = 96, h = 12288, V = 50257;
    double F = 72 * B * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h));
    g_assert_cmpfloat_with_epsilon(f.model_per_step / F, 1.0, 1e-9);
    g_assert_cmpfloat(f.hardware_per_step, ==, f.model_per_step);
    /* ≈ 6N + 12·L·h·s per token, within the bias/norm/position terms (< 0.5 %) */
    g_assert_cmpfloat(fabs(f.model_per_token / f.approx_6n_per_token - 1), <, 5e-3);
    px_plan_clear(&p);
  }
}

/* Selective recompute adds the attention core only: 4·s²·h per layer per
 * sequence, once (forward recomputed). */
static void test_selective(void) {
  g_autoptr(PxModel) m = px_model_load("gpt3-175b", NULL);
  PxPlan a, b;
  gpt3_plan(&a, PX_CKPT_NONE);
  gpt3_plan(&b, PX_CKPT_SELECTIVE);
  PxFlops fa, fb;
  px_flops_compute(m, &a, &fa);
  px_flops_compute(m, &b, &fb);
  const double B = 1536, s = 2048, l = 96, h = 12288;
  g_assert_cmpfloat_with_epsilon((fb.hardware_per_step - fa.hardware_per_step) / (4 * s * s * h * l * B), 1.0,
                                 1e-12);
  px_plan_clear(&a);
  px_plan_clear(&b);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/flops/megatron/recompute", test_megatron_recompute);
  g_test_add_func("/flops/megatron/model", test_model_flops);
  g_test_add_func("/flops/selective", test_selective);
  return g_test_run();
}
