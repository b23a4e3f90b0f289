/* check.h — one generic check for device and library calls (the ggml habit).
 *
 * PX_CHECK_GEN evaluates a call once as an integer status; when it is not the
 * success value it sets *error ("cudaMalloc(&p, n) failed on rank 3 at
 * exec/cuda/backend_cuda.c:42: out of memory") and returns FALSE from the
 * enclosing function, so that failures travel upward as GError — the top level
 * can then abort the communicator — instead of exit() deep inside a kernel
 * launch. The CUDA, cuBLAS and NCCL checks are one-line instances:
 *
 *   #define PX_CUDA_CHECK(call, rank, error) \
 *     PX_CHECK_GEN(call, cudaSuccess, px_cuda_status_str, PX_BACKEND_ERROR, \
 *                  PX_BACKEND_ERROR_DEVICE, rank, error)
 *
 * with px_cuda_status_str(int) wrapping cudaGetErrorString. rank < 0: unknown,
 * left out of the message. */
#pragma once
#include <glib.h>

G_BEGIN_DECLS

/* Set *error from a printf format and return FALSE: keeps each failure to one line. */
gboolean px_fail(GError **error, GQuark domain, int code, const char *fmt, ...) G_GNUC_PRINTF(4, 5);

void px_check_fail(GError **error, GQuark domain, int code, int rank, const char *call,
                   const char *file, int line, const char *what);

#define PX_CHECK_GEN(call, success, strfn, domain, code, rank, error)                        \
  do {                                                                                     \
    int px_status_ = (int)(call);                                                          \
    if (G_UNLIKELY(px_status_ != (int)(success))) {                                        \
      px_check_fail((error), (domain), (code), (rank), #call, __FILE__, __LINE__,          \
                    strfn(px_status_));                                                    \
      return FALSE;                                                                        \
    }                                                                                      \
  } while (0)

G_END_DECLS
