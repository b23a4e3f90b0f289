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
 * in test_runtime_zero3): F0 110,272.
 *
 * The walk's description, by hand for the same program: GATHER_PARAMS
 * gathers the embedding into slot 0 (no slot bound yet: the one not bound
 * last is 0), on demand; from there each layer is prefetched into the slot
 * the layer before it does not use, so forward f (0..3) finds layer l in
 * slot (l + f) mod 2 (F0 ends with the head in slot 0 and prefetches F1's
 * embedding into slot 1). F3 ends with the head in slot 1 and the norm in
 * slot 0: B0 finds both, so backward b uses layer l in slot (l + 1 + b)
 * mod 2. Every gather but the first is a prefetch queued at the use just
 * before the layer's first use after it: at the use of the layer before
 * it in the pass, or at the last use of the pass before. The flat layout
 * (common/flat.h) the counts come from: the embedding 256·64 + 64·64 =
 * 20,480 elements, a block 12h² + 13h = 49,984, the norm 2h = 128, the head
 * (tied, the rank holds wte) none of its own: 220,544 in all. */
#include <glib.h>
#include "model.h"
#include "partition.h"
#include "plan.h"
#include "schedule.h"
#include "flat.h"
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
  /* the description: the uses, their slots, and the gathers */
  g_assert_cmpuint(w->n_uses, ==, 2 * 4 * 7);
  g_assert_cmpuint(w->n_seq, ==, 54);
  for (guint u = 0; u < w->n_uses; u++) {
    const PxZero3Use *x = &w->uses[u];
    const PxInstr *in = &prog->ranks[0].instrs[x->instr];
    int pass = (int)u / 7, t = (int)u % 7; /* F0..F3 B0..B3, 7 uses each */
    gboolean fwd = pass < 4;
    g_assert_cmpint(in->kind, ==, fwd ? PX_OP_FORWARD : PX_OP_BACKWARD);
    g_assert_cmpint(in->mb, ==, pass % 4);
    g_assert_cmpint(x->layer, ==, fwd ? t : 6 - t);
    g_assert_cmpint(x->slot, ==, fwd ? (x->layer + pass) % 2 : (x->layer + 1 + pass - 4) % 2);
    g_assert_true(u >= w->use_at[x->instr] && u < w->use_at[x->instr + 1]);
  }
  const PxZero3Gather *g0 = &w->seq[0];
  g_assert_cmpint(prog->ranks[0].instrs[g0->instr].kind, ==, PX_OP_GATHER_PARAMS);
  g_assert_cmpint(g0->use, ==, -1);
  g_assert_cmpint(g0->layer, ==, 0);
  g_assert_cmpint(g0->slot, ==, 0);
  g_assert_true(g0->on_demand);
  for (guint q = 1; q < w->n_seq; q++) {
    const PxZero3Gather *g = &w->seq[q];
    g_assert_false(g->on_demand);
    /* the next use of the layer after the use it is queued at: one later, in its slot */
    guint u = (guint)g->use + 1;
    g_assert_cmpint(w->uses[u].layer, ==, g->layer);
    g_assert_cmpint(w->uses[u].slot, ==, g->slot);
    g_assert_cmpuint(g->instr, ==, w->uses[g->use].instr);
    g_assert_true(q >= w->seq_at[g->instr] && q < w->seq_at[g->instr + 1]);
  }
  px_plan_clear(&p);
}

/* The flat layout by hand (tiny-gpt, h 64, vocab 256, 64 positions, tp 1):
 * the whole model on one rank (it holds the embedding: the head has no
 * copy of wte), and the last stage of pp 2 (layers [3, 7): the head holds a
 * copy of wte, 16,384 elements, after its own none). */
static void test_flat(void) {
  g_autoptr(PxModel) m = tiny();
  PxPlan p;
  plan_of(&p, m, "1f1b", 1, PX_CKPT_NONE, 1);
  g_autoptr(PxFlatChunk) all = px_flat_chunk_new(m, &p, 0, 7, TRUE);
  g_assert_cmpint(all->numel, ==, 220544);
  gint64 want[7] = {20480, 49984, 49984, 49984, 49984, 128, 0}, d, e, off = 0;
  for (int li = 0; li < 7; li++) {
    px_flat_layer_elems(all, li, &d, &e);
    g_assert_cmpint(d, ==, want[li]);
    g_assert_cmpint(e, ==, 0);
    if (all->layer_first[li] < all->layer_first[li + 1]) g_assert_cmpint(all->t[all->layer_first[li]].offset, ==, off);
    off += d;
  }
  g_assert_cmpint(all->t[0].numel, ==, 256 * 64); /* wte first */
  g_autoptr(PxFlatChunk) last = px_flat_chunk_new(m, &p, 3, 7, FALSE);
  g_assert_cmpint(last->numel, ==, 2 * 49984 + 128 + 16384);
  px_flat_layer_elems(last, 6, &d, NULL);
  g_assert_cmpint(d, ==, 16384);
  g_assert_true(last->t[last->n - 1].tied_copy);
  g_assert_cmpint(last->t[last->n - 1].offset, ==, 2 * 49984 + 128);
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
  p.offload = PX_OFFLOAD_OPTIMIZER_PARAMS;
  g_assert_true(px_zero3_by_layer(m, &p)); /* each layer uploaded from host memory */
  px_plan_clear(&p);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/zero3/pass-layers", test_pass_layers);
  g_test_add_func("/zero3/walk-gpipe", test_walk_gpipe);
  g_test_add_func("/zero3/by-layer", test_by_layer);
  g_test_add_func("/zero3/flat", test_flat);
  return g_test_run();
}
