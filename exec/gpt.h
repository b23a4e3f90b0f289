/* gpt.h — the transformer of common/model.h on a device backend, as one
 * pipeline rank holds it: only the layers of its own parts (chunks), with
 * exactly the parameter tensors the core's PxModel lists for them, each split
 * over tensor-parallel ranks as its PxTensorSpec.split says (Megatron):
 *
 *  - attn.qkv (ROWS): rank r holds its heads' query rows, then its kv heads'
 *    key rows, then their value rows — (a/t + 2 kv/t) * head_dim rows;
 *  - other ROWS tensors (mlp.fc / gate / up, wte, lm_head): contiguous row
 *    blocks (vocab-parallel embedding and LM head: tp must divide the vocab);
 *  - COLS tensors (attn.proj, mlp.proj / down): contiguous column blocks; their
 *    replicated bias is added once, after the TP all-reduce;
 *  - NONE: replicated (norms, wpe).
 * GPT-2 style (learned positions, LayerNorm, GELU, biases, tied LM head) and
 * Llama style (RMSNorm, SwiGLU, GQA, rotary) both come from the PxModelDesc.
 * With sequence parallelism (plan seq_parallel, tp > 1) the residual stream,
 * the norms and the activations they keep hold B*T/tp rows per TP rank:
 * all-gather before each column-parallel linear, reduce-scatter after each
 * row-parallel one (Korthikanti et al. 2022); chunk inputs and outputs, hence
 * pipeline messages, are those N/tp rows.
 *
 * The activations a chunk keeps for backward are the core's list
 * (common/activations.h, the executor's stack): each tensor is allocated from
 * its entry and freed when the entry's lifetime says (docs/executor.md), so
 * the runtime's memory prediction is the same list walked the same way.
 *
 * A chunk's parameters (and gradients) live in one flat buffer each, in the
 * order of the model's layer list, so that DP reductions and ZeRO shards are
 * single contiguous ranges. The runtime owns those buffers and binds them
 * (px_gpt_chunk_bind); the model only makes views.
 *
 * Initial values depend on the seed and the tensor's name only: the full
 * tensor is generated (N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)),
 * biases 0, norm weights 1) and the rank's shard is cut from it, so every plan
 * starts from the same weights. A tied LM head copy is generated under the
 * embedding's name, hence equal to it. */
#pragma once
#include <glib.h>
#include "backend.h"
#include "comm.h"
#include "model.h"
#include "partition.h"
#include "plan.h"

G_BEGIN_DECLS

#define PX_GPT_ERROR (px_gpt_error_quark())
GQuark px_gpt_error_quark(void);
typedef enum {
  PX_GPT_ERROR_UNSUPPORTED, /* a plan feature the executor does not run (e.g. sequence parallel) */
  PX_GPT_ERROR_INVALID,     /* a shape that does not split, an unknown tensor name */
} PxGptError;

typedef struct {
  const PxTensorSpec *spec;  /* the core's tensor (for a tied copy: the embedding's wte) */
  int layer;                 /* index in the model's layer list that uses it */
  gboolean tied_copy;        /* the LM head's copy of wte on the last stage */
  gboolean replicated;       /* identical on every TP rank (split NONE) */
  gboolean expert;           /* a routed expert tensor: this EP rank's E/ep experts, each its ETP rank's
                                f/etp slice, reduced over the EDP group instead of DP (exec/grid.h) */
  int ndim;
  gint64 shape[2];           /* local (TP shard) shape */
  gint64 numel;
  gint64 offset;             /* element offset in the chunk's flat buffers */
  PxTensor *w, *g;           /* views into the bound flat buffers (NULL until bound) */
} PxGptParam;

typedef struct {
  int part, chunk;
  int first, end;            /* layers [first, end) of the model */
  guint n_params;
  PxGptParam *params;        /* (n_params) in flat-buffer order */
  gint64 numel;              /* flat buffer elements */
  int *layer_param;          /* (end - first + 1) first param index of each layer */
} PxGptChunk;

/* How a rank runs: its coordinates and the TP group for collectives. */
typedef struct {
  PxBackend *be;
  PxComm *tp;                /* the TP communicator (exec/grid.h); may be NULL when tp == 1 */
  int stage, tp_rank;
  PxDType dtype;             /* F32 or F64 */
  PxComm *cp;                /* the CP communicator (exec/grid.h); NULL when cp == 1 */
  int cp_rank;
  PxComm *ep;                /* the EP communicator of MoE blocks; may be NULL when ep == 1 */
  int ep_rank;               /* position in the EP group (0 when ep == 1) */
  PxComm *etp;               /* the ETP communicator (an expert's FFN split); may be NULL when etp == 1 */
  int etp_rank;              /* position in the ETP group (0 when etp == 1) */
} PxGptRank;

typedef struct _PxGpt PxGpt;
typedef struct _PxGptActs PxGptActs;

PxGpt *px_gpt_new(const PxModel *model, const PxPlan *plan, const PxPartition *part,
                  const PxGptRank *rank, GError **error);
void px_gpt_free(PxGpt *gpt);
int px_gpt_n_chunks(const PxGpt *gpt);
const PxGptChunk *px_gpt_chunk(const PxGpt *gpt, int chunk);
/* Shape of what a chunk receives and sends (activations and their
 * gradients): (B*T / tp with sequence parallelism, else B*T, hidden). */
void px_gpt_io_shape(const PxGpt *gpt, gint64 shape[2]);
/* Does this rank hold the tied wte copy (a chunk whose params include a
 * tied_copy)? Then *chunk and *param locate it. Also for the embedding's wte. */
gboolean px_gpt_find_param(const PxGpt *gpt, const char *name, gboolean tied_copy, int *chunk,
                           int *param);
/* With sequence parallelism each TP rank computes a norm's weight (and bias)
 * gradient from its own N/t rows: those gradients are partial sums that the
 * runtime all-reduces over the TP group before the optimizer. */
gboolean px_gpt_param_tp_partial(const PxGpt *gpt, const PxGptParam *p);
/* Point the chunk's parameter and gradient views at flat buffers of
 * chunk->numel elements (the gradient buffer may be NULL). */
gboolean px_gpt_chunk_bind(PxGpt *gpt, int chunk, PxTensor *flat_w, PxTensor *flat_g,
                           GError **error);
/* The same with param i at element offsets[i] of the buffers instead of its
 * offset (the runtime's own layout, e.g. expert tensors in a region of their
 * own); offsets NULL: px_gpt_chunk_bind. */
gboolean px_gpt_chunk_bind_at(PxGpt *gpt, int chunk, PxTensor *flat_w, PxTensor *flat_g, const gint64 *offsets,
                              GError **error);
/* The deterministic initial values of the chunk's flat buffer (host, double). */
void px_gpt_chunk_init_values(const PxGpt *gpt, int chunk, guint64 seed, double *flat);
/* Cut this rank's shard of param p out of the full tensor (row-major, spec shape). */
void px_gpt_param_shard(const PxGpt *gpt, const PxGptParam *p, const double *full, double *shard);

/* Context parallelism (plan cp > 1, Megatron's load balancing): the
 * sequence is cut into 2·cp chunks and CP rank i holds chunks i and
 * 2cp-1-i, T/cp tokens of each sequence. The model then runs on those tokens
 * (B * T/cp rows), positions (learned or rotary) taken at their true places;
 * attention is ring attention over the CP group: the K/V of every CP rank
 * pass around the ring by p2p, each block's partial result is merged by its
 * log-sum-exp, and in backward the dK/dV travel with them back to their
 * owner. Each rank's loss is the mean over its own tokens (the runtime
 * averages over dp·cp ranks, every rank holding as many tokens).
 * px_gpt_local_tokens cuts this rank's (B, T/cp) tokens out of the (B, T)
 * micro-batch (a copy when cp == 1). */
void px_gpt_local_tokens(const PxGpt *gpt, const gint32 *full, gint32 *local);

/* Forward of chunk for one micro-batch of B sequences of T tokens. input: the
 * received activation (B*T, h), whose ownership passes to the stash, or NULL on
 * the first part; tokens (B*T) for the embedding, targets (B*T) for the loss
 * (NULL where the part has none). On the last part *loss gets the micro-batch's
 * mean loss. The stash keeps what backward needs (per the plan's checkpoint
 * policy). */
PxGptActs *px_gpt_forward(PxGpt *gpt, int chunk, PxTensor *input, const gint32 *tokens,
                          const gint32 *targets, double *loss, GError **error);
/* The same with the loss left on the device: on the last part the
 * micro-batch's mean loss is ADDED to loss_acc (one element, f32 or f64, on
 * the rank's backend; may be NULL), so a step's micro-batches sum there and
 * the runtime reads it once per step. px_gpt_forward is this with a scratch
 * accumulator read back at once (one device→host copy per micro-batch). */
PxGptActs *px_gpt_forward_acc(PxGpt *gpt, int chunk, PxTensor *input, const gint32 *tokens,
                              const gint32 *targets, PxTensor *loss_acc, GError **error);
/* The chunk's output activation (B*T, h) to send on (NULL on the last part). */
PxTensor *px_gpt_acts_output(PxGptActs *acts);
/* The LM head's logits (B*T, vocab/tp) on the last part, else NULL. */
const PxTensor *px_gpt_acts_logits(PxGptActs *acts);
/* Release the output once sent (it is not needed by backward). */
void px_gpt_acts_drop_output(PxGptActs *acts);
/* Backward: dout is the received output gradient, whose ownership passes
 * (NULL on the last part, where dloss = d(objective)/d(this micro-batch's mean loss) seeds it). *dinput gets
 * the input gradient to send back (NULL on the first part; caller frees).
 * With defer_weight (zero bubble's "B"), the weight-gradient GEMMs of linear
 * layers are held for px_gpt_backward_weight ("W"); norms and embeddings still
 * get theirs here. When the plan's schedule splits the backward
 * (px_act_splits_backward) B frees all but what W reads, as the core's lists
 * mark it (their `w` and PX_ACT_W entries, the output gradients and SP's
 * gathered inputs then counted as activations); otherwise it keeps
 * everything until W. Gradients are added into the bound gradient buffers. */
gboolean px_gpt_backward(PxGpt *gpt, PxGptActs *acts, PxTensor *dout, double dloss,
                         gboolean defer_weight, PxTensor **dinput, GError **error);
gboolean px_gpt_backward_weight(PxGpt *gpt, PxGptActs *acts, GError **error);
/* A per-layer hook of the backward: called on the calling thread, in the
 * order of the compute stream, once a layer's weight gradients are complete
 * (added into the bound gradient buffer): by px_gpt_backward without
 * defer_weight after each layer, from the chunk's last to its first, and by
 * px_gpt_backward_weight for every layer of the chunk, in the same order
 * (with defer_weight, px_gpt_backward calls none: the weight half is still to
 * come). The runtime queues a DP bucket's reduction there (docs/executor.md).
 * A FALSE return stops the backward with its error. fn NULL: none. */
typedef gboolean (*PxGptLayerDone)(int chunk, int layer, void *data, GError **error);
void px_gpt_set_layer_hook(PxGpt *gpt, PxGptLayerDone fn, void *data);
/* A per-layer hook called before a layer uses its weights: by the forward
 * before each layer, by a full recompute before each block it runs again,
 * and by px_gpt_backward before each layer's backward (after the layer's
 * recompute), on the calling thread, in the order of the compute stream:
 * the order common/zero3.h's px_zero3_pass_layers describes. The runtime
 * binds the layer's gathered ZeRO-3 weights there and queues the gathers
 * the core's walk lists (docs/executor.md). A FALSE return stops the pass.
 * fn NULL: none. */
typedef gboolean (*PxGptLayerBefore)(int chunk, int layer, void *data, GError **error);
void px_gpt_set_layer_before(PxGpt *gpt, PxGptLayerBefore fn, void *data);
/* The parameter outside layer li of chunk that the layer reads (the LM head's
 * tied wte, held by the embedding's chunk when the rank holds both ends):
 * TRUE with its chunk and index, or FALSE. */
gboolean px_gpt_layer_borrows(const PxGpt *gpt, int chunk, int li, int *from_chunk, int *param);
/* Bind parameter i of chunk's weights to a view of flat at element at (its
 * gradient binding unchanged). */
gboolean px_gpt_param_bind_w(PxGpt *gpt, int chunk, guint i, PxTensor *flat, gint64 at, GError **error);
void px_gpt_acts_free(PxGptActs *acts);
/* The load-balancing losses of the MoE blocks this rank ran forward, summed
 * since the last call (each micro-batch's, coefficient included; under
 * sequence parallelism the TP group's tokens together, counted on TP rank 0),
 * then reset. Their gradient is in backward, seeded with its dloss. */
double px_gpt_take_aux_loss(PxGpt *gpt);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxGpt, px_gpt_free)

G_END_DECLS
