/* kemu.cc — kemu.h's scheduler: a CTA's threads as fibers (see kemu.h). */
#include "kemu.h"
#include <vector>

EmuDim threadIdx, blockIdx, blockDim, gridDim;

namespace kemu {
cudaError_t last_error = cudaSuccess;

namespace {
enum { STACK = 256 * 1024 };
struct Fiber {
  ucontext_t ctx;
  EmuDim tid;
  Barrier *waiting = nullptr;
  unsigned gen = 0;
  bool done = false;
};
std::vector<Fiber> fibers;
std::vector<char> stacks;
ucontext_t sched;
Fiber *cur;
Barrier cta;
Barrier warps[32];
int warp_start[32];
double slots[32][32];
const std::function<void()> *body;
unsigned launches;

int warp_of(const Fiber *f) { return (int)((f->tid.y * blockDim.x + f->tid.x) >> 5); }
unsigned releases;
void release(Barrier &b) {
  if (b.arrived > 0 && b.arrived == b.members) {
    b.arrived = 0;
    b.gen++;
    releases++;
  }
}
void entry() {
  (*body)();
  cur->done = true;
  cta.members--;
  Barrier &w = warps[warp_of(cur)];
  w.members--;
  release(cta);
  release(w);
} /* returns to sched (uc_link) */
} // namespace

void fail(const char *what) {
  std::fprintf(stderr, "kernels emu: %s (block %u, thread %u,%u)\n", what, blockIdx.x, threadIdx.x, threadIdx.y);
  std::fflush(stdout);
  std::abort();
}
Barrier &cta_barrier() { return cta; }
Barrier &warp_barrier() { return warps[warp_of(cur)]; }
int warp_members_at_start() { return warp_start[warp_of(cur)]; }
double *shfl_slots() { return slots[warp_of(cur)]; }

void wait(Barrier &b) {
  cur->waiting = &b;
  cur->gen = b.gen;
  b.arrived++;
  release(b);
  if (b.gen == cur->gen) swapcontext(&cur->ctx, &sched);
  cur->waiting = nullptr;
}

void launch(dim3 grid, dim3 block, const std::function<void()> &k) {
  const unsigned nt = block.x * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || nt == 0 || nt > 1024 || block.z != 1 || grid.y != 1 ||
      grid.z != 1) {
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  if (fibers.size() < nt) {
    fibers.resize(nt);
    stacks.resize((size_t)nt * STACK);
  }
  body = &k;
  launches++;
  gridDim = EmuDim{grid.x, grid.y, grid.z};
  blockDim = EmuDim{block.x, block.y, block.z};
  for (unsigned b = 0; b < grid.x; b++) {
    blockIdx = EmuDim{b, 0, 0};
    cta = Barrier{};
    cta.members = (int)nt;
    for (unsigned w = 0; w < 32; w++) {
      warps[w] = Barrier{};
      warps[w].members = warp_start[w] = (int)std::min(32u, nt > w * 32 ? nt - w * 32 : 0u);
    }
    for (unsigned t = 0; t < nt; t++) {
      Fiber &f = fibers[t];
      f = Fiber{};
      f.tid = EmuDim{t % block.x, t / block.x, 0};
      getcontext(&f.ctx);
      f.ctx.uc_stack.ss_sp = stacks.data() + (size_t)t * STACK;
      f.ctx.uc_stack.ss_size = STACK;
      f.ctx.uc_link = &sched;
      makecontext(&f.ctx, entry, 0);
    }
    /* Greedy: always the first fiber that can run, in an order alternately up and
     * down the CTA, so a warp runs ahead to its next __syncthreads before the
     * next warp starts: a shared value that a warp overwrites before another
     * has read it (a missing barrier) comes out wrong instead of hiding. */
    const bool reverse = ((launches + b) & 1) != 0;
    unsigned left = nt, u = 0;
    while (left > 0) {
      if (u == nt) fail("deadlock: the CTA's threads wait at barriers that cannot complete");
      Fiber &f = fibers[reverse ? nt - 1 - u : u];
      if (f.done || (f.waiting && f.waiting->gen == f.gen)) {
        u++;
        continue;
      }
      cur = &f;
      threadIdx = f.tid;
      const unsigned rel = releases;
      swapcontext(&sched, &f.ctx);
      if (f.done) left--;
      u = releases != rel ? 0 : u + 1; /* a barrier opened: the first fibers may run again */
    }
  }
}
} // namespace kemu
