/* bench_cpu.c — GEMM throughput of the cpu backend's linear op (forward
 * y = x W^T, and backward dx = dy W, dW = dy^T x) against raw cblas_sgemm
 * with OpenBLAS's own threads, on GPT-2 124M shapes (B*T = 256 rows). The
 * backend splits each product over its OpenMP threads into single-threaded
 * OpenBLAS calls; the raw call uses as many OpenBLAS threads as OpenBLAS
 * started with. Validates the backend's results against cblas (and the
 * forward against a naive dot product on sampled entries) before timing.
 * Output: a fixed-width table, header lines start with '#'.
 *   usage: bench_cpu [reps] */
#include <cblas.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "backend.h"

typedef struct {
  const char *what;
  int in, out;
} Shape;

static const Shape shapes[] = {
  {"attn.qkv", 768, 2304}, {"attn.proj", 768, 768}, {"mlp.fc", 768, 3072},
  {"mlp.proj", 3072, 768}, {"lm_head", 768, 50257},
};

static double now(void) { return g_get_monotonic_time() / 1e6; }

static double max_rel_diff(const float *a, const float *b, gint64 n) {
  double m = 0;
  for (gint64 i = 0; i < n; i++) m = MAX(m, fabs(a[i] - b[i]) / (fabs(b[i]) + 1));
  return m;
}

static void fill(GRand *rng, PxTensor *t) {
  float *f = t->data;
  for (gint64 i = 0; i < t->numel; i++) f[i] = (float)g_rand_double_range(rng, -1, 1);
}

/* raw OpenBLAS: forward (pass 0) or backward (pass 1, dx then dW, beta 1 as the backend adds) */
static void blas_pass(int pass, int M, int N, int K, const float *x, const float *w, const float *dy,
                      float *y, float *dx, float *dw) {
  if (pass == 0) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, x, K, w, K, 0, y, N);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1, dy, N, w, K, 1, dx, K);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1, dy, N, x, K, 1, dw, K);
  }
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 5;
  const int M = 256;
  if (reps < 1) {
    fprintf(stderr, "bench_cpu: reps must be >= 1\n");
    return 2;
  }
  int blas_threads = openblas_get_num_threads(); /* before the backend sets it to one */
  g_autoptr(PxBackend) be = px_backend_new("cpu", 0, NULL);
  g_autoptr(GRand) rng = g_rand_new_with_seed(42);
  printf("# cpu backend linear (fp32) vs cblas_sgemm on %d OpenBLAS threads, M = B*T = %d rows, best of %d\n",
         blas_threads, M, reps);
  printf("# fwd: y = x W^T; bwd: dx += dy W and dW += dy^T x; flop = 2*M*N*K per product\n");
  printf("# %-10s %4s %6s %6s %10s %9s %9s %9s %9s %8s\n", "layer", "pass", "K", "N", "GFLOP", "be_ms",
         "be_GF/s", "blas_ms", "blas_GF/s", "max_rel");
  for (gsize s = 0; s < G_N_ELEMENTS(shapes); s++) {
    int K = shapes[s].in, N = shapes[s].out;
    g_autoptr(GError) error = NULL;
    const gint64 sx[2] = {M, K}, sw[2] = {N, K}, sy[2] = {M, N};
    g_autoptr(PxTensor) x = px_tensor_new(be, "x", PX_DTYPE_F32, PX_MEM_ACTIVATIONS, 2, sx, &error);
    g_autoptr(PxTensor) w = px_tensor_new(be, "w", PX_DTYPE_F32, PX_MEM_WEIGHTS, 2, sw, &error);
    g_autoptr(PxTensor) y = px_tensor_new(be, "y", PX_DTYPE_F32, PX_MEM_ACTIVATIONS, 2, sy, &error);
    g_autoptr(PxTensor) dy = px_tensor_new(be, "dy", PX_DTYPE_F32, PX_MEM_ACTIVATIONS, 2, sy, &error);
    g_autoptr(PxTensor) dx = px_tensor_new_zeroed(be, "dx", PX_DTYPE_F32, PX_MEM_ACTIVATIONS, 2, sx, &error);
    g_autoptr(PxTensor) dw = px_tensor_new_zeroed(be, "dw", PX_DTYPE_F32, PX_MEM_GRADS, 2, sw, &error);
    if (!x || !w || !y || !dy || !dx || !dw) {
      fprintf(stderr, "bench_cpu: %s\n", error->message);
      return 1;
    }
    fill(rng, x);
    fill(rng, w);
    fill(rng, dy);
    const float *xf = x->data, *wf = w->data, *dyf = dy->data;
    g_autofree float *ry = g_new(float, (gsize)M * N);
    g_autofree float *rdx = g_new0(float, (gsize)M * K);
    g_autofree float *rdw = g_new0(float, (gsize)N * K);
    /* validate: backend vs cblas everywhere, forward also vs a double dot product on samples */
    if (!px_op_linear_fwd(be, y, x, w, NULL, &error) ||
        !px_op_linear_bwd(be, dx, dw, NULL, dy, x, w, &error)) {
      fprintf(stderr, "bench_cpu: %s\n", error->message);
      return 1;
    }
    blas_pass(0, M, N, K, xf, wf, dyf, ry, rdx, rdw);
    blas_pass(1, M, N, K, xf, wf, dyf, ry, rdx, rdw);
    const float *yf = y->data;
    double rel[2] = {max_rel_diff(yf, ry, (gint64)M * N),
                     MAX(max_rel_diff(dx->data, rdx, (gint64)M * K), max_rel_diff(dw->data, rdw, (gint64)N * K))};
    for (int k = 0; k < 64; k++) {
      int i = g_rand_int_range(rng, 0, M), j = g_rand_int_range(rng, 0, N);
      double d = 0;
      for (int c = 0; c < K; c++) d += (double)xf[(gint64)i * K + c] * wf[(gint64)j * K + c];
      rel[0] = MAX(rel[0], fabs(yf[(gint64)i * N + j] - d) / (fabs(d) + 1));
    }
    for (int pass = 0; pass < 2; pass++) {
      if (rel[pass] > 1e-4) {
        fprintf(stderr, "bench_cpu: %s: backend result differs (max rel %.2e), not timing\n",
                shapes[s].what, rel[pass]);
        return 1;
      }
      double best_be = 1e30, best_blas = 1e30;
      for (int r = 0; r < reps; r++) {
        double t0 = now();
        if (pass == 0)
          px_op_linear_fwd(be, y, x, w, NULL, NULL);
        else
          px_op_linear_bwd(be, dx, dw, NULL, dy, x, w, NULL);
        double t1 = now();
        openblas_set_num_threads(blas_threads);
        blas_pass(pass, M, N, K, xf, wf, dyf, ry, rdx, rdw);
        double t2 = now();
        openblas_set_num_threads(1);
        best_be = MIN(best_be, t1 - t0);
        best_blas = MIN(best_blas, t2 - t1);
      }
      double flop = 2.0 * M * N * K * (pass + 1);
      printf("  %-10s %4s %6d %6d %10.3f %9.3f %9.1f %9.3f %9.1f %8.1e\n", shapes[s].what,
             pass ? "bwd" : "fwd", K, N, flop / 1e9, best_be * 1e3, flop / best_be / 1e9,
             best_blas * 1e3, flop / best_blas / 1e9, rel[pass]);
    }
  }
  return 0;
}
