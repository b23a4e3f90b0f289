/* stream.c — the host implementation of streams and events (backend.h), used
 * by backends whose memory is host memory (cpu):
 *
 *  - the compute stream is inline: work given to it runs on the calling thread
 *    before the call returns, an event recorded on it completes at once, and a
 *    wait on it blocks the calling thread until the event completes;
 *  - every other stream is a worker thread that runs its queue (host
 *    functions, event records, event waits) in order.
 *
 * An event keeps the number of its latest record (`armed`) and of the latest
 * one that completed (`done`); a wait captures `armed` when it is queued, so
 * that re-recording the event later does not change what an earlier wait
 * waits for (CUDA semantics). A failed stream skips its remaining host
 * functions but still completes its events, carrying the error, so that no
 * waiter hangs. */
#include "backend_impl.h"
#include "check.h"
#include "comm_impl.h" /* px_comm_reduce_parts: the host streams' px_stream_reduce */
#include <string.h>

typedef enum { ITEM_HOST, ITEM_RECORD, ITEM_WAIT } ItemKind;

typedef struct {
  ItemKind kind;
  PxHostFn fn;
  gpointer data;
  GDestroyNotify free_data;
  struct HostEvent *event; /* RECORD, WAIT: a reference of its own (the event may be freed first) */
  guint64 seq; /* the record number (RECORD) or the one waited for (WAIT) */
} Item;

typedef struct {
  GMutex lock;
  GCond cond;
  GQueue queue;       /* of Item* */
  int busy;           /* items queued or running */
  gboolean quit;
  GError *error;      /* the first failure: the stream is failed */
  GThread *thread;    /* NULL for the inline stream */
} HostStream;

/* Reference counted (g_atomic_rc_box): px_event_free drops the event's own
 * reference, and a record or wait queued on a stream holds one until it has
 * run, so that an event may be freed while another rank's stream (the local
 * communicator's device path, comm_local.c) still has a wait on it queued. */
typedef struct HostEvent {
  GMutex lock;
  GCond cond;
  guint64 armed, done;
  gint64 t0;          /* the backend's clock origin (the backend may go first) */
  double time;        /* seconds on the backend clock of the latest completion */
  GError *error;      /* carried from a failed stream */
} HostEvent;

static void event_clear(gpointer p) {
  HostEvent *he = p;
  g_clear_error(&he->error);
  g_mutex_clear(&he->lock);
  g_cond_clear(&he->cond);
}

static void event_complete(HostEvent *he, guint64 seq, const GError *err) {
  g_mutex_lock(&he->lock);
  if (seq > he->done) {
    he->done = seq;
    he->time = (g_get_monotonic_time() - he->t0) / 1e6;
    g_clear_error(&he->error);
    if (err) he->error = g_error_copy(err);
  }
  g_cond_broadcast(&he->cond);
  g_mutex_unlock(&he->lock);
}

/* Wait until record number seq of e has completed; its error, if any. */
static gboolean event_wait_seq(HostEvent *he, guint64 seq, GError **error) {
  g_mutex_lock(&he->lock);
  while (he->done < seq) g_cond_wait(&he->cond, &he->lock);
  gboolean ok = he->error == NULL;
  if (!ok) g_propagate_error(error, g_error_copy(he->error));
  g_mutex_unlock(&he->lock);
  return ok;
}

static void item_free(Item *it) {
  if (it->free_data) it->free_data(it->data);
  if (it->event) g_atomic_rc_box_release_full(it->event, event_clear);
  g_free(it);
}

static gpointer worker(gpointer data) {
  PxStream *s = data;
  HostStream *hs = s->impl;
  g_mutex_lock(&hs->lock);
  for (;;) {
    while (g_queue_is_empty(&hs->queue) && !hs->quit) g_cond_wait(&hs->cond, &hs->lock);
    if (g_queue_is_empty(&hs->queue)) break;
    Item *it = g_queue_pop_head(&hs->queue);
    gboolean failed = hs->error != NULL;
    g_mutex_unlock(&hs->lock);
    GError *err = NULL;
    switch (it->kind) {
    case ITEM_HOST:
      if (!failed && !it->fn(it->data, &err)) {
        if (!err) err = g_error_new(PX_BACKEND_ERROR, PX_BACKEND_ERROR_DEVICE, "a host function failed");
      }
      break;
    case ITEM_RECORD: {
      g_mutex_lock(&hs->lock);
      event_complete(it->event, it->seq, hs->error);
      g_mutex_unlock(&hs->lock);
      break;
    }
    case ITEM_WAIT:
      if (!failed) event_wait_seq(it->event, it->seq, &err);
      break;
    }
    item_free(it);
    g_mutex_lock(&hs->lock);
    if (err && !hs->error) g_prefix_error(&err, "stream %s: ", s->name), hs->error = err;
    else g_clear_error(&err);
    hs->busy--;
    g_cond_broadcast(&hs->cond);
  }
  g_mutex_unlock(&hs->lock);
  return NULL;
}

static gboolean host_stream_init(PxStream *s, gboolean compute, GError **error) {
  HostStream *hs = g_new0(HostStream, 1);
  g_mutex_init(&hs->lock);
  g_cond_init(&hs->cond);
  g_queue_init(&hs->queue);
  s->impl = hs;
  s->is_inline = compute;
  if (!compute) {
    g_autofree char *tname = g_strdup_printf("stream-%s", s->name);
    hs->thread = g_thread_try_new(tname, worker, s, error);
    if (!hs->thread) return FALSE;
  }
  return TRUE;
}

static gboolean host_synchronize(PxStream *s, GError **error) {
  HostStream *hs = s->impl;
  g_mutex_lock(&hs->lock);
  while (hs->busy > 0) g_cond_wait(&hs->cond, &hs->lock);
  gboolean ok = hs->error == NULL;
  if (!ok) g_propagate_error(error, g_error_copy(hs->error));
  g_mutex_unlock(&hs->lock);
  return ok;
}

static void host_stream_free(PxStream *s) {
  HostStream *hs = s->impl;
  if (!hs) return;
  if (hs->thread) {
    g_mutex_lock(&hs->lock);
    hs->quit = TRUE;
    g_cond_broadcast(&hs->cond);
    g_mutex_unlock(&hs->lock);
    g_thread_join(hs->thread);
  }
  g_queue_clear_full(&hs->queue, (GDestroyNotify)item_free);
  g_clear_error(&hs->error);
  g_mutex_clear(&hs->lock);
  g_cond_clear(&hs->cond);
  g_free(hs);
}

static void enqueue(PxStream *s, Item *it) {
  HostStream *hs = s->impl;
  g_mutex_lock(&hs->lock);
  hs->busy++;
  g_queue_push_tail(&hs->queue, it);
  g_cond_broadcast(&hs->cond);
  g_mutex_unlock(&hs->lock);
}

static gboolean host_launch(PxStream *s, PxHostFn fn, gpointer data, GDestroyNotify free_data, GError **error) {
  if (s->is_inline) {
    gboolean ok = fn(data, error);
    if (free_data) free_data(data);
    return ok;
  }
  Item *it = g_new0(Item, 1);
  it->kind = ITEM_HOST;
  it->fn = fn;
  it->data = data;
  it->free_data = free_data;
  enqueue(s, it);
  return TRUE;
}

static gboolean host_event_init(PxDevEvent *e, GError **error) {
  (void)error;
  HostEvent *he = g_atomic_rc_box_new0(HostEvent);
  he->t0 = e->be->t0;
  g_mutex_init(&he->lock);
  g_cond_init(&he->cond);
  e->impl = he;
  return TRUE;
}

static void host_event_free(PxDevEvent *e) {
  HostEvent *he = e->impl;
  if (he) g_atomic_rc_box_release_full(he, event_clear);
}

/* The event's latest record number, after adding `arm` new ones. */
static guint64 event_armed(PxDevEvent *e, guint64 arm) {
  HostEvent *he = e->impl;
  g_mutex_lock(&he->lock);
  guint64 seq = he->armed += arm;
  g_mutex_unlock(&he->lock);
  return seq;
}

static void enqueue_event(PxStream *s, ItemKind kind, PxDevEvent *e, guint64 seq) {
  Item *it = g_new0(Item, 1);
  it->kind = kind;
  it->event = g_atomic_rc_box_acquire((HostEvent *)e->impl);
  it->seq = seq;
  enqueue(s, it);
}

static gboolean host_record(PxDevEvent *e, PxStream *s, GError **error) {
  (void)error;
  guint64 seq = event_armed(e, 1);
  if (s->is_inline) event_complete(e->impl, seq, NULL);
  else enqueue_event(s, ITEM_RECORD, e, seq);
  return TRUE;
}

static gboolean host_wait(PxStream *s, PxDevEvent *e, GError **error) {
  guint64 seq = event_armed(e, 0);
  if (s->is_inline) return event_wait_seq(e->impl, seq, error);
  enqueue_event(s, ITEM_WAIT, e, seq);
  return TRUE;
}

static gboolean host_event_synchronize(PxDevEvent *e, GError **error) { return event_wait_seq(e->impl, event_armed(e, 0), error); }

static gboolean host_event_query(PxDevEvent *e) {
  HostEvent *he = e->impl;
  g_mutex_lock(&he->lock);
  gboolean done = he->done >= he->armed;
  g_mutex_unlock(&he->lock);
  return done;
}

static gboolean host_event_time(PxDevEvent *e, double *seconds, GError **error) {
  HostEvent *he = e->impl;
  g_mutex_lock(&he->lock);
  gboolean done = he->done >= he->armed && he->armed > 0;
  *seconds = he->time;
  g_mutex_unlock(&he->lock);
  if (!done) return px_fail(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE, "event time: the event has not completed");
  return TRUE;
}

const PxStreamOps px_host_stream_ops = {
  .stream_init = host_stream_init,
  .stream_free = host_stream_free,
  .launch_host = host_launch,
  .synchronize = host_synchronize,
  .event_init = host_event_init,
  .event_free = host_event_free,
  .record = host_record,
  .wait = host_wait,
  .event_synchronize = host_event_synchronize,
  .event_query = host_event_query,
  .event_time = host_event_time,
};

/* ---- the public calls (backend.h), for every implementation ---- */

static const PxStreamOps *ops_of(PxBackend *be) { return be->ops->streams ? be->ops->streams : &px_host_stream_ops; }

static PxStream *stream_make(PxBackend *be, const char *name, gboolean compute, GError **error) {
  PxStream *s = g_new0(PxStream, 1);
  s->ops = ops_of(be);
  s->be = be;
  s->name = g_strdup(name ? name : "stream");
  if (!s->ops->stream_init(s, compute, error)) {
    px_stream_free(s);
    return NULL;
  }
  return s;
}

PxStream *px_backend_make_compute_stream(PxBackend *be, GError **error) { return stream_make(be, "compute", TRUE, error); }

PxStream *px_backend_compute_stream(PxBackend *be) { return be->compute; }

PxStream *px_stream_new(PxBackend *be, const char *name, GError **error) { return stream_make(be, name, FALSE, error); }

void px_stream_free(PxStream *s) {
  if (!s) return;
  s->ops->stream_free(s);
  g_free(s->name);
  g_free(s);
}

const char *px_stream_label(const PxStream *s) { return s->name; }
PxBackend *px_stream_backend(const PxStream *s) { return s->be; }
gboolean px_stream_is_inline(const PxStream *s) { return s->is_inline; }
void *px_stream_native(PxStream *s) { return s->ops->native ? s->ops->native(s) : NULL; }
gboolean px_stream_synchronize(PxStream *s, GError **error) { return s->ops->synchronize(s, error); }

gboolean px_stream_launch_host(PxStream *s, PxHostFn fn, gpointer data, GDestroyNotify free_data, GError **error) {
  return s->ops->launch_host(s, fn, data, free_data, error);
}

PxDevEvent *px_event_new(PxBackend *be, GError **error) {
  PxDevEvent *e = g_new0(PxDevEvent, 1);
  e->ops = ops_of(be);
  e->be = be;
  if (!e->ops->event_init(e, error)) {
    g_free(e);
    return NULL;
  }
  return e;
}

void px_event_free(PxDevEvent *e) {
  if (!e) return;
  e->ops->event_free(e);
  g_free(e);
}

gboolean px_event_record(PxDevEvent *e, PxStream *s, GError **error) { return e->ops->record(e, s, error); }
gboolean px_stream_wait_event(PxStream *s, PxDevEvent *e, GError **error) { return s->ops->wait(s, e, error); }
gboolean px_event_synchronize(PxDevEvent *e, GError **error) { return e->ops->event_synchronize(e, error); }
gboolean px_event_query(PxDevEvent *e) { return e->ops->event_query(e); }
gboolean px_event_time(PxDevEvent *e, double *seconds, GError **error) { return e->ops->event_time(e, seconds, error); }

gboolean px_event_elapsed(PxDevEvent *start, PxDevEvent *end, double *seconds, GError **error) {
  double a, b;
  if (!px_event_time(start, &a, error) || !px_event_time(end, &b, error)) return FALSE;
  *seconds = b - a;
  return TRUE;
}

/* ---- asynchronous copies ---- */

typedef struct {
  PxBackend *be;
  void *dst;
  const void *src;
  gsize bytes;
  int dir; /* 0 upload, 1 download, 2 device to device */
} Copy;

static gboolean run_copy(gpointer data, GError **error) {
  Copy *c = data;
  switch (c->dir) {
  case 0: return c->be->ops->upload(c->be, c->dst, c->src, c->bytes, error);
  case 1: return c->be->ops->download(c->be, c->dst, c->src, c->bytes, error);
  default:
    if (c->be->ops->copy) return c->be->ops->copy(c->be, c->dst, c->src, c->bytes, error);
    memmove(c->dst, c->src, c->bytes);
    return TRUE;
  }
}

static gboolean copy_on(PxStream *s, PxBackend *be, void *dst, const void *src, gsize bytes, int dir, GError **error) {
  if (s->ops->memcpy_async) return s->ops->memcpy_async(s, dst, src, bytes, dir, error);
  Copy *c = g_new(Copy, 1);
  *c = (Copy){be, dst, src, bytes, dir};
  return px_stream_launch_host(s, run_copy, c, g_free, error);
}

gboolean px_stream_memcpy(PxStream *s, void *dst, const void *src, gsize bytes, int dir, GError **error) {
  return bytes == 0 || copy_on(s, s->be, dst, src, bytes, dir, error);
}

gboolean px_tensor_upload_async(PxTensor *t, const void *host, PxStream *s, GError **error) {
  return copy_on(s, t->backend, t->data, host, t->bytes, 0, error);
}

gboolean px_tensor_download_async(const PxTensor *t, void *host, PxStream *s, GError **error) {
  return copy_on(s, t->backend, host, t->data, t->bytes, 1, error);
}

gboolean px_tensor_copy_async(PxTensor *dst, const PxTensor *src, PxStream *s, GError **error) {
  if (dst->dtype != src->dtype || dst->numel != src->numel)
    return px_fail(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE, "copy %s -> %s: %s[%" G_GINT64_FORMAT "] into %s[%" G_GINT64_FORMAT "]",
                   src->name, dst->name, px_dtype_name(src->dtype), src->numel, px_dtype_name(dst->dtype), dst->numel);
  return copy_on(s, dst->backend, dst->data, src->data, dst->bytes, 2, error);
}

gboolean px_tensor_copy(PxTensor *dst, const PxTensor *src, GError **error) {
  PxStream *s = px_backend_compute_stream(dst->backend);
  return px_tensor_copy_async(dst, src, s, error) && px_stream_synchronize(s, error);
}

/* ---- reductions (px_stream_reduce) ---- */

/* A host reduction queued on a host stream: parts owned (n pointers). */
typedef struct {
  void *out;           /* count elements of dt (may be one of the parts) */
  const void **parts;  /* (n) owned array; the memory they point to is not */
  int n;
  gsize count;
  PxDType dt;
  gboolean max;
} Reduce;

static void reduce_free(gpointer p) {
  Reduce *r = p;
  g_free(r->parts);
  g_free(r);
}

static gboolean run_reduce(gpointer data, GError **error) {
  (void)error;
  Reduce *r = data;
  px_comm_reduce_parts(r->out, r->parts, r->n, r->count, r->dt, r->max ? PX_RED_MAX : PX_RED_SUM);
  return TRUE;
}

gboolean px_stream_reduce(PxStream *s, void *out, const void *const *parts, int n, gsize count, PxDType dt,
                          gboolean max, GError **error) {
  if (n < 1 || n > PX_STREAM_REDUCE_MAX)
    return px_fail(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE, "stream reduce of %d parts (1 to %d)", n,
                   PX_STREAM_REDUCE_MAX);
  if (count == 0) return TRUE;
  if (s->ops->reduce_async) return s->ops->reduce_async(s, out, parts, n, count, dt, max, error);
  Reduce *r = g_new(Reduce, 1);
  *r = (Reduce){out, g_memdup2(parts, sizeof(void *) * (gsize)n), n, count, dt, max};
  return px_stream_launch_host(s, run_reduce, r, reduce_free, error);
}
