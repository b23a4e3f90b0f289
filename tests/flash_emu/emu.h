/* emu.h — just enough of CUDA to run exec/cuda/flash_attn.cu's kernels on the
 * host, one CTA at a time, each of its 128 threads a std::thread (the
 * kernels' barriers and warp shuffles need them to run concurrently):
 * __syncthreads and __syncwarp are std::barriers of the CTA and the warp,
 * __shfl_xor_sync exchanges through a per-warp array between two warp
 * barriers. nvcuda::wmma: a fragment holds the whole 16x16 tile in fp32 in
 * every lane (each lane computes the same product); store_matrix_sync writes
 * from lane 0 only, so a read by another lane without a __syncwarp between
 * races, as on the GPU where each lane stores its own part. A store first
 * waits for the warp's lanes (the Programming Guide's "Waits until all warp
 * lanes have arrived at store_matrix_sync", Warp Matrix Functions): on the
 * GPU a lane stores the accumulator elements it loaded itself, so a load ...
 * store round trip of one tile needs no barrier, while here lane 0 stores
 * what every lane read. Loads and mma take no barrier here, so a lane's
 * write that a fragment load reads still needs the kernel's own __syncwarp.
 * Under -fsanitize=thread the kernels' missing barriers show as data races.
 * bf16 / f16 round to nearest even as __float2bfloat16_rn / __float2half_rn.
 * Not a model of
 * timing, occupancy or bank conflicts: of the arithmetic, the indexing and
 * the synchronisation only. tests/flash_emu/flash_emu.cc uses it. */
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <memory>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(n)

typedef int cudaError_t;
typedef void *cudaStream_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1 };

struct EmuDim {
  unsigned x, y, z;
};
extern thread_local EmuDim threadIdx, blockIdx;

/* the running CTA's barriers and shuffle buffers (flash_emu.cc) */
struct EmuCta {
  std::barrier<> cta{128};
  std::barrier<> warp0{32}, warp1{32}, warp2{32}, warp3{32};
  float shfl[4][32];
  std::barrier<> &warp(int w) { return w == 0 ? warp0 : w == 1 ? warp1 : w == 2 ? warp2 : warp3; }
};
extern EmuCta *emu_cta;
inline void __syncthreads() { emu_cta->cta.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu_cta->warp(threadIdx.x >> 5).arrive_and_wait(); }
inline float __shfl_xor_sync(unsigned, float v, int o) {
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
  emu_cta->shfl[w][lane] = v;
  __syncwarp();
  float r = emu_cta->shfl[w][lane ^ o];
  __syncwarp();
  return r;
}
[[noreturn]] inline void __trap() { std::abort(); }
using std::max;
using std::min;

struct uint4 {
  unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

#include "../emu_half16.h" /* __nv_bfloat16, __half and their conversions */
inline float emu_f(float x) { return x; }
inline float emu_f(__nv_bfloat16 x) { return __bfloat162float(x); }
inline float emu_f(__half x) { return __half2float(x); }

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
  float x[16][16];
};
template <class Use, class T, class L>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, L> &f, const T *p, unsigned ldm) {
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++)
      f.x[r][c] = emu_f(std::is_same<L, row_major>::value ? p[r * ldm + c] : p[c * ldm + r]);
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p, unsigned ldm,
                             layout_t l) {
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) f.x[r][c] = l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
}
inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm,
                              layout_t l) {
  __syncwarp();
  if ((threadIdx.x & 31) != 0) return; /* lane 0 only: see the header comment */
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) (l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r][c];
}
template <class Use, class T, class L> inline void fill_fragment(fragment<Use, 16, 16, 16, T, L> &f, float v) {
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) f.x[r][c] = v;
}
template <class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, T, LA> &a,
                     const fragment<matrix_b, 16, 16, 16, T, LB> &b,
                     const fragment<accumulator, 16, 16, 16, float> &c) {
  fragment<accumulator, 16, 16, 16, float> t;
  for (int m = 0; m < 16; m++)
    for (int n = 0; n < 16; n++) {
      float s = c.x[m][n];
      for (int k = 0; k < 16; k++) s += a.x[m][k] * b.x[k][n];
      t.x[m][n] = s;
    }
  d = t;
}
} // namespace wmma
} // namespace nvcuda
