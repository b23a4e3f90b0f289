/* llmc_ckpt.c — write a randomly initialised GPT-2 124M checkpoint in llm.c's
 * file format (header: 256 int32, magic 20240326, version 3, maxT, V, L, NH,
 * C, padded V; then the 16 parameter tensors in llm.c's order, fp32), so that
 * llm.c's CPU trainer can be timed beside Parallax without downloading
 * weights. Initialisation as GPT-2: N(0, 0.02) weights, LayerNorm weights 1,
 * biases 0. Not part of Parallax; built by bench/llmc/compare.sh.
 *   usage: llmc_ckpt OUT.bin */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t state = 0x9E3779B97F4A7C15ull;
static double uniform(void) { /* xorshift64* */
  state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
  return ((state * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}
static float normal(void) {
  double u = uniform(), v = uniform();
  return (float)(sqrt(-2 * log(u + 1e-300)) * cos(2 * M_PI * v));
}

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: llmc_ckpt OUT.bin\n"); return 2; }
  const size_t maxT = 1024, V = 50257, Vp = 50304, L = 12, NH = 12, C = 768;
  int header[256] = {20240326, 3, (int)maxT, (int)V, (int)L, (int)NH, (int)C, (int)Vp};
  /* size and init of each tensor: 0 = normal(0.02), 1 = ones, 2 = zeros */
  size_t sizes[16] = {Vp * C, maxT * C, L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C, L * C,
                      L * C, L * C, L * 4 * C * C, L * 4 * C, L * C * 4 * C, L * C, C, C};
  int kind[16] = {0, 0, 1, 2, 0, 2, 0, 2, 1, 2, 0, 2, 0, 2, 1, 2};
  FILE *f = fopen(argv[1], "wb");
  if (!f) { perror(argv[1]); return 1; }
  fwrite(header, sizeof header, 1, f);
  size_t most = 0;
  for (int t = 0; t < 16; t++) most = sizes[t] > most ? sizes[t] : most;
  float *buf = malloc(sizeof(float) * most);
  if (!buf) { perror("malloc"); return 1; }
  for (int t = 0; t < 16; t++) {
    for (size_t i = 0; i < sizes[t]; i++) buf[i] = kind[t] == 0 ? 0.02f * normal() : kind[t] == 1 ? 1.0f : 0.0f;
    if (fwrite(buf, sizeof(float), sizes[t], f) != sizes[t]) { perror(argv[1]); return 1; }
  }
  free(buf);
  return fclose(f) ? 1 : 0;
}
