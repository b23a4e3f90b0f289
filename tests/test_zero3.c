/* test_zero3.c — common/zero3.h, by hand, on tiny-gpt (7 layers: embedding
 * 0, blocks 1-4, final norm 5, head 6; its wte tied to the head).
 *
 * The order of a pass's layers: a forward 0..6; a backward 6..0; under full
 * recompute with 2-block segments ({1, 2}, {3, 4}) the backward reaches
 * block 4 and recomputes 3, 4 first, then runs 4 and 3, then recomputes
 * 1, 2 before 2 and 1: 6 5 3 4 4 3 1 2 2 1 0 (exec/gpt.c's order; the
 * runtime's measured gathers agree with the walk in test_runtime_zero3).
 *
 * The walk of gpipe, dp 2, pp 1, m 4 (GATHER_PARAMS F0..F3 B0..B3): a layer
 * is gathered unless a slot holds it; 2·m·7 uses, of which the turn F3 → B0
 * finds the head and the norm still there: 54 gathers, only GATHER_PARAMS's
 * on demand. The elements DP rank 0 receives (S = 110,272, the derivation
 * in test_runtime_zero3): F0 110,272. */
#include <glib.h>
#include "model.h"
#include "partition.h"
#include "plan.h"
#include "schedule.h"
#include "zero3.h"

static PxModel *tiny(void) {
  g_autoptr(GError) e = NULL;
  PxModel *m = px_model_load("tiny-gpt", &e);
  g_assert_no_error(e);
  return m;
}

static void plan_of(PxPlan *p, const PxModel *m, const char *schedule, int pp, PxCheckpoint ckpt, int interval) {
  g_autoptr(GError) e = NULL;
  px_plan_init(p);
  p->dp = 2;
  p->pp = pp;
  g_assert_true(px_schedule_parse(schedule, &p->schedule));
  p->zero = 3;
  p->ckpt = ckpt;
  p->ckpt_interval = interval;
  p->mbs = 1;
  p->gbs = 8;
  p->seq = 16;
  p->precision = PX_PREC_FP32;
  g_assert_true(px_plan_validate(p, m, NULL, &e));
  g_assert_no_error(e);
}

static void expect_layers(const PxModel *m, const PxPlan *p, gboolean backward, const int *want, int n) {
  g_autofree int *l = NULL;
  int got = px_zero3_pass_layers(m, p, 0, 7, backward, &l);
  g_assert_cmpint(got, ==, n);
  for (int i = 0; i < n; i++) g_assert_cmpint(l[i], ==, want[i]);
  g_assert_cmpint(px_zero3_pass_first(m, p, 0, 7, backward), ==, want[0]);
}

static void test_pass_layers(void) {
  g_autoptr(PxModel) m = tiny();
  PxPlan p;
  plan_of(&p, m, "1f1b", 1, PX_CKPT_NONE, 1);
  expect_layers(m, &p, FALSE, (const int[]){0, 1, 2, 3, 4, 5, 6}, 7);
  expect_layers(m, &p, TRUE, (const int[]){6, 5, 4, 3, 2, 1, 0}, 7);
  px_plan_clear(&p);
  plan_of(&p, m, "1f1b", 1, PX_CKPT_FULL, 2);
  expect_layers(m, &p, TRUE, (const int[]){6, 5, 3, 4, 4, 3, 1, 2, 2, 1, 0}, 11);
  px_plan_clear(&p);
}

static void test_walk_gpipe(void) {
  g_autoptr(PxModel) m = tiny();
  g_autoptr(GError) e = NULL;
  PxPlan p;
  plan_of(&p, m, "gpipe", 1, PX_CKPT_NONE, 1);
  g_assert_true(px_zero3_by_layer(m, &p));
  g_autoptr(PxPartition) part = px_partition_new(m, &p, NULL, &e);
  g_assert_no_error(e);
  g_autoptr(PxProgram) prog = px_program_new(&p, part, &e);
  g_assert_no_error(e);
  g_autoptr(PxZero3Walk) w = px_zero3_walk_new(m, &p, part, prog, 0); /* rank 0: DP rank 0 */
  int gathers = 0, on_demand = 0, forwards = 0;
  for (guint i = 0; i < w->n; i++) {
    const PxInstr *in = &prog->ranks[0].instrs[i];
    gathers += w->gathers[i];
    on_demand += w->on_demand[i];
    if (in->kind == PX_OP_GATHER_PARAMS) g_assert_cmpint(w->received[i], ==, 0); /* the embedding: rank 0's shard */
    if (in->kind == PX_OP_FORWARD && forwards++ == 0) g_assert_cmpint(w->received[i], ==, 110272);
  }
  g_assert_cmpint(gathers, ==, 54);
  g_assert_cmpint(on_demand, ==, 1);
  px_plan_clear(&p);
}

static void test_by_layer(void) {
  g_autoptr(PxModel) m = tiny();
  PxPlan p;
  plan_of(&p, m, "1f1b", 1, PX_CKPT_NONE, 1);
  g_assert_true(px_zero3_by_layer(m, &p));
  p.zero = 2;
  g_assert_false(px_zero3_by_layer(m, &p));
  p.zero = 3;
  p.dp = 1;
  g_assert_false(px_zero3_by_layer(m, &p)); /* nothing to gather */
  px_plan_clear(&p);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/zero3/pass-layers", test_pass_layers);
  g_test_add_func("/zero3/walk-gpipe", test_walk_gpipe);
  g_test_add_func("/zero3/by-layer", test_by_layer);
  return g_test_run();
}
