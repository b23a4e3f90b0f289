/* backend.h — device backends (cpu now, cuda later) behind one interface.
 *
 * A backend is made by name through a registry (px_backend_new("cpu", 0)):
 * concrete constructors are not public, so nothing outside the backend files
 * names one (ggml's backend registry). docs/backend.md says how a new backend
 * plugs in.
 *
 * A PxBackend owns device memory: every PxTensor is allocated through it,
 * counted in one of five categories (weights, gradients, optimizer states,
 * activations, buffers) with its peak, so that the measured memory can be
 * laid beside the planner's prediction (common/memory). Blocks come from a
 * caching pool kept per backend (backend.c): a freed tensor's block goes back
 * to the pool by size class and serves the next tensor of that class, so a
 * training step reuses the previous step's memory; px_backend_trim() gives
 * the cached blocks back to the device. Memory is NOT zeroed: px_tensor_new()
 * gives uninitialised memory, px_tensor_new_zeroed() zeroes it (for buffers
 * that ops accumulate into). With PX_POISON=1 in the environment every
 * non-zeroed tensor starts filled with 0xFF bytes (NaN in f32 / f64, -1 in
 * i32), so a test proves that nothing reads memory it did not write.
 *
 * Ops come in forward/backward pairs, each for fp32 and fp64 (the tensors'
 * dtype picks), and for bf16 / fp16 (mixed precision: "Half weights" and
 * "Half activations" at the end of this file). Conventions, shared with the model that is built on them:
 *  - activations are row-major (N, C) with N = B*T rows;
 *  - linear weights are stored (out, in), as in common/model.h: y = x W^T + b;
 *  - every forward op overwrites its outputs (they need no zeroing);
 *  - every backward op ADDS into its gradient outputs (beta = 1), for weights
 *    and activations alike (llm.c's convention): callers zero gradient
 *    buffers once, and micro-batches accumulate. A NULL gradient output is
 *    skipped;
 *  - scalars (loss, sum of squares, non-finite flag) stay on the device: the
 *    ops accumulate into one-element tensors that the caller downloads once;
 *  - shapes and dtypes are checked here, before any kernel runs; a mismatch is
 *    a PX_BACKEND_ERROR_SHAPE naming the op and the tensor.
 * Ops are synchronous on the cpu backend; on an asynchronous backend they are
 * queued in order and px_backend_synchronize() waits for them.
 */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

#define PX_BACKEND_ERROR (px_backend_error_quark())
GQuark px_backend_error_quark(void);
typedef enum {
  PX_BACKEND_ERROR_UNSUPPORTED, /* unknown backend, or not compiled in */
  PX_BACKEND_ERROR_ALLOC,       /* the device is out of memory */
  PX_BACKEND_ERROR_SHAPE,       /* tensor shape or dtype does not fit the op */
  PX_BACKEND_ERROR_DEVICE,      /* a device / library call failed (see PX_CHECK_GEN) */
} PxBackendError;

typedef enum {
  PX_DTYPE_F32,
  PX_DTYPE_F64,
  PX_DTYPE_I32,  /* token ids and targets */
  PX_DTYPE_BF16, /* bfloat16 (exec/half.h): parameters and activations of mixed precision */
  PX_DTYPE_F16,  /* IEEE binary16 (exec/half.h), with loss scaling */
} PxDType;

typedef enum {
  PX_MEM_WEIGHTS,
  PX_MEM_GRADS,
  PX_MEM_OPTIMIZER,
  PX_MEM_ACTIVATIONS,
  PX_MEM_BUFFERS,
  PX_MEM_N_CATEGORIES,
} PxMemCategory;

typedef struct _PxBackend PxBackend;

#define PX_TENSOR_MAX_DIMS 4

typedef struct {
  void *data;            /* device pointer (host memory on the cpu backend) */
  PxDType dtype;
  int ndim;              /* 1..4 */
  gint64 shape[PX_TENSOR_MAX_DIMS];
  gint64 numel;
  gsize bytes;
  PxMemCategory category;
  char *name;
  PxBackend *backend;
  gboolean owns_data;    /* FALSE for views */
} PxTensor;

/* Bytes in memory per category (tensor bytes as asked for); peak is the
 * high-water mark since creation or the last px_backend_mem_reset_peak().
 * total_peak is the peak of the sum (not the sum of peaks). The pool:
 * reserved is what the backend holds from the device (live blocks, rounded
 * up to their size class, plus cached ones), cached the free blocks in it. */
typedef struct {
  gint64 current[PX_MEM_N_CATEGORIES];
  gint64 peak[PX_MEM_N_CATEGORIES];
  gint64 total_current;
  gint64 total_peak;
  gint64 reserved;
  gint64 reserved_peak;
  gint64 cached;
  /* Host buffers, a category of their own: bytes of the tensors that the
   * host backend made over this backend (px_backend_new_host) holds in its
   * host memory, pinned on cuda. Not device memory, so not in total_*;
   * host_pageable: some of them fell back to pageable memory. */
  gint64 host_current;
  gint64 host_peak;
  gboolean host_pageable;
} PxMemStats;

/* A backend from the registry by name: "cpu" (always), "cuda" (when built
 * with PX_CUDA). device: the device index (ignored by cpu). */
PxBackend *px_backend_new(const char *name, int device, GError **error);
/* The registered backends' names, NULL-terminated, in registration order
 * (static; for --help). */
const char *const *px_backend_list(void);
/* The host backend of a device backend: a cpu backend (its ops run on the
 * host) whose memory comes from the device's host buffers (backend_impl.h
 * host_alloc: pinned on cuda, so px_tensor_upload_async / _download_async
 * between its tensors and the device's are truly asynchronous; ordinary
 * aligned memory on cpu), its tensors' bytes also counted in the device's
 * mem.host_current. Where pinned memory cannot be had, pageable memory with
 * one warning line on stderr. Free it before the device. */
PxBackend *px_backend_new_host(PxBackend *device, GError **error);
/* TRUE when every block of host (a host backend) so far is pinned memory. */
gboolean px_backend_host_pinned(PxBackend *host);
void px_backend_free(PxBackend *be);
const char *px_backend_name(const PxBackend *be);
/* The device index the backend runs on (cuda: the one it chose, modulo the devices present). */
int px_backend_device(const PxBackend *be);
gboolean px_backend_synchronize(PxBackend *be, GError **error);
/* Seconds on the backend's clock (the clock of px_event_time). */
double px_backend_clock(PxBackend *be);
void px_backend_mem_stats(PxBackend *be, PxMemStats *out);
void px_backend_mem_reset_peak(PxBackend *be);
/* Give the pool's cached blocks back to the device, and what the backend's
 * own allocator keeps of them (cuda: its memory pool, trimmed); returns the
 * cached bytes freed. */
gsize px_backend_trim(PxBackend *be);

gsize px_dtype_size(PxDType dtype);
const char *px_dtype_name(PxDType dtype);
const char *px_mem_category_name(PxMemCategory c);

/* A tensor of uninitialised memory (0xFF bytes under PX_POISON=1). shape has
 * ndim entries, each ≥ 1. */
PxTensor *px_tensor_new(PxBackend *be, const char *name, PxDType dtype, PxMemCategory category,
                        int ndim, const gint64 *shape, GError **error);
/* The same, zero-filled: for what an op accumulates into (gradients, Adam's
 * moments, the outputs of backward ops). */
PxTensor *px_tensor_new_zeroed(PxBackend *be, const char *name, PxDType dtype,
                               PxMemCategory category, int ndim, const gint64 *shape,
                               GError **error);
/* A view of numel elements of t from element offset, reshaped (not counted as memory). */
PxTensor *px_tensor_view(PxTensor *t, const char *name, gint64 offset, int ndim,
                         const gint64 *shape, GError **error);
/* A view of t's memory as another dtype: numel(shape) elements of dtype from
 * byte offset (a multiple of dtype's size) within t's bytes (not counted as
 * memory). Several small outputs packed in one tensor come down in one
 * download (the MoE router's). */
PxTensor *px_tensor_view_as(PxTensor *t, const char *name, PxDType dtype, gsize byte_offset, int ndim,
                            const gint64 *shape, GError **error);
void px_tensor_free(PxTensor *t);
/* Count t's bytes under another category from now on (a backward's working
 * tensor that a zero-bubble weight pass holds on as an activation). */
void px_tensor_set_category(PxTensor *t, PxMemCategory category);
/* Copy t->bytes between host memory (same dtype) and the tensor. */
gboolean px_tensor_upload(PxTensor *t, const void *host, GError **error);
gboolean px_tensor_download(const PxTensor *t, void *host, GError **error);
gboolean px_tensor_zero(PxTensor *t, GError **error);
/* bf16 or f16 */
gboolean px_dtype_is_half(PxDType dtype);
/* Upload / download converting from / to double, whatever the tensor's float
 * dtype (f32, f64, bf16, f16; rounding to nearest even on upload). */
gboolean px_tensor_upload_f64(PxTensor *t, const double *host, GError **error);
gboolean px_tensor_download_f64(const PxTensor *t, double *host, GError **error);

/* ---- streams and events (ggml / CUDA style) ----
 *
 * Work is queued on streams and ordered by events. Every px_op_* runs on the
 * backend's compute stream; a rank makes further streams for communication
 * (exec/comm.h queues collectives and point-to-point on them) and orders them
 * against compute with px_event_record / px_stream_wait_event, never with a
 * host synchronisation inside the step.
 *
 * Backends that leave the stream hooks of their table empty (the cpu backend)
 * get the host implementation of exec/stream.c: the compute stream is the
 * calling thread (an op has finished when its call returns, an event recorded
 * on it is complete at once), and every other stream is a worker thread that
 * runs its queue in order. A CUDA backend maps the same calls onto
 * cudaStream_t / cudaEvent_t / cudaLaunchHostFunc.
 *
 * Errors: a queued item that fails puts its stream into the failed state: the
 * items after it are skipped, events recorded after it complete (so no waiter
 * hangs) carrying the error, and px_stream_synchronize / px_event_synchronize
 * return it. */
typedef struct _PxStream PxStream;
typedef struct _PxDevEvent PxDevEvent;

/* The stream every op of the backend is queued on (owned by the backend). */
PxStream *px_backend_compute_stream(PxBackend *be);
/* A new stream of the backend (e.g. "comm"); name is used in messages. */
PxStream *px_stream_new(PxBackend *be, const char *name, GError **error);
/* Waits for the stream's queue to drain, then frees it. */
void px_stream_free(PxStream *s);
const char *px_stream_label(const PxStream *s);
/* The backend the stream was made with (whose memory its copies move, whose events it records). */
PxBackend *px_stream_backend(const PxStream *s);
/* TRUE when the stream runs work on the calling thread (nothing is ever pending). */
gboolean px_stream_is_inline(const PxStream *s);
/* The device's handle of the stream (a cudaStream_t on cuda), or NULL where
 * the backend has none (cpu): what NCCL queues its kernels on. */
void *px_stream_native(PxStream *s);
/* Block until everything queued so far has run; the first error of the stream. */
gboolean px_stream_synchronize(PxStream *s, GError **error);
/* bytes from src to dst queued on s: dir 0 host to the stream's backend, 1
 * the backend to host, 2 within the backend (px_tensor_upload_async's copy
 * without a tensor; host memory is pageable or pinned, as the caller has it). */
gboolean px_stream_memcpy(PxStream *s, void *dst, const void *src, gsize bytes, int dir, GError **error);
/* Queued on s: out (count elements of dt) = the sum (max: the maximum) over
 * k = 0..n-1 of parts[k] (count elements each, memory of s's backend), in
 * that order, so that the result does not depend on who computes it; bf16 /
 * f16 elements are formed in fp32 and rounded once to nearest even (the
 * local communicator's reduction, comm_impl.h px_comm_reduce_parts, whose
 * arithmetic the host streams run). dt: f32, f64, i32, bf16, f16. out may be
 * any one of the parts (each element is read before it is written); the
 * array parts is copied. 1 ≤ n ≤ PX_STREAM_REDUCE_MAX (the cuda kernel takes
 * the pointers by value). */
#define PX_STREAM_REDUCE_MAX 64
gboolean px_stream_reduce(PxStream *s, void *out, const void *const *parts, int n, gsize count, PxDType dt,
                          gboolean max, GError **error);

/* A host function queued on a stream (cudaLaunchHostFunc): runs after all work
 * queued before it and before all work queued after it. Its error fails the
 * stream. free_data (may be NULL) is called on data once it has run or been
 * skipped. */
typedef gboolean (*PxHostFn)(gpointer data, GError **error);
gboolean px_stream_launch_host(PxStream *s, PxHostFn fn, gpointer data, GDestroyNotify free_data,
                               GError **error);

PxDevEvent *px_event_new(PxBackend *be, GError **error);
void px_event_free(PxDevEvent *e);
/* Capture the stream's position: the event completes once all work queued on s
 * before it has run. Recording again re-arms the event. */
gboolean px_event_record(PxDevEvent *e, PxStream *s, GError **error);
/* Work queued on s after this call waits for e (the host does not block). */
gboolean px_stream_wait_event(PxStream *s, PxDevEvent *e, GError **error);
/* Block the host until e completes; FALSE with the stream's error if the work
 * before it failed. An event never recorded is complete. */
gboolean px_event_synchronize(PxDevEvent *e, GError **error);
/* TRUE when e has completed (without blocking). */
gboolean px_event_query(PxDevEvent *e);
/* Seconds between two completed events (cudaEventElapsedTime), and the time
 * of one event on the backend's clock (seconds since the backend was made). */
gboolean px_event_elapsed(PxDevEvent *start, PxDevEvent *end, double *seconds, GError **error);
gboolean px_event_time(PxDevEvent *e, double *seconds, GError **error);

/* Asynchronous copies on a stream: host memory must stay valid (and, for a
 * download, unread) until the stream has passed the copy. */
gboolean px_tensor_upload_async(PxTensor *t, const void *host, PxStream *s, GError **error);
gboolean px_tensor_download_async(const PxTensor *t, void *host, PxStream *s, GError **error);
/* dst = src, device to device (same dtype and numel; views allowed). */
gboolean px_tensor_copy_async(PxTensor *dst, const PxTensor *src, PxStream *s, GError **error);
/* The same on the compute stream, returning once the copy is done. */
gboolean px_tensor_copy(PxTensor *dst, const PxTensor *src, GError **error);

/* ---- ops. N rows, C/in/out columns. Shapes in trailing comments. ---- */

/* y = x W^T + b.  y (N,out), x (N,in), w (out,in), b (out) or NULL. */
gboolean px_op_linear_fwd(PxBackend *be, PxTensor *y, const PxTensor *x, const PxTensor *w,
                          const PxTensor *b, GError **error);
/* dx += dy W, dw += dy^T x, db += sum_rows dy. Any of dx, dw, db may be NULL. */
gboolean px_op_linear_bwd(PxBackend *be, PxTensor *dx, PxTensor *dw, PxTensor *db,
                          const PxTensor *dy, const PxTensor *x, const PxTensor *w, GError **error);

/* out[b*T+t] = wte[tok[b*T+t]] + wpe[t].  out (B*T,C), tokens (B*T) i32, wte (V,C),
 * wpe (maxT,C) with maxT ≥ T, or NULL (rotary models). A token outside [0,V) is an error
 * on the cpu backend. */
gboolean px_op_embedding_fwd(PxBackend *be, PxTensor *out, const PxTensor *tokens,
                             const PxTensor *wte, const PxTensor *wpe, int B, int T, GError **error);
gboolean px_op_embedding_bwd(PxBackend *be, PxTensor *dwte, PxTensor *dwpe, const PxTensor *dout,
                             const PxTensor *tokens, int B, int T, GError **error);

/* LayerNorm over the last dim: out = (x - mean) * rstd * w + b, rstd = 1/sqrt(var + eps)
 * (biased variance). out, x (N,C); w, b (C) (b may be NULL); mean, rstd (N) saved for bwd. */
gboolean px_op_layernorm_fwd(PxBackend *be, PxTensor *out, PxTensor *mean, PxTensor *rstd,
                             const PxTensor *x, const PxTensor *w, const PxTensor *b, double eps,
                             GError **error);
gboolean px_op_layernorm_bwd(PxBackend *be, PxTensor *dx, PxTensor *dw, PxTensor *db,
                             const PxTensor *dout, const PxTensor *x, const PxTensor *w,
                             const PxTensor *mean, const PxTensor *rstd, GError **error);
/* RMSNorm: out = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps). rstd (N) saved. */
gboolean px_op_rmsnorm_fwd(PxBackend *be, PxTensor *out, PxTensor *rstd, const PxTensor *x,
                           const PxTensor *w, double eps, GError **error);
gboolean px_op_rmsnorm_bwd(PxBackend *be, PxTensor *dx, PxTensor *dw, const PxTensor *dout,
                           const PxTensor *x, const PxTensor *w, const PxTensor *rstd,
                           GError **error);

/* GELU, tanh approximation (GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
gboolean px_op_gelu_fwd(PxBackend *be, PxTensor *out, const PxTensor *x, GError **error);
gboolean px_op_gelu_bwd(PxBackend *be, PxTensor *dx, const PxTensor *dout, const PxTensor *x,
                        GError **error);
/* SwiGLU: out = silu(gate) * up, silu(g) = g / (1 + e^-g).  out, gate, up (N,F). */
gboolean px_op_swiglu_fwd(PxBackend *be, PxTensor *out, const PxTensor *gate, const PxTensor *up,
                          GError **error);
gboolean px_op_swiglu_bwd(PxBackend *be, PxTensor *dgate, PxTensor *dup, const PxTensor *dout,
                          const PxTensor *gate, const PxTensor *up, GError **error);

/* Attention geometry. qkv rows (B*T, (heads + 2*kv_heads) * head_dim) hold, in
 * order, the query heads, the key heads and the value heads (GPT-2's c_attn
 * layout when kv_heads == heads). Query head h reads kv head h / (heads/kv_heads). */
typedef struct {
  int B, T, heads, kv_heads, head_dim;
  /* Global positions of the T tokens of each sequence (context parallelism:
   * a rank holds two chunks of the sequence): token t sits at
   * t < pos_split ? pos_start0 + t : pos_start1 + (t - pos_split).
   * pos_split == 0 (the default): token t at position t. Rotary embedding
   * and the block attention below use these positions. */
  int pos_split, pos_start0, pos_start1;
} PxAttnShape;

/* The global position of token t of a sequence (see PxAttnShape). */
static inline int px_attn_pos(const PxAttnShape *s, int t) {
  if (s->pos_split <= 0) return t;
  return t < s->pos_split ? s->pos_start0 + t : s->pos_start1 + (t - s->pos_split);
}

/* Rotary embedding (GPT-NeoX / Llama "rotate half" form) on the q and k parts
 * of qkv, in place allowed (out == in); v is copied. Position t of each
 * sequence, pairs (i, i + head_dim/2) rotated by t * theta^(-2i/head_dim). */
gboolean px_op_rope_fwd(PxBackend *be, PxTensor *out, const PxTensor *in, const PxAttnShape *s,
                        double theta, GError **error);
/* din += R^T dout on q and k, din += dout on v. din and dout must not alias. */
gboolean px_op_rope_bwd(PxBackend *be, PxTensor *din, const PxTensor *dout, const PxAttnShape *s,
                        double theta, GError **error);

/* Causal softmax attention, scale 1/sqrt(head_dim).  out (B*T, heads*head_dim),
 * att (B, heads, T, T) the probabilities saved for backward, qkv as above. */
gboolean px_op_attention_fwd(PxBackend *be, PxTensor *out, PxTensor *att, const PxTensor *qkv,
                             const PxAttnShape *s, GError **error);
gboolean px_op_attention_bwd(PxBackend *be, PxTensor *dqkv, const PxTensor *dout,
                             const PxTensor *qkv, const PxTensor *att, const PxAttnShape *s,
                             GError **error);

/* Block attention (flash attention's tile; ring attention's step): the
 * queries of q against the keys and values of kv, scale 1/sqrt(head_dim),
 * causal by global position: query position p sees the keys at positions
 * <= p. q and kv are in the qkv layout above (only q's query columns and
 * kv's key / value columns are read); qs and ks give their shapes (B, heads,
 * kv_heads, head_dim equal; T, the rows per sequence, and the positions may
 * differ). out (B*qs.T, heads*head_dim) gets the block's softmax-weighted
 * values, lse (B*heads, qs.T) the row log-sum-exp of the visible scaled
 * scores; a row that sees no key gets out 0 and lse -inf. */
gboolean px_op_attn_block_fwd(PxBackend *be, PxTensor *out, PxTensor *lse, const PxTensor *q,
                              const PxTensor *kv, const PxAttnShape *qs, const PxAttnShape *ks,
                              GError **error);
/* The online-softmax combine of two partial results over disjoint key sets:
 * lse' = log(e^lse + e^lse_b), out' = out e^(lse - lse') + out_b e^(lse_b - lse')
 * (rows with both -inf stay). out, out_b (B*T, heads*head_dim), lse, lse_b
 * (B*heads, T). out_b's dtype is the op's; out is of that dtype too, or f32
 * beside a bf16 / f16 out_b: an fp32 accumulator that a ring merges every
 * block into and rounds to the half dtype once at the end (see "Half
 * activations" below). */
gboolean px_op_attn_merge(PxBackend *be, PxTensor *out, PxTensor *lse, const PxTensor *out_b,
                          const PxTensor *lse_b, const PxAttnShape *s, GError **error);
/* Backward of one block given the final (merged) out and lse of the query
 * rows (flash attention's backward: P = exp(S - lse) recomputed,
 * D = rowsum(dout * out)): dq's query columns += dQ, dkv's key and value
 * columns += dK, dV (dq and dkv in the qkv layout of q and kv; they may be
 * the same tensor when q and kv are). */
gboolean px_op_attn_block_bwd(PxBackend *be, PxTensor *dq, PxTensor *dkv, const PxTensor *dout,
                              const PxTensor *q, const PxTensor *kv, const PxTensor *out,
                              const PxTensor *lse, const PxAttnShape *qs, const PxAttnShape *ks,
                              GError **error);

/* out = a + b (out may alias a or b).  da += dout, db += dout. */
gboolean px_op_residual_fwd(PxBackend *be, PxTensor *out, const PxTensor *a, const PxTensor *b,
                            GError **error);
gboolean px_op_residual_bwd(PxBackend *be, PxTensor *da, PxTensor *db, const PxTensor *dout,
                            GError **error);

/* Fused softmax + cross-entropy over the vocab. logits (N,V), targets (N) i32 in [0,V).
 * losses (N) gets the per-token losses; loss_acc (one element, f32 or f64, may be NULL)
 * accumulates their mean on the device (loss_acc += mean), so that a step's
 * micro-batches sum there and the loss is read once per step.
 * Backward recomputes the softmax from logits:
 *   dlogits += dloss / N * (softmax(logits) - onehot(target)),
 * dloss = d(objective)/d(mean loss), e.g. 1/M over M accumulated micro-batches. */
gboolean px_op_cross_entropy_fwd(PxBackend *be, PxTensor *losses, PxTensor *loss_acc,
                                 const PxTensor *logits, const PxTensor *targets, GError **error);
gboolean px_op_cross_entropy_bwd(PxBackend *be, PxTensor *dlogits, const PxTensor *logits,
                                 const PxTensor *targets, double dloss, GError **error);

/* ---- Vocabulary-parallel embedding and cross-entropy (Megatron). This rank
 * holds rows [v0, v0 + rows(wte)) of the vocabulary (columns of the logits),
 * of which the first n_real are real; the rest pad the vocabulary to a
 * multiple of tp and take no part. The caller reduces the partial results
 * over the TP group between the ops, on the device:
 *   embedding:     vp_fwd -> all-reduce SUM (or reduce-scatter)
 *   cross-entropy: vp_max -> all-reduce MAX
 *                  -> vp_stats -> all-reduce SUM -> vp_loss; backward vp_bwd
 *                  from the same global max and sums. ---- */

/* out[i] = wte[tok[i] - v0] when v0 <= tok[i] < v0 + n_real, else 0, plus
 * wpe[i % T] when wpe is given (give it on one TP rank only). out (B*T,C),
 * tokens (B*T) i32, wte (Vl,C), wpe (maxT,C) or NULL. A token elsewhere is no
 * error: another rank holds it. */
gboolean px_op_embedding_vp_fwd(PxBackend *be, PxTensor *out, const PxTensor *tokens,
                                const PxTensor *wte, const PxTensor *wpe, gint64 v0,
                                gint64 n_real, int B, int T, GError **error);
/* dwte[tok[i] - v0] += dout[i] for the local tokens; dwpe[i % T] += dout[i]
 * (dwpe may be NULL). */
gboolean px_op_embedding_vp_bwd(PxBackend *be, PxTensor *dwte, PxTensor *dwpe,
                                const PxTensor *dout, const PxTensor *tokens, gint64 v0,
                                gint64 n_real, int B, int T, GError **error);
/* rowmax (N) = max of logits (N,Vl) over its real columns [0, n_real) (-inf
 * when n_real = 0). */
gboolean px_op_ce_vp_max(PxBackend *be, PxTensor *rowmax, const PxTensor *logits,
                         gint64 n_real, GError **error);
/* Given the global row max gmax (N): stats (2,N), row 0 the sum over the
 * real local columns of exp(logit - gmax), row 1 the target's logit where
 * the target is local, else 0. Summed over the TP group they are the global
 * sum of exponentials and the target logit. targets (N) i32. */
gboolean px_op_ce_vp_stats(PxBackend *be, PxTensor *stats, const PxTensor *logits,
                           const PxTensor *targets, const PxTensor *gmax, gint64 v0,
                           gint64 n_real, GError **error);
/* From the global gmax and the summed stats: losses[i] = log(sum_i) + gmax_i -
 * target_logit_i; loss_acc (one element, may be NULL) += their mean. */
gboolean px_op_ce_vp_loss(PxBackend *be, PxTensor *losses, PxTensor *loss_acc,
                          const PxTensor *gmax, const PxTensor *stats, GError **error);
/* dlogits (N,Vl) += dloss / N * (p - onehot(target)) on the local columns,
 * p = exp(logit - gmax) / sum on the real ones and 0 on the padding. */
gboolean px_op_ce_vp_bwd(PxBackend *be, PxTensor *dlogits, const PxTensor *logits,
                         const PxTensor *targets, const PxTensor *gmax, const PxTensor *stats,
                         gint64 v0, gint64 n_real, double dloss, GError **error);
/* AdamW (Loshchilov & Hutter), one step numbered t ≥ 1, with bias correction and
 * decoupled weight decay: g = grad_scale * grad; m = b1 m + (1-b1) g;
 * v = b2 v + (1-b2) g^2; p -= lr (m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd p).
 * grad_scale carries global-norm clipping (and loss-scale undo). */
typedef struct {
  double lr, beta1, beta2, eps, weight_decay;
  int t;
  double grad_scale;
} PxAdamW;
gboolean px_op_adamw(PxBackend *be, PxTensor *param, const PxTensor *grad, PxTensor *m, PxTensor *v,
                     const PxAdamW *opt, GError **error);
/* The same with two device scalars, so that the step needs no host read
 * (PyTorch's clip_grad_norm_ and fused Adam's found_inf): scale_t (may be
 * NULL) multiplies grad_scale, e.g. the clip coefficient of px_op_clip_coef;
 * when skip_if (may be NULL) holds a nonzero value, e.g. px_op_check_finite's
 * flag, param, m and v are left as they are. */
gboolean px_op_adamw_dev(PxBackend *be, PxTensor *param, const PxTensor *grad, PxTensor *m,
                         PxTensor *v, const PxAdamW *opt, const PxTensor *scale_t,
                         const PxTensor *skip_if, GError **error);
/* AdamW over many tensors at once (apex's multi_tensor_apply, PyTorch's
 * fused / foreach Adam): item i is updated as px_op_adamw_dev(param, grad,
 * m, v) with opt whose weight_decay is the item's, all with the same scale_t
 * and skip_if. A backend with a multi-tensor kernel (cuda) updates every
 * item of one (param, grad) dtype pair in one launch, from a list of the
 * tensors' addresses and sizes in device memory; the others (cpu) loop over
 * the items. Either way each item's result equals px_op_adamw_dev's bit for
 * bit. */
typedef struct {
  PxTensor *param;
  const PxTensor *grad;
  PxTensor *m, *v;
  double weight_decay;
} PxAdamWItem;
gboolean px_op_adamw_multi(PxBackend *be, const PxAdamWItem *items, int n, const PxAdamW *opt,
                           const PxTensor *scale_t, const PxTensor *skip_if, GError **error);
/* acc (one element, f32 or f64) += the sum of squares of t's elements (summed
 * in double), on the device: for the global gradient norm, one accumulator
 * over many tensors, all-reduced over the ranks, read once. */
gboolean px_op_sum_squares_acc(PxBackend *be, PxTensor *acc, const PxTensor *t, GError **error);
/* acc += the sums of squares of the n tensors ts (px_op_sum_squares_acc of
 * each, at once): on cuda one launch per dtype (a block per 65536 elements)
 * and one to add the blocks' sums, so the sum may differ from one call per
 * tensor in its last bits; elsewhere one call per tensor. */
gboolean px_op_sum_squares_acc_multi(PxBackend *be, PxTensor *acc, const PxTensor *const *ts, int n,
                                     GError **error);
/* The same returned to the host (one device→host copy per call: prefer
 * px_op_sum_squares_acc). */
gboolean px_op_sum_squares(PxBackend *be, const PxTensor *t, double *out, GError **error);
/* coef (one element) = min(1, max_norm / (sqrt(sumsq) + 1e-6)), or 1 when
 * max_norm ≤ 0: global-norm clipping from the all-reduced sum of squares,
 * on the device (torch.nn.utils.clip_grad_norm_). */
gboolean px_op_clip_coef(PxBackend *be, PxTensor *coef, const PxTensor *sumsq, double max_norm,
                         GError **error);
/* flag (one element, f32, f64 or i32) is set to 1 when any element of t is
 * NaN or ±Inf and left as it is otherwise, so one flag collects many
 * tensors (a step's overflow check, downloaded once). */
gboolean px_op_check_finite(PxBackend *be, PxTensor *flag, const PxTensor *t, GError **error);
/* t *= alpha. */
gboolean px_op_scale(PxBackend *be, PxTensor *t, double alpha, GError **error);

/* ---- rows picked by index: the MoE layer's dispatch and combine ----
 * dst (T, C) = for each row t, the sum over j < k of wt[t·k + j] ·
 * src[idx[t·k + j]] (wt NULL: 1), j ascending, a term whose idx is -1 left
 * out (a dropped copy), formed in double and rounded once; overwrites dst.
 * src (N, C) of dst's dtype, idx i32 with T·k elements in [-1, N), wt T·k
 * elements of dst's dtype. k 1 with wt: dispatch (a copy of its token's
 * row) or the combine's backward (its token's gradient, weighted); k > 1:
 * the combine (the weighted sum of a token's expert outputs) or the
 * dispatch's backward (the sum of its copies' gradients). */
gboolean px_op_rows_gather(PxBackend *be, PxTensor *dst, const PxTensor *src, const PxTensor *idx,
                           const PxTensor *wt, int k, GError **error);
/* out[t·k + j] = sum over c of a[t, c] · b[idx[t·k + j], c] (0 where idx is
 * -1), c ascending, in double, rounded once: the gate weights' gradient.
 * a (T, C), b (N, C), out T·k elements, all of one dtype; idx as above. */
gboolean px_op_rows_dot(PxBackend *be, PxTensor *out, const PxTensor *a, const PxTensor *b, const PxTensor *idx,
                        int k, GError **error);

/* ---- the MoE router: softmax and top-k, and their backward ----
 * Row t of logits (T, E): p[t, e] = exp(l[t, e] - max_e l[t, e]) / Z, Z the
 * sum of the exponentials over e ascending, all in double; probs (T, E, the
 * logits' dtype) gets p rounded once. topi (i32, T·k elements) the k
 * experts of the largest p, probability descending, ties to the lower
 * index; topv (f64, T·k) their p in double; psum (f64, E) the sum over the
 * rows (t ascending) of each expert's p in double (the load-balancing
 * statistics). 1 ≤ k ≤ E; every output is overwritten. */
gboolean px_op_router_topk(PxBackend *be, PxTensor *probs, PxTensor *topi, PxTensor *topv, PxTensor *psum,
                           const PxTensor *logits, int k, GError **error);
/* dlogits (T, E) of the router's softmax, per row t in double: the
 * probabilities' gradient dp[e] = daux · fcnt[e] (fcnt NULL: 0), plus at
 * each chosen expert i_j = topi[t·k + j] its gate weight's gradient
 * g_j = dgate[t·k + j]: g_j itself, or with norm_topk (gate weights
 * w_j = p[i_j] / z, z = Σ_j p[i_j]) (g_j - Σ_l g_l · w_l) / z; then
 * dlogits[t, e] = p[e] · (dp[e] - Σ_e' p[e'] · dp[e']), rounded once,
 * overwriting. probs (T, E) as px_op_router_topk left them (p their
 * values), dgate T·k and fcnt E elements of their dtype, topi i32 T·k in
 * [0, E) (a dropped copy's expert too: its g_j is 0). */
gboolean px_op_router_bwd(PxBackend *be, PxTensor *dlogits, const PxTensor *probs, const PxTensor *topi,
                          const PxTensor *dgate, const PxTensor *fcnt, double daux, gboolean norm_topk, int k,
                          GError **error);

/* ---- mixed precision ----
 * dst = src, or dst += src with accumulate, between float dtypes (f32, f64,
 * bf16, f16) of the same numel: the sum is formed in f32 (f64 when either
 * side is f64) and rounded once to dst's dtype, to nearest even (exec/half.h;
 * __float2bfloat16_rn / __float2half_rn on a GPU; fp16 overflow gives ±Inf).
 * It rounds the fp32 master weights to the bf16/fp16 parameters after the
 * optimizer, stages half gradients into fp32 for their reduction, and is what
 * backend.c promotes half tensors with (below). */
gboolean px_op_cast(PxBackend *be, PxTensor *dst, const PxTensor *src, gboolean accumulate,
                    GError **error);

/* Half weights on an f32 model (mixed precision): the ops that take
 * parameters — linear (w, b), embedding and embedding_vp (wte, wpe),
 * layernorm / rmsnorm (w, b) — accept them in bf16 or f16 while their
 * activations are f32, and their parameter-gradient outputs (dw, db, dwte,
 * dwpe) likewise; adamw accepts a half grad, sum_squares and check_finite a
 * half tensor. A backend whose table sets half_params runs these natively
 * (e.g. cuBLAS GEMMs on bf16 with fp32 accumulation); for the others
 * backend.c reads each half input through an f32 copy and accumulates each
 * half gradient through a zeroed f32 buffer that px_op_cast then adds in
 * (transient PX_MEM_BUFFERS tensors, the size of one parameter tensor). */

/* Half activations (a mixed-precision model computing in bf16 / fp16, as
 * Megatron-LM's --bf16): an op's activations (x, y, out, dx, dy, dout, qkv,
 * att, logits, dlogits, q, kv, dq, dkv, the residual's and the MLP's tensors,
 * the MoE rows and router tensors) are all bf16 or all fp16, and its
 * parameters and parameter gradients of that same dtype. Its STATISTICS stay
 * f32: the norms' mean and rstd, the attention's lse (attn_block_fwd,
 * attn_merge, attn_block_bwd), the cross-entropy's per-token losses and the
 * vocabulary-parallel max, sums and losses (apex's fused LayerNorm and llm.c
 * keep mean / rstd in float, flash-attention its lse, Megatron computes the
 * cross-entropy in fp32). Every kernel computes in fp32 (or double where it
 * does in f32), rounds each half output once to nearest even, and adds into a
 * half gradient output by forming the sum in fp32 and rounding it once. A
 * backend whose table sets half_acts runs such ops natively (cuda); for the
 * others (cpu) backend.c casts every half tensor of the op into an f32 copy,
 * runs the f32 op and casts the outputs back (forward outputs rounded over,
 * gradient outputs added, as above), so the two agree to the rounding of the
 * f32 sums inside the op.
 *
 * One op mixes dtypes: attn_merge takes an f32 out (and f32 lse) beside a
 * half out_b, the accumulator of ring attention's merges (exec/gpt.c
 * ring_attention_fwd), so that the merged output is rounded to the half dtype
 * once, by the px_op_cast after the last merge, rather than once per merge
 * (flash attention's split-KV combine likewise keeps its partial outputs in
 * fp32 and converts once). The f32 out is read and written as it is: only
 * out_b is promoted (an exact upcast) on a backend without half_acts, so the
 * op rounds nothing but the f32 result. */

G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxBackend, px_backend_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PxTensor, px_tensor_free)

G_END_DECLS
