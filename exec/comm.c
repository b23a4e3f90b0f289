/* comm.c — groups; the argument checks of every communicator call before it is
 * dispatched through the implementation's table; splits; calls queued on
 * streams; grouped point-to-point (see comm.h, comm_impl.h). */
#include "comm_impl.h"
#include "check.h"
#include <string.h>

G_DEFINE_QUARK(px-comm-error-quark, px_comm_error)

#define fail(error, code, ...) px_fail((error), PX_COMM_ERROR, (code), __VA_ARGS__)

PxGroup *px_group_new(const char *name, int n, const int *ranks) {
  PxGroup *g = g_new0(PxGroup, 1);
  g->name = g_strdup(name ? name : "group");
  g->n = n;
  g->ranks = g_memdup2(ranks, sizeof(int) * (gsize)n);
  return g;
}

PxGroup *px_group_new_world(int world) {
  PxGroup *g = g_new0(PxGroup, 1);
  g->name = g_strdup("world");
  g->n = world;
  g->ranks = g_new(int, world);
  for (int i = 0; i < world; i++) g->ranks[i] = i;
  return g;
}

void px_group_free(PxGroup *g) {
  if (!g) return;
  g_free(g->name);
  g_free(g->ranks);
  g_free(g);
}

int px_group_index(const PxGroup *g, int rank) {
  for (int i = 0; i < g->n; i++)
    if (g->ranks[i] == rank) return i;
  return -1;
}

char *px_group_describe(const PxGroup *g) {
  GString *s = g_string_new(g->name);
  g_string_append_c(s, '[');
  for (int i = 0; i < g->n; i++) g_string_append_printf(s, i ? ",%d" : "%d", g->ranks[i]);
  g_string_append_c(s, ']');
  return g_string_free(s, FALSE);
}

/* ---- the communicator header ---- */

static PxComm *comm_alloc(const PxCommOps *ops, int world_rank, int world_size, PxGroup *group) {
  PxComm *c = g_new0(PxComm, 1);
  c->ops = ops;
  c->world_rank = world_rank;
  c->world_size = world_size;
  c->group = group;
  c->pos = px_group_index(group, world_rank);
  c->label = px_group_describe(group);
  c->pending = g_array_new(FALSE, FALSE, sizeof(PxP2p));
  return c;
}

PxComm *px_comm_alloc_world(const PxCommOps *ops, int rank, int world, void *impl) {
  PxComm *c = comm_alloc(ops, rank, world, px_group_new_world(world));
  c->impl = impl;
  return c;
}

int px_comm_rank(const PxComm *c) { return c->pos; }
int px_comm_size(const PxComm *c) { return c->group->n; }
int px_comm_global_rank(const PxComm *c, int pos) { return pos >= 0 && pos < c->group->n ? c->group->ranks[pos] : -1; }
int px_comm_world_rank(const PxComm *c) { return c->world_rank; }
int px_comm_world_size(const PxComm *c) { return c->world_size; }
const char *px_comm_backend(const PxComm *c) { return c->ops->name; }
const char *px_comm_label(const PxComm *c) { return c->label; }
const PxGroup *px_comm_group(const PxComm *c) { return c->group; }
double px_comm_timeout(const PxComm *c) { return c->ops->timeout(c); }

void px_comm_free(PxComm *c) {
  if (!c) return;
  if (c->ops->free) c->ops->free(c);
  px_group_free(c->group);
  g_free(c->label);
  g_array_unref(c->pending);
  g_free(c);
}

void px_comm_abort(PxComm *c, const char *reason) { c->ops->abort(c, reason); }

gboolean px_comm_check_async(PxComm *c, GError **error) { return c->ops->check_async(c, error); }

/* ---- splits ---- */

typedef struct {
  gint32 color, key, rank;
} Member;

static gint member_cmp(gconstpointer a, gconstpointer b) {
  const Member *x = a, *y = b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return (x->rank > y->rank) - (x->rank < y->rank);
}

PxComm *px_comm_split(PxComm *parent, int color, int key, const char *name, GError **error) {
  int n = parent->group->n;
  if (color < PX_COMM_NO_COLOR) {
    fail(error, PX_COMM_ERROR_INVALID, "split of %s: color %d (≥ 0, or no color)", parent->label, color);
    return NULL;
  }
  gint32 mine[2] = {color, key};
  g_autofree gint32 *all = g_new(gint32, 2 * (gsize)n);
  if (!parent->ops->all_gather(parent, mine, all, 2, PX_DTYPE_I32, error)) {
    g_prefix_error(error, "split of %s: ", parent->label);
    return NULL;
  }
  parent->n_splits++;
  PxComm *child = NULL;
  if (color != PX_COMM_NO_COLOR) {
    g_autoptr(GArray) m = g_array_new(FALSE, FALSE, sizeof(Member));
    for (int i = 0; i < n; i++)
      if (all[2 * i] == color) {
        Member x = {all[2 * i], all[2 * i + 1], parent->group->ranks[i]};
        g_array_append_val(m, x);
      }
    g_array_sort(m, member_cmp);
    g_autofree int *ranks = g_new(int, m->len);
    for (guint i = 0; i < m->len; i++) ranks[i] = g_array_index(m, Member, i).rank;
    child = comm_alloc(parent->ops, parent->world_rank, parent->world_size, px_group_new(name, (int)m->len, ranks));
  }
  if (!parent->ops->split(parent, color, key, child, error)) {
    g_prefix_error(error, "split of %s: ", parent->label);
    if (child) child->ops = parent->ops, px_comm_free(child);
    return NULL;
  }
  return child;
}

/* ---- argument checks ---- */

static gboolean check_dtype(PxComm *c, const char *op, PxDType dt, GError **error) {
  /* every dtype is moved and reduced; halves are reduced in fp32 and rounded
   * once (px_comm_reduce_parts; nccl natively, see comm_conformance.md) */
  if (dt == PX_DTYPE_F32 || dt == PX_DTYPE_F64 || dt == PX_DTYPE_I32 || px_dtype_is_half(dt)) return TRUE;
  return fail(error, PX_COMM_ERROR_INVALID, "%s on %s: unknown dtype %d", op, c->label, (int)dt);
}

static gboolean check_pos(PxComm *c, const char *op, const char *what, int pos, gboolean self_ok, GError **error) {
  if (pos >= 0 && pos < c->group->n && (self_ok || pos != c->pos)) return TRUE;
  return fail(error, PX_COMM_ERROR_INVALID, "%s on %s (rank %d of %d): bad %s %d", op, c->label, c->pos, c->group->n,
              what, pos);
}

static gboolean not_grouping(PxComm *c, const char *op, GError **error) {
  if (!c->grouping) return TRUE;
  return fail(error, PX_COMM_ERROR_INVALID, "%s on %s: only send and recv may be called inside a group", op, c->label);
}

/* ---- calls on streams ---- */

typedef PxCommCall Call;

static GPrivate current_label = G_PRIVATE_INIT(g_free);

void px_comm_set_label(const char *label) { g_private_replace(&current_label, g_strdup(label)); }

static gboolean run_group(PxComm *c, const PxP2p *ops, int n, GError **error);

static const char *const call_names[] = {"all_reduce", "reduce_scatter", "all_gather", "broadcast", "barrier",
                                         "send", "recv", "group of sends and receives"};

/* Number the call on every communicator it involves, in the order this rank
 * issues it (implementations that run calls in issue order). */
static void call_issue(Call *k) {
  if (!k->c->ops->issue) return;
  g_autoptr(GPtrArray) cs = g_ptr_array_new();
  g_ptr_array_add(cs, k->c);
  for (int i = 0; i < k->n_group; i++) {
    PxComm *o = k->group[i].comm ? k->group[i].comm : k->c;
    guint j;
    if (!g_ptr_array_find(cs, o, &j)) g_ptr_array_add(cs, o);
  }
  k->n_order = (int)cs->len;
  k->order_comm = g_new(PxComm *, cs->len);
  k->order_ticket = g_new(guint64, cs->len);
  for (guint i = 0; i < cs->len; i++) {
    k->order_comm[i] = cs->pdata[i];
    k->order_ticket[i] = k->c->ops->issue(cs->pdata[i]);
  }
}

static gboolean call_run(gpointer data, GError **error) {
  Call *k = data;
  PxComm *c = k->c;
  gboolean ok = FALSE;
  int held = 0; /* the communicators whose turn this call has */
  if (k->n_order) {
    g_autofree char *desc = k->kind == PX_CALL_SEND || k->kind == PX_CALL_RECV
                                ? g_strdup_printf("%s %s rank %d on %s", call_names[k->kind],
                                                  k->kind == PX_CALL_SEND ? "to" : "from", c->group->ranks[k->arg], c->label)
                                : g_strdup_printf("%s on %s", call_names[k->kind], c->label);
    for (; held < k->n_order; held++)
      if (!c->ops->turn(k->order_comm[held], k->order_ticket[held], desc, error)) break;
    if (held < k->n_order) {
      for (int i = 0; i < held; i++) c->ops->finish(k->order_comm[i], k->order_ticket[i]);
      return FALSE;
    }
  }
  switch (k->kind) {
  case PX_CALL_ALL_REDUCE: ok = c->ops->all_reduce(c, k->buf, k->count, k->dt, k->red, error); break;
  case PX_CALL_REDUCE_SCATTER: ok = c->ops->reduce_scatter(c, k->send, k->buf, k->count, k->dt, error); break;
  case PX_CALL_ALL_GATHER: ok = c->ops->all_gather(c, k->send, k->buf, k->count, k->dt, error); break;
  case PX_CALL_BROADCAST: ok = c->ops->broadcast(c, k->buf, k->count, k->dt, k->arg, error); break;
  case PX_CALL_BARRIER: ok = c->ops->barrier(c, error); break;
  case PX_CALL_SEND: ok = c->ops->send(c, k->send, k->count, k->dt, k->arg, error); break;
  case PX_CALL_RECV: ok = c->ops->recv(c, k->buf, k->count, k->dt, k->arg, error); break;
  case PX_CALL_GROUP: ok = run_group(c, k->group, k->n_group, error); break;
  }
  for (int i = 0; i < held; i++) c->ops->finish(k->order_comm[i], k->order_ticket[i]);
  return ok;
}

/* A queued call that fails aborts the world, so that no peer waits for it. */
static gboolean call_run_queued(gpointer data, GError **error) {
  Call *k = data;
  if (call_run(data, error)) return TRUE;
  if (error && *error && k->label) g_prefix_error(error, "%s: ", k->label);
  if (error && *error && !g_error_matches(*error, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED))
    k->c->ops->abort(k->c, (*error)->message);
  return FALSE;
}

static void call_free(gpointer data) {
  Call *k = data;
  g_free(k->group);
  g_free(k->label);
  g_free(k->order_comm);
  g_free(k->order_ticket);
  g_free(k);
}

/* ---- device buffers on an implementation of host memory ----
 * local, tcp and mpi read and write their buffers with the CPU. A call queued
 * on a device stream (px_stream_native: the cuda backend's, whose buffers are
 * in GPU memory; NCCL, which takes GPU memory, queues natively) runs staged,
 * on the calling thread: it waits for the stream (the call's inputs are
 * written once the work queued before it has run), copies every buffer the
 * call reads into host memory, runs the call there, and copies what it writes
 * back before it returns. Synchronous, as the multi-rank runs on one GPU
 * (ranks as threads, `local`) need: a host function on the GPU's stream may
 * neither touch device memory nor call CUDA. PX_COMM_STAGE=1 stages the
 * calls of host streams too (tests/cli_run.sh runs layouts so). `local`'s
 * calls (collectives, sends, receives, groups) do not come here on a device
 * stream: its device path (PxCommOps.stream_takes, comm_local.c) queues them
 * with the streams' own copies, reductions and events. */
typedef struct {
  void *dev, *host;
  gsize bytes;
  gboolean out; /* written by the call (copied back); else read */
} Staged;

static gboolean stage_all(PxStream *s) {
  static gint force = -1;
  if (g_atomic_int_get(&force) < 0) g_atomic_int_set(&force, g_strcmp0(g_getenv("PX_COMM_STAGE"), "1") == 0);
  return px_stream_native(s) != NULL || g_atomic_int_get(&force) == 1;
}

/* A host copy of dev (bytes) for the call, in list; *ptr points the call at it. */
static void stage(GArray *list, void **ptr, gsize bytes, gboolean out) {
  if (!*ptr) return;
  Staged x = {*ptr, g_malloc(MAX(bytes, 1)), bytes, out};
  g_array_append_val(list, x);
  *ptr = x.host;
}

static gboolean run_staged(Call *k, PxStream *s, GError **error) {
  gsize es = px_dtype_size(k->dt), n = (gsize)px_comm_size(k->c), cnt = k->count;
  g_autoptr(GArray) list = g_array_new(FALSE, FALSE, sizeof(Staged));
  void *send = (void *)k->send;
  switch (k->kind) {
  case PX_CALL_ALL_REDUCE:
  case PX_CALL_BROADCAST: stage(list, &k->buf, cnt * es, TRUE); break; /* read and written */
  case PX_CALL_REDUCE_SCATTER:
    stage(list, &send, n * cnt * es, FALSE);
    stage(list, &k->buf, cnt * es, TRUE);
    break;
  case PX_CALL_ALL_GATHER: /* in place (send inside buf) too: the host copy of buf is written whole */
    stage(list, &send, cnt * es, FALSE);
    stage(list, &k->buf, n * cnt * es, TRUE);
    break;
  case PX_CALL_SEND: stage(list, &send, cnt * es, FALSE); break;
  case PX_CALL_RECV: stage(list, &k->buf, cnt * es, TRUE); break;
  case PX_CALL_GROUP:
    for (int i = 0; i < k->n_group; i++)
      stage(list, &k->group[i].buf, k->group[i].count * px_dtype_size(k->group[i].dtype), !k->group[i].send);
    break;
  case PX_CALL_BARRIER: break;
  }
  k->send = send;
  gboolean ok = px_stream_synchronize(s, error);
  for (guint i = 0; ok && i < list->len; i++) {
    Staged *x = &g_array_index(list, Staged, i);
    /* a written buffer is read too: an all-reduce's or broadcast's input, and
     * the parts of a receive's buffer a shorter message leaves as they were */
    ok = px_stream_memcpy(s, x->host, x->dev, x->bytes, 1, error);
  }
  ok = ok && px_stream_synchronize(s, error) && call_run(k, error);
  for (guint i = 0; ok && i < list->len; i++) {
    Staged *x = &g_array_index(list, Staged, i);
    if (x->out) ok = px_stream_memcpy(s, x->dev, x->host, x->bytes, 0, error);
  }
  ok = ok && px_stream_synchronize(s, error);
  for (guint i = 0; i < list->len; i++) g_free(g_array_index(list, Staged, i).host);
  return ok;
}

/* A queued call whose queueing failed: the failure on the stream, as a call
 * that ran there would have left it (call_run_queued). */
static gboolean fail_queued(gpointer data, GError **error) {
  g_propagate_error(error, g_error_copy(data));
  return FALSE;
}

/* The implementation's own queueing of k on stream (PxCommOps.stream_queue).
 * A failure there is the call's: returned on an inline stream (as call_run
 * returns it), else left on the stream with the queuer's label, the world
 * aborted (call_run_queued), and the call "queued". */
static gboolean queue_natively(Call *k, PxStream *stream, GError **error) {
  GError *err = NULL;
  if (k->c->ops->stream_queue(k->c, k, stream, &err)) return TRUE;
  if (px_stream_is_inline(stream)) { /* as call_run would have failed */
    g_propagate_error(error, err);
    return FALSE;
  }
  if (k->label) g_prefix_error(&err, "%s: ", k->label);
  if (!g_error_matches(err, PX_COMM_ERROR, PX_COMM_ERROR_ABORTED)) k->c->ops->abort(k->c, err->message);
  return px_stream_launch_host(stream, fail_queued, err, (GDestroyNotify)g_error_free, error);
}

static gboolean dispatch(Call *k, PxStream *stream, GError **error) {
  call_issue(k);
  if (stream && k->c->ops->stream_takes && k->c->ops->stream_takes(k->c, k, stream)) {
    k->label = g_strdup(g_private_get(&current_label));
    gboolean ok = queue_natively(k, stream, error);
    call_free(k);
    return ok;
  }
  if (stream && !k->c->ops->enqueue && stage_all(stream)) {
    gboolean ok = run_staged(k, stream, error);
    call_free(k);
    return ok;
  }
  if (!stream || px_stream_is_inline(stream)) {
    gboolean ok = call_run(k, error);
    call_free(k);
    return ok;
  }
  const char *label = g_private_get(&current_label);
  k->label = g_strdup(label);
  if (k->c->ops->enqueue) {
    gboolean ok = k->c->ops->enqueue(k->c, k, stream, error);
    call_free(k);
    return ok;
  }
  return px_stream_launch_host(stream, call_run_queued, k, call_free, error);
}

static Call *call_new(PxComm *c, PxCallKind kind) {
  Call *k = g_new0(Call, 1);
  k->c = c;
  k->kind = kind;
  return k;
}

gboolean px_comm_all_reduce(PxComm *c, void *buf, gsize count, PxDType dtype, PxRedOp op, PxStream *stream,
                            GError **error) {
  if (!not_grouping(c, "all_reduce", error) || !check_dtype(c, "all_reduce", dtype, error)) return FALSE;
  if (op != PX_RED_SUM && op != PX_RED_MAX) return fail(error, PX_COMM_ERROR_INVALID, "all_reduce on %s: unknown op %d", c->label, op);
  Call *k = call_new(c, PX_CALL_ALL_REDUCE);
  k->buf = buf, k->count = count, k->dt = dtype, k->red = op;
  c->traffic.all_reduce += (double)count * px_dtype_size(dtype);
  return dispatch(k, stream, error);
}

gboolean px_comm_reduce_scatter(PxComm *c, const void *send, void *recv, gsize count, PxDType dtype,
                                PxStream *stream, GError **error) {
  if (!not_grouping(c, "reduce_scatter", error) || !check_dtype(c, "reduce_scatter", dtype, error)) return FALSE;
  Call *k = call_new(c, PX_CALL_REDUCE_SCATTER);
  k->send = send, k->buf = recv, k->count = count, k->dt = dtype;
  c->traffic.reduce_scatter += (double)count * px_comm_size(c) * px_dtype_size(dtype);
  return dispatch(k, stream, error);
}

gboolean px_comm_all_gather(PxComm *c, const void *send, void *recv, gsize count, PxDType dtype, PxStream *stream,
                            GError **error) {
  if (!not_grouping(c, "all_gather", error) || !check_dtype(c, "all_gather", dtype, error)) return FALSE;
  Call *k = call_new(c, PX_CALL_ALL_GATHER);
  k->send = send, k->buf = recv, k->count = count, k->dt = dtype;
  c->traffic.all_gather += (double)count * px_comm_size(c) * px_dtype_size(dtype);
  return dispatch(k, stream, error);
}

gboolean px_comm_broadcast(PxComm *c, void *buf, gsize count, PxDType dtype, int root, PxStream *stream,
                           GError **error) {
  if (!not_grouping(c, "broadcast", error) || !check_dtype(c, "broadcast", dtype, error) ||
      !check_pos(c, "broadcast", "root", root, TRUE, error))
    return FALSE;
  Call *k = call_new(c, PX_CALL_BROADCAST);
  k->buf = buf, k->count = count, k->dt = dtype, k->arg = root;
  c->traffic.broadcast += (double)count * px_dtype_size(dtype);
  return dispatch(k, stream, error);
}

void px_comm_traffic(const PxComm *c, PxCommTraffic *out) { *out = c->traffic; }

gboolean px_comm_barrier(PxComm *c, PxStream *stream, GError **error) {
  if (!not_grouping(c, "barrier", error)) return FALSE;
  return dispatch(call_new(c, PX_CALL_BARRIER), stream, error);
}

static gboolean p2p(PxComm *c, gboolean send, const void *sbuf, void *rbuf, gsize count, PxDType dtype, int peer,
                    PxStream *stream, GError **error) {
  const char *op = send ? "send" : "recv";
  if (!check_dtype(c, op, dtype, error) || !check_pos(c, op, "peer", peer, FALSE, error)) return FALSE;
  if (c->grouping) {
    PxP2p x = {send, send ? (void *)sbuf : rbuf, count, dtype, peer, NULL};
    g_array_append_val(c->pending, x);
    return TRUE;
  }
  Call *k = call_new(c, send ? PX_CALL_SEND : PX_CALL_RECV);
  k->send = sbuf, k->buf = rbuf, k->count = count, k->dt = dtype, k->arg = peer;
  return dispatch(k, stream, error);
}

gboolean px_comm_send(PxComm *c, const void *buf, gsize count, PxDType dtype, int peer, PxStream *stream,
                      GError **error) {
  return p2p(c, TRUE, buf, NULL, count, dtype, peer, stream, error);
}

gboolean px_comm_recv(PxComm *c, void *buf, gsize count, PxDType dtype, int peer, PxStream *stream,
                      GError **error) {
  return p2p(c, FALSE, NULL, buf, count, dtype, peer, stream, error);
}

void px_comm_group_start(PxComm *c) {
  c->grouping = TRUE;
  g_array_set_size(c->pending, 0);
}

/* ---- grouped point-to-point without native support ----
 * Two threads: one issues the sends in call order, the other the receives in
 * call order, so that neither waits for the other and messages to one peer
 * keep their order (comm.h). */

typedef struct {
  PxComm *c;
  const PxP2p *ops;
  int n;
  gboolean sends;
  GError *error;
} GroupArg;

static gpointer group_thread(gpointer data) {
  GroupArg *a = data;
  for (int i = 0; i < a->n && !a->error; i++) {
    const PxP2p *o = &a->ops[i];
    if (o->send != a->sends) continue;
    PxComm *c = o->comm ? o->comm : a->c;
    if (o->send) c->ops->send(c, o->buf, o->count, o->dtype, o->peer, &a->error);
    else c->ops->recv(c, o->buf, o->count, o->dtype, o->peer, &a->error);
  }
  return NULL;
}

/* A group's messages from a rank to itself (all-to-all's own block; only
 * px_comm_all_to_all_v makes them) on a host-memory implementation: the i-th
 * send to self lands in the i-th receive from self. The others are copied to
 * rest; returns their number. */
static gboolean to_self(const PxComm *c, const PxP2p *o) { return o->peer == (o->comm ? o->comm : c)->pos; }

static int run_self(PxComm *c, const PxP2p *ops, int n, PxP2p *rest) {
  int k = 0, sends = 0;
  for (int i = 0; i < n; i++) {
    if (!to_self(c, &ops[i])) {
      rest[k++] = ops[i];
      continue;
    }
    if (!ops[i].send) continue;
    for (int j = 0, seen = 0; j < n; j++)
      if (to_self(c, &ops[j]) && ops[j].comm == ops[i].comm && !ops[j].send && seen++ == sends) {
        memcpy(ops[j].buf, ops[i].buf, ops[i].count * px_dtype_size(ops[i].dtype));
        break;
      }
    sends++;
  }
  return k;
}

static gboolean run_group(PxComm *c, const PxP2p *ops, int n, GError **error) {
  /* NCCL moves a group's messages to self natively (device memory); the
   * host-memory implementations get them done here */
  g_autofree PxP2p *rest = NULL;
  if (strcmp(c->ops->name, "nccl")) {
    rest = g_new(PxP2p, MAX(n, 1));
    n = run_self(c, ops, n, rest);
    ops = rest;
    if (n == 0) return TRUE;
  }
  gboolean one_comm = TRUE;
  for (int i = 0; i < n; i++) one_comm = one_comm && (!ops[i].comm || ops[i].comm == c);
  if (c->ops->group && (one_comm || c->ops->multi_group)) return c->ops->group(c, ops, n, error);
  GroupArg args[2] = {{c, ops, n, TRUE, NULL}, {c, ops, n, FALSE, NULL}};
  GThread *sender = g_thread_new("p2p-send", group_thread, &args[0]);
  group_thread(&args[1]);
  g_thread_join(sender);
  gboolean ok = TRUE;
  for (int i = 0; i < 2; i++)
    if (args[i].error) {
      if (ok) g_propagate_error(error, args[i].error);
      else g_error_free(args[i].error);
      ok = FALSE;
    }
  return ok;
}

gboolean px_comm_group_end(PxComm *c, PxStream *stream, GError **error) {
  if (!c->grouping) return fail(error, PX_COMM_ERROR_INVALID, "group_end on %s without group_start", c->label);
  c->grouping = FALSE;
  if (c->pending->len == 0) return TRUE;
  Call *k = call_new(c, PX_CALL_GROUP);
  k->n_group = (int)c->pending->len;
  k->group = g_memdup2(c->pending->data, sizeof(PxP2p) * c->pending->len);
  g_array_set_size(c->pending, 0);
  return dispatch(k, stream, error);
}

gboolean px_comm_group_end_multi(PxComm *const *cs, int n, PxStream *stream, GError **error) {
  g_autoptr(GArray) all = g_array_new(FALSE, FALSE, sizeof(PxP2p));
  gboolean ok = TRUE;
  for (int i = 0; i < n; i++) {
    if (!cs[i]->grouping) {
      if (ok) ok = fail(error, PX_COMM_ERROR_INVALID, "group_end on %s without group_start", cs[i]->label);
      continue;
    }
    if (cs[i]->ops != cs[0]->ops && ok)
      ok = fail(error, PX_COMM_ERROR_INVALID, "one group over %s (%s) and %s (%s): communicators of different implementations",
                cs[0]->label, cs[0]->ops->name, cs[i]->label, cs[i]->ops->name);
    cs[i]->grouping = FALSE;
    for (guint j = 0; j < cs[i]->pending->len; j++) {
      PxP2p x = g_array_index(cs[i]->pending, PxP2p, j);
      x.comm = cs[i];
      g_array_append_val(all, x);
    }
    g_array_set_size(cs[i]->pending, 0);
  }
  if (!ok || all->len == 0) return ok;
  PxComm *c = g_array_index(all, PxP2p, 0).comm;
  Call *k = call_new(c, PX_CALL_GROUP);
  k->n_group = (int)all->len;
  k->group = g_memdup2(all->data, sizeof(PxP2p) * all->len);
  return dispatch(k, stream, error);
}


/* ---- all-to-all: grouped point-to-point (what NCCL's all-to-all is) ---- */

gboolean px_comm_all_to_all_v(PxComm *c, const void *send, const gsize *send_counts, const gsize *send_displs,
                              void *recv, const gsize *recv_counts, const gsize *recv_displs, PxDType dtype,
                              PxStream *stream, GError **error) {
  if (!not_grouping(c, "all_to_all", error) || !check_dtype(c, "all_to_all", dtype, error)) return FALSE;
  gsize es = px_dtype_size(dtype);
  int n = c->group->n;
  /* one group of every peer's send and receive, self included (run_group
   * moves that block itself on host-memory implementations; NCCL natively):
   * self first, then sends around the ring one way, receives the other */
  g_autoptr(GArray) ops = g_array_new(FALSE, FALSE, sizeof(PxP2p));
  for (int k = 0; k < n; k++) {
    int p = (c->pos + k) % n, q = (c->pos - k + n) % n;
    if (send_counts[p]) {
      PxP2p x = {TRUE, (char *)send + send_displs[p] * es, send_counts[p], dtype, p, NULL};
      g_array_append_val(ops, x);
    }
    if (recv_counts[q]) {
      PxP2p x = {FALSE, (char *)recv + recv_displs[q] * es, recv_counts[q], dtype, q, NULL};
      g_array_append_val(ops, x);
    }
  }
  if (ops->len == 0) return TRUE;
  Call *k = call_new(c, PX_CALL_GROUP);
  k->n_group = (int)ops->len;
  k->group = g_memdup2(ops->data, sizeof(PxP2p) * ops->len);
  return dispatch(k, stream, error);
}

gboolean px_comm_all_to_all(PxComm *c, const void *send, void *recv, gsize count, PxDType dtype, PxStream *stream,
                            GError **error) {
  int n = c->group->n;
  g_autofree gsize *counts = g_new(gsize, n), *displs = g_new(gsize, n);
  for (int i = 0; i < n; i++) counts[i] = count, displs[i] = (gsize)i * count;
  return px_comm_all_to_all_v(c, send, counts, displs, recv, counts, displs, dtype, stream, error);
}

gboolean px_comm_available(const char *name) {
  if (!g_strcmp0(name, "local") || !g_strcmp0(name, "tcp")) return TRUE;
#ifdef PX_HAVE_MPI
  if (!g_strcmp0(name, "mpi")) return TRUE;
#endif
#ifdef PX_HAVE_NCCL
  if (!g_strcmp0(name, "nccl")) return TRUE;
#endif
  return FALSE;
}

#ifndef PX_HAVE_MPI
PxComm *px_comm_mpi_new(double timeout_s, GError **error) {
  (void)timeout_s;
  fail(error, PX_COMM_ERROR_UNSUPPORTED, "communicator 'mpi' is not built in (install libopenmpi-dev and reconfigure)");
  return NULL;
}

void px_comm_mpi_finalize(void) {}
#endif
