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

/* ---- communication around the compute order ---------------------------- */

static void emit_stage(PxProgram *prog, int s, const GArray *ops) {
  int p = prog->pp, parts = prog->parts, v = prog->vpp;
  gboolean dp_reduce = prog->plan.dp > 1;
  gboolean gather = prog->plan.zero >= 3 && prog->plan.dp > 1;
  /* index of each chunk's first forward and last gradient-producing op */
  g_autofree int *first_fwd = g_new(int, v);
  g_autofree int *last_grad = g_new(int, v);
  for (int c = 0; c < v; c++) first_fwd[c] = last_grad[c] = -1;
  for (guint i = 0; i < ops->len; i++) {
    const ComputeOp *op = &g_array_index(ops, ComputeOp, i);
    if (op->kind == PX_OP_FORWARD && first_fwd[op->chunk] < 0) first_fwd[op->chunk] = (int)i;
    if (op->kind == PX_OP_BACKWARD || op->kind == PX_OP_BACKWARD_WEIGHT) last_grad[op->chunk] = (int)i;
  }

  for (guint i = 0; i < ops->len; i++) {
    const ComputeOp *op = &g_array_index(ops, ComputeOp, i);
    int part = op->chunk * p + s;
    switch (op->kind) {
    case PX_OP_FORWARD:
      if (gather && first_fwd[op->chunk] == (int)i)
        px_program_append(prog, s, PX_OP_GATHER_PARAMS, -1, op->chunk, -1);
      if (part > 0) px_program_append(prog, s, PX_OP_RECV_ACT, op->mb, op->chunk, (part - 1) % p);
      if (part == 0 || part == parts - 1) px_program_append(prog, s, PX_OP_LOAD, op->mb, -1, -1);
      px_program_append(prog, s, PX_OP_FORWARD, op->mb, op->chunk, -1);
      if (part < parts - 1) px_program_append(prog, s, PX_OP_SEND_ACT, op->mb, op->chunk, (part + 1) % p);
      break;
    case PX_OP_BACKWARD:
    case PX_OP_BACKWARD_INPUT:
      if (part < parts - 1) px_program_append(prog, s, PX_OP_RECV_GRAD, op->mb, op->chunk, (part + 1) % p);
      px_program_append(prog, s, op->kind, op->mb, op->chunk, -1);
      if (part > 0) px_program_append(prog, s, PX_OP_SEND_GRAD, op->mb, op->chunk, (part - 1) % p);
      break;
    default:
      px_program_append(prog, s, op->kind, op->mb, op->chunk, -1);
      break;
    }
    if (dp_reduce && last_grad[op->chunk] == (int)i)
      px_program_append(prog, s, PX_OP_REDUCE_GRADS, -1, op->chunk, -1);
  }
  if (prog->tied_first_stage >= 0 && (s == prog->tied_first_stage || s == prog->tied_last_stage))
    px_program_append(prog, s, PX_OP_REDUCE_TIED, -1, -1, -1);
  px_program_append(prog, s, PX_OP_OPTIMIZER_STEP, -1, -1, -1);
}

#define INVALID(...) \
  (g_set_error(error, PX_SCHEDULE_ERROR, PX_SCHEDULE_ERROR_INVALID, __VA_ARGS__), FALSE)

static gboolean check_plan(const PxPlan *plan, const PxPartition *part, GError **error) {
  int v = plan->vpp > 0 ? plan->vpp : 1;
  if (plan->pp < 1 || plan->m < 1)
    return INVALID("cannot schedule pp=%d with m=%d micro-batches (validate the plan first)",
                plan->pp, plan->m);
  if (v > 1 && plan->schedule != PX_SCHED_INTERLEAVED)
    return INVALID("%s schedule runs one chunk per rank, but vpp=%d (use interleaved)",
                px_schedule_name(plan->schedule), v);
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
    int a = px_partition_part_rank(part, part->tied_first_part);
    int b = px_partition_part_rank(part, part->tied_last_part);
    if (a != b) {
      prog->tied_first_stage = MIN(a, b);
      prog->tied_last_stage = MAX(a, b);
    }
  }
  g_autoptr(GArray) ops = g_array_new(FALSE, FALSE, sizeof(ComputeOp));
  for (int s = 0; s < prog->pp; s++) {
    g_array_set_size(ops, 0);
    switch (plan->schedule) {
    case PX_SCHED_NAIVE: order_naive(ops, prog->m); break;
    case PX_SCHED_GPIPE: order_gpipe(ops, prog->m); break;
    case PX_SCHED_1F1B: order_1f1b(ops, prog->pp, s, prog->m); break;
    case PX_SCHED_INTERLEAVED: order_interleaved(ops, prog->pp, prog->vpp, s, prog->m); break;
    case PX_SCHED_ZB_H1: order_zb_h1(ops, prog->pp, s, prog->m); break;
    default:
      g_set_error(error, PX_SCHEDULE_ERROR, PX_SCHEDULE_ERROR_INVALID, "unknown schedule %d", (int)plan->schedule);
      return NULL;
    }
    emit_stage(prog, s, ops);
  }
  return g_steal_pointer(&prog);
}
