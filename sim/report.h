/* report.h — shared pieces of the human and JSON reports (plan, simulate,
 * search, exec run): number formatting with explicit units, the memory table,
 * plan and memory as JSON. */
#pragma once
#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include "memory.h"
#include "options.h"
#include "plan.h"

G_BEGIN_DECLS

/* 124.4 M, 6.74 B, 1.01 T (decimal). */
char *px_format_count(double n);
/* "4.31 PFLOP" style (decimal prefixes). */
char *px_format_flops(double flops);
/* "(p-1)/(m+p-1)" etc. for the schedule's analytic bubble. */
const char *px_report_bubble_formula(PxScheduleKind k);
/* The same for unequal T_F, T_B, T_W (px_plan_bubble_fraction_costs): idle per
 * rank in a step of m·v·(T_F+T_B+T_W) busy + idle. */
const char *px_report_bubble_formula_costs(PxScheduleKind k);
/* The per-stage memory table with a bar per stage, in the given units. */
void px_report_memory_table(const PxMemory *mem, const PxUnits *u, FILE *out);
/* "key": value members of the object being built. */
void px_json_member_int(JsonBuilder *b, const char *key, gint64 v);
void px_json_member_double(JsonBuilder *b, const char *key, double v);
void px_json_member_string(JsonBuilder *b, const char *key, const char *v);
void px_json_member_bool(JsonBuilder *b, const char *key, gboolean v);

/* {"dp":..,"tp":..,...} */
void px_report_plan_json(JsonBuilder *b, const PxPlan *p);
/* "dp 8 × pp 16 × tp 8 = 1024 GPUs", with "cp N × " after dp when cp > 1. */
char *px_report_layout(const PxPlan *p);
/* The rank order, innermost first: "tp,dp,pp", with cp just inside dp
 * ("tp,cp,dp,pp") when cp > 1. */
char *px_report_order(const PxPlan *p);
/* The notes under a memory table on what its columns hold beyond their
 * names (the CP ring's K/V buffers, the FP8 weight copies and scaling state);
 * nothing when neither is used. */
void px_report_memory_notes(const PxMemory *mem, const PxUnits *u, FILE *out);
/* The mixture-of-experts lines of the plan and simulate reports (nothing
 * for a dense model): experts, routing, active parameters and the experts'
 * grid, etp × ep × edp (docs/moe.md). */
void px_report_moe_text(const PxModel *model, const PxPlan *p, FILE *out);
/* The MFU convention for a model (MoE: model FLOPs from active parameters). */
const char *px_report_mfu_convention(const PxModel *model);
/* {"unit":"bytes","capacity":..,"fits":..,"stages":[...]} */
void px_report_memory_json(JsonBuilder *b, const PxMemory *mem);
/* Pretty-print the builder's root to stdout with a newline — or, while this
 * thread has a sink set (the Python API, sim/api.c), append it there. */
void px_report_print_json(JsonBuilder *b);
/* Set (or clear with NULL) this thread's JSON sink; returns the previous one. */
GString *px_report_set_json_sink(GString *sink);

G_END_DECLS
