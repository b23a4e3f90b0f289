/* bench_sim.c — speed of the event engine: instructions simulated per second
 * and simulate calls per second, one rank per stage and every rank, for
 * 8 GPUs (pp 4, m 8, Llama-2 7B), 1024 GPUs (tp 8, pp 16, dp 8, m 128) and
 * 4096 GPUs (tp 8, pp 32, dp 16, m 256) (GPT-3 175B) on DGX H100 nodes.
 * Then the search's step-time-only runs (PxSimOptions.step_time_only, one
 * program per layout, its steady rounds found once: px_steady_new) of GPT-3
 * 175B with each schedule at large pp·vpp and m: every round simulated
 * (px_engine_set_no_jump) and with the jump over the steady rounds, the
 * share of the instructions jumped and whether the step times are the same
 * bit for bit. Validates first: the ideal table must give the analytic 1F1B
 * bubble. Prints, never asserts. */
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <time.h>
#include "cost.h"
#include "engine.h"
#include "partition.h"

typedef struct {
  const char *name, *model;
  int tp, pp, dp, m;
} Config;

typedef struct {
  double seconds_per_call;
  guint64 instructions;
} Timing;

/* repeat until 0.5 s have passed (at least once) */
static Timing time_simulate(const PxProgram *prog, const PxCostTable *tab, const PxSimOptions *opt) {
  Timing t = {0};
  gint64 t0 = g_get_monotonic_time(), now;
  int calls = 0;
  do {
    g_autoptr(GError) err = NULL;
    g_autoptr(PxSimResult) res = px_simulate(prog, tab, opt, &err);
    if (!res) g_error("simulate: %s", err->message);
    t.instructions = res->n_instructions;
    calls++;
    now = g_get_monotonic_time();
  } while (now - t0 < 500000);
  t.seconds_per_call = (now - t0) / 1e6 / calls;
  return t;
}

/* CPU seconds per call of this thread (the machine is shared: wall seconds
 * swing with the load), the least of five batches of at least 0.1 s each. */
static double cpu_per_call(const PxProgram *prog, const PxCostTable *tab, const PxSimOptions *opt) {
  double best = G_MAXDOUBLE;
  for (int batch = 0; batch < 5; batch++) {
    struct timespec a, b;
    int calls = 0;
    double used;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    do {
      g_autoptr(PxSimResult) res = px_simulate(prog, tab, opt, NULL);
      if (!res) g_error("simulate failed");
      calls++;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
      used = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    } while (used < 0.1);
    best = MIN(best, used / calls);
  }
  return best;
}

static gboolean validate(void) {
  PxPlan plan;
  px_plan_init(&plan);
  plan.pp = 16;
  plan.m = 128;
  g_autoptr(PxProgram) prog = px_program_new(&plan, NULL, NULL);
  g_autoptr(PxCostTable) tab = px_cost_table_ideal(16, 1);
  g_autoptr(PxSimResult) res = px_simulate(prog, tab, NULL, NULL);
  double want = 15.0 / (128 + 15);
  px_plan_clear(&plan);
  if (!res || fabs(res->bubble_fraction - want) > 1e-9) {
    fprintf(stderr, "bench_sim: validation failed: 1F1B p=16 m=128 bubble %g, want %g\n",
            res ? res->bubble_fraction : NAN, want);
    return FALSE;
  }
  return TRUE;
}

static gboolean run_config(const Config *c, const PxCluster *base) {
  g_autoptr(GError) err = NULL;
  g_autoptr(PxModel) model = px_model_load(c->model, &err);
  if (!model) {
    fprintf(stderr, "bench_sim: %s\n", err->message);
    return FALSE;
  }
  g_autoptr(PxCluster) cluster = px_cluster_copy(base);
  int world = c->tp * c->pp * c->dp;
  cluster->nodes = MAX(1, world / cluster->gpus_per_node);
  PxPlan plan;
  px_plan_init(&plan);
  plan.tp = c->tp;
  plan.pp = c->pp;
  plan.dp = c->dp;
  plan.mbs = 1;
  plan.gbs = c->m * c->dp;
  plan.zero = 1;
  g_autoptr(PxPartition) part = NULL;
  g_autoptr(PxProgram) prog = NULL;
  g_autoptr(PxCostTable) tab = NULL;
  if (!px_plan_validate(&plan, model, cluster, &err) || !(part = px_partition_new(model, &plan, NULL, &err)) ||
      !(tab = px_cost_table_new(model, cluster, &plan, part, &err))) {
    fprintf(stderr, "bench_sim: %s: %s\n", c->name, err->message);
    px_plan_clear(&plan);
    return FALSE;
  }
  gint64 t0 = g_get_monotonic_time();
  prog = px_program_new(&plan, part, &err);
  double t_prog = (g_get_monotonic_time() - t0) / 1e6;
  if (!prog) {
    fprintf(stderr, "bench_sim: %s: %s\n", c->name, err->message);
    px_plan_clear(&plan);
    return FALSE;
  }
  PxSimOptions sym = {.no_timeline = TRUE}, sym_tl = {0}, full = {.full = TRUE, .no_timeline = TRUE};
  const struct {
    const char *what;
    const PxSimOptions *opt;
  } modes[] = {{"per-stage", &sym}, {"per-stage+timeline", &sym_tl}, {"all ranks", &full}};
  for (gsize i = 0; i < G_N_ELEMENTS(modes); i++) {
    Timing t = time_simulate(prog, tab, modes[i].opt);
    printf("%-26s %-19s %12" G_GUINT64_FORMAT " %14.3g %12.4g %12.4g %10.4f\n", c->name, modes[i].what,
           t.instructions, t.instructions / t.seconds_per_call, 1.0 / t.seconds_per_call, t.seconds_per_call * 1e3,
           t_prog * 1e3);
  }
  px_plan_clear(&plan);
  return TRUE;
}

/* One layout's step time, every round run and with the jump. */
static gboolean run_jump(const char *name, PxScheduleKind k, int pp, int vpp, int m, const PxCluster *base,
                         const PxModel *model) {
  g_autoptr(GError) err = NULL;
  g_autoptr(PxCluster) cluster = px_cluster_copy(base);
  PxPlan plan;
  px_plan_init(&plan);
  plan.schedule = k;
  plan.tp = 8;
  plan.pp = pp;
  plan.vpp = vpp;
  plan.dp = 1;
  plan.mbs = 1;
  plan.gbs = m;
  plan.zero = 1;
  cluster->nodes = MAX(1, plan.tp * pp / cluster->gpus_per_node);
  g_autoptr(PxPartition) part = NULL;
  g_autoptr(PxProgram) prog = NULL;
  g_autoptr(PxCostTable) tab = NULL;
  if (!px_plan_validate(&plan, model, cluster, &err) || !(part = px_partition_new(model, &plan, NULL, &err)) ||
      !(tab = px_cost_table_new(model, cluster, &plan, part, &err)) || !(prog = px_program_new(&plan, part, &err))) {
    fprintf(stderr, "bench_sim: %s: %s\n", name, err->message);
    px_plan_clear(&plan);
    return FALSE;
  }
  g_autoptr(PxSteady) steady = px_steady_new(prog);
  PxSimOptions o = {.no_timeline = TRUE, .step_time_only = TRUE, .steady = steady};
  px_engine_set_no_jump(TRUE);
  double every = cpu_per_call(prog, tab, &o);
  g_autoptr(PxSimResult) a = px_simulate(prog, tab, &o, NULL);
  px_engine_set_no_jump(FALSE);
  double jump = cpu_per_call(prog, tab, &o);
  g_autoptr(PxSimResult) b = px_simulate(prog, tab, &o, NULL);
  printf("%-30s %6d %12" G_GUINT64_FORMAT " %9.1f %12.3f %12.3f %8.2f  %s\n", name, m, b->n_instructions,
         100.0 * b->n_jumped / b->n_instructions, every * 1e3, jump * 1e3, every / jump,
         a->step_time == b->step_time ? "the same bit for bit" : "DIFFER");
  px_plan_clear(&plan);
  return TRUE;
}

int main(void) {
  if (!validate()) return 1;
  g_autoptr(GError) err = NULL;
  g_autoptr(PxCluster) cluster = px_cluster_load("dgx-h100", &err);
  if (!cluster) {
    fprintf(stderr, "bench_sim: %s\n", err->message);
    return 1;
  }
  const Config configs[] = {
    {"8 GPUs llama2-7b pp4 m8", "llama2-7b", 1, 4, 2, 8},
    {"1024 GPUs gpt3 tp8pp16dp8", "gpt3-175b", 8, 16, 8, 128},
    {"4096 GPUs gpt3 tp8pp32dp16", "gpt3-175b", 8, 32, 16, 256},
  };
  printf("# bench_sim: 1F1B, one core; instructions = program instructions executed per call\n");
  printf("# %-24s %-19s %12s %14s %12s %12s %10s\n", "config", "ranks simulated", "instructions", "instr/s",
         "calls/s", "ms/call", "program ms");
  for (gsize i = 0; i < G_N_ELEMENTS(configs); i++)
    if (!run_config(&configs[i], cluster)) return 1;

  g_autoptr(PxModel) gpt3 = px_model_load("gpt3-175b", &err);
  if (!gpt3) {
    fprintf(stderr, "bench_sim: %s\n", err->message);
    return 1;
  }
  const struct {
    const char *name;
    PxScheduleKind k;
    int pp, vpp, m;
  } jumps[] = {
    {"1f1b pp16", PX_SCHED_1F1B, 16, 1, 1024},
    {"interleaved pp8 vpp4", PX_SCHED_INTERLEAVED, 8, 4, 1024},
    {"interleaved pp8 vpp12", PX_SCHED_INTERLEAVED, 8, 12, 1024},
    {"interleaved pp16 vpp2", PX_SCHED_INTERLEAVED, 16, 2, 1024},
    {"interleaved pp16 vpp6", PX_SCHED_INTERLEAVED, 16, 6, 2048},
    {"interleaved pp32 vpp3", PX_SCHED_INTERLEAVED, 32, 3, 2048},
    {"zb-h1 pp16", PX_SCHED_ZB_H1, 16, 1, 1024},
    {"zb-h2 pp16", PX_SCHED_ZB_H2, 16, 1, 1024},
    {"zb-h2 pp32", PX_SCHED_ZB_H2, 32, 1, 2048},
    {"zb-v pp16", PX_SCHED_ZB_V, 16, 2, 1024},
    {"dualpipev pp16", PX_SCHED_DUALPIPEV, 16, 2, 1024},
    {"gpipe pp16", PX_SCHED_GPIPE, 16, 1, 1024},
  };
  printf("# step time only (the search's), GPT-3 175B, tp 8, mbs 1, DGX H100, one core: CPU ms per simulate call\n");
  printf("# %-28s %6s %12s %9s %12s %12s %8s  %s\n", "layout", "m", "instructions", "jumped %", "every round",
         "jump", "speed-up", "step time");
  for (gsize i = 0; i < G_N_ELEMENTS(jumps); i++)
    if (!run_jump(jumps[i].name, jumps[i].k, jumps[i].pp, jumps[i].vpp, jumps[i].m, cluster, gpt3)) return 1;
  return 0;
}
