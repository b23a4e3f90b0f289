/* test_store.c — the TCP store of the nccl rendezvous (exec/nccl/store.h), on
 * loopback, CPU only: set / get / wait with deadlines, a client that comes
 * before its server, the rendezvous that hands rank 0's blob to every rank and
 * names the ranks that never came. Waits that must time out are given short
 * deadlines; no duration is asserted. */
#include <glib.h>
#include <string.h>
#include "nccl/store.h"
#include "comm_tcp.h"
#include "nccl/comm_nccl.h"

static PxStoreServer *server_any_port(void) {
  g_autoptr(GError) e = NULL;
  PxStoreServer *srv = px_store_server_new("127.0.0.1", 0, &e);
  g_assert_no_error(e);
  g_assert_cmpint(px_store_server_port(srv), >, 0);
  return srv;
}

static PxStore *client(PxStoreServer *srv, double timeout_s) {
  g_autoptr(GError) e = NULL;
  PxStore *s = px_store_connect("127.0.0.1", px_store_server_port(srv), timeout_s, &e);
  g_assert_no_error(e);
  return s;
}

/* A value set by one client is read by another, bytes for bytes (NULs
 * included); a second set replaces it. */
static void test_set_get(void) {
  g_autoptr(PxStoreServer) srv = server_any_port();
  g_autoptr(PxStore) a = client(srv, 10), b = client(srv, 10);
  g_autoptr(GError) e = NULL;
  const guint8 v[5] = {1, 0, 2, 0, 255};
  g_assert_true(px_store_set(a, "id", v, sizeof v, &e));
  g_autoptr(GBytes) got = px_store_get(b, "id", &e);
  g_assert_no_error(e);
  gsize n = 0;
  const guint8 *p = g_bytes_get_data(got, &n);
  g_assert_cmpmem(p, n, v, sizeof v);
  g_assert_true(px_store_set(b, "id", "new", 3, &e));
  g_autoptr(GBytes) again = px_store_get(a, "id", &e);
  g_assert_no_error(e);
  p = g_bytes_get_data(again, &n);
  g_assert_cmpmem(p, n, "new", 3);
  /* an empty value is a value */
  g_assert_true(px_store_set(a, "empty", NULL, 0, &e));
  g_autoptr(GBytes) empty = px_store_get(b, "empty", &e);
  g_assert_no_error(e);
  g_assert_cmpuint(g_bytes_get_size(empty), ==, 0);
  g_autofree char *where = g_strdup_printf("127.0.0.1:%d", px_store_server_port(srv));
  g_assert_cmpstr(px_store_address(a), ==, where);
}

typedef struct {
  PxStoreServer *srv;
  const char *key;
  gulong delay_us;
} LateSet;

static gpointer late_set(gpointer data) {
  LateSet *l = data;
  g_usleep(l->delay_us);
  g_autoptr(PxStore) s = client(l->srv, 10);
  g_autoptr(GError) e = NULL;
  g_assert_true(px_store_set(s, l->key, "late", 4, &e));
  return NULL;
}

/* A get of a key not yet set waits for it (the set comes from another
 * client after the get was sent). */
static void test_get_waits(void) {
  g_autoptr(PxStoreServer) srv = server_any_port();
  g_autoptr(PxStore) s = client(srv, 30);
  LateSet l = {srv, "later", 100000};
  GThread *t = g_thread_new("late", late_set, &l);
  g_autoptr(GError) e = NULL;
  g_autoptr(GBytes) v = px_store_get(s, "later", &e);
  g_assert_no_error(e);
  gsize n = 0;
  const char *p = g_bytes_get_data(v, &n);
  g_assert_cmpmem(p, n, "late", 4);
  g_thread_join(t);
}

/* A key nobody sets: TIMEOUT naming it, and the client still works. */
static void test_get_timeout(void) {
  g_autoptr(PxStoreServer) srv = server_any_port();
  g_autoptr(PxStore) s = client(srv, 0.2);
  g_autoptr(GError) e = NULL;
  g_assert_null(px_store_get(s, "never", &e));
  g_assert_error(e, PX_STORE_ERROR, PX_STORE_ERROR_TIMEOUT);
  g_autofree char *want = g_strdup_printf("store at 127.0.0.1:%d: key never never set after 0.2 s", px_store_server_port(srv));
  g_assert_cmpstr(e->message, ==, want);
  g_clear_error(&e);
  g_assert_true(px_store_set(s, "k", "v", 1, &e));
  g_autoptr(GBytes) v = px_store_get(s, "k", &e);
  g_assert_no_error(e);
}

/* Waiting for a, b, c with b never set: FALSE, the missing list is {1}, the
 * sentence names b; with all set, TRUE. */
static void test_wait(void) {
  g_autoptr(PxStoreServer) srv = server_any_port();
  g_autoptr(PxStore) s = client(srv, 0.3);
  g_autoptr(GError) e = NULL;
  const char *keys[3] = {"a", "b", "c"};
  g_assert_true(px_store_set(s, "a", "1", 1, &e));
  g_assert_true(px_store_set(s, "c", "1", 1, &e));
  GArray *missing = NULL;
  g_assert_false(px_store_wait(s, keys, 3, &missing, &e));
  g_assert_error(e, PX_STORE_ERROR, PX_STORE_ERROR_TIMEOUT);
  g_assert_nonnull(strstr(e->message, ": b never set after 0.3 s"));
  g_clear_error(&e);
  g_assert_nonnull(missing);
  g_assert_cmpuint(missing->len, ==, 1);
  g_assert_cmpint(g_array_index(missing, int, 0), ==, 1);
  g_array_unref(missing);
  g_assert_true(px_store_set(s, "b", "1", 1, &e));
  g_assert_true(px_store_wait(s, keys, 3, &missing, &e));
  g_assert_no_error(e);
  g_assert_null(missing);
}

typedef struct {
  int port;
  PxStore *s;
  GError *e;
} EarlyClient;

static gpointer early_connect(gpointer data) {
  EarlyClient *c = data;
  c->s = px_store_connect("127.0.0.1", c->port, 20, &c->e);
  return NULL;
}

/* A client that starts before the server keeps trying and gets in once the
 * server listens (rank 0 may start last). */
static void test_connect_before_server(void) {
  int port = px_tcp_free_port();
  g_assert_cmpint(port, >, 0);
  EarlyClient c = {port, NULL, NULL};
  GThread *t = g_thread_new("early", early_connect, &c);
  g_usleep(200000);
  g_autoptr(GError) e = NULL;
  g_autoptr(PxStoreServer) srv = px_store_server_new("127.0.0.1", port, &e);
  g_assert_no_error(e);
  g_thread_join(t);
  g_assert_no_error(c.e);
  g_assert_true(px_store_set(c.s, "x", "y", 1, &e));
  px_store_free(c.s);
}

/* No server: TIMEOUT naming the address; bad addresses: INVALID. */
static void test_connect_errors(void) {
  int port = px_tcp_free_port();
  g_autoptr(GError) e = NULL;
  g_assert_null(px_store_connect("127.0.0.1", port, 0.3, &e));
  g_assert_error(e, PX_STORE_ERROR, PX_STORE_ERROR_TIMEOUT);
  g_autofree char *want = g_strdup_printf("no store at 127.0.0.1:%d after 0.3 s", port);
  g_assert_true(g_str_has_prefix(e->message, want));
  g_clear_error(&e);
  g_assert_null(px_store_connect("127.0.0.1", 0, 1, &e));
  g_assert_error(e, PX_STORE_ERROR, PX_STORE_ERROR_INVALID);
  g_clear_error(&e);
  g_assert_null(px_store_connect("127.0.0.1", 70000, 1, &e));
  g_assert_error(e, PX_STORE_ERROR, PX_STORE_ERROR_INVALID);
  g_clear_error(&e);
  g_assert_null(px_store_connect("127.0.0.1", 29500, 0, &e));
  g_assert_error(e, PX_STORE_ERROR, PX_STORE_ERROR_INVALID);
  g_clear_error(&e);
  g_assert_null(px_store_server_new("127.0.0.1", -1, &e));
  g_assert_error(e, PX_STORE_ERROR, PX_STORE_ERROR_INVALID);
}

static gpointer get_forever(gpointer data) {
  PxStore *s = data;
  GError *e = NULL;
  g_assert_null(px_store_get(s, "never", &e));
  return e;
}

/* The server goes away while a client waits: the client fails with IO
 * instead of waiting for its deadline (60 s). */
static void test_server_gone(void) {
  PxStoreServer *srv = server_any_port();
  g_autoptr(PxStore) s = client(srv, 60);
  GThread *t = g_thread_new("waiter", get_forever, s);
  g_usleep(100000);
  px_store_server_free(srv);
  g_autoptr(GError) e = g_thread_join(t);
  g_assert_error(e, PX_STORE_ERROR, PX_STORE_ERROR_IO);
}

/* ---- the rendezvous ---- */

enum { BLOB = 128 };

typedef struct {
  int port, rank, world;
  double timeout_s;
  guint8 got[BLOB];
  GError *e;
} Rank;

static void blob_of_rank0(guint8 *b) {
  for (int i = 0; i < BLOB; i++) b[i] = (guint8)(i * 37 + 11);
}

static gpointer rank_main(gpointer data) {
  Rank *r = data;
  PxStore *s = px_store_connect("127.0.0.1", r->port, r->timeout_s, &r->e);
  if (!s) return NULL;
  guint8 blob[BLOB];
  blob_of_rank0(blob);
  if (r->rank != 0) memset(blob, 0, sizeof blob); /* only rank 0's is read */
  px_store_rendezvous(s, "nccl/0", r->rank, r->world, blob, BLOB, r->got, &r->e);
  px_store_free(s);
  return NULL;
}

/* 4 ranks meet; each leaves with rank 0's 128 bytes (NCCL's id size). */
static void test_rendezvous(void) {
  g_autoptr(PxStoreServer) srv = server_any_port();
  Rank ranks[4];
  GThread *t[4];
  for (int r = 3; r >= 0; r--) { /* rank 0 last */
    ranks[r] = (Rank){.port = px_store_server_port(srv), .rank = r, .world = 4, .timeout_s = 20};
    t[r] = g_thread_new("rank", rank_main, &ranks[r]);
  }
  guint8 want[BLOB];
  blob_of_rank0(want);
  for (int r = 0; r < 4; r++) {
    g_thread_join(t[r]);
    g_assert_no_error(ranks[r].e);
    g_assert_cmpmem(ranks[r].got, BLOB, want, BLOB);
  }
}

/* Of 4 ranks only 0 and 1 come: rank 0 fails naming ranks 2 and 3, and rank 1
 * fails with rank 0's sentence. */
static void test_rendezvous_missing(void) {
  g_autoptr(PxStoreServer) srv = server_any_port();
  Rank ranks[2];
  GThread *t[2];
  for (int r = 0; r < 2; r++) {
    ranks[r] = (Rank){.port = px_store_server_port(srv), .rank = r, .world = 4, .timeout_s = 1};
    t[r] = g_thread_new("rank", rank_main, &ranks[r]);
  }
  for (int r = 0; r < 2; r++) g_thread_join(t[r]);
  g_autofree char *where = g_strdup_printf("rendezvous at 127.0.0.1:%d: ranks 2, 3 never came after 1 s",
                                           px_store_server_port(srv));
  g_assert_error(ranks[0].e, PX_STORE_ERROR, PX_STORE_ERROR_TIMEOUT);
  g_assert_cmpstr(ranks[0].e->message, ==, where);
  g_assert_error(ranks[1].e, PX_STORE_ERROR, PX_STORE_ERROR_REMOTE);
  g_assert_cmpstr(ranks[1].e->message, ==, where);
  g_clear_error(&ranks[0].e);
  g_clear_error(&ranks[1].e);
}

static void test_rank_list(void) {
  int r[20];
  for (int i = 0; i < 20; i++) r[i] = i + 2;
  g_autofree char *one = px_store_rank_list(r, 1), *two = px_store_rank_list(r, 2), *many = px_store_rank_list(r, 18);
  g_assert_cmpstr(one, ==, "rank 2");
  g_assert_cmpstr(two, ==, "ranks 2, 3");
  g_assert_cmpstr(many, ==, "ranks 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17 and 2 more");
}

/* How the unique id travels (docs/launch.md): one rank needs none; mpirun
 * (with the mpi communicator built) MPI; srun MPI unless MASTER_ADDR is set;
 * otherwise the store at MASTER_ADDR, and without one the rank is refused. */
static void test_bootstrap_rule(void) {
  PxLaunchEnv e = {.rank = 1, .world = 4, .local_rank = 1, .master_addr = NULL, .master_port = -1};
  e.source = PX_LAUNCH_OMPI;
  g_assert_cmpint(px_nccl_bootstrap(&e, TRUE), ==, PX_NCCL_BOOT_MPI);
  g_assert_cmpint(px_nccl_bootstrap(&e, FALSE), ==, PX_NCCL_BOOT_INVALID);
  e.source = PX_LAUNCH_SLURM;
  g_assert_cmpint(px_nccl_bootstrap(&e, TRUE), ==, PX_NCCL_BOOT_MPI);
  e.master_addr = "10.0.0.1";
  g_assert_cmpint(px_nccl_bootstrap(&e, TRUE), ==, PX_NCCL_BOOT_STORE);
  e.source = PX_LAUNCH_OMPI; /* mpirun wins over MASTER_ADDR when MPI is there */
  g_assert_cmpint(px_nccl_bootstrap(&e, TRUE), ==, PX_NCCL_BOOT_MPI);
  g_assert_cmpint(px_nccl_bootstrap(&e, FALSE), ==, PX_NCCL_BOOT_STORE);
  e.source = PX_LAUNCH_TORCHRUN;
  g_assert_cmpint(px_nccl_bootstrap(&e, TRUE), ==, PX_NCCL_BOOT_STORE);
  e.master_addr = NULL;
  g_assert_cmpint(px_nccl_bootstrap(&e, TRUE), ==, PX_NCCL_BOOT_INVALID);
  e.world = 1, e.rank = 0, e.source = PX_LAUNCH_DEFAULT;
  g_assert_cmpint(px_nccl_bootstrap(&e, FALSE), ==, PX_NCCL_BOOT_NONE);
}

/* The watchdog's deadline counts from when the stream reached the call, on
 * a fake clock (µs) with fake event states: queued at t = 0 behind 50 s of
 * compute, started at t = 50 s, deadline 60 s. Counted from the queueing (as
 * before) it would expire at t = 60 s; it must not until t = 110 s. */
static void test_watch_deadline(void) {
  const gint64 S = G_USEC_PER_SEC, timeout = 60 * S;
  PxNcclWatch w;
  px_nccl_watch_init(&w, 0);
  /* in the queue: no deadline runs, however long */
  g_assert_cmpint(px_nccl_watch_poll(&w, FALSE, FALSE, 10 * S, timeout), ==, PX_NCCL_WATCH_QUEUED);
  g_assert_cmpint(px_nccl_watch_poll(&w, FALSE, FALSE, 49 * S, timeout), ==, PX_NCCL_WATCH_QUEUED);
  g_assert_cmpint(w.started_us, ==, -1);
  /* the stream gets there at t = 50 s */
  g_assert_cmpint(px_nccl_watch_poll(&w, TRUE, FALSE, 50 * S, timeout), ==, PX_NCCL_WATCH_RUNNING);
  g_assert_cmpint(w.started_us, ==, 50 * S);
  /* later polls keep the first time seen */
  g_assert_cmpint(px_nccl_watch_poll(&w, TRUE, FALSE, 61 * S, timeout), ==, PX_NCCL_WATCH_RUNNING);
  g_assert_cmpint(px_nccl_watch_poll(&w, TRUE, FALSE, 100 * S, timeout), ==, PX_NCCL_WATCH_RUNNING);
  g_assert_cmpint(px_nccl_watch_poll(&w, TRUE, FALSE, 110 * S, timeout), ==, PX_NCCL_WATCH_RUNNING);
  g_assert_cmpint(w.started_us, ==, 50 * S);
  g_assert_cmpint(px_nccl_watch_poll(&w, TRUE, FALSE, 111 * S, timeout), ==, PX_NCCL_WATCH_EXPIRED);
  g_autofree char *why = px_nccl_watch_reason(&w, "rank 3: all_reduce on dp[1,3]", 60);
  g_assert_cmpstr(why, ==, "rank 3: all_reduce on dp[1,3]: not complete after 60 s (a peer never arrived; its "
                           "stream reached it 50.000 s after it was queued)");
  /* complete: done whatever the clock says */
  g_assert_cmpint(px_nccl_watch_poll(&w, TRUE, TRUE, 500 * S, timeout), ==, PX_NCCL_WATCH_DONE);
  /* a call that starts and ends between two polls is done at the first */
  PxNcclWatch v;
  px_nccl_watch_init(&v, 7 * S);
  g_assert_cmpint(px_nccl_watch_poll(&v, TRUE, TRUE, 300 * S, timeout), ==, PX_NCCL_WATCH_DONE);
  /* a call reached at once is timed from its queueing, as before */
  px_nccl_watch_init(&v, 0);
  g_assert_cmpint(px_nccl_watch_poll(&v, TRUE, FALSE, 0, timeout), ==, PX_NCCL_WATCH_RUNNING);
  g_assert_cmpint(px_nccl_watch_poll(&v, TRUE, FALSE, 61 * S, timeout), ==, PX_NCCL_WATCH_EXPIRED);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/store/set-get", test_set_get);
  g_test_add_func("/store/get-waits", test_get_waits);
  g_test_add_func("/store/get-timeout", test_get_timeout);
  g_test_add_func("/store/wait", test_wait);
  g_test_add_func("/store/connect-before-server", test_connect_before_server);
  g_test_add_func("/store/connect-errors", test_connect_errors);
  g_test_add_func("/store/server-gone", test_server_gone);
  g_test_add_func("/store/rendezvous", test_rendezvous);
  g_test_add_func("/store/rendezvous-missing", test_rendezvous_missing);
  g_test_add_func("/store/rank-list", test_rank_list);
  g_test_add_func("/nccl/bootstrap-rule", test_bootstrap_rule);
  g_test_add_func("/nccl/watch-deadline", test_watch_deadline);
  return g_test_run();
}
