/* bench_sim.c — speed of the event engine: instructions simulated per second
 * and simulate calls per second, one rank per stage and every rank, for
 * 8 GPUs (pp 4, m 8, Llama-2 7B), 1024 GPUs (tp 8, pp 16, dp 8, m 128) and
 * 4096 GPUs (tp 8, pp 32, dp 16, m 256) (GPT-3 175B) on DGX H100 nodes.
 * Validates first: the ideal table must give the analytic 1F1B bubble. */
#include <glib.h>
#include <math.h>
#include <stdio.h>
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
  return 0;
}
