/* launch_env.c — rank discovery from the launcher's variables (launch_env.h). */
#include "launch_env.h"
#include "check.h"
#include <errno.h>
#include <stdlib.h>

G_DEFINE_QUARK(px-launch-error-quark, px_launch_error)

#define fail(error, ...) px_fail((error), PX_LAUNCH_ERROR, PX_LAUNCH_ERROR_INVALID, __VA_ARGS__)

typedef struct {
  PxLaunchSource source;
  const char *rank, *world, *local_rank;
} Source;

static const Source sources[] = {
  {PX_LAUNCH_OMPI, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
  {PX_LAUNCH_TORCHRUN, "RANK", "WORLD_SIZE", "LOCAL_RANK"},
  {PX_LAUNCH_SLURM, "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
};

void px_launch_env_init(PxLaunchEnv *e) {
  *e = (PxLaunchEnv){.rank = -1, .world = -1, .local_rank = -1, .master_addr = NULL, .master_port = -1,
                     .source = PX_LAUNCH_DEFAULT};
}

void px_launch_env_clear(PxLaunchEnv *e) { g_clear_pointer(&e->master_addr, g_free); }

const char *px_launch_source_name(PxLaunchSource s) {
  switch (s) {
  case PX_LAUNCH_DEFAULT: return "default";
  case PX_LAUNCH_FLAGS: return "flags";
  case PX_LAUNCH_OMPI: return "ompi";
  case PX_LAUNCH_TORCHRUN: return "torchrun";
  case PX_LAUNCH_SLURM: return "slurm";
  }
  return "?";
}

/* *out = the value of variable var (unset: *out untouched, *given FALSE); a
 * value that is not a whole number in [lo, hi] is refused. */
static gboolean read_int(const char *var, int lo, int hi, int *out, gboolean *given, GError **error) {
  const char *v = g_getenv(var);
  *given = v != NULL;
  if (!v) return TRUE;
  char *end = NULL;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (!*v || *end || errno || x < lo || x > hi)
    return fail(error, "%s='%s' is not a whole number in %d..%d", var, v, lo, hi);
  *out = (int)x;
  return TRUE;
}

gboolean px_launch_env(PxLaunchEnv *e, GError **error) {
  const Source *src = NULL;
  for (gsize i = 0; i < G_N_ELEMENTS(sources) && !src; i++)
    if (g_getenv(sources[i].rank) || g_getenv(sources[i].world)) src = &sources[i];
  gboolean flag_rank = e->rank >= 0, flag_world = e->world >= 0;
  if (e->world == 0 || (flag_world && flag_rank && e->rank >= e->world))
    return fail(error, "rank %d is outside a world of %d ranks", e->rank, e->world);
  if (src) {
    int rank = -1, world = -1, local = -1;
    gboolean has_rank, has_world, has_local;
    if (!read_int(src->rank, 0, G_MAXINT, &rank, &has_rank, error) ||
        !read_int(src->world, 1, G_MAXINT, &world, &has_world, error) ||
        !read_int(src->local_rank, 0, G_MAXINT, &local, &has_local, error))
      return FALSE;
    if (has_world && !has_rank && !flag_rank)
      return fail(error, "%s=%d is set but %s is not: which rank is this process?", src->world, world, src->rank);
    if (has_rank && !has_world && !flag_world)
      return fail(error, "%s=%d is set but %s is not: how many ranks are there?", src->rank, rank, src->world);
    if (!flag_rank && !flag_world && rank >= world)
      return fail(error, "%s=%d is outside a world of %s=%d ranks", src->rank, rank, src->world, world);
    if (!flag_rank) e->rank = rank;
    if (!flag_world) e->world = world;
    if (e->local_rank < 0 && has_local) {
      if (local >= e->world)
        return fail(error, "%s=%d is outside a world of %d ranks", src->local_rank, local, e->world);
      e->local_rank = local;
    }
    e->source = flag_rank && flag_world ? PX_LAUNCH_FLAGS : src->source;
  } else if (flag_rank != flag_world) {
    return fail(error, flag_rank ? "rank %d is given but not the world size, and no launcher variables are set"
                                 : "world size %d is given but not the rank, and no launcher variables are set",
                flag_rank ? e->rank : e->world);
  } else {
    e->source = flag_rank ? PX_LAUNCH_FLAGS : PX_LAUNCH_DEFAULT;
    if (!flag_rank) e->rank = 0, e->world = 1;
  }
  if (e->rank >= e->world) return fail(error, "rank %d is outside a world of %d ranks", e->rank, e->world);
  if (e->local_rank >= e->world)
    return fail(error, "local rank %d is outside a world of %d ranks", e->local_rank, e->world);
  if (e->local_rank < 0) e->local_rank = e->rank;
  if (!e->master_addr) {
    const char *a = g_getenv("MASTER_ADDR");
    if (a && !*a) return fail(error, "MASTER_ADDR is set but empty");
    e->master_addr = g_strdup(a);
  }
  if (e->master_port < 0) {
    gboolean given;
    if (!read_int("MASTER_PORT", 1, 65535, &e->master_port, &given, error)) return FALSE;
  } else if (e->master_port < 1 || e->master_port > 65535) {
    return fail(error, "master port %d is not in 1..65535", e->master_port);
  }
  return TRUE;
}

char *px_launch_env_describe(const PxLaunchEnv *e) {
  const char *how = e->source == PX_LAUNCH_DEFAULT ? "no launcher variables"
                    : e->source == PX_LAUNCH_FLAGS ? "flags"
                                                   : NULL;
  return how ? g_strdup_printf("rank %d of %d (local rank %d) from %s", e->rank, e->world, e->local_rank, how)
             : g_strdup_printf("rank %d of %d (local rank %d) from %s variables", e->rank, e->world, e->local_rank,
                               px_launch_source_name(e->source));
}
