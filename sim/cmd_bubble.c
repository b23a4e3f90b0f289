/* cmd_bubble.c — `parallax-sim bubble`: the pipeline bubble of each schedule
 * versus the number of micro-batches, simulated by the event engine with a
 * uniform cost table (T_F, T_B, T_W per model chunk from --costs, 1 each by
 * default; no communication) beside the analytic formula. Bubble fraction =
 * idle / step time, averaged over the pipeline stages. */
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "commands.h"
#include "cost.h"
#include "engine.h"
#include "options.h"
#include "plot.h"
#include "report.h"
#include "schedule.h"

#define CMD "parallax-sim bubble"

static const PxScheduleKind schedules[] = {PX_SCHED_GPIPE, PX_SCHED_1F1B, PX_SCHED_INTERLEAVED, PX_SCHED_ZB_H1,
                                           PX_SCHED_ZB_H2, PX_SCHED_ZB_V, PX_SCHED_DUALPIPEV};
#define N_SCHED G_N_ELEMENTS(schedules)

/* "1,2,4,8" -> positive ints. */
static gboolean parse_m_list(const char *s, GArray *out, GError **error) {
  g_auto(GStrv) parts = g_strsplit(s, ",", -1);
  for (int i = 0; parts[i]; i++) {
    guint64 v;
    g_autoptr(GError) err = NULL;
    g_strstrip(parts[i]);
    if (!g_ascii_string_to_unsigned(parts[i], 10, 1, 1 << 20, &v, &err)) {
      g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE,
                  "--m wants comma-separated micro-batch counts >= 1, not '%s'", parts[i]);
      return FALSE;
    }
    int m = (int)v;
    g_array_append_val(out, m);
  }
  if (out->len == 0) {
    g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, "--m is empty");
    return FALSE;
  }
  return TRUE;
}

/* A pipeline-only plan: dp = tp = 1, one sequence per micro-batch. */
static void bubble_plan(PxPlan *p, PxScheduleKind k, int pp, int vpp, int m) {
  px_plan_init(p);
  p->pp = pp;
  p->vpp = k == PX_SCHED_INTERLEAVED ? vpp : px_schedule_is_v(k) ? 2 : 1;
  p->schedule = k;
  p->mbs = 1;
  p->gbs = m;
  p->m = m;
}

/* One chunk's forward, backward-input and backward-weight times. */
typedef struct {
  double f, b, w;
} Costs;

/* "F,B,W" -> three finite times, F and B > 0, W >= 0, none above 1e6. */
static gboolean parse_costs(const char *s, Costs *c, GError **error) {
  g_auto(GStrv) parts = g_strsplit(s, ",", -1);
  double v[3];
  int n = 0;
  for (; parts[n]; n++) {
    char *end = NULL;
    g_strstrip(parts[n]);
    if (n < 3) v[n] = g_ascii_strtod(parts[n], &end);
    if (n >= 3 || !*parts[n] || *end || !isfinite(v[n]) || v[n] < 0 || v[n] > 1e6 || (n < 2 && v[n] == 0)) {
      g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE,
                  "--costs wants T_F,T_B,T_W: three times of one chunk's forward, backward-input and "
                  "backward-weight passes, T_F and T_B > 0, T_W >= 0, none above 1e6 (got '%s')", s);
      return FALSE;
    }
  }
  if (n != 3) {
    g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE,
                "--costs wants three comma-separated times T_F,T_B,T_W, got %d in '%s'", n, s);
    return FALSE;
  }
  *c = (Costs){v[0], v[1], v[2]};
  return TRUE;
}

static gboolean costs_equal(const Costs *c) { return c->f == c->b && c->b == c->w; }

typedef struct {
  double simulated;   /* NAN when the schedule refuses this m */
  double analytic;
  double step_time;   /* in units of T_F */
  double span;        /* the longest rank's first-op-to-last-op span, units of T_F */
  char *why;          /* the refusal */
} Point;
typedef Point Row[N_SCHED];  /* one m, every schedule */

static void simulate_point(PxScheduleKind k, int pp, int vpp, int m, const Costs *c, Point *pt) {
  PxPlan plan;
  bubble_plan(&plan, k, pp, vpp, m);
  pt->analytic = px_plan_bubble_fraction_costs(&plan, c->f, c->b, c->w);
  pt->simulated = pt->step_time = pt->span = NAN;
  g_autoptr(GError) err = NULL;
  g_autoptr(PxProgram) prog = px_program_new(&plan, NULL, &err);
  g_autoptr(PxCostTable) table = px_cost_table_uniform(pp, plan.vpp, c->f, c->b, c->w);
  PxSimOptions opt = {.no_timeline = TRUE};
  g_autoptr(PxSimResult) res = prog ? px_simulate(prog, table, &opt, &err) : NULL;
  if (res) {
    pt->simulated = res->bubble_fraction;
    pt->step_time = res->step_time;
    pt->span = res->span;
  } else {
    pt->why = g_strdup(err ? err->message : "failed");
  }
  px_plan_clear(&plan);
}

static void print_table(int pp, int vpp, const Costs *c, const GArray *ms, const Row *pts) {
  printf("# pipeline bubble, pp=%d, vpp=%d (interleaved only)\n", pp, vpp);
  printf("# bubble fraction = idle / step time, mean over stages; simulated by the event engine\n");
  printf("# with costs per chunk T_F = %g, T_B = %g, T_W = %g (no communication, no optimizer;\n", c->f, c->b, c->w);
  printf("# gpipe, 1f1b and interleaved run T_B + T_W as one backward)\n");
  printf("# analytic%s:\n", costs_equal(c) ? "" : " ('-' where a schedule has no closed form for these costs)");
  for (gsize s = 0; s < N_SCHED; s++)
    printf("#   %-12s %s\n", px_schedule_name(schedules[s]),
           costs_equal(c) ? px_report_bubble_formula(schedules[s]) : px_report_bubble_formula_costs(schedules[s]));
  printf("# zb-h1's formula assumes m >= p, zb-h2's and zb-v's m >= 2p-1; below that the warm-up cannot be filled\n");
  printf("# zb-v and dualpipev: 2 chunks per rank in a V (T_F is one chunk's forward: half a stage's)\n");
  printf("# span: idle within each rank's own first-op-to-last-op span (each rank may begin as soon as its\n");
  printf("# input is there: optimizer post-validation, Qi et al. 2024 §4; their Table 5 convention for zb-h2)\n");
  printf("# %5s", "");
  for (gsize s = 0; s < N_SCHED; s++) printf("  %-16s", px_schedule_name(schedules[s]));
  printf("\n# %5s", "m");
  for (gsize s = 0; s < N_SCHED; s++) printf("  %-7s %-8s", "sim", "formula");
  printf("\n");
  for (guint i = 0; i < ms->len; i++) {
    printf("  %5d", g_array_index(ms, int, i));
    for (gsize s = 0; s < N_SCHED; s++) {
      const Point *pt = &pts[i][s];
      if (isnan(pt->simulated)) printf("  %-7s", "-");
      else printf("  %-7.4f", pt->simulated);
      if (isnan(pt->analytic)) printf(" %-8s", "-");
      else printf(" %-8.4f", pt->analytic);
    }
    printf("\n");
  }
  printf("# span bubble (idle / span within each rank's span; every rank is equally busy here):\n# %5s", "m");
  for (gsize s = 0; s < N_SCHED; s++) printf("  %-11s", px_schedule_name(schedules[s]));
  printf("\n");
  for (guint i = 0; i < ms->len; i++) {
    printf("# %5d", g_array_index(ms, int, i));
    for (gsize s = 0; s < N_SCHED; s++) {
      const Point *pt = &pts[i][s];
      if (isnan(pt->span) || pt->span <= 0) printf("  %-11s", "-");
      else {
        double b = 1 - pt->step_time * (1 - pt->simulated) / pt->span;
        printf("  %-11.4f", fabs(b) < 1e-12 ? 0.0 : b);
      }
    }
    printf("\n");
  }
  for (guint i = 0; i < ms->len; i++)
    for (gsize s = 0; s < N_SCHED; s++)
      if (pts[i][s].why)
        printf("# %s, m=%d not simulated: %s\n", px_schedule_name(schedules[s]), g_array_index(ms, int, i),
               pts[i][s].why);
}

static void print_json(int pp, int vpp, const Costs *c, const GArray *ms, const Row *pts) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  px_json_member_int(b, "pp", pp);
  px_json_member_int(b, "vpp", vpp);
  px_json_member_string(b, "bubble", "idle / step time, mean over stages");
  json_builder_set_member_name(b, "costs");
  json_builder_begin_object(b);
  px_json_member_double(b, "t_f", c->f);
  px_json_member_double(b, "t_b", c->b);
  px_json_member_double(b, "t_w", c->w);
  px_json_member_string(b, "unit", "any, per chunk; no communication");
  json_builder_end_object(b);
  json_builder_set_member_name(b, "schedules");
  json_builder_begin_array(b);
  for (gsize s = 0; s < N_SCHED; s++) {
    json_builder_begin_object(b);
    px_json_member_string(b, "schedule", px_schedule_name(schedules[s]));
    px_json_member_string(b, "formula", costs_equal(c) ? px_report_bubble_formula(schedules[s])
                                                        : px_report_bubble_formula_costs(schedules[s]));
    json_builder_set_member_name(b, "points");
    json_builder_begin_array(b);
    for (guint i = 0; i < ms->len; i++) {
      const Point *pt = &pts[i][s];
      json_builder_begin_object(b);
      px_json_member_int(b, "m", g_array_index(ms, int, i));
      json_builder_set_member_name(b, "simulated");
      if (isnan(pt->simulated)) json_builder_add_null_value(b);
      else json_builder_add_double_value(b, pt->simulated);
      json_builder_set_member_name(b, "analytic");
      if (isnan(pt->analytic)) json_builder_add_null_value(b);
      else json_builder_add_double_value(b, pt->analytic);
      json_builder_set_member_name(b, "step_time");
      if (isnan(pt->step_time)) json_builder_add_null_value(b);
      else json_builder_add_double_value(b, pt->step_time);
      json_builder_set_member_name(b, "span");
      if (isnan(pt->span)) json_builder_add_null_value(b);
      else json_builder_add_double_value(b, pt->span);
      if (pt->why) {
        px_json_member_string(b, "error", pt->why);
      }
      json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  json_builder_end_object(b);
  px_report_print_json(b);
}

/* Simulated points (where the schedule accepts m) and the analytic curve at
 * every integer m over the range. */
static gboolean plot_bubble(int pp, int vpp, const Costs *c, const GArray *ms, const Row *pts, const char *dir,
                            GError **error) {
  int lo = G_MAXINT, hi = 0;
  for (guint i = 0; i < ms->len; i++) {
    lo = MIN(lo, g_array_index(ms, int, i));
    hi = MAX(hi, g_array_index(ms, int, i));
  }
  gsize nc = (gsize)MAX(hi - lo + 1, 1);
  PxBubbleSeries series[N_SCHED];
  g_autofree double *sm = g_new(double, N_SCHED * ms->len), *sv = g_new(double, N_SCHED * ms->len);
  g_autofree double *cm = g_new(double, nc), *cv = g_new(double, N_SCHED * nc);
  for (gsize j = 0; j < nc; j++) cm[j] = lo + (double)j;
  for (gsize s = 0; s < N_SCHED; s++) {
    PxBubbleSeries *b = &series[s];
    b->name = px_schedule_name(schedules[s]);
    b->m = sm + s * ms->len;
    b->simulated = sv + s * ms->len;
    b->n = 0;
    for (guint i = 0; i < ms->len; i++)
      if (!isnan(pts[i][s].simulated)) {
        sm[s * ms->len + b->n] = g_array_index(ms, int, i);
        sv[s * ms->len + b->n] = pts[i][s].simulated;
        b->n++;
      }
    /* the curve where the formula is exact (zb-h2 and zb-v from 2p-1, ...) */
    PxPlan plan;
    bubble_plan(&plan, schedules[s], pp, vpp, lo);
    gsize first = (gsize)CLAMP(px_plan_bubble_exact_from(&plan) - lo, 0, (int)nc);
    px_plan_clear(&plan);
    for (gsize j = first; j < nc; j++) {
      bubble_plan(&plan, schedules[s], pp, vpp, lo + (int)j);
      cv[s * nc + j] = px_plan_bubble_fraction_costs(&plan, c->f, c->b, c->w);
      px_plan_clear(&plan);
    }
    if (nc > first && isnan(cv[s * nc + first])) first = nc; /* no closed form: no curve */
    b->n_curve = (int)(nc - first);
    b->curve_m = cm + first;
    b->curve = cv + s * nc + first;
  }
  g_autofree char *title =
      costs_equal(c) ? g_strdup_printf("Pipeline bubble, pp = %d, interleaved vpp = %d (T_F = T_B = T_W)", pp, vpp)
                     : g_strdup_printf("Pipeline bubble, pp = %d, interleaved vpp = %d (T_F : T_B : T_W = %g : %g : %g)",
                                       pp, vpp, c->f, c->b, c->w);
  return px_plot_bubble(series, N_SCHED, dir, title, error);
}

int px_cmd_bubble(int argc, char **argv) {
  int pp = 4, vpp = 2;
  g_autofree char *m_list = NULL, *plot_dir = NULL, *costs_arg = NULL;
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    {"pp", 0, 0, G_OPTION_ARG_INT, &pp, "pipeline stages (default 4)", "P"},
    {"m", 0, 0, G_OPTION_ARG_STRING, &m_list, "micro-batches per step, comma-separated (default 1,2,4,8,16,32)", "LIST"},
    {"vpp", 0, 0, G_OPTION_ARG_INT, &vpp, "model chunks per stage for interleaved (default 2)", "V"},
    {"costs", 0, 0, G_OPTION_ARG_STRING, &costs_arg,
     "one chunk's forward, backward-input and backward-weight times, relative (any one unit), e.g. 1,1.2,0.8 (default 1,1,1)", "F,B,W"},
    {"plot", 0, 0, G_OPTION_ARG_FILENAME, &plot_dir, "write bubble.png / bubble.svg (and data) into DIR", "DIR"},
    {"json", 0, 0, G_OPTION_ARG_NONE, &json, "one JSON object instead of the table", NULL},
    {NULL, 0, 0, 0, NULL, NULL, NULL}};
  if (!px_parse_command_line(CMD, "pipeline bubble versus micro-batches, simulated and analytic", entries,
                             NULL, &argc, &argv))
    return 2;
  g_autoptr(GError) err = NULL;
  if (pp < 1 || vpp < 1) {
    g_set_error(&err, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID, "--pp and --vpp must be >= 1");
    px_cli_fail(CMD, err);
    return 2;
  }
  g_autoptr(GArray) ms = g_array_new(FALSE, FALSE, sizeof(int));
  if (!parse_m_list(m_list ? m_list : "1,2,4,8,16,32", ms, &err)) {
    px_cli_fail(CMD, err);
    return 2;
  }

  /* the V schedules run two chunks per rank, interleaved vpp: the largest m at
   * the most chunks bounds every point (px_plan_validate's limit), and the
   * points together at most 8 times that (--pp 64 and 10000 points of m 2048
   * simulated for over an hour; one point of 2^21 passes takes seconds) */
  gint64 total = 0;
  for (guint i = 0; i < ms->len; i++) {
    gint64 passes = (gint64)pp * MAX(vpp, 2) * g_array_index(ms, int, i);
    total += passes;
    if (total > 8 * (gint64)PX_PLAN_MAX_PASSES) {
      g_set_error(&err, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID,
                  "--m's first %u points are %" G_GINT64_FORMAT " passes of --pp %d × %d chunks in all, more than "
                  "2^24: fewer or smaller micro-batch counts", i + 1, total, pp, MAX(vpp, 2));
      px_cli_fail(CMD, err);
      return 2;
    }
    if (passes > PX_PLAN_MAX_PASSES) {
      g_set_error(&err, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID,
                  "--pp %d × %d chunks × m %d = %" G_GINT64_FORMAT " passes per step is more than 2^21", pp,
                  MAX(vpp, 2), g_array_index(ms, int, i), passes);
      px_cli_fail(CMD, err);
      return 2;
    }
  }

  Costs costs = {1, 1, 1};
  if (costs_arg && !parse_costs(costs_arg, &costs, &err)) {
    px_cli_fail(CMD, err);
    return 2;
  }

  Row *pts = g_new0(Row, ms->len);
  for (guint i = 0; i < ms->len; i++)
    for (gsize s = 0; s < N_SCHED; s++) simulate_point(schedules[s], pp, vpp, g_array_index(ms, int, i), &costs, &pts[i][s]);

  if (json) print_json(pp, vpp, &costs, ms, pts);
  else print_table(pp, vpp, &costs, ms, pts);
  int rc = 0;
  if (plot_dir && !plot_bubble(pp, vpp, &costs, ms, pts, plot_dir, &err)) rc = px_cli_fail(CMD, err);
  for (guint i = 0; i < ms->len; i++)
    for (gsize s = 0; s < N_SCHED; s++) g_free(pts[i][s].why);
  g_free(pts);
  return rc;
}
