/* cluster.h — the hardware a plan runs on: GPU, node, network. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

#define PX_CLUSTER_ERROR (px_cluster_error_quark())
GQuark px_cluster_error_quark(void);
typedef enum {
  PX_CLUSTER_ERROR_NOT_FOUND,
  PX_CLUSTER_ERROR_PARSE,
  PX_CLUSTER_ERROR_INVALID,
} PxClusterError;

/* Op classes whose memory-bound kernels the cost model can charge at their
 * own measured bandwidth (cost.c membound_class; `parallax-exec calibrate`
 * measures them at the model's shapes). INI keys: [gpu]
 * membound_bw_NAME_fwd / membound_bw_NAME_bwd, bytes/s against the bytes
 * docs/cost.md counts for the class; absent (0) = hbm_bw · hbm_efficiency. */
typedef enum {
  PX_OPC_NORM,       /* LayerNorm / RMSNorm (block and final) */
  PX_OPC_ACT,        /* GELU / SwiGLU */
  PX_OPC_RESIDUAL,   /* residual adds and their backward */
  PX_OPC_CE,         /* cross entropy over the logits */
  PX_OPC_EMBEDDING,  /* embedding gather / scatter-add */
  PX_N_OPC
} PxOpClass;
const char *px_op_class_name(PxOpClass k); /* "norm", "act", ... (the INI key's NAME) */

/* Achieved bus bandwidth against message size, as nccl-tests print it
 * (busbw column: the collective's bytes over its time, times 2(n-1)/n for an
 * all-reduce): n points, sizes ascending. */
#define PX_BUSBW_POINTS 24
typedef struct {
  int n;
  double bytes[PX_BUSBW_POINTS]; /* message size (the whole buffer), bytes */
  double busbw[PX_BUSBW_POINTS]; /* bytes/s */
} PxBusbwCurve;

typedef struct {
  char *name;
  char *gpu;                 /* e.g. "A100-SXM4-80GB" */
  char *calibrated_dtype;    /* [cluster] calibrated_dtype: the dtype `parallax-exec calibrate --dtype` measured
                              * the rates in, "f32", "bf16" or "f16"; NULL: not measured by calibrate (a
                              * preset or a hand-written profile). `run --compare` refuses a run of another
                              * dtype against it (docs/cost.md section 9) */
  gint64 gpu_memory;         /* bytes */
  double peak_fp32;          /* dense FLOP/s, no sparsity */
  double peak_tf32;
  double peak_fp16;
  double peak_bf16;
  double hbm_bw;             /* bytes/s */
  int gpus_per_node;
  int nodes;
  double intra_bw;           /* bytes/s per GPU, one direction (NVLink) */
  double intra_lat;          /* s */
  double intra_p2p_lat;      /* [node] p2p_latency: s of a pipeline send and receive inside a node when it
                              * differs from a collective's step (calibrate measures it); 0 = intra_lat */
  double inter_bw;           /* bytes/s per GPU, one direction (network) */
  double inter_lat;          /* s */
  double pcie_bw;            /* bytes/s host<->device, for offload */
  PxBusbwCurve intra_curve;  /* [node] busbw_curve_bytes / busbw_curve: achieved all-reduce bus bandwidth
                              * by message size inside a node (calibrate's table, or nccl-tests'); n 0: none,
                              * the alpha-beta model of bandwidth and latency */
  double cpu_adam_rate;      /* [node] cpu_adam_rate: parameters/s of one GPU's optimizer step on the host
                              * (offload; calibrate measures it); 0 = CPU_ADAM_RATE per node over its GPUs */
  gint64 host_memory;        /* bytes per node, for offload */
  /* Achieved rates (cost.c, docs/cost.md). 0 = unset = ideal: efficiency 1,
   * no wave quantisation, no launch overhead. INI keys in brackets. */
  int sms;                   /* [gpu] sms: streaming multiprocessors (GEMM waves) */
  int gemm_tile;             /* [gpu] gemm_tile: output tile edge of the GEMM kernels (default 128) */
  double gemm_eff;           /* [gpu] gemm_efficiency: best large GEMM / dense peak (MAMF) */
  double hbm_eff;            /* [gpu] hbm_efficiency: streaming kernels / hbm_bw */
  double flash_fwd_eff;      /* [gpu] flash_fwd_efficiency: causal FlashAttention forward / peak */
  double flash_bwd_eff;      /* [gpu] flash_bwd_efficiency: its backward / peak */
  double unfused_attn_eff;   /* [gpu] unfused_attention_efficiency: the unfused attention core's s x s
                              * passes (its batched GEMMs' score reads / writes, the softmax) / hbm_bw;
                              * 0 = hbm_efficiency (docs/cost.md section 2) */
  double kernel_overhead;    /* [gpu] kernel_overhead: s per kernel (launch + tail) */
  double intra_eff;          /* [node] busbw_efficiency: large all-reduce bus bandwidth / bandwidth */
  double inter_eff;          /* [network] busbw_efficiency: the same over the network */
  double peak_fp8;           /* [gpu] peak_fp8: dense FP8 tensor-core FLOP/s; 0 = the GPU has no FP8 */
  double gemm_eff_fp8;       /* [gpu] gemm_efficiency_fp8: best large FP8 GEMM / peak_fp8 (0 = ideal) */
  double gemm_k_overhead;    /* [gpu] gemm_k_overhead: a GEMM tile's fixed cost (pipeline fill, epilogue)
                              * in elements of k: efficiency x k / (k + this); 0 = none */
  double flash_seq_half;     /* [gpu] flash_seq_half: sequence length at which fused attention runs at
                              * half its asymptotic rate: rate x s / (s + this); 0 = none */
  int coll_sms;              /* [node] collective_sms: SMs an NCCL collective holds while it runs (one
                              * CTA per channel, not shared with compute); 0 = none */
  int coll_sms_intra;        /* [node] collective_sms_intra: the same for a collective whose group is
                              * inside one node (NCCL builds more rings over NVLink alone); 0 = collective_sms */
  gboolean gemm_persistent;  /* [gpu] gemm_persistent: the GPU's GEMM kernels (cuBLAS) are persistent, one CTA
                              * per SM working through the tiles in turn, so beside a kernel that holds SMs
                              * they run in two waves (cost.c px_cost_persistent_waves); FALSE = one CTA per
                              * tile, the SM share alone */
  /* Per-class rates measured by calibrate; 0 = unset (the defaults above). */
  double membound_bw[PX_N_OPC][2]; /* [gpu] membound_bw_NAME_fwd | _bwd: bytes/s, forward | backward */
  double optimizer_bw;       /* [gpu] membound_bw_optimizer: bytes/s against the optimizer's bytes per parameter */
  double attn_fwd_flops;     /* [gpu] attention_fwd_flops: unfused attention core, FLOP/s against its 4 b s^2 h */
  double attn_bwd_flops;     /* [gpu] attention_bwd_flops: its backward, FLOP/s against 8 b s^2 h */
  double eager_ln_eff[2];    /* [gpu] eager_layernorm_efficiency_fwd | _bwd: PyTorch's native layer_norm
                              * kernels (ATen, eager: what a stack with eager_layernorm runs) over hbm_bw,
                              * against the bytes docs/cost.md counts for a LayerNorm (forward 2, backward 5
                              * passes); 0 = unset, the norm class's rate (membound_bw_norm_*, else the HBM
                              * rate). A published measurement per GPU (the presets' headers) */
} PxCluster;

/* Preset name under configs/clusters ("dgx-h100") or an INI path. */
PxCluster *px_cluster_load(const char *name_or_path, GError **error);
PxCluster *px_cluster_load_ini(const char *path, GError **error);
PxCluster *px_cluster_copy(const PxCluster *c);
void px_cluster_free(PxCluster *cluster);
static inline int px_cluster_gpus(const PxCluster *c) { return c->gpus_per_node * c->nodes; }

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxCluster, px_cluster_free)

G_END_DECLS
