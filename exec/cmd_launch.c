/* cmd_launch.c — `parallax-exec launch -n N -- run ...`: start N local ranks
 * for users without mpirun, srun or torchrun.
 *
 * Each rank is a child process (GSubprocess) with torchrun's variables set
 * (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1,
 * MASTER_PORT; Open MPI's and Slurm's rank variables removed, so that
 * launch_env.h reads these; OMP_NUM_THREADS = cores / N unless it is set),
 * in a process group of its own and with
 * PR_SET_PDEATHSIG, so that no rank outlives the launcher even if it is
 * killed with SIGKILL. The command after `--` is a parallax-exec subcommand
 * (`run ...`, run by this same binary) or, when its first word contains a
 * '/', a program.
 *
 * SIGINT and SIGTERM are forwarded to every rank (a second one kills them),
 * each followed by SIGCONT so that a stopped rank receives it.
 * When a rank fails (non-zero exit or a signal), the others get --grace
 * seconds to fail on their own — their communicator names the dead rank —
 * then are sent SIGTERM, and SIGKILL 5 s later. The launcher prints one line
 * naming the failed rank (a rank killed by a signal it was not sent by the
 * launcher is named before ranks that exited with an error after it) and
 * exits 1; after a forwarded signal it exits 128 + the signal. */
#include <errno.h>
#include <gio/gio.h>
#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include "comm_tcp.h"
#include "exec_commands.h"
#include "options.h"

#define KILL_AFTER_TERM_S 5
#define LAUNCH_MAX_RANKS 256

typedef enum { RANK_RUNNING, RANK_OK, RANK_FAILED, RANK_STOPPED } RankState;

typedef struct {
  int n;
  GSubprocess **procs;
  RankState *state;
  int alive;
  int failed;          /* the rank named as the failure, or -1 */
  gboolean failed_by_signal;
  char *failed_how;    /* "was killed by signal 9 (Killed)" */
  gboolean stopping;   /* the launcher has signalled the ranks */
  int forwarded;       /* the signal forwarded from the user, or 0 */
  double grace_s;
  guint grace_id, kill_id, sig_ids[2];
  GMainLoop *loop;
} Launch;

static void signal_all(Launch *L, int sig) {
  for (int r = 0; r < L->n; r++)
    if (L->procs[r] && L->state[r] == RANK_RUNNING) {
      g_subprocess_send_signal(L->procs[r], sig);
      /* a stopped rank (SIGSTOP, ^Z) holds a SIGINT / SIGTERM pending until it runs again: a
       * forwarded SIGTERM left the launcher waiting for it for ever */
      if (sig != SIGKILL && sig != SIGCONT) g_subprocess_send_signal(L->procs[r], SIGCONT);
    }
}

static gboolean kill_all(gpointer data) {
  Launch *L = data;
  L->kill_id = 0;
  signal_all(L, SIGKILL);
  return G_SOURCE_REMOVE;
}

/* Stop the ranks still running: SIGTERM now, SIGKILL a little later. */
static void stop_all(Launch *L, int sig) {
  L->stopping = TRUE;
  signal_all(L, sig);
  if (!L->kill_id) L->kill_id = g_timeout_add_seconds(KILL_AFTER_TERM_S, kill_all, L);
}

static gboolean grace_over(gpointer data) {
  Launch *L = data;
  L->grace_id = 0;
  stop_all(L, SIGTERM);
  return G_SOURCE_REMOVE;
}

static gboolean on_signal(gpointer data, int sig) {
  Launch *L = data;
  if (L->forwarded) {
    signal_all(L, SIGKILL);
  } else {
    L->forwarded = sig;
    L->stopping = TRUE;
    signal_all(L, sig);
  }
  return G_SOURCE_CONTINUE;
}
static gboolean on_sigint(gpointer data) { return on_signal(data, SIGINT); }
static gboolean on_sigterm(gpointer data) { return on_signal(data, SIGTERM); }

typedef struct {
  Launch *L;
  int rank;
} Waiter;

static void rank_exited(GObject *src, GAsyncResult *res, gpointer data) {
  Waiter *wt = data;
  Launch *L = wt->L;
  int r = wt->rank;
  g_free(wt);
  GSubprocess *p = G_SUBPROCESS(src);
  g_subprocess_wait_finish(p, res, NULL);
  L->alive--;
  gboolean by_signal = g_subprocess_get_if_signaled(p);
  if (!by_signal && g_subprocess_get_if_exited(p) && g_subprocess_get_exit_status(p) == 0) {
    L->state[r] = RANK_OK;
  } else if (L->stopping) {
    L->state[r] = RANK_STOPPED;
  } else {
    L->state[r] = RANK_FAILED;
    /* a rank killed by a signal is the cause of the ranks that then failed on their own */
    if (L->failed < 0 || (by_signal && !L->failed_by_signal)) {
      L->failed = r;
      L->failed_by_signal = by_signal;
      g_free(L->failed_how);
      if (by_signal) {
        int sig = g_subprocess_get_term_sig(p);
        L->failed_how = g_strdup_printf("was killed by signal %d (%s)", sig, g_strsignal(sig));
      } else {
        L->failed_how = g_strdup_printf("exited with status %d", g_subprocess_get_exit_status(p));
      }
    }
    if (!L->grace_id && L->alive > 0) {
      if (L->grace_s <= 0) stop_all(L, SIGTERM);
      else L->grace_id = g_timeout_add((guint)(L->grace_s * 1000), grace_over, L);
    }
  }
  if (L->alive == 0) g_main_loop_quit(L->loop);
}

/* In the child, between fork and exec (async-signal-safe calls only): die
 * with the launcher, and take no terminal signals but the forwarded ones. */
static void child_setup(gpointer data) {
  pid_t parent = (pid_t)GPOINTER_TO_INT(data);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(128 + SIGKILL);
  setpgid(0, 0);
}

static char *rank_list(const Launch *L, RankState st) {
  GString *s = g_string_new(NULL);
  int k = 0;
  for (int r = 0; r < L->n; r++)
    if (L->state[r] == st && r != L->failed) g_string_append_printf(s, k++ ? ", %d" : "%d", r);
  if (!k) return g_string_free(s, TRUE);
  g_string_prepend(s, k > 1 ? "ranks " : "rank ");
  return g_string_free(s, FALSE);
}

int px_exec_cmd_launch(int argc, char **argv) {
  int n = 0, port = 0;
  double grace = 10;
  GOptionEntry entries[] = {
    {"nproc", 'n', 0, G_OPTION_ARG_INT, &n, "number of ranks to start on this machine, 1..256", "N"},
    {"master-port", 0, 0, G_OPTION_ARG_INT, &port, "rendezvous port on 127.0.0.1 (default: a free port)", "P"},
    {"grace", 0, 0, G_OPTION_ARG_DOUBLE, &grace,
     "seconds the other ranks get to fail on their own after one fails, before they are stopped (default 10)", "S"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
  };
  g_set_prgname("parallax-exec launch"); /* --help's usage line names the command, as run's does */
  g_autoptr(GOptionContext) ctx = g_option_context_new("-- run ARGS... | -- /path/to/PROGRAM ARGS...");
  g_option_context_set_summary(ctx, "Start N local ranks with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, "
                                    "MASTER_ADDR and MASTER_PORT set (for `run --comm tcp`, its default there), "
                                    "and OMP_NUM_THREADS = cores / N unless it is set.");
  GOptionEntry *decimal = px_option_entries_decimal(entries); /* "010" is ten, not eight */
  g_option_context_add_main_entries(ctx, decimal, NULL);
  g_autoptr(GError) error = NULL;
  /* everything after "--" belongs to the ranks: keep it from the parser */
  int dash = argc;
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--")) {
      dash = i;
      break;
    }
  int own_argc = dash;
  g_autofree char **own = g_new0(char *, dash + 1);
  memcpy(own, argv, sizeof(char *) * (gsize)dash);
  char **own_argv = own;
  gboolean parsed = g_option_context_parse(ctx, &own_argc, &own_argv, &error);
  px_option_entries_decimal_done(decimal);
  if (!parsed) {
    fprintf(stderr, "parallax-exec launch: %s\n", error->message);
    return 2;
  }
  if (own_argc > 1) {
    fprintf(stderr, "parallax-exec launch: unexpected '%s' (the ranks' command goes after --)\n", own_argv[1]);
    return 2;
  }
  if (n < 1) {
    fprintf(stderr, "parallax-exec launch: give the number of ranks, -n N (N ≥ 1)\n");
    return 2;
  }
  /* ranks of one machine: the tcp communicator's full mesh holds two
   * descriptors per peer in every rank (comm_tcp.c), 510 at 256 ranks, under
   * the usual limit of 1024; -n 100000 forked for minutes */
  if (n > LAUNCH_MAX_RANKS) {
    fprintf(stderr, "parallax-exec launch: -n %d is more than %d local ranks\n", n, LAUNCH_MAX_RANKS);
    return 2;
  }
  gboolean port_given = FALSE; /* --master-port 0 took a free port, as if not given */
  for (int i = 1; i < dash; i++) port_given |= px_flag_is(argv[i], "--master-port");
  if (port < 0 || port > 65535 || (port_given && !port)) {
    fprintf(stderr, "parallax-exec launch: --master-port %d is not in 1..65535\n", port);
    return 2;
  }
  /* 1e308 s overflowed the guint milliseconds of its timer, and 0.0001 s was 0 ms */
  if (!(grace >= 0 && grace <= 86400) || (grace > 0 && grace < 1e-3)) {
    fprintf(stderr, "parallax-exec launch: --grace %g is not 0 or a number of seconds in 0.001..86400 (the timer "
            "counts milliseconds)\n", grace);
    return 2;
  }
  if (dash >= argc - 1) {
    fprintf(stderr, "parallax-exec launch: give the ranks' command after --, e.g. -- run --comm tcp ...\n");
    return 2;
  }
  if (!port && (port = px_tcp_free_port()) < 0) {
    fprintf(stderr, "parallax-exec launch: found no free port on 127.0.0.1; give --master-port\n");
    return 1;
  }
  /* the command: this binary's subcommand, or a program named by a path */
  GPtrArray *cmd = g_ptr_array_new_with_free_func(g_free);
  if (!strchr(argv[dash + 1], '/')) {
    char *self = g_file_read_link("/proc/self/exe", &error);
    if (!self) {
      fprintf(stderr, "parallax-exec launch: cannot find this program: %s\n", error->message);
      g_ptr_array_unref(cmd);
      return 1;
    }
    g_ptr_array_add(cmd, self);
  }
  for (int i = dash + 1; i < argc; i++) g_ptr_array_add(cmd, g_strdup(argv[i]));
  g_ptr_array_add(cmd, NULL);

  Launch L = {.n = n, .failed = -1, .grace_s = grace, .alive = 0};
  L.procs = g_new0(GSubprocess *, n);
  L.state = g_new0(RankState, n);
  L.loop = g_main_loop_new(NULL, FALSE);
  L.sig_ids[0] = g_unix_signal_add(SIGINT, on_sigint, &L);
  L.sig_ids[1] = g_unix_signal_add(SIGTERM, on_sigterm, &L);
  int rc = 0;
  g_autofree char *world_s = g_strdup_printf("%d", n), *port_s = g_strdup_printf("%d", port);
  /* N OpenMP teams of every core each would spin against each other (a step
   * of tiny-gpt on 2 cores went from 8 ms to 3 s): share the cores, as
   * torchrun does, unless the user chose */
  g_autofree char *omp_s = g_strdup_printf("%u", MAX(1u, g_get_num_processors() / (guint)n));
  for (int r = 0; r < n; r++) {
    g_autoptr(GSubprocessLauncher) sl = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
    g_autofree char *rank_s = g_strdup_printf("%d", r);
    const char *unset[] = {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                           "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"};
    for (gsize i = 0; i < G_N_ELEMENTS(unset); i++) g_subprocess_launcher_unsetenv(sl, unset[i]);
    g_subprocess_launcher_setenv(sl, "RANK", rank_s, TRUE);
    g_subprocess_launcher_setenv(sl, "LOCAL_RANK", rank_s, TRUE);
    g_subprocess_launcher_setenv(sl, "WORLD_SIZE", world_s, TRUE);
    g_subprocess_launcher_setenv(sl, "LOCAL_WORLD_SIZE", world_s, TRUE);
    g_subprocess_launcher_setenv(sl, "MASTER_ADDR", "127.0.0.1", TRUE);
    g_subprocess_launcher_setenv(sl, "MASTER_PORT", port_s, TRUE);
    g_subprocess_launcher_setenv(sl, "OMP_NUM_THREADS", omp_s, FALSE);
    g_subprocess_launcher_set_child_setup(sl, child_setup, GINT_TO_POINTER((int)getpid()), NULL);
    L.procs[r] = g_subprocess_launcher_spawnv(sl, (const char *const *)cmd->pdata, &error);
    if (!L.procs[r]) {
      fprintf(stderr, "parallax-exec launch: cannot start rank %d (%s): %s\n", r, (char *)cmd->pdata[0],
              error->message);
      rc = 1;
      L.failed = r; /* not counted below: the line is printed */
      break;
    }
    L.alive++;
    Waiter *wt = g_new(Waiter, 1);
    *wt = (Waiter){&L, r};
    g_subprocess_wait_async(L.procs[r], NULL, rank_exited, wt);
    /* a SIGINT / SIGTERM while starting the others (it was only seen once all
     * had started): forwarded to those running, and no more are started */
    while (g_main_context_pending(NULL)) g_main_context_iteration(NULL, FALSE);
    if (L.forwarded) break;
  }
  if (rc) stop_all(&L, SIGTERM);
  if (L.alive > 0) g_main_loop_run(L.loop);
  if (!rc && L.forwarded) {
    int started = 0;
    for (int r = 0; r < n; r++) started += L.procs[r] != NULL;
    if (started < n)
      fprintf(stderr, "parallax-exec launch: stopped by %s while starting the ranks, forwarded to the %d of %d started\n",
              L.forwarded == SIGINT ? "SIGINT" : "SIGTERM", started, n);
    else
      fprintf(stderr, "parallax-exec launch: stopped by %s, forwarded to the %d ranks\n",
              L.forwarded == SIGINT ? "SIGINT" : "SIGTERM", n);
    rc = 128 + L.forwarded;
  } else if (!rc && L.failed >= 0) {
    g_autofree char *after = rank_list(&L, RANK_FAILED), *stopped = rank_list(&L, RANK_STOPPED);
    GString *tail = g_string_new(NULL);
    if (after) g_string_append_printf(tail, "; %s then failed", after);
    if (stopped) g_string_append_printf(tail, "; %s stopped by the launcher", stopped);
    fprintf(stderr, "parallax-exec launch: rank %d of %d %s%s\n", L.failed, n, L.failed_how, tail->str);
    g_string_free(tail, TRUE);
    rc = 1;
  }
  g_source_remove(L.sig_ids[0]);
  g_source_remove(L.sig_ids[1]);
  if (L.grace_id) g_source_remove(L.grace_id);
  if (L.kill_id) g_source_remove(L.kill_id);
  for (int r = 0; r < n; r++) g_clear_object(&L.procs[r]);
  g_free(L.procs);
  g_free(L.state);
  g_free(L.failed_how);
  g_main_loop_unref(L.loop);
  g_ptr_array_unref(cmd);
  return rc;
}
