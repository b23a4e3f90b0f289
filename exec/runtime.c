/* runtime.c — the interpreter of a plan's program for the ranks of this
 * process (see runtime.h): every rank of the world as threads on the `local`
 * communicator, or the one rank of a process on any communicator. */
#include "runtime.h"
#include "check.h"
#include <math.h>
#include <omp.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>
#include "checkpoint.h"
#include "cost.h"
#include "comm.h"
#include "data.h"
#include "gpt.h"
#include "grid.h"
#include "moe.h"
#include "partition.h"
#include "schedule.h"
#include "zero3.h"

G_DEFINE_QUARK(px-runtime-error-quark, px_runtime_error)

#define TRY(x)                                                                                     \
  do {                                                                                             \
    if (!(x)) return FALSE;                                                                        \
  } while (0)

/* ---- streams ---------------------------------------------------------------------
 * A rank queues compute on its backend's compute stream and communication on
 * two streams of its own: pipeline sends and receives, issued in the groups
 * the program marks (schedule.h: each group one px_comm_group over the two
 * pipeline communicators, issued at its last member, as Megatron batches
 * them; safe where a send waits for its receiver, as on NCCL), and
 * collectives (DP reduction, ZeRO-3 gathers, the tied embedding).
 * Events order them: a forward waits for its received input and its layers'
 * gathered weights (ZeRO-3: zero3_before), a send and a reduction wait for the compute before them,
 * and the optimizer waits for the collective stream. Each instruction is
 * timed by two events on the stream it runs on, so the measured timeline is
 * the streams' time, not the host's enqueue time. Messages carry no tags: the
 * pipeline communicators deliver in order per sender and receiver, and the
 * program sends in the order its peer receives (checked at construction). */
/* ---- per-rank state ------------------------------------------------------------------ */

/* A flat range of the rank's ZeRO shard: buffer elements [lo, lo + n) are
 * shard elements [at, at + n); the range is the comm rank's part of the
 * region starting at base (reduce-scattered and all-gathered over comm). */
typedef struct {
  gint64 lo, n, at, base;
  PxComm *comm;
  int bucket;   /* bucket shards: the bucket whose region it is; else -1 */
} ShardPart;

typedef struct {
  gint64 numel;       /* the chunk's flat parameter count */
  gint64 shard;       /* elements per DP shard (ceil), when sharded */
  gint64 padded;      /* numel rounded up to dp shards (sharded) or numel */
  /* MoE under ZeRO with expert groups of their own (split): the flat buffers
   * hold the dense tensors first, padded to dp shards of sd, then the routed
   * experts, padded to edp shards of se (Megatron-Core's expert distributed
   * optimizer); shard = sd + se, the dense part of the shard first */
  gboolean split;
  gint64 *off;        /* split: param i's element offset in the buffers (else its own offset) */
  gint64 sd, se, pad_d;
  /* ZeRO-1/2 reduced in buckets (buckets.h px_buckets_sharded): the buffers
   * laid out per bucket, each bucket's region padded to dp slices and the
   * shard the rank's slice of every bucket (px_buckets_shard_layout); an MoE
   * model's expert buckets in a buffer of their own after the dense one,
   * each padded to edp slices; also split (the shard in parts, the params
   * at off) */
  gboolean bucket_shards;
  ShardPart *parts;   /* (n_parts) the rank's shard, sharded runs: one part (the flat 1/dp range),
                         two (split: dense over DP, experts over EDP) or one per bucket region */
  int n_parts;
  PxTensor *w;        /* full local weights: WEIGHTS (ZeRO < 3) */
  PxTensor *w_shard;  /* ZeRO-3 shard: WEIGHTS */
  PxTensor *g;        /* full gradient accumulator: GRADS (ZeRO < 2) or BUFFERS */
  PxTensor *g_shard;  /* reduced shard: BUFFERS (ZeRO-1) or GRADS (ZeRO 2/3) */
  PxTensor *m, *v;    /* AdamW moments: full or shard (fp32 under mixed precision) */
  PxTensor *master;   /* mixed precision or offload: the fp32 master weights, full or shard: OPTIMIZER */
  PxTensor *g_host;   /* offload: the gradient shard (or the unsharded gradients) copied to host memory
                         for the optimizer there: GRADS of the host backend */
  PxTensor *stage;    /* mixed precision: the half gradients staged in fp32 for their
                         reduction (BUFFERS), from the chunk's first reduction to the optimizer */
  PxTensor *stage_shard; /* its reduce-scattered shard (ZeRO >= 1) */
  gboolean has_tied;  /* holds wte or its tied copy (REDUCE_TIED) */
  int tied_param;
  gboolean pending;   /* DP reduction held for REDUCE_TIED */
  /* the DP reduction in buckets (the program's REDUCE_GRADS chunk=c bucket=b):
   * each bucket all-reduced over its group as soon as the chunk's last
   * backward has finished its layers (the gpt's per-layer hook) */
  int n_buckets;        /* 0: one reduction of the whole chunk at its REDUCE_GRADS */
  const PxBucket *buckets; /* (n_buckets) the part's, from the program's layout */
  guint *bucket_instr;  /* (n_buckets) each bucket's REDUCE_GRADS */
  int last_bwd;         /* the chunk's last backward (B, or W when split): the hook runs in it */
  int tied_bucket;      /* the bucket holding the tied parameter, held for REDUCE_TIED; -1 */
  gboolean *cast, *done; /* (n_buckets) per step: staged in fp32 (mixed precision), reduction queued */
  int n_done;
} ChunkState;

typedef struct _PxRuntime PxRuntime;

typedef struct {
  PxTensor *t;        /* a payload in flight */
  PxDevEvent *sent;   /* complete once the p2p stream is past it */
} InFlight;

/* A send or receive of a group not issued yet (its group's last member comes later). */
typedef struct {
  int group;
  guint instr;        /* its instruction */
  gboolean send;
  PxComm *comm;
  PxTensor *payload;  /* send: owned until issued, then in flight */
  void *buf;          /* receive: the destination */
  gsize count;
  PxDType dtype;
  int peer;
  PxDevEvent *done;   /* receive: recorded once the group has run */
} PendingP2p;

typedef struct {
  PxRuntime *rt;
  int rank, stage, dp_rank, tp_rank;
  int cp_rank;          /* context parallelism: the CP rank; dp_rank is then the position
                           d·cp + c in the dp·cp group (grid.h dpcp) */
  int ep_rank, edp_rank, etp_rank; /* MoE: position in the EP, EDP and ETP groups (exec/grid.h) */
  gboolean split_experts; /* expert gradients reduced over EDP, which is not the DP group */
  PxBackend *be;
  PxBackend *host;      /* offload (ZeRO-Offload): the host backend of be (px_backend_new_host: pinned host
                           buffers on cuda) holding the fp32 master, the moments and the gradients' copy,
                           where AdamW runs; NULL without offload */
  PxDevEvent *ev_host;  /* offload: the gradients' downloads into host memory, queued on compute */
  GPtrArray *held;      /* offload: host staging tensors that compute's queued uploads read, freed at the
                           step's end (rank_clear_step), after the loss's download has drained compute */
  PxComm *world, *tp, *dp, *pp_act, *pp_grad, *embed; /* dp: the gradient group, dp·cp ranks; pp_*: the
                                                        pipeline, one per direction of traffic */
  PxComm *cp;           /* the ring of ring attention (cp > 1) */
  PxComm *ep, *edp, *etp; /* MoE models only */
  PxStream *compute, *p2p_s, *coll_s;
  PxDevEvent *ev_compute; /* scratch: "compute up to here" */
  PxDevEvent *ev_coll;    /* the collective stream's last queued work */
  PxDevEvent **ev_start, **ev_end; /* (program length) per-instruction timing */
  GStrv labels;           /* (program length) "rank R (stage S) INSTR", for errors */
  PxGpt *gpt;
  ChunkState *chunks;   /* (vpp) */
  /* ZeRO-3 by layer (docs/executor.md): two slots of gathered weights, each
   * the size of the rank's largest layer, shared by its chunks */
  PxTensor *zslot[2];
  PxDevEvent *zready[2]; /* the slot's last gather has arrived */
  PxZero3Walk *zwalk;    /* the walk of this rank's program (common/zero3.h): the gathers it issues */
  guint zuse;            /* the walk's use the gpt's hook comes to next */
  GArray *zlog;          /* PxZero3Gather: this step's gathers as issued (received: what they brought) */
  PxZero3Gathers zstats; /* this step's layer gathers */
  gboolean sharded;     /* ZeRO >= 1 with dp > 1 */
  int zero;             /* effective: 0 when dp == 1 */
  /* per step */
  PxGptActs **acts;     /* (vpp * m) */
  PxTensor **recv;      /* (vpp * m) received input activations */
  PxTensor **rgrad;     /* (vpp * m) received output gradients */
  PxDevEvent **recv_ev; /* (vpp * m) the receive into recv / rgrad has completed */
  PxTensor **dgrad;     /* (vpp * m) input gradients to send */
  gint32 **inputs, **targets; /* (m) loaded micro-batches */
  GArray *in_flight;    /* InFlight */
  GArray *p2p_pending;  /* PendingP2p, in program order */
  gboolean *group_last; /* (program length) the instruction is the last member of its group */
  guint at;             /* the instruction being run */
  double *bytes;        /* (program length) the step's bytes per instruction */
  gboolean *pre;        /* (program length) queued ahead by the backward's hook (a DP bucket), timed there */
  PxTensor *loss_acc;   /* (1) f64: the step's summed micro-batch losses, on the device */
  PxTensor *sq_acc;     /* (1) f64: this rank's share of the squared gradient norm */
  /* the loss scaler (fp16; scale 1 otherwise), kept by every rank alike: each
   * takes the same decision from the all-reduced gradient norm */
  double scale;
  int good;             /* steps since the last overflow or growth */
  int updates;          /* optimizer updates made (steps less the skipped ones): AdamW's t and the lr schedule */
  gboolean skipped;     /* the last step's update was skipped */
  double step_scale;    /* the scale the last step ran with */
  PxTimeline *tl;
  GError *error;
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
  PxLocalWorld *world;  /* local mode: every rank is a thread of this process */
  PxComm *given_world;  /* one-rank mode: the world communicator the caller made */
  PxTokenFile *data;
  int n;                /* ranks in the world */
  int n_local;          /* ranks in this process */
  Rank *ranks;          /* (n_local) */
  int step;             /* steps done */
  double lr_now, norm_now, loss_now;
  gint64 t0;            /* step start (monotonic us) */
  PxTimeline *timeline; /* last step, this process's ranks */
  char *fingerprint;
  PxDType pdt;          /* parameters and gradients: the run's dtype */
  PxDType cdt;          /* what the model computes in: pdt (bf16 / f16 activations under mixed precision) */
  gboolean mixed;       /* bf16 / f16 parameters with fp32 master weights and moments */
  gboolean fp16;        /* dynamic loss scaling */
  PxMemory *mem_states; /* mixed precision: the prediction for the model states (16 B/param) */
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
  o->device = -1;
  o->loss_scale = 65536;
  o->loss_scale_window = 1000;
}

/* MoE: do the experts' EDP groups coincide with the DP groups (ep 1, etp =
 * tp: every rank of a stage holds every expert, as its dense tensors)? */
static gboolean experts_follow_dp(const PxPlan *p) { return MAX(p->ep, 1) == 1 && px_plan_etp(p) == p->tp; }

/* Does this rank hold the copy of param p that counts once (gradient norm,
 * checkpoint, get_param): DP rank 0 for dense tensors, EDP rank 0 for the
 * experts when they have groups of their own. */
static gboolean owns_replica(const Rank *r, const PxGptParam *p) {
  return r->split_experts && p->expert ? r->edp_rank == 0 : r->dp_rank == 0;
}

/* Parameter offload (ZeRO-Infinity, `--offload optimizer+params`): the
 * rank's ZeRO-3 parameter shard in host memory (r->host), not on the device. */
static gboolean param_offload(const Rank *r) {
  return r->host && r->zero >= 3 && r->rt->plan.offload == PX_OFFLOAD_OPTIMIZER_PARAMS;
}

static PxTensor *tensor1(PxBackend *be, const char *name, PxDType dt, PxMemCategory cat, gint64 n,
                         GError **error) {
  return px_tensor_new(be, name, dt, cat, 1, &n, error);
}

/* Param i of chunk c's element offset in the rank's flat buffers. */
static gint64 param_offset(const Rank *r, int c, guint i) {
  const ChunkState *cs = &r->chunks[c];
  return cs->off ? cs->off[i] : px_gpt_chunk(r->gpt, c)->params[i].offset;
}

/* Visit the parts of the chunk's parameters inside flat range [lo, hi):
 * fn(param, first element, count) with element offsets relative to lo. */
typedef gboolean (*SegmentFn)(Rank *r, const PxGptParam *p, gint64 at, gint64 count, void *data, GError **error);
static gboolean for_segments(Rank *r, int chunk, gint64 lo, gint64 hi, SegmentFn fn, void *data, GError **error) {
  const PxGptChunk *ch = px_gpt_chunk(r->gpt, chunk);
  for (guint i = 0; i < ch->n_params; i++) {
    const PxGptParam *p = &ch->params[i];
    gint64 o = param_offset(r, chunk, i);
    gint64 a = MAX(lo, o), b = MIN(hi, o + p->numel);
    if (a < b) TRY(fn(r, p, a - lo, b - a, data, error));
  }
  return TRUE;
}

/* The parts of the rank's shard of chunk c (sharded runs only; chunk_parts):
 * one over DP, (split) the dense part over DP and the experts' over EDP, or
 * (bucket_shards) the rank's slice of each bucket. */
static int shard_parts(Rank *r, int c, const ShardPart **parts) {
  *parts = r->chunks[c].parts;
  return r->chunks[c].n_parts;
}

/* A view of shard tensor t over part q, kept in keep. */
static PxTensor *part_view(GPtrArray *keep, PxTensor *t, const ShardPart *q, GError **error) {
  PxTensor *v = px_tensor_view(t, "shard_part", q->at, 1, &q->n, error);
  if (v) g_ptr_array_add(keep, v);
  return v;
}

/* Bind chunk c's parameters to the flat buffers in the rank's layout. */
static gboolean chunk_bind(Rank *r, int c, PxTensor *w, PxTensor *g, GError **error) {
  return px_gpt_chunk_bind_at(r->gpt, c, w, g, r->chunks[c].off, error);
}

/* ---- ZeRO-3 layer by layer ----
 * Under ZeRO-3 every chunk is gathered by layer and keeps its flat shard
 * layout; a layer's weights are a contiguous range [lo, hi) of the chunk's
 * flat buffer (the split layout of an MoE model whose experts shard over
 * EDP: its dense tensors' range in the dense region and its experts' in the
 * experts' region; plus, for an LM head tied to the embedding this rank
 * holds, wte's range: px_gpt_layer_borrows), gathered into one of the rank's
 * two slots as a broadcast from each rank of the range's group (DP; the
 * experts' region: EDP) whose shard meets the range (its piece copied into
 * the slot first), on the collective stream, behind the compute queued so
 * far (the slot's last reader). Which layer is gathered into which slot,
 * during which instruction, before or after which layer runs, is the core's
 * walk of the rank's program (common/zero3.h, px_zero3_walk_new: the
 * two-slot rule, decided there only): GATHER_PARAMS queues its
 * instruction's gathers, and the gpt's before-layer hook checks that the
 * layer about to run is the walk's next use, queues the use's on-demand
 * gather, binds the layer's weights to the use's slot (waiting for its
 * gather) and queues the use's prefetches. Every DP rank runs the same
 * program, so the broadcasts come in the same order on every rank. */

static gboolean after_compute(Rank *r, PxStream *s, GError **error);

#define MAX_PIECES 3
typedef struct {
  int c;
  guint p0, p1; /* the chunk's parameters [p0, p1) */
  int part;     /* -1: all of them; split layout: 0 the dense ones, 1 the experts (shard_parts' index) */
} UnitPiece;

static gboolean in_piece(Rank *r, const UnitPiece *u, guint i) {
  return u->part < 0 || px_gpt_chunk(r->gpt, u->c)->params[i].expert == (u->part == 1);
}

/* Params [p0, p1) of chunk c as pieces (one, or split: the dense and the
 * expert ones, each contiguous in their region), appended to u at n. */
static int add_pieces(Rank *r, int c, guint p0, guint p1, UnitPiece *u, int n) {
  if (!r->chunks[c].split) {
    u[n++] = (UnitPiece){c, p0, p1, -1};
    return n;
  }
  for (int part = 0; part < 2; part++) {
    UnitPiece q = {c, p0, p1, part};
    gboolean any = FALSE;
    for (guint i = p0; i < p1 && !any; i++) any = in_piece(r, &q, i);
    if (any) u[n++] = q;
  }
  return n;
}

/* Layer li of chunk c's pieces of parameters (1 to MAX_PIECES). */
static int layer_unit(Rank *r, int c, int li, UnitPiece u[MAX_PIECES]) {
  const PxGptChunk *ch = px_gpt_chunk(r->gpt, c);
  int n = add_pieces(r, c, (guint)ch->layer_param[li - ch->first], (guint)ch->layer_param[li - ch->first + 1], u, 0);
  int fc, fp;
  if (px_gpt_layer_borrows(r->gpt, c, li, &fc, &fp)) n = add_pieces(r, fc, (guint)fp, (guint)fp + 1, u, n);
  return n;
}

/* The flat range [lo, hi) of piece u (empty: its params hold nothing). */
static void piece_range(Rank *r, const UnitPiece *u, gint64 *lo, gint64 *hi) {
  const PxGptChunk *ch = px_gpt_chunk(r->gpt, u->c);
  *lo = G_MAXINT64;
  *hi = 0;
  for (guint i = u->p0; i < u->p1; i++)
    if (in_piece(r, u, i)) {
      *lo = MIN(*lo, param_offset(r, u->c, i));
      *hi = MAX(*hi, param_offset(r, u->c, i) + ch->params[i].numel);
    }
  if (*lo > *hi) *lo = *hi = 0;
}

static gint64 unit_numel(Rank *r, int c, int li) {
  UnitPiece u[MAX_PIECES];
  gint64 n = 0, lo, hi;
  for (int k = 0, np = layer_unit(r, c, li, u); k < np; k++) {
    piece_range(r, &u[k], &lo, &hi);
    n += hi - lo;
  }
  return n;
}

/* A new step: the walk from its start (what the slots held is stale: the
 * weights changed in the update). */
static void zero3_begin(Rank *r) {
  memset(&r->zstats, 0, sizeof r->zstats);
  r->zuse = 0;
  if (r->zlog) g_array_set_size(r->zlog, 0);
}

/* Queue the gather of layer li of chunk c into slot k at the walk's use
 * `use` (-1: GATHER_PARAMS's); its bytes received added to *bytes. */
static gboolean zero3_gather(Rank *r, int c, int li, int k, int use, gboolean on_demand, double *bytes, GError **error) {
  UnitPiece u[MAX_PIECES];
  PxDType dt = r->rt->pdt;
  gsize es = px_dtype_size(dt);
  TRY(after_compute(r, r->coll_s, error)); /* the slot's last reader is queued before */
  gint64 dst = 0, lo, hi, received = 0;
  for (int q = 0, np = layer_unit(r, c, li, u); q < np; q++) {
    ChunkState *cs = &r->chunks[u[q].c];
    const ShardPart *parts; /* one, or split two: the dense over DP, the experts over EDP */
    shard_parts(r, u[q].c, &parts);
    /* the range's group: shards of S from base, this rank's the S at lo, at `at` in its shard tensor */
    const ShardPart *g = &parts[MAX(u[q].part, 0)];
    gint64 S = g->n;
    int n = px_comm_size(g->comm), me = S > 0 ? (int)((g->lo - g->base) / S) : -1;
    piece_range(r, &u[q], &lo, &hi);
    for (int j = 0; j < n && S > 0; j++) {
      gint64 a = MAX(lo, g->base + (gint64)j * S), b = MIN(hi, g->base + (gint64)(j + 1) * S), len = b - a;
      if (len <= 0) continue;
      if (j == me) { /* the root's piece from its shard */
        g_autoptr(PxTensor) to = px_tensor_view(r->zslot[k], "gathered", dst + a - lo, 1, &len, error);
        g_autoptr(PxTensor) from =
            to ? px_tensor_view(cs->w_shard, "w_shard", g->at + a - g->lo, 1, &len, error) : NULL;
        TRY(from);
        /* parameter offload: uploaded from host memory straight into the
         * slot, at the rank's own place in the gathered layer (the host shard
         * is rewritten only by the optimizer, after the step's gathers) */
        if (from->backend != r->be) TRY(px_tensor_upload_async(to, from->data, r->coll_s, error));
        else TRY(px_tensor_copy_async(to, from, r->coll_s, error));
      }
      TRY(px_comm_broadcast(g->comm, (char *)r->zslot[k]->data + (dst + a - lo) * es, (gsize)len, dt, j, r->coll_s,
                            error));
      if (j != me) received += len;
    }
    dst += hi - lo;
  }
  TRY(px_event_record(r->zready[k], r->coll_s, error));
  *bytes += (double)received * es;
  PxZero3Gather logged = {r->at, use, c, li, k, on_demand, received};
  g_array_append_val(r->zlog, logged);
  r->zstats.gathers++;
  r->zstats.on_demand += on_demand;
  return TRUE;
}

/* Queue the walk's gathers of the instruction running at its use u (-1:
 * GATHER_PARAMS's), the on-demand ones or the prefetches. */
static gboolean zero3_issue(Rank *r, int u, gboolean on_demand, GError **error) {
  const PxZero3Walk *w = r->zwalk;
  for (guint q = w->seq_at[r->at]; q < w->seq_at[r->at + 1]; q++) {
    const PxZero3Gather *g = &w->seq[q];
    if (g->use == u && g->on_demand == on_demand)
      TRY(zero3_gather(r, g->chunk, g->layer, g->slot, u, on_demand, &r->bytes[r->at], error));
  }
  return TRUE;
}

/* Bind layer li of chunk c's weights to slot k. */
static gboolean zero3_bind(Rank *r, int c, int li, int k, GError **error) {
  UnitPiece u[MAX_PIECES];
  gint64 dst = 0, lo, hi;
  for (int q = 0, np = layer_unit(r, c, li, u); q < np; q++) {
    piece_range(r, &u[q], &lo, &hi);
    for (guint i = u[q].p0; i < u[q].p1; i++)
      if (in_piece(r, &u[q], i))
        TRY(px_gpt_param_bind_w(r->gpt, u[q].c, i, r->zslot[k], dst + param_offset(r, u[q].c, i) - lo, error));
    dst += hi - lo;
  }
  return TRUE;
}

/* The gpt's hook before layer li of chunk c runs: the walk's next use (else
 * an error: the model and the walk disagree), its on-demand gather, its
 * weights bound to its slot, its prefetches. */
static gboolean zero3_before(int c, int li, void *data, GError **error) {
  Rank *r = data;
  const PxZero3Walk *w = r->zwalk;
  guint u = MAX(r->zuse, w->use_at[r->at]);
  if (u >= w->use_at[r->at + 1])
    return rfail(error, PX_RUNTIME_ERROR_FAILED,
                 "ZeRO-3: the model runs layer %d of chunk %d where the walk of the program (common/zero3.h) lists no "
                 "more layers", li, c);
  if (w->uses[u].chunk != c || w->uses[u].layer != li)
    return rfail(error, PX_RUNTIME_ERROR_FAILED,
                 "ZeRO-3: the model runs layer %d of chunk %d where the walk of the program (common/zero3.h) lists "
                 "layer %d of chunk %d", li, c, w->uses[u].layer, w->uses[u].chunk);
  int k = w->uses[u].slot;
  TRY(zero3_issue(r, (int)u, TRUE, error));
  TRY(px_stream_wait_event(r->compute, r->zready[k], error));
  TRY(zero3_bind(r, c, li, k, error));
  r->zuse = u + 1;
  return zero3_issue(r, (int)u, FALSE, error);
}

/* After a forward or backward: the pass ran every layer the walk lists for it. */
static gboolean zero3_pass_done(Rank *r, GError **error) {
  const PxZero3Walk *w = r->zwalk;
  if (!w) return TRUE;
  guint ran = r->zuse > w->use_at[r->at] ? r->zuse - w->use_at[r->at] : 0, want = w->use_at[r->at + 1] - w->use_at[r->at];
  if (ran == want) return TRUE;
  return rfail(error, PX_RUNTIME_ERROR_FAILED,
               "ZeRO-3: the pass ran %u of the %u layers the walk of the program (common/zero3.h) lists for it", ran,
               want);
}

/* The two slots (BUFFERS, each the largest layer of the rank's chunks), and
 * the hook; none below ZeRO-3. */
static gboolean zero3_slots(Rank *r, GError **error) {
  gint64 most = 0;
  for (int c = 0; c < r->rt->prog->vpp && r->zero >= 3; c++) {
    const PxGptChunk *ch = px_gpt_chunk(r->gpt, c);
    for (int li = ch->first; li < ch->end; li++) most = MAX(most, unit_numel(r, c, li));
  }
  if (most == 0) return TRUE;
  for (int k = 0; k < 2; k++) {
    g_autofree char *name = g_strdup_printf("zero3.slot%d", k);
    TRY(r->zslot[k] = tensor1(r->be, name, r->rt->pdt, PX_MEM_BUFFERS, most, error));
    TRY(r->zready[k] = px_event_new(r->be, error));
  }
  r->zwalk = px_zero3_walk_new(r->rt->model, &r->rt->plan, r->rt->part, r->rt->prog, r->rank);
  r->zlog = g_array_new(FALSE, FALSE, sizeof(PxZero3Gather));
  px_gpt_set_layer_before(r->gpt, zero3_before, r);
  return TRUE;
}

/* Split layout (ChunkState.split): each param's offset, dense tensors packed
 * first, the experts after the dense region padded to dp shards. */
static void chunk_split_layout(Rank *r, int c) {
  ChunkState *cs = &r->chunks[c];
  const PxGptChunk *ch = px_gpt_chunk(r->gpt, c);
  gint64 nd = 0, ne = 0;
  for (guint i = 0; i < ch->n_params; i++) *(ch->params[i].expert ? &ne : &nd) += ch->params[i].numel;
  int dp = px_plan_data_ranks(&r->rt->plan), edp = px_comm_size(r->edp);
  cs->split = TRUE;
  cs->sd = px_zero_shard(nd, dp);
  cs->se = px_zero_shard(ne, edp);
  cs->pad_d = cs->sd * dp;
  cs->shard = cs->sd + cs->se;
  cs->padded = cs->pad_d + cs->se * edp;
  cs->off = g_new(gint64, ch->n_params);
  gint64 d = 0, e = cs->pad_d;
  for (guint i = 0; i < ch->n_params; i++) {
    gint64 *at = ch->params[i].expert ? &e : &d;
    cs->off[i] = *at;
    *at += ch->params[i].numel;
  }
}

/* Bucket shards (ChunkState.bucket_shards): the core's layout of the chunk's
 * part (px_buckets_shard_layout), each param at its bucket's region (a
 * dense tensor at its layer's dense bucket's, an MoE model's routed experts
 * at their layer's expert bucket's) plus its place among the bucket's
 * layers; the runtime's own element counts must be the layout's. The
 * shard's parts: the rank's slice of each non-empty region, over DP (the
 * dense buckets) or EDP (the experts'), in the shard's order. */
static gboolean chunk_bucket_layout(Rank *r, int c, GError **error) {
  PxRuntime *rt = r->rt;
  ChunkState *cs = &r->chunks[c];
  const PxGptChunk *ch = px_gpt_chunk(r->gpt, c);
  const PxBuckets *bk = rt->prog->buckets;
  int k = px_program_part_of(rt->prog, r->stage, c), n = bk->n[k];
  PxComm *group[2] = {r->dp, r->edp ? r->edp : r->dp};
  int rank_in[2] = {r->dp_rank, r->edp ? r->edp_rank : r->dp_rank};
  g_autofree PxBucketShard *bs = g_new(PxBucketShard, n);
  cs->shard = px_buckets_shard_layout(bk, k, px_comm_size(group[0]), px_comm_size(group[1]), bs, &cs->padded, NULL);
  cs->split = cs->bucket_shards = TRUE;
  cs->off = g_new(gint64, ch->n_params);
  cs->parts = g_new(ShardPart, n);
  for (int g = 0; g < 2; g++)
    for (int b = n - 1; b >= 0; b--) { /* the shard's order: the dense buckets, then the experts' */
      const PxBucket *bb = &bk->b[k][b];
      if (!bb->expert != !g) continue;
      const PxBucketShard *q = &bs[b];
      int p0 = ch->layer_param[bb->first - ch->first], p1 = ch->layer_param[bb->end - ch->first];
      gint64 held = 0;
      for (int i = p0; i < p1; i++)
        if (ch->params[i].expert == (g == 1)) {
          cs->off[i] = q->base + held;
          held += ch->params[i].numel;
        }
      if (held != q->elems)
        return rfail(error, PX_RUNTIME_ERROR_INVALID,
                     "rank %d chunk %d bucket %d: the runtime holds %" G_GINT64_FORMAT
                     " %s gradient elements, the bucket layout (buckets.h) %" G_GINT64_FORMAT,
                     r->rank, c, b, held, g ? "routed-expert" : "dense", q->elems);
      if (q->slice > 0)
        cs->parts[cs->n_parts++] =
            (ShardPart){q->base + (gint64)rank_in[g] * q->slice, q->slice, q->at, q->base, group[g], b};
    }
  return TRUE;
}

/* The parts of the rank's shard (sharded runs): the flat range, or split's two. */
static void chunk_parts(Rank *r, int c) {
  ChunkState *cs = &r->chunks[c];
  if (cs->parts) return; /* bucket shards: chunk_bucket_layout */
  if (!cs->split) {
    cs->n_parts = 1;
    cs->parts = g_new(ShardPart, 1);
    cs->parts[0] = (ShardPart){(gint64)r->dp_rank * cs->shard, cs->shard, 0, 0, r->dp, -1};
    return;
  }
  cs->n_parts = 2;
  cs->parts = g_new(ShardPart, 2);
  cs->parts[0] = (ShardPart){(gint64)r->dp_rank * cs->sd, cs->sd, 0, 0, r->dp, -1};
  cs->parts[1] = (ShardPart){cs->pad_d + (gint64)r->edp_rank * cs->se, cs->se, cs->sd, cs->pad_d, r->edp, -1};
}

/* dst = src (rounded to dst's dtype) where the two may live on different
 * backends: the device and, with offload, the host (r->host). Across them
 * through host memory: a download into a host tensor, or an upload from
 * one, with the cast on the host. An upload goes on stream s when given
 * (the optimizer's, on compute: asynchronous from pinned memory), its
 * staging tensor kept in r->held until the step's end; without s (set-up)
 * every copy is done on return. A download is always done on return. */
static gboolean cross_cast(Rank *r, PxTensor *dst, const PxTensor *src, PxStream *s, GError **error) {
  if (dst->backend == src->backend) return px_op_cast(dst->backend, dst, src, FALSE, error);
  g_return_val_if_fail(r->host && (dst->backend == r->host || src->backend == r->host), FALSE);
  if (dst->backend == r->host) { /* device -> host: download as it is, cast on the host */
    if (dst->dtype == src->dtype) return px_tensor_download(src, dst->data, error);
    gint64 n = src->numel;
    g_autoptr(PxTensor) raw = px_tensor_new(r->host, "offload.stage", src->dtype, PX_MEM_BUFFERS, 1, &n, error);
    return raw && px_tensor_download(src, raw->data, error) && px_op_cast(r->host, dst, raw, FALSE, error);
  }
  /* host -> device: cast on the host into dst's dtype (a staging tensor), upload */
  const PxTensor *from = src;
  g_autoptr(PxTensor) cast = NULL;
  if (dst->dtype != src->dtype) {
    TRY(cast = px_tensor_new(r->host, "offload.stage", dst->dtype, PX_MEM_BUFFERS, 1, &dst->numel, error));
    TRY(px_op_cast(r->host, cast, src, FALSE, error));
    from = cast;
  }
  if (!s) return px_tensor_upload(dst, from->data, error);
  /* src (the master) is rewritten only by the next step's AdamW, after that
   * step's downloads have drained compute (op_optimizer) */
  TRY(px_tensor_upload_async(dst, from->data, s, error));
  if (cast) g_ptr_array_add(r->held, g_steal_pointer(&cast));
  return TRUE;
}

static gboolean chunk_alloc(Rank *r, int c, GError **error) {
  PxRuntime *rt = r->rt;
  ChunkState *cs = &r->chunks[c];
  const PxGptChunk *ch = px_gpt_chunk(r->gpt, c);
  PxDType dt = rt->pdt, st = rt->mixed ? PX_DTYPE_F32 : rt->pdt; /* parameters, optimizer states */
  int dp = px_plan_data_ranks(&rt->plan); /* ZeRO shards over dp·cp */
  cs->numel = ch->numel;
  cs->shard = r->sharded ? px_zero_shard(ch->numel, dp) : ch->numel;
  cs->padded = r->sharded ? cs->shard * dp : ch->numel;
  if (r->sharded && r->zero < 3 &&
      px_buckets_sharded(rt->prog->buckets, rt->model, &rt->plan, px_program_part_of(rt->prog, r->stage, c)))
    TRY(chunk_bucket_layout(r, c, error));
  else if (r->sharded && r->split_experts)
    chunk_split_layout(r, c);
  if (r->sharded) chunk_parts(r, c);
  g_autofree char *nw = g_strdup_printf("chunk%d.weights", c);
  g_autofree char *ng = g_strdup_printf("chunk%d.grads", c);
  if (r->zero >= 3) {
    /* parameter offload (ZeRO-Infinity's offload_param): the shard lives in
     * host memory, uploaded piece by piece into the gathers (zero3_gather) */
    TRY(cs->w_shard = tensor1(param_offload(r) ? r->host : r->be, nw, dt, PX_MEM_WEIGHTS, cs->shard, error));
  } else {
    TRY(cs->w = tensor1(r->be, nw, dt, PX_MEM_WEIGHTS, cs->padded, error));
  }
  /* accumulated into (backward adds, Adam's moments start at zero): zeroed */
  TRY(cs->g = px_tensor_new_zeroed(r->be, ng, dt, r->zero >= 2 ? PX_MEM_BUFFERS : PX_MEM_GRADS, 1, &cs->padded, error));
  if (r->sharded)
    TRY(cs->g_shard = tensor1(r->be, "grad_shard", dt, r->zero >= 2 ? PX_MEM_GRADS : PX_MEM_BUFFERS, cs->shard, error));
  /* the optimizer's states: on the device, or with offload in host memory
   * (DeepSpeed's ZeRO-Offload: fp32 master, moments and a copy of the
   * gradient shard on the CPU, AdamW there, the parameters copied back) */
  PxBackend *obe = r->host ? r->host : r->be;
  TRY(cs->m = px_tensor_new_zeroed(obe, "adam.m", st, PX_MEM_OPTIMIZER, 1, &cs->shard, error));
  TRY(cs->v = px_tensor_new_zeroed(obe, "adam.v", st, PX_MEM_OPTIMIZER, 1, &cs->shard, error));
  /* the master: fp32 under mixed precision; with offload and no mixed
   * precision the parameters' own dtype (their copy the host updates) */
  if (rt->mixed || r->host) TRY(cs->master = tensor1(obe, "master", st, PX_MEM_OPTIMIZER, cs->shard, error));
  if (r->host) TRY(cs->g_host = tensor1(r->host, "grad_host", dt, PX_MEM_GRADS, cs->shard, error));
  /* initial values */
  g_autofree double *init = g_new0(double, cs->padded);
  px_gpt_chunk_init_values(r->gpt, c, rt->opt.seed, init);
  if (cs->split) { /* into the split layout */
    g_autofree double *own = g_steal_pointer(&init);
    init = g_new0(double, cs->padded);
    for (guint i = 0; i < ch->n_params; i++)
      memcpy(init + cs->off[i], own + ch->params[i].offset, sizeof(double) * ch->params[i].numel);
  }
  if (cs->w) {
    TRY(px_tensor_upload_f64(cs->w, init, error));
    TRY(chunk_bind(r, c, cs->w, cs->g, error));
  } else {
    g_autofree double *mine = g_new0(double, cs->shard);
    const ShardPart *parts;
    for (int k = 0, n = shard_parts(r, c, &parts); k < n; k++)
      memcpy(mine + parts[k].at, init + parts[k].lo, sizeof(double) * parts[k].n);
    TRY(px_tensor_upload_f64(cs->w_shard, mine, error));
    TRY(chunk_bind(r, c, NULL, cs->g, error));
  }
  /* the master starts as the half parameters, upcast (Megatron's main params) */
  if (cs->master && cs->split && cs->w) { /* the shard's parts of the full weights */
    const ShardPart *parts;
    for (int k = 0, n = shard_parts(r, c, &parts); k < n; k++) {
      g_autoptr(PxTensor) to = px_tensor_view(cs->master, "master", parts[k].at, 1, &parts[k].n, error);
      g_autoptr(PxTensor) from = to ? px_tensor_view(cs->w, "w_shard", parts[k].lo, 1, &parts[k].n, error) : NULL;
      TRY(from && cross_cast(r, to, from, NULL, error));
    }
  } else if (cs->master) {
    g_autoptr(PxTensor) mine = NULL;
    if (cs->w_shard) mine = px_tensor_view(cs->w_shard, "w_shard", 0, 1, &cs->shard, error);
    else mine = px_tensor_view(cs->w, "w_shard", r->sharded ? (gint64)r->dp_rank * cs->shard : 0, 1, &cs->shard, error);
    TRY(mine && cross_cast(r, cs->master, mine, NULL, error));
  }
  cs->tied_param = -1;
  if (rt->prog->tied_first_stage >= 0)
    for (guint i = 0; i < ch->n_params; i++)
      if (ch->params[i].tied_copy || ch->params[i].spec->role == PX_ROLE_TOKEN_EMBED) {
        cs->has_tied = TRUE;
        cs->tied_param = (int)i;
      }
  return TRUE;
}

/* Chunk c's DP buckets, where the program reduces it in buckets: each
 * bucket's REDUCE_GRADS, the chunk's last backward, the tied bucket. */
static void chunk_buckets(Rank *r, int c) {
  PxRuntime *rt = r->rt;
  ChunkState *cs = &r->chunks[c];
  const PxRankProgram *rp = &rt->prog->ranks[r->stage];
  cs->last_bwd = cs->tied_bucket = -1;
  for (guint i = 0; i < rp->n; i++) {
    const PxInstr *in = &rp->instrs[i];
    if (in->chunk != c) continue;
    if (in->kind == PX_OP_BACKWARD || in->kind == PX_OP_BACKWARD_INPUT || in->kind == PX_OP_BACKWARD_WEIGHT)
      cs->last_bwd = (int)i;
    if (in->kind == PX_OP_REDUCE_GRADS && in->bucket >= 0) cs->n_buckets = MAX(cs->n_buckets, in->bucket + 1);
  }
  if (!cs->n_buckets) return;
  int k = px_program_part_of(rt->prog, r->stage, c);
  g_assert(rt->prog->buckets && rt->prog->buckets->n[k] == cs->n_buckets);
  cs->buckets = rt->prog->buckets->b[k];
  cs->bucket_instr = g_new0(guint, cs->n_buckets);
  for (guint i = 0; i < rp->n; i++)
    if (rp->instrs[i].kind == PX_OP_REDUCE_GRADS && rp->instrs[i].chunk == c && rp->instrs[i].bucket >= 0)
      cs->bucket_instr[rp->instrs[i].bucket] = i;
  cs->cast = g_new0(gboolean, cs->n_buckets);
  cs->done = g_new0(gboolean, cs->n_buckets);
  if (cs->has_tied)
    cs->tied_bucket = px_buckets_of_layer(rt->prog->buckets, k, px_gpt_chunk(r->gpt, c)->params[cs->tied_param].layer);
}

/* Free the payloads whose sends have completed (all of them with wait). */
static gboolean reap_sends(Rank *r, gboolean wait, GError **error) {
  gboolean ok = TRUE;
  for (guint i = 0; i < r->in_flight->len;) {
    InFlight *f = &g_array_index(r->in_flight, InFlight, i);
    if (!wait && !px_event_query(f->sent)) {
      i++;
      continue;
    }
    if (wait && ok) ok = px_event_synchronize(f->sent, error);
    px_tensor_free(f->t);
    px_event_free(f->sent);
    g_array_remove_index(r->in_flight, i);
  }
  return ok;
}

static void rank_clear_step(Rank *r) {
  PxRuntime *rt = r->rt;
  int n = rt->prog->vpp * rt->plan.m;
  if (r->held && r->held->len) { /* compute's uploads from them have run (an error too stops the stream) */
    px_stream_synchronize(r->compute, NULL);
    g_ptr_array_set_size(r->held, 0);
  }
  if (!r->acts) return; /* rank_init failed before allocating the step state */
  /* nothing queued may still point at what is freed here */
  if (r->p2p_s) px_stream_synchronize(r->p2p_s, NULL);
  for (guint i = 0; r->p2p_pending && i < r->p2p_pending->len; i++) /* a step that failed mid-group */
    px_tensor_free(g_array_index(r->p2p_pending, PendingP2p, i).payload);
  if (r->p2p_pending) g_array_set_size(r->p2p_pending, 0);
  if (r->coll_s) px_stream_synchronize(r->coll_s, NULL);
  reap_sends(r, TRUE, NULL);
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
  rank_clear_step(r);
  PxRuntime *rt = r->rt;
  int n = rt->prog->vpp * rt->plan.m;
  for (int c = 0; r->chunks && c < rt->prog->vpp; c++) {
    ChunkState *cs = &r->chunks[c];
    PxTensor **ts[] = {&cs->w, &cs->w_shard, &cs->g, &cs->g_shard, &cs->m, &cs->v, &cs->master, &cs->stage,
                       &cs->stage_shard, &cs->g_host};
    for (gsize i = 0; i < G_N_ELEMENTS(ts); i++) g_clear_pointer(ts[i], px_tensor_free);
    g_free(cs->off);
    g_free(cs->parts);
    g_free(cs->bucket_instr);
    g_free(cs->cast);
    g_free(cs->done);
  }
  for (int k = 0; k < 2; k++) {
    g_clear_pointer(&r->zslot[k], px_tensor_free);
    g_clear_pointer(&r->zready[k], px_event_free);
  }
  g_clear_pointer(&r->zwalk, px_zero3_walk_free);
  if (r->zlog) g_clear_pointer(&r->zlog, g_array_unref);
  for (int i = 0; r->recv_ev && i < n; i++) px_event_free(r->recv_ev[i]);
  guint len = rt->prog->ranks[r->stage].n;
  for (guint i = 0; r->ev_start && i < len; i++) {
    px_event_free(r->ev_start[i]);
    px_event_free(r->ev_end[i]);
  }
  g_free(r->ev_start);
  g_free(r->ev_end);
  g_free(r->pre);
  g_strfreev(r->labels);
  g_free(r->recv_ev);
  px_event_free(r->ev_compute);
  px_tensor_free(r->loss_acc);
  px_tensor_free(r->sq_acc);
  px_event_free(r->ev_coll);
  px_stream_free(r->p2p_s);
  if (r->p2p_pending) g_array_unref(r->p2p_pending);
  g_free(r->group_last);
  px_stream_free(r->coll_s);
  if (r->in_flight) g_array_unref(r->in_flight);
  px_gpt_free(r->gpt);
  g_free(r->chunks);
  g_free(r->acts);
  g_free(r->recv);
  g_free(r->rgrad);
  g_free(r->dgrad);
  g_free(r->inputs);
  g_free(r->targets);
  PxComm **cs[] = {&r->tp, &r->dp, &r->pp_act, &r->pp_grad, &r->embed, &r->cp, &r->ep, &r->edp, &r->etp};
  for (gsize i = 0; i < G_N_ELEMENTS(cs); i++) g_clear_pointer(cs[i], px_comm_free);
  if (r->world != rt->given_world) px_comm_free(r->world);
  if (r->held) g_ptr_array_unref(r->held);
  px_event_free(r->ev_host);
  if (r->host) px_backend_free(r->host); /* its memory is be's host buffers: first */
  px_backend_free(r->be);
  px_timeline_free(r->tl);
  g_clear_error(&r->error);
}

/* The communicators of the grid, split from the world (collective). */
static gboolean rank_comms(Rank *r, GError **error) {
  PxGrid *grid = r->rt->grid;
  TRY(r->tp = px_grid_comm(grid, PX_GROUP_TP, r->world, error));
  /* gradients are reduced (and ZeRO shards) over dp·cp: Megatron's
   * data-parallel group with context parallelism */
  TRY(r->dp = px_grid_comm(grid, PX_GROUP_DPCP, r->world, error));
  if (px_grid_cp(grid) > 1) TRY(r->cp = px_grid_comm(grid, PX_GROUP_CP, r->world, error));
  TRY(r->pp_act = px_grid_comm(grid, PX_GROUP_PP, r->world, error));
  TRY(r->pp_grad = px_grid_comm(grid, PX_GROUP_PP, r->world, error));
  GError *err = NULL;
  r->embed = px_grid_comm(grid, PX_GROUP_EMBED, r->world, &err);
  if (err) {
    g_propagate_error(error, err);
    return FALSE;
  }
  if (r->rt->model->desc.experts > 0) { /* the MoE blocks' expert groups */
    TRY(r->ep = px_grid_comm(grid, PX_GROUP_EP, r->world, error));
    TRY(r->edp = px_grid_comm(grid, PX_GROUP_EDP, r->world, error));
    TRY(r->etp = px_grid_comm(grid, PX_GROUP_ETP, r->world, error));
  }
  return TRUE;
}

static gboolean rank_init(PxRuntime *rt, Rank *r, int rank, PxComm *world, GError **error) {
  r->rt = rt;
  r->rank = rank;
  r->world = world;
  PxCoord co = px_grid_coord(rt->grid, rank);
  r->stage = co.pp;
  r->dp_rank = co.dp * px_grid_cp(rt->grid) + co.cp;
  r->cp_rank = co.cp;
  r->tp_rank = co.tp;
  PxExpertCoord ec = px_grid_expert_coord(rt->grid, rank);
  r->ep_rank = ec.ep;
  r->edp_rank = ec.edp;
  r->etp_rank = ec.etp;
  r->split_experts = rt->model->desc.experts > 0 && !experts_follow_dp(&rt->plan);
  /* ZeRO shards over dp·cp, and the experts over edp: with dp·cp 1 only those (ZeRO-1/2);
   * parameter offload partitions whatever dp·cp (with 1, one partition of everything,
   * in host memory, each layer uploaded before its use: px_zero3_by_layer) */
  r->zero = px_plan_data_ranks(&rt->plan) > 1 || (r->split_experts && px_plan_edp(&rt->plan) > 1) ||
                    rt->plan.offload == PX_OFFLOAD_OPTIMIZER_PARAMS
                ? rt->plan.zero
                : 0;
  r->sharded = r->zero >= 1;
  r->in_flight = g_array_new(FALSE, FALSE, sizeof(InFlight));
  TRY(rank_comms(r, error));
  /* -1 (the local communicator's ranks as threads): device 0 for every rank,
   * not the cuda backend's -1 modulo the devices, the last one */
  TRY(r->be = px_backend_new(rt->backend_name, MAX(rt->opt.device, 0), error));
  if (rt->plan.offload != PX_OFFLOAD_NONE) {
    TRY(r->host = px_backend_new_host(r->be, error));
    TRY(r->ev_host = px_event_new(r->be, error));
  }
  r->held = g_ptr_array_new_with_free_func((GDestroyNotify)px_tensor_free);
  r->compute = px_backend_compute_stream(r->be);
  TRY(r->p2p_s = px_stream_new(r->be, "p2p", error));
  r->p2p_pending = g_array_new(FALSE, FALSE, sizeof(PendingP2p));
  TRY(r->coll_s = px_stream_new(r->be, "collectives", error));
  TRY(r->ev_compute = px_event_new(r->be, error));
  TRY(r->loss_acc = tensor1(r->be, "loss", PX_DTYPE_F64, PX_MEM_BUFFERS, 1, error));
  TRY(r->sq_acc = tensor1(r->be, "grad_norm_sq", PX_DTYPE_F64, PX_MEM_BUFFERS, 1, error));
  TRY(r->ev_coll = px_event_new(r->be, error));
  PxGptRank gr = {r->be, r->tp, r->stage, r->tp_rank, rt->cdt, r->cp, r->cp_rank, r->ep, r->ep_rank, r->etp, r->etp_rank};
  r->scale = rt->fp16 ? rt->opt.loss_scale : 1.0;
  TRY(r->gpt = px_gpt_new(rt->model, &rt->plan, rt->part, &gr, error));
  int v = rt->prog->vpp, m = rt->plan.m;
  r->chunks = g_new0(ChunkState, v);
  r->acts = g_new0(PxGptActs *, v * m);
  r->recv = g_new0(PxTensor *, v * m);
  r->rgrad = g_new0(PxTensor *, v * m);
  r->dgrad = g_new0(PxTensor *, v * m);
  r->recv_ev = g_new0(PxDevEvent *, v * m);
  for (int i = 0; i < v * m; i++) TRY(r->recv_ev[i] = px_event_new(r->be, error));
  guint len = rt->prog->ranks[r->stage].n;
  r->ev_start = g_new0(PxDevEvent *, len);
  r->ev_end = g_new0(PxDevEvent *, len);
  r->labels = g_new0(char *, len + 1);
  for (guint i = 0; i < len; i++) {
    g_autoptr(GString) s = g_string_new(NULL);
    px_instr_format(&rt->prog->ranks[r->stage].instrs[i], s);
    r->labels[i] = g_strdup_printf("rank %d (stage %d) %s", rank, r->stage, s->str);
  }
  r->group_last = g_new0(gboolean, len + 1);
  r->pre = g_new0(gboolean, len + 1);
  {
    g_autoptr(GHashTable) seen = g_hash_table_new(g_direct_hash, g_direct_equal);
    for (guint i = len; i-- > 0;) {
      int g = rt->prog->ranks[r->stage].instrs[i].group;
      if (g >= 0 && g_hash_table_add(seen, GINT_TO_POINTER(g + 1))) r->group_last[i] = TRUE;
    }
  }
  for (guint i = 0; i < len; i++) {
    TRY(r->ev_start[i] = px_event_new(r->be, error));
    TRY(r->ev_end[i] = px_event_new(r->be, error));
  }
  r->inputs = g_new0(gint32 *, m);
  r->targets = g_new0(gint32 *, m);
  for (int c = 0; c < v; c++) {
    TRY(chunk_alloc(r, c, error));
    chunk_buckets(r, c);
  }
  return zero3_slots(r, error);
}

/* ---- construction ------------------------------------------------------------------------- */

/* The data file's identity: its size and the SHA-256 of its first 64 KiB
 * ("data bytes N; data sha256 of the first K B HEX"), or, where it is not a
 * readable file here, "data bytes (not a readable file here)" (open_data
 * says why later). Not the whole file's hash: a token file of gigabytes would
 * be read by every process at every start. */
static char *data_identity(const char *path) {
  GStatBuf st;
  FILE *f = g_stat(path, &st) == 0 && S_ISREG(st.st_mode) ? fopen(path, "rb") : NULL;
  if (!f) return g_strdup("data bytes (not a readable file here)");
  g_autofree char *head = g_malloc(65536);
  gsize n = fread(head, 1, 65536, f);
  fclose(f);
  g_autofree char *sum = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)head, n);
  return g_strdup_printf("data bytes %" G_GINT64_FORMAT "; data sha256 of the first %" G_GSIZE_FORMAT " B %s",
                         (gint64)st.st_size, n, sum);
}

/* What a checkpoint must match, as "key value" items joined by "; ": what
 * fixes the math, not the layout: model, dtype, the data stream (seed and
 * source: the file's base name, size and head, `ident` from data_identity,
 * NULL without a data file; the position in it is step · gbs sequences,
 * restored with the step) and the global batch (gbs sequences of seq tokens). */
static char *make_fingerprint(const PxModel *model, const PxPlan *plan, const PxRunOptions *o, const char *ident) {
  const PxModelDesc *d = &model->desc;
  g_autofree char *src = o->data ? g_path_get_basename(o->data) : g_strdup("synthetic");
  return g_strdup_printf("model %s L%d h%d a%d kv%d f%d V%d hd%d theta%g eps%g; dtype %s; seed %" G_GUINT64_FORMAT
                         "; data %s; gbs %d; seq %d%s%s", d->name, d->layers, d->hidden, d->heads, d->kv_heads, d->ffn,
                         d->vocab, d->head_dim, d->rope_theta, d->norm_eps, px_dtype_name(o->dtype), o->seed, src,
                         plan->gbs, plan->seq, ident ? "; " : "", ident ? ident : "");
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

static int part_of_stage(const PxRuntime *rt, int stage, int chunk) { return px_program_part_of(rt->prog, stage, chunk); }

/* Messages carry no tags, so every directed pair of stages must send its
 * activations (and its gradients) in the order the receiver receives them:
 * compare, per pair and kind, the (micro-batch, source part) sequences of the
 * sender's SEND_* and the receiver's RECV_*. */
static gboolean check_message_order(const PxRuntime *rt, GError **error) {
  int pp = rt->plan.pp;
  for (int kind = 0; kind < 2; kind++) {
    PxOpKind send_k = kind ? PX_OP_SEND_GRAD : PX_OP_SEND_ACT, recv_k = kind ? PX_OP_RECV_GRAD : PX_OP_RECV_ACT;
    for (int a = 0; a < pp; a++)
      for (int b = 0; b < pp; b++) {
        if (a == b) continue;
        g_autoptr(GArray) sent = g_array_new(FALSE, FALSE, sizeof(int) * 2);
        g_autoptr(GArray) recvd = g_array_new(FALSE, FALSE, sizeof(int) * 2);
        const PxRankProgram *pa = &rt->prog->ranks[a], *pb = &rt->prog->ranks[b];
        for (guint i = 0; i < pa->n; i++)
          if (pa->instrs[i].kind == send_k && pa->instrs[i].peer == b) {
            int key[2] = {pa->instrs[i].mb, part_of_stage(rt, a, pa->instrs[i].chunk)};
            g_array_append_vals(sent, key, 1);
          }
        for (guint i = 0; i < pb->n; i++)
          if (pb->instrs[i].kind == recv_k && pb->instrs[i].peer == a) {
            int key[2] = {pb->instrs[i].mb, part_of_stage(rt, b, pb->instrs[i].chunk) + (kind ? 1 : -1)};
            g_array_append_vals(recvd, key, 1);
          }
        if (sent->len != recvd->len || (sent->len && memcmp(sent->data, recvd->data, sizeof(int) * 2 * sent->len)))
          return rfail(error, PX_RUNTIME_ERROR_INVALID,
                       "schedule %s: stage %d sends its %s to stage %d in an order that stage %d does not receive them in",
                       px_schedule_name(rt->plan.schedule), a, kind ? "gradients" : "activations", b, b);
      }
  }
  return TRUE;
}

/* Everything but the ranks. */
/* `ident`: the data file's data_identity where the caller has it already
 * (px_runtime_new_rank reads the file's head once for the agreement check
 * and the fingerprint), NULL to read it here. */
static PxRuntime *runtime_setup(const PxModel *model, const PxPlan *plan, const PxRunOptions *opt, const char *ident,
                                GError **error) {
  g_autoptr(PxRuntime) rt = g_new0(PxRuntime, 1);
  rt->model = model;
  px_plan_copy(&rt->plan, plan);
  rt->opt = *opt;
  rt->backend_name = g_strdup(opt->backend ? opt->backend : "cpu");
  rt->data_path = g_strdup(opt->data);
  rt->opt.backend = rt->backend_name;
  rt->opt.data = rt->data_path;
  int T = plan->seq > 0 ? plan->seq : model->desc.max_seq, cp = MAX(plan->cp, 1);
  if (cp > 1 && T % (2 * cp)) {
    rfail(error, PX_RUNTIME_ERROR_INVALID,
          "context parallelism cuts the sequence into 2·cp = %d chunks: %d tokens are not divisible by %d", 2 * cp, T,
          2 * cp);
    return NULL;
  }
  if (plan->precision == PX_PREC_FP8) {
    rfail(error, PX_RUNTIME_ERROR_INVALID, "FP8 GEMMs (--precision fp8) are not run by the executor");
    return NULL;
  }
  if (plan->tp_overlap != PX_TPO_NONE) {
    rfail(error, PX_RUNTIME_ERROR_INVALID,
          "TP communication overlap (--tp-overlap, Transformer Engine's userbuffers) is not run by the executor");
    return NULL;
  }
  if (opt->dtype == PX_DTYPE_I32) {
    rfail(error, PX_RUNTIME_ERROR_INVALID, "the executor runs in f32, f64, bf16 or f16");
    return NULL;
  }
  rt->pdt = opt->dtype;
  rt->mixed = px_dtype_is_half(opt->dtype);
  rt->fp16 = opt->dtype == PX_DTYPE_F16;
  rt->cdt = opt->dtype; /* bf16 / fp16 activations under mixed precision, statistics fp32 (backend.h) */
  if (rt->fp16 && (!isfinite(opt->loss_scale) || opt->loss_scale < 1 || opt->loss_scale_window < 1)) {
    rfail(error, PX_RUNTIME_ERROR_INVALID, "the fp16 loss scale must be a finite number >= 1 (%g) and its window >= 1 (%d)",
          opt->loss_scale, opt->loss_scale_window);
    return NULL;
  }
  /* validated as given (the planner's rules, e.g. context parallelism's 16-bit
   * fused ring attention, are about the stack it models), then run in the
   * executor's own precision */
  if (!px_plan_validate(&rt->plan, model, NULL, error) || !px_model_executable(model, error)) return NULL;
  /* the attention kernel of the plan as given (flash in 16 bits, and under
   * context parallelism): a fused one runs the flash-style block op, keeping
   * the row log-sum-exp, never the s x s probabilities (activations.h) */
  rt->plan.attention = px_cost_attention(&rt->plan);
  rt->plan.precision = PX_PREC_FP32; /* the executor computes in fp32 / fp64 */
  if (!(rt->part = px_partition_new(model, &rt->plan, NULL, error))) return NULL;
  for (int k = 0; k < rt->part->parts; k++)
    if (rt->part->bounds[k] == rt->part->bounds[k + 1]) {
      rfail(error, PX_RUNTIME_ERROR_INVALID,
            "plan does not divide the model: part %d of %d has no layers (%u layers over pp=%d x vpp=%d)", k,
            rt->part->parts, model->n_layers, rt->plan.pp, rt->plan.vpp);
      return NULL;
    }
  if (!(rt->prog = px_program_new(&rt->plan, rt->part, error))) return NULL;
  if (!check_message_order(rt, error)) return NULL;
  /* the pipeline's sends and receives go in the program's groups, which hold
   * where a send waits for its receiver (NCCL; `local` in rendezvous mode) */
  px_program_group_p2p(rt->prog);
  if (!px_program_check_rendezvous(rt->prog, error)) return NULL;
  /* the executor runs without dropout: predict for the model as it runs */
  PxModelDesc nodrop = model->desc;
  nodrop.dropout = FALSE;
  g_autoptr(PxModel) as_run = px_model_new(&nodrop, error);
  if (!as_run) return NULL;
  /* activations: the executor's own tensors, from the core's list (activations.h),
   * in the compute dtype (bf16 / fp16 under mixed precision, their statistics fp32) */
  PxActOptions act = {PX_ACT_STACK_EXEC, (int)px_dtype_size(rt->cdt)};
  rt->mem = px_memory_new_act(as_run, &rt->plan, rt->part, NULL, &act);
  if (rt->mixed) { /* the model states of mixed precision (the fp32 plan's buffers hold the fp32 gradient staging) */
    PxPlan mp;
    px_plan_copy(&mp, &rt->plan);
    mp.precision = rt->fp16 ? PX_PREC_FP16 : PX_PREC_BF16;
    rt->mem_states = px_memory_new(as_run, &mp, rt->part, NULL);
    px_plan_clear(&mp);
  }
  if (!(rt->grid = px_grid_new(&rt->plan, error))) return NULL;
  rt->n = px_plan_world(&rt->plan);
  {
    g_autofree char *own = opt->data && !ident ? data_identity(opt->data) : NULL;
    rt->fingerprint = make_fingerprint(model, &rt->plan, &rt->opt, opt->data ? (ident ? ident : own) : NULL);
  }
  if (!open_data(rt, error)) return NULL;
  return g_steal_pointer(&rt);
}

/* ---- running a function on every rank of this process ---- */

typedef gboolean (*RankFn)(Rank *r, gpointer data, GError **error);

typedef struct {
  Rank *r;
  RankFn fn;
  gpointer data;
} RankJob;

/* A failing rank aborts the world (its peers fail at once instead of after
 * the timeout) with its own sentence. */
static void rank_failed(Rank *r) {
  if (r->world) px_comm_abort(r->world, r->error->message);
  else if (r->rt->world) px_local_world_abort(r->rt->world, r->error->message);
}

static gpointer rank_job(gpointer data) {
  RankJob *j = data;
  /* thread-ranks share the cores of this process (OMP_NUM_THREADS, when set, wins); a process
   * holding one rank keeps what its launcher's share gave it (cmd_run) */
  if (j->r->rt->n_local > 1 && !g_getenv("OMP_NUM_THREADS"))
    omp_set_num_threads(MAX(1, (int)g_get_num_processors() / j->r->rt->n_local));
  g_clear_error(&j->r->error);
  if (!j->fn(j->r, j->data, &j->r->error)) {
    if (!j->r->error) g_set_error_literal(&j->r->error, PX_RUNTIME_ERROR, PX_RUNTIME_ERROR_FAILED, "failed");
    rank_failed(j->r);
  }
  return NULL;
}

/* The error to report: the first that is not the consequence of another
 * rank's (an abort of the communicator). */
static gboolean first_failure(PxRuntime *rt, GError **error) {
  Rank *failed = NULL;
  for (int i = 0; i < rt->n_local; i++) {
    Rank *r = &rt->ranks[i];
    if (!r->error) continue;
    gboolean secondary = g_error_matches(r->error, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED);
    if (!failed || (!secondary && g_error_matches(failed->error, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED))) failed = r;
  }
  if (!failed) return TRUE;
  g_propagate_error(error, g_error_copy(failed->error));
  return FALSE;
}

/* fn on every local rank at once (a thread each; the caller's thread for one). */
static gboolean run_ranks(PxRuntime *rt, RankFn fn, gpointer data, GError **error) {
  g_autofree RankJob *jobs = g_new(RankJob, rt->n_local);
  for (int i = 0; i < rt->n_local; i++) jobs[i] = (RankJob){&rt->ranks[i], fn, data};
  if (rt->n_local == 1) {
    rank_job(&jobs[0]);
  } else {
    g_autofree GThread **th = g_new0(GThread *, rt->n_local);
    for (int i = 0; i < rt->n_local; i++) {
      g_autofree char *name = g_strdup_printf("rank%d", rt->ranks[i].rank);
      th[i] = g_thread_new(name, rank_job, &jobs[i]);
    }
    for (int i = 0; i < rt->n_local; i++) g_thread_join(th[i]);
  }
  return first_failure(rt, error);
}

static gboolean init_job(Rank *r, gpointer data, GError **error) {
  (void)data;
  PxRuntime *rt = r->rt;
  if (rt->world) r->world = px_comm_local_new(rt->world, r->rank);
  return rank_init(rt, r, r->rank, r->world, error);
}

PxRuntime *px_runtime_new(const PxModel *model, const PxPlan *plan, const PxRunOptions *opt, GError **error) {
  g_autoptr(PxRuntime) rt = runtime_setup(model, plan, opt, NULL, error);
  if (!rt) return NULL;
  rt->world = px_local_world_new(rt->n, opt->timeout_s);
  if (opt->rendezvous) px_local_world_set_rendezvous(rt->world, TRUE);
  rt->n_local = rt->n;
  rt->ranks = g_new0(Rank, rt->n);
  for (int i = 0; i < rt->n; i++) rt->ranks[i].rt = rt, rt->ranks[i].rank = i;
  if (!run_ranks(rt, init_job, NULL, error)) return NULL;
  return g_steal_pointer(&rt);
}

/* What every process of a world must share, as "key value" items joined by
 * "; ": the checkpoint fingerprint (model, dtype, seed, data with its size and
 * first 64 KiB, batch), the plan as given, the optimiser and the caller's items. The
 * timeout, the device and the fault injection may differ. */
static char *run_items(const PxModel *model, const PxPlan *plan, const PxRunOptions *o, const char *ident) {
  g_autofree char *fp = make_fingerprint(model, plan, o, ident);
  GString *s = g_string_new(fp);
  g_autofree char *ini = px_plan_to_ini(plan);
  g_auto(GStrv) lines = g_strsplit(ini, "\n", -1);
  for (int i = 0; lines[i]; i++) {
    if (!lines[i][0] || lines[i][0] == '#' || lines[i][0] == '[') continue;
    g_auto(GStrv) kv = g_strsplit(lines[i], " = ", 2);
    g_string_append_printf(s, "; %s %s", kv[0], kv[1] ? kv[1] : "");
  }
  g_string_append_printf(s, "; backend %s; lr %.17g; min_lr %.17g; warmup %d; decay_steps %d; beta1 %.17g; beta2 %.17g"
                         "; eps %.17g; weight_decay %.17g; clip %.17g", o->backend ? o->backend : "cpu", o->lr, o->min_lr,
                         o->warmup, o->decay_steps, o->beta1, o->beta2, o->eps, o->weight_decay, o->clip);
  if (o->dtype == PX_DTYPE_F16)
    g_string_append_printf(s, "; loss_scale %.17g; loss_scale_window %d", o->loss_scale, o->loss_scale_window);
  if (o->agree && o->agree[0]) g_string_append_printf(s, "; %s", o->agree);
  return g_string_free(s, FALSE);
}

/* Every process's items gathered to every rank (their longest length by a
 * MAX all-reduce, then an all-gather padded to it) and compared with rank
 * 0's: the same verdict on every rank, before any other collective. Another
 * seed or learning rate on one rank trained replicas apart and exited 0;
 * another layout or --steps failed only at the deadline with a sentence
 * about an all-reduce. */
static gboolean check_agree(PxComm *world, const char *items, GError **error) {
  int n = px_comm_size(world);
  gint32 len = (gint32)MIN(strlen(items) + 1, (gsize)G_MAXINT32 / 2);
  TRY(px_comm_all_reduce(world, &len, 1, PX_DTYPE_I32, PX_RED_MAX, NULL, error));
  gsize words = ((gsize)len + 3) / 4;
  g_autofree gint32 *mine = g_new0(gint32, words);
  memcpy(mine, items, MIN(strlen(items), words * 4 - 1));
  g_autofree gint32 *all = g_new0(gint32, words * (gsize)n);
  TRY(px_comm_all_gather(world, mine, all, words, PX_DTYPE_I32, NULL, error));
  const char *first = (const char *)all;
  int odd = -1, count = 0;
  for (int r = 1; r < n; r++) {
    const char *it = (const char *)(all + words * (gsize)r);
    if (strncmp(first, it, words * 4)) {
      if (odd < 0) odd = r;
      count++;
    }
  }
  if (odd < 0) return TRUE;
  g_autofree char *a = NULL, *b = NULL;
  g_autofree char *x = g_strndup(first, words * 4), *y = g_strndup((const char *)(all + words * (gsize)odd), words * 4);
  px_ckpt_items_differ(y, x, &a, &b);
  g_autofree char *more = count > 1 ? g_strdup_printf(" (%d ranks differ)", count) : g_strdup("");
  return rfail(error, PX_RUNTIME_ERROR_INVALID,
               "rank %d was given another run than rank 0: '%s' on rank %d, '%s' on rank 0%s (every process must get "
               "the same options)", odd, a, odd, b, more);
}

PxRuntime *px_runtime_new_rank(const PxModel *model, const PxPlan *plan, const PxRunOptions *opt, PxComm *world,
                               GError **error) {
  g_autofree char *ident = opt->data ? data_identity(opt->data) : NULL;
  {
    g_autofree char *items = run_items(model, plan, opt, ident);
    if (!check_agree(world, items, error)) return NULL;
  }
  g_autoptr(PxRuntime) rt = runtime_setup(model, plan, opt, ident, error);
  if (!rt) return NULL;
  if (px_comm_size(world) != rt->n) {
    rfail(error, PX_RUNTIME_ERROR_INVALID, "the plan needs %d ranks (dp %d x cp %d x tp %d x pp %d), the world has %d",
          rt->n, rt->plan.dp, MAX(rt->plan.cp, 1), rt->plan.tp, rt->plan.pp, px_comm_size(world));
    return NULL;
  }
  rt->given_world = world;
  rt->n_local = 1;
  rt->ranks = g_new0(Rank, 1);
  rt->ranks[0].rt = rt;
  rt->ranks[0].rank = px_comm_world_rank(world);
  rt->ranks[0].world = world;
  if (!run_ranks(rt, init_job, NULL, error)) return NULL;
  return g_steal_pointer(&rt);
}

void px_runtime_free(PxRuntime *rt) {
  if (!rt) return;
  for (int i = 0; rt->ranks && i < rt->n_local; i++) rank_free(&rt->ranks[i]);
  g_free(rt->ranks);
  px_token_file_free(rt->data);
  px_local_world_free(rt->world);
  px_grid_free(rt->grid);
  px_memory_free(rt->mem);
  px_memory_free(rt->mem_states);
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
int px_runtime_rank(const PxRuntime *rt) { return rt->n_local == 1 ? rt->ranks[0].rank : 0; }
int px_runtime_steps_done(const PxRuntime *rt) { return rt->step; }
const PxPlan *px_runtime_plan(const PxRuntime *rt) { return &rt->plan; }
const PxTimeline *px_runtime_timeline(const PxRuntime *rt) { return rt->timeline; }

/* ---- the instructions ----------------------------------------------------------------------- */

static int part_of(Rank *r, int chunk) { return part_of_stage(r->rt, r->stage, chunk); }
static int slot(Rank *r, int mb, int chunk) { return chunk * r->rt->plan.m + mb; }
static PxDType dtype_of(Rank *r) { return r->rt->pdt; }

/* Work queued on s from now on waits for the compute queued so far. */
static gboolean after_compute(Rank *r, PxStream *s, GError **error) {
  return px_event_record(r->ev_compute, r->compute, error) && px_stream_wait_event(s, r->ev_compute, error);
}

static gboolean op_load(Rank *r, int mb, GError **error) {
  PxRuntime *rt = r->rt;
  int B = rt->plan.mbs, T = rt->plan.seq, cp = MAX(rt->plan.cp, 1);
  /* the CP ranks of a DP rank read the same sequences, each keeps its chunks */
  int dp_rank = r->dp_rank / cp;
  gint64 first = (gint64)rt->step * rt->plan.gbs + ((gint64)dp_rank * rt->plan.m + mb) * B;
  g_autofree gint32 *win = g_new(gint32, (gsize)B * (T + 1));
  TRY(px_token_file_windows(rt->data, first, B, T, win, error));
  g_free(r->inputs[mb]);
  g_free(r->targets[mb]);
  r->inputs[mb] = g_new(gint32, (gsize)B * T);
  r->targets[mb] = g_new(gint32, (gsize)B * T);
  px_windows_split(win, B, T, r->inputs[mb], r->targets[mb]);
  if (cp > 1) {
    g_autofree gint32 *in = g_steal_pointer(&r->inputs[mb]), *tg = g_steal_pointer(&r->targets[mb]);
    r->inputs[mb] = g_new(gint32, (gsize)B * T / cp);
    r->targets[mb] = g_new(gint32, (gsize)B * T / cp);
    px_gpt_local_tokens(r->gpt, in, r->inputs[mb]);
    px_gpt_local_tokens(r->gpt, tg, r->targets[mb]);
  }
  return TRUE;
}

/* A compute instruction's start, recorded again once its inputs have arrived
 * (a received activation or gradient, gathered weights, the step's
 * reductions): the measured interval is the compute's own and the wait before
 * it idle, as the engine counts it (run --compare sets the two side by side). */
static gboolean inputs_arrived(Rank *r, GError **error) {
  return !r->ev_start || px_event_record(r->ev_start[r->at], r->compute, error);
}

static gboolean op_forward(Rank *r, int mb, int c, GError **error) {
  PxRuntime *rt = r->rt;
  int part = part_of(r, c), s = slot(r, mb, c);
  gboolean first = part == 0, last = part == rt->part->parts - 1;
  if (r->recv[s]) TRY(px_stream_wait_event(r->compute, r->recv_ev[s], error));
  TRY(inputs_arrived(r, error));
  PxGptActs *a = px_gpt_forward_acc(r->gpt, c, g_steal_pointer(&r->recv[s]), first ? r->inputs[mb] : NULL,
                                    last ? r->targets[mb] : NULL, r->loss_acc, error);
  TRY(a);
  r->acts[s] = a;
  return zero3_pass_done(r, error);
}

static gboolean with_hook(Rank *r, const PxInstr *ins, gboolean weights_final);
static gboolean op_backward(Rank *r, const PxInstr *ins, GError **error) {
  PxRuntime *rt = r->rt;
  int s = slot(r, ins->mb, ins->chunk);
  PxGptActs *a = r->acts[s];
  if (!a) return rfail(error, PX_RUNTIME_ERROR_FAILED, "backward of mb %d chunk %d before its forward", ins->mb, ins->chunk);
  if (r->rgrad[s]) TRY(px_stream_wait_event(r->compute, r->recv_ev[s], error));
  TRY(inputs_arrived(r, error));
  /* each rank's loss is the mean over its tokens; the objective the mean over
   * the dp·cp ranks' (CP ranks hold as many tokens each) */
  double dloss = r->scale / ((double)rt->plan.m * px_plan_data_ranks(&rt->plan)); /* fp16: the loss scaled */
  gboolean defer = ins->kind == PX_OP_BACKWARD_INPUT;
  gboolean armed = with_hook(r, ins, !defer);
  gboolean ok = px_gpt_backward(r->gpt, a, g_steal_pointer(&r->rgrad[s]), dloss, defer, &r->dgrad[s], error);
  if (armed) px_gpt_set_layer_hook(r->gpt, NULL, NULL);
  TRY(ok);
  if (!defer) g_clear_pointer(&r->acts[s], px_gpt_acts_free);
  return zero3_pass_done(r, error);
}

static gboolean op_backward_weight(Rank *r, const PxInstr *ins, GError **error) {
  int s = slot(r, ins->mb, ins->chunk);
  if (!r->acts[s]) return rfail(error, PX_RUNTIME_ERROR_FAILED, "weight pass of mb %d before its backward", ins->mb);
  TRY(inputs_arrived(r, error));
  gboolean armed = with_hook(r, ins, TRUE);
  gboolean ok = px_gpt_backward_weight(r->gpt, r->acts[s], error);
  if (armed) px_gpt_set_layer_hook(r->gpt, NULL, NULL);
  TRY(ok);
  g_clear_pointer(&r->acts[s], px_gpt_acts_free);
  return TRUE;
}

/* Issue the sends and receives of the program's group g (-1: the one just
 * made, alone) on the p2p stream as one group over the two pipeline
 * communicators, in program order; then record the receives' events and put
 * the payloads in flight. Members issued earlier in the program waited here. */
static gboolean issue_group(Rank *r, int g, GError **error) {
  g_autoptr(GArray) ops = g_array_new(FALSE, FALSE, sizeof(PendingP2p));
  for (guint i = 0; i < r->p2p_pending->len;) {
    PendingP2p *x = &g_array_index(r->p2p_pending, PendingP2p, i);
    if ((g < 0 && i + 1 < r->p2p_pending->len) || (g >= 0 && x->group != g)) {
      i++;
      continue;
    }
    g_array_append_val(ops, *x);
    g_array_remove_index(r->p2p_pending, i);
  }
  PxComm *comms[2] = {r->pp_act, r->pp_grad};
  px_comm_group_start(comms[0]);
  px_comm_group_start(comms[1]);
  gboolean ok = TRUE;
  for (guint i = 0; i < ops->len; i++) {
    PendingP2p *x = &g_array_index(ops, PendingP2p, i);
    ok = ok && (x->send ? px_comm_send(x->comm, x->buf, x->count, x->dtype, x->peer, r->p2p_s, error)
                        : px_comm_recv(x->comm, x->buf, x->count, x->dtype, x->peer, r->p2p_s, error));
  }
  GError *end_err = NULL;
  ok = px_comm_group_end_multi(comms, 2, r->p2p_s, ok ? error : &end_err) && ok;
  g_clear_error(&end_err);
  for (guint i = 0; i < ops->len; i++) {
    PendingP2p *x = &g_array_index(ops, PendingP2p, i);
    /* each member's timing ends with the group */
    if (ok && x->instr != r->at) ok = px_event_record(r->ev_end[x->instr], r->p2p_s, error);
    if (!x->send) {
      ok = ok && px_event_record(x->done, r->p2p_s, error);
      continue;
    }
    InFlight f = {x->payload, ok ? px_event_new(r->be, error) : NULL};
    if (!f.sent || !px_event_record(f.sent, r->p2p_s, error)) {
      px_event_free(f.sent);
      px_tensor_free(f.t);
      ok = FALSE;
      continue;
    }
    g_array_append_val(r->in_flight, f);
  }
  return ok;
}

/* SEND_*: the payload is queued on the p2p stream behind the compute that
 * made it, issued with its group, and freed once the stream is past it. */
static gboolean op_send(Rank *r, const PxInstr *ins, double *bytes, GError **error) {
  int s = slot(r, ins->mb, ins->chunk);
  gboolean act = ins->kind == PX_OP_SEND_ACT;
  g_autoptr(PxTensor) payload = NULL;
  if (act) {
    PxTensor *out = r->acts[s] ? px_gpt_acts_output(r->acts[s]) : NULL;
    if (!out) return rfail(error, PX_RUNTIME_ERROR_FAILED, "send of mb %d chunk %d before its forward", ins->mb, ins->chunk);
    TRY(payload = px_tensor_new(r->be, "p2p", out->dtype, PX_MEM_BUFFERS, out->ndim, out->shape, error));
    TRY(px_tensor_copy_async(payload, out, r->compute, error));
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
    *dst = g_steal_pointer(&payload);
    return TRUE;
  }
  *bytes = (double)payload->bytes;
  TRY(reap_sends(r, FALSE, error));
  TRY(after_compute(r, r->p2p_s, error));
  PendingP2p x = {ins->group, r->at, TRUE, act ? r->pp_act : r->pp_grad, g_steal_pointer(&payload), NULL, 0,
                  PX_DTYPE_F32, ins->peer, NULL};
  x.buf = x.payload->data, x.count = (gsize)x.payload->numel, x.dtype = x.payload->dtype;
  g_array_append_val(r->p2p_pending, x);
  return ins->group >= 0 && !r->group_last[r->at] ? TRUE : issue_group(r, ins->group, error);
}

/* RECV_*: issued with its group on the p2p stream; the instruction that consumes it waits for its event. */
static gboolean op_recv(Rank *r, const PxInstr *ins, double *bytes, GError **error) {
  gboolean act = ins->kind == PX_OP_RECV_ACT;
  int s = slot(r, ins->mb, ins->chunk);
  gint64 shape[2];
  px_gpt_io_shape(r->gpt, shape);
  PxTensor **dst = act ? &r->recv[s] : &r->rgrad[s];
  /* the bottom of a V: op_send left it here; copied as a receive would, on the compute stream */
  PxTensor *own = ins->peer == r->stage ? g_steal_pointer(dst) : NULL;
  if (ins->peer == r->stage && !own)
    return rfail(error, PX_RUNTIME_ERROR_FAILED, "mb %d chunk %d received from this rank before it was sent", ins->mb, ins->chunk);
  px_tensor_free(*dst);
  *dst = px_tensor_new(r->be, act ? "recv_act" : "recv_grad", r->rt->cdt,
                       act ? PX_MEM_ACTIVATIONS : PX_MEM_BUFFERS, 2, shape, error);
  if (own) {
    InFlight f = {own, *dst ? px_event_new(r->be, error) : NULL};
    gboolean ok = f.sent && px_tensor_copy_async(*dst, own, r->compute, error) && px_event_record(f.sent, r->compute, error);
    if (f.sent) g_array_append_val(r->in_flight, f); /* freed by reap_sends once the copy is done */
    else px_tensor_free(own);
    return ok && px_event_record(r->recv_ev[s], r->compute, error);
  }
  TRY(*dst);
  /* the caching pool may have handed *dst a block that compute queued before
   * still reads (a backward's input, freed as soon as the backward was
   * queued): on an asynchronous backend the receive must not write it before
   * that compute has run */
  TRY(after_compute(r, r->p2p_s, error));
  *bytes = (double)(*dst)->bytes;
  PendingP2p x = {ins->group, r->at, FALSE, act ? r->pp_act : r->pp_grad, NULL, (*dst)->data, (gsize)(*dst)->numel,
                  (*dst)->dtype, ins->peer, r->recv_ev[s]};
  g_array_append_val(r->p2p_pending, x);
  return ins->group >= 0 && !r->group_last[r->at] ? TRUE : issue_group(r, ins->group, error);
}

/* Mixed precision: the chunk's half gradients, cast into an fp32 buffer on
 * the compute stream, for the reductions (Megatron reduces its main_grad in
 * fp32; the communicators reduce halves too, for the TP activations). The
 * optimizer rounds the result back into the half gradients and frees the buffer. The gradient
 * buffer itself, the GRADS category the planner counts, stays half. */
static gboolean bucket_cast(Rank *r, int c, int b, GError **error);
static PxTensor *grads_to_reduce(Rank *r, int c, GError **error) {
  ChunkState *cs = &r->chunks[c];
  if (!r->rt->mixed) return cs->g;
  for (int b = 0; b < cs->n_buckets; b++) /* in buckets: those not staged yet (the held one) */
    if (!bucket_cast(r, c, b, error)) return NULL;
  if (!cs->stage) {
    if (!(cs->stage = tensor1(r->be, "grad_stage.f32", PX_DTYPE_F32, PX_MEM_BUFFERS, cs->padded, error))) return NULL;
    if (!px_op_cast(r->be, cs->stage, cs->g, FALSE, error)) return NULL;
  }
  return cs->stage;
}

/* Where a reduce-scatter lands: the gradient shard, or under mixed precision
 * an fp32 staging shard (rounded into it by grads_from_stage). */
static PxTensor *reduced_shard(Rank *r, ChunkState *cs, GError **error) {
  if (!cs->stage) return cs->g_shard;
  if (!cs->stage_shard) /* bucket shards: at the chunk's first bucket */
    cs->stage_shard = tensor1(r->be, "grad_stage_shard.f32", PX_DTYPE_F32, PX_MEM_BUFFERS, cs->shard, error);
  return cs->stage_shard;
}

/* ---- the DP reduction in buckets ----
 * Bucket b of a chunk (cs->buckets[b]: layers [first, end), buckets.h) is
 * reduced once the chunk's last backward has finished its layers: the
 * backward's per-layer hook (px_gpt_set_layer_hook) records an event on the
 * compute stream and queues on the collective stream, behind it, an
 * all-reduce of each run of the bucket's parameters that is contiguous in
 * the flat gradient buffer (a view: no copy), over DP; an MoE model's expert
 * bucket (PxBucket.expert) holds only its layers' routed experts, over EDP
 * where the experts have groups of their own, a dense bucket only the
 * other tensors. Under
 * ZeRO-1/2 (bucket_shards: buckets.h px_buckets_sharded) the buffers are laid
 * out per bucket, each bucket's region padded to dp slices, and the bucket is
 * reduce-scattered over its region into the rank's slice of it (Megatron-Core's
 * distributed optimizer; an MoE model's expert bucket over EDP into the
 * rank's expert slice); AdamW updates the slices and the
 * optimizer all-gathers each bucket (adam_split_after). Under ZeRO-3 the
 * shard stays one flat range of the chunk, so the bucket is all-reduced in
 * place and, once the last bucket is queued, the rank's shard of the reduced
 * buffer is copied into the shard (the same sums per element as the
 * reduce-scatter).
 * Under mixed precision each bucket is cast into the fp32 staging buffer on
 * the compute stream first. The bucket that holds the tied embedding waits
 * for REDUCE_TIED, as the whole chunk does without buckets. */

/* Visit the runs of bucket b's parameters (of its kind: dense, or routed
 * experts): [lo, lo + n) of the flat buffers, contiguous, one group. */
typedef gboolean (*RunFn)(Rank *r, int c, gint64 lo, gint64 n, PxComm *comm, void *data, GError **error);
static gboolean bucket_runs(Rank *r, int c, int b, RunFn fn, void *data, GError **error) {
  const PxGptChunk *ch = px_gpt_chunk(r->gpt, c);
  const PxBucket *bk = &r->chunks[c].buckets[b];
  int p0 = ch->layer_param[bk->first - ch->first], p1 = ch->layer_param[bk->end - ch->first];
  gint64 lo = 0, n = 0;
  PxComm *comm = NULL;
  for (int i = p0; i <= p1; i++) {
    PxComm *pc = NULL;
    gint64 o = 0;
    if (i < p1 && !ch->params[i].expert != !bk->expert) continue; /* the other kind's bucket */
    if (i < p1) {
      pc = r->split_experts && ch->params[i].expert ? r->edp : r->dp;
      o = param_offset(r, c, (guint)i);
    }
    if (n > 0 && (i == p1 || pc != comm || o != lo + n)) {
      TRY(fn(r, c, lo, n, comm, data, error));
      n = 0;
    }
    if (i == p1) break;
    if (n == 0) lo = o, comm = pc;
    n += ch->params[i].numel;
  }
  return TRUE;
}

static gboolean cast_run(Rank *r, int c, gint64 lo, gint64 n, PxComm *comm, void *data, GError **error) {
  (void)comm, (void)data;
  ChunkState *cs = &r->chunks[c];
  g_autoptr(PxTensor) to = px_tensor_view(cs->stage, "grad_stage.f32", lo, 1, &n, error);
  g_autoptr(PxTensor) from = to ? px_tensor_view(cs->g, "grads", lo, 1, &n, error) : NULL;
  return from && px_op_cast(r->be, to, from, FALSE, error);
}

/* Mixed precision: bucket b's half gradients into the fp32 staging buffer
 * (zeroed where no bucket reaches: the ZeRO padding), on the compute stream. */
static gboolean bucket_cast(Rank *r, int c, int b, GError **error) {
  ChunkState *cs = &r->chunks[c];
  if (!r->rt->mixed || cs->cast[b]) return TRUE;
  if (!cs->stage)
    TRY(cs->stage = px_tensor_new_zeroed(r->be, "grad_stage.f32", PX_DTYPE_F32, PX_MEM_BUFFERS, 1, &cs->padded, error));
  cs->cast[b] = TRUE;
  return bucket_runs(r, c, b, cast_run, NULL, error);
}

typedef struct {
  PxTensor *g;
  double *bytes;
} ReduceRun;

static gboolean reduce_run(Rank *r, int c, gint64 lo, gint64 n, PxComm *comm, void *data, GError **error) {
  (void)c;
  ReduceRun *x = data;
  if (px_comm_size(comm) <= 1) return TRUE;
  gsize es = px_dtype_size(x->g->dtype);
  *x->bytes += (double)n * es;
  return px_comm_all_reduce(comm, (char *)x->g->data + lo * es, (gsize)n, x->g->dtype, PX_RED_SUM, r->coll_s, error);
}

/* Queue bucket b's reduction on the collective stream behind the compute so
 * far; timed: record its instruction's events around it (the hook). */
static gboolean bucket_issue(Rank *r, int c, int b, double *bytes, gboolean timed, GError **error) {
  ChunkState *cs = &r->chunks[c];
  guint i = cs->bucket_instr[b];
  TRY(bucket_cast(r, c, b, error));
  ReduceRun x = {r->rt->mixed ? cs->stage : cs->g, bytes};
  TRY(after_compute(r, r->coll_s, error));
  if (timed) TRY(px_event_record(r->ev_start[i], r->coll_s, error));
  if (cs->bucket_shards) { /* the bucket's padded regions reduce-scattered into the rank's slices */
    PxTensor *out = reduced_shard(r, cs, error);
    TRY(out);
    gsize es = px_dtype_size(x.g->dtype);
    for (int k = 0; k < cs->n_parts; k++) {
      const ShardPart *q = &cs->parts[k];
      if (q->bucket != b) continue;
      TRY(px_comm_reduce_scatter(q->comm, (char *)x.g->data + q->base * es, (char *)out->data + q->at * es,
                                 (gsize)q->n, x.g->dtype, r->coll_s, error));
      *bytes += (double)(q->n * px_comm_size(q->comm)) * es;
    }
  } else {
    TRY(bucket_runs(r, c, b, reduce_run, &x, error));
  }
  cs->done[b] = TRUE;
  if (++cs->n_done == cs->n_buckets && r->sharded && !cs->bucket_shards) { /* the rank's shard of the reduced chunk */
    PxTensor *out = reduced_shard(r, cs, error);
    TRY(out);
    const ShardPart *parts;
    for (int k = 0, n = shard_parts(r, c, &parts); k < n; k++) {
      g_autoptr(PxTensor) to = px_tensor_view(out, "grad_shard", parts[k].at, 1, &parts[k].n, error);
      g_autoptr(PxTensor) from = to ? px_tensor_view(x.g, "grads", parts[k].lo, 1, &parts[k].n, error) : NULL;
      TRY(from && px_tensor_copy_async(to, from, r->coll_s, error));
    }
  }
  if (timed) {
    TRY(px_event_record(r->ev_end[i], r->coll_s, error));
    r->pre[i] = TRUE;
  }
  return TRUE;
}

/* The backward's per-layer hook, armed in the chunk's last backward: the
 * buckets whose first layer is done (the held tied one waits). */
static gboolean bucket_hook(int c, int layer, void *data, GError **error) {
  Rank *r = data;
  ChunkState *cs = &r->chunks[c];
  for (int b = 0; b < cs->n_buckets; b++) {
    if (cs->buckets[b].first != layer || b == cs->tied_bucket || cs->done[b]) continue;
    guint i = cs->bucket_instr[b];
    px_comm_set_label(r->labels[i]); /* a failure names the bucket's instruction */
    gboolean ok = bucket_issue(r, c, b, &r->bytes[i], TRUE, error);
    px_comm_set_label(r->labels[r->at]);
    TRY(ok);
  }
  return TRUE;
}

/* The buckets not queued yet (held, or a hook that never ran), untimed. */
static gboolean buckets_rest(Rank *r, int c, double *bytes, GError **error) {
  ChunkState *cs = &r->chunks[c];
  for (int b = 0; b < cs->n_buckets; b++)
    if (!cs->done[b]) TRY(bucket_issue(r, c, b, bytes, FALSE, error));
  return TRUE;
}

/* Arm the bucket hook for the backward of instruction ins (the caller
 * disarms it after) when it is the chunk's last backward, it finishes the
 * weight gradients (not a BACKWARD_INPUT) and the chunk is reduced in
 * buckets; whether it did. */
static gboolean with_hook(Rank *r, const PxInstr *ins, gboolean weights_final) {
  ChunkState *cs = &r->chunks[ins->chunk];
  gboolean arm = weights_final && cs->n_buckets > 0 && (int)r->at == cs->last_bwd;
  px_gpt_set_layer_hook(r->gpt, arm ? bucket_hook : NULL, arm ? r : NULL);
  return arm;
}

/* MoE with expert groups of their own (unsharded): the chunk's dense runs
 * of parameters all-reduced over DP, its expert runs over EDP (Megatron-Core's
 * expert data-parallel group), in flat-buffer order. */
static gboolean dp_reduce_split(Rank *r, int c, double *bytes, GError **error) {
  ChunkState *cs = &r->chunks[c];
  const PxGptChunk *ch = px_gpt_chunk(r->gpt, c);
  PxTensor *g = grads_to_reduce(r, c, error);
  TRY(g);
  TRY(after_compute(r, r->coll_s, error));
  gsize es = px_dtype_size(g->dtype);
  for (guint i = 0; i < ch->n_params;) {
    gboolean ex = ch->params[i].expert;
    guint j = i;
    while (j < ch->n_params && ch->params[j].expert == ex) j++;
    gint64 lo = ch->params[i].offset, n = ch->params[j - 1].offset + ch->params[j - 1].numel - lo;
    if (j == ch->n_params) n = cs->padded - lo;
    PxComm *comm = ex ? r->edp : r->dp;
    if (px_comm_size(comm) > 1) {
      TRY(px_comm_all_reduce(comm, (char *)g->data + lo * es, (gsize)n, g->dtype, PX_RED_SUM, r->coll_s, error));
      *bytes += (double)n * es;
    }
    i = j;
  }
  return TRUE;
}

/* ZeRO with expert groups of their own (split layout): the dense region
 * reduce-scattered over DP, the experts' over EDP, into the shard's parts. */
static gboolean dp_reduce_scatter_split(Rank *r, int c, double *bytes, GError **error) {
  ChunkState *cs = &r->chunks[c];
  PxTensor *g = grads_to_reduce(r, c, error);
  TRY(g);
  TRY(after_compute(r, r->coll_s, error));
  PxTensor *out = reduced_shard(r, cs, error);
  TRY(out);
  gsize es = px_dtype_size(g->dtype);
  const ShardPart *parts;
  for (int k = 0, n = shard_parts(r, c, &parts); k < n; k++) {
    const ShardPart *q = &parts[k];
    TRY(px_comm_reduce_scatter(q->comm, (char *)g->data + q->base * es, (char *)out->data + q->at * es, (gsize)q->n,
                               g->dtype, r->coll_s, error));
    *bytes += (double)(q->n * px_comm_size(q->comm)) * es;
  }
  return TRUE;
}

/* DP reduction of a chunk's gradients, on the collective stream: all-reduce,
 * or reduce-scatter into the shard. */
static gboolean dp_reduce(Rank *r, int c, double *bytes, GError **error) {
  ChunkState *cs = &r->chunks[c];
  if (cs->split) return dp_reduce_scatter_split(r, c, bytes, error);
  if (r->split_experts) return dp_reduce_split(r, c, bytes, error);
  /* a reduction over one rank; partitioned (parameter offload) a copy into the shard */
  if (px_plan_data_ranks(&r->rt->plan) == 1 && !r->sharded) return TRUE;
  PxTensor *g = grads_to_reduce(r, c, error);
  TRY(g);
  *bytes += (double)g->bytes;
  TRY(after_compute(r, r->coll_s, error));
  if (!r->sharded)
    return px_comm_all_reduce(r->dp, g->data, (gsize)cs->padded, g->dtype, PX_RED_SUM, r->coll_s, error);
  PxTensor *out = reduced_shard(r, cs, error);
  TRY(out);
  return px_comm_reduce_scatter(r->dp, g->data, out->data, (gsize)cs->shard, g->dtype, r->coll_s, error);
}

/* Mixed precision, in the optimizer once the reductions have arrived: the
 * reduced fp32 gradients rounded into the half ones (the shard with ZeRO >= 1). */
static gboolean grads_from_stage(Rank *r, int c, GError **error) {
  ChunkState *cs = &r->chunks[c];
  if (!cs->stage) return TRUE;
  gboolean ok = cs->stage_shard ? px_op_cast(r->be, cs->g_shard, cs->stage_shard, FALSE, error)
                                : px_op_cast(r->be, cs->g, cs->stage, FALSE, error);
  g_clear_pointer(&cs->stage, px_tensor_free);
  g_clear_pointer(&cs->stage_shard, px_tensor_free);
  return ok;
}

static gboolean op_reduce_grads(Rank *r, const PxInstr *ins, double *bytes, GError **error) {
  int c = ins->chunk;
  ChunkState *cs = &r->chunks[c];
  if (ins->bucket >= 0) { /* queued by the backward's hook, or held for REDUCE_TIED, or now */
    int b = ins->bucket;
    if (b >= cs->n_buckets) return rfail(error, PX_RUNTIME_ERROR_FAILED, "chunk %d has no bucket %d", c, b);
    return cs->done[b] || b == cs->tied_bucket ? TRUE : bucket_issue(r, c, b, bytes, FALSE, error);
  }
  if (cs->has_tied) {
    cs->pending = TRUE;
    return TRUE;
  }
  return dp_reduce(r, c, bytes, error);
}

/* The gathers the walk lists for GATHER_PARAMS (the step's first layer; none
 * when the pass before prefetched it). */
static gboolean op_gather(Rank *r, double *bytes, GError **error) {
  *bytes = 0;
  return !r->zwalk || zero3_issue(r, -1, TRUE, error);
}

static gboolean op_reduce_tied(Rank *r, double *bytes, GError **error) {
  for (int c = 0; c < r->rt->prog->vpp; c++) {
    ChunkState *cs = &r->chunks[c];
    if (!cs->has_tied) continue;
    const PxGptParam *p = &px_gpt_chunk(r->gpt, c)->params[cs->tied_param];
    PxTensor *g = grads_to_reduce(r, c, error);
    TRY(g);
    gsize es = px_dtype_size(g->dtype);
    TRY(after_compute(r, r->coll_s, error));
    TRY(px_comm_all_reduce(r->embed, (char *)g->data + param_offset(r, c, (guint)cs->tied_param) * es, (gsize)p->numel, g->dtype, PX_RED_SUM,
                           r->coll_s, error));
    *bytes += (double)(p->numel * es);
    if (cs->n_buckets) TRY(buckets_rest(r, c, bytes, error)); /* the held tied bucket */
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
  gboolean owners; /* unsharded: count only the replica owner's (owns_replica) */
  GPtrArray *views; /* the ranges owned, summed in one px_op_sum_squares_acc_multi */
} NormAcc;

static gboolean norm_segment(Rank *r, const PxGptParam *p, gint64 at, gint64 count, void *data, GError **error) {
  NormAcc *acc = data;
  if (p->tied_copy || (p->replicated && r->tp_rank != 0) || (acc->owners && !owns_replica(r, p))) return TRUE;
  PxTensor *v = px_tensor_view(acc->grad, "norm", at, 1, &count, error);
  TRY(v);
  g_ptr_array_add(acc->views, v);
  return TRUE;
}

/* Sequence parallelism: norm gradients summed over the TP group. */
typedef struct {
  PxTensor *grad;
} TpAcc;

static gboolean tp_segment(Rank *r, const PxGptParam *p, gint64 at, gint64 count, void *data, GError **error) {
  TpAcc *acc = data;
  if (!px_gpt_param_tp_partial(r->gpt, p)) return TRUE;
  gsize es = px_dtype_size(acc->grad->dtype);
  if (!px_dtype_is_half(acc->grad->dtype))
    return px_comm_all_reduce(r->tp, (char *)acc->grad->data + at * es, (gsize)count, acc->grad->dtype, PX_RED_SUM,
                              r->compute, error);
  /* half gradients: summed in fp32, as the DP reduction */
  g_autoptr(PxTensor) v = px_tensor_view(acc->grad, "sp_grad", at, 1, &count, error);
  g_autoptr(PxTensor) f = v ? tensor1(r->be, "sp_grad.f32", PX_DTYPE_F32, PX_MEM_BUFFERS, count, error) : NULL;
  return f && px_op_cast(r->be, f, v, FALSE, error) &&
         px_comm_all_reduce(r->tp, f->data, (gsize)count, PX_DTYPE_F32, PX_RED_SUM, r->compute, error) &&
         px_op_cast(r->be, v, f, FALSE, error);
}

typedef struct {
  PxTensor *w, *g, *m, *v;
  double wd;
  GArray *items;  /* PxAdamWItem: every parameter range of the rank, updated in one px_op_adamw_multi */
  GPtrArray *views; /* the items' tensors (views), freed after it */
} AdamAcc;

static gboolean adam_segment(Rank *r, const PxGptParam *p, gint64 at, gint64 count, void *data, GError **error) {
  (void)r;
  AdamAcc *acc = data;
  PxTensor *w = px_tensor_view(acc->w, "w", at, 1, &count, error);
  PxTensor *g = w ? px_tensor_view(acc->g, "g", at, 1, &count, error) : NULL;
  PxTensor *m = g ? px_tensor_view(acc->m, "m", at, 1, &count, error) : NULL;
  PxTensor *v = m ? px_tensor_view(acc->v, "v", at, 1, &count, error) : NULL;
  PxTensor *all[] = {w, g, m, v};
  for (gsize i = 0; i < G_N_ELEMENTS(all); i++)
    if (all[i]) g_ptr_array_add(acc->views, all[i]);
  TRY(v);
  PxAdamWItem it = {w, g, m, v, p->spec->ndim == 2 ? acc->wd : 0.0};
  g_array_append_val(acc->items, it);
  return TRUE;
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

/* Split layout: the AdamW items of chunk c's shard, part by part (views of
 * the shard's tensors and of the full weights under ZeRO < 3). */
static gboolean adam_split(Rank *r, int c, AdamAcc *acc, GError **error) {
  ChunkState *cs = &r->chunks[c];
  const ShardPart *parts;
  for (int k = 0, n = shard_parts(r, c, &parts); k < n; k++) {
    const ShardPart *q = &parts[k];
    AdamAcc a = *acc;
    TRY(a.g = part_view(acc->views, cs->g_host ? cs->g_host : cs->g_shard, q, error));
    TRY(a.m = part_view(acc->views, cs->m, q, error));
    TRY(a.v = part_view(acc->views, cs->v, q, error));
    if (cs->master) TRY(a.w = part_view(acc->views, cs->master, q, error));
    else if (cs->w_shard) TRY(a.w = part_view(acc->views, cs->w_shard, q, error));
    else {
      TRY(a.w = px_tensor_view(cs->w, "w_shard", q->lo, 1, &q->n, error));
      g_ptr_array_add(acc->views, a.w);
    }
    TRY(for_segments(r, c, q->lo, q->lo + q->n, adam_segment, &a, error));
  }
  return TRUE;
}

/* Split layout, after AdamW: the master rounded into the parameters, and
 * under ZeRO < 3 each part all-gathered over its group (DP, EDP). */
static gboolean adam_split_after(Rank *r, int c, double *bytes, GError **error) {
  ChunkState *cs = &r->chunks[c];
  gsize es = px_dtype_size(dtype_of(r));
  const ShardPart *parts;
  for (int k = 0, n = shard_parts(r, c, &parts); k < n; k++) {
    const ShardPart *q = &parts[k];
    g_autoptr(PxTensor) w = cs->w_shard ? px_tensor_view(cs->w_shard, "w_shard", q->at, 1, &q->n, error)
                                        : px_tensor_view(cs->w, "w_shard", q->lo, 1, &q->n, error);
    TRY(w);
    if (cs->master) {
      g_autoptr(PxTensor) mst = px_tensor_view(cs->master, "master", q->at, 1, &q->n, error);
      TRY(mst && cross_cast(r, w, mst, r->compute, error));
    }
    if (r->zero < 3) {
      TRY(px_comm_all_gather(q->comm, w->data, (char *)cs->w->data + q->base * es, (gsize)q->n, dtype_of(r), r->compute,
                             error));
      *bytes += (double)(q->n * px_comm_size(q->comm)) * es;
    }
  }
  return TRUE;
}

static gboolean op_optimizer(Rank *r, double *bytes, GError **error) {
  PxRuntime *rt = r->rt;
  int v = rt->prog->vpp;
  /* held reductions (a tied chunk on a plan without REDUCE_TIED cannot happen; be safe) */
  for (int c = 0; c < v; c++) {
    if (r->chunks[c].pending) {
      r->chunks[c].pending = FALSE;
      TRY(dp_reduce(r, c, bytes, error));
    }
    TRY(buckets_rest(r, c, bytes, error));
  }
  /* MoE with dp·cp 1 but edp > 1 (TP ranks holding the experts, each with its
   * own tokens): the program has no DP reduction (it has one over dp·cp > 1,
   * also with dp 1 under CP); the experts' happens here. So does the
   * reduce-scatter over one rank of a partitioned run with dp·cp 1
   * (parameter offload): the gradients copied into their partition */
  for (int c = 0; (r->split_experts || r->sharded) && px_plan_data_ranks(&rt->plan) == 1 && c < v; c++)
    TRY(dp_reduce(r, c, bytes, error));
  /* the reductions of the step have arrived */
  TRY(px_event_record(r->ev_coll, r->coll_s, error));
  TRY(px_stream_wait_event(r->compute, r->ev_coll, error));
  TRY(inputs_arrived(r, error));
  for (int c = 0; c < v; c++) TRY(grads_from_stage(r, c, error));
  /* sequence-parallel norm gradients, on the range this rank updates */
  g_autoptr(GPtrArray) part_views = g_ptr_array_new_with_free_func((GDestroyNotify)px_tensor_free);
  for (int c = 0; rt->plan.seq_parallel && rt->plan.tp > 1 && c < v; c++) {
    ChunkState *cs = &r->chunks[c];
    if (cs->split) {
      const ShardPart *parts;
      for (int k = 0, n = shard_parts(r, c, &parts); k < n; k++) {
        TpAcc acc = {part_view(part_views, cs->g_shard, &parts[k], error)};
        TRY(acc.grad && for_segments(r, c, parts[k].lo, parts[k].lo + parts[k].n, tp_segment, &acc, error));
      }
      continue;
    }
    gint64 lo = r->sharded ? (gint64)r->dp_rank * cs->shard : 0;
    TpAcc acc = {r->sharded ? cs->g_shard : cs->g};
    TRY(for_segments(r, c, lo, lo + (r->sharded ? cs->shard : cs->numel), tp_segment, &acc, error));
  }
  /* global norm: summed on the device, all-reduced there, read once */
  TRY(px_tensor_zero(r->sq_acc, error));
  g_autoptr(GPtrArray) owned = g_ptr_array_new_with_free_func((GDestroyNotify)px_tensor_free);
  for (int c = 0; c < v; c++) {
    ChunkState *cs = &r->chunks[c];
    NormAcc acc = {.views = owned};
    if (cs->split) { /* each part of the shard once: EDP shards of distinct EP ranks' experts */
      const ShardPart *parts;
      for (int k = 0, n = shard_parts(r, c, &parts); k < n; k++) {
        TRY(acc.grad = part_view(part_views, cs->g_shard, &parts[k], error));
        TRY(for_segments(r, c, parts[k].lo, parts[k].lo + parts[k].n, norm_segment, &acc, error));
      }
    } else if (r->sharded) {
      acc.grad = cs->g_shard;
      gint64 lo = (gint64)r->dp_rank * cs->shard;
      TRY(for_segments(r, c, lo, lo + cs->shard, norm_segment, &acc, error));
    } else {
      acc.grad = cs->g;
      acc.owners = TRUE;
      TRY(for_segments(r, c, 0, cs->numel, norm_segment, &acc, error));
    }
  }
  TRY(px_op_sum_squares_acc_multi(r->be, r->sq_acc, (const PxTensor *const *)owned->pdata, (int)owned->len, error));
  /* offload: the gradients the rank updates from, copied to host memory as
   * they are, queued on compute behind their last writer; the norm's read
   * below waits for them too, so they cost no host synchronisation of their own */
  for (int c = 0; r->host && c < v; c++) {
    ChunkState *cs = &r->chunks[c];
    TRY(px_tensor_download_async(r->sharded ? cs->g_shard : cs->g, cs->g_host->data, r->compute, error));
  }
  if (r->host) TRY(px_event_record(r->ev_host, r->compute, error));
  double sq;
  TRY(px_comm_all_reduce(r->world, r->sq_acc->data, 1, PX_DTYPE_F64, PX_RED_SUM, r->compute, error));
  TRY(px_tensor_download(r->sq_acc, &sq, error));
  double norm = sqrt(sq) / r->scale; /* fp16: the gradients hold the loss scale */
  int t = r->updates + 1;
  if (r == &rt->ranks[0]) {
    rt->norm_now = norm;
    rt->lr_now = lr_at(&rt->opt, t);
  }
  r->skipped = FALSE;
  if (!isfinite(norm) && rt->fp16 && r->scale > 1) {
    /* an overflow under loss scaling: skip the update, halve the scale (every rank alike) */
    r->skipped = TRUE;
    r->scale = MAX(1.0, r->scale / 2);
    r->good = 0;
    for (int c = 0; c < v; c++) TRY(px_tensor_zero(r->chunks[c].g, error));
    return TRUE;
  }
  if (!isfinite(norm))
    return rfail(error, PX_RUNTIME_ERROR_NONFINITE, "step %d: gradient norm %g%s: not finite, stopping before the update "
                 "(the last checkpoint stays valid; lower the learning rate?)", rt->step + 1, norm,
                 rt->fp16 ? " at loss scale 1" : "");
  double scale = (rt->opt.clip > 0 ? MIN(1.0, rt->opt.clip / (norm + 1e-6)) : 1.0) / r->scale;
  /* AdamW over every parameter range of every chunk in one px_op_adamw_multi
   * (one launch per dtype on a GPU), then per chunk the rounding into the
   * half parameters and the ZeRO gather */
  PxAdamW opt = {lr_at(&rt->opt, t), rt->opt.beta1, rt->opt.beta2, rt->opt.eps, 0, t, scale};
  /* offload: the gradients' downloads have landed in host memory (complete
   * once the norm's read has returned; the event says so, and carries a
   * failed copy's error) */
  if (r->host) TRY(px_event_synchronize(r->ev_host, error));
  g_autoptr(GArray) items = g_array_new(FALSE, FALSE, sizeof(PxAdamWItem));
  g_autoptr(GPtrArray) views = g_ptr_array_new_with_free_func((GDestroyNotify)px_tensor_free);
  g_autofree PxTensor **updated = g_new0(PxTensor *, v); /* each chunk's parameters (full or shard) */
  for (int c = 0; c < v; c++) {
    ChunkState *cs = &r->chunks[c];
    AdamAcc acc = {.m = cs->m, .v = cs->v, .wd = rt->opt.weight_decay, .items = items, .views = views};
    gint64 lo = 0, n = cs->numel;
    if (cs->split) {
      TRY(adam_split(r, c, &acc, error));
      continue;
    }
    if (r->sharded) {
      lo = (gint64)r->dp_rank * cs->shard;
      n = MAX(0, MIN(cs->shard, cs->numel - lo));
      acc.g = cs->g_host ? cs->g_host : cs->g_shard;
      if (r->zero >= 3) acc.w = cs->w_shard;
      else {
        TRY(acc.w = px_tensor_view(cs->w, "w_shard", lo, 1, &cs->shard, error));
        g_ptr_array_add(views, acc.w);
      }
    } else {
      acc.w = cs->w;
      acc.g = cs->g_host ? cs->g_host : cs->g;
    }
    updated[c] = acc.w;
    if (cs->master) acc.w = cs->master; /* mixed precision or offload: the fp32 master is updated */
    TRY(for_segments(r, c, lo, lo + n, adam_segment, &acc, error));
  }
  TRY(px_op_adamw_multi(r->host ? r->host : r->be, (const PxAdamWItem *)items->data, (int)items->len, &opt, NULL, NULL,
                        error));
  /* parameter offload: the step's gathers have read the host shard the
   * rounding below rewrites */
  if (param_offload(r)) TRY(px_stream_synchronize(r->coll_s, error));
  for (int c = 0; c < v; c++) {
    ChunkState *cs = &r->chunks[c];
    if (cs->split) {
      TRY(adam_split_after(r, c, bytes, error));
      TRY(px_tensor_zero(cs->g, error));
      continue;
    }
    if (cs->master) TRY(cross_cast(r, updated[c], cs->master, r->compute, error)); /* round to nearest even */
    if (r->sharded && r->zero < 3) {
      TRY(px_comm_all_gather(r->dp, updated[c]->data, cs->w->data, (gsize)cs->shard, dtype_of(r), r->compute, error));
      *bytes += (double)cs->w->bytes;
    }
    TRY(px_tensor_zero(cs->g, error));
  }
  r->updates++;
  if (rt->fp16 && ++r->good >= rt->opt.loss_scale_window) { /* grow after a window of good steps */
    r->scale *= 2;
    r->good = 0;
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

/* The rank's stream an instruction is queued on. */
static PxStream *queue_of(Rank *r, PxOpKind k) {
  switch (stream_of(k)) {
  case PX_STREAM_SEND:
  case PX_STREAM_RECV: return r->p2p_s;
  case PX_STREAM_COLLECTIVE: return r->coll_s;
  default: return r->compute;
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
  case PX_OP_REDUCE_GRADS: return op_reduce_grads(r, ins, bytes, error);
  case PX_OP_GATHER_PARAMS: return op_gather(r, bytes, error);
  case PX_OP_OPTIMIZER_STEP: return op_optimizer(r, bytes, error);
  case PX_OP_OVERLAP: return TRUE; /* the F&B pair that follows runs one after the other here */
  default: return rfail(error, PX_RUNTIME_ERROR_FAILED, "unknown instruction %d", ins->kind);
  }
}

/* Wait for every stream of the rank; the first error among them. The
 * compute stream too: the step's event times are read next, and an event
 * that has not completed has no time (backend.h px_event_time; on cuda
 * cudaEventElapsedTime answers cudaErrorNotReady), which the optimizer's
 * last kernels, queued behind the norm's read, would leave pending. */
static gboolean rank_drain(Rank *r, GError **error) {
  gboolean ok = px_stream_synchronize(r->p2p_s, error);
  ok = px_stream_synchronize(r->coll_s, ok ? error : NULL) && ok;
  ok = px_stream_synchronize(r->compute, ok ? error : NULL) && ok;
  return reap_sends(r, TRUE, ok ? error : NULL) && ok;
}

static gboolean step_job(Rank *r, gpointer data, GError **error) {
  (void)data;
  PxRuntime *rt = r->rt;
  const PxRankProgram *rp = &rt->prog->ranks[r->stage];
  px_timeline_free(r->tl);
  r->tl = px_timeline_new();
  g_autofree double *bytes = g_new0(double, rp->n);
  double t0 = px_backend_clock(r->be);
  PxMemStats ms;
  gboolean ok = px_tensor_zero(r->loss_acc, error);
  r->step_scale = r->scale;
  r->bytes = bytes;
  memset(r->pre, 0, sizeof(gboolean) * rp->n);
  zero3_begin(r);
  for (int c = 0; c < rt->prog->vpp; c++) { /* the buckets of a new step */
    ChunkState *cs = &r->chunks[c];
    cs->n_done = 0;
    for (int b = 0; b < cs->n_buckets; b++) cs->cast[b] = cs->done[b] = FALSE;
  }
  for (guint i = 0; ok && i < rp->n; i++) {
    const PxInstr *ins = &rp->instrs[i];
    PxStream *q = queue_of(r, ins->kind);
    gboolean fault = rt->step == 0 && r->rank == rt->opt.fault_rank && (int)i == rt->opt.fault_instr;
    if (fault) ok = rfail(error, PX_RUNTIME_ERROR_FAILED, "injected fault");
    if (ok) px_comm_set_label(r->labels[i]); /* what a failure of the communication it queues is called */
    r->at = i;
    if (r->pre[i]) /* a DP bucket the backward's hook queued and timed */
      ok = ok && run_instr(r, ins, &bytes[i], error);
    else
      ok = ok && px_event_record(r->ev_start[i], q, error) && run_instr(r, ins, &bytes[i], error) &&
           px_event_record(r->ev_end[i], q, error);
    if (ok) ok = px_comm_check_async(r->world, error);
    if (!ok) {
      g_prefix_error(error, "%s: ", r->labels[i]);
      break;
    }
    px_backend_mem_stats(r->be, &ms);
    px_timeline_add_memory(r->tl, r->rank, px_backend_clock(r->be) - t0, (double)ms.total_current);
  }
  px_comm_set_label(NULL);
  if (ok && r->p2p_pending->len) /* a group whose last member never came: the program is broken */
    ok = rfail(error, PX_RUNTIME_ERROR_FAILED, "rank %d (stage %d): %u sends and receives of group %d never issued",
               r->rank, r->stage, r->p2p_pending->len, g_array_index(r->p2p_pending, PendingP2p, 0).group);
  /* every queued send, receive and reduction of the step has completed */
  GError *drain_err = NULL;
  gboolean drained = rank_drain(r, ok ? error : &drain_err);
  g_clear_error(&drain_err);
  if (ok && !drained) {
    g_prefix_error(error, "rank %d (stage %d) at the end of the step: ", r->rank, r->stage);
    ok = FALSE;
  }
  if (ok)
    for (guint i = 0; i < rp->n; i++) {
      const PxInstr *ins = &rp->instrs[i];
      double a, b;
      TRY(px_event_time(r->ev_start[i], &a, error) && px_event_time(r->ev_end[i], &b, error));
      PxEvent ev = {r->rank, r->stage, stream_of(ins->kind), ins->kind, ins->mb, ins->chunk, a - t0, b - t0, bytes[i],
                    ins->bucket};
      px_timeline_add(r->tl, &ev);
    }
  /* the global loss: TP rank 0 of the stage holding the last part (rank 0 in
   * a V) holds one share per DP rank; summed over the world on the device,
   * then one read */
  int last_stage, last_chunk;
  px_schedule_part_place(rt->prog->schedule, rt->plan.pp, rt->part->parts - 1, &last_stage, &last_chunk);
  double loss = 0;
  if (ok && !(r->stage == last_stage && r->tp_rank == 0)) ok = px_tensor_zero(r->loss_acc, error);
  if (ok && !(px_comm_all_reduce(r->world, r->loss_acc->data, 1, PX_DTYPE_F64, PX_RED_SUM, r->compute, error) &&
              px_tensor_download(r->loss_acc, &loss, error))) {
    /* named as the program's instructions are (the rank's abort prints it) */
    g_prefix_error(error, "rank %d (stage %d) all-reduce of the loss: ", r->rank, r->stage);
    ok = FALSE;
  }
  rank_clear_step(r);
  TRY(ok);
  loss /= (double)rt->plan.m * px_plan_data_ranks(&rt->plan);
  if (r == &rt->ranks[0]) rt->loss_now = loss;
  /* never train on: the step is not counted (nor saved), the run stops */
  if (!isfinite(loss))
    return rfail(error, PX_RUNTIME_ERROR_NONFINITE, "step %d: loss %g: not finite, stopping "
                 "(the last checkpoint stays valid; lower the learning rate?)", rt->step + 1, loss);
  return TRUE;
}

gboolean px_runtime_step(PxRuntime *rt, PxStepResult *out, GError **error) {
  rt->t0 = g_get_monotonic_time();
  GError *err = NULL;
  if (!run_ranks(rt, step_job, NULL, &err)) {
    /* a step fails as the runtime's (the sentence names the rank and its instruction) */
    if (err->domain != PX_RUNTIME_ERROR) err->domain = PX_RUNTIME_ERROR, err->code = PX_RUNTIME_ERROR_FAILED;
    g_propagate_error(error, err);
    return FALSE;
  }
  double wall = (g_get_monotonic_time() - rt->t0) / 1e6;
  rt->step++;
  px_timeline_free(rt->timeline);
  rt->timeline = px_timeline_new();
  for (int i = 0; i < rt->n_local; i++) {
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
    out->loss = rt->loss_now;
    out->grad_norm = rt->norm_now;
    out->lr = rt->lr_now;
    out->time_s = wall;
    out->skipped = rt->ranks[0].skipped;
    out->loss_scale = rt->ranks[0].step_scale;
  }
  return TRUE;
}

static Rank *local_rank(PxRuntime *rt, int rank) {
  for (int i = 0; i < rt->n_local; i++)
    if (rt->ranks[i].rank == rank) return &rt->ranks[i];
  return NULL;
}

static void rank_memory(Rank *r, PxRankMemory *out) {
  PxRuntime *rt = r->rt;
  memset(out, 0, sizeof *out);
  out->rank = r->rank;
  out->stage = r->stage;
  out->dp = r->dp_rank;
  out->tp = r->tp_rank;
  px_backend_mem_stats(r->be, &out->measured);
  if (r->host) px_backend_mem_stats(r->host, &out->host);
  out->host_pinned = r->host && px_backend_host_pinned(r->host);
  out->predicted = rt->mem->stages[r->stage];
  double k = rt->opt.dtype == PX_DTYPE_F64 ? 2.0 : 1.0; /* the prediction is for fp32 */
  PxStageMemory *p = &out->predicted;
  if (rt->mem_states) { /* mixed precision: 2 + 2 + 12 B per parameter */
    const PxStageMemory *ms = &rt->mem_states->stages[r->stage];
    p->weights = ms->weights;
    p->gradients = ms->gradients;
    p->optimizer = ms->optimizer;
    p->host = ms->host;
  }
  p->weights *= k;
  p->host *= k;
  p->gradients *= k;
  p->optimizer *= k;
  /* activations, and the buffers that hold activations, are predicted in the
   * run's dtype already (px_memory_new_act) */
  p->buffers = (p->buffers - p->act_buffers) * k + p->act_buffers;
  p->total = p->weights + p->gradients + p->optimizer + p->activations + p->buffers + p->workspace;
}

gboolean px_runtime_zero3_gathers(PxRuntime *rt, int rank, PxZero3Gathers *out) {
  Rank *r = local_rank(rt, rank);
  if (!r) return FALSE;
  *out = r->zstats;
  return TRUE;
}

const PxZero3Gather *px_runtime_zero3_log(PxRuntime *rt, int rank, guint *n) {
  Rank *r = local_rank(rt, rank);
  *n = r && r->zlog ? r->zlog->len : 0;
  return r && r->zlog ? (const PxZero3Gather *)(void *)r->zlog->data : NULL;
}

gboolean px_runtime_memory(PxRuntime *rt, int rank, PxRankMemory *out) {
  Rank *r = local_rank(rt, rank);
  if (!r) return FALSE;
  rank_memory(r, out);
  return TRUE;
}

gboolean px_runtime_dp_traffic(PxRuntime *rt, int rank, PxCommTraffic *out) {
  Rank *r = local_rank(rt, rank);
  if (!r || !r->dp) return FALSE;
  px_comm_traffic(r->dp, out);
  return TRUE;
}

gboolean px_runtime_edp_traffic(PxRuntime *rt, int rank, PxCommTraffic *out) {
  Rank *r = local_rank(rt, rank);
  if (!r || !r->edp) return FALSE;
  px_comm_traffic(r->edp, out);
  return TRUE;
}

/* ---- gathering across processes ------------------------------------------------------------- */

/* Every rank's PxRankMemory (all: world entries), collective over the world. */
typedef struct {
  PxRankMemory *all;
} MemGather;

static gboolean memory_job(Rank *r, gpointer data, GError **error) {
  MemGather *g = data;
  PxRankMemory mine;
  rank_memory(r, &mine);
  if (r->rt->n_local > 1) { /* local mode: the ranks write their own entries */
    g->all[r->rank] = mine;
    return TRUE;
  }
  G_STATIC_ASSERT(sizeof(PxRankMemory) % 4 == 0);
  return px_comm_all_gather(r->world, &mine, g->all, sizeof mine / 4, PX_DTYPE_I32, NULL, error);
}

gboolean px_runtime_gather_memory(PxRuntime *rt, PxRankMemory *all, GError **error) {
  MemGather g = {all};
  return run_ranks(rt, memory_job, &g, error);
}

/* The last step's timeline of every rank, collective over the world (for a
 * process holding one rank; local mode already holds them all). */
#define EV_FIELDS 10
static gboolean timeline_job(Rank *r, gpointer data, GError **error) {
  PxTimeline *out = data;
  PxTimeline *tl = r->tl;
  int n = px_comm_size(r->world);
  gint32 counts[2] = {tl ? (gint32)tl->events->len : 0, tl ? (gint32)tl->memory->len : 0};
  g_autofree gint32 *all = g_new(gint32, 2 * (gsize)n);
  TRY(px_comm_all_gather(r->world, counts, all, 2, PX_DTYPE_I32, NULL, error));
  gint32 max_e = 0, max_m = 0;
  for (int i = 0; i < n; i++) max_e = MAX(max_e, all[2 * i]), max_m = MAX(max_m, all[2 * i + 1]);
  gsize per = (gsize)max_e * EV_FIELDS + (gsize)max_m * 3;
  g_autofree double *mine = g_new0(double, MAX(per, 1));
  g_autofree double *every = g_new0(double, MAX(per, 1) * n);
  for (gint32 k = 0; k < counts[0]; k++) {
    PxEvent *e = &g_array_index(tl->events, PxEvent, k);
    double *d = mine + (gsize)k * EV_FIELDS;
    d[0] = e->rank, d[1] = e->stage, d[2] = e->stream, d[3] = e->kind, d[4] = e->mb, d[5] = e->chunk;
    d[6] = e->start, d[7] = e->end, d[8] = e->bytes, d[9] = e->bucket;
  }
  for (gint32 k = 0; k < counts[1]; k++) {
    PxMemSample *s = &g_array_index(tl->memory, PxMemSample, k);
    double *d = mine + (gsize)max_e * EV_FIELDS + (gsize)k * 3;
    d[0] = s->rank, d[1] = s->t, d[2] = s->bytes;
  }
  TRY(px_comm_all_gather(r->world, mine, every, MAX(per, 1), PX_DTYPE_F64, NULL, error));
  for (int i = 0; i < n; i++) {
    const double *base = every + (gsize)i * MAX(per, 1);
    for (gint32 k = 0; k < all[2 * i]; k++) {
      const double *d = base + (gsize)k * EV_FIELDS;
      PxEvent e = {(int)d[0], (int)d[1], (PxStreamKind)d[2], (PxOpKind)d[3], (int)d[4], (int)d[5], d[6], d[7], d[8],
                   (int)d[9]};
      px_timeline_add(out, &e);
    }
    for (gint32 k = 0; k < all[2 * i + 1]; k++) {
      const double *d = base + (gsize)max_e * EV_FIELDS + (gsize)k * 3;
      px_timeline_add_memory(out, (int)d[0], d[1], d[2]);
    }
  }
  return TRUE;
}

gboolean px_runtime_gather_timeline(PxRuntime *rt, GError **error) {
  if (rt->n_local == rt->n || !rt->timeline) return TRUE;
  g_autoptr(PxTimeline) all = px_timeline_new();
  TRY(run_ranks(rt, timeline_job, all, error));
  px_timeline_sort(all);
  px_timeline_free(rt->timeline);
  rt->timeline = g_steal_pointer(&all);
  return TRUE;
}

/* ---- parameters by name ----------------------------------------------------------------------- */

static const PxTensorSpec *find_spec(const PxModel *m, const char *name) {
  for (guint i = 0; i < m->n_layers; i++)
    for (guint k = 0; k < m->layers[i].n_tensors; k++)
      if (!strcmp(m->layers[i].tensors[k].name, name)) return &m->layers[i].tensors[k];
  return NULL;
}

/* Chunk c's shard tensor t gathered into the host's full flat buffer, part by
 * part over its group (collective over DP, and EDP when split). */
static gboolean gather_host(Rank *r, int c, PxTensor *t, double *flat, GError **error) {
  g_autofree double *mine = g_new(double, r->chunks[c].shard);
  TRY(px_tensor_download_f64(t, mine, error));
  const ShardPart *parts;
  for (int k = 0, n = shard_parts(r, c, &parts); k < n; k++)
    TRY(px_comm_all_gather(parts[k].comm, mine + parts[k].at, flat + parts[k].base, (gsize)parts[k].n, PX_DTYPE_F64,
                           NULL, error));
  return TRUE;
}

typedef struct {
  const char *name;
  gint64 numel;
  double **full; /* (world) each rank's result */
  gboolean master; /* the fp32 master copy instead of the (half) weights */
} ParamJob;

/* Collective over the world: every TP rank of DP rank 0 holding the tensor
 * scatters its shard into a zero full tensor (ZeRO-3: the chunk's shards
 * gathered over DP first), and a sum over the world joins them. */
static gboolean param_job(Rank *r, gpointer data, GError **error) {
  ParamJob *j = data;
  g_autofree double *full = g_new0(double, j->numel + 1);
  int c, pi;
  gboolean holds = px_gpt_find_param(r->gpt, j->name, FALSE, &c, &pi);
  /* ZeRO-3: every chunk's weights gathered over DP (collective over the DP group, so every rank joins) */
  g_autofree double **flat = g_new0(double *, r->rt->prog->vpp);
  for (int k = 0; k < r->rt->prog->vpp; k++) {
    ChunkState *cs = &r->chunks[k];
    flat[k] = g_new0(double, cs->padded);
    if (j->master && cs->master && !r->sharded) {
      TRY(px_tensor_download_f64(cs->master, flat[k], error));
    } else if (j->master && cs->master) {
      TRY(gather_host(r, k, cs->master, flat[k], error));
    } else if (cs->w && r->zero < 3) {
      TRY(px_tensor_download_f64(cs->w, flat[k], error));
    } else {
      TRY(gather_host(r, k, cs->w_shard, flat[k], error));
    }
  }
  if (holds && owns_replica(r, &px_gpt_chunk(r->gpt, c)->params[pi])) {
    const PxGptParam *p = &px_gpt_chunk(r->gpt, c)->params[pi];
    /* scatter the shard back: the inverse of px_gpt_param_shard, via index maps */
    g_autofree double *idx = g_new(double, j->numel);
    g_autofree double *map = g_new(double, p->numel);
    for (gint64 e = 0; e < j->numel; e++) idx[e] = (double)(e + 1); /* 0: vocabulary padding */
    px_gpt_param_shard(r->gpt, p, idx, map);
    for (gint64 e = 0; e < p->numel; e++)
      if (map[e] > 0) full[(gint64)map[e] - 1] = flat[c][param_offset(r, c, (guint)pi) + e];
  }
  /* replicated tensors are held by every TP rank: count TP rank 0's only */
  const PxGptParam *p = holds ? &px_gpt_chunk(r->gpt, c)->params[pi] : NULL;
  if (p && p->replicated && r->tp_rank != 0) memset(full, 0, sizeof(double) * j->numel);
  full[j->numel] = holds && owns_replica(r, p) ? 1 : 0; /* who holds it */
  for (int k = 0; k < r->rt->prog->vpp; k++) g_free(flat[k]);
  TRY(px_comm_all_reduce(r->world, full, (gsize)j->numel + 1, PX_DTYPE_F64, PX_RED_SUM, NULL, error));
  if (full[j->numel] < 1)
    return rfail(error, PX_RUNTIME_ERROR_INVALID, "parameter '%s' is held by no rank", j->name);
  j->full[r->rank] = g_steal_pointer(&full);
  return TRUE;
}

static double *get_param(PxRuntime *rt, const char *name, gboolean master, GError **error) {
  const PxTensorSpec *spec = find_spec(rt->model, name);
  if (!spec) {
    rfail(error, PX_RUNTIME_ERROR_INVALID, "no parameter named '%s' in model %s", name, rt->model->desc.name);
    return NULL;
  }
  g_autofree double **full = g_new0(double *, rt->n);
  ParamJob j = {name, spec->shape[0] * (spec->ndim > 1 ? spec->shape[1] : 1), full, master};
  gboolean ok = run_ranks(rt, param_job, &j, error);
  double *mine = ok ? g_steal_pointer(&full[rt->ranks[0].rank]) : NULL;
  for (int i = 0; i < rt->n; i++) g_free(full[i]);
  return mine;
}

double *px_runtime_get_param(PxRuntime *rt, const char *name, GError **error) {
  return get_param(rt, name, FALSE, error);
}

double *px_runtime_get_master(PxRuntime *rt, const char *name, GError **error) {
  return get_param(rt, name, TRUE, error);
}

double px_runtime_loss_scale(const PxRuntime *rt) { return rt->ranks[0].scale; }

/* ---- checkpoints ----------------------------------------------------------------------------
 * (exec/checkpoint.h) Each rank writes its own shard file by global tensor
 * name (rank_save); rank 0 then writes the manifest listing every file
 * (ckpt_manifest), and the directory is committed. A resume reads the
 * manifest, verifies and indexes every shard file once (PxCkptReader), and
 * each rank takes the elements it holds by global name and index (rank_load),
 * whatever the layout that saved them. rank_save and rank_load touch one Rank
 * only; the loops over ranks are the single-process stand-ins for "every
 * process does its own, then a barrier". */

/* The states a rank saves: the weights (the fp32 master under mixed
 * precision) and the moments; a resume also fills the half parameters from
 * the saved master (rounded), so that they equal round(master) as after a step. */
static const char *const ckpt_states[4] = {"weight", "adam.m", "adam.v", "weight"};
/* fp16: the loss scaler [scale, good steps, updates], written by rank 0 */
#define CKPT_SCALER "loss_scaler"
#define CKPT_SCALER_STATE "scaler"

/* Global flat index + 1 of each local element of p (0: vocabulary padding):
 * px_gpt_param_shard applied to an index tensor, as px_runtime_get_param does. */
static double *param_global_map(Rank *r, const PxGptParam *p) {
  gint64 n = p->spec->shape[0] * p->spec->shape[1];
  g_autofree double *idx = g_new(double, n);
  for (gint64 e = 0; e < n; e++) idx[e] = (double)(e + 1);
  double *map = g_new(double, p->numel);
  px_gpt_param_shard(r->gpt, p, idx, map);
  return map;
}

/* Chunk c's state tensors (weights, m, v; under mixed precision the master,
 * m, v, then the half weights) as this rank holds them, and the flat element
 * each one starts at: ZeRO-3 weights, sharded moments and masters hold
 * [dp_rank * shard, +shard) (split: q, a part of it), the others the whole
 * (padded) buffer; q NULL when unsharded. Returns
 * how many (3 or 4); the first 3 are saved. */
static int chunk_states(Rank *r, int c, const ShardPart *q, PxTensor *ts[4], gint64 base[4]) {
  ChunkState *cs = &r->chunks[c];
  gint64 lo = q ? q->lo - q->at : 0; /* the flat element a shard tensor's first would be, for the part q */
  ts[0] = r->zero >= 3 ? cs->w_shard : cs->w;
  ts[1] = cs->m;
  ts[2] = cs->v;
  base[0] = r->zero >= 3 ? lo : 0;
  base[1] = base[2] = lo;
  if (!cs->master) return 3;
  ts[3] = ts[0];
  base[3] = base[0];
  ts[0] = cs->master;
  base[0] = lo;
  return 4;
}

/* save_chunk's part q of the shard (NULL: the whole chunk, unsharded). */
static gboolean save_part(Rank *r, int c, const ShardPart *q, PxCkptShard *sh, GError **error) {
  {
    ChunkState *cs = &r->chunks[c];
    const PxGptChunk *ch = px_gpt_chunk(r->gpt, c);
    gint64 lo = q ? q->lo : 0;
    gint64 hi = q ? (cs->split ? lo + q->n : MIN(lo + cs->shard, cs->numel))
                  : (r->dp_rank == 0 || r->split_experts ? cs->numel : 0);
    if (lo >= hi) return TRUE;
    PxTensor *ts[4];
    gint64 base[4];
    chunk_states(r, c, q, ts, base);
    double *host[3] = {NULL, NULL, NULL};
    gboolean ok = TRUE;
    for (int s = 0; s < 3; s++) {
      host[s] = g_new(double, ts[s]->numel);
      ok = ok && px_tensor_download_f64(ts[s], host[s], error);
    }
    for (guint i = 0; ok && i < ch->n_params; i++) {
      const PxGptParam *p = &ch->params[i];
      gint64 o = param_offset(r, c, i), a = MAX(lo, o), b = MIN(hi, o + p->numel);
      if (p->tied_copy || (p->replicated && r->tp_rank != 0) || a >= b) continue;
      if (!r->sharded && !owns_replica(r, p)) continue;
      g_autofree double *map = param_global_map(r, p);
      g_autofree gint64 *gidx = g_new(gint64, b - a);
      g_autofree double *vals = g_new(double, 3 * (b - a));
      gint64 k = 0;
      for (gint64 e = a; e < b; e++) {
        gint64 g = (gint64)map[e - o] - 1;
        if (g < 0) continue; /* vocabulary padding */
        gidx[k] = g;
        for (int s = 0; s < 3; s++) vals[s * (b - a) + k] = host[s][e - base[s]];
        k++;
      }
      for (int s = 0; s < 3; s++)
        px_ckpt_shard_add(sh, ckpt_states[s], p->spec->name, p->spec->ndim, p->spec->shape, gidx, vals + s * (b - a), k);
    }
    for (int s = 0; s < 3; s++) g_free(host[s]);
    return ok;
  }
}

/* rank_save's part for chunk c: each part of its shard (the whole chunk unsharded). */
static gboolean save_chunk(Rank *r, int c, PxCkptShard *sh, GError **error) {
  if (!r->sharded) return save_part(r, c, NULL, sh, error);
  const ShardPart *parts;
  for (int q = 0, np = shard_parts(r, c, &parts); q < np; q++) TRY(save_part(r, c, &parts[q], sh, error));
  return TRUE;
}

/* Write this rank's shard file into tmpdir. Every element is written once over
 * the world: a rank writes the flat range it updates in the optimizer (its
 * ZeRO shard, or the whole chunk on DP rank 0 when unsharded), without the tied
 * LM head copy (saved as wte by the embedding's rank) and TP-replicated tensors
 * on TP rank 0 only, the rule of the gradient norm (norm_segment). */
static gboolean rank_save(Rank *r, const char *tmpdir, PxCkptFile *out, GError **error) {
  PxRuntime *rt = r->rt;
  g_autoptr(PxCkptShard) sh = px_ckpt_shard_new(r->rank, rt->step, rt->mixed ? PX_DTYPE_F32 : rt->pdt);
  if (rt->fp16 && r->rank == 0) {
    gint64 three = 3, gidx[3] = {0, 1, 2};
    double vals[3] = {r->scale, r->good, r->updates};
    px_ckpt_shard_add(sh, CKPT_SCALER_STATE, CKPT_SCALER, 1, &three, gidx, vals, 3);
  }
  for (int c = 0; c < rt->prog->vpp; c++) {
    TRY(save_chunk(r, c, sh, error));
  }
  return px_ckpt_shard_write(sh, tmpdir, out, error);
}

/* Fill this rank's weights and moments from the checkpoint: for each element
 * it holds, the value at its global index (vocabulary padding stays zero). */
static gboolean rank_load(Rank *r, PxCkptReader *rd, GError **error) {
  for (int c = 0; c < r->rt->prog->vpp; c++) {
    ChunkState *cs = &r->chunks[c];
    const PxGptChunk *ch = px_gpt_chunk(r->gpt, c);
    PxTensor *ts[4];
    gint64 base[4];
    const ShardPart *parts = NULL;
    int np = r->sharded ? shard_parts(r, c, &parts) : 0;
    int ns = chunk_states(r, c, r->sharded ? &parts[0] : NULL, ts, base);
    double *host[4] = {NULL, NULL, NULL, NULL};
    for (int s = 0; s < ns; s++) host[s] = g_new0(double, ts[s]->numel);
    gboolean ok = TRUE;
    for (guint i = 0; ok && i < ch->n_params; i++) {
      const PxGptParam *p = &ch->params[i];
      gint64 o = param_offset(r, c, i);
      const ShardPart *q = NULL; /* split: the part whose region holds p */
      for (int k = 0; cs->split && k < np; k++)
        if (o >= parts[k].base && o < parts[k].base + parts[k].n * px_comm_size(parts[k].comm)) q = &parts[k];
      if (cs->split) chunk_states(r, c, q, ts, base);
      g_autofree double *map = param_global_map(r, p);
      for (int s = 0; ok && s < ns; s++) {
        gint64 rlo = base[s], rhi = MIN(base[s] + ts[s]->numel, cs->numel);
        if (cs->split) { /* the full weights, or the shard tensor's part q */
          rlo = ts[s] == cs->w ? 0 : q->lo;
          rhi = ts[s] == cs->w ? cs->padded : q->lo + q->n;
        }
        gint64 a = MAX(rlo, o), b = MIN(rhi, o + p->numel);
        if (a >= b) continue;
        g_autofree gint64 *gidx = g_new(gint64, b - a);
        g_autofree gint64 *at = g_new(gint64, b - a);
        g_autofree double *vals = g_new(double, b - a);
        gint64 k = 0;
        for (gint64 e = a; e < b; e++) {
          gint64 g = (gint64)map[e - o] - 1;
          if (g < 0) continue;
          gidx[k] = g;
          at[k++] = e - base[s];
        }
        ok = px_ckpt_reader_get(rd, ckpt_states[s], p->spec->name, p->spec->ndim, p->spec->shape, gidx, k, vals, error);
        for (gint64 j = 0; ok && j < k; j++) host[s][at[j]] = vals[j];
      }
    }
    for (int s = 0; s < ns; s++) {
      ok = ok && px_tensor_upload_f64(ts[s], host[s], error);
      g_free(host[s]);
    }
    TRY(ok);
  }
  if (r->rt->fp16) { /* the loss scaler */
    gint64 three = 3, gidx[3] = {0, 1, 2};
    double vals[3];
    TRY(px_ckpt_reader_get(rd, CKPT_SCALER_STATE, CKPT_SCALER, 1, &three, gidx, 3, vals, error));
    r->scale = vals[0];
    r->good = (int)vals[1];
    r->updates = (int)vals[2];
  }
  return TRUE;
}

/* Rank 0's part, once every rank file exists: the manifest listing them. */
static gboolean ckpt_manifest(PxRuntime *rt, const char *tmpdir, const PxCkptFile *files, int n, GError **error) {
  return px_ckpt_manifest_write(tmpdir, rt->step, rt->fingerprint, &rt->plan, files, n, error);
}

/* Did every rank of the world succeed? (collective; a failure on one is a failure on all) */
static gboolean all_ok(Rank *r, gboolean ok, const char *what, GError **error) {
  gint32 bad = ok ? 0 : 1;
  GError *err = NULL;
  if (!px_comm_all_reduce(r->world, &bad, 1, PX_DTYPE_I32, PX_RED_SUM, NULL, &err)) {
    if (ok) g_propagate_error(error, err);
    else g_clear_error(&err);
    return FALSE;
  }
  /* a consequence of another rank's failure: reported as such, so that rank's own error is the one shown */
  if (ok && bad) return px_fail(error, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED, "%s failed on %d other rank(s)", what, bad);
  return ok;
}

/* A PxCkptFile as it travels to rank 0: (rank, bytes, sha256 hex). */
#define FILE_WORDS (3 + (65 + 3) / 4) /* rank, bytes (2 words), sha256 */
typedef struct {
  const char *dir;
  PxCkptFile *files; /* (world) on rank 0 */
} Save;

/* Rank 0 makes the temporary directory, every rank writes its shard file into
 * it, rank 0 gathers their sizes and checksums, writes the manifest and
 * renames the directory into place. */
static gboolean save_job(Rank *r, gpointer data, GError **error) {
  Save *sv = data;
  PxRuntime *rt = r->rt;
  g_autofree char *tmp = NULL;
  gboolean ok = TRUE;
  if (r->rank == 0) ok = (tmp = px_checkpoint_begin(sv->dir, rt->step, error)) != NULL;
  TRY(all_ok(r, ok, "making the checkpoint directory", error));
  if (!tmp) {
    g_autofree char *name = g_strdup_printf(".tmp-step-%08d", rt->step);
    tmp = g_build_filename(sv->dir, name, NULL);
  }
  PxCkptFile mine = {0};
  ok = rank_save(r, tmp, &mine, error);
  gint32 packed[FILE_WORDS] = {0};
  packed[0] = r->rank;
  memcpy(&packed[1], &mine.bytes, sizeof mine.bytes);
  memcpy(&packed[3], mine.sha256, sizeof mine.sha256);
  px_ckpt_file_clear(&mine);
  TRY(all_ok(r, ok, "writing a rank's checkpoint", error));
  int n = rt->n;
  g_autofree gint32 *all = g_new0(gint32, (gsize)FILE_WORDS * n);
  TRY(px_comm_all_gather(r->world, packed, all, FILE_WORDS, PX_DTYPE_I32, NULL, error));
  if (r->rank == 0) {
    g_autofree PxCkptFile *files = g_new0(PxCkptFile, n);
    for (int i = 0; i < n; i++) {
      gint32 *p = all + (gsize)FILE_WORDS * i;
      files[i].rank = p[0];
      files[i].file = g_strdup_printf("rank-%05d.ckpt", p[0]);
      memcpy(&files[i].bytes, &p[1], sizeof files[i].bytes);
      memcpy(files[i].sha256, &p[3], sizeof files[i].sha256);
    }
    ok = ckpt_manifest(rt, tmp, files, n, error) && px_checkpoint_commit(sv->dir, tmp, rt->step, error);
    for (int i = 0; i < n; i++) px_ckpt_file_clear(&files[i]);
  }
  return all_ok(r, ok, "committing the checkpoint", error);
}

gboolean px_runtime_save(PxRuntime *rt, const char *dir, GError **error) {
  Save sv = {dir, NULL};
  return run_ranks(rt, save_job, &sv, error);
}

typedef struct {
  const char *dir;
  int step;
} Resume;

static gboolean resume_job(Rank *r, gpointer data, GError **error) {
  Resume *res = data;
  PxRuntime *rt = r->rt;
  int step = 0;
  g_autofree char *stepdir = px_checkpoint_latest(res->dir, &step, error);
  g_autoptr(PxCkptManifest) man = stepdir ? px_ckpt_manifest_read(stepdir, rt->fingerprint, error) : NULL;
  gboolean ok = man != NULL;
  if (ok && man->step != step)
    ok = rfail(error, PX_RUNTIME_ERROR_CHECKPOINT, "checkpoint %s/%s holds step %d, 'latest' says %d", stepdir,
               PX_CKPT_MANIFEST, man->step, step);
  g_autoptr(PxCkptReader) rd = ok ? px_ckpt_reader_open(stepdir, man, error) : NULL;
  ok = rd && rank_load(r, rd, error);
  TRY(all_ok(r, ok, "resuming", error));
  if (!rt->fp16) r->updates = step; /* every step made its update */
  if (r == &rt->ranks[0]) res->step = step;
  return TRUE;
}

gboolean px_runtime_resume(PxRuntime *rt, const char *dir, GError **error) {
  Resume res = {dir, 0};
  TRY(run_ranks(rt, resume_job, &res, error));
  rt->step = res.step;
  return TRUE;
}
