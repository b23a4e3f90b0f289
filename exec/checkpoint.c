/* checkpoint.c — atomic per-rank checkpoints (see checkpoint.h). */
#include "checkpoint.h"
#include "check.h"
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

G_DEFINE_QUARK(px-checkpoint-error-quark, px_checkpoint_error)

#define MAGIC "PXCKPT01"

#define fail(error, code, ...) px_fail((error), PX_CHECKPOINT_ERROR, (code), __VA_ARGS__)

static void remove_tree(const char *path) {
  g_autoptr(GDir) d = g_dir_open(path, 0, NULL);
  if (!d) return;
  const char *name;
  while ((name = g_dir_read_name(d))) {
    g_autofree char *p = g_build_filename(path, name, NULL);
    if (g_file_test(p, G_FILE_TEST_IS_DIR)) remove_tree(p);
    else g_unlink(p);
  }
  g_rmdir(path);
}

char *px_checkpoint_begin(const char *dir, int step, GError **error) {
  if (g_mkdir_with_parents(dir, 0755) != 0) {
    fail(error, PX_CHECKPOINT_ERROR_IO, "checkpoint directory %s: %s", dir, g_strerror(errno));
    return NULL;
  }
  g_autofree char *name = g_strdup_printf(".tmp-step-%08d", step);
  char *tmp = g_build_filename(dir, name, NULL);
  remove_tree(tmp);
  if (g_mkdir(tmp, 0755) != 0) {
    fail(error, PX_CHECKPOINT_ERROR_IO, "checkpoint directory %s: %s", tmp, g_strerror(errno));
    g_free(tmp);
    return NULL;
  }
  return tmp;
}

static char *rank_path(const char *stepdir, int rank) {
  g_autofree char *name = g_strdup_printf("rank-%05d.ckpt", rank);
  return g_build_filename(stepdir, name, NULL);
}

static gboolean write_all(int fd, const void *p, gsize n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return FALSE;
    c += w;
    n -= (gsize)w;
  }
  return TRUE;
}

gboolean px_checkpoint_write_rank(const char *tmpdir, int rank, const char *fingerprint, int step,
                                  const PxCkptBlob *blobs, int n, GError **error) {
  g_autofree char *path = rank_path(tmpdir, rank);
  g_autofree char *header = g_strdup_printf("%s\nstep=%d\nrank=%d\nblobs=%d\n", fingerprint, step, rank, n);
  int fd = g_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return fail(error, PX_CHECKPOINT_ERROR_IO, "checkpoint %s: %s", path, g_strerror(errno));
  guint32 hl = GUINT32_TO_LE((guint32)strlen(header));
  gboolean ok = write_all(fd, MAGIC, 8) && write_all(fd, &hl, 4) && write_all(fd, header, strlen(header));
  for (int i = 0; ok && i < n; i++) {
    guint64 b = GUINT64_TO_LE((guint64)blobs[i].bytes);
    ok = write_all(fd, &b, 8) && write_all(fd, blobs[i].data, blobs[i].bytes);
  }
  ok = ok && fsync(fd) == 0;
  int e = errno;
  close(fd);
  if (!ok) return fail(error, PX_CHECKPOINT_ERROR_IO, "checkpoint %s: %s", path, g_strerror(e));
  return TRUE;
}

static void sync_dir(const char *dir) {
  int fd = g_open(dir, O_RDONLY, 0);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

gboolean px_checkpoint_commit(const char *dir, const char *tmpdir, int step, GError **error) {
  /* never replace a directory in place: `latest` may name it. A step saved
   * again (after resuming from an older checkpoint) gets a fresh name. */
  g_autofree char *name = g_strdup_printf("step-%08d", step);
  g_autofree char *final = g_build_filename(dir, name, NULL);
  for (int k = 1; g_file_test(final, G_FILE_TEST_EXISTS); k++) {
    g_free(name);
    g_free(final);
    name = g_strdup_printf("step-%08d.%d", step, k);
    final = g_build_filename(dir, name, NULL);
  }
  if (g_rename(tmpdir, final) != 0)
    return fail(error, PX_CHECKPOINT_ERROR_IO, "checkpoint: rename %s to %s: %s", tmpdir, final, g_strerror(errno));
  sync_dir(dir);
  g_autofree char *latest = g_build_filename(dir, "latest", NULL);
  g_autofree char *tmp = g_build_filename(dir, ".latest.tmp", NULL);
  g_autofree char *line = g_strdup_printf("%s\n", name);
  g_autoptr(GError) err = NULL;
  int fd = g_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  gboolean ok = fd >= 0 && write_all(fd, line, strlen(line)) && fsync(fd) == 0;
  if (fd >= 0) close(fd);
  if (!ok || g_rename(tmp, latest) != 0)
    return fail(error, PX_CHECKPOINT_ERROR_IO, "checkpoint: cannot update %s: %s", latest, g_strerror(errno));
  sync_dir(dir);
  return TRUE;
}

char *px_checkpoint_latest(const char *dir, int *step, GError **error) {
  g_autofree char *latest = g_build_filename(dir, "latest", NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents(latest, &text, NULL, NULL)) {
    fail(error, PX_CHECKPOINT_ERROR_NONE, "no checkpoint in %s (no 'latest' file)", dir);
    return NULL;
  }
  g_strstrip(text);
  int s = 0;
  if (sscanf(text, "step-%d", &s) != 1 || s < 0 || strchr(text, '/')) {
    fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: 'latest' holds '%s', not a step directory", dir, text);
    return NULL;
  }
  char *path = g_build_filename(dir, text, NULL);
  if (!g_file_test(path, G_FILE_TEST_IS_DIR)) {
    fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: 'latest' names %s, which is missing", dir, text);
    g_free(path);
    return NULL;
  }
  *step = s;
  return path;
}

gboolean px_checkpoint_read_rank(const char *stepdir, int rank, const char *fingerprint, int *step,
                                 PxCkptBlob *blobs, int n, GError **error) {
  g_autofree char *path = rank_path(stepdir, rank);
  g_autofree char *buf = NULL;
  gsize len = 0;
  g_autoptr(GError) err = NULL;
  if (!g_file_get_contents(path, &buf, &len, &err))
    return fail(error, PX_CHECKPOINT_ERROR_IO, "checkpoint: %s", err->message);
  if (len < 12 || memcmp(buf, MAGIC, 8))
    return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: not a checkpoint file (bad magic)", path);
  guint32 hl;
  memcpy(&hl, buf + 8, 4);
  hl = GUINT32_FROM_LE(hl);
  if (12 + (gsize)hl > len) return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: truncated header", path);
  g_autofree char *header = g_strndup(buf + 12, hl);
  g_autofree char *want = g_strdup_printf("%s\n", fingerprint);
  if (!g_str_has_prefix(header, want)) {
    /* name the first item ("key value", "; "-separated) that differs */
    char *nl = strchr(header, '\n');
    if (nl) *nl = 0;
    g_auto(GStrv) there = g_strsplit(header, "; ", -1);
    g_auto(GStrv) here = g_strsplit(fingerprint, "; ", -1);
    int i = 0;
    while (there[i] && here[i] && !strcmp(there[i], here[i])) i++;
    return fail(error, PX_CHECKPOINT_ERROR_MISMATCH, "checkpoint %s was made for another run: '%s' there, '%s' here",
                stepdir, there[i] ? there[i] : "", here[i] ? here[i] : "");
  }
  int s = -1, r = -1, nb = -1;
  const char *p = header + strlen(want);
  if (sscanf(p, "step=%d\nrank=%d\nblobs=%d", &s, &r, &nb) != 3 || r != rank || nb != n)
    return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: header does not match rank %d", path, rank);
  gsize off = 12 + hl;
  for (int i = 0; i < n; i++) {
    guint64 b;
    if (off + 8 > len) return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: truncated", path);
    memcpy(&b, buf + off, 8);
    b = GUINT64_FROM_LE(b);
    off += 8;
    if (b != blobs[i].bytes)
      return fail(error, PX_CHECKPOINT_ERROR_MISMATCH, "checkpoint %s: blob %d holds %" G_GUINT64_FORMAT
                  " bytes, this run needs %" G_GSIZE_FORMAT, path, i, b, blobs[i].bytes);
    if (off + b > len) return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: truncated", path);
    memcpy(blobs[i].data, buf + off, b);
    off += b;
  }
  if (off != len) return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: trailing bytes", path);
  *step = s;
  return TRUE;
}
