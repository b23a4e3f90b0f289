/* flat.h — a chunk's flat parameter buffer on one rank, described once: the
 * executor lays its parameters out by it (exec/gpt.c) and the ZeRO-3 walk
 * counts each layer's elements from it (common/zero3.c).
 *
 * The layers of the chunk in order, each layer's tensors in order, and an LM
 * head tied to the embedding a copy of wte after its own tensors unless the
 * rank holds the embedding (then the head reads the embedding's wte, the
 * first tensor of the chunk starting at layer 0). A tensor's shape on the
 * rank: a dim split over TP divided by tp, rounded up (Megatron pads the
 * vocabulary to a multiple of tp); a routed expert tensor (E experts stacked
 * in its rows) holds E/ep experts, each's FFN dim over etp (gate, up: rows;
 * down: columns). */
#pragma once
#include <glib.h>
#include "model.h"
#include "plan.h"

G_BEGIN_DECLS

typedef struct {
  const PxTensorSpec *spec; /* the core's tensor (a tied copy: the embedding's wte) */
  int layer;                /* the layer that uses it */
  gboolean tied_copy;       /* the LM head's copy of wte (the rank does not hold the embedding) */
  gboolean expert;          /* a routed expert tensor */
  int ndim;
  gint64 shape[2];          /* on this rank */
  gint64 numel;
  gint64 offset;            /* element offset in the chunk's flat buffer */
} PxFlatTensor;

typedef struct {
  int first, end;           /* layers [first, end) */
  guint n;
  PxFlatTensor *t;          /* (n) in buffer order */
  int *layer_first;         /* (end - first + 1) index in t of each layer's first tensor; [end - first] = n */
  gint64 numel;             /* the buffer's elements */
} PxFlatChunk;

/* The flat buffer of layers [first, end) on a rank of the plan (its tp, ep,
 * etp); holds_embedding: the rank holds layer 0 (in this chunk or another
 * of its chunks). */
PxFlatChunk *px_flat_chunk_new(const PxModel *model, const PxPlan *plan, int first, int end,
                               gboolean holds_embedding);
void px_flat_chunk_free(PxFlatChunk *fc);
/* Layer li's elements in the buffer: its dense tensors' (*dense) and its
 * routed experts' (*expert); either may be NULL. */
void px_flat_layer_elems(const PxFlatChunk *fc, int li, gint64 *dense, gint64 *expert);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxFlatChunk, px_flat_chunk_free)

G_END_DECLS
