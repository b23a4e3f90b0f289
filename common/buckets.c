/* buckets.c — see buckets.h. */
#include "buckets.h"
#include "cost.h"
#include "moe.h"
#include <math.h>

double px_buckets_size(const PxPlan *plan) {
  const PxStackProfile *sp = px_stack_profile(plan->stack);
  double elems = plan->bucket_bytes > 0 ? plan->bucket_bytes / px_plan_act_bytes(plan) : 0;
  /* Megatron-Core distributed_data_parallel.py: bucket_size = max(40000000, 1000000 * dp_size) */
  if (elems <= 0 && plan->stack == PX_STACK_MEGATRON_CORE) elems = MAX(sp->bucket_elems, 1e6 * px_plan_data_ranks(plan));
  if (elems <= 0) elems = sp->bucket_elems;
  return MAX(elems, 0.0);
}

double px_buckets_layer_elems(const PxModel *model, const PxPlan *plan, const PxPartition *part, int k, int li,
                              double *expert) {
  const PxLayer *layer = &model->layers[li];
  int tp = MAX(plan->tp, 1);
  /* a tied LM head stores its own copy of the embedding only on another rank */
  gboolean own_copy = layer->tied_tensor && part->tied &&
                      px_partition_part_rank(part, part->tied_first_part) != px_partition_part_rank(part, k);
  gint64 lp = own_copy ? px_layer_stored_params_tp(layer, tp) : px_layer_params_tp(layer, tp), ex = 0;
  if (layer->kind == PX_LAYER_BLOCK && px_model_block_is_moe(&model->desc, layer->block))
    px_layer_params_split(layer, tp, MAX(plan->ep, 1), px_plan_etp(plan), &lp, &ex); /* a block holds no tied copy */
  if (expert) *expert = (double)ex;
  return (double)(lp + ex);
}

PxBuckets *px_buckets_from_layers(int parts, const int *bounds, const double *elems, const double *flops,
                                  double size) {
  return px_buckets_from_layers_moe(parts, bounds, elems, NULL, flops, size);
}

/* One kind's sequence of part [lo, hi) appended to a, in reduction order:
 * el the layer's elements of that kind. The dense sequence (expert FALSE)
 * closes its last bucket at the part's first layer; the experts' starts a
 * bucket only at a layer holding experts and closes its last at the lowest
 * such layer (none without experts). */
static void kind_sequence(GArray *a, int lo, int hi, const double *el, const double *flops, double size,
                          gboolean expert) {
  double total = 0, total_flops = 0;
  int low = expert ? -1 : lo; /* the layer closing the last bucket */
  for (int li = lo; li < hi; li++) {
    total += el[li], total_flops += flops[li];
    if (expert && low < 0 && el[li] > 0) low = li;
  }
  if (low < 0) return;
  PxBucket cur = {hi, hi, 0, 0, 0, expert};
  gboolean open = !expert; /* a dense bucket holds every layer it passes, one with no elements too */
  double done_flops = 0; /* backward FLOPs of the layers done, last layer first */
  for (int li = hi - 1; li >= low; li--) {
    done_flops += flops[li];
    if (!open && el[li] <= 0) continue;
    if (!open) cur.end = li + 1, open = TRUE;
    cur.first = li;
    cur.elems += el[li];
    /* closed once it holds the bucket size (one layer per bucket with size 0);
     * the part's first layer (the lowest with experts) closes the last */
    if (cur.elems >= size || li == low) {
      cur.share = total > 0 ? cur.elems / total : 1.0 / (hi - lo);
      cur.after = total_flops > 0 ? MAX(0.0, 1.0 - done_flops / total_flops) : (double)(li - lo) / (hi - lo);
      if (li == lo) cur.after = 0;
      g_array_append_val(a, cur);
      cur = (PxBucket){li, li, 0, 0, 0, expert};
      open = !expert;
    }
  }
}

PxBuckets *px_buckets_from_layers_moe(int parts, const int *bounds, const double *elems, const double *expert,
                                      const double *flops, double size) {
  PxBuckets *b = g_new0(PxBuckets, 1);
  b->parts = parts;
  b->bucket_elems = size;
  b->n = g_new0(int, parts);
  b->b = g_new0(PxBucket *, parts);
  int n_layers = parts > 0 ? bounds[parts] : 0;
  g_autofree double *dense = g_new0(double, MAX(n_layers, 1));
  for (int li = 0; li < n_layers; li++) dense[li] = expert ? elems[li] - expert[li] : elems[li];
  g_autoptr(GArray) d = g_array_new(FALSE, FALSE, sizeof(PxBucket));
  g_autoptr(GArray) x = g_array_new(FALSE, FALSE, sizeof(PxBucket));
  for (int k = 0; k < parts; k++) {
    g_array_set_size(d, 0);
    g_array_set_size(x, 0);
    kind_sequence(d, bounds[k], bounds[k + 1], dense, flops, size, FALSE);
    if (expert) kind_sequence(x, bounds[k], bounds[k + 1], expert, flops, size, TRUE);
    /* merged in the order they become ready: the closing layer, highest
     * first; on a tie the experts' bucket first */
    GArray *a = g_array_sized_new(FALSE, FALSE, sizeof(PxBucket), d->len + x->len);
    for (guint i = 0, j = 0; i < d->len || j < x->len;) {
      const PxBucket *db = i < d->len ? &g_array_index(d, PxBucket, i) : NULL;
      const PxBucket *xb = j < x->len ? &g_array_index(x, PxBucket, j) : NULL;
      if (xb && (!db || xb->first >= db->first)) g_array_append_val(a, *xb), j++;
      else g_array_append_val(a, *db), i++;
    }
    b->n[k] = (int)a->len;
    b->b[k] = (PxBucket *)g_array_free(a, FALSE);
  }
  return b;
}

PxBuckets *px_buckets_new(const PxModel *model, const PxPlan *plan, const PxPartition *part) {
  int n = (int)model->n_layers, seq = plan->seq > 0 ? plan->seq : model->desc.max_seq;
  g_autofree double *elems = g_new0(double, MAX(n, 1)), *flops = g_new0(double, MAX(n, 1));
  g_autofree double *expert = g_new0(double, MAX(n, 1));
  for (int k = 0; k < part->parts; k++)
    for (int li = part->bounds[k]; li < part->bounds[k + 1]; li++) {
      elems[li] = px_buckets_layer_elems(model, plan, part, k, li, &expert[li]);
      /* the backward's share of a layer: its forward FLOPs (backward = 2 x forward
       * per layer, recomputation in proportion); the embedding's scatter-add has
       * no GEMM FLOPs */
      flops[li] = px_layer_forward_flops(model, &model->layers[li], seq);
    }
  return px_buckets_from_layers_moe(part->parts, part->bounds, elems, expert, flops, px_buckets_size(plan));
}

PxBuckets *px_buckets_copy(const PxBuckets *src) {
  if (!src) return NULL;
  PxBuckets *b = g_new0(PxBuckets, 1);
  b->parts = src->parts;
  b->bucket_elems = src->bucket_elems;
  b->n = g_memdup2(src->n, sizeof(int) * src->parts);
  b->b = g_new0(PxBucket *, src->parts);
  for (int k = 0; k < src->parts; k++) b->b[k] = g_memdup2(src->b[k], sizeof(PxBucket) * src->n[k]);
  return b;
}

void px_buckets_free(PxBuckets *b) {
  if (!b) return;
  for (int k = 0; k < b->parts; k++) g_free(b->b[k]);
  g_free(b->b);
  g_free(b->n);
  g_free(b);
}

int px_buckets_find(const PxBuckets *b, int k, int li, gboolean expert) {
  if (!b || k < 0 || k >= b->parts) return -1;
  for (int i = 0; i < b->n[k]; i++)
    if (!b->b[k][i].expert == !expert && li >= b->b[k][i].first && li < b->b[k][i].end) return i;
  return -1;
}

int px_buckets_of_layer(const PxBuckets *b, int k, int li) { return px_buckets_find(b, k, li, FALSE); }

gboolean px_buckets_sharded(const PxBuckets *b, const PxModel *model, const PxPlan *plan, int k) {
  (void)model;
  if (!b || k < 0 || k >= b->parts || b->n[k] < 2) return FALSE;
  /* the executor's stack and Megatron-Core's distributed optimizer (its
   * buckets' slices: distributed_optimizer.py _build_model_gbuf_range); the
   * other stacks' memory and bytes stay their own */
  if (plan->stack != PX_STACK_PARALLAX && plan->stack != PX_STACK_MEGATRON_CORE) return FALSE;
  if ((plan->zero != 1 && plan->zero != 2) || px_plan_data_ranks(plan) < 2) return FALSE;
  return px_cost_overlap_dp(plan);
}

gint64 px_buckets_shard_layout(const PxBuckets *b, int k, int dp, int edp, PxBucketShard *out, gint64 *padded,
                               gint64 *expert) {
  int n = b->n[k];
  gint64 base = 0, at = 0, at_dense = 0;
  /* buffer order: the dense buffer, then the experts' (g = 1); in each the
   * part's first layers (its last bucket of that kind) first */
  for (int g = 0; g < 2; g++) {
    int ranks = MAX(g ? edp : dp, 1);
    for (int i = n - 1; i >= 0; i--) {
      const PxBucket *bk = &b->b[k][i];
      if (!bk->expert != !g) continue;
      gint64 elems = llround(bk->elems), slice = (elems + ranks - 1) / ranks;
      if (out) out[i] = (PxBucketShard){elems, base, slice, at};
      base += slice * ranks;
      at += slice;
    }
    if (!g) at_dense = at;
  }
  if (padded) *padded = base;
  if (expert) *expert = at - at_dense;
  return at;
}
