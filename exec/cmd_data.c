/* cmd_data.c — `parallax-exec data`: write the synthetic corpus, or describe a
 * token file (tokens, smallest vocabulary, windows of a given T). */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include "data.h"
#include "exec_commands.h"

int px_exec_cmd_data(int argc, char **argv) {
  gboolean synthetic = FALSE;
  gint64 tokens = 1000000;
  int vocab = 64, seq = 64;
  gint64 seed = 1337;
  g_autofree char *out = NULL, *info = NULL;
  GOptionEntry entries[] = {
    {"synthetic", 0, 0, G_OPTION_ARG_NONE, &synthetic, "write the synthetic corpus (see exec/data.h)", NULL},
    {"tokens", 'n', 0, G_OPTION_ARG_INT64, &tokens, "number of tokens, 1..2^30 (default 1000000)", "N"},
    {"vocab", 'V', 0, G_OPTION_ARG_INT, &vocab, "vocabulary size, 8..65536 (default 64)", "V"},
    {"seed", 0, 0, G_OPTION_ARG_INT64, &seed, "RNG seed (default 1337)", "S"},
    {"out", 'o', 0, G_OPTION_ARG_FILENAME, &out, "output token file", "FILE"},
    {"info", 0, 0, G_OPTION_ARG_FILENAME, &info, "describe a token file", "FILE"},
    {"seq", 'T', 0, G_OPTION_ARG_INT, &seq, "sequence length for --info's window count (default 64)", "T"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new("- token files in llm.c's format");
  g_option_context_add_main_entries(ctx, entries, NULL);
  g_autoptr(GError) error = NULL;
  if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
    fprintf(stderr, "parallax-exec data: %s\n", error->message);
    return 2;
  }
  if (synthetic == (info != NULL)) {
    fprintf(stderr, "parallax-exec data: give either --synthetic --out FILE or --info FILE\n");
    return 2;
  }
  if (tokens < 1 || tokens > PX_DATA_MAX_SYNTHETIC) {
    fprintf(stderr, "parallax-exec data: --tokens %" G_GINT64_FORMAT " must be 1..%" G_GINT64_FORMAT "\n", tokens,
            PX_DATA_MAX_SYNTHETIC);
    return 2;
  }
  if (seq < 1) {
    fprintf(stderr, "parallax-exec data: --seq %d must be at least 1\n", seq);
    return 2;
  }
  if (synthetic) {
    if (!out) {
      fprintf(stderr, "parallax-exec data: --synthetic needs --out FILE\n");
      return 2;
    }
    g_autofree char *dir = g_path_get_dirname(out);
    if (g_mkdir_with_parents(dir, 0755) != 0) {
      fprintf(stderr, "parallax-exec data: cannot create %s: %s\n", dir, g_strerror(errno));
      return 1;
    }
    g_autofree guint16 *tok = px_data_synthetic(tokens, vocab, (guint32)seed, &error);
    if (!tok || !px_token_file_write(out, tok, tokens, &error)) {
      fprintf(stderr, "parallax-exec data: %s\n", error->message);
      return 1;
    }
    printf("wrote %s: %" G_GINT64_FORMAT " tokens, vocab %d, seed %" G_GINT64_FORMAT "\n", out,
           tokens, vocab, seed);
    return 0;
  }
  g_autoptr(PxTokenFile) tf = px_token_file_open(info, &error);
  if (!tf) {
    fprintf(stderr, "parallax-exec data: %s\n", error->message);
    return 1;
  }
  printf("%s: %" G_GINT64_FORMAT " tokens, vocab >= %d, %" G_GINT64_FORMAT " windows of T=%d\n",
         info, px_token_file_n_tokens(tf), px_token_file_vocab_min(tf),
         px_token_file_n_windows(tf, seq), seq);
  return 0;
}
