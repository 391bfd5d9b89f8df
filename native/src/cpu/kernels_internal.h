// Internal helpers shared by the CPU kernels (not part of the public API).
// The ISA-specific parity kernels are declared here; each lives in its *_avx2.cc / *_avx512.cc file
// and is only called after active_isa() says the CPU supports it.
#pragma once
#include <cstddef>
#include <cstdint>

// ISA-compiled files define KINTSUGI_ISA_TU before including this header so that they see only the
// plain declarations: no STL or template code may be instantiated with -mavx2/-mavx512 (an inline
// function emitted there could be picked by the linker for baseline callers: an ODR hazard).
#if !defined(KINTSUGI_ISA_TU)
#include <new>
#include <string>

#include "kintsugi/error.h"
#endif

namespace kintsugi {
namespace detail {

// parity[0, len) = blocks[0][0, len) ^ ... ^ blocks[k-1][0, len); k >= 1. parity may alias blocks[0].
void xor_blocks_portable(const uint8_t* const* blocks, int k, size_t len, uint8_t* parity);
// parity = sum_i (coeffs ? coeffs[i] : 1) * blocks[i], accumulated in double; k >= 1.
void sum_blocks_portable(const float* const* blocks, const float* coeffs, int k, size_t len, float* parity);
// out = (parity - sum_i coeffs[i] * available[i]) / missing, accumulated in double.
void sum_decode_portable(const float* parity, const float* const* available, const float* coeffs, int count,
                         float missing, size_t len, float* out);

#if !defined(KINTSUGI_NO_X86_KERNELS)
void xor_blocks_avx2(const uint8_t* const* blocks, int k, size_t len, uint8_t* parity);
void sum_blocks_avx2(const float* const* blocks, const float* coeffs, int k, size_t len, float* parity);
void sum_decode_avx2(const float* parity, const float* const* available, const float* coeffs, int count,
                     float missing, size_t len, float* out);
void xor_blocks_avx512(const uint8_t* const* blocks, int k, size_t len, uint8_t* parity);
void sum_blocks_avx512(const float* const* blocks, const float* coeffs, int k, size_t len, float* parity);
void sum_decode_avx512(const float* parity, const float* const* available, const float* coeffs, int count,
                       float missing, size_t len, float* out);
#endif

#if !defined(KINTSUGI_ISA_TU)
// Runs fn and turns allocation failures into kintsugi::Error(OutOfMemory): native code never aborts
// and the binding maps every failure through one exception type.
template <typename F> auto translate_bad_alloc(const char* what, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    throw Error(ErrorKind::OutOfMemory, std::string("Out of memory in ") + what);
  }
}
#endif

}  // namespace detail
}  // namespace kintsugi
