/* trace_import.c — a measured step from a Kineto Chrome trace (see trace_import.h). */
#include "trace_import.h"
#include "config.h"
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

G_DEFINE_QUARK(px-trace-error-quark, px_trace_error)

static const char *stage_names[] = {"forward", "backward", "optimizer", "communication", "other"};
const char *px_step_stage_name(PxStepStage s) { return s < PX_N_STEP_STAGES ? stage_names[s] : "?"; }

PxStepStage px_trace_classify_name(const char *name) {
  static const struct { const char *needle; PxStepStage stage; } rules[] = {
    {"nccl", PX_STEP_COMM}, {"gloo:", PX_STEP_COMM}, {"c10d::", PX_STEP_COMM},
    {"record_param_comms", PX_STEP_COMM}, {"all_reduce", PX_STEP_COMM}, {"allreduce", PX_STEP_COMM},
    {"all_gather", PX_STEP_COMM}, {"allgather", PX_STEP_COMM}, {"reduce_scatter", PX_STEP_COMM},
    {"reducescatter", PX_STEP_COMM}, {"all_to_all", PX_STEP_COMM}, {"alltoall", PX_STEP_COMM},
    {"optimizer", PX_STEP_OPTIMIZER}, {"multi_tensor_apply", PX_STEP_OPTIMIZER},
    {"backward", PX_STEP_BACKWARD}, {"autograd::engine", PX_STEP_BACKWARD}, {"dgrad", PX_STEP_BACKWARD},
    {"wgrad", PX_STEP_BACKWARD},
    {"forward", PX_STEP_FORWARD}, {"nn.module:", PX_STEP_FORWARD}};
  g_autofree char *low = g_ascii_strdown(name, -1);
  for (gsize i = 0; i < G_N_ELEMENTS(rules); i++)
    if (strstr(low, rules[i].needle)) return rules[i].stage;
  return PX_N_STEP_STAGES;
}

void px_measured_step_free(PxMeasuredStep *m) {
  if (!m) return;
  g_free(m->step_name);
  if (m->segments) g_array_unref(m->segments);
  if (m->other) {
    for (guint i = 0; i < m->other->len; i++) g_free(g_array_index(m->other, PxOtherOp, i).name);
    g_array_unref(m->other);
  }
  g_free(m);
}

/* ---- the events ------------------------------------------------------------- */

typedef struct {
  const char *name, *cat;
  gint64 pid, tid;
  double ts, end;         /* µs, as in the trace */
  gint64 correlation;     /* -1 none */
  gboolean kernel, runtime;
  int stage;              /* resolved stage, PX_N_STEP_STAGES + 1 for a step container */
} Ev;

#define CONTAINER (PX_N_STEP_STAGES + 1)

/* A string member: def when absent or null, NULL when it is not a string
 * (json_object_get_string_member_with_default raised a g_critical on an
 * array and returned NULL for a number). */
static const char *member_string(JsonObject *o, const char *key, const char *def) {
  JsonNode *n = json_object_get_member(o, key);
  if (!n || JSON_NODE_HOLDS_NULL(n)) return def;
  return JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING ? json_node_get_string(n) : NULL;
}

static double member_number(JsonObject *o, const char *key, gboolean *ok) {
  JsonNode *n = json_object_get_member(o, key);
  if (!n || !JSON_NODE_HOLDS_VALUE(n)) {
    *ok = FALSE;
    return 0;
  }
  GType t = json_node_get_value_type(n);
  if (t == G_TYPE_DOUBLE) return json_node_get_double(n);
  if (t == G_TYPE_INT64) return (double)json_node_get_int(n);
  if (t == G_TYPE_STRING) { /* nsys writes its numbers as strings: the whole string, or NaN (refused) */
    const char *str = json_node_get_string(n);
    char *end = NULL;
    double v = g_ascii_strtod(str, &end);
    return end != str && !*end ? v : NAN;
  }
  *ok = FALSE;
  return 0;
}

static gint64 member_id(JsonObject *o, const char *key) {
  JsonNode *n = json_object_get_member(o, key);
  if (!n || !JSON_NODE_HOLDS_VALUE(n)) return 0;
  if (json_node_get_value_type(n) == G_TYPE_INT64) return json_node_get_int(n);
  if (json_node_get_value_type(n) == G_TYPE_STRING) return (gint64)g_str_hash(json_node_get_string(n));
  return 0;
}

static int ev_cmp(gconstpointer pa, gconstpointer pb) {
  const Ev *a = pa, *b = pb;
  if (a->pid != b->pid) return a->pid < b->pid ? -1 : 1;
  if (a->tid != b->tid) return a->tid < b->tid ? -1 : 1;
  if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
  if (a->end != b->end) return a->end > b->end ? -1 : 1; /* the enclosing event first */
  return 0;
}

typedef struct {
  PxMeasuredStep *m;
  double t0, t1;          /* the step, µs */
  GHashTable *other;      /* name → µs (unmatched) */
} Acc;

static void add_segment(Acc *a, int stage, double from, double to, int lane) {
  from = MAX(from, a->t0);
  to = MIN(to, a->t1);
  if (to <= from || stage >= PX_N_STEP_STAGES) return;
  a->m->stage_time[stage] += (to - from) * 1e-6;
  PxStepSegment s = {stage, (from - a->t0) * 1e-6, (to - a->t0) * 1e-6, lane};
  g_array_append_val(a->m->segments, s);
}

/* Stage of each CPU event by nesting (thread by thread), and — for a CPU
 * trace — its self time as segments. ev is sorted by (pid, tid, ts, -end). */
static void resolve_cpu(Acc *a, Ev *ev, guint n, double first_backward, gboolean emit) {
  g_autoptr(GArray) stack = g_array_new(FALSE, FALSE, sizeof(guint));
  g_autofree double *cursor = g_new0(double, MAX(n, 1));
  for (guint i = 0; i <= n; i++) {
    Ev *e = i < n ? &ev[i] : NULL;
    /* close what ends before e starts, or lives on another thread */
    while (stack->len) {
      Ev *top = &ev[g_array_index(stack, guint, stack->len - 1)];
      if (e && top->pid == e->pid && top->tid == e->tid && e->ts < top->end) break;
      guint ti = g_array_index(stack, guint, stack->len - 1);
      if (emit) add_segment(a, top->stage, cursor[ti], top->end, top->stage == PX_STEP_COMM);
      g_array_set_size(stack, stack->len - 1);
      if (stack->len) cursor[g_array_index(stack, guint, stack->len - 1)] = top->end;
    }
    if (!e) break;
    if (e->kernel) continue;
    const Ev *parent = stack->len ? &ev[g_array_index(stack, guint, stack->len - 1)] : NULL;
    if (parent) {
      if (emit) add_segment(a, parent->stage, cursor[g_array_index(stack, guint, stack->len - 1)], e->ts,
                            parent->stage == PX_STEP_COMM);
      e->end = MIN(e->end, parent->end); /* nested events end inside their parent */
    }
    if (g_str_has_prefix(e->name, "ProfilerStep#")) {
      e->stage = CONTAINER;
    } else {
      PxStepStage own = px_trace_classify_name(e->name);
      if (own < PX_N_STEP_STAGES) e->stage = own;
      else if (parent && parent->stage < PX_N_STEP_STAGES) e->stage = parent->stage;
      else e->stage = e->ts < first_backward ? PX_STEP_FORWARD : PX_STEP_OTHER;
      if (emit && e->stage == PX_STEP_OTHER && (!parent || parent->stage != PX_STEP_OTHER)) {
        double *t = g_hash_table_lookup(a->other, e->name);
        if (!t) g_hash_table_insert(a->other, (gpointer)e->name, (t = g_new0(double, 1)));
        *t += MIN(e->end, a->t1) - MAX(e->ts, a->t0);
      }
    }
    cursor[i] = e->ts;
    g_array_append_val(stack, i);
  }
}

static int other_cmp(gconstpointer pa, gconstpointer pb) {
  const PxOtherOp *a = pa, *b = pb;
  return a->seconds > b->seconds ? -1 : a->seconds < b->seconds ? 1 : strcmp(a->name, b->name);
}

static PxMeasuredStep *analyse(const char *path, PxMeasuredStep *m, GArray *evs, GError **error) {
  double step_ts = -1, step_end = -1, lo = INFINITY, hi = -INFINITY;
  for (guint i = 0; i < evs->len; i++) {
    const Ev *e = &g_array_index(evs, Ev, i);
    if (g_str_has_prefix(e->name, "ProfilerStep#") && e->ts >= step_ts) {
      step_ts = e->ts;
      step_end = e->end;
      g_free(m->step_name);
      m->step_name = g_strdup(e->name);
    }
    /* a time that is no number, a negative duration or one beyond 1e17 µs (3000 years) is a corrupt trace,
     * not a step to compare against */
    if (!isfinite(e->ts) || !isfinite(e->end) || e->end < e->ts || fabs(e->ts) > 1e17 || e->end - e->ts > 1e17) {
      g_set_error(error, PX_TRACE_ERROR, PX_TRACE_ERROR_FORMAT,
                  "%s: event '%.200s' has no valid time (start %g µs, duration %g µs; numbers, the duration ≥ 0, "
                  "both under 1e17)", path, e->name, e->ts, e->end - e->ts);
      px_measured_step_free(m);
      return NULL;
    }
    lo = MIN(lo, e->ts);
    hi = MAX(hi, e->end);
    m->gpu |= e->kernel;
  }
  if (evs->len == 0) {
    g_set_error(error, PX_TRACE_ERROR, PX_TRACE_ERROR_FORMAT, "%s: no complete (\"X\") events in the trace", path);
    px_measured_step_free(m);
    return NULL;
  }
  Acc a = {m, step_ts >= 0 ? step_ts : lo, step_ts >= 0 ? step_end : hi,
           g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free)};
  m->step_time = (a.t1 - a.t0) * 1e-6;
  g_array_sort(evs, ev_cmp);
  Ev *ev = (Ev *)evs->data;
  double first_backward = INFINITY;
  for (guint i = 0; i < evs->len; i++) {
    if (!ev[i].kernel && ev[i].end > a.t0 && ev[i].ts < a.t1 &&
        px_trace_classify_name(ev[i].name) == PX_STEP_BACKWARD)
      first_backward = MIN(first_backward, ev[i].ts);
    m->n_events += ev[i].end > a.t0 && ev[i].ts < a.t1;
  }
  resolve_cpu(&a, ev, evs->len, first_backward, !m->gpu);
  if (m->gpu) {
    /* kernels: NCCL by name, else the launching op's stage, else their name's */
    g_autoptr(GHashTable) launch = g_hash_table_new(g_int64_hash, g_int64_equal);
    for (guint i = 0; i < evs->len; i++)
      if (ev[i].runtime && ev[i].correlation >= 0) g_hash_table_insert(launch, &ev[i].correlation, &ev[i]);
    for (guint i = 0; i < evs->len; i++) {
      Ev *k = &ev[i];
      if (!k->kernel) continue;
      PxStepStage s = px_trace_classify_name(k->name);
      const Ev *l = k->correlation >= 0 ? g_hash_table_lookup(launch, &k->correlation) : NULL;
      if (s != PX_STEP_COMM && l && l->stage < PX_N_STEP_STAGES) s = l->stage;
      if (s >= PX_N_STEP_STAGES) {
        s = PX_STEP_OTHER;
        double *t = g_hash_table_lookup(a.other, k->name);
        if (!t) g_hash_table_insert(a.other, (gpointer)k->name, (t = g_new0(double, 1)));
        *t += MIN(k->end, a.t1) - MAX(k->ts, a.t0);
      }
      add_segment(&a, s, k->ts, k->end, s == PX_STEP_COMM);
    }
  }
  GHashTableIter it;
  gpointer key, val;
  g_hash_table_iter_init(&it, a.other);
  while (g_hash_table_iter_next(&it, &key, &val)) {
    PxOtherOp op = {g_strdup(key), *(double *)val * 1e-6};
    if (op.seconds > 0) g_array_append_val(m->other, op);
    else g_free(op.name);
  }
  g_array_sort(m->other, other_cmp);
  g_hash_table_unref(a.other);
  return m;
}

/* Events of a Chrome trace's traceEvents (or bare array); FALSE when root is
 * not a Chrome trace. Names point into the parser's tree. */
static gboolean chrome_events(JsonNode *root, GArray *evs, PxMeasuredStep *m) {
  JsonArray *events = NULL;
  JsonObject *top = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
  if (top && json_object_has_member(top, "traceEvents") &&
      JSON_NODE_HOLDS_ARRAY(json_object_get_member(top, "traceEvents")))
    events = json_object_get_array_member(top, "traceEvents");
  else if (root && JSON_NODE_HOLDS_ARRAY(root))
    events = json_node_get_array(root); /* the bare-array form of the Chrome trace format */
  if (!events) return FALSE;
  JsonObject *dist = top && json_object_has_member(top, "distributedInfo") &&
                             JSON_NODE_HOLDS_OBJECT(json_object_get_member(top, "distributedInfo"))
                         ? json_object_get_object_member(top, "distributedInfo") : NULL;
  if (dist) {
    gboolean ok = TRUE;
    double r = member_number(dist, "rank", &ok), w = member_number(dist, "world_size", &ok);
    if (ok && r >= 0 && w >= 1 && r < w && w <= (1 << 24)) {
      m->rank = (int)r;
      m->world = (int)w;
    }
  }
  for (guint i = 0; i < json_array_get_length(events); i++) {
    JsonNode *n = json_array_get_element(events, i);
    if (!JSON_NODE_HOLDS_OBJECT(n)) continue;
    JsonObject *o = json_node_get_object(n);
    const char *ph = member_string(o, "ph", "");
    if (!ph || strcmp(ph, "X")) continue;
    gboolean ok = TRUE;
    Ev e = {.name = member_string(o, "name", ""), .cat = member_string(o, "cat", ""), .correlation = -1};
    if (!e.name || !e.cat) continue; /* a number or an array for a name: not an event of the format */
    e.ts = member_number(o, "ts", &ok);
    e.end = e.ts + member_number(o, "dur", &ok);
    if (!ok || !strcmp(e.cat, "Trace")) continue; /* the profiler's own span */
    e.pid = member_id(o, "pid");
    e.tid = member_id(o, "tid");
    e.kernel = !g_ascii_strcasecmp(e.cat, "kernel");
    e.runtime = !g_ascii_strcasecmp(e.cat, "cuda_runtime") || !g_ascii_strcasecmp(e.cat, "cuda_driver");
    JsonNode *args = json_object_get_member(o, "args");
    if (args && JSON_NODE_HOLDS_OBJECT(args)) {
      gboolean has = TRUE;
      double c = member_number(json_node_get_object(args), "correlation", &has);
      if (has && c >= 0 && c < 0x1p62) e.correlation = (gint64)c;
    }
    g_array_append_val(evs, e);
  }
  return TRUE;
}

/* ---- Nsight Systems: `nsys export --type json` ------------------------------
 * One JSON object per line: first a header whose "data" array is the string
 * table, then events. Kernels are {"CudaEvent": {"startNs", "endNs",
 * "correlationId", "deviceId", "streamId", "kernel": {"demangledName" |
 * "shortName"}}}; CPU ranges (NVTX, CUDA API calls with their
 * "correlationId") are {"TraceProcessEvent": {"startNs", "endNs", "name",
 * "globalTid", "correlationId"}}. Names are string-table indices or strings. */

static const char *nsys_string(JsonObject *o, const char *key, GPtrArray *table, GStringChunk *chunk) {
  JsonNode *n = json_object_get_member(o, key);
  if (!n || !JSON_NODE_HOLDS_VALUE(n)) return NULL;
  if (json_node_get_value_type(n) == G_TYPE_STRING) {
    const char *v = json_node_get_string(n);
    /* a number as a string is an index too */
    char *end;
    gint64 i = g_ascii_strtoll(v, &end, 10);
    if (*v && !*end && i >= 0 && (guint64)i < table->len) return table->pdata[i];
    return g_string_chunk_insert_const(chunk, v);
  }
  if (json_node_get_value_type(n) == G_TYPE_INT64) {
    gint64 i = json_node_get_int(n);
    return i >= 0 && (guint64)i < table->len ? table->pdata[i] : NULL;
  }
  return NULL;
}

static gboolean nsys_events(const char *text, GArray *evs, GStringChunk *chunk) {
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  g_autoptr(GPtrArray) table = g_ptr_array_new();
  gboolean any = FALSE;
  for (char **l = lines; *l; l++) {
    if (!*g_strstrip(*l)) continue;
    g_autoptr(JsonParser) p = json_parser_new();
    if (!json_parser_load_from_data(p, *l, -1, NULL)) return FALSE;
    JsonNode *root = json_parser_get_root(p);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) return FALSE;
    JsonObject *o = json_node_get_object(root);
    if (json_object_has_member(o, "data") && JSON_NODE_HOLDS_ARRAY(json_object_get_member(o, "data"))) {
      JsonArray *d = json_object_get_array_member(o, "data");
      for (guint i = 0; i < json_array_get_length(d); i++) {
        JsonNode *s = json_array_get_element(d, i);
        const char *v = JSON_NODE_HOLDS_VALUE(s) && json_node_get_value_type(s) == G_TYPE_STRING
                            ? json_node_get_string(s) : "";
        g_ptr_array_add(table, g_string_chunk_insert_const(chunk, v));
      }
      any = TRUE;
      continue;
    }
    gboolean cuda = json_object_has_member(o, "CudaEvent");
    if (!cuda && !json_object_has_member(o, "TraceProcessEvent")) continue;
    JsonNode *en = json_object_get_member(o, cuda ? "CudaEvent" : "TraceProcessEvent");
    if (!JSON_NODE_HOLDS_OBJECT(en)) continue;
    JsonObject *e = json_node_get_object(en);
    gboolean ok = TRUE;
    Ev ev = {.correlation = -1};
    ev.ts = member_number(e, "startNs", &ok) / 1e3;
    ev.end = member_number(e, "endNs", &ok) / 1e3;
    if (!ok) continue;
    gboolean has = TRUE;
    double corr = member_number(e, "correlationId", &has);
    if (has && corr > 0 && corr < 0x1p62) ev.correlation = (gint64)corr;
    if (cuda) {
      JsonNode *kn = json_object_get_member(e, "kernel");
      if (!kn || !JSON_NODE_HOLDS_OBJECT(kn)) continue; /* memcpy / memset / sync: not kernels */
      JsonObject *k = json_node_get_object(kn);
      ev.name = nsys_string(k, "demangledName", table, chunk);
      if (!ev.name) ev.name = nsys_string(k, "shortName", table, chunk);
      if (!ev.name) ev.name = "kernel";
      ev.cat = "kernel";
      ev.kernel = TRUE;
      ev.pid = -1 - member_id(e, "deviceId");
      ev.tid = member_id(e, "streamId");
    } else {
      ev.name = nsys_string(e, "name", table, chunk);
      if (!ev.name) ev.name = "";
      ev.cat = "cpu";
      ev.runtime = ev.correlation >= 0;
      ev.pid = 0;
      ev.tid = member_id(e, "globalTid");
    }
    g_array_append_val(evs, ev);
    any = TRUE;
  }
  return any;
}

PxMeasuredStep *px_trace_load(const char *path, GError **error) {
  g_autofree char *text = NULL;
  gsize len = 0;
  /* bounded: --trace /dev/zero was read until memory ran out */
  text = px_file_read_max(path, PX_TRACE_MAX_BYTES, "a profiler trace", &len, PX_TRACE_ERROR, PX_TRACE_ERROR_IO, error);
  /* json-glib recurses: a trace nested 200000 deep overflowed the stack */
  if (!text || !px_json_check(path, text, len, FALSE, PX_TRACE_ERROR, PX_TRACE_ERROR_FORMAT, error)) return NULL;
  PxMeasuredStep *m = g_new0(PxMeasuredStep, 1);
  m->rank = m->world = -1;
  m->segments = g_array_new(FALSE, FALSE, sizeof(PxStepSegment));
  m->other = g_array_new(FALSE, FALSE, sizeof(PxOtherOp));
  g_autoptr(GArray) evs = g_array_new(FALSE, TRUE, sizeof(Ev));
  g_autoptr(JsonParser) parser = json_parser_new();
  GStringChunk *chunk = g_string_chunk_new(4096);
  g_autoptr(GError) perr = NULL;
  gboolean whole = json_parser_load_from_data(parser, text, (gssize)len, &perr);
  gboolean chrome = whole && chrome_events(json_parser_get_root(parser), evs, m);
  m->nsys = !chrome && nsys_events(text, evs, chunk);
  if (!chrome && !m->nsys) {
    if (!whole)
      g_set_error(error, PX_TRACE_ERROR, PX_TRACE_ERROR_IO, "%s: %s", path, perr->message);
    else
      g_set_error(error, PX_TRACE_ERROR, PX_TRACE_ERROR_FORMAT,
                  "%s: not a Chrome trace (no traceEvents array; export PyTorch profiles with "
                  "export_chrome_trace) nor an Nsight Systems JSON export", path);
    g_string_chunk_free(chunk);
    px_measured_step_free(m);
    return NULL;
  }
  PxMeasuredStep *r = analyse(path, m, evs, error);
  g_string_chunk_free(chunk);
  return r;
}
