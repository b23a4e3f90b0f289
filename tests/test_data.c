/* test_data.c — llm.c token files: round trip, windows by position, every
 * error case, and the synthetic corpus's grammar. */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include "data.h"

typedef struct {
  char *dir;
} Fixture;

static void fx_setup(Fixture *f, gconstpointer d) {
  (void)d;
  f->dir = g_dir_make_tmp("px-data-XXXXXX", NULL);
  g_assert_nonnull(f->dir);
}

static void fx_teardown(Fixture *f, gconstpointer d) {
  (void)d;
  g_autoptr(GDir) dir = g_dir_open(f->dir, 0, NULL);
  const char *name;
  while ((name = g_dir_read_name(dir))) {
    g_autofree char *p = g_build_filename(f->dir, name, NULL);
    g_unlink(p);
  }
  g_rmdir(f->dir);
  g_free(f->dir);
}

/* Write raw bytes: a header with the given fields, then ntok_written tokens 0,1,2,... */
static char *write_raw(Fixture *f, const char *name, gint32 magic, gint32 version, gint32 ntok,
                       int ntok_written) {
  char *path = g_build_filename(f->dir, name, NULL);
  gsize size = 1024 + 2 * (gsize)ntok_written;
  g_autofree char *buf = g_malloc0(size);
  gint32 h[3] = {GINT32_TO_LE(magic), GINT32_TO_LE(version), GINT32_TO_LE(ntok)};
  memcpy(buf, h, sizeof h);
  for (int i = 0; i < ntok_written; i++) {
    guint16 t = GUINT16_TO_LE((guint16)i);
    memcpy(buf + 1024 + 2 * i, &t, 2);
  }
  g_assert_true(g_file_set_contents(path, buf, size, NULL));
  return path;
}

static void test_round_trip(Fixture *f, gconstpointer d) {
  (void)d;
  g_autofree char *path = g_build_filename(f->dir, "rt.bin", NULL);
  guint16 tok[21];
  for (int i = 0; i < 21; i++) tok[i] = (guint16)(100 + i);
  tok[20] = 65535;
  g_autoptr(GError) error = NULL;
  g_assert_true(px_token_file_write(path, tok, 21, &error));
  g_assert_no_error(error);
  /* 1024-byte header + 2 bytes a token, as llm.c writes */
  GStatBuf st;
  g_assert_cmpint(g_stat(path, &st), ==, 0);
  g_assert_cmpint(st.st_size, ==, 1024 + 42);

  g_autoptr(PxTokenFile) tf = px_token_file_open(path, &error);
  g_assert_no_error(error);
  g_assert_cmpint(px_token_file_n_tokens(tf), ==, 21);
  g_assert_cmpint(px_token_file_vocab_min(tf), ==, 65536);
  g_assert_cmpmem(px_token_file_tokens(tf), 42, tok, 42);

  /* T=4: W = (21-1)/4 = 5 windows starting at 0,4,8,12,16 */
  g_assert_cmpint(px_token_file_n_windows(tf, 4), ==, 5);
  gint32 w[2 * 5];
  g_assert_true(px_token_file_windows(tf, 1, 2, 4, w, &error));
  const gint32 expect[10] = {104, 105, 106, 107, 108, 108, 109, 110, 111, 112};
  g_assert_cmpmem(w, sizeof w, expect, sizeof expect);
  /* sequence 6 wraps to window 1 */
  gint32 w6[5];
  g_assert_true(px_token_file_windows(tf, 6, 1, 4, w6, &error));
  g_assert_cmpmem(w6, sizeof w6, expect, sizeof w6);

  gint32 in[8], tg[8];
  px_windows_split(w, 2, 4, in, tg);
  const gint32 ein[8] = {104, 105, 106, 107, 108, 109, 110, 111};
  const gint32 etg[8] = {105, 106, 107, 108, 109, 110, 111, 112};
  g_assert_cmpmem(in, sizeof in, ein, sizeof ein);
  g_assert_cmpmem(tg, sizeof tg, etg, sizeof etg);

  /* T=20 leaves one window, T=21 none */
  g_assert_cmpint(px_token_file_n_windows(tf, 20), ==, 1);
  gint32 big[22];
  g_assert_false(px_token_file_windows(tf, 0, 1, 21, big, &error));
  g_assert_error(error, PX_DATA_ERROR, PX_DATA_ERROR_RANGE);
}

static void test_missing(Fixture *f, gconstpointer d) {
  (void)d;
  g_autofree char *path = g_build_filename(f->dir, "nope.bin", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(PxTokenFile) tf = px_token_file_open(path, &error);
  g_assert_null(tf);
  g_assert_error(error, PX_DATA_ERROR, PX_DATA_ERROR_IO);
  g_assert_nonnull(strstr(error->message, "nope.bin"));
}

static void expect_format_error(const char *path, const char *fragment) {
  g_autoptr(GError) error = NULL;
  g_autoptr(PxTokenFile) tf = px_token_file_open(path, &error);
  g_assert_null(tf);
  g_assert_error(error, PX_DATA_ERROR, PX_DATA_ERROR_FORMAT);
  g_assert_nonnull(strstr(error->message, fragment));
}

static void test_bad_magic(Fixture *f, gconstpointer d) {
  (void)d;
  g_autofree char *path = write_raw(f, "magic.bin", 20240521, 1, 10, 10);
  expect_format_error(path, "bad magic 20240521");
}

static void test_bad_version(Fixture *f, gconstpointer d) {
  (void)d;
  g_autofree char *path = write_raw(f, "version.bin", PX_DATA_MAGIC, 2, 10, 10);
  expect_format_error(path, "version 2");
}

static void test_truncated(Fixture *f, gconstpointer d) {
  (void)d;
  g_autofree char *path = write_raw(f, "trunc.bin", PX_DATA_MAGIC, 1, 10, 7);
  /* 1024 + 20 expected, 1024 + 14 present */
  expect_format_error(path, "header says 10 tokens (1044 bytes) but the file has 1038 bytes (truncated)");
  g_autofree char *longer = write_raw(f, "long.bin", PX_DATA_MAGIC, 1, 10, 12);
  expect_format_error(longer, "but the file has 1048 bytes");
  g_autofree char *tiny = g_build_filename(f->dir, "tiny.bin", NULL);
  g_assert_true(g_file_set_contents(tiny, "abc", 3, NULL));
  expect_format_error(tiny, "shorter than the 1024-byte header");
}

/* The grammar of exec/data.h: records of 4..11 terms in 1..V-1 with a constant
 * step d in {1,2,3} (mod V-1), separated by 0. */
static void test_synthetic(void) {
  const int V = 16, n = 5000;
  g_autoptr(GError) error = NULL;
  g_autofree guint16 *a = px_data_synthetic(n, V, 7, &error);
  g_autofree guint16 *b = px_data_synthetic(n, V, 7, &error);
  g_autofree guint16 *c = px_data_synthetic(n, V, 8, &error);
  g_assert_no_error(error);
  g_assert_cmpmem(a, n * 2, b, n * 2);
  g_assert_true(memcmp(a, c, n * 2) != 0);
  int start = 0, records = 0;
  for (int i = 0; i <= n; i++) {
    if (i < n && a[i] != 0) {
      g_assert_cmpint(a[i], <, V);
      continue;
    }
    int len = i - start;
    if (i < n) { /* a complete record */
      g_assert_cmpint(len, >=, 4);
      g_assert_cmpint(len, <=, 11);
      records++;
    }
    if (len >= 2) {
      int step = ((a[start + 1] - a[start]) % (V - 1) + (V - 1)) % (V - 1);
      g_assert_cmpint(step, >=, 1);
      g_assert_cmpint(step, <=, 3);
      for (int k = start + 2; k < i; k++)
        g_assert_cmpint(((a[k] - a[k - 1]) % (V - 1) + (V - 1)) % (V - 1), ==, step);
    }
    start = i + 1;
  }
  /* mean record is 7.5 terms + separator: about n / 8.5 records */
  g_assert_cmpint(records, >, n / 12);
  g_assert_cmpint(records, <, n / 5);

  g_autofree guint16 *bad = px_data_synthetic(n, 4, 7, &error);
  g_assert_null(bad);
  g_assert_error(error, PX_DATA_ERROR, PX_DATA_ERROR_RANGE);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add("/data/round-trip", Fixture, NULL, fx_setup, test_round_trip, fx_teardown);
  g_test_add("/data/error/missing", Fixture, NULL, fx_setup, test_missing, fx_teardown);
  g_test_add("/data/error/magic", Fixture, NULL, fx_setup, test_bad_magic, fx_teardown);
  g_test_add("/data/error/version", Fixture, NULL, fx_setup, test_bad_version, fx_teardown);
  g_test_add("/data/error/truncated", Fixture, NULL, fx_setup, test_truncated, fx_teardown);
  g_test_add_func("/data/synthetic", test_synthetic);
  return g_test_run();
}
