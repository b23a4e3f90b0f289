/* schedule.h — the program: one instruction stream per pipeline rank, in the
 * manner of DeepSpeed's PipeInstructions. The DP and TP ranks of one stage run
 * the same stream. The simulator executes these streams with predicted
 * durations; the executor interprets the very same streams on devices.
 *
 * Semantics every interpreter follows:
 *  - SEND_ACT / SEND_GRAD post a message and return (asynchronous, ordered
 *    per rank); RECV_ACT / RECV_GRAD block until the matching message is there.
 *    A message is named by (kind, micro-batch, part it leaves from): part k
 *    (px_schedule_part_of: chunk * pp + stage, or the V of zb-v / dualpipev)
 *    sends its output activation to part k+1 and its input gradient to part
 *    k-1. In a V, the last rank holds parts pp-1 and pp: it sends to itself.
 *  - FORWARD(mb, chunk) keeps the chunk's activations until BACKWARD(mb, chunk)
 *    (zb-h1: BACKWARD_INPUT frees most of them, BACKWARD_WEIGHT the rest).
 *  - REDUCE_GRADS(chunk) stands right after the chunk's last backward: from
 *    there the chunk's gradients are final and their DP reduction may start
 *    (overlapped), or it is held until OPTIMIZER_STEP (not overlapped). When
 *    the plan's stack overlaps the reduction and the partition's bucket
 *    layout (buckets.h) gives the chunk's part more than one bucket, the
 *    chunk has one REDUCE_GRADS per bucket instead, in reduction order
 *    (bucket 0 holds the chunk's last layers): `REDUCE_GRADS chunk=c bucket=b
 *    layer=l`, each at the same place, where l is the model layer whose
 *    backward completes the bucket (its first layer). Bucket b's reduction
 *    may start as soon as the chunk's last backward (B, or W when the
 *    backward is split) has run its layers; an interpreter that can act
 *    inside that backward (the executor's per-layer hook) starts it there.
 *    One bucket: bucket = layer = -1, the whole chunk, as without buckets.
 *  - GATHER_PARAMS(chunk) (ZeRO-3) precedes the chunk's first use; the gathered
 *    parameters are held until the chunk's last backward.
 *  - OVERLAP (dualpipev) announces that the next FORWARD and BACKWARD of the
 *    stream form one overlapped F&B pair (DualPipe's overlapped_forward_backward):
 *    both inputs are received before the pair, both outputs sent after it. It
 *    takes no time itself; an interpreter may run the pair one after the other.
 *  - REDUCE_TIED all-reduces tied-embedding gradients between the stages that
 *    hold the tied parts; OPTIMIZER_STEP waits for every reduction.
 *  - Groups (px_program_group_p2p). Sends and receives with the same `group`
 *    (≥ 0) are issued as one group by an interpreter whose sends wait for
 *    their receivers (NCCL's ncclGroupStart/End, Megatron's
 *    batch_isend_irecv), at the group's last member: the sends and receives
 *    that stand between two compute ops, as Megatron pairs
 *    send_forward_recv_backward, with some sends moved to a later group
 *    (Megatron's interleaved send_forward_backward_recv_forward_backward). A
 *    send may stand before compute ops of its stream that precede its
 *    group's last member (it is issued after them); a receive never does. A
 *    send or receive to the rank itself (the bottom of a V) has group -1.
 *    With these groups every schedule runs under rendezvous semantics
 *    without a deadlock (px_program_check_rendezvous). */
#pragma once
#include <glib.h>
#include "plan.h"
#include "partition.h"
#include "buckets.h"

G_BEGIN_DECLS

#define PX_SCHEDULE_ERROR (px_schedule_error_quark())
GQuark px_schedule_error_quark(void);
typedef enum {
  PX_SCHEDULE_ERROR_INVALID,   /* the plan cannot be scheduled ("interleaved needs m divisible by pp") */
} PxScheduleError;

typedef enum {
  PX_OP_LOAD,             /* load micro-batch mb (first stage: inputs, last stage: labels) */
  PX_OP_FORWARD,          /* forward of (mb, chunk) */
  PX_OP_BACKWARD,         /* full backward of (mb, chunk) */
  PX_OP_BACKWARD_INPUT,   /* zb-h1 "B": gradient w.r.t. inputs */
  PX_OP_BACKWARD_WEIGHT,  /* zb-h1 "W": gradient w.r.t. weights */
  PX_OP_SEND_ACT,         /* send (mb, chunk)'s output activation to peer */
  PX_OP_RECV_ACT,         /* receive (mb, chunk)'s input activation from peer */
  PX_OP_SEND_GRAD,        /* send (mb, chunk)'s input gradient to peer */
  PX_OP_RECV_GRAD,        /* receive (mb, chunk)'s output gradient from peer */
  PX_OP_REDUCE_TIED,      /* tied-embedding gradient all-reduce (first and last stage) */
  PX_OP_REDUCE_GRADS,     /* DP all-reduce / ZeRO reduce-scatter of chunk's gradients */
  PX_OP_GATHER_PARAMS,    /* ZeRO-3 all-gather of chunk's parameters */
  PX_OP_OPTIMIZER_STEP,
  PX_OP_OVERLAP,          /* the next FORWARD and BACKWARD form an overlapped F&B pair (dualpipev) */
  PX_OP_N_KINDS
} PxOpKind;

typedef struct {
  PxOpKind kind;
  int mb;     /* micro-batch, -1 when none */
  int chunk;  /* model chunk on this rank (virtual stage), -1 when none */
  int peer;   /* pipeline rank at the other end of a send/recv, -1 otherwise */
  int group;  /* send/recv: the group it is issued in (numbered per stream from 0), -1 otherwise */
  int bucket; /* REDUCE_GRADS in buckets: the bucket of the chunk's part (buckets.h), -1 otherwise */
  int layer;  /* REDUCE_GRADS in buckets: the model layer the bucket waits for, -1 otherwise */
} PxInstr;

typedef struct {
  int stage;        /* pipeline rank */
  guint n;
  PxInstr *instrs;  /* (n) */
  guint alloc;
} PxRankProgram;

typedef struct {
  PxPlan plan;            /* copy of the plan it was made for */
  int pp, vpp, parts, m;
  PxScheduleKind schedule;
  int tied_first_stage;   /* stages taking part in REDUCE_TIED (-1: none) */
  int tied_last_stage;
  PxRankProgram *ranks;   /* (pp) */
  PxBuckets *buckets;     /* the layout its REDUCE_GRADS buckets come from (a copy), NULL: none */
} PxProgram;

/* The program of a plan's schedule. part may be NULL (no tied layers).
 * The plan must be validated (m derived). */
PxProgram *px_program_new(const PxPlan *plan, const PxPartition *part, GError **error);
/* TRUE when px_program_new writes DeepSpeed's pipeline engine order
 * (--stack deepspeed, 1F1B, pp > 1): TrainSchedule's steps, each send a step
 * after its compute (docs/schedules.md). */
gboolean px_schedule_is_deepspeed(const PxPlan *plan);
/* Split every chunk's REDUCE_GRADS into one per bucket of the layout
 * (the part's buckets, in reduction order; parts with one bucket keep theirs)
 * and keep a copy of the layout in the program. px_program_new does it from
 * the partition's layout when the plan's stack overlaps the DP reduction
 * (px_cost_overlap_dp) and dp·cp > 1; for hand-made programs and tests. */
void px_program_split_reductions(PxProgram *prog, const PxBuckets *buckets);
/* The bucket a REDUCE_GRADS instruction of `stage` reduces, or NULL (the whole chunk). */
const PxBucket *px_program_bucket(const PxProgram *prog, int stage, const PxInstr *ins);
/* An empty program (for hand-made programs and tests): pp streams, no instructions. */
PxProgram *px_program_new_empty(const PxPlan *plan);
void px_program_append(PxProgram *prog, int stage, PxOpKind kind, int mb, int chunk, int peer);
/* Number the groups of every stream (px_program_new leaves them -1: the
 * simulator's sends are eager; the executor calls this): each run of sends
 * and receives to other ranks between two compute ops (F, B, BI, W) or
 * REDUCE_TIED / OPTIMIZER_STEP starts as one group; where the streams would
 * then stop under rendezvous semantics, a waiting send moves into a later
 * group of its stream (schedule.c, docs/schedules.md). */
void px_program_group_p2p(PxProgram *prog);
/* Does the program finish when sends complete only once their receive is
 * posted (NCCL)? Every stream runs its instructions one after the other, a
 * group waiting until the matching call of each of its sends and receives
 * is posted (its peer's group reached) or done; messages match in order per
 * (kind, sender, receiver). FALSE, naming each stage and the instruction it
 * waits at, when the streams can never finish, or when a stage sends more
 * messages of a kind to a peer than the peer receives. */
gboolean px_program_check_rendezvous(const PxProgram *prog, GError **error);
void px_program_free(PxProgram *prog);

/* The part (model chunk in layer order) that `stage` runs as its `chunk`:
 * px_schedule_part_of of the program's schedule. */
int px_program_part_of(const PxProgram *prog, int stage, int chunk);

/* What one (micro-batch, chunk) holds on its rank, in bytes: act from its
 * FORWARD to its BACKWARD, or to its BACKWARD_INPUT when the backward is
 * split, and then w until its BACKWARD_WEIGHT (px_activations_w_bytes: the
 * weight GEMMs' inputs and output gradients, Qi et al. 2024's M_W); fwd, bwd
 * and bwd_input, the peak of a FORWARD, a BACKWARD and a BACKWARD_INPUT
 * above the level before it (0: no transient; fwd at least act). */
typedef struct {
  double act, w, fwd, bwd, bwd_input;
} PxChunkHeld;

/* Peak activation bytes that pipeline rank `stage` holds under the plan's
 * schedule, walking its compute order (the one px_program_new emits): a
 * FORWARD adds act, a BACKWARD frees act, a BACKWARD_INPUT frees act - w
 * and a BACKWARD_WEIGHT w; each op's transient on top of the level before it.
 * peak_count (may be NULL): the most (micro-batch, chunk)s holding something
 * at once (from FORWARD to BACKWARD or BACKWARD_WEIGHT). chunks: (vpp).
 * The plan needs pp, vpp, m, schedule. */
double px_schedule_peak_held(const PxPlan *plan, int stage, const PxChunkHeld *chunks, int *peak_count);
/* The walk does not store the order, and once a steady round of the order
 * (ZB-H1's, ZB-H2's and ZB-V's F B W, DualPipeV's overlapped pairs) starts
 * from the state, bit for bit, that the round before it started from, it
 * jumps over the rounds left: each would repeat it.
 * The result is the full walk's, exactly; a large batch costs O(p) rounds,
 * not O(m). Tests: px_schedule_set_full_walk(TRUE) walks every op (the
 * path the jump must agree with), for every thread, until set back. */
void px_schedule_set_full_walk(gboolean on);
/* Tests: how many times the walks (every thread) have jumped so far. */
int px_schedule_walk_jumps(void);
/* The same with w = act (the weight pass frees all) and no transients. */
double px_schedule_peak_activations(const PxPlan *plan, int stage, const double *chunk_act, int *peak_count);

/* The stream a global rank runs (its pipeline coordinate, via px_plan_rank_coords). */
const PxRankProgram *px_program_for_rank(const PxProgram *prog, int rank);

/* Is the op one that occupies the compute stream with model work (F, B, W)? */
gboolean px_op_is_compute(PxOpKind kind);
/* "FORWARD", "SEND_ACT", ... and short forms "F", "B", "BI", "W", "SA", ... */
const char *px_op_name(PxOpKind kind);
const char *px_op_short_name(PxOpKind kind);
gboolean px_op_parse(const char *name, PxOpKind *out);
/* One instruction: "FORWARD mb=3 chunk=0", "SEND_ACT mb=3 chunk=0 peer=2",
 * "REDUCE_GRADS chunk=0 bucket=1 layer=7". */
void px_instr_format(const PxInstr *ins, GString *out);
/* One instruction per line. */
char *px_program_format_stage(const PxProgram *prog, int stage);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxProgram, px_program_free)

G_END_DECLS
