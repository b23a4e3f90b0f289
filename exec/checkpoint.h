/* checkpoint.h — per-rank checkpoint files, committed atomically.
 *
 * Layout: DIR/step-NNNNNNNN/rank-NNNNN.ckpt and DIR/latest (a one-line file
 * naming the step directory; a step saved twice gets step-NNNNNNNN.K, as an
 * existing directory is never replaced). A save writes every rank's file into
 * DIR/.tmp-step-NNNNNNNN, fsyncs, renames the directory into place, and only
 * then replaces DIR/latest (written to a temporary name and renamed). A kill at
 * any moment leaves `latest` naming a complete checkpoint (or none).
 *
 * A rank file: the magic "PXCKPT01", a little-endian u32 header length, the
 * header (text: fingerprint, step, rank, blob count), then each blob as a u64
 * byte count and its bytes. The fingerprint ("key value" items joined by
 * "; ") names the model, plan, dtype and data the checkpoint was made for;
 * reading it under another gives one error naming the first item that
 * differs. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

#define PX_CHECKPOINT_ERROR (px_checkpoint_error_quark())
GQuark px_checkpoint_error_quark(void);
typedef enum {
  PX_CHECKPOINT_ERROR_IO,        /* cannot create / read / rename */
  PX_CHECKPOINT_ERROR_FORMAT,    /* truncated or corrupt file */
  PX_CHECKPOINT_ERROR_MISMATCH,  /* made for another model / plan / dtype */
  PX_CHECKPOINT_ERROR_NONE,      /* no checkpoint in the directory */
} PxCheckpointError;

typedef struct {
  void *data;
  gsize bytes;
} PxCkptBlob;

/* Create (emptied) DIR/.tmp-step-NNNNNNNN; returns its path. */
char *px_checkpoint_begin(const char *dir, int step, GError **error);
gboolean px_checkpoint_write_rank(const char *tmpdir, int rank, const char *fingerprint, int step,
                                  const PxCkptBlob *blobs, int n, GError **error);
/* Rename tmpdir to DIR/step-NNNNNNNN, then point DIR/latest at it. */
gboolean px_checkpoint_commit(const char *dir, const char *tmpdir, int step, GError **error);
/* The step directory DIR/latest names, and its step. */
char *px_checkpoint_latest(const char *dir, int *step, GError **error);
/* Read a rank file into blobs whose data and expected bytes are given. */
gboolean px_checkpoint_read_rank(const char *stepdir, int rank, const char *fingerprint, int *step,
                                 PxCkptBlob *blobs, int n, GError **error);

G_END_DECLS
