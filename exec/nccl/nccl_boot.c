/* nccl_boot.c — the parts of the nccl communicator that need neither CUDA nor
 * NCCL: the bootstrap rule and the watchdog's deadline (comm_nccl.h), and the
 * refusals of a build without NCCL. */
#include "nccl/comm_nccl.h"
#include "check.h"

PxNcclBoot px_nccl_bootstrap(const PxLaunchEnv *env, gboolean have_mpi) {
  if (env->world <= 1) return PX_NCCL_BOOT_NONE;
  if (have_mpi && env->source == PX_LAUNCH_OMPI) return PX_NCCL_BOOT_MPI;
  if (have_mpi && env->source == PX_LAUNCH_SLURM && !env->master_addr) return PX_NCCL_BOOT_MPI;
  if (env->master_addr) return PX_NCCL_BOOT_STORE;
  return PX_NCCL_BOOT_INVALID;
}

const char *px_nccl_boot_name(PxNcclBoot b) {
  switch (b) {
  case PX_NCCL_BOOT_NONE: return "none (one rank)";
  case PX_NCCL_BOOT_MPI: return "mpi";
  case PX_NCCL_BOOT_STORE: return "store";
  case PX_NCCL_BOOT_INVALID: break;
  }
  return "invalid";
}

#ifndef PX_HAVE_NCCL
static const char not_built[] =
  "communicator 'nccl' is not built in (it needs the CUDA toolkit and NCCL at configure time: see README, GPU build)";

int px_nccl_device_count(void) { return 0; }

PxComm *px_comm_nccl_new(const PxLaunchEnv *env, double timeout_s, GError **error) {
  (void)env, (void)timeout_s;
  px_fail(error, PX_COMM_ERROR, PX_COMM_ERROR_UNSUPPORTED, "%s", not_built);
  return NULL;
}

PxComm *px_comm_nccl_new_store(const char *addr, int port, int rank, int world, int device, double timeout_s,
                               GError **error) {
  (void)addr, (void)port, (void)rank, (void)world, (void)device, (void)timeout_s;
  px_fail(error, PX_COMM_ERROR, PX_COMM_ERROR_UNSUPPORTED, "%s", not_built);
  return NULL;
}
#endif

void px_nccl_watch_init(PxNcclWatch *w, gint64 queued_us) {
  w->queued_us = queued_us;
  w->started_us = -1;
}

PxNcclWatchState px_nccl_watch_poll(PxNcclWatch *w, gboolean started, gboolean done, gint64 now_us,
                                    gint64 timeout_us) {
  if (done) return PX_NCCL_WATCH_DONE;
  if (!started) return PX_NCCL_WATCH_QUEUED;
  if (w->started_us < 0) w->started_us = now_us;
  return now_us - w->started_us > timeout_us ? PX_NCCL_WATCH_EXPIRED : PX_NCCL_WATCH_RUNNING;
}

char *px_nccl_watch_reason(const PxNcclWatch *w, const char *what, double timeout_s) {
  return g_strdup_printf("%s: not complete after %g s (a peer never arrived; its stream reached it %.3f s after "
                         "it was queued)",
                         what, timeout_s, (w->started_us - w->queued_us) / 1e6);
}
