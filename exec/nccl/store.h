/* store.h — a small key-value store over TCP (GIO sockets), PyTorch's
 * TCPStore in miniature: the rendezvous of the `nccl` communicator when it is
 * not launched under MPI (docs/launch.md).
 *
 * One process (rank 0) runs the server at MASTER_ADDR:MASTER_PORT; every rank
 * (rank 0 too) connects to it as a client. A client sets keys to byte
 * strings, gets a key (waiting until some client sets it) and waits for a set
 * of keys; every wait is bounded by the client's deadline, and a wait that
 * times out says which keys never came. The server keeps the keys in memory
 * for as long as it runs; a key set twice keeps the newer value.
 *
 * px_store_rendezvous is the exchange the communicator needs: every rank
 * checks in, rank 0 waits for all of them and publishes a blob (NCCL's unique
 * id), and every rank leaves with it — or with one sentence naming the ranks
 * that never came, the same on every rank that is still there.
 *
 * Wire format (little-endian): a request is a u32 op followed by its fields,
 * strings as u32 length + bytes; SET key value -> u32 0; GET key timeout_ms
 * -> u32 status (0: found, then u32 length + value; 1: timed out); WAIT n
 * keys timeout_ms -> u32 m, then the m indices of the keys still missing. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

#define PX_STORE_ERROR (px_store_error_quark())
GQuark px_store_error_quark(void);
typedef enum {
  PX_STORE_ERROR_INVALID, /* a bad address, key or value */
  PX_STORE_ERROR_TIMEOUT, /* the server, a key or a rank did not come in time */
  PX_STORE_ERROR_IO,      /* the connection failed or the peer spoke something else */
  PX_STORE_ERROR_REMOTE,  /* rank 0 failed the rendezvous and said why */
} PxStoreError;

typedef struct _PxStoreServer PxStoreServer;
typedef struct _PxStore PxStore;

/* A server listening on addr:port (an IP address or a host name; port 0: the
 * OS picks one, px_store_server_port tells which), served by a thread per
 * connection until freed. */
PxStoreServer *px_store_server_new(const char *addr, int port, GError **error);
int px_store_server_port(const PxStoreServer *s);
/* Closes every connection; clients waiting on it fail with PX_STORE_ERROR_IO. */
void px_store_server_free(PxStoreServer *s);

/* A client of the server at addr:port, retrying while nobody listens there
 * (the server may start later) until timeout_s; timeout_s (> 0) is also the
 * deadline of every later wait. */
PxStore *px_store_connect(const char *addr, int port, double timeout_s, GError **error);
void px_store_free(PxStore *s);
/* "10.0.0.1:29500" */
const char *px_store_address(const PxStore *s);

gboolean px_store_set(PxStore *s, const char *key, const void *value, gsize len, GError **error);
/* The value of key, once some client has set it (at most the deadline). */
GBytes *px_store_get(PxStore *s, const char *key, GError **error);
/* TRUE once all n keys are set. At the deadline FALSE with
 * PX_STORE_ERROR_TIMEOUT; *missing (when not NULL) then gets the indices
 * (into keys) of the keys still unset, ascending (a new GArray of int). */
gboolean px_store_wait(PxStore *s, const char *const *keys, int n, GArray **missing, GError **error);

/* Rank `rank` of `world` meets the others under prefix: each sets
 * "<prefix>/rank/<r>"; rank 0 waits for every rank, then sets
 * "<prefix>/blob" to blob (len bytes), which every rank copies into out
 * (len bytes). Rank 0 that times out publishes its sentence instead
 * ("ranks 2, 3 never came after 60 s"), which every waiting rank returns as
 * PX_STORE_ERROR_REMOTE. blob is read on rank 0 only. */
gboolean px_store_rendezvous(PxStore *s, const char *prefix, int rank, int world, const void *blob, gsize len,
                             void *out, GError **error);

/* "rank 2", "ranks 2, 3" (at most 16 named, then "and N more"): the ranks of
 * a missing list. */
char *px_store_rank_list(const int *ranks, int n);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxStore, px_store_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxStoreServer, px_store_server_free)

G_END_DECLS
