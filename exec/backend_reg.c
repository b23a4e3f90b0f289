/* backend_reg.c — the registry of backends (ggml-backend-reg.cpp's role):
 * the only file that names concrete backends, so that backend.c (the shared
 * part) and a backend's own files do not refer to each other. A new backend
 * adds its constructor to backend_impl.h and one line here. */
#include "backend_impl.h"

static const PxBackendReg registry[] = {
  {"cpu", px_backend_cpu_create},
#ifdef PX_HAVE_CUDA
  {"cuda", px_backend_cuda_create},
#endif
};

const PxBackendReg *px_backend_registry(gsize *n) {
  *n = G_N_ELEMENTS(registry);
  return registry;
}
