/* cmd_calibrate.c — `parallax-exec calibrate`: measure the rates the cost
 * model needs on the backend and communicator at hand, and write them as a
 * cluster profile (INI) that `parallax-sim ... --cluster FILE` reads:
 *   - GEMM FLOP/s over the model's own linear shapes (tokens = mbs · seq);
 *     the best becomes the peak, every shape's share of it is listed;
 *   - memory-bound bandwidth (a residual add over 3 large tensors);
 *   - the per-kernel overhead (the same op on 16 elements);
 *   - all-reduce bus bandwidth by message size over a group of --ranks ranks
 *     (2 (n-1)/n · bytes / time, as nccl-tests), and the alpha-beta fit the
 *     cost model uses: the best busbw, the fastest message's time per ring step.
 *     --comm local runs --ranks thread-ranks; --comm mpi (the default under
 *     mpirun) one process per rank, rank 0 writing the profile.
 * Only the public APIs of backend.h and comm.h are used, so the same command
 * serves CUDA/NCCL once they exist (--backend cuda). Times are medians of
 * --reps runs after one warm-up. */
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "backend.h"
#include "comm.h"
#include "exec_commands.h"
#include "model.h"

typedef gboolean (*TimedFn)(void *data, GError **error);

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median seconds of one call over reps timings of `inner` back-to-back calls
 * (after one warm-up), synchronised after each timing. */
static gboolean time_median(PxBackend *be, TimedFn fn, void *data, int reps, int inner, double *out,
                            GError **error) {
  g_autofree double *t = g_new(double, reps);
  if (!fn(data, error) || !px_backend_synchronize(be, error)) return FALSE;
  for (int i = 0; i < reps; i++) {
    double t0 = now();
    for (int k = 0; k < inner; k++)
      if (!fn(data, error)) return FALSE;
    if (!px_backend_synchronize(be, error)) return FALSE;
    t[i] = (now() - t0) / inner;
  }
  qsort(t, reps, sizeof *t, cmp_double);
  *out = MAX(t[reps / 2], 1e-9);
  return TRUE;
}

typedef struct {
  PxBackend *be;
  PxTensor *y, *x, *w;
} Gemm;
static gboolean gemm_once(void *d, GError **error) {
  Gemm *g = d;
  return px_op_linear_fwd(g->be, g->y, g->x, g->w, NULL, error);
}

typedef struct {
  PxBackend *be;
  PxTensor *out, *a, *b;
} Add;
static gboolean add_once(void *d, GError **error) {
  Add *a = d;
  return px_op_residual_fwd(a->be, a->out, a->a, a->b, error);
}

static PxTensor *tensor2(PxBackend *be, const char *name, gint64 r, gint64 c, GError **error) {
  gint64 shape[2] = {r, c};
  return px_tensor_new(be, name, PX_DTYPE_F32, PX_MEM_BUFFERS, 2, shape, error);
}

/* ---- collectives over thread-ranks ---- */

/* Median seconds of an all-reduce of count floats on comm (every rank calls). */
static gboolean allreduce_median(PxComm *comm, gsize count, int reps, double *out, GError **error) {
  g_autofree float *buf = g_new0(float, count);
  g_autofree double *t = g_new(double, reps);
  if (!px_comm_all_reduce(comm, buf, count, PX_DTYPE_F32, PX_RED_SUM, NULL, error)) return FALSE;
  for (int i = 0; i < reps; i++) {
    if (!px_comm_barrier(comm, NULL, error)) return FALSE;
    double t0 = now();
    if (!px_comm_all_reduce(comm, buf, count, PX_DTYPE_F32, PX_RED_SUM, NULL, error)) return FALSE;
    t[i] = now() - t0;
  }
  qsort(t, reps, sizeof *t, cmp_double);
  *out = MAX(t[reps / 2], 1e-9);
  return TRUE;
}

typedef struct {
  PxLocalWorld *world;
  int rank, reps;
  gsize count;
  double seconds;
  GError *error;
} CollRank;

static gpointer coll_rank(gpointer p) {
  CollRank *cr = p;
  g_autoptr(PxComm) comm = px_comm_local_new(cr->world, cr->rank);
  if (!allreduce_median(comm, cr->count, cr->reps, &cr->seconds, &cr->error))
    px_local_world_abort(cr->world, cr->error->message);
  return NULL;
}

/* All-reduce time over `ranks` thread-ranks of the local communicator, or over
 * the processes of `mpi` when given (rank 0's median). */
static gboolean allreduce_time(PxComm *mpi, int ranks, gsize bytes, int reps, double *out, GError **error) {
  if (mpi) return allreduce_median(mpi, MAX(bytes / 4, 1), reps, out, error);
  g_autoptr(PxLocalWorld) w = px_local_world_new(ranks, 60);
  g_autofree CollRank *cr = g_new0(CollRank, ranks);
  g_autofree GThread **th = g_new(GThread *, ranks);
  for (int r = 0; r < ranks; r++) {
    cr[r] = (CollRank){w, r, reps, MAX(bytes / 4, 1), 0, NULL};
    th[r] = g_thread_new("calibrate", coll_rank, &cr[r]);
  }
  gboolean ok = TRUE;
  for (int r = 0; r < ranks; r++) {
    g_thread_join(th[r]);
    if (cr[r].error) {
      if (ok) g_propagate_error(error, cr[r].error);
      else g_error_free(cr[r].error);
      ok = FALSE;
    }
  }
  *out = cr[0].seconds;
  return ok;
}

static void kv(GString *s, const char *key, double v) {
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  g_string_append_printf(s, "%s = %s\n", key, g_ascii_formatd(buf, sizeof buf, "%.6g", v));
}

static int fail(GError *error) {
  fprintf(stderr, "parallax-exec calibrate: %s\n", error ? error->message : "failed");
  return 1;
}

static int calibrate(const char *backend, const char *model_name, int seq, int mbs, int ranks, int reps,
                     gint64 max_bytes, const char *name, const char *out, PxComm *mpi);

int px_exec_cmd_calibrate(int argc, char **argv) {
  g_autofree char *backend = NULL, *model_name = NULL, *out = NULL, *name = NULL, *comm_name = NULL;
  int seq = 128, mbs = 1, ranks = 2, reps = 5;
  gint64 max_bytes = 16 << 20;
  GOptionEntry entries[] = {
    {"backend", 0, 0, G_OPTION_ARG_STRING, &backend, "cpu (default) or cuda", "B"},
    {"model", 'M', 0, G_OPTION_ARG_STRING, &model_name, "model whose GEMM shapes are measured (default tiny-gpt)", "NAME|FILE"},
    {"seq", 0, 0, G_OPTION_ARG_INT, &seq, "sequence length of the measured shapes (default 128)", "N"},
    {"mbs", 0, 0, G_OPTION_ARG_INT, &mbs, "micro-batch of the measured shapes (default 1)", "N"},
    {"ranks", 0, 0, G_OPTION_ARG_INT, &ranks, "thread-ranks of the measured collectives (local; default 2; 1 skips them)", "N"},
    {"comm", 0, 0, G_OPTION_ARG_STRING, &comm_name, "local (threads) or mpi (one process per rank; the default under mpirun)", "C"},
    {"max-bytes", 0, 0, G_OPTION_ARG_INT64, &max_bytes, "largest all-reduce message (default 16 MiB)", "BYTES"},
    {"reps", 0, 0, G_OPTION_ARG_INT, &reps, "timed repetitions per measurement (default 5)", "N"},
    {"name", 0, 0, G_OPTION_ARG_STRING, &name, "cluster name in the profile (default calibrated-BACKEND)", "NAME"},
    {"out", 'o', 0, G_OPTION_ARG_FILENAME, &out, "cluster profile to write (INI)", "FILE"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new("- measure this machine into a cluster profile");
  g_option_context_add_main_entries(ctx, entries, NULL);
  g_autoptr(GError) error = NULL;
  if (!g_option_context_parse(ctx, &argc, &argv, &error)) return fail(error) + 1;
  if (!out) {
    fprintf(stderr, "parallax-exec calibrate: give --out FILE for the cluster profile\n");
    return 2;
  }
  if (seq < 1 || mbs < 1 || ranks < 1 || ranks > 64 || reps < 1 || reps > 1000 || max_bytes < 1024 ||
      max_bytes > ((gint64)1 << 31)) {
    fprintf(stderr, "parallax-exec calibrate: --seq, --mbs ≥ 1, --ranks 1..64, --reps 1..1000, "
                    "--max-bytes 1024..2^31\n");
    return 2;
  }
  if (!comm_name) comm_name = g_strdup(g_getenv("OMPI_COMM_WORLD_SIZE") ? "mpi" : "local");
  if (strcmp(comm_name, "local") && strcmp(comm_name, "mpi")) {
    fprintf(stderr, "parallax-exec calibrate: --comm '%s' is not one of local, mpi\n", comm_name);
    return 2;
  }
  /* mpi: every process measures, rank 0 writes the profile */
  g_autoptr(PxComm) mpi = NULL;
  if (!strcmp(comm_name, "mpi")) {
    if (!(mpi = px_comm_mpi_new(60, &error))) return fail(error);
    ranks = px_comm_size(mpi);
  }
  int rc = calibrate(backend, model_name, seq, mbs, ranks, reps, max_bytes, name, out, mpi);
  g_clear_pointer(&mpi, px_comm_free);
  if (!strcmp(comm_name, "mpi")) px_comm_mpi_finalize();
  return rc;
}

static int calibrate(const char *backend, const char *model_name, int seq, int mbs, int ranks, int reps,
                     gint64 max_bytes, const char *name, const char *out, PxComm *mpi) {
  g_autoptr(GError) error = NULL;
  g_autoptr(PxModel) model = px_model_load(model_name ? model_name : "tiny-gpt", &error);
  if (!model) return fail(error);
  g_autoptr(PxBackend) be = px_backend_new(backend ? backend : "cpu", 0, &error);
  if (!be) return fail(error);
  GString *ini = g_string_new(NULL);
  g_string_append_printf(ini, "# Cluster profile measured by `parallax-exec calibrate` on backend %s:\n",
                         px_backend_name(be));
  g_string_append_printf(ini, "# %s's linear shapes at %d x %d tokens, fp32, medians of %d runs.\n",
                         model->desc.name, mbs, seq, reps);

  /* GEMMs: the distinct (out, in) of the first block and the LM head */
  gint64 T = (gint64)mbs * seq;
  double best = 0;
  GString *shapes = g_string_new(NULL);
  gint64 seen[16][2];
  int n_seen = 0;
  for (guint li = 0; li < model->n_layers; li++) {
    const PxLayer *layer = &model->layers[li];
    if (!(layer->kind == PX_LAYER_BLOCK && layer->block == 0) && layer->kind != PX_LAYER_LM_HEAD) continue;
    for (guint ti = 0; ti <= layer->n_tensors; ti++) {
      const PxTensorSpec *t = ti < layer->n_tensors ? &layer->tensors[ti] : layer->tied_tensor;
      if (!t || t->ndim != 2 || n_seen >= 16) continue;
      gboolean dup = FALSE;
      for (int k = 0; k < n_seen; k++) dup |= seen[k][0] == t->shape[0] && seen[k][1] == t->shape[1];
      if (dup) continue;
      seen[n_seen][0] = t->shape[0];
      seen[n_seen][1] = t->shape[1];
      n_seen++;
      g_autoptr(PxTensor) x = tensor2(be, "x", T, t->shape[1], &error);
      g_autoptr(PxTensor) w = x ? tensor2(be, "w", t->shape[0], t->shape[1], &error) : NULL;
      g_autoptr(PxTensor) y = w ? tensor2(be, "y", T, t->shape[0], &error) : NULL;
      Gemm g = {be, y, x, w};
      double s;
      if (!y || !time_median(be, gemm_once, &g, reps, 1, &s, &error)) {
        g_string_free(shapes, TRUE);
        g_string_free(ini, TRUE);
        return fail(error);
      }
      double flops = 2.0 * T * t->shape[0] * t->shape[1] / s;
      best = MAX(best, flops);
      g_string_append_printf(shapes, "#   %" G_GINT64_FORMAT " x %" G_GINT64_FORMAT " x %" G_GINT64_FORMAT
                             " (%s): %.2f GFLOP/s\n", T, t->shape[0], t->shape[1], t->name, flops / 1e9);
    }
  }
  g_string_append_printf(ini, "# GEMM FLOP/s per shape (tokens x out x in); the best is the peak:\n%s", shapes->str);
  g_string_free(shapes, TRUE);

  /* memory-bound bandwidth and the per-kernel overhead */
  gint64 big = 4 << 20, tiny = 16;
  double s_big, s_tiny;
  {
    g_autoptr(PxTensor) a = tensor2(be, "a", big, 1, &error);
    g_autoptr(PxTensor) b = a ? tensor2(be, "b", big, 1, &error) : NULL;
    g_autoptr(PxTensor) o = b ? tensor2(be, "o", big, 1, &error) : NULL;
    Add add = {be, o, a, b};
    if (!o || !time_median(be, add_once, &add, reps, 1, &s_big, &error)) {
      g_string_free(ini, TRUE);
      return fail(error);
    }
    g_autoptr(PxTensor) ta = tensor2(be, "ta", tiny, 1, &error);
    g_autoptr(PxTensor) tb = ta ? tensor2(be, "tb", tiny, 1, &error) : NULL;
    g_autoptr(PxTensor) to = tb ? tensor2(be, "to", tiny, 1, &error) : NULL;
    Add small = {be, to, ta, tb};
    if (!to || !time_median(be, add_once, &small, reps, 1000, &s_tiny, &error)) {
      g_string_free(ini, TRUE);
      return fail(error);
    }
  }
  double mem_bw = 3.0 * 4 * big / s_big;
  g_string_append_printf(ini, "# residual add of 3 x %" G_GINT64_FORMAT " fp32: %.2f GB/s; of 16 elements: %.2f us\n",
                         big, mem_bw / 1e9, s_tiny * 1e6);

  /* collectives */
  double busbw = ranks > 1 ? 0 : mem_bw, alpha = 0;
  if (ranks > 1) {
    g_string_append_printf(ini, "# all-reduce over %d ranks (%s communicator): size, time, bus bandwidth\n", ranks,
                           mpi ? "mpi" : "local");
    double t_small = 0;
    for (gint64 bytes = 4096; bytes <= max_bytes; bytes *= 4) {
      double s;
      if (!allreduce_time(mpi, ranks, (gsize)bytes, reps, &s, &error)) {
        g_string_free(ini, TRUE);
        return fail(error);
      }
      double bw = 2.0 * (ranks - 1) / ranks * bytes / s;
      t_small = bytes == 4096 ? s : MIN(t_small, s); /* the fastest: latency-bound, least noisy */
      busbw = MAX(busbw, bw); /* the achieved peak, as nccl-tests report it */
      g_string_append_printf(ini, "#   %10" G_GINT64_FORMAT " B  %10.1f us  %8.2f GB/s\n", bytes, s * 1e6, bw / 1e9);
    }
    alpha = t_small / (2.0 * (ranks - 1));
  } else {
    g_string_append(ini, "# collectives not measured (1 rank): link bandwidth = the memory bandwidth\n");
  }

  g_string_append_printf(ini, "[cluster]\nname = %s\nnodes = 1\n\n[gpu]\nname = %s\n",
                         name ? name : (backend ? backend : "calibrated-cpu"), px_backend_name(be));
  /* the device's memory: the host's on the cpu backend */
  double mem = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
  g_string_append_printf(ini, "memory = %.0fMiB\n", MAX(mem, 1 << 30) / 1048576.0);
  kv(ini, "peak_fp32", best);
  kv(ini, "peak_tf32", best);
  kv(ini, "peak_fp16", best);
  kv(ini, "peak_bf16", best);
  kv(ini, "hbm_bw", mem_bw);
  g_string_append(ini, "gemm_efficiency = 1\nhbm_efficiency = 1\n");
  kv(ini, "kernel_overhead", MIN(s_tiny, 1.0));
  g_string_append_printf(ini, "\n[node]\ngpus = %d\n", ranks);
  kv(ini, "bandwidth", busbw);
  kv(ini, "latency", alpha);
  g_string_append(ini, "busbw_efficiency = 1\n\n[network]\n");
  kv(ini, "bandwidth", busbw);
  kv(ini, "latency", alpha);
  g_autofree char *text = g_string_free(ini, FALSE);
  if (mpi && px_comm_rank(mpi) != 0) return 0;
  if (!g_file_set_contents(out, text, -1, &error)) return fail(error);
  printf("%s", text);
  printf("wrote %s (parallax-sim simulate ... --cluster %s)\n", out, out);
  return 0;
}
