/* cost.h — durations of every instruction of a program, from the model, the
 * cluster and the plan. The event engine (sim/) consumes a PxCostTable; the
 * ideal table (forward 1, backward-input 1, backward-weight 1, no
 * communication) checks the schedule formulas. Seconds. */
#pragma once
#include <glib.h>
#include "model.h"
#include "plan.h"
#include "cluster.h"
#include "partition.h"

G_BEGIN_DECLS

typedef struct {
  int pp, vpp, parts;
  /* per part (model chunk), one micro-batch, one GPU of that stage */
  double *fwd;          /* (parts) forward, TP collectives included */
  double *bwd_input;    /* (parts) backward w.r.t. inputs (+ recompute forward) */
  double *bwd_weight;   /* (parts) backward w.r.t. weights; full backward = input + weight */
  double *tp_comm_fwd;  /* (parts) share of fwd spent in TP collectives (for the breakdown) */
  double *tp_comm_bwd;  /* (parts) share of bwd_input+bwd_weight spent in TP collectives */
  double *p2p_act;      /* (parts) sending part k's output activation to part k+1 */
  double *p2p_grad;     /* (parts) sending part k's input gradient to part k-1 */
  double *gather;       /* (parts) ZeRO-3: the first layer's fetch before the chunk's first use (0 otherwise) */
  double *gather_pass;  /* (parts) ZeRO-3: fetching all the chunk's parameters for one forward or one
                           backward pass (all-gather, + PCIe with offloaded parameters); overlapped
                           with the pass, its excess is already in fwd / bwd_input + bwd_weight */
  double *p2p_bytes;    /* (parts) bytes of one activation / gradient message out of part k */
  double *reduce_pass;  /* (parts) ZeRO-3 with overlap: the chunk's gradient reduce-scatter each
                           backward pass runs beside its gathers (its excess is in bwd_*) */
  double *gather_pcie;  /* (parts) ZeRO-3: the PCIe share of gather_pass (offloaded parameters; no SMs) */
  double *gather_cast;  /* (parts) ZeRO-3: compute each gathered pass adds before its gathers (FSDP's
                           fp32 -> 16-bit shard cast), in fwd and bwd_input once each */
  double coll_sm_share; /* share of the SMs a collective on the (first stage's) DP group holds while it
                           runs (px_cost_collective_sm_share_link): ZeRO-3's fold, and the engine's
                           overlapped DP reduction beside the compute stream (engine.c SmHold) */
  double coll_gemm_waves; /* the waves a persistent GEMM runs in beside such a collective
                             (px_cost_persistent_waves: 2 on a GPU with persistent GEMMs, else 1) */
  double *gemm_fwd;     /* (parts) of fwd, the weight GEMMs' time (the share a persistent GEMM's waves slow) */
  double *gemm_bwd;     /* (parts) of bwd_input + bwd_weight, the weight GEMMs' time (with full recompute's) */
  /* per pipeline rank */
  double *dp_reduce;    /* (pp) DP gradient all-reduce / reduce-scatter of the whole rank */
  double *tied_reduce;  /* (pp) tied-embedding gradient all-reduce (first and last stage) */
  double *optimizer;    /* (pp) optimizer step (+ ZeRO all-gather of updated params, offload copies) */
  double *load;         /* (pp) loading a micro-batch (first and last stage) */
  double *dp_bytes;     /* (pp) bytes each GPU sends in the DP reduction */
  double *edp_reduce;   /* (pp) of dp_reduce, the routed experts' reduction over their edp group (MoE;
                           0 otherwise): a dense bucket's share is of dp_reduce less this, an expert
                           bucket's of this (buckets.h, sim/engine.c) */
  double *edp_bytes;    /* (pp) of dp_bytes, the routed experts' */
  double *dp_lat;       /* (pp) the latency term of one collective of the dense reduction (its α part;
                           0 with a measured curve): a bucket is its own collective, so it costs this
                           plus its share of the rest (sim/engine.c) */
  double *param_gather; /* (pp) Megatron-Core's distributed optimizer: the all-gather of part 0's dense
                           parameters as one collective, on part 0's rank (0 otherwise); the engine
                           holds the step's first forward of part 0 for what its buckets' gathers
                           do not hide (px_cost_param_gather_exposed) */
  double *param_gather_lat; /* (pp) its latency term, paid by every bucket's gather */
  /* FLOPs for MFU/HFU */
  double model_flops_per_step;     /* whole cluster, one step, no recompute */
  double hardware_flops_per_step;  /* with recompute */
  double peak_flops;               /* per GPU, for the plan's precision */
  gboolean overlap_dp;             /* DP reduction may overlap backward */
  gboolean p2p_blocking;           /* the compute stream waits for its own sends */
  gboolean p2p_rendezvous;         /* a send larger than p2p_eager_bytes starts only once its receive is posted */
  double p2p_eager_bytes;          /* the most a send moves before its receive is posted (NCCL's buffer) */
  PxAttention attention;           /* the attention kernel costed */
  int grad_reduce_bytes;           /* bytes per gradient element in the DP reduction */
  double *cp_comm_fwd;  /* (parts) context parallelism: ring K/V p2p exposed beyond the attention blocks, forward */
  double *cp_comm_bwd;  /* (parts) the same in the backward (K/V with dK/dV, and dK/dV's last hop home) */
} PxCostTable;

/* When a stack overlaps the DP gradient reduction with the backward. */
typedef enum {
  PX_OVERLAP_NONE,         /* after the whole backward */
  PX_OVERLAP_ALWAYS,       /* in buckets during the backward */
  PX_OVERLAP_ZERO3,        /* ZeRO-3 always, otherwise only with a bucket size */
  PX_OVERLAP_BUCKET_SIZE,  /* only when the plan gives bucket_bytes */
} PxOverlap;

/* What a software stack fixes (docs/cost.md names the framework files). */
typedef struct {
  PxStack stack;
  int grad_bytes;          /* gradient reduction dtype bytes (0: the activation dtype) */
  PxOverlap overlap;       /* DP reduction overlap */
  double bucket_elems;     /* default bucket (elements; 0: one per layer, as FSDP) */
  double optimizer_bytes;  /* HBM bytes per parameter of the optimizer step (0: fused Adam) */
  PxAttention attention;   /* default attention kernel (16-bit precisions) */
  gboolean eager_layernorm; /* its LayerNorms are PyTorch's native layer_norm kernels, run eagerly: charged
                             * at the cluster's eager_layernorm_efficiency_* where it gives them */
} PxStackProfile;
const PxStackProfile *px_stack_profile(PxStack s);
/* The plan's attention kernel (its own, else the stack's; unfused for fp32). */
PxAttention px_cost_attention(const PxPlan *plan);
/* Whether the DP reduction overlaps the backward under the plan's stack. */
gboolean px_cost_overlap_dp(const PxPlan *plan);
/* Bytes per gradient element the DP reduction moves under the plan's stack. */
int px_cost_grad_reduce_bytes(const PxPlan *plan);

#define PX_COST_ERROR (px_cost_error_quark())
GQuark px_cost_error_quark(void);
typedef enum {
  PX_COST_ERROR_INVALID,   /* a rate the model needs is missing (0 peak, 0 bandwidth) or shapes disagree */
} PxCostError;

/* The link a group of ranks communicates over: NVLink when every rank of the
 * group sits on one node (same floor(rank / gpus_per_node)), the network
 * otherwise. */
typedef struct {
  double bw;        /* bytes/s per GPU, one direction */
  double lat;       /* s, the alpha of the alpha-beta model */
  gboolean intra;   /* TRUE: NVLink inside a node */
  const PxBusbwCurve *curve; /* the link's measured bus bandwidth by size (cluster.h); NULL or empty: alpha-beta */
} PxLink;

/* The bus bandwidth a collective of `bytes` (the whole buffer) achieves on
 * l: its curve's, interpolated linearly in log size and log busbw between
 * points, below the first point busbw(first) x bytes / first (the first
 * point's time: latency-bound) and above the last point the last; without a
 * curve 0 (the caller uses alpha-beta). */
double px_cost_curve_busbw(const PxLink *l, double bytes);

/* Alpha-beta collective times, bytes = the whole buffer (the size each rank
 * holds before an all-reduce / reduce-scatter, after an all-gather). n ranks. */
double px_cost_allreduce_ring(double bytes, int n, const PxLink *l);  /* 2(n-1)a + 2(n-1)/n B/bw */
double px_cost_allreduce_tree(double bytes, int n, const PxLink *l);  /* 2 ceil(log2 n) a + 2 B/bw */
double px_cost_allreduce(double bytes, int n, const PxLink *l);       /* min of the two, as NCCL's tuner */
double px_cost_reduce_scatter(double bytes, int n, const PxLink *l);  /* (n-1)a + (n-1)/n B/bw */
double px_cost_allgather(double bytes, int n, const PxLink *l);       /* (n-1)a + (n-1)/n B/bw */
double px_cost_p2p(double bytes, const PxLink *l);                    /* a + B/bw */

/* All-to-all (NCCL's send/recv pairs, nccl-tests alltoall) where every rank
 * sends `bytes` in all (1/n to each member, its own share staying): n ranks,
 * k of them on each node. Inside a node (k = n): (n-1) a + (n-1)/n B / NVLink
 * busbw. Across nodes the (n-k)/n that leaves the node crosses the GPU's own
 * NIC while (k-1)/n goes over NVLink, at once: (n-1) a_net + max((k-1)/n B /
 * NVLink, (n-k)/n B / NIC busbw). */
double px_cost_alltoall(const PxCluster *cluster, double bytes, int n, int k);

/* Link of the group of n global ranks. */
PxLink px_cost_group_link(const PxCluster *cluster, const int *ranks, int n);
/* The groups of a plan, the slowest over the replicas (e.g. all dp copies of a
 * stage's TP group): TP group of pipeline rank `stage`, DP group of `stage`,
 * and the p2p link from pipeline rank `from` to `to`. */
PxLink px_cost_tp_link(const PxCluster *cluster, const PxPlan *plan, int stage);
PxLink px_cost_dp_link(const PxCluster *cluster, const PxPlan *plan, int stage);
PxLink px_cost_p2p_link(const PxCluster *cluster, const PxPlan *plan, int from, int to);
/* The CP ring's link on pipeline rank `stage`: every hop of the ring sends
 * at once, so a ring spanning nodes is as slow as its hop across them, one
 * GPU's NIC (p2p, no hierarchical rings); NVLink when the group is on a node. */
PxLink px_cost_cp_link(const PxCluster *cluster, const PxPlan *plan, int stage);
/* Context parallelism's exposed ring time for one block, one micro-batch
 * (seconds), given its attention core's forward and backward compute:
 * forward cp - 1 steps each passing a K/V block (px_memory_cp_kv_block)
 * while one attention block of attn_fwd / cp computes, exposed
 * (cp - 1) max(0, p2p(K/V) - attn_fwd / cp); backward cp - 1 steps passing
 * K/V and dK/dV, (cp - 1) max(0, p2p(2 K/V) - attn_bwd / cp), plus the last
 * hop of dK/dV home, p2p(K/V), exposed. 0 with cp = 1. Under --stack
 * torchtitan torch's ring instead (px_cost_titan_cp): forward
 * max(0, AG - attn_fwd / cp), backward max(0, AG - attn_bwd / cp) +
 * (cp - 1) max(0, hop - attn_bwd / cp) + hop, AG the K/V all-gather, hop
 * one fp32 dK/dV permute. */
void px_cost_cp_ring(const PxModel *model, const PxPlan *plan, const PxLink *cp_link, double attn_fwd,
                     double attn_bwd, double *fwd_exposed, double *bwd_exposed);
/* torch's context_parallel as torchtitan 9dec370 runs it (--stack
 * torchtitan, cp > 1; torch/distributed/tensor/experimental/_attention.py,
 * _templated_ring_attention and _templated_ring_attention_backward, with
 * torchtitan's default rotate method 'allgather'): per block and micro-batch
 * on CP rank cp - 1 (every off-diagonal step on the full local q, the
 * costliest), what the ring runs besides its flash kernels, op by op as the
 * code writes it, each step's merge one fused kernel under plan->compile
 * (docs/cost.md section 2, "Context parallelism"): bytes through HBM and kernels
 * forward and backward (the merges, the fp32 gradient accumulation, the
 * copies), and the communicated bytes: the K/V all-gather's whole buffer (cp
 * ranks' K and V after repeat_kv, E bytes) and one dK/dV hop (fp32). All 0
 * with cp = 1 or another stack. */
typedef struct {
  double fwd_bytes, bwd_bytes;
  int fwd_kernels, bwd_kernels;
  double kv_gather_bytes; /* the all-gather's output, all ranks' K and V */
  double dkv_bytes;       /* one permute of dK and dV, fp32, per rank */
  /* the ring's own tensors alive at once at its forward's and its backward's
   * peak on that rank, bytes (Python's lifetimes, eager; the memory model's
   * ring buffers on this stack, px_memory_cp_kv_buffers; docs/memory.md,
   * "Context parallelism") */
  double fwd_buffers, bwd_buffers;
} PxTitanCp;
void px_cost_titan_cp(const PxModel *model, const PxPlan *plan, PxTitanCp *out);

/* Dense peak FLOP/s of one GPU for the precision (bf16/fp16 tensor core, fp32;
 * fp8: the FP8 tensor-core rate, which only the GEMMs run at: attention,
 * the other kernels and MFU use bf16's, see px_cost_mfu_peak). */
double px_cost_peak_flops(const PxCluster *cluster, PxPrecision prec);
/* Fraction of peak of `batch` (m x k) @ (k x n) GEMMs: gemm_eff times the
 * useful share of the tile slots launched (tile and wave quantisation over the
 * cluster's SMs; split-k when the tiles do not fill the SMs), times
 * k' / (k' + gemm_k_overhead) with k' the k of one split (each tile's fixed
 * cost: pipeline fill and epilogue). */
double px_cost_gemm_efficiency(const PxCluster *cluster, double batch, double m, double n, double k);
/* Share of its asymptotic rate that fused (flash) attention reaches on
 * sequences of `seq` tokens: seq / (seq + flash_seq_half); 1 when unset. */
double px_cost_flash_seq_factor(const PxCluster *cluster, double seq);
/* Share of the SMs an NCCL collective takes from the compute it overlaps:
 * collective_sms / sms (at most 1); 0 when either is unset. */
double px_cost_collective_sm_share(const PxCluster *cluster);
/* The same for a collective on link l: a group inside one node (l->intra)
 * holds collective_sms_intra SMs (NCCL's rings over NVLink alone: 24
 * channels on 8 x A100 or 8 x H100, against 16 across nodes; the presets
 * name the logs), where the cluster gives it; otherwise collective_sms. */
double px_cost_collective_sm_share_link(const PxCluster *cluster, const PxLink *l);
/* Share of the SMs `held` SMs are: held / sms (at most 1); 0 when either is
 * unset. px_cost_collective_sm_share is this of collective_sms. */
double px_cost_sm_share(const PxCluster *cluster, int held);
/* The waves a persistent GEMM (one CTA per SM, cluster gemm_persistent) runs
 * in while a kernel holds `share` of the SMs: its sms CTAs on the
 * (1 - share) sms left, ceil(1 / (1 - share)) (2 for any share in (0, 1/2]);
 * 1 without persistent GEMMs or without a share (PyTorch issue #143988 and
 * pull request #147966, docs/cost.md section 3). */
double px_cost_persistent_waves(const PxCluster *cluster, double share);
/* The share of a pass's time that a kernel holding `share` of the SMs takes
 * from it while it runs, when `gemm_frac` of the pass is GEMMs that run in
 * `waves` waves meanwhile and the rest on the (1 - share) of the SMs left:
 * 1 - 1 / (gemm_frac waves + (1 - gemm_frac) / (1 - share)); `share` itself
 * when waves <= 1. px_cost_pass_exposed's share. */
double px_cost_overlap_share(double share, double gemm_frac, double waves);

/* ---- TP communication overlap (Transformer Engine userbuffers) ----
 * docs/cost.md "TP communication overlap". TE 1.14 (the NeMo 25.02 manifest's
 * commit 3b2a7b00), transformer_engine/pytorch/module/base.py initialize_ub,
 * common/comm_gemm_overlap/comm_gemm_overlap.cpp. */
typedef enum {
  PX_UB_RING_EXCHANGE, /* CommOverlapP2PBase::split_overlap_ag: the GEMM in tp chunks of T/tp tokens, each
                          chunk sent on to the next rank by the copy engines while the next one computes */
  PX_UB_PIPELINE,      /* CommOverlapBase::split_overlap_rs: the GEMM in num_splits chunks of its output
                          columns, chunk i reduce-scattered (num_sm SMs) while chunk i+1 computes */
  PX_UB_BULK,          /* CommOverlapBase::bulk_overlap: one whole collective (num_sm SMs) beside one
                          whole GEMM it does not feed */
} PxUbMethod;
typedef struct {
  PxUbMethod method;
  int num_sm;             /* SMs the communication kernels hold (ring exchange: 1-thread flag kernels, the
                             copy engines move the data: none for the model) */
  int num_splits;         /* pipeline: chunks of the GEMM (ring exchange: tp, bulk: 1) */
  gboolean set_sm_margin; /* the GEMM runs on sms - num_sm SMs throughout (_math_sms) */
  gboolean aggregate;     /* ring exchange: one neighbour exchange first, then tp/2 steps of two chunks */
  int cga_size;           /* the communication kernels' cluster size (not in the cost; emitted configurations) */
} PxUbGemm;
typedef struct {
  PxUbGemm qkv_fprop, fc1_fprop;   /* all-gather of the norm output into the column-parallel GEMM */
  PxUbGemm proj_fprop, fc2_fprop;  /* the row-parallel GEMM into the reduce-scatter of its output */
  PxUbGemm proj_dgrad, fc2_dgrad;  /* all-gather of the output gradient into the row-parallel dgrad GEMM */
  PxUbGemm qkv_dgrad, fc1_dgrad;   /* bulk: all-gather of the norm output (for the wgrad) beside the dgrad GEMM */
  PxUbGemm qkv_wgrad, fc1_wgrad;   /* bulk: reduce-scatter of the dgrad output beside the wgrad GEMM */
} PxTpOverlapConfig;
/* The per-GEMM configuration of a plan's tp_overlap (NULL for none): TE's
 * defaults or NeMo's userbuffers configuration of that name. */
const PxTpOverlapConfig *px_tp_overlap_config(PxTpOverlap t);
/* Exposed time of a ring-exchange all-gather + GEMM: `steps` GEMM chunks of
 * `gemm_step` s each, the chunk for step i+1 arriving over `p2p_step` s while
 * step i computes (the copy engines: no SMs); `p2p_first` s before the first
 * chunk (aggregate's neighbour exchange; 0 otherwise):
 * p2p_first + (steps - 1) max(0, p2p_step - gemm_step). */
double px_cost_ub_ring_exposed(int steps, double gemm_step, double p2p_step, double p2p_first);
/* Exposed time of a pipelined GEMM + reduce-scatter: `splits` GEMM chunks of
 * `gemm_chunk` s, chunk i's reduce-scatter (`rs_chunk` s) beside chunk i+1 on
 * the communication kernels' `share` of the SMs (0 with set_sm_margin), the
 * last one after the GEMM: rs_chunk + max((splits-1)(rs_chunk - gemm_chunk),
 * share (splits-1) rs_chunk). */
double px_cost_ub_pipeline_exposed(int splits, double gemm_chunk, double rs_chunk, double share);

/* How much longer a pass of `compute` seconds takes beside `coll` seconds of
 * overlapped transfers, `coll_sms` of them NCCL collectives holding `share`
 * of the SMs: max(coll - compute, share * coll_sms), never below 0. The
 * cost table and the search fold ZeRO-3's per-pass gathers with it. */
double px_cost_pass_exposed(double compute, double coll, double coll_sms, double share);
/* Exposed time of one GEMM of `gemm` seconds launched just after a
 * collective of `coll` seconds that holds `share` of the SMs (Transformer
 * Engine's bulk overlaps): px_cost_pass_exposed(gemm, coll, coll, share)
 * when waves <= 1; a persistent GEMM in `waves` waves (px_cost_persistent_waves)
 * ends at gemm + min(coll, (waves - 1) gemm): max(coll - gemm, min(coll, (waves - 1) gemm)). */
double px_cost_gemm_beside_exposed(double gemm, double coll, double share, double waves);
/* Exposed time of Megatron-Core's parameter all-gathers at the step's first
 * forward (distributed optimizer with overlap_param_gather): n buckets in
 * forward order, gather[b] seconds of all-gather and fwd[b] seconds of
 * forward over bucket b's layers. The first gather is waited for before any
 * layer runs; bucket b's is dispatched when bucket b-1's forward starts and
 * runs beside it on NCCL's `share` of the SMs:
 * gather[0] + sum_{b>=1} max(gather[b], fwd[b-1] + share gather[b]) + fwd[n-1]
 * less sum fwd. */
double px_cost_param_gather_exposed(int n, const double *gather, const double *fwd, double share);
/* ZeRO-3's per-pass collectives folded into one part's compute, in place:
 * `cast` seconds of compute each gathered pass adds (FSDP's shard cast) go
 * into *fwd and *bwd_input; then `gather` seconds of parameter gathers
 * (`gather_pcie` of them the offloaded shard's PCIe crossing, not a
 * collective) beside the forward, the gathers and `reduce` seconds of
 * reduce-scatters beside the backward; the forward's exposed excess goes
 * into *fwd, the backward's half into each of *bwd_input and *bwd_weight.
 * The collectives hold `share` of the SMs; `gemm_fwd` and `gemm_bwd` seconds
 * of the passes are GEMMs that run in `waves` waves meanwhile
 * (px_cost_overlap_share; waves 1: the share alone).
 * The cost table and the search both fold with it. */
void px_cost_zero3_fold(double *fwd, double *bwd_input, double *bwd_weight, double gather, double gather_pcie,
                        double reduce, double cast, double share, double waves, double gemm_fwd, double gemm_bwd);
/* Time of `batch` (m x k) @ (k x n) GEMMs with elements of elem_bytes at the
 * precision's peak: roofline max(compute at that efficiency, bytes of A, B, C
 * over the achieved HBM bandwidth), plus one kernel overhead. */
double px_cost_gemm_time(const PxCluster *cluster, PxPrecision prec, double batch, double m, double n,
                         double k, int elem_bytes);
/* The peak MFU is reported against: the precision's, bf16's for fp8 (the
 * Llama 3 paper's "BF16 MFU"; FP8 runs report the same convention). */
double px_cost_mfu_peak(const PxCluster *cluster, PxPrecision prec);
/* Achieved HBM bandwidth (hbm_bw x hbm_eff), bytes/s. */
double px_cost_hbm_rate(const PxCluster *cluster);
/* The rate of the unfused attention core's s x s passes (its batched GEMMs'
 * score reads / writes and the softmax): hbm_bw x unfused_attention_efficiency,
 * or the achieved HBM rate when the cluster gives none. bytes/s. */
double px_cost_unfused_attn_rate(const PxCluster *cluster);
/* The achieved bandwidth, bytes/s, of a memory-bound op of class k (a value
 * outside 0 .. PX_N_OPC - 1: a kernel of no class), forward (dir 0) or
 * backward (1), as `stack` runs it on model d (may be NULL): the class's
 * calibrated bandwidth ([gpu] membound_bw_NAME_fwd|bwd) when the cluster
 * gives it; else, for a LayerNorm on a stack whose profile has
 * eager_layernorm (fsdp), hbm_bw x eager_layernorm_efficiency_fwd|bwd when
 * the cluster gives it; else px_cost_hbm_rate. Every memory-bound class
 * charge of the cost model reads its rate here (docs/cost.md 7, 8). */
double px_cost_class_rate(const PxCluster *cluster, PxStack stack, const PxModelDesc *d, PxOpClass k, int dir);
/* A memory-bound kernel of op class k moving `bytes` in `kernels` kernels,
 * forward (dir 0) or backward (1): bytes / px_cost_class_rate +
 * kernels x kernel_overhead. */
double px_cost_membound_class(const PxCluster *cluster, PxStack stack, const PxModelDesc *d, PxOpClass k, int dir,
                              double bytes, int kernels);
/* Bytes one memory-bound op of class k moves over T x width elements
 * (width: hidden for norms, residual adds and the embedding, the local FFN
 * width for the activation, the local vocabulary for the cross entropy),
 * forward (dir 0) or backward (1), and in *kernels (may be NULL) how many
 * kernels it is: the table of docs/cost.md section 2 (non-fsdp stacks). */
double px_cost_class_bytes(const PxModelDesc *d, PxOpClass k, int dir, double T, double width, int E, int *kernels);
/* The memory-bound kernels of one torchtitan Llama block (px_model_llama_block)
 * outside its GEMMs and SDPA, forward (dir 0) or backward (1), run eagerly or
 * under torch.compile per TransformerBlock (compiled): bytes[k] and
 * kernels[k] per op class k, index PX_N_OPC for the kernels of no class
 * (RoPE's, repeat_kv's). T: the rank's tokens through the attention and the
 * MLP; Tn: a norm's and a residual add's (T / tp with sequence parallelism);
 * widths are the model's over tp; E: activation bytes. Every kernel and its
 * source: docs/cost.md section 4, "torchtitan: eager and compiled kernels". */
typedef struct {
  double bytes[PX_N_OPC + 1];
  int kernels[PX_N_OPC + 1];
} PxTitanKernels;
void px_cost_titan_block(const PxModelDesc *d, gboolean compiled, int dir, double T, double Tn, int tp, int E,
                         PxTitanKernels *out);
/* torchtitan's RMSNorm (models/norms.py RMSNorm at 9dec370) run eagerly over
 * Tn x h elements, forward (dir 0) or backward (1): bytes, and its kernels
 * in *kernels (the final norm's, outside the compiled blocks, and the
 * blocks' when not compiled). */
double px_cost_titan_rmsnorm_eager(int dir, double Tn, double h, int E, int *kernels);
/* FLOPs the cost model counts for the unfused attention core's forward (QK^T
 * and PV, no causal halving): 4 b s^2 h / tp; its backward twice that. */
double px_cost_unfused_attn_flops(double b, double seq, double h, int tp);
/* Bytes per parameter of the stack's optimizer step (activations E, gradients
 * G bytes, the plan's precision): fused Adam's fp32 master, m, v read and
 * written (24) + the gradient read + the parameter written, or the stack's
 * own traffic (Megatron-LM's mixed-precision passes: fp16 and bf16 differ). */
double px_cost_optimizer_bytes(PxStack stack, PxPrecision prec, int E, int G);

/* One layer, one micro-batch, one GPU of its TP group: compute of the
 * forward, backward-input and backward-weight (GEMMs + memory-bound kernels +
 * attention, no recompute) and, separately, the forward and backward TP
 * collectives. Any pointer may be NULL. */
typedef struct {
  double fwd, bwd_input, bwd_weight;  /* compute, s */
  double tp_fwd, tp_bwd;              /* TP collectives, s */
  double gemm_fwd, gemm_bwd;          /* of fwd / bwd_input + bwd_weight: the weight GEMMs (cuBLAS), s */
  double recompute;                   /* what the checkpoint policy adds to bwd_input, s */
  double attn_fwd, attn_bwd;          /* the attention core's share of fwd / bwd_input (the CP ring overlaps them) */
  double ep_fwd, ep_bwd;              /* of tp_fwd / tp_bwd: an MoE block's all-to-all and expert-TP collectives, s */
  double moe_stats;                   /* of tp_fwd: an MoE block's load-balancing statistics all-reduces (TP, CP), s */
} PxLayerTimes;
void px_cost_layer_times(const PxModel *model, const PxLayer *layer, const PxCluster *cluster,
                         const PxPlan *plan, const PxLink *tp_link, PxLayerTimes *out);
/* Forward only (compute, TP collectives). */
void px_cost_layer_forward(const PxModel *model, const PxLayer *layer, const PxCluster *cluster,
                           const PxPlan *plan, const PxLink *tp_link,
                           double *compute, double *tp_comm);

PxCostTable *px_cost_table_new(const PxModel *model, const PxCluster *cluster, const PxPlan *plan,
                               const PxPartition *part, GError **error);
/* The ideal setting: T_F = 1, T_B = T_W = 1 (backward = 2 × forward), all
 * communication, load and optimizer 0. */
PxCostTable *px_cost_table_ideal(int pp, int vpp);
/* Every part with forward tf, backward-input tb, backward-weight tw; no
 * communication, load or optimizer (`parallax-sim bubble --costs`). */
PxCostTable *px_cost_table_uniform(int pp, int vpp, double tf, double tb, double tw);
void px_cost_table_free(PxCostTable *t);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxCostTable, px_cost_table_free)

G_END_DECLS
