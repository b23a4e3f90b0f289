/* comm_local.c — the `local` communicator: ranks are threads of one process.
 *
 * Every collective is a rendezvous on a slot keyed by (communicator, sequence
 * number of its collectives): each rank posts its buffers and waits; the last
 * to arrive checks that all called the same op with the same count, dtype,
 * reduction and root, then performs the whole collective, reading every
 * rank's send buffer and writing every rank's receive buffer (all others are
 * blocked inside the call, so the buffers are stable). Reductions run in rank
 * order 0..n-1 whatever the arrival order, so every rank gets bit-identical
 * results; bf16 / fp16 elements are summed in fp32 and rounded once
 * (px_comm_reduce_parts).
 *
 * Point-to-point is eager (the device path's, below, is not): a send copies
 * its payload into the queue of its (communicator, sender, receiver) pair and
 * returns; receive i of the pair takes message i, so messages arrive in the
 * order they were sent.
 *
 * Rendezvous mode (comm.h) models NCCL: the queue also counts the receives
 * posted on it, and a send waits until the receive of its message has been
 * posted; a group posts all its sends and receives before it waits for any;
 * and every call carries its issue number on its communicator (comm.c numbers
 * it when the rank makes it), waiting for its turn before it runs.
 *
 * Every wait has a deadline. A rank whose deadline passes names the missing
 * ranks and aborts the world: every waiting and later call then fails. */
#include "comm_impl.h"
#include <string.h>

struct _PxLocalWorld {
  int world;
  gint64 timeout_us;
  GMutex lock;
  GCond cond;
  GHashTable *slots;   /* key -> Slot */
  GHashTable *queues;  /* "key src>dst" -> Queue */
  char *abort_msg;     /* non-NULL once aborted */
  gboolean rendezvous; /* NCCL's semantics (comm.h) */
};

/* The device path's events of one rank in one call (below). */
enum { EV_IN, EV_MID, EV_OUT, N_EV };

typedef struct {
  gboolean present;
  PxDevEvent *ev[N_EV]; /* device path: this rank's events of the call, made and freed by it
                         * (NULL: not used) */
  const char *op;
  const void *send;
  void *recv;
  gsize count;
  PxDType dtype;
  PxRedOp red;
  int root;
  int device;           /* device path: the device of the rank's stream (stream_device); 0 on the host path */
} Part;

typedef struct Slot Slot;
typedef void (*PerformFn)(Slot *s);

struct Slot {
  int n, arrived, left;
  gboolean done;
  int *ranks;       /* (n) world rank of each position */
  Part *parts;      /* (n) */
  PerformFn perform;
  char *mismatch;   /* set by the performer when the parts disagree */
  int *phase;       /* device path: (n) the phase each position has reached */
  gboolean failed;  /* device path: a member left it failed (then every member fails: the world is aborted) */
};

/* The device path's message (below): the sender's buffer itself, read by a
 * copy the receiver queues (or, for a receiver on the host path, the sender). */
typedef enum {
  DEV_POSTED,      /* in its pair's queue */
  DEV_TAKEN,       /* a receiver on the device path is queueing the copy */
  DEV_HOST_WANTED, /* a receiver on the host path wants the sender to copy into host_dst */
  DEV_COPIED,      /* `copied` is recorded behind the copy */
  DEV_DONE,        /* copied already, by a receiver on the host path (a host sender's memory) */
  DEV_REJECTED,    /* refused (count or dtype) or the receiver failed: the sender waits for nothing */
  DEV_ABANDONED,   /* DEV_HOST_WANTED, but the sender could not copy */
} DevState;

typedef struct {
  int refs;             /* the sender's and the receiver's (under the world lock); the last frees it */
  DevState state;
  GQueue *msgs;         /* the queue it was posted in (a sender that gives up withdraws it) */
  const void *src;      /* the sender's buffer */
  PxStream *sst;        /* the sender's stream */
  PxDevEvent *ready;    /* the sender's, recorded on sst where the send was queued */
  PxDevEvent *copied;   /* recorded behind the copy out of src */
  void *host_dst;       /* DEV_HOST_WANTED: the host receiver's buffer */
} DevMsg;

typedef struct {
  void *data;    /* the payload (eager, a copy); NULL with dev */
  gsize count;
  PxDType dtype;
  guint64 index; /* its number in the pair's queue: receive number `index` takes it */
  DevMsg *dev;   /* a send on the device path, or NULL */
} Message;

/* The messages of one (communicator, sender, receiver) pair. */
typedef struct {
  GQueue msgs;     /* of Message, oldest first */
  guint64 sent;    /* messages sent so far */
  guint64 posted;  /* receives posted so far: message i is matched once posted > i */
  guint64 recvs;   /* receives numbered so far: receive i takes message i (FIFO) */
} Queue;

/* One rank's handle on one communicator. */
typedef struct {
  PxLocalWorld *w;
  char *key;       /* the communicator's identity, the same on every member */
  GMutex lock;     /* the rank's threads may call at once */
  int seq;         /* collectives issued so far */
  guint64 issued;  /* rendezvous mode: calls issued on the communicator so far */
  guint64 retired; /* the calls before this number have finished (under the world lock) */
} Local;

static void slot_free(gpointer p) {
  Slot *s = p;
  g_free(s->ranks);
  g_free(s->parts);
  g_free(s->mismatch);
  g_free(s->phase);
  g_free(s);
}

/* Under the world lock: the slot `key` of a call over `group`, made on first
 * use (its parts, and the device path's phases, one per member). */
static Slot *slot_get(PxLocalWorld *w, const char *key, const PxGroup *group) {
  Slot *s = g_hash_table_lookup(w->slots, key);
  if (!s) {
    s = g_new0(Slot, 1);
    s->n = group->n;
    s->ranks = g_memdup2(group->ranks, sizeof(int) * (gsize)group->n);
    s->parts = g_new0(Part, group->n);
    s->phase = g_new0(int, group->n);
    g_hash_table_insert(w->slots, g_strdup(key), s);
  }
  return s;
}

static void dev_msg_free(DevMsg *d) {
  px_event_free(d->ready);
  px_event_free(d->copied);
  g_free(d);
}

static void message_free(gpointer p) {
  Message *m = p;
  if (m->dev) dev_msg_free(m->dev);
  g_free(m->data);
  g_free(m);
}

static void queue_free(gpointer p) {
  Queue *q = p;
  g_queue_clear_full(&q->msgs, message_free);
  g_free(q);
}

PxLocalWorld *px_local_world_new(int world, double timeout_s) {
  PxLocalWorld *w = g_new0(PxLocalWorld, 1);
  w->world = world;
  w->timeout_us = (gint64)((timeout_s > 0 ? timeout_s : 60.0) * G_USEC_PER_SEC);
  w->rendezvous = !g_strcmp0(g_getenv("PX_COMM_RENDEZVOUS"), "1");
  g_mutex_init(&w->lock);
  g_cond_init(&w->cond);
  w->slots = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, slot_free);
  w->queues = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, queue_free);
  return w;
}

void px_local_world_set_rendezvous(PxLocalWorld *w, gboolean on) { w->rendezvous = on; }

gboolean px_local_world_rendezvous(const PxLocalWorld *w) { return w->rendezvous; }

void px_local_world_abort(PxLocalWorld *w, const char *reason) {
  g_mutex_lock(&w->lock);
  if (!w->abort_msg) w->abort_msg = g_strdup(reason ? reason : "aborted");
  g_cond_broadcast(&w->cond);
  g_mutex_unlock(&w->lock);
}

void px_local_world_free(PxLocalWorld *w) {
  if (!w) return;
  g_hash_table_destroy(w->slots);
  g_hash_table_destroy(w->queues);
  g_mutex_clear(&w->lock);
  g_cond_clear(&w->cond);
  g_free(w->abort_msg);
  g_free(w);
}

/* ---- performers: run by the last rank to arrive, under the world lock ---- */

/* acc = the reduction over positions 0..n-1 of their send buffers from
 * element offset, in that order (halves: formed in fp32, rounded once). The
 * buffers are read on the host, as every move of this communicator is
 * (memcpy): halves take the same path as f32, there is no device path. */
static void sum_parts(const Slot *s, void *acc, gsize offset, gsize count) {
  gsize es = px_dtype_size(s->parts[0].dtype);
  g_autofree const void **parts = g_new(const void *, s->n);
  for (int k = 0; k < s->n; k++) parts[k] = (const char *)s->parts[k].send + offset * es;
  px_comm_reduce_parts(acc, parts, s->n, count, s->parts[0].dtype, s->parts[0].red);
}

static void perform_all_reduce(Slot *s) {
  gsize bytes = s->parts[0].count * px_dtype_size(s->parts[0].dtype);
  g_autofree void *acc = g_malloc(MAX(bytes, 1));
  sum_parts(s, acc, 0, s->parts[0].count);
  for (int k = 0; k < s->n; k++) memcpy(s->parts[k].recv, acc, bytes);
}

static void perform_reduce_scatter(Slot *s) {
  gsize count = s->parts[0].count, bytes = count * px_dtype_size(s->parts[0].dtype);
  g_autofree void *acc = g_malloc(MAX(bytes, 1));
  for (int i = 0; i < s->n; i++) {
    sum_parts(s, acc, (gsize)i * count, count);
    memcpy(s->parts[i].recv, acc, bytes);
  }
}

static void perform_all_gather(Slot *s) {
  gsize bytes = s->parts[0].count * px_dtype_size(s->parts[0].dtype);
  for (int i = 0; i < s->n; i++)
    for (int k = 0; k < s->n; k++)
      memmove((char *)s->parts[i].recv + (gsize)k * bytes, s->parts[k].send, bytes);
}

static void perform_broadcast(Slot *s) {
  int r = s->parts[0].root;
  gsize bytes = s->parts[0].count * px_dtype_size(s->parts[0].dtype);
  for (int k = 0; k < s->n; k++)
    if (k != r) memcpy(s->parts[k].recv, s->parts[r].send, bytes);
}

static void perform_nothing(Slot *s) { (void)s; }

/* The disagreement between the parts, or NULL. */
/* "device 1" / "host memory" (stream_device's -1) */
static char *memory_name(int device) {
  return device < 0 ? g_strdup("host memory") : g_strdup_printf("device %d", device);
}

static char *check_parts(const Slot *s) {
  const Part *a = &s->parts[0];
  for (int k = 1; k < s->n; k++) {
    const Part *b = &s->parts[k];
    if (strcmp(a->op, b->op))
      return g_strdup_printf("rank %d called %s while rank %d called %s", s->ranks[0], a->op,
                             s->ranks[k], b->op);
    if (a->count != b->count || a->dtype != b->dtype)
      return g_strdup_printf("rank %d passed %" G_GSIZE_FORMAT " %s while rank %d passed %"
                             G_GSIZE_FORMAT " %s", s->ranks[0], a->count, px_dtype_name(a->dtype),
                             s->ranks[k], b->count, px_dtype_name(b->dtype));
    if (a->red != b->red)
      return g_strdup_printf("rank %d reduced with %s while rank %d reduced with %s", s->ranks[0],
                             a->red == PX_RED_SUM ? "sum" : "max", s->ranks[k], b->red == PX_RED_SUM ? "sum" : "max");
    if (a->root != b->root)
      return g_strdup_printf("rank %d named root %d while rank %d named root %d", s->ranks[0],
                             s->ranks[a->root], s->ranks[k], s->ranks[b->root]);
    if (a->device != b->device) {
      g_autofree char *da = memory_name(a->device), *db = memory_name(b->device);
      return g_strdup_printf("rank %d's buffers are in %s while rank %d's are in %s (the device path needs "
                             "every rank on one device)", s->ranks[0], da, s->ranks[k], db);
    }
  }
  return NULL;
}

/* "rank 2" / "ranks 1, 2": the positions that have not posted. */
static char *missing_ranks(const Slot *s) {
  GString *str = g_string_new(NULL);
  int missing = 0;
  for (int k = 0; k < s->n; k++)
    if (!s->parts[k].present)
      g_string_append_printf(str, missing++ ? ", %d" : "%d", s->ranks[k]);
  g_string_prepend(str, missing > 1 ? "ranks " : "rank ");
  g_string_append(str, " never arrived");
  return g_string_free(str, FALSE);
}

/* Post part at the caller's position of the slot (communicator, next sequence
 * number), wait for the others, and have the last arrival perform. desc names
 * the call in messages ("all_reduce on dp[0,2]"). */
static gboolean rendezvous(PxComm *c, const char *desc, const Part *part, PerformFn perform, GError **error) {
  Local *L = c->impl;
  PxLocalWorld *w = L->w;
  int n = c->group->n, pos = c->pos;
  g_mutex_lock(&L->lock);
  int seq = L->seq++;
  g_mutex_unlock(&L->lock);
  g_autofree char *key = g_strdup_printf("%s#%d", L->key, seq);

  g_mutex_lock(&w->lock);
  if (w->abort_msg) {
    g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED, "%s on rank %d: communicator aborted: %s",
                desc, c->world_rank, w->abort_msg);
    g_mutex_unlock(&w->lock);
    return FALSE;
  }
  Slot *s = slot_get(w, key, c->group);
  if (!s->perform) s->perform = perform;
  s->parts[pos] = *part;
  s->parts[pos].present = TRUE;
  if (++s->arrived == n) {
    s->mismatch = check_parts(s);
    if (!s->mismatch) s->perform(s);
    s->done = TRUE;
    g_cond_broadcast(&w->cond);
  }
  gint64 deadline = g_get_monotonic_time() + w->timeout_us;
  while (!s->done && !w->abort_msg) {
    if (!g_cond_wait_until(&w->cond, &w->lock, deadline) && !s->done && !w->abort_msg) {
      g_autofree char *who = missing_ranks(s);
      w->abort_msg = g_strdup_printf("%s: %s after %g s", desc, who, w->timeout_us / 1e6);
      g_set_error_literal(error, PX_COMM_ERROR, PX_COMM_ERROR_TIMEOUT, w->abort_msg);
      g_cond_broadcast(&w->cond);
      g_mutex_unlock(&w->lock);
      return FALSE;
    }
  }
  if (!s->done) {
    g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED, "%s on rank %d: communicator aborted: %s",
                desc, c->world_rank, w->abort_msg);
    g_mutex_unlock(&w->lock);
    return FALSE;
  }
  gboolean ok = TRUE;
  if (s->mismatch) {
    g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_MISMATCH, "%s: %s", desc, s->mismatch);
    ok = FALSE;
  }
  if (++s->left == n) g_hash_table_remove(w->slots, key);
  g_mutex_unlock(&w->lock);
  return ok;
}

static gboolean collective(PxComm *c, const char *op, const void *send, void *recv, gsize count, PxDType dt,
                           PxRedOp red, int root, PerformFn perform, GError **error) {
  g_autofree char *desc = g_strdup_printf("%s on %s", op, c->label);
  Part part = {.op = op, .send = send, .recv = recv, .count = count, .dtype = dt, .red = red, .root = root};
  return rendezvous(c, desc, &part, perform, error);
}

static gboolean local_all_reduce(PxComm *c, void *buf, gsize count, PxDType dt, PxRedOp op, GError **error) {
  return collective(c, "all_reduce", buf, buf, count, dt, op, 0, perform_all_reduce, error);
}

static gboolean local_reduce_scatter(PxComm *c, const void *send, void *recv, gsize count, PxDType dt,
                                     GError **error) {
  return collective(c, "reduce_scatter", send, recv, count, dt, PX_RED_SUM, 0, perform_reduce_scatter, error);
}

static gboolean local_all_gather(PxComm *c, const void *send, void *recv, gsize count, PxDType dt, GError **error) {
  return collective(c, "all_gather", send, recv, count, dt, PX_RED_SUM, 0, perform_all_gather, error);
}

static gboolean local_broadcast(PxComm *c, void *buf, gsize count, PxDType dt, int root, GError **error) {
  return collective(c, "broadcast", buf, buf, count, dt, PX_RED_SUM, root, perform_broadcast, error);
}

static gboolean local_barrier(PxComm *c, GError **error) {
  return collective(c, "barrier", NULL, NULL, 0, PX_DTYPE_F32, PX_RED_SUM, 0, perform_nothing, error);
}

/* ---- point-to-point ---- */

static char *queue_key(PxComm *c, int src_pos, int dst_pos) {
  Local *L = c->impl;
  return g_strdup_printf("%s %d>%d", L->key, src_pos, dst_pos);
}

static gboolean aborted(PxLocalWorld *w, const char *desc, GError **error) {
  g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED, "%s: communicator aborted: %s", desc, w->abort_msg);
  return FALSE;
}

/* The queue of key, made on first use (under the world lock). */
static Queue *queue_of(PxLocalWorld *w, const char *key) {
  Queue *q = g_hash_table_lookup(w->queues, key);
  if (!q) g_hash_table_insert(w->queues, g_strdup(key), q = g_new0(Queue, 1));
  return q;
}

/* Deadline passed while waiting in desc: abort the world with what, set the error. */
static gboolean timed_out(PxLocalWorld *w, const char *desc, const char *what, GError **error) {
  w->abort_msg = g_strdup_printf("%s: %s after %g s%s", desc, what, w->timeout_us / 1e6,
                                 w->rendezvous ? " (rendezvous mode: as on NCCL)" : "");
  g_set_error_literal(error, PX_COMM_ERROR, PX_COMM_ERROR_TIMEOUT, w->abort_msg);
  g_cond_broadcast(&w->cond);
  return FALSE;
}

static char *send_desc(PxComm *c, int peer) {
  return g_strdup_printf("send from rank %d to rank %d on %s", c->world_rank, c->group->ranks[peer], c->label);
}

static char *recv_desc(PxComm *c, int peer) {
  return g_strdup_printf("recv on rank %d from rank %d on %s", c->world_rank, c->group->ranks[peer], c->label);
}

/* Put m at the tail of the (communicator, this rank, peer) queue, numbered
 * (*index) as the pair's next message; a device-path message learns its
 * queue (a sender that gives up withdraws it). FALSE, with m freed, when the
 * world has been aborted. */
static gboolean queue_message(PxComm *c, int peer, Message *m, guint64 *index, GError **error) {
  PxLocalWorld *w = ((Local *)c->impl)->w;
  g_autofree char *key = queue_key(c, c->pos, peer);
  g_mutex_lock(&w->lock);
  if (w->abort_msg) {
    g_autofree char *desc = send_desc(c, peer);
    aborted(w, desc, error);
    g_mutex_unlock(&w->lock);
    message_free(m);
    return FALSE;
  }
  Queue *q = queue_of(w, key);
  *index = m->index = q->sent++;
  if (m->dev) m->dev->msgs = &q->msgs;
  g_queue_push_tail(&q->msgs, m);
  g_cond_broadcast(&w->cond);
  g_mutex_unlock(&w->lock);
  return TRUE;
}

/* Post a send: its payload copied into the pair's queue; *index: its number there. */
static gboolean post_send(PxComm *c, const void *buf, gsize count, PxDType dt, int peer, guint64 *index,
                          GError **error) {
  Message *m = g_new0(Message, 1);
  m->data = g_memdup2(buf, count * px_dtype_size(dt));
  m->count = count;
  m->dtype = dt;
  return queue_message(c, peer, m, index, error);
}

/* Rendezvous mode: wait until the receive of message index has been posted. */
static gboolean wait_matched(PxComm *c, int peer, guint64 index, GError **error) {
  Local *L = c->impl;
  PxLocalWorld *w = L->w;
  if (!w->rendezvous) return TRUE;
  g_autofree char *key = queue_key(c, c->pos, peer);
  gint64 deadline = g_get_monotonic_time() + w->timeout_us;
  g_mutex_lock(&w->lock);
  Queue *q = queue_of(w, key);
  while (!w->abort_msg && q->posted <= index)
    if (!g_cond_wait_until(&w->cond, &w->lock, deadline) && !w->abort_msg && q->posted <= index) {
      g_autofree char *desc = send_desc(c, peer);
      g_autofree char *what = g_strdup_printf("rank %d never posted the matching receive", c->group->ranks[peer]);
      timed_out(w, desc, what, error);
      g_mutex_unlock(&w->lock);
      return FALSE;
    }
  gboolean ok = !w->abort_msg || q->posted > index;
  if (!ok) {
    g_autofree char *desc = send_desc(c, peer);
    aborted(w, desc, error);
  }
  g_mutex_unlock(&w->lock);
  return ok;
}

/* Post a receive (what a rendezvous send waits for). */
static void post_recv(PxComm *c, int peer) {
  Local *L = c->impl;
  PxLocalWorld *w = L->w;
  g_autofree char *key = queue_key(c, peer, c->pos);
  g_mutex_lock(&w->lock);
  queue_of(w, key)->posted++;
  g_cond_broadcast(&w->cond);
  g_mutex_unlock(&w->lock);
}

/* Under the world lock: message `index` of q, taken out of it, or NULL. */
static Message *take_msg(Queue *q, guint64 index) {
  for (GList *l = q->msgs.head; l; l = l->next)
    if (((Message *)l->data)->index == index) {
      Message *m = l->data;
      g_queue_delete_link(&q->msgs, l);
      return m;
    }
  return NULL;
}

/* Under the world lock: wait (the deadline) for message `index` of q, from
 * rank peer, and take it; NULL with the error (the world aborted). */
static Message *wait_msg(PxComm *c, Queue *q, guint64 index, int peer, const char *desc, GError **error) {
  PxLocalWorld *w = ((Local *)c->impl)->w;
  gint64 deadline = g_get_monotonic_time() + w->timeout_us;
  for (gboolean late = FALSE;; late = !g_cond_wait_until(&w->cond, &w->lock, deadline)) {
    if (w->abort_msg) {
      aborted(w, desc, error);
      return NULL;
    }
    Message *m = take_msg(q, index);
    if (m) return m;
    if (late) {
      g_autofree char *what = g_strdup_printf("rank %d never sent", c->group->ranks[peer]);
      timed_out(w, desc, what, error);
      return NULL;
    }
  }
}

/* Under the world lock: FALSE, with the error, when m is not what the receive expects. */
static gboolean msg_fits(PxComm *c, const Message *m, gsize count, PxDType dt, int peer, const char *desc,
                         GError **error) {
  if (m->count == count && m->dtype == dt) return TRUE;
  g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_MISMATCH,
              "%s: rank %d sent %" G_GSIZE_FORMAT " %s, the receive expects %" G_GSIZE_FORMAT " %s", desc,
              c->group->ranks[peer], m->count, px_dtype_name(m->dtype), count, px_dtype_name(dt));
  return FALSE;
}

static gboolean dev_host_take(PxLocalWorld *w, Message *m, void *buf, gboolean fits, const char *desc, int who,
                              GError **error);

/* Complete a posted receive: take the pair's next message (FIFO: receives are
 * numbered as they are made) and copy it into buf. */
static gboolean wait_recv(PxComm *c, void *buf, gsize count, PxDType dt, int peer, GError **error) {
  Local *L = c->impl;
  PxLocalWorld *w = L->w;
  g_autofree char *key = queue_key(c, peer, c->pos);
  g_autofree char *desc = recv_desc(c, peer);
  g_mutex_lock(&w->lock);
  Queue *q = queue_of(w, key);
  Message *m = wait_msg(c, q, q->recvs++, peer, desc, error);
  if (!m) {
    g_mutex_unlock(&w->lock);
    return FALSE;
  }
  gboolean ok = msg_fits(c, m, count, dt, peer, desc, error);
  if (m->dev) { /* a send on the device path: its sender copies (dev_host_take) */
    ok = dev_host_take(w, m, buf, ok, desc, c->group->ranks[peer], error) && ok;
    g_mutex_unlock(&w->lock);
    return ok;
  }
  g_mutex_unlock(&w->lock);
  if (ok) memcpy(buf, m->data, count * px_dtype_size(dt));
  message_free(m);
  return ok;
}

static gboolean local_send(PxComm *c, const void *buf, gsize count, PxDType dt, int peer, GError **error) {
  guint64 index;
  return post_send(c, buf, count, dt, peer, &index, error) && wait_matched(c, peer, index, error);
}

static gboolean local_recv(PxComm *c, void *buf, gsize count, PxDType dt, int peer, GError **error) {
  post_recv(c, peer);
  return wait_recv(c, buf, count, dt, peer, error);
}

/* Grouped point-to-point, each call on its own communicator (a group may span
 * several of this rank's): every send and receive posted first, in call order
 * (eager sends wait for nothing), then every send waited for (rendezvous
 * mode), then every receive completed in call order, so that messages to one
 * peer keep the order they were given in (comm.h's FIFO promise). */
static gboolean local_group(PxComm *c, const PxP2p *ops, int n, GError **error) {
  g_autofree guint64 *index = g_new0(guint64, MAX(n, 1));
  for (int i = 0; i < n; i++) {
    PxComm *o = ops[i].comm ? ops[i].comm : c;
    if (!ops[i].send) post_recv(o, ops[i].peer);
    else if (!post_send(o, ops[i].buf, ops[i].count, ops[i].dtype, ops[i].peer, &index[i], error)) return FALSE;
  }
  for (int i = 0; i < n; i++)
    if (ops[i].send && !wait_matched(ops[i].comm ? ops[i].comm : c, ops[i].peer, index[i], error)) return FALSE;
  for (int i = 0; i < n; i++)
    if (!ops[i].send && !wait_recv(ops[i].comm ? ops[i].comm : c, ops[i].buf, ops[i].count, ops[i].dtype, ops[i].peer, error))
      return FALSE;
  return TRUE;
}

/* ---- issue order (rendezvous mode) ---- */

static guint64 local_issue(PxComm *c) {
  Local *L = c->impl;
  if (!L->w->rendezvous) return 0; /* eager: unordered */
  g_mutex_lock(&L->w->lock);
  guint64 t = L->issued++;
  g_mutex_unlock(&L->w->lock);
  return t;
}

static gboolean local_turn(PxComm *c, guint64 ticket, const char *desc, GError **error) {
  Local *L = c->impl;
  PxLocalWorld *w = L->w;
  if (!w->rendezvous) return TRUE; /* eager: calls on a communicator may run at once */
  gint64 deadline = g_get_monotonic_time() + w->timeout_us;
  g_mutex_lock(&w->lock);
  while (!w->abort_msg && L->retired != ticket)
    if (!g_cond_wait_until(&w->cond, &w->lock, deadline) && !w->abort_msg && L->retired != ticket) {
      g_autofree char *d = g_strdup_printf("%s (rank %d)", desc, c->world_rank);
      g_autofree char *what = g_strdup_printf("still queued behind the rank's earlier calls on %s, which never finished "
                                              "(a communicator runs its calls in issue order)", c->label);
      timed_out(w, d, what, error);
      g_mutex_unlock(&w->lock);
      return FALSE;
    }
  gboolean ok = !w->abort_msg;
  if (!ok) {
    g_autofree char *d = g_strdup_printf("%s (rank %d)", desc, c->world_rank);
    aborted(w, d, error);
  }
  g_mutex_unlock(&w->lock);
  return ok;
}

static void local_finish(PxComm *c, guint64 ticket) {
  Local *L = c->impl;
  if (!L->w->rendezvous) return;
  g_mutex_lock(&L->w->lock);
  if (L->retired == ticket) L->retired = ticket + 1;
  g_cond_broadcast(&L->w->cond);
  g_mutex_unlock(&L->w->lock);
}

/* ---- the device path: collectives queued with the streams' own operations ----
 *
 * A collective on a stream with a backend (PX_COMM_LOCAL_DEVICE, below) never
 * moves its data on the host: it is expressed with operations of the ranks'
 * streams — device-to-device copies (px_stream_memcpy), the reduction
 * px_stream_reduce, and events recorded on one rank's stream and waited for on
 * another's (the ranks are threads of one process on one device, so buffer
 * pointers and events are shared). The host threads still meet when they
 * queue the call, on a slot of the world like the host path's (the same
 * sequence numbers, the same checks of op, count, dtype, reduction and root),
 * but in phases: a rank records its event, marks the phase reached in the slot
 * and waits (with the world's deadline) until every rank has, before it
 * queues a wait for the others' events (a wait queued before the record
 * would wait for nothing). Then it returns; the data moves when the streams
 * get there.
 *
 *   phase 1: record IN (the rank's buffers are written); meet: every rank has posted.
 *   work 1:  wait every other rank's IN; queue the rank's share; record MID; meet.
 *   work 2 (all_reduce only): wait every other rank's MID; queue; record OUT; meet.
 *   last:    wait every other rank's last event (MID or OUT), so that no rank
 *            writes a buffer another still reads; meet; free its events.
 *
 * all_reduce: rank i sums chunk i (count·i/n .. count·(i+1)/n) of every rank's
 * buffer, in rank order, into chunk i of its own (work 1), then copies chunk j
 * of rank j's buffer into its own for every j ≠ i (work 2). reduce_scatter:
 * rank i sums block i of every send into its recv. all_gather: rank i copies
 * every rank's send into block k of its recv. broadcast: every rank but the
 * root copies the root's buffer. barrier: the waits alone. px_stream_reduce
 * sums in rank order with halves formed in fp32 and rounded once, as
 * px_comm_reduce_parts: the results are those of the host path, bit for bit.
 *
 * The events are made for each call by each rank (with its stream's backend)
 * and freed by it after the last meeting: every wait for them has been queued
 * by then (the cuda and the host streams keep an event a queued wait refers
 * to). Point-to-point and groups have a device path of their own (below):
 * no meeting of every member, a receive queued before its send on the same
 * thread must not block that thread until its deadline. */

/* The device of a device stream's buffers (its backend's), -1 for a host
 * stream. The device path reads every member's buffers from every member's
 * stream (a reduction kernel, device-to-device copies), which holds for
 * ranks on one device: the runtime gives every rank of `local` the same one
 * (PxRunOptions.device). Ranks on different GPUs would need each cuda
 * backend's memory pool opened to the others (cudaMemPoolSetAccess: pool
 * memory does not follow cudaDeviceEnablePeerAccess) where
 * cudaDeviceCanAccessPeer allows it; nothing does that, so members on
 * different devices are refused with one line (check_parts, dev_recv_msg)
 * instead of faulting on the device. */
static int stream_device(PxStream *st) {
  return px_stream_native(st) ? px_backend_device(px_stream_backend(st)) : -1;
}

/* PX_COMM_LOCAL_DEVICE: "1" every stream, "0" none; unset: device streams
 * (px_stream_native: the cuda backend's) only, where the alternative is to
 * stage the call through host memory synchronously (comm.c). */
static int device_mode(void) {
  static gint mode = -2;
  if (g_atomic_int_get(&mode) == -2) {
    const char *v = g_getenv("PX_COMM_LOCAL_DEVICE");
    g_atomic_int_set(&mode, !g_strcmp0(v, "1") ? 1 : !g_strcmp0(v, "0") ? 0 : -1);
  }
  return g_atomic_int_get(&mode);
}

static gboolean local_stream_takes(PxComm *c, const PxCommCall *k, PxStream *stream) {
  Local *L = c->impl;
  gboolean collective = k->kind == PX_CALL_ALL_REDUCE || k->kind == PX_CALL_REDUCE_SCATTER ||
                        k->kind == PX_CALL_ALL_GATHER || k->kind == PX_CALL_BROADCAST || k->kind == PX_CALL_BARRIER;
  if (L->w->rendezvous || (collective && c->group->n > PX_STREAM_REDUCE_MAX)) return FALSE;
  int mode = device_mode();
  return mode == 1 || (mode == -1 && px_stream_native(stream) != NULL);
}

/* "rank 2" / "ranks 1, 2": the positions that have not reached phase p. */
static char *behind(const Slot *s, int p) {
  GString *str = g_string_new(NULL);
  int missing = 0;
  for (int k = 0; k < s->n; k++)
    if (s->phase[k] < p) g_string_append_printf(str, missing++ ? ", %d" : "%d", s->ranks[k]);
  g_string_prepend(str, missing > 1 ? "ranks " : "rank ");
  g_string_append(str, p == 1 ? " never arrived" : " never finished queueing");
  return g_string_free(str, FALSE);
}

/* Under the world lock: FALSE, with the error, once the world is aborted. */
static gboolean not_aborted(PxComm *c, const char *desc, GError **error) {
  PxLocalWorld *w = ((Local *)c->impl)->w;
  if (!w->abort_msg) return TRUE;
  g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED, "%s on rank %d: communicator aborted: %s", desc,
              c->world_rank, w->abort_msg);
  return FALSE;
}

/* Under the world lock: this position has reached phase p; wait until every
 * position has (the deadline passing aborts the world, naming who is behind). */
static gboolean reach(PxComm *c, Slot *s, int p, const char *desc, GError **error) {
  PxLocalWorld *w = ((Local *)c->impl)->w;
  s->phase[c->pos] = p;
  g_cond_broadcast(&w->cond);
  gint64 deadline = g_get_monotonic_time() + w->timeout_us;
  for (gboolean late = FALSE;; late = !g_cond_wait_until(&w->cond, &w->lock, deadline)) {
    int least = p;
    for (int k = 0; k < s->n; k++) least = MIN(least, s->phase[k]);
    if (least >= p) return TRUE;
    if (!not_aborted(c, desc, error)) return FALSE;
    if (late) {
      g_autofree char *who = behind(s, p);
      w->abort_msg = g_strdup_printf("%s: %s after %g s", desc, who, w->timeout_us / 1e6);
      g_set_error_literal(error, PX_COMM_ERROR, PX_COMM_ERROR_TIMEOUT, w->abort_msg);
      g_cond_broadcast(&w->cond);
      return FALSE;
    }
  }
}

/* Under the world lock: post part (its events included) at this position of
 * the slot `key`, made on first use; the last to post checks the parts. */
static Slot *dev_post(PxComm *c, const char *key, const Part *part) {
  PxLocalWorld *w = ((Local *)c->impl)->w;
  int n = c->group->n;
  Slot *s = slot_get(w, key, c->group);
  s->parts[c->pos] = *part;
  s->parts[c->pos].present = TRUE;
  if (++s->arrived == n) s->mismatch = check_parts(s);
  return s;
}

/* Under the world lock: leave the slot; the last to leave frees it. A failed
 * call's members keep their events while another member may still name them
 * (dev_collective); the last of those that came frees them all (a member that
 * never came finds the world aborted and never reads the slot). */
static void dev_leave(PxLocalWorld *w, const char *key, Slot *s, gboolean ok) {
  if (!ok) s->failed = TRUE;
  s->left++;
  if (s->failed && s->left == s->arrived) {
    for (int k = 0; k < s->n; k++)
      for (int e = 0; s->parts[k].present && e < N_EV; e++) g_clear_pointer(&s->parts[k].ev[e], px_event_free);
    g_hash_table_remove(w->slots, key);
  } else if (s->left == s->n) {
    g_hash_table_remove(w->slots, key);
  }
}

/* Queue on st a wait for event e of every position of s but this rank's. */
static gboolean wait_others(PxStream *st, const Slot *s, int pos, int e, GError **error) {
  for (int k = 0; k < s->n; k++)
    if (k != pos && !px_stream_wait_event(st, s->parts[k].ev[e], error)) return FALSE;
  return TRUE;
}

/* What one rank queues in a phase: s's parts (every rank's buffers) are
 * stable while it runs (the slot is held). */
typedef gboolean (*DevWork)(const Slot *s, int pos, PxStream *st, GError **error);

/* The first element of all_reduce's chunk i of count elements over n ranks. */
static gsize chunk_lo(gsize count, int n, int i) { return count * (gsize)i / (gsize)n; }

/* Elements lo.. of every rank's buffer `recv` (send: the send buffers) reduced
 * in rank order into out, m elements. */
static gboolean reduce_into(const Slot *s, gboolean sends, gsize lo, void *out, gsize m, PxStream *st,
                            GError **error) {
  const Part *a = &s->parts[0];
  gsize es = px_dtype_size(a->dtype);
  const void *parts[PX_STREAM_REDUCE_MAX]; /* (n) element lo of each rank's buffer */
  for (int k = 0; k < s->n; k++) parts[k] = (const char *)(sends ? s->parts[k].send : s->parts[k].recv) + lo * es;
  return px_stream_reduce(st, out, parts, s->n, m, a->dtype, a->red == PX_RED_MAX, error);
}

/* all_reduce, work 1: chunk pos of every buffer summed into chunk pos of this rank's. */
static gboolean all_reduce_1(const Slot *s, int pos, PxStream *st, GError **error) {
  gsize lo = chunk_lo(s->parts[0].count, s->n, pos), hi = chunk_lo(s->parts[0].count, s->n, pos + 1);
  gsize es = px_dtype_size(s->parts[0].dtype);
  return reduce_into(s, FALSE, lo, (char *)s->parts[pos].recv + lo * es, hi - lo, st, error);
}

/* all_reduce, work 2: chunk j of rank j's buffer (summed there) copied into this rank's, j ≠ pos. */
static gboolean all_reduce_2(const Slot *s, int pos, PxStream *st, GError **error) {
  gsize count = s->parts[0].count, es = px_dtype_size(s->parts[0].dtype);
  for (int j = 0; j < s->n; j++) {
    gsize lo = chunk_lo(count, s->n, j), hi = chunk_lo(count, s->n, j + 1);
    if (j != pos && !px_stream_memcpy(st, (char *)s->parts[pos].recv + lo * es,
                                      (const char *)s->parts[j].recv + lo * es, (hi - lo) * es, 2, error))
      return FALSE;
  }
  return TRUE;
}

/* reduce_scatter: block pos (count) of every send summed into this rank's recv. */
static gboolean reduce_scatter_1(const Slot *s, int pos, PxStream *st, GError **error) {
  gsize count = s->parts[0].count;
  return reduce_into(s, TRUE, (gsize)pos * count, s->parts[pos].recv, count, st, error);
}

/* all_gather: rank k's send (count) into block k of this rank's recv (in
 * place, send = block pos: nothing to copy for it). */
static gboolean all_gather_1(const Slot *s, int pos, PxStream *st, GError **error) {
  gsize bytes = s->parts[0].count * px_dtype_size(s->parts[0].dtype);
  for (int k = 0; k < s->n; k++) {
    char *dst = (char *)s->parts[pos].recv + (gsize)k * bytes;
    if (dst != s->parts[k].send && !px_stream_memcpy(st, dst, s->parts[k].send, bytes, 2, error)) return FALSE;
  }
  return TRUE;
}

/* broadcast: the root's buffer (count) into this rank's. */
static gboolean broadcast_1(const Slot *s, int pos, PxStream *st, GError **error) {
  int r = s->parts[0].root;
  gsize bytes = s->parts[0].count * px_dtype_size(s->parts[0].dtype);
  return pos == r || px_stream_memcpy(st, s->parts[pos].recv, s->parts[r].send, bytes, 2, error);
}

/* One phase: wait the others' event `after`, queue work, record event `rec`
 * (-1: none), meet at phase p. The slot is held (the world lock released
 * around the queueing, which may block on an inline stream). */
static gboolean dev_phase(PxComm *c, Slot *s, DevWork work, int after, int rec, int p, PxStream *st,
                          const char *desc, GError **error) {
  PxLocalWorld *w = ((Local *)c->impl)->w;
  g_mutex_unlock(&w->lock);
  gboolean ok = wait_others(st, s, c->pos, after, error) && (!work || work(s, c->pos, st, error)) &&
                (rec < 0 || px_event_record(s->parts[c->pos].ev[rec], st, error));
  g_mutex_lock(&w->lock);
  if (!ok && !w->abort_msg) { /* this rank cannot go on: release the others now, not at their deadline */
    w->abort_msg = g_strdup_printf("%s on rank %d: %s", desc, c->world_rank, error && *error ? (*error)->message : "failed");
    g_cond_broadcast(&w->cond);
  }
  return ok && reach(c, s, p, desc, error);
}

/* The meetings of one collective (the protocol above), its events made and
 * IN recorded. FALSE with *posted: the events may still be named by another
 * rank's call in progress; the slot frees them when the last member leaves
 * (dev_leave). */
static gboolean dev_meet(PxComm *c, const Part *part, DevWork work1, DevWork work2, PxStream *st, gboolean *posted,
                         GError **error) {
  Local *L = c->impl;
  PxLocalWorld *w = L->w;
  g_autofree char *desc = g_strdup_printf("%s on %s", part->op, c->label);
  g_mutex_lock(&L->lock);
  int seq = L->seq++;
  g_mutex_unlock(&L->lock);
  g_autofree char *key = g_strdup_printf("%s#%d (device)", L->key, seq);
  g_mutex_lock(&w->lock);
  if (!not_aborted(c, desc, error)) {
    g_mutex_unlock(&w->lock);
    return FALSE;
  }
  Slot *s = dev_post(c, key, part);
  *posted = TRUE;
  gboolean ok = reach(c, s, 1, desc, error);
  if (ok && s->mismatch) {
    g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_MISMATCH, "%s: %s", desc, s->mismatch);
    ok = FALSE;
  }
  ok = ok && dev_phase(c, s, work1, EV_IN, EV_MID, 2, st, desc, error);
  ok = ok && (!work2 || dev_phase(c, s, work2, EV_MID, EV_OUT, 3, st, desc, error));
  ok = ok && dev_phase(c, s, NULL, work2 ? EV_OUT : EV_MID, -1, work2 ? 4 : 3, st, desc, error);
  dev_leave(w, key, s, ok);
  g_mutex_unlock(&w->lock);
  return ok;
}

/* One collective on the device path: this rank's events (IN, MID, and OUT
 * with a work 2) made with the stream's backend, IN recorded, the meetings. */
static gboolean dev_collective(PxComm *c, Part *part, DevWork work1, DevWork work2, PxStream *st, GError **error) {
  gboolean ok = TRUE, posted = FALSE;
  for (int e = 0; e < (work2 ? 3 : 2); e++) ok = ok && (part->ev[e] = px_event_new(px_stream_backend(st), error)) != NULL;
  ok = ok && px_event_record(part->ev[EV_IN], st, error) && dev_meet(c, part, work1, work2, st, &posted, error);
  /* every rank has queued its waits for them (the last meeting): the streams
   * keep what they still wait for */
  for (int e = 0; (ok || !posted) && e < N_EV; e++) g_clear_pointer(&part->ev[e], px_event_free);
  return ok;
}

static gboolean dev_send(PxComm *c, const void *buf, gsize count, PxDType dt, int peer, PxStream *st, GError **error);
static gboolean dev_recv(PxComm *c, void *buf, gsize count, PxDType dt, int peer, PxStream *st, const char *label,
                         GError **error);
static gboolean dev_group(PxComm *c, const PxP2p *ops, int n, PxStream *st, const char *label, GError **error);

/* PxCommOps.stream_queue: the calls of local_stream_takes (point-to-point and
 * groups: below). */
static gboolean local_stream_queue(PxComm *c, const PxCommCall *k, PxStream *st, GError **error) {
  Part part = {.count = k->count, .dtype = k->dt, .red = k->red, .device = stream_device(st)};
  switch (k->kind) {
  case PX_CALL_ALL_REDUCE:
    part.op = "all_reduce", part.send = k->buf, part.recv = k->buf;
    return dev_collective(c, &part, all_reduce_1, all_reduce_2, st, error);
  case PX_CALL_REDUCE_SCATTER:
    part.op = "reduce_scatter", part.send = k->send, part.recv = k->buf, part.red = PX_RED_SUM;
    return dev_collective(c, &part, reduce_scatter_1, NULL, st, error);
  case PX_CALL_ALL_GATHER:
    part.op = "all_gather", part.send = k->send, part.recv = k->buf, part.red = PX_RED_SUM;
    return dev_collective(c, &part, all_gather_1, NULL, st, error);
  case PX_CALL_BROADCAST:
    part.op = "broadcast", part.send = k->buf, part.recv = k->buf, part.red = PX_RED_SUM, part.root = k->arg;
    return dev_collective(c, &part, broadcast_1, NULL, st, error);
  case PX_CALL_BARRIER:
    part.op = "barrier", part.count = 0, part.dtype = PX_DTYPE_F32, part.red = PX_RED_SUM;
    return dev_collective(c, &part, NULL, NULL, st, error);
  case PX_CALL_SEND: return dev_send(c, k->send, k->count, k->dt, k->arg, st, error);
  case PX_CALL_RECV: return dev_recv(c, k->buf, k->count, k->dt, k->arg, st, k->label, error);
  case PX_CALL_GROUP: return dev_group(c, k->group, k->n_group, st, k->label, error);
  default:
    g_return_val_if_reached(FALSE);
  }
}

/* ---- the device path: point-to-point ----
 *
 * A send on the device path (local_stream_takes) is not copied into the
 * pair's queue: its message names the sender's buffer, with an event
 * `ready` recorded on the sender's stream where the send was queued. The
 * receiver, once it has the message (receive i takes message i of the pair:
 * FIFO, receives numbered as they are made), queues on its own stream a wait
 * for `ready`, the device-to-device copy out of the sender's buffer into its
 * own, and an event `copied`; the sender, which waits in its call (with the
 * deadline) until its message is taken, then queues a wait for `copied`, so
 * that its stream passes the send, and its buffer may be reused, only once
 * the copy has run. No host copy and no host synchronisation: NCCL's
 * semantics (a send completes once its receive is posted), not the host
 * path's eager sends, whose copy would need a staging buffer freed behind
 * the stream (a host function may not free device memory on cuda).
 *
 * A receive queued before its message is sent: on a device stream (and the
 * inline stream) the receiving thread waits for the send to be posted, as
 * the staged path waits for the message itself; on a host worker stream the
 * receive becomes a host function that takes the message when the stream
 * gets there (so that a rank may queue a receive and then the send that
 * frees its peer, on two streams, without a group). A message and a receive
 * of different paths meet too: a host-path receive of a device-path send has
 * the sender queue the copy into the host buffer on its stream (and waits
 * for it); a device-path receive of a host-path (eager) message uploads the
 * copy and frees it behind the upload. A group posts all its sends, then
 * takes its receives in call order, then completes its sends: peers that
 * send to each other in one group never wait for each other. */

/* Under the world lock: drop one reference of d; the last frees it. */
static void dev_release(DevMsg *d) {
  if (--d->refs == 0) dev_msg_free(d);
}

/* Under the world lock: abort the world with what went wrong here (a failed
 * queueing), so that no peer waits for this rank until its deadline. */
static void dev_abort(PxLocalWorld *w, const char *desc, const GError *err) {
  if (w->abort_msg) return;
  w->abort_msg = g_strdup_printf("%s: %s", desc, err ? err->message : "failed");
  g_cond_broadcast(&w->cond);
}

/* Without the world lock: wait for e, recorded on rank `who`'s stream, with
 * the deadline (that stream may be held by a call that waits for this rank):
 * polled, as a host event has no timed wait. */
static gboolean dev_wait_event(PxLocalWorld *w, PxDevEvent *e, const char *desc, int who, GError **error) {
  gint64 deadline = g_get_monotonic_time() + w->timeout_us;
  for (gulong nap = 10; !px_event_query(e); nap = MIN(nap * 2, 1000)) {
    if (g_get_monotonic_time() > deadline) {
      g_mutex_lock(&w->lock);
      if (w->abort_msg) {
        aborted(w, desc, error);
      } else {
        g_autofree char *what = g_strdup_printf("rank %d's stream never reached the send", who);
        timed_out(w, desc, what, error);
      }
      g_mutex_unlock(&w->lock);
      return FALSE;
    }
    g_usleep(nap);
  }
  return px_event_synchronize(e, error);
}

/* A receive on the host path (wait_recv, or a host function of a host
 * stream: the world lock held) of m, a device-path send, into buf. A sender
 * on a host stream (its buffer in host memory): the receiver waits for its
 * `ready` and copies, while the sender waits in its call (DEV_DONE). A
 * sender on a device stream: the sender, waiting in its call, queues the
 * copy into buf on its stream and records `copied`, which the receiver waits
 * for. fits FALSE: the message is refused, the send completes and the
 * receive fails. */
static gboolean dev_host_take(PxLocalWorld *w, Message *m, void *buf, gboolean fits, const char *desc, int who,
                              GError **error) {
  DevMsg *d = g_steal_pointer(&m->dev);
  gsize bytes = m->count * px_dtype_size(m->dtype);
  message_free(m);
  gboolean ok = fits;
  if (!fits) {
    d->state = DEV_REJECTED;
  } else if (!px_stream_native(d->sst)) {
    d->state = DEV_TAKEN;
    g_mutex_unlock(&w->lock);
    ok = dev_wait_event(w, d->ready, desc, who, error);
    if (ok) memcpy(buf, d->src, bytes);
    g_mutex_lock(&w->lock);
    d->state = ok ? DEV_DONE : DEV_REJECTED;
  } else {
    d->state = DEV_HOST_WANTED;
    d->host_dst = buf;
    g_cond_broadcast(&w->cond);
    /* the sender answers once it completes its send (aborted or not); a
     * sender held in its group's receives is given up at the deadline */
    gint64 deadline = g_get_monotonic_time() + w->timeout_us;
    while (d->state == DEV_HOST_WANTED)
      if (!g_cond_wait_until(&w->cond, &w->lock, deadline) && d->state == DEV_HOST_WANTED) {
        d->state = DEV_REJECTED; /* the sender will not copy now */
        if (!w->abort_msg) {
          g_autofree char *what = g_strdup_printf("rank %d never copied its send", who);
          timed_out(w, desc, what, error);
        } else {
          aborted(w, desc, error);
        }
        g_cond_broadcast(&w->cond);
        dev_release(d);
        return FALSE;
      }
    if (d->state == DEV_COPIED) {
      g_mutex_unlock(&w->lock);
      ok = dev_wait_event(w, d->copied, desc, who, error);
      g_mutex_lock(&w->lock);
    } else {
      ok = aborted(w, desc, error);
    }
  }
  g_cond_broadcast(&w->cond);
  dev_release(d);
  return ok;
}

/* Post a send on the device path: `ready` recorded on st, the message (the
 * buffer itself) queued for peer. NULL: failed. */
static DevMsg *dev_post_send(PxComm *c, const void *buf, gsize count, PxDType dt, int peer, PxStream *st,
                             GError **error) {
  PxDevEvent *ready = px_event_new(px_stream_backend(st), error);
  if (!ready || !px_event_record(ready, st, error)) {
    px_event_free(ready);
    return NULL;
  }
  Message *m = g_new0(Message, 1);
  m->count = count;
  m->dtype = dt;
  DevMsg *d = m->dev = g_new0(DevMsg, 1);
  *d = (DevMsg){.refs = 2, .state = DEV_POSTED, .src = buf, .sst = st, .ready = ready};
  guint64 index;
  return queue_message(c, peer, m, &index, error) ? d : NULL;
}

/* Complete a posted device-path send of bytes: wait (the deadline) until its
 * receiver has taken it, then order the sender's stream after the copy out
 * of its buffer (or, for a receiver on the host path, queue that copy on it).
 * A message never taken is withdrawn, naming the receiver. */
static gboolean dev_send_finish(PxComm *c, DevMsg *d, gsize bytes, int peer, GError **error) {
  PxLocalWorld *w = ((Local *)c->impl)->w;
  g_autofree char *desc = send_desc(c, peer);
  gboolean ok = TRUE, late = FALSE;
  g_mutex_lock(&w->lock);
  gint64 deadline = g_get_monotonic_time() + w->timeout_us;
  for (;;) {
    if (d->state == DEV_POSTED && (w->abort_msg || late)) { /* never taken: withdrawn */
      for (GList *l = d->msgs->head; l; l = l->next)
        if (((Message *)l->data)->dev == d) {
          g_free(l->data);
          g_queue_delete_link(d->msgs, l);
          break;
        }
      d->refs--; /* the receiver's: none will come */
      if (w->abort_msg) {
        ok = aborted(w, desc, error);
      } else {
        g_autofree char *what = g_strdup_printf("rank %d never posted the matching receive", c->group->ranks[peer]);
        ok = timed_out(w, desc, what, error);
      }
      break;
    }
    if (d->state == DEV_HOST_WANTED) {
      if (w->abort_msg) {
        d->state = DEV_ABANDONED;
        ok = aborted(w, desc, error);
      } else {
        g_mutex_unlock(&w->lock);
        PxStream *st = d->sst;
        ok = px_stream_memcpy(st, d->host_dst, d->src, bytes, 1, error) &&
             (d->copied = px_event_new(px_stream_backend(st), error)) != NULL && px_event_record(d->copied, st, error);
        g_mutex_lock(&w->lock);
        d->state = ok ? DEV_COPIED : DEV_ABANDONED;
        if (!ok) dev_abort(w, desc, error ? *error : NULL);
      }
      g_cond_broadcast(&w->cond);
      break;
    }
    if (d->state == DEV_COPIED) {
      g_mutex_unlock(&w->lock);
      ok = px_stream_wait_event(d->sst, d->copied, error);
      g_mutex_lock(&w->lock);
      if (!ok) dev_abort(w, desc, error ? *error : NULL);
      break;
    }
    if (d->state == DEV_DONE || d->state == DEV_REJECTED) break;
    if (d->state == DEV_POSTED) late = !g_cond_wait_until(&w->cond, &w->lock, deadline);
    else g_cond_wait(&w->cond, &w->lock); /* DEV_TAKEN: the receiver is queueing the copy; it is told soon */
  }
  dev_release(d);
  g_mutex_unlock(&w->lock);
  return ok;
}

static gboolean nothing(gpointer data, GError **error) {
  (void)data;
  (void)error;
  return TRUE;
}

/* Under the world lock: m, taken for a receive into buf on st, copied there
 * by st (the lock released meanwhile). A host-path message (an eager copy) is
 * uploaded and freed behind the upload. */
static gboolean dev_recv_msg(PxLocalWorld *w, Message *m, void *buf, PxStream *st, const char *desc, int who,
                             GError **error) {
  gsize bytes = m->count * px_dtype_size(m->dtype);
  gboolean ok;
  if (!m->dev) {
    g_mutex_unlock(&w->lock);
    ok = px_stream_memcpy(st, buf, m->data, bytes, 0, error);
    if (ok) ok = px_stream_launch_host(st, nothing, m, message_free, error); /* frees m, whatever happens */
    else message_free(m);
    g_mutex_lock(&w->lock);
    if (!ok) dev_abort(w, desc, error ? *error : NULL);
    return ok;
  }
  DevMsg *d = g_steal_pointer(&m->dev);
  g_free(m);
  d->state = DEV_TAKEN;
  g_mutex_unlock(&w->lock);
  int sdev = stream_device(d->sst), rdev = stream_device(st);
  ok = sdev == rdev;
  if (!ok) { /* the copy would read another device's pool (stream_device) */
    g_autofree char *sm = memory_name(sdev), *rm = memory_name(rdev);
    g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_MISMATCH,
                "%s: rank %d sent from %s into %s (the device path needs both ranks on one device)", desc, who, sm,
                rm);
  }
  /* an inline stream's wait blocks this thread: with the deadline (the
   * sender's stream may be held by a call that waits for this rank) */
  ok = ok && (!px_stream_is_inline(st) || dev_wait_event(w, d->ready, desc, who, error)) &&
       px_stream_wait_event(st, d->ready, error) && px_stream_memcpy(st, buf, d->src, bytes, 2, error) &&
       (d->copied = px_event_new(px_stream_backend(st), error)) != NULL && px_event_record(d->copied, st, error);
  g_mutex_lock(&w->lock);
  d->state = ok ? DEV_COPIED : DEV_REJECTED;
  if (!ok) dev_abort(w, desc, error ? *error : NULL);
  g_cond_broadcast(&w->cond);
  dev_release(d);
  return ok;
}

/* A receive on a host worker stream whose message was not sent yet when it
 * was queued: it takes message `index` when the stream gets there. */
typedef struct {
  PxComm *c;
  void *buf;
  gsize count;
  PxDType dt;
  int peer;
  guint64 index;
  char *label; /* the queuer's (px_comm_set_label) */
} LateRecv;

static void late_recv_free(gpointer p) {
  LateRecv *r = p;
  g_free(r->label);
  g_free(r);
}

static gboolean late_recv_run(gpointer data, GError **error) {
  LateRecv *r = data;
  PxComm *c = r->c;
  PxLocalWorld *w = ((Local *)c->impl)->w;
  g_autofree char *key = queue_key(c, r->peer, c->pos);
  g_autofree char *desc = recv_desc(c, r->peer);
  GError *err = NULL;
  g_mutex_lock(&w->lock);
  Message *m = wait_msg(c, queue_of(w, key), r->index, r->peer, desc, &err);
  gboolean ok = m != NULL;
  if (m) {
    ok = msg_fits(c, m, r->count, r->dt, r->peer, desc, &err);
    if (m->dev) ok = dev_host_take(w, m, r->buf, ok, desc, c->group->ranks[r->peer], ok ? &err : NULL) && ok;
    else {
      if (ok) memcpy(r->buf, m->data, r->count * px_dtype_size(r->dt));
      message_free(m);
    }
  }
  if (!ok && !g_error_matches(err, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED)) dev_abort(w, desc, err);
  g_mutex_unlock(&w->lock);
  if (!ok && r->label) g_prefix_error(&err, "%s: ", r->label);
  if (!ok) g_propagate_error(error, err);
  return ok;
}

/* A receive on the device path: numbered now (FIFO); its message copied on st
 * if it is there, else waited for (a device or inline stream) or taken by a
 * host function when st gets there (a host worker stream). */
static gboolean dev_recv(PxComm *c, void *buf, gsize count, PxDType dt, int peer, PxStream *st, const char *label,
                         GError **error) {
  PxLocalWorld *w = ((Local *)c->impl)->w;
  g_autofree char *key = queue_key(c, peer, c->pos);
  g_autofree char *desc = recv_desc(c, peer);
  g_mutex_lock(&w->lock);
  if (w->abort_msg) {
    aborted(w, desc, error);
    g_mutex_unlock(&w->lock);
    return FALSE;
  }
  Queue *q = queue_of(w, key);
  guint64 index = q->recvs++;
  gboolean wait = px_stream_native(st) != NULL || px_stream_is_inline(st);
  Message *m = wait ? wait_msg(c, q, index, peer, desc, error) : take_msg(q, index);
  if (!m && !wait) {
    g_mutex_unlock(&w->lock);
    LateRecv *r = g_new(LateRecv, 1);
    *r = (LateRecv){c, buf, count, dt, peer, index, g_strdup(label)};
    return px_stream_launch_host(st, late_recv_run, r, late_recv_free, error);
  }
  gboolean ok = m && msg_fits(c, m, count, dt, peer, desc, error);
  if (m && !ok) {
    if (m->dev) {
      m->dev->state = DEV_REJECTED;
      g_cond_broadcast(&w->cond);
      dev_release(m->dev);
      m->dev = NULL;
    }
    message_free(m);
  } else if (m) {
    ok = dev_recv_msg(w, m, buf, st, desc, c->group->ranks[peer], error);
  }
  g_mutex_unlock(&w->lock);
  return ok;
}

static gboolean dev_send(PxComm *c, const void *buf, gsize count, PxDType dt, int peer, PxStream *st, GError **error) {
  DevMsg *d = dev_post_send(c, buf, count, dt, peer, st, error);
  return d && dev_send_finish(c, d, count * px_dtype_size(dt), peer, error);
}

/* A group on the device path: every send posted, then every receive taken
 * in call order, then every send completed (each call on its own
 * communicator, ops[i].comm). A failure aborts the world, so that the sends
 * already posted are withdrawn at once. */
static gboolean dev_group(PxComm *c, const PxP2p *ops, int n, PxStream *st, const char *label, GError **error) {
  g_autofree DevMsg **sent = g_new0(DevMsg *, MAX(n, 1));
  gboolean ok = TRUE;
  for (int i = 0; i < n && ok; i++)
    if (ops[i].send)
      ok = (sent[i] = dev_post_send(ops[i].comm ? ops[i].comm : c, ops[i].buf, ops[i].count, ops[i].dtype,
                                    ops[i].peer, st, error)) != NULL;
  for (int i = 0; i < n && ok; i++)
    if (!ops[i].send)
      ok = dev_recv(ops[i].comm ? ops[i].comm : c, ops[i].buf, ops[i].count, ops[i].dtype, ops[i].peer, st, label, error);
  if (!ok) {
    PxLocalWorld *w = ((Local *)c->impl)->w;
    g_autofree char *desc = g_strdup_printf("group of sends and receives on %s", c->label);
    g_mutex_lock(&w->lock);
    if (!error || !*error || !g_error_matches(*error, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED))
      dev_abort(w, desc, error ? *error : NULL);
    g_mutex_unlock(&w->lock);
  }
  for (int i = 0; i < n; i++)
    if (sent[i]) {
      GError *err = NULL;
      gboolean done = dev_send_finish(ops[i].comm ? ops[i].comm : c, sent[i], ops[i].count * px_dtype_size(ops[i].dtype),
                                      ops[i].peer, ok ? error : &err);
      ok = done && ok;
      g_clear_error(&err);
    }
  return ok;
}

/* ---- communicators ---- */

static Local *local_new(PxLocalWorld *w, const char *key) {
  Local *L = g_new0(Local, 1);
  L->w = w;
  L->key = g_strdup(key);
  g_mutex_init(&L->lock);
  return L;
}

static void local_free(PxComm *c) {
  Local *L = c->impl;
  if (!L) return;
  g_mutex_clear(&L->lock);
  g_free(L->key);
  g_free(L);
}

static gboolean local_split(PxComm *parent, int color, int key, PxComm *child, GError **error) {
  (void)key;
  (void)error;
  Local *P = parent->impl;
  if (!child) return TRUE;
  /* n_splits was advanced by comm.c: the same on every member of parent */
  g_autofree char *k = g_strdup_printf("%s/%d:%d", P->key, parent->n_splits, color);
  child->impl = local_new(P->w, k);
  return TRUE;
}

static void local_abort(PxComm *c, const char *reason) { px_local_world_abort(((Local *)c->impl)->w, reason); }

static gboolean local_check_async(PxComm *c, GError **error) {
  PxLocalWorld *w = ((Local *)c->impl)->w;
  g_mutex_lock(&w->lock);
  gboolean ok = w->abort_msg == NULL;
  if (!ok) g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED, "communicator aborted: %s", w->abort_msg);
  g_mutex_unlock(&w->lock);
  return ok;
}

static double local_timeout(const PxComm *c) { return ((Local *)c->impl)->w->timeout_us / 1e6; }

static const PxCommOps local_ops = {
  .name = "local",
  .free = local_free,
  .split = local_split,
  .abort = local_abort,
  .check_async = local_check_async,
  .timeout = local_timeout,
  .all_reduce = local_all_reduce,
  .reduce_scatter = local_reduce_scatter,
  .all_gather = local_all_gather,
  .broadcast = local_broadcast,
  .barrier = local_barrier,
  .send = local_send,
  .recv = local_recv,
  .group = local_group,
  .multi_group = TRUE,
  .issue = local_issue,
  .turn = local_turn,
  .finish = local_finish,
  .stream_takes = local_stream_takes,
  .stream_queue = local_stream_queue,
};

PxComm *px_comm_local_new(PxLocalWorld *w, int rank) {
  g_return_val_if_fail(rank >= 0 && rank < w->world, NULL);
  return px_comm_alloc_world(&local_ops, rank, w->world, local_new(w, "world"));
}
