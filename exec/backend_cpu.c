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
 * Memory: freed blocks are kept by size and handed out again (zeroed), so a
 * training step reuses last step's buffers instead of mapping fresh pages
 * from the kernel each time; the cache never holds more than the backend's
 * peak live bytes, and is off under AddressSanitizer so that it still sees
 * use-after-free. The byte counters (backend.c) count tensors, not the cache. */
#include "backend_impl.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define PX_CPU_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PX_CPU_CACHE 0
#endif
#endif
#ifndef PX_CPU_CACHE
#define PX_CPU_CACHE 1
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

/* Each block carries its size in a 64-byte header, so the data stay 64-byte
 * aligned for vector loads. */
#define HDR 64

typedef struct {
  GMutex lock;
  GHashTable *cache; /* block size (as a pointer) -> GSList of free blocks (headers) */
  gsize cached;      /* bytes held in the cache */
} CpuImpl;

static void block_release(gpointer list) { g_slist_free_full(list, free); }

/* memset split over the threads: zeroing a gradient buffer is a step's largest memset. */
static void zero_bytes(void *p, gsize bytes) {
  gsize chunk = 1 << 20, n = (bytes + chunk - 1) / chunk;
  int nt = px_cpu_threads((double)bytes / (1 << 18));
#pragma omp parallel for num_threads(nt) schedule(dynamic)
  for (gsize k = 0; k < n; k++) memset((char *)p + k * chunk, 0, MIN(chunk, bytes - k * chunk));
}

static gboolean cpu_alloc(PxBackend *be, gsize bytes, void **out, GError **error) {
  CpuImpl *impl = be->impl;
  gsize size = bytes <= G_MAXSIZE - 2 * HDR ? (MAX(bytes, 1) + HDR - 1) / HDR * HDR + HDR : 0;
  void *block = NULL;
  if (PX_CPU_CACHE && size) {
    g_mutex_lock(&impl->lock);
    GSList *list = g_hash_table_lookup(impl->cache, GSIZE_TO_POINTER(size));
    if (list) {
      block = list->data;
      g_hash_table_steal(impl->cache, GSIZE_TO_POINTER(size));
      GSList *rest = g_slist_delete_link(list, list);
      if (rest) g_hash_table_insert(impl->cache, GSIZE_TO_POINTER(size), rest);
      impl->cached -= size;
    }
    g_mutex_unlock(&impl->lock);
  }
  if (!block && (!size || posix_memalign(&block, HDR, size))) {
    g_set_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_ALLOC,
                "out of host memory allocating %" G_GSIZE_FORMAT " bytes", bytes);
    return FALSE;
  }
  *(gsize *)block = size;
  *out = (char *)block + HDR;
  zero_bytes(*out, size - HDR);
  return TRUE;
}

static void cpu_dealloc(PxBackend *be, void *p) {
  if (!p) return;
  CpuImpl *impl = be->impl;
  void *block = (char *)p - HDR;
  gsize size = *(gsize *)block;
  if (PX_CPU_CACHE) {
    g_mutex_lock(&be->lock);
    gsize peak = (gsize)be->mem.total_peak;
    g_mutex_unlock(&be->lock);
    g_mutex_lock(&impl->lock);
    /* keep at most the peak of what was live: enough for a step's pattern */
    gboolean keep = impl->cached + size <= peak;
    if (keep) {
      GSList *list = g_hash_table_lookup(impl->cache, GSIZE_TO_POINTER(size));
      g_hash_table_steal(impl->cache, GSIZE_TO_POINTER(size));
      g_hash_table_insert(impl->cache, GSIZE_TO_POINTER(size), g_slist_prepend(list, block));
      impl->cached += size;
    }
    g_mutex_unlock(&impl->lock);
    if (keep) return;
  }
  free(block);
}

static void cpu_free(PxBackend *be) {
  CpuImpl *impl = be->impl;
  g_hash_table_destroy(impl->cache);
  g_mutex_clear(&impl->lock);
  g_free(impl);
  g_atomic_int_add(&cpu_live, -1);
}

static gboolean cpu_copy(PxBackend *be, void *dst, const void *src, gsize bytes, GError **error) {
  (void)be;
  (void)error;
  memcpy(dst, src, bytes);
  return TRUE;
}

static gboolean cpu_zero(PxBackend *be, void *p, gsize bytes, GError **error) {
  (void)be;
  (void)error;
  zero_bytes(p, bytes);
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

static gboolean cpu_embedding_fwd(PxBackend *be, PxTensor *out, const PxTensor *tokens,
                                  const PxTensor *wte, const PxTensor *wpe, int B, int T,
                                  GError **error) {
  (void)be;
  if (!ids_in_range("embedding_fwd", tokens, rows(wte), error)) return FALSE;
  CALL(wte->dtype, embedding_fwd, out->data, tokens->data, wte->data, D(wpe), B, T, cols(wte));
  return TRUE;
}

static gboolean cpu_embedding_bwd(PxBackend *be, PxTensor *dwte, PxTensor *dwpe,
                                  const PxTensor *dout, const PxTensor *tokens, int B, int T,
                                  GError **error) {
  (void)be;
  if (!ids_in_range("embedding_bwd", tokens, rows(dwte), error)) return FALSE;
  CALL(dwte->dtype, embedding_bwd, dwte->data, D(dwpe), dout->data, tokens->data, B, T, cols(dwte));
  return TRUE;
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

static gboolean cpu_cross_entropy_fwd(PxBackend *be, PxTensor *losses, double *mean_loss,
                                      const PxTensor *logits, const PxTensor *targets,
                                      GError **error) {
  (void)be;
  if (!ids_in_range("cross_entropy_fwd", targets, cols(logits), error)) return FALSE;
  double m = CALL(logits->dtype, cross_entropy_fwd, losses->data, logits->data, targets->data,
                  rows(logits), cols(logits));
  if (mean_loss) *mean_loss = m;
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

static gboolean cpu_adamw(PxBackend *be, PxTensor *param, const PxTensor *grad, PxTensor *m,
                          PxTensor *v, const PxAdamW *opt, GError **error) {
  (void)be;
  (void)error;
  CALL(param->dtype, adamw, param->data, grad->data, m->data, v->data, opt, param->numel);
  return TRUE;
}

static gboolean cpu_sum_squares(PxBackend *be, const PxTensor *t, double *out, GError **error) {
  (void)be;
  (void)error;
  *out = CALL(t->dtype, sum_squares, t->data, t->numel);
  return TRUE;
}

static gboolean cpu_scale(PxBackend *be, PxTensor *t, double alpha, GError **error) {
  (void)be;
  (void)error;
  CALL(t->dtype, scale, t->data, alpha, t->numel);
  return TRUE;
}

static const PxBackendOps cpu_ops = {
  .name = "cpu",
  .free = cpu_free,
  .alloc = cpu_alloc,
  .dealloc = cpu_dealloc,
  .upload = cpu_copy,
  .download = cpu_copy,
  .zero = cpu_zero,
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
  .residual_fwd = cpu_residual_fwd,
  .residual_bwd = cpu_residual_bwd,
  .cross_entropy_fwd = cpu_cross_entropy_fwd,
  .cross_entropy_bwd = cpu_cross_entropy_bwd,
  .adamw = cpu_adamw,
  .sum_squares = cpu_sum_squares,
  .scale = cpu_scale,
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

PxBackend *px_backend_cpu_new(void) {
  static GOnce once = G_ONCE_INIT;
  g_once(&once, cpu_init_once, NULL);
  CpuImpl *impl = g_new0(CpuImpl, 1);
  g_mutex_init(&impl->lock);
  impl->cache = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, block_release);
  g_atomic_int_add(&cpu_live, 1);
  return px_backend_alloc_base(&cpu_ops, 0, impl);
}
