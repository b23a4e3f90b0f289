/* bench_comm.c — communicator bandwidth, nccl-tests style: all_reduce (sum),
 * all_gather, reduce_scatter and send/recv (a ring: every rank sends to r+1
 * and receives from r-1 in one group) of f32 by size, on any implementation:
 *
 *   bench_comm --comm local -n 4            4 thread-ranks of this process
 *   bench_comm --comm tcp -n 4              4 thread-ranks, each with its own
 *                                           sockets over loopback
 *   mpirun -n 4 bench_comm --comm mpi       one process per rank
 *
 * Sizes go from -b to -e bytes by a factor -f (nccl-tests' -b 8 -e 64M -f 4,
 * plus -e itself when the factor steps over it). The size S of a row is
 * nccl-tests': the buffer of all_reduce and send/recv, the whole receive of
 * all_gather and the whole send of reduce_scatter (count per rank × ranks ×
 * 4 B; at least one element per rank, so the smallest rows may exceed -b).
 * Each size is checked once against its closed form (the benchmark stops on
 * wrong data), warmed up once, then timed over a fixed number of blocking
 * calls (the same on every rank), starting after a barrier. time is the mean
 * per op, averaged over ranks as nccl-tests does; algbw = S / time, busbw =
 * algbw × 2(n-1)/n for all_reduce, (n-1)/n for all_gather and
 * reduce_scatter, 1 for send/recv (nccl-tests doc/PERFORMANCE.md). GB/s are
 * 10^9 B/s. Figures are printed, never asserted. */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "comm.h"
#include "comm_tcp.h"

typedef enum { OP_ALL_REDUCE, OP_ALL_GATHER, OP_REDUCE_SCATTER, OP_SEND_RECV, N_OPS } Op;
static const char *op_names[N_OPS] = {"all_reduce (sum)", "all_gather", "reduce_scatter", "send_recv (ring)"};

typedef struct {
  gint64 min_bytes, max_bytes;
  int factor;
} Opts;

static Opts opts = {8, 64 << 20, 4};

/* busbw / algbw (nccl-tests doc/PERFORMANCE.md) */
static double bus_factor(Op op, int n) {
  switch (op) {
  case OP_ALL_REDUCE: return 2.0 * (n - 1) / n;
  case OP_ALL_GATHER:
  case OP_REDUCE_SCATTER: return (double)(n - 1) / n;
  default: return 1.0;
  }
}

/* Calls: a fixed count per size, so that every rank makes the same number;
 * about 256 MiB moved per size, between 5 and 200 calls. */
static int iters_for(gint64 bytes) { return (int)CLAMP((256 << 20) / MAX(bytes, 1), 5, 200); }

typedef struct {
  gsize count;    /* per call: the buffer (all_reduce, send/recv) or per rank (all_gather, reduce_scatter) */
  gint64 bytes;   /* S */
  float *a, *b;   /* send / receive (all_reduce: a only) */
} Bufs;

static gboolean run_op(PxComm *c, Op op, Bufs *x, GError **error) {
  int r = px_comm_rank(c), n = px_comm_size(c);
  switch (op) {
  case OP_ALL_REDUCE: return px_comm_all_reduce(c, x->a, x->count, PX_DTYPE_F32, PX_RED_SUM, NULL, error);
  case OP_ALL_GATHER: return px_comm_all_gather(c, x->a, x->b, x->count, PX_DTYPE_F32, NULL, error);
  case OP_REDUCE_SCATTER: return px_comm_reduce_scatter(c, x->a, x->b, x->count, PX_DTYPE_F32, NULL, error);
  case OP_SEND_RECV:
    px_comm_group_start(c);
    if (!px_comm_send(c, x->a, x->count, PX_DTYPE_F32, (r + 1) % n, NULL, error) ||
        !px_comm_recv(c, x->b, x->count, PX_DTYPE_F32, (r + n - 1) % n, NULL, error)) {
      px_comm_group_end(c, NULL, NULL);
      return FALSE;
    }
    return px_comm_group_end(c, NULL, error);
  default: return FALSE;
  }
}

/* One call on data with a known result: rank r holds r+1 everywhere. */
static gboolean check_op(PxComm *c, Op op, Bufs *x, GError **error) {
  int r = px_comm_rank(c), n = px_comm_size(c);
  gsize na = op == OP_REDUCE_SCATTER ? x->count * (gsize)n : x->count;
  gsize nb = op == OP_ALL_GATHER ? x->count * (gsize)n : x->count;
  for (gsize i = 0; i < na; i++) x->a[i] = (float)(r + 1);
  if (!run_op(c, op, x, error)) return FALSE;
  for (gsize i = 0; i < (op == OP_ALL_REDUCE ? na : nb); i++) {
    float got = op == OP_ALL_REDUCE ? x->a[i] : x->b[i], want = 0;
    switch (op) {
    case OP_ALL_REDUCE:
    case OP_REDUCE_SCATTER: want = n * (n + 1) / 2.0f; break;
    case OP_ALL_GATHER: want = (float)(i / x->count + 1); break;
    case OP_SEND_RECV: want = (float)((r + n - 1) % n + 1); break;
    default: break;
    }
    if (got != want) {
      g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_DEVICE, "%s of %" G_GINT64_FORMAT " B on %s: element %" G_GSIZE_FORMAT
                  " of rank %d is %g, expected %g", op_names[op], x->bytes, px_comm_label(c), i, r, got, want);
      return FALSE;
    }
  }
  memset(x->a, 0, na * sizeof(float)); /* timed on zeros: repeated sums stay finite */
  return TRUE;
}

/* Every rank: every op and size; rank 0 prints. */
static gboolean bench_rank(PxComm *c, GError **error) {
  int r = px_comm_rank(c), n = px_comm_size(c);
  for (Op op = 0; op < N_OPS; op++) {
    if (r == 0) {
      printf("#\n# %s, busbw = algbw x %.4g\n", op_names[op], bus_factor(op, n));
      printf("# %12s %10s %6s %12s %12s %12s\n", "size(B)", "count", "calls", "time(us)", "algbw(GB/s)", "busbw(GB/s)");
    }
    for (gint64 s = opts.min_bytes;; s = MIN(s * opts.factor, opts.max_bytes)) {
      Bufs x = {0};
      gboolean per_rank = op == OP_ALL_GATHER || op == OP_REDUCE_SCATTER;
      x.count = MAX(1, (gsize)s / 4 / (per_rank ? (gsize)n : 1));
      x.bytes = (gint64)(x.count * 4 * (per_rank ? (gsize)n : 1));
      x.a = g_new0(float, op == OP_REDUCE_SCATTER ? x.count * (gsize)n : x.count);
      x.b = g_new0(float, op == OP_ALL_GATHER ? x.count * (gsize)n : x.count);
      int iters = iters_for(x.bytes);
      gboolean ok = check_op(c, op, &x, error) && run_op(c, op, &x, error) && px_comm_barrier(c, NULL, error);
      gint64 t0 = g_get_monotonic_time();
      for (int i = 0; ok && i < iters; i++) ok = run_op(c, op, &x, error);
      double t = (g_get_monotonic_time() - t0) / 1e6 / iters;
      ok = ok && px_comm_all_reduce(c, &t, 1, PX_DTYPE_F64, PX_RED_SUM, NULL, error);
      g_free(x.a);
      g_free(x.b);
      if (!ok) return FALSE;
      t /= n;
      double algbw = x.bytes / t / 1e9;
      if (r == 0)
        printf("  %12" G_GINT64_FORMAT " %10" G_GSIZE_FORMAT " %6d %12.1f %12.3f %12.3f\n", x.bytes, x.count, iters,
               t * 1e6, algbw, algbw * bus_factor(op, n));
      if (s == opts.max_bytes) break;
    }
    if (r == 0) fflush(stdout);
  }
  return TRUE;
}

/* A failing rank releases the others with its reason. */
static gboolean bench_or_abort(PxComm *c) {
  g_autoptr(GError) error = NULL;
  if (bench_rank(c, &error)) return TRUE;
  fprintf(stderr, "bench_comm: rank %d: %s\n", px_comm_world_rank(c), error->message);
  px_comm_abort(c, error->message);
  return FALSE;
}

typedef struct {
  PxLocalWorld *w; /* local */
  int port, n;     /* tcp */
  double timeout_s;
  int rank;
  gboolean ok;
} ThreadRank;

static gpointer thread_rank(gpointer data) {
  ThreadRank *a = data;
  PxComm *c = NULL;
  g_autoptr(GError) error = NULL;
  if (a->w) c = px_comm_local_new(a->w, a->rank);
  else c = px_comm_tcp_new("127.0.0.1", a->port, a->rank, a->n, a->timeout_s, &error);
  if (!c) {
    fprintf(stderr, "bench_comm: rank %d: %s\n", a->rank, error ? error->message : "no communicator");
    return NULL;
  }
  a->ok = bench_or_abort(c);
  px_comm_free(c);
  return NULL;
}

static gboolean parse_bytes(const char *s, gint64 *out) {
  char *end = NULL;
  guint64 v = g_ascii_strtoull(s, &end, 10);
  if (end == s) return FALSE;
  if (*end == 'K' || *end == 'k') v <<= 10, end++;
  else if (*end == 'M' || *end == 'm') v <<= 20, end++;
  else if (*end == 'G' || *end == 'g') v <<= 30, end++;
  if (*end == 'B') end++;
  if (*end || v == 0 || v > (1ull << 34)) return FALSE;
  *out = (gint64)v;
  return TRUE;
}

int main(int argc, char **argv) {
  g_autofree char *comm = NULL, *min_s = NULL, *max_s = NULL;
  int ranks = 4;
  double timeout_s = 300;
  GOptionEntry entries[] = {
    {"comm", 'c', 0, G_OPTION_ARG_STRING, &comm, "implementation: local (threads, default), tcp (threads over loopback) or mpi (under mpirun)", "NAME"},
    {"ranks", 'n', 0, G_OPTION_ARG_INT, &ranks, "thread-ranks for local (default 4)", "N"},
    {"minbytes", 'b', 0, G_OPTION_ARG_STRING, &min_s, "smallest size (default 8; K, M, G suffixes)", "BYTES"},
    {"maxbytes", 'e', 0, G_OPTION_ARG_STRING, &max_s, "largest size (default 64M)", "BYTES"},
    {"stepfactor", 'f', 0, G_OPTION_ARG_INT, &opts.factor, "size factor between rows (default 4)", "F"},
    {"timeout", 0, 0, G_OPTION_ARG_DOUBLE, &timeout_s, "deadline of every wait, s (default 300)", "S"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
  };
  g_autoptr(GOptionContext) oc = g_option_context_new("- communicator bandwidth by size (nccl-tests style)");
  g_option_context_add_main_entries(oc, entries, NULL);
  g_autoptr(GError) error = NULL;
  if (!g_option_context_parse(oc, &argc, &argv, &error)) {
    fprintf(stderr, "bench_comm: %s\n", error->message);
    return 2;
  }
  if (!comm) comm = g_strdup("local");
  if ((min_s && !parse_bytes(min_s, &opts.min_bytes)) || (max_s && !parse_bytes(max_s, &opts.max_bytes)) ||
      opts.min_bytes > opts.max_bytes || opts.factor < 2) {
    fprintf(stderr, "bench_comm: sizes must be 1 B .. 16 GiB with -b ≤ -e, and -f ≥ 2\n");
    return 2;
  }

  gboolean tcp = !strcmp(comm, "tcp");
  if (!strcmp(comm, "local") || tcp) {
    if (ranks < 1 || ranks > 64) {
      fprintf(stderr, "bench_comm: -n %d: 1 to 64 thread-ranks\n", ranks);
      return 2;
    }
    printf("# bench_comm: %s, %d ranks (threads of one process%s), f32; time per op averaged over ranks; GB/s = 1e9 B/s\n",
           comm, ranks, tcp ? ", sockets over loopback" : "");
    PxLocalWorld *w = tcp ? NULL : px_local_world_new(ranks, timeout_s);
    int port = 0;
    if (tcp && (port = px_tcp_free_port()) < 0) {
      fprintf(stderr, "bench_comm: no free TCP port on 127.0.0.1\n");
      return 1;
    }
    GThread *th[64];
    ThreadRank args[64];
    for (int r = 0; r < ranks; r++) {
      args[r] = (ThreadRank){w, port, ranks, timeout_s, r, FALSE};
      th[r] = g_thread_new("rank", thread_rank, &args[r]);
    }
    gboolean ok = TRUE;
    for (int r = 0; r < ranks; r++) {
      g_thread_join(th[r]);
      ok = ok && args[r].ok;
    }
    if (w) px_local_world_free(w);
    return ok ? 0 : 1;
  }
  if (!strcmp(comm, "mpi")) {
    PxComm *c = px_comm_mpi_new(timeout_s, &error);
    if (!c) {
      fprintf(stderr, "bench_comm: %s\n", error->message);
      return 1;
    }
    if (px_comm_rank(c) == 0)
      printf("# bench_comm: mpi, %d ranks (processes), f32; time per op averaged over ranks; GB/s = 1e9 B/s\n",
             px_comm_size(c));
    gboolean ok = bench_or_abort(c);
    px_comm_free(c);
    px_comm_mpi_finalize();
    return ok ? 0 : 1;
  }
  fprintf(stderr, "bench_comm: unknown communicator '%s' (local, tcp, mpi)\n", comm);
  return 2;
}
