/* api.h — the C entry points of the Python package (python/parallax): run a
 * parallax-sim command in-process, exactly as the CLI does, and hand back its
 * --json output. Built into libparallax_api.so; loaded with ctypes. */
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/* args_json: a JSON array of strings, the command line after "parallax-sim"
 * (["plan", "--model", "llama2-70b", ..., "--json"]). Returns the JSON text
 * the command printed (free with px_api_free), or NULL with *error set to the
 * sentence the CLI printed on stderr ("parallax-sim plan: tp=3 does not divide
 * 64 attention heads"), also to be freed with px_api_free. Calls are
 * serialised; while one runs, file descriptor 2 is redirected to capture the
 * command's messages (those of a successful call are written back to it). */
char *px_api_run_json(const char *args_json, char **error);
void px_api_free(char *p);
/* The library's version string ("0.1"). */
const char *px_api_version(void);

#ifdef __cplusplus
}
#endif
