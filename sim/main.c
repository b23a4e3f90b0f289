/* parallax-sim — plan, partition, simulate and search parallel layouts. */
#include <glib.h>
#include "commands.h"

int main(int argc, char **argv) {
  gsize n;
  const PxCommand *commands = px_sim_commands(&n);
  return px_command_main("parallax-sim", commands, n, argc, argv);
}
