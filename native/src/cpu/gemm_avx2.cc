// AVX2 + FMA sgemm micro-kernels (compiled with -mavx2 -mfma; chosen at run time).
// Main tile 6 x 16: 12 ymm accumulators, 2 B vectors, 1 broadcast. One or two rows take up
// to 32 columns (the small-M path). Edge columns use maskload/maskstore, so no tile touches
// memory outside its mr x nr extent. Only intrinsics and internal-linkage code here (see
// gemm_internal.h on ODR).
#include <immintrin.h>

#include "gemm_internal.h"

namespace kintsugi {
namespace gemm_internal {
namespace {

inline __m256i tail_mask(int tail) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
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
      __m128 s = _mm_add_ps(_mm256_castps256_ps128(row), _mm256_extractf128_ps(row, 1));
      s = _mm_add_ps(s, _mm_movehl_ps(s, s));
      s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
      t.row_sums[i] += _mm_cvtss_f32(s);
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
        _mm256_maskstore_ps(s, last, _mm256_add_ps(_mm256_maskload_ps(s, last), col[v]));
      else
        _mm256_storeu_ps(s, _mm256_add_ps(_mm256_loadu_ps(s), col[v]));
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

const KernelSet kSet = {"sgemm_avx2_6x16", 6, 16, kMaxRows, false, {0, 32, 32, 24, 16, 16, 16, 16}, &micro, nullptr, nullptr, 0, 0};

}  // namespace

const KernelSet* avx2_kernels() { return &kSet; }

}  // namespace gemm_internal
}  // namespace kintsugi
