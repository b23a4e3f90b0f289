/* comm.h — communicators: collectives and point-to-point over groups of ranks.
 *
 * One PxComm per rank. Backends fill a table of function pointers
 * (comm_impl.h): `local` (ranks are threads of one process, for tests and the
 * cpu backend) now, `nccl` later. Buffers are device pointers of the rank's
 * backend (host memory for `local`); counts are in elements of dtype.
 *
 * Every wait has a timeout: instead of hanging, a collective whose peers do not
 * all arrive fails with PX_COMM_ERROR_TIMEOUT naming the group, the op and the
 * missing ranks ("all_reduce on group dp[0,2]: rank 2 never arrived after 60 s"),
 * and aborts the communicator so the other ranks fail promptly too
 * (PX_COMM_ERROR_ABORTED, carrying the same sentence). */
#pragma once
#include <glib.h>
#include "backend.h"

G_BEGIN_DECLS

#define PX_COMM_ERROR (px_comm_error_quark())
GQuark px_comm_error_quark(void);
typedef enum {
  PX_COMM_ERROR_INVALID,   /* bad group, rank not in group, dtype, count */
  PX_COMM_ERROR_MISMATCH,  /* ranks called different ops / counts / roots on one group */
  PX_COMM_ERROR_TIMEOUT,   /* a peer never arrived */
  PX_COMM_ERROR_ABORTED,   /* another rank failed; the communicator is unusable */
  PX_COMM_ERROR_DEVICE,    /* the transport (NCCL, CUDA) failed */
} PxCommError;

/* An ordered list of global ranks; a rank's position in it is its group rank.
 * name is the axis ("dp", "tp", "pp", "embed", "world"); described as
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
/* Position of a global rank in the group, or -1. */
int px_group_index(const PxGroup *g, int rank);
/* "dp[0,2]" */
char *px_group_describe(const PxGroup *g);

typedef struct _PxComm PxComm;

int px_comm_rank(const PxComm *c);
int px_comm_world(const PxComm *c);
const char *px_comm_name(const PxComm *c);
void px_comm_free(PxComm *c);

/* In-place sum over the group. Every rank gets the bit-identical result. */
gboolean px_comm_all_reduce(PxComm *c, const PxGroup *g, void *buf, gsize count, PxDType dtype,
                            GError **error);
/* send (n*count) summed over the group; group rank i receives chunk i (count). */
gboolean px_comm_reduce_scatter(PxComm *c, const PxGroup *g, const void *send, void *recv,
                                gsize count, PxDType dtype, GError **error);
/* recv (n*count) = the concatenation of every group rank's send (count), in group order. */
gboolean px_comm_all_gather(PxComm *c, const PxGroup *g, const void *send, void *recv, gsize count,
                            PxDType dtype, GError **error);
/* buf of global rank root is copied to every rank of the group. */
gboolean px_comm_broadcast(PxComm *c, const PxGroup *g, void *buf, gsize count, PxDType dtype,
                           int root, GError **error);
/* Blocking point-to-point between global ranks; a send returns once the matching
 * recv (same peer pair and tag, in order) has the data. */
gboolean px_comm_send(PxComm *c, const void *buf, gsize count, PxDType dtype, int peer, int tag,
                      GError **error);
gboolean px_comm_recv(PxComm *c, void *buf, gsize count, PxDType dtype, int peer, int tag,
                      GError **error);
gboolean px_comm_barrier(PxComm *c, const PxGroup *g, GError **error);

/* ---- local: ranks are threads of this process ---- */

typedef struct _PxLocalWorld PxLocalWorld;

/* The shared state of `world` thread-ranks; timeout_s ≤ 0 means 60 s. */
PxLocalWorld *px_local_world_new(int world, double timeout_s);
void px_local_world_free(PxLocalWorld *w);
/* The communicator of one rank; the world must outlive it. A rank may call it
 * from several of its threads at once (e.g. sends posted by helper threads
 * while the rank's own thread runs a collective). */
PxComm *px_comm_local_new(PxLocalWorld *w, int rank);
/* Abort the world: every waiting and every later call fails with
 * PX_COMM_ERROR_ABORTED carrying reason (the first reason given is kept). For
 * a rank that failed outside the communicator, so that no peer waits for it
 * until the timeout. */
void px_local_world_abort(PxLocalWorld *w, const char *reason);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxGroup, px_group_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxComm, px_comm_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxLocalWorld, px_local_world_free)

G_END_DECLS
