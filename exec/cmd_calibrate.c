/* cmd_calibrate.c — `parallax-exec calibrate`: measure the rates the cost
 * model needs on the backend and communicator at hand, and write them as a
 * cluster profile (INI) that `parallax-sim ... --cluster FILE` reads:
 *   - GEMM FLOP/s over the model's own linear shapes (tokens = mbs · seq);
 *     the best becomes the peak, every shape's share of it is listed;
 *   - memory-bound bandwidth (a residual add over 3 large tensors);
 *   - the per-kernel overhead (the same op on 16 elements);
 *   - every op class the cost model charges apart (norms, activation, residual
 *     add, cross entropy, embedding, forward and backward; the unfused
 *     attention; the optimizer step) through its px_op_* at the model's shapes
 *     (a TP rank's with --tp), as the rate that makes cost.c's charge for it
 *     (px_cost_class_bytes ...) equal the measured time;
 *   - all-reduce bus bandwidth by message size over a group of --ranks ranks
 *     (2 (n-1)/n · bytes / time, as nccl-tests), and the alpha-beta fit the
 *     cost model uses: the best busbw, the fastest message's time per ring step.
 *     --comm local runs --ranks thread-ranks; --comm mpi (the default under
 *     mpirun) one process per rank, rank 0 writing the profile;
 *   - the one-way time of a pipeline transfer (one micro-batch's activation)
 *     issued as the runtime issues it, on p2p streams, its receiver waiting
 *     through its peer's work: [node] p2p_latency.
 * --dtype bf16|f16 measures the kernels a run of that dtype executes (half
 * GEMMs and activations, fp32 statistics, the mixed-precision optimizer),
 * writes the GEMM rate as peak_bf16 / peak_fp16 and every bandwidth against
 * the bytes cost.c charges a plan of that precision; [cluster]
 * calibrated_dtype records the dtype (docs/cost.md section 8).
 * Only the public APIs of backend.h and comm.h are used, so the same command
 * serves CUDA/NCCL once they exist (--backend cuda). Times are medians of
 * --reps runs after one warm-up. */
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "backend.h"
#include "comm.h"
#include "cluster.h"
#include "config.h"
#include "cost.h"
#include "exec_commands.h"
#include "model.h"
#include "options.h"

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

/* The elements of each operand of the cache-evicting add (fp32: 64 MiB). */
#define EVICT_ELEMS ((gint64)16 << 20)

/* Median seconds of one call, each timed alone after an untimed call of
 * `evict` (another op streaming a buffer larger than the caches: a run meets
 * the op after other work has passed through them). */
static gboolean time_after(PxBackend *be, TimedFn fn, void *data, TimedFn evict, void *edata, int reps, double *out,
                           GError **error) {
  g_autofree double *t = g_new(double, reps);
  if (!fn(data, error) || !px_backend_synchronize(be, error)) return FALSE;
  for (int i = 0; i < reps; i++) {
    if (!evict(edata, error) || !px_backend_synchronize(be, error)) return FALSE;
    double t0 = now();
    if (!fn(data, error) || !px_backend_synchronize(be, error)) return FALSE;
    t[i] = now() - t0;
  }
  qsort(t, reps, sizeof *t, cmp_double);
  *out = MAX(t[reps / 2], 1e-9);
  return TRUE;
}

/* Median seconds of one call, `inner` calls per timing chosen so that a
 * timing takes about a millisecond (a microsecond op is not one clock read). */
static gboolean time_op(PxBackend *be, TimedFn fn, void *data, int reps, double *out, GError **error) {
  double one;
  if (!time_median(be, fn, data, 1, 1, &one, error)) return FALSE;
  int inner = (int)CLAMP(1e-3 / one, 1, 1000);
  return time_median(be, fn, data, reps, inner, out, error);
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

static PxTensor *tensor2(PxBackend *be, const char *name, PxDType dt, gint64 r, gint64 c, GError **error) {
  gint64 shape[2] = {r, c};
  return px_tensor_new(be, name, dt, PX_MEM_BUFFERS, 2, shape, error);
}

/* ---- the op classes the cost model charges apart (PxOpClass), at the
 * model's shapes: each op's median time, and the rate that makes the cost
 * model's charge (bytes / rate + kernels x overhead, cost.c) equal it ---- */

/* The tensors of one calibration, freed together; filled with values in
 * [-1, 1) (no NaN or denormal slows an op; token ids in [0, vocab)). */
typedef struct {
  PxBackend *be;
  GPtrArray *all;
  guint32 seed;
} Pool;

static PxTensor *pool_tensor(Pool *p, const char *name, PxDType dt, gint64 r, gint64 c, GError **error) {
  gint64 shape[2] = {r, c};
  PxTensor *t = px_tensor_new(p->be, name, dt, PX_MEM_BUFFERS, c > 0 ? 2 : 1, shape, error);
  if (!t) return NULL;
  g_ptr_array_add(p->all, t);
  gint64 n = r * MAX(c, 1);
  gboolean ok;
  if (dt == PX_DTYPE_I32) {
    g_autofree gint32 *h = g_new(gint32, n);
    for (gint64 i = 0; i < n; i++) h[i] = (gint32)((p->seed = p->seed * 1664525u + 1013904223u) >> 8) % 1024;
    ok = px_tensor_upload(t, h, error);
  } else {
    g_autofree float *h = g_new(float, n);
    for (gint64 i = 0; i < n; i++) h[i] = (float)((p->seed = p->seed * 1664525u + 1013904223u) >> 8) / (1 << 23) - 1.0f;
    if (dt == PX_DTYPE_F32) ok = px_tensor_upload(t, h, error);
    else { /* the same values through doubles, rounded once into dt */
      g_autofree double *hd = g_new(double, n);
      for (gint64 i = 0; i < n; i++) hd[i] = h[i];
      ok = px_tensor_upload_f64(t, hd, error);
    }
  }
  return ok ? t : NULL;
}

typedef enum {
  OP_NORM_F, OP_NORM_B, OP_ACT_F, OP_ACT_B, OP_RES_F, OP_RES_B, OP_CE_F, OP_CE_B, OP_EMB_F, OP_EMB_B,
  OP_ATT_F, OP_ATT_B, OP_OPT, N_OPS
} OpKind;

typedef struct {
  PxBackend *be;
  OpKind kind;
  const PxModelDesc *d;
  int B, S, tp;
  gint64 V;                 /* the rank's vocabulary (V / tp) */
  PxAttnShape as;
  PxTensor *x, *y, *dx, *dy, *w, *b, *dw, *db, *mean, *rstd;       /* (T, h) and (h) */
  PxTensor *f1, *f2, *f3, *df1, *df2;                             /* (T, ffn) */
  PxTensor *logits, *dlogits, *targets, *losses, *tokens, *wte, *wpe, *dwte, *dwpe; /* (T, V), (V, h) */
  PxTensor *qkv, *dqkv, *att, *ao, *dao;                          /* attention */
  PxTensor *sq;                                                   /* optimizer: its sum of squares */
  PxTensor *gmax, *stats;                                         /* vocabulary-parallel cross entropy (tp > 1) */
  GArray *items;                                                  /* PxAdamWItem */
  GPtrArray *grads;
  GPtrArray *halves;                                              /* mixed precision: the half parameters */
} Ops;

static gboolean op_once(void *data, GError **error) {
  Ops *o = data;
  PxBackend *be = o->be;
  gboolean ln = o->d->norm == PX_NORM_LAYERNORM, gated = px_ffn_gated(o->d->ffn_kind);
  switch (o->kind) {
  case OP_NORM_F:
    return ln ? px_op_layernorm_fwd(be, o->y, o->mean, o->rstd, o->x, o->w, o->b, 1e-5, error)
              : px_op_rmsnorm_fwd(be, o->y, o->rstd, o->x, o->w, 1e-5, error);
  case OP_NORM_B:
    return ln ? px_op_layernorm_bwd(be, o->dx, o->dw, o->db, o->dy, o->x, o->w, o->mean, o->rstd, error)
              : px_op_rmsnorm_bwd(be, o->dx, o->dw, o->dy, o->x, o->w, o->rstd, error);
  case OP_ACT_F:
    return gated ? px_op_swiglu_fwd(be, o->f3, o->f1, o->f2, error) : px_op_gelu_fwd(be, o->f3, o->f1, error);
  case OP_ACT_B:
    return gated ? px_op_swiglu_bwd(be, o->df1, o->df2, o->f3, o->f1, o->f2, error)
                 : px_op_gelu_bwd(be, o->df1, o->f3, o->f1, error);
  case OP_RES_F: return px_op_residual_fwd(be, o->y, o->x, o->dy, error);
  case OP_RES_B: return px_op_residual_bwd(be, o->dx, o->y, o->dy, error);
  /* tp > 1: the vocabulary-parallel ops of the rank's V / tp columns, as
   * exec/gpt.c runs them (the all-reduces between them are the TP link's) */
  case OP_CE_F:
    if (o->tp == 1) return px_op_cross_entropy_fwd(be, o->losses, NULL, o->logits, o->targets, error);
    return px_op_ce_vp_max(be, o->gmax, o->logits, o->V, error) &&
           px_op_ce_vp_stats(be, o->stats, o->logits, o->targets, o->gmax, 0, o->V, error) &&
           px_op_ce_vp_loss(be, o->losses, NULL, o->gmax, o->stats, error);
  case OP_CE_B:
    if (o->tp == 1) return px_op_cross_entropy_bwd(be, o->dlogits, o->logits, o->targets, 1.0, error);
    return px_op_ce_vp_bwd(be, o->dlogits, o->logits, o->targets, o->gmax, o->stats, 0, o->V, 1.0, error);
  case OP_EMB_F:
    if (o->tp == 1) return px_op_embedding_fwd(be, o->y, o->tokens, o->wte, o->wpe, o->B, o->S, error);
    return px_op_embedding_vp_fwd(be, o->y, o->tokens, o->wte, o->wpe, 0, o->V, o->B, o->S, error);
  case OP_EMB_B:
    if (o->tp == 1) return px_op_embedding_bwd(be, o->dwte, o->dwpe, o->dy, o->tokens, o->B, o->S, error);
    return px_op_embedding_vp_bwd(be, o->dwte, o->dwpe, o->dy, o->tokens, 0, o->V, o->B, o->S, error);
  case OP_ATT_F: return px_op_attention_fwd(be, o->ao, o->att, o->qkv, &o->as, error);
  case OP_ATT_B: return px_op_attention_bwd(be, o->dqkv, o->dao, o->qkv, o->att, &o->as, error);
  case OP_OPT: { /* as the runtime's OPTIMIZER_STEP: norm, AdamW over every tensor, gradients zeroed */
    double sq;
    PxAdamW opt = {1e-4, 0.9, 0.95, 1e-8, 0, 1, 1.0};
    if (!px_tensor_zero(o->sq, error) ||
        !px_op_sum_squares_acc_multi(be, o->sq, (const PxTensor *const *)o->grads->pdata, (int)o->grads->len, error) ||
        !px_tensor_download(o->sq, &sq, error) ||
        !px_op_adamw_multi(be, (const PxAdamWItem *)o->items->data, (int)o->items->len, &opt, NULL, NULL, error))
      return FALSE;
    /* mixed precision: the fp32 master rounded into the half parameters */
    for (guint i = 0; o->halves && i < o->halves->len; i++)
      if (!px_op_cast(be, o->halves->pdata[i], g_array_index(o->items, PxAdamWItem, i).param, FALSE, error))
        return FALSE;
    for (guint i = 0; i < o->grads->len; i++)
      if (!px_tensor_zero(o->grads->pdata[i], error)) return FALSE;
    return TRUE;
  }
  case N_OPS: break;
  }
  return FALSE;
}

/* Rate that makes `amount / rate + kernels x overhead` the measured s (the
 * overhead never takes more than half of it). */
static double rate_of(double amount, double s, int kernels, double overhead) {
  return amount / MAX(s - kernels * overhead, 0.5 * s);
}

typedef struct {
  double bw[PX_N_OPC][2]; /* bytes/s per class and direction */
  double opt_bw, attn_fwd, attn_bwd;
  double block_fwd_s;     /* one block's forward ops but its GEMMs (seconds) */
} ClassRates;

/* The plan whose bytes the cost model charges a run in dt with: cost.c
 * counts E = px_plan_act_bytes(plan) per activation element (4 for fp32, 2
 * for bf16 / fp16) and the optimizer's px_cost_optimizer_bytes with the
 * gradient reduction's bytes, which the runtime does in fp32 (its fp32
 * plan; run --compare pins them: exec/run_compare.c px_run_compare_plan). */
typedef struct {
  PxPrecision prec;
  int E, G;
} Charged;

static Charged charged_of(PxDType dt) {
  PxPlan p;
  px_plan_init(&p);
  p.stack = PX_STACK_PARALLAX;
  p.precision = PX_PREC_FP32; /* the runtime's own plan */
  Charged c = {dt == PX_DTYPE_BF16 ? PX_PREC_BF16 : dt == PX_DTYPE_F16 ? PX_PREC_FP16 : PX_PREC_FP32, 0,
               px_cost_grad_reduce_bytes(&p)};
  p.precision = c.prec; /* the plan run --compare simulates */
  c.E = px_plan_act_bytes(&p);
  px_plan_clear(&p);
  return c;
}

/* Every op class at B x S tokens of the model in dt (statistics f32 beside
 * half activations, backend.h; with dt half the optimizer of mixed
 * precision, as exec/runtime.c steps it: the norm of the half gradients,
 * AdamW of the fp32 master with its fp32 moments and the half gradient, the
 * master rounded into the half parameters, the gradients zeroed), written to
 * ini as comments (time, what it moves, the rate), the rates into r. The
 * optimizer runs over the first block's, the embedding's and the LM head's
 * tensors (each up to 2^24 elements). */
static gboolean measure_classes(PxBackend *be, const PxModel *model, PxDType dt, int B, int S, int tp, int reps,
                                double overhead, GString *ini, ClassRates *r, GError **error) {
  const PxModelDesc *d = &model->desc;
  /* a TP rank's shapes: heads, FFN and vocabulary / tp (the norms, residual
   * adds and the embedding's output see every token: no sequence parallelism) */
  gint64 T = (gint64)B * S, h = d->hidden, f = d->ffn / tp, V = (d->vocab + tp - 1) / tp, hd = d->head_dim > 0 ? d->head_dim : h / d->heads;
  int heads = d->heads / tp, kvh = d->kv_heads / tp;
  gint64 qkv_w = (gint64)(heads + 2 * kvh) * hd, att_w = (gint64)heads * hd;
  const Charged ch = charged_of(dt);
  const int E = ch.E; /* the bytes cost.c charges per element (fp32: 4) */
  const gboolean mixed = px_dtype_is_half(dt);
  g_autoptr(GPtrArray) all = g_ptr_array_new_with_free_func((GDestroyNotify)px_tensor_free);
  Pool p = {be, all, 12345};
  Ops o = {.be = be, .d = d, .B = B, .S = S, .tp = tp, .V = V, .as = {B, S, heads, kvh, (int)hd, 0, 0, 0}};
  /* activations, parameters and their gradients in dt; statistics (norm
   * mean / rstd, per-token losses, the vocabulary-parallel max and sums) f32 */
  const PxDType F = dt, St = PX_DTYPE_F32;
  gboolean ok = (o.x = pool_tensor(&p, "x", F, T, h, error)) && (o.y = pool_tensor(&p, "y", F, T, h, error)) &&
                (o.dx = pool_tensor(&p, "dx", F, T, h, error)) && (o.dy = pool_tensor(&p, "dy", F, T, h, error)) &&
                (o.w = pool_tensor(&p, "w", F, h, 0, error)) && (o.b = pool_tensor(&p, "b", F, h, 0, error)) &&
                (o.dw = pool_tensor(&p, "dw", F, h, 0, error)) && (o.db = pool_tensor(&p, "db", F, h, 0, error)) &&
                (o.mean = pool_tensor(&p, "mean", St, T, 0, error)) && (o.rstd = pool_tensor(&p, "rstd", St, T, 0, error)) &&
                (o.f1 = pool_tensor(&p, "f1", F, T, f, error)) && (o.f2 = pool_tensor(&p, "f2", F, T, f, error)) &&
                (o.f3 = pool_tensor(&p, "f3", F, T, f, error)) && (o.df1 = pool_tensor(&p, "df1", F, T, f, error)) &&
                (o.df2 = pool_tensor(&p, "df2", F, T, f, error)) &&
                (o.logits = pool_tensor(&p, "logits", F, T, V, error)) &&
                (o.dlogits = pool_tensor(&p, "dlogits", F, T, V, error)) &&
                (o.losses = pool_tensor(&p, "losses", St, T, 0, error)) &&
                (o.wte = pool_tensor(&p, "wte", F, V, h, error)) && (o.dwte = pool_tensor(&p, "dwte", F, V, h, error)) &&
                (o.qkv = pool_tensor(&p, "qkv", F, T, qkv_w, error)) && (o.dqkv = pool_tensor(&p, "dqkv", F, T, qkv_w, error)) &&
                (o.ao = pool_tensor(&p, "ao", F, T, att_w, error)) && (o.dao = pool_tensor(&p, "dao", F, T, att_w, error));
  if (ok && d->pos == PX_POS_LEARNED)
    ok = (o.wpe = pool_tensor(&p, "wpe", F, S, h, error)) && (o.dwpe = pool_tensor(&p, "dwpe", F, S, h, error));
  if (ok) {
    gint64 shape[4] = {B, heads, S, S};
    ok = (o.att = px_tensor_new(be, "att", F, PX_MEM_BUFFERS, 4, shape, error)) != NULL;
    if (ok) g_ptr_array_add(all, o.att);
  }
  if (ok && tp > 1)
    ok = (o.gmax = pool_tensor(&p, "gmax", St, T, 0, error)) && (o.stats = pool_tensor(&p, "stats", St, 2, T, error));
  if (ok) {
    Pool ids = {be, all, 777};
    ok = (o.targets = pool_tensor(&ids, "targets", PX_DTYPE_I32, T, 0, error)) &&
         (o.tokens = pool_tensor(&ids, "tokens", PX_DTYPE_I32, T, 0, error));
  }
  if (!ok) return FALSE;
  if (V < 1024) { /* ids in [0, 1024): fold them into the rank's vocabulary */
    g_autofree gint32 *hbuf = g_new(gint32, T);
    for (int k = 0; k < 2; k++) {
      PxTensor *t = k ? o.tokens : o.targets;
      if (!px_tensor_download(t, hbuf, error)) return FALSE;
      for (gint64 i = 0; i < T; i++) hbuf[i] %= (gint32)V;
      if (!px_tensor_upload(t, hbuf, error)) return FALSE;
    }
  }
  /* the optimizer's tensors */
  g_autoptr(GArray) items = g_array_new(FALSE, FALSE, sizeof(PxAdamWItem));
  g_autoptr(GPtrArray) grads = g_ptr_array_new();
  g_autoptr(GPtrArray) halves = mixed ? g_ptr_array_new() : NULL;
  double n_params = 0;
  for (guint li = 0; li < model->n_layers; li++) {
    const PxLayer *layer = &model->layers[li];
    if (layer->kind == PX_LAYER_BLOCK && layer->block != 0) continue;
    if (layer->kind == PX_LAYER_FINAL_NORM) continue;
    for (guint ti = 0; ti < layer->n_tensors; ti++) {
      const PxTensorSpec *ts = &layer->tensors[ti];
      gint64 n = ts->ndim == 2 ? ts->shape[0] * ts->shape[1] : ts->shape[0];
      if (n > (1 << 24)) continue;
      PxAdamWItem it = {0};
      PxTensor *g, *half = NULL;
      /* mixed precision: AdamW updates the fp32 master (moments fp32) from the half gradient */
      const PxDType M = mixed ? PX_DTYPE_F32 : F;
      if (!(it.param = pool_tensor(&p, "p", M, n, 0, error)) || !(g = pool_tensor(&p, "g", F, n, 0, error)) ||
          !(it.m = pool_tensor(&p, "m", M, n, 0, error)) || !(it.v = pool_tensor(&p, "v", M, n, 0, error)) ||
          !px_tensor_zero(it.m, error) || !px_tensor_zero(it.v, error) ||
          (mixed && !(half = pool_tensor(&p, "p_half", F, n, 0, error))))
        return FALSE;
      if (half) g_ptr_array_add(halves, half);
      it.grad = g;
      it.weight_decay = ts->ndim == 2 ? 0.1 : 0;
      g_array_append_val(items, it);
      g_ptr_array_add(grads, g);
      n_params += n;
    }
  }
  gint64 one = 1;
  if (!(o.sq = px_tensor_new(be, "sq", PX_DTYPE_F64, PX_MEM_BUFFERS, 1, &one, error))) return FALSE;
  g_ptr_array_add(all, o.sq);
  o.items = items;
  o.grads = grads;
  o.halves = halves;

  static const struct { OpKind op; int cls, dir; const char *what; } plan[] = {
    {OP_NORM_F, PX_OPC_NORM, 0, "norm forward"},         {OP_NORM_B, PX_OPC_NORM, 1, "norm backward"},
    {OP_ACT_F, PX_OPC_ACT, 0, "activation forward"},    {OP_ACT_B, PX_OPC_ACT, 1, "activation backward"},
    {OP_RES_F, PX_OPC_RESIDUAL, 0, "residual add"},     {OP_RES_B, PX_OPC_RESIDUAL, 1, "residual backward"},
    {OP_CE_F, PX_OPC_CE, 0, "cross entropy forward"},   {OP_CE_B, PX_OPC_CE, 1, "cross entropy backward"},
    {OP_EMB_F, PX_OPC_EMBEDDING, 0, "embedding forward"}, {OP_EMB_B, PX_OPC_EMBEDDING, 1, "embedding backward"},
    {OP_ATT_F, -1, 0, "attention forward"},              {OP_ATT_B, -1, 1, "attention backward"},
    {OP_OPT, -2, 0, "optimizer step"},
  };
  g_string_append_printf(ini, "# op classes at %d x %d tokens, tp %d (the rate makes bytes / rate + kernels x "
                              "kernel_overhead the measured time):\n", B, S, tp);
  for (gsize i = 0; i < G_N_ELEMENTS(plan); i++) {
    o.kind = plan[i].op;
    double s;
    if (plan[i].op == OP_OPT) {
      /* a run's OPTIMIZER_STEP follows the whole backward, which has streamed
       * the activations and gradients through the caches since the states
       * were last touched: timed alone, each time after a residual add over
       * EVICT_ELEMS fp32 elements per operand (3 x 64 MiB, more than a
       * server CPU's L3 or an H100's 50 MB L2). Warm, back to back, tiny-gpt's
       * step measured 1.2x faster than in the runs (docs/cost.md section 8). */
      Add ev = {be, NULL, NULL, NULL};
      g_autoptr(PxTensor) ea = tensor2(be, "evict_a", PX_DTYPE_F32, EVICT_ELEMS, 1, error);
      g_autoptr(PxTensor) eb = ea ? tensor2(be, "evict_b", PX_DTYPE_F32, EVICT_ELEMS, 1, error) : NULL;
      g_autoptr(PxTensor) ec = eb ? tensor2(be, "evict_c", PX_DTYPE_F32, EVICT_ELEMS, 1, error) : NULL;
      if (!ec || !px_tensor_zero(ea, error) || !px_tensor_zero(eb, error)) return FALSE;
      ev.out = ec, ev.a = ea, ev.b = eb;
      if (!time_after(be, op_once, &o, add_once, &ev, reps, &s, error)) return FALSE;
    } else if (!time_op(be, op_once, &o, reps, &s, error)) return FALSE;
    if (plan[i].cls >= 0) {
      gint64 width = plan[i].cls == PX_OPC_ACT ? f : plan[i].cls == PX_OPC_CE ? V : h;
      int kernels;
      double bytes = px_cost_class_bytes(d, plan[i].cls, plan[i].dir, (double)T, (double)width, E, &kernels);
      r->bw[plan[i].cls][plan[i].dir] = rate_of(bytes, s, kernels, overhead);
      if (!plan[i].dir && plan[i].cls != PX_OPC_CE && plan[i].cls != PX_OPC_EMBEDDING)
        r->block_fwd_s += plan[i].cls == PX_OPC_ACT ? s : 2 * s; /* two norms, two residual adds, one activation */
      g_string_append_printf(ini, "#   %-24s %9.2f us  %10.0f B in %d kernel(s)  %8.3f GB/s\n", plan[i].what, s * 1e6,
                             bytes, kernels, r->bw[plan[i].cls][plan[i].dir] / 1e9);
    } else if (plan[i].cls == -1) {
      double fl = px_cost_unfused_attn_flops(B, S, (double)h, tp) * (plan[i].dir ? 2 : 1);
      double *to = plan[i].dir ? &r->attn_bwd : &r->attn_fwd;
      if (!plan[i].dir) r->block_fwd_s += s;
      *to = rate_of(fl, s, 1, overhead);
      g_string_append_printf(ini, "#   %-24s %9.2f us  %10.0f FLOP            %8.3f GFLOP/s\n", plan[i].what, s * 1e6, fl,
                             *to / 1e9);
    } else {
      /* the cost model's bytes per parameter for this executor's fused AdamW
       * (fp32: 24 + 4 + 4; mixed precision: 24 + 4 (fp32 gradient reduction) + 2) */
      double bytes = n_params * px_cost_optimizer_bytes(PX_STACK_PARALLAX, ch.prec, E, ch.G);
      r->opt_bw = bytes / s;
      g_string_append_printf(ini, "#   %-24s %9.2f us  %10.0f B over %.0f parameters  %8.3f GB/s (caches cold)\n",
                             plan[i].what, s * 1e6, bytes, n_params, r->opt_bw / 1e9);
    }
  }
  return TRUE;
}

/* ---- offload: host <-> device copies, AdamW on the host ---- */

typedef struct {
  PxTensor *dev;
  void *host;
  gboolean up;
  PxBackend *hbe;
  PxAdamWItem it;
} Offload;

static gboolean copy_once(void *data, GError **error) {
  Offload *o = data;
  return o->up ? px_tensor_upload(o->dev, o->host, error) : px_tensor_download(o->dev, o->host, error);
}

static gboolean host_adam_once(void *data, GError **error) {
  Offload *o = data;
  PxAdamW opt = {1e-4, 0.9, 0.95, 1e-8, 0, 1, 1.0};
  return px_op_adamw_multi(o->hbe, &o->it, 1, &opt, NULL, NULL, error);
}

/* What the executor's `--offload optimizer` step does besides the device's
 * work: the gradients down and the parameters up (n each in dt, as the
 * runtime moves them: the model's parameters, at most 2^24), and AdamW over
 * them on the host backend (the executor's: the device's host buffers,
 * pinned on cuda; the fp32 master and moments with a gradient in dt). Writes
 * the copy bandwidth (bytes/s, the mean of both directions' medians) and the
 * host AdamW's parameters/s. */
static gboolean measure_offload(PxBackend *be, PxDType dt, gint64 n, int reps, GString *ini, double *pcie_bw,
                                double *adam_rate, GError **error) {
  g_autoptr(PxBackend) hbe = px_backend_new_host(be, error);
  if (!hbe) return FALSE;
  g_autoptr(PxTensor) dev = px_tensor_new_zeroed(be, "offload.dev", dt, PX_MEM_BUFFERS, 1, &n, error);
  g_autoptr(PxTensor) p = dev ? px_tensor_new_zeroed(hbe, "p", PX_DTYPE_F32, PX_MEM_OPTIMIZER, 1, &n, error) : NULL;
  g_autoptr(PxTensor) g = p ? px_tensor_new_zeroed(hbe, "g", dt, PX_MEM_GRADS, 1, &n, error) : NULL;
  g_autoptr(PxTensor) m = g ? px_tensor_new_zeroed(hbe, "m", PX_DTYPE_F32, PX_MEM_OPTIMIZER, 1, &n, error) : NULL;
  g_autoptr(PxTensor) v = m ? px_tensor_new_zeroed(hbe, "v", PX_DTYPE_F32, PX_MEM_OPTIMIZER, 1, &n, error) : NULL;
  if (!v) return FALSE;
  /* what goes up: the parameters in dt (fp32: the master itself) */
  g_autoptr(PxTensor) ph = dt == PX_DTYPE_F32 ? NULL : px_tensor_new_zeroed(hbe, "p_up", dt, PX_MEM_BUFFERS, 1, &n, error);
  if (dt != PX_DTYPE_F32 && !ph) return FALSE;
  Offload o = {dev, g->data, FALSE, hbe, {p, g, m, v, 0.1}};
  double down, up, adam;
  if (!time_op(be, copy_once, &o, reps, &down, error)) return FALSE;
  o.up = TRUE;
  o.host = dt == PX_DTYPE_F32 ? p->data : ph->data;
  if (!time_op(be, copy_once, &o, reps, &up, error) || !time_op(hbe, host_adam_once, &o, reps, &adam, error))
    return FALSE;
  double bytes = (double)px_dtype_size(dt) * (double)n;
  *pcie_bw = 2 * bytes / (down + up);
  *adam_rate = (double)n / adam;
  g_string_append_printf(ini, "# offload: %.0f B down %.1f us, up %.1f us (%.2f GB/s); AdamW of %" G_GINT64_FORMAT
                         " fp32 parameters%s on the cpu backend %.1f us (%.3g parameters/s); host memory %s\n", bytes,
                         down * 1e6, up * 1e6, *pcie_bw / 1e9, n, dt == PX_DTYPE_F32 ? "" : dt == PX_DTYPE_BF16 ?
                         " (bf16 gradients)" : " (f16 gradients)", adam * 1e6, *adam_rate,
                         px_backend_host_pinned(hbe) ? "pinned" : "pageable");
  return TRUE;
}

/* ---- collectives over thread-ranks ---- */

/* Work between collectives: `units` passes of a fixed arithmetic loop, the
 * same work on every rank (it stands for the ops a run computes between two
 * collectives). */
static double busy_work(int units) {
  volatile double acc = 0;
  for (int u = 0; u < units; u++) {
    double a = acc;
    for (int i = 0; i < 4096; i++) a = a * 0.999999 + 1e-6 * i;
    acc = a;
  }
  return acc;
}

/* Seconds of an all-reduce of count floats on comm (every rank calls). With
 * between = 0: the median of reps, each after a barrier (the transfer alone,
 * every rank on a core). With between > 0: the mean of reps, each after
 * busy_work(between) and no barrier, as a run meets its collectives between
 * ops: a rank then also waits for its peer to reach the call, which on a
 * machine whose cores are shared with other work includes waiting for the
 * peer to be given a core. */
static gboolean allreduce_median(PxComm *comm, gsize count, int reps, int between, double *out, GError **error) {
  g_autofree float *buf = g_new0(float, count);
  g_autofree double *t = g_new(double, reps);
  if (!px_comm_all_reduce(comm, buf, count, PX_DTYPE_F32, PX_RED_SUM, NULL, error)) return FALSE;
  double sum = 0;
  for (int i = 0; i < reps; i++) {
    if (between > 0) busy_work(between);
    else if (!px_comm_barrier(comm, NULL, error)) return FALSE;
    double t0 = now();
    if (!px_comm_all_reduce(comm, buf, count, PX_DTYPE_F32, PX_RED_SUM, NULL, error)) return FALSE;
    t[i] = now() - t0;
    sum += t[i];
  }
  qsort(t, reps, sizeof *t, cmp_double);
  *out = MAX(between > 0 ? sum / reps : t[reps / 2], 1e-9);
  return TRUE;
}

/* A measurement every rank of comm runs (rank 0's result is kept). */
typedef gboolean (*Measure)(PxComm *comm, void *arg, double *out, GError **error);

typedef struct {
  PxLocalWorld *world;
  int rank;
  Measure fn;
  void *arg;
  double seconds;
  GError *error;
} ThreadRank;

static gpointer thread_rank(gpointer p) {
  ThreadRank *t = p;
  g_autoptr(PxComm) comm = px_comm_local_new(t->world, t->rank);
  if (!t->fn(comm, t->arg, &t->seconds, &t->error)) px_local_world_abort(t->world, t->error->message);
  return NULL;
}

/* fn over the processes of `mpi` when given, else over `ranks` thread-ranks
 * of the local communicator; rank 0's result. */
static gboolean on_ranks(PxComm *mpi, int ranks, Measure fn, void *arg, double *out, GError **error) {
  if (mpi) return fn(mpi, arg, out, error);
  g_autoptr(PxLocalWorld) w = px_local_world_new(ranks, 60);
  g_autofree ThreadRank *tr = g_new0(ThreadRank, ranks);
  g_autofree GThread **th = g_new(GThread *, ranks);
  for (int r = 0; r < ranks; r++) {
    tr[r] = (ThreadRank){w, r, fn, arg, 0, NULL};
    th[r] = g_thread_new("calibrate", thread_rank, &tr[r]);
  }
  gboolean ok = TRUE;
  for (int r = 0; r < ranks; r++) {
    g_thread_join(th[r]);
    if (tr[r].error) {
      if (ok) g_propagate_error(error, tr[r].error);
      else g_error_free(tr[r].error);
      ok = FALSE;
    }
  }
  *out = tr[0].seconds;
  return ok;
}

typedef struct {
  gsize count;
  int reps, between;
} AllReduceArg;

static gboolean allreduce_measure(PxComm *comm, void *arg, double *out, GError **error) {
  AllReduceArg *a = arg;
  return allreduce_median(comm, a->count, a->reps, a->between, out, error);
}

/* All-reduce time over `ranks` thread-ranks of the local communicator, or over
 * the processes of `mpi` when given (rank 0's median). */
static gboolean allreduce_time(PxComm *mpi, int ranks, gsize bytes, int reps, int between, double *out,
                               GError **error) {
  AllReduceArg a = {MAX(bytes / 4, 1), reps, between};
  return on_ranks(mpi, ranks, allreduce_measure, &a, out, error);
}

/* ---- point-to-point as the pipeline meets it ---- */

/* One send or receive issued as the runtime issues a pipeline transfer: a
 * group of one on the rank's p2p stream (exec/runtime.c issue_group). */
static gboolean p2p_on(PxComm *c, gboolean send, void *buf, gsize count, int peer, PxStream *s, GError **error) {
  px_comm_group_start(c);
  gboolean ok = send ? px_comm_send(c, buf, count, PX_DTYPE_F32, peer, s, error)
                     : px_comm_recv(c, buf, count, PX_DTYPE_F32, peer, s, error);
  GError *end_err = NULL;
  ok = px_comm_group_end(c, s, ok ? error : &end_err) && ok;
  g_clear_error(&end_err);
  return ok;
}

/* The one-way time of a message of count floats between positions 0 and 1
 * of comm (other positions return at once), mean of reps: position 0 works
 * busy_work(units), sends, and receives the reply; position 1, its receive
 * queued since the previous round (its stream's thread waiting, as a
 * pipeline stage waits for its peer's compute), takes the message, works
 * as long, and replies with the seconds it worked. One way = (position 0's
 * round trip − its peer's work) / 2: no clock is compared across ranks. */
static gboolean p2p_one_way(PxComm *comm, PxBackend *be, gsize count, int reps, int units, double *out,
                            GError **error) {
  int pos = px_comm_rank(comm);
  *out = 0;
  if (pos > 1) return TRUE;
  g_autofree float *buf = g_new0(float, MAX(count, 2));
  PxStream *s = px_stream_new(be, "p2p", error);
  if (!s) return FALSE;
  double sum = 0;
  gboolean ok = TRUE;
  for (int i = -1; ok && i < reps; i++) { /* i = -1: warm-up */
    if (pos == 0) {
      busy_work(units);
      double t0 = now();
      ok = p2p_on(comm, TRUE, buf, count, 1, s, error) && p2p_on(comm, FALSE, buf, count, 1, s, error) &&
           px_stream_synchronize(s, error);
      double rt = now() - t0, peer_work = 0;
      memcpy(&peer_work, buf, sizeof peer_work);
      if (i >= 0) sum += MAX(rt - peer_work, 0) / 2;
    } else {
      ok = p2p_on(comm, FALSE, buf, count, 0, s, error) && px_stream_synchronize(s, error);
      double t0 = now();
      busy_work(units);
      double worked = now() - t0;
      memcpy(buf, &worked, sizeof worked);
      ok = ok && p2p_on(comm, TRUE, buf, count, 0, s, error) && px_stream_synchronize(s, error);
    }
  }
  px_stream_free(s);
  *out = sum / reps;
  return ok;
}

typedef struct {
  PxBackend *be;
  gsize count;
  int reps, units;
} P2pArg;

static gboolean p2p_measure(PxComm *comm, void *arg, double *out, GError **error) {
  P2pArg *a = arg;
  return p2p_one_way(comm, a->be, a->count, a->reps, a->units, out, error);
}

/* p2p_one_way over the processes of `mpi` when given, else two thread-ranks
 * of the local communicator (rank 0's mean). */
static gboolean p2p_time(PxComm *mpi, PxBackend *be, gsize bytes, int reps, int units, double *out, GError **error) {
  P2pArg a = {be, MAX(bytes / 4, 2), reps, units};
  return on_ranks(mpi, 2, p2p_measure, &a, out, error);
}

static void kv(GString *s, const char *key, double v) {
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  g_string_append_printf(s, "%s = %s\n", key, g_ascii_formatd(buf, sizeof buf, "%.6g", v));
}

/* The profile read back by the loader simulate uses, before it is written:
 * on a busy machine one preempted run of a small op measured 0.86 MB/s, a
 * rate the loader refuses (common/cluster.c), and simulate then refused
 * calibrate's own profile. The loader's message, without the temporary
 * file's name, and nothing written. */
static gboolean profile_usable(const char *text, const char *out, GError **error) {
  g_autofree char *tmp = NULL;
  int fd = g_file_open_tmp("px-calibrate-XXXXXX.ini", &tmp, error);
  if (fd < 0) return FALSE;
  close(fd);
  g_autoptr(GError) e = NULL;
  gboolean ok = g_file_set_contents(tmp, text, -1, error);
  if (ok) {
    g_autoptr(PxCluster) c = px_cluster_load_ini(tmp, &e);
    if (!c) {
      const char *msg = e->message;
      if (g_str_has_prefix(msg, tmp) && g_str_has_prefix(msg + strlen(tmp), ": ")) msg += strlen(tmp) + 2;
      g_set_error(error, PX_CLUSTER_ERROR, PX_CLUSTER_ERROR_INVALID,
                  "the measurements make a profile simulate would refuse (%s): was the machine busy? measure again, "
                  "with more --reps; %s not written", msg, out);
      ok = FALSE;
    }
  }
  g_unlink(tmp);
  return ok;
}

static int fail(GError *error) {
  fprintf(stderr, "parallax-exec calibrate: %s\n", error ? error->message : "failed");
  return 1;
}

static int calibrate(const char *backend, const char *model_name, PxDType dt, int seq, int mbs, int tp, int ranks,
                     int reps, gint64 max_bytes, const char *name, const char *out, PxComm *mpi);

int px_exec_cmd_calibrate(int argc, char **argv) {
  g_autofree char *backend = NULL, *model_name = NULL, *out = NULL, *name = NULL, *comm_name = NULL, *dtype = NULL;
  int seq = -1, mbs = 1, tp = 1, ranks = 2, reps = 5;
  g_autofree char *seq_s = NULL; /* a string: --seq -1 must not read as "the model's" */
  gint64 max_bytes = 16 << 20;
  GOptionEntry entries[] = {
    {"backend", 0, 0, G_OPTION_ARG_STRING, &backend, "cpu (default) or cuda", "B"},
    {"model", 'M', 0, G_OPTION_ARG_STRING, &model_name, "model whose GEMM shapes are measured (default tiny-gpt)", "NAME|FILE"},
    {"dtype", 0, 0, G_OPTION_ARG_STRING, &dtype,
     "the dtype of the run to predict (run --dtype): f32 (default) or bf16 / f16 (half GEMMs and activations, fp32 "
     "statistics, the mixed-precision optimizer); the GEMM rate goes under peak_fp32 or peak_bf16 / peak_fp16, and "
     "[cluster] calibrated_dtype records it", "T"},
    {"seq", 0, 0, G_OPTION_ARG_STRING, &seq_s, "sequence length of the measured shapes, tokens (default the model's)", "N"},
    {"mbs", 0, 0, G_OPTION_ARG_INT, &mbs, "micro-batch of the measured shapes (default 1)", "N"},
    {"tp", 0, 0, G_OPTION_ARG_INT, &tp, "measure a tensor-parallel rank's shapes: heads, FFN, vocabulary / N (default 1)", "N"},
    {"ranks", 0, 0, G_OPTION_ARG_INT, &ranks, "thread-ranks of the measured collectives (local; default 2; 1 skips them)", "N"},
    {"comm", 0, 0, G_OPTION_ARG_STRING, &comm_name, "local (threads) or mpi (one process per rank; the default under mpirun)", "C"},
    {"max-bytes", 0, 0, G_OPTION_ARG_INT64, &max_bytes, "largest all-reduce message (default 16 MiB)", "BYTES"},
    {"reps", 0, 0, G_OPTION_ARG_INT, &reps, "timed repetitions per measurement (default 5)", "N"},
    {"name", 0, 0, G_OPTION_ARG_STRING, &name, "cluster name in the profile (default calibrated-BACKEND)", "NAME"},
    {"out", 'o', 0, G_OPTION_ARG_FILENAME, &out, "cluster profile to write (INI)", "FILE"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
  };
  g_set_prgname("parallax-exec calibrate"); /* --help's usage line names the command, as run's does */
  /* --ranks counts thread-ranks: under mpi the world's size replaced it without a word */
  gboolean ranks_given = FALSE;
  for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) ranks_given |= px_flag_is(argv[i], "--ranks");
  g_autoptr(GOptionContext) ctx = g_option_context_new("- measure this machine into a cluster profile");
  GOptionEntry *decimal = px_option_entries_decimal(entries); /* "010" is ten, not eight */
  g_option_context_add_main_entries(ctx, decimal, NULL);
  g_autoptr(GError) error = NULL;
  gboolean parsed = g_option_context_parse(ctx, &argc, &argv, &error);
  px_option_entries_decimal_done(decimal);
  if (!parsed) return fail(error) + 1;
  if (!out) {
    fprintf(stderr, "parallax-exec calibrate: give --out FILE for the cluster profile\n");
    return 2;
  }
  if (name) {
    /* the profile's [cluster] name line: a newline broke the INI, spaces at the ends were lost, empty named nothing */
    gboolean ok = *name && g_utf8_validate(name, -1, NULL);
    for (const char *c = name; ok && *c; c++) ok = !g_ascii_iscntrl(*c);
    if (!ok || g_ascii_isspace(name[0]) || g_ascii_isspace(name[strlen(name) - 1])) {
      g_autofree char *shown = g_strescape(name, NULL);
      fprintf(stderr, "parallax-exec calibrate: --name '%s' must be a non-empty line of text without "
              "leading or trailing spaces\n", shown);
      return 2;
    }
  }
  if (seq_s && !px_parse_int_flag("--seq", seq_s, 1, &seq, &error)) {
    fprintf(stderr, "parallax-exec calibrate: %s\n", error->message);
    return 2;
  }
  /* the flag out of range, named with its value */
  const struct { const char *flag; int v, lo, hi; } ranges[] = {
    {"--mbs", mbs, 1, G_MAXINT}, {"--tp", tp, 1, 64}, {"--ranks", ranks, 1, 64}, {"--reps", reps, 1, 1000}};
  for (gsize i = 0; i < G_N_ELEMENTS(ranges); i++)
    if (ranges[i].v < ranges[i].lo || ranges[i].v > ranges[i].hi) {
      fprintf(stderr, "parallax-exec calibrate: %s %d is not in %d..%d\n", ranges[i].flag, ranges[i].v, ranges[i].lo,
              ranges[i].hi);
      return 2;
    }
  if (max_bytes < 1024 || max_bytes > ((gint64)1 << 31)) {
    fprintf(stderr, "parallax-exec calibrate: --max-bytes %" G_GINT64_FORMAT " is not in 1024..2^31\n", max_bytes);
    return 2;
  }
  /* before minutes of measuring: the profile must have somewhere to go */
  g_autofree char *out_why = px_output_flag_why("--out", out);
  if (out_why) {
    fprintf(stderr, "parallax-exec calibrate: %s\n", out_why);
    return 2;
  }
  PxDType dt;
  if (!dtype || !g_ascii_strcasecmp(dtype, "f32") || !g_ascii_strcasecmp(dtype, "fp32")) dt = PX_DTYPE_F32;
  else if (!g_ascii_strcasecmp(dtype, "bf16")) dt = PX_DTYPE_BF16;
  else if (!g_ascii_strcasecmp(dtype, "f16") || !g_ascii_strcasecmp(dtype, "fp16")) dt = PX_DTYPE_F16;
  else {
    fprintf(stderr, "parallax-exec calibrate: --dtype '%s' is not f32, bf16 or f16\n", dtype);
    return 2;
  }
  if (!comm_name) comm_name = g_strdup(g_getenv("OMPI_COMM_WORLD_SIZE") ? "mpi" : "local");
  if (strcmp(comm_name, "local") && strcmp(comm_name, "mpi")) {
    fprintf(stderr, "parallax-exec calibrate: --comm '%s' is not one of local, mpi\n", comm_name);
    return 2;
  }
  const char *mpi_world = g_getenv("OMPI_COMM_WORLD_SIZE");
  if (!strcmp(comm_name, "local") && mpi_world && atoi(mpi_world) > 1) {
    /* every process measured on the same cores at once and wrote the same --out */
    fprintf(stderr, "parallax-exec calibrate: --comm local measures in this process, but mpirun started %d: each "
            "would write --out; give --comm mpi, or start one process\n", atoi(mpi_world));
    return 2;
  }
  /* mpi: every process measures, rank 0 writes the profile */
  g_autoptr(PxComm) mpi = NULL;
  if (!strcmp(comm_name, "mpi") && ranks_given) {
    fprintf(stderr, "parallax-exec calibrate: --ranks %d counts the thread-ranks of --comm local; under --comm mpi "
            "the ranks are mpirun's processes (mpirun -n N)\n", ranks);
    return 2;
  }
  if (!strcmp(comm_name, "mpi")) {
    if (!(mpi = px_comm_mpi_new(60, &error))) return fail(error);
    ranks = px_comm_size(mpi);
  }
  int rc = calibrate(backend, model_name, dt, seq, mbs, tp, ranks, reps, max_bytes, name, out, mpi);
  g_clear_pointer(&mpi, px_comm_free);
  if (!strcmp(comm_name, "mpi")) px_comm_mpi_finalize();
  return rc;
}

static int calibrate(const char *backend, const char *model_name, PxDType dt, int seq, int mbs, int tp, int ranks,
                     int reps, gint64 max_bytes, const char *name, const char *out, PxComm *mpi) {
  g_autoptr(GError) error = NULL;
  g_autoptr(PxModel) model = px_model_load(model_name ? model_name : "tiny-gpt", &error);
  if (!model) return fail(error);
  const PxModelDesc *md = &model->desc;
  if (md->heads % tp || md->kv_heads % tp || md->ffn % tp) {
    fprintf(stderr, "parallax-exec calibrate: --tp %d does not divide %s's heads (%d), kv heads (%d) and FFN (%d)\n", tp,
            md->name, md->heads, md->kv_heads, md->ffn);
    return 2;
  }
  if (seq < 1) seq = model->desc.default_seq > 0 ? model->desc.default_seq : model->desc.max_seq;
  if (seq > md->max_seq) { /* --seq 1000000 on a 64-position model measured seq² attention for hours */
    fprintf(stderr, "parallax-exec calibrate: --seq %d exceeds %s's %d positions\n", seq, md->name, md->max_seq);
    return 2;
  }
  g_autoptr(PxBackend) be = px_backend_new(backend ? backend : "cpu", 0, &error);
  if (!be) return fail(error);
  GString *ini = g_string_new(NULL);
  g_string_append_printf(ini, "# Cluster profile measured by `parallax-exec calibrate` on backend %s:\n",
                         px_backend_name(be));
  /* what the comments call the dtype: f32 as it always has */
  const char *dt_label = dt == PX_DTYPE_F32 ? "fp32" : px_dtype_name(dt);
  const int esz = (int)px_dtype_size(dt);
  if (dt == PX_DTYPE_F32)
    g_string_append_printf(ini, "# %s's shapes at %d x %d tokens (a TP rank's of tp %d), fp32, medians of %d runs.\n",
                           model->desc.name, mbs, seq, tp, reps);
  else
    g_string_append_printf(ini, "# %s's shapes at %d x %d tokens (a TP rank's of tp %d), %s activations and GEMMs "
                           "(fp32 statistics; the optimizer of mixed precision), medians of %d runs.\n",
                           model->desc.name, mbs, seq, tp, dt_label, reps);

  /* GEMMs: the distinct (out, in) of the first block and the LM head */
  gint64 T = (gint64)mbs * seq;
  double best = 0;
  GString *shapes = g_string_new(NULL);
  gint64 seen[16][2];
  int n_seen = 0;
  double block_gemm_s = 0; /* the first block's forward GEMMs */
  for (guint li = 0; li < model->n_layers; li++) {
    const PxLayer *layer = &model->layers[li];
    if (!(layer->kind == PX_LAYER_BLOCK && layer->block == 0) && layer->kind != PX_LAYER_LM_HEAD) continue;
    for (guint ti = 0; ti <= layer->n_tensors; ti++) {
      const PxTensorSpec *t = ti < layer->n_tensors ? &layer->tensors[ti] : layer->tied_tensor;
      if (!t || t->ndim != 2 || n_seen >= 16) continue;
      /* a TP rank's share, as cost.c splits it */
      gint64 out_f = t->shape[0] / (t->split == PX_SPLIT_ROWS ? tp : 1);
      gint64 in_f = t->shape[1] / (t->split == PX_SPLIT_COLS ? tp : 1);
      gboolean dup = FALSE;
      for (int k = 0; k < n_seen; k++) dup |= seen[k][0] == out_f && seen[k][1] == in_f;
      if (dup) continue;
      seen[n_seen][0] = out_f;
      seen[n_seen][1] = in_f;
      n_seen++;
      g_autoptr(PxTensor) x = tensor2(be, "x", dt, T, in_f, &error);
      g_autoptr(PxTensor) w = x ? tensor2(be, "w", dt, out_f, in_f, &error) : NULL;
      g_autoptr(PxTensor) y = w ? tensor2(be, "y", dt, T, out_f, &error) : NULL;
      Gemm g = {be, y, x, w};
      double s;
      if (!y || !time_op(be, gemm_once, &g, reps, &s, &error)) {
        g_string_free(shapes, TRUE);
        g_string_free(ini, TRUE);
        return fail(error);
      }
      double flops = 2.0 * T * out_f * in_f / s;
      best = MAX(best, flops);
      if (layer->kind == PX_LAYER_BLOCK) block_gemm_s += s;
      g_string_append_printf(shapes, "#   %" G_GINT64_FORMAT " x %" G_GINT64_FORMAT " x %" G_GINT64_FORMAT
                             " (%s): %.2f GFLOP/s\n", T, out_f, in_f, t->name, flops / 1e9);
    }
  }
  g_string_append_printf(ini, "# GEMM FLOP/s per shape (tokens x out x in); the best is the peak:\n%s", shapes->str);
  g_string_free(shapes, TRUE);

  /* memory-bound bandwidth and the per-kernel overhead */
  gint64 big = 4 << 20, tiny = 16;
  double s_big, s_tiny;
  {
    g_autoptr(PxTensor) a = tensor2(be, "a", dt, big, 1, &error);
    g_autoptr(PxTensor) b = a ? tensor2(be, "b", dt, big, 1, &error) : NULL;
    g_autoptr(PxTensor) o = b ? tensor2(be, "o", dt, big, 1, &error) : NULL;
    Add add = {be, o, a, b};
    if (!o || !time_median(be, add_once, &add, reps, 1, &s_big, &error)) {
      g_string_free(ini, TRUE);
      return fail(error);
    }
    g_autoptr(PxTensor) ta = tensor2(be, "ta", dt, tiny, 1, &error);
    g_autoptr(PxTensor) tb = ta ? tensor2(be, "tb", dt, tiny, 1, &error) : NULL;
    g_autoptr(PxTensor) to = tb ? tensor2(be, "to", dt, tiny, 1, &error) : NULL;
    Add small = {be, to, ta, tb};
    if (!to || !time_median(be, add_once, &small, reps, 1000, &s_tiny, &error)) {
      g_string_free(ini, TRUE);
      return fail(error);
    }
  }
  double mem_bw = 3.0 * esz * big / s_big; /* the bytes of the tensors as they are in dt */
  g_string_append_printf(ini, "# residual add of 3 x %" G_GINT64_FORMAT " %s: %.2f GB/s; of 16 elements: %.2f us\n",
                         big, dt_label, mem_bw / 1e9, s_tiny * 1e6);
  ClassRates cr = {0};
  double pcie_bw = 0, adam_rate = 0;
  if (!measure_classes(be, model, dt, mbs, seq, tp, reps, MIN(s_tiny, 1.0), ini, &cr, &error) ||
      !measure_offload(be, dt, MIN(model->params, (gint64)1 << 24), reps, ini, &pcie_bw, &adam_rate, &error)) {
    g_string_free(ini, TRUE);
    return fail(error);
  }

  /* collectives */
  double busbw = ranks > 1 ? 0 : mem_bw, alpha = 0, p2p_alpha = 0;
  g_autoptr(GString) curve_b = g_string_new(NULL); /* [node] busbw_curve_bytes and busbw_curve */
  g_autoptr(GString) curve_v = g_string_new(NULL);
  if (ranks > 1) {
    g_string_append_printf(ini, "# all-reduce over %d ranks (%s communicator): size, time, bus bandwidth\n", ranks,
                           mpi ? "mpi" : "local");
    double t_small = 0;
    for (gint64 bytes = 4096; bytes <= max_bytes; bytes *= 4) {
      double s;
      if (!allreduce_time(mpi, ranks, (gsize)bytes, reps, 0, &s, &error)) {
        g_string_free(ini, TRUE);
        return fail(error);
      }
      double bw = 2.0 * (ranks - 1) / ranks * bytes / s;
      t_small = bytes == 4096 ? s : MIN(t_small, s); /* the fastest: latency-bound, least noisy */
      busbw = MAX(busbw, bw); /* the achieved peak, as nccl-tests report it */
      g_string_append_printf(ini, "#   %10" G_GINT64_FORMAT " B  %10.1f us  %8.2f GB/s\n", bytes, s * 1e6, bw / 1e9);
      g_string_append_printf(curve_b, "%s%" G_GINT64_FORMAT, curve_b->len ? ";" : "", bytes);
      g_string_append_printf(curve_v, "%s%.6g", curve_v->len ? ";" : "", bw);
    }
    alpha = t_small / (2.0 * (ranks - 1));
    /* the latency as a run meets it: the smallest message between half a
     * block's forward of work (a TP block all-reduces twice per forward),
     * mean of 100; it replaces the transfer's own when larger */
    double t_unit = now();
    busy_work(20);
    t_unit = (now() - t_unit) / 20;
    int units = (int)CLAMP((block_gemm_s + cr.block_fwd_s) / 2 / MAX(t_unit, 1e-9), 1, 100000);
    double t_met;
    if (!allreduce_time(mpi, ranks, 4096, 100, units, &t_met, &error)) {
      g_string_free(ini, TRUE);
      return fail(error);
    }
    double alpha_met = (t_met - 2.0 * (ranks - 1) / ranks * 4096 / busbw) / (2.0 * (ranks - 1));
    g_string_append_printf(ini, "# latency: %.1f us per ring step from the fastest message after a barrier; %.1f us from "
                           "4096 B between %.1f us of work (half a block's forward ops), mean of 100\n",
                           alpha * 1e6, alpha_met * 1e6, units * t_unit * 1e6);
    alpha = MAX(alpha, alpha_met);
    /* a pipeline transfer as a run meets it: the activation of one
     * micro-batch (mbs · seq · hidden in dt) through the p2p streams, each
     * receiver waiting through a block's forward ops of its peer's work */
    double act_bytes = (double)esz * T * model->desc.hidden, t_p2p;
    if (!p2p_time(mpi, be, (gsize)act_bytes, 100, 2 * units, &t_p2p, &error)) {
      g_string_free(ini, TRUE);
      return fail(error);
    }
    p2p_alpha = MAX(t_p2p - act_bytes / busbw, 1e-9);
    g_string_append_printf(ini, "# p2p latency: %.1f us one way for %.0f B through the p2p streams, each receiver waiting "
                           "through %.1f us of work (a block's forward ops), mean of 100, less the bytes at the busbw\n",
                           p2p_alpha * 1e6, act_bytes, 2 * units * t_unit * 1e6);
  } else {
    g_string_append(ini, "# collectives not measured (1 rank): link bandwidth = the memory bandwidth\n");
  }

  g_string_append_printf(ini, "[cluster]\nname = %s\nnodes = 1\ncalibrated_dtype = %s\n\n[gpu]\nname = %s\n",
                         name ? name : (backend ? backend : "calibrated-cpu"), px_dtype_name(dt), px_backend_name(be));
  /* the device's memory: the host's on the cpu backend */
  double mem = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
  g_string_append_printf(ini, "memory = %.0fMiB\n", MAX(mem, 1 << 30) / 1048576.0);
  /* the GEMM rate measured, under its dtype's key; the loader needs peak_fp32
   * and peak_bf16 in every profile, so the keys of the dtypes not measured
   * repeat it (run --compare refuses a run of another dtype: calibrated_dtype) */
  if (dt != PX_DTYPE_F32)
    g_string_append_printf(ini, "# peak_%s measured; peak_fp32, peak_tf32 and peak_%s repeat it unmeasured "
                           "(calibrate --dtype %s measures them)\n", dt == PX_DTYPE_BF16 ? "bf16" : "fp16",
                           dt == PX_DTYPE_BF16 ? "fp16" : "bf16", dt == PX_DTYPE_BF16 ? "f32 or f16" : "f32 or bf16");
  kv(ini, "peak_fp32", best);
  kv(ini, "peak_tf32", best);
  kv(ini, "peak_fp16", best);
  kv(ini, "peak_bf16", best);
  kv(ini, "hbm_bw", mem_bw);
  g_string_append(ini, "gemm_efficiency = 1\nhbm_efficiency = 1\n");
  kv(ini, "kernel_overhead", MIN(s_tiny, 1.0));
  for (int k = 0; k < PX_N_OPC; k++)
    for (int dir = 0; dir < 2; dir++) {
      g_autofree char *key = g_strdup_printf("membound_bw_%s_%s", px_op_class_name(k), dir ? "bwd" : "fwd");
      kv(ini, key, cr.bw[k][dir]);
    }
  kv(ini, "membound_bw_optimizer", cr.opt_bw);
  kv(ini, "attention_fwd_flops", cr.attn_fwd);
  kv(ini, "attention_bwd_flops", cr.attn_bwd);
  g_string_append_printf(ini, "\n[node]\ngpus = %d\n", ranks);
  kv(ini, "bandwidth", busbw);
  kv(ini, "latency", alpha);
  if (p2p_alpha > 0) kv(ini, "p2p_latency", p2p_alpha);
  if (curve_b->len) /* the table above, which cost.c reads by message size (docs/cost.md section 2) */
    g_string_append_printf(ini, "busbw_curve_bytes = %s\nbusbw_curve = %s\n", curve_b->str, curve_v->str);
  kv(ini, "pcie_bw", pcie_bw);
  kv(ini, "cpu_adam_rate", adam_rate);
  g_string_append(ini, "busbw_efficiency = 1\n\n[network]\n");
  kv(ini, "bandwidth", busbw);
  kv(ini, "latency", alpha);
  g_autofree char *text = g_string_free(ini, FALSE);
  if (mpi && px_comm_rank(mpi) != 0) return 0;
  if (!profile_usable(text, out, &error)) return fail(error);
  if (!g_file_set_contents(out, text, -1, &error)) return fail(error);
  printf("%s", text);
  printf("wrote %s (parallax-sim simulate ... --cluster %s)\n", out, out);
  return 0;
}
