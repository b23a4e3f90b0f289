/* moe_layer.c — routed experts: router, top-k, the capacity's drops (if the
 * model has a capacity factor), all-to-all dispatch, expert MLPs, combine,
 * their backward and the load-balancing loss (see moe_layer.h, docs/moe.md). */
#include "moe_layer.h"
#include "moe.h"
#include "check.h"
#include <math.h>
#include <string.h>

#define TRY(x)                                                                                     \
  do {                                                                                             \
    if (!(x)) return FALSE;                                                                        \
  } while (0)

#define CS(r) px_backend_compute_stream((r)->be)

/* A view of rows [r0, r0 + n) of a (rows, cols) region starting at element base. */
static PxTensor *rows_view(PxTensor *t, const char *name, gint64 base, gint64 r0, gint64 n, gint64 cols,
                           GError **error) {
  gint64 shape[2] = {MAX(n, 1), cols};
  return px_tensor_view(t, name, base + r0 * cols, 2, shape, error);
}

static PxTensor *tmp(const PxMoeRun *r, const char *name, gint64 rows, gint64 cols, gboolean zeroed, GError **error) {
  gint64 shape[2] = {MAX(rows, 1), cols};
  return (zeroed ? px_tensor_new_zeroed : px_tensor_new)(r->be, name, r->dtype, PX_MEM_BUFFERS, 2, shape, error);
}

/* Upload n elements of host doubles into t at element offset. */
static gboolean put(PxTensor *t, gint64 offset, gint64 n, const double *host, GError **error) {
  if (n == 0) return TRUE;
  g_autoptr(PxTensor) v = px_tensor_view(t, "moe.put", offset, 1, &n, error);
  return v && px_tensor_upload_f64(v, host, error);
}

static gboolean get(PxTensor *t, gint64 offset, gint64 n, double *host, GError **error) {
  if (n == 0) return TRUE;
  g_autoptr(PxTensor) v = px_tensor_view(t, "moe.get", offset, 1, &n, error);
  return v && px_tensor_download_f64(v, host, error);
}

/* The routing as row picks on the device (backend.h px_op_rows_gather,
 * px_op_rows_dot), so that the activations never leave it: tok_of_slot (the
 * T·k rows of the send order) holds each sent copy's token, -1 past the kept
 * copies, and w_of_slot its gate weight; slot_of_copy (token-major, T·k)
 * each copy's row in the send order, -1 when dropped, and w_of_copy its gate
 * weight. Only these (T·k indices and weights) cross from the host. */
typedef struct {
  PxTensor *tok_of_slot, *w_of_slot, *slot_of_copy, *w_of_copy;
} Picks;

static void picks_clear(Picks *pk) {
  g_clear_pointer(&pk->tok_of_slot, px_tensor_free);
  g_clear_pointer(&pk->w_of_slot, px_tensor_free);
  g_clear_pointer(&pk->slot_of_copy, px_tensor_free);
  g_clear_pointer(&pk->w_of_copy, px_tensor_free);
}

/* T·k picks of T tokens with k copies each: slot[i] of copy i = t·k + j
 * (-1 dropped), wt[i] its gate weight. */
static gboolean picks_new(const PxMoeRun *r, gint64 T, int k, const gint64 *slot, const double *wt, Picks *pk,
                          GError **error) {
  gint64 n = MAX(T * k, 1);
  memset(pk, 0, sizeof *pk);
  g_autofree gint32 *tok = g_new(gint32, n), *sl = g_new(gint32, n);
  g_autofree double *ws = g_new0(double, n), *wc = g_new0(double, n);
  for (gint64 q = 0; q < n; q++) tok[q] = sl[q] = -1;
  for (gint64 i = 0; i < T * k; i++) {
    sl[i] = (gint32)slot[i];
    wc[i] = wt[i];
    if (slot[i] >= 0) {
      tok[slot[i]] = (gint32)(i / k);
      ws[slot[i]] = wt[i];
    }
  }
  pk->tok_of_slot = px_tensor_new(r->be, "moe.tok_of_slot", PX_DTYPE_I32, PX_MEM_BUFFERS, 1, &n, error);
  pk->slot_of_copy = pk->tok_of_slot ? px_tensor_new(r->be, "moe.slot_of_copy", PX_DTYPE_I32, PX_MEM_BUFFERS, 1, &n,
                                                     error) : NULL;
  pk->w_of_slot = pk->slot_of_copy ? tmp(r, "moe.w_of_slot", n, 1, FALSE, error) : NULL;
  pk->w_of_copy = pk->w_of_slot ? tmp(r, "moe.w_of_copy", n, 1, FALSE, error) : NULL;
  if (pk->w_of_copy && px_tensor_upload(pk->tok_of_slot, tok, error) && px_tensor_upload(pk->slot_of_copy, sl, error) &&
      px_tensor_upload_f64(pk->w_of_slot, ws, error) && px_tensor_upload_f64(pk->w_of_copy, wc, error))
    return TRUE;
  picks_clear(pk);
  return FALSE;
}

/* The routing of a micro-batch, on the host: the top-k of each token (from
 * the device's px_op_router_topk), their gate weights, the send order (copies grouped by expert, tokens ascending)
 * and the counts. */
typedef struct {
  gint64 T;
  int E, k, local, ep;
  int *idx;          /* (T, k) chosen experts, probability descending */
  double *wt;        /* (T, k) gate weights */
  gboolean *keep;    /* (T, k) the copy is sent (FALSE: dropped over the expert's capacity) */
  gint64 *slot;      /* (T, k) position of the copy in the send order (-1: dropped) */
  gint64 *cnt;       /* (E) copies sent to each expert */
  gsize *sc, *sd;    /* (ep) rows sent to each peer, their offsets */
  gint64 *rc;        /* (ep, local) rows received from each source for each local expert */
  gsize *rcp, *rdp;  /* (ep) rows received from each source, their offsets */
  gint64 received;
  int g;             /* ETP ranks whose received rows the experts see: etp when gathered, else 1 */
  gint64 *rcg;       /* (g, ep, local) rc of each of them (rc is this rank's) */
  gsize *rg, *rgd;   /* (g) rows of each, their offsets in the gathered rows */
  gint64 gathered;
} Route;

static void route_free(Route *rt) {
  g_free(rt->idx);
  g_free(rt->wt);
  g_free(rt->keep);
  g_free(rt->slot);
  g_free(rt->cnt);
  g_free(rt->sc);
  g_free(rt->sd);
  g_free(rt->rc);
  g_free(rt->rcp);
  g_free(rt->rdp);
  g_free(rt->rcg);
  g_free(rt->rg);
  g_free(rt->rgd);
}

/* Gate weights from the chosen experts' probabilities pv (T·k, as idx)
 * (renormalised when the model says so). */
static void route_weights(const PxModelDesc *d, Route *rt, const double *pv) {
  for (gint64 t = 0; t < rt->T; t++) {
    const double *pt = pv + t * rt->k;
    double z = 0;
    for (int j = 0; j < rt->k; j++) z += pt[j];
    for (int j = 0; j < rt->k; j++) rt->wt[t * rt->k + j] = d->norm_topk ? pt[j] / z : pt[j];
  }
}

/* A token copy competing for an expert's capacity. */
typedef struct {
  double w;
  gint64 i;
} Copy;

/* Gate weight descending, then token ascending. */
static int copy_cmp(const void *a, const void *b) {
  const Copy *x = a, *y = b;
  if (x->w != y->w) return x->w > y->w ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

/* The capacity's drops (px_moe_capacity: c copies per expert from this
 * rank's tokens, 0 none). Megatron-Core's default drop policy, "probs"
 * (transformer_config.py moe_token_drop_policy; moe_utils.py
 * topk_softmax_with_capacity: torch.topk of each expert's column of the
 * top-k gate weights, k = the capacity, along the tokens): an expert over
 * capacity keeps the c copies of the largest gate weights (renormalised ones
 * when the model renormalises) and drops the rest; ties go to the earlier
 * token (torch.topk leaves them unspecified). Not "position" (the first c
 * tokens in order). A dropped copy is not sent: its expert output is zero
 * and the token's other copies (and the residual) carry it. */
static void route_capacity(Route *rt, gint64 c) {
  gint64 n = rt->T * rt->k;
  for (gint64 i = 0; i < n; i++) rt->keep[i] = TRUE;
  if (c <= 0) return;
  g_autofree Copy *cp = g_new(Copy, MAX(n, 1));
  for (int e = 0; e < rt->E; e++) {
    gint64 m = 0;
    for (gint64 i = 0; i < n; i++)
      if (rt->idx[i] == e) cp[m++] = (Copy){rt->wt[i], i};
    if (m <= c) continue;
    qsort(cp, (size_t)m, sizeof(Copy), copy_cmp);
    for (gint64 q = c; q < m; q++) rt->keep[cp[q].i] = FALSE;
  }
}

/* The send order and counts from the choices (the kept copies). */
static void route_order(Route *rt) {
  memset(rt->cnt, 0, sizeof(gint64) * rt->E);
  for (gint64 i = 0; i < rt->T * rt->k; i++)
    if (rt->keep[i]) rt->cnt[rt->idx[i]]++;
  g_autofree gint64 *start = g_new0(gint64, rt->E + 1);
  for (int e = 0; e < rt->E; e++) start[e + 1] = start[e] + rt->cnt[e];
  for (gint64 t = 0; t < rt->T; t++) /* tokens ascending within each expert */
    for (int j = 0; j < rt->k; j++) {
      gint64 i = t * rt->k + j;
      rt->slot[i] = rt->keep[i] ? start[rt->idx[i]]++ : -1;
    }
  gsize off = 0;
  for (int q = 0; q < rt->ep; q++) {
    rt->sd[q] = off;
    rt->sc[q] = 0;
    for (int j = 0; j < rt->local; j++) rt->sc[q] += (gsize)rt->cnt[q * rt->local + j];
    off += rt->sc[q];
  }
}

/* The received layout from rc (ep × local counts). */
static void route_received(Route *rt) {
  gsize off = 0;
  for (int q = 0; q < rt->ep; q++) {
    rt->rdp[q] = off;
    rt->rcp[q] = 0;
    for (int j = 0; j < rt->local; j++) rt->rcp[q] += (gsize)rt->rc[q * rt->local + j];
    off += rt->rcp[q];
  }
  rt->received = (gint64)off;
}

static void route_alloc(const PxMoeRun *r, Route *rt) {
  const PxModelDesc *d = r->d;
  rt->T = r->tokens;
  rt->E = d->experts;
  rt->k = d->top_k;
  rt->ep = MAX(r->ep_size, 1);
  rt->local = rt->E / rt->ep;
  rt->idx = g_new(int, rt->T * rt->k);
  rt->wt = g_new(double, rt->T * rt->k);
  rt->keep = g_new(gboolean, rt->T * rt->k);
  rt->slot = g_new(gint64, rt->T * rt->k);
  rt->cnt = g_new0(gint64, rt->E);
  rt->sc = g_new0(gsize, rt->ep);
  rt->sd = g_new0(gsize, rt->ep);
  rt->rc = g_new0(gint64, rt->E);
  rt->rcp = g_new0(gsize, rt->ep);
  rt->rdp = g_new0(gsize, rt->ep);
  rt->g = r->gather ? MAX(r->etp_size, 1) : 1;
  rt->rcg = g_new0(gint64, (gsize)rt->g * rt->E);
  rt->rg = g_new0(gsize, rt->g);
  rt->rgd = g_new0(gsize, rt->g);
}

/* The gathered layout from rcg: this rank's counts, and each ETP rank's rows. */
static void route_gathered(const PxMoeRun *r, Route *rt) {
  memcpy(rt->rc, rt->rcg + (rt->g > 1 ? r->etp_rank : 0) * rt->E, sizeof(gint64) * rt->E);
  route_received(rt);
  gsize off = 0;
  for (int i = 0; i < rt->g; i++) {
    rt->rgd[i] = off;
    rt->rg[i] = 0;
    for (int e = 0; e < rt->E; e++) rt->rg[i] += (gsize)rt->rcg[i * rt->E + e];
    off += rt->rg[i];
  }
  rt->gathered = (gint64)off;
}

/* rows × h scaled counts for the all-to-all-v, in elements */
static void scaled(const gsize *rows, gsize *out, int n, gint64 cols) {
  for (int i = 0; i < n; i++) out[i] = rows[i] * (gsize)cols;
}

/* Move rows between the ranks of the EP group: send (in send order, sc/sd
 * rows per peer) -> recv (rcp/rdp rows per source), or back (reverse). */
static gboolean exchange(const PxMoeRun *r, const Route *rt, const PxTensor *send, PxTensor *recv, gint64 cols,
                         gboolean back, GError **error) {
  int n = rt->ep;
  g_autofree gsize *a = g_new(gsize, n), *b = g_new(gsize, n), *c = g_new(gsize, n), *e = g_new(gsize, n);
  scaled(back ? rt->rcp : rt->sc, a, n, cols);
  scaled(back ? rt->rdp : rt->sd, b, n, cols);
  scaled(back ? rt->sc : rt->rcp, c, n, cols);
  scaled(back ? rt->sd : rt->rdp, e, n, cols);
  if (!r->ep || n == 1) { /* one rank: the exchange is the identity */
    gint64 count = (gint64)a[0];
    if (count == 0) return TRUE;
    g_autoptr(PxTensor) s = px_tensor_view((PxTensor *)send, "moe.send", 0, 1, &count, error);
    g_autoptr(PxTensor) d = px_tensor_view(recv, "moe.recv", 0, 1, &count, error);
    return s && d && px_tensor_copy_async(d, s, CS(r), error);
  }
  return px_comm_all_to_all_v(r->ep, send->data, a, b, recv->data, c, e, r->dtype, CS(r), error);
}

/* All-gather over ETP of each rank's received rows (mine: received × cols)
 * into the gathered rows (gathered × cols): an all-to-all-v sending the same
 * rows to every peer. */
static gboolean etp_gather(const PxMoeRun *r, const Route *rt, const PxTensor *mine, PxTensor *all, gint64 cols,
                           GError **error) {
  int n = rt->g;
  g_autofree gsize *a = g_new(gsize, n), *b = g_new0(gsize, n), *c = g_new(gsize, n), *e = g_new(gsize, n);
  for (int i = 0; i < n; i++) a[i] = (gsize)rt->received * (gsize)cols;
  scaled(rt->rg, c, n, cols);
  scaled(rt->rgd, e, n, cols);
  return px_comm_all_to_all_v(r->etp, mine->data, a, b, all->data, c, e, r->dtype, CS(r), error);
}

/* Reduce-scatter over ETP of the experts' partial rows (gathered × cols):
 * each rank's received rows, summed in ETP rank order, into mine. */
static gboolean etp_scatter(const PxMoeRun *r, const Route *rt, const PxTensor *all, PxTensor *mine, gint64 cols,
                            GError **error) {
  int n = rt->g;
  gint64 R = rt->received;
  g_autoptr(PxTensor) parts = tmp(r, "moe.etp_parts", (gint64)n * R, cols, FALSE, error);
  TRY(parts);
  g_autofree gsize *a = g_new(gsize, n), *b = g_new(gsize, n), *c = g_new(gsize, n), *e = g_new(gsize, n);
  scaled(rt->rg, a, n, cols);
  scaled(rt->rgd, b, n, cols);
  for (int i = 0; i < n; i++) c[i] = (gsize)(R * cols), e[i] = (gsize)(i * R * cols);
  TRY(px_comm_all_to_all_v(r->etp, all->data, a, b, parts->data, c, e, r->dtype, CS(r), error));
  if (R == 0) return TRUE;
  gint64 count = R * cols;
  g_autoptr(PxTensor) out = px_tensor_view(mine, "moe.mine", 0, 1, &count, error);
  g_autoptr(PxTensor) p0 = px_tensor_view(parts, "moe.part", 0, 1, &count, error);
  TRY(out && p0 && px_tensor_copy_async(out, p0, CS(r), error));
  for (int i = 1; i < n; i++) {
    g_autoptr(PxTensor) pi = px_tensor_view(parts, "moe.part", i * count, 1, &count, error);
    TRY(pi && px_op_residual_fwd(r->be, out, out, pi, error));
  }
  return TRUE;
}

/* Without gathering (the same tokens on every ETP rank): the partial rows
 * summed over ETP in place. */
static gboolean etp_sum(const PxMoeRun *r, PxTensor *t, GError **error) {
  if (!r->etp || r->etp_size == 1 || r->gather) return TRUE;
  return px_comm_all_reduce(r->etp, t->data, (gsize)t->numel, r->dtype, PX_RED_SUM, CS(r), error);
}

/* One local expert's rows of a gathered segment: views of its input and
 * inner tensors and of its weights (the rank's f/etp slice). */
typedef struct {
  PxTensor *x, *pre, *up, *act, *y;     /* (n, h), (n, fl) ×3, (n, h) */
  PxTensor *wg, *wu, *wd, *gg, *gu, *gd; /* weights (fl, h), (fl, h), (h, fl) and gradients */
} Seg;

static void seg_clear(Seg *s) {
  PxTensor **all[] = {&s->x, &s->pre, &s->up, &s->act, &s->y, &s->wg, &s->wu, &s->wd, &s->gg, &s->gu, &s->gd};
  for (gsize i = 0; i < G_N_ELEMENTS(all); i++) g_clear_pointer(all[i], px_tensor_free);
}

/* Segment of local expert j at gathered rows [r0, r0 + n); y may be NULL. */
static gboolean seg_views(const PxMoeRun *r, const PxMoeWeights *w, PxTensor *saved, const PxMoeExecLayout *L,
                          PxTensor *y, int j, gint64 r0, gint64 n, gboolean grads, Seg *s, GError **error) {
  const PxModelDesc *d = r->d;
  gint64 h = d->hidden, f = L->fl, R = L->rows_max;
  gboolean gated = px_ffn_gated(d->ffn_kind);
  *s = (Seg){0};
  TRY(s->x = rows_view(saved, "moe.x", L->x, r0, n, h, error));
  TRY(s->pre = rows_view(saved, "moe.pre", L->inner, r0, n, f, error));
  if (gated) TRY(s->up = rows_view(saved, "moe.up", L->inner + R * f, r0, n, f, error));
  TRY(s->act = rows_view(saved, "moe.act", L->inner + (gated ? 2 : 1) * R * f, r0, n, f, error));
  if (y) TRY(s->y = rows_view(y, "moe.y", 0, r0, n, h, error));
  PxTensor *in_w = gated ? w->gate.w : w->fc.w, *in_g = gated ? w->gate.g : w->fc.g;
  TRY(s->wg = rows_view(in_w, "expert.in", 0, (gint64)j * f, f, h, error));
  if (gated) TRY(s->wu = rows_view(w->up.w, "expert.up", 0, (gint64)j * f, f, h, error));
  TRY(s->wd = rows_view(w->down.w, "expert.down", 0, (gint64)j * h, h, f, error));
  if (grads) {
    TRY(s->gg = rows_view(in_g, "expert.in.grad", 0, (gint64)j * f, f, h, error));
    if (gated) TRY(s->gu = rows_view(w->up.g, "expert.up.grad", 0, (gint64)j * f, f, h, error));
    TRY(s->gd = rows_view(w->down.g, "expert.down.grad", 0, (gint64)j * h, h, f, error));
  }
  return TRUE;
}

/* The segments of the gathered rows, in order: ETP rank i, source q, local
 * expert j, with their rows. */
typedef struct {
  int j;
  gint64 r0, n;
} SegPos;

static GArray *segments(const Route *rt) {
  GArray *a = g_array_new(FALSE, FALSE, sizeof(SegPos));
  gint64 r0 = 0;
  for (int i = 0; i < rt->g; i++)
    for (int q = 0; q < rt->ep; q++)
      for (int j = 0; j < rt->local; j++) {
        gint64 n = rt->rcg[i * rt->E + q * rt->local + j];
        if (n == 0) continue;
        SegPos sp = {j, r0, n};
        g_array_append_val(a, sp);
        r0 += n;
      }
  return a;
}

static gboolean expert_fwd(const PxMoeRun *r, Seg *s, GError **error) {
  PxBackend *be = r->be;
  TRY(px_op_linear_fwd(be, s->pre, s->x, s->wg, NULL, error));
  if (s->up) {
    TRY(px_op_linear_fwd(be, s->up, s->x, s->wu, NULL, error));
    TRY(px_op_swiglu_fwd(be, s->act, s->pre, s->up, error));
  } else {
    TRY(px_op_gelu_fwd(be, s->act, s->pre, error));
  }
  return px_op_linear_fwd(be, s->y, s->act, s->wd, NULL, error);
}

/* ---- forward ---- */

static void layout_of(const PxMoeRun *r, PxMoeExecLayout *L) {
  px_moe_exec_layout(r->d, r->ep_size, MAX(r->etp_size, 1), r->gather ? MAX(r->etp_size, 1) : 1, r->tokens, L);
}

gboolean px_moe_layer_fwd(const PxMoeRun *r, const PxMoeWeights *w, PxTensor *saved, const PxTensor *x, PxTensor *y,
                          double *aux, GError **error) {
  const PxModelDesc *d = r->d;
  PxMoeExecLayout L;
  layout_of(r, &L);
  gint64 T = r->tokens, E = d->experts, k = d->top_k, h = d->hidden;
  /* router logits, softmax and top-k on the device (backend.h
   * px_op_router_topk): the T·E probabilities stay there, in saved for the
   * backward; the choices (T·k), their probabilities in double (T·k) and
   * each expert's sum of probabilities (E) come down in one download, packed
   * in one buffer: topv (f64, T·k) | psum (f64, E) | topi (i32, T·k) */
  gint64 nv = T * k + E, packed_n = nv + (T * k + 1) / 2; /* f64 elements */
  g_autoptr(PxTensor) logits = tmp(r, "moe.logits", T, E, FALSE, error);
  g_autoptr(PxTensor) probs = logits ? px_tensor_view(saved, "moe.probs", L.probs, 2, (gint64[]){T, E}, error) : NULL;
  g_autoptr(PxTensor) packed = probs ? px_tensor_new(r->be, "moe.route", PX_DTYPE_F64, PX_MEM_BUFFERS, 1, &packed_n,
                                                     error) : NULL;
  g_autoptr(PxTensor) topv = packed ? px_tensor_view(packed, "moe.topv", 0, 1, (gint64[]){T * k}, error) : NULL;
  g_autoptr(PxTensor) psum = topv ? px_tensor_view(packed, "moe.psum", T * k, 1, &E, error) : NULL;
  g_autoptr(PxTensor) topi = psum ? px_tensor_view_as(packed, "moe.topi", PX_DTYPE_I32, (gsize)nv * sizeof(double), 1,
                                                      (gint64[]){T * k}, error) : NULL;
  TRY(topi && px_op_linear_fwd(r->be, logits, x, w->router.w, NULL, error) &&
      px_op_router_topk(r->be, probs, topi, topv, psum, logits, (int)k, error));
  Route rt = {0};
  route_alloc(r, &rt);
  g_autofree double *down = g_new(double, packed_n);
  if (!px_tensor_download(packed, down, error)) {
    route_free(&rt);
    return FALSE;
  }
  const double *pv = down, *probs_sum = down + T * k;
  const gint32 *ti = (const gint32 *)(down + nv);
  for (gint64 i = 0; i < T * k; i++) rt.idx[i] = ti[i];
  route_weights(d, &rt, pv);
  /* load-balancing loss: coef · E · Σ f_i P_i over the statistics group's
   * tokens, f_i from the routing before the capacity's drops (Megatron-Core:
   * tokens_per_expert = topk_map.sum(dim=0), taken before the capacity mask) */
  g_autofree double *st = g_new0(double, 2 * E + 1);
  for (gint64 i = 0; i < T * k; i++) st[rt.idx[i]] += 1;
  for (gint64 e = 0; e < E; e++) st[E + e] = probs_sum[e];
  route_capacity(&rt, px_moe_capacity(d, T));
  route_order(&rt);
  st[2 * E] = (double)T;
  gboolean ok = TRUE;
  /* summed over TP (sequence parallel), then over CP: the sums compose to the TP × CP group's */
  PxComm *groups[] = {r->stats, r->stats_cp};
  for (gsize gi = 0; ok && gi < G_N_ELEMENTS(groups); gi++) {
    if (!groups[gi] || px_comm_size(groups[gi]) <= 1) continue;
    g_autoptr(PxTensor) sv = px_tensor_new(r->be, "moe.stats", PX_DTYPE_F64, PX_MEM_BUFFERS, 1, (gint64[]){2 * E + 1}, error);
    ok = sv && px_tensor_upload(sv, st, error) &&
         px_comm_all_reduce(groups[gi], sv->data, (gsize)(2 * E + 1), PX_DTYPE_F64, PX_RED_SUM, CS(r), error) &&
         px_tensor_download(sv, st, error);
  }
  double lb = 0, Tg = st[2 * E];
  for (gint64 e = 0; e < E; e++) lb += st[e] / (Tg * (double)k) * (st[E + e] / Tg);
  *aux = d->aux_loss_coef * (double)E * lb;
  /* saved: probabilities (written above), choices (a dropped copy's expert e as -1 - e);
   * counts[0, E): the copies sent (for the exchange), then d aux / d p;
   * counts[E + i·E, ...): ETP rank i's received */
  g_autofree double *buf = g_new(double, MAX(T * k, (1 + rt.g) * E));
  for (gint64 i = 0; i < T * k; i++) buf[i] = rt.keep[i] ? rt.idx[i] : -1 - rt.idx[i];
  ok = ok && put(saved, L.topk, T * k, buf, error);
  for (gint64 e = 0; e < E; e++) buf[e] = (double)rt.cnt[e];
  ok = ok && put(saved, L.counts, E, buf, error);
  gint64 mine = L.counts + E + (rt.g > 1 ? r->etp_rank : 0) * E; /* this rank's received counts */
  if (ok && r->ep && rt.ep > 1) { /* an all-to-all of E/ep counts per peer */
    gsize es = px_dtype_size(r->dtype);
    ok = px_comm_all_to_all(r->ep, (char *)saved->data + L.counts * es, (char *)saved->data + mine * es,
                            (gsize)rt.local, r->dtype, CS(r), error);
  } else if (ok) {
    ok = put(saved, mine, E, buf, error);
  }
  if (ok && rt.g > 1) { /* every ETP rank's, in place */
    gsize es = px_dtype_size(r->dtype);
    ok = px_comm_all_gather(r->etp, (char *)saved->data + mine * es, (char *)saved->data + (L.counts + E) * es,
                            (gsize)E, r->dtype, CS(r), error);
  }
  ok = ok && get(saved, L.counts + E, rt.g * E, buf, error);
  if (ok) {
    for (gint64 i = 0; i < rt.g * E; i++) rt.rcg[i] = (gint64)llround(buf[i]);
    route_gathered(r, &rt);
    /* the counts sent are done with: keep there d aux / d p_ti = coef · E · f_i / T_group for the backward */
    for (gint64 e = 0; e < E; e++) buf[e] = d->aux_loss_coef * (double)E * st[e] / (Tg * (double)k) / Tg;
    ok = put(saved, L.counts, E, buf, error);
  }
  if (ok && rt.gathered > L.rows_max)
    ok = px_fail(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE,
                 "MoE: %" G_GINT64_FORMAT " rows for the experts, more than the %" G_GINT64_FORMAT " the layout holds",
                 rt.gathered, L.rows_max);
  /* dispatch: the token copies in send order, picked on the device */
  Picks pk = {0};
  ok = ok && picks_new(r, T, (int)k, rt.slot, rt.wt, &pk, error);
  g_autoptr(PxTensor) send = ok ? tmp(r, "moe.send", T * k, h, FALSE, error) : NULL;
  ok = ok && send && px_op_rows_gather(r->be, send, x, pk.tok_of_slot, NULL, 1, error);
  g_autoptr(PxTensor) xg = ok ? px_tensor_view(saved, "moe.x", L.x, 2, (gint64[]){L.rows_max, h}, error) : NULL;
  g_autoptr(PxTensor) xr = ok && rt.g > 1 ? tmp(r, "moe.x_mine", rt.received, h, FALSE, error) : NULL;
  ok = ok && xg && (rt.g == 1 || xr) && exchange(r, &rt, send, rt.g > 1 ? xr : xg, h, FALSE, error);
  if (ok && rt.g > 1) ok = etp_gather(r, &rt, xr, xg, h, error);
  /* the experts */
  g_autoptr(PxTensor) yg = ok ? tmp(r, "moe.y", L.rows_max, h, FALSE, error) : NULL;
  g_autoptr(GArray) segs = segments(&rt);
  for (guint i = 0; ok && yg && i < segs->len; i++) {
    SegPos *sp = &g_array_index(segs, SegPos, i);
    Seg sg;
    ok = seg_views(r, w, saved, &L, yg, sp->j, sp->r0, sp->n, FALSE, &sg, error) && expert_fwd(r, &sg, error);
    seg_clear(&sg);
  }
  ok = ok && yg;
  g_autoptr(PxTensor) yr = ok && rt.g > 1 ? tmp(r, "moe.y_mine", rt.received, h, FALSE, error) : NULL;
  if (ok && rt.g > 1) ok = yr && etp_scatter(r, &rt, yg, yr, h, error);
  /* combine: back to the senders, weighted by the gates */
  g_autoptr(PxTensor) yret = ok ? px_tensor_view(saved, "moe.yret", L.yret, 2, (gint64[]){MAX(T * k, 1), h}, error) : NULL;
  ok = ok && yret && exchange(r, &rt, rt.g > 1 ? yr : yg, yret, h, TRUE, error) && etp_sum(r, yret, error) &&
       px_op_rows_gather(r->be, y, yret, pk.slot_of_copy, pk.w_of_copy, (int)k, error);
  picks_clear(&pk);
  route_free(&rt);
  return ok;
}

/* ---- backward ---- */

gboolean px_moe_layer_bwd(const PxMoeRun *r, const PxMoeWeights *w, PxTensor *saved, const PxTensor *x,
                          const PxTensor *dy, PxTensor *dx, double daux, GError **error) {
  const PxModelDesc *d = r->d;
  PxMoeExecLayout L;
  layout_of(r, &L);
  gint64 T = r->tokens, E = d->experts, k = d->top_k, h = d->hidden, f = L.fl;
  gboolean gated = px_ffn_gated(d->ffn_kind);
  Route rt = {0};
  route_alloc(r, &rt);
  gint64 nk = MAX(T * k, 1);
  g_autofree double *buf = g_new(double, MAX(T * k, rt.g * E)), *pv = g_new(double, nk);
  g_autofree gint32 *ti = g_new(gint32, nk), *gi = g_new(gint32, nk);
  gboolean ok = get(saved, L.topk, T * k, buf, error);
  for (gint64 i = 0; ok && i < T * k; i++) {
    int v = (int)llround(buf[i]);
    rt.keep[i] = v >= 0;
    rt.idx[i] = v >= 0 ? v : -1 - v;
    ti[i] = rt.idx[i];
    gi[i] = (gint32)((i / k) * E + rt.idx[i]); /* its probability's element */
  }
  /* the chosen experts' probabilities (T·k) picked from the saved T·E on the
   * device and brought down for the gate weights; the choices go up */
  g_autoptr(PxTensor) probs = ok ? px_tensor_view(saved, "moe.probs", L.probs, 2, (gint64[]){T, E}, error) : NULL;
  g_autoptr(PxTensor) pflat = probs ? px_tensor_view(saved, "moe.probs", L.probs, 2, (gint64[]){T * E, 1}, error) : NULL;
  g_autoptr(PxTensor) topi = pflat ? px_tensor_new(r->be, "moe.topi", PX_DTYPE_I32, PX_MEM_BUFFERS, 1, &nk, error) : NULL;
  g_autoptr(PxTensor) gidx = topi ? px_tensor_new(r->be, "moe.pick", PX_DTYPE_I32, PX_MEM_BUFFERS, 1, &nk, error) : NULL;
  g_autoptr(PxTensor) pvt = gidx ? tmp(r, "moe.topv", nk, 1, FALSE, error) : NULL;
  ok = ok && pvt && px_tensor_upload(topi, ti, error) && px_tensor_upload(gidx, gi, error) &&
       px_op_rows_gather(r->be, pvt, pflat, gidx, NULL, 1, error) && px_tensor_download_f64(pvt, pv, error);
  if (ok) {
    route_weights(d, &rt, pv);
    route_order(&rt);
    ok = get(saved, L.counts + E, rt.g * E, buf, error);
  }
  if (ok) {
    for (gint64 i = 0; i < rt.g * E; i++) rt.rcg[i] = (gint64)llround(buf[i]);
    route_gathered(r, &rt);
  }
  /* the gates' gradients (dy · a copy's output; 0 for a dropped copy) and
   * the copies' output gradients (the gate weight · dy), on the device */
  Picks pk = {0};
  ok = ok && picks_new(r, T, (int)k, rt.slot, rt.wt, &pk, error);
  g_autoptr(PxTensor) yret = ok ? px_tensor_view(saved, "moe.yret", L.yret, 2, (gint64[]){MAX(T * k, 1), h}, error) : NULL;
  g_autoptr(PxTensor) dgt = ok ? tmp(r, "moe.dgate", T * k, 1, FALSE, error) : NULL;
  ok = ok && yret && dgt && px_op_rows_dot(r->be, dgt, dy, yret, pk.slot_of_copy, (int)k, error);
  g_autoptr(PxTensor) dsend = ok ? tmp(r, "moe.dy_send", T * k, h, FALSE, error) : NULL;
  g_autoptr(PxTensor) dyg = ok ? tmp(r, "moe.dy", L.rows_max, h, TRUE, error) : NULL;
  g_autoptr(PxTensor) dym = ok && rt.g > 1 ? tmp(r, "moe.dy_mine", rt.received, h, FALSE, error) : NULL;
  ok = ok && dsend && dyg && (rt.g == 1 || dym) && px_op_rows_gather(r->be, dsend, dy, pk.tok_of_slot, pk.w_of_slot, 1,
                                                                      error) &&
       exchange(r, &rt, dsend, rt.g > 1 ? dym : dyg, h, FALSE, error);
  if (ok && rt.g > 1) ok = etp_gather(r, &rt, dym, dyg, h, error);
  /* the experts' backward, segment by segment */
  g_autoptr(PxTensor) dxg = ok ? tmp(r, "moe.dx", L.rows_max, h, TRUE, error) : NULL;
  g_autoptr(PxTensor) dpre = ok ? tmp(r, "moe.dpre", L.rows_max, f, TRUE, error) : NULL;
  g_autoptr(PxTensor) dup = ok && gated ? tmp(r, "moe.dup", L.rows_max, f, TRUE, error) : NULL;
  g_autoptr(PxTensor) dact = ok ? tmp(r, "moe.dact", L.rows_max, f, TRUE, error) : NULL;
  ok = ok && dxg && dpre && dact && (!gated || dup);
  g_autoptr(GArray) segs = segments(&rt);
  for (guint i = 0; ok && i < segs->len; i++) {
    SegPos *sp = &g_array_index(segs, SegPos, i);
    gint64 r0 = sp->r0, n = sp->n;
    Seg s;
    g_autoptr(PxTensor) vdy = rows_view(dyg, "moe.dy", 0, r0, n, h, error);
    g_autoptr(PxTensor) vdx = rows_view(dxg, "moe.dx", 0, r0, n, h, error);
    g_autoptr(PxTensor) vdpre = rows_view(dpre, "moe.dpre", 0, r0, n, f, error);
    g_autoptr(PxTensor) vdup = gated ? rows_view(dup, "moe.dup", 0, r0, n, f, error) : NULL;
    g_autoptr(PxTensor) vdact = rows_view(dact, "moe.dact", 0, r0, n, f, error);
    ok = vdy && vdx && vdpre && vdact && (!gated || vdup) && seg_views(r, w, saved, &L, NULL, sp->j, r0, n, TRUE, &s, error);
    if (!ok) break;
    ok = px_op_linear_bwd(r->be, vdact, s.gd, NULL, vdy, s.act, s.wd, error);
    if (ok && gated)
      ok = px_op_swiglu_bwd(r->be, vdpre, vdup, vdact, s.pre, s.up, error) &&
           px_op_linear_bwd(r->be, vdx, s.gu, NULL, vdup, s.x, s.wu, error);
    else if (ok)
      ok = px_op_gelu_bwd(r->be, vdpre, vdact, s.pre, error);
    ok = ok && px_op_linear_bwd(r->be, vdx, s.gg, NULL, vdpre, s.x, s.wg, error);
    seg_clear(&s);
  }
  /* the input gradients back to the senders (summed over ETP), summed over each token's copies */
  g_autoptr(PxTensor) dxm = ok && rt.g > 1 ? tmp(r, "moe.dx_mine", rt.received, h, FALSE, error) : NULL;
  if (ok && rt.g > 1) ok = dxm && etp_scatter(r, &rt, dxg, dxm, h, error);
  g_autoptr(PxTensor) dxs = ok ? tmp(r, "moe.dx_send", T * k, h, FALSE, error) : NULL;
  /* summed over each token's copies on the device (into the router's dx, below) */
  g_autoptr(PxTensor) dxt = ok ? tmp(r, "moe.dx_tokens", T, h, FALSE, error) : NULL;
  ok = ok && dxs && dxt && exchange(r, &rt, rt.g > 1 ? dxm : dxg, dxs, h, TRUE, error) && etp_sum(r, dxs, error) &&
       px_op_rows_gather(r->be, dxt, dxs, pk.slot_of_copy, NULL, (int)k, error);
  picks_clear(&pk);
  /* the router on the device (backend.h px_op_router_bwd): d(gate weight)
   * -> d(probabilities) (+ the load-balancing loss's through P_i: daux ·
   * d aux / d p, kept in counts[0, E) by the forward) -> softmax backward ->
   * d(logits) */
  g_autoptr(PxTensor) dlog = ok ? tmp(r, "moe.dlogits", T, E, FALSE, error) : NULL;
  g_autoptr(PxTensor) fcnt = dlog ? px_tensor_view(saved, "moe.fcnt", L.counts, 1, &E, error) : NULL;
  ok = ok && fcnt && px_op_router_bwd(r->be, dlog, probs, topi, dgt, fcnt, daux, d->norm_topk, (int)k, error) &&
       px_op_linear_bwd(r->be, dxt, w->router.g, NULL, dlog, x, w->router.w, error) &&
       px_op_residual_bwd(r->be, dx, NULL, dxt, error);
  route_free(&rt);
  return ok;
}
