/* plan.c — a parallel layout, its files and its rules. */
#include "plan.h"
#include "config.h"
#include "moe.h"
#include <math.h>
#include <stddef.h>
#include <string.h>

G_DEFINE_QUARK(px-plan-error-quark, px_plan_error)

/* ---- names --------------------------------------------------------------- */

static const char *const sched_names[] = {"naive", "gpipe", "1f1b", "interleaved", "zb-h1",
                                          "zb-h2", "zb-v", "dualpipev", NULL};
static const char *const ckpt_names[] = {"none", "selective", "full", NULL};
static const char *const offload_names[] = {"none", "optimizer", "optimizer+params", NULL};
static const char *const prec_names[] = {"fp32", "fp16", "bf16", "fp8", NULL};
static const char *const axis_names[] = {"tp", "dp", "pp", NULL};
static const char *const stack_names[] = {"parallax", "megatron-2021", "megatron-core", "deepspeed", "fsdp", "torchtitan", NULL};
static const char *const attn_names[] = {"default", "flash", "unfused", "flash1", "triton", NULL};
static const char *const tpo_names[] = {"none", "te", "userbuffers_bf16_h100_h8192_tp4_mbs1_seqlen8192",
                                        "userbuffers_bf16_h100_h16384_tp8_cp2_mbs1_seqlen8192", NULL};

static gboolean parse_name(const char *s, const char *const *names, int *out) {
  if (!s) return FALSE;
  for (int i = 0; names[i]; i++)
    if (!g_ascii_strcasecmp(s, names[i])) { *out = i; return TRUE; }
  return FALSE;
}

const char *px_schedule_name(PxScheduleKind k) { return sched_names[k]; }
const char *px_ckpt_name(PxCheckpoint c) { return ckpt_names[c]; }
const char *px_offload_name(PxOffload o) { return offload_names[o]; }
const char *px_precision_name(PxPrecision p) { return prec_names[p]; }
const char *px_axis_name(PxAxis a) { return axis_names[a]; }
const char *px_stack_name(PxStack s) { return stack_names[s]; }
gboolean px_attention_fused(PxAttention a) {
  return a == PX_ATTN_FLASH || a == PX_ATTN_FLASH1 || a == PX_ATTN_TRITON;
}

const char *px_attention_name(PxAttention a) { return attn_names[a]; }
gboolean px_stack_parse(const char *s, PxStack *out) {
  int v;
  if (!parse_name(s, stack_names, &v)) return FALSE;
  *out = v;
  return TRUE;
}
gboolean px_attention_parse(const char *s, PxAttention *out) {
  int v;
  if (!parse_name(s, attn_names, &v)) return FALSE;
  *out = v;
  return TRUE;
}

const char *px_tp_overlap_name(PxTpOverlap t) { return tpo_names[t]; }
gboolean px_tp_overlap_parse(const char *s, PxTpOverlap *out) {
  int v;
  /* NeMo's fp8 twins (userbuffers_fp8_...) set the same methods, SMs and
   * splits; only their buffers' dtype (fp8_buf) differs */
  g_autofree char *bf16 = s && g_str_has_prefix(s, "userbuffers_fp8_")
                              ? g_strconcat("userbuffers_bf16_", s + strlen("userbuffers_fp8_"), NULL)
                              : g_strdup(s);
  if (!parse_name(bf16, tpo_names, &v)) return FALSE;
  *out = v;
  return TRUE;
}

gboolean px_plan_tp_overlap_stack_ok(const PxPlan *p, GError **error) {
  if (p->tp_overlap == PX_TPO_NONE || p->stack == PX_STACK_MEGATRON_CORE) return TRUE;
  g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID,
              "--tp-overlap %s is Transformer Engine's userbuffers overlap under Megatron-Core: it needs --stack "
              "megatron-core (stack is %s)", px_tp_overlap_name(p->tp_overlap), px_stack_name(p->stack));
  return FALSE;
}

gboolean px_schedule_parse(const char *s, PxScheduleKind *out) {
  int v;
  if (s && (!g_ascii_strcasecmp(s, "zb") || !g_ascii_strcasecmp(s, "zbh1") ||
            !g_ascii_strcasecmp(s, "zero-bubble"))) { *out = PX_SCHED_ZB_H1; return TRUE; }
  if (s && !g_ascii_strcasecmp(s, "interleaved-1f1b")) { *out = PX_SCHED_INTERLEAVED; return TRUE; }
  if (s && !g_ascii_strcasecmp(s, "zbh2")) { *out = PX_SCHED_ZB_H2; return TRUE; }
  if (s && !g_ascii_strcasecmp(s, "zbv")) { *out = PX_SCHED_ZB_V; return TRUE; }
  if (s && !g_ascii_strcasecmp(s, "dualpipe-v")) { *out = PX_SCHED_DUALPIPEV; return TRUE; }
  if (!parse_name(s, sched_names, &v)) return FALSE;
  *out = v;
  return TRUE;
}
gboolean px_ckpt_parse(const char *s, PxCheckpoint *out) {
  int v;
  if (!parse_name(s, ckpt_names, &v)) return FALSE;
  *out = v;
  return TRUE;
}
gboolean px_offload_parse(const char *s, PxOffload *out) {
  int v;
  if (s && !g_ascii_strcasecmp(s, "cpu")) { *out = PX_OFFLOAD_OPTIMIZER; return TRUE; }
  if (!parse_name(s, offload_names, &v)) return FALSE;
  *out = v;
  return TRUE;
}
gboolean px_precision_parse(const char *s, PxPrecision *out) {
  int v;
  if (!parse_name(s, prec_names, &v)) return FALSE;
  *out = v;
  return TRUE;
}
gboolean px_order_parse(const char *s, PxAxis order[3]) {
  if (!s) return FALSE;
  g_auto(GStrv) parts = g_strsplit_set(s, ",-", -1);
  if (g_strv_length(parts) != 3) return FALSE;
  gboolean seen[3] = {FALSE, FALSE, FALSE};
  PxAxis tmp[3];
  for (int i = 0; i < 3; i++) {
    int v;
    if (!parse_name(g_strstrip(parts[i]), axis_names, &v) || seen[v]) return FALSE;
    seen[v] = TRUE;
    tmp[i] = v;
  }
  memcpy(order, tmp, sizeof tmp);
  return TRUE;
}

/* ---- life cycle ---------------------------------------------------------- */

void px_plan_init(PxPlan *p) {
  memset(p, 0, sizeof *p);
  p->dp = p->tp = p->pp = p->vpp = 1;
  p->mbs = 1;
  p->gbs = 0; /* 0: one micro-batch per data-parallel rank */
  p->schedule = PX_SCHED_1F1B;
  p->partition = g_strdup("parameters");
  p->ckpt = PX_CKPT_NONE;
  p->ckpt_interval = 1;
  p->precision = PX_PREC_BF16;
  p->order[0] = PX_AXIS_TP;
  p->order[1] = PX_AXIS_DP;
  p->order[2] = PX_AXIS_PP;
  p->workspace_bytes = 1024.0 * 1024 * 1024; /* CUDA context + cuBLAS workspace + fragmentation */
  p->bucket_bytes = 0;                       /* 0: DeepSpeed's default 5e8 elements */
  p->cp = 1;
  p->ep = 1;
  p->etp = 0;                                /* 0: the attention's tp */
  p->imbalance = 1.0;
}

void px_plan_clear(PxPlan *p) {
  g_clear_pointer(&p->partition, g_free);
}

void px_plan_copy(PxPlan *dst, const PxPlan *src) {
  *dst = *src;
  dst->partition = g_strdup(src->partition);
}

int px_plan_act_bytes(const PxPlan *p) { return p->precision == PX_PREC_FP32 ? 4 : 2; }

/* ---- rank layout --------------------------------------------------------- */

int px_plan_world(const PxPlan *p) { return p->dp * MAX(p->cp, 1) * p->tp * p->pp; }
int px_plan_data_ranks(const PxPlan *p) { return p->dp * MAX(p->cp, 1); }
int px_plan_local_seq(const PxPlan *p) { return p->seq / MAX(p->cp, 1); }

/* CP sits inside DP: the data axis has dp·cp members, the CP rank innermost. */
static int axis_size(const PxPlan *p, PxAxis a) {
  return a == PX_AXIS_TP ? p->tp : a == PX_AXIS_DP ? px_plan_data_ranks(p) : p->pp;
}

void px_plan_rank_coords(const PxPlan *p, int rank, int *dp, int *tp, int *pp) {
  int c[3];
  for (int i = 0; i < 3; i++) {
    int n = axis_size(p, p->order[i]);
    c[p->order[i]] = rank % n;
    rank /= n;
  }
  if (dp) *dp = c[PX_AXIS_DP];
  if (tp) *tp = c[PX_AXIS_TP];
  if (pp) *pp = c[PX_AXIS_PP];
}

int px_plan_rank_of(const PxPlan *p, int dp, int tp, int pp) {
  int c[3];
  c[PX_AXIS_DP] = dp;
  c[PX_AXIS_TP] = tp;
  c[PX_AXIS_PP] = pp;
  int rank = 0;
  for (int i = 2; i >= 0; i--) rank = rank * axis_size(p, p->order[i]) + c[p->order[i]];
  return rank;
}

/* ---- chunks and parts ---------------------------------------------------- */

gboolean px_schedule_is_v(PxScheduleKind k) { return k == PX_SCHED_ZB_V || k == PX_SCHED_DUALPIPEV; }

int px_schedule_part_of(PxScheduleKind k, int pp, int stage, int chunk) {
  if (px_schedule_is_v(k)) return chunk % 2 == 0 ? chunk * pp + stage : chunk * pp + pp - 1 - stage;
  return chunk * pp + stage;
}

void px_schedule_part_place(PxScheduleKind k, int pp, int part, int *stage, int *chunk) {
  int c = part / pp, s = part % pp;
  *chunk = c;
  *stage = px_schedule_is_v(k) && c % 2 == 1 ? pp - 1 - s : s;
}

/* ---- bubble -------------------------------------------------------------- */

double px_plan_bubble_fraction(const PxPlan *p) { return px_plan_bubble_fraction_costs(p, 1, 1, 1); }

double px_plan_bubble_fraction_costs(const PxPlan *p, double tf, double tb, double tw) {
  if (!(tf > 0 && tb > 0 && tw >= 0) || !isfinite(tf) || !isfinite(tb) || !isfinite(tw)) return NAN;
  double pp = p->pp, m = p->m > 0 ? p->m : 1, v = MAX(p->vpp, 1);
  double c = tf + tb + tw; /* one chunk's passes for one micro-batch */
  double idle;
  switch (p->schedule) {
  case PX_SCHED_NAIVE: return (pp - 1) / pp;
  /* (p-1) whole passes of a stage (GPipe, 1F1B: Narayanan et al. 2021), of a
   * chunk (interleaved: 1/v of them): the fraction does not depend on the costs */
  case PX_SCHED_GPIPE:
  case PX_SCHED_1F1B: return (pp - 1) / (m + pp - 1);
  case PX_SCHED_INTERLEAVED: return (pp - 1) / (v * m + pp - 1);
  /* Qi et al. 2024 §3.1: ZB-H1 idles (p-1)(T_F + T_B - T_W) and ZB-H2
   * (p-1)(T_F + T_B - 2 T_W), for a weight pass no longer than the forward
   * and the backward-input pass (their setting); ZB-H2's cannot fall below
   * the last rank's wait for its first input, (p-1) T_F, which the step-time
   * convention counts (every rank starts at 0). Outside that setting the
   * handcrafted orders are not what Qi et al. analyse: no closed form */
  case PX_SCHED_ZB_H1:
  case PX_SCHED_ZB_H2:
    if (tw > tf || tw > tb) return NAN;
    idle = p->schedule == PX_SCHED_ZB_H1 ? (pp - 1) * (tf + tb - tw) : (pp - 1) * MAX(tf, tf + tb - 2 * tw);
    break;
  /* every rank waits (p-1) T_F for its first input; with optimizer
   * post-validation (Qi et al. §4) that wait overlaps the previous step and
   * ZB-H2 / ZB-V have no bubble left */
  case PX_SCHED_ZB_V: idle = px_plan_zbv_idle(p->pp, tf, tb, tw); v = 2; break;
  /* DualPipe README: (PP/2-1)(F&B+B-3W) over PP/2 = p ranks, F&B the
   * overlapped pair (here T_F + T_B + T_W: no compute saved), B the full
   * backward T_B + T_W: (p-1)(T_F + 2 T_B - T_W); equal passes: 2(p-1) idle in
   * a step of 6m + 2(p-1). It holds for the handcrafted order when T_F = T_B
   * and T_W <= T_B (docs/schedules.md); otherwise no closed form */
  case PX_SCHED_DUALPIPEV:
    if (tf != tb || tw > tb) return NAN;
    idle = (pp - 1) * (tf + 2 * tb - tw);
    v = 2;
    break;
  default: return 0;
  }
  return idle / (m * v * c + idle);
}

double px_plan_zbv_idle(int p, double tf, double tb, double tw) {
  if (p < 1 || tb < tf) return NAN;
  if (p == 1) return 0;
  double x = MAX(tb, 2 * (tb - tw));
  return x + (p - 2) * MAX(x, tw);
}

int px_plan_bubble_exact_from(const PxPlan *p) {
  switch (p->schedule) {
  case PX_SCHED_ZB_H1: return MAX(p->pp, 1);
  case PX_SCHED_ZB_H2:
  case PX_SCHED_ZB_V: return MAX(2 * p->pp - 1, 1);
  case PX_SCHED_DUALPIPEV: return MAX(2 * p->pp, 1);
  default: return 1;
  }
}

/* ---- the global batch from a token count --------------------------------- */

gboolean px_plan_gbs_from_tokens(double tokens, int seq, int *gbs, double *deviation, GError **error) {
  if (!isfinite(tokens) || seq < 1 || tokens < seq) {
    g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE,
                "--gbs-tokens %g is not a token count of at least one sequence (%d)", tokens, seq);
    return FALSE;
  }
  double n = tokens / seq;
  if (n > G_MAXINT) {
    g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, "--gbs-tokens %g is %.4g sequences of %d, above %d",
                tokens, n, seq, G_MAXINT);
    return FALSE;
  }
  gint64 q = 1;
  while (q * 2 <= n) q *= 2;
  gint64 best = MAX(1, llround(n));
  for (; q >= 1; q /= 2) {
    gint64 k = MAX(1, llround(n / q)) * q;
    if (fabs(k - n) <= PX_PLAN_GBS_TOKENS_TOLERANCE * n || q == 1) {
      best = k;
      break;
    }
  }
  if (best > G_MAXINT) {
    g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, "--gbs-tokens %g gives %" G_GINT64_FORMAT " sequences, above %d",
                tokens, best, G_MAXINT);
    return FALSE;
  }
  *gbs = (int)best;
  if (deviation) *deviation = ((double)best * seq - tokens) / tokens;
  return TRUE;
}

/* ---- validation ---------------------------------------------------------- */

#define REFUSE(...)                                                              \
  do {                                                                           \
    g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID, __VA_ARGS__);       \
    return FALSE;                                                                \
  } while (0)

gboolean px_plan_validate(PxPlan *p, const PxModel *model, const PxCluster *cluster, GError **error) {
  const PxModelDesc *d = &model->desc;
  if (p->cp == 0) p->cp = 1; /* a plan built field by field without px_plan_init */
  struct { const char *name; int v; } pos[] = {{"dp", p->dp},   {"tp", p->tp},   {"pp", p->pp},
                                               {"vpp", p->vpp}, {"mbs", p->mbs},
                                               {"ckpt_interval", p->ckpt_interval}, {"cp", p->cp}};
  for (gsize i = 0; i < G_N_ELEMENTS(pos); i++)
    if (pos[i].v < 1) REFUSE("%s=%d must be at least 1", pos[i].name, pos[i].v);
  if (p->gbs < 0) REFUSE("global batch %d must be positive", p->gbs);
  if (!(p->workspace_bytes >= 0 && p->workspace_bytes <= PX_PLAN_MAX_BYTES))
    REFUSE("workspace %g B per GPU is not 0..1 PiB", p->workspace_bytes);
  if (!(p->bucket_bytes >= 0 && p->bucket_bytes <= PX_PLAN_MAX_BYTES))
    REFUSE("gradient bucket %g B is not 0..1 PiB", p->bucket_bytes);
  /* 3 or 1000 B per gradient element was planned (a gradient memory of 1000 B per parameter) */
  if (p->grad_reduce_bytes != 0 && p->grad_reduce_bytes != 1 && p->grad_reduce_bytes != 2 && p->grad_reduce_bytes != 4 &&
      p->grad_reduce_bytes != 8)
    REFUSE("grad_reduce_bytes = %d is not the size of a gradient element: 1 (fp8), 2 (bf16, fp16), 4 (fp32), 8 (fp64), "
           "or 0 for the stack's", p->grad_reduce_bytes);
  /* 1e-300 B was planned as buckets of one layer each and emitted as DeepSpeed's reduce_bucket_size 0 */
  if (p->bucket_bytes > 0 && p->bucket_bytes < px_plan_act_bytes(p))
    REFUSE("gradient bucket %g B is less than one %d-byte gradient element", p->bucket_bytes, px_plan_act_bytes(p));
  if ((gint64)p->dp * p->tp * p->pp > (1 << 24)) REFUSE("dp·tp·pp=%" G_GINT64_FORMAT " is too many GPUs", (gint64)p->dp * p->tp * p->pp);
  if ((gint64)p->dp * p->cp * p->tp * p->pp > (1 << 24))
    REFUSE("dp·cp·tp·pp=%" G_GINT64_FORMAT " is too many GPUs", (gint64)p->dp * p->cp * p->tp * p->pp);
  if (p->seq == 0) p->seq = d->default_seq;
  if (p->seq < 1) REFUSE("sequence length %d must be positive", p->seq);
  if (p->seq > d->max_seq)
    REFUSE("sequence %d exceeds the model's %d positions", p->seq, d->max_seq);
  if (d->heads % p->tp) REFUSE("tp=%d does not divide %d attention heads", p->tp, d->heads);
  if (d->kv_heads % p->tp) REFUSE("tp=%d does not divide %d key-value heads", p->tp, d->kv_heads);
  if (d->ffn % p->tp) REFUSE("tp=%d does not divide the FFN size %d", p->tp, d->ffn);
  if (p->seq_parallel && p->tp == 1) REFUSE("sequence parallelism needs tp > 1");
  /* FlashAttention v1 / v2 and Triton's take fp16 / bf16 inputs only (px_cost_attention's fp32
   * default is the unfused core): an fp32 plan with them was costed as if they ran */
  if (p->precision == PX_PREC_FP32 && px_attention_fused(p->attention))
    REFUSE("--attention %s takes bf16 or fp16 inputs, not fp32 (give --precision bf16, or --attention unfused)",
           px_attention_name(p->attention));
  if (p->cp > 1) {
    /* load-balanced causal CP (Megatron / Transformer Engine): the sequence is
     * cut into 2·cp chunks, rank i holding chunks i and 2cp-1-i */
    if (p->seq % (2 * p->cp))
      REFUSE("context parallelism cuts the sequence into 2·cp = %d chunks: %d tokens are not divisible by %d",
             2 * p->cp, p->seq, 2 * p->cp);
    if (p->precision == PX_PREC_FP32)
      REFUSE("context parallelism runs Transformer Engine's fused ring attention, which needs bf16, fp16 or fp8, not fp32");
    if (p->attention == PX_ATTN_UNFUSED)
      REFUSE("context parallelism runs ring attention on fused (flash) attention blocks, not --attention unfused");
  }
  if (p->seq_parallel && px_plan_local_seq(p) % p->tp) {
    if (p->cp > 1)
      REFUSE("sequence parallelism needs tp=%d to divide the %d tokens per CP rank (seq %d / cp %d)", p->tp,
             px_plan_local_seq(p), p->seq, p->cp);
    REFUSE("sequence parallelism needs tp=%d to divide the sequence %d", p->tp, p->seq);
  }
  if (p->compile && p->stack != PX_STACK_TORCHTITAN)
    REFUSE("--compile is torch.compile per TransformerBlock as torchtitan applies it: it needs --stack torchtitan "
           "(stack is %s)", px_stack_name(p->stack));
  if (p->compile && !px_model_llama_block(d))
    REFUSE("--compile: the compiled kernels are counted for torchtitan's Llama block (RMSNorm, RoPE, SwiGLU, no "
           "biases, dropout or experts); %s is not one", d->name ? d->name : "the model");
  /* DeepSpeed's pipeline engine trains with one schedule, TrainSchedule (runtime/pipe/schedule.py): 1F1B over
   * one chunk per stage. The others were simulated on its blocking rendezvous sends and ended in
   * "deadlock: rank 0 (stage 0) at instruction 5 'SEND_ACT ...'", or were costed as a schedule it has not */
  if (p->stack == PX_STACK_DEEPSPEED && p->pp > 1 && p->schedule != PX_SCHED_1F1B)
    REFUSE("--stack deepspeed pipelines with DeepSpeed's TrainSchedule, 1F1B over one chunk per stage: it has no "
           "%s schedule (give --schedule 1f1b, or another --stack)", px_schedule_name(p->schedule));
  if (p->tp_overlap < PX_TPO_NONE || p->tp_overlap >= PX_N_TPO) REFUSE("unknown tp_overlap %d", (int)p->tp_overlap);
  if (p->tp_overlap != PX_TPO_NONE) {
    /* Megatron-LM arguments.py: "Tensor parallel communication/GEMM overlap
     * can happen only when sequence parallelism is enabled"; NeMo's
     * MegatronCommOverlapCallback turns it off below tp 2 */
    if (p->tp < 2) REFUSE("--tp-overlap %s needs tp > 1: it overlaps the tensor-parallel collectives (tp=%d)",
                          px_tp_overlap_name(p->tp_overlap), p->tp);
    if (!p->seq_parallel)
      REFUSE("--tp-overlap %s needs sequence parallelism (--sp): Megatron-LM asserts it, Transformer Engine overlaps "
             "the sequence-parallel all-gather / reduce-scatter", px_tp_overlap_name(p->tp_overlap));
    if (!px_plan_tp_overlap_stack_ok(p, error)) return FALSE;
  }
  if (px_schedule_is_v(p->schedule)) {
    /* the V schedules are defined on two chunks per rank */
    if (p->vpp == 1) p->vpp = 2;
    if (p->vpp != 2) REFUSE("%s runs two model chunks per rank in a V, not vpp=%d", px_schedule_name(p->schedule), p->vpp);
  }
  if ((gint64)p->pp * p->vpp > d->layers) {
    if (p->vpp == 1) REFUSE("pp=%d exceeds %d layers", p->pp, d->layers);
    REFUSE("pp·vpp=%d·%d=%d model chunks exceed %d layers", p->pp, p->vpp, p->pp * p->vpp, d->layers);
  }
  if ((gint64)p->mbs * p->seq > G_MAXINT)
    REFUSE("micro-batch %d × sequence %d tokens is too large", p->mbs, p->seq);
  gint64 per = (gint64)p->mbs * p->dp;
  if (per > G_MAXINT) REFUSE("micro-batch %d × dp %d = %" G_GINT64_FORMAT " sequences is too large", p->mbs, p->dp, per);
  if (p->gbs == 0) p->gbs = (int)per;
  if (p->gbs % per)
    REFUSE("global batch %d is not divisible by micro-batch %d × dp %d = %" G_GINT64_FORMAT, p->gbs,
           p->mbs, p->dp, per);
  p->m = (int)(p->gbs / per);
  if (p->schedule == PX_SCHED_INTERLEAVED) {
    if (p->vpp < 2) REFUSE("interleaved schedule needs vpp ≥ 2 model chunks per rank");
    /* Megatron-LM refuses it too (arguments.py: pipeline-model-parallel size > 1, > 2 without p2p overlap) */
    if (p->pp < 2)
      REFUSE("interleaved schedule needs pp ≥ 2 pipeline stages: on one stage its %d chunks run one after the "
             "other, as without --vpp", p->vpp);
    if (p->m % p->pp) REFUSE("interleaved schedule needs micro-batches divisible by pp (m=%d, pp=%d)", p->m, p->pp);
  } else if (p->schedule == PX_SCHED_DUALPIPEV) {
    /* deepseek-ai/DualPipe dualpipev.py: assert num_chunks >= num_ranks * 2 */
    if (p->m < 2 * p->pp)
      REFUSE("dualpipev needs at least 2·pp = %d micro-batches (m=%d)", 2 * p->pp, p->m);
  } else if (p->vpp != 1 && !px_schedule_is_v(p->schedule)) {
    REFUSE("vpp=%d needs the interleaved schedule (schedule is %s)", p->vpp, px_schedule_name(p->schedule));
  }
  if ((gint64)p->pp * p->vpp * p->m > PX_PLAN_MAX_PASSES)
    REFUSE("m=%d micro-batches × pp·vpp=%d·%d model chunks = %" G_GINT64_FORMAT " passes per step is more than "
           "2^21 (a smaller global batch or a larger micro-batch)", p->m, p->pp, p->vpp,
           (gint64)p->pp * p->vpp * p->m);
  if (p->zero < 0 || p->zero > 3) REFUSE("ZeRO stage %d is not 0, 1, 2 or 3", p->zero);
  if (p->offload == PX_OFFLOAD_OPTIMIZER_PARAMS && p->zero != 3)
    REFUSE("offloading parameters needs ZeRO stage 3 (stage is %d)", p->zero);
  if (p->offload != PX_OFFLOAD_NONE && p->zero == 0)
    REFUSE("offloading the optimizer needs ZeRO stage 1 or more");
  if (cluster) {
    gint64 world = (gint64)p->dp * p->cp * p->tp * p->pp;
    int gpus = px_cluster_gpus(cluster);
    if (world != gpus)
      REFUSE("%s=%" G_GINT64_FORMAT " but the cluster has %d GPUs (%d nodes × %d)", p->cp > 1 ? "dp·cp·tp·pp" : "dp·tp·pp",
             world, gpus, cluster->nodes, cluster->gpus_per_node);
    if (p->tp_overlap != PX_TPO_NONE && cluster->gpus_per_node > 0) {
      /* userbuffers exchange over NVLink only (userbuffers.cu userbuffers_send /
       * _recv: assert(INTRANODE(peer))): every TP group on one node */
      for (int pr = 0; pr < p->pp; pr++)
        for (int dr = 0; dr < px_plan_data_ranks(p); dr++) {
          int first = px_plan_rank_of(p, dr, 0, pr) / cluster->gpus_per_node;
          for (int t = 1; t < p->tp; t++)
            if (px_plan_rank_of(p, dr, t, pr) / cluster->gpus_per_node != first)
              REFUSE("--tp-overlap %s needs every TP group on one node (Transformer Engine's userbuffers run over "
                     "NVLink): tp=%d with order %s,%s,%s spans nodes of %d GPUs", px_tp_overlap_name(p->tp_overlap),
                     p->tp, px_axis_name(p->order[0]), px_axis_name(p->order[1]), px_axis_name(p->order[2]),
                     cluster->gpus_per_node);
        }
    }
    if (p->precision == PX_PREC_FP8 && cluster->peak_fp8 <= 0)
      REFUSE("--precision fp8 needs FP8 tensor cores, which the %s of cluster %s does not have (no [gpu] peak_fp8: "
             "Hopper, e.g. H100 or H200, or later)", cluster->gpu, cluster->name);
  }
  if (!p->partition || !*p->partition) REFUSE("no partition method");
  if (!px_text_is_line(p->partition)) { /* written into launch files: a newline there began a command line */
    g_autofree char *shown = g_strescape(p->partition, NULL);
    REFUSE("partition '%s' is not one line of text (a control character or invalid UTF-8)", shown);
  }
  return px_moe_validate(p, model, error);
}

/* ---- INI ----------------------------------------------------------------- */

/* Parses a named choice into its enum (or the order's array). */
typedef gboolean (*ChoiceParser)(const char *s, void *out);

typedef enum {
  KEY_INT,      /* int, at least min */
  KEY_DOUBLE,   /* double, at least min */
  KEY_GB,       /* double, at least min, in GB: the field is in bytes */
  KEY_BOOL,     /* gboolean */
  KEY_CHOICE,   /* a name through parse */
  KEY_STRING,   /* char *, owned: replaced when the file gives it */
  KEY_T_STRING, /* the file's target (PxPlanIniTargets): char *, owned */
  KEY_T_INT,    /* the file's target (PxPlanIniTargets): int, at least min, -1 when absent */
} KeyKind;

/* Every [plan] key: the one list px_plan_load_ini reads them from (in this
 * order) and the key check accepts them by, so a key cannot be read but
 * refused, or accepted but ignored. model, cluster and nodes name what the
 * file was made for: read into PxPlanIniTargets (the command line's own
 * --model, --cluster, --nodes win, sim/options.c). */
static const struct {
  const char *key;
  KeyKind kind;
  size_t offset;          /* of the field in PxPlan, or in PxPlanIniTargets (KEY_T_*) */
  gint64 min;             /* KEY_INT, KEY_DOUBLE, KEY_GB, KEY_T_INT */
  ChoiceParser parse;     /* KEY_CHOICE */
  const char *expected;   /* KEY_CHOICE: the names, for the refusal */
  double max;             /* KEY_T_INT: at most; KEY_DOUBLE, KEY_GB: bytes at most (0: no bound) */
} plan_keys[] = {
  {"model", KEY_T_STRING, offsetof(PxPlanIniTargets, model), 0, NULL, NULL, 0},
  {"cluster", KEY_T_STRING, offsetof(PxPlanIniTargets, cluster), 0, NULL, NULL, 0},
  {"nodes", KEY_T_INT, offsetof(PxPlanIniTargets, nodes), 1, NULL, NULL, 1 << 24},
  {"dp", KEY_INT, offsetof(PxPlan, dp), 1, NULL, NULL, 0},
  {"tp", KEY_INT, offsetof(PxPlan, tp), 1, NULL, NULL, 0},
  {"pp", KEY_INT, offsetof(PxPlan, pp), 1, NULL, NULL, 0},
  {"vpp", KEY_INT, offsetof(PxPlan, vpp), 1, NULL, NULL, 0},
  {"mbs", KEY_INT, offsetof(PxPlan, mbs), 1, NULL, NULL, 0},
  {"gbs", KEY_INT, offsetof(PxPlan, gbs), 1, NULL, NULL, 0},
  {"seq", KEY_INT, offsetof(PxPlan, seq), 1, NULL, NULL, 0},
  {"zero", KEY_INT, offsetof(PxPlan, zero), 0, NULL, NULL, 0},
  {"ckpt_interval", KEY_INT, offsetof(PxPlan, ckpt_interval), 1, NULL, NULL, 0},
  {"grad_reduce_bytes", KEY_INT, offsetof(PxPlan, grad_reduce_bytes), 0, NULL, NULL, 0},
  {"cp", KEY_INT, offsetof(PxPlan, cp), 1, NULL, NULL, 0},
  {"ep", KEY_INT, offsetof(PxPlan, ep), 1, NULL, NULL, 0},
  {"etp", KEY_INT, offsetof(PxPlan, etp), 0, NULL, NULL, 0},
  {"imbalance", KEY_DOUBLE, offsetof(PxPlan, imbalance), 1, NULL, NULL, 0},
  {"schedule", KEY_CHOICE, offsetof(PxPlan, schedule), 0, (ChoiceParser)px_schedule_parse,
   "naive, gpipe, 1f1b, interleaved, zb-h1, zb-h2, zb-v, dualpipev", 0},
  {"ckpt", KEY_CHOICE, offsetof(PxPlan, ckpt), 0, (ChoiceParser)px_ckpt_parse, "none, selective, full", 0},
  {"offload", KEY_CHOICE, offsetof(PxPlan, offload), 0, (ChoiceParser)px_offload_parse,
   "none, optimizer, optimizer+params", 0},
  {"precision", KEY_CHOICE, offsetof(PxPlan, precision), 0, (ChoiceParser)px_precision_parse,
   "fp32, fp16, bf16, fp8", 0},
  {"stack", KEY_CHOICE, offsetof(PxPlan, stack), 0, (ChoiceParser)px_stack_parse,
   "parallax, megatron-2021, megatron-core, deepspeed, fsdp, torchtitan", 0},
  {"attention", KEY_CHOICE, offsetof(PxPlan, attention), 0, (ChoiceParser)px_attention_parse,
   "default, flash, unfused, flash1, triton", 0},
  {"tp_overlap", KEY_CHOICE, offsetof(PxPlan, tp_overlap), 0, (ChoiceParser)px_tp_overlap_parse,
   PX_TP_OVERLAP_NAMES, 0},
  {"order", KEY_CHOICE, offsetof(PxPlan, order), 0, (ChoiceParser)px_order_parse,
   "a permutation of tp,dp,pp (innermost first)", 0},
  {"seq_parallel", KEY_BOOL, offsetof(PxPlan, seq_parallel), 0, NULL, NULL, 0},
  {"compile", KEY_BOOL, offsetof(PxPlan, compile), 0, NULL, NULL, 0},
  {"partition", KEY_STRING, offsetof(PxPlan, partition), 0, NULL, NULL, 0},
  {"workspace_gb", KEY_GB, offsetof(PxPlan, workspace_bytes), 0, NULL, NULL, PX_PLAN_MAX_BYTES},
  {"bucket_bytes", KEY_DOUBLE, offsetof(PxPlan, bucket_bytes), 0, NULL, NULL, PX_PLAN_MAX_BYTES},
};

const char *px_plan_ini_key(guint i) { return i < G_N_ELEMENTS(plan_keys) ? plan_keys[i].key : NULL; }

static gboolean known_key(const char *key) {
  for (gsize i = 0; i < G_N_ELEMENTS(plan_keys); i++)
    if (!strcmp(plan_keys[i].key, key)) return TRUE;
  return FALSE;
}

/* One key of the table into its field (absent: the field keeps its value;
 * targets: NULL / -1). */
static gboolean read_key(GKeyFile *kf, const char *path, gsize i, PxPlan *p, PxPlanIniTargets *t,
                         GError **error) {
  const GQuark D = PX_PLAN_ERROR;
  const int E = PX_PLAN_ERROR_PARSE;
  const char *key = plan_keys[i].key;
  gint64 min = plan_keys[i].min;
  void *f = (char *)p + plan_keys[i].offset;
  void *tf = (char *)t + plan_keys[i].offset;
  switch (plan_keys[i].kind) {
  case KEY_INT: return px_config_get_int32(kf, path, "plan", key, TRUE, *(int *)f, min, f, D, E, error);
  case KEY_DOUBLE:
  case KEY_GB: {
    double unit = plan_keys[i].kind == KEY_GB ? 1e9 : 1, v = *(double *)f / unit;
    if (!px_config_get_double(kf, path, "plan", key, TRUE, v, (double)min, &v, D, E, error)) return FALSE;
    if (plan_keys[i].max > 0 && v * unit > plan_keys[i].max) {
      g_set_error(error, D, E, "%s: [plan] %s = %g is more than 1 PiB", path, key, v);
      return FALSE;
    }
    *(double *)f = v * unit;
    return TRUE;
  }
  case KEY_BOOL: return px_config_get_bool(kf, path, "plan", key, *(gboolean *)f, f, D, E, error);
  case KEY_CHOICE: {
    g_autofree char *s = NULL;
    if (!px_config_get_string(kf, path, "plan", key, TRUE, &s, D, E, error)) return FALSE;
    if (s && !plan_keys[i].parse(s, f)) {
      g_set_error(error, D, E, "%s: [plan] %s = '%s' is not one of %s", path, key, s, plan_keys[i].expected);
      return FALSE;
    }
    return TRUE;
  }
  case KEY_STRING: {
    g_autofree char *s = NULL;
    if (!px_config_get_string(kf, path, "plan", key, TRUE, &s, D, E, error)) return FALSE;
    if (s) {
      g_free(*(char **)f);
      *(char **)f = g_steal_pointer(&s);
    }
    return TRUE;
  }
  case KEY_T_STRING: return px_config_get_string(kf, path, "plan", key, TRUE, (char **)tf, D, E, error);
  case KEY_T_INT: {
    gint64 n;
    if (!px_config_get_int(kf, path, "plan", key, TRUE, -1, min, &n, D, E, error)) return FALSE;
    if (plan_keys[i].max > 0 && n > plan_keys[i].max) { /* it was cut to 2^31 - 1 and reported as --nodes */
      g_set_error(error, D, E, "%s: [plan] %s = %" G_GINT64_FORMAT " is more than %.0f", path, key, n,
                  plan_keys[i].max);
      return FALSE;
    }
    *(int *)tf = (int)n;
    return TRUE;
  }
  }
  g_assert_not_reached();
  return FALSE;
}

void px_plan_ini_targets_clear(PxPlanIniTargets *t) {
  g_clear_pointer(&t->model, g_free);
  g_clear_pointer(&t->cluster, g_free);
}

gboolean px_plan_load_ini_targets(PxPlan *p, const char *path, PxPlanIniTargets *targets, GError **error) {
  PxPlanIniTargets t = {NULL, NULL, -1, FALSE};
  g_autoptr(GKeyFile) kf = px_config_load_keyfile(path, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, error);
  if (!kf) return FALSE;
  if (!g_key_file_has_group(kf, "plan")) {
    g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, "%s: no [plan] group", path);
    return FALSE;
  }
  /* a misspelt key (tensor_parallel, micro_batch) or group would silently keep the default */
  g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
  for (int i = 0; groups[i]; i++)
    if (strcmp(groups[i], "plan")) {
      g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, "%s: [%s] is not a plan group (only [plan])", path,
                  groups[i]);
      return FALSE;
    }
  g_auto(GStrv) keys = g_key_file_get_keys(kf, "plan", NULL, NULL);
  for (int i = 0; keys && keys[i]; i++)
    if (!known_key(keys[i])) {
      g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, "%s: [plan] %s is not a plan key", path, keys[i]);
      return FALSE;
    }
  t.has_dp = g_key_file_has_key(kf, "plan", "dp", NULL);
  for (gsize i = 0; i < G_N_ELEMENTS(plan_keys); i++)
    if (!read_key(kf, path, i, p, &t, error)) {
      px_plan_ini_targets_clear(&t);
      return FALSE;
    }
  if (targets) *targets = t;
  else px_plan_ini_targets_clear(&t);
  return TRUE;
}

gboolean px_plan_load_ini(PxPlan *p, const char *path, GError **error) {
  return px_plan_load_ini_targets(p, path, NULL, error);
}

char *px_plan_to_ini(const PxPlan *p) {
  GString *s = g_string_new("# Parallax plan (parallax-sim plan --plan FILE reads it back)\n[plan]\n");
  g_string_append_printf(s, "dp = %d\ntp = %d\npp = %d\nvpp = %d\nmbs = %d\ngbs = %d\nseq = %d\n",
                         p->dp, p->tp, p->pp, p->vpp, p->mbs, p->gbs, p->seq);
  g_string_append_printf(s, "schedule = %s\npartition = %s\nzero = %d\noffload = %s\n",
                         px_schedule_name(p->schedule), p->partition, p->zero, px_offload_name(p->offload));
  g_string_append_printf(s, "ckpt = %s\nckpt_interval = %d\nseq_parallel = %s\nprecision = %s\n",
                         px_ckpt_name(p->ckpt), p->ckpt_interval, p->seq_parallel ? "true" : "false",
                         px_precision_name(p->precision));
  g_string_append_printf(s, "stack = %s\nattention = %s\ngrad_reduce_bytes = %d\n", px_stack_name(p->stack),
                         px_attention_name(p->attention), p->grad_reduce_bytes);
  g_string_append_printf(s, "order = %s,%s,%s\n", px_axis_name(p->order[0]), px_axis_name(p->order[1]),
                         px_axis_name(p->order[2]));
  if (p->cp > 1) g_string_append_printf(s, "cp = %d\n", p->cp);
  if (p->tp_overlap != PX_TPO_NONE) g_string_append_printf(s, "tp_overlap = %s\n", px_tp_overlap_name(p->tp_overlap));
  if (p->compile) g_string_append(s, "compile = true\n");
  char ws[G_ASCII_DTOSTR_BUF_SIZE], bk[G_ASCII_DTOSTR_BUF_SIZE], im[G_ASCII_DTOSTR_BUF_SIZE];
  g_string_append_printf(s, "ep = %d\netp = %d\nimbalance = %s\n", p->ep, p->etp,
                         g_ascii_dtostr(im, sizeof im, p->imbalance));
  g_string_append_printf(s, "workspace_gb = %s\nbucket_bytes = %s\n",
                         g_ascii_dtostr(ws, sizeof ws, p->workspace_bytes / 1e9),
                         g_ascii_dtostr(bk, sizeof bk, p->bucket_bytes));
  return g_string_free(s, FALSE);
}

/* ---- DeepSpeed ds_config.json ------------------------------------------- */

static JsonObject *member_object(JsonObject *o, const char *key) {
  JsonNode *n = json_object_get_member(o, key);
  return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

/* The sections ds_config holds as objects: one given as anything else
 * ("bf16": true, "zero_optimization": [3], "offload_param": "cpu") was
 * read as absent, silently dropping what it asked for. null is absent. */
static gboolean ds_sections_are_objects(JsonObject *o, const char *path, GError **error) {
  static const char *const top[] = {"bf16", "fp16", "zero_optimization", "activation_checkpointing", "pipeline"};
  static const char *const zero[] = {"offload_optimizer", "offload_param"};
  for (gsize i = 0; i < G_N_ELEMENTS(top); i++) {
    JsonNode *n = json_object_get_member(o, top[i]);
    if (n && !JSON_NODE_HOLDS_NULL(n) && !JSON_NODE_HOLDS_OBJECT(n)) {
      g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, "%s: \"%s\" must be an object ({...})", path, top[i]);
      return FALSE;
    }
  }
  JsonObject *z = member_object(o, "zero_optimization");
  for (gsize i = 0; z && i < G_N_ELEMENTS(zero); i++) {
    JsonNode *n = json_object_get_member(z, zero[i]);
    if (n && !JSON_NODE_HOLDS_NULL(n) && !JSON_NODE_HOLDS_OBJECT(n)) {
      g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, "%s: zero_optimization.%s must be an object ({\"device\": ...})",
                  path, zero[i]);
      return FALSE;
    }
    JsonObject *off = member_object(z, zero[i]);
    JsonNode *d = off ? json_object_get_member(off, "device") : NULL;
    if (d && !JSON_NODE_HOLDS_NULL(d) && !(JSON_NODE_HOLDS_VALUE(d) && json_node_get_value_type(d) == G_TYPE_STRING)) {
      g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, "%s: zero_optimization.%s.device must be a string (none, cpu or nvme)",
                  path, zero[i]);
      return FALSE;
    }
  }
  return TRUE;
}

/* Every key the loader accepts, one table: a top-level key as itself, a key
 * inside a section the loader reads as "section.key". A section named here
 * (zero_optimization and its two offload objects, bf16, fp16,
 * activation_checkpointing, pipeline) has its keys checked; the others
 * (optimizer, scheduler, the monitors, ...) are checked by name only.
 * Taken from DeepSpeed v0.16.5 (microsoft/DeepSpeed commit 38327e07f6cd):
 *   top level: deepspeed/runtime/config.py DeepSpeedConfig._initialize_params
 *     and the getters it calls (names in deepspeed/runtime/constants.py), the
 *     monitors of deepspeed/monitor/config.py, comms_logger
 *     (deepspeed/comm/constants.py), flops_profiler (profiling/constants.py),
 *     autotuning, elasticity, compression_training and weight_quantization,
 *     data_efficiency and curriculum_learning (runtime/data_pipeline),
 *     aio (runtime/swap_tensor), nebula, timers (utils/config.py),
 *     tensor_parallel (runtime/tensor_parallel/config.py), hybrid_engine;
 *     allgather_size is read with the deprecated "zero_optimization": true.
 *   zero_optimization: DeepSpeedZeroConfig's fields and their aliases
 *     (the "stage3_..." names) and deprecated fields, runtime/zero/config.py
 *     (pydantic, populate_by_name, extra="forbid": DeepSpeed itself refuses
 *     an unknown key there); offload_param / offload_optimizer:
 *     runtime/zero/offload_config.py.
 *   bf16 / fp16: the BFLOAT16_* / FP16_* names of runtime/constants.py.
 *   activation_checkpointing: runtime/activation_checkpointing/config.py.
 *   pipeline: get_pipeline_config's defaults (runtime/config.py) and
 *     use_reentrant (runtime/pipe/engine.py).
 *   Kept from other releases, so that their configs still load: "compile"
 *     (deepspeed/runtime/compiler.py COMPILE_CONFIG, read by
 *     get_compile_config) and "quantize_training" (runtime/constants.py
 *     QUANTIZE_TRAINING of the 0.x releases before it moved to
 *     compression_training).
 * A top-level key starting with '_' is a comment (sim/emit.c writes
 * "_parallax"). */
static const char *const ds_known_keys[] = {
    /* top level */
    "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "steps_per_print",
    "dump_state", "disable_allgather", "communication_data_type", "seq_parallel_comm_data_type",
    "prescale_gradients", "gradient_predivide_factor", "sparse_gradients", "zero_optimization", "allgather_size",
    "activation_checkpointing", "comms_logger", "tensorboard", "wandb", "csv_monitor", "comet", "gradient_clipping",
    "fp16", "bf16", "bfloat16", "amp", "compression_training", "weight_quantization", "graph_harvesting",
    "optimizer", "zero_allow_untested_optimizer", "zero_force_ds_cpu_optimizer", "scheduler", "flops_profiler",
    "wall_clock_breakdown", "memory_breakdown", "autotuning", "eigenvalue", "use_data_before_expert_parallelism",
    "hybrid_engine", "sparse_attention", "pipeline", "progressive_layer_drop", "curriculum_learning",
    "data_efficiency", "checkpoint", "data_types", "aio", "dataloader_drop_last", "nebula", "timers",
    "tensor_parallel", "elasticity", "vocabulary_size", "compile", "quantize_training",
    /* zero_optimization */
    "zero_optimization.stage", "zero_optimization.contiguous_gradients", "zero_optimization.reduce_scatter",
    "zero_optimization.reduce_bucket_size", "zero_optimization.use_multi_rank_bucket_allreduce",
    "zero_optimization.allgather_partitions", "zero_optimization.allgather_bucket_size",
    "zero_optimization.overlap_comm", "zero_optimization.load_from_fp32_weights",
    "zero_optimization.elastic_checkpoint", "zero_optimization.offload_param", "zero_optimization.offload_optimizer",
    "zero_optimization.sub_group_size", "zero_optimization.cpu_offload_param",
    "zero_optimization.cpu_offload_use_pin_memory", "zero_optimization.cpu_offload",
    "zero_optimization.prefetch_bucket_size", "zero_optimization.stage3_prefetch_bucket_size",
    "zero_optimization.param_persistence_threshold", "zero_optimization.stage3_param_persistence_threshold",
    "zero_optimization.model_persistence_threshold", "zero_optimization.stage3_model_persistence_threshold",
    "zero_optimization.max_live_parameters", "zero_optimization.stage3_max_live_parameters",
    "zero_optimization.max_reuse_distance", "zero_optimization.stage3_max_reuse_distance",
    "zero_optimization.gather_16bit_weights_on_model_save",
    "zero_optimization.stage3_gather_16bit_weights_on_model_save",
    "zero_optimization.module_granularity_threshold", "zero_optimization.stage3_module_granularity_threshold",
    "zero_optimization.use_all_reduce_for_fetch_params", "zero_optimization.stage3_use_all_reduce_for_fetch_params",
    "zero_optimization.stage3_gather_fp16_weights_on_model_save", "zero_optimization.ignore_unused_parameters",
    "zero_optimization.legacy_stage1", "zero_optimization.round_robin_gradients",
    "zero_optimization.zero_hpz_partition_size", "zero_optimization.zero_quantized_weights",
    "zero_optimization.zero_quantized_nontrainable_weights", "zero_optimization.zero_quantized_gradients",
    "zero_optimization.zeropp_loco_param", "zero_optimization.mics_shard_size",
    "zero_optimization.mics_hierarchical_params_gather", "zero_optimization.memory_efficient_linear",
    "zero_optimization.pipeline_loading_checkpoint", "zero_optimization.override_module_apply",
    "zero_optimization.log_trace_cache_warnings",
    "zero_optimization.offload_param.device", "zero_optimization.offload_param.nvme_path",
    "zero_optimization.offload_param.buffer_count", "zero_optimization.offload_param.buffer_size",
    "zero_optimization.offload_param.max_in_cpu", "zero_optimization.offload_param.pin_memory",
    "zero_optimization.offload_optimizer.device", "zero_optimization.offload_optimizer.nvme_path",
    "zero_optimization.offload_optimizer.buffer_count", "zero_optimization.offload_optimizer.pin_memory",
    "zero_optimization.offload_optimizer.pipeline_read", "zero_optimization.offload_optimizer.pipeline_write",
    "zero_optimization.offload_optimizer.fast_init", "zero_optimization.offload_optimizer.ratio",
    /* bf16, fp16 */
    "bf16.enabled", "bf16.immediate_grad_update",
    "fp16.enabled", "fp16.loss_scale", "fp16.auto_cast", "fp16.initial_scale_power", "fp16.loss_scale_window",
    "fp16.hysteresis", "fp16.consecutive_hysteresis", "fp16.min_loss_scale", "fp16.fp16_master_weights_and_grads",
    /* activation_checkpointing */
    "activation_checkpointing.partition_activations", "activation_checkpointing.number_checkpoints",
    "activation_checkpointing.contiguous_memory_optimization",
    "activation_checkpointing.synchronize_checkpoint_boundary", "activation_checkpointing.profile",
    "activation_checkpointing.cpu_checkpointing",
    /* pipeline */
    "pipeline.stages", "pipeline.partition", "pipeline.seed_layers", "pipeline.activation_checkpoint_interval",
    "pipeline.pipe_partitioned", "pipeline.grad_partitioned", "pipeline.use_reentrant",
};

/* The sections whose keys are checked: those the table lists keys of. */
static const char *const ds_checked_sections[] = {"zero_optimization", "zero_optimization.offload_param",
                                                  "zero_optimization.offload_optimizer", "bf16", "fp16",
                                                  "activation_checkpointing", "pipeline"};

/* Levenshtein distance, or 3 once it is known to be above 2. */
static int ds_distance(const char *a, const char *b) {
  gsize la = strlen(a), lb = strlen(b);
  if ((la > lb ? la - lb : lb - la) > 2 || la > 128 || lb > 128) return 3;
  int row[129];
  for (gsize j = 0; j <= lb; j++) row[j] = (int)j;
  for (gsize i = 1; i <= la; i++) {
    int diag = row[0];
    row[0] = (int)i;
    for (gsize j = 1; j <= lb; j++) {
      int up = row[j];
      int best = diag + (a[i - 1] != b[j - 1]);
      best = MIN(best, up + 1);
      best = MIN(best, row[j - 1] + 1);
      row[j] = best;
      diag = up;
    }
  }
  return MIN(row[lb], 3);
}

/* The same letters once '_' is dropped (case aside): "zero_optimization" and "ZeroOptimization". */
static gboolean ds_same_letters(const char *a, const char *b) {
  for (;;) {
    while (*a == '_') a++;
    while (*b == '_') b++;
    if (!*a || !*b) return !*a && !*b;
    if (g_ascii_tolower(*a) != g_ascii_tolower(*b)) return FALSE;
    a++, b++;
  }
}

/* Refuses a key of SECTION (NULL: the top level) that the table lacks,
 * naming the closest known key of the same section. */
static gboolean ds_keys_known(JsonObject *o, const char *section, const char *path, GError **error) {
  gsize plen = section ? strlen(section) : 0;
  g_autoptr(GList) members = json_object_get_members(o);
  for (GList *m = members; m; m = m->next) {
    const char *key = m->data;
    if (!section && key[0] == '_') continue; /* a comment */
    const char *best = NULL;
    int best_d = 3;
    gboolean known = FALSE;
    for (gsize i = 0; i < G_N_ELEMENTS(ds_known_keys); i++) {
      const char *k = ds_known_keys[i];
      if (section ? strncmp(k, section, plen) || k[plen] != '.' : strchr(k, '.') != NULL) continue;
      k += section ? plen + 1 : 0;
      if (strchr(k, '.')) continue; /* a key of a subsection */
      if (!strcmp(k, key)) {
        known = TRUE;
        break;
      }
      int d = ds_same_letters(k, key) ? 0 : ds_distance(k, key);
      if (d < best_d) best_d = d, best = k;
    }
    if (known) continue;
    g_autofree char *shown = px_text_clip(key, -1, 64);
    g_autofree char *hint = best ? g_strdup_printf(" (did you mean '%s%s%s'?)", section ? section : "",
                                                   section ? "." : "", best)
                                 : g_strdup("");
    g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, "%s: unknown ds_config key \"%s%s%s\"%s", path,
                section ? section : "", section ? "." : "", shown, hint);
    return FALSE;
  }
  return TRUE;
}

/* Every key of the top level and of the sections the loader reads is one
 * DeepSpeed knows: a misspelt one ("zero_optimisation") was ignored,
 * silently planning ZeRO-0. Runs after ds_sections_are_objects. */
static gboolean ds_all_keys_known(JsonObject *o, const char *path, GError **error) {
  if (!ds_keys_known(o, NULL, path, error)) return FALSE;
  for (gsize i = 0; i < G_N_ELEMENTS(ds_checked_sections); i++) {
    g_auto(GStrv) parts = g_strsplit(ds_checked_sections[i], ".", 0);
    JsonObject *s = o;
    for (gsize j = 0; s && parts[j]; j++) s = member_object(s, parts[j]);
    if (s && !ds_keys_known(s, ds_checked_sections[i], path, error)) return FALSE;
  }
  return TRUE;
}

/* Whether the member is the string "auto". */
static gboolean is_auto(JsonObject *o, const char *key) {
  JsonNode *n = o ? json_object_get_member(o, key) : NULL;
  return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING &&
         !strcmp(json_node_get_string(n), "auto");
}

/* "enabled": true|false; "auto" only when the command line gives the
 * precision (*is_auto_out set), else refused. */
static gboolean section_enabled(JsonObject *o, const char *key, const char *path, gboolean *enabled,
                                gboolean *auto_out, GError **error) {
  *enabled = *auto_out = FALSE;
  JsonObject *s = member_object(o, key);
  if (!s) return TRUE;
  JsonNode *n = json_object_get_member(s, "enabled");
  if (!n || JSON_NODE_HOLDS_NULL(n)) return TRUE;
  if (is_auto(s, "enabled")) {
    *auto_out = TRUE;
    return TRUE;
  }
  if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN) {
    g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, "%s: %s.enabled must be true, false or \"auto\"", path, key);
    return FALSE;
  }
  *enabled = json_node_get_boolean(n);
  return TRUE;
}

/* A batch member: its value, the command line's (replacing it), 0 when
 * absent, or an "auto" the command line must resolve. */
static gboolean ds_batch(JsonObject *o, const char *path, const char *key, int cli, const char *flag, gint64 *out,
                         GError **error) {
  if (cli > 0) {
    *out = cli;
    return TRUE;
  }
  if (is_auto(o, key)) {
    if (!flag) {
      *out = 0; /* derived from the others */
      return TRUE;
    }
    g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, "%s: \"%s\" is \"auto\": give %s", path, key, flag);
    return FALSE;
  }
  if (!px_json_get_int(o, path, key, TRUE, 0, 1, out, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, error)) return FALSE;
  if (*out > G_MAXINT) {
    g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, "%s: \"%s\" = %" G_GINT64_FORMAT " is too large", path, key, *out);
    return FALSE;
  }
  return TRUE;
}

static const char *offload_device(JsonObject *zero, const char *key) {
  JsonObject *s = zero ? member_object(zero, key) : NULL;
  JsonNode *n = s ? json_object_get_member(s, "device") : NULL;
  return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
             ? json_node_get_string(n) : NULL;
}

gboolean px_plan_load_deepspeed(PxPlan *p, const char *path, const PxDsOverrides *cli, GError **error) {
  static const PxDsOverrides none = {0};
  if (!cli) cli = &none;
  JsonObject *o = NULL;
  g_autoptr(JsonParser) parser = px_json_load_object(path, &o, PX_PLAN_ERROR, PX_PLAN_ERROR_PARSE, error);
  if (!parser) return FALSE;
  if (!ds_sections_are_objects(o, path, error) || !ds_all_keys_known(o, path, error)) return FALSE;
  gint64 tbs, mbs, gas;
  const GQuark D = PX_PLAN_ERROR;
  const int E = PX_PLAN_ERROR_PARSE;
  /* the command line replaces the file's values first; "auto" accumulation
   * is derived from the other two */
  if (!ds_batch(o, path, "train_batch_size", cli->gbs, "--gbs or --gbs-tokens", &tbs, error) ||
      !ds_batch(o, path, "train_micro_batch_size_per_gpu", cli->mbs, "--mbs", &mbs, error) ||
      !ds_batch(o, path, "gradient_accumulation_steps", 0, NULL, &gas, error))
    return FALSE;
  /* DeepSpeed's rule: train_batch_size = micro × accumulation × dp; any two give the third. */
  gint64 dp = p->dp;
  /* each ≤ 2^31 - 1 (ds_batch) and dp ≤ 2^24: micro × accumulation × dp
   * could pass 2^63; a product above the largest global batch is refused
   * before it is formed */
  if (mbs && gas && mbs > G_MAXINT / gas / MAX(dp, 1)) {
    g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID,
                "%s: micro %" G_GINT64_FORMAT " × accumulation %" G_GINT64_FORMAT " × dp %" G_GINT64_FORMAT
                " is a global batch above %d", path, mbs, gas, dp, G_MAXINT);
    return FALSE;
  }
  const char *from = cli->gbs > 0 || cli->mbs > 0 ? " (after the command line's values)" : "";
  if (tbs && mbs && gas) {
    if (tbs != mbs * gas * dp) {
      g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID,
                  "%s: train_batch_size %" G_GINT64_FORMAT " != micro %" G_GINT64_FORMAT
                  " × accumulation %" G_GINT64_FORMAT " × dp %" G_GINT64_FORMAT " = %" G_GINT64_FORMAT "%s",
                  path, tbs, mbs, gas, dp, mbs * gas * dp, from);
      return FALSE;
    }
  } else if (tbs && mbs) {
    if (tbs % (mbs * dp)) {
      g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID,
                  "%s: train_batch_size %" G_GINT64_FORMAT " is not divisible by micro %" G_GINT64_FORMAT
                  " × dp %" G_GINT64_FORMAT "%s", path, tbs, mbs, dp, from);
      return FALSE;
    }
  } else if (tbs && gas) {
    if (tbs % (gas * dp)) {
      g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID,
                  "%s: train_batch_size %" G_GINT64_FORMAT " is not divisible by accumulation %" G_GINT64_FORMAT
                  " × dp %" G_GINT64_FORMAT "%s", path, tbs, gas, dp, from);
      return FALSE;
    }
    mbs = tbs / (gas * dp);
  } else if (mbs && gas) {
    tbs = mbs * gas * dp;
  } else if (mbs) {
    tbs = mbs * dp;
  } else if (!tbs) {
    g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID,
                "%s: needs train_batch_size or train_micro_batch_size_per_gpu (or --gbs / --mbs)", path);
    return FALSE;
  } else {
    mbs = tbs / dp;
    if (tbs % dp) {
      g_set_error(error, PX_PLAN_ERROR, PX_PLAN_ERROR_INVALID,
                  "%s: train_batch_size %" G_GINT64_FORMAT " is not divisible by dp %" G_GINT64_FORMAT, path, tbs, dp);
      return FALSE;
    }
  }
  if (tbs > G_MAXINT) {
    g_set_error(error, D, E, "%s: the global batch %" G_GINT64_FORMAT " is too large", path, tbs);
    return FALSE;
  }
  p->gbs = (int)tbs;
  p->mbs = (int)mbs;

  gboolean bf16, fp16, bf16_auto, fp16_auto;
  if (!section_enabled(o, "bf16", path, &bf16, &bf16_auto, error) ||
      !section_enabled(o, "fp16", path, &fp16, &fp16_auto, error))
    return FALSE;
  if ((bf16_auto || fp16_auto) && !cli->precision_given) {
    g_set_error(error, D, E, "%s: %s.enabled is \"auto\": give --precision (bf16, fp16 or fp32)", path,
                bf16_auto ? "bf16" : "fp16");
    return FALSE;
  }
  if (bf16 && fp16) {
    g_set_error(error, D, E, "%s: bf16 and fp16 are both enabled", path);
    return FALSE;
  }
  if (!cli->precision_given) p->precision = bf16 ? PX_PREC_BF16 : fp16 ? PX_PREC_FP16 : PX_PREC_FP32;

  /* DeepSpeed's get_communication_data_type raises on any other name; "int7" was accepted */
  JsonNode *comm_dt = json_object_get_member(o, "communication_data_type");
  if (comm_dt && !JSON_NODE_HOLDS_NULL(comm_dt)) {
    const char *v = JSON_NODE_HOLDS_VALUE(comm_dt) && json_node_get_value_type(comm_dt) == G_TYPE_STRING
                        ? json_node_get_string(comm_dt) : NULL;
    if (!v || (g_ascii_strcasecmp(v, "fp16") && g_ascii_strcasecmp(v, "bf16") && g_ascii_strcasecmp(v, "fp32"))) {
      g_set_error(error, D, E, "%s: communication_data_type must be \"fp16\", \"bf16\" or \"fp32\"", path);
      return FALSE;
    }
  }
  JsonObject *zero = member_object(o, "zero_optimization");
  if (zero) {
    gint64 stage;
    if (!px_json_get_int(zero, path, "stage", TRUE, 0, 0, &stage, D, E, error)) return FALSE;
    if (stage > 3) {
      g_set_error(error, D, E, "%s: zero_optimization.stage %" G_GINT64_FORMAT " is not 0..3", path, stage);
      return FALSE;
    }
    p->zero = (int)stage;
    gint64 bucket;
    if (is_auto(zero, "reduce_bucket_size")) {
      if (cli->hidden <= 0) {
        g_set_error(error, D, E, "%s: zero_optimization.reduce_bucket_size is \"auto\" and the model is unknown", path);
        return FALSE;
      }
      bucket = (gint64)cli->hidden * cli->hidden; /* the HF Trainer's resolution */
    } else if (!px_json_get_int(zero, path, "reduce_bucket_size", TRUE, 0, 0, &bucket, D, E, error)) {
      return FALSE;
    }
    /* 0 was read as absent: DeepSpeed's 5e8 elements (DeepSpeed itself then reduces each gradient alone) */
    if (bucket == 0 && json_object_has_member(zero, "reduce_bucket_size")) {
      g_set_error(error, D, E, "%s: zero_optimization.reduce_bucket_size = 0 is a bucket of no elements: leave it out "
                  "for DeepSpeed's 5e8", path);
      return FALSE;
    }
    if (bucket) p->bucket_bytes = (double)bucket * (p->precision == PX_PREC_FP32 ? 4 : 2);
  }
  const char *opt_dev = offload_device(zero, "offload_optimizer");
  const char *par_dev = offload_device(zero, "offload_param");
  /* DeepSpeed's OffloadDeviceEnum: none, cpu, nvme (nvme counted as cpu); another device
   * ("gpu", a typo) was read as no offload */
  const char *devs[][2] = {{"offload_optimizer", opt_dev}, {"offload_param", par_dev}};
  for (gsize i = 0; i < G_N_ELEMENTS(devs); i++)
    if (devs[i][1] && strcmp(devs[i][1], "none") && strcmp(devs[i][1], "cpu") && strcmp(devs[i][1], "nvme")) {
      g_set_error(error, D, E, "%s: zero_optimization.%s.device '%s' is not none, cpu or nvme", path, devs[i][0],
                  devs[i][1]);
      return FALSE;
    }
  gboolean opt_off = opt_dev && (!strcmp(opt_dev, "cpu") || !strcmp(opt_dev, "nvme"));
  gboolean par_off = par_dev && (!strcmp(par_dev, "cpu") || !strcmp(par_dev, "nvme"));
  p->offload = par_off ? PX_OFFLOAD_OPTIMIZER_PARAMS : opt_off ? PX_OFFLOAD_OPTIMIZER : PX_OFFLOAD_NONE;

  JsonObject *ac = member_object(o, "activation_checkpointing");
  if (ac) {
    /* DeepSpeed's activation_checkpointing section configures checkpointing
     * (partitioning, CPU copies); its presence means full recompute of layers
     * (the model calls deepspeed.checkpointing.checkpoint). */
    p->ckpt = PX_CKPT_FULL;
  }
  JsonObject *pipe = member_object(o, "pipeline");
  if (pipe) {
    gint64 interval;
    if (!px_json_get_int(pipe, path, "activation_checkpoint_interval", TRUE, 0, 0, &interval, D, E, error))
      return FALSE;
    if (interval > G_MAXINT) { /* it was cut to 2^31 - 1 */
      g_set_error(error, D, E, "%s: pipeline.activation_checkpoint_interval = %" G_GINT64_FORMAT " is too large", path,
                  interval);
      return FALSE;
    }
    if (interval > 0) {
      p->ckpt = PX_CKPT_FULL;
      p->ckpt_interval = (int)interval;
    }
  }
  return TRUE;
}
