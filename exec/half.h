/* half.h — bf16 and fp16 on the host: conversion to and from fp32.
 *
 * bf16 is the top 16 bits of an IEEE binary32; fp16 is IEEE binary16.
 * Rounding is to nearest, ties to even (what __float2bfloat16_rn and
 * __float2half_rn do on the GPU), NaN stays NaN, overflow goes to ±Inf
 * (fp16 above 65504) and fp16 keeps subnormals. The host uses them to upload,
 * download and check half-precision tensors against a CUDA backend, and the
 * cpu backend to hold bf16/fp16 parameters (it computes in fp32). */
#pragma once
#include <glib.h>
#include <string.h>

static inline guint32 px_f32_bits(float f) {
  guint32 u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static inline float px_bits_f32(guint32 u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline guint16 px_f32_to_bf16(float f) {
  guint32 u = px_f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (guint16)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (guint16)(u >> 16);
}

static inline float px_bf16_to_f32(guint16 h) { return px_bits_f32((guint32)h << 16); }

static inline guint16 px_f32_to_f16(float f) {
  guint32 u = px_f32_bits(f);
  guint32 sign = (u >> 16) & 0x8000u;
  guint32 a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (guint16)(sign | 0x7e00u);              /* NaN */
  if (a >= 0x477ff000u) return (guint16)(sign | 0x7c00u);             /* ≥ 65520 rounds to Inf */
  if (a < 0x38800000u) {                                              /* below 2^-14: subnormal or 0 */
    if (a < 0x33000000u) return (guint16)sign;                        /* below half the least subnormal */
    guint32 e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    guint32 shift = 126 - e;                                          /* 14..24 */
    guint32 q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (guint16)(sign | q);
  }
  guint32 r = a - 0x38000000u;                                        /* rebias 127 -> 15 */
  r += 0xfffu + ((r >> 13) & 1u);
  return (guint16)(sign | (r >> 13));
}

static inline float px_f16_to_f32(guint16 h) {
  guint32 sign = (guint32)(h & 0x8000u) << 16;
  guint32 e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return px_bits_f32(sign | 0x7f800000u | (m << 13));
  if (e == 0) {
    if (m == 0) return px_bits_f32(sign);
    float v = (float)m * (1.0f / 16777216.0f);                        /* m · 2^-24 */
    return sign ? -v : v;
  }
  return px_bits_f32(sign | ((e + 112) << 23) | (m << 13));
}
