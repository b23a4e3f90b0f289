/* engine.c — the event engine.
 *
 * Ranks only interact through messages and collectives, and each rank issues
 * its instructions in program order, so the simulation advances each rank
 * until it blocks (a receive whose send has not been simulated yet, a
 * collective that some member has not reached) and resumes it when the event
 * it waits for is produced. Times follow from the events: an op starts when
 * its stream is free and its inputs have arrived. When no rank can move and
 * some have not finished, the program deadlocks. */
#include "engine.h"
#include <math.h>
#include <string.h>

G_DEFINE_QUARK(px-engine-error-quark, px_engine_error)

const char *px_comm_kind_name(PxCommKind k) {
  static const char *names[PX_N_COMM] = {"p2p", "dp", "tied", "gather"};
  return (unsigned)k < PX_N_COMM ? names[k] : "?";
}

typedef struct {
  double start, end;  /* end < 0: not sent yet */
  int waiter;         /* simulated rank blocked on it, -1 */
  double posted;      /* when its receive was posted, -1: not yet (rendezvous sends wait for it) */
  int send_waiter;    /* the sending rank blocked until then, -1 */
} Message;

typedef struct Coll {
  PxOpKind kind;
  int chunk, bucket;
  int need, arrived;
  int *members;       /* (need) simulated ranks */
  double ready, cost, bytes;
  gboolean resolved;
  gboolean holds_sms; /* an overlapped DP reduction: it holds SMs beside the compute stream (SmHold) */
  double start, end;
} Coll;

/* An overlapped DP reduction on the collective stream from start to end: NCCL's
 * CTAs hold the cost table's coll_sm_share of the SMs meanwhile, and the
 * compute stream's GEMMs run in coll_gemm_waves (px_cost_overlap_share). */
typedef struct {
  double start, end;
} SmHold;

typedef enum { WAIT_NONE, WAIT_MESSAGE, WAIT_SEND, WAIT_PREV_COLL, WAIT_COLL } WaitKind;

typedef struct {
  int rank, stage, replica, dp, tp;
  const PxRankProgram *prog;
  guint pc;
  gboolean done, queued;
  WaitKind wait;
  double t;           /* compute stream free */
  double send_free, coll_free;
  double coll_run;    /* the start of the collective stream's busy run that ends at coll_free */
  Coll *cur;          /* collective registered by the current instruction */
  Coll *pending;      /* last asynchronous collective */
  int coll_seq[PX_OP_N_KINDS];
  GArray *deferred;   /* REDUCE_GRADS instructions (indices) held for the optimizer step (no overlap) */
  guint flushed;
  Message *msgs;      /* (2 * m * vpp) messages this rank sends: [type][mb][chunk] */
  int *last_bwd;      /* (vpp) index of each chunk's last backward, -1 */
  double *last_bwd_dur; /* (vpp) the duration of that backward once run */
  gboolean params_gathered; /* the step's first forward of part 0 has waited for param_gather */
  GArray *holds;      /* (SmHold) the overlapped DP reductions resolved so far, in time order */
  /* accounting */
  double busy, exposed[PX_N_COMM], op_time[PX_OP_N_KINDS];
  double act, gathered, mem, peak_mem;
  int in_flight, peak_in_flight;
  double start;       /* its first compute op starts (-1: none yet) */
  int paired;         /* compute ops left in the current overlapped F&B pair */
  double pair_start;
} Rank;

typedef struct {
  const PxProgram *prog;
  const PxCostTable *tab;
  const PxSimOptions *opt;
  int n, pp, vpp, m, world;
  Rank *ranks;
  int *sim_of;        /* [replica * pp + stage] -> simulated rank */
  int *queue, qhead, qlen;
  GHashTable *colls;  /* unresolved collectives by key */
  GPtrArray *all_colls;
  PxTimeline *tl;
  guint64 n_instr;
  GError *error;      /* first invalid instruction */
} Sim;

static void enqueue(Sim *sim, int i) {
  Rank *r = &sim->ranks[i];
  if (r->queued || r->done) return;
  r->queued = TRUE;
  sim->queue[(sim->qhead + sim->qlen++) % sim->n] = i;
}

static void record(Sim *sim, const Rank *r, PxStreamKind stream, PxOpKind kind, int mb, int chunk,
                   double start, double end, double bytes, int bucket) {
  if (!sim->tl) return;
  PxEvent ev = {r->rank, r->stage, stream, kind, mb, chunk, start, end, bytes, bucket};
  px_timeline_add(sim->tl, &ev);
}

static void set_memory(Sim *sim, Rank *r, double t) {
  const double *stat = sim->opt->static_bytes;
  r->mem = (stat ? stat[r->stage] : 0) + r->act + r->gathered;
  r->peak_mem = MAX(r->peak_mem, r->mem);
  if (sim->tl) px_timeline_add_memory(sim->tl, r->rank, t, r->mem);
}

static double part_value(const double *a, int part) {
  return a ? a[part] : 0;
}

/* The bytes the rank's ZeRO-3 layer gathers receive during its current instruction. */
static double zero3_bytes(const Sim *sim, const Rank *r) {
  const double *b = sim->opt->zero3_bytes ? sim->opt->zero3_bytes[r->rank] : NULL;
  return b ? b[r->pc] : 0;
}

/* The share of the SMs an op of `gemm` GEMM fraction loses beside an
 * overlapped DP reduction: the collective's SMs, or with persistent GEMMs
 * their waves (px_cost_overlap_share, docs/cost.md section 3). */
static double hold_share(const PxCostTable *tab, double gemm) {
  return px_cost_overlap_share(tab->coll_sm_share, gemm, tab->coll_gemm_waves);
}

/* The GEMM fraction of a compute op (the cost table's gemm_fwd / gemm_bwd). */
static double op_gemm_frac(const Sim *sim, const Rank *r, const PxInstr *in) {
  const PxCostTable *tab = sim->tab;
  if (in->chunk < 0 || in->chunk >= sim->vpp) return 0;
  int part = px_program_part_of(sim->prog, r->stage, in->chunk);
  if (in->kind == PX_OP_FORWARD)
    return tab->gemm_fwd && tab->fwd[part] > 0 ? tab->gemm_fwd[part] / tab->fwd[part] : 0;
  double bwd = tab->bwd_input[part] + tab->bwd_weight[part];
  if (in->kind == PX_OP_BACKWARD || in->kind == PX_OP_BACKWARD_INPUT || in->kind == PX_OP_BACKWARD_WEIGHT)
    return tab->gemm_bwd && bwd > 0 ? tab->gemm_bwd[part] / bwd : 0;
  return 0;
}

/* The time `work` seconds of compute from t take beside the holds: during a
 * hold the pass does 1 - share of its work per second (the engine's form of
 * px_cost_pass_exposed's max(c, C + share c)). */
static double beside_holds(const GArray *holds, double t, double work, double share) {
  if (!holds || share <= 0 || share >= 1 || work <= 0) return work;
  double now = t, left = work;
  for (guint i = 0; i < holds->len; i++) {
    const SmHold *h = &g_array_index(holds, SmHold, i);
    if (h->end <= now) continue;
    if (h->start > now) {
      if (left <= h->start - now) break;
      left -= h->start - now;
      now = h->start;
    }
    double can = (h->end - now) * (1 - share);
    if (left <= can) return now + left / (1 - share) - t;
    left -= can;
    now = h->end;
  }
  return now + left - t;
}

/* compute-stream op of duration d; beside an overlapped DP reduction it takes
 * longer (beside_holds), the excess exposed DP communication */
static void compute(Sim *sim, Rank *r, const PxInstr *in, double d) {
  if (r->start < 0 && px_op_is_compute(in->kind)) r->start = r->t;
  double slow = 0;
  if (r->holds->len > 0) {
    while (r->holds->len > 0 && g_array_index(r->holds, SmHold, 0).end <= r->t) g_array_remove_index(r->holds, 0);
    slow = beside_holds(r->holds, r->t, d, hold_share(sim->tab, op_gemm_frac(sim, r, in))) - d;
  }
  record(sim, r, PX_STREAM_COMPUTE, in->kind, in->mb, in->chunk, r->t, r->t + d + slow, zero3_bytes(sim, r), -1);
  r->exposed[PX_COMM_DP] += slow;
  r->t += slow;
  if (r->paired > 0 && px_op_is_compute(in->kind)) {
    if (r->paired == 2) r->pair_start = r->t;
    if (--r->paired == 0 && sim->tl) px_timeline_add_pair(sim->tl, r->rank, r->pair_start, r->t + d);
  }
  r->t += d;
  r->busy += d;
  r->op_time[in->kind] += d;
}

/* the compute stream waits until `until` for communication that ran from
 * comm_start; the part of the wait that overlaps the transfer is exposed */
static void wait_for(Rank *r, double until, double comm_start, PxCommKind kind) {
  if (until <= r->t) return;
  r->exposed[kind] += until - MAX(r->t, comm_start);
  r->t = until;
}

static gboolean invalid(Sim *sim, const Rank *r, const PxInstr *in, const char *why) {
  if (!sim->error) {
    g_autoptr(GString) s = g_string_new(NULL);
    px_instr_format(in, s);
    g_set_error(&sim->error, PX_ENGINE_ERROR, PX_ENGINE_ERROR_INVALID,
                "rank %d (stage %d) instruction %u '%s': %s", r->rank, r->stage, r->pc, s->str, why);
  }
  return FALSE;
}

/* The message a receive waits for, or NULL (error set) */
static Message *find_message(Sim *sim, Rank *r, const PxInstr *in) {
  gboolean act = in->kind == PX_OP_RECV_ACT;
  if (in->mb < 0 || in->mb >= sim->m || in->chunk < 0 || in->chunk >= sim->vpp) {
    invalid(sim, r, in, "no such micro-batch, chunk or neighbouring part");
    return NULL;
  }
  int part = px_program_part_of(sim->prog, r->stage, in->chunk);
  int from = act ? part - 1 : part + 1, from_stage, from_chunk;
  if (from < 0 || from >= sim->pp * sim->vpp) {
    invalid(sim, r, in, "no such micro-batch, chunk or neighbouring part");
    return NULL;
  }
  px_schedule_part_place(sim->prog->schedule, sim->pp, from, &from_stage, &from_chunk);
  if (in->peer != from_stage) {
    invalid(sim, r, in, "peer is not the stage holding the neighbouring part");
    return NULL;
  }
  Rank *sender = &sim->ranks[sim->sim_of[r->replica * sim->pp + in->peer]];
  return &sender->msgs[((act ? 0 : 1) * sim->m + in->mb) * sim->vpp + from_chunk];
}

static void resolve(Sim *sim, Coll *c) {
  c->resolved = TRUE;
  c->start = c->ready;
  c->end = c->ready + c->cost;
  for (int i = 0; i < c->need; i++) {
    Rank *m = &sim->ranks[c->members[i]];
    if (c->start > m->coll_free) m->coll_run = c->start; /* the stream was idle before it */
    if (c->holds_sms && c->end > c->start) {
      /* the backward that ran since the bucket started (it starts inside the
       * chunk's last backward, `after` of it from its end) did so beside it:
       * that work takes longer, the compute stream ends later; later compute
       * ops meet the rest of the hold (compute) */
      SmHold h = {c->start, c->end};
      g_array_append_val(m->holds, h);
      if (m->t > c->start) {
        double work = MIN(m->t, c->end) - c->start;
        PxInstr last = {.kind = PX_OP_BACKWARD, .chunk = c->chunk};
        double share = hold_share(sim->tab, op_gemm_frac(sim, m, &last));
        double slow = beside_holds(m->holds, c->start, work, share) - work;
        m->exposed[PX_COMM_DP] += slow;
        m->t += slow;
      }
    }
    m->coll_free = MAX(m->coll_free, c->end);
    m->op_time[c->kind] += c->end - c->start;
    /* a GATHER_PARAMS's bytes are each member's own (its part of the layer: common/zero3.h) */
    double bytes = c->kind == PX_OP_GATHER_PARAMS ? zero3_bytes(sim, m) : c->bytes;
    record(sim, m, PX_STREAM_COLLECTIVE, c->kind, -1, c->chunk, c->start, c->end, bytes, c->bucket);
    if (m->wait == WAIT_PREV_COLL || m->wait == WAIT_COLL) enqueue(sim, c->members[i]);
  }
}

static PxCommKind comm_of(PxOpKind k) {
  return k == PX_OP_REDUCE_TIED ? PX_COMM_TIED : k == PX_OP_GATHER_PARAMS ? PX_COMM_GATHER : PX_COMM_DP;
}

/* Register the rank at a collective (once) and, when blocking, wait for it.
 * A REDUCE_GRADS of one bucket (in->bucket >= 0) costs the bucket's share of
 * the chunk's reduction of its kind (buckets.h: a dense bucket's of the
 * reduction over dp·cp, dp_reduce less edp_reduce; an MoE model's expert
 * bucket's of the experts' over edp, edp_reduce); overlapped, it may start once the chunk's last
 * backward has run the bucket's layers: `after` (the share of that backward
 * left, buckets.h) times its duration before the instruction's time, unless
 * the cost table reduced the part in every backward pass (ZeRO-3 with
 * overlap, reduce_pass: what is left waits for the end).
 * Returns FALSE while the rank must wait. */
static gboolean collective(Sim *sim, Rank *r, const PxInstr *in, PxOpKind kind, int chunk, gboolean blocking) {
  const PxCostTable *tab = sim->tab;
  if (!r->cur) {
    if (r->pending && !r->pending->resolved) {
      r->wait = WAIT_PREV_COLL;
      return FALSE;
    }
    r->pending = NULL;
    int need, gid;
    double cost, bytes = 0;
    if (kind == PX_OP_REDUCE_TIED) {
      need = 2;
      gid = r->replica;
      cost = tab->tied_reduce[r->stage];
    } else {
      need = sim->opt->full ? px_plan_data_ranks(&sim->prog->plan) : 1; /* dp·cp */
      gid = r->stage * sim->prog->plan.tp + r->tp;
      if (chunk < 0 || chunk >= sim->vpp) return invalid(sim, r, in, "no such chunk");
      if (kind == PX_OP_GATHER_PARAMS) {
        cost = tab->gather[px_program_part_of(sim->prog, r->stage, chunk)];
      } else {
        const PxBucket *bk = px_program_bucket(sim->prog, r->stage, in);
        double share = bk ? bk->share : 1.0, red = tab->dp_reduce[r->stage], sent = tab->dp_bytes[r->stage];
        if (bk && tab->edp_reduce && tab->edp_bytes) { /* a bucket's share of its kind's reduction */
          double er = tab->edp_reduce[r->stage], eb = tab->edp_bytes[r->stage];
          red = bk->expert ? er : red - er;
          sent = bk->expert ? eb : sent - eb;
        }
        cost = red / sim->vpp * share;
        bytes = sent / sim->vpp * share;
        /* a dense bucket (or a chunk of several) is a collective of its own:
         * the latency term once per collective, the rest by share */
        int kp = px_program_part_of(sim->prog, r->stage, chunk);
        if (tab->dp_lat && (!bk || !bk->expert) && (bk || sim->vpp > 1) && !(tab->reduce_pass && tab->reduce_pass[kp] > 0)) {
          double lat = MIN(tab->dp_lat[r->stage], red);
          cost = (red - lat) / sim->vpp * share + lat;
        }
      }
    }
    guint64 key = ((guint64)kind << 56) | ((guint64)gid << 24) | (guint64)r->coll_seq[kind]++;
    Coll *c = g_hash_table_lookup(sim->colls, &key);
    if (!c) {
      c = g_new0(Coll, 1);
      c->kind = kind;
      c->chunk = chunk;
      c->bucket = kind == PX_OP_REDUCE_GRADS ? in->bucket : -1;
      c->need = need;
      c->members = g_new(int, need);
      c->cost = cost;
      c->bytes = bytes;
      g_ptr_array_add(sim->all_colls, c);
      guint64 *k = g_new(guint64, 1);
      *k = key;
      g_hash_table_insert(sim->colls, k, c);
    }
    c->members[c->arrived++] = (int)(r - sim->ranks);
    c->holds_sms = kind == PX_OP_REDUCE_GRADS && !blocking && tab->coll_sm_share > 0;
    /* an overlapped bucket starts as soon as the last backward has run its layers */
    double from = r->t;
    const PxBucket *bk = kind == PX_OP_REDUCE_GRADS && !blocking ? px_program_bucket(sim->prog, r->stage, in) : NULL;
    int part = bk ? px_program_part_of(sim->prog, r->stage, chunk) : -1; /* tables are per part (V: not c·pp + r) */
    if (bk && !(tab->reduce_pass && tab->reduce_pass[part] > 0)) from -= bk->after * r->last_bwd_dur[chunk];
    c->ready = MAX(c->ready, MAX(from, r->coll_free));
    r->cur = c;
    if (c->arrived == c->need) {
      g_hash_table_remove(sim->colls, &key);
      resolve(sim, c);
    }
  }
  Coll *c = r->cur;
  if (!blocking) {
    r->pending = c;
    r->cur = NULL;
    return TRUE;
  }
  if (!c->resolved) {
    r->wait = WAIT_COLL;
    return FALSE;
  }
  wait_for(r, c->end, c->start, comm_of(kind));
  r->cur = NULL;
  return TRUE;
}

/* Megatron-Core's parameter all-gathers before the step's first forward of
 * part 0 (cost.h param_gather): the dense buckets of part 0 in forward order
 * (the reverse of buckets.h's reduction order), each a gather of its share
 * of the part's parameters (the latency term paid by each) beside the
 * forward of the bucket before it, that forward split by the buckets'
 * forward FLOPs (PxBucket.after); what the forward does not hide
 * (px_cost_param_gather_exposed). One bucket: its gather, waited for. */
static double param_gather_exposed(const Sim *sim, const Rank *r) {
  const PxCostTable *tab = sim->tab;
  double whole = tab->param_gather[r->stage], lat = tab->param_gather_lat ? tab->param_gather_lat[r->stage] : 0;
  const PxBuckets *b = sim->prog->buckets;
  if (!b || b->n[0] < 2) return whole;
  int n = b->n[0], m = 0;
  lat = MIN(lat, whole);
  g_autofree double *g = g_new(double, n);
  g_autofree double *f = g_new(double, n);
  for (int i = n - 1; i >= 0; i--) {
    const PxBucket *bk = &b->b[0][i];
    if (bk->expert) continue;
    double before = 1.0; /* forward share of the layers from this bucket's on: the next dense bucket's after */
    for (int j = i - 1; j >= 0; j--)
      if (!b->b[0][j].expert) {
        before = b->b[0][j].after;
        break;
      }
    g[m] = bk->share * (whole - lat) + lat;
    f[m] = tab->fwd[0] * MAX(0.0, before - bk->after);
    m++;
  }
  /* beside part 0's forward, whose GEMMs a persistent schedule runs in waves */
  double gemm = tab->fwd[0] > 0 && tab->gemm_fwd ? tab->gemm_fwd[0] / tab->fwd[0] : 0;
  double share = px_cost_overlap_share(tab->coll_sm_share, gemm, tab->coll_gemm_waves);
  return px_cost_param_gather_exposed(m, g, f, share);
}

/* Execute the rank's current instruction; FALSE when it has to wait. */
static gboolean step(Sim *sim, Rank *r) {
  const PxInstr *in = &r->prog->instrs[r->pc];
  const PxCostTable *tab = sim->tab;
  int pp = sim->pp;
  gboolean has_part = in->chunk >= 0 && in->chunk < sim->vpp;
  int part = has_part ? px_program_part_of(sim->prog, r->stage, in->chunk) : -1;
  const PxSimOptions *opt = sim->opt;
  r->wait = WAIT_NONE;
  switch (in->kind) {
  case PX_OP_LOAD:
    compute(sim, r, in, tab->load[r->stage]);
    break;
  case PX_OP_FORWARD:
    if (!has_part || in->mb < 0 || in->mb >= sim->m) return invalid(sim, r, in, "no such micro-batch or chunk");
    /* the step's first forward of part 0 waits for Megatron-Core's first parameter gathers */
    if (part == 0 && !r->params_gathered && tab->param_gather && tab->param_gather[r->stage] > 0) {
      r->params_gathered = TRUE;
      wait_for(r, r->t + param_gather_exposed(sim, r), r->t, PX_COMM_DP);
    }
    r->act += part_value(opt->act_bytes, part);
    set_memory(sim, r, r->t);
    compute(sim, r, in, tab->fwd[part]);
    r->in_flight++;
    r->peak_in_flight = MAX(r->peak_in_flight, r->in_flight);
    break;
  case PX_OP_BACKWARD:
  case PX_OP_BACKWARD_INPUT:
  case PX_OP_BACKWARD_WEIGHT: {
    if (!has_part || in->mb < 0 || in->mb >= sim->m) return invalid(sim, r, in, "no such micro-batch or chunk");
    double d = in->kind == PX_OP_BACKWARD ? tab->bwd_input[part] + tab->bwd_weight[part]
             : in->kind == PX_OP_BACKWARD_INPUT ? tab->bwd_input[part]
                                                : tab->bwd_weight[part];
    compute(sim, r, in, d);
    if (r->last_bwd[in->chunk] == (int)r->pc) r->last_bwd_dur[in->chunk] = d;
    double all = part_value(opt->act_bytes, part), kept = part_value(opt->act_w_bytes, part);
    if (in->kind != PX_OP_BACKWARD_WEIGHT) r->in_flight--;
    r->act -= in->kind == PX_OP_BACKWARD ? all : in->kind == PX_OP_BACKWARD_INPUT ? all - kept : kept;
    if (r->last_bwd[in->chunk] == (int)r->pc) r->gathered -= part_value(opt->gather_bytes, part);
    set_memory(sim, r, r->t);
    break;
  }
  case PX_OP_SEND_ACT:
  case PX_OP_SEND_GRAD: {
    gboolean act = in->kind == PX_OP_SEND_ACT;
    if (!has_part || in->mb < 0 || in->mb >= sim->m || (act ? part + 1 >= pp * sim->vpp : part < 1))
      return invalid(sim, r, in, "no such micro-batch, chunk or neighbouring part");
    Message *msg = &r->msgs[((act ? 0 : 1) * sim->m + in->mb) * sim->vpp + in->chunk];
    int to_stage, to_chunk;
    px_schedule_part_place(sim->prog->schedule, pp, act ? part + 1 : part - 1, &to_stage, &to_chunk);
    /* a rendezvous send (cost.h p2p_rendezvous) larger than the eager buffer
     * starts once its receive is posted: the stage waits for its peer */
    gboolean rdv = tab->p2p_rendezvous && to_stage != r->stage && tab->p2p_bytes[part] > tab->p2p_eager_bytes;
    if (rdv && msg->posted < 0) {
      msg->send_waiter = (int)(r - sim->ranks);
      r->wait = WAIT_SEND;
      return FALSE;
    }
    msg->start = MAX(r->t, r->send_free);
    if (rdv) msg->start = MAX(msg->start, msg->posted);
    /* the bottom of a V passes between two chunks of one rank: no transfer */
    msg->end = msg->start + (to_stage == r->stage ? 0 : act ? tab->p2p_act[part] : tab->p2p_grad[part]);
    r->send_free = msg->end;
    r->op_time[in->kind] += msg->end - msg->start;
    record(sim, r, PX_STREAM_SEND, in->kind, in->mb, in->chunk, msg->start, msg->end, tab->p2p_bytes[part], -1);
    if (msg->waiter >= 0) enqueue(sim, msg->waiter);
    if (tab->p2p_blocking) wait_for(r, msg->end, msg->start, PX_COMM_P2P);
    break;
  }
  case PX_OP_RECV_ACT:
  case PX_OP_RECV_GRAD: {
    Message *msg = find_message(sim, r, in);
    if (!msg) return FALSE;
    if (msg->end < 0) {
      if (msg->posted < 0) msg->posted = r->t;
      if (msg->send_waiter >= 0) enqueue(sim, msg->send_waiter), msg->send_waiter = -1;
      msg->waiter = (int)(r - sim->ranks);
      r->wait = WAIT_MESSAGE;
      return FALSE;
    }
    record(sim, r, PX_STREAM_RECV, in->kind, in->mb, in->chunk, msg->start, msg->end,
           tab->p2p_bytes[in->kind == PX_OP_RECV_ACT ? part - 1 : part + 1], -1);
    wait_for(r, msg->end, msg->start, PX_COMM_P2P);
    break;
  }
  case PX_OP_OVERLAP:
    r->paired = 2;
    break;
  case PX_OP_GATHER_PARAMS:
    if (!collective(sim, r, in, in->kind, in->chunk, TRUE)) return FALSE;
    r->gathered += part_value(opt->gather_bytes, part);
    set_memory(sim, r, r->t);
    break;
  case PX_OP_REDUCE_GRADS:
    if (!tab->overlap_dp) {
      g_array_append_val(r->deferred, r->pc);
      break;
    }
    if (!collective(sim, r, in, in->kind, in->chunk, FALSE)) return FALSE;
    break;
  case PX_OP_REDUCE_TIED:
    if (!collective(sim, r, in, in->kind, -1, !tab->overlap_dp)) return FALSE;
    break;
  case PX_OP_OPTIMIZER_STEP:
    while (r->flushed < r->deferred->len) {
      const PxInstr *held = &r->prog->instrs[g_array_index(r->deferred, guint, r->flushed)];
      if (!collective(sim, r, held, PX_OP_REDUCE_GRADS, held->chunk, TRUE))
        return FALSE;
      r->flushed++;
    }
    if (r->pending) {
      if (!r->pending->resolved) {
        r->wait = WAIT_PREV_COLL;
        return FALSE;
      }
      /* exposed from when the stream's work in flight started (several buckets back to back) */
      wait_for(r, r->coll_free, MIN(r->pending->start, r->coll_run), comm_of(r->pending->kind));
      r->pending = NULL;
    }
    r->t = MAX(r->t, r->coll_free);
    compute(sim, r, in, tab->optimizer[r->stage]);
    break;
  default:
    return invalid(sim, r, in, "unknown instruction");
  }
  return TRUE;
}

static void run_rank(Sim *sim, Rank *r) {
  while (r->pc < r->prog->n) {
    if (!step(sim, r)) return;
    r->pc++;
    sim->n_instr++;
  }
  r->done = TRUE;
  r->wait = WAIT_NONE;
}

static void deadlock_error(Sim *sim, GError **error) {
  g_autoptr(GString) s = g_string_new("deadlock: ");
  int shown = 0, stuck = 0;
  for (int i = 0; i < sim->n; i++) {
    Rank *r = &sim->ranks[i];
    if (r->done) continue;
    stuck++;
    if (shown >= 6) continue;
    if (shown++) g_string_append(s, "; ");
    g_string_append_printf(s, "rank %d (stage %d) at instruction %u '", r->rank, r->stage, r->pc);
    px_instr_format(&r->prog->instrs[r->pc], s);
    const char *why = r->wait == WAIT_MESSAGE ? "no matching send"
                    : r->wait == WAIT_SEND    ? "its receive is never posted"
                    : r->wait == WAIT_COLL    ? "a collective member never arrives"
                                              : "an earlier collective never completes";
    if (r->wait == WAIT_COLL && r->cur)
      g_string_append_printf(s, "' (%d of %d members arrived)", r->cur->arrived, r->cur->need);
    else
      g_string_append_printf(s, "' (%s)", why);
  }
  if (stuck > shown) g_string_append_printf(s, "; and %d more ranks", stuck - shown);
  g_set_error_literal(error, PX_ENGINE_ERROR, PX_ENGINE_ERROR_DEADLOCK, s->str);
}

static gboolean check_table(const PxProgram *prog, const PxCostTable *tab, GError **error) {
  if (tab->pp != prog->pp || tab->vpp != prog->vpp) {
    g_set_error(error, PX_ENGINE_ERROR, PX_ENGINE_ERROR_INVALID,
                "cost table is for pp=%d vpp=%d but the program for pp=%d vpp=%d", tab->pp, tab->vpp,
                prog->pp, prog->vpp);
    return FALSE;
  }
  return TRUE;
}

static void sim_clear(Sim *sim) {
  for (int i = 0; i < sim->n; i++) {
    g_free(sim->ranks[i].msgs);
    g_free(sim->ranks[i].last_bwd);
    g_free(sim->ranks[i].last_bwd_dur);
    if (sim->ranks[i].deferred) g_array_unref(sim->ranks[i].deferred);
    if (sim->ranks[i].holds) g_array_unref(sim->ranks[i].holds);
  }
  g_free(sim->ranks);
  g_free(sim->sim_of);
  g_free(sim->queue);
  if (sim->colls) g_hash_table_unref(sim->colls);
  if (sim->all_colls) g_ptr_array_unref(sim->all_colls);
  px_timeline_free(sim->tl);
  g_clear_error(&sim->error);
}

static void coll_free_fn(gpointer p) {
  Coll *c = p;
  g_free(c->members);
  g_free(c);
}

static void sim_init(Sim *sim, const PxProgram *prog, const PxCostTable *tab, const PxSimOptions *opt) {
  const PxPlan *plan = &prog->plan;
  sim->prog = prog;
  sim->tab = tab;
  sim->opt = opt;
  sim->pp = prog->pp;
  sim->vpp = prog->vpp;
  sim->m = MAX(prog->m, 1);
  sim->world = opt->full ? px_plan_world(plan) : prog->pp;
  sim->n = sim->world;
  int replicas = opt->full ? px_plan_data_ranks(plan) * plan->tp : 1;
  sim->ranks = g_new0(Rank, sim->n);
  sim->sim_of = g_new(int, replicas * sim->pp);
  sim->queue = g_new(int, sim->n);
  sim->colls = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
  sim->all_colls = g_ptr_array_new_with_free_func(coll_free_fn);
  sim->tl = opt->no_timeline ? NULL : px_timeline_new();
  gsize n_msgs = (gsize)2 * sim->m * sim->vpp;
  for (int i = 0; i < sim->n; i++) {
    Rank *r = &sim->ranks[i];
    if (opt->full) {
      r->rank = i;
      px_plan_rank_coords(plan, i, &r->dp, &r->tp, &r->stage);
      r->replica = r->dp * plan->tp + r->tp;
    } else {
      r->stage = i;
      r->rank = px_plan_rank_of(plan, 0, 0, i);
    }
    sim->sim_of[r->replica * sim->pp + r->stage] = i;
    r->prog = &prog->ranks[r->stage];
    r->deferred = g_array_new(FALSE, FALSE, sizeof(guint));
    r->holds = g_array_new(FALSE, FALSE, sizeof(SmHold));
    r->start = -1;
    r->msgs = g_new(Message, n_msgs);
    for (gsize k = 0; k < n_msgs; k++) r->msgs[k] = (Message){0, -1, -1, -1, -1};
    r->last_bwd = g_new(int, sim->vpp);
    r->last_bwd_dur = g_new0(double, sim->vpp);
    for (int c = 0; c < sim->vpp; c++) r->last_bwd[c] = -1;
    for (guint k = 0; k < r->prog->n; k++) {
      const PxInstr *in = &r->prog->instrs[k];
      if ((in->kind == PX_OP_BACKWARD || in->kind == PX_OP_BACKWARD_WEIGHT ||
           in->kind == PX_OP_BACKWARD_INPUT) && in->chunk >= 0 && in->chunk < sim->vpp)
        r->last_bwd[in->chunk] = (int)k;
    }
    set_memory(sim, r, 0);
  }
}

static PxSimResult *collect(Sim *sim) {
  PxSimResult *res = g_new0(PxSimResult, 1);
  res->pp = sim->pp;
  res->n_ranks = sim->n;
  res->ranks = g_new0(PxRankResult, sim->n);
  res->stage_peak_memory = g_new0(double, sim->pp);
  res->stage_peak_in_flight = g_new0(int, sim->pp);
  for (int i = 0; i < sim->n; i++) {
    Rank *r = &sim->ranks[i];
    double end = MAX(r->t, MAX(r->send_free, r->coll_free));
    res->step_time = MAX(res->step_time, end);
    res->ranks[i] = (PxRankResult){.rank = r->rank, .stage = r->stage, .start = MAX(r->start, 0), .end = end, .busy = r->busy,
                                   .peak_memory = r->peak_mem, .peak_in_flight = r->peak_in_flight};
    memcpy(res->ranks[i].exposed, r->exposed, sizeof r->exposed);
    memcpy(res->ranks[i].op_time, r->op_time, sizeof r->op_time);
    res->stage_peak_memory[r->stage] = MAX(res->stage_peak_memory[r->stage], r->peak_mem);
    res->stage_peak_in_flight[r->stage] = MAX(res->stage_peak_in_flight[r->stage], r->peak_in_flight);
  }
  double idle = 0, busy = 0;
  for (int i = 0; i < sim->n; i++) {
    PxRankResult *rr = &res->ranks[i];
    rr->idle = res->step_time - rr->busy;
    idle += rr->idle;
    busy += rr->busy;
    double bubble = rr->idle;
    for (int k = 0; k < PX_N_COMM; k++) {
      res->breakdown.exposed[k] += rr->exposed[k] / sim->n;
      bubble -= rr->exposed[k];
    }
    /* the bubble is the pipeline's idle time: waiting for the DP and tied
     * reductions or the ZeRO-3 gathers is exposed communication, not bubble
     * (reported as dp_exposed_fraction ...); waiting for a p2p message is the
     * pipeline's own */
    if (res->step_time > 0) {
      res->bubble_fraction += MAX(0.0, bubble + rr->exposed[PX_COMM_P2P]) / res->step_time; /* no -0 from rounding */
      res->dp_exposed_fraction += rr->exposed[PX_COMM_DP] / res->step_time;
    }
    res->breakdown.compute += rr->busy / sim->n;
    res->breakdown.bubble += bubble / sim->n;
  }
  res->bubble_fraction /= sim->n;
  res->dp_exposed_fraction /= sim->n;
  res->bubble_overhead = busy > 0 ? idle / busy : 0;
  for (int i = 0; i < sim->n; i++) res->span = MAX(res->span, res->ranks[i].end - res->ranks[i].start);
  res->n_instructions = sim->n_instr;
  if (sim->tl) {
    px_timeline_sort(sim->tl);
    res->timeline = g_steal_pointer(&sim->tl);
  }
  return res;
}

PxSimResult *px_simulate(const PxProgram *prog, const PxCostTable *table, const PxSimOptions *opt,
                         GError **error) {
  static const PxSimOptions defaults = {0};
  if (!opt) opt = &defaults;
  if (!check_table(prog, table, error)) return NULL;
  Sim sim = {0};
  sim_init(&sim, prog, table, opt);
  for (int i = 0; i < sim.n; i++) enqueue(&sim, i);
  while (sim.qlen > 0 && !sim.error) {
    int i = sim.queue[sim.qhead];
    sim.qhead = (sim.qhead + 1) % sim.n;
    sim.qlen--;
    sim.ranks[i].queued = FALSE;
    run_rank(&sim, &sim.ranks[i]);
  }
  PxSimResult *res = NULL;
  if (sim.error) {
    g_propagate_error(error, g_steal_pointer(&sim.error));
  } else {
    gboolean all_done = TRUE;
    for (int i = 0; i < sim.n; i++) all_done &= sim.ranks[i].done;
    if (all_done)
      res = collect(&sim);
    else
      deadlock_error(&sim, error);
  }
  sim_clear(&sim);
  return res;
}

void px_sim_result_free(PxSimResult *res) {
  if (!res) return;
  g_free(res->ranks);
  g_free(res->stage_peak_memory);
  g_free(res->stage_peak_in_flight);
  px_timeline_free(res->timeline);
  g_free(res);
}
