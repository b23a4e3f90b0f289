/* Fuzz the checkpoint shard reader: the input is a shard file's bytes; the
 * harness writes it with a manifest that lists it under its true size and
 * SHA-256 (so every input gets past the checksum, as a shard written by a
 * buggy or hostile program would), then resumes from it. */
#include "fuzz_ckpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_ckpt_put("rank-00000.ckpt", data, size);
  g_autofree char *sha = g_compute_checksum_for_data(G_CHECKSUM_SHA256, data, size);
  g_autofree char *manifest = g_strdup_printf(
      "{\"format\": \"parallax-checkpoint\", \"version\": %d, \"step\": 1, \"run\": \"r\", \"layout\": {\"dp\": 1},"
      " \"files\": [{\"rank\": 0, \"file\": \"rank-00000.ckpt\", \"bytes\": %zu, \"sha256\": \"%s\"}]}",
      PX_CKPT_VERSION, size, sha);
  fuzz_ckpt_put(PX_CKPT_MANIFEST, manifest, strlen(manifest));
  fuzz_ckpt_read(NULL);
  return 0;
}
