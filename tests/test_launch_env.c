/* test_launch_env.c — rank discovery from Open MPI, torchrun and Slurm
 * variables, flags over variables, and the refusals (launch_env.h). */
#include <glib.h>
#include <string.h>
#include "launch_env.h"

static const char *const all_vars[] = {
  "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
  "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
  "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
};

/* Clear every launcher variable, then set the NULL-terminated name/value pairs. */
static void env(const char *first, ...) {
  for (gsize i = 0; i < G_N_ELEMENTS(all_vars); i++) g_unsetenv(all_vars[i]);
  va_list ap;
  va_start(ap, first);
  for (const char *k = first; k; k = va_arg(ap, const char *)) g_setenv(k, va_arg(ap, const char *), TRUE);
  va_end(ap);
}

static PxLaunchEnv ok(void) {
  PxLaunchEnv e;
  px_launch_env_init(&e);
  g_autoptr(GError) error = NULL;
  g_assert_true(px_launch_env(&e, &error));
  g_assert_no_error(error);
  return e;
}

/* The refusal's sentence must contain each of the given fragments. */
static void refused(PxLaunchEnv *e, const char *frag1, const char *frag2) {
  g_autoptr(GError) error = NULL;
  g_assert_false(px_launch_env(e, &error));
  g_assert_error(error, PX_LAUNCH_ERROR, PX_LAUNCH_ERROR_INVALID);
  g_assert_nonnull(strstr(error->message, frag1));
  if (frag2) g_assert_nonnull(strstr(error->message, frag2));
  g_assert_null(strchr(error->message, '\n'));
  px_launch_env_clear(e);
}

static void refused_env(const char *frag1, const char *frag2) {
  PxLaunchEnv e;
  px_launch_env_init(&e);
  refused(&e, frag1, frag2);
}

static void test_default(void) {
  env(NULL);
  PxLaunchEnv e = ok();
  g_assert_cmpint(e.rank, ==, 0);
  g_assert_cmpint(e.world, ==, 1);
  g_assert_cmpint(e.local_rank, ==, 0);
  g_assert_cmpint(e.source, ==, PX_LAUNCH_DEFAULT);
  g_assert_null(e.master_addr);
  g_assert_cmpint(e.master_port, ==, -1);
  px_launch_env_clear(&e);
}

static void test_ompi(void) {
  env("OMPI_COMM_WORLD_RANK", "5", "OMPI_COMM_WORLD_SIZE", "8", "OMPI_COMM_WORLD_LOCAL_RANK", "1", NULL);
  PxLaunchEnv e = ok();
  g_assert_cmpint(e.rank, ==, 5);
  g_assert_cmpint(e.world, ==, 8);
  g_assert_cmpint(e.local_rank, ==, 1);
  g_assert_cmpint(e.source, ==, PX_LAUNCH_OMPI);
  g_autofree char *d = px_launch_env_describe(&e);
  g_assert_cmpstr(d, ==, "rank 5 of 8 (local rank 1) from ompi variables");
  px_launch_env_clear(&e);
}

static void test_slurm(void) {
  env("SLURM_PROCID", "3", "SLURM_NTASKS", "4", "SLURM_LOCALID", "3", NULL);
  PxLaunchEnv e = ok();
  g_assert_cmpint(e.rank, ==, 3);
  g_assert_cmpint(e.world, ==, 4);
  g_assert_cmpint(e.local_rank, ==, 3);
  g_assert_cmpint(e.source, ==, PX_LAUNCH_SLURM);
  px_launch_env_clear(&e);
}

static void test_torchrun(void) {
  env("RANK", "2", "WORLD_SIZE", "4", "LOCAL_RANK", "0", "MASTER_ADDR", "10.0.0.7", "MASTER_PORT", "29511", NULL);
  PxLaunchEnv e = ok();
  g_assert_cmpint(e.rank, ==, 2);
  g_assert_cmpint(e.world, ==, 4);
  g_assert_cmpint(e.local_rank, ==, 0);
  g_assert_cmpint(e.source, ==, PX_LAUNCH_TORCHRUN);
  g_assert_cmpstr(e.master_addr, ==, "10.0.0.7");
  g_assert_cmpint(e.master_port, ==, 29511);
  px_launch_env_clear(&e);
  /* no LOCAL_RANK: one host, the local rank is the rank */
  env("RANK", "3", "WORLD_SIZE", "4", NULL);
  e = ok();
  g_assert_cmpint(e.local_rank, ==, 3);
  px_launch_env_clear(&e);
}

/* mpirun and torchrun inside a Slurm allocation: the nearer launcher wins. */
static void test_precedence(void) {
  env("SLURM_PROCID", "0", "SLURM_NTASKS", "1", "RANK", "1", "WORLD_SIZE", "2", NULL);
  PxLaunchEnv e = ok();
  g_assert_cmpint(e.source, ==, PX_LAUNCH_TORCHRUN);
  g_assert_cmpint(e.rank, ==, 1);
  px_launch_env_clear(&e);
  env("SLURM_PROCID", "0", "SLURM_NTASKS", "1", "OMPI_COMM_WORLD_RANK", "6", "OMPI_COMM_WORLD_SIZE", "7", "RANK", "0",
      "WORLD_SIZE", "1", NULL);
  e = ok();
  g_assert_cmpint(e.source, ==, PX_LAUNCH_OMPI);
  g_assert_cmpint(e.rank, ==, 6);
  g_assert_cmpint(e.world, ==, 7);
  px_launch_env_clear(&e);
}

/* Flags override the variables, field by field. */
static void test_flags(void) {
  env("RANK", "1", "WORLD_SIZE", "4", "LOCAL_RANK", "1", "MASTER_ADDR", "10.0.0.7", "MASTER_PORT", "29511", NULL);
  PxLaunchEnv e;
  px_launch_env_init(&e);
  e.rank = 3;
  e.master_port = 4000;
  e.master_addr = g_strdup("127.0.0.1");
  g_autoptr(GError) error = NULL;
  g_assert_true(px_launch_env(&e, &error));
  g_assert_cmpint(e.rank, ==, 3);
  g_assert_cmpint(e.world, ==, 4);
  g_assert_cmpint(e.local_rank, ==, 1);
  g_assert_cmpstr(e.master_addr, ==, "127.0.0.1");
  g_assert_cmpint(e.master_port, ==, 4000);
  g_assert_cmpint(e.source, ==, PX_LAUNCH_TORCHRUN);
  px_launch_env_clear(&e);
  /* both rank and world by flags, no variables */
  env(NULL);
  px_launch_env_init(&e);
  e.rank = 1, e.world = 2;
  g_assert_true(px_launch_env(&e, &error));
  g_assert_cmpint(e.source, ==, PX_LAUNCH_FLAGS);
  g_assert_cmpint(e.local_rank, ==, 1);
  px_launch_env_clear(&e);
  /* a flag rank outside the variables' world */
  env("RANK", "1", "WORLD_SIZE", "4", NULL);
  px_launch_env_init(&e);
  e.rank = 4;
  refused(&e, "rank 4 is outside a world of 4 ranks", NULL);
  /* a flag rank without any world */
  env(NULL);
  px_launch_env_init(&e);
  e.rank = 1;
  refused(&e, "rank 1 is given but not the world size", NULL);
  px_launch_env_init(&e);
  e.master_port = 70000;
  refused(&e, "master port 70000", NULL);
}

static void test_refusals(void) {
  env("RANK", "4", "WORLD_SIZE", "4", NULL);
  refused_env("RANK=4 is outside a world of WORLD_SIZE=4 ranks", NULL);
  env("RANK", "two", "WORLD_SIZE", "4", NULL);
  refused_env("RANK='two' is not a whole number", NULL);
  env("RANK", "1", "WORLD_SIZE", "4x", NULL);
  refused_env("WORLD_SIZE='4x'", NULL);
  env("RANK", "-1", "WORLD_SIZE", "4", NULL);
  refused_env("RANK='-1'", NULL);
  env("RANK", "0", "WORLD_SIZE", "0", NULL);
  refused_env("WORLD_SIZE='0' is not a whole number in 1..", NULL);
  env("WORLD_SIZE", "4", NULL);
  refused_env("WORLD_SIZE=4 is set but RANK is not", NULL);
  env("RANK", "1", NULL);
  refused_env("RANK=1 is set but WORLD_SIZE is not", NULL);
  env("OMPI_COMM_WORLD_SIZE", "2", NULL);
  refused_env("OMPI_COMM_WORLD_SIZE=2 is set but OMPI_COMM_WORLD_RANK is not", NULL);
  env("SLURM_PROCID", "2", "SLURM_NTASKS", "2", NULL);
  refused_env("SLURM_PROCID=2 is outside a world of SLURM_NTASKS=2 ranks", NULL);
  env("RANK", "1", "WORLD_SIZE", "2", "LOCAL_RANK", "2", NULL);
  refused_env("LOCAL_RANK=2 is outside a world of 2 ranks", NULL);
  env("RANK", "1", "WORLD_SIZE", "2", "MASTER_PORT", "http", NULL);
  refused_env("MASTER_PORT='http' is not a whole number in 1..65535", NULL);
  env("RANK", "1", "WORLD_SIZE", "2", "MASTER_ADDR", "", NULL);
  refused_env("MASTER_ADDR is set but empty", NULL);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/launch_env/default", test_default);
  g_test_add_func("/launch_env/ompi", test_ompi);
  g_test_add_func("/launch_env/slurm", test_slurm);
  g_test_add_func("/launch_env/torchrun", test_torchrun);
  g_test_add_func("/launch_env/precedence", test_precedence);
  g_test_add_func("/launch_env/flags", test_flags);
  g_test_add_func("/launch_env/refusals", test_refusals);
  return g_test_run();
}
