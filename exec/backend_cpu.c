/* backend_cpu.c — the reference backend: host memory, CBLAS (OpenBLAS) for
 * matrix products, plain loops for the rest. Kernels are in
 * backend_cpu_kernels.inc, instantiated for float and double. */
#include "backend_impl.h"
#include <cblas.h>
#include <math.h>
#include <string.h>

#define PX_CAT_(a, b) a##b
#define PX_CAT(a, b) PX_CAT_(a, b)

#define REAL float
#define SUFFIX _f32
#define GEMM cblas_sgemm
#include "backend_cpu_kernels.inc"
#undef REAL
#undef SUFFIX
#undef GEMM

#define REAL double
#define SUFFIX _f64
#define GEMM cblas_dgemm
#include "backend_cpu_kernels.inc"
#undef REAL
#undef SUFFIX
#undef GEMM

/* Call the f32 or f64 instance of a kernel by the dtype; void * arguments
 * convert to the instance's pointer types. */
#define CALL(dt, fn, ...) ((dt) == PX_DTYPE_F32 ? fn##_f32(__VA_ARGS__) : fn##_f64(__VA_ARGS__))
#define D(t) ((t) ? (t)->data : NULL)

static gint64 cols(const PxTensor *t) { return t->shape[t->ndim - 1]; }
static gint64 rows(const PxTensor *t) { return t->numel / cols(t); }

static gboolean cpu_alloc(PxBackend *be, gsize bytes, void **out, GError **error) {
  (void)be;
  /* 64-byte aligned for vector loads; g_aligned_alloc0 aborts on failure, so
   * probe with malloc first to turn an impossible size into an error. */
  void *probe = g_try_malloc(bytes + 64);
  if (!probe) {
    g_set_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_ALLOC,
                "out of host memory allocating %" G_GSIZE_FORMAT " bytes", bytes);
    return FALSE;
  }
  g_free(probe);
  *out = g_aligned_alloc0(1, MAX(bytes, 1), 64);
  return TRUE;
}

static void cpu_dealloc(PxBackend *be, void *p) {
  (void)be;
  g_aligned_free(p);
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
  memset(p, 0, bytes);
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

PxBackend *px_backend_cpu_new(void) { return px_backend_alloc_base(&cpu_ops, 0, NULL); }
