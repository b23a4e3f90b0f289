/* predict.c — see predict.h. */
#include "predict.h"

/* ZB-H1: what a backward-input pass keeps for the weight pass — the inputs of
 * the block's four weight GEMMs (QKV, attention output, FFN up, FFN down):
 * 2 + 2 + 2 + 8 = 14 sbh of Korthikanti et al.'s 34 sbh per block. */
#define PX_ZB_W_SHARE (14.0 / 34.0)

/* Memory the engine tracks: each part's activations per micro-batch (the
 * lead's per-layer counts), and everything else px_memory puts on the stage. */
gboolean px_predict(PxPrediction *r, const PxModel *model, const PxCluster *cluster, const PxPlan *p,
                    gboolean ideal, gboolean full, gboolean timeline, GError **error) {
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
    kept[k] = act[k] * PX_ZB_W_SHARE;
  }
  for (int s = 0; s < p->pp; s++) {
    const PxStageMemory *st = &r->mem->stages[s];
    stat[s] = st->total - st->in_flight * st->activation_per_mb;
  }
  PxSimOptions opt = {.act_bytes = act, .act_w_bytes = kept, .static_bytes = stat, .full = full,
                      .no_timeline = !timeline};
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
