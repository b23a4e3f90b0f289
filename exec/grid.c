/* grid.c — rank coordinates and the groups of each parallel axis. */
#include "grid.h"
#include "moe.h"

G_DEFINE_QUARK(px-grid-error-quark, px_grid_error)

struct _PxGrid {
  PxPlan plan;      /* dp, cp, tp, pp, order (copied) */
  int world;
  PxCoord *coords;  /* (world) */
  PxExpertCoord *ecoords; /* (world) */
  GPtrArray *groups[PX_GROUP_N_KINDS];  /* of PxGroup, DeepSpeed order */
  int *member[PX_GROUP_N_KINDS];        /* (world) index into groups[kind] */
};

const char *px_group_kind_name(PxGroupKind kind) {
  static const char *names[] = {"tp", "dp", "pp", "embed", "cp", "dpcp", "ep", "etp", "edp"};
  return (unsigned)kind < PX_GROUP_N_KINDS ? names[kind] : "?";
}

int px_grid_size(const PxGrid *grid, PxAxis axis) {
  return axis == PX_AXIS_TP ? grid->plan.tp : axis == PX_AXIS_DP ? grid->plan.dp : grid->plan.pp;
}

int px_grid_cp(const PxGrid *grid) { return grid->plan.cp; }

/* The four axes of the grid; the plan's data axis is (cp inner, dp outer). */
enum { AX_TP, AX_CP, AX_DP, AX_PP, AX_N };

static int ax_size(const PxGrid *grid, int a) {
  return a == AX_TP ? grid->plan.tp : a == AX_CP ? grid->plan.cp : a == AX_DP ? grid->plan.dp : grid->plan.pp;
}

/* The axes in rank order, innermost first. */
static void rank_order(const PxGrid *grid, int order[AX_N]) {
  int k = 0;
  for (int i = 0; i < 3; i++) {
    PxAxis a = grid->plan.order[i];
    if (a == PX_AXIS_TP) order[k++] = AX_TP;
    else if (a == PX_AXIS_PP) order[k++] = AX_PP;
    else {
      order[k++] = AX_CP;
      order[k++] = AX_DP;
    }
  }
}

/* Groups over the axes of mask: for every combination of the other axes (the
 * slowest in rank order varying slowest, as DeepSpeed's get_axis_comm_lists),
 * the ranks whose coordinates on the mask's axes run through their range, the
 * innermost fastest (dp·cp: position d·cp + c) — or, for embed, only the
 * first and last stage. */
static void build_groups(PxGrid *grid, PxGroupKind kind, unsigned mask) {
  int order[AX_N], others[AX_N], var[AX_N], no = 0, nv = 0;
  rank_order(grid, order);
  for (int i = AX_N - 1; i >= 0; i--)
    if (!(mask & (1u << order[i]))) others[no++] = order[i];
  for (int i = 0; i < AX_N; i++)
    if (mask & (1u << order[i])) var[nv++] = order[i];
  gboolean ends = kind == PX_GROUP_EMBED;
  int len = 1, n_groups = 1;
  for (int q = 0; q < nv; q++) len *= ax_size(grid, var[q]);
  for (int o = 0; o < no; o++) n_groups *= ax_size(grid, others[o]);
  if (ends) len = MIN(len, 2);
  grid->groups[kind] = g_ptr_array_new_with_free_func((GDestroyNotify)px_group_free);
  grid->member[kind] = g_new(int, grid->world);
  for (int gi = 0; gi < n_groups; gi++) {
    int v[AX_N] = {0, 0, 0, 0};
    for (int o = no - 1, rem = gi; o >= 0; o--) {
      v[others[o]] = rem % ax_size(grid, others[o]);
      rem /= ax_size(grid, others[o]);
    }
    int ranks[len];
    for (int j = 0; j < len; j++) {
      int pos = ends && j == 1 ? ax_size(grid, var[0]) - 1 : j;
      for (int q = 0; q < nv; q++) {
        v[var[q]] = pos % ax_size(grid, var[q]);
        pos /= ax_size(grid, var[q]);
      }
      ranks[j] = px_grid_rank_cp(grid, v[AX_DP], v[AX_CP], v[AX_TP], v[AX_PP]);
    }
    for (int j = 0; j < len; j++) grid->member[kind][ranks[j]] = (int)grid->groups[kind]->len;
    g_ptr_array_add(grid->groups[kind], px_group_new(px_group_kind_name(kind), len, ranks));
  }
  if (ends) /* middle stages hold no embedding: no embed group */
    for (int r = 0; r < grid->world; r++) {
      int st = grid->coords[r].pp;
      if (st != 0 && st != grid->plan.pp - 1) grid->member[kind][r] = -1;
    }
}

/* The expert groups (grid.h): for each stage and each pair of the other two
 * expert coordinates (outer slowest), the ranks along one expert axis. */
static void build_expert(PxGrid *grid, PxGroupKind kind) {
  const PxPlan *p = &grid->plan;
  int n[3] = {px_plan_etp(p), MAX(p->ep, 1), px_plan_edp(p)}; /* etp, ep, edp */
  int axis = kind == PX_GROUP_ETP ? 0 : kind == PX_GROUP_EP ? 1 : 2;
  int o1 = axis == 2 ? 1 : 2, o0 = axis == 0 ? 1 : 0; /* o1 outer, o0 inner of the other two */
  grid->groups[kind] = g_ptr_array_new_with_free_func((GDestroyNotify)px_group_free);
  grid->member[kind] = g_new(int, grid->world);
  for (int st = 0; st < p->pp; st++)
    for (int a = 0; a < n[o1]; a++)
      for (int b = 0; b < n[o0]; b++) {
        int ranks[n[axis]];
        for (int j = 0; j < n[axis]; j++) {
          int c[3];
          c[o1] = a, c[o0] = b, c[axis] = j;
          ranks[j] = px_moe_rank_of(p, st, c[0], c[1], c[2]);
          grid->member[kind][ranks[j]] = (int)grid->groups[kind]->len;
          if (kind == PX_GROUP_EP) grid->ecoords[ranks[j]] = (PxExpertCoord){c[1], c[0], c[2]};
        }
        g_ptr_array_add(grid->groups[kind], px_group_new(px_group_kind_name(kind), n[axis], ranks));
      }
}

PxGrid *px_grid_new(const PxPlan *plan, GError **error) {
  int cp = MAX(plan->cp, 1);
  if (plan->dp < 1 || plan->tp < 1 || plan->pp < 1) {
    g_set_error(error, PX_GRID_ERROR, PX_GRID_ERROR_INVALID, "grid: dp=%d tp=%d pp=%d must be >= 1",
                plan->dp, plan->tp, plan->pp);
    return NULL;
  }
  gboolean seen[3] = {FALSE, FALSE, FALSE};
  for (int i = 0; i < 3; i++) {
    if ((unsigned)plan->order[i] > PX_AXIS_PP || seen[plan->order[i]]) {
      g_set_error(error, PX_GRID_ERROR, PX_GRID_ERROR_INVALID,
                  "grid: rank order must name tp, dp and pp once each");
      return NULL;
    }
    seen[plan->order[i]] = TRUE;
  }
  int etp = plan->etp > 0 ? plan->etp : plan->tp, ep = MAX(plan->ep, 1);
  if ((gint64)px_plan_world(plan) % ((gint64)etp * ep * plan->pp)) {
    g_set_error(error, PX_GRID_ERROR, PX_GRID_ERROR_INVALID,
                "grid: etp·ep·pp = %d·%d·%d does not divide the %d ranks (MoE parallel folding)", etp, ep, plan->pp,
                px_plan_world(plan));
    return NULL;
  }
  PxGrid *grid = g_new0(PxGrid, 1);
  grid->plan.dp = plan->dp;
  grid->plan.cp = cp;
  grid->plan.tp = plan->tp;
  grid->plan.pp = plan->pp;
  for (int i = 0; i < 3; i++) grid->plan.order[i] = plan->order[i];
  grid->plan.ep = ep;
  grid->plan.etp = etp;
  grid->world = px_plan_world(&grid->plan);
  grid->coords = g_new(PxCoord, grid->world);
  for (int r = 0; r < grid->world; r++) {
    int data;
    px_plan_rank_coords(&grid->plan, r, &data, &grid->coords[r].tp, &grid->coords[r].pp);
    grid->coords[r].dp = data / cp;
    grid->coords[r].cp = data % cp;
  }
  build_groups(grid, PX_GROUP_TP, 1u << AX_TP);
  build_groups(grid, PX_GROUP_DP, 1u << AX_DP);
  build_groups(grid, PX_GROUP_PP, 1u << AX_PP);
  build_groups(grid, PX_GROUP_EMBED, 1u << AX_PP);
  build_groups(grid, PX_GROUP_CP, 1u << AX_CP);
  build_groups(grid, PX_GROUP_DPCP, (1u << AX_CP) | (1u << AX_DP));
  grid->ecoords = g_new(PxExpertCoord, grid->world);
  build_expert(grid, PX_GROUP_EP);
  build_expert(grid, PX_GROUP_ETP);
  build_expert(grid, PX_GROUP_EDP);
  return grid;
}

void px_grid_free(PxGrid *grid) {
  if (!grid) return;
  for (int k = 0; k < PX_GROUP_N_KINDS; k++) {
    if (grid->groups[k]) g_ptr_array_unref(grid->groups[k]);
    g_free(grid->member[k]);
  }
  g_free(grid->coords);
  g_free(grid->ecoords);
  g_free(grid);
}

int px_grid_world(const PxGrid *grid) { return grid->world; }

PxCoord px_grid_coord(const PxGrid *grid, int rank) {
  PxCoord none = {-1, -1, -1, -1};
  return rank >= 0 && rank < grid->world ? grid->coords[rank] : none;
}

int px_grid_rank_cp(const PxGrid *grid, int dp, int cp, int tp, int pp) {
  if (dp < 0 || dp >= grid->plan.dp || cp < 0 || cp >= grid->plan.cp || tp < 0 || tp >= grid->plan.tp || pp < 0 ||
      pp >= grid->plan.pp)
    return -1;
  return px_plan_rank_of(&grid->plan, dp * grid->plan.cp + cp, tp, pp);
}

int px_grid_rank(const PxGrid *grid, int dp, int tp, int pp) { return px_grid_rank_cp(grid, dp, 0, tp, pp); }
PxExpertCoord px_grid_expert_coord(const PxGrid *grid, int rank) {
  PxExpertCoord none = {-1, -1, -1};
  return rank >= 0 && rank < grid->world ? grid->ecoords[rank] : none;
}

const PxGroup *px_grid_group(const PxGrid *grid, PxGroupKind kind, int rank) {
  if ((unsigned)kind >= PX_GROUP_N_KINDS || rank < 0 || rank >= grid->world) return NULL;
  int i = grid->member[kind][rank];
  return i < 0 ? NULL : g_ptr_array_index(grid->groups[kind], i);
}

const PxGroup *const *px_grid_groups(const PxGrid *grid, PxGroupKind kind, int *n) {
  *n = (int)grid->groups[kind]->len;
  return (const PxGroup *const *)grid->groups[kind]->pdata;
}

gboolean px_grid_is_first_stage(const PxGrid *grid, int rank) {
  return px_grid_coord(grid, rank).pp == 0;
}

gboolean px_grid_is_last_stage(const PxGrid *grid, int rank) {
  return px_grid_coord(grid, rank).pp == grid->plan.pp - 1;
}

static int stage_neighbour(const PxGrid *grid, int rank, int delta) {
  PxCoord c = px_grid_coord(grid, rank);
  return c.pp < 0 ? -1 : px_grid_rank_cp(grid, c.dp, c.cp, c.tp, c.pp + delta);
}

int px_grid_prev_stage(const PxGrid *grid, int rank) { return stage_neighbour(grid, rank, -1); }
int px_grid_next_stage(const PxGrid *grid, int rank) { return stage_neighbour(grid, rank, +1); }

PxComm *px_grid_comm(const PxGrid *grid, PxGroupKind kind, PxComm *world, GError **error) {
  int rank = px_comm_world_rank(world);
  if (px_comm_size(world) != grid->world) {
    g_set_error(error, PX_GRID_ERROR, PX_GRID_ERROR_INVALID, "grid of %d ranks on a world of %d", grid->world,
                px_comm_size(world));
    return NULL;
  }
  int color = grid->member[kind][rank];
  const PxGroup *g = px_grid_group(grid, kind, rank);
  int key = g ? px_group_index(g, rank) : 0;
  g_autoptr(GError) err = NULL;
  PxComm *c = px_comm_split(world, color < 0 ? PX_COMM_NO_COLOR : color, key, px_group_kind_name(kind), &err);
  if (err) g_propagate_error(error, g_steal_pointer(&err));
  return c;
}
