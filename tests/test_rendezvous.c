/* test_rendezvous.c — NCCL's point-to-point semantics without a GPU: the
 * `local` communicator in rendezvous mode (comm.h: a send completes only once
 * its receive is posted; a rank's calls on one communicator run in the order
 * it issued them) and the runtime's pipeline traffic under it.
 *
 *  - two ranks that both send before they receive (ungrouped) can never
 *    finish under rendezvous: the run stops at the world's deadline with one
 *    error naming the send whose receive was never posted, instead of hanging
 *    (eager mode: the same calls complete); grouped, the exchange completes
 *    with the right payloads, also as one group over two communicators;
 *  - a receive queued on one stream before a send on another, on one
 *    communicator, is run in issue order: a ring of such ranks waits forever
 *    under rendezvous (as on NCCL) and is reported;
 *  - the runtime: every schedule the core offers, pp 2 and 4 (vpp 2 for the
 *    interleaved and V schedules), trains under rendezvous with the losses of
 *    the eager run, equal in fp32 bit for bit (the pipeline sends and receives
 *    are issued in the program's groups, docs/schedules.md); so do layouts of
 *    8 ranks with DP (ZeRO 0-3) and TP, whose collectives then run in issue
 *    order per communicator too. */
#include <glib.h>
#include <math.h>
#include <string.h>
#include "backend.h"
#include "comm.h"
#include "model.h"
#include "runtime.h"
#include "schedule.h"

/* ---- the communicator ---- */

enum { N = 64 };

typedef struct {
  PxLocalWorld *w;
  int rank;
  int mode;      /* what the rank does: see rank_main */
  double got[N];
  GError *error;
} RankArg;

static double payload(int rank, int i) { return 1000.0 * (rank + 1) + i; }

/* mode 0: send then receive, ungrouped, on the inline stream (both ranks);
 * mode 1: the same in one group; mode 2: the same in one group over two
 * communicators split from the world; mode 3: a ring whose
 * receive is queued on stream `r` before its send on stream `s`, one
 * communicator. */
static gpointer rank_main(gpointer data) {
  RankArg *a = data;
  g_autoptr(PxComm) world = px_comm_local_new(a->w, a->rank);
  int peer = 1 - a->rank;
  double mine[N];
  for (int i = 0; i < N; i++) mine[i] = payload(a->rank, i);
  GError **e = &a->error;
  switch (a->mode) {
  case 0:
    if (px_comm_send(world, mine, N, PX_DTYPE_F64, peer, NULL, e)) px_comm_recv(world, a->got, N, PX_DTYPE_F64, peer, NULL, e);
    break;
  case 1:
    px_comm_group_start(world);
    px_comm_send(world, mine, N, PX_DTYPE_F64, peer, NULL, e);
    px_comm_recv(world, a->got, N, PX_DTYPE_F64, peer, NULL, e);
    px_comm_group_end(world, NULL, e);
    break;
  case 2: {
    g_autoptr(PxComm) ca = px_comm_split(world, 0, a->rank, "a", e);
    g_autoptr(PxComm) cb = ca ? px_comm_split(world, 0, a->rank, "b", e) : NULL;
    if (!cb) break;
    PxComm *both[2] = {ca, cb};
    px_comm_group_start(ca);
    px_comm_group_start(cb);
    /* rank 0 sends on a and receives on b, rank 1 the other way round (as
     * activations and gradients go on a pipeline's two communicators) */
    px_comm_send(a->rank ? cb : ca, mine, N, PX_DTYPE_F64, peer, NULL, e);
    px_comm_recv(a->rank ? ca : cb, a->got, N, PX_DTYPE_F64, peer, NULL, e);
    px_comm_group_end_multi(both, 2, NULL, e);
    break;
  }
  case 3: {
    g_autoptr(PxBackend) be = px_backend_new("cpu", 0, e);
    PxStream *rs = be ? px_stream_new(be, "r", e) : NULL, *ss = rs ? px_stream_new(be, "s", e) : NULL;
    if (ss && px_comm_recv(world, a->got, N, PX_DTYPE_F64, peer, rs, e) &&
        px_comm_send(world, mine, N, PX_DTYPE_F64, peer, ss, e)) {
      GError *e2 = NULL;
      gboolean ok = px_stream_synchronize(ss, e);
      px_stream_synchronize(rs, ok ? e : &e2);
      g_clear_error(&e2);
    }
    px_stream_free(ss);
    px_stream_free(rs);
    break;
  }
  }
  return NULL;
}

/* Run mode on two thread-ranks; TRUE when both finished without error. */
static gboolean run_pair(int mode, gboolean rendezvous, double timeout_s, RankArg args[2]) {
  PxLocalWorld *w = px_local_world_new(2, timeout_s);
  px_local_world_set_rendezvous(w, rendezvous);
  GThread *t[2];
  for (int r = 0; r < 2; r++) {
    args[r] = (RankArg){.w = w, .rank = r, .mode = mode};
    t[r] = g_thread_new("rank", rank_main, &args[r]);
  }
  for (int r = 0; r < 2; r++) g_thread_join(t[r]);
  px_local_world_free(w);
  return !args[0].error && !args[1].error;
}

static void expect_exchanged(RankArg args[2]) {
  for (int r = 0; r < 2; r++)
    for (int i = 0; i < N; i++) g_assert_cmpfloat(args[r].got[i], ==, payload(1 - r, i));
}

static void clear(RankArg args[2]) {
  for (int r = 0; r < 2; r++) g_clear_error(&args[r].error);
}

/* Both ranks' errors say why, in one line (the deadline of a send or of a
 * call queued behind one); with one_timeout, exactly one rank's error is the
 * deadline, the other's the abort it caused. */
static void expect_caught(RankArg args[2], const char *why, gboolean one_timeout) {
  for (int r = 0; r < 2; r++) {
    g_assert_nonnull(args[r].error);
    g_assert_true(args[r].error->domain == PX_COMM_ERROR);
    g_assert_nonnull(strstr(args[r].error->message, why));
    g_assert_nonnull(strstr(args[r].error->message, "rendezvous mode"));
    g_assert_null(strchr(args[r].error->message, '\n'));
  }
  int timeouts = (args[0].error->code == PX_COMM_ERROR_TIMEOUT) + (args[1].error->code == PX_COMM_ERROR_TIMEOUT);
  if (one_timeout) g_assert_cmpint(timeouts, ==, 1);
}

/* mode completes eagerly with the right payloads, and under rendezvous is
 * stopped at a 2 s deadline with why (one_timeout: see expect_caught). */
static void check_stopped(int mode, const char *why, gboolean one_timeout) {
  RankArg args[2];
  g_assert_true(run_pair(mode, FALSE, 30, args));
  expect_exchanged(args);
  g_assert_false(run_pair(mode, TRUE, 2, args));
  expect_caught(args, why, one_timeout);
  clear(args);
}

static void test_exchange(void) {
  /* rendezvous: each send waits for a receive its peer posts only after its own send */
  check_stopped(0, "never posted the matching receive", TRUE);
  /* grouped, also over two communicators: completes */
  RankArg args[2];
  g_assert_true(run_pair(1, TRUE, 30, args));
  expect_exchanged(args);
  g_assert_true(run_pair(2, TRUE, 30, args));
  expect_exchanged(args);
}

/* Eagerly the receive on its own stream does not hold up the send; under
 * rendezvous the send runs after the receive issued before it, which waits
 * for the peer's send, itself behind the peer's receive. */
static void test_issue_order(void) { check_stopped(3, "never", FALSE); }

/* ---- the runtime ---- */

static PxModel *model_layers(int layers) {
  g_autoptr(GError) error = NULL;
  PxModelDesc d = {.name = "rdv", .layers = layers, .hidden = 32, .heads = 4, .kv_heads = 4, .ffn = 64,
                   .vocab = 128, .max_seq = 16, .ffn_kind = PX_FFN_GELU, .norm = PX_NORM_LAYERNORM,
                   .pos = PX_POS_LEARNED, .bias = TRUE, .tied = TRUE};
  PxModel *m = px_model_new(&d, &error);
  g_assert_no_error(error);
  return m;
}

enum { STEPS = 2 };

typedef struct {
  PxScheduleKind k;
  int dp, tp, pp, vpp, zero;
} Layout;

/* The losses of STEPS steps of the layout with m micro-batches per DP rank;
 * FALSE with the error when a step fails. */
static gboolean losses(const PxModel *model, const Layout *l, int m, gboolean rendezvous, double *out, GError **error) {
  PxPlan p;
  px_plan_init(&p);
  p.dp = l->dp, p.tp = l->tp, p.pp = l->pp, p.vpp = l->vpp, p.zero = l->zero;
  p.schedule = l->k;
  p.mbs = 1;
  p.gbs = m * l->dp;
  p.seq = 16;
  p.precision = PX_PREC_FP32;
  PxRunOptions o;
  px_run_options_init(&o);
  o.seed = 5;
  o.lr = 3e-3;
  o.rendezvous = rendezvous;
  PxRuntime *rt = px_runtime_new(model, &p, &o, error);
  px_plan_clear(&p);
  if (!rt) return FALSE;
  gboolean ok = TRUE;
  for (int s = 0; ok && s < STEPS; s++) {
    PxStepResult r;
    ok = px_runtime_step(rt, &r, error);
    out[s] = r.loss;
  }
  px_runtime_free(rt);
  return ok;
}

static void test_runtime_all_schedules(void) {
  g_autoptr(PxModel) model = model_layers(8);
  const PxScheduleKind kinds[] = {PX_SCHED_NAIVE, PX_SCHED_GPIPE, PX_SCHED_1F1B, PX_SCHED_INTERLEAVED,
                                  PX_SCHED_ZB_H1, PX_SCHED_ZB_H2, PX_SCHED_ZB_V, PX_SCHED_DUALPIPEV};
  int runs = 0;
  for (gsize i = 0; i < G_N_ELEMENTS(kinds); i++)
    for (int pp = 2; pp <= 4; pp += 2) {
      PxScheduleKind k = kinds[i];
      int vpp = k == PX_SCHED_INTERLEAVED || px_schedule_is_v(k) ? 2 : 1;
      /* enough micro-batches for the steady state (dualpipev needs 2 pp) */
      int m = 2 * pp;
      double eager[STEPS], rdv[STEPS];
      g_autoptr(GError) error = NULL;
      Layout l = {k, 1, 1, pp, vpp, 0};
      g_assert_true(losses(model, &l, m, FALSE, eager, &error));
      g_assert_no_error(error);
      if (!losses(model, &l, m, TRUE, rdv, &error))
        g_error("%s pp=%d vpp=%d m=%d under rendezvous: %s", px_schedule_name(k), pp, vpp, m, error->message);
      for (int s = 0; s < STEPS; s++) {
        g_assert_true(isfinite(eager[s]));
        if (rdv[s] != eager[s])
          g_error("%s pp=%d vpp=%d: step %d loss %.17g under rendezvous, %.17g eager", px_schedule_name(k), pp, vpp,
                  s + 1, rdv[s], eager[s]);
      }
      runs++;
    }
  g_assert_cmpint(runs, ==, 16);
}

/* With the collectives too: DP (all-reduce, ZeRO reduce-scatter and
 * gathers), TP, the tied embedding, under rendezvous mode every call of a
 * communicator runs in issue order: layouts of 8 ranks. */
static void test_runtime_layouts(void) {
  g_autoptr(PxModel) model = model_layers(8);
  const Layout ls[] = {{PX_SCHED_1F1B, 2, 1, 4, 1, 1}, {PX_SCHED_INTERLEAVED, 2, 2, 2, 2, 3},
                       {PX_SCHED_ZB_V, 2, 1, 4, 2, 2}, {PX_SCHED_DUALPIPEV, 2, 2, 2, 2, 0},
                       {PX_SCHED_ZB_H2, 1, 2, 4, 1, 0}};
  for (gsize i = 0; i < G_N_ELEMENTS(ls); i++) {
    double got[2][STEPS];
    for (int rdv = 0; rdv < 2; rdv++) {
      g_autoptr(GError) error = NULL;
      if (!losses(model, &ls[i], 2 * ls[i].pp, rdv, got[rdv], &error))
        g_error("%s dp%d tp%d pp%d zero%d%s: %s", px_schedule_name(ls[i].k), ls[i].dp, ls[i].tp, ls[i].pp,
                ls[i].zero, rdv ? " under rendezvous" : "", error->message);
    }
    for (int s = 0; s < STEPS; s++) g_assert_cmpfloat(got[1][s], ==, got[0][s]);
  }
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/rendezvous/comm/exchange", test_exchange);
  g_test_add_func("/rendezvous/comm/issue-order", test_issue_order);
  g_test_add_func("/rendezvous/runtime/all-schedules", test_runtime_all_schedules);
  g_test_add_func("/rendezvous/runtime/layouts", test_runtime_layouts);
  return g_test_run();
}
