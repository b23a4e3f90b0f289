/* predict.h — a plan through the event engine with its cost table and memory
 * model: what `parallax-sim simulate` reports and what `parallax-exec run
 * --compare` sets beside a measured step (one path, so the two agree). */
#pragma once
#include <glib.h>
#include "cost.h"
#include "engine.h"
#include "memory.h"
#include "partition.h"

G_BEGIN_DECLS

typedef struct {
  PxPartition *part;
  PxProgram *prog;
  PxCostTable *tab;
  PxMemory *mem;
  PxSimResult *res;
} PxPrediction;

/* Simulate plan on cluster: ideal uses the ideal cost table (forward 1,
 * backward 2, no communication); full simulates every rank; timeline records
 * the events. Each part's activations and the stage's static memory go to the
 * engine (peak memory per stage). On failure the members made so far are kept
 * for px_prediction_clear. */
gboolean px_predict(PxPrediction *out, const PxModel *model, const PxCluster *cluster, const PxPlan *plan,
                    gboolean ideal, gboolean full, gboolean timeline, GError **error);
void px_prediction_clear(PxPrediction *p);

G_END_DECLS
