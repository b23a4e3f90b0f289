/* parallax-sim — plan, partition, simulate and search parallel layouts. */
#include <glib.h>
#include "commands.h"

static const PxCommand commands[] = {
  {"plan", px_cmd_plan, "partition, bubble, memory and FLOPs of one plan"},
  {"partition", px_cmd_partition, "split a raw weight list like DeepSpeed PipelineModule"},
  {"program", px_cmd_program, "the instruction stream of each pipeline rank"},
  {"simulate", px_cmd_simulate, "simulate one step: time, MFU, bubble, memory, trace/CSV/Gantt"},
  {"bubble", px_cmd_bubble, "pipeline bubble vs micro-batches per schedule, simulated and analytic"},
  {"search", px_cmd_search, "search every layout for the fastest that fits; size a cluster for a deadline"},
};

int main(int argc, char **argv) {
  return px_command_main("parallax-sim", commands, G_N_ELEMENTS(commands), argc, argv);
}
