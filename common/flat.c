/* flat.c — see flat.h. */
#include "flat.h"
#include "moe.h"

static void add(GArray *arr, const PxTensorSpec *spec, int layer, gboolean tied_copy, const PxPlan *plan,
                gint64 *offset) {
  int tp = plan->tp, ep = MAX(plan->ep, 1), etp = px_plan_etp(plan);
  PxFlatTensor t = {spec, layer, tied_copy, FALSE, spec->ndim, {0, 0}, 0, *offset};
  t.shape[0] = spec->split == PX_SPLIT_ROWS ? (spec->shape[0] + tp - 1) / tp : spec->shape[0];
  t.shape[1] = spec->ndim == 2 ? (spec->split == PX_SPLIT_COLS ? (spec->shape[1] + tp - 1) / tp : spec->shape[1]) : 1;
  if (spec->experts > 0) {
    t.expert = TRUE;
    t.shape[0] = spec->shape[0] / ep / (spec->split == PX_SPLIT_ROWS ? etp : 1);
    t.shape[1] = spec->shape[1] / (spec->split == PX_SPLIT_COLS ? etp : 1);
  }
  t.numel = t.shape[0] * t.shape[1];
  *offset += t.numel;
  g_array_append_val(arr, t);
}

PxFlatChunk *px_flat_chunk_new(const PxModel *model, const PxPlan *plan, int first, int end,
                               gboolean holds_embedding) {
  PxFlatChunk *fc = g_new0(PxFlatChunk, 1);
  fc->first = first;
  fc->end = end;
  fc->layer_first = g_new0(int, end - first + 1);
  GArray *arr = g_array_new(FALSE, TRUE, sizeof(PxFlatTensor));
  for (int li = first; li < end; li++) {
    const PxLayer *L = &model->layers[li];
    fc->layer_first[li - first] = (int)arr->len;
    for (guint k = 0; k < L->n_tensors; k++) add(arr, &L->tensors[k], li, FALSE, plan, &fc->numel);
    if (L->tied_tensor && !holds_embedding) add(arr, L->tied_tensor, li, TRUE, plan, &fc->numel);
  }
  fc->layer_first[end - first] = (int)arr->len;
  fc->n = arr->len;
  fc->t = (PxFlatTensor *)g_array_free(arr, FALSE);
  return fc;
}

void px_flat_chunk_free(PxFlatChunk *fc) {
  if (!fc) return;
  g_free(fc->t);
  g_free(fc->layer_first);
  g_free(fc);
}

void px_flat_layer_elems(const PxFlatChunk *fc, int li, gint64 *dense, gint64 *expert) {
  gint64 n[2] = {0, 0};
  for (int i = fc->layer_first[li - fc->first]; i < fc->layer_first[li - fc->first + 1]; i++)
    n[fc->t[i].expert] += fc->t[i].numel;
  if (dense) *dense = n[0];
  if (expert) *expert = n[1];
}
