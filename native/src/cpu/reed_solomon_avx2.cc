// AVX2 Reed–Solomon kernel (compiled with -mavx2): intrinsics, plain loops and static functions
// only. A byte times a constant c is lo[x & 15] ^ hi[x >> 4], two 16-entry tables looked up with
// vpshufb; every source vector is loaded once and feeds all outputs (ISA-L's gf_Nvect_dot_prod).
#define KINTSUGI_ISA_TU
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define RS_INLINE static inline __attribute__((always_inline))

namespace kintsugi {
namespace detail {

RS_INLINE __m256i rs_table_avx2(const uint8_t* t) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)t));
}

// ndst is a compile-time constant at every call site below, so the loops over outputs unroll and the
// accumulator arrays live in registers.
RS_INLINE void rs_dot_avx2_n(const uint8_t* const* src, int nsrc, const uint8_t* tables, uint8_t* const* dst,
                             const int ndst, size_t off, size_t len, int accumulate) {
  const __m256i mask = _mm256_set1_epi8(0x0f);
  const size_t end = off + len;
  const size_t stride = (size_t)ndst * 32;
  size_t i = off;
  for (; i + 64 <= end; i += 64) {
    __m256i a0[4], a1[4];
    for (int p = 0; p < ndst; ++p) {
      if (accumulate) {
        a0[p] = _mm256_loadu_si256((const __m256i*)(dst[p] + i));
        a1[p] = _mm256_loadu_si256((const __m256i*)(dst[p] + i + 32));
      } else {
        a0[p] = _mm256_setzero_si256();
        a1[p] = _mm256_setzero_si256();
      }
    }
    const uint8_t* t = tables;
    for (int j = 0; j < nsrc; ++j, t += stride) {
      const uint8_t* s = src[j] + i;
      const __m256i x0 = _mm256_loadu_si256((const __m256i*)s);
      const __m256i x1 = _mm256_loadu_si256((const __m256i*)(s + 32));
      const __m256i l0 = _mm256_and_si256(x0, mask), h0 = _mm256_and_si256(_mm256_srli_epi16(x0, 4), mask);
      const __m256i l1 = _mm256_and_si256(x1, mask), h1 = _mm256_and_si256(_mm256_srli_epi16(x1, 4), mask);
      for (int p = 0; p < ndst; ++p) {
        const __m256i tl = rs_table_avx2(t + p * 32), th = rs_table_avx2(t + p * 32 + 16);
        a0[p] = _mm256_xor_si256(a0[p], _mm256_xor_si256(_mm256_shuffle_epi8(tl, l0), _mm256_shuffle_epi8(th, h0)));
        a1[p] = _mm256_xor_si256(a1[p], _mm256_xor_si256(_mm256_shuffle_epi8(tl, l1), _mm256_shuffle_epi8(th, h1)));
      }
    }
    for (int p = 0; p < ndst; ++p) {
      _mm256_storeu_si256((__m256i*)(dst[p] + i), a0[p]);
      _mm256_storeu_si256((__m256i*)(dst[p] + i + 32), a1[p]);
    }
  }
  for (; i + 32 <= end; i += 32) {
    __m256i a[4];
    for (int p = 0; p < ndst; ++p)
      a[p] = accumulate ? _mm256_loadu_si256((const __m256i*)(dst[p] + i)) : _mm256_setzero_si256();
    const uint8_t* t = tables;
    for (int j = 0; j < nsrc; ++j, t += stride) {
      const __m256i x = _mm256_loadu_si256((const __m256i*)(src[j] + i));
      const __m256i l = _mm256_and_si256(x, mask), h = _mm256_and_si256(_mm256_srli_epi16(x, 4), mask);
      for (int p = 0; p < ndst; ++p)
        a[p] = _mm256_xor_si256(a[p], _mm256_xor_si256(_mm256_shuffle_epi8(rs_table_avx2(t + p * 32), l),
                                                       _mm256_shuffle_epi8(rs_table_avx2(t + p * 32 + 16), h)));
    }
    for (int p = 0; p < ndst; ++p) _mm256_storeu_si256((__m256i*)(dst[p] + i), a[p]);
  }
  for (; i < end; ++i) {  // fewer than 32 bytes left
    uint8_t a[4];
    for (int p = 0; p < ndst; ++p) a[p] = accumulate ? dst[p][i] : 0;
    const uint8_t* t = tables;
    for (int j = 0; j < nsrc; ++j, t += stride) {
      const uint8_t x = src[j][i];
      for (int p = 0; p < ndst; ++p) a[p] ^= (uint8_t)(t[p * 32 + (x & 15)] ^ t[p * 32 + 16 + (x >> 4)]);
    }
    for (int p = 0; p < ndst; ++p) dst[p][i] = a[p];
  }
}

void rs_dot_prod_avx2(const uint8_t* const* src, int nsrc, const uint8_t* tables, uint8_t* const* dst, int ndst,
                      size_t off, size_t len, int accumulate) {
  switch (ndst) {
    case 1: rs_dot_avx2_n(src, nsrc, tables, dst, 1, off, len, accumulate); break;
    case 2: rs_dot_avx2_n(src, nsrc, tables, dst, 2, off, len, accumulate); break;
    case 3: rs_dot_avx2_n(src, nsrc, tables, dst, 3, off, len, accumulate); break;
    default: rs_dot_avx2_n(src, nsrc, tables, dst, 4, off, len, accumulate); break;
  }
}

}  // namespace detail
}  // namespace kintsugi
