// AVX-512 packing of implicit-GEMM B panels (conv_implicit.cc): each panel row is a few runs of an
// input row, copied 16 lanes at a time, with masked loads where a vector reaches into the padding
// (those lanes read nothing and store zero). Stride 2 loads two vectors and keeps the even
// elements with one permute. Stores are whole vectors: a run's last vector may spill up to 15
// floats past it, which the next run (or row, or panel) overwrites; the caller leaves 16 floats
// of slack after its buffer.
// Only intrinsics and plain code here (see gemm_internal.h on ODR).
#define KINTSUGI_ISA_TU 1
#include <immintrin.h>

#include "kernels_internal.h"

namespace kintsugi {
namespace conv_internal {
namespace {

inline uint32_t range_mask32(int64_t lo, int64_t hi) {  // bits [lo, hi) of 32, clipped
  if (lo < 0) lo = 0;
  if (hi > 32) hi = 32;
  if (hi <= lo) return 0u;
  const uint32_t upto = hi >= 32 ? 0xFFFFFFFFu : ((1u << hi) - 1u);
  return upto & ~((1u << lo) - 1u);
}

}  // namespace

void pack_panel_avx512(const PackPanelJob& jb) {
  const int nr = jb.nr;
  const int64_t kk = jb.kh * jb.kw;
  int64_t c = jb.k0 / kk, r = jb.k0 % kk;
  int64_t i = r / jb.kw, j = r % jb.kw;
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512 zero = _mm512_setzero_ps();
  const int64_t ahead_planes = pack_prefetch_planes(kk);
  for (int64_t kp = 0; kp < jb.kc; ++kp) {
    const bool prefetch_ahead = j == 0 && kp + ahead_planes * kk < jb.kc;
    float* drow = jb.dst + kp * nr;
    const int64_t off_h = i * jb.dil_h - jb.pad_h, off_w = j * jb.dil_w - jb.pad_w;
    const int64_t lo = jb.lo_w[j], hi = jb.hi_w[j];
    const float* chan = jb.x + c * jb.plane;
    for (int s = 0; s < jb.nseg; ++s) {
      const PanelSegment& sg = jb.segs[s];
      float* d = drow + sg.jj;
      const int64_t ih = sg.oh * jb.stride_h + off_h;
      const int len = sg.len;
      if (ih < 0 || ih >= jb.h) {
        for (int v = 0; v < len; v += 16) _mm512_storeu_ps(d + v, zero);
        continue;
      }
      // Valid lanes [a, b) of this run.
      int64_t a = lo - sg.ow0, b = hi - sg.ow0;
      if (a < 0) a = 0;
      if (b > len) b = len;
      if (b < a) b = a;
      const float* src = chan + sg.img * jb.img_stride + ih * jb.w + sg.ow0 * jb.stride_w + off_w;
      if (prefetch_ahead) {
        const char* ahead = reinterpret_cast<const char*>(src + ahead_planes * jb.plane);
        const int64_t run_bytes = int64_t(len) * jb.stride_w * int64_t(sizeof(float));
        for (int64_t off = 0; off < run_bytes; off += 64) _mm_prefetch(ahead + off, _MM_HINT_T0);
      }
      for (int v = 0; v < len; v += 16) {
        const int n = len - v < 16 ? len - v : 16;
        const int64_t la = a - v, lb = (b - v < n ? b - v : n);
        __m512 val;
        if (la <= 0 && lb >= 16) {
          // Every lane inside the image: plain loads.
          if (jb.stride_w == 1) {
            _mm512_storeu_ps(d + v, _mm512_loadu_ps(src + v));
            continue;
          }
          if (jb.stride_w == 2) {
            const __m512 v0 = _mm512_loadu_ps(src + 2 * v);
            const __m512 v1 = _mm512_maskz_loadu_ps(__mmask16(0x7FFF), src + 2 * v + 16);
            _mm512_storeu_ps(d + v, _mm512_permutex2var_ps(v0, even, v1));
            continue;
          }
        }
        const __mmask16 valid = __mmask16(range_mask32(la, lb));
        if (jb.stride_w == 1) {
          val = _mm512_maskz_loadu_ps(valid, src + v);
        } else if (jb.stride_w == 2) {
          // Lanes e in [la, lb) need source elements 2e: the range [2la, 2lb - 1) of the 32.
          const uint32_t m = la < lb ? range_mask32(2 * (la < 0 ? 0 : la), 2 * lb - 1) : 0u;
          const __m512 v0 = _mm512_maskz_loadu_ps(__mmask16(m & 0xFFFFu), src + 2 * v);
          const __m512 v1 = _mm512_maskz_loadu_ps(__mmask16(m >> 16), src + 2 * v + 16);
          val = _mm512_maskz_permutex2var_ps(valid, v0, even, v1);
        } else {
          alignas(64) float tmp[16];
          for (int e = 0; e < 16; ++e) tmp[e] = (valid >> e) & 1 ? src[(v + e) * jb.stride_w] : 0.0f;
          val = _mm512_load_ps(tmp);
        }
        _mm512_storeu_ps(d + v, val);
      }
    }
    if (++j == jb.kw) {
      j = 0;
      if (++i == jb.kh) {
        i = 0;
        ++c;
      }
    }
  }
}

}  // namespace conv_internal
}  // namespace kintsugi
