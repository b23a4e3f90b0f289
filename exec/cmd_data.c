/* cmd_data.c — `parallax-exec data`: write the synthetic corpus, or describe a
 * token file (tokens, smallest vocabulary, windows of a given T). */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include "data.h"
#include "exec_commands.h"
#include "options.h"

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
    {"seq", 'T', 0, G_OPTION_ARG_INT, &seq, "sequence length in tokens for --info's window count (default 64)", "T"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
  };
  /* the flags of the other mode were ignored: which were given, before parsing */
  static const char *const synth_only[] = {"--tokens", "-n", "--vocab", "-V", "--seed", "--out", "-o"};
  static const char *const info_only[] = {"--seq", "-T"};
  const char *synth_flag = NULL, *info_flag = NULL;
  for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
    for (gsize k = 0; k < G_N_ELEMENTS(synth_only); k++)
      if (px_flag_is(argv[i], synth_only[k])) synth_flag = synth_only[k];
    for (gsize k = 0; k < G_N_ELEMENTS(info_only); k++)
      if (px_flag_is(argv[i], info_only[k])) info_flag = info_only[k];
  }
  g_set_prgname("parallax-exec data"); /* --help's usage line names the command, as run's does */
  g_autoptr(GOptionContext) ctx = g_option_context_new("- token files in llm.c's format");
  GOptionEntry *decimal = px_option_entries_decimal(entries); /* "010" is ten, not eight */
  g_option_context_add_main_entries(ctx, decimal, NULL);
  g_autoptr(GError) error = NULL;
  gboolean parsed = g_option_context_parse(ctx, &argc, &argv, &error);
  px_option_entries_decimal_done(decimal);
  if (!parsed) {
    fprintf(stderr, "parallax-exec data: %s\n", error->message);
    return 2;
  }
  if (seed < 0 || seed > G_MAXUINT32) { /* the corpus's GRand takes 32 bits: -1 and 2^32 - 1, 0 and 2^32 were one seed */
    fprintf(stderr, "parallax-exec data: --seed %" G_GINT64_FORMAT " must be 0..%u\n", seed, G_MAXUINT32);
    return 2;
  }
  if (synthetic == (info != NULL)) {
    fprintf(stderr, "parallax-exec data: give either --synthetic --out FILE or --info FILE\n");
    return 2;
  }
  if (info && synth_flag) {
    fprintf(stderr, "parallax-exec data: %s writes a synthetic corpus: it has no meaning with --info\n", synth_flag);
    return 2;
  }
  if (synthetic && info_flag) {
    fprintf(stderr, "parallax-exec data: %s counts --info's windows: it has no meaning with --synthetic\n", info_flag);
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
