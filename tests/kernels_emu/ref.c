/* ref.c — the cpu backend's kernels (exec/backend_cpu_kernels.inc) in double,
 * one thread, a plain triple-loop GEMM in place of cblas_dgemm: the reference
 * kernels_emu.cc checks exec/cuda/kernels.cu against, the same code
 * scripts/gpu-check.sh's cuda-vs-cpu comparisons run. Plain C (glib), built
 * as a static library by tests/CMakeLists.txt; ref.h declares its calls. */
#include "backend.h"
#include "ref.h"
#include <glib.h>
#include <math.h>
#include <string.h>

#define PX_CAT_(a, b) a##b
#define PX_CAT(a, b) PX_CAT_(a, b)
static int px_cpu_threads(double work) {
  (void)work;
  return 1;
}
static int gemm_slices(gint64 extent, int nt) {
  (void)extent;
  return nt;
}
static gint64 gemm_slice(int k, int slices, int nt, gint64 extent) {
  (void)slices;
  (void)nt;
  return k == 0 ? 0 : extent;
}
enum { CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112 };
/* C = alpha op(A) op(B) + beta C, row-major, in double */
static void ref_dgemm(int order, int ta, int tb, gint64 M, gint64 N, gint64 Kd, double alpha, const double *A,
                      gint64 lda, const double *B, gint64 ldb, double beta, double *C, gint64 ldc) {
  (void)order;
  for (gint64 i = 0; i < M; i++)
    for (gint64 j = 0; j < N; j++) {
      double s = 0;
      for (gint64 k = 0; k < Kd; k++)
        s += (ta == CblasTrans ? A[k * lda + i] : A[i * lda + k]) * (tb == CblasTrans ? B[j * ldb + k] : B[k * ldb + j]);
      C[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * C[i * ldc + j]);
    }
}

#define REAL double
#define SUFFIX _f64
#define GEMM ref_dgemm
#define TANH tanh
#define EXP exp
#define SIMD_SUM
#define SQRT sqrt
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunknown-pragmas"
#pragma GCC diagnostic ignored "-Wunused-variable" /* nt: one thread, no OpenMP here */
#include "backend_cpu_kernels.inc"

static PxAttnShape shape(int B, int T, int H, int KV, int hd, int split, int s0, int s1) {
  PxAttnShape s = {B, T, H, KV, hd, split, s0, s1};
  return s;
}

void ref_embedding_fwd(double *out, const int32_t *tok, const double *wte, const double *wpe, int64_t v0,
                       int64_t n_real, int B, int T, int64_t C) {
  embedding_fwd_f64(out, tok, wte, wpe, v0, n_real, B, T, C);
}
void ref_embedding_bwd(double *dwte, double *dwpe, const double *dout, const int32_t *tok, int64_t v0,
                       int64_t n_real, int B, int T, int64_t C) {
  embedding_bwd_f64(dwte, dwpe, dout, tok, v0, n_real, B, T, C);
}
void ref_linear_db(double *db, const double *dy, int64_t N, int64_t out) {
  linear_bwd_f64(NULL, NULL, db, dy, NULL, NULL, N, 0, out);
}
void ref_layernorm_fwd(double *out, double *mean, double *rstd, const double *x, const double *w, const double *b,
                       double eps, int64_t N, int64_t C) {
  layernorm_fwd_f64(out, mean, rstd, x, w, b, eps, N, C);
}
void ref_layernorm_bwd(double *dx, double *dw, double *db, const double *dout, const double *x, const double *w,
                       const double *mean, const double *rstd, int64_t N, int64_t C) {
  layernorm_bwd_f64(dx, dw, db, dout, x, w, mean, rstd, N, C);
}
void ref_rmsnorm_fwd(double *out, double *rstd, const double *x, const double *w, double eps, int64_t N, int64_t C) {
  rmsnorm_fwd_f64(out, rstd, x, w, eps, N, C);
}
void ref_rmsnorm_bwd(double *dx, double *dw, const double *dout, const double *x, const double *w, const double *rstd,
                     int64_t N, int64_t C) {
  rmsnorm_bwd_f64(dx, dw, dout, x, w, rstd, N, C);
}
void ref_gelu_fwd(double *out, const double *x, int64_t n) { gelu_fwd_f64(out, x, n); }
void ref_gelu_bwd(double *dx, const double *dout, const double *x, int64_t n) { gelu_bwd_f64(dx, dout, x, n); }
void ref_swiglu_fwd(double *out, const double *g, const double *u, int64_t n) { swiglu_fwd_f64(out, g, u, n); }
void ref_swiglu_bwd(double *dg, double *du, const double *dout, const double *g, const double *u, int64_t n) {
  swiglu_bwd_f64(dg, du, dout, g, u, n);
}
void ref_add(double *out, const double *a, const double *b, int64_t n) { residual_fwd_f64(out, a, b, n); }
void ref_rope(double *dst, const double *src, int B, int T, int H, int KV, int hd, int split, int s0, int s1,
              double theta, int dir, int accumulate) {
  PxAttnShape s = shape(B, T, H, KV, hd, split, s0, s1);
  rope_f64(dst, src, &s, theta, dir, accumulate);
}
void ref_attention_fwd(double *out, double *att, const double *qkv, int B, int T, int H, int KV, int hd) {
  PxAttnShape s = shape(B, T, H, KV, hd, 0, 0, 0);
  attention_fwd_f64(out, att, qkv, &s);
}
void ref_attention_bwd(double *dqkv, const double *dout, const double *qkv, const double *att, int B, int T, int H,
                       int KV, int hd) {
  PxAttnShape s = shape(B, T, H, KV, hd, 0, 0, 0);
  attention_bwd_f64(dqkv, dout, qkv, att, &s);
}
void ref_attn_block_fwd(double *out, double *lse, const double *q, const double *kv, int B, int Tq, int Tk, int H,
                        int KV, int hd, const int qp[3], const int kp[3]) {
  PxAttnShape qs = shape(B, Tq, H, KV, hd, qp[0], qp[1], qp[2]), ks = shape(B, Tk, H, KV, hd, kp[0], kp[1], kp[2]);
  attn_block_fwd_f64(out, lse, q, kv, &qs, &ks);
}
void ref_attn_block_bwd(double *dq, double *dkv, const double *dout, const double *q, const double *kv,
                        const double *out, const double *lse, int B, int Tq, int Tk, int H, int KV, int hd,
                        const int qp[3], const int kp[3]) {
  PxAttnShape qs = shape(B, Tq, H, KV, hd, qp[0], qp[1], qp[2]), ks = shape(B, Tk, H, KV, hd, kp[0], kp[1], kp[2]);
  attn_block_bwd_f64(dq, dkv, dout, q, kv, out, lse, &qs, &ks);
}
void ref_attn_merge(double *out, double *lse, const double *out_b, const double *lse_b, int B, int T, int H, int hd) {
  PxAttnShape s = shape(B, T, H, H, hd, 0, 0, 0);
  attn_merge_f64(out, lse, out_b, lse_b, &s);
}
void ref_ce_fwd(double *losses, const double *logits, const int32_t *tgt, int64_t N, int64_t V) {
  cross_entropy_fwd_f64(losses, logits, tgt, N, V);
}
void ref_ce_bwd(double *dlogits, const double *logits, const int32_t *tgt, double dloss, int64_t N, int64_t V) {
  cross_entropy_bwd_f64(dlogits, logits, tgt, dloss, N, V);
}
void ref_ce_vp_max(double *rowmax, const double *logits, int64_t N, int64_t V, int64_t n_real) {
  ce_vp_max_f64(rowmax, logits, N, V, n_real);
}
void ref_ce_vp_stats(double *stats, const double *logits, const int32_t *tgt, const double *gmax, int64_t v0,
                     int64_t N, int64_t V, int64_t n_real) {
  ce_vp_stats_f64(stats, logits, tgt, gmax, v0, N, V, n_real);
}
void ref_ce_vp_loss(double *losses, const double *gmax, const double *stats, int64_t N) {
  ce_vp_loss_f64(losses, gmax, stats, N);
}
void ref_ce_vp_bwd(double *dlogits, const double *logits, const int32_t *tgt, const double *gmax,
                   const double *stats, int64_t v0, int64_t n_real, double dloss, int64_t N, int64_t V) {
  ce_vp_bwd_f64(dlogits, logits, tgt, gmax, stats, v0, n_real, dloss, N, V);
}
int ref_all_finite(const double *x, int64_t n) { return all_finite_f64(x, n); }
void ref_adamw(double *p, const double *g, double *m, double *v, double lr, double b1, double b2, double eps,
               double wd, int t, double grad_scale, int64_t n) {
  PxAdamW o = {lr, b1, b2, eps, wd, t, grad_scale};
  adamw_f64(p, g, m, v, &o, n);
}
double ref_sum_squares(const double *x, int64_t n) { return sum_squares_f64(x, n); }
void ref_scale(double *x, double alpha, int64_t n) { scale_f64(x, alpha, n); }
void ref_rows_gather(double *dst, const double *src, const int32_t *idx, const double *wt, int64_t T, int k,
                     int64_t C) {
  rows_gather_f64(dst, src, idx, wt, T, k, C);
}
void ref_rows_dot(double *out, const double *a, const double *b, const int32_t *idx, int64_t T, int k, int64_t C) {
  rows_dot_f64(out, a, b, idx, T, k, C);
}
void ref_router_topk(double *probs, int32_t *topi, double *topv, double *psum, const double *logits, double *p64,
                     int64_t T, int64_t E, int k) {
  router_topk_f64(probs, topi, topv, psum, logits, p64, T, E, k);
}
void ref_router_bwd(double *dlogits, const double *probs, const int32_t *topi, const double *dgate,
                    const double *fcnt, double daux, int norm_topk, int64_t T, int64_t E, int k) {
  router_bwd_f64(dlogits, probs, topi, dgate, fcnt, daux, norm_topk != 0, T, E, k);
}
