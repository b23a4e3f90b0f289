/* launch_env.h — rank discovery: which rank this process is, of how many, and
 * its rank on this host (the device index), from the launcher that started it.
 *
 * Sources, first match wins (the launcher nearest the process first: mpirun
 * and torchrun-style launchers run inside Slurm allocations):
 *   ompi      OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK (mpirun)
 *   torchrun  RANK, WORLD_SIZE, LOCAL_RANK (torchrun, `parallax-exec launch`)
 *   slurm     SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID (srun)
 *   default   none of them: rank 0 of 1
 * MASTER_ADDR and MASTER_PORT (the rendezvous of the `tcp` communicator) are
 * read whatever the source. Values the caller sets before the call (flags)
 * override the environment, field by field. Inconsistent values (a rank
 * outside the world, a non-numeric value, a world without a rank) are refused
 * with one sentence naming the variables. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

#define PX_LAUNCH_ERROR (px_launch_error_quark())
GQuark px_launch_error_quark(void);
typedef enum {
  PX_LAUNCH_ERROR_INVALID, /* inconsistent or malformed values */
} PxLaunchError;

typedef enum {
  PX_LAUNCH_DEFAULT,  /* no launcher: rank 0 of 1 */
  PX_LAUNCH_FLAGS,    /* rank and world both given by the caller */
  PX_LAUNCH_OMPI,
  PX_LAUNCH_TORCHRUN,
  PX_LAUNCH_SLURM,
} PxLaunchSource;

typedef struct {
  int rank, world, local_rank; /* < 0: unset (before px_launch_env) */
  char *master_addr;           /* NULL: unset */
  int master_port;             /* < 0: unset */
  PxLaunchSource source;       /* set by px_launch_env */
} PxLaunchEnv;

/* Every field unset: fill the ones given by flags, then call px_launch_env. */
void px_launch_env_init(PxLaunchEnv *e);
void px_launch_env_clear(PxLaunchEnv *e);
/* Fill the unset fields of e from the environment and check the whole. On
 * success rank, world and local_rank are set (local_rank defaults to rank when
 * the source has none); master_addr / master_port stay unset when neither the
 * caller nor MASTER_ADDR / MASTER_PORT give them. */
gboolean px_launch_env(PxLaunchEnv *e, GError **error);
/* "ompi", "torchrun", "slurm", "flags", "default" */
const char *px_launch_source_name(PxLaunchSource s);
/* "rank 1 of 4 (local rank 1) from torchrun variables" */
char *px_launch_env_describe(const PxLaunchEnv *e);

G_END_DECLS
