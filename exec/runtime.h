/* runtime.h — runs a plan's PxProgram: one thread per rank (dp·tp·pp threads
 * in one process, the `local` communicator), each interpreting its pipeline
 * stage's instruction stream op by op, exactly the stream the simulator runs:
 *
 *  LOAD               read micro-batch mb's windows (first part: inputs, last: targets)
 *  FORWARD / BACKWARD the chunk on the GPT model (exec/gpt.h); zb-h1's
 *                     BACKWARD_INPUT / BACKWARD_WEIGHT hold the weight-gradient
 *                     GEMMs of B for W
 *  SEND_* / RECV_*    point-to-point between pipeline neighbours: sends post and
 *                     return, receives block (with the world's timeout)
 *  REDUCE_GRADS       DP all-reduce (ZeRO 0) or reduce-scatter (ZeRO 1-3) of the
 *                     chunk's flat gradient buffer; a chunk holding the tied
 *                     embedding waits for REDUCE_TIED (the reduction may be held
 *                     until the optimizer, schedule.h). In buckets
 *                     (REDUCE_GRADS chunk=c bucket=b): each bucket all-reduced
 *                     from inside the chunk's last backward, once its layers are
 *                     done (the gpt's per-layer hook; ZeRO: in place, then the
 *                     shard copied; docs/executor.md)
 *  GATHER_PARAMS      ZeRO-3: the chunk's first layer gathered into a slot
 *                     (unless prefetched); the others are gathered layer by
 *                     layer, one ahead, from the gpt's before-layer hook
 *                     (docs/executor.md)
 *  REDUCE_TIED        all-reduce of wte's gradient between first and last stage
 *  OPTIMIZER_STEP     (sequence parallel: norm gradients summed over TP first)
 *                     global-norm clipping over all ranks, AdamW (warm-up + cosine
 *                     learning rate, no decay on 1-D tensors), ZeRO-sharded
 *                     states and an all-gather of the updated weights.
 *
 * The loss of a micro-batch is scaled by 1/(m·dp), so that a step equals the
 * single-rank step on the same global batch. Every op is timed into a
 * PxTimeline (the simulator's format), and the backends count memory by
 * category, to be laid beside px_memory_new's prediction. Dropout is not
 * implemented (the model runs as with p = 0, deterministically): the
 * prediction is made for the model without dropout masks.
 *
 * Mixed precision (dtype bf16 / f16, docs/executor.md): parameters and
 * gradients are half (WEIGHTS, GRADS), the fp32 master and AdamW moments are
 * OPTIMIZER (2 + 2 + 12 B per parameter, the planner's count); the model
 * computes in fp32; gradients are reduced through an fp32 buffer; the
 * optimizer rounds the master into the parameters; fp16 adds dynamic loss
 * scaling (a step with an overflow is skipped and the scale halved). */
#pragma once
#include <glib.h>
#include "backend.h"
#include "comm.h"
#include "memory.h"
#include "model.h"
#include "plan.h"
#include "timeline.h"
#include "zero3.h"

G_BEGIN_DECLS

#define PX_RUNTIME_ERROR (px_runtime_error_quark())
GQuark px_runtime_error_quark(void);
typedef enum {
  PX_RUNTIME_ERROR_INVALID,    /* a plan or option the executor cannot run */
  PX_RUNTIME_ERROR_FAILED,     /* a rank failed during a step (message names rank and op) */
  PX_RUNTIME_ERROR_CHECKPOINT, /* a checkpoint that does not belong to this run */
  PX_RUNTIME_ERROR_NONFINITE,  /* a NaN or Inf loss or gradient norm: the step is not counted */
} PxRuntimeError;

typedef struct {
  const char *backend;   /* "cpu" */
  PxDType dtype;         /* PX_DTYPE_F32 (default) or PX_DTYPE_F64; PX_DTYPE_BF16 or
                            PX_DTYPE_F16: mixed precision (docs/executor.md): half
                            parameters and gradients, an fp32 master copy and fp32
                            AdamW moments, the model computed in fp32 */
  guint64 seed;          /* weights (and synthetic data) */
  const char *data;      /* llm.c token file, NULL: the synthetic corpus of exec/data.h */
  double lr, min_lr;     /* peak and final learning rate */
  int warmup;            /* linear warm-up steps */
  int decay_steps;       /* cosine from the end of warm-up to this step (0: no decay) */
  double beta1, beta2, eps, weight_decay;
  double clip;           /* global gradient-norm clip (0: none) */
  double timeout_s;      /* communicator timeout */
  gboolean rendezvous;   /* every rank a thread: the local communicator in rendezvous mode
                            (NCCL's semantics, comm.h; also PX_COMM_RENDEZVOUS=1) */
  int fault_rank, fault_instr; /* tests: rank fault_rank fails at its instruction
                                  fault_instr of the first step (-1: never) */
  int device;            /* the backend's device index (-1: 0, or the local rank in one-rank mode) */
  /* fp16 dynamic loss scaling (DeepSpeed's DynamicLossScaler and Megatron's
   * DynamicGradScaler; ignored for other dtypes): the loss is multiplied by
   * the scale before backward and the gradients divided by it in the
   * optimizer; a step whose gradients hold an Inf or NaN is skipped and the
   * scale halved (not below 1; an overflow at scale 1 stops the run); after
   * loss_scale_window steps in a row without one the scale doubles. */
  double loss_scale;     /* initial scale (default 65536 = 2^16, DeepSpeed's initial_scale_power 16) */
  int loss_scale_window; /* good steps before the scale doubles (default 1000, DeepSpeed's
                            loss_scale_window and Megatron's --loss-scale-window) */
  const char *agree;     /* px_runtime_new_rank: more "key value" items joined by "; " that every
                            process must share with rank 0 (the command's: steps, save, resume);
                            NULL: none */
} PxRunOptions;

void px_run_options_init(PxRunOptions *o);

typedef struct {
  int step;              /* 1-based */
  double loss;           /* mean over the global batch */
  double grad_norm;      /* before clipping */
  double lr;
  double time_s;         /* wall time of the step */
  double loss_scale;     /* fp16: the loss scale the step ran with (1 otherwise) */
  gboolean skipped;      /* fp16: the gradients overflowed, no update was made (the scale is halved) */
} PxStepResult;

typedef struct {
  int rank, stage, dp, tp; /* dp: the position in the gradient group (d·cp + c with context parallelism) */
  PxMemStats measured;   /* bytes; peak per category */
  PxStageMemory predicted; /* px_memory_new for this stage, scaled to the run's dtype */
  PxMemStats host;       /* offload: bytes on the host backend (the optimizer's side, and the parameter
                            shard as WEIGHTS under parameter offload); zero without; measured.host_*
                            counts the same tensors as the device's host buffers */
  gboolean host_pinned;  /* offload: the host backend's memory is pinned (cuda; px_backend_host_pinned) */
} PxRankMemory;

typedef struct _PxRuntime PxRuntime;

/* Every rank of the plan as a thread of this process, on the `local`
 * communicator. The plan is validated here; precision is taken as the run's
 * dtype. */
PxRuntime *px_runtime_new(const PxModel *model, const PxPlan *plan, const PxRunOptions *opt,
                          GError **error);
/* The one rank px_comm_world_rank(world) of the plan, in a process of its own
 * (mpirun, srun, parallax-exec launch): collective over world, whose size
 * must be the plan's. Its first collective compares what every process was
 * given with rank 0's (the checkpoint fingerprint, the plan, the optimiser,
 * the data file's size and head, opt->agree): a process given another seed,
 * learning rate, batch or layout is refused on every rank with the same
 * sentence, naming it and the first item that differs. Every call below that names the world (step, save,
 * resume, get_param, the gathers) is collective too: all processes make it.
 * world must outlive the runtime. */
PxRuntime *px_runtime_new_rank(const PxModel *model, const PxPlan *plan, const PxRunOptions *opt,
                               PxComm *world, GError **error);
void px_runtime_free(PxRuntime *rt);
int px_runtime_world(const PxRuntime *rt);
/* Steps done so far (also after a resume). */
int px_runtime_steps_done(const PxRuntime *rt);
const PxPlan *px_runtime_plan(const PxRuntime *rt);
gboolean px_runtime_step(PxRuntime *rt, PxStepResult *out, GError **error);
/* The world rank of a one-rank runtime (0 in local mode). */
int px_runtime_rank(const PxRuntime *rt);
/* The memory of a rank of this process; FALSE if it lives in another. */
gboolean px_runtime_memory(PxRuntime *rt, int rank, PxRankMemory *out);
/* ZeRO-3 gathered layer by layer (docs/executor.md): the last step's layer
 * gathers of a rank of this process (FALSE if it lives in another). */
typedef struct {
  int gathers;           /* layers gathered into a slot */
  int on_demand;         /* of them, gathered for the layer about to run (its compute waits for the
                            whole gather), not ahead of it; the rest were prefetched */
} PxZero3Gathers;
gboolean px_runtime_zero3_gathers(PxRuntime *rt, int rank, PxZero3Gathers *out);
/* The last step's layer gathers of a rank of this process, in the order it
 * queued them (*n of them): its instruction, the walk's use it was queued at,
 * the layer, the slot, on demand or not (common/zero3.h's PxZero3Gather,
 * the walk's description) and in received the elements its broadcasts
 * brought the rank; NULL (*n 0) if the rank lives in another process or
 * gathers by layer nothing. */
const PxZero3Gather *px_runtime_zero3_log(PxRuntime *rt, int rank, guint *n);
/* The collectives a rank of this process has called on its DP (dp·cp)
 * communicator since the runtime was made (comm.h px_comm_traffic); FALSE if
 * the rank lives in another process. */
gboolean px_runtime_dp_traffic(PxRuntime *rt, int rank, PxCommTraffic *out);
/* The same for its experts' data-parallel (EDP) communicator (MoE models;
 * FALSE without one). */
gboolean px_runtime_edp_traffic(PxRuntime *rt, int rank, PxCommTraffic *out);
/* Every rank's memory (all: px_runtime_world entries), from every process (collective). */
gboolean px_runtime_gather_memory(PxRuntime *rt, PxRankMemory *all, GError **error);
/* The last step's measured timeline of this process's ranks (owned by the
 * runtime); px_runtime_gather_timeline first makes it every rank's (collective). */
const PxTimeline *px_runtime_timeline(const PxRuntime *rt);
gboolean px_runtime_gather_timeline(PxRuntime *rt, GError **error);
/* The full value of a parameter as this run holds it now (TP shards joined,
 * ZeRO-3 shards gathered): a newly allocated array of the spec's numel, or NULL
 * with an error for an unknown name. */
double *px_runtime_get_param(PxRuntime *rt, const char *name, GError **error);
/* The same for the fp32 master copy of a mixed-precision run (the weights
 * themselves in an f32 / f64 run). */
double *px_runtime_get_master(PxRuntime *rt, const char *name, GError **error);
/* The current fp16 loss scale (1 for other dtypes). */
double px_runtime_loss_scale(const PxRuntime *rt);

/* Checkpoints (exec/checkpoint.h, docs/checkpoint.md): DIR/step-NNNNNNNN/
 * holds one shard file per rank, by global tensor name, and manifest.json
 * (the run's fingerprint, the layout, the files' SHA-256), committed by an
 * atomic rename, then DIR/latest. Resume verifies every file and takes each
 * rank's elements by global name and index, so it works under any dp, tp, pp,
 * vpp and ZeRO stage (bit-exact under the same one); a checkpoint of another
 * model, dtype, seed, data source or global batch is refused. After a failed
 * resume the runtime's state is undefined: free it. */
gboolean px_runtime_save(PxRuntime *rt, const char *dir, GError **error);
gboolean px_runtime_resume(PxRuntime *rt, const char *dir, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxRuntime, px_runtime_free)

G_END_DECLS
