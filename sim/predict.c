/* predict.c — see predict.h. */
#include "predict.h"
#include "zero3.h"

/* Memory the engine tracks: each part's activations per micro-batch (the
 * core's list, px_part_activation_bytes), of which a split backward holds
 * px_activations_w_bytes from its backward-input pass to its weight pass (the
 * weight GEMMs' inputs and output gradients, activations.h), and everything
 * else px_memory puts on the stage: its total less the steady-state peak of
 * those same amounts in the schedule's order. */
gboolean px_predict(PxPrediction *r, const PxModel *model, const PxCluster *cluster, const PxPlan *p,
                    gboolean ideal, gboolean full, gboolean timeline, GError **error) {
  /* every rank's stream (full) is dp·cp·tp times the stages' (px_plan_validate bounds those) */
  gint64 passes = (gint64)px_plan_world(p) * p->vpp * p->m;
  if (full && passes > PX_PLAN_MAX_PASSES) {
    g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID,
                "--full simulates every rank: %d ranks × vpp %d × m %d = %" G_GINT64_FORMAT " passes is more than 2^21 "
                "(without --full one rank per stage is simulated)", px_plan_world(p), p->vpp, p->m, passes);
    return FALSE;
  }
  if (!(r->part = px_partition_new(model, p, NULL, error))) return FALSE;
  if (!(r->prog = px_program_new(p, r->part, error))) return FALSE;
  r->tab = ideal ? px_cost_table_ideal(p->pp, p->vpp) : px_cost_table_new(model, cluster, p, r->part, error);
  if (!r->tab) return FALSE;
  r->mem = px_memory_new(model, p, r->part, cluster);
  int parts = r->part->parts;
  g_autofree double *act = g_new0(double, parts), *kept = g_new0(double, parts);
  g_autofree double *stat = g_new0(double, p->pp);
  for (int k = 0; k < parts; k++) {
    act[k] = px_part_activation_bytes(model, p, r->part->bounds[k], r->part->bounds[k + 1]);
    kept[k] = px_activations_w_bytes(model, p, NULL, r->part->bounds[k], r->part->bounds[k + 1]);
  }
  int v = MAX(p->vpp, 1);
  g_autofree double *cact = g_new0(double, v), *cw = g_new0(double, v);
  for (int s = 0; s < p->pp; s++) {
    for (int c = 0; c < v; c++) {
      int k = px_partition_part_of(r->part, s, c);
      cact[c] = act[k];
      cw[c] = kept[k];
    }
    stat[s] = r->mem->stages[s].total - px_memory_peak_activations(p, s, cact, cw);
  }
  PxSimOptions opt = {.act_bytes = act, .act_w_bytes = kept, .static_bytes = stat, .full = full,
                      .no_timeline = !timeline};
  /* ZeRO-3 by layer: the bytes each instruction's layer gathers receive, for
   * the ranks simulated (every one, or DP and TP rank 0 of each stage) */
  int world = px_plan_world(p);
  g_autoptr(GPtrArray) z3 = g_ptr_array_new_with_free_func(g_free);
  if (!ideal && timeline && px_zero3_by_layer(model, p)) {
    g_ptr_array_set_size(z3, world);
    for (int rank = 0; rank < world; rank++) {
      int d, t, s;
      px_plan_rank_coords(p, rank, &d, &t, &s);
      if (!full && (d != 0 || t != 0)) continue;
      g_autoptr(PxZero3Walk) w = px_zero3_walk_new(model, p, r->part, r->prog, rank);
      double *b = g_new(double, MAX(w->n, 1));
      for (guint i = 0; i < w->n; i++) b[i] = (double)w->received[i] * px_plan_act_bytes(p);
      z3->pdata[rank] = b;
    }
    opt.zero3_bytes = (const double *const *)z3->pdata;
  }
  r->res = px_simulate(r->prog, r->tab, &opt, error);
  return r->res != NULL;
}

void px_prediction_clear(PxPrediction *r) {
  px_sim_result_free(r->res);
  px_memory_free(r->mem);
  px_cost_table_free(r->tab);
  px_program_free(r->prog);
  px_partition_free(r->part);
  *r = (PxPrediction){0};
}
