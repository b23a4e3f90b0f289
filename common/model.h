/* model.h — the transformer a plan is made for: an ordered list of layers in
 * the manner of DeepSpeed LayerSpecs (embedding, N blocks, final norm, LM head).
 * Each layer lists its parameter tensors; the executor allocates exactly these. */
#pragma once
#include <glib.h>
#include "config.h"

G_BEGIN_DECLS

#define PX_MODEL_ERROR (px_model_error_quark())
GQuark px_model_error_quark(void);
typedef enum {
  PX_MODEL_ERROR_NOT_FOUND,  /* preset or file missing */
  PX_MODEL_ERROR_PARSE,      /* malformed INI / JSON */
  PX_MODEL_ERROR_INVALID,    /* a value out of range or inconsistent */
} PxModelError;

/* GELU: fc → GELU → proj. SWIGLU: down(SiLU(gate) · up). GEGLU: the same
 * gated MLP with GELU (Gemma); SWIGLU and GEGLU have the same tensors.
 * RELU2: fc → ReLU(x)² → proj, not gated (Nemotron-4; Hugging Face's
 * hidden_act "relu2"): GELU's tensors, its own element-wise cost (cost.c). */
typedef enum { PX_FFN_GELU, PX_FFN_SWIGLU, PX_FFN_GEGLU, PX_FFN_RELU2 } PxFfnKind;
typedef enum { PX_NORM_LAYERNORM, PX_NORM_RMSNORM } PxNormKind;
typedef enum { PX_POS_LEARNED, PX_POS_ROPE } PxPosKind;

/* The transformer description a model is built from. */
typedef struct {
  char *name;
  int layers;     /* transformer blocks L */
  int hidden;     /* h */
  int heads;      /* a */
  int kv_heads;   /* GQA: kv heads (== heads for MHA) */
  int ffn;        /* FFN inner size (4h for GPT, e.g. 11008 for Llama-2 7B) */
  int vocab;      /* V */
  int max_seq;    /* positions */
  PxFfnKind ffn_kind;
  PxNormKind norm;
  PxPosKind pos;
  gboolean bias;     /* linear and norm biases (GPT-2 yes, Llama no) */
  gboolean tied;     /* LM head shares the token embedding */
  gboolean dropout;  /* dropout after attention/MLP (stores masks; Korthikanti's counts assume it) */
  /* Zero in a description given to px_model_new means the default noted;
   * the model's own copy (PxModel.desc) holds the value used. */
  int head_dim;         /* per-head size (default hidden / heads; Gemma-7B: 256 with h = 3072, a = 16) */
  double rope_theta;    /* rotary base (default 10000) */
  double norm_eps;      /* epsilon of LayerNorm / RMSNorm (default 1e-5) */
  double rotary_pct;    /* share of head_dim that is rotated (default 1; GPT-NeoX 0.25) */
  int default_seq;      /* sequence length of a plan that states none (default max_seq) */
  int sliding_window;   /* attention window in tokens (0: full causal attention) */
  gboolean qkv_bias;    /* biases on the Q, K, V projection only (Qwen2); `bias` implies them */
  gboolean parallel_attn; /* attention and MLP both read the block input (GPT-NeoX, GPT-J) */
  gboolean rope_scaled; /* positions rescaled (HF rope_scaling: Llama-3.1 "llama3", longrope, ...) */
  gboolean embed_scale; /* embeddings multiplied by sqrt(hidden) (Gemma) */
  gboolean norm_offset; /* RMSNorm scales by (1 + weight) (Gemma) */
  /* Mixture of experts (docs/moe.md); experts = 0: every block is dense. An MoE
   * block's MLP is a router (E × h, softmax over the experts, top-k) feeding
   * `experts` routed experts of expert_ffn each (the MLP kind of ffn_kind, no
   * biases), plus shared_experts always-active experts of shared_ffn each. */
  int experts;            /* routed experts E per MoE block */
  int top_k;              /* experts each token is sent to (k ≤ E) */
  int expert_ffn;         /* FFN size of one routed expert (default ffn) */
  int shared_experts;     /* always-active experts per MoE block (0: none) */
  int shared_ffn;         /* FFN size of one shared expert (default expert_ffn) */
  gboolean shared_gate;   /* a sigmoid gate (1 × h) scales the shared experts' output (Qwen2-MoE) */
  int moe_every;          /* block b is MoE when (b + 1) % moe_every == 0 (HF decoder_sparse_step; default 1) */
  int moe_first_dense;    /* ... and b ≥ moe_first_dense (DeepSeek first_k_dense_replace; default 0) */
  double capacity_factor; /* tokens per expert capped at this × the balanced share (0: dropless) */
  double aux_loss_coef;   /* load-balancing loss weight of the router (Switch/Mixtral; no memory or time) */
  gboolean norm_topk;     /* the top-k probabilities renormalised to sum 1 (Mixtral always; HF norm_topk_prob) */
  gboolean qk_norm;       /* RMSNorm of head_dim on every query and key head (Qwen3) */
} PxModelDesc;

/* Limits on a description (px_model_new refuses larger values). */
#define PX_MODEL_MAX_LAYERS 4096
#define PX_MODEL_MAX_HIDDEN (1 << 20)
#define PX_MODEL_MAX_FFN (1 << 22)
#define PX_MODEL_MAX_VOCAB (1 << 24)
#define PX_MODEL_MAX_SEQ (1 << 24)
#define PX_MODEL_MAX_HEAD_DIM 16384
#define PX_MODEL_MAX_EXPERTS 65536
/* Sequence length a Hugging Face import uses when the plan states none:
 * max_position_embeddings is the longest context, not a training length. */
#define PX_MODEL_HF_DEFAULT_SEQ 4096

typedef enum {
  PX_LAYER_EMBEDDING,
  PX_LAYER_BLOCK,
  PX_LAYER_FINAL_NORM,
  PX_LAYER_LM_HEAD,
} PxLayerKind;

/* How a tensor is split over tensor-parallel ranks (Megatron). */
typedef enum {
  PX_SPLIT_NONE,   /* replicated on every TP rank (norms, row-parallel bias) */
  PX_SPLIT_ROWS,   /* dim 0 split: column-parallel weight (out, in) / its bias,
                      vocab-parallel embedding (V, h) */
  PX_SPLIT_COLS,   /* dim 1 split: row-parallel weight (out, in) */
} PxSplit;

/* What a tensor is in the network, whatever its name: the executor finds its
 * parameters by role. A bias is its weight's role + 1. */
typedef enum {
  PX_ROLE_TOKEN_EMBED,     /* wte (also the tied LM head) */
  PX_ROLE_POS_EMBED,       /* wpe (learned positions) */
  PX_ROLE_NORM1, PX_ROLE_NORM1_BIAS,           /* before attention */
  PX_ROLE_QKV, PX_ROLE_QKV_BIAS,               /* fused query / key / value projection */
  PX_ROLE_ATTN_OUT, PX_ROLE_ATTN_OUT_BIAS,     /* attention output projection (row-parallel) */
  PX_ROLE_NORM2, PX_ROLE_NORM2_BIAS,           /* before the MLP */
  PX_ROLE_FFN_IN, PX_ROLE_FFN_IN_BIAS,         /* non-gated MLP input (GPT-2 c_fc) */
  PX_ROLE_FFN_GATE, PX_ROLE_FFN_GATE_BIAS,     /* gated MLP: gate */
  PX_ROLE_FFN_UP, PX_ROLE_FFN_UP_BIAS,         /* gated MLP: up */
  PX_ROLE_FFN_OUT, PX_ROLE_FFN_OUT_BIAS,       /* MLP output projection (row-parallel) */
  PX_ROLE_FINAL_NORM, PX_ROLE_FINAL_NORM_BIAS,
  PX_ROLE_LM_HEAD,         /* an untied LM head */
  /* mixture of experts (planner and simulator only; the executor refuses them) */
  PX_ROLE_ROUTER,          /* (E, h), replicated over TP */
  PX_ROLE_EXPERT_IN,       /* routed experts, non-gated MLP input, stacked (E·f, h) */
  PX_ROLE_EXPERT_GATE,     /* routed experts, gate, stacked (E·f, h) */
  PX_ROLE_EXPERT_UP,       /* routed experts, up, stacked (E·f, h) */
  PX_ROLE_EXPERT_OUT,      /* routed experts, down, stacked (E·h, f) */
  PX_ROLE_SHARED_GATE,     /* Qwen2-MoE shared-expert gate (1, h) */
  PX_ROLE_Q_NORM, PX_ROLE_K_NORM,              /* per-head RMSNorm of q and k (head_dim) */
  PX_ROLE_N,
} PxTensorRole;

typedef struct {
  char *name;         /* e.g. "h.3.attn.qkv.weight" */
  int ndim;           /* 1 or 2 */
  gint64 shape[2];    /* full (unsplit) shape; weights are (out, in) */
  PxSplit split;
  PxTensorRole role;
  int experts;        /* > 0: `experts` routed experts stacked along dim 0; split is then the
                         expert-TP split of each expert, and EP divides the experts */
} PxTensorSpec;

/* A norm's weight or bias (replicated over TP; with sequence parallelism its
 * gradient is a partial sum over the TP ranks). */
gboolean px_role_is_norm(PxTensorRole role);
/* A projection into the residual stream (GPT-2's scaled initialisation). */
gboolean px_role_is_residual_out(PxTensorRole role);

typedef struct {
  PxLayerKind kind;
  const char *type_name;  /* class-like name matched by partition "type:REGEX":
                             "Embedding", "TransformerLayer", "LayerNorm"/"RMSNorm", "LMHead" */
  int index;              /* position in the model's layer list */
  int block;              /* block number for PX_LAYER_BLOCK, else -1 */
  guint n_tensors;
  PxTensorSpec *tensors;  /* (n_tensors) own parameters */
  gint64 params;          /* own parameters (sum over tensors) */
  gint64 tied_params;     /* parameters used but owned by another layer
                             (tied LM head: V*h of the token embedding) */
  const PxTensorSpec *tied_tensor; /* that tensor (in the embedding layer), or NULL */
} PxLayer;

typedef struct {
  PxModelDesc desc;
  guint n_layers;
  PxLayer *layers;        /* (n_layers) */
  gint64 params;          /* unique parameters (tied weights counted once) */
  gint64 active_params;   /* parameters one token uses: params less the routed experts it is
                             not sent to ((E - k)/E of each MoE block's experts); = params when dense */
} PxModel;

/* Build from a description; validates it (positive sizes within the limits
 * above, heads divide hidden unless head_dim is given, kv_heads divide heads,
 * finite positive rope_theta and norm_eps, rotary_pct in (0, 1]). */
PxModel *px_model_new(const PxModelDesc *desc, GError **error);
/* Load: a preset name under configs/models (e.g. "gpt2-124m"), a model INI
 * file, or a Hugging Face config.json (by extension .json). */
PxModel *px_model_load(const char *name_or_path, GError **error);
PxModel *px_model_load_ini(const char *path, GError **error);
PxModel *px_model_load_hf_json(const char *path, GError **error);
void px_model_free(PxModel *model);

/* Parameters of one layer as held by one TP rank (tp divides the split dims). */
gint64 px_layer_params_tp(const PxLayer *layer, int tp);
/* Parameters a stage holding this layer stores (own + tied copy), per TP rank. */
gint64 px_layer_stored_params_tp(const PxLayer *layer, int tp);

/* Parameters stored by one TP rank holding layers [first, end): a tied LM head
 * adds the embedding's copy only when the embedding is not in the range. */
gint64 px_model_range_stored_params_tp(const PxModel *model, int first, int end, int tp);

/* Forward FLOPs of one layer for one sequence of length seq (all TP ranks
 * together): 2 per multiply-add of every GEMM, plus attention 4*s*h per token
 * (scores and values, no causal halving, as Megatron-LM counts). */
double px_layer_forward_flops(const PxModel *model, const PxLayer *layer, int seq);
/* Transformer-block parameter count: the "N" of 6N excludes nothing; the
 * embedding-free count is useful for Kaplan-style 6N. */
gint64 px_model_block_params(const PxModel *model);

/* Whether the executor (exec/gpt.c) runs this model; FALSE with one sentence
 * naming the first feature it does not implement (GeGLU, squared ReLU, parallel attention,
 * partial rotary, sliding window, rescaled rotary, Gemma's embedding scale and
 * norm offset). The planner and simulator handle every valid description. */
gboolean px_model_executable(const PxModel *model, GError **error);

/* Q (and attention output) width: heads · head_dim; K or V: kv_heads · head_dim. */
gint64 px_model_q_dim(const PxModelDesc *d);
gint64 px_model_kv_dim(const PxModelDesc *d);
/* Keys one query attends to for a sequence of seq: min(seq, sliding_window). */
double px_model_attn_span(const PxModelDesc *d, int seq);
/* The MLP has three tensors (gate, up, down). */
gboolean px_ffn_gated(PxFfnKind k);
/* A Llama block as torchtitan writes it (torchtitan/models/llama/model.py at
 * 9dec370): RMSNorm, RoPE over the whole head, SwiGLU, no biases, no dropout,
 * sequential attention then MLP, no experts, no norm offset. The blocks
 * whose element-wise kernels the torchtitan stack counts op by op, eager or
 * compiled (cost.h px_cost_titan_block; docs/cost.md section 4). */
gboolean px_model_llama_block(const PxModelDesc *d);

/* Whether block b (0-based) has a mixture-of-experts MLP. */
gboolean px_model_block_is_moe(const PxModelDesc *d, int b);
/* MoE blocks of the model. */
int px_model_moe_blocks(const PxModelDesc *d);
/* Parameters one rank holds of a layer under tensor parallelism tp for the
 * dense tensors and ep experts per group × etp expert-TP for the routed
 * experts (experts split over ep, each expert's f over etp): *dense and
 * *expert (either may be NULL). ep = 1, etp = tp gives px_layer_params_tp. */
void px_layer_params_split(const PxLayer *layer, int tp, int ep, int etp, gint64 *dense, gint64 *expert);

const char *px_ffn_kind_name(PxFfnKind k);
const char *px_norm_kind_name(PxNormKind k);
const char *px_layer_kind_name(PxLayerKind k);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxModel, px_model_free)

G_END_DECLS
