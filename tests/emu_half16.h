/* emu_half16.h — the 16-bit float types of CUDA's cuda_bf16.h / cuda_fp16.h
 * as the host emulations (tests/flash_emu/emu.h, tests/kernels_emu/kemu.h)
 * stand them in: bit patterns, bf16 rounded to nearest even as
 * __float2bfloat16_rn (NaN kept quiet), f16 through the compiler's IEEE
 * _Float16 conversion as __float2half_rn. Needs <cstdint>, <cstring>, <cmath>
 * included first. */
#pragma once

/* 16-bit floats */
struct __nv_bfloat16 {
  uint16_t u;
};
struct __half {
  uint16_t u;
};
inline float __bfloat162float(__nv_bfloat16 h) {
  uint32_t b = (uint32_t)h.u << 16;
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  if (std::isnan(f)) return __nv_bfloat16{(uint16_t)0x7fc0};
  b += 0x7fffu + ((b >> 16) & 1u); /* to nearest, ties to even */
  return __nv_bfloat16{(uint16_t)(b >> 16)};
}
inline float __half2float(__half h) {
  _Float16 x;
  std::memcpy(&x, &h.u, 2);
  return (float)x;
}
inline __half __float2half_rn(float f) {
  _Float16 x = (_Float16)f; /* IEEE conversion: to nearest even */
  __half h;
  std::memcpy(&h.u, &x, 2);
  return h;
}
