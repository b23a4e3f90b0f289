/* cluster.c — cluster presets and INI loading. */
#include "cluster.h"

#include "config.h"
#include <math.h>
#include <stddef.h>
#include <string.h>

G_DEFINE_QUARK(px-cluster-error-quark, px_cluster_error)

const char *px_op_class_name(PxOpClass k) {
  static const char *names[PX_N_OPC] = {"norm", "act", "residual", "ce", "embedding"};
  return (unsigned)k < PX_N_OPC ? names[k] : "?";
}

/* A byte quantity with a unit ("81920MiB", "2TB") or plain bytes. */
static gboolean get_bytes(GKeyFile *kf, const char *path, const char *group, const char *key,
                          gboolean optional, double def, double *out, GError **error) {
  g_autofree char *raw = NULL;
  if (!px_config_get_string(kf, path, group, key, optional, &raw, PX_CLUSTER_ERROR,
                            PX_CLUSTER_ERROR_INVALID, error))
    return FALSE;
  if (!raw) { *out = def; return TRUE; }
  if (!px_parse_bytes(raw, out) || *out <= 0) {
    g_set_error(error, PX_CLUSTER_ERROR, PX_CLUSTER_ERROR_INVALID,
                "%s: [%s] %s = '%s' is not a positive size (e.g. 80GB, 81920MiB)", path, group, key, raw);
    return FALSE;
  }
  /* a memory of a few bytes is a size without its unit ("memory = 80" is
   * 80 B), not a device: refused rather than planned as out of memory */
  if (*out < 1048576) {
    g_set_error(error, PX_CLUSTER_ERROR, PX_CLUSTER_ERROR_INVALID,
                "%s: [%s] %s = '%s' is %.0f B, below 1 MiB: give the unit (e.g. 80GB, 81920MiB)", path, group, key,
                raw, *out);
    return FALSE;
  }
  return TRUE;
}

/* [group] busbw_curve_bytes and busbw_curve: two lists of equal length (at
 * most PX_BUSBW_POINTS), sizes ascending, every value finite and positive;
 * both absent: no curve. */
static gboolean load_curve(GKeyFile *kf, const char *path, const char *group, PxBusbwCurve *out, GError **error) {
  const GQuark D = PX_CLUSTER_ERROR;
  const int E = PX_CLUSTER_ERROR_INVALID;
  memset(out, 0, sizeof *out);
  gboolean has_b = g_key_file_has_key(kf, group, "busbw_curve_bytes", NULL);
  gboolean has_v = g_key_file_has_key(kf, group, "busbw_curve", NULL);
  if (!has_b && !has_v) return TRUE;
  if (has_b != has_v) {
    g_set_error(error, D, E, "%s: [%s] busbw_curve_bytes and busbw_curve go together (one is missing)", path, group);
    return FALSE;
  }
  gsize nb = 0, nv = 0;
  g_autoptr(GError) err = NULL;
  g_autofree double *b = g_key_file_get_double_list(kf, group, "busbw_curve_bytes", &nb, &err);
  g_autofree double *v = b ? g_key_file_get_double_list(kf, group, "busbw_curve", &nv, &err) : NULL;
  if (!b || !v) {
    g_set_error(error, D, E, "%s: [%s] busbw_curve: %s", path, group, err ? err->message : "not a list of numbers");
    return FALSE;
  }
  if (nb != nv || nb < 1 || nb > PX_BUSBW_POINTS) {
    g_set_error(error, D, E, "%s: [%s] busbw_curve_bytes has %" G_GSIZE_FORMAT " sizes and busbw_curve %" G_GSIZE_FORMAT
                " values (1 to %d each, as many)", path, group, nb, nv, PX_BUSBW_POINTS);
    return FALSE;
  }
  for (gsize i = 0; i < nb; i++) {
    if (!isfinite(b[i]) || !isfinite(v[i]) || b[i] <= 0 || v[i] <= 0 || (i > 0 && b[i] <= b[i - 1])) {
      g_set_error(error, D, E, "%s: [%s] busbw_curve point %" G_GSIZE_FORMAT " (%g B, %g B/s): sizes must ascend and "
                  "every value be a positive number", path, group, i + 1, b[i], v[i]);
      return FALSE;
    }
    out->bytes[i] = b[i];
    out->busbw[i] = v[i];
  }
  out->n = (int)nb;
  return TRUE;
}

/* [cluster] calibrated_dtype: absent (NULL), or f32, bf16 or f16 (fp32 and
 * fp16 read as f32 and f16), kept in that canonical spelling. */
static gboolean load_calibrated_dtype(GKeyFile *kf, const char *path, char **out, GError **error) {
  static const char *names[][2] = {{"f32", "f32"}, {"fp32", "f32"}, {"bf16", "bf16"}, {"f16", "f16"}, {"fp16", "f16"}};
  g_autofree char *raw = NULL;
  *out = NULL;
  if (!px_config_get_string(kf, path, "cluster", "calibrated_dtype", TRUE, &raw, PX_CLUSTER_ERROR,
                            PX_CLUSTER_ERROR_INVALID, error))
    return FALSE;
  if (!raw) return TRUE;
  for (gsize i = 0; i < G_N_ELEMENTS(names); i++)
    if (!g_ascii_strcasecmp(raw, names[i][0])) {
      *out = g_strdup(names[i][1]);
      return TRUE;
    }
  g_set_error(error, PX_CLUSTER_ERROR, PX_CLUSTER_ERROR_INVALID,
              "%s: [cluster] calibrated_dtype = '%s' is not f32, bf16 or f16", path, raw);
  return FALSE;
}

/* Every group and key px_cluster_load_ini reads (NULL-separated groups)
 * but the achieved rates (rate_keys, below) and the per-class
 * membound_bw_CLASS_fwd/_bwd keys, which known_key matches too. */
static const char *const ini_keys[] = {
  "[cluster]", "name", "nodes", "calibrated_dtype",
  "[gpu]", "name", "memory", "peak_fp32", "peak_tf32", "peak_bf16", "peak_fp16", "peak_fp8", "hbm_bw",
  "membound_bw_optimizer", "attention_fwd_flops", "attention_bwd_flops", "gemm_k_overhead", "flash_seq_half",
  "gemm_persistent", "sms", "gemm_tile",
  "[node]", "gpus", "bandwidth", "latency", "p2p_latency", "pcie_bw", "cpu_adam_rate", "host_memory",
  "collective_sms", "collective_sms_intra", "busbw_curve_bytes", "busbw_curve",
  "[network]", "bandwidth", "latency", NULL};

/* The achieved rates (fractions of a nominal figure, 0..1; optional, 0 =
 * ideal, cluster.h): the one list the loader reads them from and the key
 * check accepts them by. */
static const struct {
  const char *group, *key;
  size_t offset; /* of the double in PxCluster */
} rate_keys[] = {
  {"gpu", "gemm_efficiency", offsetof(PxCluster, gemm_eff)},
  {"gpu", "hbm_efficiency", offsetof(PxCluster, hbm_eff)},
  {"gpu", "flash_fwd_efficiency", offsetof(PxCluster, flash_fwd_eff)},
  {"gpu", "flash_bwd_efficiency", offsetof(PxCluster, flash_bwd_eff)},
  {"gpu", "unfused_attention_efficiency", offsetof(PxCluster, unfused_attn_eff)},
  {"gpu", "kernel_overhead", offsetof(PxCluster, kernel_overhead)},
  {"node", "busbw_efficiency", offsetof(PxCluster, intra_eff)},
  {"network", "busbw_efficiency", offsetof(PxCluster, inter_eff)},
  {"gpu", "gemm_efficiency_fp8", offsetof(PxCluster, gemm_eff_fp8)},
  {"gpu", "eager_layernorm_efficiency_fwd", offsetof(PxCluster, eager_ln_eff[0])},
  {"gpu", "eager_layernorm_efficiency_bwd", offsetof(PxCluster, eager_ln_eff[1])},
};

static gboolean known_key(const char *group, const char *key) {
  g_autofree char *bracketed = g_strdup_printf("[%s]", group);
  gboolean in_group = FALSE;
  for (int i = 0; ini_keys[i]; i++) {
    if (ini_keys[i][0] == '[') in_group = !strcmp(ini_keys[i], bracketed);
    else if (in_group && !strcmp(ini_keys[i], key)) return TRUE;
  }
  for (gsize i = 0; i < G_N_ELEMENTS(rate_keys); i++)
    if (!strcmp(rate_keys[i].group, group) && !strcmp(rate_keys[i].key, key)) return TRUE;
  if (!strcmp(group, "gpu"))
    for (int k = 0; k < PX_N_OPC; k++)
      for (int dir = 0; dir < 2; dir++) {
        g_autofree char *name = g_strdup_printf("membound_bw_%s_%s", px_op_class_name(k), dir ? "bwd" : "fwd");
        if (!strcmp(key, name)) return TRUE;
      }
  return FALSE;
}

/* A misspelt optional key ("pcie_bandwidth", "[nodes]") would silently keep
 * its default: every group and key must be one the loader reads. */
static gboolean check_keys(GKeyFile *kf, const char *path, GError **error) {
  g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
  for (int i = 0; groups[i]; i++) {
    if (strcmp(groups[i], "cluster") && strcmp(groups[i], "gpu") && strcmp(groups[i], "node") &&
        strcmp(groups[i], "network")) {
      g_set_error(error, PX_CLUSTER_ERROR, PX_CLUSTER_ERROR_PARSE,
                  "%s: [%s] is not a cluster group (cluster, gpu, node, network)", path, groups[i]);
      return FALSE;
    }
    g_auto(GStrv) keys = g_key_file_get_keys(kf, groups[i], NULL, NULL);
    for (int j = 0; keys && keys[j]; j++)
      if (!known_key(groups[i], keys[j])) {
        g_set_error(error, PX_CLUSTER_ERROR, PX_CLUSTER_ERROR_PARSE, "%s: [%s] %s is not a cluster key", path,
                    groups[i], keys[j]);
        return FALSE;
      }
  }
  return TRUE;
}

/* Bounds of the rates and times a cluster file gives: at most a thousand
 * times any GPU of 2025 (B200: 2.25 PFLOP/s dense bf16, 8 TB/s of HBM3e,
 * NVLink 5 at 900 GB/s a direction), a rate given (not 0, unset) at least
 * 10^6 a second: 1e308 FLOP/s was printed as a rate of 300 digits, a
 * latency of 1e308 s or a rate of 1e-300 B/s as a step of inf ms. */
#define PX_CLUSTER_MAX_FLOPS 1e18 /* FLOP/s */
#define PX_CLUSTER_MAX_BW 1e15    /* bytes/s, and parameters/s of the host's optimizer */
#define PX_CLUSTER_MAX_LAT 1.0    /* s */
#define PX_CLUSTER_MIN_RATE 1e6   /* FLOP/s, bytes/s, parameters/s */
static const struct {
  const char *group, *key;
  size_t offset; /* of the double in PxCluster */
  double max;
  const char *unit;
} bounded_keys[] = {
  {"gpu", "peak_fp32", offsetof(PxCluster, peak_fp32), PX_CLUSTER_MAX_FLOPS, "FLOP/s"},
  {"gpu", "peak_tf32", offsetof(PxCluster, peak_tf32), PX_CLUSTER_MAX_FLOPS, "FLOP/s"},
  {"gpu", "peak_bf16", offsetof(PxCluster, peak_bf16), PX_CLUSTER_MAX_FLOPS, "FLOP/s"},
  {"gpu", "peak_fp16", offsetof(PxCluster, peak_fp16), PX_CLUSTER_MAX_FLOPS, "FLOP/s"},
  {"gpu", "peak_fp8", offsetof(PxCluster, peak_fp8), PX_CLUSTER_MAX_FLOPS, "FLOP/s"},
  {"gpu", "attention_fwd_flops", offsetof(PxCluster, attn_fwd_flops), PX_CLUSTER_MAX_FLOPS, "FLOP/s"},
  {"gpu", "attention_bwd_flops", offsetof(PxCluster, attn_bwd_flops), PX_CLUSTER_MAX_FLOPS, "FLOP/s"},
  {"gpu", "hbm_bw", offsetof(PxCluster, hbm_bw), PX_CLUSTER_MAX_BW, "B/s"},
  {"gpu", "membound_bw_optimizer", offsetof(PxCluster, optimizer_bw), PX_CLUSTER_MAX_BW, "B/s"},
  {"node", "bandwidth", offsetof(PxCluster, intra_bw), PX_CLUSTER_MAX_BW, "B/s"},
  {"node", "pcie_bw", offsetof(PxCluster, pcie_bw), PX_CLUSTER_MAX_BW, "B/s"},
  {"node", "cpu_adam_rate", offsetof(PxCluster, cpu_adam_rate), PX_CLUSTER_MAX_BW, "parameters/s"},
  {"network", "bandwidth", offsetof(PxCluster, inter_bw), PX_CLUSTER_MAX_BW, "B/s"},
  {"node", "latency", offsetof(PxCluster, intra_lat), PX_CLUSTER_MAX_LAT, "s"},
  {"node", "p2p_latency", offsetof(PxCluster, intra_p2p_lat), PX_CLUSTER_MAX_LAT, "s"},
  {"network", "latency", offsetof(PxCluster, inter_lat), PX_CLUSTER_MAX_LAT, "s"},
};

static gboolean check_bounds(const PxCluster *c, const char *path, GError **error) {
  for (gsize i = 0; i < G_N_ELEMENTS(bounded_keys); i++) {
    double v = *(const double *)((const char *)c + bounded_keys[i].offset);
    gboolean low = bounded_keys[i].max > PX_CLUSTER_MAX_LAT && v > 0 && v < PX_CLUSTER_MIN_RATE; /* a rate */
    if (v > bounded_keys[i].max || low) {
      g_set_error(error, PX_CLUSTER_ERROR, PX_CLUSTER_ERROR_INVALID, "%s: [%s] %s = %g is %s %g %s", path,
                  bounded_keys[i].group, bounded_keys[i].key, v, low ? "below" : "more than",
                  low ? PX_CLUSTER_MIN_RATE : bounded_keys[i].max, bounded_keys[i].unit);
      return FALSE;
    }
  }
  for (int k = 0; k < PX_N_OPC; k++)
    for (int dir = 0; dir < 2; dir++) {
      double v = c->membound_bw[k][dir];
      gboolean low = v > 0 && v < PX_CLUSTER_MIN_RATE;
      if (v > PX_CLUSTER_MAX_BW || low) {
        g_set_error(error, PX_CLUSTER_ERROR, PX_CLUSTER_ERROR_INVALID, "%s: [gpu] membound_bw_%s_%s = %g is %s %g B/s",
                    path, px_op_class_name(k), dir ? "bwd" : "fwd", v, low ? "below" : "more than",
                    low ? PX_CLUSTER_MIN_RATE : PX_CLUSTER_MAX_BW);
        return FALSE;
      }
    }
  for (int i = 0; i < c->intra_curve.n; i++)
    if (c->intra_curve.busbw[i] > PX_CLUSTER_MAX_BW || c->intra_curve.bytes[i] > 0x1p62) {
      g_set_error(error, PX_CLUSTER_ERROR, PX_CLUSTER_ERROR_INVALID,
                  "%s: [node] busbw_curve point %d (%g B, %g B/s) is beyond 2^62 B or %g B/s", path, i + 1,
                  c->intra_curve.bytes[i], c->intra_curve.busbw[i], PX_CLUSTER_MAX_BW);
      return FALSE;
    }
  return TRUE;
}

/* The keys about a GPU's SMs against [gpu] sms: a collective cannot hold
 * more SMs than the GPU has (cost.c cut its share to all of them), and
 * without sms (0: unknown) the cost model reads none of them (no share
 * held, no tiles counted), so setting one alone did nothing. */
static gboolean check_sm_keys(GKeyFile *kf, const char *path, gint64 sms, gint64 coll_sms, gint64 coll_sms_intra,
                              gboolean persistent, GError **error) {
  const GQuark D = PX_CLUSTER_ERROR;
  const int E = PX_CLUSTER_ERROR_INVALID;
  if (sms > 0) {
    gboolean intra = coll_sms <= sms && coll_sms_intra > sms;
    if (coll_sms > sms || intra) {
      g_set_error(error, D, E, "%s: [node] %s = %" G_GINT64_FORMAT " is more than the GPU's [gpu] sms = %" G_GINT64_FORMAT,
                  path, intra ? "collective_sms_intra" : "collective_sms", intra ? coll_sms_intra : coll_sms, sms);
      return FALSE;
    }
    return TRUE;
  }
  const char *group = "node", *key = NULL;
  if (coll_sms > 0) key = "collective_sms";
  else if (coll_sms_intra > 0) key = "collective_sms_intra";
  else if (persistent) group = "gpu", key = "gemm_persistent";
  else if (g_key_file_has_key(kf, "gpu", "gemm_tile", NULL)) group = "gpu", key = "gemm_tile";
  if (key) {
    g_set_error(error, D, E, "%s: [%s] %s needs [gpu] sms, the GPU's SM count: without it the key is not read", path,
                group, key);
    return FALSE;
  }
  return TRUE;
}

PxCluster *px_cluster_load_ini(const char *path, GError **error) {
  g_autoptr(GKeyFile) kf = px_config_load_keyfile(path, PX_CLUSTER_ERROR, PX_CLUSTER_ERROR_PARSE, error);
  if (!kf || !check_keys(kf, path, error)) return NULL;
  g_autoptr(PxCluster) c = g_new0(PxCluster, 1);
  gint64 nodes, gpus;
  double mem, host;
  const GQuark D = PX_CLUSTER_ERROR;
  const int E = PX_CLUSTER_ERROR_INVALID;
  if (!px_config_get_string(kf, path, "cluster", "name", TRUE, &c->name, D, E, error) ||
      !px_config_get_int(kf, path, "cluster", "nodes", TRUE, 1, 1, &nodes, D, E, error) ||
      !load_calibrated_dtype(kf, path, &c->calibrated_dtype, error) ||
      !px_config_get_string(kf, path, "gpu", "name", TRUE, &c->gpu, D, E, error) ||
      !get_bytes(kf, path, "gpu", "memory", FALSE, 0, &mem, error) ||
      !px_config_get_double(kf, path, "gpu", "peak_fp32", FALSE, 0, 1, &c->peak_fp32, D, E, error) ||
      !px_config_get_double(kf, path, "gpu", "peak_tf32", TRUE, c->peak_fp32, 1, &c->peak_tf32, D, E, error) ||
      !px_config_get_double(kf, path, "gpu", "peak_bf16", FALSE, 0, 1, &c->peak_bf16, D, E, error) ||
      !px_config_get_double(kf, path, "gpu", "peak_fp16", TRUE, c->peak_bf16, 1, &c->peak_fp16, D, E, error) ||
      !px_config_get_double(kf, path, "gpu", "hbm_bw", FALSE, 0, 1, &c->hbm_bw, D, E, error) ||
      !px_config_get_double(kf, path, "gpu", "peak_fp8", TRUE, 0, 0, &c->peak_fp8, D, E, error) ||
      !px_config_get_int(kf, path, "node", "gpus", FALSE, 0, 1, &gpus, D, E, error) ||
      !px_config_get_double(kf, path, "node", "bandwidth", FALSE, 0, 1, &c->intra_bw, D, E, error) ||
      !px_config_get_double(kf, path, "node", "latency", TRUE, 3e-6, 0, &c->intra_lat, D, E, error) ||
      !px_config_get_double(kf, path, "node", "p2p_latency", TRUE, 0, 0, &c->intra_p2p_lat, D, E, error) ||
      !px_config_get_double(kf, path, "node", "pcie_bw", TRUE, 25e9, 1, &c->pcie_bw, D, E, error) ||
      !px_config_get_double(kf, path, "node", "cpu_adam_rate", TRUE, 0, 0, &c->cpu_adam_rate, D, E, error) ||
      !get_bytes(kf, path, "node", "host_memory", TRUE, 1e12, &host, error) ||
      !px_config_get_double(kf, path, "network", "bandwidth", FALSE, 0, 1, &c->inter_bw, D, E, error) ||
      !px_config_get_double(kf, path, "network", "latency", TRUE, 10e-6, 0, &c->inter_lat, D, E, error))
    return NULL;
  /* per-class rates (calibrate): optional, 0 = unset */
  for (int k = 0; k < PX_N_OPC; k++)
    for (int dir = 0; dir < 2; dir++) {
      g_autofree char *key = g_strdup_printf("membound_bw_%s_%s", px_op_class_name(k), dir ? "bwd" : "fwd");
      if (!px_config_get_double(kf, path, "gpu", key, TRUE, 0, 0, &c->membound_bw[k][dir], D, E, error)) return NULL;
    }
  if (!px_config_get_double(kf, path, "gpu", "membound_bw_optimizer", TRUE, 0, 0, &c->optimizer_bw, D, E, error) ||
      !px_config_get_double(kf, path, "gpu", "attention_fwd_flops", TRUE, 0, 0, &c->attn_fwd_flops, D, E, error) ||
      !px_config_get_double(kf, path, "gpu", "attention_bwd_flops", TRUE, 0, 0, &c->attn_bwd_flops, D, E, error))
    return NULL;
  gint64 sms, tile;
  /* achieved rates: optional, 0 = ideal (see cluster.h) */
  for (gsize i = 0; i < G_N_ELEMENTS(rate_keys); i++) {
    double *out = (double *)((char *)c + rate_keys[i].offset);
    if (!px_config_get_double(kf, path, rate_keys[i].group, rate_keys[i].key, TRUE, 0, 0, out, D, E, error))
      return NULL;
    if (*out > 1) {
      g_set_error(error, D, E, "%s: [%s] %s = %g is above 1", path, rate_keys[i].group, rate_keys[i].key, *out);
      return NULL;
    }
    /* an efficiency given as 0 was taken as unset, the ideal 1: the fastest GPU for the slowest figure */
    if (*out == 0 && strcmp(rate_keys[i].key, "kernel_overhead") &&
        g_key_file_has_key(kf, rate_keys[i].group, rate_keys[i].key, NULL)) {
      g_set_error(error, D, E, "%s: [%s] %s = 0 is no achieved rate: give a fraction in (0, 1], or leave the key out "
                  "for the ideal rate", path, rate_keys[i].group, rate_keys[i].key);
      return NULL;
    }
  }
  /* read only for --precision fp8, which a GPU without peak_fp8 refuses */
  if (c->gemm_eff_fp8 > 0 && c->peak_fp8 <= 0) {
    g_set_error(error, D, E, "%s: [gpu] gemm_efficiency_fp8 needs [gpu] peak_fp8: without FP8 tensor cores the key is "
                "not read", path);
    return NULL;
  }
  /* shape terms of the achieved rates (cost.c): lengths, 0 = none */
  if (!px_config_get_double(kf, path, "gpu", "gemm_k_overhead", TRUE, 0, 0, &c->gemm_k_overhead, D, E, error) ||
      !px_config_get_double(kf, path, "gpu", "flash_seq_half", TRUE, 0, 0, &c->flash_seq_half, D, E, error))
    return NULL;
  gint64 coll_sms, coll_sms_intra;
  if (!px_config_get_int(kf, path, "node", "collective_sms", TRUE, 0, 0, &coll_sms, D, E, error) ||
      !px_config_get_int(kf, path, "node", "collective_sms_intra", TRUE, 0, 0, &coll_sms_intra, D, E, error))
    return NULL;
  if (coll_sms > 100000 || coll_sms_intra > 100000) {
    g_set_error(error, D, E,
                "%s: [node] collective_sms = %" G_GINT64_FORMAT " or collective_sms_intra = %" G_GINT64_FORMAT
                " is too large",
                path, coll_sms, coll_sms_intra);
    return NULL;
  }
  c->coll_sms = (int)coll_sms;
  c->coll_sms_intra = (int)coll_sms_intra;
  if (!px_config_get_bool(kf, path, "gpu", "gemm_persistent", FALSE, &c->gemm_persistent, D, E, error))
    return NULL;
  if (c->gemm_k_overhead > 1e9 || c->flash_seq_half > 1e9) {
    g_set_error(error, D, E, "%s: [gpu] gemm_k_overhead = %g or flash_seq_half = %g is above 1e9", path,
                c->gemm_k_overhead, c->flash_seq_half);
    return NULL;
  }
  if (!px_config_get_int(kf, path, "gpu", "sms", TRUE, 0, 0, &sms, D, E, error) ||
      !px_config_get_int(kf, path, "gpu", "gemm_tile", TRUE, 128, 1, &tile, D, E, error))
    return NULL;
  if (sms > 100000 || tile > 4096) {
    g_set_error(error, D, E, "%s: [gpu] sms = %" G_GINT64_FORMAT " or gemm_tile = %" G_GINT64_FORMAT " is too large",
                path, sms, tile);
    return NULL;
  }
  if (!check_sm_keys(kf, path, sms, coll_sms, coll_sms_intra, c->gemm_persistent, error)) return NULL;
  c->sms = (int)sms;
  c->gemm_tile = (int)tile;
  if (nodes > G_MAXINT / 1024 || gpus > 1024) {
    g_set_error(error, D, E, "%s: %" G_GINT64_FORMAT " nodes of %" G_GINT64_FORMAT " GPUs is too many",
                path, nodes, gpus);
    return NULL;
  }
  if (mem > 0x1p62 || host > 0x1p62) { /* beyond gint64 (a fuzzed input: 5.8e45 B) */
    g_set_error(error, D, E, "%s: [gpu] memory = %g B or [node] host_memory = %g B is too large", path, mem, host);
    return NULL;
  }
  if (!load_curve(kf, path, "node", &c->intra_curve, error) || !check_bounds(c, path, error)) return NULL;
  c->nodes = (int)nodes;
  c->gpus_per_node = (int)gpus;
  c->gpu_memory = (gint64)mem;
  c->host_memory = (gint64)host;
  if (!c->name) {
    char *base = g_path_get_basename(path);
    if (g_str_has_suffix(base, ".ini")) base[strlen(base) - 4] = '\0';
    c->name = base;
  }
  if (!c->gpu) c->gpu = g_strdup("GPU");
  /* written into reports and launch files' header comments: a newline there starts a command */
  const char *bad_name = !px_text_is_line(c->name) ? c->name : !px_text_is_line(c->gpu) ? c->gpu : NULL;
  if (bad_name) {
    g_autofree char *shown = g_strescape(bad_name, NULL);
    g_set_error(error, D, E, "%s: the %s name '%s' is not one line of text (empty, or a control character or "
                "invalid UTF-8)", path, bad_name == c->name ? "cluster" : "GPU", shown);
    return NULL;
  }
  return g_steal_pointer(&c);
}

PxCluster *px_cluster_load(const char *name_or_path, GError **error) {
  g_autofree char *path =
      px_config_find("clusters", "cluster", name_or_path, PX_CLUSTER_ERROR, PX_CLUSTER_ERROR_NOT_FOUND, error);
  return path ? px_cluster_load_ini(path, error) : NULL;
}

PxCluster *px_cluster_copy(const PxCluster *c) {
  PxCluster *n = g_memdup2(c, sizeof *c);
  n->name = g_strdup(c->name);
  n->gpu = g_strdup(c->gpu);
  n->calibrated_dtype = g_strdup(c->calibrated_dtype);
  return n;
}

void px_cluster_free(PxCluster *c) {
  if (!c) return;
  g_free(c->name);
  g_free(c->gpu);
  g_free(c->calibrated_dtype);
  g_free(c);
}
