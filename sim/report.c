/* report.c — shared report pieces (see report.h). */
#include "report.h"
#include "moe.h"
#include <math.h>
#include <string.h>

static char *format_scaled(double v, const char *unit) {
  static const char *const pre[] = {"", "k", "M", "G", "T", "P", "E", "Z"};
  int i = 0;
  double a = fabs(v);
  while (a >= 1000 && i < 7) { a /= 1000; v /= 1000; i++; }
  return g_strdup_printf(a >= 100 ? "%.0f %s%s" : a >= 10 ? "%.1f %s%s" : "%.2f %s%s", v, pre[i], unit);
}

char *px_format_count(double n) {
  /* counts read better with B for billions */
  static const char *const suf[] = {"", " k", " M", " B", " T", " Q"};
  int i = 0;
  double a = fabs(n);
  while (a >= 1000 && i < 5) { a /= 1000; n /= 1000; i++; }
  return g_strdup_printf(i == 0 ? "%.0f%s" : a >= 100 ? "%.1f%s" : "%.2f%s", n, suf[i]);
}

char *px_format_flops(double flops) { return format_scaled(flops, "FLOP"); }

const char *px_report_bubble_formula(PxScheduleKind k) {
  switch (k) {
  case PX_SCHED_NAIVE: return "(p-1)/p, no micro-batch overlap";
  case PX_SCHED_GPIPE:
  case PX_SCHED_1F1B: return "(p-1)/(m+p-1)";
  case PX_SCHED_INTERLEAVED: return "(p-1)/(v·m+p-1), Narayanan et al. 2021";
  case PX_SCHED_ZB_H1: return "(p-1)/(3m+p-1) with T_F=T_B=T_W, Qi et al. 2023";
  case PX_SCHED_ZB_H2: return "(p-1)/(3m+p-1) for m>=2p-1 with T_F=T_B=T_W, 0 with post-validation, Qi et al. 2024";
  case PX_SCHED_ZB_V:
    return "(p-1)/(6m+p-1) for m>=2p-1 with T_F=T_B=T_W per chunk, 0 with post-validation, Qi et al. 2024 "
           "(unequal, T_B>=T_F: idle X+(p-2)max(X,T_W), X=max(T_B,2(T_B-T_W)))";
  case PX_SCHED_DUALPIPEV: return "(p-1)/(3m+p-1) for m>=2p: idle (p-1)(F&B+B-3W), DualPipe README";
  }
  return "";
}

const char *px_report_bubble_formula_costs(PxScheduleKind k) {
  switch (k) {
  case PX_SCHED_ZB_H1: return "idle (p-1)(T_F+T_B-T_W) for m>=p, T_W<=min(T_F,T_B), Qi et al. 2024 §3.1";
  case PX_SCHED_ZB_H2: return "idle (p-1)·max(T_F, T_F+T_B-2T_W) for m>=2p-1, T_W<=min(T_F,T_B), Qi et al. 2024 §3.1";
  case PX_SCHED_ZB_V: return "idle X+(p-2)·max(X,T_W), X=max(T_B,2(T_B-T_W)), T_B>=T_F, m>=2p-1";
  case PX_SCHED_DUALPIPEV: return "idle (p-1)(F&B+B-3W) = (p-1)(T_F+2T_B-T_W) for T_F=T_B>=T_W, m>=2p, DualPipe README";
  default: return px_report_bubble_formula(k);
  }
}

void px_report_memory_table(const PxMemory *mem, const PxUnits *u, FILE *out) {
  fprintf(out, "memory per GPU (%s = %s bytes)\n", u->name, u->scale == 1e9 ? "1e9" : "2^30");
  fprintf(out, "%-6s %9s %9s %9s %12s %9s %9s %9s %9s  %s\n", "stage", "weights", "grads", "optimizer",
          "act/mb", "in-flight", "act peak", "buffers", "total", "");
  double cap = mem->capacity > 0 ? mem->capacity : mem->peak;
  const int width = 30;
  for (int i = 0; i < mem->n_stages; i++) {
    const PxStageMemory *s = &mem->stages[i];
    /* '#' up to the capacity, '|' at it, '!' for what does not fit (capped at 2x) */
    char bar[2 * 30 + 4];
    int n = cap > 0 ? (int)lround(width * MIN(s->total, 2 * cap) / cap) : 0, j = 0;
    for (int k = 0; k < MIN(n, width); k++) bar[j++] = '#';
    for (int k = n; k < width; k++) bar[j++] = ' ';
    bar[j++] = '|';
    for (int k = width; k < n; k++) bar[j++] = '!';
    bar[j] = '\0';
    fprintf(out, "%-6d %9.2f %9.2f %9.2f %12.3f %9.2f %9.2f %9.2f %9.2f  %s\n", s->stage,
            s->weights / u->scale, s->gradients / u->scale, s->optimizer / u->scale,
            s->activation_per_mb / u->scale, s->in_flight, s->activations / u->scale,
            s->buffers / u->scale, s->total / u->scale, bar);
  }
  fprintf(out, "  total includes a workspace allowance of %.2f %s per GPU; '|' marks the GPU's capacity%s\n",
          mem->stages[0].workspace / u->scale, u->name,
          mem->capacity > 0 ? "" : " (no cluster given: bars relative to the largest stage)");
  px_report_memory_notes(mem, u, out);
  fprintf(out, "\n");
}

void px_json_member_int(JsonBuilder *b, const char *key, gint64 v) {
  json_builder_set_member_name(b, key);
  json_builder_add_int_value(b, v);
}
void px_json_member_double(JsonBuilder *b, const char *key, double v) {
  json_builder_set_member_name(b, key);
  json_builder_add_double_value(b, v);
}
void px_json_member_string(JsonBuilder *b, const char *key, const char *v) {
  json_builder_set_member_name(b, key);
  json_builder_add_string_value(b, v);
}
void px_json_member_bool(JsonBuilder *b, const char *key, gboolean v) {
  json_builder_set_member_name(b, key);
  json_builder_add_boolean_value(b, v);
}

void px_report_plan_json(JsonBuilder *b, const PxPlan *p) {
  json_builder_begin_object(b);
  px_json_member_int(b, "dp", p->dp);
  px_json_member_int(b, "tp", p->tp);
  px_json_member_int(b, "pp", p->pp);
  px_json_member_int(b, "vpp", p->vpp);
  px_json_member_int(b, "mbs", p->mbs);
  px_json_member_int(b, "gbs", p->gbs);
  px_json_member_int(b, "micro_batches", p->m);
  px_json_member_int(b, "seq", p->seq);
  px_json_member_string(b, "schedule", px_schedule_name(p->schedule));
  px_json_member_string(b, "partition", p->partition);
  px_json_member_int(b, "zero", p->zero);
  px_json_member_string(b, "offload", px_offload_name(p->offload));
  px_json_member_string(b, "ckpt", px_ckpt_name(p->ckpt));
  px_json_member_int(b, "ckpt_interval", p->ckpt_interval);
  px_json_member_bool(b, "seq_parallel", p->seq_parallel);
  px_json_member_string(b, "precision", px_precision_name(p->precision));
  g_autofree char *order = g_strdup_printf("%s,%s,%s", px_axis_name(p->order[0]), px_axis_name(p->order[1]),
                                           px_axis_name(p->order[2]));
  px_json_member_string(b, "order", order);
  px_json_member_int(b, "cp", MAX(p->cp, 1));
  g_autofree char *grid = px_report_order(p);
  px_json_member_string(b, "grid_order", grid);
  px_json_member_int(b, "ep", MAX(p->ep, 1));
  px_json_member_int(b, "etp", px_plan_etp(p));
  px_json_member_int(b, "edp", px_plan_edp(p));
  px_json_member_double(b, "imbalance", p->imbalance);
  json_builder_end_object(b);
}

char *px_report_layout(const PxPlan *p) {
  g_autofree char *cp = p->cp > 1 ? g_strdup_printf(" × cp %d", p->cp) : g_strdup("");
  return g_strdup_printf("dp %d%s × pp %d × tp %d = %d GPUs", p->dp, cp, p->pp, p->tp, px_plan_world(p));
}

char *px_report_order(const PxPlan *p) {
  GString *s = g_string_new(NULL);
  for (int i = 0; i < 3; i++) {
    if (i) g_string_append_c(s, ',');
    if (p->order[i] == PX_AXIS_DP && p->cp > 1) g_string_append(s, "cp,");
    g_string_append(s, px_axis_name(p->order[i]));
  }
  return g_string_free(s, FALSE);
}

void px_report_memory_notes(const PxMemory *mem, const PxUnits *u, FILE *out) {
  double kv = 0, acc = 0, w8 = 0, meta = 0;
  for (int i = 0; i < mem->n_stages; i++) {
    kv = MAX(kv, mem->stages[i].cp_kv_buffers);
    acc = MAX(acc, mem->stages[i].cp_out_acc);
    w8 = MAX(w8, mem->stages[i].fp8_weights);
    meta = MAX(meta, mem->stages[i].fp8_meta);
  }
  if (kv > 0)
    fprintf(out, mem->cp_kv_transient
                     ? "  context parallel: torch's ring (all-gathered K/V, fp32 merge and gradient tensors), %.3f %s per "
                       "GPU, is in the activations' transient, within one block's backward\n"
                     : "  context parallel: buffers include the ring attention's K/V blocks, %.3f %s per GPU\n",
            kv / u->scale, u->name);
  if (acc > 0)
    fprintf(out, "  context parallel: buffers include the ring's fp32 accumulator of the merged attention output, "
            "%.3f %s per GPU\n", acc / u->scale, u->name);
  if (w8 > 0)
    fprintf(out, "  fp8: total includes the FP8 weight copies and transposes (up to %.2f %s) and the delayed-scaling "
            "state (amax history, scales: up to %.4f %s); the saved GEMM inputs are FP8 in act/mb\n",
            w8 / u->scale, u->name, meta / u->scale, u->name);
}

void px_report_moe_text(const PxModel *model, const PxPlan *p, FILE *out) {
  const PxModelDesc *d = &model->desc;
  if (d->experts == 0) return;
  g_autofree char *act = px_format_count((double)model->active_params);
  g_autofree char *tot = px_format_count((double)model->params);
  fprintf(out, "experts    %d routed per MoE block (%d of %d blocks), top-%d, expert FFN %d", d->experts,
          px_model_moe_blocks(d), d->layers, d->top_k, d->expert_ffn);
  if (d->shared_experts) fprintf(out, ", %d shared of %d%s", d->shared_experts, d->shared_ffn, d->shared_gate ? " (gated)" : "");
  fprintf(out, "; %s active of %s parameters (%" G_GINT64_FORMAT ")\n", act, tot, model->active_params);
  g_autofree char *cp = p->cp > 1 ? g_strdup_printf(" × cp %d", p->cp) : g_strdup("");
  fprintf(out, "           experts on etp %d × ep %d × edp %d per stage (MoE parallel folding; attention dp %d%s × tp %d), "
          "%d expert%s per GPU; ", px_plan_etp(p), MAX(p->ep, 1), px_plan_edp(p), p->dp, cp, p->tp,
          d->experts / MAX(p->ep, 1), d->experts / MAX(p->ep, 1) == 1 ? "" : "s");
  if (d->capacity_factor > 0) fprintf(out, "capacity factor %.2f", d->capacity_factor);
  else fprintf(out, "dropless");
  fprintf(out, ", busiest expert %.2f × the balanced tokens\n", p->imbalance);
}

const char *px_report_mfu_convention(const PxModel *model) {
  return model->desc.experts > 0 ? "model FLOPs from active parameters: each token through its top-k experts"
                                  : "model FLOPs";
}

void px_report_memory_json(JsonBuilder *b, const PxMemory *mem) {
  json_builder_begin_object(b);
  px_json_member_string(b, "unit", "bytes");
  px_json_member_double(b, "capacity", mem->capacity);
  px_json_member_bool(b, "fits", mem->fits);
  px_json_member_int(b, "peak_stage", mem->peak_stage);
  px_json_member_double(b, "peak", mem->peak);
  json_builder_set_member_name(b, "stages");
  json_builder_begin_array(b);
  for (int i = 0; i < mem->n_stages; i++) {
    const PxStageMemory *s = &mem->stages[i];
    json_builder_begin_object(b);
    px_json_member_int(b, "stage", s->stage);
    px_json_member_int(b, "parameters", s->params);
    px_json_member_double(b, "weights", s->weights);
    px_json_member_double(b, "gradients", s->gradients);
    px_json_member_double(b, "optimizer", s->optimizer);
    px_json_member_double(b, "activations", s->activations);
    px_json_member_double(b, "activation_per_layer", s->activation_per_layer);
    px_json_member_double(b, "activation_per_microbatch", s->activation_per_mb);
    px_json_member_double(b, "in_flight_microbatches", s->in_flight);
    px_json_member_double(b, "buffers", s->buffers);
    px_json_member_double(b, "workspace", s->workspace);
    px_json_member_double(b, "total", s->total);
    px_json_member_double(b, "cp_kv_buffers", s->cp_kv_buffers);
    px_json_member_double(b, "cp_out_acc", s->cp_out_acc);
    px_json_member_double(b, "fp8_weights", s->fp8_weights);
    px_json_member_double(b, "fp8_meta", s->fp8_meta);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  json_builder_end_object(b);
}

static _Thread_local GString *json_sink;

GString *px_report_set_json_sink(GString *sink) {
  GString *old = json_sink;
  json_sink = sink;
  return old;
}

void px_report_print_json(JsonBuilder *b) {
  g_autoptr(JsonGenerator) g = json_generator_new();
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  json_generator_set_root(g, root);
  json_generator_set_pretty(g, TRUE);
  g_autofree char *s = json_generator_to_data(g, NULL);
  if (json_sink) g_string_append(json_sink, s);
  else printf("%s\n", s);
}
