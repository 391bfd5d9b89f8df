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
#include <algorithm>
#include <cstdlib>
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

// The float-sum parity kernels are plain loops (double accumulators over a chunk of 512 elements
// kept on the stack); each ISA file instantiates them with this macro so the compiler vectorises
// them for its instruction set. Plain C arithmetic only, nothing from the STL. A block may alias
// the output (every chunk is read before it is written).
#define KINTSUGI_DEFINE_SUM_KERNELS(SUFFIX)                                                                   \
  void sum_blocks_##SUFFIX(const float* const* blocks, const float* coeffs, int k, size_t len, float* parity) { \
    enum { kChunk = 512 };                                                                                     \
    double acc[kChunk];                                                                                        \
    for (size_t i0 = 0; i0 < len; i0 += kChunk) {                                                              \
      const size_t n = len - i0 < size_t(kChunk) ? len - i0 : size_t(kChunk);                                  \
      {                                                                                                        \
        const float* b = blocks[0] + i0;                                                                       \
        const double c = coeffs ? double(coeffs[0]) : 1.0;                                                     \
        for (size_t j = 0; j < n; ++j) acc[j] = c * double(b[j]);                                              \
      }                                                                                                        \
      for (int t = 1; t < k; ++t) {                                                                            \
        const float* b = blocks[t] + i0;                                                                       \
        const double c = coeffs ? double(coeffs[t]) : 1.0;                                                     \
        for (size_t j = 0; j < n; ++j) acc[j] += c * double(b[j]);                                             \
      }                                                                                                        \
      float* out = parity + i0;                                                                                \
      for (size_t j = 0; j < n; ++j) out[j] = float(acc[j]);                                                   \
    }                                                                                                          \
  }                                                                                                            \
  void sum_decode_##SUFFIX(const float* parity, const float* const* available, const float* coeffs, int count, \
                           float missing, size_t len, float* out) {                                            \
    enum { kChunk = 512 };                                                                                     \
    double acc[kChunk];                                                                                        \
    const double inv = 1.0 / double(missing);                                                                  \
    for (size_t i0 = 0; i0 < len; i0 += kChunk) {                                                              \
      const size_t n = len - i0 < size_t(kChunk) ? len - i0 : size_t(kChunk);                                  \
      const float* p = parity + i0;                                                                            \
      for (size_t j = 0; j < n; ++j) acc[j] = double(p[j]);                                                    \
      for (int t = 0; t < count; ++t) {                                                                        \
        const float* b = available[t] + i0;                                                                    \
        const double c = coeffs ? double(coeffs[t]) : 1.0;                                                     \
        for (size_t j = 0; j < n; ++j) acc[j] -= c * double(b[j]);                                             \
      }                                                                                                        \
      float* o = out + i0;                                                                                     \
      for (size_t j = 0; j < n; ++j) o[j] = float(acc[j] * inv);                                               \
    }                                                                                                          \
  }

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

// Element-wise Adagrad (elementwise.cc) on whole groups of 8 with AVX-512, in double like the
// portable loop: returns how many leading elements it did (the caller finishes the rest).
int64_t adagrad_update_avx512(float* w, const float* g, float* s, int64_t n, double lr, double eps, double wd);

}  // namespace detail

namespace conv_internal {

// Grow-only, 64-byte aligned scratch, one per thread (thread_local) for the conv kernels' panels
// and padded copies: no allocation and no page faults once warm. Contents are not preserved
// across a growth. Its functions are defined out of line in conv.cc (baseline ISA), so ISA-compiled
// files can use it without emitting their own copies.
struct ScratchBuffer {
  float* data = nullptr;
  size_t size = 0;
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer();
  float* get(size_t n);  // at least n floats; throws std::bad_alloc
};

// Implicit-GEMM B panel packing (conv_implicit.cc; AVX-512 version in conv_avx512.cc). A panel's
// columns are runs of consecutive output pixels of one output row of one image.
// Packers prefetch input runs ahead: rows are streamed channel by channel, with gaps (stride-2
// rows, a panel's few runs per row) the hardware prefetcher does not run ahead of. A 1x1 layer's
// runs are fetched four channels early, larger kernels' one channel early at a kernel row's first
// tap (its other taps read the same input row). Internal linkage: the AVX-512 packer's TU sees it
// too, and an inline copy emitted there must not be shared with baseline callers (see above).
static constexpr int64_t pack_prefetch_planes(int64_t kernel_taps) { return kernel_taps == 1 ? 4 : 1; }

struct PanelSegment {
  int64_t img, oh, ow0;  // image, output row, first output column
  int len, jj;           // pixels in the run, first panel column
};
// Reduction rows [k0, k0 + kc) of a panel, row r = (c, i, j) at dst + (r - k0) * nr:
// dst[.. + jj + q] = x[img, c, oh*stride_h - pad_h + i*dil_h, (ow0 + q)*stride_w - pad_w + j*dil_w],
// zero outside the image. lo_w / hi_w: per kernel column j (j < kw), the output columns whose
// input column lies inside the image.
struct PackPanelJob {
  const float* x = nullptr;  // channel 0 of the group in image 0
  int64_t img_stride = 0, plane = 0, h = 0, w = 0, kh = 0, kw = 0;
  int64_t stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1, pad_h = 0, pad_w = 0;
  const int64_t* lo_w = nullptr;
  const int64_t* hi_w = nullptr;
  const PanelSegment* segs = nullptr;
  int nseg = 0, nr = 0;
  int64_t k0 = 0, kc = 0;
  float* dst = nullptr;
};
#if !defined(KINTSUGI_NO_X86_KERNELS)
void pack_panel_avx512(const PackPanelJob& job);
#endif

}  // namespace conv_internal

#if !defined(KINTSUGI_ISA_TU)
struct Conv2dParams;
namespace conv_internal {

// Floor / ceiling of a / b for b > 0 and any sign of a.
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
inline int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// Output positions o in [lo, hi) whose input position o * stride + off lies in [0, in).
inline void valid_range(int64_t off, int64_t stride, int64_t in, int64_t out, int64_t& lo, int64_t& hi) {
  lo = std::max<int64_t>(0, ceil_div(-off, stride));
  hi = std::min<int64_t>(out, floor_div(in - 1 - off, stride) + 1);
  if (hi < lo) hi = lo;
}

// Sizes of a convolution derived from its parameters (geometry() in conv.cc).
struct Geometry {
  int64_t oh = 0, ow = 0, ohw = 0, hw = 0;
  int64_t cg = 0, kg = 0;  // input / output channels per group
  int64_t kk = 0;          // kh * kw
  int64_t krows = 0;       // rows of the column matrix: cg * kh * kw
  bool pointwise = false;  // 1x1, stride 1, no padding: the image is its own column matrix
  bool depthwise = false;  // one input channel per group and few outputs per group: direct loops
};
Geometry geometry(const Conv2dParams& p);

// Blocking of the implicit-GEMM convolution (conv_implicit.cc); 0 / -1 fields: the default
// derived from the active KernelSet and cpu_info(). For tests (tiny blocks reach every edge) and
// tuning.
struct ImplicitGemmTuning {
  int mr = 0, nr = 0;        // register tile (must be one the active micro-kernel accepts)
  int64_t kc = 0, mc = 0, nc = 0;
  int64_t m_tasks = 0;       // output-channel split per pixel block
  int virtual_cols = -1;     // 1: pixel blocks run across images (n > 1), 0: never
  int portable_pack = 0;     // 1: plain-C++ panel packing even where AVX-512 is active
};

// NCHW forward, groups allowed, any stride / padding / dilation; y overwritten (bias nullable).
void implicit_gemm_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                           const ImplicitGemmTuning& tune);

// What conv2d_forward passes (tests and tuning; not thread-safe, set between calls).
// ImplicitGemmTuning{} restores the defaults.
void set_implicit_gemm_tuning(const ImplicitGemmTuning& t);
const ImplicitGemmTuning& implicit_gemm_tuning();

// NHWC convolution (conv_nhwc.cc). `panels`: the packed weights of nhwc_pack_weights, or null
// to pack w for this call.
int64_t nhwc_packed_size(const Conv2dParams& p, int nr);
void nhwc_pack_weights(const Conv2dParams& p, const float* w, int nr, float* packed);
void nhwc_forward(const Conv2dParams& p, const float* x, const float* w, const float* panels, int nr, const float* bias,
                  float* y);
void nhwc_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx);
void nhwc_backward_weight(const Conv2dParams& p, const float* x, const float* dy, float* dw, float* db);

#if !defined(KINTSUGI_NO_X86_KERNELS)
// Direct convolution with pre-packed weights (conv_direct_avx512.cc): groups == 1, any stride,
// padding and dilation.
int64_t direct_packed_size(const Conv2dParams& p);
void direct_pack_weights_avx512(const Conv2dParams& p, const float* w, float* packed);
void direct_forward_avx512(const Conv2dParams& p, const float* x, const float* packed, const float* bias, float* y);
#endif

}  // namespace conv_internal
#endif
}  // namespace kintsugi
