/* comm_nccl.h — the `nccl` communicator: one process per rank, one GPU each,
 * over NCCL (built with PX_CUDA when libnccl is found: PX_HAVE_NCCL).
 *
 * Initialisation. The rank's device is local_rank % (devices seen), the rule
 * of the cuda backend. NCCL's unique id is made by rank 0 and reaches the
 * others by the bootstrap px_nccl_bootstrap picks: through MPI (a broadcast
 * on the `mpi` world) under mpirun, or under srun without MASTER_ADDR;
 * otherwise through the TCP store (nccl/store.h) that rank 0 serves at
 * MASTER_ADDR:MASTER_PORT, where every rank waits at most the deadline and
 * the ranks that never came are named. Then ncclCommInitRankConfig, polled
 * with the deadline. Every communicator is non-blocking (ncclConfig_t
 * blocking = 0), so that no NCCL call can hold a thread past the deadline:
 * each call that answers ncclInProgress is polled with ncclCommGetAsyncError.
 *
 * Groups: px_comm_split is ncclCommSplit with the new rank as key, so that
 * NCCL's ranks are the positions comm.c computed.
 *
 * Calls. On a CUDA stream (px_stream_native) a call is queued natively on it
 * (the `enqueue` of comm_impl.h) and returns at once; on the host (NULL or an
 * inline stream) it runs on an internal stream of the communicator and is
 * waited for with the deadline, host buffers staged through device memory
 * (the runtime's small host-side exchanges: memory tables, checkpoints).
 * Point-to-point is ncclSend / ncclRecv, a px_comm_group is one
 * ncclGroupStart / ncclGroupEnd. NCCL sends are NOT eager (comm.h): a send
 * waits on the device for its receive, see docs/executor.md for where the
 * runtime must group them. Reductions: f32, f64, i32, and bf16 / fp16 natively
 * (ncclBfloat16 / ncclFloat16): NCCL adds two halves at each step of its ring
 * or tree and rounds each step's sum to the half dtype (__hadd, to nearest
 * even), so a sum over n ranks is rounded n-1 times, in NCCL's order, where
 * the other communicators round once (docs/comm_conformance.md, "Halves");
 * every rank still gets the bit-identical result.
 *
 * Failure. A watchdog thread per process watches every queued call (an event
 * recorded before it and one behind it) and every communicator's
 * ncclCommGetAsyncError: a call not complete the deadline after its stream
 * reached it (px_nccl_watch_poll: the time it waited in the stream's queue,
 * behind compute, does not count), or an asynchronous error, aborts the world
 * — ncclCommAbort on every communicator of the process, so that no kernel
 * keeps a stream waiting — with one sentence naming the rank and the
 * operation ("rank 3: all_reduce on dp[1,3]: not complete after 60 s (a peer
 * never arrived)"); later calls fail with PX_COMM_ERROR_ABORTED carrying it.
 * Under the MPI bootstrap the abort also ends the job (MPI_Abort), so that the
 * other ranks stop too; under the store they fail at their own deadline. */
#pragma once
#include "comm.h"
#include "launch_env.h"

G_BEGIN_DECLS

/* CUDA devices this process sees: 0 without any, or when built without NCCL. */
int px_nccl_device_count(void);

typedef enum {
  PX_NCCL_BOOT_NONE,    /* world of 1: rank 0 makes the id for itself */
  PX_NCCL_BOOT_MPI,     /* a broadcast on the mpi world */
  PX_NCCL_BOOT_STORE,   /* the TCP store at MASTER_ADDR:MASTER_PORT */
  PX_NCCL_BOOT_INVALID, /* more than one rank and neither */
} PxNcclBoot;

/* How a rank of a filled PxLaunchEnv gets its unique id; have_mpi: the mpi
 * communicator is built in. Under mpirun (ompi) with MPI: MPI; under srun
 * with MPI and without MASTER_ADDR: MPI; else with MASTER_ADDR: the store. */
PxNcclBoot px_nccl_bootstrap(const PxLaunchEnv *env, gboolean have_mpi);
const char *px_nccl_boot_name(PxNcclBoot b);

/* The watchdog's deadline for one queued call, without CUDA (nccl_boot.c;
 * tests/test_store.c). The deadline counts from when the call's stream
 * reached it — its start event, recorded just before the NCCL call, seen
 * complete — not from when it was queued: a stream may hold a long queue of
 * compute ahead of a collective, and that wait says nothing about the peers.
 * The poller (every 2 ms while calls are in flight) gives the start time to
 * within one poll. A call whose stream never reaches it is not this call's
 * fault: what holds the stream is an earlier call (watched itself) or a
 * kernel, and peers waiting for this rank time out in their own calls. */
typedef struct {
  gint64 queued_us;  /* when the call was queued (monotonic clock, µs) */
  gint64 started_us; /* when its start event was first seen complete; -1 until then */
} PxNcclWatch;

typedef enum {
  PX_NCCL_WATCH_DONE,    /* its end event has completed */
  PX_NCCL_WATCH_QUEUED,  /* the stream has not reached it: no deadline runs yet */
  PX_NCCL_WATCH_RUNNING, /* reached, less than the timeout ago */
  PX_NCCL_WATCH_EXPIRED, /* reached at least the timeout ago and not complete */
} PxNcclWatchState;

void px_nccl_watch_init(PxNcclWatch *w, gint64 queued_us);
/* One poll at now_us: started / done, the states of the start and end events
 * now (done implies started); the first poll that sees started sets started_us. */
PxNcclWatchState px_nccl_watch_poll(PxNcclWatch *w, gboolean started, gboolean done, gint64 now_us,
                                    gint64 timeout_us);
/* The abort's sentence for an EXPIRED call what ("rank 3: all_reduce on dp[1,3]"). */
char *px_nccl_watch_reason(const PxNcclWatch *w, const char *what, double timeout_s);

/* The world communicator of this process (rank, world, local rank and
 * master from env, launch_env.h). timeout_s ≤ 0 means 60 s. Refused with
 * PX_COMM_ERROR_UNSUPPORTED when built without NCCL or without a device. */
PxComm *px_comm_nccl_new(const PxLaunchEnv *env, double timeout_s, GError **error);
/* The same with everything given: the store at addr:port (ignored for a world
 * of 1), the device. Thread-ranks of one process may each call it (tests). */
PxComm *px_comm_nccl_new_store(const char *addr, int port, int rank, int world, int device, double timeout_s,
                               GError **error);

G_END_DECLS
