/* ref.h — ref.c's calls: the cpu backend's kernels in double (see ref.c). */
#pragma once
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
void ref_embedding_fwd(double *out, const int32_t *tok, const double *wte, const double *wpe, int64_t v0,
                       int64_t n_real, int B, int T, int64_t C);
void ref_embedding_bwd(double *dwte, double *dwpe, const double *dout, const int32_t *tok, int64_t v0,
                       int64_t n_real, int B, int T, int64_t C);
void ref_linear_db(double *db, const double *dy, int64_t N, int64_t out);
void ref_layernorm_fwd(double *out, double *mean, double *rstd, const double *x, const double *w, const double *b,
                       double eps, int64_t N, int64_t C);
void ref_layernorm_bwd(double *dx, double *dw, double *db, const double *dout, const double *x, const double *w,
                       const double *mean, const double *rstd, int64_t N, int64_t C);
void ref_rmsnorm_fwd(double *out, double *rstd, const double *x, const double *w, double eps, int64_t N, int64_t C);
void ref_rmsnorm_bwd(double *dx, double *dw, const double *dout, const double *x, const double *w, const double *rstd,
                     int64_t N, int64_t C);
void ref_gelu_fwd(double *out, const double *x, int64_t n);
void ref_gelu_bwd(double *dx, const double *dout, const double *x, int64_t n);
void ref_swiglu_fwd(double *out, const double *g, const double *u, int64_t n);
void ref_swiglu_bwd(double *dg, double *du, const double *dout, const double *g, const double *u, int64_t n);
void ref_add(double *out, const double *a, const double *b, int64_t n);
void ref_rope(double *dst, const double *src, int B, int T, int H, int KV, int hd, int split, int s0, int s1,
              double theta, int dir, int accumulate);
void ref_attention_fwd(double *out, double *att, const double *qkv, int B, int T, int H, int KV, int hd);
void ref_attention_bwd(double *dqkv, const double *dout, const double *qkv, const double *att, int B, int T, int H,
                       int KV, int hd);
void ref_attn_block_fwd(double *out, double *lse, const double *q, const double *kv, int B, int Tq, int Tk, int H,
                        int KV, int hd, const int qp[3], const int kp[3]);
void ref_attn_block_bwd(double *dq, double *dkv, const double *dout, const double *q, const double *kv,
                        const double *out, const double *lse, int B, int Tq, int Tk, int H, int KV, int hd,
                        const int qp[3], const int kp[3]);
void ref_attn_merge(double *out, double *lse, const double *out_b, const double *lse_b, int B, int T, int H, int hd);
void ref_ce_fwd(double *losses, const double *logits, const int32_t *tgt, int64_t N, int64_t V);
void ref_ce_bwd(double *dlogits, const double *logits, const int32_t *tgt, double dloss, int64_t N, int64_t V);
void ref_ce_vp_max(double *rowmax, const double *logits, int64_t N, int64_t V, int64_t n_real);
void ref_ce_vp_stats(double *stats, const double *logits, const int32_t *tgt, const double *gmax, int64_t v0,
                     int64_t N, int64_t V, int64_t n_real);
void ref_ce_vp_loss(double *losses, const double *gmax, const double *stats, int64_t N);
void ref_ce_vp_bwd(double *dlogits, const double *logits, const int32_t *tgt, const double *gmax,
                   const double *stats, int64_t v0, int64_t n_real, double dloss, int64_t N, int64_t V);
int ref_all_finite(const double *x, int64_t n);
void ref_adamw(double *p, const double *g, double *m, double *v, double lr, double b1, double b2, double eps,
               double wd, int t, double grad_scale, int64_t n);
double ref_sum_squares(const double *x, int64_t n);
void ref_scale(double *x, double alpha, int64_t n);
void ref_rows_gather(double *dst, const double *src, const int32_t *idx, const double *wt, int64_t T, int k,
                     int64_t C);
void ref_rows_dot(double *out, const double *a, const double *b, const int32_t *idx, int64_t T, int k, int64_t C);
void ref_router_topk(double *probs, int32_t *topi, double *topv, double *psum, const double *logits, double *p64,
                     int64_t T, int64_t E, int k);
void ref_router_bwd(double *dlogits, const double *probs, const int32_t *topi, const double *dgate,
                    const double *fcnt, double daux, int norm_topk, int64_t T, int64_t E, int k);
#ifdef __cplusplus
}
#endif
