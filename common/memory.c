/* memory.c — what every pipeline stage holds on one GPU.
 *
 * Model states (bytes per parameter held by the GPU, before sharding):
 *   mixed precision (fp16/bf16) with Adam: weights 2, gradients 2, optimizer 12
 *   (fp32 master weights, momentum, variance) — 16 B/param (ZeRO paper, §3.1);
 *   fp32 with Adam: weights 4, gradients 4, optimizer 8.
 * ZeRO-1 divides the optimizer by dp, ZeRO-2 also the gradients, ZeRO-3 also
 * the weights. Offloading moves the optimizer (and with it the fp32 copy) or
 * also the parameters to host memory.
 *
 * Activations (Korthikanti et al. 2022, "Reducing Activation Recomputation in
 * Large Transformer Models", §4): per block and micro-batch, 16-bit activations,
 * 1-byte dropout masks, s sequence, b micro-batch, h hidden, a heads, t TP:
 *   no parallelism     sbh(34 + 5as/h)
 *   tensor parallel    sbh(10 + 24/t + 5as/(ht))
 *   TP + sequence par. sbh(34/t + 5as/(ht))
 *   selective recompute drops the 5as/h term, and so does flash attention
 *   (--attention flash, or a stack that defaults to it: no s x s scores are
 *   kept); full recompute keeps the block input, 2sbh (÷t with SP).
 * The tensors are listed one by one in activations.c (px_activations_layer,
 * the list the executor allocates too), which also covers GQA (K and V of
 * kv_heads), a head_dim apart from h/a, sliding windows, parallel attention
 * + MLP blocks, gated MLPs (three FFN tensors), models without dropout and fp32;
 * the sums here are sums over that list (common/activations.c), which also
 * holds context parallelism (every per-token term at s/cp tokens, Megatron's
 * context-parallel doc, plus the ring's K/V buffers, px_memory_cp_kv_buffers:
 * Transformer Engine's p2p ring, or torch's all-gather ring on the torchtitan
 * stack,
 * and in the executor's half runs the ring's fp32 output accumulator,
 * px_memory_cp_out_acc)
 * and FP8 (the FP8 GEMMs' inputs saved in 1 byte, Transformer Engine). */
#include "memory.h"
#include "zero3.h"
#include "activations.h"
#include "buckets.h"
#include "cost.h"
#include "moe.h"
#include "schedule.h"
#include <math.h>
#include <string.h>

/* One layer's bytes kept for backward: the sum of its saved entries in the
 * core's activation list (common/activations.h, Megatron's accounting), the
 * layer taken alone (under full recompute a block then keeps its input). */
double px_layer_activation_bytes(const PxModel *model, const PxLayer *layer, const PxPlan *plan) {
  int li = (int)(layer - model->layers);
  PxActList list;
  px_activations_layer(model, plan, NULL, li, li + 1, li, &list);
  return px_act_kept_bytes(&list);
}

static double part_kept(const PxModel *model, const PxPlan *plan, const PxActOptions *opt, int first, int end) {
  double sum = 0;
  PxActList list;
  for (int li = first; li < end; li++) {
    px_activations_layer(model, plan, opt, first, end, li, &list);
    sum += px_act_kept_bytes(&list);
  }
  return sum;
}

/* full recompute keeps one input per segment of `interval` blocks: the list
 * marks the other blocks' inputs PX_ACT_SEGMENT */
double px_part_activation_bytes(const PxModel *model, const PxPlan *plan, int first, int end) {
  return part_kept(model, plan, NULL, first, end);
}

/* Peak micro-batches in flight on a pipeline rank, in units of "all of the
 * rank's layers for one micro-batch". */
double px_memory_in_flight(const PxPlan *plan, int stage) {
  int p = plan->pp, m = plan->m > 0 ? plan->m : 1;
  switch (plan->schedule) {
  case PX_SCHED_NAIVE: return 1;
  case PX_SCHED_GPIPE: return m;
  case PX_SCHED_1F1B: return MIN(p - stage, m);
  case PX_SCHED_ZB_H1:
  case PX_SCHED_ZB_H2:
  case PX_SCHED_ZB_V:
  case PX_SCHED_DUALPIPEV: {
    /* from the program's own compute order: (micro-batch, chunk)s holding
     * something (to their weight pass), over the chunks per rank (ZB-H1 p - r
     * on rank r but for W passes held back; ZB-H2 2p - 1 on rank 0; ZB-V 2p
     * chunks = p; DualPipeV 2p + 1 chunks on rank 0, the DualPipe README's "PP + 1") */
    int v = MAX(plan->vpp, 1), n = 0;
    g_autofree double *ones = g_new(double, v);
    for (int c = 0; c < v; c++) ones[c] = 1;
    px_schedule_peak_activations(plan, stage, ones, &n);
    return (double)n / v;
  }
  case PX_SCHED_INTERLEAVED: {
    /* Megatron-LM: rank r runs (p - r - 1)·2 + (v - 1)·p warm-up chunk forwards,
     * then holds one more before its first backward; each chunk is 1/v of the
     * rank's layers. Rank 0: p·(1 + (p-1)/(p·v)) (Korthikanti §4.2.3). */
    int v = plan->vpp;
    int chunks = MIN((p - stage - 1) * 2 + (v - 1) * p + 1, m * v);
    return (double)chunks / v;
  }
  }
  return 1;
}

/* Megatron-LM's interleaved order (forward_backward_pipelining_with_interleaving):
 * the k-th forward of a rank runs chunk (k mod p·v) / p, the k-th backward
 * chunk v - 1 - (k mod p·v) / p. Of the first n forwards, chunk c ran: */
static int interleaved_count(int n, int c, int p, int v) {
  int period = p * v, rest = n % period - c * p;
  return n / period * p + CLAMP(rest, 0, p);
}

double px_memory_peak_activations(const PxPlan *plan, int stage, const double *chunk_act, const double *chunk_w) {
  int v = MAX(plan->vpp, 1);
  double sum = 0;
  for (int c = 0; c < v; c++) sum += chunk_act[c];
  if (px_act_splits_backward(plan)) {
    /* the program's order: F holds act, B-input frees act - w, W frees w */
    g_autofree PxChunkHeld *held = g_new0(PxChunkHeld, v);
    for (int c = 0; c < v; c++) held[c] = (PxChunkHeld){.act = chunk_act[c], .w = chunk_w ? chunk_w[c] : chunk_act[c]};
    return px_schedule_peak_held(plan, stage, held, NULL);
  }
  if (plan->schedule != PX_SCHED_INTERLEAVED) return px_memory_in_flight(plan, stage) * sum;
  int p = plan->pp, total = MAX(plan->m, 1) * v;
  int warmup = MIN((p - stage - 1) * 2 + (v - 1) * p, total);
  if (warmup == total) return MAX(plan->m, 1) * sum;
  /* steady state j: forwards [0, warmup + j] have run, backwards [0, j) —
   * periodic in j with period p·v */
  double peak = 0;
  for (int j = 0; j < MIN(total - warmup, p * v); j++) {
    double bytes = 0;
    for (int c = 0; c < v; c++)
      bytes += (interleaved_count(warmup + j + 1, c, p, v) - interleaved_count(j, v - 1 - c, p, v)) * chunk_act[c];
    peak = MAX(peak, bytes);
  }
  return peak;
}

gint64 px_zero_shard(gint64 numel, int dp) { return dp > 1 ? (numel + dp - 1) / dp : numel; }

double px_memory_fp8_meta_per_gemm(void) {
  /* fp32 amax history (len x tensors), scale and scale_inv (tensors) */
  return 4.0 * PX_FP8_TENSORS_PER_GEMM * (PX_FP8_AMAX_HISTORY + 2);
}

double px_memory_cp_kv_block(const PxModel *model, const PxPlan *plan) {
  if (MAX(plan->cp, 1) == 1) return 0;
  double s = (double)px_plan_local_seq(plan), kv = (double)px_model_kv_dim(&model->desc) / MAX(plan->tp, 1);
  return 2.0 * px_plan_act_bytes(plan) * s * plan->mbs * kv;
}

/* Transformer Engine's AttnFuncWithCPAndKVP2P (pytorch/attention.py, later
 * dot_product_attention/context_parallel.py): the forward
 * keeps every K/V block of the ring in p2p_comm_buffers until it returns (its
 * own copy and the cp - 1 received), the backward double-buffers (K/V,
 * dK/dV) pairs: 4 blocks. Transient, one layer at a time: max(cp, 4) blocks. */
double px_memory_cp_kv_buffers(const PxModel *model, const PxPlan *plan) {
  if (plan->stack == PX_STACK_TORCHTITAN && MAX(plan->cp, 1) > 1) {
    /* torch's context_parallel (torchtitan 9dec370, rotate method
     * "allgather"; torch _attention.py _templated_ring_attention and
     * _templated_ring_attention_backward): the all-gathered K/V of all cp
     * ranks at every head, the merger's and the backward's fp32 tensors and
     * dK/dV in flight, at the larger of its forward's and its backward's
     * peaks (px_cost_titan_cp, which sizes them from the same Q; one layer
     * at a time: the forward ring's buffers are freed when it returns, full
     * recompute runs it again in the backward before the backward ring) */
    PxTitanCp tc;
    px_cost_titan_cp(model, plan, &tc);
    return MAX(tc.fwd_buffers, tc.bwd_buffers);
  }
  return MAX(plan->cp, 4) * px_memory_cp_kv_block(model, plan);
}

/* The executor's ring attention in bf16 / fp16 merges every block's partial
 * output into an fp32 accumulator of the rank's attention output and rounds
 * it once (exec/gpt.c ring_attention_fwd): one (s/cp)·b × (a/t)·head_dim
 * tensor of floats, transient, one layer's forward at a time. */
double px_memory_cp_out_acc(const PxModel *model, const PxPlan *plan, int elem_bytes) {
  if (MAX(plan->cp, 1) == 1 || elem_bytes != 2) return 0;
  double s = (double)px_plan_local_seq(plan), q = (double)px_model_q_dim(&model->desc) / MAX(plan->tp, 1);
  return 4.0 * s * plan->mbs * q;
}

/* Parameters of the FP8 GEMMs of a layer (the 2-D weights of a block; the
 * embedding and the LM head stay bf16, as Megatron-Core builds its output
 * layer outside Transformer Engine), per TP rank; *gemms counts them. */
static double fp8_gemm_params(const PxLayer *L, int tp, int *gemms) {
  double n = 0;
  if (L->kind != PX_LAYER_BLOCK) return 0;
  for (guint i = 0; i < L->n_tensors; i++) {
    const PxTensorSpec *t = &L->tensors[i];
    if (t->ndim != 2) continue;
    n += (double)t->shape[0] * t->shape[1] / (t->split == PX_SPLIT_NONE ? 1 : tp);
    (*gemms)++;
  }
  return n;
}

/* torchtitan's loss (the December 2024 benchmarks' torchtitan 9dec370,
 * train.py): loss_fn is F.cross_entropy(pred.flatten(0, 1).float(), labels),
 * then `del pred` and loss.backward(). log_softmax's fp32 output, T·V·4 B for
 * the T = s·b tokens of a micro-batch, is what LogSoftmaxBackward0 and
 * NllLossBackward0 save: the LM head's kept logits (activations.c). The
 * backward starts with NllLossBackward0 making the fp32 T × V gradient
 * (nll_loss_backward: zeros_like(self) scattered at the targets) and
 * LogSoftmaxBackward0 another (_log_softmax_backward_data), while the saved
 * output still lives: 2 · 4 T V above the kept level, with every block's
 * activations still held. (The forward's own excursion, the bf16 logits and
 * their fp32 copy beside the log_softmax output, is (2 + 4) T V: less.)
 * With TP, 9dec370 runs the loss under loss_parallel (train.py
 * train_context; on unless --training.disable_loss_parallel; apply_tp leaves
 * the output Shard(-1)): torch/distributed/tensor/parallel/loss.py's
 * handlers keep the same fp32 log_softmax output, T × V/tp a rank, but the
 * backward is _nll_loss_and_log_softmax_backward, which returns
 * (grad_input + torch.exp(x)) * grad_output with grad_input =
 * zeros_like(x): the zeros, exp(x) and their sum live together beside x
 * (then the sum, the zeros and the product), 3 · 4 T V/tp above the kept
 * level; _log_softmax_backward_handler only returns its gradient. (The
 * expression is the same in the stored versions of loss.py before and after
 * the benchmarks' torch 1963fc8; that commit's file itself was not read.)
 * The forward's excursion, the bf16 logits, their fp32 copy and the shifted
 * logits beside the output, (2 + 4 + 4) T V/tp, is less. */
static double titan_loss_transient(const PxModel *model, const PxPlan *plan, gboolean last, double s, double b) {
  if (plan->stack != PX_STACK_TORCHTITAN || !last) return 0;
  if (plan->tp > 1) return 3.0 * 4.0 * s * b * ceil((double)model->desc.vocab / plan->tp);
  return 2.0 * 4.0 * s * b * (double)model->desc.vocab;
}

/* What a stage holds for a moment above its activations' steady peak: full
 * recompute's segment, made again in the backward once the micro-batch's
 * final norm and logits are freed, or the torchtitan loss's backward start
 * (above), before them — whichever is larger. e, s, b: the activation bytes,
 * a rank's tokens per sequence and the micro-batch. */
static double stage_transient(const PxModel *model, const PxPlan *plan, int max_blocks, gboolean last,
                              double head_acts, double e, double s, double b, double ring) {
  const PxModelDesc *d = &model->desc;
  double extra = titan_loss_transient(model, plan, last, s, b);
  /* `ring`: torch's context-parallel ring (torchtitan stack), alive inside
   * one block's attention only: never beside the loss's gradients, which are
   * freed before the first block's backward (and allocated after the last
   * forward's ring returned); beside the recomputed segment under full AC */
  if (plan->ckpt != PX_CKPT_FULL || max_blocks == 0) extra = MAX(extra, ring);
  if (plan->ckpt == PX_CKPT_FULL && max_blocks > 0) {
    /* backward recomputes one checkpoint segment of `interval` blocks at a
     * time, holding their full activations transiently (one micro-batch);
     * by then that micro-batch's final norm and logits are freed */
    PxPlan noc;
    px_plan_copy(&noc, plan);
    noc.ckpt = PX_CKPT_NONE;
    const PxLayer *blk = NULL;
    for (guint i = 0; i < model->n_layers && !blk; i++)
      if (model->layers[i].kind == PX_LAYER_BLOCK) blk = &model->layers[i];
    double segment = MIN(plan->ckpt_interval, max_blocks) * px_layer_activation_bytes(model, blk, &noc);
    /* the fsdp stack (Composer 0.16.4 Trainer._train_microbatch) keeps
     * the model's output, state.outputs with its logits in the compute
     * dtype (E·s·b·V, V/tp per rank with a vocab-parallel head), from the
     * forward until the training metrics after loss.backward(): those
     * logits are not freed before the recompute */
    double held = plan->stack == PX_STACK_FSDP && last ? e * s * b * ceil((double)d->vocab / plan->tp) : 0;
    extra = MAX(extra, segment - MAX(0.0, head_acts - held) + ring);
    px_plan_clear(&noc);
  }
  return MAX(0.0, extra);
}

PxMemory *px_memory_new(const PxModel *model, const PxPlan *plan, const PxPartition *part,
                        const PxCluster *cluster) {
  return px_memory_new_act(model, plan, part, cluster, NULL);
}

PxMemory *px_memory_new_act(const PxModel *model, const PxPlan *plan, const PxPartition *part,
                            const PxCluster *cluster, const PxActOptions *act) {
  gboolean exec = act && act->stack == PX_ACT_STACK_EXEC;
  PxMemory *mem = g_new0(PxMemory, 1);
  mem->n_stages = plan->pp;
  mem->stages = g_new0(PxStageMemory, plan->pp);
  mem->capacity = cluster ? (double)cluster->gpu_memory : 0;
  const PxModelDesc *d = &model->desc;
  gboolean mixed = plan->precision != PX_PREC_FP32;
  double wb = mixed ? 2 : 4, gb = mixed ? 2 : 4, ob = mixed ? 12 : 8;
  /* activation element bytes: the plan's, or the executor's own (its
   * compute dtype, which under mixed precision is the half dtype while the
   * runtime keeps an fp32 plan for the fp32 gradient staging) */
  double e = act && act->elem_bytes > 0 ? act->elem_bytes : px_plan_act_bytes(plan);
  double e_scale = e / px_plan_act_bytes(plan); /* for the terms sized in the plan's activation bytes */
  double s = px_plan_local_seq(plan), b = plan->mbs, h = d->hidden;
  /* ZeRO shards and the gradients are reduced over dp·cp (the ranks that hold
   * the same parameters); routed experts over edp, which folds cp in */
  int data = px_plan_data_ranks(plan);
  double dp = data, edp = px_plan_edp(plan);
  int ep = MAX(plan->ep, 1), etp = px_plan_etp(plan);
  double cp_kv = px_memory_cp_kv_buffers(model, plan) * e_scale;
  /* torch's ring (torchtitan) is charged in the stage's transient, where it
   * meets what else is alive in a block's backward; Transformer Engine's
   * blocks stay in `buffers` */
  gboolean titan_ring = !exec && plan->stack == PX_STACK_TORCHTITAN && cp_kv > 0;
  mem->cp_kv_transient = titan_ring;
  double cp_acc = exec ? px_memory_cp_out_acc(model, plan, (int)e) : 0;
  double bucket_elems = plan->bucket_bytes > 0 ? plan->bucket_bytes / gb : 5e8;

  for (int r = 0; r < plan->pp; r++) {
    PxStageMemory *st = &mem->stages[r];
    st->stage = r;
    gint64 params = 0, max_layer = 0, shard = 0, eshard = 0, eparams = 0;
    gint64 block_params = 0, max_block = 0; /* the fsdp stack's wrapped units (below) */
    gint64 head_unit = 0; /* the torchtitan stack's [norm, output] unit (below) */
    gboolean moe_held = FALSE;
    double act_mb = 0, act_block = 0, head_acts = 0;
    g_autofree double *chunk_act = g_new0(double, MAX(plan->vpp, 1));
    g_autofree double *chunk_w = g_new0(double, MAX(plan->vpp, 1));
    g_autofree PxChunkHeld *held = g_new0(PxChunkHeld, MAX(plan->vpp, 1));
    int max_blocks = 0, gemms = 0;
    double fp8_params = 0, fp8_max_layer = 0;
    gboolean first = FALSE, last = FALSE;
    for (int c = 0; c < plan->vpp; c++)
      first |= part->bounds[px_partition_part_of(part, r, c)] == 0;
    for (int c = 0; c < plan->vpp; c++) {
      int k = px_partition_part_of(part, r, c);
      gint64 chunk_params = 0, chunk_expert = 0;
      for (int li = part->bounds[k]; li < part->bounds[k + 1]; li++) {
        const PxLayer *L = &model->layers[li];
        /* a rank holding both ends keeps one copy of a tied embedding */
        gint64 lp = L->tied_tensor && first ? px_layer_params_tp(L, plan->tp)
                                            : px_layer_stored_params_tp(L, plan->tp);
        /* routed experts: E/ep experts, each's FFN over etp; sharded over edp under ZeRO */
        gint64 le = 0;
        if (L->kind == PX_LAYER_BLOCK && px_model_block_is_moe(d, L->block)) {
          px_layer_params_split(L, plan->tp, ep, etp, &lp, &le); /* a block holds no tied copy */
          moe_held = TRUE;
        }
        params += lp + le;
        chunk_params += lp;
        chunk_expert += le;
        lp += le;
        max_layer = MAX(max_layer, lp);
        if (L->kind == PX_LAYER_FINAL_NORM || L->kind == PX_LAYER_LM_HEAD) head_unit += lp;
        if (L->kind == PX_LAYER_BLOCK) {
          block_params += lp;
          max_block = MAX(max_block, lp);
        }
        if (plan->precision == PX_PREC_FP8) {
          double g = fp8_gemm_params(L, plan->tp, &gemms);
          fp8_params += g;
          fp8_max_layer = MAX(fp8_max_layer, g);
        }
        if (L->kind == PX_LAYER_BLOCK) {
          PxActList one;
          px_activations_layer(model, plan, act, li, li + 1, li, &one);
          act_block = px_act_kept_bytes(&one);
        }
        if (L->kind == PX_LAYER_FINAL_NORM || L->kind == PX_LAYER_LM_HEAD)
          head_acts += px_layer_activation_bytes(model, L, plan);
        if (li == (int)model->n_layers - 1) last = TRUE;
      }
      /* ZeRO-1/2 in buckets: the rank's slice of each padded bucket, the
       * dense ones over dp and the experts' over edp (buckets.h) */
      if (px_buckets_sharded(part->buckets, model, plan, k)) {
        gint64 ek, all = px_buckets_shard_layout(part->buckets, k, data, (int)edp, NULL, NULL, &ek);
        shard += all - ek;
        eshard += ek;
      } else {
        shard += px_zero_shard(chunk_params, data);
        eshard += px_zero_shard(chunk_expert, (int)edp);
      }
      eparams += chunk_expert;
      if (exec) {
        /* the executor's own walk of the list: what a micro-batch keeps, and
         * how far its forward and backward go above that */
        PxActProfile prof;
        px_activations_profile(model, plan, act, part->bounds[k], part->bounds[k + 1], &prof);
        chunk_act[c] = prof.kept;
        chunk_w[c] = prof.w;
        held[c] = (PxChunkHeld){.act = prof.kept, .w = prof.w, .fwd = prof.fwd, .bwd = prof.bwd, .bwd_input = prof.bwd_input};
      } else {
        chunk_act[c] = part_kept(model, plan, act, part->bounds[k], part->bounds[k + 1]);
        chunk_w[c] = px_activations_w_bytes(model, plan, act, part->bounds[k], part->bounds[k + 1]);
      }
      act_mb += chunk_act[c];
      int blocks = 0;
      for (int li = part->bounds[k]; li < part->bounds[k + 1]; li++) blocks += model->layers[li].kind == PX_LAYER_BLOCK;
      max_blocks = MAX(max_blocks, blocks);
    }
    st->params = params;
    double P = (double)params;
    /* dense parameters shard over dp·cp, routed experts over edp (their own
     * data-parallel group: Megatron-Core's expert distributed optimizer) */
    double Pd = (double)(params - eparams), Pe = (double)eparams;
    gboolean zd = plan->zero >= 1 && data > 1, ze = plan->zero >= 1 && edp > 1;
    /* each chunk's flat buffers partitioned (px_zero_shard, or per bucket:
     * px_buckets_shard_layout), the others padded to dp shards */
    double S = zd ? (double)shard : Pd, full = zd ? S * dp : Pd;
    double Se = ze ? (double)eshard : Pe, fulle = ze ? Se * edp : Pe;
    st->weights = wb * (plan->zero >= 3 ? S + Se : full + fulle);
    st->gradients = gb * (plan->zero >= 2 ? S + Se : full + fulle);
    if (plan->stack == PX_STACK_TORCHTITAN && plan->pp > 1 && data > 1 && plan->zero >= 1 &&
        plan->offload == PX_OFFLOAD_NONE) {
      /* torchtitan's FSDP2 under pipeline parallelism: torch.distributed.
       * pipelining's PipelineStage.backward_maybe_with_nosync runs every
       * micro-batch's backward of an FSDPModule with
       * set_requires_gradient_sync(False) (and set_reshard_after_backward
       * (False)), reducing only after the last one (run_post_backward ->
       * FSDPParamGroup.post_backward). Until then each post_backward keeps
       * the unsharded gradients: FSDPParam.to_accumulated_grad_if_needed
       * casts them to reduce_dtype into unsharded_accumulated_grad, which
       * later micro-batches add into (accumulate_unsharded_grad_if_needed);
       * with equal dtypes the unsharded .grad itself stays. So the stage's
       * whole gradient, unsharded, in the reduce dtype (G bytes per
       * parameter, not 2 / dp), from the first backward to the last, the
       * steady 1F1B state and its activation peak included; the sharded
       * gradients only appear as it is reduced (zero_grad sets them to None
       * each step) */
      st->gradients = px_cost_grad_reduce_bytes(plan) * (double)params;
    }
    st->optimizer = ob * (S + Se);
    if (plan->offload != PX_OFFLOAD_NONE) {
      /* ZeRO-Offload (DeepSpeed stage_1_and_2.py with cpu_offload): the fp32
       * master (the parameters themselves in fp32), both moments and the
       * gradient shard's copy live in host memory, AdamW runs there */
      st->host = (12 + gb) * (S + Se);
      st->optimizer = 0;
    }
    if (plan->offload == PX_OFFLOAD_OPTIMIZER_PARAMS) {
      /* ZeRO-Infinity's offload_param (ZeRO-3 only, px_plan_validate): the
       * partitioned parameters (DeepSpeed's ds_tensor) in host memory; the
       * device keeps only the gathered layers, counted with the ZeRO-3
       * gather buffers below (by layer whatever dp·cp: px_zero3_by_layer).
       * The upload needs no device buffer of its own: DeepSpeed copies each
       * parameter's shard to the device just before the all-gather and frees
       * the copy once it is in the gather's flat buffer
       * (partition_parameters.py, all_gather_coalesced), the executor uploads
       * it straight into the gather slot (exec/runtime.c zero3_gather) */
      st->host += st->weights;
      st->weights = 0;
    }
    st->activation_per_layer = act_block;
    st->activation_per_mb = act_mb;
    st->in_flight = px_memory_in_flight(plan, r);
    st->activations = px_memory_peak_activations(plan, r, chunk_act, chunk_w);
    if (exec) {
      /* the program's order walked with each op's own transient on the
       * level before it (not the largest transient of any chunk on the
       * steady-state peak: interleaved, that overcounts a rank whose
       * chunks' transients and holdings differ) */
      st->activations = px_schedule_peak_held(plan, r, held, NULL);
    } else {
      st->activations += stage_transient(model, plan, max_blocks, last, head_acts, e, s, b, titan_ring && max_blocks > 0 ? cp_kv : 0);
    }
    /* Buffers: p2p send and receive of one activation (and gradient) per
     * neighbour; the DP gradient bucket; ZeRO-3 gather of two layers
     * (current + prefetch). The logits are counted with the LM head's
     * activations. */
    double msg = e * s * b * h / (plan->seq_parallel ? plan->tp : 1);
    int neighbours = (first ? 0 : 1) + (last ? 0 : 1);
    st->buffers = st->act_buffers = 2.0 * msg * neighbours;
    /* ZeRO-3 by layer (common/zero3.h: dp·cp > 1, the experts alone over
     * edp > 1, or the parameters offloaded) */
    gboolean by_layer = px_zero3_by_layer(model, plan);
    /* (with dp·cp 1 and the parameters offloaded the gradients still pass
     * through the bucket into their partition, a partition of everything) */
    gboolean poff = plan->offload == PX_OFFLOAD_OPTIMIZER_PARAMS;
    /* PyTorch FSDP (the fsdp stack: torch 2.1 FULL_SHARD, llm-foundry's
     * fsdp_wrap_fn making each block a unit and leaving the embedding,
     * positions, final norm and tied head to the root unit), from
     * torch/distributed/fsdp/_runtime_utils.py:
     * - the gathered parameters of two blocks (current + prefetch) and of the
     *   root, which FULL_SHARD does not free after the forward
     *   (_post_forward_reshard: `not state._is_root`), so it stays gathered
     *   through the backward;
     * - the root's unsharded gradient, written by the tied head's backward
     *   at the start of the backward and reduced only in the root's
     *   post-backward hook at its end;
     * - one block's unsharded gradient as autograd computes it (the
     *   parameters' compute dtype) and, when the reduce dtype is wider
     *   (Composer's mixed precision DEFAULT: fp32), its copy in that dtype:
     *   _post_backward_hook's `flat_param.grad.to(handle._reduce_dtype)`,
     *   both held until the reduce-scatter is issued (the first stays
     *   referenced as autograd_computed_grad and is record_stream'ed to the
     *   post-backward stream);
     * in place of a DDP bucket and of two gathered copies of the largest
     * layer (the embedding, for small models). */
    gboolean fsdp_units = plan->stack == PX_STACK_FSDP && by_layer && !poff && max_block > 0;
    /* torchtitan's FSDP2 (apply_fsdp, models/llama3/infra/parallelize.py:
     * fully_shard on tok_embeddings, on every block and on [norm, output],
     * MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)), each
     * FSDPParamGroup.post_backward reducing its unit's gradients through
     * foreach_reduce (torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py
     * at 010ae4a8, _fsdp_param_group.py at 002a76fb):
     * - the unit's unsharded gradients as autograd computed them (the
     *   parameters' compute dtype), one tensor per parameter, in place of a
     *   DDP bucket: FSDP2 has none;
     * - the reduce-scatter input, reduce_scatter_comm.allocate((numel,),
     *   dtype=reduce_dtype) on the compute stream, into which
     *   foreach_reduce_scatter_copy_in (torch._chunk_cat, widening bf16 to
     *   fp32) copies them before unsharded_grads.clear() frees them: G bytes
     *   per element of the unit, whatever the dtypes (FSDP2 always
     *   concatenates; FSDP1's copy exists only when the dtype widens). The
     *   group keeps it (comm_ctx.reduce_scatter_state) while the
     *   reduce-scatter runs on its own stream, through the next unit's
     *   backward, until the next post_backward waits for that reduce-scatter
     *   and drops it before its own foreach_reduce allocates: one copy at a
     *   time, beside the next unit's unsharded gradients — at most
     *   (E + G) x the largest unit, the [norm, output] unit for Llama 3's
     *   128256-token vocabulary, reduced at the start of the backward with
     *   every activation still held;
     * the reduce-scatter output (numel / dp in reduce_dtype, on the
     * reduce-scatter stream) becomes the sharded gradient itself (fp32: the
     * orig dtype, no cast), counted with the gradients; with gradient
     * accumulation its later copies are added in and freed (1/dp of a unit,
     * left out). The two gathered units (current + prefetch) as below. */
    gboolean titan_units = plan->stack == PX_STACK_TORCHTITAN && data > 1 && plan->zero >= 1 && !poff;
    if (fsdp_units) {
      double root = (double)(params - block_params), G = px_cost_grad_reduce_bytes(plan);
      st->buffers += wb * (2.0 * (double)max_block + root) + gb * root + (gb + (G > gb ? G : 0)) * (double)max_block;
    } else if (titan_units) {
      double unit = (double)MAX(max_layer, head_unit), G = px_cost_grad_reduce_bytes(plan);
      st->buffers += (gb + G) * unit;
      if (by_layer) st->buffers += 2.0 * wb * (double)max_layer;
    } else {
      if ((data > 1 || (by_layer && poff)) && plan->zero >= 1) st->buffers += gb * MIN(bucket_elems, P);
      if (by_layer) st->buffers += 2.0 * wb * (double)max_layer;
    }
    /* the ring's K/V blocks, on every rank holding a transformer block */
    if (max_blocks > 0) {
      st->cp_kv_buffers = cp_kv;
      if (!titan_ring) {
        st->buffers += cp_kv;
        st->act_buffers += cp_kv;
      }
      /* the executor's half runs: the fp32 accumulator of the ring's merges */
      st->cp_out_acc = cp_acc;
      st->buffers += cp_acc;
      st->act_buffers += cp_acc;
    }
    /* FP8 (Transformer Engine, is_first_microbatch caching): each GEMM weight
     * cast once per step to FP8 and kept with its transpose (Hopper's FP8
     * GEMMs take only the TN layout, so the dgrad needs W^T in FP8): 2 B per
     * GEMM parameter; under ZeRO-3 only the two gathered layers have copies.
     * Plus every GEMM's scaling state. Not on the torchtitan stack: torchao's
     * Float8Linear (the December 2024 benchmarks' torchao eab345c,
     * torchao/float8/float8_linear.py forward) casts the weight in every call
     * (cast_weight_to_float8_t, nothing cached) and with dynamic scaling
     * keeps no amax history (delayed scaling's buffers live in
     * StatefulFloat8Linear since torchao 7618c26, 2024-12-19): the fp8 weight is
     * one linear's transient, made again in the backward. */
    if (plan->precision == PX_PREC_FP8 && plan->stack != PX_STACK_TORCHTITAN) {
      st->fp8_weights = 2.0 * (by_layer ? 2.0 * fp8_max_layer : fp8_params);
      st->fp8_meta = gemms * px_memory_fp8_meta_per_gemm();
    }
    /* MoE: one layer's dispatch / combine all-to-all send and receive buffers */
    if (moe_held) {
      double a2a = px_moe_buffer_bytes(model, plan) * e_scale;
      st->buffers += a2a;
      st->act_buffers += a2a;
    }
    st->workspace = plan->workspace_bytes;
    st->total = st->weights + st->gradients + st->optimizer + st->fp8_weights + st->fp8_meta + st->activations +
                st->buffers + st->workspace;
    if (st->total > mem->peak) {
      mem->peak = st->total;
      mem->peak_stage = r;
    }
  }
  mem->fits = mem->capacity <= 0 || mem->peak <= mem->capacity;
  return mem;
}

void px_memory_free(PxMemory *mem) {
  if (!mem) return;
  g_free(mem->stages);
  g_free(mem);
}
