/* trace_import.h — one measured training step from a PyTorch profiler
 * (Kineto) Chrome trace, as torch.profiler's export_chrome_trace writes it, or
 * from an Nsight Systems JSON export (`nsys export --type json`: a string
 * table, then one event per line — CudaEvent kernels and TraceProcessEvent
 * CPU ranges with their correlation ids), mapped to the stages the simulator
 * predicts: forward, backward, optimizer, communication, and "other" for what
 * no rule matches.
 *
 * The step is the last "ProfilerStep#N" annotation when there is one (else
 * the span of the events). With GPU kernels (cat "kernel") the stage times are
 * kernel times: NCCL kernels are communication by name, the others take the
 * stage of the CPU op that launched them (runtime event with the same
 * "correlation"), else their name's. Without kernels (a CPU trace) they are
 * the self times of the CPU ops: an op takes the stage its name says, else its
 * enclosing op's, else — outside any named op — forward before the first
 * backward op and "other" after it. Names (case-insensitive):
 *   communication  nccl, gloo:, c10d::, record_param_comms, all_reduce/allreduce,
 *                  all_gather/allgather, reduce_scatter/reducescatter, all_to_all/alltoall
 *   optimizer      optimizer (Optimizer.step#AdamW.step, Optimizer.zero_grad#...),
 *                  multi_tensor_apply
 *   backward       backward (MmBackward0, autograd::engine::evaluate_function: ...
 *                  is named by its function), autograd::engine, dgrad, wgrad
 *   forward        forward (DistributedDataParallel.forward, ## forward ##), nn.module:
 */
#pragma once
#include <glib.h>

/* The largest profiler trace read: 2 GiB (one step of a large run is tens
 * to hundreds of MB; json-glib holds several times the text in memory). */
#define PX_TRACE_MAX_BYTES ((gsize)1 << 31)

G_BEGIN_DECLS

#define PX_TRACE_ERROR (px_trace_error_quark())
GQuark px_trace_error_quark(void);
typedef enum {
  PX_TRACE_ERROR_IO,
  PX_TRACE_ERROR_FORMAT,  /* not a Chrome trace, or no events */
} PxTraceError;

typedef enum {
  PX_STEP_FORWARD,
  PX_STEP_BACKWARD,
  PX_STEP_OPTIMIZER,
  PX_STEP_COMM,
  PX_STEP_OTHER,
  PX_N_STEP_STAGES
} PxStepStage;

const char *px_step_stage_name(PxStepStage s);
/* The stage a name says (rules above), or PX_N_STEP_STAGES when none. */
PxStepStage px_trace_classify_name(const char *name);

typedef struct {
  PxStepStage stage;
  double start, end;  /* s from the step's start */
  int lane;           /* 0: compute (CPU threads, GPU streams of compute), 1: communication */
} PxStepSegment;

typedef struct {
  char *name;
  double seconds;
} PxOtherOp;

typedef struct {
  int rank, world;             /* from the trace's distributedInfo; -1 when absent */
  gboolean gpu;                /* stage times from GPU kernels; FALSE: CPU op self times */
  gboolean nsys;               /* read from an Nsight Systems export (else a Chrome trace) */
  char *step_name;             /* "ProfilerStep#1", or NULL when the whole trace was taken */
  double step_time;            /* s */
  double stage_time[PX_N_STEP_STAGES]; /* s of busy time per stage (threads / streams add up) */
  guint n_events;              /* complete ("X") events inside the step */
  GArray *segments;            /* PxStepSegment, non-overlapping per thread / stream */
  GArray *other;               /* PxOtherOp, by time, largest first */
} PxMeasuredStep;

PxMeasuredStep *px_trace_load(const char *path, GError **error);
void px_measured_step_free(PxMeasuredStep *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxMeasuredStep, px_measured_step_free)

G_END_DECLS
