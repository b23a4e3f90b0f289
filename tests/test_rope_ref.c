/* test_rope_ref.c — the rotary embedding op against a numpy dump of Hugging
 * Face Llama's rotation (tests/ref/rope_ref.py → tests/ref/rope_ref.txt) at
 * head_dim 8 with GQA, where "rotate half" and interleaved pairs differ, for
 * two bases (10^4 and Llama-3's 5·10^5); forward and backward, f64. */
#include <glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "config.h"

enum { B = 2, T = 5, H = 4, KV = 2, D = 8, W = (H + 2 * KV) * D, N = B * T * W };

/* Read tensor `name` of the dump into out (N values). */
static void load(const char *text, const char *name, double *out) {
  g_autofree char *key = g_strdup_printf("\n%s %d ", name, N);
  const char *p = strstr(text, key);
  g_assert_nonnull(p);
  p += strlen(key);
  for (int i = 0; i < N; i++) {
    char *end;
    out[i] = g_ascii_strtod(p, &end);
    g_assert_true(end != p);
    p = end;
  }
}

static void check_base(const char *text, const char *tag, double theta) {
  g_autoptr(GError) e = NULL;
  g_autoptr(PxBackend) be = px_backend_new("cpu", 0, &e);
  g_assert_no_error(e);
  g_autofree double *in = g_new(double, N), *out = g_new(double, N), *dout = g_new(double, N),
                    *din = g_new(double, N), *got = g_new(double, N);
  g_autofree char *k_in = g_strconcat(tag, ".in", NULL), *k_out = g_strconcat(tag, ".out", NULL),
                  *k_dout = g_strconcat(tag, ".dout", NULL), *k_din = g_strconcat(tag, ".din", NULL);
  load(text, k_in, in);
  load(text, k_out, out);
  load(text, k_dout, dout);
  load(text, k_din, din);
  gint64 shape[2] = {B * T, W};
  PxAttnShape s = {.B = B, .T = T, .heads = H, .kv_heads = KV, .head_dim = D};
  g_autoptr(PxTensor) x = px_tensor_new(be, "qkv", PX_DTYPE_F64, PX_MEM_ACTIVATIONS, 2, shape, &e);
  g_autoptr(PxTensor) y = px_tensor_new(be, "rot", PX_DTYPE_F64, PX_MEM_ACTIVATIONS, 2, shape, &e);
  g_assert_no_error(e);
  g_assert_true(px_tensor_upload_f64(x, in, &e));
  g_assert_true(px_op_rope_fwd(be, y, x, &s, theta, &e));
  g_assert_no_error(e);
  g_assert_true(px_tensor_download_f64(y, got, &e));
  for (int i = 0; i < N; i++) g_assert_cmpfloat_with_epsilon(got[i], out[i], 1e-12);
  /* backward accumulates into a zeroed din */
  g_autoptr(PxTensor) dy = px_tensor_new(be, "dout", PX_DTYPE_F64, PX_MEM_ACTIVATIONS, 2, shape, &e);
  g_autoptr(PxTensor) dx = px_tensor_new(be, "din", PX_DTYPE_F64, PX_MEM_ACTIVATIONS, 2, shape, &e);
  g_autofree double *zero = g_new0(double, N);
  g_assert_true(px_tensor_upload_f64(dy, dout, &e) && px_tensor_upload_f64(dx, zero, &e));
  g_assert_true(px_op_rope_bwd(be, dx, dy, &s, theta, &e));
  g_assert_no_error(e);
  g_assert_true(px_tensor_download_f64(dx, got, &e));
  for (int i = 0; i < N; i++) g_assert_cmpfloat_with_epsilon(got[i], din[i], 1e-12);
}

static void test_rope_hf_llama(void) {
  g_autofree char *path = g_build_filename(px_data_dir(), "tests", "ref", "rope_ref.txt", NULL);
  g_autofree char *text = NULL;
  g_autoptr(GError) e = NULL;
  g_assert_true(g_file_get_contents(path, &text, NULL, &e));
  check_base(text, "t1e4", 10000.0);
  check_base(text, "t5e5", 500000.0);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/rope/hf-llama-rotate-half", test_rope_hf_llama);
  return g_test_run();
}
