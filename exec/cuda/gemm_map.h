/* gemm_map.h — how the cuda backend's linear op (backend.h: row-major
 * activations, weights stored (out, in), y = x W^T + b, dx += dy W,
 * dw += dy^T x) maps onto cuBLASLt's column-major GEMM, as pure arithmetic:
 * exec/cuda/backend_cuda.c passes these numbers to cublasLtMatmul, and
 * tests/test_gemm_map.c checks them on the host against the row-major
 * definitions, so the mapping is tested without a GPU.
 *
 * cuBLASLt computes D = alpha op(A) op(B) + beta C, column-major: op(A) is
 * m x k, op(B) k x n, C and D m x n (CUBLASLT_MATMUL_DESC_TRANSA / _TRANSB
 * say whether A, B are stored transposed); the layout of a stored matrix
 * (cublasLtMatrixLayoutCreate) is its rows, columns and leading dimension
 * (>= rows). A row-major (R, C) matrix is a column-major (C, R) one with
 * leading dimension C: its transpose. So y^T (out x N) = W x^T is the GEMM
 * m = out, n = N, k = in, A = w read transposed, B = x; and the BIAS
 * epilogue's vector (one value per row of D: m = out values) is b. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  gboolean ta, tb;        /* op(A) = A^T, op(B) = B^T */
  gint64 m, n, k;         /* D (m x n) = op(A) (m x k) op(B) (k x n) */
  gint64 lda, ldb, ldc;   /* leading dimensions of the stored A, B, C (= D) */
} PxGemmMap;

/* y (N, out) = x (N, in) W^T: A = w, B = x, C = y */
static inline PxGemmMap px_gemm_linear_fwd(gint64 N, gint64 in, gint64 out) {
  return (PxGemmMap){.ta = TRUE, .tb = FALSE, .m = out, .n = N, .k = in, .lda = in, .ldb = in, .ldc = out};
}

/* dx (N, in) += dy (N, out) W: A = w, B = dy, C = dx */
static inline PxGemmMap px_gemm_linear_dx(gint64 N, gint64 in, gint64 out) {
  return (PxGemmMap){.ta = FALSE, .tb = FALSE, .m = in, .n = N, .k = out, .lda = in, .ldb = out, .ldc = in};
}

/* dw (out, in) += dy^T x: A = x, B = dy read transposed, C = dw */
static inline PxGemmMap px_gemm_linear_dw(gint64 N, gint64 in, gint64 out) {
  return (PxGemmMap){.ta = FALSE, .tb = TRUE, .m = in, .n = out, .k = N, .lda = in, .ldb = out, .ldc = in};
}

/* The stored layouts (rows, columns) of A and B for cublasLtMatrixLayoutCreate:
 * A is m x k, or k x m when read transposed; B k x n, or n x k. */
static inline void px_gemm_layout_a(const PxGemmMap *g, gint64 *rows, gint64 *cols) {
  *rows = g->ta ? g->k : g->m;
  *cols = g->ta ? g->m : g->k;
}
static inline void px_gemm_layout_b(const PxGemmMap *g, gint64 *rows, gint64 *cols) {
  *rows = g->tb ? g->n : g->k;
  *cols = g->tb ? g->k : g->n;
}

G_END_DECLS
