/* cmd_simulate.c — `parallax-sim simulate`: run a plan's program through the
 * event engine and report step time, throughput, MFU/HFU, bubble, the time
 * breakdown and the peak memory of every stage; export the timeline as a
 * Chrome trace, CSV or an ASCII Gantt. */
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include "commands.h"
#include "cost.h"
#include "engine.h"
#include "memory.h"
#include "options.h"
#include "partition.h"
#include "plot.h"
#include "predict.h"
#include "report.h"

#define CMD "parallax-sim simulate"

typedef struct {
  PxModel *model;
  PxCluster *cluster;
  PxPlan plan;
  PxPartition *part;
  PxProgram *prog;
  PxCostTable *tab;
  PxMemory *mem;
  PxSimResult *res;
  gboolean ideal, full, batch_given;
} SimReport;

static void sim_report_clear(SimReport *r) {
  px_sim_result_free(r->res);
  px_memory_free(r->mem);
  px_cost_table_free(r->tab);
  px_program_free(r->prog);
  px_partition_free(r->part);
  px_plan_clear(&r->plan);
  px_cluster_free(r->cluster);
  px_model_free(r->model);
}

/* The engine's prediction (sim/predict.c, shared with `parallax-exec run --compare`). */
static gboolean sim_report_run(SimReport *r, gboolean timeline, GError **error) {
  PxPrediction pr = {0};
  gboolean ok = px_predict(&pr, r->model, r->cluster, &r->plan, r->ideal, r->full, timeline, error);
  r->part = pr.part;
  r->prog = pr.prog;
  r->tab = pr.tab;
  r->mem = pr.mem;
  r->res = pr.res;
  return ok;
}

typedef struct {
  double tokens_per_s, samples_per_s, tflops_per_gpu, mfu, hfu;
} Throughput;

static void throughput(const SimReport *r, Throughput *t) {
  double step = r->res->step_time, world = px_plan_world(&r->plan);
  t->samples_per_s = r->plan.gbs / step;
  t->tokens_per_s = t->samples_per_s * r->plan.seq;
  t->tflops_per_gpu = r->tab->model_flops_per_step / (step * world) / 1e12;
  double peak = r->tab->peak_flops * world * step;
  t->mfu = peak > 0 ? r->tab->model_flops_per_step / peak : 0;
  t->hfu = peak > 0 ? r->tab->hardware_flops_per_step / peak : 0;
}

/* ---- text --------------------------------------------------------------- */

static void print_text(const SimReport *r) {
  const PxPlan *p = &r->plan;
  const PxSimResult *res = r->res;
  double step = res->step_time;
  /* times in ms, or in units of one chunk's forward for the ideal table */
  double scale = r->ideal ? 1 : 1e3;
  const char *unit = r->ideal ? "T_F" : "ms";
  printf("Parallax simulate: %s", r->model->desc.name);
  if (r->cluster) printf(" on %s", r->cluster->name);
  g_autofree char *grid = px_report_layout(p);
  printf(", %s, %s", grid, px_schedule_name(p->schedule));
  if (p->vpp > 1) printf(" (v = %d)", p->vpp);
  printf(", m = %d micro-batches of %d × %d tokens%s\n", p->m, p->mbs, p->seq,
         r->batch_given ? "" : " (no batch given: one micro-batch per data-parallel rank; --gbs sets it)");
  px_report_moe_text(r->model, p, stdout);
  if (r->full)
    printf("simulated  all %d ranks\n", res->n_ranks);
  else
    printf("simulated  one rank per stage (%d rank%s; DP/TP peers run the same stream)\n", res->n_ranks,
           res->n_ranks == 1 ? "" : "s");
  if (r->ideal)
    printf("costs      ideal: forward 1, backward 2 (input 1 + weight 1) per chunk, no communication\n");
  printf("\nstep time  %.3f %s\n", step * scale, unit);
  if (!r->ideal) {
    Throughput t;
    throughput(r, &t);
    g_autofree char *tok = px_format_count(t.tokens_per_s);
    printf("throughput %s tokens/s, %.2f samples/s\n", tok, t.samples_per_s);
    /* TFLOP/s for GPUs; a calibrated CPU's rate under a TFLOP/s gets its own prefix ("135 GFLOP/s", not "0") */
    g_autofree char *rate = t.tflops_per_gpu >= 1 ? g_strdup_printf("%.1f TFLOP", t.tflops_per_gpu)
                                                  : px_format_flops(1e12 * t.tflops_per_gpu);
    g_autofree char *peak = r->tab->peak_flops >= 1e12 ? g_strdup_printf("%.0f TFLOP", r->tab->peak_flops / 1e12)
                                                       : px_format_flops(r->tab->peak_flops);
    printf("FLOP/s     %s/s per GPU (%s); MFU %.1f %%, HFU %.1f %% of %s/s %s peak\n", rate,
           px_report_mfu_convention(r->model), 100 * t.mfu, 100 * t.hfu, peak,
           p->precision == PX_PREC_FP8 ? "bf16 (the convention for FP8 runs; FP8 GEMMs run at the FP8 rate)"
                                       : px_precision_name(p->precision));
  }
  if (!r->ideal)
    printf("stack      %s, %s attention, gradients reduced in %d-byte elements%s%s%s%s%s\n", px_stack_name(p->stack),
           px_attention_name(r->tab->attention), r->tab->grad_reduce_bytes,
           r->tab->overlap_dp ? ", DP reduction overlapped with the backward" : ", DP reduction after the backward",
           p->tp_overlap != PX_TPO_NONE ? ", TP communication overlapped (userbuffers: " : "",
           p->tp_overlap != PX_TPO_NONE ? px_tp_overlap_name(p->tp_overlap) : "",
           p->tp_overlap != PX_TPO_NONE ? ")" : "",
           p->compile ? ", blocks torch.compile'd (Inductor's fused kernels)" : "");
  printf("bubble     %.2f %% of step time (pipeline idle incl. p2p waits, mean over ranks; analytic "
         "%.2f %%, %s); exposed DP reduction %.2f %% (not bubble); all idle %.2f %% of busy time\n",
         100 * res->bubble_fraction, 100 * px_plan_bubble_fraction(p), px_report_bubble_formula(p->schedule),
         100 * res->dp_exposed_fraction, 100 * res->bubble_overhead);
  const PxBreakdown *b = &res->breakdown;
  printf("breakdown  (mean per rank) compute %.3f %s (%.1f %%)", b->compute * scale, unit, 100 * b->compute / step);
  for (int k = 0; k < PX_N_COMM; k++)
    if (b->exposed[k] > 0)
      printf(", exposed %s %.3f %s (%.1f %%)", px_comm_kind_name(k), b->exposed[k] * scale, unit,
             100 * b->exposed[k] / step);
  printf(", bubble %.3f %s (%.1f %%)\n", b->bubble * scale, unit, 100 * b->bubble / step);
  printf("\npeak memory per GPU, from the simulated timeline (GB = 1e9 bytes, GiB = 2^30 bytes)\n");
  printf("%-6s %10s %10s %10s %10s\n", "stage", "GB", "GiB", "in-flight", "analytic GB");
  for (int s = 0; s < p->pp; s++)
    printf("%-6d %10.2f %10.2f %10d %10.2f\n", s, res->stage_peak_memory[s] / 1e9,
           res->stage_peak_memory[s] / 1073741824.0, res->stage_peak_in_flight[s], r->mem->stages[s].total / 1e9);
  printf("  in-flight counts (micro-batch, chunk) pairs between forward and backward%s\n",
         r->mem->capacity > 0 ? "" : "; no cluster: capacity unknown");
  if (r->mem->capacity > 0) {
    double peak = 0;
    for (int s = 0; s < p->pp; s++) peak = MAX(peak, res->stage_peak_memory[s]);
    printf("  capacity %.2f GB (%.2f GiB): %s\n", r->mem->capacity / 1e9, r->mem->capacity / 1073741824.0,
           peak <= r->mem->capacity ? "fits" : "DOES NOT FIT");
  }
}

/* ---- JSON --------------------------------------------------------------- */

/* A number, or null where it has no meaning (--ideal has no FLOP/s). */
static void member_double(JsonBuilder *b, const char *name, double v, gboolean valid) {
  if (valid) {
    px_json_member_double(b, name, v);
  } else {
    json_builder_set_member_name(b, name);
    json_builder_add_null_value(b);
  }
}

static void print_json(const SimReport *r) {
  const PxSimResult *res = r->res;
  Throughput t = {0};
  if (!r->ideal) throughput(r, &t);
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  px_json_member_string(b, "model", r->model->desc.name);
  json_builder_set_member_name(b, "plan");
  px_report_plan_json(b, &r->plan);
  px_json_member_bool(b, "ideal", r->ideal);
  px_json_member_int(b, "simulated_ranks", res->n_ranks);
  member_double(b, "step_time_s", res->step_time, TRUE);
  member_double(b, "tokens_per_s", t.tokens_per_s, !r->ideal);
  member_double(b, "samples_per_s", t.samples_per_s, !r->ideal);
  member_double(b, "tflops_per_gpu", t.tflops_per_gpu, !r->ideal);
  member_double(b, "mfu", t.mfu, !r->ideal);
  member_double(b, "hfu", t.hfu, !r->ideal);
  member_double(b, "bubble_fraction", res->bubble_fraction, TRUE);
  member_double(b, "dp_exposed_fraction", res->dp_exposed_fraction, TRUE);
  member_double(b, "bubble_overhead", res->bubble_overhead, TRUE);
  if (!r->ideal) {
    px_json_member_string(b, "stack", px_stack_name(r->plan.stack));
    px_json_member_string(b, "attention", px_attention_name(r->tab->attention));
    px_json_member_string(b, "tp_overlap", px_tp_overlap_name(r->plan.tp_overlap));
    px_json_member_bool(b, "compile", r->plan.compile);
    px_json_member_int(b, "grad_reduce_bytes", r->tab->grad_reduce_bytes);
  }
  /* predicted seconds per instruction kind, per simulated rank (what a
   * measured run is compared against) */
  json_builder_set_member_name(b, "per_rank");
  json_builder_begin_array(b);
  for (int i = 0; i < res->n_ranks; i++) {
    const PxRankResult *rr = &res->ranks[i];
    json_builder_begin_object(b);
    px_json_member_int(b, "rank", rr->rank);
    px_json_member_int(b, "stage", rr->stage);
    member_double(b, "busy_s", rr->busy, TRUE);
    member_double(b, "idle_s", rr->idle, TRUE);
    json_builder_set_member_name(b, "op_time_s");
    json_builder_begin_object(b);
    for (int k = 0; k < PX_OP_N_KINDS; k++)
      if (rr->op_time[k] > 0) member_double(b, px_op_name(k), rr->op_time[k], TRUE);
    json_builder_end_object(b);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  member_double(b, "bubble_analytic", px_plan_bubble_fraction(&r->plan), TRUE);
  json_builder_set_member_name(b, "peak_memory");
  json_builder_begin_array(b);
  for (int s = 0; s < res->pp; s++) json_builder_add_double_value(b, res->stage_peak_memory[s]);
  json_builder_end_array(b);
  json_builder_set_member_name(b, "peak_in_flight");
  json_builder_begin_array(b);
  for (int s = 0; s < res->pp; s++) json_builder_add_int_value(b, res->stage_peak_in_flight[s]);
  json_builder_end_array(b);
  json_builder_set_member_name(b, "breakdown");
  json_builder_begin_object(b);
  member_double(b, "compute_s", res->breakdown.compute, TRUE);
  for (int k = 0; k < PX_N_COMM; k++) {
    g_autofree char *name = g_strdup_printf("%s_s", px_comm_kind_name(k));
    member_double(b, name, res->breakdown.exposed[k], TRUE);
  }
  member_double(b, "bubble_s", res->breakdown.bubble, TRUE);
  json_builder_end_object(b);
  json_builder_end_object(b);
  px_report_print_json(b);
}

/* timeline.png/svg and memory.png/svg of the simulated step into dir. */
static gboolean plot_report(const SimReport *r, const char *dir, GError **error) {
  const PxPlan *p = &r->plan;
  g_autofree char *vpp = p->vpp > 1 ? g_strdup_printf(" vpp=%d", p->vpp) : g_strdup("");
  g_autofree char *title = g_strdup_printf("%s: dp=%d tp=%d pp=%d%s, %s, m=%d%s", r->model->desc.name, p->dp,
                                           p->tp, p->pp, vpp, px_schedule_name(p->schedule), p->m,
                                           r->ideal ? ", ideal costs" : "");
  double capacity = r->cluster ? (double)r->cluster->gpu_memory : 0;
  return px_plot_timeline(r->res->timeline, dir, title, r->ideal, error) &&
         px_plot_memory(r->res->timeline, dir, title, capacity, r->ideal, error);
}

int px_cmd_simulate(int argc, char **argv) {
  PxPlanOptions o;
  gboolean json = FALSE, gantt = FALSE;
  SimReport r = {0};
  g_autofree char *trace = NULL, *csv = NULL, *plot_dir = NULL;
  GOptionEntry entries[] = {
    {"ideal", 0, 0, G_OPTION_ARG_NONE, &r.ideal, "Ideal costs: forward 1, backward 2 per chunk, no communication", NULL},
    {"full", 0, 0, G_OPTION_ARG_NONE, &r.full, "Simulate every rank, not one per stage", NULL},
    {"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print one JSON object", NULL},
    {"trace", 0, 0, G_OPTION_ARG_FILENAME, &trace, "Write the timeline as Chrome trace JSON", "FILE.json"},
    {"csv", 0, 0, G_OPTION_ARG_FILENAME, &csv, "Write the timeline as CSV", "FILE"},
    {"gantt", 0, 0, G_OPTION_ARG_NONE, &gantt, "Draw an ASCII Gantt chart ($COLUMNS wide)", NULL},
    {"plot", 0, 0, G_OPTION_ARG_FILENAME, &plot_dir, "Draw timeline and memory plots (PNG, SVG) into DIR (needs gnuplot)", "DIR"},
    {NULL}};
  if (!px_parse_command_line(CMD, "simulate one training step of a plan", entries, &o, &argc, &argv)) return 2;
  g_autoptr(GError) error = NULL;
  int rc = 0;
  const char *failed_flag = NULL; /* the output flag whose file could not be written, named in the error */
  /* an output that cannot be written is named before the simulation, as run does */
  const char *outs[][2] = {{"--trace", trace}, {"--csv", csv}};
  for (gsize i = 0; i < G_N_ELEMENTS(outs); i++) {
    g_autofree char *why = outs[i][1] ? px_output_flag_why(outs[i][0], outs[i][1]) : NULL;
    if (why) {
      fprintf(stderr, CMD ": %s\n", why);
      px_plan_options_clear(&o);
      return 1;
    }
  }
  int columns = 0; /* --gantt's width, checked before the simulation */
  if ((gantt && !px_terminal_columns(TRUE, &columns, &error)) ||
      !px_plan_options_resolve(&o, !r.ideal, &r.model, &r.cluster, &r.plan, &error) ||
      !sim_report_run(&r, trace || csv || gantt || plot_dir, &error) ||
      (trace && !px_timeline_write_trace(r.res->timeline, trace, &error) && (failed_flag = "--trace")) ||
      (csv && !px_timeline_write_csv(r.res->timeline, csv, &error) && (failed_flag = "--csv"))) {
    if (failed_flag) g_prefix_error(&error, "%s ", failed_flag);
    rc = px_cli_fail(CMD, error);
  } else {
    r.batch_given = o.batch_given;
    if (json)
      print_json(&r);
    else
      print_text(&r);
    if (gantt) {
      /* beside --json the chart goes to stderr, so stdout stays one JSON object */
      g_autofree char *g = px_timeline_gantt(r.res->timeline, columns);
      fprintf(json ? stderr : stdout, "\n%s%s", g,
              r.ideal ? "          ideal costs: one second on the axis is one chunk's forward (T_F)\n" : "");
    }
    /* after the report, trace and CSV, so a missing gnuplot loses nothing else */
    if (plot_dir && !plot_report(&r, plot_dir, &error)) rc = px_cli_fail(CMD, error);
  }
  sim_report_clear(&r);
  px_plan_options_clear(&o);
  return rc;
}
