/* backend_impl.h — internal: the table of function pointers a backend fills
 * (ggml style) and the registry entry that makes it. The public px_op_*()
 * functions in backend.c check shapes and dtypes once, then call these with
 * tensors known to fit, so a backend only writes kernels; the caching pool,
 * the memory counters and poisoning are backend.c's, so a backend only gives
 * raw device memory. Only backend files include this header. */
#pragma once
#include "backend.h"

G_BEGIN_DECLS

typedef struct {
  const char *name;
  void (*free)(PxBackend *be);
  /* memory: raw device blocks (uninitialised, aligned to at least 64
   * bytes) for the pool of backend.c; raw_free of NULL is a no-op */
  gboolean (*raw_alloc)(PxBackend *be, gsize bytes, void **out, GError **error);
  void (*raw_free)(PxBackend *be, void *p);
  /* px_backend_trim, after the cached blocks went through raw_free: give
   * back to the device what the backend's own allocator still holds unused
   * (cuda: its memory pool, cudaMemPoolTrimTo); returns the bytes given
   * back. NULL: raw_free gives memory back itself. */
  gsize (*raw_trim)(PxBackend *be);
  gboolean (*upload)(PxBackend *be, void *dst, const void *src, gsize bytes, GError **error);
  gboolean (*download)(PxBackend *be, void *dst, const void *src, gsize bytes, GError **error);
  /* bytes of p set to value (0 zeroes, 0xFF poisons) */
  gboolean (*memset)(PxBackend *be, void *p, int value, gsize bytes, GError **error);
  gboolean (*synchronize)(PxBackend *be, GError **error);
  /* device -> device copy of bytes (NULL: the backend's memory is host memory, memmove) */
  gboolean (*copy)(PxBackend *be, void *dst, const void *src, gsize bytes, GError **error);
  /* Host buffers (ggml's get_host_buffer_type): host memory this device
   * copies from and to asynchronously, for the host backend made over it
   * (px_backend_new_host). cuda: cudaHostAlloc / cudaFreeHost, pinned
   * (host_pinned TRUE); cpu: ordinary aligned host memory. NULL: the host
   * backend keeps its own pageable memory. A failed host_alloc is not fatal:
   * backend.c falls back to pageable memory with one warning line. */
  gboolean (*host_alloc)(PxBackend *be, gsize bytes, void **out, GError **error);
  void (*host_free)(PxBackend *be, void *p);
  gboolean host_pinned;
  /* Streams and events (backend.h). NULL: the host implementation of
   * exec/stream.c (inline compute stream, worker-thread streams). A device
   * backend (CUDA) gives its own table. */
  const struct PxStreamOps *streams;

  /* ops: same arguments as the public functions, already validated */
  gboolean (*linear_fwd)(PxBackend *, PxTensor *y, const PxTensor *x, const PxTensor *w,
                         const PxTensor *b, GError **);
  gboolean (*linear_bwd)(PxBackend *, PxTensor *dx, PxTensor *dw, PxTensor *db, const PxTensor *dy,
                         const PxTensor *x, const PxTensor *w, GError **);
  gboolean (*embedding_fwd)(PxBackend *, PxTensor *out, const PxTensor *tokens, const PxTensor *wte,
                            const PxTensor *wpe, int B, int T, GError **);
  gboolean (*embedding_bwd)(PxBackend *, PxTensor *dwte, PxTensor *dwpe, const PxTensor *dout,
                            const PxTensor *tokens, int B, int T, GError **);
  gboolean (*layernorm_fwd)(PxBackend *, PxTensor *out, PxTensor *mean, PxTensor *rstd,
                            const PxTensor *x, const PxTensor *w, const PxTensor *b, double eps,
                            GError **);
  gboolean (*layernorm_bwd)(PxBackend *, PxTensor *dx, PxTensor *dw, PxTensor *db,
                            const PxTensor *dout, const PxTensor *x, const PxTensor *w,
                            const PxTensor *mean, const PxTensor *rstd, GError **);
  gboolean (*rmsnorm_fwd)(PxBackend *, PxTensor *out, PxTensor *rstd, const PxTensor *x,
                          const PxTensor *w, double eps, GError **);
  gboolean (*rmsnorm_bwd)(PxBackend *, PxTensor *dx, PxTensor *dw, const PxTensor *dout,
                          const PxTensor *x, const PxTensor *w, const PxTensor *rstd, GError **);
  gboolean (*gelu_fwd)(PxBackend *, PxTensor *out, const PxTensor *x, GError **);
  gboolean (*gelu_bwd)(PxBackend *, PxTensor *dx, const PxTensor *dout, const PxTensor *x, GError **);
  gboolean (*swiglu_fwd)(PxBackend *, PxTensor *out, const PxTensor *gate, const PxTensor *up,
                         GError **);
  gboolean (*swiglu_bwd)(PxBackend *, PxTensor *dgate, PxTensor *dup, const PxTensor *dout,
                         const PxTensor *gate, const PxTensor *up, GError **);
  gboolean (*rope_fwd)(PxBackend *, PxTensor *out, const PxTensor *in, const PxAttnShape *s,
                       double theta, GError **);
  gboolean (*rope_bwd)(PxBackend *, PxTensor *din, const PxTensor *dout, const PxAttnShape *s,
                       double theta, GError **);
  gboolean (*attention_fwd)(PxBackend *, PxTensor *out, PxTensor *att, const PxTensor *qkv,
                            const PxAttnShape *s, GError **);
  gboolean (*attention_bwd)(PxBackend *, PxTensor *dqkv, const PxTensor *dout, const PxTensor *qkv,
                            const PxTensor *att, const PxAttnShape *s, GError **);
  gboolean (*attn_block_fwd)(PxBackend *, PxTensor *out, PxTensor *lse, const PxTensor *q,
                             const PxTensor *kv, const PxAttnShape *qs, const PxAttnShape *ks, GError **);
  gboolean (*attn_merge)(PxBackend *, PxTensor *out, PxTensor *lse, const PxTensor *out_b,
                         const PxTensor *lse_b, const PxAttnShape *s, GError **);
  gboolean (*attn_block_bwd)(PxBackend *, PxTensor *dq, PxTensor *dkv, const PxTensor *dout,
                             const PxTensor *q, const PxTensor *kv, const PxTensor *out,
                             const PxTensor *lse, const PxAttnShape *qs, const PxAttnShape *ks, GError **);
  gboolean (*residual_fwd)(PxBackend *, PxTensor *out, const PxTensor *a, const PxTensor *b,
                           GError **);
  gboolean (*residual_bwd)(PxBackend *, PxTensor *da, PxTensor *db, const PxTensor *dout, GError **);
  gboolean (*cross_entropy_fwd)(PxBackend *, PxTensor *losses, PxTensor *loss_acc,
                                const PxTensor *logits, const PxTensor *targets, GError **);
  gboolean (*cross_entropy_bwd)(PxBackend *, PxTensor *dlogits, const PxTensor *logits,
                                const PxTensor *targets, double dloss, GError **);
  gboolean (*adamw)(PxBackend *, PxTensor *param, const PxTensor *grad, PxTensor *m, PxTensor *v,
                    const PxAdamW *opt, const PxTensor *scale_t, const PxTensor *skip_if, GError **);
  /* optional (backend.h px_op_adamw_multi): n ≥ 1 checked items whose params
   * share one dtype and whose grads share one dtype (a half grad beside f32
   * params also without half_params); NULL: backend.c calls adamw per item */
  gboolean (*adamw_multi)(PxBackend *, const PxAdamWItem *items, int n, const PxAdamW *opt,
                          const PxTensor *scale_t, const PxTensor *skip_if, GError **);
  gboolean (*embedding_vp_fwd)(PxBackend *, PxTensor *out, const PxTensor *tokens,
                               const PxTensor *wte, const PxTensor *wpe, gint64 v0, gint64 n_real,
                               int B, int T, GError **);
  gboolean (*embedding_vp_bwd)(PxBackend *, PxTensor *dwte, PxTensor *dwpe, const PxTensor *dout,
                               const PxTensor *tokens, gint64 v0, gint64 n_real, int B, int T,
                               GError **);
  gboolean (*ce_vp_max)(PxBackend *, PxTensor *rowmax, const PxTensor *logits, gint64 n_real,
                        GError **);
  gboolean (*ce_vp_stats)(PxBackend *, PxTensor *stats, const PxTensor *logits,
                          const PxTensor *targets, const PxTensor *gmax, gint64 v0, gint64 n_real,
                          GError **);
  gboolean (*ce_vp_loss)(PxBackend *, PxTensor *losses, PxTensor *loss_acc, const PxTensor *gmax,
                         const PxTensor *stats, GError **);
  gboolean (*ce_vp_bwd)(PxBackend *, PxTensor *dlogits, const PxTensor *logits,
                        const PxTensor *targets, const PxTensor *gmax, const PxTensor *stats,
                        gint64 v0, gint64 n_real, double dloss, GError **);
  gboolean (*sum_squares_acc)(PxBackend *, PxTensor *acc, const PxTensor *t, GError **);
  /* optional (px_op_sum_squares_acc_multi): n ≥ 1 checked tensors of one dtype (a half one also without
   * half_params); NULL: backend.c calls sum_squares_acc per tensor */
  gboolean (*sum_squares_multi)(PxBackend *, PxTensor *acc, const PxTensor *const *ts, int n, GError **);
  gboolean (*check_finite)(PxBackend *, PxTensor *flag, const PxTensor *t, GError **);
  gboolean (*clip_coef)(PxBackend *, PxTensor *coef, const PxTensor *sumsq, double max_norm, GError **);
  gboolean (*scale)(PxBackend *, PxTensor *t, double alpha, GError **);
  /* backend.h px_op_rows_gather / px_op_rows_dot; the index range is the backend's to check */
  gboolean (*rows_gather)(PxBackend *, PxTensor *dst, const PxTensor *src, const PxTensor *idx,
                          const PxTensor *wt, int k, GError **);
  gboolean (*rows_dot)(PxBackend *, PxTensor *out, const PxTensor *a, const PxTensor *b, const PxTensor *idx,
                       int k, GError **);
  /* backend.h px_op_router_topk / px_op_router_bwd; topi's range is the backend's to check */
  gboolean (*router_topk)(PxBackend *, PxTensor *probs, PxTensor *topi, PxTensor *topv, PxTensor *psum,
                          const PxTensor *logits, int k, GError **);
  gboolean (*router_bwd)(PxBackend *, PxTensor *dlogits, const PxTensor *probs, const PxTensor *topi,
                         const PxTensor *dgate, const PxTensor *fcnt, double daux, gboolean norm_topk, int k,
                         GError **);
  /* mixed precision (backend.h px_op_cast): dst (=|+=) src across float
   * dtypes; NULL: the backend cannot hold bf16/fp16 parameters */
  gboolean (*cast)(PxBackend *, PxTensor *dst, const PxTensor *src, gboolean accumulate, GError **);
  /* TRUE: the parameter ops above take bf16/fp16 weights and gradient
   * outputs beside f32 activations (and adamw a half grad, sum_squares_acc
   * and check_finite a half tensor) natively; FALSE: backend.c promotes them
   * through f32 copies made with cast */
  gboolean half_params;
  /* TRUE: every op takes bf16/fp16 activations natively (backend.h "Half
   * activations": all the op's activations and parameters of one half dtype,
   * its statistics f32); FALSE: backend.c runs such an op on f32 copies */
  gboolean half_acts;
} PxBackendOps;

struct _PxBackend {
  const PxBackendOps *ops;
  PxStream *compute;    /* the compute stream, made with the backend */
  gint64 t0;            /* the backend's clock origin (monotonic us) */
  int device;           /* device index; also named in error messages */
  GMutex lock;          /* guards mem and the pool */
  PxMemStats mem;
  /* the caching pool (backend.c): size class -> GSList of free blocks */
  GHashTable *pool;
  gboolean pool_off;    /* every free goes straight back (set under AddressSanitizer) */
  gint64 live_blocks, live_blocks_peak; /* bytes of blocks held by tensors */
  gboolean poison;      /* PX_POISON=1: fill non-zeroed tensors with 0xFF */
  /* A host backend (px_backend_new_host): its blocks are host buffers of
   * host_of (counted there in mem.host_*), those in `pageable` its own after
   * a failed host_alloc (warned once: host_warned) */
  PxBackend *host_of;
  GHashTable *pageable;
  gboolean host_warned;
  void *impl;           /* the backend's own state */
};

/* The stream / event table: a stream or event is this header plus the
 * implementation's state. */
struct _PxStream {
  const struct PxStreamOps *ops;
  PxBackend *be;
  char *name;
  gboolean is_inline;
  void *impl;
};

struct _PxDevEvent {
  const struct PxStreamOps *ops;
  PxBackend *be;
  void *impl;
};

typedef struct PxStreamOps {
  gboolean (*stream_init)(PxStream *s, gboolean compute, GError **error);
  void (*stream_free)(PxStream *s);
  /* The device's own handle of s (cudaStream_t for cuda), for libraries that
   * queue work on it themselves (NCCL: exec/nccl/comm_nccl.c). NULL: none
   * (the host streams). */
  void *(*native)(PxStream *s);
  gboolean (*launch_host)(PxStream *s, PxHostFn fn, gpointer data, GDestroyNotify free_data,
                          GError **error);
  gboolean (*synchronize)(PxStream *s, GError **error);
  gboolean (*event_init)(PxDevEvent *e, GError **error);
  void (*event_free)(PxDevEvent *e);
  gboolean (*record)(PxDevEvent *e, PxStream *s, GError **error);
  gboolean (*wait)(PxStream *s, PxDevEvent *e, GError **error);
  gboolean (*event_synchronize)(PxDevEvent *e, GError **error);
  gboolean (*event_query)(PxDevEvent *e);
  /* seconds on the backend's clock at which e completed */
  gboolean (*event_time)(PxDevEvent *e, double *seconds, GError **error);
  /* An asynchronous copy of bytes on s (dir: 0 upload, 1 download, 2 device
   * to device). NULL: a host function calling the backend's upload /
   * download / copy (the host streams). A device backend gives its own, as
   * its host functions may not call the device API (cudaLaunchHostFunc). */
  gboolean (*memcpy_async)(PxStream *s, void *dst, const void *src, gsize bytes, int dir,
                           GError **error);
  /* px_stream_reduce on s, arguments checked (n in 1..PX_STREAM_REDUCE_MAX,
   * parts copied by the caller if kept). NULL: a host function (the host
   * streams, exec/stream.c). */
  gboolean (*reduce_async)(PxStream *s, void *out, const void *const *parts, int n, gsize count, PxDType dt,
                           gboolean max, GError **error);
} PxStreamOps;

/* The host implementation (exec/stream.c). */
extern const PxStreamOps px_host_stream_ops;

/* The compute stream of a new backend (px_backend_alloc_base calls it). */
PxStream *px_backend_make_compute_stream(PxBackend *be, GError **error);

/* Called by a backend's constructor. */
PxBackend *px_backend_alloc_base(const PxBackendOps *ops, int device, void *impl);

/* ---- the registry (backend_reg.c, as ggml-backend-reg.cpp): one line per
 * backend compiled in. A backend's files export only its constructor. ---- */
typedef struct {
  const char *name;
  PxBackend *(*create)(int device, GError **error);
} PxBackendReg;

/* The registered backends, *n of them. */
const PxBackendReg *px_backend_registry(gsize *n);

PxBackend *px_backend_cpu_create(int device, GError **error);
#ifdef PX_HAVE_CUDA
PxBackend *px_backend_cuda_create(int device, GError **error);
#endif

G_END_DECLS
