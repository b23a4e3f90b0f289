/* Fuzz the DeepSpeed ds_config.json reader (px_plan_load_deepspeed), without
 * and with command-line values for its "auto" entries. */
#include "fuzz_input.h"
#include "plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_input_file(data, size, ".json");
  static const PxDsOverrides cli[2] = {{0}, {.mbs = 2, .gbs = 64, .precision_given = TRUE, .hidden = 4096}};
  for (int i = 0; i < 2; i++) {
    GError *error = NULL;
    PxPlan p;
    px_plan_init(&p);
    p.dp = 8;
    px_plan_load_deepspeed(&p, path, &cli[i], &error);
    g_clear_error(&error);
    px_plan_clear(&p);
  }
  return 0;
}
