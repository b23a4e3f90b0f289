/* cmd_compare.c — `parallax-sim compare --trace FILE`: a measured training
 * step (PyTorch profiler / Kineto Chrome trace, or an Nsight Systems JSON
 * export, one rank) beside the
 * simulator's prediction for the plan given with the usual flags: time per
 * stage (forward, backward, optimizer, communication, other), the step, the
 * ops no rule matched, and both on one time axis (ASCII, and --timeline
 * FILE.json for Perfetto / chrome://tracing). */
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "config.h"
#include "commands.h"
#include "cost.h"
#include "engine.h"
#include "options.h"
#include "partition.h"
#include "report.h"
#include "trace_import.h"

#define CMD "parallax-sim compare"

/* The prediction for one rank, in the trace's stages. */
typedef struct {
  gboolean have;
  gboolean rank_outside;  /* the trace's rank is not one of the plan's GPUs: rank 0's stage taken */
  int rank, stage;
  double step_time;
  double stage_time[PX_N_STEP_STAGES];
  GArray *segments;  /* PxStepSegment */
} Predicted;

static PxStepStage op_stage(const PxEvent *e) {
  if (e->stream != PX_STREAM_COMPUTE) return PX_STEP_COMM;
  switch (e->kind) {
    case PX_OP_FORWARD: return PX_STEP_FORWARD;
    case PX_OP_BACKWARD:
    case PX_OP_BACKWARD_INPUT:
    case PX_OP_BACKWARD_WEIGHT: return PX_STEP_BACKWARD;
    case PX_OP_OPTIMIZER_STEP: return PX_STEP_OPTIMIZER;
    default: return PX_STEP_OTHER;
  }
}

/* Simulate the plan (one rank per stage) and take the simulated rank of the
 * trace rank's pipeline stage. */
static gboolean predict(const PxModel *model, const PxCluster *cluster, const PxPlan *plan, int trace_rank,
                        Predicted *pr, GError **error) {
  g_autoptr(PxPartition) part = px_partition_new(model, plan, NULL, error);
  if (!part) return FALSE;
  g_autoptr(PxProgram) prog = px_program_new(plan, part, error);
  if (!prog) return FALSE;
  g_autoptr(PxCostTable) tab = px_cost_table_new(model, cluster, plan, part, error);
  if (!tab) return FALSE;
  PxSimOptions so = {0};
  g_autoptr(PxSimResult) res = px_simulate(prog, tab, &so, error);
  if (!res) return FALSE;
  int dp, tp, pp;
  int rank = trace_rank >= 0 && trace_rank < px_plan_world(plan) ? trace_rank : 0;
  pr->rank_outside = trace_rank >= px_plan_world(plan);
  px_plan_rank_coords(plan, rank, &dp, &tp, &pp);
  pr->stage = pp;
  pr->rank = -1;
  const GArray *evs = res->timeline->events;
  for (guint i = 0; i < evs->len; i++) {
    const PxEvent *e = &g_array_index(evs, PxEvent, i);
    if (e->stage == pp && (pr->rank < 0 || e->rank < pr->rank)) pr->rank = e->rank;
  }
  pr->segments = g_array_new(FALSE, FALSE, sizeof(PxStepSegment));
  for (guint i = 0; i < evs->len; i++) {
    const PxEvent *e = &g_array_index(evs, PxEvent, i);
    if (e->rank != pr->rank || e->end <= e->start) continue;
    PxStepStage s = op_stage(e);
    pr->stage_time[s] += e->end - e->start;
    PxStepSegment seg = {s, e->start, e->end, e->stream != PX_STREAM_COMPUTE};
    g_array_append_val(pr->segments, seg);
  }
  pr->step_time = res->step_time;
  pr->have = TRUE;
  return TRUE;
}

/* ---- the shared time axis ---------------------------------------------------- */

static const char stage_char[PX_N_STEP_STAGES] = {'F', 'B', 'O', '~', '?'};
static const char stage_char_light[PX_N_STEP_STAGES] = {'f', 'b', 'o', '-', '?'};

/* One row: per column the stage of the lane covering most of it ('.' where
 * less than half of it is busy). */
static char *axis_row(const GArray *segs, int lane, double t_end, int width) {
  g_autofree double *cover = g_new0(double, (gsize)width * PX_N_STEP_STAGES);
  double col = t_end / width;
  for (guint i = 0; segs && i < segs->len; i++) {
    const PxStepSegment *s = &g_array_index(segs, PxStepSegment, i);
    if (s->lane != lane) continue;
    int c0 = MAX(0, (int)floor(s->start / col)), c1 = MIN(width - 1, (int)floor(s->end / col));
    for (int c = c0; c <= c1; c++) {
      double ov = MIN(s->end, (c + 1) * col) - MAX(s->start, c * col);
      if (ov > 0) cover[c * PX_N_STEP_STAGES + s->stage] += ov;
    }
  }
  GString *row = g_string_new(NULL);
  for (int c = 0; c < width; c++) {
    int best = -1;
    double sum = 0;
    for (int s = 0; s < PX_N_STEP_STAGES; s++) {
      sum += cover[c * PX_N_STEP_STAGES + s];
      if (best < 0 || cover[c * PX_N_STEP_STAGES + s] > cover[c * PX_N_STEP_STAGES + best]) best = s;
    }
    g_string_append_c(row, sum >= col / 2 ? stage_char[best] : sum > 0 ? stage_char_light[best] : '.');
  }
  return g_string_free(row, FALSE);
}

static void print_rows(const PxMeasuredStep *m, const Predicted *pr, double t_pred, double t_meas, int width) {
  struct { const char *label; const GArray *segs; int lane; double t; } rows[] = {
    {"predicted compute", pr->have ? pr->segments : NULL, 0, t_pred},
    {"predicted comm", pr->have ? pr->segments : NULL, 1, t_pred},
    {"measured compute", m->segments, 0, t_meas}, {"measured comm", m->segments, 1, t_meas}};
  for (gsize i = 0; i < G_N_ELEMENTS(rows); i++) {
    if (!rows[i].segs) continue;
    g_autofree char *r = axis_row(rows[i].segs, rows[i].lane, rows[i].t, width);
    printf("%-18s |%s|\n", rows[i].label, r);
  }
}

static void print_axis(const PxMeasuredStep *m, const Predicted *pr, int columns) {
  int width = MAX(20, columns - 22);
  double t_end = MAX(m->step_time, pr->have ? pr->step_time : 0);
  printf("\none time axis, 0 to %.3f ms (%d columns of %.3f ms): F forward, B backward, O optimizer, "
         "~ communication, ? other; lower case (- for ~): under half the column busy, '.' idle\n",
         1e3 * t_end, width, 1e3 * t_end / width);
  print_rows(m, pr, t_end, t_end, width);
  /* steps far apart in length: each on its own axis too, to compare shapes */
  if (pr->have && pr->step_time > 0 && m->step_time > 0 &&
      (m->step_time / pr->step_time > 4 || pr->step_time / m->step_time > 4)) {
    printf("\neach on its own axis (predicted 0 to %.3f ms, measured 0 to %.3f ms)\n", 1e3 * pr->step_time,
           1e3 * m->step_time);
    print_rows(m, pr, pr->step_time, m->step_time, width);
  }
}

/* Both as one Chrome trace: pid 1 predicted, pid 2 measured, a thread per stage. */
static gboolean write_timeline(const char *path, const PxMeasuredStep *m, const Predicted *pr, GError **error) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "traceEvents");
  json_builder_begin_array(b);
  struct { int pid; const char *name; const GArray *segs; } src[] = {
    {1, "predicted (simulated)", pr->have ? pr->segments : NULL}, {2, "measured (trace)", m->segments}};
  for (gsize k = 0; k < G_N_ELEMENTS(src); k++) {
    if (!src[k].segs) continue;
    json_builder_begin_object(b);
    px_json_member_string(b, "ph", "M");
    px_json_member_string(b, "name", "process_name");
    px_json_member_int(b, "pid", src[k].pid);
    json_builder_set_member_name(b, "args");
    json_builder_begin_object(b);
    px_json_member_string(b, "name", src[k].name);
    json_builder_end_object(b);
    json_builder_end_object(b);
    for (int s = 0; s < PX_N_STEP_STAGES; s++) {
      json_builder_begin_object(b);
      px_json_member_string(b, "ph", "M");
      px_json_member_string(b, "name", "thread_name");
      px_json_member_int(b, "pid", src[k].pid);
      px_json_member_int(b, "tid", s);
      json_builder_set_member_name(b, "args");
      json_builder_begin_object(b);
      px_json_member_string(b, "name", px_step_stage_name(s));
      json_builder_end_object(b);
      json_builder_end_object(b);
    }
    for (guint i = 0; i < src[k].segs->len; i++) {
      const PxStepSegment *s = &g_array_index(src[k].segs, PxStepSegment, i);
      json_builder_begin_object(b);
      px_json_member_string(b, "ph", "X");
      px_json_member_string(b, "name", px_step_stage_name(s->stage));
      px_json_member_int(b, "pid", src[k].pid);
      px_json_member_int(b, "tid", s->stage);
      px_json_member_double(b, "ts", 1e6 * s->start);
      px_json_member_double(b, "dur", 1e6 * (s->end - s->start));
      json_builder_end_object(b);
    }
  }
  json_builder_end_array(b);
  px_json_member_string(b, "displayTimeUnit", "ms");
  json_builder_end_object(b);
  g_autoptr(JsonGenerator) g = json_generator_new();
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  json_generator_set_root(g, root);
  gsize len = 0;
  g_autofree char *text = json_generator_to_data(g, &len);
  /* px_file_write: json_generator_to_file named its temporary file ('' and a directory failed in g_rename) */
  if (!px_file_write(path, text, len, G_FILE_ERROR, G_FILE_ERROR_FAILED, error)) {
    g_prefix_error(error, "--timeline ");
    return FALSE;
  }
  return TRUE;
}

/* ---- reports ---------------------------------------------------------------- */

static void print_text(const char *path, const PxMeasuredStep *m, const Predicted *pr, const PxModel *model,
                       const PxCluster *cluster, const PxPlan *plan, int show_other, int columns) {
  printf("Parallax compare: %s (%s", path, m->nsys ? "Nsight Systems export" : "PyTorch profiler trace");
  if (m->rank >= 0) printf(", rank %d of %d", m->rank, m->world);
  printf(", %s, %u events in %s)\n", m->gpu ? "GPU kernel times" : "CPU op self times, no GPU kernels", m->n_events,
         m->step_name ? m->step_name : "the whole trace");
  if (pr->have)
    printf("predicted: %s on %s, dp %d × pp %d × tp %d, %s, m = %d; simulated rank %d (pipeline stage %d)\n",
           model->desc.name, cluster->name, plan->dp, plan->pp, plan->tp, px_schedule_name(plan->schedule), plan->m,
           pr->rank, pr->stage);
  if (pr->have && pr->rank_outside)
    printf("note: the trace's rank %d is not one of the plan's %d GPUs: compared with rank 0's stage\n", m->rank,
           px_plan_world(plan));
  if (!pr->have)
    printf("predicted: none (give --model and --cluster with the plan's flags)\n");
  printf("\n%-14s %14s %14s %10s\n", "stage", "predicted ms", "measured ms", "meas/pred");
  for (int s = 0; s <= PX_N_STEP_STAGES; s++) {
    const char *name = s < PX_N_STEP_STAGES ? px_step_stage_name(s) : "step";
    double meas = s < PX_N_STEP_STAGES ? m->stage_time[s] : m->step_time;
    double pred = !pr->have ? NAN : s < PX_N_STEP_STAGES ? pr->stage_time[s] : pr->step_time;
    printf("%-14s ", name);
    if (pr->have) printf("%14.3f ", 1e3 * pred);
    else printf("%14s ", "-");
    printf("%14.3f ", 1e3 * meas);
    if (pr->have && 1e3 * pred >= 0.0005) printf("%10.2f\n", meas / pred); /* not against a shown 0.000 */
    else printf("%10s\n", "-");
  }
  printf("(busy time per stage; threads or streams that overlap add up; communication predicted on the p2p and "
         "collective streams of the rank)\n");
  if (m->other->len) {
    double total = 0;
    for (guint i = 0; i < m->other->len; i++) total += g_array_index(m->other, PxOtherOp, i).seconds;
    printf("\nother: %u op%s no rule matched, %.3f ms", m->other->len, m->other->len == 1 ? "" : "s", 1e3 * total);
    for (guint i = 0; i < MIN(m->other->len, (guint)show_other); i++) {
      const PxOtherOp *o = &g_array_index(m->other, PxOtherOp, i);
      printf("%s %s %.3f ms", i ? "," : ":", o->name, 1e3 * o->seconds);
    }
    printf("%s\n", m->other->len > (guint)show_other ? ", ..." : "");
  }
  print_axis(m, pr, columns);
}

static void stages_json(JsonBuilder *b, const char *key, const double *t, double step) {
  json_builder_set_member_name(b, key);
  json_builder_begin_object(b);
  for (int s = 0; s < PX_N_STEP_STAGES; s++) {
    g_autofree char *k = g_strdup_printf("%s_s", px_step_stage_name(s));
    px_json_member_double(b, k, t[s]);
  }
  px_json_member_double(b, "step_s", step);
  json_builder_end_object(b);
}

static void print_json(const char *path, const PxMeasuredStep *m, const Predicted *pr) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  px_json_member_string(b, "trace", path);
  px_json_member_string(b, "format", m->nsys ? "nsys" : "kineto");
  px_json_member_int(b, "rank", m->rank);
  px_json_member_int(b, "world", m->world);
  px_json_member_string(b, "times", m->gpu ? "gpu_kernels" : "cpu_ops");
  px_json_member_int(b, "events", m->n_events);
  stages_json(b, "measured", m->stage_time, m->step_time);
  if (pr->have) {
    stages_json(b, "predicted", pr->stage_time, pr->step_time);
    px_json_member_int(b, "predicted_rank", pr->rank);
  } else {
    json_builder_set_member_name(b, "predicted");
    json_builder_add_null_value(b);
  }
  json_builder_set_member_name(b, "other");
  json_builder_begin_array(b);
  for (guint i = 0; i < m->other->len; i++) {
    json_builder_begin_object(b);
    px_json_member_string(b, "name", g_array_index(m->other, PxOtherOp, i).name);
    px_json_member_double(b, "seconds", g_array_index(m->other, PxOtherOp, i).seconds);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  json_builder_end_object(b);
  px_report_print_json(b);
}

int px_cmd_compare(int argc, char **argv) {
  PxPlanOptions o;
  gboolean json = FALSE;
  int show_other = 8;
  g_autofree char *trace = NULL, *timeline = NULL;
  GOptionEntry entries[] = {
    {"trace", 0, 0, G_OPTION_ARG_FILENAME, &trace, "PyTorch profiler (Kineto) Chrome trace or Nsight Systems JSON export of one step", "FILE.json"},
    {"timeline", 0, 0, G_OPTION_ARG_FILENAME, &timeline, "Write predicted and measured as one Chrome trace", "FILE.json"},
    {"show-other", 0, 0, G_OPTION_ARG_INT, &show_other, "Unmatched ops to name (default 8)", "N"},
    {"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print one JSON object", NULL},
    {NULL}};
  if (!px_parse_command_line(CMD, "a measured step beside the prediction", entries, &o, &argc, &argv)) return 2;
  g_autoptr(GError) error = NULL;
  g_autoptr(PxModel) model = NULL;
  g_autoptr(PxCluster) cluster = NULL;
  g_autoptr(PxMeasuredStep) m = NULL;
  PxPlan plan = {0};
  Predicted pr = {0};
  int rc = 0, columns = 100;
  if (!trace) {
    fprintf(stderr, CMD ": give the measured step: --trace FILE.json\n");
    rc = 2;
  } else if (show_other < 0) {
    fprintf(stderr, CMD ": --show-other %d must not be negative\n", show_other);
    rc = 2;
  } else if (!json && !px_terminal_columns(FALSE, &columns, &error)) { /* the time axis's width */
    rc = px_cli_fail(CMD, error) + 1;
  } else if (!(m = px_trace_load(trace, &error)) ||
             (o.model && (!px_plan_options_resolve(&o, TRUE, &model, &cluster, &plan, &error) ||
                          !predict(model, cluster, &plan, m->rank, &pr, &error))) ||
             (timeline && !write_timeline(timeline, m, &pr, &error))) {
    rc = px_cli_fail(CMD, error);
  } else if (json) {
    print_json(trace, m, &pr);
  } else {
    print_text(trace, m, &pr, model, cluster, &plan, show_other, columns);
  }
  if (pr.segments) g_array_unref(pr.segments);
  if (o.model) px_plan_clear(&plan);
  px_plan_options_clear(&o);
  return rc;
}
