/* commands.h — the subcommands of parallax-sim. Each lives in sim/cmd_<name>.c,
 * parses its own GOptionEntry[] and returns the process exit code. Only these
 * functions print errors (one line, "parallax-sim <cmd>: ..."). */
#pragma once
#include <glib.h>

typedef int (*PxCommandFn)(int argc, char **argv);

typedef struct {
  const char *name;
  PxCommandFn fn;
  const char *summary;
} PxCommand;

/* A CLI's main(): usage, --help, dispatch to the named command (or a one-line
 * error and exit 2). prog is "parallax-sim" or "parallax-exec". */
int px_command_main(const char *prog, const PxCommand *commands, gsize n_commands, int argc, char **argv);

int px_cmd_plan(int argc, char **argv);
int px_cmd_partition(int argc, char **argv);
int px_cmd_bubble(int argc, char **argv);
int px_cmd_program(int argc, char **argv);
int px_cmd_simulate(int argc, char **argv);
int px_cmd_search(int argc, char **argv);
int px_cmd_models(int argc, char **argv);
int px_cmd_compare(int argc, char **argv);
int px_cmd_clusters(int argc, char **argv);

/* parallax-sim's command table (sim/cmd_table.c). */
const PxCommand *px_sim_commands(gsize *n);
