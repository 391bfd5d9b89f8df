// AVX-512BW Reed–Solomon kernel (compiled with -mavx512f/bw/dq/vl): intrinsics, plain loops and
// static functions only. Same scheme as the AVX2 kernel with 64-byte vpshufb; the tail is one
// masked load/store per block, so any length runs without a scalar loop.
#define KINTSUGI_ISA_TU
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define RS_INLINE static inline __attribute__((always_inline))

namespace kintsugi {
namespace detail {

RS_INLINE __m512i rs_table_avx512(const uint8_t* t) {
  // The masked form: GCC 12's unmasked intrinsic reads an "undefined" vector and warns.
  return _mm512_maskz_broadcast_i32x4((__mmask16)0xFFFF, _mm_loadu_si128((const __m128i*)t));
}

// One 64-byte column of every output under `mask` (all ones except in the tail).
RS_INLINE void rs_dot_avx512_masked(const uint8_t* const* src, int nsrc, const uint8_t* tables, uint8_t* const* dst,
                                    const int ndst, size_t i, __mmask64 m, int accumulate) {
  const __m512i nib = _mm512_set1_epi8(0x0f);
  const size_t stride = (size_t)ndst * 32;
  __m512i a[4];
  for (int p = 0; p < ndst; ++p) a[p] = accumulate ? _mm512_maskz_loadu_epi8(m, dst[p] + i) : _mm512_setzero_si512();
  const uint8_t* t = tables;
  for (int j = 0; j < nsrc; ++j, t += stride) {
    const __m512i x = _mm512_maskz_loadu_epi8(m, src[j] + i);
    const __m512i l = _mm512_and_si512(x, nib), h = _mm512_and_si512(_mm512_srli_epi16(x, 4), nib);
    for (int p = 0; p < ndst; ++p)
      a[p] = _mm512_xor_si512(a[p], _mm512_xor_si512(_mm512_shuffle_epi8(rs_table_avx512(t + p * 32), l),
                                                     _mm512_shuffle_epi8(rs_table_avx512(t + p * 32 + 16), h)));
  }
  for (int p = 0; p < ndst; ++p) _mm512_mask_storeu_epi8(dst[p] + i, m, a[p]);
}

RS_INLINE void rs_dot_avx512_n(const uint8_t* const* src, int nsrc, const uint8_t* tables, uint8_t* const* dst,
                               const int ndst, size_t off, size_t len, int accumulate) {
  const __m512i nib = _mm512_set1_epi8(0x0f);
  const size_t end = off + len;
  const size_t stride = (size_t)ndst * 32;
  size_t i = off;
  for (; i + 128 <= end; i += 128) {
    __m512i a0[4], a1[4];
    for (int p = 0; p < ndst; ++p) {
      if (accumulate) {
        a0[p] = _mm512_loadu_si512((const void*)(dst[p] + i));
        a1[p] = _mm512_loadu_si512((const void*)(dst[p] + i + 64));
      } else {
        a0[p] = _mm512_setzero_si512();
        a1[p] = _mm512_setzero_si512();
      }
    }
    const uint8_t* t = tables;
    for (int j = 0; j < nsrc; ++j, t += stride) {
      const uint8_t* s = src[j] + i;
      const __m512i x0 = _mm512_loadu_si512((const void*)s);
      const __m512i x1 = _mm512_loadu_si512((const void*)(s + 64));
      const __m512i l0 = _mm512_and_si512(x0, nib), h0 = _mm512_and_si512(_mm512_srli_epi16(x0, 4), nib);
      const __m512i l1 = _mm512_and_si512(x1, nib), h1 = _mm512_and_si512(_mm512_srli_epi16(x1, 4), nib);
      for (int p = 0; p < ndst; ++p) {
        const __m512i tl = rs_table_avx512(t + p * 32), th = rs_table_avx512(t + p * 32 + 16);
        a0[p] = _mm512_xor_si512(a0[p], _mm512_xor_si512(_mm512_shuffle_epi8(tl, l0), _mm512_shuffle_epi8(th, h0)));
        a1[p] = _mm512_xor_si512(a1[p], _mm512_xor_si512(_mm512_shuffle_epi8(tl, l1), _mm512_shuffle_epi8(th, h1)));
      }
    }
    for (int p = 0; p < ndst; ++p) {
      _mm512_storeu_si512((void*)(dst[p] + i), a0[p]);
      _mm512_storeu_si512((void*)(dst[p] + i + 64), a1[p]);
    }
  }
  for (; i + 64 <= end; i += 64) rs_dot_avx512_masked(src, nsrc, tables, dst, ndst, i, ~(__mmask64)0, accumulate);
  if (i < end) {
    const __mmask64 m = (__mmask64)((((unsigned long long)1) << (end - i)) - 1);
    rs_dot_avx512_masked(src, nsrc, tables, dst, ndst, i, m, accumulate);
  }
}

void rs_dot_prod_avx512(const uint8_t* const* src, int nsrc, const uint8_t* tables, uint8_t* const* dst, int ndst,
                        size_t off, size_t len, int accumulate) {
  switch (ndst) {
    case 1: rs_dot_avx512_n(src, nsrc, tables, dst, 1, off, len, accumulate); break;
    case 2: rs_dot_avx512_n(src, nsrc, tables, dst, 2, off, len, accumulate); break;
    case 3: rs_dot_avx512_n(src, nsrc, tables, dst, 3, off, len, accumulate); break;
    default: rs_dot_avx512_n(src, nsrc, tables, dst, 4, off, len, accumulate); break;
  }
}

}  // namespace detail
}  // namespace kintsugi
