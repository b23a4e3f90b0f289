/* test_comm.c — the communicator conformance suite (the pattern of
 * nccl-tests: one harness, every collective on verifiable data, an error on
 * any rank ends the run).
 *
 * One table of checks (`checks` below) runs over every implementation. A
 * check is a function of one rank's world communicator: every rank runs it,
 * and every rank asserts its own results. The harness takes the
 * implementation by name:
 *
 *   test_comm [--comm local|tcp]            local and tcp: each check on 2, 3
 *                                           and 4 thread-ranks of this process
 *   mpirun -n N test_comm --comm mpi        one process per rank
 *                                           (tests/cli_comm_mpi.sh: N = 2, 3, 4)
 *   parallax-exec launch -n N -- test_comm --comm tcp
 *                                           one process per rank
 *                                           (tests/cli_comm_tcp.sh: N = 2, 3, 4)
 *   test_comm --comm nccl                   1 .. min(GPUs, 4) thread-ranks, one
 *                                           GPU each (ctest test_comm_nccl);
 *                                           exit 77, "no CUDA device: skipped",
 *                                           without a GPU or without NCCL
 *   mpirun -n N test_comm --comm nccl       one process per rank and GPU
 *
 * Data. Element i of rank r holds a small integer function of (r, i), exact
 * in f32, f64 and i32, so every result is compared exactly with its closed
 * form, computed here from the formula, not by the code under test. Sizes 1,
 * 7, 1000 and 2^20 elements, dtypes f32, f64 and i32; the reductions also in
 * bf16 and fp16, on multiples of 1/2 whose sums are exact in both, plus
 * hand-computed cases where the rounding to the half dtype matters (the
 * checks under halves/).
 *
 * Errors. A call that fails unexpectedly aborts the world with its message
 * (so that no peer waits for this rank) and fails the rank's assertion: under
 * thread-ranks that ends the process, under mpirun or launch the job.
 *
 * What each implementation can tell differs (Impl.caps, documented at the
 * table of implementations): checks that need a capability an implementation
 * lacks are skipped for it with a line saying why. With ranks as processes a
 * failure check leaves the process's one world aborted (under `mpi` it ends
 * the job: MPI_Abort), so there the failure checks run only with --failures,
 * one per launch: tests/cli_comm_mpi.sh asserts mpirun's exit code and the
 * printed line, tests/cli_comm_tcp.sh that every rank passes its own
 * assertions. See docs/comm_conformance.md. */
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "comm.h"
#include "half.h"
#include "comm_tcp.h"
#include "launch_env.h"
#include "nccl/comm_nccl.h"

/* ---- implementations and what they can tell ---- */

enum {
  /* A timeout or an abort is returned as an error and the process lives on
   * (local). Without it (mpi) the job ends with the reason printed. */
  CAP_SURVIVES_FAILURE = 1 << 0,
  /* Ranks that call different ops / counts / dtypes / roots on one
   * communicator get PX_COMM_ERROR_MISMATCH instead of undefined behaviour. */
  CAP_MISMATCH = 1 << 1,
  /* A receive that expects more elements than the matching send carried gets
   * PX_COMM_ERROR_MISMATCH naming both counts. */
  CAP_P2P_MISMATCH = 1 << 2,
  /* ... and one that expects fewer. */
  CAP_P2P_TRUNCATE = 1 << 5,
  /* A collective's timeout names the ranks that never arrived. */
  CAP_NAMES_MISSING = 1 << 3,
  /* Reductions run in rank order 0..n-1 (so a sum whose value depends on the
   * order has the rank-order value), not only identically on every rank. */
  CAP_RANK_ORDER = 1 << 4,
  /* A call that times out aborts the world by itself (comm.h). Without it
   * (mpi) the caller gets TIMEOUT and aborts with its own context, as the
   * runtime does ("rank 1 (stage 0) ..."). */
  CAP_TIMEOUT_ABORTS = 1 << 6,
  /* Buffers in GPU memory, calls queued on the cuda backend's streams. */
  CAP_DEVICE_BUFFERS = 1 << 7,
  /* bf16 / fp16 reductions: each element's sum formed in fp32 and rounded
   * once to nearest even. Without it (nccl) the sum is rounded at every step
   * of a pairwise reduction: n-1 roundings of partial sums, each within half
   * an ulp of the partial sum's magnitude. */
  CAP_ROUND_ONCE = 1 << 8,
};

typedef struct {
  const char *name;
  guint caps;
  const char *why;      /* what it cannot tell, for the skip lines */
  double min_timeout_s; /* the shortest deadline a check may give it (tcp: it bounds the rendezvous too) */
} Impl;

static const Impl impls[] = {
  /* Every collective is a rendezvous in one process: the last rank to arrive
   * sees every rank's op, count, dtype, reduction and root, and sums in rank
   * order; each pair's messages carry their count and dtype; a waiter knows
   * who has not posted. */
  {"local",
   CAP_SURVIVES_FAILURE | CAP_MISMATCH | CAP_P2P_MISMATCH | CAP_P2P_TRUNCATE | CAP_NAMES_MISSING | CAP_RANK_ORDER |
       CAP_TIMEOUT_ABORTS | CAP_ROUND_ONCE,
   NULL, 0},
  /* One process per rank over Open MPI. Collectives are MPI's non-blocking
   * collectives: MPI carries no op / count / root with them, so a mismatch is
   * undefined behaviour (a hang until the deadline, a truncation error or
   * wrong data), and a timed-out collective cannot say who is missing. A
   * receive learns the sent count from its status (MPI_Get_count): a longer
   * receive is told; a shorter one fails inside MPI (MPI_ERR_TRUNCATE,
   * reported as DEVICE). An inline call that times out returns TIMEOUT
   * without aborting (a queued one aborts, through comm.c); an abort ends
   * the job (MPI_Abort). Halves are reduced by MPI in fp32 (comm_mpi.c) and
   * rounded once. */
  {"mpi", CAP_P2P_MISMATCH | CAP_ROUND_ONCE, "an abort or a timeout ends the job under mpi (tested by tests/cli_comm_mpi.sh)", 0},
  /* One process per rank over TCP sockets (here: thread-ranks of this
   * process, each with sockets of its own). Collectives run through position
   * 0, which sees every rank's call and reduces in rank order; p2p messages
   * carry their size; aborts travel to every peer. */
  {"tcp",
   CAP_SURVIVES_FAILURE | CAP_MISMATCH | CAP_P2P_MISMATCH | CAP_P2P_TRUNCATE | CAP_NAMES_MISSING | CAP_RANK_ORDER |
       CAP_TIMEOUT_ABORTS | CAP_ROUND_ONCE,
   NULL, 2},
  /* One process (or thread-rank) per GPU over NCCL. NCCL checks no counts,
   * ops or roots, reduces in an order of its own, and a timed-out collective
   * cannot say who is missing. A rank's timeout or abort aborts its own
   * communicators (ncclCommAbort) but reaches the other ranks only under
   * mpirun (MPI_Abort): elsewhere they fail at their own deadline, so the
   * failure checks, which expect the abort to reach every rank, do not run.
   * Host buffers are staged through device memory; CAP_DEVICE_BUFFERS checks
   * the native path on the cuda backend's streams. Halves are reduced
   * natively, rounded at each step of NCCL's ring or tree (no CAP_ROUND_ONCE). */
  {"nccl", CAP_DEVICE_BUFFERS,
   "an abort reaches the other ranks under nccl only through mpirun (MPI_Abort); elsewhere they fail at their deadline",
   0},
};

static const Impl *impl_find(const char *name) {
  for (gsize i = 0; i < G_N_ELEMENTS(impls); i++)
    if (!strcmp(impls[i].name, name)) return &impls[i];
  return NULL;
}

/* What a check sees besides its communicator. */
typedef struct {
  const Impl *impl;
  int n;            /* world size */
  double timeout_s; /* the world's deadline */
} Ctx;

typedef void (*CheckFn)(PxComm *world, const Ctx *ctx);

/* ---- helpers ---- */

/* An unexpected error: release the peers (abort the world with the reason),
 * then fail this rank's assertion. call must set `err` on failure. */
/* --queue (thread-ranks): the calls the checks make through OK with no
 * stream of their own go on S, this rank's stream: "inline" the compute
 * stream of a cpu backend of the rank's, "worker" a worker stream of it (OK
 * synchronises it after the call, so that the check reads complete results).
 * tests/CMakeLists.txt runs the `local` suite so with PX_COMM_LOCAL_DEVICE=1:
 * its collectives, sends, receives and groups then take the device path
 * (comm_local.c). NULL: none. */
static char *opt_queue;
static GPrivate rank_stream = G_PRIVATE_INIT(NULL);
#define S ((PxStream *)g_private_get(&rank_stream))

static gboolean sync_rank_stream(GError **error) {
  PxStream *s = S;
  return !s || px_stream_is_inline(s) || px_stream_synchronize(s, error);
}

#define OK(c, call)                                                                                \
  do {                                                                                             \
    GError *err = NULL;                                                                            \
    if (!(call) || !sync_rank_stream(&err)) {                                                      \
      g_assert_nonnull(err);                                                                       \
      px_comm_abort((c), err->message);                                                            \
      g_assert_no_error(err);                                                                      \
    }                                                                                              \
  } while (0)

static const PxDType DTYPES[] = {PX_DTYPE_F32, PX_DTYPE_F64, PX_DTYPE_I32};
/* the reductions: the same and the halves */
static const PxDType RED_DTYPES[] = {PX_DTYPE_F32, PX_DTYPE_F64, PX_DTYPE_I32, PX_DTYPE_BF16, PX_DTYPE_F16};
static const gsize SIZES[] = {1, 7, 1000, 1 << 20};

static void put(void *b, gsize i, PxDType dt, double v) {
  switch (dt) {
  case PX_DTYPE_F32: ((float *)b)[i] = (float)v; break;
  case PX_DTYPE_F64: ((double *)b)[i] = v; break;
  case PX_DTYPE_I32: ((gint32 *)b)[i] = (gint32)v; break;
  case PX_DTYPE_BF16: ((guint16 *)b)[i] = px_f32_to_bf16((float)v); break;
  case PX_DTYPE_F16: ((guint16 *)b)[i] = px_f32_to_f16((float)v); break;
  }
}

static double get(const void *b, gsize i, PxDType dt) {
  switch (dt) {
  case PX_DTYPE_F32: return ((const float *)b)[i];
  case PX_DTYPE_F64: return ((const double *)b)[i];
  case PX_DTYPE_I32: return ((const gint32 *)b)[i];
  case PX_DTYPE_BF16: return px_bf16_to_f32(((const guint16 *)b)[i]);
  case PX_DTYPE_F16: return px_f16_to_f32(((const guint16 *)b)[i]);
  }
  return 0;
}

static void *buf_new(gsize count, PxDType dt) { return g_malloc0(MAX(count, 1) * px_dtype_size(dt)); }

/* Assert got == want element by element (exact: every value is a small
 * integer); the first wrong element is named with the rank and what. */
static void expect_same(PxComm *c, const char *what, const void *got, const void *want, gsize count, PxDType dt) {
  if (!memcmp(got, want, count * px_dtype_size(dt))) return;
  for (gsize i = 0; i < count; i++)
    if (get(got, i, dt) != get(want, i, dt)) {
      g_autofree char *msg = g_strdup_printf("rank %d of %s, %s: element %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT
                                             " %s is %.17g, expected %.17g",
                                             px_comm_rank(c), px_comm_label(c), what, i, count, px_dtype_name(dt),
                                             get(got, i, dt), get(want, i, dt));
      g_assertion_message(G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC, msg);
    }
}

/* Data. Reductions: rank r holds (r+1)(i mod 8191 + 1), whose sum over n
 * ranks is n(n+1)/2 (i mod 8191 + 1) — below 2^24, exact in f32. In bf16 and
 * fp16, rank r holds (r+1)(i mod 25 - 12)/2, whose sum is n(n+1)/2 (i mod 25 -
 * 12)/2: with n ≤ 4 every value and every partial sum over any ranks is a
 * multiple of 1/2 of magnitude ≤ 60 (< 128: at most 8 significant bits), exact
 * in bf16 and fp16, so that the result is exact however an implementation
 * orders and rounds the sum. Max: rank r holds 3((r+i) mod n) - 10 + i mod 5
 * (an integer in [-10, 3], exact in every dtype), whose maximum is 3(n-1) -
 * 10 + i mod 5 (every residue occurs once among n consecutive r). Moves: rank
 * r holds 10000 r + i mod 8191 - 3. */
static double red_val(int r, gsize i, PxDType dt) {
  if (px_dtype_is_half(dt)) return (r + 1.0) * ((double)(i % 25) - 12) / 2;
  return (r + 1.0) * (double)(i % 8191 + 1);
}
static double red_sum(int n, gsize i, PxDType dt) {
  if (px_dtype_is_half(dt)) return n * (n + 1) / 2.0 * ((double)(i % 25) - 12) / 2;
  return n * (n + 1) / 2.0 * (double)(i % 8191 + 1);
}
static double max_val(int r, gsize i, int n) { return 3.0 * (double)(((gsize)r + i) % (gsize)n) - 10 + (double)(i % 5); }
static double max_max(int n, gsize i) { return 3.0 * (n - 1) - 10 + (double)(i % 5); }
static double mov_val(int r, gsize i) { return 10000.0 * r + (double)(i % 8191) - 3; }

static char *what_of(const char *op, gsize count, PxDType dt) {
  return g_strdup_printf("%s of %" G_GSIZE_FORMAT " %s", op, count, px_dtype_name(dt));
}

/* ---- collectives ---- */

/* Every check below runs on every dtype and size: fn(world, ctx, dt, count,
 * variant), variant saying which flavour (a reduction; grouped or not). */
typedef void (*CaseFn)(PxComm *world, const Ctx *ctx, PxDType dt, gsize count, int variant);

static void each_case(PxComm *world, const Ctx *ctx, CaseFn fn, int variant) {
  for (gsize d = 0; d < G_N_ELEMENTS(DTYPES); d++)
    for (gsize s = 0; s < G_N_ELEMENTS(SIZES); s++) fn(world, ctx, DTYPES[d], SIZES[s], variant);
}

/* The reductions: every size in RED_DTYPES (the halves too). */
static void each_red_case(PxComm *world, const Ctx *ctx, CaseFn fn, int variant) {
  g_assert_cmpint(ctx->n, <=, 4); /* the half data's sums are exact up to 4 ranks */
  for (gsize d = 0; d < G_N_ELEMENTS(RED_DTYPES); d++)
    for (gsize s = 0; s < G_N_ELEMENTS(SIZES); s++) fn(world, ctx, RED_DTYPES[d], SIZES[s], variant);
}

static void all_reduce_case(PxComm *world, const Ctx *ctx, PxDType dt, gsize count, int op) {
  int r = px_comm_rank(world), n = ctx->n;
  g_autofree void *buf = buf_new(count, dt), *want = buf_new(count, dt);
  for (gsize i = 0; i < count; i++) {
    put(buf, i, dt, op == PX_RED_SUM ? red_val(r, i, dt) : max_val(r, i, n));
    put(want, i, dt, op == PX_RED_SUM ? red_sum(n, i, dt) : max_max(n, i));
  }
  OK(world, px_comm_all_reduce(world, buf, count, dt, (PxRedOp)op, S, &err));
  g_autofree char *what = what_of(op == PX_RED_SUM ? "all_reduce sum" : "all_reduce max", count, dt);
  expect_same(world, what, buf, want, count, dt);
}

static void check_all_reduce_sum(PxComm *world, const Ctx *ctx) { each_red_case(world, ctx, all_reduce_case, PX_RED_SUM); }
static void check_all_reduce_max(PxComm *world, const Ctx *ctx) { each_red_case(world, ctx, all_reduce_case, PX_RED_MAX); }

/* f32 sums whose value depends on the order: every rank must get the
 * bit-identical result (comm.h). Element 0: ranks hold 1e8, 1, -1e8, 1 —
 * in rank order ((1e8 + 1) - 1e8) + 1 = 1 in f32 (1e8 + 1 rounds to 1e8),
 * where the exact sum is 2. Elements 1..999: a seeded mix of magnitudes. The
 * results of all ranks are gathered and compared bit for bit. */
static void check_all_reduce_identical(PxComm *world, const Ctx *ctx) {
  static const float first[4] = {1e8f, 1.0f, -1e8f, 1.0f};
  int r = px_comm_rank(world), n = ctx->n;
  enum { COUNT = 1000 };
  float buf[COUNT];
  g_autoptr(GRand) rand = g_rand_new_with_seed(1234u + (guint32)r);
  buf[0] = first[r % 4];
  for (int i = 1; i < COUNT; i++) {
    double x = g_rand_double_range(rand, -1, 1);
    for (int e = g_rand_int_range(rand, 0, 14); e > 0; e--) x *= 10; /* magnitudes 1 .. 1e13 */
    buf[i] = (float)x;
  }
  OK(world, px_comm_all_reduce(world, buf, COUNT, PX_DTYPE_F32, PX_RED_SUM, S, &err));
  g_autofree float *all = g_new(float, (gsize)n * COUNT);
  OK(world, px_comm_all_gather(world, buf, all, COUNT, PX_DTYPE_F32, S, &err));
  for (int k = 0; k < n; k++)
    if (memcmp(all + (gsize)k * COUNT, buf, sizeof buf)) {
      int i = 0;
      while (all[(gsize)k * COUNT + i] == buf[i]) i++;
      g_autofree char *msg = g_strdup_printf("all_reduce of %d f32 on %s: rank %d got %.9g at element %d, rank %d got %.9g",
                                             COUNT, px_comm_label(world), r, buf[i], i, k, all[(gsize)k * COUNT + i]);
      g_assertion_message(G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC, msg);
    }
  if (ctx->impl->caps & CAP_RANK_ORDER) {
    /* 2 ranks: 1e8 + 1 = 1e8; 3: (1e8 + 1) - 1e8 = 0; 4: 0 + 1 = 1 */
    static const float rank_order[5] = {0, 0, 1e8f, 0.0f, 1.0f};
    g_assert_cmpfloat(buf[0], ==, rank_order[n]);
  }
}

static void reduce_scatter_case(PxComm *world, const Ctx *ctx, PxDType dt, gsize count, int variant) {
  (void)variant;
  int r = px_comm_rank(world), n = ctx->n;
  g_autofree void *send = buf_new((gsize)n * count, dt), *recv = buf_new(count, dt), *want = buf_new(count, dt);
  for (gsize i = 0; i < (gsize)n * count; i++) put(send, i, dt, red_val(r, i, dt));
  /* rank r gets chunk r of the sum: elements r*count .. (r+1)*count-1 */
  for (gsize i = 0; i < count; i++) put(want, i, dt, red_sum(n, (gsize)r * count + i, dt));
  OK(world, px_comm_reduce_scatter(world, send, recv, count, dt, S, &err));
  g_autofree char *what = what_of("reduce_scatter", count, dt);
  expect_same(world, what, recv, want, count, dt);
}

static void check_reduce_scatter(PxComm *world, const Ctx *ctx) { each_red_case(world, ctx, reduce_scatter_case, 0); }

/* ---- halves: where the rounding matters ---- */

/* One element of a half reduction whose result is known by hand: rank 0
 * contributes `first`, every other rank `rest`, so that the exact sum over n
 * ranks is first + (n-1) rest. */
typedef struct {
  double first, rest;
  /* by world size n = 1..4: the exact sum rounded once to nearest even in
   * the dtype (hand-computed; index 0 unused) */
  double want[5];
  /* half an ulp of the dtype at the partial sums' magnitude: the most one
   * rounding of a partial sum can move it */
  double half_ulp;
} HalfCase;

/* all_reduce, then reduce_scatter (every chunk holding the same elements),
 * of the k elements of cs in dt. An implementation that rounds once
 * (CAP_ROUND_ONCE) must give want[n] exactly; one that rounds each step of a
 * pairwise reduction (nccl: n-1 roundings) must be within (n-1) half_ulp of
 * the exact sum, and give want[n] where that is ±Inf (an fp16 overflow is
 * ±Inf either way). */
static void half_reduce(PxComm *world, const Ctx *ctx, PxDType dt, const HalfCase *cs, int k) {
  int r = px_comm_rank(world), n = ctx->n;
  g_assert_cmpint(n, <=, 4);
  g_autofree void *buf = buf_new((gsize)k, dt), *send = buf_new((gsize)n * k, dt), *recv = buf_new((gsize)k, dt);
  for (int e = 0; e < k; e++) put(buf, (gsize)e, dt, r == 0 ? cs[e].first : cs[e].rest);
  for (int j = 0; j < n; j++)
    for (int e = 0; e < k; e++) put(send, (gsize)(j * k + e), dt, r == 0 ? cs[e].first : cs[e].rest);
  OK(world, px_comm_all_reduce(world, buf, (gsize)k, dt, PX_RED_SUM, S, &err));
  OK(world, px_comm_reduce_scatter(world, send, recv, (gsize)k, dt, S, &err));
  gboolean once = (ctx->impl->caps & CAP_ROUND_ONCE) != 0;
  for (int pass = 0; pass < 2; pass++)
    for (int e = 0; e < k; e++) {
      double got = get(pass ? recv : buf, (gsize)e, dt), want = cs[e].want[n];
      double exact = cs[e].first + (n - 1) * cs[e].rest, tol = (n - 1) * cs[e].half_ulp;
      if (once || isinf(want) ? got == want : fabs(got - exact) <= tol) continue;
      g_autofree char *msg =
          once || isinf(want)
              ? g_strdup_printf("rank %d of %s, %s of %d %s: element %d is %.9g, expected %.9g (the exact sum %.9g "
                                "rounded once to nearest even)", r, px_comm_label(world),
                                pass ? "reduce_scatter" : "all_reduce sum", k, px_dtype_name(dt), e, got, want, exact)
              : g_strdup_printf("rank %d of %s, %s of %d %s: element %d is %.9g, more than %g from the exact sum %.9g "
                                "(%d roundings of half an ulp)", r, px_comm_label(world),
                                pass ? "reduce_scatter" : "all_reduce sum", k, px_dtype_name(dt), e, got, tol, exact,
                                n - 1);
      g_assertion_message(G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC, msg);
    }
}

/* Sums that are not exact in the half dtype. bf16 keeps 8 significant bits:
 * between 256 and 512 its ulp is 2; fp16 keeps 11: between 2048 and 4096 the
 * ulp is 2. With B = 256 (bf16) or 2048 (fp16), rank 0 holding B and the
 * others 1, the exact sum B + n - 1 is rounded: n = 2, B + 1, a tie, to B (B's
 * last significand bit is 0, B + 2's is 1); n = 3, B + 2, exact; n = 4, B + 3,
 * a tie, to B + 4 (even). The same negated; with 1.5 instead of 1 (B + 1.5
 * to B + 2, nearer; B + 3, a tie, to B + 4; B + 4.5 to B + 4, nearer); and the
 * first scaled by 1/B (1 and 1/B: a power of two scales the rounding). */
static void check_halves_rounding(PxComm *world, const Ctx *ctx) {
  for (int h = 0; h < 2; h++) {
    PxDType dt = h ? PX_DTYPE_F16 : PX_DTYPE_BF16;
    double B = h ? 2048 : 256;
    const HalfCase cs[] = {
      {B, 1, {0, B, B, B + 2, B + 4}, 1},
      {-B, -1, {0, -B, -B, -(B + 2), -(B + 4)}, 1},
      {B, 1.5, {0, B, B + 2, B + 4, B + 4}, 1},
      {1, 1 / B, {0, 1, 1, 1 + 2 / B, 1 + 4 / B}, 1 / B},
    };
    half_reduce(world, ctx, dt, cs, G_N_ELEMENTS(cs));
  }
}

/* fp16 overflows to ±Inf, as on NCCL: fp16's largest finite value is 65504
 * (ulp 32 above 32768), and a sum of 65520 or more rounds to Inf (65520 is
 * the tie between 65504, odd, and 65536, which does not fit). Every rank
 * holding ±60000: ±Inf from 2 ranks on. Rank 0 holding 65504 and the others
 * 4: at most 65516, which rounds back to 65504; the others 16: 65520 from 2
 * ranks on, Inf. */
static void check_halves_fp16_overflow(PxComm *world, const Ctx *ctx) {
  const HalfCase cs[] = {
    {60000, 60000, {0, 60000, INFINITY, INFINITY, INFINITY}, 16},
    {-60000, -60000, {0, -60000, -INFINITY, -INFINITY, -INFINITY}, 16},
    {65504, 4, {0, 65504, 65504, 65504, 65504}, 16},
    {65504, 16, {0, 65504, INFINITY, INFINITY, INFINITY}, 16},
  };
  half_reduce(world, ctx, PX_DTYPE_F16, cs, G_N_ELEMENTS(cs));
}

/* bf16 and fp16 all_reduce of seeded values of mixed magnitudes (bf16 1e-3 ..
 * 1e9, fp16 1e-3 .. 1e3, both signs), whose sums round: every rank must get
 * the bit-identical result (gathered and compared bit for bit). An
 * implementation that reduces in rank order and rounds once must give the
 * fp32 rank-order sum of the inputs (every rank's are regenerated here from
 * its seed) rounded once to nearest even. */
static void check_halves_identical(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world), n = ctx->n;
  enum { COUNT = 1000 };
  for (int h = 0; h < 2; h++) {
    PxDType dt = h ? PX_DTYPE_F16 : PX_DTYPE_BF16;
    int decades = h ? 6 : 12;
    g_autofree guint16 *in = g_new(guint16, (gsize)n * COUNT); /* every rank's input */
    for (int k = 0; k < n; k++) {
      g_autoptr(GRand) rand = g_rand_new_with_seed(4321u + (guint32)k);
      for (int i = 0; i < COUNT; i++) {
        double x = g_rand_double_range(rand, -1, 1) * 1e-3;
        for (int e = g_rand_int_range(rand, 0, decades + 1); e > 0; e--) x *= 10;
        put(in, (gsize)k * COUNT + i, dt, x);
      }
    }
    guint16 buf[COUNT];
    memcpy(buf, in + (gsize)r * COUNT, sizeof buf);
    OK(world, px_comm_all_reduce(world, buf, COUNT, dt, PX_RED_SUM, S, &err));
    g_autofree guint16 *all = g_new(guint16, (gsize)n * COUNT);
    OK(world, px_comm_all_gather(world, buf, all, COUNT, dt, S, &err));
    for (int k = 0; k < n; k++)
      if (memcmp(all + (gsize)k * COUNT, buf, sizeof buf)) {
        int i = 0;
        while (all[(gsize)k * COUNT + i] == buf[i]) i++;
        g_autofree char *msg = g_strdup_printf("all_reduce of %d %s on %s: rank %d got %.9g at element %d, rank %d got %.9g",
                                               COUNT, px_dtype_name(dt), px_comm_label(world), r, get(buf, i, dt), i, k,
                                               get(all, (gsize)k * COUNT + i, dt));
        g_assertion_message(G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC, msg);
      }
    if ((ctx->impl->caps & (CAP_RANK_ORDER | CAP_ROUND_ONCE)) != (CAP_RANK_ORDER | CAP_ROUND_ONCE)) continue;
    guint16 want[COUNT];
    for (int i = 0; i < COUNT; i++) {
      float acc = (float)get(in, (gsize)i, dt);
      for (int k = 1; k < n; k++) acc += (float)get(in, (gsize)k * COUNT + i, dt);
      want[i] = h ? px_f32_to_f16(acc) : px_f32_to_bf16(acc);
    }
    g_autofree char *what = what_of("all_reduce sum (rank-order fp32, rounded once)", COUNT, dt);
    expect_same(world, what, buf, want, COUNT, dt);
  }
}

/* Out of place, then in place (send = recv + rank*count, as ZeRO-3 gathers a
 * shard that already sits in the full tensor). */
static void all_gather_case(PxComm *world, const Ctx *ctx, PxDType dt, gsize count, int variant) {
  (void)variant;
  int r = px_comm_rank(world), n = ctx->n;
  gsize es = px_dtype_size(dt);
  g_autofree void *send = buf_new(count, dt), *recv = buf_new((gsize)n * count, dt),
                  *want = buf_new((gsize)n * count, dt);
  for (gsize i = 0; i < count; i++) put(send, i, dt, mov_val(r, i));
  for (int k = 0; k < n; k++)
    for (gsize i = 0; i < count; i++) put(want, (gsize)k * count + i, dt, mov_val(k, i));
  OK(world, px_comm_all_gather(world, send, recv, count, dt, S, &err));
  g_autofree char *what = what_of("all_gather", count, dt);
  expect_same(world, what, recv, want, (gsize)n * count, dt);

  memset(recv, 0xff, (gsize)n * count * es);
  void *mine = (char *)recv + (gsize)r * count * es;
  memcpy(mine, send, count * es);
  OK(world, px_comm_all_gather(world, mine, recv, count, dt, S, &err));
  g_autofree char *what2 = what_of("all_gather in place", count, dt);
  expect_same(world, what2, recv, want, (gsize)n * count, dt);
}

static void check_all_gather(PxComm *world, const Ctx *ctx) { each_case(world, ctx, all_gather_case, 0); }

static void broadcast_case(PxComm *world, const Ctx *ctx, PxDType dt, gsize count, int variant) {
  (void)variant;
  int r = px_comm_rank(world);
  for (int root = 0; root < ctx->n; root++) {
    g_autofree void *buf = buf_new(count, dt), *want = buf_new(count, dt);
    for (gsize i = 0; i < count; i++) put(buf, i, dt, mov_val(r, i)), put(want, i, dt, mov_val(root, i));
    OK(world, px_comm_broadcast(world, buf, count, dt, root, S, &err));
    g_autofree char *what = g_strdup_printf("broadcast from %d", root);
    expect_same(world, what, buf, want, count, dt);
  }
}

static void check_broadcast(PxComm *world, const Ctx *ctx) { each_case(world, ctx, broadcast_case, 0); }

/* Every rank creates its file in a directory of rank 0's, then passes the
 * barrier: after it, all n files exist. The ranks arrive in reverse order, the
 * last after (n-1) × 20 ms, so that a barrier that lets a rank through early
 * is seen (no time is asserted). Files rather than memory, so that the check
 * holds across processes. */
static void check_barrier(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world), n = ctx->n;
  gint32 path[64] = {0};
  if (r == 0) {
    g_autoptr(GError) e = NULL;
    g_autofree char *dir = g_dir_make_tmp("px-barrier-XXXXXX", &e);
    g_assert_no_error(e);
    g_assert_cmpuint(strlen(dir), <, sizeof path);
    memcpy(path, dir, strlen(dir));
  }
  OK(world, px_comm_broadcast(world, path, G_N_ELEMENTS(path), PX_DTYPE_I32, 0, S, &err));
  const char *dir = (const char *)path;
  for (int round = 0; round < 2; round++) {
    g_usleep((gulong)(n - 1 - r) * 20000);
    g_autofree char *mine = g_strdup_printf("%s/%d.%d", dir, round, r);
    g_assert_true(g_file_set_contents(mine, "", 0, NULL));
    OK(world, px_comm_barrier(world, S, &err));
    for (int k = 0; k < n; k++) {
      g_autofree char *theirs = g_strdup_printf("%s/%d.%d", dir, round, k);
      if (!g_file_test(theirs, G_FILE_TEST_EXISTS)) {
        g_autofree char *msg = g_strdup_printf("rank %d left the barrier before rank %d arrived", r, k);
        g_assertion_message(G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC, msg);
      }
    }
  }
  OK(world, px_comm_barrier(world, S, &err)); /* everyone has looked */
  if (r == 0) {
    for (int round = 0; round < 2; round++)
      for (int k = 0; k < n; k++) {
        g_autofree char *f = g_strdup_printf("%s/%d.%d", dir, round, k);
        g_unlink(f);
      }
    g_rmdir(dir);
  }
}

/* ---- point-to-point ---- */

/* A pipeline of m = 4 micro-batches of 1000 f64, forward then backward:
 * forward, rank r receives from r-1 what ranks 0..r-1 added ((k+1) each) and
 * adds r+1; backward, rank r receives from r+1 and adds 100 (r+1). Plain
 * blocking calls: no rank both sends to and receives from one peer. */
static void check_pipeline(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world), n = ctx->n;
  enum { M = 4, COUNT = 1000 };
  double v[COUNT], want[COUNT];
  for (int mb = 0; mb < M; mb++) {
    if (r == 0)
      for (int i = 0; i < COUNT; i++) v[i] = 1000.0 * mb + i;
    else {
      OK(world, px_comm_recv(world, v, COUNT, PX_DTYPE_F64, r - 1, S, &err));
      for (int i = 0; i < COUNT; i++) want[i] = 1000.0 * mb + i + r * (r + 1) / 2.0; /* sum_{k<r} (k+1) */
      g_autofree char *what = g_strdup_printf("forward micro-batch %d", mb);
      expect_same(world, what, v, want, COUNT, PX_DTYPE_F64);
    }
    for (int i = 0; i < COUNT; i++) v[i] += r + 1;
    if (r < n - 1) OK(world, px_comm_send(world, v, COUNT, PX_DTYPE_F64, r + 1, S, &err));
  }
  for (int mb = 0; mb < M; mb++) {
    if (r == n - 1)
      for (int i = 0; i < COUNT; i++) v[i] = -1000.0 * mb - i;
    else {
      OK(world, px_comm_recv(world, v, COUNT, PX_DTYPE_F64, r + 1, S, &err));
      /* sum_{k=r+1}^{n-1} 100 (k+1) = 50 (n(n+1) - (r+1)(r+2)) */
      for (int i = 0; i < COUNT; i++) want[i] = -1000.0 * mb - i + 50.0 * (n * (n + 1) - (r + 1) * (r + 2));
      g_autofree char *what = g_strdup_printf("backward micro-batch %d", mb);
      expect_same(world, what, v, want, COUNT, PX_DTYPE_F64);
    }
    for (int i = 0; i < COUNT; i++) v[i] += 100.0 * (r + 1);
    if (r > 0) OK(world, px_comm_send(world, v, COUNT, PX_DTYPE_F64, r - 1, S, &err));
  }
}

/* A ring: every rank sends to r+1 and receives from r-1. Ordered: even ranks
 * send then receive, odd ranks the other way round, with plain blocking
 * calls, which completes even where sends wait for their receive (rank 1
 * receives first, so the chain starts). Grouped: the pair in one group, every
 * rank sending first. */
static void ring_case(PxComm *world, const Ctx *ctx, PxDType dt, gsize count, int grouped) {
  int r = px_comm_rank(world), n = ctx->n, next = (r + 1) % n, prev = (r + n - 1) % n;
  g_autofree void *send = buf_new(count, dt), *recv = buf_new(count, dt), *want = buf_new(count, dt);
  for (gsize i = 0; i < count; i++) put(send, i, dt, mov_val(r, i)), put(want, i, dt, mov_val(prev, i));
  if (grouped) {
    px_comm_group_start(world);
    OK(world, px_comm_send(world, send, count, dt, next, S, &err));
    OK(world, px_comm_recv(world, recv, count, dt, prev, S, &err));
    OK(world, px_comm_group_end(world, S, &err));
  } else if (r % 2 == 0) {
    OK(world, px_comm_send(world, send, count, dt, next, S, &err));
    OK(world, px_comm_recv(world, recv, count, dt, prev, S, &err));
  } else {
    OK(world, px_comm_recv(world, recv, count, dt, prev, S, &err));
    OK(world, px_comm_send(world, send, count, dt, next, S, &err));
  }
  g_autofree char *what = what_of(grouped ? "grouped ring recv" : "ring recv", count, dt);
  expect_same(world, what, recv, want, count, dt);
}

static void check_ring_ordered(PxComm *world, const Ctx *ctx) { each_case(world, ctx, ring_case, FALSE); }
static void check_ring_grouped(PxComm *world, const Ctx *ctx) { each_case(world, ctx, ring_case, TRUE); }

/* Message k from rank src to rank dst: 1 + 37k elements (k = 3: 2^20, so that
 * a large message sits between small ones) of 10000 src + 100 k + i mod 97 + dst. */
enum { FIFO_K = 6 };
static gsize fifo_count(int k) { return k == 3 ? (gsize)1 << 20 : 1 + 37 * (gsize)k; }
static double fifo_val(int src, int dst, int k, gsize i) { return 10000.0 * src + 100.0 * k + (double)(i % 97) + dst; }

static void fifo_recv(PxComm *world, int src, int dst) {
  for (int k = 0; k < FIFO_K; k++) {
    gsize count = fifo_count(k);
    g_autofree float *got = g_new0(float, count), *want = g_new(float, count);
    for (gsize i = 0; i < count; i++) want[i] = (float)fifo_val(src, dst, k, i);
    OK(world, px_comm_recv(world, got, count, PX_DTYPE_F32, src, S, &err));
    g_autofree char *what = g_strdup_printf("message %d from rank %d", k, src);
    expect_same(world, what, got, want, count, PX_DTYPE_F32);
  }
}

static void fifo_send(PxComm *world, int src, int dst) {
  for (int k = 0; k < FIFO_K; k++) {
    gsize count = fifo_count(k);
    g_autofree float *buf = g_new(float, count);
    for (gsize i = 0; i < count; i++) buf[i] = (float)fifo_val(src, dst, k, i);
    OK(world, px_comm_send(world, buf, count, PX_DTYPE_F32, dst, S, &err));
  }
}

/* FIFO per pair without tags: every rank sends FIFO_K messages of different
 * sizes to rank 0, which receives them from the highest rank first; then
 * rank 0 sends FIFO_K to every other rank. Each arrives in its send order. */
static void check_fifo(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world), n = ctx->n;
  if (r == 0) {
    for (int src = n - 1; src >= 1; src--) fifo_recv(world, src, 0);
    for (int dst = 1; dst < n; dst++) fifo_send(world, 0, dst);
  } else {
    fifo_send(world, r, 0);
    fifo_recv(world, 0, r);
  }
}

/* All-to-all in one group: every rank sends to and receives from every other
 * rank, `per_peer` messages each way per pair (2^18 f32, then 5 f32), all
 * issued before any is waited for. With two per peer, the two messages to one
 * peer in one group arrive in their call order (FIFO holds inside a group, as
 * NCCL matches a group's sends and receives to one peer in order). */
static void group_exchange(PxComm *world, int n, int per_peer) {
  int r = px_comm_rank(world);
  const gsize counts[2] = {(gsize)1 << 18, 5};
  float *send[8][2], *recv[8][2];
  px_comm_group_start(world);
  for (int p = 0; p < n; p++) {
    if (p == r) continue;
    for (int k = 0; k < per_peer; k++) {
      send[p][k] = g_new(float, counts[k]);
      recv[p][k] = g_new0(float, counts[k]);
      for (gsize i = 0; i < counts[k]; i++) send[p][k][i] = (float)fifo_val(r, p, k, i);
      OK(world, px_comm_send(world, send[p][k], counts[k], PX_DTYPE_F32, p, S, &err));
      OK(world, px_comm_recv(world, recv[p][k], counts[k], PX_DTYPE_F32, p, S, &err));
    }
  }
  OK(world, px_comm_group_end(world, S, &err));
  for (int p = 0; p < n; p++) {
    if (p == r) continue;
    for (int k = 0; k < per_peer; k++) {
      g_autofree float *want = g_new(float, counts[k]);
      for (gsize i = 0; i < counts[k]; i++) want[i] = (float)fifo_val(p, r, k, i);
      g_autofree char *what = g_strdup_printf("grouped message %d from rank %d", k, p);
      expect_same(world, what, recv[p][k], want, counts[k], PX_DTYPE_F32);
      g_free(send[p][k]);
      g_free(recv[p][k]);
    }
  }
}

/* One group over two communicators of the same ranks, as the runtime issues
 * a pipeline stage's transfers (activations on one, gradients on the
 * other): each rank sends to the next rank on both and receives from the
 * previous on both, sends and receives interleaved, all in one group
 * (px_comm_group_end_multi); 4096 f32 on the first (above Open MPI's 4 KB
 * shared-memory eager limit), 5 on the second. */
static void check_group_two_comms(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world), n = ctx->n;
  int next = (r + 1) % n, prev = (r + n - 1) % n;
  g_autoptr(PxComm) a = NULL, b = NULL;
  OK(world, (a = px_comm_split(world, 0, r, "act", &err)) != NULL);
  OK(world, (b = px_comm_split(world, 0, r, "grad", &err)) != NULL);
  enum { NA = 4096, NB = 5 };
  g_autofree float *sa = g_new(float, NA), *ra = g_new0(float, NA), *want_a = g_new(float, NA);
  float sb[NB], rb[NB] = {0}, want_b[NB];
  for (gsize i = 0; i < NA; i++) sa[i] = (float)mov_val(r, i), want_a[i] = (float)mov_val(prev, i);
  for (gsize i = 0; i < NB; i++) sb[i] = (float)fifo_val(r, next, 1, i), want_b[i] = (float)fifo_val(prev, r, 1, i);
  PxComm *both[2] = {a, b};
  px_comm_group_start(a);
  px_comm_group_start(b);
  OK(world, px_comm_send(a, sa, NA, PX_DTYPE_F32, next, S, &err));
  OK(world, px_comm_recv(b, rb, NB, PX_DTYPE_F32, prev, S, &err));
  OK(world, px_comm_recv(a, ra, NA, PX_DTYPE_F32, prev, S, &err));
  OK(world, px_comm_send(b, sb, NB, PX_DTYPE_F32, next, S, &err));
  OK(world, px_comm_group_end_multi(both, 2, S, &err));
  expect_same(world, "group over two communicators: the first's message", ra, want_a, NA, PX_DTYPE_F32);
  expect_same(world, "group over two communicators: the second's message", rb, want_b, NB, PX_DTYPE_F32);
}

static void check_group_exchange(PxComm *world, const Ctx *ctx) { group_exchange(world, ctx->n, 1); }

/* A pp 2 pipeline's transfers as the runtime issues them (exec/runtime.c
 * issue_group): ranks in pairs (2k = stage 0, 2k+1 = stage 1; an odd last
 * rank sits out), activations on one communicator and gradients on another,
 * 1F1B over M = 4 micro-batches of 1000 f32. At step t stage 0 sends
 * activation t (t < M) and receives gradient t-1 (t ≥ 1) in one group over
 * both communicators; stage 1 sends gradient t-1 and receives activation t.
 * Activation mb is 1000 mb + i + s0/2 (s0: stage 0's world rank); stage 1
 * returns 2 a + 1 + s1: every value below 2^24, exact in f32. */
static void check_pp2_exchange(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world), n = ctx->n;
  int color = r / 2 < n / 2 ? r / 2 : PX_COMM_NO_COLOR;
  GError *e = NULL;
  g_autoptr(PxComm) act = px_comm_split(world, color, r, "act", &e);
  g_assert_no_error(e);
  g_autoptr(PxComm) grad = px_comm_split(world, color, r, "grad", &e);
  g_assert_no_error(e);
  if (!act) return;
  enum { M = 4, COUNT = 1000 };
  int stage = px_comm_rank(act), s0 = px_comm_global_rank(act, 0), s1 = px_comm_global_rank(act, 1);
  g_autofree float *a = g_new0(float, M * COUNT), *g = g_new0(float, M * COUNT), *want = g_new(float, COUNT);
  if (stage == 0)
    for (int mb = 0; mb < M; mb++)
      for (int i = 0; i < COUNT; i++) a[mb * COUNT + i] = 1000.0f * mb + i + 0.5f * s0;
  PxComm *both[2] = {act, grad};
  for (int t = 0; t <= M; t++) {
    px_comm_group_start(act);
    px_comm_group_start(grad);
    if (stage == 0) {
      if (t < M) OK(world, px_comm_send(act, a + t * COUNT, COUNT, PX_DTYPE_F32, 1, S, &err));
      if (t >= 1) OK(world, px_comm_recv(grad, g + (t - 1) * COUNT, COUNT, PX_DTYPE_F32, 1, S, &err));
    } else {
      if (t >= 1) OK(world, px_comm_send(grad, g + (t - 1) * COUNT, COUNT, PX_DTYPE_F32, 0, S, &err));
      if (t < M) OK(world, px_comm_recv(act, a + t * COUNT, COUNT, PX_DTYPE_F32, 0, S, &err));
    }
    OK(world, px_comm_group_end_multi(both, 2, S, &err));
    if (stage == 1 && t < M)
      for (int i = 0; i < COUNT; i++) g[t * COUNT + i] = 2 * a[t * COUNT + i] + 1 + s1;
  }
  for (int mb = 0; mb < M; mb++) {
    g_autofree char *what = g_strdup_printf("%s %d of the pp 2 exchange", stage ? "activation" : "gradient", mb);
    for (int i = 0; i < COUNT; i++) {
      float x = 1000.0f * mb + i + 0.5f * s0;
      want[i] = stage ? x : 2 * x + 1 + s1;
    }
    expect_same(world, what, (stage ? a : g) + mb * COUNT, want, COUNT, PX_DTYPE_F32);
  }
}

typedef struct {
  gulong us;
} Nap;

static gboolean nap_run(gpointer data, GError **error) {
  (void)error;
  g_usleep(((Nap *)data)->us);
  return TRUE;
}

/* Receives are matched in the order the rank made them, not the order its
 * streams run them (NCCL: a communicator's calls in issue order): rank 1
 * queues its three receives from rank 0 (3, 1000 and 7 f32) on two worker
 * streams, A, B, A, stream A held 30 ms first, so that B's receive (the
 * second) runs before the first; each still gets its own message (a wrong
 * match is a count mismatch). Rank 0 sends them on its stream, in order. */
static void check_issue_order(PxComm *world, const Ctx *ctx) {
  (void)ctx;
  int r = px_comm_rank(world);
  const gsize counts[3] = {3, 1000, 7};
  float *buf[3];
  for (int k = 0; k < 3; k++) {
    buf[k] = g_new0(float, counts[k]);
    if (r == 0)
      for (gsize i = 0; i < counts[k]; i++) buf[k][i] = 10000.0f * k + (float)i;
  }
  if (r == 0)
    for (int k = 0; k < 3; k++) OK(world, px_comm_send(world, buf[k], counts[k], PX_DTYPE_F32, 1, S, &err));
  if (r == 1) {
    g_autoptr(PxBackend) be = NULL;
    PxStream *st[2] = {NULL, NULL};
    OK(world, (be = px_backend_new("cpu", 0, &err)) != NULL && (st[0] = px_stream_new(be, "A", &err)) != NULL &&
                  (st[1] = px_stream_new(be, "B", &err)) != NULL);
    Nap nap = {30000};
    OK(world, px_stream_launch_host(st[0], nap_run, &nap, NULL, &err));
    for (int k = 0; k < 3; k++) OK(world, px_comm_recv(world, buf[k], counts[k], PX_DTYPE_F32, 0, st[k % 2], &err));
    OK(world, px_stream_synchronize(st[0], &err) && px_stream_synchronize(st[1], &err));
    for (int k = 0; k < 3; k++) {
      g_autofree float *want = g_new(float, counts[k]);
      for (gsize i = 0; i < counts[k]; i++) want[i] = 10000.0f * k + (float)i;
      g_autofree char *what = g_strdup_printf("receive %d (made %s)", k, k == 1 ? "on stream B" : "on stream A");
      expect_same(world, what, buf[k], want, counts[k], PX_DTYPE_F32);
    }
    px_stream_free(st[0]);
    px_stream_free(st[1]);
  }
  for (int k = 0; k < 3; k++) g_free(buf[k]);
  OK(world, px_comm_barrier(world, S, &err));
}
static void check_group_fifo(PxComm *world, const Ctx *ctx) { group_exchange(world, ctx->n, 2); }

/* A cpu backend with two queued streams (comm, work) and two events. */
static void two_streams(PxComm *world, PxBackend **be, PxStream **comm, PxStream **work, PxDevEvent **filled,
                        PxDevEvent **done) {
  OK(world, (*be = px_backend_new("cpu", 0, &err)) != NULL);
  OK(world, (*comm = px_stream_new(*be, "comm", &err)) != NULL);
  OK(world, (*work = px_stream_new(*be, "work", &err)) != NULL);
  OK(world, (*filled = px_event_new(*be, &err)) != NULL);
  OK(world, (*done = px_event_new(*be, &err)) != NULL);
}

/* ---- all-to-all ---- */

/* Block j of rank r's send holds mov_val(r, j·count + x): rank r's recv
 * block i must then hold mov_val(i, r·count + x). The v-variant: rank r sends
 * a2a_count(r, j) elements to rank j (zero for some pairs, self included), at
 * packed offsets, the same data rule with j·count + x. */
static gsize a2a_count(int r, int j, gsize count) { return (gsize)((3 * r + 5 * j + 1) % 4) * (count + 1) / 2; }

static void all_to_all_case(PxComm *world, const Ctx *ctx, PxDType dt, gsize count, int variant) {
  int r = px_comm_rank(world), n = ctx->n;
  g_autofree gsize *sc = g_new(gsize, n), *sd = g_new(gsize, n), *rc = g_new(gsize, n), *rd = g_new(gsize, n);
  gsize st = 0, rt = 0;
  for (int j = 0; j < n; j++) {
    sc[j] = variant ? a2a_count(r, j, count) : count, sd[j] = st, st += sc[j];
    rc[j] = variant ? a2a_count(j, r, count) : count, rd[j] = rt, rt += rc[j];
  }
  g_autofree void *send = buf_new(st, dt), *recv = buf_new(rt, dt), *want = buf_new(rt, dt);
  for (int j = 0; j < n; j++)
    for (gsize x = 0; x < sc[j]; x++) put(send, sd[j] + x, dt, mov_val(r, (gsize)j * count + x));
  for (int i = 0; i < n; i++)
    for (gsize x = 0; x < rc[i]; x++) put(want, rd[i] + x, dt, mov_val(i, (gsize)r * count + x));
  if (variant) OK(world, px_comm_all_to_all_v(world, send, sc, sd, recv, rc, rd, dt, S, &err));
  else OK(world, px_comm_all_to_all(world, send, recv, count, dt, S, &err));
  g_autofree char *what = what_of(variant ? "all_to_all_v" : "all_to_all", count, dt);
  expect_same(world, what, recv, want, rt, dt);
}

static void check_all_to_all(PxComm *world, const Ctx *ctx) { each_case(world, ctx, all_to_all_case, 0); }
static void check_all_to_all_v(PxComm *world, const Ctx *ctx) { each_case(world, ctx, all_to_all_case, 1); }

typedef struct {
  double *dst;
  const double *src;
  gsize count;
} CopyArg;

/* A host function that fills late (30 ms): a call queued behind it that did
 * not wait would read the zeros. */
static gboolean copy_late(gpointer data, GError **error) {
  (void)error;
  CopyArg *a = data;
  g_usleep(30000);
  memcpy(a->dst, a->src, a->count * sizeof(double));
  return TRUE;
}

/* Queued on a stream behind a late fill of its send buffer on another
 * stream (ordered by an event): the v-variant's data as above, 1000 f64. */
static void check_all_to_all_queued(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world), n = ctx->n;
  const gsize count = 1000;
  g_autoptr(PxBackend) be = NULL;
  PxStream *comm = NULL, *work = NULL;
  PxDevEvent *filled = NULL, *done = NULL;
  two_streams(world, &be, &comm, &work, &filled, &done);
  g_autofree gsize *sc = g_new(gsize, n), *sd = g_new(gsize, n), *rc = g_new(gsize, n), *rd = g_new(gsize, n);
  gsize st = 0, rt = 0;
  for (int j = 0; j < n; j++) {
    sc[j] = a2a_count(r, j, count), sd[j] = st, st += sc[j];
    rc[j] = a2a_count(j, r, count), rd[j] = rt, rt += rc[j];
  }
  g_autofree double *send = g_new0(double, MAX(st, 1)), *recv = g_new0(double, MAX(rt, 1)), *want = g_new(double, MAX(rt, 1));
  g_autofree double *vals = g_new(double, MAX(st, 1));
  for (int j = 0; j < n; j++)
    for (gsize x = 0; x < sc[j]; x++) vals[sd[j] + x] = mov_val(r, (gsize)j * count + x);
  for (int i = 0; i < n; i++)
    for (gsize x = 0; x < rc[i]; x++) want[rd[i] + x] = mov_val(i, (gsize)r * count + x);
  CopyArg fill = {send, vals, st};
  OK(world, px_stream_launch_host(work, copy_late, &fill, NULL, &err));
  OK(world, px_event_record(filled, work, &err));
  OK(world, px_stream_wait_event(comm, filled, &err));
  OK(world, px_comm_all_to_all_v(world, send, sc, sd, recv, rc, rd, PX_DTYPE_F64, comm, &err));
  OK(world, px_event_record(done, comm, &err));
  OK(world, px_event_synchronize(done, &err));
  expect_same(world, "all_to_all_v queued after a fill on another stream", recv, want, rt, PX_DTYPE_F64);
  px_event_free(filled);
  px_event_free(done);
  px_stream_free(comm);
  px_stream_free(work);
}

/* ---- splits ---- */

static void expect_members(PxComm *c, const char *name, int n, const int *ranks, int pos) {
  g_assert_nonnull(c);
  g_assert_cmpint(px_comm_size(c), ==, n);
  g_assert_cmpint(px_comm_rank(c), ==, pos);
  for (int i = 0; i < n; i++) g_assert_cmpint(px_comm_global_rank(c, i), ==, ranks[i]);
  g_autoptr(GString) label = g_string_new(name);
  for (int i = 0; i < n; i++) g_string_append_printf(label, i ? ",%d" : "[%d", ranks[i]);
  g_string_append_c(label, ']');
  g_assert_cmpstr(px_comm_label(c), ==, label->str);
}

/* DP / TP-like splits: tp = consecutive pairs (color r / 2), dp = ranks of one
 * parity (color r mod 2). With 3 ranks, tp[2] and dp[1] have one member.
 * Members and labels are hand-derived; an all_reduce on each sums the world
 * ranks of its members; both are used in turn, interleaved with the world. */
static void check_split_dp_tp(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world), n = ctx->n;
  g_autoptr(PxComm) tp = NULL, dp = NULL;
  OK(world, (tp = px_comm_split(world, r / 2, r, "tp", &err)) != NULL);
  OK(world, (dp = px_comm_split(world, r % 2, r, "dp", &err)) != NULL);
  int tp_ranks[2] = {0}, tp_n = 0, dp_ranks[2] = {0}, dp_n = 0;
  for (int k = 0; k < n; k++) {
    if (k / 2 == r / 2) tp_ranks[tp_n++] = k;
    if (k % 2 == r % 2) dp_ranks[dp_n++] = k;
  }
  expect_members(tp, "tp", tp_n, tp_ranks, r % 2);
  expect_members(dp, "dp", dp_n, dp_ranks, r / 2);
  g_assert_cmpint(px_comm_world_rank(tp), ==, r);
  g_assert_cmpint(px_comm_world_size(dp), ==, n);
  g_assert_cmpstr(px_comm_backend(dp), ==, px_comm_backend(world));
  for (int round = 0; round < 3; round++) {
    double t = r, d = r, w = r;
    OK(world, px_comm_all_reduce(tp, &t, 1, PX_DTYPE_F64, PX_RED_SUM, S, &err));
    OK(world, px_comm_all_reduce(world, &w, 1, PX_DTYPE_F64, PX_RED_SUM, S, &err));
    OK(world, px_comm_all_reduce(dp, &d, 1, PX_DTYPE_F64, PX_RED_SUM, S, &err));
    double want_t = 0, want_d = 0;
    for (int i = 0; i < tp_n; i++) want_t += tp_ranks[i];
    for (int i = 0; i < dp_n; i++) want_d += dp_ranks[i];
    g_assert_cmpfloat(t, ==, want_t);
    g_assert_cmpfloat(d, ==, want_d);
    g_assert_cmpfloat(w, ==, n * (n - 1) / 2.0);
  }
  /* point-to-point inside dp: position 0 sends its world rank to the others */
  if (dp_n > 1) {
    gint32 x = r;
    if (px_comm_rank(dp) == 0) OK(world, px_comm_send(dp, &x, 1, PX_DTYPE_I32, 1, S, &err));
    else OK(world, px_comm_recv(dp, &x, 1, PX_DTYPE_I32, 0, S, &err));
    g_assert_cmpint(x, ==, dp_ranks[0]);
  }
  /* a split of a split: tp's members again, ordered by descending world rank */
  g_autoptr(PxComm) sub = NULL;
  OK(world, (sub = px_comm_split(tp, 0, -r, "sub", &err)) != NULL);
  int rev[2] = {0, 0};
  for (int i = 0; i < tp_n; i++) rev[i] = tp_ranks[tp_n - 1 - i];
  expect_members(sub, "sub", tp_n, rev, tp_n - 1 - r % 2);
}

/* A 2 x 2 grid (4 ranks): tp = {0,1}, {2,3} (color r / 2), dp = {0,2},
 * {1,3} (color r mod 2), every call on both, interleaved, values
 * hand-computed from rank-dependent fills (t0 = 2 (r/2), d0 = r mod 2: the
 * groups' first world ranks):
 *   all_reduce sum on tp of 10 r + i             -> 10 (2 t0 + 1) + 2 i
 *   reduce_scatter on dp of 100 r + j (2 x 5)    -> block p = r/2: 100 (2 d0 + 2) + 2 (5 p + i)
 *   all_gather on tp of 1000 r + i (3)           -> block k: 1000 (t0 + k) + i
 *   broadcast on dp from position 1 of r + i/2   -> d0 + 2 + i/2
 *   all_reduce max on dp of -r                   -> -d0
 *   tp pair exchange in a group of 7 r + i       -> 7 (r xor 1) + i
 *   all_to_all on dp, block j of 10 r + j        -> block k: 10 (d0 + 2 k) + r/2 */
static void check_split_grid(PxComm *world, const Ctx *ctx) {
  (void)ctx;
  int r = px_comm_rank(world), t0 = 2 * (r / 2), d0 = r % 2, p = r / 2;
  g_autoptr(PxComm) tp = NULL, dp = NULL;
  OK(world, (tp = px_comm_split(world, r / 2, r, "tp", &err)) != NULL);
  OK(world, (dp = px_comm_split(world, r % 2, r, "dp", &err)) != NULL);
  for (int round = 0; round < 2; round++) {
    float ar[7], rs[10], rs_out[5], ag[3], ag_out[6], bc[9], ex_s[7], ex_r[7], a2a[2], a2a_out[2];
    double mx = -r;
    float w_ar[7], w_rs[5], w_ag[6], w_bc[9], w_ex[7], w_a2a[2];
    for (int i = 0; i < 7; i++) ar[i] = 10.0f * r + i, w_ar[i] = 10.0f * (2 * t0 + 1) + 2 * i;
    for (int j = 0; j < 10; j++) rs[j] = 100.0f * r + j;
    for (int i = 0; i < 5; i++) w_rs[i] = 100.0f * (2 * d0 + 2) + 2 * (5 * p + i);
    for (int i = 0; i < 3; i++) ag[i] = 1000.0f * r + i;
    for (int k = 0; k < 2; k++)
      for (int i = 0; i < 3; i++) w_ag[k * 3 + i] = 1000.0f * (t0 + k) + i;
    for (int i = 0; i < 9; i++) bc[i] = r + 0.5f * i, w_bc[i] = d0 + 2 + 0.5f * i;
    for (int i = 0; i < 7; i++) ex_s[i] = 7.0f * r + i, ex_r[i] = 0, w_ex[i] = 7.0f * (r ^ 1) + i;
    for (int j = 0; j < 2; j++) a2a[j] = 10.0f * r + j, w_a2a[j] = 10.0f * (d0 + 2 * j) + p;
    OK(world, px_comm_all_reduce(tp, ar, 7, PX_DTYPE_F32, PX_RED_SUM, S, &err));
    OK(world, px_comm_reduce_scatter(dp, rs, rs_out, 5, PX_DTYPE_F32, S, &err));
    OK(world, px_comm_all_gather(tp, ag, ag_out, 3, PX_DTYPE_F32, S, &err));
    OK(world, px_comm_broadcast(dp, bc, 9, PX_DTYPE_F32, 1, S, &err));
    OK(world, px_comm_all_reduce(dp, &mx, 1, PX_DTYPE_F64, PX_RED_MAX, S, &err));
    px_comm_group_start(tp);
    OK(world, px_comm_send(tp, ex_s, 7, PX_DTYPE_F32, 1 - r % 2, S, &err));
    OK(world, px_comm_recv(tp, ex_r, 7, PX_DTYPE_F32, 1 - r % 2, S, &err));
    OK(world, px_comm_group_end(tp, S, &err));
    OK(world, px_comm_all_to_all(dp, a2a, a2a_out, 1, PX_DTYPE_F32, S, &err));
    expect_same(world, "all_reduce on tp", ar, w_ar, 7, PX_DTYPE_F32);
    expect_same(world, "reduce_scatter on dp", rs_out, w_rs, 5, PX_DTYPE_F32);
    expect_same(world, "all_gather on tp", ag_out, w_ag, 6, PX_DTYPE_F32);
    expect_same(world, "broadcast on dp", bc, w_bc, 9, PX_DTYPE_F32);
    g_assert_cmpfloat(mx, ==, -d0);
    expect_same(world, "tp pair exchange", ex_r, w_ex, 7, PX_DTYPE_F32);
    expect_same(world, "all_to_all on dp", a2a_out, w_a2a, 2, PX_DTYPE_F32);
  }
}

/* Keys n-r reverse the order: position p of the new communicator is world
 * rank n-1-p; a broadcast from its root 0 carries world rank n-1's data and
 * an all_gather lists the world ranks backwards. Equal keys keep the parent
 * order. */
static void check_split_reverse(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world), n = ctx->n;
  g_autoptr(PxComm) rev = NULL, same = NULL;
  OK(world, (rev = px_comm_split(world, 7, n - r, "rev", &err)) != NULL);
  int ranks[8] = {0};
  for (int p = 0; p < n; p++) ranks[p] = n - 1 - p;
  expect_members(rev, "rev", n, ranks, n - 1 - r);
  gint32 x = r, all[8];
  OK(world, px_comm_all_gather(rev, &x, all, 1, PX_DTYPE_I32, S, &err));
  for (int p = 0; p < n; p++) g_assert_cmpint(all[p], ==, n - 1 - p);
  OK(world, px_comm_broadcast(rev, &x, 1, PX_DTYPE_I32, 0, S, &err));
  g_assert_cmpint(x, ==, n - 1);
  OK(world, (same = px_comm_split(world, 0, 5, "same", &err)) != NULL);
  for (int p = 0; p < n; p++) ranks[p] = p;
  expect_members(same, "same", n, ranks, r);
}

/* Odd ranks pass PX_COMM_NO_COLOR: they get NULL and no error, take no part
 * in what the even ranks do on theirs, and all meet again on the world. */
static void check_split_no_color(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world), n = ctx->n;
  GError *err = NULL;
  g_autoptr(PxComm) even = px_comm_split(world, r % 2 ? PX_COMM_NO_COLOR : 0, r, "even", &err);
  g_assert_no_error(err);
  if (r % 2) {
    g_assert_null(even);
  } else {
    int ranks[4] = {0}, m = 0;
    for (int k = 0; k < n; k += 2) ranks[m++] = k;
    expect_members(even, "even", m, ranks, r / 2);
    double x = r;
    OK(world, px_comm_all_reduce(even, &x, 1, PX_DTYPE_F64, PX_RED_SUM, S, &err));
    g_assert_cmpfloat(x, ==, n <= 2 ? 0 : 2); /* 0, or 0 + 2 */
  }
  OK(world, px_comm_barrier(world, S, &err));
  /* a color below NO_COLOR is refused on the rank that passes it, before any
   * communication */
  g_assert_null(px_comm_split(world, -2, 0, "bad", &err));
  g_assert_error(err, PX_COMM_ERROR, PX_COMM_ERROR_INVALID);
  g_clear_error(&err);
}

/* ---- streams ---- */

typedef struct {
  double *buf;
  gsize count;
  int rank;
} FillArg;

/* Queued on a worker stream: wait 30 ms (long enough for an unordered
 * collective to read the zeros), then fill. */
static gboolean fill_late(gpointer data, GError **error) {
  (void)error;
  FillArg *a = data;
  g_usleep(30000);
  for (gsize i = 0; i < a->count; i++) a->buf[i] = red_val(a->rank, i, PX_DTYPE_F64);
  return TRUE;
}

/* Calls queued on worker streams (px_stream_new), ordered by events:
 *  - a host function fills the buffer on stream `work`; `comm` waits for its
 *    event, then all_reduce, broadcast and all_gather are queued in order on
 *    `comm` and return at once; the caller waits for the event recorded
 *    after them;
 *  - a ring with the sends on one stream and the receives on another;
 *  - dp and tp used at once, each on its own stream, the caller ordered after
 *    both by waiting on their events from the (inline) compute stream. */
static void check_streams(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world), n = ctx->n;
  enum { COUNT = 1000 };
  g_autoptr(PxBackend) be = NULL;
  PxStream *comm = NULL, *work = NULL;
  PxDevEvent *filled = NULL, *done = NULL;
  two_streams(world, &be, &comm, &work, &filled, &done);

  g_autofree double *buf = g_new0(double, COUNT), *bc = g_new0(double, COUNT), *all = g_new0(double, (gsize)n * COUNT);
  g_autofree double *want = g_new(double, COUNT);
  FillArg fill = {buf, COUNT, r};
  for (gsize i = 0; i < COUNT; i++) bc[i] = mov_val(r, i);
  OK(world, px_stream_launch_host(work, fill_late, &fill, NULL, &err));
  OK(world, px_event_record(filled, work, &err));
  OK(world, px_stream_wait_event(comm, filled, &err));
  OK(world, px_comm_all_reduce(world, buf, COUNT, PX_DTYPE_F64, PX_RED_SUM, comm, &err));
  OK(world, px_comm_broadcast(world, bc, COUNT, PX_DTYPE_F64, n - 1, comm, &err));
  OK(world, px_comm_all_gather(world, bc, all, COUNT, PX_DTYPE_F64, comm, &err));
  OK(world, px_event_record(done, comm, &err));
  OK(world, px_event_synchronize(done, &err));
  for (gsize i = 0; i < COUNT; i++) want[i] = red_sum(n, i, PX_DTYPE_F64);
  expect_same(world, "all_reduce after a fill on another stream", buf, want, COUNT, PX_DTYPE_F64);
  for (gsize i = 0; i < COUNT; i++) want[i] = mov_val(n - 1, i);
  expect_same(world, "broadcast queued after it", bc, want, COUNT, PX_DTYPE_F64);
  for (int k = 0; k < n; k++) expect_same(world, "all_gather of the broadcast", all + (gsize)k * COUNT, want, COUNT, PX_DTYPE_F64);

  /* a ring with sends on `work` and receives on `comm`, no group */
  int next = (r + 1) % n, prev = (r + n - 1) % n;
  for (gsize i = 0; i < COUNT; i++) bc[i] = mov_val(r, i), buf[i] = 0;
  OK(world, px_comm_recv(world, buf, COUNT, PX_DTYPE_F64, prev, comm, &err));
  OK(world, px_comm_send(world, bc, COUNT, PX_DTYPE_F64, next, work, &err));
  OK(world, px_stream_synchronize(work, &err));
  OK(world, px_stream_synchronize(comm, &err));
  for (gsize i = 0; i < COUNT; i++) want[i] = mov_val(prev, i);
  expect_same(world, "ring recv on its own stream", buf, want, COUNT, PX_DTYPE_F64);

  /* dp on `comm` and tp on `work` at once */
  g_autoptr(PxComm) tp = NULL, dp = NULL;
  OK(world, (tp = px_comm_split(world, r / 2, r, "tp", &err)) != NULL);
  OK(world, (dp = px_comm_split(world, r % 2, r, "dp", &err)) != NULL);
  double t[COUNT], d[COUNT], want_t = 0;
  for (int k = 0; k < n; k++)
    if (k / 2 == r / 2) want_t += k + 1;
  for (int i = 0; i < COUNT; i++) t[i] = d[i] = r + 1;
  for (int rep = 0; rep < 3; rep++) {
    OK(world, px_comm_all_reduce(dp, d, COUNT, PX_DTYPE_F64, PX_RED_MAX, comm, &err));
    OK(world, px_comm_all_reduce(tp, t, COUNT, PX_DTYPE_F64, PX_RED_SUM, work, &err));
    /* the caller (the inline compute stream) waits for both streams' events */
    OK(world, px_event_record(filled, work, &err));
    OK(world, px_event_record(done, comm, &err));
    OK(world, px_stream_wait_event(px_backend_compute_stream(be), filled, &err));
    OK(world, px_stream_wait_event(px_backend_compute_stream(be), done, &err));
    for (int i = 0; i < COUNT; i++) {
      g_assert_cmpfloat(t[i], ==, want_t);
      g_assert_cmpfloat(d[i], ==, (r % 2 == (n - 1) % 2 ? n : n - 1));
      t[i] = r + 1;
    }
  }
  OK(world, px_comm_check_async(world, &err));

  px_event_free(filled);
  px_event_free(done);
  px_stream_free(comm);
  px_stream_free(work);
}

/* ---- argument checks (made before any communication, the same everywhere) ---- */

static void check_invalid(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world), n = ctx->n;
  double x = 1;
  GError *err = NULL;
  g_assert_false(px_comm_broadcast(world, &x, 1, PX_DTYPE_F64, n, NULL, &err));
  g_assert_error(err, PX_COMM_ERROR, PX_COMM_ERROR_INVALID);
  g_clear_error(&err);
  g_assert_false(px_comm_send(world, &x, 1, PX_DTYPE_F64, r, NULL, &err)); /* to itself */
  g_assert_error(err, PX_COMM_ERROR, PX_COMM_ERROR_INVALID);
  g_clear_error(&err);
  g_assert_false(px_comm_recv(world, &x, 1, PX_DTYPE_F64, -1, NULL, &err));
  g_assert_error(err, PX_COMM_ERROR, PX_COMM_ERROR_INVALID);
  g_clear_error(&err);
  g_assert_false(px_comm_all_reduce(world, &x, 1, PX_DTYPE_F64, (PxRedOp)7, NULL, &err));
  g_assert_error(err, PX_COMM_ERROR, PX_COMM_ERROR_INVALID);
  g_clear_error(&err);
  g_assert_false(px_comm_group_end(world, NULL, &err)); /* without a start */
  g_assert_error(err, PX_COMM_ERROR, PX_COMM_ERROR_INVALID);
  g_clear_error(&err);
  px_comm_group_start(world);
  g_assert_false(px_comm_barrier(world, NULL, &err)); /* only send / recv in a group */
  g_assert_error(err, PX_COMM_ERROR, PX_COMM_ERROR_INVALID);
  g_clear_error(&err);
  OK(world, px_comm_group_end(world, S, &err)); /* an empty group */
  /* nothing was sent: the world still works */
  OK(world, px_comm_all_reduce(world, &x, 1, PX_DTYPE_F64, PX_RED_SUM, S, &err));
  g_assert_cmpfloat(x, ==, n);
}

/* ---- mismatched calls ---- */

/* Rank 0 passes another count (then op, root, dtype) than the others: every
 * rank gets MISMATCH naming the op, the communicator and rank 0. */
static void expect_mismatch(GError *err, const char *op, PxComm *world, const char *detail) {
  g_assert_error(err, PX_COMM_ERROR, PX_COMM_ERROR_MISMATCH);
  g_autofree char *desc = g_strdup_printf("%s on %s", op, px_comm_label(world));
  g_assert_nonnull(strstr(err->message, desc));
  g_assert_nonnull(strstr(err->message, detail));
}

static void check_mismatch(PxComm *world, const Ctx *ctx) {
  (void)ctx;
  int r = px_comm_rank(world);
  double x[3] = {1, 2, 3};
  GError *err = NULL;
  g_assert_false(px_comm_all_reduce(world, x, r == 0 ? 2 : 3, PX_DTYPE_F64, PX_RED_SUM, NULL, &err));
  expect_mismatch(err, "all_reduce", world, "rank 0 passed 2 f64 while rank 1 passed 3 f64");
  g_clear_error(&err);
  g_assert_false(r == 0 ? px_comm_all_reduce(world, x, 3, PX_DTYPE_F64, PX_RED_SUM, NULL, &err)
                        : px_comm_broadcast(world, x, 3, PX_DTYPE_F64, 0, NULL, &err));
  g_assert_error(err, PX_COMM_ERROR, PX_COMM_ERROR_MISMATCH);
  g_assert_nonnull(strstr(err->message, "rank 0 called all_reduce while rank 1 called broadcast"));
  g_clear_error(&err);
  g_assert_false(px_comm_broadcast(world, x, 3, PX_DTYPE_F64, r == 0 ? 1 : 0, NULL, &err));
  expect_mismatch(err, "broadcast", world, "rank 0 named root 1 while rank 1 named root 0");
  g_clear_error(&err);
  g_assert_false(px_comm_all_gather(world, x, x, 1, r == 0 ? PX_DTYPE_I32 : PX_DTYPE_F32, NULL, &err));
  expect_mismatch(err, "all_gather", world, "rank 0 passed 1 i32 while rank 1 passed 1 f32");
  g_clear_error(&err);
  g_assert_false(px_comm_all_reduce(world, x, 3, PX_DTYPE_F64, r == 0 ? PX_RED_MAX : PX_RED_SUM, NULL, &err));
  expect_mismatch(err, "all_reduce", world, "rank 0 reduced with max while rank 1 reduced with sum");
  g_clear_error(&err);
}

/* Rank 0 sends `sent` f32 to rank 1, which expects `expects`: the receiver
 * gets MISMATCH naming both counts; the pair then still works. */
static void mismatch_p2p(PxComm *world, gsize sent, gsize expects) {
  int r = px_comm_rank(world);
  float x[3] = {1, 2, 3};
  GError *err = NULL;
  if (r == 0) {
    OK(world, px_comm_send(world, x, sent, PX_DTYPE_F32, 1, S, &err));
    OK(world, px_comm_send(world, x, 3, PX_DTYPE_F32, 1, S, &err));
  }
  if (r == 1) {
    g_assert_false(px_comm_recv(world, x, expects, PX_DTYPE_F32, 0, NULL, &err));
    g_assert_error(err, PX_COMM_ERROR, PX_COMM_ERROR_MISMATCH);
    g_autofree char *detail = g_strdup_printf("rank 0 sent %" G_GSIZE_FORMAT " f32, the receive expects %" G_GSIZE_FORMAT,
                                              sent, expects);
    g_assert_nonnull(strstr(err->message, detail));
    g_clear_error(&err);
    x[0] = x[1] = x[2] = 0;
    OK(world, px_comm_recv(world, x, 3, PX_DTYPE_F32, 0, S, &err));
    g_assert_cmpfloat(x[2], ==, 3);
  }
  OK(world, px_comm_barrier(world, S, &err));
}

static void check_mismatch_longer_recv(PxComm *world, const Ctx *ctx) {
  (void)ctx;
  mismatch_p2p(world, 2, 3);
}

static void check_mismatch_shorter_recv(PxComm *world, const Ctx *ctx) {
  (void)ctx;
  mismatch_p2p(world, 3, 2);
}

/* ---- failures: a missing rank, an abort ---- */

/* The sentence every rank's error carries when rank `missing` never joins an
 * all_reduce on the world. */
static char *never_arrived(PxComm *world, const Ctx *ctx, int missing) {
  if (!(ctx->impl->caps & CAP_NAMES_MISSING)) return g_strdup_printf("all_reduce on %s", px_comm_label(world));
  return g_strdup_printf("all_reduce on %s: rank %d never arrived after %g s", px_comm_label(world), missing,
                         ctx->timeout_s);
}

/* Until the world has failed (polled, so that this rank posts nothing the
 * others could match). */
static void wait_for_failure(PxComm *world) {
  while (px_comm_check_async(world, NULL)) g_usleep(1000);
}

/* What a caller does with a TIMEOUT where the implementation does not abort
 * the world by itself: abort it with the sentence. */
static void abort_after_timeout(PxComm *world, const Ctx *ctx, const GError *err) {
  if (!(ctx->impl->caps & CAP_TIMEOUT_ABORTS) && g_error_matches(err, PX_COMM_ERROR, PX_COMM_ERROR_TIMEOUT))
    px_comm_abort(world, err->message);
}

/* *err is ABORTED and carries `carrying` (NULL: anything); cleared after. */
static void expect_aborted(GError **err, const char *carrying) {
  g_assert_error(*err, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED);
  if (carrying) g_assert_nonnull(strstr((*err)->message, carrying));
  g_clear_error(err);
}

/* The last rank never calls the all_reduce: the others fail within the
 * deadline — the first with TIMEOUT, the rest with TIMEOUT or with ABORTED
 * carrying its sentence — instead of hanging; any later call on any rank
 * (the missing one too, once the others have failed) fails with ABORTED, and
 * so does the async query. */
static void missing_rank(PxComm *world, const Ctx *ctx, gboolean queued) {
  int r = px_comm_rank(world), n = ctx->n;
  g_autofree char *sentence = never_arrived(world, ctx, n - 1);
  g_autoptr(PxBackend) be = NULL;
  PxStream *s = NULL;
  if (queued) OK(world, (be = px_backend_new("cpu", 0, &err)) != NULL && (s = px_stream_new(be, "comm", &err)) != NULL);
  GError *err = NULL;
  double x = 1;
  if (r != n - 1) {
    gboolean ok = px_comm_all_reduce(world, &x, 1, PX_DTYPE_F64, PX_RED_SUM, s, &err);
    if (queued) {
      g_assert_true(ok); /* queued: returns at once */
      ok = px_stream_synchronize(s, &err);
    }
    g_assert_false(ok);
    g_assert_true(g_error_matches(err, PX_COMM_ERROR, PX_COMM_ERROR_TIMEOUT) ||
                  g_error_matches(err, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED));
    g_assert_nonnull(strstr(err->message, sentence));
    abort_after_timeout(world, ctx, err);
    g_clear_error(&err);
  } else {
    wait_for_failure(world);
  }
  g_assert_false(px_comm_barrier(world, NULL, &err));
  expect_aborted(&err, sentence);
  g_assert_false(px_comm_check_async(world, &err));
  expect_aborted(&err, sentence);
  if (s) px_stream_free(s);
}

static void check_missing_rank(PxComm *world, const Ctx *ctx) { missing_rank(world, ctx, FALSE); }

/* Rank 0 waits for a message rank 1 never sends: rank 0 fails with TIMEOUT
 * naming rank 1; every other rank then fails with ABORTED carrying that
 * sentence (they wait without a call of their own, whose deadline would
 * compete with rank 0's). */
static void check_missing_sender(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world);
  g_autofree char *sentence = g_strdup_printf("recv on rank 0 from rank 1 on %s: rank 1 never sent after %g s",
                                              px_comm_label(world), ctx->timeout_s);
  GError *err = NULL;
  if (r == 0) {
    double x;
    g_assert_false(px_comm_recv(world, &x, 1, PX_DTYPE_F64, 1, NULL, &err));
    g_assert_error(err, PX_COMM_ERROR, PX_COMM_ERROR_TIMEOUT);
    g_assert_cmpstr(err->message, ==, sentence);
    abort_after_timeout(world, ctx, err);
  } else {
    wait_for_failure(world);
    g_assert_false(px_comm_barrier(world, NULL, &err));
    g_assert_error(err, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED);
    g_assert_nonnull(strstr(err->message, sentence));
  }
  g_clear_error(&err);
}

/* Rank 0 sends on its stream to rank 1, which never receives: on the device
 * path a send completes only once its receive is posted, so rank 0 fails at
 * the deadline naming rank 1 (its message withdrawn, nothing left behind);
 * every other rank then fails with ABORTED carrying that sentence. */
static void check_missing_receiver(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world);
  g_autofree char *sentence = g_strdup_printf("send from rank 0 to rank 1 on %s: rank 1 never posted the matching "
                                              "receive after %g s", px_comm_label(world), ctx->timeout_s);
  GError *err = NULL;
  if (r == 0) {
    double x = 1;
    gboolean ok = px_comm_send(world, &x, 1, PX_DTYPE_F64, 1, S, &err) && sync_rank_stream(&err);
    g_assert_false(ok);
    g_assert_error(err, PX_COMM_ERROR, PX_COMM_ERROR_TIMEOUT);
    g_assert_nonnull(strstr(err->message, sentence));
    g_clear_error(&err);
  } else {
    wait_for_failure(world);
  }
  g_assert_false(px_comm_barrier(world, NULL, &err));
  expect_aborted(&err, sentence);
}

/* Rank 0 sends to rank 1 and receives from it in one group; rank 1 never
 * calls: rank 0 fails at the deadline naming rank 1 — its receive ("rank 1
 * never sent"), or, where a send completes only once its receive is posted
 * (the device path, whose queued receive waits on the stream meanwhile), its
 * send ("rank 1 never posted the matching receive"); a message posted and
 * never taken is withdrawn. The others fail with ABORTED carrying it. */
static void check_missing_sender_grouped(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world);
  g_autofree char *sentence = g_strdup_printf("rank 1 never sent after %g s", ctx->timeout_s);
  g_autofree char *sentence_send = g_strdup_printf("rank 1 never posted the matching receive after %g s", ctx->timeout_s);
  GError *err = NULL;
  if (r == 0) {
    double x = 1, y = 0;
    px_comm_group_start(world);
    g_assert_true(px_comm_send(world, &x, 1, PX_DTYPE_F64, 1, S, &err));
    g_assert_true(px_comm_recv(world, &y, 1, PX_DTYPE_F64, 1, S, &err));
    gboolean ok = px_comm_group_end(world, S, &err) && sync_rank_stream(&err);
    g_assert_false(ok);
    g_assert_true(g_error_matches(err, PX_COMM_ERROR, PX_COMM_ERROR_TIMEOUT) ||
                  g_error_matches(err, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED));
    g_autofree char *as_recv = g_strdup_printf("recv on rank 0 from rank 1 on %s: %s", px_comm_label(world), sentence);
    g_autofree char *as_send = g_strdup_printf("send from rank 0 to rank 1 on %s: %s", px_comm_label(world), sentence_send);
    if (!strstr(err->message, as_recv) && !strstr(err->message, as_send)) g_error("unexpected failure: %s", err->message);
    g_clear_error(&err);
  } else {
    wait_for_failure(world);
  }
  g_assert_false(px_comm_barrier(world, NULL, &err));
  g_assert_error(err, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED);
  g_assert_true(strstr(err->message, sentence) || strstr(err->message, sentence_send));
  g_clear_error(&err);
}

/* Ranks 0 and 1 each queue, on their one stream and without a group, a
 * receive from the other and then the send to it: a cycle where a send
 * completes only once its receive has run (NCCL; the device path on a
 * stream whose receive waits for its message there). Both fail at the
 * deadline with one line naming the peer and the deadline — whichever wait
 * expires first — instead of hanging; the others fail with ABORTED. */
static void check_p2p_cycle(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world);
  g_autofree char *after = g_strdup_printf(" after %g s", ctx->timeout_s);
  GError *err = NULL;
  if (r < 2) {
    double x = r, y = -1;
    gboolean ok = px_comm_recv(world, &y, 1, PX_DTYPE_F64, 1 - r, S, &err) &&
                  px_comm_send(world, &x, 1, PX_DTYPE_F64, 1 - r, S, &err) && sync_rank_stream(&err);
    g_assert_false(ok);
    g_assert_true(g_error_matches(err, PX_COMM_ERROR, PX_COMM_ERROR_TIMEOUT) ||
                  g_error_matches(err, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED));
    g_autofree char *peer = g_strdup_printf("on %s: rank %d", px_comm_label(world), 1 - r);
    g_autofree char *self = g_strdup_printf("on %s: rank %d", px_comm_label(world), r);
    if (!strstr(err->message, after) || (!strstr(err->message, peer) && !strstr(err->message, self)))
      g_error("unexpected failure: %s", err->message);
    g_clear_error(&err);
  } else {
    wait_for_failure(world);
  }
  g_assert_false(px_comm_barrier(world, NULL, &err));
  g_assert_error(err, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED);
  g_clear_error(&err);
}

/* The same missing rank with the all_reduce queued on a worker stream: the
 * call returns at once; the failure surfaces through px_stream_synchronize and
 * px_comm_check_async. */
static void check_missing_rank_queued(PxComm *world, const Ctx *ctx) { missing_rank(world, ctx, TRUE); }

/* The last rank fails outside the communicator and aborts the world; the
 * others, in an all_reduce whose deadline is 60 s, fail with ABORTED carrying
 * its reason (a TIMEOUT would mean they waited for the deadline). */
static void check_abort(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world), n = ctx->n;
  g_autofree char *reason = g_strdup_printf("rank %d: out of memory", n - 1);
  GError *err = NULL;
  if (r == n - 1) {
    px_comm_abort(world, reason);
    px_comm_abort(world, "a second reason is not kept");
  } else {
    double x = 1;
    g_assert_false(px_comm_all_reduce(world, &x, 1, PX_DTYPE_F64, PX_RED_SUM, NULL, &err));
    expect_aborted(&err, reason);
  }
  g_assert_false(px_comm_check_async(world, &err));
  g_assert_error(err, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED);
  g_assert_nonnull(strstr(err->message, reason));
  g_assert_null(strstr(err->message, "second"));
  g_clear_error(&err);
}

/* An abort through a split communicator ends the world: rank 0 aborts its tp
 * communicator while the others wait on dp, in a recv on the world, or are
 * still in the splits (an implementation may deliver the abort before a
 * split's result: the split then fails with ABORTED too). */
static void check_abort_split(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world), n = ctx->n;
  GError *err = NULL;
  g_autoptr(PxComm) tp = px_comm_split(world, r / 2, r, "tp", &err);
  g_autoptr(PxComm) dp = tp ? px_comm_split(world, r % 2, r, "dp", &err) : NULL;
  double x = 1;
  if (r == 0) {
    g_assert_no_error(err);
    px_comm_abort(tp, "rank 0: kernel failed");
  } else if (dp && r == 1) {
    g_assert_false(px_comm_recv(world, &x, 1, PX_DTYPE_F64, n - 1 == 1 ? 0 : n - 1, NULL, &err));
  } else if (dp) {
    g_assert_false(px_comm_all_reduce(dp, &x, 1, PX_DTYPE_F64, PX_RED_SUM, NULL, &err));
  }
  if (r != 0) {
    expect_aborted(&err, "rank 0: kernel failed");
  }
  g_assert_false(px_comm_check_async(world, &err));
  expect_aborted(&err, NULL);
}

/* ---- device buffers (nccl on the cuda backend) ---- */

/* all_reduce (sum, max; and of halves: a bf16 sum, an fp16 max), broadcast
 * from the last rank and all_gather of GPU tensors, queued on a stream of the
 * cuda backend (NCCL on its cudaStream_t) and ordered by an event; results
 * downloaded and compared with the closed forms above (the half data's sums
 * are exact however NCCL rounds its steps). Skipped, saying so, where the
 * cuda backend is not built. */
static void check_device_buffers(PxComm *world, const Ctx *ctx) {
  int r = px_comm_rank(world), n = ctx->n;
  enum { COUNT = 4099 };
  GError *e = NULL;
  g_autoptr(PxBackend) be = px_backend_new("cuda", r, &e);
  if (!be) {
    g_test_skip(e->message);
    g_clear_error(&e);
    return;
  }
  PxStream *s = NULL;
  PxDevEvent *done = NULL;
  g_autoptr(PxTensor) sum = NULL, max = NULL, bc = NULL, all = NULL, hsum = NULL, hmax = NULL;
  gint64 one[1] = {COUNT}, many[1] = {(gint64)n * COUNT};
  OK(world, (s = px_stream_new(be, "nccl", &err)) != NULL && (done = px_event_new(be, &err)) != NULL);
  OK(world, (sum = px_tensor_new(be, "sum", PX_DTYPE_F32, PX_MEM_BUFFERS, 1, one, &err)) != NULL);
  OK(world, (max = px_tensor_new(be, "max", PX_DTYPE_F64, PX_MEM_BUFFERS, 1, one, &err)) != NULL);
  OK(world, (bc = px_tensor_new(be, "bc", PX_DTYPE_I32, PX_MEM_BUFFERS, 1, one, &err)) != NULL);
  OK(world, (all = px_tensor_new(be, "all", PX_DTYPE_I32, PX_MEM_BUFFERS, 1, many, &err)) != NULL);
  OK(world, (hsum = px_tensor_new(be, "hsum", PX_DTYPE_BF16, PX_MEM_BUFFERS, 1, one, &err)) != NULL);
  OK(world, (hmax = px_tensor_new(be, "hmax", PX_DTYPE_F16, PX_MEM_BUFFERS, 1, one, &err)) != NULL);
  g_autofree guint16 *hs = g_new(guint16, COUNT), *hm = g_new(guint16, COUNT);
  g_autofree guint16 *whs = g_new(guint16, COUNT), *whm = g_new(guint16, COUNT);
  for (gsize i = 0; i < COUNT; i++) {
    put(hs, i, PX_DTYPE_BF16, red_val(r, i, PX_DTYPE_BF16)), put(whs, i, PX_DTYPE_BF16, red_sum(n, i, PX_DTYPE_BF16));
    put(hm, i, PX_DTYPE_F16, max_val(r, i, n)), put(whm, i, PX_DTYPE_F16, max_max(n, i));
  }
  OK(world, px_tensor_upload(hsum, hs, &err) && px_tensor_upload(hmax, hm, &err));
  g_autofree float *fs = g_new(float, COUNT);
  g_autofree double *fm = g_new(double, COUNT);
  g_autofree gint32 *fb = g_new(gint32, COUNT), *fa = g_new(gint32, (gsize)n * COUNT);
  for (gsize i = 0; i < COUNT; i++)
    fs[i] = (float)red_val(r, i, PX_DTYPE_F32), fm[i] = max_val(r, i, n), fb[i] = (gint32)mov_val(r, i);
  OK(world, px_tensor_upload(sum, fs, &err) && px_tensor_upload(max, fm, &err) && px_tensor_upload(bc, fb, &err));
  OK(world, px_comm_all_reduce(world, sum->data, COUNT, PX_DTYPE_F32, PX_RED_SUM, s, &err));
  OK(world, px_comm_all_reduce(world, max->data, COUNT, PX_DTYPE_F64, PX_RED_MAX, s, &err));
  OK(world, px_comm_broadcast(world, bc->data, COUNT, PX_DTYPE_I32, n - 1, s, &err));
  OK(world, px_comm_all_gather(world, bc->data, all->data, COUNT, PX_DTYPE_I32, s, &err));
  OK(world, px_comm_all_reduce(world, hsum->data, COUNT, PX_DTYPE_BF16, PX_RED_SUM, s, &err));
  OK(world, px_comm_all_reduce(world, hmax->data, COUNT, PX_DTYPE_F16, PX_RED_MAX, s, &err));
  OK(world, px_event_record(done, s, &err));
  OK(world, px_event_synchronize(done, &err));
  OK(world, px_comm_check_async(world, &err));
  OK(world, px_tensor_download(sum, fs, &err) && px_tensor_download(max, fm, &err) && px_tensor_download(all, fa, &err));
  g_autofree float *ws = g_new(float, COUNT);
  g_autofree double *wm = g_new(double, COUNT);
  g_autofree gint32 *wa = g_new(gint32, (gsize)n * COUNT);
  for (gsize i = 0; i < COUNT; i++) ws[i] = (float)red_sum(n, i, PX_DTYPE_F32), wm[i] = max_max(n, i);
  for (gsize i = 0; i < (gsize)n * COUNT; i++) wa[i] = (gint32)mov_val(n - 1, i % COUNT);
  expect_same(world, "device all_reduce sum", fs, ws, COUNT, PX_DTYPE_F32);
  expect_same(world, "device all_reduce max", fm, wm, COUNT, PX_DTYPE_F64);
  expect_same(world, "device all_gather of a broadcast", fa, wa, (gsize)n * COUNT, PX_DTYPE_I32);
  OK(world, px_tensor_download(hsum, hs, &err) && px_tensor_download(hmax, hm, &err));
  expect_same(world, "device all_reduce sum", hs, whs, COUNT, PX_DTYPE_BF16);
  expect_same(world, "device all_reduce max", hm, whm, COUNT, PX_DTYPE_F16);
  px_event_free(done);
  px_stream_free(s);
}

/* ---- the table ---- */

typedef struct {
  const char *path;
  CheckFn fn;
  guint needs;      /* capabilities (CAP_*) the check needs */
  double timeout_s; /* the world's deadline for the check (local); 0: 60 s */
  /* A known bug outside the suite that makes the check fail on these
   * implementations (comma-separated): skipped there, saying so, until fixed. */
  const char *bug_impls, *bug;
  int min_ranks;    /* the fewest ranks it makes sense on (0: 1); nccl runs from 1 rank */
  /* Only where the calls take the local communicator's device path (local
   * with --queue and PX_COMM_LOCAL_DEVICE=1): NCCL's point-to-point semantics
   * there (a send completes once its receive is posted; receives matched in
   * the order they were made, whatever streams run them). */
  gboolean device_path;
} Check;

static const Check checks[] = {
  {.path = "all-reduce/sum", .fn = check_all_reduce_sum},
  {.path = "all-reduce/max", .fn = check_all_reduce_max},
  {.path = "all-reduce/identical-on-every-rank", .fn = check_all_reduce_identical},
  {.path = "reduce-scatter", .fn = check_reduce_scatter},
  {.path = "halves/rounding", .fn = check_halves_rounding},
  {.path = "halves/fp16-overflow", .fn = check_halves_fp16_overflow},
  {.path = "halves/identical-on-every-rank", .fn = check_halves_identical},
  {.path = "all-gather", .fn = check_all_gather},
  {.path = "broadcast/every-root", .fn = check_broadcast},
  {.path = "barrier", .fn = check_barrier},
  {.path = "send-recv/pipeline", .fn = check_pipeline},
  {.path = "send-recv/ring", .fn = check_ring_ordered, .min_ranks = 2},
  {.path = "send-recv/ring-grouped", .fn = check_ring_grouped, .min_ranks = 2},
  {.path = "send-recv/fifo", .fn = check_fifo},
  {.path = "send-recv/group-exchange", .fn = check_group_exchange},
  {.path = "send-recv/group-fifo", .fn = check_group_fifo},
  {.path = "send-recv/group-two-comms", .fn = check_group_two_comms, .min_ranks = 2},
  {.path = "send-recv/pp2-exchange", .fn = check_pp2_exchange, .min_ranks = 2},
  {.path = "send-recv/issue-order", .fn = check_issue_order, .min_ranks = 2, .device_path = TRUE},
  {.path = "all-to-all", .fn = check_all_to_all},
  {.path = "all-to-all-v", .fn = check_all_to_all_v},
  {.path = "all-to-all-queued", .fn = check_all_to_all_queued},
  {.path = "split/dp-tp", .fn = check_split_dp_tp},
  {.path = "split/reverse-keys", .fn = check_split_reverse},
  {.path = "split/no-color", .fn = check_split_no_color},
  {.path = "split/grid-2x2-every-call", .fn = check_split_grid, .min_ranks = 4},
  {.path = "streams", .fn = check_streams, .min_ranks = 2},
  {.path = "invalid-arguments", .fn = check_invalid},
  {.path = "mismatch/collective", .fn = check_mismatch, .needs = CAP_MISMATCH},
  {.path = "mismatch/longer-receive", .fn = check_mismatch_longer_recv, .needs = CAP_P2P_MISMATCH},
  {.path = "mismatch/shorter-receive", .fn = check_mismatch_shorter_recv, .needs = CAP_P2P_TRUNCATE},
  {.path = "failure/missing-rank", .fn = check_missing_rank, .min_ranks = 2, .needs = CAP_SURVIVES_FAILURE, .timeout_s = 2},
  {.path = "failure/missing-sender", .fn = check_missing_sender, .min_ranks = 2, .needs = CAP_SURVIVES_FAILURE, .timeout_s = 0.5},
  {.path = "failure/missing-rank-queued", .fn = check_missing_rank_queued, .min_ranks = 2, .needs = CAP_SURVIVES_FAILURE, .timeout_s = 2},
  {.path = "failure/missing-receiver", .fn = check_missing_receiver, .min_ranks = 2, .needs = CAP_SURVIVES_FAILURE,
   .timeout_s = 0.5, .device_path = TRUE},
  {.path = "failure/missing-sender-grouped", .fn = check_missing_sender_grouped, .min_ranks = 2,
   .needs = CAP_SURVIVES_FAILURE, .timeout_s = 0.5},
  {.path = "failure/p2p-cycle", .fn = check_p2p_cycle, .min_ranks = 2, .needs = CAP_SURVIVES_FAILURE, .timeout_s = 0.5,
   .device_path = TRUE},
  {.path = "device-buffers", .fn = check_device_buffers, .needs = CAP_DEVICE_BUFFERS},
  {.path = "failure/abort", .fn = check_abort, .needs = CAP_SURVIVES_FAILURE, .timeout_s = 60},
  {.path = "failure/abort-split", .fn = check_abort_split, .needs = CAP_SURVIVES_FAILURE, .timeout_s = 60},
};

/* ---- harnesses ---- */

static gboolean opt_failures = FALSE; /* run the failure checks even where they end the job */

/* Why the check cannot run on impl, or NULL. one_world: this process holds one
 * rank of one world for the whole run (under a launcher), which a failure
 * check leaves aborted: those run only with --failures, one per launch. */
static const char *skip_reason(const Impl *impl, const Check *check, gboolean one_world, int n) {
  if (n < check->min_ranks)
    return check->min_ranks > 2 ? "needs 4 ranks (a 2 x 2 grid)" : "needs a peer other than the rank itself (2 ranks or more)";
  if (check->device_path && (strcmp(impl->name, "local") || !opt_queue || g_strcmp0(g_getenv("PX_COMM_LOCAL_DEVICE"), "1")))
    return "needs the local communicator's device path (test_comm --comm local --queue Q with PX_COMM_LOCAL_DEVICE=1)";
  if (check->bug_impls) {
    g_auto(GStrv) names = g_strsplit(check->bug_impls, ",", -1);
    if (g_strv_contains((const char *const *)names, impl->name)) return check->bug;
  }
  if ((check->needs & CAP_SURVIVES_FAILURE) && !opt_failures && one_world)
    return impl->why ? impl->why
                     : "a failure check leaves the process's one world aborted: run it alone with --failures, "
                       "or as thread-ranks (test_comm --comm NAME)";
  guint lacks = check->needs & ~impl->caps;
  if (!lacks) return NULL;
  if (lacks == CAP_SURVIVES_FAILURE && opt_failures) return NULL;
  if (lacks & CAP_SURVIVES_FAILURE) return impl->why;
  if (lacks & CAP_MISMATCH) return "the implementation cannot tell mismatched collectives";
  if (lacks & CAP_P2P_MISMATCH) return "the implementation cannot tell a receive longer than its send";
  if (lacks & CAP_P2P_TRUNCATE) return "the implementation cannot tell a receive shorter than its send";
  if (lacks & CAP_DEVICE_BUFFERS) return "the implementation moves host memory only";
  return "the implementation lacks a capability the check needs";
}

/* Thread-ranks (local; tcp over loopback, each rank with sockets of its
 * own): n threads of this process, a fresh world per check (a failure check
 * leaves it aborted). */
typedef struct {
  const Impl *impl;
  const Check *check;
  int n;
} ThreadCase;

typedef struct {
  const ThreadCase *tc;
  PxLocalWorld *lw; /* local */
  int port;         /* tcp */
  int rank;
} ThreadRank;

static double check_timeout(const Impl *impl, const Check *check) {
  return MAX(check->timeout_s > 0 ? check->timeout_s : 60, impl->min_timeout_s);
}

static gpointer thread_rank_main(gpointer data) {
  ThreadRank *a = data;
  const ThreadCase *tc = a->tc;
  Ctx ctx = {tc->impl, tc->n, check_timeout(tc->impl, tc->check)};
  PxComm *c = NULL;
  if (!strcmp(tc->impl->name, "local")) c = px_comm_local_new(a->lw, a->rank);
  if (!strcmp(tc->impl->name, "tcp")) {
    GError *err = NULL;
    c = px_comm_tcp_new("127.0.0.1", a->port, a->rank, tc->n, ctx.timeout_s, &err);
    g_assert_no_error(err);
  }
  if (!strcmp(tc->impl->name, "nccl")) { /* thread-rank r on GPU r */
    GError *err = NULL;
    c = px_comm_nccl_new_store("127.0.0.1", a->port, a->rank, tc->n, a->rank, ctx.timeout_s, &err);
    g_assert_no_error(err);
  }
  g_assert_nonnull(c);
  PxBackend *be = NULL;
  PxStream *worker = NULL;
  if (opt_queue) {
    GError *err = NULL;
    g_assert_nonnull(be = px_backend_new("cpu", 0, &err));
    if (!strcmp(opt_queue, "worker")) g_assert_nonnull(worker = px_stream_new(be, "rank", &err));
    g_assert_no_error(err);
    g_private_set(&rank_stream, worker ? worker : px_backend_compute_stream(be));
  }
  tc->check->fn(c, &ctx);
  g_private_set(&rank_stream, NULL);
  px_stream_free(worker);
  if (be) px_backend_free(be);
  px_comm_free(c);
  return NULL;
}

static void run_threads(gconstpointer data) {
  const ThreadCase *tc = data;
  const char *why = skip_reason(tc->impl, tc->check, FALSE, tc->n);
  if (why) {
    g_test_skip(why);
    return;
  }
  PxLocalWorld *lw = NULL;
  int port = 0;
  if (!strcmp(tc->impl->name, "local")) lw = px_local_world_new(tc->n, check_timeout(tc->impl, tc->check));
  if (!strcmp(tc->impl->name, "tcp") || !strcmp(tc->impl->name, "nccl")) g_assert_cmpint(port = px_tcp_free_port(), >, 0);
  GThread *th[8];
  ThreadRank args[8];
  for (int r = 0; r < tc->n; r++) {
    args[r] = (ThreadRank){tc, lw, port, r};
    th[r] = g_thread_new("rank", thread_rank_main, &args[r]);
  }
  for (int r = 0; r < tc->n; r++) g_thread_join(th[r]);
  if (lw) px_local_world_free(lw);
}

/* Ranks as processes (mpi under mpirun; tcp under a launcher): this
 * process's world, every check in table order on every rank. */
typedef struct {
  const Impl *impl;
  PxComm *world;
  double timeout_s;
} ProcessHarness;

static ProcessHarness process;

static void run_process(gconstpointer data) {
  const Check *check = data;
  const char *why = skip_reason(process.impl, check, TRUE, px_comm_size(process.world));
  if (why) {
    g_test_skip(why);
    return;
  }
  Ctx ctx = {process.impl, px_comm_size(process.world), process.timeout_s};
  check->fn(process.world, &ctx);
  /* no rank starts the next check before every rank has finished this one */
  if (!(check->needs & CAP_SURVIVES_FAILURE)) OK(process.world, px_comm_barrier(process.world, NULL, &err));
}

/* The implementations whose ranks can be threads of this process. */
static const char *const thread_impls[] = {
  "local",
  "tcp",
};

static int run_processes(const Impl *impl, double timeout_s);

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_autofree char *comm = NULL, *available = NULL;
  double timeout_s = 60;
  GOptionEntry entries[] = {
    {"comm", 0, 0, G_OPTION_ARG_STRING, &comm,
     "local or tcp (2, 3, 4 thread-ranks; tcp under a launcher: one rank per process), threads (local and tcp; "
     "the default), mpi (one rank per process, under mpirun), nccl (a thread-rank per GPU, up to 4; one rank per "
     "process under a launcher)", "NAME"},
    {"timeout", 0, 0, G_OPTION_ARG_DOUBLE, &timeout_s, "deadline of every wait, s (ranks as processes; default 60)", "S"},
    {"failures", 0, 0, G_OPTION_ARG_NONE, &opt_failures,
     "ranks as processes: also run the failure checks (they end the job under mpi, the world under tcp)", NULL},
    {"queue", 0, 0, G_OPTION_ARG_STRING, &opt_queue,
     "thread-ranks: the checks' calls without a stream on a stream of the rank's cpu backend, inline (its compute "
     "stream) or worker (synchronised after each call)", "inline|worker"},
    {"available", 0, 0, G_OPTION_ARG_STRING, &available, "exit 0 if the implementation is built in, 1 if not", "NAME"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
  };
  g_autoptr(GOptionContext) oc = g_option_context_new("- communicator conformance suite");
  g_option_context_add_main_entries(oc, entries, NULL);
  g_autoptr(GError) error = NULL;
  if (!g_option_context_parse(oc, &argc, &argv, &error)) {
    fprintf(stderr, "test_comm: %s\n", error->message);
    return 2;
  }
  if (available) return px_comm_available(available) ? 0 : 1;
  if (opt_queue && strcmp(opt_queue, "inline") && strcmp(opt_queue, "worker")) {
    fprintf(stderr, "test_comm: --queue %s (inline or worker)\n", opt_queue);
    return 2;
  }
  if (!comm) comm = g_strdup("threads");
  const Impl *impl = impl_find(comm);
  if (!impl && strcmp(comm, "threads")) {
    fprintf(stderr, "test_comm: unknown communicator '%s' (local, tcp, mpi, nccl; threads: local and tcp)\n", comm);
    return 2;
  }

  if (!strcmp(comm, "nccl") && !px_comm_available("nccl")) {
    printf("communicator 'nccl' is not built in: skipped\n");
    return 77;
  }
  if (!strcmp(comm, "nccl") && px_nccl_device_count() == 0) {
    printf("no CUDA device: skipped\n");
    return 77;
  }
  if (!strcmp(comm, "nccl") && (g_getenv("OMPI_COMM_WORLD_SIZE") || g_getenv("RANK") || g_getenv("WORLD_SIZE")))
    return run_processes(impl, timeout_s);
  if (!strcmp(comm, "nccl")) { /* thread-ranks, one GPU each: 1 .. min(GPUs, 4) (one GPU: NCCL at world size 1) */
    int most = MIN(px_nccl_device_count(), 4);
    for (int n = 1; n <= most; n++)
      for (gsize i = 0; i < G_N_ELEMENTS(checks); i++) {
        ThreadCase *tc = g_new(ThreadCase, 1);
        *tc = (ThreadCase){impl, &checks[i], n};
        g_autofree char *path = g_strdup_printf("/comm/nccl/n%d/%s", n, checks[i].path);
        g_test_add_data_func_full(path, tc, run_threads, g_free);
      }
    return g_test_run();
  }
  if (!strcmp(comm, "mpi")) return run_processes(impl, timeout_s);
  if (!strcmp(comm, "tcp") && (g_getenv("RANK") || g_getenv("WORLD_SIZE"))) return run_processes(impl, timeout_s);
  gboolean ran = FALSE;
  for (gsize k = 0; k < G_N_ELEMENTS(thread_impls); k++) {
    if (strcmp(comm, "threads") && strcmp(comm, thread_impls[k])) continue;
    ran = TRUE;
    for (int n = 2; n <= 4; n++)
      for (gsize i = 0; i < G_N_ELEMENTS(checks); i++) {
        ThreadCase *tc = g_new(ThreadCase, 1); /* lives as long as the test run */
        *tc = (ThreadCase){impl_find(thread_impls[k]), &checks[i], n};
        g_autofree char *path = g_strdup_printf("/comm/%s/n%d/%s", thread_impls[k], n, checks[i].path);
        g_test_add_data_func_full(path, tc, run_threads, g_free);
      }
  }
  if (!ran) {
    fprintf(stderr, "test_comm: communicator '%s' is not built in\n", comm);
    return 1;
  }
  return g_test_run();
}

/* mpi (under mpirun) or tcp (under a launcher: RANK, WORLD_SIZE,
 * MASTER_ADDR, MASTER_PORT): this process is one rank; every check in table
 * order. */
static int run_processes(const Impl *impl, double timeout_s) {
  g_autoptr(GError) error = NULL;
  process.impl = impl;
  process.timeout_s = timeout_s;
  if (!strcmp(impl->name, "mpi")) {
    process.world = px_comm_mpi_new(timeout_s, &error);
  } else if (!strcmp(impl->name, "nccl")) {
    PxLaunchEnv env;
    px_launch_env_init(&env);
    if (px_launch_env(&env, &error)) process.world = px_comm_nccl_new(&env, timeout_s, &error);
    px_launch_env_clear(&env);
  } else {
    PxLaunchEnv env;
    px_launch_env_init(&env);
    if (px_launch_env(&env, &error)) process.world = px_comm_tcp_new_from_env(&env, timeout_s, &error);
    px_launch_env_clear(&env);
  }
  if (!process.world) {
    fprintf(stderr, "test_comm: %s\n", error->message);
    return 1;
  }
  /* one rank reports; the others' assertion messages still reach stderr */
  if (px_comm_rank(process.world) != 0 && !freopen("/dev/null", "w", stdout)) return 1;
  for (gsize i = 0; i < G_N_ELEMENTS(checks); i++) {
    g_autofree char *path = g_strdup_printf("/comm/%s/%s", impl->name, checks[i].path);
    g_test_add_data_func(path, &checks[i], run_process);
  }
  int rc = g_test_run();
  px_comm_free(process.world);
  if (!strcmp(impl->name, "mpi") || !strcmp(impl->name, "nccl")) px_comm_mpi_finalize();
  return rc;
}
