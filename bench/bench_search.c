/* bench_search.c — how fast the layout search is.
 *   1. analytic plan evaluations per second, one thread and every thread
 *      (Llama-2 70B, 256 H100s, 4M tokens of 4096; one candidate confirmed so
 *      the event simulation is a negligible share);
 *   2. wall time of a full search (default options: 16 candidates simulated)
 *      for Llama-2 70B on 256 and on 4096 H100s.
 * It validates first: both thread counts must name the same winner.
 * Usage: bench_search [THREADS] (default: every core). */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include "search.h"

static void load(PxModel **m, PxCluster **c, PxPlan *p, int gpus, int gbs) {
  g_autoptr(GError) err = NULL;
  *m = px_model_load("llama2-70b", &err);
  if (*m) *c = px_cluster_load("dgx-h100", &err);
  if (!*m || !*c) {
    fprintf(stderr, "bench_search: %s\n", err->message);
    exit(1);
  }
  (*c)->nodes = gpus / (*c)->gpus_per_node;
  px_plan_init(p);
  p->seq = 4096;
  p->gbs = gbs;
}

static PxSearchResult *run(const PxModel *m, const PxCluster *c, const PxPlan *p, int threads, int confirm) {
  PxSearchOptions o;
  px_search_options_init(&o);
  o.threads = threads;
  o.confirm = confirm;
  o.top = 1;
  g_autoptr(GError) err = NULL;
  PxSearchResult *r = px_search_run(m, c, p, &o, &err);
  if (!r || r->top->len == 0) {
    fprintf(stderr, "bench_search: search failed: %s\n", err ? err->message : "no layout fits");
    exit(1);
  }
  return r;
}

int main(int argc, char **argv) {
  int all = argc > 1 ? atoi(argv[1]) : (int)g_get_num_processors();
  if (all < 1) all = 1;
  PxModel *m;
  PxCluster *c;
  PxPlan p;
  load(&m, &c, &p, 256, 1024);

  /* validate: the winner does not depend on the thread count */
  g_autoptr(PxSearchResult) v1 = run(m, c, &p, 1, 16), vn = run(m, c, &p, all, 16);
  const PxSearchCandidate *w1 = &g_array_index(v1->top, PxSearchCandidate, 0);
  const PxSearchCandidate *wn = &g_array_index(vn->top, PxSearchCandidate, 0);
  if (px_layout_compare(&w1->layout, &wn->layout) || w1->step_time != wn->step_time) {
    fprintf(stderr, "bench_search: 1 and %d threads disagree on the winner\n", all);
    return 1;
  }
  g_autofree char *ws = px_layout_format(&w1->layout);
  printf("# validated: 1 and %d threads pick %s (%.1f ms simulated)\n", all, ws, 1e3 * w1->step_time);

  printf("# analytic evaluations (Llama-2 70B, 256 GPUs, gbs 1024 x 4096)\n");
  printf("# %-8s %12s %10s %14s %16s\n", "threads", "layouts", "time s", "evals/s", "evals/s/thread");
  int counts[] = {1, all};
  for (int i = 0; i < (all > 1 ? 2 : 1); i++) {
    double best = G_MAXDOUBLE;
    guint64 n = 0;
    for (int rep = 0; rep < 3; rep++) {
      g_autoptr(PxSearchResult) r = run(m, c, &p, counts[i], 1);
      best = MIN(best, r->elapsed);
      n = r->evaluated;
    }
    printf("  %-8d %12" G_GUINT64_FORMAT " %10.3f %14.0f %16.0f\n", counts[i], n, best, n / best,
           n / best / counts[i]);
  }

  printf("# full search (16 candidates simulated), %d threads\n", all);
  printf("# %-8s %12s %10s %10s %10s  %s\n", "GPUs", "layouts", "fit", "wall s", "step ms", "winner");
  int gpus[] = {256, 4096};
  for (int i = 0; i < 2; i++) {
    PxModel *m2;
    PxCluster *c2;
    PxPlan p2;
    load(&m2, &c2, &p2, gpus[i], gpus[i] == 256 ? 1024 : 4096);
    g_autoptr(GTimer) t = g_timer_new();
    g_autoptr(PxSearchResult) r = run(m2, c2, &p2, all, 0);
    double wall = g_timer_elapsed(t, NULL);
    const PxSearchCandidate *w = &g_array_index(r->top, PxSearchCandidate, 0);
    g_autofree char *ls = px_layout_format(&w->layout);
    printf("  %-8d %12" G_GUINT64_FORMAT " %10" G_GUINT64_FORMAT " %10.3f %10.1f  %s\n", gpus[i], r->evaluated,
           r->feasible, wall, 1e3 * w->step_time, ls);
    px_plan_clear(&p2);
    px_cluster_free(c2);
    px_model_free(m2);
  }
  px_plan_clear(&p);
  px_cluster_free(c);
  px_model_free(m);
  return 0;
}
