/* test_gemm_map.c — the cuda backend's linear op as cuBLASLt GEMMs and its
 * tensor-core attention's batched GEMMs (exec/cuda/gemm_map.h), checked on
 * the host: a column-major GEMM with
 * cuBLAS's documented semantics (D = op(A) op(B) + beta C, element (r, c) of
 * a stored matrix at r + c * ld, op = transpose when TRANSA / TRANSB say so;
 * the BIAS epilogue adds bias[r] to row r of D, the vector "must match
 * matrix D rows") runs the numbers the backend passes, on the row-major
 * buffers it passes, and must give y = x W^T + b, dx += dy W, dw += dy^T x:
 * a hand-computed case, then random shapes against the cpu backend's linear
 * op in f64; the six attention products of one entry against their
 * row-major definitions, the columns of other heads left untouched. The
 * leading dimensions are checked against the stored layouts
 * (cuBLASLt: ld >= rows for a column-major layout). */
#include <glib.h>
#include <string.h>
#include "backend.h"
#include "cuda/gemm_map.h"

/* D = op(A) op(B) + beta D (+ bias[r] on row r), column-major, in double */
static void colmajor_gemm(const PxGemmMap *g, const double *A, const double *B, double *D, double beta,
                          const double *bias) {
  gint64 ar, ac, br, bc;
  px_gemm_layout_a(g, &ar, &ac);
  px_gemm_layout_b(g, &br, &bc);
  g_assert_cmpint(g->lda, >=, ar);
  g_assert_cmpint(g->ldb, >=, br);
  g_assert_cmpint(g->ldc, >=, g->m);
  /* the stored layouts hold op(A) m x k and op(B) k x n */
  g_assert_cmpint(g->ta ? ac : ar, ==, g->m);
  g_assert_cmpint(g->ta ? ar : ac, ==, g->k);
  g_assert_cmpint(g->tb ? bc : br, ==, g->k);
  g_assert_cmpint(g->tb ? br : bc, ==, g->n);
  for (gint64 i = 0; i < g->m; i++)
    for (gint64 j = 0; j < g->n; j++) {
      double s = 0;
      for (gint64 p = 0; p < g->k; p++) {
        double a = g->ta ? A[p + i * g->lda] : A[i + p * g->lda];
        double b = g->tb ? B[j + p * g->ldb] : B[p + j * g->ldb];
        s += a * b;
      }
      double *d = &D[i + j * g->ldc];
      *d = s + (beta != 0 ? beta * *d : 0) + (bias ? bias[i] : 0);
    }
}

/* N 2, in 3, out 2, every value by hand */
static void test_hand(void) {
  const double x[] = {1, 2, 3, 4, 5, 6};  /* (2, 3) */
  const double w[] = {1, 0, -1, 2, 1, 0}; /* (2, 3): rows are the outputs */
  const double b[] = {10, 20};
  double y[4];
  PxGemmMap f = px_gemm_linear_fwd(2, 3, 2);
  colmajor_gemm(&f, w, x, y, 0, b);
  /* x W^T = [[1 - 3, 2 + 2], [4 - 6, 8 + 5]] = [[-2, 4], [-2, 13]], + b */
  const double y_want[] = {8, 24, 8, 33};
  for (int i = 0; i < 4; i++) g_assert_cmpfloat(y[i], ==, y_want[i]);
  /* dx = 1 + dy W, dy = [[1, 1], [0, 2]]: dy W = [[3, 1, -1], [4, 2, 0]] */
  const double dy[] = {1, 1, 0, 2};
  double dx[6] = {1, 1, 1, 1, 1, 1};
  PxGemmMap d = px_gemm_linear_dx(2, 3, 2);
  colmajor_gemm(&d, w, dy, dx, 1, NULL);
  const double dx_want[] = {4, 2, 0, 5, 3, 1};
  for (int i = 0; i < 6; i++) g_assert_cmpfloat(dx[i], ==, dx_want[i]);
  /* dw = 0 + dy^T x = [[1, 0], [1, 2]] [[1, 2, 3], [4, 5, 6]] = [[1, 2, 3], [9, 12, 15]] */
  double dw[6] = {0};
  PxGemmMap g = px_gemm_linear_dw(2, 3, 2);
  colmajor_gemm(&g, x, dy, dw, 1, NULL);
  const double dw_want[] = {1, 2, 3, 9, 12, 15};
  for (int i = 0; i < 6; i++) g_assert_cmpfloat(dw[i], ==, dw_want[i]);
}

static PxTensor *t64(PxBackend *be, const char *name, gint64 r, gint64 c, const double *v) {
  GError *e = NULL;
  PxTensor *t = c ? px_tensor_new(be, name, PX_DTYPE_F64, PX_MEM_BUFFERS, 2, (gint64[]){r, c}, &e)
                  : px_tensor_new(be, name, PX_DTYPE_F64, PX_MEM_BUFFERS, 1, (gint64[]){r}, &e);
  g_assert_no_error(e);
  g_assert_true(px_tensor_upload(t, v, &e));
  return t;
}

static void fill(GRand *rng, double *v, gint64 n) {
  for (gint64 i = 0; i < n; i++) v[i] = g_rand_double_range(rng, -1, 1);
}

/* random shapes (N, in, out all different, in and out odd) against the cpu backend */
static void test_against_cpu(void) {
  const gint64 shapes[][3] = {{5, 7, 3}, {1, 4, 9}, {8, 1, 2}, {3, 6, 6}};
  g_autoptr(GRand) rng = g_rand_new_with_seed(7);
  GError *e = NULL;
  g_autoptr(PxBackend) cpu = px_backend_new("cpu", 0, &e);
  g_assert_no_error(e);
  for (guint s = 0; s < G_N_ELEMENTS(shapes); s++) {
    const gint64 N = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
    g_autofree double *x = g_new(double, N * in), *w = g_new(double, out * in), *b = g_new(double, out);
    g_autofree double *dy = g_new(double, N * out), *dx0 = g_new(double, N * in), *dw0 = g_new(double, out * in);
    fill(rng, x, N * in), fill(rng, w, out * in), fill(rng, b, out), fill(rng, dy, N * out);
    fill(rng, dx0, N * in), fill(rng, dw0, out * in);
    /* the mapping on the host */
    g_autofree double *y = g_new(double, N * out), *dx = g_memdup2(dx0, sizeof(double) * N * in),
                      *dw = g_memdup2(dw0, sizeof(double) * out * in);
    PxGemmMap f = px_gemm_linear_fwd(N, in, out), gx = px_gemm_linear_dx(N, in, out), gw = px_gemm_linear_dw(N, in, out);
    colmajor_gemm(&f, w, x, y, 0, b);
    colmajor_gemm(&gx, w, dy, dx, 1, NULL);
    colmajor_gemm(&gw, x, dy, dw, 1, NULL);
    /* the cpu backend */
    PxTensor *tx = t64(cpu, "x", N, in, x), *tw = t64(cpu, "w", out, in, w), *tb = t64(cpu, "b", out, 0, b);
    PxTensor *tdy = t64(cpu, "dy", N, out, dy), *tdx = t64(cpu, "dx", N, in, dx0), *tdw = t64(cpu, "dw", out, in, dw0);
    PxTensor *ty = t64(cpu, "y", N, out, y);
    g_assert_true(px_op_linear_fwd(cpu, ty, tx, tw, tb, &e));
    g_assert_true(px_op_linear_bwd(cpu, tdx, tdw, NULL, tdy, tx, tw, &e));
    g_assert_no_error(e);
    g_autofree double *ry = g_new(double, N * out), *rdx = g_new(double, N * in), *rdw = g_new(double, out * in);
    g_assert_true(px_tensor_download(ty, ry, &e) && px_tensor_download(tdx, rdx, &e) &&
                  px_tensor_download(tdw, rdw, &e));
    for (gint64 i = 0; i < N * out; i++) g_assert_cmpfloat_with_epsilon(y[i], ry[i], 1e-12);
    for (gint64 i = 0; i < N * in; i++) g_assert_cmpfloat_with_epsilon(dx[i], rdx[i], 1e-12);
    for (gint64 i = 0; i < out * in; i++) g_assert_cmpfloat_with_epsilon(dw[i], rdw[i], 1e-12);
    PxTensor *ts[] = {tx, tw, tb, tdy, tdx, tdw, ty};
    for (guint i = 0; i < G_N_ELEMENTS(ts); i++) px_tensor_free(ts[i]);
  }
}

/* Attention on tensor cores: one entry's six products, the operands placed
 * as att_tc_blocks places them (rows of W, Cq, ldS, ldg elements; only the
 * first hd / nk columns are the entry's, the rest another head's, which must
 * stay as it was), against the row-major definitions. */
typedef struct {
  gint64 rows, ld;
  double *v;
} Mat; /* row-major, row stride ld */

static Mat mat(GRand *rng, gint64 rows, gint64 ld) {
  Mat m = {rows, ld, g_new(double, rows * ld)};
  fill(rng, m.v, rows * ld);
  return m;
}
#define AT(M, r, c) ((M).v[(r) * (M).ld + (c)])

/* D (rows x cols, of stride ld) against want (rows x cols, dense); the
 * columns from cols to ld untouched (pad holds their values before) */
static void expect(Mat D, const double *want, gint64 cols, const Mat pad) {
  for (gint64 r = 0; r < D.rows; r++)
    for (gint64 c = 0; c < D.ld; c++)
      if (c < cols) g_assert_cmpfloat_with_epsilon(AT(D, r, c), want[r * cols + c], 1e-12);
      else g_assert_cmpfloat(AT(D, r, c), ==, AT(pad, r, c));
}

static void test_attention(void) {
  /* nq 3 query rows against nk 5 keys, hd 4; W (qkv rows) 24, Cq (out rows) 8, ldS 8, ldg 12 */
  const gint64 nq = 3, nk = 5, hd = 4, W = 24, Cq = 8, ldS = 8, ldg = 12;
  g_autoptr(GRand) rng = g_rand_new_with_seed(11);
  Mat Q = mat(rng, nq, W), K = mat(rng, nk, W), V = mat(rng, nk, W), O = mat(rng, nq, Cq), P = mat(rng, nq, ldS);
  Mat dS = mat(rng, nq, ldS), S = mat(rng, nq, ldS), dV = mat(rng, nk, ldg), dK = mat(rng, nk, ldg);
  Mat dQ = mat(rng, nq, W);
  Mat S0 = {nq, ldS, g_memdup2(S.v, sizeof(double) * nq * ldS)}, O0 = {nq, Cq, g_memdup2(O.v, sizeof(double) * nq * Cq)};
  Mat dV0 = {nk, ldg, g_memdup2(dV.v, sizeof(double) * nk * ldg)}, dK0 = {nk, ldg, g_memdup2(dK.v, sizeof(double) * nk * ldg)};
  Mat dQ0 = {nq, W, g_memdup2(dQ.v, sizeof(double) * nq * W)};
  g_autofree double *want = g_new(double, 64);
  /* S = Q K^T */
  PxGemmMap g = px_gemm_att_s(nq, nk, hd, W, ldS);
  colmajor_gemm(&g, K.v, Q.v, S.v, 0, NULL);
  for (gint64 i = 0; i < nq; i++)
    for (gint64 j = 0; j < nk; j++) {
      double s = 0;
      for (gint64 d = 0; d < hd; d++) s += AT(Q, i, d) * AT(K, j, d);
      want[i * nk + j] = s;
    }
  expect(S, want, nk, S0);
  /* O = P V (O's rows hold hd values of this head, the rest another head's) */
  g = px_gemm_att_o(nq, nk, hd, W, Cq, ldS);
  colmajor_gemm(&g, V.v, P.v, O.v, 0, NULL);
  for (gint64 i = 0; i < nq; i++)
    for (gint64 d = 0; d < hd; d++) {
      double s = 0;
      for (gint64 j = 0; j < nk; j++) s += AT(P, i, j) * AT(V, j, d);
      want[i * hd + d] = s;
    }
  expect(O, want, hd, O0);
  /* dP = dO V^T (dO in O's place; S's buffer as dP's) */
  memcpy(S.v, S0.v, sizeof(double) * nq * ldS);
  memcpy(O.v, O0.v, sizeof(double) * nq * Cq);
  g = px_gemm_att_dp(nq, nk, hd, W, Cq, ldS);
  colmajor_gemm(&g, V.v, O.v, S.v, 0, NULL);
  for (gint64 i = 0; i < nq; i++)
    for (gint64 j = 0; j < nk; j++) {
      double s = 0;
      for (gint64 d = 0; d < hd; d++) s += AT(O, i, d) * AT(V, j, d);
      want[i * nk + j] = s;
    }
  expect(S, want, nk, S0);
  /* dV += P^T dO */
  g = px_gemm_att_dv(nq, nk, hd, Cq, ldS, ldg);
  colmajor_gemm(&g, O.v, P.v, dV.v, 1, NULL);
  for (gint64 j = 0; j < nk; j++)
    for (gint64 d = 0; d < hd; d++) {
      double s = AT(dV0, j, d);
      for (gint64 i = 0; i < nq; i++) s += AT(P, i, j) * AT(O, i, d);
      want[j * hd + d] = s;
    }
  expect(dV, want, hd, dV0);
  /* dK += dS^T Q */
  g = px_gemm_att_dk(nq, nk, hd, W, ldS, ldg);
  colmajor_gemm(&g, Q.v, dS.v, dK.v, 1, NULL);
  for (gint64 j = 0; j < nk; j++)
    for (gint64 d = 0; d < hd; d++) {
      double s = AT(dK0, j, d);
      for (gint64 i = 0; i < nq; i++) s += AT(dS, i, j) * AT(Q, i, d);
      want[j * hd + d] = s;
    }
  expect(dK, want, hd, dK0);
  /* dQ += dS K */
  g = px_gemm_att_dq(nq, nk, hd, W, ldS);
  colmajor_gemm(&g, K.v, dS.v, dQ.v, 1, NULL);
  for (gint64 i = 0; i < nq; i++)
    for (gint64 d = 0; d < hd; d++) {
      double s = AT(dQ0, i, d);
      for (gint64 j = 0; j < nk; j++) s += AT(dS, i, j) * AT(K, j, d);
      want[i * hd + d] = s;
    }
  expect(dQ, want, hd, dQ0);
  Mat all[] = {Q, K, V, O, P, dS, S, dV, dK, dQ, S0, O0, dV0, dK0, dQ0};
  for (guint i = 0; i < G_N_ELEMENTS(all); i++) g_free(all[i].v);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/gemm_map/linear-hand", test_hand);
  g_test_add_func("/gemm_map/linear-vs-cpu", test_against_cpu);
  g_test_add_func("/gemm_map/attention", test_attention);
  return g_test_run();
}
