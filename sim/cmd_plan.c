/* cmd_plan.c — `parallax-sim plan`: partition, bubble, memory per stage and
 * FLOPs of one plan, as a readable report or one JSON object. */
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "commands.h"
#include "emit.h"
#include "flops.h"
#include "memory.h"
#include "options.h"
#include "partition.h"
#include "report.h"
#include "search.h"

#define CMD "parallax-sim plan"

/* Everything the report shows, computed once. */
typedef struct {
  PxModel *model;
  PxCluster *cluster;
  PxPlan plan;
  PxPartition *part;
  PxMemory *mem;
  PxFlops flops;
  gboolean have_fit;      /* it does not fit, and the search found what would */
  gboolean fit_skipped;   /* it does not fit, and the batch is too large per GPU to search */
  PxSearchCandidate fit;  /* the fastest layout of the same GPUs that fits */
} PlanReport;

static void plan_report_clear(PlanReport *r) {
  px_memory_free(r->mem);
  px_partition_free(r->part);
  px_plan_clear(&r->plan);
  px_cluster_free(r->cluster);
  px_model_free(r->model);
}

/* ---- the closest layout that fits ----------------------------------------- */

/* When the plan does not fit: the fastest layout of the same GPUs that does,
 * as `parallax-sim search` finds it (same batch, sequence and precision). */
static void find_fitting(PlanReport *r) {
  if (!r->cluster || r->mem->fits) return;
  r->fit_skipped = r->plan.gbs > (gint64)PX_SEARCH_MAX_SEQS_PER_GPU * px_cluster_gpus(r->cluster);
  if (r->fit_skipped) return; /* px_search_run refuses it: hours of simulation */
  PxSearchOptions so;
  px_search_options_init(&so);
  so.top = 1;
  g_autoptr(PxSearchResult) res = px_search_run(r->model, r->cluster, &r->plan, &so, NULL);
  if (!res || res->top->len == 0) return;
  r->fit = g_array_index(res->top, PxSearchCandidate, 0);
  r->have_fit = TRUE;
}

static gboolean plan_report_compute(PlanReport *r, GError **error) {
  r->part = px_partition_new(r->model, &r->plan, NULL, error);
  if (!r->part) return FALSE;
  r->mem = px_memory_new(r->model, &r->plan, r->part, r->cluster);
  px_flops_compute(r->model, &r->plan, &r->flops);
  find_fitting(r);
  return TRUE;
}

/* ---- text --------------------------------------------------------------- */

static void print_text(const PlanReport *r, const PxUnits *u, gboolean batch_given) {
  const PxModelDesc *d = &r->model->desc;
  const PxPlan *p = &r->plan;
  const PxCluster *c = r->cluster;
  g_autofree char *nparams = px_format_count((double)r->model->params);
  printf("Parallax plan: %s", d->name);
  if (c)
    printf(" on %s (%d node%s × %d %s = %d GPUs, %.1f GiB = %.1f GB each)", c->name, c->nodes,
           c->nodes == 1 ? "" : "s", c->gpus_per_node, c->gpu, px_cluster_gpus(c),
           c->gpu_memory / 1073741824.0, c->gpu_memory / 1e9);
  printf("\n\n");
  printf("model      %s parameters (%" G_GINT64_FORMAT "), %d layers, hidden %d, %d heads (%d kv) of %d, "
         "FFN %d %s, vocab %d, %s%s%s%s",
         nparams, r->model->params, d->layers, d->hidden, d->heads, d->kv_heads, d->head_dim, d->ffn,
         px_ffn_kind_name(d->ffn_kind), d->vocab, px_norm_kind_name(d->norm), d->tied ? ", tied embeddings" : "",
         d->qkv_bias && !d->bias ? ", QKV biases" : "", d->parallel_attn ? ", parallel attention" : "");
  if (d->sliding_window > 0) printf(", window %d", d->sliding_window);
  printf("\n");
  g_autofree char *grid = px_report_layout(p), *order = px_report_order(p);
  printf("layout     %s, rank order %s (innermost first)\n", grid, order);
  if (p->cp > 1)
    printf("context    cp %d: %d tokens per CP rank (chunks i and %d-i of %d), ring attention; gradients reduced over "
           "dp·cp = %d\n", p->cp, px_plan_local_seq(p), 2 * p->cp - 1, 2 * p->cp, px_plan_data_ranks(p));
  px_report_moe_text(r->model, p, stdout);
  g_autofree char *tok = px_format_count((double)p->gbs * p->seq);
  printf("batch      global %d sequences × %d tokens = %s tokens; micro-batch %d; m = %d micro-batches per pipeline%s\n",
         p->gbs, p->seq, tok, p->mbs, p->m,
         batch_given ? "" : " (no batch given: one micro-batch per data-parallel rank; --gbs or --gbs-tokens sets it)");
  g_autofree char *chunks = p->vpp > 1 ? g_strdup_printf(" (v = %d chunks)", p->vpp) : g_strdup("");
  printf("schedule   %s%s; partition %s; ZeRO-%d; offload %s; checkpoint %s", px_schedule_name(p->schedule),
         chunks, p->partition, p->zero,
         px_offload_name(p->offload), px_ckpt_name(p->ckpt));
  if (p->ckpt == PX_CKPT_FULL) printf(" every %d layer%s", p->ckpt_interval, p->ckpt_interval > 1 ? "s" : "");
  printf("; sequence parallel %s; %s%s\n", p->seq_parallel ? "on" : "off", px_precision_name(p->precision),
         p->precision == PX_PREC_FP32 ? ""
         : p->precision == PX_PREC_FP8 ? " (Transformer Engine, delayed scaling: FP8 GEMMs, bf16 elsewhere, fp32 master weights)"
                                       : " mixed precision (fp32 master weights)");
  printf("bubble     %.2f %% of step time (idle / step; %s)\n\n", 100 * px_plan_bubble_fraction(p),
         px_report_bubble_formula(p->schedule));

  printf("partition (%d stage%s%s)\n", p->pp, p->pp > 1 ? "s" : "", p->vpp > 1 ? " × chunks" : "");
  printf("%-6s %-6s %-16s %-7s %s\n", "stage", "chunk", "layers", "blocks", "parameters");
  for (int k = 0; k < r->part->parts; k++) {
    int first = r->part->bounds[k], last = r->part->bounds[k + 1] - 1, blocks = 0;
    for (int i = first; i <= last; i++) blocks += r->model->layers[i].kind == PX_LAYER_BLOCK;
    g_autofree char *range = g_strdup_printf("%d-%d", first, last);
    g_autofree char *pc = px_format_count((double)r->part->params[k]);
    printf("%-6d %-6d %-16s %-7d %s\n", px_partition_part_rank(r->part, k), px_partition_part_chunk(r->part, k),
           range, blocks, pc);
  }
  printf("  layers: 0 = embedding, 1..%d = transformer blocks, %d = final norm, %d = LM head%s\n\n", d->layers,
         d->layers + 1, d->layers + 2, d->tied ? " (tied to the embedding: both ends hold it)" : "");

  px_report_memory_table(r->mem, u, stdout);

  double cap = r->mem->capacity;
  const PxStageMemory *pk = &r->mem->stages[r->mem->peak_stage];
  if (cap > 0) {
    if (r->mem->fits)
      printf("fits       yes: the fullest stage (%d) needs %.1f %s of %.1f %s, %.1f %s to spare\n", pk->stage,
             pk->total / u->scale, u->name, cap / u->scale, u->name, (cap - pk->total) / u->scale, u->name);
    else {
      printf("fits       NO: stage %d needs %.1f %s, the GPU has %.1f %s (over by %.1f %s)\n", pk->stage,
             pk->total / u->scale, u->name, cap / u->scale, u->name, (pk->total - cap) / u->scale, u->name);
      g_autofree char *layout = r->have_fit ? px_layout_format(&r->fit.layout) : NULL;
      if (layout)
        printf("would fit  %s (peak %.1f %s, %.1f ms per step simulated; the fastest that fits, see parallax-sim "
               "search) on the same %d GPUs\n",
               layout, r->fit.memory / u->scale, u->name, 1e3 * r->fit.step_time, px_plan_world(p));
      else if (r->fit_skipped)
        printf("would fit  not searched: %d sequences on %d GPUs is more than %d per GPU\n", p->gbs, px_plan_world(p),
               PX_SEARCH_MAX_SEQS_PER_GPU);
      else printf("would fit  no layout of these %d GPUs (parallax-sim search tried them all)\n", px_plan_world(p));
    }
  } else {
    printf("fits       unknown: no cluster given (--cluster NAME|FILE sets the GPU's memory)\n");
  }
  g_autofree char *fm = px_format_flops(r->flops.model_per_step);
  g_autofree char *fh = px_format_flops(r->flops.hardware_per_step);
  g_autofree char *ft = px_format_flops(r->flops.model_per_token);
  g_autofree char *f6 = px_format_flops(r->flops.approx_6n_per_token);
  printf("\nFLOPs      per step: model %s, hardware %s (with recompute); per token: %s (6N + 12·L·h·s ≈ %s)%s\n",
         fm, fh, ft, f6, r->model->desc.experts ? "; model FLOPs and N from active parameters (each token through its top-k experts)" : "");
}

/* ---- JSON --------------------------------------------------------------- */

static void print_json(const PlanReport *r) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  const PxPlan *p = &r->plan;
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "model");
  json_builder_begin_object(b);
  px_json_member_string(b, "name", r->model->desc.name);
  px_json_member_int(b, "parameters", r->model->params);
  px_json_member_int(b, "active_parameters", r->model->active_params);
  px_json_member_int(b, "layers", r->model->desc.layers);
  json_builder_end_object(b);
  json_builder_set_member_name(b, "plan");
  px_report_plan_json(b, p);
  json_builder_set_member_name(b, "partition");
  json_builder_begin_array(b);
  for (int k = 0; k < r->part->parts; k++) {
    json_builder_begin_object(b);
    px_json_member_int(b, "stage", px_partition_part_rank(r->part, k));
    px_json_member_int(b, "chunk", px_partition_part_chunk(r->part, k));
    px_json_member_int(b, "first_layer", r->part->bounds[k]);
    px_json_member_int(b, "last_layer", r->part->bounds[k + 1] - 1);
    px_json_member_int(b, "parameters", r->part->params[k]);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  px_json_member_double(b, "bubble_fraction", px_plan_bubble_fraction(p));
  json_builder_set_member_name(b, "memory");
  px_report_memory_json(b, r->mem);
  if (r->have_fit) {
    g_autofree char *layout = px_layout_format(&r->fit.layout);
    json_builder_set_member_name(b, "would_fit");
    json_builder_begin_object(b);
    px_json_member_string(b, "layout", layout);
    px_json_member_double(b, "peak_memory", r->fit.memory);
    px_json_member_double(b, "step_time_s", r->fit.step_time);
    json_builder_end_object(b);
  }
  json_builder_set_member_name(b, "flops");
  json_builder_begin_object(b);
  px_json_member_double(b, "model_per_step", r->flops.model_per_step);
  px_json_member_double(b, "hardware_per_step", r->flops.hardware_per_step);
  px_json_member_double(b, "model_per_token", r->flops.model_per_token);
  json_builder_end_object(b);
  json_builder_end_object(b);
  px_report_print_json(b);
}

/* --emit: the plan's launch files, with the simulated prediction when a
 * cluster is known. Paths written go to stderr (stdout may be JSON). */
static gboolean emit_files(const PlanReport *r, const PxPlanOptions *o, const char *emit, const char *out,
                           GError **error) {
  PxEmitInfo info = {.command = CMD, .model_name = o->model, .cluster_name = o->cluster};
  if (r->cluster && !px_emit_predict(r->model, r->cluster, &r->plan, &info, error)) return FALSE;
  g_autoptr(GPtrArray) written = g_ptr_array_new_with_free_func(g_free);
  if (!px_emit_to(emit, out, r->model, r->cluster, &r->plan, &info, written, error)) return FALSE;
  for (guint i = 0; i < written->len; i++) fprintf(stderr, CMD ": wrote %s\n", (char *)written->pdata[i]);
  return TRUE;
}

int px_cmd_plan(int argc, char **argv) {
  PxPlanOptions o;
  gboolean json = FALSE;
  g_autofree char *emit = NULL, *out = NULL;
  GOptionEntry entries[] = {
    {"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print one JSON object", NULL},
    {"emit", 0, 0, G_OPTION_ARG_STRING, &emit, "Write launch files: megatron, deepspeed, torchtitan, ini", "FORMAT"},
    {"out", 0, 0, G_OPTION_ARG_FILENAME, &out, "Directory for --emit (default .)", "DIR"},
    {NULL}};
  if (!px_parse_command_line(CMD, "partition, bubble, memory and FLOPs of a plan", entries, &o, &argc, &argv))
    return 2;
  g_autoptr(GError) error = NULL;
  PlanReport r = {0};
  PxUnits u;
  int rc = 0;
  if (!px_units_parse(o.units, &u)) {
    fprintf(stderr, CMD ": --units '%s' is not GB or GiB\n", o.units);
    rc = 2;
  } else if (out && !emit) {
    /* it was ignored: nothing is written without --emit */
    fprintf(stderr, CMD ": --out %s is the directory of --emit's files: give --emit\n", out);
    rc = 2;
  } else if ((emit && !px_emit_check(emit, out, &error)) ||
             !px_plan_options_resolve(&o, FALSE, &r.model, &r.cluster, &r.plan, &error) ||
             !plan_report_compute(&r, &error) || (emit && !emit_files(&r, &o, emit, out, &error))) {
    rc = px_cli_fail(CMD, error);
  } else if (json) {
    print_json(&r);
  } else {
    print_text(&r, &u, o.batch_given);
  }
  plan_report_clear(&r);
  px_plan_options_clear(&o);
  return rc;
}
