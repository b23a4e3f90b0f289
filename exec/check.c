/* check.c — the message of a failed device / library call (see check.h). */
#include "check.h"
#include <string.h>

/* The last two components of a path: "/src/exec/backend_cpu.c" -> "exec/backend_cpu.c". */
static const char *short_path(const char *file) {
  const char *last = strrchr(file, '/');
  if (!last) return file;
  for (const char *p = last - 1; p >= file; p--)
    if (*p == '/') return p + 1;
  return file;
}

gboolean px_fail(GError **error, GQuark domain, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  g_autofree char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_set_error_literal(error, domain, code, msg);
  return FALSE;
}

void px_check_fail(GError **error, GQuark domain, int code, int rank, const char *call,
                   const char *file, int line, const char *what) {
  if (!what) what = "unknown error";
  if (rank >= 0)
    g_set_error(error, domain, code, "%s failed on rank %d at %s:%d: %s", call, rank,
                short_path(file), line, what);
  else
    g_set_error(error, domain, code, "%s failed at %s:%d: %s", call, short_path(file), line, what);
}
