/* mpi_parity.c — one layout of the CI parity subset (tests/parity.h, the
 * flash / context-parallel layouts after the others) with every
 * rank a process of its own on the `mpi` communicator: run by
 * tests/cli_parity_mpi.sh as `mpirun -n WORLD mpi_parity INDEX DTYPE`. Rank 0
 * also runs the single rank in-process and compares the losses of STEPS
 * steps: 1e-5 relative in f32, 1e-12 in f64. `mpi_parity --list` prints
 * "INDEX WORLD" per layout. Exit 0 and one "ok" line on rank 0, or one line
 * naming the step that differs and a non-zero exit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "comm.h"
#include "parity.h"

/* The flash / context-parallel layouts run as processes too (the others run
 * as threads in test_runtime): cp 2 alone, cp 2 with tp, pp and ZeRO-1, with
 * sequence parallelism and zb-h1, and flash attention without CP. */
static const int mpi_flash[] = {0, 5, 7, 9};

/* Layout index: the parity subset, then those flash / context-parallel layouts. */
static const Layout *layout_at(int index, int *cp, PxAttention *attn) {
  int n = (int)G_N_ELEMENTS(parity_layouts);
  const FlashLayout *f = index < n ? NULL : &flash_parity_layouts[mpi_flash[index - n]];
  *cp = f ? f->cp : 1;
  *attn = f ? f->attention : PX_ATTN_DEFAULT;
  return f ? &f->l : &parity_layouts[index];
}

static int run(int index, PxDType dt) {
  int cp;
  PxAttention attn;
  const Layout *l = layout_at(index, &cp, &attn);
  g_autoptr(GError) error = NULL;
  g_autoptr(PxModel) model = load_model(l->model);
  PxComm *world = px_comm_mpi_new(30, &error);
  if (!world) {
    fprintf(stderr, "mpi_parity: %s\n", error->message);
    return 2;
  }
  int rank = px_comm_world_rank(world);
  PxPlan plan;
  layout_plan(l, &plan);
  plan.cp = cp;
  plan.attention = attn;
  if (cp > 1 || px_attention_fused(attn)) plan.precision = PX_PREC_BF16; /* as layout_runtime_attn */
  PxRunOptions o;
  layout_options(&o, dt);
  double got[STEPS], want[STEPS];
  int rc = 0;
  PxRuntime *rt = px_runtime_new_rank(model, &plan, &o, world, &error);
  for (int s = 0; rt && s < STEPS; s++) {
    PxStepResult r;
    if (!px_runtime_step(rt, &r, &error)) break;
    got[s] = r.loss;
  }
  px_runtime_free(rt);
  px_plan_clear(&plan);
  if (error) {
    fprintf(stderr, "mpi_parity: layout %d rank %d: %s\n", index, rank, error->message);
    rc = 1;
  } else if (rank == 0) {
    /* the reference: one rank, same micro-batch size and global batch */
    Layout single = {l->model, 1, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, l->mbs, l->gbs, FALSE, 1};
    g_autoptr(PxRuntime) ref = layout_runtime(model, &single, dt, &error);
    for (int s = 0; ref && s < STEPS; s++) {
      PxStepResult r;
      if (!px_runtime_step(ref, &r, &error)) break;
      want[s] = r.loss;
    }
    double tol = dt == PX_DTYPE_F64 ? 1e-12 : 1e-5, worst = 0;
    for (int s = 0; !error && s < STEPS; s++) {
      double rel = fabs(got[s] - want[s]) / fabs(want[s]);
      worst = MAX(worst, rel);
      if (rel > tol) {
        fprintf(stderr, "mpi_parity: %s cp%d dp%d tp%d pp%d vpp%d %s zero%d (%s, processes): step %d loss %.15g, single rank %.15g (rel %.2e)\n",
                l->model, cp, l->dp, l->tp, l->pp, l->vpp, l->schedule, l->zero, px_dtype_name(dt), s + 1, got[s], want[s], rel);
        rc = 1;
        break;
      }
    }
    if (error) {
      fprintf(stderr, "mpi_parity: reference: %s\n", error->message);
      rc = 1;
    }
    if (!rc)
      printf("ok %d - %s cp%d %s attention dp%d tp%d pp%d vpp%d %s zero%d ckpt %s%s %s: %d processes, %d steps, worst rel %.1e\n",
             index, l->model, cp, px_attention_name(attn), l->dp, l->tp, l->pp, l->vpp, l->schedule, l->zero, px_ckpt_name(l->ckpt),
             l->sp ? " sp" : "", px_dtype_name(dt), l->dp * l->tp * l->pp * cp, STEPS, worst);
  }
  px_comm_free(world);
  px_comm_mpi_finalize();
  return rc;
}

int main(int argc, char **argv) {
  int n = (int)(G_N_ELEMENTS(parity_layouts) + G_N_ELEMENTS(mpi_flash));
  if (argc == 2 && !strcmp(argv[1], "--list")) {
    for (int i = 0; i < n; i++) {
      int cp;
      PxAttention attn;
      const Layout *l = layout_at(i, &cp, &attn);
      printf("%d %d\n", i, l->dp * l->tp * l->pp * cp);
    }
    return 0;
  }
  if (argc != 3 || atoi(argv[1]) < 0 || atoi(argv[1]) >= n || (strcmp(argv[2], "f32") && strcmp(argv[2], "f64"))) {
    fprintf(stderr, "usage: mpi_parity --list | mpi_parity INDEX f32|f64\n");
    return 2;
  }
  return run(atoi(argv[1]), strcmp(argv[2], "f64") ? PX_DTYPE_F32 : PX_DTYPE_F64);
}
