/* comm.c — groups, and the argument checks of every communicator call before
 * it is dispatched through the implementation's table. */
#include "comm_impl.h"
#include <string.h>

G_DEFINE_QUARK(px-comm-error-quark, px_comm_error)

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

int px_comm_rank(const PxComm *c) { return c->rank; }
int px_comm_world(const PxComm *c) { return c->world; }
const char *px_comm_name(const PxComm *c) { return c->ops->name; }

void px_comm_free(PxComm *c) {
  if (!c) return;
  if (c->ops->free) c->ops->free(c);
  g_free(c);
}

/* The caller's position in g, after checking that g is a valid group of this world. */
static int group_pos(PxComm *c, const char *op, const PxGroup *g, GError **error) {
  g_autofree char *desc = g ? px_group_describe(g) : g_strdup("(none)");
  if (!g || g->n < 1) {
    g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_INVALID, "%s on group %s: empty group", op, desc);
    return -1;
  }
  for (int i = 0; i < g->n; i++) {
    if (g->ranks[i] < 0 || g->ranks[i] >= c->world) {
      g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_INVALID,
                  "%s on group %s: rank %d outside the world of %d", op, desc, g->ranks[i], c->world);
      return -1;
    }
    for (int j = 0; j < i; j++)
      if (g->ranks[j] == g->ranks[i]) {
        g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_INVALID,
                    "%s on group %s: rank %d appears twice", op, desc, g->ranks[i]);
        return -1;
      }
  }
  int pos = px_group_index(g, c->rank);
  if (pos < 0)
    g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_INVALID, "%s on group %s: rank %d is not in it",
                op, desc, c->rank);
  return pos;
}

static gboolean reducible(const char *op, PxDType dt, GError **error) {
  if (dt == PX_DTYPE_F32 || dt == PX_DTYPE_F64 || dt == PX_DTYPE_I32) return TRUE;
  g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_INVALID, "%s: dtype %d cannot be summed", op, dt);
  return FALSE;
}

gboolean px_comm_all_reduce(PxComm *c, const PxGroup *g, void *buf, gsize count, PxDType dtype,
                            GError **error) {
  int pos = group_pos(c, "all_reduce", g, error);
  return pos >= 0 && reducible("all_reduce", dtype, error) &&
         c->ops->all_reduce(c, g, pos, buf, count, dtype, error);
}

gboolean px_comm_reduce_scatter(PxComm *c, const PxGroup *g, const void *send, void *recv,
                                gsize count, PxDType dtype, GError **error) {
  int pos = group_pos(c, "reduce_scatter", g, error);
  return pos >= 0 && reducible("reduce_scatter", dtype, error) &&
         c->ops->reduce_scatter(c, g, pos, send, recv, count, dtype, error);
}

gboolean px_comm_all_gather(PxComm *c, const PxGroup *g, const void *send, void *recv, gsize count,
                            PxDType dtype, GError **error) {
  int pos = group_pos(c, "all_gather", g, error);
  return pos >= 0 && c->ops->all_gather(c, g, pos, send, recv, count, dtype, error);
}

gboolean px_comm_broadcast(PxComm *c, const PxGroup *g, void *buf, gsize count, PxDType dtype,
                           int root, GError **error) {
  int pos = group_pos(c, "broadcast", g, error);
  if (pos < 0) return FALSE;
  int root_pos = px_group_index(g, root);
  if (root_pos < 0) {
    g_autofree char *desc = px_group_describe(g);
    g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_INVALID,
                "broadcast on group %s: root %d is not in it", desc, root);
    return FALSE;
  }
  return c->ops->broadcast(c, g, pos, buf, count, dtype, root_pos, error);
}

static gboolean peer_ok(PxComm *c, const char *op, int peer, GError **error) {
  if (peer >= 0 && peer < c->world && peer != c->rank) return TRUE;
  g_set_error(error, PX_COMM_ERROR, PX_COMM_ERROR_INVALID, "%s on rank %d: bad peer %d (world %d)",
              op, c->rank, peer, c->world);
  return FALSE;
}

gboolean px_comm_send(PxComm *c, const void *buf, gsize count, PxDType dtype, int peer, int tag,
                      GError **error) {
  return peer_ok(c, "send", peer, error) && c->ops->send(c, buf, count, dtype, peer, tag, error);
}

gboolean px_comm_recv(PxComm *c, void *buf, gsize count, PxDType dtype, int peer, int tag,
                      GError **error) {
  return peer_ok(c, "recv", peer, error) && c->ops->recv(c, buf, count, dtype, peer, tag, error);
}

gboolean px_comm_barrier(PxComm *c, const PxGroup *g, GError **error) {
  int pos = group_pos(c, "barrier", g, error);
  return pos >= 0 && c->ops->barrier(c, g, pos, error);
}
