/* data.c — llm.c token files, training windows, the synthetic corpus. */
#include "data.h"
#include "config.h"
#include "check.h"
#include <string.h>

G_DEFINE_QUARK(px-data-error-quark, px_data_error)

struct _PxTokenFile {
  char *path;
  char *bytes;           /* the whole file, read at open: a mapping of it raised SIGBUS in the run when the
                            file was truncated on disk while training (and took edits made in place) */
  const guint16 *tokens; /* (n) into bytes */
  gint64 n;
  int vocab_min;
};

#define fail(error, code, ...) px_fail(error, PX_DATA_ERROR, code, __VA_ARGS__)

gboolean px_token_file_check(const char *bytes, gsize size, const char *path, gint64 *n_tokens, GError **error) {
  const gsize header = PX_DATA_HEADER_INTS * sizeof(gint32);
  if (size < header) {
    fail(error, PX_DATA_ERROR_FORMAT, "token file %s: %" G_GSIZE_FORMAT " bytes, shorter than the %"
         G_GSIZE_FORMAT "-byte header", path, size, header);
    return FALSE;
  }
  gint32 h[3];
  memcpy(h, bytes, sizeof h);
  for (int i = 0; i < 3; i++) h[i] = GINT32_FROM_LE(h[i]);
  if (h[0] != PX_DATA_MAGIC) {
    fail(error, PX_DATA_ERROR_FORMAT, "token file %s: bad magic %d (expected %d, llm.c format)",
         path, h[0], PX_DATA_MAGIC);
    return FALSE;
  }
  if (h[1] != PX_DATA_VERSION) {
    fail(error, PX_DATA_ERROR_FORMAT, "token file %s: version %d, only version %d is read", path,
         h[1], PX_DATA_VERSION);
    return FALSE;
  }
  if (h[2] < 0) { /* was "says -5 tokens (1024 bytes) but the file has 1024 bytes" */
    fail(error, PX_DATA_ERROR_FORMAT, "token file %s: header says %d tokens, a negative count", path, h[2]);
    return FALSE;
  }
  gsize expect = header + (gsize)h[2] * sizeof(guint16);
  if (size != expect) {
    fail(error, PX_DATA_ERROR_FORMAT,
         "token file %s: header says %d tokens (%" G_GSIZE_FORMAT " bytes) but the file has %"
         G_GSIZE_FORMAT " bytes%s", path, h[2], expect, size, size < expect ? " (truncated)" : "");
    return FALSE;
  }
  *n_tokens = h[2];
  return TRUE;
}

PxTokenFile *px_token_file_open(const char *path, GError **error) {
  if (!g_file_test(path, G_FILE_TEST_IS_REGULAR)) {
    fail(error, PX_DATA_ERROR_IO, "token file %s: %s", path,
         g_file_test(path, G_FILE_TEST_EXISTS) ? "not a regular file" : "no such file");
    return NULL;
  }
  /* the header's count is an int32 of 2-byte tokens: no valid file is larger */
  const gsize header = PX_DATA_HEADER_INTS * sizeof(gint32), max = header + 2 * (gsize)G_MAXINT32;
  gsize size;
  g_autoptr(GError) err = NULL;
  g_autofree char *bytes = px_file_read_max(path, max, "a token file", &size, PX_DATA_ERROR, PX_DATA_ERROR_IO, &err);
  if (!bytes) {
    fail(error, PX_DATA_ERROR_IO, "token file %s", err->message);
    return NULL;
  }
  gint64 n;
  if (!px_token_file_check(bytes, size, path, &n, error)) return NULL;
  PxTokenFile *tf = g_new0(PxTokenFile, 1);
  tf->path = g_strdup(path);
  tf->n = n;
  tf->tokens = (const guint16 *)(bytes + header);
  for (gint64 i = 0; i < tf->n; i++) tf->vocab_min = MAX(tf->vocab_min, GUINT16_FROM_LE(tf->tokens[i]) + 1);
  tf->bytes = g_steal_pointer(&bytes);
  return tf;
}

void px_token_file_free(PxTokenFile *tf) {
  if (!tf) return;
  g_free(tf->bytes);
  g_free(tf->path);
  g_free(tf);
}

gint64 px_token_file_n_tokens(const PxTokenFile *tf) { return tf->n; }
const guint16 *px_token_file_tokens(const PxTokenFile *tf) { return tf->tokens; }
int px_token_file_vocab_min(const PxTokenFile *tf) { return tf->vocab_min; }

gint64 px_token_file_n_windows(const PxTokenFile *tf, int T) {
  return T < 1 || tf->n < 1 ? 0 : (tf->n - 1) / T;
}

gboolean px_token_file_windows(const PxTokenFile *tf, gint64 first_seq, int B, int T, gint32 *out,
                               GError **error) {
  if (B < 1 || T < 1 || first_seq < 0)
    return fail(error, PX_DATA_ERROR_RANGE, "windows: B=%d T=%d first sequence %" G_GINT64_FORMAT,
                B, T, first_seq);
  gint64 W = px_token_file_n_windows(tf, T);
  if (W < 1)
    return fail(error, PX_DATA_ERROR_RANGE,
                "token file %s: %" G_GINT64_FORMAT " tokens, fewer than one window of T+1=%d",
                tf->path, tf->n, T + 1);
  for (int b = 0; b < B; b++) {
    gint64 start = ((first_seq + b) % W) * T;
    for (int t = 0; t <= T; t++)
      out[(gint64)b * (T + 1) + t] = GUINT16_FROM_LE(tf->tokens[start + t]);
  }
  return TRUE;
}

void px_windows_split(const gint32 *windows, int B, int T, gint32 *inputs, gint32 *targets) {
  for (int b = 0; b < B; b++) {
    const gint32 *w = windows + (gint64)b * (T + 1);
    memcpy(inputs + (gint64)b * T, w, T * sizeof(gint32));
    memcpy(targets + (gint64)b * T, w + 1, T * sizeof(gint32));
  }
}

gboolean px_token_file_write(const char *path, const guint16 *tokens, gint64 n, GError **error) {
  if (n < 0 || n > G_MAXINT32)
    return fail(error, PX_DATA_ERROR_RANGE, "token file %s: %" G_GINT64_FORMAT " tokens (at most %d)",
                path, n, G_MAXINT32);
  gsize header = PX_DATA_HEADER_INTS * sizeof(gint32), size = header + (gsize)n * sizeof(guint16);
  g_autofree char *buf = g_malloc0(size);
  gint32 *h = (gint32 *)buf;
  h[0] = GINT32_TO_LE(PX_DATA_MAGIC);
  h[1] = GINT32_TO_LE(PX_DATA_VERSION);
  h[2] = GINT32_TO_LE((gint32)n);
  guint16 *tok = (guint16 *)(buf + header);
  for (gint64 i = 0; i < n; i++) tok[i] = GUINT16_TO_LE(tokens[i]);
  /* px_file_write names a directory as one (not "Failed to rename file “f.0HFIZ3” to “f”") */
  g_autoptr(GError) err = NULL;
  if (!px_file_write(path, buf, size, PX_DATA_ERROR, PX_DATA_ERROR_IO, &err))
    return fail(error, PX_DATA_ERROR_IO, "token file %s", err->message);
  return TRUE;
}

guint16 *px_data_synthetic(gint64 n, int vocab, guint32 seed, GError **error) {
  if (vocab < 8 || vocab > 65536) {
    fail(error, PX_DATA_ERROR_RANGE, "synthetic corpus: vocab %d outside [8, 65536]", vocab);
    return NULL;
  }
  if (n < 1 || n > PX_DATA_MAX_SYNTHETIC) {
    fail(error, PX_DATA_ERROR_RANGE, "synthetic corpus: %" G_GINT64_FORMAT " tokens outside [1, %" G_GINT64_FORMAT "]", n,
         PX_DATA_MAX_SYNTHETIC);
    return NULL;
  }
  g_autoptr(GRand) rng = g_rand_new_with_seed(seed);
  guint16 *out = g_new(guint16, n);
  int m = vocab - 1; /* terms live in 1..vocab-1 */
  gint64 i = 0;
  while (i < n) {
    int a = g_rand_int_range(rng, 0, m), d = g_rand_int_range(rng, 1, 4);
    int len = g_rand_int_range(rng, 4, 12);
    for (int k = 0; k < len && i < n; k++) out[i++] = (guint16)(1 + (a + k * d) % m);
    if (i < n) out[i++] = 0;
  }
  return out;
}
