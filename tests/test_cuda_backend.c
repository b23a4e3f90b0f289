/* test_cuda_backend.c — the cuda backend against the cpu backend (the
 * reference, backend_cpu_kernels.inc), op by op, on the same random inputs.
 *
 * With no CUDA device (or a build without the CUDA backend) it prints one
 * line, "no CUDA device: skipped", and returns 77, which ctest shows as a
 * skipped test (SKIP_RETURN_CODE in tests/CMakeLists.txt).
 *
 * With a device, every op runs on both backends through the ops table: f32
 * on the cuda side against f32 on the cpu side, and bf16 / f16 on the cuda
 * side (half activations and parameters natively, the backend's half_acts)
 * against f32 on the cpu side fed the same values (the inputs are rounded to
 * the half type first, so only the cuda side's rounding of its outputs
 * differs). Statistics are f32 on both sides and held to the f32 tolerance
 * (STAT_TOL below). Gradient outputs start from random
 * values on both sides, so that "backward adds" is checked too. The error of
 * a tensor is max |cuda - cpu| / max |cpu| (normalised max error); the
 * tolerances: f32 1e-5 (the two sides differ by summation order and
 * exp/tanh implementations only), f16 1e-2 and bf16 5e-2 (8 and 11 bits
 * of mantissa: an output rounding alone is 2^-9 = 2e-3 and 2^-12 = 2.4e-4 of
 * the value, and chained ops — P and dS in attention, a forward's rounded
 * output fed to its backward — add a few of those). These bounds catch wrong
 * formulas and layouts, not one extra rounding; STAT_TOL and
 * /cuda/embedding-round-once (a hand value) are the sharper checks.
 * One line per op and dtype is printed ("# cuda vs cpu: ..."), which
 * scripts/gpu-check.sh collects.
 *
 * Attention runs on two cuda backends: the default one, where shapes with
 * head_dim a multiple of 8 take the tensor-core path (batched cuBLAS GEMMs
 * over blocks of 128 query rows), and one made under PX_CUDA_ATTN=warp
 * (the warp-per-row kernels, /cuda/attention-warp and
 * /cuda/attention-blocks-warp), and one made under PX_CUDA_ATTN=flash (the
 * fused FlashAttention-2-style kernels, /cuda/attention-flash and
 * /cuda/attention-blocks-flash).
 *
 * Then: the streams (async copies ordered by events, host functions after
 * the work before them, a failed host function failing its stream), event
 * times, the memory counters, host buffers (pinned, counted in their own
 * category, async copies to and from them), the device index modulo the device count, an
 * out-of-range token reported at synchronisation, f64 refused, a half
 * statistics tensor refused. */
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "backend.h"
#include "backend_impl.h" /* the ops table: bf16 / f16 reach the kernels directly */
#include "half.h"
#ifdef PX_HAVE_CUDA
#include <cuda_runtime.h>
#endif

static PxBackend *cpu, *cu;
/* a second cuda backend made under PX_CUDA_ATTN=warp (the warp-per-row
 * attention kernels only), and whether cu is it for the test running */
static PxBackend *cu_warp;
static gboolean on_warp;
/* a third made under PX_CUDA_ATTN=flash (the fused kernels of flash_attn.cu
 * where they apply: bf16 / f16, head_dim 64, 80, 96, 128), and whether cu is it */
static PxBackend *cu_flash;
static gboolean on_flash;
static GRand *rng;

/* expr, which may set the GError *E this declares, must succeed */
static void ok_or_fail(gboolean ok, GError *e) {
  g_assert_no_error(e);
  g_assert_true(ok);
}
#define OK(expr) do { GError *E = NULL; gboolean ok_ = (expr); ok_or_fail(ok_, E); } while (0)

/* One logical tensor on both sides: c on cpu (f32 for a half dtype), g on cuda. */
typedef struct {
  PxTensor *c, *g;
} Twin;

static PxDType cpu_dt(PxDType dt) { return dt == PX_DTYPE_BF16 || dt == PX_DTYPE_F16 ? PX_DTYPE_F32 : dt; }

/* v rounded to what dt holds */
static double round_to(PxDType dt, double v) {
  if (dt == PX_DTYPE_BF16) return px_bf16_to_f32(px_f32_to_bf16((float)v));
  if (dt == PX_DTYPE_F16) return px_f16_to_f32(px_f32_to_f16((float)v));
  if (dt == PX_DTYPE_F32) return (float)v;
  return v;
}

/* A twin of the given shape holding vals (rounded to dt), or uniform values in
 * [lo, hi) when vals is NULL. */
static Twin twin_vals(const char *name, PxDType dt, int ndim, const gint64 *shape, double lo, double hi,
                      const double *vals) {
  Twin t;
  GError *E = NULL;
  t.c = px_tensor_new(cpu, name, cpu_dt(dt), PX_MEM_BUFFERS, ndim, shape, &E);
  g_assert_no_error(E);
  t.g = px_tensor_new(cu, name, dt, PX_MEM_BUFFERS, ndim, shape, &E);
  g_assert_no_error(E);
  g_autofree double *h = g_new(double, t.c->numel);
  for (gint64 i = 0; i < t.c->numel; i++) h[i] = round_to(dt, vals ? vals[i] : g_rand_double_range(rng, lo, hi));
  if (dt == PX_DTYPE_I32) {
    g_autofree gint32 *ih = g_new(gint32, t.c->numel);
    for (gint64 i = 0; i < t.c->numel; i++) ih[i] = (gint32)h[i];
    OK(px_tensor_upload(t.c, ih, &E));
    OK(px_tensor_upload(t.g, ih, &E));
    return t;
  }
  OK(px_tensor_upload_f64(t.c, h, &E));
  OK(px_tensor_upload_f64(t.g, h, &E));
  return t;
}
#define SHAPE(...) (int)(sizeof((gint64[]){__VA_ARGS__}) / sizeof(gint64)), (gint64[]){__VA_ARGS__}
static Twin twin(const char *name, PxDType dt, int ndim, const gint64 *shape, double amp) {
  return twin_vals(name, dt, ndim, shape, -amp, amp, NULL);
}
static Twin twin_scalar(PxDType dt, double v) { return twin_vals("scalar", dt, SHAPE(1), 0, 0, &v); }

/* i32 ids in [lo, hi) */
static Twin twin_ids(const char *name, gint64 n, int lo, int hi) {
  Twin t;
  GError *E = NULL;
  t.c = px_tensor_new(cpu, name, PX_DTYPE_I32, PX_MEM_BUFFERS, 1, (gint64[]){n}, &E);
  t.g = px_tensor_new(cu, name, PX_DTYPE_I32, PX_MEM_BUFFERS, 1, (gint64[]){n}, &E);
  g_assert_no_error(E);
  g_autofree gint32 *h = g_new(gint32, n);
  for (gint64 i = 0; i < n; i++) h[i] = g_rand_int_range(rng, lo, hi);
  OK(px_tensor_upload(t.c, h, &E));
  OK(px_tensor_upload(t.g, h, &E));
  return t;
}

static void twin_free(Twin t) {
  px_tensor_free(t.c);
  px_tensor_free(t.g);
}

/* max |g - c| / max |c| (absolute when c is all zeros) */
static double twin_err(Twin t) {
  g_autofree double *a = g_new(double, t.c->numel);
  g_autofree double *b = g_new(double, t.c->numel);
  if (t.c->dtype == PX_DTYPE_I32) {
    g_autofree gint32 *ia = g_new(gint32, t.c->numel);
    g_autofree gint32 *ib = g_new(gint32, t.c->numel);
    OK(px_tensor_download(t.c, ia, &E));
    OK(px_tensor_download(t.g, ib, &E));
    for (gint64 i = 0; i < t.c->numel; i++) a[i] = ia[i], b[i] = ib[i];
  } else {
    OK(px_tensor_download_f64(t.c, a, &E));
    OK(px_tensor_download_f64(t.g, b, &E));
  }
  double diff = 0, ref = 0;
  for (gint64 i = 0; i < t.c->numel; i++) {
    double d = fabs(a[i] - b[i]);
    if (isnan(d) || isnan(b[i])) d = INFINITY;
    diff = MAX(diff, d);
    ref = MAX(ref, fabs(a[i]));
  }
  return ref > 0 ? diff / ref : diff;
}

static double tol(PxDType dt) { return dt == PX_DTYPE_BF16 ? 5e-2 : dt == PX_DTYPE_F16 ? 1e-2 : 1e-5; }

/* Statistics (layernorm mean / rstd, rmsnorm rstd, the block attention's
 * lse, cross-entropy losses and loss_acc, ce_vp rowmax / stats) are f32 on
 * the cuda side whatever the activations' dtype (backend.h, half
 * activations), computed in fp32 from the same (half-representable) inputs
 * as the cpu side's: they are held to the f32 tolerance, which an
 * accidental rounding to bf16 (2^-9 relative) or f16 (2^-12) would break. */
#define STAT_DT PX_DTYPE_F32
#define STAT_TOL 1e-5

static int failures;

/* The summary line of one op: the worst error of its output tensors against tolerance. */
static void report_tol(const char *op, PxDType dt, const char *what, double tl, const Twin *ts, int n) {
  double worst = 0;
  for (int i = 0; i < n; i++) worst = MAX(worst, twin_err(ts[i]));
  gboolean ok = worst <= tl;
  printf("# cuda vs cpu: %-18s %-4s %-28s max err %.2e (tol %.0e) %s\n", op, px_dtype_name(dt), what, worst, tl,
         ok ? "ok" : "FAIL");
  fflush(stdout);
  if (!ok) failures++;
  g_assert_cmpfloat(worst, <=, tl);
}
#define N_TWINS(...) (int)(sizeof((Twin[]){__VA_ARGS__}) / sizeof(Twin))
#define REPORT(op, dt, what, ...) report_tol(op, dt, what, tol(dt), (Twin[]){__VA_ARGS__}, N_TWINS(__VA_ARGS__))
/* the f32 statistics of an op run on dt activations */
#define REPORT_STATS(op, dt, what, ...) report_tol(op, dt, what, STAT_TOL, (Twin[]){__VA_ARGS__}, N_TWINS(__VA_ARGS__))

/* Run an op of the table on both backends; X(t) is the side's tensor of twin t. */
#define X(t) (side ? (t).g : (t).c)
#define XN(t) (side ? (t)->g : (t)->c) /* of a Twin pointer that may be NULL */
#define BOTH(opname, ...)                                                                          \
  for (int side = 0; side < 2; side++) {                                                           \
    PxBackend *be_ = side ? cu : cpu;                                                              \
    GError *E = NULL;                                                                              \
    gboolean ok_ = be_->ops->opname(be_, __VA_ARGS__, &E);                                         \
    g_assert_no_error(E);                                                                          \
    g_assert_true(ok_);                                                                            \
    if (side) OK(px_backend_synchronize(cu, &E));                                                  \
  }

static const PxDType dtypes[] = {PX_DTYPE_F32, PX_DTYPE_BF16, PX_DTYPE_F16};

/* ---- ops ---- */

static void test_linear(gconstpointer p) {
  PxDType dt = GPOINTER_TO_INT(p);
  const gint64 N = 37, in = 72, out = 296; /* rows of 16-byte multiples in every dtype */
  Twin x = twin("x", dt, SHAPE(N, in), 1), w = twin("w", dt, SHAPE(out, in), 0.3), b = twin("b", dt, SHAPE(out), 1);
  Twin y = twin("y", dt, SHAPE(N, out), 1), y2 = twin("y2", dt, SHAPE(N, out), 1);
  BOTH(linear_fwd, X(y), X(x), X(w), X(b));
  BOTH(linear_fwd, X(y2), X(x), X(w), NULL);
  REPORT("linear_fwd", dt, "y (bias, no bias)", y, y2);
  Twin dy = twin("dy", dt, SHAPE(N, out), 1);
  Twin dx = twin("dx", dt, SHAPE(N, in), 1), dw = twin("dw", dt, SHAPE(out, in), 1), db = twin("db", dt, SHAPE(out), 1);
  BOTH(linear_bwd, X(dx), X(dw), X(db), X(dy), X(x), X(w));
  REPORT("linear_bwd", dt, "dx, dw, db (+=)", dx, dw, db);
  Twin ts[] = {x, w, b, y, y2, dy, dx, dw, db};
  for (guint i = 0; i < G_N_ELEMENTS(ts); i++) twin_free(ts[i]);
}

static void test_embedding(gconstpointer p) {
  PxDType dt = GPOINTER_TO_INT(p);
  const int B = 3, T = 11;
  const gint64 V = 50, C = 40, N = (gint64)B * T;
  Twin tok = twin_ids("tok", N, 0, (int)V), wte = twin("wte", dt, SHAPE(V, C), 1), wpe = twin("wpe", dt, SHAPE(16, C), 1);
  Twin out = twin("out", dt, SHAPE(N, C), 1), out2 = twin("out2", dt, SHAPE(N, C), 1);
  BOTH(embedding_fwd, X(out), X(tok), X(wte), X(wpe), B, T);
  BOTH(embedding_fwd, X(out2), X(tok), X(wte), NULL, B, T);
  REPORT("embedding_fwd", dt, "out (wpe, no wpe)", out, out2);
  Twin dout = twin("dout", dt, SHAPE(N, C), 1), dwte = twin("dwte", dt, SHAPE(V, C), 1), dwpe = twin("dwpe", dt, SHAPE(16, C), 1);
  BOTH(embedding_bwd, X(dwte), X(dwpe), X(dout), X(tok), B, T);
  REPORT("embedding_bwd", dt, "dwte, dwpe (+=)", dwte, dwpe);
  /* vocabulary-parallel: rows [20, 40) of which 15 real; tokens everywhere */
  Twin wl = twin("wte_l", dt, SHAPE(20, C), 1), dwl = twin("dwte_l", dt, SHAPE(20, C), 1);
  BOTH(embedding_vp_fwd, X(out), X(tok), X(wl), X(wpe), 20, 15, B, T);
  BOTH(embedding_vp_fwd, X(out2), X(tok), X(wl), NULL, 20, 15, B, T);
  REPORT("embedding_vp_fwd", dt, "out (wpe, no wpe)", out, out2);
  BOTH(embedding_vp_bwd, X(dwl), NULL, X(dout), X(tok), 20, 15, B, T);
  REPORT("embedding_vp_bwd", dt, "dwte (+=)", dwl);
  Twin ts[] = {tok, wte, wpe, out, out2, dout, dwte, dwpe, wl, dwl};
  for (guint i = 0; i < G_N_ELEMENTS(ts); i++) twin_free(ts[i]);
}

/* Half gradients are added once (backend.h: read half, add in fp32, round
 * once): 64 occurrences of one token (and 64 sequences at one position),
 * each adding half an ulp of 1 to a row of ones. Hand value: 1 + 64 h (bf16
 * h = 2^-8: 1.25; f16 h = 2^-11: 1.03125, both exact), where an addition
 * rounded each time would tie back to 1 every time and leave 1. The other
 * rows stay 1. On the cuda side only (the cpu side computes in f32). */
static void test_embedding_round_once(gconstpointer p) {
  PxDType dt = GPOINTER_TO_INT(p);
  if (dt == PX_DTYPE_F32) {
    g_test_skip("a half-dtype property");
    return;
  }
  const int B = 64, T = 1;
  const gint64 V = 5, C = 8, N = (gint64)B * T;
  const double h = dt == PX_DTYPE_BF16 ? 1.0 / 256 : 1.0 / 2048, want = 1 + 64 * h;
  g_autofree double *ones = g_new(double, V * C), *hs = g_new(double, N * C), *ids = g_new(double, N);
  for (gint64 i = 0; i < V * C; i++) ones[i] = 1;
  for (gint64 i = 0; i < N * C; i++) hs[i] = h;
  for (gint64 i = 0; i < N; i++) ids[i] = 3;
  Twin tok = twin_vals("tok", PX_DTYPE_I32, SHAPE(N), 0, 0, ids);
  Twin dout = twin_vals("dout", dt, SHAPE(N, C), 0, 0, hs);
  Twin dwte = twin_vals("dwte", dt, SHAPE(V, C), 0, 0, ones), dwpe = twin_vals("dwpe", dt, SHAPE(2, C), 0, 0, ones);
  OK(cu->ops->embedding_bwd(cu, dwte.g, dwpe.g, dout.g, tok.g, B, T, &E));
  g_autofree double *gw = g_new(double, V * C), *gp = g_new(double, 2 * C);
  OK(px_tensor_download_f64(dwte.g, gw, &E));
  OK(px_tensor_download_f64(dwpe.g, gp, &E));
  int bad = 0;
  for (gint64 i = 0; i < V * C; i++) bad += gw[i] != (i / C == 3 ? want : 1);
  for (gint64 i = 0; i < 2 * C; i++) bad += gp[i] != (i / C == 0 ? want : 1);
  printf("# cuda embedding_bwd %s: 64 adds of %g into 1 give %.8g (want %.8g), %d element(s) off\n",
         px_dtype_name(dt), h, gw[3 * C], want, bad);
  g_assert_cmpint(bad, ==, 0);
  Twin ts[] = {tok, dout, dwte, dwpe};
  for (guint i = 0; i < G_N_ELEMENTS(ts); i++) twin_free(ts[i]);
}

static void test_norms(gconstpointer p) {
  PxDType dt = GPOINTER_TO_INT(p);
  const gint64 N = 29, C = 333;
  Twin x = twin_vals("x", dt, SHAPE(N, C), -1, 3, NULL), w = twin("w", dt, SHAPE(C), 1.5), b = twin("b", dt, SHAPE(C), 1);
  Twin out = twin("out", dt, SHAPE(N, C), 1), mean = twin("mean", STAT_DT, SHAPE(N), 1);
  Twin rstd = twin("rstd", STAT_DT, SHAPE(N), 1);
  BOTH(layernorm_fwd, X(out), X(mean), X(rstd), X(x), X(w), X(b), 1e-5);
  REPORT("layernorm_fwd", dt, "out", out);
  REPORT_STATS("layernorm_fwd", dt, "mean, rstd (f32)", mean, rstd);
  Twin dout = twin("dout", dt, SHAPE(N, C), 1), dx = twin("dx", dt, SHAPE(N, C), 1), dw = twin("dw", dt, SHAPE(C), 1),
       db = twin("db", dt, SHAPE(C), 1);
  BOTH(layernorm_bwd, X(dx), X(dw), X(db), X(dout), X(x), X(w), X(mean), X(rstd));
  REPORT("layernorm_bwd", dt, "dx, dw, db (+=)", dx, dw, db);
  BOTH(rmsnorm_fwd, X(out), X(rstd), X(x), X(w), 1e-5);
  REPORT("rmsnorm_fwd", dt, "out", out);
  REPORT_STATS("rmsnorm_fwd", dt, "rstd (f32)", rstd);
  BOTH(rmsnorm_bwd, X(dx), X(dw), X(dout), X(x), X(w), X(rstd));
  REPORT("rmsnorm_bwd", dt, "dx, dw (+=)", dx, dw);
  Twin ts[] = {x, w, b, out, mean, rstd, dout, dx, dw, db};
  for (guint i = 0; i < G_N_ELEMENTS(ts); i++) twin_free(ts[i]);
}

/* the MoE layer's dispatch and combine: k 3 weighted picks with dropped
 * (-1) ones, unweighted, k 1 over every pick, and the picks' dot products */
static void test_rows(gconstpointer p) {
  PxDType dt = GPOINTER_TO_INT(p);
  const gint64 T = 37, N = 53, C = 129;
  const int k = 3;
  Twin src = twin("src", dt, SHAPE(N, C), 2), idx = twin_ids("idx", T * k, -1, (int)N);
  Twin wt = twin("wt", dt, SHAPE(T * k, 1), 1), dst = twin("dst", dt, SHAPE(T, C), 1);
  Twin each = twin("each", dt, SHAPE(T * k, C), 1), a = twin("a", dt, SHAPE(T, C), 1);
  Twin out = twin("out", dt, SHAPE(T * k, 1), 1);
  BOTH(rows_gather, X(dst), X(src), X(idx), X(wt), k);
  REPORT("rows_gather", dt, "dst (k 3, weighted)", dst);
  BOTH(rows_gather, X(dst), X(src), X(idx), NULL, k);
  REPORT("rows_gather", dt, "dst (k 3)", dst);
  BOTH(rows_gather, X(each), X(src), X(idx), X(wt), 1);
  REPORT("rows_gather", dt, "each pick (k 1, weighted)", each);
  BOTH(rows_dot, X(out), X(a), X(src), X(idx), k);
  REPORT("rows_dot", dt, "out", out);
  Twin ts[] = {src, idx, wt, dst, each, a, out};
  for (guint i = 0; i < G_N_ELEMENTS(ts); i++) twin_free(ts[i]);
}

/* the MoE router: softmax and top-k (indices exactly, with the ties that
 * half logits make), then the softmax's backward with and without norm_topk
 * from the cpu side's probabilities and choices */
static void test_router(gconstpointer p) {
  PxDType dt = GPOINTER_TO_INT(p);
  const gint64 T = 37, NE = 13; /* rows, experts */
  const int k = 3;
  Twin logits = twin("logits", dt, SHAPE(T, NE), 2), probs = twin("probs", dt, SHAPE(T, NE), 1);
  Twin topi = twin_ids("topi", T * k, 0, 1), topv = twin("topv", PX_DTYPE_F64, SHAPE(T * k), 1);
  Twin psum = twin("psum", PX_DTYPE_F64, SHAPE(NE), 1);
  BOTH(router_topk, X(probs), X(topi), X(topv), X(psum), X(logits), k);
  REPORT("router_topk", dt, "probs, topi, topv, psum", probs, topi, topv, psum);
  { /* the MoE layer's packed layout (one download): topv | psum | topi in one buffer, as the separate tensors */
    const gint64 nv = T * k + NE, np = nv + (T * k + 1) / 2;
    GError *E = NULL;
    PxTensor *pk = px_tensor_new(cu, "route", PX_DTYPE_F64, PX_MEM_BUFFERS, 1, &np, &E);
    g_assert_no_error(E);
    PxTensor *pv_ = px_tensor_view(pk, "topv", 0, SHAPE(T * k), &E);
    PxTensor *ps_ = px_tensor_view(pk, "psum", T * k, SHAPE(NE), &E);
    PxTensor *pi_ = px_tensor_view_as(pk, "topi", PX_DTYPE_I32, (gsize)nv * 8, SHAPE(T * k), &E);
    g_assert_no_error(E);
    OK(px_op_router_topk(cu, probs.g, pi_, pv_, ps_, logits.g, k, &E));
    g_autofree double *down = g_new(double, np), *v1 = g_new(double, T * k), *s1 = g_new(double, NE);
    g_autofree gint32 *i1 = g_new(gint32, T * k);
    OK(px_tensor_download(pk, down, &E));
    OK(px_tensor_download(topv.g, v1, &E));
    OK(px_tensor_download(psum.g, s1, &E));
    OK(px_tensor_download(topi.g, i1, &E));
    g_assert_cmpmem(down, T * k * 8, v1, T * k * 8);
    g_assert_cmpmem(down + T * k, NE * 8, s1, NE * 8);
    g_assert_cmpmem(down + nv, T * k * 4, i1, T * k * 4);
    px_tensor_free(pv_);
    px_tensor_free(ps_);
    px_tensor_free(pi_);
    px_tensor_free(pk);
  }
  g_autofree double *pv = g_new(double, T * NE);
  OK(px_tensor_download_f64(probs.c, pv, &E));
  Twin pr = twin_vals("p", dt, SHAPE(T, NE), 0, 0, pv);
  Twin dg = twin("dgate", dt, SHAPE(T * k, 1), 1), fc = twin("fcnt", dt, SHAPE(NE), 1);
  Twin dl = twin("dlogits", dt, SHAPE(T, NE), 1);
  for (int norm = 0; norm < 2; norm++) {
    BOTH(router_bwd, X(dl), X(pr), X(topi), X(dg), X(fc), 0.3, norm, k);
    REPORT("router_bwd", dt, norm ? "dlogits (norm_topk)" : "dlogits", dl);
  }
  BOTH(router_bwd, X(dl), X(pr), X(topi), X(dg), NULL, 0.3, FALSE, k);
  REPORT("router_bwd", dt, "dlogits (no fcnt)", dl);
  Twin ts[] = {logits, probs, topi, topv, psum, pr, dg, fc, dl};
  for (guint i = 0; i < G_N_ELEMENTS(ts); i++) twin_free(ts[i]);
}

static void test_elementwise(gconstpointer p) {
  PxDType dt = GPOINTER_TO_INT(p);
  const gint64 N = 41, F = 257;
  Twin x = twin("x", dt, SHAPE(N, F), 4), u = twin("up", dt, SHAPE(N, F), 2), out = twin("out", dt, SHAPE(N, F), 1);
  BOTH(gelu_fwd, X(out), X(x));
  REPORT("gelu_fwd", dt, "out", out);
  Twin dout = twin("dout", dt, SHAPE(N, F), 1), dx = twin("dx", dt, SHAPE(N, F), 1), du = twin("dup", dt, SHAPE(N, F), 1);
  BOTH(gelu_bwd, X(dx), X(dout), X(x));
  REPORT("gelu_bwd", dt, "dx (+=)", dx);
  BOTH(swiglu_fwd, X(out), X(x), X(u));
  REPORT("swiglu_fwd", dt, "out", out);
  BOTH(swiglu_bwd, X(dx), X(du), X(dout), X(x), X(u));
  REPORT("swiglu_bwd", dt, "dgate, dup (+=)", dx, du);
  BOTH(residual_fwd, X(out), X(x), X(u));
  REPORT("residual_fwd", dt, "out", out);
  BOTH(residual_fwd, X(u), X(x), X(u)); /* out aliasing b */
  REPORT("residual_fwd", dt, "out = b (aliased)", u);
  BOTH(residual_bwd, X(dx), X(du), X(dout));
  REPORT("residual_bwd", dt, "da, db (+=)", dx, du);
  BOTH(scale, X(x), 0.37);
  REPORT("scale", dt, "t", x);
  Twin ts[] = {x, u, out, dout, dx, du};
  for (guint i = 0; i < G_N_ELEMENTS(ts); i++) twin_free(ts[i]);
}

static void test_rope(gconstpointer p) {
  PxDType dt = GPOINTER_TO_INT(p);
  PxAttnShape s = {.B = 2, .T = 19, .heads = 4, .kv_heads = 2, .head_dim = 24};
  gint64 N = (gint64)s.B * s.T, W = (gint64)(s.heads + 2 * s.kv_heads) * s.head_dim;
  Twin in = twin("in", dt, SHAPE(N, W), 1), out = twin("out", dt, SHAPE(N, W), 1), d = twin("din", dt, SHAPE(N, W), 1);
  BOTH(rope_fwd, X(out), X(in), &s, 10000.0);
  REPORT("rope_fwd", dt, "out", out);
  BOTH(rope_bwd, X(d), X(out), &s, 10000.0);
  REPORT("rope_bwd", dt, "din (+=)", d);
  BOTH(rope_fwd, X(in), X(in), &s, 500000.0); /* in place */
  REPORT("rope_fwd", dt, "in place", in);
  twin_free(in);
  twin_free(out);
  twin_free(d);
}

/* The row log-sum-exp of the scaled causal scores, in double, from the
 * cpu side's qkv (B*T, W): lse[(b*H + h)*T + t] = log sum_{j<=t} e^(q.k_j / sqrt(hd)). */
static void ref_lse(const PxAttnShape *s, const PxTensor *qkv, double *lse) {
  gint64 W = (gint64)(s->heads + 2 * s->kv_heads) * s->head_dim;
  g_autofree double *x = g_new(double, qkv->numel);
  OK(px_tensor_download_f64(qkv, x, &E));
  int per = s->heads / s->kv_heads;
  g_autofree double *sc = g_new(double, s->T);
  for (int b = 0; b < s->B; b++)
    for (int h = 0; h < s->heads; h++)
      for (int t = 0; t < s->T; t++) {
        const double *q = x + ((gint64)b * s->T + t) * W + (gint64)h * s->head_dim;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j <= t; j++) {
          const double *k = x + ((gint64)b * s->T + j) * W + (gint64)(s->heads + h / per) * s->head_dim;
          double d = 0;
          for (int i = 0; i < s->head_dim; i++) d += q[i] * k[i];
          sc[j] = d / sqrt((double)s->head_dim);
          mx = MAX(mx, sc[j]);
        }
        for (int j = 0; j <= t; j++) sum += exp(sc[j] - mx);
        lse[((gint64)b * s->heads + h) * s->T + t] = mx + log(sum);
      }
}

/* The whole causal attention, forward and backward. On cu the tensor-core
 * path (exec/cuda/backend_cuda.c: batched cuBLAS GEMMs over blocks of 128
 * query rows) runs for head_dim a multiple of 8 and T >= 2; the shapes below
 * give it several blocks (T 300 and 257: blocks of 128, 128 and 44 / 1, so
 * T not a multiple of the block and keys past the block's causal prefix
 * left out), GQA, and one shape it leaves to the warp kernels (head_dim 20).
 * On cu_warp (/cuda/attention-warp) every shape runs the warp kernels.
 * Tolerances are tol(): f32 1e-5; bf16 5e-2 and f16 1e-2, where the
 * tensor-core path rounds P and dS to the half type before their GEMMs (as
 * flash attention does) and rounds out, dq and dkv once each (dK, dV summed
 * over the blocks of 128 query rows and the query heads of a GQA group in
 * an fp32 buffer, then added): a few roundings of 2^-9 (bf16) each.
 * The saved state is checked where it is specified: the f32 probabilities
 * of the warp kernels (as the cpu backend), and otherwise each row's lse in
 * the first B*H*T fp32 of att, against ref_lse (relative 1e-4 of the largest;
 * in f32 this also proves that the tensor-core path ran: the warp kernels
 * would have saved probabilities). */
static void attention_shapes(PxDType dt, const PxAttnShape *shapes, guint n_shapes);
static void test_attention(gconstpointer p) {
  const PxAttnShape shapes[] = {
    {.B = 2, .T = 33, .heads = 4, .kv_heads = 2, .head_dim = 16}, /* grouped-query */
    {.B = 1, .T = 70, .heads = 2, .kv_heads = 1, .head_dim = 80}, /* head_dim not a multiple of 32 */
    {.B = 2, .T = 40, .heads = 3, .kv_heads = 3, .head_dim = 64}, /* GPT-2's head_dim */
    {.B = 1, .T = 1, .heads = 2, .kv_heads = 2, .head_dim = 64},  /* one position */
    {.B = 2, .T = 300, .heads = 4, .kv_heads = 2, .head_dim = 32}, /* 3 blocks (128, 128, 44), GQA */
    {.B = 1, .T = 257, .heads = 2, .kv_heads = 2, .head_dim = 64}, /* a last block of one row */
    {.B = 1, .T = 37, .heads = 6, .kv_heads = 2, .head_dim = 24},  /* 3 query heads per kv head */
    {.B = 2, .T = 21, .heads = 2, .kv_heads = 1, .head_dim = 20},  /* head_dim % 8 != 0: warp kernels */
  };
  attention_shapes(GPOINTER_TO_INT(p), shapes, G_N_ELEMENTS(shapes));
}

/* Whether the flash kernels take shape s of dt on cu_flash (backend_cuda.c
 * att_flash_takes; the test's tensors are fresh, so aligned). */
static gboolean flash_shape(PxDType dt, const PxAttnShape *s) {
  const int hd = s->head_dim;
  return on_flash && (dt == PX_DTYPE_BF16 || dt == PX_DTYPE_F16) && (hd == 64 || hd == 80 || hd == 96 || hd == 128);
}

/* The flash path allocates nothing from the caching pool (no score tiles, D
 * in uncounted scratch), where the tensor-core path takes its workspace
 * (attention.workspace, and attention.dkv_f32 in backward) under
 * PX_MEM_BUFFERS: so the peak of PX_MEM_BUFFERS since the reset before the op
 * still equals the current bytes exactly when the flash path ran (on
 * cu_flash the warp kernels are never chosen for these shapes). */
static void check_no_workspace(const char *op, PxDType dt, const PxAttnShape *s) {
  PxMemStats m;
  px_backend_mem_stats(cu, &m);
  gboolean ok = m.peak[PX_MEM_BUFFERS] == m.current[PX_MEM_BUFFERS];
  printf("# cuda flash: %-16s %-4s B%d T%d H%d KV%d hd%d: no workspace taken (the fused kernels ran) %s\n", op,
         px_dtype_name(dt), s->B, s->T, s->heads, s->kv_heads, s->head_dim, ok ? "ok" : "FAIL");
  if (!ok) failures++;
  g_assert_cmpint(m.peak[PX_MEM_BUFFERS], ==, m.current[PX_MEM_BUFFERS]);
}

static void attention_shapes(PxDType dt, const PxAttnShape *shapes, guint n_shapes) {
  for (guint k = 0; k < n_shapes; k++) {
    const PxAttnShape *s = &shapes[k];
    gint64 N = (gint64)s->B * s->T, W = (gint64)(s->heads + 2 * s->kv_heads) * s->head_dim;
    gint64 O = (gint64)s->heads * s->head_dim, R = (gint64)s->B * s->heads * s->T;
    Twin qkv = twin("qkv", dt, SHAPE(N, W), 1.5), out = twin("out", dt, SHAPE(N, O), 1);
    Twin att = twin("att", dt, SHAPE(s->B, s->heads, s->T, s->T), 1);
    const gboolean flash = flash_shape(dt, s) && s->T >= 2;
    px_backend_mem_reset_peak(cu);
    BOTH(attention_fwd, X(out), X(att), X(qkv), s);
    if (flash) check_no_workspace("attention_fwd", dt, s);
    g_autofree char *what = g_strdup_printf("out (B%d T%d H%d KV%d hd%d)%s", s->B, s->T, s->heads, s->kv_heads,
                                            s->head_dim, on_warp ? " warp" : flash ? " flash" : "");
    gboolean tc = !on_warp && s->head_dim % 8 == 0 && s->T >= 2;
    gboolean probs = !tc && (dt == PX_DTYPE_F32 || s->T == 1); /* the warp kernels' rule (cuda_kernels.h) */
    if (probs) REPORT("attention_fwd", dt, what, out, att);
    else REPORT("attention_fwd", dt, what, out);
    if (!probs) { /* the lse, fp32, at the front of att */
      g_autofree double *want = g_new(double, R);
      ref_lse(s, qkv.c, want);
      g_autofree char *raw = g_malloc(att.g->bytes);
      OK(px_tensor_download(att.g, raw, &E));
      const float *got = (const float *)raw;
      double diff = 0, ref = 0;
      for (gint64 r = 0; r < R; r++) {
        diff = MAX(diff, fabs(got[r] - want[r]));
        ref = MAX(ref, fabs(want[r]));
        if (isnan(got[r])) diff = INFINITY;
      }
      printf("# cuda lse: %-4s %-40s max err %.2e of max |lse| %.2f (tol 1e-4) %s\n", px_dtype_name(dt), what,
             diff / ref, ref, diff <= 1e-4 * ref ? "ok" : "FAIL");
      if (diff > 1e-4 * ref) failures++;
      g_assert_cmpfloat(diff, <=, 1e-4 * ref);
    }
    Twin dout = twin("dout", dt, SHAPE(N, O), 1), dqkv = twin("dqkv", dt, SHAPE(N, W), 1);
    px_backend_mem_reset_peak(cu);
    BOTH(attention_bwd, X(dqkv), X(dout), X(qkv), X(att), s);
    if (flash) check_no_workspace("attention_bwd", dt, s);
    g_autofree char *wb = g_strdup_printf("dqkv (+=) (B%d T%d H%d KV%d hd%d)%s", s->B, s->T, s->heads, s->kv_heads,
                                          s->head_dim, on_warp ? " warp" : flash ? " flash" : "");
    REPORT("attention_bwd", dt, wb, dqkv);
    twin_free(qkv);
    twin_free(out);
    twin_free(att);
    twin_free(dout);
    twin_free(dqkv);
  }
}

/* Ring attention's block ops: CP rank 1 of 2 on a sequence of 4c tokens
 * (chunks of c: the query block holds positions c..2c-1 and 2c..3c-1)
 * against its own block and rank 0's (positions 0..c-1 and 3c..4c-1: every
 * query row sees some key, none sees 3c..4c-1), merged, and both blocks'
 * backward; then rank 0's queries against rank 1's keys, where the rows at
 * 0..c-1 see no key (out 0; the lse, -inf there, is not compared).
 * c = 10: one block of query rows; c = 100: two (128 and 72) on the
 * tensor-core path (head_dim 24). On cu_flash head_dim is 64, which the
 * fused kernels take (bf16 / f16): c = 100 gives tiles of 64 rows with the
 * split between the two runs of positions inside a tile (rows 64..127), so
 * both the tile skipping by the runs' extreme positions and the per-element
 * masks are exercised, on the query and the key side. */
static void test_attn_blocks(gconstpointer p) {
  PxDType dt = GPOINTER_TO_INT(p);
  const int chunks[] = {10, 100};
  for (guint k = 0; k < G_N_ELEMENTS(chunks); k++) {
    const int c = chunks[k];
    PxAttnShape qs = {.B = 2, .T = 2 * c, .heads = 4, .kv_heads = 2, .head_dim = on_flash ? 64 : 24,
                      .pos_split = c, .pos_start0 = c, .pos_start1 = 2 * c};
    PxAttnShape ks = qs;
    ks.pos_start0 = 0;
    ks.pos_start1 = 3 * c;
    gint64 N = (gint64)qs.B * qs.T, W = (gint64)(qs.heads + 2 * qs.kv_heads) * qs.head_dim;
    gint64 O = (gint64)qs.heads * qs.head_dim, L = (gint64)qs.B * qs.heads;
    g_autofree char *what = g_strdup_printf("chunks of %d%s", c,
                                            on_warp                   ? " warp"
                                            : flash_shape(dt, &qs)    ? " flash hd64"
                                            : on_flash                ? " hd64, tc path"
                                                                      : "");
    Twin q = twin("q", dt, SHAPE(N, W), 1.5), kv = twin("kv", dt, SHAPE(N, W), 1.5);
    Twin out = twin("out", dt, SHAPE(N, O), 1), lse = twin("lse", STAT_DT, SHAPE(L, qs.T), 1);
    Twin ob = twin("out_b", dt, SHAPE(N, O), 1), lb = twin("lse_b", STAT_DT, SHAPE(L, qs.T), 1);
    px_backend_mem_reset_peak(cu);
    BOTH(attn_block_fwd, X(out), X(lse), X(q), X(q), &qs, &qs);
    BOTH(attn_block_fwd, X(ob), X(lb), X(q), X(kv), &qs, &ks);
    if (flash_shape(dt, &qs)) check_no_workspace("attn_block_fwd", dt, &qs);
    g_autofree char *w1 = g_strdup_printf("out (own, other), %s", what);
    REPORT("attn_block_fwd", dt, w1, out, ob);
    g_autofree char *w1s = g_strdup_printf("lse f32 (own, other), %s", what);
    REPORT_STATS("attn_block_fwd", dt, w1s, lse, lb);
    BOTH(attn_merge, X(out), X(lse), X(ob), X(lb), &qs);
    REPORT("attn_merge", dt, what, out);
    g_autofree char *wms = g_strdup_printf("lse f32, %s", what);
    REPORT_STATS("attn_merge", dt, wms, lse);
    /* ring attention's fp32 accumulator beside half partial outputs (backend.h,
     * attn_merge's f32 out): out and lse f32 on both sides, out_b dt on cuda
     * (its f32 copy on cpu); fresh inputs, the same on both sides, so the two
     * form the same f32 sums: held to the f32 tolerance, which a rounding of
     * the accumulator to dt (2^-9 / 2^-12 relative) would break */
    if (dt != PX_DTYPE_F32) {
      Twin acc = twin("acc", STAT_DT, SHAPE(N, O), 1), la = twin("lse_acc", STAT_DT, SHAPE(L, qs.T), 1);
      Twin ob2 = twin("out_b2", dt, SHAPE(N, O), 1), lb2 = twin("lse_b2", STAT_DT, SHAPE(L, qs.T), 1);
      BOTH(attn_merge, X(acc), X(la), X(ob2), X(lb2), &qs);
      g_autofree char *wacc = g_strdup_printf("f32 out, %s out_b, %s", px_dtype_name(dt), what);
      REPORT_STATS("attn_merge", dt, wacc, acc, la);
      twin_free(acc);
      twin_free(la);
      twin_free(ob2);
      twin_free(lb2);
    }
    Twin dout = twin("dout", dt, SHAPE(N, O), 1), dq = twin("dq", dt, SHAPE(N, W), 1), dkv = twin("dkv", dt, SHAPE(N, W), 1);
    px_backend_mem_reset_peak(cu);
    BOTH(attn_block_bwd, X(dq), X(dkv), X(dout), X(q), X(kv), X(out), X(lse), &qs, &ks);
    BOTH(attn_block_bwd, X(dq), X(dq), X(dout), X(q), X(q), X(out), X(lse), &qs, &qs);
    if (flash_shape(dt, &qs)) check_no_workspace("attn_block_bwd", dt, &qs);
    g_autofree char *w2 = g_strdup_printf("dq, dkv (+=), %s", what);
    REPORT("attn_block_bwd", dt, w2, dq, dkv);
    /* rank 0's queries (kv, at ks's positions) against rank 1's keys (q, at qs's) */
    Twin o0 = twin("out0", dt, SHAPE(N, O), 1), l0 = twin("lse0", STAT_DT, SHAPE(L, qs.T), 1);
    BOTH(attn_block_fwd, X(o0), X(l0), X(kv), X(q), &ks, &qs);
    g_autofree char *w3 = g_strdup_printf("out, rows seeing no key, %s", what);
    REPORT("attn_block_fwd", dt, w3, o0);
    Twin ts[] = {q, kv, out, lse, ob, lb, dout, dq, dkv, o0, l0};
    for (guint i = 0; i < G_N_ELEMENTS(ts); i++) twin_free(ts[i]);
  }
}

/* the same two on the warp kernels (cu_warp) or the flash kernels (cu_flash) */
static void on_backend(PxBackend *be, gboolean *flag, GTestDataFunc fn, gconstpointer p) {
  if (!be) {
    g_test_skip("no second cuda backend");
    return;
  }
  PxBackend *keep = cu;
  cu = be;
  *flag = TRUE;
  fn(p);
  *flag = FALSE;
  cu = keep;
}
static void test_attention_warp(gconstpointer p) { on_backend(cu_warp, &on_warp, test_attention, p); }
static void test_attn_blocks_warp(gconstpointer p) { on_backend(cu_warp, &on_warp, test_attn_blocks, p); }

/* PX_CUDA_ATTN=flash against the cpu backend: the shapes the fused kernels
 * take (bf16 / f16; f32 runs them on the tensor-core path), T not a multiple
 * of the 64-row tile (100, 257, 130), exactly one tile (64), GQA (8 query
 * heads on 2 kv heads, 4 on 1), head_dim 64, 80, 96 and 128; then two it leaves to
 * the other paths (head_dim 16; T = 1). Forward out, the lse (relative 1e-4,
 * as above) and backward dqkv (+=). Tolerances tol(): bf16 5e-2, f16 1e-2,
 * the tensor-core path's (the fused kernels round P before P V and dS before
 * dS K, dS^T Q, as it does, and round out, dq, dk, dv once each). */
static void test_attention_flash_shapes(gconstpointer p) {
  const PxAttnShape shapes[] = {
    {.B = 1, .T = 100, .heads = 8, .kv_heads = 2, .head_dim = 64},  /* GQA 4:1, tiles of 64 and 36 */
    {.B = 2, .T = 257, .heads = 8, .kv_heads = 2, .head_dim = 128}, /* GQA, a last tile of one row */
    {.B = 1, .T = 64, .heads = 2, .kv_heads = 2, .head_dim = 128},  /* exactly one tile */
    {.B = 2, .T = 130, .heads = 4, .kv_heads = 1, .head_dim = 64},  /* one kv head, tiles 64, 64, 2 */
    {.B = 1, .T = 90, .heads = 3, .kv_heads = 3, .head_dim = 96},   /* Phi-3-mini's head_dim */
    {.B = 1, .T = 70, .heads = 2, .kv_heads = 1, .head_dim = 80},   /* Phi-2's */
    {.B = 2, .T = 33, .heads = 4, .kv_heads = 2, .head_dim = 16},   /* head_dim 16: not taken */
    {.B = 1, .T = 1, .heads = 2, .kv_heads = 2, .head_dim = 64},    /* T = 1: not taken (probabilities) */
  };
  attention_shapes(GPOINTER_TO_INT(p), shapes, G_N_ELEMENTS(shapes));
}
static void test_attention_flash(gconstpointer p) { on_backend(cu_flash, &on_flash, test_attention_flash_shapes, p); }
static void test_attn_blocks_flash(gconstpointer p) { on_backend(cu_flash, &on_flash, test_attn_blocks, p); }

static void test_cross_entropy(gconstpointer p) {
  PxDType dt = GPOINTER_TO_INT(p);
  const gint64 N = 13, V = 1000;
  Twin logits = twin("logits", dt, SHAPE(N, V), 6), tgt = twin_ids("targets", N, 0, (int)V);
  Twin losses = twin("losses", STAT_DT, SHAPE(N), 1), acc = twin_scalar(PX_DTYPE_F64, 0.25);
  BOTH(cross_entropy_fwd, X(losses), X(acc), X(logits), X(tgt));
  REPORT_STATS("cross_entropy_fwd", dt, "losses f32, loss_acc (+=)", losses, acc);
  Twin dl = twin("dlogits", dt, SHAPE(N, V), 1e-3);
  BOTH(cross_entropy_bwd, X(dl), X(logits), X(tgt), 0.5);
  REPORT("cross_entropy_bwd", dt, "dlogits (+=)", dl);
  /* vocabulary-parallel: this rank's columns [400, 700) of a 1000-token
   * vocabulary, padded to 320 columns (20 padding); one rank's pieces */
  const gint64 Vl = 320, v0 = 400, n_real = 300;
  Twin ll = twin("logits_l", dt, SHAPE(N, Vl), 6), tl = twin_ids("targets", N, 300, 800);
  Twin mx = twin("gmax", STAT_DT, SHAPE(N), 1), stats = twin("stats", STAT_DT, SHAPE(2, N), 1);
  BOTH(ce_vp_max, X(mx), X(ll), n_real);
  REPORT_STATS("ce_vp_max", dt, "rowmax f32", mx);
  BOTH(ce_vp_stats, X(stats), X(ll), X(tl), X(mx), v0, n_real);
  REPORT_STATS("ce_vp_stats", dt, "stats f32", stats);
  Twin acc32 = twin_scalar(PX_DTYPE_F32, 1.0);
  BOTH(ce_vp_loss, X(losses), X(acc32), X(mx), X(stats));
  REPORT_STATS("ce_vp_loss", dt, "losses f32, loss_acc (+=)", losses, acc32);
  Twin dll = twin("dlogits_l", dt, SHAPE(N, Vl), 1e-3);
  BOTH(ce_vp_bwd, X(dll), X(ll), X(tl), X(mx), X(stats), v0, n_real, 0.25);
  REPORT("ce_vp_bwd", dt, "dlogits (+=)", dll);
  Twin ts[] = {logits, tgt, losses, acc, dl, ll, tl, mx, stats, acc32, dll};
  for (guint i = 0; i < G_N_ELEMENTS(ts); i++) twin_free(ts[i]);
}

static void test_optimizer(gconstpointer p) {
  PxDType dt = GPOINTER_TO_INT(p);
  const gint64 n = 5000;
  Twin prm = twin("param", dt, SHAPE(n), 1), g = twin("grad", dt, SHAPE(n), 0.1), m = twin("m", dt, SHAPE(n), 0.01);
  Twin v = twin_vals("v", dt, SHAPE(n), 0, 1e-3, NULL);
  PxAdamW o = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .t = 3, .grad_scale = 0.5};
  Twin coef = twin_scalar(PX_DTYPE_F32, 0.8), skip0 = twin_scalar(PX_DTYPE_I32, 0), skip1 = twin_scalar(PX_DTYPE_F64, 1);
  BOTH(adamw, X(prm), X(g), X(m), X(v), &o, NULL, NULL);
  BOTH(adamw, X(prm), X(g), X(m), X(v), &o, X(coef), X(skip0));
  BOTH(adamw, X(prm), X(g), X(m), X(v), &o, X(coef), X(skip1)); /* skipped */
  REPORT("adamw", dt, "param, m, v (2 steps, 1 skip)", prm, m, v);
  Twin ss = twin_scalar(PX_DTYPE_F64, 2.0), ss32 = twin_scalar(PX_DTYPE_F32, 0);
  BOTH(sum_squares_acc, X(ss), X(g));
  BOTH(sum_squares_acc, X(ss32), X(prm));
  REPORT("sum_squares_acc", dt, "acc f64, f32 (+=)", ss, ss32);
  Twin cf = twin_scalar(PX_DTYPE_F32, 0), cf2 = twin_scalar(PX_DTYPE_F64, 0);
  BOTH(clip_coef, X(cf), X(ss), 0.5);
  BOTH(clip_coef, X(cf2), X(ss), 0);
  REPORT("clip_coef", dt, "coef (clipped, off)", cf, cf2);
  /* non-finite: none in g, then one Inf in a copy of it */
  Twin flag = twin_scalar(PX_DTYPE_I32, 0), flag2 = twin_scalar(PX_DTYPE_F32, 0);
  BOTH(check_finite, X(flag), X(g));
  g_autofree double *h = g_new(double, n);
  for (gint64 i = 0; i < n; i++) h[i] = i == n - 7 ? INFINITY : 1;
  Twin bad = twin_vals("bad", dt, SHAPE(n), 0, 0, h);
  BOTH(check_finite, X(flag2), X(bad));
  REPORT("check_finite", dt, "flag (finite, Inf)", flag, flag2);
  gint32 f = -1;
  OK(px_tensor_download(flag.g, &f, &E));
  g_assert_cmpint(f, ==, 0);
  float f2 = 0;
  OK(px_tensor_download(flag2.g, &f2, &E));
  g_assert_cmpfloat(f2, ==, 1);
  Twin ts[] = {prm, g, m, v, coef, skip0, skip1, ss, ss32, cf, cf2, flag, flag2, bad};
  for (guint i = 0; i < G_N_ELEMENTS(ts); i++) twin_free(ts[i]);
}

/* The mixed-precision cast against exec/half.h's conversions, bit for bit:
 * f32 -> bf16 / f16 / f32 / f64 and back, assigning and accumulating (the sum
 * in f32, or f64 when a side is f64, rounded once to nearest even; fp16
 * overflow to Inf, its subnormals kept). */
static guint64 bits_of(PxDType dt, double v) {
  float f = (float)v;
  switch (dt) {
  case PX_DTYPE_BF16: return px_f32_to_bf16(f);
  case PX_DTYPE_F16: return px_f32_to_f16(f);
  case PX_DTYPE_F32: return px_f32_bits(f);
  default: {
    guint64 u;
    memcpy(&u, &v, sizeof u);
    return u;
  }
  }
}

static double value_of(PxDType dt, guint64 b) {
  switch (dt) {
  case PX_DTYPE_BF16: return px_bf16_to_f32((guint16)b);
  case PX_DTYPE_F16: return px_f16_to_f32((guint16)b);
  case PX_DTYPE_F32: return px_bits_f32((guint32)b);
  default: {
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
  }
  }
}

static void test_cast(void) {
  GError *E = NULL;
  const gint64 n = 4099;
  const PxDType dts[] = {PX_DTYPE_F32, PX_DTYPE_F64, PX_DTYPE_BF16, PX_DTYPE_F16};
  g_autofree double *sv = g_new(double, n);
  g_autofree double *dv = g_new(double, n);
  for (gint64 i = 0; i < n; i++) {
    sv[i] = g_rand_double_range(rng, -1, 1) * pow(10, g_rand_int_range(rng, -7, 6));
    dv[i] = g_rand_double_range(rng, -1, 1) * pow(10, g_rand_int_range(rng, -3, 3));
  }
  sv[0] = 1 + 1.0 / 256;  /* a bf16 tie: to even, 1 */
  sv[1] = 1 + 3.0 / 256;  /* a bf16 tie: to even, 1 + 2/128 */
  sv[2] = 70000;          /* above fp16's largest: Inf */
  sv[3] = 3e-6;           /* an fp16 subnormal */
  int cases = 0;
  for (guint a = 0; a < G_N_ELEMENTS(dts); a++)
    for (guint b = 0; b < G_N_ELEMENTS(dts); b++)
      for (int acc = 0; acc < 2; acc++) {
        PxDType sd = dts[a], dd = dts[b];
        gboolean wide = sd == PX_DTYPE_F64 || dd == PX_DTYPE_F64;
        PxTensor *src = px_tensor_new(cu, "src", sd, PX_MEM_BUFFERS, 1, (gint64[]){n}, &E);
        PxTensor *dst = px_tensor_new(cu, "dst", dd, PX_MEM_BUFFERS, 1, (gint64[]){n}, &E);
        g_assert_no_error(E);
        OK(px_tensor_upload_f64(src, sv, &E));
        OK(px_tensor_upload_f64(dst, dv, &E));
        OK(cu->ops->cast(cu, dst, src, acc, &E));
        gsize es = px_dtype_size(dd);
        g_autofree guint8 *got = g_malloc(dst->bytes);
        OK(px_tensor_download(dst, got, &E));
        int bad = 0;
        for (gint64 i = 0; i < n; i++) {
          double s0 = value_of(sd, bits_of(sd, sv[i])), d0 = value_of(dd, bits_of(dd, dv[i]));
          guint64 want;
          if (wide) want = bits_of(dd, acc ? s0 + d0 : s0);
          else want = bits_of(dd, acc ? (double)((float)s0 + (float)d0) : s0);
          guint64 g = 0;
          memcpy(&g, got + i * es, es);
          if (g != want) bad++;
        }
        if (bad) printf("# cast %s -> %s%s: %d of %" G_GINT64_FORMAT " differ\n", px_dtype_name(sd),
                        px_dtype_name(dd), acc ? " (+=)" : "", bad, n);
        g_assert_cmpint(bad, ==, 0);
        cases++;
        px_tensor_free(src);
        px_tensor_free(dst);
      }
  printf("# cuda vs cpu: %-18s %d dtype pairs, = and +=, bit-exact with exec/half.h ok\n", "cast", cases / 2);
}

/* ---- streams, events, memory, errors ---- */

typedef struct {
  float *host;
  gint64 n;
  double first;
  int runs;
} HostSeen;

static gboolean see_host(gpointer data, GError **error) {
  (void)error;
  HostSeen *hs = data;
  hs->first = hs->host[0];
  hs->runs++;
  return TRUE;
}

static gboolean fail_host(gpointer data, GError **error) {
  (void)data;
  g_set_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_DEVICE, "deliberate failure");
  return FALSE;
}

static void test_streams(void) {
  GError *E = NULL;
  const gint64 n = 1 << 20;
  g_autofree float *a = g_new(float, n);
  g_autofree float *b = g_new0(float, n);
  for (gint64 i = 0; i < n; i++) a[i] = (float)(i % 1000);
  PxTensor *t = px_tensor_new(cu, "t", PX_DTYPE_F32, PX_MEM_BUFFERS, 1, (gint64[]){n}, &E);
  g_assert_no_error(E);
  PxStream *copy = px_stream_new(cu, "copy", &E), *comp = px_backend_compute_stream(cu);
  g_assert_no_error(E);
  g_assert_false(px_stream_is_inline(comp));
  g_assert_nonnull(px_stream_native(comp)); /* cudaStream_t handles, for NCCL */
  g_assert_nonnull(px_stream_native(copy));
  g_assert_true(px_stream_native(comp) != px_stream_native(copy));
  PxDevEvent *up = px_event_new(cu, &E), *t0 = px_event_new(cu, &E), *t1 = px_event_new(cu, &E);
  g_assert_no_error(E);
  /* upload on "copy", compute waits for it, scales, downloads, then a host function reads the result */
  OK(px_tensor_upload_async(t, a, copy, &E));
  OK(px_event_record(up, copy, &E));
  OK(px_stream_wait_event(comp, up, &E));
  OK(px_event_record(t0, comp, &E));
  OK(px_op_scale(cu, t, 2.0, &E));
  OK(px_event_record(t1, comp, &E));
  OK(px_tensor_download_async(t, b, comp, &E));
  HostSeen hs = {b + 999, n, -1, 0};
  OK(px_stream_launch_host(comp, see_host, &hs, NULL, &E));
  OK(px_stream_synchronize(comp, &E));
  g_assert_cmpint(hs.runs, ==, 1);
  g_assert_cmpfloat(hs.first, ==, 2 * 999.0); /* the host function ran after the download */
  for (gint64 i = 0; i < n; i += 4097) g_assert_cmpfloat(b[i], ==, 2 * a[i]);
  g_assert_true(px_event_query(t1));
  double dt_s = -1, ta = -1, tb = -1;
  OK(px_event_elapsed(t0, t1, &dt_s, &E));
  OK(px_event_time(t0, &ta, &E));
  OK(px_event_time(t1, &tb, &E));
  g_assert_cmpfloat(dt_s, >=, 0);
  g_assert_cmpfloat(ta, >=, 0);
  g_assert_cmpfloat(ta, <=, px_backend_clock(cu) + 1e-3); /* on the backend clock, in the past */
  printf("# cuda streams: scale of %" G_GINT64_FORMAT " floats took %.3f ms by events\n", n, dt_s * 1e3);
  /* device-to-device copy on a stream */
  PxTensor *t2 = px_tensor_new(cu, "t2", PX_DTYPE_F32, PX_MEM_BUFFERS, 1, (gint64[]){n}, &E);
  g_assert_no_error(E);
  OK(px_tensor_copy_async(t2, t, copy, &E));
  OK(px_stream_synchronize(copy, &E));
  memset(b, 0, n * sizeof(float));
  OK(px_tensor_download(t2, b, &E));
  g_assert_cmpfloat(b[n - 1], ==, 2 * a[n - 1]);
  /* a failed host function fails its stream: later host functions are skipped */
  HostSeen hs2 = {b, n, -1, 0};
  OK(px_stream_launch_host(copy, fail_host, NULL, NULL, &E));
  OK(px_event_record(up, copy, &E));
  OK(px_stream_launch_host(copy, see_host, &hs2, NULL, &E));
  g_assert_false(px_stream_synchronize(copy, &E));
  g_assert_error(E, PX_BACKEND_ERROR, PX_BACKEND_ERROR_DEVICE);
  g_assert_nonnull(strstr(E->message, "deliberate failure"));
  g_clear_error(&E);
  g_assert_false(px_event_synchronize(up, &E)); /* the event carries the stream's error */
  g_clear_error(&E);
  g_assert_cmpint(hs2.runs, ==, 0);
  px_event_free(up);
  px_event_free(t0);
  px_event_free(t1);
  px_stream_free(copy);
  px_tensor_free(t);
  px_tensor_free(t2);
}

/* px_stream_reduce (the local communicator's device path, comm_local.c): the
 * cuda kernel against the host streams' reduction (px_comm_reduce_parts'
 * arithmetic), bit for bit: 5 parts of seeded values, every dtype, sum and
 * max, the result written over the third part (out may be any part). Both
 * sum in part order, halves in fp32 rounded once to nearest even, so no
 * tolerance. */
static gsize fill_part(void *p, gsize n, PxDType dt, GRand *g) {
  for (gsize i = 0; i < n; i++) {
    double v = g_rand_double_range(g, -100, 100);
    switch (dt) {
    case PX_DTYPE_F32: ((float *)p)[i] = (float)v; break;
    case PX_DTYPE_F64: ((double *)p)[i] = v; break;
    case PX_DTYPE_I32: ((gint32 *)p)[i] = (gint32)(v * 1000); break;
    case PX_DTYPE_BF16: ((guint16 *)p)[i] = px_f32_to_bf16((float)v); break;
    case PX_DTYPE_F16: ((guint16 *)p)[i] = px_f32_to_f16((float)(v * 300)); break; /* sums past 65504: ±Inf */
    }
  }
  return n * px_dtype_size(dt);
}

static void test_stream_reduce(void) {
  GError *E = NULL;
  enum { P = 5 };
  const gsize n = (1 << 16) + 3;
  const PxDType dts[] = {PX_DTYPE_F32, PX_DTYPE_F64, PX_DTYPE_I32, PX_DTYPE_BF16, PX_DTYPE_F16};
  g_autoptr(GRand) g = g_rand_new_with_seed(11);
  PxStream *st = px_backend_compute_stream(cu);
  for (gsize d = 0; d < G_N_ELEMENTS(dts); d++)
    for (int max = 0; max < 2; max++) {
      void *ref[P];          /* (n) elements of dts[d]: the parts in host memory, reduced by the cpu */
      PxTensor *dev[P];      /* the same on the device */
      const void *rp[P], *dp[P];
      gsize bytes = 0;
      for (int k = 0; k < P; k++) {
        ref[k] = g_malloc(n * px_dtype_size(dts[d]));
        bytes = fill_part(ref[k], n, dts[d], g);
        dev[k] = px_tensor_new(cu, "part", dts[d], PX_MEM_BUFFERS, 1, (gint64[]){(gint64)n}, &E);
        g_assert_no_error(E);
        OK(px_tensor_upload(dev[k], ref[k], &E));
        rp[k] = ref[k], dp[k] = dev[k]->data;
      }
      OK(px_stream_reduce(px_backend_compute_stream(cpu), ref[2], rp, P, n, dts[d], max, &E));
      OK(px_stream_reduce(st, dev[2]->data, dp, P, n, dts[d], max, &E));
      OK(px_stream_synchronize(st, &E));
      g_autofree void *got = g_malloc(bytes);
      OK(px_tensor_download(dev[2], got, &E));
      gsize differ = 0;
      for (gsize i = 0; i < bytes; i++) differ += ((guint8 *)got)[i] != ((guint8 *)ref[2])[i];
      printf("# cuda stream reduce %s %s of %d parts: %" G_GSIZE_FORMAT " byte(s) differ\n", px_dtype_name(dts[d]),
             max ? "max" : "sum", P, differ);
      g_assert_cmpuint(differ, ==, 0);
      for (int k = 0; k < P; k++) {
        g_free(ref[k]);
        px_tensor_free(dev[k]);
      }
    }
}

static void test_memory(void) {
  GError *E = NULL;
  PxMemStats m0, m1, m2;
  px_backend_mem_stats(cu, &m0);
  PxTensor *w = px_tensor_new(cu, "w", PX_DTYPE_BF16, PX_MEM_WEIGHTS, 2, (gint64[]){1000, 3}, &E);
  PxTensor *o = px_tensor_new_zeroed(cu, "m", PX_DTYPE_F32, PX_MEM_OPTIMIZER, 1, (gint64[]){12345}, &E);
  g_assert_no_error(E);
  px_backend_mem_stats(cu, &m1);
  g_assert_cmpint(m1.current[PX_MEM_WEIGHTS] - m0.current[PX_MEM_WEIGHTS], ==, 6000);
  g_assert_cmpint(m1.current[PX_MEM_OPTIMIZER] - m0.current[PX_MEM_OPTIMIZER], ==, 49380);
  g_assert_cmpint(m1.reserved, >=, m1.total_current);
  px_tensor_free(w);
  px_tensor_free(o);
  px_backend_mem_stats(cu, &m2);
  g_assert_cmpint(m2.current[PX_MEM_WEIGHTS], ==, m0.current[PX_MEM_WEIGHTS]);
  g_assert_cmpint(m2.peak[PX_MEM_OPTIMIZER], >=, 49380);
  g_assert_cmpint(m2.cached, >, 0); /* the blocks went back to the pool */
  g_assert_cmpuint(px_backend_trim(cu), >, 0);
}

/* Host buffers (px_backend_new_host): pinned memory of the device, counted
 * in its host-buffer category and not in its totals; an upload from one on
 * a side stream, ordered by an event before the compute stream's op, and a
 * download into another on compute, land bit for bit (x2 then /2 is exact). */
static void test_host_buffers(void) {
  GError *E = NULL;
  const gint64 n = (1 << 20) + 3; /* 4 MiB of f32 and an odd tail */
  PxMemStats m0, m1, m2;
  px_backend_mem_stats(cu, &m0);
  PxBackend *host = px_backend_new_host(cu, &E);
  g_assert_no_error(E);
  PxTensor *a = px_tensor_new(host, "a", PX_DTYPE_F32, PX_MEM_OPTIMIZER, 1, &n, &E);
  PxTensor *b = px_tensor_new_zeroed(host, "b", PX_DTYPE_F32, PX_MEM_GRADS, 1, &n, &E);
  g_assert_no_error(E);
  g_assert_true(px_backend_host_pinned(host));
#ifdef PX_HAVE_CUDA
  struct cudaPointerAttributes at;
  g_assert_cmpint(cudaPointerGetAttributes(&at, a->data), ==, cudaSuccess);
  g_assert_cmpint(at.type, ==, cudaMemoryTypeHost); /* page-locked, registered with CUDA */
#endif
  px_backend_mem_stats(cu, &m1);
  g_assert_cmpint(m1.host_current - m0.host_current, ==, 2 * n * 4);
  g_assert_cmpint(m1.total_current, ==, m0.total_current);
  g_assert_false(m1.host_pageable);
  float *ha = a->data;
  for (gint64 i = 0; i < n; i++) ha[i] = (float)(i % 4099) * 0.25f - 500.0f;
  PxTensor *d = px_tensor_new(cu, "d", PX_DTYPE_F32, PX_MEM_BUFFERS, 1, &n, &E);
  PxStream *copy = px_stream_new(cu, "h2d", &E), *comp = px_backend_compute_stream(cu);
  PxDevEvent *up = px_event_new(cu, &E), *down = px_event_new(cu, &E);
  g_assert_no_error(E);
  OK(px_tensor_upload_async(d, a->data, copy, &E));
  OK(px_event_record(up, copy, &E));
  OK(px_stream_wait_event(comp, up, &E));
  OK(px_op_scale(cu, d, 2.0, &E));
  OK(px_tensor_download_async(d, b->data, comp, &E));
  OK(px_event_record(down, comp, &E));
  OK(px_event_synchronize(down, &E));
  OK(px_op_scale(host, b, 0.5, &E)); /* on the host backend, in the pinned buffer */
  g_assert_cmpmem(b->data, b->bytes, a->data, a->bytes);
  px_event_free(up);
  px_event_free(down);
  px_stream_free(copy);
  px_tensor_free(d);
  px_tensor_free(a);
  px_tensor_free(b);
  px_backend_mem_stats(cu, &m2);
  g_assert_cmpint(m2.host_current, ==, m0.host_current);
  g_assert_cmpint(m2.host_peak, >=, 2 * n * 4);
  px_backend_free(host); /* before its device: cudaFreeHost of the cached blocks */
}

static void test_zeroed(void) {
  GError *E = NULL;
  PxTensor *o = px_tensor_new_zeroed(cu, "z", PX_DTYPE_F32, PX_MEM_BUFFERS, 1, (gint64[]){777}, &E);
  g_assert_no_error(E);
  float h[777];
  OK(px_tensor_download(o, h, &E));
  for (int i = 0; i < 777; i++) g_assert_cmpfloat(h[i], ==, 0);
  px_tensor_free(o);
}

#ifdef PX_HAVE_CUDA
static void test_errors(void) {
  GError *E = NULL;
  /* a token outside the vocabulary: reported at the next synchronisation */
  Twin dummy = twin("wte", PX_DTYPE_F32, SHAPE(10, 8), 1);
  gint32 toks[4] = {1, 2, 10, 3};
  PxTensor *tok = px_tensor_new(cu, "tok", PX_DTYPE_I32, PX_MEM_BUFFERS, 1, (gint64[]){4}, &E);
  PxTensor *out = px_tensor_new(cu, "out", PX_DTYPE_F32, PX_MEM_BUFFERS, 2, (gint64[]){4, 8}, &E);
  g_assert_no_error(E);
  OK(px_tensor_upload(tok, toks, &E));
  OK(px_op_embedding_fwd(cu, out, tok, dummy.g, NULL, 1, 4, &E));
  g_assert_false(px_backend_synchronize(cu, &E));
  g_assert_error(E, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE);
  g_assert_nonnull(strstr(E->message, "token id 10"));
  g_clear_error(&E);
  OK(px_backend_synchronize(cu, &E)); /* reported once */
  /* f64 is refused in one line */
  PxTensor *d = px_tensor_new(cu, "d", PX_DTYPE_F64, PX_MEM_BUFFERS, 1, (gint64[]){4}, &E);
  g_assert_no_error(E);
  g_assert_false(px_op_gelu_fwd(cu, d, d, &E));
  g_assert_error(E, PX_BACKEND_ERROR, PX_BACKEND_ERROR_UNSUPPORTED);
  g_assert_null(strchr(E->message, '\n'));
  g_clear_error(&E);
  /* half activations keep their statistics in f32: a bf16 mean is refused in one line */
  PxTensor *xh = px_tensor_new(cu, "x", PX_DTYPE_BF16, PX_MEM_BUFFERS, 2, (gint64[]){4, 8}, &E);
  PxTensor *wh = px_tensor_new(cu, "w", PX_DTYPE_BF16, PX_MEM_BUFFERS, 1, (gint64[]){8}, &E);
  PxTensor *mh = px_tensor_new(cu, "mean", PX_DTYPE_BF16, PX_MEM_BUFFERS, 1, (gint64[]){4}, &E);
  PxTensor *rf = px_tensor_new(cu, "rstd", PX_DTYPE_F32, PX_MEM_BUFFERS, 1, (gint64[]){4}, &E);
  g_assert_no_error(E);
  g_assert_false(cu->ops->layernorm_fwd(cu, xh, mh, rf, xh, wh, NULL, 1e-5, &E));
  g_assert_error(E, PX_BACKEND_ERROR, PX_BACKEND_ERROR_UNSUPPORTED);
  g_assert_nonnull(strstr(E->message, "mean"));
  g_assert_null(strchr(E->message, '\n'));
  g_clear_error(&E);
  px_tensor_free(xh);
  px_tensor_free(wh);
  px_tensor_free(mh);
  px_tensor_free(rf);
  px_tensor_free(d);
  px_tensor_free(tok);
  px_tensor_free(out);
  twin_free(dummy);
  /* the device index is taken modulo the device count */
  int n = 0;
  g_assert_cmpint(cudaGetDeviceCount(&n), ==, cudaSuccess);
  PxBackend *b7 = px_backend_new("cuda", 7, &E);
  g_assert_no_error(E);
  g_assert_cmpint(b7->device, ==, 7 % n);
  px_backend_free(b7);
}
#endif

/* px_op_adamw_multi on the cuda backend (one launch per dtype pair, chunks
 * of 65536 elements) against one px_op_adamw_dev per tensor there, bit for
 * bit: f32 with f32 and with bf16 / f16 gradients (backend.c promotes those
 * for the per-tensor path; the multi-tensor kernel reads them as they are),
 * bf16 parameters, tensors over a chunk, each its own weight decay, a device
 * scale, a skipped step. */
static void test_adamw_multi(void) {
  enum { K = 5 };
  const struct {
    PxDType p, g;
    gint64 n;
    double wd;
  } spec[K] = {{PX_DTYPE_F32, PX_DTYPE_F32, 1, 0.01}, {PX_DTYPE_F32, PX_DTYPE_BF16, 1000, 0},
               {PX_DTYPE_F32, PX_DTYPE_F32, 150001, 0.05}, {PX_DTYPE_F32, PX_DTYPE_F16, 65536, 0.1},
               {PX_DTYPE_BF16, PX_DTYPE_BF16, 70000, 0.1}};
  PxTensor *t[2][K][4];
  for (int k = 0; k < K; k++) {
    gint64 n = spec[k].n;
    g_autofree double *vals = g_new(double, 4 * n);
    for (gint64 i = 0; i < 4 * n; i++) vals[i] = g_rand_double_range(rng, -1, 1);
    for (gint64 i = 3 * n; i < 4 * n; i++) vals[i] = fabs(vals[i]) * 1e-3;
    for (int c = 0; c < 2; c++)
      for (int j = 0; j < 4; j++) {
        GError *E = NULL;
        t[c][k][j] = px_tensor_new(cu, "t", j == 1 ? spec[k].g : spec[k].p, PX_MEM_BUFFERS, 1, &n, &E);
        g_assert_no_error(E);
        OK(px_tensor_upload_f64(t[c][k][j], vals + j * n, &E));
      }
  }
  GError *E = NULL;
  gint64 one = 1;
  PxTensor *coef = px_tensor_new(cu, "coef", PX_DTYPE_F32, PX_MEM_BUFFERS, 1, &one, &E);
  PxTensor *flag = px_tensor_new(cu, "found_inf", PX_DTYPE_I32, PX_MEM_BUFFERS, 1, &one, &E);
  g_assert_no_error(E);
  const double c75 = 0.75;
  gint32 f0 = 0, f1 = 1;
  OK(px_tensor_upload_f64(coef, &c75, &E));
  PxAdamW opt = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 99, .t = 1, .grad_scale = 0.5};
  for (int step = 0; step < 3; step++) {
    OK(px_tensor_upload(flag, step == 2 ? &f1 : &f0, &E));
    PxAdamWItem items[K];
    for (int k = 0; k < K; k++) items[k] = (PxAdamWItem){t[0][k][0], t[0][k][1], t[0][k][2], t[0][k][3], spec[k].wd};
    OK(px_op_adamw_multi(cu, items, K, &opt, step ? coef : NULL, flag, &E));
    for (int k = 0; k < K; k++) {
      PxAdamW o = opt;
      o.weight_decay = spec[k].wd;
      OK(px_op_adamw_dev(cu, t[1][k][0], t[1][k][1], t[1][k][2], t[1][k][3], &o, step ? coef : NULL, flag, &E));
    }
    opt.t++;
  }
  int differ = 0;
  for (int k = 0; k < K; k++) {
    gint64 n = spec[k].n;
    g_autofree double *a = g_new(double, n), *b = g_new(double, n);
    for (int j = 0; j < 4; j++) {
      OK(px_tensor_download_f64(t[0][k][j], a, &E));
      OK(px_tensor_download_f64(t[1][k][j], b, &E));
      for (gint64 i = 0; i < n; i++) differ += a[i] != b[i];
    }
  }
  printf("# cuda adamw_multi vs adamw per tensor: %d element(s) differ\n", differ);
  g_assert_cmpint(differ, ==, 0);
  /* the sums of squares of the updated parameters, one launch per dtype,
   * against one px_op_sum_squares_acc per tensor (the blocks' sums add in
   * another order: 1e-12 relative) */
  PxTensor *sq[2];
  for (int c = 0; c < 2; c++) {
    sq[c] = px_tensor_new_zeroed(cu, "sumsq", PX_DTYPE_F64, PX_MEM_BUFFERS, 1, &one, &E);
    g_assert_no_error(E);
  }
  const PxTensor *ps[K];
  for (int k = 0; k < K; k++) ps[k] = t[0][k][0];
  OK(px_op_sum_squares_acc_multi(cu, sq[0], ps, K, &E));
  for (int k = 0; k < K; k++) OK(px_op_sum_squares_acc(cu, sq[1], ps[k], &E));
  double s0, s1;
  OK(px_tensor_download(sq[0], &s0, &E));
  OK(px_tensor_download(sq[1], &s1, &E));
  printf("# cuda sum_squares_multi %.17g, per tensor %.17g\n", s0, s1);
  g_assert_cmpfloat(fabs(s0 - s1), <=, 1e-12 * s1);
  for (int c = 0; c < 2; c++) px_tensor_free(sq[c]);
  for (int k = 0; k < K; k++)
    for (int c = 0; c < 2; c++)
      for (int j = 0; j < 4; j++) px_tensor_free(t[c][k][j]);
  px_tensor_free(coef);
  px_tensor_free(flag);
}

int main(int argc, char **argv) {
  GError *E = NULL;
  cu = px_backend_new("cuda", 0, &E);
  if (!cu) {
    /* built without the backend, or no device / driver: a visible skip */
#ifdef PX_HAVE_CUDA
    printf("no CUDA device: skipped\n");
#else
    printf("no CUDA device: skipped (built without the CUDA backend)\n");
#endif
    g_clear_error(&E);
    return 77;
  }
  g_test_init(&argc, &argv, NULL);
  /* a failed comparison fails its test and the run goes on, so that one run
   * on a GPU (scripts/gpu-check.sh counts the "not ok" lines) shows every op
   * that differs, not only the first */
  g_test_set_nonfatal_assertions();
  cpu = px_backend_new("cpu", 0, &E);
  g_assert_no_error(E);
  /* the warp-kernel attention, for /cuda/attention-warp (the variable is read when a backend is made) */
  g_autofree char *att_env = g_strdup(g_getenv("PX_CUDA_ATTN"));
  g_setenv("PX_CUDA_ATTN", "warp", TRUE);
  cu_warp = px_backend_new("cuda", 0, &E);
  g_assert_no_error(E);
  g_setenv("PX_CUDA_ATTN", "flash", TRUE);
  cu_flash = px_backend_new("cuda", 0, &E);
  g_assert_no_error(E);
  if (att_env) g_setenv("PX_CUDA_ATTN", att_env, TRUE);
  else g_unsetenv("PX_CUDA_ATTN");
  rng = g_rand_new_with_seed(20261130);
  static const struct {
    const char *name;
    GTestDataFunc fn;
  } ops[] = {
    {"linear", test_linear},       {"embedding", test_embedding}, {"embedding-round-once", test_embedding_round_once},
    {"norms", test_norms},
    {"elementwise", test_elementwise}, {"rope", test_rope},    {"attention", test_attention},
    {"attention-blocks", test_attn_blocks}, {"attention-warp", test_attention_warp},
    {"attention-blocks-warp", test_attn_blocks_warp}, {"attention-flash", test_attention_flash},
    {"attention-blocks-flash", test_attn_blocks_flash},
    {"cross-entropy", test_cross_entropy}, {"optimizer", test_optimizer},
    {"rows", test_rows},         {"router", test_router},
  };
  for (guint i = 0; i < G_N_ELEMENTS(ops); i++)
    for (guint k = 0; k < G_N_ELEMENTS(dtypes); k++) {
      g_autofree char *path = g_strdup_printf("/cuda/%s/%s", ops[i].name, px_dtype_name(dtypes[k]));
      g_test_add_data_func(path, GINT_TO_POINTER(dtypes[k]), ops[i].fn);
    }
  g_test_add_func("/cuda/cast", test_cast);
  g_test_add_func("/cuda/adamw-multi", test_adamw_multi);
  g_test_add_func("/cuda/streams", test_streams);
  g_test_add_func("/cuda/stream-reduce", test_stream_reduce);
  g_test_add_func("/cuda/memory", test_memory);
  g_test_add_func("/cuda/zeroed", test_zeroed);
  g_test_add_func("/cuda/host-buffers", test_host_buffers);
#ifdef PX_HAVE_CUDA
  g_test_add_func("/cuda/errors", test_errors);
#endif
  int rc = g_test_run();
  printf("# cuda vs cpu: %d op comparison(s) out of tolerance\n", failures);
  px_backend_free(cpu);
  px_backend_free(cu);
  px_backend_free(cu_warp);
  px_backend_free(cu_flash);
  g_rand_free(rng);
  return rc;
}
