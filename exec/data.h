/* data.h — token files in llm.c's format, the windows a training step reads
 * from them, and a synthetic corpus a small model can learn.
 *
 * File: a header of 256 little-endian int32 (magic 20240520, version 1, number
 * of tokens, the rest zero), then that many uint16 tokens.
 *
 * Windows: sequence s (a global index, s ≥ 0) is the T+1 tokens starting at
 * token (s mod W) * T, W = (n_tokens - 1) / T the number of whole windows;
 * consecutive windows overlap by one token, so input t and target t of every
 * position appear once per epoch. The same s always gives the same window,
 * whatever the rank, the micro-batch split or the restart. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

#define PX_DATA_ERROR (px_data_error_quark())
GQuark px_data_error_quark(void);
typedef enum {
  PX_DATA_ERROR_IO,        /* cannot open / read / write */
  PX_DATA_ERROR_FORMAT,    /* bad magic, version, or size disagreeing with the header */
  PX_DATA_ERROR_RANGE,     /* T too long for the file, a token ≥ vocab, bad argument */
} PxDataError;

#define PX_DATA_MAGIC 20240520
#define PX_DATA_VERSION 1
#define PX_DATA_HEADER_INTS 256

typedef struct _PxTokenFile PxTokenFile;

/* Read whole into memory (at most 1024 + 2 x (2^31 - 1) bytes, what the
 * header's int32 count allows) and checked; a file truncated or edited on
 * disk afterwards does not reach the run (a mapping of it raised SIGBUS). */
PxTokenFile *px_token_file_open(const char *path, GError **error);
/* Check the header of a token file's bytes (size bytes in all): magic,
 * version, and a token count that matches the size. *n_tokens on success.
 * path only names the file in the error. */
gboolean px_token_file_check(const char *bytes, gsize size, const char *path, gint64 *n_tokens, GError **error);
void px_token_file_free(PxTokenFile *tf);
gint64 px_token_file_n_tokens(const PxTokenFile *tf);
const guint16 *px_token_file_tokens(const PxTokenFile *tf);
/* Largest token + 1 (a vocabulary at least this large is needed). */
int px_token_file_vocab_min(const PxTokenFile *tf);
/* Number of whole T-windows W (see above); 0 when the file is too short. */
gint64 px_token_file_n_windows(const PxTokenFile *tf, int T);

/* B windows of T+1 tokens, sequences first_seq .. first_seq+B-1, into out (B, T+1). */
gboolean px_token_file_windows(const PxTokenFile *tf, gint64 first_seq, int B, int T, gint32 *out,
                               GError **error);
/* Split (B, T+1) windows into inputs (B*T) and targets (B*T), the model's tensors. */
void px_windows_split(const gint32 *windows, int B, int T, gint32 *inputs, gint32 *targets);

/* Write n tokens (each < 65536) as a token file. */
gboolean px_token_file_write(const char *path, const guint16 *tokens, gint64 n, GError **error);

/* A deterministic corpus over vocab ≥ 8 tokens: token 0 separates records; a
 * record is an arithmetic progression a, a+d, a+2d, ... (mod vocab-1, shifted
 * by one to avoid 0) of 4..11 terms, a and the length drawn from a seeded
 * RNG, d from {1, 2, 3}. After two terms every next token is determined,
 * so a model that learns the rule reaches a loss well below log(vocab). */
guint16 *px_data_synthetic(gint64 n, int vocab, guint32 seed, GError **error);
/* Most tokens px_data_synthetic makes (2 GiB of uint16). */
#define PX_DATA_MAX_SYNTHETIC ((gint64)1 << 30)

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxTokenFile, px_token_file_free)

G_END_DECLS
