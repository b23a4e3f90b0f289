/* bench_gemm_table.c — the GEMM model (common/cost.c px_cost_gemm_time)
 * against OpenXLA's measured sm_90 table (bench/validate/openxla_sm90_gemm.csv:
 * every bf16 entry, b × m × n × k with b ∈ {1, 2, 4} and m, n, k ∈ {256 …
 * 4096}, two measurements of the table, the source commits in the file's
 * header). Not a test: it prints, per entry and per shape class, the model's
 * signed error in the sign convention of bench/validate (predicted rate /
 * measured rate − 1: positive = the model is too fast), the mean and the
 * rms; nothing is asserted or fitted.
 *
 * The table's level is not the runs' level: each entry is the median of 5
 * timed calls after one warm-up (xla/tools/matmul_perf_table_gen.cc), kernel
 * time from the profiler, on XLA's fake arguments; its largest shapes run
 * at up to 808 TFLOP/s, above the preset's MAMF-based ceiling (0.808 ×
 * 989.4 = 799). So a second figure, "level-free", divides every entry's
 * rate ratio by the mean ratio of the reference class (≥ 8 waves of 128 ×
 * 128 tiles on 132 SMs, k = 4096): what is left is the shape dependence.
 *
 *   usage: bench_gemm_table [--csv FILE] [--preset NAME] [--column a|b] [--rows] */
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cluster.h"
#include "cost.h"

typedef struct {
  double b, m, n, k;
  double flops[2]; /* measured FLOP/s, columns flops_a and flops_b */
} Entry;

typedef struct {
  const char *name;
  int n;
  double sum, sum2, sum_lf, sum2_lf;
} Class;

static void die(const char *what, GError *err) {
  fprintf(stderr, "bench_gemm_table: %s: %s\n", what, err ? err->message : "failed");
  exit(1);
}

static GArray *load(const char *path) {
  g_autoptr(GError) err = NULL;
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, &err)) die(path, err);
  GArray *rows = g_array_new(FALSE, FALSE, sizeof(Entry));
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (int i = 0; lines[i]; i++) {
    const char *l = lines[i];
    if (!*l || l[0] == '#' || l[0] == 'b') continue;
    Entry e;
    if (sscanf(l, "%lf,%lf,%lf,%lf,%lf,%lf", &e.b, &e.m, &e.n, &e.k, &e.flops[0], &e.flops[1]) != 6)
      die(l, NULL);
    g_array_append_val(rows, e);
  }
  return rows;
}

/* 128 × 128 output tiles of the batch (the shape classes use the preset's
 * quantisation grid whatever the kernel's real tile). */
static double tiles(const PxCluster *c, const Entry *e) {
  double t = c->gemm_tile > 0 ? c->gemm_tile : 128;
  return e->b * ceil(e->m / t) * ceil(e->n / t);
}

static void add(Class *cl, double err, double lf) {
  cl->n++;
  cl->sum += err;
  cl->sum2 += err * err;
  cl->sum_lf += lf;
  cl->sum2_lf += lf * lf;
}

static void print_class(const Class *cl) {
  if (!cl->n) return;
  printf("  %-44s %4d  %+6.1f %%  %5.1f %%   %+6.1f %%  %5.1f %%\n", cl->name, cl->n, 100 * cl->sum / cl->n,
         100 * sqrt(cl->sum2 / cl->n), 100 * cl->sum_lf / cl->n, 100 * sqrt(cl->sum2_lf / cl->n));
}

int main(int argc, char **argv) {
  const char *csv = PX_VALIDATE_DIR "/openxla_sm90_gemm.csv", *preset = "dgx-h100";
  int col = 0;
  gboolean rows_out = FALSE;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--csv") && i + 1 < argc) csv = argv[++i];
    else if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset = argv[++i];
    else if (!strcmp(argv[i], "--column") && i + 1 < argc) col = !strcmp(argv[++i], "b");
    else if (!strcmp(argv[i], "--rows")) rows_out = TRUE;
    else {
      fprintf(stderr, "usage: bench_gemm_table [--csv FILE] [--preset NAME] [--column a|b] [--rows]\n");
      return 2;
    }
  }
  g_autoptr(GError) err = NULL;
  PxCluster *c = px_cluster_load(preset, &err);
  if (!c) die(preset, err);
  GArray *rows = load(csv);
  int n = (int)rows->len;
  double *ratio = g_new(double, n); /* predicted rate / measured rate */
  double ref = 0;
  int nref = 0;
  for (int i = 0; i < n; i++) {
    const Entry *e = &g_array_index(rows, Entry, i);
    double t_model = px_cost_gemm_time(c, PX_PREC_BF16, e->b, e->m, e->n, e->k, 2);
    double t_meas = 2 * e->b * e->m * e->n * e->k / e->flops[col];
    ratio[i] = t_meas / t_model;
    if (tiles(c, e) >= 8.0 * c->sms && e->k == 4096) {
      ref += ratio[i];
      nref++;
    }
  }
  ref = nref ? ref / nref : 1;

  printf("OpenXLA sm_90 bf16 GEMM table (%s, column flops_%c, %d entries) against preset %s\n", csv,
         col ? 'b' : 'a', n, preset);
  printf("error = predicted rate / measured rate - 1 (+ = model too fast); level-free: ratio / %.3f, the mean\n"
         "ratio of the %d entries with >= 8 waves of tiles and k = 4096\n",
         ref, nref);
  if (rows_out) {
    printf("\n   b     m     n     k  tiles  measured  model TFLOP/s  error  level-free\n");
    for (int i = 0; i < n; i++) {
      const Entry *e = &g_array_index(rows, Entry, i);
      double fl = 2 * e->b * e->m * e->n * e->k;
      printf("  %2.0f %5.0f %5.0f %5.0f %6.0f  %7.1f  %7.1f  %+6.1f %%  %+6.1f %%\n", e->b, e->m, e->n, e->k,
             tiles(c, e), e->flops[col] / 1e12, fl / px_cost_gemm_time(c, PX_PREC_BF16, e->b, e->m, e->n, e->k, 2) / 1e12,
             100 * (ratio[i] - 1), 100 * (ratio[i] / ref - 1));
    }
  }

  /* shape classes: waves of tiles, k, and the llm-foundry small models' GEMMs */
  static const double wave_lo[] = {0, 0.25, 0.5, 1, 2, 4, 8};
  static const char *wave_name[] = {"tiles < 1/4 wave",   "tiles 1/4 .. 1/2 wave", "tiles 1/2 .. 1 wave",
                                    "tiles 1 .. 2 waves", "tiles 2 .. 4 waves",    "tiles 4 .. 8 waves",
                                    "tiles >= 8 waves"};
  enum { NW = G_N_ELEMENTS(wave_lo), NK = 5 };
  Class by_wave[NW], by_k[NK], by_k_full[NK], all = {.name = "all entries"}, full = {.name = "tiles >= 1 wave"};
  Class foundry = {.name = "m, n, k >= 2048 (d 1536..2560 model GEMMs)"};
  Class foundry_k4 = {.name = "  of which k = 4096"};
  char knames[2 * NK][48];
  for (int w = 0; w < NW; w++) by_wave[w] = (Class){.name = wave_name[w]};
  for (int j = 0; j < NK; j++) {
    g_snprintf(knames[j], sizeof knames[j], "k = %d", 256 << j);
    g_snprintf(knames[NK + j], sizeof knames[NK + j], "k = %d, tiles >= 1 wave", 256 << j);
    by_k[j] = (Class){.name = knames[j]};
    by_k_full[j] = (Class){.name = knames[NK + j]};
  }
  for (int i = 0; i < n; i++) {
    const Entry *e = &g_array_index(rows, Entry, i);
    double waves = tiles(c, e) / c->sms, er = ratio[i] - 1, lf = ratio[i] / ref - 1;
    int w = NW - 1;
    while (w > 0 && waves < wave_lo[w]) w--;
    int j = (int)lround(log2(e->k / 256));
    add(&all, er, lf);
    add(&by_wave[w], er, lf);
    if (j >= 0 && j < NK) add(&by_k[j], er, lf);
    if (waves >= 1) {
      add(&full, er, lf);
      if (j >= 0 && j < NK) add(&by_k_full[j], er, lf);
    }
    if (e->m >= 2048 && e->n >= 2048 && e->k >= 2048) {
      add(&foundry, er, lf);
      if (e->k == 4096) add(&foundry_k4, er, lf);
    }
  }
  printf("\n  %-44s %4s  %8s  %7s   %8s  %7s\n", "class", "n", "mean", "rms", "mean lf", "rms lf");
  print_class(&all);
  for (int w = 0; w < NW; w++) print_class(&by_wave[w]);
  for (int j = 0; j < NK; j++) print_class(&by_k[j]);
  print_class(&full);
  for (int j = 0; j < NK; j++) print_class(&by_k_full[j]);
  print_class(&foundry);
  print_class(&foundry_k4);
  g_free(ratio);
  g_array_unref(rows);
  px_cluster_free(c);
  return 0;
}
