/* test_moe_layer.c — the executor's routed experts (exec/moe_layer.c) on the
 * cpu backend in f64:
 *  - forward against a dense reference computed here in double, token by
 *    token and expert by expert (softmax, top-k, renormalised or not, each
 *    chosen expert's SwiGLU or GELU MLP, the weighted sum) and the
 *    load-balancing loss coef · E · Σ_i f_i P_i from its definition;
 *  - every gradient (router, experts, input) against central finite
 *    differences of J = Σ c·y + λ·aux;
 *  - expert parallelism over 2 and 4 thread-ranks (the all-to-all-v
 *    dispatch), expert tensor parallelism 2 (alone, with ep 2, and on ranks
 *    holding the same tokens): each rank's output, input gradient and router
 *    gradient equal the one-rank values on its own tokens, and its expert
 *    gradients its slice of the sum over every token its experts saw of the
 *    one-rank gradients;
 *  - a capacity factor (px_moe_capacity, Megatron-Core's "probs" drop
 *    policy): which copies a hand-made router drops, the output of the kept
 *    ones and zero for the dropped, the load-balancing loss of the routing
 *    before the drops; the gradients against central differences with drops;
 *    ep 2 and ep 2 · etp 2 with drops equal one rank per token block (each
 *    source rank caps its own tokens). */
#include <glib.h>
#include <math.h>
#include <string.h>
#include "moe.h"
#include "moe_layer.h"

typedef struct {
  PxModelDesc d;
  gint64 T;
  double *x, *wr, *wg, *wu, *wd; /* full (all experts) */
} Case;

static double *rnd(GRand *r, gint64 n, double scale) {
  double *v = g_new(double, n);
  for (gint64 i = 0; i < n; i++) v[i] = scale * g_rand_double_range(r, -1, 1);
  return v;
}

static void case_init(Case *c, PxFfnKind kind, gboolean norm_topk, guint32 seed, gint64 T) {
  memset(c, 0, sizeof *c);
  c->d.name = "moe-layer";
  c->d.hidden = 4;
  c->d.experts = 4;
  c->d.top_k = 2;
  c->d.expert_ffn = 3;
  c->d.ffn_kind = kind;
  c->d.norm_topk = norm_topk;
  c->d.aux_loss_coef = 0.1;
  c->T = T;
  gint64 h = 4, E = 4, f = 3;
  g_autoptr(GRand) r = g_rand_new_with_seed(seed);
  c->x = rnd(r, T * h, 1.0);
  c->wr = rnd(r, E * h, 1.0);
  c->wg = rnd(r, E * f * h, 0.7);
  c->wu = rnd(r, E * f * h, 0.7);
  c->wd = rnd(r, E * h * f, 0.7);
}

static void case_clear(Case *c) {
  g_free(c->x);
  g_free(c->wr);
  g_free(c->wg);
  g_free(c->wu);
  g_free(c->wd);
}

/* ---- the reference: a dense loop in double ---- */

static double silu(double g) { return g / (1 + exp(-g)); }
static double gelu(double x) { return 0.5 * x * (1 + tanh(sqrt(2 / G_PI) * (x + 0.044715 * x * x * x))); }

/* y (T, h) and the aux loss of x (T rows from row t0 of c->x); keep (T, E),
 * may be NULL: the copies sent (the others dropped: no output) */
static double reference_kept(const Case *c, const double *x, gint64 T, double *y, const gboolean *keep) {
  const PxModelDesc *d = &c->d;
  int h = d->hidden, E = d->experts, k = d->top_k, f = d->expert_ffn;
  g_autofree double *cnt = g_new0(double, E), *psum = g_new0(double, E);
  for (gint64 t = 0; t < T; t++) {
    const double *xt = x + t * h;
    double p[16], z = 0, mx = -INFINITY;
    for (int e = 0; e < E; e++) {
      p[e] = 0;
      for (int i = 0; i < h; i++) p[e] += c->wr[e * h + i] * xt[i];
      mx = MAX(mx, p[e]);
    }
    for (int e = 0; e < E; e++) z += p[e] = exp(p[e] - mx);
    for (int e = 0; e < E; e++) p[e] /= z, psum[e] += p[e];
    int chosen[16];
    gboolean used[16] = {FALSE};
    for (int j = 0; j < k; j++) {
      int b = -1;
      for (int e = 0; e < E; e++)
        if (!used[e] && (b < 0 || p[e] > p[b])) b = e;
      used[b] = TRUE, chosen[j] = b, cnt[b]++;
    }
    double zk = 0;
    for (int j = 0; j < k; j++) zk += p[chosen[j]];
    for (int i = 0; i < h; i++) y[t * h + i] = 0;
    for (int j = 0; j < k; j++) {
      int e = chosen[j];
      if (keep && !keep[t * E + e]) continue;
      double w = d->norm_topk ? p[e] / zk : p[e], a[16];
      for (int u = 0; u < f; u++) {
        double g = 0, up = 0;
        for (int i = 0; i < h; i++) {
          g += c->wg[((gint64)e * f + u) * h + i] * xt[i];
          up += c->wu[((gint64)e * f + u) * h + i] * xt[i];
        }
        a[u] = d->ffn_kind == PX_FFN_SWIGLU ? silu(g) * up : gelu(g);
      }
      for (int i = 0; i < h; i++) {
        double o = 0;
        for (int u = 0; u < f; u++) o += c->wd[((gint64)e * h + i) * f + u] * a[u];
        y[t * h + i] += w * o;
      }
    }
  }
  double lb = 0;
  for (int e = 0; e < E; e++) lb += cnt[e] / (double)(T * k) * psum[e] / (double)T;
  return d->aux_loss_coef * E * lb;
}

static double reference(const Case *c, const double *x, gint64 T, double *y) { return reference_kept(c, x, T, y, NULL); }

/* ---- the layer on the cpu backend ---- */

typedef struct {
  PxBackend *be;
  PxTensor *x, *y, *saved, *dx, *dy;
  PxTensor *t[4], *g[4]; /* router, in (gate or fc), up, down: weights and gradients */
  PxMoeWeights w;
  PxMoeRun run;
} Layer;

static PxTensor *f64(PxBackend *be, const char *name, gint64 rows, gint64 cols, const double *v) {
  g_autoptr(GError) error = NULL;
  gint64 shape[2] = {rows, cols};
  PxTensor *t = px_tensor_new_zeroed(be, name, PX_DTYPE_F64, PX_MEM_BUFFERS, 2, shape, &error);
  g_assert_no_error(error);
  if (v) g_assert_true(px_tensor_upload_f64(t, v, &error));
  return t;
}

/* Expert e0.. e0+loc-1 of a stacked (E·out, in) tensor, each expert's rows
 * [er·out/etp, ...) (rows) or columns [er·in/etp, ...) (cols). */
static double *expert_slice(const double *full, gint64 e0, gint64 loc, gint64 out, gint64 in, int etp, int er,
                            gboolean rows) {
  gint64 ro = rows ? out / etp : out, ci = rows ? in : in / etp;
  double *v = g_new(double, loc * ro * ci);
  for (gint64 j = 0; j < loc; j++)
    for (gint64 i = 0; i < ro; i++)
      for (gint64 q = 0; q < ci; q++)
        v[(j * ro + i) * ci + q] = full[((e0 + j) * out + (rows ? er * ro : 0) + i) * in + (rows ? 0 : er * ci) + q];
  return v;
}

/* This rank's layer: experts [ep_rank · E/ep, ...) of the case, each's
 * etp_rank slice, T tokens from x. */
static void layer_init_etp(Layer *L, const Case *c, const double *x, gint64 T, PxComm *ep, int ep_size, int ep_rank,
                           PxComm *etp, int etp_size, int etp_rank, gboolean gather) {
  const PxModelDesc *d = &c->d;
  gint64 h = d->hidden, E = d->experts, f = d->expert_ffn, loc = E / ep_size, fl = f / etp_size;
  memset(L, 0, sizeof *L);
  L->be = px_backend_new("cpu", 0, NULL);
  L->run = (PxMoeRun){L->be, ep, ep_size, ep_rank, PX_DTYPE_F64, d, T, NULL, etp, etp_size, etp_rank, gather, NULL};
  L->x = f64(L->be, "x", T, h, x);
  L->y = f64(L->be, "y", T, h, NULL);
  L->dx = f64(L->be, "dx", T, h, NULL);
  PxMoeExecLayout ml;
  px_moe_exec_layout(d, ep_size, etp_size, gather ? etp_size : 1, T, &ml);
  L->saved = f64(L->be, "saved", ml.total, 1, NULL);
  gboolean gated = d->ffn_kind == PX_FFN_SWIGLU;
  gint64 e0 = ep_rank * loc;
  g_autofree double *wg = expert_slice(c->wg, e0, loc, f, h, etp_size, etp_rank, TRUE);
  g_autofree double *wu = expert_slice(c->wu, e0, loc, f, h, etp_size, etp_rank, TRUE);
  g_autofree double *wd = expert_slice(c->wd, e0, loc, h, f, etp_size, etp_rank, FALSE);
  L->t[0] = f64(L->be, "router", E, h, c->wr);
  L->t[1] = f64(L->be, "in", loc * fl, h, wg);
  L->t[2] = f64(L->be, "up", loc * fl, h, wu);
  L->t[3] = f64(L->be, "down", loc * h, fl, wd);
  for (int i = 0; i < 4; i++) L->g[i] = f64(L->be, "grad", L->t[i]->shape[0], L->t[i]->shape[1], NULL);
  L->w.router = (PxMoeWeight){L->t[0], L->g[0]};
  if (gated) {
    L->w.gate = (PxMoeWeight){L->t[1], L->g[1]};
    L->w.up = (PxMoeWeight){L->t[2], L->g[2]};
  } else {
    L->w.fc = (PxMoeWeight){L->t[1], L->g[1]};
  }
  L->w.down = (PxMoeWeight){L->t[3], L->g[3]};
}

static void layer_init(Layer *L, const Case *c, const double *x, gint64 T, PxComm *ep, int ep_size, int ep_rank) {
  layer_init_etp(L, c, x, T, ep, ep_size, ep_rank, NULL, 1, 0, TRUE);
}

static void layer_clear(Layer *L) {
  PxTensor *all[] = {L->x, L->y, L->saved, L->dx, L->dy, L->t[0], L->t[1], L->t[2], L->t[3],
                     L->g[0], L->g[1], L->g[2], L->g[3]};
  for (gsize i = 0; i < G_N_ELEMENTS(all); i++) px_tensor_free(all[i]);
  px_backend_free(L->be);
}

static double layer_fwd(Layer *L, double *y) {
  g_autoptr(GError) error = NULL;
  double aux = 0;
  g_assert_true(px_moe_layer_fwd(&L->run, &L->w, L->saved, L->x, L->y, &aux, &error));
  g_assert_no_error(error);
  if (y) g_assert_true(px_tensor_download_f64(L->y, y, &error));
  return aux;
}

static void layer_bwd(Layer *L, const double *dy, double daux) {
  g_autoptr(GError) error = NULL;
  if (!L->dy) L->dy = f64(L->be, "dy", L->x->shape[0], L->x->shape[1], NULL);
  g_assert_true(px_tensor_upload_f64(L->dy, dy, &error));
  g_assert_true(px_moe_layer_bwd(&L->run, &L->w, L->saved, L->x, L->dy, L->dx, daux, &error));
  g_assert_no_error(error);
}

static void assert_close(const char *what, const double *got, const double *want, gint64 n, double tol) {
  for (gint64 i = 0; i < n; i++)
    if (!(fabs(got[i] - want[i]) <= tol * MAX(1.0, fabs(want[i]))))
      g_error("%s[%" G_GINT64_FORMAT "]: %.12g, expected %.12g", what, i, got[i], want[i]);
}

static void check_forward(PxFfnKind kind, gboolean norm_topk) {
  Case c;
  case_init(&c, kind, norm_topk, 7, 6);
  Layer L;
  layer_init(&L, &c, c.x, c.T, NULL, 1, 0);
  g_autofree double *y = g_new(double, c.T * 4), *want = g_new(double, c.T * 4);
  double aux = layer_fwd(&L, y), want_aux = reference(&c, c.x, c.T, want);
  assert_close("y", y, want, c.T * 4, 1e-12);
  g_assert_cmpfloat(fabs(aux - want_aux), <=, 1e-12);
  layer_clear(&L);
  case_clear(&c);
}

static void test_forward_swiglu_norm(void) { check_forward(PX_FFN_SWIGLU, TRUE); }
static void test_forward_swiglu(void) { check_forward(PX_FFN_SWIGLU, FALSE); }
static void test_forward_gelu(void) { check_forward(PX_FFN_GELU, FALSE); }

/* J = Σ c·y + λ aux: the analytic gradients against central differences. */
static void check_gradients_cf(PxFfnKind kind, gboolean norm_topk, double cf) {
  Case c;
  case_init(&c, kind, norm_topk, 11, 6);
  c.d.capacity_factor = cf;
  Layer L;
  layer_init(&L, &c, c.x, c.T, NULL, 1, 0);
  gint64 n = c.T * 4;
  const double lambda = 0.7;
  g_autoptr(GRand) r = g_rand_new_with_seed(3);
  g_autofree double *cy = rnd(r, n, 1.0), *y = g_new(double, n);
  layer_fwd(&L, NULL);
  if (cf > 0) { /* the case drops copies (saved as -1 - expert) */
    PxMoeExecLayout ml;
    px_moe_exec_layout(&c.d, 1, 1, 1, c.T, &ml);
    g_autofree double *topk = g_new(double, c.T * 2);
    g_autoptr(GError) error = NULL;
    g_autoptr(PxTensor) v = px_tensor_view(L.saved, "topk", ml.topk, 1, (gint64[]){c.T * 2}, &error);
    g_assert_true(v && px_tensor_download_f64(v, topk, &error));
    int dropped = 0;
    for (gint64 i = 0; i < c.T * 2; i++) dropped += topk[i] < 0;
    g_test_message("capacity factor %g: capacity %" G_GINT64_FORMAT ", %d of %" G_GINT64_FORMAT " copies dropped", cf,
                   px_moe_capacity(&c.d, c.T), dropped, c.T * 2);
    g_assert_cmpint(dropped, >, 0);
  }
  layer_bwd(&L, cy, lambda);
  /* every tensor: x and the four weights */
  PxTensor *ts[5] = {L.x, L.t[0], L.t[1], L.t[2], L.t[3]}, *gs[5] = {L.dx, L.g[0], L.g[1], L.g[2], L.g[3]};
  const char *names[5] = {"dx", "router", "in", "up", "down"};
  for (int k = 0; k < 5; k++) {
    if (k == 3 && kind != PX_FFN_SWIGLU) continue;
    gint64 m = ts[k]->numel;
    g_autofree double *v = g_new(double, m), *an = g_new(double, m), *fd = g_new(double, m);
    g_autoptr(GError) error = NULL;
    g_assert_true(px_tensor_download_f64(ts[k], v, &error));
    g_assert_true(px_tensor_download_f64(gs[k], an, &error));
    for (gint64 i = 0; i < m; i++) {
      const double eps = 1e-6;
      double keep = v[i], J[2];
      for (int s = 0; s < 2; s++) {
        v[i] = keep + (s ? -eps : eps);
        g_assert_true(px_tensor_upload_f64(ts[k], v, &error));
        double aux = layer_fwd(&L, y), j = lambda * aux;
        for (gint64 q = 0; q < n; q++) j += cy[q] * y[q];
        J[s] = j;
      }
      v[i] = keep;
      g_assert_true(px_tensor_upload_f64(ts[k], v, &error));
      fd[i] = (J[0] - J[1]) / (2 * eps);
    }
    assert_close(names[k], an, fd, m, 1e-6);
  }
  layer_clear(&L);
  case_clear(&c);
}

static void check_gradients(PxFfnKind kind, gboolean norm_topk) { check_gradients_cf(kind, norm_topk, 0); }
static void test_gradients_swiglu_norm(void) { check_gradients(PX_FFN_SWIGLU, TRUE); }
static void test_gradients_gelu(void) { check_gradients(PX_FFN_GELU, FALSE); }
/* T 6, k 2, E 4, capacity factor 0.5: capacity ceil(6·2/4 · 0.5) = 2 */
static void test_gradients_capacity_norm(void) { check_gradients_cf(PX_FFN_SWIGLU, TRUE, 0.5); }
static void test_gradients_capacity(void) { check_gradients_cf(PX_FFN_GELU, FALSE, 0.5); }

/* Which copies a capacity drops, by hand. Router = identity (h = E = 4), so
 * token t's logits are its x row: (d_t, 0, -5, -5), d = 0.5, 2, -1, 1, -0.3,
 * 0.1: every token chooses experts 0 and 1, renormalised gate weights
 * w0 = σ(d_t), w1 = σ(-d_t). T 6, k 2, E 4, capacity factor 0.5: capacity
 * ceil(6·2/4 · 0.5) = 2 copies per expert. Expert 0 has 6 copies and keeps
 * the two of the largest w0 (policy "probs"): tokens 1 (d 2) and 3 (d 1);
 * expert 1 those of the largest w1: tokens 2 (d -1) and 4 (d -0.3). Tokens 0
 * and 5 lose both copies: their output is zero (the block's residual carries
 * them). Under "position" expert 0 would have kept tokens 0 and 1 instead.
 * The kept copies' outputs are the reference's with that mask, and the
 * load-balancing loss is the dropless one (f_i counts the routing before the
 * drops: 6 copies each to experts 0 and 1). */
static void test_capacity_hand(void) {
  Case c;
  case_init(&c, PX_FFN_SWIGLU, TRUE, 5, 6);
  c.d.capacity_factor = 0.5;
  g_assert_cmpint(px_moe_capacity(&c.d, 6), ==, 2);
  const double dt[6] = {0.5, 2, -1, 1, -0.3, 0.1};
  for (int t = 0; t < 6; t++) {
    double row[4] = {dt[t], 0, -5, -5};
    memcpy(c.x + t * 4, row, sizeof row);
  }
  for (int e = 0; e < 4; e++)
    for (int i = 0; i < 4; i++) c.wr[e * 4 + i] = e == i;
  gboolean keep[6 * 4] = {FALSE};
  keep[1 * 4 + 0] = keep[3 * 4 + 0] = keep[2 * 4 + 1] = keep[4 * 4 + 1] = TRUE;
  Layer L;
  layer_init(&L, &c, c.x, c.T, NULL, 1, 0);
  g_autofree double *y = g_new(double, 24), *want = g_new(double, 24), *all = g_new(double, 24);
  double aux = layer_fwd(&L, y);
  reference_kept(&c, c.x, c.T, want, keep);
  double aux_dropless = reference(&c, c.x, c.T, all);
  assert_close("capacity y", y, want, 24, 1e-12);
  for (int i = 0; i < 4; i++) {
    g_assert_cmpfloat(y[0 * 4 + i], ==, 0);
    g_assert_cmpfloat(y[5 * 4 + i], ==, 0);
  }
  /* a kept copy's row is not the dropless one (the other copy is gone) */
  g_assert_cmpfloat(fabs(y[4 + 0] - all[4 + 0]), >, 1e-6);
  g_assert_cmpfloat(fabs(aux - aux_dropless), <=, 1e-12);
  layer_clear(&L);
  case_clear(&c);
}

/* ---- expert (tensor) parallelism: ep × etp thread-ranks, rank = etp_i + etp·ep_i ---- */

typedef struct {
  const Case *c;
  PxLocalWorld *lw;
  int rank, ep, etp;
  gboolean gather;
  gint64 T;
  const double *cy;
  double *y, *dx, *grads[4];
} EtpRank;

static gpointer etp_rank_run(gpointer data) {
  EtpRank *e = data;
  g_autoptr(GError) error = NULL;
  PxComm *world = px_comm_local_new(e->lw, e->rank);
  int ei = e->rank % e->etp, pi = e->rank / e->etp;
  PxComm *ep = px_comm_split(world, ei, pi, "ep", &error);
  PxComm *etp = px_comm_split(world, pi, ei, "etp", &error);
  g_assert_no_error(error);
  gint64 blk = e->gather ? e->rank : pi; /* without gathering the ETP ranks hold the same tokens */
  Layer L;
  layer_init_etp(&L, e->c, e->c->x + blk * e->T * 4, e->T, ep, e->ep, pi, etp, e->etp, ei, e->gather);
  layer_fwd(&L, e->y);
  layer_bwd(&L, e->cy + blk * e->T * 4, 0.0);
  g_assert_true(px_tensor_download_f64(L.dx, e->dx, &error));
  for (int i = 0; i < 4; i++) {
    e->grads[i] = g_new(double, L.g[i]->numel);
    g_assert_true(px_tensor_download_f64(L.g[i], e->grads[i], &error));
  }
  layer_clear(&L);
  px_comm_free(ep);
  px_comm_free(etp);
  px_comm_free(world);
  return NULL;
}

static void check_etp_cf(int ep, int etp, gboolean gather, double cf) {
  const gint64 T = 5, h = 4, E = 4, f = 3 * etp;
  int n = ep * etp, blocks = gather ? n : ep;
  Case c;
  case_init(&c, PX_FFN_SWIGLU, TRUE, 23, blocks * T);
  c.d.capacity_factor = cf;
  /* an FFN etp divides: f = 3·etp */
  g_autoptr(GRand) rr = g_rand_new_with_seed(29);
  g_free(c.wg), g_free(c.wu), g_free(c.wd);
  c.d.expert_ffn = (int)f;
  c.wg = rnd(rr, E * f * h, 0.7), c.wu = rnd(rr, E * f * h, 0.7), c.wd = rnd(rr, E * h * f, 0.7);
  g_autoptr(GRand) r = g_rand_new_with_seed(31);
  g_autofree double *cy = rnd(r, blocks * T * h, 1.0);
  PxLocalWorld *lw = px_local_world_new(n, 30);
  EtpRank ranks[8];
  GThread *th[8];
  for (int i = 0; i < n; i++) {
    ranks[i] = (EtpRank){&c, lw, i, ep, etp, gather, T, cy, g_new(double, T * h), g_new(double, T * h), {NULL}};
    th[i] = g_thread_new("etp", etp_rank_run, &ranks[i]);
  }
  for (int i = 0; i < n; i++) g_thread_join(th[i]);
  /* one rank, all experts whole, per token block: the expected values */
  g_autofree double *sum_in = g_new0(double, E * f * h), *sum_up = g_new0(double, E * f * h),
                    *sum_down = g_new0(double, E * h * f);
  g_autofree double **dxs = g_new0(double *, blocks), **gr = g_new0(double *, blocks), **ys = g_new0(double *, blocks);
  for (int b = 0; b < blocks; b++) {
    Layer one;
    layer_init(&one, &c, c.x + b * T * h, T, NULL, 1, 0);
    ys[b] = g_new(double, T * h);
    layer_fwd(&one, ys[b]);
    layer_bwd(&one, cy + b * T * h, 0.0);
    g_autoptr(GError) error = NULL;
    dxs[b] = g_new(double, T * h), gr[b] = g_new(double, E * h);
    g_autofree double *gi = g_new(double, E * f * h), *gu = g_new(double, E * f * h), *gd = g_new(double, E * h * f);
    g_assert_true(px_tensor_download_f64(one.dx, dxs[b], &error) && px_tensor_download_f64(one.g[0], gr[b], &error) &&
                  px_tensor_download_f64(one.g[1], gi, &error) && px_tensor_download_f64(one.g[2], gu, &error) &&
                  px_tensor_download_f64(one.g[3], gd, &error));
    for (gint64 q = 0; q < E * f * h; q++) sum_in[q] += gi[q], sum_up[q] += gu[q];
    for (gint64 q = 0; q < E * h * f; q++) sum_down[q] += gd[q];
    layer_clear(&one);
  }
  for (int i = 0; i < n; i++) {
    int ei = i % etp, pi = i / etp, b = gather ? i : pi;
    gint64 loc = E / ep;
    g_autofree double *want = g_new(double, T * h);
    if (cf == 0) reference(&c, c.x + b * T * h, T, want);
    else memcpy(want, ys[b], sizeof(double) * T * h); /* the one rank's, with its drops */
    assert_close("etp y", ranks[i].y, want, T * h, 1e-12);
    assert_close("etp dx", ranks[i].dx, dxs[b], T * h, 1e-12);
    assert_close("etp router grad", ranks[i].grads[0], gr[b], E * h, 1e-12);
    /* the expert gradients: this rank's slice of the sum over the tokens its experts saw */
    g_autofree double *si = expert_slice(sum_in, pi * loc, loc, f, h, etp, ei, TRUE);
    g_autofree double *su = expert_slice(sum_up, pi * loc, loc, f, h, etp, ei, TRUE);
    g_autofree double *sd = expert_slice(sum_down, pi * loc, loc, h, f, etp, ei, FALSE);
    assert_close("etp gate grad", ranks[i].grads[1], si, loc * f / etp * h, 1e-12);
    assert_close("etp up grad", ranks[i].grads[2], su, loc * f / etp * h, 1e-12);
    assert_close("etp down grad", ranks[i].grads[3], sd, loc * h * f / etp, 1e-12);
    g_free(ranks[i].y);
    g_free(ranks[i].dx);
    for (int k = 0; k < 4; k++) g_free(ranks[i].grads[k]);
  }
  if (cf > 0) { /* the capacity dropped something: some block's output is not the dropless one */
    double most = 0;
    for (int b = 0; b < blocks; b++) {
      g_autofree double *dropless = g_new(double, T * h);
      reference(&c, c.x + b * T * h, T, dropless);
      for (gint64 q = 0; q < T * h; q++) most = MAX(most, fabs(ys[b][q] - dropless[q]));
    }
    g_assert_cmpfloat(most, >, 1e-6);
  }
  for (int b = 0; b < blocks; b++) g_free(dxs[b]), g_free(gr[b]), g_free(ys[b]);
  px_local_world_free(lw);
  case_clear(&c);
}

static void check_etp(int ep, int etp, gboolean gather) { check_etp_cf(ep, etp, gather, 0); }
static void test_ep2(void) { check_etp(2, 1, TRUE); }
/* T 5 per rank, capacity ceil(5·2/4 · 0.5) = 3 */
static void test_ep2_capacity(void) { check_etp_cf(2, 1, TRUE, 0.5); }
static void test_ep2_etp2_capacity(void) { check_etp_cf(2, 2, TRUE, 0.5); }
static void test_ep4(void) { check_etp(4, 1, TRUE); }
static void test_etp2(void) { check_etp(1, 2, TRUE); }
static void test_ep2_etp2(void) { check_etp(2, 2, TRUE); }
static void test_etp2_same_tokens(void) { check_etp(1, 2, FALSE); }

/* The layout the activation list and the layer share: sizes by hand for
 * T = 6, E = 4, k = 2, h = 4, f = 3, ep = 2 (R = 2·6·min(2, 2) = 24). */
static void test_layout(void) {
  Case c;
  case_init(&c, PX_FFN_SWIGLU, TRUE, 1, 6);
  PxMoeExecLayout l;
  px_moe_exec_layout(&c.d, 2, 1, 1, 6, &l);
  g_assert_cmpint(l.rows_max, ==, 24);
  g_assert_cmpint(l.total, ==, 6 * 4 + 6 * 2 + 2 * 4 + 24 * 4 + 3 * 24 * 3 + 12 * 4);
  /* etp 3 gathering (f = 3: fl = 1): R = 3·2·6·2 = 72, counts (1 + 3)·E */
  px_moe_exec_layout(&c.d, 2, 3, 3, 6, &l);
  g_assert_cmpint(l.rows_max, ==, 72);
  g_assert_cmpint(l.total, ==, 6 * 4 + 6 * 2 + 4 * 4 + 72 * 4 + 3 * 72 * 1 + 12 * 4);
  /* a capacity of ceil(6·2/4 · 0.5) = 2 per expert and source: ep 2 sends the
   * rank's 2 experts at most 2 rows each from each of 2 sources, R = 8 */
  c.d.capacity_factor = 0.5;
  px_moe_exec_layout(&c.d, 2, 1, 1, 6, &l);
  g_assert_cmpint(l.rows_max, ==, 8);
  case_clear(&c);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/moe-layer/layout", test_layout);
  g_test_add_func("/moe-layer/forward/swiglu-renormalised", test_forward_swiglu_norm);
  g_test_add_func("/moe-layer/forward/swiglu", test_forward_swiglu);
  g_test_add_func("/moe-layer/forward/gelu", test_forward_gelu);
  g_test_add_func("/moe-layer/gradients/swiglu-renormalised", test_gradients_swiglu_norm);
  g_test_add_func("/moe-layer/gradients/gelu", test_gradients_gelu);
  g_test_add_func("/moe-layer/ep/2", test_ep2);
  g_test_add_func("/moe-layer/ep/4", test_ep4);
  g_test_add_func("/moe-layer/etp/2", test_etp2);
  g_test_add_func("/moe-layer/etp/2-ep-2", test_ep2_etp2);
  g_test_add_func("/moe-layer/etp/2-same-tokens", test_etp2_same_tokens);
  g_test_add_func("/moe-layer/capacity/hand", test_capacity_hand);
  g_test_add_func("/moe-layer/capacity/gradients-swiglu-renormalised", test_gradients_capacity_norm);
  g_test_add_func("/moe-layer/capacity/gradients-gelu", test_gradients_capacity);
  g_test_add_func("/moe-layer/capacity/ep-2", test_ep2_capacity);
  g_test_add_func("/moe-layer/capacity/ep-2-etp-2", test_ep2_etp2_capacity);
  return g_test_run();
}
