/* search.c — the layout search (see search.h for the step-time formula).
 *
 * The space is cut into tasks, one per (tp, pp, vpp, rank order); dp follows
 * from the GPU count. A task builds, with the core's px_cost_table_new and
 * px_memory_new,
 *   - one "state" block per (ZeRO, offload): per rank the model states
 *     (weights + gradients + optimizer), the ZeRO buffers, DP reduction,
 *     ZeRO-3 gathers and the optimizer step;
 *   - one "compute" block per (micro-batch, checkpoint, sequence parallel): per
 *     rank forward / backward / load times, p2p, activations per micro-batch,
 *     the p2p buffers and the transient recompute activations;
 * and then evaluates every (state, compute, schedule) combination: memory in
 * O(pp); time by the event engine (sim/engine.c), which runs the layout's
 * program (common/schedule.c, cached per compute block, schedule and ZeRO-3)
 * over the table of its two blocks, for every layout that fits and whose
 * lower bound does not rule it out.
 * Tasks run on a GThreadPool; each keeps its own best list, and the lists are
 * merged in task order under a total order on layouts, so the answer does not
 * depend on the thread count. The best `confirm` layouts are then simulated by
 * the event engine and ranked by simulated step time. */
#include "search.h"
#include "moe.h"
#include "cost.h"
#include "memory.h"
#include "partition.h"
#include "schedule.h"
#include <math.h>
#include <string.h>

G_DEFINE_QUARK(px-search-error-quark, px_search_error)

static const PxAxis orders[6][3] = {
  {PX_AXIS_TP, PX_AXIS_DP, PX_AXIS_PP}, {PX_AXIS_TP, PX_AXIS_PP, PX_AXIS_DP},
  {PX_AXIS_DP, PX_AXIS_TP, PX_AXIS_PP}, {PX_AXIS_DP, PX_AXIS_PP, PX_AXIS_TP},
  {PX_AXIS_PP, PX_AXIS_TP, PX_AXIS_DP}, {PX_AXIS_PP, PX_AXIS_DP, PX_AXIS_TP},
};

const PxAxis (*px_search_orders(void))[3] { return orders; }

static const struct { gint8 zero, offload; } zero_offload[] = {
  {0, PX_OFFLOAD_NONE},      {1, PX_OFFLOAD_NONE}, {1, PX_OFFLOAD_OPTIMIZER}, {2, PX_OFFLOAD_NONE},
  {2, PX_OFFLOAD_OPTIMIZER}, {3, PX_OFFLOAD_NONE}, {3, PX_OFFLOAD_OPTIMIZER}, {3, PX_OFFLOAD_OPTIMIZER_PARAMS},
};
#define N_ZO ((int)G_N_ELEMENTS(zero_offload))

/* ---- small pieces --------------------------------------------------------- */

gboolean px_search_objective_parse(const char *s, PxSearchObjective *out) {
  static const char *names[] = {"time", "memory", "gpus"};
  for (int i = 0; i < 3; i++)
    if (s && !g_ascii_strcasecmp(s, names[i])) {
      *out = (PxSearchObjective)i;
      return TRUE;
    }
  return FALSE;
}

int px_layout_compare(const PxLayout *a, const PxLayout *b) {
  int ka[] = {a->tp, a->pp, a->dp, a->vpp, a->mbs, a->zero, a->offload, a->ckpt, a->sp, a->schedule, a->order, MAX(a->cp, 1), a->ep, a->etp};
  int kb[] = {b->tp, b->pp, b->dp, b->vpp, b->mbs, b->zero, b->offload, b->ckpt, b->sp, b->schedule, b->order, MAX(b->cp, 1), b->ep, b->etp};
  for (gsize i = 0; i < G_N_ELEMENTS(ka); i++)
    if (ka[i] != kb[i]) return ka[i] < kb[i] ? -1 : 1;
  return 0;
}

void px_layout_apply(const PxLayout *l, PxPlan *p) {
  p->tp = l->tp;
  p->pp = l->pp;
  p->dp = l->dp;
  p->vpp = l->vpp;
  p->mbs = l->mbs;
  p->zero = l->zero;
  p->offload = (PxOffload)l->offload;
  p->ckpt = (PxCheckpoint)l->ckpt;
  p->seq_parallel = l->sp != 0;
  p->schedule = (PxScheduleKind)l->schedule;
  memcpy(p->order, orders[l->order], sizeof p->order);
  p->cp = MAX(l->cp, 1);
  /* TP communication overlap where the layout has what it needs (tp > 1 with
   * sequence parallelism), as NeMo's MegatronCommOverlapCallback turns it off
   * otherwise; the rest of its rules are px_plan_validate's */
  if (p->tp_overlap != PX_TPO_NONE && !(l->tp > 1 && l->sp)) p->tp_overlap = PX_TPO_NONE;
  if (l->ep > 0) {
    p->ep = l->ep;
    p->etp = l->etp;
  }
}

char *px_search_order_string(int i) {
  return g_strdup_printf("%s,%s,%s", px_axis_name(orders[i][0]), px_axis_name(orders[i][1]),
                         px_axis_name(orders[i][2]));
}

char *px_layout_format(const PxLayout *l) {
  GString *s = g_string_new(NULL);
  if (l->cp > 1) g_string_append_printf(s, "tp %d cp %d pp %d dp %d · %s", l->tp, l->cp, l->pp, l->dp, px_schedule_name(l->schedule));
  else g_string_append_printf(s, "tp %d pp %d dp %d · %s", l->tp, l->pp, l->dp, px_schedule_name(l->schedule));
  if (l->vpp > 1) g_string_append_printf(s, " v%d", l->vpp);
  g_string_append_printf(s, " · mbs %d · ZeRO-%d", l->mbs, l->zero);
  if (l->offload != PX_OFFLOAD_NONE) g_string_append_printf(s, " offload %s", px_offload_name(l->offload));
  g_string_append_printf(s, " · ckpt %s", px_ckpt_name(l->ckpt));
  if (l->sp) g_string_append(s, " · sp");
  if (l->ep > 1 || (l->ep > 0 && l->etp != l->tp)) g_string_append_printf(s, " · ep %d etp %d", l->ep, l->etp);
  if (l->order != 0) {
    g_autofree char *o = px_search_order_string(l->order);
    g_string_append_printf(s, " · order %s", o);
  }
  return g_string_free(s, FALSE);
}

void px_search_fix_init(PxSearchFix *f) {
  f->tp = f->pp = f->dp = f->vpp = f->mbs = f->zero = f->offload = f->ckpt = f->sp = f->schedule = f->order = -1;
  f->cp = -1;
  f->ep = f->etp = -1;
}

static gboolean fix_fail(GError **error, const char *kv, const char *why) {
  g_set_error(error, PX_SEARCH_ERROR, PX_SEARCH_ERROR_INVALID, "--fix '%s': %s", kv, why);
  return FALSE;
}

gboolean px_search_fix_parse(PxSearchFix *f, const char *kv, GError **error) {
  const char *eq = strchr(kv, '=');
  if (!eq || eq == kv || !eq[1]) return fix_fail(error, kv, "expected KNOB=VALUE (e.g. tp=8)");
  g_autofree char *key = g_strndup(kv, eq - kv);
  const char *val = eq + 1;
  /* a knob held twice (--fix tp=2 --fix tp=4, or --tp 4 --fix tp=2): one
   * value silently won */
  struct { const char *name; int *field; } held[] = {
    {"tp", &f->tp}, {"pp", &f->pp}, {"dp", &f->dp}, {"vpp", &f->vpp}, {"mbs", &f->mbs}, {"zero", &f->zero},
    {"cp", &f->cp}, {"ep", &f->ep}, {"etp", &f->etp}, {"ckpt", &f->ckpt}, {"schedule", &f->schedule},
    {"offload", &f->offload}, {"sp", &f->sp}, {"order", &f->order}};
  for (gsize i = 0; i < G_N_ELEMENTS(held); i++)
    if (!strcmp(key, held[i].name) && *held[i].field != -1)
      return fix_fail(error, kv, "this knob is already held (by another --fix or by its flag, e.g. --tp)");
  struct { const char *name; int *field; int min; } ints[] = {
    {"tp", &f->tp, 1}, {"pp", &f->pp, 1}, {"dp", &f->dp, 1}, {"vpp", &f->vpp, 1}, {"mbs", &f->mbs, 1}, {"zero", &f->zero, 0},
    {"cp", &f->cp, 1}, {"ep", &f->ep, 1}, {"etp", &f->etp, 1}};
  for (gsize i = 0; i < G_N_ELEMENTS(ints); i++) {
    if (strcmp(key, ints[i].name)) continue;
    char *end;
    gint64 v = g_ascii_strtoll(val, &end, 10);
    if (*end || v < ints[i].min || v > (1 << 24) || (ints[i].field == &f->zero && v > 3))
      return fix_fail(error, kv, ints[i].field == &f->zero ? "ZeRO is 0..3" : "not a positive integer");
    *ints[i].field = (int)v;
    return TRUE;
  }
  if (!strcmp(key, "ckpt")) {
    PxCheckpoint c;
    if (!px_ckpt_parse(val, &c)) return fix_fail(error, kv, "ckpt is none, selective or full");
    f->ckpt = c;
  } else if (!strcmp(key, "schedule")) {
    PxScheduleKind s;
    if (!px_schedule_parse(val, &s) || s == PX_SCHED_NAIVE)
      return fix_fail(error, kv, "schedule is 1f1b, gpipe, interleaved, zb-h1, zb-h2, zb-v or dualpipev (naive is not searched)");
    f->schedule = s;
  } else if (!strcmp(key, "offload")) {
    PxOffload o;
    if (!px_offload_parse(val, &o)) return fix_fail(error, kv, "offload is none, optimizer or optimizer+params");
    f->offload = o;
  } else if (!strcmp(key, "sp")) {
    static const char *on[] = {"on", "true", "1", "yes"}, *off[] = {"off", "false", "0", "no"};
    f->sp = -1;
    for (int i = 0; i < 4; i++) {
      if (!g_ascii_strcasecmp(val, on[i])) f->sp = 1;
      if (!g_ascii_strcasecmp(val, off[i])) f->sp = 0;
    }
    if (f->sp < 0) return fix_fail(error, kv, "sp is on or off");
  } else if (!strcmp(key, "order")) {
    PxAxis o[3];
    if (!px_order_parse(val, o)) return fix_fail(error, kv, "order is a permutation of tp,dp,pp");
    for (int i = 0; i < 6; i++)
      if (!memcmp(o, orders[i], sizeof o)) f->order = i;
  } else {
    return fix_fail(error, kv, "knob is one of tp, cp, pp, dp, zero, mbs, vpp, ckpt, schedule, sp, offload, order, ep, etp");
  }
  return TRUE;
}

void px_search_options_init(PxSearchOptions *o) {
  memset(o, 0, sizeof *o);
  o->objective = PX_OBJECTIVE_TIME;
  px_search_fix_init(&o->fix);
  o->top = 5;
  o->max_mbs = 8;
  o->max_vpp = 8;
}

static gboolean fixed_ok(int fix, int v) { return fix < 0 || fix == v; }

/* ---- blocks: the core's numbers, once per key ----------------------------- */

typedef struct {
  gboolean ok;
  double *states, *buf_extra;  /* (pp) */
  PxCostTable *tab;     /* its cost table (mbs 1, no recompute): DP reduction, optimizer step, overlap, ZeRO-3 gathers */
} StateBlock;
#define STATE_ARRAYS 2

typedef struct {
  gboolean ok;
  double *act_extra, *buf0;                    /* (pp) */
  double *chunk_act;                           /* (pp·vpp) one micro-batch on each chunk, rank r's at [r·vpp] */
  double *chunk_w;                             /* (pp·vpp) of which a split backward holds until W (activations.h) */
  /* (pp·vpp) chunk_act under a split backward (zb-h1, zb-h2, whose block
   * runs 1f1b): torchtitan's op-SAC list is the unsplit backward's only
   * (activations.c), so a micro-batch keeps another amount there */
  double *chunk_act_split;
  PxCostTable *tab;                            /* its cost table (ZeRO 0): the per-part F, B, W, p2p, load, tied reduction */
} ComputeBlock;
#define COMPUTE_ARRAYS 2       /* (pp) arrays, then */
#define COMPUTE_CHUNK_ARRAYS 3 /* (pp·vpp) arrays: chunk_act, chunk_w, chunk_act_split */

/* Blocks whose (pp) arrays are carved, in field order, from one allocation. */
static StateBlock state_block_at(double *m, int pp) {
  return (StateBlock){FALSE, m, m + pp, NULL};
}
static ComputeBlock compute_block_at(double *m, int pp, int vpp) {
  return (ComputeBlock){FALSE, m, m + pp, m + 2 * pp, m + 2 * pp + pp * vpp, m + 2 * pp + 2 * pp * vpp, NULL};
}

/* A shallow plan: shares base's partition string (never cleared). */
static void plan_from(PxPlan *p, const PxPlan *base, const PxLayout *l) {
  *p = *base;
  px_layout_apply(l, p);
}

typedef struct {
  const PxModel *model;
  const PxCluster *cluster;
  const PxPlan *base;
  double capacity;
  const PxSearchOptions *opt;
} Space;

/* The schedule the blocks are built with: one whose part map is the task's
 * (a V for the V tasks) and that takes m = pp. */
static gint8 block_schedule(const PxLayout *l) {
  return px_schedule_is_v(l->schedule) ? PX_SCHED_ZB_V : l->vpp > 1 ? PX_SCHED_INTERLEAVED : PX_SCHED_1F1B;
}

static void state_block(const Space *sp, const PxPartition *part, PxLayout l, StateBlock *b) {
  PxPlan p, p0;
  g_clear_pointer(&b->tab, px_cost_table_free);
  l.mbs = 1;
  l.ckpt = PX_CKPT_NONE;
  /* model states do not depend on sp; the experts' grid under TP needs it (moe.h) */
  l.sp = l.tp > 1 && l.ep > 0 && (l.ep > 1 || l.etp != l.tp);
  l.schedule = block_schedule(&l);
  plan_from(&p, sp->base, &l);
  p.gbs = p.mbs * p.dp * p.pp; /* m = pp: batch divisibility is each layout's own check */
  b->ok = px_plan_validate(&p, sp->model, sp->cluster, NULL);
  if (!b->ok) return;
  g_autoptr(PxCostTable) t = px_cost_table_new(sp->model, sp->cluster, &p, part, NULL);
  if (!t) { b->ok = FALSE; return; }
  p0 = p;
  p0.zero = 0;
  p0.offload = PX_OFFLOAD_NONE;
  g_autoptr(PxMemory) m = px_memory_new(sp->model, &p, part, sp->cluster);
  g_autoptr(PxMemory) m0 = px_memory_new(sp->model, &p0, part, sp->cluster);
  for (int r = 0; r < l.pp; r++) {
    const PxStageMemory *s = &m->stages[r];
    b->states[r] = s->weights + s->gradients + s->optimizer + s->fp8_weights + s->fp8_meta;
    b->buf_extra[r] = s->buffers - m0->stages[r].buffers;
  }
  b->tab = g_steal_pointer(&t);
}

static void compute_block(const Space *sp, const PxPartition *part, PxLayout l, ComputeBlock *b) {
  PxPlan p;
  g_clear_pointer(&b->tab, px_cost_table_free);
  l.zero = 0;
  l.offload = PX_OFFLOAD_NONE;
  l.schedule = block_schedule(&l);
  plan_from(&p, sp->base, &l);
  p.gbs = p.mbs * p.dp * p.pp;
  b->ok = px_plan_validate(&p, sp->model, sp->cluster, NULL);
  if (!b->ok) return;
  g_autoptr(PxCostTable) t = px_cost_table_new(sp->model, sp->cluster, &p, part, NULL);
  if (!t) { b->ok = FALSE; return; }
  g_autoptr(PxMemory) m = px_memory_new(sp->model, &p, part, sp->cluster);
  for (int r = 0; r < l.pp; r++) {
    const PxStageMemory *s = &m->stages[r];
    double *chunk_act = &b->chunk_act[r * l.vpp], *chunk_w = &b->chunk_w[r * l.vpp];
    double *chunk_split = &b->chunk_act_split[r * l.vpp];
    for (int c = 0; c < l.vpp; c++) {
      int k = px_partition_part_of(part, r, c);
      chunk_act[c] = px_part_activation_bytes(sp->model, &p, part->bounds[k], part->bounds[k + 1]);
      chunk_w[c] = px_activations_w_bytes(sp->model, &p, NULL, part->bounds[k], part->bounds[k + 1]);
      chunk_split[c] = chunk_act[c];
      if (l.vpp == 1 && !px_act_splits_backward(&p)) { /* the block's 1f1b: zb-h1's and zb-h2's list */
        PxScheduleKind own = p.schedule;
        p.schedule = PX_SCHED_ZB_H1;
        chunk_split[c] = px_part_activation_bytes(sp->model, &p, part->bounds[k], part->bounds[k + 1]);
        p.schedule = own;
      }
    }
    b->act_extra[r] = s->activations - px_memory_peak_activations(&p, r, chunk_act, chunk_w);
    b->buf0[r] = s->buffers;
  }
  b->tab = g_steal_pointer(&t);
}

/* Each rank's peak activations of a validated plan in its compute block
 * (pp): what the schedule holds in flight. It reads the compute block, the
 * schedule and m, not the ZeRO stage or the offload, so a task computes it
 * once per compute block and schedule (with a split backward it walks the
 * schedule's whole compute order, O(m) per rank). */
static void peak_activations(const PxPlan *p, const ComputeBlock *c, double *act) {
  for (int r = 0; r < p->pp; r++)
    act[r] = px_memory_peak_activations(p, r, &(px_act_splits_backward(p) ? c->chunk_act_split : c->chunk_act)[r * p->vpp],
                                        &c->chunk_w[r * p->vpp]);
}

/* Peak memory per GPU of a validated plan from its two blocks and its peak
 * activations (peak_activations). */
static double evaluate_memory(const PxPlan *p, const StateBlock *s, const ComputeBlock *c, const double *act) {
  double peak = 0;
  for (int r = 0; r < p->pp; r++) {
    double mem = s->states[r] + s->buf_extra[r] + c->buf0[r] + act[r] + c->act_extra[r] + p->workspace_bytes;
    peak = MAX(peak, mem);
  }
  return peak;
}

/* ---- the step time: the event engine over the blocks' table --------------- */

/* Part k's forward and backward (input, weight) with ZeRO-3's per-pass
 * gathers and reduce-scatters of the state table z3 folded in, as
 * px_cost_table_new folds them (px_cost_zero3_fold). */
static void zero3_fold(const PxCostTable *ct, const PxCostTable *z3, int k, double *f, double *bi, double *bw) {
  *f = ct->fwd[k];
  *bi = ct->bwd_input[k];
  *bw = ct->bwd_weight[k];
  px_cost_zero3_fold(f, bi, bw, z3->gather_pass[k], z3->gather_pcie[k], z3->reduce_pass[k], z3->gather_cast[k],
                     z3->coll_sm_share, z3->coll_gemm_waves, ct->gemm_fwd[k], ct->gemm_bwd[k]);
}

/* The layout's cost table from its two blocks (a shallow struct over their
 * arrays): the compute block's (ZeRO 0: F, B, W, p2p, load, the tied
 * reduction) with the state block's DP reduction, optimizer step, DP
 * overlap and per-pass reductions; with ZeRO-3 (z3) the state's gathers,
 * folded into F, B, W (zero3_fold) in arr (3·parts). */
static PxCostTable layout_table(const ComputeBlock *cb, const StateBlock *sb, gboolean z3, double *arr) {
  const PxCostTable *ct = cb->tab, *st = sb->tab;
  PxCostTable t = *ct;
  t.dp_reduce = st->dp_reduce;
  t.dp_bytes = st->dp_bytes;
  t.edp_reduce = st->edp_reduce;
  t.edp_bytes = st->edp_bytes;
  t.dp_lat = st->dp_lat;
  t.param_gather = st->param_gather;
  t.param_gather_lat = st->param_gather_lat;
  t.optimizer = st->optimizer;
  t.overlap_dp = st->overlap_dp;
  t.reduce_pass = st->reduce_pass;
  t.grad_reduce_bytes = st->grad_reduce_bytes;
  if (z3) {
    t.gather = st->gather;
    t.gather_pass = st->gather_pass;
    t.gather_pcie = st->gather_pcie;
    t.gather_cast = st->gather_cast;
    t.fwd = arr;
    t.bwd_input = arr + ct->parts;
    t.bwd_weight = arr + 2 * ct->parts;
    for (int k = 0; k < ct->parts; k++) zero3_fold(ct, st, k, &t.fwd[k], &t.bwd_input[k], &t.bwd_weight[k]);
  }
  return t;
}

/* The step time of a layout whose program is prog: the event engine's run of
 * the program over the table of its blocks, as px_search_confirm runs the
 * core's table of the whole layout. Only the step time is asked for, so the
 * engine jumps over repeated steady rounds, exactly (steady: the program's
 * periods, px_steady_new, or NULL). FALSE when the engine refuses it. */
static gboolean engine_time(const PxProgram *prog, const PxSteady *steady, const ComputeBlock *cb,
                            const StateBlock *sb, gboolean z3, double *time) {
  g_autofree double *arr = z3 ? g_new(double, 3 * (gsize)cb->tab->parts) : NULL;
  PxCostTable t = layout_table(cb, sb, z3, arr);
  PxSimOptions so = {.no_timeline = TRUE, .step_time_only = TRUE, .steady = steady};
  g_autoptr(PxSimResult) res = px_simulate(prog, &t, &so, NULL);
  if (!res) return FALSE;
  *time = res->step_time;
  return TRUE;
}

/* A lower bound of the engine's step time without running it: every rank is
 * busy with its m micro-batches' F, B and W (ZeRO-3 folded, zero3_fold)
 * after the forwards of the parts before its first one, and then runs its
 * optimizer step. */
static double time_lower_bound(const PxPlan *p, const StateBlock *s, const ComputeBlock *c, gboolean z3) {
  const PxCostTable *ct = c->tab;
  double bound = 0, before = 0;
  for (int k = 0; k < ct->parts; k++) {
    int r, ch;
    px_schedule_part_place(p->schedule, p->pp, k, &r, &ch);
    if (ch == 0) {
      double busy = 0;
      for (int cc = 0; cc < p->vpp; cc++) {
        int kk = px_schedule_part_of(p->schedule, p->pp, r, cc);
        double f = ct->fwd[kk], bi = ct->bwd_input[kk], bw = ct->bwd_weight[kk];
        if (z3) zero3_fold(ct, s->tab, kk, &f, &bi, &bw);
        busy += f + bi + bw;
      }
      bound = MAX(bound, before + p->m * busy + s->tab->optimizer[r]);
    }
    before += ct->fwd[k];
  }
  return bound;
}

/* ---- ranking -------------------------------------------------------------- */

static int cand_cmp_key(const PxSearchCandidate *a, const PxSearchCandidate *b, PxSearchObjective obj,
                        gboolean simulated) {
  double ta = simulated ? a->step_time : a->analytic_time, tb = simulated ? b->step_time : b->analytic_time;
  if (obj == PX_OBJECTIVE_MEMORY) {
    if (a->memory != b->memory) return a->memory < b->memory ? -1 : 1;
    if (ta != tb) return ta < tb ? -1 : 1;
  } else {
    if (ta != tb) return ta < tb ? -1 : 1;
    if (a->memory != b->memory) return a->memory < b->memory ? -1 : 1;
  }
  return px_layout_compare(&a->layout, &b->layout);
}

static int cmp_analytic(gconstpointer a, gconstpointer b, gpointer obj) {
  return cand_cmp_key(a, b, *(const PxSearchObjective *)obj, FALSE);
}
static int cmp_simulated(gconstpointer a, gconstpointer b, gpointer obj) {
  return cand_cmp_key(a, b, *(const PxSearchObjective *)obj, TRUE);
}

/* Keep the `cap` best under the objective (sorted insertion into a small array). */
static void best_insert(GArray *best, int cap, const PxSearchCandidate *c, PxSearchObjective obj) {
  guint n = best->len;
  if ((int)n >= cap && cand_cmp_key(c, &g_array_index(best, PxSearchCandidate, n - 1), obj, FALSE) >= 0) return;
  guint i = n;
  while (i > 0 && cand_cmp_key(c, &g_array_index(best, PxSearchCandidate, i - 1), obj, FALSE) < 0) i--;
  g_array_insert_val(best, i, *c);
  if ((int)best->len > cap) g_array_set_size(best, cap);
}

/* ---- tasks ---------------------------------------------------------------- */

typedef struct {
  PxLayout key;              /* tp, pp, dp, vpp, order */
  guint64 count;             /* layouts in the task */
  /* results */
  guint64 evaluated, valid, feasible;
  GArray *best;              /* PxSearchCandidate */
  gboolean have_closest;
  PxSearchCandidate closest;
  GArray *points;
  gboolean done;
  GError *why;               /* the first rule a layout of the task broke */
} Task;

typedef struct {
  Space space;
  Task *tasks;
  guint n_tasks;
  int cap;
  GMutex lock;
  GCond cond;
  guint done;
  guint64 evaluated, feasible;
  gboolean have_best;
  PxSearchCandidate best;
  /* without the Pareto points: the `cap` best keys so far over every task
   * (ascending), under lock; the key is the objective's, the analytic time
   * or the memory (exact before the engine runs). A layout whose lower bound
   * of the time exceeds the last time, or whose memory exceeds the last
   * memory, cannot be among the `cap` best, whatever the thread count, and
   * the engine does not run it. */
  gboolean prune;
  double *top_times;
  int n_top;
} Run;

/* Offer a time to the run's best list (G_MAXDOUBLE: none); the bound a
 * layout must beat to be worth evaluating (G_MAXDOUBLE until `cap` times are
 * known). */
static double run_offer(Run *run, double time) {
  g_mutex_lock(&run->lock);
  if (time < G_MAXDOUBLE && (run->n_top < run->cap || time < run->top_times[run->n_top - 1])) {
    int i = MIN(run->n_top, run->cap - 1);
    while (i > 0 && run->top_times[i - 1] > time) {
      run->top_times[i] = run->top_times[i - 1];
      i--;
    }
    run->top_times[i] = time;
    run->n_top = MIN(run->n_top + 1, run->cap);
  }
  double bound = run->n_top < run->cap ? G_MAXDOUBLE : run->top_times[run->n_top - 1];
  g_mutex_unlock(&run->lock);
  return bound;
}

/* A task's schedules: its key's schedule is ZB-V for the V tasks (two chunks
 * per rank placed in a V), else a placeholder. */
#define MAX_TASK_SCHED 4
static int n_schedules(const PxLayout *k, PxScheduleKind out[MAX_TASK_SCHED]) {
  if (px_schedule_is_v(k->schedule)) {
    out[0] = PX_SCHED_ZB_V;
    out[1] = PX_SCHED_DUALPIPEV;
    return 2;
  }
  if (k->vpp > 1) { out[0] = PX_SCHED_INTERLEAVED; return 1; }
  if (k->pp == 1) { out[0] = PX_SCHED_1F1B; return 1; }
  out[0] = PX_SCHED_1F1B;
  out[1] = PX_SCHED_GPIPE;
  out[2] = PX_SCHED_ZB_H1;
  out[3] = PX_SCHED_ZB_H2;
  return 4;
}

/* The (mbs, ckpt, sp), (zero, offload) and schedule choices of a task under the fix. */
typedef struct {
  int mbs[16], n_mbs;
  int ckpt[3], n_ckpt;
  int sp[2], n_sp;
  int zo[N_ZO], n_zo;
  PxScheduleKind sched[MAX_TASK_SCHED];
  int n_sched;
} Choices;

static void task_choices(const PxSearchOptions *o, const PxLayout *k, Choices *ch) {
  memset(ch, 0, sizeof *ch);
  for (int b = 1; b <= MAX(o->max_mbs, 1) && ch->n_mbs < 16; b *= 2)
    if (fixed_ok(o->fix.mbs, b)) ch->mbs[ch->n_mbs++] = b;
  if (o->fix.mbs > 0 && ch->n_mbs == 0) ch->mbs[ch->n_mbs++] = o->fix.mbs; /* a fixed non-power of two */
  for (int c = 0; c < 3; c++)
    if (fixed_ok(o->fix.ckpt, c)) ch->ckpt[ch->n_ckpt++] = c;
  for (int s = 0; s < (k->tp > 1 ? 2 : 1); s++)
    if (fixed_ok(o->fix.sp, s)) ch->sp[ch->n_sp++] = s;
  for (int z = 0; z < N_ZO; z++)
    if (fixed_ok(o->fix.zero, zero_offload[z].zero) && fixed_ok(o->fix.offload, zero_offload[z].offload) &&
        (k->dp * MAX(k->cp, 1) > 1 || zero_offload[z].zero == 0 || o->fix.zero >= 0 ||
         (k->ep > 0 && (gint64)k->dp * MAX(k->cp, 1) * k->tp > (gint64)k->etp * k->ep))) /* the experts' edp > 1 */
      ch->zo[ch->n_zo++] = z;
  PxScheduleKind all[MAX_TASK_SCHED];
  int n = n_schedules(k, all);
  for (int i = 0; i < n; i++)
    if (fixed_ok(o->fix.schedule, all[i])) ch->sched[ch->n_sched++] = all[i];
}

static void run_task(gpointer data, gpointer user) {
  Task *task = data;
  Run *run = user;
  const Space *sp = &run->space;
  const PxSearchOptions *o = sp->opt;
  PxLayout l = task->key;
  Choices ch;
  task_choices(o, &l, &ch);
  task->best = g_array_new(FALSE, FALSE, sizeof(PxSearchCandidate));
  if (o->keep_points) task->points = g_array_new(FALSE, FALSE, sizeof(PxSearchPoint));

  PxPlan pp_plan;
  plan_from(&pp_plan, sp->base, &l);
  g_autoptr(PxPartition) part = px_partition_new(sp->model, &pp_plan, NULL, &task->why);
  guint64 feasible_local = 0;
  double bound = run->prune ? run_offer(run, G_MAXDOUBLE) : G_MAXDOUBLE;
  StateBlock sb[N_ZO];
  ComputeBlock cb = {0};
  /* the programs of one micro-batch size (the compute blocks of its
   * checkpointing and sequence parallelism share them), per schedule and
   * (ZeRO-3, DP overlap): what px_program_new reads of a layout besides the
   * task's key and the micro-batch count (GATHER_PARAMS, the buckets); NULL:
   * not built yet */
  PxProgram *progs[MAX_TASK_SCHED][4];
  PxSteady *steadies[MAX_TASK_SCHED][4]; /* each program's periods (px_steady_new), NULL: none */
  gboolean prog_tried[MAX_TASK_SCHED][4];
  /* each schedule's peak activations per rank in this compute block (peak_activations) */
  g_autofree double *act = g_new(double, (gsize)MAX_TASK_SCHED * l.pp);
  gboolean act_done[MAX_TASK_SCHED];
  memset(progs, 0, sizeof progs);
  memset(steadies, 0, sizeof steadies);
  memset(sb, 0, sizeof sb);
  if (part) {
    int pp = l.pp;
    g_autofree double *mem = g_new0(double, (gsize)pp * (STATE_ARRAYS * N_ZO + COMPUTE_ARRAYS + COMPUTE_CHUNK_ARRAYS * l.vpp));
    for (int i = 0; i < ch.n_zo; i++) {
      int z = ch.zo[i];
      sb[z] = state_block_at(mem + (gsize)pp * STATE_ARRAYS * z, pp);
      PxLayout lz = l;
      lz.zero = zero_offload[z].zero;
      lz.offload = zero_offload[z].offload;
      state_block(sp, part, lz, &sb[z]);
    }
    cb = compute_block_at(mem + (gsize)pp * STATE_ARRAYS * N_ZO, pp, l.vpp);
    for (int im = 0; im < ch.n_mbs; im++)
      for (int ic = 0; ic < ch.n_ckpt; ic++)
        for (int is = 0; is < ch.n_sp; is++) {
          if (o->cancel && *o->cancel) goto out;
          l.mbs = ch.mbs[im];
          l.ckpt = ch.ckpt[ic];
          l.sp = ch.sp[is];
          compute_block(sp, part, l, &cb);
          for (int i = 0; i < MAX_TASK_SCHED; i++) {
            /* the programs read the micro-batch count, not the checkpointing
             * or sequence parallelism: built once per mbs */
            for (int j = 0; j < 4 && ic == 0 && is == 0; j++) {
              g_clear_pointer(&steadies[i][j], px_steady_free);
              g_clear_pointer(&progs[i][j], px_program_free);
              prog_tried[i][j] = FALSE;
            }
            act_done[i] = FALSE;
          }
          for (int iz = 0; iz < ch.n_zo; iz++) {
            int z = ch.zo[iz];
            l.zero = zero_offload[z].zero;
            l.offload = zero_offload[z].offload;
            for (int ik = 0; ik < ch.n_sched; ik++) {
              l.schedule = ch.sched[ik];
              task->evaluated++;
              PxPlan p;
              plan_from(&p, sp->base, &l);
              /* (p shares the base's strings: nothing to clear) */
              if (!px_plan_validate(&p, sp->model, sp->cluster, task->why ? NULL : &task->why) || !cb.ok || !sb[z].ok)
                continue;
              task->valid++;
              PxSearchCandidate c = {.layout = l, .gbs = p.gbs, .seq = p.seq};
              if (!act_done[ik]) {
                peak_activations(&p, &cb, &act[(gsize)ik * l.pp]);
                act_done[ik] = TRUE;
              }
              c.memory = evaluate_memory(&p, &sb[z], &cb, &act[(gsize)ik * l.pp]);
              c.fits = c.memory <= sp->capacity;
              if (c.fits) {
                gboolean z3 = zero_offload[z].zero == 3;
                if (run->prune && (o->objective == PX_OBJECTIVE_MEMORY ? c.memory > bound
                                                                       : time_lower_bound(&p, &sb[z], &cb, z3) > bound)) {
                  task->feasible++;
                  feasible_local++;
                  continue;
                }
                int slot = 2 * z3 + px_cost_overlap_dp(&p);
                if (!prog_tried[ik][slot]) {
                  progs[ik][slot] = px_program_new(&p, part, NULL);
                  steadies[ik][slot] = progs[ik][slot] ? px_steady_new(progs[ik][slot]) : NULL;
                  prog_tried[ik][slot] = TRUE;
                }
                if (!progs[ik][slot] ||
                    !engine_time(progs[ik][slot], steadies[ik][slot], &cb, &sb[z], z3, &c.analytic_time))
                  continue;
              }
              if (!task->have_closest || c.memory < task->closest.memory ||
                  (c.memory == task->closest.memory && px_layout_compare(&l, &task->closest.layout) < 0)) {
                task->closest = c;
                task->have_closest = TRUE;
              }
              if (!c.fits) continue;
              task->feasible++;
              feasible_local++;
              best_insert(task->best, run->cap, &c, o->objective);
              double key = o->objective == PX_OBJECTIVE_MEMORY ? c.memory : c.analytic_time;
              if (run->prune && key < bound) bound = run_offer(run, key);
              if (task->points) {
                PxSearchPoint pt = {c.memory, c.analytic_time, l};
                g_array_append_val(task->points, pt);
              }
            }
          }
        }
  }
out:
  for (int i = 0; i < MAX_TASK_SCHED; i++)
    for (int j = 0; j < 4; j++) {
      g_clear_pointer(&steadies[i][j], px_steady_free);
      g_clear_pointer(&progs[i][j], px_program_free);
    }
  for (int z = 0; z < N_ZO; z++) g_clear_pointer(&sb[z].tab, px_cost_table_free);
  g_clear_pointer(&cb.tab, px_cost_table_free);
  g_mutex_lock(&run->lock);
  run->evaluated += task->evaluated;
  run->feasible += feasible_local;
  if (task->best->len > 0) {
    const PxSearchCandidate *b = &g_array_index(task->best, PxSearchCandidate, 0);
    if (!run->have_best || cand_cmp_key(b, &run->best, o->objective, FALSE) < 0) run->best = *b;
    run->have_best = TRUE;
  }
  task->done = TRUE;
  run->done++;
  g_cond_signal(&run->cond);
  g_mutex_unlock(&run->lock);
}

/* Rank orders that differ only in where a size-1 axis sits are one layout. */
static gboolean order_redundant(int i, const PxLayout *k) {
  int size[3];
  size[PX_AXIS_TP] = k->tp;
  size[PX_AXIS_DP] = k->dp * MAX(k->cp, 1); /* cp sits inside dp */
  size[PX_AXIS_PP] = k->pp;
  for (int j = 0; j < i; j++) {
    int a[3], na = 0, b[3], nb = 0;
    for (int x = 0; x < 3; x++) {
      if (size[orders[i][x]] > 1) a[na++] = orders[i][x];
      if (size[orders[j][x]] > 1) b[nb++] = orders[j][x];
    }
    if (na == nb && !memcmp(a, b, na * sizeof(int))) return TRUE;
  }
  return FALSE;
}

/* Whether the search tries context parallelism cp for a sequence of seq
 * tokens (search.h PX_SEARCH_MIN_CP_TOKENS; a fixed cp is always tried). */
static gboolean cp_tried(const PxSearchOptions *o, int seq, int cp) {
  if (!fixed_ok(o->fix.cp, cp)) return FALSE;
  if (cp == 1 || o->fix.cp == cp) return TRUE;
  return (cp & (cp - 1)) == 0 && seq % (2 * cp) == 0 && seq / cp >= PX_SEARCH_MIN_CP_TOKENS;
}

static GArray *enumerate_tasks(const PxModel *model, const PxCluster *cluster, const PxSearchOptions *o, int seq) {
  GArray *tasks = g_array_new(FALSE, TRUE, sizeof(Task));
  const PxModelDesc *d = &model->desc;
  int gpus = px_cluster_gpus(cluster);
  int tp_max = o->tp_across_nodes ? gpus : MIN(gpus, cluster->gpus_per_node);
  for (int tp = 1; tp <= tp_max; tp++) {
    if (gpus % tp || d->heads % tp || d->kv_heads % tp || d->ffn % tp || !fixed_ok(o->fix.tp, tp)) continue;
    for (int cp = 1; cp <= gpus / tp; cp++) {
    if ((gpus / tp) % cp || !cp_tried(o, seq, cp)) continue;
    for (int pp = 1; pp <= d->layers && pp <= gpus / (tp * cp); pp++) {
      if ((gpus / (tp * cp)) % pp || !fixed_ok(o->fix.pp, pp)) continue;
      int dp = gpus / (tp * cp * pp);
      if (!fixed_ok(o->fix.dp, dp)) continue;
      for (int vpp = 1; vpp <= MAX(o->max_vpp, 1); vpp++) {
        if (vpp > 1 && (pp == 1 || pp * vpp > d->layers)) continue;
        if (!fixed_ok(o->fix.vpp, vpp)) continue;
        /* vpp 2 is tried twice: Megatron's interleaving and the V (zb-v, dualpipev) */
        for (int v_shape = 0; v_shape <= (vpp == 2 && pp > 1); v_shape++)
          for (int oi = 0; oi < 6; oi++)
            for (int ep = 1; ep <= MAX(d->experts, 1); ep++)
              for (int ei = 0; ei < 2; ei++) {
                /* the experts' grid: ep a divisor of the experts with etp·ep·pp
                 * dividing the GPUs, etp 1 or tp (dense models: 1 and tp) */
                int etp = ei ? 1 : tp;
                if ((ei && tp == 1) || (d->experts == 0 && (ep > 1 || ei))) continue;
                if (d->experts > 0 && (d->experts % ep || gpus % ((gint64)etp * ep * pp) || d->expert_ffn % etp)) continue;
                if (!fixed_ok(o->fix.ep, ep) || !fixed_ok(o->fix.etp, etp)) continue;
                Task t = {0};
                t.key = (PxLayout){.tp = tp, .pp = pp, .dp = dp, .vpp = vpp, .mbs = 1, .order = (gint8)oi,
                                   .schedule = v_shape ? PX_SCHED_ZB_V : PX_SCHED_NAIVE, .cp = cp, .ep = ep, .etp = etp};
                if (!fixed_ok(o->fix.order, oi) || (o->fix.order < 0 && order_redundant(oi, &t.key))) continue;
                Choices ch;
                task_choices(o, &t.key, &ch);
                t.count = (guint64)ch.n_mbs * ch.n_ckpt * ch.n_sp * ch.n_zo * ch.n_sched;
                if (t.count) g_array_append_val(tasks, t);
              }
      }
    }
    }
  }
  return tasks;
}

char *px_search_why_empty(const PxModel *model, const PxCluster *cluster, const PxSearchOptions *o) {
  const PxModelDesc *d = &model->desc;
  int gpus = px_cluster_gpus(cluster);
  int tp_max = o->tp_across_nodes ? gpus : MIN(gpus, cluster->gpus_per_node);
  const PxSearchFix *f = &o->fix;
  if (f->tp > 0) {
    if (f->tp > tp_max)
      return g_strdup_printf("--fix tp=%d: tp stays within a node of %d GPUs (--tp-across-nodes lifts it)", f->tp, tp_max);
    if (gpus % f->tp) return g_strdup_printf("--fix tp=%d does not divide %d GPUs", f->tp, gpus);
    if (d->heads % f->tp) return g_strdup_printf("--fix tp=%d does not divide %d attention heads", f->tp, d->heads);
    if (d->kv_heads % f->tp) return g_strdup_printf("--fix tp=%d does not divide %d key-value heads", f->tp, d->kv_heads);
    if (d->ffn % f->tp) return g_strdup_printf("--fix tp=%d does not divide the FFN size %d", f->tp, d->ffn);
  }
  if (f->pp > 0) {
    if (f->pp > d->layers) return g_strdup_printf("--fix pp=%d exceeds %d layers", f->pp, d->layers);
    if (gpus % f->pp) return g_strdup_printf("--fix pp=%d does not divide %d GPUs", f->pp, gpus);
    if (f->tp > 0 && gpus % ((gint64)f->tp * f->pp))
      return g_strdup_printf("--fix tp=%d × pp=%d does not divide %d GPUs", f->tp, f->pp, gpus);
  }
  if (f->dp > 0 && gpus % f->dp) return g_strdup_printf("--fix dp=%d does not divide %d GPUs", f->dp, gpus);
  if (f->cp > 0 && gpus % f->cp) return g_strdup_printf("--fix cp=%d does not divide %d GPUs", f->cp, gpus);
  if (f->vpp > 1) {
    if (f->vpp > MAX(o->max_vpp, 1))
      return g_strdup_printf("--fix vpp=%d is above --max-vpp %d", f->vpp, MAX(o->max_vpp, 1));
    if (f->pp == 1) return g_strdup_printf("--fix vpp=%d needs pp > 1", f->vpp);
    if (f->pp > 0 && (gint64)f->pp * f->vpp > d->layers)
      return g_strdup_printf("--fix pp=%d × vpp=%d = %d model chunks exceed %d layers", f->pp, f->vpp, f->pp * f->vpp,
                             d->layers);
    if (f->schedule >= 0 && f->schedule != PX_SCHED_INTERLEAVED && !(f->vpp == 2 && px_schedule_is_v(f->schedule)))
      return g_strdup_printf("--fix vpp=%d needs the interleaved schedule (or vpp=2 with zb-v, dualpipev)", f->vpp);
  }
  if (d->experts == 0 && f->ep > 1) return g_strdup_printf("--fix ep=%d needs a mixture-of-experts model (%s has no experts)", f->ep, d->name);
  if (d->experts > 0 && f->ep > 0 && d->experts % f->ep)
    return g_strdup_printf("--fix ep=%d does not divide the %d experts", f->ep, d->experts);
  if (d->experts > 0 && f->ep > 0 && gpus % f->ep) return g_strdup_printf("--fix ep=%d does not divide %d GPUs", f->ep, gpus);
  if (f->etp > 0 && f->etp != 1 && f->tp > 0 && f->etp != f->tp)
    return g_strdup_printf("--fix etp=%d: the search tries etp 1 or tp (tp=%d)", f->etp, f->tp);
  if (f->vpp == 1 && f->schedule == PX_SCHED_INTERLEAVED) return g_strdup("--fix schedule=interleaved needs vpp ≥ 2");
  if (f->vpp == 1 && f->schedule >= 0 && px_schedule_is_v(f->schedule))
    return g_strdup_printf("--fix schedule=%s needs vpp = 2 (two chunks per rank)", px_schedule_name(f->schedule));
  return NULL;
}

/* ---- confirmation --------------------------------------------------------- */

gboolean px_search_confirm(const PxModel *model, const PxCluster *cluster, const PxPlan *base,
                           PxSearchCandidate *c, GError **error) {
  PxPlan p;
  px_plan_copy(&p, base);
  px_layout_apply(&c->layout, &p);
  g_autoptr(PxPartition) part = NULL;
  g_autoptr(PxProgram) prog = NULL;
  g_autoptr(PxCostTable) table = NULL;
  g_autoptr(PxMemory) mem = NULL;
  g_autoptr(PxSimResult) res = NULL;
  PxSimOptions so = {.no_timeline = TRUE};
  gboolean ok = px_plan_validate(&p, model, cluster, error) &&
                (part = px_partition_new(model, &p, NULL, error)) &&
                (prog = px_program_new(&p, part, error)) &&
                (table = px_cost_table_new(model, cluster, &p, part, error)) &&
                (res = px_simulate(prog, table, &so, error));
  if (ok) {
    mem = px_memory_new(model, &p, part, cluster);
    c->memory = mem->peak;
    c->simulated = TRUE;
    c->step_time = res->step_time;
    c->bubble = res->bubble_fraction;
    c->breakdown = res->breakdown;
    c->gbs = p.gbs;
    c->seq = p.seq;
    c->tokens_per_s = (double)p.gbs * p.seq / res->step_time;
    c->p2p_bytes = 0;
    for (int st = 0; st < prog->pp; st++) {
      double bytes = 0;
      const PxRankProgram *rp = &prog->ranks[st];
      for (guint i = 0; i < rp->n; i++) {
        const PxInstr *in = &rp->instrs[i];
        if ((in->kind == PX_OP_SEND_ACT || in->kind == PX_OP_SEND_GRAD) && in->peer != st)
          bytes += table->p2p_bytes[px_program_part_of(prog, st, in->chunk)];
      }
      c->p2p_bytes = MAX(c->p2p_bytes, bytes);
    }
    c->mfu = table->model_flops_per_step / (res->step_time * px_plan_world(&p) * table->peak_flops);
  }
  px_plan_clear(&p);
  return ok;
}

gboolean px_search_evaluate(const PxModel *model, const PxCluster *cluster, const PxPlan *base,
                            const PxLayout *l, double *memory, double *time) {
  PxPlan p;
  plan_from(&p, base, l);
  if (!px_plan_validate(&p, model, cluster, NULL)) return FALSE;
  g_autoptr(PxPartition) part = px_partition_new(model, &p, NULL, NULL);
  if (!part) return FALSE;
  int pp = l->pp;
  g_autofree double *mem = g_new0(double, (gsize)pp * (STATE_ARRAYS + COMPUTE_ARRAYS + COMPUTE_CHUNK_ARRAYS * l->vpp));
  StateBlock sb = state_block_at(mem, pp);
  ComputeBlock cb = compute_block_at(mem + (gsize)pp * STATE_ARRAYS, pp, l->vpp);
  Space sp = {model, cluster, base, 0, NULL};
  state_block(&sp, part, *l, &sb);
  compute_block(&sp, part, *l, &cb);
  g_autoptr(PxProgram) prog = sb.ok && cb.ok ? px_program_new(&p, part, NULL) : NULL;
  gboolean ok = prog && engine_time(prog, NULL, &cb, &sb, l->zero == 3, time);
  if (ok) {
    g_autofree double *act = g_new(double, pp);
    peak_activations(&p, &cb, act);
    *memory = evaluate_memory(&p, &sb, &cb, act);
  }
  g_clear_pointer(&sb.tab, px_cost_table_free);
  g_clear_pointer(&cb.tab, px_cost_table_free);
  return ok;
}

double px_search_kendall_tau(const PxSearchResult *r) {
  double concordant = 0, discordant = 0, ties_x = 0, ties_y = 0;
  guint n = r && r->top ? r->top->len : 0;
  for (guint i = 0; i < n; i++)
    for (guint j = i + 1; j < n; j++) {
      const PxSearchCandidate *a = &g_array_index(r->top, PxSearchCandidate, i);
      const PxSearchCandidate *b = &g_array_index(r->top, PxSearchCandidate, j);
      double dx = a->analytic_time - b->analytic_time, dy = a->step_time - b->step_time;
      if (dx == 0 && dy == 0) continue;
      if (dx == 0) ties_x++;
      else if (dy == 0) ties_y++;
      else if ((dx > 0) == (dy > 0)) concordant++;
      else discordant++;
    }
  double denom = sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y));
  return denom > 0 ? (concordant - discordant) / denom : 1.0;
}

/* ---- the search ----------------------------------------------------------- */

void px_search_result_free(PxSearchResult *r) {
  if (!r) return;
  if (r->top) g_array_unref(r->top);
  if (r->points) g_array_unref(r->points);
  g_free(r->why_invalid);
  g_free(r);
}

static void report_progress(Run *run, const PxSearchOptions *o, guint64 total, GTimer *timer) {
  if (!o->progress) return;
  PxSearchProgress pr = {.total = total, .elapsed = g_timer_elapsed(timer, NULL)};
  pr.evaluated = run->evaluated;
  pr.feasible = run->feasible;
  pr.have_best = run->have_best;
  if (run->have_best) {
    pr.best_time = run->best.analytic_time;
    pr.best = run->best.layout;
  }
  o->progress(&pr, o->progress_data);
}

PxSearchResult *px_search_run(const PxModel *model, const PxCluster *cluster, const PxPlan *base,
                              const PxSearchOptions *opt, GError **error) {
  PxSearchOptions defaults;
  if (!opt) {
    px_search_options_init(&defaults);
    opt = &defaults;
  }
  if (opt->objective == PX_OBJECTIVE_GPUS) {
    g_set_error(error, PX_SEARCH_ERROR, PX_SEARCH_ERROR_INVALID,
                "objective 'gpus' chooses among GPU counts: it needs a node range (sizing)");
    return NULL;
  }
  gint64 gpus_all = px_cluster_gpus(cluster);
  if (base->gbs > (gint64)PX_SEARCH_MAX_SEQS_PER_GPU * gpus_all) {
    g_set_error(error, PX_SEARCH_ERROR, PX_SEARCH_ERROR_INVALID,
                "global batch %d on %" G_GINT64_FORMAT " GPUs is more than %d sequences per GPU: the search simulates "
                "every candidate's micro-batches (a smaller batch, or more GPUs)", base->gbs, gpus_all,
                PX_SEARCH_MAX_SEQS_PER_GPU);
    return NULL;
  }
  g_autoptr(GTimer) timer = g_timer_new();
  g_autoptr(PxSearchResult) res = g_new0(PxSearchResult, 1);
  res->gpus = px_cluster_gpus(cluster);
  res->gpu_memory = (double)cluster->gpu_memory;
  res->capacity = (opt->max_memory > 0 ? MIN(opt->max_memory, res->gpu_memory) : res->gpu_memory) - opt->margin;
  int top = MAX(opt->top, 1);
  int cap = opt->confirm > 0 ? MAX(opt->confirm, top) : MAX(4 * top, 16);

  Run run = {.space = {model, cluster, base, res->capacity, opt}, .cap = cap};
  run.prune = !opt->keep_points;
  g_autofree double *top_times = g_new(double, cap);
  run.top_times = top_times;
  g_autoptr(GArray) tasks = enumerate_tasks(model, cluster, opt, base->seq > 0 ? base->seq : model->desc.default_seq);
  if (tasks->len == 0) res->why_invalid = px_search_why_empty(model, cluster, opt);
  run.tasks = (Task *)tasks->data;
  run.n_tasks = tasks->len;
  for (guint i = 0; i < tasks->len; i++) res->total += run.tasks[i].count;
  g_mutex_init(&run.lock);
  g_cond_init(&run.cond);

  int threads = opt->threads > 0 ? opt->threads : (int)g_get_num_processors();
  GThreadPool *pool = g_thread_pool_new(run_task, &run, MAX(threads, 1), TRUE, NULL);
  for (guint i = 0; i < tasks->len; i++) g_thread_pool_push(pool, &run.tasks[i], NULL);
  g_mutex_lock(&run.lock);
  while (run.done < run.n_tasks) {
    g_cond_wait_until(&run.cond, &run.lock, g_get_monotonic_time() + 100 * G_TIME_SPAN_MILLISECOND);
    report_progress(&run, opt, res->total, timer);
  }
  g_mutex_unlock(&run.lock);
  g_thread_pool_free(pool, FALSE, TRUE);
  g_mutex_clear(&run.lock);
  g_cond_clear(&run.cond);
  res->cancelled = opt->cancel && *opt->cancel;

  /* merge in task order */
  g_autoptr(GArray) best = g_array_new(FALSE, FALSE, sizeof(PxSearchCandidate));
  if (opt->keep_points) res->points = g_array_new(FALSE, FALSE, sizeof(PxSearchPoint));
  for (guint i = 0; i < tasks->len; i++) {
    Task *t = &run.tasks[i];
    if (t->why && !res->why_invalid) {
      res->why_invalid = g_strdup_printf("%s (tp %d cp %d pp %d dp %d vpp %d)", t->why->message, t->key.tp,
                                         MAX(t->key.cp, 1), t->key.pp, t->key.dp, t->key.vpp);
    }
    g_clear_error(&t->why);
    res->evaluated += t->evaluated;
    res->valid += t->valid;
    res->feasible += t->feasible;
    if (t->have_closest && (!res->have_closest || t->closest.memory < res->closest.memory ||
                            (t->closest.memory == res->closest.memory &&
                             px_layout_compare(&t->closest.layout, &res->closest.layout) < 0))) {
      res->closest = t->closest;
      res->have_closest = TRUE;
    }
    if (t->best) {
      g_array_append_vals(best, t->best->data, t->best->len);
      g_array_unref(t->best);
    }
    if (t->points) {
      g_array_append_vals(res->points, t->points->data, t->points->len);
      g_array_unref(t->points);
    }
  }
  PxSearchObjective obj = opt->objective;
  g_array_sort_with_data(best, cmp_analytic, &obj);
  if ((int)best->len > cap) g_array_set_size(best, cap);

  /* confirm by simulation, rank by simulated time */
  res->top = g_array_new(FALSE, FALSE, sizeof(PxSearchCandidate));
  for (guint i = 0; i < best->len; i++) {
    PxSearchCandidate c = g_array_index(best, PxSearchCandidate, i);
    if (opt->cancel && *opt->cancel && res->top->len >= (guint)top) break;
    g_autoptr(GError) err = NULL;
    if (!px_search_confirm(model, cluster, base, &c, &err)) {
      g_autofree char *ls = px_layout_format(&c.layout);
      g_set_error(error, PX_SEARCH_ERROR, PX_SEARCH_ERROR_FAILED, "confirming %s: %s", ls, err->message);
      return NULL;
    }
    c.fits = c.memory <= res->capacity;
    if (c.fits) g_array_append_val(res->top, c);
  }
  g_array_sort_with_data(res->top, cmp_simulated, &obj);
  if ((int)res->top->len > top) g_array_set_size(res->top, top);
  if (res->have_closest && !res->closest.simulated && res->feasible == 0)
    px_search_confirm(model, cluster, base, &res->closest, NULL);
  res->elapsed = g_timer_elapsed(timer, NULL);
  return g_steal_pointer(&res);
}

GArray *px_search_schedules(const PxModel *model, const PxCluster *cluster, const PxPlan *base,
                            const PxSearchCandidate *winner, double capacity) {
  static const PxScheduleKind kinds[] = {PX_SCHED_GPIPE, PX_SCHED_1F1B, PX_SCHED_INTERLEAVED, PX_SCHED_ZB_H1,
                                         PX_SCHED_ZB_H2, PX_SCHED_ZB_V, PX_SCHED_DUALPIPEV};
  if (winner->layout.pp < 2) return NULL;
  GArray *out = g_array_new(FALSE, TRUE, sizeof(PxSearchCandidate));
  for (gsize k = 0; k < G_N_ELEMENTS(kinds); k++) {
    PxSearchCandidate c = {.layout = winner->layout};
    c.layout.schedule = kinds[k];
    c.layout.vpp = kinds[k] == PX_SCHED_INTERLEAVED ? MAX(winner->layout.vpp, 2) : px_schedule_is_v(kinds[k]) ? 2 : 1;
    if (c.layout.schedule == winner->layout.schedule && c.layout.vpp == winner->layout.vpp) {
      g_array_append_val(out, *winner);
      continue;
    }
    if (!px_search_confirm(model, cluster, base, &c, NULL)) continue;
    c.analytic_time = c.step_time;
    c.fits = c.memory <= capacity;
    g_array_append_val(out, c);
  }
  return out;
}

/* ---- explanation ---------------------------------------------------------- */

static void add_diff(GPtrArray *d, char *s) { g_ptr_array_add(d, s); }

static char *join_and(GPtrArray *parts) {
  GString *s = g_string_new(NULL);
  for (guint i = 0; i < parts->len; i++) {
    if (i > 0) g_string_append(s, i + 1 == parts->len ? " and " : ", ");
    g_string_append(s, g_ptr_array_index(parts, i));
  }
  return g_string_free(s, FALSE);
}

char *px_search_explain(const PxSearchCandidate *w, const PxSearchCandidate *r, double capacity,
                        double scale, const char *unit) {
  const PxLayout *a = &w->layout, *b = &r->layout;
  g_autoptr(GPtrArray) diffs = g_ptr_array_new_with_free_func(g_free);
  if (a->tp != b->tp) add_diff(diffs, g_strdup_printf("tp %d instead of %d", a->tp, b->tp));
  if (MAX(a->cp, 1) != MAX(b->cp, 1)) add_diff(diffs, g_strdup_printf("cp %d instead of %d", MAX(a->cp, 1), MAX(b->cp, 1)));
  if (a->pp != b->pp) add_diff(diffs, g_strdup_printf("pp %d instead of %d", a->pp, b->pp));
  if (a->dp != b->dp && a->tp == b->tp && a->pp == b->pp) add_diff(diffs, g_strdup_printf("dp %d instead of %d", a->dp, b->dp));
  if (a->schedule != b->schedule)
    add_diff(diffs, g_strdup_printf("%s instead of %s", px_schedule_name(a->schedule), px_schedule_name(b->schedule)));
  if (a->vpp != b->vpp && a->vpp > 1 && b->vpp > 1)
    add_diff(diffs, g_strdup_printf("%d chunks per rank instead of %d", a->vpp, b->vpp));
  if (a->mbs != b->mbs) add_diff(diffs, g_strdup_printf("micro-batch %d instead of %d", a->mbs, b->mbs));
  if (a->zero != b->zero) add_diff(diffs, g_strdup_printf("ZeRO-%d instead of ZeRO-%d", a->zero, b->zero));
  if (a->offload != b->offload)
    add_diff(diffs, g_strdup_printf("offload %s instead of %s", px_offload_name(a->offload), px_offload_name(b->offload)));
  if (a->ckpt != b->ckpt)
    add_diff(diffs, g_strdup_printf("%s instead of %s recompute", px_ckpt_name(a->ckpt), px_ckpt_name(b->ckpt)));
  if (a->sp != b->sp) add_diff(diffs, g_strdup_printf("sequence parallelism %s", a->sp ? "on" : "off"));
  if (a->order != b->order) {
    g_autofree char *oa = px_search_order_string(a->order), *ob = px_search_order_string(b->order);
    add_diff(diffs, g_strdup_printf("rank order %s instead of %s", oa, ob));
  }
  g_autofree char *what = join_and(diffs);

  /* effects: the parts of the step that moved, largest first, in the winner's favour */
  double ta = w->step_time, tb = r->step_time;
  double ca = w->breakdown.compute, cb = r->breakdown.compute;
  double ea = 0, eb = 0;
  for (int k = 0; k < PX_N_COMM; k++) {
    ea += w->breakdown.exposed[k];
    eb += r->breakdown.exposed[k];
  }
  double ba = w->breakdown.bubble, bb = r->breakdown.bubble;
  typedef struct { double gain; char *text; } Effect;
  Effect eff[3] = {
    {bb - ba, g_strdup_printf("the bubble falls from %.1f %% to %.1f %% of the step", 100 * bb / tb, 100 * ba / ta)},
    {cb - ca, g_strdup_printf("compute per GPU falls from %.1f to %.1f ms", 1e3 * cb, 1e3 * ca)},
    {eb - ea, g_strdup_printf("exposed communication falls from %.1f to %.1f ms", 1e3 * eb, 1e3 * ea)},
  };
  for (int i = 0; i < 3; i++)
    for (int j = i + 1; j < 3; j++)
      if (eff[j].gain > eff[i].gain) {
        Effect t = eff[i];
        eff[i] = eff[j];
        eff[j] = t;
      }
  g_autoptr(GPtrArray) effects = g_ptr_array_new();
  for (int i = 0; i < 3; i++)
    if (eff[i].gain > 0.005 * tb) g_ptr_array_add(effects, eff[i].text);
  g_autofree char *why = join_and(effects);
  GString *s = g_string_new(NULL);
  if (diffs->len == 0)
    g_string_append(s, "The winner and the runner-up differ in no knob");
  else if (ta < tb)
    g_string_append_printf(s, "With %s the step is %.2g %% shorter (%.1f vs %.1f ms)", what, 100 * (tb - ta) / tb,
                           1e3 * ta, 1e3 * tb);
  else
    g_string_append_printf(s, "With %s the step time is the same (%.1f ms) and the tie-break picks it", what, 1e3 * ta);
  if (effects->len > 0 && ta < tb) g_string_append_printf(s, ": %s", why);
  if (capacity > 0) g_string_append_printf(s, "; it fits with %.1f %s to spare", (capacity - w->memory) / scale, unit);
  g_string_append_c(s, '.');
  if (a->schedule != b->schedule && w->simulated && r->simulated)
    g_string_append_printf(s, " %s against %s: bubble %.1f %% vs %.1f %% of the step (exposed p2p apart), peak memory %.2f vs %.2f %s, "
                           "p2p %.1f vs %.1f MB per GPU per step.",
                           px_schedule_name(a->schedule), px_schedule_name(b->schedule), 100 * ba / ta, 100 * bb / tb,
                           w->memory / scale, r->memory / scale, unit, w->p2p_bytes / 1e6, r->p2p_bytes / 1e6);
  for (int i = 0; i < 3; i++) g_free(eff[i].text);
  return g_string_free(s, FALSE);
}

/* ---- sizing --------------------------------------------------------------- */

void px_sizing_result_free(PxSizingResult *r) {
  if (!r) return;
  if (r->rows) g_array_unref(r->rows);
  g_free(r);
}

PxSizingResult *px_search_size(const PxModel *model, const PxCluster *cluster, const PxPlan *base,
                               const PxSearchOptions *opt, const PxSizingOptions *sz, GError **error) {
  if (sz->min_nodes < 1 || sz->max_nodes < sz->min_nodes) {
    g_set_error(error, PX_SEARCH_ERROR, PX_SEARCH_ERROR_INVALID, "node range %d-%d is empty", sz->min_nodes,
                sz->max_nodes);
    return NULL;
  }
  PxSearchOptions o = *opt;
  o.objective = PX_OBJECTIVE_TIME;
  o.top = 1;
  g_autoptr(PxSizingResult) res = g_new0(PxSizingResult, 1);
  res->rows = g_array_new(FALSE, TRUE, sizeof(PxSizingRow));
  res->answer = -1;
  g_autoptr(PxCluster) c = px_cluster_copy(cluster);
  g_autoptr(GArray) counts = g_array_new(FALSE, FALSE, sizeof(int));
  for (gint64 n = sz->min_nodes; n <= sz->max_nodes; n++) {
    if (!sz->all_counts && n != sz->min_nodes && (n & (n - 1))) {
      gint64 p = 1;  /* jump to the next power of two */
      while (p <= n) p *= 2;
      n = p - 1;
      continue;
    }
    int v = (int)n;
    g_array_append_val(counts, v);
  }
  for (guint i = 0; i < counts->len; i++) {
    c->nodes = g_array_index(counts, int, i);
    if (base->gbs > (gint64)PX_SEARCH_MAX_SEQS_PER_GPU * px_cluster_gpus(c)) {
      /* too few GPUs for the batch to search (px_search_run): none found */
      PxSizingRow row = {.nodes = c->nodes, .gpus = px_cluster_gpus(c)};
      g_array_append_val(res->rows, row);
      continue;
    }
    g_autoptr(PxSearchResult) r = px_search_run(model, c, base, &o, error);
    if (!r) return NULL;
    PxSizingRow row = {.nodes = c->nodes, .gpus = px_cluster_gpus(c)};
    if (r->top->len > 0) {
      row.found = TRUE;
      row.best = g_array_index(r->top, PxSearchCandidate, 0);
      double steps = sz->tokens / ((double)row.best.gbs * row.best.seq);
      row.days = steps * row.best.step_time / 86400.0;
      row.gpu_hours = row.days * 24.0 * row.gpus;
      row.meets = sz->days <= 0 || row.days <= sz->days;
    }
    g_array_append_val(res->rows, row);
    if (r->cancelled) {
      res->cancelled = TRUE;
      break;
    }
    if (row.found && row.meets) {
      res->answer = (int)res->rows->len - 1;
      break;
    }
  }
  return g_steal_pointer(&res);
}
