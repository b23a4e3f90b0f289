/* Fuzz the checkpoint manifest reader (px_ckpt_manifest_read, then opening
 * the shards it lists, as a resume does): the input is STEP/manifest.json;
 * the step directory holds one valid shard so that a manifest naming it
 * reaches the shard reader. */
#include "fuzz_ckpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static gboolean shard_written;
  if (!shard_written) {
    /* the seed shard (two tensors), which tests/fuzz/seeds/ckpt_manifest/one-shard.json
     * lists under its true size and SHA-256, so mutations reach the payload */
    g_autofree char *path = g_build_filename(PX_DATA_DIR, "tests", "fuzz", "seeds", "ckpt_shard", "two-tensors.ckpt", NULL);
    g_autofree char *bytes = NULL;
    gsize n = 0;
    if (!g_file_get_contents(path, &bytes, &n, NULL)) abort();
    fuzz_ckpt_put("rank-00000.ckpt", bytes, n);
    shard_written = TRUE;
  }
  fuzz_ckpt_put(PX_CKPT_MANIFEST, data, size);
  fuzz_ckpt_read(NULL);
  fuzz_ckpt_read("model tiny-gpt; dtype f32");
  return 0;
}
