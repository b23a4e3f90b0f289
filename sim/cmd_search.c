/* cmd_search.c — `parallax-sim search`: which layouts of a model fit a cluster
 * and which is fastest (or leanest); or, with --tokens and --days, how many
 * GPUs finish the training in time. */
#include <json-glib/json-glib.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "commands.h"
#include "config.h"
#include "emit.h"
#include "options.h"
#include "plot.h"
#include "report.h"
#include "search.h"

#define CMD "parallax-sim search"

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

typedef struct {
  char *objective, *max_memory, *margin, *pareto, *emit, *out, *tokens, *days, *nodes_range;
  char **fix;
  char *top_s, *threads_s, *confirm_s, *max_mbs_s, *max_vpp_s; /* strings: 0 or -1 must not read as "default" */
  int top, threads, confirm, max_mbs, max_vpp;
  gboolean json, tp_across, all_counts;
} SearchFlags;

/* ---- progress bar (stderr, terminals only) -------------------------------- */

static void progress_bar(const PxSearchProgress *p, void *data) {
  (void)data;
  double frac = p->total ? (double)p->evaluated / p->total : 1;
  int width = 24, fill = (int)(frac * width);
  char bar[32];
  for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
  bar[width] = 0;
  double eta = frac > 0 ? p->elapsed * (1 - frac) / frac : 0;
  fprintf(stderr, "\r\033[K[%s] %3.0f %% %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT " layouts, %" G_GUINT64_FORMAT " fit",
          bar, 100 * frac, p->evaluated, p->total, p->feasible);
  if (p->have_best) fprintf(stderr, ", best %.1f ms", 1e3 * p->best_time);
  fprintf(stderr, ", ETA %.0f s", eta);
  fflush(stderr);
}

static void progress_end(gboolean shown) {
  if (shown) fprintf(stderr, "\r\033[K");
}

/* ---- fixes from --fix and from the plan flags ----------------------------- */

/* The layout flags of the shared parser (--tp, --ckpt, --sp ...) hold knobs
 * fixed, like --fix. They are taken out of the options before the base plan is
 * resolved, so that the base (tp = pp = 1 on every GPU) need not be a valid
 * layout itself; so is the batch, which is set on the base afterwards. */
static gboolean take_fixes(const SearchFlags *f, PxPlanOptions *o, PxSearchFix *fix, char **tp_overlap,
                           GError **error) {
  px_search_fix_init(fix);
  /* --tp-overlap applies to the layouts that allow it (px_layout_apply), not
   * to the base plan, whose tp and sp the search chooses */
  *tp_overlap = g_steal_pointer(&o->tp_overlap);
  struct { int *v; int *field; } ints[] = {{&o->tp, &fix->tp}, {&o->pp, &fix->pp}, {&o->dp, &fix->dp},
                                           {&o->vpp, &fix->vpp}, {&o->mbs, &fix->mbs}, {&o->zero, &fix->zero},
                                           {&o->cp, &fix->cp}};
  for (gsize i = 0; i < G_N_ELEMENTS(ints); i++) {
    if (*ints[i].v >= 0) *ints[i].field = *ints[i].v;
    *ints[i].v = -1;
  }
  struct { const char *knob; char **v; } strs[] = {
    {"ckpt", &o->ckpt}, {"schedule", &o->schedule}, {"offload", &o->offload}, {"order", &o->order}};
  for (gsize i = 0; i < G_N_ELEMENTS(strs); i++) {
    if (!*strs[i].v) continue;
    g_autofree char *kv = g_strdup_printf("%s=%s", strs[i].knob, *strs[i].v);
    g_clear_pointer(strs[i].v, g_free);
    if (!px_search_fix_parse(fix, kv, error)) return FALSE;
  }
  if (o->sp) fix->sp = 1;
  o->sp = FALSE;
  for (char **kv = f->fix; kv && *kv; kv++)
    if (!px_search_fix_parse(fix, *kv, error)) return FALSE;
  return TRUE;
}

/* The global batch of every layout: --gbs, or --gbs-tokens by the rule that
 * plan and simulate use (px_plan_gbs_from_tokens), or the plan file's or
 * ds_config's. Without any the search refuses: every layout's step time
 * depends on it. */
static gboolean search_batch(int gbs, const char *gbs_tokens, gboolean given, PxPlan *plan, GError **error) {
  if (gbs > 0 && gbs_tokens) {
    g_set_error(error, PX_SEARCH_ERROR, PX_SEARCH_ERROR_INVALID,
                "--gbs %d and --gbs-tokens %s both give the global batch: give one", gbs, gbs_tokens);
    return FALSE;
  }
  if (gbs > 0) {
    plan->gbs = gbs;
  } else if (gbs_tokens) {
    double tokens, dev;
    if (!px_parse_count(gbs_tokens, &tokens)) {
      g_set_error(error, PX_SEARCH_ERROR, PX_SEARCH_ERROR_INVALID, "--gbs-tokens '%s' is not a token count (e.g. 4M)",
                  gbs_tokens);
      return FALSE;
    }
    if (!px_plan_gbs_from_tokens(tokens, plan->seq, &plan->gbs, &dev, error)) return FALSE;
    fprintf(stderr, CMD ": --gbs-tokens %s at seq %d: global batch %d sequences = %.0f tokens (%+.1f %%)\n", gbs_tokens,
            plan->seq, plan->gbs, (double)plan->gbs * plan->seq, 100 * dev);
  } else if (!given) {
    g_set_error(error, PX_SEARCH_ERROR, PX_SEARCH_ERROR_INVALID,
                "the search needs the global batch: --gbs N (sequences) or --gbs-tokens T");
    return FALSE;
  }
  return TRUE;
}

/* ---- output --------------------------------------------------------------- */

static void layout_json(JsonBuilder *b, const PxLayout *l) {
  json_builder_begin_object(b);
  struct { const char *k; int v; } ints[] = {{"tp", l->tp}, {"pp", l->pp}, {"dp", l->dp}, {"vpp", l->vpp},
                                             {"mbs", l->mbs}, {"zero", l->zero}, {"cp", MAX(l->cp, 1)}};
  for (gsize i = 0; i < G_N_ELEMENTS(ints); i++) px_json_member_int(b, ints[i].k, ints[i].v);
  px_json_member_string(b, "offload", px_offload_name(l->offload));
  px_json_member_string(b, "ckpt", px_ckpt_name(l->ckpt));
  px_json_member_bool(b, "seq_parallel", l->sp);
  px_json_member_string(b, "schedule", px_schedule_name(l->schedule));
  g_autofree char *os = px_search_order_string(l->order);
  px_json_member_string(b, "order", os);
  json_builder_end_object(b);
}

static void candidate_json(JsonBuilder *b, const PxSearchCandidate *c) {
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "layout");
  layout_json(b, &c->layout);
  struct { const char *k; double v; } ds[] = {{"memory_bytes", c->memory}, {"analytic_step_time_s", c->analytic_time},
                                              {"step_time_s", c->step_time}, {"tokens_per_s", c->tokens_per_s},
                                              {"mfu", c->mfu}, {"bubble_fraction", c->bubble}};
  for (gsize i = 0; i < G_N_ELEMENTS(ds); i++) px_json_member_double(b, ds[i].k, ds[i].v);
  json_builder_end_object(b);
}

/* Pad to `width` display columns (layouts hold the two-byte "·"). */
static void print_padded(const char *s, int width) {
  printf("%s%*s", s, MAX(0, width - (int)g_utf8_strlen(s, -1)), "");
}

static void print_table(const PxSearchResult *r, const PxUnits *u) {
  int width = 6;
  for (guint i = 0; i < r->top->len; i++) {
    g_autofree char *ls = px_layout_format(&g_array_index(r->top, PxSearchCandidate, i).layout);
    width = MAX(width, (int)g_utf8_strlen(ls, -1));
  }
  printf("%-3s ", "#");
  print_padded("layout", width);
  printf(" %10s %10s %10s %6s %8s\n", u->scale == 1e9 ? "mem GB" : "mem GiB", "step ms", "tokens/s", "MFU %",
         "bubble %");
  for (guint i = 0; i < r->top->len; i++) {
    const PxSearchCandidate *c = &g_array_index(r->top, PxSearchCandidate, i);
    g_autofree char *ls = px_layout_format(&c->layout);
    printf("%-3u ", i + 1);
    print_padded(ls, width);
    printf(" %10.1f %10.1f %10.0f %6.1f %8.1f\n", c->memory / u->scale, 1e3 * c->step_time, c->tokens_per_s,
           100 * c->mfu, 100 * c->bubble);
  }
  printf("(memory: peak per GPU, %s = %s bytes; step: simulated; MFU: model FLOPs / (step · GPUs · peak); bubble: "
         "pipeline idle incl. p2p waits)\n", u->name,
         u->scale == 1e9 ? "1e9" : "2^30");
}

static void closest_miss(const PxSearchResult *r, const PxUnits *u) {
  if (!r->have_closest) {
    fprintf(stderr, CMD ": no valid layout of %d GPUs: %s\n", r->gpus,
            r->why_invalid ? r->why_invalid : "the fixed knobs leave none");
    return;
  }
  const PxLayout *l = &r->closest.layout;
  g_autofree char *cp = l->cp > 1 ? g_strdup_printf(" cp %d", l->cp) : g_strdup("");
  fprintf(stderr, CMD ": no layout fits: smallest memory need %.1f %s per GPU at tp %d%s pp %d dp %d ZeRO-%d%s%s %s recompute; ",
          r->closest.memory / u->scale, u->name, l->tp, cp, l->pp, l->dp, l->zero,
          l->offload != PX_OFFLOAD_NONE ? " offload " : "", l->offload != PX_OFFLOAD_NONE ? px_offload_name(l->offload) : "",
          px_ckpt_name(l->ckpt));
  if (r->capacity < r->gpu_memory)
    fprintf(stderr, "the limit is %.1f %s (the GPU has %.1f %s)\n", r->capacity / u->scale, u->name,
            r->gpu_memory / u->scale, u->name);
  else
    fprintf(stderr, "the GPU has %.1f %s\n", r->gpu_memory / u->scale, u->name);
}

static gboolean emit_plan(const SearchFlags *f, const PxModel *model, const PxPlan *base,
                          const PxSearchCandidate *w, const PxPlanOptions *o, const PxCluster *cluster,
                          GError **error) {
  PxPlan p;
  px_plan_copy(&p, base);
  px_layout_apply(&w->layout, &p);
  gboolean ok = px_plan_validate(&p, model, cluster, error);
  PxEmitInfo info = {.command = CMD, .model_name = o->model, .cluster_name = o->cluster, .have_prediction = TRUE,
                     .step_time_s = w->step_time, .tokens_per_s = w->tokens_per_s, .mfu = w->mfu,
                     .peak_memory = w->memory, .capacity = (double)cluster->gpu_memory, .fits = w->fits};
  g_autoptr(GPtrArray) written = g_ptr_array_new_with_free_func(g_free);
  ok = ok && px_emit_to(f->emit, f->out, model, cluster, &p, &info, written, error);
  for (guint i = 0; ok && i < written->len; i++) fprintf(stderr, CMD ": wrote %s\n", (char *)written->pdata[i]);
  px_plan_clear(&p);
  return ok;
}

static gboolean pareto_plot(const char *path, const PxSearchResult *r, const PxModel *model, GError **error) {
  guint n = r->points->len;
  g_autofree PxParetoPoint *pts = g_new0(PxParetoPoint, MAX(n, 1));
  for (guint i = 0; i < n; i++) {
    const PxSearchPoint *sp = &g_array_index(r->points, PxSearchPoint, i);
    pts[i] = (PxParetoPoint){sp->time, sp->memory, TRUE, NULL};
  }
  /* label a few points of the front only (the cloud may hold hundreds of
   * thousands of points, the front dozens), at least a sixth of the front's
   * memory range apart so that no two labels overlap */
  g_autofree int *front = g_new(int, MAX(n, 1));
  int nf = px_pareto_front(pts, (int)n, front);
  g_autoptr(GPtrArray) labels = g_ptr_array_new_with_free_func(g_free);
  const int max_labels = 6;
  double lo = G_MAXDOUBLE, hi = 0, last = G_MAXDOUBLE;
  for (int i = 0; i < nf; i++) {
    lo = MIN(lo, pts[front[i]].memory);
    hi = MAX(hi, pts[front[i]].memory);
  }
  double gap = (hi - lo) / max_labels;
  for (int i = 0; i < nf && (int)labels->len < max_labels; i++) {
    double m = pts[front[i]].memory;
    if (labels->len > 0 && fabs(last - m) < gap) continue;
    char *label = px_layout_format(&g_array_index(r->points, PxSearchPoint, front[i]).layout);
    g_ptr_array_add(labels, label);
    pts[front[i]].label = label;
    last = m;
  }
  g_autofree char *dir = g_path_get_dirname(path);
  g_autofree char *title = g_strdup_printf("%s on %d GPUs: memory vs analytic step time", model->desc.name, r->gpus);
  if (!px_plot_pareto(pts, (int)n, r->capacity, dir, title, error)) return FALSE;
  /* px_plot_pareto writes DIR/pareto.png and .svg: give them the asked name */
  g_autofree char *png = g_build_filename(dir, "pareto.png", NULL);
  g_autofree char *svg = g_build_filename(dir, "pareto.svg", NULL);
  if (strcmp(png, path) != 0) {
    g_autofree char *stem = g_str_has_suffix(path, ".png") ? g_strndup(path, strlen(path) - 4) : g_strdup(path);
    g_autofree char *svg_to = g_strdup_printf("%s.svg", stem);
    if (rename(png, path) != 0 || rename(svg, svg_to) != 0) {
      g_set_error(error, PX_SEARCH_ERROR, PX_SEARCH_ERROR_FAILED, "could not rename %s to %s", png, path);
      return FALSE;
    }
  }
  return TRUE;
}

/* ---- the two modes -------------------------------------------------------- */

static int run_search(const SearchFlags *f, const PxPlanOptions *o, const PxModel *model, const PxCluster *cluster,
                      const PxPlan *plan, PxSearchOptions *so, const PxUnits *u, gboolean tty) {
  g_autoptr(GError) error = NULL;
  g_autoptr(PxSearchResult) r = px_search_run(model, cluster, plan, so, &error);
  progress_end(so->progress != NULL);
  if (!r) return px_cli_fail(CMD, error);
  if (r->top->len == 0 && !r->cancelled) {
    closest_miss(r, u);
    return 1;
  }
  if (r->cancelled) fprintf(stderr, CMD ": interrupted: best of the %" G_GUINT64_FORMAT " layouts evaluated so far\n", r->evaluated);
  const PxSearchCandidate *w = r->top->len ? &g_array_index(r->top, PxSearchCandidate, 0) : NULL;
  /* the runner-up: the first layout that is slower, not one that ties (an
   * equivalent rank order) */
  const PxSearchCandidate *ru = r->top->len > 1 ? &g_array_index(r->top, PxSearchCandidate, 1) : NULL;
  for (guint i = 1; i < r->top->len; i++)
    if (g_array_index(r->top, PxSearchCandidate, i).step_time > w->step_time) {
      ru = &g_array_index(r->top, PxSearchCandidate, i);
      break;
    }
  g_autofree char *why = ru ? px_search_explain(w, ru, r->capacity, u->scale, u->name) : NULL;
  g_autoptr(GArray) scheds = w ? px_search_schedules(model, cluster, plan, w, r->capacity) : NULL;
  if (f->json) {
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    px_json_member_string(b, "model", model->desc.name);
    px_json_member_string(b, "cluster", cluster->name);
    px_json_member_int(b, "gpus", r->gpus);
    px_json_member_int(b, "gbs", plan->gbs);
    px_json_member_int(b, "seq", plan->seq);
    px_json_member_double(b, "capacity_bytes", r->capacity);
    struct { const char *k; guint64 v; } cs[] = {{"layouts", r->total}, {"evaluated", r->evaluated},
                                                 {"valid", r->valid}, {"feasible", r->feasible}};
    for (gsize i = 0; i < G_N_ELEMENTS(cs); i++) {
      px_json_member_int(b, cs[i].k, (gint64)cs[i].v);
    }
    px_json_member_bool(b, "interrupted", r->cancelled);
    px_json_member_double(b, "kendall_tau_analytic_vs_simulated", px_search_kendall_tau(r));
    json_builder_set_member_name(b, "top");
    json_builder_begin_array(b);
    for (guint i = 0; i < r->top->len; i++) candidate_json(b, &g_array_index(r->top, PxSearchCandidate, i));
    json_builder_end_array(b);
    json_builder_set_member_name(b, "why");
    if (why) json_builder_add_string_value(b, why);
    else json_builder_add_null_value(b);
    json_builder_set_member_name(b, "schedules");
    json_builder_begin_array(b);
    for (guint i = 0; scheds && i < scheds->len; i++) {
      const PxSearchCandidate *c = &g_array_index(scheds, PxSearchCandidate, i);
      json_builder_begin_object(b);
      px_json_member_string(b, "schedule", px_schedule_name(c->layout.schedule));
      px_json_member_int(b, "vpp", c->layout.vpp);
      px_json_member_double(b, "step_time_s", c->step_time);
      px_json_member_double(b, "bubble_fraction", c->bubble);
      px_json_member_double(b, "memory_bytes", c->memory);
      px_json_member_bool(b, "fits", c->fits);
      px_json_member_double(b, "p2p_bytes_per_gpu", c->p2p_bytes);
      json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    px_report_print_json(b);
  } else if (w) {
    g_autofree char *tok = px_format_count((double)plan->gbs * plan->seq);
    printf("Parallax search: %s on %s, %d GPUs (%s, %.1f %s each; layouts may use %.1f %s), "
           "global batch %d × %d = %s tokens\n",
           model->desc.name, cluster->name, r->gpus, cluster->gpu, r->gpu_memory / u->scale, u->name,
           r->capacity / u->scale, u->name, plan->gbs, plan->seq, tok);
    printf("searched %" G_GUINT64_FORMAT " layouts: %" G_GUINT64_FORMAT " valid, %" G_GUINT64_FORMAT
           " fit; the best by the analytic model were simulated and ranked by simulated step time (%.2f s)\n",
           r->evaluated, r->valid, r->feasible, r->elapsed);
    printf("analytic vs simulated order of the %u shown: Kendall tau-b %.3f\n\n", r->top->len, px_search_kendall_tau(r));
    print_table(r, u);
    if (model->desc.experts > 0) printf("(MFU of a mixture of experts: %s)\n", px_report_mfu_convention(model));
    if (why) printf("\nwhy #1: %s\n", why);
    if (scheds && scheds->len > 1) {
      printf("\n#1's layout under each schedule (simulated): the bubble against memory against p2p volume\n");
      printf("%-12s %4s %10s %8s %10s %4s %14s\n", "schedule", "vpp", "step ms", "bubble %", u->scale == 1e9 ? "mem GB" : "mem GiB",
             "fits", "p2p MB/GPU/step");
      for (guint i = 0; i < scheds->len; i++) {
        const PxSearchCandidate *c = &g_array_index(scheds, PxSearchCandidate, i);
        printf("%-12s %4d %10.1f %8.1f %10.2f %4s %14.1f%s\n", px_schedule_name(c->layout.schedule), c->layout.vpp,
               1e3 * c->step_time, 100 * c->bubble, c->memory / u->scale, c->fits ? "yes" : "no", c->p2p_bytes / 1e6,
               c->layout.schedule == w->layout.schedule && c->layout.vpp == w->layout.vpp ? "  <- #1" : "");
      }
    }
  }
  if (w && f->emit && !emit_plan(f, model, plan, w, o, cluster, &error)) return px_cli_fail(CMD, error);
  if (f->pareto && !pareto_plot(f->pareto, r, model, &error)) return px_cli_fail(CMD, error);
  (void)tty;
  return r->cancelled ? 130 : 0;
}

static gboolean parse_range(const char *s, int *lo, int *hi) {
  char *end;
  gint64 a = g_ascii_strtoll(s, &end, 10), b = a;
  if (end == s) return FALSE;
  if (*end == '-') {
    const char *t = end + 1;
    b = g_ascii_strtoll(t, &end, 10);
    if (end == t) return FALSE;
  }
  if (*end || a < 1 || b < a || b > (1 << 20)) return FALSE;
  *lo = (int)a;
  *hi = (int)b;
  return TRUE;
}

static int run_sizing(const SearchFlags *f, const PxModel *model, const PxCluster *cluster, const PxPlan *plan,
                      PxSearchOptions *so, const PxUnits *u) {
  (void)u;
  PxSizingOptions sz = {0};
  g_autoptr(GError) error = NULL;
  if (f->tokens && (!px_parse_count(f->tokens, &sz.tokens) || sz.tokens <= 0)) {
    fprintf(stderr, CMD ": --tokens '%s' is not a token count (e.g. 2T)\n", f->tokens);
    return 2;
  }
  if (f->days && (!px_parse_count(f->days, &sz.days) || sz.days <= 0)) {
    fprintf(stderr, CMD ": --days '%s' is not a positive number of days\n", f->days);
    return 2;
  }
  if ((f->tokens != NULL) != (f->days != NULL)) {
    fprintf(stderr, CMD ": sizing needs both --tokens and --days\n");
    return 2;
  }
  if (!parse_range(f->nodes_range ? f->nodes_range : "1-1024", &sz.min_nodes, &sz.max_nodes)) {
    fprintf(stderr, CMD ": --nodes-range '%s' is not N or N-M nodes\n", f->nodes_range);
    return 2;
  }
  /* 1e308 tokens gave days of 300 digits; --all-counts over 2^20 node
   * counts searched each in turn for hours */
  if (sz.tokens > 1e16) {
    fprintf(stderr, CMD ": --tokens %s is more than 1e16 tokens (the largest published training runs read tens of "
            "trillions)\n", f->tokens);
    return 2;
  }
  if (sz.days > 36525) {
    fprintf(stderr, CMD ": --days %s is more than a century (36525 days)\n", f->days);
    return 2;
  }
  if (f->all_counts && sz.max_nodes - sz.min_nodes >= 1024) {
    fprintf(stderr, CMD ": --all-counts over %d-%d nodes is %d searches, more than 1024: narrow --nodes-range\n",
            sz.min_nodes, sz.max_nodes, sz.max_nodes - sz.min_nodes + 1);
    return 2;
  }
  sz.all_counts = f->all_counts;
  g_autoptr(PxSizingResult) r = px_search_size(model, cluster, plan, so, &sz, &error);
  progress_end(so->progress != NULL);
  if (!r) return px_cli_fail(CMD, error);
  if (f->json) {
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "rows");
    json_builder_begin_array(b);
    for (guint i = 0; i < r->rows->len; i++) {
      const PxSizingRow *row = &g_array_index(r->rows, PxSizingRow, i);
      json_builder_begin_object(b);
      px_json_member_int(b, "nodes", row->nodes);
      px_json_member_int(b, "gpus", row->gpus);
      px_json_member_bool(b, "fits", row->found);
      if (row->found) {
        json_builder_set_member_name(b, "best");
        candidate_json(b, &row->best);
        px_json_member_double(b, "days", row->days);
        px_json_member_double(b, "gpu_hours", row->gpu_hours);
      }
      px_json_member_bool(b, "meets", row->meets);
      json_builder_end_object(b);
    }
    json_builder_end_array(b);
    px_json_member_int(b, "answer_gpus", r->answer >= 0 ? g_array_index(r->rows, PxSizingRow, r->answer).gpus : 0);
    json_builder_end_object(b);
    px_report_print_json(b);
  } else {
    g_autofree char *tk = px_format_count(sz.tokens);
    /* --objective gpus without --tokens: the fewest GPUs that fit; no days nor GPU-hours to print
     * (they were "0 tokens in any time", "finish in 0.0 days, 0 GPU-hours") */
    const gboolean timed = sz.tokens > 0;
    g_autofree char *goal = timed ? g_strdup_printf("%s tokens in %s%s", tk, sz.days > 0 ? f->days : "any time",
                                                    sz.days > 0 ? " days" : "")
                                  : g_strdup("the fewest GPUs that fit (no --tokens: no training time)");
    printf("Parallax sizing: %s on %s nodes (%d × %s), %s, global batch %d × %d tokens\n\n", model->desc.name,
           cluster->name, cluster->gpus_per_node, cluster->gpu, goal, plan->gbs, plan->seq);
    int width = 16;
    for (guint i = 0; i < r->rows->len; i++) {
      g_autofree char *ls = px_layout_format(&g_array_index(r->rows, PxSizingRow, i).best.layout);
      width = MAX(width, (int)g_utf8_strlen(ls, -1));
    }
    printf("%6s %6s ", "nodes", "GPUs");
    print_padded("best layout", width);
    printf(" %10s %9s %12s %s\n", "step ms", "days", "GPU-hours", "in time");
    for (guint i = 0; i < r->rows->len; i++) {
      const PxSizingRow *row = &g_array_index(r->rows, PxSizingRow, i);
      printf("%6d %6d ", row->nodes, row->gpus);
      if (!row->found) {
        printf("(no layout fits)\n");
        continue;
      }
      g_autofree char *ls = px_layout_format(&row->best.layout);
      print_padded(ls, width);
      if (timed)
        printf(" %10.1f %9.1f %12.0f %s\n", 1e3 * row->best.step_time, row->days, row->gpu_hours,
               row->meets ? "yes" : "no");
      else
        printf(" %10.1f %9s %12s %s\n", 1e3 * row->best.step_time, "-", "-", row->meets ? "yes" : "no");
    }
    if (r->answer >= 0) {
      const PxSizingRow *a = &g_array_index(r->rows, PxSizingRow, r->answer);
      g_autofree char *ls = px_layout_format(&a->best.layout);
      if (timed)
        printf("\nanswer: %d GPUs (%d node%s) in %s finish in %.1f days, %.0f GPU-hours (%.1f %% MFU)\n", a->gpus,
               a->nodes, a->nodes == 1 ? "" : "s", ls, a->days, a->gpu_hours, 100 * a->best.mfu);
      else
        printf("\nanswer: %d GPUs (%d node%s) in %s, %.1f ms per step (%.1f %% MFU)\n", a->gpus, a->nodes,
               a->nodes == 1 ? "" : "s", ls, 1e3 * a->best.step_time, 100 * a->best.mfu);
    }
  }
  if (r->cancelled) return 130;
  if (r->answer < 0) {
    fprintf(stderr, CMD ": no GPU count of %d-%d nodes trains the tokens in time\n", sz.min_nodes, sz.max_nodes);
    return 1;
  }
  return 0;
}

/* The count flags, each a whole number ≥ 1 when given (0 when not: the
 * search's default); --threads at most 1024 (--threads 100000 started as
 * many threads and ran twenty times slower); --top at most 1000 and
 * --confirm at most 10000, each candidate a whole simulation (--confirm
 * 1000000 on 1024 GPUs simulated all 133261 fitting layouts, for many
 * minutes). */
static gboolean search_counts(SearchFlags *f, GError **error) {
  const struct { const char *flag, *value; int *out; } counts[] = {
    {"--top", f->top_s, &f->top}, {"--threads", f->threads_s, &f->threads}, {"--confirm", f->confirm_s, &f->confirm},
    {"--max-mbs", f->max_mbs_s, &f->max_mbs}, {"--max-vpp", f->max_vpp_s, &f->max_vpp}};
  for (gsize i = 0; i < G_N_ELEMENTS(counts); i++)
    if (counts[i].value && !px_parse_int_flag(counts[i].flag, counts[i].value, 1, counts[i].out, error)) return FALSE;
  const struct { const char *flag; int value, max; } bounded[] = {
    {"--threads", f->threads, 1024}, {"--top", f->top, 1000}, {"--confirm", f->confirm, 10000}};
  for (gsize i = 0; i < G_N_ELEMENTS(bounded); i++)
    if (bounded[i].value > bounded[i].max) {
      g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "%s %d is more than %d", bounded[i].flag,
                  bounded[i].value, bounded[i].max);
      return FALSE;
    }
  return TRUE;
}

int px_cmd_search(int argc, char **argv) {
  PxPlanOptions o;
  g_autofree char *tp_overlap = NULL; /* --tp-overlap, for the layouts (take_fixes) */
  SearchFlags f = {.top = 5};
  GOptionEntry entries[] = {
    {"objective", 0, 0, G_OPTION_ARG_STRING, &f.objective, "time (default), memory, or gpus (fewest GPUs over --nodes-range)", "O"},
    {"max-memory", 0, 0, G_OPTION_ARG_STRING, &f.max_memory, "Memory a layout may use per GPU (bytes, e.g. 80GB or 75GiB; default: the GPU's)", "BYTES"},
    {"margin", 0, 0, G_OPTION_ARG_STRING, &f.margin, "Headroom kept free beyond the plan's workspace (bytes, e.g. 2GiB; default 0)", "BYTES"},
    {"fix", 0, 0, G_OPTION_ARG_STRING_ARRAY, &f.fix, "Hold a knob: tp, cp, pp, dp, zero, mbs, vpp, ckpt, schedule, sp, offload, order, ep, etp (repeatable)", "K=V"},
    {"top", 0, 0, G_OPTION_ARG_STRING, &f.top_s, "Layouts to list (default 5)", "K"},
    {"confirm", 0, 0, G_OPTION_ARG_STRING, &f.confirm_s, "Candidates to simulate (default max(4·K, 16))", "N"},
    {"threads", 0, 0, G_OPTION_ARG_STRING, &f.threads_s, "Worker threads (default: every core)", "N"},
    {"max-mbs", 0, 0, G_OPTION_ARG_STRING, &f.max_mbs_s, "Largest micro-batch tried (powers of two, default 8)", "N"},
    {"max-vpp", 0, 0, G_OPTION_ARG_STRING, &f.max_vpp_s, "Most chunks per rank tried for interleaving (default 8)", "N"},
    {"tp-across-nodes", 0, 0, G_OPTION_ARG_NONE, &f.tp_across, "Allow tp larger than a node", NULL},
    {"json", 0, 0, G_OPTION_ARG_NONE, &f.json, "Print one JSON object", NULL},
    {"pareto", 0, 0, G_OPTION_ARG_FILENAME, &f.pareto, "Plot memory vs step time of every fitting layout (gnuplot)", "FILE.png"},
    {"emit", 0, 0, G_OPTION_ARG_FILENAME, &f.emit, "Write the winner's launch files: megatron, deepspeed, torchtitan, ini (or FILE.ini)", "FORMAT"},
    {"out", 0, 0, G_OPTION_ARG_FILENAME, &f.out, "Directory for --emit (default .)", "DIR"},
    {"tokens", 0, 0, G_OPTION_ARG_STRING, &f.tokens, "Sizing: training tokens (e.g. 2T)", "T"},
    {"days", 0, 0, G_OPTION_ARG_STRING, &f.days, "Sizing: days to finish in", "D"},
    {"nodes-range", 0, 0, G_OPTION_ARG_STRING, &f.nodes_range, "Sizing: node counts tried (default 1-1024)", "N-M"},
    {"all-counts", 0, 0, G_OPTION_ARG_NONE, &f.all_counts, "Sizing: every node count, not only powers of two", NULL},
    {NULL}};
  if (!px_parse_command_line(CMD, "search the layouts of a model on a cluster", entries, &o, &argc, &argv)) return 2;
  g_autoptr(GError) error = NULL;
  g_autoptr(PxModel) model = NULL;
  g_autoptr(PxCluster) cluster = NULL;
  PxPlan plan = {0};
  PxUnits u;
  PxSearchOptions so;
  px_search_options_init(&so);
  int rc = 0;
  double v;
  int gbs = -1;
  g_autofree char *gbs_tokens = NULL;
  gboolean sizing = f.tokens || f.days || (f.objective && !g_ascii_strcasecmp(f.objective, "gpus"));
  if (!px_units_parse(o.units, &u)) {
    fprintf(stderr, CMD ": --units '%s' is not GB or GiB\n", o.units);
    rc = 2;
  } else if (f.objective && !px_search_objective_parse(f.objective, &so.objective)) {
    fprintf(stderr, CMD ": --objective '%s' is not time, memory or gpus\n", f.objective);
    rc = 2;
  } else if (f.max_memory && (!px_parse_bytes(f.max_memory, &v) || v <= 0)) {
    fprintf(stderr, CMD ": --max-memory '%s' is not a size (e.g. 70GB)\n", f.max_memory);
    rc = 2;
  } else if (f.emit && !px_emit_check(f.emit, f.out, &error)) {
    rc = px_cli_fail(CMD, error);
  } else if (!search_counts(&f, &error)) {
    rc = px_cli_fail(CMD, error) + 1;
  } else if (sizing && (o.gpus > 0 || o.nodes > 0)) {
    /* sizing tries the node counts of --nodes-range: the size given was dropped without a word */
    fprintf(stderr, CMD ": %s %d gives the size; sizing (--tokens/--days, --objective gpus) chooses it: give "
            "--nodes-range N-M instead\n", o.gpus > 0 ? "--gpus" : "--nodes", o.gpus > 0 ? o.gpus : o.nodes);
    rc = 2;
  } else if (!take_fixes(&f, &o, &so.fix, &tp_overlap, &error) || !(gbs = o.gbs, gbs_tokens = g_steal_pointer(&o.gbs_tokens), o.gbs = -1, TRUE) ||
             !px_plan_options_resolve(&o, TRUE, &model, &cluster, &plan, &error) ||
             !search_batch(gbs, gbs_tokens, o.batch_given, &plan, &error)) {
    rc = px_cli_fail(CMD, error);
  } else {
    if (f.max_memory) px_parse_bytes(f.max_memory, &so.max_memory);
    if (f.margin && !px_parse_bytes(f.margin, &so.margin)) {
      fprintf(stderr, CMD ": --margin '%s' is not a size (e.g. 2GB)\n", f.margin);
      rc = 2;
    }
    so.top = f.top;
    so.confirm = f.confirm;
    so.threads = f.threads;
    if (f.max_mbs) so.max_mbs = f.max_mbs;
    if (f.max_vpp) so.max_vpp = f.max_vpp;
    so.tp_across_nodes = f.tp_across;
    so.keep_points = f.pareto != NULL;
    so.cancel = &interrupted;
    gboolean tty = isatty(STDERR_FILENO);
    if (tty) so.progress = progress_bar;
    if (rc != 0) {
      /* --margin was said */
    } else if (!sizing && (f.nodes_range || f.all_counts)) {
      fprintf(stderr, CMD ": %s sizes a cluster: it needs --tokens and --days (or --objective gpus)\n",
              f.nodes_range ? "--nodes-range" : "--all-counts");
      rc = 2;
    } else if (f.pareto && px_output_path_check(f.pareto) != PX_OUT_OK &&
               px_output_path_check(f.pareto) != PX_OUT_NO_DIR) {
      /* after the whole search: '' was "could not rename ./pareto.png to " (a missing directory is made) */
      g_autofree char *why = px_output_flag_why("--pareto", f.pareto);
      fprintf(stderr, CMD ": %s\n", why);
      rc = 2;
    } else if (f.out && !f.emit) {
      fprintf(stderr, CMD ": --out %s is the directory of --emit's files: give --emit\n", f.out);
      rc = 2;
    } else if (so.max_memory > cluster->gpu_memory) {
      /* it was cut to the GPU's memory without a word */
      fprintf(stderr, CMD ": --max-memory %s is more than the %s's %.1f GB\n", f.max_memory, cluster->gpu,
              cluster->gpu_memory / 1e9);
      rc = 2;
    } else if (so.margin >= (so.max_memory > 0 ? so.max_memory : cluster->gpu_memory)) {
      fprintf(stderr, CMD ": --margin %s leaves no memory of the %.1f GB a layout may use\n", f.margin,
              (so.max_memory > 0 ? so.max_memory : cluster->gpu_memory) / 1e9);
      rc = 2;
    } else if (sizing && f.emit) {
      fprintf(stderr, CMD ": --emit writes a search's winner; sizing (--tokens/--days) has none\n");
      rc = 2;
    } else if (tp_overlap && !px_tp_overlap_parse(tp_overlap, &plan.tp_overlap)) {
      fprintf(stderr, CMD ": --tp-overlap '%s' is not one of " PX_TP_OVERLAP_NAMES "\n", tp_overlap);
      rc = 2;
    } else if (!px_plan_tp_overlap_stack_ok(&plan, &error)) {
      /* the layouts' own rule (px_plan_validate), said once rather than refusing every tp > 1 layout */
      fprintf(stderr, CMD ": %s\n", error->message);
      rc = 2;
    } else if (sizing && so.objective == PX_OBJECTIVE_MEMORY) {
      fprintf(stderr, CMD ": sizing (--tokens/--days) minimises GPUs; --objective memory does not apply\n");
      rc = 2;
    }
    if (rc == 0) {
      struct sigaction sa = {0}, old;
      sa.sa_handler = on_sigint;
      sigemptyset(&sa.sa_mask);
      sigaction(SIGINT, &sa, &old);
      if (sizing) {
        so.objective = PX_OBJECTIVE_TIME;
        rc = run_sizing(&f, model, cluster, &plan, &so, &u);
      } else {
        rc = run_search(&f, &o, model, cluster, &plan, &so, &u, tty);
      }
      sigaction(SIGINT, &old, NULL);
    }
  }
  px_plan_clear(&plan);
  px_plan_options_clear(&o);
  g_strfreev(f.fix);
  char **strs[] = {&f.objective, &f.max_memory, &f.margin, &f.pareto, &f.emit, &f.out, &f.tokens, &f.days, &f.nodes_range,
                   &f.top_s, &f.threads_s, &f.confirm_s, &f.max_mbs_s, &f.max_vpp_s};
  for (gsize i = 0; i < G_N_ELEMENTS(strs); i++) g_free(*strs[i]);
  return rc;
}
