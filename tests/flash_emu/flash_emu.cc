/* flash_emu.cc — exec/cuda/flash_attn.cu's kernels run on the host (emu.h:
 * 128 threads per CTA, CTAs one after another) against a float64 reference
 * of causal attention, so that their indexing, masking, online softmax,
 * GQA, the block ops' positions and the barriers are checked on every build,
 * GPU or not (the GPU run is test_cuda_backend /cuda/attention-flash, in
 * scripts/gpu-check.sh). What the emulation cannot show: anything about the
 * hardware (wmma fragment layouts are the API's documented element order
 * here, not the hardware's register mapping, which the API hides anyway),
 * timing, and the launchers (not compiled here: PX_FLASH_EMULATE).
 *
 * Inputs are random, rounded to the kernel's type first; the reference works
 * on those values in double (scores, softmax, P, dS unrounded). Errors are
 * max |emu - ref| / max |ref| per tensor; bounds: bf16 8e-3, f16 1e-3, four
 * units of roundoff (2^-9, 2^-12): the kernels round P and dS to the input
 * type before their products and out, dq, dk, dv once, a few roundings
 * each (tighter than test_cuda_backend's tol(), 5e-2 / 1e-2, which a 1 %
 * error in P would pass: here the products are exact in fp32 and the
 * summation order is the only other difference); lse to 1e-4 of max |lse|,
 * and -inf exactly where a row sees no key. Gradients start from random
 * values (the kernels add into them). Shared memory is filled with NaN bits
 * before each CTA, so a read of a tile element no thread wrote shows.
 *   usage: flash_emu   (exit 0 all within bounds, 1 otherwise) */
#include "flash_attn.cu"
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

thread_local EmuDim threadIdx, blockIdx;
EmuCta *emu_cta;
namespace pxflash {
alignas(128) unsigned char fl_smem[FlashLayout<128>::MAX];
}

/* run kernel() as grid CTAs of THREADS threads */
template <class F> static void launch(unsigned grid, size_t smem, F kernel) {
  for (unsigned b = 0; b < grid; b++) {
    EmuCta cta;
    emu_cta = &cta;
    std::memset(pxflash::fl_smem, 0xff, smem); /* NaN in fp32, bf16 and f16 */
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < (unsigned)THREADS; t++)
      ts.emplace_back([=] {
        threadIdx = EmuDim{t, 0, 0};
        blockIdx = EmuDim{b, 0, 0};
        kernel();
      });
    for (auto &th : ts) th.join();
  }
}

struct Pos {
  int split, start0, start1;
  int at(int t) const { return split <= 0 ? t : t < split ? start0 + t : start1 + (t - split); }
};

struct Case {
  const char *what;
  int dt; /* PXK_BF16 or PXK_F16 */
  int B, Tq, Tk, H, KV, hd;
  bool whole;    /* the whole attention: q = kv = one qkv, dq = dkv = one dqkv, D formed by the kernel */
  Pos qp, kp;
};

static std::mt19937_64 rng(20261202);
static float round_to(int dt, float v) {
  return dt == PXK_BF16 ? __bfloat162float(__float2bfloat16_rn(v)) : __half2float(__float2half_rn(v));
}
static std::vector<float> rnd(int dt, size_t n, double amp) {
  std::uniform_real_distribution<double> u(-amp, amp);
  std::vector<float> v(n);
  for (auto &x : v) x = round_to(dt, (float)u(rng));
  return v;
}
template <class T> static std::vector<T> to_t(const std::vector<float> &v) {
  std::vector<T> r(v.size());
  for (size_t i = 0; i < v.size(); i++) {
    if constexpr (std::is_same<T, bf16>::value) r[i] = __float2bfloat16_rn(v[i]);
    else r[i] = __float2half_rn(v[i]);
  }
  return r;
}
template <class T> static std::vector<double> from_t(const std::vector<T> &v) {
  std::vector<double> r(v.size());
  for (size_t i = 0; i < v.size(); i++) r[i] = emu_f(v[i]);
  return r;
}
static double rel_err(const std::vector<double> &got, const std::vector<double> &want) {
  double d = 0, m = 0;
  for (size_t i = 0; i < want.size(); i++) {
    double e = std::fabs(got[i] - want[i]);
    d = std::isnan(e) ? INFINITY : std::max(d, e);
    m = std::max(m, std::fabs(want[i]));
  }
  return m > 0 ? d / m : d;
}

static int failures;
static void report(const Case &c, const char *what, double err, double bound) {
  bool ok = err <= bound;
  std::printf("# flash emu: %-44s %-4s %-10s max err %.2e (bound %.0e) %s\n", c.what, c.dt == PXK_BF16 ? "bf16" : "f16",
              what, err, bound, ok ? "ok" : "FAIL");
  if (!ok) failures++;
}

template <class T, int HD> static void run_case(const Case &c) {
  const int B = c.B, Tq = c.Tq, Tk = c.Tk, H = c.H, KV = c.KV, per = H / KV;
  const int64_t W = (int64_t)(H + 2 * KV) * HD, C = (int64_t)H * HD;
  const double scale = 1.0 / std::sqrt((double)HD);
  /* inputs: q (B*Tq, W), kv (B*Tk, W) in the qkv layout; the whole attention uses q for both */
  std::vector<float> qf = rnd(c.dt, (size_t)B * Tq * W, 1.5);
  std::vector<float> kvf = c.whole ? qf : rnd(c.dt, (size_t)B * Tk * W, 1.5);
  std::vector<float> doutf = rnd(c.dt, (size_t)B * Tq * C, 1.0);
  std::vector<float> dqf = rnd(c.dt, (size_t)B * Tq * W, 1.0);                             /* dq (B*Tq, W) */
  std::vector<float> dkvf = c.whole ? dqf : rnd(c.dt, (size_t)B * Tk * W, 1.0);            /* dkv (B*Tk, W) */
  auto Q = [&](int b, int t, int h, int d) { return (double)qf[((int64_t)b * Tq + t) * W + (int64_t)h * HD + d]; };
  auto K = [&](int b, int j, int g, int d) { return (double)kvf[((int64_t)b * Tk + j) * W + (int64_t)(H + g) * HD + d]; };
  auto V = [&](int b, int j, int g, int d) {
    return (double)kvf[((int64_t)b * Tk + j) * W + (int64_t)(H + KV + g) * HD + d];
  };
  auto dO = [&](int b, int t, int h, int d) { return (double)doutf[((int64_t)b * Tq + t) * C + (int64_t)h * HD + d]; };

  /* the reference, in double */
  std::vector<double> out_r((size_t)B * Tq * C, 0.0), lse_r((size_t)B * H * Tq, -INFINITY);
  std::vector<double> dq_r(dqf.begin(), dqf.end()), dkv_r(dkvf.begin(), dkvf.end());
  std::vector<double> &dk_r = c.whole ? dq_r : dkv_r;
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      const int g = h / per;
      for (int i = 0; i < Tq; i++) {
        std::vector<double> s(Tk, -INFINITY), p(Tk, 0.0), dp(Tk, 0.0);
        double mx = -INFINITY;
        for (int j = 0; j < Tk; j++) {
          if (c.kp.at(j) > c.qp.at(i)) continue;
          double a = 0;
          for (int d = 0; d < HD; d++) a += Q(b, i, h, d) * K(b, j, g, d);
          s[j] = a * scale;
          mx = std::max(mx, s[j]);
        }
        if (mx == -INFINITY) continue; /* out 0, lse -inf, no gradient */
        double l = 0;
        for (int j = 0; j < Tk; j++) l += s[j] == -INFINITY ? 0 : std::exp(s[j] - mx);
        const double lse = mx + std::log(l);
        lse_r[((size_t)b * H + h) * Tq + i] = lse;
        double D = 0;
        for (int j = 0; j < Tk; j++) {
          p[j] = s[j] == -INFINITY ? 0 : std::exp(s[j] - lse);
          for (int d = 0; d < HD; d++) dp[j] += dO(b, i, h, d) * V(b, j, g, d);
        }
        for (int d = 0; d < HD; d++) {
          double o = 0;
          for (int j = 0; j < Tk; j++) o += p[j] * V(b, j, g, d);
          out_r[((size_t)b * Tq + i) * C + (size_t)h * HD + d] = o;
          D += o * dO(b, i, h, d);
        }
        for (int j = 0; j < Tk; j++) {
          if (p[j] == 0) continue;
          const double ds = p[j] * (dp[j] - D) * scale;
          for (int d = 0; d < HD; d++) {
            dq_r[((size_t)b * Tq + i) * W + (size_t)h * HD + d] += ds * K(b, j, g, d);
            dk_r[((size_t)b * Tk + j) * W + (size_t)(H + g) * HD + d] += ds * Q(b, i, h, d);
            dk_r[((size_t)b * Tk + j) * W + (size_t)(H + KV + g) * HD + d] += p[j] * dO(b, i, h, d);
          }
        }
      }
    }

  /* the kernels */
  std::vector<T> q = to_t<T>(qf), kv = to_t<T>(kvf), dout = to_t<T>(doutf), dq = to_t<T>(dqf), dkv = to_t<T>(dkvf);
  std::vector<T> out = to_t<T>(rnd(c.dt, (size_t)B * Tq * C, 1.0)); /* overwritten */
  std::vector<float> lse((size_t)B * H * Tq, 12345.f), D((size_t)B * H * Tq, 0.f);
  const T *kvp = c.whole ? q.data() : kv.data();
  T *dkvp = c.whole ? dq.data() : dkv.data();
  const PxkPos qp = {c.qp.split, c.qp.start0, c.qp.start1}, kp = {c.kp.split, c.kp.start0, c.kp.start1};
  const FlashGeo g = flash_geo(B, Tq, Tk, H, KV, HD, qp, kp);
  launch(flash_grid(Tq, (int64_t)B * H), FlashLayout<HD>::FWD,
         [&] { k_flash_fwd<T, HD>(out.data(), lse.data(), q.data(), kvp, g); });
  int d_given = 0;
  if (!c.whole) { /* the block ops' D: rowsum(dout * out) of the (rounded) out, as pxk_att_rowdot */
    d_given = 1;
    for (int b = 0; b < B; b++)
      for (int h = 0; h < H; h++)
        for (int i = 0; i < Tq; i++) {
          float s = 0;
          for (int d = 0; d < HD; d++) {
            const size_t o = ((size_t)b * Tq + i) * C + (size_t)h * HD + d;
            s += emu_f(dout[o]) * emu_f(out[o]);
          }
          D[((size_t)b * H + h) * Tq + i] = s;
        }
  }
  launch(flash_grid(Tq, (int64_t)B * H), FlashLayout<HD>::DQ,
         [&] { k_flash_bwd_dq<T, HD>(dq.data(), D.data(), d_given, dout.data(), q.data(), kvp, lse.data(), g); });
  launch(flash_grid(Tk, (int64_t)B * KV), FlashLayout<HD>::DKV,
         [&] { k_flash_bwd_kv<T, HD>(dkvp, D.data(), dout.data(), q.data(), kvp, lse.data(), g); });

  const double tol = c.dt == PXK_BF16 ? 8e-3 : 1e-3; /* 4 units of roundoff, 4 * 2^-9 and 4 * 2^-12 (header) */
  report(c, "out", rel_err(from_t(out), out_r), tol);
  double ld = 0, lm = 0;
  for (size_t r = 0; r < lse_r.size(); r++) {
    if (lse_r[r] == -INFINITY || lse[r] == -INFINITY) {
      if (!(lse_r[r] == -INFINITY && lse[r] == -INFINITY)) ld = INFINITY;
      continue;
    }
    ld = std::isnan(lse[r]) ? INFINITY : std::max(ld, std::fabs(lse[r] - lse_r[r]));
    lm = std::max(lm, std::fabs(lse_r[r]));
  }
  report(c, "lse", lm > 0 ? ld / lm : ld, 1e-4);
  report(c, c.whole ? "dqkv (+=)" : "dq (+=)", rel_err(from_t(dq), dq_r), tol);
  if (!c.whole) report(c, "dkv (+=)", rel_err(from_t(dkv), dkv_r), tol);
}

static void run(const Case &c) {
  switch (c.hd) {
#define EMU_CASE(hdv)                                                                              \
  case hdv:                                                                                        \
    if (c.dt == PXK_BF16) run_case<bf16, hdv>(c);                                                  \
    else run_case<f16, hdv>(c);                                                                    \
    break;
    FLASH_HDS(EMU_CASE)
  default: std::printf("# flash emu: head_dim %d is not instantiated\n", c.hd); failures++;
  }
  std::fflush(stdout);
}

int main() {
  const Pos at_t = {0, 0, 0};
  /* ring attention of test_cuda_backend's test_attn_blocks with chunks of 40:
   * rank 1 holds positions 40..79 and 80..119, rank 0 0..39 and 120..159 */
  const Pos r1 = {40, 40, 80}, r0 = {40, 0, 120};
  const Pos later = {64, 64, 0}; /* 64 keys, all before the split: positions 64 + t */
  const Case cases[] = {
    {"whole B1 T100 H8 KV2 hd64 (GQA 4:1)", PXK_BF16, 1, 100, 100, 8, 2, 64, true, at_t, at_t},
    {"whole B2 T130 H2 KV1 hd128 (tiles 64 64 2)", PXK_F16, 2, 130, 130, 2, 1, 128, true, at_t, at_t},
    {"whole B1 T64 H2 KV2 hd128 (one tile)", PXK_BF16, 1, 64, 64, 2, 2, 128, true, at_t, at_t},
    {"whole B1 T77 H4 KV2 hd64", PXK_F16, 1, 77, 77, 4, 2, 64, true, at_t, at_t},
    {"whole B1 T70 H2 KV1 hd80", PXK_BF16, 1, 70, 70, 2, 1, 80, true, at_t, at_t},
    {"whole B1 T90 H3 KV3 hd96", PXK_F16, 1, 90, 90, 3, 3, 96, true, at_t, at_t},
    {"block rank 1 own (split in a tile)", PXK_F16, 1, 80, 80, 4, 2, 64, false, r1, r1},
    {"block rank 1 vs rank 0's keys", PXK_BF16, 2, 80, 80, 4, 2, 64, false, r1, r0},
    {"block rank 0 vs rank 1's keys (rows see none)", PXK_BF16, 1, 80, 80, 4, 2, 64, false, r0, r1},
    /* keys at positions 64..127: query tile 0 (0..63) skips every key tile, the
     * dK dV kernel skips query tile 0 */
    {"block keys at 64.. (a tile sees no key tile)", PXK_F16, 1, 128, 64, 2, 1, 64, false, at_t, later},
  };
  for (const Case &c : cases) run(c);
  std::printf("# flash emu: %d comparison(s) out of bounds\n", failures);
  return failures ? 1 : 0;
}
