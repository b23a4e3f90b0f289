/* cmd_presets.c — `parallax-sim models` and `parallax-sim clusters`: the
 * presets under configs/ with their shapes and datasheet figures, as a table
 * or one JSON array. */
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>
#include "cluster.h"
#include "commands.h"
#include "config.h"
#include "model.h"
#include "options.h"
#include "report.h"

static GPtrArray *preset_names(const char *kind) {
  g_autofree char *list = px_config_list_presets(kind);
  g_auto(GStrv) names = g_strsplit(list, ", ", -1);
  GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
  for (char **n = names; *n; n++)
    if (**n && g_strcmp0(*n, "(none)")) g_ptr_array_add(a, g_strdup(*n));
  return a;
}

static int list_models(gboolean json) {
  g_autoptr(GPtrArray) names = preset_names("models");
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_array(b);
  int w = 5; /* the name column: as wide as the longest preset name */
  for (guint i = 0; i < names->len; i++) w = MAX(w, (int)strlen(names->pdata[i]));
  if (!json)
    printf("%-*s %12s %7s %7s %6s %4s %7s %7s %8s %-7s %s\n", w, "model", "parameters", "layers", "hidden", "heads",
           "kv", "ffn", "vocab", "max_seq", "act", "norm");
  for (guint i = 0; i < names->len; i++) {
    g_autoptr(GError) error = NULL;
    g_autoptr(PxModel) m = px_model_load(names->pdata[i], &error);
    if (!m) return px_cli_fail("parallax-sim models", error);
    const PxModelDesc *d = &m->desc;
    if (!json) {
      g_autofree char *pc = px_format_count((double)m->params);
      printf("%-*s %12s %7d %7d %6d %4d %7d %7d %8d %-7s %s\n", w, (char *)names->pdata[i], pc, d->layers, d->hidden,
             d->heads, d->kv_heads, d->ffn, d->vocab, d->max_seq, px_ffn_kind_name(d->ffn_kind),
             px_norm_kind_name(d->norm));
      continue;
    }
    json_builder_begin_object(b);
    px_json_member_string(b, "preset", names->pdata[i]);
    px_json_member_string(b, "name", d->name);
    px_json_member_int(b, "parameters", m->params);
    struct { const char *k; int v; } ints[] = {{"layers", d->layers}, {"hidden", d->hidden}, {"heads", d->heads},
                                               {"kv_heads", d->kv_heads}, {"ffn", d->ffn}, {"vocab", d->vocab},
                                               {"max_seq", d->max_seq}};
    for (gsize k = 0; k < G_N_ELEMENTS(ints); k++) px_json_member_int(b, ints[k].k, ints[k].v);
    px_json_member_string(b, "ffn_kind", px_ffn_kind_name(d->ffn_kind));
    px_json_member_string(b, "norm", px_norm_kind_name(d->norm));
    px_json_member_bool(b, "tied", d->tied);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  if (json) px_report_print_json(b);
  return 0;
}

static int list_clusters(gboolean json) {
  g_autoptr(GPtrArray) names = preset_names("clusters");
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_array(b);
  if (!json)
    printf("%-14s %-18s %9s %14s %12s %16s %16s\n", "cluster", "GPU", "GPUs/node", "memory GB", "bf16 TFLOP/s",
           "NVLink GB/s", "network GB/s");
  for (guint i = 0; i < names->len; i++) {
    g_autoptr(GError) error = NULL;
    g_autoptr(PxCluster) c = px_cluster_load(names->pdata[i], &error);
    if (!c) return px_cli_fail("parallax-sim clusters", error);
    if (!json) {
      printf("%-14s %-18s %9d %14.1f %12.1f %16.0f %16.0f\n", (char *)names->pdata[i], c->gpu, c->gpus_per_node,
             c->gpu_memory / 1e9, c->peak_bf16 / 1e12, c->intra_bw / 1e9, c->inter_bw / 1e9);
      continue;
    }
    json_builder_begin_object(b);
    px_json_member_string(b, "preset", names->pdata[i]);
    px_json_member_string(b, "name", c->name);
    px_json_member_string(b, "gpu", c->gpu);
    px_json_member_int(b, "gpus_per_node", c->gpus_per_node);
    px_json_member_int(b, "gpu_memory_bytes", c->gpu_memory);
    struct { const char *k; double v; } ds[] = {
      {"peak_fp32_flops", c->peak_fp32}, {"peak_tf32_flops", c->peak_tf32}, {"peak_fp16_flops", c->peak_fp16},
      {"peak_bf16_flops", c->peak_bf16}, {"hbm_bytes_per_s", c->hbm_bw}, {"intra_node_bytes_per_s", c->intra_bw},
      {"intra_node_latency_s", c->intra_lat}, {"inter_node_bytes_per_s", c->inter_bw},
      {"inter_node_latency_s", c->inter_lat}, {"pcie_bytes_per_s", c->pcie_bw}};
    for (gsize k = 0; k < G_N_ELEMENTS(ds); k++) px_json_member_double(b, ds[k].k, ds[k].v);
    px_json_member_int(b, "host_memory_bytes", c->host_memory);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  if (json) px_report_print_json(b);
  return 0;
}

int px_cmd_models(int argc, char **argv) {
  gboolean json = FALSE;
  GOptionEntry entries[] = {{"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print one JSON array", NULL}, {NULL}};
  if (!px_parse_command_line("parallax-sim models", "the model presets", entries, NULL, &argc, &argv)) return 2;
  return list_models(json);
}

int px_cmd_clusters(int argc, char **argv) {
  gboolean json = FALSE;
  GOptionEntry entries[] = {{"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print one JSON array", NULL}, {NULL}};
  if (!px_parse_command_line("parallax-sim clusters", "the cluster presets", entries, NULL, &argc, &argv)) return 2;
  return list_clusters(json);
}
