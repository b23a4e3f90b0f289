/* runtime.c — the interpreter of a plan's program over thread-ranks (see
 * runtime.h). */
#include "runtime.h"
#include "check.h"
#include <math.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>
#include "checkpoint.h"
#include "comm.h"
#include "data.h"
#include "gpt.h"
#include "grid.h"
#include "partition.h"
#include "schedule.h"

G_DEFINE_QUARK(px-runtime-error-quark, px_runtime_error)

#define TRY(x)                                                                                     \
  do {                                                                                             \
    if (!(x)) return FALSE;                                                                        \
  } while (0)

/* ---- point-to-point ------------------------------------------------------------
 * SEND_* posts and returns (schedule.h): the send itself, a blocking
 * px_comm_send that completes when the peer receives, runs on a helper thread
 * of the sending rank; RECV_* is a px_comm_recv on the rank's thread. A message
 * is named by (kind, micro-batch, part it leaves from), its tag. */

static int msg_tag(const PxRuntime *rt, gboolean act, int mb, int from_part);

/* ---- per-rank state ------------------------------------------------------------------ */

typedef struct {
  gint64 numel;       /* the chunk's flat parameter count */
  gint64 shard;       /* elements per DP shard (ceil), when sharded */
  gint64 padded;      /* numel rounded up to dp shards (sharded) or numel */
  PxTensor *w;        /* full local weights: WEIGHTS (ZeRO < 3) or gathered BUFFERS (ZeRO-3) */
  PxTensor *w_shard;  /* ZeRO-3 shard: WEIGHTS */
  PxTensor *g;        /* full gradient accumulator: GRADS (ZeRO < 2) or BUFFERS */
  PxTensor *g_shard;  /* reduced shard: BUFFERS (ZeRO-1) or GRADS (ZeRO 2/3) */
  PxTensor *m, *v;    /* AdamW moments: full or shard */
  gboolean has_tied;  /* holds wte or its tied copy (REDUCE_TIED) */
  int tied_param;
  gboolean pending;   /* DP reduction held for REDUCE_TIED */
} ChunkState;

typedef struct _PxRuntime PxRuntime;

typedef struct {
  PxRuntime *rt;
  int rank, stage, dp_rank, tp_rank;
  PxBackend *be;
  PxComm *comm;
  PxGpt *gpt;
  ChunkState *chunks;   /* (vpp) */
  gboolean sharded;     /* ZeRO >= 1 with dp > 1 */
  int zero;             /* effective: 0 when dp == 1 */
  /* per step */
  PxGptActs **acts;     /* (vpp * m) */
  PxTensor **recv;      /* (vpp * m) received input activations */
  PxTensor **rgrad;     /* (vpp * m) received output gradients */
  PxTensor **dgrad;     /* (vpp * m) input gradients to send */
  gint32 **inputs, **targets; /* (m) loaded micro-batches */
  double loss_sum;
  double grad_sq;       /* this rank's share of the squared gradient norm */
  PxTimeline *tl;
  GError *error;
  /* sends in flight on helper threads */
  GThreadPool *senders;
  GMutex send_lock;
  GCond send_cond;
  int sends_pending;
  GError *send_error;
} Rank;

struct _PxRuntime {
  const PxModel *model;
  PxPlan plan;
  PxRunOptions opt;
  char *backend_name, *data_path;
  PxPartition *part;
  PxProgram *prog;
  PxMemory *mem;
  PxGrid *grid;
  PxGroup *world_group;
  PxLocalWorld *world;
  PxTokenFile *data;
  int n;
  Rank *ranks;
  int step;             /* steps done */
  double lr_now, norm_now, scale_now;
  gint64 t0;            /* step start (monotonic us) */
  PxTimeline *timeline; /* last step */
  char *fingerprint;
};

#define rfail(error, code, ...) px_fail((error), PX_RUNTIME_ERROR, (code), __VA_ARGS__)

void px_run_options_init(PxRunOptions *o) {
  memset(o, 0, sizeof *o);
  o->backend = "cpu";
  o->dtype = PX_DTYPE_F32;
  o->seed = 1337;
  o->lr = 1e-3;
  o->min_lr = 1e-4;
  o->warmup = 0;
  o->decay_steps = 0;
  o->beta1 = 0.9;
  o->beta2 = 0.95;
  o->eps = 1e-8;
  o->weight_decay = 0.1;
  o->clip = 1.0;
  o->timeout_s = 60;
  o->fault_rank = o->fault_instr = -1;
}

static PxTensor *tensor1(PxBackend *be, const char *name, PxDType dt, PxMemCategory cat, gint64 n,
                         GError **error) {
  return px_tensor_new(be, name, dt, cat, 1, &n, error);
}

/* Visit the parts of the chunk's parameters inside flat range [lo, hi):
 * fn(param, first element, count) with element offsets relative to lo. */
typedef gboolean (*SegmentFn)(Rank *r, const PxGptParam *p, gint64 at, gint64 count, void *data, GError **error);
static gboolean for_segments(Rank *r, int chunk, gint64 lo, gint64 hi, SegmentFn fn, void *data, GError **error) {
  const PxGptChunk *ch = px_gpt_chunk(r->gpt, chunk);
  for (guint i = 0; i < ch->n_params; i++) {
    const PxGptParam *p = &ch->params[i];
    gint64 a = MAX(lo, p->offset), b = MIN(hi, p->offset + p->numel);
    if (a < b) TRY(fn(r, p, a - lo, b - a, data, error));
  }
  return TRUE;
}

static gboolean chunk_alloc(Rank *r, int c, GError **error) {
  PxRuntime *rt = r->rt;
  ChunkState *cs = &r->chunks[c];
  const PxGptChunk *ch = px_gpt_chunk(r->gpt, c);
  PxDType dt = rt->opt.dtype;
  int dp = rt->plan.dp;
  cs->numel = ch->numel;
  cs->shard = r->sharded ? (ch->numel + dp - 1) / dp : ch->numel;
  cs->padded = r->sharded ? cs->shard * dp : ch->numel;
  g_autofree char *nw = g_strdup_printf("chunk%d.weights", c);
  g_autofree char *ng = g_strdup_printf("chunk%d.grads", c);
  if (r->zero >= 3) {
    TRY(cs->w_shard = tensor1(r->be, nw, dt, PX_MEM_WEIGHTS, cs->shard, error));
  } else {
    TRY(cs->w = tensor1(r->be, nw, dt, PX_MEM_WEIGHTS, cs->padded, error));
  }
  TRY(cs->g = tensor1(r->be, ng, dt, r->zero >= 2 ? PX_MEM_BUFFERS : PX_MEM_GRADS, cs->padded, error));
  if (r->sharded)
    TRY(cs->g_shard = tensor1(r->be, "grad_shard", dt, r->zero >= 2 ? PX_MEM_GRADS : PX_MEM_BUFFERS, cs->shard, error));
  TRY(cs->m = tensor1(r->be, "adam.m", dt, PX_MEM_OPTIMIZER, cs->shard, error));
  TRY(cs->v = tensor1(r->be, "adam.v", dt, PX_MEM_OPTIMIZER, cs->shard, error));
  /* initial values */
  g_autofree double *init = g_new0(double, cs->padded);
  px_gpt_chunk_init_values(r->gpt, c, rt->opt.seed, init);
  if (cs->w) {
    TRY(px_tensor_upload_f64(cs->w, init, error));
    TRY(px_gpt_chunk_bind(r->gpt, c, cs->w, cs->g, error));
  } else {
    TRY(px_tensor_upload_f64(cs->w_shard, init + (gint64)r->dp_rank * cs->shard, error));
    TRY(px_gpt_chunk_bind(r->gpt, c, NULL, cs->g, error));
  }
  cs->tied_param = -1;
  if (rt->prog->tied_first_stage >= 0)
    for (guint i = 0; i < ch->n_params; i++)
      if (ch->params[i].tied_copy || (ch->first == 0 && i == 0)) {
        cs->has_tied = TRUE;
        cs->tied_param = (int)i;
      }
  return TRUE;
}

static void rank_clear_step(Rank *r) {
  PxRuntime *rt = r->rt;
  int n = rt->prog->vpp * rt->plan.m;
  if (!r->acts) return; /* rank_init failed before allocating the step state */
  for (int i = 0; i < n; i++) {
    g_clear_pointer(&r->acts[i], px_gpt_acts_free);
    g_clear_pointer(&r->recv[i], px_tensor_free);
    g_clear_pointer(&r->rgrad[i], px_tensor_free);
    g_clear_pointer(&r->dgrad[i], px_tensor_free);
  }
  for (int i = 0; i < rt->plan.m; i++) {
    g_clear_pointer(&r->inputs[i], g_free);
    g_clear_pointer(&r->targets[i], g_free);
  }
}

static void rank_free(Rank *r) {
  if (!r->rt) return;
  if (r->senders) g_thread_pool_free(r->senders, FALSE, TRUE);
  g_mutex_clear(&r->send_lock);
  g_cond_clear(&r->send_cond);
  g_clear_error(&r->send_error);
  rank_clear_step(r);
  for (int c = 0; r->chunks && c < r->rt->prog->vpp; c++) {
    ChunkState *cs = &r->chunks[c];
    PxTensor **ts[] = {&cs->w, &cs->w_shard, &cs->g, &cs->g_shard, &cs->m, &cs->v};
    for (gsize i = 0; i < G_N_ELEMENTS(ts); i++) g_clear_pointer(ts[i], px_tensor_free);
  }
  px_gpt_free(r->gpt);
  g_free(r->chunks);
  g_free(r->acts);
  g_free(r->recv);
  g_free(r->rgrad);
  g_free(r->dgrad);
  g_free(r->inputs);
  g_free(r->targets);
  px_comm_free(r->comm);
  px_backend_free(r->be);
  px_timeline_free(r->tl);
  g_clear_error(&r->error);
}

typedef struct {
  PxTensor *payload;
  int peer, tag;
} SendTask;

/* A helper thread of the sending rank: the blocking send, then the payload is freed. */
static void send_worker(gpointer data, gpointer user) {
  SendTask *t = data;
  Rank *r = user;
  GError *err = NULL;
  if (!px_comm_send(r->comm, t->payload->data, (gsize)t->payload->numel, t->payload->dtype, t->peer, t->tag, &err))
    px_local_world_abort(r->rt->world, err->message);
  px_tensor_free(t->payload);
  g_free(t);
  g_mutex_lock(&r->send_lock);
  if (err && !r->send_error) r->send_error = g_steal_pointer(&err);
  g_clear_error(&err);
  r->sends_pending--;
  g_cond_broadcast(&r->send_cond);
  g_mutex_unlock(&r->send_lock);
}

static gboolean rank_init(PxRuntime *rt, Rank *r, int rank, GError **error) {
  r->rt = rt;
  r->rank = rank;
  PxCoord co = px_grid_coord(rt->grid, rank);
  r->stage = co.pp;
  r->dp_rank = co.dp;
  r->tp_rank = co.tp;
  r->zero = rt->plan.dp > 1 ? rt->plan.zero : 0;
  r->sharded = r->zero >= 1;
  g_mutex_init(&r->send_lock);
  g_cond_init(&r->send_cond);
  TRY(r->senders = g_thread_pool_new(send_worker, r, -1, FALSE, error));
  TRY(r->be = px_backend_new(rt->backend_name, 0, error));
  r->comm = px_comm_local_new(rt->world, rank);
  PxGptRank gr = {r->be, r->comm, px_grid_group(rt->grid, PX_GROUP_TP, rank), r->stage, r->tp_rank, rt->opt.dtype};
  TRY(r->gpt = px_gpt_new(rt->model, &rt->plan, rt->part, &gr, error));
  int v = rt->prog->vpp, m = rt->plan.m;
  r->chunks = g_new0(ChunkState, v);
  r->acts = g_new0(PxGptActs *, v * m);
  r->recv = g_new0(PxTensor *, v * m);
  r->rgrad = g_new0(PxTensor *, v * m);
  r->dgrad = g_new0(PxTensor *, v * m);
  r->inputs = g_new0(gint32 *, m);
  r->targets = g_new0(gint32 *, m);
  for (int c = 0; c < v; c++) TRY(chunk_alloc(r, c, error));
  return TRUE;
}

/* ---- construction ------------------------------------------------------------------------- */

/* What a checkpoint must match, as "key value" items joined by "; ": model,
 * dtype, the data stream (seed and source; the position in it is step · gbs
 * sequences, restored with the step) and every key of the plan. */
static char *make_fingerprint(const PxModel *model, const PxPlan *plan, const PxRunOptions *o) {
  g_autofree char *ini = px_plan_to_ini(plan);
  g_autoptr(GString) s = g_string_new(NULL);
  const PxModelDesc *d = &model->desc;
  g_autofree char *src = o->data ? g_path_get_basename(o->data) : g_strdup("synthetic");
  g_string_append_printf(s, "model %s L%d h%d a%d kv%d f%d V%d; dtype %s; seed %" G_GUINT64_FORMAT "; data %s", d->name,
                         d->layers, d->hidden, d->heads, d->kv_heads, d->ffn, d->vocab, px_dtype_name(o->dtype),
                         o->seed, src);
  g_auto(GStrv) lines = g_strsplit(ini, "\n", -1);
  for (int i = 0; lines[i]; i++) {
    char *eq = strchr(lines[i], '=');
    if (!eq || lines[i][0] == '#') continue;
    *eq = 0;
    g_string_append_printf(s, "; %s %s", g_strstrip(lines[i]), g_strstrip(eq + 1));
  }
  return g_string_free(g_steal_pointer(&s), FALSE);
}

static gboolean open_data(PxRuntime *rt, GError **error) {
  if (rt->data_path) {
    TRY(rt->data = px_token_file_open(rt->data_path, error));
  } else {
    /* the synthetic corpus, through a temporary token file */
    gint64 n = 1 << 16;
    g_autofree guint16 *tok = px_data_synthetic(n, rt->model->desc.vocab, (guint32)rt->opt.seed, error);
    TRY(tok);
    g_autofree char *path = NULL;
    int fd = g_file_open_tmp("parallax-synthetic-XXXXXX.bin", &path, error);
    TRY(fd >= 0);
    close(fd);
    gboolean ok = px_token_file_write(path, tok, n, error) && (rt->data = px_token_file_open(path, error));
    g_unlink(path);
    TRY(ok);
  }
  int vmin = px_token_file_vocab_min(rt->data);
  if (vmin > rt->model->desc.vocab)
    return rfail(error, PX_RUNTIME_ERROR_INVALID, "token file %s holds token %d, outside the model's vocabulary %d",
                 rt->data_path ? rt->data_path : "(synthetic)", vmin - 1, rt->model->desc.vocab);
  if (px_token_file_n_windows(rt->data, rt->plan.seq) < 1)
    return rfail(error, PX_RUNTIME_ERROR_INVALID, "token file %s is too short for one sequence of %d tokens",
                 rt->data_path ? rt->data_path : "(synthetic)", rt->plan.seq);
  return TRUE;
}

PxRuntime *px_runtime_new(const PxModel *model, const PxPlan *plan, const PxRunOptions *opt, GError **error) {
  g_autoptr(PxRuntime) rt = g_new0(PxRuntime, 1);
  rt->model = model;
  px_plan_copy(&rt->plan, plan);
  rt->opt = *opt;
  rt->backend_name = g_strdup(opt->backend ? opt->backend : "cpu");
  rt->data_path = g_strdup(opt->data);
  rt->opt.backend = rt->backend_name;
  rt->opt.data = rt->data_path;
  rt->plan.precision = PX_PREC_FP32; /* the executor computes in fp32 / fp64 */
  if (opt->dtype != PX_DTYPE_F32 && opt->dtype != PX_DTYPE_F64) {
    rfail(error, PX_RUNTIME_ERROR_INVALID, "the executor runs in f32 or f64");
    return NULL;
  }
  if (!px_plan_validate(&rt->plan, model, NULL, error)) return NULL;
  if (rt->plan.offload != PX_OFFLOAD_NONE) {
    rfail(error, PX_RUNTIME_ERROR_INVALID, "offload (%s) is not implemented by the executor",
          px_offload_name(rt->plan.offload));
    return NULL;
  }
  if (!(rt->part = px_partition_new(model, &rt->plan, NULL, error))) return NULL;
  for (int k = 0; k < rt->part->parts; k++)
    if (rt->part->bounds[k] == rt->part->bounds[k + 1]) {
      rfail(error, PX_RUNTIME_ERROR_INVALID,
            "plan does not divide the model: part %d of %d has no layers (%u layers over pp=%d x vpp=%d)", k,
            rt->part->parts, model->n_layers, rt->plan.pp, rt->plan.vpp);
      return NULL;
    }
  if (!(rt->prog = px_program_new(&rt->plan, rt->part, error))) return NULL;
  /* the executor runs without dropout: predict for the model as it runs */
  PxModelDesc nodrop = model->desc;
  nodrop.dropout = FALSE;
  g_autoptr(PxModel) as_run = px_model_new(&nodrop, error);
  if (!as_run) return NULL;
  rt->mem = px_memory_new(as_run, &rt->plan, rt->part, NULL);
  if (!(rt->grid = px_grid_new(&rt->plan, error))) return NULL;
  rt->n = px_plan_world(&rt->plan);
  rt->world_group = px_group_new_world(rt->n);
  rt->world = px_local_world_new(rt->n, opt->timeout_s);
  rt->fingerprint = make_fingerprint(model, &rt->plan, &rt->opt);
  if (!open_data(rt, error)) return NULL;
  rt->ranks = g_new0(Rank, rt->n);
  for (int i = 0; i < rt->n; i++)
    if (!rank_init(rt, &rt->ranks[i], i, error)) return NULL;
  return g_steal_pointer(&rt);
}

void px_runtime_free(PxRuntime *rt) {
  if (!rt) return;
  for (int i = 0; rt->ranks && i < rt->n; i++) rank_free(&rt->ranks[i]);
  g_free(rt->ranks);
  px_token_file_free(rt->data);
  px_local_world_free(rt->world);
  px_group_free(rt->world_group);
  px_grid_free(rt->grid);
  px_memory_free(rt->mem);
  px_program_free(rt->prog);
  px_partition_free(rt->part);
  px_timeline_free(rt->timeline);
  px_plan_clear(&rt->plan);
  g_free(rt->backend_name);
  g_free(rt->data_path);
  g_free(rt->fingerprint);
  g_free(rt);
}

int px_runtime_world(const PxRuntime *rt) { return rt->n; }
int px_runtime_steps_done(const PxRuntime *rt) { return rt->step; }
const PxPlan *px_runtime_plan(const PxRuntime *rt) { return &rt->plan; }
const PxTimeline *px_runtime_timeline(const PxRuntime *rt) { return rt->timeline; }

/* ---- the instructions ----------------------------------------------------------------------- */

static int part_of(Rank *r, int chunk) { return px_program_part_of(r->rt->prog, r->stage, chunk); }
static int slot(Rank *r, int mb, int chunk) { return chunk * r->rt->plan.m + mb; }
static int peer_rank(Rank *r, int stage) { return px_grid_rank(r->rt->grid, r->dp_rank, r->tp_rank, stage); }

static gboolean op_load(Rank *r, int mb, GError **error) {
  PxRuntime *rt = r->rt;
  int B = rt->plan.mbs, T = rt->plan.seq;
  gint64 first = (gint64)rt->step * rt->plan.gbs + ((gint64)r->dp_rank * rt->plan.m + mb) * B;
  g_autofree gint32 *win = g_new(gint32, (gsize)B * (T + 1));
  TRY(px_token_file_windows(rt->data, first, B, T, win, error));
  g_free(r->inputs[mb]);
  g_free(r->targets[mb]);
  r->inputs[mb] = g_new(gint32, (gsize)B * T);
  r->targets[mb] = g_new(gint32, (gsize)B * T);
  px_windows_split(win, B, T, r->inputs[mb], r->targets[mb]);
  return TRUE;
}

static gboolean op_forward(Rank *r, int mb, int c, GError **error) {
  PxRuntime *rt = r->rt;
  int part = part_of(r, c), s = slot(r, mb, c);
  double loss = 0;
  gboolean first = part == 0, last = part == rt->part->parts - 1;
  PxGptActs *a = px_gpt_forward(r->gpt, c, g_steal_pointer(&r->recv[s]), first ? r->inputs[mb] : NULL,
                                last ? r->targets[mb] : NULL, &loss, error);
  TRY(a);
  r->acts[s] = a;
  if (last) r->loss_sum += loss;
  return TRUE;
}

static gboolean op_backward(Rank *r, const PxInstr *ins, GError **error) {
  PxRuntime *rt = r->rt;
  int s = slot(r, ins->mb, ins->chunk);
  PxGptActs *a = r->acts[s];
  if (!a) return rfail(error, PX_RUNTIME_ERROR_FAILED, "backward of mb %d chunk %d before its forward", ins->mb, ins->chunk);
  double dloss = 1.0 / ((double)rt->plan.m * rt->plan.dp);
  gboolean defer = ins->kind == PX_OP_BACKWARD_INPUT;
  TRY(px_gpt_backward(r->gpt, a, g_steal_pointer(&r->rgrad[s]), dloss, defer, &r->dgrad[s], error));
  if (!defer) g_clear_pointer(&r->acts[s], px_gpt_acts_free);
  return TRUE;
}

static gboolean op_backward_weight(Rank *r, const PxInstr *ins, GError **error) {
  int s = slot(r, ins->mb, ins->chunk);
  if (!r->acts[s]) return rfail(error, PX_RUNTIME_ERROR_FAILED, "weight pass of mb %d before its backward", ins->mb);
  TRY(px_gpt_backward_weight(r->gpt, r->acts[s], error));
  g_clear_pointer(&r->acts[s], px_gpt_acts_free);
  return TRUE;
}

static int msg_tag(const PxRuntime *rt, gboolean act, int mb, int from_part) {
  return (mb * rt->part->parts + from_part) * 2 + (act ? 1 : 0);
}

static gboolean op_send(Rank *r, const PxInstr *ins, double *bytes, GError **error) {
  int s = slot(r, ins->mb, ins->chunk);
  gboolean act = ins->kind == PX_OP_SEND_ACT;
  PxTensor *payload;
  if (act) {
    PxTensor *out = r->acts[s] ? px_gpt_acts_output(r->acts[s]) : NULL;
    if (!out) return rfail(error, PX_RUNTIME_ERROR_FAILED, "send of mb %d chunk %d before its forward", ins->mb, ins->chunk);
    TRY(payload = px_tensor_new(r->be, "p2p", out->dtype, PX_MEM_BUFFERS, out->ndim, out->shape, error));
    g_autofree void *host = g_malloc(out->bytes); /* device to device through the host: any backend */
    if (!px_tensor_download(out, host, error) || !px_tensor_upload(payload, host, error)) {
      px_tensor_free(payload);
      return FALSE;
    }
    px_gpt_acts_drop_output(r->acts[s]);
  } else {
    payload = g_steal_pointer(&r->dgrad[s]);
    if (!payload) return rfail(error, PX_RUNTIME_ERROR_FAILED, "gradient of mb %d chunk %d sent before backward", ins->mb, ins->chunk);
  }
  if (ins->peer == r->stage) { /* the bottom of a V: left for this rank's other chunk, whose RECV takes it */
    int st, c;
    px_schedule_part_place(r->rt->prog->schedule, r->rt->plan.pp, part_of(r, ins->chunk) + (act ? 1 : -1), &st, &c);
    PxTensor **dst = act ? &r->recv[slot(r, ins->mb, c)] : &r->rgrad[slot(r, ins->mb, c)];
    px_tensor_free(*dst);
    *dst = payload;
    return TRUE;
  }
  *bytes = (double)payload->bytes;
  SendTask *t = g_new(SendTask, 1);
  t->payload = payload;
  t->peer = peer_rank(r, ins->peer);
  t->tag = msg_tag(r->rt, act, ins->mb, part_of(r, ins->chunk));
  g_mutex_lock(&r->send_lock);
  r->sends_pending++;
  g_mutex_unlock(&r->send_lock);
  return g_thread_pool_push(r->senders, t, error);
}

static gboolean op_recv(Rank *r, const PxInstr *ins, double *bytes, GError **error) {
  gboolean act = ins->kind == PX_OP_RECV_ACT;
  PxTensor **dst = act ? &r->recv[slot(r, ins->mb, ins->chunk)] : &r->rgrad[slot(r, ins->mb, ins->chunk)];
  g_autoptr(PxTensor) own = ins->peer == r->stage ? g_steal_pointer(dst) : NULL; /* bottom of a V: from op_send */
  if (ins->peer == r->stage && !own)
    return rfail(error, PX_RUNTIME_ERROR_FAILED, "mb %d chunk %d received from this rank before it was sent", ins->mb, ins->chunk);
  int from = part_of(r, ins->chunk) + (act ? -1 : 1);
  gint64 shape[2];
  px_gpt_io_shape(r->gpt, shape);
  g_autoptr(PxTensor) t = px_tensor_new(r->be, act ? "recv_act" : "recv_grad", r->rt->opt.dtype,
                                        act ? PX_MEM_ACTIVATIONS : PX_MEM_BUFFERS, 2, shape, error);
  TRY(t);
  if (own) {
    g_autofree void *host = g_malloc(own->bytes);
    TRY(px_tensor_download(own, host, error) && px_tensor_upload(t, host, error));
  } else {
    TRY(px_comm_recv(r->comm, t->data, (gsize)t->numel, t->dtype, peer_rank(r, ins->peer),
                     msg_tag(r->rt, act, ins->mb, from), error));
    *bytes = (double)t->bytes;
  }
  px_tensor_free(*dst);
  *dst = g_steal_pointer(&t);
  return TRUE;
}

static PxDType dtype_of(Rank *r) { return r->rt->opt.dtype; }

/* DP reduction of a chunk's gradients: all-reduce, or reduce-scatter into the shard. */
static gboolean dp_reduce(Rank *r, int c, double *bytes, GError **error) {
  ChunkState *cs = &r->chunks[c];
  const PxGroup *dp = px_grid_group(r->rt->grid, PX_GROUP_DP, r->rank);
  *bytes += (double)cs->g->bytes;
  if (!r->sharded) return px_comm_all_reduce(r->comm, dp, cs->g->data, (gsize)cs->padded, dtype_of(r), error);
  return px_comm_reduce_scatter(r->comm, dp, cs->g->data, cs->g_shard->data, (gsize)cs->shard, dtype_of(r), error);
}

static gboolean op_reduce_grads(Rank *r, int c, double *bytes, GError **error) {
  ChunkState *cs = &r->chunks[c];
  if (r->zero >= 3) { /* the gathered weights were held until the chunk's last backward */
    g_clear_pointer(&cs->w, px_tensor_free);
    TRY(px_gpt_chunk_bind(r->gpt, c, NULL, cs->g, error));
  }
  if (cs->has_tied) {
    cs->pending = TRUE;
    return TRUE;
  }
  return dp_reduce(r, c, bytes, error);
}

static gboolean op_gather(Rank *r, int c, double *bytes, GError **error) {
  ChunkState *cs = &r->chunks[c];
  const PxGroup *dp = px_grid_group(r->rt->grid, PX_GROUP_DP, r->rank);
  g_autofree char *name = g_strdup_printf("chunk%d.gathered", c);
  if (!cs->w) TRY(cs->w = tensor1(r->be, name, dtype_of(r), PX_MEM_BUFFERS, cs->padded, error));
  TRY(px_comm_all_gather(r->comm, dp, cs->w_shard->data, cs->w->data, (gsize)cs->shard, dtype_of(r), error));
  *bytes = (double)cs->w->bytes;
  return px_gpt_chunk_bind(r->gpt, c, cs->w, cs->g, error);
}

static gboolean op_reduce_tied(Rank *r, double *bytes, GError **error) {
  const PxGroup *emb = px_grid_group(r->rt->grid, PX_GROUP_EMBED, r->rank);
  for (int c = 0; c < r->rt->prog->vpp; c++) {
    ChunkState *cs = &r->chunks[c];
    if (!cs->has_tied) continue;
    const PxGptParam *p = &px_gpt_chunk(r->gpt, c)->params[cs->tied_param];
    TRY(px_comm_all_reduce(r->comm, emb, p->g->data, (gsize)p->numel, dtype_of(r), error));
    *bytes += (double)p->g->bytes;
    if (cs->pending) {
      cs->pending = FALSE;
      TRY(dp_reduce(r, c, bytes, error));
    }
  }
  return TRUE;
}

/* The gradient a rank owns for the global norm: every element once over the
 * world — TP-replicated tensors on TP rank 0 only, the tied copy not at all,
 * DP-replicated gradients on DP rank 0 only. */
typedef struct {
  PxTensor *grad;  /* the range's gradient (full or shard) */
  double sum;
} NormAcc;

static gboolean norm_segment(Rank *r, const PxGptParam *p, gint64 at, gint64 count, void *data, GError **error) {
  NormAcc *acc = data;
  if (p->tied_copy || (p->replicated && r->tp_rank != 0)) return TRUE;
  g_autoptr(PxTensor) v = px_tensor_view(acc->grad, "norm", at, 1, &count, error);
  TRY(v);
  double s;
  TRY(px_op_sum_squares(r->be, v, &s, error));
  acc->sum += s;
  return TRUE;
}

/* Sequence parallelism: norm gradients summed over the TP group. */
typedef struct {
  PxTensor *grad;
} TpAcc;

static gboolean tp_segment(Rank *r, const PxGptParam *p, gint64 at, gint64 count, void *data, GError **error) {
  TpAcc *acc = data;
  if (!px_gpt_param_tp_partial(r->gpt, p)) return TRUE;
  const PxGroup *tp = px_grid_group(r->rt->grid, PX_GROUP_TP, r->rank);
  gsize es = px_dtype_size(acc->grad->dtype);
  return px_comm_all_reduce(r->comm, tp, (char *)acc->grad->data + at * es, (gsize)count, acc->grad->dtype, error);
}

typedef struct {
  PxTensor *w, *g, *m, *v;
  PxAdamW opt;
  double wd;
} AdamAcc;

static gboolean adam_segment(Rank *r, const PxGptParam *p, gint64 at, gint64 count, void *data, GError **error) {
  (void)r;
  AdamAcc *acc = data;
  g_autoptr(PxTensor) w = px_tensor_view(acc->w, "w", at, 1, &count, error);
  g_autoptr(PxTensor) g = px_tensor_view(acc->g, "g", at, 1, &count, error);
  g_autoptr(PxTensor) m = px_tensor_view(acc->m, "m", at, 1, &count, error);
  g_autoptr(PxTensor) v = px_tensor_view(acc->v, "v", at, 1, &count, error);
  TRY(w && g && m && v);
  PxAdamW o = acc->opt;
  o.weight_decay = p->spec->ndim == 2 ? acc->wd : 0.0;
  return px_op_adamw(r->be, w, g, m, v, &o, error);
}

/* Learning rate of step t (1-based), llm.c's schedule on s = t - 1: linear
 * warm-up lr (s+1)/W for s < W, then cosine from lr to min_lr as
 * (s - W) / (D - W) goes from 0 to 1, D = decay_steps. */
static double lr_at(const PxRunOptions *o, int t) {
  int s = t - 1;
  if (o->warmup > 0 && s < o->warmup) return o->lr * (s + 1) / o->warmup;
  if (o->decay_steps <= o->warmup) return o->lr;
  double p = (double)(s - o->warmup) / (o->decay_steps - o->warmup);
  if (p > 1) p = 1;
  return o->min_lr + 0.5 * (o->lr - o->min_lr) * (1 + cos(G_PI * p));
}

static gboolean op_optimizer(Rank *r, double *bytes, GError **error) {
  PxRuntime *rt = r->rt;
  int v = rt->prog->vpp;
  /* held reductions (a tied chunk on a plan without REDUCE_TIED cannot happen; be safe) */
  for (int c = 0; c < v; c++)
    if (r->chunks[c].pending) {
      r->chunks[c].pending = FALSE;
      TRY(dp_reduce(r, c, bytes, error));
    }
  /* sequence-parallel norm gradients, on the range this rank updates */
  for (int c = 0; rt->plan.seq_parallel && rt->plan.tp > 1 && c < v; c++) {
    ChunkState *cs = &r->chunks[c];
    gint64 lo = r->sharded ? (gint64)r->dp_rank * cs->shard : 0;
    TpAcc acc = {r->sharded ? cs->g_shard : cs->g};
    TRY(for_segments(r, c, lo, lo + (r->sharded ? cs->shard : cs->numel), tp_segment, &acc, error));
  }
  /* global norm */
  double sq = 0;
  for (int c = 0; c < v; c++) {
    ChunkState *cs = &r->chunks[c];
    NormAcc acc = {0};
    if (r->sharded) {
      acc.grad = cs->g_shard;
      gint64 lo = (gint64)r->dp_rank * cs->shard;
      TRY(for_segments(r, c, lo, lo + cs->shard, norm_segment, &acc, error));
    } else if (r->dp_rank == 0) {
      acc.grad = cs->g;
      TRY(for_segments(r, c, 0, cs->numel, norm_segment, &acc, error));
    }
    sq += acc.sum;
  }
  TRY(px_comm_all_reduce(r->comm, rt->world_group, &sq, 1, PX_DTYPE_F64, error));
  double norm = sqrt(sq);
  double scale = rt->opt.clip > 0 ? MIN(1.0, rt->opt.clip / (norm + 1e-6)) : 1.0;
  int t = rt->step + 1;
  if (r->rank == 0) {
    rt->norm_now = norm;
    rt->lr_now = lr_at(&rt->opt, t);
  }
  const PxGroup *dp = px_grid_group(rt->grid, PX_GROUP_DP, r->rank);
  for (int c = 0; c < v; c++) {
    ChunkState *cs = &r->chunks[c];
    AdamAcc acc = {.m = cs->m, .v = cs->v, .wd = rt->opt.weight_decay};
    acc.opt = (PxAdamW){lr_at(&rt->opt, t), rt->opt.beta1, rt->opt.beta2, rt->opt.eps, 0, t, scale};
    gint64 lo = 0, n = cs->numel;
    g_autoptr(PxTensor) wview = NULL;
    if (r->sharded) {
      lo = (gint64)r->dp_rank * cs->shard;
      n = MAX(0, MIN(cs->shard, cs->numel - lo));
      acc.g = cs->g_shard;
      if (r->zero >= 3) acc.w = cs->w_shard;
      else TRY(acc.w = wview = px_tensor_view(cs->w, "w_shard", lo, 1, &cs->shard, error));
    } else {
      acc.w = cs->w;
      acc.g = cs->g;
    }
    TRY(for_segments(r, c, lo, lo + n, adam_segment, &acc, error));
    if (r->sharded && r->zero < 3) {
      TRY(px_comm_all_gather(r->comm, dp, wview->data, cs->w->data, (gsize)cs->shard, dtype_of(r), error));
      *bytes += (double)cs->w->bytes;
    }
    TRY(px_tensor_zero(cs->g, error));
  }
  return TRUE;
}

/* ---- the interpreter -------------------------------------------------------------------------- */

static PxStreamKind stream_of(PxOpKind k) {
  switch (k) {
  case PX_OP_SEND_ACT:
  case PX_OP_SEND_GRAD: return PX_STREAM_SEND;
  case PX_OP_RECV_ACT:
  case PX_OP_RECV_GRAD: return PX_STREAM_RECV;
  case PX_OP_REDUCE_TIED:
  case PX_OP_REDUCE_GRADS:
  case PX_OP_GATHER_PARAMS: return PX_STREAM_COLLECTIVE;
  default: return PX_STREAM_COMPUTE;
  }
}

static gboolean run_instr(Rank *r, const PxInstr *ins, double *bytes, GError **error) {
  switch (ins->kind) {
  case PX_OP_LOAD: return op_load(r, ins->mb, error);
  case PX_OP_FORWARD: return op_forward(r, ins->mb, ins->chunk, error);
  case PX_OP_BACKWARD:
  case PX_OP_BACKWARD_INPUT: return op_backward(r, ins, error);
  case PX_OP_BACKWARD_WEIGHT: return op_backward_weight(r, ins, error);
  case PX_OP_SEND_ACT:
  case PX_OP_SEND_GRAD: return op_send(r, ins, bytes, error);
  case PX_OP_RECV_ACT:
  case PX_OP_RECV_GRAD: return op_recv(r, ins, bytes, error);
  case PX_OP_REDUCE_TIED: return op_reduce_tied(r, bytes, error);
  case PX_OP_REDUCE_GRADS: return op_reduce_grads(r, ins->chunk, bytes, error);
  case PX_OP_GATHER_PARAMS: return op_gather(r, ins->chunk, bytes, error);
  case PX_OP_OPTIMIZER_STEP: return op_optimizer(r, bytes, error);
  case PX_OP_OVERLAP: return TRUE; /* the F&B pair that follows runs one after the other here */
  default: return rfail(error, PX_RUNTIME_ERROR_FAILED, "unknown instruction %d", ins->kind);
  }
}

static gpointer rank_thread(gpointer data) {
  Rank *r = data;
  PxRuntime *rt = r->rt;
  const PxRankProgram *rp = &rt->prog->ranks[r->stage];
  r->loss_sum = 0;
  px_timeline_free(r->tl);
  r->tl = px_timeline_new();
  PxMemStats ms;
  for (guint i = 0; i < rp->n; i++) {
    const PxInstr *ins = &rp->instrs[i];
    double bytes = 0;
    double t_start = (g_get_monotonic_time() - rt->t0) / 1e6;
    gboolean fault = rt->step == 0 && r->rank == rt->opt.fault_rank && (int)i == rt->opt.fault_instr;
    if (fault) rfail(&r->error, PX_RUNTIME_ERROR_FAILED, "injected fault");
    if (fault || !run_instr(r, ins, &bytes, &r->error)) {
      g_autoptr(GString) s = g_string_new(NULL);
      px_instr_format(ins, s);
      g_prefix_error(&r->error, "rank %d (stage %d) %s: ", r->rank, r->stage, s->str);
      px_local_world_abort(rt->world, r->error->message); /* the others fail promptly */
      break;
    }
    double t_end = (g_get_monotonic_time() - rt->t0) / 1e6;
    PxEvent ev = {r->rank, r->stage, stream_of(ins->kind), ins->kind, ins->mb, ins->chunk, t_start, t_end, bytes, FALSE};
    px_timeline_add(r->tl, &ev);
    px_backend_mem_stats(r->be, &ms);
    px_timeline_add_memory(r->tl, r->rank, t_end, (double)ms.total_current);
  }
  /* every send of the step has been received */
  g_mutex_lock(&r->send_lock);
  while (r->sends_pending > 0) g_cond_wait(&r->send_cond, &r->send_lock);
  if (r->send_error && !r->error) r->error = g_steal_pointer(&r->send_error);
  g_clear_error(&r->send_error);
  g_mutex_unlock(&r->send_lock);
  rank_clear_step(r);
  return NULL;
}

gboolean px_runtime_step(PxRuntime *rt, PxStepResult *out, GError **error) {
  rt->t0 = g_get_monotonic_time();
  g_autofree GThread **th = g_new0(GThread *, rt->n);
  for (int i = 0; i < rt->n; i++) {
    g_autofree char *name = g_strdup_printf("rank%d", i);
    th[i] = g_thread_new(name, rank_thread, &rt->ranks[i]);
  }
  for (int i = 0; i < rt->n; i++) g_thread_join(th[i]);
  double wall = (g_get_monotonic_time() - rt->t0) / 1e6;
  /* the first failure that is not a consequence of another's */
  Rank *failed = NULL;
  for (int i = 0; i < rt->n; i++) {
    Rank *r = &rt->ranks[i];
    if (!r->error) continue;
    gboolean secondary = g_error_matches(r->error, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED) ||
                         strstr(r->error->message, "aborted") != NULL;
    if (!failed || (!secondary && strstr(failed->error->message, "aborted"))) failed = r;
  }
  if (failed) {
    g_set_error_literal(error, PX_RUNTIME_ERROR, PX_RUNTIME_ERROR_FAILED, failed->error->message);
    return FALSE;
  }
  /* the loss: ranks of the stage holding the last part (rank 0 in a V), TP rank 0, one per DP rank, in rank order */
  double loss = 0;
  int last_stage, last_chunk;
  px_schedule_part_place(rt->prog->schedule, rt->plan.pp, rt->part->parts - 1, &last_stage, &last_chunk);
  for (int i = 0; i < rt->n; i++) {
    Rank *r = &rt->ranks[i];
    if (r->stage == last_stage && r->tp_rank == 0) loss += r->loss_sum;
  }
  loss /= (double)rt->plan.m * rt->plan.dp;
  rt->step++;
  px_timeline_free(rt->timeline);
  rt->timeline = px_timeline_new();
  for (int i = 0; i < rt->n; i++) {
    PxTimeline *tl = rt->ranks[i].tl;
    for (guint k = 0; k < tl->events->len; k++) px_timeline_add(rt->timeline, &g_array_index(tl->events, PxEvent, k));
    for (guint k = 0; k < tl->memory->len; k++) {
      PxMemSample *s = &g_array_index(tl->memory, PxMemSample, k);
      px_timeline_add_memory(rt->timeline, s->rank, s->t, s->bytes);
    }
  }
  px_timeline_sort(rt->timeline);
  if (out) {
    out->step = rt->step;
    out->loss = loss;
    out->grad_norm = rt->norm_now;
    out->lr = rt->lr_now;
    out->time_s = wall;
  }
  return TRUE;
}

void px_runtime_memory(PxRuntime *rt, int rank, PxRankMemory *out) {
  Rank *r = &rt->ranks[rank];
  memset(out, 0, sizeof *out);
  out->rank = rank;
  out->stage = r->stage;
  out->dp = r->dp_rank;
  out->tp = r->tp_rank;
  px_backend_mem_stats(r->be, &out->measured);
  out->predicted = rt->mem->stages[r->stage];
  double k = rt->opt.dtype == PX_DTYPE_F64 ? 2.0 : 1.0; /* the prediction is for fp32 */
  PxStageMemory *p = &out->predicted;
  p->weights *= k;
  p->gradients *= k;
  p->optimizer *= k;
  p->activation_per_layer *= k;
  p->activation_per_mb *= k;
  p->activations *= k;
  p->buffers *= k;
  p->total = p->weights + p->gradients + p->optimizer + p->activations + p->buffers + p->workspace;
}

/* ---- parameters by name ----------------------------------------------------------------------- */

static const PxTensorSpec *find_spec(const PxModel *m, const char *name) {
  for (guint i = 0; i < m->n_layers; i++)
    for (guint k = 0; k < m->layers[i].n_tensors; k++)
      if (!strcmp(m->layers[i].tensors[k].name, name)) return &m->layers[i].tensors[k];
  return NULL;
}

/* This rank's current flat weights of chunk c (host doubles, padded length). */
static gboolean chunk_weights(Rank *r, int c, double *flat, GError **error) {
  ChunkState *cs = &r->chunks[c];
  if (cs->w && r->zero < 3) return px_tensor_download_f64(cs->w, flat, error);
  /* ZeRO-3: gather the shards from the DP peers' memory (all ranks are in this process) */
  const PxGroup *dp = px_grid_group(r->rt->grid, PX_GROUP_DP, r->rank);
  for (int k = 0; k < dp->n; k++)
    TRY(px_tensor_download_f64(r->rt->ranks[dp->ranks[k]].chunks[c].w_shard, flat + (gint64)k * cs->shard, error));
  return TRUE;
}

double *px_runtime_get_param(PxRuntime *rt, const char *name, GError **error) {
  const PxTensorSpec *spec = find_spec(rt->model, name);
  if (!spec) {
    rfail(error, PX_RUNTIME_ERROR_INVALID, "no parameter named '%s' in model %s", name, rt->model->desc.name);
    return NULL;
  }
  gint64 rows = spec->shape[0], cols = spec->shape[1];
  g_autofree double *full = g_new0(double, rows * cols);
  gboolean found = FALSE;
  /* every TP rank of DP rank 0 contributes its shard */
  for (int i = 0; i < rt->n; i++) {
    Rank *r = &rt->ranks[i];
    int c, pi;
    if (r->dp_rank != 0 || !px_gpt_find_param(r->gpt, name, FALSE, &c, &pi)) continue;
    found = TRUE;
    const PxGptParam *p = &px_gpt_chunk(r->gpt, c)->params[pi];
    g_autofree double *flat = g_new0(double, r->chunks[c].padded);
    if (!chunk_weights(r, c, flat, error)) return NULL;
    /* scatter the shard back: the inverse of px_gpt_param_shard, via index maps */
    g_autofree double *idx = g_new(double, rows * cols);
    g_autofree double *map = g_new(double, p->numel);
    for (gint64 e = 0; e < rows * cols; e++) idx[e] = (double)(e + 1); /* 0: vocabulary padding */
    px_gpt_param_shard(r->gpt, p, idx, map);
    for (gint64 e = 0; e < p->numel; e++)
      if (map[e] > 0) full[(gint64)map[e] - 1] = flat[p->offset + e];
  }
  if (!found) {
    rfail(error, PX_RUNTIME_ERROR_INVALID, "parameter '%s' is held by no rank", name);
    return NULL;
  }
  return g_steal_pointer(&full);
}

/* ---- checkpoints -------------------------------------------------------------------------------- */

/* Blobs of a rank: per chunk its weights (full local or ZeRO-3 shard) and the two moments. */
static int rank_blobs(Rank *r, PxCkptBlob *blobs, double **host) {
  int n = 0;
  for (int c = 0; c < r->rt->prog->vpp; c++) {
    ChunkState *cs = &r->chunks[c];
    PxTensor *ts[3] = {cs->w_shard ? cs->w_shard : cs->w, cs->m, cs->v};
    for (int k = 0; k < 3; k++, n++) {
      host[n] = g_new(double, ts[k]->numel);
      blobs[n].data = host[n];
      blobs[n].bytes = sizeof(double) * (gsize)ts[k]->numel;
    }
  }
  return n;
}

static PxTensor *blob_tensor(Rank *r, int i) {
  ChunkState *cs = &r->chunks[i / 3];
  PxTensor *ts[3] = {cs->w_shard ? cs->w_shard : cs->w, cs->m, cs->v};
  return ts[i % 3];
}

gboolean px_runtime_save(PxRuntime *rt, const char *dir, GError **error) {
  g_autofree char *tmp = px_checkpoint_begin(dir, rt->step, error);
  TRY(tmp);
  for (int i = 0; i < rt->n; i++) {
    Rank *r = &rt->ranks[i];
    int cap = 3 * rt->prog->vpp;
    g_autofree PxCkptBlob *blobs = g_new0(PxCkptBlob, cap);
    g_autofree double **host = g_new0(double *, cap);
    int n = rank_blobs(r, blobs, host);
    gboolean ok = TRUE;
    for (int k = 0; ok && k < n; k++) ok = px_tensor_download_f64(blob_tensor(r, k), host[k], error);
    ok = ok && px_checkpoint_write_rank(tmp, i, rt->fingerprint, rt->step, blobs, n, error);
    for (int k = 0; k < n; k++) g_free(host[k]);
    TRY(ok);
  }
  return px_checkpoint_commit(dir, tmp, rt->step, error);
}

gboolean px_runtime_resume(PxRuntime *rt, const char *dir, GError **error) {
  int step = 0;
  g_autofree char *stepdir = px_checkpoint_latest(dir, &step, error);
  TRY(stepdir);
  for (int i = 0; i < rt->n; i++) {
    Rank *r = &rt->ranks[i];
    int cap = 3 * rt->prog->vpp;
    g_autofree PxCkptBlob *blobs = g_new0(PxCkptBlob, cap);
    g_autofree double **host = g_new0(double *, cap);
    int n = rank_blobs(r, blobs, host), s = -1;
    gboolean ok = px_checkpoint_read_rank(stepdir, i, rt->fingerprint, &s, blobs, n, error);
    if (ok && s != step)
      ok = rfail(error, PX_RUNTIME_ERROR_CHECKPOINT, "checkpoint %s: rank %d holds step %d, 'latest' says %d",
                 stepdir, i, s, step);
    for (int k = 0; ok && k < n; k++) ok = px_tensor_upload_f64(blob_tensor(r, k), host[k], error);
    for (int k = 0; k < n; k++) g_free(host[k]);
    TRY(ok);
  }
  rt->step = step;
  return TRUE;
}
