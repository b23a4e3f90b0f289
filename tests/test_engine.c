/* test_engine.c — the event engine against the analytic bubbles of each
 * schedule (GPipe/1F1B (p-1)/(m+p-1) of the step, interleaved (p-1)/(vm) of
 * the busy time, ZB-H1 (p-1)/(3m) of the busy time), hand-timed small cases
 * with communication, the in-flight counts of px_memory_in_flight, deadlock
 * reports and the agreement of one-rank-per-stage and full simulation. */
#include <glib.h>
#include <math.h>
#include <string.h>
#include "engine.h"
#include "memory.h"

typedef struct {
  PxPlan plan;
  PxProgram *prog;
  PxCostTable *tab;
} Case;

static void case_init(Case *c, PxScheduleKind k, int pp, int vpp, int m) {
  px_plan_init(&c->plan);
  c->plan.schedule = k;
  c->plan.pp = pp;
  c->plan.vpp = vpp;
  c->plan.m = m;
  GError *err = NULL;
  c->prog = px_program_new(&c->plan, NULL, &err);
  g_assert_no_error(err);
  c->tab = px_cost_table_ideal(pp, vpp);
}

static void case_clear(Case *c) {
  px_program_free(c->prog);
  px_cost_table_free(c->tab);
  px_plan_clear(&c->plan);
}

static PxSimResult *run(const Case *c, const PxSimOptions *opt) {
  GError *err = NULL;
  PxSimResult *res = px_simulate(c->prog, c->tab, opt, &err);
  g_assert_no_error(err);
  g_assert_nonnull(res);
  return res;
}

#define EPS 1e-9

static void test_ideal_gpipe_1f1b(void) {
  PxScheduleKind kinds[] = {PX_SCHED_GPIPE, PX_SCHED_1F1B};
  for (gsize k = 0; k < G_N_ELEMENTS(kinds); k++)
    for (int p = 1; p <= 8; p++)
      for (int m = 1; m <= 24; m++) {
        Case c;
        case_init(&c, kinds[k], p, 1, m);
        g_autoptr(PxSimResult) res = run(&c, NULL);
        /* T_F = 1, T_B = 2: step 3(m + p - 1), busy 3m on every rank */
        g_assert_cmpfloat_with_epsilon(res->step_time, 3.0 * (m + p - 1), EPS);
        g_assert_cmpfloat_with_epsilon(res->bubble_fraction, (p - 1.0) / (m + p - 1.0), EPS);
        for (int s = 0; s < p; s++) g_assert_cmpfloat_with_epsilon(res->ranks[s].busy, 3.0 * m, EPS);
        case_clear(&c);
      }
}

static void test_ideal_interleaved(void) {
  for (int p = 2; p <= 8; p++)
    for (int v = 1; v <= 4; v++)
      for (int m = p; m <= 4 * p; m += p) {
        Case c;
        case_init(&c, PX_SCHED_INTERLEAVED, p, v, m);
        g_autoptr(PxSimResult) res = run(&c, NULL);
        g_assert_cmpfloat_with_epsilon(res->bubble_overhead, (p - 1.0) / (v * m), EPS);
        /* each chunk takes 1 + 2 units: the step is 3(vm + p - 1) */
        g_assert_cmpfloat_with_epsilon(res->step_time, 3.0 * (v * m + p - 1), EPS);
        case_clear(&c);
      }
}

static void test_ideal_zb_h1(void) {
  for (int p = 1; p <= 8; p++)
    for (int m = p; m <= 4 * p; m++) {
      Case c;
      case_init(&c, PX_SCHED_ZB_H1, p, 1, m);
      g_autoptr(PxSimResult) res = run(&c, NULL);
      /* T_F = T_B = T_W = 1: bubble (p - 1)(T_F + T_B - T_W) = p - 1 on busy 3m */
      g_assert_cmpfloat_with_epsilon(res->bubble_overhead, (p - 1.0) / (3.0 * m), EPS);
      g_assert_cmpfloat_with_epsilon(res->step_time, 3.0 * m + p - 1, EPS);
      case_clear(&c);
    }
}

/* ZB-H2 and ZB-V (Qi et al. 2024): with T_F = T_B = T_W and m >= 2p - 1 each
 * rank is busy from its first op to its last, (p-1)(T_F + T_B - 2T_W) = 0
 * bubble within the rank's span; the last rank's first input arrives after
 * p - 1 forwards, so with every rank starting the step at 0 the step is
 * busy + (p - 1) T_F. ZB-V's T_F is one chunk's (half a stage). */
static void test_ideal_zb_h2_zb_v(void) {
  for (int p = 1; p <= 8; p++)
    for (int m = MAX(2 * p - 1, 1); m <= 4 * p + 3; m++) {
      Case c;
      case_init(&c, PX_SCHED_ZB_H2, p, 1, m);
      g_autoptr(PxSimResult) h2 = run(&c, NULL);
      g_assert_cmpfloat_with_epsilon(h2->step_time, 3.0 * m + p - 1, EPS);
      g_assert_cmpfloat_with_epsilon(h2->span, 3.0 * m, EPS);
      g_assert_cmpfloat_with_epsilon(h2->bubble_fraction, px_plan_bubble_fraction(&c.plan), EPS);
      g_assert_cmpfloat_with_epsilon(h2->bubble_fraction, (p - 1.0) / (3.0 * m + p - 1), EPS);
      case_clear(&c);
      case_init(&c, PX_SCHED_ZB_V, p, 2, m);
      g_autoptr(PxSimResult) v = run(&c, NULL);
      for (int s = 0; s < p; s++) g_assert_cmpfloat_with_epsilon(v->ranks[s].busy, 6.0 * m, EPS);
      g_assert_cmpfloat_with_epsilon(v->step_time, 6.0 * m + p - 1, EPS);
      g_assert_cmpfloat_with_epsilon(v->span, 6.0 * m, EPS);
      g_assert_cmpfloat_with_epsilon(v->bubble_fraction, px_plan_bubble_fraction(&c.plan), EPS);
      g_assert_cmpfloat_with_epsilon(v->bubble_fraction, (p - 1.0) / (6.0 * m + p - 1), EPS);
      case_clear(&c);
    }
}

/* DualPipeV on p ranks (the DualPipe README's PP = 2p stages on PP/2
 * devices): idle (PP/2 - 1)(F&B + B - 3W) per rank, F&B the overlapped pair,
 * here F + B (no compute is saved, the overlap hides communication), B the
 * full backward. Ideal: F = 1, B = 2, W = 1 → 2(p - 1) on 6m busy. */
static void test_ideal_dualpipev(void) {
  for (int p = 1; p <= 8; p++)
    for (int m = 2 * p; m <= 4 * p + 3; m++) {
      Case c;
      case_init(&c, PX_SCHED_DUALPIPEV, p, 2, m);
      g_autoptr(PxSimResult) res = run(&c, NULL);
      for (int s = 0; s < p; s++) g_assert_cmpfloat_with_epsilon(res->ranks[s].busy, 6.0 * m, EPS);
      g_assert_cmpfloat_with_epsilon(res->step_time, 6.0 * m + 2.0 * (p - 1), EPS);
      g_assert_cmpfloat_with_epsilon(res->bubble_fraction, px_plan_bubble_fraction(&c.plan), EPS);
      case_clear(&c);
    }
}

/* Unequal passes: the engine's bubble equals the closed forms of
 * px_plan_bubble_fraction_costs wherever they exist (zb-h1 from m = p, zb-h2
 * and zb-v from 2p - 1) over fixed and random T_F, T_B, T_W, including
 * T_W = 0, T_W > T_B and T_B < T_F (where a closed form is missing it must
 * be for the documented reason). DualPipeV's form needs T_F = T_B: the
 * fixed cases give it. */
static void test_unequal_costs(void) {
  const PxScheduleKind ks[] = {PX_SCHED_1F1B, PX_SCHED_INTERLEAVED, PX_SCHED_ZB_H1, PX_SCHED_ZB_H2, PX_SCHED_ZB_V,
                               PX_SCHED_DUALPIPEV};
  GRand *rng = g_rand_new_with_seed(20261130);
  int compared = 0;
  for (int i = 0; i < 60; i++) {
    const double fixed[][3] = {{1, 2, 1}, {1, 1, 2}, {2, 1, 1}, {1, 1.5, 0.5}, {1, 3, 1},
                               {1, 1.2, 0}, {1, 1, 0.5}, {2, 2, 0}, {1.5, 1.5, 1.5}};
    double f, b, w;
    if (i < (int)G_N_ELEMENTS(fixed)) {
      f = fixed[i][0], b = fixed[i][1], w = fixed[i][2];
    } else {
      f = g_rand_double_range(rng, 0.2, 3), b = g_rand_double_range(rng, 0.2, 3), w = g_rand_double_range(rng, 0, 3);
    }
    for (gsize k = 0; k < G_N_ELEMENTS(ks); k++)
      for (int p = 2; p <= 5; p++) {
        int vpp = ks[k] == PX_SCHED_INTERLEAVED || px_schedule_is_v(ks[k]) ? 2 : 1;
        PxPlan shape;
        px_plan_init(&shape);
        shape.schedule = ks[k];
        shape.pp = p;
        int m0 = px_plan_bubble_exact_from(&shape);
        px_plan_clear(&shape);
        Case c;
        for (int m = MAX(m0, p); m <= m0 + 2 * p; m += p) {
          case_init(&c, ks[k], p, vpp, m);
          double analytic = px_plan_bubble_fraction_costs(&c.plan, f, b, w);
          if (isnan(analytic)) {
            g_assert_true(ks[k] == PX_SCHED_ZB_V        ? b < f
                          : ks[k] == PX_SCHED_DUALPIPEV ? f != b || w > b
                                                        : w > MIN(f, b));
            case_clear(&c);
            continue;
          }
          px_cost_table_free(c.tab);
          c.tab = px_cost_table_uniform(p, vpp, f, b, w);
          g_autoptr(PxSimResult) res = run(&c, NULL);
          if (fabs(res->bubble_fraction - analytic) > 1e-12)
            g_error("%s p=%d m=%d costs %g,%g,%g: engine %.6f, closed form %.6f", px_schedule_name(ks[k]), p, m, f, b,
                    w, res->bubble_fraction, analytic);
          compared++;
          case_clear(&c);
        }
      }
  }
  g_rand_free(rng);
  g_assert_cmpint(compared, >, 400);
}

/* A cost table with every part taking f, b (input), w (weight) and every
 * message c. */
static PxCostTable *table_fbw(int pp, int vpp, double f, double b, double w, double c) {
  PxCostTable *t = px_cost_table_ideal(pp, vpp);
  for (int k = 0; k < t->parts; k++) {
    t->fwd[k] = f;
    t->bwd_input[k] = b;
    t->bwd_weight[k] = w;
    t->p2p_act[k] = t->p2p_grad[k] = c;
  }
  return t;
}

static PxSimResult *simulate_fbw(PxScheduleKind k, int pp, int vpp, int m, double f, double b, double w, double c) {
  Case cs;
  case_init(&cs, k, pp, vpp, m);
  px_cost_table_free(cs.tab);
  cs.tab = table_fbw(pp, vpp, f, b, w, c);
  PxSimOptions opt = {.no_timeline = TRUE};
  PxSimResult *res = run(&cs, &opt);
  case_clear(&cs);
  return res;
}

/* ZB-V with unequal passes (per chunk f, b input, w weight; no
 * communication): the step is every rank's 2m(f + b + w) plus
 * px_plan_zbv_idle. By hand, p = 2, m = 3, f = 1, b = 2, w = 1 (rank 0 holds
 * parts 0 and 3, rank 1 parts 1 and 2; order_zb_v's orders):
 *   rank 0: F0 0-3 (three), F1(0) 3-4, B1(0) 4-6, W1(0) 6-7, F1(1) 7-8,
 *           B1(1) 8-10, W1(1) 10-11, B0(0) 12-14 (waits rank 1's B0(0)),
 *           W0(0) 14-15, F1(2) 15-16, B1(2) 16-18, W1(2) 18-19, B0(1) 19-21,
 *           W0(1) 21-22, B0(2) 23-25, W0(2) 25-26;
 *   rank 1: ..., B0(2) 21-23, W0(1) 23-24, W1(2) 24-25, W0(2) 25-26:
 * a step of 26 = 24 + 2, the formula's max(b, 2(b - w)) = 2. With f = b = w
 * = 1 (Qi et al. §6: zero bubble within each rank's span) p = 4, m = 8 gives
 * 6m + p - 1 = 51 and a span of 6m = 48. */
static void test_zbv_unequal(void) {
  g_autoptr(PxSimResult) hand = simulate_fbw(PX_SCHED_ZB_V, 2, 2, 3, 1, 2, 1, 0);
  g_assert_cmpfloat_with_epsilon(hand->step_time, 26, EPS);
  g_assert_cmpfloat_with_epsilon(px_plan_zbv_idle(2, 1, 2, 1), 2, EPS);
  g_autoptr(PxSimResult) eq = simulate_fbw(PX_SCHED_ZB_V, 4, 2, 8, 1, 1, 1, 0);
  g_assert_cmpfloat_with_epsilon(eq->step_time, 51, EPS);
  g_assert_cmpfloat_with_epsilon(eq->span, 48, EPS);
  g_assert_cmpfloat_with_epsilon(px_plan_zbv_idle(4, 1, 1, 1), 3, EPS);
  /* the regimes: b the largest term, 2(b - w) (small w), w > b */
  static const double fbw[][3] = {{1, 1, 1},    {1, 1.14, 0.88}, {1, 1.5, 0.6}, {1, 2, 1}, {1, 3, 1}, {1, 1, 0.1},
                                  {0.5, 1, 2}, {1, 1.2, 2},     {0.7, 0.7, 3}, {1, 2, 2}, {0.3, 2.5, 0.05}};
  for (gsize i = 0; i < G_N_ELEMENTS(fbw); i++)
    for (int p = 1; p <= 8; p++)
      for (int m = MAX(2 * p - 1, 1); m <= 3 * p + 1; m += MAX(p / 2, 1)) {
        double f = fbw[i][0], b = fbw[i][1], w = fbw[i][2];
        g_autoptr(PxSimResult) res = simulate_fbw(PX_SCHED_ZB_V, p, 2, m, f, b, w, 0);
        double idle = res->step_time - 2 * m * (f + b + w);
        if (fabs(idle - px_plan_zbv_idle(p, f, b, w)) > 1e-9)
          g_error("zb-v p=%d m=%d f=%g b=%g w=%g: engine idle %.6f, formula %.6f", p, m, f, b, w, idle,
                  px_plan_zbv_idle(p, f, b, w));
      }
  g_assert_true(isnan(px_plan_zbv_idle(4, 2, 1, 1)));  /* b < f: outside the formula's domain */
}

/* Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024, Table 5: bubble
 * rates (cost - m(F+B+W)) / cost at the profiled F, B, W, comm (µs) of their
 * 1.5B/6.2B/14.6B/28.3B models. cost: the step (all ranks start at 0) for
 * 1F1B, 1F1B-I (the model's l layers in l/p chunks per rank) and ZB-H1; for
 * ZB-H2 the longest rank span (their optimizer post-validation). The same
 * numbers are printed by sail-sg/zero-bubble-pipeline-parallelism
 * megatron/core/pipeline_parallel/efficiency.py iclr_bubble_rates. */
static void test_zero_bubble_table5(void) {
  static const struct {
    int p, m;
    double f, b, w, c;
    int layers;
    double r1f1b, r1f1bi, rh1, rh2;
  } rows[] = {
    {8, 24, 18522, 18086, 9337, 601, 24, 0.2431, 0.1055, 0.1585, 0.1083},
    {8, 32, 18513, 18086, 9331, 626, 24, 0.1985, 0.0818, 0.1242, 0.0837},
    {8, 64, 18546, 18097, 9321, 762, 24, 0.1240, 0.0443, 0.0674, 0.0444},
    {8, 24, 29718, 29444, 19927, 527, 32, 0.2347, 0.0808, 0.1323, 0.0698},
    {8, 32, 29802, 29428, 19530, 577, 32, 0.1898, 0.0628, 0.1045, 0.0559},
    {8, 64, 29935, 29621, 19388, 535, 32, 0.1091, 0.0320, 0.0554, 0.0294},
    {16, 48, 11347, 11248, 8132, 377, 48, 0.2552, 0.1104, 0.1397, 0.0672},
    {16, 64, 11307, 11254, 8101, 379, 48, 0.2082, 0.0852, 0.1088, 0.0516},
    {16, 128, 11325, 11308, 8109, 378, 48, 0.1251, 0.0445, 0.0576, 0.0266},
    {32, 96, 10419, 10207, 7715, 408, 64, 0.2646, 0.1493, 0.1421, 0.0641},
    {32, 128, 10408, 10204, 7703, 408, 64, 0.2168, 0.1164, 0.1106, 0.0490},
    {32, 256, 10402, 10248, 7698, 460, 64, 0.1352, 0.0624, 0.0594, 0.0257},
  };
  for (gsize i = 0; i < G_N_ELEMENTS(rows); i++) {
    const __typeof__(rows[0]) *r = &rows[i];
    double busy = r->m * (r->f + r->b + r->w);
    int v = r->layers / r->p;
    g_autoptr(PxSimResult) o = simulate_fbw(PX_SCHED_1F1B, r->p, 1, r->m, r->f, r->b, r->w, r->c);
    g_autoptr(PxSimResult) il = simulate_fbw(PX_SCHED_INTERLEAVED, r->p, v, r->m, r->f / v, r->b / v, r->w / v, r->c);
    g_autoptr(PxSimResult) h1 = simulate_fbw(PX_SCHED_ZB_H1, r->p, 1, r->m, r->f, r->b, r->w, r->c);
    g_autoptr(PxSimResult) h2 = simulate_fbw(PX_SCHED_ZB_H2, r->p, 1, r->m, r->f, r->b, r->w, r->c);
    double got[4] = {1 - busy / o->step_time, 1 - busy / il->step_time, 1 - busy / h1->step_time, 1 - busy / h2->span};
    double want[4] = {r->r1f1b, r->r1f1bi, r->rh1, r->rh2};
    g_test_message("p=%d m=%d: 1F1B %.4f (%.4f) 1F1B-I %.4f (%.4f) ZB-H1 %.4f (%.4f) ZB-H2 %.4f (%.4f)", r->p, r->m,
                   got[0], want[0], got[1], want[1], got[2], want[2], got[3], want[3]);
    for (int k = 0; k < 4; k++)
      if (fabs(got[k] - want[k]) > 0.005)
        g_error("Table 5 row %zu (p=%d m=%d) column %d: bubble rate %.4f, paper %.4f", i, r->p, r->m, k, got[k], want[k]);
    /* and ZB-H2's span is their closed form m(F+B+W) + (p-1)(F+B+2c-2W) */
    g_assert_cmpfloat_with_epsilon(h2->span, busy + (r->p - 1) * (r->f + r->b + 2 * r->c - 2 * r->w), 1e-6);
  }
}

/* The DualPipe README (deepseek-ai/DualPipe), "based on the same number of
 * PP stages": DualPipeV bubble (PP/2-1)(F&B+B-3W), 2x parameters and PP+1
 * activations per device on PP/2 devices; 1F1B (PP-1)(F+B), 1x, PP. Here
 * PP = 2p chunks on p ranks; F&B = F + B. The formula holds in the engine when
 * the forward and the input backward take equally long and W no longer. */
static void test_dualpipe_readme(void) {
  static const double fbw[][3] = {{1, 1, 1}, {1, 1, 0.5}, {2, 2, 0.3}, {1.5, 1.5, 1.5}, {1, 1, 0}};
  for (int p = 2; p <= 8; p++)
    for (gsize i = 0; i < G_N_ELEMENTS(fbw); i++) {
      double f = fbw[i][0], b = fbw[i][1], w = fbw[i][2], B = b + w, FB = f + B;
      int m = 2 * p + 5;
      g_autoptr(PxSimResult) res = simulate_fbw(PX_SCHED_DUALPIPEV, p, 2, m, f, b, w, 0);
      double busy = 2 * m * (f + b + w);
      for (int s = 0; s < p; s++) g_assert_cmpfloat_with_epsilon(res->step_time - res->ranks[s].busy, (p - 1) * (FB + B - 3 * w), 1e-9);
      g_assert_cmpfloat_with_epsilon(res->ranks[0].busy, busy, 1e-9);
      /* 1F1B on PP = 2p devices, one chunk each: (PP-1)(F+B) idle */
      g_autoptr(PxSimResult) o = simulate_fbw(PX_SCHED_1F1B, 2 * p, 1, m, f, b, w, 0);
      g_assert_cmpfloat_with_epsilon(o->step_time - o->ranks[0].busy, (2 * p - 1) * (f + B), 1e-9);
    }
  /* activations: PP + 1 chunk-micro-batches on every DualPipeV rank, PP on
   * 1F1B's first device; ZB-V 2p chunks (= 1F1B's p micro-batches of a
   * rank's two chunks), ZB-H2 2p - 1 micro-batches (Qi et al. Table 1:
   * (2p-1) M_B against 1F1B's p M_B). Held from F to B, or to W when split. */
  for (int p = 1; p <= 8; p++) {
    int m = 4 * p;
    struct { PxScheduleKind k; int v, want; } cases[] = {
      {PX_SCHED_DUALPIPEV, 2, 2 * p + 1}, {PX_SCHED_ZB_V, 2, 2 * p}, {PX_SCHED_ZB_H2, 1, 2 * p - 1},
      {PX_SCHED_ZB_H1, 1, p}, {PX_SCHED_1F1B, 1, p}};
    for (gsize k = 0; k < G_N_ELEMENTS(cases); k++) {
      Case c;
      case_init(&c, cases[k].k, p, cases[k].v, m);
      g_autofree double *act = g_new(double, p * cases[k].v);
      for (int i = 0; i < p * cases[k].v; i++) act[i] = 1;
      PxSimOptions opt = {.act_bytes = act, .act_w_bytes = act, .no_timeline = TRUE};
      g_autoptr(PxSimResult) res = run(&c, &opt);
      double ones[2] = {1, 1};
      int n;
      g_assert_cmpfloat_with_epsilon(res->stage_peak_memory[0], cases[k].want, EPS);
      g_assert_cmpfloat_with_epsilon(px_schedule_peak_activations(&c.plan, 0, ones, &n), cases[k].want, EPS);
      g_assert_cmpint(n, ==, cases[k].want);
      for (int s = 0; s < p; s++)
        g_assert_cmpfloat_with_epsilon(res->stage_peak_memory[s], px_schedule_peak_activations(&c.plan, s, ones, NULL), EPS);
      case_clear(&c);
    }
  }
}

static void test_ideal_naive_and_gpipe_picture(void) {
  Case c;
  case_init(&c, PX_SCHED_NAIVE, 4, 1, 1);
  g_autoptr(PxSimResult) naive = run(&c, NULL);
  for (int s = 0; s < 4; s++) g_assert_cmpfloat_with_epsilon(naive->ranks[s].busy / naive->step_time, 0.25, EPS);
  g_assert_cmpfloat_with_epsilon(naive->bubble_fraction, 0.75, EPS);
  case_clear(&c);
  /* naive with 3 micro-batches: strictly one after another, 3 × 12 */
  case_init(&c, PX_SCHED_NAIVE, 4, 1, 3);
  g_autoptr(PxSimResult) naive3 = run(&c, NULL);
  g_assert_cmpfloat_with_epsilon(naive3->step_time, 36, EPS);
  case_clear(&c);
  case_init(&c, PX_SCHED_GPIPE, 4, 1, 4);
  g_autoptr(PxSimResult) gpipe = run(&c, NULL);
  g_assert_cmpfloat_with_epsilon(gpipe->bubble_fraction, 3.0 / 7.0, EPS);
  g_assert_cmpfloat_with_epsilon(gpipe->breakdown.bubble / gpipe->step_time, 3.0 / 7.0, EPS);
  case_clear(&c);
}

/* From the timeline: every (mb, chunk) forward ends before its backward
 * starts on each rank; every send event has a receive event on the peer with
 * the same transfer interval; compute ops on one rank never overlap. */
static void test_timeline_order(void) {
  PxScheduleKind kinds[] = {PX_SCHED_NAIVE, PX_SCHED_GPIPE, PX_SCHED_1F1B, PX_SCHED_INTERLEAVED, PX_SCHED_ZB_H1};
  for (gsize k = 0; k < G_N_ELEMENTS(kinds); k++) {
    int v = kinds[k] == PX_SCHED_INTERLEAVED ? 3 : 1;
    Case c;
    case_init(&c, kinds[k], 4, v, 8);
    for (int i = 0; i < c.tab->parts; i++) c.tab->p2p_act[i] = c.tab->p2p_grad[i] = 0.25;
    g_autoptr(PxSimResult) res = run(&c, NULL);
    GArray *evs = res->timeline->events;
    int n = 8 * v;
    for (int s = 0; s < 4; s++) {
      g_autofree double *fend = g_new(double, n), *bstart = g_new(double, n);
      double last_end = 0;
      int sends = 0, recvs = 0;
      for (guint i = 0; i < evs->len; i++) {
        const PxEvent *e = &g_array_index(evs, PxEvent, i);
        if (e->stage != s) continue;
        if (e->stream == PX_STREAM_COMPUTE) {
          g_assert_cmpfloat(e->start, >=, last_end - EPS);
          last_end = e->end;
        }
        if (e->kind == PX_OP_FORWARD) fend[e->mb * v + e->chunk] = e->end;
        if (e->kind == PX_OP_BACKWARD || e->kind == PX_OP_BACKWARD_INPUT) bstart[e->mb * v + e->chunk] = e->start;
        sends += e->stream == PX_STREAM_SEND;
        recvs += e->stream == PX_STREAM_RECV;
        if (e->stream != PX_STREAM_SEND) continue;
        gboolean found = FALSE;
        for (guint j = 0; j < evs->len && !found; j++) {
          const PxEvent *r = &g_array_index(evs, PxEvent, j);
          found = r->stream == PX_STREAM_RECV && r->mb == e->mb && r->start == e->start && r->end == e->end &&
                  (e->kind == PX_OP_SEND_ACT ? r->kind == PX_OP_RECV_ACT : r->kind == PX_OP_RECV_GRAD);
        }
        g_assert_true(found);
      }
      for (int i = 0; i < n; i++) g_assert_cmpfloat(fend[i], <=, bstart[i]);
      /* interior stages send and receive 2 messages per (mb, chunk) */
      if (s > 0 && s < 3) g_assert_cmpint(sends, ==, 2 * n);
      if (s > 0 && s < 3) g_assert_cmpint(recvs, ==, 2 * n);
    }
    case_clear(&c);
  }
}

/* Peak in-flight micro-batches: GPipe m, 1F1B and ZB-H1 min(p - s, m) (the
 * engine counts a micro-batch to its backward-input pass); the simulated
 * activation peak with per-micro-batch bytes 1 (1/v per chunk), all held to
 * the weight pass under ZB-H1, equals px_memory_in_flight for every schedule. */
static void test_in_flight(void) {
  PxScheduleKind kinds[] = {PX_SCHED_NAIVE, PX_SCHED_GPIPE, PX_SCHED_1F1B, PX_SCHED_INTERLEAVED, PX_SCHED_ZB_H1};
  for (gsize k = 0; k < G_N_ELEMENTS(kinds); k++)
    for (int p = 1; p <= 6; p++)
      for (int m = 1; m <= 12; m++) {
        int v = kinds[k] == PX_SCHED_INTERLEAVED ? 2 : 1;
        if (kinds[k] == PX_SCHED_INTERLEAVED && m % p) continue;
        Case c;
        case_init(&c, kinds[k], p, v, m);
        g_autofree double *act = g_new(double, p * v);
        for (int i = 0; i < p * v; i++) act[i] = 1.0 / v;
        PxSimOptions opt = {.act_bytes = act, .act_w_bytes = kinds[k] == PX_SCHED_ZB_H1 ? act : NULL};
        g_autoptr(PxSimResult) res = run(&c, &opt);
        for (int s = 0; s < p; s++) {
          int expect = kinds[k] == PX_SCHED_NAIVE ? 1 : kinds[k] == PX_SCHED_GPIPE ? m : MIN(p - s, m);
          if (kinds[k] != PX_SCHED_INTERLEAVED) g_assert_cmpint(res->stage_peak_in_flight[s], ==, expect);
          g_assert_cmpfloat_with_epsilon(res->stage_peak_memory[s], px_memory_in_flight(&c.plan, s), EPS);
        }
        case_clear(&c);
      }
}

/* ZB-H1 keeps part of the activations from B to W: stage 3 of p = 4 holds back
 * W0..W2 to the end of its stream (F0 B0 F1 B1 F2 B2 F3 B3 W0 F4 ...), so with
 * 1 byte per micro-batch, 0.5 of it kept for W, its peak is at F3: B-pending 1
 * (F3) + W-pending 3 × 0.5 = 2.5; stage 0 frees every W right after its B:
 * peak 4 (its four warm-up forwards). */
static void test_zb_h1_memory(void) {
  Case c;
  case_init(&c, PX_SCHED_ZB_H1, 4, 1, 8);
  double act[4] = {1, 1, 1, 1}, kept[4] = {0.5, 0.5, 0.5, 0.5}, stat[4] = {10, 20, 30, 40};
  PxSimOptions opt = {.act_bytes = act, .act_w_bytes = kept, .static_bytes = stat};
  g_autoptr(PxSimResult) res = run(&c, &opt);
  g_assert_cmpfloat_with_epsilon(res->stage_peak_memory[0], 10 + 4, EPS);
  g_assert_cmpfloat_with_epsilon(res->stage_peak_memory[3], 40 + 2.5, EPS);
  /* memory samples end where they began: everything freed */
  GArray *mem = res->timeline->memory;
  double last3 = -1;
  for (guint i = 0; i < mem->len; i++)
    if (g_array_index(mem, PxMemSample, i).rank == 3) last3 = g_array_index(mem, PxMemSample, i).bytes;
  g_assert_cmpfloat_with_epsilon(last3, 40, EPS);
  case_clear(&c);
}

/* pp = 2, m = 1, 1F1B, F = 1, B = 2, each message 0.5:
 * stage 0: F 0-1, send 1-1.5; stage 1: waits to 1.5, F 1.5-2.5, B 2.5-4.5,
 * send 4.5-5; stage 0: B 5-7. Step 7; stage 0 waits 1 -> 5 for the gradient,
 * 0.5 of it on the transfer. */
static void test_p2p_hand(void) {
  Case c;
  case_init(&c, PX_SCHED_1F1B, 2, 1, 1);
  for (int i = 0; i < 2; i++) c.tab->p2p_act[i] = c.tab->p2p_grad[i] = 0.5;
  g_autoptr(PxSimResult) res = run(&c, NULL);
  g_assert_cmpfloat_with_epsilon(res->step_time, 7, EPS);
  g_assert_cmpfloat_with_epsilon(res->ranks[0].idle, 4, EPS);
  g_assert_cmpfloat_with_epsilon(res->ranks[0].exposed[PX_COMM_P2P], 0.5, EPS);
  g_assert_cmpfloat_with_epsilon(res->ranks[1].exposed[PX_COMM_P2P], 0.5, EPS);
  /* breakdown: compute 3, p2p 0.5, bubble 3.5 on both ranks */
  g_assert_cmpfloat_with_epsilon(res->breakdown.compute, 3, EPS);
  g_assert_cmpfloat_with_epsilon(res->breakdown.exposed[PX_COMM_P2P], 0.5, EPS);
  g_assert_cmpfloat_with_epsilon(res->breakdown.bubble, 3.5, EPS);
  case_clear(&c);
}

/* DeepSpeed's pipeline engine (--stack deepspeed): TrainSchedule's order
 * with blocking sends, p = 2, m = 2, F = 1, B = 2, every message 0.5.
 * Stage 0: F0 SA0 F1 SA1 RG0 B0 RG1 B1; stage 1: RA0 F0 B0 RA1 SG0 F1 B1
 * SG1. By hand, with rendezvous (8 MiB messages over a 4 MiB buffer):
 * SA0 1-1.5 (RA0 posted at 0); F1 1.5-2.5; stage 1 F0 1.5-2.5, B0
 * 2.5-4.5, posts RA1 at 4.5, so SA1 runs 4.5-5; SG0 5-5.5 (RG0 posted at
 * 5); stage 0 B0 5.5-7.5, posts RG1 at 7.5; stage 1 F1 5.5-6.5, B1
 * 6.5-8.5, SG1 8.5-9; stage 0 B1 9-11: step 11. Eager (messages within the
 * buffer): SA1 2.5-3, stage 1 takes it at 4.5, SG0 4.5-5, F1 5-6, B1 6-8,
 * SG1 8-8.5; stage 0 B0 5-7, B1 8.5-10.5: step 10.5. */
static void test_deepspeed_rendezvous(void) {
  const double msg[] = {8 << 20, 4 << 20}, want[] = {11.0, 10.5};
  for (int i = 0; i < 2; i++) {
    Case c;
    px_plan_init(&c.plan);
    c.plan.schedule = PX_SCHED_1F1B;
    c.plan.stack = PX_STACK_DEEPSPEED;
    c.plan.pp = 2;
    c.plan.m = 2;
    GError *err = NULL;
    c.prog = px_program_new(&c.plan, NULL, &err);
    g_assert_no_error(err);
    c.tab = table_fbw(2, 1, 1, 2, 0, 0.5);
    c.tab->p2p_blocking = c.tab->p2p_rendezvous = TRUE;
    c.tab->p2p_eager_bytes = 4 << 20;
    for (int k = 0; k < 2; k++) c.tab->p2p_bytes[k] = msg[i];
    g_autoptr(PxSimResult) res = run(&c, NULL);
    g_assert_cmpfloat_with_epsilon(res->step_time, want[i], EPS);
    case_clear(&c);
  }
  /* free messages: with DeepSpeed's step mapping the rendezvous holds no
   * stage back, the step is 1F1B's 3(m + p - 1) (F = 1, B = 2) */
  for (int p = 2; p <= 6; p++)
    for (int m = 1; m <= 13; m++) {
      Case c;
      px_plan_init(&c.plan);
      c.plan.schedule = PX_SCHED_1F1B;
      c.plan.stack = PX_STACK_DEEPSPEED;
      c.plan.pp = p;
      c.plan.m = m;
      c.prog = px_program_new(&c.plan, NULL, NULL);
      c.tab = px_cost_table_ideal(p, 1);
      c.tab->p2p_blocking = c.tab->p2p_rendezvous = TRUE;
      for (int k = 0; k < p; k++) c.tab->p2p_bytes[k] = 8 << 20;
      c.tab->p2p_eager_bytes = 4 << 20;
      g_autoptr(PxSimResult) res = run(&c, NULL);
      g_assert_cmpfloat_with_epsilon(res->step_time, 3.0 * (m + p - 1), EPS);
      case_clear(&c);
    }
}

/* pp = 1, interleaved v = 2, m = 1: F0c0 0-1, F0c1 1-2, B0c1 2-4, B0c0 4-6;
 * dp reduction 4 in all, 2 per chunk. Overlapped: chunk 1's reduction 4-6,
 * chunk 0's 6-8, optimizer (1) 8-9. Not overlapped: both after the last
 * backward, 6-10, optimizer 10-11. */
/* One stage, dp 2, ideal compute, a DP reduction of 4 and an optimizer step of 1. */
static void dp_case_init(Case *c, PxScheduleKind k, int vpp, int m, gboolean overlap) {
  px_plan_init(&c->plan);
  c->plan.schedule = k;
  c->plan.vpp = vpp;
  c->plan.m = m;
  c->plan.dp = 2;
  c->prog = px_program_new(&c->plan, NULL, NULL);
  c->tab = px_cost_table_ideal(1, vpp);
  c->tab->dp_reduce[0] = 4;
  c->tab->optimizer[0] = 1;
  c->tab->overlap_dp = overlap;
}

static void test_dp_overlap_hand(void) {
  for (int overlap = 0; overlap <= 1; overlap++) {
    Case c;
    dp_case_init(&c, PX_SCHED_INTERLEAVED, 2, 1, overlap);
    g_autoptr(PxSimResult) res = run(&c, NULL);
    g_assert_cmpfloat_with_epsilon(res->step_time, overlap ? 9 : 11, EPS);
    g_assert_cmpfloat_with_epsilon(res->ranks[0].exposed[PX_COMM_DP], overlap ? 2 : 4, EPS);
    g_assert_cmpfloat_with_epsilon(res->ranks[0].busy, 7, EPS);
    case_clear(&c);
  }
}

/* An overlapped DP reduction holds SMs beside the compute stream (cost.h
 * coll_sm_share, px_cost_overlap_share; docs/cost.md section 3 "persistent
 * GEMMs"). Interleaved, pp = 1, vpp = 2, m = 1 as test_dp_overlap_hand:
 * F0 0-1, F1 1-2, B1 2-4, chunk 1's reduction (2) 4-6 beside B0 (2 of
 * work). Share 0.5, no persistent GEMMs: B0 does 0.5 per second of it,
 * 1 by 6, the other 1 at full speed: 4-7 (max(c, C + share c) = max(2, 3));
 * chunk 0's reduction 7-9, optimizer 9-10: step 10, exposed DP 1 + 2.
 * Share 0.2, 2 waves, B0 half GEMMs: 1 / (0.5 x 2 + 0.5 / 0.8) = 8/13 per
 * second, so 2 x 5/13 = 10/13 later: step 9 + 10/13, exposed 2 + 10/13.
 * Bucketed (m = 1, one chunk: F 0-1, B 1-3, four buckets of 0.25, bucket b
 * ready 1.5 + 0.5 b of the unslowed backward) at share 0.2 and no waves: each of
 * buckets 0-2 lies inside the backward and costs it 0.2 x 0.25 = 0.05, so
 * bucket 1 starts at 2.05, bucket 2 at 2.6, the backward ends at 3.15 and
 * the last bucket runs 3.15-3.4: optimizer 3.4-4.4, exposed 0.15 + 0.25. */
static void split_equal(PxProgram *prog, int layers, int per);

static void test_dp_reduction_sm_share(void) {
  for (int waves = 0; waves <= 1; waves++) {
    Case c;
    dp_case_init(&c, PX_SCHED_INTERLEAVED, 2, 1, TRUE);
    c.tab->coll_sm_share = waves ? 0.2 : 0.5;
    c.tab->coll_gemm_waves = waves ? 2 : 1;
    c.tab->gemm_bwd[0] = c.tab->gemm_bwd[1] = 1; /* of bwd_input + bwd_weight = 2 */
    g_autoptr(PxSimResult) res = run(&c, NULL);
    double slow = waves ? 10.0 / 13 : 1;
    g_assert_cmpfloat_with_epsilon(res->step_time, 9 + slow, EPS);
    g_assert_cmpfloat_with_epsilon(res->ranks[0].exposed[PX_COMM_DP], 2 + slow, EPS);
    g_assert_cmpfloat_with_epsilon(res->ranks[0].busy, 7, EPS);
    case_clear(&c);
  }
  Case c;
  dp_case_init(&c, PX_SCHED_1F1B, 1, 1, TRUE);
  c.tab->dp_reduce[0] = 1;
  c.tab->coll_sm_share = 0.2;
  split_equal(c.prog, 4, 1);
  g_autoptr(PxSimResult) res = run(&c, NULL);
  g_assert_cmpfloat_with_epsilon(res->step_time, 4.4, EPS);
  g_assert_cmpfloat_with_epsilon(res->ranks[0].exposed[PX_COMM_DP], 0.4, EPS);
  double start[4] = {1.5, 2.05, 2.6, 3.15};
  int seen = 0;
  for (guint i = 0; i < res->timeline->events->len; i++) {
    const PxEvent *ev = &g_array_index(res->timeline->events, PxEvent, i);
    if (ev->kind != PX_OP_REDUCE_GRADS) continue;
    g_assert_cmpfloat_with_epsilon(ev->start, start[ev->bucket], EPS);
    seen++;
  }
  g_assert_cmpint(seen, ==, 4);
  case_clear(&c);
}

/* A hand layout of one part of `layers` layers of equal elements and FLOPs,
 * `per` layers to a bucket (size = per elements of 1 each). */
static void split_equal(PxProgram *prog, int layers, int per) {
  int bounds[2] = {0, layers};
  g_autofree double *e = g_new(double, layers), *f = g_new(double, layers);
  for (int i = 0; i < layers; i++) e[i] = f[i] = 1;
  g_autoptr(PxBuckets) b = px_buckets_from_layers(1, bounds, e, f, per);
  px_program_split_reductions(prog, b);
}

/* Bucketed overlap at pp = 1, one chunk, m = 2: F 0-1, B 1-3, F 3-4, B 4-6.
 * Four equal layers, two to a bucket: bucket 0 (layers 2-3, half the
 * reduction: 2) may start once the last backward has run half its layers,
 * 6 - 0.5 x 2 = 5: 5-7; bucket 1 (layers 0-1) when the backward ends, 6,
 * but the collective stream is busy until 7: 7-9; optimizer (1) 9-10;
 * exposed 9 - 6 = 3. Without buckets the reduction (4) starts at 6: 6-10,
 * optimizer 10-11, exposed 4. Exposed DP reduction is not bubble: the
 * bubble is 0, dp_exposed_fraction = exposed / step. */
static void test_dp_buckets_hand(void) {
  for (int buckets = 0; buckets <= 1; buckets++) {
    Case c;
    dp_case_init(&c, PX_SCHED_1F1B, 1, 2, TRUE);
    if (buckets) split_equal(c.prog, 4, 2);
    g_autoptr(PxSimResult) res = run(&c, NULL);
    double step = buckets ? 10 : 11, exposed = buckets ? 3 : 4;
    g_assert_cmpfloat_with_epsilon(res->step_time, step, EPS);
    g_assert_cmpfloat_with_epsilon(res->ranks[0].exposed[PX_COMM_DP], exposed, EPS);
    g_assert_cmpfloat_with_epsilon(res->bubble_fraction, 0, EPS);
    g_assert_cmpfloat_with_epsilon(res->dp_exposed_fraction, exposed / step, EPS);
    /* per instruction kind: 2 forwards, 2 backwards (2 each), the reduction, the step */
    g_assert_cmpfloat_with_epsilon(res->ranks[0].op_time[PX_OP_FORWARD], 2, EPS);
    g_assert_cmpfloat_with_epsilon(res->ranks[0].op_time[PX_OP_BACKWARD], 4, EPS);
    g_assert_cmpfloat_with_epsilon(res->ranks[0].op_time[PX_OP_REDUCE_GRADS], 4, EPS);
    g_assert_cmpfloat_with_epsilon(res->ranks[0].op_time[PX_OP_OPTIMIZER_STEP], 1, EPS);
    case_clear(&c);
  }
}

/* A bucket is a collective of its own: the reduction's latency term (dp_lat)
 * once per bucket, the rest by share. test_dp_buckets_hand's case with
 * dp_lat 1: each of the two buckets 1 + (4 - 1)/2 = 2.5; bucket 0 from 5
 * to 7.5, bucket 1 7.5-10, optimizer 10-11: exposed 4, step 11. */
static void test_dp_buckets_latency(void) {
  Case c;
  dp_case_init(&c, PX_SCHED_1F1B, 1, 2, TRUE);
  c.tab->dp_lat[0] = 1;
  split_equal(c.prog, 4, 2);
  g_autoptr(PxSimResult) res = run(&c, NULL);
  g_assert_cmpfloat_with_epsilon(res->step_time, 11, EPS);
  g_assert_cmpfloat_with_epsilon(res->ranks[0].exposed[PX_COMM_DP], 4, EPS);
  g_assert_cmpfloat_with_epsilon(res->ranks[0].op_time[PX_OP_REDUCE_GRADS], 5, EPS);
  case_clear(&c);
}

/* Megatron-Core's parameter gathers hold up the step's first forward of
 * part 0 (cost.h param_gather, px_cost_param_gather_exposed). pp = 1, m = 2,
 * four equal layers two to a bucket: in forward order bucket 1 (layers 0-1)
 * then bucket 0 (layers 2-3), each half the forward (0.5) and half the
 * gather: 0.5 (latency term) + (2 - 0.5)/2 = 1.25. Share 0.1: 1.25 +
 * max(1.25, 0.5 + 0.125) + 0.5 = 3 against 1 of forward: 2 exposed. F 2-3,
 * B 3-5, F 5-6, B 6-8; the reduction (4) in two buckets 7-9, 9-11;
 * optimizer 11-12: step 12, exposed DP 2 + 3. One bucket: its whole gather
 * (2), then F 2-3, B 3-5, F 5-6, B 6-8, reduction 8-12, optimizer 12-13:
 * exposed 2 + 4. */
static void test_param_gather_first_forward(void) {
  for (int buckets = 0; buckets <= 1; buckets++) {
    Case c;
    dp_case_init(&c, PX_SCHED_1F1B, 1, 2, TRUE);
    c.tab->param_gather[0] = 2;
    c.tab->param_gather_lat[0] = 0.5;
    c.tab->coll_sm_share = 0.1;
    if (buckets) split_equal(c.prog, 4, 2);
    g_autoptr(PxSimResult) res = run(&c, NULL);
    g_assert_cmpfloat_with_epsilon(res->step_time, buckets ? 12 : 13, EPS);
    g_assert_cmpfloat_with_epsilon(res->ranks[0].exposed[PX_COMM_DP], buckets ? 5 : 6, EPS);
    case_clear(&c);
  }
}

/* n equal buckets whose reductions each take less than the backward's 1/n
 * are all hidden but the last: pp = 1, m = 1, F 0-1, B 1-3, n = 4 layers,
 * one to a bucket, the reduction 1 (0.25 per bucket). Bucket b may start at
 * 3 - (3 - b)/4 x 2 = 1.5 + 0.5 b, runs 0.25; the last 3-3.25, so the
 * exposed reduction after the backward is one bucket's, 0.25; the optimizer
 * (1) 3.25-4.25. Under ZB-H1 (m = 1: F 0-1, BI 1-2, W 2-3) the buckets are
 * fractions of W, the chunk's last backward: 3 - (3 - b)/4 = 2.25 + 0.25 b,
 * back to back, the last 3-3.25 again. */
static void test_dp_buckets_one_exposed(void) {
  for (int zb = 0; zb <= 1; zb++) {
    Case c;
    dp_case_init(&c, zb ? PX_SCHED_ZB_H1 : PX_SCHED_1F1B, 1, 1, TRUE);
    c.tab->dp_reduce[0] = 1;
    split_equal(c.prog, 4, 1);
    g_assert_cmpuint(c.prog->ranks[0].n, ==, zb ? 9 : 8); /* L F B DP x4 OPT; zb: L F BI W DP x4 OPT */
    g_autoptr(PxSimResult) res = run(&c, NULL);
    g_assert_cmpfloat_with_epsilon(res->ranks[0].exposed[PX_COMM_DP], 0.25, EPS);
    g_assert_cmpfloat_with_epsilon(res->step_time, 4.25, EPS);
    /* the timeline's reductions: bucket b from 1.5 + 0.5 b (zb: 2.25 + 0.25 b) */
    int seen = 0;
    for (guint i = 0; i < res->timeline->events->len; i++) {
      const PxEvent *ev = &g_array_index(res->timeline->events, PxEvent, i);
      if (ev->kind != PX_OP_REDUCE_GRADS) continue;
      g_assert_cmpint(ev->bucket, >=, 0);
      g_assert_cmpfloat_with_epsilon(ev->start, zb ? 2.25 + 0.25 * ev->bucket : 1.5 + 0.5 * ev->bucket, EPS);
      g_assert_cmpfloat_with_epsilon(ev->end - ev->start, 0.25, EPS);
      seen++;
    }
    g_assert_cmpint(seen, ==, 4);
    case_clear(&c);
  }
}

/* MoE: the dense and the routed experts' gradients in two bucket sequences
 * (buckets.h), each bucket costing its share of its own kind's reduction
 * (dp_reduce less edp_reduce over dp, edp_reduce over edp). pp = 1, one
 * chunk, m = 2: F 0-1, B 1-3, F 3-4, B 4-6. Four layers of equal FLOPs,
 * dense elements 1 each, experts 2 on layers 1 and 3; buckets of 2. Dense:
 * layers 3 + 2 = 2 closes D0 at layer 2 (share 1/2, backward left 1/2),
 * layers 1 + 0 close D1 (1/2, 0). Experts: layer 3's 2 closes E0 (share 1/2,
 * left 3/4), layer 1's E1 (1/2, left 1/4). Ready order E0 (6 - 0.75·2 =
 * 4.5), D0 (5), E1 (5.5), D1 (6). The reduction 2 in all:
 * - experts 1.5, dense 0.5: E0 0.75 4.5-5.25, D0 0.25 5.25-5.5, E1 0.75
 *   5.5-6.25, D1 0.25 6.25-6.5: exposed 0.5, optimizer (1) 6.5-7.5.
 * - experts 0.5, dense 1.5: E0 0.25 4.5-4.75, D0 0.75 5-5.75, E1 0.25
 *   5.75-6, D1 0.75 6-6.75: exposed 0.75, step 7.75.
 * Bytes likewise: 40 B in all, the experts' 30 (then 10): each bucket half
 * its kind's. */
static void test_dp_buckets_moe_hand(void) {
  for (int heavy = 0; heavy <= 1; heavy++) {
    Case c;
    dp_case_init(&c, PX_SCHED_1F1B, 1, 2, TRUE);
    c.tab->dp_reduce[0] = 2;
    c.tab->edp_reduce[0] = heavy ? 1.5 : 0.5;
    c.tab->dp_bytes[0] = 40;
    c.tab->edp_bytes[0] = heavy ? 30 : 10;
    int bounds[2] = {0, 4};
    double e[4] = {1, 3, 1, 3}, x[4] = {0, 2, 0, 2}, f[4] = {1, 1, 1, 1};
    g_autoptr(PxBuckets) b = px_buckets_from_layers_moe(1, bounds, e, x, f, 2);
    g_assert_cmpint(b->n[0], ==, 4);
    px_program_split_reductions(c.prog, b);
    g_autoptr(PxSimResult) res = run(&c, NULL);
    double exposed = heavy ? 0.5 : 0.75;
    g_assert_cmpfloat_with_epsilon(res->ranks[0].exposed[PX_COMM_DP], exposed, EPS);
    g_assert_cmpfloat_with_epsilon(res->step_time, 7 + exposed, EPS);
    /* bucket b: E0 D0 E1 D1 */
    double ex = heavy ? 0.75 : 0.25, de = heavy ? 0.25 : 0.75;
    double start[4] = {4.5, 4.5 + ex, heavy ? 5.5 : 5.75, heavy ? 6.25 : 6}, dur[4] = {ex, de, ex, de};
    double bytes[4] = {heavy ? 15 : 5, heavy ? 5 : 15, heavy ? 15 : 5, heavy ? 5 : 15};
    if (!heavy) start[1] = 5;
    int seen = 0;
    for (guint i = 0; i < res->timeline->events->len; i++) {
      const PxEvent *ev = &g_array_index(res->timeline->events, PxEvent, i);
      if (ev->kind != PX_OP_REDUCE_GRADS) continue;
      g_assert_cmpint(ev->bucket, >=, 0);
      g_assert_cmpint(ev->bucket, <, 4);
      g_assert_cmpfloat_with_epsilon(ev->start, start[ev->bucket], EPS);
      g_assert_cmpfloat_with_epsilon(ev->end - ev->start, dur[ev->bucket], EPS);
      g_assert_cmpfloat_with_epsilon(ev->bytes, bytes[ev->bucket], EPS);
      seen++;
    }
    g_assert_cmpint(seen, ==, 4);
    case_clear(&c);
  }
}

/* The cost tables are per part. Under ZB-V (p 2, the V: stage 0 holds parts 0
 * and 3, stage 1 parts 1 and 2) the ZeRO-3 gather of a chunk costs its own
 * part's entry, not the interleaved c·p + s one. Gathers 1, 10, 100, 1000
 * for parts 0..3: stage 0 gathers 1 + 1000 per step, stage 1 10 + 100 (the
 * interleaved lookup would give 1 + 100 and 10 + 1000). */
static void test_v_tables_by_part(void) {
  Case c;
  px_plan_init(&c.plan);
  c.plan.schedule = PX_SCHED_ZB_V;
  c.plan.pp = 2;
  c.plan.vpp = 2;
  c.plan.m = 4;
  c.plan.dp = 2;
  c.plan.zero = 3;
  GError *err = NULL;
  c.prog = px_program_new(&c.plan, NULL, &err);
  g_assert_no_error(err);
  c.tab = px_cost_table_ideal(2, 2);
  for (int k = 0; k < 4; k++) c.tab->gather[k] = pow(10, k);
  g_autoptr(PxSimResult) res = run(&c, NULL);
  g_assert_cmpfloat_with_epsilon(res->ranks[0].op_time[PX_OP_GATHER_PARAMS], 1001, EPS);
  g_assert_cmpfloat_with_epsilon(res->ranks[1].op_time[PX_OP_GATHER_PARAMS], 110, EPS);
  case_clear(&c);
}

/* dp 2 × tp 2 × pp 4 with every kind of communication: simulating all 16 ranks
 * gives what one rank per stage gives. */
static void test_symmetry(void) {
  PxScheduleKind kinds[] = {PX_SCHED_1F1B, PX_SCHED_INTERLEAVED, PX_SCHED_ZB_H1, PX_SCHED_GPIPE};
  for (gsize k = 0; k < G_N_ELEMENTS(kinds); k++)
    for (int overlap = 0; overlap <= 1; overlap++) {
      int v = kinds[k] == PX_SCHED_INTERLEAVED ? 2 : 1, p = 4;
      Case c;
      px_plan_init(&c.plan);
      c.plan.schedule = kinds[k];
      c.plan.pp = p;
      c.plan.vpp = v;
      c.plan.m = 8;
      c.plan.dp = c.plan.tp = 2;
      c.plan.zero = 3;
      int bounds[9] = {0};
      PxPartition part = {.pp = p, .vpp = v, .parts = p * v, .bounds = bounds, .tied = TRUE,
                          .tied_first_part = 0, .tied_last_part = p * v - 1};
      c.prog = px_program_new(&c.plan, &part, NULL);
      c.tab = px_cost_table_ideal(p, v);
      double act[8], gath[8], stat[4];
      for (int i = 0; i < p * v; i++) {
        c.tab->fwd[i] = 1 + 0.1 * i;
        c.tab->p2p_act[i] = c.tab->p2p_grad[i] = 0.3;
        c.tab->gather[i] = 0.7;
        act[i] = 100 + i;
        gath[i] = 1000;
      }
      for (int s = 0; s < p; s++) {
        c.tab->dp_reduce[s] = 2.5;
        c.tab->tied_reduce[s] = 1.5;
        c.tab->optimizer[s] = 0.5;
        c.tab->load[s] = 0.05;
        stat[s] = 1e4 * s;
      }
      c.tab->overlap_dp = overlap;
      PxSimOptions sym = {.act_bytes = act, .gather_bytes = gath, .static_bytes = stat};
      PxSimOptions full = sym;
      full.full = TRUE;
      g_autoptr(PxSimResult) a = run(&c, &sym);
      g_autoptr(PxSimResult) b = run(&c, &full);
      g_assert_cmpint(a->n_ranks, ==, 4);
      g_assert_cmpint(b->n_ranks, ==, 16);
      g_assert_cmpfloat_with_epsilon(a->step_time, b->step_time, EPS);
      g_assert_cmpfloat_with_epsilon(a->bubble_fraction, b->bubble_fraction, EPS);
      for (int s = 0; s < p; s++) g_assert_cmpfloat_with_epsilon(a->stage_peak_memory[s], b->stage_peak_memory[s], EPS);
      for (int i = 0; i < b->n_ranks; i++) {
        const PxRankResult *rb = &b->ranks[i];
        const PxRankResult *ra = &a->ranks[rb->stage];
        g_assert_cmpfloat_with_epsilon(ra->end, rb->end, EPS);
        for (int q = 0; q < PX_N_COMM; q++) g_assert_cmpfloat_with_epsilon(ra->exposed[q], rb->exposed[q], EPS);
      }
      /* the tied reduction and the gathers really were simulated */
      g_assert_cmpfloat(a->breakdown.exposed[PX_COMM_GATHER], >, 0);
      if (!overlap) g_assert_cmpfloat(a->ranks[0].exposed[PX_COMM_TIED], >, 0);
      /* 4 events per rank's chunks... the full timeline has 4 times the symmetric one's events */
      g_assert_cmpuint(b->timeline->events->len, ==, 4 * a->timeline->events->len);
      case_clear(&c);
    }
}

static void test_deadlock(void) {
  PxPlan plan;
  px_plan_init(&plan);
  plan.pp = 2;
  plan.m = 1;
  g_autoptr(PxCostTable) tab = px_cost_table_ideal(2, 1);
  GError *err = NULL;

  /* each stage waits for the other: stage 0 for a gradient, stage 1 for an activation */
  g_autoptr(PxProgram) prog = px_program_new_empty(&plan);
  px_program_append(prog, 0, PX_OP_RECV_GRAD, 0, 0, 1);
  px_program_append(prog, 0, PX_OP_FORWARD, 0, 0, -1);
  px_program_append(prog, 0, PX_OP_SEND_ACT, 0, 0, 1);
  px_program_append(prog, 1, PX_OP_RECV_ACT, 0, 0, 0);
  px_program_append(prog, 1, PX_OP_FORWARD, 0, 0, -1);
  g_assert_null(px_simulate(prog, tab, NULL, &err));
  g_assert_error(err, PX_ENGINE_ERROR, PX_ENGINE_ERROR_DEADLOCK);
  g_assert_nonnull(strstr(err->message, "rank 0 (stage 0) at instruction 0 'RECV_GRAD mb=0 chunk=0 peer=1'"));
  g_assert_nonnull(strstr(err->message, "rank 1 (stage 1) at instruction 0 'RECV_ACT mb=0 chunk=0 peer=0'"));
  g_clear_error(&err);

  /* a collective that one member never reaches */
  g_autoptr(PxProgram) coll = px_program_new_empty(&plan);
  px_program_append(coll, 0, PX_OP_FORWARD, 0, 0, -1);
  px_program_append(coll, 0, PX_OP_REDUCE_TIED, -1, -1, -1);
  px_program_append(coll, 0, PX_OP_OPTIMIZER_STEP, -1, -1, -1);
  px_program_append(coll, 1, PX_OP_OPTIMIZER_STEP, -1, -1, -1);
  g_assert_null(px_simulate(coll, tab, NULL, &err));
  g_assert_error(err, PX_ENGINE_ERROR, PX_ENGINE_ERROR_DEADLOCK);
  g_assert_nonnull(strstr(err->message, "REDUCE_TIED"));
  g_assert_nonnull(strstr(err->message, "1 of 2 members"));
  g_assert_null(strstr(err->message, "rank 1"));
  g_clear_error(&err);

  /* a receive whose sender is not the neighbouring part is refused, not run */
  g_autoptr(PxProgram) bad = px_program_new_empty(&plan);
  px_program_append(bad, 1, PX_OP_RECV_ACT, 0, 0, 1);
  g_assert_null(px_simulate(bad, tab, NULL, &err));
  g_assert_error(err, PX_ENGINE_ERROR, PX_ENGINE_ERROR_INVALID);
  g_clear_error(&err);

  /* a table for another pipeline */
  g_autoptr(PxCostTable) other = px_cost_table_ideal(3, 1);
  g_assert_null(px_simulate(prog, other, NULL, &err));
  g_assert_error(err, PX_ENGINE_ERROR, PX_ENGINE_ERROR_INVALID);
  g_clear_error(&err);
  px_plan_clear(&plan);
}

/* A case of the jump's tests: schedule k, p ranks, v chunks, m
 * micro-batches; variant 0 p2p only, 1 DP reductions overlapped in two
 * buckets per part (the second starting inside the chunk's last backward,
 * holding SMs), 2 ZeRO-3 gathers and rendezvous sends; `rdv`: DeepSpeed's
 * 1F1B (the program whose sends may wait for their receives, emitted in
 * its TrainSchedule's order), its sends larger than the eager buffer, so
 * that each waits for its receive to be posted. Unequal parts,
 * durations of no short binary expansion (so that times round). */
static void jump_case(Case *c, PxScheduleKind k, int p, int v, int m, int variant, gboolean rdv) {
  px_plan_init(&c->plan);
  c->plan.schedule = k;
  c->plan.pp = p;
  c->plan.vpp = v;
  c->plan.m = m;
  c->plan.dp = variant ? 2 : 1;
  c->plan.zero = variant == 2 ? 3 : 1;
  if (rdv) c->plan.stack = PX_STACK_DEEPSPEED;
  GError *err = NULL;
  c->prog = px_program_new(&c->plan, NULL, &err);
  g_assert_no_error(err);
  if (variant == 1) {
    /* the overlapped reduction in two buckets per part: the second
     * starts inside the chunk's last backward (its duration) */
    g_autofree int *bounds = g_new(int, p * v + 1);
    g_autofree double *e = g_new(double, 2 * p * v);
    g_autofree double *f = g_new(double, 2 * p * v);
    for (int i = 0; i <= p * v; i++) bounds[i] = 2 * i;
    for (int i = 0; i < 2 * p * v; i++) e[i] = 1e6, f[i] = 1 + i % 3;
    g_autoptr(PxBuckets) b = px_buckets_from_layers(p * v, bounds, e, f, 1e6);
    px_program_split_reductions(c->prog, b);
  }
  c->tab = px_cost_table_ideal(p, v);
  for (int i = 0; i < p * v; i++) {
    c->tab->fwd[i] = 1e-3 * (1 + 0.137 * ((i * 7) % 5)) / 3;
    c->tab->bwd_input[i] = 1e-3 * (1.1 + 0.071 * (i % 3)) / 7 * 5;
    c->tab->bwd_weight[i] = 1e-3 * (0.9 + 0.05 * (i % 2)) / 11 * 6;
    c->tab->p2p_act[i] = c->tab->p2p_grad[i] = variant == 1 ? 1e-4 / 3 : 2e-5 / 7;
    if (variant == 2) c->tab->gather[i] = 1e-4 / 9;
    if (rdv) c->tab->p2p_bytes[i] = 2e6;
  }
  c->tab->p2p_eager_bytes = 1e6;
  c->tab->overlap_dp = variant == 1;
  c->tab->coll_sm_share = variant == 1 ? 0.1 : 0; /* the reductions hold SMs beside the backward */
  c->tab->p2p_rendezvous = variant == 2;
  for (int s = 0; s < p; s++) {
    c->tab->dp_reduce[s] = variant ? 0.01 / 3 : 0;
    c->tab->optimizer[s] = 0.002 / 7;
    c->tab->load[s] = s == 0 || s == p - 1 ? 1e-5 / 3 : 0;
  }
}

/* The case with the jump and with every round run (px_engine_set_no_jump):
 * the same step time, bit for bit, and the same instruction count as a
 * whole run; returns the instructions jumped over. The expected value is
 * the engine's own full run, the reference the jump must reproduce. */
static guint64 jump_check(const Case *c, const char *what, guint64 *total) {
  PxSimOptions o = {.no_timeline = TRUE, .step_time_only = TRUE};
  g_autoptr(PxSimResult) fast = run(c, &o);
  px_engine_set_no_jump(TRUE);
  g_autoptr(PxSimResult) full = run(c, &o);
  g_autoptr(PxSimResult) whole = run(c, NULL);
  px_engine_set_no_jump(FALSE);
  if (fast->step_time != full->step_time)
    g_error("%s: jump %.17g, every round %.17g", what, fast->step_time, full->step_time);
  g_assert_true(full->step_time == whole->step_time); /* step_time_only changes nothing by itself */
  g_assert_cmpuint(full->n_jumped, ==, 0);
  g_assert_cmpuint(fast->n_instructions, ==, whole->n_instructions);
  if (total) *total += fast->n_instructions;
  return fast->n_jumped;
}

/* The jump over steady rounds (step_time_only, engine.c) against every round
 * run: every schedule, several p and m (up to 4096), p2p, loads, DP
 * reductions with and without overlap, ZeRO-3 gathers, rendezvous sends. */
static void test_jump_exact(void) {
  struct { PxScheduleKind k; int v; } sched[] = {
    {PX_SCHED_GPIPE, 1}, {PX_SCHED_1F1B, 1}, {PX_SCHED_INTERLEAVED, 2}, {PX_SCHED_INTERLEAVED, 3},
    {PX_SCHED_ZB_H1, 1}, {PX_SCHED_ZB_H2, 1}, {PX_SCHED_ZB_V, 2}, {PX_SCHED_DUALPIPEV, 2}};
  int ps[] = {1, 2, 3, 4, 8}, ms[] = {16, 97, 256, 1000, 4096};
  for (gsize k = 0; k < G_N_ELEMENTS(sched); k++) {
    guint64 jumped = 0, total = 0;
    for (gsize ip = 0; ip < G_N_ELEMENTS(ps); ip++)
      for (gsize im = 0; im < G_N_ELEMENTS(ms); im++)
        for (int variant = 0; variant < 3; variant++) {
          int p = ps[ip], m = ms[im], v = sched[k].v;
          if (p == 1 && (v > 1 || sched[k].k == PX_SCHED_ZB_V || sched[k].k == PX_SCHED_DUALPIPEV)) continue;
          if (sched[k].k == PX_SCHED_INTERLEAVED && m % p) continue;
          if (sched[k].k == PX_SCHED_DUALPIPEV && m % 2) continue;
          Case c;
          jump_case(&c, sched[k].k, p, v, m, variant, FALSE);
          g_autofree char *what = g_strdup_printf("schedule %d v %d p %d m %d variant %d", sched[k].k, v, p, m, variant);
          jumped += jump_check(&c, what, &total);
          case_clear(&c);
        }
    g_test_message("schedule %d v %d: %.1f %% of the instructions jumped", sched[k].k, sched[k].v,
                   100.0 * jumped / total);
    /* the jump was taken (GPipe's forwards pile up: its window never moves on) */
    if (sched[k].k != PX_SCHED_GPIPE) g_assert_cmpuint(jumped, >, 0);
  }
}

/* Large pp·vpp, where the ranks' run order repeats only after many rounds
 * (interleaved at p 8, v 4: 15 rounds of 8 micro-batches) and rank 0 of
 * ZB-H2 runs 2(p - 1) rounds ahead of the last: the jump is taken in every
 * case (the engine's counter moves, n_jumped > 0) and the step time is the
 * full run's, bit for bit; with DeepSpeed's rendezvous sends (each reads
 * its receive's posting time) too. */
static void test_jump_large(void) {
  struct { PxScheduleKind k; int p, v, m; } cs[] = {
    {PX_SCHED_INTERLEAVED, 8, 4, 1024}, {PX_SCHED_INTERLEAVED, 8, 8, 1024}, {PX_SCHED_INTERLEAVED, 16, 2, 1024},
    {PX_SCHED_INTERLEAVED, 16, 4, 2048}, {PX_SCHED_INTERLEAVED, 32, 2, 2048}, {PX_SCHED_INTERLEAVED, 4, 2, 4096},
    {PX_SCHED_1F1B, 16, 1, 1024}, {PX_SCHED_1F1B, 32, 1, 1024}, {PX_SCHED_ZB_H1, 16, 1, 1024},
    {PX_SCHED_ZB_H1, 32, 1, 1024}, {PX_SCHED_ZB_H2, 16, 1, 1024}, {PX_SCHED_ZB_H2, 32, 1, 2048},
    {PX_SCHED_ZB_V, 8, 2, 1024}, {PX_SCHED_ZB_V, 16, 2, 1024}, {PX_SCHED_DUALPIPEV, 16, 2, 1024},
    {PX_SCHED_DUALPIPEV, 32, 2, 2048}};
  for (gsize k = 0; k < G_N_ELEMENTS(cs); k++)
    for (int variant = 0; variant < 3; variant++) {
      Case c;
      jump_case(&c, cs[k].k, cs[k].p, cs[k].v, cs[k].m, variant, variant == 2 && cs[k].k == PX_SCHED_1F1B);
      g_autofree char *what = g_strdup_printf("schedule %d p %d v %d m %d variant %d", cs[k].k, cs[k].p, cs[k].v,
                                              cs[k].m, variant);
      int before = px_engine_jumps();
      guint64 total = 0, jumped = jump_check(&c, what, &total);
      g_test_message("%s: %.1f %% of the instructions jumped", what, 100.0 * jumped / total);
      if (!jumped) g_error("%s: no round jumped", what);
      g_assert_cmpint(px_engine_jumps(), >, before);
      case_clear(&c);
    }
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/engine/ideal/gpipe-1f1b", test_ideal_gpipe_1f1b);
  g_test_add_func("/engine/ideal/unequal-costs", test_unequal_costs);
  g_test_add_func("/engine/ideal/interleaved", test_ideal_interleaved);
  g_test_add_func("/engine/ideal/zb-h1", test_ideal_zb_h1);
  g_test_add_func("/engine/ideal/zb-h2-zb-v", test_ideal_zb_h2_zb_v);
  g_test_add_func("/engine/ideal/dualpipev", test_ideal_dualpipev);
  g_test_add_func("/engine/reference/zero-bubble-table5", test_zero_bubble_table5);
  g_test_add_func("/engine/reference/dualpipe-readme", test_dualpipe_readme);
  g_test_add_func("/engine/ideal/zb-v-unequal", test_zbv_unequal);
  g_test_add_func("/engine/ideal/naive-gpipe-picture", test_ideal_naive_and_gpipe_picture);
  g_test_add_func("/engine/timeline/order", test_timeline_order);
  g_test_add_func("/engine/memory/in-flight", test_in_flight);
  g_test_add_func("/engine/memory/zb-h1", test_zb_h1_memory);
  g_test_add_func("/engine/comm/p2p", test_p2p_hand);
  g_test_add_func("/engine/comm/deepspeed-rendezvous", test_deepspeed_rendezvous);
  g_test_add_func("/engine/comm/dp-overlap", test_dp_overlap_hand);
  g_test_add_func("/engine/comm/dp-buckets-not-bubble", test_dp_buckets_hand);
  g_test_add_func("/engine/comm/dp-reduction-sm-share", test_dp_reduction_sm_share);
  g_test_add_func("/engine/comm/dp-buckets-one-exposed", test_dp_buckets_one_exposed);
  g_test_add_func("/engine/comm/dp-buckets-latency", test_dp_buckets_latency);
  g_test_add_func("/engine/comm/param-gather-first-forward", test_param_gather_first_forward);
  g_test_add_func("/engine/comm/dp-buckets-moe-hand", test_dp_buckets_moe_hand);
  g_test_add_func("/engine/comm/v-tables-by-part", test_v_tables_by_part);
  g_test_add_func("/engine/symmetry", test_symmetry);
  g_test_add_func("/engine/deadlock", test_deadlock);
  g_test_add_func("/engine/jump/exact", test_jump_exact);
  g_test_add_func("/engine/jump/large", test_jump_large);
  return g_test_run();
}
