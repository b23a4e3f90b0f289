/* bench_attn.c — causal attention on the cuda backend: the tensor-core path
 * (exec/cuda/backend_cuda.c: batched cuBLAS GEMMs over blocks of 128 query
 * rows) against the warp-per-row kernels (a second backend made under
 * PX_CUDA_ATTN=warp) and the fused FlashAttention-2-style kernels (a third
 * made under PX_CUDA_ATTN=flash, exec/cuda/flash_attn.cu: bf16 / f16 only,
 * so in f32 that backend runs the tensor-core path and its column repeats
 * tc's), forward and backward, in bf16 (tensor cores) and in
 * f32 (what parallax-exec's runs compute attention in today: their
 * activations are f32; cuBLAS in plain fp32, no TF32), at the shapes and batches
 * of bench/gpu_bench.sh: GPT-2 124M (B 16, T 1024, 12 heads of 64) and the
 * 1.3B GPT of bench/gpt-1.3b.ini (B 8, T 1024, 16 heads of 128).
 *
 * FLOPs, FlashAttention-2's convention for causal attention (Dao 2023,
 * section 4.1): forward 4·B·H·T²·hd / 2 (Q K^T and P V over the lower
 * triangle), backward 2.5 × forward (five products, the scores recomputed).
 * TFLOP/s = FLOPs / time, 10^12 FLOP/s; time = mean of reps calls between two
 * events on the compute stream, after one warm-up call. The tensor-core path
 * also computes the masked upper half of each diagonal block, not counted.
 *
 * Validates first: the three paths on the same inputs, out and dqkv of tc
 * and of flash compared with warp's (max |x - warp| / max |warp|, bound
 * 5e-2 in bf16 as test_cuda_backend, 1e-4 in f32); a larger difference stops
 * the benchmark (exit 1). Figures
 * are printed, never asserted. Without a CUDA device: one line, exit 77.
 * The ops are called through the backend's table (backend_impl.h), as
 * test_cuda_backend does: backend.c's checks admit f32 / f64 activations only.
 *   usage: bench_attn [reps]   (default 5) */
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "backend.h"
#include "backend_impl.h" /* the ops table: bf16 activations reach the kernels directly */

typedef struct {
  const char *model;
  PxAttnShape s;
} Case;

static const Case cases[] = {
  {"gpt2-124m", {.B = 16, .T = 1024, .heads = 12, .kv_heads = 12, .head_dim = 64}},
  {"gpt-1.3b", {.B = 8, .T = 1024, .heads = 16, .kv_heads = 16, .head_dim = 128}},
};

typedef struct {
  PxBackend *be;
  PxTensor *qkv, *out, *att, *dout, *dqkv;
} Side;

static void side_free(Side *x) {
  px_tensor_free(x->qkv);
  px_tensor_free(x->out);
  px_tensor_free(x->att);
  px_tensor_free(x->dout);
  px_tensor_free(x->dqkv);
}

static gboolean side_new(Side *x, PxBackend *be, PxDType dt, const PxAttnShape *s, const double *qkv,
                         const double *dout, GError **error) {
  gint64 N = (gint64)s->B * s->T, W = (gint64)(s->heads + 2 * s->kv_heads) * s->head_dim;
  gint64 O = (gint64)s->heads * s->head_dim;
  *x = (Side){.be = be};
  return (x->qkv = px_tensor_new(be, "qkv", dt, PX_MEM_ACTIVATIONS, 2, (gint64[]){N, W}, error)) &&
         (x->out = px_tensor_new(be, "out", dt, PX_MEM_ACTIVATIONS, 2, (gint64[]){N, O}, error)) &&
         (x->att = px_tensor_new(be, "att", dt, PX_MEM_ACTIVATIONS, 4,
                                 (gint64[]){s->B, s->heads, s->T, s->T}, error)) &&
         (x->dout = px_tensor_new(be, "dout", dt, PX_MEM_BUFFERS, 2, (gint64[]){N, O}, error)) &&
         (x->dqkv = px_tensor_new_zeroed(be, "dqkv", dt, PX_MEM_GRADS, 2, (gint64[]){N, W}, error)) &&
         px_tensor_upload_f64(x->qkv, qkv, error) && px_tensor_upload_f64(x->dout, dout, error);
}

/* max |a - b| / max |b| of two tensors of one shape */
static double rel_diff(const PxTensor *a, const PxTensor *b, GError **error) {
  g_autofree double *x = g_new(double, a->numel);
  g_autofree double *y = g_new(double, b->numel);
  if (!px_tensor_download_f64(a, x, error) || !px_tensor_download_f64(b, y, error)) return INFINITY;
  double d = 0, m = 0;
  for (gint64 i = 0; i < a->numel; i++) {
    double e = fabs(x[i] - y[i]);
    d = isnan(e) ? INFINITY : MAX(d, e);
    m = MAX(m, fabs(y[i]));
  }
  return m > 0 ? d / m : d;
}

static gboolean run_op(Side *x, const PxAttnShape *s, gboolean bwd, GError **error) {
  return bwd ? x->be->ops->attention_bwd(x->be, x->dqkv, x->dout, x->qkv, x->att, s, error)
             : x->be->ops->attention_fwd(x->be, x->out, x->att, x->qkv, s, error);
}

/* seconds per call: reps calls between two events, after one warm-up */
static double time_op(Side *x, const PxAttnShape *s, gboolean bwd, int reps, GError **error) {
  PxStream *st = px_backend_compute_stream(x->be);
  PxDevEvent *e0 = px_event_new(x->be, error), *e1 = e0 ? px_event_new(x->be, error) : NULL;
  double t = -1;
  if (e1 && run_op(x, s, bwd, error) && px_event_record(e0, st, error)) {
    gboolean ok = TRUE;
    for (int i = 0; i < reps && ok; i++) ok = run_op(x, s, bwd, error);
    if (ok && px_event_record(e1, st, error) && px_event_synchronize(e1, error) &&
        px_event_elapsed(e0, e1, &t, error))
      t /= reps;
    else
      t = -1;
  }
  if (e1) px_event_free(e1);
  if (e0) px_event_free(e0);
  return t;
}

static void fill(double *h, gint64 n, guint64 seed, double amp) {
  guint64 z = seed;
  for (gint64 i = 0; i < n; i++) {
    z = z * 6364136223846793005ULL + 1442695040888963407ULL; /* Knuth's MMIX LCG */
    h[i] = amp * (2.0 * (double)(z >> 11) / 9007199254740992.0 - 1.0);
  }
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 5;
  if (reps < 1) {
    fprintf(stderr, "bench_attn: reps must be >= 1\n");
    return 2;
  }
  GError *err = NULL;
  g_autoptr(PxBackend) tc = px_backend_new("cuda", 0, &err);
  if (!tc) {
    printf("bench_attn: no CUDA device: skipped (%s)\n", err->message);
    g_clear_error(&err);
    return 77;
  }
  g_setenv("PX_CUDA_ATTN", "warp", TRUE); /* read when the backend is made */
  g_autoptr(PxBackend) warp = px_backend_new("cuda", 0, &err);
  g_setenv("PX_CUDA_ATTN", "flash", TRUE);
  g_autoptr(PxBackend) flash = warp ? px_backend_new("cuda", 0, &err) : NULL;
  g_unsetenv("PX_CUDA_ATTN");
  if (!warp || !flash) {
    fprintf(stderr, "bench_attn: %s\n", err->message);
    return 1;
  }
  printf("# causal attention, cuda backend: batched cuBLAS GEMMs (tc, tensor cores in bf16) vs warp-per-row kernels"
         " vs fused flash kernels (PX_CUDA_ATTN=flash; f32: the tc path)\n");
  printf("# FLOPs: forward 2·B·H·T²·hd (causal), backward 2.5 × forward; mean of %d calls\n", reps);
  printf("# %-10s %-5s %-22s %-5s %9s %9s %9s %10s %10s %10s %8s %8s\n", "model", "dtype", "shape", "pass", "tc ms",
         "warp ms", "flash ms", "tc TF/s", "warp TF/s", "flash TF/s", "tc/warp", "fl/tc");
  int rc = 0;
  static const PxDType dts[] = {PX_DTYPE_BF16, PX_DTYPE_F32};
  for (guint q = 0; q < G_N_ELEMENTS(dts) * G_N_ELEMENTS(cases) && rc == 0; q++) {
    const guint k = q % G_N_ELEMENTS(cases);
    const PxDType dt = dts[q / G_N_ELEMENTS(cases)];
    const double bound = dt == PX_DTYPE_F32 ? 1e-4 : 5e-2;
    const PxAttnShape *s = &cases[k].s;
    gint64 N = (gint64)s->B * s->T, W = (gint64)(s->heads + 2 * s->kv_heads) * s->head_dim;
    gint64 O = (gint64)s->heads * s->head_dim;
    g_autofree double *hq = g_new(double, N * W);
    g_autofree double *hd = g_new(double, N * O);
    fill(hq, N * W, 1 + k, 1.5);
    fill(hd, N * O, 100 + k, 1.0);
    Side a, b, f;
    if (!side_new(&a, tc, dt, s, hq, hd, &err) || !side_new(&b, warp, dt, s, hq, hd, &err) ||
        !side_new(&f, flash, dt, s, hq, hd, &err)) {
      fprintf(stderr, "bench_attn: %s: %s\n", cases[k].model, err->message);
      return 1;
    }
    /* validate: one forward and one backward each, dqkv from zero */
    double dout_d = INFINITY, dqkv_d = INFINITY, fout_d = INFINITY, fdqkv_d = INFINITY;
    if (run_op(&a, s, FALSE, &err) && run_op(&b, s, FALSE, &err) && run_op(&f, s, FALSE, &err) &&
        run_op(&a, s, TRUE, &err) && run_op(&b, s, TRUE, &err) && run_op(&f, s, TRUE, &err)) {
      dout_d = rel_diff(a.out, b.out, &err);
      dqkv_d = rel_diff(a.dqkv, b.dqkv, &err);
      fout_d = rel_diff(f.out, b.out, &err);
      fdqkv_d = rel_diff(f.dqkv, b.dqkv, &err);
    }
    if (err) {
      fprintf(stderr, "bench_attn: %s: %s\n", cases[k].model, err->message);
      return 1;
    }
    printf("# check %s %s: out max |tc - warp| / max |warp| %.2e, dqkv %.2e (bound %.0e)\n", cases[k].model,
           px_dtype_name(dt), dout_d, dqkv_d, bound);
    printf("# check %s %s: out max |flash - warp| / max |warp| %.2e, dqkv %.2e (bound %.0e)\n", cases[k].model,
           px_dtype_name(dt), fout_d, fdqkv_d, bound);
    if (!(dout_d <= bound && dqkv_d <= bound && fout_d <= bound && fdqkv_d <= bound)) {
      fprintf(stderr, "bench_attn: %s %s: the two paths differ beyond %.0e\n", cases[k].model, px_dtype_name(dt),
              bound);
      rc = 1;
    }
    double fwd_flops = 2.0 * s->B * s->heads * (double)s->T * s->T * s->head_dim;
    for (int bwd = 0; bwd < 2 && rc == 0; bwd++) {
      double t_tc = time_op(&a, s, bwd, reps, &err), t_w = err ? -1 : time_op(&b, s, bwd, reps, &err);
      double t_f = err ? -1 : time_op(&f, s, bwd, reps, &err);
      if (err) {
        fprintf(stderr, "bench_attn: %s: %s\n", cases[k].model, err->message);
        rc = 1;
        break;
      }
      double flops = bwd ? 2.5 * fwd_flops : fwd_flops;
      g_autofree char *shape = g_strdup_printf("B%d T%d H%d hd%d", s->B, s->T, s->heads, s->head_dim);
      printf("  %-10s %-5s %-22s %-5s %9.3f %9.3f %9.3f %10.1f %10.2f %10.1f %7.1fx %7.2fx\n", cases[k].model,
             px_dtype_name(dt), shape, bwd ? "bwd" : "fwd", t_tc * 1e3, t_w * 1e3, t_f * 1e3, flops / t_tc / 1e12,
             flops / t_w / 1e12, flops / t_f / 1e12, t_w / t_tc, t_tc / t_f);
    }
    side_free(&a);
    side_free(&b);
    side_free(&f);
  }
  return rc;
}
