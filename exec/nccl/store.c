/* store.c — the TCP key-value store of the nccl rendezvous (see store.h):
 * a listening GSocket with an accepting thread and a thread per connection on
 * the server side; one blocking GSocketConnection per client. */
#include "store.h"
#include "check.h"
#include <gio/gio.h>
#include <math.h>
#include <string.h>

G_DEFINE_QUARK(px-store-error-quark, px_store_error)

#define fail(error, code, ...) px_fail((error), PX_STORE_ERROR, (code), __VA_ARGS__)

enum { OP_SET = 1, OP_GET, OP_WAIT };
#define MAX_KEY 4096u
#define MAX_VALUE (64u << 20)
#define MAX_KEYS (1u << 20)

/* ---- the byte format ---- */

static void put_u32(GByteArray *b, guint32 x) {
  guint8 p[4] = {(guint8)x, (guint8)(x >> 8), (guint8)(x >> 16), (guint8)(x >> 24)};
  g_byte_array_append(b, p, 4);
}

static void put_str(GByteArray *b, const void *s, gsize len) {
  put_u32(b, (guint32)len);
  if (len) g_byte_array_append(b, s, (guint)len);
}

static gboolean read_exact(GInputStream *in, void *buf, gsize n, GCancellable *cancel, GError **error) {
  gsize got = 0;
  if (!g_input_stream_read_all(in, buf, n, &got, cancel, error)) return FALSE;
  if (got == n) return TRUE;
  g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_CLOSED, "connection closed");
  return FALSE;
}

static gboolean read_u32(GInputStream *in, guint32 *x, GCancellable *cancel, GError **error) {
  guint8 p[4];
  if (!read_exact(in, p, 4, cancel, error)) return FALSE;
  *x = (guint32)p[0] | (guint32)p[1] << 8 | (guint32)p[2] << 16 | (guint32)p[3] << 24;
  return TRUE;
}

/* A length-prefixed string of at most max bytes (NUL-terminated for keys). */
static char *read_str(GInputStream *in, guint32 max, gsize *len, GCancellable *cancel, GError **error) {
  guint32 n;
  if (!read_u32(in, &n, cancel, error)) return NULL;
  if (n > max) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "a string of %u bytes (at most %u)", n, max);
    return NULL;
  }
  char *s = g_malloc(n + 1);
  s[n] = 0;
  if (n && !read_exact(in, s, n, cancel, error)) {
    g_free(s);
    return NULL;
  }
  if (len) *len = n;
  return s;
}

/* ---- the server ---- */

struct _PxStoreServer {
  GSocket *listener;
  int port;
  GCancellable *cancel;
  GMutex lock;
  GCond cond;          /* a key was set, or quit */
  GHashTable *kv;      /* key -> GBytes */
  gboolean quit;
  GThread *acceptor;
  GPtrArray *conns;    /* Conn, under lock */
};

typedef struct {
  PxStoreServer *srv;
  GSocketConnection *conn;
  GThread *thread;
} Conn;

/* Wait (lock held) until every key is set, the deadline or quit; the number missing. */
static guint32 missing_keys(PxStoreServer *s, char **keys, guint32 n, gint64 deadline, GArray *missing) {
  for (;;) {
    g_array_set_size(missing, 0);
    for (guint32 i = 0; i < n; i++)
      if (!g_hash_table_contains(s->kv, keys[i])) g_array_append_val(missing, i);
    if (missing->len == 0 || s->quit || !g_cond_wait_until(&s->cond, &s->lock, deadline)) break;
  }
  if (missing->len) { /* the deadline or quit: one last look */
    guint k = 0;
    for (guint i = 0; i < missing->len; i++) {
      guint32 j = g_array_index(missing, guint32, i);
      if (!g_hash_table_contains(s->kv, keys[j])) g_array_index(missing, guint32, k++) = j;
    }
    g_array_set_size(missing, k);
  }
  return missing->len;
}

/* One request of a client; FALSE when the connection is done. */
static gboolean serve_one(PxStoreServer *s, GInputStream *in, GOutputStream *out) {
  GError *e = NULL;
  guint32 op;
  if (!read_u32(in, &op, s->cancel, &e)) {
    g_clear_error(&e);
    return FALSE;
  }
  g_autoptr(GByteArray) reply = g_byte_array_new();
  gboolean ok = TRUE;
  if (op == OP_SET) {
    g_autofree char *key = read_str(in, MAX_KEY, NULL, s->cancel, &e);
    gsize vlen = 0;
    g_autofree char *value = key ? read_str(in, MAX_VALUE, &vlen, s->cancel, &e) : NULL;
    if (!value) ok = FALSE;
    else {
      g_mutex_lock(&s->lock);
      g_hash_table_replace(s->kv, g_steal_pointer(&key), g_bytes_new(value, vlen));
      g_cond_broadcast(&s->cond);
      g_mutex_unlock(&s->lock);
      put_u32(reply, 0);
    }
  } else if (op == OP_GET || op == OP_WAIT) {
    guint32 n = 1, ms = 0;
    if (op == OP_WAIT && (!read_u32(in, &n, s->cancel, &e) || n > MAX_KEYS)) n = 0, ok = FALSE;
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);
    for (guint32 i = 0; ok && i < n; i++) {
      char *k = read_str(in, MAX_KEY, NULL, s->cancel, &e);
      if (!k) ok = FALSE;
      else g_ptr_array_add(keys, k);
    }
    if (ok && !read_u32(in, &ms, s->cancel, &e)) ok = FALSE;
    if (ok) {
      g_autoptr(GArray) missing = g_array_new(FALSE, FALSE, sizeof(guint32));
      gint64 deadline = g_get_monotonic_time() + (gint64)ms * 1000;
      g_mutex_lock(&s->lock);
      guint32 m = missing_keys(s, (char **)keys->pdata, n, deadline, missing);
      g_autoptr(GBytes) value = op == OP_GET && !m ? g_bytes_ref(g_hash_table_lookup(s->kv, keys->pdata[0])) : NULL;
      gboolean quit = s->quit;
      g_mutex_unlock(&s->lock);
      if (quit) { /* the server is going away: no answer, the connection closes */
        ok = FALSE;
      } else if (op == OP_GET) {
        put_u32(reply, m ? 1 : 0);
        if (value) put_str(reply, g_bytes_get_data(value, NULL), g_bytes_get_size(value));
      } else {
        put_u32(reply, m);
        for (guint32 i = 0; i < m; i++) put_u32(reply, g_array_index(missing, guint32, i));
      }
    }
  } else {
    ok = FALSE; /* not our protocol: drop the connection */
  }
  g_clear_error(&e);
  return ok && g_output_stream_write_all(out, reply->data, reply->len, NULL, s->cancel, NULL);
}

static gpointer conn_main(gpointer data) {
  Conn *c = data;
  GInputStream *in = g_io_stream_get_input_stream(G_IO_STREAM(c->conn));
  GOutputStream *out = g_io_stream_get_output_stream(G_IO_STREAM(c->conn));
  while (serve_one(c->srv, in, out)) {
  }
  g_io_stream_close(G_IO_STREAM(c->conn), NULL, NULL);
  return NULL;
}

static gpointer accept_main(gpointer data) {
  PxStoreServer *s = data;
  for (;;) {
    GError *e = NULL;
    GSocket *sock = g_socket_accept(s->listener, s->cancel, &e);
    if (!sock) {
      gboolean stop = g_cancellable_is_cancelled(s->cancel);
      g_clear_error(&e);
      if (stop) return NULL;
      g_usleep(10000); /* e.g. out of descriptors: try again */
      continue;
    }
    g_socket_set_blocking(sock, TRUE);
    Conn *c = g_new0(Conn, 1);
    c->srv = s;
    c->conn = g_socket_connection_factory_create_connection(sock);
    g_object_unref(sock);
    g_mutex_lock(&s->lock);
    if (s->quit) {
      g_mutex_unlock(&s->lock);
      g_object_unref(c->conn);
      g_free(c);
      return NULL;
    }
    c->thread = g_thread_new("px-store-conn", conn_main, c);
    g_ptr_array_add(s->conns, c);
    g_mutex_unlock(&s->lock);
  }
}

static GInetAddress *resolve_one(const char *addr, GError **error) {
  GInetAddress *ia = g_inet_address_new_from_string(addr);
  if (ia) return ia;
  GError *e = NULL;
  g_autoptr(GResolver) resolver = g_resolver_get_default();
  GList *list = g_resolver_lookup_by_name(resolver, addr, NULL, &e);
  if (!list) {
    fail(error, PX_STORE_ERROR_INVALID, "store address '%s': %s", addr, e->message);
    g_error_free(e);
    return NULL;
  }
  ia = g_object_ref(list->data);
  g_resolver_free_addresses(list);
  return ia;
}

PxStoreServer *px_store_server_new(const char *addr, int port, GError **error) {
  if (port < 0 || port > 65535) {
    fail(error, PX_STORE_ERROR_INVALID, "store port %d is not in 0..65535", port);
    return NULL;
  }
  g_autoptr(GInetAddress) ia = resolve_one(addr, error);
  if (!ia) return NULL;
  g_autoptr(GSocketAddress) sa = g_inet_socket_address_new(ia, (guint16)port);
  GError *e = NULL;
  g_autoptr(GSocket) ls = g_socket_new(g_inet_address_get_family(ia), G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, &e);
  if (!ls || !g_socket_bind(ls, sa, TRUE, &e) || !g_socket_listen(ls, &e)) {
    fail(error, PX_STORE_ERROR_IO, "store at %s:%d: cannot listen: %s", addr, port, e->message);
    g_error_free(e);
    return NULL;
  }
  g_autoptr(GSocketAddress) local = g_socket_get_local_address(ls, NULL);
  PxStoreServer *s = g_new0(PxStoreServer, 1);
  s->listener = g_steal_pointer(&ls);
  s->port = local ? g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(local)) : port;
  s->cancel = g_cancellable_new();
  g_mutex_init(&s->lock);
  g_cond_init(&s->cond);
  s->kv = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_bytes_unref);
  s->conns = g_ptr_array_new();
  s->acceptor = g_thread_new("px-store-accept", accept_main, s);
  return s;
}

int px_store_server_port(const PxStoreServer *s) { return s->port; }

void px_store_server_free(PxStoreServer *s) {
  if (!s) return;
  g_mutex_lock(&s->lock);
  s->quit = TRUE;
  g_cond_broadcast(&s->cond);
  g_mutex_unlock(&s->lock);
  g_cancellable_cancel(s->cancel);
  g_thread_join(s->acceptor);
  /* the acceptor is gone: conns no longer grows */
  for (guint i = 0; i < s->conns->len; i++) {
    Conn *c = s->conns->pdata[i];
    g_thread_join(c->thread);
    g_object_unref(c->conn);
    g_free(c);
  }
  g_ptr_array_unref(s->conns);
  g_socket_close(s->listener, NULL);
  g_object_unref(s->listener);
  g_object_unref(s->cancel);
  g_hash_table_unref(s->kv);
  g_mutex_clear(&s->lock);
  g_cond_clear(&s->cond);
  g_free(s);
}

/* ---- the client ---- */

struct _PxStore {
  GSocketConnection *conn;
  char *where;
  gint64 timeout_us;
  GMutex lock; /* one request at a time */
};

const char *px_store_address(const PxStore *s) { return s->where; }

PxStore *px_store_connect(const char *addr, int port, double timeout_s, GError **error) {
  if (!addr || !*addr || port < 1 || port > 65535) {
    fail(error, PX_STORE_ERROR_INVALID, "store address %s:%d is not a host and a port in 1..65535", addr ? addr : "(none)",
         port);
    return NULL;
  }
  if (!(timeout_s > 0) || !isfinite(timeout_s)) {
    fail(error, PX_STORE_ERROR_INVALID, "store at %s:%d: the deadline must be a number of seconds > 0", addr, port);
    return NULL;
  }
  gint64 deadline = g_get_monotonic_time() + (gint64)(timeout_s * G_USEC_PER_SEC);
  g_autoptr(GSocketClient) client = g_socket_client_new();
  g_autoptr(GSocketConnectable) to = g_network_address_new(addr, (guint16)port);
  GSocketConnection *conn = NULL;
  g_autoptr(GError) last = NULL;
  for (;;) {
    gint64 left = deadline - g_get_monotonic_time();
    g_socket_client_set_timeout(client, (guint)MAX(1, (left + G_USEC_PER_SEC - 1) / G_USEC_PER_SEC));
    g_clear_error(&last);
    conn = g_socket_client_connect(client, to, NULL, &last);
    if (conn) break;
    if (last->domain == G_RESOLVER_ERROR) {
      fail(error, PX_STORE_ERROR_INVALID, "store at %s:%d: %s", addr, port, last->message);
      return NULL;
    }
    if (g_get_monotonic_time() + 50000 > deadline) {
      fail(error, PX_STORE_ERROR_TIMEOUT, "no store at %s:%d after %g s (rank 0 never came, or the address is wrong): %s",
           addr, port, timeout_s, last->message);
      return NULL;
    }
    g_usleep(50000); /* nobody listens yet: rank 0 may start later */
  }
  GSocket *sock = g_socket_connection_get_socket(conn);
  g_socket_set_blocking(sock, TRUE);
  g_socket_set_keepalive(sock, TRUE);
  /* a dead server, not a slow key: the server answers every wait by its deadline */
  g_socket_set_timeout(sock, (guint)ceil(timeout_s) + 10);
  PxStore *s = g_new0(PxStore, 1);
  s->conn = conn;
  s->where = strchr(addr, ':') ? g_strdup_printf("[%s]:%d", addr, port) : g_strdup_printf("%s:%d", addr, port);
  s->timeout_us = (gint64)(timeout_s * G_USEC_PER_SEC);
  g_mutex_init(&s->lock);
  return s;
}

void px_store_free(PxStore *s) {
  if (!s) return;
  g_io_stream_close(G_IO_STREAM(s->conn), NULL, NULL);
  g_object_unref(s->conn);
  g_free(s->where);
  g_mutex_clear(&s->lock);
  g_free(s);
}

static gboolean io_failed(PxStore *s, const char *what, GError *e, GError **error) {
  fail(error, PX_STORE_ERROR_IO, "store at %s: %s: %s", s->where, what, e ? e->message : "connection closed");
  g_clear_error(&e);
  return FALSE;
}

static gboolean check_key(PxStore *s, const char *key, GError **error) {
  if (key && *key && strlen(key) <= MAX_KEY) return TRUE;
  return fail(error, PX_STORE_ERROR_INVALID, "store at %s: a key must have 1..%u bytes", s->where, MAX_KEY);
}

/* Send a request and read the u32 that starts its reply (lock held). */
static gboolean request(PxStore *s, GByteArray *req, const char *what, guint32 *status, GError **error) {
  GError *e = NULL;
  GOutputStream *out = g_io_stream_get_output_stream(G_IO_STREAM(s->conn));
  GInputStream *in = g_io_stream_get_input_stream(G_IO_STREAM(s->conn));
  if (!g_output_stream_write_all(out, req->data, req->len, NULL, NULL, &e) || !read_u32(in, status, NULL, &e))
    return io_failed(s, what, e, error);
  return TRUE;
}

gboolean px_store_set(PxStore *s, const char *key, const void *value, gsize len, GError **error) {
  if (!check_key(s, key, error)) return FALSE;
  if (len > MAX_VALUE) return fail(error, PX_STORE_ERROR_INVALID, "store at %s: a value of %" G_GSIZE_FORMAT " bytes (at most %u)", s->where, len, MAX_VALUE);
  g_autoptr(GByteArray) req = g_byte_array_new();
  put_u32(req, OP_SET);
  put_str(req, key, strlen(key));
  put_str(req, value, len);
  g_autofree char *what = g_strdup_printf("set %s", key);
  guint32 st;
  g_mutex_lock(&s->lock);
  gboolean ok = request(s, req, what, &st, error);
  g_mutex_unlock(&s->lock);
  return ok;
}

static guint32 ms_left(gint64 deadline) {
  gint64 left = deadline - g_get_monotonic_time();
  return left <= 0 ? 0 : (guint32)MIN((left + 999) / 1000, (gint64)G_MAXUINT32);
}

/* GET with a wait of timeout_us. */
static GBytes *get_within(PxStore *s, const char *key, gint64 timeout_us, GError **error) {
  if (!check_key(s, key, error)) return NULL;
  g_autoptr(GByteArray) req = g_byte_array_new();
  put_u32(req, OP_GET);
  put_str(req, key, strlen(key));
  put_u32(req, ms_left(g_get_monotonic_time() + timeout_us));
  g_autofree char *what = g_strdup_printf("get %s", key);
  guint32 st = 0;
  GBytes *value = NULL;
  g_mutex_lock(&s->lock);
  if (request(s, req, what, &st, error)) {
    if (st == 0) {
      GError *e = NULL;
      gsize len = 0;
      char *v = read_str(g_io_stream_get_input_stream(G_IO_STREAM(s->conn)), MAX_VALUE, &len, NULL, &e);
      if (v) value = g_bytes_new_take(v, len);
      else io_failed(s, what, e, error);
    } else {
      fail(error, PX_STORE_ERROR_TIMEOUT, "store at %s: key %s never set after %g s", s->where, key, timeout_us / 1e6);
    }
  }
  g_mutex_unlock(&s->lock);
  return value;
}

GBytes *px_store_get(PxStore *s, const char *key, GError **error) { return get_within(s, key, s->timeout_us, error); }

gboolean px_store_wait(PxStore *s, const char *const *keys, int n, GArray **missing, GError **error) {
  if (missing) *missing = NULL;
  if (n < 0 || (guint)n > MAX_KEYS) return fail(error, PX_STORE_ERROR_INVALID, "store at %s: %d keys to wait for", s->where, n);
  g_autoptr(GByteArray) req = g_byte_array_new();
  put_u32(req, OP_WAIT);
  put_u32(req, (guint32)n);
  for (int i = 0; i < n; i++) {
    if (!check_key(s, keys[i], error)) return FALSE;
    put_str(req, keys[i], strlen(keys[i]));
  }
  put_u32(req, ms_left(g_get_monotonic_time() + s->timeout_us));
  guint32 m = 0;
  g_autoptr(GArray) idx = g_array_new(FALSE, FALSE, sizeof(int));
  g_mutex_lock(&s->lock);
  gboolean ok = request(s, req, "wait", &m, error);
  GError *e = NULL;
  for (guint32 i = 0; ok && i < m; i++) {
    guint32 j;
    if (!read_u32(g_io_stream_get_input_stream(G_IO_STREAM(s->conn)), &j, NULL, &e) || j >= (guint32)n)
      ok = io_failed(s, "wait", e, error), e = NULL;
    else g_array_append_val(idx, j);
  }
  g_mutex_unlock(&s->lock);
  if (!ok) return FALSE;
  if (m == 0) return TRUE;
  g_autoptr(GString) names = g_string_new(NULL);
  for (guint i = 0; i < MIN(idx->len, 16u); i++) g_string_append_printf(names, i ? ", %s" : "%s", keys[g_array_index(idx, int, i)]);
  if (idx->len > 16) g_string_append_printf(names, " and %u more", idx->len - 16);
  fail(error, PX_STORE_ERROR_TIMEOUT, "store at %s: %s never set after %g s", s->where, names->str, s->timeout_us / 1e6);
  if (missing) *missing = g_steal_pointer(&idx);
  return FALSE;
}

char *px_store_rank_list(const int *ranks, int n) {
  GString *s = g_string_new(n == 1 ? "rank " : "ranks ");
  for (int i = 0; i < MIN(n, 16); i++) g_string_append_printf(s, i ? ", %d" : "%d", ranks[i]);
  if (n > 16) g_string_append_printf(s, " and %d more", n - 16);
  return g_string_free(s, FALSE);
}

/* The blob key's value: a status byte (0: the blob follows; 1: rank 0's sentence follows). */
gboolean px_store_rendezvous(PxStore *s, const char *prefix, int rank, int world, const void *blob, gsize len,
                             void *out, GError **error) {
  if (world < 1 || rank < 0 || rank >= world)
    return fail(error, PX_STORE_ERROR_INVALID, "rendezvous at %s: rank %d of %d", s->where, rank, world);
  g_autofree char *mine = g_strdup_printf("%s/rank/%d", prefix, rank);
  g_autofree char *blob_key = g_strdup_printf("%s/blob", prefix);
  if (!px_store_set(s, mine, "", 0, error)) return FALSE;
  if (rank == 0) {
    g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func(g_free);
    for (int r = 0; r < world; r++) g_ptr_array_add(keys, g_strdup_printf("%s/rank/%d", prefix, r));
    GArray *missing = NULL;
    GError *e = NULL;
    g_autoptr(GByteArray) v = g_byte_array_new();
    if (!px_store_wait(s, (const char *const *)keys->pdata, world, &missing, &e)) {
      if (!missing) {
        g_propagate_error(error, e);
        return FALSE;
      }
      g_clear_error(&e);
      g_autofree char *who = px_store_rank_list((const int *)(void *)missing->data, (int)missing->len);
      g_autofree char *sentence = g_strdup_printf("%s never came after %g s", who, s->timeout_us / 1e6);
      g_array_unref(missing);
      guint8 one = 1;
      g_byte_array_append(v, &one, 1);
      g_byte_array_append(v, (const guint8 *)sentence, (guint)strlen(sentence));
      px_store_set(s, blob_key, v->data, v->len, NULL); /* best effort: tell the ranks that are there */
      return fail(error, PX_STORE_ERROR_TIMEOUT, "rendezvous at %s: %s", s->where, sentence);
    }
    guint8 zero = 0;
    g_byte_array_append(v, &zero, 1);
    if (len) g_byte_array_append(v, blob, (guint)len);
    if (!px_store_set(s, blob_key, v->data, v->len, error)) return FALSE;
    if (len) memcpy(out, blob, len);
    return TRUE;
  }
  /* rank 0's deadline started before this rank connected: wait a little longer, so that its answer arrives */
  gint64 grace = MIN(s->timeout_us, 2 * G_USEC_PER_SEC);
  GError *e = NULL;
  g_autoptr(GBytes) v = get_within(s, blob_key, s->timeout_us + grace, &e);
  if (!v) {
    if (g_error_matches(e, PX_STORE_ERROR, PX_STORE_ERROR_TIMEOUT)) {
      g_clear_error(&e);
      return fail(error, PX_STORE_ERROR_TIMEOUT, "rendezvous at %s: rank 0 never published after %g s", s->where,
                  (s->timeout_us + grace) / 1e6);
    }
    g_propagate_error(error, e);
    return FALSE;
  }
  gsize n = 0;
  const guint8 *p = g_bytes_get_data(v, &n);
  if (n >= 1 && p[0] == 1)
    return fail(error, PX_STORE_ERROR_REMOTE, "rendezvous at %s: %.*s", s->where, (int)(n - 1), (const char *)p + 1);
  if (n != len + 1 || p[0] != 0)
    return fail(error, PX_STORE_ERROR_IO, "rendezvous at %s: rank 0 published %" G_GSIZE_FORMAT " bytes, not %" G_GSIZE_FORMAT,
                s->where, n ? n - 1 : 0, len);
  if (len) memcpy(out, p + 1, len);
  return TRUE;
}
