// AVX2 parity kernels (compiled with -mavx2 -mfma): intrinsics and plain loops only.
#define KINTSUGI_ISA_TU
#include <immintrin.h>
#include <string.h>

#include "kernels_internal.h"

namespace kintsugi {
namespace detail {

// 128 bytes (four registers) per step; all loads of a step precede its stores (parity may alias
// blocks[0]).
void xor_blocks_avx2(const uint8_t* const* blocks, int k, size_t len, uint8_t* parity) {
  size_t i = 0;
  for (; i + 128 <= len; i += 128) {
    const uint8_t* b = blocks[0] + i;
    __m256i a0 = _mm256_loadu_si256((const __m256i*)b), a1 = _mm256_loadu_si256((const __m256i*)(b + 32));
    __m256i a2 = _mm256_loadu_si256((const __m256i*)(b + 64)), a3 = _mm256_loadu_si256((const __m256i*)(b + 96));
    for (int t = 1; t < k; ++t) {
      b = blocks[t] + i;
      a0 = _mm256_xor_si256(a0, _mm256_loadu_si256((const __m256i*)b));
      a1 = _mm256_xor_si256(a1, _mm256_loadu_si256((const __m256i*)(b + 32)));
      a2 = _mm256_xor_si256(a2, _mm256_loadu_si256((const __m256i*)(b + 64)));
      a3 = _mm256_xor_si256(a3, _mm256_loadu_si256((const __m256i*)(b + 96)));
    }
    uint8_t* p = parity + i;
    _mm256_storeu_si256((__m256i*)p, a0);
    _mm256_storeu_si256((__m256i*)(p + 32), a1);
    _mm256_storeu_si256((__m256i*)(p + 64), a2);
    _mm256_storeu_si256((__m256i*)(p + 96), a3);
  }
  for (; i + 32 <= len; i += 32) {
    __m256i a = _mm256_loadu_si256((const __m256i*)(blocks[0] + i));
    for (int t = 1; t < k; ++t) a = _mm256_xor_si256(a, _mm256_loadu_si256((const __m256i*)(blocks[t] + i)));
    _mm256_storeu_si256((__m256i*)(parity + i), a);
  }
  for (; i + 8 <= len; i += 8) {
    uint64_t a, v;
    memcpy(&a, blocks[0] + i, 8);
    for (int t = 1; t < k; ++t) {
      memcpy(&v, blocks[t] + i, 8);
      a ^= v;
    }
    memcpy(parity + i, &a, 8);
  }
  for (; i < len; ++i) {
    uint8_t a = blocks[0][i];
    for (int t = 1; t < k; ++t) a ^= blocks[t][i];
    parity[i] = a;
  }
}

KINTSUGI_DEFINE_SUM_KERNELS(avx2)

}  // namespace detail
}  // namespace kintsugi
