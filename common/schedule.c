/* schedule.c — pipeline schedules as instruction streams.
 *
 * Each schedule is first an order of compute ops (F, B or B/W) per stage; the
 * communication around them is then derived from the part each op runs on, so
 * every schedule gets the same send/receive discipline: a receive right
 * before the op that consumes it, a send right after the op that produces it. */
#include "schedule.h"
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
  rp->instrs[rp->n++] = (PxInstr){kind, mb, chunk, peer};
}

void px_program_free(PxProgram *prog) {
  if (!prog) return;
  for (int s = 0; s < prog->pp; s++) g_free(prog->ranks[s].instrs);
  g_free(prog->ranks);
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

char *px_program_format_stage(const PxProgram *prog, int stage) {
  g_return_val_if_fail(stage >= 0 && stage < prog->pp, NULL);
  GString *s = g_string_new(NULL);
  const PxRankProgram *rp = &prog->ranks[stage];
  for (guint i = 0; i < rp->n; i++) {
    px_instr_format(&rp->instrs[i], s);
    g_string_append_c(s, '\n');
  }
  return g_string_free(s, FALSE);
}

/* ---- compute orders ---------------------------------------------------- */

typedef struct {
  PxOpKind kind;  /* FORWARD, BACKWARD, BACKWARD_INPUT, BACKWARD_WEIGHT */
  int mb, chunk;
} ComputeOp;

static void push(GArray *ops, PxOpKind kind, int mb, int chunk) {
  ComputeOp op = {kind, mb, chunk};
  g_array_append_val(ops, op);
}

/* naive: one micro-batch at a time through the whole pipe. gpipe: every
 * forward, then every backward. */
static void order_naive(GArray *ops, int m) {
  for (int mb = 0; mb < m; mb++) {
    push(ops, PX_OP_FORWARD, mb, 0);
    push(ops, PX_OP_BACKWARD, mb, 0);
  }
}

static void order_gpipe(GArray *ops, int m) {
  for (int mb = 0; mb < m; mb++) push(ops, PX_OP_FORWARD, mb, 0);
  for (int mb = 0; mb < m; mb++) push(ops, PX_OP_BACKWARD, mb, 0);
}

/* PipeDream-Flush / DeepSpeed TrainSchedule / Megatron non-interleaved:
 * min(p - s - 1, m) warm-up forwards, steady 1F1B, cool-down backwards. */
static void order_1f1b(GArray *ops, int p, int s, int m) {
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

static void order_interleaved(GArray *ops, int p, int v, int s, int m) {
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
static void order_zb_h1(GArray *ops, int p, int s, int m) {
  int f = 0, b = 0, w = 0;
  for (int i = 0; i < p - s - 1 && f < m; i++) push(ops, PX_OP_FORWARD, f++, 0);
  for (int i = 0; i < s && f < m; i++) {
    push(ops, PX_OP_FORWARD, f++, 0);
    push(ops, PX_OP_BACKWARD_INPUT, b++, 0);
  }
  while (f < m) {
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
static void order_zb_h2(GArray *ops, int p, int s, int m) {
  int warm = MIN(2 * (p - s - 1), m), f = 0, w = 0;
  for (int i = 0; i < warm; i++) push(ops, PX_OP_FORWARD, f++, 0);
  for (int i = 0; i < m; i++) {
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
static void order_zb_v(GArray *ops, int p, int r, int m) {
  int n = MAX(2 * p - 1, m);
  g_autoptr(GArray) all = g_array_new(FALSE, FALSE, sizeof(ComputeOp));
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
  while (f1 < f0 || f0 < n) {
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
  for (guint i = 0; i < all->len; i++) {
    const ComputeOp *op = &g_array_index(all, ComputeOp, i);
    if (op->mb < m) g_array_append_val(ops, *op);
  }
}

/* DualPipeV (DeepSeek-V3's DualPipe cut in half), step by step as
 * deepseek-ai/DualPipe dualpipe/dualpipev.py DualPipeV.step: phase 0 is
 * chunk 0, phase 1 chunk 1; a backward "with zero bubble" is B (input) with
 * its W queued FIFO (WeightGradStore) and popped by the later W's; the
 * others are full backwards. OVERLAP marks _forward_backward_chunk pairs. */
typedef struct {
  GArray *ops;
  int f[2], b[2];
  GQueue wq;  /* deferred W's: (mb << 1 | chunk) + 1 */
} DualPipeV;

static void dpv_f(DualPipeV *d, int c) { push(d->ops, PX_OP_FORWARD, d->f[c]++, c); }

static void dpv_b(DualPipeV *d, int c, gboolean zb) {
  int mb = d->b[c]++;
  push(d->ops, zb ? PX_OP_BACKWARD_INPUT : PX_OP_BACKWARD, mb, c);
  if (zb) g_queue_push_tail(&d->wq, GINT_TO_POINTER((mb << 1 | c) + 1));
}

static void dpv_w(DualPipeV *d) {
  int v = GPOINTER_TO_INT(g_queue_pop_head(&d->wq)) - 1;
  push(d->ops, PX_OP_BACKWARD_WEIGHT, v >> 1, v & 1);
}

static void dpv_fb(DualPipeV *d, int c0, int c1) {
  push(d->ops, PX_OP_OVERLAP, -1, -1);
  dpv_f(d, c0);
  dpv_b(d, c1, FALSE);
}

static void order_dualpipev(GArray *ops, int p, int r, int m) {
  DualPipeV d = {.ops = ops};
  g_queue_init(&d.wq);
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
  for (int i = 0; i < m - 2 * p + r + 1; i++) {                    /* step 4: nF0B1F1B0 */
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
  while (!g_queue_is_empty(&d.wq)) dpv_w(&d);                      /* step 8: nW (the r + 1 left) */
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

static void emit_stage(PxProgram *prog, int s, const GArray *ops) {
  int v = prog->vpp;
  g_autofree int *first_fwd = g_new(int, v);
  g_autofree int *last_grad = g_new(int, v);
  /* the gradients are reduced (and ZeRO-3 gathers) over dp·cp: CP ranks hold the same parameters */
  int data = px_plan_data_ranks(&prog->plan);
  Emit e = {prog, s, data > 1, prog->plan.zero >= 3 && data > 1, first_fwd, last_grad};
  for (int c = 0; c < v; c++) first_fwd[c] = last_grad[c] = -1;
  for (guint i = 0; i < ops->len; i++) {
    const ComputeOp *op = &g_array_index(ops, ComputeOp, i);
    if (op->kind == PX_OP_FORWARD && first_fwd[op->chunk] < 0) first_fwd[op->chunk] = (int)i;
    if (op->kind == PX_OP_BACKWARD || op->kind == PX_OP_BACKWARD_WEIGHT) last_grad[op->chunk] = (int)i;
  }

  for (guint i = 0; i < ops->len; i++) {
    const ComputeOp *op = &g_array_index(ops, ComputeOp, i);
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

/* The compute order of stage s; FALSE for an unknown schedule. */
static gboolean compute_order(GArray *ops, PxScheduleKind k, int p, int v, int s, int m) {
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

double px_schedule_peak_activations(const PxPlan *plan, int stage, const double *chunk_act, int *peak_count) {
  int v = plan->vpp > 0 ? plan->vpp : 1, m = MAX(plan->m, 1);
  g_autoptr(GArray) ops = g_array_new(FALSE, FALSE, sizeof(ComputeOp));
  if (!compute_order(ops, plan->schedule, plan->pp, v, stage, m)) return 0;
  double bytes = 0, peak = 0;
  int n = 0, peak_n = 0;
  for (guint i = 0; i < ops->len; i++) {
    const ComputeOp *op = &g_array_index(ops, ComputeOp, i);
    double a = op->chunk >= 0 && op->chunk < v ? chunk_act[op->chunk] : 0;
    if (op->kind == PX_OP_FORWARD) {
      bytes += a;
      n++;
    } else if (op->kind == PX_OP_BACKWARD || op->kind == PX_OP_BACKWARD_WEIGHT) {
      bytes -= a;
      n--;
    }
    peak = MAX(peak, bytes);
    peak_n = MAX(peak_n, n);
  }
  if (peak_count) *peak_count = peak_n;
  return peak;
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
  g_autoptr(GArray) ops = g_array_new(FALSE, FALSE, sizeof(ComputeOp));
  for (int s = 0; s < prog->pp; s++) {
    g_array_set_size(ops, 0);
    if (!compute_order(ops, plan->schedule, prog->pp, prog->vpp, s, prog->m)) {
      g_set_error(error, PX_SCHEDULE_ERROR, PX_SCHEDULE_ERROR_INVALID, "unknown schedule %d", (int)plan->schedule);
      return NULL;
    }
    emit_stage(prog, s, ops);
  }
  return g_steal_pointer(&prog);
}
