/* cost.c — predicted durations of a program's instructions. Every term and
 * its source is in docs/cost.md; the cluster's achieved rates (cluster.h) come
 * from the preset (each with its source) or from `parallax-exec calibrate`.
 *
 * GEMMs (forward y = x W^T: m = tokens, n = out, k = in; backward dgrad
 * m = tokens, n = in, k = out, and wgrad m = out, n = in, k = tokens) run at
 *     eff = gemm_eff * (m n) / (waves * sms * tile^2),  waves = ceil(tiles / sms)
 * of the dense peak: the fraction of the launched tile slots doing useful work
 * (tile and wave quantisation, NVIDIA "Matrix Multiplication Background User's
 * Guide"), times the best large-GEMM efficiency of the GPU (gemm_eff, the
 * maximum achievable matmul FLOPS of Bekman's ml-engineering table), times
 * k / (k + gemm_k_overhead) for each tile's fixed cost (OpenXLA's sm_90 GEMM
 * table). A GEMM with fewer tiles than SMs and a long k is split along k as
 * cuBLAS does.
 * Roofline: never faster than its operands through HBM; plus one kernel_overhead.
 *
 * Memory-bound kernels cost their own bytes, forward and backward separately
 * (LayerNorm/RMSNorm 2 | 3 activations, residual add 3 | 3, GELU 2 | 3 and
 * SwiGLU 3 | 5 FFN activations, dropout 2 + mask | 2 + mask), over
 * the class's rate (px_cost_class_rate: calibrated, eager LayerNorm, else
 * hbm_bw * hbm_eff), each plus a kernel_overhead; the unfused attention's
 * softmax (2 | 3 scores) and its batched GEMMs' score traffic over
 * hbm_bw * unfused_attention_efficiency.
 *
 * Attention: flash (one fused kernel, causal: half the s^2 FLOPs, at
 * flash_fwd_eff of peak forward and flash_bwd_eff backward where the backward
 * has 2.5 x the forward's FLOPs, as flash-attn's benchmarks count them;
 * both x s / (s + flash_seq_half), the FlashAttention-2 paper's curve) or
 * unfused (Megatron's baddbmm + fused scale-mask-softmax: QK^T and PV batched
 * GEMMs, the s x s scores through HBM at hbm_bw * unfused_attention_efficiency,
 * the FlashAttention paper's measured Megatron attention).
 *
 * Backward-input = dgrad GEMMs + memory-bound backward kernels + attention
 * backward + TP collectives + recompute; backward-weight = wgrad GEMMs.
 *
 * Collectives: alpha-beta on the group's link, bandwidth = achieved bus
 * bandwidth (busbw_efficiency x nominal, from published nccl-tests runs);
 *   ring all-reduce   2(n-1) a + 2(n-1)/n B / bw
 *   tree all-reduce   2 ceil(log2 n) a + 2 B / bw   (NCCL double binary tree)
 *   all-reduce        min(ring, tree), as NCCL's tuner picks by size
 *   reduce-scatter, all-gather   (n-1) a + (n-1)/n B / bw
 *   p2p               a + B / bw
 * A group spanning nodes with k members per node runs hierarchical rings over
 * k NICs: bw = min(NVLink busbw, k x NIC busbw). All replicas of the group
 * communicate at once, so the node's NICs are shared: each group gets the NICs
 * of its own k GPUs (inter_bw is per GPU).
 *
 * ZeRO-3's per-pass collectives overlap the pass but hold collective_sms of
 * its SMs while they run (collective_sms_intra when the group is inside one
 * node; px_cost_pass_exposed, px_cost_collective_sm_share_link); on a GPU
 * with persistent GEMMs (gemm_persistent, Hopper's cuBLAS) the pass's GEMMs
 * run in two waves meanwhile (px_cost_persistent_waves, px_cost_overlap_share).
 *
 * Stacks (px_stack_profile): gradient-reduction dtype, DP overlap in buckets,
 * optimizer traffic, default attention. */
#include "cost.h"
#include "buckets.h"
#include "flops.h"
#include "memory.h"
#include "moe.h"
#include "zero3.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

G_DEFINE_QUARK(px-cost-error-quark, px_cost_error)

#define CPU_ADAM_RATE 4e9        /* parameters / s / node */
#define BATCH_ID_BYTES 8.0       /* int32 token id + int32 label per position */
#define NCCL_BUFFSIZE 4194304.0  /* bytes: NCCL_BUFFSIZE's default (NCCL environment variables) */

/* ---- stacks ---- */

/* See docs/cost.md for each choice and the framework file it comes from. */
static const PxStackProfile stacks[PX_N_STACKS] = {
  /* this project's executor: reduces in the activation dtype, overlaps only
   * with a bucket size (plan bucket_bytes), one fused Adam pass; its attention
   * (exec/backend.h px_op_attention_fwd) keeps the s x s probabilities for the
   * backward: unfused, as memory.c counts it */
  {PX_STACK_PARALLAX, 0, PX_OVERLAP_BUCKET_SIZE, 0, 0, PX_ATTN_UNFUSED, FALSE},
  /* Megatron-LM v2 (2021): megatron/training.py train_step all-reduces after the
   * whole backward (model/distributed.py, no overlap); main_grad accumulated and
   * reduced in fp32 for bf16 (arguments.py forces accumulate_allreduce_grads_in_fp32);
   * apex FusedAdam; CoreAttention baddbmm + FusedScaleMaskSoftmax (unfused) */
  {PX_STACK_MEGATRON_2021, 0, PX_OVERLAP_NONE, 0, 0, PX_ATTN_UNFUSED, FALSE},
  /* Megatron-Core: core/distributed/distributed_data_parallel.py overlap_grad_reduce
   * buckets of max(4e7, 1e6 dp) elements, fp32 grad reduce (grad_reduce_in_fp32 as
   * the example recipes set it), distributed optimizer param gather overlapped;
   * TE fused attention (flash) */
  {PX_STACK_MEGATRON_CORE, 4, PX_OVERLAP_ALWAYS, 4e7, 0, PX_ATTN_FLASH, FALSE},
  /* DeepSpeed: runtime/zero/config.py reduce_bucket_size 5e8 elements,
   * overlap_comm default off except ZeRO-3; gradients reduced in the
   * fp16/bf16 dtype; FusedAdam; Megatron-DeepSpeed's unfused attention */
  {PX_STACK_DEEPSPEED, 0, PX_OVERLAP_ZERO3, 5e8, 0, PX_ATTN_UNFUSED, FALSE},
  /* PyTorch FSDP under Composer/llm-foundry: reduce-scatter per wrapped block
   * in backward hooks (torch/distributed/fsdp/_runtime_utils.py), Composer
   * mixed precision DEFAULT reduces in fp32; Composer DecoupledAdamW steps
   * tensor by tensor (composer/optim/decoupled_weight_decay.py: 9 element-wise
   * kernels, ~92 B per fp32 parameter), after the gradient clipping every MPT
   * yaml sets (algorithms: gradient_clipping, clipping_type norm: Composer's
   * apply_gradient_clipping calls the root FSDP's clip_grad_norm_, which in
   * torch 2.1 reads each fp32 sharded gradient for its norm and then scales
   * it in place, mul_ even when the coefficient is 1: 4 + 8 = 12 B), 104 B
   * per parameter of the shard; MPT attn_impl flash; MPT's norm_type
   * low_precision_layernorm (llm-foundry LPLayerNorm: F.layer_norm on the
   * bf16 input with autocast off) is PyTorch's native, eager layer_norm */
  {PX_STACK_FSDP, 4, PX_OVERLAP_ALWAYS, 0, 104, PX_ATTN_FLASH, TRUE},
  /* torchtitan v0.2.2 (the --emit torchtitan schema; docs/cost.md section 4
   * says where the December 2024 benchmarks' 9dec370 differed):
   * models/llama3/infra/parallelize.py apply_fsdp fully_shard()s every
   * TransformerBlock with MixedPrecisionPolicy(param_dtype=bf16,
   * reduce_dtype=fp32) (config/job_config.py mixed_precision_reduce
   * "float32", the only choice), FSDP2 reduce-scatters each block in its
   * post-backward on its own stream and prefetches the next block's
   * all-gather: overlapped, one bucket per block. components/optimizer.py:
   * AdamW implementation "fused" (job_config.py default) over the fp32
   * sharded parameters: p, g, m, v read, p, m, v written = 28 B; before it
   * distributed/utils.py clip_grad_norm_ (max_norm 1.0 in every llama3
   * toml): get_total_norm reads each fp32 gradient, clip_grads_with_norm_
   * foreach-multiplies it in place (read + write) = 12 B: 40 B per
   * parameter of the shard. models/attention.py ScaledDotProductAttention:
   * SDPA with the cuDNN / flash backends: flash. A Llama block's
   * element-wise kernels are counted op by op, eager or under the plan's
   * compile (px_cost_titan_block) */
  {PX_STACK_TORCHTITAN, 4, PX_OVERLAP_ALWAYS, 0, 40, PX_ATTN_FLASH, FALSE},
};

const PxStackProfile *px_stack_profile(PxStack s) {
  return &stacks[(unsigned)s < PX_N_STACKS ? s : PX_STACK_PARALLAX];
}

PxAttention px_cost_attention(const PxPlan *plan) {
  if (plan->attention != PX_ATTN_DEFAULT) return plan->attention;
  /* ring attention runs fused attention blocks (Transformer Engine; plan.c
   * refuses cp > 1 with unfused attention or fp32) */
  if (plan->cp > 1) return PX_ATTN_FLASH;
  /* flash needs 16-bit tensor-core inputs */
  if (plan->precision == PX_PREC_FP32) return PX_ATTN_UNFUSED;
  return px_stack_profile(plan->stack)->attention;
}

gboolean px_cost_overlap_dp(const PxPlan *plan) {
  switch (px_stack_profile(plan->stack)->overlap) {
  case PX_OVERLAP_NONE: return FALSE;
  case PX_OVERLAP_ALWAYS: return TRUE;
  case PX_OVERLAP_ZERO3: return plan->zero == 3 || plan->bucket_bytes > 0;
  case PX_OVERLAP_BUCKET_SIZE: return plan->bucket_bytes > 0;
  }
  return FALSE;
}

int px_cost_grad_reduce_bytes(const PxPlan *plan) {
  int E = px_plan_act_bytes(plan);
  const PxStackProfile *sp = px_stack_profile(plan->stack);
  if (plan->grad_reduce_bytes > 0) return plan->grad_reduce_bytes;
  if (plan->stack == PX_STACK_MEGATRON_2021) return plan->precision == PX_PREC_BF16 ? 4 : E;
  return sp->grad_bytes > 0 ? MAX(sp->grad_bytes, E) : E;
}

/* ---- collectives ---- */

double px_cost_curve_busbw(const PxLink *l, double bytes) {
  const PxBusbwCurve *c = l->curve;
  if (!c || c->n < 1 || bytes <= 0) return 0;
  if (bytes <= c->bytes[0]) return c->busbw[0] * bytes / c->bytes[0];
  if (bytes >= c->bytes[c->n - 1]) return c->busbw[c->n - 1];
  int i = 0;
  while (bytes > c->bytes[i + 1]) i++;
  double f = log(bytes / c->bytes[i]) / log(c->bytes[i + 1] / c->bytes[i]);
  return exp((1 - f) * log(c->busbw[i]) + f * log(c->busbw[i + 1]));
}

/* A measured curve gives the time of a collective moving `factor` x bytes
 * over the bus (nccl-tests' busbw definition): the curve holds its latency. */
static double curve_time(const PxLink *l, double bytes, double factor) {
  double bw = px_cost_curve_busbw(l, bytes);
  return bw > 0 ? factor * bytes / bw : -1;
}

double px_cost_allreduce_ring(double bytes, int n, const PxLink *l) {
  if (n <= 1 || bytes <= 0) return 0;
  double t = curve_time(l, bytes, 2.0 * (n - 1) / n);
  if (t >= 0) return t;
  return 2.0 * (n - 1) * l->lat + 2.0 * (n - 1) / n * bytes / l->bw;
}

double px_cost_allreduce_tree(double bytes, int n, const PxLink *l) {
  if (n <= 1 || bytes <= 0) return 0;
  double t = curve_time(l, bytes, 2.0 * (n - 1) / n); /* the curve is what NCCL's tuner picked */
  if (t >= 0) return t;
  return 2.0 * ceil(log2((double)n)) * l->lat + 2.0 * bytes / l->bw;
}

double px_cost_allreduce(double bytes, int n, const PxLink *l) {
  if (n <= 1 || bytes <= 0) return 0;
  /* a measured curve already is the algorithm NCCL's tuner picked: one lookup */
  double t = curve_time(l, bytes, 2.0 * (n - 1) / n);
  if (t >= 0) return t;
  return MIN(px_cost_allreduce_ring(bytes, n, l), px_cost_allreduce_tree(bytes, n, l));
}

double px_cost_reduce_scatter(double bytes, int n, const PxLink *l) {
  if (n <= 1 || bytes <= 0) return 0;
  double t = curve_time(l, bytes, (double)(n - 1) / n);
  if (t >= 0) return t;
  return (n - 1) * l->lat + (double)(n - 1) / n * bytes / l->bw;
}

double px_cost_allgather(double bytes, int n, const PxLink *l) {
  return px_cost_reduce_scatter(bytes, n, l);
}

double px_cost_p2p(double bytes, const PxLink *l) {
  if (bytes <= 0) return 0;
  return l->lat + bytes / l->bw;
}

/* ---- links ---- */

static double eff_or_1(double e) { return e > 0 ? e : 1.0; }
static double intra_busbw(const PxCluster *c) { return c->intra_bw * eff_or_1(c->intra_eff); }
static double inter_busbw(const PxCluster *c) { return c->inter_bw * eff_or_1(c->inter_eff); }

double px_cost_alltoall(const PxCluster *c, double bytes, int n, int k) {
  if (n <= 1 || bytes <= 0) return 0;
  k = CLAMP(k, 1, n);
  if (k == n) return (n - 1) * c->intra_lat + (double)(n - 1) / n * bytes / intra_busbw(c);
  return (n - 1) * c->inter_lat +
         MAX((double)(k - 1) / n * bytes / intra_busbw(c), (double)(n - k) / n * bytes / inter_busbw(c));
}

/* A group across nodes with k members on a node: hierarchical rings over the
 * k NICs of those members, never faster than NVLink. */
static PxLink inter_link(const PxCluster *c, int k) {
  return (PxLink){MIN(intra_busbw(c), MAX(k, 1) * inter_busbw(c)), c->inter_lat, FALSE, NULL};
}

PxLink px_cost_group_link(const PxCluster *cluster, const int *ranks, int n) {
  int gpn = MAX(cluster->gpus_per_node, 1);
  gboolean intra = TRUE;
  int k = 0;
  for (int i = 0; i < n; i++) {
    if (ranks[i] / gpn != ranks[0] / gpn) intra = FALSE;
    else k++;
  }
  if (intra) return (PxLink){intra_busbw(cluster), cluster->intra_lat, TRUE, &cluster->intra_curve};
  return inter_link(cluster, k);
}

/* The slowest link over `replicas` groups of n ranks; rank_at(i, r) gives
 * member i of replica r. Members of a TP or DP group have ranks in increasing
 * order with a constant stride (their axis's stride in the rank order), so a
 * group stays inside a node exactly when its first and last member do, and
 * its members on the first member's node are a prefix: two ranks per replica,
 * plus at most a node's worth, whatever n (this keeps 4096-GPU plans cheap). */
typedef int (*RankAt)(const PxPlan *plan, int stage, int i, int r);
static PxLink slowest_link(const PxCluster *cluster, const PxPlan *plan, int stage, int n,
                           int replicas, gint64 period, RankAt rank_at) {
  PxLink worst = {intra_busbw(cluster), cluster->intra_lat, TRUE, &cluster->intra_curve};
  int gpn = MAX(cluster->gpus_per_node, 1);
  /* a replica's ranks modulo gpn repeat every `period` replicas (rank_at is
   * linear in each coordinate), and they alone decide the answer: the first
   * period is enough (131072 GPUs took a minute of plan, 2^24 hours) */
  replicas = (int)MIN((gint64)replicas, period);
  for (int r = 0; r < replicas && n > 1; r++) {
    int first = rank_at(plan, stage, 0, r), last = rank_at(plan, stage, n - 1, r);
    if (first / gpn == last / gpn) continue;
    int k = 1;
    while (k < n && rank_at(plan, stage, k, r) / gpn == first / gpn) k++;
    return inter_link(cluster, k);
  }
  return worst;
}

static int tp_member(const PxPlan *plan, int stage, int i, int r) { return px_plan_rank_of(plan, r, i, stage); }
static int dp_member(const PxPlan *plan, int stage, int i, int r) { return px_plan_rank_of(plan, i, r, stage); }
/* member i of CP group r: data coordinate (r / tp)·cp + i, TP rank r mod tp */
static int cp_member(const PxPlan *plan, int stage, int i, int r) {
  return px_plan_rank_of(plan, r / plan->tp * plan->cp + i, r % plan->tp, stage);
}

PxLink px_cost_tp_link(const PxCluster *cluster, const PxPlan *plan, int stage) {
  return slowest_link(cluster, plan, stage, plan->tp, px_plan_data_ranks(plan), MAX(cluster->gpus_per_node, 1),
                      tp_member);
}

/* The gradient reduction's group: dp·cp ranks (CP ranks hold the same parameters). */
PxLink px_cost_dp_link(const PxCluster *cluster, const PxPlan *plan, int stage) {
  return slowest_link(cluster, plan, stage, px_plan_data_ranks(plan), plan->tp, MAX(cluster->gpus_per_node, 1),
                      dp_member);
}

PxLink px_cost_cp_link(const PxCluster *cluster, const PxPlan *plan, int stage) {
  /* replica r is data coordinate (r / tp)·cp, TP rank r mod tp: it repeats modulo a node every tp·gpn */
  PxLink l = slowest_link(cluster, plan, stage, MAX(plan->cp, 1), plan->dp * plan->tp,
                          (gint64)plan->tp * MAX(cluster->gpus_per_node, 1), cp_member);
  return l.intra ? l : inter_link(cluster, 1);
}

void px_cost_cp_ring(const PxModel *model, const PxPlan *plan, const PxLink *cp_link, double attn_fwd,
                     double attn_bwd, double *fwd_exposed, double *bwd_exposed) {
  int cp = MAX(plan->cp, 1);
  *fwd_exposed = *bwd_exposed = 0;
  if (cp == 1) return;
  if (plan->stack == PX_STACK_TORCHTITAN) {
    /* torch's ring (px_cost_titan_cp): the K/V all-gather is issued before
     * step 0's attention block and waited for before step 1's, forward and
     * backward alike; each backward step's dK/dV hop is issued after the
     * step's accumulation and waited for after the next step's block, the
     * last one after the loop, exposed */
    PxTitanCp tc;
    px_cost_titan_cp(model, plan, &tc);
    double ag = px_cost_allgather(tc.kv_gather_bytes, cp, cp_link), hop = px_cost_p2p(tc.dkv_bytes, cp_link);
    *fwd_exposed = MAX(0.0, ag - attn_fwd / cp);
    *bwd_exposed = MAX(0.0, ag - attn_bwd / cp) + (cp - 1) * MAX(0.0, hop - attn_bwd / cp) + hop;
    return;
  }
  double kv = px_memory_cp_kv_block(model, plan);
  *fwd_exposed = (cp - 1) * MAX(0.0, px_cost_p2p(kv, cp_link) - attn_fwd / cp);
  *bwd_exposed = (cp - 1) * MAX(0.0, px_cost_p2p(2 * kv, cp_link) - attn_bwd / cp) + px_cost_p2p(kv, cp_link);
}

PxLink px_cost_p2p_link(const PxCluster *cluster, const PxPlan *plan, int from, int to) {
  PxLink worst = {intra_busbw(cluster), cluster->intra_lat, TRUE, &cluster->intra_curve};
  PxLink inter = inter_link(cluster, 1);
  /* Every pair is (r, r + (to - from) · stride_pp): at least a node apart
   * once that distance reaches a node's GPUs. */
  int distance = abs(px_plan_rank_of(plan, 0, 0, to) - px_plan_rank_of(plan, 0, 0, from));
  if (distance >= MAX(cluster->gpus_per_node, 1) && px_plan_world(plan) > cluster->gpus_per_node) return inter;
  /* whether r and r + distance share a node depends on r mod gpus_per_node
   * only, and px_plan_rank_of is linear in each coordinate: r mod g repeats
   * every g data and every g tensor coordinates, so those decide it (O(g²),
   * not O(world): 2^24 GPUs ran for hours, 131072 for a minute) */
  int g = MAX(cluster->gpus_per_node, 1);
  for (int d = 0; d < MIN(px_plan_data_ranks(plan), g); d++)
    for (int t = 0; t < MIN(plan->tp, g); t++) {
      int pair[2] = {px_plan_rank_of(plan, d, t, from), px_plan_rank_of(plan, d, t, to)};
      if (pair[0] / g != pair[1] / g) return inter;
    }
  return worst;
}

/* The link a pipeline transfer takes: px_cost_p2p_link, with the latency a
 * send and its receive meet inside a node when the cluster gives its own
 * ([node] p2p_latency, measured by calibrate through the runtime's p2p
 * streams); collectives between the same ranks keep the node latency. */
static PxLink pipeline_link(const PxCluster *cluster, const PxPlan *plan, int from, int to) {
  PxLink l = px_cost_p2p_link(cluster, plan, from, to);
  if (l.intra && cluster->intra_p2p_lat > 0) l.lat = cluster->intra_p2p_lat;
  return l;
}

/* ---- compute ---- */

double px_cost_peak_flops(const PxCluster *cluster, PxPrecision prec) {
  switch (prec) {
  case PX_PREC_BF16: return cluster->peak_bf16;
  case PX_PREC_FP16: return cluster->peak_fp16;
  case PX_PREC_FP32: return cluster->peak_fp32;
  case PX_PREC_FP8: return cluster->peak_fp8;
  }
  return cluster->peak_fp32;
}

double px_cost_mfu_peak(const PxCluster *cluster, PxPrecision prec) {
  return px_cost_peak_flops(cluster, prec == PX_PREC_FP8 ? PX_PREC_BF16 : prec);
}

double px_cost_hbm_rate(const PxCluster *cluster) { return cluster->hbm_bw * eff_or_1(cluster->hbm_eff); }

/* The GEMM's efficiency with a tile's fixed cost (pipeline fill, epilogue)
 * worth k_overhead elements of its k loop (docs/cost.md: OpenXLA's sm_90
 * GEMM table); each split of a split-k GEMM pays it on its share of k. */
static double gemm_efficiency(const PxCluster *c, double batch, double m, double n, double k, double k_overhead) {
  double eff = eff_or_1(c->gemm_eff);
  double split = 1, share = 1;
  if (c->sms > 0 && m > 0 && n > 0) {
    double tile = c->gemm_tile > 0 ? c->gemm_tile : 128;
    double tiles = MAX(batch, 1) * ceil(m / tile) * ceil(n / tile);
    /* split-k: too few tiles for the SMs and a long k -> cuBLAS splits k */
    if (tiles < c->sms) split = MAX(1.0, MIN(floor(c->sms / tiles), floor(k / (4 * tile))));
    double slots = ceil(tiles * split / c->sms) * c->sms;
    share = (MAX(batch, 1) * m * n * split / (tile * tile)) / slots;
  }
  double kpart = k / split;
  double kloop = k_overhead > 0 && kpart > 0 ? kpart / (kpart + k_overhead) : 1.0;
  return eff * share * kloop;
}

double px_cost_gemm_efficiency(const PxCluster *c, double batch, double m, double n, double k) {
  return gemm_efficiency(c, batch, m, n, k, c->gemm_k_overhead);
}

double px_cost_flash_seq_factor(const PxCluster *c, double seq) {
  return c->flash_seq_half > 0 && seq > 0 ? seq / (seq + c->flash_seq_half) : 1.0;
}

double px_cost_sm_share(const PxCluster *c, int held) {
  return held > 0 && c->sms > 0 ? MIN(1.0, (double)held / c->sms) : 0.0;
}

double px_cost_collective_sm_share(const PxCluster *c) { return px_cost_sm_share(c, c->coll_sms); }

/* Persistent GEMMs beside a kernel that holds SMs. PyTorch issue #143988
 * (2024-12, FSDP on H100): the cuBLAS matmuls "launch as many CUDA blocks as
 * there are SMs on the GPU (i.e., 132) and each of these blocks will process
 * several tiles in a row"; overlapped with an NCCL kernel "the matmuls take
 * 2x as long": "not all blocks of the matmuls can be scheduled at once, thus
 * breaking them into two waves". Pull request #147966 (the sm_carveout it
 * led to): Hopper's matmul kernels use this persistent schedule, where "in
 * previous generations these latencies could be hidden by having multiple
 * CUDA blocks per SM" (A100's cuBLAS kernels: one CTA per output tile, the
 * SM share alone). The sms CTAs on the sms (1 - share) SMs left: the wave
 * quantisation of px_cost_gemm_efficiency with a grid of one CTA per SM. */
double px_cost_persistent_waves(const PxCluster *c, double share) {
  if (!c->gemm_persistent || share <= 0) return 1;
  if (share >= 1) return 1; /* nothing left to run on: the share alone (pass_exposed stalls the pass) */
  return ceil(1.0 / (1.0 - share) - 1e-9);
}

double px_cost_overlap_share(double share, double gemm_frac, double waves) {
  if (waves <= 1 || share >= 1) return share;
  double g = MIN(MAX(gemm_frac, 0.0), 1.0);
  double k = g * waves + (1.0 - g) / (1.0 - share);
  return 1.0 - 1.0 / k;
}

double px_cost_collective_sm_share_link(const PxCluster *c, const PxLink *l) {
  if (!l || !l->intra || c->coll_sms_intra <= 0) return px_cost_collective_sm_share(c);
  return px_cost_sm_share(c, c->coll_sms_intra);
}

/* ---- TP communication overlap (docs/cost.md "TP communication overlap") ----
 * Transformer Engine 1.14 (commit 3b2a7b00, the one NeMo 25.02's
 * requirements/manifest.json pins), transformer_engine/pytorch/module/base.py
 * initialize_ub: with ub_cfgs None (Megatron-LM without --tp-comm-overlap-cfg,
 * NeMo's recipes that give no tp_comm_overlap_cfg) get_default_config gives
 * every GEMM its method's defaults — ring_exchange for qkv_fprop, fc1_fprop,
 * proj_dgrad, fc2_dgrad (num_sm 1, cga_size 1, num_splits tp, use_ce True);
 * pipeline for proj_fprop, fc2_fprop (num_sm 16, cga_size 2, num_splits 4);
 * bulk for qkv_dgrad, qkv_wgrad, fc1_dgrad, fc1_wgrad (num_sm 16); all with
 * set_sm_margin False, aggregate False, atomic_gemm False. A given ub_cfgs
 * entry replaces the defaults of its GEMM (ub_cfg.update). NeMo's entries:
 * nemo/collections/llm/recipes/tp_overlap_configs/userbuffers.py (commit
 * d2b21556, the dgxc-benchmarking 25.04 recipes' NeMo); their dataclasses
 * (RingExchangeOverlapCfg: num_sm 1, set_sm_margin False; no use_ce, so TE's
 * True stays). cga_size does not enter the model. */
#define UB_RING(agg) {PX_UB_RING_EXCHANGE, 1, 0, FALSE, agg, 1}
#define UB_PIPE(sms, margin) {PX_UB_PIPELINE, sms, 4, margin, FALSE, 2}
#define UB_BULK(sms) {PX_UB_BULK, sms, 1, FALSE, FALSE, 2}
static const PxTpOverlapConfig tpo_configs[PX_N_TPO] = {
  [PX_TPO_TE] = {.qkv_fprop = UB_RING(FALSE), .fc1_fprop = UB_RING(FALSE),
                 .proj_fprop = UB_PIPE(16, FALSE), .fc2_fprop = UB_PIPE(16, FALSE),
                 .proj_dgrad = UB_RING(FALSE), .fc2_dgrad = UB_RING(FALSE),
                 .qkv_dgrad = UB_BULK(16), .fc1_dgrad = UB_BULK(16),
                 .qkv_wgrad = UB_BULK(16), .fc1_wgrad = UB_BULK(16)},
  /* userbuffers_bf16_h100_h8192_tp4_mbs1_seqlen8192 (Llama 3 70B, H100) */
  [PX_TPO_NEMO_H8192_TP4] = {.qkv_fprop = UB_RING(FALSE), .fc1_fprop = UB_RING(FALSE),
                             .proj_fprop = UB_PIPE(24, TRUE), .fc2_fprop = UB_PIPE(16, TRUE),
                             .proj_dgrad = UB_RING(FALSE), .fc2_dgrad = UB_RING(FALSE),
                             .qkv_dgrad = UB_BULK(4), .fc1_dgrad = UB_BULK(2),
                             .qkv_wgrad = UB_BULK(24), .fc1_wgrad = UB_BULK(4)},
  /* userbuffers_bf16_h100_h16384_tp8_cp2_mbs1_seqlen8192 (Llama 3.1 405B, H100) */
  [PX_TPO_NEMO_H16384_TP8] = {.qkv_fprop = UB_RING(TRUE), .fc1_fprop = UB_RING(TRUE),
                              .proj_fprop = UB_PIPE(24, TRUE), .fc2_fprop = UB_PIPE(8, TRUE),
                              .proj_dgrad = UB_RING(TRUE), .fc2_dgrad = UB_RING(TRUE),
                              .qkv_dgrad = UB_BULK(2), .fc1_dgrad = UB_BULK(2),
                              .qkv_wgrad = UB_BULK(24), .fc1_wgrad = UB_BULK(2)},
};
#undef UB_RING
#undef UB_PIPE
#undef UB_BULK

const PxTpOverlapConfig *px_tp_overlap_config(PxTpOverlap t) {
  return t > PX_TPO_NONE && t < PX_N_TPO ? &tpo_configs[t] : NULL;
}

double px_cost_ub_ring_exposed(int steps, double gemm_step, double p2p_step, double p2p_first) {
  return p2p_first + MAX(steps - 1, 0) * MAX(0.0, p2p_step - gemm_step);
}

double px_cost_ub_pipeline_exposed(int splits, double gemm_chunk, double rs_chunk, double share) {
  double n1 = MAX(splits - 1, 0);
  return rs_chunk + MAX(n1 * (rs_chunk - gemm_chunk), share * n1 * rs_chunk);
}

/* A pass of compute C beside collectives on NCCL for c seconds: the pass runs
 * on 1 - share of the SMs meanwhile, so it ends at max(c, C + share c). */
double px_cost_pass_exposed(double compute, double coll, double coll_sms, double share) {
  return MAX(MAX(0.0, coll - compute), share * coll_sms);
}

/* One GEMM launched just after a collective that holds `share` of the SMs
 * for `coll` seconds. Without persistent GEMMs (waves <= 1) the SM share
 * (px_cost_pass_exposed). A persistent GEMM's CTAs that find no SM wait for
 * the collective to end or for the first wave to finish, whichever comes
 * first, and then take the whole GEMM time (each CTA holds an equal share of
 * the tiles): the GEMM ends at gemm + min(coll, (waves - 1) gemm), the pair
 * at the later of that and coll. */
double px_cost_gemm_beside_exposed(double gemm, double coll, double share, double waves) {
  if (waves <= 1) return px_cost_pass_exposed(gemm, coll, coll, share);
  return MAX(MAX(0.0, coll - gemm), MIN(coll, (waves - 1) * gemm));
}

/* Megatron-Core core/distributed/param_and_grad_buffer.py finish_param_sync
 * (called by DistributedDataParallel's forward pre-hook): the first bucket's
 * all-gather is dispatched there and waited for ("first AG bucket in first
 * model chunk"), then the next bucket group's is dispatched, which the
 * forward of the layers just gathered overlaps. */
double px_cost_param_gather_exposed(int n, const double *gather, const double *fwd, double share) {
  if (n <= 0) return 0;
  double t = gather[0], work = 0;
  for (int b = 1; b < n; b++) t += MAX(gather[b], fwd[b - 1] + share * gather[b]);
  t += fwd[n - 1];
  for (int b = 0; b < n; b++) work += fwd[b];
  return MAX(0.0, t - work);
}

void px_cost_zero3_fold(double *fwd, double *bwd_input, double *bwd_weight, double gather, double gather_pcie,
                        double reduce, double cast, double share, double waves, double gemm_fwd, double gemm_bwd) {
  *fwd += cast;
  *bwd_input += cast;
  double g_sms = gather - gather_pcie;
  double bwd = *bwd_input + *bwd_weight;
  double fshare = px_cost_overlap_share(share, *fwd > 0 ? gemm_fwd / *fwd : 0, waves);
  double bshare = px_cost_overlap_share(share, bwd > 0 ? gemm_bwd / bwd : 0, waves);
  double fwd_exposed = px_cost_pass_exposed(*fwd, gather, g_sms, fshare);
  double bwd_exposed = px_cost_pass_exposed(bwd, gather + reduce, g_sms + reduce, bshare);
  *fwd += fwd_exposed;
  *bwd_input += bwd_exposed / 2;
  *bwd_weight += bwd_exposed / 2;
}

/* A GEMM whose operands and output go through HBM at `rate` bytes/s. */
static double gemm_time_at(const PxCluster *c, PxPrecision prec, double batch, double m, double n, double k,
                           int elem_bytes, double rate) {
  if (m <= 0 || n <= 0 || k <= 0) return 0;
  batch = MAX(batch, 1);
  double flops = 2.0 * batch * m * n * k;
  double eff = px_cost_gemm_efficiency(c, batch, m, n, k);
  /* FP8 GEMMs: the same quantisation, their own best large-GEMM efficiency;
   * no tile fixed cost (gemm_k_overhead is measured on bf16 kernels) */
  if (prec == PX_PREC_FP8)
    eff = gemm_efficiency(c, batch, m, n, k, 0) / eff_or_1(c->gemm_eff) * eff_or_1(c->gemm_eff_fp8);
  double t_compute = flops / (px_cost_peak_flops(c, prec) * eff);
  double t_memory = batch * elem_bytes * (m * k + k * n + m * n) / rate;
  return MAX(t_compute, t_memory) + c->kernel_overhead;
}

double px_cost_gemm_time(const PxCluster *c, PxPrecision prec, double batch, double m, double n, double k,
                         int elem_bytes) {
  return gemm_time_at(c, prec, batch, m, n, k, elem_bytes, px_cost_hbm_rate(c));
}

double px_cost_unfused_attn_rate(const PxCluster *c) {
  return c->unfused_attn_eff > 0 ? c->hbm_bw * c->unfused_attn_eff : px_cost_hbm_rate(c);
}

static int plan_seq(const PxPlan *plan, const PxModel *model) {
  return plan->seq > 0 ? plan->seq : model->desc.max_seq;
}

/* torch 1963fc8's ring attention as torchtitan 9dec370 calls it (cost.h
 * px_cost_titan_cp; docs/cost.md section 2, "Context parallelism"). Q: the rank's q, k or v
 * elements (torchtitan's repeat_kv expands K/V to every head before SDPA),
 * L: its logsumexp elements (fp32, one per head and token), E: bf16 / fp16.
 * Rank cp - 1, whose cp - 1 off-diagonal steps all take the full q and the
 * first half of K/V (partial = False, the costlier branch). */
void px_cost_titan_cp(const PxModel *model, const PxPlan *plan, PxTitanCp *out) {
  *out = (PxTitanCp){0};
  int cp = MAX(plan->cp, 1);
  if (cp == 1 || plan->stack != PX_STACK_TORCHTITAN) return;
  const PxModelDesc *d = &model->desc;
  int tp = MAX(plan->tp, 1);
  double E = px_plan_act_bytes(plan);
  double T = plan->mbs * ((double)plan_seq(plan, model) / cp);
  double Q = T * (double)px_model_q_dim(d) / tp;
  double L = T * (double)d->heads / tp;
  double n = cp - 1; /* off-diagonal steps */
  /* forward (_templated_ring_attention): key.contiguous() and
   * value.contiguous() on the transposed views (2 copies, 2 E Q each); at
   * steps 0..cp-2 torch.cat([key.flatten(), value.flatten()]) for the
   * rotater (read and write 2 Q E); step 0 _SDPAMerger.step's out.to(float32)
   * (E + 4) Q (lse is fp32 already: no kernel); each later step the cast
   * and _merge_one's eager ops in fp32: out - block_out (12 Q), sigmoid of
   * block_lse - lse (12 L + 8 L) times it (4 L + 4 Q read, 4 Q written),
   * out minus that (12 Q); lse - block_lse (12 L), logsigmoid (8 L), the
   * difference (12 L): (E + 36) Q + 56 L, 9 kernels; results()'s
   * out.to(E) (4 + E) Q */
  double merge = (E + 36) * Q + 56 * L;
  int merge_k = 9;
  if (plan->compile) {
    /* under --compile (torchtitan compiles each block with fullgraph=True,
     * so the ring is traced into the block's graph) the merge's cast and
     * arithmetic are one chain of element-wise ops on the same shapes,
     * fused by Inductor as the block's other chains (section 4, "compiled"
     * column): read out (4 Q), block_out (E Q), lse and block_lse (8 L),
     * write out (4 Q) and lse (4 L), 1 kernel. The copies (contiguous,
     * cat), the casts around the loop and the backward's += (one kernel
     * each already) stay as they are */
    merge = (8 + E) * Q + 12 * L;
    merge_k = 1;
  }
  out->fwd_bytes = 4 * E * Q + n * 4 * E * Q + (E + 4) * Q + n * merge + (4 + E) * Q;
  out->fwd_kernels = (int)(2 + n + 1 + merge_k * n + 1);
  /* backward (_templated_ring_attention_backward, convert_to_f32): three
   * fp32 zeros_like accumulators (12 Q written), key / value contiguous
   * (4 E Q), the K/V cats at steps 0..cp-2 (4 E Q each); step 0: grad_key,
   * grad_value, grad_query += the flash kernel's E-byte grads into fp32
   * (read 4 + E, write 4: (8 + E) Q each) and the dK/dV cat in fp32 (read and
   * write 8 Q); each later step on rank cp - 1: _partial_update's in-place
   * add into the first half of dK and of dV ((8 + E) Q / 2 each) and its cat
   * (read and write 4 Q each), grad_query += ((8 + E) Q), the dK/dV cat
   * (16 Q): (48 + 2 E) Q, 6 kernels; at the end grad_query.to(E) (4 + E) Q
   * and the received dK/dV's .to(E) 2 (4 + E) Q */
  out->bwd_bytes = 12 * Q + 4 * E * Q + n * 4 * E * Q + (3 * (8 + E) + 16) * Q + n * (48 + 2 * E) * Q +
                   3 * (4 + E) * Q;
  out->bwd_kernels = (int)(3 + 2 + n + 4 + 6 * n + 2);
  /* _AllGatherRotater: one all_gather_tensor of each rank's cat(K, V); the
   * dK/dV go round by _AllToAllRotater (ft_c.permute_tensor to rank + 1),
   * fp32 */
  out->kv_gather_bytes = cp * 2 * E * Q;
  out->dkv_bytes = 2 * 4 * Q;
  /* Memory: what the ring holds at once besides its inputs (the saved q, k,
   * v, out, lse) and its results, on rank cp - 1 (the other ranks' i > r
   * steps take half of q: less), with the lifetimes the code gives its
   * tensors (a name keeps a tensor until it is rebound; the all-gather's
   * input until its wait). Both peaks hold the all-gather's output (AG,
   * _AllGatherRotater._aggregated_buffer, until the function returns).
   * Forward, step 0: k, v contiguous (2 E Q), the cat of K/V the all-gather
   * was given (2 E Q, until next_buffer's wait at step 1), the block's out (E
   * Q) and _SDPAMerger.step's fp32 copy (4 Q): (5 E + 4) Q; a later step:
   * the block's out (E Q), its fp32 copy (4 Q), the merger's _out (4 Q),
   * out - block_out and its product with the sigmoid (4 Q each, alive
   * together): (E + 16) Q (lse's fp32 terms, Q / head_dim each, left out).
   * Backward, at the flash backward's return at a step i >= 1: the K/V cat
   * still named next_kv (2 E Q), the previous step's grad_query_,
   * grad_key_, grad_value_ beside the new ones (6 E Q), the fp32 grad_query
   * (4 Q), the previous step's grad_key, grad_value (the zeros_like
   * accumulators at i = 1, _partial_update's cats later: 8 Q), their dK/dV
   * cat given to the permute (8 Q, named next_grad_kv until the next wait)
   * and the permute's output in flight (8 Q): (8 E + 28) Q. Under --compile
   * Inductor frees at last use (fewer alive): not modelled, as the copies'
   * time above is charged as eager */
  out->fwd_buffers = out->kv_gather_bytes + MAX(5 * E + 4, E + 16) * Q;
  out->bwd_buffers = out->kv_gather_bytes + (8 * E + 28) * Q;
}

/* Memory-bound kernels of no op class (the rate px_cost_class_rate gives
 * such a kernel, the achieved HBM rate): bytes through HBM plus one overhead
 * per kernel. */
static double membound(const PxCluster *c, double bytes, int kernels) {
  return bytes / px_cost_hbm_rate(c) + kernels * c->kernel_overhead;
}

/* The one lookup of the rate a memory-bound op of class k (-1: a kernel of
 * no class) runs at, forward (dir 0) or backward (1), on the plan's stack:
 * 1. the class's calibrated bandwidth when the cluster gives it
 *    (membound_bw_CLASS_*, measured at the model's shapes; docs/cost.md 8):
 *    the cluster's own measurement wins;
 * 2. for the norm class, where the stack's LayerNorms are PyTorch's native
 *    layer_norm kernels run eagerly (PxStackProfile eager_layernorm: the
 *    fsdp stack) and the model's norm is a LayerNorm: the cluster's
 *    eager_layernorm efficiency, a published measurement of those kernels on
 *    that GPU, over hbm_bw (docs/cost.md 7, "eager LayerNorm");
 * 3. else the achieved HBM rate. */
double px_cost_class_rate(const PxCluster *c, PxStack stack, const PxModelDesc *d, PxOpClass k, int dir) {
  dir = dir ? 1 : 0;
  gboolean in_class = (int)k >= 0 && k < PX_N_OPC;
  if (in_class && c->membound_bw[k][dir] > 0) return c->membound_bw[k][dir];
  if (k == PX_OPC_NORM && d && d->norm == PX_NORM_LAYERNORM && px_stack_profile(stack)->eager_layernorm &&
      c->eager_ln_eff[dir] > 0)
    return c->hbm_bw * c->eager_ln_eff[dir];
  return px_cost_hbm_rate(c);
}

double px_cost_membound_class(const PxCluster *c, PxStack stack, const PxModelDesc *d, PxOpClass k, int dir,
                              double bytes, int kernels) {
  return bytes / px_cost_class_rate(c, stack, d, k, dir) + kernels * c->kernel_overhead;
}

/* Memory-bound kernels of several classes, each class's bytes at its own rate
 * (px_cost_class_rate). Bytes at one rate are summed before the division, so where
 * every class falls back to the HBM rate (no calibrated keys) the whole is
 * exactly one membound() of the summed bytes and kernels. */
typedef struct {
  double bw[PX_N_OPC + 1], bytes[PX_N_OPC + 1];
  int n, kernels;
} MemBound;

static void membound_add(MemBound *m, const PxCluster *c, const PxPlan *plan, const PxModelDesc *d, int k, int dir,
                         double bytes, int kernels) {
  double bw = px_cost_class_rate(c, plan->stack, d, k, dir);
  int i = 0;
  while (i < m->n && m->bw[i] != bw) i++;
  if (i == m->n) {
    m->bw[i] = bw;
    m->bytes[i] = 0;
    m->n++;
  }
  m->bytes[i] += bytes;
  m->kernels += kernels;
}

static double membound_time(const PxCluster *c, const MemBound *m) {
  double t = 0;
  for (int i = 0; i < m->n; i++) t += m->bytes[i] / m->bw[i];
  return t + m->kernels * c->kernel_overhead;
}

/* A norm's bytes (and kernels) as the plan's stack runs it: the class's
 * (px_cost_class_bytes), but for Transformer Engine's LayerNorm, which the
 * megatron-core stack runs (TELayerNormColumnParallelLinear, TENorm): its
 * backward reads dz and x once and writes dx, keeping per-CTA dgamma / dbeta
 * partials that a second, small kernel sums (ln_bwd_tuned_kernel, then
 * ln_bwd_finalize_tuned_kernel, transformer_engine/common/normalization/
 * layernorm/ln_bwd_kernels.cuh): 3 Tn h E in 2 kernels, not the two full
 * passes of PyTorch's and apex's kernels (norm_bwd_reads). */
static double norm_bytes(const PxModelDesc *d, const PxPlan *plan, int dir, double Tn, double h, int E, int *kernels) {
  double bytes = px_cost_class_bytes(d, PX_OPC_NORM, dir, Tn, h, E, kernels);
  if (dir && d->norm == PX_NORM_LAYERNORM && plan->stack == PX_STACK_MEGATRON_CORE) bytes = 3 * Tn * h * E;
  return bytes;
}

/* One op of class k over T x width elements (px_cost_class_bytes) at its rate. */
static double class_op(const PxCluster *c, const PxPlan *plan, const PxModelDesc *d, PxOpClass k, int dir, double T,
                       double width, int E) {
  int kernels;
  double bytes = px_cost_class_bytes(d, k, dir, T, width, E, &kernels);
  return px_cost_membound_class(c, plan->stack, d, k, dir, bytes, kernels);
}

/* TP collective of one s·b·h activation: all-reduce, or with sequence
 * parallelism the all-gather + reduce-scatter pair that replaces it. */
static double tp_collective(const PxPlan *plan, double act_bytes, const PxLink *l) {
  if (plan->tp <= 1) return 0;
  if (plan->seq_parallel) return px_cost_allgather(act_bytes, plan->tp, l) + px_cost_reduce_scatter(act_bytes, plan->tp, l);
  return px_cost_allreduce(act_bytes, plan->tp, l);
}

/* Sequence parallelism's second all-gather: a column-parallel linear keeps
 * only its sequence shard of the input (s/tp rows) for the backward and
 * all-gathers the rows again there, for its weight-gradient GEMM — one more
 * all-gather of the whole s b h input per column-parallel input (the
 * attention's qkv, the MLP's fc), besides the forward's and the backward's
 * reduce-scatter. Megatron-LM since sequence parallelism (mpu/layers.py
 * LinearWithGradAccumulationAndAsyncCommunication.backward at d898a8991d,
 * 2022-05-25: _all_gather_base(input, async_op=True) before the dgrad GEMM),
 * Megatron-Core through Transformer Engine (module/layernorm_linear.py and
 * layernorm_mlp.py backward: gather_along_first_dim(ln_out, async_op=True),
 * or userbuffers' bulk overlap with the dgrad GEMM), this executor
 * (exec/gpt.c: full_rows in the block's backward). Charged as the other TP
 * collectives are (docs/cost.md section 3). */
static double sp_regather(const PxPlan *plan, double act_bytes, const PxLink *l) {
  if (plan->tp <= 1 || !plan->seq_parallel) return 0;
  return px_cost_allgather(act_bytes, plan->tp, l);
}

/* Element passes a norm's backward makes over (Tn, h) besides writing dx.
 * LayerNorm: dx reads dy and x, and dgamma / dbeta read them again in a
 * second kernel — PyTorch's layer_norm_kernel.cu (layer_norm_grad_input_kernel,
 * then GammaBetaBackward(Simple)CUDAKernel) and apex's FusedLayerNorm that
 * Megatron-LM uses (cuComputePartGradGammaBeta, then cuComputeGradInput):
 * 4 reads. RMSNorm as Transformer Engine runs it: one fused kernel, 2 reads. */
static int norm_bwd_reads(const PxModelDesc *d) { return d->norm == PX_NORM_LAYERNORM ? 4 : 2; }
static int norm_bwd_extra_kernels(const PxModelDesc *d) { return d->norm == PX_NORM_LAYERNORM ? 1 : 0; }

double px_cost_class_bytes(const PxModelDesc *d, PxOpClass k, int dir, double T, double width, int E, int *kernels) {
  gboolean bwd = dir != 0, learned = d->pos == PX_POS_LEARNED, gated = px_ffn_gated(d->ffn_kind);
  double tw = T * width;
  int n = 1;
  double bytes = 0;
  switch (k) {
  case PX_OPC_NORM: /* read x, write y | dy, x (twice for LayerNorm), write dx */
    bytes = (bwd ? 1 + norm_bwd_reads(d) : 2) * tw * E;
    n = bwd ? 1 + norm_bwd_extra_kernels(d) : 1;
    break;
  case PX_OPC_RESIDUAL: bytes = 3 * tw * E; break; /* 2 reads + write | the gradient sum at the fork */
  case PX_OPC_ACT:
    if (d->ffn_kind == PX_FFN_RELU2) {
      /* squared ReLU as the frameworks write it, torch.pow(F.relu(x), 2) run
       * eagerly (NeMo d2b21556 nemo/collections/llm/fn/activation.py
       * squared_relu, "@torch.jit.script ... remove until we have
       * serialization", the activation_func of its NemotronConfig, which
       * Megatron-Core's MLP.forward calls unfused, bias_activation_fusion
       * being for GELU and SwiGLU only; Hugging Face's ReLUSquaredActivation,
       * relu then torch.square). Forward: relu (read x, write r) and pow
       * (read r, write y), 2 kernels. Backward (PyTorch derivatives.yaml):
       * pow's pow_backward(grad, r, 2) = grad * (2 * r.pow(1)) — r.pow(1) is
       * a copy (Pow.cpp pow_Tensor_Scalar_out: exp 1 -> out.copy_(base)),
       * the scalar multiply another pass, the product a third (2 + 2 + 3) —
       * then relu's threshold_backward(grad, r, 0) (3): 10 passes, 4
       * kernels, against a fused kernel's 2 | 3 (Megatron-LM's own
       * training/activations.py compiles it: not distinguished here) */
      bytes = (bwd ? 10 : 4) * tw * E;
      n = bwd ? 4 : 2;
    } else {
      bytes = (gated ? (bwd ? 5 : 3) : (bwd ? 3 : 2)) * tw * E;
    }
    break;
  case PX_OPC_EMBEDDING: /* gather (+ positions) | scatter-add (+ positions) */
    bytes = (bwd ? 3 : 2) * (learned ? 2 : 1) * tw * E;
    n = learned ? 2 : 1;
    break;
  case PX_OPC_CE: /* fp32 logits, read + write each way */
    bytes = 2 * tw * 4;
    n = bwd ? 2 : 3;
    break;
  case PX_N_OPC: break;
  }
  if (kernels) *kernels = n;
  return bytes;
}


/* ---- torchtitan's Llama block, eager and compiled (docs/cost.md section 4,
 * "torchtitan: eager and compiled kernels"; torchtitan 9dec370, the December
 * 2024 benchmarks' commit, and PyTorch's autograd formulas) ---- */

double px_cost_titan_rmsnorm_eager(int dir, double Tn, double h, int E, int *kernels) {
  /* models/norms.py RMSNorm.forward: self._norm(x.float()).type_as(x) *
   * self.weight, _norm = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) +
   * eps), the llama3 tomls' norm_type "rmsnorm" (not fused_rmsnorm), each op
   * its own kernel. Forward: float() E + 4, pow 4 + 4, mean 4 (a row of Tn
   * fp32 written), + eps and rsqrt over Tn elements (no full-size bytes),
   * x * rsqrt 4 + 4, type_as 4 + E, * weight E + E: 20 + 2E + 2(E + 4) per
   * element, 8 kernels. Backward (tools/autograd/derivatives.yaml,
   * FunctionsManual.cpp): * weight: dy * w (2E), dy * c (3E) summed to the
   * weight's shape (E); type_as: to fp32 (E + 4); x * r: g * r (4 + 4),
   * g * x (4 + 4 + 4) summed over h (4); rsqrt: -0.5 * g * r.pow(3) over Tn
   * (3 small kernels); mean: sum_backward's expand / N written full size
   * (4); pow: pow_backward = g * (2 * x.pow(1)) — x.pow(1) a copy
   * (Pow.cpp), the scalar product, the product: 8 + 8 + 12; the two
   * gradients of x.float() summed (InputBuffer: 12); float(): to E (4 + E).
   * 68 + 6E + 2E + 8 per element, 16 kernels. In fp32 (E = 4) float() and
   * type_as are the tensor itself: no casts. */
  gboolean cast = E < 4;
  double th = Tn * h;
  if (!dir) {
    *kernels = 6 + (cast ? 2 : 0);
    return th * (20.0 + 2 * E + (cast ? 2.0 * (E + 4) : 0));
  }
  *kernels = 14 + (cast ? 2 : 0);
  return th * (68.0 + 6 * E + (cast ? 2.0 * E + 8 : 0));
}

static void titan_add(PxTitanKernels *o, int k, double bytes, int kernels) {
  o->bytes[k] += bytes;
  o->kernels[k] += kernels;
}

void px_cost_titan_block(const PxModelDesc *d, gboolean compiled, int dir, double T, double Tn, int tp, int E,
                         PxTitanKernels *o) {
  memset(o, 0, sizeof *o);
  tp = MAX(tp, 1);
  const int NORM = PX_OPC_NORM, RES = PX_OPC_RESIDUAL, ACT = PX_OPC_ACT, NONE = PX_N_OPC;
  double h = d->hidden, q = (double)px_model_q_dim(d) / tp, kv = (double)px_model_kv_dim(d) / tp;
  double f = (double)d->ffn / tp;
  gboolean rep = d->kv_heads < d->heads; /* repeat_kv copies (n_rep > 1) */
  gboolean cast = E < 4;
  double nh = Tn * h;
  /* RoPE (models/llama/model.py apply_rotary_emb) on xq and xk: x.float() (E
   * + 4), view_as_complex (a view), the complex product with freqs_cis (4 +
   * 4 per real element), view_as_real (a view), type_as (4 + E); backward the
   * same three in reverse (the product by conj(freqs_cis)). Under compile
   * too: Inductor generates no code for complex tensors
   * (torch/_inductor/lowering.py unsupported_input_tensor, "Torchinductor
   * does not support code generation for complex operators", the warning of
   * torchtitan issue #15): the product runs as the eager kernel, the casts
   * around it as Inductor kernels, and xk's cast back (forward) or the
   * n_rep sum (backward) fused with repeat_kv's copy. repeat_kv
   * (expand + reshape: a copy) of keys and values when kv heads < heads:
   * read T kv, write T q; backward expand's sum_to_size, read T q, write
   * T kv. */
  titan_add(o, NONE, T * q * (8.0 + (cast ? 2.0 * (E + 4) : 0)), 1 + (cast ? 2 : 0)); /* xq */
  titan_add(o, NONE, T * kv * 8.0, 1);                                                  /* xk's product */
  if (!dir) {
    titan_add(o, NONE, cast ? T * kv * (E + 4.0) : 0, cast ? 1 : 0); /* xk.float() */
    if (compiled) {
      if (rep || cast) titan_add(o, NONE, T * (kv * 4.0 + (rep ? q : kv) * E), 1);
    } else {
      if (cast) titan_add(o, NONE, T * kv * (4.0 + E), 1);
      if (rep) titan_add(o, NONE, T * (kv + q) * E, 1);
    }
  } else {
    titan_add(o, NONE, cast ? T * kv * (4.0 + E) : 0, cast ? 1 : 0); /* back to E */
    if (compiled) {
      if (rep || cast) titan_add(o, NONE, T * ((rep ? q : kv) * E + kv * 4.0), 1);
    } else {
      if (rep) titan_add(o, NONE, T * (q + kv) * E, 1);
      if (cast) titan_add(o, NONE, T * kv * (E + 4.0), 1);
    }
  }
  if (rep) titan_add(o, NONE, T * (kv + q) * E, 1); /* values: the copy | its sum */
  if (!compiled) {
    /* eager: two RMSNorms; h = x + attention, out = h + feed_forward: one add
     * each (3E), backward the gradient sum at each fork (3E); SwiGLU
     * F.silu(w1 x) * w3 x: silu (2E) and mul (3E), backward mul's two
     * products (3E each) and silu_backward (3E); backward also the sums of
     * the dgrads that meet at a norm's output — wq, wk, wv (2 adds) and w1,
     * w3 (1): InputBuffer accumulation, 3E over T h each */
    int nk;
    double nb = px_cost_titan_rmsnorm_eager(dir, Tn, h, E, &nk);
    titan_add(o, NORM, 2 * nb, 2 * nk);
    titan_add(o, RES, 2 * 3.0 * E * nh, 2);
    if (dir) titan_add(o, RES, 3 * 3.0 * E * T * h, 3);
    titan_add(o, ACT, (dir ? 9.0 : 5.0) * E * T * f, dir ? 3 : 2);
    return;
  }
  /* compiled (parallelize_llama.py apply_compile: torch.compile(block,
   * fullgraph=True)): Inductor fuses the element-wise ops and reductions
   * between two extern kernels (mm, SDPA, the collectives) into one kernel
   * that reads its inputs and writes its outputs once. Forward: norm(x)
   * (read x, write y: 2E); x + attn fused with ffn_norm (read 2, write h and
   * y: 4E); silu(a) * b (3E); h + ffn, the block's output (3E). Backward:
   * silu-mul's (read g, a, b, write da, db: 5E); each norm's dx kernel reads
   * the dgrads meeting at its output (3 for the attention's, 2 for the
   * MLP's), its input and the residual gradient and writes dx, and the
   * weight's column reduction reads the dgrads and the input again (a second
   * kernel): attention_norm 6E + 4E, ffn_norm 5E + 3E; the output add's
   * gradient is passed through (no kernel). With TP the dgrads are partial
   * sums reduce-scattered (an extern collective) before the norm: their sum
   * is its own kernel over T h (3 reads + 1, 2 + 1), and each norm reads one
   * gradient: 4E + 2E. */
  if (!dir) {
    titan_add(o, NORM, (2.0 + 4.0) * E * nh, 2);
    titan_add(o, RES, 3.0 * E * nh, 1);
    titan_add(o, ACT, 3.0 * E * T * f, 1);
    return;
  }
  titan_add(o, ACT, 5.0 * E * T * f, 1);
  if (tp > 1) {
    titan_add(o, RES, (4.0 + 3.0) * E * T * h, 2);
    titan_add(o, NORM, 2 * 6.0 * E * nh, 4);
  } else {
    titan_add(o, NORM, (10.0 + 8.0) * E * nh, 4);
  }
}

/* Megatron-LM's mixed-precision optimizer step per parameter
 * (megatron/optimizer/optimizer.py Float16OptimizerWithFloat16Params.step,
 * the same in April 2021, 8cfef1bfe7, and May 2022, d898a8991d), each pass
 * its own kernel over the rank's parameters: the 16-bit main_grad copied to
 * the fp32 gradient (_copy_model_grads_to_main_grads: main_grad.float(), a
 * copy only when the gradient is accumulated in 16 bits: G + 4); with fp16's
 * loss scaler (optimizer/__init__.py: a DynamicGradScaler for fp16 only)
 * torch._amp_foreach_non_finite_check_and_unscale_ (read and write 4 + 4);
 * clip_grad_norm_fp32's multi_tensor_l2norm (read 4; --clip-grad 1.0 by
 * default; the scaling that follows only when it clips, not charged); apex
 * FusedAdam on the fp32 master (parameter, gradient, m, v read, parameter, m,
 * v written: 28); _copy_main_params_to_model_params (read 4, write E). fp16
 * 52 B, bf16 (fp32 main_grad, no scaler) 38 B; fp32 (FP32Optimizer: the norm
 * and Adam) 32 B. */
static double megatron_optimizer_bytes(PxPrecision prec, int E, int G) {
  if (E >= 4) return 4.0 + 28.0;
  double copy_grads = G < 4 ? G + 4.0 : 0.0;
  double unscale = prec == PX_PREC_FP16 ? 8.0 : 0.0;
  return copy_grads + unscale + 4.0 + 28.0 + (4.0 + E);
}

double px_cost_optimizer_bytes(PxStack stack, PxPrecision prec, int E, int G) {
  if (stack == PX_STACK_MEGATRON_2021) return megatron_optimizer_bytes(prec, E, G);
  const PxStackProfile *sp = px_stack_profile(stack);
  return sp->optimizer_bytes > 0 ? sp->optimizer_bytes : 24.0 + G + E;
}

double px_cost_unfused_attn_flops(double b, double seq, double h, int tp) { return 4.0 * b * seq * seq * h / MAX(tp, 1); }

/* Bias gradients: a linear layer's bias gradient is its output gradient
 * summed over the tokens, a reduction kernel of its own reading T x out
 * elements (PyTorch autograd: addmm's broadcast bias reduced by sum_to;
 * Megatron-LM's LinearWithGradAccumulationAndAsyncCommunication.backward:
 * grad_output.sum(dim=0)). A column-parallel bias is split with its weight's
 * rows; a row-parallel one is whole and sees the norm's tokens (Tn, sequence
 * parallelism). Norm biases are in the norm's own backward. */
static double bias_grads(const PxCluster *c, const PxLayer *layer, const PxPlan *plan, double T, double Tn, int E) {
  double bytes = 0;
  int kernels = 0, tp = MAX(plan->tp, 1);
  for (guint i = 0; i < layer->n_tensors; i++) {
    const PxTensorSpec *t = &layer->tensors[i];
    gboolean bias = t->role == PX_ROLE_QKV_BIAS || t->role == PX_ROLE_ATTN_OUT_BIAS || t->role == PX_ROLE_FFN_IN_BIAS ||
                    t->role == PX_ROLE_FFN_GATE_BIAS || t->role == PX_ROLE_FFN_UP_BIAS || t->role == PX_ROLE_FFN_OUT_BIAS;
    if (!bias || t->experts > 0) continue;
    gboolean split = t->split == PX_SPLIT_ROWS;
    bytes += (split ? T : Tn) * ((double)t->shape[0] / (split ? tp : 1)) * E;
    kernels++;
  }
  return bytes > 0 ? membound(c, bytes, kernels) : 0;
}

/* Forward, dgrad and wgrad GEMMs of the weight (out, in) over T tokens. FP8
 * (Transformer Engine): FP8 operands (1 B), and a cast-transpose kernel for
 * the GEMM's input forward and for its output gradient backward (reads the
 * bf16 tensor, writes the FP8 copy and its transpose: E + 2 B per element;
 * counted as its own kernel, where TE often fuses it into the norm or the
 * activation before). */
static void weight_gemms(const PxCluster *c, PxPrecision prec, int E, double T, double out, double in,
                         double *fwd, double *dgrad, double *wgrad, double *gemm_fwd, double *gemm_bwd) {
  int eb = prec == PX_PREC_FP8 ? 1 : E;
  double f = px_cost_gemm_time(c, prec, 1, T, out, in, eb);
  double d = px_cost_gemm_time(c, prec, 1, T, in, out, eb);
  double w = px_cost_gemm_time(c, prec, 1, out, in, T, eb);
  *fwd += f;
  *dgrad += d;
  *wgrad += w;
  if (gemm_fwd) *gemm_fwd += f;
  if (gemm_bwd) *gemm_bwd += d + w;
  if (prec == PX_PREC_FP8) {
    *fwd += membound(c, T * in * (E + 2.0), 1);
    *dgrad += membound(c, T * out * (E + 2.0), 1);
  }
}

/* The routed experts of E/ep experts on a rank, `other` tokens each but one
 * with `busiest` (grouped GEMM: a batch and one more), weight (out, in). */
static void expert_gemms(const PxCluster *c, PxPrecision prec, int E, const PxMoeTokens *t, double out, double in,
                         double *fwd, double *dgrad, double *wgrad) {
  double n = t->local - 1;
  if (n > 0 && t->other > 0) {
    *fwd += px_cost_gemm_time(c, prec, n, t->other, out, in, E);
    *dgrad += px_cost_gemm_time(c, prec, n, t->other, in, out, E);
    *wgrad += px_cost_gemm_time(c, prec, n, out, in, t->other, E);
  }
  weight_gemms(c, prec, E, t->busiest, out, in, fwd, dgrad, wgrad, NULL, NULL);
}

/* An MoE block's routed part on the busiest rank (docs/moe.md): the router's
 * softmax, permuting the tokens into expert order and back (Megatron-Core's
 * token permutation: each copy read and written), the experts' GEMMs and
 * activation function, and the collectives: the dispatch and combine
 * all-to-all over ep (forward 2, backward 2) and, when the ETP group holds
 * different tokens, an all-gather after dispatch and a reduce-scatter before
 * combine over etp. The router GEMM is a plain (E, h) weight (the block's
 * loop). The EP and ETP groups are pipeline rank 0's (every stage's are alike
 * when pp is the outermost axis). Forward only, the load-balancing loss's
 * statistics (exec/moe_layer.c: 2E + 1 doubles, the copies per expert, the
 * probability sums and the token count) summed over the tokens that the
 * loss covers together: an all-reduce over the TP group under sequence
 * parallelism, then one over the CP group (px_cost_cp_link) under context
 * parallelism; latency-bound. */
static void moe_times(const PxModel *model, const PxCluster *cl, const PxPlan *plan, const PxLink *tp_link,
                      PxLayerTimes *c, double *dgrad, double *wgrad) {
  const PxModelDesc *d = &model->desc;
  PxMoeTokens t;
  px_moe_tokens(model, plan, &t);
  int E = px_plan_act_bytes(plan), etp = px_plan_etp(plan), ep = MAX(plan->ep, 1);
  double h = d->hidden, f = (double)d->expert_ffn / etp;
  gboolean gated = px_ffn_gated(d->ffn_kind);
  for (int i = 0; i < (gated ? 2 : 1); i++) expert_gemms(cl, plan->precision, E, &t, f, h, &c->fwd, dgrad, wgrad);
  expert_gemms(cl, plan->precision, E, &t, h, f, &c->fwd, dgrad, wgrad);
  double perm = 2 * (t.sent + t.received) * h * E; /* permute + unpermute, read and write each copy */
  double router = 2 * t.in * d->experts * 4.0;     /* fp32 softmax */
  for (int dir = 0; dir < 2; dir++) {
    /* the experts' activation function is a dense MLP's over the t.total
     * routed rows of f / etp: px_cost_class_bytes (squared ReLU's passes and
     * kernels too) at the activation class's rate; the permute, the
     * unpermute and the router's softmax at the HBM rate, one kernel each */
    MemBound mb = {0};
    int ak;
    double ab = px_cost_class_bytes(d, PX_OPC_ACT, dir, t.total, f, E, &ak);
    membound_add(&mb, cl, plan, d, PX_OPC_ACT, dir, ab, ak);
    membound_add(&mb, cl, plan, d, -1, dir, perm + (dir ? 1.5 : 1.0) * router, 3);
    *(dir ? dgrad : &c->fwd) += membound_time(cl, &mb);
  }
  int gpn = MAX(cl->gpus_per_node, 1);
  double a2a = px_cost_alltoall(cl, MAX(t.sent, t.received) * h * E, ep, px_moe_ep_per_node(plan, 0, gpn));
  double etp_comm = 0;
  if (t.gather > 1) {
    g_autofree int *ranks = g_new(int, etp);
    for (int i = 0; i < etp; i++) ranks[i] = px_moe_rank_of(plan, 0, i, 0, 0);
    PxLink l = px_cost_group_link(cl, ranks, etp);
    etp_comm = px_cost_allgather(t.total * h * E, etp, &l) + px_cost_reduce_scatter(t.total * h * E, etp, &l);
  }
  c->ep_fwd = c->ep_bwd = 2 * a2a + etp_comm;
  double stats = (2.0 * d->experts + 1) * sizeof(double);
  if (plan->seq_parallel && plan->tp > 1) c->moe_stats += px_cost_allreduce(stats, plan->tp, tp_link);
  if (plan->cp > 1) {
    PxLink cpl = px_cost_cp_link(cl, plan, 0);
    c->moe_stats += px_cost_allreduce(stats, plan->cp, &cpl);
  }
  c->tp_fwd += c->ep_fwd + c->moe_stats;
  c->tp_bwd += c->ep_bwd;
}

/* ---- TP communication overlap inside a block (docs/cost.md "TP communication
 * overlap"): Megatron-Core's TE layers name their userbuffers qkv
 * (TELayerNormColumnParallelLinear of the attention), proj (TERowParallelLinear),
 * fc1 (the MLP's TELayerNormColumnParallelLinear, gate and up fused) and fc2;
 * this model keeps gate and up as two GEMMs on the same gathered chunk. */
enum { UB_QKV, UB_PROJ, UB_FC1, UB_FC2, UB_N };
typedef struct {
  double fwd_step;   /* one forward chunk's GEMMs (ring step or pipeline split) */
  double dgrad_step; /* one dgrad ring step's GEMMs (row-parallel) */
  double dgrad;      /* whole dgrad GEMMs (column-parallel: beside the bulk all-gather) */
  double wgrad;      /* whole wgrad GEMMs (column-parallel: beside the bulk reduce-scatter) */
  gboolean any;
} UbGroup;

/* The group of a block weight, -1 when TE overlaps nothing around it (routed
 * experts; an MoE block's MLP: its tokens go through the dispatcher). */
static int ub_group(PxTensorRole r, gboolean moe) {
  switch (r) {
  case PX_ROLE_QKV: return UB_QKV;
  case PX_ROLE_ATTN_OUT: return UB_PROJ;
  case PX_ROLE_FFN_IN: case PX_ROLE_FFN_GATE: case PX_ROLE_FFN_UP: return moe ? -1 : UB_FC1;
  case PX_ROLE_FFN_OUT: return moe ? -1 : UB_FC2;
  default: return -1;
  }
}

/* The SMs a GEMM beside userbuffers runs on: comm_gemm_overlap.cpp
 * CommOverlapCore: _math_sms = set_sm_margin ? sm_count - num_comm_sm : sm_count. */
static int ub_math_sms(const PxCluster *c, const PxUbGemm *u) {
  return u->set_sm_margin && c->sms > u->num_sm ? c->sms - u->num_sm : c->sms;
}
/* The share of the SMs the communication kernels take from a GEMM launched on
 * all of them (no margin): num_sm / sms, or with persistent GEMMs the share
 * their second wave costs (px_cost_overlap_share of the GEMM alone); ring
 * exchange none (use_ce: the copy engines move the data, userbuffers.cu
 * userbuffers_send / _recv launch 1-thread flag kernels). The pipelined
 * reduce-scatter's chunks (split_overlap_rs) run beside GEMM chunks on
 * several compute streams, so the rate of the waves, not one GEMM's
 * timeline, is taken there. */
static double ub_share(const PxCluster *c, const PxUbGemm *u) {
  if (u->method == PX_UB_RING_EXCHANGE || u->set_sm_margin) return 0.0;
  /* a persistent GEMM launched on all the SMs runs in two waves beside them
   * (px_cost_persistent_waves); the overlapped work is that one GEMM */
  double share = px_cost_sm_share(c, u->num_sm);
  return px_cost_overlap_share(share, 1.0, px_cost_persistent_waves(c, share));
}
/* A bulk overlap (bulk_overlap: the collective launched on the
 * communication stream, then the one GEMM beside it): the SM share, or with
 * persistent GEMMs the GEMM's waves (px_cost_gemm_beside_exposed). */
static double ub_bulk_exposed(const PxCluster *c, const PxUbGemm *u, double gemm, double coll) {
  double share = u->set_sm_margin ? 0.0 : px_cost_sm_share(c, u->num_sm);
  return px_cost_gemm_beside_exposed(gemm, coll, share, px_cost_persistent_waves(c, share));
}
/* Ring-exchange steps: tp, or tp/2 of two chunks with aggregate. */
static int ub_ring_steps(const PxUbGemm *u, int tp) { return u->aggregate && tp % 2 == 0 ? tp / 2 : tp; }

/* A GEMM on `sms` SMs (the wave quantisation of px_cost_gemm_efficiency over
 * that many): cuBLAS told to leave the margin to the communication kernels. */
static double gemm_on_sms(const PxCluster *c, int sms, PxPrecision prec, double m, double n, double k, int eb) {
  if (sms <= 0 || sms >= c->sms) return px_cost_gemm_time(c, prec, 1, m, n, k, eb);
  PxCluster cc = *c;
  cc.sms = sms;
  return px_cost_gemm_time(&cc, prec, 1, m, n, k, eb);
}

/* The group's userbuffers settings: its forward, dgrad and (column-parallel
 * only: bulk) wgrad GEMMs' */
static void ub_cfgs(const PxTpOverlapConfig *cfg, int g, const PxUbGemm **f, const PxUbGemm **d,
                    const PxUbGemm **w) {
  switch (g) {
  case UB_QKV: *f = &cfg->qkv_fprop, *d = &cfg->qkv_dgrad, *w = &cfg->qkv_wgrad; break;
  case UB_FC1: *f = &cfg->fc1_fprop, *d = &cfg->fc1_dgrad, *w = &cfg->fc1_wgrad; break;
  case UB_PROJ: *f = &cfg->proj_fprop, *d = &cfg->proj_dgrad, *w = NULL; break;
  default: *f = &cfg->fc2_fprop, *d = &cfg->fc2_dgrad, *w = NULL; break;
  }
}

/* One block weight (out, in) split over tp into its group's chunks. */
static void ub_gemms(const PxCluster *c, const PxTpOverlapConfig *cfg, int g, PxPrecision prec, int E, int tp,
                     double T, double out, double in, UbGroup *grp, double *fwd, double *dgrad, double *wgrad) {
  int eb = prec == PX_PREC_FP8 ? 1 : E;
  grp->any = TRUE;
  const PxUbGemm *f, *d, *w;
  ub_cfgs(cfg, g, &f, &d, &w);
  if (w) {
    /* column-parallel: the forward consumes the all-gathered norm output chunk by chunk */
    int steps = ub_ring_steps(f, tp);
    grp->fwd_step += gemm_on_sms(c, ub_math_sms(c, f), prec, T / steps, out, in, eb);
    grp->dgrad += gemm_on_sms(c, ub_math_sms(c, d), prec, T, in, out, eb);
    grp->wgrad += gemm_on_sms(c, ub_math_sms(c, w), prec, out, in, T, eb);
  } else {
    /* row-parallel: the forward GEMM split along its output columns (m / num_splits
     * in split_overlap_rs), the dgrad consuming the all-gathered output gradient */
    int splits = MAX(f->num_splits, 1), steps = ub_ring_steps(d, tp);
    grp->fwd_step += gemm_on_sms(c, ub_math_sms(c, f), prec, T, out / splits, in, eb);
    grp->dgrad_step += gemm_on_sms(c, ub_math_sms(c, d), prec, T / steps, in, out, eb);
    *wgrad += px_cost_gemm_time(c, prec, 1, out, in, T, eb);
  }
  if (prec == PX_PREC_FP8) { /* the cast-transposes of weight_gemms */
    *fwd += membound(c, T * in * (E + 2.0), 1);
    *dgrad += membound(c, T * out * (E + 2.0), 1);
  }
}

/* The groups' GEMMs and what their collectives leave exposed: into fwd, dgrad,
 * wgrad and the forward / backward TP time. `act` = T h E, the gathered
 * activation (or gradient) of one micro-batch. */
static void ub_finish(const PxCluster *c, const PxTpOverlapConfig *cfg, const UbGroup *grp, int tp, double act,
                      const PxLink *l, double *fwd, double *dgrad, double *wgrad, double *tp_fwd, double *tp_bwd) {
  for (int g = 0; g < UB_N; g++) {
    if (!grp[g].any) continue;
    const PxUbGemm *f, *d, *w;
    ub_cfgs(cfg, g, &f, &d, &w);
    if (w) {
      int steps = ub_ring_steps(f, tp);
      double first = steps < tp ? px_cost_p2p(act / tp, l) : 0;
      *fwd += steps * grp[g].fwd_step;
      *tp_fwd += px_cost_ub_ring_exposed(steps, grp[g].fwd_step, px_cost_p2p(act / steps, l), first);
      /* bulk: the norm output all-gathered again for the wgrad beside the dgrad
       * GEMM, the dgrad output reduce-scattered beside the wgrad GEMM */
      double ag = px_cost_allgather(act, tp, l), rs = px_cost_reduce_scatter(act, tp, l);
      *dgrad += grp[g].dgrad;
      *wgrad += grp[g].wgrad;
      *tp_bwd += ub_bulk_exposed(c, d, grp[g].dgrad, ag) + ub_bulk_exposed(c, w, grp[g].wgrad, rs);
    } else {
      int splits = MAX(f->num_splits, 1), steps = ub_ring_steps(d, tp);
      double first = steps < tp ? px_cost_p2p(act / tp, l) : 0;
      *fwd += splits * grp[g].fwd_step;
      *tp_fwd += px_cost_ub_pipeline_exposed(splits, grp[g].fwd_step, px_cost_reduce_scatter(act / splits, tp, l),
                                             ub_share(c, f));
      *dgrad += steps * grp[g].dgrad_step;
      *tp_bwd += px_cost_ub_ring_exposed(steps, grp[g].dgrad_step, px_cost_p2p(act / steps, l), first);
    }
  }
}

/* A block weight's (out, in) on one rank of its TP group: column-parallel
 * weights split their rows, row-parallel ones their columns. */
static void tp_local(const PxTensorSpec *t, int tp, double *out, double *in) {
  if (t->split == PX_SPLIT_ROWS) *out /= tp;
  else if (t->split == PX_SPLIT_COLS) *in /= tp;
}

/* torchtitan's selective activation checkpointing, "op" (the default
 * selective_ac_option; models/llama3/infra/parallelize.py _op_sac_save_list,
 * distributed/activation_checkpoint.py _custom_policy): inside each block it
 * saves the outputs of the attention kernel and of every mm except every
 * second one in forward order, and recomputes everything else. The block's
 * mms in its forward order are wq, wk, wv, wo, then w1, w3, w2 (gated FFN,
 * FeedForward.forward: w2(silu(w1 x) * w3 x)) or w1, w2: the 2nd, 4th and
 * 6th (wk, wo, w3 — or wk, wo, w2) run again before the backward, with the
 * forward's memory-bound kernels (norms, residual adds, the activation: the
 * caller adds them). The forward GEMM time of those weights. */
static double titan_op_sac(const PxModel *model, const PxLayer *layer, const PxCluster *cluster,
                           const PxPlan *plan, double T, int tp) {
  const PxModelDesc *d = &model->desc;
  int E = px_plan_act_bytes(plan);
  double t = 0, sink = 0;
  for (guint i = 0; i < layer->n_tensors; i++) {
    const PxTensorSpec *s = &layer->tensors[i];
    if (s->ndim != 2 || s->experts > 0) continue;
    double o = s->shape[0], in = s->shape[1];
    gboolean again = s->role == PX_ROLE_QKV || s->role == PX_ROLE_ATTN_OUT || s->role == PX_ROLE_FFN_UP ||
                     (s->role == PX_ROLE_FFN_OUT && !px_ffn_gated(d->ffn_kind));
    if (!again) continue;
    if (s->role == PX_ROLE_QKV) o = (double)px_model_kv_dim(d); /* wk, of the fused qkv */
    tp_local(s, tp, &o, &in);
    double f = 0;
    weight_gemms(cluster, plan->precision, E, T, o, in, &f, &sink, &sink, NULL, NULL);
    t += f;
  }
  return t;
}

void px_cost_layer_times(const PxModel *model, const PxLayer *layer, const PxCluster *cluster,
                         const PxPlan *plan, const PxLink *tp_link, PxLayerTimes *out) {
  PxLayerTimes c = {0};
  const PxModelDesc *d = &model->desc;
  int tp = MAX(plan->tp, 1);
  int E = px_plan_act_bytes(plan);
  PxPrecision prec = plan->precision;
  /* what is not a weight GEMM (attention) runs in bf16 under FP8 */
  PxPrecision aprec = prec == PX_PREC_FP8 ? PX_PREC_BF16 : prec;
  int cp = MAX(plan->cp, 1);
  double seq = plan_seq(plan, model);
  double b = plan->mbs;
  double T = b * seq / cp;                               /* tokens of one micro-batch on this CP rank */
  double Tn = plan->seq_parallel ? T / tp : T;           /* tokens a norm/residual sees */
  double h = d->hidden;
  double peak = px_cost_peak_flops(cluster, aprec);
  double act = T * h * E;                                /* one s·b·h activation */
  double dgrad = 0, wgrad = 0;
  /* TP communication overlap (validated: tp > 1 with sequence parallelism) */
  const PxTpOverlapConfig *ub =
      layer->kind == PX_LAYER_BLOCK && tp > 1 && plan->seq_parallel ? px_tp_overlap_config(plan->tp_overlap) : NULL;
  gboolean moe_block = layer->kind == PX_LAYER_BLOCK && px_model_block_is_moe(d, layer->block);
  UbGroup ub_grp[UB_N] = {{0}};

  /* Weight GEMMs from the layer's own 2-D tensors (weights are (out, in)). */
  if (layer->kind == PX_LAYER_BLOCK || layer->kind == PX_LAYER_LM_HEAD) {
    for (guint i = 0; i <= layer->n_tensors; i++) {
      /* the own tensors, then the tied one a tied LM head multiplies by */
      const PxTensorSpec *t = i < layer->n_tensors ? &layer->tensors[i] : layer->tied_tensor;
      if (!t || t->ndim != 2 || t->experts > 0) continue; /* routed experts: moe_times */
      double o = t->shape[0], in = t->shape[1];
      tp_local(t, tp, &o, &in);
      int g = ub && i < layer->n_tensors ? ub_group(t->role, moe_block) : -1;
      if (g >= 0) ub_gemms(cluster, ub, g, prec, E, tp, T, o, in, &ub_grp[g], &c.fwd, &dgrad, &wgrad);
      else weight_gemms(cluster, prec, E, T, o, in, &c.fwd, &dgrad, &wgrad, &c.gemm_fwd, &c.gemm_bwd);
    }
    dgrad += bias_grads(cluster, layer, plan, T, Tn, E);
  }
  switch (layer->kind) {
  case PX_LAYER_EMBEDDING: {
    /* gather rows of the table and write them (learned positions: + read and add);
     * backward scatter-adds the gradient rows into the table's gradient */
    c.fwd += class_op(cluster, plan, d, PX_OPC_EMBEDDING, 0, T, h, E);
    dgrad += class_op(cluster, plan, d, PX_OPC_EMBEDDING, 1, T, h, E);
    c.tp_fwd = tp_collective(plan, act, tp_link);
    break;
  }
  case PX_LAYER_BLOCK: {
    double heads_local = (double)d->heads / tp;
    double hd = h / d->heads;
    gboolean moe = px_model_block_is_moe(d, layer->block);
    /* an MoE block's dense MLP is its shared experts' (the routed ones: moe_times) */
    double ffn_local = (moe ? (double)d->shared_experts * d->shared_ffn : (double)d->ffn) / tp;
    double bh = b * heads_local;
    /* the attention core, QK^T and PV: 4 b s^2 h / tp forward FLOPs (no causal halving) */
    double att_fwd, att_bwd;
    PxAttention kind = px_cost_attention(plan);
    if (kind != PX_ATTN_UNFUSED) {
      /* one kernel; causal: half the FLOPs; backward 2.5 x the forward's (flash-attn
       * benchmarks); FlashAttention v1 at half FlashAttention-2's rate (Dao 2023).
       * Context parallelism: with load balancing (chunks i and 2cp-1-i) every CP
       * rank computes 1/cp of the causal FLOPs, in cp blocks of the ring */
      double f = 0.5 * 4.0 * b * seq * seq * h / tp / cp;
      /* the kernel's rate rises with the sequence it runs on (s / cp tokens
       * per ring block) towards the preset's asymptotic efficiencies
       * (px_cost_flash_seq_factor; docs/cost.md section 2) */
      double v1 = (kind == PX_ATTN_FLASH1 || kind == PX_ATTN_TRITON ? 0.5 : 1.0) *
                  px_cost_flash_seq_factor(cluster, seq / cp);
      att_fwd = f / (peak * v1 * eff_or_1(cluster->flash_fwd_eff)) + cluster->kernel_overhead;
      att_bwd = 2.5 * f / (peak * v1 * eff_or_1(cluster->flash_bwd_eff)) + cluster->kernel_overhead;
      if (kind == PX_ATTN_FLASH1) {
        /* FlashAttention v1 through its varlen interface, as llm-foundry's
         * flash_attn_fn calls it (llmfoundry/models/layers/attention.py,
         * flash-attn 1.0.x bert_padding): q, k, v gathered to the unpadded
         * layout and the output scattered back into a zeroed padded tensor.
         * Forward: 3 gathers (read + write) + zero-fill, read, write = 9 T h E
         * over 5 kernels; backward: 3 zero-fill + scatter-back (3 each) + one
         * gather (2) = 11 T h E over 7 kernels (h / tp per rank) */
        double th = T * h / tp * E;
        att_fwd += membound(cluster, 9 * th, 5);
        att_bwd += membound(cluster, 11 * th, 7);
      } else if (kind == PX_ATTN_TRITON) {
        /* FlashAttention in Triton (flash_attn_triton.py, llm-foundry v0.3.0's
         * copy; its header: forward faster than the CUDA v1, backward slower,
         * "overall slightly slower than CUDA forward + backward": v1's rate).
         * llm-foundry's triton_flash_attn_fn passes q, k, v as views of the
         * qkv GEMM's output (qkv.chunk(3), rearrange): nothing copied forward.
         * Backward (_flash_attn_backward): _bwd_preprocess_do_o_dot reads o
         * and do (2 T h E); dq accumulates in fp32 and is copied out
         * (dq.copy_(dq_accum): 4 + E bytes per element); autograd joins dq,
         * dk, dv into the gradient of qkv (chunk's backward: read and write
         * 3 T h E) — 3 kernels */
        double th = T * h / tp;
        att_bwd += membound(cluster, th * (2 * E + 4 + E + 6 * E), 3);
      }
    } else if (cluster->attn_fwd_flops > 0 && cluster->attn_bwd_flops > 0) {
      /* the attention core as calibrate measured it (px_op_attention_fwd/bwd
       * at the model's shapes), against the FLOPs the model counts:
       * QK^T and PV forward, 4 b s^2 h / tp; backward twice that */
      double f = px_cost_unfused_attn_flops(b, seq, h, tp);
      att_fwd = f / cluster->attn_fwd_flops + cluster->kernel_overhead;
      att_bwd = 2 * f / cluster->attn_bwd_flops + cluster->kernel_overhead;
    } else {
      /* the batched GEMMs' score reads / writes and the softmax's passes at
       * the unfused core's measured rate (unfused_attention_efficiency: the
       * FlashAttention paper's Megatron attention, docs/cost.md section 2);
       * the attention dropout at the element-wise rate, as measured there too */
      double S = bh * seq * seq;                         /* score elements */
      double ur = px_cost_unfused_attn_rate(cluster);
      double sm_f = S * 2 * E / ur + cluster->kernel_overhead; /* scale-mask-softmax: read, write */
      double sm_b = S * 3 * E / ur + cluster->kernel_overhead; /* its backward: dY, Y -> dX */
      att_fwd = gemm_time_at(cluster, aprec, bh, seq, seq, hd, E, ur) +     /* QK^T  [bh, s, s] */
                gemm_time_at(cluster, aprec, bh, seq, hd, seq, E, ur) +     /* PV    [bh, s, hd] */
                sm_f + (d->dropout ? membound(cluster, 2 * S * E + S, 1) : 0); /* dropout + mask */
      att_bwd = gemm_time_at(cluster, aprec, bh, seq, seq, hd, E, ur) +     /* dP = dO V^T */
                gemm_time_at(cluster, aprec, bh, seq, hd, seq, E, ur) +     /* dV = P^T dO */
                gemm_time_at(cluster, aprec, bh, seq, hd, seq, E, ur) +     /* dQ = dS K */
                gemm_time_at(cluster, aprec, bh, seq, hd, seq, E, ur) +     /* dK = dS^T Q */
                sm_b + (d->dropout ? membound(cluster, 2 * S * E + S, 1) : 0);
    }
    double drop = d->dropout ? 2 * (2 * Tn * h * E + Tn * h) : 0;         /* attn-out, mlp-out + masks */
    gboolean titan = plan->stack == PX_STACK_TORCHTITAN && px_model_llama_block(d);
    double mb_fwd = 0;                                                    /* the forward's memory-bound kernels */
    int drop_k = d->dropout ? 2 : 0;
    c.attn_fwd = att_fwd;
    c.attn_bwd = att_bwd;
    if (plan->stack == PX_STACK_TORCHTITAN && plan->cp > 1) {
      /* torch's ring attention around the flash blocks: the merges, the
       * fp32 gradient accumulation, the copies (px_cost_titan_cp), at the
       * HBM rate; the exposed communication is px_cost_cp_ring's */
      PxTitanCp tc;
      px_cost_titan_cp(model, plan, &tc);
      att_fwd += membound(cluster, tc.fwd_bytes, tc.fwd_kernels);
      att_bwd += membound(cluster, tc.bwd_bytes, tc.bwd_kernels);
    }
    for (int dir = 0; dir < 2; dir++) {
      /* two norms (LayerNorm's backward reads dy and x twice, norm_bwd_reads,
       * once in Transformer Engine's, norm_bytes),
       * two residual adds, the activation, each at its class's rate; dropout
       * (attn-out, mlp-out + masks) at the HBM rate */
      MemBound mb = {0};
      if (titan) {
        /* torchtitan's Llama block op by op, eager or compiled
         * (px_cost_titan_block), each class at its rate */
        PxTitanKernels tk;
        px_cost_titan_block(d, plan->compile, dir, T, Tn, tp, E, &tk);
        for (int k = 0; k <= PX_N_OPC; k++)
          if (tk.kernels[k] > 0) membound_add(&mb, cluster, plan, d, k < PX_N_OPC ? k : -1, dir, tk.bytes[k], tk.kernels[k]);
      } else {
        int nk, rk, ak;
        double nb = norm_bytes(d, plan, dir, Tn, h, E, &nk);
        double rb = px_cost_class_bytes(d, PX_OPC_RESIDUAL, dir, Tn, h, E, &rk);
        double ab = px_cost_class_bytes(d, PX_OPC_ACT, dir, T, ffn_local, E, &ak);
        membound_add(&mb, cluster, plan, d, PX_OPC_NORM, dir, 2 * nb, 2 * nk);
        membound_add(&mb, cluster, plan, d, PX_OPC_RESIDUAL, dir, 2 * rb, 2 * rk);
        /* an MoE block without shared experts has no dense MLP: no activation kernel */
        if (ffn_local > 0) membound_add(&mb, cluster, plan, d, PX_OPC_ACT, dir, ab, ak);
        if (drop > 0) membound_add(&mb, cluster, plan, d, -1, dir, drop, drop_k);
      }
      double mbt = membound_time(cluster, &mb);
      if (!dir) mb_fwd = mbt;
      *(dir ? &dgrad : &c.fwd) += (dir ? att_bwd : att_fwd) + mbt;
    }
    /* with sequence parallelism the routed experts' input and output go
     * through the dispatcher (the ETP all-gather / reduce-scatter, moe_times),
     * not the MLP's TP all-gather / reduce-scatter, unless shared experts
     * (TP-split) read the block's gathered input too */
    int tp_colls = moe && plan->seq_parallel && d->shared_experts == 0 ? 1 : 2;
    if (ub) {
      /* the attention's pair (and a dense MLP's) pipelined with their GEMMs;
       * an MoE block's shared-expert MLP keeps its pair exposed; the bulk
       * overlaps (ub_finish) include sequence parallelism's second all-gather
       * for the wgrad (TE ub_bulk_dgrad) */
      int plain = moe ? tp_colls - 1 : 0;
      c.tp_fwd = plain * tp_collective(plan, act, tp_link);
      c.tp_bwd = plain * (tp_collective(plan, act, tp_link) + sp_regather(plan, act, tp_link));
      /* ub_finish adds the groups' GEMMs (only they) to fwd, dgrad, wgrad */
      double f0 = c.fwd, b0 = dgrad + wgrad;
      ub_finish(cluster, ub, ub_grp, tp, act, tp_link, &c.fwd, &dgrad, &wgrad, &c.tp_fwd, &c.tp_bwd);
      c.gemm_fwd += c.fwd - f0;
      c.gemm_bwd += dgrad + wgrad - b0;
    } else {
      c.tp_fwd = tp_colls * tp_collective(plan, act, tp_link);
      c.tp_bwd = tp_colls * tp_collective(plan, act, tp_link) + tp_colls * sp_regather(plan, act, tp_link);
    }
    if (moe) moe_times(model, cluster, plan, tp_link, &c, &dgrad, &wgrad);
    /* selective: the attention core again (flash keeps nothing to recompute) */
    if (plan->ckpt == PX_CKPT_SELECTIVE && kind == PX_ATTN_UNFUSED) c.recompute = att_fwd;
    if (plan->ckpt == PX_CKPT_SELECTIVE && plan->stack == PX_STACK_TORCHTITAN && !moe)
      c.recompute += titan_op_sac(model, layer, cluster, plan, T, tp) + mb_fwd;
    break;
  }
  case PX_LAYER_FINAL_NORM:
    for (int dir = 0; dir < 2; dir++) {
      int nk;
      /* torchtitan compiles the blocks only: its final RMSNorm runs eagerly */
      double nb = plan->stack == PX_STACK_TORCHTITAN && px_model_llama_block(d)
                      ? px_cost_titan_rmsnorm_eager(dir, Tn, h, E, &nk)
                      : norm_bytes(d, plan, dir, Tn, h, E, &nk);
      *(dir ? &dgrad : &c.fwd) += px_cost_membound_class(cluster, plan->stack, d, PX_OPC_NORM, dir, nb, nk);
    }
    break;
  case PX_LAYER_LM_HEAD: {
    /* vocab-parallel cross entropy in fp32 over the logits: read + write forward, backward.
     * The fsdp stack (llm-foundry's MPT) uses flash-attn's fused cross entropy
     * (modeling_mpt.py loss_fn: fused_crossentropy, the xentropy_cuda_lib
     * kernels): forward reads the 16-bit logits twice (max, then the sum of
     * exponentials) and writes one loss per token; backward reads them and
     * writes their gradient: 2 E | 2 E bytes per logit, one kernel each */
    double vocab_local = (double)d->vocab / tp;
    if (plan->stack == PX_STACK_FSDP) {
      c.fwd += membound(cluster, 2 * T * vocab_local * E, 1);
      dgrad += membound(cluster, 2 * T * vocab_local * E, 1);
      /* Composer's training metrics, every micro-batch after its backward
       * (composer 0.16.4 trainer.py _train_microbatch -> _eval_train_metrics):
       * MPT's get_metrics(is_train=True) is LanguageCrossEntropy and
       * LanguagePerplexity (modeling_mpt.py), each a torch CrossEntropyLoss
       * over the logits (composer/metrics/nlp.py) inside the bf16 autocast
       * context, which runs cross_entropy in fp32: a cast (read E, write 4)
       * and log_softmax's three passes over the fp32 row (cunn_SoftMaxForward:
       * max, sum of exponentials, write: 3 reads + 1 write of 4 B), then the
       * nll gather: (E + 20) bytes per logit and 3 kernels, twice */
      dgrad += membound(cluster, 2 * T * vocab_local * (E + 20.0), 6);
    } else if (plan->stack == PX_STACK_MEGATRON_2021) {
      /* Megatron-LM 2021's vocab-parallel cross entropy on an fp32 copy of
       * the logits (gpt_model.py: vocab_parallel_cross_entropy(output.float(),
       * labels), fp16_lm_cross_entropy off by default; mpu/cross_entropy.py
       * _VocabParallelCrossEntropy), one pass per op over 4-byte logits:
       * forward the cast (E + 4, none in fp32), max (4), sub_ (4 + 4), exp
       * into itself (4 + 4), sum (4) and div_ to the saved softmax (4 + 4);
       * backward mul_ by the loss gradient (4 + 4) and the cast's backward
       * (4 + E). */
      double cast = E < 4 ? E + 4.0 : 0.0;
      int ck = E < 4 ? 1 : 0;
      c.fwd += membound(cluster, T * vocab_local * (32.0 + cast), 5 + ck);
      dgrad += membound(cluster, T * vocab_local * (8.0 + cast), 1 + ck);
    } else if (plan->stack == PX_STACK_MEGATRON_CORE) {
      /* Megatron-Core's fused vocab-parallel cross entropy
       * (cross_entropy_loss_fusion, True in NeMo's GPTConfig and the
       * recipes; megatron/core/fusions/fused_cross_entropy.py, core_v0.11.0):
       * three jit_fuser (torch.compile) functions with the TP all-reduces
       * between them, so each materialises what it returns.
       * calculate_logits_max returns the fp32 copy (.float(): read E, write
       * 4; in fp32 the same tensor, read for the max only);
       * calculate_predicted_logits subtracts the max and exponentiates in
       * place (read 4, write 4); calculate_cross_entropy_loss divides in
       * place into the saved softmax (read 4, write 4). Backward,
       * calculate_gradients: mul_ in place on the saved softmax (read 4,
       * written back 4) and .to(torch.bfloat16) (2). Per logit 22 | 10 B at
       * E = 2, where the class charges 8 | 8. */
      double cast = E < 4 ? E + 4.0 : 4.0;
      c.fwd += px_cost_membound_class(cluster, plan->stack, d, PX_OPC_CE, 0, T * vocab_local * (cast + 16.0), 3);
      dgrad += px_cost_membound_class(cluster, plan->stack, d, PX_OPC_CE, 1, T * vocab_local * 10.0, 2);
    } else {
      c.fwd += class_op(cluster, plan, d, PX_OPC_CE, 0, T, vocab_local, E);
      dgrad += class_op(cluster, plan, d, PX_OPC_CE, 1, T, vocab_local, E);
    }
    c.tp_bwd = tp_collective(plan, act, tp_link);
    if (tp > 1) c.tp_fwd = 3 * px_cost_allreduce(T * 4, tp, tp_link);
    break;
  }
  }
  c.bwd_input = dgrad;
  c.bwd_weight = wgrad;
  if (plan->ckpt == PX_CKPT_FULL && layer->kind == PX_LAYER_BLOCK) c.recompute = c.fwd + c.tp_fwd;
  *out = c;
}

void px_cost_layer_forward(const PxModel *model, const PxLayer *layer, const PxCluster *cluster,
                           const PxPlan *plan, const PxLink *tp_link, double *compute, double *tp_comm) {
  PxLayerTimes c;
  px_cost_layer_times(model, layer, cluster, plan, tp_link, &c);
  if (compute) *compute = c.fwd;
  if (tp_comm) *tp_comm = c.tp_fwd;
}

/* ---- the table ---- */

static PxCostTable *table_alloc(int pp, int vpp) {
  PxCostTable *t = g_new0(PxCostTable, 1);
  t->pp = pp;
  t->vpp = vpp;
  t->parts = pp * vpp;
  double **per_part[] = {&t->fwd, &t->bwd_input, &t->bwd_weight, &t->tp_comm_fwd, &t->tp_comm_bwd,
                         &t->p2p_act, &t->p2p_grad, &t->gather, &t->gather_pass, &t->p2p_bytes,
                         &t->reduce_pass, &t->cp_comm_fwd, &t->cp_comm_bwd, &t->gather_pcie, &t->gather_cast,
                         &t->gemm_fwd, &t->gemm_bwd};
  for (gsize i = 0; i < G_N_ELEMENTS(per_part); i++) *per_part[i] = g_new0(double, t->parts);
  double **per_rank[] = {&t->dp_reduce, &t->tied_reduce, &t->optimizer,     &t->load,
                         &t->dp_bytes,  &t->edp_reduce,  &t->edp_bytes,     &t->dp_lat,
                         &t->param_gather, &t->param_gather_lat};
  for (gsize i = 0; i < G_N_ELEMENTS(per_rank); i++) *per_rank[i] = g_new0(double, pp);
  return t;
}

void px_cost_table_free(PxCostTable *t) {
  if (!t) return;
  double *arrays[] = {t->fwd, t->bwd_input, t->bwd_weight, t->tp_comm_fwd, t->tp_comm_bwd, t->p2p_act,
                      t->p2p_grad, t->gather, t->gather_pass, t->p2p_bytes, t->dp_reduce, t->tied_reduce, t->optimizer,
                      t->load, t->dp_bytes, t->reduce_pass, t->cp_comm_fwd, t->cp_comm_bwd, t->gather_pcie,
                      t->gather_cast, t->edp_reduce, t->edp_bytes, t->dp_lat, t->param_gather, t->param_gather_lat,
                      t->gemm_fwd, t->gemm_bwd};
  for (gsize i = 0; i < G_N_ELEMENTS(arrays); i++) g_free(arrays[i]);
  g_free(t);
}

PxCostTable *px_cost_table_ideal(int pp, int vpp) { return px_cost_table_uniform(pp, vpp, 1, 1, 1); }

PxCostTable *px_cost_table_uniform(int pp, int vpp, double tf, double tb, double tw) {
  PxCostTable *t = table_alloc(MAX(pp, 1), MAX(vpp, 1));
  for (int k = 0; k < t->parts; k++) {
    t->fwd[k] = tf;
    t->bwd_input[k] = tb;
    t->bwd_weight[k] = tw;
  }
  return t;
}

static gboolean cost_fail(GError **error, const char *what) {
  g_set_error(error, PX_COST_ERROR, PX_COST_ERROR_INVALID, "cost model: %s", what);
  return FALSE;
}

static gboolean check_inputs(const PxCluster *cluster, const PxPlan *plan, const PxPartition *part,
                             GError **error) {
  if (part->pp != plan->pp || part->parts != plan->pp * MAX(plan->vpp, 1))
    return cost_fail(error, "the partition's stages do not match the plan's pp x vpp");
  if (px_cost_peak_flops(cluster, plan->precision) <= 0)
    return cost_fail(error, "the cluster gives no peak FLOP/s for the plan's precision");
  if (cluster->hbm_bw <= 0) return cost_fail(error, "the cluster gives no HBM bandwidth");
  if (cluster->gpus_per_node <= 0) return cost_fail(error, "the cluster gives no GPUs per node");
  if (cluster->intra_bw <= 0 || (px_plan_world(plan) > cluster->gpus_per_node && cluster->inter_bw <= 0))
    return cost_fail(error, "the cluster gives no link bandwidth for the plan's groups");
  if (plan->offload != PX_OFFLOAD_NONE && cluster->pcie_bw <= 0)
    return cost_fail(error, "offload needs the cluster's PCIe bandwidth");
  return TRUE;
}

/* A gradient reduction over n ranks: reduce-scatter under ZeRO-2/3, else
 * all-reduce; adds its time and the bytes each GPU sends. */
/* Whether rank r's DP gradient reduction is a reduce-scatter (else an
 * all-reduce). The stacks: reduce-scatter from ZeRO-2 (DeepSpeed, FSDP;
 * Megatron-Core's distributed optimizer is counted as ZeRO-1 with its
 * reduce-scatter in px_stack_profile's overlap rules). This executor
 * (parallax, exec/runtime.c dp_reduce): a reduce-scatter into the shard from
 * ZeRO-1 on — but a chunk reduced in buckets during the backward is
 * all-reduced bucket by bucket, then the shard copied out (a per-bucket
 * reduce-scatter would give each rank a 1/dp piece of every bucket, not its
 * shard of the chunk); a rank with any bucketed chunk is counted so. */
static gboolean dp_reduce_scatters(const PxModel *model, const PxPlan *plan, const PxPartition *part, int r) {
  /* torchtitan's FSDP2 reduce-scatters from any sharding (its ZeRO-1 is
   * ZeRO-2: the emitter's fsdp_reshard_after_forward "never") */
  if (plan->stack == PX_STACK_TORCHTITAN) return plan->zero >= 1;
  /* Megatron-Core's distributed optimizer (ZeRO-1 here) reduce-scatters each
   * bucket into the rank's slice of it (param_and_grad_buffer.py
   * start_grad_sync: reduce_scatter_tensor with use_distributed_optimizer;
   * buckets.h px_buckets_sharded) */
  if (plan->stack == PX_STACK_MEGATRON_CORE) return plan->zero >= 1;
  if (plan->stack != PX_STACK_PARALLAX) return plan->zero >= 2;
  if (plan->zero < 1) return FALSE;
  if (!part->buckets || !px_cost_overlap_dp(plan)) return TRUE;
  /* in buckets: ZeRO-1/2 reduce-scatter each padded bucket into the rank's
   * slice, an MoE model's expert buckets over edp (buckets.h
   * px_buckets_sharded); otherwise (ZeRO-3) each bucket is all-reduced and
   * the shard copied out */
  for (int k = 0; k < part->parts; k++)
    if (px_partition_part_rank(part, k) == r && part->buckets->n[k] > 1 &&
        !px_buckets_sharded(part->buckets, model, plan, k))
      return FALSE;
  return TRUE;
}

/* Elements rank r's buffers add to pad ZeRO-1/2 buckets to slices
 * (buckets.h px_buckets_shard_layout; 0 when not sharded per bucket): the
 * dense buckets' to dp slices, returned, and the expert buckets' to edp
 * slices, *epad. */
static double dp_bucket_padding(const PxModel *model, const PxPlan *plan, const PxPartition *part, int r,
                                double *epad) {
  double pad = 0;
  *epad = 0;
  for (int k = 0; k < part->parts; k++) {
    if (px_partition_part_rank(part, k) != r || !px_buckets_sharded(part->buckets, model, plan, k)) continue;
    int n = part->buckets->n[k], dp = px_plan_data_ranks(plan), edp = px_plan_edp(plan);
    g_autofree PxBucketShard *bs = g_new(PxBucketShard, n);
    px_buckets_shard_layout(part->buckets, k, dp, edp, bs, NULL, NULL);
    for (int i = 0; i < n; i++) {
      if (part->buckets->b[k][i].expert) *epad += (double)(bs[i].slice * edp - bs[i].elems);
      else pad += (double)(bs[i].slice * dp - bs[i].elems);
    }
  }
  return pad;
}

/* The latency term of one reduce-scatter / all-gather (rs) or all-reduce of
 * `bytes` over n ranks: (n-1) α, or the all-reduce algorithm's that
 * px_cost_allreduce picks for these bytes; 0 with a measured curve (it
 * holds the latency, not apart). */
static double collective_latency(gboolean rs, double bytes, int n, const PxLink *l) {
  if (n <= 1 || bytes <= 0 || (l->curve && l->curve->n >= 1)) return 0;
  if (rs) return (n - 1) * l->lat;
  return px_cost_allreduce_ring(bytes, n, l) <= px_cost_allreduce_tree(bytes, n, l) ? 2.0 * (n - 1) * l->lat
                                                                                    : 2.0 * ceil(log2((double)n)) * l->lat;
}

static void reduce_grads(gboolean rs, double bytes, int n, const PxLink *l, double *time, double *sent) {
  if (n <= 1) return;
  *time += rs ? px_cost_reduce_scatter(bytes, n, l) : px_cost_allreduce(bytes, n, l);
  *sent += (rs ? 1.0 : 2.0) * (n - 1) / n * bytes;
}

/* The experts' data-parallel group of pipeline rank `stage` (replica etp 0, ep 0). */
/* PyTorch FSDP with a compute dtype below the parameters' keeps each sharded
 * flat parameter in fp32 and casts it before every all-gather (torch 2.1
 * flat_param.py, FlatParamHandle.pre_unshard -> _use_low_precision_shard:
 * _mp_shard.copy_(_local_shard), "implicitly casts to the low precision"):
 * the shard read at 4 B and written at E, one kernel per wrapped block and
 * gather, on the pre-unshard stream beside the pass. llm-foundry builds the
 * model in fp32, so Composer's DEFAULT and PURE both cast (their
 * param_dtype is bf16). 0 for other stacks and for fp32 plans. */
static double fsdp_shard_cast(const PxCluster *c, const PxPlan *plan, double params, int dp, int E, int layers) {
  if (plan->stack == PX_STACK_TORCHTITAN && dp > 1) {
    /* FSDP2 (torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py,
     * foreach_all_gather): _get_param_all_gather_inputs casts the fp32 shard
     * to param_dtype (_foreach_copy_: read 4, write E; none in fp32),
     * all_gather_copy_in copies it into the gathered buffer's slot (read +
     * write E), and foreach_all_gather_copy_out splits the gathered buffer
     * into the unsharded parameters (split_with_sizes_copy: read + write E
     * over every element): 3 kernels per block and gather */
    double shard = params / dp;
    return membound(c, shard * ((E < 4 ? 4.0 + E : 0) + 2.0 * E) + params * 2.0 * E, 3 * layers);
  }
  if (plan->stack != PX_STACK_FSDP || dp <= 1 || E >= 4) return 0;
  return membound(c, params / dp * (4.0 + E), layers);
}

static PxLink edp_link(const PxCluster *cluster, const PxPlan *plan, int stage) {
  int edp = px_plan_edp(plan);
  g_autofree int *ranks = g_new(int, MAX(edp, 1));
  for (int i = 0; i < edp; i++) ranks[i] = px_moe_rank_of(plan, stage, 0, 0, i);
  return px_cost_group_link(cluster, ranks, MAX(edp, 1));
}

PxCostTable *px_cost_table_new(const PxModel *model, const PxCluster *cluster, const PxPlan *plan,
                               const PxPartition *part, GError **error) {
  if (!check_inputs(cluster, plan, part, error)) return NULL;
  /* dp: the gradient reduction's (and ZeRO's) group, dp·cp ranks */
  int pp = plan->pp, parts = part->parts, tp = MAX(plan->tp, 1), dp = MAX(px_plan_data_ranks(plan), 1);
  g_autoptr(PxCostTable) t = table_alloc(pp, part->vpp);
  int E = px_plan_act_bytes(plan);          /* activations, 16-bit weights */
  int G = px_cost_grad_reduce_bytes(plan);  /* gradients as the stack reduces them */
  gboolean overlap = px_cost_overlap_dp(plan);
  double seq = plan_seq(plan, model);
  double act_msg = plan->mbs * (seq / MAX(plan->cp, 1)) * model->desc.hidden * E / (plan->seq_parallel ? tp : 1);
  g_autofree double *rank_params = g_new0(double, pp);  /* per GPU, TP-sharded, before ZeRO */
  g_autofree double *part_params = g_new0(double, parts);
  /* routed-expert parameters per GPU (E/ep experts over etp), kept apart:
   * their gradients reduce and their ZeRO shards split over edp, not dp */
  g_autofree double *rank_eparams = g_new0(double, pp);
  g_autofree double *part_eparams = g_new0(double, parts);
  int edp = px_plan_edp(plan);
  gboolean megatron = plan->stack == PX_STACK_MEGATRON_2021 || plan->stack == PX_STACK_MEGATRON_CORE;

  for (int k = 0; k < parts; k++) {
    int r = px_partition_part_rank(part, k);
    PxLink tpl = px_cost_tp_link(cluster, plan, r);
    PxLink cpl = px_cost_cp_link(cluster, plan, r);
    for (int li = part->bounds[k]; li < part->bounds[k + 1]; li++) {
      const PxLayer *layer = &model->layers[li];
      PxLayerTimes c;
      px_cost_layer_times(model, layer, cluster, plan, &tpl, &c);
      /* the CP ring beside the attention blocks; full recompute runs the
       * forward's ring again */
      double ring_f = 0, ring_b = 0;
      if (layer->kind == PX_LAYER_BLOCK) px_cost_cp_ring(model, plan, &cpl, c.attn_fwd, c.attn_bwd, &ring_f, &ring_b);
      if (plan->ckpt == PX_CKPT_FULL) ring_b += ring_f;
      t->cp_comm_fwd[k] += ring_f;
      t->cp_comm_bwd[k] += ring_b;
      t->fwd[k] += c.fwd + c.tp_fwd + ring_f;
      t->tp_comm_fwd[k] += c.tp_fwd;
      t->bwd_input[k] += c.bwd_input + c.tp_bwd + c.recompute + ring_b;
      t->bwd_weight[k] += c.bwd_weight;
      t->tp_comm_bwd[k] += c.tp_bwd + (plan->ckpt == PX_CKPT_FULL && layer->kind == PX_LAYER_BLOCK ? c.tp_fwd : 0);
      t->gemm_fwd[k] += c.gemm_fwd;
      t->gemm_bwd[k] += c.gemm_bwd + (plan->ckpt == PX_CKPT_FULL && layer->kind == PX_LAYER_BLOCK ? c.gemm_fwd : 0);
      /* Megatron-Core fuses the accumulation into the wgrad GEMMs (below), but
       * an embedding table's gradient is PyTorch's: F.embedding's backward
       * (VocabParallelEmbedding, megatron/core/tensor_parallel/layers.py)
       * returns a dense gradient of the whole local table, zero-filled
       * (embedding_dense_backward_cuda, at::zeros) before the rows are
       * scattered in (the class's T h bytes), and the DDP backward hook adds
       * it to main_grad (core_v0.11.0 distributed_data_parallel.py
       * _make_backward_post_hook: param.main_grad.add_(param.grad.data), the
       * embedding not being grad_added_to_main_grad): write E, then read E,
       * read and write G per table element, every micro-batch */
      if (plan->stack == PX_STACK_MEGATRON_CORE && layer->kind == PX_LAYER_EMBEDDING)
        t->bwd_weight[k] += (double)px_layer_params_tp(layer, tp) * (2.0 * E + 2.0 * G) / px_cost_hbm_rate(cluster);
      /* its gradient elements as the bucket layout counts them (buckets.h): the
       * tied head's own copy, routed experts (E/ep over etp) reduced over edp apart */
      double exp_grid, lp = px_buckets_layer_elems(model, plan, part, k, li, &exp_grid);
      part_eparams[k] += exp_grid;
      part_params[k] += lp - exp_grid;
    }
    rank_params[r] += part_params[k];
    rank_eparams[r] += part_eparams[k];
    /* gradient accumulation outside the GEMMs, every micro-batch: read the
     * fresh 16-bit gradient, read and write the accumulator (Megatron-LM 2021
     * model/distributed.py: param.main_grad.add_(param.grad) in a backward
     * hook; PyTorch's AccumulateGrad for DeepSpeed).
     * Megatron-Core fuses it into the wgrad GEMM (gradient_accumulation_fusion),
     * and so does this executor (the parallax stack: exec/backend.h, every
     * backward op adds into its gradient outputs, the wgrad GEMM with beta = 1);
     * FSDP reduce-scatters every micro-batch and accumulates only its shard. */
    if (plan->stack != PX_STACK_MEGATRON_CORE && plan->stack != PX_STACK_PARALLAX) {
      double accum = (part_params[k] + part_eparams[k]) * (E + 2.0 * G);
      if (plan->stack == PX_STACK_FSDP || plan->stack == PX_STACK_TORCHTITAN) accum /= dp;
      /* FSDP's post-backward on the whole (unsharded) flat gradient of each
       * wrapped block, every micro-batch (torch/distributed/fsdp/_runtime_utils.py,
       * torch 2.1: _post_backward_hook, _reduce_grad): autograd writes the
       * views' gradients into the flat gradient (the split's backward: read
       * and write E), casts it to the reduce dtype when that differs
       * (flat_param.grad.to(_reduce_dtype): read E, write G), and divides it
       * by the pre-divide factor before the reduce-scatter
       * (_div_if_needed(padded_unsharded_grad, ...): read and write G; the
       * factor is > 1 for every world size > 1). These kernels share the GPU
       * with the backward (the post-backward stream), counted on it. */
      if (plan->stack == PX_STACK_FSDP && dp > 1)
        accum += part_params[k] * (2.0 * E + (G != E ? E + G : 0) + 2.0 * G);
      /* torchtitan's FSDP2 (_fsdp_collectives.py foreach_reduce): autograd
       * writes each parameter's own gradient (no flat parameter), _chunk_cat
       * copies them into the reduce-scatter input widening to reduce_dtype
       * (read E, write G) over every element; torchtitan sets the gradient
       * divide factor to 1 (parallelize.py disable_fsdp_gradient_division):
       * no divide kernel; the shard accumulates as above (/ dp) */
      if (plan->stack == PX_STACK_TORCHTITAN && dp > 1) accum += part_params[k] * (E + G);
      /* DeepSpeed with fp32 gradients of 16-bit parameters is the
       * BF16_Optimizer (runtime/bf16_optimizer.py, PR #1801 "bf16+pipeline
       * parallelism", 2022: the optimizer BLOOM-176B ran): after each
       * micro-batch's backward the pipeline engine calls update_hp_grads,
       * hp_grad.data.add_(lp.grad.data.to(hp_grad.dtype)): the cast writes a
       * G-byte temporary that the add reads again, beyond the E read and the
       * G read and write above (18 B per element for bf16 into fp32) */
      if (plan->stack == PX_STACK_DEEPSPEED && G > E) accum += (part_params[k] + part_eparams[k]) * 2.0 * G;
      t->bwd_weight[k] += accum / px_cost_hbm_rate(cluster);
    }
    /* Megatron's scatter-gather (p2p_communication.py,
     * scatter_gather_tensors_in_pipeline): with tp > 1 and no sequence
     * parallelism each TP rank sends 1/tp of the replicated activation and the
     * receivers all-gather it over the TP group */
    gboolean sg = megatron && tp > 1 && !plan->seq_parallel;
    /* DeepSpeed's pipeline engine partitions what it passes between stages
     * over the TP group whenever tp > 1 (runtime/pipe/engine.py:
     * is_pipe_partitioned = is_grad_partitioned = is_model_parallel, from
     * the engine's first version, PR #392 of 2020, through 2021-2022): each
     * TP rank sends its 1/tp slice (runtime/utils.py PartitionedTensor) and
     * the receiver all-gathers it over the slice-parallel (TP) group
     * (PartitionedTensor.full: dist.all_gather). The forward's receiver
     * gathers the activation once (_exec_forward_pass); before its backward
     * the activation's sender gathers twice (_exec_backward_pass): its own
     * output, which it emptied after partitioning (first_output.data =
     * torch.zeros(1)) and restores for autograd, and the gradient it
     * received. Both count in the gradient's transfer. */
    gboolean ds_part = plan->stack == PX_STACK_DEEPSPEED && tp > 1;
    double msg = sg || ds_part ? act_msg / tp : act_msg;
    double regather = sg || ds_part ? px_cost_allgather(act_msg, tp, &tpl) : 0;
    if (k + 1 < parts) {
      PxLink l = pipeline_link(cluster, plan, r, px_partition_part_rank(part, k + 1));
      t->p2p_act[k] = px_cost_p2p(msg, &l) + regather;
    }
    if (k > 0) {
      PxLink l = pipeline_link(cluster, plan, r, px_partition_part_rank(part, k - 1));
      t->p2p_grad[k] = px_cost_p2p(msg, &l) + (ds_part ? 2 : 1) * regather;
    }
    t->p2p_bytes[k] = parts > 1 ? msg : 0;
    int layers = part->bounds[k + 1] - part->bounds[k];
    /* with overlap the reduction runs in the buckets of the partition's layout
     * (buckets.h), each as the last backward finishes its layers: the program
     * says where (REDUCE_GRADS chunk=c bucket=b), the engine times it */
    if (plan->zero == 3 && (px_zero3_by_layer(model, plan) || plan->offload == PX_OFFLOAD_OPTIMIZER_PARAMS)) {
      /* ZeRO-3 / FSDP gather each layer's parameters before its forward and
       * again before its backward, every micro-batch, prefetching the next
       * layer while one computes, and free them after use (so memory holds
       * about two layers, as memory.c counts). Per pass the gather overlaps
       * the compute and only its excess is exposed; with parameters offloaded
       * the shard first crosses PCIe. GATHER_PARAMS in the program stands for
       * the first layer's fetch before the chunk's first use. */
      PxLink l = px_cost_dp_link(cluster, plan, r);
      PxLink el = part_eparams[k] > 0 ? edp_link(cluster, plan, r) : l;
      double g = (dp > 1 ? px_cost_allgather(part_params[k] * E, dp, &l) : 0) +
                 (edp > 1 ? px_cost_allgather(part_eparams[k] * E, edp, &el) : 0);
      if (plan->offload == PX_OFFLOAD_OPTIMIZER_PARAMS) t->gather_pcie[k] = part_params[k] * E / dp / cluster->pcie_bw;
      /* FSDP issues one all-gather per pass and one reduce-scatter per
       * backward for each wrapped module's flat parameter, not one for the
       * part: torch 2.1 torch/distributed/fsdp/flat_param.py
       * FlatParamHandle._all_gather_flat_param (all_gather_into_tensor of the
       * handle's flat parameter), _runtime_utils.py _reduce_grad
       * (reduce_scatter_tensor per handle); llm-foundry wraps every MPTBlock
       * (modeling_mpt.py fsdp_wrap_fn: isinstance(module, MPTBlock)), the
       * root unit holds the rest (embedding, final norm; the head is tied).
       * FSDP2 likewise, one foreach_all_gather / foreach_reduce per
       * fully_shard'ed TransformerBlock and the root (torchtitan apply_fsdp;
       * torch _fsdp_collectives.py). Each collective pays its latency term
       * ((n-1) α of a ring, collective_latency), as Megatron-Core's buckets
       * do: units - 1 more than the part's one collective, per pass. */
      double units_lat = 0;
      if ((plan->stack == PX_STACK_FSDP || plan->stack == PX_STACK_TORCHTITAN) && dp > 1) {
        int units = 0, rest = 0;
        for (int li = part->bounds[k]; li < part->bounds[k + 1]; li++)
          if (model->layers[li].kind == PX_LAYER_BLOCK) units++;
          else rest = 1;
        units_lat = MAX(units + rest - 1, 0) * collective_latency(TRUE, part_params[k] * E, dp, &l);
      }
      g += units_lat;
      g += t->gather_pcie[k];
      /* each gather's fp32 -> bf16 shard cast (FSDP): before the forward's
       * and before the backward's, counted in the pass it overlaps (the fold) */
      t->gather_cast[k] = fsdp_shard_cast(cluster, plan, part_params[k], dp, E, layers);
      t->gather[k] = g / MAX(layers, 1);
      t->gather_pass[k] = g;
      /* with overlap, every micro-batch's backward also reduce-scatters its
       * gradients on the same link (FSDP, DeepSpeed ZeRO-3 do not accumulate) */
      double rs = overlap && dp > 1 ? px_cost_reduce_scatter(part_params[k] * G, dp, &l) + units_lat : 0;
      if (overlap && edp > 1) rs += px_cost_reduce_scatter(part_eparams[k] * G, edp, &el);
      t->reduce_pass[k] = rs;
      /* The collectives hold collective_sms SMs while they run (NCCL issue
       * #689; collective_sms_intra when the group is inside a node), so the
       * pass they overlap computes on the rest meanwhile */
      double share = px_cost_collective_sm_share_link(cluster, &l);
      px_cost_zero3_fold(&t->fwd[k], &t->bwd_input[k], &t->bwd_weight[k], g, t->gather_pcie[k], rs, t->gather_cast[k],
                         share, px_cost_persistent_waves(cluster, share), t->gemm_fwd[k], t->gemm_bwd[k]);
    }
  }

  for (int r = 0; r < pp; r++) {
    PxLink dpl = px_cost_dp_link(cluster, plan, r);
    /* ZeRO-1/2 in buckets: the padded buckets are reduce-scattered and gathered */
    double epad, padded_params = rank_params[r] + dp_bucket_padding(model, plan, part, r, &epad);
    double padded_eparams = rank_eparams[r] + epad;
    double grad_bytes = padded_params * G, egrad_bytes = padded_eparams * G;
    PxLink edpl = rank_eparams[r] > 0 ? edp_link(cluster, plan, r) : dpl;
    /* the experts' gradients over their own data-parallel group */
    gboolean rs = dp_reduce_scatters(model, plan, part, r);
    /* (kept apart too, edp_*: the engine times an expert bucket as its share of it) */
    if (egrad_bytes > 0) {
      reduce_grads(rs, egrad_bytes, edp, &edpl, &t->edp_reduce[r], &t->edp_bytes[r]);
      t->dp_reduce[r] += t->edp_reduce[r];
      t->dp_bytes[r] += t->edp_bytes[r];
    }
    if (dp > 1) {
      reduce_grads(rs, grad_bytes, dp, &dpl, &t->dp_reduce[r], &t->dp_bytes[r]);
      t->dp_lat[r] = collective_latency(rs, grad_bytes, dp, &dpl);
      if (plan->zero == 3 && overlap) {
        /* reduced in the backward passes (above): what is left after the last
         * one is the last layer's reduce-scatter */
        double layers = 0;
        for (int k = 0; k < parts; k++)
          if (px_partition_part_rank(part, k) == r) layers += part->bounds[k + 1] - part->bounds[k];
        t->dp_reduce[r] /= MAX(layers, 1.0);
        t->edp_reduce[r] /= MAX(layers, 1.0);
      }
    }
    double shard = (plan->zero >= 1 ? rank_params[r] / dp : rank_params[r]) +
                   (plan->zero >= 1 ? rank_eparams[r] / edp : rank_eparams[r]);
    double opt;
    if (plan->offload != PX_OFFLOAD_NONE) {
      double cpu_rate = cluster->cpu_adam_rate > 0 ? cluster->cpu_adam_rate : CPU_ADAM_RATE / cluster->gpus_per_node;
      opt = shard * (E + E) / cluster->pcie_bw + shard / cpu_rate;
    } else {
      /* fused Adam: fp32 master, m, v read + written (24 B), the gradient read,
       * the 16-bit parameter written; or the stack's unfused traffic */
      double bytes = px_cost_optimizer_bytes(plan->stack, plan->precision, E, G);
      opt = shard * bytes / (cluster->optimizer_bw > 0 ? cluster->optimizer_bw : px_cost_hbm_rate(cluster));
    }
    /* ZeRO 1/2 all-gather the updated parameters; Megatron-Core's distributed
     * optimizer overlaps that gather with the next forward (overlap_param_gather) */
    gboolean gather_hidden = plan->stack == PX_STACK_MEGATRON_CORE;
    if ((plan->zero == 1 || plan->zero == 2) && dp > 1 && !gather_hidden)
      opt += px_cost_allgather(padded_params * E, dp, &dpl);
    if ((plan->zero == 1 || plan->zero == 2) && edp > 1 && !gather_hidden)
      opt += px_cost_allgather(padded_eparams * E, edp, &edpl);
    /* ... but its first buckets' gathers hold up the step's first forward of
     * part 0 (stage 0's first chunk, which every other part waits for): the
     * engine times them from the buckets (px_cost_param_gather_exposed).
     * Later chunks' gathers are dispatched beside earlier chunks' forwards
     * (align_param_gather, with the interleaved schedule), later stages' run
     * while they wait for their first activation (Megatron-Core does not even
     * bucket them: "data-parallel communication on these stages is not on the
     * critical path"): not charged; nor an MoE model's expert buckets. */
    if ((plan->zero == 1 || plan->zero == 2) && dp > 1 && gather_hidden && r == px_partition_part_rank(part, 0)) {
      t->param_gather[r] = px_cost_allgather(part_params[0] * E, dp, &dpl);
      t->param_gather_lat[r] = collective_latency(TRUE, part_params[0] * E, dp, &dpl);
    }
    t->optimizer[r] = opt;
    if (r == 0 || r == pp - 1) t->load[r] = plan->mbs * seq / MAX(plan->cp, 1) * BATCH_ID_BYTES / MAX(cluster->pcie_bw, 1.0);
  }
  if (part->tied && pp > 1) {
    int first = px_partition_part_rank(part, part->tied_first_part);
    int last = px_partition_part_rank(part, part->tied_last_part);
    const PxLayer *head = &model->layers[model->n_layers - 1];
    double tied_bytes = (double)(px_layer_stored_params_tp(head, tp) - px_layer_params_tp(head, tp)) * G;
    if (first != last) {
      PxLink l = px_cost_p2p_link(cluster, plan, first, last);
      t->tied_reduce[first] = t->tied_reduce[last] = px_cost_allreduce(tied_bytes, 2, &l);
    }
  }

  PxFlops flops;
  px_flops_compute(model, plan, &flops);
  t->model_flops_per_step = flops.model_per_step;
  t->hardware_flops_per_step = flops.hardware_per_step;
  t->peak_flops = px_cost_mfu_peak(cluster, plan->precision);
  t->overlap_dp = overlap;
  /* Megatron-LM 2021 waits for its sends: p2p_communication.py _communicate
   * calls torch.cuda.synchronize() after batch_isend_irecv */
  /* Megatron-LM 2021 synchronises after batch_isend_irecv; DeepSpeed's
   * pipeline engine sends and receives synchronously (runtime/pipe/p2p.py:
   * send / recv force async_op = False, dist.send or a broadcast in the
   * stage pair's group) */
  t->p2p_blocking = plan->stack == PX_STACK_MEGATRON_2021 || plan->stack == PX_STACK_DEEPSPEED;
  /* ... and each of DeepSpeed's calls is its own NCCL operation, waited for
   * one at a time in TrainSchedule's order (runtime/pipe/schedule.py: "The
   * communication is blocking and must be paired"): a send larger than the
   * connection's buffer (NCCL_BUFFSIZE, 4 MiB by default, NCCL's environment
   * variable documentation) cannot finish before its receive is posted.
   * Megatron posts a step's sends and receives together (batch_isend_irecv),
   * which this does not describe: its programs keep the eager model. */
  t->p2p_rendezvous = plan->stack == PX_STACK_DEEPSPEED;
  t->p2p_eager_bytes = NCCL_BUFFSIZE;
  t->attention = px_cost_attention(plan);
  t->grad_reduce_bytes = G;
  /* the search folds ZeRO-3's gathers with one share: the first stage's DP
   * group's, as above (every stage's group has the same shape) */
  PxLink dp0 = px_cost_dp_link(cluster, plan, 0);
  t->coll_sm_share = px_cost_collective_sm_share_link(cluster, &dp0);
  t->coll_gemm_waves = px_cost_persistent_waves(cluster, t->coll_sm_share);
  return g_steal_pointer(&t);
}
