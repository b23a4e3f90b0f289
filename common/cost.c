/* cost.c — predicted durations of a program's instructions.
 *
 * Compute. A GEMM of F FLOPs runs at
 *     eff(F) = ETA_MAX * F / (F + F_half),   F_half = peak * TAU
 * of the dense peak for the plan's precision, and never faster than its
 * operands stream through HBM (roofline: t = max(F / (peak eff), bytes / hbm)).
 * Equivalently each GEMM costs F / (ETA_MAX peak) plus a fixed TAU / ETA_MAX of
 * launch, fill and drain, so a GEMM with F = F_half reaches half of ETA_MAX.
 *   ETA_MAX = 0.80: large fp16/bf16 cuBLAS GEMMs on A100/H100 reach roughly
 *     75-85 % of the dense tensor-core peak (NVIDIA Deep Learning Performance
 *     Guide, "Matrix Multiplication Background"); Megatron-LM's 52 % end-to-end
 *     MFU on A100 (Narayanan et al. 2021) is consistent once communication and
 *     memory-bound kernels are added.
 *   TAU = 2 us: a 1024^3 bf16 GEMM (2.1 GFLOP) then reaches ~62 % of an A100's
 *     312 TFLOP/s and a 256^3 one ~4 %, the order measured for cuBLAS.
 * These are datasheet-level guesses: a calibration profile measured by
 * `parallax-exec calibrate` is meant to replace them.
 *
 * Memory-bound kernels (norms, softmax, activation function, residual adds,
 * dropout, embedding lookup, cross-entropy, optimizer) take bytes / hbm_bw.
 * Attention is the unfused Megatron path (the s x s scores are materialised,
 * as the activation-memory model of memory.c assumes): QK^T and PV are batched
 * GEMMs, softmax reads and writes the scores.
 *
 * Backward = 2 x forward, split equally: bwd_input = forward compute + TP
 * collectives of the backward + recompute, bwd_weight = forward compute. Full
 * recompute adds every transformer block's forward (its TP collectives
 * included) to bwd_input; selective adds the attention core (QK^T, softmax,
 * dropout, PV). The LM head is never recomputed (as in Megatron-LM).
 *
 * Communication, alpha-beta per algorithm, on the link the group spans:
 *   ring all-reduce   2(n-1) a + 2(n-1)/n B / bw
 *   tree all-reduce   2 ceil(log2 n) a + 2 B / bw   (NCCL double binary tree)
 *   all-reduce        min(ring, tree), as NCCL's tuner picks
 *   reduce-scatter, all-gather   (n-1) a + (n-1)/n B / bw
 *   p2p               a + B / bw
 * TP (Megatron f/g): per block 2 all-reduces of s b h elements forward and 2
 * backward; with sequence parallelism 2 all-gathers + 2 reduce-scatters each
 * way instead. The vocab-parallel embedding all-reduces its output forward;
 * the LM head all-reduces its input gradient backward and does 3 small fp32
 * all-reduces (max, sum-exp, target logit) in the vocab-parallel cross entropy.
 *
 * Gradients are reduced in the activation dtype (2 bytes for bf16/fp16, as
 * DeepSpeed does; Megatron's fp32 main_grad reduction would double dp_bytes).
 *
 * Optimizer (Adam, mixed precision): per parameter it reads and writes the fp32
 * master, m and v (24 B), reads the gradient and writes the 16-bit parameter.
 * ZeRO >= 1 shards it over dp; ZeRO 1/2 then all-gather the updated 16-bit
 * parameters (ZeRO-3 keeps them sharded and gathers per chunk, see `gather`).
 * Offload: gradients go down and parameters come up over PCIe, Adam runs on the
 * CPU at CPU_ADAM_RATE parameters/s per node shared by the node's GPUs
 * (ZeRO-Offload, Ren et al. 2021, reports a few tenths of a second per billion
 * parameters for its vectorised CPU-Adam on a two-socket server). */
#include "cost.h"
#include "flops.h"
#include <math.h>
#include <stdlib.h>

G_DEFINE_QUARK(px-cost-error-quark, px_cost_error)

#define ETA_MAX 0.80
#define TAU 2e-6
#define CPU_ADAM_RATE 4e9        /* parameters / s / node */
#define ADAM_STATE_BYTES 24.0    /* fp32 master, m, v: read + write */
#define BATCH_ID_BYTES 8.0       /* int32 token id + int32 label per position */

/* ---- collectives ---- */

double px_cost_allreduce_ring(double bytes, int n, const PxLink *l) {
  if (n <= 1 || bytes <= 0) return 0;
  return 2.0 * (n - 1) * l->lat + 2.0 * (n - 1) / n * bytes / l->bw;
}

double px_cost_allreduce_tree(double bytes, int n, const PxLink *l) {
  if (n <= 1 || bytes <= 0) return 0;
  return 2.0 * ceil(log2((double)n)) * l->lat + 2.0 * bytes / l->bw;
}

double px_cost_allreduce(double bytes, int n, const PxLink *l) {
  return MIN(px_cost_allreduce_ring(bytes, n, l), px_cost_allreduce_tree(bytes, n, l));
}

double px_cost_reduce_scatter(double bytes, int n, const PxLink *l) {
  if (n <= 1 || bytes <= 0) return 0;
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

PxLink px_cost_group_link(const PxCluster *cluster, const int *ranks, int n) {
  int gpn = MAX(cluster->gpus_per_node, 1);
  gboolean intra = TRUE;
  for (int i = 1; i < n; i++)
    if (ranks[i] / gpn != ranks[0] / gpn) intra = FALSE;
  if (intra) return (PxLink){cluster->intra_bw, cluster->intra_lat, TRUE};
  return (PxLink){cluster->inter_bw, cluster->inter_lat, FALSE};
}

/* The slowest link over `replicas` groups of n ranks; rank_at(i, r) gives
 * member i of replica r. Members of a TP or DP group have ranks in increasing
 * order with a constant stride (their axis's stride in the rank order), so a
 * group stays inside a node exactly when its first and last member do: two
 * ranks per replica are enough, whatever n (this keeps 4096-GPU plans cheap). */
typedef int (*RankAt)(const PxPlan *plan, int stage, int i, int r);
static PxLink slowest_link(const PxCluster *cluster, const PxPlan *plan, int stage, int n,
                           int replicas, RankAt rank_at) {
  PxLink worst = {cluster->intra_bw, cluster->intra_lat, TRUE};
  for (int r = 0; r < replicas && n > 1; r++) {
    int ends[2] = {rank_at(plan, stage, 0, r), rank_at(plan, stage, n - 1, r)};
    PxLink l = px_cost_group_link(cluster, ends, 2);
    if (!l.intra) return l;
  }
  return worst;
}

static int tp_member(const PxPlan *plan, int stage, int i, int r) { return px_plan_rank_of(plan, r, i, stage); }
static int dp_member(const PxPlan *plan, int stage, int i, int r) { return px_plan_rank_of(plan, i, r, stage); }

PxLink px_cost_tp_link(const PxCluster *cluster, const PxPlan *plan, int stage) {
  return slowest_link(cluster, plan, stage, plan->tp, plan->dp, tp_member);
}

PxLink px_cost_dp_link(const PxCluster *cluster, const PxPlan *plan, int stage) {
  return slowest_link(cluster, plan, stage, plan->dp, plan->tp, dp_member);
}

PxLink px_cost_p2p_link(const PxCluster *cluster, const PxPlan *plan, int from, int to) {
  PxLink worst = {cluster->intra_bw, cluster->intra_lat, TRUE};
  PxLink inter = {cluster->inter_bw, cluster->inter_lat, FALSE};
  /* Every pair is (r, r + (to - from) · stride_pp): at least a node apart
   * once that distance reaches a node's GPUs. */
  int distance = abs(px_plan_rank_of(plan, 0, 0, to) - px_plan_rank_of(plan, 0, 0, from));
  if (distance >= MAX(cluster->gpus_per_node, 1) && px_plan_world(plan) > cluster->gpus_per_node) return inter;
  for (int d = 0; d < plan->dp; d++)
    for (int t = 0; t < plan->tp; t++) {
      int pair[2] = {px_plan_rank_of(plan, d, t, from), px_plan_rank_of(plan, d, t, to)};
      PxLink l = px_cost_group_link(cluster, pair, 2);
      if (!l.intra) return l;
    }
  return worst;
}

/* ---- compute ---- */

double px_cost_peak_flops(const PxCluster *cluster, PxPrecision prec) {
  switch (prec) {
  case PX_PREC_BF16: return cluster->peak_bf16;
  case PX_PREC_FP16: return cluster->peak_fp16;
  case PX_PREC_FP32: return cluster->peak_fp32;
  }
  return cluster->peak_fp32;
}

double px_cost_gemm_efficiency(double flops, double peak) {
  if (flops <= 0) return ETA_MAX;
  return ETA_MAX * flops / (flops + peak * TAU);
}

static double gemm_flops_time(double flops, double bytes, double peak, double hbm_bw) {
  if (flops <= 0) return 0;
  double t_compute = flops / (peak * px_cost_gemm_efficiency(flops, peak));
  return MAX(t_compute, bytes / hbm_bw);
}

double px_cost_gemm_time(double m, double n, double k, int elem_bytes, double peak, double hbm_bw) {
  return gemm_flops_time(2.0 * m * n * k, elem_bytes * (m * k + k * n + m * n), peak, hbm_bw);
}

static int plan_seq(const PxPlan *plan, const PxModel *model) {
  return plan->seq > 0 ? plan->seq : model->desc.max_seq;
}

/* Everything one layer costs, one micro-batch, one GPU of the TP group. */
typedef struct {
  double compute;        /* forward GEMMs + memory-bound kernels */
  double tp_fwd, tp_bwd; /* TP collectives */
  double recompute;      /* added to bwd_input by the checkpoint policy */
  double flops;          /* forward FLOPs of this GPU */
} LayerCost;

/* TP collective of one s·b·h activation: all-reduce, or with sequence
 * parallelism the all-gather + reduce-scatter pair that replaces it. */
static double tp_collective(const PxPlan *plan, double act_bytes, const PxLink *l) {
  if (plan->tp <= 1) return 0;
  if (plan->seq_parallel) return px_cost_allgather(act_bytes, plan->tp, l) + px_cost_reduce_scatter(act_bytes, plan->tp, l);
  return px_cost_allreduce(act_bytes, plan->tp, l);
}

static LayerCost layer_cost(const PxModel *model, const PxLayer *layer, const PxCluster *cluster,
                            const PxPlan *plan, const PxLink *tp_link) {
  LayerCost c = {0};
  const PxModelDesc *d = &model->desc;
  int tp = MAX(plan->tp, 1);
  int E = px_plan_act_bytes(plan);
  double seq = plan_seq(plan, model);
  double T = (double)plan->mbs * seq;                   /* tokens of one micro-batch */
  double Tn = plan->seq_parallel ? T / tp : T;           /* tokens a norm/residual sees */
  double h = d->hidden;
  double peak = px_cost_peak_flops(cluster, plan->precision);
  double hbm = cluster->hbm_bw;
  double act = T * h * E;                                /* one s·b·h activation */

  c.flops = px_layer_forward_flops(model, layer, (int)seq) * plan->mbs / tp;

  /* Weight GEMMs from the layer's own 2-D tensors (weights are (out, in)). */
  double gemm_flops = 0, gemm_time = 0;
  if (layer->kind == PX_LAYER_BLOCK || layer->kind == PX_LAYER_LM_HEAD) {
    for (guint i = 0; i <= layer->n_tensors; i++) {
      /* the own tensors, then the tied one a tied LM head multiplies by */
      const PxTensorSpec *t = i < layer->n_tensors ? &layer->tensors[i] : layer->tied_tensor;
      if (!t || t->ndim != 2) continue;
      double out = t->shape[0], in = t->shape[1];
      if (t->split == PX_SPLIT_ROWS) out /= tp;
      else if (t->split == PX_SPLIT_COLS) in /= tp;
      gemm_flops += 2.0 * T * out * in;
      gemm_time += px_cost_gemm_time(T, out, in, E, peak, hbm);
    }
  }
  double mem_bytes = 0;
  switch (layer->kind) {
  case PX_LAYER_EMBEDDING:
    /* gather rows of the table and write them; learned positions add a read and an add */
    mem_bytes = 2 * act + (d->pos == PX_POS_LEARNED ? 2 * act : 0);
    c.tp_fwd = tp_collective(plan, act, tp_link);
    break;
  case PX_LAYER_BLOCK: {
    double heads_local = (double)d->heads / tp;
    double ffn_local = (double)d->ffn / tp;
    double scores = plan->mbs * heads_local * seq * seq * E;
    /* the attention core: whatever the layer's FLOPs hold beyond its weight GEMMs */
    double core_flops = MAX(c.flops - gemm_flops, 0);
    double core_bytes = 2 * scores + (d->dropout ? 2 * scores + scores / E : 0); /* softmax (+ dropout and its mask) */
    /* QK^T and PV: two batched GEMMs, each half the core's FLOPs */
    double core_time = 2 * gemm_flops_time(core_flops / 2, 0, peak, hbm) + core_bytes / hbm;
    double norm_bytes = 2 * (2 * Tn * h * E);                        /* two norms: read + write */
    double resid_bytes = 2 * (3 * Tn * h * E);                       /* two residual adds: 2 reads + write */
    double act_fn_bytes = (d->ffn_kind == PX_FFN_SWIGLU ? 3 : 2) * T * ffn_local * E;
    double drop_bytes = d->dropout ? 2 * (2 * Tn * h * E + Tn * h) : 0; /* attn-out, mlp-out dropout + masks */
    mem_bytes = norm_bytes + resid_bytes + act_fn_bytes + drop_bytes;
    gemm_time += core_time;
    c.tp_fwd = 2 * tp_collective(plan, act, tp_link);
    c.tp_bwd = 2 * tp_collective(plan, act, tp_link);
    if (plan->ckpt == PX_CKPT_SELECTIVE) {
      c.recompute = core_time;
    }
    break;
  }
  case PX_LAYER_FINAL_NORM:
    mem_bytes = 2 * Tn * h * E;
    break;
  case PX_LAYER_LM_HEAD: {
    double vocab_local = (double)d->vocab / tp;
    mem_bytes = 2 * T * vocab_local * 4;                  /* fp32 cross entropy over the logits */
    c.tp_bwd = tp_collective(plan, act, tp_link);
    if (tp > 1) c.tp_fwd = 3 * px_cost_allreduce(T * 4, tp, tp_link);
    break;
  }
  }
  c.compute = gemm_time + mem_bytes / hbm;
  if (plan->ckpt == PX_CKPT_FULL && layer->kind == PX_LAYER_BLOCK) {
    c.recompute = c.compute + c.tp_fwd;
  }
  return c;
}

void px_cost_layer_forward(const PxModel *model, const PxLayer *layer, const PxCluster *cluster,
                           const PxPlan *plan, const PxLink *tp_link, double *compute, double *tp_comm) {
  LayerCost c = layer_cost(model, layer, cluster, plan, tp_link);
  if (compute) *compute = c.compute;
  if (tp_comm) *tp_comm = c.tp_fwd;
}

/* ---- the table ---- */

static PxCostTable *table_alloc(int pp, int vpp) {
  PxCostTable *t = g_new0(PxCostTable, 1);
  t->pp = pp;
  t->vpp = vpp;
  t->parts = pp * vpp;
  double **per_part[] = {&t->fwd, &t->bwd_input, &t->bwd_weight, &t->tp_comm_fwd, &t->tp_comm_bwd,
                         &t->p2p_act, &t->p2p_grad, &t->gather, &t->gather_pass, &t->p2p_bytes};
  for (gsize i = 0; i < G_N_ELEMENTS(per_part); i++) *per_part[i] = g_new0(double, t->parts);
  double **per_rank[] = {&t->dp_reduce, &t->tied_reduce, &t->optimizer, &t->load, &t->dp_bytes};
  for (gsize i = 0; i < G_N_ELEMENTS(per_rank); i++) *per_rank[i] = g_new0(double, pp);
  return t;
}

void px_cost_table_free(PxCostTable *t) {
  if (!t) return;
  double *arrays[] = {t->fwd, t->bwd_input, t->bwd_weight, t->tp_comm_fwd, t->tp_comm_bwd, t->p2p_act,
                      t->p2p_grad, t->gather, t->gather_pass, t->p2p_bytes, t->dp_reduce, t->tied_reduce, t->optimizer,
                      t->load, t->dp_bytes};
  for (gsize i = 0; i < G_N_ELEMENTS(arrays); i++) g_free(arrays[i]);
  g_free(t);
}

PxCostTable *px_cost_table_ideal(int pp, int vpp) {
  PxCostTable *t = table_alloc(MAX(pp, 1), MAX(vpp, 1));
  for (int k = 0; k < t->parts; k++) t->fwd[k] = t->bwd_input[k] = t->bwd_weight[k] = 1.0;
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

PxCostTable *px_cost_table_new(const PxModel *model, const PxCluster *cluster, const PxPlan *plan,
                               const PxPartition *part, GError **error) {
  if (!check_inputs(cluster, plan, part, error)) return NULL;
  int pp = plan->pp, parts = part->parts, tp = MAX(plan->tp, 1), dp = MAX(plan->dp, 1);
  g_autoptr(PxCostTable) t = table_alloc(pp, part->vpp);
  int E = px_plan_act_bytes(plan);          /* activations, 16-bit weights, gradients */
  double seq = plan_seq(plan, model);
  double act_msg = plan->mbs * seq * model->desc.hidden * E / (plan->seq_parallel ? tp : 1);
  g_autofree double *rank_params = g_new0(double, pp);  /* per GPU, TP-sharded, before ZeRO */

  for (int k = 0; k < parts; k++) {
    int r = px_partition_part_rank(part, k);
    PxLink tpl = px_cost_tp_link(cluster, plan, r);
    double part_params = 0;
    for (int li = part->bounds[k]; li < part->bounds[k + 1]; li++) {
      const PxLayer *layer = &model->layers[li];
      LayerCost c = layer_cost(model, layer, cluster, plan, &tpl);
      t->fwd[k] += c.compute + c.tp_fwd;
      t->tp_comm_fwd[k] += c.tp_fwd;
      t->bwd_input[k] += c.compute + c.tp_bwd + c.recompute;
      t->bwd_weight[k] += c.compute;
      t->tp_comm_bwd[k] += c.tp_bwd + (plan->ckpt == PX_CKPT_FULL && layer->kind == PX_LAYER_BLOCK ? c.tp_fwd : 0);
      /* a tied LM head stores its own copy of the embedding only on another rank */
      gboolean own_copy = layer->tied_tensor && part->tied &&
                          px_partition_part_rank(part, part->tied_first_part) != r;
      part_params += own_copy ? px_layer_stored_params_tp(layer, tp) : px_layer_params_tp(layer, tp);
    }
    rank_params[r] += part_params;
    if (k + 1 < parts) {
      PxLink l = px_cost_p2p_link(cluster, plan, r, px_partition_part_rank(part, k + 1));
      t->p2p_act[k] = px_cost_p2p(act_msg, &l);
    }
    if (k > 0) {
      PxLink l = px_cost_p2p_link(cluster, plan, r, px_partition_part_rank(part, k - 1));
      t->p2p_grad[k] = px_cost_p2p(act_msg, &l);
    }
    t->p2p_bytes[k] = parts > 1 ? act_msg : 0;
    if (plan->zero == 3 && (dp > 1 || plan->offload == PX_OFFLOAD_OPTIMIZER_PARAMS)) {
      /* DeepSpeed ZeRO-3 gathers each layer's parameters before its forward
       * and again before its backward, every micro-batch, prefetching the next
       * layer while one computes, and frees them after use (so memory holds
       * about two layers, as memory.c counts). Per pass the gather overlaps
       * the compute and only its excess is exposed; with parameters offloaded
       * the shard first crosses PCIe. GATHER_PARAMS in the program stands for
       * the first layer's fetch before the chunk's first use. */
      PxLink l = px_cost_dp_link(cluster, plan, r);
      double g = dp > 1 ? px_cost_allgather(part_params * E, dp, &l) : 0;
      if (plan->offload == PX_OFFLOAD_OPTIMIZER_PARAMS) g += part_params * E / dp / cluster->pcie_bw;
      int layers = part->bounds[k + 1] - part->bounds[k];
      t->gather[k] = g / MAX(layers, 1);
      t->gather_pass[k] = g;
      double bwd = t->bwd_input[k] + t->bwd_weight[k];
      double fwd_exposed = MAX(0.0, g - t->fwd[k]), bwd_exposed = MAX(0.0, g - bwd);
      t->fwd[k] += fwd_exposed;
      t->bwd_input[k] += bwd_exposed / 2;
      t->bwd_weight[k] += bwd_exposed / 2;
    }
  }

  for (int r = 0; r < pp; r++) {
    PxLink dpl = px_cost_dp_link(cluster, plan, r);
    double grad_bytes = rank_params[r] * E;
    if (dp > 1) {
      if (plan->zero >= 2) {
        t->dp_reduce[r] = px_cost_reduce_scatter(grad_bytes, dp, &dpl);
        t->dp_bytes[r] = (double)(dp - 1) / dp * grad_bytes;
      } else {
        t->dp_reduce[r] = px_cost_allreduce(grad_bytes, dp, &dpl);
        t->dp_bytes[r] = 2.0 * (dp - 1) / dp * grad_bytes;
      }
    }
    double shard = plan->zero >= 1 ? rank_params[r] / dp : rank_params[r];
    double opt;
    if (plan->offload != PX_OFFLOAD_NONE) {
      double cpu_rate = CPU_ADAM_RATE / cluster->gpus_per_node;
      opt = shard * (E + E) / cluster->pcie_bw + shard / cpu_rate;
    } else {
      opt = shard * (ADAM_STATE_BYTES + E + E) / cluster->hbm_bw;
    }
    if ((plan->zero == 1 || plan->zero == 2) && dp > 1) opt += px_cost_allgather(rank_params[r] * E, dp, &dpl);
    t->optimizer[r] = opt;
    if (r == 0 || r == pp - 1) t->load[r] = plan->mbs * seq * BATCH_ID_BYTES / MAX(cluster->pcie_bw, 1.0);
  }
  if (part->tied && pp > 1) {
    int first = px_partition_part_rank(part, part->tied_first_part);
    int last = px_partition_part_rank(part, part->tied_last_part);
    const PxLayer *head = &model->layers[model->n_layers - 1];
    double tied_bytes = (double)(px_layer_stored_params_tp(head, tp) - px_layer_params_tp(head, tp)) * E;
    if (first != last) {
      PxLink l = px_cost_p2p_link(cluster, plan, first, last);
      t->tied_reduce[first] = t->tied_reduce[last] = px_cost_allreduce(tied_bytes, 2, &l);
    }
  }

  PxFlops flops;
  px_flops_compute(model, plan, &flops);
  t->model_flops_per_step = flops.model_per_step;
  t->hardware_flops_per_step = flops.hardware_per_step;
  t->peak_flops = px_cost_peak_flops(cluster, plan->precision);
  t->overlap_dp = plan->bucket_bytes > 0;
  return g_steal_pointer(&t);
}
