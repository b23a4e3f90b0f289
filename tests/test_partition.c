/* test_partition.c — DeepSpeed-exact uniform/balanced splits, the optimal
 * min-max split against brute force, and partitioning a model for a plan.
 *
 * Reference boundaries come from tests/ref/partition_cases.txt, written by
 * tests/ref/deepspeed_partition.py (a transcription of DeepSpeed v0.16.5
 * deepspeed/runtime/utils.py). Model-level expectations are hand-computed
 * below; the "parameters" and "type:" ones also appear in that file
 * (tiny_gpt_* cases). */
#include <glib.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "partition.h"

static void assert_bounds(const int *got, const int *want, int parts, const char *what) {
  for (int k = 0; k <= parts; k++) {
    if (got[k] != want[k]) {
      GString *g = g_string_new(NULL), *w = g_string_new(NULL);
      for (int i = 0; i <= parts; i++) {
        g_string_append_printf(g, "%s%d", i ? "," : "", got[i]);
        g_string_append_printf(w, "%s%d", i ? "," : "", want[i]);
      }
      g_error("%s: got [%s], want [%s]", what, g->str, w->str);
    }
  }
}

/* ---- DeepSpeed reference cases ------------------------------------------- */

typedef struct {
  int uniform, balanced;
} CaseCount;

static CaseCount run_reference_cases(void) {
  g_autofree char *path = g_build_filename(px_data_dir(), "tests", "ref", "partition_cases.txt", NULL);
  g_autofree char *text = NULL;
  g_autoptr(GError) error = NULL;
  g_assert_true(g_file_get_contents(path, &text, NULL, &error));
  g_assert_no_error(error);

  CaseCount count = {0, 0};
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (int l = 0; lines[l]; l++) {
    if (!*lines[l] || lines[l][0] == '#') continue;
    g_auto(GStrv) f = g_regex_split_simple("\\s+", g_strstrip(lines[l]), 0, 0);
    g_assert_cmpuint(g_strv_length(f), ==, 5);
    const char *kind = f[0], *name = f[1];
    int parts = atoi(f[2]), nb = 0, n = 0;
    g_autofree double *wantd = px_partition_parse_weights(f[4], &nb, &error);
    g_assert_no_error(error);
    g_assert_cmpint(nb, ==, parts + 1);
    g_autofree int *want = g_new(int, nb);
    for (int i = 0; i < nb; i++) want[i] = (int)wantd[i];

    g_autofree int *got = NULL;
    if (!strcmp(kind, "uniform")) {
      got = px_partition_uniform(atoi(f[3]), parts);
      count.uniform++;
    } else {
      g_assert_cmpstr(kind, ==, "balanced");
      g_autofree double *w = px_partition_parse_weights(f[3], &n, &error);
      g_assert_no_error(error);
      got = px_partition_balanced(w, n, parts);
      count.balanced++;
    }
    assert_bounds(got, want, parts, name);
  }
  return count;
}

static void test_deepspeed_reference(void) {
  CaseCount c = run_reference_cases();
  /* the file holds 8 uniform and 29 balanced cases; all of them must have run */
  g_assert_cmpint(c.uniform, ==, 8);
  g_assert_cmpint(c.balanced, ==, 29);
}

/* Hand-worked (see the comment at the top of common/partition.c). */
static void test_deepspeed_hand(void) {
  /* uniform(10, 4): chunk 2, residual 2 → bounds[p] = 2p + min(p, 2) */
  g_autofree int *u = px_partition_uniform(10, 4);
  assert_bounds(u, (int[]){0, 3, 6, 8, 10}, 4, "uniform 10/4");
  /* uniform(3, 5): fewer items than parts → min(p, 3) */
  g_autofree int *u2 = px_partition_uniform(3, 5);
  assert_bounds(u2, (int[]){0, 1, 2, 3, 3, 3}, 5, "uniform 3/5");
  /* balanced([1,2,1], 2): k = 1 and k = 2 both cost 2, `>=` keeps the later */
  g_autofree int *b = px_partition_balanced((double[]){1, 2, 1}, 3, 2);
  assert_bounds(b, (int[]){0, 2, 3}, 2, "balanced 121/2");
  /* balanced([5,1,1], 2): k = 1 → 5 - 2 = 3, k = 2 → 6 - 1 = 5 */
  g_autofree int *b2 = px_partition_balanced((double[]){5, 1, 1}, 3, 2);
  assert_bounds(b2, (int[]){0, 1, 3}, 2, "balanced 511/2");
  /* balanced with n <= m delegates to uniform: trailing parts empty */
  g_autofree int *b3 = px_partition_balanced((double[]){1, 2, 1}, 3, 4);
  assert_bounds(b3, (int[]){0, 1, 2, 3, 3}, 4, "balanced 121/4");
}

/* ---- optimal vs brute force ---------------------------------------------- */

typedef struct {
  const double *w;
  int n, m;
  int cur[8], best[8];
  double best_max;
} Brute;

/* Enumerate every split into non-empty parts in lexicographic order of the
 * boundaries; the first with the smallest max part sum wins. */
static void brute(Brute *b, int part, int start) {
  if (part == b->m - 1) {
    b->cur[part] = start;
    b->cur[b->m] = b->n;
    double mx = 0;
    for (int k = 0; k < b->m; k++) {
      double s = 0;
      for (int i = b->cur[k]; i < b->cur[k + 1]; i++) s += b->w[i];
      if (s > mx) mx = s;
    }
    if (mx < b->best_max) {
      b->best_max = mx;
      memcpy(b->best, b->cur, sizeof b->cur);
    }
    return;
  }
  b->cur[part] = start;
  for (int next = start + 1; next <= b->n - (b->m - part - 1); next++) brute(b, part + 1, next);
}

static void test_optimal_brute(void) {
  g_autoptr(GRand) rng = g_rand_new_with_seed(1234);
  int checked = 0;
  for (int trial = 0; trial < 400; trial++) {
    int n = g_rand_int_range(rng, 2, 10);
    int m = g_rand_int_range(rng, 1, MIN(n, 5) + 1);
    double w[10];
    /* integers, or quarters (exact in binary, so sums compare exactly both ways);
     * small ranges make ties frequent */
    gboolean quarters = trial % 3 == 0;
    for (int i = 0; i < n; i++)
      w[i] = quarters ? g_rand_int_range(rng, 0, 40) / 4.0 : g_rand_int_range(rng, 0, 6);
    Brute b = {.w = w, .n = n, .m = m, .best_max = G_MAXDOUBLE};
    brute(&b, 0, 0);
    g_autofree int *got = px_partition_optimal(w, n, m);
    g_autofree char *what = g_strdup_printf("optimal trial %d (n=%d m=%d)", trial, n, m);
    assert_bounds(got, b.best, m, what);
    checked++;
  }
  g_assert_cmpint(checked, ==, 400);
}

static void test_optimal_hand(void) {
  /* [1,2,1] into 2: max 3 either way; earliest boundary → [0,1,3] (DeepSpeed: [0,2,3]) */
  g_autofree int *a = px_partition_optimal((double[]){1, 2, 1}, 3, 2);
  assert_bounds(a, (int[]){0, 1, 3}, 2, "optimal 121/2");
  /* 3,1,4,1,5,9,2,6 into 3: the part holding 9 either holds 5 too (>= 14) or
   * starts at 9, with 3+1+4+1+5 = 14 before it (in one part, else 9+2+6 = 17
   * last): the optimum is 14. After 1, 2 or 3 items the remaining 28, 27, 23
   * cannot be cut into two parts <= 14; after 4: 9 | 5,9 = 14 | 2,6 = 8. */
  g_autofree int *b = px_partition_optimal((double[]){3, 1, 4, 1, 5, 9, 2, 6}, 8, 3);
  assert_bounds(b, (int[]){0, 4, 6, 8}, 3, "optimal ds_example/3");
  /* fewer items than parts: as DeepSpeed */
  g_autofree int *c = px_partition_optimal((double[]){7, 7}, 2, 3);
  assert_bounds(c, (int[]){0, 1, 2, 2}, 3, "optimal 2/3");
}

static void test_parse_weights(void) {
  g_autoptr(GError) error = NULL;
  int n = 0;
  g_autofree double *w = px_partition_parse_weights(" 3, 1.5,0 ,1e2", &n, &error);
  g_assert_no_error(error);
  g_assert_cmpint(n, ==, 4);
  g_assert_cmpfloat(w[0], ==, 3.0);
  g_assert_cmpfloat(w[1], ==, 1.5);
  g_assert_cmpfloat(w[2], ==, 0.0);
  g_assert_cmpfloat(w[3], ==, 100.0);
  const char *bad[] = {"3,x,4", "3,,4", "", "1,-2", "nan", "1,inf"};
  for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
    g_autofree double *b = px_partition_parse_weights(bad[i], &n, &error);
    g_assert_null(b);
    g_assert_error(error, PX_PARTITION_ERROR, PX_PARTITION_ERROR_PARSE);
    g_clear_error(&error);
  }
}

/* ---- a model over a plan ------------------------------------------------- */

/* Tiny GPT: L=4, h=8, a=2, ffn=32, V=16, S=8, LayerNorm, biases, learned
 * positions. Layers: embed, 4 blocks, ln_f, head (7).
 * Stored parameters: embed V*h + S*h = 128 + 64 = 192;
 *   block 12h^2 + 13h = 768 + 104 = 872; ln_f 2h = 16;
 *   head V*h = 128 (tied: a copy of wte; untied: its own weight).
 * Forward FLOPs at s = 8: block 2*s*12h^2 + 4*s^2*h = 12288 + 2048 = 14336;
 *   head 2*s*h*V = 2048; embed and ln_f 0. */
static PxModel *tiny_gpt(gboolean tied) {
  PxModelDesc d = {
    .name = "tiny", .layers = 4, .hidden = 8, .heads = 2, .kv_heads = 2, .ffn = 32,
    .vocab = 16, .max_seq = 8, .ffn_kind = PX_FFN_GELU, .norm = PX_NORM_LAYERNORM,
    .pos = PX_POS_LEARNED, .bias = TRUE, .tied = tied, .dropout = FALSE,
  };
  g_autoptr(GError) error = NULL;
  PxModel *m = px_model_new(&d, &error);
  g_assert_no_error(error);
  g_assert_cmpuint(m->n_layers, ==, 7);
  return m;
}

static PxPartition *partition(const PxModel *m, const char *method, int pp, int vpp,
                              const double *profile, GError **error) {
  PxPlan plan;
  memset(&plan, 0, sizeof plan);
  plan.pp = pp;
  plan.vpp = vpp;
  plan.seq = 8;
  plan.partition = (char *)method;
  return px_partition_new(m, &plan, profile, error);
}

static PxPartition *partition_ok(const PxModel *m, const char *method, int pp, int vpp,
                                 const double *profile) {
  g_autoptr(GError) error = NULL;
  PxPartition *p = partition(m, method, pp, vpp, profile, &error);
  g_assert_no_error(error);
  g_assert_nonnull(p);
  g_assert_cmpint(p->parts, ==, pp * vpp);
  g_assert_cmpstr(p->method, ==, method);
  return p;
}

static void test_model_uniform(void) {
  g_autoptr(PxModel) m = tiny_gpt(TRUE);
  g_autoptr(PxPartition) p = partition_ok(m, "uniform", 2, 1, NULL);
  /* 7 layers / 2: chunk 3, residual 1 */
  assert_bounds(p->bounds, (int[]){0, 4, 7}, 2, "uniform pp=2");
  g_assert_cmpint(p->params[0], ==, 192 + 3 * 872);
  g_assert_cmpint(p->params[1], ==, 872 + 16 + 128);
  g_assert_true(p->tied);
  g_assert_cmpint(p->tied_first_part, ==, 0);
  g_assert_cmpint(p->tied_last_part, ==, 1);

  /* interleaved: pp=2, vpp=2 → 4 parts [0,2,4,6,7]; part 3 is rank 1 chunk 1 */
  g_autoptr(PxPartition) v = partition_ok(m, "uniform", 2, 2, NULL);
  assert_bounds(v->bounds, (int[]){0, 2, 4, 6, 7}, 4, "uniform pp=2 vpp=2");
  g_assert_cmpint(px_partition_part_rank(v, 3), ==, 1);
  g_assert_cmpint(px_partition_part_chunk(v, 3), ==, 1);
  g_assert_cmpint(px_partition_part_of(v, 1, 1), ==, 3);
  g_assert_cmpint(v->tied_last_part, ==, 3);
}

static void test_model_parameters(void) {
  g_autoptr(PxModel) m = tiny_gpt(TRUE);
  /* weights 192,872,872,872,872,16,128: with one cut, max - min per cut k:
   * k=1 3440, k=2 1696, k=3 |1936 - 1888| = 48, k=4 1792 → [0,3,7]
   * (= partition_cases.txt tiny_gpt_params_2) */
  g_autoptr(PxPartition) p = partition_ok(m, "parameters", 2, 1, NULL);
  assert_bounds(p->bounds, (int[]){0, 3, 7}, 2, "parameters pp=2");
  g_assert_cmpint(p->params[0], ==, 1936);
  g_assert_cmpint(p->params[1], ==, 1888);
  /* DeepSpeed's method names are case-insensitive (method.lower()) */
  g_autoptr(PxPartition) q = partition_ok(m, "Parameters", 4, 1, NULL);
  assert_bounds(q->bounds, (int[]){0, 2, 3, 4, 7}, 4, "parameters pp=4 (tiny_gpt_params_4)");
  g_assert_cmpint(q->params[3], ==, 872 + 16 + 128);

  /* pp = 1: one part with everything; a stage holding both ends keeps one
   * copy of the tied embedding (the head adds nothing) */
  g_autoptr(PxPartition) one = partition_ok(m, "parameters", 1, 1, NULL);
  assert_bounds(one->bounds, (int[]){0, 7}, 1, "parameters pp=1");
  g_assert_cmpint(one->params[0], ==, 192 + 4 * 872 + 16);
  g_assert_false(one->tied);

  /* untied: the head owns V*h; the stored counts are the same, tied is off */
  g_autoptr(PxModel) u = tiny_gpt(FALSE);
  g_autoptr(PxPartition) pu = partition_ok(u, "parameters", 2, 1, NULL);
  assert_bounds(pu->bounds, (int[]){0, 3, 7}, 2, "parameters untied");
  g_assert_cmpint(pu->params[1], ==, 1888);
  g_assert_false(pu->tied);
}

static void test_model_type(void) {
  g_autoptr(PxModel) m = tiny_gpt(TRUE);
  /* binary weights 0,1,1,1,1,0,0 (tiny_gpt_type_transformer_2/_3) */
  g_autoptr(PxPartition) a = partition_ok(m, "type:transformer", 2, 1, NULL);
  assert_bounds(a->bounds, (int[]){0, 3, 7}, 2, "type:transformer pp=2");
  g_autoptr(PxPartition) b = partition_ok(m, "type:TRANSFORMERlayer", 3, 1, NULL);
  assert_bounds(b->bounds, (int[]){0, 3, 4, 7}, 3, "type:TRANSFORMERlayer pp=3");
  /* "norm" matches only LayerNorm (ln_f): 0,0,0,0,0,1,0 → [0,6,7] (tiny_gpt_type_norm_2) */
  g_autoptr(PxPartition) c = partition_ok(m, "type:^layernorm$", 2, 1, NULL);
  assert_bounds(c->bounds, (int[]){0, 6, 7}, 2, "type:^layernorm$");
  /* as DeepSpeed, the regex stops at the next ':' */
  g_autoptr(PxPartition) d = partition_ok(m, "type:transformer:ignored", 2, 1, NULL);
  assert_bounds(d->bounds, (int[]){0, 3, 7}, 2, "type:transformer:ignored");
}

static void test_model_optimal(void) {
  g_autoptr(PxModel) m = tiny_gpt(TRUE);
  /* FLOPs 0, B, B, B, B, 0, 2048 with B = 14336. pp=2: cutting after two
   * blocks gives 2B = 28672 | 2B + 2048 = 30720, the least possible max;
   * no earlier cut works (the rest would hold 3 blocks) → [0,3,7]. */
  g_autoptr(PxPartition) p = partition_ok(m, "optimal", 2, 1, NULL);
  assert_bounds(p->bounds, (int[]){0, 3, 7}, 2, "optimal pp=2");
  /* pp=4: one block per part, the head joins the last: max B + 2048; the first
   * cut cannot come before block 0 (then 4 blocks in 3 parts) → [0,2,3,4,7]. */
  g_autoptr(PxPartition) q = partition_ok(m, "optimal", 4, 1, NULL);
  assert_bounds(q->bounds, (int[]){0, 2, 3, 4, 7}, 4, "optimal pp=4");

  /* profile: costs 1,1,1,1,1,1,10: the 10 alone bounds the max, and the only
   * cut with both sides <= 10 is before it → [0,6,7] */
  const double prof[7] = {1, 1, 1, 1, 1, 1, 10};
  g_autoptr(PxPartition) r = partition_ok(m, "profile", 2, 1, prof);
  assert_bounds(r->bounds, (int[]){0, 6, 7}, 2, "profile pp=2");
  g_assert_cmpint(r->params[1], ==, 128);
}

static void expect_error(const PxModel *m, const char *method, int pp, const double *profile,
                         int code, const char *fragment) {
  g_autoptr(GError) error = NULL;
  g_autoptr(PxPartition) p = partition(m, method, pp, 1, profile, &error);
  g_assert_null(p);
  g_assert_error(error, PX_PARTITION_ERROR, code);
  if (!strstr(error->message, fragment)) g_error("'%s' lacks '%s'", error->message, fragment);
}

static void test_model_errors(void) {
  g_autoptr(PxModel) m = tiny_gpt(TRUE);
  expect_error(m, "fastest", 2, NULL, PX_PARTITION_ERROR_METHOD, "unknown partition method 'fastest'");
  expect_error(m, "type:(", 2, NULL, PX_PARTITION_ERROR_METHOD, "bad regex");
  expect_error(m, "type:conv", 2, NULL, PX_PARTITION_ERROR_METHOD, "no layer");
  /* 7 layers over 8 stages: uniform gives [0..7,7], the last stage empty */
  expect_error(m, "uniform", 8, NULL, PX_PARTITION_ERROR_INVALID, "leaves stage 7 empty");
  expect_error(m, "parameters", 9, NULL, PX_PARTITION_ERROR_INVALID, "leaves stage 7 empty");
  expect_error(m, "profile", 2, NULL, PX_PARTITION_ERROR_INVALID, "needs per-layer weights");
  const double neg[7] = {1, 1, -1, 1, 1, 1, 1};
  expect_error(m, "profile", 2, neg, PX_PARTITION_ERROR_INVALID, "layer 2");
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/partition/deepspeed/reference", test_deepspeed_reference);
  g_test_add_func("/partition/deepspeed/hand", test_deepspeed_hand);
  g_test_add_func("/partition/optimal/brute-force", test_optimal_brute);
  g_test_add_func("/partition/optimal/hand", test_optimal_hand);
  g_test_add_func("/partition/parse-weights", test_parse_weights);
  g_test_add_func("/partition/model/uniform", test_model_uniform);
  g_test_add_func("/partition/model/parameters", test_model_parameters);
  g_test_add_func("/partition/model/type", test_model_type);
  g_test_add_func("/partition/model/optimal", test_model_optimal);
  g_test_add_func("/partition/model/errors", test_model_errors);
  return g_test_run();
}
