/* backend_cuda.c — the CUDA backend: the ops table of backend_impl.h on one
 * GPU. Kernels are in kernels.cu (launchers in cuda_kernels.h); GEMMs go to
 * cuBLASLt, attention's batched GEMMs to cuBLAS (cublasGemmBatchedEx).
 * docs/backend.md ("The CUDA backend") describes the design:
 *
 *  - device: device % cudaGetDeviceCount(), set on the calling thread by
 *    every entry point (ranks of the local communicator are threads);
 *  - streams: the compute stream is a cudaStream_t (non-blocking) made with
 *    the backend; every op, memset and device copy is queued on it in order;
 *    other streams, events and host functions map onto cudaStream_t,
 *    cudaEvent_t and cudaLaunchHostFunc (PxStreamOps below);
 *  - memory: raw blocks come from a CUDA memory pool of the backend's own
 *    (cudaMallocFromPoolAsync on the compute stream, release threshold
 *    unlimited so that freed memory stays cached in the driver, given back
 *    by px_backend_trim: cuda_raw_trim), under backend.c's caching pool and
 *    its per-category counters;
 *  - dtypes: f32, bf16 and f16 tensors (fp32 compute); f64 is refused with
 *    PX_BACKEND_ERROR_UNSUPPORTED. Activations may be bf16 / f16 (half_acts:
 *    an op's activations and parameters of one half dtype), read as fp32 and
 *    rounded once when stored; statistics (norms' mean / rstd, attention's
 *    lse, cross-entropy losses and the ce_vp pieces) are f32 for every dtype,
 *    and a statistics tensor of another dtype is refused;
 *  - errors: every CUDA / cuBLASLt call is checked; a failure is a GError
 *    (PX_BACKEND_ERROR_DEVICE, or _ALLOC when out of memory) naming the call,
 *    the op and the device. Token or target ids outside their range are
 *    flagged by the kernels in host-mapped memory and reported (one line) at
 *    the next synchronisation, download or stream synchronize. */
#include "backend_impl.h"
#include "check.h"
#include "cuda_kernels.h"
#include "gemm_map.h"
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

G_STATIC_ASSERT(PX_STREAM_REDUCE_MAX == PXK_REDUCE_MAX);
G_STATIC_ASSERT((int)PX_DTYPE_F32 == (int)PXK_F32 && (int)PX_DTYPE_F64 == (int)PXK_F64 &&
                (int)PX_DTYPE_I32 == (int)PXK_I32 && (int)PX_DTYPE_BF16 == (int)PXK_BF16 &&
                (int)PX_DTYPE_F16 == (int)PXK_F16);

#define WORKSPACE_BYTES ((gsize)32 << 20) /* cuBLASLt's workspace (32 MiB, NVIDIA's advice for Hopper) */

typedef struct {
  int device;
  cudaStream_t st;        /* the compute stream */
  cudaMemPool_t pool;
  cublasLtHandle_t lt;
  cublasHandle_t blas;    /* the batched GEMMs of attention (cublasGemmBatchedEx), on st */
  gboolean att_warp;      /* PX_CUDA_ATTN=warp: attention by the warp-per-row kernels only */
  gboolean att_flash;     /* PX_CUDA_ATTN=flash: the fused kernels of flash_attn.cu where they apply */
  int smem_optin;         /* the device's opt-in shared memory per block (bytes) */
  int cc_major;           /* its compute capability's major number */
  void *workspace;
  int *bad;               /* host-mapped int[2]: {PXK_BAD_*, id} set by kernels */
  int *bad_dev;           /* its device address */
  GMutex clock_lock;      /* guards the anchors */
  GPtrArray *anchors;     /* of Anchor, oldest first; [0] is the clock origin */
  GMutex algo_lock;
  GHashTable *algos;      /* GEMM key (string) -> cublasLtMatmulAlgo_t, chosen once per shape */
} Cuda;

static Cuda *cx(PxBackend *be) { return be->impl; }

/* Event times: cudaEventElapsedTime gives float milliseconds, which after an
 * hour resolve only 0.25 ms. So an event's time is measured from an anchor
 * event recorded just before it on the same stream; a new anchor is recorded
 * when the latest is over a second old (host time), and an anchor's own time
 * is that of the latest anchor already timed plus the time between them
 * (short when times are read regularly, as the runtime does each step). The first anchor
 * is recorded on the empty compute stream when the backend is made: its
 * time is the backend clock then. */
typedef struct Anchor {
  cudaEvent_t ev;
  gint64 host_us;  /* when it was recorded (monotonic clock) */
  gboolean known;
  double s;        /* its time on the backend clock, once known */
} Anchor;

static void anchor_free(gpointer p) {
  Anchor *a = p;
  if (a->ev && cudaEventDestroy(a->ev) != cudaSuccess) cudaGetLastError();
  g_free(a);
}

/* ---- errors ---- */

/* The function's name out of a stringified call: "cudaMemcpyAsync(dst, ...)" -> "cudaMemcpyAsync". */
static int call_len(const char *call) { return (int)strcspn(call, "("); }

static gboolean cu_fail(GError **error, int device, const char *op, const char *call, cudaError_t e) {
  g_set_error(error, PX_BACKEND_ERROR,
              e == cudaErrorMemoryAllocation ? PX_BACKEND_ERROR_ALLOC : PX_BACKEND_ERROR_DEVICE,
              "cuda device %d: %s: %.*s failed: %s (%s)", device, op, call_len(call), call,
              cudaGetErrorName(e), cudaGetErrorString(e));
  return FALSE;
}

static gboolean lt_fail(GError **error, int device, const char *op, const char *call, cublasStatus_t s) {
  g_set_error(error, PX_BACKEND_ERROR,
              s == CUBLAS_STATUS_ALLOC_FAILED ? PX_BACKEND_ERROR_ALLOC : PX_BACKEND_ERROR_DEVICE,
              "cuda device %d: %s: %.*s failed: %s", device, op, call_len(call), call,
              cublasGetStatusString(s));
  return FALSE;
}

/* Check a CUDA runtime call (c: the backend's Cuda, op: the op's name, error in scope). */
#define CU(c, op, call)                                                                            \
  do {                                                                                             \
    cudaError_t e_ = (call);                                                                       \
    if (e_ != cudaSuccess) return cu_fail(error, (c)->device, (op), #call, e_);                    \
  } while (0)
#define LT(c, op, call)                                                                            \
  do {                                                                                             \
    cublasStatus_t s_ = (call);                                                                    \
    if (s_ != CUBLAS_STATUS_SUCCESS) return lt_fail(error, (c)->device, (op), #call, s_);          \
  } while (0)

/* The status of a kernel launcher, as an expression. */
static gboolean launched(Cuda *c, const char *op, const char *call, cudaError_t e, GError **error) {
  return e == cudaSuccess || cu_fail(error, c->device, op, call, e);
}
#define KERN(call) launched(c, op, #call, (call), error)

/* Make the backend's device current on this thread and refuse what the
 * kernels do not take (f64, i32 data). */
static gboolean enter(PxBackend *be, const char *op, PxDType dt, GError **error) {
  Cuda *c = cx(be);
  if (dt != PX_DTYPE_F32 && dt != PX_DTYPE_BF16 && dt != PX_DTYPE_F16)
    return px_fail(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_UNSUPPORTED,
                   "cuda %s: %s tensors are not supported (f32, bf16 and f16 are)", op, px_dtype_name(dt));
  CU(c, op, cudaSetDevice(c->device));
  return TRUE;
}

static gboolean set_device(Cuda *c, const char *op, GError **error) {
  CU(c, op, cudaSetDevice(c->device));
  return TRUE;
}

/* Report (once) an id a kernel found outside its range; the caller has synchronised. */
static gboolean check_bad(Cuda *c, GError **error) {
  volatile int *bad = c->bad;
  int code = bad[0], id = bad[1];
  if (code == PXK_BAD_NONE) return TRUE;
  bad[0] = PXK_BAD_NONE;
  if (code == PXK_BAD_ROW)
    return px_fail(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE,
                   "cuda device %d: row index %d outside its tensor (rows_gather / rows_dot / router_bwd)", c->device, id);
  return px_fail(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE,
                 "cuda device %d: %s id %d outside the vocabulary (%s)", c->device,
                 code == PXK_BAD_TOKEN ? "a token" : "a target", id,
                 code == PXK_BAD_TOKEN ? "embedding_fwd" : "cross_entropy");
}

/* Statistics tensors (backend.h: f32 whenever the activations are half, and
 * so, on this backend, always): each given one must be f32. */
static gboolean stats_f32(Cuda *c, const char *op, const PxTensor *const *ts, int n, GError **error) {
  for (int i = 0; i < n; i++)
    if (ts[i] && ts[i]->dtype != PX_DTYPE_F32)
      return px_fail(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_UNSUPPORTED,
                     "cuda device %d: %s: statistics tensor %s is %s (the kernels keep statistics in f32)",
                     c->device, op, ts[i]->name, px_dtype_name(ts[i]->dtype));
  return TRUE;
}
#define STATS(...) stats_f32(c, op, (const PxTensor *const[]){__VA_ARGS__}, \
                             (int)(sizeof((const PxTensor *const[]){__VA_ARGS__}) / sizeof(const PxTensor *)), error)

static gint64 cols(const PxTensor *t) { return t->shape[t->ndim - 1]; }
static gint64 rows(const PxTensor *t) { return t->numel / cols(t); }
#define D(t) ((t) ? (t)->data : NULL)

/* ---- memory ---- */

static gboolean cuda_raw_alloc(PxBackend *be, gsize bytes, void **out, GError **error) {
  Cuda *c = cx(be);
  const char *op = "alloc";
  if (!set_device(c, op, error)) return FALSE;
  cudaError_t e = cudaMallocFromPoolAsync(out, bytes, c->pool, c->st);
  if (e != cudaSuccess) {
    cudaGetLastError(); /* not sticky: clear it */
    g_set_error(error, PX_BACKEND_ERROR,
                e == cudaErrorMemoryAllocation ? PX_BACKEND_ERROR_ALLOC : PX_BACKEND_ERROR_DEVICE,
                "cuda device %d: cudaMallocFromPoolAsync of %" G_GSIZE_FORMAT " bytes failed: %s", c->device,
                bytes, cudaGetErrorString(e));
    return FALSE;
  }
  /* usable on every stream once this returns, as on the cpu backend */
  CU(c, op, cudaStreamSynchronize(c->st));
  return TRUE;
}

/* Stream-ordered on the compute stream: a block is freed after the work
 * queued before (backend.c frees only tensors no stream still uses). */
static void cuda_raw_free(PxBackend *be, void *p) {
  Cuda *c = cx(be);
  if (!p) return;
  if (cudaSetDevice(c->device) != cudaSuccess || cudaFreeAsync(p, c->st) != cudaSuccess) {
    cudaGetLastError();
    g_warning("cuda device %d: cudaFreeAsync failed", c->device);
  }
}

/* px_backend_trim: the blocks backend.c freed stay in the pool (its release
 * threshold is unlimited, so that a step's frees serve the next step without
 * the driver), unusable by anything else on the device — cuBLAS, NCCL, the
 * pools of other ranks' backends on the same device. cudaMemPoolTrimTo(0)
 * gives back what no allocation uses; the frees must have been seen complete
 * first ("allocations asynchronously freed but whose completion has not been
 * observed on the host can count as outstanding": its documentation), hence
 * the synchronize. Returns the bytes the pool gave back. */
static gsize cuda_raw_trim(PxBackend *be) {
  Cuda *c = cx(be);
  guint64 before = 0, after = 0;
  if (cudaSetDevice(c->device) != cudaSuccess || cudaStreamSynchronize(c->st) != cudaSuccess ||
      cudaMemPoolGetAttribute(c->pool, cudaMemPoolAttrReservedMemCurrent, &before) != cudaSuccess ||
      cudaMemPoolTrimTo(c->pool, 0) != cudaSuccess ||
      cudaMemPoolGetAttribute(c->pool, cudaMemPoolAttrReservedMemCurrent, &after) != cudaSuccess) {
    cudaGetLastError();
    g_warning("cuda device %d: trimming the memory pool failed", c->device);
    return 0;
  }
  return before > after ? (gsize)(before - after) : 0;
}

/* Host buffers (px_backend_new_host): pinned, so that cudaMemcpyAsync to and
 * from them is a DMA that does not block the host; portable, as a rank's
 * host backend may be used from any thread. Not stream-ordered:
 * cudaFreeHost waits for the device, so backend.c's pool keeps them. */
static gboolean cuda_host_alloc(PxBackend *be, gsize bytes, void **out, GError **error) {
  Cuda *c = cx(be);
  const char *op = "host_alloc";
  if (!set_device(c, op, error)) return FALSE;
  cudaError_t e = cudaHostAlloc(out, bytes, cudaHostAllocPortable);
  if (e != cudaSuccess) {
    cudaGetLastError(); /* not sticky: clear it */
    *out = NULL;
    g_set_error(error, PX_BACKEND_ERROR,
                e == cudaErrorMemoryAllocation ? PX_BACKEND_ERROR_ALLOC : PX_BACKEND_ERROR_DEVICE,
                "cuda device %d: cudaHostAlloc of %" G_GSIZE_FORMAT " bytes failed: %s", c->device, bytes,
                cudaGetErrorString(e));
    return FALSE;
  }
  return TRUE;
}

static void cuda_host_free(PxBackend *be, void *p) {
  Cuda *c = cx(be);
  if (!p) return;
  if (cudaSetDevice(c->device) != cudaSuccess || cudaFreeHost(p) != cudaSuccess) {
    cudaGetLastError();
    g_warning("cuda device %d: cudaFreeHost failed", c->device);
  }
}

/* A host <-> device copy on the compute stream, returning once it is done. */
static gboolean copy_sync(PxBackend *be, const char *op, void *dst, const void *src, gsize bytes,
                          enum cudaMemcpyKind kind, GError **error) {
  Cuda *c = cx(be);
  if (!set_device(c, op, error)) return FALSE;
  CU(c, op, cudaMemcpyAsync(dst, src, bytes, kind, c->st));
  CU(c, op, cudaStreamSynchronize(c->st));
  return check_bad(c, error);
}

static gboolean cuda_upload(PxBackend *be, void *dst, const void *src, gsize bytes, GError **error) {
  return copy_sync(be, "upload", dst, src, bytes, cudaMemcpyHostToDevice, error);
}

static gboolean cuda_download(PxBackend *be, void *dst, const void *src, gsize bytes, GError **error) {
  return copy_sync(be, "download", dst, src, bytes, cudaMemcpyDeviceToHost, error);
}

static gboolean cuda_copy(PxBackend *be, void *dst, const void *src, gsize bytes, GError **error) {
  Cuda *c = cx(be);
  const char *op = "copy";
  if (!set_device(c, op, error)) return FALSE;
  CU(c, op, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->st));
  return TRUE;
}

static gboolean cuda_memset(PxBackend *be, void *p, int value, gsize bytes, GError **error) {
  Cuda *c = cx(be);
  const char *op = "memset";
  if (!set_device(c, op, error)) return FALSE;
  CU(c, op, cudaMemsetAsync(p, value, bytes, c->st));
  return TRUE;
}

static gboolean cuda_synchronize(PxBackend *be, GError **error) {
  Cuda *c = cx(be);
  const char *op = "synchronize";
  if (!set_device(c, op, error)) return FALSE;
  CU(c, op, cudaStreamSynchronize(c->st));
  return check_bad(c, error);
}

/* Device scratch for an op (per-row losses, partial sums), stream-ordered:
 * freed by scratch_free after the kernels that use it. Not counted in the
 * categories (a few bytes per row). */
static gboolean scratch(Cuda *c, const char *op, gsize bytes, void **p, GError **error) {
  CU(c, op, cudaMallocFromPoolAsync(p, MAX(bytes, 8), c->pool, c->st));
  return TRUE;
}
static gboolean scratch_free(Cuda *c, const char *op, void *p, GError **error) {
  CU(c, op, cudaFreeAsync(p, c->st));
  return TRUE;
}

/* ---- streams and events ---- */

/* A stream's first failure, shared (reference-counted) with the events
 * recorded on it so that event_synchronize can report it. */
typedef struct {
  GMutex lock;
  GError *error;
} StreamState;

static void state_clear(gpointer p) {
  StreamState *ss = p;
  g_clear_error(&ss->error);
  g_mutex_clear(&ss->lock);
}

typedef struct {
  cudaStream_t st;
  gboolean owned;   /* FALSE for the compute stream (the backend owns it) */
  StreamState *state;
} CuStream;

typedef struct {
  cudaEvent_t ev;
  StreamState *state; /* of the stream of the latest record, or NULL */
  guint anchor;       /* index of its anchor in Cuda.anchors */
} CuEvent;

static cudaStream_t stream_of(PxStream *s) { return ((CuStream *)s->impl)->st; }

/* px_stream_native: the cudaStream_t, for NCCL to queue its kernels on */
static void *cs_native(PxStream *s) { return stream_of(s); }

static gboolean state_error(StreamState *ss, GError **error) {
  if (!ss) return TRUE;
  g_mutex_lock(&ss->lock);
  gboolean ok = ss->error == NULL;
  if (!ok) g_propagate_error(error, g_error_copy(ss->error));
  g_mutex_unlock(&ss->lock);
  return ok;
}

static gboolean cs_init(PxStream *s, gboolean compute, GError **error) {
  Cuda *c = cx(s->be);
  const char *op = "stream_init";
  CuStream *cs = g_new0(CuStream, 1);
  cs->state = g_atomic_rc_box_new0(StreamState);
  g_mutex_init(&cs->state->lock);
  s->impl = cs;
  s->is_inline = FALSE;
  if (!set_device(c, op, error)) return FALSE;
  if (compute) {
    cs->st = c->st;
    /* the clock origin: an event on the empty compute stream, now */
    Anchor *a = g_ptr_array_index(c->anchors, 0);
    CU(c, op, cudaEventRecord(a->ev, c->st));
    CU(c, op, cudaEventSynchronize(a->ev));
    a->host_us = g_get_monotonic_time();
    a->s = (a->host_us - s->be->t0) / 1e6;
    a->known = TRUE;
  } else {
    CU(c, op, cudaStreamCreateWithFlags(&cs->st, cudaStreamNonBlocking));
    cs->owned = TRUE;
  }
  return TRUE;
}

static void cs_free(PxStream *s) {
  CuStream *cs = s->impl;
  if (!cs) return;
  Cuda *c = cx(s->be);
  if (cs->st && cudaSetDevice(c->device) == cudaSuccess) {
    if (cudaStreamSynchronize(cs->st) != cudaSuccess) cudaGetLastError();
    if (cs->owned && cudaStreamDestroy(cs->st) != cudaSuccess) cudaGetLastError();
  }
  g_atomic_rc_box_release_full(cs->state, state_clear);
  g_free(cs);
  s->impl = NULL;
}

typedef struct {
  PxStream *s;
  PxHostFn fn;
  gpointer data;
  GDestroyNotify free_data;
} HostItem;

/* Runs on a CUDA driver thread: no CUDA calls here (the host function may
 * not make any either). A failed stream skips its later host functions. */
static void CUDART_CB host_trampoline(void *p) {
  HostItem *it = p;
  CuStream *cs = it->s->impl;
  g_mutex_lock(&cs->state->lock);
  gboolean failed = cs->state->error != NULL;
  g_mutex_unlock(&cs->state->lock);
  GError *err = NULL;
  if (!failed && !it->fn(it->data, &err)) {
    if (!err) err = g_error_new(PX_BACKEND_ERROR, PX_BACKEND_ERROR_DEVICE, "a host function failed");
    g_prefix_error(&err, "stream %s: ", it->s->name);
    g_mutex_lock(&cs->state->lock);
    if (!cs->state->error) cs->state->error = g_steal_pointer(&err);
    g_mutex_unlock(&cs->state->lock);
    g_clear_error(&err);
  }
  if (it->free_data) it->free_data(it->data);
  g_free(it);
}

static gboolean cs_launch_host(PxStream *s, PxHostFn fn, gpointer data, GDestroyNotify free_data,
                               GError **error) {
  Cuda *c = cx(s->be);
  const char *op = "launch_host";
  HostItem *it = g_new(HostItem, 1);
  *it = (HostItem){s, fn, data, free_data};
  cudaError_t e = cudaSetDevice(c->device);
  if (e == cudaSuccess) e = cudaLaunchHostFunc(stream_of(s), host_trampoline, it);
  if (e != cudaSuccess) {
    if (free_data) free_data(data);
    g_free(it);
    return cu_fail(error, c->device, op, "cudaLaunchHostFunc", e);
  }
  return TRUE;
}

static gboolean cs_synchronize(PxStream *s, GError **error) {
  Cuda *c = cx(s->be);
  const char *op = "stream synchronize";
  if (!set_device(c, op, error)) return FALSE;
  CU(c, op, cudaStreamSynchronize(stream_of(s)));
  return state_error(((CuStream *)s->impl)->state, error) && check_bad(c, error);
}

static gboolean ce_init(PxDevEvent *e, GError **error) {
  Cuda *c = cx(e->be);
  const char *op = "event_init";
  CuEvent *ce = g_new0(CuEvent, 1);
  if (!set_device(c, op, error)) {
    g_free(ce);
    return FALSE;
  }
  cudaError_t r = cudaEventCreate(&ce->ev); /* with timing: instructions are timed by events */
  if (r != cudaSuccess) {
    g_free(ce);
    return cu_fail(error, c->device, op, "cudaEventCreate", r);
  }
  e->impl = ce;
  return TRUE;
}

static void ce_free(PxDevEvent *e) {
  CuEvent *ce = e->impl;
  if (!ce) return;
  if (cudaSetDevice(cx(e->be)->device) != cudaSuccess || cudaEventDestroy(ce->ev) != cudaSuccess)
    cudaGetLastError();
  if (ce->state) g_atomic_rc_box_release_full(ce->state, state_clear);
  g_free(ce);
  e->impl = NULL;
}

static gboolean ce_record(PxDevEvent *e, PxStream *s, GError **error) {
  Cuda *c = cx(e->be);
  CuEvent *ce = e->impl;
  const char *op = "event record";
  if (!set_device(c, op, error)) return FALSE;
  g_mutex_lock(&c->clock_lock);
  guint last = c->anchors->len - 1;
  Anchor *a = g_ptr_array_index(c->anchors, last);
  gint64 now = g_get_monotonic_time();
  cudaError_t r = cudaSuccess;
  if (now - a->host_us > G_USEC_PER_SEC) {
    Anchor *na = g_new0(Anchor, 1);
    na->host_us = now;
    r = cudaEventCreate(&na->ev);
    if (r == cudaSuccess) r = cudaEventRecord(na->ev, stream_of(s));
    if (r == cudaSuccess) g_ptr_array_add(c->anchors, na), last++;
    else anchor_free(na);
  }
  ce->anchor = last;
  g_mutex_unlock(&c->clock_lock);
  if (r != cudaSuccess) return cu_fail(error, c->device, op, "cudaEventRecord (anchor)", r);
  CU(c, op, cudaEventRecord(ce->ev, stream_of(s)));
  StreamState *ss = ((CuStream *)s->impl)->state;
  if (ce->state != ss) {
    if (ce->state) g_atomic_rc_box_release_full(ce->state, state_clear);
    ce->state = g_atomic_rc_box_acquire(ss);
  }
  return TRUE;
}

static gboolean ce_wait(PxStream *s, PxDevEvent *e, GError **error) {
  Cuda *c = cx(s->be);
  const char *op = "stream wait";
  if (!set_device(c, op, error)) return FALSE;
  CU(c, op, cudaStreamWaitEvent(stream_of(s), ((CuEvent *)e->impl)->ev, 0));
  return TRUE;
}

static gboolean ce_synchronize(PxDevEvent *e, GError **error) {
  Cuda *c = cx(e->be);
  CuEvent *ce = e->impl;
  const char *op = "event synchronize";
  if (!set_device(c, op, error)) return FALSE;
  CU(c, op, cudaEventSynchronize(ce->ev));
  return state_error(ce->state, error);
}

static gboolean ce_query(PxDevEvent *e) {
  cudaError_t r = cudaEventQuery(((CuEvent *)e->impl)->ev);
  if (r == cudaErrorNotReady) return FALSE;
  if (r != cudaSuccess) cudaGetLastError(); /* failed: complete, the error shows at synchronize */
  return TRUE;
}

static gboolean not_completed(GError **error, cudaError_t r) {
  cudaGetLastError();
  return px_fail(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_SHAPE,
                 "event time: the event has not completed (cudaEventElapsedTime: %s)", cudaGetErrorString(r));
}

static gboolean ce_time(PxDevEvent *e, double *seconds, GError **error) {
  Cuda *c = cx(e->be);
  CuEvent *ce = e->impl;
  float ms = 0;
  cudaError_t r = cudaSuccess;
  g_mutex_lock(&c->clock_lock);
  /* this event's anchor, from the latest anchor whose time is known (it has
   * completed; the anchor has, as it precedes the event on its stream) */
  Anchor *a = g_ptr_array_index(c->anchors, ce->anchor);
  if (!a->known) {
    guint k = ce->anchor;
    while (k > 0 && !((Anchor *)g_ptr_array_index(c->anchors, k))->known) k--;
    Anchor *from = g_ptr_array_index(c->anchors, k);
    r = cudaEventElapsedTime(&ms, from->ev, a->ev);
    if (r == cudaSuccess) a->s = from->s + ms / 1e3, a->known = TRUE;
  }
  if (r == cudaSuccess) r = cudaEventElapsedTime(&ms, a->ev, ce->ev);
  double base = a->s;
  g_mutex_unlock(&c->clock_lock);
  if (r != cudaSuccess) return not_completed(error, r);
  *seconds = base + ms / 1e3;
  return TRUE;
}

static gboolean cs_memcpy_async(PxStream *s, void *dst, const void *src, gsize bytes, int dir, GError **error) {
  Cuda *c = cx(s->be);
  const char *op = dir == 0 ? "upload_async" : dir == 1 ? "download_async" : "copy_async";
  static const enum cudaMemcpyKind kinds[] = {cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
                                              cudaMemcpyDeviceToDevice};
  if (!set_device(c, op, error)) return FALSE;
  CU(c, op, cudaMemcpyAsync(dst, src, bytes, kinds[CLAMP(dir, 0, 2)], stream_of(s)));
  return TRUE;
}

/* px_stream_reduce: one kernel on s, the part pointers by value */
static gboolean cs_reduce_async(PxStream *s, void *out, const void *const *parts, int n, gsize count, PxDType dt,
                                gboolean max, GError **error) {
  Cuda *c = cx(s->be);
  const char *op = "stream reduce";
  PxkParts p = {{0}};
  for (int k = 0; k < n && k < PXK_REDUCE_MAX; k++) p.p[k] = parts[k];
  if (!set_device(c, op, error)) return FALSE;
  CU(c, op, pxk_reduce_parts(stream_of(s), (int)dt, out, p, n, max, (int64_t)count));
  return TRUE;
}

static const PxStreamOps cuda_stream_ops = {
  .stream_init = cs_init,
  .stream_free = cs_free,
  .native = cs_native,
  .launch_host = cs_launch_host,
  .synchronize = cs_synchronize,
  .event_init = ce_init,
  .event_free = ce_free,
  .record = ce_record,
  .wait = ce_wait,
  .event_synchronize = ce_synchronize,
  .event_query = ce_query,
  .event_time = ce_time,
  .memcpy_async = cs_memcpy_async,
  .reduce_async = cs_reduce_async,
};

/* ---- GEMMs (cuBLASLt) ----
 * Column-major C (m x n) = op(A) op(B) + beta C, fp32 compute and scale
 * (CUBLAS_COMPUTE_32F: no TF32 for f32, fp32 accumulation for bf16 / f16).
 * The algorithm is chosen by cuBLASLt's heuristic once per (dtype, shape,
 * transposes, leading dimensions, epilogue, beta, pointer alignments) and
 * cached. bias (m elements), when given, is added by the BIAS epilogue. */

static cudaDataType_t lt_type(PxDType dt) {
  return dt == PX_DTYPE_BF16 ? CUDA_R_16BF : dt == PX_DTYPE_F16 ? CUDA_R_16F : CUDA_R_32F;
}

static guint32 ptr_align(const void *p) {
  guint32 a = 256;
  while (a > 1 && (uintptr_t)p % a) a >>= 1;
  return a;
}

typedef struct {
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulPreference_t pref;
} LtObjs;

static void lt_objs_free(LtObjs *o) {
  if (o->pref) cublasLtMatmulPreferenceDestroy(o->pref);
  if (o->lc) cublasLtMatrixLayoutDestroy(o->lc);
  if (o->lb) cublasLtMatrixLayoutDestroy(o->lb);
  if (o->la) cublasLtMatrixLayoutDestroy(o->la);
  if (o->desc) cublasLtMatmulDescDestroy(o->desc);
}

static gboolean lt_matmul_objs(Cuda *c, const char *op, LtObjs *o, PxDType dt, const PxGemmMap *g, const void *A,
                               const void *B, void *C, float beta, const void *bias, GError **error) {
  cudaDataType_t ty = lt_type(dt);
  const gboolean ta = g->ta, tb = g->tb;
  const gint64 m = g->m, n = g->n, k = g->k, lda = g->lda, ldb = g->ldb, ldc = g->ldc;
  gint64 ar, ac, br, bc;
  px_gemm_layout_a(g, &ar, &ac);
  px_gemm_layout_b(g, &br, &bc);
  cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  LT(c, op, cublasLtMatmulDescCreate(&o->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  LT(c, op, cublasLtMatmulDescSetAttribute(o->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
  LT(c, op, cublasLtMatmulDescSetAttribute(o->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
  cublasLtEpilogue_t epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  LT(c, op, cublasLtMatmulDescSetAttribute(o->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
  if (bias) LT(c, op, cublasLtMatmulDescSetAttribute(o->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  LT(c, op, cublasLtMatrixLayoutCreate(&o->la, ty, ar, ac, lda));
  LT(c, op, cublasLtMatrixLayoutCreate(&o->lb, ty, br, bc, ldb));
  LT(c, op, cublasLtMatrixLayoutCreate(&o->lc, ty, m, n, ldc));

  guint32 al_a = ptr_align(A), al_b = ptr_align(B), al_c = ptr_align(C);
  g_autofree char *key = g_strdup_printf("%d %d %d %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT
                                         " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT
                                         " %d %d %u %u %u",
                                         dt, ta, tb, m, n, k, lda, ldb, ldc, bias != NULL, beta != 0, al_a, al_b, al_c);
  g_mutex_lock(&c->algo_lock);
  cublasLtMatmulAlgo_t *cached = g_hash_table_lookup(c->algos, key);
  g_mutex_unlock(&c->algo_lock);
  cublasLtMatmulAlgo_t algo;
  if (cached) {
    algo = *cached;
  } else {
    LT(c, op, cublasLtMatmulPreferenceCreate(&o->pref));
    size_t ws = WORKSPACE_BYTES;
    LT(c, op, cublasLtMatmulPreferenceSetAttribute(o->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    LT(c, op, cublasLtMatmulPreferenceSetAttribute(o->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
    LT(c, op, cublasLtMatmulPreferenceSetAttribute(o->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
    LT(c, op, cublasLtMatmulPreferenceSetAttribute(o->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c));
    LT(c, op, cublasLtMatmulPreferenceSetAttribute(o->pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c));
    cublasLtMatmulHeuristicResult_t res;
    int nres = 0;
    LT(c, op, cublasLtMatmulAlgoGetHeuristic(c->lt, o->desc, o->la, o->lb, o->lc, o->lc, o->pref, 1, &res, &nres));
    if (nres < 1)
      return px_fail(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_UNSUPPORTED,
                     "cuda device %d: %s: cuBLASLt has no algorithm for %s %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                     "x%" G_GINT64_FORMAT,
                     c->device, op, px_dtype_name(dt), m, n, k);
    algo = res.algo;
    g_mutex_lock(&c->algo_lock);
    g_hash_table_replace(c->algos, g_steal_pointer(&key), g_memdup2(&algo, sizeof algo));
    g_mutex_unlock(&c->algo_lock);
  }
  const float alpha = 1.0f;
  LT(c, op, cublasLtMatmul(c->lt, o->desc, &alpha, A, o->la, B, o->lb, &beta, C, o->lc, C, o->lc, &algo,
                           c->workspace, WORKSPACE_BYTES, c->st));
  return TRUE;
}

static gboolean lt_matmul(Cuda *c, const char *op, PxDType dt, PxGemmMap g, const void *A, const void *B, void *C,
                          float beta, const void *bias, GError **error) {
  LtObjs o = {0};
  gboolean ok = lt_matmul_objs(c, op, &o, dt, &g, A, B, C, beta, bias, error);
  lt_objs_free(&o);
  return ok;
}

/* y (N,out) = x (N,in) W^T + b: column-major y^T = W x^T (gemm_map.h). */
static gboolean cuda_linear_fwd(PxBackend *be, PxTensor *y, const PxTensor *x, const PxTensor *w,
                                const PxTensor *b, GError **error) {
  const char *op = "linear_fwd";
  Cuda *c = cx(be);
  gint64 N = rows(x), in = cols(w), out = rows(w);
  if (!enter(be, op, w->dtype, error)) return FALSE;
  gboolean epi = b && ptr_align(b->data) >= 16; /* the epilogue reads the bias vector-wise */
  if (!lt_matmul(c, op, w->dtype, px_gemm_linear_fwd(N, in, out), w->data, x->data, y->data, 0.f,
                 epi ? b->data : NULL, error))
    return FALSE;
  return !b || epi || KERN(pxk_bias_add(c->st, w->dtype, y->data, b->data, N, out));
}

/* dx (N,in) += dy W: A = w, B = dy; dw (out,in) += dy^T x: A = x, B = dy
 * transposed (gemm_map.h); db += column sums of dy. */
static gboolean cuda_linear_bwd(PxBackend *be, PxTensor *dx, PxTensor *dw, PxTensor *db, const PxTensor *dy,
                                const PxTensor *x, const PxTensor *w, GError **error) {
  const char *op = "linear_bwd";
  Cuda *c = cx(be);
  gint64 N = rows(x), in = cols(w), out = rows(w);
  PxDType dt = w->dtype;
  if (!enter(be, op, dt, error)) return FALSE;
  if (dx && !lt_matmul(c, op, dt, px_gemm_linear_dx(N, in, out), w->data, dy->data, dx->data, 1.f, NULL, error))
    return FALSE;
  if (dw && !lt_matmul(c, op, dt, px_gemm_linear_dw(N, in, out), x->data, dy->data, dw->data, 1.f, NULL, error))
    return FALSE;
  return !db || KERN(pxk_colsum(c->st, dt, PXK_COLSUM_PLAIN, db->data, dy->data, NULL, NULL, NULL, N, out));
}

/* ---- embeddings ---- */

static gboolean cuda_embedding_vp_fwd(PxBackend *be, PxTensor *out, const PxTensor *tokens, const PxTensor *wte,
                                      const PxTensor *wpe, gint64 v0, gint64 n_real, int B, int T, GError **error) {
  const char *op = "embedding_vp_fwd";
  Cuda *c = cx(be);
  return enter(be, op, wte->dtype, error) &&
         KERN(pxk_embedding_fwd(c->st, wte->dtype, out->data, tokens->data, wte->data, D(wpe), v0, n_real, NULL,
                                B, T, cols(wte)));
}

/* Half gradients: dwte through an fp32 slab of at most EMB_WS_BYTES (64 MiB,
 * the attention workspace's bound) from the caching pool under
 * PX_MEM_BUFFERS (kernels.cu: summed in fp32, added once), one pass over the
 * tokens per slab; f32 needs none. */
#define EMB_WS_BYTES ((gsize)64 << 20)
static gboolean cuda_embedding_vp_bwd(PxBackend *be, PxTensor *dwte, PxTensor *dwpe, const PxTensor *dout,
                                      const PxTensor *tokens, gint64 v0, gint64 n_real, int B, int T,
                                      GError **error) {
  const char *op = "embedding_vp_bwd";
  Cuda *c = cx(be);
  const gint64 C = cols(dout);
  if (!enter(be, op, dout->dtype, error)) return FALSE;
  g_autoptr(PxTensor) acc = NULL;
  gint64 acc_rows = 0;
  if (dout->dtype != PX_DTYPE_F32 && dwte && n_real > 0) {
    acc_rows = CLAMP((gint64)(EMB_WS_BYTES / sizeof(float)) / C, 1, n_real);
    acc = px_tensor_new(be, "embedding.dwte_f32", PX_DTYPE_F32, PX_MEM_BUFFERS, 2, (gint64[]){acc_rows, C}, error);
    if (!acc) return FALSE;
  }
  /* acc goes back to the pool behind the kernels, on the same stream */
  return KERN(pxk_embedding_bwd(c->st, dout->dtype, D(dwte), D(dwpe), dout->data, tokens->data, v0, n_real, B, T, C,
                                acc ? acc->data : NULL, acc_rows));
}

/* The whole vocabulary: a token outside it is reported at the next synchronisation. */
static gboolean cuda_embedding_fwd(PxBackend *be, PxTensor *out, const PxTensor *tokens, const PxTensor *wte,
                                   const PxTensor *wpe, int B, int T, GError **error) {
  const char *op = "embedding_fwd";
  Cuda *c = cx(be);
  return enter(be, op, wte->dtype, error) &&
         KERN(pxk_embedding_fwd(c->st, wte->dtype, out->data, tokens->data, wte->data, D(wpe), 0, rows(wte),
                                c->bad_dev, B, T, cols(wte)));
}

static gboolean cuda_embedding_bwd(PxBackend *be, PxTensor *dwte, PxTensor *dwpe, const PxTensor *dout,
                                   const PxTensor *tokens, int B, int T, GError **error) {
  return cuda_embedding_vp_bwd(be, dwte, dwpe, dout, tokens, 0, dwte ? rows(dwte) : 0, B, T, error);
}

/* ---- norms ---- */

static gboolean cuda_layernorm_fwd(PxBackend *be, PxTensor *out, PxTensor *mean, PxTensor *rstd, const PxTensor *x,
                                   const PxTensor *w, const PxTensor *b, double eps, GError **error) {
  const char *op = "layernorm_fwd";
  Cuda *c = cx(be);
  return enter(be, op, x->dtype, error) && STATS(mean, rstd) &&
         KERN(pxk_layernorm_fwd(c->st, x->dtype, out->data, mean->data, rstd->data, x->data, w->data, D(b), eps,
                                rows(x), cols(x)));
}

static gboolean cuda_layernorm_bwd(PxBackend *be, PxTensor *dx, PxTensor *dw, PxTensor *db, const PxTensor *dout,
                                   const PxTensor *x, const PxTensor *w, const PxTensor *mean, const PxTensor *rstd,
                                   GError **error) {
  const char *op = "layernorm_bwd";
  Cuda *c = cx(be);
  PxDType dt = x->dtype;
  gint64 N = rows(x), C = cols(x);
  return enter(be, op, dt, error) && STATS(mean, rstd) &&
         (!dx || KERN(pxk_layernorm_bwd_dx(c->st, dt, dx->data, dout->data, x->data, w->data, mean->data,
                                           rstd->data, N, C))) &&
         (!dw || KERN(pxk_colsum(c->st, dt, PXK_COLSUM_LN, dw->data, dout->data, x->data, mean->data, rstd->data,
                                 N, C))) &&
         (!db || KERN(pxk_colsum(c->st, dt, PXK_COLSUM_PLAIN, db->data, dout->data, NULL, NULL, NULL, N, C)));
}

static gboolean cuda_rmsnorm_fwd(PxBackend *be, PxTensor *out, PxTensor *rstd, const PxTensor *x, const PxTensor *w,
                                 double eps, GError **error) {
  const char *op = "rmsnorm_fwd";
  Cuda *c = cx(be);
  return enter(be, op, x->dtype, error) && STATS(rstd) &&
         KERN(pxk_rmsnorm_fwd(c->st, x->dtype, out->data, rstd->data, x->data, w->data, eps, rows(x), cols(x)));
}

static gboolean cuda_rmsnorm_bwd(PxBackend *be, PxTensor *dx, PxTensor *dw, const PxTensor *dout, const PxTensor *x,
                                 const PxTensor *w, const PxTensor *rstd, GError **error) {
  const char *op = "rmsnorm_bwd";
  Cuda *c = cx(be);
  PxDType dt = x->dtype;
  gint64 N = rows(x), C = cols(x);
  return enter(be, op, dt, error) && STATS(rstd) &&
         (!dx || KERN(pxk_rmsnorm_bwd_dx(c->st, dt, dx->data, dout->data, x->data, w->data, rstd->data, N, C))) &&
         (!dw || KERN(pxk_colsum(c->st, dt, PXK_COLSUM_RMS, dw->data, dout->data, x->data, NULL, rstd->data, N, C)));
}

/* ---- element-wise ---- */

static gboolean cuda_gelu_fwd(PxBackend *be, PxTensor *out, const PxTensor *x, GError **error) {
  const char *op = "gelu_fwd";
  Cuda *c = cx(be);
  return enter(be, op, x->dtype, error) && KERN(pxk_gelu_fwd(c->st, x->dtype, out->data, x->data, x->numel));
}

static gboolean cuda_gelu_bwd(PxBackend *be, PxTensor *dx, const PxTensor *dout, const PxTensor *x, GError **error) {
  const char *op = "gelu_bwd";
  Cuda *c = cx(be);
  return enter(be, op, x->dtype, error) &&
         KERN(pxk_gelu_bwd(c->st, x->dtype, dx->data, dout->data, x->data, x->numel));
}

static gboolean cuda_swiglu_fwd(PxBackend *be, PxTensor *out, const PxTensor *gate, const PxTensor *up,
                                GError **error) {
  const char *op = "swiglu_fwd";
  Cuda *c = cx(be);
  return enter(be, op, gate->dtype, error) &&
         KERN(pxk_swiglu_fwd(c->st, gate->dtype, out->data, gate->data, up->data, gate->numel));
}

static gboolean cuda_swiglu_bwd(PxBackend *be, PxTensor *dgate, PxTensor *dup, const PxTensor *dout,
                                const PxTensor *gate, const PxTensor *up, GError **error) {
  const char *op = "swiglu_bwd";
  Cuda *c = cx(be);
  return enter(be, op, gate->dtype, error) &&
         KERN(pxk_swiglu_bwd(c->st, gate->dtype, D(dgate), D(dup), dout->data, gate->data, up->data, gate->numel));
}

static PxkPos pxk_pos(const PxAttnShape *s) {
  PxkPos p = {s->pos_split, s->pos_start0, s->pos_start1};
  return p;
}

static gboolean cuda_rope_fwd(PxBackend *be, PxTensor *out, const PxTensor *in, const PxAttnShape *s, double theta,
                              GError **error) {
  const char *op = "rope_fwd";
  Cuda *c = cx(be);
  return enter(be, op, in->dtype, error) &&
         KERN(pxk_rope(c->st, in->dtype, out->data, in->data, s->B, s->T, s->heads, s->kv_heads, s->head_dim,
                       pxk_pos(s), theta, +1, 0));
}

static gboolean cuda_rope_bwd(PxBackend *be, PxTensor *din, const PxTensor *dout, const PxAttnShape *s,
                              double theta, GError **error) {
  const char *op = "rope_bwd";
  Cuda *c = cx(be);
  return enter(be, op, dout->dtype, error) &&
         KERN(pxk_rope(c->st, dout->dtype, din->data, dout->data, s->B, s->T, s->heads, s->kv_heads, s->head_dim,
                       pxk_pos(s), theta, -1, 1));
}

/* ---- attention ---- */

static gboolean att_head_dim(Cuda *c, const char *op, const PxAttnShape *s, GError **error) {
  if (s->head_dim <= PXK_ATT_MAX_HEAD_DIM) return TRUE;
  return px_fail(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_UNSUPPORTED,
                 "cuda device %d: %s: head_dim %d is above the kernels' %d", c->device, op, s->head_dim,
                 PXK_ATT_MAX_HEAD_DIM);
}

/* ---- attention on tensor cores ----
 * Flash-style blocking over query rows, the products by cuBLAS: for each
 * block of up to ATT_TC_BQ query rows [q0, q0 + nq) and the nk key rows its
 * queries can see (the causal prefix: nk = q0 + nq in the whole attention),
 * batched over (sequence, head) entries with pointer arrays
 * (cublasGemmBatchedEx, fp32 compute; bf16 / f16 inputs on tensor cores,
 * fp32 inputs in fp32):
 *   forward   S = Q K^T (fp32 tile), softmax kernel (scale, mask, row
 *             log-sum-exp saved, P in the tensors' type), O = P V;
 *   backward  S = Q K^T, dP = dO V^T, kernel (P = e^(scale S - lse),
 *             D, dS = P (dP - D) scale), dV += P^T dO, dK += dS^T Q,
 *             dQ += dS K (beta = 1).
 * Pointer arrays rather than strided batches: an entry's Q, K, V sit at
 * offsets b*T*W + h*hd in the interleaved rows (two strides, not one), and
 * GQA maps query head h to kv head h / (H/KV). Entries are ordered so that a
 * chunk of at most B*KV of them never writes one dK / dV row twice in one
 * GEMM (cuda_kernels.h PxkAttTc); the forward's chunks may hold all B*H.
 * Workspace: one block's tiles for a chunk of entries, at most
 * ATT_TC_WS_BYTES (64 MiB), from the backend's caching pool under
 * PX_MEM_BUFFERS (the planner's workspace allowance covers it); the pointer
 * arrays sit in front. Only when one entry's tile of 16 query rows is already
 * above the bound (T > 350 000 or so) is it that one tile.
 * Taken when head_dim is a multiple of 8 and every base pointer is 16-byte
 * aligned (rows and heads on 16-byte boundaries for the tensor cores), T >= 2
 * for the whole attention (its att buffer must hold B*H*T fp32 lse), and
 * PX_CUDA_ATTN is not "warp" (then, and otherwise, the warp-per-row kernels
 * of kernels.cu run, as before). */
#define ATT_TC_BQ 128
#define ATT_TC_WS_BYTES ((gsize)64 << 20)

static gboolean att_tc_aligned(const void *const *ps, int n) {
  for (int i = 0; i < n; i++)
    if (ps[i] && ptr_align(ps[i]) < 16) return FALSE;
  return TRUE;
}

static gboolean att_tc_takes(Cuda *c, const PxAttnShape *s, const void *const *ps, int n) {
  return !c->att_warp && s->head_dim % 8 == 0 && att_tc_aligned(ps, n);
}

/* ---- fused attention (PX_CUDA_ATTN=flash, flash_attn.cu) ----
 * Opt in: it has not run on a GPU yet; scripts/gpu-check.sh holds it to the
 * cpu backend (/cuda/attention-flash, /cuda/attention-blocks-flash) before it
 * can become the default. Taken for bf16 / f16 with head_dim 64, 80, 96 or 128, every
 * base pointer 16-byte aligned (16-byte tile loads), an sm_80+ device whose
 * opt-in shared memory holds the kernels' tiles (pxk_flash_smem) and a grid
 * under 2^31 CTAs; anything else goes to the paths above, unchanged. Its
 * state (lse fp32, -inf for a row that sees no key) is the tensor-core
 * path's, so a forward on one path and the backward on another agree. */
static gboolean att_flash_takes(Cuda *c, PxDType dt, const PxAttnShape *qs, const PxAttnShape *ks,
                                const void *const *ps, int n) {
  if (!c->att_flash || (dt != PX_DTYPE_BF16 && dt != PX_DTYPE_F16) || c->cc_major < 8) return FALSE;
  const size_t smem = pxk_flash_smem((int)dt, qs->head_dim);
  const gint64 ctas = (gint64)(MAX(qs->T, ks->T) + 63) / 64 * qs->B * qs->heads;
  return smem > 0 && smem <= (size_t)c->smem_optin && ctas <= G_MAXINT32 && att_tc_aligned(ps, n);
}

/* the position of token t under p (host copy of px_attn_pos for PxkPos) */
static int att_pos(PxkPos p, int t) {
  return p.split <= 0 ? t : t < p.split ? p.start0 + t : p.start1 + (t - p.split);
}

/* The keys of a block of query rows [q0, q0 + nq): 1 + the last key row
 * whose position is at or before the block's last query position (the rows
 * before it that the kernel still masks), at least 1. */
static int att_tc_nk(PxkPos qp, PxkPos kp, int Tk, int q0, int nq) {
  int pmax = INT_MIN, nk = 0;
  for (int t = q0; t < q0 + nq; t++) pmax = MAX(pmax, att_pos(qp, t));
  for (int j = 0; j < Tk; j++)
    if (att_pos(kp, j) <= pmax) nk = j + 1;
  return MAX(nk, 1);
}

/* C[e] (m x n, column-major) = op(A[e]) op(B[e]) + beta C[e], e < count (g: gemm_map.h) */
static gboolean att_gemm(Cuda *c, const char *op, PxGemmMap g, void **A, cudaDataType_t at, void **B,
                         cudaDataType_t bt, float beta, void **C, cudaDataType_t ct, int count, GError **error) {
  const float alpha = 1.f;
  LT(c, op, cublasGemmBatchedEx(c->blas, g.ta ? CUBLAS_OP_T : CUBLAS_OP_N, g.tb ? CUBLAS_OP_T : CUBLAS_OP_N, (int)g.m,
                                (int)g.n, (int)g.k, &alpha, (const void *const *)A, at, (int)g.lda,
                                (const void *const *)B, bt, (int)g.ldb, &beta, (void *const *)C, ct, (int)g.ldc, count,
                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return TRUE;
}

/* What one call does: q's queries (shape qs) against kv's keys and values
 * (ks); o: out (forward, written) or dout (backward); lse fp32 (attention's
 * att buffer or the block ops' lse); D: the backward's row dots, or NULL to
 * form them from the block;
 * dq, dkv: NULL in forward. */
typedef struct {
  PxDType dt;
  const PxAttnShape *qs, *ks;
  const void *q, *kv;
  void *o;
  float *lse;
  const float *D;
  void *dq, *dkv;
  float *dkv_acc; /* set by att_tc_bwd for half dkv: dK, dV in fp32 rows of 2*KV*hd, added once */
} AttTcCall;

static gboolean att_tc_blocks(PxBackend *be, Cuda *c, const char *op, const AttTcCall *x, GError **error) {
  const PxAttnShape *qs = x->qs, *ks = x->ks;
  const gboolean bwd = x->dq != NULL;
  const int B = qs->B, H = qs->heads, KV = qs->kv_heads, hd = qs->head_dim;
  const int W = (H + 2 * KV) * hd, Cq = H * hd, es = (int)px_dtype_size(x->dt);
  const int ldS = (ks->T + 7) / 8 * 8; /* tile rows on 16-byte boundaries */
  const gsize per = bwd ? 8 + 2 * (gsize)es : 4 + (gsize)es; /* bytes per tile element: S (+ dP) fp32, P (+ dS) */
  int bq = ATT_TC_BQ;
  while (bq > 16 && (gsize)bq * ldS * per > ATT_TC_WS_BYTES) bq /= 2;
  bq = MIN(bq, qs->T);
  const gint64 tile = (gint64)bq * ldS;
  const int n_all = B * H, n_max = bwd ? B * KV : n_all;
  const int E = (int)CLAMP((gint64)(ATT_TC_WS_BYTES / ((gsize)tile * per)), 1, n_max);
  const gsize ptr_bytes = ((gsize)PXK_ATP_N * E * sizeof(void *) + 255) / 256 * 256;
  const gsize t4 = (gsize)E * tile * 4, th = (gsize)E * tile * es; /* one fp32 / one dt region */
  const gsize bytes = ptr_bytes + (bwd ? 2 * t4 + 2 * th : t4 + th);
  g_autoptr(PxTensor) ws = px_tensor_new(be, "attention.workspace", PX_DTYPE_F32, PX_MEM_BUFFERS, 1,
                                         (gint64[]){(gint64)((bytes + 3) / 4)}, error);
  if (!ws) return FALSE;
  char *base = ws->data;
  void **ptrs = (void **)base;
  char *S = base + ptr_bytes, *P = S + t4, *dP = bwd ? P + th : NULL, *dS = bwd ? dP + t4 : NULL;
#define ARR(k) (ptrs + (gsize)(k) * E)
  const cudaDataType_t ty = lt_type(x->dt);
  const cudaDataType_t gty = x->dkv_acc ? CUDA_R_32F : ty; /* dK, dV */
  const int ldg = x->dkv_acc ? 2 * KV * hd : W;
  const PxkPos qp = pxk_pos(qs), kp = pxk_pos(ks);
  for (int n0 = 0; n0 < n_all; n0 += E)
    for (int q0 = 0; q0 < qs->T; q0 += bq) {
      const int nq = MIN(bq, qs->T - q0), nk = att_tc_nk(qp, kp, ks->T, q0, nq), ne = MIN(E, n_all - n0);
      PxkAttTc a = {.B = B, .Tq = qs->T, .Tk = ks->T, .H = H, .KV = KV, .hd = hd, .qp = qp, .kp = kp,
                    .n0 = n0, .E = ne, .q0 = q0, .nq = nq, .nk = nk, .ldS = ldS, .tile = tile,
                    .scale = (float)(1.0 / sqrt((double)hd))};
      /* ARR uses the chunk's full E as the stride; the kernel writes with a.E = ne: give it E */
      PxkAttTc pa = a;
      pa.E = E;
      if (!KERN(pxk_att_tc_ptrs(c->st, x->dt, ptrs, pa, x->q, x->kv, x->o, S, P, dP, dS, x->dq, x->dkv, x->dkv_acc)))
        return FALSE;
      /* S (nq x nk, row-major, ld ldS) = Q (nq x hd, ld W) K^T: column-major S^T = K^T' Q' */
      if (!att_gemm(c, op, px_gemm_att_s(nq, nk, hd, W, ldS), ARR(PXK_ATP_K), ty, ARR(PXK_ATP_Q), ty, 0.f,
                    ARR(PXK_ATP_S), CUDA_R_32F, ne, error))
        return FALSE;
      if (!bwd) {
        if (!KERN(pxk_att_tc_softmax_fwd(c->st, x->dt, a, (const float *)S, P, x->lse))) return FALSE;
        /* O (nq x hd, ld Cq) = P (nq x nk, ld ldS) V (nk x hd, ld W): column-major O^T = V^T P^T */
        if (!att_gemm(c, op, px_gemm_att_o(nq, nk, hd, W, Cq, ldS), ARR(PXK_ATP_V), ty, ARR(PXK_ATP_P), ty, 0.f,
                      ARR(PXK_ATP_O), ty, ne, error))
          return FALSE;
        continue;
      }
      /* dP (nq x nk, ld ldS) = dO (nq x hd, ld Cq) V^T */
      if (!att_gemm(c, op, px_gemm_att_dp(nq, nk, hd, W, Cq, ldS), ARR(PXK_ATP_V), ty, ARR(PXK_ATP_O), ty, 0.f,
                    ARR(PXK_ATP_DP), CUDA_R_32F, ne, error) ||
          !KERN(pxk_att_tc_softmax_bwd(c->st, x->dt, a, (const float *)S, (const float *)dP, P, dS, x->lse, x->D)))
        return FALSE;
      /* dV (nk x hd, ld W) += P^T dO: column-major dV^T += dO^T P */
      if (!att_gemm(c, op, px_gemm_att_dv(nq, nk, hd, Cq, ldS, ldg), ARR(PXK_ATP_O), ty, ARR(PXK_ATP_P), ty, 1.f,
                    ARR(PXK_ATP_DV), gty, ne, error))
        return FALSE;
      /* dK (nk x hd, ld W) += dS^T Q */
      if (!att_gemm(c, op, px_gemm_att_dk(nq, nk, hd, W, ldS, ldg), ARR(PXK_ATP_Q), ty, ARR(PXK_ATP_DS), ty, 1.f,
                    ARR(PXK_ATP_DK), gty, ne, error))
        return FALSE;
      /* dQ (nq x hd, ld W) += dS (nq x nk) K (nk x hd): column-major dQ^T += K^T dS^T */
      if (!att_gemm(c, op, px_gemm_att_dq(nq, nk, hd, W, ldS), ARR(PXK_ATP_K), ty, ARR(PXK_ATP_DS), ty, 1.f,
                    ARR(PXK_ATP_DQ), ty, ne, error))
        return FALSE;
    }
#undef ARR
  return TRUE;
}

/* The backward on the tensor-core path. A half dkv gets its dK, dV through
 * a zeroed fp32 buffer of its key and value columns (B*Tk rows of 2*KV*hd,
 * under PX_MEM_BUFFERS) that is added into it once at the end: the GEMMs
 * add into dK, dV once per block of query rows and per query head of a
 * group, which in the half type would round each time. dQ rows are written
 * by one GEMM each (one rounding) and go straight to dq. */
static gboolean att_tc_bwd(PxBackend *be, Cuda *c, const char *op, AttTcCall *x, GError **error) {
  const PxAttnShape *ks = x->ks;
  g_autoptr(PxTensor) acc = NULL;
  const gint64 nrows = (gint64)ks->B * ks->T; /* dkv's rows */
  if (x->dt != PX_DTYPE_F32) {
    acc = px_tensor_new_zeroed(be, "attention.dkv_f32", PX_DTYPE_F32, PX_MEM_BUFFERS, 2,
                               (gint64[]){nrows, 2 * (gint64)ks->kv_heads * ks->head_dim}, error);
    if (!acc) return FALSE;
    x->dkv_acc = acc->data;
  }
  /* acc goes back to the pool behind the kernels, on the same stream */
  return att_tc_blocks(be, c, op, x, error) &&
         (!acc || KERN(pxk_att_add_kv(c->st, x->dt, x->dkv, acc->data, nrows, ks->heads, ks->kv_heads, ks->head_dim)));
}

/* The whole attention. Whether the forward saved the lse (fp32, the first
 * B*H*T*4 bytes of att) or, as the cpu backend, the probabilities (the warp
 * kernels for f32 and for T = 1, cuda_kernels.h) is decided from what the
 * forward and the backward share: the shape, the dtype, qkv's address and
 * PX_CUDA_ATTN. The tensor-core path runs when it is decided on and out /
 * dout / dqkv are 16-byte aligned too; otherwise the warp kernels run, on
 * the lse when it was decided on. */
static gboolean att_full_tc(Cuda *c, const PxAttnShape *s, const PxTensor *qkv) {
  const void *ps[] = {qkv->data};
  return s->T >= 2 && att_tc_takes(c, s, ps, 1);
}

static gboolean cuda_attention_fwd(PxBackend *be, PxTensor *out, PxTensor *att, const PxTensor *qkv,
                                   const PxAttnShape *s, GError **error) {
  const char *op = "attention_fwd";
  Cuda *c = cx(be);
  if (!enter(be, op, qkv->dtype, error)) return FALSE;
  /* T >= 2: att (B,H,T,T) of a half type holds the B*H*T fp32 lse */
  if (s->T >= 2 && att_flash_takes(c, qkv->dtype, s, s, (const void *const[]){qkv->data, out->data}, 2)) {
    const PxkPos at_t = {0, 0, 0};
    return KERN(pxk_flash_fwd(c->st, qkv->dtype, out->data, att->data, qkv->data, qkv->data, s->B, s->T, s->T,
                              s->heads, s->kv_heads, s->head_dim, at_t, at_t));
  }
  const gboolean tc = att_full_tc(c, s, qkv);
  if (tc && att_tc_aligned((const void *const[]){out->data}, 1)) {
    AttTcCall x = {.dt = qkv->dtype, .qs = s, .ks = s, .q = qkv->data, .kv = qkv->data, .o = out->data,
                   .lse = att->data};
    return att_tc_blocks(be, c, op, &x, error);
  }
  return att_head_dim(c, op, s, error) &&
         KERN(pxk_attention_fwd(c->st, qkv->dtype, out->data, att->data, qkv->data, s->B, s->T, s->heads,
                                s->kv_heads, s->head_dim, tc ? 0 : pxk_att_saves_probs(qkv->dtype, s->T)));
}

static gboolean cuda_attention_bwd(PxBackend *be, PxTensor *dqkv, const PxTensor *dout, const PxTensor *qkv,
                                   const PxTensor *att, const PxAttnShape *s, GError **error) {
  const char *op = "attention_bwd";
  Cuda *c = cx(be);
  void *Dbuf = NULL;
  if (!enter(be, op, qkv->dtype, error)) return FALSE;
  if (s->T >= 2 &&
      att_flash_takes(c, qkv->dtype, s, s, (const void *const[]){qkv->data, dout->data, dqkv->data}, 3)) {
    /* D (B*H*T fp32): no out here, so the dQ kernel forms sum_j P dP */
    const PxkPos at_t = {0, 0, 0};
    if (!scratch(c, op, (gsize)s->B * s->heads * s->T * sizeof(float), &Dbuf, error)) return FALSE;
    gboolean ok = KERN(pxk_flash_bwd(c->st, qkv->dtype, dqkv->data, dqkv->data, dout->data, qkv->data, qkv->data,
                                     att->data, Dbuf, 0, s->B, s->T, s->T, s->heads, s->kv_heads, s->head_dim, at_t,
                                     at_t));
    return scratch_free(c, op, Dbuf, ok ? error : NULL) && ok;
  }
  const gboolean tc = att_full_tc(c, s, qkv);
  if (tc && att_tc_aligned((const void *const[]){dout->data, dqkv->data}, 2)) {
    AttTcCall x = {.dt = qkv->dtype, .qs = s, .ks = s, .q = qkv->data, .kv = qkv->data, .o = (void *)dout->data,
                   .lse = att->data, .dq = dqkv->data, .dkv = dqkv->data};
    return att_tc_bwd(be, c, op, &x, error);
  }
  if (!att_head_dim(c, op, s, error) ||
      !scratch(c, op, (gsize)s->B * s->heads * s->T * sizeof(float), &Dbuf, error))
    return FALSE;
  gboolean ok = KERN(pxk_attention_bwd(c->st, qkv->dtype, dqkv->data, dout->data, qkv->data, att->data, Dbuf, s->B,
                                       s->T, s->heads, s->kv_heads, s->head_dim,
                                       tc ? 0 : pxk_att_saves_probs(qkv->dtype, s->T)));
  return scratch_free(c, op, Dbuf, ok ? error : NULL) && ok;
}

/* Block attention (ring / flash attention's block): the same tensor-core
 * path over the keys up to the last one a query block can see, masked by
 * global position, lse fp32 whatever the tensors' type; the backward's D = rowsum(dout
 * * out) of the final output (the block holds only part of each row). Both
 * save the same state whichever path runs, so each op picks on its own. */
static gboolean cuda_attn_block_fwd(PxBackend *be, PxTensor *out, PxTensor *lse, const PxTensor *q,
                                    const PxTensor *kv, const PxAttnShape *qs, const PxAttnShape *ks, GError **error) {
  const char *op = "attn_block_fwd";
  Cuda *c = cx(be);
  if (!enter(be, op, q->dtype, error) || !STATS(lse)) return FALSE;
  if (att_flash_takes(c, q->dtype, qs, ks, (const void *const[]){out->data, q->data, kv->data}, 3))
    return KERN(pxk_flash_fwd(c->st, q->dtype, out->data, lse->data, q->data, kv->data, qs->B, qs->T, ks->T,
                              qs->heads, qs->kv_heads, qs->head_dim, pxk_pos(qs), pxk_pos(ks)));
  if (att_tc_takes(c, qs, (const void *const[]){out->data, q->data, kv->data}, 3)) {
    AttTcCall x = {.dt = q->dtype, .qs = qs, .ks = ks, .q = q->data, .kv = kv->data, .o = out->data,
                   .lse = lse->data};
    return att_tc_blocks(be, c, op, &x, error);
  }
  return att_head_dim(c, op, qs, error) &&
         KERN(pxk_attn_block_fwd(c->st, q->dtype, out->data, lse->data, q->data, kv->data, qs->B, qs->T, ks->T,
                                 qs->heads, qs->kv_heads, qs->head_dim, pxk_pos(qs), pxk_pos(ks)));
}

static gboolean cuda_attn_merge(PxBackend *be, PxTensor *out, PxTensor *lse, const PxTensor *out_b,
                                const PxTensor *lse_b, const PxAttnShape *s, GError **error) {
  const char *op = "attn_merge";
  Cuda *c = cx(be);
  /* out_b's dtype is the op's; out is of it, or the f32 accumulator (backend.c checked which) */
  return enter(be, op, out_b->dtype, error) && STATS(lse, lse_b) &&
         KERN(pxk_attn_merge(c->st, out_b->dtype, out->dtype, out->data, lse->data, out_b->data, lse_b->data, s->B,
                             s->T, s->heads, s->head_dim));
}

static gboolean cuda_attn_block_bwd(PxBackend *be, PxTensor *dq, PxTensor *dkv, const PxTensor *dout,
                                    const PxTensor *q, const PxTensor *kv, const PxTensor *out, const PxTensor *lse,
                                    const PxAttnShape *qs, const PxAttnShape *ks, GError **error) {
  const char *op = "attn_block_bwd";
  Cuda *c = cx(be);
  if (!enter(be, op, q->dtype, error) || !STATS(lse)) return FALSE;
  if (att_flash_takes(c, q->dtype, qs, ks, (const void *const[]){dq->data, dkv->data, dout->data, q->data, kv->data},
                      5)) {
    /* D = rowsum(dout * out) of the final output (the block holds only part of each row) */
    void *D = NULL;
    if (!scratch(c, op, (gsize)qs->B * qs->heads * qs->T * sizeof(float), &D, error)) return FALSE;
    gboolean ok = KERN(pxk_att_rowdot(c->st, q->dtype, D, dout->data, out->data, qs->B, qs->T, qs->heads,
                                      qs->head_dim)) &&
                  KERN(pxk_flash_bwd(c->st, q->dtype, dq->data, dkv->data, dout->data, q->data, kv->data, lse->data,
                                     D, 1, qs->B, qs->T, ks->T, qs->heads, qs->kv_heads, qs->head_dim, pxk_pos(qs),
                                     pxk_pos(ks)));
    return scratch_free(c, op, D, ok ? error : NULL) && ok;
  }
  if (att_tc_takes(c, qs, (const void *const[]){dq->data, dkv->data, dout->data, q->data, kv->data}, 5)) {
    void *D = NULL;
    if (!scratch(c, op, (gsize)qs->B * qs->heads * qs->T * sizeof(float), &D, error)) return FALSE;
    AttTcCall x = {.dt = q->dtype, .qs = qs, .ks = ks, .q = q->data, .kv = kv->data, .o = (void *)dout->data,
                   .lse = lse->data, .D = D, .dq = dq->data, .dkv = dkv->data};
    gboolean ok = KERN(pxk_att_rowdot(c->st, q->dtype, D, dout->data, out->data, qs->B, qs->T, qs->heads,
                                      qs->head_dim)) &&
                  att_tc_bwd(be, c, op, &x, error);
    return scratch_free(c, op, D, ok ? error : NULL) && ok;
  }
  return att_head_dim(c, op, qs, error) &&
         KERN(pxk_attn_block_bwd(c->st, q->dtype, dq->data, dkv->data, dout->data, q->data, kv->data, out->data,
                                 lse->data, qs->B, qs->T, ks->T, qs->heads, qs->kv_heads, qs->head_dim, pxk_pos(qs),
                                 pxk_pos(ks)));
}

/* ---- residual ---- */

static gboolean cuda_residual_fwd(PxBackend *be, PxTensor *out, const PxTensor *a, const PxTensor *b,
                                  GError **error) {
  const char *op = "residual_fwd";
  Cuda *c = cx(be);
  return enter(be, op, a->dtype, error) && KERN(pxk_add(c->st, a->dtype, out->data, a->data, b->data, a->numel));
}

static gboolean cuda_residual_bwd(PxBackend *be, PxTensor *da, PxTensor *db, const PxTensor *dout, GError **error) {
  const char *op = "residual_bwd";
  Cuda *c = cx(be);
  PxDType dt = dout->dtype;
  return enter(be, op, dt, error) &&
         (!da || KERN(pxk_add(c->st, dt, da->data, da->data, dout->data, dout->numel))) &&
         (!db || KERN(pxk_add(c->st, dt, db->data, db->data, dout->data, dout->numel)));
}

/* ---- cross-entropy ---- */

static gboolean cuda_cross_entropy_fwd(PxBackend *be, PxTensor *losses, PxTensor *loss_acc, const PxTensor *logits,
                                       const PxTensor *targets, GError **error) {
  const char *op = "cross_entropy_fwd";
  Cuda *c = cx(be);
  gint64 N = rows(logits);
  void *l64 = NULL;
  if (!enter(be, op, logits->dtype, error) || !STATS(losses) || !scratch(c, op, (gsize)N * sizeof(double), &l64, error))
    return FALSE;
  gboolean ok = KERN(pxk_ce_fwd(c->st, logits->dtype, losses->data, l64, logits->data, targets->data, c->bad_dev, N,
                                cols(logits))) &&
                (!loss_acc || KERN(pxk_sum_into(c->st, loss_acc->data, loss_acc->dtype, l64, N, (double)N)));
  return scratch_free(c, op, l64, ok ? error : NULL) && ok;
}

static gboolean cuda_cross_entropy_bwd(PxBackend *be, PxTensor *dlogits, const PxTensor *logits,
                                       const PxTensor *targets, double dloss, GError **error) {
  const char *op = "cross_entropy_bwd";
  Cuda *c = cx(be);
  gint64 N = rows(logits);
  return enter(be, op, logits->dtype, error) &&
         KERN(pxk_ce_bwd(c->st, logits->dtype, dlogits->data, logits->data, targets->data, dloss / N, c->bad_dev, N,
                         cols(logits)));
}

static gboolean cuda_ce_vp_max(PxBackend *be, PxTensor *rowmax, const PxTensor *logits, gint64 n_real,
                               GError **error) {
  const char *op = "ce_vp_max";
  Cuda *c = cx(be);
  return enter(be, op, logits->dtype, error) && STATS(rowmax) &&
         KERN(pxk_ce_vp_max(c->st, logits->dtype, rowmax->data, logits->data, rows(logits), cols(logits), n_real));
}

static gboolean cuda_ce_vp_stats(PxBackend *be, PxTensor *stats, const PxTensor *logits, const PxTensor *targets,
                                 const PxTensor *gmax, gint64 v0, gint64 n_real, GError **error) {
  const char *op = "ce_vp_stats";
  Cuda *c = cx(be);
  return enter(be, op, logits->dtype, error) && STATS(stats, gmax) &&
         KERN(pxk_ce_vp_stats(c->st, logits->dtype, stats->data, logits->data, targets->data, gmax->data, v0,
                              rows(logits), cols(logits), n_real));
}

static gboolean cuda_ce_vp_loss(PxBackend *be, PxTensor *losses, PxTensor *loss_acc, const PxTensor *gmax,
                                const PxTensor *stats, GError **error) {
  const char *op = "ce_vp_loss";
  Cuda *c = cx(be);
  gint64 N = gmax->numel;
  void *l64 = NULL;
  if (!set_device(c, op, error) || !STATS(losses, gmax, stats) ||
      !scratch(c, op, (gsize)N * sizeof(double), &l64, error))
    return FALSE;
  gboolean ok = KERN(pxk_ce_vp_loss(c->st, losses->data, l64, gmax->data, stats->data, N)) &&
                (!loss_acc || KERN(pxk_sum_into(c->st, loss_acc->data, loss_acc->dtype, l64, N, (double)N)));
  return scratch_free(c, op, l64, ok ? error : NULL) && ok;
}

static gboolean cuda_ce_vp_bwd(PxBackend *be, PxTensor *dlogits, const PxTensor *logits, const PxTensor *targets,
                               const PxTensor *gmax, const PxTensor *stats, gint64 v0, gint64 n_real, double dloss,
                               GError **error) {
  const char *op = "ce_vp_bwd";
  Cuda *c = cx(be);
  gint64 N = rows(logits);
  return enter(be, op, logits->dtype, error) && STATS(gmax, stats) &&
         KERN(pxk_ce_vp_bwd(c->st, logits->dtype, dlogits->data, logits->data, targets->data, gmax->data, stats->data,
                            v0, n_real, dloss / N, N, cols(logits)));
}

/* ---- optimizer and scalars ---- */

/* the constants as the cpu backend's f32 kernel rounds them */
static PxkAdamW adamw_consts(const PxAdamW *opt) {
  return (PxkAdamW){
    .lr = (float)opt->lr,
    .b1 = (float)opt->beta1,
    .b2 = (float)opt->beta2,
    .a1 = (float)(1 - opt->beta1),
    .a2 = (float)(1 - opt->beta2),
    .c1 = (float)(1 - pow(opt->beta1, opt->t)),
    .c2 = (float)(1 - pow(opt->beta2, opt->t)),
    .eps = (float)opt->eps,
    .wd = (float)opt->weight_decay,
    .grad_scale = opt->grad_scale,
  };
}

static gboolean cuda_adamw(PxBackend *be, PxTensor *param, const PxTensor *grad, PxTensor *m, PxTensor *v,
                           const PxAdamW *opt, const PxTensor *scale_t, const PxTensor *skip_if, GError **error) {
  const char *op = "adamw";
  Cuda *c = cx(be);
  PxkAdamW o = adamw_consts(opt);
  return enter(be, op, param->dtype, error) &&
         KERN(pxk_adamw(c->st, param->dtype, param->data, grad->data, m->data, v->data, param->numel, o, D(scale_t),
                        scale_t ? (int)scale_t->dtype : 0, D(skip_if), skip_if ? (int)skip_if->dtype : 0));
}

/* Every item in one launch: the tensors and their chunks copied to device
 * memory (from pageable memory: staged before cudaMemcpyAsync returns) on
 * the compute stream, freed behind the kernel. */
static gboolean cuda_adamw_multi(PxBackend *be, const PxAdamWItem *items, int n, const PxAdamW *opt,
                                 const PxTensor *scale_t, const PxTensor *skip_if, GError **error) {
  const char *op = "adamw_multi";
  Cuda *c = cx(be);
  if (!enter(be, op, items[0].param->dtype, error) || !enter(be, op, items[0].grad->dtype, error)) return FALSE;
  g_autoptr(GArray) chunks = g_array_new(FALSE, FALSE, sizeof(PxkChunk));
  g_autofree PxkAdamWTensor *ts = g_new0(PxkAdamWTensor, n);
  for (int i = 0; i < n; i++) {
    ts[i] = (PxkAdamWTensor){items[i].param->data, items[i].grad->data, items[i].m->data, items[i].v->data,
                             items[i].param->numel, (float)items[i].weight_decay};
    for (gint64 s = 0; s < ts[i].n; s += PXK_CHUNK) {
      PxkChunk ch = {i, s};
      g_array_append_val(chunks, ch);
    }
  }
  if (chunks->len == 0) return TRUE;
  gsize tb = sizeof(PxkAdamWTensor) * (gsize)n, cb = sizeof(PxkChunk) * chunks->len;
  tb = (tb + 15) / 16 * 16; /* the chunks after the tensors, aligned */
  g_autofree char *host = g_malloc0(tb + cb);
  memcpy(host, ts, sizeof(PxkAdamWTensor) * (gsize)n);
  memcpy(host + tb, chunks->data, cb);
  void *dev = NULL;
  if (!scratch(c, op, tb + cb, &dev, error)) return FALSE;
  PxkAdamW o = adamw_consts(opt); /* o.wd unused: each tensor's own */
  cudaError_t ce = cudaMemcpyAsync(dev, host, tb + cb, cudaMemcpyHostToDevice, c->st);
  gboolean ok = ce == cudaSuccess ? KERN(pxk_adamw_multi(c->st, items[0].param->dtype, items[0].grad->dtype, dev,
                                                         (const PxkChunk *)((char *)dev + tb), (int)chunks->len, o,
                                                         D(scale_t), scale_t ? (int)scale_t->dtype : 0, D(skip_if),
                                                         skip_if ? (int)skip_if->dtype : 0))
                                  : cu_fail(error, c->device, op, "cudaMemcpyAsync", ce);
  return scratch_free(c, op, dev, ok ? error : NULL) && ok;
}

static gboolean cuda_sum_squares_acc(PxBackend *be, PxTensor *acc, const PxTensor *t, GError **error) {
  const char *op = "sum_squares";
  Cuda *c = cx(be);
  int parts = pxk_sumsq_parts(t->numel);
  void *part = NULL;
  if (!enter(be, op, t->dtype, error) || !scratch(c, op, (gsize)parts * sizeof(double), &part, error)) return FALSE;
  gboolean ok = KERN(pxk_sumsq_partial(c->st, t->dtype, t->data, t->numel, part, parts)) &&
                KERN(pxk_sum_into(c->st, acc->data, acc->dtype, part, parts, 1.0));
  return scratch_free(c, op, part, ok ? error : NULL) && ok;
}

/* Every tensor of one dtype in one launch: the tensors and their chunks
 * copied to device memory behind the partial sums, added into acc by one more. */
static gboolean cuda_sum_squares_multi(PxBackend *be, PxTensor *acc, const PxTensor *const *ts, int n,
                                       GError **error) {
  const char *op = "sum_squares_multi";
  Cuda *c = cx(be);
  if (!enter(be, op, ts[0]->dtype, error)) return FALSE;
  g_autoptr(GArray) chunks = g_array_new(FALSE, FALSE, sizeof(PxkChunk));
  g_autofree PxkSpan *spans = g_new0(PxkSpan, n);
  for (int i = 0; i < n; i++) {
    spans[i] = (PxkSpan){ts[i]->data, ts[i]->numel};
    for (gint64 s = 0; s < spans[i].n; s += PXK_CHUNK) {
      PxkChunk ch = {i, s};
      g_array_append_val(chunks, ch);
    }
  }
  if (chunks->len == 0) return TRUE;
  gsize pb = sizeof(double) * chunks->len, sb = (sizeof(PxkSpan) * (gsize)n + 15) / 16 * 16;
  gsize cb = sizeof(PxkChunk) * chunks->len;
  g_autofree char *host = g_malloc0(sb + cb);
  memcpy(host, spans, sizeof(PxkSpan) * (gsize)n);
  memcpy(host + sb, chunks->data, cb);
  void *dev = NULL;
  if (!scratch(c, op, pb + sb + cb, &dev, error)) return FALSE; /* partial sums, spans, chunks */
  char *d = dev;
  cudaError_t ce = cudaMemcpyAsync(d + pb, host, sb + cb, cudaMemcpyHostToDevice, c->st);
  gboolean ok = ce == cudaSuccess
                    ? KERN(pxk_sumsq_multi(c->st, ts[0]->dtype, (const PxkSpan *)(d + pb), (const PxkChunk *)(d + pb + sb),
                                           (int)chunks->len, (double *)d)) &&
                          KERN(pxk_sum_into(c->st, acc->data, acc->dtype, (const double *)d, chunks->len, 1.0))
                    : cu_fail(error, c->device, op, "cudaMemcpyAsync", ce);
  return scratch_free(c, op, dev, ok ? error : NULL) && ok;
}

static gboolean cuda_check_finite(PxBackend *be, PxTensor *flag, const PxTensor *t, GError **error) {
  const char *op = "check_finite";
  Cuda *c = cx(be);
  return enter(be, op, t->dtype, error) &&
         KERN(pxk_check_finite(c->st, t->dtype, flag->data, flag->dtype, t->data, t->numel));
}

static gboolean cuda_clip_coef(PxBackend *be, PxTensor *coef, const PxTensor *sumsq, double max_norm, GError **error) {
  const char *op = "clip_coef";
  Cuda *c = cx(be);
  return set_device(c, op, error) &&
         KERN(pxk_clip_coef(c->st, coef->data, coef->dtype, sumsq->data, sumsq->dtype, max_norm));
}

static gboolean cuda_rows_gather(PxBackend *be, PxTensor *dst, const PxTensor *src, const PxTensor *idx,
                                 const PxTensor *wt, int k, GError **error) {
  const char *op = "rows_gather";
  Cuda *c = cx(be);
  return enter(be, op, dst->dtype, error) &&
         KERN(pxk_rows_gather(c->st, dst->dtype, dst->data, src->data, idx->data, D(wt), rows(dst), k, cols(dst),
                              rows(src), c->bad_dev));
}

static gboolean cuda_rows_dot(PxBackend *be, PxTensor *out, const PxTensor *a, const PxTensor *b, const PxTensor *idx,
                              int k, GError **error) {
  const char *op = "rows_dot";
  Cuda *c = cx(be);
  return enter(be, op, a->dtype, error) &&
         KERN(pxk_rows_dot(c->st, a->dtype, out->data, a->data, b->data, idx->data, rows(a), k, cols(a), rows(b),
                           c->bad_dev));
}

static gboolean cuda_router_topk(PxBackend *be, PxTensor *probs, PxTensor *topi, PxTensor *topv, PxTensor *psum,
                                 const PxTensor *logits, int k, GError **error) {
  const char *op = "router_topk";
  Cuda *c = cx(be);
  void *p64 = NULL;
  if (!enter(be, op, logits->dtype, error) || !scratch(c, op, (gsize)logits->numel * sizeof(double), &p64, error))
    return FALSE;
  gboolean ok = KERN(pxk_router_topk(c->st, logits->dtype, probs->data, topi->data, topv->data, psum->data, p64,
                                     logits->data, rows(logits), cols(logits), k));
  return scratch_free(c, op, p64, ok ? error : NULL) && ok;
}

static gboolean cuda_router_bwd(PxBackend *be, PxTensor *dlogits, const PxTensor *probs, const PxTensor *topi,
                                const PxTensor *dgate, const PxTensor *fcnt, double daux, gboolean norm_topk, int k,
                                GError **error) {
  const char *op = "router_bwd";
  Cuda *c = cx(be);
  return enter(be, op, probs->dtype, error) &&
         KERN(pxk_router_bwd(c->st, probs->dtype, dlogits->data, probs->data, topi->data, dgate->data, D(fcnt), daux,
                             norm_topk, rows(probs), cols(probs), k, c->bad_dev));
}

static gboolean cuda_scale(PxBackend *be, PxTensor *t, double alpha, GError **error) {
  const char *op = "scale";
  Cuda *c = cx(be);
  return enter(be, op, t->dtype, error) && KERN(pxk_scale(c->st, t->dtype, t->data, alpha, t->numel));
}

/* dst (=|+=) src across f32 / f64 / bf16 / f16 (the mixed-precision cast:
 * master weights to half parameters, half gradients to fp32). */
static gboolean cuda_cast(PxBackend *be, PxTensor *dst, const PxTensor *src, gboolean accumulate, GError **error) {
  const char *op = "cast";
  Cuda *c = cx(be);
  return set_device(c, op, error) &&
         KERN(pxk_cast(c->st, dst->data, dst->dtype, src->data, src->dtype, dst->numel, accumulate));
}

/* ---- the backend ---- */

static void cuda_destroy(Cuda *c) {
  if (!c) return;
  if (cudaSetDevice(c->device) == cudaSuccess) {
    if (c->st) cudaStreamSynchronize(c->st);
    if (c->blas) cublasDestroy(c->blas);
    if (c->lt) cublasLtDestroy(c->lt);
    if (c->workspace) cudaFree(c->workspace);
    if (c->bad) cudaFreeHost(c->bad);
    if (c->st) cudaStreamDestroy(c->st);
    if (c->pool) cudaMemPoolDestroy(c->pool);
  }
  if (c->anchors) g_ptr_array_free(c->anchors, TRUE);
  cudaGetLastError();
  if (c->algos) g_hash_table_destroy(c->algos);
  g_mutex_clear(&c->algo_lock);
  g_mutex_clear(&c->clock_lock);
  g_free(c);
}

static void cuda_free(PxBackend *be) { cuda_destroy(cx(be)); }

static gboolean cuda_init(Cuda *c, GError **error) {
  const char *op = "create";
  CU(c, op, cudaSetDevice(c->device));
  CU(c, op, cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking));
  struct cudaMemPoolProps props;
  memset(&props, 0, sizeof props);
  props.allocType = cudaMemAllocationTypePinned;
  props.handleTypes = cudaMemHandleTypeNone;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = c->device;
  CU(c, op, cudaMemPoolCreate(&c->pool, &props));
  guint64 keep = G_MAXUINT64; /* freed memory stays in the pool (a step's pattern repeats) */
  CU(c, op, cudaMemPoolSetAttribute(c->pool, cudaMemPoolAttrReleaseThreshold, &keep));
  LT(c, op, cublasLtCreate(&c->lt));
  CU(c, op, cudaMalloc(&c->workspace, WORKSPACE_BYTES));
  LT(c, op, cublasCreate(&c->blas));
  LT(c, op, cublasSetStream(c->blas, c->st));
  /* the same workspace as cuBLASLt's: both queue only on st, one after the other */
  LT(c, op, cublasSetWorkspace(c->blas, c->workspace, WORKSPACE_BYTES));
  const char *att = g_getenv("PX_CUDA_ATTN");
  c->att_warp = att && g_strcmp0(att, "warp") == 0;
  c->att_flash = att && g_strcmp0(att, "flash") == 0;
  if (c->att_flash) { /* what att_flash_takes checks; nothing more for the default paths */
    CU(c, op, cudaDeviceGetAttribute(&c->smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, c->device));
    CU(c, op, cudaDeviceGetAttribute(&c->cc_major, cudaDevAttrComputeCapabilityMajor, c->device));
  }
  CU(c, op, cudaHostAlloc((void **)&c->bad, 2 * sizeof(int), cudaHostAllocMapped));
  c->bad[0] = c->bad[1] = 0;
  CU(c, op, cudaHostGetDevicePointer((void **)&c->bad_dev, c->bad, 0));
  Anchor *origin = g_new0(Anchor, 1);
  g_ptr_array_add(c->anchors, origin);
  CU(c, op, cudaEventCreate(&origin->ev));
  return TRUE;
}

static const PxBackendOps cuda_ops = {
  .name = "cuda",
  .free = cuda_free,
  .raw_alloc = cuda_raw_alloc,
  .raw_free = cuda_raw_free,
  .raw_trim = cuda_raw_trim,
  .upload = cuda_upload,
  .download = cuda_download,
  .memset = cuda_memset,
  .synchronize = cuda_synchronize,
  .copy = cuda_copy,
  .host_alloc = cuda_host_alloc,
  .host_free = cuda_host_free,
  .host_pinned = TRUE,
  .streams = &cuda_stream_ops,
  .linear_fwd = cuda_linear_fwd,
  .linear_bwd = cuda_linear_bwd,
  .embedding_fwd = cuda_embedding_fwd,
  .embedding_bwd = cuda_embedding_bwd,
  .layernorm_fwd = cuda_layernorm_fwd,
  .layernorm_bwd = cuda_layernorm_bwd,
  .rmsnorm_fwd = cuda_rmsnorm_fwd,
  .rmsnorm_bwd = cuda_rmsnorm_bwd,
  .gelu_fwd = cuda_gelu_fwd,
  .gelu_bwd = cuda_gelu_bwd,
  .swiglu_fwd = cuda_swiglu_fwd,
  .swiglu_bwd = cuda_swiglu_bwd,
  .rope_fwd = cuda_rope_fwd,
  .rope_bwd = cuda_rope_bwd,
  .attention_fwd = cuda_attention_fwd,
  .attention_bwd = cuda_attention_bwd,
  .attn_block_fwd = cuda_attn_block_fwd,
  .attn_merge = cuda_attn_merge,
  .attn_block_bwd = cuda_attn_block_bwd,
  .residual_fwd = cuda_residual_fwd,
  .residual_bwd = cuda_residual_bwd,
  .cross_entropy_fwd = cuda_cross_entropy_fwd,
  .cross_entropy_bwd = cuda_cross_entropy_bwd,
  .adamw = cuda_adamw,
  .adamw_multi = cuda_adamw_multi,
  .sum_squares_multi = cuda_sum_squares_multi,
  .embedding_vp_fwd = cuda_embedding_vp_fwd,
  .embedding_vp_bwd = cuda_embedding_vp_bwd,
  .ce_vp_max = cuda_ce_vp_max,
  .ce_vp_stats = cuda_ce_vp_stats,
  .ce_vp_loss = cuda_ce_vp_loss,
  .ce_vp_bwd = cuda_ce_vp_bwd,
  .sum_squares_acc = cuda_sum_squares_acc,
  .check_finite = cuda_check_finite,
  .clip_coef = cuda_clip_coef,
  .scale = cuda_scale,
  .rows_gather = cuda_rows_gather,
  .rows_dot = cuda_rows_dot,
  .router_topk = cuda_router_topk,
  .router_bwd = cuda_router_bwd,
  .cast = cuda_cast,
  .half_params = FALSE, /* half parameters beside f32 activations: backend.c promotes them through f32 copies (cast) */
  .half_acts = TRUE,    /* every op on bf16 / f16 activations and parameters of that dtype, statistics f32 */
};

/* The registry's constructor (backend_reg.c): device index modulo the
 * devices present; no device is PX_BACKEND_ERROR_UNSUPPORTED in one line. */
PxBackend *px_backend_cuda_create(int device, GError **error) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n < 1) {
    cudaGetLastError();
    px_fail(error, PX_BACKEND_ERROR, PX_BACKEND_ERROR_UNSUPPORTED, "backend 'cuda': no CUDA device (%s)",
            e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found none");
    return NULL;
  }
  Cuda *c = g_new0(Cuda, 1);
  c->device = ((device % n) + n) % n;
  g_mutex_init(&c->algo_lock);
  g_mutex_init(&c->clock_lock);
  c->anchors = g_ptr_array_new_with_free_func(anchor_free);
  c->algos = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  if (!cuda_init(c, error)) {
    cuda_destroy(c);
    return NULL;
  }
  return px_backend_alloc_base(&cuda_ops, c->device, c);
}
