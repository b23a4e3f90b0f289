/* Fuzz the cluster INI reader (px_cluster_load_ini). */
#include "fuzz_input.h"
#include "cluster.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  GError *error = NULL;
  PxCluster *c = px_cluster_load_ini(fuzz_input_file(data, size, ".ini"), &error);
  if (c) px_cluster_free(c);
  g_clear_error(&error);
  return 0;
}
