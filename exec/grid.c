/* grid.c — rank coordinates and the groups of each parallel axis. */
#include "grid.h"
#include "moe.h"

G_DEFINE_QUARK(px-grid-error-quark, px_grid_error)

struct _PxGrid {
  PxPlan plan;      /* dp, tp, pp, order (copied) */
  int world;
  PxCoord *coords;  /* (world) */
  PxExpertCoord *ecoords; /* (world) */
  GPtrArray *groups[PX_GROUP_N_KINDS];  /* of PxGroup, DeepSpeed order */
  int *member[PX_GROUP_N_KINDS];        /* (world) index into groups[kind] */
};

const char *px_group_kind_name(PxGroupKind kind) {
  static const char *names[] = {"tp", "dp", "pp", "embed", "ep", "etp", "edp"};
  return (unsigned)kind < PX_GROUP_N_KINDS ? names[kind] : "?";
}

int px_grid_size(const PxGrid *grid, PxAxis axis) {
  return axis == PX_AXIS_TP ? grid->plan.tp : axis == PX_AXIS_DP ? grid->plan.dp : grid->plan.pp;
}

static void coord_set(PxCoord *c, PxAxis a, int v) {
  if (a == PX_AXIS_TP) c->tp = v;
  else if (a == PX_AXIS_DP) c->dp = v;
  else c->pp = v;
}

/* Groups along axis: for every combination of the other two axes (the slower
 * of them in rank order varying slowest, as in get_axis_comm_lists), the ranks
 * with coordinate 0..size-1 on axis — or only the first and last stage (embed). */
static void build_axis(PxGrid *grid, PxGroupKind kind, PxAxis axis) {
  PxAxis other[2];
  int k = 0;
  for (int i = 2; i >= 0; i--)
    if (grid->plan.order[i] != axis) other[k++] = grid->plan.order[i];
  int n0 = px_grid_size(grid, other[0]), n1 = px_grid_size(grid, other[1]);
  int size = px_grid_size(grid, axis);
  gboolean ends = kind == PX_GROUP_EMBED;
  int len = ends ? MIN(size, 2) : size;
  grid->groups[kind] = g_ptr_array_new_with_free_func((GDestroyNotify)px_group_free);
  grid->member[kind] = g_new(int, grid->world);
  for (int a = 0; a < n0; a++)
    for (int b = 0; b < n1; b++) {
      int ranks[len];
      for (int j = 0; j < len; j++) {
        PxCoord c = {0, 0, 0};
        coord_set(&c, other[0], a);
        coord_set(&c, other[1], b);
        coord_set(&c, axis, ends && j == 1 ? size - 1 : j);
        ranks[j] = px_grid_rank(grid, c.dp, c.tp, c.pp);
      }
      for (int j = 0; j < len; j++) grid->member[kind][ranks[j]] = (int)grid->groups[kind]->len;
      g_ptr_array_add(grid->groups[kind], px_group_new(px_group_kind_name(kind), len, ranks));
    }
  if (ends) /* middle stages hold no embedding: no embed group */
    for (int r = 0; r < grid->world; r++) {
      int st = grid->coords[r].pp;
      if (st != 0 && st != size - 1) grid->member[kind][r] = -1;
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
  grid->plan.tp = plan->tp;
  grid->plan.pp = plan->pp;
  for (int i = 0; i < 3; i++) grid->plan.order[i] = plan->order[i];
  grid->plan.ep = ep;
  grid->plan.etp = etp;
  grid->world = px_plan_world(&grid->plan);
  grid->coords = g_new(PxCoord, grid->world);
  for (int r = 0; r < grid->world; r++)
    px_plan_rank_coords(&grid->plan, r, &grid->coords[r].dp, &grid->coords[r].tp, &grid->coords[r].pp);
  build_axis(grid, PX_GROUP_TP, PX_AXIS_TP);
  build_axis(grid, PX_GROUP_DP, PX_AXIS_DP);
  build_axis(grid, PX_GROUP_PP, PX_AXIS_PP);
  build_axis(grid, PX_GROUP_EMBED, PX_AXIS_PP);
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
  PxCoord none = {-1, -1, -1};
  return rank >= 0 && rank < grid->world ? grid->coords[rank] : none;
}

int px_grid_rank(const PxGrid *grid, int dp, int tp, int pp) {
  if (dp < 0 || dp >= grid->plan.dp || tp < 0 || tp >= grid->plan.tp || pp < 0 || pp >= grid->plan.pp)
    return -1;
  return px_plan_rank_of(&grid->plan, dp, tp, pp);
}

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
  return c.pp < 0 ? -1 : px_grid_rank(grid, c.dp, c.tp, c.pp + delta);
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
