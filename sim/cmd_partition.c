/* cmd_partition.c — `parallax-sim partition`: split a raw weight list into
 * stages the way DeepSpeed's PipelineModule would (or optimally), and print
 * DeepSpeed's "parts" list with each stage's items and weight sum. */
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "options.h"
#include "report.h"
#include "partition.h"

#define CMD "parallax-sim partition"

/* Bad input: one line on stderr, exit 2. */
static int bad_input(GError *error) {
  px_cli_fail(CMD, error);
  return 2;
}

/* Whole numbers print without a fraction, others with 12 significant digits. */
static gboolean is_whole(double v) { return fabs(v) < 9007199254740992.0 && v == floor(v); }

static void print_number(GString *out, double v) {
  if (is_whole(v)) g_string_append_printf(out, "%.0f", v);
  else g_string_append_printf(out, "%.12g", v);
}

static void json_add_number(JsonBuilder *b, double v) {
  if (is_whole(v)) json_builder_add_int_value(b, (gint64)v);
  else json_builder_add_double_value(b, v);
}

static char *render_json(const char *method, const int *parts, const double *sums, int stages,
                         double max, double min) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  px_json_member_string(b, "method", method);
  json_builder_set_member_name(b, "parts");
  json_builder_begin_array(b);
  for (int k = 0; k <= stages; k++) json_builder_add_int_value(b, parts[k]);
  json_builder_end_array(b);
  json_builder_set_member_name(b, "sums");
  json_builder_begin_array(b);
  for (int k = 0; k < stages; k++) json_add_number(b, sums[k]);
  json_builder_end_array(b);
  json_builder_set_member_name(b, "max");
  json_add_number(b, max);
  json_builder_set_member_name(b, "min");
  json_add_number(b, min);
  json_builder_end_object(b);
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  return json_to_string(root, FALSE);
}

static char *render_text(const char *method, const int *parts, const double *sums, int stages,
                         double max, double min) {
  GString *out = g_string_new(NULL);
  g_string_append_printf(out, "method: %s\nparts: [", method);
  for (int k = 0; k <= stages; k++) g_string_append_printf(out, "%s%d", k ? ", " : "", parts[k]);
  g_string_append(out, "]\n");
  for (int k = 0; k < stages; k++) {
    int count = parts[k + 1] - parts[k];
    g_string_append_printf(out, "stage %d: ", k);
    if (count > 0) g_string_append_printf(out, "items %d..%d (%d)  sum ", parts[k], parts[k + 1] - 1, count);
    else g_string_append(out, "no items (0)  sum ");
    print_number(out, sums[k]);
    g_string_append_c(out, '\n');
  }
  g_string_append(out, "max ");
  print_number(out, max);
  g_string_append(out, "  min ");
  print_number(out, min);
  g_string_append(out, "  max-min ");
  print_number(out, max - min);
  g_string_append_c(out, '\n');
  return g_string_free(out, FALSE);
}

int px_cmd_partition(int argc, char **argv) {
  g_autofree char *weights_arg = NULL, *method = NULL;
  int stages = 1;
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    {"weights", 'w', 0, G_OPTION_ARG_STRING, &weights_arg, "comma-separated item weights, e.g. 3,1,4,1,5", "LIST"},
    {"stages", 's', 0, G_OPTION_ARG_INT, &stages, "number of parts (default 1)", "N"},
    {"method", 'm', 0, G_OPTION_ARG_STRING, &method,
     "parameters (DeepSpeed partition_balanced, the default), uniform (partition_uniform "
     "over the item count) or optimal (least heaviest part)", "M"},
    {"json", 0, 0, G_OPTION_ARG_NONE, &json, "print {\"method\", \"parts\", \"sums\", \"max\", \"min\"} as JSON", NULL},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
  };
  if (!px_parse_command_line(CMD, "split a weight list into pipeline stages", entries, NULL, &argc, &argv))
    return 2;
  g_autoptr(GError) error = NULL;
  if (!weights_arg)
    g_set_error(&error, PX_PARTITION_ERROR, PX_PARTITION_ERROR_PARSE,
                "missing --weights (e.g. --weights 3,1,4,1,5,9,2,6)");
  else if (stages < 1)
    g_set_error(&error, PX_PARTITION_ERROR, PX_PARTITION_ERROR_PARSE, "--stages %d must be at least 1", stages);
  if (error) return bad_input(error);
  if (!method) method = g_strdup("parameters");

  int n = 0;
  g_autofree double *w = px_partition_parse_weights(weights_arg, &n, &error);
  if (!w) return bad_input(error);

  /* the dynamic programs keep (n+1)·(stages+1) cells */
  if (n > stages && (double)(n + 1) * (stages + 1) > 5e7) {
    g_set_error(&error, PX_PARTITION_ERROR, PX_PARTITION_ERROR_PARSE,
                "%d weights over %d stages is too large (at most 5e7 = (weights+1)*(stages+1))", n, stages);
    return bad_input(error);
  }
  if (stages > (1 << 20)) {
    g_set_error(&error, PX_PARTITION_ERROR, PX_PARTITION_ERROR_PARSE, "--stages %d is more than 2^20", stages);
    return bad_input(error);
  }

  g_autofree int *parts = NULL;
  if (!strcmp(method, "parameters")) parts = px_partition_balanced(w, n, stages);
  else if (!strcmp(method, "uniform")) parts = px_partition_uniform(n, stages);
  else if (!strcmp(method, "optimal")) parts = px_partition_optimal(w, n, stages);
  else {
    g_set_error(&error, PX_PARTITION_ERROR, PX_PARTITION_ERROR_METHOD,
                "unknown --method '%s' (parameters, uniform, optimal)", method);
    return bad_input(error);
  }

  g_autofree double *sums = g_new0(double, stages);
  double max = -INFINITY, min = INFINITY;
  for (int k = 0; k < stages; k++) {
    for (int i = parts[k]; i < parts[k + 1]; i++) sums[k] += w[i];
    max = MAX(max, sums[k]);
    min = MIN(min, sums[k]);
  }

  g_autofree char *out = json ? render_json(method, parts, sums, stages, max, min)
                              : render_text(method, parts, sums, stages, max, min);
  fputs(out, stdout);
  if (json) fputc('\n', stdout);
  return 0;
}
