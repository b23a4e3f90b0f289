/* test_plot.c — the Pareto front, time units, the data files the plots are
 * drawn from, and the error without gnuplot. */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include "plot.h"

static void test_pareto_front(void) {
  /* By hand: (time, memory) A(1,50) B(2,40) C(2,30) D(3,35) E(4,10, does not
   * fit) F(5,20) G(0.5,90, does not fit). Fitting, by time: A(1,50), C(2,30)
   * (beats B at equal time), B, D(35 > 30: dominated), F(5,20). Front: A C F. */
  PxParetoPoint pts[] = {{1, 50, TRUE, "A"}, {2, 40, TRUE, "B"}, {2, 30, TRUE, "C"}, {3, 35, TRUE, "D"},
                         {4, 10, FALSE, "E"}, {5, 20, TRUE, "F"}, {0.5, 90, FALSE, "G"}};
  int front[7];
  int n = px_pareto_front(pts, 7, front);
  g_assert_cmpint(n, ==, 3);
  g_assert_cmpint(front[0], ==, 0);
  g_assert_cmpint(front[1], ==, 2);
  g_assert_cmpint(front[2], ==, 5);
}

static void test_time_unit(void) {
  const char *name;
  g_assert_cmpfloat(px_plot_time_unit(25.4, FALSE, &name), ==, 1.0);
  g_assert_cmpstr(name, ==, "time (s)");
  g_assert_cmpfloat(px_plot_time_unit(0.0123, FALSE, &name), ==, 1e3);
  g_assert_cmpstr(name, ==, "time (ms)");
  g_assert_cmpfloat(px_plot_time_unit(0.0005, FALSE, &name), ==, 1e6);
  g_assert_cmpfloat(px_plot_time_unit(31, TRUE, &name), ==, 1.0);
}

/* Two stages, one forward each of width 1 and 0.01 in a step of 2 units: the
 * wide box gets its micro-batch label, the narrow one (0.01 of ~1230 px / 2
 * units = 6 px, too narrow for a 7 px digit) does not. Without gnuplot the
 * data file is still there and the error names the package. */
static void test_timeline_data_without_gnuplot(void) {
  g_autoptr(PxTimeline) tl = px_timeline_new();
  PxEvent a = {0, 0, PX_STREAM_COMPUTE, PX_OP_FORWARD, 3, 0, 0.0, 1.0, 0, -1};
  PxEvent b = {1, 1, PX_STREAM_COMPUTE, PX_OP_FORWARD, 4, 0, 1.99, 2.0, 0, -1};
  px_timeline_add(tl, &a);
  px_timeline_add(tl, &b);
  g_autofree char *dir = g_dir_make_tmp("px-plot-XXXXXX", NULL);
  g_assert_nonnull(dir);
  g_autofree char *old_path = g_strdup(g_getenv("PATH"));
  g_setenv("PATH", "/nonexistent", TRUE);
  g_autoptr(GError) err = NULL;
  gboolean ok = px_plot_timeline(tl, dir, "t", TRUE, &err);
  g_setenv("PATH", old_path, TRUE);
  g_assert_false(ok);
  g_assert_error(err, PX_PLOT_ERROR, PX_PLOT_ERROR_NO_GNUPLOT);
  g_assert_cmpstr(err->message, ==, "gnuplot not found: install the Debian package gnuplot-nox");
  g_autofree char *path = g_build_filename(dir, "timeline.dat", NULL);
  g_autofree char *data = NULL;
  g_assert_true(g_file_get_contents(path, &data, NULL, NULL));
  /* box of a: centre 0.5, row 0, half width 0.5; label "3" at (0.5, 0); no label "4" */
  g_assert_nonnull(strstr(data, "\n0.5 0 0.5 0.320 "));
  g_assert_nonnull(strstr(data, "\n0.5 0 \"3\"\n"));
  g_assert_null(strstr(data, "\"4\""));
  g_unlink(path);
  g_rmdir(dir);
}

static void test_empty(void) {
  g_autoptr(PxTimeline) tl = px_timeline_new();
  g_autoptr(GError) err = NULL;
  g_assert_false(px_plot_memory(tl, "/nonexistent", NULL, 0, FALSE, &err));
  g_assert_error(err, PX_PLOT_ERROR, PX_PLOT_ERROR_EMPTY);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/plot/pareto/front", test_pareto_front);
  g_test_add_func("/plot/time-unit", test_time_unit);
  g_test_add_func("/plot/timeline/data-without-gnuplot", test_timeline_data_without_gnuplot);
  g_test_add_func("/plot/empty", test_empty);
  return g_test_run();
}
