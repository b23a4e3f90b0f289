/* Fuzz the plan INI reader (px_plan_load_ini), then the validator against a
 * small model. */
#include "fuzz_input.h"
#include "plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static PxModel *model;
  if (!model) {
    PxModelDesc d = {.name = "fuzz", .layers = 8, .hidden = 64, .heads = 4, .kv_heads = 2, .ffn = 256,
                     .vocab = 100, .max_seq = 128};
    model = px_model_new(&d, NULL);
  }
  GError *error = NULL;
  PxPlan p;
  px_plan_init(&p);
  if (px_plan_load_ini(&p, fuzz_input_file(data, size, ".ini"), &error)) px_plan_validate(&p, model, NULL, NULL);
  g_clear_error(&error);
  px_plan_clear(&p);
  return 0;
}
