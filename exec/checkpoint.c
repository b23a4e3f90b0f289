/* checkpoint.c — sharded, verified checkpoints by global tensor name (see
 * checkpoint.h). */
#include "checkpoint.h"
#include "check.h"
#include "config.h"
#include "report.h"
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

G_DEFINE_QUARK(px-checkpoint-error-quark, px_checkpoint_error)

#define MAGIC "PXSHARD2"

#define fail(error, code, ...) px_fail((error), PX_CHECKPOINT_ERROR, (code), __VA_ARGS__)

/* ---- files and directories ------------------------------------------------------------------ */

static void remove_tree(const char *path) {
  g_autoptr(GDir) d = g_dir_open(path, 0, NULL);
  if (!d) return;
  const char *name;
  while ((name = g_dir_read_name(d))) {
    g_autofree char *p = g_build_filename(path, name, NULL);
    if (g_file_test(p, G_FILE_TEST_IS_DIR) && !g_file_test(p, G_FILE_TEST_IS_SYMLINK)) remove_tree(p);
    else g_unlink(p);
  }
  g_rmdir(path);
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

static void sync_dir(const char *dir) {
  int fd = g_open(dir, O_RDONLY, 0);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

/* Write text to path through path.tmp, fsynced and renamed. */
static gboolean write_file_atomic(const char *path, const char *text, GError **error) {
  g_autofree char *tmp = g_strconcat(path, ".tmp", NULL);
  int fd = g_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  gboolean ok = fd >= 0 && write_all(fd, text, strlen(text)) && fsync(fd) == 0;
  int e = errno;
  if (fd >= 0) close(fd);
  if (!ok || g_rename(tmp, path) != 0) {
    if (ok) e = errno;
    g_unlink(tmp);
    return fail(error, PX_CHECKPOINT_ERROR_IO, "checkpoint: cannot write %s: %s", path, g_strerror(e));
  }
  return TRUE;
}

gboolean px_checkpoint_check_dir(const char *dir, GError **error) {
  if (!dir || !*dir) return fail(error, PX_CHECKPOINT_ERROR_IO, "checkpoint directory: empty name");
  if (g_file_test(dir, G_FILE_TEST_EXISTS) && !g_file_test(dir, G_FILE_TEST_IS_DIR))
    return fail(error, PX_CHECKPOINT_ERROR_IO, "checkpoint directory %s exists and is not a directory", dir);
  if (g_mkdir_with_parents(dir, 0755) != 0)
    return fail(error, PX_CHECKPOINT_ERROR_IO, "checkpoint directory %s cannot be created: %s", dir, g_strerror(errno));
  g_autofree char *name = g_strdup_printf(".write-test-%d", (int)getpid());
  g_autofree char *probe = g_build_filename(dir, name, NULL);
  int fd = g_open(probe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  gboolean ok = fd >= 0 && write_all(fd, "x", 1);
  int e = errno;
  if (fd >= 0) close(fd);
  g_unlink(probe);
  if (!ok) return fail(error, PX_CHECKPOINT_ERROR_IO, "checkpoint directory %s is not writable: %s", dir, g_strerror(e));
  return TRUE;
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
  g_autofree char *line = g_strdup_printf("%s\n", name);
  if (!write_file_atomic(latest, line, error)) return FALSE;
  sync_dir(dir);
  return TRUE;
}

/* "step-NNNNNNNN" or "step-NNNNNNNN.K" exactly: its step and K (0 for none). */
static gboolean parse_step_name(const char *name, int *step, int *k) {
  int s = -1, kk = 0, used = 0;
  if (sscanf(name, "step-%d%n", &s, &used) != 1 || s < 0) return FALSE;
  if (name[used] == '.' && sscanf(name + used, ".%d", &kk) == 1 && kk > 0) {
    g_autofree char *again = g_strdup_printf("step-%08d.%d", s, kk);
    if (strcmp(again, name)) return FALSE;
  } else {
    g_autofree char *again = g_strdup_printf("step-%08d", s);
    if (strcmp(again, name)) return FALSE;
    kk = 0;
  }
  *step = s;
  *k = kk;
  return TRUE;
}

char *px_checkpoint_latest(const char *dir, int *step, GError **error) {
  g_autofree char *latest = g_build_filename(dir, "latest", NULL);
  g_autofree char *text = NULL;
  GStatBuf st;
  if (g_stat(latest, &st) != 0 && g_file_test(latest, G_FILE_TEST_IS_SYMLINK)) {
    /* a loop or a dangling link was said to be no 'latest' at all: no checkpoint, where one is broken */
    int err = errno;
    g_autofree char *to = g_file_read_link(latest, NULL);
    fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: 'latest' is a symbolic link to '%s' that leads nowhere (%s)",
         dir, to ? to : "?", g_strerror(err));
    return NULL;
  }
  if (!g_file_test(latest, G_FILE_TEST_EXISTS)) {
    fail(error, PX_CHECKPOINT_ERROR_NONE, "no checkpoint in %s (no 'latest' file)", dir);
    return NULL;
  }
  gsize len;
  g_autoptr(GError) e = NULL;
  /* one step name: bounded, a device refused (a 'latest' linked to /dev/zero was read without end) */
  if (!(text = px_file_read_max(latest, 4096, "a 'latest' file", &len, PX_CHECKPOINT_ERROR, PX_CHECKPOINT_ERROR_FORMAT, &e))) {
    fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s", e->message);
    return NULL;
  }
  g_strstrip(text);
  int s = 0, k = 0;
  if (!parse_step_name(text, &s, &k)) {
    /* the text as C escapes, at most 64 bytes: binary garbage went to the terminal as it was */
    g_autofree char *cut = g_strndup(text, 64);
    g_autofree char *shown = g_strescape(cut, NULL);
    fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: 'latest' holds '%s%s', not a step directory", dir, shown,
         strlen(text) > 64 ? "..." : "");
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

typedef struct {
  char *name;
  int step, k;
} StepDir;

static int stepdir_newest_first(gconstpointer a, gconstpointer b) {
  const StepDir *x = a, *y = b;
  if (x->step != y->step) return x->step > y->step ? -1 : 1;
  return x->k > y->k ? -1 : x->k < y->k;
}

gboolean px_checkpoint_prune(const char *dir, int keep, int *removed, GError **error) {
  if (removed) *removed = 0;
  if (keep <= 0) return TRUE;
  g_autofree char *latest_path = g_build_filename(dir, "latest", NULL);
  g_autofree char *latest = NULL;
  if (!g_file_get_contents(latest_path, &latest, NULL, NULL))
    return fail(error, PX_CHECKPOINT_ERROR_NONE, "checkpoint %s: no 'latest' file, nothing pruned", dir);
  g_strstrip(latest);
  g_autoptr(GError) err = NULL;
  g_autoptr(GDir) d = g_dir_open(dir, 0, &err);
  if (!d) return fail(error, PX_CHECKPOINT_ERROR_IO, "checkpoint: %s", err->message);
  g_autoptr(GArray) dirs = g_array_new(FALSE, FALSE, sizeof(StepDir));
  const char *name;
  int n = 0;
  while ((name = g_dir_read_name(d))) {
    g_autofree char *path = g_build_filename(dir, name, NULL);
    if (!g_file_test(path, G_FILE_TEST_IS_DIR)) continue;
    if (g_str_has_prefix(name, ".tmp-step-")) { /* a killed save's leftovers */
      remove_tree(path);
      continue;
    }
    StepDir s = {NULL, 0, 0};
    if (!strcmp(name, latest) || !parse_step_name(name, &s.step, &s.k)) continue;
    s.name = g_strdup(name);
    g_array_append_val(dirs, s);
  }
  g_array_sort(dirs, stepdir_newest_first);
  for (guint i = 0; i < dirs->len; i++) {
    StepDir *s = &g_array_index(dirs, StepDir, i);
    if ((int)i >= keep - 1) { /* `latest` is one of the kept */
      g_autofree char *path = g_build_filename(dir, s->name, NULL);
      remove_tree(path);
      n++;
    }
    g_free(s->name);
  }
  sync_dir(dir);
  if (removed) *removed = n;
  return TRUE;
}

/* ---- shard files -------------------------------------------------------------------------------- */

void px_ckpt_file_clear(PxCkptFile *f) {
  g_clear_pointer(&f->file, g_free);
}

typedef struct {
  char *state, *name;
  int ndim;
  gint64 shape[2];
  GArray *runs;   /* gint64 (offset, count) pairs */
  gint64 offset;  /* in the payload, elements */
  gint64 count;
} Entry;

static void entry_free(gpointer p) {
  Entry *e = p;
  g_free(e->state);
  g_free(e->name);
  g_array_unref(e->runs);
  g_free(e);
}

struct _PxCkptShard {
  int rank, step;
  PxDType dtype;
  GPtrArray *entries;
  GArray *payload; /* double */
};

PxCkptShard *px_ckpt_shard_new(int rank, int step, PxDType dtype) {
  PxCkptShard *s = g_new0(PxCkptShard, 1);
  s->rank = rank;
  s->step = step;
  s->dtype = dtype;
  s->entries = g_ptr_array_new_with_free_func(entry_free);
  s->payload = g_array_new(FALSE, FALSE, sizeof(double));
  return s;
}

void px_ckpt_shard_free(PxCkptShard *s) {
  if (!s) return;
  g_ptr_array_unref(s->entries);
  g_array_unref(s->payload);
  g_free(s);
}

void px_ckpt_shard_add(PxCkptShard *s, const char *state, const char *name, int ndim, const gint64 *shape,
                       const gint64 *gidx, const double *values, gint64 n) {
  if (n <= 0) return;
  Entry *e = g_new0(Entry, 1);
  e->state = g_strdup(state);
  e->name = g_strdup(name);
  e->ndim = ndim;
  e->shape[0] = shape[0];
  e->shape[1] = ndim == 2 ? shape[1] : 1;
  e->runs = g_array_new(FALSE, FALSE, sizeof(gint64));
  e->offset = s->payload->len;
  e->count = n;
  for (gint64 i = 0; i < n; i++) {
    guint len = e->runs->len;
    gint64 *last = len ? &g_array_index(e->runs, gint64, len - 2) : NULL;
    if (last && last[0] + last[1] == gidx[i]) {
      last[1]++;
    } else {
      gint64 run[2] = {gidx[i], 1};
      g_array_append_vals(e->runs, run, 2);
    }
  }
  g_array_append_vals(s->payload, values, (guint)n);
  g_ptr_array_add(s->entries, e);
}

/* The builder's JSON (pretty: indented, with a final newline). */
static char *builder_text(JsonBuilder *b, gboolean pretty) {
  g_autoptr(JsonGenerator) gen = json_generator_new();
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  json_generator_set_root(gen, root);
  json_generator_set_pretty(gen, pretty);
  g_autofree char *text = json_generator_to_data(gen, NULL);
  return pretty ? g_strconcat(text, "\n", NULL) : g_steal_pointer(&text);
}

static char *shard_header(const PxCkptShard *s) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  px_json_member_string(b, "format", "parallax-checkpoint-shard");
  px_json_member_int(b, "version", PX_CKPT_VERSION);
  px_json_member_int(b, "rank", s->rank);
  px_json_member_int(b, "step", s->step);
  px_json_member_string(b, "dtype", px_dtype_name(s->dtype));
  json_builder_set_member_name(b, "tensors");
  json_builder_begin_array(b);
  for (guint i = 0; i < s->entries->len; i++) {
    const Entry *e = g_ptr_array_index(s->entries, i);
    json_builder_begin_object(b);
    px_json_member_string(b, "name", e->name);
    px_json_member_string(b, "state", e->state);
    json_builder_set_member_name(b, "shape");
    json_builder_begin_array(b);
    for (int k = 0; k < e->ndim; k++) json_builder_add_int_value(b, e->shape[k]);
    json_builder_end_array(b);
    px_json_member_int(b, "offset", e->offset);
    px_json_member_int(b, "count", e->count);
    json_builder_set_member_name(b, "runs");
    json_builder_begin_array(b);
    for (guint k = 0; k < e->runs->len; k += 2) {
      json_builder_begin_array(b);
      json_builder_add_int_value(b, g_array_index(e->runs, gint64, k));
      json_builder_add_int_value(b, g_array_index(e->runs, gint64, k + 1));
      json_builder_end_array(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  json_builder_end_object(b);
  return builder_text(b, FALSE);
}

/* Element i of a payload of doubles as dtype, little-endian, into out. */
static void encode(PxDType dt, double v, guchar *out) {
  if (dt == PX_DTYPE_F64) {
    guint64 u;
    memcpy(&u, &v, 8);
    u = GUINT64_TO_LE(u);
    memcpy(out, &u, 8);
  } else {
    float f = (float)v;
    guint32 u;
    memcpy(&u, &f, 4);
    u = GUINT32_TO_LE(u);
    memcpy(out, &u, 4);
  }
}

static double decode(PxDType dt, const guchar *in) {
  if (dt == PX_DTYPE_F64) {
    guint64 u;
    memcpy(&u, in, 8);
    u = GUINT64_FROM_LE(u);
    double v;
    memcpy(&v, &u, 8);
    return v;
  }
  guint32 u;
  memcpy(&u, in, 4);
  u = GUINT32_FROM_LE(u);
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static gboolean write_hashed(int fd, GChecksum *ck, const void *p, gsize n, guint64 *total) {
  g_checksum_update(ck, p, (gssize)n);
  *total += n;
  return write_all(fd, p, n);
}

gboolean px_ckpt_shard_write(PxCkptShard *s, const char *dir, PxCkptFile *out, GError **error) {
  g_autofree char *name = g_strdup_printf("rank-%05d.ckpt", s->rank);
  g_autofree char *path = g_build_filename(dir, name, NULL);
  g_autofree char *header = shard_header(s);
  gsize es = px_dtype_size(s->dtype);
  int fd = g_open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return fail(error, PX_CHECKPOINT_ERROR_IO, "checkpoint %s: %s", path, g_strerror(errno));
  g_autoptr(GChecksum) ck = g_checksum_new(G_CHECKSUM_SHA256);
  guint64 total = 0, hl = GUINT64_TO_LE((guint64)strlen(header));
  gboolean ok = write_hashed(fd, ck, MAGIC, 8, &total) && write_hashed(fd, ck, &hl, 8, &total) &&
                write_hashed(fd, ck, header, strlen(header), &total);
  enum { BLOCK = 1 << 14 };
  g_autofree guchar *buf = g_malloc(BLOCK * es);
  const double *v = (const double *)s->payload->data;
  for (guint i = 0; ok && i < s->payload->len; i += BLOCK) {
    guint n = MIN((guint)BLOCK, s->payload->len - i);
    for (guint k = 0; k < n; k++) encode(s->dtype, v[i + k], buf + k * es);
    ok = write_hashed(fd, ck, buf, n * es, &total);
  }
  ok = ok && fsync(fd) == 0;
  int e = errno;
  close(fd);
  if (!ok) return fail(error, PX_CHECKPOINT_ERROR_IO, "checkpoint %s: %s", path, g_strerror(e));
  out->rank = s->rank;
  out->file = g_steal_pointer(&name);
  out->bytes = total;
  g_strlcpy(out->sha256, g_checksum_get_string(ck), sizeof out->sha256);
  return TRUE;
}

/* ---- the manifest ------------------------------------------------------------------------------ */

gboolean px_ckpt_manifest_write(const char *dir, int step, const char *run, const PxPlan *layout,
                                const PxCkptFile *files, int n, GError **error) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  px_json_member_string(b, "format", "parallax-checkpoint");
  px_json_member_int(b, "version", PX_CKPT_VERSION);
  px_json_member_int(b, "step", step);
  px_json_member_string(b, "run", run);
  json_builder_set_member_name(b, "layout");
  px_report_plan_json(b, layout);
  json_builder_set_member_name(b, "files");
  json_builder_begin_array(b);
  for (int i = 0; i < n; i++) {
    json_builder_begin_object(b);
    px_json_member_int(b, "rank", files[i].rank);
    px_json_member_string(b, "file", files[i].file);
    px_json_member_int(b, "bytes", (gint64)files[i].bytes);
    px_json_member_string(b, "sha256", files[i].sha256);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  json_builder_end_object(b);
  g_autofree char *text = builder_text(b, TRUE);
  g_autofree char *path = g_build_filename(dir, PX_CKPT_MANIFEST, NULL);
  return write_file_atomic(path, text, error);
}

void px_ckpt_manifest_free(PxCkptManifest *m) {
  if (!m) return;
  g_free(m->run);
  g_free(m->layout);
  for (int i = 0; i < m->n_files; i++) px_ckpt_file_clear(&m->files[i]);
  g_free(m->files);
  g_free(m);
}

static const char *str_member(JsonObject *o, const char *key) {
  JsonNode *n = o ? json_object_get_member(o, key) : NULL;
  return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING ? json_node_get_string(n)
                                                                                       : NULL;
}

static gboolean int_member(JsonObject *o, const char *key, gint64 *out) {
  JsonNode *n = o ? json_object_get_member(o, key) : NULL;
  if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64) return FALSE;
  *out = json_node_get_int(n);
  return TRUE;
}

gboolean px_ckpt_items_differ(const char *there, const char *here, char **a, char **b) {
  if (!strcmp(there, here)) return FALSE;
  g_auto(GStrv) x = g_strsplit(there, "; ", -1);
  g_auto(GStrv) y = g_strsplit(here, "; ", -1);
  int i = 0;
  while (x[i] && y[i] && !strcmp(x[i], y[i])) i++;
  *a = g_strdup(x[i] ? x[i] : "(nothing)");
  *b = g_strdup(y[i] ? y[i] : "(nothing)");
  return TRUE;
}

/* run without its "data bytes ..." and "data sha256 ..." items */
static char *items_without_data_identity(const char *run) {
  g_auto(GStrv) items = g_strsplit(run, "; ", -1);
  GString *s = g_string_new(NULL);
  for (int i = 0; items[i]; i++) {
    if (g_str_has_prefix(items[i], "data bytes ") || g_str_has_prefix(items[i], "data sha256 ")) continue;
    g_string_append_printf(s, "%s%s", s->len ? "; " : "", items[i]);
  }
  return g_string_free(s, FALSE);
}

PxCkptManifest *px_ckpt_manifest_read(const char *stepdir, const char *run, GError **error) {
  g_autofree char *path = g_build_filename(stepdir, PX_CKPT_MANIFEST, NULL);
  if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
    fail(error, PX_CHECKPOINT_ERROR_FORMAT,
         "checkpoint %s: no %s (not a checkpoint, or one of an older format, which cannot be resumed)", stepdir,
         PX_CKPT_MANIFEST);
    return NULL;
  }
  /* bounded and checked before json-glib parses it: a manifest linked to
   * /dev/zero was read without end, one nested 200000 deep overflowed the stack */
  gsize len;
  g_autoptr(GError) err = NULL;
  g_autofree char *text = px_file_read_max(path, PX_CKPT_MANIFEST_MAX_BYTES, "a checkpoint manifest", &len,
                                           PX_CHECKPOINT_ERROR, PX_CHECKPOINT_ERROR_FORMAT, &err);
  if (!text || !px_json_check(path, text, len, TRUE, PX_CHECKPOINT_ERROR, PX_CHECKPOINT_ERROR_FORMAT, &err)) {
    fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s", err->message);
    return NULL;
  }
  g_autoptr(JsonParser) parser = json_parser_new();
  if (!json_parser_load_from_data(parser, text, (gssize)len, &err)) {
    fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: %s", path, err->message);
    return NULL;
  }
  JsonNode *root = json_parser_get_root(parser);
  JsonObject *o = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
  const char *format = str_member(o, "format"), *fp = str_member(o, "run");
  gint64 version = 0, step = -1;
  if (!format || strcmp(format, "parallax-checkpoint") || !int_member(o, "version", &version) || !fp ||
      !int_member(o, "step", &step) || step < 0 || step > G_MAXINT || !json_object_has_member(o, "files") ||
      !JSON_NODE_HOLDS_ARRAY(json_object_get_member(o, "files"))) {
    fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: not a parallax checkpoint manifest", path);
    return NULL;
  }
  if (version != PX_CKPT_VERSION) {
    fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: format version %" G_GINT64_FORMAT ", this build reads %d",
         path, version, PX_CKPT_VERSION);
    return NULL;
  }
  g_autofree char *a = NULL, *b = NULL;
  /* a checkpoint saved before the fingerprint carried the data file's size
   * and head (it named the file by its base name only) is compared on the
   * items it has */
  g_autofree char *want = run && !strstr(fp, "; data bytes ") ? items_without_data_identity(run) : g_strdup(run);
  if (want && px_ckpt_items_differ(fp, want, &a, &b)) {
    fail(error, PX_CHECKPOINT_ERROR_MISMATCH, "checkpoint %s was made for another run: '%s' there, '%s' here", path, a, b);
    return NULL;
  }
  g_autoptr(PxCkptManifest) m = g_new0(PxCkptManifest, 1);
  m->step = (int)step;
  m->run = g_strdup(fp);
  g_autoptr(GString) layout = g_string_new(NULL);
  JsonNode *ln = json_object_get_member(o, "layout");
  if (ln && JSON_NODE_HOLDS_OBJECT(ln)) {
    JsonObject *lo = json_node_get_object(ln);
    g_autoptr(GList) keys = json_object_get_members(lo);
    for (GList *k = keys; k; k = k->next) {
      JsonNode *v = json_object_get_member(lo, k->data);
      GValue gv = G_VALUE_INIT, sv = G_VALUE_INIT;
      g_value_init(&sv, G_TYPE_STRING);
      if (JSON_NODE_HOLDS_VALUE(v)) {
        json_node_get_value(v, &gv);
        g_value_transform(&gv, &sv);
        g_value_unset(&gv);
      }
      const char *text = g_value_get_string(&sv);
      g_string_append_printf(layout, "%s%s %s", layout->len ? "; " : "", (const char *)k->data, text ? text : "?");
      g_value_unset(&sv);
    }
  }
  m->layout = g_string_free(g_steal_pointer(&layout), FALSE);
  JsonArray *files = json_object_get_array_member(o, "files");
  m->n_files = (int)json_array_get_length(files);
  m->files = g_new0(PxCkptFile, MAX(1, m->n_files));
  for (int i = 0; i < m->n_files; i++) {
    JsonNode *fn = json_array_get_element(files, (guint)i);
    JsonObject *f = JSON_NODE_HOLDS_OBJECT(fn) ? json_node_get_object(fn) : NULL;
    const char *name = str_member(f, "file"), *sha = str_member(f, "sha256");
    gint64 rank = -1, bytes = -1;
    if (!name || !sha || strlen(sha) != 64 || !int_member(f, "rank", &rank) || !int_member(f, "bytes", &bytes) ||
        bytes < 0 || rank < 0 || rank > G_MAXINT || strchr(name, '/') || !strcmp(name, "..")) {
      fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: file entry %d is malformed", path, i);
      return NULL;
    }
    m->files[i].rank = (int)rank;
    m->files[i].file = g_strdup(name);
    m->files[i].bytes = (guint64)bytes;
    g_strlcpy(m->files[i].sha256, sha, sizeof m->files[i].sha256);
  }
  if (m->n_files < 1) {
    fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s lists no shard files", path);
    return NULL;
  }
  /* a shard listed twice (its tensors indexed twice) or two shards of one rank */
  for (int i = 0; i < m->n_files; i++)
    for (int j = 0; j < i; j++)
      if (!strcmp(m->files[i].file, m->files[j].file)) {
        fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: file entries %d and %d both name file %s", path, j, i,
             m->files[i].file);
        return NULL;
      } else if (m->files[i].rank == m->files[j].rank) {
        fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: file entries %d and %d both name rank %d", path, j, i,
             m->files[i].rank);
        return NULL;
      }
  return g_steal_pointer(&m);
}

/* ---- reading ------------------------------------------------------------------------------------- */

typedef struct {
  const char *file;   /* owned by the reader's file list */
  const guchar *data; /* this entry's payload */
  gint64 count;
  gint64 *runs;       /* (n_runs) pairs */
  int n_runs;
  int ndim;
  gint64 shape[2];
} REntry;

typedef struct {
  double *v;
  guint8 *have;
  gint64 numel;
} Dense;

struct _PxCkptReader {
  char *stepdir;
  PxDType dtype;
  GPtrArray *bufs;     /* file contents */
  GPtrArray *paths;
  GHashTable *entries; /* "state\tname" -> GPtrArray of REntry* */
  GHashTable *dense;   /* "state\tname" -> Dense* */
};

static void rentry_free(gpointer p) {
  REntry *e = p;
  g_free(e->runs);
  g_free(e);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(REntry, rentry_free)

static void dense_free(gpointer p) {
  Dense *d = p;
  g_free(d->v);
  g_free(d->have);
  g_free(d);
}

void px_ckpt_reader_free(PxCkptReader *rd) {
  if (!rd) return;
  g_free(rd->stepdir);
  g_ptr_array_unref(rd->bufs);
  g_ptr_array_unref(rd->paths);
  g_hash_table_unref(rd->entries);
  g_hash_table_unref(rd->dense);
  g_free(rd);
}

/* Index one verified shard file's entries. */
static gboolean index_shard(PxCkptReader *rd, const char *path, const guchar *buf, gsize len, gboolean first,
                            int rank, int step, GError **error) {
  if (len < 16 || memcmp(buf, MAGIC, 8))
    return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: not a shard file (bad magic)", path);
  guint64 hl;
  memcpy(&hl, buf + 8, 8);
  hl = GUINT64_FROM_LE(hl);
  if (hl > len - 16) return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: truncated header", path);
  g_autoptr(JsonParser) parser = json_parser_new();
  g_autoptr(GError) err = NULL;
  if (!px_json_check(path, (const char *)buf + 16, hl, TRUE, PX_CHECKPOINT_ERROR, PX_CHECKPOINT_ERROR_FORMAT, &err) ||
      !json_parser_load_from_data(parser, (const char *)buf + 16, (gssize)hl, &err))
    return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: header: %s", path, err->message);
  JsonNode *root = json_parser_get_root(parser);
  JsonObject *o = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
  const char *dt = str_member(o, "dtype");
  JsonNode *tn = o ? json_object_get_member(o, "tensors") : NULL;
  if (!dt || !tn || !JSON_NODE_HOLDS_ARRAY(tn) || (strcmp(dt, "f32") && strcmp(dt, "f64")))
    return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: header lacks dtype or tensors", path);
  /* a shard of another step or rank under this manifest was read as this step's */
  gint64 hr = -1, hs = -1;
  if (!int_member(o, "rank", &hr) || !int_member(o, "step", &hs) || hr != rank || hs != step)
    return fail(error, PX_CHECKPOINT_ERROR_FORMAT,
                "checkpoint %s: its header says rank %" G_GINT64_FORMAT " step %" G_GINT64_FORMAT
                ", the manifest rank %d step %d", path, hr, hs, rank, step);
  PxDType dtype = !strcmp(dt, "f64") ? PX_DTYPE_F64 : PX_DTYPE_F32;
  if (first) rd->dtype = dtype;
  else if (dtype != rd->dtype)
    return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: dtype %s differs from the other shards'", path, dt);
  gsize es = px_dtype_size(dtype);
  const guchar *payload = buf + 16 + hl;
  gsize plen = len - 16 - hl;
  JsonArray *ts = json_node_get_array(tn);
  for (guint i = 0; i < json_array_get_length(ts); i++) {
    JsonNode *en = json_array_get_element(ts, i);
    JsonObject *e = JSON_NODE_HOLDS_OBJECT(en) ? json_node_get_object(en) : NULL;
    const char *name = str_member(e, "name"), *state = str_member(e, "state");
    gint64 off = -1, count = -1;
    JsonNode *sn = e ? json_object_get_member(e, "shape") : NULL, *rn = e ? json_object_get_member(e, "runs") : NULL;
    if (!name || !state || !int_member(e, "offset", &off) || !int_member(e, "count", &count) || off < 0 ||
        count < 0 || !sn || !JSON_NODE_HOLDS_ARRAY(sn) || !rn || !JSON_NODE_HOLDS_ARRAY(rn) ||
        off > (gint64)(plen / es) || count > (gint64)(plen / es) - off)
      return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: tensor entry %u is malformed", path, i);
    g_autoptr(REntry) re = g_new0(REntry, 1);
    JsonArray *shape = json_node_get_array(sn), *runs = json_node_get_array(rn);
    re->ndim = (int)json_array_get_length(shape);
    if (re->ndim < 1 || re->ndim > 2)
      return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: tensor %s has %d dimensions", path, name, re->ndim);
    re->shape[1] = 1;
    for (int k = 0; k < re->ndim; k++) {
      re->shape[k] = json_array_get_int_element(shape, (guint)k);
      /* bounded so that the element count below cannot overflow */
      if (re->shape[k] < 0 || re->shape[k] > G_MAXINT32)
        return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: tensor %s: a dimension of %" G_GINT64_FORMAT,
                    path, name, re->shape[k]);
    }
    re->n_runs = (int)json_array_get_length(runs);
    re->runs = g_new(gint64, 2 * (gsize)MAX(1, re->n_runs));
    gint64 sum = 0, numel = re->shape[0] * re->shape[1];
    for (int k = 0; k < re->n_runs; k++) {
      JsonNode *pn = json_array_get_element(runs, (guint)k);
      JsonArray *pair = JSON_NODE_HOLDS_ARRAY(pn) ? json_node_get_array(pn) : NULL;
      if (!pair || json_array_get_length(pair) != 2)
        return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: tensor %s: malformed run", path, name);
      re->runs[2 * k] = json_array_get_int_element(pair, 0);
      re->runs[2 * k + 1] = json_array_get_int_element(pair, 1);
      if (re->runs[2 * k] < 0 || re->runs[2 * k + 1] < 0 || re->runs[2 * k] + re->runs[2 * k + 1] > numel)
        return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: tensor %s: a run outside its shape", path, name);
      sum += re->runs[2 * k + 1];
    }
    if (sum != count)
      return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s: tensor %s: runs hold %" G_GINT64_FORMAT
                  " elements, count says %" G_GINT64_FORMAT, path, name, sum, count);
    re->file = path;
    re->data = payload + (gsize)off * es;
    re->count = count;
    char *key = g_strdup_printf("%s\t%s", state, name);
    GPtrArray *list = g_hash_table_lookup(rd->entries, key);
    if (!list) {
      list = g_ptr_array_new_with_free_func(rentry_free);
      g_hash_table_insert(rd->entries, key, list);
    } else {
      g_free(key);
    }
    g_ptr_array_add(list, g_steal_pointer(&re));
  }
  return TRUE;
}

PxCkptReader *px_ckpt_reader_open(const char *stepdir, const PxCkptManifest *man, GError **error) {
  g_autoptr(PxCkptReader) rd = g_new0(PxCkptReader, 1);
  rd->stepdir = g_strdup(stepdir);
  rd->bufs = g_ptr_array_new_with_free_func(g_free);
  rd->paths = g_ptr_array_new_with_free_func(g_free);
  rd->entries = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_ptr_array_unref);
  rd->dense = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, dense_free);
  for (int i = 0; i < man->n_files; i++) {
    const PxCkptFile *f = &man->files[i];
    char *path = g_build_filename(stepdir, f->file, NULL);
    g_ptr_array_add(rd->paths, path);
    char *buf = NULL;
    gsize len = 0;
    GStatBuf st;
    if (g_stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
      /* before reading: a shard that is a device (/dev/zero) was read without end */
      fail(error, PX_CHECKPOINT_ERROR_CORRUPT, "checkpoint %s: not a regular file (listed in %s)", path,
           PX_CKPT_MANIFEST);
      return NULL;
    }
    if (!g_file_get_contents(path, &buf, &len, NULL)) {
      fail(error, PX_CHECKPOINT_ERROR_IO, "checkpoint %s: %s (listed in %s)",
           path, g_file_test(path, G_FILE_TEST_EXISTS) ? "cannot be read" : "missing", PX_CKPT_MANIFEST);
      return NULL;
    }
    g_ptr_array_add(rd->bufs, buf);
    if (len != f->bytes) {
      fail(error, PX_CHECKPOINT_ERROR_CORRUPT, "checkpoint %s: %" G_GSIZE_FORMAT " bytes, %s says %" G_GUINT64_FORMAT
           " (truncated or corrupt)", path, len, PX_CKPT_MANIFEST, f->bytes);
      return NULL;
    }
    g_autofree char *sha = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)buf, len);
    if (g_ascii_strcasecmp(sha, f->sha256)) {
      fail(error, PX_CHECKPOINT_ERROR_CORRUPT, "checkpoint %s: SHA-256 %s, %s says %s (the file is corrupt)", path,
           sha, PX_CKPT_MANIFEST, f->sha256);
      return NULL;
    }
    if (!index_shard(rd, path, (const guchar *)buf, len, i == 0, f->rank, man->step, error)) return NULL;
  }
  return g_steal_pointer(&rd);
}

static char *shape_str(int ndim, const gint64 *shape) {
  return ndim == 2 ? g_strdup_printf("[%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]", shape[0], shape[1])
                   : g_strdup_printf("[%" G_GINT64_FORMAT "]", shape[0]);
}

gboolean px_ckpt_reader_get(PxCkptReader *rd, const char *state, const char *name, int ndim, const gint64 *shape,
                            const gint64 *gidx, gint64 n, double *out, GError **error) {
  g_autofree char *key = g_strdup_printf("%s\t%s", state, name);
  gint64 want[2] = {shape[0], ndim == 2 ? shape[1] : 1};
  Dense *d = g_hash_table_lookup(rd->dense, key);
  if (!d) {
    GPtrArray *list = g_hash_table_lookup(rd->entries, key);
    if (!list)
      return fail(error, PX_CHECKPOINT_ERROR_FORMAT, "checkpoint %s holds no %s of tensor %s", rd->stepdir, state, name);
    gsize es = px_dtype_size(rd->dtype);
    d = g_new0(Dense, 1);
    d->numel = want[0] * want[1];
    d->v = g_new0(double, d->numel);
    d->have = g_new0(guint8, d->numel);
    for (guint i = 0; i < list->len; i++) {
      const REntry *e = g_ptr_array_index(list, i);
      if (e->ndim != ndim || e->shape[0] != want[0] || e->shape[1] != want[1]) {
        g_autofree char *a = shape_str(e->ndim, e->shape), *b = shape_str(ndim, want);
        dense_free(d);
        return fail(error, PX_CHECKPOINT_ERROR_MISMATCH, "checkpoint %s: tensor %s has shape %s there, %s here",
                    e->file, name, a, b);
      }
      const guchar *p = e->data;
      for (int k = 0; k < e->n_runs; k++)
        for (gint64 j = 0; j < e->runs[2 * k + 1]; j++, p += es) {
          gint64 g = e->runs[2 * k] + j;
          d->v[g] = decode(rd->dtype, p);
          d->have[g] = 1;
          /* a step is saved only when its loss and gradient norm were finite: a NaN here was
           * resumed silently and stopped the next step, blaming the learning rate */
          if (!isfinite(d->v[g])) {
            double v = d->v[g];
            dense_free(d);
            return fail(error, PX_CHECKPOINT_ERROR_FORMAT,
                        "checkpoint %s: element %" G_GINT64_FORMAT " of %s of tensor %s is %g, not a finite number "
                        "(corrupt: a checkpoint is saved only after finite steps)", e->file, g, state, name, v);
          }
        }
    }
    g_hash_table_insert(rd->dense, g_strdup(key), d);
  }
  for (gint64 i = 0; i < n; i++) {
    if (gidx[i] < 0 || gidx[i] >= d->numel || !d->have[gidx[i]])
      return fail(error, PX_CHECKPOINT_ERROR_FORMAT,
                  "checkpoint %s: no shard holds element %" G_GINT64_FORMAT " of %s of tensor %s", rd->stepdir,
                  gidx[i], state, name);
    out[i] = d->v[gidx[i]];
  }
  return TRUE;
}
