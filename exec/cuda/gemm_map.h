/* gemm_map.h — how the cuda backend's linear op (backend.h: row-major
 * activations, weights stored (out, in), y = x W^T + b, dx += dy W,
 * dw += dy^T x) and its tensor-core attention map onto cuBLAS's column-major
 * GEMM, as pure arithmetic: exec/cuda/backend_cuda.c passes these numbers to
 * cublasLtMatmul and cublasGemmBatchedEx, and
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

/* Attention on tensor cores (backend_cuda.c att_tc_blocks): per (sequence,
 * head) entry, one block of nq query rows against nk key rows; Q, K, V and
 * dQ, dK, dV rows in the qkv layout (row stride W), O / dO in (B*T, H*hd)
 * rows (stride Cq), the tiles S, P, dP, dS row-major nq x nk with stride
 * ldS, dK / dV with stride ldg (W, or the fp32 accumulator's 2*KV*hd); hd
 * the head dimension. The six products of cublasGemmBatchedEx: */
/* S (nq x nk) = Q K^T: column-major S^T = K Q^T, A = K read transposed, B = Q */
static inline PxGemmMap px_gemm_att_s(gint64 nq, gint64 nk, gint64 hd, gint64 W, gint64 ldS) {
  return (PxGemmMap){.ta = TRUE, .tb = FALSE, .m = nk, .n = nq, .k = hd, .lda = W, .ldb = W, .ldc = ldS};
}
/* O (nq x hd) = P V: O^T = V^T P^T, A = V, B = P */
static inline PxGemmMap px_gemm_att_o(gint64 nq, gint64 nk, gint64 hd, gint64 W, gint64 Cq, gint64 ldS) {
  return (PxGemmMap){.ta = FALSE, .tb = FALSE, .m = hd, .n = nq, .k = nk, .lda = W, .ldb = ldS, .ldc = Cq};
}
/* dP (nq x nk) = dO V^T: dP^T = V dO^T, A = V read transposed, B = dO */
static inline PxGemmMap px_gemm_att_dp(gint64 nq, gint64 nk, gint64 hd, gint64 W, gint64 Cq, gint64 ldS) {
  return (PxGemmMap){.ta = TRUE, .tb = FALSE, .m = nk, .n = nq, .k = hd, .lda = W, .ldb = Cq, .ldc = ldS};
}
/* dV (nk x hd) += P^T dO: dV^T += dO^T P, A = dO, B = P read transposed */
static inline PxGemmMap px_gemm_att_dv(gint64 nq, gint64 nk, gint64 hd, gint64 Cq, gint64 ldS, gint64 ldg) {
  return (PxGemmMap){.ta = FALSE, .tb = TRUE, .m = hd, .n = nk, .k = nq, .lda = Cq, .ldb = ldS, .ldc = ldg};
}
/* dK (nk x hd) += dS^T Q: dK^T += Q^T dS, A = Q, B = dS read transposed */
static inline PxGemmMap px_gemm_att_dk(gint64 nq, gint64 nk, gint64 hd, gint64 W, gint64 ldS, gint64 ldg) {
  return (PxGemmMap){.ta = FALSE, .tb = TRUE, .m = hd, .n = nk, .k = nq, .lda = W, .ldb = ldS, .ldc = ldg};
}
/* dQ (nq x hd) += dS K: dQ^T += K^T dS^T, A = K, B = dS */
static inline PxGemmMap px_gemm_att_dq(gint64 nq, gint64 nk, gint64 hd, gint64 W, gint64 ldS) {
  return (PxGemmMap){.ta = FALSE, .tb = FALSE, .m = hd, .n = nq, .k = nk, .lda = W, .ldb = ldS, .ldc = W};
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
