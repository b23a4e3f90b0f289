/* test_gpt.c — the model of exec/gpt on the cpu backend, one rank:
 *  - every gradient of a whole tiny GPT-2 and a whole tiny Llama (GQA, rotary,
 *    SwiGLU, RMSNorm, untied head) against central finite differences in fp64;
 *  - activation checkpointing (full, selective) and the zero-bubble split of
 *    backward (B then W) give the same gradients as the plain backward;
 *  - the numpy float64 reference dump (tests/ref/gpt_tiny_ref.py): logits,
 *    loss (also accumulated on the device over two micro-batches), every
 *    gradient and three AdamW steps, in fp64 and fp32;
 *  - tensor-parallel shards cut from the full tensor as Megatron splits them
 *    (query / key / value heads, row-parallel columns, a padded vocabulary),
 *    checked by hand. */
#include <glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "gpt.h"
#include "partition.h"

/* ---- a single-rank harness ------------------------------------------------------------- */

typedef struct {
  PxModel *model;
  PxPlan plan;
  PxPartition *part;
  PxBackend *be;
  PxGpt *gpt;
  PxTensor *w, *g;
  gint64 n;
  gint32 *tokens, *targets;
} Harness;

static PxModelDesc tiny_desc(gboolean llama) {
  PxModelDesc d = {0};
  d.name = llama ? "fd-llama" : "fd-gpt";
  d.layers = 2;
  d.hidden = 8;
  d.heads = llama ? 4 : 2;
  d.kv_heads = llama ? 2 : 2;
  d.ffn = llama ? 12 : 32;
  d.vocab = 11;
  d.max_seq = 5;
  d.ffn_kind = llama ? PX_FFN_SWIGLU : PX_FFN_GELU;
  d.norm = llama ? PX_NORM_RMSNORM : PX_NORM_LAYERNORM;
  d.pos = llama ? PX_POS_ROPE : PX_POS_LEARNED;
  d.bias = !llama;
  d.tied = !llama;
  return d;
}

static void harness_init(Harness *h, const PxModelDesc *d, PxCheckpoint ckpt, PxDType dt, int tp, int tp_rank) {
  g_autoptr(GError) error = NULL;
  memset(h, 0, sizeof *h);
  h->model = px_model_new(d, &error);
  g_assert_no_error(error);
  px_plan_init(&h->plan);
  h->plan.tp = tp;
  h->plan.mbs = 2;
  h->plan.gbs = 2;
  h->plan.seq = d->max_seq;
  h->plan.ckpt = ckpt;
  h->plan.precision = PX_PREC_FP32;
  g_assert_true(px_plan_validate(&h->plan, h->model, NULL, &error));
  h->part = px_partition_new(h->model, &h->plan, NULL, &error);
  g_assert_no_error(error);
  h->be = px_backend_new("cpu", 0, NULL);
  PxGptRank r = {h->be, NULL, 0, tp_rank, dt, NULL, 0, NULL, 0, NULL, 0};
  h->gpt = px_gpt_new(h->model, &h->plan, h->part, &r, &error);
  g_assert_no_error(error);
  h->n = px_gpt_chunk(h->gpt, 0)->numel;
  h->w = px_tensor_new(h->be, "w", dt, PX_MEM_WEIGHTS, 1, &h->n, &error);
  h->g = px_tensor_new_zeroed(h->be, "g", dt, PX_MEM_GRADS, 1, &h->n, &error);
  g_assert_true(px_gpt_chunk_bind(h->gpt, 0, h->w, h->g, &error));
  int N = h->plan.mbs * h->plan.seq;
  h->tokens = g_new(gint32, N);
  h->targets = g_new(gint32, N);
  for (int i = 0; i < N; i++) {
    h->tokens[i] = (7 * i + 3) % d->vocab;
    h->targets[i] = (5 * i + 1) % d->vocab;
  }
}

static void harness_clear(Harness *h) {
  px_tensor_free(h->w);
  px_tensor_free(h->g);
  px_gpt_free(h->gpt);
  px_backend_free(h->be);
  px_partition_free(h->part);
  px_plan_clear(&h->plan);
  px_model_free(h->model);
  g_free(h->tokens);
  g_free(h->targets);
}

/* Loss at the current weights; with grads (zeroed first) also the gradient,
 * through the plain backward or B + W (split). */
static double harness_loss(Harness *h, double *grads, gboolean split, double *logits) {
  g_autoptr(GError) error = NULL;
  double loss = 0;
  PxGptActs *a = px_gpt_forward(h->gpt, 0, NULL, h->tokens, h->targets, &loss, &error);
  g_assert_no_error(error);
  if (logits) g_assert_true(px_tensor_download_f64(px_gpt_acts_logits(a), logits, &error));
  if (grads) {
    g_assert_true(px_tensor_zero(h->g, &error));
    g_assert_true(px_gpt_backward(h->gpt, a, NULL, 1.0, split, NULL, &error));
    if (split) g_assert_true(px_gpt_backward_weight(h->gpt, a, &error));
    g_assert_no_error(error);
    g_assert_true(px_tensor_download_f64(h->g, grads, &error));
  }
  px_gpt_acts_free(a);
  return loss;
}

static void set_weights(Harness *h, const double *w) {
  g_autoptr(GError) error = NULL;
  g_assert_true(px_tensor_upload_f64(h->w, w, &error));
}

static double *random_weights(gint64 n, guint32 seed) {
  double *w = g_new(double, n);
  GRand *r = g_rand_new_with_seed(seed);
  for (gint64 i = 0; i < n; i++) w[i] = g_rand_double_range(r, -0.6, 0.6);
  g_rand_free(r);
  return w;
}

/* ---- finite differences ------------------------------------------------------------------ */

static void check_fd(gboolean llama) {
  PxModelDesc d = tiny_desc(llama);
  Harness h;
  harness_init(&h, &d, PX_CKPT_NONE, PX_DTYPE_F64, 1, 0);
  g_autofree double *w = random_weights(h.n, 11);
  g_autofree double *g = g_new(double, h.n);
  set_weights(&h, w);
  harness_loss(&h, g, FALSE, NULL);
  const PxGptChunk *ch = px_gpt_chunk(h.gpt, 0);
  const double eps = 1e-5;
  for (guint p = 0; p < ch->n_params; p++) {
    const PxGptParam *pr = &ch->params[p];
    double num = 0, den = 0;
    for (gint64 i = pr->offset; i < pr->offset + pr->numel; i++) {
      double old = w[i];
      w[i] = old + eps;
      set_weights(&h, w);
      double lp = harness_loss(&h, NULL, FALSE, NULL);
      w[i] = old - eps;
      set_weights(&h, w);
      double lm = harness_loss(&h, NULL, FALSE, NULL);
      w[i] = old;
      double fd = (lp - lm) / (2 * eps);
      num += (fd - g[i]) * (fd - g[i]);
      den += fd * fd;
    }
    set_weights(&h, w);
    g_assert_cmpfloat(den, >, 0); /* every tensor moves the loss */
    if (sqrt(num / den) > 1e-7)
      g_error("%s: gradient disagrees with finite differences, relative error %.3e", pr->spec->name, sqrt(num / den));
  }
  harness_clear(&h);
}

static void test_fd_gpt(void) { check_fd(FALSE); }
static void test_fd_llama(void) { check_fd(TRUE); }

/* Recompute and the B/W split change when work happens, not what it computes. */
static void check_variants(gboolean llama) {
  PxModelDesc d = tiny_desc(llama);
  Harness base;
  harness_init(&base, &d, PX_CKPT_NONE, PX_DTYPE_F64, 1, 0);
  g_autofree double *w = random_weights(base.n, 5);
  g_autofree double *g0 = g_new(double, base.n);
  g_autofree double *g1 = g_new(double, base.n);
  set_weights(&base, w);
  double l0 = harness_loss(&base, g0, FALSE, NULL);
  double l1 = harness_loss(&base, g1, TRUE, NULL);
  g_assert_cmpfloat(l0, ==, l1);
  for (gint64 i = 0; i < base.n; i++) g_assert_cmpfloat(fabs(g0[i] - g1[i]), <=, 1e-14 * (1 + fabs(g0[i])));
  PxCheckpoint modes[] = {PX_CKPT_FULL, PX_CKPT_SELECTIVE};
  for (gsize k = 0; k < G_N_ELEMENTS(modes); k++) {
    Harness h;
    harness_init(&h, &d, modes[k], PX_DTYPE_F64, 1, 0);
    set_weights(&h, w);
    g_assert_cmpfloat(harness_loss(&h, g1, k == 0, NULL), ==, l0);
    for (gint64 i = 0; i < base.n; i++) g_assert_cmpfloat(fabs(g0[i] - g1[i]), <=, 1e-14 * (1 + fabs(g0[i])));
    harness_clear(&h);
  }
  harness_clear(&base);
}

static void test_variants_gpt(void) { check_variants(FALSE); }
static void test_variants_llama(void) { check_variants(TRUE); }

/* ---- the numpy reference -------------------------------------------------------------------- */

static GHashTable *load_ref(void) {
  const char *root = g_getenv("PARALLAX_DATA_DIR");
  g_autofree char *path = g_build_filename(root ? root : ".", "tests", "ref", "gpt_tiny_ref.txt", NULL);
  g_autofree char *text = NULL;
  g_autoptr(GError) error = NULL;
  g_assert_true(g_file_get_contents(path, &text, NULL, &error));
  GHashTable *t = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_array_unref);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (int i = 0; lines[i]; i++) {
    if (!lines[i][0] || lines[i][0] == '#') continue;
    char *end = NULL, *name = lines[i];
    char *sp = strchr(name, ' ');
    g_assert_nonnull(sp);
    *sp = 0;
    gint64 n = g_ascii_strtoll(sp + 1, &end, 10);
    GArray *a = g_array_sized_new(FALSE, FALSE, sizeof(double), (guint)n);
    for (gint64 k = 0; k < n; k++) {
      double v = g_ascii_strtod(end, &end);
      g_array_append_val(a, v);
    }
    g_hash_table_insert(t, g_strdup(name), a);
  }
  return t;
}

static const double *ref_get(GHashTable *t, const char *name, gint64 n) {
  GArray *a = g_hash_table_lookup(t, name);
  if (!a) g_error("reference has no %s", name);
  g_assert_cmpint(a->len, ==, n);
  return (const double *)a->data;
}

static double rel_err(const double *got, const double *want, gint64 n) {
  double num = 0, den = 0;
  for (gint64 i = 0; i < n; i++) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return sqrt(num / MAX(den, 1e-300));
}

static void check_reference(PxDType dt, double tol_logits, double tol_grad, double tol_adam) {
  g_autoptr(GHashTable) ref = load_ref();
  const double *dims = ref_get(ref, "dims", 7); /* B T C H V L F */
  PxModelDesc d = tiny_desc(FALSE);
  g_assert_cmpfloat(dims[0], ==, 2);
  d.max_seq = (int)dims[1];
  d.hidden = (int)dims[2];
  d.heads = d.kv_heads = (int)dims[3];
  d.vocab = (int)dims[4];
  d.layers = (int)dims[5];
  d.ffn = (int)dims[6];
  Harness h;
  harness_init(&h, &d, PX_CKPT_NONE, dt, 1, 0);
  int N = 2 * d.max_seq;
  const double *tok = ref_get(ref, "tokens", N), *tgt = ref_get(ref, "targets", N);
  for (int i = 0; i < N; i++) {
    h.tokens[i] = (gint32)tok[i];
    h.targets[i] = (gint32)tgt[i];
  }
  const PxGptChunk *ch = px_gpt_chunk(h.gpt, 0);
  g_autofree double *w = g_new0(double, h.n);
  for (guint p = 0; p < ch->n_params; p++) {
    const PxGptParam *pr = &ch->params[p];
    const double *full = ref_get(ref, pr->spec->name, pr->spec->shape[0] * pr->spec->shape[1]);
    px_gpt_param_shard(h.gpt, pr, full, w + pr->offset);
  }
  set_weights(&h, w);
  g_autofree double *g = g_new(double, h.n);
  g_autofree double *logits = g_new(double, (gsize)N * d.vocab);
  double loss = harness_loss(&h, g, FALSE, logits);
  g_assert_cmpfloat(rel_err(logits, ref_get(ref, "logits", (gint64)N * d.vocab), (gint64)N * d.vocab), <, tol_logits);
  g_assert_cmpfloat(fabs(loss - ref_get(ref, "loss", 1)[0]), <, tol_logits * 10);
  { /* the loss left on the device: two micro-batches add into one f64 scalar, read once */
    g_autoptr(GError) err = NULL;
    g_autoptr(PxTensor) acc = px_tensor_new_zeroed(h.be, "loss", PX_DTYPE_F64, PX_MEM_BUFFERS, 1, (gint64[]){1}, &err);
    for (int k = 0; k < 2; k++) {
      PxGptActs *a = px_gpt_forward_acc(h.gpt, 0, NULL, h.tokens, h.targets, acc, &err);
      g_assert_no_error(err);
      px_gpt_acts_free(a);
    }
    double two;
    g_assert_true(px_tensor_download(acc, &two, &err));
    g_assert_cmpfloat(fabs(two - 2 * ref_get(ref, "loss", 1)[0]), <, tol_logits * 20);
  }
  for (guint p = 0; p < ch->n_params; p++) {
    const PxGptParam *pr = &ch->params[p];
    g_autofree char *key = g_strconcat("grad:", pr->spec->name, NULL);
    double e = rel_err(g + pr->offset, ref_get(ref, key, pr->numel), pr->numel);
    if (e > tol_grad) g_error("%s: gradient off the reference by %.3e (tolerance %.0e)", pr->spec->name, e, tol_grad);
  }
  /* three AdamW steps on the same batch (lr 1e-2, no clipping) */
  g_autoptr(GError) error = NULL;
  gint64 n = h.n;
  g_autoptr(PxTensor) m = px_tensor_new_zeroed(h.be, "m", dt, PX_MEM_OPTIMIZER, 1, &n, &error);
  g_autoptr(PxTensor) v = px_tensor_new_zeroed(h.be, "v", dt, PX_MEM_OPTIMIZER, 1, &n, &error);
  const double *want_losses = ref_get(ref, "adamw:losses", 3);
  for (int t = 1; t <= 3; t++) {
    double l = harness_loss(&h, g, FALSE, NULL);
    g_assert_cmpfloat(fabs(l - want_losses[t - 1]), <, tol_adam);
    for (guint p = 0; p < ch->n_params; p++) {
      const PxGptParam *pr = &ch->params[p];
      gint64 cnt = pr->numel;
      g_autoptr(PxTensor) mv = px_tensor_view(m, "m", pr->offset, 1, &cnt, &error);
      g_autoptr(PxTensor) vv = px_tensor_view(v, "v", pr->offset, 1, &cnt, &error);
      PxAdamW o = {1e-2, 0.9, 0.95, 1e-8, pr->spec->ndim == 2 ? 0.1 : 0.0, t, 1.0};
      g_assert_true(px_op_adamw(h.be, pr->w, pr->g, mv, vv, &o, &error));
    }
  }
  g_assert_true(px_tensor_download_f64(h.w, w, &error));
  for (guint p = 0; p < ch->n_params; p++) {
    const PxGptParam *pr = &ch->params[p];
    g_autofree char *key = g_strconcat("adamw:", pr->spec->name, NULL);
    g_autofree char *gkey = g_strconcat("grad:", pr->spec->name, NULL);
    const double *want = ref_get(ref, key, pr->numel), *grad = ref_get(ref, gkey, pr->numel);
    g_autofree double *got = g_memdup2(w + pr->offset, sizeof(double) * pr->numel);
    g_autofree double *exp = g_memdup2(want, sizeof(double) * pr->numel);
    /* elements whose gradient is zero in exact arithmetic (the key bias; the
     * reference holds rounding noise below 1e-15) are steered by that noise in
     * fp32, through Adam's normalisation: left out there */
    for (gint64 i = 0; dt == PX_DTYPE_F32 && i < pr->numel; i++)
      if (fabs(grad[i]) < 1e-12) got[i] = exp[i] = 0;
    double e = rel_err(got, exp, pr->numel);
    if (e > tol_adam) g_error("%s after 3 AdamW steps: off the reference by %.3e", pr->spec->name, e);
  }
  g_clear_pointer(&m, px_tensor_free); /* before their backend */
  g_clear_pointer(&v, px_tensor_free);
  harness_clear(&h);
}

/* AdamW's tolerance is looser than the gradients': the key bias has a zero
 * gradient in exact arithmetic (softmax ignores a constant shift), so both
 * sides feed rounding noise of 1e-17 through g / (sqrt(v) + 1e-8). */
static void test_reference_f64(void) { check_reference(PX_DTYPE_F64, 1e-12, 1e-10, 1e-8); }
static void test_reference_f32(void) { check_reference(PX_DTYPE_F32, 1e-5, 1e-4, 1e-4); }

/* ---- tensor-parallel shards -------------------------------------------------------------------- */

static void test_tp_shards(void) {
  PxModelDesc d = tiny_desc(TRUE); /* heads 4, kv 2, head size 2, ffn 12 */
  d.vocab = 12;
  Harness h;
  harness_init(&h, &d, PX_CKPT_NONE, PX_DTYPE_F64, 2, 1);
  int c, p;
  g_assert_true(px_gpt_find_param(h.gpt, "h.0.attn.qkv.weight", FALSE, &c, &p));
  const PxGptParam *qkv = &px_gpt_chunk(h.gpt, c)->params[p];
  /* rank 1 of 2 holds query heads 2,3 (rows 4..7), key head 1 (rows 8+2..8+3)
   * and value head 1 (rows 12+2..12+3) of the (16, 8) weight */
  g_assert_cmpint(qkv->shape[0], ==, 8);
  g_assert_cmpint(qkv->shape[1], ==, 8);
  double full[16 * 8], shard[8 * 8];
  for (int i = 0; i < 16 * 8; i++) full[i] = i;
  px_gpt_param_shard(h.gpt, qkv, full, shard);
  const int rows[8] = {4, 5, 6, 7, 10, 11, 14, 15};
  for (int r = 0; r < 8; r++)
    for (int k = 0; k < 8; k++) g_assert_cmpfloat(shard[r * 8 + k], ==, rows[r] * 8 + k);
  /* attn.proj (8, 8) is row-parallel: rank 1 holds columns 4..7 */
  g_assert_true(px_gpt_find_param(h.gpt, "h.1.attn.proj.weight", FALSE, &c, &p));
  const PxGptParam *proj = &px_gpt_chunk(h.gpt, c)->params[p];
  g_assert_cmpint(proj->shape[1], ==, 4);
  double pshard[8 * 4];
  px_gpt_param_shard(h.gpt, proj, full, pshard);
  g_assert_cmpfloat(pshard[0], ==, 4);
  g_assert_cmpfloat(pshard[1 * 4 + 3], ==, 1 * 8 + 7);
  harness_clear(&h);
  /* a vocabulary of 11 over tp=2 is padded as Megatron pads it: 6 rows per
   * rank, rank 1's last row (global row 11) zero */
  PxModelDesc odd = d;
  odd.vocab = 11;
  harness_init(&h, &odd, PX_CKPT_NONE, PX_DTYPE_F64, 2, 1);
  g_assert_true(px_gpt_find_param(h.gpt, "lm_head.weight", FALSE, &c, &p));
  const PxGptParam *head = &px_gpt_chunk(h.gpt, c)->params[p];
  g_assert_cmpint(head->shape[0], ==, 6);
  double hshard[6 * 8];
  px_gpt_param_shard(h.gpt, head, full, hshard);
  g_assert_cmpfloat(hshard[0], ==, 6 * 8);           /* global row 6 */
  g_assert_cmpfloat(hshard[4 * 8 + 7], ==, 10 * 8 + 7); /* global row 10 */
  for (int k = 0; k < 8; k++) g_assert_cmpfloat(hshard[5 * 8 + k], ==, 0);
  harness_clear(&h);
}

/* The initial weights depend on the seed and the name only: rank 1 of tp=2
 * holds exactly its cut of rank 0 of tp=1's tensor, and a seed changes them. */
static void test_init_layout_independent(void) {
  PxModelDesc d = tiny_desc(TRUE);
  d.vocab = 12;
  Harness one, two;
  harness_init(&one, &d, PX_CKPT_NONE, PX_DTYPE_F64, 1, 0);
  harness_init(&two, &d, PX_CKPT_NONE, PX_DTYPE_F64, 2, 1);
  g_autofree double *w1 = g_new(double, one.n);
  g_autofree double *w2 = g_new(double, two.n);
  px_gpt_chunk_init_values(one.gpt, 0, 42, w1);
  px_gpt_chunk_init_values(two.gpt, 0, 42, w2);
  int c, p1, p2;
  g_assert_true(px_gpt_find_param(one.gpt, "h.0.mlp.gate.weight", FALSE, &c, &p1));
  g_assert_true(px_gpt_find_param(two.gpt, "h.0.mlp.gate.weight", FALSE, &c, &p2));
  const PxGptParam *a = &px_gpt_chunk(one.gpt, 0)->params[p1], *b = &px_gpt_chunk(two.gpt, 0)->params[p2];
  /* (12, 8), rows split: rank 1 holds rows 6..11 */
  for (gint64 i = 0; i < b->numel; i++) g_assert_cmpfloat(w2[b->offset + i], ==, w1[a->offset + 6 * 8 + i]);
  /* std 0.02: a sample of 96 normals has a standard deviation near it */
  double ss = 0;
  for (gint64 i = 0; i < a->numel; i++) ss += w1[a->offset + i] * w1[a->offset + i];
  g_assert_cmpfloat(sqrt(ss / a->numel), >, 0.014);
  g_assert_cmpfloat(sqrt(ss / a->numel), <, 0.026);
  g_autofree double *w3 = g_new(double, one.n);
  px_gpt_chunk_init_values(one.gpt, 0, 43, w3);
  g_assert_cmpfloat(w3[a->offset], !=, w1[a->offset]);
  harness_clear(&one);
  harness_clear(&two);
}

/* A token or target outside the vocabulary is refused before any op runs
 * (with a vocabulary split over TP no rank's op could tell). */
static void test_bad_ids(void) {
  PxModelDesc d = tiny_desc(FALSE);
  Harness h;
  harness_init(&h, &d, PX_CKPT_NONE, PX_DTYPE_F64, 1, 0);
  for (int k = 0; k < 2; k++) {
    g_autoptr(GError) error = NULL;
    gint32 *ids = k ? h.targets : h.tokens, keep = ids[3];
    ids[3] = k ? -1 : d.vocab;
    g_assert_null(px_gpt_forward(h.gpt, 0, NULL, h.tokens, h.targets, NULL, &error));
    g_assert_error(error, PX_GPT_ERROR, PX_GPT_ERROR_INVALID);
    g_assert_cmpstr(error->message, ==, k ? "target -1 outside the vocabulary 11" : "token 11 outside the vocabulary 11");
    ids[3] = keep;
  }
  harness_clear(&h);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/gpt/gradient/finite-differences/gpt2", test_fd_gpt);
  g_test_add_func("/gpt/gradient/finite-differences/llama", test_fd_llama);
  g_test_add_func("/gpt/gradient/recompute-and-split/gpt2", test_variants_gpt);
  g_test_add_func("/gpt/gradient/recompute-and-split/llama", test_variants_llama);
  g_test_add_func("/gpt/reference/numpy/f64", test_reference_f64);
  g_test_add_func("/gpt/reference/numpy/f32", test_reference_f32);
  g_test_add_func("/gpt/tp/shards", test_tp_shards);
  g_test_add_func("/gpt/init/layout-independent", test_init_layout_independent);
  g_test_add_func("/gpt/errors/ids", test_bad_ids);
  return g_test_run();
}
