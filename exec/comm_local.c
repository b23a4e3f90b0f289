/* comm_local.c — the `local` communicator: ranks are threads of one process.
 *
 * Every call is a rendezvous on a slot keyed by (group, op sequence number):
 * each rank posts its buffers and waits; the last to arrive checks that all
 * called the same op with the same count, dtype and root, then performs the
 * whole collective, reading every rank's send buffer and writing every rank's
 * receive buffer (all others are blocked inside the call, so the buffers are
 * stable). Sums run in group order 0..n-1 whatever the arrival order, so every
 * rank gets bit-identical results. Point-to-point is a two-party rendezvous
 * keyed by (sender, receiver, tag, sequence).
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
  char *abort_msg;     /* non-NULL once aborted */
};

typedef struct {
  gboolean present;
  const char *op;
  const void *send;
  void *recv;
  gsize count;
  PxDType dtype;
  int root;
} Part;

typedef struct Slot Slot;
typedef void (*PerformFn)(Slot *s);

struct Slot {
  int n, arrived, left;
  gboolean done;
  int *ranks;     /* (n) global rank of each position */
  Part *parts;    /* (n) */
  PerformFn perform;
  char *mismatch; /* set by the performer when the parts disagree */
};

typedef struct {
  PxLocalWorld *w;
  GMutex seq_lock; /* the rank's threads may call at once */
  GHashTable *seq; /* base key -> next sequence number (GINT_TO_POINTER) */
} Local;

static void slot_free(gpointer p) {
  Slot *s = p;
  g_free(s->ranks);
  g_free(s->parts);
  g_free(s->mismatch);
  g_free(s);
}

PxLocalWorld *px_local_world_new(int world, double timeout_s) {
  PxLocalWorld *w = g_new0(PxLocalWorld, 1);
  w->world = world;
  w->timeout_us = (gint64)((timeout_s > 0 ? timeout_s : 60.0) * G_USEC_PER_SEC);
  g_mutex_init(&w->lock);
  g_cond_init(&w->cond);
  w->slots = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, slot_free);
  return w;
}

void px_local_world_abort(PxLocalWorld *w, const char *reason) {
  g_mutex_lock(&w->lock);
  if (!w->abort_msg) w->abort_msg = g_strdup(reason ? reason : "aborted");
  g_cond_broadcast(&w->cond);
  g_mutex_unlock(&w->lock);
}

void px_local_world_free(PxLocalWorld *w) {
  if (!w) return;
  g_hash_table_destroy(w->slots);
  g_mutex_clear(&w->lock);
  g_cond_clear(&w->cond);
  g_free(w->abort_msg);
  g_free(w);
}

/* ---- performers: run by the last rank to arrive, under the world lock ---- */

static void sum_into(void *acc, const void *x, gsize count, PxDType dt) {
  switch (dt) {
  case PX_DTYPE_F32: for (gsize i = 0; i < count; i++) ((float *)acc)[i] += ((const float *)x)[i]; break;
  case PX_DTYPE_F64: for (gsize i = 0; i < count; i++) ((double *)acc)[i] += ((const double *)x)[i]; break;
  case PX_DTYPE_I32: for (gsize i = 0; i < count; i++) ((gint32 *)acc)[i] += ((const gint32 *)x)[i]; break;
  }
}

/* acc = sum over positions 0..n-1 of their send buffers from element offset, in that order. */
static void sum_parts(const Slot *s, void *acc, gsize offset, gsize count) {
  gsize es = px_dtype_size(s->parts[0].dtype);
  memcpy(acc, (const char *)s->parts[0].send + offset * es, count * es);
  for (int k = 1; k < s->n; k++)
    sum_into(acc, (const char *)s->parts[k].send + offset * es, count, s->parts[0].dtype);
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

/* p2p: position 0 sends, position 1 receives */
static void perform_p2p(Slot *s) {
  memcpy(s->parts[1].recv, s->parts[0].send, s->parts[0].count * px_dtype_size(s->parts[0].dtype));
}

/* The disagreement between the parts, or NULL. */
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
    if (a->root != b->root)
      return g_strdup_printf("rank %d named root %d while rank %d named root %d", s->ranks[0],
                             s->ranks[a->root], s->ranks[k], s->ranks[b->root]);
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

/* Post part at position pos of the slot (base_key, next sequence number), wait
 * for the others, and have the last arrival perform. desc names the call in
 * messages ("all_reduce on group dp[0,2]"). */
static gboolean rendezvous(PxComm *c, const char *base_key, const char *desc, int n,
                           const int *ranks, int pos, const Part *part, PerformFn perform,
                           GError **error) {
  Local *L = c->impl;
  PxLocalWorld *w = L->w;
  g_mutex_lock(&L->seq_lock);
  int seq = GPOINTER_TO_INT(g_hash_table_lookup(L->seq, base_key));
  g_hash_table_insert(L->seq, g_strdup(base_key), GINT_TO_POINTER(seq + 1));
  g_mutex_unlock(&L->seq_lock);
  g_autofree char *key = g_strdup_printf("%s#%d", base_key, seq);

  g_mutex_lock(&w->lock);
  if (w->abort_msg) {
    g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED, "%s on rank %d: communicator aborted: %s",
                desc, c->rank, w->abort_msg);
    g_mutex_unlock(&w->lock);
    return FALSE;
  }
  Slot *s = g_hash_table_lookup(w->slots, key);
  if (!s) {
    s = g_new0(Slot, 1);
    s->n = n;
    s->ranks = g_memdup2(ranks, sizeof(int) * (gsize)n);
    s->parts = g_new0(Part, n);
    s->perform = perform;
    g_hash_table_insert(w->slots, g_strdup(key), s);
  }
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
                desc, c->rank, w->abort_msg);
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

static gboolean collective(PxComm *c, const char *op, const PxGroup *g, int pos, const void *send,
                           void *recv, gsize count, PxDType dt, int root, PerformFn perform,
                           GError **error) {
  g_autofree char *group = px_group_describe(g);
  g_autofree char *desc = g_strdup_printf("%s on group %s", op, group);
  Part part = {.op = op, .send = send, .recv = recv, .count = count, .dtype = dt, .root = root};
  return rendezvous(c, group, desc, g->n, g->ranks, pos, &part, perform, error);
}

static gboolean local_all_reduce(PxComm *c, const PxGroup *g, int pos, void *buf, gsize count,
                                 PxDType dt, GError **error) {
  return collective(c, "all_reduce", g, pos, buf, buf, count, dt, 0, perform_all_reduce, error);
}

static gboolean local_reduce_scatter(PxComm *c, const PxGroup *g, int pos, const void *send,
                                     void *recv, gsize count, PxDType dt, GError **error) {
  return collective(c, "reduce_scatter", g, pos, send, recv, count, dt, 0, perform_reduce_scatter,
                    error);
}

static gboolean local_all_gather(PxComm *c, const PxGroup *g, int pos, const void *send, void *recv,
                                 gsize count, PxDType dt, GError **error) {
  return collective(c, "all_gather", g, pos, send, recv, count, dt, 0, perform_all_gather, error);
}

static gboolean local_broadcast(PxComm *c, const PxGroup *g, int pos, void *buf, gsize count,
                                PxDType dt, int root_pos, GError **error) {
  return collective(c, "broadcast", g, pos, buf, buf, count, dt, root_pos, perform_broadcast, error);
}

static gboolean local_barrier(PxComm *c, const PxGroup *g, int pos, GError **error) {
  return collective(c, "barrier", g, pos, NULL, NULL, 0, PX_DTYPE_F32, 0, perform_nothing, error);
}

static gboolean p2p(PxComm *c, gboolean sending, const void *send, void *recv, gsize count,
                    PxDType dt, int peer, int tag, GError **error) {
  int ranks[2] = {sending ? c->rank : peer, sending ? peer : c->rank};
  g_autofree char *key = g_strdup_printf("p2p %d>%d tag %d", ranks[0], ranks[1], tag);
  g_autofree char *desc = sending
      ? g_strdup_printf("send from rank %d to rank %d (tag %d)", c->rank, peer, tag)
      : g_strdup_printf("recv on rank %d from rank %d (tag %d)", c->rank, peer, tag);
  Part part = {.op = "p2p", .send = send, .recv = recv, .count = count, .dtype = dt};
  return rendezvous(c, key, desc, 2, ranks, sending ? 0 : 1, &part, perform_p2p, error);
}

static gboolean local_send(PxComm *c, const void *buf, gsize count, PxDType dt, int peer, int tag,
                           GError **error) {
  return p2p(c, TRUE, buf, NULL, count, dt, peer, tag, error);
}

static gboolean local_recv(PxComm *c, void *buf, gsize count, PxDType dt, int peer, int tag,
                           GError **error) {
  return p2p(c, FALSE, NULL, buf, count, dt, peer, tag, error);
}

static void local_free(PxComm *c) {
  Local *L = c->impl;
  g_hash_table_destroy(L->seq);
  g_mutex_clear(&L->seq_lock);
  g_free(L);
}

static const PxCommOps local_ops = {
  .name = "local",
  .free = local_free,
  .all_reduce = local_all_reduce,
  .reduce_scatter = local_reduce_scatter,
  .all_gather = local_all_gather,
  .broadcast = local_broadcast,
  .send = local_send,
  .recv = local_recv,
  .barrier = local_barrier,
};

PxComm *px_comm_local_new(PxLocalWorld *w, int rank) {
  g_return_val_if_fail(rank >= 0 && rank < w->world, NULL);
  Local *L = g_new0(Local, 1);
  L->w = w;
  g_mutex_init(&L->seq_lock);
  L->seq = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  PxComm *c = g_new0(PxComm, 1);
  c->ops = &local_ops;
  c->rank = rank;
  c->world = w->world;
  c->impl = L;
  return c;
}
