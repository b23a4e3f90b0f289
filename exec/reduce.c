/* reduce.c — the host reductions every CPU-side reduction goes through: the
 * communicators' (comm_local.c, comm_tcp.c, comm_mpi.c) and the host streams'
 * px_stream_reduce (stream.c). Halves are summed in fp32 and rounded once.
 * Apart from comm.c so that a build of the streams without the communicators
 * (scripts/fuzz.sh's library) links. Declared in comm_impl.h. */
#include "comm_impl.h"
#include "half.h"
#include <string.h>

void px_comm_reduce_into(void *acc, const void *x, gsize count, PxDType dt, PxRedOp op) {
#define RED(T)                                                                                     \
  do {                                                                                             \
    T *a = acc;                                                                                    \
    const T *b = x;                                                                                \
    if (op == PX_RED_SUM)                                                                          \
      for (gsize i = 0; i < count; i++) a[i] += b[i];                                              \
    else                                                                                           \
      for (gsize i = 0; i < count; i++) a[i] = b[i] > a[i] ? b[i] : a[i];                          \
  } while (0)
  switch (dt) {
  case PX_DTYPE_F32: RED(float); break;
  case PX_DTYPE_F64: RED(double); break;
  case PX_DTYPE_I32: RED(gint32); break;
  case PX_DTYPE_BF16:
  case PX_DTYPE_F16: g_return_if_reached(); /* halves: px_comm_reduce_parts (one rounding, not one per step) */
  }
#undef RED
}

void px_comm_half_to_f32(float *out, const void *x, gsize count, PxDType dt) {
  const guint16 *h = x;
  if (dt == PX_DTYPE_BF16)
    for (gsize i = 0; i < count; i++) out[i] = px_bf16_to_f32(h[i]);
  else
    for (gsize i = 0; i < count; i++) out[i] = px_f16_to_f32(h[i]);
}

void px_comm_f32_to_half(void *out, const float *x, gsize count, PxDType dt) {
  guint16 *h = out;
  if (dt == PX_DTYPE_BF16)
    for (gsize i = 0; i < count; i++) h[i] = px_f32_to_bf16(x[i]);
  else
    for (gsize i = 0; i < count; i++) h[i] = px_f32_to_f16(x[i]);
}

/* Halves go through an fp32 block of this many elements (16 KiB on the stack),
 * and a reduction into a later part through a block of its own dtype. */
#define HALF_BLOCK 4096

void px_comm_reduce_parts(void *out, const void *const *parts, int n, gsize count, PxDType dt, PxRedOp op) {
  gsize es = px_dtype_size(dt);
  gboolean aliased = FALSE; /* out is a later part: it would be written before it is read */
  for (int k = 1; k < n; k++) aliased = aliased || parts[k] == out;
  if (!px_dtype_is_half(dt) && !aliased) {
    if (count && out != parts[0]) memmove(out, parts[0], count * es);
    for (int k = 1; k < n; k++) px_comm_reduce_into(out, parts[k], count, dt, op);
    return;
  }
  if (!px_dtype_is_half(dt)) { /* each block formed apart, in rank order, then written */
    double block[HALF_BLOCK]; /* (HALF_BLOCK) elements of dt (at most 8 bytes each) */
    for (gsize at = 0; at < count; at += HALF_BLOCK) {
      gsize m = MIN(HALF_BLOCK, count - at);
      memcpy(block, (const char *)parts[0] + at * es, m * es);
      for (int k = 1; k < n; k++) px_comm_reduce_into(block, (const char *)parts[k] + at * es, m, dt, op);
      memcpy((char *)out + at * es, block, m * es);
    }
    return;
  }
  float acc[HALF_BLOCK], x[HALF_BLOCK];
  for (gsize at = 0; at < count; at += HALF_BLOCK) {
    gsize m = MIN(HALF_BLOCK, count - at);
    px_comm_half_to_f32(acc, (const char *)parts[0] + at * es, m, dt);
    for (int k = 1; k < n; k++) {
      px_comm_half_to_f32(x, (const char *)parts[k] + at * es, m, dt);
      px_comm_reduce_into(acc, x, m, PX_DTYPE_F32, op);
    }
    px_comm_f32_to_half((char *)out + at * es, acc, m, dt);
  }
}
