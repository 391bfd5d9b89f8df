// Parity coding: argument checks, ISA dispatch, splitting of large blocks over the pool, and the
// portable kernels. The AVX2 / AVX-512 kernels live in parity_avx2.cc / parity_avx512.cc.
#include "kintsugi/parity.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "kernels_internal.h"
#include "kintsugi/cpu.h"
#include "kintsugi/error.h"
#include "kintsugi/threadpool.h"

namespace kintsugi {
namespace detail {

void xor_blocks_portable(const uint8_t* const* blocks, int k, size_t len, uint8_t* parity) {
  size_t i = 0;
  for (; i + 32 <= len; i += 32) {
    uint64_t a[4], v[4];
    std::memcpy(a, blocks[0] + i, 32);
    for (int t = 1; t < k; ++t) {
      std::memcpy(v, blocks[t] + i, 32);
      a[0] ^= v[0];
      a[1] ^= v[1];
      a[2] ^= v[2];
      a[3] ^= v[3];
    }
    std::memcpy(parity + i, a, 32);
  }
  for (; i + 8 <= len; i += 8) {
    uint64_t a, v;
    std::memcpy(&a, blocks[0] + i, 8);
    for (int t = 1; t < k; ++t) {
      std::memcpy(&v, blocks[t] + i, 8);
      a ^= v;
    }
    std::memcpy(parity + i, &a, 8);
  }
  for (; i < len; ++i) {
    uint8_t a = blocks[0][i];
    for (int t = 1; t < k; ++t) a = uint8_t(a ^ blocks[t][i]);
    parity[i] = a;
  }
}

KINTSUGI_DEFINE_SUM_KERNELS(portable)

}  // namespace detail

namespace {

using XorKernel = void (*)(const uint8_t* const*, int, size_t, uint8_t*);
using SumKernel = void (*)(const float* const*, const float*, int, size_t, float*);
using DecodeKernel = void (*)(const float*, const float* const*, const float*, int, float, size_t, float*);

XorKernel xor_kernel() {
#if !defined(KINTSUGI_NO_X86_KERNELS)
  switch (active_isa()) {
    case Isa::Avx512: return detail::xor_blocks_avx512;
    case Isa::Avx2: return detail::xor_blocks_avx2;
    default: break;
  }
#endif
  return detail::xor_blocks_portable;
}

SumKernel sum_kernel() {
#if !defined(KINTSUGI_NO_X86_KERNELS)
  switch (active_isa()) {
    case Isa::Avx512: return detail::sum_blocks_avx512;
    case Isa::Avx2: return detail::sum_blocks_avx2;
    default: break;
  }
#endif
  return detail::sum_blocks_portable;
}

DecodeKernel decode_kernel() {
#if !defined(KINTSUGI_NO_X86_KERNELS)
  switch (active_isa()) {
    case Isa::Avx512: return detail::sum_decode_avx512;
    case Isa::Avx2: return detail::sum_decode_avx2;
    default: break;
  }
#endif
  return detail::sum_decode_portable;
}

// Below this many bytes touched a call runs on the calling thread: cache-resident work is faster
// alone than the cost of waking the pool.
constexpr size_t kParallelBytes = size_t(4) << 20;
// Split points are multiples of this many elements, so every task but the last runs whole vectors.
constexpr size_t kSplitBytes = 16384;

template <typename T> void check_blocks(const T* const* blocks, int k, size_t len, const char* name) {
  if (k < 0) throw_expected(ErrorKind::Range, "a block count >= 0", "k", std::to_string(k));
  if (len == 0 || k == 0) return;
  if (!blocks) throw_expected(ErrorKind::Type, std::to_string(k) + " block pointers", name, "null");
  for (int i = 0; i < k; ++i)
    if (!blocks[i]) throw_expected(ErrorKind::Type, "a block", std::string(name) + "[" + std::to_string(i) + "]", "null");
}

// Runs kernel(sub_blocks, offset, count) over [0, len) elements, in parallel for large inputs; each
// task gets its own array of block pointers advanced to its range.
template <typename T, typename F>
void split(const T* const* blocks, int k, size_t len, size_t bytes_touched, const F& run_range) {
  const int threads = num_threads();
  if (threads <= 1 || bytes_touched < kParallelBytes) {
    run_range(blocks, size_t(0), len);
    return;
  }
  const size_t unit = kSplitBytes / sizeof(T);
  const int64_t units = int64_t((len + unit - 1) / unit);
  parallel_for(units, 1, [&](int64_t u0, int64_t u1) {
    const size_t begin = size_t(u0) * unit, end = std::min(len, size_t(u1) * unit);
    std::vector<const T*> sub(size_t(std::max(k, 1)));
    for (int i = 0; i < k; ++i) sub[size_t(i)] = blocks[i] + begin;
    run_range(sub.data(), begin, end - begin);
  });
}

}  // namespace

void xor_encode(const uint8_t* const* blocks, int k, size_t len, uint8_t* parity) {
  check_blocks(blocks, k, len, "blocks");
  if (len == 0) return;
  if (!parity) throw_expected(ErrorKind::Type, "a parity buffer", "parity", "null");
  if (k == 0) {  // the XOR of no blocks
    std::memset(parity, 0, len);
    return;
  }
  const XorKernel kernel = xor_kernel();
  detail::translate_bad_alloc("xor_encode", [&] {
    split(blocks, k, len, len * size_t(k + 1), [&](const uint8_t* const* b, size_t offset, size_t n) {
      kernel(b, k, n, parity + offset);
    });
  });
}

void xor_into(uint8_t* dst, const uint8_t* src, size_t len) {
  if (len == 0) return;
  if (!dst) throw_expected(ErrorKind::Type, "a buffer", "dst", "null");
  if (!src) throw_expected(ErrorKind::Type, "a buffer", "src", "null");
  const uint8_t* blocks[2] = {dst, src};  // dst = dst ^ src: the kernels read a step before writing it
  xor_encode(blocks, 2, len, dst);
}

void sum_encode(const float* const* blocks, const float* coeffs, int k, size_t len, float* parity) {
  check_blocks(blocks, k, len, "blocks");
  if (len == 0) return;
  if (!parity) throw_expected(ErrorKind::Type, "a parity buffer", "parity", "null");
  if (k == 0) {
    std::fill(parity, parity + len, 0.0f);
    return;
  }
  const SumKernel kernel = sum_kernel();
  detail::translate_bad_alloc("sum_encode", [&] {
    split(blocks, k, len, len * sizeof(float) * size_t(k + 1), [&](const float* const* b, size_t offset, size_t n) {
      kernel(b, coeffs, k, n, parity + offset);
    });
  });
}

void sum_decode(const float* parity, const float* const* available, const float* coeffs, int count, float missing_coeff,
                size_t len, float* out) {
  check_blocks(available, count, len, "available");
  if (!(missing_coeff != 0.0f) || missing_coeff - missing_coeff != 0.0f)  // zero, NaN or infinite
    throw_expected(ErrorKind::Range, "a finite non-zero coefficient", "missing_coeff", std::to_string(missing_coeff));
  if (len == 0) return;
  if (!parity) throw_expected(ErrorKind::Type, "a parity buffer", "parity", "null");
  if (!out) throw_expected(ErrorKind::Type, "an output buffer", "out", "null");
  const DecodeKernel kernel = decode_kernel();
  detail::translate_bad_alloc("sum_decode", [&] {
    split(available, count, len, len * sizeof(float) * size_t(count + 2),
          [&](const float* const* b, size_t offset, size_t n) { kernel(parity + offset, b, coeffs, count, missing_coeff, n, out + offset); });
  });
}

}  // namespace kintsugi
