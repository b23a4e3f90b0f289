/* run_compare.h — `parallax-exec run --compare`: the engine's prediction for
 * the plan that ran (sim/predict.c, the path `parallax-sim simulate` takes,
 * every rank simulated) set beside what was measured: step time, time per
 * instruction kind per rank, the compute stream's idle share (bubble and
 * exposed communication), and memory per category. */
#pragma once
#include <json-glib/json-glib.h>
#include "options.h"
#include "runtime.h"

G_BEGIN_DECLS

/* A rank's memory by category (weights, gradients, optimizer, activations,
 * buffers), measured (peaks for activations and buffers) and predicted. */
void px_rank_memory_rows(const PxRankMemory *m, double measured[5], double predicted[5]);
/* Offload: the model states a rank holds in host memory (its host backend's
 * weights — the parameter shard under parameter offload —, gradients' copy
 * and optimizer, at their peak; not the transient staging of the casts):
 * what the planner's `host` predicts. */
double px_rank_memory_host(const PxRankMemory *m);

/* The plan the engine simulates for a run that computes in dt, from the
 * runtime's own (rt_plan, px_runtime_plan: precision fp32): f32 / f64 that
 * plan as it is; bf16 / f16 at PX_PREC_BF16 / PX_PREC_FP16 (GEMMs at
 * peak_bf16 / peak_fp16, activations, TP and pipeline messages and ZeRO
 * gathers of 2 B elements), with what the runtime keeps of its fp32 plan
 * pinned: the gradients reduced in fp32 (its fp32 staging:
 * grad_reduce_bytes = px_cost_grad_reduce_bytes(rt_plan)) and the DP
 * buckets' boundaries (bucket_bytes rescaled so that px_buckets_size gives
 * the runtime's elements). Clear out with px_plan_clear. */
void px_run_compare_plan(PxPlan *out, const PxPlan *rt_plan, PxDType dt);
/* Whether a run computing in dt may be compared on cluster: a profile that
 * `calibrate --dtype` measured in another dtype ([cluster]
 * calibrated_dtype) is refused (its rates are of other kernels); presets and
 * hand-written profiles (no calibrated_dtype) are accepted. */
gboolean px_run_compare_check_dtype(const PxCluster *cluster, PxDType dt, GError **error);

/* Simulate plan on cluster and compare it with the measured last step (tl,
 * every rank's), the measured step time (s) and each rank's memory (mem,
 * world entries); tl must not be NULL. With jb, adds a "compare" member to the
 * open object; otherwise prints a table (ms). With trace, writes both
 * timelines (predicted and measured rows per rank) as one Chrome trace; with
 * plot_dir, draws them as one gnuplot figure, plot_dir/compare.{dat,png,svg}
 * (sim/plot.h px_plot_timelines: per rank its predicted row, then its
 * measured row). */
gboolean px_run_compare(const PxModel *model, const PxCluster *cluster, const PxPlan *plan, const PxTimeline *tl,
                        double measured_step_s, const PxRankMemory *mem, int world, JsonBuilder *jb,
                        const char *trace, const char *plot_dir, GError **error);

G_END_DECLS
