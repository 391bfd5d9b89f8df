// AVX-512 parity kernels (compiled with -mavx512f/bw/dq/vl): intrinsics and plain loops only.
#define KINTSUGI_ISA_TU
#include <immintrin.h>

#include "kernels_internal.h"

namespace kintsugi {
namespace detail {

// 256 bytes (four registers) per step: every block is read once, the parity written once. Loads
// of a step all precede its stores, so parity may alias blocks[0] (xor_into).
void xor_blocks_avx512(const uint8_t* const* blocks, int k, size_t len, uint8_t* parity) {
  size_t i = 0;
  for (; i + 256 <= len; i += 256) {
    const uint8_t* b = blocks[0] + i;
    __m512i a0 = _mm512_loadu_si512(b), a1 = _mm512_loadu_si512(b + 64);
    __m512i a2 = _mm512_loadu_si512(b + 128), a3 = _mm512_loadu_si512(b + 192);
    for (int t = 1; t < k; ++t) {
      b = blocks[t] + i;
      a0 = _mm512_xor_si512(a0, _mm512_loadu_si512(b));
      a1 = _mm512_xor_si512(a1, _mm512_loadu_si512(b + 64));
      a2 = _mm512_xor_si512(a2, _mm512_loadu_si512(b + 128));
      a3 = _mm512_xor_si512(a3, _mm512_loadu_si512(b + 192));
    }
    uint8_t* p = parity + i;
    _mm512_storeu_si512(p, a0);
    _mm512_storeu_si512(p + 64, a1);
    _mm512_storeu_si512(p + 128, a2);
    _mm512_storeu_si512(p + 192, a3);
  }
  for (; i + 64 <= len; i += 64) {
    __m512i a = _mm512_loadu_si512(blocks[0] + i);
    for (int t = 1; t < k; ++t) a = _mm512_xor_si512(a, _mm512_loadu_si512(blocks[t] + i));
    _mm512_storeu_si512(parity + i, a);
  }
  if (i < len) {
    // Masked loads do not touch (or fault on) the bytes past the end.
    const __mmask64 m = (__mmask64(1) << (len - i)) - 1;
    __m512i a = _mm512_maskz_loadu_epi8(m, blocks[0] + i);
    for (int t = 1; t < k; ++t) a = _mm512_xor_si512(a, _mm512_maskz_loadu_epi8(m, blocks[t] + i));
    _mm512_mask_storeu_epi8(parity + i, m, a);
  }
}

KINTSUGI_DEFINE_SUM_KERNELS(avx512)

}  // namespace detail
}  // namespace kintsugi
