/* plan.h — a parallel layout: dp × pp × tp, ZeRO, checkpointing, micro-batching,
 * schedule, precision and rank order. */
#pragma once
#include <glib.h>
#include "model.h"
#include "cluster.h"

G_BEGIN_DECLS

#define PX_PLAN_ERROR (px_plan_error_quark())
GQuark px_plan_error_quark(void);
typedef enum {
  PX_PLAN_ERROR_PARSE,     /* malformed INI / JSON / flag value */
  PX_PLAN_ERROR_INVALID,   /* a rule of parallelism is broken */
  PX_PLAN_ERROR_NOT_FOUND,
} PxPlanError;

typedef enum {
  PX_SCHED_NAIVE,        /* model parallel, no micro-batching overlap */
  PX_SCHED_GPIPE,
  PX_SCHED_1F1B,
  PX_SCHED_INTERLEAVED,
  PX_SCHED_ZB_H1,
  PX_SCHED_ZB_H2,        /* zero bubble at (2p-1) micro-batches in flight (Qi et al. 2024) */
  PX_SCHED_ZB_V,         /* zero bubble, V-shaped two chunks per rank, 1F1B's memory */
  PX_SCHED_DUALPIPEV,    /* DeepSeek's DualPipe cut in half: V shape, overlapped F&B pairs */
} PxScheduleKind;

typedef enum { PX_CKPT_NONE, PX_CKPT_SELECTIVE, PX_CKPT_FULL } PxCheckpoint;
typedef enum { PX_OFFLOAD_NONE, PX_OFFLOAD_OPTIMIZER, PX_OFFLOAD_OPTIMIZER_PARAMS } PxOffload;
/* FP8: Transformer Engine's recipe (delayed scaling): GEMMs in FP8 on FP8 tensor
 * cores, everything else (activations between GEMMs, attention, weights,
 * gradients) in bf16, fp32 master weights (docs/cost.md, docs/memory.md). */
typedef enum { PX_PREC_FP32, PX_PREC_FP16, PX_PREC_BF16, PX_PREC_FP8 } PxPrecision;
typedef enum { PX_AXIS_TP, PX_AXIS_DP, PX_AXIS_PP } PxAxis;
/* The software the plan runs under (what overlaps, gradient dtype, optimizer,
 * attention kernel): see cost.h px_stack_profile and docs/cost.md. */
typedef enum {
  PX_STACK_PARALLAX,       /* this project's executor (default) */
  PX_STACK_MEGATRON_2021,  /* Megatron-LM as in Narayanan et al. 2021 */
  PX_STACK_MEGATRON_CORE,  /* Megatron-Core (2024) with TE */
  PX_STACK_DEEPSPEED,
  PX_STACK_FSDP,           /* PyTorch FSDP as llm-foundry/Composer drive it */
  PX_STACK_TORCHTITAN,     /* torchtitan: FSDP2 fully_shard per block, fused AdamW */
  PX_N_STACKS
} PxStack;
/* Attention kernel: DEFAULT is the stack's choice. */
/* flash: FlashAttention-2 (the cluster's flash efficiencies); flash1: FlashAttention
 * v1, half as fast (Dao 2023: FlashAttention-2 is about 2x FlashAttention), through
 * its varlen interface; triton: FlashAttention in Triton (flash_attn_triton.py, the
 * attn_impl of llm-foundry's MPT yamls in 2023), v1's rate on padded q, k, v views.
 * docs/cost.md "Attention". */
typedef enum { PX_ATTN_DEFAULT, PX_ATTN_FLASH, PX_ATTN_UNFUSED, PX_ATTN_FLASH1, PX_ATTN_TRITON } PxAttention;
/* Tensor-parallel communication overlap (Megatron-Core --tp-comm-overlap:
 * Transformer Engine's userbuffers pipelining the sequence-parallel
 * all-gather / reduce-scatter with the GEMMs beside them). The value names
 * the per-GEMM configuration handed to TE's initialize_ub: its defaults, or
 * one of NeMo's userbuffers configurations (cost.h px_tp_overlap_config;
 * docs/cost.md "TP communication overlap"). */
typedef enum {
  PX_TPO_NONE,              /* collectives exposed (Megatron-Core's default) */
  PX_TPO_TE,                /* TE initialize_ub's default ub_cfgs (ub_cfgs None) */
  PX_TPO_NEMO_H8192_TP4,    /* NeMo userbuffers_bf16_h100_h8192_tp4_mbs1_seqlen8192 (Llama 3 70B) */
  PX_TPO_NEMO_H16384_TP8,   /* NeMo userbuffers_bf16_h100_h16384_tp8_cp2_mbs1_seqlen8192 (Llama 3.1 405B) */
  PX_N_TPO
} PxTpOverlap;

typedef struct {
  int dp, tp, pp;
  int vpp;                 /* virtual stages (model chunks) per pipeline rank; 1 unless interleaved,
                              2 for the V schedules (zb-v, dualpipev; set by px_plan_validate) */
  int mbs;                 /* micro-batch size (sequences) */
  int gbs;                 /* global batch (sequences) */
  int m;                   /* micro-batches per step per pipeline = gbs / (mbs * dp) (derived) */
  int seq;                 /* sequence length (0: the model's max_seq) */
  PxScheduleKind schedule;
  char *partition;         /* "uniform", "parameters", "type:REGEX", "optimal", "profile" */
  int zero;                /* 0..3 */
  PxOffload offload;
  PxCheckpoint ckpt;
  int ckpt_interval;       /* layers per checkpoint for full recompute (DeepSpeed interval), ≥1 */
  gboolean seq_parallel;
  PxPrecision precision;
  PxAxis order[3];         /* rank order, innermost first; default tp, dp, pp */
  double workspace_bytes;  /* per-GPU allowance for CUDA context, cuBLAS workspace, fragmentation */
  double bucket_bytes;     /* DP gradient-reduction bucket size (DeepSpeed reduce_bucket_size) */
  PxStack stack;           /* software stack (default parallax) */
  PxAttention attention;   /* attention kernel (default: the stack's) */
  int grad_reduce_bytes;   /* bytes per gradient element in the DP reduction (0: the stack's) */
  int cp;                  /* context-parallel degree (1: none). A grid axis inside DP, as Megatron-Core's
                              order tp-cp-(ep)-dp-pp places it: the data axis of the rank order has
                              dp·cp members, cp innermost. Each CP rank holds seq/cp tokens of every
                              sequence (chunks i and 2cp-1-i); gradients are reduced (and ZeRO
                              shards) over dp·cp. docs/design.md "Grid". */
  /* Mixture of experts (common/moe.h, docs/moe.md): the experts' own grid over
   * the ranks of each pipeline stage, etp × ep × edp (Megatron-Core's MoE
   * parallel folding); edp = world / (etp · ep · pp) is derived. */
  int ep;                  /* expert parallelism: experts split over ep ranks (default 1) */
  int etp;                 /* expert tensor parallelism: each expert's FFN over etp ranks (0: = tp) */
  double imbalance;        /* the busiest expert's tokens / the balanced share (default 1) */
  PxTpOverlap tp_overlap;  /* TP communication overlap (needs tp > 1, sequence parallelism, megatron-core,
                              the TP group on one node); none by default */
  gboolean compile;        /* torch.compile per TransformerBlock (torchtitan's training.compile; needs
                              --stack torchtitan and a Llama block, px_model_llama_block): the block's
                              element-wise kernels fused as Inductor fuses them (docs/cost.md section 4).
                              Off by default, as torchtitan's --training.compile (store_true) is */
} PxPlan;

/* Defaults: everything 1, 1f1b, parameters, ZeRO 0, bf16, no checkpointing,
 * order tp,dp,pp, workspace 2 GiB... see plan.c */
void px_plan_init(PxPlan *plan);
void px_plan_clear(PxPlan *plan);
void px_plan_copy(PxPlan *dst, const PxPlan *src);
/* Load keys from a [plan] group of a GKeyFile INI (missing keys keep their
 * value). Only [plan] and the keys of one table (px_plan_ini_key) are
 * accepted: any other is refused with one line naming it. */
gboolean px_plan_load_ini(PxPlan *plan, const char *path, GError **error);
/* What a plan file says it was made for ([plan] model, cluster, nodes; the
 * command line's --model, --cluster, --nodes win: sim/options.c). */
typedef struct {
  char *model;     /* NULL: none */
  char *cluster;   /* NULL: none */
  int nodes;       /* -1: none */
  gboolean has_dp; /* the file gives dp */
} PxPlanIniTargets;
/* px_plan_load_ini, and into *targets (may be NULL; cleared with
 * px_plan_ini_targets_clear) the file's target keys, read from the same
 * table in the same pass. */
gboolean px_plan_load_ini_targets(PxPlan *plan, const char *path, PxPlanIniTargets *targets, GError **error);
void px_plan_ini_targets_clear(PxPlanIniTargets *targets);
/* The i-th [plan] key the loader reads (and accepts), NULL past the last. */
const char *px_plan_ini_key(guint i);
/* What the command line says about the values a ds_config may leave "auto"
 * (the Hugging Face Trainer style); 0 / FALSE: not given. */
typedef struct {
  int mbs;                   /* --mbs: train_micro_batch_size_per_gpu */
  int gbs;                   /* --gbs or --gbs-tokens: train_batch_size */
  gboolean precision_given;  /* --precision: bf16 / fp16 "enabled" */
  int hidden;                /* the model's hidden size: "auto" reduce_bucket_size = h² (the Trainer's rule) */
} PxDsOverrides;

/* DeepSpeed ds_config.json: batch sizes, ZeRO, offload, precision,
 * activation checkpointing. dp must already be set (from the command line).
 * Command-line values replace the file's before DeepSpeed's batch rule
 * (train_batch_size = micro × accumulation × dp) is checked; an "auto" the
 * command line does not resolve is refused, naming the key. cli may be NULL. */
gboolean px_plan_load_deepspeed(PxPlan *plan, const char *path, const PxDsOverrides *cli, GError **error);
/* The one rule turning --gbs-tokens into a global batch, the same in plan,
 * simulate and search: n = tokens / seq sequences, rounded to the nearest
 * multiple of the largest power of two q ≤ n whose multiple lands within
 * PX_PLAN_GBS_TOKENS_TOLERANCE of n (q = 1, whole sequences, always does
 * for n ≥ 10), so that power-of-two dp·mbs divide it. 1M tokens at 8192 →
 * 128 (+4.9 %); 3.1M at 4096 → 768; 4M at 4096 → 1024. *deviation is the
 * relative change in tokens ((gbs·seq − tokens) / tokens). Refuses fewer
 * tokens than one sequence and batches above G_MAXINT. */
#define PX_PLAN_GBS_TOKENS_TOLERANCE 0.05
gboolean px_plan_gbs_from_tokens(double tokens, int seq, int *gbs, double *deviation, GError **error);

/* Write as INI that px_plan_load_ini reads back to the same plan. */
char *px_plan_to_ini(const PxPlan *plan);

/* The most compute passes (pipeline stages × model chunks × micro-batches) one
 * step may hold: the engine keeps every op of a step in memory (about 120 B
 * each, two or three ops per pass), so 2^21 passes is about 0.5 GB and half a
 * second of simulation; far beyond any published step (Llama 3 405B: pp 16,
 * vpp 8, m 16 = 2048), and a --gbs of 2^30 no longer runs for hours. */
#define PX_PLAN_MAX_PASSES (1 << 21)

/* The largest per-GPU size a plan takes (workspace allowance, gradient
 * bucket): 1 PiB, a thousand times any GPU's memory; 1e308 B was planned. */
#define PX_PLAN_MAX_BYTES 1125899906842624.0

/* Derive m and seq, and check every rule, naming the broken one:
 * "tp=3 does not divide 32 attention heads". cluster may be NULL. */
gboolean px_plan_validate(PxPlan *plan, const PxModel *model, const PxCluster *cluster,
                          GError **error);

/* Rank coordinates in the plan's rank order. world = dp·cp·tp·pp. With
 * cp > 1 the dp coordinate is the data coordinate d·cp + c (DP rank d, CP
 * rank c: CP sits inside DP), in [0, dp·cp); with cp = 1 it is the DP rank. */
int px_plan_world(const PxPlan *plan);
void px_plan_rank_coords(const PxPlan *plan, int rank, int *dp, int *tp, int *pp);
int px_plan_rank_of(const PxPlan *plan, int dp, int tp, int pp);
/* Ranks holding the same parameters: dp·cp (the gradient reduction's and
 * ZeRO's group, Megatron's data-parallel group "with context parallel"). */
int px_plan_data_ranks(const PxPlan *plan);
/* Tokens of one sequence on one CP rank: seq / cp. */
int px_plan_local_seq(const PxPlan *plan);

/* Bytes per element of activations / weights for the precision (2 or 4). */
int px_plan_act_bytes(const PxPlan *plan);

const char *px_schedule_name(PxScheduleKind k);
gboolean px_schedule_parse(const char *s, PxScheduleKind *out);
const char *px_ckpt_name(PxCheckpoint c);
gboolean px_ckpt_parse(const char *s, PxCheckpoint *out);
const char *px_offload_name(PxOffload o);
gboolean px_offload_parse(const char *s, PxOffload *out);
const char *px_precision_name(PxPrecision p);
gboolean px_precision_parse(const char *s, PxPrecision *out);
const char *px_axis_name(PxAxis a);
const char *px_stack_name(PxStack s);
gboolean px_stack_parse(const char *s, PxStack *out);
const char *px_attention_name(PxAttention a);
/* FlashAttention v1 / v2 and Triton's kernel: fused, 16-bit inputs only */
gboolean px_attention_fused(PxAttention a);
gboolean px_attention_parse(const char *s, PxAttention *out);
/* none, te, userbuffers_bf16_h100_h8192_tp4_mbs1_seqlen8192, userbuffers_bf16_h100_h16384_tp8_cp2_mbs1_seqlen8192
 * (the fp8_ names of the same NeMo configurations are accepted: they differ only in fp8_buf) */
const char *px_tp_overlap_name(PxTpOverlap t);
gboolean px_tp_overlap_parse(const char *s, PxTpOverlap *out);
/* --tp-overlap's stack rule (px_plan_validate's, and the search's for its
 * base plan): Transformer Engine's userbuffers under megatron-core only. */
gboolean px_plan_tp_overlap_stack_ok(const PxPlan *plan, GError **error);
#define PX_TP_OVERLAP_NAMES "none, te, userbuffers_bf16_h100_h8192_tp4_mbs1_seqlen8192, userbuffers_bf16_h100_h16384_tp8_cp2_mbs1_seqlen8192"
/* "tp,dp,pp" (innermost first) */
gboolean px_order_parse(const char *s, PxAxis order[3]);

/* The V schedules (zb-v, dualpipev) run two chunks per rank in a V: the
 * forward goes down the ranks on chunk 0 and back up on chunk 1. */
gboolean px_schedule_is_v(PxScheduleKind k);

/* THE map between parts (model chunks in layer order, 0 = the embedding) and
 * (pipeline rank, chunk on that rank), used by the partition, the program, the
 * simulator, the memory model and the executor alike:
 *  - V schedules: chunk 0 of rank s is part s, chunk 1 is part 2pp-1-s (the
 *    last rank holds the two middle parts; rank 0 the first and the last);
 *  - otherwise (Megatron interleaving; vpp = 1 is the plain pipeline): chunk c
 *    of rank s is part c·pp + s. */
int px_schedule_part_of(PxScheduleKind k, int pp, int stage, int chunk);
/* Its inverse: the rank and the chunk that run `part`. */
void px_schedule_part_place(PxScheduleKind k, int pp, int part, int *stage, int *chunk);

/* Analytic bubble fraction, idle / step time (every rank starts the step at
 * 0), for the plan's schedule with T_F = T_B = T_W per chunk and no
 * communication: gpipe/1f1b (p-1)/(m+p-1); interleaved (p-1)/(v*m+p-1);
 * zb-h1 (p-1)/(3m+p-1); zb-h2 (p-1)/(3m+p-1) for m >= 2p-1 (0 with optimizer
 * post-validation, see px_sim_result span); zb-v (p-1)/(6m+p-1) for
 * m >= 2p-1 (0 likewise); dualpipev (p-1)/(3m+p-1) for m >= 2p (DualPipe's
 * (p-1)(F&B+B-3W) idle with F&B = 3 T_F); naive (p-1)/p. See docs/schedules.md. */
double px_plan_bubble_fraction(const PxPlan *plan);
/* The same for one chunk's forward tf, backward-input tb and backward-weight
 * tw (GPipe, 1F1B and interleaved run tb + tw as one backward; their fraction
 * does not depend on the costs): zb-h1 idles (p-1)(tf + tb - tw), zb-h2
 * (p-1) max(tf, tf + tb - 2 tw) (Qi et al. 2024 §3.1, floored at the last
 * rank's wait (p-1) tf for its first input), both for tw <= min(tf, tb) (the
 * paper's setting), zb-v px_plan_zbv_idle, in a step of m·v·(tf + tb + tw)
 * busy + idle (v chunks per rank). NAN where there is no closed form:
 * zb-h1/zb-h2 with tw > min(tf, tb), dualpipev unless tf = tb >= tw (then
 * (p-1)(tf + 2 tb - tw), the DualPipe README's), zb-v with tb < tf, costs not
 * positive and finite (tw may be 0). */
double px_plan_bubble_fraction_costs(const PxPlan *plan, double tf, double tb, double tw);
/* ZB-V's idle time per rank in a step (step − busy, every rank starting at
 * 0; no communication, equal ranks, m >= 2p-1) for one chunk's forward tf,
 * backward-input tb and backward-weight tw, with tb >= tf (the backward-input
 * pass is at least a forward: the same GEMMs on the output gradient):
 *     X + (p-2) max(X, tw),  X = max(tb, 2 (tb - tw)),
 * that is (p-1) max(tb, 2(tb - tw)) when tw <= tb and tb + (p-2) tw when tw
 * > tb; (p-1) tf when tf = tb = tw (the step 6m tf + (p-1) tf of
 * px_plan_bubble_fraction). Qi et al. 2024 give ZB-V's bubble only for equal
 * passes (zero, §6) and as profiled rates (Table 8); this is the handcrafted
 * schedule's (common/schedule.c order_zb_v), checked against the engine's
 * timeline (tests/test_engine.c). NAN when tb < tf or p < 1. */
double px_plan_zbv_idle(int p, double tf, double tb, double tw);
/* The fewest micro-batches from which that formula is exact: zb-h1 p, zb-h2
 * and zb-v 2p-1, dualpipev 2p, the others 1 (interleaved: m divisible by p). */
int px_plan_bubble_exact_from(const PxPlan *plan);

G_END_DECLS
