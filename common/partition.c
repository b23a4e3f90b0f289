/* partition.c — layers over pipeline stages.
 *
 * DeepSpeed semantics (deepspeed/runtime/utils.py, read at v0.16.5, commit
 * 38327e07f6cd; reproduced boundary for boundary, checked against
 * tests/ref/deepspeed_partition.py → tests/ref/partition_cases.txt):
 *
 * partition_uniform(n, m)  (unchanged since DeepSpeed 0.10.1, PR #4053)
 *   n <= m: bounds[p] = min(p, n): one item in each of the first n parts, the
 *           trailing m - n parts EMPTY.
 *   n >  m: c = n / m, r = n % m, bounds[p] = p*c + min(p, r): the first r
 *           parts get one extra item. (Before 0.10.1 the remainder all went to
 *           the last part: bounds[p] = p*c, bounds[m] = n.)
 *   e.g. (10, 4): c = 2, r = 2 → [0, 3, 6, 8, 10].
 *
 * partition_balanced(w, m)  (DeepSpeed >= 0.12.5, PR #4312; all of >= 0.13)
 *   n <= m: partition_uniform(n, m) (so trailing parts may be empty).
 *   n >  m: a dynamic program over "i first items in j parts" that keeps, per
 *   state, ONE (max part sum, min part sum) pair, picked by the smallest
 *   cost = max - min over the previous state (k items, j-1 parts) plus the
 *   new part [k, i). Details that decide the boundaries:
 *     - tables start at +inf, dp_max[0][0] = 0, dp_cost[0][0] = 0 and
 *       dp_min[0][0] stays +inf (the identity for min);
 *     - every k in [0, i) is tried, unreachable previous states give
 *       cost +inf, and the update test is `dp_cost[i][j] >= cost`, so among
 *       equal costs the LAST k wins (even +inf overwrites +inf, harmlessly);
 *     - prefix sums are float64, sequential (numpy cumsum), and a part's
 *       sum is prefix[i] - prefix[k]; Python max/min on two floats.
 *   It is a heuristic for max - min (the per-state choice is greedy), not an
 *   optimum of either max - min or max; it never leaves a part empty.
 *   Hand-worked: w = [1, 2, 1], m = 2, prefix [0, 1, 3, 4].
 *     j = 1: (max, min, cost) = (1,1,0) (3,3,0) (4,4,0) for i = 1, 2, 3.
 *     i = 3, j = 2: k = 0 → +inf; k = 1 → max(1, 3) - min(1, 3) = 2;
 *                   k = 2 → max(3, 1) - min(3, 1) = 2, and 2 >= 2 → k = 2.
 *     → [0, 2, 3] (sums 3, 1); px_partition_optimal picks [0, 1, 3] (1, 3).
 *
 * The binary-search version it replaced (DeepSpeed <= 0.12.4:
 * partition_balanced(eps=1e-3) → _rb_partition_balanced → _lprobe) bisects
 * the bottleneck (heaviest part) between total/m and total; _lprobe fills
 * parts greedily from the front, each up to the bottleneck (bisect_left on the
 * inclusive prefix sums, jumping in steps of n/m items), and returns early as
 * soon as the items run out. So it minimises the heaviest part (to within
 * eps), but puts the slack at the END: later parts can be EMPTY even when
 * n > m. Examples (legacy → current):
 *     [1,1,1,1,1] / 4          [0,2,4,5,5] → [0,2,3,4,5]
 *     [1]*10 / 4               [0,3,6,9,10] → [0,3,6,8,10]
 *     [3,1,4,1,5,9,2,6] / 3    [0,5,7,8]   → [0,5,6,8]
 *     [1000,1,1,1,1,1] / 3     [0,0,6,6]   → [0,1,4,6] (legacy: 2 empty parts)
 *     [0,0,0,0,0,0] / 3        [0,0,0,6]   → [0,4,5,6]
 * Parallax implements only the current version.
 *
 * PipelineModule._partition_layers (deepspeed/runtime/pipe/module.py):
 *   the method string is lower-cased as a whole; "uniform" balances the layer
 *   COUNT; "parameters" balances _count_layer_params(): the trainable
 *   parameters of each LayerSpec as built, so a TiedLayerSpec (tied LM head)
 *   counts the full tied module again at every occurrence; "type:REGEX" sets
 *   weight 1 on layers whose class name matches REGEX (regex.search,
 *   IGNORECASE; the regex is method.split(':')[1], i.e. the text up to a next
 *   ':'), 0 elsewhere, and errors when nothing matches; then
 *   partition_balanced. "profile" is not implemented in DeepSpeed.
 *
 * Here: "parameters" weighs each layer by px_layer_stored_params_tp(layer, 1),
 * its own tensors plus, for the tied LM head, the copy of wte it holds (V*h),
 * as DeepSpeed counts a TiedLayerSpec at each occurrence. (Where the tied spec
 * builds a bigger module, e.g. Megatron-DeepSpeed's EmbeddingPipe with its
 * position table, DeepSpeed counts that whole module; Parallax's head stores
 * only wte, and counts that.) "type:REGEX" matches PxLayer.type_name with
 * GRegex, G_REGEX_CASELESS, unanchored like regex.search, after the same
 * lower-casing and ':' split. "optimal" and "profile" are Parallax's own:
 * px_partition_optimal over forward FLOPs or given per-layer costs. A method
 * that leaves a part empty (more parts than layers) is refused.
 */
#include "partition.h"
#include "buckets.h"

#include <math.h>
#include <string.h>

G_DEFINE_QUARK(px-partition-error-quark, px_partition_error)

int *px_partition_uniform(int num_items, int num_parts) {
  g_return_val_if_fail(num_items >= 0 && num_parts >= 1, NULL);
  int *parts = g_new0(int, num_parts + 1);
  if (num_items <= num_parts) {
    for (int p = 0; p <= num_parts; p++) parts[p] = MIN(p, num_items);
    return parts;
  }
  int chunk = num_items / num_parts, residual = num_items - chunk * num_parts;
  for (int p = 0; p <= num_parts; p++) parts[p] = p * chunk + MIN(p, residual);
  return parts;
}

/* prefix[0] = 0, prefix[i] = w[0] + ... + w[i-1], summed in order like numpy.cumsum. */
static double *prefix_sums(const double *weights, int n) {
  double *prefix = g_new0(double, n + 1);
  for (int i = 0; i < n; i++) prefix[i + 1] = prefix[i] + weights[i];
  return prefix;
}

/* Python's max(a, b) / min(a, b): the first argument unless the second is strictly better. */
static inline double py_max(double a, double b) { return b > a ? b : a; }
static inline double py_min(double a, double b) { return b < a ? b : a; }

int *px_partition_balanced(const double *weights, int num_items, int num_parts) {
  g_return_val_if_fail(num_items >= 0 && num_parts >= 1, NULL);
  g_return_val_if_fail(weights || num_items == 0, NULL);
  const int n = num_items, m = num_parts;
  if (n <= m) return px_partition_uniform(n, m);

  const gsize cells = (gsize)(n + 1) * (gsize)(m + 1);
#define AT(i, j) ((gsize)(i) * (gsize)(m + 1) + (gsize)(j))
  g_autofree double *dp_max = g_new(double, cells);
  g_autofree double *dp_min = g_new(double, cells);
  g_autofree double *dp_cost = g_new(double, cells);
  g_autofree int *position = g_new0(int, cells);
  for (gsize c = 0; c < cells; c++) dp_max[c] = dp_min[c] = dp_cost[c] = INFINITY;
  g_autofree double *prefix = prefix_sums(weights, n);

  dp_max[AT(0, 0)] = 0;
  dp_cost[AT(0, 0)] = 0;
  for (int i = 1; i <= n; i++) {
    for (int j = 1; j <= MIN(i, m); j++) {
      for (int k = 0; k < i; k++) {
        double seg = prefix[i] - prefix[k];
        double max_sum = py_max(dp_max[AT(k, j - 1)], seg);
        double min_sum = py_min(dp_min[AT(k, j - 1)], seg);
        double cost = max_sum - min_sum;
        if (dp_cost[AT(i, j)] >= cost) {
          dp_cost[AT(i, j)] = cost;
          dp_max[AT(i, j)] = max_sum;
          dp_min[AT(i, j)] = min_sum;
          position[AT(i, j)] = k;
        }
      }
    }
  }

  int *parts = g_new0(int, m + 1);
  parts[m] = n;
  for (int j = m; j >= 1; j--) parts[j - 1] = position[AT(parts[j], j)];
#undef AT
  return parts;
}

int *px_partition_optimal(const double *weights, int num_items, int num_parts) {
  g_return_val_if_fail(num_items >= 0 && num_parts >= 1, NULL);
  g_return_val_if_fail(weights || num_items == 0, NULL);
  const int n = num_items, m = num_parts;
  /* Fewer items than parts: one each, trailing parts empty, as DeepSpeed. */
  if (n <= m) return px_partition_uniform(n, m);

  /* best[j][i]: the smallest achievable heaviest part when items [i, n) are
   * split into j non-empty parts (+inf when i > n - j). Part sums are always
   * prefix[b] - prefix[a], so the comparisons below see the very same doubles. */
  g_autofree double *prefix = prefix_sums(weights, n);
  g_autofree double *best = g_new(double, (gsize)(m + 1) * (gsize)(n + 1));
#define BEST(j, i) best[(gsize)(j) * (gsize)(n + 1) + (gsize)(i)]
  for (int i = 0; i <= n; i++) BEST(1, i) = i < n ? prefix[n] - prefix[i] : INFINITY;
  /* With finite weights ≥ 0 the first part's sum prefix[k] - prefix[i] never
   * falls as k grows and BEST(j - 1, k) never rises (rounding is monotone), so
   * the minimum of their maximum sits where they cross: found by bisection,
   * the same value as the scan over every k in O(log n), not O(n) (the scan
   * took hours on 60000 weights over 64 stages). Other weights: the scan. */
  gboolean monotone = isfinite(prefix[n]);
  for (int i = 0; monotone && i < n; i++) monotone = weights[i] >= 0;
  for (int j = 2; j <= m; j++) {
    for (int i = 0; i <= n; i++) {
      double b = INFINITY;
      int lo = i + 1, hi = n - j + 1;
      if (monotone && lo <= hi) {
        /* the first k where the first part is at least the rest's best (hi + 1: none);
         * the minimum is there or just before it */
        int a = lo, z = hi + 1;
        while (a < z) {
          int mid = a + (z - a) / 2;
          if (prefix[mid] - prefix[i] >= BEST(j - 1, mid)) z = mid;
          else a = mid + 1;
        }
        lo = MAX(a - 1, lo);
        hi = MIN(a, hi);
      }
      for (int k = lo; k <= hi; k++) {
        double v = MAX(prefix[k] - prefix[i], BEST(j - 1, k));
        if (v < b) b = v;
      }
      BEST(j, i) = b;
    }
  }

  /* The lexicographically smallest boundaries reaching the optimum: each
   * boundary as early as the remaining parts still allow. */
  const double opt = BEST(m, 0);
  int *parts = g_new0(int, m + 1);
  parts[m] = n;
  for (int p = 1; p < m; p++) {
    int k = parts[p - 1] + 1;
    /* bounded: with NaN/inf weights nothing compares <= opt; keep parts non-empty */
    while (k < n - (m - p) && !(prefix[k] - prefix[parts[p - 1]] <= opt && BEST(m - p, k) <= opt)) k++;
    parts[p] = k;
  }
#undef BEST
  return parts;
}

double *px_partition_parse_weights(const char *csv, int *n_out, GError **error) {
  g_auto(GStrv) fields = g_strsplit(csv ? csv : "", ",", -1);
  const int n = (int)g_strv_length(fields);
  g_autofree double *w = g_new0(double, MAX(n, 1));
  for (int i = 0; i < n; i++) {
    char *f = g_strstrip(fields[i]), *end = NULL;
    w[i] = g_ascii_strtod(f, &end);
    if (!*f || *end || !isfinite(w[i]) || w[i] < 0) {
      g_set_error(error, PX_PARTITION_ERROR, PX_PARTITION_ERROR_PARSE,
                  "weight %d '%s' is not a number >= 0 (expected a list like 3,1,4,1)", i + 1, f);
      return NULL;
    }
  }
  if (n == 0) {
    g_set_error(error, PX_PARTITION_ERROR, PX_PARTITION_ERROR_PARSE, "empty weight list");
    return NULL;
  }
  /* the partitioners compare prefix sums: an infinite total (1e308,1e308) made every sum 'inf' */
  double total = 0;
  for (int i = 0; i < n; i++) total += w[i];
  if (!isfinite(total)) {
    g_set_error(error, PX_PARTITION_ERROR, PX_PARTITION_ERROR_PARSE,
                "the %d weights sum beyond the largest number (%g): scale them down", n, G_MAXDOUBLE);
    return NULL;
  }
  *n_out = n;
  return g_steal_pointer(&w);
}

void px_partition_free(PxPartition *part) {
  if (!part) return;
  g_free(part->bounds);
  g_free(part->params);
  g_free(part->method);
  px_buckets_free(part->buckets);
  g_free(part);
}

/* The layers DeepSpeed's "type:REGEX" weighs 1. As PipelineModule does, the
 * method has been lower-cased and the regex is the text up to the next ':'. */
static double *type_weights(const PxModel *model, const char *method_lower, GError **error) {
  g_auto(GStrv) fields = g_strsplit(method_lower, ":", -1);
  const char *pattern = fields[1];
  g_autoptr(GError) local = NULL;
  g_autoptr(GRegex) re = g_regex_new(pattern, G_REGEX_CASELESS, 0, &local);
  if (!re) {
    g_set_error(error, PX_PARTITION_ERROR, PX_PARTITION_ERROR_METHOD,
                "partition '%s': bad regex '%s': %s", method_lower, pattern, local->message);
    return NULL;
  }
  g_autofree double *w = g_new0(double, model->n_layers);
  gboolean any = FALSE;
  for (guint i = 0; i < model->n_layers; i++)
    if (g_regex_match(re, model->layers[i].type_name, 0, NULL)) w[i] = 1.0, any = TRUE;
  if (!any) {
    g_set_error(error, PX_PARTITION_ERROR, PX_PARTITION_ERROR_METHOD,
                "partition '%s' found no layer whose type matches '%s'", method_lower, pattern);
    return NULL;
  }
  return g_steal_pointer(&w);
}

/* Boundaries for the plan's method over the model's layers, or NULL with error. */
static int *method_bounds(const PxModel *model, const PxPlan *plan, const char *method,
                          const double *profile_weights, int parts, GError **error) {
  const int n = (int)model->n_layers;
  g_autofree char *lower = g_ascii_strdown(method, -1);
  if (!strcmp(lower, "uniform")) return px_partition_uniform(n, parts);
  if (g_str_has_prefix(lower, "type:")) {
    g_autofree double *w = type_weights(model, lower, error);
    return w ? px_partition_balanced(w, n, parts) : NULL;
  }
  g_autofree double *w = g_new0(double, n);
  if (!strcmp(lower, "parameters")) {
    for (int i = 0; i < n; i++) w[i] = (double)px_layer_stored_params_tp(&model->layers[i], 1);
    return px_partition_balanced(w, n, parts);
  }
  if (!strcmp(lower, "optimal")) {
    int seq = plan->seq > 0 ? plan->seq : model->desc.default_seq;
    for (int i = 0; i < n; i++) w[i] = px_layer_forward_flops(model, &model->layers[i], seq);
    return px_partition_optimal(w, n, parts);
  }
  if (!strcmp(lower, "profile")) {
    if (!profile_weights) {
      g_set_error(error, PX_PARTITION_ERROR, PX_PARTITION_ERROR_INVALID,
                  "partition 'profile' needs per-layer weights (a profile), none given");
      return NULL;
    }
    for (int i = 0; i < n; i++) {
      if (!isfinite(profile_weights[i]) || profile_weights[i] < 0) {
        g_set_error(error, PX_PARTITION_ERROR, PX_PARTITION_ERROR_INVALID,
                    "partition 'profile': weight of layer %d is %g, not a cost >= 0", i,
                    profile_weights[i]);
        return NULL;
      }
    }
    return px_partition_optimal(profile_weights, n, parts);
  }
  g_set_error(error, PX_PARTITION_ERROR, PX_PARTITION_ERROR_METHOD,
              "unknown partition method '%s' (uniform, parameters, type:REGEX, optimal, profile)",
              method);
  return NULL;
}

/* The part holding layer index `layer`. */
static int part_of_layer(const int *bounds, int parts, int layer) {
  for (int k = 0; k < parts; k++)
    if (layer >= bounds[k] && layer < bounds[k + 1]) return k;
  return -1;
}

PxPartition *px_partition_new(const PxModel *model, const PxPlan *plan,
                              const double *profile_weights, GError **error) {
  g_return_val_if_fail(model && plan, NULL);
  const char *method = plan->partition ? plan->partition : "parameters";
  const int pp = MAX(plan->pp, 1), vpp = MAX(plan->vpp, 1), parts = pp * vpp;

  int *bounds = method_bounds(model, plan, method, profile_weights, parts, error);
  if (!bounds) return NULL;
  g_autoptr(PxPartition) p = g_new0(PxPartition, 1);
  p->pp = pp;
  p->vpp = vpp;
  p->parts = parts;
  p->bounds = bounds;
  p->method = g_strdup(method);
  p->schedule = plan->schedule;

  for (int k = 0; k < parts; k++) {
    if (bounds[k] == bounds[k + 1]) {
      g_set_error(error, PX_PARTITION_ERROR, PX_PARTITION_ERROR_INVALID,
                  "partition '%s' leaves stage %d empty (%u layers over %d parts)", method, k,
                  model->n_layers, parts);
      return NULL;
    }
  }

  p->params = g_new0(gint64, parts);
  for (int k = 0; k < parts; k++)
    p->params[k] = px_model_range_stored_params_tp(model, bounds[k], bounds[k + 1], 1);

  if (model->desc.tied && parts > 1) {
    int first = -1, last = -1;
    for (guint i = 0; i < model->n_layers; i++) {
      if (model->layers[i].kind == PX_LAYER_EMBEDDING && first < 0) first = part_of_layer(bounds, parts, (int)i);
      if (model->layers[i].kind == PX_LAYER_LM_HEAD) last = part_of_layer(bounds, parts, (int)i);
    }
    if (first >= 0 && last >= 0 && first != last) {
      p->tied = TRUE;
      p->tied_first_part = first;
      p->tied_last_part = last;
    }
  }
  p->buckets = px_buckets_new(model, plan, p);
  return g_steal_pointer(&p);
}
