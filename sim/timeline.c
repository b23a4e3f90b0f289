/* timeline.c — events of one step and their writers (trace JSON, CSV, Gantt). */
#include "timeline.h"
#include "config.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

G_DEFINE_QUARK(px-timeline-error-quark, px_timeline_error)

static const char *stream_names[PX_N_STREAMS] = {"compute", "send", "recv", "collective"};

const char *px_stream_name(PxStreamKind s) {
  return (unsigned)s < PX_N_STREAMS ? stream_names[s] : "?";
}

gboolean px_stream_parse(const char *s, PxStreamKind *out) {
  for (int i = 0; i < PX_N_STREAMS; i++)
    if (!g_ascii_strcasecmp(s, stream_names[i])) {
      *out = (PxStreamKind)i;
      return TRUE;
    }
  return FALSE;
}

PxTimeline *px_timeline_new(void) {
  PxTimeline *tl = g_new0(PxTimeline, 1);
  tl->events = g_array_new(FALSE, FALSE, sizeof(PxEvent));
  tl->memory = g_array_new(FALSE, FALSE, sizeof(PxMemSample));
  tl->pairs = g_array_new(FALSE, FALSE, sizeof(PxPair));
  return tl;
}

void px_timeline_free(PxTimeline *tl) {
  if (!tl) return;
  g_array_unref(tl->events);
  g_array_unref(tl->memory);
  g_array_unref(tl->pairs);
  g_free(tl);
}

void px_timeline_add(PxTimeline *tl, const PxEvent *ev) {
  g_array_append_vals(tl->events, ev, 1);
}

void px_timeline_add_pair(PxTimeline *tl, int rank, double start, double end) {
  PxPair p = {rank, start, end};
  g_array_append_val(tl->pairs, p);
}

void px_timeline_add_memory(PxTimeline *tl, int rank, double t, double bytes) {
  PxMemSample s = {rank, t, bytes};
  g_array_append_val(tl->memory, s);
}

static int cmp_event(gconstpointer a, gconstpointer b) {
  const PxEvent *x = a, *y = b;
  if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
  if (x->stream != y->stream) return x->stream < y->stream ? -1 : 1;
  if (x->start != y->start) return x->start < y->start ? -1 : 1;
  return (x->end > y->end) - (x->end < y->end);
}

void px_timeline_sort(PxTimeline *tl) {
  g_array_sort(tl->events, cmp_event);
}

double px_timeline_end(const PxTimeline *tl) {
  double end = 0;
  for (guint i = 0; i < tl->events->len; i++) end = MAX(end, g_array_index(tl->events, PxEvent, i).end);
  return end;
}

static gboolean has_chunks(const PxTimeline *tl) {
  for (guint i = 0; i < tl->events->len; i++)
    if (px_op_is_compute(g_array_index(tl->events, PxEvent, i).kind) &&
        g_array_index(tl->events, PxEvent, i).chunk > 0)
      return TRUE;
  return FALSE;
}

char *px_event_label(const PxEvent *ev, gboolean show_chunk) {
  GString *s = g_string_new(px_op_short_name(ev->kind));
  if (ev->mb >= 0) g_string_append_printf(s, "%d", ev->mb);
  if (ev->chunk >= 0 && (show_chunk || !px_op_is_compute(ev->kind)))
    g_string_append_printf(s, ".c%d", ev->chunk);
  if (ev->kind == PX_OP_REDUCE_GRADS && ev->bucket >= 0) g_string_append_printf(s, ".b%d", ev->bucket);
  return g_string_free(s, FALSE);
}

/* ---- Chrome trace ------------------------------------------------------ */

/* Several timelines on one time axis: timeline i's rank r is process
 * i · pid_stride + r, named "LABEL rank r (stage s)" (or "rank r (stage s)"
 * without labels: one timeline gives pid = rank, as before). */
static char *timelines_to_trace_json(const PxTimeline *const *tls, const char *const *labels, int n) {
  guint total = 0;
  int max_rank = 0;
  for (int i = 0; i < n; i++) {
    total += tls[i]->events->len;
    for (guint k = 0; k < tls[i]->events->len; k++) max_rank = MAX(max_rank, g_array_index(tls[i]->events, PxEvent, k).rank);
  }
  int stride = n > 1 ? max_rank + 1 : 0;
  GString *s = g_string_sized_new(128 + total * 160);
  g_string_append(s, "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[");
  gboolean first = TRUE;
  for (int i = 0; i < n; i++) {
    const PxTimeline *tl = tls[i];
    const char *label = labels ? labels[i] : NULL;
    gboolean chunks = has_chunks(tl);
    /* track names: one process per rank, one thread per stream */
    g_autoptr(GHashTable) seen = g_hash_table_new(g_direct_hash, g_direct_equal);
    for (guint k = 0; k < tl->events->len; k++) {
      const PxEvent *ev = &g_array_index(tl->events, PxEvent, k);
      int pid = i * stride + ev->rank;
      gpointer key = GINT_TO_POINTER(ev->rank * PX_N_STREAMS + (int)ev->stream + 1);
      if (g_hash_table_contains(seen, key)) continue;
      g_hash_table_add(seen, key);
      gpointer pkey = GINT_TO_POINTER(-(ev->rank + 1));
      if (!g_hash_table_contains(seen, pkey)) {
        g_hash_table_add(seen, pkey);
        g_string_append_printf(s,
                               "%s\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
                               "\"args\":{\"name\":\"%s%srank %d (stage %d)\"}}"
                               ",\n{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
                               "\"args\":{\"sort_index\":%d}}",
                               first ? "" : ",", pid, label ? label : "", label ? " " : "", ev->rank, ev->stage, pid,
                               n > 1 ? ev->rank * n + i : ev->rank);
        first = FALSE;
      }
      g_string_append_printf(s,
                             ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,"
                             "\"args\":{\"name\":\"%s\"}}",
                             pid, (int)ev->stream, px_stream_name(ev->stream));
    }
    for (guint k = 0; k < tl->events->len; k++) {
      const PxEvent *ev = &g_array_index(tl->events, PxEvent, k);
      g_autofree char *name = px_event_label(ev, chunks);
      g_string_append_printf(s,
                             "%s\n{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"ts\":%.6f,\"dur\":%.6f,"
                             "\"pid\":%d,\"tid\":%d,\"args\":{\"stage\":%d,\"mb\":%d,\"chunk\":%d,"
                             "\"bytes\":%.0f",
                             first ? "" : ",", name, px_op_name(ev->kind), ev->start * 1e6,
                             (ev->end - ev->start) * 1e6, i * stride + ev->rank, (int)ev->stream, ev->stage, ev->mb,
                             ev->chunk, ev->bytes);
      if (ev->kind == PX_OP_REDUCE_GRADS && ev->bucket >= 0) g_string_append_printf(s, ",\"bucket\":%d", ev->bucket);
      g_string_append(s, "}}");
      first = FALSE;
    }
    for (guint k = 0; k < tl->memory->len; k++) {
      const PxMemSample *m = &g_array_index(tl->memory, PxMemSample, k);
      g_string_append_printf(s,
                             "%s\n{\"name\":\"memory\",\"ph\":\"C\",\"ts\":%.6f,\"pid\":%d,"
                             "\"args\":{\"GiB\":%.6f}}",
                             first ? "" : ",", m->t * 1e6, i * stride + m->rank, m->bytes / (1024.0 * 1024 * 1024));
      first = FALSE;
    }
  }
  g_string_append(s, "\n]}\n");
  return g_string_free(s, FALSE);
}

char *px_timeline_to_trace_json(const PxTimeline *tl) {
  return timelines_to_trace_json(&tl, NULL, 1);
}

static gboolean write_file(const char *path, const char *text, GError **error) {
  return px_file_write(path, text, strlen(text), PX_TIMELINE_ERROR, PX_TIMELINE_ERROR_IO, error);
}

gboolean px_timeline_write_trace(const PxTimeline *tl, const char *path, GError **error) {
  g_autofree char *text = px_timeline_to_trace_json(tl);
  return write_file(path, text, error);
}

gboolean px_timelines_write_trace(const PxTimeline *const *tls, const char *const *labels, int n, const char *path,
                                  GError **error) {
  g_autofree char *text = timelines_to_trace_json(tls, labels, n);
  return write_file(path, text, error);
}

/* ---- CSV ----------------------------------------------------------------- */

#define CSV_HEADER "rank,stream,kind,mb,chunk,start_s,end_s,bytes,stage,bucket"

char *px_timeline_to_csv(const PxTimeline *tl) {
  GString *s = g_string_sized_new(64 + tl->events->len * 72);
  g_string_append(s, CSV_HEADER "\n");
  for (guint i = 0; i < tl->events->len; i++) {
    const PxEvent *ev = &g_array_index(tl->events, PxEvent, i);
    g_string_append_printf(s, "%d,%s,%s,%d,%d,%.9g,%.9g,%.0f,%d,%d\n", ev->rank, px_stream_name(ev->stream),
                           px_op_name(ev->kind), ev->mb, ev->chunk, ev->start, ev->end, ev->bytes,
                           ev->stage, ev->kind == PX_OP_REDUCE_GRADS ? ev->bucket : -1);
  }
  return g_string_free(s, FALSE);
}

gboolean px_timeline_write_csv(const PxTimeline *tl, const char *path, GError **error) {
  g_autofree char *text = px_timeline_to_csv(tl);
  return write_file(path, text, error);
}

static gboolean parse_int(const char *s, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < G_MININT || v > G_MAXINT) return FALSE;
  *out = (int)v;
  return TRUE;
}

static gboolean parse_double(const char *s, double *out) {
  char *end;
  *out = g_ascii_strtod(s, &end);
  return end != s && !*end && isfinite(*out);
}

PxTimeline *px_timeline_load_csv(const char *path, GError **error) {
  g_autofree char *text = NULL;
  GError *err = NULL;
  if (!g_file_get_contents(path, &text, NULL, &err)) {
    g_set_error(error, PX_TIMELINE_ERROR, PX_TIMELINE_ERROR_IO, "%s", err->message);
    g_error_free(err);
    return NULL;
  }
  g_autoptr(PxTimeline) tl = px_timeline_new();
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (guint ln = 0; lines[ln]; ln++) {
    g_strstrip(lines[ln]);
    if (!lines[ln][0] || (ln == 0 && g_str_has_prefix(lines[ln], "rank,"))) continue;
    g_auto(GStrv) f = g_strsplit(lines[ln], ",", -1);
    PxEvent ev = {.bucket = -1};
    guint n = g_strv_length(f);
    if ((n < 8 || n > 10) || !parse_int(f[0], &ev.rank) || !px_stream_parse(f[1], &ev.stream) ||
        !px_op_parse(f[2], &ev.kind) || !parse_int(f[3], &ev.mb) || !parse_int(f[4], &ev.chunk) ||
        !parse_double(f[5], &ev.start) || !parse_double(f[6], &ev.end) ||
        !parse_double(f[7], &ev.bytes) || (n >= 9 && !parse_int(f[8], &ev.stage)) ||
        (n == 10 && !parse_int(f[9], &ev.bucket))) {
      g_set_error(error, PX_TIMELINE_ERROR, PX_TIMELINE_ERROR_PARSE,
                  "%s:%u: expected " CSV_HEADER, path, ln + 1);
      return NULL;
    }
    if (n == 8) ev.stage = -1;
    px_timeline_add(tl, &ev);
  }
  return g_steal_pointer(&tl);
}

/* ---- ASCII Gantt --------------------------------------------------------- */

/* cell classes, in the order of the fill characters */
enum { CELL_F, CELL_B, CELL_W, CELL_OTHER, N_CELL };
static const char cell_chars[N_CELL] = {'-', '=', '~', 'o'};

static int cell_class(PxOpKind k) {
  switch (k) {
  case PX_OP_FORWARD: return CELL_F;
  case PX_OP_BACKWARD:
  case PX_OP_BACKWARD_INPUT: return CELL_B;
  case PX_OP_BACKWARD_WEIGHT: return CELL_W;
  default: return CELL_OTHER;
  }
}

/* Human time for the axis: s, ms or us. */
static char *format_time(double t) {
  if (t >= 1) return g_strdup_printf("%.4g s", t);
  if (t >= 1e-3) return g_strdup_printf("%.4g ms", t * 1e3);
  return g_strdup_printf("%.4g us", t * 1e6);
}

char *px_timeline_gantt(const PxTimeline *tl, int width) {
  GString *out = g_string_new(NULL);
  /* the row of each stage: its lowest rank */
  int n_stages = 0;
  for (guint i = 0; i < tl->events->len; i++)
    n_stages = MAX(n_stages, g_array_index(tl->events, PxEvent, i).stage + 1);
  double end = px_timeline_end(tl);
  if (n_stages == 0 || end <= 0) {
    g_string_append(out, "(empty timeline)\n");
    return g_string_free(out, FALSE);
  }
  g_autofree int *row_rank = g_new(int, n_stages);
  for (int s = 0; s < n_stages; s++) row_rank[s] = G_MAXINT;
  for (guint i = 0; i < tl->events->len; i++) {
    const PxEvent *ev = &g_array_index(tl->events, PxEvent, i);
    if (ev->stage >= 0) row_rank[ev->stage] = MIN(row_rank[ev->stage], ev->rank);
  }
  const int label_w = 10; /* "stage 12 |" */
  int cols = MAX(width - label_w - 1, 10);
  double dt = end / cols;
  gboolean chunks = has_chunks(tl);
  g_autofree char *row = g_malloc(cols + 1);
  g_autofree double *cover = g_new(double, (gsize)cols * N_CELL);
  row[cols] = 0;

  g_autofree char *end_label = format_time(end);
  g_string_append_printf(out, "%*s|0%*s|\n", label_w, "", cols - 1, end_label);
  for (int s = 0; s < n_stages; s++) {
    /* each cell shows the kind of op that covers most of it, if ops cover
     * at least half of it */
    memset(cover, 0, sizeof(double) * cols * N_CELL);
    for (guint i = 0; i < tl->events->len; i++) {
      const PxEvent *ev = &g_array_index(tl->events, PxEvent, i);
      if (ev->rank != row_rank[s] || ev->stream != PX_STREAM_COMPUTE || ev->end <= ev->start) continue;
      int c0 = CLAMP((int)floor(ev->start / dt), 0, cols - 1), c1 = CLAMP((int)floor(ev->end / dt), 0, cols - 1);
      for (int c = c0; c <= c1; c++)
        cover[c * N_CELL + cell_class(ev->kind)] += MAX(0, MIN(ev->end, (c + 1) * dt) - MAX(ev->start, c * dt));
    }
    for (int c = 0; c < cols; c++) {
      int best = 0;
      double sum = 0;
      for (int k = 0; k < N_CELL; k++) {
        sum += cover[c * N_CELL + k];
        if (cover[c * N_CELL + k] > cover[c * N_CELL + best]) best = k;
      }
      row[c] = sum >= 0.5 * dt ? cell_chars[best] : ' ';
    }
    /* labels over the cells whose middle falls inside the op: "F3" where it
     * fits, the bare number where it fits with a fill character beside it */
    for (guint i = 0; i < tl->events->len; i++) {
      const PxEvent *ev = &g_array_index(tl->events, PxEvent, i);
      if (ev->rank != row_rank[s] || ev->stream != PX_STREAM_COMPUTE || ev->mb < 0) continue;
      int a = CLAMP((int)ceil(ev->start / dt - 0.5), 0, cols), b = CLAMP((int)ceil(ev->end / dt - 0.5), 0, cols);
      PxEvent named = *ev;
      if (named.kind == PX_OP_BACKWARD_INPUT) named.kind = PX_OP_BACKWARD;
      g_autofree char *full = px_event_label(&named, chunks);
      g_autofree char *num = g_strdup_printf("%d", ev->mb);
      const char *label = (int)strlen(full) <= b - a ? full : (int)strlen(num) < b - a ? num : NULL;
      if (label) memcpy(row + a, label, strlen(label));
    }
    g_string_append_printf(out, "stage %3d |%s|\n", s, row);
  }
  g_string_append_printf(out,
                         "%*s forward '-', backward '=', weight pass '~', other 'o', idle ' '; "
                         "labels: F/B/W + micro-batch%s\n",
                         label_w - 1, "", chunks ? " + .c chunk" : "");
  return g_string_free(out, FALSE);
}
