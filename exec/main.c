/* parallax-exec — run a plan on devices, measure it, and prepare its data. */
#include <glib.h>
#include "exec_commands.h"

static const PxCommand commands[] = {
  {"run", px_exec_cmd_run, "train a model under a plan, measuring loss, time and memory"},
  {"launch", px_exec_cmd_launch, "start N local ranks (processes) of a command, e.g. run --comm tcp"},
  {"data", px_exec_cmd_data, "write a synthetic token corpus, or describe a token file"},
  {"calibrate", px_exec_cmd_calibrate, "measure GEMM, memory and collective rates into a cluster profile"},
};

int main(int argc, char **argv) {
  return px_command_main("parallax-exec", commands, G_N_ELEMENTS(commands), argc, argv);
}
