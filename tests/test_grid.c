/* test_grid.c — rank coordinates and axis groups against a hand-worked 2x2x2
 * layout, the examples in DeepSpeed's deepspeed/runtime/pipe/topology.py and
 * Megatron-Core's tp-cp-dp-pp groups for context parallelism. */
#include <glib.h>
#include "grid.h"

static PxGrid *grid_new(int dp, int tp, int pp, const char *order) {
  PxPlan plan;
  px_plan_init(&plan);
  plan.dp = dp;
  plan.tp = tp;
  plan.pp = pp;
  if (order) g_assert_true(px_order_parse(order, plan.order));
  g_autoptr(GError) error = NULL;
  PxGrid *g = px_grid_new(&plan, &error);
  g_assert_no_error(error);
  px_plan_clear(&plan);
  return g;
}

static void assert_group(const PxGroup *g, int n, const int *ranks) {
  g_assert_nonnull(g);
  g_assert_cmpint(g->n, ==, n);
  for (int i = 0; i < n; i++) g_assert_cmpint(g->ranks[i], ==, ranks[i]);
}

/* All groups of a kind, flattened, against an expected list of lists. */
static void assert_lists(const PxGrid *grid, PxGroupKind kind, int n_groups, int len,
                         const int *expect) {
  int n;
  const PxGroup *const *gs = px_grid_groups(grid, kind, &n);
  g_assert_cmpint(n, ==, n_groups);
  for (int i = 0; i < n; i++) assert_group(gs[i], len, expect + i * len);
}

/* Default order tp,dp,pp: rank = tp + 2 dp + 4 pp, worked by hand. */
static void test_hand_2x2x2(void) {
  g_autoptr(PxGrid) g = grid_new(2, 2, 2, NULL);
  g_assert_cmpint(px_grid_world(g), ==, 8);
  PxCoord c = px_grid_coord(g, 5);
  g_assert_cmpint(c.tp, ==, 1);
  g_assert_cmpint(c.dp, ==, 0);
  g_assert_cmpint(c.pp, ==, 1);
  c = px_grid_coord(g, 6);
  g_assert_cmpint(c.tp, ==, 0);
  g_assert_cmpint(c.dp, ==, 1);
  g_assert_cmpint(c.pp, ==, 1);
  g_assert_cmpint(px_grid_rank(g, 1, 1, 0), ==, 3);
  g_assert_cmpint(px_grid_rank(g, 2, 0, 0), ==, -1);
  assert_group(px_grid_group(g, PX_GROUP_TP, 5), 2, (int[]){4, 5});
  assert_group(px_grid_group(g, PX_GROUP_DP, 5), 2, (int[]){5, 7});
  assert_group(px_grid_group(g, PX_GROUP_PP, 5), 2, (int[]){1, 5});
  assert_group(px_grid_group(g, PX_GROUP_EMBED, 5), 2, (int[]){1, 5});
  assert_group(px_grid_group(g, PX_GROUP_DP, 2), 2, (int[]){0, 2});
  g_assert_true(px_grid_is_first_stage(g, 3));
  g_assert_false(px_grid_is_last_stage(g, 3));
  g_assert_true(px_grid_is_last_stage(g, 7));
  g_assert_cmpint(px_grid_next_stage(g, 3), ==, 7);
  g_assert_cmpint(px_grid_prev_stage(g, 7), ==, 3);
  g_assert_cmpint(px_grid_prev_stage(g, 3), ==, -1);
  g_assert_cmpint(px_grid_next_stage(g, 7), ==, -1);
}

/* Topo(axes=['pipe','data','model'], dims=[2,2,2]) (PipeModelDataParallelTopology):
 * get_axis_comm_lists('pipe') = [[0,4],[1,5],[2,6],[3,7]] and
 * filter_match(pipe=0, data=1) = [2,3], from the docstrings; 'data' and 'model'
 * lists worked by the same rule. */
static void test_deepspeed_pipe_data_model(void) {
  g_autoptr(PxGrid) g = grid_new(2, 2, 2, "tp,dp,pp");
  assert_lists(g, PX_GROUP_PP, 4, 2, (int[]){0, 4, 1, 5, 2, 6, 3, 7});
  assert_lists(g, PX_GROUP_DP, 4, 2, (int[]){0, 2, 1, 3, 4, 6, 5, 7});
  assert_lists(g, PX_GROUP_TP, 4, 2, (int[]){0, 1, 2, 3, 4, 5, 6, 7});
  assert_group(px_grid_group(g, PX_GROUP_TP, 2), 2, (int[]){2, 3}); /* pipe=0, data=1 */
}

/* ProcessTopology(axes=['x','y'], dims=[2,3]) with x = pipe, y = data:
 * get_rank(x=0, y=1) = 1, get_coord(1) = (0, 1), get_axis_list('y', 0) = [0, 3],
 * get_axis_list('x', 0) = [0, 1, 2]. */
static void test_deepspeed_xy(void) {
  g_autoptr(PxGrid) g = grid_new(3, 1, 2, NULL);
  g_assert_cmpint(px_grid_rank(g, 1, 0, 0), ==, 1);
  PxCoord c = px_grid_coord(g, 1);
  g_assert_cmpint(c.pp, ==, 0);
  g_assert_cmpint(c.dp, ==, 1);
  assert_group(px_grid_group(g, PX_GROUP_PP, 0), 2, (int[]){0, 3}); /* y = 0 */
  assert_group(px_grid_group(g, PX_GROUP_DP, 0), 3, (int[]){0, 1, 2}); /* x = 0 */
  assert_lists(g, PX_GROUP_DP, 2, 3, (int[]){0, 1, 2, 3, 4, 5});
  assert_lists(g, PX_GROUP_TP, 6, 1, (int[]){0, 1, 2, 3, 4, 5});
}

/* dp innermost (order dp,tp,pp): rank = dp + 2 tp + 4 pp. */
static void test_order_dp_first(void) {
  g_autoptr(PxGrid) g = grid_new(2, 2, 2, "dp,tp,pp");
  PxCoord c = px_grid_coord(g, 2);
  g_assert_cmpint(c.dp, ==, 0);
  g_assert_cmpint(c.tp, ==, 1);
  g_assert_cmpint(c.pp, ==, 0);
  assert_group(px_grid_group(g, PX_GROUP_TP, 0), 2, (int[]){0, 2});
  assert_group(px_grid_group(g, PX_GROUP_DP, 6), 2, (int[]){6, 7});
  assert_group(px_grid_group(g, PX_GROUP_PP, 3), 2, (int[]){3, 7});
}

/* pp=4, dp=2: rank = dp + 2 pp; embed groups are stages 0 and 3 of each dp. */
static void test_embed_groups(void) {
  g_autoptr(PxGrid) g = grid_new(2, 1, 4, NULL);
  assert_lists(g, PX_GROUP_EMBED, 2, 2, (int[]){0, 6, 1, 7});
  assert_group(px_grid_group(g, PX_GROUP_EMBED, 7), 2, (int[]){1, 7});
  g_assert_null(px_grid_group(g, PX_GROUP_EMBED, 2));
  g_assert_null(px_grid_group(g, PX_GROUP_EMBED, 5));
  assert_group(px_grid_group(g, PX_GROUP_PP, 3), 4, (int[]){1, 3, 5, 7});

  g_autoptr(PxGrid) one = grid_new(2, 2, 1, NULL);
  assert_group(px_grid_group(one, PX_GROUP_EMBED, 3), 1, (int[]){3});
  g_assert_true(px_grid_is_first_stage(one, 3) && px_grid_is_last_stage(one, 3));
}

/* Context parallelism, tp 2 x cp 2 x dp 2 (pp 1), default order tp,dp,pp
 * with CP inside the data axis: rank = tp + 2 cp + 4 dp, by hand. The lists
 * are those of Megatron-Core's RankGenerator(tp=2, cp=2, dp=2, pp=1,
 * order="tp-cp-dp-pp"): cp [[0,2],[1,3],[4,6],[5,7]], dp [[0,4],[1,5],[2,6],
 * [3,7]], data-parallel with context parallel [[0,2,4,6],[1,3,5,7]]. */
static void test_cp_hand(void) {
  PxPlan plan;
  px_plan_init(&plan);
  plan.dp = 2;
  plan.tp = 2;
  plan.pp = 1;
  plan.cp = 2;
  g_autoptr(GError) error = NULL;
  g_autoptr(PxGrid) g = px_grid_new(&plan, &error);
  g_assert_no_error(error);
  g_assert_cmpint(px_grid_world(g), ==, 8);
  g_assert_cmpint(px_grid_cp(g), ==, 2);
  PxCoord c = px_grid_coord(g, 6);
  g_assert_cmpint(c.tp, ==, 0);
  g_assert_cmpint(c.cp, ==, 1);
  g_assert_cmpint(c.dp, ==, 1);
  g_assert_cmpint(c.pp, ==, 0);
  c = px_grid_coord(g, 3);
  g_assert_cmpint(c.tp, ==, 1);
  g_assert_cmpint(c.cp, ==, 1);
  g_assert_cmpint(c.dp, ==, 0);
  g_assert_cmpint(px_grid_rank_cp(g, 1, 0, 1, 0), ==, 5);
  g_assert_cmpint(px_grid_rank_cp(g, 0, 2, 0, 0), ==, -1);
  g_assert_cmpint(px_grid_rank(g, 1, 1, 0), ==, 5); /* CP rank 0 */
  assert_lists(g, PX_GROUP_CP, 4, 2, (int[]){0, 2, 1, 3, 4, 6, 5, 7});
  assert_lists(g, PX_GROUP_DP, 4, 2, (int[]){0, 4, 1, 5, 2, 6, 3, 7});
  assert_lists(g, PX_GROUP_DPCP, 2, 4, (int[]){0, 2, 4, 6, 1, 3, 5, 7});
  assert_lists(g, PX_GROUP_TP, 4, 2, (int[]){0, 1, 2, 3, 4, 5, 6, 7});
  assert_group(px_grid_group(g, PX_GROUP_CP, 5), 2, (int[]){5, 7});
  assert_group(px_grid_group(g, PX_GROUP_DPCP, 5), 4, (int[]){1, 3, 5, 7});
  assert_group(px_grid_group(g, PX_GROUP_PP, 5), 1, (int[]){5});
  /* with pp 2 (tp 2, cp 2, dp 1): rank = tp + 2 cp + 4 pp; the pipeline
   * keeps the CP rank */
  plan.dp = 1;
  plan.pp = 2;
  g_autoptr(PxGrid) p = px_grid_new(&plan, &error);
  g_assert_no_error(error);
  g_assert_cmpint(px_grid_next_stage(p, 3), ==, 7);
  g_assert_cmpint(px_grid_prev_stage(p, 6), ==, 2);
  assert_lists(p, PX_GROUP_PP, 4, 2, (int[]){0, 4, 1, 5, 2, 6, 3, 7});
  assert_lists(p, PX_GROUP_CP, 4, 2, (int[]){0, 2, 1, 3, 4, 6, 5, 7});
  assert_lists(p, PX_GROUP_EMBED, 4, 2, (int[]){0, 4, 1, 5, 2, 6, 3, 7});
  /* cp 1: the dp·cp group is the dp group */
  plan.cp = 1;
  plan.dp = 2;
  g_autoptr(PxGrid) one = px_grid_new(&plan, &error);
  g_assert_no_error(error);
  assert_lists(one, PX_GROUP_DPCP, 4, 2, (int[]){0, 2, 1, 3, 4, 6, 5, 7});
  assert_lists(one, PX_GROUP_DP, 4, 2, (int[]){0, 2, 1, 3, 4, 6, 5, 7});
  px_plan_clear(&plan);
}

static PxGrid *grid_moe(int dp, int tp, int pp, int ep, int etp) {
  PxPlan plan;
  px_plan_init(&plan);
  plan.dp = dp, plan.tp = tp, plan.pp = pp, plan.ep = ep, plan.etp = etp;
  g_autoptr(GError) error = NULL;
  PxGrid *g = px_grid_new(&plan, &error);
  g_assert_no_error(error);
  px_plan_clear(&plan);
  return g;
}

/* Megatron-Core parallel_state.py, expert RankGenerator(tp=etp, ep, dp=edp,
 * pp, order "tp-cp-ep-dp-pp"): rank = etp_i + etp·(ep_i + ep·edp_i) +
 * etp·ep·edp·stage, worked by hand. 8 ranks, tp 2 × dp 4, ep 2, etp 1 (edp
 * 4): ep groups are consecutive pairs, edp groups the ranks of one parity,
 * while attention's tp groups are {0,1},... and dp groups {0,2,4,6},{1,3,5,7}. */
static void test_expert_groups_ep2_etp1(void) {
  g_autoptr(PxGrid) g = grid_moe(4, 2, 1, 2, 1);
  assert_lists(g, PX_GROUP_EP, 4, 2, (int[]){0, 1, 2, 3, 4, 5, 6, 7});
  assert_lists(g, PX_GROUP_EDP, 2, 4, (int[]){0, 2, 4, 6, 1, 3, 5, 7});
  assert_lists(g, PX_GROUP_ETP, 8, 1, (int[]){0, 1, 2, 3, 4, 5, 6, 7});
  PxExpertCoord c = px_grid_expert_coord(g, 5); /* 5 = 1 + 2·2: ep 1, edp 2 */
  g_assert_cmpint(c.ep, ==, 1);
  g_assert_cmpint(c.etp, ==, 0);
  g_assert_cmpint(c.edp, ==, 2);
}

/* 8 ranks, tp 2 × dp 2 × pp 2, ep 2, etp 2 (edp 1): on stage 0 (ranks
 * 0..3) etp groups {0,1},{2,3}, ep groups {0,2},{1,3}; stage 1 the same + 4. */
static void test_expert_groups_ep2_etp2_pp2(void) {
  g_autoptr(PxGrid) g = grid_moe(2, 2, 2, 2, 2);
  assert_lists(g, PX_GROUP_ETP, 4, 2, (int[]){0, 1, 2, 3, 4, 5, 6, 7});
  assert_lists(g, PX_GROUP_EP, 4, 2, (int[]){0, 2, 1, 3, 4, 6, 5, 7});
  assert_lists(g, PX_GROUP_EDP, 8, 1, (int[]){0, 1, 2, 3, 4, 5, 6, 7});
  PxExpertCoord c = px_grid_expert_coord(g, 7);
  g_assert_cmpint(c.etp, ==, 1);
  g_assert_cmpint(c.ep, ==, 1);
  g_assert_cmpint(c.edp, ==, 0);
}

/* 16 ranks, tp 2 × dp 8, ep 4, etp 1 (edp 4: etp·ep ≠ tp, the
 * Megatron-Bridge#3744 case of docs/moe.md): ep groups of 4 consecutive
 * ranks, edp groups stride 4; a dense plan's expert groups are its tp and dp. */
static void test_expert_groups_ep4_etp1(void) {
  g_autoptr(PxGrid) g = grid_moe(8, 2, 1, 4, 1);
  assert_group(px_grid_group(g, PX_GROUP_EP, 6), 4, (int[]){4, 5, 6, 7});
  assert_group(px_grid_group(g, PX_GROUP_EDP, 6), 4, (int[]){2, 6, 10, 14});
  g_autoptr(PxGrid) d = grid_moe(2, 2, 2, 1, 0);
  assert_lists(d, PX_GROUP_ETP, 4, 2, (int[]){0, 1, 2, 3, 4, 5, 6, 7});
  assert_lists(d, PX_GROUP_EDP, 4, 2, (int[]){0, 2, 1, 3, 4, 6, 5, 7});
  assert_lists(d, PX_GROUP_EP, 8, 1, (int[]){0, 1, 2, 3, 4, 5, 6, 7});
}

static void test_invalid(void) {
  PxPlan plan;
  px_plan_init(&plan);
  plan.dp = 0;
  g_autoptr(GError) error = NULL;
  g_autoptr(PxGrid) g = px_grid_new(&plan, &error);
  g_assert_null(g);
  g_assert_error(error, PX_GRID_ERROR, PX_GRID_ERROR_INVALID);
  px_plan_clear(&plan);
}

int main(int argc, char **argv) {
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/grid/hand/2x2x2", test_hand_2x2x2);
  g_test_add_func("/grid/deepspeed/pipe-data-model", test_deepspeed_pipe_data_model);
  g_test_add_func("/grid/deepspeed/xy", test_deepspeed_xy);
  g_test_add_func("/grid/order/dp-first", test_order_dp_first);
  g_test_add_func("/grid/embed", test_embed_groups);
  g_test_add_func("/grid/cp/hand", test_cp_hand);
  g_test_add_func("/grid/invalid", test_invalid);
  g_test_add_func("/grid/expert/ep2-etp1", test_expert_groups_ep2_etp1);
  g_test_add_func("/grid/expert/ep2-etp2-pp2", test_expert_groups_ep2_etp2_pp2);
  g_test_add_func("/grid/expert/ep4-etp1", test_expert_groups_ep4_etp1);
  return g_test_run();
}
