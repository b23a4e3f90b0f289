/* bench_search_batch.c — how long a search takes as the global batch grows
 * to the search's cap (PX_SEARCH_MAX_SEQS_PER_GPU sequences per GPU): Llama 2
 * 7B on 32 A100-80GB, sequences of 2048, both objectives, default options.
 * It validates first: on a smaller batch the fast way and the full way (every
 * op of every compute order walked, px_schedule_set_full_walk, and every
 * feasible layout simulated, keep_points) name the same layouts with the same
 * times, bit for bit. Then the Pareto path (keep_points, what --pareto runs:
 * every fitting layout simulated) with every round of every step simulated
 * (px_engine_set_no_jump, as before the engine's jump over steady rounds)
 * and with the jump, and whether their points are the same, bit for bit.
 * Figures are printed, never asserted.
 * Usage: bench_search_batch [THREADS [PARETO_MAX_GBS]] (default: every core;
 * the Pareto rows up to gbs 65536, the every-round column up to 8192). */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include "engine.h"
#include "schedule.h"
#include "search.h"

static PxSearchResult *run(const PxModel *m, const PxCluster *c, const PxPlan *p, PxSearchOptions *o) {
  g_autoptr(GError) err = NULL;
  PxSearchResult *r = px_search_run(m, c, p, o, &err);
  if (!r || r->top->len == 0) {
    fprintf(stderr, "bench_search_batch: search failed: %s\n", err ? err->message : "no layout fits");
    exit(1);
  }
  return r;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : (int)g_get_num_processors();
  if (threads < 1) threads = 1;
  g_autoptr(GError) err = NULL;
  g_autoptr(PxModel) m = px_model_load("llama2-7b", &err);
  g_autoptr(PxCluster) c = m ? px_cluster_load("dgx-a100-80g", &err) : NULL;
  if (!c) {
    fprintf(stderr, "bench_search_batch: %s\n", err->message);
    return 1;
  }
  c->nodes = 4; /* 32 GPUs */
  PxPlan p;
  px_plan_init(&p);
  p.seq = 2048;

  /* validate: the fast way against the full way, both objectives */
  p.gbs = 1024;
  for (int obj = 0; obj < 2; obj++) {
    PxSearchOptions o;
    px_search_options_init(&o);
    o.threads = threads;
    o.objective = obj ? PX_OBJECTIVE_MEMORY : PX_OBJECTIVE_TIME;
    g_autoptr(PxSearchResult) fast = run(m, c, &p, &o);
    px_schedule_set_full_walk(TRUE);
    o.keep_points = TRUE;
    g_autoptr(PxSearchResult) full = run(m, c, &p, &o);
    px_schedule_set_full_walk(FALSE);
    gboolean same = fast->top->len == full->top->len && fast->feasible == full->feasible;
    for (guint i = 0; same && i < fast->top->len; i++) {
      const PxSearchCandidate *a = &g_array_index(fast->top, PxSearchCandidate, i);
      const PxSearchCandidate *b = &g_array_index(full->top, PxSearchCandidate, i);
      same = !px_layout_compare(&a->layout, &b->layout) && a->memory == b->memory &&
             a->analytic_time == b->analytic_time && a->step_time == b->step_time;
    }
    if (!same) {
      fprintf(stderr, "bench_search_batch: the fast and the full search disagree (gbs %d, objective %s)\n", p.gbs,
              obj ? "memory" : "time");
      return 1;
    }
    printf("# validated (gbs %d, objective %s): fast %.2f s, full %.2f s, the same %u layouts bit for bit\n", p.gbs,
           obj ? "memory" : "time", fast->elapsed, full->elapsed, fast->top->len);
  }

  printf("# Llama 2 7B, 32 A100-80GB, seq 2048, %d threads (wall s; the cap is %d sequences per GPU)\n", threads,
         PX_SEARCH_MAX_SEQS_PER_GPU);
  printf("# %-9s %-9s %8s %10s %10s %12s  %s\n", "gbs", "objective", "seq/GPU", "layouts", "wall s", "step ms",
         "winner");
  int gbs[] = {2048, 8192, 32768, 65536};
  for (gsize i = 0; i < G_N_ELEMENTS(gbs); i++)
    for (int obj = 0; obj < 2; obj++) {
      p.gbs = gbs[i];
      PxSearchOptions o;
      px_search_options_init(&o);
      o.threads = threads;
      o.objective = obj ? PX_OBJECTIVE_MEMORY : PX_OBJECTIVE_TIME;
      g_autoptr(PxSearchResult) r = run(m, c, &p, &o);
      const PxSearchCandidate *w = &g_array_index(r->top, PxSearchCandidate, 0);
      g_autofree char *ws = px_layout_format(&w->layout);
      printf("  %-9d %-9s %8d %10" G_GUINT64_FORMAT " %10.2f %12.1f  %s\n", gbs[i], obj ? "memory" : "time",
             gbs[i] / 32, r->total, r->elapsed, 1e3 * w->step_time, ws);
    }

  /* the Pareto path: every fitting layout simulated */
  int pareto_max = argc > 2 ? atoi(argv[2]) : 65536;
  printf("# --pareto (keep_points, objective time): wall s with every round simulated and with steady rounds jumped\n");
  printf("# %-9s %8s %10s %14s %14s  %s\n", "gbs", "seq/GPU", "points", "every round s", "jumped s", "points");
  int pgbs[] = {1024, 2048, 8192, 32768, 65536};
  for (gsize i = 0; i < G_N_ELEMENTS(pgbs) && pgbs[i] <= pareto_max; i++) {
    p.gbs = pgbs[i];
    PxSearchOptions o;
    px_search_options_init(&o);
    o.threads = threads;
    o.keep_points = TRUE;
    g_autoptr(PxSearchResult) fast = run(m, c, &p, &o);
    g_autoptr(PxSearchResult) full = NULL;
    const char *same = "-";
    if (pgbs[i] <= 8192) {
      px_engine_set_no_jump(TRUE);
      full = run(m, c, &p, &o);
      px_engine_set_no_jump(FALSE);
      gboolean eq = full->points->len == fast->points->len;
      for (guint k = 0; eq && k < fast->points->len; k++) {
        const PxSearchPoint *a = &g_array_index(fast->points, PxSearchPoint, k);
        const PxSearchPoint *b = &g_array_index(full->points, PxSearchPoint, k);
        eq = !px_layout_compare(&a->layout, &b->layout) && a->memory == b->memory && a->time == b->time;
      }
      same = eq ? "the same bit for bit" : "DIFFER";
    }
    g_autofree char *fs = full ? g_strdup_printf("%.2f", full->elapsed) : g_strdup("-");
    printf("  %-9d %8d %10u %14s %14.2f  %s\n", pgbs[i], pgbs[i] / 32, fast->points->len, fs, fast->elapsed, same);
  }
  px_plan_clear(&p);
  return 0;
}
