/* options.c — the shared plan flags (see options.h). */
#include "options.h"
#include "commands.h"
#include "config.h"
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

gboolean px_parse_int_flag(const char *flag, const char *value, int min, int *out, GError **error) {
  char *end = NULL;
  errno = 0;
  gint64 v = value && *value ? g_ascii_strtoll(value, &end, 10) : 0;
  if (!value || !*value || *end || errno || v < min || v > G_MAXINT) {
    g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "%s %s must be a whole number from %d to %d", flag,
                value ? value : "", min, G_MAXINT);
    return FALSE;
  }
  *out = (int)v;
  return TRUE;
}

/* The integer entries of the command line being parsed (px_option_entries_decimal): GOption
 * reads G_OPTION_ARG_INT and _INT64 with strtoll's base 0, so "--steps 010" trained 8 steps and
 * "--tokens 0x100" wrote 256 tokens; their callback reads base 10, as px_parse_int_flag does.
 * A command line is parsed once, on the main thread. */
static GArray *decimal_entries;

static gboolean on_decimal_flag(const char *name, const char *value, gpointer data, GError **error) {
  (void)data;
  for (guint i = 0; decimal_entries && i < decimal_entries->len; i++) {
    const GOptionEntry *e = &g_array_index(decimal_entries, GOptionEntry, i);
    if (!(name[1] == '-' ? !strcmp(name + 2, e->long_name) : !name[2] && name[1] == e->short_name)) continue;
    gboolean wide = e->arg == G_OPTION_ARG_INT64;
    char *end = NULL;
    errno = 0;
    gint64 v = *value ? g_ascii_strtoll(value, &end, 10) : 0;
    if (!*value || *end) {
      g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "%s '%s' is not a whole number (decimal digits)",
                  name, value);
      return FALSE;
    }
    if (errno || (!wide && (v < G_MININT || v > G_MAXINT))) {
      g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "%s %s is beyond %s", name, value,
                  wide ? "the 64-bit integers" : "2147483647");
      return FALSE;
    }
    if (wide) *(gint64 *)e->arg_data = v;
    else *(int *)e->arg_data = (int)v;
    return TRUE;
  }
  g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, "%s: not an integer flag", name);
  return FALSE;
}

GOptionEntry *px_option_entries_decimal(const GOptionEntry *entries) {
  gsize n = 0;
  while (entries && entries[n].long_name) n++;
  GOptionEntry *out = g_new0(GOptionEntry, n + 1);
  if (!decimal_entries) decimal_entries = g_array_new(FALSE, FALSE, sizeof(GOptionEntry));
  for (gsize i = 0; i < n; i++) {
    out[i] = entries[i];
    if (entries[i].arg != G_OPTION_ARG_INT && entries[i].arg != G_OPTION_ARG_INT64) continue;
    g_array_append_val(decimal_entries, entries[i]);
    out[i].arg = G_OPTION_ARG_CALLBACK;
    out[i].arg_data = (gpointer)on_decimal_flag;
  }
  return out;
}

void px_option_entries_decimal_done(GOptionEntry *converted) {
  g_free(converted);
  g_clear_pointer(&decimal_entries, g_array_unref);
}

gboolean px_flag_is(const char *arg, const char *flag) {
  gsize n = strlen(flag);
  if (strncmp(arg, flag, n)) return FALSE;
  if (flag[1] != '-') return TRUE; /* "-n" or "-n5" */
  return arg[n] == '\0' || arg[n] == '=';
}

/* Integer flags of the group: name, lowest value, field. */
typedef struct { const char *name; int min; gsize offset; } IntFlag;
static const IntFlag int_flags[] = {
  {"--nodes", 1, G_STRUCT_OFFSET(PxPlanOptions, nodes)}, {"--gpus", 1, G_STRUCT_OFFSET(PxPlanOptions, gpus)},
  {"--dp", 1, G_STRUCT_OFFSET(PxPlanOptions, dp)},       {"--tp", 1, G_STRUCT_OFFSET(PxPlanOptions, tp)},
  {"--pp", 1, G_STRUCT_OFFSET(PxPlanOptions, pp)},       {"--vpp", 1, G_STRUCT_OFFSET(PxPlanOptions, vpp)},
  {"--mbs", 1, G_STRUCT_OFFSET(PxPlanOptions, mbs)},     {"--gbs", 1, G_STRUCT_OFFSET(PxPlanOptions, gbs)},
  {"--seq", 1, G_STRUCT_OFFSET(PxPlanOptions, seq)},     {"--zero", 0, G_STRUCT_OFFSET(PxPlanOptions, zero)},
  {"--ckpt-interval", 1, G_STRUCT_OFFSET(PxPlanOptions, ckpt_interval)},
  {"--cp", 1, G_STRUCT_OFFSET(PxPlanOptions, cp)},
  {"--ep", 1, G_STRUCT_OFFSET(PxPlanOptions, ep)},       {"--etp", 1, G_STRUCT_OFFSET(PxPlanOptions, etp)}};

static gboolean on_int_flag(const char *name, const char *value, gpointer data, GError **error) {
  for (gsize i = 0; i < G_N_ELEMENTS(int_flags); i++)
    if (!strcmp(name, int_flags[i].name))
      return px_parse_int_flag(name, value, int_flags[i].min, G_STRUCT_MEMBER_P(data, int_flags[i].offset), error);
  g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, "%s: not an integer flag", name);
  return FALSE;
}

GOptionGroup *px_plan_options_group(PxPlanOptions *o) {
  memset(o, 0, sizeof *o);
  o->nodes = o->gpus = o->dp = o->tp = o->pp = o->vpp = o->mbs = o->gbs = o->seq = o->zero =
      o->ckpt_interval = o->cp = o->ep = o->etp = -1;
#define INT_FLAG G_OPTION_ARG_CALLBACK, (gpointer)on_int_flag
  GOptionEntry entries[] = {
    {"model", 'M', 0, G_OPTION_ARG_STRING, &o->model, "Model preset or file (INI, HF config.json)", "NAME|FILE"},
    {"cluster", 'C', 0, G_OPTION_ARG_STRING, &o->cluster, "Cluster preset or INI file", "NAME|FILE"},
    {"nodes", 0, 0, INT_FLAG, "Number of nodes", "N"},
    {"gpus", 0, 0, INT_FLAG, "Number of GPUs (instead of --nodes)", "N"},
    {"plan", 'p', 0, G_OPTION_ARG_FILENAME, &o->plan_file, "Plan INI file ([plan] group)", "FILE"},
    {"deepspeed", 0, 0, G_OPTION_ARG_FILENAME, &o->deepspeed, "DeepSpeed ds_config.json", "FILE"},
    {"dp", 0, 0, INT_FLAG, "Data-parallel degree (default: GPUs / (tp·cp·pp))", "N"},
    {"tp", 0, 0, INT_FLAG, "Tensor-parallel degree", "N"},
    {"pp", 0, 0, INT_FLAG, "Pipeline-parallel degree", "N"},
    {"vpp", 0, 0, INT_FLAG, "Model chunks per pipeline rank (interleaved)", "V"},
    {"mbs", 0, 0, INT_FLAG, "Micro-batch size (sequences)", "N"},
    {"gbs", 0, 0, INT_FLAG, "Global batch (sequences; default: one micro-batch per DP rank)", "N"},
    {"gbs-tokens", 0, 0, G_OPTION_ARG_STRING, &o->gbs_tokens,
     "Global batch in tokens (e.g. 4M): the nearest multiple of a power of two within 5 %", "T"},
    {"seq", 0, 0, INT_FLAG, "Sequence length in tokens (default: the model's seq; imported HF models 4096)", "N"},
    {"schedule", 0, 0, G_OPTION_ARG_STRING, &o->schedule, "naive, gpipe, 1f1b, interleaved, zb-h1, zb-h2, zb-v, dualpipev", "S"},
    {"partition", 0, 0, G_OPTION_ARG_STRING, &o->partition, "uniform, parameters, type:REGEX, optimal", "M"},
    {"zero", 0, 0, INT_FLAG, "ZeRO stage 0-3", "N"},
    {"offload", 0, 0, G_OPTION_ARG_STRING, &o->offload, "none, optimizer, optimizer+params", "O"},
    {"ckpt", 0, 0, G_OPTION_ARG_STRING, &o->ckpt, "Activation checkpointing: none, selective, full", "C"},
    {"ckpt-interval", 0, 0, INT_FLAG, "Layers per checkpoint (full)", "N"},
    {"sp", 0, 0, G_OPTION_ARG_NONE, &o->sp, "Sequence parallelism (with tp > 1)", NULL},
    {"precision", 0, 0, G_OPTION_ARG_STRING, &o->precision, "fp32, fp16, bf16 (mixed, fp32 master), fp8 (Transformer Engine GEMMs)", "P"},
    {"order", 0, 0, G_OPTION_ARG_STRING, &o->order, "Rank order, innermost first (default tp,dp,pp)", "A,B,C"},
    {"workspace", 0, 0, G_OPTION_ARG_STRING, &o->workspace, "Per-GPU allowance for context/workspace (bytes, e.g. 2GiB; default 1GiB)", "BYTES"},
    {"bucket", 0, 0, G_OPTION_ARG_STRING, &o->bucket,
     "DP gradient-reduction bucket (bytes, e.g. 25MB): reduced in buckets during the backward (docs/executor.md)", "BYTES"},
    {"stack", 0, 0, G_OPTION_ARG_STRING, &o->stack, "Software stack: parallax (default), megatron-2021, megatron-core, deepspeed, fsdp, torchtitan", "S"},
    {"attention", 0, 0, G_OPTION_ARG_STRING, &o->attention, "Attention kernel: flash (FlashAttention-2), flash1 (v1), triton (FlashAttention in Triton) or unfused (default: the stack's)", "A"},
    {"tp-overlap", 0, 0, G_OPTION_ARG_STRING, &o->tp_overlap,
     "TP communication overlap (Megatron-Core --tp-comm-overlap, Transformer Engine userbuffers; needs tp > 1, --sp, "
     "--stack megatron-core): te (TE's default configuration) or a NeMo userbuffers_* configuration, none to turn off",
     "CFG"},
    {"compile", 0, 0, G_OPTION_ARG_NONE, &o->compile,
     "torch.compile per TransformerBlock (torchtitan's training.compile; needs --stack torchtitan and a Llama "
     "model; off by default, as in torchtitan)", NULL},
    {"cp", 0, 0, INT_FLAG, "Context-parallel degree: ring attention over cp ranks, inside DP (seq divisible by 2·cp)", "N"},
    {"units", 0, 0, G_OPTION_ARG_STRING, &o->units, "Memory units: GB (1e9 B, default) or GiB (2^30 B)", "U"},
    {"ep", 0, 0, INT_FLAG, "Expert parallelism: experts split over N ranks (MoE models; default 1)", "N"},
    {"etp", 0, 0, INT_FLAG, "Expert tensor parallelism: each expert over N ranks (default: tp)", "N"},
    {"imbalance", 0, 0, G_OPTION_ARG_STRING, &o->imbalance, "The busiest expert's tokens over the balanced share (default 1)", "F"},
    {NULL}};
#undef INT_FLAG
  GOptionGroup *g = g_option_group_new("plan", "Model, cluster and plan options:",
                                       "Show model, cluster and plan options", o, NULL);
  g_option_group_add_entries(g, entries);
  return g;
}

void px_plan_options_clear(PxPlanOptions *o) {
  char **strs[] = {&o->model, &o->cluster, &o->plan_file, &o->deepspeed, &o->gbs_tokens, &o->schedule,
                   &o->partition, &o->offload, &o->ckpt, &o->precision, &o->order, &o->workspace,
                   &o->units, &o->stack, &o->attention, &o->batch_note, &o->imbalance, &o->bucket,
                   &o->tp_overlap};
  for (gsize i = 0; i < G_N_ELEMENTS(strs); i++) g_clear_pointer(strs[i], g_free);
}

gboolean px_units_parse(const char *s, PxUnits *out) {
  if (!s || !g_ascii_strcasecmp(s, "GB")) { *out = (PxUnits){"GB", 1e9}; return TRUE; }
  if (!g_ascii_strcasecmp(s, "GiB")) { *out = (PxUnits){"GiB", 1073741824.0}; return TRUE; }
  return FALSE;
}

#define BAD(...)                                                              \
  do {                                                                        \
    g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, __VA_ARGS__);      \
    return FALSE;                                                             \
  } while (0)

gboolean px_plan_options_resolve(PxPlanOptions *o, gboolean need_cluster, PxModel **model_out,
                                 PxCluster **cluster_out, PxPlan *plan, GError **error) {
  px_plan_init(plan);
  /* [plan] model / cluster / nodes in a plan file name what it was made for */
  g_autofree char *file_model = NULL, *file_cluster = NULL;
  int file_nodes = -1;
  gboolean file_dp = FALSE;
  if (o->plan_file) {
    PxPlanIniTargets t;
    if (!px_plan_load_ini_targets(plan, o->plan_file, &t, error)) return FALSE;
    file_model = t.model;
    file_cluster = t.cluster;
    file_nodes = t.nodes;
    file_dp = t.has_dp;
  }
  const char *model_name = o->model ? o->model : file_model;
  const char *cluster_name = o->cluster ? o->cluster : file_cluster;
  if (!model_name) BAD("no model: give --model NAME|FILE (e.g. --model gpt2-124m)");
  g_autoptr(PxModel) model = px_model_load(model_name, error);
  if (!model) return FALSE;
  g_autoptr(PxCluster) cluster = NULL;
  if (cluster_name) {
    cluster = px_cluster_load(cluster_name, error);
    if (!cluster) return FALSE;
    int nodes = o->nodes > 0 ? o->nodes : file_nodes;
    if (o->gpus > 0 && o->nodes > 0)
      BAD("--gpus %d and --nodes %d both give the size: give one", o->gpus, o->nodes);
    if (o->gpus > (1 << 24)) BAD("--gpus %d is more than %d GPUs", o->gpus, 1 << 24);
    if (nodes > 0 && (gint64)nodes * cluster->gpus_per_node > (1 << 24))
      BAD("--nodes %d × %d GPUs is more than %d GPUs", nodes, cluster->gpus_per_node, 1 << 24);
    if (o->gpus > 0) {
      if (o->gpus < cluster->gpus_per_node) {
        cluster->gpus_per_node = o->gpus;
        cluster->nodes = 1;
      } else if (o->gpus % cluster->gpus_per_node) {
        BAD("--gpus %d is not a whole number of %d-GPU nodes", o->gpus, cluster->gpus_per_node);
      } else {
        cluster->nodes = o->gpus / cluster->gpus_per_node;
      }
    } else if (nodes > 0) {
      cluster->nodes = nodes;
    }
  } else if (need_cluster) {
    BAD("no cluster: give --cluster NAME|FILE (e.g. --cluster dgx-h100)");
  } else if (o->nodes > 0) {
    BAD("--nodes %d needs --cluster NAME|FILE (it says how many GPUs a node holds); or give --gpus", o->nodes);
  } else if (o->gpus > (1 << 24)) {
    BAD("--gpus %d is more than %d GPUs", o->gpus, 1 << 24);
  }
  /* flags override the file */
  if (o->tp > 0) plan->tp = o->tp;
  if (o->pp > 0) plan->pp = o->pp;
  if (o->dp > 0) plan->dp = o->dp;
  if (o->cp > 0) plan->cp = o->cp;
  /* the world: the cluster's GPUs, or without a cluster --gpus. dp not
   * stated anywhere: as many replicas as the world holds; without a cluster
   * --gpus must also agree with the degrees (a cluster's plan is validated
   * against its size later) */
  gboolean dp_given = o->dp > 0 || file_dp;
  gint64 gpus = cluster ? px_cluster_gpus(cluster) : o->gpus;
  if (gpus > 0 && plan->tp > 0 && plan->pp > 0 && plan->cp > 0) {
    gint64 tp_pp = (gint64)plan->tp * plan->pp * plan->cp;
    if (!dp_given && gpus % tp_pp == 0) plan->dp = (int)(gpus / tp_pp);
    else if (!cluster && !dp_given) BAD("--gpus %d is not a multiple of tp·cp·pp = %" G_GINT64_FORMAT, o->gpus, tp_pp);
    else if (!cluster && (gint64)plan->dp * tp_pp != gpus)
      BAD("--gpus %d but dp·cp·tp·pp = %" G_GINT64_FORMAT " ranks: give one or make them agree", o->gpus,
          (gint64)plan->dp * tp_pp);
  }
  /* the values ds_config's batch rule and "auto" entries need, before it */
  if (o->gbs > 0 && o->gbs_tokens) BAD("--gbs %d and --gbs-tokens %s both give the global batch: give one", o->gbs, o->gbs_tokens);
  if (o->seq > 0) plan->seq = o->seq;
  if (o->precision && !px_precision_parse(o->precision, &plan->precision))
    BAD("--precision '%s' is not one of fp32, fp16, bf16, fp8", o->precision);
  int tokens_gbs = 0;
  if (o->gbs_tokens) {
    double tokens, dev;
    int seq = plan->seq > 0 ? plan->seq : model->desc.default_seq;
    if (!px_parse_count(o->gbs_tokens, &tokens)) BAD("--gbs-tokens '%s' is not a token count (e.g. 4M)", o->gbs_tokens);
    if (!px_plan_gbs_from_tokens(tokens, seq, &tokens_gbs, &dev, error)) return FALSE;
    g_free(o->batch_note);
    o->batch_note = g_strdup_printf("--gbs-tokens %s at seq %d: global batch %d sequences = %.0f tokens (%+.1f %%)",
                                    o->gbs_tokens, seq, tokens_gbs, (double)tokens_gbs * seq, 100 * dev);
  }
  if (o->deepspeed) {
    PxDsOverrides cli = {MAX(o->mbs, 0), o->gbs > 0 ? o->gbs : tokens_gbs, o->precision != NULL, model->desc.hidden};
    if (!px_plan_load_deepspeed(plan, o->deepspeed, &cli, error)) return FALSE;
  }
  gboolean gbs_from_files = plan->gbs > 0;
  struct { int v; int *field; const char *name; } ints[] = {
    {o->vpp, &plan->vpp, "vpp"}, {o->mbs, &plan->mbs, "mbs"}, {o->gbs, &plan->gbs, "gbs"},
    {o->seq, &plan->seq, "seq"}, {o->zero, &plan->zero, "zero"}, {o->ckpt_interval, &plan->ckpt_interval, "ckpt-interval"},
    {o->dp, &plan->dp, "dp"}, {o->tp, &plan->tp, "tp"}, {o->pp, &plan->pp, "pp"}};
  if (o->zero > 3) BAD("--zero %d must be 0, 1, 2 or 3", o->zero);
  for (gsize i = 0; i < G_N_ELEMENTS(ints); i++) {
    if (ints[i].v == -1) continue;
    if (ints[i].v < 0 || (ints[i].v == 0 && strcmp(ints[i].name, "zero")))
      BAD("--%s %d must be %s", ints[i].name, ints[i].v, strcmp(ints[i].name, "zero") ? "at least 1" : "0..3");
    *ints[i].field = ints[i].v;
  }
  if (o->schedule && !px_schedule_parse(o->schedule, &plan->schedule))
    BAD("--schedule '%s' is not one of naive, gpipe, 1f1b, interleaved, zb-h1, zb-h2, zb-v, dualpipev", o->schedule);
  if (o->offload && !px_offload_parse(o->offload, &plan->offload))
    BAD("--offload '%s' is not one of none, optimizer, optimizer+params", o->offload);
  if (o->ckpt && !px_ckpt_parse(o->ckpt, &plan->ckpt))
    BAD("--ckpt '%s' is not one of none, selective, full", o->ckpt);
  if (o->precision && !px_precision_parse(o->precision, &plan->precision))
    BAD("--precision '%s' is not one of fp32, fp16, bf16, fp8", o->precision);
  if (o->stack && !px_stack_parse(o->stack, &plan->stack))
    BAD("--stack '%s' is not one of parallax, megatron-2021, megatron-core, deepspeed, fsdp, torchtitan", o->stack);
  if (o->attention && (!px_attention_parse(o->attention, &plan->attention) || plan->attention == PX_ATTN_DEFAULT))
    BAD("--attention '%s' is not one of flash, flash1, triton, unfused", o->attention);
  if (o->tp_overlap && !px_tp_overlap_parse(o->tp_overlap, &plan->tp_overlap))
    BAD("--tp-overlap '%s' is not one of " PX_TP_OVERLAP_NAMES, o->tp_overlap);
  if (o->order && !px_order_parse(o->order, plan->order))
    BAD("--order '%s' is not a permutation of tp,dp,pp", o->order);
  if (o->partition) {
    g_free(plan->partition);
    plan->partition = g_strdup(o->partition);
  }
  if (o->sp) plan->seq_parallel = TRUE;
  if (o->compile) plan->compile = TRUE;
  if (o->ep > 0) plan->ep = o->ep;
  if (o->etp > 0) plan->etp = o->etp;
  if (o->imbalance) {
    char *end = NULL;
    double f = g_ascii_strtod(o->imbalance, &end);
    if (!*o->imbalance || *end || !isfinite(f) || f < 1)
      BAD("--imbalance '%s' must be a number ≥ 1 (the busiest expert's tokens over the balanced share)", o->imbalance);
    plan->imbalance = f;
  }
  if (o->workspace && !px_parse_bytes(o->workspace, &plan->workspace_bytes))
    BAD("--workspace '%s' is not a size (e.g. 2GiB)", o->workspace);
  if (o->bucket && (!px_parse_bytes(o->bucket, &plan->bucket_bytes) || plan->bucket_bytes <= 0))
    BAD("--bucket '%s' is not a size above 0 (e.g. 25MB)", o->bucket);
  /* per-GPU sizes: 1e308 B was planned (a 300-digit total, "does not fit") */
  if (o->workspace && plan->workspace_bytes > PX_PLAN_MAX_BYTES)
    BAD("--workspace '%s' is more than 1 PiB per GPU", o->workspace);
  if (o->bucket && plan->bucket_bytes > PX_PLAN_MAX_BYTES)
    BAD("--bucket '%s' is more than 1 PiB", o->bucket);
  if (o->vpp > 1 && !o->schedule && plan->schedule != PX_SCHED_INTERLEAVED) plan->schedule = PX_SCHED_INTERLEAVED;
  /* flags that only mean something with another: ignored before */
  if (o->ckpt_interval > 0 && plan->ckpt != PX_CKPT_FULL)
    BAD("--ckpt-interval %d needs --ckpt full (checkpointing is %s)", o->ckpt_interval, px_ckpt_name(plan->ckpt));
  /* a plan file's interval without its full checkpointing was ignored (the flag's was refused above) */
  if (o->ckpt_interval < 0 && plan->ckpt_interval > 1 && plan->ckpt != PX_CKPT_FULL)
    BAD("%s: [plan] ckpt_interval = %d needs ckpt = full (checkpointing is %s)", o->plan_file ? o->plan_file : "plan",
        plan->ckpt_interval, px_ckpt_name(plan->ckpt));
  if (tokens_gbs) plan->gbs = tokens_gbs;
  o->batch_given = gbs_from_files || o->gbs > 0 || o->gbs_tokens;
  if (o->batch_note) fprintf(stderr, "%s: %s\n", g_get_prgname(), o->batch_note);
  if (!px_plan_validate(plan, model, cluster, error)) return FALSE;
  *model_out = g_steal_pointer(&model);
  if (cluster_out) *cluster_out = g_steal_pointer(&cluster);
  return TRUE;
}

gboolean px_parse_command_line(const char *cmd, const char *summary, GOptionEntry *entries,
                               PxPlanOptions *o, int *argc, char ***argv) {
  g_autofree char *param = g_strdup_printf("— %s", summary);
  g_autoptr(GOptionContext) ctx = g_option_context_new(param);
  GOptionEntry *decimal = entries ? px_option_entries_decimal(entries) : NULL;
  if (o) {
    /* one main group: --help lists the command's and the plan's options */
    GOptionGroup *g = px_plan_options_group(o);
    if (decimal) g_option_group_add_entries(g, decimal);
    g_option_context_set_main_group(ctx, g);
  } else if (decimal) {
    g_option_context_add_main_entries(ctx, decimal, NULL);
  }
  g_set_prgname(cmd);
  g_autoptr(GError) error = NULL;
  gboolean parsed = g_option_context_parse(ctx, argc, argv, &error);
  if (decimal) px_option_entries_decimal_done(decimal);
  if (!parsed) {
    fprintf(stderr, "%s: %s\n", cmd, error->message);
  } else if (*argc > 1) {
    fprintf(stderr, "%s: unexpected argument '%s'\n", cmd, (*argv)[1]);
  } else {
    return TRUE;
  }
  if (o) px_plan_options_clear(o); /* the caller returns at once: nothing else frees them */
  return FALSE;
}

gboolean px_terminal_columns(gboolean ask_terminal, int *out, GError **error) {
  const char *cols = g_getenv("COLUMNS");
  if (cols && *cols) {
    char *end = NULL;
    errno = 0;
    gint64 v = g_ascii_strtoll(cols, &end, 10);
    if (*end || errno || v < 1 || v > PX_MAX_COLUMNS) {
      g_autofree char *shown = px_text_clip(cols, -1, 64);
      g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE,
                  "COLUMNS=%s is not a terminal width (a whole number of columns, 1..%d)", shown, PX_MAX_COLUMNS);
      return FALSE;
    }
    *out = (int)v;
    return TRUE;
  }
  struct winsize ws;
  *out = ask_terminal && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 100;
  return TRUE;
}

int px_cli_fail(const char *cmd, GError *error) {
  fprintf(stderr, "%s: %s\n", cmd, error ? error->message : "failed");
  return 1;
}

static void command_usage(const char *prog, const PxCommand *commands, gsize n, FILE *out) {
  fprintf(out, "usage: %s COMMAND [OPTIONS]\n\ncommands:\n", prog);
  for (gsize i = 0; i < n; i++) fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "\n'%s COMMAND --help' lists a command's options.\n", prog);
}

int px_command_main(const char *prog, const PxCommand *commands, gsize n, int argc, char **argv) {
  /* the user's locale for text (so that --help prints —, × and … rather
   * than '?'), a UTF-8 one when theirs is plain C; numbers stay "C" (1.5,
   * never 1,5) in every output */
  setlocale(LC_ALL, "");
  if (!g_get_charset(NULL)) setlocale(LC_CTYPE, "C.UTF-8");
  setlocale(LC_NUMERIC, "C");
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    command_usage(prog, commands, n, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  /* every message quotes what it refuses on one line: a newline in a value made it two or more
   * (--schedule $'a\nb'); no name, choice, number or path this tool takes holds a control character.
   * After "--" the words are launch's command's, which checks its own. */
  for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
    for (const char *c = argv[i]; *c; c++)
      if (g_ascii_iscntrl(*c)) {
        g_autofree char *shown = px_text_quote(argv[i], 200);
        fprintf(stderr, "%s: argument '%s' holds a control character (a newline, tab or escape): arguments are "
                "one line of text\n", prog, shown);
        return 2;
      }
  for (gsize i = 0; i < n; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "%s: unknown command '%s' (see %s --help)\n", prog, argv[1], prog);
  return 2;
}
