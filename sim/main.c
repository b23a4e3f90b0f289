/* parallax-sim — plan, partition, simulate and search parallel layouts. */
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include "commands.h"

static const PxCommand commands[] = {
  {"plan", px_cmd_plan, "partition, bubble, memory and FLOPs of one plan"},
  {"partition", px_cmd_partition, "split a raw weight list like DeepSpeed PipelineModule"},
  {"program", px_cmd_program, "the instruction stream of each pipeline rank"},
  {"simulate", px_cmd_simulate, "simulate one step: time, MFU, bubble, memory, trace/CSV/Gantt"},
  {"bubble", px_cmd_bubble, "pipeline bubble vs micro-batches per schedule, simulated and analytic"},
};

static void usage(FILE *out) {
  fprintf(out, "usage: parallax-sim COMMAND [OPTIONS]\n\ncommands:\n");
  for (gsize i = 0; i < G_N_ELEMENTS(commands); i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "\n'parallax-sim COMMAND --help' lists a command's options.\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (gsize i = 0; i < G_N_ELEMENTS(commands); i++)
    if (!strcmp(argv[1], commands[i].name))
      return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "parallax-sim: unknown command '%s' (see parallax-sim --help)\n", argv[1]);
  return 2;
}
