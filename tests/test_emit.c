/* test_emit.c — the launch files of three plans, every field against
 * hand-written expectations:
 *   GPT-3 175B PTD-P (Narayanan et al. 2021, Table 1: t = 8, p = 8 on 1024
 *     A100, batch 1536, sequence 2048, full recompute),
 *   Llama-2 70B ZeRO-3 (pure data parallelism over 64 H100, full recompute),
 *   Llama-3 8B interleaved 1F1B (tp 2 + SP, pp 4, v = 2, selective recompute).
 * The Megatron flags are those of megatron/training/arguments.py; DeepSpeed
 * keys of deepspeed/runtime/config.py (and the file reads back through
 * px_plan_load_deepspeed); torchtitan keys of torchtitan 0.2.x job_config.py. */
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include "emit.h"

typedef struct {
  PxModel *model;
  PxCluster *cluster;
  PxPlan plan;
} Case;

static void case_load(Case *c, const char *model, const char *cluster, int gpus) {
  g_autoptr(GError) err = NULL;
  c->model = px_model_load(model, &err);
  g_assert_no_error(err);
  c->cluster = px_cluster_load(cluster, &err);
  g_assert_no_error(err);
  c->cluster->nodes = gpus / c->cluster->gpus_per_node;
  px_plan_init(&c->plan);
}

static void case_validate(Case *c) {
  g_autoptr(GError) err = NULL;
  g_assert_true(px_plan_validate(&c->plan, c->model, c->cluster, &err));
  g_assert_no_error(err);
}

static void case_clear(Case *c) {
  px_plan_clear(&c->plan);
  px_cluster_free(c->cluster);
  px_model_free(c->model);
}

static void gpt3_ptdp(Case *c) {
  case_load(c, "gpt3-175b", "dgx-a100-80g", 1024);
  c->plan.tp = 8;
  c->plan.pp = 8;
  c->plan.dp = 16;
  c->plan.mbs = 1;
  c->plan.gbs = 1536;
  c->plan.seq = 2048;
  c->plan.ckpt = PX_CKPT_FULL;
  c->plan.ckpt_interval = 1;
  c->plan.precision = PX_PREC_BF16;
  case_validate(c);
}

static void llama2_zero3(Case *c) {
  case_load(c, "llama2-70b", "dgx-h100", 64);
  c->plan.dp = 64;
  c->plan.zero = 3;
  c->plan.mbs = 1;
  c->plan.gbs = 512;
  c->plan.seq = 4096;
  c->plan.ckpt = PX_CKPT_FULL;
  c->plan.ckpt_interval = 1;
  c->plan.bucket_bytes = 1e9; /* 5e8 bf16 elements: the reduction overlaps the backward */
  case_validate(c);
}

static void llama3_interleaved(Case *c) {
  case_load(c, "llama3-8b", "dgx-h100", 32);
  c->plan.tp = 2;
  c->plan.pp = 4;
  c->plan.dp = 4;
  c->plan.vpp = 2;
  c->plan.schedule = PX_SCHED_INTERLEAVED;
  c->plan.seq_parallel = TRUE;
  c->plan.mbs = 1;
  c->plan.gbs = 256;
  c->plan.seq = 8192;
  c->plan.ckpt = PX_CKPT_SELECTIVE;
  c->plan.zero = 1;
  g_free(c->plan.partition);
  c->plan.partition = g_strdup("type:TransformerLayer"); /* blocks balanced: 4 per virtual stage */
  case_validate(c);
}

/* ---- Megatron ------------------------------------------------------------- */

/* The flags between "PARALLAX_ARGS=(" and ")", one per line. */
static GPtrArray *megatron_args(const char *script) {
  GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
  const char *start = strstr(script, "PARALLAX_ARGS=(\n");
  g_assert_nonnull(start);
  g_auto(GStrv) lines = g_strsplit(start + strlen("PARALLAX_ARGS=(\n"), "\n", -1);
  for (char **l = lines; *l && strcmp(*l, ")"); l++) g_ptr_array_add(a, g_strdup(g_strstrip(*l)));
  return a;
}

static void assert_megatron(const Case *c, const char *const *expect) {
  PxEmitInfo info = {.command = "test"};
  g_autoptr(GError) err = NULL;
  g_autofree char *s = px_emit_megatron(c->model, c->cluster, &c->plan, &info, &err);
  g_assert_no_error(err);
  g_assert_true(g_str_has_prefix(s, "#!/usr/bin/env bash\n# Emitted by test (Parallax) for "));
  g_autoptr(GPtrArray) got = megatron_args(s);
  guint n = g_strv_length((char **)expect);
  for (guint i = 0; i < MIN(n, got->len); i++) g_assert_cmpstr(got->pdata[i], ==, expect[i]);
  g_assert_cmpuint(got->len, ==, n);
}

static void test_megatron_gpt3(void) {
  Case c;
  gpt3_ptdp(&c);
  const char *expect[] = {
    "--tensor-model-parallel-size 8", "--pipeline-model-parallel-size 8",
    /* 96 layers / 8 stages = 12 blocks each, embedding first, head last:
     * Megatron's own split, so no layout flag */
    "--micro-batch-size 1", "--global-batch-size 1536",
    "--recompute-granularity full", "--recompute-method uniform", "--recompute-num-layers 1",
    "--bf16",
    "--num-layers 96", "--hidden-size 12288", "--ffn-hidden-size 49152", "--num-attention-heads 96",
    "--seq-length 2048", "--max-position-embeddings 2048",
    "--normalization LayerNorm", "--position-embedding-type learned_absolute", NULL};
  assert_megatron(&c, expect);
  case_clear(&c);
}

static void test_megatron_llama2(void) {
  Case c;
  llama2_zero3(&c);
  const char *expect[] = {
    "--tensor-model-parallel-size 1", "--pipeline-model-parallel-size 1",
    "--micro-batch-size 1", "--global-batch-size 512",
    "--recompute-granularity full", "--recompute-method uniform", "--recompute-num-layers 1",
    "--use-megatron-fsdp", "--data-parallel-sharding-strategy optim_grads_params", "--ckpt-format fsdp_dtensor",
    "--overlap-grad-reduce", "--overlap-param-gather", "--ddp-bucket-size 500000000",
    "--bf16",
    "--num-layers 80", "--hidden-size 8192", "--ffn-hidden-size 28672", "--num-attention-heads 64",
    "--group-query-attention", "--num-query-groups 8",
    "--seq-length 4096", "--max-position-embeddings 4096",
    "--swiglu", "--normalization RMSNorm", "--position-embedding-type rope",
    "--untie-embeddings-and-output-weights", "--disable-bias-linear",
    "--attention-dropout 0.0", "--hidden-dropout 0.0", NULL};
  assert_megatron(&c, expect);
  case_clear(&c);
}

static void test_megatron_llama3(void) {
  Case c;
  llama3_interleaved(&c);
  const char *expect[] = {
    "--tensor-model-parallel-size 2", "--pipeline-model-parallel-size 4",
    "--num-layers-per-virtual-pipeline-stage 4", /* 32 / (4 · 2) */
    "--sequence-parallel",
    "--micro-batch-size 1", "--global-batch-size 256",
    "--recompute-granularity selective",
    "--use-distributed-optimizer",
    "--bf16",
    "--num-layers 32", "--hidden-size 4096", "--ffn-hidden-size 14336", "--num-attention-heads 32",
    "--group-query-attention", "--num-query-groups 8",
    "--seq-length 8192", "--max-position-embeddings 8192",
    "--swiglu", "--normalization RMSNorm", "--position-embedding-type rope",
    "--untie-embeddings-and-output-weights", "--disable-bias-linear",
    "--attention-dropout 0.0", "--hidden-dropout 0.0", NULL};
  assert_megatron(&c, expect);
  case_clear(&c);
}

/* The plan's TP communication overlap: --tp-comm-overlap (Megatron-LM
 * arguments.py); TE's defaults need no configuration file, a NeMo
 * configuration travels as the YAML --tp-comm-overlap-cfg reads, written by
 * the script (its values: NeMo's userbuffers.py). */
static void test_megatron_tp_overlap(void) {
  Case c;
  llama3_interleaved(&c);
  g_autoptr(GError) err = NULL;
  g_autofree char *none = px_emit_megatron(c.model, c.cluster, &c.plan, NULL, &err);
  g_assert_null(strstr(none, "--tp-comm-overlap"));
  c.plan.stack = PX_STACK_MEGATRON_CORE;
  c.plan.tp_overlap = PX_TPO_TE;
  case_validate(&c);
  g_autofree char *te = px_emit_megatron(c.model, c.cluster, &c.plan, NULL, &err);
  g_assert_nonnull(strstr(te, "\n  --tp-comm-overlap\n"));
  g_assert_null(strstr(te, "--tp-comm-overlap-cfg"));
  c.plan.tp_overlap = PX_TPO_NEMO_H8192_TP4;
  g_autofree char *nemo = px_emit_megatron(c.model, c.cluster, &c.plan, NULL, &err);
  g_assert_nonnull(strstr(nemo, "\n  --tp-comm-overlap\n"));
  g_assert_nonnull(strstr(nemo, "\n  --tp-comm-overlap-cfg tp_comm_overlap_cfg.yaml\n"));
  g_assert_nonnull(strstr(nemo, "cat > tp_comm_overlap_cfg.yaml <<'EOF'\n"));
  g_assert_nonnull(strstr(nemo, "\nproj_fprop: {method: pipeline, num_sm: 24, cga_size: 2, num_splits: 4, set_sm_margin: true}\n"));
  g_assert_nonnull(strstr(nemo, "\nqkv_wgrad: {method: bulk, num_sm: 24, cga_size: 2, set_sm_margin: false}\n"));
  g_assert_nonnull(strstr(nemo, "\nqkv_fprop: {method: ring_exchange, num_sm: 1, cga_size: 1, set_sm_margin: false, aggregate: false}\n"));
  case_clear(&c);
}

/* A partition Megatron would not make by itself travels as the layout flag,
 * chunk-major like Megatron's (virtual stage v·pp + rank). */
static void test_megatron_layout(void) {
  Case c;
  llama3_interleaved(&c);
  g_autoptr(GError) err = NULL;
  g_autofree char *uniform = px_emit_megatron_layout(c.model, &c.plan, &err);
  g_assert_no_error(err);
  g_assert_cmpstr(uniform, ==, "Et*4|t*4|t*4|t*4|t*4|t*4|t*4|t*4L");
  /* DeepSpeed "uniform" splits the 35 layers (embedding 0, blocks 1-32, norm
   * 33, head 34) over 8 parts, the first 35 % 8 = 3 parts one layer longer
   * (docs/partition.md): sizes 5,5,5,4,4,4,4,4, parts list
   * 0,5,10,15,19,23,27,31,35 → E + 4 blocks, 5, 5, 4, 4, 4, 4, 2 blocks + head */
  g_free(c.plan.partition);
  c.plan.partition = g_strdup("uniform");
  g_autofree char *layout = px_emit_megatron_layout(c.model, &c.plan, &err);
  g_assert_no_error(err);
  g_assert_cmpstr(layout, ==, "Et*4|t*5|t*5|t*4|t*4|t*4|t*4|t*2L");
  g_autofree char *s = px_emit_megatron(c.model, c.cluster, &c.plan, NULL, &err);
  g_assert_nonnull(strstr(s, "\n  --pipeline-model-parallel-layout \"Et*4|t*5|t*5|t*4|t*4|t*4|t*4|t*2L\"\n"));
  g_assert_null(strstr(s, "--num-layers-per-virtual-pipeline-stage"));
  case_clear(&c);
}

/* ---- DeepSpeed -------------------------------------------------------------- */

typedef struct {
  const char *path;  /* "zero_optimization.stage" */
  const char *value; /* as JSON text */
} Member;

static void collect(JsonNode *n, const char *prefix, GHashTable *out) {
  if (JSON_NODE_HOLDS_OBJECT(n)) {
    JsonObject *o = json_node_get_object(n);
    g_autoptr(GList) keys = json_object_get_members(o);
    for (GList *k = keys; k; k = k->next) {
      g_autofree char *p = *prefix ? g_strdup_printf("%s.%s", prefix, (char *)k->data) : g_strdup(k->data);
      collect(json_object_get_member(o, k->data), p, out);
    }
  } else {
    g_hash_table_insert(out, g_strdup(prefix), json_to_string(n, FALSE));
  }
}

static void assert_deepspeed(const Case *c, const Member *expect) {
  g_autofree char *s = px_emit_deepspeed_config(c->model, &c->plan, NULL);
  g_autoptr(JsonParser) parser = json_parser_new();
  g_assert_true(json_parser_load_from_data(parser, s, -1, NULL));
  g_autoptr(GHashTable) got = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  collect(json_parser_get_root(parser), "", got);
  g_assert_true(g_hash_table_remove(got, "_parallax"));
  guint n = 0;
  for (const Member *m = expect; m->path; m++, n++) {
    const char *v = g_hash_table_lookup(got, m->path);
    if (!v) g_error("ds_config.json lacks %s", m->path);
    g_assert_cmpstr(v, ==, m->value);
  }
  g_assert_cmpuint(g_hash_table_size(got), ==, n);
  /* and the project reads it back to the same batch, ZeRO, offload, precision, recompute */
  g_autofree char *dir = g_dir_make_tmp("px-emit-XXXXXX", NULL);
  g_autofree char *path = g_build_filename(dir, "ds_config.json", NULL);
  g_assert_true(g_file_set_contents(path, s, -1, NULL));
  PxPlan q;
  px_plan_init(&q);
  q.dp = c->plan.dp;
  g_autoptr(GError) err = NULL;
  g_assert_true(px_plan_load_deepspeed(&q, path, NULL, &err));
  g_assert_no_error(err);
  g_assert_cmpint(q.gbs, ==, c->plan.gbs);
  g_assert_cmpint(q.mbs, ==, c->plan.mbs);
  g_assert_cmpint(q.zero, ==, c->plan.zero);
  g_assert_cmpint(q.offload, ==, c->plan.offload);
  g_assert_cmpint(q.precision, ==, c->plan.precision);
  g_assert_cmpint(q.ckpt, ==, c->plan.ckpt == PX_CKPT_SELECTIVE ? PX_CKPT_NONE : c->plan.ckpt);
  if (c->plan.ckpt == PX_CKPT_FULL) g_assert_cmpint(q.ckpt_interval, ==, c->plan.ckpt_interval);
  g_assert_cmpfloat(q.bucket_bytes, ==, c->plan.bucket_bytes);
  px_plan_clear(&q);
  g_unlink(path);
  g_rmdir(dir);
}

static void test_deepspeed_gpt3(void) {
  Case c;
  gpt3_ptdp(&c);
  const Member expect[] = {
    {"train_batch_size", "1536"}, {"train_micro_batch_size_per_gpu", "1"},
    {"gradient_accumulation_steps", "96"}, /* 1536 / (1 · dp 16) */
    {"bf16.enabled", "true"}, {"fp16.enabled", "false"},
    {"zero_optimization.stage", "0"}, {"zero_optimization.overlap_comm", "false"},
    {"activation_checkpointing.partition_activations", "false"},
    {"activation_checkpointing.contiguous_memory_optimization", "false"},
    {"activation_checkpointing.cpu_checkpointing", "false"},
    {"pipeline.stages", "8"}, {"pipeline.partition", "\"parameters\""},
    {"pipeline.activation_checkpoint_interval", "1"},
    {"tensor_parallel.autotp_size", "8"}, {NULL, NULL}};
  assert_deepspeed(&c, expect);
  case_clear(&c);
}

static void test_deepspeed_llama2(void) {
  Case c;
  llama2_zero3(&c);
  const Member expect[] = {
    {"train_batch_size", "512"}, {"train_micro_batch_size_per_gpu", "1"},
    {"gradient_accumulation_steps", "8"}, /* 512 / 64 */
    {"bf16.enabled", "true"}, {"fp16.enabled", "false"},
    {"zero_optimization.stage", "3"}, {"zero_optimization.overlap_comm", "true"},
    {"zero_optimization.reduce_bucket_size", "500000000"},
    {"activation_checkpointing.partition_activations", "false"},
    {"activation_checkpointing.contiguous_memory_optimization", "false"},
    {"activation_checkpointing.cpu_checkpointing", "false"},
    {"pipeline.stages", "1"}, {"pipeline.partition", "\"parameters\""},
    {"pipeline.activation_checkpoint_interval", "1"}, {NULL, NULL}};
  assert_deepspeed(&c, expect);
  /* with the optimizer and the parameters offloaded */
  c.plan.offload = PX_OFFLOAD_OPTIMIZER_PARAMS;
  const Member off[] = {
    {"train_batch_size", "512"}, {"train_micro_batch_size_per_gpu", "1"}, {"gradient_accumulation_steps", "8"},
    {"bf16.enabled", "true"}, {"fp16.enabled", "false"},
    {"zero_optimization.stage", "3"}, {"zero_optimization.overlap_comm", "true"},
    {"zero_optimization.reduce_bucket_size", "500000000"},
    {"zero_optimization.offload_optimizer.device", "\"cpu\""},
    {"zero_optimization.offload_optimizer.pin_memory", "true"},
    {"zero_optimization.offload_param.device", "\"cpu\""}, {"zero_optimization.offload_param.pin_memory", "true"},
    {"activation_checkpointing.partition_activations", "false"},
    {"activation_checkpointing.contiguous_memory_optimization", "false"},
    {"activation_checkpointing.cpu_checkpointing", "false"},
    {"pipeline.stages", "1"}, {"pipeline.partition", "\"parameters\""},
    {"pipeline.activation_checkpoint_interval", "1"}, {NULL, NULL}};
  assert_deepspeed(&c, off);
  case_clear(&c);
}

static void test_deepspeed_llama3(void) {
  Case c;
  llama3_interleaved(&c);
  const Member expect[] = {
    {"train_batch_size", "256"}, {"train_micro_batch_size_per_gpu", "1"},
    {"gradient_accumulation_steps", "64"}, /* 256 / (1 · dp 4) */
    {"bf16.enabled", "true"}, {"fp16.enabled", "false"},
    {"zero_optimization.stage", "1"}, {"zero_optimization.overlap_comm", "false"},
    {"pipeline.stages", "4"}, {"pipeline.partition", "\"type:TransformerLayer\""},
    {"pipeline.activation_checkpoint_interval", "0"},
    {"tensor_parallel.autotp_size", "2"}, {NULL, NULL}};
  assert_deepspeed(&c, expect);
  /* the launcher says what DeepSpeed's pipeline engine cannot run */
  g_autofree char *l = px_emit_deepspeed_launch(c.model, c.cluster, &c.plan, NULL);
  g_assert_nonnull(strstr(l, "\ndeepspeed --num_nodes 4 --num_gpus 8 \"$TRAIN_SCRIPT\" \\\n"));
  g_assert_nonnull(strstr(l, "# NOTE: DeepSpeed's pipeline engine runs 1F1B, not interleaved.\n"));
  g_assert_nonnull(strstr(l, "num_stages=4, partition_method=\"type:TransformerLayer\""));
  case_clear(&c);
}

/* ---- torchtitan ------------------------------------------------------------- */

/* "section.key" → value of a flat TOML file (comments and blank lines skipped). */
static GHashTable *toml_flat(const char *text) {
  GHashTable *h = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  g_autofree char *section = g_strdup("");
  for (char **l = lines; *l; l++) {
    if (**l == '#' || !**l) continue;
    if (**l == '[') {
      g_free(section);
      section = g_strndup(*l + 1, strlen(*l) - 2);
      continue;
    }
    char *eq = strstr(*l, " = ");
    g_assert_nonnull(eq);
    g_autofree char *key = g_strndup(*l, eq - *l);
    g_hash_table_insert(h, g_strdup_printf("%s.%s", section, key), g_strdup(eq + 3));
  }
  return h;
}

static void assert_torchtitan(const Case *c, const Member *expect) {
  g_autofree char *s = px_emit_torchtitan(c->model, c->cluster, &c->plan, NULL);
  g_autoptr(GHashTable) got = toml_flat(s);
  g_assert_true(g_hash_table_remove(got, "job.description"));
  guint n = 0;
  for (const Member *m = expect; m->path; m++, n++) {
    const char *v = g_hash_table_lookup(got, m->path);
    if (!v) g_error("torchtitan.toml lacks %s", m->path);
    g_assert_cmpstr(v, ==, m->value);
  }
  g_assert_cmpuint(g_hash_table_size(got), ==, n);
}

static void test_torchtitan_gpt3(void) {
  Case c;
  gpt3_ptdp(&c);
  const Member expect[] = {
    {"training.local_batch_size", "96"}, {"training.global_batch_size", "1536"}, {"training.seq_len", "2048"},
    {"training.mixed_precision_param", "\"bfloat16\""},
    {"parallelism.data_parallel_replicate_degree", "16"}, {"parallelism.data_parallel_shard_degree", "1"},
    {"parallelism.tensor_parallel_degree", "8"}, {"parallelism.pipeline_parallel_degree", "8"},
    {"parallelism.pipeline_parallel_schedule", "\"1F1B\""}, {"parallelism.pipeline_parallel_microbatch_size", "1"},
    {"parallelism.pipeline_parallel_layers_per_stage", "12"}, {"parallelism.context_parallel_degree", "1"},
    {"activation_checkpoint.mode", "\"full\""}, {NULL, NULL}};
  assert_torchtitan(&c, expect);
  case_clear(&c);
}

static void test_torchtitan_llama2(void) {
  Case c;
  llama2_zero3(&c);
  const Member expect[] = {
    {"training.local_batch_size", "8"}, {"training.global_batch_size", "512"}, {"training.seq_len", "4096"},
    {"training.mixed_precision_param", "\"bfloat16\""},
    {"parallelism.data_parallel_replicate_degree", "1"}, {"parallelism.data_parallel_shard_degree", "64"},
    {"parallelism.fsdp_reshard_after_forward", "\"always\""},
    {"parallelism.tensor_parallel_degree", "1"}, {"parallelism.pipeline_parallel_degree", "1"},
    {"parallelism.context_parallel_degree", "1"},
    {"activation_checkpoint.mode", "\"full\""}, {NULL, NULL}};
  assert_torchtitan(&c, expect);
  case_clear(&c);
}

static void test_torchtitan_llama3(void) {
  Case c;
  llama3_interleaved(&c);
  const Member expect[] = {
    {"training.local_batch_size", "64"}, {"training.global_batch_size", "256"}, {"training.seq_len", "8192"},
    {"training.mixed_precision_param", "\"bfloat16\""},
    {"parallelism.data_parallel_replicate_degree", "1"}, {"parallelism.data_parallel_shard_degree", "4"},
    {"parallelism.fsdp_reshard_after_forward", "\"never\""},
    {"parallelism.tensor_parallel_degree", "2"}, {"parallelism.pipeline_parallel_degree", "4"},
    {"parallelism.pipeline_parallel_schedule", "\"Interleaved1F1B\""},
    {"parallelism.pipeline_parallel_microbatch_size", "1"},
    {"parallelism.pipeline_parallel_layers_per_stage", "4"}, {"parallelism.context_parallel_degree", "1"},
    {"activation_checkpoint.mode", "\"selective\""}, {"activation_checkpoint.selective_ac_option", "\"op\""},
    {NULL, NULL}};
  assert_torchtitan(&c, expect);
  case_clear(&c);
}

/* A V schedule: torch.distributed.pipelining's ZBVZeroBubble, two stages per
 * rank of 32 / (4 · 2) = 4 layers; Megatron-LM says it runs interleaved. */
static void test_v_schedule(void) {
  Case c;
  case_load(&c, "llama3-8b", "dgx-h100", 32);
  c.plan.tp = 2;
  c.plan.pp = 4;
  c.plan.dp = 4;
  c.plan.schedule = PX_SCHED_ZB_V;
  c.plan.mbs = 1;
  c.plan.gbs = 256;
  c.plan.seq = 8192;
  g_free(c.plan.partition);
  c.plan.partition = g_strdup("type:TransformerLayer");
  case_validate(&c);
  g_assert_cmpint(c.plan.vpp, ==, 2);
  g_autofree char *t = px_emit_torchtitan(c.model, c.cluster, &c.plan, NULL);
  g_autoptr(GHashTable) got = toml_flat(t);
  g_assert_cmpstr(g_hash_table_lookup(got, "parallelism.pipeline_parallel_schedule"), ==, "\"ZBVZeroBubble\"");
  g_assert_cmpstr(g_hash_table_lookup(got, "parallelism.pipeline_parallel_layers_per_stage"), ==, "4");
  g_autoptr(GError) err = NULL;
  g_autofree char *m = px_emit_megatron(c.model, c.cluster, &c.plan, NULL, &err);
  g_assert_no_error(err);
  g_assert_nonnull(strstr(m, "# NOTE: Megatron-LM has no zb-v schedule; it runs 1F1B (interleaved with virtual "
                             "stages, placed round-robin, not in a V)"));
  g_assert_nonnull(strstr(m, "\n  --num-layers-per-virtual-pipeline-stage 4\n"));
  case_clear(&c);
}

/* ---- plan.ini and the files on disk -------------------------------------------- */

static void test_ini_roundtrip_and_write(void) {
  Case c;
  llama3_interleaved(&c);
  g_autofree char *dir = g_dir_make_tmp("px-emit-XXXXXX", NULL);
  PxEmitInfo info = {.command = "test", .model_name = "llama3-8b", .cluster_name = "dgx-h100",
                     .have_prediction = TRUE, .step_time_s = 1.2345, .tokens_per_s = 1.5e6, .mfu = 0.4321,
                     .peak_memory = 42e9, .capacity = 80e9, .fits = TRUE};
  const char *formats[] = {"ini", "megatron", "deepspeed", "torchtitan"};
  const char *files[] = {"plan.ini", "pretrain_gpt.sh", "ds_config.json", "torchtitan.toml"};
  for (gsize i = 0; i < G_N_ELEMENTS(formats); i++) {
    g_autoptr(GError) err = NULL;
    g_assert_true(px_emit_to(formats[i], dir, c.model, c.cluster, &c.plan, &info, NULL, &err));
    g_assert_no_error(err);
    g_autofree char *path = g_build_filename(dir, files[i], NULL);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    /* every file names the plan and the prediction */
    g_assert_nonnull(strstr(text, "Plan: dp 4 × pp 4 × tp 2, interleaved (v = 2), micro-batch 1, global batch 256"));
    g_assert_nonnull(strstr(text, "Predicted: step 1234.5 ms, 1.50 M tokens/s, MFU 43.2 %, peak memory 42.0 GB"));
  }
  g_autofree char *ini = g_build_filename(dir, "plan.ini", NULL);
  PxPlan q;
  px_plan_init(&q);
  g_autoptr(GError) err = NULL;
  g_assert_true(px_plan_load_ini(&q, ini, &err));
  g_assert_true(px_plan_validate(&q, c.model, c.cluster, &err));
  g_assert_no_error(err);
  g_assert_cmpint(q.vpp, ==, 2);
  g_assert_cmpint(q.schedule, ==, PX_SCHED_INTERLEAVED);
  g_assert_cmpstr(q.partition, ==, "type:TransformerLayer");
  g_assert_true(q.seq_parallel);
  g_autofree char *text = NULL;
  g_assert_true(g_file_get_contents(ini, &text, NULL, NULL));
  g_assert_nonnull(strstr(text, "\nmodel = llama3-8b\ncluster = dgx-h100\nnodes = 4\n"));
  px_plan_clear(&q);
  /* the older form: a FILE.ini without --out; and an unknown format */
  g_autofree char *legacy = g_build_filename(dir, "winner.ini", NULL);
  g_assert_true(px_emit_to(legacy, NULL, c.model, c.cluster, &c.plan, &info, NULL, NULL));
  g_assert_true(g_file_test(legacy, G_FILE_TEST_EXISTS));
  g_autoptr(GError) bad = NULL;
  g_assert_false(px_emit_to("nemo", dir, c.model, c.cluster, &c.plan, &info, NULL, &bad));
  g_assert_error(bad, PX_EMIT_ERROR, PX_EMIT_ERROR_FORMAT);
  g_assert_cmpstr(bad->message, ==,
                  "--emit 'nemo' is not one of megatron, deepspeed, torchtitan, ini (or a FILE.ini without --out)");
  const char *all[] = {"plan.ini", "pretrain_gpt.sh", "ds_config.json", "launch_deepspeed.sh", "torchtitan.toml",
                       "winner.ini"};
  for (gsize i = 0; i < G_N_ELEMENTS(all); i++) {
    g_autofree char *p = g_build_filename(dir, all[i], NULL);
    g_unlink(p);
  }
  g_rmdir(dir);
  case_clear(&c);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/emit/megatron/gpt3-175b-ptdp", test_megatron_gpt3);
  g_test_add_func("/emit/megatron/llama2-70b-zero3", test_megatron_llama2);
  g_test_add_func("/emit/megatron/llama3-8b-interleaved", test_megatron_llama3);
  g_test_add_func("/emit/megatron/layout", test_megatron_layout);
  g_test_add_func("/emit/megatron/tp-overlap", test_megatron_tp_overlap);
  g_test_add_func("/emit/deepspeed/gpt3-175b-ptdp", test_deepspeed_gpt3);
  g_test_add_func("/emit/deepspeed/llama2-70b-zero3", test_deepspeed_llama2);
  g_test_add_func("/emit/deepspeed/llama3-8b-interleaved", test_deepspeed_llama3);
  g_test_add_func("/emit/torchtitan/gpt3-175b-ptdp", test_torchtitan_gpt3);
  g_test_add_func("/emit/torchtitan/llama2-70b-zero3", test_torchtitan_llama2);
  g_test_add_func("/emit/torchtitan/llama3-8b-interleaved", test_torchtitan_llama3);
  g_test_add_func("/emit/v-schedule", test_v_schedule);
  g_test_add_func("/emit/ini-and-files", test_ini_roundtrip_and_write);
  return g_test_run();
}
