/* config.h — helpers shared by the INI / JSON loaders of model, cluster and plan:
 * preset lookup and typed, range-checked key reading with one-line errors. */
#pragma once
#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* Directory holding configs/ and plots/: $PARALLAX_DATA_DIR, else the source
 * tree, else (installed, the tree gone) <prefix>/share/parallax. */
const char *px_data_dir(void);

/* Resolve NAME as a path if it names an existing file, else as
 * <data>/configs/<kind>/<NAME>.ini. NULL (not an error) if neither exists. */
char *px_config_resolve(const char *kind, const char *name);
/* "gpt2-124m, gpt2-355m, ..." of the presets of a kind, for error messages. */
char *px_config_list_presets(const char *kind);
/* px_config_resolve, or an error "LABEL 'NAME' is neither a file nor a preset
 * (presets: ...)" in domain/code. */
char *px_config_find(const char *kind, const char *label, const char *name, GQuark domain, int code,
                     GError **error);

/* Bounds on what a configuration file may hold. */
#define PX_CONFIG_MAX_BYTES (1 << 20)  /* 1 MiB: the largest real config.json is ~10 kB */
#define PX_CONFIG_MAX_JSON_DEPTH 32    /* nesting of JSON objects and arrays */
#define PX_CONFIG_MAX_VALUE 1024       /* characters of one INI value (a path, a list of 16 numbers) */
#define PX_CONFIG_MAX_JSON_STRING 4096 /* bytes of one JSON string (strict px_json_check; a checkpoint's run
                                          fingerprint holds a model name and a file name) */

/* Read a whole configuration file of at most PX_CONFIG_MAX_BYTES (reading
 * stops there: /dev/zero is refused, not read forever); NUL-terminated. */
char *px_config_read(const char *path, gsize *length, GQuark domain, int code, GError **error);
/* px_config_read with another limit: at most max bytes (what names the kind
 * of file in the refusal); directories and devices refused. */
char *px_file_read_max(const char *path, gsize max, const char *what, gsize *length, GQuark domain, int code,
                       GError **error);

/* Load a key file, mapping errors into (domain, parse_code) with the path named. */
GKeyFile *px_config_load_keyfile(const char *path, GQuark domain, int parse_code, GError **error);

/* Typed getters. A missing key yields *out = def and TRUE when optional;
 * a wrong type or a value below min gives "FILE: [group] key: ..." in domain/code. */
gboolean px_config_get_int(GKeyFile *kf, const char *path, const char *group, const char *key,
                           gboolean optional, gint64 def, gint64 min, gint64 *out,
                           GQuark domain, int code, GError **error);
/* The same into an int: values above G_MAXINT are refused too. */
gboolean px_config_get_int32(GKeyFile *kf, const char *path, const char *group, const char *key,
                             gboolean optional, gint64 def, gint64 min, int *out,
                             GQuark domain, int code, GError **error);
gboolean px_config_get_double(GKeyFile *kf, const char *path, const char *group, const char *key,
                              gboolean optional, double def, double min, double *out,
                              GQuark domain, int code, GError **error);
gboolean px_config_get_bool(GKeyFile *kf, const char *path, const char *group, const char *key,
                            gboolean def, gboolean *out, GQuark domain, int code, GError **error);
/* A string key (NULL if absent and optional). */
gboolean px_config_get_string(GKeyFile *kf, const char *path, const char *group, const char *key,
                              gboolean optional, char **out, GQuark domain, int code, GError **error);

/* What json-glib accepts silently or cannot survive, refused in one pass over
 * JSON text before it is parsed, in domain/code naming path: nesting deeper
 * than PX_CONFIG_MAX_JSON_DEPTH (json-glib's parser recurses: 100000 levels
 * overflowed the stack) and, when strict, a string of more than
 * PX_CONFIG_MAX_JSON_STRING bytes (messages repeat them), an integer beyond 64 bits (read
 * wrapped: 2^63 as -2^63, 10^20 as -1), a member given twice in one object
 * (the last won) and a second value after the first ({...} {...}: the first
 * was read). The first of these in the text is named; what is not JSON at all
 * is left to the parser. Not strict: profiler traces, written by tools
 * (Nsight Systems' export is one value a line). */
gboolean px_json_check(const char *path, const char *text, gsize len, gboolean strict, GQuark domain, int code,
                       GError **error);
/* JSON: parse a file whose root must be an object (px_json_check strict first). */
JsonParser *px_json_load_object(const char *path, JsonObject **root, GQuark domain, int parse_code,
                                GError **error);
/* Integer member (NULL key-list tried in order); wrong type or < min → error. */
gboolean px_json_get_int(JsonObject *o, const char *path, const char *key, gboolean optional,
                         gint64 def, gint64 min, gint64 *out, GQuark domain, int code, GError **error);

gboolean px_json_get_int32(JsonObject *o, const char *path, const char *key, gboolean optional,
                           gint64 def, gint64 min, int *out, GQuark domain, int code, GError **error);

/* Bytes with a unit: "80GB", "80 GiB", "1.5e9", "512MiB" → bytes. */
gboolean px_parse_bytes(const char *s, double *out);
/* Counts with suffixes: "4M" (1e6) "2T" "1.5k" → value. */
gboolean px_parse_count(const char *s, double *out);

/* Whether a file can be made at path, checked before the work that writes it:
 * PX_OUT_OK, or the path is empty, or a directory, or its directory is
 * missing or is not a directory. */
typedef enum { PX_OUT_OK, PX_OUT_IS_DIR, PX_OUT_NO_DIR, PX_OUT_DIR_NOT_DIR, PX_OUT_EMPTY } PxOutPath;
PxOutPath px_output_path_check(const char *path);
/* Why nothing can be written at path ("is a directory", "its directory does
 * not exist", ...), or NULL when it can. */
const char *px_output_path_why(const char *path);
/* The one line an output flag's unwritable path gets before the work, "FLAG
 * PATH: why" ('' for an empty name; a missing directory named), or NULL when
 * the file can be made. Free with g_free. */
char *px_output_flag_why(const char *flag, const char *path);
/* Make the output directory dir (and its parents) for the files written into
 * it (--emit's --out, --plot): an empty name and a path that exists and is
 * not a directory are named as such in domain/code, as is a failing mkdir. */
gboolean px_output_dir_make(const char *dir, GQuark domain, int code, GError **error);
/* The head of a text quoted in a message: at most max bytes of s (len bytes,
 * -1: up to its NUL), cut at a character boundary, invalid bytes replaced
 * (valid UTF-8), with "…" when cut. Free with g_free. */
char *px_text_clip(const char *s, gssize len, gsize max);
/* A value quoted in a message: px_text_clip's head of at most max bytes, its
 * control characters written as C escapes ("\n", "\t", "\033"), so that a
 * message stays one line of valid UTF-8. Free with g_free. */
char *px_text_quote(const char *s, gsize max);
/* Whether s is one line of text: non-empty valid UTF-8 without a control
 * character (a newline, tab, ESC, DEL). Names are written into reports and
 * launch files, where a newline in a comment starts a shell command. */
gboolean px_text_is_line(const char *s);
/* Write a whole file (g_file_set_contents): a path that is a directory, or
 * whose directory is missing, is named as such in domain/code ("PATH: is a
 * directory"), not as the temporary file g_file_set_contents renames. */
gboolean px_file_write(const char *path, const char *text, gsize len, GQuark domain, int code, GError **error);

G_END_DECLS
