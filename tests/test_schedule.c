/* test_schedule.c — the compute orders of each schedule against hand-written
 * orders (DeepSpeed TrainSchedule, Megatron-LM interleaving, the ZB-H1
 * reference), and the invariants every program keeps: each (mb, chunk) runs
 * forward then backward once, every send meets one receive on its peer. */
#include <glib.h>
#include <string.h>
#include "schedule.h"

static void plan_set(PxPlan *p, PxScheduleKind k, int pp, int vpp, int m) {
  px_plan_init(p);
  p->schedule = k;
  p->pp = pp;
  p->vpp = vpp;
  p->m = m;
}

/* "F0 F1 B0 ..." : the compute ops of a stage (chunk suffix "c1" when vpp > 1) */
static char *compute_order(const PxProgram *prog, int stage) {
  GString *s = g_string_new(NULL);
  const PxRankProgram *rp = &prog->ranks[stage];
  for (guint i = 0; i < rp->n; i++) {
    const PxInstr *in = &rp->instrs[i];
    if (!px_op_is_compute(in->kind)) continue;
    if (s->len) g_string_append_c(s, ' ');
    const char *k = in->kind == PX_OP_FORWARD ? "F" : in->kind == PX_OP_BACKWARD_WEIGHT ? "W" : "B";
    g_string_append_printf(s, "%s%d", k, in->mb);
    if (prog->vpp > 1) g_string_append_printf(s, "c%d", in->chunk);
  }
  return g_string_free(s, FALSE);
}

static PxProgram *make(PxScheduleKind k, int pp, int vpp, int m) {
  PxPlan plan;
  plan_set(&plan, k, pp, vpp, m);
  GError *err = NULL;
  PxProgram *prog = px_program_new(&plan, NULL, &err);
  g_assert_no_error(err);
  px_plan_clear(&plan);
  return prog;
}

static void check_order(PxScheduleKind k, int pp, int vpp, int m, int stage, const char *expected) {
  g_autoptr(PxProgram) prog = make(k, pp, vpp, m);
  g_autofree char *got = compute_order(prog, stage);
  g_assert_cmpstr(got, ==, expected);
}

/* DeepSpeed TrainSchedule / PipeDream-Flush, p = 4, m = 8 */
static void test_1f1b_order(void) {
  check_order(PX_SCHED_1F1B, 4, 1, 8, 0, "F0 F1 F2 F3 B0 F4 B1 F5 B2 F6 B3 F7 B4 B5 B6 B7");
  check_order(PX_SCHED_1F1B, 4, 1, 8, 2, "F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 F6 B5 F7 B6 B7");
  check_order(PX_SCHED_1F1B, 4, 1, 8, 3, "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 F6 B6 F7 B7");
  /* fewer micro-batches than stages: warm-up is cut at m */
  check_order(PX_SCHED_1F1B, 4, 1, 2, 0, "F0 F1 B0 B1");
}

static void test_gpipe_naive_order(void) {
  check_order(PX_SCHED_GPIPE, 3, 1, 3, 1, "F0 F1 F2 B0 B1 B2");
  check_order(PX_SCHED_NAIVE, 3, 1, 3, 1, "F0 B0 F1 B1 F2 B2");
}

/* Megatron-LM forward_backward_pipelining_with_interleaving, p = 2, v = 2,
 * m = 4, worked out by hand from get_model_chunk_id and the warm-up count
 * 2(p - r - 1) + (v - 1) p. */
static void test_interleaved_order(void) {
  check_order(PX_SCHED_INTERLEAVED, 2, 2, 4, 0,
              "F0c0 F1c0 F0c1 F1c1 F2c0 B0c1 F3c0 B1c1 F2c1 B0c0 F3c1 B1c0 B2c1 B3c1 B2c0 B3c0");
  check_order(PX_SCHED_INTERLEAVED, 2, 2, 4, 1,
              "F0c0 F1c0 F0c1 B0c1 F1c1 B1c1 F2c0 B0c0 F3c0 B1c0 F2c1 B2c1 F3c1 B3c1 B2c0 B3c0");
}

/* sail-sg/zero-bubble-pipeline-parallelism ZeroBubbleH1Pipeline (exact
 * semantics), p = 4, m = 8: stage s holds s W's back to the end. */
static void test_zb_h1_order(void) {
  check_order(PX_SCHED_ZB_H1, 4, 1, 8, 0,
              "F0 F1 F2 F3 B0 W0 F4 B1 W1 F5 B2 W2 F6 B3 W3 F7 B4 W4 B5 W5 B6 W6 B7 W7");
  check_order(PX_SCHED_ZB_H1, 4, 1, 8, 1,
              "F0 F1 F2 B0 F3 B1 W0 F4 B2 W1 F5 B3 W2 F6 B4 W3 F7 B5 W4 B6 W5 B7 W6 W7");
  check_order(PX_SCHED_ZB_H1, 4, 1, 8, 3,
              "F0 B0 F1 B1 F2 B2 F3 B3 W0 F4 B4 W1 F5 B5 W2 F6 B6 W3 F7 B7 W4 W5 W6 W7");
}

/* ZB-H2: sail-sg/zero-bubble-pipeline-parallelism efficiency.py
 * get_hand_schedule(4, 8, warmup_c=2), the orders it runs (printed from it):
 * 2(p - s - 1) warm-up forwards, 2s W's held back to the end. */
static void test_zb_h2_order(void) {
  check_order(PX_SCHED_ZB_H2, 4, 1, 8, 0,
              "F0 F1 F2 F3 F4 F5 F6 B0 W0 F7 B1 W1 B2 W2 B3 W3 B4 W4 B5 W5 B6 W6 B7 W7");
  check_order(PX_SCHED_ZB_H2, 4, 1, 8, 1,
              "F0 F1 F2 F3 F4 B0 F5 B1 F6 B2 W0 F7 B3 W1 B4 W2 B5 W3 B6 W4 B7 W5 W6 W7");
  check_order(PX_SCHED_ZB_H2, 4, 1, 8, 3,
              "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 F6 B6 W0 F7 B7 W1 W2 W3 W4 W5 W6 W7");
}

/* ZB-V: sail-sg/zero-bubble-pipeline-parallelism handcrafted_zb_v
 * get_zb_v_schedule(4, 8) and (2, 2) (printed from it; c1 is the way back up
 * the V). With m < 2p - 1 the micro-batches >= m are dropped from the
 * 2p - 1 schedule. */
static void test_zb_v_order(void) {
  check_order(PX_SCHED_ZB_V, 4, 2, 8, 0,
              "F0c0 F1c0 F2c0 F3c0 F4c0 F5c0 F6c0 F0c1 B0c1 W0c1 F1c1 B1c1 W1c1 F2c1 B2c1 W2c1 F3c1 B3c1 "
              "W3c1 F7c0 B0c0 W0c0 F4c1 B4c1 W4c1 B1c0 W1c0 F5c1 B5c1 W5c1 B2c0 W2c0 F6c1 B6c1 W6c1 B3c0 "
              "W3c0 F7c1 B7c1 W7c1 B4c0 W4c0 B5c0 W5c0 B6c0 W6c0 B7c0 W7c0");
  check_order(PX_SCHED_ZB_V, 4, 2, 8, 2,
              "F0c0 F1c0 F2c0 F0c1 F3c0 F1c1 F4c0 F2c1 B0c1 W0c1 F3c1 B1c1 W1c1 F5c0 B0c0 W0c0 F4c1 B2c1 "
              "W2c1 F6c0 B1c0 W1c0 F5c1 B3c1 W3c1 F7c0 B2c0 W2c0 F6c1 B4c1 W4c1 B3c0 W3c0 F7c1 B5c1 W5c1 "
              "B4c0 B6c1 B5c0 B7c1 B6c0 W4c0 B7c0 W5c0 W6c1 W7c1 W6c0 W7c0");
  check_order(PX_SCHED_ZB_V, 4, 2, 8, 3,
              "F0c0 F0c1 F1c0 F1c1 F2c0 F2c1 F3c0 F3c1 B0c1 W0c1 F4c0 B0c0 W0c0 F4c1 B1c1 W1c1 F5c0 B1c0 "
              "W1c0 F5c1 B2c1 W2c1 F6c0 B2c0 W2c0 F6c1 B3c1 W3c1 F7c0 B3c0 W3c0 F7c1 B4c1 W4c1 B4c0 B5c1 "
              "B5c0 B6c1 B6c0 B7c1 B7c0 W4c0 W5c1 W6c1 W7c1 W5c0 W6c0 W7c0");
  check_order(PX_SCHED_ZB_V, 2, 2, 2, 0, "F0c0 F1c0 F0c1 B0c1 W0c1 F1c1 B1c1 W1c1 B0c0 W0c0 B1c0 W1c0");
  check_order(PX_SCHED_ZB_V, 2, 2, 2, 1, "F0c0 F0c1 F1c0 F1c1 B0c1 W0c1 B0c0 W0c0 B1c1 W1c1 B1c0 W1c0");
}

/* DualPipeV: deepseek-ai/DualPipe dualpipe/dualpipev.py DualPipeV.step worked
 * through by hand for the last rank of p = 4, m = 8: step 2 (4 × F0 F1), step
 * 4 (4 × F0&B1 F1&B0, the first F0 B1 not overlapped on the last rank), step
 * 6 (4 × B1 B0, from i = 2 on with zero bubble: B then W), step 8 (4 W). */
static void test_dualpipev_order(void) {
  check_order(PX_SCHED_DUALPIPEV, 4, 2, 8, 3,
              "F0c0 F0c1 F1c0 F1c1 F2c0 F2c1 F3c0 F3c1 F4c0 B0c1 F4c1 B0c0 F5c0 B1c1 F5c1 B1c0 F6c0 B2c1 "
              "F6c1 B2c0 F7c0 B3c1 F7c1 B3c0 B4c1 B4c0 B5c1 B5c0 B6c1 B6c0 B7c1 B7c0 W6c1 W6c0 W7c1 W7c0");
  /* rank 0: step 1 (6 × F0), step 2 (F0 F1), step 3 (3 × B1 W1 F1), ... */
  g_autoptr(PxProgram) prog = make(PX_SCHED_DUALPIPEV, 4, 2, 10);
  g_autofree char *r0 = compute_order(prog, 0);
  g_assert_true(g_str_has_prefix(r0, "F0c0 F1c0 F2c0 F3c0 F4c0 F5c0 F6c0 F0c1 B0c1 W0c1 F1c1 B1c1 W1c1 F2c1 B2c1 W2c1 F3c1 "
                                     "F7c0 B3c1 F4c1 B0c0"));
  /* overlapped pairs: 2(m - 2p + r + 1) in step 4 (one fewer on the last
   * rank) and p - r - 1 in step 5 */
  int want[] = {2 * 3 + 3, 2 * 4 + 2, 2 * 5 + 1, 2 * 6 - 1};
  for (int r = 0; r < 4; r++) {
    const PxRankProgram *rp = &prog->ranks[r];
    int pairs = 0;
    for (guint i = 0; i < rp->n; i++) {
      if (rp->instrs[i].kind != PX_OP_OVERLAP) continue;
      pairs++;
      /* both receives, F, B, then both sends */
      int seen_f = -1, seen_b = -1;
      for (guint j = i + 1; j < rp->n && (seen_f < 0 || seen_b < 0); j++) {
        PxOpKind k = rp->instrs[j].kind;
        g_assert_true(k == PX_OP_RECV_ACT || k == PX_OP_RECV_GRAD || k == PX_OP_LOAD || k == PX_OP_FORWARD || k == PX_OP_BACKWARD);
        if (k == PX_OP_FORWARD) seen_f = (int)j;
        if (k == PX_OP_BACKWARD) seen_b = (int)j;
      }
      g_assert_cmpint(seen_b, ==, seen_f + 1);
    }
    g_assert_cmpint(pairs, ==, want[r]);
  }
}

/* Each (mb, chunk) on each stage: one forward, then one backward (or one B
 * then one W), in that order. */
static void check_forward_backward(const PxProgram *prog) {
  for (int s = 0; s < prog->pp; s++) {
    int n = prog->m * prog->vpp;
    g_autofree int *fwd = g_new(int, n), *bwd = g_new(int, n), *wgt = g_new(int, n), *split = g_new(int, n);
    for (int i = 0; i < n; i++) fwd[i] = bwd[i] = wgt[i] = -1;
    const PxRankProgram *rp = &prog->ranks[s];
    for (guint i = 0; i < rp->n; i++) {
      const PxInstr *in = &rp->instrs[i];
      if (!px_op_is_compute(in->kind)) continue;
      g_assert_cmpint(in->mb, >=, 0);
      g_assert_cmpint(in->mb, <, prog->m);
      int key = in->mb * prog->vpp + in->chunk;
      int *slot = in->kind == PX_OP_FORWARD ? &fwd[key] : in->kind == PX_OP_BACKWARD_WEIGHT ? &wgt[key] : &bwd[key];
      g_assert_cmpint(*slot, ==, -1);
      *slot = (int)i;
      if (in->kind == PX_OP_BACKWARD || in->kind == PX_OP_BACKWARD_INPUT) split[key] = in->kind == PX_OP_BACKWARD_INPUT;
    }
    for (int i = 0; i < n; i++) {
      g_assert_cmpint(fwd[i], >=, 0);
      g_assert_cmpint(bwd[i], >, fwd[i]);
      /* a split backward (B, then W) or a full one */
      if (split[i]) g_assert_cmpint(wgt[i], >, bwd[i]);
      else g_assert_cmpint(wgt[i], ==, -1);
      if (prog->schedule == PX_SCHED_ZB_H1 || prog->schedule == PX_SCHED_ZB_H2 || prog->schedule == PX_SCHED_ZB_V)
        g_assert_true(split[i]);
      else if (prog->schedule != PX_SCHED_DUALPIPEV)
        g_assert_false(split[i]);
    }
  }
}

/* Every SEND_x (mb, chunk) from stage s to peer q has one RECV_x on q whose
 * peer is s and whose part is the neighbour of the sender's part. */
static void check_send_recv(const PxProgram *prog) {
  int p = prog->pp;
  for (int s = 0; s < p; s++) {
    const PxRankProgram *rp = &prog->ranks[s];
    for (guint i = 0; i < rp->n; i++) {
      const PxInstr *in = &rp->instrs[i];
      if (in->kind != PX_OP_SEND_ACT && in->kind != PX_OP_SEND_GRAD) continue;
      gboolean act = in->kind == PX_OP_SEND_ACT;
      int part = px_program_part_of(prog, s, in->chunk), to = act ? part + 1 : part - 1;
      int to_stage, to_chunk;
      px_schedule_part_place(prog->schedule, p, to, &to_stage, &to_chunk);
      g_assert_cmpint(in->peer, ==, to_stage);
      g_assert_cmpint(px_program_part_of(prog, to_stage, to_chunk), ==, to);
      int found = 0;
      const PxRankProgram *q = &prog->ranks[in->peer];
      for (guint j = 0; j < q->n; j++) {
        const PxInstr *r = &q->instrs[j];
        if (r->kind == (act ? PX_OP_RECV_ACT : PX_OP_RECV_GRAD) && r->mb == in->mb && r->peer == s &&
            px_program_part_of(prog, in->peer, r->chunk) == to)
          found++;
      }
      g_assert_cmpint(found, ==, 1);
    }
    /* and as many receives as sends point at this stage */
    int recvs = 0, sends = 0;
    for (guint i = 0; i < rp->n; i++)
      recvs += rp->instrs[i].kind == PX_OP_RECV_ACT || rp->instrs[i].kind == PX_OP_RECV_GRAD;
    for (int q = 0; q < p; q++)
      for (guint j = 0; j < prog->ranks[q].n; j++) {
        const PxInstr *in = &prog->ranks[q].instrs[j];
        sends += (in->kind == PX_OP_SEND_ACT || in->kind == PX_OP_SEND_GRAD) && in->peer == s;
      }
    g_assert_cmpint(recvs, ==, sends);
  }
}

/* --stack deepspeed: DeepSpeed's TrainSchedule (runtime/pipe/schedule.py),
 * p = 4, m = 3, stage 2 by hand from its steps: stage 2 forwards on even
 * steps (micro-batch t/2 - 1) and runs backwards on odd ones (micro-batch
 * (t-1)/2 - 3 + 1); a forward step receives, then sends the previous
 * step's gradient; a backward step sends the previous step's output, then
 * receives. Steps 0, 1 and 11 are empty. The compute order is 1F1B's, and
 * the order needs no grouping to finish under rendezvous semantics
 * (TrainSchedule's docstrings: each blocking call "must be paired"). */
static PxProgram *make_deepspeed(int pp, int m) {
  PxPlan plan;
  plan_set(&plan, PX_SCHED_1F1B, pp, 1, m);
  plan.stack = PX_STACK_DEEPSPEED;
  GError *err = NULL;
  PxProgram *prog = px_program_new(&plan, NULL, &err);
  g_assert_no_error(err);
  g_assert_cmpint(px_schedule_is_deepspeed(&plan), ==, pp > 1);
  px_plan_clear(&plan);
  return prog;
}

static void test_deepspeed_order(void) {
  g_autoptr(PxProgram) prog = make_deepspeed(4, 3);
  g_autofree char *text = px_program_format_stage(prog, 2);
  g_assert_cmpstr(text, ==,
                  "RECV_ACT mb=0 chunk=0 peer=1\n"  /* step 2 */
                  "FORWARD mb=0 chunk=0\n"
                  "SEND_ACT mb=0 chunk=0 peer=3\n"  /* step 3: micro-batch -1, nothing to run */
                  "RECV_ACT mb=1 chunk=0 peer=1\n"  /* step 4 */
                  "FORWARD mb=1 chunk=0\n"
                  "SEND_ACT mb=1 chunk=0 peer=3\n"  /* step 5 */
                  "RECV_GRAD mb=0 chunk=0 peer=3\n"
                  "BACKWARD mb=0 chunk=0\n"
                  "RECV_ACT mb=2 chunk=0 peer=1\n"  /* step 6: the receive before the send */
                  "SEND_GRAD mb=0 chunk=0 peer=1\n"
                  "FORWARD mb=2 chunk=0\n"
                  "SEND_ACT mb=2 chunk=0 peer=3\n"  /* step 7 */
                  "RECV_GRAD mb=1 chunk=0 peer=3\n"
                  "BACKWARD mb=1 chunk=0\n"
                  "SEND_GRAD mb=1 chunk=0 peer=1\n" /* step 8 */
                  "RECV_GRAD mb=2 chunk=0 peer=3\n" /* step 9 */
                  "BACKWARD mb=2 chunk=0\n"
                  "SEND_GRAD mb=2 chunk=0 peer=1\n" /* step 10 */
                  "OPTIMIZER_STEP\n");
  for (int p = 1; p <= 6; p++)
    for (int m = 1; m <= 13; m++) {
      g_autoptr(PxProgram) ds = make_deepspeed(p, m);
      g_autoptr(PxProgram) ref = make(PX_SCHED_1F1B, p, 1, m);
      for (int s = 0; s < p; s++) {
        g_autofree char *a = compute_order(ds, s), *b = compute_order(ref, s);
        g_assert_cmpstr(a, ==, b);
      }
      check_forward_backward(ds);
      check_send_recv(ds);
      GError *err = NULL;
      g_assert_true(px_program_check_rendezvous(ds, &err));
      g_assert_no_error(err);
    }
}

static void test_invariants(void) {
  const struct {
    PxScheduleKind k;
    int vmax;
  } kinds[] = {{PX_SCHED_NAIVE, 1}, {PX_SCHED_GPIPE, 1}, {PX_SCHED_1F1B, 1}, {PX_SCHED_ZB_H1, 1},
               {PX_SCHED_INTERLEAVED, 4}, {PX_SCHED_ZB_H2, 1}, {PX_SCHED_ZB_V, 2}, {PX_SCHED_DUALPIPEV, 2}};
  for (gsize k = 0; k < G_N_ELEMENTS(kinds); k++)
    for (int p = 1; p <= 6; p++)
      for (int v = 1; v <= kinds[k].vmax; v++)
        for (int m = 1; m <= 13; m++) {
          if (kinds[k].k == PX_SCHED_INTERLEAVED && m % p) continue;
          if (px_schedule_is_v(kinds[k].k) && v != 2) continue;
          if (kinds[k].k == PX_SCHED_DUALPIPEV && m < 2 * p) continue;
          g_autoptr(PxProgram) prog = make(kinds[k].k, p, v, m);
          check_forward_backward(prog);
          check_send_recv(prog);
        }
}

/* Rendezvous semantics (NCCL: a send completes once its receive is posted).
 * A hand-made exchange: each stage sends first, then receives. Ungrouped,
 * each send waits for a receive that stands after its peer's own send: the
 * checker names both stages at their sends. Grouped (px_program_group_p2p:
 * one run between two compute ops), it finishes. */
static void test_rendezvous_by_hand(void) {
  PxPlan plan;
  plan_set(&plan, PX_SCHED_1F1B, 2, 1, 1);
  g_autoptr(PxProgram) prog = px_program_new_empty(&plan);
  px_plan_clear(&plan);
  px_program_append(prog, 0, PX_OP_FORWARD, 0, 0, -1);
  px_program_append(prog, 0, PX_OP_SEND_ACT, 0, 0, 1);
  px_program_append(prog, 0, PX_OP_RECV_GRAD, 0, 0, 1);
  px_program_append(prog, 0, PX_OP_BACKWARD, 0, 0, -1);
  px_program_append(prog, 1, PX_OP_FORWARD, 1, 0, -1);
  px_program_append(prog, 1, PX_OP_BACKWARD, 1, 0, -1);
  px_program_append(prog, 1, PX_OP_SEND_GRAD, 0, 0, 0);
  px_program_append(prog, 1, PX_OP_RECV_ACT, 0, 0, 0);
  px_program_append(prog, 1, PX_OP_FORWARD, 0, 0, -1);
  GError *err = NULL;
  g_assert_false(px_program_check_rendezvous(prog, &err));
  g_assert_error(err, PX_SCHEDULE_ERROR, PX_SCHEDULE_ERROR_INVALID);
  g_assert_nonnull(strstr(err->message, "stage 0 waits at SEND_ACT mb=0 chunk=0 peer=1; stage 1 waits at SEND_GRAD mb=0 chunk=0 peer=0"));
  g_clear_error(&err);
  px_program_group_p2p(prog);
  g_assert_cmpint(prog->ranks[0].instrs[1].group, ==, 0);
  g_assert_cmpint(prog->ranks[0].instrs[2].group, ==, 0);
  g_assert_cmpint(prog->ranks[1].instrs[2].group, ==, 0);
  g_assert_cmpint(prog->ranks[1].instrs[3].group, ==, 0);
  g_assert_true(px_program_check_rendezvous(prog, &err));
  g_assert_no_error(err);
  /* a receive nobody sends */
  px_program_append(prog, 1, PX_OP_RECV_ACT, 1, 0, 0);
  g_assert_false(px_program_check_rendezvous(prog, &err));
  g_assert_nonnull(strstr(err->message, "stage 1 receives more activations from stage 0 than stage 0 sends"));
  g_clear_error(&err);
}

/* Every program the core makes finishes under rendezvous semantics with its
 * groups (also with ZeRO-3 gathers and DP reductions between the members);
 * without them (every send and receive alone), schedules whose neighbours
 * both send first stop: 1F1B's steady state sends an activation and receives
 * a gradient from the same peer (Megatron's send_forward_recv_backward). */
static void test_rendezvous_all(void) {
  const struct {
    PxScheduleKind k;
    int vmax;
  } kinds[] = {{PX_SCHED_NAIVE, 1}, {PX_SCHED_GPIPE, 1}, {PX_SCHED_1F1B, 1}, {PX_SCHED_ZB_H1, 1},
               {PX_SCHED_INTERLEAVED, 4}, {PX_SCHED_ZB_H2, 1}, {PX_SCHED_ZB_V, 2}, {PX_SCHED_DUALPIPEV, 2}};
  int checked = 0;
  for (gsize k = 0; k < G_N_ELEMENTS(kinds); k++)
    for (int p = 1; p <= 8; p++)
      for (int v = 1; v <= kinds[k].vmax; v++)
        for (int m = 1; m <= 17; m++)
          for (int zero3 = 0; zero3 <= 1; zero3++) {
            if (kinds[k].k == PX_SCHED_INTERLEAVED && m % p) continue;
            if (px_schedule_is_v(kinds[k].k) && v != 2) continue;
            if (kinds[k].k == PX_SCHED_DUALPIPEV && m < 2 * p) continue;
            PxPlan plan;
            plan_set(&plan, kinds[k].k, p, v, m);
            plan.dp = zero3 ? 2 : 1;
            plan.zero = zero3 ? 3 : 0;
            GError *err = NULL;
            g_autoptr(PxProgram) prog = px_program_new(&plan, NULL, &err);
            g_assert_no_error(err);
            px_plan_clear(&plan);
            px_program_group_p2p(prog);
            if (!px_program_check_rendezvous(prog, &err)) g_error("%s", err->message);
            checked++;
          }
  g_assert_cmpint(checked, >, 1000);
  /* ungrouped (as px_program_new leaves it) 1F1B, pp 4, m 8: stuck */
  g_autoptr(PxProgram) prog = make(PX_SCHED_1F1B, 4, 1, 8);
  GError *err = NULL;
  g_assert_false(px_program_check_rendezvous(prog, &err));
  g_assert_nonnull(strstr(err->message, "schedule 1f1b (pp=4, vpp=1, m=8) cannot finish when sends wait for their receives"));
  g_test_message("%s", err->message);
  g_clear_error(&err);
}

static int count(const PxProgram *prog, int stage, PxOpKind kind) {
  int n = 0;
  for (guint i = 0; i < prog->ranks[stage].n; i++) n += prog->ranks[stage].instrs[i].kind == kind;
  return n;
}

/* Tied layers, DP reduction per chunk, ZeRO-3 gathers, loads, optimizer. */
static void test_collectives(void) {
  PxPlan plan;
  plan_set(&plan, PX_SCHED_INTERLEAVED, 4, 2, 8);
  plan.dp = 2;
  plan.zero = 3;
  int bounds[] = {0, 2, 4, 6, 8, 10, 12, 14, 16};
  PxPartition part = {.pp = 4, .vpp = 2, .parts = 8, .bounds = bounds, .tied = TRUE,
                      .tied_first_part = 0, .tied_last_part = 7};
  GError *err = NULL;
  g_autoptr(PxProgram) prog = px_program_new(&plan, &part, &err);
  g_assert_no_error(err);
  /* part 0 is stage 0, part 7 is stage 3 */
  g_assert_cmpint(count(prog, 0, PX_OP_REDUCE_TIED), ==, 1);
  g_assert_cmpint(count(prog, 3, PX_OP_REDUCE_TIED), ==, 1);
  g_assert_cmpint(count(prog, 1, PX_OP_REDUCE_TIED), ==, 0);
  for (int s = 0; s < 4; s++) {
    g_assert_cmpint(count(prog, s, PX_OP_REDUCE_GRADS), ==, 2);   /* one per chunk */
    g_assert_cmpint(count(prog, s, PX_OP_GATHER_PARAMS), ==, 2);  /* one per chunk */
    g_assert_cmpint(count(prog, s, PX_OP_OPTIMIZER_STEP), ==, 1);
    /* the step ends with the optimizer */
    g_assert_cmpint(prog->ranks[s].instrs[prog->ranks[s].n - 1].kind, ==, PX_OP_OPTIMIZER_STEP);
  }
  /* inputs on part 0 (stage 0), labels on part 7 (stage 3): m loads each */
  g_assert_cmpint(count(prog, 0, PX_OP_LOAD), ==, 8);
  g_assert_cmpint(count(prog, 3, PX_OP_LOAD), ==, 8);
  g_assert_cmpint(count(prog, 1, PX_OP_LOAD), ==, 0);
  /* interleaving: stage 3 sends chunk 0's activations to stage 0 (part 3 -> 4) */
  gboolean wrap = FALSE;
  for (guint i = 0; i < prog->ranks[3].n; i++) {
    const PxInstr *in = &prog->ranks[3].instrs[i];
    if (in->kind == PX_OP_SEND_ACT && in->chunk == 0) wrap = in->peer == 0;
  }
  g_assert_true(wrap);
  px_plan_clear(&plan);

  /* dp = 1, ZeRO 0: no reductions, no gathers */
  g_autoptr(PxProgram) plain = make(PX_SCHED_1F1B, 2, 1, 4);
  g_assert_cmpint(count(plain, 0, PX_OP_REDUCE_GRADS), ==, 0);
  g_assert_cmpint(count(plain, 0, PX_OP_GATHER_PARAMS), ==, 0);
}

static void test_format_and_lookup(void) {
  g_autoptr(PxProgram) prog = make(PX_SCHED_GPIPE, 2, 1, 2);
  g_autofree char *text = px_program_format_stage(prog, 1);
  g_assert_cmpstr(text, ==,
                  "RECV_ACT mb=0 chunk=0 peer=0\n"
                  "LOAD mb=0\n"
                  "FORWARD mb=0 chunk=0\n"
                  "RECV_ACT mb=1 chunk=0 peer=0\n"
                  "LOAD mb=1\n"
                  "FORWARD mb=1 chunk=0\n"
                  "BACKWARD mb=0 chunk=0\n"
                  "SEND_GRAD mb=0 chunk=0 peer=0\n"
                  "BACKWARD mb=1 chunk=0\n"
                  "SEND_GRAD mb=1 chunk=0 peer=0\n"
                  "OPTIMIZER_STEP\n");

  /* dp 2 × tp 2 × pp 2, order tp,dp,pp: rank = tp + 2 dp + 4 pp */
  PxPlan plan;
  plan_set(&plan, PX_SCHED_1F1B, 2, 1, 2);
  plan.dp = plan.tp = 2;
  g_autoptr(PxProgram) p2 = px_program_new(&plan, NULL, NULL);
  g_assert_cmpint(px_program_for_rank(p2, 3)->stage, ==, 0);
  g_assert_cmpint(px_program_for_rank(p2, 5)->stage, ==, 1);
  /* order pp,dp,tp: rank = pp + 2 dp + 4 tp */
  plan.order[0] = PX_AXIS_PP;
  plan.order[2] = PX_AXIS_TP;
  g_autoptr(PxProgram) p3 = px_program_new(&plan, NULL, NULL);
  g_assert_cmpint(px_program_for_rank(p3, 5)->stage, ==, 1);
  g_assert_cmpint(px_program_for_rank(p3, 6)->stage, ==, 0);
  px_plan_clear(&plan);

  PxOpKind k;
  g_assert_true(px_op_parse("backward_weight", &k) && k == PX_OP_BACKWARD_WEIGHT);
  g_assert_false(px_op_parse("JUMP", &k));
}

/* The V: rank s runs parts s and 2p-1-s; rank 0 holds both ends (inputs and
 * labels, the tied embedding on one rank: no REDUCE_TIED), the last rank the
 * two middle parts and passes between them to itself. */
static void test_v_map(void) {
  for (int p = 1; p <= 6; p++)
    for (int k = 0; k < 2 * p; k++) {
      int s, c;
      px_schedule_part_place(PX_SCHED_ZB_V, p, k, &s, &c);
      g_assert_cmpint(s, ==, k < p ? k : 2 * p - 1 - k);
      g_assert_cmpint(c, ==, k < p ? 0 : 1);
      g_assert_cmpint(px_schedule_part_of(PX_SCHED_DUALPIPEV, p, s, c), ==, k);
      /* Megatron's interleaving stays k = c·p + s */
      px_schedule_part_place(PX_SCHED_INTERLEAVED, p, k, &s, &c);
      g_assert_cmpint(s, ==, k % p);
      g_assert_cmpint(c, ==, k / p);
    }
  PxPlan plan;
  plan_set(&plan, PX_SCHED_ZB_V, 4, 2, 8);
  int bounds[] = {0, 2, 4, 6, 8, 10, 12, 14, 16};
  PxPartition part = {.pp = 4, .vpp = 2, .parts = 8, .bounds = bounds, .tied = TRUE,
                      .tied_first_part = 0, .tied_last_part = 7, .schedule = PX_SCHED_ZB_V};
  g_assert_cmpint(px_partition_part_rank(&part, 7), ==, 0);
  g_assert_cmpint(px_partition_part_of(&part, 3, 1), ==, 4);
  g_autoptr(PxProgram) prog = px_program_new(&plan, &part, NULL);
  g_assert_nonnull(prog);
  g_assert_cmpint(count(prog, 0, PX_OP_REDUCE_TIED), ==, 0);
  g_assert_cmpint(count(prog, 0, PX_OP_LOAD), ==, 16);
  g_assert_cmpint(count(prog, 3, PX_OP_LOAD), ==, 0);
  gboolean self = FALSE;
  for (guint i = 0; i < prog->ranks[3].n; i++) {
    const PxInstr *in = &prog->ranks[3].instrs[i];
    if (in->kind == PX_OP_SEND_ACT && in->chunk == 0) self = in->peer == 3;
  }
  g_assert_true(self);
  px_plan_clear(&plan);
}

static void test_invalid(void) {
  PxPlan plan;
  GError *err = NULL;
  plan_set(&plan, PX_SCHED_DUALPIPEV, 4, 2, 7);
  g_assert_null(px_program_new(&plan, NULL, &err));
  g_assert_error(err, PX_SCHEDULE_ERROR, PX_SCHEDULE_ERROR_INVALID);
  g_assert_nonnull(strstr(err->message, "2·pp"));
  g_clear_error(&err);
  plan.schedule = PX_SCHED_ZB_V;
  plan.vpp = 3;
  g_assert_null(px_program_new(&plan, NULL, &err));
  g_assert_error(err, PX_SCHEDULE_ERROR, PX_SCHEDULE_ERROR_INVALID);
  g_clear_error(&err);
  px_plan_clear(&plan);
  plan_set(&plan, PX_SCHED_INTERLEAVED, 4, 2, 6);
  g_assert_null(px_program_new(&plan, NULL, &err));
  g_assert_error(err, PX_SCHEDULE_ERROR, PX_SCHEDULE_ERROR_INVALID);
  g_assert_nonnull(strstr(err->message, "divisible"));
  g_clear_error(&err);
  plan.schedule = PX_SCHED_1F1B;
  g_assert_null(px_program_new(&plan, NULL, &err));
  g_assert_error(err, PX_SCHEDULE_ERROR, PX_SCHEDULE_ERROR_INVALID);
  g_clear_error(&err);
  plan.m = 0;
  g_assert_null(px_program_new(&plan, NULL, &err));
  g_assert_error(err, PX_SCHEDULE_ERROR, PX_SCHEDULE_ERROR_INVALID);
  g_clear_error(&err);
  px_plan_clear(&plan);
}

/* px_schedule_peak_held against the same walk over the compute ops of the
 * program px_program_new emits (an independent path: the stored order, every
 * op walked), bit for bit, with the jump over repeated rounds on and off:
 * every schedule, p 1..5, m 1..40 and large m (300, 1001, 4096), chunk sizes
 * that are whole bytes (the rounds repeat at once) and that are not (0.1
 * multiples, rounding: the walk drifts before it repeats, or never does). */
static double program_walk(const PxProgram *prog, int stage, const PxChunkHeld *held, int *peak_count) {
  const PxRankProgram *rp = &prog->ranks[stage];
  double bytes = 0, peak = 0;
  int n = 0, peak_n = 0;
  for (guint i = 0; i < rp->n; i++) {
    const PxInstr *in = &rp->instrs[i];
    if (!px_op_is_compute(in->kind) || in->chunk < 0 || in->chunk >= prog->vpp) continue;
    const PxChunkHeld *c = &held[in->chunk];
    if (in->kind == PX_OP_FORWARD) {
      peak = MAX(peak, bytes + MAX(c->fwd, c->act));
      bytes += c->act;
      n++;
    } else if (in->kind == PX_OP_BACKWARD) {
      peak = MAX(peak, bytes + c->bwd);
      bytes -= c->act;
      n--;
    } else if (in->kind == PX_OP_BACKWARD_INPUT) {
      peak = MAX(peak, bytes + c->bwd_input);
      bytes += c->w - c->act;
    } else if (in->kind == PX_OP_BACKWARD_WEIGHT) {
      bytes -= c->w;
      n--;
    }
    peak = MAX(peak, bytes);
    peak_n = MAX(peak_n, n);
  }
  *peak_count = peak_n;
  return peak;
}

static void test_peak_held_exact(void) {
  static const PxScheduleKind kinds[] = {PX_SCHED_GPIPE, PX_SCHED_1F1B, PX_SCHED_INTERLEAVED, PX_SCHED_ZB_H1,
                                         PX_SCHED_ZB_H2, PX_SCHED_ZB_V, PX_SCHED_DUALPIPEV};
  static const PxChunkHeld whole[2] = {{3e8, 1e8, 3.5e8, 4e8, 3.2e8}, {2e8, 0.5e8, 2e8, 2.5e8, 2.1e8}};
  static const PxChunkHeld frac[2] = {{0.3, 0.1, 0.35, 0.7, 0.31}, {0.7, 0.3, 0.9, 0.1, 0.2}};
  int ms[48], n_ms = 0;
  for (int m = 1; m <= 40; m++) ms[n_ms++] = m;
  ms[n_ms++] = 300;
  ms[n_ms++] = 1001;
  ms[n_ms++] = 4096;
  int checked = 0, jumps0 = px_schedule_walk_jumps();
  for (gsize k = 0; k < G_N_ELEMENTS(kinds); k++)
    for (int p = 1; p <= 5; p++)
      for (int im = 0; im < n_ms; im++) {
        int m = ms[im], v = kinds[k] == PX_SCHED_INTERLEAVED || px_schedule_is_v(kinds[k]) ? 2 : 1;
        if (kinds[k] == PX_SCHED_INTERLEAVED && (p < 2 || m % p)) continue;
        if (kinds[k] == PX_SCHED_DUALPIPEV && m < 2 * p) continue;
        PxPlan plan;
        plan_set(&plan, kinds[k], p, v, m);
        g_autoptr(PxProgram) prog = px_program_new(&plan, NULL, NULL);
        g_assert_nonnull(prog);
        for (int f = 0; f < 2; f++)
          for (int s = 0; s < p; s++) {
            const PxChunkHeld *held = f ? frac : whole;
            int n_ref, n_fast, n_full;
            double ref = program_walk(prog, s, held, &n_ref);
            double fast = px_schedule_peak_held(&plan, s, held, &n_fast);
            px_schedule_set_full_walk(TRUE);
            double full = px_schedule_peak_held(&plan, s, held, &n_full);
            px_schedule_set_full_walk(FALSE);
            g_assert_true(memcmp(&fast, &ref, sizeof ref) == 0); /* bit for bit, not to a tolerance */
            g_assert_true(memcmp(&full, &ref, sizeof ref) == 0);
            g_assert_cmpint(n_fast, ==, n_ref);
            g_assert_cmpint(n_full, ==, n_ref);
            checked++;
          }
        px_plan_clear(&plan);
      }
  g_assert_cmpint(checked, >, 1500);
  /* the jump was taken (the large m, the whole bytes at least), not only the full walk */
  g_assert_cmpint(px_schedule_walk_jumps() - jumps0, >, 100);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/schedule/1f1b/order", test_1f1b_order);
  g_test_add_func("/schedule/gpipe/order", test_gpipe_naive_order);
  g_test_add_func("/schedule/interleaved/order", test_interleaved_order);
  g_test_add_func("/schedule/zb-h1/order", test_zb_h1_order);
  g_test_add_func("/schedule/zb-h2/order", test_zb_h2_order);
  g_test_add_func("/schedule/zb-v/order", test_zb_v_order);
  g_test_add_func("/schedule/dualpipev/order", test_dualpipev_order);
  g_test_add_func("/schedule/v-map", test_v_map);
  g_test_add_func("/schedule/invariants", test_invariants);
  g_test_add_func("/schedule/peak-held/exact", test_peak_held_exact);
  g_test_add_func("/schedule/deepspeed/order", test_deepspeed_order);
  g_test_add_func("/schedule/collectives", test_collectives);
  g_test_add_func("/schedule/format", test_format_and_lookup);
  g_test_add_func("/schedule/invalid", test_invalid);
  g_test_add_func("/schedule/rendezvous/by-hand", test_rendezvous_by_hand);
  g_test_add_func("/schedule/rendezvous/all", test_rendezvous_all);
  return g_test_run();
}
