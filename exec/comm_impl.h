/* comm_impl.h — internal: the table of function pointers a communicator
 * implementation fills (local, mpi; nccl later). comm.c checks the arguments
 * (peer and root inside the communicator, dtype, count), runs the calls that
 * come with a queued stream as host functions on that stream, makes the
 * membership of a split, and runs grouped point-to-point; an implementation
 * only moves data, blocking, with its deadline. */
#pragma once
#include "comm.h"

G_BEGIN_DECLS

/* One point-to-point call of a group (px_comm_group_start/end). */
typedef struct {
  gboolean send;
  void *buf;
  gsize count;
  PxDType dtype;
  int peer; /* position in the communicator */
  PxComm *comm; /* the communicator of the call: NULL is the group's own (px_comm_group_end_multi
                 * groups calls of several communicators of one rank) */
} PxP2p;

/* One call as comm.c hands it to an implementation that queues natively. */
typedef enum {
  PX_CALL_ALL_REDUCE, PX_CALL_REDUCE_SCATTER, PX_CALL_ALL_GATHER, PX_CALL_BROADCAST, PX_CALL_BARRIER,
  PX_CALL_SEND, PX_CALL_RECV, PX_CALL_GROUP
} PxCallKind;

typedef struct {
  PxComm *c;
  PxCallKind kind;
  const void *send;
  void *buf;
  gsize count;
  PxDType dt;
  PxRedOp red;
  int arg;           /* root or peer */
  PxP2p *group;      /* PX_CALL_GROUP: owned */
  int n_group;
  char *label;       /* the queuing thread's label (px_comm_set_label), or NULL */
  /* issue order (implementations with PxCommOps.issue): the call's number on
   * each communicator it involves (several for a group over communicators) */
  int n_order;
  PxComm **order_comm;  /* (n_order) owned array */
  guint64 *order_ticket; /* (n_order) owned */
} PxCommCall;

typedef struct {
  const char *name;
  /* free c->impl (the world's shared state goes with the last communicator) */
  void (*free)(PxComm *c);
  /* Collective over parent: make child->impl for the communicator of color
   * (child NULL: this rank is in none, color PX_COMM_NO_COLOR). child->group,
   * pos and label are already set by comm.c. */
  gboolean (*split)(PxComm *parent, int color, int key, PxComm *child, GError **error);
  void (*abort)(PxComm *c, const char *reason);
  gboolean (*check_async)(PxComm *c, GError **error);
  double (*timeout)(const PxComm *c);
  /* Blocking calls on c (this rank is c->pos in c->group). */
  gboolean (*all_reduce)(PxComm *c, void *buf, gsize count, PxDType dt, PxRedOp op, GError **error);
  gboolean (*reduce_scatter)(PxComm *c, const void *send, void *recv, gsize count, PxDType dt,
                             GError **error);
  gboolean (*all_gather)(PxComm *c, const void *send, void *recv, gsize count, PxDType dt,
                         GError **error);
  gboolean (*broadcast)(PxComm *c, void *buf, gsize count, PxDType dt, int root, GError **error);
  gboolean (*barrier)(PxComm *c, GError **error);
  gboolean (*send)(PxComm *c, const void *buf, gsize count, PxDType dt, int peer, GError **error);
  gboolean (*recv)(PxComm *c, void *buf, gsize count, PxDType dt, int peer, GError **error);
  /* Grouped point-to-point, all issued before any is waited for; NULL: comm.c
   * runs each call on a thread of its own and joins them. */
  gboolean (*group)(PxComm *c, const PxP2p *ops, int n, GError **error);
  /* Optional: queue a call on a stream that is not inline, natively (nccl on
   * the stream's cudaStream_t), returning at once. NULL: comm.c queues the
   * blocking call above as a host function on the stream. */
  gboolean (*enqueue)(PxComm *c, const PxCommCall *call, PxStream *stream, GError **error);
  /* Optional: calls on a communicator run one at a time in the order this
   * rank issued them, whatever the streams they were queued on (NCCL runs a
   * communicator's kernels in issue order). issue numbers a call when it is
   * made (before it is queued); turn blocks, with the deadline, until every
   * call issued before it on c has finished (FALSE: the deadline passed or the
   * world was aborted); finish marks it finished. NULL: unordered. */
  guint64 (*issue)(PxComm *c);
  gboolean (*turn)(PxComm *c, guint64 ticket, const char *desc, GError **error);
  void (*finish)(PxComm *c, guint64 ticket);
  /* Optional: run call on stream with the stream's own operations (copies,
   * px_stream_reduce, events; `local`'s device path, comm_local.c) instead of
   * the paths of comm.c (a host function, or staged through host memory on a
   * device stream). takes says whether it does this call on this stream;
   * queue then queues it and returns (its label set; a failure is returned,
   * comm.c puts it on the stream). NULL: never. */
  gboolean (*stream_takes)(PxComm *c, const PxCommCall *call, PxStream *stream);
  gboolean (*stream_queue)(PxComm *c, const PxCommCall *call, PxStream *stream, GError **error);
  /* group (and enqueue) accept calls on other communicators of this rank of
   * the same implementation (PxP2p.comm); FALSE: comm.c runs such a group on
   * two threads, each call on its own communicator. */
  gboolean multi_group;
} PxCommOps;

struct _PxComm {
  const PxCommOps *ops;
  int world_rank, world_size;
  PxGroup *group;   /* members as world ranks, in rank order */
  int pos;          /* this rank's position in group */
  char *label;      /* "dp[0,2]" */
  int n_splits;     /* splits made from this communicator so far (same on every member) */
  void *impl;
  gboolean grouping;
  GArray *pending;  /* PxP2p between group_start and group_end */
  PxCommTraffic traffic; /* px_comm_traffic */
};

/* A communicator header for an implementation's world communicator. */
PxComm *px_comm_alloc_world(const PxCommOps *ops, int rank, int world, void *impl);

/* Sum or max of count elements of x into acc (dt: f32, f64, i32; not a half:
 * one step of a half reduction would round, see px_comm_reduce_parts). */
void px_comm_reduce_into(void *acc, const void *x, gsize count, PxDType dt, PxRedOp op);

/* out = op over k = 0..n-1 of parts[k] (count elements of dt each), in that
 * order, whatever the order the parts arrived in, so that every rank gets
 * the bit-identical result. Halves (bf16, f16): each element's reduction is
 * formed in fp32 (the parts upcast, summed in rank order) and rounded once,
 * to nearest even, into dt; an fp16 sum above 65504 (≥ 65520 before
 * rounding) is ±Inf, as on NCCL. out may be any one of the parts. */
void px_comm_reduce_parts(void *out, const void *const *parts, int n, gsize count, PxDType dt, PxRedOp op);

/* Halves (dt bf16 or f16) to fp32 and back (round to nearest even), for an
 * implementation that reduces them in fp32 (mpi). */
void px_comm_half_to_f32(float *out, const void *x, gsize count, PxDType dt);
void px_comm_f32_to_half(void *out, const float *x, gsize count, PxDType dt);

G_END_DECLS
