/* search.h — the layout search: every valid layout of a model on a cluster
 * (tp, pp, dp, virtual stages, micro-batch, ZeRO, offload, checkpointing,
 * sequence parallelism, schedule, rank order; for a mixture of experts the
 * experts' ep over the divisors of the experts and etp of 1 or tp), memory from the core's memory
 * model, an analytic step time from the core's cost table, the best candidates
 * confirmed with the event engine, ranked by simulated step time. And the
 * sizing question: the fewest GPUs whose best layout trains T tokens in D days.
 *
 * The analytic step time of a layout (seconds) is the event engine's
 * (sim/engine.c; one cost model, issue 11 item 7): the layout's program
 * (common/schedule.c, built once per compute block, schedule and ZeRO-3 /
 * DP-overlap variant) simulated over the layout's cost table put together
 * from the task's blocks: the compute block's F, B, W, p2p, loads and tied
 * reduction (ZeRO 0, with the micro-batch, recompute and sp), the state
 * block's DP reduction, optimizer step and overlap (ZeRO stage and offload),
 * with ZeRO-3 its per-pass gathers folded into F, B, W as the core's
 * px_cost_table_new folds them. Pipeline, buckets, tied reduction and the
 * optimizer step are the engine's own rules; nothing is restated here. The
 * same table the core builds for the whole layout gives the same time (tests).
 * With objective time (and no Pareto points) a layout whose lower bound —
 * each rank's m micro-batches of F + B + W after the forwards before its
 * first part, plus its optimizer step — exceeds the `confirm`-th best time
 * found so far is not simulated: it cannot be among the best, whatever the
 * thread count; with objective memory, one whose memory exceeds the
 * `confirm`-th best memory so far. bench_rank prints Kendall's tau between this order and the
 * engine's; the search prints it for the layouts it shows.
 *
 * Memory per GPU is exactly the core's px_memory_new (checked against it by
 * tests): it is evaluated from per-(tp, pp, vpp, order) pieces — model states
 * per (ZeRO, offload), activations per (micro-batch, checkpoint, sequence
 * parallelism) times the schedule's in-flight count — so that one layout costs
 * O(pp) arithmetic, not a pass over the layers; the in-flight activations of
 * a split backward (zb-h1, zb-h2, zb-v, dualpipev) walk the schedule's order
 * once per compute block and schedule (px_schedule_peak_held, which jumps
 * over repeated rounds exactly: docs/cost.md section 6, "Large batches"). */
#pragma once
#include <glib.h>
#include <signal.h>
#include "cluster.h"
#include "engine.h"
#include "model.h"
#include "plan.h"

G_BEGIN_DECLS

#define PX_SEARCH_ERROR (px_search_error_quark())
GQuark px_search_error_quark(void);
typedef enum {
  PX_SEARCH_ERROR_INVALID,  /* a bad --fix, objective or range */
  PX_SEARCH_ERROR_FAILED,   /* the core refused a layout the search had validated */
} PxSearchError;

typedef enum { PX_OBJECTIVE_TIME, PX_OBJECTIVE_MEMORY, PX_OBJECTIVE_GPUS } PxSearchObjective;
gboolean px_search_objective_parse(const char *s, PxSearchObjective *out);

/* One layout, compactly (the knobs the search turns). */
typedef struct {
  int tp, pp, dp, vpp, mbs;
  gint8 zero;
  gint8 offload;   /* PxOffload */
  gint8 ckpt;      /* PxCheckpoint */
  gint8 sp;
  gint8 schedule;  /* PxScheduleKind */
  gint8 order;     /* index into px_search_orders() */
  int cp;          /* context-parallel degree (0 or 1: none); dp·cp·tp·pp = the GPUs */
  int ep, etp;     /* experts' grid (MoE models): ep experts-parallel, etp expert-TP;
                      ep 0: the base plan's ep and etp (dense models: 1 and tp) */
} PxLayout;

/* The six rank orders, innermost first; index 0 is the default tp,dp,pp. */
const PxAxis (*px_search_orders(void))[3];
/* "tp,dp,pp" of order index i. */
char *px_search_order_string(int i);
/* The total order on layouts that breaks every tie (tp, pp, dp, vpp, mbs,
 * ZeRO, offload, checkpoint, sp, schedule, order): <0, 0, >0. */
int px_layout_compare(const PxLayout *a, const PxLayout *b);
/* Set the layout's knobs on a plan (the rest — batch, sequence, precision,
 * partition method, workspace — is the plan's). */
void px_layout_apply(const PxLayout *l, PxPlan *plan);
/* "tp 8 pp 4 dp 8 · interleaved v2 · mbs 1 · ZeRO-1 · ckpt selective · sp"
 * ("tp 8 cp 16 pp 16 dp 8 · ..." with context parallelism) */
char *px_layout_format(const PxLayout *l);

/* Knobs held fixed: -1 leaves a knob free. */
typedef struct {
  int tp, pp, dp, vpp, mbs, zero, offload, ckpt, sp, schedule, order;
  int cp;
  int ep, etp;
} PxSearchFix;
/* The context-parallel degrees the search tries: powers of two whose 2·cp
 * chunks divide the sequence, leaving at least this many tokens per CP rank
 * (the NeMo Framework 24.12 performance summary pre-trains Llama 3 8B and 70B
 * at 8192 tokens with cp 2: 4096 per rank, the smallest share among its
 * published configurations); --fix cp=N tries N. */
#define PX_SEARCH_MIN_CP_TOKENS 4096

/* The most sequences of the global batch per GPU a search takes: it
 * simulates candidates' steps, m = gbs / (dp · mbs) micro-batches each, so
 * its time grows with gbs / GPUs (2048 per GPU: Llama 2 7B on 32 A100s takes
 * about 1 s on two cores, 10 s with --objective memory, longer with
 * every point kept for --pareto, which simulates every feasible layout at
 * its full m, the engine jumping over its steady rounds (docs/cost.md
 * section 6); --gbs 2^20 on 8 GPUs ran for hours). Published
 * runs hold a few per GPU (GPT-3: 1536 sequences on 1024 GPUs; Llama 3
 * 405B: 2048 on 16384). */
#define PX_SEARCH_MAX_SEQS_PER_GPU 2048
void px_search_fix_init(PxSearchFix *f);
/* "tp=8", "ckpt=selective", "schedule=zb-h1", "sp=on", "order=tp,pp,dp", "ep=8", "etp=1" ... */
gboolean px_search_fix_parse(PxSearchFix *f, const char *kv, GError **error);

/* What a long search reports while it runs (called on the caller's thread). */
typedef struct {
  guint64 evaluated, total, feasible;
  double elapsed;            /* s */
  gboolean have_best;
  double best_time;          /* analytic s of the best feasible so far */
  PxLayout best;
} PxSearchProgress;
typedef void (*PxSearchProgressFn)(const PxSearchProgress *p, void *data);

typedef struct {
  PxSearchObjective objective;  /* time (default) or memory; gpus is the sizing loop's */
  double max_memory;            /* bytes per GPU allowed (0: the GPU's memory) */
  double margin;                /* bytes kept free on top of the plan's workspace (default 0) */
  PxSearchFix fix;
  int top;                      /* layouts reported (default 5) */
  int confirm;                  /* candidates simulated (default max(4·top, 16)) */
  int threads;                  /* 0: every core */
  int max_mbs;                  /* micro-batch sizes 1, 2, 4 … up to this (default 8) */
  int max_vpp;                  /* interleaving up to this many chunks (default 8) */
  gboolean tp_across_nodes;     /* allow tp > GPUs per node */
  gboolean keep_points;         /* keep every feasible layout's (memory, time) (Pareto plot) */
  PxSearchProgressFn progress;  /* optional, about every 0.1 s */
  void *progress_data;
  volatile sig_atomic_t *cancel;/* optional: set non-zero to stop early (Ctrl-C) */
} PxSearchOptions;
void px_search_options_init(PxSearchOptions *o);

typedef struct {
  PxLayout layout;
  double memory;          /* peak bytes per GPU (the core's memory model) */
  double analytic_time;   /* s, the engine over the blocks' table (above) */
  gboolean fits;
  /* filled for the confirmed candidates */
  gboolean simulated;
  double step_time;       /* s, event simulation */
  double bubble;          /* fraction of the step, simulated: pipeline idle incl. p2p waits (the table's column) */
  double mfu;             /* model FLOPs / (step · GPUs · peak) */
  double tokens_per_s;
  PxBreakdown breakdown;  /* mean per rank, s */
  double p2p_bytes;       /* bytes the busiest pipeline rank sends to other ranks per step (its program's
                             SEND_ACT / SEND_GRAD; a V's hand-over between a rank's own chunks is free) */
  int gbs, seq;
} PxSearchCandidate;

typedef struct {
  double memory, time;    /* bytes, analytic s */
  PxLayout layout;
} PxSearchPoint;

typedef struct {
  int gpus;
  double capacity;           /* bytes a layout may use (GPU memory or --max-memory, less the margin) */
  double gpu_memory;         /* the GPU's bytes */
  guint64 total;             /* layouts enumerated */
  guint64 evaluated;         /* of them evaluated (less when cancelled) */
  guint64 valid;             /* passing px_plan_validate */
  guint64 feasible;          /* and fitting */
  gboolean cancelled;
  double elapsed;            /* s */
  GArray *top;               /* PxSearchCandidate, best first (≤ top) */
  gboolean have_closest;     /* when nothing fits: the valid layout needing least memory */
  PxSearchCandidate closest;
  GArray *points;            /* PxSearchPoint of every feasible layout (keep_points), else NULL */
  char *why_invalid;         /* the rule the first invalid layout broke (NULL if none did) */
} PxSearchResult;

/* When the fixed knobs leave no layout to enumerate: the rule a fixed value
 * breaks ("--fix vpp=4: pp·vpp = 64 exceeds 32 layers"), or NULL. */
char *px_search_why_empty(const PxModel *model, const PxCluster *cluster, const PxSearchOptions *opt);

/* Search the layouts of `base` (its batch, sequence, precision, partition
 * method and workspace are kept) on every GPU of `cluster`. */
PxSearchResult *px_search_run(const PxModel *model, const PxCluster *cluster, const PxPlan *base,
                              const PxSearchOptions *opt, GError **error);
void px_search_result_free(PxSearchResult *r);

/* Simulate one layout (confirm it): fills the candidate's simulated fields. */
gboolean px_search_confirm(const PxModel *model, const PxCluster *cluster, const PxPlan *base,
                           PxSearchCandidate *c, GError **error);

/* One sentence on why the winner beats the runner-up, from their differences:
 * "pp 4 instead of 8 and selective instead of full recompute: the bubble falls
 *  from 11.0 % to 5.8 % and compute from 410 to 371 ms; it fits with 6.1 GB to spare."
 * When the schedules differ, a second sentence sets the three things a
 * schedule trades against each other side by side: "zb-v against 1f1b:
 * bubble 3.0 % vs 9.1 % of the step (exposed p2p apart), peak memory 20.1 vs
 * 19.8 GB, p2p 402.7 vs 201.3 MB per GPU per step." The bubbles there are the
 * breakdown's (breakdown.bubble / step), not `bubble` (which counts p2p waits).
 * units_scale / units_name for memory (1e9, "GB"). */
char *px_search_explain(const PxSearchCandidate *winner, const PxSearchCandidate *runner_up,
                        double capacity, double units_scale, const char *units_name);

/* The winner's layout under each pipeline schedule (gpipe, 1f1b,
 * interleaved, zb-h1, zb-h2, zb-v, dualpipev; two chunks for interleaving
 * and the V schedules, unless the winner interleaves more), each simulated:
 * why the schedule won, in bubble, memory and p2p volume. Schedules the layout
 * cannot run (m, vpp, layers) are left out. pp = 1: NULL. A new array of
 * PxSearchCandidate (fits against capacity). */
GArray *px_search_schedules(const PxModel *model, const PxCluster *cluster, const PxPlan *base,
                            const PxSearchCandidate *winner, double capacity);

/* Kendall's tau-b between the analytic and the simulated step times of the
 * result's simulated candidates (r->top): 1 when both order them alike, -1
 * reversed; pairs tied in one of the two count against neither (tau-b). 1
 * with fewer than two candidates. */
double px_search_kendall_tau(const PxSearchResult *r);

/* One layout evaluated as the search does it (memory from its blocks, time by
 * the engine over the blocks' table; not px_search_confirm's whole-layout
 * table) — for tests and benchmarks. FALSE when the layout is invalid. */
gboolean px_search_evaluate(const PxModel *model, const PxCluster *cluster, const PxPlan *base,
                            const PxLayout *l, double *memory, double *time);

/* ---- sizing: how many GPUs to train `tokens` in `days` ------------------- */

typedef struct {
  double tokens;        /* training tokens */
  double days;          /* wall-clock budget */
  int min_nodes, max_nodes;
  gboolean all_counts;  /* every node count in the range, not only powers of two */
} PxSizingOptions;

typedef struct {
  int nodes, gpus;
  gboolean found;            /* some layout fits */
  PxSearchCandidate best;    /* its best layout (simulated) */
  double days;               /* to train the tokens */
  double gpu_hours;
  gboolean meets;            /* days <= the budget */
} PxSizingRow;

typedef struct {
  GArray *rows;              /* PxSizingRow, in increasing node count, up to the answer */
  int answer;                /* index into rows, -1 when no count meets the budget */
  gboolean cancelled;
} PxSizingResult;

/* Node counts in increasing order; the first whose best layout (objective
 * time) finishes in time is the answer. With days <= 0, the first count with
 * any fitting layout (the fewest GPUs). The global batch of `base` is kept. */
PxSizingResult *px_search_size(const PxModel *model, const PxCluster *cluster, const PxPlan *base,
                               const PxSearchOptions *opt, const PxSizingOptions *sz, GError **error);
void px_sizing_result_free(PxSizingResult *r);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxSearchResult, px_search_result_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxSizingResult, px_sizing_result_free)

G_END_DECLS
