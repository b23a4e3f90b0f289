/* options.h — the model / cluster / plan flags shared by every parallax-sim
 * command (plan, simulate, search) and by parallax-exec run: one parser. */
#pragma once
#include <glib.h>
#include "model.h"
#include "cluster.h"
#include "plan.h"

G_BEGIN_DECLS

typedef struct {
  char *model, *cluster, *plan_file, *deepspeed;
  int nodes, gpus;
  int dp, tp, pp, vpp, mbs, gbs, seq, zero, ckpt_interval;
  char *gbs_tokens;  /* global batch in tokens ("4M"), converted with seq */
  char *schedule, *partition, *offload, *ckpt, *precision, *order, *workspace, *stack, *attention;
  char *bucket;  /* --bucket: the DP reduction bucket (plan bucket_bytes) */
  char *tp_overlap;  /* --tp-overlap: TP communication overlap (plan tp_overlap) */
  gboolean sp;
  gboolean compile; /* --compile: torch.compile per block (torchtitan) */
  char *units;       /* "GB" (1e9, default) or "GiB" (2^30) */
  int cp;            /* --cp: context-parallel degree */
  int ep, etp;       /* expert parallelism and expert tensor parallelism (-1: unset) */
  char *imbalance;   /* the busiest expert's tokens over the balanced share */
  /* set by px_plan_options_resolve: */
  gboolean batch_given;  /* the global batch came from a flag, the plan file or ds_config */
  char *batch_note;      /* how --gbs-tokens became sequences (NULL without it) */
} PxPlanOptions;

/* A whole-number flag value: the full string an integer in [min, G_MAXINT],
 * else an error naming the flag ("--gbs -1 must be a whole number ≥ 1"). */
gboolean px_parse_int_flag(const char *flag, const char *value, int min, int *out, GError **error);

/* Whether the command-line word arg gives flag: "--keep", "--keep=3", or a
 * short flag with its value attached ("-n5"). For the checks of what a flag
 * needs, made on argv before GOption consumes it. */
gboolean px_flag_is(const char *arg, const char *flag);

/* A copy of entries for GOption in which every G_OPTION_ARG_INT and _INT64 entry reads its value
 * in base 10 into the same variable (GOption's own reading takes "010" as 8 and "0x10" as 16) and
 * refuses anything else with one line naming the flag; give it back with
 * px_option_entries_decimal_done once the context has parsed. px_parse_command_line does both. */
GOptionEntry *px_option_entries_decimal(const GOptionEntry *entries);
void px_option_entries_decimal_done(GOptionEntry *converted);

/* Fills o with "unset" (-1: never a value a flag accepts, since every integer
 * flag is parsed by px_parse_int_flag) and returns a group of its entries
 * (owned by the caller's GOptionContext once added). */
GOptionGroup *px_plan_options_group(PxPlanOptions *o);
/* Apply defaults, then --plan FILE, then --deepspeed FILE, then flags; load the
 * model and cluster (cluster optional: NULL when neither --cluster nor the plan
 * file names one, unless need_cluster); validate. */
gboolean px_plan_options_resolve(PxPlanOptions *o, gboolean need_cluster, PxModel **model,
                                 PxCluster **cluster, PxPlan *plan, GError **error);
void px_plan_options_clear(PxPlanOptions *o);

/* Memory units for printing. */
typedef struct {
  const char *name;  /* "GB" or "GiB" */
  double scale;      /* bytes per unit */
} PxUnits;
gboolean px_units_parse(const char *s, PxUnits *out);

/* The width of the text charts (simulate --gantt, compare's time axis):
 * $COLUMNS when set and not empty, a whole number of 1..PX_MAX_COLUMNS
 * (99999999999 overflowed atoi and asked for a 39 GB chart), else the
 * terminal's when ask_terminal, else 100. Another $COLUMNS is an error
 * naming it. */
#define PX_MAX_COLUMNS 4096
gboolean px_terminal_columns(gboolean ask_terminal, int *out, GError **error);

/* Run a command's option context over argv (with the plan group when o is
 * non-NULL); cmd is the full name ("parallax-sim plan"). Prints the one-line
 * error and returns FALSE on bad flags. */
gboolean px_parse_command_line(const char *cmd, const char *summary, GOptionEntry *entries,
                               PxPlanOptions *o, int *argc, char ***argv);
/* Print "CMD: message" (cmd as above) and return the exit code 1. */
int px_cli_fail(const char *cmd, GError *error);

G_END_DECLS
