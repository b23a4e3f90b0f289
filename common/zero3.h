/* zero3.h — ZeRO-3 gathered layer by layer (docs/executor.md), described
 * once for the executor and the simulator's timeline.
 *
 * A rank keeps each chunk's weights as its DP shard of the chunk's flat
 * buffer (px_zero_shard over dp·cp; the layers in order, each layer's
 * tensors in order, a tied copy after its layer's own; an MoE model whose
 * experts shard over EDP splits it: the dense tensors over DP, then the
 * routed experts' region over EDP, Megatron-Core's expert distributed
 * optimizer) and gathers a layer
 * into one of two slots before the layer runs: for each DP rank j whose
 * shard [j·S, (j+1)·S) meets the layer's range [lo, hi), a broadcast from j
 * of the intersection. A rank receives the range less its own piece:
 * (hi − lo) − |[lo, hi) ∩ [d·S, (d+1)·S)| elements (an LM head tied to the
 * embedding the rank holds reads wte too: its range in the embedding's chunk
 * is a second piece). Averaged over the DP ranks that is the layer's
 * elements × (dp − 1)/dp, an all-gather's share.
 *
 * Which layers are gathered, and during which instruction, is a walk of the
 * stage's program: every forward, backward or backward-input uses its
 * chunk's layers in the order the model runs them (px_zero3_pass_layers); a
 * layer neither slot holds is gathered there (on demand) into the slot not
 * bound last; after each use the layer used next (the next one of the pass,
 * or after the pass's last the first of the stage's next pass) is gathered
 * into the other slot unless a slot holds it (prefetched, behind the
 * current layer); GATHER_PARAMS gathers its chunk's first layer unless a
 * slot holds it. The weight pass of a split backward reads no weights.
 *
 * The walk is the one description of the gathers: the simulator puts each
 * instruction's bytes on its timeline event (sim/predict.c), and the
 * executor issues exactly the walk's gathers, in its order, into its slots,
 * and binds each use to its slot (exec/runtime.c, docs/executor.md). A
 * layer's element counts come from the chunk's flat layout (common/flat.h,
 * the executor's). */
#pragma once
#include <glib.h>
#include "model.h"
#include "partition.h"
#include "plan.h"
#include "schedule.h"

G_BEGIN_DECLS

/* Whether the plan's ZeRO-3 runs layer by layer: zero 3 with dp·cp > 1 (an
 * MoE model whose experts shard over a group of their own, EDP, included:
 * the split layout, a layer's dense range gathered over DP and its experts'
 * over EDP), or with dp·cp 1 and such experts over edp > 1 (only the
 * experts' ranges to gather; the program has no GATHER_PARAMS, so the
 * step's first layer is gathered on demand in its first forward), or with
 * the parameters offloaded (ZeRO-Infinity's offload_param) whatever dp·cp:
 * each layer is fetched from host memory into the device before its use
 * (with dp·cp 1 an upload alone, again on demand). */
gboolean px_zero3_by_layer(const PxModel *model, const PxPlan *plan);

/* The layers a pass of part [first, end) uses, in order (a layer may repeat:
 * full recompute runs a block again before its backward): the forward first
 * to last; the backward last to first, under full recompute each checkpoint
 * segment's blocks recomputed (first to last) when the backward reaches the
 * segment, then its own. Returns the count; *layers newly allocated. */
int px_zero3_pass_layers(const PxModel *model, const PxPlan *plan, int first, int end, gboolean backward,
                         int **layers);
/* The first of them (the layer a pass gathers first). */
int px_zero3_pass_first(const PxModel *model, const PxPlan *plan, int first, int end, gboolean backward);
/* The stage's next pass that reads weights (a forward, backward or
 * backward-input) after instruction i of its program: its chunk and first
 * layer; FALSE when none is left. */
gboolean px_zero3_next_pass(const PxModel *model, const PxPlan *plan, const PxPartition *part, const PxProgram *prog,
                            int stage, guint i, int *chunk, int *layer);

/* A layer a pass uses, in the order the gpt runs them: before the layer
 * runs, its weights are bound to the slot that holds it. */
typedef struct {
  guint instr;       /* the instruction of the pass */
  int chunk, layer;
  int slot;          /* 0 or 1 */
} PxZero3Use;

/* A layer gather, in the order the rank issues them. */
typedef struct {
  guint instr;       /* the instruction during which it is queued */
  int use;           /* the use (index in uses) it is queued at: an on-demand gather before the use
                        binds its slot (the layer about to run), a prefetch after; -1: GATHER_PARAMS's */
  int chunk, layer;  /* the layer gathered */
  int slot;          /* into slot 0 or 1 */
  gboolean on_demand;
  gint64 received;   /* elements the rank receives in it */
} PxZero3Gather;

typedef struct {
  guint n;           /* the stage's program length */
  int *gathers;      /* (n) layer gathers queued while instruction i runs */
  int *on_demand;    /* (n) of them, for the layer about to run (not ahead of it) */
  gint64 *received;  /* (n) elements the rank receives in them */
  /* the description the executor follows (exec/runtime.c): */
  guint n_uses;
  PxZero3Use *uses;  /* (n_uses) every pass's layers, in program order */
  guint *use_at;     /* (n + 1) instruction i's uses: [use_at[i], use_at[i + 1]) */
  guint n_seq;
  PxZero3Gather *seq; /* (n_seq) every gather, in the order issued */
  guint *seq_at;     /* (n + 1) instruction i's gathers: [seq_at[i], seq_at[i + 1]) */
} PxZero3Walk;

/* The walk of global rank `rank`'s program (its stage's; its DP coordinate
 * d·cp + c and, split, its EDP position pick its own pieces) of a plan
 * gathered by layer (px_zero3_by_layer). */
PxZero3Walk *px_zero3_walk_new(const PxModel *model, const PxPlan *plan, const PxPartition *part,
                               const PxProgram *prog, int rank);
void px_zero3_walk_free(PxZero3Walk *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxZero3Walk, px_zero3_walk_free)

G_END_DECLS
