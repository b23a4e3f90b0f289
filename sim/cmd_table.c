/* cmd_table.c — the commands of parallax-sim, shared by its main() and the
 * Python API (sim/api.c), so both run the same code. */
#include "commands.h"

static const PxCommand commands[] = {
  {"plan", px_cmd_plan, "partition, bubble, memory and FLOPs of one plan"},
  {"partition", px_cmd_partition, "split a raw weight list like DeepSpeed PipelineModule"},
  {"program", px_cmd_program, "the instruction stream of each pipeline rank"},
  {"simulate", px_cmd_simulate, "simulate one step: time, MFU, bubble, memory, trace/CSV/Gantt"},
  {"bubble", px_cmd_bubble, "pipeline bubble vs micro-batches per schedule, simulated and analytic"},
  {"search", px_cmd_search, "search every layout for the fastest that fits; size a cluster for a deadline"},
  {"compare", px_cmd_compare, "a measured step (PyTorch profiler trace, Nsight Systems JSON) beside the prediction"},
  {"models", px_cmd_models, "the model presets: shapes and parameter counts"},
  {"clusters", px_cmd_clusters, "the cluster presets: GPUs, memory, peak FLOP/s, links"},
};

const PxCommand *px_sim_commands(gsize *n) {
  *n = G_N_ELEMENTS(commands);
  return commands;
}
