/* test_runtime_buckets.c — the DP reduction in buckets during the backward
 * (docs/executor.md): a run whose plan gives a bucket size (the program's
 * REDUCE_GRADS chunk=c bucket=b, each queued on the collective stream by the
 * backward's per-layer hook) against the same run without one (one
 * reduction per chunk after its last backward). The reductions are the same
 * sums per element, so the losses of 5 steps and every parameter afterwards
 * agree to 1e-12 (f64) / 1e-6 (f32, bf16, fp16) relative; in practice they
 * are equal (ZeRO-1/2, sharded per bucket: see check_case for the
 * parameters whose gradient is rounding noise). Layouts: dp 2, dp 2 · tp 2 (with sequence parallelism and
 * ZeRO-1), dp 2 · pp 2 (1f1b, zb-h1, interleaved with ZeRO-2; the tied
 * embedding's bucket held for REDUCE_TIED), ZeRO-1/2/3, cp 2, bf16 and fp16
 * (loss scaling), and tiny-moe ep 2 · dp 4 (the experts over EDP 2,
 * unsharded, ZeRO-1 and ZeRO-2: per bucket, the dense regions over DP and
 * the experts' over EDP, against the unbucketed run's split flat shards),
 * ep 1 · dp 3 ZeRO-1 (the experts over the DP ranks; dense regions padded;
 * against the flat shard) and ep 2 · dp 2 · pp 2 ZeRO-2 in bf16; and at
 * 6000 elements, where the dense and the experts' bucket sequences split
 * differently (ZeRO 0-3 over dp 4 · ep 2, ZeRO-1 over dp 3 · ep 1). Memory per
 * category still equals the planner's (the fp32 cases: tp 2 · sp ZeRO-1, pp 2
 * ZeRO-3, zb-h1 ZeRO-1, dp 4 ZeRO-2, dp 3 ZeRO-1, whose buckets are padded,
 * and the two fp32 tiny-moe ones). Every case again with the bucketed run
 * under rendezvous mode (as NCCL). The DP communicator's bytes under
 * ZeRO-1/2 in buckets: bytes_cases; MoE's DP and EDP communicators':
 * moe_bytes_cases. */
#include <glib.h>
#include <math.h>
#include <string.h>
#include "runtime.h"
#include "schedule.h"
#include "timeline.h"
#include "parity.h"

typedef struct {
  Layout l;
  int cp, ep;
  PxDType dt;
  double bucket_bytes;
} Case;

static PxRuntime *case_runtime(const PxModel *model, const Case *c, double bucket_bytes, gboolean rendezvous) {
  PxPlan plan;
  layout_plan(&c->l, &plan);
  plan.cp = MAX(c->cp, 1);
  plan.ep = MAX(c->ep, 1);
  if (c->cp > 1) plan.precision = PX_PREC_BF16; /* as layout_runtime_attn: CP plans are 16-bit */
  plan.bucket_bytes = bucket_bytes;
  g_autoptr(GError) error = NULL;
  PxRuntime *rt = plan_runtime(model, &plan, c->dt, rendezvous, &error);
  g_assert_no_error(error);
  return rt;
}

static void check_case(const Case *c, gboolean rendezvous) {
  g_autoptr(PxModel) model = load_model(c->l.model);
  double tol = c->dt == PX_DTYPE_F64 ? 1e-12 : 1e-6;
  double want[STEPS], got[STEPS];
  PxRuntime *a = case_runtime(model, c, 0, FALSE), *b = case_runtime(model, c, c->bucket_bytes, rendezvous);
  run_steps(a, STEPS, want, NULL);
  run_steps(b, STEPS, got, NULL);
  g_autofree char *what = g_strdup_printf("%s dp%d cp%d tp%d pp%d ep%d %s zero%d %s", c->l.model, c->l.dp, MAX(c->cp, 1),
                                          c->l.tp, c->l.pp, MAX(c->ep, 1), c->l.schedule, c->l.zero,
                                          px_dtype_name(c->dt));
  /* the bucketed run reduced in buckets (a chunk of one layer has one bucket:
   * its whole reduction, bucket -1) */
  const PxTimeline *tl = px_runtime_timeline(b);
  int n_buckets = 0, n_whole = 0;
  for (guint i = 0; i < tl->events->len; i++) {
    const PxEvent *ev = &g_array_index(tl->events, PxEvent, i);
    if (ev->kind == PX_OP_REDUCE_GRADS) *(ev->bucket >= 0 ? &n_buckets : &n_whole) += 1;
  }
  if (n_buckets < 2 * px_runtime_world(b) - n_whole)
    g_error("%s: %d bucket reductions and %d whole ones over %d ranks", what, n_buckets, n_whole, px_runtime_world(b));
  /* informational (never asserted: timings): on rank 0, how long before its
   * chunk 0's last backward ended the first bucket's reduction started */
  double bwd_end = -1, first_start = -1;
  for (guint i = 0; i < tl->events->len; i++) {
    const PxEvent *ev = &g_array_index(tl->events, PxEvent, i);
    if (ev->rank != 0 || ev->chunk != 0) continue;
    if (ev->kind == PX_OP_BACKWARD || ev->kind == PX_OP_BACKWARD_WEIGHT) bwd_end = MAX(bwd_end, ev->end);
    if (ev->kind == PX_OP_REDUCE_GRADS && ev->bucket == 0) first_start = ev->start;
  }
  if (bwd_end >= 0 && first_start >= 0)
    g_test_message("%s: rank 0's first bucket started %.3f ms before its last backward ended", what,
                   (bwd_end - first_start) * 1e3);
  double worst = 0;
  for (int s = 0; s < STEPS; s++) worst = MAX(worst, rel_diff(got[s], want[s]));
  /* ZeRO-1/2 over buckets shards per bucket (buckets.h px_buckets_sharded):
   * a rank's gradient-norm ranges are then its slices of the buckets, not the
   * unbucketed run's flat 1/dp range, so the global norm's sum of squares is
   * added in another order and may differ in its last bit, and with clipping
   * on (norm > clip 1) so may the update's scale. The losses still agree to
   * tol (equal in practice), and so does every parameter except where its
   * gradient is zero by construction and it holds rounding noise only: the
   * key bias (the middle third of qkv.bias; the softmax of a query's scores
   * ignores a shift common to them all), a few 1e-15 whatever the order.
   * Differences are taken relative to the larger value or the 0.02 init
   * scale, whichever is larger (in f64: an absolute 2e-14 near zero). */
  gboolean slices = c->l.zero == 1 || c->l.zero == 2; /* MoE too: dense slices over DP, experts' over EDP */
  worst = MAX(worst, params_max_diff(a, b, model, slices ? 0.02 : 0));
  g_test_message("%s: %d bucket reductions per step, largest relative difference %.3g", what, n_buckets, worst);
  if (worst > tol) g_error("%s: bucketed run differs by %.3g (relative) from the unbucketed one", what, worst);
  if (c->dt == PX_DTYPE_F32) expect_memory(a, what), expect_memory(b, what); /* the prediction is for fp32 */
  px_runtime_free(a);
  px_runtime_free(b);
}

/* tiny-gpt: 20000 fp32 elements to a bucket (8e4 B of the fp32 plan, 4e4
 * elements under 16-bit precision): each block (49984 / tp) closes one */
#define GPT_B 8e4
static const Case cases[] = {
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, 1, PX_DTYPE_F64, GPT_B},
  {{"tiny-gpt", 2, 2, 1, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, 1, PX_DTYPE_F64, GPT_B},
  {{"tiny-gpt", 2, 2, 1, 1, "1f1b", 1, PX_CKPT_SELECTIVE, 2, 8, TRUE, 1}, 1, 1, PX_DTYPE_F32, GPT_B},
  {{"tiny-gpt", 2, 1, 2, 1, "1f1b", 0, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 1, PX_DTYPE_F64, GPT_B},
  {{"tiny-gpt", 2, 1, 2, 1, "zb-h1", 0, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 1, PX_DTYPE_F64, GPT_B},
  {{"tiny-gpt", 2, 1, 2, 2, "interleaved", 2, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 1, PX_DTYPE_F64, 2e4},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, 1, PX_DTYPE_F64, GPT_B},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, 1, PX_DTYPE_F64, GPT_B},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 3, PX_CKPT_FULL, 2, 8, FALSE, 1}, 1, 1, PX_DTYPE_F64, GPT_B},
  {{"tiny-gpt", 2, 1, 2, 1, "1f1b", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 1, PX_DTYPE_F32, GPT_B},
  {{"tiny-gpt", 2, 1, 2, 1, "zb-h1", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 1, PX_DTYPE_F64, GPT_B},
  {{"tiny-gpt", 2, 1, 2, 1, "zb-h1", 1, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 1, PX_DTYPE_F32, GPT_B},
  {{"tiny-gpt", 1, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, 2, 8, FALSE, 1}, 2, 1, PX_DTYPE_F64, GPT_B},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, 1, PX_DTYPE_BF16, GPT_B},
  {{"tiny-gpt", 2, 1, 2, 1, "1f1b", 0, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 1, PX_DTYPE_BF16, GPT_B},
  {{"tiny-gpt", 2, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, 1, PX_DTYPE_F16, GPT_B},
  /* bucket shards over dp 4, and over dp 3 with padding (ZeRO's shard the
   * rank's slices of the padded buckets: the planner's memory counts them) */
  {{"tiny-gpt", 4, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, 1, PX_DTYPE_F32, GPT_B},
  {{"tiny-gpt", 3, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 1, 6, FALSE, 1}, 1, 1, PX_DTYPE_F32, GPT_B},
  /* tiny-moe: 2000 elements to a bucket; ep 2 · dp 4: the experts over EDP 2
   * (ZeRO-1/2: the dense regions sharded over DP, the experts' over EDP, per
   * bucket); ep 1 · dp 3: the experts over EDP 3 (the DP ranks), the dense
   * regions padded (memory checked in fp32) */
  {{"tiny-moe", 4, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 2, PX_DTYPE_F64, 8e3},
  {{"tiny-moe", 4, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 2, PX_DTYPE_F64, 8e3},
  {{"tiny-moe", 4, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 2, PX_DTYPE_F64, 8e3},
  {{"tiny-moe", 4, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 2, PX_DTYPE_F32, 8e3},
  {{"tiny-moe", 3, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 1, 6, FALSE, 1}, 1, 1, PX_DTYPE_F32, 8e3},
  {{"tiny-moe", 2, 1, 2, 1, "1f1b", 2, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 2, PX_DTYPE_BF16, 8e3},
  /* tiny-moe at 6000 elements (24e3 B of fp32), where the dense and the
   * experts' sequences split differently (test_buckets.c moe-layout-hand:
   * dense [4, 7) [3, 4) [1, 3) [0, 1), experts [4, 5) [2, 3)): unsharded
   * over DP 4 and EDP 2, ZeRO-1/2 per bucket, ZeRO-3 (buckets all-reduced
   * in place), and dp 3 · ep 1 ZeRO-1 with padded dense regions */
  {{"tiny-moe", 4, 1, 1, 1, "1f1b", 0, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 2, PX_DTYPE_F64, 24e3},
  {{"tiny-moe", 4, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 2, PX_DTYPE_F64, 24e3},
  {{"tiny-moe", 4, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 2, PX_DTYPE_F32, 24e3},
  {{"tiny-moe", 4, 1, 1, 1, "1f1b", 3, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 2, PX_DTYPE_F64, 24e3},
  {{"tiny-moe", 3, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 1, 6, FALSE, 1}, 1, 1, PX_DTYPE_F32, 24e3},
};

/* ZeRO-1/2 sharded per bucket (buckets.h px_buckets_shard_layout): what the
 * DP communicator was asked to move per step, against the hand-computed
 * layout. tiny-gpt (h 64, V 256, 64 positions, tied head): embedding
 * 256·64 + 64·64 = 20480, each block 12h² + 13h = 49984, final norm 128.
 * Buckets of 20000 elements filled from the last layer (GPT_B over 4 B, or
 * 40000 over 2 B under bf16): head 0 + norm + block = 50112, then each block
 * 49984, then the embedding 20480: 5 buckets, 220544 elements. Each bucket
 * is padded to dp slices: dp 2 and 4 divide all five; dp 3 pads to
 * 3·16704 = 50112, 3·16662 = 49986 (×3) and 3·6827 = 20481, 220551
 * elements. Per step every rank reduce-scatters each padded bucket (input
 * padded·4 B: fp32 gradients, or fp32 main gradients under bf16) and
 * all-gathers each (output padded·es, the parameters' dtype), and
 * all-reduces nothing over DP. A ring moves (dp-1)/dp of both per rank. */
typedef struct {
  Case c;
  double rs, ag;    /* bytes per step: reduce-scatter inputs, all-gather outputs */
  double ring;      /* (dp-1)/dp · (rs + ag) per rank */
} BytesCase;

static const BytesCase bytes_cases[] = {
  /* dp 2: 220544·4 = 882176 B each; ring 1/2 · 1764352 */
  {{{"tiny-gpt", 2, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, 1, PX_DTYPE_F32, GPT_B}, 882176, 882176, 882176},
  {{{"tiny-gpt", 2, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, 1, PX_DTYPE_F32, GPT_B}, 882176, 882176, 882176},
  /* dp 4: ring 3/4 · 1764352 */
  {{{"tiny-gpt", 4, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, 1, PX_DTYPE_F32, GPT_B}, 882176, 882176, 1323264},
  {{{"tiny-gpt", 4, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, 1, PX_DTYPE_F32, GPT_B}, 882176, 882176, 1323264},
  /* dp 3, padded: 220551·4 = 882204 B each; ring 2/3 · 1764408 */
  {{{"tiny-gpt", 3, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 1, 6, FALSE, 1}, 1, 1, PX_DTYPE_F32, GPT_B}, 882204, 882204, 1176272},
  /* bf16 dp 2 ZeRO-2: fp32 main gradients 882176 B, bf16 parameters 441088 B; ring 1/2 · 1323264 */
  {{{"tiny-gpt", 2, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 2, 8, FALSE, 1}, 1, 1, PX_DTYPE_BF16, GPT_B}, 882176, 441088, 661632},
};

static void check_bytes(const BytesCase *bc, gboolean rendezvous) {
  const Case *c = &bc->c;
  g_autoptr(PxModel) model = load_model(c->l.model);
  PxRuntime *rt = case_runtime(model, c, c->bucket_bytes, rendezvous);
  run_steps(rt, STEPS, NULL, NULL);
  int dp = c->l.dp;
  for (int r = 0; r < px_runtime_world(rt); r++) {
    PxCommTraffic t;
    g_assert_true(px_runtime_dp_traffic(rt, r, &t));
    double ring = (dp - 1.0) / dp * (t.reduce_scatter + t.all_gather) / STEPS;
    g_test_message("dp %d zero %d %s rank %d: per step reduce-scatter %.0f B, all-gather %.0f B, all-reduce %.0f B; "
                   "a ring moves %.0f B per rank", dp, c->l.zero, px_dtype_name(c->dt), r, t.reduce_scatter / STEPS,
                   t.all_gather / STEPS, t.all_reduce / STEPS, ring);
    g_assert_cmpfloat(t.all_reduce, ==, 0);
    g_assert_cmpfloat(t.broadcast, ==, 0);
    g_assert_cmpfloat(t.reduce_scatter, ==, STEPS * bc->rs);
    g_assert_cmpfloat(t.all_gather, ==, STEPS * bc->ag);
    g_assert_cmpfloat(fabs(ring - bc->ring), <, 1e-6);
  }
  px_runtime_free(rt);
}

/* tiny-moe (h 32, 4 heads of 8, 2 KV heads, SwiGLU ffn 64, vocab 128, no
 * biases, untied; blocks 1 and 3 MoE of 4 experts of 32): embedding and
 * head 128·32 = 4096 each, final norm 32; a dense block 2·32 (norms) +
 * 32·(32+16+16) (qkv) + 32·32 (proj) + 3·64·32 (SwiGLU) = 9280; an MoE
 * block's dense tensors 2·32 + 2048 + 1024 + 4·32 (router) = 3264 and its
 * experts 3·32·32 = 3072 each, E/ep of them on a rank. Buckets of 2000
 * elements (8e3 B over the fp32 plan's 4 B; 4000 under bf16) from the last
 * layer: head 4096 | norm + block 3 (3296 dense + experts) | block 2 9280 |
 * block 1 (3264 + experts) | block 0 9280 | embedding 4096. Dense: 33312
 * elements; padded to dp 3: 4098 + 3297 + 9282 + 3264 + 9282 + 4098 = 33321.
 * Experts: blocks 1 and 3, 2·3072·E/ep = 12288 for ep 2 (EDP 2) and 24576
 * for ep 1 (EDP 3: 3·4096 = 12288 per bucket, no padding). The DP
 * communicator reduce-scatters (fp32: 4 B) and all-gathers (the parameters'
 * dtype) the dense regions, the EDP communicator the experts', and nothing
 * is all-reduced on either. */
typedef struct {
  Case c;
  double rs, ag, ers, eag; /* bytes per step: DP reduce-scatter inputs, all-gather outputs; EDP the same */
  int edp;
} MoeBytesCase;

static const MoeBytesCase moe_bytes_cases[] = {
  /* dp 4 · ep 2, ZeRO-1 and 2, fp32: dense 33312·4 = 133248 B, experts 12288·4 = 49152 B */
  {{{"tiny-moe", 4, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 2, PX_DTYPE_F32, 8e3},
   133248, 133248, 49152, 49152, 2},
  {{{"tiny-moe", 4, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 2, PX_DTYPE_F32, 8e3},
   133248, 133248, 49152, 49152, 2},
  /* dp 3 · ep 1, ZeRO-1: dense padded 33321·4 = 133284 B, experts 24576·4 = 98304 B */
  {{{"tiny-moe", 3, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 1, 6, FALSE, 1}, 1, 1, PX_DTYPE_F32, 8e3},
   133284, 133284, 98304, 98304, 3},
  /* bf16 dp 4 · ep 2 ZeRO-2: fp32 main gradients reduce-scattered, bf16 parameters gathered */
  {{{"tiny-moe", 4, 1, 1, 1, "1f1b", 2, PX_CKPT_NONE, 1, 8, FALSE, 1}, 1, 2, PX_DTYPE_BF16, 8e3},
   133248, 66624, 49152, 24576, 2},
  /* 6000 elements, dp 3 · ep 1, ZeRO-1: dense buckets 4096 | 12544 (blocks 0
   * and 1) | 9280 | 7392 (block 3, norm, head) padded to 3 slices 4098 +
   * 12546 + 9282 + 7392 = 33318 elements, 133272 B; the experts' two of
   * 12288 (blocks 1 and 3, over EDP 3 undivided), 98304 B */
  {{{"tiny-moe", 3, 1, 1, 1, "1f1b", 1, PX_CKPT_NONE, 1, 6, FALSE, 1}, 1, 1, PX_DTYPE_F32, 24e3},
   133272, 133272, 98304, 98304, 3},
};

static void check_moe_bytes(const MoeBytesCase *bc, gboolean rendezvous) {
  const Case *c = &bc->c;
  g_autoptr(PxModel) model = load_model(c->l.model);
  PxRuntime *rt = case_runtime(model, c, c->bucket_bytes, rendezvous);
  run_steps(rt, STEPS, NULL, NULL);
  for (int r = 0; r < px_runtime_world(rt); r++) {
    PxCommTraffic t, e;
    g_assert_true(px_runtime_dp_traffic(rt, r, &t));
    g_assert_true(px_runtime_edp_traffic(rt, r, &e));
    double ring = (c->l.dp - 1.0) / c->l.dp * (t.reduce_scatter + t.all_gather) / STEPS;
    double ering = (bc->edp - 1.0) / bc->edp * (e.reduce_scatter + e.all_gather) / STEPS;
    g_test_message("tiny-moe dp %d ep %d zero %d %s rank %d: per step DP reduce-scatter %.0f B, all-gather %.0f B "
                   "(a ring moves %.0f B per rank); EDP %d reduce-scatter %.0f B, all-gather %.0f B (ring %.0f B)",
                   c->l.dp, c->ep, c->l.zero, px_dtype_name(c->dt), r, t.reduce_scatter / STEPS, t.all_gather / STEPS,
                   ring, bc->edp, e.reduce_scatter / STEPS, e.all_gather / STEPS, ering);
    g_assert_cmpfloat(t.all_reduce, ==, 0);
    g_assert_cmpfloat(e.all_reduce, ==, 0);
    g_assert_cmpfloat(t.reduce_scatter, ==, STEPS * bc->rs);
    g_assert_cmpfloat(t.all_gather, ==, STEPS * bc->ag);
    g_assert_cmpfloat(e.reduce_scatter, ==, STEPS * bc->ers);
    g_assert_cmpfloat(e.all_gather, ==, STEPS * bc->eag);
  }
  px_runtime_free(rt);
}

static void test_moe_bytes(gconstpointer p) { check_moe_bytes(p, FALSE); }
static void test_moe_bytes_rendezvous(gconstpointer p) { check_moe_bytes(p, TRUE); }

static void test_bytes(gconstpointer p) { check_bytes(p, FALSE); }
static void test_bytes_rendezvous(gconstpointer p) { check_bytes(p, TRUE); }

static void test_case(gconstpointer p) { check_case(p, FALSE); }
/* the same under the local communicator's rendezvous mode (a send completes
 * once its receive is posted, a communicator's calls run in issue order: as
 * on NCCL): the reductions queued from inside the backward deadlock nothing */
static void test_case_rendezvous(gconstpointer p) { check_case(p, TRUE); }

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    const Case *c = &cases[i];
    g_autofree char *rest = g_strdup_printf("%s/dp%d-cp%d-tp%d-pp%d-ep%d-%s-zero%d-%s%s-%.0fB", c->l.model, c->l.dp,
                                            MAX(c->cp, 1), c->l.tp, c->l.pp, MAX(c->ep, 1), c->l.schedule, c->l.zero,
                                            px_dtype_name(c->dt), c->l.sp ? "-sp" : "", c->bucket_bytes);
    add_with_rendezvous("/runtime/buckets/", rest, c, test_case, test_case_rendezvous);
  }
  for (gsize i = 0; i < G_N_ELEMENTS(bytes_cases); i++) {
    const Case *c = &bytes_cases[i].c;
    g_autofree char *rest = g_strdup_printf("dp%d-zero%d-%s", c->l.dp, c->l.zero, px_dtype_name(c->dt));
    add_with_rendezvous("/runtime/buckets-bytes/", rest, &bytes_cases[i], test_bytes, test_bytes_rendezvous);
  }
  for (gsize i = 0; i < G_N_ELEMENTS(moe_bytes_cases); i++) {
    const Case *c = &moe_bytes_cases[i].c;
    g_autofree char *rest =
        g_strdup_printf("moe-dp%d-ep%d-zero%d-%s-%.0fB", c->l.dp, c->ep, c->l.zero, px_dtype_name(c->dt), c->bucket_bytes);
    add_with_rendezvous("/runtime/buckets-bytes/", rest, &moe_bytes_cases[i], test_moe_bytes, test_moe_bytes_rendezvous);
  }
  return g_test_run();
}
