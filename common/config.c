/* config.c — shared loading helpers (see config.h). */
#include "config.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <glib/gstdio.h>

const char *px_data_dir(void) {
  const char *env = g_getenv("PARALLAX_DATA_DIR");
  if (env && *env) return env;
#ifdef PX_INSTALL_DATA_DIR
  /* an installed binary whose source tree is gone: the installed copy */
  static gsize once;
  static const char *dir;
  if (g_once_init_enter(&once)) {
    g_autofree char *probe = g_build_filename(PX_DATA_DIR, "configs", NULL);
    dir = g_file_test(probe, G_FILE_TEST_IS_DIR) ? PX_DATA_DIR : PX_INSTALL_DATA_DIR;
    g_once_init_leave(&once, 1);
  }
  return dir;
#else
  return PX_DATA_DIR;
#endif
}

char *px_config_resolve(const char *kind, const char *name) {
  if (!name || !*name) return NULL;
  if (g_file_test(name, G_FILE_TEST_IS_REGULAR)) return g_strdup(name);
  g_autofree char *file = g_strconcat(name, ".ini", NULL);
  char *path = g_build_filename(px_data_dir(), "configs", kind, file, NULL);
  if (g_file_test(path, G_FILE_TEST_IS_REGULAR)) return path;
  g_free(path);
  return NULL;
}

static gint cmp_str(gconstpointer a, gconstpointer b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

char *px_config_list_presets(const char *kind) {
  g_autofree char *dir = g_build_filename(px_data_dir(), "configs", kind, NULL);
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  if (!d) return g_strdup("(none)");
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
  const char *n;
  while ((n = g_dir_read_name(d)))
    if (g_str_has_suffix(n, ".ini")) g_ptr_array_add(names, g_strndup(n, strlen(n) - 4));
  g_ptr_array_sort(names, cmp_str);
  g_ptr_array_add(names, NULL);
  return g_strjoinv(", ", (char **)names->pdata);
}

char *px_config_find(const char *kind, const char *label, const char *name, GQuark domain, int code,
                     GError **error) {
  char *path = px_config_resolve(kind, name);
  if (!path) {
    g_autofree char *presets = px_config_list_presets(kind);
    /* a name of any length stays one readable line */
    g_autofree char *shown = px_text_quote(name, 200); /* '%.200s' split a character; a newline made two lines */
    g_set_error(error, domain, code, "%s '%s' is neither a file nor a preset (presets: %s)", label, shown,
                presets);
  }
  return path;
}

char *px_config_read(const char *path, gsize *length, GQuark domain, int code, GError **error) {
  return px_file_read_max(path, PX_CONFIG_MAX_BYTES, "a configuration file", length, domain, code, error);
}

char *px_file_read_max(const char *path, gsize max, const char *what, gsize *length, GQuark domain, int code,
                       GError **error) {
  if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
    g_set_error(error, domain, code, "%s: is a directory, not a file", path);
    return NULL;
  }
  FILE *f = fopen(path, "rb");
  if (!f) {
    g_set_error(error, domain, code, "%s: %s", path, g_strerror(errno));
    return NULL;
  }
  GStatBuf st;
  if (fstat(fileno(f), &st) == 0 && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))) {
    /* /dev/zero, /dev/urandom: endless; read up to the limit they would fill memory first */
    fclose(f);
    g_set_error(error, domain, code, "%s: is a device, not a file", path);
    return NULL;
  }
  gsize cap = 4096, n = 0;
  char *buf = g_malloc(cap + 1);
  for (;;) {
    if (n == cap) {
      if (cap > max) break;
      cap = MIN(cap * 2, max + 1);
      buf = g_realloc(buf, cap + 1);
    }
    gsize got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  gboolean failed = ferror(f);
  fclose(f);
  if (failed) {
    g_set_error(error, domain, code, "%s: read error", path);
    g_free(buf);
    return NULL;
  }
  if (n > max) {
    g_set_error(error, domain, code, "%s: larger than %" G_GSIZE_FORMAT " bytes, too large for %s", path, max, what);
    g_free(buf);
    return NULL;
  }
  buf[n] = '\0';
  *length = n;
  return buf;
}

/* What GKeyFile accepts silently: a key given twice in a group (the last
 * won, also across a repeated [group]) and a localized key ("dp[de] = 4",
 * never read). One pass over the lines GKeyFile will parse. */
static gboolean keyfile_lint(const char *path, const char *text, GQuark domain, int code, GError **error) {
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  g_autofree char *group = g_strdup("");
  for (int i = 0; lines[i]; i++) {
    char *l = g_strstrip(lines[i]);
    if (!*l || *l == '#') continue;
    if (*l == '[') {
      char *close = strchr(l, ']');
      g_free(group);
      group = close ? g_strndup(l + 1, (gsize)(close - l - 1)) : g_strdup(l + 1);
      continue;
    }
    char *eq = strchr(l, '=');
    if (!eq) continue; /* GKeyFile refuses it */
    *eq = '\0';
    char *key = g_strstrip(l);
    if (strchr(key, '[')) {
      g_set_error(error, domain, code, "%s: line %d: [%s] %s is a localized key, which is not read", path, i + 1,
                  group, key);
      return FALSE;
    }
    char *id = g_strdup_printf("%s\x1f%s", group, key);
    gpointer first = g_hash_table_lookup(seen, id);
    if (first) {
      g_set_error(error, domain, code, "%s: line %d: [%s] %s is given twice (first on line %d)", path, i + 1, group,
                  key, GPOINTER_TO_INT(first));
      g_free(id);
      return FALSE;
    }
    g_hash_table_insert(seen, id, GINT_TO_POINTER(i + 1));
  }
  return TRUE;
}

GKeyFile *px_config_load_keyfile(const char *path, GQuark domain, int parse_code, GError **error) {
  gsize len;
  g_autofree char *text = px_config_read(path, &len, domain, parse_code, error);
  if (!text) return NULL;
  if (strlen(text) == len && !keyfile_lint(path, text, domain, parse_code, error)) return NULL;
  g_autoptr(GKeyFile) kf = g_key_file_new();
  g_autoptr(GError) e = NULL;
  if (!g_key_file_load_from_data(kf, text, len, G_KEY_FILE_NONE, &e)) {
    g_set_error(error, domain, parse_code, "%s: %s", path, e->message);
    return NULL;
  }
  return g_steal_pointer(&kf);
}

/* Shared prologue of the typed getters: the stripped raw value in *raw, or
 * NULL when the key is absent and optional; FALSE when absent and required. */
static gboolean raw_value(GKeyFile *kf, const char *path, const char *group, const char *key,
                          gboolean optional, char **raw, GQuark domain, int code, GError **error) {
  *raw = NULL;
  if (!g_key_file_has_key(kf, group, key, NULL)) {
    if (optional) return TRUE;
    g_set_error(error, domain, code, "%s: [%s] %s is missing", path, group, key);
    return FALSE;
  }
  *raw = g_strstrip(g_key_file_get_value(kf, group, key, NULL));
  /* every message below names the value: one of 900 kB made a line of 900 kB */
  gsize len = strlen(*raw);
  if (len > PX_CONFIG_MAX_VALUE) {
    g_autofree char *head = px_text_clip(*raw, (gssize)len, 64);
    g_set_error(error, domain, code, "%s: [%s] %s = '%s' is %" G_GSIZE_FORMAT " bytes long, more than %d",
                path, group, key, head, len, PX_CONFIG_MAX_VALUE);
    g_clear_pointer(raw, g_free);
    return FALSE;
  }
  return TRUE;
}

gboolean px_config_get_int(GKeyFile *kf, const char *path, const char *group, const char *key,
                           gboolean optional, gint64 def, gint64 min, gint64 *out,
                           GQuark domain, int code, GError **error) {
  g_autofree char *raw = NULL;
  if (!raw_value(kf, path, group, key, optional, &raw, domain, code, error)) return FALSE;
  if (!raw) { *out = def; return TRUE; }
  double v;
  /* Accept plain integers and exact suffixed counts ("4M"). */
  char *end = NULL;
  errno = 0;
  gint64 iv = g_ascii_strtoll(raw, &end, 10);
  if (*raw && end && *end == '\0' && errno == 0) {
    v = (double)iv;
  } else if (!px_parse_count(raw, &v) || v != floor(v)) {
    g_set_error(error, domain, code, "%s: [%s] %s = '%s' is not an integer", path, group, key, raw);
    return FALSE;
  } else if (fabs(v) >= 9e18) { /* beyond gint64 (found by scripts/fuzz.sh) */
    g_set_error(error, domain, code, "%s: [%s] %s = '%s' is too large", path, group, key, raw);
    return FALSE;
  } else {
    iv = (gint64)v;
  }
  if (iv < min) {
    g_set_error(error, domain, code, "%s: [%s] %s = %" G_GINT64_FORMAT " must be at least %" G_GINT64_FORMAT,
                path, group, key, iv, min);
    return FALSE;
  }
  *out = iv;
  return TRUE;
}

/* Narrow a checked gint64 to int, naming where it came from. */
static gboolean narrow_int(gint64 v, int *out, const char *path, const char *where, GQuark domain, int code,
                           GError **error) {
  if (v > G_MAXINT) {
    g_set_error(error, domain, code, "%s: %s = %" G_GINT64_FORMAT " is too large", path, where, v);
    return FALSE;
  }
  *out = (int)v;
  return TRUE;
}

gboolean px_config_get_int32(GKeyFile *kf, const char *path, const char *group, const char *key,
                             gboolean optional, gint64 def, gint64 min, int *out,
                             GQuark domain, int code, GError **error) {
  gint64 v;
  g_autofree char *where = g_strdup_printf("[%s] %s", group, key);
  return px_config_get_int(kf, path, group, key, optional, def, min, &v, domain, code, error) &&
         narrow_int(v, out, path, where, domain, code, error);
}

gboolean px_config_get_double(GKeyFile *kf, const char *path, const char *group, const char *key,
                              gboolean optional, double def, double min, double *out,
                              GQuark domain, int code, GError **error) {
  g_autofree char *raw = NULL;
  if (!raw_value(kf, path, group, key, optional, &raw, domain, code, error)) return FALSE;
  if (!raw) { *out = def; return TRUE; }
  double v;
  if (!px_parse_count(raw, &v) || !isfinite(v)) {
    g_set_error(error, domain, code, "%s: [%s] %s = '%s' is not a number", path, group, key, raw);
    return FALSE;
  }
  if (v < min) {
    g_set_error(error, domain, code, "%s: [%s] %s = %g must be at least %g", path, group, key, v, min);
    return FALSE;
  }
  *out = v;
  return TRUE;
}

gboolean px_config_get_bool(GKeyFile *kf, const char *path, const char *group, const char *key,
                            gboolean def, gboolean *out, GQuark domain, int code, GError **error) {
  g_autofree char *raw = NULL;
  if (!raw_value(kf, path, group, key, TRUE, &raw, domain, code, error)) return FALSE;
  if (!raw) { *out = def; return TRUE; }
  g_autoptr(GError) e = NULL;
  gboolean v = g_key_file_get_boolean(kf, group, key, &e);
  if (e) {
    g_set_error(error, domain, code, "%s: [%s] %s = '%s' is not true or false", path, group, key, raw);
    return FALSE;
  }
  *out = v;
  return TRUE;
}

gboolean px_config_get_string(GKeyFile *kf, const char *path, const char *group, const char *key,
                              gboolean optional, char **out, GQuark domain, int code, GError **error) {
  return raw_value(kf, path, group, key, optional, out, domain, code, error);
}

static gboolean json_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* One pass over the text (config.h); comments are skipped as json-glib skips them. */
gboolean px_json_check(const char *path, const char *text, gsize len, gboolean strict, GQuark domain, int code,
                       GError **error) {
  GHashTable *names[PX_CONFIG_MAX_JSON_DEPTH + 1] = {NULL}; /* strict: member names of each open object */
  int depth = 0, line = 1;
  gboolean ok = TRUE, done = FALSE; /* done: the top-level value has ended */
  for (gsize i = 0; i < len && ok; i++) {
    char c = text[i];
    if (json_space(c)) {
      line += c == '\n';
      continue;
    }
    if (c == '/' && i + 1 < len && (text[i + 1] == '/' || text[i + 1] == '*')) { /* json-glib skips comments */
      gboolean block = text[i + 1] == '*';
      for (i += 2; i < len && !(block ? text[i] == '*' && i + 1 < len && text[i + 1] == '/' : text[i] == '\n'); i++)
        line += text[i] == '\n';
      if (block) i++;   /* onto the '/' */
      else line++;      /* past the '\n' */
      continue;
    }
    if (done && strict) {
      g_set_error(error, domain, code, "%s: line %d: text after the JSON value ends", path, line);
      ok = FALSE;
    } else if (c == '"') {
      gsize start = ++i;
      while (i < len && text[i] != '"') i += text[i] == '\\' ? 2 : 1;
      gsize end = MIN(i, len);
      /* every message naming a string repeated it whole: 500 kB made a line of 500 kB */
      if (strict && end - start > PX_CONFIG_MAX_JSON_STRING) {
        g_autofree char *head = px_text_clip(text + start, (gssize)(end - start), 64);
        g_set_error(error, domain, code, "%s: line %d: a string of %" G_GSIZE_FORMAT " bytes ('%s'), more than %d",
                    path, line, end - start, head, PX_CONFIG_MAX_JSON_STRING);
        ok = FALSE;
        continue;
      }
      gsize j = i + 1;
      while (j < len && json_space(text[j])) j++;
      if (names[depth] && j < len && text[j] == ':') { /* a member name */
        char *name = g_strndup(text + start, end - start);
        if (!g_hash_table_add(names[depth], name)) {
          g_set_error(error, domain, code, "%s: line %d: member \"%s\" is given twice in one object", path, line,
                      name);
          ok = FALSE;
        }
      }
      done = depth == 0;
    } else if (c == '{' || c == '[') {
      if (depth == PX_CONFIG_MAX_JSON_DEPTH) {
        g_set_error(error, domain, code, "%s: JSON nested deeper than %d levels", path, PX_CONFIG_MAX_JSON_DEPTH);
        ok = FALSE;
      } else {
        depth++;
        names[depth] = strict && c == '{' ? g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL) : NULL;
      }
    } else if (c == '}' || c == ']') {
      if (depth == 0) break; /* a close with nothing open: the parser names it */
      g_clear_pointer(&names[depth], g_hash_table_unref);
      done = --depth == 0;
    } else if (c == '-' || g_ascii_isdigit(c)) {
      gsize j = i + (c == '-'), digits = j;
      while (j < len && g_ascii_isdigit(text[j])) j++;
      gboolean integer = j > digits && !(j < len && (text[j] == '.' || text[j] == 'e' || text[j] == 'E'));
      if (strict && integer) {
        g_autofree char *num = g_strndup(text + i, j - i);
        errno = 0;
        g_ascii_strtoll(num, NULL, 10);
        if (errno == ERANGE) {
          g_set_error(error, domain, code, "%s: line %d: the integer %.64s%s is beyond 64 bits", path, line, num,
                      j - i > 64 ? "…" : "");
          ok = FALSE;
        }
      }
      while (j < len && strchr("0123456789.eE+-", text[j])) j++;
      i = j - 1;
      done = depth == 0;
    } else if (depth == 0 && (c == 't' || c == 'f' || c == 'n')) { /* true, false, null */
      while (i + 1 < len && g_ascii_isalpha(text[i + 1])) i++;
      done = TRUE;
    }
  }
  for (int d = 0; d <= PX_CONFIG_MAX_JSON_DEPTH; d++)
    if (names[d]) g_hash_table_unref(names[d]);
  return ok;
}

JsonParser *px_json_load_object(const char *path, JsonObject **root, GQuark domain, int parse_code,
                                GError **error) {
  gsize len;
  g_autofree char *text = px_config_read(path, &len, domain, parse_code, error);
  if (!text) return NULL;
  if (!px_json_check(path, text, len, TRUE, domain, parse_code, error)) return NULL;
  g_autoptr(JsonParser) parser = json_parser_new();
  g_autoptr(GError) e = NULL;
  if (!json_parser_load_from_data(parser, text, (gssize)len, &e)) {
    g_set_error(error, domain, parse_code, "%s: %s", path, e->message);
    return NULL;
  }
  JsonNode *node = json_parser_get_root(parser);
  if (!node || !JSON_NODE_HOLDS_OBJECT(node)) {
    g_set_error(error, domain, parse_code, "%s: the top level is not a JSON object", path);
    return NULL;
  }
  *root = json_node_get_object(node);
  return g_steal_pointer(&parser);
}

gboolean px_json_get_int(JsonObject *o, const char *path, const char *key, gboolean optional,
                         gint64 def, gint64 min, gint64 *out, GQuark domain, int code, GError **error) {
  JsonNode *n = json_object_get_member(o, key);
  if (!n || JSON_NODE_HOLDS_NULL(n)) {
    if (optional) { *out = def; return TRUE; }
    g_set_error(error, domain, code, "%s: \"%s\" is missing", path, key);
    return FALSE;
  }
  GType t = JSON_NODE_HOLDS_VALUE(n) ? json_node_get_value_type(n) : G_TYPE_INVALID;
  gint64 v;
  if (t == G_TYPE_INT64) {
    v = json_node_get_int(n);
  } else if (t == G_TYPE_DOUBLE && json_node_get_double(n) == floor(json_node_get_double(n)) &&
             fabs(json_node_get_double(n)) < 9e15) {
    v = (gint64)json_node_get_double(n);
  } else {
    g_set_error(error, domain, code, "%s: \"%s\" must be an integer", path, key);
    return FALSE;
  }
  if (v < min) {
    g_set_error(error, domain, code, "%s: \"%s\" = %" G_GINT64_FORMAT " must be at least %" G_GINT64_FORMAT,
                path, key, v, min);
    return FALSE;
  }
  *out = v;
  return TRUE;
}

gboolean px_json_get_int32(JsonObject *o, const char *path, const char *key, gboolean optional,
                           gint64 def, gint64 min, int *out, GQuark domain, int code, GError **error) {
  gint64 v;
  g_autofree char *where = g_strdup_printf("\"%s\"", key);
  return px_json_get_int(o, path, key, optional, def, min, &v, domain, code, error) &&
         narrow_int(v, out, path, where, domain, code, error);
}

/* Number followed by an optional suffix from a table of (suffix, factor). */
static gboolean parse_scaled(const char *s, const char *const *suffixes, const double *factors,
                             gsize n, double *out) {
  if (!s) return FALSE;
  while (g_ascii_isspace(*s)) s++;
  char *end = NULL;
  errno = 0;
  double v = g_ascii_strtod(s, &end);
  if (end == s || errno == ERANGE || !isfinite(v)) return FALSE;
  while (g_ascii_isspace(*end)) end++;
  if (*end == '\0') { *out = v; return TRUE; }
  for (gsize i = 0; i < n; i++)
    if (!g_ascii_strcasecmp(end, suffixes[i])) {
      *out = v * factors[i];
      return isfinite(*out);
    }
  return FALSE;
}

gboolean px_parse_bytes(const char *s, double *out) {
  static const char *const suf[] = {"B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"};
  static const double fac[] = {1, 1e3, 1e6, 1e9, 1e12, 1024.0, 1048576.0, 1073741824.0,
                               1099511627776.0};
  return parse_scaled(s, suf, fac, G_N_ELEMENTS(suf), out) && *out >= 0;
}

gboolean px_parse_count(const char *s, double *out) {
  static const char *const suf[] = {"k", "M", "G", "B", "T"};
  static const double fac[] = {1e3, 1e6, 1e9, 1e9, 1e12};
  return parse_scaled(s, suf, fac, G_N_ELEMENTS(suf), out);
}

PxOutPath px_output_path_check(const char *path) {
  /* "" passed the checks (its directory is ".") and failed in g_rename after the work */
  if (!*path) return PX_OUT_EMPTY;
  if (g_file_test(path, G_FILE_TEST_IS_DIR)) return PX_OUT_IS_DIR;
  g_autofree char *dir = g_path_get_dirname(path);
  if (g_file_test(dir, G_FILE_TEST_IS_DIR)) return PX_OUT_OK;
  return g_file_test(dir, G_FILE_TEST_EXISTS) ? PX_OUT_DIR_NOT_DIR : PX_OUT_NO_DIR;
}

const char *px_output_path_why(const char *path) {
  static const char *const whys[] = {[PX_OUT_OK] = NULL, [PX_OUT_IS_DIR] = "is a directory",
                                     [PX_OUT_NO_DIR] = "its directory does not exist",
                                     [PX_OUT_DIR_NOT_DIR] = "its directory is not a directory",
                                     [PX_OUT_EMPTY] = "the file name is empty"};
  return whys[px_output_path_check(path)];
}

char *px_output_flag_why(const char *flag, const char *path) {
  PxOutPath where = px_output_path_check(path);
  if (where == PX_OUT_OK) return NULL;
  const char *name = *path ? path : "''";
  if (where == PX_OUT_NO_DIR || where == PX_OUT_DIR_NOT_DIR) {
    g_autofree char *dir = g_path_get_dirname(path);
    return g_strdup_printf("%s %s: %s %s", flag, name, dir,
                           where == PX_OUT_DIR_NOT_DIR ? "is not a directory" : "does not exist");
  }
  return g_strdup_printf("%s %s: %s", flag, name, px_output_path_why(path));
}

gboolean px_output_dir_make(const char *dir, GQuark domain, int code, GError **error) {
  /* "" was "cannot create : Invalid argument"; a file in the way "Not a directory" */
  if (!*dir) {
    g_set_error(error, domain, code, "the directory name is empty");
    return FALSE;
  }
  if (g_file_test(dir, G_FILE_TEST_EXISTS) && !g_file_test(dir, G_FILE_TEST_IS_DIR)) {
    g_set_error(error, domain, code, "%s exists and is not a directory", dir);
    return FALSE;
  }
  if (g_mkdir_with_parents(dir, 0755) != 0) {
    g_set_error(error, domain, code, "cannot create %s: %s", dir, g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}

char *px_text_clip(const char *s, gssize len, gsize max) {
  gsize n = len < 0 ? strlen(s) : (gsize)len, cut = MIN(n, max);
  /* back off over continuation bytes (10xxxxxx) to the start of a character */
  if (cut < n)
    for (gsize k = 0; k < 3 && cut > 0 && ((guchar)s[cut] & 0xC0) == 0x80; k++) cut--;
  g_autofree char *valid = g_utf8_make_valid(s, (gssize)cut);
  return g_strconcat(valid, cut < n ? "…" : "", NULL);
}

char *px_text_quote(const char *s, gsize max) {
  g_autofree char *head = px_text_clip(s, -1, max);
  GString *out = g_string_new(NULL);
  for (const char *c = head; *c; c++) {
    if (!g_ascii_iscntrl(*c)) g_string_append_c(out, *c);
    else if (*c == '\n') g_string_append(out, "\\n");
    else if (*c == '\t') g_string_append(out, "\\t");
    else if (*c == '\r') g_string_append(out, "\\r");
    else g_string_append_printf(out, "\\%03o", (guchar)*c);
  }
  return g_string_free(out, FALSE);
}

gboolean px_text_is_line(const char *s) {
  if (!s || !*s || !g_utf8_validate(s, -1, NULL)) return FALSE;
  for (const char *c = s; *c; c++)
    if (g_ascii_iscntrl(*c)) return FALSE;
  return TRUE;
}

gboolean px_file_write(const char *path, const char *text, gsize len, GQuark domain, int code, GError **error) {
  const char *why = px_output_path_why(path);
  if (why && !*path) {
    g_set_error(error, domain, code, "'': %s", why);
    return FALSE;
  }
  if (why) {
    g_set_error(error, domain, code, "%s: %s", path, why);
    return FALSE;
  }
  g_autoptr(GError) e = NULL;
  if (!g_file_set_contents(path, text, (gssize)len, &e)) {
    g_set_error(error, domain, code, "%s", e->message);
    return FALSE;
  }
  return TRUE;
}
