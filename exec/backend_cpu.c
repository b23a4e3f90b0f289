/* backend_cpu.c — the reference backend: host memory, CBLAS (OpenBLAS) for
 * matrix products, loops for the rest, threaded with OpenMP. Kernels are in
 * backend_cpu_kernels.inc, instantiated for float and double.
 *
 * Threads: the cpu backends alive in a process share its cores (ranks of the
 * `local` communicator are threads of one process, each with a backend):
 * each op runs on max(1, cores / live backends) OpenMP threads, cores being
 * omp_get_max_threads() (OMP_NUM_THREADS, else the cores this process may
 * use). OpenBLAS is set to one thread: the kernels split every product into
 * slices themselves, so one pool of threads (OpenMP's) serves the GEMMs and
 * the element-wise loops, and no OpenBLAS worker spins on a core the next
 * loop needs.
 *
 * Memory: raw blocks from posix_memalign, served through backend.c's caching
 * pool (so a training step reuses last step's blocks instead of mapping fresh
 * pages from the kernel); the pool is off under AddressSanitizer so that it
 * still sees use-after-free. */
#include "backend_impl.h"
#include "half.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define PX_CPU_POOL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PX_CPU_POOL 0
#endif
#endif
#ifndef PX_CPU_POOL
#define PX_CPU_POOL 1
#endif

/* ---- threads ---- */

static int cpu_cores;      /* set once by the first backend */
static gint cpu_live;      /* cpu backends alive */

/* Threads for a loop of `work` units (each worth a few microseconds, as the
 * callers scale their sizes): the backend's share of the cores, fewer when
 * there is too little work to be worth waking a thread for. */
static int px_cpu_threads(double work) {
  if (work < 2) return 1;
  int share = cpu_cores / MAX(1, g_atomic_int_get(&cpu_live));
  return (int)MAX(1, MIN(share, work));
}

/* How a product's extent (columns or rows of C) is cut for nt threads: into
 * nt equal slices when it is narrow, else into 4 rounds of nt slices, the
 * rounds covering 1/2, 1/4, 1/8 and 1/8 of it, so that the last slices to be
 * taken are small (a slice is at least 1/16 of the extent over nt, and
 * slices start on multiples of 16). gemm_slice(k) is where slice k starts;
 * gemm_slice(slices) is the extent. */
static int gemm_slices(gint64 extent, int nt) {
  return nt > 1 && extent / nt >= 512 ? 4 * nt : nt;
}

static gint64 gemm_slice(int k, int slices, int nt, gint64 extent) {
  static const int eighths[5] = {0, 4, 6, 7, 8}; /* where the rounds start, in eighths */
  int rounds = slices / nt, r = k / nt, j = k % nt;
  gint64 units = (extent + 15) / 16;
  gint64 num = rounds == 1 ? (gint64)8 * k
                           : (gint64)eighths[r] * nt + (r < rounds ? (eighths[r + 1] - eighths[r]) * j : 0);
  return MIN(units * num / ((gint64)8 * nt) * 16, extent);
}

#define PX_CAT_(a, b) a##b
#define PX_CAT(a, b) PX_CAT_(a, b)

/* exp for the f32 kernels, in double: x = k ln2 + r with |r| <= ln2/2, e^r by
 * its Taylor series to r^11 (relative error below 1e-14, far below float
 * resolution), 2^k put into the exponent bits. Branch-free, so the loops that
 * call it vectorise, where libm's exp is a call per element. x is clamped to
 * [-708, 709] (results stay normal doubles; a float rounds them to 0 or inf
 * anyway) and NaN stays NaN. The f64 kernels keep libm's exp. */
static inline double exp_f32k(double x) {
  x = x < -708.0 ? -708.0 : x;
  x = x > 709.0 ? 709.0 : x;
  const double shift = 0x1.8p52; /* adding it rounds to an integer, kept in the low bits */
  double kd = x * 1.4426950408889634 + shift, k = kd - shift;
  double r = x - k * 6.93147180369123816490e-01 - k * 1.90821492927058770002e-10; /* ln2 hi + lo */
  double p = 1.0 / 39916800;
  p = p * r + 1.0 / 3628800;
  p = p * r + 1.0 / 362880;
  p = p * r + 1.0 / 40320;
  p = p * r + 1.0 / 5040;
  p = p * r + 1.0 / 720;
  p = p * r + 1.0 / 120;
  p = p * r + 1.0 / 24;
  p = p * r + 1.0 / 6;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  guint64 bits; /* unsigned: a NaN's bits shift out without overflow */
  memcpy(&bits, &kd, sizeof bits);
  bits = (bits - 0x4338000000000000u + 1023) << 52; /* 2^k */
  double scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/* GELU's tanh in f32: through exp, a third of libm tanh's time even before
 * vectorising, and exact far below float resolution; f64 keeps libm's tanh. */
static inline double tanh_by_exp(double u) { return 1 - 2 / (exp_f32k(2 * u) + 1); }

#define REAL float
#define SUFFIX _f32
#define GEMM cblas_sgemm
#define TANH tanh_by_exp
#define EXP exp_f32k
#define SIMD_SUM _Pragma("omp simd reduction(+ : sum)")
#define SQRT sqrtf
#include "backend_cpu_kernels.inc"
#undef REAL
#undef SUFFIX
#undef GEMM
#undef TANH
#undef EXP
#undef SIMD_SUM
#undef SQRT

#define REAL double
#define SUFFIX _f64
#define GEMM cblas_dgemm
#define TANH tanh
#define EXP exp
#define SIMD_SUM /* the f64 sums keep their order */
#define SQRT sqrt
#include "backend_cpu_kernels.inc"
#undef REAL
#undef SUFFIX
#undef GEMM
#undef TANH
#undef EXP
#undef SIMD_SUM
#undef SQRT

/* Call the f32 or f64 instance of a kernel by the dtype; void * arguments
 * convert to the instance's pointer types. */
#define CALL(dt, fn, ...) ((dt) == PX_DTYPE_F32 ? fn##_f32(__VA_ARGS__) : fn##_f64(__VA_ARGS__))
#define D(t) ((t) ? (t)->data : NULL)

static gint64 cols(const PxTensor *t) { return t->shape[t->ndim - 1]; }
static gint64 rows(const PxTensor *t) { return t->numel / cols(t); }

/* ---- memory ---- */

#define ALIGN 64 /* vector loads */

/* memset split over the threads: zeroing a gradient buffer is a step's largest memset. */
static gboolean cpu_memset(PxBackend *be, void *p, int value, gsize bytes, GError **error) {
  (void)be;
  (void)error;
  gsize chunk = 1 << 20, n = (bytes + chunk - 1) / chunk;
  int nt = px_cpu_threads((double)bytes / (1 << 18));
#pragma omp parallel for num_threads(nt) schedule(dynamic)
  for (gsize k = 0; k < n; k++) memset((char *)p + k * chunk, value, MIN(chunk, bytes - k * chunk));
  return TRUE;
}

static gboolean cpu_raw_alloc(PxBackend *be, gsize bytes, void **out, GError **error) {
  (void)be;
  gsize size = (bytes + ALIGN - 1) / ALIGN * ALIGN;
  if (size < bytes || posix_memalign(out, ALIGN, size)) {
    g_set_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_ALLOC,
                "out of host memory allocating %" G_GSIZE_FORMAT " bytes", bytes);
    return FALSE;
  }
  return TRUE;
}

static void cpu_raw_free(PxBackend *be, void *p) {
  (void)be;
  free(p);
}

static void cpu_free(PxBackend *be) {
  (void)be;
  g_atomic_int_add(&cpu_live, -1);
}

static gboolean cpu_copy(PxBackend *be, void *dst, const void *src, gsize bytes, GError **error) {
  (void)be;
  (void)error;
  memcpy(dst, src, bytes);
  return TRUE;
}

static gboolean cpu_linear_fwd(PxBackend *be, PxTensor *y, const PxTensor *x, const PxTensor *w,
                               const PxTensor *b, GError **error) {
  (void)be;
  (void)error;
  CALL(w->dtype, linear_fwd, y->data, x->data, w->data, D(b), rows(x), cols(w), rows(w));
  return TRUE;
}

static gboolean cpu_linear_bwd(PxBackend *be, PxTensor *dx, PxTensor *dw, PxTensor *db,
                               const PxTensor *dy, const PxTensor *x, const PxTensor *w,
                               GError **error) {
  (void)be;
  (void)error;
  CALL(w->dtype, linear_bwd, D(dx), D(dw), D(db), dy->data, x->data, w->data, rows(x), cols(w),
       rows(w));
  return TRUE;
}

/* Every id in [0, limit), else an error naming the first bad one. */
static gboolean ids_in_range(const char *op, const PxTensor *ids, gint64 limit, GError **error) {
  const gint32 *id = ids->data;
  for (gint64 i = 0; i < ids->numel; i++)
    if (id[i] < 0 || id[i] >= limit) {
      g_set_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE,
                  "%s: %s[%" G_GINT64_FORMAT "] = %d outside [0, %" G_GINT64_FORMAT ")", op,
                  ids->name, i, id[i], limit);
      return FALSE;
    }
  return TRUE;
}

static gboolean cpu_embedding_vp_fwd(PxBackend *be, PxTensor *out, const PxTensor *tokens,
                                     const PxTensor *wte, const PxTensor *wpe, gint64 v0, gint64 n_real,
                                     int B, int T, GError **error) {
  (void)be;
  (void)error;
  CALL(wte->dtype, embedding_fwd, out->data, tokens->data, wte->data, D(wpe), v0, n_real, B, T, cols(wte));
  return TRUE;
}

static gboolean cpu_embedding_vp_bwd(PxBackend *be, PxTensor *dwte, PxTensor *dwpe,
                                     const PxTensor *dout, const PxTensor *tokens, gint64 v0,
                                     gint64 n_real, int B, int T, GError **error) {
  (void)be;
  (void)error;
  CALL(dout->dtype, embedding_bwd, D(dwte), D(dwpe), dout->data, tokens->data, v0, n_real, B, T,
       cols(dout));
  return TRUE;
}

/* The whole vocabulary on this rank: every token must be in it. */
static gboolean cpu_embedding_fwd(PxBackend *be, PxTensor *out, const PxTensor *tokens,
                                  const PxTensor *wte, const PxTensor *wpe, int B, int T,
                                  GError **error) {
  return ids_in_range("embedding_fwd", tokens, rows(wte), error) &&
         cpu_embedding_vp_fwd(be, out, tokens, wte, wpe, 0, rows(wte), B, T, error);
}

static gboolean cpu_embedding_bwd(PxBackend *be, PxTensor *dwte, PxTensor *dwpe,
                                  const PxTensor *dout, const PxTensor *tokens, int B, int T,
                                  GError **error) {
  return ids_in_range("embedding_bwd", tokens, rows(dwte), error) &&
         cpu_embedding_vp_bwd(be, dwte, dwpe, dout, tokens, 0, rows(dwte), B, T, error);
}

static gboolean cpu_layernorm_fwd(PxBackend *be, PxTensor *out, PxTensor *mean, PxTensor *rstd,
                                  const PxTensor *x, const PxTensor *w, const PxTensor *b,
                                  double eps, GError **error) {
  (void)be;
  (void)error;
  CALL(x->dtype, layernorm_fwd, out->data, mean->data, rstd->data, x->data, w->data, D(b), eps,
       rows(x), cols(x));
  return TRUE;
}

static gboolean cpu_layernorm_bwd(PxBackend *be, PxTensor *dx, PxTensor *dw, PxTensor *db,
                                  const PxTensor *dout, const PxTensor *x, const PxTensor *w,
                                  const PxTensor *mean, const PxTensor *rstd, GError **error) {
  (void)be;
  (void)error;
  CALL(x->dtype, layernorm_bwd, D(dx), D(dw), D(db), dout->data, x->data, w->data, mean->data,
       rstd->data, rows(x), cols(x));
  return TRUE;
}

static gboolean cpu_rmsnorm_fwd(PxBackend *be, PxTensor *out, PxTensor *rstd, const PxTensor *x,
                                const PxTensor *w, double eps, GError **error) {
  (void)be;
  (void)error;
  CALL(x->dtype, rmsnorm_fwd, out->data, rstd->data, x->data, w->data, eps, rows(x), cols(x));
  return TRUE;
}

static gboolean cpu_rmsnorm_bwd(PxBackend *be, PxTensor *dx, PxTensor *dw, const PxTensor *dout,
                                const PxTensor *x, const PxTensor *w, const PxTensor *rstd,
                                GError **error) {
  (void)be;
  (void)error;
  CALL(x->dtype, rmsnorm_bwd, D(dx), D(dw), dout->data, x->data, w->data, rstd->data, rows(x),
       cols(x));
  return TRUE;
}

static gboolean cpu_gelu_fwd(PxBackend *be, PxTensor *out, const PxTensor *x, GError **error) {
  (void)be;
  (void)error;
  CALL(x->dtype, gelu_fwd, out->data, x->data, x->numel);
  return TRUE;
}

static gboolean cpu_gelu_bwd(PxBackend *be, PxTensor *dx, const PxTensor *dout, const PxTensor *x,
                             GError **error) {
  (void)be;
  (void)error;
  CALL(x->dtype, gelu_bwd, dx->data, dout->data, x->data, x->numel);
  return TRUE;
}

static gboolean cpu_swiglu_fwd(PxBackend *be, PxTensor *out, const PxTensor *gate,
                               const PxTensor *up, GError **error) {
  (void)be;
  (void)error;
  CALL(gate->dtype, swiglu_fwd, out->data, gate->data, up->data, gate->numel);
  return TRUE;
}

static gboolean cpu_swiglu_bwd(PxBackend *be, PxTensor *dgate, PxTensor *dup, const PxTensor *dout,
                               const PxTensor *gate, const PxTensor *up, GError **error) {
  (void)be;
  (void)error;
  CALL(gate->dtype, swiglu_bwd, D(dgate), D(dup), dout->data, gate->data, up->data, gate->numel);
  return TRUE;
}

static gboolean cpu_rope_fwd(PxBackend *be, PxTensor *out, const PxTensor *in,
                             const PxAttnShape *s, double theta, GError **error) {
  (void)be;
  (void)error;
  CALL(in->dtype, rope, out->data, in->data, s, theta, +1, FALSE);
  return TRUE;
}

static gboolean cpu_rope_bwd(PxBackend *be, PxTensor *din, const PxTensor *dout,
                             const PxAttnShape *s, double theta, GError **error) {
  (void)be;
  (void)error;
  CALL(dout->dtype, rope, din->data, dout->data, s, theta, -1, TRUE);
  return TRUE;
}

static gboolean cpu_attention_fwd(PxBackend *be, PxTensor *out, PxTensor *att, const PxTensor *qkv,
                                  const PxAttnShape *s, GError **error) {
  (void)be;
  (void)error;
  CALL(qkv->dtype, attention_fwd, out->data, att->data, qkv->data, s);
  return TRUE;
}

static gboolean cpu_attn_block_fwd(PxBackend *be, PxTensor *out, PxTensor *lse, const PxTensor *q,
                                   const PxTensor *kv, const PxAttnShape *qs, const PxAttnShape *ks, GError **error) {
  (void)be;
  (void)error;
  CALL(q->dtype, attn_block_fwd, out->data, lse->data, q->data, kv->data, qs, ks);
  return TRUE;
}

/* out and out_b arrive of one dtype: without half kernels (half_acts) a half
 * out_b comes promoted to f32 (backend.c), beside the f32 accumulator or the
 * f32 copy of a half out. */
static gboolean cpu_attn_merge(PxBackend *be, PxTensor *out, PxTensor *lse, const PxTensor *out_b,
                               const PxTensor *lse_b, const PxAttnShape *s, GError **error) {
  (void)be;
  (void)error;
  g_assert(out->dtype == out_b->dtype);
  CALL(out->dtype, attn_merge, out->data, lse->data, out_b->data, lse_b->data, s);
  return TRUE;
}

static gboolean cpu_attn_block_bwd(PxBackend *be, PxTensor *dq, PxTensor *dkv, const PxTensor *dout,
                                   const PxTensor *q, const PxTensor *kv, const PxTensor *out, const PxTensor *lse,
                                   const PxAttnShape *qs, const PxAttnShape *ks, GError **error) {
  (void)be;
  (void)error;
  CALL(q->dtype, attn_block_bwd, dq->data, dkv->data, dout->data, q->data, kv->data, out->data, lse->data, qs, ks);
  return TRUE;
}

static gboolean cpu_attention_bwd(PxBackend *be, PxTensor *dqkv, const PxTensor *dout,
                                  const PxTensor *qkv, const PxTensor *att, const PxAttnShape *s,
                                  GError **error) {
  (void)be;
  (void)error;
  CALL(qkv->dtype, attention_bwd, dqkv->data, dout->data, qkv->data, att->data, s);
  return TRUE;
}

static gboolean cpu_residual_fwd(PxBackend *be, PxTensor *out, const PxTensor *a, const PxTensor *b,
                                 GError **error) {
  (void)be;
  (void)error;
  CALL(a->dtype, residual_fwd, out->data, a->data, b->data, a->numel);
  return TRUE;
}

static gboolean cpu_residual_bwd(PxBackend *be, PxTensor *da, PxTensor *db, const PxTensor *dout,
                                 GError **error) {
  (void)be;
  (void)error;
  if (da) CALL(dout->dtype, accumulate, da->data, dout->data, dout->numel);
  if (db) CALL(dout->dtype, accumulate, db->data, dout->data, dout->numel);
  return TRUE;
}

/* acc[0] += x, in the accumulator's dtype. */
static void scalar_add(PxTensor *acc, double x) {
  if (acc->dtype == PX_DTYPE_F64) *(double *)acc->data += x;
  else *(float *)acc->data = (float)(*(float *)acc->data + x);
}

static gboolean cpu_cross_entropy_fwd(PxBackend *be, PxTensor *losses, PxTensor *loss_acc,
                                      const PxTensor *logits, const PxTensor *targets,
                                      GError **error) {
  (void)be;
  if (!ids_in_range("cross_entropy_fwd", targets, cols(logits), error)) return FALSE;
  double m = CALL(logits->dtype, cross_entropy_fwd, losses->data, logits->data, targets->data,
                  rows(logits), cols(logits));
  if (loss_acc) scalar_add(loss_acc, m);
  return TRUE;
}

static gboolean cpu_cross_entropy_bwd(PxBackend *be, PxTensor *dlogits, const PxTensor *logits,
                                      const PxTensor *targets, double dloss, GError **error) {
  (void)be;
  if (!ids_in_range("cross_entropy_bwd", targets, cols(logits), error)) return FALSE;
  CALL(logits->dtype, cross_entropy_bwd, dlogits->data, logits->data, targets->data, dloss,
       rows(logits), cols(logits));
  return TRUE;
}

/* The value of a one-element f32, f64 or i32 tensor. */
static double scalar_get(const PxTensor *t) {
  switch (t->dtype) {
  case PX_DTYPE_F32: return *(const float *)t->data;
  case PX_DTYPE_F64: return *(const double *)t->data;
  case PX_DTYPE_I32: return *(const gint32 *)t->data;
  case PX_DTYPE_BF16: return px_bf16_to_f32(*(const guint16 *)t->data);
  case PX_DTYPE_F16: return px_f16_to_f32(*(const guint16 *)t->data);
  }
  return 0;
}

static gboolean cpu_adamw(PxBackend *be, PxTensor *param, const PxTensor *grad, PxTensor *m,
                          PxTensor *v, const PxAdamW *opt, const PxTensor *scale_t,
                          const PxTensor *skip_if, GError **error) {
  (void)be;
  (void)error;
  if (skip_if && scalar_get(skip_if) != 0) return TRUE;
  PxAdamW o = *opt;
  if (scale_t) o.grad_scale *= scalar_get(scale_t);
  CALL(param->dtype, adamw, param->data, grad->data, m->data, v->data, &o, param->numel);
  return TRUE;
}

static gboolean cpu_clip_coef(PxBackend *be, PxTensor *coef, const PxTensor *sumsq, double max_norm,
                              GError **error) {
  (void)be;
  (void)error;
  double c = max_norm > 0 ? MIN(1.0, max_norm / (sqrt(scalar_get(sumsq)) + 1e-6)) : 1.0;
  if (coef->dtype == PX_DTYPE_F64) *(double *)coef->data = c;
  else *(float *)coef->data = (float)c;
  return TRUE;
}

static gboolean cpu_ce_vp_max(PxBackend *be, PxTensor *rowmax, const PxTensor *logits, gint64 n_real,
                              GError **error) {
  (void)be;
  (void)error;
  CALL(logits->dtype, ce_vp_max, rowmax->data, logits->data, rows(logits), cols(logits), n_real);
  return TRUE;
}

static gboolean cpu_ce_vp_stats(PxBackend *be, PxTensor *stats, const PxTensor *logits,
                                const PxTensor *targets, const PxTensor *gmax, gint64 v0, gint64 n_real,
                                GError **error) {
  (void)be;
  (void)error;
  CALL(logits->dtype, ce_vp_stats, stats->data, logits->data, targets->data, gmax->data, v0,
       rows(logits), cols(logits), n_real);
  return TRUE;
}

static gboolean cpu_ce_vp_loss(PxBackend *be, PxTensor *losses, PxTensor *loss_acc, const PxTensor *gmax,
                               const PxTensor *stats, GError **error) {
  (void)be;
  (void)error;
  double m = CALL(gmax->dtype, ce_vp_loss, losses->data, gmax->data, stats->data, gmax->numel);
  if (loss_acc) scalar_add(loss_acc, m);
  return TRUE;
}

static gboolean cpu_ce_vp_bwd(PxBackend *be, PxTensor *dlogits, const PxTensor *logits,
                              const PxTensor *targets, const PxTensor *gmax, const PxTensor *stats,
                              gint64 v0, gint64 n_real, double dloss, GError **error) {
  (void)be;
  (void)error;
  CALL(logits->dtype, ce_vp_bwd, dlogits->data, logits->data, targets->data, gmax->data, stats->data,
       v0, n_real, dloss, rows(logits), cols(logits));
  return TRUE;
}

static gboolean cpu_sum_squares_acc(PxBackend *be, PxTensor *acc, const PxTensor *t, GError **error) {
  (void)be;
  (void)error;
  scalar_add(acc, CALL(t->dtype, sum_squares, t->data, t->numel));
  return TRUE;
}

static gboolean cpu_check_finite(PxBackend *be, PxTensor *flag, const PxTensor *t, GError **error) {
  (void)be;
  (void)error;
  if (CALL(t->dtype, all_finite, t->data, t->numel)) return TRUE;
  if (flag->dtype == PX_DTYPE_I32) *(gint32 *)flag->data = 1;
  else if (flag->dtype == PX_DTYPE_F32) *(float *)flag->data = 1;
  else *(double *)flag->data = 1;
  return TRUE;
}

/* every index in [-1, N) (-1: a dropped copy) */
static gboolean rows_in_range(const char *op, const PxTensor *idx, gint64 N, GError **error) {
  const gint32 *id = idx->data;
  for (gint64 i = 0; i < idx->numel; i++)
    if (id[i] < -1 || id[i] >= N) {
      g_set_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE,
                  "%s: %s[%" G_GINT64_FORMAT "] = %d outside [-1, %" G_GINT64_FORMAT ")", op, idx->name, i, id[i], N);
      return FALSE;
    }
  return TRUE;
}

static gboolean cpu_rows_gather(PxBackend *be, PxTensor *dst, const PxTensor *src, const PxTensor *idx,
                                const PxTensor *wt, int k, GError **error) {
  (void)be;
  if (!rows_in_range("rows_gather", idx, rows(src), error)) return FALSE;
  CALL(dst->dtype, rows_gather, dst->data, src->data, idx->data, D(wt), rows(dst), k, cols(dst));
  return TRUE;
}

static gboolean cpu_rows_dot(PxBackend *be, PxTensor *out, const PxTensor *a, const PxTensor *b, const PxTensor *idx,
                             int k, GError **error) {
  (void)be;
  if (!rows_in_range("rows_dot", idx, rows(b), error)) return FALSE;
  CALL(a->dtype, rows_dot, out->data, a->data, b->data, idx->data, rows(a), k, cols(a));
  return TRUE;
}

static gboolean cpu_router_topk(PxBackend *be, PxTensor *probs, PxTensor *topi, PxTensor *topv, PxTensor *psum,
                                const PxTensor *logits, int k, GError **error) {
  (void)be;
  (void)error;
  g_autofree double *p64 = g_new(double, MAX(logits->numel, 1));
  CALL(logits->dtype, router_topk, probs->data, topi->data, topv->data, psum->data, logits->data, p64, rows(logits),
       cols(logits), k);
  return TRUE;
}

static gboolean cpu_router_bwd(PxBackend *be, PxTensor *dlogits, const PxTensor *probs, const PxTensor *topi,
                               const PxTensor *dgate, const PxTensor *fcnt, double daux, gboolean norm_topk, int k,
                               GError **error) {
  (void)be;
  const gint32 *id = topi->data;
  for (gint64 i = 0; i < topi->numel; i++) /* every pick an expert (a dropped copy's too) */
    if (id[i] < 0 || id[i] >= cols(probs)) {
      g_set_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE,
                  "router_bwd: %s[%" G_GINT64_FORMAT "] = %d outside [0, %" G_GINT64_FORMAT ")", topi->name, i, id[i],
                  cols(probs));
      return FALSE;
    }
  CALL(probs->dtype, router_bwd, dlogits->data, probs->data, topi->data, dgate->data, D(fcnt), daux, norm_topk,
       rows(probs), cols(probs), k);
  return TRUE;
}

static gboolean cpu_scale(PxBackend *be, PxTensor *t, double alpha, GError **error) {
  (void)be;
  (void)error;
  CALL(t->dtype, scale, t->data, alpha, t->numel);
  return TRUE;
}

/* Element i of a float tensor's data, and a value stored as dtype (halves to nearest even). */
static inline float load_f32(const void *p, PxDType dt, gint64 i) {
  switch (dt) {
  case PX_DTYPE_F32: return ((const float *)p)[i];
  case PX_DTYPE_BF16: return px_bf16_to_f32(((const guint16 *)p)[i]);
  case PX_DTYPE_F16: return px_f16_to_f32(((const guint16 *)p)[i]);
  default: return (float)((const double *)p)[i];
  }
}

static inline void store_f32(void *p, PxDType dt, gint64 i, float x) {
  switch (dt) {
  case PX_DTYPE_F32: ((float *)p)[i] = x; break;
  case PX_DTYPE_BF16: ((guint16 *)p)[i] = px_f32_to_bf16(x); break;
  case PX_DTYPE_F16: ((guint16 *)p)[i] = px_f32_to_f16(x); break;
  default: ((double *)p)[i] = x; break;
  }
}

/* dst (=|+=) src: in f32, rounded once to dst's dtype; in f64 when either side is f64. */
static gboolean cpu_cast(PxBackend *be, PxTensor *dst, const PxTensor *src, gboolean accumulate,
                         GError **error) {
  (void)be;
  (void)error;
  gint64 n = dst->numel;
  PxDType dd = dst->dtype, sd = src->dtype;
  void *d = dst->data;
  const void *s = src->data;
  int nt = px_cpu_threads((double)n / 16384);
  if (dd == PX_DTYPE_F64 || sd == PX_DTYPE_F64) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (gint64 i = 0; i < n; i++) {
      double x = sd == PX_DTYPE_F64 ? ((const double *)s)[i] : load_f32(s, sd, i);
      if (accumulate) x += dd == PX_DTYPE_F64 ? ((double *)d)[i] : load_f32(d, dd, i);
      if (dd == PX_DTYPE_F64) ((double *)d)[i] = x;
      else store_f32(d, dd, i, (float)x);
    }
    return TRUE;
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (gint64 i = 0; i < n; i++) {
    float x = load_f32(s, sd, i);
    if (accumulate) x += load_f32(d, dd, i);
    store_f32(d, dd, i, x);
  }
  return TRUE;
}

static const PxBackendOps cpu_ops = {
  .name = "cpu",
  .free = cpu_free,
  .raw_alloc = cpu_raw_alloc,
  .raw_free = cpu_raw_free,
  .host_alloc = cpu_raw_alloc, /* host buffers: its own memory, ordinary aligned host memory */
  .host_free = cpu_raw_free,
  .upload = cpu_copy,
  .download = cpu_copy,
  .copy = cpu_copy,
  .memset = cpu_memset,
  .linear_fwd = cpu_linear_fwd,
  .linear_bwd = cpu_linear_bwd,
  .embedding_fwd = cpu_embedding_fwd,
  .embedding_bwd = cpu_embedding_bwd,
  .layernorm_fwd = cpu_layernorm_fwd,
  .layernorm_bwd = cpu_layernorm_bwd,
  .rmsnorm_fwd = cpu_rmsnorm_fwd,
  .rmsnorm_bwd = cpu_rmsnorm_bwd,
  .gelu_fwd = cpu_gelu_fwd,
  .gelu_bwd = cpu_gelu_bwd,
  .swiglu_fwd = cpu_swiglu_fwd,
  .swiglu_bwd = cpu_swiglu_bwd,
  .rope_fwd = cpu_rope_fwd,
  .rope_bwd = cpu_rope_bwd,
  .attention_fwd = cpu_attention_fwd,
  .attention_bwd = cpu_attention_bwd,
  .attn_block_fwd = cpu_attn_block_fwd,
  .attn_merge = cpu_attn_merge,
  .attn_block_bwd = cpu_attn_block_bwd,
  .residual_fwd = cpu_residual_fwd,
  .residual_bwd = cpu_residual_bwd,
  .cross_entropy_fwd = cpu_cross_entropy_fwd,
  .cross_entropy_bwd = cpu_cross_entropy_bwd,
  .adamw = cpu_adamw,
  .embedding_vp_fwd = cpu_embedding_vp_fwd,
  .embedding_vp_bwd = cpu_embedding_vp_bwd,
  .ce_vp_max = cpu_ce_vp_max,
  .ce_vp_stats = cpu_ce_vp_stats,
  .ce_vp_loss = cpu_ce_vp_loss,
  .ce_vp_bwd = cpu_ce_vp_bwd,
  .sum_squares_acc = cpu_sum_squares_acc,
  .check_finite = cpu_check_finite,
  .clip_coef = cpu_clip_coef,
  .scale = cpu_scale,
  .rows_gather = cpu_rows_gather,
  .rows_dot = cpu_rows_dot,
  .router_topk = cpu_router_topk,
  .router_bwd = cpu_router_bwd,
  .cast = cpu_cast,
  .half_params = FALSE, /* backend.c promotes half parameters through f32 copies */
};

static gpointer cpu_init_once(gpointer data) {
  (void)data;
#ifdef _OPENMP
  cpu_cores = MAX(1, omp_get_max_threads());
#else
  cpu_cores = 1;
#endif
  openblas_set_num_threads(1);
  return NULL;
}

/* The registry's constructor (backend_reg.c). device: ignored (one host). */
PxBackend *px_backend_cpu_create(int device, GError **error) {
  (void)device;
  (void)error;
  static GOnce once = G_ONCE_INIT;
  g_once(&once, cpu_init_once, NULL);
  g_atomic_int_add(&cpu_live, 1);
  PxBackend *be = px_backend_alloc_base(&cpu_ops, 0, NULL);
  be->pool_off = !PX_CPU_POOL;
  return be;
}
