/* comm.h — communicators: collectives and point-to-point over groups of ranks,
 * NCCL style.
 *
 * A PxComm is one rank's handle on one group of ranks (NCCL's ncclComm_t).
 * The world communicator comes from an implementation (`local`: ranks are
 * threads of one process; `mpi`: one process per rank, any number of hosts;
 * `nccl` with the CUDA backend); every other communicator is made from it
 * once, collectively, by px_comm_split (ncclCommSplit / MPI_Comm_split):
 * exec/grid.h makes the DP, TP, pipeline and tied-embedding communicators of a
 * plan that way. Ranks are positions in the communicator (0..size-1); the
 * world rank of a position is px_comm_global_rank. Buffers are device
 * pointers of the rank's backend (host memory for the cpu backend); counts are
 * in elements of dtype.
 *
 * Streams. Every call takes a PxStream (backend.h). NULL, or an inline stream
 * (the cpu backend's compute stream), runs the call on the calling thread and
 * returns when it is complete. Any other stream queues it, in order, behind
 * the stream's earlier work: the call returns at once, buffers must stay
 * valid until the stream has passed it, and errors surface through
 * px_stream_synchronize, px_event_synchronize or px_comm_check_async. Compute
 * and communication are ordered with events (px_event_record /
 * px_stream_wait_event), as llm.c orders NCCL against its compute stream. A
 * communicator is used from one stream at a time.
 *
 * Point-to-point has no tags: messages from one rank to another on one
 * communicator are received in the order they were sent (NCCL, and MPI's
 * non-overtaking rule). Sends are eager on `local` (unless in rendezvous mode or on its device path, comm_local.c), `mpi` and `tcp`: a send
 * returns once its payload is copied or on its way, whether or not the
 * receive has been posted, so sends queued one after another on a stream
 * never wait for each other's receivers (the runtime relies on it). An
 * implementation whose sends wait for the receiver (NCCL) must issue the
 * runtime's sends and receives of one step in groups
 * (px_comm_group_start / px_comm_group_end, ncclGroupStart / ncclGroupEnd).
 *
 * Failure. Every wait has a deadline (the world's timeout): instead of hanging,
 * a collective whose peers do not all arrive fails with PX_COMM_ERROR_TIMEOUT
 * naming the communicator, the op and (where the implementation can tell) the
 * missing ranks — "all_reduce on dp[0,2]: rank 2 never arrived after 60 s" —
 * and aborts the world, so that every other rank fails promptly with
 * PX_COMM_ERROR_ABORTED carrying the same sentence. px_comm_abort does the same
 * for a failure outside the communicator (a rank whose kernel failed). Under
 * `mpi` an abort ends the job (MPI_Abort) once the reason has been printed. */
#pragma once
#include <glib.h>
#include "backend.h"

G_BEGIN_DECLS

#define PX_COMM_ERROR (px_comm_error_quark())
GQuark px_comm_error_quark(void);
typedef enum {
  PX_COMM_ERROR_INVALID,   /* bad peer, root, dtype, count, or a call outside the communicator */
  PX_COMM_ERROR_MISMATCH,  /* ranks called different ops / counts / roots on one communicator */
  PX_COMM_ERROR_TIMEOUT,   /* a peer never arrived */
  PX_COMM_ERROR_ABORTED,   /* another rank failed; the world is unusable */
  PX_COMM_ERROR_DEVICE,    /* the transport (MPI, NCCL, CUDA) failed */
  PX_COMM_ERROR_UNSUPPORTED, /* an implementation that is not built in */
} PxCommError;

typedef enum { PX_RED_SUM, PX_RED_MAX } PxRedOp;

/* An ordered list of world ranks; a rank's position in it is its rank in the
 * group. name is the axis ("dp", "tp", "pp", "embed", "world"); described as
 * "dp[0,2]". */
typedef struct {
  char *name;
  int n;
  int *ranks; /* (n) */
} PxGroup;

PxGroup *px_group_new(const char *name, int n, const int *ranks);
/* 0..world-1 */
PxGroup *px_group_new_world(int world);
void px_group_free(PxGroup *g);
/* Position of a world rank in the group, or -1. */
int px_group_index(const PxGroup *g, int rank);
/* "dp[0,2]" */
char *px_group_describe(const PxGroup *g);

typedef struct _PxComm PxComm;

/* This rank's position, and the size, of the communicator. */
int px_comm_rank(const PxComm *c);
int px_comm_size(const PxComm *c);
/* The world rank of position pos, and of this rank; the world's size. */
int px_comm_global_rank(const PxComm *c, int pos);
int px_comm_world_rank(const PxComm *c);
int px_comm_world_size(const PxComm *c);
/* The implementation ("local", "mpi", "nccl") and the communicator ("dp[0,2]"). */
const char *px_comm_backend(const PxComm *c);
const char *px_comm_label(const PxComm *c);
const PxGroup *px_comm_group(const PxComm *c);
/* The deadline of every wait, in seconds. */
double px_comm_timeout(const PxComm *c);
void px_comm_free(PxComm *c);

/* Collective over parent: the ranks that pass the same color ≥ 0 form one new
 * communicator, ordered by key (ties: parent rank); name labels it. A rank
 * passing PX_COMM_NO_COLOR takes part in the split but gets NULL (and no
 * error). */
#define PX_COMM_NO_COLOR (-1)
PxComm *px_comm_split(PxComm *parent, int color, int key, const char *name, GError **error);

/* Abort the world: every waiting and later call on any communicator of it, on
 * every rank, fails with PX_COMM_ERROR_ABORTED carrying reason (the first
 * reason given is kept). */
void px_comm_abort(PxComm *c, const char *reason);
/* FALSE, with the error, once the world has failed (timeout, abort, an error
 * of a queued call). */
gboolean px_comm_check_async(PxComm *c, GError **error);

/* The calling thread's label for the calls it queues from now on (NULL:
 * none): an error of a queued call then starts with it, so that a failure on a
 * communication stream names what the rank was doing when it queued it
 * ("rank 3 (stage 1) REDUCE_GRADS chunk 0: all_reduce on dp[1,3]: ..."). */
void px_comm_set_label(const char *label);

/* In place: buf = op over the group of every rank's buf. Every rank gets the
 * bit-identical result. Every dtype reduces; bf16 / fp16 sums are formed in
 * fp32 and rounded once to nearest even (nccl: rounded at each step of its
 * ring or tree), an fp16 overflow giving ±Inf (docs/comm_conformance.md). */
gboolean px_comm_all_reduce(PxComm *c, void *buf, gsize count, PxDType dtype, PxRedOp op,
                            PxStream *stream, GError **error);
/* send (size*count) summed over the group; rank i receives chunk i (count). */
gboolean px_comm_reduce_scatter(PxComm *c, const void *send, void *recv, gsize count,
                                PxDType dtype, PxStream *stream, GError **error);
/* recv (size*count) = the concatenation of every rank's send (count), in rank order. */
gboolean px_comm_all_gather(PxComm *c, const void *send, void *recv, gsize count, PxDType dtype,
                            PxStream *stream, GError **error);
/* buf of rank root is copied to every rank. */
gboolean px_comm_broadcast(PxComm *c, void *buf, gsize count, PxDType dtype, int root,
                           PxStream *stream, GError **error);
gboolean px_comm_barrier(PxComm *c, PxStream *stream, GError **error);

/* The bytes of the collectives this rank has called on c since it was made,
 * by op: an all-reduce or broadcast counts its buffer, a reduce-scatter its
 * input (size · count elements), an all-gather its output (size · count).
 * A ring moves 2(n-1)/n of an all-reduce's and (n-1)/n of a reduce-scatter's
 * or an all-gather's per rank (NCCL's "algorithm bandwidth" sizes). */
typedef struct {
  double all_reduce, reduce_scatter, all_gather, broadcast;
} PxCommTraffic;
void px_comm_traffic(const PxComm *c, PxCommTraffic *out);
/* Point-to-point with rank peer of the communicator (FIFO per sender/receiver pair). */
gboolean px_comm_send(PxComm *c, const void *buf, gsize count, PxDType dtype, int peer,
                      PxStream *stream, GError **error);
gboolean px_comm_recv(PxComm *c, void *buf, gsize count, PxDType dtype, int peer,
                      PxStream *stream, GError **error);
/* All-to-all (NCCL's, as nccl-tests runs it: grouped point-to-point): send
 * holds size blocks of count elements, block j for rank j; recv gets size
 * blocks, block i from rank i. send and recv must not overlap. */
gboolean px_comm_all_to_all(PxComm *c, const void *send, void *recv, gsize count, PxDType dtype,
                            PxStream *stream, GError **error);
/* The same with per-peer counts and offsets (elements): rank j gets
 * send_counts[j] elements from send + send_displs[j]; recv_counts[i] come from
 * rank i into recv + recv_displs[i] (MPI_Alltoallv). Each rank's recv_counts[i]
 * must equal rank i's send_counts[j] for it (exchange the counts first with
 * px_comm_all_to_all when they are not known). Zero counts move nothing. */
gboolean px_comm_all_to_all_v(PxComm *c, const void *send, const gsize *send_counts, const gsize *send_displs,
                              void *recv, const gsize *recv_counts, const gsize *recv_displs, PxDType dtype,
                              PxStream *stream, GError **error);
/* Sends and receives between start and end are issued together at end (on
 * end's stream), so that a rank can send to and receive from a peer without
 * either waiting for the other. Only send and recv may be called in between. */
void px_comm_group_start(PxComm *c);
gboolean px_comm_group_end(PxComm *c, PxStream *stream, GError **error);
/* One group over several communicators of this rank, of one implementation
 * (NCCL groups may span communicators): px_comm_group_start on each of cs,
 * send and recv on any of them, then this once instead of px_comm_group_end
 * on each: every call of the group is issued together on stream. */
gboolean px_comm_group_end_multi(PxComm *const *cs, int n, PxStream *stream, GError **error);

/* ---- implementations ---- */

/* Is the implementation built in? ("local" and "tcp" (exec/comm_tcp.h) always;
 * "mpi" with Open MPI; "nccl" with CUDA and NCCL: exec/nccl/comm_nccl.h) */
gboolean px_comm_available(const char *name);

/* local: ranks are threads of this process. The shared state of `world`
 * thread-ranks; timeout_s ≤ 0 means 60 s.
 *
 * Rendezvous mode (NCCL's semantics, for testing what runs on NCCL without a
 * GPU): a send completes only once the peer has posted the matching receive,
 * a group's calls are all posted before any is waited for, and the calls of
 * one rank on one communicator run one at a time in the order the rank issued
 * them, whatever streams they were queued on. An order that would hang on
 * NCCL then stops at the world's deadline with one error naming the call
 * that waited ("send to rank 1 on pp[0,1]: rank 1 never posted the matching
 * receive after 5 s (rendezvous)") instead of hanging. On when the
 * environment has PX_COMM_RENDEZVOUS=1 when the world is made, or by
 * px_local_world_set_rendezvous before any call. */
typedef struct _PxLocalWorld PxLocalWorld;
PxLocalWorld *px_local_world_new(int world, double timeout_s);
void px_local_world_set_rendezvous(PxLocalWorld *w, gboolean on);
gboolean px_local_world_rendezvous(const PxLocalWorld *w);
void px_local_world_free(PxLocalWorld *w);
/* The world communicator of one rank; the world must outlive it. A rank may
 * call from several of its threads at once, on different communicators. */
PxComm *px_comm_local_new(PxLocalWorld *w, int rank);
/* px_comm_abort for a rank that has no communicator at hand. */
void px_local_world_abort(PxLocalWorld *w, const char *reason);

/* mpi: one process per rank. Initialises MPI (MPI_THREAD_MULTIPLE) on first
 * use and returns this process's world communicator; timeout_s ≤ 0 means 60 s.
 * PX_COMM_ERROR_UNSUPPORTED when built without MPI. */
PxComm *px_comm_mpi_new(double timeout_s, GError **error);
/* MPI_Finalize, once every communicator is freed (no-op without MPI). */
void px_comm_mpi_finalize(void);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxGroup, px_group_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxComm, px_comm_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxLocalWorld, px_local_world_free)

G_END_DECLS
