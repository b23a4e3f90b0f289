/* Fuzz the model INI reader (px_model_load_ini). */
#include "fuzz_input.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  GError *error = NULL;
  PxModel *m = px_model_load_ini(fuzz_input_file(data, size, ".ini"), &error);
  if (m) {
    px_model_executable(m, NULL);
    px_model_free(m);
  }
  g_clear_error(&error);
  return 0;
}
