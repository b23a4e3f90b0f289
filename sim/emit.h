/* emit.h — a plan as the files the training frameworks read:
 *   megatron    pretrain_gpt.sh: torchrun + Megatron-LM pretrain_gpt.py flags
 *   deepspeed   ds_config.json (px_plan_load_deepspeed reads it back) + launch_deepspeed.sh
 *   torchtitan  torchtitan.toml: a torchtitan job config (the TOML schema of
 *               torchtitan 0.2.x, --job.config_file)
 *   ini         plan.ini: this project's own plan file (px_plan_load_ini)
 * Each file opens with a comment naming the plan and its prediction (JSON has
 * no comments: ds_config.json carries it in a "_parallax" string member, which
 * DeepSpeed ignores). What a framework cannot express (a GPipe or ZB-H1
 * schedule in Megatron-LM, ...) is said in that header, never dropped
 * silently. Flag names follow Megatron-LM megatron/training/arguments.py,
 * DeepSpeed deepspeed/runtime/config.py and torchtitan config/job_config.py;
 * scripts/check-emit.sh validates the files with the frameworks' parsers. */
#pragma once
#include <glib.h>
#include "cluster.h"
#include "model.h"
#include "plan.h"

G_BEGIN_DECLS

#define PX_EMIT_ERROR (px_emit_error_quark())
GQuark px_emit_error_quark(void);
typedef enum {
  PX_EMIT_ERROR_FORMAT,  /* unknown --emit format, or --out missing */
  PX_EMIT_ERROR_IO,      /* a file could not be written */
} PxEmitError;

typedef enum { PX_EMIT_INI, PX_EMIT_MEGATRON, PX_EMIT_DEEPSPEED, PX_EMIT_TORCHTITAN } PxEmitFormat;
/* "ini" (also "plan.ini"), "megatron", "deepspeed", "torchtitan". */
gboolean px_emit_format_parse(const char *s, PxEmitFormat *out);

/* Where the plan came from and what was predicted for it (for the headers). */
typedef struct {
  const char *command;      /* "parallax-sim search" */
  const char *model_name;   /* as given (preset or file), for plan.ini's model = */
  const char *cluster_name; /* as given, or NULL */
  gboolean have_prediction; /* simulated: the fields below are set */
  double step_time_s, tokens_per_s, mfu;
  double peak_memory;       /* bytes per GPU, the memory model's peak */
  double capacity;          /* bytes per GPU, 0 unknown */
  gboolean fits;
} PxEmitInfo;

/* Fill the prediction of info by simulating the plan as the search confirms a
 * layout (needs a cluster); FALSE with error when the simulation fails. */
gboolean px_emit_predict(const PxModel *model, const PxCluster *cluster, const PxPlan *plan, PxEmitInfo *info,
                         GError **error);

/* One file's text. cluster may be NULL (the launcher then assumes one node
 * of dp·tp·pp GPUs). */
char *px_emit_megatron(const PxModel *model, const PxCluster *cluster, const PxPlan *plan, const PxEmitInfo *info,
                       GError **error);
char *px_emit_deepspeed_config(const PxModel *model, const PxPlan *plan, const PxEmitInfo *info);
char *px_emit_deepspeed_launch(const PxModel *model, const PxCluster *cluster, const PxPlan *plan,
                               const PxEmitInfo *info);
char *px_emit_torchtitan(const PxModel *model, const PxCluster *cluster, const PxPlan *plan, const PxEmitInfo *info);
char *px_emit_ini(const PxModel *model, const PxCluster *cluster, const PxPlan *plan, const PxEmitInfo *info);

/* The files of a format written into dir (created if missing); the paths
 * written are added to written (may be NULL). */
gboolean px_emit_write(PxEmitFormat fmt, const char *dir, const PxModel *model, const PxCluster *cluster,
                       const PxPlan *plan, const PxEmitInfo *info, GPtrArray *written, GError **error);

/* What `--emit EMIT --out OUT` of plan and search does: EMIT a format name
 * (files into OUT, default "."), or — the older form — a path ending in .ini
 * with no OUT (the plan INI written there). */
/* Whether px_emit_to would accept emit/out (checked before any work). */
gboolean px_emit_check(const char *emit, const char *out, GError **error);
gboolean px_emit_to(const char *emit, const char *out, const PxModel *model, const PxCluster *cluster,
                    const PxPlan *plan, const PxEmitInfo *info, GPtrArray *written, GError **error);

/* Megatron-LM's --pipeline-model-parallel-layout of the plan's partition:
 * virtual stages in Megatron's order (chunk-major), "E" embedding, "t*N"
 * transformer layers, "L" the LM head and loss, split by "|". */
char *px_emit_megatron_layout(const PxModel *model, const PxPlan *plan, GError **error);

G_END_DECLS
