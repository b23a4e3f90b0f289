/* engine.h — discrete-event simulation of a program with a cost table.
 *
 * Every simulated rank runs its instruction stream in order on a compute
 * stream, with a p2p send stream and a collective stream beside it. Sends are
 * asynchronous; a receive blocks the compute stream until its message has
 * arrived; a collective starts when every member has arrived (and its
 * collective stream is free). DP gradient reductions run on the collective
 * stream while backward goes on when table->overlap_dp, and are held until the
 * optimizer step otherwise; a REDUCE_GRADS of one bucket (the program's, from
 * the partition's layout, buckets.h) costs its share of the chunk's reduction
 * and may start once the chunk's last backward (B, or W) has run its layers,
 * `after` of that backward before its end (the overlap is the program's, not
 * the cost table's). A program that cannot finish is reported as a
 * PX_ENGINE_ERROR_DEADLOCK naming the stuck ranks and instructions.
 *
 * Parts are placed by the program's px_program_part_of (a V for zb-v and
 * dualpipev: the last rank's hand-over between its two chunks costs nothing).
 * An OVERLAP instruction marks the next two compute ops as one F&B pair: they
 * run back to back (F + B) and are flagged `paired` in the timeline.
 *
 * By default one rank per stage is simulated (dp = tp = 0; the others run the
 * same stream at the same times); options->full simulates every rank. */
#pragma once
#include <glib.h>
#include "schedule.h"
#include "cost.h"
#include "timeline.h"

G_BEGIN_DECLS

#define PX_ENGINE_ERROR (px_engine_error_quark())
GQuark px_engine_error_quark(void);
typedef enum {
  PX_ENGINE_ERROR_DEADLOCK,  /* the program cannot finish */
  PX_ENGINE_ERROR_INVALID,   /* program and cost table do not fit together, or a bad instruction */
} PxEngineError;

/* Communication whose wait on the compute stream is reported apart from the bubble. */
typedef enum {
  PX_COMM_P2P,     /* pipeline sends/receives */
  PX_COMM_DP,      /* DP gradient reduction */
  PX_COMM_TIED,    /* tied-embedding reduction */
  PX_COMM_GATHER,  /* ZeRO-3 parameter gather */
  PX_N_COMM
} PxCommKind;

/* Where each rank's program repeats (the steady rounds the engine may jump
 * over with step_time_only): found once per program and handed to every
 * px_simulate of it (the search runs one program over several cost tables).
 * NULL when the program has too few micro-batches or no repeating rounds. */
typedef struct PxSteady PxSteady;
PxSteady *px_steady_new(const PxProgram *prog);
void px_steady_free(PxSteady *steady);

typedef struct {
  /* Memory, all optional (NULL: 0). Bytes per GPU. */
  const double *act_bytes;     /* (parts) one micro-batch's activations on a part: allocated by FORWARD,
                                  freed by BACKWARD / BACKWARD_INPUT */
  const double *act_w_bytes;   /* (parts) of act_bytes, what BACKWARD_INPUT keeps until BACKWARD_WEIGHT */
  const double *static_bytes;  /* (pp) held all step: weights, gradients, optimizer, buffers, workspace */
  const double *gather_bytes;  /* (parts) ZeRO-3 gathered parameters, from GATHER_PARAMS to the
                                  chunk's last backward */
  /* ZeRO-3 gathered by layer (common/zero3.h), optional (NULL: none): the
   * bytes a rank's layer gathers receive while each instruction of its
   * stage's program runs (a forward or backward, GATHER_PARAMS), its
   * timeline event's bytes: (world) [global rank][instruction], NULL for a
   * rank not simulated */
  const double *const *zero3_bytes;
  gboolean full;               /* every rank, not one per stage */
  gboolean no_timeline;        /* do not record events (searches, benchmarks) */
  /* Only step_time (and n_instructions, n_jumped) is wanted (the search's
   * step times): the engine may jump over repeated steady rounds of the
   * pipeline, exactly (docs/cost.md section 6, "Large batches"); every other
   * result field is left 0. */
  gboolean step_time_only;
  const PxSteady *steady;      /* the program's (px_steady_new) for step_time_only; NULL: found by each run */
} PxSimOptions;

/* Tests and benchmarks: TRUE makes step_time_only run every round (no jump),
 * the reference the jump is checked against. Process-wide. */
void px_engine_set_no_jump(gboolean on);
/* Jumps taken so far in the process (tests: the fast way took one). */
int px_engine_jumps(void);

typedef struct {
  int rank, stage;             /* global rank, pipeline rank */
  double start;                /* its first compute op (F, B, W) starts */
  double end;                  /* its last op ends */
  double busy;                 /* compute stream busy (F, B, W, load, optimizer) */
  double idle;                 /* step_time - busy */
  double exposed[PX_N_COMM];   /* compute stream waiting on communication in flight */
  double peak_memory;          /* bytes */
  int peak_in_flight;          /* (micro-batch, chunk)s between FORWARD and BACKWARD(_INPUT) */
  double op_time[PX_OP_N_KINDS]; /* seconds per instruction kind: compute ops on the compute stream,
                                  sends on the send stream, collectives on the collective stream */
} PxRankResult;

typedef struct {
  double compute;              /* busy */
  double exposed[PX_N_COMM];
  double bubble;               /* idle not explained by communication */
} PxBreakdown;

typedef struct {
  double step_time;            /* s */
  int pp;
  int n_ranks;                 /* simulated ranks */
  PxRankResult *ranks;         /* (n_ranks) */
  double *stage_peak_memory;   /* (pp) bytes, max over the stage's simulated ranks */
  int *stage_peak_in_flight;   /* (pp) */
  double bubble_fraction;      /* mean over ranks of pipeline idle / step_time: idle less the waits
                                  for DP / tied reductions and ZeRO-3 gathers (p2p waits count) */
  double dp_exposed_fraction;  /* mean over ranks of the exposed DP reduction / step_time */
  double bubble_overhead;      /* mean idle / mean busy */
  double span;                 /* max over ranks of end - start: the step when each rank may
                                  begin as soon as its first input is there (Qi et al. 2024 §4,
                                  optimizer post-validation; the convention of their Table 5 for
                                  ZB-H2) */
  PxBreakdown breakdown;       /* mean per rank, seconds; sums to step_time */
  guint64 n_instructions;      /* instructions executed (or jumped over) */
  guint64 n_jumped;            /* of them jumped over (step_time_only) */
  PxTimeline *timeline;        /* NULL with no_timeline */
} PxSimResult;

/* opt may be NULL (defaults). */
PxSimResult *px_simulate(const PxProgram *prog, const PxCostTable *table, const PxSimOptions *opt,
                         GError **error);
void px_sim_result_free(PxSimResult *res);
const char *px_comm_kind_name(PxCommKind k);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxSimResult, px_sim_result_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxSteady, px_steady_free)

G_END_DECLS
