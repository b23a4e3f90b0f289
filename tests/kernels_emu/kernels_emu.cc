/* kernels_emu.cc — exec/cuda/kernels.cu run on the host (kemu.h: fibers for
 * the threads of a CTA, CTAs in turn), through its launchers (pxk_*), each
 * kernel against the cpu backend's kernel in double (ref.c; the reference
 * scripts/gpu-check.sh compares with on a GPU) or, for the few the cpu
 * backend has no kernel for (casts, column sums' modes, stream reductions,
 * scalars, the tensor-core attention's softmax tiles), the formula of
 * cuda_kernels.h in double. Plus the special paths: tokens, targets and rows
 * out of range reported in bad, the loss-scale skip of AdamW, the
 * vocabulary-parallel pieces over two shards with padding, sizes that are no
 * multiple of a block, the fp32 ring-attention accumulator.
 *
 * Inputs are random and rounded to the kernel's type first; the reference
 * works on those values. Errors are max |emu - ref| / max |ref| per tensor.
 * Bounds: f32 2e-6 (the kernels sum in fp32, so a few units of 2^-24 times
 * the lengths here: 3e-7 seen); bf16 8e-3, f16 1e-3: four units of roundoff
 * (2^-9, 2^-12), each value rounded once on store and the inputs exact (1.8
 * units seen). Statistics (mean, rstd, lse, losses) are fp32 whatever the
 * type: 2e-6. Kernels that form a value in double (MoE rows, router) equal
 * the reference rounded once. Integer results
 * (top-k indices, bad reports, flags) exactly.
 *   usage: kernels_emu   (exit 0: all within bounds, 1 otherwise) */
#include "cuda_kernels.h"
#include "kemu.h"
#include "ref.h"
#include <random>
#include <string>
#include <vector>

typedef std::vector<double> Vd;
static int failures, checks;
static std::mt19937_64 rng(20261202);

static const char *dname(int dt) {
  return dt == PXK_F32 ? "f32" : dt == PXK_BF16 ? "bf16" : dt == PXK_F16 ? "f16" : dt == PXK_F64 ? "f64" : "i32";
}
static size_t esz(int dt) { return dt == PXK_F64 ? 8 : dt == PXK_BF16 || dt == PXK_F16 ? 2 : 4; }
static double getv(int dt, const void *p, size_t i) {
  switch (dt) {
  case PXK_F32: return ((const float *)p)[i];
  case PXK_F64: return ((const double *)p)[i];
  case PXK_I32: return ((const int32_t *)p)[i];
  case PXK_BF16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
  default: return __half2float(((const __half *)p)[i]);
  }
}
static void setv(int dt, void *p, size_t i, double v) {
  switch (dt) {
  case PXK_F32: ((float *)p)[i] = (float)v; break;
  case PXK_F64: ((double *)p)[i] = v; break;
  case PXK_I32: ((int32_t *)p)[i] = (int32_t)v; break;
  case PXK_BF16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn((float)v); break;
  default: ((__half *)p)[i] = __float2half_rn((float)v);
  }
}
static double round_to(int dt, double v) {
  unsigned char b[8];
  setv(dt, b, 0, v);
  return getv(dt, b, 0);
}
/* a tensor in "device" memory: n elements of dt */
struct Arr {
  int dt;
  size_t n;
  std::vector<unsigned char> b;
  void *p() { return b.data(); }
  Vd v() const {
    Vd r(n);
    for (size_t i = 0; i < n; i++) r[i] = getv(dt, b.data(), i);
    return r;
  }
};
static Arr mk(int dt, const Vd &v) {
  Arr a{dt, v.size(), std::vector<unsigned char>(v.size() * esz(dt) + 8)};
  for (size_t i = 0; i < v.size(); i++) setv(dt, a.p(), i, v[i]);
  return a;
}
static Vd rnd(int dt, size_t n, double lo, double hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  Vd v(n);
  for (auto &x : v) x = round_to(dt, u(rng));
  return v;
}
static std::vector<float> tof(const Vd &v) { return std::vector<float>(v.begin(), v.end()); }
static Vd tod(const std::vector<float> &v) { return Vd(v.begin(), v.end()); }

static double tol(int dt) { return dt == PXK_BF16 ? 8e-3 : dt == PXK_F16 ? 1e-3 : 2e-6; }
#define STAT_TOL 2e-6 /* fp32 statistics, whatever the type */
static void check(const std::string &what, int dt, const Vd &got, const Vd &want, double bound) {
  double d = 0, m = 0;
  for (size_t i = 0; i < want.size(); i++) {
    double e = std::fabs(got[i] - want[i]);
    if (std::isinf(want[i]) || std::isinf(got[i])) e = got[i] == want[i] ? 0 : INFINITY;
    d = std::isnan(e) ? INFINITY : std::max(d, e);
    if (!std::isinf(want[i])) m = std::max(m, std::fabs(want[i]));
  }
  double err = m > 0 ? d / m : d;
  bool ok = err <= bound && got.size() == want.size();
  checks++;
  if (!ok) failures++;
  std::printf("# kernels emu: %-40s %-4s max err %.2e (bound %.0e) %s\n", what.c_str(), dname(dt), err, bound,
              ok ? "ok" : "FAIL");
}
static void check_eq(const std::string &what, long got, long want) {
  checks++;
  bool ok = got == want;
  if (!ok) failures++;
  std::printf("# kernels emu: %-45s %ld (want %ld) %s\n", what.c_str(), got, want, ok ? "ok" : "FAIL");
}
static void ok_launch(const std::string &what, cudaError_t e) { /* printed only when it fails */
  if (e != cudaSuccess) check_eq(what + ": launch status", e, cudaSuccess);
  else checks++;
}
/* a double reference rounded once to dt (the kernels that form a value in double and store it) */
static Vd rounded(int dt, Vd v) {
  for (auto &x : v) x = round_to(dt, x);
  return v;
}

static const int DTS[] = {PXK_F32, PXK_BF16, PXK_F16};

/* ---- linear helpers, embeddings, norms ---- */

static void t_bias_colsum(int dt) {
  const int64_t N = 70, C = 45; /* rows > 32 (the block's row stride), columns no multiple of 32 */
  Vd y = rnd(dt, N * C, -1, 1), b = rnd(dt, C, -1, 1), want(N * C);
  Arr Y = mk(dt, y), Bb = mk(dt, b);
  ok_launch("bias_add", pxk_bias_add(0, dt, Y.p(), Bb.p(), N, C));
  for (int64_t i = 0; i < N * C; i++) want[i] = y[i] + b[i % C];
  check("bias_add", dt, Y.v(), want, tol(dt));

  Vd x = rnd(dt, N * C, -2, 2), dout = rnd(dt, N * C, -1, 1), w = rnd(dt, C, 0.5, 1.5), bb(C, 0.0);
  Vd mean(N), rstd(N), out(N * C);
  ref_layernorm_fwd(out.data(), mean.data(), rstd.data(), x.data(), w.data(), bb.data(), 1e-5, N, C);
  std::vector<float> mf = tof(mean), rf = tof(rstd);
  Vd mean_f = tod(mf), rstd_f = tod(rf);
  Arr X = mk(dt, x), D = mk(dt, dout);
  for (int mode = 0; mode < 3; mode++) {
    Vd init = rnd(dt, C, -1, 1), ref = init, dx(N * C, 0.0), scratch(C, 0.0);
    Arr O = mk(dt, init);
    ok_launch("colsum", pxk_colsum(0, dt, mode, O.p(), D.p(), X.p(), mf.data(), rf.data(), N, C));
    if (mode == PXK_COLSUM_PLAIN) ref_linear_db(ref.data(), dout.data(), N, C);
    else if (mode == PXK_COLSUM_LN)
      ref_layernorm_bwd(nullptr, ref.data(), nullptr, dout.data(), x.data(), w.data(), mean_f.data(), rstd_f.data(), N, C);
    else ref_rmsnorm_bwd(nullptr, ref.data(), dout.data(), x.data(), w.data(), rstd_f.data(), N, C);
    const char *mn[] = {"colsum plain (linear db)", "colsum ln (layernorm dw)", "colsum rms (rmsnorm dw)"};
    check(mn[mode], dt, O.v(), ref, tol(dt));
  }
}

static void t_embedding(int dt) {
  const int B = 2, T = 5, V = 7;
  const int64_t C = 300, v0 = 3, n_real = 4; /* this shard's rows: tokens 3..6 */
  std::vector<int32_t> tok = {3, 4, 9, 6, 3, 3, 0, 5, 6, 3};
  Vd wte = rnd(dt, V * C, -1, 1), wpe = rnd(dt, T * C, -1, 1), want(B * T * C);
  Arr WTE = mk(dt, Vd(wte.begin(), wte.begin() + n_real * C)), WPE = mk(dt, wpe), O = mk(dt, Vd(B * T * C, 7.0));
  int bad[2] = {0, 0};
  ok_launch("embedding_fwd", pxk_embedding_fwd(0, dt, O.p(), tok.data(), WTE.p(), WPE.p(), v0, n_real, bad, B, T, C));
  ref_embedding_fwd(want.data(), tok.data(), wte.data(), wpe.data(), v0, n_real, B, T, C);
  check("embedding_fwd (shard, wpe)", dt, O.v(), want, tol(dt));
  check_eq(std::string("embedding_fwd bad kind ") + dname(dt), bad[0], PXK_BAD_TOKEN);
  check_eq(std::string("embedding_fwd bad id ") + dname(dt), bad[1] == 9 || bad[1] == 0 ? 1 : 0, 1);

  Vd dout = rnd(dt, B * T * C, -1, 1), dwte = rnd(dt, n_real * C, -1, 1), dwpe = rnd(dt, T * C, -1, 1);
  Vd rwte = dwte, rwpe = dwpe;
  Arr DW = mk(dt, dwte), DP = mk(dt, dwpe), DO = mk(dt, dout);
  std::vector<float> acc(3 * C); /* 3 rows a slab: two slabs for the shard's 4 */
  ok_launch("embedding_bwd", pxk_embedding_bwd(0, dt, DW.p(), DP.p(), DO.p(), tok.data(), v0, n_real, B, T, C,
                                               dt == PXK_F32 ? nullptr : acc.data(), 3));
  ref_embedding_bwd(rwte.data(), rwpe.data(), dout.data(), tok.data(), v0, n_real, B, T, C);
  check("embedding_bwd dwte (+=, slabs of 3 rows)", dt, DW.v(), rwte, tol(dt));
  check("embedding_bwd dwpe (+=)", dt, DP.v(), rwpe, tol(dt));
}

static void t_norms(int dt) {
  const int64_t N = 5, C = 300; /* C over a block of 256 and no multiple of it */
  Vd x = rnd(dt, N * C, -2, 3), w = rnd(dt, C, 0.5, 1.5), b = rnd(dt, C, -0.5, 0.5);
  Vd out(N * C), mean(N), rstd(N);
  Arr X = mk(dt, x), W = mk(dt, w), Bb = mk(dt, b), O = mk(dt, Vd(N * C, 0.0));
  std::vector<float> m(N), r(N);
  ok_launch("layernorm_fwd", pxk_layernorm_fwd(0, dt, O.p(), m.data(), r.data(), X.p(), W.p(), Bb.p(), 1e-5, N, C));
  ref_layernorm_fwd(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), 1e-5, N, C);
  check("layernorm_fwd out", dt, O.v(), out, tol(dt));
  check("layernorm_fwd mean (fp32)", dt, tod(m), mean, STAT_TOL);
  check("layernorm_fwd rstd (fp32)", dt, tod(r), rstd, STAT_TOL);
  Vd dout = rnd(dt, N * C, -1, 1), dx = rnd(dt, N * C, -1, 1), rdx = dx;
  Arr DO = mk(dt, dout), DX = mk(dt, dx);
  Vd mf = tod(m), rf = tod(r);
  ok_launch("layernorm_bwd_dx", pxk_layernorm_bwd_dx(0, dt, DX.p(), DO.p(), X.p(), W.p(), m.data(), r.data(), N, C));
  ref_layernorm_bwd(rdx.data(), nullptr, nullptr, dout.data(), x.data(), w.data(), mf.data(), rf.data(), N, C);
  check("layernorm_bwd_dx (+=)", dt, DX.v(), rdx, tol(dt));

  Vd rout(N * C), rr(N);
  ok_launch("rmsnorm_fwd", pxk_rmsnorm_fwd(0, dt, O.p(), r.data(), X.p(), W.p(), 1e-6, N, C));
  ref_rmsnorm_fwd(rout.data(), rr.data(), x.data(), w.data(), 1e-6, N, C);
  check("rmsnorm_fwd out", dt, O.v(), rout, tol(dt));
  check("rmsnorm_fwd rstd (fp32)", dt, tod(r), rr, STAT_TOL);
  Arr DX2 = mk(dt, dx);
  Vd rdx2 = dx, rf2 = tod(r);
  ok_launch("rmsnorm_bwd_dx", pxk_rmsnorm_bwd_dx(0, dt, DX2.p(), DO.p(), X.p(), W.p(), r.data(), N, C));
  ref_rmsnorm_bwd(rdx2.data(), nullptr, dout.data(), x.data(), w.data(), rf2.data(), N, C);
  check("rmsnorm_bwd_dx (+=)", dt, DX2.v(), rdx2, tol(dt));
}

/* ---- element-wise ---- */

static void t_elementwise(int dt) {
  const int64_t n = 1001;
  Vd x = rnd(dt, n, -4, 4), u = rnd(dt, n, -2, 2), dout = rnd(dt, n, -1, 1), d0 = rnd(dt, n, -1, 1), d1 = rnd(dt, n, -1, 1);
  Arr X = mk(dt, x), U = mk(dt, u), DO = mk(dt, dout), O = mk(dt, Vd(n, 0.0));
  Vd r(n);
  ok_launch("gelu_fwd", pxk_gelu_fwd(0, dt, O.p(), X.p(), n));
  ref_gelu_fwd(r.data(), x.data(), n);
  check("gelu_fwd", dt, O.v(), r, tol(dt));
  Arr DX = mk(dt, d0);
  Vd rd = d0;
  ok_launch("gelu_bwd", pxk_gelu_bwd(0, dt, DX.p(), DO.p(), X.p(), n));
  ref_gelu_bwd(rd.data(), dout.data(), x.data(), n);
  check("gelu_bwd (+=)", dt, DX.v(), rd, tol(dt));
  ok_launch("swiglu_fwd", pxk_swiglu_fwd(0, dt, O.p(), X.p(), U.p(), n));
  ref_swiglu_fwd(r.data(), x.data(), u.data(), n);
  check("swiglu_fwd", dt, O.v(), r, tol(dt));
  Arr DG = mk(dt, d0), DU = mk(dt, d1);
  Vd rg = d0, ru = d1;
  ok_launch("swiglu_bwd", pxk_swiglu_bwd(0, dt, DG.p(), DU.p(), DO.p(), X.p(), U.p(), n));
  ref_swiglu_bwd(rg.data(), ru.data(), dout.data(), x.data(), u.data(), n);
  check("swiglu_bwd dgate (+=)", dt, DG.v(), rg, tol(dt));
  check("swiglu_bwd dup (+=)", dt, DU.v(), ru, tol(dt));
  Arr DU2 = mk(dt, d1);
  Vd ru2 = d1;
  ok_launch("swiglu_bwd", pxk_swiglu_bwd(0, dt, nullptr, DU2.p(), DO.p(), X.p(), U.p(), n));
  ref_swiglu_bwd(nullptr, ru2.data(), dout.data(), x.data(), u.data(), n);
  check("swiglu_bwd dup only (dgate NULL)", dt, DU2.v(), ru2, tol(dt));
  ok_launch("add", pxk_add(0, dt, X.p(), X.p(), U.p(), n)); /* out aliasing a */
  ref_add(r.data(), x.data(), u.data(), n);
  check("add (out = a)", dt, X.v(), r, tol(dt));
  Arr S = mk(dt, u);
  Vd rs = u;
  ok_launch("scale", pxk_scale(0, dt, S.p(), -0.37, n));
  ref_scale(rs.data(), -0.37, n);
  check("scale", dt, S.v(), rs, tol(dt));
}

static void t_reduce_cast() {
  const int64_t n = 777;
  const int all[] = {PXK_F32, PXK_F64, PXK_I32, PXK_BF16, PXK_F16};
  for (int dt : all)
    for (int mx = 0; mx < 2; mx++) {
      Vd a = dt == PXK_I32 ? rnd(PXK_F32, n, -1000, 1000) : rnd(dt, n, -2, 2), b = rnd(dt, n, -2, 2),
         c = rnd(dt, n, -2, 2), want(n);
      if (dt == PXK_I32)
        for (size_t i = 0; i < (size_t)n; i++) a[i] = std::floor(a[i]), b[i] = std::floor(b[i] * 500), c[i] = std::floor(c[i] * 300);
      Arr A = mk(dt, a), Bb = mk(dt, b), Cc = mk(dt, c);
      PxkParts parts = {{A.p(), Bb.p(), Cc.p()}};
      ok_launch("reduce_parts", pxk_reduce_parts(0, dt, A.p(), parts, 3, mx, n)); /* out = parts[0] */
      for (int64_t i = 0; i < n; i++) /* comm.c: acc = p0, then acc op p_k, rounded once for halves */
        want[i] = round_to(dt, mx ? std::max(std::max(a[i], b[i]), c[i]) : dt == PXK_F32 ? (double)((float)((float)a[i] + (float)b[i]) + (float)c[i]) : a[i] + b[i] + c[i]);
      check(mx ? "reduce_parts max (out = parts[0])" : "reduce_parts sum (out = parts[0])", dt, A.v(), want,
            dt == PXK_F64 || dt == PXK_I32 || dt == PXK_F32 || mx ? 0.0 : tol(dt));
    }
  const int fl[] = {PXK_F32, PXK_F64, PXK_BF16, PXK_F16};
  for (int sd : fl)
    for (int dd : fl)
      for (int acc = 0; acc < 2; acc++) {
        Vd s = rnd(sd, n, -70, 70), d = rnd(dd, n, -70, 70), want(n);
        Arr S = mk(sd, s), D = mk(dd, d);
        ok_launch("cast", pxk_cast(0, D.p(), dd, S.p(), sd, n, acc));
        const bool wide = sd == PXK_F64 || dd == PXK_F64;
        for (int64_t i = 0; i < n; i++) /* in f32 (f64 when either side is), rounded once */
          want[i] = round_to(dd, wide ? s[i] + (acc ? d[i] : 0.0) : (double)((float)s[i] + (acc ? (float)d[i] : 0.f)));
        check(std::string("cast ") + dname(sd) + (acc ? " += to " : " to ") + dname(dd), dd, D.v(), want, 0.0);
      }
}

/* ---- MoE rows and router ---- */

static void t_moe(int dt) {
  const int64_t T = 9, C = 33, N = 6, E = 6;
  const int k = 2;
  Vd src = rnd(dt, N * C, -1, 1), a = rnd(dt, T * C, -1, 1), wt = rnd(dt, T * k, 0, 1), want(T * C);
  std::vector<int32_t> idx(T * k);
  for (int64_t i = 0; i < T * k; i++) idx[i] = (int32_t)(i * 5 % 7) - 1; /* -1 .. 5, some -1 (left out) */
  Arr S = mk(dt, src), A = mk(dt, a), W = mk(dt, wt), D = mk(dt, Vd(T * C, 0.0)), O = mk(dt, Vd(T * k, 0.0));
  int bad[2] = {0, 0};
  ok_launch("rows_gather", pxk_rows_gather(0, dt, D.p(), S.p(), idx.data(), W.p(), T, k, C, N, bad));
  ref_rows_gather(want.data(), src.data(), idx.data(), wt.data(), T, k, C);
  check("rows_gather (weighted, -1 left out)", dt, D.v(), rounded(dt, want), dt == PXK_F32 ? 0.0 : tol(dt));
  Vd wd(T * k);
  ok_launch("rows_dot", pxk_rows_dot(0, dt, O.p(), A.p(), S.p(), idx.data(), T, k, C, N, bad));
  ref_rows_dot(wd.data(), a.data(), src.data(), idx.data(), T, k, C);
  check("rows_dot", dt, O.v(), rounded(dt, wd), dt == PXK_F32 ? 0.0 : tol(dt));
  check_eq(std::string("rows_*: no bad row reported ") + dname(dt), bad[0], PXK_BAD_NONE);
  idx[3] = (int32_t)N; /* out of range */
  ok_launch("rows_gather", pxk_rows_gather(0, dt, D.p(), S.p(), idx.data(), W.p(), T, k, C, N, bad));
  check_eq(std::string("rows_gather: row N reported ") + dname(dt), bad[0] == PXK_BAD_ROW && bad[1] == N, 1);

  Vd logits = rnd(dt, T * E, -3, 3), probs(T * E), topv(T * k), psum(E), p64(T * E);
  logits[E + 1] = logits[E + 4]; /* a tie: the lower index first */
  std::vector<int32_t> topi(T * k), rtopi(T * k);
  std::vector<double> ktopv(T * k), kpsum(E), kp64(T * E);
  Arr L = mk(dt, logits), P = mk(dt, Vd(T * E, 0.0));
  ok_launch("router_topk", pxk_router_topk(0, dt, P.p(), topi.data(), ktopv.data(), kpsum.data(), kp64.data(), L.p(), T, E, k));
  ref_router_topk(probs.data(), rtopi.data(), topv.data(), psum.data(), logits.data(), p64.data(), T, E, k);
  check("router_topk probs", dt, P.v(), rounded(dt, probs), dt == PXK_F32 ? 0.0 : tol(dt));
  check("router_topk topv", dt, ktopv, topv, 0.0);
  check("router_topk psum", dt, kpsum, psum, 0.0);
  long same = 0;
  for (int64_t i = 0; i < T * k; i++) same += topi[i] == rtopi[i];
  check_eq(std::string("router_topk indices equal ") + dname(dt), same, T * k);

  Vd pr = P.v(), dgate = rnd(dt, T * k, -1, 1), fcnt = rnd(dt, E, 0, 2);
  Arr PR = mk(dt, pr), DG = mk(dt, dgate), FC = mk(dt, fcnt);
  for (int norm = 0; norm < 2; norm++) {
    Vd rd(T * E);
    Arr DL = mk(dt, Vd(T * E, 5.0));
    ok_launch("router_bwd", pxk_router_bwd(0, dt, DL.p(), PR.p(), topi.data(), DG.p(), norm ? FC.p() : nullptr, 0.3,
                                           norm, T, E, k, bad));
    ref_router_bwd(rd.data(), pr.data(), topi.data(), dgate.data(), norm ? fcnt.data() : nullptr, 0.3, norm, T, E, k);
    check(norm ? "router_bwd (norm_topk, fcnt)" : "router_bwd", dt, DL.v(), rounded(dt, rd), dt == PXK_F32 ? 0.0 : tol(dt));
  }
}

/* ---- rotary and attention ---- */

static void t_rope(int dt) {
  const int B = 2, T = 7, H = 4, KV = 2, hd = 64; /* W = 512 */
  const int64_t W = (H + 2 * KV) * hd, n = (int64_t)B * T * W;
  const PxkPos pos = {3, 10, 40};
  Vd x = rnd(dt, n, -1, 1), d0 = rnd(dt, n, -1, 1);
  for (int dir = -1; dir <= 1; dir += 2)
    for (int acc = 0; acc < 2; acc++) {
      Vd want = acc ? d0 : Vd(n, 0.0);
      Arr X = mk(dt, x), D = mk(dt, acc ? d0 : Vd(n, 3.0));
      ok_launch("rope", pxk_rope(0, dt, D.p(), X.p(), B, T, H, KV, hd, pos, 10000.0, dir, acc));
      ref_rope(want.data(), x.data(), B, T, H, KV, hd, pos.split, pos.start0, pos.start1, 10000.0, dir, acc);
      check(std::string("rope dir ") + (dir > 0 ? "+1" : "-1") + (acc ? " (+=)" : "") + " split positions", dt, D.v(),
            want, tol(dt));
    }
  Arr X = mk(dt, x);
  Vd want(n);
  ok_launch("rope", pxk_rope(0, dt, X.p(), X.p(), B, T, H, KV, hd, PxkPos{0, 0, 0}, 500000.0, 1, 0));
  ref_rope(want.data(), x.data(), B, T, H, KV, hd, 0, 0, 0, 500000.0, 1, 0);
  check("rope in place", dt, X.v(), want, tol(dt));
}

/* sp: the saved state, probabilities (f32; T == 1) or the lse (pxk_att_saves_probs; 0 after the
 * tensor-core forward whatever the type) */
static void t_attention(int dt, int hd, int T, int H, int KV, int sp) {
  const int B = 2;
  const int64_t W = (int64_t)(H + 2 * KV) * hd, C = (int64_t)H * hd;
  const std::string tag = " T" + std::to_string(T) + " H" + std::to_string(H) + " KV" + std::to_string(KV) + " hd" +
                          std::to_string(hd);
  Vd qkv = rnd(dt, B * T * W, -1.5, 1.5), out(B * T * C), att((size_t)B * H * T * T);
  ref_attention_fwd(out.data(), att.data(), qkv.data(), B, T, H, KV, hd);
  Arr Q = mk(dt, qkv), O = mk(dt, Vd(B * T * C, 9.0));
  Arr ATT = sp ? mk(dt, Vd(att.size(), 9.0)) : mk(PXK_F32, Vd((size_t)B * H * T, 9.0));
  ok_launch("attention_fwd", pxk_attention_fwd(0, dt, O.p(), ATT.p(), Q.p(), B, T, H, KV, hd, sp));
  check("attention_fwd out" + tag, dt, O.v(), out, tol(dt));
  if (sp) check("attention_fwd probs" + tag, dt, ATT.v(), att, tol(dt));
  Vd dout = rnd(dt, B * T * C, -1, 1), dq = rnd(dt, B * T * W, -1, 1), rdq = dq;
  Arr DO = mk(dt, dout), DQ = mk(dt, dq);
  std::vector<float> D((size_t)B * H * T);
  ok_launch("attention_bwd", pxk_attention_bwd(0, dt, DQ.p(), DO.p(), Q.p(), ATT.p(), D.data(), B, T, H, KV, hd, sp));
  if (sp && dt != PXK_F32) att = ATT.v(); /* backward reads the saved, rounded probabilities */
  ref_attention_bwd(rdq.data(), dout.data(), qkv.data(), att.data(), B, T, H, KV, hd);
  check(std::string("attention_bwd dqkv (+=)") + (sp ? " probs" : " lse") + tag, dt, DQ.v(), rdq, tol(dt));
}

static void t_attn_block(int dt) {
  const int B = 2, Tq = 20, Tk = 20, H = 4, KV = 2, hd = 48;
  const int64_t W = (int64_t)(H + 2 * KV) * hd, C = (int64_t)H * hd;
  /* ring attention with chunks of 10: rank 1 holds 10..19 and 20..29, rank 0 0..9 and 30..39 */
  const int r1[3] = {10, 10, 20}, r0[3] = {10, 0, 30};
  Vd q = rnd(dt, B * Tq * W, -1.5, 1.5), kv = rnd(dt, B * Tk * W, -1.5, 1.5);
  Arr Q = mk(dt, q), KVa = mk(dt, kv);
  const int *sides[2][2] = {{r1, r1}, {r0, r1}}; /* own keys; rank 0's queries vs rank 1's keys: some rows see none */
  for (auto &sd : sides) {
    const PxkPos qp = {sd[0][0], sd[0][1], sd[0][2]}, kp = {sd[1][0], sd[1][1], sd[1][2]};
    const std::string tag = sd[0] == sd[1] ? " (own block)" : " (rows seeing no key)";
    Vd out(B * Tq * C), lse((size_t)B * H * Tq);
    ref_attn_block_fwd(out.data(), lse.data(), q.data(), kv.data(), B, Tq, Tk, H, KV, hd, sd[0], sd[1]);
    Arr O = mk(dt, Vd(B * Tq * C, 9.0));
    std::vector<float> L((size_t)B * H * Tq, 9.f);
    ok_launch("attn_block_fwd", pxk_attn_block_fwd(0, dt, O.p(), L.data(), Q.p(), KVa.p(), B, Tq, Tk, H, KV, hd, qp, kp));
    check("attn_block_fwd out" + tag, dt, O.v(), out, tol(dt));
    check("attn_block_fwd lse (fp32)" + tag, dt, tod(L), lse, STAT_TOL);
    Vd ob = O.v(), lf = tod(L), dout = rnd(dt, B * Tq * C, -1, 1), dq = rnd(dt, B * Tq * W, -1, 1),
       dkv = rnd(dt, B * Tk * W, -1, 1), rdq = dq, rdkv = dkv;
    Arr DO = mk(dt, dout), DQ = mk(dt, dq), DKV = mk(dt, dkv);
    ok_launch("attn_block_bwd", pxk_attn_block_bwd(0, dt, DQ.p(), DKV.p(), DO.p(), Q.p(), KVa.p(), O.p(), L.data(), B,
                                                   Tq, Tk, H, KV, hd, qp, kp));
    ref_attn_block_bwd(rdq.data(), rdkv.data(), dout.data(), q.data(), kv.data(), ob.data(), lf.data(), B, Tq, Tk, H,
                       KV, hd, sd[0], sd[1]);
    check("attn_block_bwd dq (+=)" + tag, dt, DQ.v(), rdq, tol(dt));
    check("attn_block_bwd dkv (+=)" + tag, dt, DKV.v(), rdkv, tol(dt));
  }
  /* merge: a block's (out_b, lse_b) into (out, lse); some rows -inf on one side or both */
  const int T = 6;
  Vd o = rnd(dt, B * T * C, -1, 1), obv = rnd(dt, B * T * C, -1, 1), la = rnd(PXK_F32, B * H * T, -2, 2),
     lb = rnd(PXK_F32, B * H * T, -2, 2);
  la[1] = -INFINITY, lb[2] = -INFINITY, la[3] = lb[3] = -INFINITY;
  for (int f32acc = 0; f32acc < (dt == PXK_F32 ? 1 : 2); f32acc++) {
    const int odt = f32acc ? PXK_F32 : dt;
    Vd ro = o, rl = la;
    ref_attn_merge(ro.data(), rl.data(), obv.data(), lb.data(), B, T, H, hd);
    Arr O = mk(odt, o), OB = mk(dt, obv);
    std::vector<float> L = tof(la), LB = tof(lb);
    ok_launch("attn_merge", pxk_attn_merge(0, dt, odt, O.p(), L.data(), OB.p(), LB.data(), B, T, H, hd));
    check(f32acc ? "attn_merge out (fp32 accumulator)" : "attn_merge out", dt, O.v(), ro, tol(odt));
    check("attn_merge lse (fp32)", dt, tod(L), rl, STAT_TOL);
  }
}

/* the tensor-core attention's kernels between the GEMMs: S tiles formed here in double */
static void t_att_tc(int dt) {
  const int B = 2, Tq = 12, Tk = 12, H = 4, KV = 2, hd = 16;
  const int64_t W = (int64_t)(H + 2 * KV) * hd, C = (int64_t)H * hd;
  PxkAttTc a{};
  a.B = B, a.Tq = Tq, a.Tk = Tk, a.H = H, a.KV = KV, a.hd = hd;
  a.qp = PxkPos{6, 6, 12}, a.kp = PxkPos{6, 0, 18}; /* positions: q 6..11, 12..17; k 0..5, 18..23 */
  a.n0 = 2, a.E = B * KV;                           /* entries 2..5: query heads of i = 0 and 1 */
  a.q0 = 4, a.nq = 7, a.nk = Tk, a.ldS = Tk + 3, a.tile = (int64_t)7 * (Tk + 3) + 5;
  a.scale = (float)(1.0 / std::sqrt((double)hd));
  auto pos = [](PxkPos p, int t) { return p.split <= 0 ? t : t < p.split ? p.start0 + t : p.start1 + (t - p.split); };
  auto entry = [&](int n, int &b, int &h, int &j) {
    const int per = H / KV, i = n / (B * KV), rem = n % (B * KV);
    b = rem / KV, j = rem % KV, h = j * per + i;
  };
  Vd S = rnd(PXK_F32, a.E * a.tile, -3, 3), dP = rnd(PXK_F32, a.E * a.tile, -1, 1);
  std::vector<float> Sf = tof(S), dPf = tof(dP), lse((size_t)B * H * Tq, 7.f), lse2 = lse, Dv((size_t)B * H * Tq);
  Vd Dd = rnd(PXK_F32, Dv.size(), -1, 1);
  Dv = tof(Dd);
  Arr P = mk(dt, Vd(a.E * a.tile, 0.0)), P2 = mk(dt, Vd(a.E * a.tile, 0.0)), dS = mk(dt, Vd(a.E * a.tile, 0.0));
  ok_launch("att_tc_softmax_fwd", pxk_att_tc_softmax_fwd(0, dt, a, Sf.data(), P.p(), lse.data()));
  Vd wantP(a.E * a.tile, 0.0), wantL(lse.begin(), lse.end()), wantDS(a.E * a.tile, 0.0), wantP2 = wantP, wantDS2 = wantDS;
  Vd gotP = P.v(), gotL = tod(lse);
  for (int e = 0; e < a.E; e++) {
    int b, h, j;
    entry(a.n0 + e, b, h, j);
    for (int i = 0; i < a.nq; i++) {
      const int64_t off = e * a.tile + (int64_t)i * a.ldS, li = ((int64_t)b * H + h) * Tq + a.q0 + i;
      const int pq = pos(a.qp, a.q0 + i);
      double mx = -INFINITY, l = 0;
      for (int jj = 0; jj < a.nk; jj++)
        if (pos(a.kp, jj) <= pq) mx = std::max(mx, (double)Sf[off + jj] * a.scale);
      for (int jj = 0; jj < a.nk; jj++)
        if (pos(a.kp, jj) <= pq) l += std::exp((double)Sf[off + jj] * a.scale - mx);
      const double lv = l > 0 ? mx + std::log(l) : -INFINITY;
      wantL[li] = lv;
      double dsum = 0;
      for (int jj = 0; jj < a.nk; jj++) {
        const double p = l > 0 && pos(a.kp, jj) <= pq ? std::exp((double)Sf[off + jj] * a.scale - lv) : 0;
        wantP[off + jj] = p;
        dsum += p * dPf[off + jj];
      }
      for (int jj = 0; jj < a.nk; jj++) {
        const double p = wantP[off + jj];
        wantDS[off + jj] = p * (dPf[off + jj] - dsum) * a.scale;       /* D formed in the block */
        wantDS2[off + jj] = p * (dPf[off + jj] - Dv[li]) * a.scale;     /* D given */
      }
    }
  }
  check("att_tc_softmax_fwd P (masked, padded tiles)", dt, gotP, wantP, tol(dt));
  check("att_tc_softmax_fwd lse (fp32)", dt, gotL, wantL, STAT_TOL);
  Vd Lf = tod(lse);
  ok_launch("att_tc_softmax_bwd", pxk_att_tc_softmax_bwd(0, dt, a, Sf.data(), dPf.data(), P2.p(), dS.p(), lse.data(), nullptr));
  check("att_tc_softmax_bwd P", dt, P2.v(), wantP, tol(dt));
  check("att_tc_softmax_bwd dS (D from the block)", dt, dS.v(), wantDS, tol(dt));
  Arr dS2 = mk(dt, Vd(a.E * a.tile, 0.0));
  ok_launch("att_tc_softmax_bwd", pxk_att_tc_softmax_bwd(0, dt, a, Sf.data(), dPf.data(), P2.p(), dS2.p(), lse.data(), Dv.data()));
  check("att_tc_softmax_bwd dS (D given)", dt, dS2.v(), wantDS2, tol(dt));

  /* rowdot */
  Vd dout = rnd(dt, B * Tq * C, -1, 1), out = rnd(dt, B * Tq * C, -1, 1), wD((size_t)B * H * Tq);
  Arr DO = mk(dt, dout), O = mk(dt, out);
  std::vector<float> Dk(wD.size());
  ok_launch("att_rowdot", pxk_att_rowdot(0, dt, Dk.data(), DO.p(), O.p(), B, Tq, H, hd));
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int t = 0; t < Tq; t++) {
        double s = 0;
        for (int d = 0; d < hd; d++) s += dout[(b * Tq + t) * C + h * hd + d] * out[(b * Tq + t) * C + h * hd + d];
        wD[((size_t)b * H + h) * Tq + t] = s;
      }
  check("att_rowdot D (fp32)", dt, tod(Dk), wD, STAT_TOL);

  /* add_kv */
  const int64_t rows = B * Tk, W2 = 2 * KV * hd;
  Vd dkv = rnd(dt, rows * W, -1, 1), acc = rnd(PXK_F32, rows * W2, -1, 1), want = dkv;
  std::vector<float> accf = tof(acc);
  Arr DKV = mk(dt, dkv);
  ok_launch("att_add_kv", pxk_att_add_kv(0, dt, DKV.p(), accf.data(), rows, H, KV, hd));
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < W2; c++) want[r * W + H * hd + c] = round_to(dt, (float)dkv[r * W + H * hd + c] + accf[r * W2 + c]);
  check("att_add_kv (key, value columns +=)", dt, DKV.v(), want, 0.0);

  /* ptrs: byte addresses from bases at 0x100000.. */
  const int es = (int)esz(dt);
  std::vector<void *> ptrs((size_t)PXK_ATP_N * a.E);
  char *base[10];
  for (int i = 0; i < 10; i++) base[i] = (char *)(uintptr_t)(0x1000000u * (i + 1));
  std::vector<float> dacc(1);
  for (int with_acc = 0; with_acc < 2; with_acc++) {
    float *acc_base = with_acc ? (float *)(uintptr_t)0x40000000u : nullptr;
    ok_launch("att_tc_ptrs", pxk_att_tc_ptrs(0, dt, ptrs.data(), a, base[0], base[1], base[2], base[3], base[4], base[5],
                                             base[6], base[7], base[8], acc_base));
    long good = 0;
    for (int e = 0; e < a.E; e++) {
      int b, h, j;
      entry(a.n0 + e, b, h, j);
      const int64_t oq = ((int64_t)b * Tq + a.q0) * W + (int64_t)h * hd, ok = (int64_t)b * Tk * W + (int64_t)(H + j) * hd,
                    ov = (int64_t)b * Tk * W + (int64_t)(H + KV + j) * hd, oo = ((int64_t)b * Tq + a.q0) * C + (int64_t)h * hd;
      const int64_t ak = ((int64_t)b * Tk * W2 + (int64_t)j * hd) * 4, av = ((int64_t)b * Tk * W2 + (int64_t)(KV + j) * hd) * 4;
      char *want_p[PXK_ATP_N] = {base[0] + oq * es, base[1] + ok * es, base[1] + ov * es, base[2] + oo * es,
                                 base[3] + e * a.tile * 4, base[4] + e * a.tile * es, base[5] + e * a.tile * 4,
                                 base[6] + e * a.tile * es, base[7] + oq * es,
                                 with_acc ? (char *)acc_base + ak : base[8] + ok * es,
                                 with_acc ? (char *)acc_base + av : base[8] + ov * es};
      for (int k = 0; k < PXK_ATP_N; k++) good += ptrs[(size_t)k * a.E + e] == (void *)want_p[k];
    }
    check_eq(std::string(with_acc ? "att_tc_ptrs (dkv_acc) right " : "att_tc_ptrs right ") + dname(dt), good,
             (long)PXK_ATP_N * a.E);
  }
}

/* ---- cross-entropy, whole and vocabulary-parallel ---- */

static void t_ce_small(int dt) {
  const int64_t N = 3, V = 5; /* fewer columns than a warp: most threads of the block hold none */
  Vd logits = rnd(dt, N * V, -4, 4), losses(N), d0 = rnd(dt, N * V, -0.1, 0.1), rd = d0;
  std::vector<int32_t> tgt = {4, 0, 2};
  Arr L = mk(dt, logits), DL = mk(dt, d0);
  std::vector<float> lf(N);
  std::vector<double> l64(N);
  int bad[2] = {0, 0};
  ok_launch("ce_fwd", pxk_ce_fwd(0, dt, lf.data(), l64.data(), L.p(), tgt.data(), bad, N, V));
  ref_ce_fwd(losses.data(), logits.data(), tgt.data(), N, V);
  check("ce_fwd V 5 losses (fp32)", dt, tod(lf), losses, STAT_TOL);
  ok_launch("ce_bwd", pxk_ce_bwd(0, dt, DL.p(), L.p(), tgt.data(), 1.0 / N, bad, N, V));
  ref_ce_bwd(rd.data(), logits.data(), tgt.data(), 1.0, N, V);
  check("ce_bwd V 5 dlogits (+=)", dt, DL.v(), rd, tol(dt));
}

static void t_ce(int dt) {
  const int64_t N = 6, V = 301; /* V over a block of 256 and no multiple of it */
  Vd logits = rnd(dt, N * V, -4, 4), losses(N);
  std::vector<int32_t> tgt = {0, 300, 17, 256, 255, 42};
  Arr L = mk(dt, logits);
  std::vector<float> lf(N);
  std::vector<double> l64(N);
  int bad[2] = {0, 0};
  ok_launch("ce_fwd", pxk_ce_fwd(0, dt, lf.data(), l64.data(), L.p(), tgt.data(), bad, N, V));
  ref_ce_fwd(losses.data(), logits.data(), tgt.data(), N, V);
  check("ce_fwd losses (fp32)", dt, tod(lf), losses, STAT_TOL);
  check("ce_fwd losses (double)", dt, l64, losses, STAT_TOL);
  check_eq(std::string("ce_fwd no bad target ") + dname(dt), bad[0], PXK_BAD_NONE);
  const double dloss = 1.7;
  Vd d0 = rnd(dt, N * V, -0.01, 0.01), rd = d0;
  Arr DL = mk(dt, d0);
  ok_launch("ce_bwd", pxk_ce_bwd(0, dt, DL.p(), L.p(), tgt.data(), dloss / N, bad, N, V)); /* f = dloss / N (backend_cuda.c) */
  ref_ce_bwd(rd.data(), logits.data(), tgt.data(), dloss, N, V);
  check("ce_bwd dlogits (+=)", dt, DL.v(), rd, tol(dt));
  std::vector<int32_t> badt = tgt;
  badt[2] = -1; /* no ignore index in these kernels: a target outside [0, V) is reported */
  ok_launch("ce_fwd", pxk_ce_fwd(0, dt, lf.data(), l64.data(), L.p(), badt.data(), bad, N, V));
  check_eq(std::string("ce_fwd target -1 reported ") + dname(dt), bad[0] == PXK_BAD_TARGET && bad[1] == -1, 1);
  check_eq(std::string("ce_fwd target -1: loss NaN ") + dname(dt), std::isnan(lf[2]) ? 1 : 0, 1);
  bad[0] = bad[1] = 0;
  badt[2] = (int32_t)V;
  ok_launch("ce_bwd", pxk_ce_bwd(0, dt, DL.p(), L.p(), badt.data(), 1.0, bad, N, V));
  check_eq(std::string("ce_bwd target V reported ") + dname(dt), bad[0] == PXK_BAD_TARGET && bad[1] == V, 1);

  /* two vocabulary shards of Vs = 152 columns, the second with 149 real (301 in all) and 3 of padding */
  const int64_t Vs = 152, n_real[2] = {152, 149}, v0s[2] = {0, 152};
  std::vector<Arr> sh;
  std::vector<Vd> shv;
  for (int s = 0; s < 2; s++) {
    Vd v(N * Vs, 0.0);
    for (int64_t i = 0; i < N; i++)
      for (int64_t c = 0; c < Vs; c++) v[i * Vs + c] = c < n_real[s] ? logits[i * V + v0s[s] + c] : 1e4; /* padding: never read */
    shv.push_back(v);
    sh.push_back(mk(dt, v));
  }
  std::vector<float> rowmax[2] = {std::vector<float>(N), std::vector<float>(N)}, gmax(N), stats(2 * N), st1(2 * N);
  Vd rrm(N), rgm(N, -INFINITY);
  for (int s = 0; s < 2; s++) {
    ok_launch("ce_vp_max", pxk_ce_vp_max(0, dt, rowmax[s].data(), sh[s].p(), N, Vs, n_real[s]));
    ref_ce_vp_max(rrm.data(), shv[s].data(), N, Vs, n_real[s]);
    check("ce_vp_max shard " + std::to_string(s), dt, tod(rowmax[s]), rrm, 0.0);
  }
  for (int64_t i = 0; i < N; i++) gmax[i] = std::max(rowmax[0][i], rowmax[1][i]); /* the all-reduce max */
  Vd gm = tod(gmax), rstats(2 * N, 0.0), part(2 * N);
  for (int s = 0; s < 2; s++) {
    ok_launch("ce_vp_stats", pxk_ce_vp_stats(0, dt, st1.data(), sh[s].p(), tgt.data(), gmax.data(), v0s[s], N, Vs, n_real[s]));
    ref_ce_vp_stats(part.data(), shv[s].data(), tgt.data(), gm.data(), v0s[s], N, Vs, n_real[s]);
    check("ce_vp_stats shard " + std::to_string(s), dt, tod(st1), part, STAT_TOL);
    for (int64_t i = 0; i < 2 * N; i++) stats[i] += st1[i], rstats[i] += part[i]; /* the all-reduce sum */
  }
  std::vector<float> vl(N);
  std::vector<double> vl64(N);
  Vd rvl(N);
  ok_launch("ce_vp_loss", pxk_ce_vp_loss(0, vl.data(), vl64.data(), gmax.data(), stats.data(), N));
  ref_ce_vp_loss(rvl.data(), gm.data(), rstats.data(), N);
  check("ce_vp_loss (2 shards) vs the whole ce", dt, tod(vl), losses, STAT_TOL);
  check("ce_vp_loss double", dt, vl64, rvl, STAT_TOL);
  for (int s = 0; s < 2; s++) {
    Vd dv = rnd(dt, N * Vs, -0.01, 0.01), rdv = dv;
    Arr D = mk(dt, dv);
    Vd stf = tod(stats);
    ok_launch("ce_vp_bwd", pxk_ce_vp_bwd(0, dt, D.p(), sh[s].p(), tgt.data(), gmax.data(), stats.data(), v0s[s],
                                         n_real[s], dloss / N, N, Vs));
    ref_ce_vp_bwd(rdv.data(), shv[s].data(), tgt.data(), gm.data(), stf.data(), v0s[s], n_real[s], dloss, N, Vs);
    check("ce_vp_bwd shard " + std::to_string(s) + " (+=, padding kept)", dt, D.v(), rdv, tol(dt));
  }
}

/* ---- scalars, norms of gradients, AdamW, loss scaling ---- */

static void t_scalars(int dt) {
  const int64_t n = 5000;
  Vd x = rnd(dt, n, -2, 2);
  Arr X = mk(dt, x);
  const int parts = pxk_sumsq_parts(n);
  std::vector<double> part(parts);
  ok_launch("sumsq_partial", pxk_sumsq_partial(0, dt, X.p(), n, part.data(), parts));
  double acc = 0.5;
  ok_launch("sum_into", pxk_sum_into(0, &acc, PXK_F64, part.data(), parts, 1.0));
  check("sumsq_partial + sum_into", dt, Vd{acc}, Vd{0.5 + ref_sum_squares(x.data(), n)}, 1e-12);
  /* multi: tensors of 70000 and 5000 elements, chunks of PXK_CHUNK */
  Vd y = rnd(dt, 70000, -1, 1);
  Arr Y = mk(dt, y);
  PxkSpan spans[2] = {{Y.p(), 70000}, {X.p(), n}};
  PxkChunk chunks[3] = {{0, 0}, {0, PXK_CHUNK}, {1, 0}};
  std::vector<double> mp(3);
  ok_launch("sumsq_multi", pxk_sumsq_multi(0, dt, spans, chunks, 3, mp.data()));
  float accf = 0;
  ok_launch("sum_into", pxk_sum_into(0, &accf, PXK_F32, mp.data(), 3, 2.0));
  check("sumsq_multi + sum_into (f32 acc, /2)", dt, Vd{accf},
        Vd{(double)(float)((ref_sum_squares(y.data(), 70000) + ref_sum_squares(x.data(), n)) / 2)}, 0.0);
  /* check_finite: flag set by an inf or a NaN, left alone otherwise */
  int32_t flag = 0;
  ok_launch("check_finite", pxk_check_finite(0, dt, &flag, PXK_I32, X.p(), n));
  check_eq(std::string("check_finite finite: flag 0 ") + dname(dt), flag, 0);
  Vd xi = x;
  xi[4321] = INFINITY;
  Arr XI = mk(dt, xi);
  ok_launch("check_finite", pxk_check_finite(0, dt, &flag, PXK_I32, XI.p(), n));
  check_eq(std::string("check_finite inf: flag 1 ") + dname(dt), flag, !ref_all_finite(xi.data(), n));
  float ff = 0;
  xi[4321] = NAN;
  Arr XN = mk(dt, xi);
  ok_launch("check_finite", pxk_check_finite(0, dt, &ff, PXK_F32, XN.p(), n));
  check_eq(std::string("check_finite NaN: flag 1 ") + dname(dt), ff == 1.f, 1);
}

static void t_clip() {
  const double sumsq[] = {16.0, 0.01, 0.0};
  for (double s : sumsq)
    for (double mn : {1.0, 0.0}) {
      double c = -1;
      float sf = (float)s;
      ok_launch("clip_coef", pxk_clip_coef(0, &c, PXK_F64, &sf, PXK_F32, mn));
      const double want = mn > 0 ? std::min(1.0, mn / (std::sqrt(s) + 1e-6)) : 1.0; /* cuda_kernels.h */
      check("clip_coef sumsq " + std::to_string(s) + " max " + std::to_string(mn), PXK_F64, Vd{c}, Vd{want}, 1e-15);
    }
  /* a NaN sum of squares: the cpu backend's MIN(1.0, NaN) is NaN (backend_cpu.c cpu_clip_coef), so the
   * step's parameters turn NaN on both backends rather than the NaN passing as "no clipping" */
  double c = 0;
  float sn = NAN;
  ok_launch("clip_coef", pxk_clip_coef(0, &c, PXK_F64, &sn, PXK_F32, 1.0));
  check_eq("clip_coef of a NaN sumsq is NaN, as the cpu backend's", std::isnan(c) ? 1 : 0, 1);
}

static PxkAdamW adamw_consts(double lr, double b1, double b2, double eps, double wd, int t, double gs) {
  PxkAdamW o; /* as backend_cuda.c adamw_consts */
  o.lr = (float)lr, o.b1 = (float)b1, o.b2 = (float)b2, o.a1 = (float)(1 - b1), o.a2 = (float)(1 - b2);
  o.c1 = (float)(1 - std::pow(b1, t)), o.c2 = (float)(1 - std::pow(b2, t)), o.eps = (float)eps, o.wd = (float)wd;
  o.grad_scale = gs;
  return o;
}

static void t_adamw(int dt) {
  const int64_t n = 1003;
  const double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1, gs = 0.5, loss_scale = 1.0 / 1024;
  const int t = 3;
  Vd p = rnd(dt, n, -1, 1), g = rnd(dt, n, -3, 3), m = rnd(dt, n, -0.1, 0.1), v = rnd(dt, n, 0, 0.05);
  const Vd g1 = g; /* unscaled, for the multi-tensor kernel */
  for (auto &e : g) e = round_to(dt, e * 1024); /* scaled gradients: the scale (1/1024) undoes the loss scale */
  Vd rp = p, rm = m, rv = v;
  ref_adamw(rp.data(), g.data(), rm.data(), rv.data(), lr, b1, b2, eps, wd, t, gs * loss_scale, n);
  const PxkAdamW o = adamw_consts(lr, b1, b2, eps, wd, t, gs);
  {
    Arr P = mk(dt, p), G = mk(dt, g), M = mk(dt, m), Vv = mk(dt, v);
    const int32_t skip = 0;
    ok_launch("adamw", pxk_adamw(0, dt, P.p(), G.p(), M.p(), Vv.p(), n, o, &loss_scale, PXK_F64, &skip, PXK_I32));
    check("adamw p (scale 1/1024, no skip)", dt, P.v(), rp, tol(dt));
    check("adamw m", dt, M.v(), rm, tol(dt));
    check("adamw v", dt, Vv.v(), rv, tol(dt));
    /* an overflow found (skip != 0): nothing changes */
    Vd pb = P.v(), mb = M.v(), vb = Vv.v();
    const double skipd = 1;
    ok_launch("adamw", pxk_adamw(0, dt, P.p(), G.p(), M.p(), Vv.p(), n, o, &loss_scale, PXK_F64, &skipd, PXK_F64));
    check("adamw skipped: p unchanged", dt, P.v(), pb, 0.0);
    check("adamw skipped: m, v unchanged", dt, M.v(), mb, 0.0);
    check("adamw skipped: v unchanged", dt, Vv.v(), vb, 0.0);
  }
  /* multi-tensor: a tensor of 70000 (two chunks) and this one, own weight decays; grads f32 or the type */
  for (int gdt : {dt, (int)PXK_F32}) {
    if (gdt == PXK_F32 && dt == PXK_F32) break; /* f32 once */
    const int64_t n2 = 70000;
    Vd p2 = rnd(dt, n2, -1, 1), g2 = rnd(gdt, n2, -3, 3), m2 = rnd(dt, n2, -0.1, 0.1), v2 = rnd(dt, n2, 0, 0.05);
    Vd gg = g1;
    for (auto &e : gg) e = round_to(gdt, e);
    Vd rp2 = p2, rm2 = m2, rv2 = v2, rp1 = p, rm1 = m, rv1 = v;
    ref_adamw(rp2.data(), g2.data(), rm2.data(), rv2.data(), lr, b1, b2, eps, 0.0, t, gs, n2);
    ref_adamw(rp1.data(), gg.data(), rm1.data(), rv1.data(), lr, b1, b2, eps, wd, t, gs, n);
    Arr P2 = mk(dt, p2), G2 = mk(gdt, g2), M2 = mk(dt, m2), V2 = mk(dt, v2), P1 = mk(dt, p), G1 = mk(gdt, gg),
        M1 = mk(dt, m), V1 = mk(dt, v);
    PxkAdamWTensor ts[2] = {{P2.p(), G2.p(), M2.p(), V2.p(), n2, 0.f}, {P1.p(), G1.p(), M1.p(), V1.p(), n, (float)wd}};
    PxkChunk ch[3] = {{0, 0}, {0, PXK_CHUNK}, {1, 0}};
    ok_launch("adamw_multi", pxk_adamw_multi(0, dt, gdt, ts, ch, 3, o, nullptr, 0, nullptr, 0));
    const std::string tag = std::string(" (grads ") + dname(gdt) + ")";
    check("adamw_multi p, 2 chunks" + tag, dt, P2.v(), rp2, tol(dt));
    check("adamw_multi m, 2 chunks" + tag, dt, M2.v(), rm2, tol(dt));
    check("adamw_multi p, own wd" + tag, dt, P1.v(), rp1, tol(dt));
    check("adamw_multi v, own wd" + tag, dt, V1.v(), rv1, tol(dt));
  }
}

/* ---- launch geometry ---- */
static void t_geometry() {
  std::vector<float> x(4), m(1), r(1), w(4, 1.f);
  check_eq("layernorm_fwd of 0 rows: a grid of 0 is an error",
           pxk_layernorm_fwd(0, PXK_F32, x.data(), m.data(), r.data(), x.data(), w.data(), nullptr, 1e-5, 0, 4),
           cudaErrorInvalidConfiguration);
  check_eq("dtype i32 refused by gelu", pxk_gelu_fwd(0, PXK_I32, x.data(), x.data(), 4), cudaErrorInvalidValue);
}

int main() {
  for (int dt : DTS) {
    t_bias_colsum(dt);
    t_embedding(dt);
    t_norms(dt);
    t_elementwise(dt);
    t_moe(dt);
    t_rope(dt);
    t_attention(dt, 64, 37, 4, 2, pxk_att_saves_probs(dt, 37)); /* GQA 2:1 */
    t_attention(dt, 80, 37, 4, 2, 0);                           /* the lse state whatever the type; hd no multiple of 32 */
    t_attention(dt, 256, 9, 2, 2, pxk_att_saves_probs(dt, 9));   /* the largest head, no GQA */
    t_attention(dt, 32, 1, 2, 1, pxk_att_saves_probs(dt, 1));    /* T 1: probabilities saved for every type */
    t_attn_block(dt);
    t_att_tc(dt);
    t_ce(dt);
    t_ce_small(dt);
    t_scalars(dt);
    t_adamw(dt);
    std::fflush(stdout);
  }
  t_reduce_cast();
  t_clip();
  t_geometry();
  std::printf("# kernels emu: %d of %d comparison(s) out of bounds\n", failures, checks);
  return failures ? 1 : 0;
}
