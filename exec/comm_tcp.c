/* comm_tcp.c — the `tcp` communicator (see comm_tcp.h): rendezvous, a full
 * mesh of GSockets, a reader thread per peer demultiplexing messages into
 * queues, and collectives run through position 0. */
#include "comm_tcp.h"
#include "comm_impl.h"
#include "check.h"
#include <gio/gio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#define MAGIC 0x50585443u /* "PXTC" */
#define HEADER_BYTES 24
#define META_BYTES 24
#define MAX_ID 4096

enum { K_HELLO = 1, K_TABLE, K_FAIL, K_P2P, K_COLL, K_ABORT, K_BYE };
enum { CH_P2P, CH_COLL };
enum { OP_ALL_REDUCE, OP_REDUCE_SCATTER, OP_ALL_GATHER, OP_BROADCAST, OP_BARRIER };
static const char *const op_names[] = {"all_reduce", "reduce_scatter", "all_gather", "broadcast", "barrier"};

typedef enum { IO_OK, IO_EOF, IO_TIMEOUT, IO_ERROR } IoStatus;
typedef enum { PEER_UP, PEER_LEFT, PEER_DEAD } PeerState;

typedef struct TcpWorld TcpWorld;

typedef struct {
  TcpWorld *w;
  int rank;
  GSocket *rsock;   /* read by the reader thread only */
  GSocket *wsock;   /* a dup of the same connection, written under wlock */
  GMutex wlock;
  GThread *reader;
  PeerState state;  /* under w->lock */
} Peer;

struct TcpWorld {
  int rank, world;
  gint64 timeout_us;
  Peer *peers;          /* (world); peers[rank] unused */
  GMutex lock;
  GCond cond;
  GHashTable *queues;   /* "id\nsender\nchannel" -> GQueue of Msg */
  char *abort_msg;      /* non-NULL once the world failed */
  gboolean relayed;     /* abort_msg was sent to the peers */
  GCancellable *cancel; /* stops the readers */
  gint refs;            /* communicators alive */
};

typedef struct {
  guint32 kind, aux;
  gsize len;
  char *data;
} Msg;

/* One rank's handle on one communicator. */
typedef struct {
  TcpWorld *w;
  char *id; /* the same on every member */
} Tcp;

static void msg_free(Msg *m) {
  if (!m) return;
  g_free(m->data);
  g_free(m);
}

static void queue_free(gpointer q) { g_queue_free_full(q, (GDestroyNotify)msg_free); }

static char *queue_key(const char *id, int sender, int ch) { return g_strdup_printf("%s\n%d\n%d", id, sender, ch); }

/* ---- socket I/O with deadlines (deadline < 0: none) ---- */

static IoStatus io_full(GSocket *s, gboolean out, void *buf, gsize n, gint64 deadline, GCancellable *cancel,
                        GError **error) {
  char *p = buf;
  while (n > 0) {
    GError *e = NULL;
    gssize k = out ? g_socket_send_with_blocking(s, p, n, FALSE, cancel, &e)
                   : g_socket_receive_with_blocking(s, p, n, FALSE, cancel, &e);
    if (k > 0) {
      p += k, n -= (gsize)k;
      continue;
    }
    if (k == 0) return IO_EOF;
    if (!g_error_matches(e, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
      g_propagate_error(error, e);
      return IO_ERROR;
    }
    g_clear_error(&e);
    gint64 wait = -1;
    if (deadline >= 0 && (wait = deadline - g_get_monotonic_time()) <= 0) return IO_TIMEOUT;
    if (!g_socket_condition_timed_wait(s, out ? G_IO_OUT : G_IO_IN, wait, cancel, &e)) {
      if (g_error_matches(e, G_IO_ERROR, G_IO_ERROR_TIMED_OUT)) {
        g_error_free(e);
        return IO_TIMEOUT;
      }
      g_propagate_error(error, e);
      return IO_ERROR;
    }
  }
  return IO_OK;
}

static void put32(guint8 *p, guint32 x) {
  for (int i = 0; i < 4; i++) p[i] = (guint8)(x >> (8 * i));
}
static void put64(guint8 *p, guint64 x) {
  for (int i = 0; i < 8; i++) p[i] = (guint8)(x >> (8 * i));
}
static guint32 get32(const guint8 *p) {
  guint32 x = 0;
  for (int i = 0; i < 4; i++) x |= (guint32)p[i] << (8 * i);
  return x;
}
static guint64 get64(const guint8 *p) {
  guint64 x = 0;
  for (int i = 0; i < 8; i++) x |= (guint64)p[i] << (8 * i);
  return x;
}

/* One message: header, id, then the payload a (alen) and b (blen). */
static IoStatus write_msg(GSocket *s, guint32 kind, const char *id, guint32 aux, const void *a, gsize alen,
                          const void *b, gsize blen, gint64 deadline, GError **error) {
  gsize idlen = id ? strlen(id) : 0;
  guint8 h[HEADER_BYTES];
  put32(h, MAGIC), put32(h + 4, kind), put32(h + 8, (guint32)idlen), put32(h + 12, aux);
  put64(h + 16, alen + blen);
  gsize total = sizeof h + idlen + alen + blen;
  if (total <= 65536) { /* one send: one segment, one wake-up of the peer's reader */
    g_autofree char *one = g_malloc(total);
    char *p = one;
    memcpy(p, h, sizeof h), p += sizeof h;
    if (idlen) memcpy(p, id, idlen), p += idlen;
    if (alen) memcpy(p, a, alen), p += alen;
    if (blen) memcpy(p, b, blen);
    return io_full(s, TRUE, one, total, deadline, NULL, error);
  }
  IoStatus st = io_full(s, TRUE, h, sizeof h, deadline, NULL, error);
  if (st == IO_OK && idlen) st = io_full(s, TRUE, (void *)id, idlen, deadline, NULL, error);
  if (st == IO_OK && alen) st = io_full(s, TRUE, (void *)a, alen, deadline, NULL, error);
  if (st == IO_OK && blen) st = io_full(s, TRUE, (void *)b, blen, deadline, NULL, error);
  return st;
}

/* One message; *id and *m are the caller's on IO_OK. A stream that is not ours is IO_ERROR. */
static IoStatus read_msg(GSocket *s, char **id, Msg **m, gint64 deadline, GCancellable *cancel, GError **error) {
  guint8 h[HEADER_BYTES];
  IoStatus st = io_full(s, FALSE, h, sizeof h, deadline, cancel, error);
  if (st != IO_OK) return st;
  guint32 idlen = get32(h + 8);
  guint64 len = get64(h + 16);
  if (get32(h) != MAGIC || idlen > MAX_ID || len > G_MAXSSIZE) {
    g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "not a parallax tcp stream");
    return IO_ERROR;
  }
  g_autofree char *ident = g_malloc0(idlen + 1);
  if (idlen && (st = io_full(s, FALSE, ident, idlen, deadline, cancel, error)) != IO_OK) return st;
  Msg *x = g_new0(Msg, 1);
  x->kind = get32(h + 4);
  x->aux = get32(h + 12);
  x->len = (gsize)len;
  x->data = g_malloc(x->len + 1);
  x->data[x->len] = 0;
  if (x->len && (st = io_full(s, FALSE, x->data, x->len, deadline, cancel, error)) != IO_OK) {
    msg_free(x);
    return st;
  }
  *id = g_steal_pointer(&ident);
  *m = x;
  return IO_OK;
}

static void socket_tune(GSocket *s) {
  g_socket_set_blocking(s, FALSE);
  g_socket_set_option(s, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
}

/* ---- the world ---- */

static gint64 world_deadline(TcpWorld *w) { return g_get_monotonic_time() + w->timeout_us; }
/* A wait for an answer that another rank's deadline may fail first: long enough
 * for that rank's reason to arrive and win. */
static gint64 grace_us(TcpWorld *w) { return MIN(w->timeout_us, 2 * G_USEC_PER_SEC); }

/* Send the world's abort reason, once, to every peer still connected (best
 * effort, briefly). Called by every call that finds the world failed, so a
 * reason received from a peer (or a peer's death seen here) is passed on too:
 * every rank learns the first cause rather than that this rank went away. */
static void send_abort(TcpWorld *w) {
  g_mutex_lock(&w->lock);
  g_autofree char *reason = w->relayed ? NULL : g_strdup(w->abort_msg);
  if (reason) w->relayed = TRUE;
  g_mutex_unlock(&w->lock);
  if (!reason) return;
  gint64 deadline = g_get_monotonic_time() + grace_us(w);
  for (int r = 0; r < w->world; r++) {
    Peer *p = &w->peers[r];
    if (r == w->rank || !p->wsock) continue;
    g_mutex_lock(&p->wlock);
    write_msg(p->wsock, K_ABORT, NULL, 0, reason, strlen(reason), NULL, 0, deadline, NULL);
    g_mutex_unlock(&p->wlock);
  }
}

/* Fail the world with reason (the first reason is kept) and tell every peer. */
static void world_abort(TcpWorld *w, const char *reason) {
  g_mutex_lock(&w->lock);
  if (!w->abort_msg) w->abort_msg = g_strdup(reason ? reason : "aborted");
  g_cond_broadcast(&w->cond);
  g_mutex_unlock(&w->lock);
  send_abort(w);
}

static gpointer reader_main(gpointer data) {
  Peer *p = data;
  TcpWorld *w = p->w;
  gboolean bye = FALSE;
  g_autoptr(GError) e = NULL;
  IoStatus st;
  for (;;) {
    char *id = NULL;
    Msg *m = NULL;
    if ((st = read_msg(p->rsock, &id, &m, -1, w->cancel, &e)) != IO_OK) break;
    g_mutex_lock(&w->lock);
    if (m->kind == K_P2P || m->kind == K_COLL) {
      char *key = queue_key(id, p->rank, m->kind == K_P2P ? CH_P2P : CH_COLL);
      GQueue *q = g_hash_table_lookup(w->queues, key);
      if (!q) g_hash_table_insert(w->queues, key, q = g_queue_new());
      else g_free(key);
      g_queue_push_tail(q, m);
      m = NULL;
    } else if (m->kind == K_ABORT) {
      if (!w->abort_msg) w->abort_msg = g_strdup(m->data);
    } else if (m->kind == K_BYE) {
      bye = TRUE;
      p->state = PEER_LEFT;
    }
    g_cond_broadcast(&w->cond);
    g_mutex_unlock(&w->lock);
    msg_free(m);
    g_free(id);
  }
  g_mutex_lock(&w->lock);
  if (!bye && !g_cancellable_is_cancelled(w->cancel)) {
    p->state = PEER_DEAD;
    if (!w->abort_msg)
      w->abort_msg = st == IO_EOF ? g_strdup_printf("rank %d disconnected: its process exited or died", p->rank)
                                  : g_strdup_printf("rank %d disconnected: %s", p->rank,
                                                    e ? e->message : "connection lost");
  } else if (!bye) {
    p->state = PEER_LEFT;
  }
  g_cond_broadcast(&w->cond);
  g_mutex_unlock(&w->lock);
  return NULL;
}

static TcpWorld *world_new(int rank, int world, double timeout_s) {
  TcpWorld *w = g_new0(TcpWorld, 1);
  w->rank = rank;
  w->world = world;
  w->timeout_us = (gint64)((timeout_s > 0 ? timeout_s : 60.0) * G_USEC_PER_SEC);
  w->peers = g_new0(Peer, world);
  for (int r = 0; r < world; r++) {
    w->peers[r].w = w;
    w->peers[r].rank = r;
    g_mutex_init(&w->peers[r].wlock);
  }
  g_mutex_init(&w->lock);
  g_cond_init(&w->cond);
  w->queues = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, queue_free);
  w->cancel = g_cancellable_new();
  return w;
}

/* Say goodbye to every peer — or, when the world has failed, pass on why, so
 * that a peer still waiting learns the reason rather than that this rank left —
 * wait (briefly, unless the world failed) for theirs so that nothing is left
 * unread, then stop the readers. */
static void world_free(TcpWorld *w) {
  gint64 deadline = g_get_monotonic_time() + MIN(w->timeout_us, 10 * G_USEC_PER_SEC);
  g_mutex_lock(&w->lock);
  g_autofree char *reason = g_strdup(w->abort_msg);
  g_mutex_unlock(&w->lock);
  for (int r = 0; r < w->world; r++) {
    Peer *p = &w->peers[r];
    if (!p->wsock) continue;
    g_mutex_lock(&p->wlock);
    if (write_msg(p->wsock, reason ? K_ABORT : K_BYE, NULL, 0, reason, reason ? strlen(reason) : 0, NULL, 0, deadline,
                  NULL) == IO_OK)
      g_socket_shutdown(p->wsock, FALSE, TRUE, NULL);
    g_mutex_unlock(&p->wlock);
  }
  g_mutex_lock(&w->lock);
  for (;;) {
    gboolean waiting = FALSE;
    for (int r = 0; r < w->world; r++) waiting |= w->peers[r].reader && w->peers[r].state == PEER_UP;
    if (!waiting || w->abort_msg || !g_cond_wait_until(&w->cond, &w->lock, deadline)) break;
  }
  g_mutex_unlock(&w->lock);
  g_cancellable_cancel(w->cancel);
  for (int r = 0; r < w->world; r++) {
    Peer *p = &w->peers[r];
    if (p->reader) g_thread_join(p->reader);
    if (p->wsock) g_socket_close(p->wsock, NULL), g_object_unref(p->wsock);
    if (p->rsock) g_socket_close(p->rsock, NULL), g_object_unref(p->rsock);
    g_mutex_clear(&p->wlock);
  }
  g_free(w->peers);
  g_hash_table_destroy(w->queues);
  g_object_unref(w->cancel);
  g_mutex_clear(&w->lock);
  g_cond_clear(&w->cond);
  g_free(w->abort_msg);
  g_free(w);
}

/* ---- waiting and sending ---- */

static gboolean aborted_error(TcpWorld *w, PxComm *c, const char *desc, GError **error) {
  g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED, "%s on rank %d: communicator aborted: %s", desc,
              c->world_rank, w->abort_msg);
  return FALSE;
}

/* out[i] = the next message of channel ch from each position pos[i] (out[i]
 * NULL on entry), waiting until deadline; a timeout names the positions that
 * did not come ("ranks 1, 2 <never>"), and aborts the world. */
static gboolean wait_msgs(PxComm *c, int ch, const int *pos, int n, Msg **out, gint64 deadline, const char *desc,
                          const char *never, GError **error) {
  Tcp *T = c->impl;
  TcpWorld *w = T->w;
  g_autofree char **keys = g_new0(char *, n + 1);
  for (int i = 0; i < n; i++) keys[i] = queue_key(T->id, c->group->ranks[pos[i]], ch);
  gboolean ok = FALSE;
  g_mutex_lock(&w->lock);
  for (;;) {
    if (w->abort_msg) {
      aborted_error(w, c, desc, error);
      break;
    }
    int missing = 0;
    for (int i = 0; i < n; i++) {
      if (out[i]) continue;
      GQueue *q = g_hash_table_lookup(w->queues, keys[i]);
      if (q && !g_queue_is_empty(q)) out[i] = g_queue_pop_head(q);
      else missing++;
    }
    if (!missing) {
      ok = TRUE;
      break;
    }
    int left = -1;
    for (int i = 0; i < n && left < 0; i++)
      if (!out[i] && w->peers[c->group->ranks[pos[i]]].state != PEER_UP) left = c->group->ranks[pos[i]];
    if (left >= 0 || !g_cond_wait_until(&w->cond, &w->lock, deadline)) {
      if (w->abort_msg) continue;
      GString *who = g_string_new(NULL);
      int k = 0;
      for (int i = 0; i < n; i++)
        if (!out[i] && (left < 0 || c->group->ranks[pos[i]] == left))
          g_string_append_printf(who, k++ ? ", %d" : "%d", c->group->ranks[pos[i]]);
      w->abort_msg = left >= 0 ? g_strdup_printf("%s: rank %d freed its communicator first", desc, left)
                               : g_strdup_printf("%s: rank%s %s %s after %g s", desc, k > 1 ? "s" : "", who->str,
                                                 never, w->timeout_us / 1e6);
      g_string_free(who, TRUE);
      g_set_error_literal(error, PX_COMM_ERROR, left >= 0 ? PX_COMM_ERROR_ABORTED : PX_COMM_ERROR_TIMEOUT,
                          w->abort_msg);
      g_cond_broadcast(&w->cond);
      break;
    }
  }
  g_mutex_unlock(&w->lock);
  for (int i = 0; i < n; i++) g_free(keys[i]);
  if (!ok) {
    send_abort(w);
    for (int i = 0; i < n; i++) g_clear_pointer(&out[i], msg_free);
  }
  return ok;
}

/* Write one message to position pos of c; a failure fails the world. */
static gboolean send_to(PxComm *c, int pos, guint32 kind, guint32 aux, const void *a, gsize alen, const void *b,
                        gsize blen, gint64 deadline, const char *desc, GError **error) {
  Tcp *T = c->impl;
  TcpWorld *w = T->w;
  int peer = c->group->ranks[pos];
  Peer *p = &w->peers[peer];
  g_mutex_lock(&w->lock);
  gboolean bad = w->abort_msg != NULL;
  if (bad) aborted_error(w, c, desc, error);
  g_mutex_unlock(&w->lock);
  if (bad) {
    send_abort(w);
    return FALSE;
  }
  g_autoptr(GError) e = NULL;
  g_mutex_lock(&p->wlock);
  IoStatus st = write_msg(p->wsock, kind, T->id, aux, a, alen, b, blen, deadline, &e);
  g_mutex_unlock(&p->wlock);
  if (st == IO_OK) return TRUE;
  g_autofree char *why = st == IO_TIMEOUT ? g_strdup_printf("%s: rank %d took nothing for %g s", desc, peer,
                                                            w->timeout_us / 1e6)
                                          : g_strdup_printf("%s: rank %d disconnected (%s)", desc, peer,
                                                            e ? e->message : "end of stream");
  g_mutex_lock(&w->lock);
  if (!w->abort_msg) {
    w->abort_msg = g_strdup(why);
    g_set_error_literal(error, PX_COMM_ERROR, st == IO_TIMEOUT ? PX_COMM_ERROR_TIMEOUT : PX_COMM_ERROR_ABORTED, why);
  } else {
    aborted_error(w, c, desc, error);
  }
  g_cond_broadcast(&w->cond);
  g_mutex_unlock(&w->lock);
  send_abort(w);
  return FALSE;
}

/* ---- point-to-point ---- */

static gboolean tcp_send(PxComm *c, const void *buf, gsize count, PxDType dt, int peer, GError **error) {
  g_autofree char *desc =
      g_strdup_printf("send from rank %d to rank %d on %s", c->world_rank, c->group->ranks[peer], c->label);
  return send_to(c, peer, K_P2P, (guint32)dt, buf, count * px_dtype_size(dt), NULL, 0, world_deadline(((Tcp *)c->impl)->w),
                 desc, error);
}

static gboolean tcp_recv(PxComm *c, void *buf, gsize count, PxDType dt, int peer, GError **error) {
  g_autofree char *desc =
      g_strdup_printf("recv on rank %d from rank %d on %s", c->world_rank, c->group->ranks[peer], c->label);
  Msg *m = NULL;
  if (!wait_msgs(c, CH_P2P, &peer, 1, &m, world_deadline(((Tcp *)c->impl)->w), desc, "never sent", error))
    return FALSE;
  gsize es = px_dtype_size((PxDType)m->aux);
  gboolean ok = m->aux == (guint32)dt && m->len == count * es;
  if (ok && m->len) memcpy(buf, m->data, m->len);
  else
    g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_MISMATCH,
                "%s: rank %d sent %" G_GSIZE_FORMAT " %s, the receive expects %" G_GSIZE_FORMAT " %s", desc,
                c->group->ranks[peer], m->len / es, px_dtype_name((PxDType)m->aux), count, px_dtype_name(dt));
  msg_free(m);
  return ok;
}

/* Sends are eager (the peer's reader thread always drains its socket): issue
 * every send, then every receive. */
static gboolean tcp_group(PxComm *c, const PxP2p *ops, int n, GError **error) {
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < n; i++) {
      const PxP2p *o = &ops[i];
      if (o->send != (pass == 0)) continue;
      if (!(o->send ? tcp_send(c, o->buf, o->count, o->dtype, o->peer, error)
                    : tcp_recv(c, o->buf, o->count, o->dtype, o->peer, error)))
        return FALSE;
    }
  return TRUE;
}

/* ---- collectives, through position 0 ---- */

typedef struct {
  guint32 op, dtype, red;
  gint32 root;
  guint64 count;
} Meta;

static void meta_put(guint8 *p, const Meta *m) {
  put32(p, m->op), put32(p + 4, m->dtype), put32(p + 8, m->red), put32(p + 12, (guint32)m->root);
  put64(p + 16, m->count);
}

static Meta meta_get(const guint8 *p) {
  return (Meta){get32(p), get32(p + 4), get32(p + 8), (gint32)get32(p + 12), get64(p + 16)};
}

/* Bytes position pos contributes to a call described by m on n positions. */
static gsize contribution(const Meta *m, int n, int pos) {
  gsize bytes = (gsize)m->count * px_dtype_size((PxDType)m->dtype);
  switch (m->op) {
  case OP_ALL_REDUCE:
  case OP_ALL_GATHER: return bytes;
  case OP_REDUCE_SCATTER: return (gsize)n * bytes;
  case OP_BROADCAST: return pos == m->root ? bytes : 0;
  default: return 0;
  }
}

static const char *red_name(guint32 r) { return r == PX_RED_SUM ? "sum" : "max"; }

/* The disagreement between position 0's call and position k's, or NULL (the
 * wording of comm_local.c's). */
static char *meta_mismatch(PxComm *c, const Meta *a, const Meta *b, int k) {
  int r0 = c->group->ranks[0], rk = c->group->ranks[k];
  if (b->op > OP_BARRIER || b->dtype > PX_DTYPE_F16 || b->root < 0 || b->root >= c->group->n)
    return g_strdup_printf("rank %d sent a call rank %d cannot read", rk, r0);
  if (a->op != b->op)
    return g_strdup_printf("rank %d called %s while rank %d called %s", r0, op_names[a->op], rk, op_names[b->op]);
  if (a->count != b->count || a->dtype != b->dtype)
    return g_strdup_printf("rank %d passed %" G_GUINT64_FORMAT " %s while rank %d passed %" G_GUINT64_FORMAT " %s", r0,
                           a->count, px_dtype_name((PxDType)a->dtype), rk, b->count, px_dtype_name((PxDType)b->dtype));
  if (a->red != b->red)
    return g_strdup_printf("rank %d reduced with %s while rank %d reduced with %s", r0, red_name(a->red), rk,
                           red_name(b->red));
  if (a->root != b->root)
    return g_strdup_printf("rank %d named root %d while rank %d named root %d", r0, c->group->ranks[a->root], rk,
                           c->group->ranks[b->root]);
  return NULL;
}

/* Position 0: gather every call, check them, compute and answer each position. */
static gboolean coll_root(PxComm *c, const Meta *m, const void *send, void *recv, const char *desc, GError **error) {
  int n = c->group->n;
  gsize bytes = (gsize)m->count * px_dtype_size((PxDType)m->dtype);
  g_autofree int *pos = g_new(int, n);
  g_autofree Msg **msgs = g_new0(Msg *, n);
  for (int k = 1; k < n; k++) pos[k] = k;
  gint64 deadline = world_deadline(((Tcp *)c->impl)->w);
  if (!wait_msgs(c, CH_COLL, pos + 1, n - 1, msgs + 1, deadline, desc, "never arrived", error)) return FALSE;
  g_autofree char *mismatch = NULL;
  for (int k = 1; k < n && !mismatch; k++) {
    if (msgs[k]->len < META_BYTES) {
      mismatch = g_strdup_printf("rank %d sent a call rank %d cannot read", c->group->ranks[k], c->group->ranks[0]);
      break;
    }
    Meta b = meta_get((const guint8 *)msgs[k]->data);
    mismatch = meta_mismatch(c, m, &b, k);
    if (!mismatch && msgs[k]->len != META_BYTES + contribution(&b, n, k))
      mismatch = g_strdup_printf("rank %d sent %" G_GSIZE_FORMAT " bytes, not %" G_GSIZE_FORMAT, c->group->ranks[k],
                                 msgs[k]->len - META_BYTES, contribution(&b, n, k));
  }
  gboolean ok = TRUE;
  g_autofree char *result = NULL;
  gsize result_bytes = 0;
  if (mismatch) {
    for (int k = 1; k < n && ok; k++)
      ok = send_to(c, k, K_COLL, 1, mismatch, strlen(mismatch), NULL, 0, deadline, desc, error);
    if (ok) g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_MISMATCH, "%s: %s", desc, mismatch);
    ok = FALSE;
    goto out;
  }
#define DATA(k) (msgs[k]->data + META_BYTES)
  switch (m->op) {
  case OP_ALL_REDUCE:
  case OP_REDUCE_SCATTER:
    result_bytes = m->op == OP_ALL_REDUCE ? bytes : (gsize)n * bytes;
    result = g_malloc(MAX(result_bytes, 1));
    {
      g_autofree const void **parts = g_new(const void *, n);
      parts[0] = send;
      for (int k = 1; k < n; k++) parts[k] = DATA(k);
      /* in rank order; halves summed in fp32 and rounded once */
      px_comm_reduce_parts(result, parts, n, result_bytes / px_dtype_size((PxDType)m->dtype), (PxDType)m->dtype,
                           (PxRedOp)m->red);
    }
    break;
  case OP_ALL_GATHER:
    result_bytes = (gsize)n * bytes;
    result = g_malloc(MAX(result_bytes, 1));
    if (bytes) memcpy(result, send, bytes);
    for (int k = 1; bytes && k < n; k++) memcpy(result + (gsize)k * bytes, DATA(k), bytes);
    break;
  case OP_BROADCAST:
    result_bytes = bytes;
    result = g_memdup2(m->root == 0 ? send : DATA(m->root), MAX(bytes, 1));
    break;
  default: break;
  }
#undef DATA
  for (int k = 1; k < n && ok; k++) {
    const char *part = result;
    gsize len = result_bytes;
    if (m->op == OP_REDUCE_SCATTER) part = result + (gsize)k * bytes, len = bytes;
    if (m->op == OP_BROADCAST && k == m->root) len = 0;
    ok = send_to(c, k, K_COLL, 0, part, len, NULL, 0, deadline, desc, error);
  }
  gsize out_bytes = m->op == OP_REDUCE_SCATTER ? bytes : result_bytes;
  if (ok && m->op != OP_BARRIER && out_bytes) memcpy(recv, result, out_bytes);
out:
  for (int k = 1; k < n; k++) msg_free(msgs[k]);
  return ok;
}

/* Any other position: send the call and its contribution, take the answer. */
static gboolean coll_member(PxComm *c, const Meta *m, const void *send, void *recv, const char *desc,
                            GError **error) {
  TcpWorld *w = ((Tcp *)c->impl)->w;
  int n = c->group->n;
  guint8 meta[META_BYTES];
  meta_put(meta, m);
  gint64 deadline = world_deadline(w);
  if (!send_to(c, 0, K_COLL, 0, meta, sizeof meta, send, contribution(m, n, c->pos), deadline, desc, error))
    return FALSE;
  int zero = 0;
  Msg *ans = NULL;
  if (!wait_msgs(c, CH_COLL, &zero, 1, &ans, deadline + grace_us(w), desc, "never answered", error)) return FALSE;
  gsize bytes = (gsize)m->count * px_dtype_size((PxDType)m->dtype);
  gsize want = m->op == OP_ALL_GATHER ? (gsize)n * bytes
               : m->op == OP_BARRIER || (m->op == OP_BROADCAST && c->pos == m->root) ? 0
                                                                                        : bytes;
  gboolean ok = FALSE;
  if (ans->aux == 1)
    g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_MISMATCH, "%s: %s", desc, ans->data);
  else if (ans->len != want)
    g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_MISMATCH, "%s: rank %d answered %" G_GSIZE_FORMAT
                " bytes, not %" G_GSIZE_FORMAT, desc, c->group->ranks[0], ans->len, want);
  else {
    if (want) memcpy(recv, ans->data, want);
    ok = TRUE;
  }
  msg_free(ans);
  return ok;
}

static gboolean collective(PxComm *c, int op, const void *send, void *recv, gsize count, PxDType dt, PxRedOp red,
                           int root, GError **error) {
  int n = c->group->n;
  gsize bytes = count * px_dtype_size(dt);
  if (n == 1) {
    if ((op == OP_REDUCE_SCATTER || op == OP_ALL_GATHER) && bytes) memmove(recv, send, bytes);
    return TRUE;
  }
  g_autofree char *desc = g_strdup_printf("%s on %s", op_names[op], c->label);
  Meta m = {(guint32)op, (guint32)dt, (guint32)red, root, count};
  return c->pos == 0 ? coll_root(c, &m, send, recv, desc, error) : coll_member(c, &m, send, recv, desc, error);
}

static gboolean tcp_all_reduce(PxComm *c, void *buf, gsize count, PxDType dt, PxRedOp op, GError **error) {
  return collective(c, OP_ALL_REDUCE, buf, buf, count, dt, op, 0, error);
}

static gboolean tcp_reduce_scatter(PxComm *c, const void *send, void *recv, gsize count, PxDType dt, GError **error) {
  return collective(c, OP_REDUCE_SCATTER, send, recv, count, dt, PX_RED_SUM, 0, error);
}

static gboolean tcp_all_gather(PxComm *c, const void *send, void *recv, gsize count, PxDType dt, GError **error) {
  return collective(c, OP_ALL_GATHER, send, recv, count, dt, PX_RED_SUM, 0, error);
}

static gboolean tcp_broadcast(PxComm *c, void *buf, gsize count, PxDType dt, int root, GError **error) {
  return collective(c, OP_BROADCAST, buf, buf, count, dt, PX_RED_SUM, root, error);
}

static gboolean tcp_barrier(PxComm *c, GError **error) {
  return collective(c, OP_BARRIER, NULL, NULL, 0, PX_DTYPE_F32, PX_RED_SUM, 0, error);
}

/* ---- communicators ---- */

static Tcp *tcp_handle(TcpWorld *w, char *id /* owned */) {
  Tcp *T = g_new0(Tcp, 1);
  T->w = w;
  T->id = id;
  g_atomic_int_inc(&w->refs);
  return T;
}

static void tcp_free(PxComm *c) {
  Tcp *T = c->impl;
  if (!T) return;
  if (g_atomic_int_dec_and_test(&T->w->refs)) world_free(T->w);
  g_free(T->id);
  g_free(T);
}

static gboolean tcp_split(PxComm *parent, int color, int key, PxComm *child, GError **error) {
  (void)key, (void)error;
  Tcp *P = parent->impl;
  /* n_splits was advanced by comm.c: the same on every member of parent */
  if (child) child->impl = tcp_handle(P->w, g_strdup_printf("%s/%d:%d", P->id, parent->n_splits, color));
  return TRUE;
}

static void tcp_abort(PxComm *c, const char *reason) { world_abort(((Tcp *)c->impl)->w, reason); }

static gboolean tcp_check_async(PxComm *c, GError **error) {
  TcpWorld *w = ((Tcp *)c->impl)->w;
  g_mutex_lock(&w->lock);
  gboolean ok = w->abort_msg == NULL;
  if (!ok) g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED, "communicator aborted: %s", w->abort_msg);
  g_mutex_unlock(&w->lock);
  if (!ok) send_abort(w);
  return ok;
}

static double tcp_timeout(const PxComm *c) { return ((Tcp *)c->impl)->w->timeout_us / 1e6; }

static const PxCommOps tcp_ops = {
  .name = "tcp",
  .free = tcp_free,
  .split = tcp_split,
  .abort = tcp_abort,
  .check_async = tcp_check_async,
  .timeout = tcp_timeout,
  .all_reduce = tcp_all_reduce,
  .reduce_scatter = tcp_reduce_scatter,
  .all_gather = tcp_all_gather,
  .broadcast = tcp_broadcast,
  .barrier = tcp_barrier,
  .send = tcp_send,
  .recv = tcp_recv,
  .group = tcp_group,
};

/* ---- rendezvous ---- */

typedef struct {
  const char *where;   /* "127.0.0.1:29500" */
  int rank, world;
  gint64 timeout_us;
  gint64 deadline;
  GSocket **socks;     /* (world) this rank's connection to each peer */
} Rdv;

static gboolean rdv_error(GError **error, const Rdv *R, int code, const char *fmt, ...) G_GNUC_PRINTF(4, 5);
static gboolean rdv_error(GError **error, const Rdv *R, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  g_autofree char *s = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_set_error(error, PX_COMM_ERROR, code, "tcp rendezvous at %s: %s", R->where, s);
  return FALSE;
}

/* A socket connected to `to`, retrying (the listener may not be up yet) until deadline. */
static GSocket *connect_until(GSocketAddress *to, gint64 deadline, GError **error) {
  for (;;) {
    GError *e = NULL;
    GSocket *s = g_socket_new(g_socket_address_get_family(to), G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, error);
    if (!s) return NULL;
    socket_tune(s);
    gboolean ok = g_socket_connect(s, to, NULL, &e);
    if (!ok && g_error_matches(e, G_IO_ERROR, G_IO_ERROR_PENDING)) {
      g_clear_error(&e);
      gint64 wait = deadline - g_get_monotonic_time();
      ok = wait > 0 && g_socket_condition_timed_wait(s, G_IO_OUT, wait, NULL, NULL) &&
           g_socket_check_connect_result(s, &e);
    }
    if (ok) return s;
    g_object_unref(s);
    gint64 left = deadline - g_get_monotonic_time();
    if (left <= 0) {
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "%s", e ? e->message : "timed out");
      g_clear_error(&e);
      return NULL;
    }
    g_clear_error(&e);
    g_usleep((gulong)MIN(left, 50000));
  }
}

static GSocket *listen_on(GInetAddress *ia, int port, int backlog, GError **error) {
  g_autoptr(GSocketAddress) sa = g_inet_socket_address_new(ia, (guint16)port);
  g_autoptr(GSocket) s = g_socket_new(g_inet_address_get_family(ia), G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, error);
  if (!s) return NULL;
  g_socket_set_blocking(s, FALSE);
  g_socket_set_listen_backlog(s, backlog);
  if (!g_socket_bind(s, sa, TRUE, error) || !g_socket_listen(s, error)) return NULL;
  return g_steal_pointer(&s);
}

/* A connection accepted on listener before deadline (NULL: timeout, error unset). */
static GSocket *accept_until(GSocket *listener, gint64 deadline, GError **error) {
  for (;;) {
    gint64 wait = deadline - g_get_monotonic_time();
    if (wait <= 0) return NULL;
    if (!g_socket_condition_timed_wait(listener, G_IO_IN, wait, NULL, NULL)) return NULL;
    GError *e = NULL;
    GSocket *s = g_socket_accept(listener, NULL, &e);
    if (s) {
      socket_tune(s);
      return s;
    }
    if (!g_error_matches(e, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
      g_propagate_error(error, e);
      return NULL;
    }
    g_error_free(e);
  }
}

static char *rank_list(const gboolean *have, int from, int to) {
  GString *s = g_string_new(NULL);
  int k = 0;
  for (int r = from; r < to; r++)
    if (!have[r]) g_string_append_printf(s, k++ ? ", %d" : "%d", r);
  g_string_prepend(s, k > 1 ? "ranks " : "rank ");
  return g_string_free(s, FALSE);
}

/* Rank 0: take every registration, answer with the table. */
static gboolean rdv_rank0(Rdv *R, GInetAddress *ia, int port, GError **error) {
  g_autoptr(GError) e = NULL;
  g_autoptr(GSocket) listener = listen_on(ia, port, R->world + 16, &e);
  if (!listener) return rdv_error(error, R, PX_COMM_ERROR_DEVICE, "rank 0 cannot listen there: %s", e->message);
  g_autofree gboolean *have = g_new0(gboolean, R->world);
  g_autofree char **ips = g_new0(char *, R->world + 1);
  g_autofree guint32 *ports = g_new0(guint32, R->world);
  have[0] = TRUE;
  int registered = 1;
  g_autofree char *failure = NULL;
  while (registered < R->world && !failure) {
    GSocket *s = accept_until(listener, R->deadline, &e);
    if (!s) {
      g_autofree char *who = rank_list(have, 0, R->world);
      failure = e ? g_strdup_printf("rank 0 cannot accept: %s", e->message)
                  : g_strdup_printf("%s never registered after %g s", who, R->timeout_us / 1e6);
      break;
    }
    char *id = NULL;
    Msg *m = NULL;
    if (read_msg(s, &id, &m, R->deadline, NULL, NULL) != IO_OK || m->kind != K_HELLO || m->len < 8) {
      msg_free(m), g_free(id), g_object_unref(s); /* not one of ours, or it went away: ignore it */
      continue;
    }
    int r = (int)m->aux, world = (int)get32((guint8 *)m->data);
    if (world != R->world)
      failure = g_strdup_printf("rank %d registered for a world of %d ranks, rank 0's has %d", r, world, R->world);
    else if (r <= 0 || r >= R->world)
      failure = g_strdup_printf("a rank %d registered in a world of %d ranks", r, R->world);
    else if (have[r])
      failure = g_strdup_printf("rank %d registered twice", r);
    else {
      have[r] = TRUE, registered++;
      ports[r] = get32((guint8 *)m->data + 4);
      ips[r] = g_strndup(m->data + 8, m->len - 8);
      R->socks[r] = s;
      s = NULL;
    }
    if (s) {
      write_msg(s, K_FAIL, NULL, 0, failure, strlen(failure), NULL, 0, R->deadline, NULL);
      g_object_unref(s);
    }
    msg_free(m), g_free(id);
  }
  gint64 deadline = g_get_monotonic_time() + R->timeout_us;
  if (failure) {
    for (int r = 1; r < R->world; r++)
      if (R->socks[r]) write_msg(R->socks[r], K_FAIL, NULL, 0, failure, strlen(failure), NULL, 0, deadline, NULL);
    for (int r = 0; r < R->world; r++) g_free(ips[r]);
    return rdv_error(error, R, strstr(failure, "never registered") ? PX_COMM_ERROR_TIMEOUT : PX_COMM_ERROR_INVALID,
                     "%s", failure);
  }
  GByteArray *table = g_byte_array_new();
  for (int r = 0; r < R->world; r++) {
    guint8 h[8];
    const char *ip = ips[r] ? ips[r] : "";
    put32(h, ports[r]), put32(h + 4, (guint32)strlen(ip));
    g_byte_array_append(table, h, 8);
    g_byte_array_append(table, (const guint8 *)ip, (guint)strlen(ip));
  }
  gboolean ok = TRUE;
  for (int r = 1; r < R->world && ok; r++)
    if (write_msg(R->socks[r], K_TABLE, NULL, 0, table->data, table->len, NULL, 0, deadline, &e) != IO_OK)
      ok = rdv_error(error, R, PX_COMM_ERROR_DEVICE, "rank %d went away before taking the table", r);
  g_byte_array_unref(table);
  for (int r = 0; r < R->world; r++) g_free(ips[r]);
  return ok;
}

/* Rank r > 0: register with rank 0, take the table, connect to every lower
 * rank but 0 and accept every higher one. */
static gboolean rdv_member(Rdv *R, GInetAddress *ia, int port, GError **error) {
  g_autoptr(GError) e = NULL;
  g_autoptr(GSocketAddress) master = g_inet_socket_address_new(ia, (guint16)port);
  GSocket *s0 = connect_until(master, R->deadline, &e);
  if (!s0) return rdv_error(error, R, PX_COMM_ERROR_TIMEOUT, "rank %d found no rank 0 listening after %g s (%s)",
                            R->rank, R->timeout_us / 1e6, e->message);
  R->socks[0] = s0;
  /* listen on the interface that reaches rank 0, for the higher ranks */
  g_autoptr(GSocketAddress) local = g_socket_get_local_address(s0, &e);
  if (!local) return rdv_error(error, R, PX_COMM_ERROR_DEVICE, "rank %d: %s", R->rank, e->message);
  GInetAddress *mine = g_inet_socket_address_get_address(G_INET_SOCKET_ADDRESS(local));
  g_autoptr(GSocket) listener = listen_on(mine, 0, R->world + 16, &e);
  g_autoptr(GSocketAddress) bound = listener ? g_socket_get_local_address(listener, &e) : NULL;
  if (!bound) return rdv_error(error, R, PX_COMM_ERROR_DEVICE, "rank %d cannot listen: %s", R->rank, e->message);
  g_autofree char *ip = g_inet_address_to_string(mine);
  guint8 hello[8];
  put32(hello, (guint32)R->world), put32(hello + 4, g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound)));
  gint64 registered = g_get_monotonic_time();
  if (write_msg(s0, K_HELLO, NULL, (guint32)R->rank, hello, 8, ip, strlen(ip), R->deadline, &e) != IO_OK)
    return rdv_error(error, R, PX_COMM_ERROR_DEVICE, "rank %d cannot register: %s", R->rank,
                     e ? e->message : "rank 0 went away");
  /* rank 0's deadline began before it accepted us: its failure, if any, comes before this */
  char *id = NULL;
  Msg *m = NULL;
  IoStatus st = read_msg(s0, &id, &m, registered + R->timeout_us + MIN(R->timeout_us, 2 * G_USEC_PER_SEC), NULL, &e);
  g_free(id);
  /* a rank 0 that fails sends its reason before this deadline: silence past it is not a working rank 0 */
  if (st == IO_TIMEOUT)
    return rdv_error(error, R, PX_COMM_ERROR_TIMEOUT,
                     "rank %d registered but nothing answered in %.1f s: another program listens at this port, "
                     "or rank 0 is stopped or hung", R->rank, (g_get_monotonic_time() - registered) / 1e6);
  if (st != IO_OK)
    return rdv_error(error, R, PX_COMM_ERROR_DEVICE, "rank 0 sent rank %d no table (%s)", R->rank,
                     st == IO_EOF ? "it went away" : e->message);
  if (m->kind == K_FAIL) {
    rdv_error(error, R, strstr(m->data, "never registered") ? PX_COMM_ERROR_TIMEOUT : PX_COMM_ERROR_INVALID, "%s",
              m->data);
    msg_free(m);
    return FALSE;
  }
  g_autofree guint32 *ports = g_new0(guint32, R->world);
  g_autofree char **ips = g_new0(char *, R->world + 1);
  gsize off = 0;
  gboolean ok = m->kind == K_TABLE;
  for (int r = 0; r < R->world && ok; r++) {
    if (off + 8 > m->len) ok = FALSE;
    else {
      ports[r] = get32((guint8 *)m->data + off);
      guint32 len = get32((guint8 *)m->data + off + 4);
      ok = off + 8 + len <= m->len;
      if (ok) ips[r] = g_strndup(m->data + off + 8, len);
      off += 8 + len;
    }
  }
  msg_free(m);
  if (ok) {
    for (int r = 1; r < R->rank && ok; r++) {
      g_autoptr(GInetAddress) a = g_inet_address_new_from_string(ips[r]);
      g_autoptr(GSocketAddress) to = a ? g_inet_socket_address_new(a, (guint16)ports[r]) : NULL;
      GSocket *s = to ? connect_until(to, (g_get_monotonic_time() + R->timeout_us), &e) : NULL;
      if (!s) {
        ok = rdv_error(error, R, PX_COMM_ERROR_TIMEOUT, "rank %d cannot reach rank %d at %s:%u (%s)", R->rank, r,
                       ips[r], ports[r], e ? e->message : "bad address");
        break;
      }
      R->socks[r] = s;
      if (write_msg(s, K_HELLO, NULL, (guint32)R->rank, NULL, 0, NULL, 0, (g_get_monotonic_time() + R->timeout_us), &e) != IO_OK)
        ok = rdv_error(error, R, PX_COMM_ERROR_DEVICE, "rank %d went away while rank %d connected", r, R->rank);
    }
  } else {
    rdv_error(error, R, PX_COMM_ERROR_DEVICE, "rank 0 sent rank %d a table it cannot read", R->rank);
  }
  for (int r = 0; r < R->world; r++) g_free(ips[r]);
  if (!ok) return FALSE;
  gint64 deadline = (g_get_monotonic_time() + R->timeout_us);
  g_autofree gboolean *have = g_new0(gboolean, R->world);
  for (int r = 0; r <= R->rank; r++) have[r] = TRUE;
  for (int got = R->rank + 1; got < R->world;) {
    GSocket *s = accept_until(listener, deadline, &e);
    if (!s) {
      g_autofree char *who = rank_list(have, 0, R->world);
      return rdv_error(error, R, PX_COMM_ERROR_TIMEOUT, "%s never connected to rank %d after %g s", who, R->rank,
                       R->timeout_us / 1e6);
    }
    if (read_msg(s, &id, &m, deadline, NULL, NULL) == IO_OK && m->kind == K_HELLO && (int)m->aux > R->rank &&
        (int)m->aux < R->world && !have[m->aux]) {
      have[m->aux] = TRUE;
      R->socks[m->aux] = s;
      got++;
      s = NULL;
    }
    if (s) g_object_unref(s); /* not one of ours: ignore it */
    g_clear_pointer(&m, msg_free);
    g_clear_pointer(&id, g_free);
  }
  return TRUE;
}

static GInetAddress *resolve(const char *addr, GError **error) {
  GInetAddress *ia = g_inet_address_new_from_string(addr);
  if (ia) return ia;
  g_autoptr(GResolver) res = g_resolver_get_default();
  GList *all = g_resolver_lookup_by_name(res, addr, NULL, error);
  if (!all) return NULL;
  GInetAddress *pick = NULL;
  for (GList *l = all; l && !pick; l = l->next)
    if (g_inet_address_get_family(l->data) == G_SOCKET_FAMILY_IPV4) pick = l->data;
  ia = g_object_ref(pick ? pick : all->data);
  g_resolver_free_addresses(all);
  return ia;
}

PxComm *px_comm_tcp_new(const char *addr, int port, int rank, int world, double timeout_s, GError **error) {
  if (world < 1 || rank < 0 || rank >= world) {
    px_fail(error, PX_COMM_ERROR, PX_COMM_ERROR_INVALID, "tcp communicator: rank %d is outside a world of %d ranks",
            rank, world);
    return NULL;
  }
  TcpWorld *w = world_new(rank, world, timeout_s);
  if (world > 1) {
    if (!addr || !*addr || port < 1 || port > 65535) {
      px_fail(error, PX_COMM_ERROR, PX_COMM_ERROR_INVALID,
              "tcp communicator: the rendezvous address %s:%d is not an address and a port in 1..65535",
              addr ? addr : "(none)", port);
      world_free(w);
      return NULL;
    }
    g_autofree char *where = g_strdup_printf("%s:%d", addr, port);
    g_autofree GSocket **socks = g_new0(GSocket *, world);
    Rdv R = {where, rank, world, w->timeout_us, world_deadline(w), socks};
    g_autoptr(GError) e = NULL;
    g_autoptr(GInetAddress) ia = resolve(addr, &e);
    gboolean ok = ia ? (rank == 0 ? rdv_rank0(&R, ia, port, error) : rdv_member(&R, ia, port, error))
                     : rdv_error(error, &R, PX_COMM_ERROR_INVALID, "%s", e->message);
    for (int r = 0; r < world; r++) {
      if (!socks[r]) continue;
      if (ok) {
        Peer *p = &w->peers[r];
        p->rsock = socks[r];
        int fd = dup(g_socket_get_fd(socks[r]));
        p->wsock = fd >= 0 ? g_socket_new_from_fd(fd, &e) : NULL;
        if (!p->wsock) {
          if (fd >= 0) close(fd);
          ok = px_fail(error, PX_COMM_ERROR, PX_COMM_ERROR_DEVICE, "tcp communicator: %s",
                       e ? e->message : "cannot duplicate a socket");
        } else {
          socket_tune(p->wsock);
        }
      } else {
        g_object_unref(socks[r]);
      }
    }
    if (ok)
      for (int r = 0; r < world; r++)
        if (w->peers[r].rsock) w->peers[r].reader = g_thread_new("px-tcp-reader", reader_main, &w->peers[r]);
    if (!ok) {
      g_cancellable_cancel(w->cancel);
      w->abort_msg = g_strdup("rendezvous failed");
      world_free(w);
      return NULL;
    }
  }
  return px_comm_alloc_world(&tcp_ops, rank, world, tcp_handle(w, g_strdup("world")));
}

PxComm *px_comm_tcp_new_from_env(const PxLaunchEnv *env, double timeout_s, GError **error) {
  if (env->world > 1 && !env->master_addr) {
    px_fail(error, PX_COMM_ERROR, PX_COMM_ERROR_INVALID,
            "the tcp communicator needs MASTER_ADDR (and MASTER_PORT) for a world of %d ranks; parallax-exec launch "
            "and torchrun set them",
            env->world);
    return NULL;
  }
  return px_comm_tcp_new(env->master_addr, env->master_port > 0 ? env->master_port : 29500, env->rank, env->world,
                         timeout_s, error);
}

/* A TCP port of 127.0.0.1 no one listens on now (the OS's pick), or -1. */
int px_tcp_free_port(void) {
  g_autoptr(GSocket) s = g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL);
  g_autoptr(GInetAddress) lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) any = g_inet_socket_address_new(lo, 0);
  if (!s || !g_socket_bind(s, any, TRUE, NULL)) return -1;
  g_autoptr(GSocketAddress) got = g_socket_get_local_address(s, NULL);
  return got ? g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(got)) : -1;
}
