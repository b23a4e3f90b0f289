/* schedule.c — pipeline schedules as instruction streams.
 *
 * Each schedule is first an order of compute ops (F, B or B/W) per stage; the
 * communication around them is then derived from the part each op runs on, so
 * every schedule gets the same send/receive discipline: a receive right
 * before the op that consumes it, a send right after the op that produces it. */
#include "schedule.h"
#include "cost.h"
#include <string.h>

G_DEFINE_QUARK(px-schedule-error-quark, px_schedule_error)

static const struct {
  const char *name, *short_name;
} op_names[PX_OP_N_KINDS] = {
  [PX_OP_LOAD] = {"LOAD", "L"},
  [PX_OP_FORWARD] = {"FORWARD", "F"},
  [PX_OP_BACKWARD] = {"BACKWARD", "B"},
  [PX_OP_BACKWARD_INPUT] = {"BACKWARD_INPUT", "BI"},
  [PX_OP_BACKWARD_WEIGHT] = {"BACKWARD_WEIGHT", "W"},
  [PX_OP_SEND_ACT] = {"SEND_ACT", "SA"},
  [PX_OP_RECV_ACT] = {"RECV_ACT", "RA"},
  [PX_OP_SEND_GRAD] = {"SEND_GRAD", "SG"},
  [PX_OP_RECV_GRAD] = {"RECV_GRAD", "RG"},
  [PX_OP_REDUCE_TIED] = {"REDUCE_TIED", "RT"},
  [PX_OP_REDUCE_GRADS] = {"REDUCE_GRADS", "DP"},
  [PX_OP_GATHER_PARAMS] = {"GATHER_PARAMS", "AG"},
  [PX_OP_OPTIMIZER_STEP] = {"OPTIMIZER_STEP", "OPT"},
  [PX_OP_OVERLAP] = {"OVERLAP", "FB"},
};

const char *px_op_name(PxOpKind kind) {
  return (unsigned)kind < PX_OP_N_KINDS ? op_names[kind].name : "?";
}

const char *px_op_short_name(PxOpKind kind) {
  return (unsigned)kind < PX_OP_N_KINDS ? op_names[kind].short_name : "?";
}

gboolean px_op_parse(const char *name, PxOpKind *out) {
  for (int k = 0; k < PX_OP_N_KINDS; k++)
    if (!g_ascii_strcasecmp(name, op_names[k].name) || !g_ascii_strcasecmp(name, op_names[k].short_name)) {
      *out = (PxOpKind)k;
      return TRUE;
    }
  return FALSE;
}

gboolean px_op_is_compute(PxOpKind kind) {
  return kind == PX_OP_FORWARD || kind == PX_OP_BACKWARD || kind == PX_OP_BACKWARD_INPUT ||
         kind == PX_OP_BACKWARD_WEIGHT;
}

void px_instr_format(const PxInstr *ins, GString *out) {
  g_string_append(out, px_op_name(ins->kind));
  if (ins->mb >= 0) g_string_append_printf(out, " mb=%d", ins->mb);
  if (ins->chunk >= 0) g_string_append_printf(out, " chunk=%d", ins->chunk);
  if (ins->peer >= 0) g_string_append_printf(out, " peer=%d", ins->peer);
  if (ins->bucket >= 0) g_string_append_printf(out, " bucket=%d layer=%d", ins->bucket, ins->layer);
}

PxProgram *px_program_new_empty(const PxPlan *plan) {
  PxProgram *prog = g_new0(PxProgram, 1);
  px_plan_copy(&prog->plan, plan);
  prog->pp = plan->pp;
  prog->vpp = plan->vpp > 0 ? plan->vpp : 1;
  prog->parts = prog->pp * prog->vpp;
  prog->m = plan->m;
  prog->schedule = plan->schedule;
  prog->tied_first_stage = prog->tied_last_stage = -1;
  prog->ranks = g_new0(PxRankProgram, prog->pp);
  for (int s = 0; s < prog->pp; s++) prog->ranks[s].stage = s;
  return prog;
}

void px_program_append(PxProgram *prog, int stage, PxOpKind kind, int mb, int chunk, int peer) {
  g_return_if_fail(stage >= 0 && stage < prog->pp);
  PxRankProgram *rp = &prog->ranks[stage];
  if (rp->n == rp->alloc) {
    rp->alloc = rp->alloc ? 2 * rp->alloc : 64;
    rp->instrs = g_renew(PxInstr, rp->instrs, rp->alloc);
  }
  rp->instrs[rp->n++] = (PxInstr){kind, mb, chunk, peer, -1, -1, -1};
}

void px_program_free(PxProgram *prog) {
  if (!prog) return;
  for (int s = 0; s < prog->pp; s++) g_free(prog->ranks[s].instrs);
  g_free(prog->ranks);
  px_buckets_free(prog->buckets);
  px_plan_clear(&prog->plan);
  g_free(prog);
}

int px_program_part_of(const PxProgram *prog, int stage, int chunk) {
  return px_schedule_part_of(prog->schedule, prog->pp, stage, chunk);
}

const PxRankProgram *px_program_for_rank(const PxProgram *prog, int rank) {
  int dp, tp, pp;
  px_plan_rank_coords(&prog->plan, rank, &dp, &tp, &pp);
  g_return_val_if_fail(pp >= 0 && pp < prog->pp, NULL);
  return &prog->ranks[pp];
}

void px_program_split_reductions(PxProgram *prog, const PxBuckets *buckets) {
  g_return_if_fail(buckets && buckets->parts == prog->parts);
  px_buckets_free(prog->buckets);
  prog->buckets = px_buckets_copy(buckets);
  for (int s = 0; s < prog->pp; s++) {
    PxRankProgram *rp = &prog->ranks[s];
    GArray *out = g_array_sized_new(FALSE, FALSE, sizeof(PxInstr), rp->n);
    for (guint i = 0; i < rp->n; i++) {
      PxInstr in = rp->instrs[i];
      int k = in.chunk >= 0 && in.chunk < prog->vpp ? px_program_part_of(prog, s, in.chunk) : -1;
      if (in.kind != PX_OP_REDUCE_GRADS || in.bucket >= 0 || k < 0 || buckets->n[k] <= 1) {
        g_array_append_val(out, in);
        continue;
      }
      for (int b = 0; b < buckets->n[k]; b++) {
        in.bucket = b;
        in.layer = buckets->b[k][b].first;
        g_array_append_val(out, in);
      }
    }
    g_free(rp->instrs);
    rp->n = out->len;
    rp->alloc = out->len;
    rp->instrs = (PxInstr *)g_array_free(out, FALSE);
  }
}

const PxBucket *px_program_bucket(const PxProgram *prog, int stage, const PxInstr *ins) {
  if (!prog->buckets || ins->kind != PX_OP_REDUCE_GRADS || ins->bucket < 0 || ins->chunk < 0 || ins->chunk >= prog->vpp)
    return NULL;
  int k = px_program_part_of(prog, stage, ins->chunk);
  return ins->bucket < prog->buckets->n[k] ? &prog->buckets->b[k][ins->bucket] : NULL;
}

char *px_program_format_stage(const PxProgram *prog, int stage) {
  g_return_val_if_fail(stage >= 0 && stage < prog->pp, NULL);
  GString *s = g_string_new(NULL);
  const PxRankProgram *rp = &prog->ranks[stage];
  for (guint i = 0; i < rp->n; i++) {
    px_instr_format(&rp->instrs[i], s);
    /* an MoE model's expert buckets (reduced over edp) apart from the dense ones */
    const PxBucket *bk = px_program_bucket(prog, stage, &rp->instrs[i]);
    if (bk && bk->expert) g_string_append(s, " experts");
    g_string_append_c(s, '\n');
  }
  return g_string_free(s, FALSE);
}

/* ---- compute orders ---------------------------------------------------- */

typedef struct {
  PxOpKind kind;  /* FORWARD, BACKWARD, BACKWARD_INPUT, BACKWARD_WEIGHT */
  int mb, chunk;
} ComputeOp;

/* Where a compute order goes: a plain growable array (px_program_new), or,
 * with `held` set, straight into px_schedule_peak_held's walk, op by op, with
 * nothing stored. The orders hold O(m) ops per stage and the search walks one
 * per layout's memory, so an op costs a few additions, not an append
 * (GArray's, with a division per append, was most of a large-batch search). */
typedef struct {
  ComputeOp *v;
  guint len, cap;
  /* the walk (held != NULL): px_schedule_peak_held's state */
  const PxChunkHeld *held;
  int chunks;
  double bytes, peak;
  int n, peak_n;
} Ops;

/* One op of px_schedule_peak_held's walk: its transient on top of the level
 * before it, then the level after it. */
static void walk(Ops *w, PxOpKind kind, int chunk) {
  if (chunk < 0 || chunk >= w->chunks) return;
  const PxChunkHeld *c = &w->held[chunk];
  switch (kind) {
  case PX_OP_FORWARD:
    w->peak = MAX(w->peak, w->bytes + MAX(c->fwd, c->act));
    w->bytes += c->act;
    w->n++;
    break;
  case PX_OP_BACKWARD:
    w->peak = MAX(w->peak, w->bytes + c->bwd);
    w->bytes -= c->act;
    w->n--;
    break;
  case PX_OP_BACKWARD_INPUT:
    w->peak = MAX(w->peak, w->bytes + c->bwd_input);
    w->bytes += c->w - c->act;
    break;
  case PX_OP_BACKWARD_WEIGHT:
    w->bytes -= c->w;
    w->n--;
    break;
  default: break;
  }
  w->peak = MAX(w->peak, w->bytes);
  w->peak_n = MAX(w->peak_n, w->n);
}

static void push(Ops *ops, PxOpKind kind, int mb, int chunk) {
  if (ops->held) {
    walk(ops, kind, chunk);
    return;
  }
  if (ops->len == ops->cap) {
    ops->cap = ops->cap ? 2 * ops->cap : 256;
    ops->v = g_renew(ComputeOp, ops->v, ops->cap);
  }
  ops->v[ops->len++] = (ComputeOp){kind, mb, chunk};
}

static void ops_clear(Ops *ops) {
  g_free(ops->v);
  *ops = (Ops){0};
}

/* In a walk, whether an iteration of a steady loop (one fixed pattern of op
 * kinds and chunks, whatever the iteration) starts from the very state (bit
 * for bit) the previous one started from: then every later iteration of the
 * pattern repeats it (the walk reads kinds and chunks, not micro-batches) and
 * the loop may jump over them, its counters advanced as they would have been.
 * Nothing is approximated; it saves the O(m) walk of a large batch. */
typedef struct {
  double bytes, peak;
  int n, peak_n;
  gboolean set;
} Mark;

static gint full_walk; /* px_schedule_set_full_walk */
static gint jumps;     /* px_schedule_walk_jumps */

void px_schedule_set_full_walk(gboolean on) { g_atomic_int_set(&full_walk, on ? 1 : 0); }
int px_schedule_walk_jumps(void) { return g_atomic_int_get(&jumps); }

static gboolean steady(const Ops *ops, Mark *mk) {
  if (!ops->held || g_atomic_int_get(&full_walk)) return FALSE;
  if (mk->set && !memcmp(&mk->bytes, &ops->bytes, sizeof(double)) && !memcmp(&mk->peak, &ops->peak, sizeof(double)) &&
      mk->n == ops->n && mk->peak_n == ops->peak_n) {
    g_atomic_int_inc(&jumps);
    return TRUE;
  }
  *mk = (Mark){ops->bytes, ops->peak, ops->n, ops->peak_n, TRUE};
  return FALSE;
}

/* naive: one micro-batch at a time through the whole pipe. gpipe: every
 * forward, then every backward. */
static void order_naive(Ops *ops, int m) {
  for (int mb = 0; mb < m; mb++) {
    push(ops, PX_OP_FORWARD, mb, 0);
    push(ops, PX_OP_BACKWARD, mb, 0);
  }
}

static void order_gpipe(Ops *ops, int m) {
  for (int mb = 0; mb < m; mb++) push(ops, PX_OP_FORWARD, mb, 0);
  for (int mb = 0; mb < m; mb++) push(ops, PX_OP_BACKWARD, mb, 0);
}

/* PipeDream-Flush / DeepSpeed TrainSchedule / Megatron non-interleaved:
 * min(p - s - 1, m) warm-up forwards, steady 1F1B, cool-down backwards. */
static void order_1f1b(Ops *ops, int p, int s, int m) {
  int warm = MIN(p - s - 1, m);
  for (int i = 0; i < warm; i++) push(ops, PX_OP_FORWARD, i, 0);
  for (int i = 0; i < m - warm; i++) {
    push(ops, PX_OP_FORWARD, warm + i, 0);
    push(ops, PX_OP_BACKWARD, i, 0);
  }
  for (int i = m - warm; i < m; i++) push(ops, PX_OP_BACKWARD, i, 0);
}

/* Megatron-LM forward_backward_pipelining_with_interleaving (microbatch group
 * size = p): virtual micro-batch k runs chunk (k mod pv) / p (backward: the
 * mirror chunk) on micro-batch (k / pv) * p + k mod p; warm-up
 * 2(p - s - 1) + (v - 1) p virtual micro-batches, then 1F1B, then cool-down. */
static int interleaved_chunk(int k, int p, int v, gboolean forward) {
  int c = (k % (p * v)) / p;
  return forward ? c : v - 1 - c;
}

static int interleaved_mb(int k, int p, int v) {
  return (k / (p * v)) * p + k % p;
}

static void order_interleaved(Ops *ops, int p, int v, int s, int m) {
  int total = m * v;
  int warm = MIN(2 * (p - s - 1) + (v - 1) * p, total);
  for (int k = 0; k < warm; k++)
    push(ops, PX_OP_FORWARD, interleaved_mb(k, p, v), interleaved_chunk(k, p, v, TRUE));
  for (int k = 0; k < total - warm; k++) {
    int kf = k + warm;
    push(ops, PX_OP_FORWARD, interleaved_mb(kf, p, v), interleaved_chunk(kf, p, v, TRUE));
    push(ops, PX_OP_BACKWARD, interleaved_mb(k, p, v), interleaved_chunk(k, p, v, FALSE));
  }
  for (int k = total - warm; k < total; k++)
    push(ops, PX_OP_BACKWARD, interleaved_mb(k, p, v), interleaved_chunk(k, p, v, FALSE));
}

/* ZB-H1 (Qi et al. 2023, handcrafted schedule of the reference implementation
 * sail-sg/zero-bubble-pipeline-parallelism): stage s runs p - s - 1 warm-up
 * forwards, then s rounds of F B with the W held back, then F B W rounds, then
 * B W rounds, then the s held-back W's fill the cool-down. At most p - s
 * micro-batches sit between F and B, as in 1F1B. */
static void order_zb_h1(Ops *ops, int p, int s, int m) {
  int f = 0, b = 0, w = 0;
  for (int i = 0; i < p - s - 1 && f < m; i++) push(ops, PX_OP_FORWARD, f++, 0);
  for (int i = 0; i < s && f < m; i++) {
    push(ops, PX_OP_FORWARD, f++, 0);
    push(ops, PX_OP_BACKWARD_INPUT, b++, 0);
  }
  Mark mk = {0};
  while (f < m) {
    if (steady(ops, &mk)) { /* F B W: the rest of the rounds repeat this one */
      int k = m - f;
      f += k, b += k, w += k;
      break;
    }
    push(ops, PX_OP_FORWARD, f++, 0);
    push(ops, PX_OP_BACKWARD_INPUT, b++, 0);
    push(ops, PX_OP_BACKWARD_WEIGHT, w++, 0);
  }
  while (b < m) {
    push(ops, PX_OP_BACKWARD_INPUT, b++, 0);
    push(ops, PX_OP_BACKWARD_WEIGHT, w++, 0);
  }
  while (w < m) push(ops, PX_OP_BACKWARD_WEIGHT, w++, 0);
}

/* ZB-H2 (Qi et al., ICLR 2024, Fig. 3 bottom), the handcrafted schedule of
 * sail-sg/zero-bubble-pipeline-parallelism, megatron/core/pipeline_parallel/
 * efficiency.py get_hand_schedule(warmup_c=2) (the program behind the paper's
 * Table 5): stage s runs 2(p - s - 1) warm-up forwards, then m rounds of
 * [F while forwards remain] B [W once the round index reaches 2s], then the
 * 2s held-back W's. Rank 0 holds 2p - 1 micro-batches (1F1B: p). For
 * m < 2(p - 1) the warm-up is cut at m. */
static void order_zb_h2(Ops *ops, int p, int s, int m) {
  int warm = MIN(2 * (p - s - 1), m), f = 0, w = 0;
  for (int i = 0; i < warm; i++) push(ops, PX_OP_FORWARD, f++, 0);
  Mark mk = {0};
  for (int i = 0; i < m; i++) {
    /* rounds of F B W (forwards left, W's due) repeat: jump to the last forward */
    if (f < m && warm + i >= 2 * (p - 1) && steady(ops, &mk)) {
      int k = m - f; /* f = warm + i here: k <= m - i */
      i += k - 1;
      f += k, w += k;
      continue;
    }
    if (f < m) push(ops, PX_OP_FORWARD, f++, 0);
    push(ops, PX_OP_BACKWARD_INPUT, i, 0);
    if (warm + i >= 2 * (p - 1)) push(ops, PX_OP_BACKWARD_WEIGHT, w++, 0);
  }
  while (w < m) push(ops, PX_OP_BACKWARD_WEIGHT, w++, 0);
}

/* ZB-V (Qi et al., arXiv 2401.10241v2 §6), the handcrafted schedule of
 * sail-sg/zero-bubble-pipeline-parallelism, megatron/core/pipeline_parallel/
 * handcrafted_zb_v get_zb_v_schedule (also PyTorch's ScheduleZBVZeroBubble):
 * built for n = max(2p - 1, m) micro-batches, then every op of a micro-batch
 * >= m is dropped. Chunk 0 runs down the ranks, chunk 1 back up (the V of
 * px_schedule_part_of). */
static void order_zb_v(Ops *ops, int p, int r, int m) {
  int n = MAX(2 * p - 1, m);
  /* with m >= 2p - 1 no op is dropped: the order goes straight to ops */
  Ops tmp = {0}, *all = n == m ? ops : &tmp;
  int f0 = 0, f1 = 0, b0 = 0, b1 = 0;
  for (int i = 0; i < 2 * (p - r) - 1; i++) push(all, PX_OP_FORWARD, f0++, 0);
  for (int i = 0; i < r; i++) {
    push(all, PX_OP_FORWARD, f1++, 1);
    push(all, PX_OP_FORWARD, f0++, 0);
  }
  for (int i = 0; i < p - r; i++) {
    push(all, PX_OP_FORWARD, f1++, 1);
    push(all, PX_OP_BACKWARD_INPUT, b1, 1);
    push(all, PX_OP_BACKWARD_WEIGHT, b1++, 1);
  }
  Mark mk = {0};
  while (f1 < f0 || f0 < n) {
    if (f0 < n && steady(all, &mk)) { /* F0 B0 W0 F1 B1 W1 while forwards remain */
      int k = n - f0;
      f0 += k, b0 += k, f1 += k, b1 += k;
      continue;
    }
    if (f0 < n) push(all, PX_OP_FORWARD, f0++, 0);
    push(all, PX_OP_BACKWARD_INPUT, b0, 0);
    push(all, PX_OP_BACKWARD_WEIGHT, b0++, 0);
    push(all, PX_OP_FORWARD, f1++, 1);
    push(all, PX_OP_BACKWARD_INPUT, b1, 1);
    push(all, PX_OP_BACKWARD_WEIGHT, b1++, 1);
  }
  int w0 = b0, w1 = b1;
  for (int i = 0; i < r; i++) {
    push(all, PX_OP_BACKWARD_INPUT, b0++, 0);
    push(all, PX_OP_BACKWARD_INPUT, b1++, 1);
  }
  for (int i = 0; i < p - r; i++) {
    push(all, PX_OP_BACKWARD_INPUT, b0++, 0);
    push(all, PX_OP_BACKWARD_WEIGHT, w0++, 0);
  }
  while (w1 < b1) push(all, PX_OP_BACKWARD_WEIGHT, w1++, 1);
  while (w0 < b0) push(all, PX_OP_BACKWARD_WEIGHT, w0++, 0);
  for (guint i = 0; i < tmp.len; i++)
    if (tmp.v[i].mb < m) push(ops, tmp.v[i].kind, tmp.v[i].mb, tmp.v[i].chunk);
  ops_clear(&tmp);
}

/* DualPipeV (DeepSeek-V3's DualPipe cut in half), step by step as
 * deepseek-ai/DualPipe dualpipe/dualpipev.py DualPipeV.step: phase 0 is
 * chunk 0, phase 1 chunk 1; a backward "with zero bubble" is B (input) with
 * its W queued FIFO (WeightGradStore) and popped by the later W's; the
 * others are full backwards. OVERLAP marks _forward_backward_chunk pairs. */
typedef struct {
  Ops *ops;
  int f[2], b[2];
  int *wq;            /* deferred W's, FIFO: mb << 1 | chunk, [wq_head, wq_len) */
  guint wq_head, wq_len, wq_cap;
} DualPipeV;

static void dpv_f(DualPipeV *d, int c) { push(d->ops, PX_OP_FORWARD, d->f[c]++, c); }

static void dpv_b(DualPipeV *d, int c, gboolean zb) {
  int mb = d->b[c]++;
  push(d->ops, zb ? PX_OP_BACKWARD_INPUT : PX_OP_BACKWARD, mb, c);
  if (zb) {
    if (d->wq_len == d->wq_cap) {
      d->wq_cap = d->wq_cap ? 2 * d->wq_cap : 64;
      d->wq = g_renew(int, d->wq, d->wq_cap);
    }
    d->wq[d->wq_len++] = mb << 1 | c;
  }
}

static void dpv_w(DualPipeV *d) {
  int v = d->wq_head < d->wq_len ? d->wq[d->wq_head++] : -1; /* (never empty: GQueue's NULL was -1) */
  push(d->ops, PX_OP_BACKWARD_WEIGHT, v >> 1, v & 1);
}

static void dpv_fb(DualPipeV *d, int c0, int c1) {
  push(d->ops, PX_OP_OVERLAP, -1, -1);
  dpv_f(d, c0);
  dpv_b(d, c1, FALSE);
}

static void order_dualpipev(Ops *ops, int p, int r, int m) {
  DualPipeV d = {.ops = ops};
  for (int i = 0; i < (p - r - 1) * 2; i++) dpv_f(&d, 0);          /* step 1: nF0 */
  for (int i = 0; i < r + 1; i++) {                                /* step 2: nF0F1 */
    dpv_f(&d, 0);
    dpv_f(&d, 1);
  }
  for (int i = 0; i < p - r - 1; i++) {                            /* step 3: nB1W1F1 */
    dpv_b(&d, 1, TRUE);
    dpv_w(&d);
    dpv_f(&d, 1);
  }
  Mark mk = {0};
  for (int i = 0; i < m - 2 * p + r + 1; i++) {                    /* step 4: nF0B1F1B0 */
    if (!(i == 0 && r == p - 1) && steady(d.ops, &mk)) { /* (F0 B1)(F1 B0) repeats */
      int k = m - 2 * p + r + 1 - i;
      i += k - 1;
      d.f[0] += k, d.b[1] += k, d.f[1] += k, d.b[0] += k;
      continue;
    }
    if (i == 0 && r == p - 1) {  /* not overlapped, "to further reduce bubble size" */
      dpv_f(&d, 0);
      dpv_b(&d, 1, FALSE);
    } else {
      dpv_fb(&d, 0, 1);
    }
    dpv_fb(&d, 1, 0);
  }
  for (int i = 0; i < p - r - 1; i++) {                            /* step 5: nB1F1B0 */
    dpv_b(&d, 1, FALSE);
    dpv_fb(&d, 1, 0);
  }
  gboolean zb = FALSE;                                             /* step 6: nB1B0 */
  for (int i = 0; i < r + 1; i++) {
    if (i == (r + 1) / 2 && r % 2 == 1) zb = TRUE;
    dpv_b(&d, 1, zb);
    if (i == (r + 1) / 2 && r % 2 == 0) zb = TRUE;
    dpv_b(&d, 0, zb);
  }
  for (int i = 0; i < p - r - 1; i++) {                            /* step 7: nWB0 */
    dpv_w(&d);
    dpv_b(&d, 0, TRUE);
  }
  while (d.wq_head < d.wq_len) dpv_w(&d);                          /* step 8: nW (the r + 1 left) */
  g_free(d.wq);
}

/* ---- communication around the compute order ---------------------------- */

typedef struct {
  PxProgram *prog;
  int s;
  gboolean dp_reduce, gather;
  int *first_fwd, *last_grad;  /* (v) index of each chunk's first forward and last gradient-producing op */
} Emit;

/* The stage holding part k (its neighbour of a send or receive). */
static int stage_of_part(const PxProgram *prog, int k) {
  int st, c;
  px_schedule_part_place(prog->schedule, prog->pp, k, &st, &c);
  return st;
}

/* What precedes a compute op: the gather, its receive, the micro-batch load. */
static void emit_pre(Emit *e, const ComputeOp *op, guint i) {
  PxProgram *prog = e->prog;
  int part = px_program_part_of(prog, e->s, op->chunk), parts = prog->parts;
  if (op->kind == PX_OP_FORWARD) {
    if (e->gather && e->first_fwd[op->chunk] == (int)i)
      px_program_append(prog, e->s, PX_OP_GATHER_PARAMS, -1, op->chunk, -1);
    if (part > 0) px_program_append(prog, e->s, PX_OP_RECV_ACT, op->mb, op->chunk, stage_of_part(prog, part - 1));
    if (part == 0 || part == parts - 1) px_program_append(prog, e->s, PX_OP_LOAD, op->mb, -1, -1);
  } else if ((op->kind == PX_OP_BACKWARD || op->kind == PX_OP_BACKWARD_INPUT) && part < parts - 1) {
    px_program_append(prog, e->s, PX_OP_RECV_GRAD, op->mb, op->chunk, stage_of_part(prog, part + 1));
  }
}

/* What follows it: the send of its output, the chunk's DP reduction. */
static void emit_post(Emit *e, const ComputeOp *op, guint i) {
  PxProgram *prog = e->prog;
  int part = px_program_part_of(prog, e->s, op->chunk), parts = prog->parts;
  if (op->kind == PX_OP_FORWARD && part < parts - 1)
    px_program_append(prog, e->s, PX_OP_SEND_ACT, op->mb, op->chunk, stage_of_part(prog, part + 1));
  if ((op->kind == PX_OP_BACKWARD || op->kind == PX_OP_BACKWARD_INPUT) && part > 0)
    px_program_append(prog, e->s, PX_OP_SEND_GRAD, op->mb, op->chunk, stage_of_part(prog, part - 1));
  if (e->dp_reduce && e->last_grad[op->chunk] == (int)i)
    px_program_append(prog, e->s, PX_OP_REDUCE_GRADS, -1, op->chunk, -1);
}

static void emit_stage(PxProgram *prog, int s, const Ops *ops) {
  int v = prog->vpp;
  g_autofree int *first_fwd = g_new(int, v);
  g_autofree int *last_grad = g_new(int, v);
  /* the gradients are reduced (and ZeRO-3 gathers) over dp·cp: CP ranks hold the same parameters */
  int data = px_plan_data_ranks(&prog->plan);
  Emit e = {prog, s, data > 1, prog->plan.zero >= 3 && data > 1, first_fwd, last_grad};
  for (int c = 0; c < v; c++) first_fwd[c] = last_grad[c] = -1;
  for (guint i = 0; i < ops->len; i++) {
    const ComputeOp *op = &ops->v[i];
    if (op->kind == PX_OP_FORWARD && first_fwd[op->chunk] < 0) first_fwd[op->chunk] = (int)i;
    if (op->kind == PX_OP_BACKWARD || op->kind == PX_OP_BACKWARD_WEIGHT) last_grad[op->chunk] = (int)i;
  }

  for (guint i = 0; i < ops->len; i++) {
    const ComputeOp *op = &ops->v[i];
    if (op->kind == PX_OP_OVERLAP && i + 2 < ops->len) {
      /* an overlapped pair: both receives, both computations, both sends */
      const ComputeOp *a = op + 1, *b = op + 2;
      px_program_append(prog, s, PX_OP_OVERLAP, -1, -1, -1);
      emit_pre(&e, a, i + 1);
      emit_pre(&e, b, i + 2);
      px_program_append(prog, s, a->kind, a->mb, a->chunk, -1);
      px_program_append(prog, s, b->kind, b->mb, b->chunk, -1);
      emit_post(&e, a, i + 1);
      emit_post(&e, b, i + 2);
      i += 2;
      continue;
    }
    emit_pre(&e, op, i);
    px_program_append(prog, s, op->kind, op->mb, op->chunk, -1);
    emit_post(&e, op, i);
  }
  if (prog->tied_first_stage >= 0 && (s == prog->tied_first_stage || s == prog->tied_last_stage))
    px_program_append(prog, s, PX_OP_REDUCE_TIED, -1, -1, -1);
  px_program_append(prog, s, PX_OP_OPTIMIZER_STEP, -1, -1, -1);
}

/* DeepSpeed's pipeline engine (runtime/pipe/schedule.py TrainSchedule.steps):
 * 2 (m + p - 1) steps; in each, stage s runs the forward or the backward of
 * one micro-batch (even stages forward on even steps, odd stages on odd
 * steps; _step_to_micro_batch) or nothing when that micro-batch is out of
 * range, after exchanging with one neighbour: a forward step receives its
 * input, then sends the gradient of the previous step's backward; a backward
 * step sends the previous step's forward output, then receives its
 * gradient. The compute order is order_1f1b's; the sends come a step later.
 * The last step reduces the tied weights, then the gradients, then steps the
 * optimizer. */
static int ds_micro_batch(int p, int s, int t, gboolean *forward) {
  *forward = (t % 2) == (s % 2);
  if (*forward) return (t % 2 == 0 ? t / 2 : (t - 1) / 2) - s / 2;
  return t % 2 == 0 ? t / 2 - p + (s + 1) / 2 : (t - 1) / 2 - p + 1 + s / 2;
}

static void emit_deepspeed_stage(PxProgram *prog, int s) {
  int p = prog->pp, m = prog->m, prev = -1;
  gboolean dp_reduce = px_plan_data_ranks(&prog->plan) > 1, gathered = FALSE;
  gboolean gather = prog->plan.zero >= 3 && dp_reduce;
  for (int t = 0; t < 2 * (m + p - 1); t++) {
    gboolean fwd;
    int mb = ds_micro_batch(p, s, t, &fwd);
    gboolean cur_ok = mb >= 0 && mb < m, prev_ok = prev >= 0 && prev < m;
    if (fwd) {
      if (s > 0 && cur_ok) px_program_append(prog, s, PX_OP_RECV_ACT, mb, 0, s - 1);
      if (s > 0 && prev_ok) px_program_append(prog, s, PX_OP_SEND_GRAD, prev, 0, s - 1);
    } else {
      if (s < p - 1 && prev_ok) px_program_append(prog, s, PX_OP_SEND_ACT, prev, 0, s + 1);
      if (s < p - 1 && cur_ok) px_program_append(prog, s, PX_OP_RECV_GRAD, mb, 0, s + 1);
    }
    if (cur_ok) {
      if (fwd && gather && !gathered) px_program_append(prog, s, PX_OP_GATHER_PARAMS, -1, 0, -1), gathered = TRUE;
      if (fwd && (s == 0 || s == p - 1)) px_program_append(prog, s, PX_OP_LOAD, mb, -1, -1);
      px_program_append(prog, s, fwd ? PX_OP_FORWARD : PX_OP_BACKWARD, mb, 0, -1);
    }
    prev = mb;
  }
  if (prog->tied_first_stage >= 0 && (s == prog->tied_first_stage || s == prog->tied_last_stage))
    px_program_append(prog, s, PX_OP_REDUCE_TIED, -1, -1, -1);
  if (dp_reduce) px_program_append(prog, s, PX_OP_REDUCE_GRADS, -1, 0, -1);
  px_program_append(prog, s, PX_OP_OPTIMIZER_STEP, -1, -1, -1);
}

/* The plan runs DeepSpeed's TrainSchedule: its stack's 1F1B over one chunk per stage. */
gboolean px_schedule_is_deepspeed(const PxPlan *plan) {
  return plan->stack == PX_STACK_DEEPSPEED && plan->schedule == PX_SCHED_1F1B && plan->pp > 1 &&
         plan->vpp <= 1;
}

/* The compute order of stage s; FALSE for an unknown schedule. */
static gboolean compute_order(Ops *ops, PxScheduleKind k, int p, int v, int s, int m) {
  switch (k) {
  case PX_SCHED_NAIVE: order_naive(ops, m); break;
  case PX_SCHED_GPIPE: order_gpipe(ops, m); break;
  case PX_SCHED_1F1B: order_1f1b(ops, p, s, m); break;
  case PX_SCHED_INTERLEAVED: order_interleaved(ops, p, v, s, m); break;
  case PX_SCHED_ZB_H1: order_zb_h1(ops, p, s, m); break;
  case PX_SCHED_ZB_H2: order_zb_h2(ops, p, s, m); break;
  case PX_SCHED_ZB_V: order_zb_v(ops, p, s, m); break;
  case PX_SCHED_DUALPIPEV: order_dualpipev(ops, p, s, m); break;
  default: return FALSE;
  }
  return TRUE;
}

double px_schedule_peak_held(const PxPlan *plan, int stage, const PxChunkHeld *chunks, int *peak_count) {
  int v = plan->vpp > 0 ? plan->vpp : 1, m = MAX(plan->m, 1);
  Ops w = {.held = chunks, .chunks = v};
  if (!compute_order(&w, plan->schedule, plan->pp, v, stage, m)) return 0;
  if (peak_count) *peak_count = w.peak_n;
  return w.peak;
}

double px_schedule_peak_activations(const PxPlan *plan, int stage, const double *chunk_act, int *peak_count) {
  int v = plan->vpp > 0 ? plan->vpp : 1;
  g_autofree PxChunkHeld *held = g_new0(PxChunkHeld, v);
  for (int c = 0; c < v; c++) held[c] = (PxChunkHeld){.act = chunk_act[c], .w = chunk_act[c]};
  return px_schedule_peak_held(plan, stage, held, peak_count);
}

#define INVALID(...) \
  (g_set_error(error, PX_SCHEDULE_ERROR, PX_SCHEDULE_ERROR_INVALID, __VA_ARGS__), FALSE)

static gboolean check_plan(const PxPlan *plan, const PxPartition *part, GError **error) {
  int v = plan->vpp > 0 ? plan->vpp : 1;
  if (plan->pp < 1 || plan->m < 1)
    return INVALID("cannot schedule pp=%d with m=%d micro-batches (validate the plan first)",
                plan->pp, plan->m);
  if (px_schedule_is_v(plan->schedule) && v != 2)
    return INVALID("%s schedule runs two chunks per rank in a V, but vpp=%d", px_schedule_name(plan->schedule), v);
  if (v > 1 && plan->schedule != PX_SCHED_INTERLEAVED && !px_schedule_is_v(plan->schedule))
    return INVALID("%s schedule runs one chunk per rank, but vpp=%d (use interleaved)",
                px_schedule_name(plan->schedule), v);
  if (plan->schedule == PX_SCHED_DUALPIPEV && plan->m < 2 * plan->pp)
    return INVALID("dualpipev needs at least 2·pp=%d micro-batches, m=%d", 2 * plan->pp, plan->m);
  if (plan->schedule == PX_SCHED_INTERLEAVED && plan->m % plan->pp != 0)
    return INVALID("interleaved schedule needs m=%d micro-batches divisible by pp=%d", plan->m,
                plan->pp);
  if (part && part->parts != plan->pp * v)
    return INVALID("partition has %d parts but the plan has pp*vpp=%d", part->parts, plan->pp * v);
  return TRUE;
}

PxProgram *px_program_new(const PxPlan *plan, const PxPartition *part, GError **error) {
  if (!check_plan(plan, part, error)) return NULL;
  g_autoptr(PxProgram) prog = px_program_new_empty(plan);
  if (part && part->tied) {
    int a = stage_of_part(prog, part->tied_first_part);
    int b = stage_of_part(prog, part->tied_last_part);
    if (a != b) {
      prog->tied_first_stage = MIN(a, b);
      prog->tied_last_stage = MAX(a, b);
    }
  }
  Ops ops = {0};
  for (int s = 0; s < prog->pp; s++) {
    ops.len = 0;
    if (!compute_order(&ops, plan->schedule, prog->pp, prog->vpp, s, prog->m)) {
      ops_clear(&ops);
      g_set_error(error, PX_SCHEDULE_ERROR, PX_SCHEDULE_ERROR_INVALID, "unknown schedule %d", (int)plan->schedule);
      return NULL;
    }
    if (px_schedule_is_deepspeed(plan))
      emit_deepspeed_stage(prog, s);
    else
      emit_stage(prog, s, &ops);
  }
  ops_clear(&ops);
  /* the DP reduction in buckets during the backward, where the stack overlaps it */
  if (part && part->buckets && px_plan_data_ranks(plan) > 1 && px_cost_overlap_dp(plan))
    px_program_split_reductions(prog, part->buckets);
  return g_steal_pointer(&prog);
}

/* ---- groups of sends and receives; rendezvous semantics -----------------
 *
 * A group is issued at its last member (the interpreter holds the earlier
 * ones until then). Under rendezvous semantics a stream stops at each group
 * until the matching call of every member is posted (its stage stopped at
 * that call's group) or done. The groups start as the runs of sends and
 * receives between two compute ops; where the streams would stop for good, a
 * send that waits is moved into its stream's next group (Megatron's
 * interleaved steady state sends a forward's output together with the next
 * backward's gradient: send_forward_backward_recv_forward_backward). Only
 * sends move, and only later: a receive stays before the op that consumes it. */

static gboolean is_p2p(PxOpKind k) {
  return k == PX_OP_SEND_ACT || k == PX_OP_RECV_ACT || k == PX_OP_SEND_GRAD || k == PX_OP_RECV_GRAD;
}

static gboolean is_send(PxOpKind k) { return k == PX_OP_SEND_ACT || k == PX_OP_SEND_GRAD; }

/* Ends a run of sends and receives: the ops that make or consume their payloads, and the step's end. */
static gboolean ends_group(PxOpKind k) {
  return px_op_is_compute(k) || k == PX_OP_REDUCE_TIED || k == PX_OP_OPTIMIZER_STEP;
}

/* A send or receive to another rank. */
static gboolean is_remote(const PxRankProgram *rp, guint i) {
  return is_p2p(rp->instrs[i].kind) && rp->instrs[i].peer != rp->stage;
}

typedef struct {
  PxProgram *prog;
  guint **last;       /* [stage][i] remote p2p: the index of its group's last member (i when alone) */
  guint **first;      /* [stage][i] remote p2p: the index of its group's first member */
  int **peer_instr;   /* [stage][i] remote p2p: the index of the matching call on the peer's stream */
  guint *pos;         /* [stage] the next instruction */
} Rdv;

/* last[s] from the group numbers of stage s. */
static void rdv_index_groups(Rdv *r, int s) {
  const PxRankProgram *rp = &r->prog->ranks[s];
  g_autoptr(GHashTable) last = g_hash_table_new(g_direct_hash, g_direct_equal);
  g_autoptr(GHashTable) first = g_hash_table_new(g_direct_hash, g_direct_equal);
  for (guint i = 0; i < rp->n; i++)
    if (is_remote(rp, i) && rp->instrs[i].group >= 0) {
      gpointer g = GINT_TO_POINTER(rp->instrs[i].group);
      g_hash_table_insert(last, g, GUINT_TO_POINTER(i));
      if (!g_hash_table_contains(first, g)) g_hash_table_insert(first, g, GUINT_TO_POINTER(i));
    }
  for (guint i = 0; i < rp->n; i++) {
    gboolean grouped = is_remote(rp, i) && rp->instrs[i].group >= 0;
    gpointer g = GINT_TO_POINTER(rp->instrs[i].group);
    r->last[s][i] = grouped ? GPOINTER_TO_UINT(g_hash_table_lookup(last, g)) : i;
    r->first[s][i] = grouped ? GPOINTER_TO_UINT(g_hash_table_lookup(first, g)) : i;
  }
}

/* first and last of stage s after members of group g moved into group to,
 * both groups lying inside [lo, hi] */
static void rdv_reindex(Rdv *r, int s, guint lo, guint hi, int g, int to) {
  const PxRankProgram *rp = &r->prog->ranks[s];
  guint f[2] = {G_MAXUINT, G_MAXUINT}, l[2] = {0, 0};
  for (guint i = lo; i <= hi; i++) {
    if (!is_remote(rp, i)) continue;
    int k = rp->instrs[i].group == g ? 0 : rp->instrs[i].group == to ? 1 : -1;
    if (k < 0) continue;
    f[k] = MIN(f[k], i);
    l[k] = MAX(l[k], i);
  }
  for (guint i = lo; i <= hi; i++) {
    if (!is_remote(rp, i)) continue;
    int k = rp->instrs[i].group == g ? 0 : rp->instrs[i].group == to ? 1 : -1;
    if (k < 0) continue;
    r->first[s][i] = f[k];
    r->last[s][i] = l[k];
  }
}

static void rdv_free(Rdv *r) {
  for (int s = 0; s < r->prog->pp; s++) {
    g_free(r->last[s]);
    g_free(r->first[s]);
    g_free(r->peer_instr[s]);
  }
  g_free(r->last);
  g_free(r->first);
  g_free(r->peer_instr);
  g_free(r->pos);
}

/* Index the program; FALSE when the sends and receives of a kind between two stages do not pair up. */
static gboolean rdv_init(Rdv *r, PxProgram *prog, GError **error) {
  int pp = prog->pp;
  r->prog = prog;
  r->last = g_new0(guint *, pp);
  r->first = g_new0(guint *, pp);
  r->peer_instr = g_new0(int *, pp);
  r->pos = g_new0(guint, pp);
  for (int s = 0; s < pp; s++) {
    r->last[s] = g_new(guint, prog->ranks[s].n + 1);
    r->first[s] = g_new(guint, prog->ranks[s].n + 1);
    r->peer_instr[s] = g_new(int, prog->ranks[s].n + 1);
    for (guint i = 0; i < prog->ranks[s].n; i++) r->peer_instr[s][i] = -1;
    rdv_index_groups(r, s);
  }
  /* a group is issued at its last member: the sends and receives of a kind
   * between two stages must be issued in the order they stand */
  for (int s = 0; s < pp; s++) {
    const PxRankProgram *rp = &prog->ranks[s];
    g_autoptr(GHashTable) prev = g_hash_table_new(g_direct_hash, g_direct_equal); /* (kind, peer) -> latest instr + 1 */
    for (guint i = 0; i < rp->n; i++) {
      if (!is_remote(rp, i)) continue;
      gpointer key = GINT_TO_POINTER(rp->instrs[i].kind * 65536 + rp->instrs[i].peer + 1);
      guint h = GPOINTER_TO_UINT(g_hash_table_lookup(prev, key));
      if (h && r->last[s][h - 1] > r->last[s][i]) {
        g_autoptr(GString) a = g_string_new(NULL), b = g_string_new(NULL);
        px_instr_format(&rp->instrs[h - 1], a);
        px_instr_format(&rp->instrs[i], b);
        return INVALID("schedule %s: stage %d issues %s (group %d) after %s (group %d), which stands later",
                       px_schedule_name(prog->schedule), s, a->str, rp->instrs[h - 1].group, b->str, rp->instrs[i].group);
      }
      if (!h || r->last[s][i] >= r->last[s][h - 1]) g_hash_table_insert(prev, key, GUINT_TO_POINTER(i + 1));
    }
  }
  /* messages match in order per (kind, sender, receiver) */
  for (int kind = 0; kind < 2; kind++) {
    PxOpKind send_k = kind ? PX_OP_SEND_GRAD : PX_OP_SEND_ACT, recv_k = kind ? PX_OP_RECV_GRAD : PX_OP_RECV_ACT;
    const char *what = kind ? "gradients" : "activations";
    for (int a = 0; a < pp; a++)
      for (int b = 0; b < pp; b++) {
        if (a == b) continue;
        const PxRankProgram *pa = &prog->ranks[a], *pb = &prog->ranks[b];
        guint j = 0;
        for (guint i = 0; i < pa->n; i++) {
          if (pa->instrs[i].kind != send_k || pa->instrs[i].peer != b) continue;
          while (j < pb->n && !(pb->instrs[j].kind == recv_k && pb->instrs[j].peer == a)) j++;
          if (j == pb->n)
            return INVALID("schedule %s: stage %d sends more %s to stage %d than stage %d receives",
                           px_schedule_name(prog->schedule), a, what, b, b);
          r->peer_instr[a][i] = (int)j;
          r->peer_instr[b][j] = (int)i;
          j++;
        }
        while (j < pb->n && !(pb->instrs[j].kind == recv_k && pb->instrs[j].peer == a)) j++;
        if (j < pb->n)
          return INVALID("schedule %s: stage %d receives more %s from stage %d than stage %d sends",
                         px_schedule_name(prog->schedule), b, what, a, a);
      }
  }
  return TRUE;
}

/* Is the matching call of stage s's instruction j posted or done? */
static gboolean rdv_matched(const Rdv *r, int s, guint j) {
  int t = r->prog->ranks[s].instrs[j].peer, k = r->peer_instr[s][j];
  return r->pos[t] >= r->last[t][k];
}

/* Is stage s, at the last member of a group, free to move past it? */
static gboolean rdv_ready(const Rdv *r, int s) {
  const PxRankProgram *rp = &r->prog->ranks[s];
  guint i = r->pos[s];
  if (!is_remote(rp, i) || r->last[s][i] != i) return TRUE;
  int g = rp->instrs[i].group;
  if (g < 0) return rdv_matched(r, s, i);
  for (guint j = r->first[s][i]; j <= i; j++)
    if (is_remote(rp, j) && rp->instrs[j].group == g && !rdv_matched(r, s, j)) return FALSE;
  return TRUE;
}

/* Run every stream as far as it goes; TRUE when all finish. */
static gboolean rdv_run(Rdv *r) {
  for (gboolean moved = TRUE; moved;) {
    moved = FALSE;
    for (int s = 0; s < r->prog->pp; s++)
      while (r->pos[s] < r->prog->ranks[s].n && rdv_ready(r, s)) {
        r->pos[s]++;
        moved = TRUE;
      }
  }
  for (int s = 0; s < r->prog->pp; s++)
    if (r->pos[s] < r->prog->ranks[s].n) return FALSE;
  return TRUE;
}

/* The first group issued after position from on stage s that holds the
 * matching call of a member of the group stage t waits at (-1: none). */
static int rdv_group_waited_for(const Rdv *r, int s, guint from, int t) {
  const PxRankProgram *rp = &r->prog->ranks[s], *rt = &r->prog->ranks[t];
  guint at = r->pos[t], best = G_MAXUINT;
  if (at >= rt->n || !is_remote(rt, at)) return -1;
  for (guint j = r->first[t][at]; j <= at; j++)
    if (is_remote(rt, j) && r->last[t][j] == at && rt->instrs[j].peer == s) {
      guint k = (guint)r->peer_instr[t][j];
      if (r->last[s][k] > from && r->last[s][k] < best) best = r->last[s][k];
    }
  return best == G_MAXUINT ? -1 : rp->instrs[best].group;
}

/* The streams stopped: move a send that waits into a later group of its
 * stream: the one its receiver's stage waits for (the two stages then meet
 * in one group each), else the next. FALSE when no stream can. */
static gboolean rdv_defer(Rdv *r) {
  for (int pass = 0; pass < 2; pass++)
    for (int s = 0; s < r->prog->pp; s++) {
      PxRankProgram *rp = &r->prog->ranks[s];
      guint i = r->pos[s];
      if (i >= rp->n || !is_remote(rp, i) || rp->instrs[i].group < 0) continue;
      int g = rp->instrs[i].group, next = -1;
      for (guint j = i + 1; j < rp->n && next < 0; j++)
        if (is_remote(rp, j) && rp->instrs[j].group >= 0 && r->last[s][j] == j) next = rp->instrs[j].group;
      for (guint j = r->first[s][i]; j <= i; j++) {
        if (!is_remote(rp, j) || rp->instrs[j].group != g || !is_send(rp->instrs[j].kind) || rdv_matched(r, s, j)) continue;
        int to = pass == 0 ? rdv_group_waited_for(r, s, i, rp->instrs[j].peer) : next;
        if (to < 0) continue;
        /* later sends of its kind to that peer issued before `to` go with it: messages keep their order */
        guint to_last = 0;
        for (guint k = j; k < rp->n; k++)
          if (is_remote(rp, k) && rp->instrs[k].group == to) to_last = k;
        for (guint k = j + 1; k < to_last; k++)
          if (rp->instrs[k].kind == rp->instrs[j].kind && rp->instrs[k].peer == rp->instrs[j].peer &&
              r->last[s][k] < to_last)
            rp->instrs[k].group = to;
        rp->instrs[j].group = to;
        rdv_reindex(r, s, MIN(r->first[s][j], r->first[s][to_last]), to_last, g, to);
        return TRUE;
      }
    }
  return FALSE;
}

void px_program_group_p2p(PxProgram *prog) {
  for (int s = 0; s < prog->pp; s++) {
    PxRankProgram *rp = &prog->ranks[s];
    int next = 0, cur = -1;
    for (guint i = 0; i < rp->n; i++) {
      PxInstr *ins = &rp->instrs[i];
      ins->group = -1;
      if (ends_group(ins->kind)) cur = -1;
      else if (is_remote(rp, i)) {
        if (cur < 0) cur = next++;
        ins->group = cur;
      }
    }
  }
  Rdv r;
  if (rdv_init(&r, prog, NULL))
    while (!rdv_run(&r) && rdv_defer(&r)) {}
  rdv_free(&r);
  /* number the groups in the order they are issued */
  for (int s = 0; s < prog->pp; s++) {
    PxRankProgram *rp = &prog->ranks[s];
    g_autoptr(GHashTable) renum = g_hash_table_new(g_direct_hash, g_direct_equal);
    for (guint i = rp->n; i-- > 0;) /* the last member's position orders the groups */
      if (rp->instrs[i].group >= 0 && !g_hash_table_contains(renum, GINT_TO_POINTER(rp->instrs[i].group)))
        g_hash_table_insert(renum, GINT_TO_POINTER(rp->instrs[i].group), NULL);
    int n_groups = (int)g_hash_table_size(renum), k = n_groups;
    g_hash_table_remove_all(renum);
    for (guint i = rp->n; i-- > 0;)
      if (rp->instrs[i].group >= 0 && !g_hash_table_contains(renum, GINT_TO_POINTER(rp->instrs[i].group)))
        g_hash_table_insert(renum, GINT_TO_POINTER(rp->instrs[i].group), GINT_TO_POINTER(--k));
    for (guint i = 0; i < rp->n; i++)
      if (rp->instrs[i].group >= 0)
        rp->instrs[i].group = GPOINTER_TO_INT(g_hash_table_lookup(renum, GINT_TO_POINTER(rp->instrs[i].group)));
  }
}

gboolean px_program_check_rendezvous(const PxProgram *prog, GError **error) {
  Rdv r;
  gboolean ok = rdv_init(&r, (PxProgram *)prog, error); /* only read */
  if (ok && !rdv_run(&r)) {
    GString *msg = g_string_new(NULL);
    g_string_append_printf(msg, "schedule %s (pp=%d, vpp=%d, m=%d) cannot finish when sends wait for their receives (NCCL):",
                           px_schedule_name(prog->schedule), prog->pp, prog->vpp, prog->m);
    for (int s = 0; s < prog->pp; s++) {
      if (r.pos[s] == prog->ranks[s].n) continue;
      g_string_append_printf(msg, " stage %d waits at ", s);
      px_instr_format(&prog->ranks[s].instrs[r.pos[s]], msg);
      g_string_append_c(msg, ';');
    }
    g_string_truncate(msg, msg->len - 1);
    g_set_error_literal(error, PX_SCHEDULE_ERROR, PX_SCHEDULE_ERROR_INVALID, msg->str);
    g_string_free(msg, TRUE);
    ok = FALSE;
  }
  rdv_free(&r);
  return ok;
}
