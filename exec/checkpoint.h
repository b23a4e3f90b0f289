/* checkpoint.h — sharded checkpoints by global tensor name, committed
 * atomically, verified on resume, readable under another layout.
 *
 * Directory: DIR/step-NNNNNNNN/ holds one shard file per rank
 * (rank-NNNNN.ckpt) and manifest.json; DIR/latest is a one-line file naming
 * the step directory. A step saved twice gets step-NNNNNNNN.K (K = 1, 2, ...):
 * an existing directory is never replaced. A save writes every rank's file
 * into DIR/.tmp-step-NNNNNNNN, fsyncs each, then rank 0 writes the manifest
 * (which lists the rank files and their checksums, so it can only be written
 * once all of them exist), the directory is renamed into place and only then
 * DIR/latest is replaced (written to a temporary name and renamed). A kill at
 * any moment leaves `latest` naming a complete checkpoint (or none).
 *
 * Shard file (one per rank; all integers little-endian):
 *   bytes 0-7     magic "PXSHARD2"
 *   bytes 8-15    u64 H, the header's length
 *   next H bytes  header, JSON:
 *                 {"format": "parallax-checkpoint-shard", "version": 2,
 *                  "rank": R, "step": S, "dtype": "f32" | "f64",
 *                  "tensors": [{"name": "h.3.attn.qkv.weight", "state": "weight",
 *                               "shape": [192, 64], "offset": E, "count": C,
 *                               "runs": [[o, c], ...]}, ...]}
 *   then          the payload: each tensor entry's C elements (dtype, IEEE
 *                 little-endian) at element offset E of the payload.
 * A tensor entry is the part of the GLOBAL tensor `name` (the core's
 * PxTensorSpec name; its unsplit row-major shape) that this rank writes, for
 * one state: "weight", "adam.m" or "adam.v". Its slice is a list of runs
 * (global flat element offset o, count c), in payload order; the runs cover
 * TP row/column/qkv-head blocks and ZeRO flat-range shards alike (a run per
 * contiguous stretch). Over all shard files every element of every tensor and
 * state is written exactly once (see runtime.c's rank_save for who writes
 * what).
 *
 * manifest.json (written by rank 0 after every shard file exists):
 *   {"format": "parallax-checkpoint", "version": 2, "step": S,
 *    "run": "model ...; dtype f32; seed 7; data synthetic; gbs 8; seq 16",
 *    "layout": {"dp": 2, "tp": 1, ...},   (the plan it was saved under)
 *    "files": [{"rank": 0, "file": "rank-00000.ckpt", "bytes": N,
 *               "sha256": "<hex SHA-256 of the whole file>"}, ...]}
 * "run" is the fingerprint of what fixes the math ("key value" items joined by
 * "; "); resuming under another gives one error naming the first item that
 * differs. The layout is informational: a checkpoint resumes under any dp,
 * tp, pp, vpp or ZeRO stage.
 *
 * Reading: px_ckpt_reader_open reads EVERY shard file of the step into memory
 * and verifies its size and SHA-256 against the manifest (fine for the small
 * models this executor trains; a large model would read only the files whose
 * runs intersect what the rank needs); px_ckpt_reader_get then assembles a
 * tensor's state from all entries of that name and hands out the elements a
 * rank asks for by global index. */
#pragma once
#include <glib.h>
#include "backend.h"
#include "plan.h"

G_BEGIN_DECLS

#define PX_CHECKPOINT_ERROR (px_checkpoint_error_quark())
GQuark px_checkpoint_error_quark(void);
typedef enum {
  PX_CHECKPOINT_ERROR_IO,        /* cannot create / read / rename; a missing file */
  PX_CHECKPOINT_ERROR_FORMAT,    /* not a checkpoint file, bad header, an element no shard holds */
  PX_CHECKPOINT_ERROR_MISMATCH,  /* made for another run (model / dtype / seed / data / batch) */
  PX_CHECKPOINT_ERROR_NONE,      /* no checkpoint in the directory */
  PX_CHECKPOINT_ERROR_CORRUPT,   /* a file's size or SHA-256 differs from the manifest's */
} PxCheckpointError;

#define PX_CKPT_VERSION 2
#define PX_CKPT_MANIFEST "manifest.json"
/* A manifest is read up to this size: ~150 bytes a shard, so some 400000 shards. */
#define PX_CKPT_MANIFEST_MAX_BYTES ((gsize)64 << 20)

/* ---- directories ---- */

/* Create (or find) DIR and check that it is a writable directory: one error
 * naming DIR otherwise. Run before step 1, so a bad --save fails at once. */
gboolean px_checkpoint_check_dir(const char *dir, GError **error);
/* Create (emptied) DIR/.tmp-step-NNNNNNNN; returns its path. */
char *px_checkpoint_begin(const char *dir, int step, GError **error);
/* Rename tmpdir to DIR/step-NNNNNNNN (or .K), then point DIR/latest at it. */
gboolean px_checkpoint_commit(const char *dir, const char *tmpdir, int step, GError **error);
/* The step directory DIR/latest names, and its step. */
char *px_checkpoint_latest(const char *dir, int *step, GError **error);
/* Keep the `keep` newest step directories (by step, then K) and delete the
 * others, never the one DIR/latest names (it counts among the kept); also
 * removes leftover .tmp-step-* directories of killed saves. keep <= 0 keeps
 * all. Run after a successful commit. *removed (may be NULL) gets the count. */
gboolean px_checkpoint_prune(const char *dir, int keep, int *removed, GError **error);

/* ---- shard files ---- */

/* A written file as the manifest lists it. */
typedef struct {
  int rank;
  char *file;          /* name inside the step directory */
  guint64 bytes;
  char sha256[65];     /* hex */
} PxCkptFile;
void px_ckpt_file_clear(PxCkptFile *f);

typedef struct _PxCkptShard PxCkptShard;
PxCkptShard *px_ckpt_shard_new(int rank, int step, PxDType dtype);
void px_ckpt_shard_free(PxCkptShard *s);
/* Add n elements of (state, name): values[i] is global flat element gidx[i]
 * of the tensor of global shape (ndim, shape). Consecutive indices merge into
 * runs. */
void px_ckpt_shard_add(PxCkptShard *s, const char *state, const char *name, int ndim, const gint64 *shape,
                       const gint64 *gidx, const double *values, gint64 n);
/* Write DIR/rank-NNNNN.ckpt (fsynced); out gets its name, size and SHA-256. */
gboolean px_ckpt_shard_write(PxCkptShard *s, const char *dir, PxCkptFile *out, GError **error);

/* ---- the manifest ---- */

typedef struct {
  int step;
  char *run;           /* fingerprint */
  char *layout;        /* "key value; ..." of the plan it was saved under */
  int n_files;
  PxCkptFile *files;
} PxCkptManifest;

/* Write DIR/manifest.json (atomically): layout is the plan the checkpoint is
 * saved under (written as px_report_plan_json writes it). */
gboolean px_ckpt_manifest_write(const char *dir, int step, const char *run, const PxPlan *layout,
                                const PxCkptFile *files, int n, GError **error);
/* Read STEPDIR/manifest.json; a run fingerprint other than `run` (when not
 * NULL) is refused with one error naming the file and the first differing item. */
PxCkptManifest *px_ckpt_manifest_read(const char *stepdir, const char *run, GError **error);
/* The first item where two "; "-joined lists of "key value" items differ
 * (*a from there, *b from here, "(nothing)" past the end; freed by the
 * caller); FALSE when they are equal. */
gboolean px_ckpt_items_differ(const char *there, const char *here, char **a, char **b);
void px_ckpt_manifest_free(PxCkptManifest *m);

/* ---- reading ---- */

typedef struct _PxCkptReader PxCkptReader;
/* Read and verify every shard file the manifest lists. */
PxCkptReader *px_ckpt_reader_open(const char *stepdir, const PxCkptManifest *man, GError **error);
void px_ckpt_reader_free(PxCkptReader *rd);
/* out[i] = element gidx[i] of (state, name), a tensor of global shape (ndim,
 * shape): an error names a tensor of another shape or an element no shard
 * holds. */
gboolean px_ckpt_reader_get(PxCkptReader *rd, const char *state, const char *name, int ndim, const gint64 *shape,
                            const gint64 *gidx, gint64 n, double *out, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxCkptShard, px_ckpt_shard_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxCkptManifest, px_ckpt_manifest_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxCkptReader, px_ckpt_reader_free)

G_END_DECLS
