/* cmd_program.c — `parallax-sim program`: the instruction stream the plan's
 * schedule gives a rank (or every stage), one instruction per line. */
#include <stdio.h>
#include "commands.h"
#include "options.h"
#include "partition.h"
#include "schedule.h"

#define CMD "parallax-sim program"

static void print_stage(const PxProgram *prog, int stage) {
  const PxPlan *p = &prog->plan;
  printf("# stage %d: ranks", stage);
  for (int d = 0; d < px_plan_data_ranks(p); d++) /* dp·cp data coordinates */
    for (int t = 0; t < p->tp; t++) printf(" %d", px_plan_rank_of(p, d, t, stage));
  printf(" (%u instructions)\n", prog->ranks[stage].n);
  g_autofree char *text = px_program_format_stage(prog, stage);
  fputs(text, stdout);
}

int px_cmd_program(int argc, char **argv) {
  PxPlanOptions o;
  int rank = -1, stage = -1; /* -1: not given (the flags accept 0 and up only) */
  g_autofree char *rank_s = NULL, *stage_s = NULL;
  GOptionEntry entries[] = {
    {"rank", 0, 0, G_OPTION_ARG_STRING, &rank_s, "Print only the stream of this global rank", "R"},
    {"stage", 0, 0, G_OPTION_ARG_STRING, &stage_s, "Print only the stream of this pipeline stage", "S"},
    {NULL}};
  if (!px_parse_command_line(CMD, "the instruction stream of each pipeline rank", entries, &o, &argc, &argv))
    return 2;
  g_autoptr(GError) error = NULL;
  if ((rank_s && !px_parse_int_flag("--rank", rank_s, 0, &rank, &error)) ||
      (stage_s && !px_parse_int_flag("--stage", stage_s, 0, &stage, &error))) {
    px_plan_options_clear(&o);
    fprintf(stderr, CMD ": %s\n", error->message);
    return 2;
  }
  g_autoptr(PxModel) model = NULL;
  g_autoptr(PxCluster) cluster = NULL;
  g_autoptr(PxPartition) part = NULL;
  g_autoptr(PxProgram) prog = NULL;
  PxPlan plan = {0};
  int rc = 0;
  if (!px_plan_options_resolve(&o, FALSE, &model, &cluster, &plan, &error) ||
      !(part = px_partition_new(model, &plan, NULL, &error)) ||
      !(prog = px_program_new(&plan, part, &error))) {
    rc = px_cli_fail(CMD, error);
  } else if (rank >= px_plan_world(&plan) || rank < -1) {
    fprintf(stderr, CMD ": --rank %d is not a rank of the %d GPUs of the plan\n", rank, px_plan_world(&plan));
    rc = 2;
  } else if (stage >= plan.pp || stage < -1) {
    fprintf(stderr, CMD ": --stage %d is not a stage of the %d pipeline stages\n", stage, plan.pp);
    rc = 2;
  } else if (rank >= 0 && stage >= 0 && px_program_for_rank(prog, rank)->stage != stage) {
    /* both given: they must name the same stream, or one would be ignored */
    fprintf(stderr, CMD ": --rank %d is on pipeline stage %d, not --stage %d\n", rank,
            px_program_for_rank(prog, rank)->stage, stage);
    rc = 2;
  } else if (rank >= 0) {
    g_autofree char *text = px_program_format_stage(prog, px_program_for_rank(prog, rank)->stage);
    fputs(text, stdout);
  } else if (stage >= 0) {
    print_stage(prog, stage);
  } else {
    for (int s = 0; s < plan.pp; s++) print_stage(prog, s);
  }
  px_plan_clear(&plan);
  px_plan_options_clear(&o);
  return rc;
}
