/* kernels.cu — the CUDA backend's kernels (launchers declared in
 * cuda_kernels.h). Patterns kept deliberately plain: one thread per element
 * (grid-stride loops), one block per row for row reductions, one warp per
 * query row for attention, a 32x32 block per 32 columns for column sums.
 * Every value is loaded as fp32 (ld), computed in fp32 (scalars summed in
 * double) and stored back in the tensor's type (st_: bf16 / f16 rounded once,
 * to nearest even); statistics (mean, rstd, lse, losses, the ce_vp pieces)
 * are float whatever the element type T. The cpu backend's kernels
 * (backend_cpu_kernels.inc) are the reference semantics. */
#include "cuda_kernels.h"
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

typedef __nv_bfloat16 bf16;
typedef __half f16;

/* ---- loads and stores in fp32 ---- */
__device__ __forceinline__ float ld(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ld(const bf16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float ld(const f16 *p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void st_(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void st_(bf16 *p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }
__device__ __forceinline__ void st_(f16 *p, int64_t i, float v) { p[i] = __float2half_rn(v); }

/* A one-element scalar of dtype dt (f32, f64 or i32) read / written as double. */
__device__ __forceinline__ double ld_scalar(const void *p, int dt) {
  return dt == PXK_F64 ? *(const double *)p : dt == PXK_I32 ? (double)*(const int32_t *)p : (double)*(const float *)p;
}
__device__ __forceinline__ void st_scalar(void *p, int dt, double v) {
  if (dt == PXK_F64) *(double *)p = v;
  else if (dt == PXK_I32) *(int32_t *)p = (int32_t)v;
  else *(float *)p = (float)v;
}

/* atomic p[i] += v */
__device__ __forceinline__ void atomic_addf(float *p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ unsigned short bits16(bf16 x) { return __bfloat16_as_ushort(x); }
__device__ __forceinline__ unsigned short bits16(f16 x) { return __half_as_ushort(x); }
__device__ __forceinline__ void from16(unsigned short u, bf16 *x) { *x = __ushort_as_bfloat16(u); }
__device__ __forceinline__ void from16(unsigned short u, f16 *x) { *x = __ushort_as_half(u); }
/* 16-bit types: a compare-and-swap loop on the aligned 32-bit word (any architecture). */
template <typename T> __device__ void atomic_addf(T *p, float v) {
  unsigned int *word = (unsigned int *)((uintptr_t)p & ~(uintptr_t)3);
  const bool high = ((uintptr_t)p & 2) != 0;
  unsigned int old = *word, assumed;
  do {
    assumed = old;
    T cur;
    from16((unsigned short)(high ? assumed >> 16 : assumed & 0xffffu), &cur);
    T sum;
    st_(&sum, 0, ld(&cur, 0) + v);
    unsigned int nb = bits16(sum);
    unsigned int next = high ? (assumed & 0xffffu) | (nb << 16) : (assumed & 0xffff0000u) | nb;
    old = atomicCAS(word, assumed, next);
  } while (assumed != old);
}

/* ---- reductions ---- */
template <typename R> __device__ __forceinline__ R warp_sum(R v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/* The sum (or max) over the block, returned to every thread. blockDim.x is a
 * multiple of 32; every thread of the block must call it. */
template <typename R> __device__ R block_sum(R v) {
  __shared__ R sh[32];
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads(); /* sh may still be read from the previous call */
  if (lane == 0) sh[w] = v;
  __syncthreads();
  R r = lane < nw ? sh[lane] : (R)0;
  return warp_sum(r);
}
__device__ float block_max(float v) {
  __shared__ float sh[32];
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  float r = lane < nw ? sh[lane] : -INFINITY;
  return warp_max(r);
}

/* ---- launch helpers ---- */
#define ROW_THREADS 256
#define EW_THREADS 256
static unsigned ew_blocks(int64_t n) {
  int64_t b = (n + EW_THREADS - 1) / EW_THREADS;
  return (unsigned)(b < 1 ? 1 : b > (1 << 20) ? (1 << 20) : b);
}
#define GRID_STRIDE(i, n)                                                                          \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                       \
       i += (int64_t)gridDim.x * blockDim.x)

/* Run the statement with T the element type of dt (f32, bf16, f16). */
#define DISPATCH(dt, ...)                                                                          \
  switch (dt) {                                                                                    \
  case PXK_F32: { typedef float T; __VA_ARGS__; } break;                                           \
  case PXK_BF16: { typedef bf16 T; __VA_ARGS__; } break;                                           \
  case PXK_F16: { typedef f16 T; __VA_ARGS__; } break;                                             \
  default: return cudaErrorInvalidValue;                                                           \
  }                                                                                                \
  return cudaGetLastError();

/* ---- linear helpers and column sums ---- */

template <typename T> __global__ void k_bias_add(T *y, const T *b, int64_t N, int64_t C) {
  GRID_STRIDE(i, N * C) st_(y, i, ld(y, i) + ld(b, i % C));
}
extern "C" cudaError_t pxk_bias_add(cudaStream_t st, int dt, void *y, const void *b, int64_t N, int64_t C) {
  DISPATCH(dt, k_bias_add<T><<<ew_blocks(N * C), EW_THREADS, 0, st>>>((T *)y, (const T *)b, N, C))
}

/* Block (32, 32): threadIdx.x a column of the block's 32, threadIdx.y a stride of rows. */
template <typename T>
__global__ void k_colsum(int mode, T *out, const T *dout, const T *x, const float *mean, const float *rstd,
                         int64_t N, int64_t C) {
  __shared__ float sh[32][33];
  int64_t c = (int64_t)blockIdx.x * 32 + threadIdx.x;
  float s = 0;
  if (c < C)
    for (int64_t i = threadIdx.y; i < N; i += 32) {
      float d = ld(dout, i * C + c);
      if (mode == PXK_COLSUM_LN) d *= (ld(x, i * C + c) - mean[i]) * rstd[i];
      else if (mode == PXK_COLSUM_RMS) d *= ld(x, i * C + c) * rstd[i];
      s += d;
    }
  sh[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t = 0;
    for (int k = 0; k < 32; k++) t += sh[k][threadIdx.x];
    st_(out, c, ld(out, c) + t);
  }
}
extern "C" cudaError_t pxk_colsum(cudaStream_t st, int dt, int mode, void *out, const void *dout,
                                  const void *x, const float *mean, const float *rstd, int64_t N, int64_t C) {
  dim3 block(32, 32);
  unsigned grid = (unsigned)((C + 31) / 32);
  DISPATCH(dt, k_colsum<T><<<grid, block, 0, st>>>(mode, (T *)out, (const T *)dout, (const T *)x,
                                                    mean, rstd, N, C))
}

/* ---- embeddings ---- */

template <typename T>
__global__ void k_embedding_fwd(T *out, const int32_t *tok, const T *wte, const T *wpe, int64_t v0,
                                int64_t n_real, int *bad, int T_, int64_t NC, int64_t C) {
  GRID_STRIDE(idx, NC) {
    int64_t i = idx / C, c = idx % C;
    int64_t r = (int64_t)tok[i] - v0;
    float v = r >= 0 && r < n_real ? ld(wte, r * C + c) : 0.f;
    if (bad && c == 0 && !(r >= 0 && r < n_real)) {
      bad[1] = tok[i];
      bad[0] = PXK_BAD_TOKEN;
    }
    if (wpe) v += ld(wpe, (i % T_) * C + c);
    st_(out, idx, v);
  }
}
extern "C" cudaError_t pxk_embedding_fwd(cudaStream_t st, int dt, void *out, const int32_t *tok,
                                         const void *wte, const void *wpe, int64_t v0, int64_t n_real,
                                         int *bad, int B, int Tn, int64_t C) {
  int64_t NC = (int64_t)B * Tn * C;
  DISPATCH(dt, k_embedding_fwd<T><<<ew_blocks(NC), EW_THREADS, 0, st>>>(
                   (T *)out, tok, (const T *)wte, (const T *)wpe, v0, n_real, bad, Tn, NC, C))
}

/* Rows of one token add into one row of dwte: atomic adds (the order of the
 * additions is not fixed). f32 only: see the half path below. */
template <typename T>
__global__ void k_embedding_bwd(T *dwte, T *dwpe, const T *dout, const int32_t *tok, int64_t v0,
                                int64_t n_real, int T_, int64_t NC, int64_t C) {
  GRID_STRIDE(idx, NC) {
    int64_t i = idx / C, c = idx % C;
    float d = ld(dout, idx);
    int64_t r = (int64_t)tok[i] - v0;
    if (dwte && r >= 0 && r < n_real) atomic_addf(dwte + r * C + c, d);
    if (dwpe) atomic_addf(dwpe + (i % T_) * C + c, d);
  }
}

/* Half gradients are added once (read, add in fp32, round once): an atomic
 * add per token would round a frequent token's row once per occurrence and
 * lose its small terms. dwte goes in slabs of rows [r0, r0 + nr) through the
 * fp32 scratch acc: zeroed, the slab's tokens' rows added atomically in fp32,
 * then acc added into the slab of dwte. dwpe: one thread per (t, c) sums the
 * B sequences in order. */
template <typename T>
__global__ void k_embedding_bwd_slab(float *acc, const T *dout, const int32_t *tok, int64_t r0, int64_t nr,
                                     int64_t NC, int64_t C) {
  GRID_STRIDE(idx, NC) {
    int64_t r = (int64_t)tok[idx / C] - r0;
    if (r >= 0 && r < nr) atomicAdd(acc + r * C + idx % C, ld(dout, idx));
  }
}
template <typename T> __global__ void k_add_f32(T *dst, const float *src, int64_t n) {
  GRID_STRIDE(i, n) st_(dst, i, ld(dst, i) + src[i]);
}
template <typename T> __global__ void k_pos_bwd(T *dwpe, const T *dout, int B, int T_, int64_t C) {
  GRID_STRIDE(idx, (int64_t)T_ * C) { /* row t = idx / C of dwpe, column idx % C */
    float s = 0;
    for (int b = 0; b < B; b++) s += ld(dout, (int64_t)b * T_ * C + idx);
    st_(dwpe, idx, ld(dwpe, idx) + s);
  }
}

extern "C" cudaError_t pxk_embedding_bwd(cudaStream_t st, int dt, void *dwte, void *dwpe, const void *dout,
                                         const int32_t *tok, int64_t v0, int64_t n_real, int B, int Tn,
                                         int64_t C, float *acc, int64_t acc_rows) {
  int64_t NC = (int64_t)B * Tn * C;
  if (dt == PXK_F32) {
    k_embedding_bwd<float><<<ew_blocks(NC), EW_THREADS, 0, st>>>((float *)dwte, (float *)dwpe, (const float *)dout,
                                                                 tok, v0, n_real, Tn, NC, C);
    return cudaGetLastError();
  }
  if (dwte && n_real > 0 && (!acc || acc_rows < 1)) return cudaErrorInvalidValue;
  DISPATCH(dt, {
    if (dwte)
      for (int64_t r0 = 0; r0 < n_real; r0 += acc_rows) {
        const int64_t nr = n_real - r0 < acc_rows ? n_real - r0 : acc_rows;
        cudaError_t e = cudaMemsetAsync(acc, 0, (size_t)(nr * C) * sizeof(float), st);
        if (e != cudaSuccess) return e;
        k_embedding_bwd_slab<T><<<ew_blocks(NC), EW_THREADS, 0, st>>>(acc, (const T *)dout, tok, v0 + r0, nr, NC, C);
        k_add_f32<T><<<ew_blocks(nr * C), EW_THREADS, 0, st>>>((T *)dwte + r0 * C, acc, nr * C);
        e = cudaGetLastError();
        if (e != cudaSuccess) return e;
      }
    if (dwpe) k_pos_bwd<T><<<ew_blocks((int64_t)Tn * C), EW_THREADS, 0, st>>>((T *)dwpe, (const T *)dout, B, Tn, C);
  })
}

/* ---- norms: one block per row ---- */

template <typename T>
__global__ void k_layernorm_fwd(T *out, float *mean, float *rstd, const T *x, const T *w, const T *b, float eps,
                                int64_t C) {
  const int64_t row = blockIdx.x, o = row * C;
  float s = 0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += ld(x, o + c);
  const float m = block_sum(s) / (float)C;
  float v = 0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float d = ld(x, o + c) - m;
    v += d * d;
  }
  const float r = 1.0f / sqrtf(block_sum(v) / (float)C + eps);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
    st_(out, o + c, (ld(x, o + c) - m) * r * ld(w, c) + (b ? ld(b, c) : 0.f));
  if (threadIdx.x == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}
extern "C" cudaError_t pxk_layernorm_fwd(cudaStream_t st, int dt, void *out, float *mean, float *rstd,
                                         const void *x, const void *w, const void *b, double eps,
                                         int64_t N, int64_t C) {
  DISPATCH(dt, k_layernorm_fwd<T><<<(unsigned)N, ROW_THREADS, 0, st>>>(
                   (T *)out, mean, rstd, (const T *)x, (const T *)w, (const T *)b, (float)eps, C))
}

template <typename T>
__global__ void k_layernorm_bwd_dx(T *dx, const T *dout, const T *x, const T *w, const float *mean,
                                   const float *rstd, int64_t C) {
  const int64_t row = blockIdx.x, o = row * C;
  const float m = mean[row], r = rstd[row];
  float a = 0, bsum = 0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float n = (ld(x, o + c) - m) * r, dn = ld(dout, o + c) * ld(w, c);
    a += dn;
    bsum += dn * n;
  }
  const float dn_mean = block_sum(a) / (float)C, dn_n_mean = block_sum(bsum) / (float)C;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float n = (ld(x, o + c) - m) * r, dn = ld(dout, o + c) * ld(w, c);
    st_(dx, o + c, ld(dx, o + c) + (dn - dn_mean - n * dn_n_mean) * r);
  }
}
extern "C" cudaError_t pxk_layernorm_bwd_dx(cudaStream_t st, int dt, void *dx, const void *dout,
                                            const void *x, const void *w, const float *mean,
                                            const float *rstd, int64_t N, int64_t C) {
  DISPATCH(dt, k_layernorm_bwd_dx<T><<<(unsigned)N, ROW_THREADS, 0, st>>>(
                   (T *)dx, (const T *)dout, (const T *)x, (const T *)w, mean, rstd, C))
}

template <typename T>
__global__ void k_rmsnorm_fwd(T *out, float *rstd, const T *x, const T *w, float eps, int64_t C) {
  const int64_t row = blockIdx.x, o = row * C;
  float s = 0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float v = ld(x, o + c);
    s += v * v;
  }
  const float r = 1.0f / sqrtf(block_sum(s) / (float)C + eps);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) st_(out, o + c, ld(x, o + c) * r * ld(w, c));
  if (threadIdx.x == 0) rstd[row] = r;
}
extern "C" cudaError_t pxk_rmsnorm_fwd(cudaStream_t st, int dt, void *out, float *rstd, const void *x,
                                       const void *w, double eps, int64_t N, int64_t C) {
  DISPATCH(dt, k_rmsnorm_fwd<T><<<(unsigned)N, ROW_THREADS, 0, st>>>((T *)out, rstd, (const T *)x,
                                                                      (const T *)w, (float)eps, C))
}

template <typename T>
__global__ void k_rmsnorm_bwd_dx(T *dx, const T *dout, const T *x, const T *w, const float *rstd, int64_t C) {
  const int64_t row = blockIdx.x, o = row * C;
  const float r = rstd[row];
  float s = 0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += ld(dout, o + c) * ld(w, c) * ld(x, o + c) * r;
  const float dn_n_mean = block_sum(s) / (float)C;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float n = ld(x, o + c) * r;
    st_(dx, o + c, ld(dx, o + c) + (ld(dout, o + c) * ld(w, c) - n * dn_n_mean) * r);
  }
}
extern "C" cudaError_t pxk_rmsnorm_bwd_dx(cudaStream_t st, int dt, void *dx, const void *dout, const void *x,
                                          const void *w, const float *rstd, int64_t N, int64_t C) {
  DISPATCH(dt, k_rmsnorm_bwd_dx<T><<<(unsigned)N, ROW_THREADS, 0, st>>>(
                   (T *)dx, (const T *)dout, (const T *)x, (const T *)w, rstd, C))
}

/* ---- element-wise ---- */

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
template <typename T> __global__ void k_gelu_fwd(T *out, const T *x, int64_t n) {
  GRID_STRIDE(i, n) {
    float v = ld(x, i);
    st_(out, i, 0.5f * v * (1.f + tanhf(GELU_K * (v + 0.044715f * v * v * v))));
  }
}
extern "C" cudaError_t pxk_gelu_fwd(cudaStream_t st, int dt, void *out, const void *x, int64_t n) {
  DISPATCH(dt, k_gelu_fwd<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)out, (const T *)x, n))
}

template <typename T> __global__ void k_gelu_bwd(T *dx, const T *dout, const T *x, int64_t n) {
  GRID_STRIDE(i, n) {
    float v = ld(x, i), th = tanhf(GELU_K * (v + 0.044715f * v * v * v));
    float du = GELU_K * (1.f + 3.f * 0.044715f * v * v);
    st_(dx, i, ld(dx, i) + ld(dout, i) * (0.5f * (1.f + th) + 0.5f * v * (1.f - th * th) * du));
  }
}
extern "C" cudaError_t pxk_gelu_bwd(cudaStream_t st, int dt, void *dx, const void *dout, const void *x, int64_t n) {
  DISPATCH(dt, k_gelu_bwd<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)dx, (const T *)dout, (const T *)x, n))
}

template <typename T> __global__ void k_swiglu_fwd(T *out, const T *gate, const T *up, int64_t n) {
  GRID_STRIDE(i, n) {
    float g = ld(gate, i);
    st_(out, i, g / (1.f + expf(-g)) * ld(up, i));
  }
}
extern "C" cudaError_t pxk_swiglu_fwd(cudaStream_t st, int dt, void *out, const void *gate, const void *up,
                                      int64_t n) {
  DISPATCH(dt, k_swiglu_fwd<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)out, (const T *)gate, (const T *)up, n))
}

template <typename T>
__global__ void k_swiglu_bwd(T *dgate, T *dup, const T *dout, const T *gate, const T *up, int64_t n) {
  GRID_STRIDE(i, n) {
    float g = ld(gate, i), s = 1.f / (1.f + expf(-g)), d = ld(dout, i);
    if (dgate) st_(dgate, i, ld(dgate, i) + d * ld(up, i) * s * (1.f + g * (1.f - s)));
    if (dup) st_(dup, i, ld(dup, i) + d * g * s);
  }
}
extern "C" cudaError_t pxk_swiglu_bwd(cudaStream_t st, int dt, void *dgate, void *dup, const void *dout,
                                      const void *gate, const void *up, int64_t n) {
  DISPATCH(dt, k_swiglu_bwd<T><<<ew_blocks(n), EW_THREADS, 0, st>>>(
                   (T *)dgate, (T *)dup, (const T *)dout, (const T *)gate, (const T *)up, n))
}

template <typename T> __global__ void k_add(T *out, const T *a, const T *b, int64_t n) {
  GRID_STRIDE(i, n) st_(out, i, ld(a, i) + ld(b, i));
}
extern "C" cudaError_t pxk_add(cudaStream_t st, int dt, void *out, const void *a, const void *b, int64_t n) {
  DISPATCH(dt, k_add<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)out, (const T *)a, (const T *)b, n))
}

/* ---- px_stream_reduce (the local communicator's device path) ---- */

/* loads in the type a reduction is formed in (halves: fp32) and stores from it */
__device__ __forceinline__ double ld_red(const double *p, int64_t i) { return p[i]; }
__device__ __forceinline__ int32_t ld_red(const int32_t *p, int64_t i) { return p[i]; }
template <typename T> __device__ __forceinline__ float ld_red(const T *p, int64_t i) { return ld(p, i); }
__device__ __forceinline__ void st_red(double *p, int64_t i, double v) { p[i] = v; }
__device__ __forceinline__ void st_red(int32_t *p, int64_t i, int32_t v) { p[i] = v; }
template <typename T> __device__ __forceinline__ void st_red(T *p, int64_t i, float v) { st_(p, i, v); }

/* acc = parts[0]; acc = acc + parts[k] (max: parts[k] > acc ? parts[k] : acc)
 * for k = 1.., as px_comm_reduce_into; the element is read from every part
 * before out is written */
template <typename T, typename A> __global__ void k_reduce_parts(T *out, PxkParts parts, int nparts, int max, int64_t n) {
  GRID_STRIDE(i, n) {
    A acc = ld_red((const T *)parts.p[0], i);
    for (int k = 1; k < nparts; k++) {
      A x = ld_red((const T *)parts.p[k], i);
      acc = max ? (x > acc ? x : acc) : acc + x;
    }
    st_red(out, i, acc);
  }
}

extern "C" cudaError_t pxk_reduce_parts(cudaStream_t st, int dt, void *out, PxkParts parts, int nparts, int max,
                                        int64_t n) {
  if (nparts < 1 || nparts > PXK_REDUCE_MAX) return cudaErrorInvalidValue;
  switch (dt) {
  case PXK_F32: k_reduce_parts<float, float><<<ew_blocks(n), EW_THREADS, 0, st>>>((float *)out, parts, nparts, max, n); break;
  case PXK_F64: k_reduce_parts<double, double><<<ew_blocks(n), EW_THREADS, 0, st>>>((double *)out, parts, nparts, max, n); break;
  case PXK_I32: k_reduce_parts<int32_t, int32_t><<<ew_blocks(n), EW_THREADS, 0, st>>>((int32_t *)out, parts, nparts, max, n); break;
  case PXK_BF16: k_reduce_parts<bf16, float><<<ew_blocks(n), EW_THREADS, 0, st>>>((bf16 *)out, parts, nparts, max, n); break;
  case PXK_F16: k_reduce_parts<f16, float><<<ew_blocks(n), EW_THREADS, 0, st>>>((f16 *)out, parts, nparts, max, n); break;
  default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

template <typename T> __global__ void k_scale(T *x, double alpha, int64_t n) {
  GRID_STRIDE(i, n) st_(x, i, (float)((double)ld(x, i) * alpha));
}
extern "C" cudaError_t pxk_scale(cudaStream_t st, int dt, void *x, double alpha, int64_t n) {
  DISPATCH(dt, k_scale<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)x, alpha, n))
}

/* ---- rows picked by index (MoE dispatch and combine): one thread per
 * output element, its terms in the cpu backend's order, in double with
 * explicit roundings (no contraction into FMAs), so the two backends agree ---- */

template <typename T>
__global__ void k_rows_gather(T *dst, const T *src, const int32_t *idx, const T *wt, int64_t Tn, int k, int64_t C,
                              int64_t N, int *bad) {
  GRID_STRIDE(e, Tn * C) {
    int64_t t = e / C, c = e % C;
    double s = 0;
    for (int j = 0; j < k; j++) {
      int32_t i = idx[t * k + j];
      if (i < -1 || i >= N) {
        bad[1] = i;
        bad[0] = PXK_BAD_ROW;
        continue;
      }
      if (i < 0) continue;
      double w = wt ? (double)ld(wt, t * k + j) : 1.0;
      s = __dadd_rn(s, __dmul_rn(w, (double)ld(src, (int64_t)i * C + c)));
    }
    st_(dst, e, (float)s);
  }
}
extern "C" cudaError_t pxk_rows_gather(cudaStream_t st, int dt, void *dst, const void *src, const int32_t *idx,
                                       const void *wt, int64_t Tn, int k, int64_t C, int64_t N, int *bad) {
  DISPATCH(dt, k_rows_gather<T><<<ew_blocks(Tn * C), EW_THREADS, 0, st>>>((T *)dst, (const T *)src, idx,
                                                                          (const T *)wt, Tn, k, C, N, bad))
}

template <typename T>
__global__ void k_rows_dot(T *out, const T *a, const T *b, const int32_t *idx, int64_t Tn, int k, int64_t C,
                           int64_t N, int *bad) {
  GRID_STRIDE(r, Tn * k) {
    int32_t i = idx[r];
    double s = 0;
    if (i < -1 || i >= N) {
      bad[1] = i;
      bad[0] = PXK_BAD_ROW;
    } else if (i >= 0) {
      for (int64_t c = 0; c < C; c++)
        s = __dadd_rn(s, __dmul_rn((double)ld(a, (r / k) * C + c), (double)ld(b, (int64_t)i * C + c)));
    }
    st_(out, r, (float)s);
  }
}
extern "C" cudaError_t pxk_rows_dot(cudaStream_t st, int dt, void *out, const void *a, const void *b,
                                    const int32_t *idx, int64_t Tn, int k, int64_t C, int64_t N, int *bad) {
  DISPATCH(dt, k_rows_dot<T><<<ew_blocks(Tn * k), EW_THREADS, 0, st>>>((T *)out, (const T *)a, (const T *)b, idx, Tn,
                                                                       k, C, N, bad))
}

/* ---- the MoE router: one thread per row (per expert for the column
 * sums), in double with explicit roundings in the cpu backend's order ---- */

template <typename T>
__global__ void k_router_topk(T *probs, int32_t *topi, double *topv, double *p64, const T *logits, int64_t Tn,
                              int64_t E, int k) {
  GRID_STRIDE(t, Tn) {
    double *row = p64 + t * E, mx = (double)ld(logits, t * E), z = 0;
    for (int64_t e = 1; e < E; e++) { /* glib's MAX, as the cpu kernel */
      double v = (double)ld(logits, t * E + e);
      mx = mx > v ? mx : v;
    }
    for (int64_t e = 0; e < E; e++) {
      row[e] = exp(__dsub_rn((double)ld(logits, t * E + e), mx));
      z = __dadd_rn(z, row[e]);
    }
    for (int64_t e = 0; e < E; e++) {
      row[e] = __ddiv_rn(row[e], z);
      st_(probs, t * E + e, (float)row[e]);
    }
    int32_t *ti = topi + t * k;
    for (int j = 0; j < k; j++) { /* the k largest, ties to the lower index */
      int32_t best = -1;
      for (int64_t e = 0; e < E; e++) {
        bool taken = false;
        for (int i = 0; i < j; i++) taken |= ti[i] == e;
        if (!taken && (best < 0 || row[e] > row[best])) best = (int32_t)e;
      }
      ti[j] = best;
      topv[t * k + j] = row[best];
    }
  }
}
__global__ void k_router_psum(double *psum, const double *p64, int64_t Tn, int64_t E) {
  GRID_STRIDE(e, E) {
    double s = 0;
    for (int64_t t = 0; t < Tn; t++) s = __dadd_rn(s, p64[t * E + e]);
    psum[e] = s;
  }
}
extern "C" cudaError_t pxk_router_topk(cudaStream_t st, int dt, void *probs, int32_t *topi, double *topv,
                                       double *psum, double *p64, const void *logits, int64_t Tn, int64_t E, int k) {
  switch (dt) {
  case PXK_F32: k_router_topk<float><<<ew_blocks(Tn), EW_THREADS, 0, st>>>((float *)probs, topi, topv, p64,
                                                                           (const float *)logits, Tn, E, k); break;
  case PXK_BF16: k_router_topk<bf16><<<ew_blocks(Tn), EW_THREADS, 0, st>>>((bf16 *)probs, topi, topv, p64,
                                                                           (const bf16 *)logits, Tn, E, k); break;
  case PXK_F16: k_router_topk<f16><<<ew_blocks(Tn), EW_THREADS, 0, st>>>((f16 *)probs, topi, topv, p64,
                                                                         (const f16 *)logits, Tn, E, k); break;
  default: return cudaErrorInvalidValue;
  }
  k_router_psum<<<ew_blocks(E), EW_THREADS, 0, st>>>(psum, p64, Tn, E);
  return cudaGetLastError();
}

template <typename T>
__device__ __forceinline__ double router_dp(const T *g, const int32_t *ti, const T *fcnt, double daux, bool norm_topk,
                                            double gw, double z, int64_t e, int k) {
  double dp = fcnt ? __dmul_rn(daux, (double)ld(fcnt, e)) : 0.0;
  for (int j = 0; j < k; j++)
    if (ti[j] == e)
      dp = __dadd_rn(dp, norm_topk ? __ddiv_rn(__dsub_rn((double)ld(g, j), gw), z) : (double)ld(g, j));
  return dp;
}
template <typename T>
__global__ void k_router_bwd(T *dlogits, const T *probs, const int32_t *topi, const T *dgate, const T *fcnt,
                             double daux, bool norm_topk, int64_t Tn, int64_t E, int k, int *bad) {
  GRID_STRIDE(t, Tn) {
    const T *p = probs + t * E, *g = dgate + t * k;
    const int32_t *ti = topi + t * k;
    bool ok = true;
    for (int j = 0; j < k; j++)
      if (ti[j] < 0 || ti[j] >= E) {
        bad[1] = ti[j];
        bad[0] = PXK_BAD_ROW;
        ok = false;
      }
    if (!ok) continue;
    double z = 0, gw = 0, dot = 0;
    if (norm_topk) {
      for (int j = 0; j < k; j++) z = __dadd_rn(z, (double)ld(p, ti[j]));
      for (int j = 0; j < k; j++) gw = __dadd_rn(gw, __dmul_rn((double)ld(g, j), __ddiv_rn((double)ld(p, ti[j]), z)));
    }
    for (int64_t e = 0; e < E; e++)
      dot = __dadd_rn(dot, __dmul_rn((double)ld(p, e), router_dp(g, ti, fcnt, daux, norm_topk, gw, z, e, k)));
    for (int64_t e = 0; e < E; e++)
      st_(dlogits, t * E + e,
          (float)__dmul_rn((double)ld(p, e), __dsub_rn(router_dp(g, ti, fcnt, daux, norm_topk, gw, z, e, k), dot)));
  }
}
extern "C" cudaError_t pxk_router_bwd(cudaStream_t st, int dt, void *dlogits, const void *probs, const int32_t *topi,
                                      const void *dgate, const void *fcnt, double daux, int norm_topk, int64_t Tn,
                                      int64_t E, int k, int *bad) {
  DISPATCH(dt, k_router_bwd<T><<<ew_blocks(Tn), EW_THREADS, 0, st>>>((T *)dlogits, (const T *)probs, topi,
                                                                     (const T *)dgate, (const T *)fcnt, daux,
                                                                     norm_topk != 0, Tn, E, k, bad))
}

/* ---- rotary: one thread per rotated pair, or per copied v element; the
 * angle in double, as the cpu backend ---- */

__device__ __forceinline__ int pos_of(PxkPos p, int t) {
  return p.split <= 0 ? t : t < p.split ? p.start0 + t : p.start1 + (t - p.split);
}

template <typename T>
__global__ void k_rope(T *dst, const T *src, int64_t rows, int T_, int rot_heads, int v_cols, int hd,
                       PxkPos pos, double theta, int dir, int accumulate) {
  const int half = hd / 2;
  const int64_t per_row = (int64_t)rot_heads * half + v_cols, W = (int64_t)rot_heads * hd + v_cols;
  GRID_STRIDE(idx, rows * per_row) {
    int64_t r = idx / per_row, k = idx % per_row, base = r * W;
    if (k < (int64_t)rot_heads * half) {
      int h = (int)(k / half), i = (int)(k % half);
      double ang = (double)pos_of(pos, (int)(r % T_)) * pow(theta, -2.0 * i / hd), sn, cs;
      sincos(ang, &sn, &cs);
      sn *= dir;
      int64_t a = base + (int64_t)h * hd + i, b = a + half;
      double x1 = ld(src, a), x2 = ld(src, b);
      float y1 = (float)(x1 * cs - x2 * sn), y2 = (float)(x1 * sn + x2 * cs);
      st_(dst, a, accumulate ? ld(dst, a) + y1 : y1);
      st_(dst, b, accumulate ? ld(dst, b) + y2 : y2);
    } else {
      int64_t c = base + (int64_t)rot_heads * hd + (k - (int64_t)rot_heads * half);
      float v = ld(src, c);
      st_(dst, c, accumulate ? ld(dst, c) + v : v);
    }
  }
}
extern "C" cudaError_t pxk_rope(cudaStream_t st, int dt, void *dst, const void *src, int B, int Tn, int heads,
                                int kv_heads, int head_dim, PxkPos pos, double theta, int dir, int accumulate) {
  int64_t rows = (int64_t)B * Tn;
  int rot = heads + kv_heads, v_cols = kv_heads * head_dim;
  int64_t n = rows * ((int64_t)rot * (head_dim / 2) + v_cols);
  DISPATCH(dt, k_rope<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)dst, (const T *)src, rows, Tn, rot, v_cols,
                                                              head_dim, pos, theta, dir, accumulate))
}

/* ---- attention ----
 * qkv rows (B*T, W), W = (H + 2 KV) hd: query heads, key heads, value heads.
 * One warp per row; lane l holds elements d = l + 32 k (k < 8) of a head. */

#define ATT_K (PXK_ATT_MAX_HEAD_DIM / 32)
#define ATT_WARPS 4

/* The geometry of an attention call: B sequences of Tq query rows against Tk
 * key rows (the whole attention: Tq = Tk = T, positions qp = kp = 0..T-1;
 * a block of ring attention: each side's global positions), H query heads,
 * KV key/value heads of hd, rows of W elements. */
struct AttGeo {
  int B, Tq, Tk, H, KV, hd;
  int64_t W;
  float scale;
  PxkPos qp, kp;
};

/* dot product of a register row (lane's part) with a row in memory, over the warp */
template <typename T>
__device__ __forceinline__ float warp_dot(const float *reg, const T *row, int hd) {
  const int lane = threadIdx.x & 31;
  float s = 0;
#pragma unroll
  for (int k = 0; k < ATT_K; k++) {
    int d = lane + 32 * k;
    if (d < hd) s += reg[k] * ld(row, d);
  }
  return warp_sum(s);
}
template <typename T> __device__ __forceinline__ void warp_load(float *reg, const T *row, int hd, float mul) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int k = 0; k < ATT_K; k++) {
    int d = lane + 32 * k;
    reg[k] = d < hd ? ld(row, d) * mul : 0.f;
  }
}
template <typename T> __device__ __forceinline__ void warp_add_store(T *row, const float *reg, int hd, float mul) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int k = 0; k < ATT_K; k++) {
    int d = lane + 32 * k;
    if (d < hd) st_(row, d, ld(row, d) + reg[k] * mul);
  }
}

/* reg += a * row (the lane's part) */
template <typename T> __device__ __forceinline__ void warp_axpy(float *reg, float a, const T *row, int hd) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int k = 0; k < ATT_K; k++) {
    int d = lane + 32 * k;
    if (d < hd) reg[k] += a * ld(row, d);
  }
}
/* One key of the online softmax: score s, value row vr into the running
 * output o, max mx and sum l (flash attention's rescale). */
template <typename T>
__device__ __forceinline__ void online_step(float *o, float &mx, float &l, float s, const T *vr, int hd) {
  const int lane = threadIdx.x & 31;
  float mnew = fmaxf(mx, s), corr = expf(mx - mnew), p = expf(s - mnew);
  l = l * corr + p;
#pragma unroll
  for (int k = 0; k < ATT_K; k++) {
    int d = lane + 32 * k;
    o[k] = o[k] * corr + (d < hd ? p * ld(vr, d) : 0.f);
  }
  mx = mnew;
}

/* q row (b, h, i) -> pointers */
#define Q_ROW(base, b, t, h) ((base) + ((int64_t)(b) * g.Tq + (t)) * g.W + (int64_t)(h) * g.hd)
#define K_ROW(base, b, t, kvh) ((base) + ((int64_t)(b) * g.Tk + (t)) * g.W + (int64_t)(g.H + (kvh)) * g.hd)
#define V_ROW(base, b, t, kvh) ((base) + ((int64_t)(b) * g.Tk + (t)) * g.W + (int64_t)(g.H + g.KV + (kvh)) * g.hd)

template <typename T>
__global__ void k_attention_fwd(T *out, void *att, const T *qkv, AttGeo g, int save_probs) {
  const int64_t r = (int64_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5); /* (b, h, i) */
  const int lane = threadIdx.x & 31;
  if (r >= (int64_t)g.B * g.H * g.Tq) return; /* whole warps leave together */
  const int i = (int)(r % g.Tq), h = (int)(r / g.Tq % g.H), b = (int)(r / ((int64_t)g.Tq * g.H));
  const int kvh = h / (g.H / g.KV);
  float q[ATT_K], o[ATT_K];
  warp_load(q, Q_ROW(qkv, b, i, h), g.hd, g.scale);
#pragma unroll
  for (int k = 0; k < ATT_K; k++) o[k] = 0.f;
  float mx = -INFINITY, l = 0.f;
  for (int j = 0; j <= i; j++)
    online_step(o, mx, l, warp_dot(q, K_ROW(qkv, b, j, kvh), g.hd), V_ROW(qkv, b, j, kvh), g.hd);
  T *orow = out + ((int64_t)b * g.Tq + i) * ((int64_t)g.H * g.hd) + (int64_t)h * g.hd;
#pragma unroll
  for (int k = 0; k < ATT_K; k++) {
    int d = lane + 32 * k;
    if (d < g.hd) st_(orow, d, o[k] / l);
  }
  const float lse = mx + logf(l);
  if (save_probs) { /* the probabilities, as the cpu backend saves them */
    T *prow = (T *)att + r * g.Tq;
    for (int j = 0; j <= i; j++) {
      float s = warp_dot(q, K_ROW(qkv, b, j, kvh), g.hd);
      if (lane == (j & 31)) st_(prow, j, expf(s - lse));
    }
    for (int j = i + 1 + lane; j < g.Tq; j += 32) st_(prow, j, 0.f);
  } else if (lane == 0) {
    ((float *)att)[r] = lse;
  }
}

/* P[i][j] of row r: saved, or from the log-sum-exp and the recomputed score */
template <typename T>
__device__ __forceinline__ float att_prob(const void *att, int save_probs, int64_t r, int j, int T_,
                                          const float *q_scaled, const T *krow, int hd) {
  if (save_probs) return ld((const T *)att, r * T_ + j);
  float s = warp_dot(q_scaled, krow, hd);
  return expf(s - ((const float *)att)[r]);
}

/* dQ and D = rowsum(P * dP), one warp per query row. */
template <typename T>
__global__ void k_attention_bwd_q(T *dqkv, const T *dout, const T *qkv, const void *att, float *D, AttGeo g,
                                  int save_probs) {
  const int64_t r = (int64_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
  if (r >= (int64_t)g.B * g.H * g.Tq) return;
  const int i = (int)(r % g.Tq), h = (int)(r / g.Tq % g.H), b = (int)(r / ((int64_t)g.Tq * g.H));
  const int kvh = h / (g.H / g.KV);
  float q[ATT_K], dO[ATT_K], dq[ATT_K];
  warp_load(q, Q_ROW(qkv, b, i, h), g.hd, g.scale);
  warp_load(dO, dout + ((int64_t)b * g.Tq + i) * ((int64_t)g.H * g.hd) + (int64_t)h * g.hd, g.hd, 1.f);
  float dsum = 0.f;
  for (int j = 0; j <= i; j++) {
    float p = att_prob(att, save_probs, r, j, g.Tq, q, K_ROW(qkv, b, j, kvh), g.hd);
    dsum += p * warp_dot(dO, V_ROW(qkv, b, j, kvh), g.hd);
  }
#pragma unroll
  for (int k = 0; k < ATT_K; k++) dq[k] = 0.f;
  const int lane = threadIdx.x & 31;
  for (int j = 0; j <= i; j++) {
    const T *kr = K_ROW(qkv, b, j, kvh);
    float p = att_prob(att, save_probs, r, j, g.Tq, q, kr, g.hd);
    warp_axpy(dq, p * (warp_dot(dO, V_ROW(qkv, b, j, kvh), g.hd) - dsum), kr, g.hd);
  }
  warp_add_store(Q_ROW(dqkv, b, i, h), dq, g.hd, g.scale);
  if (lane == 0) D[r] = dsum;
}

/* dK and dV, one warp per key row (b, kv head, j), over the query heads that
 * share the kv head and the rows i >= j: no two warps write the same row. */
template <typename T>
__global__ void k_attention_bwd_kv(T *dqkv, const T *dout, const T *qkv, const void *att, const float *D,
                                   AttGeo g, int save_probs) {
  const int64_t r = (int64_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5); /* (b, kvh, j) */
  if (r >= (int64_t)g.B * g.KV * g.Tq) return;
  const int j = (int)(r % g.Tq), kvh = (int)(r / g.Tq % g.KV), b = (int)(r / ((int64_t)g.Tq * g.KV));
  const int per = g.H / g.KV, lane = threadIdx.x & 31;
  const T *kr = K_ROW(qkv, b, j, kvh);
  float vreg[ATT_K], dk[ATT_K], dv[ATT_K];
  warp_load(vreg, V_ROW(qkv, b, j, kvh), g.hd, 1.f);
#pragma unroll
  for (int k = 0; k < ATT_K; k++) dk[k] = dv[k] = 0.f;
  for (int h = kvh * per; h < (kvh + 1) * per; h++)
    for (int i = j; i < g.Tq; i++) {
      const int64_t rq = ((int64_t)b * g.H + h) * g.Tq + i;
      const T *qr = Q_ROW(qkv, b, i, h);
      const T *dor = dout + ((int64_t)b * g.Tq + i) * ((int64_t)g.H * g.hd) + (int64_t)h * g.hd;
      float p;
      if (save_probs) {
        p = ld((const T *)att, rq * g.Tq + j);
      } else {
        float s = 0;
#pragma unroll
        for (int k = 0; k < ATT_K; k++) {
          int d = lane + 32 * k;
          if (d < g.hd) s += ld(qr, d) * g.scale * ld(kr, d);
        }
        p = expf(warp_sum(s) - ((const float *)att)[rq]);
      }
      warp_axpy(dv, p, dor, g.hd);
      warp_axpy(dk, p * (warp_dot(vreg, dor, g.hd) - D[rq]), qr, g.hd);
    }
  warp_add_store(K_ROW(dqkv, b, j, kvh), dk, g.hd, g.scale);
  warp_add_store(V_ROW(dqkv, b, j, kvh), dv, g.hd, 1.f);
}

extern "C" int pxk_att_saves_probs(int dt, int T) { return dt == PXK_F32 || T == 1; }

static AttGeo att_geo(int B, int Tq, int Tk, int heads, int kv_heads, int head_dim, PxkPos qp, PxkPos kp) {
  AttGeo g;
  g.B = B;
  g.Tq = Tq;
  g.Tk = Tk;
  g.H = heads;
  g.KV = kv_heads;
  g.hd = head_dim;
  g.W = (int64_t)(heads + 2 * kv_heads) * head_dim;
  g.scale = (float)(1.0 / sqrt((double)head_dim));
  g.qp = qp;
  g.kp = kp;
  return g;
}

/* The whole causal attention over T tokens at positions 0..T-1. */
static AttGeo att_geo_full(int B, int T, int heads, int kv_heads, int head_dim) {
  const PxkPos at_t = {0, 0, 0}; /* split 0: token t at t */
  return att_geo(B, T, T, heads, kv_heads, head_dim, at_t, at_t);
}

static unsigned att_blocks(int64_t rows) { return (unsigned)((rows + ATT_WARPS - 1) / ATT_WARPS); }

extern "C" cudaError_t pxk_attention_fwd(cudaStream_t st, int dt, void *out, void *att, const void *qkv, int B,
                                         int Tn, int heads, int kv_heads, int head_dim, int sp) {
  if (head_dim > PXK_ATT_MAX_HEAD_DIM) return cudaErrorInvalidValue;
  AttGeo g = att_geo_full(B, Tn, heads, kv_heads, head_dim);
  DISPATCH(dt, k_attention_fwd<T><<<att_blocks((int64_t)B * heads * Tn), 32 * ATT_WARPS, 0, st>>>(
                   (T *)out, att, (const T *)qkv, g, sp))
}

extern "C" cudaError_t pxk_attention_bwd(cudaStream_t st, int dt, void *dqkv, const void *dout, const void *qkv,
                                         const void *att, float *D, int B, int Tn, int heads, int kv_heads,
                                         int head_dim, int sp) {
  if (head_dim > PXK_ATT_MAX_HEAD_DIM) return cudaErrorInvalidValue;
  AttGeo g = att_geo_full(B, Tn, heads, kv_heads, head_dim);
  DISPATCH(dt, {
    k_attention_bwd_q<T><<<att_blocks((int64_t)B * heads * Tn), 32 * ATT_WARPS, 0, st>>>(
        (T *)dqkv, (const T *)dout, (const T *)qkv, att, D, g, sp);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    k_attention_bwd_kv<T><<<att_blocks((int64_t)B * kv_heads * Tn), 32 * ATT_WARPS, 0, st>>>(
        (T *)dqkv, (const T *)dout, (const T *)qkv, att, D, g, sp);
  })
}

/* ---- block attention: a Q block (Tq rows per sequence) against a K/V block
 * (Tk rows), both in the qkv layout, causal by global positions. Plain
 * loops, one warp per row; the same arithmetic as the attention above. ---- */

#define BO_ROW(base, b, t, h) ((base) + ((int64_t)(b) * g.Tq + (t)) * ((int64_t)g.H * g.hd) + (int64_t)(h) * g.hd)

template <typename T>
__global__ void k_attn_block_fwd(T *out, float *lse, const T *q, const T *kv, AttGeo g) {
  const int64_t r = (int64_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5); /* (b, h, i) */
  const int lane = threadIdx.x & 31;
  if (r >= (int64_t)g.B * g.H * g.Tq) return;
  const int i = (int)(r % g.Tq), h = (int)(r / g.Tq % g.H), b = (int)(r / ((int64_t)g.Tq * g.H));
  const int kvh = h / (g.H / g.KV), pi = pos_of(g.qp, i);
  float qr[ATT_K], o[ATT_K];
  warp_load(qr, Q_ROW(q, b, i, h), g.hd, g.scale);
#pragma unroll
  for (int k = 0; k < ATT_K; k++) o[k] = 0.f;
  float mx = -INFINITY, l = 0.f;
  for (int j = 0; j < g.Tk; j++)
    if (pos_of(g.kp, j) <= pi) online_step(o, mx, l, warp_dot(qr, K_ROW(kv, b, j, kvh), g.hd), V_ROW(kv, b, j, kvh), g.hd);
  T *orow = BO_ROW(out, b, i, h);
#pragma unroll
  for (int k = 0; k < ATT_K; k++) {
    int d = lane + 32 * k;
    if (d < g.hd) st_(orow, d, l > 0.f ? o[k] / l : 0.f);
  }
  if (lane == 0) lse[r] = l > 0.f ? mx + logf(l) : -INFINITY;
}

/* one thread per row (b, h, t). TO, out's type, is T or float: float is the
 * fp32 accumulator of ring attention beside half partial outputs (backend.h),
 * stored without rounding to T (the caller casts once after the last merge) */
template <typename TO, typename T>
__global__ void k_attn_merge(TO *out, float *lse, const T *out_b, const float *lse_b, int B, int Tn, int H, int hd) {
  GRID_STRIDE(r, (int64_t)B * H * Tn) {
    const int64_t t = r % Tn, h = r / Tn % H, b = r / ((int64_t)Tn * H);
    float la = lse[r], lb = lse_b[r], m = fmaxf(la, lb);
    if (m == -INFINITY) continue;
    float l = m + logf(expf(la - m) + expf(lb - m)), wa = expf(la - l), wb = expf(lb - l);
    TO *o = out + (b * Tn + t) * ((int64_t)H * hd) + h * hd;
    const T *ob = out_b + (b * Tn + t) * ((int64_t)H * hd) + h * hd;
    for (int d = 0; d < hd; d++) st_(o, d, wa * ld(o, d) + wb * ld(ob, d));
    lse[r] = l;
  }
}

/* D = rowsum(dO * O) of query row (b, h, i), over the warp */
template <typename T>
__device__ __forceinline__ float blk_D(const T *dout, const T *out, const AttGeo &g, int b, int i, int h) {
  float dO[ATT_K];
  warp_load(dO, BO_ROW(dout, b, i, h), g.hd, 1.f);
  return warp_dot(dO, BO_ROW(out, b, i, h), g.hd);
}

template <typename T>
__global__ void k_attn_block_bwd_q(T *dq, const T *dout, const T *q, const T *kv, const T *out, const float *lse,
                                   AttGeo g) {
  const int64_t r = (int64_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
  if (r >= (int64_t)g.B * g.H * g.Tq) return;
  const int i = (int)(r % g.Tq), h = (int)(r / g.Tq % g.H), b = (int)(r / ((int64_t)g.Tq * g.H));
  const int kvh = h / (g.H / g.KV), pi = pos_of(g.qp, i);
  const float l = lse[r];
  if (l == -INFINITY) return;
  float qr[ATT_K], dO[ATT_K], dqr[ATT_K];
  warp_load(qr, Q_ROW(q, b, i, h), g.hd, g.scale);
  warp_load(dO, BO_ROW(dout, b, i, h), g.hd, 1.f);
  const float D = blk_D(dout, out, g, b, i, h);
#pragma unroll
  for (int k = 0; k < ATT_K; k++) dqr[k] = 0.f;
  for (int j = 0; j < g.Tk; j++) {
    if (pos_of(g.kp, j) > pi) continue;
    const T *kr = K_ROW(kv, b, j, kvh);
    float p = expf(warp_dot(qr, kr, g.hd) - l);
    warp_axpy(dqr, p * (warp_dot(dO, V_ROW(kv, b, j, kvh), g.hd) - D), kr, g.hd);
  }
  warp_add_store(Q_ROW(dq, b, i, h), dqr, g.hd, g.scale);
}

/* one warp per key row (b, kvh, j) over the query heads of its group: no two
 * warps write the same dK / dV row */
template <typename T>
__global__ void k_attn_block_bwd_kv(T *dkv, const T *dout, const T *q, const T *kv, const T *out, const float *lse,
                                    AttGeo g) {
  const int64_t r = (int64_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
  if (r >= (int64_t)g.B * g.KV * g.Tk) return;
  const int j = (int)(r % g.Tk), kvh = (int)(r / g.Tk % g.KV), b = (int)(r / ((int64_t)g.Tk * g.KV));
  const int per = g.H / g.KV, pj = pos_of(g.kp, j);
  float kreg[ATT_K], vreg[ATT_K], dk[ATT_K], dv[ATT_K];
  warp_load(kreg, K_ROW(kv, b, j, kvh), g.hd, g.scale);
  warp_load(vreg, V_ROW(kv, b, j, kvh), g.hd, 1.f);
#pragma unroll
  for (int k = 0; k < ATT_K; k++) dk[k] = dv[k] = 0.f;
  for (int h = kvh * per; h < (kvh + 1) * per; h++)
    for (int i = 0; i < g.Tq; i++) {
      if (pos_of(g.qp, i) < pj) continue;
      const float l = lse[((int64_t)b * g.H + h) * g.Tq + i];
      if (l == -INFINITY) continue;
      const T *qr = Q_ROW(q, b, i, h), *dor = BO_ROW(dout, b, i, h);
      float p = expf(warp_dot(kreg, qr, g.hd) - l);
      warp_axpy(dv, p, dor, g.hd);
      warp_axpy(dk, p * (warp_dot(vreg, dor, g.hd) - blk_D(dout, out, g, b, i, h)), qr, g.hd);
    }
  warp_add_store(K_ROW(dkv, b, j, kvh), dk, g.hd, g.scale);
  warp_add_store(V_ROW(dkv, b, j, kvh), dv, g.hd, 1.f);
}

extern "C" cudaError_t pxk_attn_block_fwd(cudaStream_t st, int dt, void *out, float *lse, const void *q, const void *kv,
                                          int B, int Tq, int Tk, int heads, int kv_heads, int head_dim, PxkPos qp,
                                          PxkPos kp) {
  if (head_dim > PXK_ATT_MAX_HEAD_DIM) return cudaErrorInvalidValue;
  AttGeo g = att_geo(B, Tq, Tk, heads, kv_heads, head_dim, qp, kp);
  DISPATCH(dt, k_attn_block_fwd<T><<<att_blocks((int64_t)B * heads * Tq), 32 * ATT_WARPS, 0, st>>>(
                   (T *)out, lse, (const T *)q, (const T *)kv, g))
}

extern "C" cudaError_t pxk_attn_merge(cudaStream_t st, int dt, int out_dt, void *out, float *lse, const void *out_b,
                                      const float *lse_b, int B, int Tn, int heads, int head_dim) {
  int64_t n = (int64_t)B * heads * Tn;
  if (out_dt == PXK_F32 && dt != PXK_F32) { /* the fp32 accumulator beside a half out_b */
    DISPATCH(dt, k_attn_merge<float, T><<<ew_blocks(n), EW_THREADS, 0, st>>>((float *)out, lse, (const T *)out_b,
                                                                             lse_b, B, Tn, heads, head_dim))
  }
  if (out_dt != dt) return cudaErrorInvalidValue;
  DISPATCH(dt, k_attn_merge<T, T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)out, lse, (const T *)out_b,
                                                                        lse_b, B, Tn, heads, head_dim))
}

extern "C" cudaError_t pxk_attn_block_bwd(cudaStream_t st, int dt, void *dq, void *dkv, const void *dout,
                                          const void *q, const void *kv, const void *out, const float *lse, int B,
                                          int Tq, int Tk, int heads, int kv_heads, int head_dim, PxkPos qp,
                                          PxkPos kp) {
  if (head_dim > PXK_ATT_MAX_HEAD_DIM) return cudaErrorInvalidValue;
  AttGeo g = att_geo(B, Tq, Tk, heads, kv_heads, head_dim, qp, kp);
  DISPATCH(dt, {
    k_attn_block_bwd_q<T><<<att_blocks((int64_t)B * heads * Tq), 32 * ATT_WARPS, 0, st>>>(
        (T *)dq, (const T *)dout, (const T *)q, (const T *)kv, (const T *)out, lse, g);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    k_attn_block_bwd_kv<T><<<att_blocks((int64_t)B * kv_heads * Tk), 32 * ATT_WARPS, 0, st>>>(
        (T *)dkv, (const T *)dout, (const T *)q, (const T *)kv, (const T *)out, lse, g);
  })
}

/* ---- attention on tensor cores: the kernels between the batched GEMMs
 * (cuda_kernels.h PxkAttTc; backend_cuda.c queues the GEMMs). ---- */

/* entry n -> sequence b, query head h (the order n = (i*B + b)*KV + j) */
__device__ __forceinline__ void tc_entry(const PxkAttTc &a, int n, int *b, int *h, int *j) {
  const int per = a.H / a.KV, bk = a.B * a.KV;
  const int i = n / bk, rem = n % bk;
  *b = rem / a.KV;
  *j = rem % a.KV;
  *h = *j * per + i;
}

/* One thread per entry e < E: the GEMMs' pointers (byte offsets of the element size es; dK, dV in the fp32
 * rows of 2*KV*hd of dkv_acc when it is given). */
__global__ void k_att_tc_ptrs(char **ptrs, PxkAttTc a, int es, const char *q, const char *kv, const char *o, char *S,
                              char *P, char *dP, char *dS, char *dq, char *dkv, char *dkv_acc) {
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= a.E) return;
  int b, h, j;
  tc_entry(a, a.n0 + e, &b, &h, &j);
  const int64_t W = (int64_t)(a.H + 2 * a.KV) * a.hd, C = (int64_t)a.H * a.hd;
  const int64_t oq = (((int64_t)b * a.Tq + a.q0) * W + (int64_t)h * a.hd) * es;      /* Q rows q0.. (qkv layout) */
  const int64_t ok = ((int64_t)b * a.Tk * W + (int64_t)(a.H + j) * a.hd) * es;        /* K rows 0.. */
  const int64_t ov = ((int64_t)b * a.Tk * W + (int64_t)(a.H + a.KV + j) * a.hd) * es; /* V rows 0.. */
  const int64_t oo = (((int64_t)b * a.Tq + a.q0) * C + (int64_t)h * a.hd) * es;      /* O rows q0.. (B*Tq, C) */
  const int64_t t4 = (int64_t)e * a.tile * 4, th = (int64_t)e * a.tile * es;         /* fp32 and dt tiles */
  const int64_t W2 = (int64_t)2 * a.KV * a.hd;                                        /* dkv_acc's rows */
  char *const dk = dkv_acc ? dkv_acc + ((int64_t)b * a.Tk * W2 + (int64_t)j * a.hd) * 4 : dkv + ok;
  char *const dv = dkv_acc ? dkv_acc + ((int64_t)b * a.Tk * W2 + (int64_t)(a.KV + j) * a.hd) * 4 : dkv + ov;
  char *const vals[PXK_ATP_N] = {
    (char *)q + oq, (char *)kv + ok, (char *)kv + ov, (char *)o + oo, S + t4, P + th, dP + t4, dS + th,
    dq + oq, dk, dv,
  };
  for (int k = 0; k < PXK_ATP_N; k++) ptrs[(int64_t)k * a.E + e] = vals[k];
}

extern "C" cudaError_t pxk_att_tc_ptrs(cudaStream_t st, int dt, void **ptrs, PxkAttTc a, const void *q, const void *kv,
                                       const void *o, void *S, void *P, void *dP, void *dS, void *dq, void *dkv,
                                       float *dkv_acc) {
  const int es = dt == PXK_F32 ? 4 : 2;
  /* NULL bases (tiles or gradients an op does not use) give pointers that are never read */
  k_att_tc_ptrs<<<(a.E + 127) / 128, 128, 0, st>>>((char **)ptrs, a, es, (const char *)q, (const char *)kv,
                                                   (const char *)o, (char *)S, (char *)P, (char *)dP, (char *)dS,
                                                   (char *)dq, (char *)dkv, (char *)dkv_acc);
  return cudaGetLastError();
}

/* dkv's key and value columns += acc (rows of 2*KV*hd fp32), rounded once */
template <typename T> __global__ void k_att_add_kv(T *dkv, const float *acc, int64_t rows, int64_t W, int64_t c0,
                                                   int64_t W2) {
  GRID_STRIDE(idx, rows * W2) {
    const int64_t i = idx / W2 * W + c0 + idx % W2;
    st_(dkv, i, ld(dkv, i) + acc[idx]);
  }
}
extern "C" cudaError_t pxk_att_add_kv(cudaStream_t st, int dt, void *dkv, const float *acc, int64_t rows, int H,
                                      int KV, int hd) {
  const int64_t W = (int64_t)(H + 2 * KV) * hd, W2 = (int64_t)2 * KV * hd;
  DISPATCH(dt, k_att_add_kv<T><<<ew_blocks(rows * W2), EW_THREADS, 0, st>>>((T *)dkv, acc, rows, W, (int64_t)H * hd,
                                                                             W2))
}

/* row r = (e, i) of a block -> its entry's lse index, the query's position
 * and the offset of its tile row */
struct TcRow {
  int64_t lse_i, off;
  int pq;
};
__device__ __forceinline__ TcRow tc_row(const PxkAttTc &a, int64_t r) {
  const int e = (int)(r / a.nq), i = (int)(r % a.nq);
  int b, h, j;
  tc_entry(a, a.n0 + e, &b, &h, &j);
  TcRow w;
  w.lse_i = ((int64_t)b * a.H + h) * a.Tq + a.q0 + i;
  w.off = (int64_t)e * a.tile + (int64_t)i * a.ldS;
  w.pq = pos_of(a.qp, a.q0 + i);
  return w;
}

/* S, P: tiles (E of nq x ldS); lse (B*H, Tq) fp32 */
template <typename T> __global__ void k_att_tc_softmax_fwd(PxkAttTc a, const float *S, T *P, float *lse) {
  const int64_t r = (int64_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5); /* (e, i) */
  const int lane = threadIdx.x & 31;
  if (r >= (int64_t)a.E * a.nq) return; /* whole warps leave together */
  const TcRow w = tc_row(a, r);
  const float *s = S + w.off;
  T *p = P + w.off;
  float mx = -INFINITY;
  for (int j = lane; j < a.nk; j += 32)
    if (pos_of(a.kp, j) <= w.pq) mx = fmaxf(mx, s[j] * a.scale);
  mx = warp_max(mx);
  float l = 0.f;
  if (mx > -INFINITY)
    for (int j = lane; j < a.nk; j += 32)
      if (pos_of(a.kp, j) <= w.pq) l += expf(s[j] * a.scale - mx);
  l = warp_sum(l);
  const float lse_v = l > 0.f ? mx + logf(l) : -INFINITY;
  for (int j = lane; j < a.nk; j += 32)
    st_(p, j, lse_v > -INFINITY && pos_of(a.kp, j) <= w.pq ? expf(s[j] * a.scale - lse_v) : 0.f);
  if (lane == 0) lse[w.lse_i] = lse_v;
}

extern "C" cudaError_t pxk_att_tc_softmax_fwd(cudaStream_t st, int dt, PxkAttTc a, const float *S, void *P, float *lse) {
  DISPATCH(dt, k_att_tc_softmax_fwd<T><<<att_blocks((int64_t)a.E * a.nq), 32 * ATT_WARPS, 0, st>>>(a, S, (T *)P, lse))
}

/* S, dP: fp32 tiles; P, dS: tiles of T; lse as above; D (B*H, Tq) fp32 or NULL */
template <typename T>
__global__ void k_att_tc_softmax_bwd(PxkAttTc a, const float *S, const float *dP, T *P, T *dS, const float *lse,
                                     const float *D) {
  const int64_t r = (int64_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5); /* (e, i) */
  const int lane = threadIdx.x & 31;
  if (r >= (int64_t)a.E * a.nq) return;
  const TcRow w = tc_row(a, r);
  const float *s = S + w.off, *dp = dP + w.off;
  T *p = P + w.off, *ds = dS + w.off;
  const float l = lse[w.lse_i];
  float d;
  if (D) {
    d = D[w.lse_i];
  } else { /* the whole row is in the block: D = sum_j p_j dP_j = dO . O */
    d = 0.f;
    if (l > -INFINITY)
      for (int j = lane; j < a.nk; j += 32)
        if (pos_of(a.kp, j) <= w.pq) d += expf(s[j] * a.scale - l) * dp[j];
    d = warp_sum(d);
  }
  for (int j = lane; j < a.nk; j += 32) {
    const float pj = l > -INFINITY && pos_of(a.kp, j) <= w.pq ? expf(s[j] * a.scale - l) : 0.f;
    st_(p, j, pj);
    st_(ds, j, pj > 0.f ? pj * (dp[j] - d) * a.scale : 0.f);
  }
}

extern "C" cudaError_t pxk_att_tc_softmax_bwd(cudaStream_t st, int dt, PxkAttTc a, const float *S, const float *dP,
                                              void *P, void *dS, const float *lse, const float *D) {
  DISPATCH(dt, k_att_tc_softmax_bwd<T><<<att_blocks((int64_t)a.E * a.nq), 32 * ATT_WARPS, 0, st>>>(
                   a, S, dP, (T *)P, (T *)dS, lse, D))
}

/* one warp per row (b, h, t): D = dout . out over the head's hd values */
template <typename T> __global__ void k_att_rowdot(float *D, const T *dout, const T *out, int B, int Tn, int H, int hd) {
  const int64_t r = (int64_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5); /* (b, h, t) */
  const int lane = threadIdx.x & 31;
  if (r >= (int64_t)B * H * Tn) return;
  const int64_t t = r % Tn, h = r / Tn % H, b = r / ((int64_t)Tn * H);
  const int64_t o = (b * Tn + t) * ((int64_t)H * hd) + h * hd;
  float s = 0.f;
  for (int d = lane; d < hd; d += 32) s += ld(dout, o + d) * ld(out, o + d);
  s = warp_sum(s);
  if (lane == 0) D[r] = s;
}

extern "C" cudaError_t pxk_att_rowdot(cudaStream_t st, int dt, float *D, const void *dout, const void *out, int B,
                                      int Tn, int H, int hd) {
  DISPATCH(dt, k_att_rowdot<T><<<att_blocks((int64_t)B * H * Tn), 32 * ATT_WARPS, 0, st>>>(
                   D, (const T *)dout, (const T *)out, B, Tn, H, hd))
}

/* ---- cross-entropy: one block per row ---- */

/* The max of row o..o+V of logits and the sum of exp(logit - max), to every thread. */
template <typename T> __device__ void row_softmax_stats(const T *logits, int64_t o, int64_t V, float *mx, float *sum) {
  float m = -INFINITY;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, ld(logits, o + v));
  m = block_max(m);
  float s = 0;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) s += expf(ld(logits, o + v) - m);
  *mx = m;
  *sum = block_sum(s);
}

template <typename T>
__global__ void k_ce_fwd(float *losses, double *loss64, const T *logits, const int32_t *tgt, int *bad, int64_t V) {
  const int64_t i = blockIdx.x, o = i * V;
  float mx, s;
  row_softmax_stats(logits, o, V, &mx, &s);
  if (threadIdx.x == 0) {
    int64_t t = tgt[i];
    double l;
    if (t < 0 || t >= V) {
      bad[1] = (int)t;
      bad[0] = PXK_BAD_TARGET;
      l = NAN;
    } else {
      l = (double)mx + log((double)s) - (double)ld(logits, o + t);
    }
    loss64[i] = l;
    losses[i] = (float)l;
  }
}
extern "C" cudaError_t pxk_ce_fwd(cudaStream_t st, int dt, float *losses, double *loss64, const void *logits,
                                  const int32_t *tgt, int *bad, int64_t N, int64_t V) {
  DISPATCH(dt, k_ce_fwd<T><<<(unsigned)N, ROW_THREADS, 0, st>>>(losses, loss64, (const T *)logits, tgt,
                                                                bad, V))
}

template <typename T>
__global__ void k_ce_bwd(T *dlogits, const T *logits, const int32_t *tgt, float f, int *bad, int64_t V) {
  const int64_t i = blockIdx.x, o = i * V;
  float mx, s;
  row_softmax_stats(logits, o, V, &mx, &s);
  const float inv = 1.f / s;
  const int64_t t = tgt[i];
  if (threadIdx.x == 0 && (t < 0 || t >= V)) {
    bad[1] = (int)t;
    bad[0] = PXK_BAD_TARGET;
  }
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x)
    st_(dlogits, o + v, ld(dlogits, o + v) + f * (expf(ld(logits, o + v) - mx) * inv - (v == t ? 1.f : 0.f)));
}
extern "C" cudaError_t pxk_ce_bwd(cudaStream_t st, int dt, void *dlogits, const void *logits, const int32_t *tgt,
                                  double f, int *bad, int64_t N, int64_t V) {
  DISPATCH(dt, k_ce_bwd<T><<<(unsigned)N, ROW_THREADS, 0, st>>>((T *)dlogits, (const T *)logits, tgt, (float)f,
                                                                bad, V))
}

template <typename T> __global__ void k_ce_vp_max(float *rowmax, const T *logits, int64_t V, int64_t n_real) {
  const int64_t i = blockIdx.x;
  float mx = -INFINITY;
  for (int64_t v = threadIdx.x; v < n_real; v += blockDim.x) mx = fmaxf(mx, ld(logits, i * V + v));
  mx = block_max(mx);
  if (threadIdx.x == 0) rowmax[i] = mx;
}
extern "C" cudaError_t pxk_ce_vp_max(cudaStream_t st, int dt, float *rowmax, const void *logits, int64_t N,
                                     int64_t V, int64_t n_real) {
  DISPATCH(dt, k_ce_vp_max<T><<<(unsigned)N, ROW_THREADS, 0, st>>>(rowmax, (const T *)logits, V, n_real))
}

template <typename T>
__global__ void k_ce_vp_stats(float *stats, const T *logits, const int32_t *tgt, const float *gmax, int64_t v0,
                              int64_t N, int64_t V, int64_t n_real) {
  const int64_t i = blockIdx.x;
  const float mx = gmax[i];
  float s = 0;
  for (int64_t v = threadIdx.x; v < n_real; v += blockDim.x) s += expf(ld(logits, i * V + v) - mx);
  s = block_sum(s);
  if (threadIdx.x == 0) {
    int64_t t = (int64_t)tgt[i] - v0;
    stats[i] = s;
    stats[N + i] = t >= 0 && t < n_real ? ld(logits, i * V + t) : 0.f;
  }
}
extern "C" cudaError_t pxk_ce_vp_stats(cudaStream_t st, int dt, float *stats, const void *logits,
                                       const int32_t *tgt, const float *gmax, int64_t v0, int64_t N, int64_t V,
                                       int64_t n_real) {
  DISPATCH(dt, k_ce_vp_stats<T><<<(unsigned)N, ROW_THREADS, 0, st>>>(stats, (const T *)logits, tgt,
                                                                      gmax, v0, N, V, n_real))
}

/* statistics only: fp32 whatever the logits' type */
__global__ void k_ce_vp_loss(float *losses, double *loss64, const float *gmax, const float *stats, int64_t N) {
  GRID_STRIDE(i, N) {
    double l = log((double)stats[i]) + (double)gmax[i] - (double)stats[N + i];
    loss64[i] = l;
    losses[i] = (float)l;
  }
}
extern "C" cudaError_t pxk_ce_vp_loss(cudaStream_t st, float *losses, double *loss64, const float *gmax,
                                      const float *stats, int64_t N) {
  k_ce_vp_loss<<<ew_blocks(N), EW_THREADS, 0, st>>>(losses, loss64, gmax, stats, N);
  return cudaGetLastError();
}

template <typename T>
__global__ void k_ce_vp_bwd(T *dlogits, const T *logits, const int32_t *tgt, const float *gmax, const float *stats,
                            int64_t v0, int64_t n_real, float f, int64_t N, int64_t V) {
  GRID_STRIDE(idx, N * V) {
    int64_t i = idx / V, v = idx % V;
    if (v >= n_real) continue;
    float d = f * expf(ld(logits, idx) - gmax[i]) / stats[i];
    if ((int64_t)tgt[i] - v0 == v) d -= f;
    st_(dlogits, idx, ld(dlogits, idx) + d);
  }
}
extern "C" cudaError_t pxk_ce_vp_bwd(cudaStream_t st, int dt, void *dlogits, const void *logits,
                                     const int32_t *tgt, const float *gmax, const float *stats, int64_t v0,
                                     int64_t n_real, double f, int64_t N, int64_t V) {
  DISPATCH(dt, k_ce_vp_bwd<T><<<ew_blocks(N * V), EW_THREADS, 0, st>>>(
                   (T *)dlogits, (const T *)logits, tgt, gmax, stats, v0, n_real, (float)f,
                   N, V))
}

/* ---- scalars ---- */

__global__ void k_sum_into(void *acc, int acc_dt, const double *buf, int64_t n, double divisor) {
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += buf[i];
  s = block_sum(s);
  if (threadIdx.x == 0) st_scalar(acc, acc_dt, ld_scalar(acc, acc_dt) + s / divisor);
}
extern "C" cudaError_t pxk_sum_into(cudaStream_t st, void *acc, int acc_dt, const double *buf, int64_t n,
                                    double divisor) {
  k_sum_into<<<1, 1024, 0, st>>>(acc, acc_dt, buf, n, divisor);
  return cudaGetLastError();
}

extern "C" int pxk_sumsq_parts(int64_t n) {
  int64_t p = (n + 8 * ROW_THREADS - 1) / (8 * ROW_THREADS);
  return (int)(p < 1 ? 1 : p > 1024 ? 1024 : p);
}
template <typename T> __global__ void k_sumsq(const T *x, int64_t n, double *part) {
  double s = 0;
  GRID_STRIDE(i, n) {
    double v = ld(x, i);
    s += v * v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}
extern "C" cudaError_t pxk_sumsq_partial(cudaStream_t st, int dt, const void *x, int64_t n, double *part,
                                         int nparts) {
  DISPATCH(dt, k_sumsq<T><<<nparts, ROW_THREADS, 0, st>>>((const T *)x, n, part))
}

template <typename T> __global__ void k_sumsq_multi(const PxkSpan *spans, const PxkChunk *chunks, double *part) {
  const PxkChunk c = chunks[blockIdx.x];
  const T *x = (const T *)spans[c.tensor].x;
  const int64_t n = spans[c.tensor].n, end = c.start + PXK_CHUNK < n ? c.start + PXK_CHUNK : n;
  double s = 0;
  for (int64_t i = c.start + threadIdx.x; i < end; i += blockDim.x) {
    double v = ld(x, i);
    s += v * v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}
extern "C" cudaError_t pxk_sumsq_multi(cudaStream_t st, int dt, const PxkSpan *spans, const PxkChunk *chunks,
                                       int n_chunks, double *part) {
  if (n_chunks <= 0) return cudaSuccess;
  DISPATCH(dt, k_sumsq_multi<T><<<n_chunks, ROW_THREADS, 0, st>>>(spans, chunks, part))
}

template <typename T> __global__ void k_check_finite(void *flag, int flag_dt, const T *x, int64_t n) {
  GRID_STRIDE(i, n) if (!isfinite(ld(x, i))) st_scalar(flag, flag_dt, 1.0);
}
extern "C" cudaError_t pxk_check_finite(cudaStream_t st, int dt, void *flag, int flag_dt, const void *x,
                                        int64_t n) {
  DISPATCH(dt, k_check_finite<T><<<ew_blocks(n), EW_THREADS, 0, st>>>(flag, flag_dt, (const T *)x, n))
}

__global__ void k_clip_coef(void *coef, int coef_dt, const void *sumsq, int sumsq_dt, double max_norm) {
  /* 1 < q ? 1 : q, not fmin: a NaN q stays NaN (the cpu backend's MIN, torch's clamp) */
  const double q = max_norm / (sqrt(ld_scalar(sumsq, sumsq_dt)) + 1e-6);
  st_scalar(coef, coef_dt, max_norm > 0 ? (1.0 < q ? 1.0 : q) : 1.0);
}
extern "C" cudaError_t pxk_clip_coef(cudaStream_t st, void *coef, int coef_dt, const void *sumsq, int sumsq_dt,
                                     double max_norm) {
  k_clip_coef<<<1, 1, 0, st>>>(coef, coef_dt, sumsq, sumsq_dt, max_norm);
  return cudaGetLastError();
}

/* ---- AdamW: the cpu backend's f32 arithmetic, element by element ---- */

/* element i, with the gradient scale gs and the weight decay wd */
template <typename T, typename G>
__device__ __forceinline__ void adamw_elem(T *p, const G *grad, T *m, T *v, int64_t i, const PxkAdamW &o, float gs,
                                           float wd) {
  float g = gs * ld(grad, i);
  float mi = o.b1 * ld(m, i) + o.a1 * g;
  float vi = o.b2 * ld(v, i) + o.a2 * g * g;
  st_(m, i, mi);
  st_(v, i, vi);
  float pi = ld(p, i);
  st_(p, i, pi - o.lr * ((mi / o.c1) / (sqrtf(vi / o.c2) + o.eps) + wd * pi));
}

template <typename T>
__global__ void k_adamw(T *p, const T *grad, T *m, T *v, int64_t n, PxkAdamW o, const void *scale, int scale_dt,
                        const void *skip, int skip_dt) {
  if (skip && ld_scalar(skip, skip_dt) != 0) return;
  const float gs = (float)(scale ? o.grad_scale * ld_scalar(scale, scale_dt) : o.grad_scale);
  GRID_STRIDE(i, n) adamw_elem(p, grad, m, v, i, o, gs, o.wd);
}
extern "C" cudaError_t pxk_adamw(cudaStream_t st, int dt, void *p, const void *g, void *m, void *v, int64_t n,
                                 PxkAdamW o, const void *scale, int scale_dt, const void *skip, int skip_dt) {
  DISPATCH(dt, k_adamw<T><<<ew_blocks(n), EW_THREADS, 0, st>>>((T *)p, (const T *)g, (T *)m, (T *)v, n, o, scale,
                                                               scale_dt, skip, skip_dt))
}

/* Many tensors, one launch: block b updates chunk b, element by element as k_adamw */
template <typename T, typename G>
__global__ void k_adamw_multi(const PxkAdamWTensor *ts, const PxkChunk *chunks, PxkAdamW o, const void *scale,
                              int scale_dt, const void *skip, int skip_dt) {
  if (skip && ld_scalar(skip, skip_dt) != 0) return;
  const float gs = (float)(scale ? o.grad_scale * ld_scalar(scale, scale_dt) : o.grad_scale);
  const PxkChunk c = chunks[blockIdx.x];
  const PxkAdamWTensor t = ts[c.tensor];
  T *p = (T *)t.p, *m = (T *)t.m, *v = (T *)t.v;
  const G *grad = (const G *)t.g;
  const int64_t end = c.start + PXK_CHUNK < t.n ? c.start + PXK_CHUNK : t.n;
  for (int64_t i = c.start + threadIdx.x; i < end; i += blockDim.x) adamw_elem(p, grad, m, v, i, o, gs, t.wd);
}
template <typename T>
static cudaError_t adamw_multi_g(cudaStream_t st, int gdt, const PxkAdamWTensor *ts, const PxkChunk *chunks,
                                 int n_chunks, PxkAdamW o, const void *scale, int scale_dt, const void *skip,
                                 int skip_dt) {
  switch (gdt) {
  case PXK_F32: k_adamw_multi<T, float><<<n_chunks, EW_THREADS, 0, st>>>(ts, chunks, o, scale, scale_dt, skip, skip_dt); break;
  case PXK_BF16: k_adamw_multi<T, bf16><<<n_chunks, EW_THREADS, 0, st>>>(ts, chunks, o, scale, scale_dt, skip, skip_dt); break;
  case PXK_F16: k_adamw_multi<T, f16><<<n_chunks, EW_THREADS, 0, st>>>(ts, chunks, o, scale, scale_dt, skip, skip_dt); break;
  default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}
extern "C" cudaError_t pxk_adamw_multi(cudaStream_t st, int dt, int gdt, const PxkAdamWTensor *tensors,
                                       const PxkChunk *chunks, int n_chunks, PxkAdamW o, const void *scale,
                                       int scale_dt, const void *skip, int skip_dt) {
  if (n_chunks <= 0) return cudaSuccess;
  switch (dt) {
  case PXK_F32: return adamw_multi_g<float>(st, gdt, tensors, chunks, n_chunks, o, scale, scale_dt, skip, skip_dt);
  case PXK_BF16: return adamw_multi_g<bf16>(st, gdt, tensors, chunks, n_chunks, o, scale, scale_dt, skip, skip_dt);
  case PXK_F16: return adamw_multi_g<f16>(st, gdt, tensors, chunks, n_chunks, o, scale, scale_dt, skip, skip_dt);
  default: return cudaErrorInvalidValue;
  }
}

/* ---- cast: dst (=|+=) src across f32 / f64 / bf16 / f16, in f32, or in f64
 * when either side is f64, rounded once to dst's type (to nearest even) as
 * the cpu backend's cast ---- */

__device__ __forceinline__ double ldd(const double *p, int64_t i) { return p[i]; }
__device__ __forceinline__ double ldd(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ double ldd(const bf16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ double ldd(const f16 *p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ float ld(const double *p, int64_t i) { return (float)p[i]; }
__device__ __forceinline__ void std_(double *p, int64_t i, double v) { p[i] = v; }
template <typename T> __device__ __forceinline__ void std_(T *p, int64_t i, double v) { st_(p, i, (float)v); }

template <typename Dt, typename St, bool wide> __global__ void k_cast(Dt *d, const St *s, int64_t n, int acc) {
  GRID_STRIDE(i, n) {
    if constexpr (wide) {
      double x = ldd(s, i);
      if (acc) x += ldd(d, i);
      std_(d, i, x);
    } else {
      float x = ld(s, i);
      if (acc) x += ld(d, i);
      st_(d, i, x);
    }
  }
}

template <typename Dt>
static cudaError_t cast_from(cudaStream_t st, Dt *d, const void *s, int sdt, int64_t n, int acc) {
  constexpr bool dwide = sizeof(Dt) == sizeof(double);
  switch (sdt) {
  case PXK_F32:
    if constexpr (dwide) k_cast<Dt, float, true><<<ew_blocks(n), EW_THREADS, 0, st>>>(d, (const float *)s, n, acc);
    else k_cast<Dt, float, false><<<ew_blocks(n), EW_THREADS, 0, st>>>(d, (const float *)s, n, acc);
    break;
  case PXK_BF16:
    if constexpr (dwide) k_cast<Dt, bf16, true><<<ew_blocks(n), EW_THREADS, 0, st>>>(d, (const bf16 *)s, n, acc);
    else k_cast<Dt, bf16, false><<<ew_blocks(n), EW_THREADS, 0, st>>>(d, (const bf16 *)s, n, acc);
    break;
  case PXK_F16:
    if constexpr (dwide) k_cast<Dt, f16, true><<<ew_blocks(n), EW_THREADS, 0, st>>>(d, (const f16 *)s, n, acc);
    else k_cast<Dt, f16, false><<<ew_blocks(n), EW_THREADS, 0, st>>>(d, (const f16 *)s, n, acc);
    break;
  case PXK_F64: k_cast<Dt, double, true><<<ew_blocks(n), EW_THREADS, 0, st>>>(d, (const double *)s, n, acc); break;
  default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

extern "C" cudaError_t pxk_cast(cudaStream_t st, void *dst, int ddt, const void *src, int sdt, int64_t n,
                                int accumulate) {
  switch (ddt) {
  case PXK_F32: return cast_from(st, (float *)dst, src, sdt, n, accumulate);
  case PXK_F64: return cast_from(st, (double *)dst, src, sdt, n, accumulate);
  case PXK_BF16: return cast_from(st, (bf16 *)dst, src, sdt, n, accumulate);
  case PXK_F16: return cast_from(st, (f16 *)dst, src, sdt, n, accumulate);
  default: return cudaErrorInvalidValue;
  }
}

