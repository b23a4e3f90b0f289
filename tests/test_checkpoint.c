/* test_checkpoint.c — sharded checkpoints (exec/checkpoint.h):
 *  - resume under another layout: a run saved at step 3 under layout A and
 *    resumed under layout B continues with the losses of A's own continuation
 *    (steps 4-6) to 1e-5 relative in fp32 and 1e-12 in fp64, and every weight
 *    B holds after the resume equals A's at step 3 exactly (re-slicing moves
 *    values, it computes nothing): dp2 ZeRO-1 -> dp4 ZeRO-3, pp2 tp2 -> pp4,
 *    vpp2 -> vpp1, tp2 -> tp1 (GQA qkv head blocks), and back ones; ZeRO-1/2
 *    sharded per bucket (each rank's slices of the padded buckets) to and
 *    from flat shards and other dp;
 *  - under the same layout (ZeRO-3, tp, vpp) the continuation is bit-exact;
 *  - a flipped byte, a missing shard, a manifest of another run (model, seed)
 *    are each refused with one error naming the file;
 *  - the format: every element of every tensor written exactly once over the
 *    shard files (the manifest's sizes add up to the hand-counted payload);
 *  - retention: px_checkpoint_prune keeps the newest N (by step, then .K) and
 *    never the one `latest` names; the save target check;
 *  - a learning rate that blows the weights up stops the run with a
 *    non-finite error instead of training on. */
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include "checkpoint.h"
#include "runtime.h"
#include "schedule.h"
#include "parity.h"

typedef struct {
  int dp, tp, pp, vpp;
  const char *schedule;
  int zero;
  int mbs;
  gboolean sp;
  double bucket_bytes; /* the DP reduction in buckets (0: none) */
  int ep;              /* MoE: expert parallelism (0: 1) */
} Lay;

typedef struct {
  guint64 seed;
  double lr;
} Opts;

static const Opts default_opts = {7, 3e-3};

static PxModel *model_of(const char *name) {
  g_autoptr(GError) error = NULL;
  PxModel *m = px_model_load(name, &error);
  g_assert_no_error(error);
  return m;
}

static PxRuntime *make(const PxModel *model, const Lay *l, PxDType dt, const Opts *op, GError **error) {
  PxPlan p;
  px_plan_init(&p);
  p.dp = l->dp;
  p.tp = l->tp;
  p.pp = l->pp;
  p.vpp = l->vpp ? l->vpp : 1;
  g_assert_true(px_schedule_parse(l->schedule, &p.schedule));
  p.zero = l->zero;
  p.mbs = l->mbs;
  p.gbs = 8;
  p.seq = 16;
  p.seq_parallel = l->sp;
  p.bucket_bytes = l->bucket_bytes;
  p.ep = MAX(l->ep, 1);
  p.precision = PX_PREC_FP32;
  PxRunOptions o;
  px_run_options_init(&o);
  o.dtype = dt;
  o.seed = op->seed;
  o.lr = op->lr;
  o.warmup = 2;
  o.decay_steps = 6;
  o.timeout_s = 30;
  PxRuntime *rt = px_runtime_new(model, &p, &o, error);
  px_plan_clear(&p);
  return rt;
}

static PxRuntime *make_ok(const PxModel *model, const Lay *l, PxDType dt) {
  g_autoptr(GError) error = NULL;
  PxRuntime *rt = make(model, l, dt, &default_opts, &error);
  g_assert_no_error(error);
  return rt;
}

static void steps(PxRuntime *rt, int n, double *loss) {
  for (int s = 0; s < n; s++) {
    g_autoptr(GError) error = NULL;
    PxStepResult r;
    g_assert_true(px_runtime_step(rt, &r, &error));
    g_assert_no_error(error);
    if (loss) loss[s] = r.loss;
  }
}

static char *tmpdir(void) {
  g_autoptr(GError) error = NULL;
  char *d = g_dir_make_tmp("px-ckpt-XXXXXX", &error);
  g_assert_no_error(error);
  return d;
}

static void rm_rf(const char *path) {
  g_autoptr(GDir) d = g_dir_open(path, 0, NULL);
  if (d) {
    const char *n;
    while ((n = g_dir_read_name(d))) {
      g_autofree char *p = g_build_filename(path, n, NULL);
      rm_rf(p);
    }
    g_rmdir(path);
  } else {
    g_unlink(path);
  }
}

/* Every parameter of the model, as a runtime holds it. */
static GPtrArray *all_params(const PxModel *model, PxRuntime *rt) {
  GPtrArray *v = g_ptr_array_new_with_free_func(g_free);
  for (guint i = 0; i < model->n_layers; i++)
    for (guint k = 0; k < model->layers[i].n_tensors; k++) {
      g_autoptr(GError) error = NULL;
      double *w = px_runtime_get_param(rt, model->layers[i].tensors[k].name, &error);
      g_assert_no_error(error);
      g_ptr_array_add(v, w);
    }
  return v;
}

static void check_same_params(const PxModel *model, GPtrArray *a, GPtrArray *b) {
  guint j = 0;
  for (guint i = 0; i < model->n_layers; i++)
    for (guint k = 0; k < model->layers[i].n_tensors; k++, j++) {
      const PxTensorSpec *t = &model->layers[i].tensors[k];
      gsize bytes = sizeof(double) * (gsize)(t->shape[0] * t->shape[1]);
      if (memcmp(g_ptr_array_index(a, j), g_ptr_array_index(b, j), bytes))
        g_error("%s: %s differs after the resume", model->desc.name, t->name);
    }
}

static void describe(const Lay *l, char *buf, gsize n) {
  g_snprintf(buf, n, "dp%d tp%d pp%d vpp%d ep%d %s zero%d%s%s", l->dp, l->tp, l->pp, l->vpp ? l->vpp : 1,
             MAX(l->ep, 1), l->schedule, l->zero, l->sp ? " sp" : "", l->bucket_bytes > 0 ? " buckets" : "");
}

/* Save A at step 3; A's own steps 4-6 are the reference; B resumed from the
 * checkpoint must hold A's weights and reproduce those losses. */
static void cross_model(const PxModel *model, const Lay *a, const Lay *b, PxDType dt, double tol) {
  const char *model_name = model->desc.name;
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = tmpdir();
  double want[3], got[3], first[3];
  g_autoptr(GPtrArray) saved = NULL;
  {
    g_autoptr(PxRuntime) rt = make_ok(model, a, dt);
    steps(rt, 3, first);
    g_assert_true(px_runtime_save(rt, dir, &error));
    g_assert_no_error(error);
    saved = all_params(model, rt);
    steps(rt, 3, want);
  }
  g_autoptr(PxRuntime) rt = make_ok(model, b, dt);
  g_assert_true(px_runtime_resume(rt, dir, &error));
  g_assert_no_error(error);
  g_assert_cmpint(px_runtime_steps_done(rt), ==, 3);
  g_autoptr(GPtrArray) loaded = all_params(model, rt);
  check_same_params(model, saved, loaded);
  steps(rt, 3, got);
  char da[96], db[96];
  describe(a, da, sizeof da);
  describe(b, db, sizeof db);
  for (int s = 0; s < 3; s++) {
    double rel = fabs(got[s] - want[s]) / fabs(want[s]);
    if (g_test_verbose())
      g_printerr("%s %s -> %s step %d: %.15g vs %.15g (rel %.2e)\n", model_name, da, db, s + 4, got[s], want[s], rel);
    if (!(rel <= tol))
      g_error("%s %s -> %s (%s): step %d loss %.15g, the saved run's continuation %.15g (rel %.2e > %.0e)", model_name,
              da, db, px_dtype_name(dt), s + 4, got[s], want[s], rel, tol);
  }
  /* training moves past the checkpoint: the comparison is not of constants */
  g_assert_cmpfloat(want[2], <, first[0]);
  rm_rf(dir);
}

static void cross(const char *model_name, const Lay *a, const Lay *b, PxDType dt, double tol) {
  g_autoptr(PxModel) model = model_of(model_name);
  cross_model(model, a, b, dt, tol);
}

static const Lay L_dp2z1 = {2, 1, 1, 1, "1f1b", 1, 2, FALSE, 0, 1};
static const Lay L_dp4z3 = {4, 1, 1, 1, "1f1b", 3, 2, FALSE, 0, 1};
static const Lay L_pp2tp2 = {1, 2, 2, 1, "1f1b", 0, 2, FALSE, 0, 1};
static const Lay L_pp4 = {1, 1, 4, 1, "1f1b", 0, 2, FALSE, 0, 1};
static const Lay L_vpp2 = {1, 1, 2, 2, "interleaved", 0, 2, FALSE, 0, 1};
static const Lay L_vpp1 = {1, 1, 2, 1, "1f1b", 0, 2, FALSE, 0, 1};
static const Lay L_tp2 = {1, 2, 1, 1, "1f1b", 0, 2, FALSE, 0, 1};
static const Lay L_tp1 = {1, 1, 1, 1, "1f1b", 0, 2, FALSE, 0, 1};
static const Lay L_mix = {2, 2, 2, 1, "zb-h1", 2, 2, TRUE, 0, 1}; /* ZeRO-2, TP with sequence parallelism, pp */

static void test_cross_f32(void) {
  cross("tiny-gpt", &L_dp2z1, &L_dp4z3, PX_DTYPE_F32, 1e-5);
  cross("tiny-gpt", &L_pp2tp2, &L_pp4, PX_DTYPE_F32, 1e-5);
  cross("tiny-gpt", &L_vpp2, &L_vpp1, PX_DTYPE_F32, 1e-5);
  cross("tiny-gpt", &L_tp2, &L_tp1, PX_DTYPE_F32, 1e-5);
  cross("tiny-llama", &L_tp2, &L_tp1, PX_DTYPE_F32, 1e-5);
  cross("tiny-llama", &L_vpp2, &L_vpp1, PX_DTYPE_F32, 1e-5);
  /* and the other way, through a layout with everything */
  cross("tiny-gpt", &L_dp4z3, &L_mix, PX_DTYPE_F32, 1e-5);
  cross("tiny-llama", &L_mix, &L_dp2z1, PX_DTYPE_F32, 1e-5);
}

static void test_cross_f64(void) {
  cross("tiny-gpt", &L_dp2z1, &L_dp4z3, PX_DTYPE_F64, 1e-12);
  cross("tiny-gpt", &L_pp2tp2, &L_pp4, PX_DTYPE_F64, 1e-12);
  cross("tiny-gpt", &L_vpp2, &L_vpp1, PX_DTYPE_F64, 1e-12);
  cross("tiny-llama", &L_tp2, &L_tp1, PX_DTYPE_F64, 1e-12);
}

/* A vocabulary of 251 (prime): tp 4 holds ceil(251/4) = 63 rows per rank, the
 * last one padding, which is never written and comes back as zeros; with ZeRO
 * the flat shards are padded too. */
static void test_cross_padded_vocab(void) {
  g_autoptr(PxModel) model = prime_vocab_model();
  const Lay tp4 = {2, 4, 1, 1, "gpipe", 2, 2, TRUE, 0, 1}, tp2pp2 = {1, 2, 2, 1, "1f1b", 0, 2, FALSE, 0, 1};
  cross_model(model, &tp4, &tp2pp2, PX_DTYPE_F64, 1e-12);
  cross_model(model, &tp2pp2, &tp4, PX_DTYPE_F32, 1e-5);
}

/* Under the same layout a resume is the uninterrupted run, bit for bit. */
static void same(const char *model_name, const Lay *l) {
  g_autoptr(PxModel) model = model_of(model_name);
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = tmpdir();
  double straight[5], resumed[5];
  {
    g_autoptr(PxRuntime) rt = make_ok(model, l, PX_DTYPE_F32);
    steps(rt, 5, straight);
  }
  {
    g_autoptr(PxRuntime) rt = make_ok(model, l, PX_DTYPE_F32);
    steps(rt, 2, resumed);
    g_assert_true(px_runtime_save(rt, dir, &error));
    g_assert_no_error(error);
  }
  g_autoptr(PxRuntime) rt = make_ok(model, l, PX_DTYPE_F32);
  g_assert_true(px_runtime_resume(rt, dir, &error));
  g_assert_no_error(error);
  steps(rt, 3, resumed + 2);
  g_assert_cmpmem(straight, sizeof straight, resumed, sizeof resumed);
  rm_rf(dir);
}

static void test_same_layout(void) {
  same("tiny-gpt", &L_dp4z3);
  same("tiny-gpt", &L_mix);
  same("tiny-llama", &L_vpp2);
}

/* ZeRO-1/2 in buckets: each rank holds its slice of every padded bucket
 * (buckets.h px_buckets_shard_layout), saved by global name and element
 * range like any shard: dp 2 ZeRO-2 in buckets of 20000 fp32 elements (5
 * buckets) -> dp 4 ZeRO-1 flat shards, and pp 2 · tp 2 ZeRO-2 -> dp 4 ZeRO-1
 * in buckets; under the same bucketed layout the resume is bit-exact. */
static const Lay L_dp2z2b = {2, 1, 1, 1, "1f1b", 2, 2, FALSE, 8e4, 1};
static const Lay L_dp4z1 = {4, 1, 1, 1, "1f1b", 1, 2, FALSE, 0, 1};
static const Lay L_dp4z1b = {4, 1, 1, 1, "1f1b", 1, 2, FALSE, 8e4, 1};
static void test_cross_bucket_shards(void) {
  cross("tiny-gpt", &L_dp2z2b, &L_dp4z1, PX_DTYPE_F64, 1e-12);
  cross("tiny-gpt", &L_mix, &L_dp4z1b, PX_DTYPE_F64, 1e-12);
  cross("tiny-gpt", &L_dp4z1b, &L_dp2z2b, PX_DTYPE_F32, 1e-5);
  same("tiny-gpt", &L_dp2z2b);
}

/* MoE ZeRO-1/2 in buckets: the dense parameters' slices of each padded
 * bucket over DP, the routed experts' over EDP (buckets.h
 * px_buckets_shard_layout), saved by global name and element range like any
 * shard. tiny-moe, buckets of 2000 fp32 elements (6 buckets): ep 2 · dp 4
 * ZeRO-2 in buckets (EDP 2) -> ep 2 · dp 2 ZeRO-1 with the split flat
 * shards (dense over DP 2, experts over EDP 1), ep 1 · dp 2 ZeRO-1 flat
 * (the experts follow DP) -> ep 2 · dp 4 ZeRO-1 in buckets, ep 2 · dp 2
 * ZeRO-2 in buckets -> ep 2 · dp 4 ZeRO-2 in buckets (EDP 1 -> 2), and under
 * the same bucketed layout the resume is bit-exact. One sequence per
 * micro-batch throughout: the load-balancing loss is taken per micro-batch,
 * so the same data under another mbs is another loss. */
static const Lay L_moe_dp4z2b = {4, 1, 1, 1, "1f1b", 2, 1, FALSE, 8e3, 2};
static const Lay L_moe_dp2z1 = {2, 1, 1, 1, "1f1b", 1, 1, FALSE, 0, 2};
static const Lay L_moe_dp2z1_ep1 = {2, 1, 1, 1, "1f1b", 1, 1, FALSE, 0, 1};
static const Lay L_moe_dp4z1b = {4, 1, 1, 1, "1f1b", 1, 1, FALSE, 8e3, 2};
static const Lay L_moe_dp2z2b = {2, 1, 1, 1, "1f1b", 2, 1, FALSE, 8e3, 2};
static void test_cross_moe_bucket_shards(void) {
  cross("tiny-moe", &L_moe_dp4z2b, &L_moe_dp2z1, PX_DTYPE_F64, 1e-12);
  cross("tiny-moe", &L_moe_dp2z1_ep1, &L_moe_dp4z1b, PX_DTYPE_F64, 1e-12);
  cross("tiny-moe", &L_moe_dp2z2b, &L_moe_dp4z2b, PX_DTYPE_F32, 1e-5);
  same("tiny-moe", &L_moe_dp4z2b);
}

/* ---- refusals ---------------------------------------------------------------------------- */

/* A checkpoint of tiny-gpt under dp2 pp2 ZeRO-1 (4 ranks) at step 1. */
static char *saved_dir(const PxModel *model) {
  g_autoptr(GError) error = NULL;
  char *dir = tmpdir();
  Lay l = {2, 1, 2, 1, "1f1b", 1, 2, FALSE, 0, 1};
  g_autoptr(PxRuntime) rt = make_ok(model, &l, PX_DTYPE_F32);
  steps(rt, 1, NULL);
  g_assert_true(px_runtime_save(rt, dir, &error));
  g_assert_no_error(error);
  return dir;
}

static void expect_refusal(const PxModel *model, const char *dir, const Opts *op, int code, const char *file,
                           const char *what) {
  g_autoptr(GError) error = NULL;
  Lay l = {1, 2, 1, 1, "1f1b", 0, 2, FALSE, 0, 1}; /* another layout: the refusal is not about layouts */
  g_autoptr(PxRuntime) rt = make(model, &l, PX_DTYPE_F32, op, &error);
  g_assert_no_error(error);
  g_assert_false(px_runtime_resume(rt, dir, &error));
  g_assert_error(error, PX_CHECKPOINT_ERROR, code);
  if (!strstr(error->message, file) || !strstr(error->message, what))
    g_error("refusal '%s' should name %s and say '%s'", error->message, file, what);
  g_assert_null(strchr(error->message, '\n'));
}

static void test_flipped_byte(void) {
  g_autoptr(PxModel) model = model_of("tiny-gpt");
  g_autofree char *dir = saved_dir(model);
  g_autofree char *path = g_build_filename(dir, "step-00000001", "rank-00002.ckpt", NULL);
  g_autofree char *buf = NULL;
  gsize len = 0;
  g_assert_true(g_file_get_contents(path, &buf, &len, NULL));
  /* one bit in the payload (the last bytes are moments), then one in the header */
  buf[len - 5] ^= 0x10;
  g_assert_true(g_file_set_contents(path, buf, (gssize)len, NULL));
  expect_refusal(model, dir, &default_opts, PX_CHECKPOINT_ERROR_CORRUPT, "rank-00002.ckpt", "SHA-256");
  buf[len - 5] ^= 0x10;
  buf[20] ^= 0x01;
  g_assert_true(g_file_set_contents(path, buf, (gssize)len, NULL));
  expect_refusal(model, dir, &default_opts, PX_CHECKPOINT_ERROR_CORRUPT, "rank-00002.ckpt", "corrupt");
  buf[20] ^= 0x01;
  g_assert_true(g_file_set_contents(path, buf, (gssize)len, NULL));
  /* restored: resumes */
  g_autoptr(GError) error = NULL;
  Lay l = {1, 2, 1, 1, "1f1b", 0, 2, FALSE, 0, 1};
  g_autoptr(PxRuntime) rt = make_ok(model, &l, PX_DTYPE_F32);
  g_assert_true(px_runtime_resume(rt, dir, &error));
  g_assert_no_error(error);
  rm_rf(dir);
}

static void test_missing_shard(void) {
  g_autoptr(PxModel) model = model_of("tiny-gpt");
  g_autofree char *dir = saved_dir(model);
  g_autofree char *path = g_build_filename(dir, "step-00000001", "rank-00003.ckpt", NULL);
  g_assert_cmpint(g_unlink(path), ==, 0);
  expect_refusal(model, dir, &default_opts, PX_CHECKPOINT_ERROR_IO, "rank-00003.ckpt", "missing");
  rm_rf(dir);
}

static void test_other_run(void) {
  g_autoptr(PxModel) model = model_of("tiny-gpt");
  g_autoptr(PxModel) llama = model_of("tiny-llama");
  g_autofree char *dir = saved_dir(model);
  Opts seed8 = {8, 3e-3};
  expect_refusal(model, dir, &seed8, PX_CHECKPOINT_ERROR_MISMATCH, "manifest.json", "'seed 7' there, 'seed 8' here");
  expect_refusal(llama, dir, &default_opts, PX_CHECKPOINT_ERROR_MISMATCH, "manifest.json", "model tiny-gpt");
  /* the same run under another learning rate is not another run */
  g_autoptr(GError) error = NULL;
  Opts lr = {7, 1e-3};
  Lay l = {1, 1, 1, 1, "1f1b", 0, 2, FALSE, 0, 1};
  g_autoptr(PxRuntime) rt = make(model, &l, PX_DTYPE_F32, &lr, &error);
  g_assert_true(px_runtime_resume(rt, dir, &error));
  g_assert_no_error(error);
  /* a manifest without its files: another run's manifest copied over is refused
   * by its checksums, a removed one as not a checkpoint */
  g_autofree char *man = g_build_filename(dir, "step-00000001", "manifest.json", NULL);
  g_assert_cmpint(g_unlink(man), ==, 0);
  expect_refusal(model, dir, &default_opts, PX_CHECKPOINT_ERROR_FORMAT, "step-00000001", "no manifest.json");
  rm_rf(dir);
}

/* The files hold each element of each state once: tiny-gpt has P parameters
 * (wte 256x64, wpe 64x64, 4 blocks of 12 h^2 + 13 h, ln_f 2h); 3 states of P
 * f32 values is the payload, whatever the layout. */
static void test_payload_once(void) {
  g_autoptr(PxModel) model = model_of("tiny-gpt");
  g_autoptr(GError) error = NULL;
  const gint64 h = 64, P = 256 * h + 64 * h + 4 * (12 * h * h + 13 * h) + 2 * h;
  const Lay *lays[] = {&L_dp4z3, &L_pp2tp2, &L_mix, &L_tp1};
  for (gsize i = 0; i < G_N_ELEMENTS(lays); i++) {
    g_autofree char *dir = tmpdir();
    g_autoptr(PxRuntime) rt = make_ok(model, lays[i], PX_DTYPE_F32);
    g_assert_true(px_runtime_save(rt, dir, &error));
    g_assert_no_error(error);
    g_autofree char *step = g_build_filename(dir, "step-00000000", NULL);
    g_autoptr(PxCkptManifest) man = px_ckpt_manifest_read(step, NULL, &error);
    g_assert_no_error(error);
    g_assert_cmpint(man->n_files, ==, px_runtime_world(rt));
    gint64 payload = 0;
    for (int f = 0; f < man->n_files; f++) {
      g_autofree char *path = g_build_filename(step, man->files[f].file, NULL);
      g_autofree char *buf = NULL;
      gsize len;
      g_assert_true(g_file_get_contents(path, &buf, &len, NULL));
      guint64 hl;
      memcpy(&hl, buf + 8, 8);
      payload += (gint64)(len - 16 - GUINT64_FROM_LE(hl));
    }
    g_assert_cmpint(payload, ==, 3 * 4 * P);
    rm_rf(dir);
  }
}

/* ---- retention and the save target ------------------------------------------------------- */

static void test_prune(void) {
  g_autoptr(PxModel) model = model_of("tiny-gpt");
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = tmpdir();
  g_autoptr(PxRuntime) rt = make_ok(model, &L_tp1, PX_DTYPE_F32);
  for (int s = 1; s <= 6; s++) {
    steps(rt, 1, NULL);
    g_assert_true(px_runtime_save(rt, dir, &error));
  }
  g_autofree char *stale = g_build_filename(dir, ".tmp-step-00000009", NULL);
  g_assert_cmpint(g_mkdir(stale, 0755), ==, 0);
  int removed = -1;
  g_assert_true(px_checkpoint_prune(dir, 3, &removed, &error));
  g_assert_no_error(error);
  g_assert_cmpint(removed, ==, 3);
  const char *kept[] = {"step-00000004", "step-00000005", "step-00000006"};
  for (int i = 0; i < 3; i++) {
    g_autofree char *p = g_build_filename(dir, kept[i], NULL);
    g_assert_true(g_file_test(p, G_FILE_TEST_IS_DIR));
  }
  g_autofree char *gone = g_build_filename(dir, "step-00000003", NULL);
  g_assert_false(g_file_test(gone, G_FILE_TEST_EXISTS));
  g_assert_false(g_file_test(stale, G_FILE_TEST_EXISTS));
  /* `latest` pointing at an older one: it stays, and counts among the kept */
  g_autofree char *latest = g_build_filename(dir, "latest", NULL);
  g_assert_true(g_file_set_contents(latest, "step-00000004\n", -1, NULL));
  g_assert_true(px_checkpoint_prune(dir, 2, &removed, &error));
  g_assert_cmpint(removed, ==, 1);
  g_autofree char *s4 = g_build_filename(dir, "step-00000004", NULL);
  g_autofree char *s5 = g_build_filename(dir, "step-00000005", NULL);
  g_autofree char *s6 = g_build_filename(dir, "step-00000006", NULL);
  g_assert_true(g_file_test(s4, G_FILE_TEST_IS_DIR));
  g_assert_false(g_file_test(s5, G_FILE_TEST_EXISTS));
  g_assert_true(g_file_test(s6, G_FILE_TEST_IS_DIR));
  /* a step saved again gets .1, newer than the plain name */
  g_assert_true(g_file_set_contents(latest, "step-00000006\n", -1, NULL));
  g_assert_true(px_runtime_save(rt, dir, &error));
  g_autofree char *text = NULL;
  g_assert_true(g_file_get_contents(latest, &text, NULL, NULL));
  g_assert_cmpstr(text, ==, "step-00000006.1\n");
  g_assert_true(px_checkpoint_prune(dir, 2, &removed, &error));
  g_assert_cmpint(removed, ==, 1); /* step 4 */
  g_assert_false(g_file_test(s4, G_FILE_TEST_EXISTS));
  g_assert_true(g_file_test(s6, G_FILE_TEST_IS_DIR));
  rm_rf(dir);
}

static void test_save_target(void) {
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = tmpdir();
  g_autofree char *file = g_build_filename(dir, "plain-file", NULL);
  g_assert_true(g_file_set_contents(file, "x", -1, NULL));
  g_assert_false(px_checkpoint_check_dir(file, &error));
  g_assert_error(error, PX_CHECKPOINT_ERROR, PX_CHECKPOINT_ERROR_IO);
  g_assert_nonnull(strstr(error->message, "not a directory"));
  g_clear_error(&error);
  g_autofree char *under = g_build_filename(file, "ck", NULL);
  g_assert_false(px_checkpoint_check_dir(under, &error));
  g_assert_nonnull(strstr(error->message, under));
  g_clear_error(&error);
  g_autofree char *fresh = g_build_filename(dir, "a", "b", NULL);
  g_assert_true(px_checkpoint_check_dir(fresh, &error));
  g_assert_no_error(error);
  g_assert_true(g_file_test(fresh, G_FILE_TEST_IS_DIR));
  rm_rf(dir);
}

/* ---- non-finite values ---------------------------------------------------------------------- */

/* A learning rate of 1e30 takes every weight to about ±1e30 after step 1; the
 * next forward overflows float (activations of 64 products of 1e30 x 1e30).
 * The step fails with PX_RUNTIME_ERROR_NONFINITE and is not counted. */
static void test_nonfinite(void) {
  g_autoptr(PxModel) model = model_of("tiny-gpt");
  g_autoptr(GError) error = NULL;
  Opts huge = {7, 1e30};
  Lay l = {2, 1, 2, 1, "1f1b", 1, 2, FALSE, 0, 1};
  g_autoptr(PxRuntime) rt = make(model, &l, PX_DTYPE_F32, &huge, &error);
  g_assert_no_error(error);
  int s = 0;
  for (; s < 5; s++) {
    PxStepResult r;
    if (!px_runtime_step(rt, &r, &error)) break;
    g_assert_true(isfinite(r.loss) && isfinite(r.grad_norm));
  }
  g_assert_cmpint(s, <, 5);
  g_assert_error(error, PX_RUNTIME_ERROR, PX_RUNTIME_ERROR_NONFINITE);
  g_assert_nonnull(strstr(error->message, "not finite"));
  g_assert_cmpint(px_runtime_steps_done(rt), ==, s);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/checkpoint/cross-layout/f32", test_cross_f32);
  g_test_add_func("/checkpoint/cross-layout/f64", test_cross_f64);
  g_test_add_func("/checkpoint/cross-layout/padded-vocab", test_cross_padded_vocab);
  g_test_add_func("/checkpoint/same-layout", test_same_layout);
  g_test_add_func("/checkpoint/cross-layout/bucket-shards", test_cross_bucket_shards);
  g_test_add_func("/checkpoint/cross-layout/moe-bucket-shards", test_cross_moe_bucket_shards);
  g_test_add_func("/checkpoint/refuse/flipped-byte", test_flipped_byte);
  g_test_add_func("/checkpoint/refuse/missing-shard", test_missing_shard);
  g_test_add_func("/checkpoint/refuse/other-run", test_other_run);
  g_test_add_func("/checkpoint/format/payload-once", test_payload_once);
  g_test_add_func("/checkpoint/prune", test_prune);
  g_test_add_func("/checkpoint/save-target", test_save_target);
  g_test_add_func("/checkpoint/nonfinite", test_nonfinite);
  return g_test_run();
}
