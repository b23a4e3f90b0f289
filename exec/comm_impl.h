/* comm_impl.h — internal: the table of function pointers a communicator fills
 * (local now, nccl later). comm.c checks the arguments (rank in group, root in
 * group, peer in world, dtype) before dispatching, so an implementation only
 * moves data. `pos` is the caller's position in the group. */
#pragma once
#include "comm.h"

G_BEGIN_DECLS

typedef struct {
  const char *name;
  void (*free)(PxComm *c);
  gboolean (*all_reduce)(PxComm *c, const PxGroup *g, int pos, void *buf, gsize count, PxDType dt,
                         GError **error);
  gboolean (*reduce_scatter)(PxComm *c, const PxGroup *g, int pos, const void *send, void *recv,
                             gsize count, PxDType dt, GError **error);
  gboolean (*all_gather)(PxComm *c, const PxGroup *g, int pos, const void *send, void *recv,
                         gsize count, PxDType dt, GError **error);
  gboolean (*broadcast)(PxComm *c, const PxGroup *g, int pos, void *buf, gsize count, PxDType dt,
                        int root_pos, GError **error);
  gboolean (*send)(PxComm *c, const void *buf, gsize count, PxDType dt, int peer, int tag,
                   GError **error);
  gboolean (*recv)(PxComm *c, void *buf, gsize count, PxDType dt, int peer, int tag, GError **error);
  gboolean (*barrier)(PxComm *c, const PxGroup *g, int pos, GError **error);
} PxCommOps;

struct _PxComm {
  const PxCommOps *ops;
  int rank, world;
  void *impl;
};

G_END_DECLS
