/* run_compare.c — see run_compare.h.
 *
 * Measured and predicted are counted the same way: the seconds per
 * instruction kind are the sums of that kind's intervals on the rank (compute
 * kinds on the compute stream, sends on the send stream, collectives on the
 * collective stream: what PxRankResult.op_time holds); receives are left out
 * (the engine counts a receive's wait as idle, not as an op). The idle share
 * is 1 − (compute-stream busy) / step; the predicted step is the engine's, the
 * measured one the span of the last step's timeline. */
#include "run_compare.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "buckets.h"
#include "cost.h"
#include "plot.h"
#include "predict.h"
#include "report.h"

static const char *mem_names[5] = {"weights", "gradients", "optimizer", "activations", "buffers"};

void px_rank_memory_rows(const PxRankMemory *m, double meas[5], double pred[5]) {
  for (int i = 0; i < 5; i++)
    meas[i] = (double)(i == PX_MEM_ACTIVATIONS || i == PX_MEM_BUFFERS ? m->measured.peak[i] : m->measured.current[i]);
  pred[0] = m->predicted.weights;
  pred[1] = m->predicted.gradients;
  pred[2] = m->predicted.optimizer;
  pred[3] = m->predicted.activations;
  pred[4] = m->predicted.buffers;
}

double px_rank_memory_host(const PxRankMemory *m) {
  return (double)m->host.peak[PX_MEM_WEIGHTS] + (double)m->host.peak[PX_MEM_GRADS] +
         (double)m->host.peak[PX_MEM_OPTIMIZER];
}

void px_run_compare_plan(PxPlan *out, const PxPlan *rt_plan, PxDType dt) {
  px_plan_copy(out, rt_plan);
  if (!px_dtype_is_half(dt)) return;
  out->precision = dt == PX_DTYPE_F16 ? PX_PREC_FP16 : PX_PREC_BF16;
  /* the runtime stages each half gradient in fp32 and reduces that */
  out->grad_reduce_bytes = px_cost_grad_reduce_bytes(rt_plan);
  /* bucket_bytes counts elements of the activation dtype (px_buckets_size):
   * the runtime's elements in the half dtype's bytes (0, the stack's default
   * in elements, stays 0) */
  if (rt_plan->bucket_bytes > 0) out->bucket_bytes = px_buckets_size(rt_plan) * px_plan_act_bytes(out);
}

gboolean px_run_compare_check_dtype(const PxCluster *cluster, PxDType dt, GError **error) {
  const char *cal = cluster->calibrated_dtype, *run = px_dtype_name(dt);
  if (!cal || !strcmp(cal, run)) return TRUE;
  if (dt == PX_DTYPE_F64)
    g_set_error(error, PX_CLUSTER_ERROR, PX_CLUSTER_ERROR_INVALID,
                "the cluster profile was calibrated in %s; this run computes in f64, which calibrate does not measure "
                "(f32, bf16 or f16): compare it against a preset or a hand-written profile", cal);
  else
    g_set_error(error, PX_CLUSTER_ERROR, PX_CLUSTER_ERROR_INVALID,
                "the cluster profile was calibrated in %s; this run computes in %s: run calibrate --dtype %s", cal, run,
                run);
  return FALSE;
}

static gboolean compared_kind(PxOpKind k) {
  return k != PX_OP_RECV_ACT && k != PX_OP_RECV_GRAD && k != PX_OP_OVERLAP;
}

/* One rank's measured seconds per kind and compute-stream busy time. */
static void measure_rank(const PxTimeline *tl, int rank, double op[PX_OP_N_KINDS], double *busy) {
  *busy = 0;
  for (int k = 0; k < PX_OP_N_KINDS; k++) op[k] = 0;
  for (guint i = 0; i < tl->events->len; i++) {
    const PxEvent *e = &g_array_index(tl->events, PxEvent, i);
    if (e->rank != rank || e->end < e->start || !compared_kind(e->kind)) continue;
    op[e->kind] += e->end - e->start;
    if (e->stream == PX_STREAM_COMPUTE) *busy += e->end - e->start;
  }
}

static void pair_json(JsonBuilder *b, const char *key, double predicted, double measured) {
  json_builder_set_member_name(b, key);
  json_builder_begin_object(b);
  px_json_member_double(b, "predicted", predicted);
  px_json_member_double(b, "measured", measured);
  json_builder_end_object(b);
}

gboolean px_run_compare(const PxModel *model, const PxCluster *cluster, const PxPlan *plan, const PxTimeline *tl,
                        double measured_step_s, const PxRankMemory *mem, int world, JsonBuilder *jb,
                        const char *trace, const char *plot_dir, GError **error) {
  PxPrediction pr = {0};
  if (!px_predict(&pr, model, cluster, plan, FALSE, TRUE, trace != NULL || plot_dir != NULL, error)) {
    px_prediction_clear(&pr);
    return FALSE;
  }
  const PxTimeline *both[2] = {pr.res->timeline, tl};
  const char *labels[2] = {"predicted", "measured"};
  if (trace && !px_timelines_write_trace(both, labels, 2, trace, error)) {
    px_prediction_clear(&pr);
    return FALSE;
  }
  if (plot_dir) {
    g_autofree char *title = g_strdup_printf("%s on %s: predicted and measured, dp %d, tp %d, pp %d, %s",
                                             model->desc.name, cluster->name, plan->dp, plan->tp, plan->pp,
                                             px_schedule_name(plan->schedule));
    if (!px_plot_timelines(both, labels, 2, plot_dir, "compare", title, error)) {
      px_prediction_clear(&pr);
      return FALSE;
    }
  }
  const PxSimResult *res = pr.res;
  double span = px_timeline_end(tl);
  double idle_pred = 0, idle_meas = 0;
  int n = 0;
  for (int i = 0; i < res->n_ranks; i++) {
    double op[PX_OP_N_KINDS], busy;
    if (res->ranks[i].rank >= world) continue;
    measure_rank(tl, res->ranks[i].rank, op, &busy);
    idle_pred += res->ranks[i].idle / res->step_time;
    idle_meas += span > 0 ? 1 - busy / span : 0;
    n++;
  }
  if (n) idle_pred /= n, idle_meas /= n;
  if (jb) {
    json_builder_set_member_name(jb, "compare");
    json_builder_begin_object(jb);
    px_json_member_string(jb, "cluster", cluster->name);
    px_json_member_string(jb, "stack", px_stack_name(plan->stack));
    px_json_member_string(jb, "attention", px_attention_name(pr.tab->attention));
    px_json_member_string(jb, "precision", px_precision_name(plan->precision));
    px_json_member_string(jb, "units", "seconds; bytes; fractions of the step");
    pair_json(jb, "step_time_s", res->step_time, measured_step_s);
    pair_json(jb, "idle_fraction", idle_pred, idle_meas);
    px_json_member_double(jb, "bubble_fraction_predicted", res->bubble_fraction);
    px_json_member_double(jb, "dp_exposed_fraction_predicted", res->dp_exposed_fraction);
    px_json_member_double(jb, "measured_timeline_s", span);
    json_builder_set_member_name(jb, "per_rank");
    json_builder_begin_array(jb);
  } else {
    printf("# compare: the engine's prediction for this plan on %s (%s stack, %s attention, %s GEMMs) beside the "
           "measurement\n", cluster->name, px_stack_name(plan->stack), px_attention_name(pr.tab->attention),
           px_precision_name(plan->precision));
    printf("# step time          predicted %10.3f ms   measured %10.3f ms   measured/predicted %.3f\n",
           1e3 * res->step_time, 1e3 * measured_step_s, measured_step_s / res->step_time);
    printf("# idle compute share predicted %9.1f %%    measured %9.1f %%    (mean over ranks: bubble and exposed "
           "communication; predicted bubble %.1f %%, exposed DP %.1f %%)\n",
           100 * idle_pred, 100 * idle_meas, 100 * res->bubble_fraction, 100 * res->dp_exposed_fraction);
    printf("# %4s %5s %-16s %14s %14s %8s\n", "rank", "stage", "kind", "predicted_ms", "measured_ms", "ratio");
  }
  for (int i = 0; i < res->n_ranks; i++) {
    const PxRankResult *rr = &res->ranks[i];
    if (rr->rank >= world) continue;
    double op[PX_OP_N_KINDS], busy;
    measure_rank(tl, rr->rank, op, &busy);
    if (jb) {
      double meas[5], pred[5];
      px_rank_memory_rows(&mem[rr->rank], meas, pred);
      json_builder_begin_object(jb);
      px_json_member_int(jb, "rank", rr->rank);
      px_json_member_int(jb, "stage", rr->stage);
      pair_json(jb, "idle_fraction", rr->idle / res->step_time, span > 0 ? 1 - busy / span : 0);
      json_builder_set_member_name(jb, "op_time_s");
      json_builder_begin_object(jb);
      for (int k = 0; k < PX_OP_N_KINDS; k++)
        if (compared_kind(k) && (rr->op_time[k] > 0 || op[k] > 0)) pair_json(jb, px_op_name(k), rr->op_time[k], op[k]);
      json_builder_end_object(jb);
      json_builder_set_member_name(jb, "memory_bytes");
      json_builder_begin_object(jb);
      for (int c = 0; c < 5; c++) pair_json(jb, mem_names[c], pred[c], meas[c]);
      json_builder_end_object(jb);
      json_builder_end_object(jb);
    } else {
      for (int k = 0; k < PX_OP_N_KINDS; k++) {
        if (!compared_kind(k) || (rr->op_time[k] <= 0 && op[k] <= 0)) continue;
        char ratio[32] = "-";
        if (rr->op_time[k] > 0) g_snprintf(ratio, sizeof ratio, "%.2f", op[k] / rr->op_time[k]);
        printf("  %4d %5d %-16s %14.3f %14.3f %8s\n", rr->rank, rr->stage, px_op_name(k), 1e3 * rr->op_time[k],
               1e3 * op[k], ratio);
      }
    }
  }
  if (jb) {
    json_builder_end_array(jb);
    json_builder_end_object(jb);
  } else {
    printf("# memory per category: the measured | predicted table above (the planner's px_memory, which the engine "
           "also uses)\n");
  }
  px_prediction_clear(&pr);
  return TRUE;
}
