/* emit.c — a plan as Megatron-LM, DeepSpeed, torchtitan and plan.ini files
 * (see emit.h). */
#include "emit.h"
#include "config.h"
#include "memory.h"
#include "moe.h"
#include <errno.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include "partition.h"
#include "report.h"
#include "search.h"

G_DEFINE_QUARK(px-emit-error-quark, px_emit_error)

gboolean px_emit_format_parse(const char *s, PxEmitFormat *out) {
  static const struct { const char *name; PxEmitFormat f; } names[] = {
    {"ini", PX_EMIT_INI}, {"plan.ini", PX_EMIT_INI}, {"megatron", PX_EMIT_MEGATRON},
    {"deepspeed", PX_EMIT_DEEPSPEED}, {"torchtitan", PX_EMIT_TORCHTITAN}};
  for (gsize i = 0; s && i < G_N_ELEMENTS(names); i++)
    if (!g_ascii_strcasecmp(s, names[i].name)) {
      *out = names[i].f;
      return TRUE;
    }
  return FALSE;
}

/* ---- the prediction -------------------------------------------------------- */

gboolean px_emit_predict(const PxModel *model, const PxCluster *cluster, const PxPlan *plan, PxEmitInfo *info,
                         GError **error) {
  PxSearchCandidate c = {0};
  PxLayout *l = &c.layout;
  *l = (PxLayout){.tp = plan->tp, .pp = plan->pp, .dp = plan->dp, .vpp = plan->vpp, .mbs = plan->mbs,
                  .zero = (gint8)plan->zero, .offload = (gint8)plan->offload, .ckpt = (gint8)plan->ckpt,
                  .sp = (gint8)plan->seq_parallel, .schedule = (gint8)plan->schedule, .cp = plan->cp};
  for (int i = 0; i < 6; i++)
    if (!memcmp(px_search_orders()[i], plan->order, sizeof plan->order)) l->order = (gint8)i;
  if (!px_search_confirm(model, cluster, plan, &c, error)) return FALSE;
  info->have_prediction = TRUE;
  info->step_time_s = c.step_time;
  info->tokens_per_s = c.tokens_per_s;
  info->mfu = c.mfu;
  info->peak_memory = c.memory;
  info->capacity = (double)cluster->gpu_memory;
  info->fits = c.memory <= (double)cluster->gpu_memory;
  return TRUE;
}

/* ---- the header every file opens with --------------------------------------- */

static int nodes_of(const PxCluster *c, const PxPlan *p, int *gpus_per_node) {
  int world = px_plan_world(p);
  if (c && world % c->gpus_per_node == 0) {
    *gpus_per_node = c->gpus_per_node;
    return world / c->gpus_per_node;
  }
  *gpus_per_node = world;
  return 1;
}

/* Lines of the header, without a comment prefix. */
static GPtrArray *header_lines(const PxModel *model, const PxCluster *cluster, const PxPlan *p,
                               const PxEmitInfo *info) {
  GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
  g_ptr_array_add(a, g_strdup_printf("Emitted by %s (Parallax) for %s%s%s, %d GPUs.",
                                     info && info->command ? info->command : "parallax-sim", model->desc.name,
                                     cluster ? " on " : "", cluster ? cluster->name : "", px_plan_world(p)));
  g_autofree char *chunks = p->vpp > 1 ? g_strdup_printf(" (v = %d)", p->vpp) : g_strdup("");
  g_autofree char *cpx = p->cp > 1 ? g_strdup_printf(" × cp %d", p->cp) : g_strdup("");
  g_ptr_array_add(a, g_strdup_printf("Plan: dp %d%s × pp %d × tp %d, %s%s, micro-batch %d, global batch %d × %d "
                                     "tokens (m = %d), ZeRO-%d, offload %s, recompute %s, sequence parallel %s, %s.",
                                     p->dp, cpx, p->pp, p->tp, px_schedule_name(p->schedule), chunks, p->mbs, p->gbs,
                                     p->seq, p->m, p->zero, px_offload_name(p->offload), px_ckpt_name(p->ckpt),
                                     p->seq_parallel ? "on" : "off", px_precision_name(p->precision)));
  if (info && info->have_prediction) {
    g_autofree char *tok = px_format_count(info->tokens_per_s);
    g_ptr_array_add(a, g_strdup_printf("Predicted: step %.1f ms, %s tokens/s, MFU %.1f %%, peak memory %.1f GB "
                                       "per GPU (GB = 1e9 B) of %.1f GB: %s.",
                                       1e3 * info->step_time_s, tok, 100 * info->mfu, info->peak_memory / 1e9,
                                       info->capacity / 1e9, info->fits ? "fits" : "DOES NOT FIT"));
  } else {
    g_ptr_array_add(a, g_strdup("Predicted: no step time (no cluster given to simulate on)."));
  }
  return a;
}

static void append_header(GString *s, const char *prefix, const PxModel *model, const PxCluster *cluster,
                          const PxPlan *p, const PxEmitInfo *info) {
  g_autoptr(GPtrArray) lines = header_lines(model, cluster, p, info);
  for (guint i = 0; i < lines->len; i++) g_string_append_printf(s, "%s%s\n", prefix, (char *)lines->pdata[i]);
}

/* ---- Megatron-LM --------------------------------------------------------------- */

char *px_emit_megatron_layout(const PxModel *model, const PxPlan *plan, GError **error) {
  g_autoptr(PxPartition) part = px_partition_new(model, plan, NULL, error);
  if (!part) return NULL;
  GString *s = g_string_new(NULL);
  for (int k = 0; k < part->parts; k++) {
    if (k) g_string_append_c(s, '|');
    int blocks = 0;
    gboolean emb = FALSE, head = FALSE;
    for (int i = part->bounds[k]; i < part->bounds[k + 1]; i++) {
      PxLayerKind kind = model->layers[i].kind;
      blocks += kind == PX_LAYER_BLOCK;
      emb |= kind == PX_LAYER_EMBEDDING;
      head |= kind == PX_LAYER_LM_HEAD;
    }
    if (emb) g_string_append_c(s, 'E');
    if (blocks == 1) g_string_append_c(s, 't');
    else if (blocks > 1) g_string_append_printf(s, "t*%d", blocks);
    if (head) g_string_append_c(s, 'L');
  }
  return g_string_free(s, FALSE);
}

/* Is the partition Megatron's own default: the blocks split evenly over the
 * virtual stages, the embedding on the first and the head on the last? */
static gboolean megatron_default_split(const PxModel *model, const PxPlan *plan, const char *layout) {
  int parts = plan->pp * plan->vpp, L = model->desc.layers;
  if (L % parts) return FALSE;
  GString *s = g_string_new(NULL);
  for (int k = 0; k < parts; k++) {
    if (k) g_string_append_c(s, '|');
    if (k == 0) g_string_append_c(s, 'E');
    if (L / parts == 1) g_string_append_c(s, 't');
    else g_string_append_printf(s, "t*%d", L / parts);
    if (k == parts - 1) g_string_append_c(s, 'L');
  }
  gboolean same = !strcmp(s->str, layout);
  g_string_free(s, TRUE);
  return same;
}

static void flag(GString *s, const char *name, const char *value) {
  if (value) g_string_append_printf(s, "  %s %s\n", name, value);
  else g_string_append_printf(s, "  %s\n", name);
}
static void flag_int(GString *s, const char *name, gint64 v) {
  g_autofree char *t = g_strdup_printf("%" G_GINT64_FORMAT, v);
  flag(s, name, t);
}

/* Megatron-Core's MoE arguments (docs/moe.md): experts, router, the experts'
 * grid (folding: --expert-model-parallel-size, --expert-tensor-parallel-size)
 * and which layers are MoE as an explicit --moe-layer-freq list. */
static void emit_megatron_moe(GString *s, const PxModel *model, const PxPlan *p) {
  const PxModelDesc *d = &model->desc;
  flag_int(s, "--num-experts", d->experts);
  flag_int(s, "--moe-router-topk", d->top_k);
  flag_int(s, "--moe-ffn-hidden-size", d->expert_ffn);
  if (d->shared_experts > 0) flag_int(s, "--moe-shared-expert-intermediate-size", d->shared_experts * d->shared_ffn);
  flag_int(s, "--expert-model-parallel-size", MAX(p->ep, 1));
  flag_int(s, "--expert-tensor-parallel-size", px_plan_etp(p));
  flag(s, "--moe-router-load-balancing-type", "aux_loss");
  char coef[G_ASCII_DTOSTR_BUF_SIZE];
  flag(s, "--moe-aux-loss-coeff", g_ascii_dtostr(coef, sizeof coef, d->aux_loss_coef));
  flag(s, "--moe-token-dispatcher-type", "alltoall");
  flag(s, "--moe-grouped-gemm", NULL);
  if (d->capacity_factor > 0) {
    char cf[G_ASCII_DTOSTR_BUF_SIZE];
    flag(s, "--moe-expert-capacity-factor", g_ascii_dtostr(cf, sizeof cf, d->capacity_factor));
  }
  if (px_model_moe_blocks(d) != d->layers) {
    GString *list = g_string_new("\"[");
    for (int b = 0; b < d->layers; b++) g_string_append_printf(list, "%s%d", b ? "," : "", px_model_block_is_moe(d, b));
    g_string_append(list, "]\"");
    flag(s, "--moe-layer-freq", list->str);
    g_string_free(list, TRUE);
  }
}

char *px_emit_megatron(const PxModel *model, const PxCluster *cluster, const PxPlan *p, const PxEmitInfo *info,
                       GError **error) {
  const PxModelDesc *d = &model->desc;
  g_autofree char *layout = px_emit_megatron_layout(model, p, error);
  if (!layout) return NULL;
  GString *s = g_string_new("#!/usr/bin/env bash\n");
  append_header(s, "# ", model, cluster, p, info);
  g_string_append(s, "# Megatron-LM pretrain_gpt.py flags (megatron/training/arguments.py). Add your data,\n"
                     "# tokenizer (vocabulary of the plan: ");
  g_string_append_printf(s, "%d), optimizer and checkpoint flags after them.\n", d->vocab);
  /* what Megatron-LM cannot express is said, not dropped */
  if (p->schedule != PX_SCHED_1F1B && p->schedule != PX_SCHED_INTERLEAVED)
    g_string_append_printf(s, "# NOTE: Megatron-LM has no %s schedule; it runs 1F1B (interleaved with virtual "
                              "stages, placed round-robin%s): re-plan with --schedule %s for a prediction of "
                              "that.\n",
                           px_schedule_name(p->schedule), px_schedule_is_v(p->schedule) ? ", not in a V" : "",
                           p->vpp > 1 ? "interleaved" : "1f1b");
  if (p->zero >= 2)
    g_string_append_printf(s, "# NOTE: ZeRO-%d is Megatron FSDP here (--use-megatron-fsdp with sharding "
                              "strategy %s).\n", p->zero, p->zero == 2 ? "optim_grads" : "optim_grads_params");
  if (p->offload == PX_OFFLOAD_OPTIMIZER_PARAMS)
    g_string_append(s, "# NOTE: Megatron-LM offloads the optimizer only (--optimizer-cpu-offload); the parameters "
                       "stay on the GPU.\n");
  int gpn, nodes = nodes_of(cluster, p, &gpn);
  g_string_append_printf(s, "set -euo pipefail\n\nGPUS_PER_NODE=%d\nNNODES=%d\n", gpn, nodes);
  /* arguments.py asserts it with tensor parallelism (kernel order for the TP overlap) */
  if (p->tp > 1) g_string_append(s, "export CUDA_DEVICE_MAX_CONNECTIONS=1\n");
  /* TP communication overlap with a NeMo configuration: its per-GEMM settings
   * as the YAML Megatron-LM reads with --tp-comm-overlap-cfg (initialize.py
   * _initialize_tp_communicators hands it to TE's initialize_ub); TE's own
   * defaults need no file */
  const PxTpOverlapConfig *ub = px_tp_overlap_config(p->tp_overlap);
  if (ub && p->tp_overlap != PX_TPO_TE) {
    g_string_append_printf(s, "\n# TP communication overlap: NeMo's %s\ncat > tp_comm_overlap_cfg.yaml <<'EOF'\n",
                           px_tp_overlap_name(p->tp_overlap));
    struct { const char *name; const PxUbGemm *u; } gemms[] = {
      {"qkv_dgrad", &ub->qkv_dgrad}, {"qkv_wgrad", &ub->qkv_wgrad}, {"fc1_dgrad", &ub->fc1_dgrad},
      {"fc1_wgrad", &ub->fc1_wgrad}, {"qkv_fprop", &ub->qkv_fprop}, {"proj_dgrad", &ub->proj_dgrad},
      {"fc1_fprop", &ub->fc1_fprop}, {"fc2_dgrad", &ub->fc2_dgrad}, {"proj_fprop", &ub->proj_fprop},
      {"fc2_fprop", &ub->fc2_fprop}};
    for (gsize i = 0; i < G_N_ELEMENTS(gemms); i++) {
      const PxUbGemm *u = gemms[i].u;
      const char *tf[] = {"false", "true"};
      if (u->method == PX_UB_RING_EXCHANGE)
        g_string_append_printf(s, "%s: {method: ring_exchange, num_sm: %d, cga_size: %d, set_sm_margin: %s, aggregate: %s}\n",
                               gemms[i].name, u->num_sm, u->cga_size, tf[!!u->set_sm_margin], tf[!!u->aggregate]);
      else if (u->method == PX_UB_PIPELINE)
        g_string_append_printf(s, "%s: {method: pipeline, num_sm: %d, cga_size: %d, num_splits: %d, set_sm_margin: %s}\n",
                               gemms[i].name, u->num_sm, u->cga_size, u->num_splits, tf[!!u->set_sm_margin]);
      else
        g_string_append_printf(s, "%s: {method: bulk, num_sm: %d, cga_size: %d, set_sm_margin: %s}\n", gemms[i].name,
                               u->num_sm, u->cga_size, tf[!!u->set_sm_margin]);
    }
    g_string_append(s, "EOF\n");
  }
  g_string_append(s, "\nPARALLAX_ARGS=(\n");
  /* parallel sizes */
  flag_int(s, "--tensor-model-parallel-size", p->tp);
  flag_int(s, "--pipeline-model-parallel-size", p->pp);
  if (p->pp > 1 && !megatron_default_split(model, p, layout)) {
    g_autofree char *q = g_strdup_printf("\"%s\"", layout);
    flag(s, "--pipeline-model-parallel-layout", q);
  } else if (p->vpp > 1) {
    flag_int(s, "--num-layers-per-virtual-pipeline-stage", d->layers / (p->pp * p->vpp));
  }
  if (p->seq_parallel) flag(s, "--sequence-parallel", NULL);
  /* TP communication overlap (Transformer Engine userbuffers), as costed */
  if (ub) {
    flag(s, "--tp-comm-overlap", NULL);
    if (p->tp_overlap != PX_TPO_TE) flag(s, "--tp-comm-overlap-cfg", "tp_comm_overlap_cfg.yaml");
  }
  /* context parallelism: ring attention by p2p (Transformer Engine), the cost model's */
  if (p->cp > 1) {
    flag_int(s, "--context-parallel-size", p->cp);
    flag(s, "--cp-comm-type", "p2p");
  }
  /* batch */
  flag_int(s, "--micro-batch-size", p->mbs);
  flag_int(s, "--global-batch-size", p->gbs);
  /* recompute */
  if (p->ckpt == PX_CKPT_SELECTIVE) {
    flag(s, "--recompute-granularity", "selective");
  } else if (p->ckpt == PX_CKPT_FULL) {
    flag(s, "--recompute-granularity", "full");
    flag(s, "--recompute-method", "uniform");
    flag_int(s, "--recompute-num-layers", p->ckpt_interval);
  }
  /* ZeRO and the overlaps the cost model assumed (DP reduction overlapping the
   * backward when the plan buckets it) */
  gboolean overlap = p->bucket_bytes > 0;
  /* Megatron FSDP v1 turns the distributed optimizer on itself, v2 refuses it */
  if (p->zero == 1) flag(s, "--use-distributed-optimizer", NULL);
  if (p->zero >= 2) {
    flag(s, "--use-megatron-fsdp", NULL);
    flag(s, "--data-parallel-sharding-strategy", p->zero == 2 ? "optim_grads" : "optim_grads_params");
    flag(s, "--ckpt-format", "fsdp_dtensor"); /* validate_args: Megatron-FSDP requires it */
  }
  if (p->offload != PX_OFFLOAD_NONE) {
    flag(s, "--optimizer-cpu-offload", NULL);
    flag(s, "--use-precision-aware-optimizer", NULL); /* arguments.py asserts it with the offload */
  }
  if (overlap) {
    flag(s, "--overlap-grad-reduce", NULL);
    if (p->zero >= 1) flag(s, "--overlap-param-gather", NULL);
    g_autofree char *elems = g_strdup_printf("%.0f", p->bucket_bytes / (p->precision == PX_PREC_FP32 ? 4 : 2));
    flag(s, "--ddp-bucket-size", elems);
  }
  /* precision */
  if (p->precision == PX_PREC_BF16) flag(s, "--bf16", NULL);
  else if (p->precision == PX_PREC_FP16) flag(s, "--fp16", NULL);
  else if (p->precision == PX_PREC_FP8) {
    /* Transformer Engine's delayed scaling with the history the memory model
     * counts (TE's DelayedScaling default; Megatron's own default is 1) */
    flag(s, "--bf16", NULL);
    flag(s, "--fp8-format", "hybrid");
    flag(s, "--fp8-recipe", "delayed");
    flag_int(s, "--fp8-amax-history-len", PX_FP8_AMAX_HISTORY);
    flag(s, "--fp8-amax-compute-algo", "max");
  }
  /* model shape */
  flag_int(s, "--num-layers", d->layers);
  flag_int(s, "--hidden-size", d->hidden);
  flag_int(s, "--ffn-hidden-size", d->ffn);
  flag_int(s, "--num-attention-heads", d->heads);
  if (d->kv_heads != d->heads) {
    flag(s, "--group-query-attention", NULL);
    flag_int(s, "--num-query-groups", d->kv_heads);
  }
  flag_int(s, "--seq-length", p->seq);
  flag_int(s, "--max-position-embeddings", MAX(d->max_seq, p->seq));
  if (d->ffn_kind == PX_FFN_SWIGLU) flag(s, "--swiglu", NULL);
  if (d->ffn_kind == PX_FFN_RELU2) flag(s, "--squared-relu", NULL);
  flag(s, "--normalization", d->norm == PX_NORM_RMSNORM ? "RMSNorm" : "LayerNorm");
  flag(s, "--position-embedding-type", d->pos == PX_POS_ROPE ? "rope" : "learned_absolute");
  if (!d->tied) flag(s, "--untie-embeddings-and-output-weights", NULL);
  if (!d->bias) flag(s, "--disable-bias-linear", NULL);
  if (!d->dropout) {
    flag(s, "--attention-dropout", "0.0");
    flag(s, "--hidden-dropout", "0.0");
  }
  if (d->experts > 0) emit_megatron_moe(s, model, p);
  g_string_append(s, ")\n\ntorchrun --nproc-per-node \"$GPUS_PER_NODE\" --nnodes \"$NNODES\" \\\n"
                     "  --node-rank \"${NODE_RANK:-0}\" --master-addr \"${MASTER_ADDR:-localhost}\" "
                     "--master-port \"${MASTER_PORT:-6000}\" \\\n"
                     "  pretrain_gpt.py \"${PARALLAX_ARGS[@]}\" \"$@\"\n");
  return g_string_free(s, FALSE);
}

/* ---- DeepSpeed --------------------------------------------------------------- */

char *px_emit_deepspeed_config(const PxModel *model, const PxPlan *p, const PxEmitInfo *info) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  g_autoptr(GPtrArray) lines = header_lines(model, NULL, p, info);
  g_ptr_array_add(lines, NULL);
  g_autofree char *header = g_strjoinv(" ", (char **)lines->pdata);
  px_json_member_string(b, "_parallax", header);
  px_json_member_int(b, "train_batch_size", p->gbs);
  px_json_member_int(b, "train_micro_batch_size_per_gpu", p->mbs);
  px_json_member_int(b, "gradient_accumulation_steps", p->m);
  json_builder_set_member_name(b, "bf16");
  json_builder_begin_object(b);
  px_json_member_bool(b, "enabled", p->precision == PX_PREC_BF16 || p->precision == PX_PREC_FP8);
  json_builder_end_object(b);
  json_builder_set_member_name(b, "fp16");
  json_builder_begin_object(b);
  px_json_member_bool(b, "enabled", p->precision == PX_PREC_FP16);
  json_builder_end_object(b);
  json_builder_set_member_name(b, "zero_optimization");
  json_builder_begin_object(b);
  px_json_member_int(b, "stage", p->zero);
  if (p->offload != PX_OFFLOAD_NONE) {
    json_builder_set_member_name(b, "offload_optimizer");
    json_builder_begin_object(b);
    px_json_member_string(b, "device", "cpu");
    px_json_member_bool(b, "pin_memory", TRUE);
    json_builder_end_object(b);
  }
  if (p->offload == PX_OFFLOAD_OPTIMIZER_PARAMS) {
    json_builder_set_member_name(b, "offload_param");
    json_builder_begin_object(b);
    px_json_member_string(b, "device", "cpu");
    px_json_member_bool(b, "pin_memory", TRUE);
    json_builder_end_object(b);
  }
  /* the DP reduction overlaps the backward only when the plan buckets it */
  px_json_member_bool(b, "overlap_comm", p->bucket_bytes > 0);
  if (p->bucket_bytes > 0)
    px_json_member_int(b, "reduce_bucket_size", (gint64)(p->bucket_bytes / (p->precision == PX_PREC_FP32 ? 4 : 2)));
  json_builder_end_object(b);
  if (p->ckpt == PX_CKPT_FULL) {
    json_builder_set_member_name(b, "activation_checkpointing");
    json_builder_begin_object(b);
    px_json_member_bool(b, "partition_activations", p->tp > 1 && p->seq_parallel);
    px_json_member_bool(b, "contiguous_memory_optimization", FALSE);
    px_json_member_bool(b, "cpu_checkpointing", FALSE);
    json_builder_end_object(b);
  }
  json_builder_set_member_name(b, "pipeline");
  json_builder_begin_object(b);
  px_json_member_int(b, "stages", p->pp);
  px_json_member_string(b, "partition", p->partition);
  px_json_member_int(b, "activation_checkpoint_interval", p->ckpt == PX_CKPT_FULL ? p->ckpt_interval : 0);
  json_builder_end_object(b);
  if (p->tp > 1) {
    json_builder_set_member_name(b, "tensor_parallel");
    json_builder_begin_object(b);
    px_json_member_int(b, "autotp_size", p->tp);
    json_builder_end_object(b);
  }
  json_builder_end_object(b);
  g_autoptr(JsonGenerator) g = json_generator_new();
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  json_generator_set_root(g, root);
  json_generator_set_pretty(g, TRUE);
  char *text = json_generator_to_data(g, NULL);
  char *out = g_strconcat(text, "\n", NULL);
  g_free(text);
  return out;
}

char *px_emit_deepspeed_launch(const PxModel *model, const PxCluster *cluster, const PxPlan *p,
                               const PxEmitInfo *info) {
  GString *s = g_string_new("#!/usr/bin/env bash\n");
  append_header(s, "# ", model, cluster, p, info);
  g_string_append(s, "# The DeepSpeed launcher for ds_config.json beside this file. TRAIN_SCRIPT builds the model\n");
  g_string_append_printf(s, "# as a deepspeed.pipe.PipelineModule(layers, num_stages=%d, partition_method=\"%s\"%s)\n",
                         p->pp, p->partition,
                         p->ckpt == PX_CKPT_FULL ? ", activation_checkpoint_interval from the config" : "");
  g_string_append_printf(s, "# and passes --deepspeed_config; dp = %d comes from the world of %d GPUs.\n", p->dp,
                         px_plan_world(p));
  if (p->ckpt == PX_CKPT_SELECTIVE)
    g_string_append(s, "# NOTE: DeepSpeed has no selective recompute switch: the model checkpoints its attention "
                       "core itself.\n");
  if (p->zero >= 2 && p->pp > 1)
    g_string_append(s, "# NOTE: DeepSpeed's pipeline engine supports ZeRO stages 0 and 1 only.\n");
  if (p->tp_overlap != PX_TPO_NONE)
    g_string_append(s, "# NOTE: DeepSpeed has no TP communication overlap (the plan's --tp-overlap is Megatron-Core's).\n");
  if (p->schedule != PX_SCHED_1F1B && p->pp > 1)
    g_string_append_printf(s, "# NOTE: DeepSpeed's pipeline engine runs 1F1B, not %s.\n", px_schedule_name(p->schedule));
  if (p->cp > 1)
    g_string_append_printf(s, "# NOTE: DeepSpeed's config has no ring context parallelism (its sequence parallelism is "
                              "Ulysses all-to-all): the model must split each sequence over cp = %d ranks itself.\n", p->cp);
  if (p->precision == PX_PREC_FP8)
    g_string_append(s, "# NOTE: ds_config.json has no FP8 switch: bf16 below; the model's Linear layers must run "
                       "under Transformer Engine's fp8_autocast (delayed scaling).\n");
  int gpn, nodes = nodes_of(cluster, p, &gpn);
  g_string_append_printf(s, "set -euo pipefail\nHERE=$(cd \"$(dirname \"$0\")\" && pwd)\n"
                            "TRAIN_SCRIPT=${TRAIN_SCRIPT:-train.py}\n\n"
                            "deepspeed --num_nodes %d --num_gpus %d \"$TRAIN_SCRIPT\" \\\n"
                            "  --deepspeed --deepspeed_config \"$HERE/ds_config.json\" \"$@\"\n",
                         nodes, gpn);
  return g_string_free(s, FALSE);
}

/* ---- torchtitan ------------------------------------------------------------- */

/* torch.distributed.pipelining's schedule names (get_schedule_class) */
static const char *torchtitan_schedule(PxScheduleKind k) {
  switch (k) {
    case PX_SCHED_GPIPE: return "GPipe";
    case PX_SCHED_INTERLEAVED: return "Interleaved1F1B";
    case PX_SCHED_ZB_H1:
    case PX_SCHED_ZB_H2: return "InterleavedZeroBubble";
    case PX_SCHED_ZB_V: return "ZBVZeroBubble";
    case PX_SCHED_DUALPIPEV: return "DualPipeV";
    default: return "1F1B";
  }
}

char *px_emit_torchtitan(const PxModel *model, const PxCluster *cluster, const PxPlan *p, const PxEmitInfo *info) {
  const PxModelDesc *d = &model->desc;
  GString *s = g_string_new(NULL);
  append_header(s, "# ", model, cluster, p, info);
  g_string_append(s, "# A torchtitan job config (torchtitan 0.2.x TOML schema): "
                     "torchrun ... -m torchtitan.train --job.config_file THIS_FILE\n");
  g_string_append_printf(s, "# Model shape: %d layers, hidden %d, %d heads (%d kv), FFN %d, vocab %d: pick the "
                            "[model] flavor that matches it.\n", d->layers, d->hidden, d->heads, d->kv_heads,
                         d->ffn, d->vocab);
  if (p->stack != PX_STACK_TORCHTITAN && info && info->have_prediction)
    g_string_append_printf(s, "# NOTE: the prediction above is the %s stack's; plan with --stack torchtitan for "
                              "torchtitan's own (fp32 reduce-scatters, fused AdamW, op-level selective AC: "
                              "docs/cost.md section 4).\n", px_stack_name(p->stack));
  if (p->zero == 1)
    g_string_append(s, "# NOTE: torchtitan shards with FSDP2: ZeRO-1 becomes sharded optimizer states and gradients "
                       "(never resharding parameters after forward, as ZeRO-2).\n");
  if (p->precision == PX_PREC_FP16)
    g_string_append(s, "# NOTE: torchtitan trains in bf16 or fp32, not fp16: bfloat16 below.\n");
  if (p->tp_overlap != PX_TPO_NONE)
    g_string_append(s, "# NOTE: the plan's --tp-overlap is Transformer Engine's userbuffers (Megatron-Core); torchtitan's "
                       "async TP (enable_async_tensor_parallel) is another mechanism, not costed: left off.\n");
  if (p->offload == PX_OFFLOAD_OPTIMIZER)
    g_string_append(s, "# NOTE: torchtitan's CPU offload (FSDP2) moves parameters, gradients and optimizer states.\n");
  if (p->schedule == PX_SCHED_NAIVE && p->pp > 1)
    g_string_append(s, "# NOTE: torchtitan has no naive schedule; 1F1B below.\n");
  if (p->schedule == PX_SCHED_ZB_H2 && p->pp > 1)
    g_string_append(s, "# NOTE: torch.distributed.pipelining has no ZB-H2; InterleavedZeroBubble (ZB-H1's) below.\n");
  if (p->precision == PX_PREC_FP8)
    g_string_append(s, "# NOTE: torchtitan's FP8 is torchao's float8 (converters = [\"float8\"] under [model]), "
                       "with dynamic scaling, not Transformer Engine's delayed scaling the plan was costed with.\n");
  /* a TOML basic string: a '"' or '\\' in the name ended it or began an escape (the name is one
   * line of text, px_text_is_line: nothing else needs escaping) */
  GString *toml_name = g_string_new(NULL);
  for (const char *c = d->name; *c; c++) {
    if (*c == '"' || *c == '\\') g_string_append_c(toml_name, '\\');
    g_string_append_c(toml_name, *c);
  }
  g_string_append_printf(s, "\n[job]\ndescription = \"Parallax plan: %s, dp %d x pp %d x tp %d\"\n", toml_name->str, p->dp,
                         p->pp, p->tp);
  g_string_free(toml_name, TRUE);
  g_string_append(s, "\n[training]\n");
  /* local_batch_size is per data-parallel rank: the whole step's share */
  g_string_append_printf(s, "local_batch_size = %d\nglobal_batch_size = %d\nseq_len = %d\n", p->gbs / p->dp, p->gbs,
                         p->seq);
  g_string_append_printf(s, "mixed_precision_param = \"%s\"\n", p->precision == PX_PREC_FP32 ? "float32" : "bfloat16");
  if (p->offload != PX_OFFLOAD_NONE) g_string_append(s, "enable_cpu_offload = true\n");
  /* ZeRO-0 replicates (DDP); ZeRO 1-3 shard with FSDP2 */
  int replicate = p->zero == 0 ? p->dp : 1, shard = p->zero == 0 ? 1 : p->dp;
  g_string_append(s, "\n[parallelism]\n");
  g_string_append_printf(s, "data_parallel_replicate_degree = %d\ndata_parallel_shard_degree = %d\n", replicate, shard);
  if (p->zero >= 1)
    g_string_append_printf(s, "fsdp_reshard_after_forward = \"%s\"\n", p->zero == 3 ? "always" : "never");
  g_string_append_printf(s, "tensor_parallel_degree = %d\n", p->tp);
  if (p->tp > 1 && !p->seq_parallel)
    g_string_append(s, "# torchtitan always uses sequence parallelism with tensor parallelism\n");
  g_string_append_printf(s, "pipeline_parallel_degree = %d\n", p->pp);
  if (p->pp > 1) {
    g_string_append_printf(s, "pipeline_parallel_schedule = \"%s\"\n", torchtitan_schedule(p->schedule));
    g_string_append_printf(s, "pipeline_parallel_microbatch_size = %d\n", p->mbs);
    if (d->layers % (p->pp * p->vpp) == 0)
      g_string_append_printf(s, "pipeline_parallel_layers_per_stage = %d\n", d->layers / (p->pp * p->vpp));
  }
  g_string_append_printf(s, "context_parallel_degree = %d\n", MAX(p->cp, 1));
  g_string_append(s, "\n[activation_checkpoint]\n");
  g_string_append_printf(s, "mode = \"%s\"\n", px_ckpt_name(p->ckpt));
  if (p->ckpt == PX_CKPT_SELECTIVE) g_string_append(s, "selective_ac_option = \"op\"\n");
  /* --compile: torch.compile per TransformerBlock, what the profile costs
   * (the loss, 0.2.x's other default component, is not) */
  if (p->compile) g_string_append(s, "\n[compile]\nenable = true\ncomponents = [\"model\"]\n");
  return g_string_free(s, FALSE);
}

/* ---- plan.ini ------------------------------------------------------------------- */

char *px_emit_ini(const PxModel *model, const PxCluster *cluster, const PxPlan *p, const PxEmitInfo *info) {
  GString *s = g_string_new(NULL);
  append_header(s, "# ", model, cluster, p, info);
  g_autofree char *ini = px_plan_to_ini(p);
  g_string_append(s, ini);
  const char *m = info && info->model_name ? info->model_name : model->desc.name;
  g_string_append_printf(s, "model = %s\n", m);
  if (cluster) {
    const char *c = info && info->cluster_name ? info->cluster_name : cluster->name;
    g_string_append_printf(s, "cluster = %s\nnodes = %d\n", c, cluster->nodes);
  }
  return g_string_free(s, FALSE);
}

/* ---- files ---------------------------------------------------------------------- */

static gboolean write_file(const char *dir, const char *name, const char *text, gboolean executable,
                           GPtrArray *written, GError **error) {
  g_autofree char *path = g_build_filename(dir, name, NULL);
  if (!px_file_write(path, text, strlen(text), PX_EMIT_ERROR, PX_EMIT_ERROR_IO, error)) return FALSE;
  if (executable) g_chmod(path, 0755);
  if (written) g_ptr_array_add(written, g_steal_pointer(&path));
  return TRUE;
}

gboolean px_emit_write(PxEmitFormat fmt, const char *dir, const PxModel *model, const PxCluster *cluster,
                       const PxPlan *plan, const PxEmitInfo *info, GPtrArray *written, GError **error) {
  if (model->desc.experts > 0 && (fmt == PX_EMIT_DEEPSPEED || fmt == PX_EMIT_TORCHTITAN)) {
    g_set_error(error, PX_EMIT_ERROR, PX_EMIT_ERROR_FORMAT,
                "--emit %s: these launch files would describe %s as a dense model (they carry no experts); "
                "emit megatron or ini", fmt == PX_EMIT_DEEPSPEED ? "deepspeed" : "torchtitan", model->desc.name);
    return FALSE;
  }
  if (!px_output_dir_make(dir, PX_EMIT_ERROR, PX_EMIT_ERROR_IO, error)) return FALSE;
  switch (fmt) {
    case PX_EMIT_MEGATRON: {
      g_autofree char *t = px_emit_megatron(model, cluster, plan, info, error);
      return t && write_file(dir, "pretrain_gpt.sh", t, TRUE, written, error);
    }
    case PX_EMIT_DEEPSPEED: {
      g_autofree char *c = px_emit_deepspeed_config(model, plan, info);
      g_autofree char *l = px_emit_deepspeed_launch(model, cluster, plan, info);
      return write_file(dir, "ds_config.json", c, FALSE, written, error) &&
             write_file(dir, "launch_deepspeed.sh", l, TRUE, written, error);
    }
    case PX_EMIT_TORCHTITAN: {
      g_autofree char *t = px_emit_torchtitan(model, cluster, plan, info);
      return write_file(dir, "torchtitan.toml", t, FALSE, written, error);
    }
    case PX_EMIT_INI:
    default: {
      g_autofree char *t = px_emit_ini(model, cluster, plan, info);
      return write_file(dir, "plan.ini", t, FALSE, written, error);
    }
  }
}

gboolean px_emit_check(const char *emit, const char *out, GError **error) {
  PxEmitFormat fmt;
  if (px_emit_format_parse(emit, &fmt) || (!out && emit && g_str_has_suffix(emit, ".ini"))) return TRUE;
  g_set_error(error, PX_EMIT_ERROR, PX_EMIT_ERROR_FORMAT,
              "--emit '%s' is not one of megatron, deepspeed, torchtitan, ini (or a FILE.ini without --out)", emit);
  return FALSE;
}

gboolean px_emit_to(const char *emit, const char *out, const PxModel *model, const PxCluster *cluster,
                    const PxPlan *plan, const PxEmitInfo *info, GPtrArray *written, GError **error) {
  PxEmitFormat fmt;
  if (!px_emit_check(emit, out, error)) return FALSE;
  if (px_emit_format_parse(emit, &fmt))
    return px_emit_write(fmt, out ? out : ".", model, cluster, plan, info, written, error);
  g_autofree char *t = px_emit_ini(model, cluster, plan, info);
  if (!px_file_write(emit, t, strlen(t), PX_EMIT_ERROR, PX_EMIT_ERROR_IO, error)) return FALSE;
  if (written) g_ptr_array_add(written, g_strdup(emit));
  return TRUE;
}
