/* comm_mpi.c — the `mpi` communicator: one process per rank, on any number of
 * hosts, over Open MPI (built when CMake finds MPI; see comm.h).
 *
 * MPI is initialised with MPI_THREAD_MULTIPLE, since a rank's streams call it
 * from their own threads. Every communicator is an MPI communicator of its
 * own (MPI_Comm_dup of the world, MPI_Comm_split for px_comm_split), with
 * MPI_ERRORS_RETURN. Every call is the non-blocking MPI call followed by a
 * polling wait (MPI_Test with a short back-off) that gives up at the deadline
 * or when the process has aborted: MPI has no timeouts of its own, and a
 * blocking MPI call could not be interrupted. Point-to-point uses one tag, so
 * MPI's non-overtaking rule makes it FIFO per communicator and pair. Sends are
 * eager whatever the message size (comm.h): the payload is copied, posted
 * with MPI_Isend and the call returns; the request completes in the
 * background (reaped at later calls, waited for when the communicator is
 * freed), and an error of it is reported by px_comm_check_async. Without
 * that, a large send waiting in MPI's rendezvous protocol would hold up the
 * sends queued behind it on the same stream. A group (the runtime's pipeline
 * transfers, over two communicators) runs on the calling thread: its sends,
 * eager, then its receives, posted together; it completes with its receives.
 *
 * Failure: a timeout names the communicator and the op (for point-to-point
 * the peer; MPI cannot tell which member of a collective is missing). An
 * abort prints its reason on standard error ("parallax-exec: rank R: ...")
 * and ends the job with MPI_Abort, which makes mpirun / srun stop every
 * process; a rank that dies is reported by the launcher itself. */
#include "comm_impl.h"
#include "check.h"
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define fail(error, code, ...) px_fail((error), PX_COMM_ERROR, (code), __VA_ARGS__)

static gboolean we_initialised;
static gint n_live;       /* communicators alive */
static gint aborted;      /* this process has aborted */

typedef struct {
  MPI_Request req;
  void *copy;
  int peer;
} Pending;

typedef struct {
  MPI_Comm comm;
  double timeout_s;
  GMutex lock;       /* guards pending and error */
  GArray *pending;   /* Pending: eager sends in flight */
  char *error;       /* the first failed eager send */
} Mpi;

static MPI_Datatype mpi_type(PxDType dt) {
  switch (dt) {
  case PX_DTYPE_F32: return MPI_FLOAT;
  case PX_DTYPE_F64: return MPI_DOUBLE;
  case PX_DTYPE_I32: return MPI_INT32_T;
  case PX_DTYPE_BF16:
  case PX_DTYPE_F16: return MPI_UINT16_T; /* moved as bits; reduced in fp32 (mpi_all_reduce) */
  }
  return MPI_DATATYPE_NULL;
}

static gboolean mpi_failed(PxComm *c, const char *what, int rc, GError **error) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0, cls = 0;
  MPI_Error_string(rc, msg, &len);
  MPI_Error_class(rc, &cls);
  /* a message longer than its receive: the ranks disagree on the count */
  return fail(error, cls == MPI_ERR_TRUNCATE ? PX_COMM_ERROR_MISMATCH : PX_COMM_ERROR_DEVICE, "%s on %s: %s", what,
              c->label, msg);
}

static gboolean count_ok(PxComm *c, const char *what, gsize count, GError **error) {
  if (count <= INT_MAX) return TRUE;
  return fail(error, PX_COMM_ERROR_INVALID, "%s on %s: %" G_GSIZE_FORMAT " elements (MPI counts are ints)", what,
              c->label, count);
}

/* The longest sleep between two polls of a request, µs. A pipeline stage's
 * receive waits through its peer's compute, so it is polled at this period
 * when the message lands: the period is added to every transfer a run
 * waits for. 200 µs made a pp 2 step of tiny-gpt about 3 % slower than
 * 50 µs (docs/cost.md section 9); a poll costs a few µs of a core. */
#define PAUSE_MAX_US 50

/* How long a wait polls (MPI_Test, yielding the core between polls) before
 * it starts sleeping, µs. A sleep costs ~60 µs here and a message that lands
 * meanwhile waits for it, and a non-blocking collective's schedule only
 * advances inside MPI_Test: each round of it waited a sleep. Spinning 1 ms
 * instead made the 2-process tiny-gpt steps 6 % (dp 2) and 20 % (tp 2)
 * faster on this 2-core machine, down to what calibrate's back-to-back
 * collectives predict (docs/cost.md section 9). With more processes on the
 * node than cores (--oversubscribe) a spinning rank would hold a core
 * another rank needs: SPIN_OVERSUBSCRIBED_US, as Open MPI's
 * mpi_yield_when_idle does then. Set once per process by px_comm_mpi_new. */
#define SPIN_US 1000
#define SPIN_OVERSUBSCRIBED_US 50
static gint64 spin_us = SPIN_OVERSUBSCRIBED_US;

/* Wait for req until done, the deadline, or an abort. */
static gboolean wait_req(PxComm *c, MPI_Request *req, const char *what, MPI_Status *status, GError **error) {
  Mpi *m = c->impl;
  gint64 deadline = g_get_monotonic_time() + (gint64)(m->timeout_s * G_USEC_PER_SEC);
  gint64 spin_until = g_get_monotonic_time() + spin_us; /* short waits: yield, don't sleep */
  gulong pause = 10;
  for (;;) {
    int done = 0;
    int rc = MPI_Test(req, &done, status ? status : MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_failed(c, what, rc, error);
    if (done) return TRUE;
    if (g_atomic_int_get(&aborted))
      return fail(error, PX_COMM_ERROR_ABORTED, "%s on %s: communicator aborted", what, c->label);
    if (g_get_monotonic_time() > deadline)
      return fail(error, PX_COMM_ERROR_TIMEOUT, "%s on %s: not complete after %g s (a peer never arrived)", what,
                  c->label, m->timeout_s);
    if (g_get_monotonic_time() < spin_until) {
      g_thread_yield();
      continue;
    }
    g_usleep(pause); /* long waits: sleep, so that ranks sharing a core leave it to the one that works */
    pause = MIN(pause * 2, PAUSE_MAX_US);
  }
}

/* bf16 / fp16 reductions: upcast to fp32, reduced by MPI in fp32 (MPI_FLOAT,
 * MPI_SUM / MPI_MAX) and rounded once to nearest even into the half dtype:
 * the sum of each element formed in fp32 and rounded once, as `local` and
 * `tcp` do, and identical on every rank because the fp32 reduction is (the
 * conformance suite checks both). Not a user-defined MPI_Op on 16-bit data:
 * that would round at every step of MPI's reduction (as NCCL's ring does),
 * in an order of MPI's, and so differ from `local` and `tcp` in the last bit
 * where a partial sum is not exact in the half dtype. The cost: twice the
 * bytes on the wire, and an fp32 copy of the buffer on the host. */

static gboolean mpi_all_reduce(PxComm *c, void *buf, gsize count, PxDType dt, PxRedOp op, GError **error) {
  Mpi *m = c->impl;
  MPI_Request req;
  if (!count_ok(c, "all_reduce", count, error)) return FALSE;
  gboolean half = px_dtype_is_half(dt);
  g_autofree float *wide = half ? g_new(float, MAX(count, 1)) : NULL;
  if (half) px_comm_half_to_f32(wide, buf, count, dt);
  int rc = MPI_Iallreduce(MPI_IN_PLACE, half ? (void *)wide : buf, (int)count, half ? MPI_FLOAT : mpi_type(dt),
                          op == PX_RED_MAX ? MPI_MAX : MPI_SUM, m->comm, &req);
  if (rc != MPI_SUCCESS) return mpi_failed(c, "all_reduce", rc, error);
  if (!wait_req(c, &req, "all_reduce", NULL, error)) return FALSE;
  if (half) px_comm_f32_to_half(buf, wide, count, dt);
  return TRUE;
}

static gboolean mpi_reduce_scatter(PxComm *c, const void *send, void *recv, gsize count, PxDType dt, GError **error) {
  Mpi *m = c->impl;
  MPI_Request req;
  gsize total = count * (gsize)c->group->n;
  if (!count_ok(c, "reduce_scatter", total, error)) return FALSE;
  gboolean half = px_dtype_is_half(dt);
  g_autofree float *wsend = half ? g_new(float, MAX(total, 1)) : NULL;
  g_autofree float *wrecv = half ? g_new(float, MAX(count, 1)) : NULL;
  if (half) px_comm_half_to_f32(wsend, send, total, dt);
  int rc = MPI_Ireduce_scatter_block(half ? (const void *)wsend : send, half ? (void *)wrecv : recv, (int)count,
                                     half ? MPI_FLOAT : mpi_type(dt), MPI_SUM, m->comm, &req);
  if (rc != MPI_SUCCESS) return mpi_failed(c, "reduce_scatter", rc, error);
  if (!wait_req(c, &req, "reduce_scatter", NULL, error)) return FALSE;
  if (half) px_comm_f32_to_half(recv, wrecv, count, dt);
  return TRUE;
}

static gboolean mpi_all_gather(PxComm *c, const void *send, void *recv, gsize count, PxDType dt, GError **error) {
  Mpi *m = c->impl;
  MPI_Request req;
  if (!count_ok(c, "all_gather", count * (gsize)c->group->n, error)) return FALSE;
  gsize bytes = count * px_dtype_size(dt);
  const char *mine = (const char *)recv + (gsize)c->pos * bytes;
  g_autofree void *copy = NULL;
  const void *from = send;
  if (send == mine) {
    from = MPI_IN_PLACE; /* the caller's shard already sits in its place */
  } else if ((const char *)send < (const char *)recv + bytes * (gsize)c->group->n &&
             (const char *)send + bytes > (const char *)recv) {
    from = copy = g_memdup2(send, bytes); /* overlapping elsewhere: MPI forbids aliasing */
  }
  int rc = MPI_Iallgather(from, (int)count, mpi_type(dt), recv, (int)count, mpi_type(dt), m->comm, &req);
  if (rc != MPI_SUCCESS) return mpi_failed(c, "all_gather", rc, error);
  return wait_req(c, &req, "all_gather", NULL, error);
}

static gboolean mpi_broadcast(PxComm *c, void *buf, gsize count, PxDType dt, int root, GError **error) {
  Mpi *m = c->impl;
  MPI_Request req;
  if (!count_ok(c, "broadcast", count, error)) return FALSE;
  int rc = MPI_Ibcast(buf, (int)count, mpi_type(dt), root, m->comm, &req);
  if (rc != MPI_SUCCESS) return mpi_failed(c, "broadcast", rc, error);
  return wait_req(c, &req, "broadcast", NULL, error);
}

static gboolean mpi_barrier(PxComm *c, GError **error) {
  Mpi *m = c->impl;
  MPI_Request req;
  int rc = MPI_Ibarrier(m->comm, &req);
  if (rc != MPI_SUCCESS) return mpi_failed(c, "barrier", rc, error);
  return wait_req(c, &req, "barrier", NULL, error);
}

/* Post one send or receive. */
static gboolean post(PxComm *c, const PxP2p *o, MPI_Request *req, GError **error) {
  Mpi *m = c->impl;
  const char *what = o->send ? "send" : "recv";
  if (!count_ok(c, what, o->count, error)) return FALSE;
  int rc = o->send ? MPI_Isend(o->buf, (int)o->count, mpi_type(o->dtype), o->peer, 0, m->comm, req)
                   : MPI_Irecv(o->buf, (int)o->count, mpi_type(o->dtype), o->peer, 0, m->comm, req);
  if (rc != MPI_SUCCESS) return mpi_failed(c, what, rc, error);
  return TRUE;
}

/* Wait for a posted send or receive; a receive checks the size that came. */
static gboolean finish(PxComm *c, const PxP2p *o, MPI_Request *req, GError **error) {
  int peer = c->group->ranks[o->peer];
  g_autofree char *what = o->send ? g_strdup_printf("send from rank %d to rank %d", c->world_rank, peer)
                                  : g_strdup_printf("recv on rank %d from rank %d", c->world_rank, peer);
  MPI_Status st;
  GError *err = NULL;
  if (!wait_req(c, req, what, &st, &err)) {
    if (g_error_matches(err, PX_COMM_ERROR, PX_COMM_ERROR_TIMEOUT)) {
      g_clear_error(&err);
      return fail(error, PX_COMM_ERROR_TIMEOUT, "%s on %s: rank %d never %s after %g s", what, c->label, peer,
                  o->send ? "received" : "sent", ((Mpi *)c->impl)->timeout_s);
    }
    g_propagate_error(error, err);
    return FALSE;
  }
  if (!o->send) {
    int got = 0;
    MPI_Get_count(&st, mpi_type(o->dtype), &got);
    if (got != (int)o->count)
      return fail(error, PX_COMM_ERROR_MISMATCH, "%s on %s: rank %d sent %d %s, the receive expects %" G_GSIZE_FORMAT,
                  what, c->label, peer, got, px_dtype_name(o->dtype), o->count);
  }
  return TRUE;
}

static gboolean mpi_p2p(PxComm *c, const PxP2p *o, GError **error) {
  MPI_Request req;
  return post(c, o, &req, error) && finish(c, o, &req, error);
}

/* Free the eager sends that have completed (all of them with wait, until
 * the deadline). Called with m->lock held. */
static void reap(PxComm *c, gboolean wait) {
  Mpi *m = c->impl;
  gint64 deadline = g_get_monotonic_time() + (gint64)(m->timeout_s * G_USEC_PER_SEC);
  for (guint i = 0; i < m->pending->len;) {
    Pending *p = &g_array_index(m->pending, Pending, i);
    int done = 0;
    int rc = MPI_Test(&p->req, &done, MPI_STATUS_IGNORE);
    if (rc == MPI_SUCCESS && !done && !wait) { /* still on its way */
      i++;
      continue;
    }
    if (rc == MPI_SUCCESS && !done && g_get_monotonic_time() < deadline && !g_atomic_int_get(&aborted)) {
      g_usleep(100);
      continue;
    }
    if (rc != MPI_SUCCESS || !done) {
      if (!m->error)
        m->error = g_strdup_printf("send from rank %d to rank %d on %s: %s", c->world_rank, c->group->ranks[p->peer],
                                   c->label, rc != MPI_SUCCESS ? "failed" : "never received");
      if (!done) MPI_Cancel(&p->req);
    }
    g_free(p->copy);
    g_array_remove_index_fast(m->pending, i);
  }
}

static gboolean mpi_send(PxComm *c, const void *buf, gsize count, PxDType dt, int peer, GError **error) {
  Mpi *m = c->impl;
  if (!count_ok(c, "send", count, error)) return FALSE;
  Pending p = {MPI_REQUEST_NULL, g_memdup2(buf, count * px_dtype_size(dt)), peer};
  int rc = MPI_Isend(p.copy, (int)count, mpi_type(dt), peer, 0, m->comm, &p.req);
  if (rc != MPI_SUCCESS) {
    g_free(p.copy);
    return mpi_failed(c, "send", rc, error);
  }
  g_mutex_lock(&m->lock);
  g_array_append_val(m->pending, p);
  reap(c, FALSE);
  g_mutex_unlock(&m->lock);
  return TRUE;
}

static gboolean mpi_recv(PxComm *c, void *buf, gsize count, PxDType dt, int peer, GError **error) {
  PxP2p o = {FALSE, buf, count, dt, peer, NULL};
  return mpi_p2p(c, &o, error);
}

/* A group (of one communicator or several): its sends first, eager as
 * mpi_send (a group never waits for its peers' receives, so a stage's
 * receive is not held by its send's receiver), then every receive posted
 * before any is waited for. Run on the calling thread: no thread per group. */
static gboolean mpi_group(PxComm *c, const PxP2p *ops, int n, GError **error) {
  for (int i = 0; i < n; i++) {
    PxComm *o = ops[i].comm ? ops[i].comm : c;
    if (ops[i].send && !mpi_send(o, ops[i].buf, ops[i].count, ops[i].dtype, ops[i].peer, error)) return FALSE;
  }
  g_autofree MPI_Request *req = g_new(MPI_Request, MAX(n, 1));
  g_autofree int *at = g_new(int, MAX(n, 1)); /* the receives' indices in ops */
  int posted = 0;
  gboolean ok = TRUE;
  for (int i = 0; ok && i < n; i++) {
    if (ops[i].send) continue;
    ok = post(ops[i].comm ? ops[i].comm : c, &ops[i], &req[posted], error);
    if (ok) at[posted++] = i;
  }
  for (int k = 0; k < posted; k++) {
    const PxP2p *o = &ops[at[k]];
    if (ok) ok = finish(o->comm ? o->comm : c, o, &req[k], error);
    else MPI_Cancel(&req[k]);
  }
  return ok;
}

static Mpi *mpi_new(MPI_Comm comm, double timeout_s) {
  Mpi *m = g_new0(Mpi, 1);
  m->comm = comm;
  m->timeout_s = timeout_s;
  g_mutex_init(&m->lock);
  m->pending = g_array_new(FALSE, FALSE, sizeof(Pending));
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  g_atomic_int_inc(&n_live);
  return m;
}

static void mpi_free(PxComm *c) {
  Mpi *m = c->impl;
  if (!m) return;
  g_mutex_lock(&m->lock);
  reap(c, TRUE); /* the eager sends still in flight are received, or time out */
  g_mutex_unlock(&m->lock);
  g_array_unref(m->pending);
  g_free(m->error);
  g_mutex_clear(&m->lock);
  if (!g_atomic_int_get(&aborted)) MPI_Comm_free(&m->comm);
  g_atomic_int_add(&n_live, -1);
  g_free(m);
}

static gboolean mpi_split(PxComm *parent, int color, int key, PxComm *child, GError **error) {
  Mpi *p = parent->impl;
  MPI_Comm out = MPI_COMM_NULL;
  int rc = MPI_Comm_split(p->comm, color < 0 ? MPI_UNDEFINED : color, key, &out);
  if (rc != MPI_SUCCESS) return mpi_failed(parent, "split", rc, error);
  if (child) child->impl = mpi_new(out, p->timeout_s);
  else if (out != MPI_COMM_NULL) MPI_Comm_free(&out);
  return TRUE;
}

static void mpi_abort(PxComm *c, const char *reason) {
  if (!g_atomic_int_compare_and_exchange(&aborted, 0, 1)) return;
  if (reason && g_str_has_prefix(reason, "rank ")) fprintf(stderr, "parallax-exec: %s\n", reason);
  else fprintf(stderr, "parallax-exec: rank %d: %s\n", c->world_rank, reason ? reason : "aborted");
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
}

static gboolean mpi_check_async(PxComm *c, GError **error) {
  if (g_atomic_int_get(&aborted)) return fail(error, PX_COMM_ERROR_ABORTED, "communicator %s aborted", c->label);
  Mpi *m = c->impl;
  g_mutex_lock(&m->lock);
  reap(c, FALSE);
  gboolean ok = m->error == NULL;
  if (!ok) fail(error, PX_COMM_ERROR_DEVICE, "%s", m->error);
  g_mutex_unlock(&m->lock);
  return ok;
}

static double mpi_timeout(const PxComm *c) { return ((Mpi *)c->impl)->timeout_s; }

static const PxCommOps mpi_ops = {
  .name = "mpi",
  .free = mpi_free,
  .split = mpi_split,
  .abort = mpi_abort,
  .check_async = mpi_check_async,
  .timeout = mpi_timeout,
  .all_reduce = mpi_all_reduce,
  .reduce_scatter = mpi_reduce_scatter,
  .all_gather = mpi_all_gather,
  .broadcast = mpi_broadcast,
  .barrier = mpi_barrier,
  .send = mpi_send,
  .recv = mpi_recv,
  .group = mpi_group,
  .multi_group = TRUE,
};

PxComm *px_comm_mpi_new(double timeout_s, GError **error) {
  int init = 0, provided = 0;
  MPI_Initialized(&init);
  if (!init) {
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
      fail(error, PX_COMM_ERROR_DEVICE, "MPI_Init_thread failed");
      return NULL;
    }
    we_initialised = TRUE;
  } else {
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_MULTIPLE) {
    fail(error, PX_COMM_ERROR_UNSUPPORTED,
         "this MPI library gives thread level %d, the executor needs MPI_THREAD_MULTIPLE (%d)", provided,
         MPI_THREAD_MULTIPLE);
    return NULL;
  }
  /* errors come back as codes (Open MPI raises some on the world communicator, whatever the one used) */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int rank = 0, world = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  /* the processes on this node against its cores: spin, or yield the cores early */
  MPI_Comm node;
  int local = world;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    MPI_Comm_size(node, &local);
    MPI_Comm_free(&node);
  }
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  spin_us = cores > 0 && local <= cores ? SPIN_US : SPIN_OVERSUBSCRIBED_US;
  MPI_Comm dup;
  if (MPI_Comm_dup(MPI_COMM_WORLD, &dup) != MPI_SUCCESS) {
    fail(error, PX_COMM_ERROR_DEVICE, "MPI_Comm_dup of the world failed");
    return NULL;
  }
  return px_comm_alloc_world(&mpi_ops, rank, world, mpi_new(dup, timeout_s > 0 ? timeout_s : 60.0));
}

void px_comm_mpi_finalize(void) {
  int fin = 0;
  MPI_Finalized(&fin);
  if (we_initialised && !fin && g_atomic_int_get(&n_live) == 0) MPI_Finalize();
}
