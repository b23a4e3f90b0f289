/* parallax-exec — run a plan on devices, measure it, and prepare its data. */
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include "exec_commands.h"

static const PxCommand commands[] = {
  {"data", px_exec_cmd_data, "write a synthetic token corpus, or describe a token file"},
};

static void usage(FILE *out) {
  fprintf(out, "usage: parallax-exec COMMAND [OPTIONS]\n\ncommands:\n");
  for (gsize i = 0; i < G_N_ELEMENTS(commands); i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "\n'parallax-exec COMMAND --help' lists a command's options.\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (gsize i = 0; i < G_N_ELEMENTS(commands); i++)
    if (!strcmp(argv[1], commands[i].name))
      return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "parallax-exec: unknown command '%s' (see parallax-exec --help)\n", argv[1]);
  return 2;
}
