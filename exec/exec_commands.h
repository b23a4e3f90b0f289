/* exec_commands.h — the subcommands of parallax-exec. Each lives in
 * exec/cmd_<name>.c, parses its own GOptionEntry[] and returns the process exit
 * code; only these functions print errors (one line, "parallax-exec <cmd>: ...").
 * PxCommand (name, function, summary) is shared with parallax-sim. */
#pragma once
#include "commands.h"

int px_exec_cmd_data(int argc, char **argv);
int px_exec_cmd_run(int argc, char **argv);
int px_exec_cmd_launch(int argc, char **argv);
int px_exec_cmd_calibrate(int argc, char **argv);
