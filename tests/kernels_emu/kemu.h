/* kemu.h — just enough of CUDA to run exec/cuda/kernels.cu on the host, its
 * launchers included (tests/kernels_emu/run.sh rewrites each launch
 * `k<<<grid, block, smem, st>>>(args)` into `emu_launch(emu_cfg(grid, block,
 * smem, st), k, args)`; nothing else of the file changes).
 *
 * A launch runs its CTAs one after another, the threads of a CTA (any block
 * size up to 1024, x and y) as cooperative fibers (ucontext) on one host
 * thread: a fiber runs until it waits at a barrier or returns. __syncthreads
 * waits for the CTA's threads that have not returned, a warp shuffle puts
 * the lane's value in the warp's slots and waits for the warp twice (the
 * value written, then read), so a shuffle whose warp has lost lanes (a
 * return before it, which the full mask 0xffffffff forbids) or a barrier
 * that no schedule can pass (threads at different barriers for good) is
 * reported and aborts the test. __shared__ is `static`: one copy per
 * kernel (instantiation), shared by the CTA's fibers, kept from the CTA
 * before (as stale shared memory on the GPU). atomics are plain
 * read-modify-writes: no two fibers run at once. The schedule is fixed and
 * greedy: the first fiber that can run runs to its next wait, in thread
 * order up the CTA and down it on alternate CTAs and launches, so one warp
 * runs ahead to its next __syncthreads before the next one starts and a
 * shared value overwritten before every warp has read it (a missing
 * __syncthreads) comes out wrong (with block_sum's first barrier taken out,
 * the norms failed; with k_colsum's, the column sums). Other races than
 * those a warp running ahead shows stay hidden. This checks the arithmetic, the
 * indexing, the launch geometry (a grid or block of 0, or of more than 1024
 * threads, is cudaErrorInvalidConfiguration at cudaGetLastError, as on the
 * GPU) and the shuffles' and barriers' participation, not races, timing or
 * occupancy. bf16 / f16 convert to nearest even as __float2bfloat16_rn /
 * __float2half_rn; __d*_rn are plain double operations (built with
 * -ffp-contract=off). */
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <math.h>
#include <ucontext.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(n)

typedef int cudaError_t;
typedef void *cudaStream_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorInvalidConfiguration = 9 };

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct EmuDim {
  unsigned x, y, z;
};
/* the running fiber's; set by the scheduler at each switch */
extern EmuDim threadIdx, blockIdx, blockDim, gridDim;

namespace kemu {
struct Barrier {
  int members = 0, arrived = 0;
  unsigned gen = 0;
};
void wait(Barrier &b);       /* arrive and wait for the barrier's members */
Barrier &cta_barrier();
Barrier &warp_barrier();     /* the calling thread's warp */
int warp_members_at_start(); /* lanes the calling thread's warp started with */
double *shfl_slots();        /* 32 slots of the calling thread's warp */
void fail(const char *what); /* report a violation and abort */
void launch(dim3 grid, dim3 block, const std::function<void()> &body);
extern cudaError_t last_error;
} // namespace kemu

inline void __syncthreads() { kemu::wait(kemu::cta_barrier()); }
inline void __syncwarp(unsigned = 0xffffffffu) { kemu::wait(kemu::warp_barrier()); }
template <class V> inline V __shfl_xor_sync(unsigned mask, V v, int o) {
  kemu::Barrier &w = kemu::warp_barrier();
  if (mask != 0xffffffffu || w.members != kemu::warp_members_at_start() || w.members != 32)
    kemu::fail("__shfl_xor_sync: not every lane of a full warp takes part");
  const unsigned lane = (threadIdx.y * blockDim.x + threadIdx.x) & 31u;
  double *s = kemu::shfl_slots();
  s[lane] = (double)v;
  kemu::wait(w);
  V r = (V)s[lane ^ (unsigned)o];
  kemu::wait(w);
  return r;
}
[[noreturn]] inline void __trap() { std::abort(); }
using std::max;
using std::min;

inline float atomicAdd(float *p, float v) {
  float o = *p;
  *p = o + v;
  return o;
}
inline unsigned atomicCAS(unsigned *p, unsigned cmp, unsigned v) {
  unsigned o = *p;
  if (o == cmp) *p = v;
  return o;
}
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }

#include "../emu_half16.h" /* __nv_bfloat16, __half and their conversions */
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 x) { return x.u; }
inline unsigned short __half_as_ushort(__half x) { return x.u; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16{u}; }
inline __half __ushort_as_half(unsigned short u) { return __half{u}; }

/* the runtime calls kernels.cu makes */
inline cudaError_t cudaGetLastError() {
  cudaError_t e = kemu::last_error;
  kemu::last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) {
  std::memset(p, v, n);
  return cudaSuccess;
}

struct EmuCfg {
  dim3 grid, block;
};
inline EmuCfg emu_cfg(dim3 grid, dim3 block, size_t = 0, cudaStream_t = nullptr) { return EmuCfg{grid, block}; }
template <class... P, class... A> void emu_launch(EmuCfg c, void (*k)(P...), A... a) {
  kemu::launch(c.grid, c.block, [&] { k(a...); });
}
