/* test_comm_tcp.c — the `tcp` communicator on loopback: every rank is a thread
 * of this process with a communicator of its own (its own sockets, readers and
 * rendezvous), except where a rank must die, which is a forked process.
 * Expected values are closed forms worked by hand (sums of arithmetic series),
 * and reductions are compared bit for bit with the sum taken in rank order. */
#include <glib.h>
#include <gio/gio.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <math.h>
#include "comm_tcp.h"
#include "runtime.h"
#include "schedule.h"

static int free_port(void) {
  int port = px_tcp_free_port();
  g_assert_cmpint(port, >, 0);
  return port;
}

typedef struct World World;
typedef void (*RankFn)(PxComm *c, World *W, int rank);

struct World {
  int n, port;
  double timeout;
  RankFn fn;
  int skip;         /* a rank that makes no communicator (-1: none) */
  GMutex lock;
  GCond cond;
  gboolean released;
  GError *errors[8];  /* the error of each rank's first failing call */
  double results[8];  /* whatever a test wants to compare across ranks */
  guint8 bits[8][64];
};

typedef struct {
  World *W;
  int rank;
} Arg;

static gpointer rank_main(gpointer data) {
  Arg *a = data;
  World *W = a->W;
  if (a->rank == W->skip) return NULL;
  GError *error = NULL;
  PxComm *c = px_comm_tcp_new("127.0.0.1", W->port, a->rank, W->n, W->timeout, &error);
  if (!c) {
    W->errors[a->rank] = error;
    return NULL;
  }
  g_assert_cmpstr(px_comm_backend(c), ==, "tcp");
  g_assert_cmpint(px_comm_rank(c), ==, a->rank);
  g_assert_cmpint(px_comm_size(c), ==, W->n);
  W->fn(c, W, a->rank);
  px_comm_free(c);
  return NULL;
}

static void run_world(World *W, int n, double timeout, RankFn fn) {
  W->n = n;
  W->port = free_port();
  W->timeout = timeout;
  W->fn = fn;
  g_mutex_init(&W->lock);
  g_cond_init(&W->cond);
  GThread *th[8];
  Arg args[8];
  for (int r = 0; r < n; r++) {
    args[r] = (Arg){W, r};
    th[r] = g_thread_new("rank", rank_main, &args[r]);
  }
  for (int r = 0; r < n; r++) g_thread_join(th[r]);
  g_mutex_clear(&W->lock);
  g_cond_clear(&W->cond);
}

static void world_clear(World *W) {
  for (int r = 0; r < 8; r++) g_clear_error(&W->errors[r]);
}

static World *world_new(void) {
  World *W = g_new0(World, 1);
  W->skip = -1;
  return W;
}

static void world_free(World *W) {
  world_clear(W);
  g_free(W);
}

#define OK(call)                                                                                                   \
  do {                                                                                                             \
    g_autoptr(GError) e_ = NULL;                                                                                   \
    gboolean ok_ = (call);                                                                                         \
    g_assert_no_error(e_);                                                                                         \
    g_assert_true(ok_);                                                                                            \
  } while (0)
#define E (&e_)

/* ---- collectives ---- */

/* rank r holds (r+1)(i+1): the sum is (i+1) n(n+1)/2, the max (i+1) n. */
static void all_reduce_body(PxComm *c, World *W, int r) {
  int n = W->n;
  enum { N = 5 };
  float f[N];
  double d[N];
  gint32 k[N];
  for (int i = 0; i < N; i++) f[i] = (float)((r + 1) * (i + 1)), d[i] = f[i], k[i] = (r + 1) * (i + 1);
  OK(px_comm_all_reduce(c, f, N, PX_DTYPE_F32, PX_RED_SUM, NULL, E));
  OK(px_comm_all_reduce(c, d, N, PX_DTYPE_F64, PX_RED_MAX, NULL, E));
  OK(px_comm_all_reduce(c, k, N, PX_DTYPE_I32, PX_RED_SUM, NULL, E));
  for (int i = 0; i < N; i++) {
    g_assert_cmpfloat(f[i], ==, (float)((i + 1) * n * (n + 1) / 2));
    g_assert_cmpfloat(d[i], ==, (double)((i + 1) * n));
    g_assert_cmpint(k[i], ==, (i + 1) * n * (n + 1) / 2);
  }
  /* 0.1 (r+1) does not add exactly: every rank must get the rank-order sum, bit for bit */
  float x[3] = {0.1f * (float)(r + 1), 1e8f * (float)(r % 2 ? -1 : 1), 3.3f / (float)(r + 1)};
  OK(px_comm_all_reduce(c, x, 3, PX_DTYPE_F32, PX_RED_SUM, NULL, E));
  float want[3] = {0, 0, 0};
  for (int q = 0; q < n; q++) {
    float y[3] = {0.1f * (float)(q + 1), 1e8f * (float)(q % 2 ? -1 : 1), 3.3f / (float)(q + 1)};
    for (int i = 0; i < 3; i++) want[i] = q ? want[i] + y[i] : y[i];
  }
  g_assert_cmpmem(x, sizeof x, want, sizeof want);
}

/* send[j] = 100 r + j over n*3 elements; rank i gets sum_r (100 r + 3 i + k) = 50 n(n-1) + n(3i+k). */
static void reduce_scatter_body(PxComm *c, World *W, int r) {
  int n = W->n;
  double send[24], recv[3];
  for (int j = 0; j < 3 * n; j++) send[j] = 100.0 * r + j;
  OK(px_comm_reduce_scatter(c, send, recv, 3, PX_DTYPE_F64, NULL, E));
  for (int k = 0; k < 3; k++) g_assert_cmpfloat(recv[k], ==, 50.0 * n * (n - 1) + n * (3.0 * r + k));
  /* in place: NCCL's recv = send + rank * count */
  gint32 buf[24];
  for (int j = 0; j < 3 * n; j++) buf[j] = 100 * r + j;
  OK(px_comm_reduce_scatter(c, buf, buf + 3 * r, 3, PX_DTYPE_I32, NULL, E));
  for (int k = 0; k < 3; k++) g_assert_cmpint(buf[3 * r + k], ==, 50 * n * (n - 1) + n * (3 * r + k));
}

/* send[k] = 10 r + k; recv[3 j + k] = 10 j + k. */
static void all_gather_body(PxComm *c, World *W, int r) {
  int n = W->n;
  gint32 send[3], recv[24];
  for (int k = 0; k < 3; k++) send[k] = 10 * r + k;
  OK(px_comm_all_gather(c, send, recv, 3, PX_DTYPE_I32, NULL, E));
  for (int j = 0; j < n; j++)
    for (int k = 0; k < 3; k++) g_assert_cmpint(recv[3 * j + k], ==, 10 * j + k);
  /* in place: send = recv + rank * count */
  float buf[24];
  for (int j = 0; j < 3 * n; j++) buf[j] = -1;
  for (int k = 0; k < 3; k++) buf[3 * r + k] = (float)(10 * r + k);
  OK(px_comm_all_gather(c, buf + 3 * r, buf, 3, PX_DTYPE_F32, NULL, E));
  for (int j = 0; j < 3 * n; j++) g_assert_cmpfloat(buf[j], ==, (float)(10 * (j / 3) + j % 3));
}

/* From every root in turn: the root's 7 + root + k. */
static void broadcast_body(PxComm *c, World *W, int r) {
  for (int root = 0; root < W->n; root++) {
    double buf[4];
    for (int k = 0; k < 4; k++) buf[k] = r == root ? 7.0 + root + k : -1.0;
    OK(px_comm_broadcast(c, buf, 4, PX_DTYPE_F64, root, NULL, E));
    for (int k = 0; k < 4; k++) g_assert_cmpfloat(buf[k], ==, 7.0 + root + k);
  }
  OK(px_comm_barrier(c, NULL, E));
  /* zero elements is a valid call */
  OK(px_comm_all_reduce(c, NULL, 0, PX_DTYPE_F32, PX_RED_SUM, NULL, E));
}

static void test_collectives(gconstpointer data) {
  RankFn fn = (RankFn)data;
  for (int n = 1; n <= 4; n++) {
    World *W = world_new();
    run_world(W, n, 30, fn);
    for (int r = 0; r < n; r++) g_assert_no_error(W->errors[r]);
    world_free(W);
  }
}

/* ---- point-to-point ---- */

/* A ring inside a group (everyone sends right and receives from the left),
 * then three messages queued before the receiver asks: in order. */
static void p2p_body(PxComm *c, World *W, int r) {
  int n = W->n, right = (r + 1) % n, left = (r + n - 1) % n;
  gint32 out[2] = {r, 1000 + r}, in[2] = {-1, -1};
  px_comm_group_start(c);
  OK(px_comm_send(c, out, 2, PX_DTYPE_I32, right, NULL, E));
  OK(px_comm_recv(c, in, 2, PX_DTYPE_I32, left, NULL, E));
  OK(px_comm_group_end(c, NULL, E));
  g_assert_cmpint(in[0], ==, left);
  g_assert_cmpint(in[1], ==, 1000 + left);
  if (r == 0) {
    for (int i = 1; i <= 3; i++) {
      double x[2] = {i, -i};
      OK(px_comm_send(c, x, 2, PX_DTYPE_F64, n - 1, NULL, E));
    }
  }
  OK(px_comm_barrier(c, NULL, E)); /* every send of rank 0 is out before rank n-1 receives */
  if (r == n - 1) {
    for (int i = 1; i <= 3; i++) {
      double x[2];
      OK(px_comm_recv(c, x, 2, PX_DTYPE_F64, 0, NULL, E));
      g_assert_cmpfloat(x[0], ==, i);
      g_assert_cmpfloat(x[1], ==, -i);
    }
  }
  /* 1 MiB each way between 0 and 1 at once: eager sends do not deadlock */
  if (r < 2) {
    gsize count = 1 << 18;
    g_autofree float *big = g_new(float, count), *got = g_new(float, count);
    for (gsize i = 0; i < count; i++) big[i] = (float)(r * 1000000 + (int)i);
    OK(px_comm_send(c, big, count, PX_DTYPE_F32, 1 - r, NULL, E));
    OK(px_comm_recv(c, got, count, PX_DTYPE_F32, 1 - r, NULL, E));
    for (gsize i = 0; i < count; i += 4099) g_assert_cmpfloat(got[i], ==, (float)((1 - r) * 1000000 + (int)i));
  }
}

static void test_p2p(void) {
  for (int n = 2; n <= 4; n++) {
    World *W = world_new();
    run_world(W, n, 30, p2p_body);
    for (int r = 0; r < n; r++) g_assert_no_error(W->errors[r]);
    world_free(W);
  }
}

/* ---- splits ---- */

/* color r % 2, key -r: the members in reverse rank order; the child's
 * all-reduce of the world ranks is the sum of one parity class; a further
 * split of the child; a rank with no color gets NULL. */
static void split_body(PxComm *c, World *W, int r) {
  int n = W->n;
  g_autoptr(GError) error = NULL;
  g_autoptr(PxComm) half = px_comm_split(c, r % 2, -r, "half", &error);
  g_assert_no_error(error);
  int members = (n - r % 2 + 1) / 2, above = 0, sum = 0;
  for (int q = r % 2; q < n; q += 2) sum += q, above += q > r;
  g_assert_cmpint(px_comm_size(half), ==, members);
  g_assert_cmpint(px_comm_rank(half), ==, above);
  gint32 x = r;
  OK(px_comm_all_reduce(half, &x, 1, PX_DTYPE_I32, PX_RED_SUM, NULL, E));
  g_assert_cmpint(x, ==, sum);
  /* the parent still works, with traffic of the child in between */
  gint32 y = r;
  OK(px_comm_all_reduce(c, &y, 1, PX_DTYPE_I32, PX_RED_MAX, NULL, E));
  g_assert_cmpint(y, ==, n - 1);
  g_autoptr(PxComm) solo = px_comm_split(half, px_comm_rank(half), 0, "solo", &error);
  g_assert_no_error(error);
  g_assert_cmpint(px_comm_size(solo), ==, 1);
  g_autoptr(PxComm) none = px_comm_split(c, r == 0 ? PX_COMM_NO_COLOR : 0, r, "rest", &error);
  g_assert_no_error(error);
  if (r == 0) g_assert_null(none);
  else {
    g_assert_cmpint(px_comm_size(none), ==, n - 1);
    gint32 z = 1;
    OK(px_comm_all_reduce(none, &z, 1, PX_DTYPE_I32, PX_RED_SUM, NULL, E));
    g_assert_cmpint(z, ==, n - 1);
  }
}

static void test_split(void) {
  for (int n = 2; n <= 4; n++) {
    World *W = world_new();
    run_world(W, n, 30, split_body);
    for (int r = 0; r < n; r++) g_assert_no_error(W->errors[r]);
    world_free(W);
  }
}

/* ---- refusals and failures ---- */

static void mismatch_body(PxComm *c, World *W, int r) {
  (void)W;
  if (r == 0) {
    gint32 x[3] = {1, 2, 3};
    OK(px_comm_send(c, x, 3, PX_DTYPE_I32, 1, NULL, E));
  } else if (r == 1) {
    gint32 x[4];
    g_autoptr(GError) error = NULL;
    g_assert_false(px_comm_recv(c, x, 4, PX_DTYPE_I32, 0, NULL, &error));
    g_assert_error(error, PX_COMM_ERROR, PX_COMM_ERROR_MISMATCH);
    g_assert_cmpstr(error->message, ==,
                    "recv on rank 1 from rank 0 on world[0,1,2]: rank 0 sent 3 i32, the receive expects 4 i32");
  }
  /* rank 2 passes 5 elements, the others 4: every rank is told, and the world is still usable */
  float f[5] = {1, 1, 1, 1, 1};
  g_autoptr(GError) error = NULL;
  g_assert_false(px_comm_all_reduce(c, f, r == 2 ? 5 : 4, PX_DTYPE_F32, PX_RED_SUM, NULL, &error));
  g_assert_error(error, PX_COMM_ERROR, PX_COMM_ERROR_MISMATCH);
  g_assert_cmpstr(error->message, ==, "all_reduce on world[0,1,2]: rank 0 passed 4 f32 while rank 2 passed 5 f32");
  g_clear_error(&error);
  g_assert_false(px_comm_broadcast(c, f, 1, PX_DTYPE_F32, r == 1 ? 1 : 0, NULL, &error));
  g_assert_cmpstr(error->message, ==, "broadcast on world[0,1,2]: rank 0 named root 0 while rank 1 named root 1");
  g_clear_error(&error);
  OK(px_comm_all_reduce(c, f, 1, PX_DTYPE_F32, PX_RED_SUM, NULL, E));
  g_assert_cmpfloat(f[0], ==, 3.0f);
}

static void test_mismatch(void) {
  World *W = world_new();
  run_world(W, 3, 30, mismatch_body);
  for (int r = 0; r < 3; r++) g_assert_no_error(W->errors[r]);
  world_free(W);
}

/* Rank 2 never comes: the rendezvous names it on every rank that came. */
static void never_body(PxComm *c, World *W, int r) { (void)c, (void)W, (void)r; g_assert_not_reached(); }

static void test_rendezvous_timeout(void) {
  World *W = world_new();
  W->skip = 2;
  run_world(W, 3, 1, never_body);
  for (int r = 0; r < 2; r++) {
    g_assert_error(W->errors[r], PX_COMM_ERROR, PX_COMM_ERROR_TIMEOUT);
    g_assert_nonnull(strstr(W->errors[r]->message, "rank 2 never registered after 1 s"));
  }
  g_autofree char *want = g_strdup_printf("tcp rendezvous at 127.0.0.1:%d: rank 2 never registered after 1 s", W->port);
  g_assert_cmpstr(W->errors[0]->message, ==, want);
  g_assert_cmpstr(W->errors[1]->message, ==, want);
  world_free(W);
}

/* Rank 2 joins but never calls the all-reduce (it waits for the others to be
 * done): rank 0 names it, rank 1 is aborted with rank 0's sentence, and so is
 * rank 2's next call. */
static void missing_body(PxComm *c, World *W, int r) {
  g_autoptr(GError) error = NULL;
  if (r < 2) {
    float x = 1;
    g_assert_false(px_comm_all_reduce(c, &x, 1, PX_DTYPE_F32, PX_RED_SUM, NULL, &error));
    g_mutex_lock(&W->lock);
    W->errors[r] = g_steal_pointer(&error);
    if (W->errors[0] && W->errors[1]) W->released = TRUE;
    g_cond_broadcast(&W->cond);
    g_mutex_unlock(&W->lock);
  } else {
    g_mutex_lock(&W->lock);
    while (!W->released) g_cond_wait(&W->cond, &W->lock);
    g_mutex_unlock(&W->lock);
    /* rank 0's abort may still be on its way: a call waits for it */
    g_assert_false(px_comm_barrier(c, NULL, &error));
    W->errors[2] = g_steal_pointer(&error);
    g_assert_false(px_comm_check_async(c, NULL));
  }
}

static void test_collective_timeout(void) {
  World *W = world_new();
  run_world(W, 3, 2, missing_body);
  const char *why = "all_reduce on world[0,1,2]: rank 2 never arrived after 2 s";
  g_assert_error(W->errors[0], PX_COMM_ERROR, PX_COMM_ERROR_TIMEOUT);
  g_assert_cmpstr(W->errors[0]->message, ==, why);
  g_assert_error(W->errors[1], PX_COMM_ERROR, PX_COMM_ERROR_ABORTED);
  g_assert_nonnull(strstr(W->errors[1]->message, why));
  g_assert_error(W->errors[2], PX_COMM_ERROR, PX_COMM_ERROR_ABORTED);
  g_assert_nonnull(strstr(W->errors[2]->message, why));
  world_free(W);
}

/* Rank 1 aborts: the others' calls, waiting or later, fail with its reason. */
static void abort_body(PxComm *c, World *W, int r) {
  g_autoptr(GError) error = NULL;
  if (r == 1) {
    px_comm_abort(c, "rank 1: kernel failed");
    g_assert_false(px_comm_check_async(c, &error));
    g_assert_cmpstr(error->message, ==, "communicator aborted: rank 1: kernel failed");
    return;
  }
  double x[2] = {1, 2};
  g_assert_false(px_comm_all_reduce(c, x, 2, PX_DTYPE_F64, PX_RED_SUM, NULL, &error));
  W->errors[r] = g_steal_pointer(&error);
  g_assert_false(px_comm_barrier(c, NULL, &error));
  g_assert_error(error, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED);
}

static void test_abort(void) {
  World *W = world_new();
  run_world(W, 4, 30, abort_body);
  for (int r = 0; r < 4; r++) {
    if (r == 1) continue;
    g_assert_error(W->errors[r], PX_COMM_ERROR, PX_COMM_ERROR_ABORTED);
    g_autofree char *want =
        g_strdup_printf("all_reduce on world[0,1,2,3] on rank %d: communicator aborted: rank 1: kernel failed", r);
    g_assert_cmpstr(W->errors[r]->message, ==, want);
  }
  world_free(W);
}

/* Rank 2 is a process killed right after the rendezvous: the other ranks'
 * all-reduce fails at once, naming it (the deadline, 30 s, is not what ends it). */
static void dead_body(PxComm *c, World *W, int r) {
  float x = 1;
  g_autoptr(GError) error = NULL;
  g_assert_false(px_comm_all_reduce(c, &x, 1, PX_DTYPE_F32, PX_RED_SUM, NULL, &error));
  W->errors[r] = g_steal_pointer(&error);
}

static void test_dead_peer(void) {
  World *W = world_new();
  W->skip = 2;
  int port = free_port();
  pid_t pid = fork();
  g_assert_cmpint(pid, >=, 0);
  if (pid == 0) {
    PxComm *c = px_comm_tcp_new("127.0.0.1", port, 2, 3, 30, NULL);
    (void)c;
    raise(SIGKILL);
    _exit(3);
  }
  /* run_world with the port the child uses */
  W->n = 3, W->port = port, W->timeout = 30, W->fn = dead_body;
  g_mutex_init(&W->lock);
  g_cond_init(&W->cond);
  GThread *th[2];
  Arg args[2];
  for (int r = 0; r < 2; r++) args[r] = (Arg){W, r}, th[r] = g_thread_new("rank", rank_main, &args[r]);
  for (int r = 0; r < 2; r++) g_thread_join(th[r]);
  int status;
  g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
  g_assert_true(WIFSIGNALED(status));
  for (int r = 0; r < 2; r++) {
    g_assert_error(W->errors[r], PX_COMM_ERROR, PX_COMM_ERROR_ABORTED);
    g_autofree char *want = g_strdup_printf(
        "all_reduce on world[0,1,2] on rank %d: communicator aborted: rank 2 disconnected: its process exited or died",
        r);
    g_assert_cmpstr(W->errors[r]->message, ==, want);
  }
  g_mutex_clear(&W->lock);
  g_cond_clear(&W->cond);
  world_free(W);
}

static void test_bad_arguments(void) {
  g_autoptr(GError) error = NULL;
  g_assert_null(px_comm_tcp_new("127.0.0.1", 29500, 3, 3, 1, &error));
  g_assert_error(error, PX_COMM_ERROR, PX_COMM_ERROR_INVALID);
  g_assert_cmpstr(error->message, ==, "tcp communicator: rank 3 is outside a world of 3 ranks");
  g_clear_error(&error);
  g_assert_null(px_comm_tcp_new(NULL, 29500, 0, 2, 1, &error));
  g_assert_error(error, PX_COMM_ERROR, PX_COMM_ERROR_INVALID);
  g_clear_error(&error);
  PxLaunchEnv env;
  px_launch_env_init(&env);
  env.rank = 0, env.world = 2;
  g_assert_null(px_comm_tcp_new_from_env(&env, 1, &error));
  g_assert_error(error, PX_COMM_ERROR, PX_COMM_ERROR_INVALID);
  g_assert_nonnull(strstr(error->message, "needs MASTER_ADDR"));
}

/* ---- the runtime over tcp ---- */

/* One rank per thread, each with its own tcp communicator and
 * px_runtime_new_rank: the losses of a layout equal the single-rank run's to
 * 1e-5 relative (fp32), as for `local` in test_runtime.c. */
#define RT_STEPS 3

typedef struct {
  int dp, tp, pp, vpp, zero;
  const char *schedule;
  PxCheckpoint ckpt;
  gboolean sp;
} RtLayout;

typedef struct {
  const PxModel *model;
  const RtLayout *l;
  int port, rank, world;
  int fault_rank; /* 0: none; else this rank fails at instruction 5 of step 1 */
  double loss[RT_STEPS];
  GError *error;
} RtArg;

static void rt_plan(const RtLayout *l, PxPlan *p, PxRunOptions *o) {
  px_plan_init(p);
  p->dp = l->dp, p->tp = l->tp, p->pp = l->pp, p->vpp = l->vpp;
  g_assert_true(px_schedule_parse(l->schedule, &p->schedule));
  p->zero = l->zero, p->ckpt = l->ckpt, p->seq_parallel = l->sp;
  p->mbs = 2, p->gbs = 8, p->seq = 16, p->ckpt_interval = 1;
  p->precision = PX_PREC_FP32;
  px_run_options_init(o);
  o->dtype = PX_DTYPE_F32;
  o->seed = 7, o->lr = 3e-3, o->warmup = 1, o->decay_steps = RT_STEPS, o->timeout_s = 60;
}

static gboolean rt_steps(PxRuntime *rt, double *loss, GError **error) {
  for (int s = 0; s < RT_STEPS; s++) {
    PxStepResult r;
    if (!px_runtime_step(rt, &r, error)) return FALSE;
    loss[s] = r.loss;
  }
  return TRUE;
}

static gpointer rt_rank(gpointer data) {
  RtArg *a = data;
  PxPlan plan;
  PxRunOptions opt;
  rt_plan(a->l, &plan, &opt);
  if (a->fault_rank) opt.fault_rank = a->fault_rank, opt.fault_instr = 5;
  PxComm *world = px_comm_tcp_new("127.0.0.1", a->port, a->rank, a->world, 60, &a->error);
  PxRuntime *rt = world ? px_runtime_new_rank(a->model, &plan, &opt, world, &a->error) : NULL;
  if (rt) rt_steps(rt, a->loss, &a->error);
  px_runtime_free(rt);
  if (world) px_comm_free(world);
  px_plan_clear(&plan);
  return NULL;
}

static void test_runtime_parity(void) {
  static const RtLayout layouts[] = {
    {2, 1, 2, 1, 1, "1f1b", PX_CKPT_NONE, FALSE},
    {1, 2, 2, 2, 0, "interleaved", PX_CKPT_SELECTIVE, TRUE},
    {2, 2, 1, 1, 3, "gpipe", PX_CKPT_FULL, FALSE},
  };
  g_autoptr(GError) error = NULL;
  g_autoptr(PxModel) model = px_model_load("tiny-gpt", &error);
  g_assert_no_error(error);
  RtLayout single = {1, 1, 1, 1, 0, "1f1b", PX_CKPT_NONE, FALSE};
  PxPlan plan;
  PxRunOptions opt;
  rt_plan(&single, &plan, &opt);
  double ref[RT_STEPS];
  PxRuntime *rt = px_runtime_new(model, &plan, &opt, &error);
  g_assert_no_error(error);
  g_assert_true(rt_steps(rt, ref, &error));
  px_runtime_free(rt);
  px_plan_clear(&plan);
  g_assert_cmpfloat(ref[RT_STEPS - 1], <, ref[0]);
  for (gsize i = 0; i < G_N_ELEMENTS(layouts); i++) {
    const RtLayout *l = &layouts[i];
    int n = l->dp * l->tp * l->pp, port = free_port();
    RtArg args[8];
    GThread *th[8];
    for (int r = 0; r < n; r++) {
      args[r] = (RtArg){.model = model, .l = l, .port = port, .rank = r, .world = n};
      th[r] = g_thread_new("rank", rt_rank, &args[r]);
    }
    for (int r = 0; r < n; r++) g_thread_join(th[r]);
    for (int r = 0; r < n; r++) {
      g_assert_no_error(args[r].error);
      for (int s = 0; s < RT_STEPS; s++) {
        double rel = fabs(args[r].loss[s] - ref[s]) / fabs(ref[s]);
        if (rel > 1e-5)
          g_error("tcp dp%d tp%d pp%d %s: rank %d step %d loss %.10g, single rank %.10g", l->dp, l->tp, l->pp,
                  l->schedule, r, s + 1, args[r].loss[s], ref[s]);
      }
    }
  }
}

/* A rank that fails mid-step over tcp: every rank's step fails at once with
 * its sentence (the 60 s deadline is not what ends it). */
static void test_runtime_failure(void) {
  static const RtLayout l = {2, 1, 2, 1, 1, "1f1b", PX_CKPT_NONE, FALSE};
  g_autoptr(GError) error = NULL;
  g_autoptr(PxModel) model = px_model_load("tiny-gpt", &error);
  g_assert_no_error(error);
  int n = 4, port = free_port();
  RtArg args[4];
  GThread *th[4];
  for (int r = 0; r < n; r++) {
    args[r] = (RtArg){.model = model, .l = &l, .port = port, .rank = r, .world = n, .fault_rank = 3};
    th[r] = g_thread_new("rank", rt_rank, &args[r]);
  }
  for (int r = 0; r < n; r++) g_thread_join(th[r]);
  for (int r = 0; r < n; r++) {
    g_assert_nonnull(args[r].error);
    g_test_message("rank %d: %s", r, args[r].error->message);
    g_assert_nonnull(strstr(args[r].error->message, "rank 3 (stage 1)"));
    g_assert_nonnull(strstr(args[r].error->message, "injected fault"));
    g_assert_null(strstr(args[r].error->message, "never"));
    g_clear_error(&args[r].error);
  }
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_data_func("/comm_tcp/all_reduce", all_reduce_body, test_collectives);
  g_test_add_data_func("/comm_tcp/reduce_scatter", reduce_scatter_body, test_collectives);
  g_test_add_data_func("/comm_tcp/all_gather", all_gather_body, test_collectives);
  g_test_add_data_func("/comm_tcp/broadcast_barrier", broadcast_body, test_collectives);
  g_test_add_func("/comm_tcp/p2p", test_p2p);
  g_test_add_func("/comm_tcp/split", test_split);
  g_test_add_func("/comm_tcp/mismatch", test_mismatch);
  g_test_add_func("/comm_tcp/timeout/rendezvous", test_rendezvous_timeout);
  g_test_add_func("/comm_tcp/timeout/collective", test_collective_timeout);
  g_test_add_func("/comm_tcp/abort", test_abort);
  g_test_add_func("/comm_tcp/dead_peer", test_dead_peer);
  g_test_add_func("/comm_tcp/bad_arguments", test_bad_arguments);
  g_test_add_func("/comm_tcp/runtime/parity", test_runtime_parity);
  g_test_add_func("/comm_tcp/runtime/failure", test_runtime_failure);
  return g_test_run();
}
