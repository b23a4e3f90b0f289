/* bench_cpu.c — GEMM throughput of the cpu backend's linear op against raw
 * cblas_sgemm on GPT-2 124M shapes (B*T = 256 rows). Validates the backend's
 * result against cblas and a naive dot product on sampled entries before
 * timing. Output: a fixed-width table, header lines start with '#'.
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

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 5;
  const int M = 256;
  if (reps < 1) {
    fprintf(stderr, "bench_cpu: reps must be >= 1\n");
    return 2;
  }
  int blas_threads = openblas_get_num_threads(); /* before the backend sets it to one */
  g_autoptr(PxBackend) be = px_backend_cpu_new();
  g_autoptr(GRand) rng = g_rand_new_with_seed(42);
  printf("# cpu backend linear (y = x W^T, fp32) vs cblas_sgemm, M = B*T = %d rows, best of %d\n", M, reps);
  printf("# flop = 2*M*N*K; bytes = 4*(M*K + N*K + M*N); intensity = flop/bytes\n");
  printf("# %-10s %6s %6s %10s %9s %9s %9s %9s %9s %9s %8s\n", "layer", "K", "N", "GFLOP", "MB",
         "flop/B", "be_ms", "be_GF/s", "blas_ms", "blas_GF/s", "max_rel");
  for (gsize s = 0; s < G_N_ELEMENTS(shapes); s++) {
    int K = shapes[s].in, N = shapes[s].out;
    g_autoptr(GError) error = NULL;
    g_autoptr(PxTensor) x = px_tensor_new(be, "x", PX_DTYPE_F32, PX_MEM_ACTIVATIONS, 2, (gint64[]){M, K}, &error);
    g_autoptr(PxTensor) w = px_tensor_new(be, "w", PX_DTYPE_F32, PX_MEM_WEIGHTS, 2, (gint64[]){N, K}, &error);
    g_autoptr(PxTensor) y = px_tensor_new(be, "y", PX_DTYPE_F32, PX_MEM_ACTIVATIONS, 2, (gint64[]){M, N}, &error);
    if (!x || !w || !y) {
      fprintf(stderr, "bench_cpu: %s\n", error->message);
      return 1;
    }
    float *xf = x->data, *wf = w->data;
    for (gint64 i = 0; i < x->numel; i++) xf[i] = (float)g_rand_double_range(rng, -1, 1);
    for (gint64 i = 0; i < w->numel; i++) wf[i] = (float)g_rand_double_range(rng, -1, 1);
    float *ref = g_new(float, (gsize)M * N);
    /* validate: backend vs cblas everywhere, and vs a double dot product on samples */
    if (!px_op_linear_fwd(be, y, x, w, NULL, &error)) {
      fprintf(stderr, "bench_cpu: %s\n", error->message);
      return 1;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, xf, K, wf, K, 0, ref, N);
    const float *yf = y->data;
    double max_rel = 0;
    for (gint64 i = 0; i < (gint64)M * N; i++)
      max_rel = MAX(max_rel, fabs(yf[i] - ref[i]) / (fabs(ref[i]) + 1));
    for (int k = 0; k < 64; k++) {
      int i = g_rand_int_range(rng, 0, M), j = g_rand_int_range(rng, 0, N);
      double d = 0;
      for (int c = 0; c < K; c++) d += (double)xf[(gint64)i * K + c] * wf[(gint64)j * K + c];
      max_rel = MAX(max_rel, fabs(yf[(gint64)i * N + j] - d) / (fabs(d) + 1));
    }
    if (max_rel > 1e-4) {
      fprintf(stderr, "bench_cpu: %s: backend result differs (max rel %.2e), not timing\n",
              shapes[s].what, max_rel);
      return 1;
    }
    double best_be = 1e30, best_blas = 1e30;
    for (int r = 0; r < reps; r++) {
      double t0 = now();
      px_op_linear_fwd(be, y, x, w, NULL, NULL);
      double t1 = now();
      openblas_set_num_threads(blas_threads);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, xf, K, wf, K, 0, ref, N);
      double t2 = now();
      openblas_set_num_threads(1);
      best_be = MIN(best_be, t1 - t0);
      best_blas = MIN(best_blas, t2 - t1);
    }
    double flop = 2.0 * M * N * K, bytes = 4.0 * ((double)M * K + (double)N * K + (double)M * N);
    printf("  %-10s %6d %6d %10.3f %9.1f %9.1f %9.3f %9.1f %9.3f %9.1f %8.1e\n", shapes[s].what, K,
           N, flop / 1e9, bytes / 1e6, flop / bytes, best_be * 1e3, flop / best_be / 1e9,
           best_blas * 1e3, flop / best_blas / 1e9, max_rel);
    g_free(ref);
  }
  return 0;
}
