/* tcp_probe.c — a rank for tests/cli_launch.sh: finds its rank from the
 * launcher's variables (launch_env.h), opens the tcp communicator and
 * all-reduces rank + 1 twice, printing each sum ("rank 1 of 3: sum 6").
 *   --die-rank R  rank R kills itself with SIGKILL between the two
 *   --hang DIR    after the first, write DIR/pid.RANK and sleep until killed
 * A failure prints "rank R: <error>" on stderr and exits 3. */
#include <glib.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include "comm_tcp.h"

int main(int argc, char **argv) {
  int die = -1;
  double timeout = 30;
  g_autofree char *hang = NULL;
  GOptionEntry entries[] = {
    {"die-rank", 0, 0, G_OPTION_ARG_INT, &die, "rank that kills itself", "R"},
    {"timeout", 0, 0, G_OPTION_ARG_DOUBLE, &timeout, "communicator deadline (s)", "S"},
    {"hang", 0, 0, G_OPTION_ARG_FILENAME, &hang, "write DIR/pid.RANK and sleep", "DIR"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new(NULL);
  g_option_context_add_main_entries(ctx, entries, NULL);
  g_autoptr(GError) error = NULL;
  PxLaunchEnv env;
  px_launch_env_init(&env);
  if (!g_option_context_parse(ctx, &argc, &argv, &error) || !px_launch_env(&env, &error)) {
    fprintf(stderr, "tcp_probe: %s\n", error->message);
    return 2;
  }
  PxComm *c = px_comm_tcp_new_from_env(&env, timeout, &error);
  for (int round = 0; c && round < 2; round++) {
    gint32 x = env.rank + 1;
    if (!px_comm_all_reduce(c, &x, 1, PX_DTYPE_I32, PX_RED_SUM, NULL, &error)) break;
    printf("rank %d of %d: sum %d\n", env.rank, env.world, x);
    fflush(stdout);
    if (hang) {
      g_autofree char *path = g_strdup_printf("%s/pid.%d", hang, env.rank);
      g_autofree char *pid = g_strdup_printf("%d", (int)getpid());
      g_file_set_contents(path, pid, -1, NULL);
      for (;;) pause();
    }
    if (env.rank == die) raise(SIGKILL);
  }
  if (error) {
    fprintf(stderr, "rank %d: %s\n", env.rank, error->message);
    /* freeing passes the reason on to the ranks still waiting */
    if (c) px_comm_free(c);
    return 3;
  }
  px_comm_free(c);
  px_launch_env_clear(&env);
  return 0;
}
