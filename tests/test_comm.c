/* test_comm.c — the `local` communicator with 2, 3 and 4 thread-ranks: every
 * collective against hand-computed values, fixed-order (bit-identical) sums,
 * point-to-point, and the timeout / mismatch errors instead of hangs. */
#include <glib.h>
#include <string.h>
#include "comm.h"

typedef struct Run Run;
typedef gboolean (*RankFn)(PxComm *c, Run *run, GError **error);

struct Run {
  int n;
  RankFn fn;
  PxLocalWorld *world;
  GError *errors[8];
  double result[8][64];  /* per-rank output for the test to check */
  float fresult[8][4];
  gint flags[8];
};

typedef struct {
  Run *run;
  int rank;
} Arg;

static gpointer rank_main(gpointer p) {
  Arg *a = p;
  g_autoptr(PxComm) c = px_comm_local_new(a->run->world, a->rank);
  a->run->fn(c, a->run, &a->run->errors[a->rank]);
  return NULL;
}

/* Run fn on n thread-ranks; errors land in run->errors. */
static Run *run_ranks(int n, double timeout_s, RankFn fn) {
  Run *run = g_new0(Run, 1);
  run->n = n;
  run->fn = fn;
  run->world = px_local_world_new(n, timeout_s);
  GThread *th[8];
  Arg args[8];
  for (int r = 0; r < n; r++) {
    args[r] = (Arg){run, r};
    th[r] = g_thread_new("rank", rank_main, &args[r]);
  }
  for (int r = 0; r < n; r++) g_thread_join(th[r]);
  return run;
}

static void run_free(Run *run) {
  for (int r = 0; r < run->n; r++) g_clear_error(&run->errors[r]);
  px_local_world_free(run->world);
  g_free(run);
}

static void assert_no_errors(Run *run) {
  for (int r = 0; r < run->n; r++) g_assert_no_error(run->errors[r]);
}

/* ---- all_reduce ---- */

#define COUNT 5
static gboolean do_all_reduce(PxComm *c, Run *run, GError **error) {
  int r = px_comm_rank(c);
  g_autoptr(PxGroup) g = px_group_new_world(run->n);
  double *buf = run->result[r];
  for (int j = 0; j < COUNT; j++) buf[j] = (r + 1) * (j + 1) + 0.25;
  return px_comm_all_reduce(c, g, buf, COUNT, PX_DTYPE_F64, error);
}

static void test_all_reduce(void) {
  for (int n = 2; n <= 4; n++) {
    Run *run = run_ranks(n, 0, do_all_reduce);
    assert_no_errors(run);
    for (int r = 0; r < n; r++)
      for (int j = 0; j < COUNT; j++)  /* sum_r (r+1)(j+1) + n/4 */
        g_assert_cmpfloat(run->result[r][j], ==, n * (n + 1) / 2.0 * (j + 1) + 0.25 * n);
    run_free(run);
  }
}

/* fp32, values whose sum depends on the order: ((1e8 + 1) - 1e8) + 1 = 1 in
 * fp32 (1e8 + 1 rounds to 1e8), while the exact sum is 2. Every rank must see
 * the rank-order result, whatever the arrival order. */
static gboolean do_all_reduce_order(PxComm *c, Run *run, GError **error) {
  static const float x[4] = {1e8f, 1.0f, -1e8f, 1.0f};
  int r = px_comm_rank(c);
  g_autoptr(PxGroup) g = px_group_new_world(run->n);
  g_usleep((run->n - r) * 2000); /* arrive in reverse order */
  run->fresult[r][0] = x[r];
  return px_comm_all_reduce(c, g, run->fresult[r], 1, PX_DTYPE_F32, error);
}

static void test_all_reduce_order(void) {
  Run *run = run_ranks(4, 0, do_all_reduce_order);
  assert_no_errors(run);
  for (int r = 0; r < 4; r++) g_assert_cmpfloat(run->fresult[r][0], ==, 1.0f);
  run_free(run);
}

/* Two disjoint groups at once: {0,2} and {1,3} (DP groups of a tp=2 layout). */
static gboolean do_subgroups(PxComm *c, Run *run, GError **error) {
  (void)run;
  int r = px_comm_rank(c);
  int ranks[2] = {r % 2, r % 2 + 2};
  g_autoptr(PxGroup) g = px_group_new("dp", 2, ranks);
  run->result[r][0] = 10.0 * r;
  return px_comm_all_reduce(c, g, run->result[r], 1, PX_DTYPE_F64, error);
}

static void test_subgroups(void) {
  Run *run = run_ranks(4, 0, do_subgroups);
  assert_no_errors(run);
  g_assert_cmpfloat(run->result[0][0], ==, 20.0); /* 0 + 20 */
  g_assert_cmpfloat(run->result[2][0], ==, 20.0);
  g_assert_cmpfloat(run->result[1][0], ==, 40.0); /* 10 + 30 */
  g_assert_cmpfloat(run->result[3][0], ==, 40.0);
  run_free(run);
}

/* ---- reduce_scatter / all_gather / broadcast ---- */

#define CHUNK 3
static gboolean do_reduce_scatter(PxComm *c, Run *run, GError **error) {
  int r = px_comm_rank(c), n = run->n;
  g_autoptr(PxGroup) g = px_group_new_world(n);
  double send[4 * CHUNK];
  for (int j = 0; j < n * CHUNK; j++) send[j] = (r + 1) * (j + 1);
  return px_comm_reduce_scatter(c, g, send, run->result[r], CHUNK, PX_DTYPE_F64, error);
}

static void test_reduce_scatter(void) {
  for (int n = 2; n <= 4; n++) {
    Run *run = run_ranks(n, 0, do_reduce_scatter);
    assert_no_errors(run);
    for (int i = 0; i < n; i++)
      for (int j = 0; j < CHUNK; j++) /* sum_r (r+1)(i*CHUNK + j + 1) */
        g_assert_cmpfloat(run->result[i][j], ==, n * (n + 1) / 2.0 * (i * CHUNK + j + 1));
    run_free(run);
  }
}

static gboolean do_all_gather(PxComm *c, Run *run, GError **error) {
  int r = px_comm_rank(c);
  g_autoptr(PxGroup) g = px_group_new_world(run->n);
  float send[2] = {10.0f * r, 10.0f * r + 1};
  return px_comm_all_gather(c, g, send, run->fresult[r], 2, PX_DTYPE_F32, error);
}

static void test_all_gather(void) {
  Run *run = run_ranks(2, 0, do_all_gather); /* fresult holds 4 floats = 2 ranks x 2 */
  assert_no_errors(run);
  for (int r = 0; r < 2; r++) {
    g_assert_cmpfloat(run->fresult[r][0], ==, 0.0f);
    g_assert_cmpfloat(run->fresult[r][1], ==, 1.0f);
    g_assert_cmpfloat(run->fresult[r][2], ==, 10.0f);
    g_assert_cmpfloat(run->fresult[r][3], ==, 11.0f);
  }
  run_free(run);
}

/* 3 and 4 ranks, into double results: recv[k*2 + j] = 10k + j */
static gboolean do_all_gather_f64(PxComm *c, Run *run, GError **error) {
  int r = px_comm_rank(c);
  g_autoptr(PxGroup) g = px_group_new_world(run->n);
  double send[2] = {10.0 * r, 10.0 * r + 1};
  return px_comm_all_gather(c, g, send, run->result[r], 2, PX_DTYPE_F64, error);
}

static void test_all_gather_f64(void) {
  for (int n = 3; n <= 4; n++) {
    Run *run = run_ranks(n, 0, do_all_gather_f64);
    assert_no_errors(run);
    for (int r = 0; r < n; r++)
      for (int k = 0; k < n; k++)
        for (int j = 0; j < 2; j++) g_assert_cmpfloat(run->result[r][k * 2 + j], ==, 10.0 * k + j);
    run_free(run);
  }
}

static gboolean do_broadcast(PxComm *c, Run *run, GError **error) {
  int r = px_comm_rank(c), root = run->n - 1;
  g_autoptr(PxGroup) g = px_group_new_world(run->n);
  for (int j = 0; j < 3; j++) run->result[r][j] = r == root ? 7.5 + j : -1;
  return px_comm_broadcast(c, g, run->result[r], 3, PX_DTYPE_F64, root, error);
}

static void test_broadcast(void) {
  for (int n = 2; n <= 4; n++) {
    Run *run = run_ranks(n, 0, do_broadcast);
    assert_no_errors(run);
    for (int r = 0; r < n; r++)
      for (int j = 0; j < 3; j++) g_assert_cmpfloat(run->result[r][j], ==, 7.5 + j);
    run_free(run);
  }
}

/* ---- point-to-point: a pipeline, each stage adds rank+1 and passes on ---- */

static gboolean do_pipeline(PxComm *c, Run *run, GError **error) {
  int r = px_comm_rank(c), n = run->n;
  double v[2] = {0, 0};
  if (r > 0 && !px_comm_recv(c, v, 2, PX_DTYPE_F64, r - 1, 0, error)) return FALSE;
  v[0] += r + 1;
  v[1] = r;
  if (r < n - 1 && !px_comm_send(c, v, 2, PX_DTYPE_F64, r + 1, 0, error)) return FALSE;
  memcpy(run->result[r], v, sizeof v);
  return TRUE;
}

static void test_send_recv(void) {
  for (int n = 2; n <= 4; n++) {
    Run *run = run_ranks(n, 0, do_pipeline);
    assert_no_errors(run);
    g_assert_cmpfloat(run->result[n - 1][0], ==, n * (n + 1) / 2.0);
    g_assert_cmpfloat(run->result[n - 1][1], ==, n - 1);
    run_free(run);
  }
}

/* Tags keep two messages to the same peer apart. */
static gboolean do_tags(PxComm *c, Run *run, GError **error) {
  int r = px_comm_rank(c);
  if (r == 0) {
    double a = 1.5, b = 2.5;
    return px_comm_send(c, &a, 1, PX_DTYPE_F64, 1, 5, error) &&
           px_comm_send(c, &b, 1, PX_DTYPE_F64, 1, 6, error);
  }
  return px_comm_recv(c, &run->result[1][0], 1, PX_DTYPE_F64, 0, 5, error) &&
         px_comm_recv(c, &run->result[1][1], 1, PX_DTYPE_F64, 0, 6, error);
}

static void test_tags(void) {
  Run *run = run_ranks(2, 0, do_tags);
  assert_no_errors(run);
  g_assert_cmpfloat(run->result[1][0], ==, 1.5);
  g_assert_cmpfloat(run->result[1][1], ==, 2.5);
  run_free(run);
}

/* ---- barrier: after it, every rank sees every other's flag ---- */

static gboolean do_barrier(PxComm *c, Run *run, GError **error) {
  int r = px_comm_rank(c);
  g_autoptr(PxGroup) g = px_group_new_world(run->n);
  g_usleep(r * 3000);
  g_atomic_int_set(&run->flags[r], 1);
  if (!px_comm_barrier(c, g, error)) return FALSE;
  int seen = 0;
  for (int k = 0; k < run->n; k++) seen += g_atomic_int_get(&run->flags[k]);
  run->result[r][0] = seen;
  return TRUE;
}

static void test_barrier(void) {
  for (int n = 2; n <= 4; n++) {
    Run *run = run_ranks(n, 0, do_barrier);
    assert_no_errors(run);
    for (int r = 0; r < n; r++) g_assert_cmpfloat(run->result[r][0], ==, n);
    run_free(run);
  }
}

/* ---- failures ---- */

/* Rank 2 skips the all_reduce: the others get the timeout sentence, not a hang. */
static gboolean do_skip(PxComm *c, Run *run, GError **error) {
  g_autoptr(PxGroup) g = px_group_new_world(run->n);
  if (px_comm_rank(c) == 2) return TRUE;
  double x = 1;
  return px_comm_all_reduce(c, g, &x, 1, PX_DTYPE_F64, error);
}

static void test_timeout(void) {
  Run *run = run_ranks(3, 0.2, do_skip);
  g_assert_no_error(run->errors[2]);
  for (int r = 0; r < 2; r++) {
    g_assert_nonnull(run->errors[r]);
    g_assert_true(g_error_matches(run->errors[r], PX_COMM_ERROR, PX_COMM_ERROR_TIMEOUT) ||
                  g_error_matches(run->errors[r], PX_COMM_ERROR, PX_COMM_ERROR_ABORTED));
    g_assert_nonnull(strstr(run->errors[r]->message,
                            "all_reduce on group world[0,1,2]: rank 2 never arrived after 0.2 s"));
  }
  /* after the abort, any call fails at once */
  g_autoptr(PxComm) c = px_comm_local_new(run->world, 0);
  g_autoptr(PxGroup) g = px_group_new_world(3);
  g_autoptr(GError) error = NULL;
  g_assert_false(px_comm_barrier(c, g, &error));
  g_assert_error(error, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED);
  run_free(run);
}

/* Rank 2 fails outside the communicator and aborts the world: the others,
 * waiting in an all_reduce with a 60 s timeout, fail with its reason (an
 * ABORTED error, not the TIMEOUT they would get after 60 s). */
static gboolean do_fail_and_abort(PxComm *c, Run *run, GError **error) {
  g_autoptr(PxGroup) g = px_group_new_world(run->n);
  if (px_comm_rank(c) == 2) {
    px_local_world_abort(run->world, "rank 2: out of memory");
    return TRUE;
  }
  double x = 1;
  return px_comm_all_reduce(c, g, &x, 1, PX_DTYPE_F64, error);
}

static void test_abort(void) {
  Run *run = run_ranks(3, 60, do_fail_and_abort);
  for (int r = 0; r < 2; r++) {
    g_assert_error(run->errors[r], PX_COMM_ERROR, PX_COMM_ERROR_ABORTED);
    g_assert_nonnull(strstr(run->errors[r]->message, "rank 2: out of memory"));
  }
  run_free(run);
}

/* One rank's sends posted from 8 helper threads at once (distinct tags) while
 * the peer receives them in reverse order: each arrives under its tag. */
typedef struct {
  PxComm *c;
  int tag;
  double value;
  gboolean ok;
} SendJob;

static gpointer send_job(gpointer p) {
  SendJob *j = p;
  j->ok = px_comm_send(j->c, &j->value, 1, PX_DTYPE_F64, 1, j->tag, NULL);
  return NULL;
}

static gboolean do_threaded_sends(PxComm *c, Run *run, GError **error) {
  if (px_comm_rank(c) == 0) {
    SendJob jobs[8];
    GThread *th[8];
    for (int k = 0; k < 8; k++) {
      jobs[k] = (SendJob){c, 100 + k, 10.0 * k + 0.5, FALSE};
      th[k] = g_thread_new("send", send_job, &jobs[k]);
    }
    for (int k = 0; k < 8; k++) {
      g_thread_join(th[k]);
      run->flags[k] = jobs[k].ok;
    }
    return TRUE;
  }
  for (int k = 7; k >= 0; k--)
    if (!px_comm_recv(c, &run->result[1][k], 1, PX_DTYPE_F64, 0, 100 + k, error)) return FALSE;
  return TRUE;
}

static void test_threaded_sends(void) {
  Run *run = run_ranks(2, 30, do_threaded_sends);
  assert_no_errors(run);
  for (int k = 0; k < 8; k++) {
    g_assert_true(run->flags[k]);
    g_assert_cmpfloat(run->result[1][k], ==, 10.0 * k + 0.5);
  }
  run_free(run);
}

/* A recv nobody sends to times out naming the sender. */
static gboolean do_lonely_recv(PxComm *c, Run *run, GError **error) {
  (void)run;
  double x;
  if (px_comm_rank(c) == 1) return TRUE;
  return px_comm_recv(c, &x, 1, PX_DTYPE_F64, 1, 3, error);
}

static void test_recv_timeout(void) {
  Run *run = run_ranks(2, 0.1, do_lonely_recv);
  g_assert_error(run->errors[0], PX_COMM_ERROR, PX_COMM_ERROR_TIMEOUT);
  g_assert_cmpstr(run->errors[0]->message, ==,
                  "recv on rank 0 from rank 1 (tag 3): rank 1 never arrived after 0.1 s");
  run_free(run);
}

static gboolean do_mismatch(PxComm *c, Run *run, GError **error) {
  g_autoptr(PxGroup) g = px_group_new_world(run->n);
  double x[2] = {1, 2};
  if (px_comm_rank(c) == 0) return px_comm_all_reduce(c, g, x, 2, PX_DTYPE_F64, error);
  return px_comm_broadcast(c, g, x, 2, PX_DTYPE_F64, 0, error);
}

static void test_mismatch(void) {
  Run *run = run_ranks(2, 5, do_mismatch);
  for (int r = 0; r < 2; r++) {
    g_assert_error(run->errors[r], PX_COMM_ERROR, PX_COMM_ERROR_MISMATCH);
    g_assert_nonnull(strstr(run->errors[r]->message, "rank 0 called all_reduce while rank 1 called broadcast"));
  }
  run_free(run);
}

static void test_not_in_group(void) {
  g_autoptr(PxLocalWorld) w = px_local_world_new(4, 1);
  g_autoptr(PxComm) c = px_comm_local_new(w, 3);
  g_autoptr(PxGroup) g = px_group_new("dp", 2, (int[]){0, 2});
  g_autoptr(GError) error = NULL;
  double x = 0;
  g_assert_false(px_comm_all_reduce(c, g, &x, 1, PX_DTYPE_F64, &error));
  g_assert_error(error, PX_COMM_ERROR, PX_COMM_ERROR_INVALID);
  g_assert_cmpstr(error->message, ==, "all_reduce on group dp[0,2]: rank 3 is not in it");
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/comm/local/all-reduce", test_all_reduce);
  g_test_add_func("/comm/local/all-reduce/rank-order", test_all_reduce_order);
  g_test_add_func("/comm/local/all-reduce/subgroups", test_subgroups);
  g_test_add_func("/comm/local/reduce-scatter", test_reduce_scatter);
  g_test_add_func("/comm/local/all-gather/f32", test_all_gather);
  g_test_add_func("/comm/local/all-gather/f64", test_all_gather_f64);
  g_test_add_func("/comm/local/broadcast", test_broadcast);
  g_test_add_func("/comm/local/send-recv/pipeline", test_send_recv);
  g_test_add_func("/comm/local/send-recv/tags", test_tags);
  g_test_add_func("/comm/local/barrier", test_barrier);
  g_test_add_func("/comm/local/timeout/collective", test_timeout);
  g_test_add_func("/comm/local/timeout/recv", test_recv_timeout);
  g_test_add_func("/comm/local/abort", test_abort);
  g_test_add_func("/comm/local/send-recv/threads", test_threaded_sends);
  g_test_add_func("/comm/local/mismatch", test_mismatch);
  g_test_add_func("/comm/local/not-in-group", test_not_in_group);
  return g_test_run();
}
