/* comm_nccl.c — the `nccl` communicator (see comm_nccl.h): bootstrap through
 * MPI or the TCP store, non-blocking NCCL communicators, calls queued
 * natively on CUDA streams or run on an internal stream with the deadline,
 * and a watchdog thread that aborts the world when a queued call does not
 * complete in time or NCCL reports an asynchronous error.
 *
 * Locks. World.rw guards the ncclComm_t handles: every NCCL call on a
 * communicator holds it for reading (non-blocking calls return at once), an
 * abort holds it for writing while it calls ncclCommAbort and clears the
 * handles, so no thread uses a handle that is gone. World.lock guards the
 * abort reason, the live communicators and the watch list; it is taken after
 * rw, never before. */
#include "nccl/comm_nccl.h"
#include "nccl/store.h"
#include "backend_impl.h"
#include "comm_impl.h"
#include "check.h"
#include <cuda_runtime.h>
#include <nccl.h>
#include <string.h>

#define fail(error, code, ...) px_fail((error), PX_COMM_ERROR, (code), __VA_ARGS__)

typedef struct World World;

/* One rank's handle on one communicator. */
typedef struct {
  World *w;
  ncclComm_t comm;       /* NULL once aborted (written under w->rw for writing) */
  cudaStream_t internal; /* the calls made from the host run here */
  int *scratch;          /* one device int: the barrier's all-reduce */
  char *label;           /* "dp[0,2]" (for the watchdog's sentences) */
} Nccl;

/* A call queued on a CUDA stream: reached once start is complete, complete
 * once ev is; its deadline counts from the first (px_nccl_watch_poll). */
typedef struct {
  cudaEvent_t start, ev;
  char *what;
  PxNcclWatch clock;
} Watch;

struct World {
  int rank, world, device;
  double timeout_s;
  GRWLock rw;
  GMutex lock;
  GCond cond;          /* a watch was added, or quit */
  char *abort_msg;     /* the first reason; the world is unusable once set */
  GPtrArray *live;     /* Nccl of this process, not freed */
  GQueue watches;      /* Watch */
  gboolean quit;
  GThread *watchdog;
  PxComm *mpi;         /* the mpi world the id came through, or NULL */
  int refs;            /* Nccl handles alive (under lock) */
};

static ncclDataType_t nccl_type(PxDType dt) {
  switch (dt) {
  case PX_DTYPE_F32: return ncclFloat32;
  case PX_DTYPE_F64: return ncclFloat64;
  case PX_DTYPE_I32: return ncclInt32;
  case PX_DTYPE_BF16: return ncclBfloat16;
  case PX_DTYPE_F16: return ncclFloat16;
  }
  return ncclFloat32;
}

static const char *const call_names[] = {"all_reduce", "reduce_scatter", "all_gather", "broadcast", "barrier",
                                         "send", "recv", "group"};

static gint64 deadline_of(World *w) { return g_get_monotonic_time() + (gint64)(w->timeout_s * G_USEC_PER_SEC); }

/* A short yield first, then sleeps growing to 200 us (as comm_mpi.c waits). */
static void backoff(gint64 spin_until, gulong *pause) {
  if (g_get_monotonic_time() < spin_until) {
    g_thread_yield();
    return;
  }
  g_usleep(*pause);
  *pause = MIN(*pause * 2, 200);
}

/* ---- the world: abort and the watchdog ---- */

/* The reason the world failed (a copy), or NULL. */
static char *aborted_reason(World *w) {
  g_mutex_lock(&w->lock);
  char *m = g_strdup(w->abort_msg);
  g_mutex_unlock(&w->lock);
  return m;
}

static gboolean aborted_error(World *w, const char *what, GError **error) {
  g_autofree char *m = aborted_reason(w);
  if (!m) return TRUE;
  return fail(error, PX_COMM_ERROR_ABORTED, "%s: communicator aborted: %s", what, m);
}

/* The handle is gone (aborted, or freed): ABORTED with the reason. */
static gboolean gone(World *w, const char *what, GError **error) {
  g_autofree char *m = aborted_reason(w);
  return fail(error, PX_COMM_ERROR_ABORTED, "%s: communicator aborted: %s", what, m ? m : "freed");
}

/* Abort every communicator of the process, once; the first reason is kept. */
static void world_abort(World *w, const char *reason) {
  g_rw_lock_writer_lock(&w->rw);
  g_mutex_lock(&w->lock);
  gboolean first = w->abort_msg == NULL;
  if (first) w->abort_msg = g_strdup(reason ? reason : "aborted");
  if (first) {
    cudaSetDevice(w->device);
    for (guint i = 0; i < w->live->len; i++) {
      Nccl *n = w->live->pdata[i];
      if (n->comm) ncclCommAbort(n->comm); /* the stuck kernels return; the handle is gone */
      n->comm = NULL;
    }
    g_cond_broadcast(&w->cond);
  }
  g_mutex_unlock(&w->lock);
  g_rw_lock_writer_unlock(&w->rw);
  /* under mpirun, end the job so that the peers stop too (mpi prints the reason) */
  if (first && w->mpi) px_comm_abort(w->mpi, reason);
}

static void watch_free(Watch *x) {
  if (x->start) cudaEventDestroy(x->start); /* released once complete */
  if (x->ev) cudaEventDestroy(x->ev);
  g_free(x->what);
  g_free(x);
}

/* The first asynchronous error of a live communicator, as a sentence, or NULL. */
static char *async_errors(World *w) {
  char *reason = NULL;
  g_rw_lock_reader_lock(&w->rw);
  g_mutex_lock(&w->lock);
  for (guint i = 0; i < w->live->len && !reason; i++) {
    Nccl *n = w->live->pdata[i];
    ncclResult_t st = ncclSuccess;
    if (n->comm && ncclCommGetAsyncError(n->comm, &st) == ncclSuccess && st != ncclSuccess && st != ncclInProgress)
      reason = g_strdup_printf("rank %d: nccl on %s: %s (%s)", w->rank, n->label, ncclGetErrorString(st),
                               ncclGetLastError(n->comm));
  }
  g_mutex_unlock(&w->lock);
  g_rw_lock_reader_unlock(&w->rw);
  return reason;
}

static gpointer watchdog_main(gpointer data) {
  World *w = data;
  cudaSetDevice(w->device);
  g_mutex_lock(&w->lock);
  while (!w->quit) {
    char *reason = NULL;
    gboolean was_aborted = w->abort_msg != NULL;
    if (!was_aborted) {
      for (GList *l = w->watches.head; l && !reason;) {
        GList *next = l->next;
        Watch *x = l->data;
        /* the start event only until it has been seen complete */
        cudaError_t qs = x->clock.started_us < 0 ? cudaEventQuery(x->start) : cudaSuccess;
        cudaError_t q = qs == cudaSuccess ? cudaEventQuery(x->ev) : cudaErrorNotReady;
        cudaError_t bad = qs != cudaSuccess && qs != cudaErrorNotReady ? qs
                          : q != cudaSuccess && q != cudaErrorNotReady ? q : cudaSuccess;
        if (bad != cudaSuccess) {
          reason = g_strdup_printf("%s: %s", x->what, cudaGetErrorString(bad));
        } else {
          switch (px_nccl_watch_poll(&x->clock, qs == cudaSuccess, q == cudaSuccess, g_get_monotonic_time(),
                                     (gint64)(w->timeout_s * G_USEC_PER_SEC))) {
          case PX_NCCL_WATCH_DONE:
            g_queue_delete_link(&w->watches, l);
            watch_free(x);
            break;
          case PX_NCCL_WATCH_EXPIRED: reason = px_nccl_watch_reason(&x->clock, x->what, w->timeout_s); break;
          case PX_NCCL_WATCH_QUEUED:
          case PX_NCCL_WATCH_RUNNING: break;
          }
        }
        l = next;
      }
    } else { /* aborted: nothing more to watch */
      while (!g_queue_is_empty(&w->watches)) watch_free(g_queue_pop_head(&w->watches));
    }
    g_mutex_unlock(&w->lock);
    if (!reason && !was_aborted) reason = async_errors(w);
    if (reason) world_abort(w, reason);
    g_free(reason);
    g_mutex_lock(&w->lock);
    /* a poll every 2 ms while calls are in flight; otherwise asleep until one is */
    if (!w->quit && g_queue_is_empty(&w->watches)) g_cond_wait_until(&w->cond, &w->lock, g_get_monotonic_time() + 100000);
    else if (!w->quit) g_cond_wait_until(&w->cond, &w->lock, g_get_monotonic_time() + 2000);
  }
  while (!g_queue_is_empty(&w->watches)) watch_free(g_queue_pop_head(&w->watches));
  g_mutex_unlock(&w->lock);
  return NULL;
}

static World *world_new(int rank, int world, int device, double timeout_s) {
  World *w = g_new0(World, 1);
  w->rank = rank, w->world = world, w->device = device;
  w->timeout_s = timeout_s > 0 ? timeout_s : 60.0;
  g_rw_lock_init(&w->rw);
  g_mutex_init(&w->lock);
  g_cond_init(&w->cond);
  w->live = g_ptr_array_new();
  g_queue_init(&w->watches);
  w->watchdog = g_thread_new("px-nccl-watchdog", watchdog_main, w);
  return w;
}

static void world_unref(World *w) {
  g_mutex_lock(&w->lock);
  gboolean last = --w->refs == 0;
  if (last) w->quit = TRUE;
  g_cond_broadcast(&w->cond);
  g_mutex_unlock(&w->lock);
  if (!last) return;
  g_thread_join(w->watchdog);
  px_comm_free(w->mpi);
  g_ptr_array_unref(w->live);
  g_free(w->abort_msg);
  g_rw_lock_clear(&w->rw);
  g_mutex_clear(&w->lock);
  g_cond_clear(&w->cond);
  g_free(w);
}

/* ---- NCCL results ---- */

/* An NCCL error of a call: DEVICE, and the world is aborted with the sentence. */
static gboolean nccl_failed(World *w, const char *what, ncclResult_t r, ncclComm_t comm, GError **error) {
  g_autofree char *msg = g_strdup_printf("%s: %s%s%s%s", what, ncclGetErrorString(r),
                                         comm ? " (" : "", comm ? ncclGetLastError(comm) : "", comm ? ")" : "");
  world_abort(w, msg);
  return fail(error, PX_COMM_ERROR_DEVICE, "%s", msg);
}

/* Poll comm (a non-blocking call answered ncclInProgress) until it is done,
 * the deadline, or the world is aborted. The caller holds nothing. */
static gboolean settle(World *w, Nccl *n, ncclComm_t fresh, const char *what, gint64 deadline, GError **error) {
  gint64 spin_until = g_get_monotonic_time() + 50;
  gulong pause = 10;
  for (;;) {
    ncclResult_t st = ncclSuccess;
    g_rw_lock_reader_lock(&w->rw);
    ncclComm_t comm = fresh ? fresh : n->comm;
    ncclResult_t r = comm ? ncclCommGetAsyncError(comm, &st) : ncclSuccess;
    g_rw_lock_reader_unlock(&w->rw);
    if (!comm || !aborted_error(w, what, NULL)) return gone(w, what, error);
    if (r != ncclSuccess) return nccl_failed(w, what, r, NULL, error);
    if (st == ncclSuccess) return TRUE;
    if (st != ncclInProgress) return nccl_failed(w, what, st, comm, error);
    if (g_get_monotonic_time() > deadline) {
      g_autofree char *msg = g_strdup_printf("%s: not complete after %g s (a peer never arrived)", what, w->timeout_s);
      world_abort(w, msg);
      return fail(error, PX_COMM_ERROR_TIMEOUT, "%s", msg);
    }
    backoff(spin_until, &pause);
  }
}

/* ---- issuing calls on a CUDA stream ---- */

/* Issue call k on stream s (no waiting). bufs overrides the call's buffers
 * (staged copies) when not NULL: [0] send / group buffers in order, [1] buf. */
static gboolean issue(Nccl *n, PxComm *c, const PxCommCall *k, const void *send, void *buf, void *const *gbufs,
                      cudaStream_t s, const char *what, GError **error) {
  World *w = n->w;
  gsize es = px_dtype_size(k->dt), bytes = k->count * es;
  ncclDataType_t t = nccl_type(k->dt);
  void *tmp = NULL;
  g_rw_lock_reader_lock(&w->rw);
  ncclComm_t comm = n->comm;
  ncclResult_t r = ncclSuccess;
  cudaError_t ce = cudaSuccess;
  if (!comm) {
    g_rw_lock_reader_unlock(&w->rw);
    return gone(w, what, error);
  }
  switch (k->kind) {
  case PX_CALL_ALL_REDUCE:
    r = ncclAllReduce(buf, buf, k->count, t, k->red == PX_RED_MAX ? ncclMax : ncclSum, comm, s);
    break;
  case PX_CALL_REDUCE_SCATTER: r = ncclReduceScatter(send, buf, k->count, t, ncclSum, comm, s); break;
  case PX_CALL_ALL_GATHER: {
    const char *mine = (const char *)buf + (gsize)c->pos * bytes;
    const char *from = send;
    gboolean overlaps = from != mine && from < (const char *)buf + bytes * (gsize)c->group->n &&
                        from + bytes > (const char *)buf;
    if (overlaps && bytes) { /* NCCL's in place is the shard at its own place; anything else overlapping is copied */
      ce = cudaMallocAsync(&tmp, bytes, s);
      if (ce == cudaSuccess) ce = cudaMemcpyAsync(tmp, send, bytes, cudaMemcpyDeviceToDevice, s);
      from = tmp;
    }
    if (ce == cudaSuccess) r = ncclAllGather(from, buf, k->count, t, comm, s);
    if (tmp) cudaFreeAsync(tmp, s);
    break;
  }
  case PX_CALL_BROADCAST: r = ncclBroadcast(buf, buf, k->count, t, k->arg, comm, s); break;
  case PX_CALL_BARRIER: r = ncclAllReduce(n->scratch, n->scratch, 1, ncclInt32, ncclSum, comm, s); break;
  case PX_CALL_SEND: r = ncclSend(send, k->count, t, k->arg, comm, s); break;
  case PX_CALL_RECV: r = ncclRecv(buf, k->count, t, k->arg, comm, s); break;
  case PX_CALL_GROUP:
    /* one group, also over several communicators of this rank (px_comm_group_end_multi):
     * NCCL launches it at ncclGroupEnd, every call progressing together */
    r = ncclGroupStart();
    for (int i = 0; i < k->n_group && r == ncclSuccess; i++) {
      const PxP2p *o = &k->group[i];
      void *b = gbufs ? gbufs[i] : o->buf;
      ncclComm_t oc = o->comm ? ((Nccl *)o->comm->impl)->comm : comm;
      if (!oc) {
        r = ncclInvalidUsage;
        break;
      }
      r = o->send ? ncclSend(b, o->count, nccl_type(o->dtype), o->peer, oc, s)
                  : ncclRecv(b, o->count, nccl_type(o->dtype), o->peer, oc, s);
    }
    {
      ncclResult_t e = ncclGroupEnd(); /* always closed, also after a failed call inside */
      if (r == ncclSuccess) r = e;
    }
    break;
  }
  g_rw_lock_reader_unlock(&w->rw);
  if (ce != cudaSuccess) {
    g_autofree char *msg = g_strdup_printf("%s: %s", what, cudaGetErrorString(ce));
    world_abort(w, msg);
    return fail(error, PX_COMM_ERROR_DEVICE, "%s", msg);
  }
  if (r == ncclInProgress) {
    /* a nonblocking group over several communicators: each one is polled
     * until it is no longer in progress before it is used again (NCCL's
     * "Nonblocking group operation" polls every communicator of the group) */
    gint64 deadline = deadline_of(w);
    if (!settle(w, n, NULL, what, deadline, error)) return FALSE;
    for (int i = 0; k->kind == PX_CALL_GROUP && i < k->n_group; i++) {
      Nccl *o = k->group[i].comm ? (Nccl *)k->group[i].comm->impl : n;
      gboolean seen = o == n;
      for (int j = 0; j < i && !seen; j++) seen = (k->group[j].comm ? (Nccl *)k->group[j].comm->impl : n) == o;
      if (!seen && !settle(o->w, o, NULL, what, deadline, error)) return FALSE;
    }
    return TRUE;
  }
  if (r != ncclSuccess) return nccl_failed(w, what, r, comm, error);
  return TRUE;
}

/* "rank 3: all_reduce on dp[1,3]" (with the queuing thread's label when there is one) */
static char *call_what(PxComm *c, const PxCommCall *k) {
  World *w = ((Nccl *)c->impl)->w;
  const char *name = call_names[k->kind];
  g_autofree char *who = k->label ? g_strdup(k->label) : g_strdup_printf("rank %d", w->rank);
  if (k->kind == PX_CALL_SEND || k->kind == PX_CALL_RECV)
    return g_strdup_printf("%s: %s %s rank %d on %s", who, name, k->kind == PX_CALL_SEND ? "to" : "from",
                           c->group->ranks[k->arg], c->label);
  return g_strdup_printf("%s: %s on %s", who, name, c->label);
}

/* ---- calls from the host: staged, on the internal stream, waited for ---- */

typedef struct {
  const void *user;
  void *dev;
  gsize bytes;
  gboolean in, out;
} Stage;

static gboolean on_device(const void *p) {
  struct cudaPointerAttributes a;
  if (!p || cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError(); /* clear the sticky-free error of an unknown pointer */
    return FALSE;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

/* The device address to use for user pointer p (bytes): p itself, or a
 * staging block (copied in when in). */
static gboolean stage(Nccl *n, GArray *st, const void *p, gsize bytes, gboolean in, gboolean out, void **dev,
                      GError **error) {
  if (!bytes || on_device(p)) {
    *dev = bytes ? (void *)p : n->scratch; /* nothing moves: any device address will do */
    return TRUE;
  }
  Stage x = {p, NULL, bytes, in, out};
  cudaError_t ce = cudaMallocAsync(&x.dev, bytes, n->internal);
  if (ce == cudaSuccess && in) ce = cudaMemcpyAsync(x.dev, p, bytes, cudaMemcpyHostToDevice, n->internal);
  if (ce != cudaSuccess) {
    if (x.dev) cudaFreeAsync(x.dev, n->internal);
    return fail(error, PX_COMM_ERROR_DEVICE, "rank %d: staging %" G_GSIZE_FORMAT " bytes on %s: %s", n->w->rank, bytes,
                n->label, cudaGetErrorString(ce));
  }
  g_array_append_val(st, x);
  *dev = x.dev;
  return TRUE;
}

/* Wait for the internal stream with the deadline. */
static gboolean wait_internal(Nccl *n, const char *what, GError **error) {
  World *w = n->w;
  gint64 deadline = deadline_of(w), spin_until = g_get_monotonic_time() + 50;
  gulong pause = 10;
  for (;;) {
    if (!aborted_error(w, what, error)) return FALSE;
    cudaError_t q = cudaStreamQuery(n->internal);
    if (q == cudaSuccess) return TRUE;
    if (q != cudaErrorNotReady) {
      g_autofree char *msg = g_strdup_printf("%s: %s", what, cudaGetErrorString(q));
      world_abort(w, msg);
      return fail(error, PX_COMM_ERROR_DEVICE, "%s", msg);
    }
    g_autofree char *async = async_errors(w);
    if (async) {
      world_abort(w, async);
      return fail(error, PX_COMM_ERROR_DEVICE, "%s", async);
    }
    if (g_get_monotonic_time() > deadline) {
      g_autofree char *msg = g_strdup_printf("%s: not complete after %g s (a peer never arrived)", what, w->timeout_s);
      world_abort(w, msg);
      return fail(error, PX_COMM_ERROR_TIMEOUT, "%s", msg);
    }
    backoff(spin_until, &pause);
  }
}

static gboolean run_blocking(PxComm *c, const PxCommCall *k, GError **error) {
  Nccl *n = c->impl;
  World *w = n->w;
  g_autofree char *what = call_what(c, k);
  if (!aborted_error(w, what, error)) return FALSE;
  cudaSetDevice(w->device);
  gsize bytes = k->count * px_dtype_size(k->dt), nb = bytes * (gsize)c->group->n;
  g_autoptr(GArray) st = g_array_new(FALSE, FALSE, sizeof(Stage));
  g_autofree void **gbufs = k->kind == PX_CALL_GROUP ? g_new0(void *, MAX(k->n_group, 1)) : NULL;
  void *send = NULL, *buf = NULL;
  gboolean ok = TRUE;
  switch (k->kind) {
  case PX_CALL_ALL_REDUCE:
  case PX_CALL_BROADCAST: ok = stage(n, st, k->buf, bytes, TRUE, TRUE, &buf, error); break;
  case PX_CALL_REDUCE_SCATTER:
    ok = stage(n, st, k->send, nb, TRUE, FALSE, &send, error) && stage(n, st, k->buf, bytes, FALSE, TRUE, &buf, error);
    break;
  case PX_CALL_ALL_GATHER:
    ok = stage(n, st, k->send, bytes, TRUE, FALSE, &send, error) && stage(n, st, k->buf, nb, FALSE, TRUE, &buf, error);
    break;
  case PX_CALL_SEND: ok = stage(n, st, k->send, bytes, TRUE, FALSE, &send, error); break;
  case PX_CALL_RECV: ok = stage(n, st, k->buf, bytes, FALSE, TRUE, &buf, error); break;
  case PX_CALL_BARRIER: break;
  case PX_CALL_GROUP:
    for (int i = 0; ok && i < k->n_group; i++) {
      const PxP2p *o = &k->group[i];
      ok = stage(n, st, o->buf, o->count * px_dtype_size(o->dtype), o->send, !o->send, &gbufs[i], error);
    }
    break;
  }
  /* a staged all_gather whose shard sat inside its result: the staged result is separate, so out of place */
  ok = ok && issue(n, c, k, send, buf, gbufs, n->internal, what, error) && wait_internal(n, what, error);
  cudaError_t ce = cudaSuccess;
  for (guint i = 0; i < st->len; i++) {
    Stage *x = &g_array_index(st, Stage, i);
    if (ok && x->out && ce == cudaSuccess)
      ce = cudaMemcpyAsync((void *)x->user, x->dev, x->bytes, cudaMemcpyDeviceToHost, n->internal);
    cudaFreeAsync(x->dev, n->internal);
  }
  /* the copies back run behind a completed call: nothing here can wait for a peer */
  if (st->len && ok && ce == cudaSuccess) ce = cudaStreamSynchronize(n->internal);
  if (ok && ce != cudaSuccess)
    return fail(error, PX_COMM_ERROR_DEVICE, "%s: copying the result to the host: %s", what, cudaGetErrorString(ce));
  return ok;
}

static gboolean nccl_all_reduce(PxComm *c, void *buf, gsize count, PxDType dt, PxRedOp op, GError **error) {
  PxCommCall k = {.c = c, .kind = PX_CALL_ALL_REDUCE, .buf = buf, .count = count, .dt = dt, .red = op};
  return run_blocking(c, &k, error);
}

static gboolean nccl_reduce_scatter(PxComm *c, const void *send, void *recv, gsize count, PxDType dt, GError **error) {
  PxCommCall k = {.c = c, .kind = PX_CALL_REDUCE_SCATTER, .send = send, .buf = recv, .count = count, .dt = dt};
  return run_blocking(c, &k, error);
}

static gboolean nccl_all_gather(PxComm *c, const void *send, void *recv, gsize count, PxDType dt, GError **error) {
  PxCommCall k = {.c = c, .kind = PX_CALL_ALL_GATHER, .send = send, .buf = recv, .count = count, .dt = dt};
  return run_blocking(c, &k, error);
}

static gboolean nccl_broadcast(PxComm *c, void *buf, gsize count, PxDType dt, int root, GError **error) {
  PxCommCall k = {.c = c, .kind = PX_CALL_BROADCAST, .buf = buf, .count = count, .dt = dt, .arg = root};
  return run_blocking(c, &k, error);
}

static gboolean nccl_barrier(PxComm *c, GError **error) {
  PxCommCall k = {.c = c, .kind = PX_CALL_BARRIER, .dt = PX_DTYPE_I32};
  return run_blocking(c, &k, error);
}

static gboolean nccl_send(PxComm *c, const void *buf, gsize count, PxDType dt, int peer, GError **error) {
  PxCommCall k = {.c = c, .kind = PX_CALL_SEND, .send = buf, .count = count, .dt = dt, .arg = peer};
  return run_blocking(c, &k, error);
}

static gboolean nccl_recv(PxComm *c, void *buf, gsize count, PxDType dt, int peer, GError **error) {
  PxCommCall k = {.c = c, .kind = PX_CALL_RECV, .buf = buf, .count = count, .dt = dt, .arg = peer};
  return run_blocking(c, &k, error);
}

static gboolean nccl_group(PxComm *c, const PxP2p *ops, int n, GError **error) {
  PxCommCall k = {.c = c, .kind = PX_CALL_GROUP, .group = (PxP2p *)ops, .n_group = n, .dt = PX_DTYPE_I32};
  return run_blocking(c, &k, error);
}

/* ---- calls queued on streams ---- */

/* A host stream (the cpu backend's worker threads): the call runs there as a
 * host function, blocking, as comm.c queues the other implementations. */
static gboolean host_call_run(gpointer data, GError **error) {
  PxCommCall *k = data;
  GError *e = NULL;
  if (run_blocking(k->c, k, &e)) return TRUE;
  if (!g_error_matches(e, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED)) world_abort(((Nccl *)k->c->impl)->w, e->message);
  g_propagate_error(error, e);
  return FALSE;
}

static void host_call_free(gpointer data) {
  PxCommCall *k = data;
  g_free(k->group);
  g_free(k->label);
  g_free(k);
}

static gboolean nccl_enqueue(PxComm *c, const PxCommCall *call, PxStream *stream, GError **error) {
  Nccl *n = c->impl;
  World *w = n->w;
  cudaStream_t s = px_stream_native(stream);
  if (!s) {
    if (stream->ops != &px_host_stream_ops)
      return fail(error, PX_COMM_ERROR_INVALID, "%s on %s: stream %s has no CUDA stream for NCCL",
                  call_names[call->kind], c->label, px_stream_label(stream));
    PxCommCall *k = g_memdup2(call, sizeof *k);
    k->group = call->group ? g_memdup2(call->group, sizeof(PxP2p) * (gsize)call->n_group) : NULL;
    k->label = g_strdup(call->label);
    return px_stream_launch_host(stream, host_call_run, k, host_call_free, error);
  }
  g_autofree char *what = call_what(c, call);
  if (!aborted_error(w, what, error)) return FALSE;
  cudaSetDevice(w->device);
  /* the watchdog's: start, reached when the stream gets to the call (the
   * deadline counts from then); ev, complete once the stream has passed it */
  Watch *x = g_new0(Watch, 1);
  px_nccl_watch_init(&x->clock, g_get_monotonic_time());
  cudaError_t ce = cudaEventCreateWithFlags(&x->start, cudaEventDisableTiming);
  if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&x->ev, cudaEventDisableTiming);
  if (ce == cudaSuccess) ce = cudaEventRecord(x->start, s);
  if (ce != cudaSuccess) {
    watch_free(x);
    g_autofree char *msg = g_strdup_printf("%s: recording its event: %s", what, cudaGetErrorString(ce));
    world_abort(w, msg);
    return fail(error, PX_COMM_ERROR_DEVICE, "%s", msg);
  }
  if (!issue(n, c, call, call->send, call->buf, NULL, s, what, error)) {
    watch_free(x);
    return FALSE;
  }
  ce = cudaEventRecord(x->ev, s);
  if (ce != cudaSuccess) {
    watch_free(x);
    g_autofree char *msg = g_strdup_printf("%s: recording its event: %s", what, cudaGetErrorString(ce));
    world_abort(w, msg);
    return fail(error, PX_COMM_ERROR_DEVICE, "%s", msg);
  }
  x->what = g_steal_pointer(&what);
  g_mutex_lock(&w->lock);
  g_queue_push_tail(&w->watches, x);
  g_cond_broadcast(&w->cond);
  g_mutex_unlock(&w->lock);
  return TRUE;
}

/* ---- communicators ---- */

static Nccl *handle_new(World *w, ncclComm_t comm, const char *label, GError **error) {
  Nccl *n = g_new0(Nccl, 1);
  n->w = w;
  n->comm = comm;
  n->label = g_strdup(label);
  cudaError_t ce = cudaStreamCreateWithFlags(&n->internal, cudaStreamNonBlocking);
  if (ce == cudaSuccess) ce = cudaMallocAsync((void **)&n->scratch, sizeof(int), n->internal);
  if (ce == cudaSuccess) ce = cudaMemsetAsync(n->scratch, 0, sizeof(int), n->internal);
  if (ce == cudaSuccess) ce = cudaStreamSynchronize(n->internal);
  if (ce != cudaSuccess) {
    fail(error, PX_COMM_ERROR_DEVICE, "rank %d: nccl communicator %s: %s", w->rank, label, cudaGetErrorString(ce));
    if (n->internal) cudaStreamDestroy(n->internal);
    ncclCommAbort(comm);
    g_free(n->label);
    g_free(n);
    return NULL;
  }
  g_mutex_lock(&w->lock);
  w->refs++;
  g_ptr_array_add(w->live, n);
  g_mutex_unlock(&w->lock);
  return n;
}

/* Finalize and destroy (aborted communicators are gone already). */
static void nccl_free(PxComm *c) {
  Nccl *n = c->impl;
  if (!n) return;
  World *w = n->w;
  cudaSetDevice(w->device);
  g_rw_lock_writer_lock(&w->rw);
  g_mutex_lock(&w->lock);
  g_ptr_array_remove(w->live, n);
  ncclComm_t comm = n->comm;
  n->comm = NULL;
  g_mutex_unlock(&w->lock);
  g_rw_lock_writer_unlock(&w->rw);
  if (comm) {
    /* finalize flushes what is queued on the communicator; a peer that is gone
     * would hold it: bounded by the deadline, then aborted */
    gboolean done = FALSE;
    ncclResult_t r = ncclCommFinalize(comm);
    gint64 deadline = deadline_of(w);
    while (r == ncclSuccess || r == ncclInProgress) {
      ncclResult_t st = ncclSuccess;
      r = ncclCommGetAsyncError(comm, &st);
      if (r != ncclSuccess || st != ncclInProgress) {
        done = r == ncclSuccess && st == ncclSuccess;
        break;
      }
      if (g_get_monotonic_time() > deadline) break;
      g_usleep(200);
    }
    if (done) ncclCommDestroy(comm);
    else ncclCommAbort(comm);
  }
  cudaFreeAsync(n->scratch, n->internal);
  cudaStreamDestroy(n->internal);
  g_free(n->label);
  g_free(n);
  world_unref(w);
}

static gboolean nccl_split(PxComm *parent, int color, int key, PxComm *child, GError **error) {
  (void)key; /* child->pos, from comm.c's order, is NCCL's key: NCCL's ranks are the positions */
  Nccl *p = parent->impl;
  World *w = p->w;
  g_autofree char *what = g_strdup_printf("rank %d: split of %s", w->rank, parent->label);
  cudaSetDevice(w->device);
  g_rw_lock_reader_lock(&w->rw);
  ncclComm_t pc = p->comm, out = NULL;
  ncclResult_t r = pc ? ncclCommSplit(pc, child ? color : NCCL_SPLIT_NOCOLOR, child ? child->pos : 0, &out, NULL)
                      : ncclSuccess;
  g_rw_lock_reader_unlock(&w->rw);
  if (!pc) return gone(w, what, error);
  if (r != ncclSuccess && r != ncclInProgress) return nccl_failed(w, what, r, pc, error);
  gint64 deadline = deadline_of(w);
  if (!settle(w, p, NULL, what, deadline, error) || (out && !settle(w, p, out, what, deadline, error))) {
    if (out) ncclCommAbort(out);
    return FALSE;
  }
  if (!child) {
    if (out) ncclCommDestroy(out);
    return TRUE;
  }
  int nr = -1, rk = -1;
  if (!out || ncclCommCount(out, &nr) != ncclSuccess || ncclCommUserRank(out, &rk) != ncclSuccess ||
      nr != child->group->n || rk != child->pos) {
    if (out) ncclCommAbort(out);
    return fail(error, PX_COMM_ERROR_DEVICE, "%s: NCCL made rank %d of %d, not %d of %d", what, rk, nr, child->pos,
                child->group->n);
  }
  Nccl *n = handle_new(w, out, child->label, error);
  if (!n) return FALSE;
  child->impl = n;
  return TRUE;
}

static void nccl_abort(PxComm *c, const char *reason) { world_abort(((Nccl *)c->impl)->w, reason); }

static gboolean nccl_check_async(PxComm *c, GError **error) {
  Nccl *n = c->impl;
  g_autofree char *what = g_strdup_printf("communicator %s", c->label);
  if (!aborted_error(n->w, what, error)) return FALSE;
  g_autofree char *async = async_errors(n->w);
  if (!async) return TRUE;
  world_abort(n->w, async);
  return fail(error, PX_COMM_ERROR_ABORTED, "%s: communicator aborted: %s", what, async);
}

static double nccl_timeout(const PxComm *c) { return ((Nccl *)c->impl)->w->timeout_s; }

static const PxCommOps nccl_ops = {
  .name = "nccl",
  .free = nccl_free,
  .split = nccl_split,
  .abort = nccl_abort,
  .check_async = nccl_check_async,
  .timeout = nccl_timeout,
  .all_reduce = nccl_all_reduce,
  .reduce_scatter = nccl_reduce_scatter,
  .all_gather = nccl_all_gather,
  .broadcast = nccl_broadcast,
  .barrier = nccl_barrier,
  .send = nccl_send,
  .recv = nccl_recv,
  .group = nccl_group,
  .enqueue = nccl_enqueue,
  .multi_group = TRUE,
};

/* ---- initialisation ---- */

int px_nccl_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

/* ncclCommInitRankConfig, non-blocking, polled with the deadline; mpi (may be
 * NULL) is kept for the abort. */
static PxComm *init_rank(const ncclUniqueId *id, int rank, int world, int device, double timeout_s, PxComm *mpi,
                         GError **error) {
  World *w = world_new(rank, world, device, timeout_s);
  w->mpi = mpi;
  g_autofree char *what = g_strdup_printf("rank %d: ncclCommInitRank of %d ranks on device %d", rank, world, device);
  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  cfg.blocking = 0;
  ncclComm_t comm = NULL;
  ncclResult_t r = ncclCommInitRankConfig(&comm, world, *id, rank, &cfg);
  gboolean ok = r == ncclSuccess || r == ncclInProgress;
  if (!ok) {
    fail(error, PX_COMM_ERROR_DEVICE, "%s: %s", what, ncclGetErrorString(r));
  } else {
    /* not live yet: settle polls this handle only */
    gint64 deadline = deadline_of(w), spin_until = g_get_monotonic_time() + 50;
    gulong pause = 10;
    for (;;) {
      ncclResult_t st = ncclSuccess;
      r = ncclCommGetAsyncError(comm, &st);
      if (r != ncclSuccess || (st != ncclSuccess && st != ncclInProgress)) {
        ok = fail(error, PX_COMM_ERROR_DEVICE, "%s: %s (%s)", what, ncclGetErrorString(r != ncclSuccess ? r : st),
                  ncclGetLastError(comm));
        break;
      }
      if (st == ncclSuccess) break;
      if (g_get_monotonic_time() > deadline) {
        ok = fail(error, PX_COMM_ERROR_TIMEOUT, "%s: not complete after %g s (a rank never joined)", what, w->timeout_s);
        break;
      }
      backoff(spin_until, &pause);
    }
  }
  Nccl *n = NULL;
  if (ok) n = handle_new(w, comm, "world", error);
  else if (comm) ncclCommAbort(comm);
  if (!n) {
    /* no handle holds the world: take it down by hand */
    g_mutex_lock(&w->lock);
    w->refs = 1;
    g_mutex_unlock(&w->lock);
    w->mpi = NULL; /* the caller frees it */
    world_unref(w);
    return NULL;
  }
  PxComm *c = px_comm_alloc_world(&nccl_ops, rank, world, n);
  g_free(n->label);
  n->label = g_strdup(c->label);
  return c;
}

static gboolean device_ok(int device, GError **error) {
  int count = px_nccl_device_count();
  if (count == 0) return fail(error, PX_COMM_ERROR_UNSUPPORTED, "communicator 'nccl': no CUDA device");
  if (device < 0 || device >= count)
    return fail(error, PX_COMM_ERROR_INVALID, "communicator 'nccl': device %d of %d", device, count);
  cudaError_t ce = cudaSetDevice(device);
  if (ce != cudaSuccess)
    return fail(error, PX_COMM_ERROR_DEVICE, "communicator 'nccl': cudaSetDevice(%d): %s", device, cudaGetErrorString(ce));
  return TRUE;
}

PxComm *px_comm_nccl_new_store(const char *addr, int port, int rank, int world, int device, double timeout_s,
                               GError **error) {
  if (world < 1 || rank < 0 || rank >= world) {
    fail(error, PX_COMM_ERROR_INVALID, "communicator 'nccl': rank %d of %d", rank, world);
    return NULL;
  }
  if (!device_ok(device, error)) return NULL;
  double t = timeout_s > 0 ? timeout_s : 60.0;
  ncclUniqueId id;
  memset(&id, 0, sizeof id);
  if (rank == 0 && ncclGetUniqueId(&id) != ncclSuccess) {
    fail(error, PX_COMM_ERROR_DEVICE, "rank 0: ncclGetUniqueId failed");
    return NULL;
  }
  if (world == 1) return init_rank(&id, 0, 1, device, t, NULL, error);
  g_autoptr(PxStoreServer) server = NULL;
  GError *e = NULL;
  if (rank == 0 && !(server = px_store_server_new(addr, port, &e))) {
    fail(error, PX_COMM_ERROR_DEVICE, "rank 0: %s", e->message);
    g_error_free(e);
    return NULL;
  }
  g_autoptr(PxStore) store = px_store_connect(addr, port, t, &e);
  if (!store || !px_store_rendezvous(store, "nccl", rank, world, &id, sizeof id, &id, &e)) {
    fail(error, g_error_matches(e, PX_STORE_ERROR, PX_STORE_ERROR_TIMEOUT) || g_error_matches(e, PX_STORE_ERROR, PX_STORE_ERROR_REMOTE)
                    ? PX_COMM_ERROR_TIMEOUT : PX_COMM_ERROR_DEVICE,
         "rank %d: nccl %s", rank, e->message);
    g_error_free(e);
    return NULL;
  }
  /* rank 0's init returns once every rank has joined NCCL's bootstrap, so all
   * have the id and the server may go with it */
  return init_rank(&id, rank, world, device, t, NULL, error);
}

static PxComm *nccl_new_mpi(const PxLaunchEnv *env, int device, double timeout_s, GError **error) {
  PxComm *mpi = px_comm_mpi_new(timeout_s, error);
  if (!mpi) return NULL;
  if (px_comm_size(mpi) != env->world || px_comm_rank(mpi) != env->rank) {
    fail(error, PX_COMM_ERROR_INVALID, "communicator 'nccl': MPI says rank %d of %d, the launcher rank %d of %d",
         px_comm_rank(mpi), px_comm_size(mpi), env->rank, env->world);
    px_comm_free(mpi);
    return NULL;
  }
  ncclUniqueId id;
  memset(&id, 0, sizeof id);
  gint32 bad = env->rank == 0 && ncclGetUniqueId(&id) != ncclSuccess;
  G_STATIC_ASSERT(sizeof(ncclUniqueId) % 4 == 0);
  if (!px_comm_broadcast(mpi, &bad, 1, PX_DTYPE_I32, 0, NULL, error) ||
      !px_comm_broadcast(mpi, &id, sizeof id / 4, PX_DTYPE_I32, 0, NULL, error)) {
    px_comm_free(mpi);
    return NULL;
  }
  if (bad) {
    fail(error, PX_COMM_ERROR_DEVICE, "rank 0: ncclGetUniqueId failed");
    px_comm_free(mpi);
    return NULL;
  }
  PxComm *c = init_rank(&id, env->rank, env->world, device, timeout_s > 0 ? timeout_s : 60.0, mpi, error);
  if (!c) px_comm_free(mpi);
  return c;
}

PxComm *px_comm_nccl_new(const PxLaunchEnv *env, double timeout_s, GError **error) {
  int count = px_nccl_device_count();
  if (count == 0) {
    fail(error, PX_COMM_ERROR_UNSUPPORTED, "communicator 'nccl': no CUDA device");
    return NULL;
  }
  int device = env->local_rank % count;
  PxNcclBoot boot = px_nccl_bootstrap(env, px_comm_available("mpi"));
  switch (boot) {
  case PX_NCCL_BOOT_MPI:
    if (!device_ok(device, error)) return NULL;
    return nccl_new_mpi(env, device, timeout_s, error);
  case PX_NCCL_BOOT_NONE:
  case PX_NCCL_BOOT_STORE:
    return px_comm_nccl_new_store(env->master_addr, env->master_port > 0 ? env->master_port : 29500, env->rank,
                                  env->world, device, timeout_s, error);
  case PX_NCCL_BOOT_INVALID: break;
  }
  fail(error, PX_COMM_ERROR_INVALID,
       "communicator 'nccl': rank %d of %d has no way to meet the others: launch under mpirun, or set MASTER_ADDR "
       "(and MASTER_PORT) for the TCP store",
       env->rank, env->world);
  return NULL;
}
