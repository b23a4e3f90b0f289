/* plot.c — data files + gnuplot scripts (see plot.h). */
#include "plot.h"
#include <errno.h>
#include <string.h>
#include "config.h"

G_DEFINE_QUARK(px-plot-error-quark, px_plot_error)

#define GB 1e9
#define MAX_ROWS 64            /* more simulated ranks: one row per stage */
#define TIMELINE_WIDTH 1400    /* pixels; the plot area is about WIDTH - PLOT_MARGIN */
#define PLOT_MARGIN 170
#define LABEL_CHAR_PX 7.0      /* DejaVu Sans 9 pt, one digit */

double px_plot_time_unit(double seconds, gboolean ideal, const char **name) {
  static const struct { double limit, factor; const char *name; } units[] = {
    {1e-3, 1e6, "time (us)"}, {1.0, 1e3, "time (ms)"}, {G_MAXDOUBLE, 1.0, "time (s)"}};
  if (ideal) {
    *name = "time (units of T_F = 1)";
    return 1.0;
  }
  for (gsize i = 0; i < G_N_ELEMENTS(units); i++)
    if (seconds < units[i].limit) {
      *name = units[i].name;
      return units[i].factor;
    }
  *name = "time (s)";
  return 1.0;
}

/* A gnuplot single-quoted string: ' doubles. */
static void append_gp_string(GString *s, const char *var, const char *value) {
  g_string_append_printf(s, "%s='", var);
  for (const char *p = value; *p; p++) {
    if (*p == '\'') g_string_append_c(s, '\'');
    g_string_append_c(s, *p);
  }
  g_string_append(s, "'; ");
}

static gboolean write_data(const char *dir, const char *name, const GString *data, char **path_out,
                           GError **error) {
  if (!px_output_dir_make(dir, PX_PLOT_ERROR, PX_PLOT_ERROR_IO, error)) return FALSE;
  g_autofree char *path = g_build_filename(dir, name, NULL);
  g_autoptr(GError) err = NULL;
  if (!g_file_set_contents(path, data->str, (gssize)data->len, &err)) {
    g_set_error(error, PX_PLOT_ERROR, PX_PLOT_ERROR_IO, "%s", err->message);
    return FALSE;
  }
  *path_out = g_steal_pointer(&path);
  return TRUE;
}

/* The first line of gnuplot's complaint, for a one-line error. */
static char *first_error_line(const char *out) {
  if (!out || !*out) return g_strdup("no message");
  g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
  for (int i = 0; lines[i]; i++) {
    g_strstrip(lines[i]);
    if (strstr(lines[i], "rror") || strstr(lines[i], "line ")) return g_strdup(lines[i]);
  }
  for (int i = 0; lines[i]; i++)
    if (*lines[i]) return g_strdup(lines[i]);
  return g_strdup("no message");
}

gboolean px_plot_run(const char *script, const char *dir, const char *base, const char *datafile,
                     const char *vars, GError **error) {
  g_autofree char *gnuplot = g_find_program_in_path("gnuplot");
  if (!gnuplot) {
    g_set_error(error, PX_PLOT_ERROR, PX_PLOT_ERROR_NO_GNUPLOT,
                "gnuplot not found: install the Debian package gnuplot-nox");
    return FALSE;
  }
  g_autofree char *scriptdir = g_build_filename(px_data_dir(), "plots", NULL);
  g_autofree char *file = g_strconcat(script, ".gp", NULL);
  g_autofree char *path = g_build_filename(scriptdir, file, NULL);
  if (!g_file_test(path, G_FILE_TEST_IS_REGULAR)) {
    g_set_error(error, PX_PLOT_ERROR, PX_PLOT_ERROR_SCRIPT,
                "plot script %s not found (set PARALLAX_DATA_DIR to the directory holding plots/)", path);
    return FALSE;
  }
  if (!px_output_dir_make(dir, PX_PLOT_ERROR, PX_PLOT_ERROR_IO, error)) return FALSE;
  static const char *formats[] = {"png", "svg"};
  for (gsize f = 0; f < G_N_ELEMENTS(formats); f++) {
    g_autofree char *name = g_strconcat(base, ".", formats[f], NULL);
    g_autofree char *outfile = g_build_filename(dir, name, NULL);
    g_autoptr(GString) expr = g_string_new(NULL);
    append_gp_string(expr, "scriptdir", scriptdir);
    append_gp_string(expr, "datafile", datafile);
    append_gp_string(expr, "outfile", outfile);
    append_gp_string(expr, "fmt", formats[f]);
    if (vars) g_string_append(expr, vars);
    g_autoptr(GSubprocess) proc = g_subprocess_new(
        G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_MERGE, error, gnuplot, "-e", expr->str,
        path, NULL);
    if (!proc) return FALSE;
    g_autofree char *out = NULL;
    if (!g_subprocess_communicate_utf8(proc, NULL, NULL, &out, NULL, error)) return FALSE;
    if (!g_subprocess_get_successful(proc)) {
      g_autofree char *line = first_error_line(out);
      g_set_error(error, PX_PLOT_ERROR, PX_PLOT_ERROR_FAILED, "gnuplot %s.gp failed: %s", script, line);
      return FALSE;
    }
  }
  return TRUE;
}

/* ---- rows of a timeline ---- */

typedef struct {
  GArray *ranks;     /* int, the rows in order */
  GHashTable *row;   /* rank -> row + 1 */
  GHashTable *stage; /* rank -> stage + 1 */
  gboolean by_rank;  /* more than one rank per stage shown */
} Rows;

static void rows_clear(Rows *r) {
  if (r->ranks) g_array_unref(r->ranks);
  if (r->row) g_hash_table_unref(r->row);
  if (r->stage) g_hash_table_unref(r->stage);
}

static int cmp_int(gconstpointer a, gconstpointer b) { return *(const int *)a - *(const int *)b; }

/* Every rank with events, or with too many the first rank of each stage. */
static void rows_init(Rows *r, const PxTimeline *tl) {
  r->stage = g_hash_table_new(g_direct_hash, g_direct_equal);
  r->row = g_hash_table_new(g_direct_hash, g_direct_equal);
  r->ranks = g_array_new(FALSE, FALSE, sizeof(int));
  g_autoptr(GHashTable) first_of_stage = g_hash_table_new(g_direct_hash, g_direct_equal);
  for (guint i = 0; i < tl->events->len; i++) {
    const PxEvent *ev = &g_array_index(tl->events, PxEvent, i);
    g_hash_table_insert(r->stage, GINT_TO_POINTER(ev->rank), GINT_TO_POINTER(ev->stage + 1));
    gpointer cur = g_hash_table_lookup(first_of_stage, GINT_TO_POINTER(ev->stage));
    if (!cur || GPOINTER_TO_INT(cur) - 1 > ev->rank)
      g_hash_table_insert(first_of_stage, GINT_TO_POINTER(ev->stage), GINT_TO_POINTER(ev->rank + 1));
  }
  int n_stages = (int)g_hash_table_size(first_of_stage);
  r->by_rank = g_hash_table_size(r->stage) > (guint)n_stages && g_hash_table_size(r->stage) <= MAX_ROWS;
  GHashTable *src = r->by_rank ? r->stage : first_of_stage;
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, src);
  while (g_hash_table_iter_next(&it, &k, &v)) {
    int rank = r->by_rank ? GPOINTER_TO_INT(k) : GPOINTER_TO_INT(v) - 1;
    g_array_append_val(r->ranks, rank);
  }
  g_array_sort(r->ranks, cmp_int);
  for (guint i = 0; i < r->ranks->len; i++)
    g_hash_table_insert(r->row, GINT_TO_POINTER(g_array_index(r->ranks, int, i)), GINT_TO_POINTER(i + 1));
}

static char *row_name(const Rows *r, guint i, char space) {
  int rank = g_array_index(r->ranks, int, i);
  int stage = GPOINTER_TO_INT(g_hash_table_lookup(r->stage, GINT_TO_POINTER(rank))) - 1;
  if (r->by_rank) return g_strdup_printf("rank%c%d%c(stage%c%d)", space, rank, space, space, stage);
  return g_strdup_printf("stage%c%d", space, stage);
}

/* Rows and time axis shared by the timeline and memory plots. */
typedef struct {
  Rows rows;
  double tend;        /* s */
  double scale;       /* axis units per second */
  const char *xunit;
} Frame;

/* FALSE (and PX_PLOT_ERROR_EMPTY) when there is nothing to draw. */
static gboolean frame_init(Frame *f, const PxTimeline *tl, gboolean need_memory, gboolean ideal,
                           GError **error) {
  if (!tl || tl->events->len == 0 || (need_memory && tl->memory->len == 0)) {
    g_set_error(error, PX_PLOT_ERROR, PX_PLOT_ERROR_EMPTY, "the timeline has no %s to plot",
                need_memory ? "memory samples" : "events");
    return FALSE;
  }
  rows_init(&f->rows, tl);
  f->tend = px_timeline_end(tl);
  f->scale = px_plot_time_unit(f->tend, ideal, &f->xunit);
  return TRUE;
}

/* ---- timeline ---- */

typedef struct {
  const char *name;   /* legend word */
  guint32 rgb;
} KindStyle;

static const KindStyle styles[] = {
  {"forward", 0x4c72b0},         {"backward", 0xdd8452},  {"backward-input", 0xc44e52},
  {"backward-weight", 0x55a868}, {"load", 0x9e9e9e},      {"optimizer", 0x8172b3},
  {"p2p-send", 0xccb974},        {"DP-reduce", 0x937860}, {"tied-reduce", 0xda8bc3},
  {"ZeRO-3-gather", 0x64b5cd},
};

/* Colour class (index in styles) of an event; -1 for events not drawn (receives). */
static int kind_class(const PxEvent *ev) {
  if (ev->stream == PX_STREAM_RECV) return -1;
  switch (ev->kind) {
  case PX_OP_FORWARD: return 0;
  case PX_OP_BACKWARD: return 1;
  case PX_OP_BACKWARD_INPUT: return 2;
  case PX_OP_BACKWARD_WEIGHT: return 3;
  case PX_OP_LOAD: return 4;
  case PX_OP_OPTIMIZER_STEP: return 5;
  case PX_OP_SEND_ACT:
  case PX_OP_SEND_GRAD: return 6;
  case PX_OP_REDUCE_GRADS: return 7;
  case PX_OP_REDUCE_TIED: return 8;
  case PX_OP_GATHER_PARAMS: return 9;
  default: return -1;
  }
}

/* Later model chunks: the same hue mixed 45 % with white. */
static guint32 lighten(guint32 rgb, int chunk) {
  if (chunk <= 0) return rgb;
  guint32 out = 0;
  for (int sh = 0; sh <= 16; sh += 8) {
    double c = (rgb >> sh) & 0xff;
    out |= (guint32)(c + (255 - c) * 0.45) << sh;
  }
  return out;
}

/* One Gantt chart of n timelines on one time axis: rank by rank, each
 * timeline's row of that rank under the previous one's, named "<labels[i]>
 * rank R (stage S)" when n > 1. The data file starts with the rows' names
 * ("# row 0: predicted rank 0 (stage 0)"). */
static gboolean plot_gantt(const PxTimeline *const *tls, const char *const *labels, int n, const char *dir,
                           const char *base, const char *title, gboolean ideal, GError **error) {
  for (int i = 0; i < n; i++)
    if (!tls[i] || tls[i]->events->len == 0) {
      g_set_error(error, PX_PLOT_ERROR, PX_PLOT_ERROR_EMPTY, "the timeline has no events to plot");
      return FALSE;
    }
  g_autofree Rows *rows = g_new0(Rows, n);
  g_autofree GHashTable **row_of = g_new0(GHashTable *, n); /* per timeline: rank -> row + 1 */
  g_autoptr(GArray) ranks = g_array_new(FALSE, FALSE, sizeof(int));
  g_autoptr(GHashTable) seen = g_hash_table_new(g_direct_hash, g_direct_equal);
  double tend = 0;
  for (int i = 0; i < n; i++) {
    rows_init(&rows[i], tls[i]);
    row_of[i] = g_hash_table_new(g_direct_hash, g_direct_equal);
    tend = MAX(tend, px_timeline_end(tls[i]));
    for (guint j = 0; j < rows[i].ranks->len; j++) {
      int rank = g_array_index(rows[i].ranks, int, j);
      if (g_hash_table_add(seen, GINT_TO_POINTER(rank + 1))) g_array_append_val(ranks, rank);
    }
  }
  g_array_sort(ranks, cmp_int);
  const char *xunit;
  double scale = px_plot_time_unit(tend, ideal, &xunit);
  double px_per_unit = (TIMELINE_WIDTH - PLOT_MARGIN) / (tend * scale);
  g_autoptr(GString) header = g_string_new(NULL), tics = g_string_new(NULL);
  int nrows = 0;
  for (guint j = 0; j < ranks->len; j++) {
    int rank = g_array_index(ranks, int, j);
    for (int i = 0; i < n; i++) {
      gpointer idx = g_hash_table_lookup(rows[i].row, GINT_TO_POINTER(rank));
      if (!idx) continue;
      int stage = GPOINTER_TO_INT(g_hash_table_lookup(rows[i].stage, GINT_TO_POINTER(rank))) - 1;
      g_autofree char *name = n > 1 ? g_strdup_printf("%s rank %d (stage %d)", labels[i], rank, stage)
                                    : row_name(&rows[i], GPOINTER_TO_UINT(idx) - 1, ' ');
      g_hash_table_insert(row_of[i], GINT_TO_POINTER(rank), GINT_TO_POINTER(nrows + 1));
      g_string_append_printf(header, "# row %d: %s\n", nrows, name);
      g_string_append_printf(tics, "%s\"%s\" %d", nrows ? ", " : "", name, nrows);
      nrows++;
    }
  }
  gboolean used[G_N_ELEMENTS(styles)] = {0}, chunks = FALSE;
  g_autoptr(GString) boxes = g_string_new(header->str);
  g_string_append(boxes, "# x_center row half_width half_height rgb\n");
  g_autoptr(GString) labels_s = g_string_new("# x row label\n");
  g_autoptr(GString) pairs = g_string_new("# overlapped F&B pairs: x_center row half_width half_height\n");
  int n_pairs = 0;
  for (int t = 0; t < n; t++) {
    const PxTimeline *tl = tls[t];
    for (guint i = 0; i < tl->pairs->len; i++) {
      const PxPair *pr = &g_array_index(tl->pairs, PxPair, i);
      gpointer row1 = g_hash_table_lookup(row_of[t], GINT_TO_POINTER(pr->rank));
      if (!row1) continue;
      double x0 = pr->start * scale, x1 = pr->end * scale;
      g_string_append_printf(pairs, "%.9g %d %.9g 0.38\n", (x0 + x1) / 2, GPOINTER_TO_INT(row1) - 1, (x1 - x0) / 2);
      n_pairs++;
    }
    for (guint i = 0; i < tl->events->len; i++) {
      const PxEvent *ev = &g_array_index(tl->events, PxEvent, i);
      int cls = kind_class(ev);
      gpointer row1 = g_hash_table_lookup(row_of[t], GINT_TO_POINTER(ev->rank));
      if (cls < 0 || !row1 || ev->end <= ev->start) continue;
      const KindStyle *st = &styles[cls];
      used[cls] = TRUE;
      chunks |= ev->chunk > 0;
      double y = GPOINTER_TO_INT(row1) - 1;
      double x0 = ev->start * scale, x1 = ev->end * scale;
      gboolean compute = ev->stream == PX_STREAM_COMPUTE;
      /* compute: the row's box; communication: a strip along its lower edge */
      g_string_append_printf(boxes, "%.9g %.9g %.9g %.3f %u\n", (x0 + x1) / 2, compute ? y : y + 0.40,
                             (x1 - x0) / 2, compute ? 0.32 : 0.06, lighten(st->rgb, ev->chunk));
      if (compute && ev->mb >= 0) {
        g_autofree char *text = g_strdup_printf("%d", ev->mb);
        if ((x1 - x0) * px_per_unit >= LABEL_CHAR_PX * strlen(text) + 4)
          g_string_append_printf(labels_s, "%.9g %.9g \"%s\"\n", (x0 + x1) / 2, y, text);
      }
    }
  }
  g_string_append(boxes, "\n\n");
  g_string_append(boxes, labels_s->str);
  if (!n_pairs) g_string_append(pairs, "NaN NaN NaN NaN\n");
  g_string_append(boxes, "\n\n");
  g_string_append(boxes, pairs->str);
  g_autofree char *datafile = NULL, *dat = g_strdup_printf("%s.dat", base);
  gboolean ok = write_data(dir, dat, boxes, &datafile, error);
  if (ok) {
    g_autoptr(GString) vars = g_string_new(NULL);
    g_autoptr(GString) names = g_string_new(NULL), colors = g_string_new(NULL);
    for (gsize c = 0; c < G_N_ELEMENTS(styles); c++) {
      if (!used[c]) continue;
      g_string_append_printf(names, "%s%s", names->len ? " " : "", styles[c].name);
      g_string_append_printf(colors, "%s#%06x", colors->len ? " " : "", styles[c].rgb);
    }
    g_autofree char *full_title = g_strdup_printf("%s%s", title ? title : "Pipeline timeline",
                                                  chunks ? " (lighter: model chunk 1+)" : "");
    append_gp_string(vars, "rowtics", tics->str);
    append_gp_string(vars, "names", names->str);
    append_gp_string(vars, "colors", colors->str);
    append_gp_string(vars, "xunit", xunit);
    append_gp_string(vars, "ptitle", full_title);
    g_string_append_printf(vars, "npairs=%d; ", n_pairs);
    g_string_append_printf(vars, "nrows=%d; tmax=%.9g; width=%d; height=%d; ", nrows, tend * scale, TIMELINE_WIDTH,
                           170 + 55 * nrows);
    ok = px_plot_run("timeline", dir, base, datafile, vars->str, error);
  }
  for (int i = 0; i < n; i++) {
    rows_clear(&rows[i]);
    g_hash_table_unref(row_of[i]);
  }
  return ok;
}

gboolean px_plot_timeline(const PxTimeline *tl, const char *dir, const char *title, gboolean ideal,
                          GError **error) {
  const PxTimeline *one[1] = {tl};
  return plot_gantt(one, NULL, 1, dir, "timeline", title, ideal, error);
}

gboolean px_plot_timelines(const PxTimeline *const *tls, const char *const *labels, int n, const char *dir,
                           const char *base, const char *title, GError **error) {
  return plot_gantt(tls, labels, n, dir, base, title, FALSE, error);
}

/* ---- memory ---- */

gboolean px_plot_memory(const PxTimeline *tl, const char *dir, const char *title, double capacity,
                        gboolean ideal, GError **error) {
  Frame f = {0};
  if (!frame_init(&f, tl, TRUE, ideal, error)) return FALSE;
  g_autoptr(GString) data = g_string_new(NULL);
  /* decimal byte unit by the peak: 0.0018 GB reads as 1.8 MB */
  double peak = capacity;
  for (guint i = 0; i < tl->memory->len; i++) peak = MAX(peak, g_array_index(tl->memory, PxMemSample, i).bytes);
  static const struct { double scale; const char *name; } units[] = {{1e9, "GB"}, {1e6, "MB"}, {1e3, "kB"}, {1, "B"}};
  gsize u = 0;
  while (u + 1 < G_N_ELEMENTS(units) && peak < units[u].scale) u++;
  const double unit = units[u].scale;
  g_autoptr(GString) names = g_string_new(NULL);
  for (guint r = 0; r < f.rows.ranks->len; r++) {
    int rank = g_array_index(f.rows.ranks, int, r);
    g_autofree char *name = row_name(&f.rows, r, '-');
    g_string_append_printf(names, "%s%s", r ? " " : "", name);
    g_string_append_printf(data, "# %s: t %s\n", name, units[u].name);
    double last = 0;
    gboolean any = FALSE;
    for (guint i = 0; i < tl->memory->len; i++) {
      const PxMemSample *m = &g_array_index(tl->memory, PxMemSample, i);
      if (m->rank != rank) continue;
      /* several changes at one instant (a backward frees, the next forward
       * allocates): draw only where they settle */
      gboolean superseded = FALSE;
      for (guint j = i + 1; j < tl->memory->len && !superseded; j++) {
        const PxMemSample *n = &g_array_index(tl->memory, PxMemSample, j);
        if (n->rank != rank) continue;
        superseded = n->t <= m->t;
        break;
      }
      if (superseded) continue;
      g_string_append_printf(data, "%.9g %.9g\n", m->t * f.scale, m->bytes / unit);
      last = m->bytes;
      any = TRUE;
    }
    if (any) g_string_append_printf(data, "%.9g %.9g\n", f.tend * f.scale, last / unit);
    else g_string_append(data, "0 NaN\n");
    g_string_append(data, "\n\n");
  }
  g_autofree char *datafile = NULL;
  gboolean ok = write_data(dir, "memory.dat", data, &datafile, error);
  if (ok) {
    g_autoptr(GString) vars = g_string_new(NULL);
    append_gp_string(vars, "names", names->str);
    append_gp_string(vars, "xunit", f.xunit);
    append_gp_string(vars, "ptitle", title ? title : "Memory over the step");
    append_gp_string(vars, "yunit", units[u].name);
    g_string_append_printf(vars, "capacity=%.9g; tmax=%.9g; ", capacity / unit, f.tend * f.scale);
    ok = px_plot_run("memory", dir, "memory", datafile, vars->str, error);
  }
  rows_clear(&f.rows);
  return ok;
}

/* ---- bubble ---- */

gboolean px_plot_bubble(const PxBubbleSeries *series, int n_series, const char *dir, const char *title,
                        GError **error) {
  if (n_series <= 0) {
    g_set_error(error, PX_PLOT_ERROR, PX_PLOT_ERROR_EMPTY, "no schedules to plot");
    return FALSE;
  }
  g_autoptr(GString) pts = g_string_new(NULL), curve = g_string_new(NULL), names = g_string_new(NULL);
  for (int s = 0; s < n_series; s++) {
    const PxBubbleSeries *b = &series[s];
    g_string_append_printf(names, "%s%s", s ? " " : "", b->name);
    g_string_append_printf(pts, "# %s: m simulated_bubble\n", b->name);
    for (int i = 0; i < b->n; i++) g_string_append_printf(pts, "%g %.9g\n", b->m[i], b->simulated[i]);
    if (b->n == 0) g_string_append(pts, "1 NaN\n");
    g_string_append(pts, "\n\n");
    g_string_append_printf(curve, "# %s: m analytic_bubble\n", b->name);
    for (int i = 0; i < b->n_curve; i++) g_string_append_printf(curve, "%.9g %.9g\n", b->curve_m[i], b->curve[i]);
    if (b->n_curve == 0) g_string_append(curve, "1 NaN\n");
    g_string_append(curve, "\n\n");
  }
  g_autofree char *datafile = NULL, *curvefile = NULL;
  if (!write_data(dir, "bubble.dat", pts, &datafile, error) ||
      !write_data(dir, "bubble_curve.dat", curve, &curvefile, error))
    return FALSE;
  g_autoptr(GString) vars = g_string_new(NULL);
  append_gp_string(vars, "curvefile", curvefile);
  append_gp_string(vars, "names", names->str);
  append_gp_string(vars, "ptitle", title ? title : "Pipeline bubble");
  return px_plot_run("bubble", dir, "bubble", datafile, vars->str, error);
}

/* ---- Pareto ---- */

static int cmp_time(gconstpointer a, gconstpointer b, gpointer data) {
  const PxParetoPoint *pts = data;
  const PxParetoPoint *x = &pts[*(const int *)a], *y = &pts[*(const int *)b];
  if (x->step_time != y->step_time) return x->step_time < y->step_time ? -1 : 1;
  if (x->memory != y->memory) return x->memory < y->memory ? -1 : 1;
  return 0;
}

int px_pareto_front(const PxParetoPoint *pts, int n, int *front) {
  g_autofree int *idx = g_new(int, MAX(n, 1));
  int k = 0;
  for (int i = 0; i < n; i++)
    if (pts[i].fits) idx[k++] = i;
  g_qsort_with_data(idx, k, sizeof(int), cmp_time, (gpointer)pts);
  int nf = 0;
  double best = G_MAXDOUBLE;
  for (int i = 0; i < k; i++)
    if (pts[idx[i]].memory < best) {
      best = pts[idx[i]].memory;
      front[nf++] = idx[i];
    }
  return nf;
}

static void append_point(GString *s, const PxParetoPoint *p) {
  g_autofree char *label = g_strdup(p->label ? p->label : "");
  g_strdelimit(label, "\"\n", '\'');
  g_string_append_printf(s, "%.9g %.9g %d \"%s\"\n", p->step_time, p->memory / GB, p->fits ? 1 : 0, label);
}

gboolean px_plot_pareto(const PxParetoPoint *pts, int n, double capacity, const char *dir,
                        const char *title, GError **error) {
  if (n <= 0) {
    g_set_error(error, PX_PLOT_ERROR, PX_PLOT_ERROR_EMPTY, "no layouts to plot");
    return FALSE;
  }
  g_autofree int *front = g_new(int, n);
  int nf = px_pareto_front(pts, n, front);
  g_autoptr(GString) data = g_string_new("# step_s memory_GB fits label\n");
  for (int i = 0; i < n; i++) append_point(data, &pts[i]);
  g_string_append(data, "\n\n# Pareto front\n");
  for (int i = 0; i < nf; i++) append_point(data, &pts[front[i]]);
  if (nf == 0) g_string_append(data, "NaN NaN 0 \"\"\n");
  g_autofree char *datafile = NULL;
  if (!write_data(dir, "pareto.dat", data, &datafile, error)) return FALSE;
  g_autoptr(GString) vars = g_string_new(NULL);
  append_gp_string(vars, "ptitle", title ? title : "Layouts: memory versus step time");
  g_string_append_printf(vars, "capacity=%.9g; ", capacity / GB);
  return px_plot_run("pareto", dir, "pareto", datafile, vars->str, error);
}
