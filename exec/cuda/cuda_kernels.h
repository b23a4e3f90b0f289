/* cuda_kernels.h — the launchers of the CUDA backend's kernels (kernels.cu),
 * called by backend_cuda.c. Plain C types only (no GLib), so that nvcc and the
 * C compiler read the same declarations.
 *
 * Every launcher queues its kernel(s) on the stream st and returns the launch
 * status (cudaGetLastError); cudaErrorInvalidValue for a dtype it does not
 * take. dt is a PxDType value (backend.h); the numbering is repeated here and
 * checked against PxDType at compile time in backend_cuda.c. Element types of
 * the compute ops: f32, bf16, f16, always computed in fp32 (reductions of
 * scalars in double), each half value rounded once (to nearest even) when
 * stored. Every backward adds into its gradient outputs (read, add in fp32,
 * round once); forward ops overwrite (backend.h).
 *
 * Statistics are fp32 whatever dt (float * below; backend.h "half
 * activations"): layernorm mean / rstd, rmsnorm rstd, the block attention's
 * lse, the cross-entropy losses, ce_vp rowmax / gmax / stats.
 *
 * bad: a host-mapped int[2] (backend_cuda.c) that a kernel sets to
 * {PXK_BAD_*, id} when it meets a token or target id outside its range; the
 * backend reports it at its next synchronisation. */
#pragma once
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { PXK_F32 = 0, PXK_F64 = 1, PXK_I32 = 2, PXK_BF16 = 3, PXK_F16 = 4 };
enum { PXK_BAD_NONE = 0, PXK_BAD_TOKEN = 1, PXK_BAD_TARGET = 2, PXK_BAD_ROW = 3 };
/* column reductions over rows (dw / db of linear and the norms) */
enum { PXK_COLSUM_PLAIN = 0, PXK_COLSUM_LN = 1, PXK_COLSUM_RMS = 2 };
/* the largest head_dim of the attention kernels (8 values per lane of a warp) */
#define PXK_ATT_MAX_HEAD_DIM 256

/* y (N,C) += b (C), broadcast over rows (linear's bias when the GEMM epilogue is not used) */
cudaError_t pxk_bias_add(cudaStream_t st, int dt, void *y, const void *b, int64_t N, int64_t C);
/* out[c] += sum_i f(i, c): PLAIN dout; LN dout*(x-mean)*rstd; RMS dout*x*rstd (mean, rstd fp32) */
cudaError_t pxk_colsum(cudaStream_t st, int dt, int mode, void *out, const void *dout, const void *x,
                       const float *mean, const float *rstd, int64_t N, int64_t C);

/* out[i] = wte[tok[i]-v0] (when in [0, n_real), else 0) + wpe[i % T] (when wpe);
 * bad != NULL: a token outside [0, n_real) is reported (the whole-vocabulary op). */
cudaError_t pxk_embedding_fwd(cudaStream_t st, int dt, void *out, const int32_t *tok, const void *wte,
                              const void *wpe, int64_t v0, int64_t n_real, int *bad, int B, int T,
                              int64_t C);
/* dwte[tok[i]-v0] += dout[i] (local tokens), dwpe[i % T] += dout[i]. f32: atomic
 * adds. bf16 / f16: each element's terms summed in fp32 and added once, dwte
 * in slabs of acc_rows rows through acc, fp32 scratch of acc_rows * C floats
 * (acc_rows >= 1; acc may be NULL for f32 or without dwte). */
cudaError_t pxk_embedding_bwd(cudaStream_t st, int dt, void *dwte, void *dwpe, const void *dout,
                              const int32_t *tok, int64_t v0, int64_t n_real, int B, int T, int64_t C,
                              float *acc, int64_t acc_rows);

cudaError_t pxk_layernorm_fwd(cudaStream_t st, int dt, void *out, float *mean, float *rstd, const void *x,
                              const void *w, const void *b, double eps, int64_t N, int64_t C);
cudaError_t pxk_layernorm_bwd_dx(cudaStream_t st, int dt, void *dx, const void *dout, const void *x,
                                 const void *w, const float *mean, const float *rstd, int64_t N, int64_t C);
cudaError_t pxk_rmsnorm_fwd(cudaStream_t st, int dt, void *out, float *rstd, const void *x, const void *w,
                            double eps, int64_t N, int64_t C);
cudaError_t pxk_rmsnorm_bwd_dx(cudaStream_t st, int dt, void *dx, const void *dout, const void *x,
                               const void *w, const float *rstd, int64_t N, int64_t C);

cudaError_t pxk_gelu_fwd(cudaStream_t st, int dt, void *out, const void *x, int64_t n);
cudaError_t pxk_gelu_bwd(cudaStream_t st, int dt, void *dx, const void *dout, const void *x, int64_t n);
cudaError_t pxk_swiglu_fwd(cudaStream_t st, int dt, void *out, const void *gate, const void *up, int64_t n);
cudaError_t pxk_swiglu_bwd(cudaStream_t st, int dt, void *dgate, void *dup, const void *dout,
                           const void *gate, const void *up, int64_t n);

/* Rotary on the q and k heads of qkv rows, v copied: dir +1 forward (dst may be
 * src), -1 the transpose; accumulate adds into dst. */
/* Global positions of a sequence's T tokens (backend.h PxAttnShape): token t
 * at t < split ? start0 + t : start1 + (t - split); split 0: at t. */
typedef struct {
  int split, start0, start1;
} PxkPos;

cudaError_t pxk_rope(cudaStream_t st, int dt, void *dst, const void *src, int B, int T, int heads,
                     int kv_heads, int head_dim, PxkPos pos, double theta, int dir, int accumulate);

/* Block attention (backend.h px_op_attn_block_*), one warp per query row
 * (forward, dQ) or key row (dK, dV), online softmax, causal by the global
 * positions qp, kp; lse (B*heads, Tq) fp32. */
cudaError_t pxk_attn_block_fwd(cudaStream_t st, int dt, void *out, float *lse, const void *q, const void *kv, int B,
                               int Tq, int Tk, int heads, int kv_heads, int head_dim, PxkPos qp, PxkPos kp);
/* dt is out_b's type; out_dt out's: dt, or PXK_F32 beside a half dt (the
 * fp32 accumulator, written without rounding). */
cudaError_t pxk_attn_merge(cudaStream_t st, int dt, int out_dt, void *out, float *lse, const void *out_b,
                           const float *lse_b, int B, int T, int heads, int head_dim);
cudaError_t pxk_attn_block_bwd(cudaStream_t st, int dt, void *dq, void *dkv, const void *dout, const void *q,
                               const void *kv, const void *out, const float *lse, int B, int Tq, int Tk, int heads,
                               int kv_heads, int head_dim, PxkPos qp, PxkPos kp);

/* Causal attention, one warp per query row, online softmax (flash style).
 * The saved state in att: f32, or T == 1: the probabilities (B,heads,T,T), as
 * the cpu backend; bf16 / f16 with T >= 2: only each row's log-sum-exp, as
 * fp32, in the first B*heads*T*4 bytes of att (no T x T scores are written).
 * pxk_att_saves_probs says which; sp passes it (0: the lse, whatever the
 * dtype, after the tensor-core forward). D: fp32 scratch of B*heads*T for
 * backward. */
int pxk_att_saves_probs(int dt, int T);
cudaError_t pxk_attention_fwd(cudaStream_t st, int dt, void *out, void *att, const void *qkv, int B,
                              int T, int heads, int kv_heads, int head_dim, int sp);
cudaError_t pxk_attention_bwd(cudaStream_t st, int dt, void *dqkv, const void *dout, const void *qkv,
                              const void *att, float *D, int B, int T, int heads, int kv_heads,
                              int head_dim, int sp);

/* ---- fused attention on tensor cores (flash_attn.cu, PX_CUDA_ATTN=flash) ----
 * FlashAttention-2 style: tiles of 64 query x 64 key rows in shared memory,
 * wmma 16x16x16 products (fp32 accumulators), online softmax in fp32; no score
 * tile is written to global memory. bf16 / f16, head_dim 64, 80, 96, 128;
 * base pointers 16-byte aligned; sm_80 or newer. q, kv in the qkv layout (Tq,
 * Tk rows per sequence), causal by the global positions qp, kp (the whole
 * attention: both {0, 0, 0}); out (B*Tq, heads*head_dim); lse fp32
 * (B*heads, Tq), -inf for a row that sees no key (out 0): the same state as
 * pxk_attention_fwd's lse and pxk_attn_block_fwd. Backward adds into dq and
 * dkv (qkv layout; may be one tensor); D fp32 (B*heads, Tq): rowsum(dout *
 * out) when d_given, else scratch the backward fills with sum_j P dP. */
/* the dynamic shared memory the kernels need for dt and head_dim (bytes,
 * the largest of the three), 0 when the path does not take them */
size_t pxk_flash_smem(int dt, int head_dim);
cudaError_t pxk_flash_fwd(cudaStream_t st, int dt, void *out, float *lse, const void *q, const void *kv, int B,
                          int Tq, int Tk, int heads, int kv_heads, int head_dim, PxkPos qp, PxkPos kp);
cudaError_t pxk_flash_bwd(cudaStream_t st, int dt, void *dq, void *dkv, const void *dout, const void *q,
                          const void *kv, const float *lse, float *D, int d_given, int B, int Tq, int Tk, int heads,
                          int kv_heads, int head_dim, PxkPos qp, PxkPos kp);

/* ---- attention on tensor cores (backend_cuda.c): the scores of one block
 * of query rows by batched cuBLAS GEMMs, these kernels in between ----
 * One call covers a chunk of E (sequence, query head) entries and one block
 * of nq query rows [q0, q0 + nq) against the first nk key rows. Entry e is
 * n = n0 + e in the order n = (i*B + b)*KV + j: sequence b, kv head j, query
 * head h = j*(H/KV) + i. So entries of one sequence and kv head lie B*KV
 * apart, and a chunk of at most B*KV entries never has two that write the
 * same dK / dV rows (the backward's GEMMs with beta = 1).
 * Tiles (fp32 scores S, dP; probabilities P and dS in the tensors' type) are
 * row-major nq x nk with row stride ldS, entry e's at element e * tile. */
typedef struct {
  int B, Tq, Tk, H, KV, hd; /* B sequences of Tq query and Tk key rows, in the qkv layout */
  PxkPos qp, kp;            /* query row t sees key row j iff kpos(j) <= qpos(t) */
  int n0, E;                /* the chunk's entries */
  int q0, nq, nk;           /* the block */
  int ldS;                  /* tile row stride (elements), >= nk */
  int64_t tile;             /* elements from one entry's tile to the next, >= nq * ldS */
  float scale;              /* 1/sqrt(hd) */
} PxkAttTc;

/* the pointer arrays of the batched GEMMs: ptrs[PXK_ATP_x * E + e] */
enum {
  PXK_ATP_Q, PXK_ATP_K, PXK_ATP_V, /* rows q0.. of query head h; rows 0.. of kv head j (qkv layout) */
  PXK_ATP_O,                       /* rows q0.. of head h in o (B*Tq, H*hd): out, or dout in backward */
  PXK_ATP_S, PXK_ATP_P, PXK_ATP_DP, PXK_ATP_DS, /* the entry's tiles */
  PXK_ATP_DQ, PXK_ATP_DK, PXK_ATP_DV,           /* as Q, K, V in dq / dkv */
  PXK_ATP_N
};
/* dkv_acc (may be NULL): the backward's dK, dV go to fp32 rows of 2*KV*hd
 * (key heads, then value heads; B*Tk rows) instead of dkv, for
 * pxk_att_add_kv to add once (half dkv: one rounding, not one per block of
 * query rows and per query head of a group) */
cudaError_t pxk_att_tc_ptrs(cudaStream_t st, int dt, void **ptrs, PxkAttTc a, const void *q, const void *kv,
                            const void *o, void *S, void *P, void *dP, void *dS, void *dq, void *dkv,
                            float *dkv_acc);
/* dkv (rows of the qkv layout, H query and KV kv heads of hd) key and value
 * columns += acc (rows x 2*KV*hd fp32), rounded once */
cudaError_t pxk_att_add_kv(cudaStream_t st, int dt, void *dkv, const float *acc, int64_t rows, int H, int KV,
                           int hd);
/* One warp per row (e, i): s_j = scale * S[e][i][j], masked by position;
 * lse = log sum_j e^s_j (-inf when no key is visible) written to
 * lse[(b*H + h)*Tq + q0 + i] (fp32: attention's att buffer or the block
 * ops' lse); P[e][i][j] = e^(s_j - lse), 0 where masked.
 * S (E tiles) fp32, P (E tiles) of dt. */
cudaError_t pxk_att_tc_softmax_fwd(cudaStream_t st, int dt, PxkAttTc a, const float *S, void *P, float *lse);
/* Backward of one block: p_j = e^(scale S_j - lse) (0 where masked or when
 * lse = -inf), D = the row's D[(b*H + h)*Tq + t] when D is given, else
 * sum_j p_j dP_j (the whole row is in the block); P = p and
 * dS = p (dP - D) scale, both of dt. S, dP fp32 tiles. */
cudaError_t pxk_att_tc_softmax_bwd(cudaStream_t st, int dt, PxkAttTc a, const float *S, const float *dP, void *P,
                                   void *dS, const float *lse, const float *D);
/* D[(b*H + h)*T + t] = sum_d dout[b*T + t][h*hd + d] * out[..] (fp32), one warp per row;
 * dout, out (B*T, H*hd). */
cudaError_t pxk_att_rowdot(cudaStream_t st, int dt, float *D, const void *dout, const void *out, int B, int T,
                           int H, int hd);

/* out = a + b (out may be a or b) */
cudaError_t pxk_add(cudaStream_t st, int dt, void *out, const void *a, const void *b, int64_t n);

/* px_stream_reduce: out (n elements of dt: f32, f64, i32, bf16, f16) = the sum
 * (max: the maximum) over k = 0..nparts-1 of parts.p[k], in that order, one
 * thread per element (so out may be one of the parts); halves formed in fp32
 * and rounded once to nearest even, f64 in double, i32 in int32 (the
 * arithmetic of comm.c px_comm_reduce_parts, element for element). */
#define PXK_REDUCE_MAX 64
typedef struct {
  const void *p[PXK_REDUCE_MAX];
} PxkParts;
cudaError_t pxk_reduce_parts(cudaStream_t st, int dt, void *out, PxkParts parts, int nparts, int max, int64_t n);

/* Cross-entropy over the whole vocabulary, one block per row: losses (N,
 * fp32) and loss64 (N, double) get the per-token losses. dt: the logits'. */
cudaError_t pxk_ce_fwd(cudaStream_t st, int dt, float *losses, double *loss64, const void *logits,
                       const int32_t *tgt, int *bad, int64_t N, int64_t V);
cudaError_t pxk_ce_bwd(cudaStream_t st, int dt, void *dlogits, const void *logits, const int32_t *tgt,
                       double f, int *bad, int64_t N, int64_t V);
/* the vocabulary-parallel pieces: rowmax, gmax (N), stats (2, N) and the
 * losses fp32; dt the logits' (and dlogits') */
cudaError_t pxk_ce_vp_max(cudaStream_t st, int dt, float *rowmax, const void *logits, int64_t N, int64_t V,
                          int64_t n_real);
cudaError_t pxk_ce_vp_stats(cudaStream_t st, int dt, float *stats, const void *logits, const int32_t *tgt,
                            const float *gmax, int64_t v0, int64_t N, int64_t V, int64_t n_real);
cudaError_t pxk_ce_vp_loss(cudaStream_t st, float *losses, double *loss64, const float *gmax, const float *stats,
                           int64_t N);
cudaError_t pxk_ce_vp_bwd(cudaStream_t st, int dt, void *dlogits, const void *logits, const int32_t *tgt,
                          const float *gmax, const float *stats, int64_t v0, int64_t n_real, double f,
                          int64_t N, int64_t V);

/* acc (one f32 / f64 element, acc_dt) += sum(buf[0..n)) / divisor, summed in
 * a fixed order by one block. */
cudaError_t pxk_sum_into(cudaStream_t st, void *acc, int acc_dt, const double *buf, int64_t n,
                         double divisor);
/* part[0..nparts) = sums of squares of slices of x, in double; nparts from
 * pxk_sumsq_parts(n). */
int pxk_sumsq_parts(int64_t n);
cudaError_t pxk_sumsq_partial(cudaStream_t st, int dt, const void *x, int64_t n, double *part, int nparts);
/* flag (f32 / f64 / i32) = 1 when any element of x is NaN or +-Inf */
cudaError_t pxk_check_finite(cudaStream_t st, int dt, void *flag, int flag_dt, const void *x, int64_t n);
/* coef = min(1, max_norm / (sqrt(sumsq) + 1e-6)), or 1 when max_norm <= 0; a NaN sumsq gives
 * NaN (the cpu backend's MIN, torch's clamp), not 1 */
cudaError_t pxk_clip_coef(cudaStream_t st, void *coef, int coef_dt, const void *sumsq, int sumsq_dt,
                          double max_norm);
cudaError_t pxk_scale(cudaStream_t st, int dt, void *x, double alpha, int64_t n);

/* dst (T, C) = sum over j < k of (wt ? wt[t·k+j] : 1) · src[idx[t·k+j]]
 * (idx -1 left out), in double with j ascending, rounded once (the cpu
 * backend's order); an idx outside [-1, N) is reported in bad (PXK_BAD_ROW). */
cudaError_t pxk_rows_gather(cudaStream_t st, int dt, void *dst, const void *src, const int32_t *idx, const void *wt,
                            int64_t T, int k, int64_t C, int64_t N, int *bad);
/* out[r] = sum over c of a[r / k, c] · b[idx[r], c] (0 for idx -1), in double, c ascending */
cudaError_t pxk_rows_dot(cudaStream_t st, int dt, void *out, const void *a, const void *b, const int32_t *idx,
                         int64_t T, int k, int64_t C, int64_t N, int *bad);

/* the MoE router's softmax and top-k (backend.h px_op_router_topk), one
 * thread per row, then per expert for psum; p64 (T·E doubles) scratch */
cudaError_t pxk_router_topk(cudaStream_t st, int dt, void *probs, int32_t *topi, double *topv, double *psum,
                            double *p64, const void *logits, int64_t T, int64_t E, int k);
/* its backward (px_op_router_bwd), one thread per row; fcnt may be NULL; a
 * topi outside [0, E) is reported in bad (PXK_BAD_ROW) */
cudaError_t pxk_router_bwd(cudaStream_t st, int dt, void *dlogits, const void *probs, const int32_t *topi,
                           const void *dgate, const void *fcnt, double daux, int norm_topk, int64_t T, int64_t E,
                           int k, int *bad);

/* AdamW, as the cpu backend's f32 kernel, in fp32 on p, g, m, v of type dt.
 * scale (may be NULL, scale_dt f32/f64) multiplies grad_scale; when skip (may
 * be NULL, skip_dt f32/f64/i32) is nonzero nothing changes. */
typedef struct {
  float lr, b1, b2, a1, a2, c1, c2, eps, wd;
  double grad_scale;
} PxkAdamW;
cudaError_t pxk_adamw(cudaStream_t st, int dt, void *p, const void *g, void *m, void *v, int64_t n,
                      PxkAdamW o, const void *scale, int scale_dt, const void *skip, int skip_dt);

/* The same over many tensors in one launch (apex's multi_tensor_apply): the
 * tensors' addresses and sizes, and the chunks of PXK_CHUNK elements
 * one block each updates, in device memory. p, m, v of type dt, g of type
 * gdt (dt, or bf16 / f16 beside f32); each tensor its own weight decay. */
#define PXK_CHUNK 65536 /* elements per block of the multi-tensor kernels */
typedef struct {
  void *p;
  const void *g;
  void *m, *v;
  int64_t n;
  float wd;
} PxkAdamWTensor;
typedef struct {
  int32_t tensor;
  int64_t start;
} PxkChunk;
/* part[b] = the sum of squares (in double) of chunk b of spans (one dtype). */
typedef struct {
  const void *x;
  int64_t n;
} PxkSpan;
cudaError_t pxk_sumsq_multi(cudaStream_t st, int dt, const PxkSpan *spans, const PxkChunk *chunks, int n_chunks,
                            double *part);
cudaError_t pxk_adamw_multi(cudaStream_t st, int dt, int gdt, const PxkAdamWTensor *tensors,
                            const PxkChunk *chunks, int n_chunks, PxkAdamW o, const void *scale,
                            int scale_dt, const void *skip, int skip_dt);

/* dst (=|+=) src, n elements, any of f32 / f64 / bf16 / f16 on either side:
 * in f32 (f64 when either side is f64), rounded once to dst's type */
cudaError_t pxk_cast(cudaStream_t st, void *dst, int dst_dt, const void *src, int src_dt, int64_t n,
                     int accumulate);

#ifdef __cplusplus
}
#endif
