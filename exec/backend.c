/* backend.c — what every backend shares: tensor allocation and the memory
 * counters, host <-> device copies, and the shape/dtype checks of every op
 * before it is dispatched through the backend's table. */
#include "backend_impl.h"
#include "check.h"
#include "half.h"
#include <string.h>

G_DEFINE_QUARK(px-backend-error-quark, px_backend_error)

#define fail(error, code, ...) px_fail(error, PX_BACKEND_ERROR, code, __VA_ARGS__)

gsize px_dtype_size(PxDType dtype) {
  switch (dtype) {
  case PX_DTYPE_F32: return 4;
  case PX_DTYPE_F64: return 8;
  case PX_DTYPE_I32: return 4;
  case PX_DTYPE_BF16: return 2;
  case PX_DTYPE_F16: return 2;
  }
  return 0;
}

const char *px_dtype_name(PxDType dtype) {
  switch (dtype) {
  case PX_DTYPE_F32: return "f32";
  case PX_DTYPE_F64: return "f64";
  case PX_DTYPE_I32: return "i32";
  case PX_DTYPE_BF16: return "bf16";
  case PX_DTYPE_F16: return "f16";
  }
  return "?";
}

gboolean px_dtype_is_half(PxDType dtype) { return dtype == PX_DTYPE_BF16 || dtype == PX_DTYPE_F16; }

const char *px_mem_category_name(PxMemCategory c) {
  static const char *names[] = {"weights", "gradients", "optimizer", "activations", "buffers"};
  return (unsigned)c < PX_MEM_N_CATEGORIES ? names[c] : "?";
}

static void pool_list_free(gpointer list) { g_slist_free(list); }

PxBackend *px_backend_alloc_base(const PxBackendOps *ops, int device, void *impl) {
  PxBackend *be = g_new0(PxBackend, 1);
  be->ops = ops;
  be->device = device;
  be->impl = impl;
  be->pool = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, pool_list_free);
  be->poison = !g_strcmp0(g_getenv("PX_POISON"), "1");
  be->t0 = g_get_monotonic_time();
  g_mutex_init(&be->lock);
  be->compute = px_backend_make_compute_stream(be, NULL);
  g_assert(be->compute); /* the inline / device default stream cannot fail to exist */
  return be;
}

const char *const *px_backend_list(void) {
  static const char **names;
  if (g_once_init_enter(&names)) {
    gsize n;
    const PxBackendReg *reg = px_backend_registry(&n);
    const char **v = g_new0(const char *, n + 1);
    for (gsize i = 0; i < n; i++) v[i] = reg[i].name;
    g_once_init_leave(&names, v);
  }
  return names;
}

PxBackend *px_backend_new(const char *name, int device, GError **error) {
  gsize n;
  const PxBackendReg *reg = px_backend_registry(&n);
  for (gsize i = 0; i < n; i++)
    if (!g_strcmp0(name, reg[i].name)) return reg[i].create(device, error);
  if (!g_strcmp0(name, "cuda")) {
    fail(error, PX_BACKEND_ERROR_UNSUPPORTED,
         "backend 'cuda' (device %d) is not built in (it needs the CUDA toolkit, -DPX_CUDA=ON and the sources of exec/cuda/)", device);
    return NULL;
  }
  g_autofree char *known = g_strjoinv(", ", (char **)px_backend_list());
  fail(error, PX_BACKEND_ERROR_UNSUPPORTED, "unknown backend '%s' (%s)", name ? name : "", known);
  return NULL;
}

/* ---- raw blocks: the backend's own, or for a host backend its device's host buffers ---- */

static gboolean block_alloc(PxBackend *be, gsize size, void **out, GError **error) {
  PxBackend *dev = be->host_of;
  if (!dev || !dev->ops->host_alloc) return be->ops->raw_alloc(be, size, out, error);
  GError *err = NULL;
  if (dev->ops->host_alloc(dev, size, out, &err)) return TRUE;
  /* no pinned memory: this block pageable, from the host backend itself */
  if (!be->ops->raw_alloc(be, size, out, error)) {
    g_clear_error(&err);
    return FALSE;
  }
  g_mutex_lock(&be->lock);
  g_hash_table_add(be->pageable, *out);
  static gint warned_once; /* one line per process, whatever the ranks */
  gboolean warn = !be->host_warned && g_atomic_int_compare_and_exchange(&warned_once, 0, 1);
  be->host_warned = TRUE;
  g_mutex_unlock(&be->lock);
  g_mutex_lock(&dev->lock);
  dev->mem.host_pageable = TRUE;
  g_mutex_unlock(&dev->lock);
  if (warn)
    g_printerr("warning: %s; host buffers fall back to pageable memory (their copies to and from the device "
               "synchronous)\n", err->message);
  g_error_free(err);
  return TRUE;
}

static void block_free(PxBackend *be, void *p) {
  PxBackend *dev = be->host_of;
  gboolean own = !dev || !dev->ops->host_alloc;
  if (!own) {
    g_mutex_lock(&be->lock);
    own = g_hash_table_remove(be->pageable, p);
    g_mutex_unlock(&be->lock);
  }
  if (own) be->ops->raw_free(be, p);
  else dev->ops->host_free(dev, p);
}

PxBackend *px_backend_new_host(PxBackend *device, GError **error) {
  g_return_val_if_fail(device, NULL);
  PxBackend *be = px_backend_new("cpu", 0, error);
  if (!be) return NULL;
  be->host_of = device;
  be->pageable = g_hash_table_new(g_direct_hash, g_direct_equal);
  return be;
}

gboolean px_backend_host_pinned(PxBackend *host) {
  g_return_val_if_fail(host, FALSE);
  if (!host->host_of || !host->host_of->ops->host_alloc || !host->host_of->ops->host_pinned) return FALSE;
  g_mutex_lock(&host->lock);
  gboolean fell_back = host->host_warned;
  g_mutex_unlock(&host->lock);
  return !fell_back;
}

/* A host backend's tensor bytes, counted in its device's host-buffer category. */
static void host_count(PxBackend *be, gint64 delta) {
  PxBackend *dev = be->host_of;
  if (!dev) return;
  g_mutex_lock(&dev->lock);
  dev->mem.host_current += delta;
  dev->mem.host_peak = MAX(dev->mem.host_peak, dev->mem.host_current);
  g_mutex_unlock(&dev->lock);
}

/* px_backend_trim; *released: what the backend's allocator gave back besides
 * (raw_trim) */
static gsize trim(PxBackend *be, gsize *released) {
  g_mutex_lock(&be->lock);
  GHashTable *old = be->pool;
  be->pool = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, pool_list_free);
  gsize freed = (gsize)be->mem.cached;
  be->mem.reserved -= be->mem.cached;
  be->mem.cached = 0;
  g_mutex_unlock(&be->lock);
  GHashTableIter it;
  gpointer key, list;
  g_hash_table_iter_init(&it, old);
  while (g_hash_table_iter_next(&it, &key, &list))
    for (GSList *l = list; l; l = l->next) block_free(be, l->data);
  g_hash_table_destroy(old);
  *released = be->ops->raw_trim ? be->ops->raw_trim(be) : 0;
  return freed;
}

gsize px_backend_trim(PxBackend *be) {
  gsize released = 0;
  return trim(be, &released);
}

void px_backend_free(PxBackend *be) {
  if (!be) return;
  px_stream_free(be->compute);
  px_backend_trim(be);
  g_hash_table_destroy(be->pool);
  if (be->pageable) g_hash_table_destroy(be->pageable);
  if (be->ops->free) be->ops->free(be);
  g_mutex_clear(&be->lock);
  g_free(be);
}

const char *px_backend_name(const PxBackend *be) { return be->ops->name; }

int px_backend_device(const PxBackend *be) { return be->device; }

double px_backend_clock(PxBackend *be) { return (g_get_monotonic_time() - be->t0) / 1e6; }

gboolean px_backend_synchronize(PxBackend *be, GError **error) {
  return be->ops->synchronize ? be->ops->synchronize(be, error) : TRUE;
}

void px_backend_mem_stats(PxBackend *be, PxMemStats *out) {
  g_mutex_lock(&be->lock);
  *out = be->mem;
  g_mutex_unlock(&be->lock);
}

void px_backend_mem_reset_peak(PxBackend *be) {
  g_mutex_lock(&be->lock);
  for (int c = 0; c < PX_MEM_N_CATEGORIES; c++) be->mem.peak[c] = be->mem.current[c];
  be->mem.total_peak = be->mem.total_current;
  be->mem.reserved_peak = be->mem.reserved;
  be->mem.host_peak = be->mem.host_current;
  g_mutex_unlock(&be->lock);
}

static void mem_count(PxBackend *be, PxMemCategory c, gint64 delta) {
  be->mem.current[c] += delta;
  be->mem.total_current += delta;
  if (be->mem.current[c] > be->mem.peak[c]) be->mem.peak[c] = be->mem.current[c];
  if (be->mem.total_current > be->mem.total_peak) be->mem.total_peak = be->mem.total_current;
}

/* ---- the caching pool ----
 * Blocks are rounded up to a size class: multiples of 512 bytes up to
 * 64 KiB, then eight classes per doubling (at most 12.5% over the request).
 * Each class keeps a free list; a freed block goes back to its list, a new
 * tensor takes one from its class's list before asking the device. The pool
 * keeps at most as many cached bytes as the peak of live blocks (a step's
 * pattern repeats, so that is enough to serve the next one), and on a failed
 * device allocation gives its cache back and tries once more. */

#define POOL_MIN 512
#define POOL_FINE 65536

static gsize pool_class(gsize bytes) {
  if (bytes <= POOL_FINE) return (MAX(bytes, 1) + POOL_MIN - 1) / POOL_MIN * POOL_MIN;
  guint k = g_bit_storage(bytes - 1) - 1; /* 2^k <= bytes - 1 < 2^(k+1) */
  gsize step = (gsize)1 << (k - 3);
  return (bytes + step - 1) / step * step;
}

static gboolean pool_alloc(PxBackend *be, gsize bytes, void **out, GError **error) {
  if (bytes > G_MAXSIZE / 2)
    return fail(error, PX_BACKEND_ERROR_ALLOC, "%" G_GSIZE_FORMAT " bytes is more than any device holds",
                bytes);
  gsize size = pool_class(bytes);
  *out = NULL;
  g_mutex_lock(&be->lock);
  GSList *list = g_hash_table_lookup(be->pool, GSIZE_TO_POINTER(size));
  if (list) {
    *out = list->data;
    g_hash_table_steal(be->pool, GSIZE_TO_POINTER(size));
    GSList *rest = g_slist_delete_link(list, list);
    if (rest) g_hash_table_insert(be->pool, GSIZE_TO_POINTER(size), rest);
    be->mem.cached -= (gint64)size;
  }
  g_mutex_unlock(&be->lock);
  if (!*out) {
    GError *err = NULL;
    if (!block_alloc(be, size, out, &err)) {
      /* worth a second try when the cache or the backend's allocator gave memory back */
      gsize released = 0;
      if (!trim(be, &released) && !released) {
        g_propagate_error(error, err);
        return FALSE;
      }
      g_clear_error(&err);
      if (!block_alloc(be, size, out, error)) return FALSE;
    }
    g_mutex_lock(&be->lock);
    be->mem.reserved += (gint64)size;
    be->mem.reserved_peak = MAX(be->mem.reserved_peak, be->mem.reserved);
    g_mutex_unlock(&be->lock);
  }
  g_mutex_lock(&be->lock);
  be->live_blocks += (gint64)size;
  be->live_blocks_peak = MAX(be->live_blocks_peak, be->live_blocks);
  g_mutex_unlock(&be->lock);
  return TRUE;
}

static void pool_free(PxBackend *be, void *p, gsize bytes) {
  gsize size = pool_class(bytes);
  g_mutex_lock(&be->lock);
  be->live_blocks -= (gint64)size;
  gboolean keep = !be->pool_off && be->mem.cached + (gint64)size <= be->live_blocks_peak;
  if (keep) {
    GSList *list = g_hash_table_lookup(be->pool, GSIZE_TO_POINTER(size));
    g_hash_table_steal(be->pool, GSIZE_TO_POINTER(size));
    g_hash_table_insert(be->pool, GSIZE_TO_POINTER(size), g_slist_prepend(list, p));
    be->mem.cached += (gint64)size;
  } else {
    be->mem.reserved -= (gint64)size;
  }
  g_mutex_unlock(&be->lock);
  if (!keep) block_free(be, p);
}

/* Fill name, dtype, shape, numel, bytes of a tensor header. */
static gboolean tensor_header(PxTensor *t, const char *name, PxDType dtype, int ndim,
                              const gint64 *shape, GError **error) {
  if (ndim < 1 || ndim > PX_TENSOR_MAX_DIMS)
    return fail(error, PX_BACKEND_ERROR_SHAPE, "tensor %s: %d dimensions (1..%d)", name, ndim,
                PX_TENSOR_MAX_DIMS);
  t->numel = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 1)
      return fail(error, PX_BACKEND_ERROR_SHAPE, "tensor %s: dimension %d is %" G_GINT64_FORMAT,
                  name, i, shape[i]);
    t->shape[i] = shape[i];
    t->numel *= shape[i];
  }
  t->ndim = ndim;
  t->dtype = dtype;
  t->bytes = (gsize)t->numel * px_dtype_size(dtype);
  t->name = g_strdup(name ? name : "");
  return TRUE;
}

static PxTensor *tensor_new(PxBackend *be, const char *name, PxDType dtype, PxMemCategory category,
                            int ndim, const gint64 *shape, gboolean zeroed, GError **error) {
  g_autofree PxTensor *t = g_new0(PxTensor, 1);
  if ((unsigned)category >= PX_MEM_N_CATEGORIES) {
    fail(error, PX_BACKEND_ERROR_SHAPE, "tensor %s: bad memory category %d", name, category);
    return NULL;
  }
  if (!tensor_header(t, name, dtype, ndim, shape, error)) {
    g_free(t->name);
    return NULL;
  }
  if (!pool_alloc(be, t->bytes, &t->data, error)) {
    g_prefix_error(error, "tensor %s (%s, %s): ", t->name, px_dtype_name(dtype),
                   px_mem_category_name(category));
    g_free(t->name);
    return NULL;
  }
  t->backend = be;
  t->category = category;
  t->owns_data = TRUE;
  g_mutex_lock(&be->lock);
  mem_count(be, category, (gint64)t->bytes);
  g_mutex_unlock(&be->lock);
  host_count(be, (gint64)t->bytes);
  if ((zeroed || be->poison) &&
      !be->ops->memset(be, t->data, zeroed ? 0 : 0xFF, t->bytes, error)) {
    px_tensor_free(g_steal_pointer(&t));
    return NULL;
  }
  return g_steal_pointer(&t);
}

PxTensor *px_tensor_new(PxBackend *be, const char *name, PxDType dtype, PxMemCategory category,
                        int ndim, const gint64 *shape, GError **error) {
  return tensor_new(be, name, dtype, category, ndim, shape, FALSE, error);
}

PxTensor *px_tensor_new_zeroed(PxBackend *be, const char *name, PxDType dtype,
                               PxMemCategory category, int ndim, const gint64 *shape,
                               GError **error) {
  return tensor_new(be, name, dtype, category, ndim, shape, TRUE, error);
}

PxTensor *px_tensor_view(PxTensor *t, const char *name, gint64 offset, int ndim,
                         const gint64 *shape, GError **error) {
  g_autofree PxTensor *v = g_new0(PxTensor, 1);
  if (!tensor_header(v, name, t->dtype, ndim, shape, error)) {
    g_free(v->name);
    return NULL;
  }
  if (offset < 0 || offset + v->numel > t->numel) {
    fail(error, PX_BACKEND_ERROR_SHAPE,
         "view %s: elements [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ") outside %s (%" G_GINT64_FORMAT
         " elements)",
         v->name, offset, offset + v->numel, t->name, t->numel);
    g_free(v->name);
    return NULL;
  }
  v->data = (char *)t->data + offset * (gint64)px_dtype_size(t->dtype);
  v->backend = t->backend;
  v->category = t->category;
  v->owns_data = FALSE;
  return g_steal_pointer(&v);
}

PxTensor *px_tensor_view_as(PxTensor *t, const char *name, PxDType dtype, gsize byte_offset, int ndim,
                            const gint64 *shape, GError **error) {
  g_autofree PxTensor *v = g_new0(PxTensor, 1);
  if (!tensor_header(v, name, dtype, ndim, shape, error)) {
    g_free(v->name);
    return NULL;
  }
  if (byte_offset % px_dtype_size(dtype) || byte_offset > t->bytes || v->bytes > t->bytes - byte_offset) {
    fail(error, PX_BACKEND_ERROR_SHAPE,
         "view %s: %" G_GSIZE_FORMAT " bytes of %s from byte %" G_GSIZE_FORMAT " do not fit %s (%" G_GSIZE_FORMAT
         " bytes) or are misaligned",
         v->name, v->bytes, px_dtype_name(dtype), byte_offset, t->name, t->bytes);
    g_free(v->name);
    return NULL;
  }
  v->data = (char *)t->data + byte_offset;
  v->backend = t->backend;
  v->category = t->category;
  v->owns_data = FALSE;
  return g_steal_pointer(&v);
}

void px_tensor_set_category(PxTensor *t, PxMemCategory category) {
  if (!t || t->category == category) return;
  if (t->owns_data) {
    g_mutex_lock(&t->backend->lock);
    mem_count(t->backend, t->category, -(gint64)t->bytes);
    mem_count(t->backend, category, (gint64)t->bytes);
    g_mutex_unlock(&t->backend->lock);
  }
  t->category = category;
}

void px_tensor_free(PxTensor *t) {
  if (!t) return;
  if (t->owns_data) {
    pool_free(t->backend, t->data, t->bytes);
    g_mutex_lock(&t->backend->lock);
    mem_count(t->backend, t->category, -(gint64)t->bytes);
    g_mutex_unlock(&t->backend->lock);
    host_count(t->backend, -(gint64)t->bytes);
  }
  g_free(t->name);
  g_free(t);
}

gboolean px_tensor_upload(PxTensor *t, const void *host, GError **error) {
  return t->backend->ops->upload(t->backend, t->data, host, t->bytes, error);
}

gboolean px_tensor_download(const PxTensor *t, void *host, GError **error) {
  return t->backend->ops->download(t->backend, host, t->data, t->bytes, error);
}

gboolean px_tensor_zero(PxTensor *t, GError **error) {
  return t->backend->ops->memset(t->backend, t->data, 0, t->bytes, error);
}

gboolean px_tensor_upload_f64(PxTensor *t, const double *host, GError **error) {
  if (t->dtype == PX_DTYPE_F64) return px_tensor_upload(t, host, error);
  if (t->dtype != PX_DTYPE_F32 && t->dtype != PX_DTYPE_BF16 && t->dtype != PX_DTYPE_F16)
    return fail(error, PX_BACKEND_ERROR_SHAPE, "upload_f64: %s is %s, not a float tensor", t->name,
                px_dtype_name(t->dtype));
  g_autofree void *tmp = g_malloc(t->bytes);
  for (gint64 i = 0; i < t->numel; i++) {
    float f = (float)host[i];
    if (t->dtype == PX_DTYPE_F32) ((float *)tmp)[i] = f;
    else ((guint16 *)tmp)[i] = t->dtype == PX_DTYPE_BF16 ? px_f32_to_bf16(f) : px_f32_to_f16(f);
  }
  return px_tensor_upload(t, tmp, error);
}

gboolean px_tensor_download_f64(const PxTensor *t, double *host, GError **error) {
  if (t->dtype == PX_DTYPE_F64) return px_tensor_download(t, host, error);
  if (t->dtype != PX_DTYPE_F32 && t->dtype != PX_DTYPE_BF16 && t->dtype != PX_DTYPE_F16)
    return fail(error, PX_BACKEND_ERROR_SHAPE, "download_f64: %s is %s, not a float tensor",
                t->name, px_dtype_name(t->dtype));
  g_autofree void *tmp = g_malloc(t->bytes);
  if (!px_tensor_download(t, tmp, error)) return FALSE;
  for (gint64 i = 0; i < t->numel; i++) {
    if (t->dtype == PX_DTYPE_F32) host[i] = ((float *)tmp)[i];
    else {
      guint16 h = ((guint16 *)tmp)[i];
      host[i] = t->dtype == PX_DTYPE_BF16 ? px_bf16_to_f32(h) : px_f16_to_f32(h);
    }
  }
  return TRUE;
}

/* ---- validation ---- */

/* t must exist, be of dtype and hold rows*cols elements on backend be. */
static gboolean need(PxBackend *be, const char *op, const char *what, const PxTensor *t,
                     PxDType dtype, gint64 rows, gint64 cols, GError **error) {
  if (!t) return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: %s is missing", op, what);
  if (t->backend != be)
    return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: %s (%s) lives on another backend", op, what,
                t->name);
  if (t->dtype != dtype || t->numel != rows * cols)
    return fail(error, PX_BACKEND_ERROR_SHAPE,
                "%s: %s (%s) is %s with %" G_GINT64_FORMAT " elements, expected %s with %" G_GINT64_FORMAT
                "x%" G_GINT64_FORMAT,
                op, what, t->name, px_dtype_name(t->dtype), t->numel, px_dtype_name(dtype), rows,
                cols);
  return TRUE;
}

/* As need() but a NULL tensor is fine (an optional input or skipped gradient). */
static gboolean maybe(PxBackend *be, const char *op, const char *what, const PxTensor *t,
                      PxDType dtype, gint64 rows, gint64 cols, GError **error) {
  return !t || need(be, op, what, t, dtype, rows, cols, error);
}

/* The dtype a parameter tensor may have beside activations of dtype dt: dt,
 * or bf16 / f16 beside f32 (mixed precision). */
static PxDType param_dt(const PxTensor *p, PxDType dt) {
  return p && px_dtype_is_half(p->dtype) && dt == PX_DTYPE_F32 ? p->dtype : dt;
}

/* ---- half tensors on a backend without half kernels ----
 * Two cases (backend.h, "Half weights on an f32 model" and "Half
 * activations"): half parameters beside f32 activations, on a backend
 * without half_params; and half activations (with parameters of the same
 * half dtype), on a backend without half_acts. Either way the op runs on f32
 * copies: each half input is cast into a new f32 tensor; a forward output
 * gets an f32 buffer that is then cast (rounded once, to nearest even) over
 * it; a gradient output, which the op ADDS into, gets a zeroed f32 buffer
 * that px_op_cast then adds in (the sum formed in f32, rounded once). A half
 * tensor passed twice (out == in, dq == dkv) gets one copy, read in and
 * written back. Statistics (f32 beside half activations) and the f32 / f64
 * tensors are passed as they are. The copies are transient PX_MEM_BUFFERS
 * tensors. */
#define PROMO_MAX 8
typedef enum {
  PROMO_IN,    /* read: cast in */
  PROMO_OVER,  /* overwritten: cast out */
  PROMO_ACC,   /* added into: a zeroed buffer, added out */
  PROMO_INOUT, /* read and written: cast in and out */
} PromoMode;

typedef struct {
  PxBackend *be;
  const PxTensor *src[PROMO_MAX]; /* the half tensor */
  PxTensor *tmp[PROMO_MAX];       /* its f32 copy */
  PromoMode mode[PROMO_MAX];
  int n;
  gboolean ok;
  GError **error;
} Promo;

/* Whether an op must run on f32 copies: one of its tensors is half and the
 * backend does not take it natively (half_acts when the op's activations,
 * act, are half; half_params when they are f32). */
static gboolean must_promote(PxBackend *be, const PxTensor *act, const PxTensor *const *ts, int n) {
  if (act && px_dtype_is_half(act->dtype) ? be->ops->half_acts : be->ops->half_params) return FALSE;
  for (int i = 0; i < n; i++)
    if (ts[i] && px_dtype_is_half(ts[i]->dtype)) return TRUE;
  return FALSE;
}
#define PROMOTE(be, act, ...)                                                                      \
  must_promote(be, act, (const PxTensor *const[]){__VA_ARGS__},                                    \
               (int)(sizeof((const PxTensor *const[]){__VA_ARGS__}) / sizeof(const PxTensor *)))

/* A half tensor alone (adamw's gradient, sum_squares, check_finite). */
static gboolean promote_needed(PxBackend *be, const PxTensor *t) {
  return t && px_dtype_is_half(t->dtype) && !be->ops->half_params;
}

static Promo promo_begin(PxBackend *be, GError **error) {
  Promo p = {be, {NULL}, {NULL}, {PROMO_IN}, 0, TRUE, error};
  return p;
}

static PxTensor *promo_tensor(Promo *p, const PxTensor *t, PromoMode mode) {
  if (!p->ok || !t || !px_dtype_is_half(t->dtype)) return (PxTensor *)t;
  for (int i = 0; i < p->n; i++) {
    const PxTensor *o = p->src[i];
    if (o->data != t->data || o->numel != t->numel || o->dtype != t->dtype) continue;
    /* the same tensor again: read in (inputs are promoted first) and written back */
    if (p->mode[i] != mode) {
      if (p->mode[i] == PROMO_ACC && !px_op_cast(p->be, p->tmp[i], t, FALSE, p->error)) p->ok = FALSE;
      p->mode[i] = PROMO_INOUT;
    }
    return p->tmp[i];
  }
  g_assert(p->n < PROMO_MAX);
  g_autofree char *name = g_strdup_printf("%s.f32", t->name);
  PxTensor *c = (mode == PROMO_ACC ? px_tensor_new_zeroed : px_tensor_new)(p->be, name, PX_DTYPE_F32, PX_MEM_BUFFERS,
                                                                             t->ndim, t->shape, p->error);
  if (!c) {
    p->ok = FALSE;
    return NULL;
  }
  p->src[p->n] = t;
  p->tmp[p->n] = c;
  p->mode[p->n++] = mode;
  if ((mode == PROMO_IN || mode == PROMO_INOUT) && !px_op_cast(p->be, c, t, FALSE, p->error)) p->ok = FALSE;
  return c;
}

static const PxTensor *promo_in(Promo *p, const PxTensor *t) { return promo_tensor(p, t, PROMO_IN); }
static PxTensor *promo_out(Promo *p, PxTensor *t) { return promo_tensor(p, t, PROMO_ACC); }
static PxTensor *promo_over(Promo *p, PxTensor *t) { return promo_tensor(p, t, PROMO_OVER); }
static PxTensor *promo_inout(Promo *p, PxTensor *t) { return promo_tensor(p, t, PROMO_INOUT); }

/* After the op (ok: it succeeded): write the copies back into their half
 * tensors (add the gradient buffers, cast the rest), free them. */
static gboolean promo_end(Promo *p, gboolean ok) {
  for (int i = 0; i < p->n; i++) {
    if (ok && p->mode[i] != PROMO_IN)
      ok = px_op_cast(p->be, (PxTensor *)p->src[i], p->tmp[i], p->mode[i] == PROMO_ACC, p->error);
    px_tensor_free(p->tmp[i]);
  }
  return ok;
}

/* The dtype of an op's statistics (norm mean / rstd, attention lse,
 * cross-entropy losses, max and sums) beside activations of dtype dt: f32
 * for half activations, else dt. */
static PxDType stat_dt(PxDType dt) { return px_dtype_is_half(dt) ? PX_DTYPE_F32 : dt; }

/* The float dtype of an op, taken from its main tensor; rows = numel / last dim. */
static gboolean float_matrix(const char *op, const char *what, const PxTensor *t, gint64 *rows,
                             gint64 *cols, GError **error) {
  *rows = *cols = 0;
  if (!t) return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: %s is missing", op, what);
  if (t->dtype == PX_DTYPE_I32)
    return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: %s (%s) is %s, expected f32, f64, bf16 or f16", op, what,
                t->name, px_dtype_name(t->dtype));
  *cols = t->shape[t->ndim - 1];
  *rows = t->numel / *cols;
  return TRUE;
}


gboolean px_op_linear_fwd(PxBackend *be, PxTensor *y, const PxTensor *x, const PxTensor *w,
                          const PxTensor *b, GError **error) {
  if (PROMOTE(be, x, x, w, b, y)) {
    Promo p = promo_begin(be, error);
    const PxTensor *x2 = promo_in(&p, x), *w2 = promo_in(&p, w), *b2 = promo_in(&p, b);
    PxTensor *y2 = promo_over(&p, y);
    return promo_end(&p, p.ok && px_op_linear_fwd(be, y2, x2, w2, b2, error));
  }
  const char *op = "linear_fwd";
  gint64 out, in, N, ycols;
  if (!float_matrix(op, "w", w, &out, &in, error) || !float_matrix(op, "y", y, &N, &ycols, error))
    return FALSE;
  PxDType dt = y->dtype;
  if (!need(be, op, "w", w, param_dt(w, dt), out, in, error) || !need(be, op, "y", y, dt, N, out, error) ||
      !need(be, op, "x", x, dt, N, in, error) || !maybe(be, op, "b", b, param_dt(b, dt), 1, out, error))
    return FALSE;
  return be->ops->linear_fwd(be, y, x, w, b, error);
}

gboolean px_op_linear_bwd(PxBackend *be, PxTensor *dx, PxTensor *dw, PxTensor *db,
                          const PxTensor *dy, const PxTensor *x, const PxTensor *w, GError **error) {
  if (PROMOTE(be, dy, dy, x, w, dx, dw, db)) {
    Promo p = promo_begin(be, error);
    const PxTensor *dy2 = promo_in(&p, dy), *x2 = promo_in(&p, x), *w2 = promo_in(&p, w);
    PxTensor *dx2 = promo_out(&p, dx), *dw2 = promo_out(&p, dw), *db2 = promo_out(&p, db);
    return promo_end(&p, p.ok && px_op_linear_bwd(be, dx2, dw2, db2, dy2, x2, w2, error));
  }
  const char *op = "linear_bwd";
  gint64 out, in, N, dycols;
  if (!float_matrix(op, "w", w, &out, &in, error) || !float_matrix(op, "dy", dy, &N, &dycols, error))
    return FALSE;
  PxDType dt = dy->dtype;
  if (!need(be, op, "w", w, param_dt(w, dt), out, in, error) || !need(be, op, "dy", dy, dt, N, out, error) ||
      !need(be, op, "x", x, dt, N, in, error) || !maybe(be, op, "dx", dx, dt, N, in, error) ||
      !maybe(be, op, "dw", dw, param_dt(dw, dt), out, in, error) ||
      !maybe(be, op, "db", db, param_dt(db, dt), 1, out, error))
    return FALSE;
  return be->ops->linear_bwd(be, dx, dw, db, dy, x, w, error);
}

static gboolean embedding_check(PxBackend *be, const char *op, const PxTensor *act,
                                const PxTensor *tokens, const PxTensor *wte, const PxTensor *wpe,
                                int B, int T, GError **error) {
  gint64 V, C, ar, ac;
  if (!float_matrix(op, "wte", wte, &V, &C, error) || !float_matrix(op, "activations", act, &ar, &ac, error))
    return FALSE;
  if (B < 1 || T < 1) return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: B=%d T=%d", op, B, T);
  PxDType dt = act->dtype;
  if (!need(be, op, "wte", wte, param_dt(wte, dt), V, C, error) ||
      !need(be, op, "activations", act, dt, (gint64)B * T, C, error) ||
      !need(be, op, "tokens", tokens, PX_DTYPE_I32, (gint64)B * T, 1, error))
    return FALSE;
  if (wpe) {
    gint64 maxT, Cp;
    if (!float_matrix(op, "wpe", wpe, &maxT, &Cp, error) ||
        !need(be, op, "wpe", wpe, param_dt(wpe, dt), maxT, C, error))
      return FALSE;
    if (maxT < T)
      return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: wpe has %" G_GINT64_FORMAT " positions, T=%d",
                  op, maxT, T);
  }
  return TRUE;
}

gboolean px_op_embedding_fwd(PxBackend *be, PxTensor *out, const PxTensor *tokens,
                             const PxTensor *wte, const PxTensor *wpe, int B, int T, GError **error) {
  if (PROMOTE(be, out, out, wte, wpe)) {
    Promo p = promo_begin(be, error);
    const PxTensor *a = promo_in(&p, wte), *b = promo_in(&p, wpe);
    PxTensor *o = promo_over(&p, out);
    return promo_end(&p, p.ok && px_op_embedding_fwd(be, o, tokens, a, b, B, T, error));
  }
  return embedding_check(be, "embedding_fwd", out, tokens, wte, wpe, B, T, error) &&
         be->ops->embedding_fwd(be, out, tokens, wte, wpe, B, T, error);
}

gboolean px_op_embedding_bwd(PxBackend *be, PxTensor *dwte, PxTensor *dwpe, const PxTensor *dout,
                             const PxTensor *tokens, int B, int T, GError **error) {
  if (PROMOTE(be, dout, dout, dwte, dwpe)) {
    Promo p = promo_begin(be, error);
    const PxTensor *d = promo_in(&p, dout);
    PxTensor *a = promo_out(&p, dwte), *b = promo_out(&p, dwpe);
    return promo_end(&p, p.ok && px_op_embedding_bwd(be, a, b, d, tokens, B, T, error));
  }
  return embedding_check(be, "embedding_bwd", dout, tokens, dwte, dwpe, B, T, error) &&
         be->ops->embedding_bwd(be, dwte, dwpe, dout, tokens, B, T, error);
}

/* Norms: x (N,C), out/dout (N,C), w (C), b (C) optional, saved stats (N). */
static gboolean norm_check(PxBackend *be, const char *op, const PxTensor *x, const PxTensor *y,
                           const PxTensor *w, const PxTensor *b, const PxTensor *s1,
                           const PxTensor *s2, GError **error) {
  gint64 N, C;
  if (!float_matrix(op, "x", x, &N, &C, error)) return FALSE;
  PxDType dt = x->dtype;
  return need(be, op, "x", x, dt, N, C, error) && need(be, op, "out", y, dt, N, C, error) &&
         need(be, op, "weight", w, param_dt(w, dt), 1, C, error) &&
         maybe(be, op, "bias", b, param_dt(b, dt), 1, C, error) &&
         maybe(be, op, "stats", s1, stat_dt(dt), N, 1, error) && need(be, op, "rstd", s2, stat_dt(dt), N, 1, error);
}

gboolean px_op_layernorm_fwd(PxBackend *be, PxTensor *out, PxTensor *mean, PxTensor *rstd,
                             const PxTensor *x, const PxTensor *w, const PxTensor *b, double eps,
                             GError **error) {
  if (PROMOTE(be, x, x, w, b, out)) {
    Promo p = promo_begin(be, error);
    const PxTensor *x2 = promo_in(&p, x), *w2 = promo_in(&p, w), *b2 = promo_in(&p, b);
    PxTensor *o = promo_over(&p, out);
    return promo_end(&p, p.ok && px_op_layernorm_fwd(be, o, mean, rstd, x2, w2, b2, eps, error));
  }
  const char *op = "layernorm_fwd";
  if (!mean) return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: mean is missing", op);
  return norm_check(be, op, x, out, w, b, mean, rstd, error) &&
         be->ops->layernorm_fwd(be, out, mean, rstd, x, w, b, eps, error);
}

gboolean px_op_layernorm_bwd(PxBackend *be, PxTensor *dx, PxTensor *dw, PxTensor *db,
                             const PxTensor *dout, const PxTensor *x, const PxTensor *w,
                             const PxTensor *mean, const PxTensor *rstd, GError **error) {
  if (PROMOTE(be, x, x, dout, w, dx, dw, db)) {
    Promo p = promo_begin(be, error);
    const PxTensor *d = promo_in(&p, dout), *x2 = promo_in(&p, x), *w2 = promo_in(&p, w);
    PxTensor *dx2 = promo_out(&p, dx), *dw2 = promo_out(&p, dw), *db2 = promo_out(&p, db);
    return promo_end(&p, p.ok && px_op_layernorm_bwd(be, dx2, dw2, db2, d, x2, w2, mean, rstd, error));
  }
  const char *op = "layernorm_bwd";
  if (!mean) return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: mean is missing", op);
  if (!norm_check(be, op, x, dout, w, NULL, mean, rstd, error)) return FALSE;
  gint64 N = x->numel / x->shape[x->ndim - 1], C = x->shape[x->ndim - 1];
  return maybe(be, op, "dx", dx, x->dtype, N, C, error) &&
         maybe(be, op, "dw", dw, param_dt(dw, x->dtype), 1, C, error) &&
         maybe(be, op, "db", db, param_dt(db, x->dtype), 1, C, error) &&
         be->ops->layernorm_bwd(be, dx, dw, db, dout, x, w, mean, rstd, error);
}

gboolean px_op_rmsnorm_fwd(PxBackend *be, PxTensor *out, PxTensor *rstd, const PxTensor *x,
                           const PxTensor *w, double eps, GError **error) {
  if (PROMOTE(be, x, x, w, out)) {
    Promo p = promo_begin(be, error);
    const PxTensor *x2 = promo_in(&p, x), *w2 = promo_in(&p, w);
    PxTensor *o = promo_over(&p, out);
    return promo_end(&p, p.ok && px_op_rmsnorm_fwd(be, o, rstd, x2, w2, eps, error));
  }
  return norm_check(be, "rmsnorm_fwd", x, out, w, NULL, NULL, rstd, error) &&
         be->ops->rmsnorm_fwd(be, out, rstd, x, w, eps, error);
}

gboolean px_op_rmsnorm_bwd(PxBackend *be, PxTensor *dx, PxTensor *dw, const PxTensor *dout,
                           const PxTensor *x, const PxTensor *w, const PxTensor *rstd,
                           GError **error) {
  if (PROMOTE(be, x, x, dout, w, dx, dw)) {
    Promo p = promo_begin(be, error);
    const PxTensor *d = promo_in(&p, dout), *x2 = promo_in(&p, x), *w2 = promo_in(&p, w);
    PxTensor *dx2 = promo_out(&p, dx), *dw2 = promo_out(&p, dw);
    return promo_end(&p, p.ok && px_op_rmsnorm_bwd(be, dx2, dw2, d, x2, w2, rstd, error));
  }
  const char *op = "rmsnorm_bwd";
  if (!norm_check(be, op, x, dout, w, NULL, NULL, rstd, error)) return FALSE;
  gint64 N = x->numel / x->shape[x->ndim - 1], C = x->shape[x->ndim - 1];
  return maybe(be, op, "dx", dx, x->dtype, N, C, error) &&
         maybe(be, op, "dw", dw, param_dt(dw, x->dtype), 1, C, error) &&
         be->ops->rmsnorm_bwd(be, dx, dw, dout, x, w, rstd, error);
}

/* Element-wise ops: every tensor given has the numel and dtype of the first. */
static gboolean same_check(PxBackend *be, const char *op, const char *const *names,
                           const PxTensor *const *ts, int n, GError **error) {
  gint64 rows, cols;
  if (!float_matrix(op, names[0], ts[0], &rows, &cols, error)) return FALSE;
  for (int i = 0; i < n; i++)
    if (!maybe(be, op, names[i], ts[i], ts[0]->dtype, rows, cols, error)) return FALSE;
  return TRUE;
}
gboolean px_op_gelu_fwd(PxBackend *be, PxTensor *out, const PxTensor *x, GError **error) {
  const PxTensor *ts[] = {x, out};
  const char *names[] = {"x", "out"};
  if (PROMOTE(be, x, x, out)) {
    Promo p = promo_begin(be, error);
    const PxTensor *x2 = promo_in(&p, x);
    PxTensor *o = promo_over(&p, out);
    return promo_end(&p, p.ok && px_op_gelu_fwd(be, o, x2, error));
  }
  return out && same_check(be, "gelu_fwd", names, ts, 2, error) && be->ops->gelu_fwd(be, out, x, error);
}

gboolean px_op_gelu_bwd(PxBackend *be, PxTensor *dx, const PxTensor *dout, const PxTensor *x,
                        GError **error) {
  const PxTensor *ts[] = {x, dout, dx};
  const char *names[] = {"x", "dout", "dx"};
  if (!dout) return fail(error, PX_BACKEND_ERROR_SHAPE, "gelu_bwd: dout is missing");
  if (PROMOTE(be, x, x, dout, dx)) {
    Promo p = promo_begin(be, error);
    const PxTensor *x2 = promo_in(&p, x), *d = promo_in(&p, dout);
    PxTensor *dx2 = promo_out(&p, dx);
    return promo_end(&p, p.ok && px_op_gelu_bwd(be, dx2, d, x2, error));
  }
  return same_check(be, "gelu_bwd", names, ts, 3, error) &&
         (!dx || be->ops->gelu_bwd(be, dx, dout, x, error));
}

gboolean px_op_swiglu_fwd(PxBackend *be, PxTensor *out, const PxTensor *gate, const PxTensor *up,
                          GError **error) {
  const PxTensor *ts[] = {gate, up, out};
  const char *names[] = {"gate", "up", "out"};
  if (!up || !out) return fail(error, PX_BACKEND_ERROR_SHAPE, "swiglu_fwd: a tensor is missing");
  if (PROMOTE(be, gate, gate, up, out)) {
    Promo p = promo_begin(be, error);
    const PxTensor *g2 = promo_in(&p, gate), *u2 = promo_in(&p, up);
    PxTensor *o = promo_over(&p, out);
    return promo_end(&p, p.ok && px_op_swiglu_fwd(be, o, g2, u2, error));
  }
  return same_check(be, "swiglu_fwd", names, ts, 3, error) &&
         be->ops->swiglu_fwd(be, out, gate, up, error);
}

gboolean px_op_swiglu_bwd(PxBackend *be, PxTensor *dgate, PxTensor *dup, const PxTensor *dout,
                          const PxTensor *gate, const PxTensor *up, GError **error) {
  const PxTensor *ts[] = {gate, up, dout, dgate, dup};
  const char *names[] = {"gate", "up", "dout", "dgate", "dup"};
  if (!up || !dout) return fail(error, PX_BACKEND_ERROR_SHAPE, "swiglu_bwd: a tensor is missing");
  if (PROMOTE(be, gate, gate, up, dout, dgate, dup)) {
    Promo p = promo_begin(be, error);
    const PxTensor *g2 = promo_in(&p, gate), *u2 = promo_in(&p, up), *d = promo_in(&p, dout);
    PxTensor *dg = promo_out(&p, dgate), *du = promo_out(&p, dup);
    return promo_end(&p, p.ok && px_op_swiglu_bwd(be, dg, du, d, g2, u2, error));
  }
  return same_check(be, "swiglu_bwd", names, ts, 5, error) &&
         be->ops->swiglu_bwd(be, dgate, dup, dout, gate, up, error);
}

static gboolean attn_shape_check(const char *op, const PxAttnShape *s, GError **error) {
  if (!s || s->B < 1 || s->T < 1 || s->heads < 1 || s->kv_heads < 1 || s->head_dim < 1 ||
      s->heads % s->kv_heads)
    return fail(error, PX_BACKEND_ERROR_SHAPE,
                "%s: bad attention shape (B=%d T=%d heads=%d kv_heads=%d head_dim=%d)", op,
                s ? s->B : 0, s ? s->T : 0, s ? s->heads : 0, s ? s->kv_heads : 0,
                s ? s->head_dim : 0);
  return TRUE;
}

static gint64 qkv_cols(const PxAttnShape *s) {
  return (gint64)(s->heads + 2 * s->kv_heads) * s->head_dim;
}

static gboolean rope_check(PxBackend *be, const char *op, const PxTensor *a, const PxTensor *b,
                           const PxAttnShape *s, GError **error) {
  gint64 r, c;
  if (!attn_shape_check(op, s, error) || !float_matrix(op, "in", a, &r, &c, error)) return FALSE;
  if (s->head_dim % 2)
    return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: head_dim=%d is odd", op, s->head_dim);
  gint64 N = (gint64)s->B * s->T;
  return need(be, op, "in", a, a->dtype, N, qkv_cols(s), error) &&
         need(be, op, "out", b, a->dtype, N, qkv_cols(s), error);
}

gboolean px_op_rope_fwd(PxBackend *be, PxTensor *out, const PxTensor *in, const PxAttnShape *s,
                        double theta, GError **error) {
  if (PROMOTE(be, in, in, out)) {
    Promo p = promo_begin(be, error);
    const PxTensor *i2 = promo_in(&p, in);
    PxTensor *o = promo_over(&p, out); /* out == in: one copy, cast in and out */
    return promo_end(&p, p.ok && px_op_rope_fwd(be, o, i2, s, theta, error));
  }
  return rope_check(be, "rope_fwd", in, out, s, error) &&
         be->ops->rope_fwd(be, out, in, s, theta, error);
}

gboolean px_op_rope_bwd(PxBackend *be, PxTensor *din, const PxTensor *dout, const PxAttnShape *s,
                        double theta, GError **error) {
  if (!rope_check(be, "rope_bwd", dout, din, s, error)) return FALSE;
  if (din->data == dout->data)
    return fail(error, PX_BACKEND_ERROR_SHAPE, "rope_bwd: din and dout must not alias");
  if (PROMOTE(be, dout, dout, din)) {
    Promo p = promo_begin(be, error);
    const PxTensor *d = promo_in(&p, dout);
    PxTensor *di = promo_out(&p, din);
    return promo_end(&p, p.ok && px_op_rope_bwd(be, di, d, s, theta, error));
  }
  return be->ops->rope_bwd(be, din, dout, s, theta, error);
}

static gboolean attention_check(PxBackend *be, const char *op, const PxTensor *out,
                                const PxTensor *att, const PxTensor *qkv, const PxTensor *dqkv,
                                const PxAttnShape *s, GError **error) {
  gint64 r, c;
  if (!attn_shape_check(op, s, error) || !float_matrix(op, "qkv", qkv, &r, &c, error)) return FALSE;
  PxDType dt = qkv->dtype;
  gint64 N = (gint64)s->B * s->T;
  return need(be, op, "qkv", qkv, dt, N, qkv_cols(s), error) &&
         need(be, op, "out", out, dt, N, (gint64)s->heads * s->head_dim, error) &&
         need(be, op, "att", att, dt, (gint64)s->B * s->heads * s->T, s->T, error) &&
         maybe(be, op, "dqkv", dqkv, dt, N, qkv_cols(s), error);
}

gboolean px_op_attention_fwd(PxBackend *be, PxTensor *out, PxTensor *att, const PxTensor *qkv,
                             const PxAttnShape *s, GError **error) {
  if (PROMOTE(be, qkv, qkv, out, att)) {
    Promo p = promo_begin(be, error);
    const PxTensor *q = promo_in(&p, qkv);
    PxTensor *o = promo_over(&p, out), *a = promo_over(&p, att);
    return promo_end(&p, p.ok && px_op_attention_fwd(be, o, a, q, s, error));
  }
  return attention_check(be, "attention_fwd", out, att, qkv, NULL, s, error) &&
         be->ops->attention_fwd(be, out, att, qkv, s, error);
}

gboolean px_op_attention_bwd(PxBackend *be, PxTensor *dqkv, const PxTensor *dout,
                             const PxTensor *qkv, const PxTensor *att, const PxAttnShape *s,
                             GError **error) {
  if (!dqkv) return fail(error, PX_BACKEND_ERROR_SHAPE, "attention_bwd: dqkv is missing");
  if (PROMOTE(be, qkv, qkv, dout, att, dqkv)) {
    Promo p = promo_begin(be, error);
    const PxTensor *q = promo_in(&p, qkv), *d = promo_in(&p, dout), *a = promo_in(&p, att);
    PxTensor *dq = promo_out(&p, dqkv);
    return promo_end(&p, p.ok && px_op_attention_bwd(be, dq, d, q, a, s, error));
  }
  return attention_check(be, "attention_bwd", dout, att, qkv, dqkv, s, error) &&
         be->ops->attention_bwd(be, dqkv, dout, qkv, att, s, error);
}

/* A block's shapes: each valid, the same heads and batch, positions that
 * stay non-negative. */
static gboolean block_shapes_check(const char *op, const PxAttnShape *qs, const PxAttnShape *ks, GError **error) {
  if (!attn_shape_check(op, qs, error) || !attn_shape_check(op, ks, error)) return FALSE;
  if (qs->B != ks->B || qs->heads != ks->heads || qs->kv_heads != ks->kv_heads || qs->head_dim != ks->head_dim)
    return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: the query and key blocks differ in batch or heads", op);
  const PxAttnShape *ss[2] = {qs, ks};
  for (int i = 0; i < 2; i++)
    if (ss[i]->pos_split < 0 || ss[i]->pos_split > ss[i]->T || (ss[i]->pos_split > 0 && (ss[i]->pos_start0 < 0 || ss[i]->pos_start1 < 0)))
      return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: bad positions (split %d of %d, starts %d, %d)", op,
                  ss[i]->pos_split, ss[i]->T, ss[i]->pos_start0, ss[i]->pos_start1);
  return TRUE;
}

gboolean px_op_attn_block_fwd(PxBackend *be, PxTensor *out, PxTensor *lse, const PxTensor *q,
                              const PxTensor *kv, const PxAttnShape *qs, const PxAttnShape *ks,
                              GError **error) {
  const char *op = "attn_block_fwd";
  gint64 r, c;
  if (PROMOTE(be, q, q, kv, out)) {
    Promo p = promo_begin(be, error);
    const PxTensor *q2 = promo_in(&p, q), *kv2 = promo_in(&p, kv);
    PxTensor *o = promo_over(&p, out);
    return promo_end(&p, p.ok && px_op_attn_block_fwd(be, o, lse, q2, kv2, qs, ks, error));
  }
  if (!block_shapes_check(op, qs, ks, error) || !float_matrix(op, "q", q, &r, &c, error)) return FALSE;
  PxDType dt = q->dtype;
  gint64 Nq = (gint64)qs->B * qs->T, Nk = (gint64)ks->B * ks->T;
  return need(be, op, "q", q, dt, Nq, qkv_cols(qs), error) && need(be, op, "kv", kv, dt, Nk, qkv_cols(ks), error) &&
         need(be, op, "out", out, dt, Nq, (gint64)qs->heads * qs->head_dim, error) &&
         need(be, op, "lse", lse, stat_dt(dt), (gint64)qs->B * qs->heads, qs->T, error) &&
         be->ops->attn_block_fwd(be, out, lse, q, kv, qs, ks, error);
}

gboolean px_op_attn_merge(PxBackend *be, PxTensor *out, PxTensor *lse, const PxTensor *out_b,
                          const PxTensor *lse_b, const PxAttnShape *s, GError **error) {
  const char *op = "attn_merge";
  gint64 r, c;
  /* out_b's dtype is the op's; out may be an f32 accumulator beside a half
   * out_b (backend.h): promo_in casts out_b up exactly, promo_inout passes
   * an f32 out through untouched, so nothing is rounded but the f32 result */
  if (out && out_b && out->dtype != out_b->dtype && !(out->dtype == PX_DTYPE_F32 && px_dtype_is_half(out_b->dtype)))
    return fail(error, PX_BACKEND_ERROR_SHAPE,
                "%s: out (%s) is %s beside an out_b of %s (the same dtype, or f32 beside bf16 / f16)", op, out->name,
                px_dtype_name(out->dtype), px_dtype_name(out_b->dtype));
  if (PROMOTE(be, out_b, out, out_b)) {
    Promo p = promo_begin(be, error);
    const PxTensor *b2 = promo_in(&p, out_b);
    PxTensor *o = promo_inout(&p, out);
    return promo_end(&p, p.ok && px_op_attn_merge(be, o, lse, b2, lse_b, s, error));
  }
  if (!attn_shape_check(op, s, error) || !float_matrix(op, "out_b", out_b, &r, &c, error)) return FALSE;
  PxDType dt = out_b->dtype;
  PxDType out_dt = out && out->dtype == PX_DTYPE_F32 && px_dtype_is_half(dt) ? PX_DTYPE_F32 : dt;
  gint64 N = (gint64)s->B * s->T, C = (gint64)s->heads * s->head_dim;
  return need(be, op, "out", out, out_dt, N, C, error) && need(be, op, "out_b", out_b, dt, N, C, error) &&
         need(be, op, "lse", lse, stat_dt(dt), (gint64)s->B * s->heads, s->T, error) &&
         need(be, op, "lse_b", lse_b, stat_dt(dt), (gint64)s->B * s->heads, s->T, error) &&
         be->ops->attn_merge(be, out, lse, out_b, lse_b, s, error);
}

gboolean px_op_attn_block_bwd(PxBackend *be, PxTensor *dq, PxTensor *dkv, const PxTensor *dout,
                              const PxTensor *q, const PxTensor *kv, const PxTensor *out,
                              const PxTensor *lse, const PxAttnShape *qs, const PxAttnShape *ks,
                              GError **error) {
  const char *op = "attn_block_bwd";
  gint64 r, c;
  if (PROMOTE(be, q, q, kv, dout, out, dq, dkv)) {
    Promo p = promo_begin(be, error);
    const PxTensor *q2 = promo_in(&p, q), *kv2 = promo_in(&p, kv), *d = promo_in(&p, dout), *o = promo_in(&p, out);
    PxTensor *dq2 = promo_out(&p, dq), *dkv2 = promo_out(&p, dkv); /* dq == dkv: one buffer */
    return promo_end(&p, p.ok && px_op_attn_block_bwd(be, dq2, dkv2, d, q2, kv2, o, lse, qs, ks, error));
  }
  if (!block_shapes_check(op, qs, ks, error) || !float_matrix(op, "q", q, &r, &c, error)) return FALSE;
  PxDType dt = q->dtype;
  gint64 Nq = (gint64)qs->B * qs->T, Nk = (gint64)ks->B * ks->T, C = (gint64)qs->heads * qs->head_dim;
  return need(be, op, "q", q, dt, Nq, qkv_cols(qs), error) && need(be, op, "kv", kv, dt, Nk, qkv_cols(ks), error) &&
         need(be, op, "dq", dq, dt, Nq, qkv_cols(qs), error) && need(be, op, "dkv", dkv, dt, Nk, qkv_cols(ks), error) &&
         need(be, op, "dout", dout, dt, Nq, C, error) && need(be, op, "out", out, dt, Nq, C, error) &&
         need(be, op, "lse", lse, stat_dt(dt), (gint64)qs->B * qs->heads, qs->T, error) &&
         be->ops->attn_block_bwd(be, dq, dkv, dout, q, kv, out, lse, qs, ks, error);
}

gboolean px_op_residual_fwd(PxBackend *be, PxTensor *out, const PxTensor *a, const PxTensor *b,
                            GError **error) {
  const PxTensor *ts[] = {a, b, out};
  const char *names[] = {"a", "b", "out"};
  if (!b || !out) return fail(error, PX_BACKEND_ERROR_SHAPE, "residual_fwd: a tensor is missing");
  if (PROMOTE(be, a, a, b, out)) {
    Promo p = promo_begin(be, error);
    const PxTensor *a2 = promo_in(&p, a), *b2 = promo_in(&p, b);
    PxTensor *o = promo_over(&p, out); /* out == a or b: one copy */
    return promo_end(&p, p.ok && px_op_residual_fwd(be, o, a2, b2, error));
  }
  return same_check(be, "residual_fwd", names, ts, 3, error) &&
         be->ops->residual_fwd(be, out, a, b, error);
}

gboolean px_op_residual_bwd(PxBackend *be, PxTensor *da, PxTensor *db, const PxTensor *dout,
                            GError **error) {
  const PxTensor *ts[] = {dout, da, db};
  const char *names[] = {"dout", "da", "db"};
  if (PROMOTE(be, dout, dout, da, db)) {
    Promo p = promo_begin(be, error);
    const PxTensor *d = promo_in(&p, dout);
    PxTensor *a2 = promo_out(&p, da), *b2 = promo_out(&p, db);
    return promo_end(&p, p.ok && px_op_residual_bwd(be, a2, b2, d, error));
  }
  return same_check(be, "residual_bwd", names, ts, 3, error) &&
         be->ops->residual_bwd(be, da, db, dout, error);
}

static gboolean ce_check(PxBackend *be, const char *op, const PxTensor *logits,
                         const PxTensor *targets, const PxTensor *other, gint64 other_cols,
                         GError **error) {
  gint64 N, V;
  if (!float_matrix(op, "logits", logits, &N, &V, error)) return FALSE;
  return need(be, op, "logits", logits, logits->dtype, N, V, error) &&
         need(be, op, "targets", targets, PX_DTYPE_I32, N, 1, error) &&
         need(be, op, other_cols == 1 ? "losses" : "dlogits", other,
              other_cols == 1 ? stat_dt(logits->dtype) : logits->dtype, N, other_cols ? other_cols : V, error);
}

/* A one-element f32 or f64 tensor on be (also i32 when ints is set), or NULL when optional. */
static gboolean scalar_check(PxBackend *be, const char *op, const char *what, const PxTensor *t,
                             gboolean optional, gboolean ints, GError **error) {
  if (!t) return optional || fail(error, PX_BACKEND_ERROR_SHAPE, "%s: %s is missing", op, what);
  if (t->backend != be)
    return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: %s (%s) lives on another backend", op, what,
                t->name);
  gboolean dt_ok = t->dtype == PX_DTYPE_F32 || t->dtype == PX_DTYPE_F64 || (ints && t->dtype == PX_DTYPE_I32);
  if (!dt_ok || t->numel != 1)
    return fail(error, PX_BACKEND_ERROR_SHAPE,
                "%s: %s (%s) is %s with %" G_GINT64_FORMAT " elements, expected one %s element", op,
                what, t->name, px_dtype_name(t->dtype), t->numel, ints ? "f32, f64 or i32" : "f32 or f64");
  return TRUE;
}

gboolean px_op_cross_entropy_fwd(PxBackend *be, PxTensor *losses, PxTensor *loss_acc,
                                 const PxTensor *logits, const PxTensor *targets, GError **error) {
  if (PROMOTE(be, logits, logits)) {
    Promo p = promo_begin(be, error);
    const PxTensor *l = promo_in(&p, logits);
    return promo_end(&p, p.ok && px_op_cross_entropy_fwd(be, losses, loss_acc, l, targets, error));
  }
  return ce_check(be, "cross_entropy_fwd", logits, targets, losses, 1, error) &&
         scalar_check(be, "cross_entropy_fwd", "loss_acc", loss_acc, TRUE, FALSE, error) &&
         be->ops->cross_entropy_fwd(be, losses, loss_acc, logits, targets, error);
}

gboolean px_op_cross_entropy_bwd(PxBackend *be, PxTensor *dlogits, const PxTensor *logits,
                                 const PxTensor *targets, double dloss, GError **error) {
  if (PROMOTE(be, logits, logits, dlogits)) {
    Promo p = promo_begin(be, error);
    const PxTensor *l = promo_in(&p, logits);
    PxTensor *d = promo_out(&p, dlogits);
    return promo_end(&p, p.ok && px_op_cross_entropy_bwd(be, d, l, targets, dloss, error));
  }
  return ce_check(be, "cross_entropy_bwd", logits, targets, dlogits, 0, error) &&
         be->ops->cross_entropy_bwd(be, dlogits, logits, targets, dloss, error);
}

/* ---- vocabulary-parallel ---- */

static gboolean vp_range(const char *op, const PxTensor *w, gint64 v0, gint64 n_real, GError **error) {
  gint64 rows = w->numel / w->shape[w->ndim - 1];
  if (v0 < 0 || n_real < 0 || n_real > rows)
    return fail(error, PX_BACKEND_ERROR_SHAPE,
                "%s: vocabulary rows [%" G_GINT64_FORMAT ", +%" G_GINT64_FORMAT ") do not fit %s (%" G_GINT64_FORMAT " rows)",
                op, v0, n_real, w->name, rows);
  return TRUE;
}

gboolean px_op_embedding_vp_fwd(PxBackend *be, PxTensor *out, const PxTensor *tokens,
                                const PxTensor *wte, const PxTensor *wpe, gint64 v0,
                                gint64 n_real, int B, int T, GError **error) {
  if (PROMOTE(be, out, out, wte, wpe)) {
    Promo p = promo_begin(be, error);
    const PxTensor *a = promo_in(&p, wte), *b = promo_in(&p, wpe);
    PxTensor *o = promo_over(&p, out);
    return promo_end(&p, p.ok && px_op_embedding_vp_fwd(be, o, tokens, a, b, v0, n_real, B, T, error));
  }
  const char *op = "embedding_vp_fwd";
  return embedding_check(be, op, out, tokens, wte, wpe, B, T, error) &&
         vp_range(op, wte, v0, n_real, error) &&
         be->ops->embedding_vp_fwd(be, out, tokens, wte, wpe, v0, n_real, B, T, error);
}

gboolean px_op_embedding_vp_bwd(PxBackend *be, PxTensor *dwte, PxTensor *dwpe,
                                const PxTensor *dout, const PxTensor *tokens, gint64 v0,
                                gint64 n_real, int B, int T, GError **error) {
  if (PROMOTE(be, dout, dout, dwte, dwpe)) {
    Promo p = promo_begin(be, error);
    const PxTensor *d = promo_in(&p, dout);
    PxTensor *a = promo_out(&p, dwte), *b = promo_out(&p, dwpe);
    return promo_end(&p, p.ok && px_op_embedding_vp_bwd(be, a, b, d, tokens, v0, n_real, B, T, error));
  }
  const char *op = "embedding_vp_bwd";
  return embedding_check(be, op, dout, tokens, dwte, dwpe, B, T, error) &&
         vp_range(op, dwte, v0, n_real, error) &&
         be->ops->embedding_vp_bwd(be, dwte, dwpe, dout, tokens, v0, n_real, B, T, error);
}

/* logits (N,Vl) float; each other tensor given: (rows, N) of the logits' dtype. */
static gboolean ce_vp_check(PxBackend *be, const char *op, const PxTensor *logits, const PxTensor *targets,
                            const PxTensor *gmax, const PxTensor *stats, gint64 n_real, GError **error) {
  gint64 N, V;
  if (!float_matrix(op, "logits", logits, &N, &V, error)) return FALSE;
  if (n_real < 0 || n_real > V)
    return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: %" G_GINT64_FORMAT " real columns of %" G_GINT64_FORMAT, op,
                n_real, V);
  PxDType dt = logits->dtype;
  return need(be, op, "logits", logits, dt, N, V, error) &&
         maybe(be, op, "targets", targets, PX_DTYPE_I32, N, 1, error) &&
         maybe(be, op, "gmax", gmax, stat_dt(dt), 1, N, error) && maybe(be, op, "stats", stats, stat_dt(dt), 2, N, error);
}

gboolean px_op_ce_vp_max(PxBackend *be, PxTensor *rowmax, const PxTensor *logits, gint64 n_real,
                         GError **error) {
  const char *op = "ce_vp_max";
  if (!rowmax) return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: rowmax is missing", op);
  if (PROMOTE(be, logits, logits)) {
    Promo p = promo_begin(be, error);
    const PxTensor *l = promo_in(&p, logits);
    return promo_end(&p, p.ok && px_op_ce_vp_max(be, rowmax, l, n_real, error));
  }
  return ce_vp_check(be, op, logits, NULL, rowmax, NULL, n_real, error) &&
         be->ops->ce_vp_max(be, rowmax, logits, n_real, error);
}

gboolean px_op_ce_vp_stats(PxBackend *be, PxTensor *stats, const PxTensor *logits,
                           const PxTensor *targets, const PxTensor *gmax, gint64 v0,
                           gint64 n_real, GError **error) {
  const char *op = "ce_vp_stats";
  if (!stats || !targets || !gmax) return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: a tensor is missing", op);
  if (v0 < 0) return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: v0 = %" G_GINT64_FORMAT, op, v0);
  if (PROMOTE(be, logits, logits)) {
    Promo p = promo_begin(be, error);
    const PxTensor *l = promo_in(&p, logits);
    return promo_end(&p, p.ok && px_op_ce_vp_stats(be, stats, l, targets, gmax, v0, n_real, error));
  }
  return ce_vp_check(be, op, logits, targets, gmax, stats, n_real, error) &&
         be->ops->ce_vp_stats(be, stats, logits, targets, gmax, v0, n_real, error);
}

gboolean px_op_ce_vp_loss(PxBackend *be, PxTensor *losses, PxTensor *loss_acc,
                          const PxTensor *gmax, const PxTensor *stats, GError **error) {
  const char *op = "ce_vp_loss";
  gint64 r, N;
  if (!float_matrix(op, "gmax", gmax, &r, &N, error)) return FALSE;
  N = gmax->numel;
  PxDType dt = gmax->dtype;
  return need(be, op, "gmax", gmax, dt, 1, N, error) && need(be, op, "stats", stats, dt, 2, N, error) &&
         need(be, op, "losses", losses, dt, 1, N, error) &&
         scalar_check(be, op, "loss_acc", loss_acc, TRUE, FALSE, error) &&
         be->ops->ce_vp_loss(be, losses, loss_acc, gmax, stats, error);
}

gboolean px_op_ce_vp_bwd(PxBackend *be, PxTensor *dlogits, const PxTensor *logits,
                         const PxTensor *targets, const PxTensor *gmax, const PxTensor *stats,
                         gint64 v0, gint64 n_real, double dloss, GError **error) {
  const char *op = "ce_vp_bwd";
  if (!dlogits || !targets || !gmax || !stats)
    return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: a tensor is missing", op);
  if (v0 < 0) return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: v0 = %" G_GINT64_FORMAT, op, v0);
  if (PROMOTE(be, logits, logits, dlogits)) {
    Promo p = promo_begin(be, error);
    const PxTensor *l = promo_in(&p, logits);
    PxTensor *d = promo_out(&p, dlogits);
    return promo_end(&p, p.ok && px_op_ce_vp_bwd(be, d, l, targets, gmax, stats, v0, n_real, dloss, error));
  }
  if (!ce_vp_check(be, op, logits, targets, gmax, stats, n_real, error)) return FALSE;
  gint64 N = logits->numel / logits->shape[logits->ndim - 1];
  return need(be, op, "dlogits", dlogits, logits->dtype, N, logits->shape[logits->ndim - 1], error) &&
         be->ops->ce_vp_bwd(be, dlogits, logits, targets, gmax, stats, v0, n_real, dloss, error);
}

gboolean px_op_adamw_dev(PxBackend *be, PxTensor *param, const PxTensor *grad, PxTensor *m,
                         PxTensor *v, const PxAdamW *opt, const PxTensor *scale_t,
                         const PxTensor *skip_if, GError **error) {
  const PxTensor *ts[] = {param, m, v};
  const char *names[] = {"param", "m", "v"};
  if (!grad || !m || !v || !opt)
    return fail(error, PX_BACKEND_ERROR_SHAPE, "adamw: a tensor is missing");
  if (promote_needed(be, grad) && param && !px_dtype_is_half(param->dtype)) { /* fp32 master, half gradient */
    Promo p = promo_begin(be, error);
    const PxTensor *g2 = promo_in(&p, grad);
    return promo_end(&p, p.ok && px_op_adamw_dev(be, param, g2, m, v, opt, scale_t, skip_if, error));
  }
  if (opt->t < 1) return fail(error, PX_BACKEND_ERROR_SHAPE, "adamw: step t=%d, must be >= 1", opt->t);
  return same_check(be, "adamw", names, ts, 3, error) &&
         need(be, "adamw", "grad", grad, param_dt(grad, param->dtype), param->numel, 1, error) &&
         scalar_check(be, "adamw", "scale_t", scale_t, TRUE, FALSE, error) &&
         scalar_check(be, "adamw", "skip_if", skip_if, TRUE, TRUE, error) &&
         be->ops->adamw(be, param, grad, m, v, opt, scale_t, skip_if, error);
}

gboolean px_op_adamw(PxBackend *be, PxTensor *param, const PxTensor *grad, PxTensor *m, PxTensor *v,
                     const PxAdamW *opt, GError **error) {
  return px_op_adamw_dev(be, param, grad, m, v, opt, NULL, NULL, error);
}

gboolean px_op_adamw_multi(PxBackend *be, const PxAdamWItem *items, int n, const PxAdamW *opt,
                           const PxTensor *scale_t, const PxTensor *skip_if, GError **error) {
  if (n < 0 || (n > 0 && !items) || !opt) return fail(error, PX_BACKEND_ERROR_SHAPE, "adamw_multi: a tensor is missing");
  if (!be->ops->adamw_multi) { /* one call per item */
    for (int i = 0; i < n; i++) {
      PxAdamW o = *opt;
      o.weight_decay = items[i].weight_decay;
      if (!px_op_adamw_dev(be, items[i].param, items[i].grad, items[i].m, items[i].v, &o, scale_t, skip_if, error))
        return FALSE;
    }
    return TRUE;
  }
  if (opt->t < 1) return fail(error, PX_BACKEND_ERROR_SHAPE, "adamw: step t=%d, must be >= 1", opt->t);
  if (!scalar_check(be, "adamw", "scale_t", scale_t, TRUE, FALSE, error) ||
      !scalar_check(be, "adamw", "skip_if", skip_if, TRUE, TRUE, error))
    return FALSE;
  for (int i = 0; i < n; i++) {
    const PxAdamWItem *it = &items[i];
    const PxTensor *ts[] = {it->param, it->m, it->v};
    const char *names[] = {"param", "m", "v"};
    if (!it->grad || !it->m || !it->v) return fail(error, PX_BACKEND_ERROR_SHAPE, "adamw_multi: item %d: a tensor is missing", i);
    if (!same_check(be, "adamw", names, ts, 3, error) ||
        !need(be, "adamw", "grad", it->grad, param_dt(it->grad, it->param->dtype), it->param->numel, 1, error)) {
      g_prefix_error(error, "item %d: ", i);
      return FALSE;
    }
  }
  /* one launch per (param, grad) dtype pair, items in their order */
  g_autofree PxAdamWItem *sub = g_new(PxAdamWItem, MAX(n, 1));
  g_autofree gboolean *done = g_new0(gboolean, MAX(n, 1));
  for (int i = 0; i < n; i++) {
    if (done[i]) continue;
    int k = 0;
    for (int j = i; j < n; j++)
      if (!done[j] && items[j].param->dtype == items[i].param->dtype && items[j].grad->dtype == items[i].grad->dtype) {
        sub[k++] = items[j];
        done[j] = TRUE;
      }
    if (!be->ops->adamw_multi(be, sub, k, opt, scale_t, skip_if, error)) return FALSE;
  }
  return TRUE;
}

gboolean px_op_sum_squares_acc(PxBackend *be, PxTensor *acc, const PxTensor *t, GError **error) {
  const PxTensor *ts[] = {t};
  const char *names[] = {"t"};
  if (promote_needed(be, t)) {
    Promo p = promo_begin(be, error);
    const PxTensor *t2 = promo_in(&p, t);
    return promo_end(&p, p.ok && px_op_sum_squares_acc(be, acc, t2, error));
  }
  return (px_dtype_is_half(t->dtype) || same_check(be, "sum_squares", names, ts, 1, error)) &&
         scalar_check(be, "sum_squares", "acc", acc, FALSE, FALSE, error) &&
         be->ops->sum_squares_acc(be, acc, t, error);
}

gboolean px_op_sum_squares_acc_multi(PxBackend *be, PxTensor *acc, const PxTensor *const *ts, int n,
                                     GError **error) {
  if (n < 0 || (n > 0 && !ts)) return fail(error, PX_BACKEND_ERROR_SHAPE, "sum_squares_multi: a tensor is missing");
  if (!be->ops->sum_squares_multi) {
    for (int i = 0; i < n; i++)
      if (!px_op_sum_squares_acc(be, acc, ts[i], error)) return FALSE;
    return TRUE;
  }
  if (!scalar_check(be, "sum_squares", "acc", acc, FALSE, FALSE, error)) return FALSE;
  for (int i = 0; i < n; i++) {
    const PxTensor *one[] = {ts[i]};
    const char *names[] = {"t"};
    if (!ts[i]) return fail(error, PX_BACKEND_ERROR_SHAPE, "sum_squares_multi: tensor %d is missing", i);
    if (!px_dtype_is_half(ts[i]->dtype) && !same_check(be, "sum_squares", names, one, 1, error)) return FALSE;
  }
  /* one call per dtype, tensors in their order */
  g_autofree const PxTensor **sub = g_new(const PxTensor *, MAX(n, 1));
  g_autofree gboolean *done = g_new0(gboolean, MAX(n, 1));
  for (int i = 0; i < n; i++) {
    if (done[i]) continue;
    int k = 0;
    for (int j = i; j < n; j++)
      if (!done[j] && ts[j]->dtype == ts[i]->dtype) {
        sub[k++] = ts[j];
        done[j] = TRUE;
      }
    if (!be->ops->sum_squares_multi(be, acc, sub, k, error)) return FALSE;
  }
  return TRUE;
}

gboolean px_op_sum_squares(PxBackend *be, const PxTensor *t, double *out, GError **error) {
  g_autoptr(PxTensor) acc = px_tensor_new_zeroed(be, "sum_squares", PX_DTYPE_F64, PX_MEM_BUFFERS, 1,
                                                 (gint64[]){1}, error);
  return acc && px_op_sum_squares_acc(be, acc, t, error) && px_tensor_download(acc, out, error);
}

gboolean px_op_clip_coef(PxBackend *be, PxTensor *coef, const PxTensor *sumsq, double max_norm,
                         GError **error) {
  return scalar_check(be, "clip_coef", "coef", coef, FALSE, FALSE, error) &&
         scalar_check(be, "clip_coef", "sumsq", sumsq, FALSE, FALSE, error) &&
         be->ops->clip_coef(be, coef, sumsq, max_norm, error);
}

gboolean px_op_check_finite(PxBackend *be, PxTensor *flag, const PxTensor *t, GError **error) {
  const PxTensor *ts[] = {t};
  const char *names[] = {"t"};
  if (promote_needed(be, t)) {
    Promo p = promo_begin(be, error);
    const PxTensor *t2 = promo_in(&p, t);
    return promo_end(&p, p.ok && px_op_check_finite(be, flag, t2, error));
  }
  return (px_dtype_is_half(t->dtype) || same_check(be, "check_finite", names, ts, 1, error)) &&
         scalar_check(be, "check_finite", "flag", flag, FALSE, TRUE, error) &&
         be->ops->check_finite(be, flag, t, error);
}

gboolean px_op_scale(PxBackend *be, PxTensor *t, double alpha, GError **error) {
  const PxTensor *ts[] = {t};
  const char *names[] = {"t"};
  if (PROMOTE(be, t, t)) {
    Promo p = promo_begin(be, error);
    PxTensor *t2 = promo_inout(&p, t);
    return promo_end(&p, p.ok && px_op_scale(be, t2, alpha, error));
  }
  return same_check(be, "scale", names, ts, 1, error) && be->ops->scale(be, t, alpha, error);
}

/* rows_gather / rows_dot: x (T, C) and y (N, C) of one float dtype, idx i32
 * and v (may be NULL) with T·k elements, v of their dtype. */
static gboolean rows_check(PxBackend *be, const char *op, const PxTensor *x, const PxTensor *y, const PxTensor *idx,
                           const PxTensor *v, const char *vname, int k, GError **error) {
  gint64 T, C, N, Cy;
  if (!float_matrix(op, "rows", x, &T, &C, error) || !float_matrix(op, "picked from", y, &N, &Cy, error))
    return FALSE;
  if (k < 1) return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: k = %d, expected at least 1", op, k);
  return need(be, op, "rows", x, x->dtype, T, C, error) && need(be, op, "picked from", y, x->dtype, N, C, error) &&
         need(be, op, "idx", idx, PX_DTYPE_I32, T, k, error) && maybe(be, op, vname, v, x->dtype, T, k, error);
}

gboolean px_op_rows_gather(PxBackend *be, PxTensor *dst, const PxTensor *src, const PxTensor *idx,
                           const PxTensor *wt, int k, GError **error) {
  if (PROMOTE(be, dst, dst, src, wt)) {
    Promo p = promo_begin(be, error);
    const PxTensor *s2 = promo_in(&p, src), *w2 = promo_in(&p, wt);
    PxTensor *d = promo_over(&p, dst);
    return promo_end(&p, p.ok && px_op_rows_gather(be, d, s2, idx, w2, k, error));
  }
  return rows_check(be, "rows_gather", dst, src, idx, wt, "wt", k, error) &&
         be->ops->rows_gather(be, dst, src, idx, wt, k, error);
}

gboolean px_op_rows_dot(PxBackend *be, PxTensor *out, const PxTensor *a, const PxTensor *b, const PxTensor *idx,
                        int k, GError **error) {
  if (!out) return fail(error, PX_BACKEND_ERROR_SHAPE, "rows_dot: out is missing");
  if (PROMOTE(be, a, a, b, out)) {
    Promo p = promo_begin(be, error);
    const PxTensor *a2 = promo_in(&p, a), *b2 = promo_in(&p, b);
    PxTensor *o = promo_over(&p, out);
    return promo_end(&p, p.ok && px_op_rows_dot(be, o, a2, b2, idx, k, error));
  }
  return rows_check(be, "rows_dot", a, b, idx, out, "out", k, error) &&
         be->ops->rows_dot(be, out, a, b, idx, k, error);
}

/* router_topk / router_bwd: logits or probs (T, E) of a float dtype, k in
 * [1, E], the picks i32 with T·k elements. */
static gboolean router_check(PxBackend *be, const char *op, const PxTensor *p, const char *pname,
                             const PxTensor *topi, int k, gint64 *T, gint64 *E, GError **error) {
  if (!float_matrix(op, pname, p, T, E, error)) return FALSE;
  if (k < 1 || k > *E)
    return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: k = %d, expected 1 to %" G_GINT64_FORMAT " (the experts)", op, k,
                *E);
  return need(be, op, pname, p, p->dtype, *T, *E, error) && need(be, op, "topi", topi, PX_DTYPE_I32, *T, k, error);
}

gboolean px_op_router_topk(PxBackend *be, PxTensor *probs, PxTensor *topi, PxTensor *topv, PxTensor *psum,
                           const PxTensor *logits, int k, GError **error) {
  const char *op = "router_topk";
  gint64 T, E;
  if (PROMOTE(be, logits, logits, probs)) {
    Promo p = promo_begin(be, error);
    const PxTensor *l = promo_in(&p, logits);
    PxTensor *pr = promo_over(&p, probs);
    return promo_end(&p, p.ok && px_op_router_topk(be, pr, topi, topv, psum, l, k, error));
  }
  return router_check(be, op, logits, "logits", topi, k, &T, &E, error) &&
         need(be, op, "probs", probs, logits->dtype, T, E, error) &&
         need(be, op, "topv", topv, PX_DTYPE_F64, T, k, error) && need(be, op, "psum", psum, PX_DTYPE_F64, 1, E, error) &&
         be->ops->router_topk(be, probs, topi, topv, psum, logits, k, error);
}

gboolean px_op_router_bwd(PxBackend *be, PxTensor *dlogits, const PxTensor *probs, const PxTensor *topi,
                          const PxTensor *dgate, const PxTensor *fcnt, double daux, gboolean norm_topk, int k,
                          GError **error) {
  const char *op = "router_bwd";
  gint64 T, E;
  if (PROMOTE(be, probs, probs, dgate, fcnt, dlogits)) {
    Promo p = promo_begin(be, error);
    const PxTensor *pr = promo_in(&p, probs), *dg = promo_in(&p, dgate), *fc = promo_in(&p, fcnt);
    PxTensor *dl = promo_over(&p, dlogits);
    return promo_end(&p, p.ok && px_op_router_bwd(be, dl, pr, topi, dg, fc, daux, norm_topk, k, error));
  }
  return router_check(be, op, probs, "probs", topi, k, &T, &E, error) &&
         need(be, op, "dlogits", dlogits, probs->dtype, T, E, error) &&
         need(be, op, "dgate", dgate, probs->dtype, T, k, error) && maybe(be, op, "fcnt", fcnt, probs->dtype, 1, E, error) &&
         be->ops->router_bwd(be, dlogits, probs, topi, dgate, fcnt, daux, norm_topk, k, error);
}

gboolean px_op_cast(PxBackend *be, PxTensor *dst, const PxTensor *src, gboolean accumulate,
                    GError **error) {
  const char *op = "cast";
  if (!dst || !src) return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: a tensor is missing", op);
  if (dst->backend != be || src->backend != be)
    return fail(error, PX_BACKEND_ERROR_SHAPE, "%s: %s or %s lives on another backend", op, dst->name, src->name);
  if (dst->dtype == PX_DTYPE_I32 || src->dtype == PX_DTYPE_I32 || dst->numel != src->numel)
    return fail(error, PX_BACKEND_ERROR_SHAPE,
                "%s: %s (%s, %" G_GINT64_FORMAT " elements) from %s (%s, %" G_GINT64_FORMAT
                " elements): float tensors of one size", op, dst->name, px_dtype_name(dst->dtype), dst->numel,
                src->name, px_dtype_name(src->dtype), src->numel);
  if (!be->ops->cast)
    return fail(error, PX_BACKEND_ERROR_UNSUPPORTED, "%s: backend '%s' has no cast (no bf16/fp16 parameters)", op,
                be->ops->name);
  return be->ops->cast(be, dst, src, accumulate, error);
}
