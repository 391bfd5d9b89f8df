// AVX2 + FMA sgemm micro-kernels (compiled with -mavx2 -mfma; chosen at run time).
// Main tile 6 x 16: 12 ymm accumulators, 2 B vectors, 1 broadcast. One or two rows take up
// to 32 columns (the small-M path). Edge columns use maskload/maskstore, so no tile touches
// memory outside its mr x nr extent. Only intrinsics and internal-linkage code here (see
// gemm_internal.h on ODR).
#include <immintrin.h>

#include "gemm_internal.h"
#include "gemm_stream.h"

namespace kintsugi {
namespace gemm_internal {
namespace {

inline __m256i tail_mask(int tail) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Horizontal sum of the 8 lanes.
inline __attribute__((always_inline)) float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

template <int M, int NV, bool MASKED, bool STRIDED_A>
inline __attribute__((always_inline)) void tile_body(const MicroTile& t) {
  __m256 acc[M][NV];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();

  const int tail = t.nr - (NV - 1) * 8;  // 1..8 columns in the last vector
  const __m256i last = tail_mask(MASKED ? tail : 8);
  const float* a = t.a;
  const float* b = t.b;
  const int64_t as = t.a_stride, bs = t.b_stride;
  int64_t aoff[M];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) aoff[i] = STRIDED_A ? i * t.a_row_stride : i;

#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) _mm_prefetch(reinterpret_cast<const char*>(t.c + i * t.ldc), _MM_HINT_T0);

  for (int64_t p = 0; p < t.k; ++p) {
    __m256 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = (MASKED && v == NV - 1) ? _mm256_maskload_ps(b + 8 * v, last) : _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + aoff[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
    }
    a += as;
    b += bs;
  }

  const __m256 va = _mm256_set1_ps(t.alpha);
  const bool read_c = t.beta != 0.0f;
  const __m256 vb = _mm256_set1_ps(t.beta);
  const __m256 zero = _mm256_setzero_ps();
  __m256 col[NV];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v) col[v] = zero;
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    float* c = t.c + i * t.ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const bool m = MASKED && v == NV - 1;
      __m256 r = _mm256_mul_ps(acc[i][v], va);
      if (read_c) {
        const __m256 old = m ? _mm256_maskload_ps(c + 8 * v, last) : _mm256_loadu_ps(c + 8 * v);
        r = _mm256_fmadd_ps(vb, old, r);
      }
      if (m) {
        _mm256_maskstore_ps(c + 8 * v, last, r);
        r = _mm256_blendv_ps(zero, r, _mm256_castsi256_ps(last));
      } else {
        _mm256_storeu_ps(c + 8 * v, r);
      }
      acc[i][v] = r;
    }
    if (t.row_sums) {
      __m256 row = zero;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) row = _mm256_add_ps(row, acc[i][v]);
      t.row_sums[i] = hsum(row);
    }
    if (t.col_sums) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) col[v] = _mm256_add_ps(col[v], acc[i][v]);
    }
  }
  if (t.col_sums) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* s = t.col_sums + 8 * v;
      if (MASKED && v == NV - 1)
        _mm256_maskstore_ps(s, last, col[v]);
      else
        _mm256_storeu_ps(s, col[v]);
    }
  }
}

template <int M, int NV>
void tile(const MicroTile& t) {
  if (t.a_row_stride == 1) {
    if (t.nr == NV * 8)
      tile_body<M, NV, false, false>(t);
    else
      tile_body<M, NV, true, false>(t);
  } else {
    if (t.nr == NV * 8)
      tile_body<M, NV, false, true>(t);
    else
      tile_body<M, NV, true, true>(t);
  }
}

constexpr int kMaxRows = 6;
constexpr int kMaxVectors = 4;

const MicroKernel kTiles[kMaxRows + 1][kMaxVectors + 1] = {
    {nullptr},
    {nullptr, &tile<1, 1>, &tile<1, 2>, &tile<1, 3>, &tile<1, 4>},
    {nullptr, &tile<2, 1>, &tile<2, 2>, &tile<2, 3>, &tile<2, 4>},
    {nullptr, &tile<3, 1>, &tile<3, 2>, &tile<3, 3>, nullptr},
    {nullptr, &tile<4, 1>, &tile<4, 2>, nullptr, nullptr},
    {nullptr, &tile<5, 1>, &tile<5, 2>, nullptr, nullptr},
    {nullptr, &tile<6, 1>, &tile<6, 2>, nullptr, nullptr},
};

void micro(const MicroTile& t) { kTiles[t.mr][(t.nr + 7) >> 3](t); }

// Row-streaming kernel (StreamTile): the driver in gemm_stream.h around this ISA's chunk.
constexpr int kStreamRows = 8;

template <int M, int NV, bool MASKED>
inline __attribute__((always_inline)) void stream_chunk(const StreamChunk& s, __m256i last_mask) {
  __m256 acc[M][NV];
  if (s.first) {
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
  } else {
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v)
        acc[i][v] = (MASKED && v == NV - 1) ? _mm256_maskload_ps(s.acc + i * s.accld + 8 * v, last_mask)
                                            : _mm256_loadu_ps(s.acc + i * s.accld + 8 * v);
  }
  const float* b = s.b;
  const float* al = s.al;
  for (int r = 0; r < s.kb; ++r) {
    __m256 bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = (MASKED && v == NV - 1) ? _mm256_maskload_ps(b + 8 * v, last_mask) : _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      const __m256 ai = _mm256_broadcast_ss(al + i);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
    }
    b += s.ldb;
    al += M;
  }
  if (!s.last) {
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        float* d = s.acc + i * s.accld + 8 * v;
        if (MASKED && v == NV - 1)
          _mm256_maskstore_ps(d, last_mask, acc[i][v]);
        else
          _mm256_storeu_ps(d, acc[i][v]);
      }
    return;
  }
  const __m256 va = _mm256_set1_ps(s.alpha), vb = _mm256_set1_ps(s.beta), zero = _mm256_setzero_ps();
  const bool read_c = s.beta != 0.0f;
  __m256 col[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) col[v] = zero;
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    float* c = s.c + i * s.ldc;
    __m256 row = zero;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const bool m = MASKED && v == NV - 1;
      __m256 r = _mm256_mul_ps(acc[i][v], va);
      if (read_c) r = _mm256_fmadd_ps(vb, m ? _mm256_maskload_ps(c + 8 * v, last_mask) : _mm256_loadu_ps(c + 8 * v), r);
      if (m) {
        _mm256_maskstore_ps(c + 8 * v, last_mask, r);
        r = _mm256_blendv_ps(zero, r, _mm256_castsi256_ps(last_mask));
      } else {
        _mm256_storeu_ps(c + 8 * v, r);
      }
      row = _mm256_add_ps(row, r);
      col[v] = _mm256_add_ps(col[v], r);
    }
    if (s.row_sums) s.row_sums[i] += hsum(row);
  }
  if (s.col_sums) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      float* d = s.col_sums + 8 * v;
      if (MASKED && v == NV - 1)
        _mm256_maskstore_ps(d, last_mask, _mm256_add_ps(_mm256_maskload_ps(d, last_mask), col[v]));
      else
        _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), col[v]));
    }
  }
}

struct StreamIsa {
  static constexpr int kLanes = 8;
  static constexpr int kRows = kStreamRows;
  using Mask = __m256i;
  static Mask full_mask() { return gemm_internal::tail_mask(8); }
  static Mask tail_mask(int64_t n) { return gemm_internal::tail_mask(int(n)); }
  // Vectors per chunk for M rows within 16 ymm registers.
  static constexpr int width(int m) { return m == 1 ? 8 : m == 2 ? 6 : m == 3 ? 4 : m == 4 ? 3 : m <= 6 ? 2 : 1; }
  template <int M, int NV, bool MASKED>
  static inline __attribute__((always_inline)) void chunk(const StreamChunk& s, Mask last_mask) {
    stream_chunk<M, NV, MASKED>(s, last_mask);
  }
};

const KernelSet kSet = {"sgemm_avx2_6x16", 6, 16, kMaxRows, false, {0, 32, 32, 24, 16, 16, 16, 16}, &micro, nullptr, nullptr, 0, 0, &stream<StreamIsa>, kStreamMaxRows};

}  // namespace

const KernelSet* avx2_kernels() { return &kSet; }

}  // namespace gemm_internal
}  // namespace kintsugi
