/* test_backend.c — the cpu backend's ops.
 *  - forward of every op against small hand-computed cases;
 *  - backward of every op against central finite differences in fp64
 *    (normalised error ||g - fd|| / ||fd|| < 1e-6), with gradient buffers
 *    prefilled to check that backward adds (beta = 1);
 *  - fp32 against fp64 on the same cases (normalised error < 1e-5);
 *  - block attention (ring attention's blocks over 1, 2 and 4 CP ranks,
 *    merged by LSE) against plain causal softmax attention over the whole
 *    sequence, its backward against finite differences of that reference;
 *  - one GPT-2 block (embedding, block, final norm, tied head, loss) against
 *    the numpy float64 dump of tests/ref/gpt_block_ref.py: 1e-10 in fp64,
 *    1e-5 in fp32, per tensor, normalised;
 *  - shape errors, memory accounting, the check macro's message. */
#include <glib.h>
#include <math.h>
#include <string.h>
#include "backend.h"
#include "backend_impl.h" /* a device table whose host buffers fail or are counted (host-buffers tests) */
#include "check.h"
#include "half.h"
#include "model.h" /* px_data_dir */

static PxBackend *be;

#define OK(expr)                                                                                   \
  do {                                                                                             \
    GError *E = NULL;                                                                              \
    gboolean ok_ = (expr);                                                                         \
    g_assert_no_error(E);                                                                          \
    g_assert_true(ok_);                                                                            \
  } while (0)

/* A (rows, cols) tensor of dtype holding host (NULL: uninitialised, i.e.
 * NaN under PX_POISON=1, for what an op must overwrite). */
static PxTensor *mk(PxDType dt, const char *name, gint64 rows, gint64 cols, const double *host) {
  GError *E = NULL;
  PxTensor *t = px_tensor_new(be, name, dt, PX_MEM_ACTIVATIONS, 2, (gint64[]){rows, cols}, &E);
  g_assert_no_error(E);
  if (host) OK(px_tensor_upload_f64(t, host, &E));
  return t;
}

/* A zeroed (rows, cols) tensor: for what an op adds into. */
static PxTensor *mk0(PxDType dt, const char *name, gint64 rows, gint64 cols) {
  GError *E = NULL;
  PxTensor *t = px_tensor_new_zeroed(be, name, dt, PX_MEM_BUFFERS, 2, (gint64[]){rows, cols}, &E);
  g_assert_no_error(E);
  return t;
}

static PxTensor *mk_ids(const char *name, gint64 n, const gint32 *ids) {
  GError *E = NULL;
  PxTensor *t = px_tensor_new(be, name, PX_DTYPE_I32, PX_MEM_BUFFERS, 1, (gint64[]){n}, &E);
  g_assert_no_error(E);
  OK(px_tensor_upload(t, ids, &E));
  return t;
}

static void get(const PxTensor *t, double *out) { OK(px_tensor_download_f64(t, out, &E)); }

/* A one-element device scalar of dtype holding v. */
static PxTensor *scalar(PxDType dt, double v) { return mk(dt, "scalar", 1, 1, &v); }

static double get1(const PxTensor *t) {
  double v;
  get(t, &v);
  return v;
}

static double norm_err(const double *a, const double *b, gint64 n) {
  double num = 0, den = 0;
  for (gint64 i = 0; i < n; i++) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void assert_close(const double *got, const double *expect, gint64 n, double tol) {
  for (gint64 i = 0; i < n; i++) g_assert_cmpfloat_with_epsilon(got[i], expect[i], tol);
}

/* ---------------- gradient-check harness ---------------- */

typedef struct {
  int N, in, out;      /* linear */
  int B, T, V, C;      /* embedding, norms */
  PxAttnShape s;       /* attention, rope */
  double theta;
  const gint32 *ids;   /* tokens / targets */
} Dims;

typedef struct Case Case;
struct Case {
  const char *name;
  Dims d;
  int n_in;
  gint64 in_n[4];
  gint64 out_n;
  /* out (if not NULL) = forward; then, if dout is given, grads[k] += d(out . dout)/d(in k)
   * for the grads[k] that are not NULL */
  void (*run)(const Case *c, PxDType dt, double *const *in, double *out, const double *dout,
              double **grads);
};

static double dot(const double *a, const double *b, gint64 n) {
  double s = 0;
  for (gint64 i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

static void check_case(const Case *c) {
  g_autoptr(GRand) rng = g_rand_new_with_seed(1234);
  double *in[4] = {0}, *g64[4] = {0}, *g32[4] = {0}, *fd[4] = {0};
  for (int k = 0; k < c->n_in; k++) {
    in[k] = g_new(double, c->in_n[k]);
    g64[k] = g_new(double, c->in_n[k]);
    g32[k] = g_new(double, c->in_n[k]);
    fd[k] = g_new(double, c->in_n[k]);
    for (gint64 i = 0; i < c->in_n[k]; i++) {
      in[k][i] = g_rand_double_range(rng, -1.5, 1.5);
      g64[k][i] = g32[k][i] = 0.5; /* backward must add to this */
    }
  }
  g_autofree double *r = g_new(double, c->out_n);
  g_autofree double *out = g_new(double, c->out_n);
  g_autofree double *out32 = g_new(double, c->out_n);
  for (gint64 i = 0; i < c->out_n; i++) r[i] = g_rand_double_range(rng, -1, 1);

  c->run(c, PX_DTYPE_F64, in, NULL, r, g64);
  c->run(c, PX_DTYPE_F32, in, NULL, r, g32);
  const double h = 1e-5;
  for (int k = 0; k < c->n_in; k++)
    for (gint64 i = 0; i < c->in_n[k]; i++) {
      double old = in[k][i];
      in[k][i] = old + h;
      c->run(c, PX_DTYPE_F64, in, out, NULL, NULL);
      double lp = dot(out, r, c->out_n);
      in[k][i] = old - h;
      c->run(c, PX_DTYPE_F64, in, out, NULL, NULL);
      double lm = dot(out, r, c->out_n);
      in[k][i] = old;
      fd[k][i] = (lp - lm) / (2 * h);
      g64[k][i] -= 0.5;
      g32[k][i] -= 0.5;
    }
  c->run(c, PX_DTYPE_F64, in, out, NULL, NULL);
  c->run(c, PX_DTYPE_F32, in, out32, NULL, NULL);
  double e32 = norm_err(out32, out, c->out_n);
  if (g_test_verbose()) g_test_message("%s: fp32 forward err %.2e", c->name, e32);
  g_assert_cmpfloat(e32, <, 1e-5);
  for (int k = 0; k < c->n_in; k++) {
    double e = norm_err(g64[k], fd[k], c->in_n[k]), eg = norm_err(g32[k], g64[k], c->in_n[k]);
    if (g_test_verbose())
      g_test_message("%s: input %d: fp64 vs finite differences %.2e, fp32 vs fp64 %.2e", c->name,
                     k, e, eg);
    g_assert_cmpfloat(e, <, 1e-6);
    g_assert_cmpfloat(eg, <, 1e-5);
    g_free(in[k]);
    g_free(g64[k]);
    g_free(g32[k]);
    g_free(fd[k]);
  }
}

/* Download a gradient tensor into grads[k] if wanted. */
static void take(double **grads, int k, PxTensor *t) {
  if (grads[k]) get(t, grads[k]);
}

/* A gradient tensor prefilled from grads[k], or NULL when not wanted. */
static PxTensor *gradt(PxDType dt, double **grads, int k, gint64 rows, gint64 cols) {
  return grads[k] ? mk(dt, "grad", rows, cols, grads[k]) : NULL;
}

/* Each op's runner: the forward (out, if wanted), then, when dout is given, the
 * backward adding into the wanted grads. */
#define RUNNER(name) \
  static void name(const Case *c, PxDType dt, double *const *in, double *out, const double *dout, \
                   double **gr)

/* ---- linear: x (N,in), w (out,in), b (out) ---- */
RUNNER(lin_run) {
  const Dims *d = &c->d;
  g_autoptr(PxTensor) x = mk(dt, "x", d->N, d->in, in[0]);
  g_autoptr(PxTensor) w = mk(dt, "w", d->out, d->in, in[1]);
  g_autoptr(PxTensor) b = mk(dt, "b", 1, d->out, in[2]);
  g_autoptr(PxTensor) y = mk(dt, "y", d->N, d->out, NULL);
  OK(px_op_linear_fwd(be, y, x, w, b, &E));
  if (out) get(y, out);
  if (!dout) return;
  g_autoptr(PxTensor) dy = mk(dt, "dy", d->N, d->out, dout);
  g_autoptr(PxTensor) dx = gradt(dt, gr, 0, d->N, d->in);
  g_autoptr(PxTensor) dw = gradt(dt, gr, 1, d->out, d->in);
  g_autoptr(PxTensor) db = gradt(dt, gr, 2, 1, d->out);
  OK(px_op_linear_bwd(be, dx, dw, db, dy, x, w, &E));
  take(gr, 0, dx);
  take(gr, 1, dw);
  take(gr, 2, db);
}

/* ---- embedding: wte (V,C), wpe (T,C) ---- */
RUNNER(emb_run) {
  const Dims *d = &c->d;
  gint64 N = (gint64)d->B * d->T;
  g_autoptr(PxTensor) tok = mk_ids("tokens", N, d->ids);
  g_autoptr(PxTensor) wte = mk(dt, "wte", d->V, d->C, in[0]);
  g_autoptr(PxTensor) wpe = mk(dt, "wpe", d->T, d->C, in[1]);
  g_autoptr(PxTensor) o = mk(dt, "out", N, d->C, NULL);
  OK(px_op_embedding_fwd(be, o, tok, wte, wpe, d->B, d->T, &E));
  if (out) get(o, out);
  if (!dout) return;
  g_autoptr(PxTensor) dwte = gradt(dt, gr, 0, d->V, d->C);
  g_autoptr(PxTensor) dwpe = gradt(dt, gr, 1, d->T, d->C);
  g_autoptr(PxTensor) dy = mk(dt, "dout", N, d->C, dout);
  OK(px_op_embedding_bwd(be, dwte, dwpe, dy, tok, d->B, d->T, &E));
  take(gr, 0, dwte);
  take(gr, 1, dwpe);
}

/* ---- layernorm: x (N,C), w, b ---- */
RUNNER(ln_run) {
  const Dims *d = &c->d;
  g_autoptr(PxTensor) x = mk(dt, "x", d->N, d->C, in[0]);
  g_autoptr(PxTensor) w = mk(dt, "w", 1, d->C, in[1]);
  g_autoptr(PxTensor) b = mk(dt, "b", 1, d->C, in[2]);
  g_autoptr(PxTensor) m = mk(dt, "mean", d->N, 1, NULL);
  g_autoptr(PxTensor) r = mk(dt, "rstd", d->N, 1, NULL);
  g_autoptr(PxTensor) y = mk(dt, "y", d->N, d->C, NULL);
  OK(px_op_layernorm_fwd(be, y, m, r, x, w, b, 1e-5, &E));
  if (out) get(y, out);
  if (!dout) return;
  g_autoptr(PxTensor) dy = mk(dt, "dy", d->N, d->C, dout);
  g_autoptr(PxTensor) dx = gradt(dt, gr, 0, d->N, d->C);
  g_autoptr(PxTensor) dw = gradt(dt, gr, 1, 1, d->C);
  g_autoptr(PxTensor) db = gradt(dt, gr, 2, 1, d->C);
  OK(px_op_layernorm_bwd(be, dx, dw, db, dy, x, w, m, r, &E));
  take(gr, 0, dx);
  take(gr, 1, dw);
  take(gr, 2, db);
}

/* ---- rmsnorm: x, w ---- */
RUNNER(rms_run) {
  const Dims *d = &c->d;
  g_autoptr(PxTensor) x = mk(dt, "x", d->N, d->C, in[0]);
  g_autoptr(PxTensor) w = mk(dt, "w", 1, d->C, in[1]);
  g_autoptr(PxTensor) r = mk(dt, "rstd", d->N, 1, NULL);
  g_autoptr(PxTensor) y = mk(dt, "y", d->N, d->C, NULL);
  OK(px_op_rmsnorm_fwd(be, y, r, x, w, 1e-6, &E));
  if (out) get(y, out);
  if (!dout) return;
  g_autoptr(PxTensor) dy = mk(dt, "dy", d->N, d->C, dout);
  g_autoptr(PxTensor) dx = gradt(dt, gr, 0, d->N, d->C);
  g_autoptr(PxTensor) dw = gradt(dt, gr, 1, 1, d->C);
  OK(px_op_rmsnorm_bwd(be, dx, dw, dy, x, w, r, &E));
  take(gr, 0, dx);
  take(gr, 1, dw);
}

/* ---- gelu: x ---- */
RUNNER(gelu_run) {
  g_autoptr(PxTensor) x = mk(dt, "x", c->d.N, c->d.C, in[0]);
  g_autoptr(PxTensor) y = mk(dt, "y", c->d.N, c->d.C, NULL);
  OK(px_op_gelu_fwd(be, y, x, &E));
  if (out) get(y, out);
  if (!dout) return;
  g_autoptr(PxTensor) dy = mk(dt, "dy", c->d.N, c->d.C, dout);
  g_autoptr(PxTensor) dx = gradt(dt, gr, 0, c->d.N, c->d.C);
  OK(px_op_gelu_bwd(be, dx, dy, x, &E));
  take(gr, 0, dx);
}

/* ---- swiglu: gate, up ---- */
RUNNER(swiglu_run) {
  g_autoptr(PxTensor) g = mk(dt, "gate", c->d.N, c->d.C, in[0]);
  g_autoptr(PxTensor) u = mk(dt, "up", c->d.N, c->d.C, in[1]);
  g_autoptr(PxTensor) y = mk(dt, "y", c->d.N, c->d.C, NULL);
  OK(px_op_swiglu_fwd(be, y, g, u, &E));
  if (out) get(y, out);
  if (!dout) return;
  g_autoptr(PxTensor) dy = mk(dt, "dy", c->d.N, c->d.C, dout);
  g_autoptr(PxTensor) dg = gradt(dt, gr, 0, c->d.N, c->d.C);
  g_autoptr(PxTensor) du = gradt(dt, gr, 1, c->d.N, c->d.C);
  OK(px_op_swiglu_bwd(be, dg, du, dy, g, u, &E));
  take(gr, 0, dg);
  take(gr, 1, du);
}

static gint64 qkv_w(const PxAttnShape *s) { return (gint64)(s->heads + 2 * s->kv_heads) * s->head_dim; }

/* ---- rope: qkv, forward in place ---- */
RUNNER(rope_run) {
  const PxAttnShape *s = &c->d.s;
  gint64 N = (gint64)s->B * s->T;
  g_autoptr(PxTensor) x = mk(dt, "qkv", N, qkv_w(s), in[0]);
  OK(px_op_rope_fwd(be, x, x, s, c->d.theta, &E));
  if (out) get(x, out);
  if (!dout) return;
  g_autoptr(PxTensor) dy = mk(dt, "dy", N, qkv_w(s), dout);
  g_autoptr(PxTensor) dx = gradt(dt, gr, 0, N, qkv_w(s));
  OK(px_op_rope_bwd(be, dx, dy, s, c->d.theta, &E));
  take(gr, 0, dx);
}

/* ---- attention: qkv ---- */
RUNNER(att_run) {
  const PxAttnShape *s = &c->d.s;
  gint64 N = (gint64)s->B * s->T;
  g_autoptr(PxTensor) qkv = mk(dt, "qkv", N, qkv_w(s), in[0]);
  g_autoptr(PxTensor) att = mk(dt, "att", (gint64)s->B * s->heads * s->T, s->T, NULL);
  g_autoptr(PxTensor) y = mk(dt, "y", N, (gint64)s->heads * s->head_dim, NULL);
  OK(px_op_attention_fwd(be, y, att, qkv, s, &E));
  if (out) get(y, out);
  if (!dout) return;
  g_autoptr(PxTensor) dy = mk(dt, "dy", N, (gint64)s->heads * s->head_dim, dout);
  g_autoptr(PxTensor) dqkv = gradt(dt, gr, 0, N, qkv_w(s));
  OK(px_op_attention_bwd(be, dqkv, dy, qkv, att, s, &E));
  take(gr, 0, dqkv);
}

/* ---- residual: a, b; forward in place as the residual stream ---- */
RUNNER(res_run) {
  g_autoptr(PxTensor) a = mk(dt, "a", c->d.N, c->d.C, in[0]);
  g_autoptr(PxTensor) b = mk(dt, "b", c->d.N, c->d.C, in[1]);
  OK(px_op_residual_fwd(be, a, a, b, &E));
  if (out) get(a, out);
  if (!dout) return;
  g_autoptr(PxTensor) dy = mk(dt, "dy", c->d.N, c->d.C, dout);
  g_autoptr(PxTensor) da = gradt(dt, gr, 0, c->d.N, c->d.C);
  g_autoptr(PxTensor) db = gradt(dt, gr, 1, c->d.N, c->d.C);
  OK(px_op_residual_bwd(be, da, db, dy, &E));
  take(gr, 0, da);
  take(gr, 1, db);
}

/* ---- cross-entropy: logits; out = the mean loss (1 element) ---- */
RUNNER(ce_run) {
  g_autoptr(PxTensor) lg = mk(dt, "logits", c->d.N, c->d.V, in[0]);
  g_autoptr(PxTensor) tg = mk_ids("targets", c->d.N, c->d.ids);
  g_autoptr(PxTensor) losses = mk(dt, "losses", c->d.N, 1, NULL);
  g_autoptr(PxTensor) mean = scalar(PX_DTYPE_F64, 0);
  OK(px_op_cross_entropy_fwd(be, losses, mean, lg, tg, &E));
  if (out) out[0] = get1(mean);
  if (!dout) return;
  g_autoptr(PxTensor) dl = gradt(dt, gr, 0, c->d.N, c->d.V);
  OK(px_op_cross_entropy_bwd(be, dl, lg, tg, dout[0], &E));
  take(gr, 0, dl);
}

static const gint32 ids6[6] = {3, 0, 3, 4, 1, 3};

static void test_grad_linear(void) {
  Case c = {"linear", .d = {.N = 3, .in = 4, .out = 5}, 3, {12, 20, 5}, 15, lin_run};
  check_case(&c);
}
static void test_grad_embedding(void) {
  Case c = {"embedding", .d = {.B = 2, .T = 3, .V = 5, .C = 4, .ids = ids6}, 2, {20, 12}, 24,
            emb_run};
  check_case(&c);
}
static void test_grad_layernorm(void) {
  Case c = {"layernorm", .d = {.N = 3, .C = 6}, 3, {18, 6, 6}, 18, ln_run};
  check_case(&c);
}
static void test_grad_rmsnorm(void) {
  Case c = {"rmsnorm", .d = {.N = 3, .C = 6}, 2, {18, 6}, 18, rms_run};
  check_case(&c);
}
static void test_grad_gelu(void) {
  Case c = {"gelu", .d = {.N = 4, .C = 5}, 1, {20}, 20, gelu_run};
  check_case(&c);
}
static void test_grad_swiglu(void) {
  Case c = {"swiglu", .d = {.N = 4, .C = 5}, 2, {20, 20}, 20, swiglu_run};
  check_case(&c);
}
static void test_grad_rope(void) {
  PxAttnShape s = {.B = 2, .T = 3, .heads = 2, .kv_heads = 1, .head_dim = 4};
  Case c = {"rope", .d = {.s = s, .theta = 10000}, 1, {2 * 3 * 16}, 2 * 3 * 16, rope_run};
  check_case(&c);
}
static void test_grad_attention_mha(void) {
  PxAttnShape s = {.B = 2, .T = 4, .heads = 2, .kv_heads = 2, .head_dim = 3};
  Case c = {"attention-mha", .d = {.s = s}, 1, {8 * 18}, 8 * 6, att_run};
  check_case(&c);
}
static void test_grad_attention_gqa(void) {
  PxAttnShape s = {.B = 2, .T = 5, .heads = 4, .kv_heads = 2, .head_dim = 3};
  Case c = {"attention-gqa", .d = {.s = s}, 1, {10 * 24}, 10 * 12, att_run};
  check_case(&c);
}
static void test_grad_residual(void) {
  Case c = {"residual", .d = {.N = 3, .C = 4}, 2, {12, 12}, 12, res_run};
  check_case(&c);
}
static void test_grad_cross_entropy(void) {
  Case c = {"cross-entropy", .d = {.N = 6, .V = 5, .ids = ids6}, 1, {30}, 1, ce_run};
  check_case(&c);
}

/* ---------------- forward against hand-computed values ---------------- */

static void test_fwd_linear(void) {
  /* x = [1 2], W = [[1 0] [0 1] [1 1]], b = [.5 0 -1] -> y = [1.5 2 2] */
  const double x[2] = {1, 2}, w[6] = {1, 0, 0, 1, 1, 1}, b[3] = {0.5, 0, -1}, e[3] = {1.5, 2, 2};
  for (PxDType dt = PX_DTYPE_F32; dt <= PX_DTYPE_F64; dt++) {
    g_autoptr(PxTensor) tx = mk(dt, "x", 1, 2, x);
    g_autoptr(PxTensor) tw = mk(dt, "w", 3, 2, w);
    g_autoptr(PxTensor) tb = mk(dt, "b", 1, 3, b);
    g_autoptr(PxTensor) ty = mk(dt, "y", 1, 3, NULL);
    OK(px_op_linear_fwd(be, ty, tx, tw, tb, &E));
    double y[3];
    get(ty, y);
    assert_close(y, e, 3, 1e-6);
  }
}

static void test_fwd_layernorm(void) {
  /* [1 2 3 4]: mean 2.5, var 1.25 -> (x - 2.5)/sqrt(1.25); with w = 2, b = 1: 2 n + 1 */
  const double x[4] = {1, 2, 3, 4}, w[4] = {2, 2, 2, 2}, b[4] = {1, 1, 1, 1};
  const double s = sqrt(1.25), e[4] = {1 - 3 / s, 1 - 1 / s, 1 + 1 / s, 1 + 3 / s};
  for (PxDType dt = PX_DTYPE_F32; dt <= PX_DTYPE_F64; dt++) {
    g_autoptr(PxTensor) tx = mk(dt, "x", 1, 4, x);
    g_autoptr(PxTensor) tw = mk(dt, "w", 1, 4, w);
    g_autoptr(PxTensor) tb = mk(dt, "b", 1, 4, b);
    g_autoptr(PxTensor) tm = mk(dt, "mean", 1, 1, NULL);
    g_autoptr(PxTensor) tr = mk(dt, "rstd", 1, 1, NULL);
    g_autoptr(PxTensor) ty = mk(dt, "y", 1, 4, NULL);
    OK(px_op_layernorm_fwd(be, ty, tm, tr, tx, tw, tb, 0.0, &E));
    double y[4], m, r;
    get(ty, y);
    get(tm, &m);
    get(tr, &r);
    assert_close(y, e, 4, 1e-6);
    g_assert_cmpfloat_with_epsilon(m, 2.5, 1e-7);
    g_assert_cmpfloat_with_epsilon(r, 1 / s, 1e-7);
  }
}

static void test_fwd_rmsnorm(void) {
  /* [1 2 3 4]: mean square 7.5 -> x / sqrt(7.5) */
  const double x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1};
  double e[4];
  for (int i = 0; i < 4; i++) e[i] = x[i] / sqrt(7.5);
  g_autoptr(PxTensor) tx = mk(PX_DTYPE_F64, "x", 1, 4, x);
  g_autoptr(PxTensor) tw = mk(PX_DTYPE_F64, "w", 1, 4, w);
  g_autoptr(PxTensor) tr = mk(PX_DTYPE_F64, "rstd", 1, 1, NULL);
  g_autoptr(PxTensor) ty = mk(PX_DTYPE_F64, "y", 1, 4, NULL);
  OK(px_op_rmsnorm_fwd(be, ty, tr, tx, tw, 0.0, &E));
  double y[4];
  get(ty, y);
  assert_close(y, e, 4, 1e-12);
}

static void test_fwd_gelu(void) {
  /* GELU-tanh at -3, -1, 0, 1, 2 (numpy float64 of the formula) */
  const double x[5] = {-3, -1, 0, 1, 2};
  const double e[5] = {-0.0036373920817729943, -0.1588080093917233, 0, 0.8411919906082768,
                       1.954597694087775};
  for (PxDType dt = PX_DTYPE_F32; dt <= PX_DTYPE_F64; dt++) {
    g_autoptr(PxTensor) tx = mk(dt, "x", 1, 5, x);
    g_autoptr(PxTensor) ty = mk(dt, "y", 1, 5, NULL);
    OK(px_op_gelu_fwd(be, ty, tx, &E));
    double y[5];
    get(ty, y);
    assert_close(y, e, 5, dt == PX_DTYPE_F64 ? 1e-15 : 1e-7);
  }
}

static void test_fwd_swiglu(void) {
  /* silu(0) * 5 = 0; silu(1) * 2 = 2 / (1 + e^-1) */
  const double g[2] = {0, 1}, u[2] = {5, 2}, e[2] = {0, 1.4621171572600098};
  g_autoptr(PxTensor) tg = mk(PX_DTYPE_F64, "g", 1, 2, g);
  g_autoptr(PxTensor) tu = mk(PX_DTYPE_F64, "u", 1, 2, u);
  g_autoptr(PxTensor) ty = mk(PX_DTYPE_F64, "y", 1, 2, NULL);
  OK(px_op_swiglu_fwd(be, ty, tg, tu, &E));
  double y[2];
  get(ty, y);
  assert_close(y, e, 2, 1e-15);
}

static void test_fwd_cross_entropy(void) {
  /* logits [1 2 3], target 2: log(e + e^2 + e^3) - 3; logits [0 0 0 0]: log 4 */
  const double lg[8] = {1, 2, 3, -50, 0, 0, 0, 0};
  const gint32 tg[2] = {2, 1};
  g_autoptr(PxTensor) tl = mk(PX_DTYPE_F64, "logits", 2, 4, lg);
  g_autoptr(PxTensor) tt = mk_ids("targets", 2, tg);
  g_autoptr(PxTensor) losses = mk(PX_DTYPE_F64, "losses", 2, 1, NULL);
  /* the accumulator starts at 0.5 (an earlier micro-batch): the mean adds to it */
  g_autoptr(PxTensor) acc = scalar(PX_DTYPE_F64, 0.5);
  g_autoptr(PxTensor) acc32 = scalar(PX_DTYPE_F32, 0.5);
  double l[2];
  OK(px_op_cross_entropy_fwd(be, losses, acc, tl, tt, &E));
  OK(px_op_cross_entropy_fwd(be, losses, acc32, tl, tt, &E));
  get(losses, l);
  /* the -50 logit adds e^-50 to the first sum: below double resolution of 0.4076 */
  g_assert_cmpfloat_with_epsilon(l[0], 0.40760596444438013, 1e-15);
  g_assert_cmpfloat_with_epsilon(l[1], log(4.0), 1e-15);
  g_assert_cmpfloat_with_epsilon(get1(acc), 0.5 + (0.40760596444438013 + log(4.0)) / 2, 1e-15);
  g_assert_cmpfloat_with_epsilon(get1(acc32), 0.5 + (0.40760596444438013 + log(4.0)) / 2, 1e-7);
  /* dlogits = (softmax - onehot) / N for dloss = 1 */
  g_autoptr(PxTensor) dl = mk0(PX_DTYPE_F64, "dlogits", 2, 4);
  OK(px_op_cross_entropy_bwd(be, dl, tl, tt, 1.0, &E));
  double d[8];
  get(dl, d);
  const double e[8] = {0.09003057317038046 / 2, 0.24472847105479764 / 2,
                       (0.6652409557748219 - 1) / 2, 0, 0.125, (0.25 - 1) / 2, 0.125, 0.125};
  assert_close(d, e, 8, 1e-15);
}

static void test_fwd_attention(void) {
  /* one head, head_dim 1 (scale 1): t0 q=1 k=1 v=2 ; t1 q=1 k=2 v=4.
   * out0 = v0 = 2 (causal); out1 = (e^1 * 2 + e^2 * 4) / (e^1 + e^2) */
  PxAttnShape s = {.B = 1, .T = 2, .heads = 1, .kv_heads = 1, .head_dim = 1};
  const double qkv[6] = {1, 1, 2, 1, 2, 4};
  g_autoptr(PxTensor) tq = mk(PX_DTYPE_F64, "qkv", 2, 3, qkv);
  g_autoptr(PxTensor) ta = mk(PX_DTYPE_F64, "att", 2, 2, NULL);
  g_autoptr(PxTensor) ty = mk(PX_DTYPE_F64, "y", 2, 1, NULL);
  OK(px_op_attention_fwd(be, ty, ta, tq, &s, &E));
  double y[2], a[4];
  get(ty, y);
  get(ta, a);
  g_assert_cmpfloat_with_epsilon(y[0], 2, 1e-15);
  g_assert_cmpfloat_with_epsilon(y[1], 3.4621171572600096, 1e-14);
  const double ea[4] = {1, 0, 1 / (1 + M_E), M_E / (1 + M_E)};
  assert_close(a, ea, 4, 1e-15);
}

/* ---- block attention (ring / flash) against plain softmax attention ----
 * The reference: causal softmax attention over the whole sequence in double,
 * written out here, and its gradient by central finite differences of
 * L = sum(out * G). The sequence is cut as context parallelism cuts it (2cp
 * chunks, rank c holding chunks c and 2cp-1-c); every rank's output is its
 * own block merged with every other rank's by the LSE ops, its gradient the
 * block backward of every (query rank, key rank) pair. */

#define AB_B 2
#define AB_T 8
#define AB_H 4
#define AB_KV 2
#define AB_HD 3
#define AB_W ((AB_H + 2 * AB_KV) * AB_HD)

static void ref_attention(const double *qkv, double *out, double *lse) {
  double scale = 1 / sqrt((double)AB_HD);
  for (int b = 0; b < AB_B; b++)
    for (int h = 0; h < AB_H; h++)
      for (int i = 0; i < AB_T; i++) {
        int kvh = h / (AB_H / AB_KV);
        const double *q = qkv + (b * AB_T + i) * AB_W + h * AB_HD;
        double sc[AB_T], mx = -INFINITY, sum = 0;
        for (int j = 0; j <= i; j++) {
          const double *k = qkv + (b * AB_T + j) * AB_W + (AB_H + kvh) * AB_HD;
          sc[j] = 0;
          for (int d = 0; d < AB_HD; d++) sc[j] += q[d] * k[d] * scale;
          mx = MAX(mx, sc[j]);
        }
        for (int j = 0; j <= i; j++) sum += exp(sc[j] - mx);
        double *o = out + (b * AB_T + i) * AB_H * AB_HD + h * AB_HD;
        for (int d = 0; d < AB_HD; d++) o[d] = 0;
        for (int j = 0; j <= i; j++) {
          const double *v = qkv + (b * AB_T + j) * AB_W + (AB_H + AB_KV + kvh) * AB_HD;
          for (int d = 0; d < AB_HD; d++) o[d] += exp(sc[j] - mx) / sum * v[d];
        }
        if (lse) lse[(b * AB_H + h) * AB_T + i] = mx + log(sum);
      }
}

static double ref_objective(const double *qkv, const double *G) {
  double out[AB_B * AB_T * AB_H * AB_HD], L = 0;
  ref_attention(qkv, out, NULL);
  for (int i = 0; i < AB_B * AB_T * AB_H * AB_HD; i++) L += out[i] * G[i];
  return L;
}

static PxAttnShape ab_shape(int cp, int c) {
  PxAttnShape s = {.B = AB_B, .T = AB_T / cp, .heads = AB_H, .kv_heads = AB_KV, .head_dim = AB_HD};
  if (cp > 1) {
    int half = AB_T / (2 * cp);
    s.pos_split = half;
    s.pos_start0 = c * half;
    s.pos_start1 = (2 * cp - 1 - c) * half;
  }
  return s;
}

static void attn_blocks_case(PxDType dt, int cp, double tol) {
  const int N = AB_B * AB_T, Tl = AB_T / cp, Nl = AB_B * Tl, C = AB_H * AB_HD;
  double qkv[N * AB_W], G[N * C], out_ref[N * C], lse_ref[AB_B * AB_H * AB_T], fd[N * AB_W];
  for (int i = 0; i < N * AB_W; i++) qkv[i] = sin(0.37 * i + 0.1) * 1.3;
  for (int i = 0; i < N * C; i++) G[i] = cos(0.23 * i + 0.5);
  ref_attention(qkv, out_ref, lse_ref);
  double eps = 1e-6;
  for (int i = 0; i < N * AB_W; i++) {
    double keep = qkv[i];
    qkv[i] = keep + eps;
    double lp = ref_objective(qkv, G);
    qkv[i] = keep - eps;
    double lm = ref_objective(qkv, G);
    qkv[i] = keep;
    fd[i] = (lp - lm) / (2 * eps);
  }
  /* each rank's rows: (b, t) -> (b, global position) */
  PxTensor *q[4], *o[4], *l[4], *dq[4], *dkv[4], *go[4];
  double rows[4][Nl * AB_W];
  for (int c = 0; c < cp; c++) {
    PxAttnShape s = ab_shape(cp, c);
    double gl[Nl * C];
    for (int b = 0; b < AB_B; b++)
      for (int t = 0; t < Tl; t++) {
        int p = px_attn_pos(&s, t);
        memcpy(rows[c] + (b * Tl + t) * AB_W, qkv + (b * AB_T + p) * AB_W, sizeof(double) * AB_W);
        memcpy(gl + (b * Tl + t) * C, G + (b * AB_T + p) * C, sizeof(double) * C);
      }
    q[c] = mk(dt, "qkv", Nl, AB_W, rows[c]);
    go[c] = mk(dt, "dout", Nl, C, gl);
    o[c] = mk(dt, "out", Nl, C, NULL);
    l[c] = mk(dt, "lse", AB_B * AB_H, Tl, NULL);
    dq[c] = mk0(dt, "dq", Nl, AB_W);
    dkv[c] = mk0(dt, "dkv", Nl, AB_W);
  }
  /* forward: own block, then the others merged in ring order */
  g_autoptr(PxTensor) ob = mk(dt, "out_b", Nl, C, NULL);
  g_autoptr(PxTensor) lb = mk(dt, "lse_b", AB_B * AB_H, Tl, NULL);
  for (int c = 0; c < cp; c++) {
    PxAttnShape qs = ab_shape(cp, c);
    OK(px_op_attn_block_fwd(be, o[c], l[c], q[c], q[c], &qs, &qs, &E));
    for (int k = 1; k < cp; k++) {
      int j = (c - k + cp) % cp;
      PxAttnShape ks = ab_shape(cp, j);
      OK(px_op_attn_block_fwd(be, ob, lb, q[c], q[j], &qs, &ks, &E));
      if (c == 0 && j > 0) { /* chunk 0 sees nothing of a later rank's keys: -inf, zeros */
        double lh[AB_B * AB_H * Tl], oh[Nl * C];
        get(lb, lh);
        get(ob, oh);
        for (int t = 0; t < qs.pos_split; t++) {
          g_assert_true(isinf(lh[t]) && lh[t] < 0);
          for (int d = 0; d < C; d++) g_assert_cmpfloat(oh[t * C + d], ==, 0);
        }
      }
      OK(px_op_attn_merge(be, o[c], l[c], ob, lb, &qs, &E));
    }
  }
  /* backward: every (query rank, key rank) block */
  for (int c = 0; c < cp; c++)
    for (int j = 0; j < cp; j++) {
      PxAttnShape qs = ab_shape(cp, c), ks = ab_shape(cp, j);
      OK(px_op_attn_block_bwd(be, dq[c], dkv[j], go[c], q[c], q[j], o[c], l[c], &qs, &ks, &E));
    }
  double got_o[N * C], got_l[AB_B * AB_H * AB_T], got_g[N * AB_W];
  for (int c = 0; c < cp; c++) {
    PxAttnShape s = ab_shape(cp, c);
    double oh[Nl * C], lh[AB_B * AB_H * Tl], g1[Nl * AB_W], g2[Nl * AB_W];
    get(o[c], oh);
    get(l[c], lh);
    get(dq[c], g1);
    get(dkv[c], g2);
    for (int b = 0; b < AB_B; b++)
      for (int t = 0; t < Tl; t++) {
        int p = px_attn_pos(&s, t);
        memcpy(got_o + (b * AB_T + p) * C, oh + (b * Tl + t) * C, sizeof(double) * C);
        for (int w = 0; w < AB_W; w++) got_g[(b * AB_T + p) * AB_W + w] = g1[(b * Tl + t) * AB_W + w] + g2[(b * Tl + t) * AB_W + w];
        for (int h = 0; h < AB_H; h++) got_l[(b * AB_H + h) * AB_T + p] = lh[(b * AB_H + h) * Tl + t];
      }
    px_tensor_free(q[c]);
    px_tensor_free(o[c]);
    px_tensor_free(l[c]);
    px_tensor_free(dq[c]);
    px_tensor_free(dkv[c]);
    px_tensor_free(go[c]);
  }
  g_assert_cmpfloat(norm_err(got_o, out_ref, N * C), <, tol);
  g_assert_cmpfloat(norm_err(got_l, lse_ref, AB_B * AB_H * AB_T), <, tol);
  /* finite differences carry ~1e-9 of their own */
  g_assert_cmpfloat(norm_err(got_g, fd, N * AB_W), <, MAX(tol, 1e-7));
}

static void test_attn_blocks(void) {
  for (int cp = 1; cp <= 4; cp *= 2) {
    attn_blocks_case(PX_DTYPE_F64, cp, 1e-12);
    attn_blocks_case(PX_DTYPE_F32, cp, 1e-5);
  }
}

static void test_fwd_rope(void) {
  /* head_dim 2, one q and one k head: position 0 unchanged, position 1 rotated
   * by 1 radian: (1, 0) -> (cos 1, sin 1); v copied. */
  PxAttnShape s = {.B = 1, .T = 2, .heads = 1, .kv_heads = 1, .head_dim = 2};
  const double in[12] = {1, 0, 0, 1, 7, 8, 1, 0, 0, 1, 7, 8};
  const double e[12] = {1, 0, 0, 1, 7, 8, cos(1), sin(1), -sin(1), cos(1), 7, 8};
  g_autoptr(PxTensor) ti = mk(PX_DTYPE_F64, "in", 2, 6, in);
  g_autoptr(PxTensor) to = mk(PX_DTYPE_F64, "out", 2, 6, NULL);
  OK(px_op_rope_fwd(be, to, ti, &s, 10000, &E));
  double o[12];
  get(to, o);
  assert_close(o, e, 12, 1e-15);
}

static void test_fwd_embedding(void) {
  /* wte rows [10 11] [20 21] [30 31], wpe rows [1 2] [3 4]; tokens 2 0 */
  const double wte[6] = {10, 11, 20, 21, 30, 31}, wpe[4] = {1, 2, 3, 4};
  const gint32 tok[2] = {2, 0};
  g_autoptr(PxTensor) te = mk(PX_DTYPE_F32, "wte", 3, 2, wte);
  g_autoptr(PxTensor) tp = mk(PX_DTYPE_F32, "wpe", 2, 2, wpe);
  g_autoptr(PxTensor) tt = mk_ids("tokens", 2, tok);
  g_autoptr(PxTensor) to = mk(PX_DTYPE_F32, "out", 2, 2, NULL);
  OK(px_op_embedding_fwd(be, to, tt, te, tp, 1, 2, &E));
  double o[4];
  get(to, o);
  const double e[4] = {31, 33, 13, 15};
  assert_close(o, e, 4, 1e-12);
}

static void test_adamw(void) {
  /* p = 1, grads 0.5 then -0.25, lr 0.1, betas 0.9/0.999, eps 1e-8, wd 0.01:
   * step 1: m = .05, v = .00025, mhat/sqrt(vhat) = .5/.5 -> p = 1 - .1 (1 + .01) (+ eps effect);
   * values from the formula in float64. */
  for (PxDType dt = PX_DTYPE_F32; dt <= PX_DTYPE_F64; dt++) {
    const double one = 1, g1 = 0.5, g2 = -0.25;
    g_autoptr(PxTensor) p = mk(dt, "p", 1, 1, &one);
    g_autoptr(PxTensor) g = mk(dt, "g", 1, 1, &g1);
    g_autoptr(PxTensor) m = mk0(dt, "m", 1, 1);
    g_autoptr(PxTensor) v = mk0(dt, "v", 1, 1);
    PxAdamW opt = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01,
                   .t = 1, .grad_scale = 1};
    OK(px_op_adamw(be, p, g, m, v, &opt, &E));
    double x;
    get(p, &x);
    double tol = dt == PX_DTYPE_F64 ? 1e-15 : 1e-7;
    g_assert_cmpfloat_with_epsilon(x, 0.8990000019999999, tol);
    /* step 2 with grad -0.5 scaled by 0.5 (as clipping would) */
    const double g2x2 = 2 * g2;
    OK(px_tensor_upload_f64(g, &g2x2, &E));
    opt.t = 2;
    opt.grad_scale = 0.5;
    OK(px_op_adamw(be, p, g, m, v, &opt, &E));
    get(p, &x);
    g_assert_cmpfloat_with_epsilon(x, 0.8714672987058463, tol);
    get(m, &x);
    g_assert_cmpfloat_with_epsilon(x, 0.02, tol);
    get(v, &x);
    g_assert_cmpfloat_with_epsilon(x, 0.00031225, tol * 1e-3);
  }
  /* the same two steps with the scale on the device (0.5 = the clip
   * coefficient of a gradient of norm 2 clipped to 1), and a third step
   * skipped by a set flag */
  for (PxDType dt = PX_DTYPE_F32; dt <= PX_DTYPE_F64; dt++) {
    const double one = 1, g1 = 0.5, g2x2 = -0.5;
    g_autoptr(PxTensor) p = mk(dt, "p", 1, 1, &one);
    g_autoptr(PxTensor) g = mk(dt, "g", 1, 1, &g1);
    g_autoptr(PxTensor) m = mk0(dt, "m", 1, 1);
    g_autoptr(PxTensor) v = mk0(dt, "v", 1, 1);
    g_autoptr(PxTensor) sumsq = scalar(PX_DTYPE_F64, 4.0);
    g_autoptr(PxTensor) coef = scalar(dt, 0);
    g_autoptr(PxTensor) clear = mk_ids("found_inf", 1, (gint32[]){0});
    g_autoptr(PxTensor) set = mk_ids("found_inf", 1, (gint32[]){1});
    PxAdamW opt = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01,
                   .t = 1, .grad_scale = 1};
    OK(px_op_adamw_dev(be, p, g, m, v, &opt, NULL, clear, &E));
    OK(px_tensor_upload_f64(g, &g2x2, &E));
    OK(px_op_clip_coef(be, coef, sumsq, 1.0, &E));
    double tol = dt == PX_DTYPE_F64 ? 1e-15 : 1e-7;
    g_assert_cmpfloat_with_epsilon(get1(coef), 1 / (2 + 1e-6), tol);
    OK(px_op_clip_coef(be, coef, sumsq, 0, &E)); /* no clipping */
    g_assert_cmpfloat(get1(coef), ==, 1);
    OK(px_op_clip_coef(be, coef, sumsq, 3.0, &E)); /* norm 2 under 3: 1 */
    g_assert_cmpfloat(get1(coef), ==, 1);
    const double half = 0.5;
    OK(px_tensor_upload_f64(coef, &half, &E));
    opt.t = 2;
    OK(px_op_adamw_dev(be, p, g, m, v, &opt, coef, clear, &E));
    g_assert_cmpfloat_with_epsilon(get1(p), 0.8714672987058463, tol);
    opt.t = 3;
    OK(px_op_adamw_dev(be, p, g, m, v, &opt, coef, set, &E));
    g_assert_cmpfloat_with_epsilon(get1(p), 0.8714672987058463, tol);
    g_assert_cmpfloat_with_epsilon(get1(m), 0.02, tol);
  }
}

/* AdamW over many tensors in one call (px_op_adamw_multi) against one
 * px_op_adamw_dev per tensor, bit for bit: f32 with f32 or bf16 gradients
 * (mixed precision's master), one tensor over the cuda kernel's 65536-element
 * chunk, f64; each its own weight decay; a device scale, then a skipped
 * step. The first tensor holds the hand case of test_adamw (p = 1, g = 0.5,
 * lr 0.1, wd 0.01: 0.899000002 after one step). */
static void test_adamw_multi(void) {
  enum { K = 4 };
  const struct {
    PxDType p, g;
    gint64 n;
    double wd;
  } spec[K] = {{PX_DTYPE_F32, PX_DTYPE_F32, 1, 0.01}, {PX_DTYPE_F32, PX_DTYPE_BF16, 1000, 0},
               {PX_DTYPE_F32, PX_DTYPE_F32, 70001, 0.05}, {PX_DTYPE_F64, PX_DTYPE_F64, 300, 0.1}};
  g_autoptr(GRand) rng = g_rand_new_with_seed(7);
  PxTensor *t[2][K][4]; /* [multi, single][tensor][p, g, m, v] */
  for (int k = 0; k < K; k++) {
    gint64 n = spec[k].n;
    g_autofree double *vals = g_new(double, 4 * n);
    for (gint64 i = 0; i < 4 * n; i++) vals[i] = g_rand_double_range(rng, -1, 1);
    for (gint64 i = 3 * n; i < 4 * n; i++) vals[i] = fabs(vals[i]) * 1e-3; /* v >= 0 */
    if (k == 0) vals[0] = 1, vals[1] = 0.5, vals[2] = 0, vals[3] = 0;
    for (int c = 0; c < 2; c++)
      for (int j = 0; j < 4; j++) t[c][k][j] = mk(j == 1 ? spec[k].g : spec[k].p, "t", 1, n, vals + j * n);
  }
  g_autoptr(PxTensor) coef = scalar(PX_DTYPE_F32, 0.75);
  g_autoptr(PxTensor) clear = mk_ids("found_inf", 1, (gint32[]){0});
  g_autoptr(PxTensor) set = mk_ids("found_inf", 1, (gint32[]){1});
  PxAdamW opt = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 99, .t = 1, .grad_scale = 1};
  for (int step = 0; step < 3; step++) {
    const PxTensor *sc = step ? coef : NULL, *skip = step == 2 ? set : clear;
    PxAdamWItem items[K];
    for (int k = 0; k < K; k++) items[k] = (PxAdamWItem){t[0][k][0], t[0][k][1], t[0][k][2], t[0][k][3], spec[k].wd};
    OK(px_op_adamw_multi(be, items, K, &opt, sc, skip, &E));
    for (int k = 0; k < K; k++) {
      PxAdamW o = opt;
      o.weight_decay = spec[k].wd;
      OK(px_op_adamw_dev(be, t[1][k][0], t[1][k][1], t[1][k][2], t[1][k][3], &o, sc, skip, &E));
    }
    if (step == 0) g_assert_cmpfloat_with_epsilon(get1(t[0][0][0]), 0.8990000019999999, 1e-7);
    opt.t++;
  }
  for (int k = 0; k < K; k++) {
    gint64 n = spec[k].n;
    g_autofree double *a = g_new(double, n), *b = g_new(double, n);
    for (int j = 0; j < 4; j++) {
      get(t[0][k][j], a);
      get(t[1][k][j], b);
      for (gint64 i = 0; i < n; i++) g_assert_cmpfloat(a[i], ==, b[i]);
    }
    for (int c = 0; c < 2; c++)
      for (int j = 0; j < 4; j++) px_tensor_free(t[c][k][j]);
  }
  /* a missing tensor: one clear error */
  PxAdamWItem bad = {NULL, NULL, NULL, NULL, 0};
  GError *err = NULL;
  g_assert_false(px_op_adamw_multi(be, &bad, 1, &opt, NULL, NULL, &err));
  g_assert_error(err, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE);
  g_clear_error(&err);
}

/* The sums of squares of several tensors in one call: 1 + 4 + 9, 0.25 (f32),
 * 2.25 + 6.25 (bf16: exact), 16 (f64) added to acc's 0.5: 39.25. */
static void test_sum_squares_multi(void) {
  const double a[3] = {1, -2, 3}, b[1] = {0.5}, c[2] = {1.5, -2.5}, d[1] = {4};
  g_autoptr(PxTensor) ta = mk(PX_DTYPE_F32, "a", 1, 3, a);
  g_autoptr(PxTensor) tb = mk(PX_DTYPE_F32, "b", 1, 1, b);
  g_autoptr(PxTensor) tc = mk(PX_DTYPE_BF16, "c", 1, 2, c);
  g_autoptr(PxTensor) td = mk(PX_DTYPE_F64, "d", 1, 1, d);
  g_autoptr(PxTensor) acc = scalar(PX_DTYPE_F64, 0.5);
  const PxTensor *ts[] = {ta, tb, tc, td};
  OK(px_op_sum_squares_acc_multi(be, acc, ts, 4, &E));
  g_assert_cmpfloat(get1(acc), ==, 39.25);
  OK(px_op_sum_squares_acc_multi(be, acc, ts, 0, &E)); /* nothing */
  g_assert_cmpfloat(get1(acc), ==, 39.25);
}

static void test_sum_squares_scale(void) {
  const double x[3] = {1, -2, 3};
  g_autoptr(PxTensor) t = mk(PX_DTYPE_F32, "x", 1, 3, x);
  double ss;
  OK(px_op_sum_squares(be, t, &ss, &E));
  g_assert_cmpfloat(ss, ==, 14);
  OK(px_op_scale(be, t, 0.5, &E));
  OK(px_op_sum_squares(be, t, &ss, &E));
  g_assert_cmpfloat(ss, ==, 3.5);
}

/* ---------------- errors, memory, check macro ---------------- */

static void test_shape_error(void) {
  g_autoptr(PxTensor) x = mk(PX_DTYPE_F32, "h.0.ln1.out", 4, 8, NULL);
  g_autoptr(PxTensor) w = mk(PX_DTYPE_F32, "h.0.attn.qkv.weight", 24, 7, NULL);
  g_autoptr(PxTensor) y = mk(PX_DTYPE_F32, "qkv", 4, 24, NULL);
  g_autoptr(PxTensor) w64 = mk(PX_DTYPE_F64, "w64", 24, 8, NULL);
  g_autoptr(GError) error = NULL;
  g_assert_false(px_op_linear_fwd(be, y, x, w, NULL, &error));
  g_assert_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE);
  g_assert_cmpstr(error->message, ==,
                  "linear_fwd: x (h.0.ln1.out) is f32 with 32 elements, expected f32 with 4x7");
  g_clear_error(&error);
  g_assert_false(px_op_linear_fwd(be, y, x, w64, NULL, &error));
  g_assert_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE);
  g_clear_error(&error);
  /* a token outside the vocabulary */
  const gint32 bad[2] = {0, 3};
  g_autoptr(PxTensor) tok = mk_ids("tokens", 2, bad);
  g_autoptr(PxTensor) wte = mk(PX_DTYPE_F32, "wte", 3, 8, NULL);
  g_autoptr(PxTensor) out = mk(PX_DTYPE_F32, "out", 2, 8, NULL);
  g_assert_false(px_op_embedding_fwd(be, out, tok, wte, NULL, 1, 2, &error));
  g_assert_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE);
  g_assert_cmpstr(error->message, ==, "embedding_fwd: tokens[1] = 3 outside [0, 3)");
  g_clear_error(&error);
  g_assert_null(px_backend_new("tpu", 0, &error));
  g_assert_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_UNSUPPORTED);
}

static void test_memory(void) {
  g_autoptr(PxBackend) b = px_backend_new("cpu", 0, NULL);
  g_autoptr(GError) error = NULL;
  PxMemStats st;
  PxTensor *w = px_tensor_new(b, "w", PX_DTYPE_F32, PX_MEM_WEIGHTS, 2, (gint64[]){768, 2304}, &error);
  PxTensor *g = px_tensor_new(b, "g", PX_DTYPE_F32, PX_MEM_GRADS, 2, (gint64[]){768, 2304}, &error);
  PxTensor *a = px_tensor_new(b, "a", PX_DTYPE_F64, PX_MEM_ACTIVATIONS, 3, (gint64[]){4, 64, 768}, &error);
  g_assert_no_error(error);
  g_assert_cmpint(w->bytes, ==, 768 * 2304 * 4);
  g_autoptr(PxTensor) view = px_tensor_view(a, "a[1]", 64 * 768, 2, (gint64[]){64, 768}, &error);
  g_assert_no_error(error);
  g_assert_true((char *)view->data == (char *)a->data + 64 * 768 * 8);
  px_backend_mem_stats(b, &st);
  g_assert_cmpint(st.current[PX_MEM_WEIGHTS], ==, 7077888);
  g_assert_cmpint(st.current[PX_MEM_GRADS], ==, 7077888);
  g_assert_cmpint(st.current[PX_MEM_ACTIVATIONS], ==, 4 * 64 * 768 * 8);  /* view not counted */
  g_assert_cmpint(st.total_current, ==, 2 * 7077888 + 1572864);
  px_tensor_free(a);
  px_tensor_free(g);
  px_backend_mem_stats(b, &st);
  g_assert_cmpint(st.current[PX_MEM_ACTIVATIONS], ==, 0);
  g_assert_cmpint(st.peak[PX_MEM_ACTIVATIONS], ==, 1572864);
  g_assert_cmpint(st.total_current, ==, 7077888);
  g_assert_cmpint(st.total_peak, ==, 2 * 7077888 + 1572864);
  px_backend_mem_reset_peak(b);
  px_backend_mem_stats(b, &st);
  g_assert_cmpint(st.total_peak, ==, 7077888);
  g_assert_cmpint(st.peak[PX_MEM_GRADS], ==, 0);
  px_tensor_free(w);
  g_clear_pointer(&view, px_tensor_free);
}

/* The pool: size classes by hand (512-byte steps to 64 KiB, then eight per
 * doubling), a freed block serving the next tensor of its class, trim. */
static void test_pool(void) {
  g_autoptr(PxBackend) b = px_backend_new("cpu", 0, NULL);
  g_autoptr(GError) error = NULL;
  PxMemStats st;
  /* 250 f32 = 1000 B -> class 1024; 25,000 f32 = 100,000 B: 2^16 < 100,000 <= 2^17,
   * step 2^13 = 8192 -> 13 * 8192 = 106,496 */
  PxTensor *a = px_tensor_new(b, "a", PX_DTYPE_F32, PX_MEM_BUFFERS, 1, (gint64[]){250}, &error);
  PxTensor *c = px_tensor_new(b, "c", PX_DTYPE_F32, PX_MEM_ACTIVATIONS, 1, (gint64[]){25000}, &error);
  g_assert_no_error(error);
  px_backend_mem_stats(b, &st);
  g_assert_cmpint(st.total_current, ==, 1000 + 100000);
  g_assert_cmpint(st.reserved, ==, 1024 + 106496);
  g_assert_cmpint(st.cached, ==, 0);
  void *cdata = c->data;
  px_tensor_free(c);
  px_backend_mem_stats(b, &st);
  if (st.cached == 0 && st.reserved == 1024) { /* AddressSanitizer builds free at once */
    px_tensor_free(a);
    g_test_skip("the pool is off in this build");
    return;
  }
  g_assert_cmpint(st.cached, ==, 106496);
  g_assert_cmpint(st.reserved, ==, 1024 + 106496);
  /* 26,000 f32 = 104,000 B is in the same class: it gets the cached block, zeroed */
  float *junk = cdata;
  for (int i = 0; i < 25000; i++) junk[i] = 7.0f;
  PxTensor *d = px_tensor_new_zeroed(b, "d", PX_DTYPE_F32, PX_MEM_GRADS, 1, (gint64[]){26000}, &error);
  g_assert_no_error(error);
  g_assert_true(d->data == cdata);
  g_autofree double *dv = g_new(double, 26000);
  get(d, dv);
  for (int i = 0; i < 26000; i++) g_assert_cmpfloat(dv[i], ==, 0);
  px_backend_mem_stats(b, &st);
  g_assert_cmpint(st.cached, ==, 0);
  g_assert_cmpint(st.reserved, ==, 1024 + 106496);
  g_assert_cmpint(st.current[PX_MEM_GRADS], ==, 104000);
  px_tensor_free(d);
  px_tensor_free(a);
  px_backend_mem_stats(b, &st);
  g_assert_cmpint(st.cached, ==, 1024 + 106496);
  g_assert_cmpint(st.reserved_peak, ==, 1024 + 106496);
  g_assert_cmpint(px_backend_trim(b), ==, 1024 + 106496);
  px_backend_mem_stats(b, &st);
  g_assert_cmpint(st.cached, ==, 0);
  g_assert_cmpint(st.reserved, ==, 0);
  g_assert_cmpint(st.total_current, ==, 0);
}

/* PX_POISON=1: a fresh tensor reads as NaN (floats) or -1 (ids); zeroed ones as 0. */
static void test_poison(void) {
  g_autofree char *old = g_strdup(g_getenv("PX_POISON"));
  g_setenv("PX_POISON", "1", TRUE);
  g_autoptr(PxBackend) b = px_backend_new("cpu", 0, NULL);
  if (old) g_setenv("PX_POISON", old, TRUE);
  else g_unsetenv("PX_POISON");
  g_autoptr(GError) error = NULL;
  for (PxDType dt = PX_DTYPE_F32; dt <= PX_DTYPE_F64; dt++) {
    g_autoptr(PxTensor) t = px_tensor_new(b, "t", dt, PX_MEM_BUFFERS, 1, (gint64[]){3}, &error);
    g_autoptr(PxTensor) z = px_tensor_new_zeroed(b, "z", dt, PX_MEM_BUFFERS, 1, (gint64[]){3}, &error);
    double v[3], w[3];
    g_assert_true(px_tensor_download_f64(t, v, &error));
    g_assert_true(px_tensor_download_f64(z, w, &error));
    for (int i = 0; i < 3; i++) {
      g_assert_true(isnan(v[i]));
      g_assert_cmpfloat(w[i], ==, 0);
    }
  }
  g_autoptr(PxTensor) ids = px_tensor_new(b, "ids", PX_DTYPE_I32, PX_MEM_BUFFERS, 1, (gint64[]){2}, &error);
  gint32 iv[2];
  g_assert_true(px_tensor_download(ids, iv, &error));
  g_assert_cmpint(iv[0], ==, -1);
  g_assert_cmpint(iv[1], ==, -1);
}

static void test_registry(void) {
  const char *const *names = px_backend_list();
  g_assert_cmpstr(names[0], ==, "cpu");
  g_autoptr(GError) error = NULL;
  g_autoptr(PxBackend) b = px_backend_new("cpu", 0, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(px_backend_name(b), ==, "cpu");
  g_assert_null(px_backend_new("tpu", 0, &error));
  g_assert_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_UNSUPPORTED);
  g_assert_true(g_str_has_prefix(error->message, "unknown backend 'tpu' (cpu"));
#ifndef PX_HAVE_CUDA
  g_clear_error(&error);
  g_assert_null(px_backend_new("cuda", 1, &error));
  g_assert_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_UNSUPPORTED);
  g_assert_true(g_str_has_prefix(error->message, "backend 'cuda' (device 1) is not built in"));
#endif
}

/* px_op_rows_gather / px_op_rows_dot (the MoE layer's dispatch and combine)
 * by hand: src rows [1 2], [3 4], [5 6]; T 2 rows of k 2 picks, idx
 * {2, 0 | -1, 1}, wt {0.5, 2 | 9, -1}:
 *   dst[0] = 0.5·[5 6] + 2·[1 2] = [4.5 7], dst[1] = -1·[3 4] = [-3 -4]
 *   (the -1 pick is dropped: its weight 9 never counts);
 * without weights [6 8] and [3 4]; k 1 over the four picks: the rows
 * themselves, a dropped pick a zero row. rows_dot with a = [1 1], [2 0]:
 *   [1 1]·[5 6] = 11, [1 1]·[1 2] = 3, 0, [2 0]·[3 4] = 6.
 * An index outside [-1, N) is refused with its position. */
static void test_rows(void) {
  const PxDType dts[2] = {PX_DTYPE_F32, PX_DTYPE_F64};
  for (int d = 0; d < 2; d++) {
    PxDType dt = dts[d];
    const double s[6] = {1, 2, 3, 4, 5, 6}, w[4] = {0.5, 2, 9, -1}, a[4] = {1, 1, 2, 0};
    const gint32 ids[4] = {2, 0, -1, 1};
    g_autoptr(PxTensor) src = mk(dt, "src", 3, 2, s);
    g_autoptr(PxTensor) wt = mk(dt, "wt", 4, 1, w);
    g_autoptr(PxTensor) idx = mk_ids("idx", 4, ids);
    g_autoptr(PxTensor) dst = mk(dt, "dst", 2, 2, NULL);
    double y[8];
    OK(px_op_rows_gather(be, dst, src, idx, wt, 2, &E));
    get(dst, y);
    const double want[4] = {4.5, 7, -3, -4};
    for (int i = 0; i < 4; i++) g_assert_cmpfloat(y[i], ==, want[i]);
    OK(px_op_rows_gather(be, dst, src, idx, NULL, 2, &E));
    get(dst, y);
    const double plain[4] = {6, 8, 3, 4};
    for (int i = 0; i < 4; i++) g_assert_cmpfloat(y[i], ==, plain[i]);
    g_autoptr(PxTensor) each = mk(dt, "each", 4, 2, NULL);
    OK(px_op_rows_gather(be, each, src, idx, NULL, 1, &E));
    get(each, y);
    const double rows[8] = {5, 6, 1, 2, 0, 0, 3, 4};
    for (int i = 0; i < 8; i++) g_assert_cmpfloat(y[i], ==, rows[i]);
    g_autoptr(PxTensor) at = mk(dt, "a", 2, 2, a);
    g_autoptr(PxTensor) out = mk(dt, "out", 4, 1, NULL);
    OK(px_op_rows_dot(be, out, at, src, idx, 2, &E));
    get(out, y);
    const double dots[4] = {11, 3, 0, 6};
    for (int i = 0; i < 4; i++) g_assert_cmpfloat(y[i], ==, dots[i]);
    const gint32 bad[4] = {2, 0, 3, 1};
    g_autoptr(PxTensor) bidx = mk_ids("bidx", 4, bad);
    GError *E = NULL;
    g_assert_false(px_op_rows_gather(be, dst, src, bidx, wt, 2, &E));
    g_assert_error(E, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE);
    g_assert_nonnull(strstr(E->message, "bidx[2] = 3 outside [-1, 3)"));
    g_clear_error(&E);
    g_assert_false(px_op_rows_gather(be, dst, src, idx, wt, 3, &E)); /* 4 picks are not 2 rows of 3 */
    g_assert_error(E, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE);
    g_clear_error(&E);
  }
}

/* px_op_router_topk / px_op_router_bwd (the MoE router) by hand, T 2 rows
 * of E 4 experts, k 2. Logits ln[1 2 4 1] and ln[3 1 3 1] give
 *   p = [1 2 4 1] / 8 = [0.125 0.25 0.5 0.125] and [0.375 0.125 0.375 0.125];
 * top-2 {2, 1} (0.5, 0.25), and {0, 2} (0.375 twice: the tie to the lower
 * index first); psum = [0.5 0.375 0.875 0.25] (to the logits' rounding).
 * Backward from those p (exact in binary), topi {2 1 | 0 2}, dgate
 * {1 -1 | 0.5 0} (row 1's second copy dropped: gradient 0), daux 0.5 and
 * fcnt [1 0 0 2], so the load-balancing part of dp is [0.5 0 0 1]:
 *  - without norm_topk, dp = base + dgate at the choices:
 *    row 0 dp [0.5 -1 1 1], dot Σ p·dp = 0.0625 - 0.25 + 0.5 + 0.125 = 0.4375,
 *      dl = p·(dp - dot) = [0.0078125 -0.359375 0.28125 0.0703125];
 *    row 1 dp [1 0 0 1], dot 0.375 + 0.125 = 0.5,
 *      dl = [0.1875 -0.0625 -0.1875 0.0625];
 *  - with norm_topk (w_j = p_j / z), dp at choice j += (g_j - Σ_l g_l w_l) / z:
 *    row 0 z 0.75, w {2/3, 1/3}, Σ g w = 2/3 - 1/3 = 1/3: expert 2
 *      (1 - 1/3) / 0.75 = 8/9, expert 1 (-1 - 1/3) / 0.75 = -16/9;
 *      dp [0.5 -16/9 8/9 1], dot 0.0625 - 4/9 + 4/9 + 0.125 = 0.1875,
 *      dl = [0.125·0.3125, 0.25·(-16/9 - 3/16), 0.5·(8/9 - 3/16), 0.125·0.8125]
 *         = [0.0390625 -283/576 101/288 0.1015625];
 *    row 1 z 0.75, w {0.5, 0.5}, Σ g w = 0.25: expert 0 (0.5 - 0.25) / 0.75
 *      = 1/3, expert 2 (0 - 0.25) / 0.75 = -1/3 (the dropped copy still
 *      counts in z); dp [5/6 0 -1/3 1], dot 0.3125 - 0.125 + 0.125 = 0.3125,
 *      dl = [0.375·25/48, -0.125·0.3125, -0.375·31/48, 0.125·0.6875]
 *         = [0.1953125 -0.0390625 -0.2421875 0.0859375].
 * Each row of dl sums to 0. Without fcnt the base is 0: row 1 without
 * norm_topk dp [0.5 0 0 0], dot 0.1875, dl [0.1171875 -0.0234375 -0.0703125
 * -0.0234375]. k above E, or a pick outside [0, E), is refused. */
static void test_router(void) {
  const PxDType dts[2] = {PX_DTYPE_F32, PX_DTYPE_F64};
  for (int d = 0; d < 2; d++) {
    PxDType dt = dts[d];
    double tol = dt == PX_DTYPE_F32 ? 1e-6 : 1e-14;
    const double l[8] = {log(1), log(2), log(4), log(1), log(3), log(1), log(3), log(1)};
    g_autoptr(PxTensor) logits = mk(dt, "logits", 2, 4, l);
    g_autoptr(PxTensor) probs = mk(dt, "probs", 2, 4, NULL);
    g_autoptr(PxTensor) topi = mk_ids("topi", 4, (gint32[]){9, 9, 9, 9});
    g_autoptr(PxTensor) topv = mk(PX_DTYPE_F64, "topv", 4, 1, NULL);
    g_autoptr(PxTensor) psum = mk(PX_DTYPE_F64, "psum", 1, 4, NULL);
    OK(px_op_router_topk(be, probs, topi, topv, psum, logits, 2, &E));
    double y[8];
    gint32 iv[4];
    const double p[8] = {0.125, 0.25, 0.5, 0.125, 0.375, 0.125, 0.375, 0.125};
    get(probs, y);
    for (int i = 0; i < 8; i++) g_assert_cmpfloat_with_epsilon(y[i], p[i], tol);
    OK(px_tensor_download(topi, iv, &E));
    const gint32 want_i[4] = {2, 1, 0, 2};
    for (int i = 0; i < 4; i++) g_assert_cmpint(iv[i], ==, want_i[i]);
    get(topv, y);
    const double want_v[4] = {0.5, 0.25, 0.375, 0.375};
    for (int i = 0; i < 4; i++) g_assert_cmpfloat_with_epsilon(y[i], want_v[i], tol);
    get(psum, y);
    const double want_s[4] = {0.5, 0.375, 0.875, 0.25};
    for (int i = 0; i < 4; i++) g_assert_cmpfloat_with_epsilon(y[i], want_s[i], tol);

    g_autoptr(PxTensor) pe = mk(dt, "p", 2, 4, p);
    g_autoptr(PxTensor) dg = mk(dt, "dgate", 4, 1, (double[]){1, -1, 0.5, 0});
    g_autoptr(PxTensor) fc = mk(dt, "fcnt", 1, 4, (double[]){1, 0, 0, 2});
    g_autoptr(PxTensor) dl = mk(dt, "dlogits", 2, 4, NULL);
    const double plain[8] = {0.0078125, -0.359375, 0.28125, 0.0703125, 0.1875, -0.0625, -0.1875, 0.0625};
    const double normed[8] = {0.0390625, -283.0 / 576, 101.0 / 288, 0.1015625,
                              0.1953125, -0.0390625,   -0.2421875,  0.0859375};
    const double nofc[4] = {0.1171875, -0.0234375, -0.0703125, -0.0234375};
    for (int norm = 0; norm < 2; norm++) {
      OK(px_op_router_bwd(be, dl, pe, topi, dg, fc, 0.5, norm, 2, &E));
      get(dl, y);
      for (int i = 0; i < 8; i++) g_assert_cmpfloat_with_epsilon(y[i], norm ? normed[i] : plain[i], tol);
    }
    OK(px_op_router_bwd(be, dl, pe, topi, dg, NULL, 0.5, FALSE, 2, &E));
    get(dl, y);
    for (int i = 0; i < 4; i++) g_assert_cmpfloat_with_epsilon(y[4 + i], nofc[i], tol);

    GError *E = NULL;
    g_autoptr(PxTensor) t5 = mk_ids("t5", 10, (gint32[]){0, 1, 2, 3, 0, 0, 1, 2, 3, 0});
    g_assert_false(px_op_router_topk(be, probs, t5, topv, psum, logits, 5, &E));
    g_assert_error(E, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE);
    g_assert_nonnull(strstr(E->message, "k = 5, expected 1 to 4"));
    g_clear_error(&E);
    g_autoptr(PxTensor) bad = mk_ids("bad", 4, (gint32[]){2, 1, 4, 2});
    g_assert_false(px_op_router_bwd(be, dl, pe, bad, dg, fc, 0.5, FALSE, 2, &E));
    g_assert_error(E, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE);
    g_assert_nonnull(strstr(E->message, "bad[2] = 4 outside [0, 4)"));
    g_clear_error(&E);
  }
}

static void test_copy(void) {
  const double x[6] = {1, -2, 3.5, 4, 5, 6e-300};
  g_autoptr(PxTensor) src = mk(PX_DTYPE_F64, "src", 2, 3, x);
  g_autoptr(PxTensor) dst = mk(PX_DTYPE_F64, "dst", 3, 2, NULL);
  OK(px_tensor_copy(dst, src, &E));
  double y[6];
  get(dst, y);
  for (int i = 0; i < 6; i++) g_assert_cmpfloat(y[i], ==, x[i]);
  g_autoptr(PxTensor) f = mk(PX_DTYPE_F32, "f", 2, 3, NULL);
  g_autoptr(GError) error = NULL;
  g_assert_false(px_tensor_copy(f, src, &error));
  g_assert_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE);
  g_assert_cmpstr(error->message, ==, "copy src -> f: f64[6] into f32[6]");
}

/* Device scalars: sums of squares accumulate (f32 and f64 accumulators), the
 * non-finite flag is set by NaN and by Inf and left alone otherwise. */
static void test_device_scalars(void) {
  const double x[3] = {1, -2, 3}, y[2] = {0.5, 4};
  for (PxDType dt = PX_DTYPE_F32; dt <= PX_DTYPE_F64; dt++) {
    g_autoptr(PxTensor) tx = mk(dt, "x", 1, 3, x);
    g_autoptr(PxTensor) ty = mk(dt, "y", 1, 2, y);
    for (PxDType at = PX_DTYPE_F32; at <= PX_DTYPE_F64; at++) {
      g_autoptr(PxTensor) acc = scalar(at, 0);
      OK(px_op_sum_squares_acc(be, acc, tx, &E));
      OK(px_op_sum_squares_acc(be, acc, ty, &E));
      g_assert_cmpfloat(get1(acc), ==, 14 + 16.25);
    }
    g_autoptr(PxTensor) flag = scalar(PX_DTYPE_F32, 0);
    OK(px_op_check_finite(be, flag, tx, &E));
    g_assert_cmpfloat(get1(flag), ==, 0);
    const double bad[3][2] = {{1, NAN}, {INFINITY, 0}, {-INFINITY, 2}};
    for (int k = 0; k < 3; k++) {
      g_autoptr(PxTensor) tb = mk(dt, "bad", 1, 2, bad[k]);
      g_autoptr(PxTensor) fi = mk_ids("flag", 1, (gint32[]){0});
      OK(px_op_check_finite(be, fi, tb, &E));
      gint32 v;
      OK(px_tensor_download(fi, &v, &E));
      g_assert_cmpint(v, ==, 1);
      OK(px_op_check_finite(be, fi, tx, &E)); /* a finite tensor does not clear it */
      OK(px_tensor_download(fi, &v, &E));
      g_assert_cmpint(v, ==, 1);
    }
  }
  /* the old host-returning form agrees */
  g_autoptr(PxTensor) tx = mk(PX_DTYPE_F64, "x", 1, 3, x);
  double ss;
  OK(px_op_sum_squares(be, tx, &ss, &E));
  g_assert_cmpfloat(ss, ==, 14);
}

/* Vocabulary-parallel embedding: a vocabulary of 7 over tp = 3 ranks of 3
 * rows each (the last holds 1 real row and 2 of padding); the partial rows
 * summed over the ranks and the gradient shards laid end to end equal the
 * whole-vocabulary lookup and scatter-add computed here in double. */
static void test_embedding_vp(void) {
  enum { V = 7, TP = 3, VL = 3, C = 4, B = 2, T = 3, N = B * T };
  const gint32 tok[N] = {6, 0, 3, 3, 5, 1};
  double wte[V * C], wpe[T * C], dout[N * C];
  for (int i = 0; i < V * C; i++) wte[i] = sin(1.3 * i + 0.2);
  for (int i = 0; i < T * C; i++) wpe[i] = cos(0.7 * i);
  for (int i = 0; i < N * C; i++) dout[i] = sin(0.37 * i - 1);
  double want[N * C], want_dwte[V * C] = {0}, want_dwpe[T * C] = {0};
  for (int i = 0; i < N; i++)
    for (int c = 0; c < C; c++) {
      want[i * C + c] = wte[tok[i] * C + c] + wpe[(i % T) * C + c];
      want_dwte[tok[i] * C + c] += dout[i * C + c];
      want_dwpe[(i % T) * C + c] += dout[i * C + c];
    }
  for (PxDType dt = PX_DTYPE_F32; dt <= PX_DTYPE_F64; dt++) {
    double tol = dt == PX_DTYPE_F64 ? 1e-15 : 1e-6;
    double sum[N * C] = {0}, dwte[TP * VL * C], dwpe[T * C];
    g_autoptr(PxTensor) ttok = mk_ids("tokens", N, tok);
    g_autoptr(PxTensor) tpe = mk(dt, "wpe", T, C, wpe);
    g_autoptr(PxTensor) tdout = mk(dt, "dout", N, C, dout);
    g_autoptr(PxTensor) tdwpe = mk0(dt, "dwpe", T, C);
    for (int r = 0; r < TP; r++) {
      int v0 = r * VL, real = MIN(VL, V - v0);
      double shard[VL * C];
      for (int i = 0; i < VL * C; i++) shard[i] = i < real * C ? wte[v0 * C + i] : 1e30; /* padding */
      g_autoptr(PxTensor) tw = mk(dt, "wte", VL, C, shard);
      g_autoptr(PxTensor) out = mk(dt, "out", N, C, NULL);
      OK(px_op_embedding_vp_fwd(be, out, ttok, tw, r == 0 ? tpe : NULL, v0, real, B, T, &E));
      double o[N * C];
      get(out, o);
      for (int i = 0; i < N * C; i++) sum[i] += o[i];
      g_autoptr(PxTensor) tdw = mk0(dt, "dwte", VL, C);
      OK(px_op_embedding_vp_bwd(be, tdw, r == 0 ? tdwpe : NULL, tdout, ttok, v0, real, B, T, &E));
      get(tdw, dwte + r * VL * C);
      for (int i = real * C; i < VL * C; i++) g_assert_cmpfloat(dwte[r * VL * C + i], ==, 0);
    }
    get(tdwpe, dwpe);
    assert_close(sum, want, N * C, tol);
    assert_close(dwte, want_dwte, V * C, tol);
    assert_close(dwpe, want_dwpe, T * C, tol);
  }
}

/* Vocabulary-parallel cross-entropy: V = 7 over tp = 3 (padding columns hold
 * huge logits that must take no part). The ranks' pieces, with the TP
 * reductions done here (max, then sums), against the whole-row log-softmax
 * and its gradient in double. */
static void test_cross_entropy_vp(void) {
  enum { V = 7, TP = 3, VL = 3, N = 4 };
  const gint32 tgt[N] = {6, 0, 4, 2};
  double lg[N * V];
  for (int i = 0; i < N * V; i++) lg[i] = 3 * sin(0.9 * i + 0.4);
  const double dloss = 0.75;
  double want_loss[N], want_d[N * V], want_mean = 0;
  for (int i = 0; i < N; i++) {
    double mx = -INFINITY, s = 0;
    for (int v = 0; v < V; v++) mx = MAX(mx, lg[i * V + v]);
    for (int v = 0; v < V; v++) s += exp(lg[i * V + v] - mx);
    want_loss[i] = log(s) + mx - lg[i * V + tgt[i]];
    want_mean += want_loss[i] / N;
    for (int v = 0; v < V; v++) want_d[i * V + v] = dloss / N * (exp(lg[i * V + v] - mx) / s - (v == tgt[i]));
  }
  for (PxDType dt = PX_DTYPE_F32; dt <= PX_DTYPE_F64; dt++) {
    double tol = dt == PX_DTYPE_F64 ? 1e-14 : 1e-6;
    g_autoptr(PxTensor) ttgt = mk_ids("targets", N, tgt);
    PxTensor *shard[TP];
    double maxima[TP * N], stats[2 * N] = {0};
    for (int r = 0; r < TP; r++) {
      int v0 = r * VL, real = MIN(VL, V - v0);
      double x[N * VL];
      for (int i = 0; i < N; i++)
        for (int v = 0; v < VL; v++) x[i * VL + v] = v < real ? lg[i * V + v0 + v] : 1e3;
      shard[r] = mk(dt, "logits", N, VL, x);
      g_autoptr(PxTensor) lm = mk(dt, "local_max", 1, N, NULL);
      OK(px_op_ce_vp_max(be, lm, shard[r], real, &E));
      get(lm, maxima + r * N);
    }
    /* the all-reduce MAX of the maxima */
    double gm[N];
    for (int i = 0; i < N; i++) {
      gm[i] = maxima[i];
      for (int r = 1; r < TP; r++) gm[i] = MAX(gm[i], maxima[r * N + i]);
      double m = -INFINITY;
      for (int v = 0; v < V; v++) m = MAX(m, lg[i * V + v]);
      g_assert_cmpfloat_with_epsilon(gm[i], m, tol);
    }
    g_autoptr(PxTensor) gmax = mk(dt, "gmax", 1, N, gm);
    for (int r = 0; r < TP; r++) { /* then the all-reduce SUM of the stats */
      int v0 = r * VL, real = MIN(VL, V - v0);
      g_autoptr(PxTensor) st = mk(dt, "stats", 2, N, NULL);
      OK(px_op_ce_vp_stats(be, st, shard[r], ttgt, gmax, v0, real, &E));
      double s[2 * N];
      get(st, s);
      for (int i = 0; i < 2 * N; i++) stats[i] += s[i];
    }
    g_autoptr(PxTensor) tstats = mk(dt, "stats", 2, N, stats);
    g_autoptr(PxTensor) losses = mk(dt, "losses", 1, N, NULL);
    g_autoptr(PxTensor) acc = scalar(PX_DTYPE_F64, 1.0);
    OK(px_op_ce_vp_loss(be, losses, acc, gmax, tstats, &E));
    double l[N];
    get(losses, l);
    assert_close(l, want_loss, N, tol);
    g_assert_cmpfloat_with_epsilon(get1(acc), 1.0 + want_mean, tol);
    for (int r = 0; r < TP; r++) {
      int v0 = r * VL, real = MIN(VL, V - v0);
      g_autoptr(PxTensor) dl = mk0(dt, "dlogits", N, VL);
      OK(px_op_ce_vp_bwd(be, dl, shard[r], ttgt, gmax, tstats, v0, real, dloss, &E));
      double d[N * VL];
      get(dl, d);
      for (int i = 0; i < N; i++)
        for (int v = 0; v < VL; v++)
          g_assert_cmpfloat_with_epsilon(d[i * VL + v], v < real ? want_d[i * V + v0 + v] : 0, tol);
      px_tensor_free(shard[r]);
    }
  }
}

static const char *fake_status_str(int s) { return s == 2 ? "out of memory" : "other"; }
static gboolean fake_call(int status, GError **error) {
  PX_CHECK_GEN(status, 0, fake_status_str, PX_BACKEND_ERROR, PX_BACKEND_ERROR_DEVICE, 3, error);
  return TRUE;
}

static void test_check_macro(void) {
  g_autoptr(GError) error = NULL;
  g_assert_true(fake_call(0, &error));
  g_assert_no_error(error);
  g_assert_false(fake_call(2, &error));
  g_assert_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_DEVICE);
  /* names the call, the rank, the file and the failure */
  g_assert_true(g_str_has_prefix(error->message, "status failed on rank 3 at tests/test_backend.c:"));
  g_assert_true(g_str_has_suffix(error->message, ": out of memory"));
}

/* ---------------- one GPT-2 block against numpy ---------------- */

typedef struct {
  GHashTable *t; /* name -> GArray of double */
} Ref;

static GArray *ref_get(Ref *r, const char *name) {
  GArray *a = g_hash_table_lookup(r->t, name);
  if (!a) g_error("reference dump lacks %s", name);
  return a;
}

static Ref *ref_load(const char *path) {
  g_autofree char *text = NULL;
  GError *E = NULL;
  g_assert_true(g_file_get_contents(path, &text, NULL, &E));
  g_assert_no_error(E);
  Ref *r = g_new0(Ref, 1);
  r->t = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_array_unref);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (char **l = lines; *l; l++) {
    if (!**l || **l == '#') continue;
    g_auto(GStrv) f = g_strsplit(*l, " ", -1);
    guint n = (guint)g_ascii_strtoull(f[1], NULL, 10);
    g_assert_cmpuint(g_strv_length(f), ==, n + 2);
    GArray *a = g_array_sized_new(FALSE, FALSE, sizeof(double), n);
    for (guint i = 0; i < n; i++) {
      double v = g_ascii_strtod(f[i + 2], NULL);
      g_array_append_val(a, v);
    }
    g_hash_table_insert(r->t, g_strdup(f[0]), a);
  }
  return r;
}

static void ref_free(Ref *r) {
  g_hash_table_unref(r->t);
  g_free(r);
}

#define NPARAMS 16
static const char *pnames[NPARAMS] = {"wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb",
                                      "projw", "projb", "ln2w", "ln2b", "fcw", "fcb",
                                      "fcprojw", "fcprojb", "lnfw", "lnfb"};

static void block_check(Ref *ref, PxDType dt, double tol) {
  GArray *dims = ref_get(ref, "dims");
  double *dd = (double *)dims->data;
  int B = (int)dd[0], T = (int)dd[1], C = (int)dd[2], H = (int)dd[3], V = (int)dd[4], F = (int)dd[5];
  int N = B * T;
  gint64 rows[NPARAMS] = {V, T, 1, 1, 3 * C, 1, C, 1, 1, 1, F, 1, C, 1, 1, 1};
  gint64 cols[NPARAMS] = {C, C, C, C, C, 3 * C, C, C, C, C, C, F, F, C, C, C};
  PxTensor *P[NPARAMS], *G[NPARAMS];
  for (int i = 0; i < NPARAMS; i++) {
    P[i] = mk(dt, pnames[i], rows[i], cols[i], (double *)ref_get(ref, pnames[i])->data);
    G[i] = mk0(dt, "grad", rows[i], cols[i]);
  }
  enum { WTE, WPE, LN1W, LN1B, QKVW, QKVB, PROJW, PROJB, LN2W, LN2B, FCW, FCB, FPW, FPB, LNFW, LNFB };
  gint32 tok[64], tgt[64];
  for (int i = 0; i < N; i++) {
    tok[i] = (gint32)g_array_index(ref_get(ref, "tokens"), double, i);
    tgt[i] = (gint32)g_array_index(ref_get(ref, "targets"), double, i);
  }
  g_autoptr(PxTensor) ttok = mk_ids("tokens", N, tok);
  g_autoptr(PxTensor) ttgt = mk_ids("targets", N, tgt);
  PxAttnShape s = {.B = B, .T = T, .heads = H, .kv_heads = H, .head_dim = C / H};
  /* activations */
#define ACT(name, r, c) g_autoptr(PxTensor) name = mk(dt, #name, r, c, NULL)
  ACT(x0, N, C); ACT(h1, N, C); ACT(m1, N, 1); ACT(r1, N, 1); ACT(qkv, N, 3 * C);
  ACT(att, B * H * T, T); ACT(y, N, C); ACT(a, N, C); ACT(x1, N, C); ACT(h2, N, C);
  ACT(m2, N, 1); ACT(r2, N, 1); ACT(f, N, F); ACT(g, N, F); ACT(mo, N, C); ACT(x2, N, C);
  ACT(h3, N, C); ACT(m3, N, 1); ACT(r3, N, 1); ACT(logits, N, V); ACT(losses, N, 1);
  /* gradients of activations: backward adds into them */
#define GRAD(name, r, c) g_autoptr(PxTensor) name = mk0(dt, #name, r, c)
  GRAD(dlogits, N, V); GRAD(dh3, N, C); GRAD(dx2, N, C); GRAD(dg, N, F); GRAD(df, N, F);
  GRAD(dh2, N, C); GRAD(dx1, N, C); GRAD(dy, N, C); GRAD(dqkv, N, 3 * C); GRAD(dh1, N, C);
  GRAD(dx0, N, C);
#undef ACT
#undef GRAD
  g_autoptr(PxTensor) tloss = px_tensor_new_zeroed(be, "loss", PX_DTYPE_F64, PX_MEM_BUFFERS, 1, (gint64[]){1}, NULL);
  double loss;
  OK(px_op_embedding_fwd(be, x0, ttok, P[WTE], P[WPE], B, T, &E));
  OK(px_op_layernorm_fwd(be, h1, m1, r1, x0, P[LN1W], P[LN1B], 1e-5, &E));
  OK(px_op_linear_fwd(be, qkv, h1, P[QKVW], P[QKVB], &E));
  OK(px_op_attention_fwd(be, y, att, qkv, &s, &E));
  OK(px_op_linear_fwd(be, a, y, P[PROJW], P[PROJB], &E));
  OK(px_op_residual_fwd(be, x1, x0, a, &E));
  OK(px_op_layernorm_fwd(be, h2, m2, r2, x1, P[LN2W], P[LN2B], 1e-5, &E));
  OK(px_op_linear_fwd(be, f, h2, P[FCW], P[FCB], &E));
  OK(px_op_gelu_fwd(be, g, f, &E));
  OK(px_op_linear_fwd(be, mo, g, P[FPW], P[FPB], &E));
  OK(px_op_residual_fwd(be, x2, x1, mo, &E));
  OK(px_op_layernorm_fwd(be, h3, m3, r3, x2, P[LNFW], P[LNFB], 1e-5, &E));
  OK(px_op_linear_fwd(be, logits, h3, P[WTE], NULL, &E)); /* tied head */
  OK(px_op_cross_entropy_fwd(be, losses, tloss, logits, ttgt, &E));
  OK(px_tensor_download(tloss, &loss, &E));

  OK(px_op_cross_entropy_bwd(be, dlogits, logits, ttgt, 1.0, &E));
  OK(px_op_linear_bwd(be, dh3, G[WTE], NULL, dlogits, h3, P[WTE], &E));
  OK(px_op_layernorm_bwd(be, dx2, G[LNFW], G[LNFB], dh3, x2, P[LNFW], m3, r3, &E));
  OK(px_op_linear_bwd(be, dg, G[FPW], G[FPB], dx2, g, P[FPW], &E));
  OK(px_op_gelu_bwd(be, df, dg, f, &E));
  OK(px_op_linear_bwd(be, dh2, G[FCW], G[FCB], df, h2, P[FCW], &E));
  OK(px_op_residual_bwd(be, dx1, NULL, dx2, &E));
  OK(px_op_layernorm_bwd(be, dx1, G[LN2W], G[LN2B], dh2, x1, P[LN2W], m2, r2, &E));
  OK(px_op_linear_bwd(be, dy, G[PROJW], G[PROJB], dx1, y, P[PROJW], &E));
  OK(px_op_attention_bwd(be, dqkv, dy, qkv, att, &s, &E));
  OK(px_op_linear_bwd(be, dh1, G[QKVW], G[QKVB], dqkv, h1, P[QKVW], &E));
  OK(px_op_residual_bwd(be, dx0, NULL, dx1, &E));
  OK(px_op_layernorm_bwd(be, dx0, G[LN1W], G[LN1B], dh1, x0, P[LN1W], m1, r1, &E));
  OK(px_op_embedding_bwd(be, G[WTE], G[WPE], dx0, ttok, B, T, &E));

  double ref_loss = g_array_index(ref_get(ref, "loss"), double, 0);
  g_assert_cmpfloat(fabs(loss - ref_loss) / ref_loss, <, tol);
  g_autofree double *buf = g_new(double, (gsize)N * V);
  get(logits, buf);
  double e = norm_err(buf, (double *)ref_get(ref, "logits")->data, (gint64)N * V);
  if (g_test_verbose()) g_test_message("%s logits err %.2e, loss err %.2e", px_dtype_name(dt), e,
                                       fabs(loss - ref_loss) / ref_loss);
  g_assert_cmpfloat(e, <, tol);
  for (int i = 0; i < NPARAMS; i++) {
    g_autofree char *gname = g_strconcat("d", pnames[i], NULL);
    GArray *rg = ref_get(ref, gname);
    g_assert_cmpint(rg->len, ==, G[i]->numel);
    g_autofree double *got = g_new(double, G[i]->numel);
    get(G[i], got);
    e = norm_err(got, (double *)rg->data, G[i]->numel);
    if (g_test_verbose()) g_test_message("%s %s err %.2e", px_dtype_name(dt), gname, e);
    g_assert_cmpfloat(e, <, tol);
    px_tensor_free(P[i]);
    px_tensor_free(G[i]);
  }
}

static void test_gpt_block(void) {
  g_autofree char *path = g_build_filename(px_data_dir(), "tests", "ref", "gpt_block_ref.txt", NULL);
  Ref *ref = ref_load(path);
  block_check(ref, PX_DTYPE_F64, 1e-10);
  block_check(ref, PX_DTYPE_F32, 1e-5);
  ref_free(ref);
}

/* bf16 / fp16 bit patterns by hand (IEEE 754-2008 binary16; bf16 = the top half
 * of binary32), ties to even, overflow, subnormals, NaN. */
static void test_half_bits(void) {
  g_assert_cmphex(px_f32_to_bf16(1.0f), ==, 0x3f80);
  g_assert_cmphex(px_f32_to_bf16(-2.0f), ==, 0xc000);
  g_assert_cmphex(px_f32_to_bf16(3.14159265f), ==, 0x4049);           /* 3.140625 */
  g_assert_cmphex(px_f32_to_bf16(1.0f + 1.0f / 256), ==, 0x3f80);    /* tie -> even */
  g_assert_cmphex(px_f32_to_bf16(1.0f + 3.0f / 256), ==, 0x3f82);    /* tie -> even (up) */
  g_assert_true(isnan(px_bf16_to_f32(px_f32_to_bf16(NAN))));
  g_assert_cmpfloat(px_bf16_to_f32(0x4049), ==, 3.140625f);
  g_assert_cmphex(px_f32_to_f16(1.0f), ==, 0x3c00);
  g_assert_cmphex(px_f32_to_f16(0.1f), ==, 0x2e66);
  g_assert_cmphex(px_f32_to_f16(65504.0f), ==, 0x7bff);              /* largest finite */
  g_assert_cmphex(px_f32_to_f16(65520.0f), ==, 0x7c00);              /* rounds to Inf */
  g_assert_cmphex(px_f32_to_f16(-1e6f), ==, 0xfc00);
  g_assert_cmphex(px_f32_to_f16(1.0f + 1.0f / 2048), ==, 0x3c00);    /* tie -> even */
  g_assert_cmphex(px_f32_to_f16(1.0f + 3.0f / 2048), ==, 0x3c02);
  g_assert_cmphex(px_f32_to_f16(5.9604644775390625e-08f), ==, 0x0001); /* 2^-24, least subnormal */
  g_assert_cmphex(px_f32_to_f16(6.103515625e-05f), ==, 0x0400);      /* 2^-14, least normal */
  g_assert_cmphex(px_f32_to_f16(2.0e-08f), ==, 0x0000);              /* below half of 2^-24 */
  g_assert_cmphex(px_f32_to_f16(3.0e-08f), ==, 0x0001);              /* above half of 2^-24 */
  g_assert_cmpfloat(px_f16_to_f32(0x0001), ==, 5.9604644775390625e-08f);
  g_assert_cmpfloat(px_f16_to_f32(0x3555), ==, 0.333251953125f);
  g_assert_true(isinf(px_f16_to_f32(0x7c00)));
  g_assert_true(isnan(px_f16_to_f32(px_f32_to_f16(NAN))));
  /* every finite fp16 survives the round trip */
  for (guint32 h = 0; h < 0x10000; h++)
    if ((h & 0x7c00) != 0x7c00) g_assert_cmphex(px_f32_to_f16(px_f16_to_f32((guint16)h)), ==, h);
}

/* The host backend over a device (px_backend_new_host), here the cpu: its
 * tensors run the cpu ops, their bytes counted in the device's host-buffer
 * category (not in the device's own totals); ordinary memory, not pinned;
 * asynchronous copies between it and the device land bit for bit. */
static void test_host_buffers(void) {
  g_autoptr(GError) error = NULL;
  g_autoptr(PxBackend) dev = px_backend_new("cpu", 0, &error);
  g_assert_no_error(error);
  PxBackend *host = px_backend_new_host(dev, &error);
  g_assert_no_error(error);
  g_assert_false(px_backend_host_pinned(host)); /* cpu host buffers: aligned, pageable */
  /* 1000 f32 (4,000 B) of optimizer state and 333 bf16 (666 B) of gradient copy */
  PxTensor *m = px_tensor_new_zeroed(host, "m", PX_DTYPE_F32, PX_MEM_OPTIMIZER, 1, (gint64[]){1000}, &error);
  PxTensor *g = px_tensor_new(host, "g", PX_DTYPE_BF16, PX_MEM_GRADS, 1, (gint64[]){333}, &error);
  g_assert_no_error(error);
  PxMemStats ds, hs;
  px_backend_mem_stats(dev, &ds);
  px_backend_mem_stats(host, &hs);
  g_assert_cmpint(ds.host_current, ==, 4666);
  g_assert_cmpint(ds.total_current, ==, 0); /* not device memory */
  g_assert_false(ds.host_pageable);         /* no fallback: the device's own host buffers */
  g_assert_cmpint(hs.current[PX_MEM_OPTIMIZER], ==, 4000);
  g_assert_cmpint(hs.current[PX_MEM_GRADS], ==, 666);
  g_assert_cmpint(hs.host_current, ==, 0); /* the host backend lends no host buffers itself */
  /* a device tensor, uploaded from the host tensor on a stream and downloaded back behind an event */
  float *src = m->data;
  for (int i = 0; i < 1000; i++) src[i] = (float)i * 0.375f - 100.0f;
  PxTensor *d = px_tensor_new(dev, "d", PX_DTYPE_F32, PX_MEM_BUFFERS, 1, (gint64[]){1000}, &error);
  PxTensor *back = px_tensor_new(host, "back", PX_DTYPE_F32, PX_MEM_BUFFERS, 1, (gint64[]){1000}, &error);
  PxStream *copy = px_stream_new(dev, "copy", &error);
  PxDevEvent *up = px_event_new(dev, &error), *down = px_event_new(dev, &error);
  g_assert_no_error(error);
  g_assert_true(px_tensor_upload_async(d, m->data, copy, &error));
  g_assert_true(px_event_record(up, copy, &error));
  g_assert_true(px_stream_wait_event(px_backend_compute_stream(dev), up, &error));
  g_assert_true(px_op_scale(dev, d, 2.0, &error));
  g_assert_true(px_tensor_download_async(d, back->data, px_backend_compute_stream(dev), &error));
  g_assert_true(px_event_record(down, px_backend_compute_stream(dev), &error));
  g_assert_true(px_event_synchronize(down, &error));
  g_assert_no_error(error);
  /* the host backend's own op on its tensor: halving 2x is exact in f32 */
  g_assert_true(px_op_scale(host, back, 0.5, &error));
  g_assert_cmpmem(back->data, back->bytes, m->data, m->bytes);
  px_backend_mem_stats(dev, &ds);
  g_assert_cmpint(ds.host_current, ==, 8666);
  g_assert_cmpint(ds.total_current, ==, 4000);
  px_event_free(up);
  px_event_free(down);
  px_stream_free(copy);
  px_tensor_free(d);
  px_tensor_free(back);
  px_tensor_free(g);
  px_backend_mem_stats(dev, &ds);
  g_assert_cmpint(ds.host_current, ==, 4000);
  g_assert_cmpint(ds.host_peak, ==, 8666);
  px_backend_mem_reset_peak(dev);
  px_backend_mem_stats(dev, &ds);
  g_assert_cmpint(ds.host_peak, ==, 4000);
  px_tensor_free(m);
  px_backend_free(host); /* before its device */
}

/* A device whose host buffers are "pinned" (host_pinned) and counted, or
 * always fail: the cpu table with other host_alloc / host_free. */
static gint fake_allocs, fake_frees;
static gboolean fake_host_alloc(PxBackend *b, gsize bytes, void **out, GError **error) {
  g_atomic_int_inc(&fake_allocs);
  return b->ops->raw_alloc(b, bytes, out, error);
}
static void fake_host_free(PxBackend *b, void *p) {
  g_atomic_int_inc(&fake_frees);
  b->ops->raw_free(b, p);
}
static gboolean failing_host_alloc(PxBackend *b, gsize bytes, void **out, GError **error) {
  (void)b, (void)out;
  return px_fail(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_ALLOC, "fake device: cudaHostAlloc of %" G_GSIZE_FORMAT
                 " bytes failed", bytes);
}

static PxBackend *fake_device(PxBackendOps *table, gboolean fail) {
  PxBackend *dev = px_backend_new("cpu", 0, NULL);
  *table = *dev->ops;
  table->host_alloc = fail ? failing_host_alloc : fake_host_alloc;
  table->host_free = fake_host_free;
  table->host_pinned = TRUE;
  dev->ops = table;
  return dev;
}

/* Every block of the host backend comes from its device's host_alloc and
 * goes back through its host_free, the pool's cached ones too. */
static void test_host_buffers_blocks(void) {
  static PxBackendOps table;
  g_autoptr(GError) error = NULL;
  g_autoptr(PxBackend) dev = fake_device(&table, FALSE);
  fake_allocs = fake_frees = 0;
  PxBackend *host = px_backend_new_host(dev, &error);
  g_assert_no_error(error);
  for (int i = 0; i < 3; i++) { /* the second and third reuse the pool's blocks */
    g_autoptr(PxTensor) a = px_tensor_new(host, "a", PX_DTYPE_F32, PX_MEM_OPTIMIZER, 1, (gint64[]){100000}, &error);
    g_autoptr(PxTensor) b = px_tensor_new(host, "b", PX_DTYPE_F32, PX_MEM_GRADS, 1, (gint64[]){300}, &error);
    g_assert_no_error(error);
  }
  g_assert_cmpint(fake_allocs, >=, 2);
  g_assert_true(px_backend_host_pinned(host));
  PxMemStats ds;
  px_backend_mem_stats(dev, &ds);
  g_assert_cmpint(ds.host_current, ==, 0);
  g_assert_cmpint(ds.host_peak, ==, 401200);
  g_assert_false(ds.host_pageable);
  px_backend_free(host);
  g_assert_cmpint(fake_frees, ==, fake_allocs);
}

/* A device whose host_alloc fails: pageable blocks instead, the run goes on,
 * one warning line (in a subprocess, to read its stderr) */
static void test_host_buffers_fallback(void) {
  if (g_test_subprocess()) {
    static PxBackendOps table;
    g_autoptr(GError) error = NULL;
    g_autoptr(PxBackend) dev = fake_device(&table, TRUE);
    fake_frees = 0;
    PxBackend *host = px_backend_new_host(dev, &error);
    g_assert_no_error(error);
    PxTensor *a = px_tensor_new_zeroed(host, "a", PX_DTYPE_F32, PX_MEM_OPTIMIZER, 1, (gint64[]){1000}, &error);
    PxTensor *b = px_tensor_new(host, "b", PX_DTYPE_F32, PX_MEM_GRADS, 1, (gint64[]){200000}, &error);
    g_assert_no_error(error);
    g_assert_false(px_backend_host_pinned(host));
    PxMemStats ds;
    px_backend_mem_stats(dev, &ds);
    g_assert_true(ds.host_pageable);
    g_assert_cmpint(ds.host_current, ==, 804000); /* counted all the same */
    g_assert_true(px_op_scale(host, a, 2.0, &error));
    px_tensor_free(a);
    px_tensor_free(b);
    px_backend_free(host);
    g_assert_cmpint(fake_frees, ==, 0); /* the pageable blocks went back to the host backend itself */
    return;
  }
  g_test_trap_subprocess(NULL, 0, 0);
  g_test_trap_assert_passed();
  g_test_trap_assert_stderr("warning: fake device: cudaHostAlloc of * bytes failed; host buffers fall back to pageable "
                            "memory*\n");
  g_test_trap_assert_stderr_unmatched("*\n*warning*");
}

/* px_tensor_view_as: another dtype at a byte offset, inside and aligned */
static void test_view_as(void) {
  g_autoptr(GError) error = NULL;
  g_autoptr(PxTensor) t = px_tensor_new(be, "packed", PX_DTYPE_F64, PX_MEM_BUFFERS, 1, (gint64[]){5}, &error);
  g_assert_no_error(error);
  /* 3 f64 then 3 i32 (12 of the last 16 bytes) */
  g_autoptr(PxTensor) i = px_tensor_view_as(t, "i", PX_DTYPE_I32, 24, 1, (gint64[]){3}, &error);
  g_assert_no_error(error);
  g_assert_true((char *)i->data == (char *)t->data + 24);
  g_assert_cmpint(i->bytes, ==, 12);
  g_assert_true(i->dtype == PX_DTYPE_I32 && !i->owns_data);
  g_assert_null(px_tensor_view_as(t, "over", PX_DTYPE_I32, 24, 1, (gint64[]){5}, &error)); /* 20 B from 24 of 40 */
  g_assert_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE);
  g_clear_error(&error);
  g_assert_null(px_tensor_view_as(t, "odd", PX_DTYPE_F64, 4, 1, (gint64[]){1}, &error)); /* misaligned */
  g_assert_error(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  be = px_backend_new("cpu", 0, NULL);
  g_test_add_func("/backend/half/bits", test_half_bits);
  g_test_add_func("/backend/cpu/fwd/linear", test_fwd_linear);
  g_test_add_func("/backend/cpu/fwd/embedding", test_fwd_embedding);
  g_test_add_func("/backend/cpu/fwd/layernorm", test_fwd_layernorm);
  g_test_add_func("/backend/cpu/fwd/rmsnorm", test_fwd_rmsnorm);
  g_test_add_func("/backend/cpu/fwd/gelu", test_fwd_gelu);
  g_test_add_func("/backend/cpu/fwd/swiglu", test_fwd_swiglu);
  g_test_add_func("/backend/cpu/fwd/rope", test_fwd_rope);
  g_test_add_func("/backend/cpu/fwd/attention", test_fwd_attention);
  g_test_add_func("/backend/cpu/attention-blocks", test_attn_blocks);
  g_test_add_func("/backend/cpu/fwd/cross-entropy", test_fwd_cross_entropy);
  g_test_add_func("/backend/cpu/adamw", test_adamw);
  g_test_add_func("/backend/cpu/adamw-multi", test_adamw_multi);
  g_test_add_func("/backend/cpu/sum-squares-multi", test_sum_squares_multi);
  g_test_add_func("/backend/cpu/sum-squares", test_sum_squares_scale);
  g_test_add_func("/backend/cpu/grad/linear", test_grad_linear);
  g_test_add_func("/backend/cpu/grad/embedding", test_grad_embedding);
  g_test_add_func("/backend/cpu/grad/layernorm", test_grad_layernorm);
  g_test_add_func("/backend/cpu/grad/rmsnorm", test_grad_rmsnorm);
  g_test_add_func("/backend/cpu/grad/gelu", test_grad_gelu);
  g_test_add_func("/backend/cpu/grad/swiglu", test_grad_swiglu);
  g_test_add_func("/backend/cpu/grad/rope", test_grad_rope);
  g_test_add_func("/backend/cpu/grad/attention/mha", test_grad_attention_mha);
  g_test_add_func("/backend/cpu/grad/attention/gqa", test_grad_attention_gqa);
  g_test_add_func("/backend/cpu/grad/residual", test_grad_residual);
  g_test_add_func("/backend/cpu/grad/cross-entropy", test_grad_cross_entropy);
  g_test_add_func("/backend/cpu/gpt-block", test_gpt_block);
  g_test_add_func("/backend/errors/shape", test_shape_error);
  g_test_add_func("/backend/memory", test_memory);
  g_test_add_func("/backend/pool", test_pool);
  g_test_add_func("/backend/host-buffers", test_host_buffers);
  g_test_add_func("/backend/host-buffers/blocks", test_host_buffers_blocks);
  g_test_add_func("/backend/host-buffers/fallback", test_host_buffers_fallback);
  g_test_add_func("/backend/view-as", test_view_as);
  g_test_add_func("/backend/poison", test_poison);
  g_test_add_func("/backend/registry", test_registry);
  g_test_add_func("/backend/cpu/copy", test_copy);
  g_test_add_func("/backend/cpu/rows", test_rows);
  g_test_add_func("/backend/cpu/router", test_router);
  g_test_add_func("/backend/cpu/device-scalars", test_device_scalars);
  g_test_add_func("/backend/cpu/vocab-parallel/embedding", test_embedding_vp);
  g_test_add_func("/backend/cpu/vocab-parallel/cross-entropy", test_cross_entropy_vp);
  g_test_add_func("/backend/check-macro", test_check_macro);
  int rc = g_test_run();
  px_backend_free(be);
  return rc;
}
