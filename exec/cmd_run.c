/* cmd_run.c — `parallax-exec run`: train a model under a plan on a backend,
 * printing per step loss, step time and tokens/s, then each rank's memory by
 * category next to the planner's prediction (text or --json), and optionally
 * the measured timeline of the last step (--trace, --csv, as parallax-sim
 * writes them) and checkpoints (--save DIR --save-every K --keep N, --resume
 * DIR; docs/checkpoint.md). The --save directory is checked (created,
 * writable) before step 1; after each commit all but the newest N checkpoints
 * are deleted (never the one DIR/latest names). A NaN or Inf loss or gradient
 * norm stops the run with an error, before the step is counted or saved.
 *
 * --steps N is the step number to reach: with --resume, the run continues
 * from the checkpoint's step up to N.
 *
 * --compare (with --cluster) sets the engine's prediction for the same plan
 * beside the measurement (exec/run_compare.c): step time (mean of the steps
 * after the first), time per instruction kind per rank, idle share, memory;
 * --trace then holds both timelines, and --plot DIR draws them as one figure
 * (DIR/compare.png, .svg: a predicted and a measured row per rank) beside
 * the measured timeline and memory. A bf16 / f16 run is simulated at that
 * precision (run_compare.h px_run_compare_plan); a cluster profile that
 * calibrate measured in another dtype is refused before the first step. */
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "checkpoint.h"
#include "config.h"
#include "exec_commands.h"
#include "options.h"
#include "plot.h"
#include "report.h"
#include "runtime.h"
#include "moe.h"
#include "comm_tcp.h"
#include "nccl/comm_nccl.h"
#include "launch_env.h"
#include "run_compare.h"

#define CMD "parallax-exec run"

typedef struct {
  PxRunOptions opt;
  int steps, save_every, keep;
  gboolean json, gantt, compare;
  char *plot,
       *trace, *csv, *save, *resume, *dtype, *backend, *data, *comm;
  gint64 seed;
} RunArgs;


static void add_memory_json(JsonBuilder *b, const char *key, const double v[5]) {
  static const char *names[] = {"weights", "gradients", "optimizer", "activations", "buffers"};
  json_builder_set_member_name(b, key);
  json_builder_begin_object(b);
  for (int i = 0; i < 5; i++) {
    px_json_member_double(b, names[i], v[i]);
  }
  json_builder_end_object(b);
}

static gboolean parse_dtype(const char *s, PxDType *out) {
  if (!s || !g_ascii_strcasecmp(s, "f32") || !g_ascii_strcasecmp(s, "fp32")) { *out = PX_DTYPE_F32; return TRUE; }
  if (!g_ascii_strcasecmp(s, "f64") || !g_ascii_strcasecmp(s, "fp64")) { *out = PX_DTYPE_F64; return TRUE; }
  if (!g_ascii_strcasecmp(s, "bf16")) { *out = PX_DTYPE_BF16; return TRUE; }
  if (!g_ascii_strcasecmp(s, "f16") || !g_ascii_strcasecmp(s, "fp16")) { *out = PX_DTYPE_F16; return TRUE; }
  return FALSE;
}

int px_exec_cmd_run(int argc, char **argv) {
  RunArgs a = {0};
  px_run_options_init(&a.opt);
  a.steps = 10;
  a.keep = 3;
  a.seed = (gint64)a.opt.seed;
  g_autofree char *backends = g_strjoinv(", ", (char **)px_backend_list());
  g_autofree char *backend_help = g_strdup_printf("Device backend: %s (default cpu)", backends);
  GOptionEntry entries[] = {
    {"backend", 0, 0, G_OPTION_ARG_STRING, &a.backend, backend_help, "B"},
    {"comm", 0, 0, G_OPTION_ARG_STRING, &a.comm,
     "Communicator: local (every rank a thread of this process; the default), mpi (one process per rank, "
     "under mpirun or srun; the default when launched by mpirun), tcp (one process per rank from RANK, "
     "WORLD_SIZE, MASTER_ADDR, MASTER_PORT: parallax-exec launch, torchrun-style launchers; the default there), nccl (one process "
     "per rank and GPU, with --backend cuda; the default for --backend cuda under a launcher when built with NCCL)", "C"},
    {"steps", 'n', 0, G_OPTION_ARG_INT, &a.steps, "Train up to this step (default 10)", "N"},
    {"seed", 0, 0, G_OPTION_ARG_INT64, &a.seed, "Seed of weights and synthetic data (default 1337)", "S"},
    {"data", 0, 0, G_OPTION_ARG_FILENAME, &a.data, "llm.c token file (default: synthetic corpus)", "FILE"},
    {"dtype", 0, 0, G_OPTION_ARG_STRING, &a.dtype,
     "f32 (default) or f64; bf16 or f16: mixed precision (half parameters, gradients and activations, fp32 "
     "statistics, master weights and AdamW moments)", "T"},
    {"loss-scale", 0, 0, G_OPTION_ARG_DOUBLE, &a.opt.loss_scale,
     "f16: initial dynamic loss scale (default 65536 = 2^16, DeepSpeed's initial_scale_power 16)", "S"},
    {"loss-scale-window", 0, 0, G_OPTION_ARG_INT, &a.opt.loss_scale_window,
     "f16: steps without overflow before the scale doubles (default 1000, DeepSpeed / Megatron)", "N"},
    {"lr", 0, 0, G_OPTION_ARG_DOUBLE, &a.opt.lr, "Peak learning rate (default 1e-3)", "LR"},
    {"min-lr", 0, 0, G_OPTION_ARG_DOUBLE, &a.opt.min_lr, "Final learning rate of the cosine (default 1e-4)", "LR"},
    {"warmup", 0, 0, G_OPTION_ARG_INT, &a.opt.warmup, "Linear warm-up steps (default 0)", "N"},
    {"decay-steps", 0, 0, G_OPTION_ARG_INT, &a.opt.decay_steps, "Cosine decay ends at this step (default: --steps)", "N"},
    {"weight-decay", 0, 0, G_OPTION_ARG_DOUBLE, &a.opt.weight_decay, "AdamW decay of 2-D weights (default 0.1)", "W"},
    {"clip", 0, 0, G_OPTION_ARG_DOUBLE, &a.opt.clip, "Global gradient-norm clip, 0 for none (default 1.0)", "C"},
    {"timeout", 0, 0, G_OPTION_ARG_DOUBLE, &a.opt.timeout_s, "Communicator timeout in seconds (default 60)", "S"},
    {"json", 0, 0, G_OPTION_ARG_NONE, &a.json, "Print one JSON object", NULL},
    {"trace", 0, 0, G_OPTION_ARG_FILENAME, &a.trace, "Write the last step's timeline as Chrome trace JSON (with --compare: predicted and measured)", "FILE"},
    {"csv", 0, 0, G_OPTION_ARG_FILENAME, &a.csv, "Write the last step's timeline as CSV", "FILE"},
    {"gantt", 0, 0, G_OPTION_ARG_NONE, &a.gantt, "Draw the last step as an ASCII Gantt chart", NULL},
    {"plot", 0, 0, G_OPTION_ARG_FILENAME, &a.plot, "Draw the last step's timeline and memory into DIR (gnuplot; with --compare also compare.png: predicted and measured)", "DIR"},
    {"save", 0, 0, G_OPTION_ARG_FILENAME, &a.save, "Checkpoint directory", "DIR"},
    {"save-every", 0, 0, G_OPTION_ARG_INT, &a.save_every, "Checkpoint every K steps (default: at the end)", "K"},
    {"keep", 0, 0, G_OPTION_ARG_INT, &a.keep, "Keep the newest N checkpoints, 0 for all (default 3)", "N"},
    {"resume", 0, 0, G_OPTION_ARG_FILENAME, &a.resume, "Resume from the latest checkpoint in DIR", "DIR"},
    {"compare", 0, 0, G_OPTION_ARG_NONE, &a.compare,
     "Print the engine's prediction for this plan (--cluster: a preset, or a calibrate profile measured in this "
     "run's --dtype) beside the measurement", NULL},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
  };
  /* flags that mean something only with another were ignored without it:
   * which were given, before GOption consumes argv */
  gboolean given_scale = FALSE, given_save_opts = FALSE, given_decay = FALSE;
  const char *save_flag = NULL, *scale_flag = NULL;
  for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
    if (px_flag_is(argv[i], "--loss-scale")) given_scale = TRUE, scale_flag = "--loss-scale";
    if (px_flag_is(argv[i], "--loss-scale-window")) given_scale = TRUE, scale_flag = "--loss-scale-window";
    if (px_flag_is(argv[i], "--save-every")) given_save_opts = TRUE, save_flag = "--save-every";
    if (px_flag_is(argv[i], "--keep")) given_save_opts = TRUE, save_flag = "--keep";
    if (px_flag_is(argv[i], "--decay-steps")) given_decay = TRUE;
  }
  PxPlanOptions o;
  int rc = 1;
  if (!px_parse_command_line(CMD, "train a model under a plan and measure it", entries, &o, &argc, &argv)) {
    px_plan_options_clear(&o);
    return 2;
  }
  g_autoptr(GError) error = NULL;
  g_autoptr(PxModel) model = NULL;
  g_autoptr(PxCluster) cluster = NULL;
  PxRuntime *rt = NULL;
  PxComm *world = NULL; /* --comm mpi */
  g_autofree char *agree = NULL; /* a.opt.agree */
  int rank = 0;
  PxRankMemory *all_mem = NULL;
  g_autoptr(JsonBuilder) jb = NULL;
  PxPlan plan;
  memset(&plan, 0, sizeof plan); /* px_plan_options_resolve initialises it */
  PxUnits units;
  a.opt.seed = (guint64)a.seed;
  a.opt.backend = a.backend ? a.backend : "cpu";
  a.opt.data = a.data;
  if (a.opt.decay_steps == 0 && !given_decay) a.opt.decay_steps = a.steps; /* --decay-steps 0 is refused below */
  if (!parse_dtype(a.dtype, &a.opt.dtype)) {
    fprintf(stderr, CMD ": --dtype '%s' is not f32, f64, bf16 or f16\n", a.dtype);
    goto out;
  }
  if (!px_units_parse(o.units, &units)) {
    fprintf(stderr, CMD ": --units '%s' is not GB or GiB\n", o.units);
    goto out;
  }
  if (a.seed < 0) { /* it wrapped to 2^64 - 1 */
    fprintf(stderr, CMD ": --seed %" G_GINT64_FORMAT " must be 0 or more\n", a.seed);
    goto out;
  }
  if (given_scale && a.opt.dtype != PX_DTYPE_F16) {
    fprintf(stderr, CMD ": %s is f16's dynamic loss scale: it has no meaning with --dtype %s\n", scale_flag,
            a.dtype ? a.dtype : "f32");
    goto out;
  }
  if (given_save_opts && !a.save) {
    fprintf(stderr, CMD ": %s needs --save DIR (no checkpoints are written without it)\n", save_flag);
    goto out;
  }
  if (a.steps < 1 || a.save_every < 0 || a.keep < 0) {
    fprintf(stderr, CMD ": --steps must be at least 1, --save-every and --keep at least 0\n");
    goto out;
  }
  {
    /* optimiser hyperparameters: finite and in range, named when not */
    const PxRunOptions *r = &a.opt;
    const char *bad = !isfinite(r->lr) || r->lr <= 0 ? "--lr must be a finite number > 0"
                      : !isfinite(r->min_lr) || r->min_lr < 0 || r->min_lr > r->lr ? "--min-lr must be in [0, --lr]"
                      : r->warmup < 0 || r->warmup > r->decay_steps ? "--warmup must be 0..the decay steps"
                      : r->decay_steps < 1 ? "--decay-steps must be at least 1"
                      : !isfinite(r->weight_decay) || r->weight_decay < 0 || r->weight_decay > 1 ? "--weight-decay must be in [0, 1]"
                      : !isfinite(r->clip) || r->clip < 0 ? "--clip must be a finite number ≥ 0 (0: no clipping)"
                      /* the communicators count microseconds: 1e-9 s was a deadline of 0 s */
                      : !isfinite(r->timeout_s) || r->timeout_s < 1e-6 || r->timeout_s > 86400
                      ? "--timeout must be in [1e-6, 86400] seconds (the communicators count microseconds)"
                      : !isfinite(r->loss_scale) || r->loss_scale < 1 ? "--loss-scale must be a finite number >= 1"
                      : r->loss_scale_window < 1 ? "--loss-scale-window must be at least 1"
                      : NULL;
    if (bad) {
      fprintf(stderr, CMD ": %s\n", bad);
      goto out;
    }
  }
  {
    /* before any step: a trace or CSV with nowhere to go failed only after the whole run */
    const char *outs[][2] = {{"--trace", a.trace}, {"--csv", a.csv}};
    for (gsize i = 0; i < G_N_ELEMENTS(outs); i++) {
      g_autofree char *why = outs[i][1] ? px_output_flag_why(outs[i][0], outs[i][1]) : NULL;
      if (why) {
        fprintf(stderr, CMD ": %s\n", why);
        goto out;
      }
    }
  }
  /* --plot DIR made before any step too: a file in its way failed only after the whole run */
  if (a.plot && !px_output_dir_make(a.plot, PX_PLOT_ERROR, PX_PLOT_ERROR_IO, &error)) {
    fprintf(stderr, CMD ": --plot: %s\n", error->message);
    goto out;
  }
  if (!a.comm) {
    /* ranks as processes: nccl for GPU ranks when built in, else mpi / tcp by launcher (docs/launch.md) */
    gboolean procs = g_getenv("OMPI_COMM_WORLD_SIZE") || (g_getenv("WORLD_SIZE") && g_getenv("MASTER_ADDR"));
    if (!procs && (g_getenv("RANK") || g_getenv("WORLD_SIZE"))) {
      /* torchrun's variables without MASTER_ADDR: every process ran the whole world as threads of its own */
      PxLaunchEnv env;
      px_launch_env_init(&env);
      gboolean ok = px_launch_env(&env, &error);
      int env_rank = env.rank, env_world = env.world;
      px_launch_env_clear(&env);
      if (!ok) {
        rc = px_cli_fail(CMD, error);
        goto out;
      }
      if (env_world > 1) {
        fprintf(stderr, CMD ": RANK=%d of WORLD_SIZE=%d has no way to meet the others: set MASTER_ADDR (and "
                "MASTER_PORT) for the TCP store, or give --comm local to run the whole world in this process\n",
                env_rank, env_world);
        goto out;
      }
    }
    a.comm = g_strdup(procs && !g_strcmp0(a.opt.backend, "cuda") && px_comm_available("nccl") ? "nccl"
                      : g_getenv("OMPI_COMM_WORLD_SIZE")                                       ? "mpi"
                      : procs                                                                  ? "tcp"
                                                                                               : "local");
  }
  {
    /* --comm local under mpirun: every process trained the whole world as threads and wrote the same
     * --save; with --comm mpi on the others they waited in MPI_Init for ever */
    const char *mpi_world = g_getenv("OMPI_COMM_WORLD_SIZE"), *tcp_world = g_getenv("WORLD_SIZE");
    if (!g_strcmp0(a.comm, "local") && mpi_world && atoi(mpi_world) > 1) {
      fprintf(stderr, CMD ": --comm local runs the whole world in this process, but mpirun started %d: each "
              "would train the whole run; give --comm mpi, or start one process\n", atoi(mpi_world));
      goto out;
    }
    /* the same under launch / torchrun (WORLD_SIZE with MASTER_ADDR: a way to meet was given) */
    if (!g_strcmp0(a.comm, "local") && tcp_world && atoi(tcp_world) > 1 && g_getenv("MASTER_ADDR")) {
      fprintf(stderr, CMD ": --comm local runs the whole world in this process, but the launcher started %d "
              "(WORLD_SIZE): each would train the whole run; give --comm tcp, or start one process\n",
              atoi(tcp_world));
      goto out;
    }
  }
  if (g_strcmp0(a.comm, "local") && g_strcmp0(a.comm, "mpi") && g_strcmp0(a.comm, "tcp") && g_strcmp0(a.comm, "nccl")) {
    fprintf(stderr, CMD ": --comm '%s' is not local, mpi, tcp or nccl\n", a.comm);
    goto out;
  }
  if (!g_strcmp0(a.comm, "nccl") && !px_comm_available("nccl")) {
    fprintf(stderr, CMD ": --comm nccl: this build has no NCCL (configure with the CUDA toolkit and NCCL found: README)\n");
    goto out;
  }
  if (!g_strcmp0(a.comm, "nccl") && g_strcmp0(a.opt.backend, "cuda")) {
    fprintf(stderr, CMD ": --comm nccl moves GPU memory: it needs --backend cuda (not %s)\n", a.opt.backend);
    goto out;
  }
  if (!g_strcmp0(a.comm, "nccl") && px_nccl_device_count() == 0) {
    fprintf(stderr, CMD ": --comm nccl: no CUDA device\n");
    goto out;
  }
  if (!px_plan_options_resolve(&o, a.compare, &model, &cluster, &plan, &error)) {
    rc = px_cli_fail(CMD, error);
    goto out;
  }
  /* before any step: a profile calibrated in another dtype predicts other kernels */
  if (a.compare && !px_run_compare_check_dtype(cluster, a.opt.dtype, &error)) {
    g_prefix_error(&error, "--compare: ");
    rc = px_cli_fail(CMD, error);
    goto out;
  }
  if (g_strcmp0(a.comm, "local")) {
    /* one rank per process: rank 0 prints; the device is the local rank */
    PxLaunchEnv env;
    px_launch_env_init(&env);
    gboolean ok = px_launch_env(&env, &error);
    if (ok && !g_strcmp0(a.comm, "mpi")) world = px_comm_mpi_new(a.opt.timeout_s, &error);
    else if (ok && !g_strcmp0(a.comm, "nccl")) world = px_comm_nccl_new(&env, a.opt.timeout_s, &error);
    else if (ok) world = px_comm_tcp_new_from_env(&env, a.opt.timeout_s, &error);
    a.opt.device = env.local_rank;
    px_launch_env_clear(&env);
    if (!world) {
      rc = px_cli_fail(CMD, error);
      goto out;
    }
    rank = px_comm_world_rank(world);
    /* the cores of the node shared among its ranks (OMP_NUM_THREADS, when set, wins) */
    const char *ls = g_getenv("OMPI_COMM_WORLD_LOCAL_SIZE") ? g_getenv("OMPI_COMM_WORLD_LOCAL_SIZE") : g_getenv("LOCAL_WORLD_SIZE");
    if (!g_getenv("OMP_NUM_THREADS") && ls && atoi(ls) > 0) omp_set_num_threads(MAX(1, (int)g_get_num_processors() / atoi(ls)));
    if (rank != 0 && !freopen("/dev/null", "w", stdout)) {
      fprintf(stderr, CMD ": rank %d: cannot silence standard output\n", rank);
      goto out;
    }
  }
  /* what every process must share besides the runtime's own items: another --steps on one rank failed
   * only at the deadline, another --save or --resume split a checkpoint (px_runtime_new_rank compares) */
  agree = g_strdup_printf("steps %d; save %s; save_every %d; keep %d; resume %s", a.steps,
                          a.save ? a.save : "(none)", a.save_every, a.keep, a.resume ? a.resume : "(none)");
  a.opt.agree = agree;
  rt = world ? px_runtime_new_rank(model, &plan, &a.opt, world, &error) : px_runtime_new(model, &plan, &a.opt, &error);
  if (!rt || (a.resume && !px_runtime_resume(rt, a.resume, &error)) ||
      (a.save && rank == 0 && !px_checkpoint_check_dir(a.save, &error))) {
    /* the same sentence on every rank: rank 0 says it */
    rc = rank == 0 ? px_cli_fail(CMD, error) : 1;
    goto out;
  }
  /* --steps is the step to reach: at or below the checkpoint's the run did nothing and exited 0 */
  if (a.resume && px_runtime_steps_done(rt) >= a.steps) {
    if (rank == 0)
      fprintf(stderr, CMD ": --resume %s is at step %d, --steps %d is the step to reach: no step would run (give "
              "--steps above %d)\n", a.resume, px_runtime_steps_done(rt), a.steps, px_runtime_steps_done(rt));
    goto out;
  }
  const PxPlan *p = px_runtime_plan(rt);
  double tokens = (double)p->gbs * p->seq;
  jb = json_builder_new();
  json_builder_begin_object(jb);
  if (!a.json) {
    g_autofree char *cp = p->cp > 1 ? g_strdup_printf(" x cp %d (ring attention)", p->cp) : g_strdup("");
    printf("# %s: model %s, dp %d%s x tp %d x pp %d (%d ranks, %s), %s, vpp %d, m %d micro-batches of %d x %d tokens, "
           "ZeRO-%d, checkpoint %s%s, backend %s, %s\n",
           CMD, model->desc.name, p->dp, cp, p->tp, p->pp, px_runtime_world(rt),
           !world ? "threads of this process, local" : !g_strcmp0(a.comm, "mpi") ? "one process each, mpi"
           : !g_strcmp0(a.comm, "nccl") ? "one process and GPU each, nccl" : "one process each, tcp", px_schedule_name(p->schedule), p->vpp,
           p->m, p->mbs, p->seq, p->zero, px_ckpt_name(p->ckpt), p->seq_parallel ? ", sequence parallel" : "", a.opt.backend,
           a.opt.dtype == PX_DTYPE_BF16 ? "bf16 mixed precision (bf16 activations, fp32 statistics and master)"
           : a.opt.dtype == PX_DTYPE_F16 ? "f16 mixed precision (f16 activations, fp32 statistics and master, dynamic loss scaling)"
           : px_dtype_name(a.opt.dtype));
    if (p->bucket_bytes > 0 && px_plan_data_ranks(p) > 1)
      printf("# DP reduction in buckets of %.0f B, each queued as the last backward finishes its layers (docs/executor.md)\n",
             p->bucket_bytes);
    if (p->offload == PX_OFFLOAD_OPTIMIZER)
      printf("# offload optimizer: fp32 master, moments and a gradient copy in host memory, AdamW on the host\n");
    else if (p->offload == PX_OFFLOAD_OPTIMIZER_PARAMS)
      printf("# offload optimizer+params: the optimizer and the ZeRO-3 parameter shard in host memory, each layer's "
             "piece uploaded into its gather\n");
    if (model->desc.dropout) printf("# dropout: off (the executor does not implement it; memory predicted without masks)\n");
    if (model->desc.experts > 0) {
      g_autofree char *cap = model->desc.capacity_factor > 0
                                 ? g_strdup_printf("capacity factor %g (copies over an expert's capacity dropped, "
                                                   "largest gate weights kept)", model->desc.capacity_factor)
                                 : g_strdup("dropless");
      printf("# mixture of experts: %d experts, top %d%s, %s; experts over etp %d x ep %d x edp %d; the loss "
             "column is the language-model loss, the load-balancing loss (coefficient %g) is in the gradients\n",
             model->desc.experts, model->desc.top_k, model->desc.norm_topk ? " renormalised" : "", cap, px_plan_etp(p),
             MAX(p->ep, 1), px_plan_edp(p), model->desc.aux_loss_coef);
    }
    printf("# %5s %12s %10s %12s %10s %10s\n", "step", "loss", "time_ms", "tokens/s", "lr", "grad_norm");
  }
  json_builder_set_member_name(jb, "steps");
  json_builder_begin_array(jb);
  double total_time = 0, after_first = 0;
  int done = 0;
  while (px_runtime_steps_done(rt) < a.steps) {
    PxStepResult sr;
    if (!px_runtime_step(rt, &sr, &error)) {
      rc = px_cli_fail(CMD, error);
      goto out;
    }
    total_time += sr.time_s;
    if (done > 0) after_first += sr.time_s;
    done++;
    if (a.json) {
      json_builder_begin_object(jb);
      px_json_member_int(jb, "step", sr.step);
      px_json_member_double(jb, "loss", sr.loss);
      px_json_member_double(jb, "time_s", sr.time_s);
      px_json_member_double(jb, "tokens_per_s", tokens / sr.time_s);
      px_json_member_double(jb, "lr", sr.lr);
      px_json_member_double(jb, "grad_norm", sr.grad_norm);
      if (a.opt.dtype == PX_DTYPE_F16) {
        px_json_member_double(jb, "loss_scale", sr.loss_scale);
        json_builder_set_member_name(jb, "skipped");
        json_builder_add_boolean_value(jb, sr.skipped);
      }
      json_builder_end_object(jb);
    } else {
      printf("  %5d %12.6f %10.2f %12.0f %10.3g %10.4f", sr.step, sr.loss, sr.time_s * 1e3, tokens / sr.time_s,
             sr.lr, sr.grad_norm);
      if (a.opt.dtype == PX_DTYPE_F16)
        printf("  loss scale %g%s", sr.loss_scale, sr.skipped ? ": gradients overflowed, step skipped, scale halved" : "");
      printf("\n");
      fflush(stdout);
    }
    gboolean last = px_runtime_steps_done(rt) == a.steps;
    if (a.save && ((a.save_every > 0 && sr.step % a.save_every == 0) || last) &&
        (!px_runtime_save(rt, a.save, &error) || (rank == 0 && !px_checkpoint_prune(a.save, a.keep, NULL, &error)))) {
      rc = px_cli_fail(CMD, error);
      goto out;
    }
  }
  json_builder_end_array(jb);
  if (!a.json) {
    printf("# memory per rank in %s (%s), measured (peak for activations and buffers) | predicted by the planner\n",
           units.name, units.scale == 1e9 ? "1e9 bytes" : "2^30 bytes");
    printf("# %4s %5s %3s %3s %10s %10s %10s %10s %10s | %10s %10s %10s %10s %10s\n", "rank", "stage", "dp", "tp",
           "weights", "grads", "optimizer", "act_peak", "buffers", "weights", "grads", "optimizer", "activations",
           "buffers");
  }
  json_builder_set_member_name(jb, "memory");
  json_builder_begin_array(jb);
  all_mem = g_new0(PxRankMemory, px_runtime_world(rt));
  if (!px_runtime_gather_memory(rt, all_mem, &error)) {
    rc = px_cli_fail(CMD, error);
    goto out;
  }
  for (int r = 0; r < px_runtime_world(rt); r++) {
    PxRankMemory m = all_mem[r];
    double meas[5], pred[5];
    px_rank_memory_rows(&m, meas, pred);
    if (a.json) {
      json_builder_begin_object(jb);
      px_json_member_int(jb, "rank", r);
      px_json_member_int(jb, "stage", m.stage);
      px_json_member_int(jb, "dp", m.dp);
      px_json_member_int(jb, "tp", m.tp);
      add_memory_json(jb, "measured", meas);
      add_memory_json(jb, "predicted", pred);
      if (plan.offload != PX_OFFLOAD_NONE) { /* the optimizer's side in host memory */
        json_builder_set_member_name(jb, "host");
        json_builder_begin_object(jb);
        px_json_member_double(jb, "measured", px_rank_memory_host(&m));
        px_json_member_double(jb, "predicted", m.predicted.host);
        json_builder_set_member_name(jb, "pinned");
        json_builder_add_boolean_value(jb, m.host_pinned);
        json_builder_end_object(jb);
      }
      json_builder_end_object(jb);
    } else {
      printf("  %4d %5d %3d %3d", r, m.stage, m.dp, m.tp);
      for (int i = 0; i < 5; i++) printf(" %10.6f", meas[i] / units.scale);
      printf(" |");
      for (int i = 0; i < 5; i++) printf(" %10.6f", pred[i] / units.scale);
      printf("\n");
      if (plan.offload != PX_OFFLOAD_NONE)
        printf("# %4d offload: host memory (fp32 master, moments, gradient copy%s) measured %.6f %s | predicted %.6f %s, %s\n",
               r, plan.offload == PX_OFFLOAD_OPTIMIZER_PARAMS ? ", parameter shard" : "",
               px_rank_memory_host(&m) / units.scale, units.name, m.predicted.host / units.scale, units.name,
               m.host_pinned ? "pinned" : "pageable");
    }
  }
  if (!a.json)
    printf("# measured buffers include each op's temporaries (e.g. the logits gradient); the planner counts p2p\n"
           "# and DP buffers and leaves temporaries to its per-GPU workspace allowance (%.2f %s)\n",
           p->workspace_bytes / units.scale, units.name);
  json_builder_end_array(jb);
  if (a.compare) {
    /* the measured step: the mean after the first (warm-up), or the only one */
    double measured = done > 1 ? after_first / (done - 1) : total_time;
    /* the runtime's plan at the precision the run computes in (bf16 / f16 GEMMs) */
    PxPlan sp;
    px_run_compare_plan(&sp, p, a.opt.dtype);
    gboolean ok = px_runtime_gather_timeline(rt, &error) &&
                  (rank != 0 || px_run_compare(model, cluster, &sp, px_runtime_timeline(rt), measured, all_mem,
                                               px_runtime_world(rt), a.json ? jb : NULL, a.trace, a.plot, &error));
    px_plan_clear(&sp);
    if (!ok) {
      rc = px_cli_fail(CMD, error);
      goto out;
    }
  }
  if (a.json) {
    json_builder_set_member_name(jb, "plan");
    px_report_plan_json(jb, p);
    px_json_member_string(jb, "units", "bytes");
    px_json_member_double(jb, "tokens_per_step", tokens);
    px_json_member_double(jb, "mean_tokens_per_s", done ? tokens * done / total_time : 0);
    json_builder_end_object(jb);
    px_report_print_json(jb);
  }
  if ((a.trace || a.csv || a.gantt || a.plot) && !a.compare && !px_runtime_gather_timeline(rt, &error)) {
    rc = px_cli_fail(CMD, error);
    goto out;
  }
  const PxTimeline *tl = px_runtime_timeline(rt);
  if (rank != 0) { /* the files are rank 0's to write */
    rc = 0;
    goto out;
  }
  if ((a.trace || a.csv || a.gantt || a.plot) && !tl) {
    fprintf(stderr, CMD ": no step ran, so there is no timeline to write\n");
    goto out;
  }
  if ((a.trace && !a.compare && !px_timeline_write_trace(tl, a.trace, &error)) || (a.csv && !px_timeline_write_csv(tl, a.csv, &error))) {
    rc = px_cli_fail(CMD, error);
    goto out;
  }
  if (a.gantt) {
    /* beside --json the chart goes to stderr, so stdout stays one JSON object (as simulate's; it was dropped) */
    g_autofree char *g = px_timeline_gantt(tl, 100);
    fprintf(a.json ? stderr : stdout, "# measured timeline of step %d\n%s", px_runtime_steps_done(rt), g);
  }
  if (a.plot) {
    g_autofree char *title = g_strdup_printf("%s measured (cpu): dp %d, tp %d, pp %d, %s", model->desc.name, p->dp,
                                             p->tp, p->pp, px_schedule_name(p->schedule));
    if (!px_plot_timeline(tl, a.plot, title, FALSE, &error) || !px_plot_memory(tl, a.plot, title, 0, FALSE, &error)) {
      rc = px_cli_fail(CMD, error);
      goto out;
    }
  }
  rc = 0;
out:
  px_runtime_free(rt);
  px_comm_free(world);
  if (world && (!g_strcmp0(a.comm, "mpi") || !g_strcmp0(a.comm, "nccl"))) px_comm_mpi_finalize();
  g_free(all_mem);
  g_free(a.comm);
  px_plan_clear(&plan);
  px_plan_options_clear(&o);
  g_free(a.plot);
  g_free(a.trace);
  g_free(a.csv);
  g_free(a.save);
  g_free(a.resume);
  g_free(a.dtype);
  g_free(a.backend);
  g_free(a.data);
  return rc;
}
