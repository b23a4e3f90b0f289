/* test_runtime_zero3.c — ZeRO-3 gathered layer by layer, one layer ahead
 * (docs/executor.md): a ZeRO-3 run against the same run under ZeRO-2. Both
 * reduce-scatter the same gradients into the same shards and update them
 * alike; ZeRO-2 then all-gathers the updated shards into full weights, while
 * ZeRO-3 broadcasts each layer's pieces from the shards into one of two slots
 * before the layer runs. The weights a layer reads are the same numbers, so
 * the losses of 5 steps and every parameter afterwards are equal (asserted
 * exactly). Layouts: dp 2, dp 2 · tp 2, dp 2 · pp 2 (1f1b, zb-h1: the W pass
 * reads no weights, interleaved: the two slots shared by the rank's chunks),
 * full recompute (checkpoint segments of 1 and 2 blocks: the recompute's
 * order of layers), bf16 (fp32 master weights), and tiny-moe ep 2 · dp 4
 * (the experts shard over edp 2: a layer's dense range broadcast over DP,
 * its experts' over EDP). Every case again with the ZeRO-3 run under
 * rendezvous mode (as NCCL).
 *
 * Memory: the only difference between the two runs' buffers is the two slots
 * (ZeRO-2 holds its full weights as WEIGHTS): the BUFFERS held after the
 * steps by ZeRO-3 less ZeRO-2's equal the planner's difference (fp32: the
 * prediction's dtype; common/memory.c: two layers, current + prefetch) and,
 * for tiny-gpt without TP, by hand 2 × 49,984 elements (a block: 12h² + 13h,
 * h = 64; the largest layer: the embedding is 256·64 + 64·64 = 20,480); and
 * with pp 1 the measured peak of BUFFERS is above ZeRO-2's by the slots
 * exactly, not by the whole chunk (220,544 elements) as when the whole chunk
 * was gathered and held to its last backward (with pp the pipeline's
 * messages in flight at the peak depend on timing: printed only). */
#include <glib.h>
#include <math.h>
#include <string.h>
#include "runtime.h"
#include "schedule.h"
#include "parity.h"
#include "predict.h"
#include "partition.h"
#include "moe.h"
#include "zero3.h"

typedef struct {
  Layout l;
  PxDType dt;
  gint64 max_layer; /* by hand, elements (0: not computed by hand) */
  int ep;           /* MoE: expert parallelism (0: 1) */
  int etp;          /* MoE: expert tensor parallelism (0: tp) */
} Case;

static PxRuntime *case_runtime(const PxModel *model, const Case *c, int zero, gboolean rendezvous) {
  PxPlan plan;
  Layout l = c->l;
  l.zero = zero;
  layout_plan(&l, &plan);
  plan.ep = MAX(c->ep, 1);
  plan.etp = c->etp;
  g_autoptr(GError) error = NULL;
  PxRuntime *rt = plan_runtime(model, &plan, c->dt, rendezvous, &error);
  g_assert_no_error(error);
  return rt;
}

static void check_case(const Case *c, gboolean rendezvous) {
  g_autoptr(PxModel) model = load_model(c->l.model);
  double want[STEPS], got[STEPS];
  PxRuntime *a = case_runtime(model, c, 2, FALSE), *b = case_runtime(model, c, 3, rendezvous);
  run_steps(a, STEPS, want, NULL);
  run_steps(b, STEPS, got, NULL);
  g_autofree char *what = g_strdup_printf("%s dp%d tp%d pp%d vpp%d ep%d %s %s interval %d %s", c->l.model, c->l.dp,
                                          c->l.tp, c->l.pp, MAX(c->l.vpp, 1), MAX(c->ep, 1), c->l.schedule, px_ckpt_name(c->l.ckpt),
                                          MAX(c->l.interval, 1), px_dtype_name(c->dt));
  for (int s = 0; s < STEPS; s++)
    if (got[s] != want[s]) g_error("%s: step %d loss %.17g under ZeRO-3, %.17g under ZeRO-2", what, s + 1, got[s], want[s]);
  double worst = params_max_rel(a, b, model);
  if (worst != 0) g_error("%s: the parameters differ by %.3g (relative) from ZeRO-2's", what, worst);
  /* the gathered weights' buffers */
  gsize es = px_dtype_size(c->dt);
  for (int r = 0; r < px_runtime_world(a); r++) {
    PxRankMemory ma, mb;
    px_runtime_memory(a, r, &ma);
    px_runtime_memory(b, r, &mb);
    double held = (double)(mb.measured.current[PX_MEM_BUFFERS] - ma.measured.current[PX_MEM_BUFFERS]);
    double peak = (double)(mb.measured.peak[PX_MEM_BUFFERS] - ma.measured.peak[PX_MEM_BUFFERS]);
    double planned = mb.predicted.buffers - ma.predicted.buffers;
    g_test_message("%s rank %d: ZeRO-3 slots %.0f B, buffers' peak %.0f B above ZeRO-2's (planner %.0f B)", what, r,
                   held, peak, planned);
    if (c->max_layer > 0 && held != 2.0 * (double)c->max_layer * (double)es)
      g_error("%s rank %d: slots of %.0f B, by hand 2 x %" G_GINT64_FORMAT " x %zu B", what, r, held, c->max_layer,
              (size_t)es);
    if (c->dt == PX_DTYPE_F32 && held != planned)
      g_error("%s rank %d: slots of %.0f B, the planner's %.0f B", what, r, held, planned);
    /* nothing else gathered at the peak (a whole chunk: 220,544 elements for
     * pp 1); with pp the messages in flight at the peaks depend on timing:
     * the peaks are not compared (printed only) */
    if (c->l.pp == 1 && peak != held)
      g_error("%s rank %d: the buffers' peak is %.0f B above ZeRO-2's, the slots %.0f B", what, r, peak, held);
  }
  px_runtime_free(a);
  px_runtime_free(b);
}

#define BLOCK 49984 /* tiny-gpt: 12 h^2 + 13 h, h = 64 */
/* tiny-moe (h 32, 4 heads of 8, 2 KV heads, RMSNorm, no biases), an MoE
 * block with ep 2: qkv 32·64 + out 32·32 + 2 norms of 32 + router 4·32 + 2
 * of the 4 SwiGLU experts of 3·32·32 = 2,048 + 1,024 + 64 + 128 + 6,144;
 * larger than a dense block (2,048 + 1,024 + 64 + 3·32·64 = 9,280) and the
 * embedding or head (128·32) */
#define MOE_BLOCK 9408
/* the same block under tp 2 with etp 1, ep 1 (each TP rank holds all 4
 * experts whole): qkv 1,024 + out 512 (halves) + norms 64 + router 128
 * (replicated) + 4 × 3,072 */
#define MOE_BLOCK_TP2 14016
static const Case cases[] = {
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, PX_DTYPE_F64, BLOCK, 1, 0},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, PX_DTYPE_F32, BLOCK, 1, 0},
  {{"tiny-gpt", 2, 2, 1, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, PX_DTYPE_F32, 0, 1, 0},
  {{"tiny-gpt", 2, 1, 2, 1, "1f1b", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, PX_DTYPE_F32, BLOCK, 1, 0},
  {{"tiny-gpt", 2, 1, 2, 1, "zb-h1", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, PX_DTYPE_F64, BLOCK, 1, 0},
  {{"tiny-gpt", 2, 1, 2, 2, "interleaved", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, PX_DTYPE_F64, BLOCK, 1, 0},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 3, PX_CKPT_FULL, 2, 8, FALSE, 1}, PX_DTYPE_F64, BLOCK, 1, 0},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 3, PX_CKPT_FULL, 2, 8, FALSE, 2}, PX_DTYPE_F64, BLOCK, 1, 0},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, 2, 8, FALSE, 1}, PX_DTYPE_BF16, BLOCK, 1, 0},
  /* MoE, ep 2 · dp 4: the experts shard over edp 2, the dense tensors over
   * dp 4 (the split layout): a layer's slot holds its dense range and its
   * experts' range, each broadcast over its own group */
  {{"tiny-moe", 4, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, PX_DTYPE_F64, MOE_BLOCK, 2, 0},
  {{"tiny-moe", 4, 1, 1, 1, "1f1b", 3, PX_CKPT_FULL, 1, 8, FALSE, 1}, PX_DTYPE_F32, MOE_BLOCK, 2, 0},
  /* MoE, dp 1 · tp 2 (sequence parallel) with etp 1: only the experts
   * shard, over edp 2; a layer's dense range is the rank's own */
  {{"tiny-moe", 1, 2, 1, 1, "1f1b", 3, PX_CKPT_NONE, 1, 8, TRUE, 1}, PX_DTYPE_F64, MOE_BLOCK_TP2, 1, 1},
  {{"tiny-moe", 1, 2, 1, 1, "1f1b", 3, PX_CKPT_FULL, 1, 8, TRUE, 1}, PX_DTYPE_F32, MOE_BLOCK_TP2, 1, 1},
};

/* Layer gathers per step (px_runtime_zero3_gathers), by hand. tiny-gpt has
 * L = 7 layers (embedding, 4 blocks, final norm, head); pp 2 splits them
 * [0, 3) and [3, 7) (n = 3 and 4 layers a stage). A pass uses its layers in
 * order (forward first to last, backward last to first); a layer is gathered
 * unless one of the two slots holds it, so where a pass turns round (F then
 * B, B then F) its first two layers are the last two of the pass before
 * (2 fewer gathers), while F after F or B after B gathers all n. With the
 * next pass's first layer prefetched during the last layer of the pass
 * before, only the step's very first layer (at GATHER_PARAMS) is gathered on
 * demand: on_demand = 1 on every rank (gathering each pass's first layer on
 * demand, as before, made it 7 for the gpipe case: F1..F3 and B1..B3).
 * Full recompute with 2-block segments: a backward uses its layers in the
 * order of the recompute (pp 2, stage 0: F 0 1 2, B 1 2 1 0; stage 1:
 * F 3 4 5 6, B 6 5 3 4 3). */
typedef struct {
  Layout l;
  int gathers[2]; /* per stage */
} GatherCase;

static const GatherCase gather_cases[] = {
  /* gpipe, pp 1, m = 4: F0..F3 B0..B3, 2 m L uses, one turn (F3 B0): 2·4·7 − 2 */
  {{"tiny-gpt", 2, 1, 1, 1, "gpipe", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, {54, 0}},
  /* 1f1b, pp 2, m = 4: stage 0 F0 F1 B0 F2 B1 F3 B2 B3, 8·3 uses, 5 turns:
   * 24 − 10; stage 1 F0 B0 F1 B1 ... F3 B3, 8·4 uses, 7 turns: 32 − 14 */
  {{"tiny-gpt", 2, 1, 2, 1, "1f1b", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, {14, 18}},
  /* the same with full recompute, 2-block segments: stage 0 F0 3, F1 3,
   * B0 F2 B1 F3 B2 1 each (only layer 0 or 2 new), B3 2 (2 and 0): 13;
   * stage 1 F0 4, B0 2 (3, 4), then F 2 (5, 6) and B 2 (3, 4) three
   * times: 18 */
  {{"tiny-gpt", 2, 1, 2, 1, "1f1b", 3, PX_CKPT_FULL, 1, 8, FALSE, 2}, {13, 18}},
};

static void test_gathers(gconstpointer p) {
  const GatherCase *c = p;
  g_autoptr(PxModel) model = load_model(c->l.model);
  g_autoptr(GError) error = NULL;
  PxRuntime *rt = layout_runtime(model, &c->l, PX_DTYPE_F32, &error);
  g_assert_no_error(error);
  for (int s = 0; s < 2; s++) { /* every step alike */
    run_steps(rt, 1, NULL, NULL);
    for (int r = 0; r < px_runtime_world(rt); r++) {
      PxRankMemory m;
      PxZero3Gathers z;
      g_assert_true(px_runtime_memory(rt, r, &m));
      g_assert_true(px_runtime_zero3_gathers(rt, r, &z));
      g_test_message("%s pp%d %s rank %d stage %d: %d layer gathers, %d on demand", c->l.schedule, c->l.pp,
                     px_ckpt_name(c->l.ckpt), r, m.stage, z.gathers, z.on_demand);
      g_assert_cmpint(z.on_demand, ==, 1);
      g_assert_cmpint(z.gathers, ==, c->gathers[m.stage]);
    }
  }
  px_runtime_free(rt);
}

/* The bytes of the ZeRO-3 layer gathers in the timelines: each forward's,
 * backward's and GATHER_PARAMS's event in the executor's measured timeline
 * (the bytes its broadcasts received) equals the simulated one's
 * (px_predict, every rank: common/zero3.h's walk), per rank, micro-batch and
 * chunk; and by hand for tiny-gpt, dp 2, pp 1, f32: the chunk's flat buffer
 * holds 220,544 elements (embedding 20,480 = wte 256·64 + wpe 64·64; 4
 * blocks of 49,984; final norm 128; the head reads wte, [0, 16,384)), DP
 * shards of S = 110,272: rank 0 holds [0, S), rank 1 [S, 2S); the layers'
 * ranges: embedding [0, 20,480), blocks from 20,480 by 49,984, the norm
 * [220,416, 220,544). A gather receives the layer's range less the rank's
 * own piece. GATHER_PARAMS gathers the embedding: 0 B on rank 0, 81,920 B
 * on rank 1. The first forward gathers blocks 1..4, the norm, the head
 * (each prefetched by the layer before) and, at the head, the next
 * forward's embedding: rank 0 receives block 2's [110,272, 120,448) =
 * 10,176, blocks 3 and 4 (99,968) and the norm (128): 110,272 elements =
 * 441,088 B; rank 1 block 1 (49,984), block 2's [70,464, 110,272) = 39,808,
 * the head's wte (16,384) and the embedding (20,480): 126,656 elements =
 * 506,624 B. */
typedef struct {
  Layout l;
  double f0[2], gather[2]; /* by hand: the first forward's and GATHER_PARAMS's bytes on DP ranks 0, 1 (-1: not) */
  int ep;                  /* MoE: expert parallelism (0: 1) */
  int etp;                 /* MoE: expert tensor parallelism (0: tp) */
} BytesCase;

static const BytesCase bytes_cases[] = {
  {{"tiny-gpt", 2, 1, 1, 1, "gpipe", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, {441088, 506624}, {0, 81920}, 1, 0},
  {{"tiny-gpt", 2, 1, 2, 1, "1f1b", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, {-1, -1}, {-1, -1}, 1, 0},
  {{"tiny-gpt", 2, 2, 2, 1, "1f1b", 3, PX_CKPT_FULL, 1, 8, FALSE, 2}, {-1, -1}, {-1, -1}, 1, 0},
  {{"tiny-gpt", 2, 1, 2, 2, "interleaved", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, {-1, -1}, {-1, -1}, 1, 0},
  {{"tiny-gpt", 2, 1, 2, 1, "zb-h1", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, {-1, -1}, {-1, -1}, 1, 0},
  /* MoE: the experts inline (ep 1), and split over edp 2 (ep 2 · dp 4) */
  {{"tiny-moe", 2, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, {-1, -1}, {-1, -1}, 1, 0},
  {{"tiny-moe", 4, 1, 1, 1, "1f1b", 3, PX_CKPT_FULL, 1, 8, FALSE, 1}, {-1, -1}, {-1, -1}, 2, 0},
  {{"tiny-moe", 4, 1, 2, 1, "1f1b", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, {-1, -1}, {-1, -1}, 2, 0},
  /* dp 1 · tp 2 with etp 1: only the experts, over edp 2 (no GATHER_PARAMS) */
  {{"tiny-moe", 1, 2, 1, 1, "1f1b", 3, PX_CKPT_NONE, 1, 8, TRUE, 1}, {-1, -1}, {-1, -1}, 1, 1},
};

static gboolean gather_kind(PxOpKind k) {
  return k == PX_OP_FORWARD || k == PX_OP_BACKWARD || k == PX_OP_BACKWARD_INPUT || k == PX_OP_BACKWARD_WEIGHT ||
         k == PX_OP_GATHER_PARAMS;
}

/* The event of (rank, kind, mb, chunk) in tl (NULL: none). */
static const PxEvent *find_event(const PxTimeline *tl, const PxEvent *like) {
  for (guint i = 0; i < tl->events->len; i++) {
    const PxEvent *e = &g_array_index(tl->events, PxEvent, i);
    if (e->rank == like->rank && e->kind == like->kind && e->mb == like->mb && e->chunk == like->chunk) return e;
  }
  return NULL;
}

static void test_bytes(gconstpointer p) {
  const BytesCase *c = p;
  g_autoptr(PxModel) model = load_model(c->l.model);
  g_autoptr(GError) error = NULL;
  g_autoptr(PxCluster) cluster = px_cluster_load("h200", &error);
  g_assert_no_error(error);
  PxPlan plan;
  layout_plan(&c->l, &plan);
  plan.ep = MAX(c->ep, 1);
  plan.etp = c->etp;
  PxPrediction pr = {0};
  g_assert_true(px_plan_validate(&plan, model, NULL, &error));
  gboolean predicted = px_predict(&pr, model, cluster, &plan, FALSE, TRUE, TRUE, &error);
  g_assert_no_error(error);
  g_assert_true(predicted);
  PxRuntime *rt = plan_runtime(model, &plan, PX_DTYPE_F32, FALSE, &error);
  g_assert_no_error(error);
  run_steps(rt, 1, NULL, NULL);
  const PxTimeline *got = px_runtime_timeline(rt), *want = pr.res->timeline;
  int n = 0;
  double total = 0;
  for (guint i = 0; i < got->events->len; i++) {
    const PxEvent *e = &g_array_index(got->events, PxEvent, i);
    if (!gather_kind(e->kind)) continue;
    const PxEvent *s = find_event(want, e);
    if (!s) g_error("rank %d: no simulated %s mb %d chunk %d", e->rank, px_op_name(e->kind), e->mb, e->chunk);
    if (e->bytes != s->bytes)
      g_error("%s pp%d rank %d %s mb %d chunk %d: measured %.0f B gathered, simulated %.0f B", c->l.schedule, c->l.pp,
              e->rank, px_op_name(e->kind), e->mb, e->chunk, e->bytes, s->bytes);
    n++;
    total += e->bytes;
    if (c->f0[0] >= 0 && e->kind == PX_OP_FORWARD && e->mb == 0) g_assert_cmpfloat(e->bytes, ==, c->f0[e->rank]);
    if (c->gather[0] >= 0 && e->kind == PX_OP_GATHER_PARAMS) g_assert_cmpfloat(e->bytes, ==, c->gather[e->rank]);
  }
  g_test_message("%s %s pp%d vpp%d tp%d ep%d: %d events agree, %.0f B gathered in all", c->l.model, c->l.schedule,
                 c->l.pp, MAX(c->l.vpp, 1), c->l.tp, MAX(c->ep, 1), n, total);
  g_assert_cmpint(n, >, 0);
  g_assert_cmpfloat(total, >, 0);
  px_runtime_free(rt);
  px_prediction_clear(&pr);
}

/* The runtime issues the walk's gathers and no other: each rank's gathers
 * of a step, as it queued them (px_runtime_zero3_log), equal the walk of
 * its program (common/zero3.h, px_zero3_walk_new, made here from the
 * runtime's plan) one for one: the instruction, the use it was queued at,
 * the layer, the slot, on demand or not, and the elements its broadcasts
 * brought (the runtime's count of its pieces against the walk's
 * (hi − lo) − |[lo, hi) ∩ own shard|). And nothing else is broadcast over
 * DP: a layer's range is held once over the DP group, so the group's
 * received elements are (dp·cp − 1) × the range and each rank's broadcast
 * bytes (every member counts a broadcast's buffer: px_comm_traffic) the
 * range; over a step, the DP broadcast bytes of all ranks × (dp − 1) equal
 * the walk's received bytes of all ranks × dp (layouts whose experts
 * shard over EDP broadcast those over EDP: not counted there). Layouts:
 * gpipe pp 1, 1f1b pp 2 with full recompute in 2-block segments,
 * interleaved (the slots shared by two chunks), zb-h1 with tp 2, and
 * tiny-moe ep 2 · dp 4 (experts over edp 2), pp 1 with full recompute and
 * pp 2. */
typedef struct {
  Layout l;
  int ep, etp; /* MoE: expert parallelism (0: 1), expert tensor parallelism (0: tp) */
} WalkCase;

static const WalkCase walk_cases[] = {
  {{"tiny-gpt", 2, 1, 1, 1, "gpipe", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 0},
  {{"tiny-gpt", 2, 1, 2, 1, "1f1b", 3, PX_CKPT_FULL, 1, 8, FALSE, 2}, 1, 0},
  {{"tiny-gpt", 2, 1, 2, 2, "interleaved", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 0},
  {{"tiny-gpt", 2, 2, 2, 1, "zb-h1", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 0},
  {{"tiny-moe", 4, 1, 1, 1, "1f1b", 3, PX_CKPT_FULL, 1, 8, FALSE, 1}, 2, 0},
  {{"tiny-moe", 4, 1, 2, 1, "1f1b", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, 2, 0},
  {{"tiny-moe", 1, 2, 2, 1, "1f1b", 3, PX_CKPT_FULL, 1, 8, TRUE, 1}, 1, 1},
};

static void test_walk(gconstpointer p) {
  const WalkCase *c = p;
  g_autoptr(PxModel) model = load_model(c->l.model);
  g_autoptr(GError) error = NULL;
  PxPlan plan;
  layout_plan(&c->l, &plan);
  plan.ep = MAX(c->ep, 1);
  plan.etp = c->etp;
  PxRuntime *rt = plan_runtime(model, &plan, PX_DTYPE_F32, FALSE, &error);
  g_assert_no_error(error);
  const PxPlan *rp = px_runtime_plan(rt);
  g_autoptr(PxPartition) part = px_partition_new(model, rp, NULL, &error);
  g_assert_no_error(error);
  g_autoptr(PxProgram) prog = px_program_new(rp, part, &error);
  g_assert_no_error(error);
  int world = px_runtime_world(rt), dp = px_plan_data_ranks(rp);
  /* the experts broadcast over EDP: not counted by the DP traffic */
  gboolean split = model->desc.experts > 0 && (MAX(rp->ep, 1) > 1 || px_plan_etp(rp) != rp->tp);
  g_autofree double *before = g_new0(double, world);
  run_steps(rt, 1, NULL, NULL);
  for (int r = 0; r < world && !split; r++) {
    PxCommTraffic t;
    g_assert_true(px_runtime_dp_traffic(rt, r, &t));
    before[r] = t.broadcast;
  }
  run_steps(rt, 1, NULL, NULL); /* a step after an update: the walk from its start again */
  double broadcast = 0, received = 0;
  guint total = 0;
  for (int r = 0; r < world; r++) {
    g_autoptr(PxZero3Walk) w = px_zero3_walk_new(model, rp, part, prog, r);
    guint n;
    const PxZero3Gather *got = px_runtime_zero3_log(rt, r, &n);
    if (n != w->n_seq) g_error("rank %d: the runtime gathered %u layers, the walk lists %u", r, n, w->n_seq);
    for (guint q = 0; q < n; q++) {
      const PxZero3Gather *a = &got[q], *b = &w->seq[q];
      if (a->instr != b->instr || a->use != b->use || a->chunk != b->chunk || a->layer != b->layer ||
          a->slot != b->slot || a->on_demand != b->on_demand || a->received != b->received)
        g_error("rank %d gather %u: the runtime's instr %u use %d chunk %d layer %d slot %d%s %" G_GINT64_FORMAT
                " elements, the walk's instr %u use %d chunk %d layer %d slot %d%s %" G_GINT64_FORMAT,
                r, q, a->instr, a->use, a->chunk, a->layer, a->slot, a->on_demand ? " on demand" : "", a->received,
                b->instr, b->use, b->chunk, b->layer, b->slot, b->on_demand ? " on demand" : "", b->received);
      received += (double)b->received * sizeof(float);
    }
    PxCommTraffic t;
    if (!split && px_runtime_dp_traffic(rt, r, &t)) broadcast += t.broadcast - before[r];
    total += n;
  }
  g_test_message("%s %s pp%d vpp%d tp%d ep%d: %u gathers as the walk lists them; DP broadcasts %.0f B, received %.0f B",
                 c->l.model, c->l.schedule, c->l.pp, MAX(c->l.vpp, 1), c->l.tp, MAX(c->ep, 1), total, broadcast,
                 received);
  g_assert_cmpuint(total, >, 0);
  if (!split) g_assert_cmpfloat(broadcast * (dp - 1), ==, received * dp);
  px_runtime_free(rt);
}

static void test_case(gconstpointer p) { check_case(p, FALSE); }
static void test_case_rendezvous(gconstpointer p) { check_case(p, TRUE); }

/* Registers fn at /runtime/zero3/KIND/ and the layout's name. */
static void add_layout(const char *kind, const Layout *l, int ep, gconstpointer data, GTestDataFunc fn) {
  g_autofree char *path = g_strdup_printf("/runtime/zero3/%s/%s/dp%d-tp%d-pp%d-vpp%d-ep%d-%s-%s-i%d", kind, l->model,
                                          l->dp, l->tp, l->pp, MAX(l->vpp, 1), MAX(ep, 1), l->schedule,
                                          px_ckpt_name(l->ckpt), MAX(l->interval, 1));
  g_test_add_data_func(path, data, fn);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    const Case *c = &cases[i];
    g_autofree char *rest = g_strdup_printf("%s/dp%d-tp%d-pp%d-vpp%d%s-%s-%s-i%d-%s", c->l.model, c->l.dp, c->l.tp,
                                            c->l.pp, MAX(c->l.vpp, 1), c->ep > 1 ? "-ep2" : "", c->l.schedule,
                                            px_ckpt_name(c->l.ckpt), MAX(c->l.interval, 1), px_dtype_name(c->dt));
    add_with_rendezvous("/runtime/zero3/", rest, c, test_case, test_case_rendezvous);
  }
  for (gsize i = 0; i < G_N_ELEMENTS(gather_cases); i++) {
    const Layout *l = &gather_cases[i].l;
    g_autofree char *path = g_strdup_printf("/runtime/zero3/gathers/%s/pp%d-%s-%s-i%d", l->model, l->pp, l->schedule,
                                            px_ckpt_name(l->ckpt), MAX(l->interval, 1));
    g_test_add_data_func(path, &gather_cases[i], test_gathers);
  }
  for (gsize i = 0; i < G_N_ELEMENTS(bytes_cases); i++)
    add_layout("bytes", &bytes_cases[i].l, bytes_cases[i].ep, &bytes_cases[i], test_bytes);
  for (gsize i = 0; i < G_N_ELEMENTS(walk_cases); i++)
    add_layout("walk", &walk_cases[i].l, walk_cases[i].ep, &walk_cases[i], test_walk);
  return g_test_run();
}
