/* grid.h — the process grid of a plan: rank <-> (pp, dp, cp, tp) coordinates and
 * the communicator groups of each axis, with DeepSpeed's PipeModelDataParallel
 * topology / PipelineParallelGrid semantics. Coordinates come from
 * px_plan_rank_coords() (the plan's rank order, innermost first; default
 * tp, dp, pp = DeepSpeed's axes ['pipe', 'data', 'model']).
 *
 * Context parallelism (plan cp > 1) sits inside the data axis, as in
 * Megatron-Core's order tp-cp-dp-pp: the plan's data coordinate (from
 * px_plan_rank_coords, in [0, dp·cp)) is d·cp + c, DP rank d, CP rank c.
 *
 * Groups (each an ordered PxGroup, position = coordinate on the axis):
 *  - tp:    same (pp, dp, cp), tp = 0..tp-1   (DeepSpeed "model" / slice group)
 *  - dp:    same (pp, cp, tp), dp = 0..dp-1   (the pure data-parallel group)
 *  - pp:    same (dp, cp, tp), stage = 0..pp-1 (the pipeline; p2p neighbours)
 *  - embed: same (dp, cp, tp), stages {0, pp-1} (tied embedding / LM head
 *           gradient all-reduce; a single rank when pp == 1)
 *  - cp:    same (pp, dp, tp), cp = 0..cp-1   (the ring of ring attention)
 *  - dpcp:  same (pp, tp), position d·cp + c  (Megatron's data-parallel group
 *           with context parallelism: gradient reduction and ZeRO shards;
 *           the dp group when cp == 1)
 * Groups of an axis are listed in the order DeepSpeed's get_axis_comm_lists
 * gives: the other coordinates in row-major order of the remaining axes, slowest
 * axis of the rank order first. */
#pragma once
#include <glib.h>
#include "plan.h"
#include "comm.h"

G_BEGIN_DECLS

#define PX_GRID_ERROR (px_grid_error_quark())
GQuark px_grid_error_quark(void);
typedef enum {
  PX_GRID_ERROR_INVALID, /* non-positive sizes, rank outside the world */
} PxGridError;

/* Expert groups (mixture of experts, common/moe.h: Megatron-Core's MoE
 * parallel folding, the experts' RankGenerator with order tp-cp-ep-dp-pp,
 * tp -> etp, dp -> edp): over each pipeline stage's ranks, expert coordinates
 * (etp_i, ep_i, edp_i) sit at px_moe_rank_of. Listed by stage, then the other
 * two expert coordinates (the outer varying slowest):
 *  - ep:  same (stage, etp_i, edp_i), ep_i = 0..ep-1   (the all-to-all)
 *  - etp: same (stage, ep_i, edp_i), etp_i = 0..etp-1  (an expert's TP)
 *  - edp: same (stage, etp_i, ep_i), edp_i = 0..edp-1  (expert gradients, ZeRO)
 * For a dense plan (ep = 1, etp = tp) they are the tp and dp groups again. */
typedef enum {
  PX_GROUP_TP, PX_GROUP_DP, PX_GROUP_PP, PX_GROUP_EMBED, PX_GROUP_CP, PX_GROUP_DPCP, PX_GROUP_EP, PX_GROUP_ETP,
  PX_GROUP_EDP, PX_GROUP_N_KINDS
} PxGroupKind;

typedef struct {
  int dp, tp, pp;
  int cp;           /* CP rank (0 when cp == 1) */
} PxCoord;

typedef struct _PxGrid PxGrid;

PxGrid *px_grid_new(const PxPlan *plan, GError **error);
void px_grid_free(PxGrid *grid);
int px_grid_world(const PxGrid *grid);
int px_grid_size(const PxGrid *grid, PxAxis axis);
PxCoord px_grid_coord(const PxGrid *grid, int rank);
/* -1 when a coordinate is out of range; px_grid_rank is CP rank 0 */
int px_grid_rank(const PxGrid *grid, int dp, int tp, int pp);
int px_grid_rank_cp(const PxGrid *grid, int dp, int cp, int tp, int pp);
/* The context-parallel degree (1: none). */
int px_grid_cp(const PxGrid *grid);
/* Expert coordinates of a rank (-1s outside the world): position in its ep,
 * etp and edp groups. */
typedef struct {
  int ep, etp, edp;
} PxExpertCoord;
PxExpertCoord px_grid_expert_coord(const PxGrid *grid, int rank);

/* The group of kind holding rank (owned by the grid); NULL for the embed kind
 * on a middle pipeline stage. */
const PxGroup *px_grid_group(const PxGrid *grid, PxGroupKind kind, int rank);
/* All groups of a kind, in DeepSpeed's get_axis_comm_lists order; *n gets the count. */
const PxGroup *const *px_grid_groups(const PxGrid *grid, PxGroupKind kind, int *n);
const char *px_group_kind_name(PxGroupKind kind);

/* This rank's communicator of a kind, split once from the world communicator
 * (collective over the world: every rank calls it for each kind, in the same
 * order). NULL without error for the embed kind on a middle stage. Its ranks
 * are the group's positions (px_grid_group). */
PxComm *px_grid_comm(const PxGrid *grid, PxGroupKind kind, PxComm *world, GError **error);

gboolean px_grid_is_first_stage(const PxGrid *grid, int rank);
gboolean px_grid_is_last_stage(const PxGrid *grid, int rank);
/* Global rank of the previous / next pipeline stage with the same dp, tp; -1 at the ends. */
int px_grid_prev_stage(const PxGrid *grid, int rank);
int px_grid_next_stage(const PxGrid *grid, int rank);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxGrid, px_grid_free)

G_END_DECLS
