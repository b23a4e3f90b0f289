/* fuzz_input.h — shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c,
 * built and run by scripts/fuzz.sh under ASan + UBSan): the parsers read
 * files, so each input is written to one in-memory file first. */
#pragma once
#define _GNU_SOURCE
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Write data to a per-process scratch file (an in-memory file: rewriting a
 * disk file 100,000 times would wait on the disk); its path. */
static const char *fuzz_input_file(const uint8_t *data, size_t size, const char *ext) {
  static int fd = -1;
  static char path[64];
  (void)ext;
  if (fd < 0) {
    fd = memfd_create("px-fuzz-input", 0);
    if (fd < 0) abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0) abort();
  if (size && pwrite(fd, data, size, 0) != (ssize_t)size) abort();
  return path;
}
