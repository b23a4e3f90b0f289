/* zero3.c — see zero3.h. */
#include "zero3.h"
#include "activations.h"
#include "flat.h"
#include "memory.h"
#include "moe.h"

/* The routed experts shard over EDP, not the DP group (the split layout). */
static gboolean experts_own_group(const PxModel *model, const PxPlan *plan) {
  return model->desc.experts > 0 && !(MAX(plan->ep, 1) == 1 && px_plan_etp(plan) == plan->tp);
}

gboolean px_zero3_by_layer(const PxModel *model, const PxPlan *plan) {
  return plan->zero >= 3 && (px_plan_data_ranks(plan) > 1 || plan->offload == PX_OFFLOAD_OPTIMIZER_PARAMS ||
                             (experts_own_group(model, plan) && px_plan_edp(plan) > 1));
}

static gboolean full_block(const PxModel *model, const PxPlan *plan, int li) {
  return model->layers[li].kind == PX_LAYER_BLOCK && plan->ckpt == PX_CKPT_FULL;
}

int px_zero3_pass_layers(const PxModel *model, const PxPlan *plan, int first, int end, gboolean backward,
                         int **layers) {
  GArray *a = g_array_new(FALSE, FALSE, sizeof(int));
  if (!backward) {
    for (int li = first; li < end; li++) g_array_append_val(a, li);
  } else {
    int done = end; /* blocks from here on recomputed in this pass already */
    for (int li = end - 1; li >= first; li--) {
      if (full_block(model, plan, li) && li < done) {
        int s0, s1;
        px_activations_segment(model, plan, first, end, li, &s0, &s1);
        for (int x = s0; x <= li; x++) g_array_append_val(a, x);
        done = s0;
      }
      g_array_append_val(a, li);
      if (model->layers[li].kind == PX_LAYER_EMBEDDING) break;
    }
  }
  int n = (int)a->len;
  *layers = (int *)g_array_free(a, FALSE);
  return n;
}

int px_zero3_pass_first(const PxModel *model, const PxPlan *plan, int first, int end, gboolean backward) {
  g_autofree int *l = NULL;
  int n = px_zero3_pass_layers(model, plan, first, end, backward, &l);
  return n > 0 ? l[0] : -1;
}

/* ---- the walk ---------------------------------------------------------------------- */

/* A chunk's flat buffer (common/flat.h, the executor's layout): a dense
 * region of nd elements in dp shards of sd, then (split layout) the
 * experts' region of ne in edp shards of se from pad_d = sd·dp; each
 * layer's dense tensors at doff[layer - first] in the dense region, its
 * experts at eoff[...] in the experts' (not split: all of a layer's tensors
 * dense, ne 0). */
typedef struct {
  PxFlatChunk *flat;
  gint64 nd, ne, sd, se, pad_d;
  gint64 *doff, *eoff;
} ChunkLayout;

typedef struct {
  const PxModel *model;
  const PxPlan *plan;
  const PxPartition *part;
  const PxProgram *prog;
  int stage, dp_rank, edp_rank, data;
  gboolean holds_emb, split;
  int emb_chunk;
  ChunkLayout *cl;    /* (vpp) */
  int zc[2], zl[2], zcur;
  PxZero3Walk *w;
  GArray *uses, *seq; /* PxZero3Use, PxZero3Gather */
} Walk;

static int chunk_first(const Walk *k, int c) { return k->part->bounds[px_partition_part_of(k->part, k->stage, c)]; }
static int chunk_end(const Walk *k, int c) { return k->part->bounds[px_partition_part_of(k->part, k->stage, c) + 1]; }

/* Elements of layer li of chunk c in its flat buffer: its routed experts'
 * (*expert) apart only when the layout is split, else in the dense count. */
static gint64 layer_elems(const Walk *k, int c, int li, gint64 *expert) {
  gint64 d, e;
  px_flat_layer_elems(k->cl[c].flat, li, &d, &e);
  *expert = k->split ? e : 0;
  return k->split ? d : d + e;
}

/* Elements of range [lo, hi) a rank does not hold whose own shard is the
 * me-th of S elements from base. */
static gint64 not_held(gint64 lo, gint64 hi, gint64 base, gint64 S, int me) {
  gint64 a = MAX(lo, base + (gint64)me * S), b = MIN(hi, base + (gint64)(me + 1) * S);
  return (hi - lo) - MAX(b - a, 0);
}

/* Elements the rank receives gathering layer li of chunk c: its dense range
 * over DP, its experts' over EDP. */
static gint64 layer_received(const Walk *k, int c, int li) {
  const PxLayer *L = &k->model->layers[li];
  const ChunkLayout *cl = &k->cl[c];
  int i = li - chunk_first(k, c);
  gint64 ne, nd = layer_elems(k, c, li, &ne);
  gint64 n = not_held(cl->doff[i], cl->doff[i] + nd, 0, cl->sd, k->dp_rank);
  if (ne > 0) n += not_held(cl->pad_d + cl->eoff[i], cl->pad_d + cl->eoff[i] + ne, cl->pad_d, cl->se, k->edp_rank);
  /* an LM head tied to the embedding this rank holds reads wte: the
   * embedding's first tensor, at the start of its chunk's dense region */
  if (L->kind == PX_LAYER_LM_HEAD && L->tied_tensor && k->holds_emb)
    n += not_held(0, k->cl[k->emb_chunk].flat->t[0].numel, 0, k->cl[k->emb_chunk].sd, k->dp_rank);
  return n;
}

static int slot_of(const Walk *k, int c, int li) {
  for (int s = 0; s < 2; s++)
    if (k->zc[s] == c && k->zl[s] == li) return s;
  return -1;
}

/* Gather layer li of chunk c into slot s during instruction i, at use u (-1:
 * GATHER_PARAMS's). */
static void gather(Walk *k, guint i, int u, int c, int li, int s, gboolean on_demand) {
  PxZero3Gather g = {i, u, c, li, s, on_demand, layer_received(k, c, li)};
  k->zc[s] = c;
  k->zl[s] = li;
  k->w->gathers[i]++;
  k->w->on_demand[i] += on_demand;
  k->w->received[i] += g.received;
  g_array_append_val(k->seq, g);
}

static gboolean reads_weights(PxOpKind kind) {
  return kind == PX_OP_FORWARD || kind == PX_OP_BACKWARD || kind == PX_OP_BACKWARD_INPUT;
}

gboolean px_zero3_next_pass(const PxModel *model, const PxPlan *plan, const PxPartition *part, const PxProgram *prog,
                            int stage, guint i, int *chunk, int *layer) {
  const PxRankProgram *rp = &prog->ranks[stage];
  for (guint j = i + 1; j < rp->n; j++) {
    const PxInstr *in = &rp->instrs[j];
    if (!reads_weights(in->kind)) continue;
    int k = px_partition_part_of(part, stage, in->chunk);
    *chunk = in->chunk;
    *layer = px_zero3_pass_first(model, plan, part->bounds[k], part->bounds[k + 1], in->kind != PX_OP_FORWARD);
    return TRUE;
  }
  return FALSE;
}

/* A pass of chunk c (instruction i): each layer bound to its slot (gathered
 * on demand if neither holds it), then the layer used next prefetched. */
static void walk_pass(Walk *k, guint i, int c, gboolean backward) {
  g_autofree int *l = NULL;
  int n = px_zero3_pass_layers(k->model, k->plan, chunk_first(k, c), chunk_end(k, c), backward, &l);
  for (int t = 0; t < n; t++) {
    int u = (int)k->uses->len, s = slot_of(k, c, l[t]);
    if (s < 0) gather(k, i, u, c, l[t], s = k->zcur == 0 ? 1 : 0, TRUE);
    k->zcur = s;
    PxZero3Use use = {i, c, l[t], s};
    g_array_append_val(k->uses, use);
    int nc = c, nl;
    if (t + 1 < n) nl = l[t + 1];
    else if (!px_zero3_next_pass(k->model, k->plan, k->part, k->prog, k->stage, i, &nc, &nl)) continue;
    if (slot_of(k, nc, nl) < 0) gather(k, i, u, nc, nl, 1 - s, FALSE);
  }
}

/* The rank's position in its EDP group (px_moe_rank_of's coordinates). */
static int edp_rank_of(const PxPlan *plan, int stage, int rank) {
  int n[3] = {px_plan_etp(plan), MAX(plan->ep, 1), px_plan_edp(plan)};
  for (int a = 0; a < n[0]; a++)
    for (int b = 0; b < n[1]; b++)
      for (int e = 0; e < n[2]; e++)
        if (px_moe_rank_of(plan, stage, a, b, e) == rank) return e;
  return 0;
}

PxZero3Walk *px_zero3_walk_new(const PxModel *model, const PxPlan *plan, const PxPartition *part,
                               const PxProgram *prog, int rank) {
  int v = MAX(prog->vpp, 1), dp_rank, stage;
  px_plan_rank_coords(plan, rank, &dp_rank, NULL, &stage);
  const PxRankProgram *rp = &prog->ranks[stage];
  gboolean split = experts_own_group(model, plan);
  Walk k = {model, plan, part, prog, stage, dp_rank, split ? edp_rank_of(plan, stage, rank) : 0,
            px_plan_data_ranks(plan), FALSE, split, -1, g_new0(ChunkLayout, v), {-1, -1}, {-1, -1}, -1,
            g_new0(PxZero3Walk, 1), g_array_new(FALSE, FALSE, sizeof(PxZero3Use)),
            g_array_new(FALSE, FALSE, sizeof(PxZero3Gather))};
  k.w->n = rp->n;
  k.w->gathers = g_new0(int, rp->n);
  k.w->on_demand = g_new0(int, rp->n);
  k.w->received = g_new0(gint64, rp->n);
  k.w->use_at = g_new0(guint, rp->n + 1);
  k.w->seq_at = g_new0(guint, rp->n + 1);
  for (int c = 0; c < v; c++)
    if (chunk_first(&k, c) == 0) {
      k.holds_emb = TRUE;
      k.emb_chunk = c;
    }
  for (int c = 0; c < v; c++) {
    int first = chunk_first(&k, c), end = chunk_end(&k, c);
    ChunkLayout *cl = &k.cl[c];
    cl->flat = px_flat_chunk_new(model, plan, first, end, k.holds_emb);
    cl->doff = g_new0(gint64, end - first);
    cl->eoff = g_new0(gint64, end - first);
    for (int li = first; li < end; li++) {
      gint64 e;
      cl->doff[li - first] = cl->nd;
      cl->eoff[li - first] = cl->ne;
      cl->nd += layer_elems(&k, c, li, &e);
      cl->ne += e;
    }
    cl->sd = px_zero_shard(cl->nd, k.data);
    cl->se = split ? px_zero_shard(cl->ne, px_plan_edp(plan)) : 0;
    cl->pad_d = cl->sd * k.data;
  }
  for (guint i = 0; i < rp->n; i++) {
    const PxInstr *in = &rp->instrs[i];
    k.w->use_at[i] = k.uses->len;
    k.w->seq_at[i] = k.seq->len;
    if (in->kind == PX_OP_GATHER_PARAMS) {
      int first = chunk_first(&k, in->chunk);
      if (slot_of(&k, in->chunk, first) < 0) gather(&k, i, -1, in->chunk, first, k.zcur == 0 ? 1 : 0, TRUE);
    } else if (reads_weights(in->kind)) {
      walk_pass(&k, i, in->chunk, in->kind != PX_OP_FORWARD);
    }
  }
  k.w->use_at[rp->n] = k.w->n_uses = k.uses->len;
  k.w->seq_at[rp->n] = k.w->n_seq = k.seq->len;
  k.w->uses = (PxZero3Use *)g_array_free(k.uses, FALSE);
  k.w->seq = (PxZero3Gather *)g_array_free(k.seq, FALSE);
  for (int c = 0; c < v; c++) {
    px_flat_chunk_free(k.cl[c].flat);
    g_free(k.cl[c].doff);
    g_free(k.cl[c].eoff);
  }
  g_free(k.cl);
  return k.w;
}

void px_zero3_walk_free(PxZero3Walk *w) {
  if (!w) return;
  g_free(w->gathers);
  g_free(w->on_demand);
  g_free(w->received);
  g_free(w->uses);
  g_free(w->use_at);
  g_free(w->seq);
  g_free(w->seq_at);
  g_free(w);
}
