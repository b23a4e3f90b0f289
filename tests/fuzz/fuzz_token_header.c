/* Fuzz the token-file header check (px_token_file_check): the bytes as a
 * whole file, no scratch file needed. */
#include <stdint.h>
#include "data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  GError *error = NULL;
  gint64 n;
  if (px_token_file_check((const char *)data, size, "fuzz", &n, &error) && n * 2 + 1024 != (gint64)size) abort();
  g_clear_error(&error);
  return 0;
}
