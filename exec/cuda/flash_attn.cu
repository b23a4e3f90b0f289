/* flash_attn.cu — fused causal attention on tensor cores (FlashAttention-2
 * style), the opt-in path of PX_CUDA_ATTN=flash (backend_cuda.c; docs/backend.md
 * "Fused attention"). Launchers declared in cuda_kernels.h (pxk_flash_*);
 * tests/flash_emu runs these kernels on the host.
 *
 * Same layouts and saved state as the attention kernels of kernels.cu:
 *  - q, kv: rows of W = (H + 2 KV) hd elements (query heads, key heads, value
 *    heads; the qkv layout), Tq query rows and Tk key rows per sequence;
 *    query head h reads kv head h / (H/KV) (GQA);
 *  - out, dout: rows of H*hd (B*Tq rows);
 *  - lse: fp32 (B*H, Tq), each query row's log-sum-exp of the scaled scores
 *    (scale 1/sqrt(hd)), -INFINITY for a row that sees no key (out 0 there);
 *  - D: fp32 (B*H, Tq), D = sum_j P_ij dP_ij = rowsum(dO * O);
 *  - causal by global positions (pos_of, PxkPos): query row t sees key row j
 *    iff kpos(j) <= qpos(t), so the same kernels serve the whole attention
 *    (positions 0..T-1 on both sides) and the ring / CP block ops.
 *  - forward overwrites out and lse; backward adds into dq and dkv (read, add
 *    in fp32, round once), as every backward op (cuda_kernels.h).
 *
 * Tiles: BR = 64 query rows x BC = 64 key rows, 4 warps per CTA, warp w owns
 * rows 16w..16w+15 of its CTA's tile. Products on tensor cores through
 * nvcuda::wmma 16x16x16 fragments (bf16 / f16 inputs, fp32 accumulators);
 * softmax, masks and statistics in fp32. No score tile leaves shared memory.
 *  - forward: one CTA per (query tile, b, h); over the key tiles a query tile
 *    can see (a key tile whose smallest position is above the query tile's
 *    largest is skipped; per-element masking everywhere else): S = Q K^T,
 *    online softmax per row (running max m, sum l), O = O * corr + P V with
 *    P rounded to the input type (as FlashAttention-2 does), O in fp32 in
 *    shared memory; out = O / l, lse = m + log l.
 *  - backward, dQ: one CTA per (query tile, b, h); when D is not given (the
 *    whole attention: the op has no out) a first pass over the key tiles forms
 *    D = sum_j P dP and writes it; then dS = P (dP - D) scale (rounded to the
 *    input type), dQ += dS K in fp32 fragments, added into dq once. No atomics.
 *  - backward, dK dV: one CTA per (key tile, b, kv head), over the query heads
 *    of the group and the query tiles that can see the key tile: S^T = K Q^T,
 *    dP^T = V dO^T, P^T and dS^T, dV += P^T dO, dK += dS^T Q in fp32 fragments,
 *    added into dkv once. No two CTAs write the same dq or dkv element.
 * Shared memory (FlashLayout below) is above the default 48 KB: each launcher
 * sets cudaFuncAttributeMaxDynamicSharedMemorySize and returns its error;
 * backend_cuda.c takes this path only when pxk_flash_smem fits the device's
 * opt-in limit and the device is sm_80 or newer (bf16 wmma). */
#include "cuda_kernels.h"
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <limits.h>
#include <math.h>
#include <mma.h>
#include <type_traits>

/* a named namespace, not an anonymous one: on sm_7x (the kernels trap there) the
 * unused helpers of internal linkage would draw warnings */
namespace pxflash {

using namespace nvcuda;
typedef __nv_bfloat16 bf16;
typedef __half f16;

__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f(f16 x) { return __half2float(x); }
__device__ __forceinline__ void put(bf16 *p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void put(f16 *p, float v) { *p = __float2half_rn(v); }

__device__ __forceinline__ float fl_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float fl_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/* kernels.cu pos_of: token t at t < split ? start0 + t : start1 + (t - split) */
__device__ __forceinline__ int fpos(PxkPos p, int t) {
  return p.split <= 0 ? t : t < p.split ? p.start0 + t : p.start1 + (t - p.split);
}
/* The smallest / largest position of rows [t0, t1), t1 > t0: positions rise
 * with t within [0, split) and within [split, T), so the extremes are at the
 * ends of the (at most two) runs the range covers. */
__device__ __forceinline__ int pos_min(PxkPos p, int t0, int t1) {
  int m = fpos(p, t0);
  if (p.split > t0 && p.split < t1) m = min(m, fpos(p, p.split));
  return m;
}
__device__ __forceinline__ int pos_max(PxkPos p, int t0, int t1) {
  int m = fpos(p, t1 - 1);
  if (p.split > t0 && p.split < t1) m = max(m, fpos(p, p.split - 1));
  return m;
}

constexpr int BR = 64, BC = 64; /* query / key rows of a tile */
constexpr int WARPS = 4, THREADS = 32 * WARPS;
static_assert(BR == 16 * WARPS && BC == BR, "a warp owns 16 rows of a tile; S^T reuses S's layout");
static_assert(BC == 64, "the softmax loops give each lane columns lane and lane + 32");

constexpr size_t rnd128(size_t b) { return (b + 127) / 128 * 128; }

/* The dynamic shared memory of the three kernels for head_dim HD (each region
 * 128-byte aligned; leading dimensions padded: multiples of 8 halves / 4
 * floats as wmma needs, and 16-row fragment offsets stay 32-byte aligned). */
template <int HD> struct FlashLayout {
  static_assert(HD % 16 == 0 && HD >= 16, "head_dim in whole 16-column fragments");
  static constexpr int LD = HD + 8;   /* a Q, K, V or dO tile: 64 rows x LD halves */
  static constexpr int LDS = BC + 4;  /* an fp32 score tile (S, dP, S^T, dP^T): 64 x LDS floats */
  static constexpr int LDP = BC + 8;  /* a half tile of P, dS (or transposed): 64 x LDP halves */
  static constexpr int LDO = HD + 4;  /* the forward's fp32 O: 64 x LDO floats */
  static constexpr size_t HT = rnd128((size_t)64 * LD * 2);
  static constexpr size_t FT = rnd128((size_t)64 * LDS * 4);
  static constexpr size_t PT = rnd128((size_t)64 * LDP * 2);
  static constexpr size_t OT = rnd128((size_t)64 * LDO * 4);
  static constexpr size_t ROW = rnd128((size_t)64 * 4);            /* 64 fp32 row statistics */
  static constexpr size_t EPI = rnd128((size_t)WARPS * 16 * 16 * 4); /* a 16x16 fp32 fragment per warp */
  /* forward: Q, K, V; S; P; O; m, l */
  static constexpr size_t FWD = 3 * HT + FT + PT + OT + 2 * ROW;
  /* dQ: Q, dO, K, V; S, dP; dS; lse, D; staging */
  static constexpr size_t DQ = 4 * HT + 2 * FT + PT + 2 * ROW + EPI;
  /* dK dV: K, V, Q, dO; S^T, dP^T; P^T, dS^T; lse, D; staging */
  static constexpr size_t DKV = 4 * HT + 2 * FT + 2 * PT + 2 * ROW + EPI;
  static constexpr size_t MAX = FWD > DQ ? (FWD > DKV ? FWD : DKV) : (DQ > DKV ? DQ : DKV);
};

/* The head_dims instantiated: GPT-2's 64, Phi-2's 80, Phi-3-mini's 96,
 * Llama's 128. Any multiple of 16 would do; each costs compile time, and 256
 * would need 256 accumulator registers per thread in the dK dV kernel.
 * tests/flash_emu sizes its shared memory by FlashLayout<128>: no larger one. */
#define FLASH_HDS(X) X(64) X(80) X(96) X(128)

/* The geometry of a call (kernels.cu AttGeo): B sequences of Tq query rows
 * and Tk key rows, H query heads and KV kv heads, rows of W elements. */
struct FlashGeo {
  int B, Tq, Tk, H, KV;
  int64_t W; /* (H + 2 KV) hd */
  float scale;
  PxkPos qp, kp;
};

/* dst (64 x LD halves, shared) = rows [0, valid) of src (row stride `stride`
 * elements, HD contiguous from src), zeros below. 16-byte copies: src and
 * stride*2 are 16-byte aligned (backend_cuda.c checks the base pointers; HD,
 * so every row length and head offset, is a multiple of 16 elements). */
template <int HD, typename T> __device__ __forceinline__ void load_tile(T *dst, const T *src, int64_t stride, int valid) {
  constexpr int CH = HD / 8, LD = FlashLayout<HD>::LD;
  for (int c = threadIdx.x; c < 64 * CH; c += THREADS) {
    const int r = c / CH, k = c % CH;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (r < valid) v = *(const uint4 *)(src + (int64_t)r * stride + k * 8);
    *(uint4 *)(dst + r * LD + k * 8) = v;
  }
}

typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> Acc;
template <typename T> using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major>;
template <typename T> using FragBr = wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major>;
template <typename T> using FragBc = wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major>;

/* out (16 x 64 fp32, row-major, ld LDS) = A (16 x HD, row-major, ld LD) B^T,
 * B (64 x HD, row-major, ld LD): the 16 rows' scores against 64 rows. */
template <int HD, typename T> __device__ __forceinline__ void rows_x_rowsT(float *out, const T *A, const T *Bm) {
  constexpr int LD = FlashLayout<HD>::LD, LDS = FlashLayout<HD>::LDS;
  Acc acc[BC / 16];
#pragma unroll
  for (int n = 0; n < BC / 16; n++) wmma::fill_fragment(acc[n], 0.f);
#pragma unroll
  for (int kk = 0; kk < HD / 16; kk++) {
    FragA<T> a;
    wmma::load_matrix_sync(a, A + kk * 16, LD);
#pragma unroll
    for (int n = 0; n < BC / 16; n++) {
      FragBc<T> b; /* element (k = d, n = j) at Bm[j * LD + d] */
      wmma::load_matrix_sync(b, Bm + n * 16 * LD + kk * 16, LD);
      wmma::mma_sync(acc[n], a, b, acc[n]);
    }
  }
#pragma unroll
  for (int n = 0; n < BC / 16; n++) wmma::store_matrix_sync(out + n * 16, acc[n], LDS, wmma::mem_row_major);
}

/* acc[n] (16 x HD in fragments of 16 columns) += A (16 x 64, row-major, ld
 * LDP) Bm (64 x HD, row-major, ld LD) */
template <int HD, typename T> __device__ __forceinline__ void acc_rows_x(Acc *acc, const T *A, const T *Bm) {
  constexpr int LD = FlashLayout<HD>::LD, LDP = FlashLayout<HD>::LDP;
#pragma unroll
  for (int kk = 0; kk < BC / 16; kk++) {
    FragA<T> a;
    wmma::load_matrix_sync(a, A + kk * 16, LDP);
#pragma unroll
    for (int n = 0; n < HD / 16; n++) {
      FragBr<T> b; /* element (k = j, n = d) at Bm[j * LD + d] */
      wmma::load_matrix_sync(b, Bm + kk * 16 * LD + n * 16, LD);
      wmma::mma_sync(acc[n], a, b, acc[n]);
    }
  }
}

/* dst rows [r0, r0 + 16) (each row `stride` elements apart, HD columns from
 * dst) += acc (16 x HD fp32), rows at or past `valid` (relative to r0) left
 * alone; through the warp's 16x16 staging tile st; one rounding per element. */
template <int HD, typename T>
__device__ __forceinline__ void add_rows(T *dst, int64_t stride, int valid, Acc *acc, float *st) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int n = 0; n < HD / 16; n++) {
    wmma::store_matrix_sync(st, acc[n], 16, wmma::mem_row_major);
    __syncwarp();
    for (int e = lane; e < 256; e += 32) {
      const int r = e / 16, c = e % 16;
      if (r < valid) {
        T *p = dst + (int64_t)r * stride + n * 16 + c;
        put(p, to_f(*p) + st[e]);
      }
    }
    __syncwarp(); /* st is rewritten by the next fragment */
  }
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define FLASH_ARCH_OK 1 /* bf16 wmma fragments: sm_80 and newer (backend_cuda.c checks the device) */
#else
#define FLASH_ARCH_OK 0
#endif

/* ---- forward: grid (query tiles) x B x H flattened, THREADS threads ---- */
template <typename T, int HD>
__global__ void __launch_bounds__(THREADS) k_flash_fwd(T *out, float *lse, const T *q, const T *kv, FlashGeo g) {
#if FLASH_ARCH_OK
  typedef FlashLayout<HD> L;
  extern __shared__ __align__(128) unsigned char fl_smem[];
  T *Qs = (T *)fl_smem;                     /* 64 x LD: the CTA's query rows */
  T *Ks = (T *)(fl_smem + L::HT);           /* 64 x LD: a key tile */
  T *Vs = (T *)(fl_smem + 2 * L::HT);       /* 64 x LD: its value rows */
  float *Ss = (float *)(fl_smem + 3 * L::HT);              /* 64 x LDS: S = Q K^T (unscaled) */
  T *Ps = (T *)(fl_smem + 3 * L::HT + L::FT);              /* 64 x LDP: P of the tile */
  float *Os = (float *)(fl_smem + 3 * L::HT + L::FT + L::PT); /* 64 x LDO: the running O */
  float *Ms = (float *)(fl_smem + 3 * L::HT + L::FT + L::PT + L::OT); /* 64: running max (scaled scores) */
  float *Ls = Ms + L::ROW / 4;                                        /* 64: running sum */
  const int nqt = (g.Tq + BR - 1) / BR;
  const int qt = (int)(blockIdx.x % nqt), bh = (int)(blockIdx.x / nqt);
  const int b = bh / g.H, h = bh % g.H, kvh = h / (g.H / g.KV);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r0 = 16 * warp;
  const int q0 = qt * BR, nq = min(BR, g.Tq - q0);
  const int hd = HD;
  const T *qb = q + ((int64_t)b * g.Tq + q0) * g.W + (int64_t)h * hd;
  const T *kb = kv + (int64_t)b * g.Tk * g.W + (int64_t)(g.H + kvh) * hd;
  const T *vb = kv + (int64_t)b * g.Tk * g.W + (int64_t)(g.H + g.KV + kvh) * hd;
  load_tile<HD>(Qs, qb, g.W, nq);
  for (int e = threadIdx.x; e < 64 * L::LDO; e += THREADS) Os[e] = 0.f;
  for (int r = threadIdx.x; r < 64; r += THREADS) {
    Ms[r] = -INFINITY;
    Ls[r] = 0.f;
  }
  const int qmax = pos_max(g.qp, q0, q0 + nq);
  __syncthreads(); /* Q, O, m, l in place even when every key tile is skipped */
  for (int k0 = 0; k0 < g.Tk; k0 += BC) {
    const int nk = min(BC, g.Tk - k0);
    if (pos_min(g.kp, k0, k0 + nk) > qmax) continue; /* no query of the tile sees a key of it (CTA-uniform) */
    __syncthreads(); /* every warp is done with the previous K, V (and Q, O, stats are written) */
    load_tile<HD>(Ks, kb + (int64_t)k0 * g.W, g.W, nk);
    load_tile<HD>(Vs, vb + (int64_t)k0 * g.W, g.W, nk);
    __syncthreads();
    rows_x_rowsT<HD>(Ss + r0 * L::LDS, Qs + r0 * L::LD, Ks);
    __syncwarp();
    /* online softmax of the warp's 16 rows: lane holds columns lane and lane + 32 */
    for (int r = r0; r < r0 + 16; r++) {
      const int i = q0 + r;
      const bool qin = r < nq;
      const int pi = qin ? fpos(g.qp, i) : 0;
      float s[2];
#pragma unroll
      for (int u = 0; u < 2; u++) {
        const int c = lane + 32 * u;
        const bool vis = qin && c < nk && fpos(g.kp, k0 + c) <= pi;
        s[u] = vis ? Ss[r * L::LDS + c] * g.scale : -INFINITY;
      }
      const float mold = Ms[r], mnew = fmaxf(mold, fl_warp_max(fmaxf(s[0], s[1])));
      /* mnew = -inf: nothing seen yet, p = 0 and O, l stay 0 (corr 1) */
      const float corr = mnew == -INFINITY ? 1.f : expf(mold - mnew);
      float p[2];
#pragma unroll
      for (int u = 0; u < 2; u++) {
        p[u] = s[u] == -INFINITY ? 0.f : expf(s[u] - mnew);
        put(&Ps[r * L::LDP + lane + 32 * u], p[u]);
      }
      const float psum = fl_warp_sum(p[0] + p[1]);
      for (int d = lane; d < hd; d += 32) Os[r * L::LDO + d] *= corr;
      __syncwarp(); /* every lane has read Ms[r], Ls[r] */
      if (lane == 0) {
        Ms[r] = mnew;
        Ls[r] = Ls[r] * corr + psum;
      }
    }
    __syncwarp();
    /* O (the warp's 16 rows) += P V */
    Acc o[HD / 16];
#pragma unroll
    for (int n = 0; n < HD / 16; n++)
      wmma::load_matrix_sync(o[n], Os + r0 * L::LDO + n * 16, L::LDO, wmma::mem_row_major);
    acc_rows_x<HD>(o, Ps + r0 * L::LDP, Vs);
#pragma unroll
    for (int n = 0; n < HD / 16; n++)
      wmma::store_matrix_sync(Os + r0 * L::LDO + n * 16, o[n], L::LDO, wmma::mem_row_major);
    __syncwarp();
  }
  __syncwarp();
  /* out = O / l (0 for a row that saw no key), lse = m + log l (-inf there) */
  const int64_t C = (int64_t)g.H * hd;
  for (int r = r0; r < r0 + 16 && r < nq; r++) {
    const int i = q0 + r;
    const float l = Ls[r];
    T *orow = out + ((int64_t)b * g.Tq + i) * C + (int64_t)h * hd;
    for (int d = lane; d < hd; d += 32) put(&orow[d], l > 0.f ? Os[r * L::LDO + d] / l : 0.f);
    if (lane == 0) lse[((int64_t)b * g.H + h) * g.Tq + i] = l > 0.f ? Ms[r] + logf(l) : -INFINITY;
  }
#else
  __trap();
#endif
}

/* ---- backward, dQ (and D when not given): grid (query tiles) x B x H ---- */
template <typename T, int HD>
__global__ void __launch_bounds__(THREADS)
    k_flash_bwd_dq(T *dq, float *D, int d_given, const T *dout, const T *q, const T *kv, const float *lse,
                   FlashGeo g) {
#if FLASH_ARCH_OK
  typedef FlashLayout<HD> L;
  extern __shared__ __align__(128) unsigned char fl_smem[];
  T *Qs = (T *)fl_smem;                   /* 64 x LD: the CTA's query rows */
  T *dOs = (T *)(fl_smem + L::HT);        /* 64 x LD: their dout rows */
  T *Ks = (T *)(fl_smem + 2 * L::HT);     /* 64 x LD: a key tile */
  T *Vs = (T *)(fl_smem + 3 * L::HT);     /* 64 x LD: its value rows */
  float *Ss = (float *)(fl_smem + 4 * L::HT);          /* 64 x LDS: S = Q K^T (unscaled) */
  float *dPs = (float *)(fl_smem + 4 * L::HT + L::FT); /* 64 x LDS: dP = dO V^T */
  T *dSs = (T *)(fl_smem + 4 * L::HT + 2 * L::FT);     /* 64 x LDP: dS = P (dP - D) scale */
  float *lse_s = (float *)(fl_smem + 4 * L::HT + 2 * L::FT + L::PT); /* 64: the rows' lse */
  float *D_s = lse_s + L::ROW / 4;                                    /* 64: the rows' D */
  float *stage = D_s + L::ROW / 4;                                    /* WARPS x 16 x 16: add_rows staging */
  const int nqt = (g.Tq + BR - 1) / BR;
  const int qt = (int)(blockIdx.x % nqt), bh = (int)(blockIdx.x / nqt);
  const int b = bh / g.H, h = bh % g.H, kvh = h / (g.H / g.KV);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r0 = 16 * warp;
  const int q0 = qt * BR, nq = min(BR, g.Tq - q0);
  const int hd = HD;
  const int64_t C = (int64_t)g.H * hd, row0 = ((int64_t)b * g.H + h) * g.Tq + q0; /* lse / D index of row q0 */
  const T *kb = kv + (int64_t)b * g.Tk * g.W + (int64_t)(g.H + kvh) * hd;
  const T *vb = kv + (int64_t)b * g.Tk * g.W + (int64_t)(g.H + g.KV + kvh) * hd;
  load_tile<HD>(Qs, q + ((int64_t)b * g.Tq + q0) * g.W + (int64_t)h * hd, g.W, nq);
  load_tile<HD>(dOs, dout + ((int64_t)b * g.Tq + q0) * C + (int64_t)h * hd, C, nq);
  for (int r = threadIdx.x; r < 64; r += THREADS) {
    lse_s[r] = r < nq ? lse[row0 + r] : -INFINITY;
    D_s[r] = r < nq && d_given ? D[row0 + r] : 0.f;
  }
  const int qmax = pos_max(g.qp, q0, q0 + nq);
  __syncthreads(); /* Q, dO, lse, D in place even when every key tile is skipped */
  Acc acc[HD / 16]; /* the warp's 16 rows of dQ */
#pragma unroll
  for (int n = 0; n < HD / 16; n++) wmma::fill_fragment(acc[n], 0.f);
  /* pass 0 (only without D): D = sum_j P dP; pass 1: dS and dQ */
  for (int pass = d_given ? 1 : 0; pass < 2; pass++) {
    for (int k0 = 0; k0 < g.Tk; k0 += BC) {
      const int nk = min(BC, g.Tk - k0);
      if (pos_min(g.kp, k0, k0 + nk) > qmax) continue; /* CTA-uniform */
      __syncthreads(); /* the previous K, V are done with (and Q, dO, lse, D are loaded) */
      load_tile<HD>(Ks, kb + (int64_t)k0 * g.W, g.W, nk);
      load_tile<HD>(Vs, vb + (int64_t)k0 * g.W, g.W, nk);
      __syncthreads();
      rows_x_rowsT<HD>(Ss + r0 * L::LDS, Qs + r0 * L::LD, Ks);
      rows_x_rowsT<HD>(dPs + r0 * L::LDS, dOs + r0 * L::LD, Vs);
      __syncwarp();
      for (int r = r0; r < r0 + 16; r++) {
        const bool qin = r < nq;
        const int pi = qin ? fpos(g.qp, q0 + r) : 0;
        const float l = lse_s[r];
        float dsum = 0.f;
#pragma unroll
        for (int u = 0; u < 2; u++) {
          const int c = lane + 32 * u;
          const bool vis = qin && l > -INFINITY && c < nk && fpos(g.kp, k0 + c) <= pi;
          const float p = vis ? expf(Ss[r * L::LDS + c] * g.scale - l) : 0.f;
          const float dp = dPs[r * L::LDS + c];
          if (pass == 0) dsum += p * dp;
          else put(&dSs[r * L::LDP + c], p * (dp - D_s[r]) * g.scale);
        }
        if (pass == 0) {
          dsum = fl_warp_sum(dsum);
          if (lane == 0) D_s[r] += dsum; /* read only by this warp, after the __syncwarp below */
        }
      }
      __syncwarp();
      if (pass == 1) acc_rows_x<HD>(acc, dSs + r0 * L::LDP, Ks);
      __syncwarp(); /* dSs is rewritten by the next tile */
    }
  }
  /* dq rows += dQ (dS holds the scale); D for the dK dV kernel */
  add_rows<HD>(dq + ((int64_t)b * g.Tq + q0 + r0) * g.W + (int64_t)h * hd, g.W, nq - r0, acc, stage + warp * 256);
  if (!d_given)
    for (int r = r0 + lane; r < r0 + 16; r += 32)
      if (r < nq) D[row0 + r] = D_s[r];
#else
  __trap();
#endif
}

/* ---- backward, dK and dV: grid (key tiles) x B x KV ---- */
template <typename T, int HD>
__global__ void __launch_bounds__(THREADS)
    k_flash_bwd_kv(T *dkv, const float *D, const T *dout, const T *q, const T *kv, const float *lse, FlashGeo g) {
#if FLASH_ARCH_OK
  typedef FlashLayout<HD> L;
  extern __shared__ __align__(128) unsigned char fl_smem[];
  T *Ks = (T *)fl_smem;                   /* 64 x LD: the CTA's key rows */
  T *Vs = (T *)(fl_smem + L::HT);         /* 64 x LD: their value rows */
  T *Qs = (T *)(fl_smem + 2 * L::HT);     /* 64 x LD: a query tile */
  T *dOs = (T *)(fl_smem + 3 * L::HT);    /* 64 x LD: its dout rows */
  float *STs = (float *)(fl_smem + 4 * L::HT);          /* 64 x LDS: S^T = K Q^T (unscaled), key rows */
  float *dPTs = (float *)(fl_smem + 4 * L::HT + L::FT); /* 64 x LDS: dP^T = V dO^T */
  T *PTs = (T *)(fl_smem + 4 * L::HT + 2 * L::FT);              /* 64 x LDP: P^T */
  T *dSTs = (T *)(fl_smem + 4 * L::HT + 2 * L::FT + L::PT);     /* 64 x LDP: dS^T = P^T (dP^T - D) scale */
  float *lse_s = (float *)(fl_smem + 4 * L::HT + 2 * L::FT + 2 * L::PT); /* 64: the query tile's lse */
  float *D_s = lse_s + L::ROW / 4;                                        /* 64: its D */
  float *stage = D_s + L::ROW / 4;                                        /* WARPS x 16 x 16 */
  const int nkt = (g.Tk + BC - 1) / BC;
  const int kt = (int)(blockIdx.x % nkt), bj = (int)(blockIdx.x / nkt);
  const int b = bj / g.KV, kvh = bj % g.KV, per = g.H / g.KV;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, c0 = 16 * warp; /* the warp's key rows */
  const int j0 = kt * BC, nk = min(BC, g.Tk - j0);
  const int hd = HD;
  const int64_t C = (int64_t)g.H * hd;
  T *dkb = dkv + ((int64_t)b * g.Tk + j0) * g.W + (int64_t)(g.H + kvh) * hd;
  T *dvb = dkv + ((int64_t)b * g.Tk + j0) * g.W + (int64_t)(g.H + g.KV + kvh) * hd;
  load_tile<HD>(Ks, kv + ((int64_t)b * g.Tk + j0) * g.W + (int64_t)(g.H + kvh) * hd, g.W, nk);
  load_tile<HD>(Vs, kv + ((int64_t)b * g.Tk + j0) * g.W + (int64_t)(g.H + g.KV + kvh) * hd, g.W, nk);
  const int kmin = pos_min(g.kp, j0, j0 + nk);
  Acc dk[HD / 16], dv[HD / 16]; /* the warp's 16 key rows of dK, dV */
#pragma unroll
  for (int n = 0; n < HD / 16; n++) {
    wmma::fill_fragment(dk[n], 0.f);
    wmma::fill_fragment(dv[n], 0.f);
  }
  for (int h = kvh * per; h < (kvh + 1) * per; h++)
    for (int q0 = 0; q0 < g.Tq; q0 += BR) {
      const int nq = min(BR, g.Tq - q0);
      if (pos_max(g.qp, q0, q0 + nq) < kmin) continue; /* no query of the tile sees a key of ours (CTA-uniform) */
      const int64_t row0 = ((int64_t)b * g.H + h) * g.Tq + q0;
      __syncthreads(); /* every warp is done with the previous Q, dO, lse, D */
      load_tile<HD>(Qs, q + ((int64_t)b * g.Tq + q0) * g.W + (int64_t)h * hd, g.W, nq);
      load_tile<HD>(dOs, dout + ((int64_t)b * g.Tq + q0) * C + (int64_t)h * hd, C, nq);
      for (int r = threadIdx.x; r < 64; r += THREADS) {
        lse_s[r] = r < nq ? lse[row0 + r] : -INFINITY;
        D_s[r] = r < nq ? D[row0 + r] : 0.f;
      }
      __syncthreads();
      rows_x_rowsT<HD>(STs + c0 * L::LDS, Ks + c0 * L::LD, Qs);
      rows_x_rowsT<HD>(dPTs + c0 * L::LDS, Vs + c0 * L::LD, dOs);
      __syncwarp();
      for (int r = c0; r < c0 + 16; r++) { /* key row j0 + r; lane holds query columns lane, lane + 32 */
        const bool kin = r < nk;
        const int pj = kin ? fpos(g.kp, j0 + r) : 0;
#pragma unroll
        for (int u = 0; u < 2; u++) {
          const int c = lane + 32 * u;
          const float l = lse_s[c];
          const bool vis = kin && c < nq && l > -INFINITY && pj <= fpos(g.qp, q0 + c);
          const float p = vis ? expf(STs[r * L::LDS + c] * g.scale - l) : 0.f;
          put(&PTs[r * L::LDP + c], p);
          put(&dSTs[r * L::LDP + c], p * (dPTs[r * L::LDS + c] - D_s[c]) * g.scale);
        }
      }
      __syncwarp();
      acc_rows_x<HD>(dv, PTs + c0 * L::LDP, dOs);
      acc_rows_x<HD>(dk, dSTs + c0 * L::LDP, Qs);
      __syncwarp();
    }
  add_rows<HD>(dkb + (int64_t)c0 * g.W, g.W, nk - c0, dk, stage + warp * 256);
  add_rows<HD>(dvb + (int64_t)c0 * g.W, g.W, nk - c0, dv, stage + warp * 256);
#else
  __trap();
#endif
}

FlashGeo flash_geo(int B, int Tq, int Tk, int heads, int kv_heads, int head_dim, PxkPos qp, PxkPos kp) {
  FlashGeo g;
  g.B = B;
  g.Tq = Tq;
  g.Tk = Tk;
  g.H = heads;
  g.KV = kv_heads;
  g.W = (int64_t)(heads + 2 * kv_heads) * head_dim;
  g.scale = (float)(1.0 / sqrt((double)head_dim)); /* kernels.cu att_geo's */
  g.qp = qp;
  g.kp = kp;
  return g;
}

/* CTAs of `tiles` tiles for each of `n` (b, head) pairs, or 0 when above the grid's limit */
unsigned flash_grid(int T_, int64_t n) {
  const int64_t blocks = (int64_t)((T_ + 63) / 64) * n;
  return blocks > 0 && blocks <= INT_MAX ? (unsigned)blocks : 0u;
}

#ifndef PX_FLASH_EMULATE /* tests/flash_emu runs the kernels above on the host, without these launchers */
template <typename T, int HD>
cudaError_t flash_fwd(cudaStream_t st, void *out, float *lse, const void *q, const void *kv, const FlashGeo &g) {
  const size_t bytes = FlashLayout<HD>::FWD;
  const unsigned grid = flash_grid(g.Tq, (int64_t)g.B * g.H);
  if (!grid) return cudaErrorInvalidValue;
  cudaError_t e = cudaFuncSetAttribute(k_flash_fwd<T, HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
  if (e != cudaSuccess) return e;
  k_flash_fwd<T, HD><<<grid, THREADS, bytes, st>>>((T *)out, lse, (const T *)q, (const T *)kv, g);
  return cudaGetLastError();
}

template <typename T, int HD>
cudaError_t flash_bwd(cudaStream_t st, void *dq, void *dkv, const void *dout, const void *q, const void *kv,
                      const float *lse, float *D, int d_given, const FlashGeo &g) {
  const unsigned gq = flash_grid(g.Tq, (int64_t)g.B * g.H), gk = flash_grid(g.Tk, (int64_t)g.B * g.KV);
  if (!gq || !gk) return cudaErrorInvalidValue;
  cudaError_t e = cudaFuncSetAttribute(k_flash_bwd_dq<T, HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)FlashLayout<HD>::DQ);
  if (e != cudaSuccess) return e;
  e = cudaFuncSetAttribute(k_flash_bwd_kv<T, HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           (int)FlashLayout<HD>::DKV);
  if (e != cudaSuccess) return e;
  /* dQ first: without d_given it writes the D the dK dV kernel reads (same stream, in order) */
  k_flash_bwd_dq<T, HD><<<gq, THREADS, FlashLayout<HD>::DQ, st>>>((T *)dq, D, d_given, (const T *)dout,
                                                                  (const T *)q, (const T *)kv, lse, g);
  e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  k_flash_bwd_kv<T, HD><<<gk, THREADS, FlashLayout<HD>::DKV, st>>>((T *)dkv, D, (const T *)dout, (const T *)q,
                                                                   (const T *)kv, lse, g);
  return cudaGetLastError();
}

#endif /* PX_FLASH_EMULATE */
} /* namespace pxflash */
using namespace pxflash;

#ifndef PX_FLASH_EMULATE

/* f(T{}, integral_constant<HD>) for the element type of dt (bf16, f16) and head_dim hd */
template <class F> static cudaError_t flash_dispatch(int dt, int hd, F f) {
  switch (hd) {
#define FLASH_CASE(hdv)                                                                            \
  case hdv:                                                                                        \
    return dt == PXK_BF16  ? f(bf16{}, std::integral_constant<int, hdv>{})                         \
           : dt == PXK_F16 ? f(f16{}, std::integral_constant<int, hdv>{})                          \
                           : cudaErrorInvalidValue;
    FLASH_HDS(FLASH_CASE)
#undef FLASH_CASE
  default: return cudaErrorInvalidValue;
  }
}

extern "C" size_t pxk_flash_smem(int dt, int head_dim) {
  if (dt != PXK_BF16 && dt != PXK_F16) return 0;
  switch (head_dim) {
#define FLASH_CASE(hdv)                                                                            \
  case hdv: return FlashLayout<hdv>::MAX;
    FLASH_HDS(FLASH_CASE)
#undef FLASH_CASE
  default: return 0;
  }
}

extern "C" cudaError_t pxk_flash_fwd(cudaStream_t st, int dt, void *out, float *lse, const void *q, const void *kv,
                                     int B, int Tq, int Tk, int heads, int kv_heads, int head_dim, PxkPos qp,
                                     PxkPos kp) {
  if (B <= 0 || Tq <= 0 || Tk <= 0 || kv_heads <= 0 || heads % kv_heads != 0) return cudaErrorInvalidValue;
  const FlashGeo g = flash_geo(B, Tq, Tk, heads, kv_heads, head_dim, qp, kp);
  return flash_dispatch(dt, head_dim, [&](auto t, auto hd) {
    return flash_fwd<decltype(t), decltype(hd)::value>(st, out, lse, q, kv, g);
  });
}

extern "C" cudaError_t pxk_flash_bwd(cudaStream_t st, int dt, void *dq, void *dkv, const void *dout, const void *q,
                                     const void *kv, const float *lse, float *D, int d_given, int B, int Tq, int Tk,
                                     int heads, int kv_heads, int head_dim, PxkPos qp, PxkPos kp) {
  if (B <= 0 || Tq <= 0 || Tk <= 0 || kv_heads <= 0 || heads % kv_heads != 0) return cudaErrorInvalidValue;
  const FlashGeo g = flash_geo(B, Tq, Tk, heads, kv_heads, head_dim, qp, kp);
  return flash_dispatch(dt, head_dim, [&](auto t, auto hd) {
    return flash_bwd<decltype(t), decltype(hd)::value>(st, dq, dkv, dout, q, kv, lse, D, d_given, g);
  });
}
#endif /* PX_FLASH_EMULATE */
