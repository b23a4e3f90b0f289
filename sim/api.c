/* api.c — see api.h. */
#include "api.h"
#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "commands.h"
#include "report.h"

static GMutex api_lock;

const char *px_api_version(void) { return "0.1"; }

void px_api_free(char *p) { g_free(p); }

/* argv from the JSON array; NULL with *error when it is not an array of strings. */
static GPtrArray *parse_args(const char *args_json, char **error) {
  g_autoptr(JsonParser) parser = json_parser_new();
  JsonNode *root = NULL;
  if (!args_json || !json_parser_load_from_data(parser, args_json, -1, NULL) ||
      !(root = json_parser_get_root(parser)) || !JSON_NODE_HOLDS_ARRAY(root)) {
    *error = g_strdup("parallax: the arguments are not a JSON array of strings");
    return NULL;
  }
  JsonArray *a = json_node_get_array(root);
  GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
  g_ptr_array_add(argv, g_strdup("parallax-sim"));
  for (guint i = 0; i < json_array_get_length(a); i++) {
    JsonNode *n = json_array_get_element(a, i);
    if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) {
      *error = g_strdup("parallax: the arguments are not a JSON array of strings");
      g_ptr_array_free(argv, TRUE);
      return NULL;
    }
    g_ptr_array_add(argv, g_strdup(json_node_get_string(n)));
  }
  return argv;
}

/* The last non-empty line of what the command wrote to stderr. */
static char *last_line(const char *text) {
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (int i = (int)g_strv_length(lines) - 1; i >= 0; i--)
    if (*g_strstrip(lines[i])) return g_strdup(lines[i]);
  return NULL;
}

char *px_api_run_json(const char *args_json, char **error) {
  *error = NULL;
  g_autoptr(GPtrArray) argv = parse_args(args_json, error);
  if (!argv) return NULL;
  if (argv->len < 2) {
    *error = g_strdup("parallax: no command given");
    return NULL;
  }
  /* GOptionContext answers --help by printing and exiting the process */
  for (guint i = 1; i < argv->len; i++) {
    const char *a = argv->pdata[i];
    if (g_str_has_prefix(a, "--help") || !strcmp(a, "-h") || !strcmp(a, "-?")) {
      *error = g_strdup_printf("parallax: %s is not available here (run parallax-sim %s --help)", a,
                               (char *)argv->pdata[1]);
      return NULL;
    }
  }
  /* GOptionContext may permute argv: keep the strings to free in argv, hand a copy */
  g_autofree char **args = g_new0(char *, argv->len + 1);
  memcpy(args, argv->pdata, argv->len * sizeof(char *));
  g_mutex_lock(&api_lock);
  GString *out = g_string_new(NULL);
  GString *old_sink = px_report_set_json_sink(out);
  /* capture stderr: the CLI's one-line errors are the exceptions' messages */
  fflush(stdout);
  fflush(stderr);
  FILE *cap = tmpfile();
  int saved = cap ? dup(STDERR_FILENO) : -1;
  if (saved >= 0) dup2(fileno(cap), STDERR_FILENO);
  gsize n;
  const PxCommand *commands = px_sim_commands(&n);
  int rc = px_command_main("parallax-sim", commands, n, (int)argv->len, args);
  fflush(stdout);
  fflush(stderr);
  g_autofree char *captured = NULL;
  if (saved >= 0) {
    dup2(saved, STDERR_FILENO);
    close(saved);
    long len = ftell(cap);
    captured = g_malloc0(len > 0 ? (gsize)len + 1 : 1);
    rewind(cap);
    if (len > 0 && fread(captured, 1, (size_t)len, cap) != (size_t)len) captured[0] = 0;
  }
  if (cap) fclose(cap);
  px_report_set_json_sink(old_sink);
  g_mutex_unlock(&api_lock);
  if (rc != 0 || out->len == 0) {
    char *line = captured ? last_line(captured) : NULL;
    if (!line)
      line = rc != 0 ? g_strdup_printf("parallax-sim %s: failed (exit status %d)", (char *)argv->pdata[1], rc)
                     : g_strdup_printf("parallax-sim %s: printed no JSON (pass json)", (char *)argv->pdata[1]);
    *error = line;
    g_string_free(out, TRUE);
    return NULL;
  }
  if (captured && *captured) fputs(captured, stderr);
  return g_string_free(out, FALSE);
}
