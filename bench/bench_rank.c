/* bench_rank.c — does the search's analytic ranking agree with the event
 * engine? GPT-3 175B on 1024 A100s (128 DGX A100 nodes), s = 2048, global
 * batch 1536: the search keeps its 20 best layouts by analytic step time and
 * simulates each; this prints both times per layout and Kendall's tau-b
 * between the two orders (1: the same order; the target is >= 0.9).
 * Both are the event engine's: the analytic one over the table the search
 * puts together from its blocks (search.h), the simulated one over the core's
 * px_cost_table_new of the whole layout. Printed, never asserted
 * (tests/test_search.c asserts the agreement on smaller searches).
 * Usage: bench_rank [--stack NAME] [--fix KNOB=VALUE]... [GPUS]. */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "search.h"

int main(int argc, char **argv) {
  int gpus = 1024;
  PxStack stack = PX_STACK_PARALLAX;
  PxSearchOptions o;
  px_search_options_init(&o);
  g_autoptr(GError) err = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--fix") && i + 1 < argc) {
      if (!px_search_fix_parse(&o.fix, argv[++i], &err)) {
        fprintf(stderr, "bench_rank: %s\n", err->message);
        return 2;
      }
    } else if (!strcmp(argv[i], "--stack") && i + 1 < argc) {
      if (!px_stack_parse(argv[++i], &stack)) {
        fprintf(stderr, "bench_rank: unknown stack '%s'\n", argv[i]);
        return 2;
      }
    } else {
      gpus = atoi(argv[i]);
    }
  }
  if (gpus < 8 || gpus % 8) {
    fprintf(stderr, "usage: bench_rank [--stack NAME] [--fix KNOB=VALUE]... [GPUS, a multiple of 8]\n");
    return 2;
  }
  g_autoptr(PxModel) m = px_model_load("gpt3-175b", &err);
  g_autoptr(PxCluster) c = m ? px_cluster_load("dgx-a100-80g", &err) : NULL;
  if (!c) {
    fprintf(stderr, "bench_rank: %s\n", err->message);
    return 1;
  }
  c->nodes = gpus / c->gpus_per_node;
  PxPlan p;
  px_plan_init(&p);
  p.seq = 2048;
  p.gbs = 1536;
  p.stack = stack;
  o.top = 20;
  o.confirm = 20;
  g_autoptr(GTimer) t = g_timer_new();
  g_autoptr(PxSearchResult) r = px_search_run(m, c, &p, &o, &err);
  if (!r) {
    fprintf(stderr, "bench_rank: %s\n", err->message);
    return 1;
  }
  int n = (int)r->top->len;
  g_autofree double *analytic = g_new(double, MAX(n, 1));
  g_autofree double *simulated = g_new(double, MAX(n, 1));
  printf("# GPT-3 175B, %d A100 80 GB, s 2048, gbs 1536, stack %s: the %d best layouts by analytic time\n", gpus,
         px_stack_name(stack), n);
  printf("# %-3s %12s %12s %8s  %s\n", "#", "analytic ms", "engine ms", "diff %", "layout");
  for (int i = 0; i < n; i++) {
    const PxSearchCandidate *cd = &g_array_index(r->top, PxSearchCandidate, i);
    analytic[i] = cd->analytic_time;
    simulated[i] = cd->step_time;
    g_autofree char *ls = px_layout_format(&cd->layout);
    printf("  %-3d %12.1f %12.1f %+8.2f  %s\n", i + 1, 1e3 * analytic[i], 1e3 * simulated[i],
           100 * (analytic[i] / simulated[i] - 1), ls);
  }
  printf("Kendall tau-b (analytic vs engine order, %d layouts): %.3f   (search %.1f s)\n", n,
         px_search_kendall_tau(r), g_timer_elapsed(t, NULL));
  px_plan_clear(&p);
  return 0;
}
