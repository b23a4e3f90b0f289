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

/* All zero: not sent, not posted, nobody waiting (so that the messages of a
 * step are allocated zeroed, not written one by one). */
typedef struct {
  double start, end;  /* when sent */
  double posted;      /* when its receive was posted (rendezvous sends wait for it), if is_posted */
  int waiter;         /* simulated rank blocked on it, plus one (0: none) */
  int send_waiter;    /* the sending rank blocked until it is posted, plus one (0: none) */
  gboolean sent, is_posted;
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
  int *sent_hi, *recv_hi; /* (2 · vpp) [type][chunk] the highest micro-batch it has sent, reached a
                              receive of (-1: none) */
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
  int mb_hi;          /* the highest micro-batch of a message written so far (-1: none) */
  struct Steady *st;  /* the jump over steady rounds (step_time_only), NULL: none */
  guint64 n_jumped;
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
    sim->mb_hi = MAX(sim->mb_hi, in->mb);
    int to_stage, to_chunk;
    px_schedule_part_place(sim->prog->schedule, pp, act ? part + 1 : part - 1, &to_stage, &to_chunk);
    /* a rendezvous send (cost.h p2p_rendezvous) larger than the eager buffer
     * starts once its receive is posted: the stage waits for its peer */
    gboolean rdv = tab->p2p_rendezvous && to_stage != r->stage && tab->p2p_bytes[part] > tab->p2p_eager_bytes;
    if (rdv && !msg->is_posted) {
      msg->send_waiter = (int)(r - sim->ranks) + 1;
      r->wait = WAIT_SEND;
      return FALSE;
    }
    msg->start = MAX(r->t, r->send_free);
    if (rdv) msg->start = MAX(msg->start, msg->posted);
    /* the bottom of a V passes between two chunks of one rank: no transfer */
    msg->end = msg->start + (to_stage == r->stage ? 0 : act ? tab->p2p_act[part] : tab->p2p_grad[part]);
    msg->sent = TRUE;
    r->sent_hi[(act ? 0 : sim->vpp) + in->chunk] = MAX(r->sent_hi[(act ? 0 : sim->vpp) + in->chunk], in->mb);
    r->send_free = msg->end;
    r->op_time[in->kind] += msg->end - msg->start;
    record(sim, r, PX_STREAM_SEND, in->kind, in->mb, in->chunk, msg->start, msg->end, tab->p2p_bytes[part], -1);
    if (msg->waiter) enqueue(sim, msg->waiter - 1);
    if (tab->p2p_blocking) wait_for(r, msg->end, msg->start, PX_COMM_P2P);
    break;
  }
  case PX_OP_RECV_ACT:
  case PX_OP_RECV_GRAD: {
    Message *msg = find_message(sim, r, in);
    if (!msg) return FALSE;
    sim->mb_hi = MAX(sim->mb_hi, in->mb);
    int *rh = &r->recv_hi[(in->kind == PX_OP_RECV_ACT ? 0 : sim->vpp) + in->chunk];
    *rh = MAX(*rh, in->mb);
    if (!msg->sent) {
      if (!msg->is_posted) msg->posted = r->t, msg->is_posted = TRUE;
      if (msg->send_waiter) enqueue(sim, msg->send_waiter - 1), msg->send_waiter = 0;
      msg->waiter = (int)(r - sim->ranks) + 1;
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

/* ---- steady rounds: the jump (PxSimOptions.step_time_only) ----------------
 *
 * In the steady part of a pipeline schedule each rank's program repeats
 * every L_r instructions with the micro-batches s on (1F1B's F B rounds:
 * s = 1; Megatron's interleaving: s = pp), and the engine does the same
 * operations round after round on times that grow. The operations on times
 * in those instructions (F, B, W, loads, sends, receives, OVERLAP) are
 * copies, max and a + d with a a time and d the table's duration, and each
 * value depends only on the values it reads, never on the order in which
 * the engine runs the ranks. Rank r's boundary k is its instruction
 * first_r + k·L_r (each rank's boundary k runs the forward of the same
 * micro-batch of chunk 0); the cut k is every rank at its boundary k. As a
 * rank reaches a boundary its state is recorded (its stream times, what it
 * has sent and received so far); when the last rank reaches it the cut is
 * complete, and with it the messages that cross it (sent before their
 * sender's boundary, read after their receiver's; with rendezvous sends the
 * postings a send after its boundary reads). Everything computed after a
 * cut depends on the cut's values only. If the cut K is the cut K - c with
 * every moving time moved by the same Q, every time read or computed from
 * the cut K - c on lies in one binade [2^(E-1), 2^E) (there the doubles are
 * the multiples of u = 2^(E-53)) and Q is an even multiple of u, then every
 * value after the cut K is the value c rounds before plus Q, bit for bit:
 * max commutes with adding Q; a + d rounded to the u grid is (a + Q) + d
 * rounded less Q, and a tie goes to the even multiple, whose parity adding
 * 2ku keeps. So while the times stay under 2^E (and the programs repeat,
 * and no message below the window is read again), j·c rounds are jumped by
 * moving every rank's pc j·c·L_r on, adding j·Q to every moving time and
 * moving the message window j·c·s micro-batches on: the state the rounds
 * would have left, whatever the order the engine then runs the ranks in.
 * Every time computed lies between the earlier cut's least time and the
 * largest so far (times only grow, each send's end is its stream's, each
 * receive's wait its rank's), so checking those bounds them all. When a
 * check fails (a transient, a binade crossed, ranks whose times drift apart
 * by an ulp a round, a duration that rounds differently), the rounds are
 * simulated one by one as before. (Comparing the whole configuration at
 * rank 0's round starts, as first done, also asked the engine's run order
 * to repeat, which took up to 2·pp - 1 rounds: at large pp·vpp no repeat
 * fitted a binade.) The accumulated accounting (busy, exposed, memory) is
 * not carried over the jump: only step_time is wanted. tests/test_engine.c
 * /engine/jump/exact and /engine/jump/large compare it with every round
 * run. */

static gint no_jump; /* px_engine_set_no_jump */
#define STEADY_MIN_M 256 /* micro-batches below which every round is run */
#define STEADY_MAX_LAG 64 /* the most rounds between two cuts compared (and 4·pp·vpp) */
void px_engine_set_no_jump(gboolean on) { g_atomic_int_set(&no_jump, on ? 1 : 0); }
static gint n_jumps; /* px_engine_jumps */
int px_engine_jumps(void) { return g_atomic_int_get(&n_jumps); }


typedef struct {
  guint a, b, L;     /* instrs[x + L] is instrs[x] s micro-batches on for x in [a, b - L) */
  guint first;       /* boundary 0 (a + k·L for some k): the same forward of chunk 0 on every rank */
  gboolean sends;    /* the region has sends (send_free moves) */
  int tail_min;      /* the least micro-batch of an instruction from b on (G_MAXINT: none) */
  /* per [type][chunk] (type 0: activations, 1: gradients), G_MAXINT: none:
   * the least micro-batch of a receive, of a send, in [first, first + L) and from b on */
  int *recv_min, *recv_tail, *send_min, *send_tail;
} Period;

/* The live configuration a jump moves on (every rank's pc and the window of
 * messages still read or written). */
typedef struct {
  guint *pc;         /* (n) */
  int mb_lo, mb_hi;
} Live;

/* A rank's state when it reached its boundary k, pc = first + k·L (before
 * running the instruction there): what its later instructions read. */
typedef struct {
  gint64 k;          /* -1: none */
  double t, send_free, coll_free, coll_run;
  guint holds, deferred, flushed;
  gboolean params_gathered;
  const Coll *pending, *cur;
  int *sent_hi, *recv_hi; /* (2 · vpp) the rank's, [type][chunk] */
} RankRec;

/* The messages that cross a cut (sent before their sender's boundary, read
 * after their receiver's), route by route: their ends; with
 * rendezvous sends the receives posted before the receiver's boundary that a
 * send after its sender's reads: their posting times. */
typedef struct {
  gint64 k;          /* -1: none */
  int *width;        /* (n · 2 · vpp · 2) messages, posts per route */
  GArray *val;       /* (double) */
} CutMsgs;

struct PxSteady {
  const PxProgram *prog; /* the program it was found for (checked) */
  int s;             /* micro-batches a round moves on */
  Period *per;       /* (pp) */
  int *mins;         /* (pp · 4 · 2 · vpp) the periods' recv_min ... */
};

/* Where a rank's receive of (type, chunk) comes from. */
typedef struct {
  int from, chunk;   /* sending rank, its chunk; from < 0: none */
  gboolean rdv;      /* a rendezvous send (the sender reads `posted`) */
} Route;

typedef struct Steady {
  const PxSteady *ps;
  PxSteady *own;     /* ps when the engine found it itself */
  int n, v2;         /* ranks, 2 · vpp */
  int max_lag;       /* the most rounds a repeat may take */
  int ring;          /* records kept per rank: cuts k mod ring */
  RankRec *rec;      /* (ring · n): rec[(k mod ring) · n + rank] */
  int *his;          /* the records' sent_hi and recv_hi */
  int *count;        /* (ring) ranks that reached boundary k (count_k[k mod ring] == k) */
  gint64 *count_k;
  gint64 *crossed;   /* (n) boundaries each rank has reached */
  guint *next;       /* (n) the pc of each rank's next boundary (G_MAXUINT: none) */
  gint64 done;       /* cuts every rank has reached */
  CutMsgs *msgs;     /* (max_lag + 1) the crossing messages of cut k, at k mod (max_lag + 1) */
  gboolean armed;    /* a repeat of the ranks' times was seen: store the messages too */
  gboolean any_rdv;
  Route *route;      /* (n · 2 · vpp) [receiving rank][type][its chunk] */
  Live live;
} Steady;

static gboolean steady_kind(PxOpKind k) {
  return k == PX_OP_LOAD || k == PX_OP_FORWARD || k == PX_OP_BACKWARD || k == PX_OP_BACKWARD_INPUT ||
         k == PX_OP_BACKWARD_WEIGHT || k == PX_OP_SEND_ACT || k == PX_OP_RECV_ACT || k == PX_OP_SEND_GRAD ||
         k == PX_OP_RECV_GRAD || k == PX_OP_OVERLAP;
}

/* y is x with the micro-batch s on (and a kind the jump allows) */
static gboolean shifted(const PxInstr *x, const PxInstr *y, int s) {
  return steady_kind(x->kind) && x->kind == y->kind && x->chunk == y->chunk && x->peer == y->peer &&
         x->bucket == y->bucket && x->layer == y->layer && (x->mb < 0 ? y->mb == x->mb : y->mb == x->mb + s);
}

/* The rank's periodic region around i1, the forward of (x, chunk 0), with i2
 * the forward of (x + s, chunk 0); FALSE when it has none of at least three
 * rounds. */
static gboolean find_period(const PxRankProgram *rp, int s, gint64 i1, gint64 i2, Period *pd) {
  const PxInstr *in = rp->instrs;
  if (i1 < 0 || i2 <= i1) return FALSE;
  guint L = (guint)(i2 - i1), lo = (guint)i1, hi = (guint)i1;
  while (hi + L < rp->n && shifted(&in[hi], &in[hi + L], s)) hi++;
  while (lo > 0 && shifted(&in[lo - 1], &in[lo - 1 + L], s)) lo--;
  if (hi - lo < 3 * L) return FALSE;
  *pd = (Period){.a = lo, .b = hi + L, .L = L, .first = (guint)i1, .tail_min = G_MAXINT};
  for (guint i = lo; i < lo + L; i++) pd->sends |= in[i].kind == PX_OP_SEND_ACT || in[i].kind == PX_OP_SEND_GRAD;
  for (guint i = pd->b; i < rp->n; i++)
    if (in[i].mb >= 0) pd->tail_min = MIN(pd->tail_min, in[i].mb);
  return TRUE;
}

/* The least micro-batches of the receives and sends of each type and chunk
 * in the round from `first` and in the tail. */
static void period_mins(const PxRankProgram *rp, int v, Period *pd) {
  int *all[4] = {pd->recv_min, pd->recv_tail, pd->send_min, pd->send_tail};
  for (int w = 0; w < 4; w++)
    for (int i = 0; i < 2 * v; i++) all[w][i] = G_MAXINT;
  for (guint i = pd->first; i < rp->n; i++) {
    if (i == pd->first + pd->L) i = pd->b;
    if (i >= rp->n) break;
    const PxInstr *in = &rp->instrs[i];
    gboolean tail = i >= pd->b;
    int *w = NULL, y = 0;
    switch (in->kind) {
    case PX_OP_RECV_ACT: w = tail ? pd->recv_tail : pd->recv_min; break;
    case PX_OP_RECV_GRAD: w = tail ? pd->recv_tail : pd->recv_min, y = 1; break;
    case PX_OP_SEND_ACT: w = tail ? pd->send_tail : pd->send_min; break;
    case PX_OP_SEND_GRAD: w = tail ? pd->send_tail : pd->send_min, y = 1; break;
    default: break;
    }
    if (w && in->chunk >= 0 && in->chunk < v && in->mb >= 0) w[y * v + in->chunk] = MIN(w[y * v + in->chunk], in->mb);
  }
}

void px_steady_free(PxSteady *ps) {
  if (!ps) return;
  g_free(ps->per);
  g_free(ps->mins);
  g_free(ps);
}

static void steady_free(Steady *st) {
  if (!st) return;
  for (int i = 0; st->msgs && i <= st->max_lag; i++) {
    g_free(st->msgs[i].width);
    if (st->msgs[i].val) g_array_unref(st->msgs[i].val);
  }
  g_free(st->msgs);
  g_free(st->rec);
  g_free(st->his);
  g_free(st->count);
  g_free(st->count_k);
  g_free(st->crossed);
  g_free(st->next);
  g_free(st->route);
  g_free(st->live.pc);
  px_steady_free(st->own);
  g_free(st);
}

PxSteady *px_steady_new(const PxProgram *prog) {
  enum { N_CAND = 4 };
  int n = prog->pp, m = MAX(prog->m, 1), v = MAX(prog->vpp, 1);
  int cand[N_CAND] = {1, 2, n, 2 * n}, x = m / 2;
  if (m < STEADY_MIN_M) return NULL;
  /* where each rank runs the forward of (x, chunk 0) and of (x + s, chunk 0): one pass */
  g_autofree gint64 *pos = g_new(gint64, (gsize)n * (N_CAND + 1));
  for (int i = 0; i < n; i++) {
    const PxRankProgram *rp = &prog->ranks[i];
    gint64 *ps = &pos[(gsize)i * (N_CAND + 1)];
    int left = N_CAND + 1;
    for (int c = 0; c <= N_CAND; c++) ps[c] = -1;
    for (guint k = 0; k < rp->n && left > 0; k++) {
      const PxInstr *in = &rp->instrs[k];
      if (in->kind != PX_OP_FORWARD || in->chunk != 0) continue;
      for (int c = 0; c <= N_CAND; c++)
        if (ps[c] < 0 && in->mb == x + (c ? cand[c - 1] : 0)) ps[c] = k, left--;
    }
  }
  PxSteady *st = g_new0(PxSteady, 1);
  st->prog = prog;
  st->per = g_new0(Period, n);
  for (int c = 0; c < N_CAND; c++) {
    int s = cand[c], i;
    gboolean tried = FALSE;
    for (int e = 0; e < c; e++) tried |= cand[e] == s;
    if (tried || x + s >= m) continue;
    for (i = 0; i < n; i++)
      if (!find_period(&prog->ranks[i], s, pos[(gsize)i * (N_CAND + 1)], pos[(gsize)i * (N_CAND + 1) + 1 + c],
                       &st->per[i]))
        break;
    if (i < n) continue;
    st->s = s;
    /* the cuts: each rank's boundary k runs the forward of (x + (k - k0)·s,
     * chunk 0), k0 as large as keeps every boundary 0 in its rank's region */
    guint k0 = G_MAXUINT;
    for (i = 0; i < n; i++) k0 = MIN(k0, (st->per[i].first - st->per[i].a) / st->per[i].L);
    st->mins = g_new(int, (gsize)n * 4 * 2 * v);
    for (i = 0; i < n; i++) {
      Period *pd = &st->per[i];
      int *mn = &st->mins[(gsize)i * 4 * 2 * v];
      pd->first -= k0 * pd->L;
      pd->recv_min = mn, pd->recv_tail = mn + 2 * v, pd->send_min = mn + 4 * v, pd->send_tail = mn + 6 * v;
      period_mins(&prog->ranks[i], v, pd);
    }
    return st;
  }
  px_steady_free(st);
  return NULL;
}

/* The least micro-batch at or after round k of a round minimum and a tail's. */
static gint64 from_round(int round_min, int tail, gint64 k, int s) {
  return MIN(round_min == G_MAXINT ? G_MAXINT64 : (gint64)round_min + k * s, (gint64)tail);
}

/* The jump's run-time state over the program's periods (ps, or found here). */
static Steady *steady_new(const Sim *sim) {
  const PxSteady *ps = sim->opt->steady;
  PxSteady *own = NULL;
  if (ps && ps->prog != sim->prog) ps = NULL; /* another program's: not used */
  if (!ps) ps = own = px_steady_new(sim->prog);
  if (!ps) return NULL;
  Steady *st = g_new0(Steady, 1);
  int n = sim->n, v = sim->vpp;
  st->ps = ps;
  st->own = own;
  st->n = n;
  st->v2 = 2 * v;
  st->max_lag = MIN(STEADY_MAX_LAG, 4 * sim->pp * sim->vpp);
  /* a rank may run ahead of the others' boundaries by rounds (ZB-H2's rank 0
   * by 2(pp - 1)): their records are kept too */
  st->ring = st->max_lag + 16 + 4 * sim->pp;
  st->rec = g_new0(RankRec, (gsize)st->ring * n);
  st->his = g_new(int, (gsize)st->ring * n * 2 * st->v2);
  for (gsize i = 0; i < (gsize)st->ring * n; i++) {
    st->rec[i].k = -1;
    st->rec[i].sent_hi = &st->his[i * 2 * st->v2];
    st->rec[i].recv_hi = &st->his[i * 2 * st->v2 + st->v2];
  }
  st->count = g_new0(int, st->ring);
  st->count_k = g_new(gint64, st->ring);
  for (int i = 0; i < st->ring; i++) st->count_k[i] = -1;
  st->crossed = g_new0(gint64, n);
  st->next = g_new(guint, n);
  for (int i = 0; i < n; i++) st->next[i] = ps->per[i].first;
  st->msgs = g_new0(CutMsgs, st->max_lag + 1);
  for (int i = 0; i <= st->max_lag; i++) {
    st->msgs[i].k = -1;
    st->msgs[i].width = g_new(int, (gsize)n * st->v2 * 2);
    st->msgs[i].val = g_array_new(FALSE, FALSE, sizeof(double));
  }
  st->live.pc = g_new(guint, n);
  /* the rendezvous sends read their receive's posting time (step, SEND_ACT) */
  const PxCostTable *tab = sim->tab;
  st->route = g_new(Route, (gsize)n * st->v2);
  for (int i = 0; i < n; i++)
    for (int y = 0; y < 2; y++)
      for (int c = 0; c < v; c++) {
        Route *ro = &st->route[((gsize)i * 2 + y) * v + c];
        int part = px_program_part_of(sim->prog, i, c), from = y == 0 ? part - 1 : part + 1, fs, fc;
        *ro = (Route){-1, -1, FALSE};
        if (from < 0 || from >= sim->pp * v) continue;
        px_schedule_part_place(sim->prog->schedule, sim->pp, from, &fs, &fc);
        ro->from = fs;
        ro->chunk = fc;
        ro->rdv = tab->p2p_rendezvous && fs != i && tab->p2p_bytes && tab->p2p_bytes[from] > tab->p2p_eager_bytes;
        st->any_rdv |= ro->rdv;
      }
  return st;
}

static Message *msg_at(const Sim *sim, int rank, int type, int mb) {
  return &sim->ranks[rank].msgs[((gsize)type * sim->m + mb) * sim->vpp];
}

/* Take the live configuration (FALSE when a rank is outside its region). */
static gboolean live_take(Sim *sim, Live *S) {
  Steady *st = sim->st;
  S->mb_lo = G_MAXINT;
  for (int i = 0; i < sim->n; i++) {
    const Rank *r = &sim->ranks[i];
    const Period *pd = &st->ps->per[i];
    if (r->done || r->pc < pd->a || r->pc + pd->L > pd->b) return FALSE;
    S->pc[i] = r->pc;
    /* the least micro-batch the rank will still read or write: its next
     * round's (later rounds' are larger) or its tail's */
    int lo = pd->tail_min;
    for (guint k = r->pc; k < r->pc + pd->L; k++)
      if (r->prog->instrs[k].mb >= 0) lo = MIN(lo, r->prog->instrs[k].mb);
    S->mb_lo = MIN(S->mb_lo, lo);
  }
  S->mb_hi = MAX(sim->mb_hi, S->mb_lo - 1); /* an empty window: no message left to read */
  return S->mb_hi < sim->m;
}

static RankRec *rec_at(const Steady *st, gint64 k, int i) {
  return &st->rec[(gsize)(k % st->ring) * st->n + i];
}

/* Rank i reaches its boundary k: record what its later instructions read. */
static void steady_record(Sim *sim, int i, gint64 k) {
  const Rank *r = &sim->ranks[i];
  RankRec *q = rec_at(sim->st, k, i);
  *q = (RankRec){k, r->t, r->send_free, r->coll_free, r->coll_run, r->holds->len, r->deferred->len, r->flushed,
                 r->params_gathered, r->pending, r->cur, q->sent_hi, q->recv_hi};
  memcpy(q->sent_hi, r->sent_hi, sizeof(int) * sim->st->v2);
  memcpy(q->recv_hi, r->recv_hi, sizeof(int) * sim->st->v2);
}

/* Every rank has reached its boundary K: store the messages crossing the cut
 * (their values are final: sent before it). FALSE when one is not sent. */
static gboolean cut_store(Sim *sim, gint64 K) {
  Steady *st = sim->st;
  int v = sim->vpp, s = st->ps->s;
  CutMsgs *cm = &st->msgs[K % (st->max_lag + 1)];
  cm->k = -1;
  g_array_set_size(cm->val, 0);
  for (int i = 0; i < sim->n; i++)
    for (int y = 0; y < 2; y++)
      for (int c = 0; c < v; c++) {
        const Route *ro = &st->route[((gsize)i * 2 + y) * v + c];
        int *w = &cm->width[(((gsize)i * 2 + y) * v + c) * 2];
        w[0] = w[1] = 0;
        if (ro->from < 0) continue;
        const Period *rp = &st->ps->per[i], *sp = &st->ps->per[ro->from];
        int yc = y * v + c, ys = y * v + ro->chunk;
        /* sent before the sender's boundary, read from the receiver's on */
        gint64 lo = from_round(rp->recv_min[yc], rp->recv_tail[yc], K, s);
        gint64 hi = rec_at(st, K, ro->from)->sent_hi[ys];
        for (gint64 mb = lo; mb <= hi; mb++) {
          const Message *x = &msg_at(sim, ro->from, y, (int)mb)[ro->chunk];
          if (!x->sent) return FALSE;
          g_array_append_val(cm->val, x->end); /* (a receive reads its end; its start is the send's accounting) */
          w[0]++;
        }
        if (!ro->rdv) continue;
        /* posted before the receiver's boundary, read by a send from the sender's on */
        lo = from_round(sp->send_min[ys], sp->send_tail[ys], K, s);
        hi = rec_at(st, K, i)->recv_hi[yc];
        for (gint64 mb = lo; mb <= hi; mb++) {
          const Message *x = &msg_at(sim, ro->from, y, (int)mb)[ro->chunk];
          if (!x->is_posted) return FALSE;
          g_array_append_val(cm->val, x->posted);
          w[1]++;
        }
      }
  cm->k = K;
  return TRUE;
}

/* The cut K (every rank at its boundary K) against the cut c rounds before:
 * the ranks alike but for their times moved by *Q (`msgs` FALSE); with the
 * crossing messages too (TRUE), *lo the least time of the earlier cut. */
static gboolean cuts_alike(const Sim *sim, gint64 K, int c, gboolean msgs, double *Q, double *lo) {
  const Steady *st = sim->st;
  int n = sim->n, shift = c * st->ps->s;
  *Q = rec_at(st, K, 0)->t - rec_at(st, K - c, 0)->t;
  if (!(*Q > 0)) return FALSE;
  for (int i = 0; i < n; i++) {
    const RankRec *p = rec_at(st, K - c, i), *q = rec_at(st, K, i);
    gboolean sends = st->ps->per[i].sends;
    if (p->k != K - c || q->k != K || q->t - p->t != *Q ||
        (sends ? q->send_free - p->send_free != *Q : q->send_free != p->send_free) || p->holds || q->holds ||
        p->coll_free != q->coll_free || p->coll_run != q->coll_run || p->deferred != q->deferred ||
        p->flushed != q->flushed || p->params_gathered != q->params_gathered || p->pending != q->pending ||
        p->cur != q->cur)
      return FALSE;
    /* the routes the rounds send and receive on move on; the others stay */
    const Period *pd = &st->ps->per[i];
    for (int k = 0; k < st->v2; k++)
      if (q->sent_hi[k] != p->sent_hi[k] + (pd->send_min[k] < G_MAXINT ? shift : 0) ||
          q->recv_hi[k] != p->recv_hi[k] + (pd->recv_min[k] < G_MAXINT ? shift : 0))
        return FALSE;
  }
  if (!msgs) return TRUE;
  const CutMsgs *P = &st->msgs[(K - c) % (st->max_lag + 1)], *C = &st->msgs[K % (st->max_lag + 1)];
  if (P->k != K - c || C->k != K || P->val->len != C->val->len ||
      memcmp(P->width, C->width, sizeof(int) * n * st->v2 * 2))
    return FALSE;
  for (int i = 0; i < n; i++) {
    const RankRec *p = rec_at(st, K - c, i);
    *lo = MIN(*lo, p->t);
    if (st->ps->per[i].sends) *lo = MIN(*lo, p->send_free);
  }
  const double *a = (const double *)P->val->data, *b = (const double *)C->val->data;
  for (guint k = 0; k < P->val->len; k++) {
    if (b[k] - a[k] != *Q) return FALSE;
    *lo = MIN(*lo, a[k]);
  }
  return TRUE;
}

/* How many c-round blocks may be jumped from the live configuration C, the
 * cut K - c and the cut K alike with the times moved by Q, every time read
 * from the cut K - c on at least lo: 0 when the times leave lo's binade. */
static gint64 steady_blocks(const Sim *sim, const Live *C, int c, double Q, double lo) {
  const Steady *st = sim->st;
  double hi = 0; /* the largest time computed so far: a message ends by its sender's send_free */
  for (int i = 0; i < sim->n; i++) {
    hi = MAX(hi, sim->ranks[i].t);
    if (st->ps->per[i].sends) hi = MAX(hi, sim->ranks[i].send_free);
  }
  int E;
  frexp(hi, &E); /* hi in [2^(E-1), 2^E) */
  if (!(lo >= ldexp(1.0, E - 1))) return 0;
  double qu = ldexp(Q, 53 - E), hu = ldexp(hi, 53 - E); /* in units of u: integers below 2^53 */
  if (qu != floor(qu) || fmod(qu, 2.0) != 0 || hu != floor(hu)) return 0;
  gint64 j = ((G_GINT64_CONSTANT(1) << 53) - 1 - (gint64)hu) / (gint64)qu; /* hi + j·Q < 2^E */
  for (int i = 0; i < sim->n; i++) {
    const Period *pd = &st->ps->per[i];
    gint64 step = (gint64)c * pd->L;
    j = MIN(j, ((gint64)pd->b - 1 - C->pc[i]) / step); /* the jumped rounds' instructions repeat */
    /* each chunk's last backward (its duration kept for the overlapped
     * reduction, engine's last_bwd) is run, not jumped over */
    for (int ch = 0; ch < sim->vpp; ch++) {
      int q = sim->ranks[i].last_bwd[ch];
      if (q >= (gint64)C->pc[i]) j = MIN(j, (q - (gint64)C->pc[i]) / step);
    }
    if (pd->tail_min < G_MAXINT) j = MIN(j, ((gint64)pd->tail_min - C->mb_lo) / ((gint64)c * st->ps->s));
  }
  j = MIN(j, ((gint64)sim->m - 1 - C->mb_hi) / ((gint64)c * st->ps->s));
  return MAX(j, 0);
}

static void steady_jump(Sim *sim, const Live *C, int c, double Q, gint64 j) {
  Steady *st = sim->st;
  g_atomic_int_inc(&n_jumps);
  double jq = (double)j * Q; /* exact: a multiple of u below 2^E */
  int shift = (int)(j * c * st->ps->s), v = sim->vpp;
  for (int i = 0; i < sim->n; i++) {
    Rank *r = &sim->ranks[i];
    const Period *pd = &st->ps->per[i];
    guint64 d = (guint64)j * c * pd->L;
    r->pc += (guint)d;
    r->t += jq;
    if (pd->sends) r->send_free += jq;
    for (int k = 0; k < st->v2; k++) {
      if (pd->send_min[k] < G_MAXINT) r->sent_hi[k] += shift;
      if (pd->recv_min[k] < G_MAXINT) r->recv_hi[k] += shift;
    }
    sim->n_instr += d;
    sim->n_jumped += d;
    st->crossed[i] += j * c;
    st->next[i] = st->next[i] != G_MAXUINT && st->next[i] + d + pd->L <= pd->b ? st->next[i] + (guint)d : G_MAXUINT;
  }
  for (int i = 0; i < sim->n; i++)
    for (int y = 0; y < 2; y++)
      for (int mb = C->mb_hi; mb >= C->mb_lo; mb--) {
        Message *src = msg_at(sim, i, y, mb), *dst = msg_at(sim, i, y, mb + shift);
        for (int k = 0; k < v; k++) {
          Message x = src[k];
          if (x.sent) {
            x.start += jq;
            x.end += jq;
          }
          if (x.is_posted) x.posted += jq;
          dst[k] = x;
        }
      }
  if (C->mb_hi >= C->mb_lo) sim->mb_hi = C->mb_hi + shift;
  /* the cuts start over; the ranks ahead of the cut have reached the later ones */
  st->done += j * c;
  for (gsize k = 0; k < (gsize)st->ring * sim->n; k++) st->rec[k].k = -1;
  for (int k = 0; k <= st->max_lag; k++) st->msgs[k].k = -1;
  for (int k = 0; k < st->ring; k++) st->count_k[k] = -1;
  for (int i = 0; i < sim->n; i++)
    for (gint64 k = st->done; k < st->crossed[i]; k++) {
      int slot = (int)(k % st->ring);
      if (st->count_k[slot] != k) st->count_k[slot] = k, st->count[slot] = 0;
      st->count[slot]++;
    }
  st->armed = FALSE;
}

/* Every rank has reached its boundary K: compare the cut with the last
 * ones, jump when one repeats. */
static void steady_cut(Sim *sim, gint64 K) {
  Steady *st = sim->st;
  gboolean seen = FALSE, stored = st->armed && cut_store(sim, K);
  for (int c = 1; c <= st->max_lag && c <= K; c++) {
    double Q, lo = G_MAXDOUBLE;
    if (!cuts_alike(sim, K, c, FALSE, &Q, &lo)) continue;
    seen = TRUE;
    if (!stored || !cuts_alike(sim, K, c, TRUE, &Q, &lo)) continue;
    if (!live_take(sim, &st->live)) return;
    gint64 j = steady_blocks(sim, &st->live, c, Q, lo);
    if (j > 0) {
      steady_jump(sim, &st->live, c, Q, j);
      return;
    }
  }
  st->armed = seen; /* store the crossing messages of the next cuts */
}

/* Rank i is at its next boundary: record it; the last rank to reach a cut
 * completes it. */
static void steady_cross(Sim *sim, int i) {
  Steady *st = sim->st;
  const Period *pd = &st->ps->per[i];
  gint64 k = st->crossed[i]++;
  st->next[i] = st->next[i] + 2 * pd->L <= pd->b ? st->next[i] + pd->L : G_MAXUINT;
  if (k - st->done >= st->ring - st->max_lag - 1) {
    /* a rank too far ahead of the others (GPipe's forwards pile up): no
     * cut is compared, every later round is run */
    for (int r = 0; r < sim->n; r++) st->next[r] = G_MAXUINT;
    return;
  }
  steady_record(sim, i, k);
  int slot = (int)(k % st->ring);
  if (st->count_k[slot] != k) st->count_k[slot] = k, st->count[slot] = 0;
  if (++st->count[slot] < sim->n || k != st->done) return;
  st->done = k + 1;
  steady_cut(sim, k);
}

static void run_rank(Sim *sim, Rank *r) {
  while (r->pc < r->prog->n) {
    if (sim->st && r->pc == sim->st->next[r - sim->ranks]) steady_cross(sim, (int)(r - sim->ranks));
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
    g_free(sim->ranks[i].sent_hi);
    g_free(sim->ranks[i].recv_hi);
    g_free(sim->ranks[i].last_bwd_dur);
    if (sim->ranks[i].deferred) g_array_unref(sim->ranks[i].deferred);
    if (sim->ranks[i].holds) g_array_unref(sim->ranks[i].holds);
  }
  g_free(sim->ranks);
  g_free(sim->sim_of);
  g_free(sim->queue);
  if (sim->colls) g_hash_table_unref(sim->colls);
  if (sim->all_colls) g_ptr_array_unref(sim->all_colls);
  steady_free(sim->st);
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
    r->sent_hi = g_new(int, 2 * sim->vpp);
    r->recv_hi = g_new(int, 2 * sim->vpp);
    for (int c = 0; c < 2 * sim->vpp; c++) r->sent_hi[c] = r->recv_hi[c] = -1;
    r->msgs = g_new0(Message, n_msgs);
    r->last_bwd = g_new(int, sim->vpp);
    r->last_bwd_dur = g_new0(double, sim->vpp);
    for (int c = 0; c < sim->vpp; c++) r->last_bwd[c] = -1;
    /* each chunk's last backward, from the end (they are near it) */
    for (guint k = r->prog->n, found = 0; k-- > 0 && found < (guint)sim->vpp;) {
      const PxInstr *in = &r->prog->instrs[k];
      if ((in->kind == PX_OP_BACKWARD || in->kind == PX_OP_BACKWARD_WEIGHT ||
           in->kind == PX_OP_BACKWARD_INPUT) && in->chunk >= 0 && in->chunk < sim->vpp && r->last_bwd[in->chunk] < 0) {
        r->last_bwd[in->chunk] = (int)k;
        found++;
      }
    }
    set_memory(sim, r, 0);
  }
  sim->mb_hi = -1;
  /* with few micro-batches there is little to jump and the checks would cost more than they save */
  if (opt->step_time_only && !opt->full && !g_atomic_int_get(&no_jump))
    sim->st = steady_new(sim);
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
  }
  res->n_instructions = sim->n_instr;
  res->n_jumped = sim->n_jumped;
  if (sim->opt->step_time_only) return res;
  for (int i = 0; i < sim->n; i++) {
    Rank *r = &sim->ranks[i];
    double end = MAX(r->t, MAX(r->send_free, r->coll_free));
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
