/* test_timeline.c — the writers: Chrome trace JSON parsed back with json-glib
 * (one complete event per compute op, times in microseconds), CSV round trip,
 * and the ASCII Gantt of a hand-timed pipeline. */
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include "engine.h"

/* ideal costs (F 1, B 2) for a schedule */
static PxSimResult *simulate(PxScheduleKind k, int pp, int vpp, int m) {
  PxPlan plan;
  px_plan_init(&plan);
  plan.schedule = k;
  plan.pp = pp;
  plan.vpp = vpp;
  plan.m = m;
  g_autoptr(PxProgram) prog = px_program_new(&plan, NULL, NULL);
  g_autoptr(PxCostTable) tab = px_cost_table_ideal(pp, vpp);
  for (int i = 0; i < tab->parts; i++) {
    tab->p2p_act[i] = 0.125;
    tab->p2p_bytes[i] = 4096;
  }
  GError *err = NULL;
  PxSimResult *res = px_simulate(prog, tab, NULL, &err);
  g_assert_no_error(err);
  px_plan_clear(&plan);
  return res;
}

static void test_trace_json(void) {
  const struct {
    PxScheduleKind k;
    int v, ops_per_mb_chunk;
  } cases[] = {{PX_SCHED_1F1B, 1, 2}, {PX_SCHED_INTERLEAVED, 2, 2}, {PX_SCHED_ZB_H1, 1, 3}};
  for (gsize c = 0; c < G_N_ELEMENTS(cases); c++) {
    int p = 4, m = 8;
    g_autoptr(PxSimResult) res = simulate(cases[c].k, p, cases[c].v, m);
    g_autofree char *json = px_timeline_to_trace_json(res->timeline);
    g_autoptr(JsonParser) parser = json_parser_new();
    GError *err = NULL;
    g_assert_true(json_parser_load_from_data(parser, json, -1, &err));
    g_assert_no_error(err);
    JsonArray *evs = json_object_get_array_member(json_node_get_object(json_parser_get_root(parser)), "traceEvents");
    g_assert_nonnull(evs);
    int compute = 0, per_rank[4] = {0};
    gboolean saw_f3 = FALSE;
    for (guint i = 0; i < json_array_get_length(evs); i++) {
      JsonObject *o = json_array_get_object_element(evs, i);
      if (strcmp(json_object_get_string_member(o, "ph"), "X")) continue;
      const char *cat = json_object_get_string_member(o, "cat");
      if (strcmp(cat, "FORWARD") && strcmp(cat, "BACKWARD") && strcmp(cat, "BACKWARD_INPUT") &&
          strcmp(cat, "BACKWARD_WEIGHT"))
        continue;
      compute++;
      int pid = (int)json_object_get_int_member(o, "pid");
      g_assert_cmpint(pid, >=, 0);
      g_assert_cmpint(pid, <, 4);
      per_rank[pid]++;
      g_assert_cmpint(json_object_get_int_member(o, "tid"), ==, PX_STREAM_COMPUTE);
      /* 1F1B: stage 1's F0 starts when stage 0's F0 (0..1 s) and the
       * 0.125 s transfer are done: 1.125 s; it lasts 1 s */
      if (cases[c].k == PX_SCHED_1F1B && pid == 1 && !strcmp(json_object_get_string_member(o, "name"), "F0")) {
        saw_f3 = TRUE;
        g_assert_cmpfloat_with_epsilon(json_object_get_double_member(o, "ts"), 1.125e6, 1e-3);
        g_assert_cmpfloat_with_epsilon(json_object_get_double_member(o, "dur"), 1e6, 1e-3);
      }
      /* interleaved names carry the chunk: "F3.c1" */
      if (cases[c].v > 1) g_assert_nonnull(strstr(json_object_get_string_member(o, "name"), ".c"));
    }
    int per = cases[c].ops_per_mb_chunk * m * cases[c].v;
    g_assert_cmpint(compute, ==, p * per);
    for (int r = 0; r < 4; r++) g_assert_cmpint(per_rank[r], ==, per);
    if (cases[c].k == PX_SCHED_1F1B) g_assert_true(saw_f3);
  }
}

static void test_csv_roundtrip(void) {
  g_autoptr(PxSimResult) res = simulate(PX_SCHED_INTERLEAVED, 2, 2, 4);
  g_autofree char *dir = g_dir_make_tmp("px-timeline-XXXXXX", NULL);
  g_autofree char *path = g_build_filename(dir, "t.csv", NULL);
  GError *err = NULL;
  g_assert_true(px_timeline_write_csv(res->timeline, path, &err));
  g_assert_no_error(err);
  g_autofree char *text = NULL;
  g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
  g_assert_true(g_str_has_prefix(text, "rank,stream,kind,mb,chunk,start_s,end_s,bytes"));
  /* stage 1 receives F0c0's activation: the transfer runs 1 .. 1.125 s */
  g_assert_nonnull(strstr(text, "\n1,recv,RECV_ACT,0,0,1,1.125,4096,1,-1\n"));
  g_autoptr(PxTimeline) back = px_timeline_load_csv(path, &err);
  g_assert_no_error(err);
  g_assert_cmpuint(back->events->len, ==, res->timeline->events->len);
  for (guint i = 0; i < back->events->len; i++) {
    const PxEvent *a = &g_array_index(res->timeline->events, PxEvent, i);
    const PxEvent *b = &g_array_index(back->events, PxEvent, i);
    g_assert_cmpint(a->rank, ==, b->rank);
    g_assert_cmpint(a->stage, ==, b->stage);
    g_assert_cmpint(a->stream, ==, b->stream);
    g_assert_cmpint(a->kind, ==, b->kind);
    g_assert_cmpint(a->mb, ==, b->mb);
    g_assert_cmpint(a->chunk, ==, b->chunk);
    g_assert_cmpfloat_with_epsilon(a->start, b->start, 1e-8);
    g_assert_cmpfloat_with_epsilon(a->end, b->end, 1e-8);
    g_assert_cmpfloat(a->bytes, ==, b->bytes);
  }
  /* a broken line is named */
  g_assert_true(g_file_set_contents(path, "rank,stream\n0,compute,FORWARD,x,0,0,1,0\n", -1, NULL));
  g_assert_null(px_timeline_load_csv(path, &err));
  g_assert_error(err, PX_TIMELINE_ERROR, PX_TIMELINE_ERROR_PARSE);
  g_assert_nonnull(strstr(err->message, ":2:"));
  g_clear_error(&err);
  g_unlink(path);
  g_rmdir(dir);
  g_assert_false(px_timeline_write_csv(res->timeline, "/nonexistent-dir/t.csv", &err));
  g_assert_error(err, PX_TIMELINE_ERROR, PX_TIMELINE_ERROR_IO);
  g_clear_error(&err);
}

/* naive, 2 stages, 1 micro-batch, no communication: stage 0 F 0-1, B 4-6;
 * stage 1 F 1-2, B 2-4; step 6 s. 12 time columns of 0.5 s. */
static void test_gantt(void) {
  PxPlan plan;
  px_plan_init(&plan);
  plan.schedule = PX_SCHED_NAIVE;
  plan.pp = 2;
  plan.m = 1;
  g_autoptr(PxProgram) prog = px_program_new(&plan, NULL, NULL);
  g_autoptr(PxCostTable) tab = px_cost_table_ideal(2, 1);
  g_autoptr(PxSimResult) res = px_simulate(prog, tab, NULL, NULL);
  g_autofree char *g = px_timeline_gantt(res->timeline, 23);
  g_assert_cmpstr(g, ==,
                  "          |0        6 s|\n"
                  "stage   0 |F0      B0==|\n"
                  "stage   1 |  F0B0==    |\n"
                  "          forward '-', backward '=', weight pass '~', other 'o', idle ' '; "
                  "labels: F/B/W + micro-batch\n");
  /* at least 10 columns of 0.6 s: stage 1's F (1-2 s) covers a third of
   * column 1 (blank), all of column 2, a third of column 3 (which its B
   * covers more): one '-' with no room for a label; B (2-4 s) takes columns
   * 3-6 (column 6 two thirds). */
  g_autofree char *narrow = px_timeline_gantt(res->timeline, 17);
  g_assert_nonnull(strstr(narrow, "\nstage   1 |  -B0==   |\n"));
  px_plan_clear(&plan);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/timeline/trace-json", test_trace_json);
  g_test_add_func("/timeline/csv", test_csv_roundtrip);
  g_test_add_func("/timeline/gantt", test_gantt);
  return g_test_run();
}
