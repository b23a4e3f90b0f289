/* fuzz_ckpt.h — shared by the checkpoint harnesses: a scratch step directory
 * in memory (/dev/shm when there is one), and the backend registry the
 * checkpoint code links against but never calls (no backend is made). */
#pragma once
#include "fuzz_input.h"
#include "backend_impl.h"
#include "checkpoint.h"
#include <glib/gstdio.h>

const PxBackendReg *px_backend_registry(gsize *n) {
  *n = 0;
  return NULL;
}

static const char *fuzz_ckpt_dir(void) {
  static char *dir;
  if (!dir) {
    const char *base = g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) ? "/dev/shm" : g_get_tmp_dir();
    dir = g_build_filename(base, "px-fuzz-ckpt-XXXXXX", NULL);
    if (!g_mkdtemp(dir)) abort();
  }
  return dir;
}

static void fuzz_ckpt_put(const char *name, const void *data, gsize size) {
  g_autofree char *path = g_build_filename(fuzz_ckpt_dir(), name, NULL);
  if (!g_file_set_contents(path, data, (gssize)size, NULL)) abort();
}

/* Open the step directory as a resume does and read a few tensors. */
static void fuzz_ckpt_read(const char *run) {
  GError *error = NULL;
  PxCkptManifest *m = px_ckpt_manifest_read(fuzz_ckpt_dir(), run, &error);
  g_clear_error(&error);
  if (!m) return;
  PxCkptReader *rd = px_ckpt_reader_open(fuzz_ckpt_dir(), m, &error);
  g_clear_error(&error);
  if (rd) {
    static const char *names[] = {"wte", "blocks.0.attn.qkv.weight", "lnf.weight"};
    static const gint64 shapes[][2] = {{256, 64}, {192, 64}, {64, 1}};
    static const gint64 gidx[] = {0, 1, 63, 64, 12287};
    double out[G_N_ELEMENTS(gidx)];
    for (guint i = 0; i < G_N_ELEMENTS(names); i++)
      for (int st = 0; st < 2; st++) {
        int ndim = shapes[i][1] == 1 ? 1 : 2;
        gint64 n = ndim == 1 ? 2 : (gint64)G_N_ELEMENTS(gidx);
        px_ckpt_reader_get(rd, st ? "adam_m" : "param", names[i], ndim, shapes[i], gidx, n, out, &error);
        g_clear_error(&error);
      }
    px_ckpt_reader_free(rd);
  }
  px_ckpt_manifest_free(m);
}
