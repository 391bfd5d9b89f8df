// AVX-512 sgemm micro-kernels (compiled with -mavx512f/bw/dq/vl -mfma; chosen at run time).
// One register-tile template covers every tile shape the driver asks for: M rows (broadcast
// from the packed A panel as embedded-broadcast FMA operands) times NV 16-float vectors of B.
// The main tile is 14 x 32 (28 zmm accumulators + 2 B vectors); small row counts use wider
// tiles (1 x 128 ... 6 x 64) so the small-M path keeps enough independent FMA chains. Edge
// columns use masked loads/stores, so no tile ever touches memory outside its mr x nr extent.
// Only intrinsics and internal-linkage code here (see gemm_internal.h on ODR).
// GCC 12 reports its own _mm512_undefined_ps() helpers (used by shuffles) as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include "gemm_internal.h"
#include "gemm_stream.h"

namespace kintsugi {
namespace gemm_internal {
namespace {

// Horizontal sum (not _mm512_reduce_add_ps: GCC 12 warns on its undefined-vector helper).
inline float hsum(__m512 v) {
  __m512 s = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm512_add_ps(s, _mm512_shuffle_f32x4(s, s, _MM_SHUFFLE(2, 3, 0, 1)));
  s = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_cvtss_f32(s);
}

// Rows ahead to prefetch when B is streamed in place (rows ldb apart defeat the hardware
// prefetchers, and the small-M path is bound by memory bandwidth).
constexpr int kPrefetchRows = 16;
// K steps before the end of a tile's loop at which its C tile is prefetched.
constexpr int64_t kPrefetchCSteps = 48;

template <int M, int NV, bool MASKED, bool STRIDED_A, bool PREFETCH_B>
inline __attribute__((always_inline)) void tile_body(const MicroTile& t) {
  __m512 acc[M][NV];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();

  const int tail = t.nr - (NV - 1) * 16;  // 1..16 columns in the last vector
  const __mmask16 last = MASKED ? __mmask16((1u << tail) - 1u) : __mmask16(0xFFFF);
  const float* a = t.a;
  const float* b = t.b;
  const int64_t as = t.a_stride, bs = t.b_stride;
  int64_t aoff[M];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) aoff[i] = STRIDED_A ? i * t.a_row_stride : i;

  auto step = [&]() __attribute__((always_inline)) {
    if (PREFETCH_B) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetchRows * bs + 16 * v), _MM_HINT_T0);
    }
    __m512 bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      bv[v] = (MASKED && v == NV - 1) ? _mm512_maskz_loadu_ps(last, b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const __m512 ai = _mm512_set1_ps(a[aoff[i]]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
    }
    a += as;
    b += bs;
  };
  // The C tile is brought into L1 shortly before it is stored, every line of it: prefetched at
  // the start, the lines would be evicted again by the B panel streaming through L1, and stores
  // that miss fill the store buffer and stall the code after the kernel (the checked GEMM's
  // bookkeeping: +1 point at 1024^3).
  const int64_t tail_k = t.k > kPrefetchCSteps ? t.k - kPrefetchCSteps : 0;
  int64_t p = 0;
  for (; p < tail_k; ++p) step();
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(t.c + i * t.ldc + 16 * v), _MM_HINT_T0);
  for (; p < t.k; ++p) step();

  const __m512 va = _mm512_set1_ps(t.alpha);
  const bool read_c = t.beta != 0.0f;
  const __m512 vb = _mm512_set1_ps(t.beta);
  __m512 col[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) col[v] = _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    float* c = t.c + i * t.ldc;
    __m512 row = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const bool m = MASKED && v == NV - 1;
      __m512 r = _mm512_mul_ps(acc[i][v], va);
      if (read_c) {
        const __m512 old = m ? _mm512_maskz_loadu_ps(last, c + 16 * v) : _mm512_loadu_ps(c + 16 * v);
        r = _mm512_fmadd_ps(vb, old, r);
      }
      if (m) {
        _mm512_mask_storeu_ps(c + 16 * v, last, r);
        r = _mm512_maskz_mov_ps(last, r);
      } else {
        _mm512_storeu_ps(c + 16 * v, r);
      }
      acc[i][v] = r;
    }
    if (t.row_sums) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) row = _mm512_add_ps(row, acc[i][v]);
      t.row_sums[i] = hsum(row);
    }
    if (t.col_sums) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) col[v] = _mm512_add_ps(col[v], acc[i][v]);
    }
  }
  if (t.col_sums) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      float* s = t.col_sums + 16 * v;
      if (MASKED && v == NV - 1)
        _mm512_mask_storeu_ps(s, last, col[v]);
      else
        _mm512_storeu_ps(s, col[v]);
    }
  }
}

template <int M, int NV, bool STRIDED_A, bool PREFETCH_B>
inline __attribute__((always_inline)) void tile_masking(const MicroTile& t) {
  if (t.nr == NV * 16)
    tile_body<M, NV, false, STRIDED_A, PREFETCH_B>(t);
  else
    tile_body<M, NV, true, STRIDED_A, PREFETCH_B>(t);
}

template <int M, int NV>
void tile(const MicroTile& t) {
  // B streamed in place (row stride beyond a packed panel's) is prefetched; only few-row
  // tiles see it, so larger ones skip that instantiation.
  const bool streamed = M <= 6 && t.b_stride > 64;
  if (t.a_row_stride == 1) {
    if (streamed)
      tile_masking<M, NV, false, (M <= 6)>(t);
    else
      tile_masking<M, NV, false, false>(t);
  } else {
    if (streamed)
      tile_masking<M, NV, true, (M <= 6)>(t);
    else
      tile_masking<M, NV, true, false>(t);
  }
}

constexpr int kMaxRows = 14;
constexpr int kMaxVectors = 8;

// Row counts 1..14 take up to 2 vectors (32 columns); fewer rows take wider tiles.
#define KINTSUGI_ROW2(M) {nullptr, &tile<M, 1>, &tile<M, 2>, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr}
#define KINTSUGI_ROW4(M) {nullptr, &tile<M, 1>, &tile<M, 2>, &tile<M, 3>, &tile<M, 4>, nullptr, nullptr, nullptr, nullptr}
#define KINTSUGI_ROW6(M) {nullptr, &tile<M, 1>, &tile<M, 2>, &tile<M, 3>, &tile<M, 4>, &tile<M, 5>, &tile<M, 6>, nullptr, nullptr}
#define KINTSUGI_ROW8(M) \
  {nullptr, &tile<M, 1>, &tile<M, 2>, &tile<M, 3>, &tile<M, 4>, &tile<M, 5>, &tile<M, 6>, &tile<M, 7>, &tile<M, 8>}
const MicroKernel kTiles[kMaxRows + 1][kMaxVectors + 1] = {
    {nullptr},        KINTSUGI_ROW8(1),  KINTSUGI_ROW8(2),  KINTSUGI_ROW6(3),  KINTSUGI_ROW6(4),
    KINTSUGI_ROW4(5), KINTSUGI_ROW4(6),  KINTSUGI_ROW2(7),  KINTSUGI_ROW2(8),  KINTSUGI_ROW2(9),
    KINTSUGI_ROW2(10), KINTSUGI_ROW2(11), KINTSUGI_ROW2(12), KINTSUGI_ROW2(13), KINTSUGI_ROW2(14),
};
#undef KINTSUGI_ROW2
#undef KINTSUGI_ROW4
#undef KINTSUGI_ROW6
#undef KINTSUGI_ROW8

void micro(const MicroTile& t) { kTiles[t.mr][(t.nr + 15) >> 4](t); }

// dst[p * nr + j] = b[j * ldb + p] for p < kc, j < cols; columns cols..nr-1 zero. 16 x 16
// blocks are transposed in registers (unpack, shuffle, 128-bit lane shuffles).
void pack_b_transposed(const float* b, int64_t ldb, int64_t kc, int cols, int nr, float* dst) {
  for (int j0 = 0; j0 < nr; j0 += 16) {
    const int jn = cols - j0 < 16 ? (cols - j0 > 0 ? cols - j0 : 0) : 16;  // source rows present
    for (int64_t p0 = 0; p0 < kc; p0 += 16) {
      const int pn = kc - p0 < 16 ? int(kc - p0) : 16;
      const __mmask16 pm = __mmask16((1u << pn) - 1u);
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i)
        r[i] = i < jn ? _mm512_maskz_loadu_ps(pm, b + (j0 + i) * ldb + p0) : _mm512_setzero_ps();
      __m512 t[16], u[16], v[16];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
      }
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
      }
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        v[i] = _mm512_shuffle_f32x4(u[i], u[4 + i], 0x88);
        v[4 + i] = _mm512_shuffle_f32x4(u[i], u[4 + i], 0xDD);
        v[8 + i] = _mm512_shuffle_f32x4(u[8 + i], u[12 + i], 0x88);
        v[12 + i] = _mm512_shuffle_f32x4(u[8 + i], u[12 + i], 0xDD);
      }
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        r[i] = _mm512_shuffle_f32x4(v[i], v[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(v[i], v[8 + i], 0xDD);
      }
      float* d = dst + p0 * nr + j0;
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i)
        if (i < pn) _mm512_storeu_ps(d + i * nr, r[i]);
    }
  }
}

// Dot-product tiles: M rows of A and J rows of B^T stream along k, 16 floats at a time, into
// M x J vector accumulators reduced at the end.
template <int M, int J>
void dot_tile(const DotTile& t) {
  __m512 acc[M][J];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t k16 = t.k / 16 * 16;
  const float* a = t.a;
  const float* b = t.b;
  const int64_t lda = t.lda, ldb = t.ldb;
  for (int64_t p = 0; p < k16; p += 16) {
    __m512 av[M];
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) av[i] = _mm512_loadu_ps(a + i * lda + p);
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) {
      const __m512 bv = _mm512_loadu_ps(b + j * ldb + p);
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) acc[i][j] = _mm512_fmadd_ps(av[i], bv, acc[i][j]);
    }
  }
  if (k16 < t.k) {
    const __mmask16 m = __mmask16((1u << (t.k - k16)) - 1u);
    __m512 av[M];
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) av[i] = _mm512_maskz_loadu_ps(m, a + i * lda + k16);
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) {
      const __m512 bv = _mm512_maskz_loadu_ps(m, b + j * ldb + k16);
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) acc[i][j] = _mm512_fmadd_ps(av[i], bv, acc[i][j]);
    }
  }
  for (int i = 0; i < M; ++i) {
    float* c = t.c + i * t.ldc;
    for (int j = 0; j < J; ++j) {
      const float v = t.alpha * hsum(acc[i][j]);
      c[j] = t.beta == 0.0f ? v : v + t.beta * c[j];
    }
  }
}

constexpr int kDotRows = 4, kDotCols = 8;
const DotKernel kDotTiles[kDotRows + 1][kDotCols + 1] = {
    {nullptr},
    {nullptr, &dot_tile<1, 1>, &dot_tile<1, 2>, &dot_tile<1, 3>, &dot_tile<1, 4>, &dot_tile<1, 5>, &dot_tile<1, 6>, &dot_tile<1, 7>, &dot_tile<1, 8>},
    {nullptr, &dot_tile<2, 1>, &dot_tile<2, 2>, &dot_tile<2, 3>, &dot_tile<2, 4>, &dot_tile<2, 5>, &dot_tile<2, 6>, &dot_tile<2, 7>, &dot_tile<2, 8>},
    {nullptr, &dot_tile<3, 1>, &dot_tile<3, 2>, &dot_tile<3, 3>, &dot_tile<3, 4>, &dot_tile<3, 5>, &dot_tile<3, 6>, nullptr, nullptr},
    {nullptr, &dot_tile<4, 1>, &dot_tile<4, 2>, &dot_tile<4, 3>, &dot_tile<4, 4>, &dot_tile<4, 5>, nullptr, nullptr, nullptr},
};

// Columns per dot tile for each row count (register budget: M*J accumulators + J + M).
constexpr int kDotWidth[kDotRows + 1] = {0, 8, 8, 6, 5};

void dot(const DotTile& t) {
  DotTile u = t;
  for (int j = 0; j < t.nr; j += kDotWidth[t.mr]) {
    u.nr = t.nr - j < kDotWidth[t.mr] ? t.nr - j : kDotWidth[t.mr];
    u.b = t.b + j * t.ldb;
    u.c = t.c + j;
    kDotTiles[t.mr][u.nr](u);
  }
}

// Row-streaming kernel (StreamTile): the driver in gemm_stream.h around this ISA's chunk.
#ifndef KINTSUGI_STREAM_ROWS
#define KINTSUGI_STREAM_ROWS 8
#endif
#ifndef KINTSUGI_STREAM_PF
#define KINTSUGI_STREAM_PF 0
#endif
constexpr int kStreamRows = KINTSUGI_STREAM_ROWS;
// Software prefetch (floats ahead within a row, T0): off, the hardware prefetchers follow the
// row-group streams better on Zen 4 (M = 1: 10-11 vs 6-8 GFLOP/s with 512 floats ahead).
constexpr int64_t kStreamPrefetch = KINTSUGI_STREAM_PF;

template <int M, int NV, bool MASKED>
inline __attribute__((always_inline)) void stream_chunk(const StreamChunk& s, __mmask16 last_mask) {
  __m512 acc[M][NV];
  if (s.first) {
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  } else {
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v)
        acc[i][v] = (MASKED && v == NV - 1) ? _mm512_maskz_loadu_ps(last_mask, s.acc + i * s.accld + 16 * v)
                                            : _mm512_loadu_ps(s.acc + i * s.accld + 16 * v);
  }
  const float* b = s.b;
  const float* al = s.al;
  for (int r = 0; r < s.kb; ++r) {
    if (kStreamPrefetch > 0) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(b + kStreamPrefetch + 16 * v), _MM_HINT_T0);
    }
    __m512 bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      bv[v] = (MASKED && v == NV - 1) ? _mm512_maskz_loadu_ps(last_mask, b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      const __m512 ai = _mm512_set1_ps(al[i]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
    }
    b += s.ldb;
    al += M;
  }
  if (!s.last) {
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        float* d = s.acc + i * s.accld + 16 * v;
        if (MASKED && v == NV - 1)
          _mm512_mask_storeu_ps(d, last_mask, acc[i][v]);
        else
          _mm512_storeu_ps(d, acc[i][v]);
      }
    return;
  }
  const __m512 va = _mm512_set1_ps(s.alpha), vb = _mm512_set1_ps(s.beta);
  const bool read_c = s.beta != 0.0f;
  __m512 col[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) col[v] = _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    float* c = s.c + i * s.ldc;
    __m512 row = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const bool m = MASKED && v == NV - 1;
      __m512 r = _mm512_mul_ps(acc[i][v], va);
      if (read_c) r = _mm512_fmadd_ps(vb, m ? _mm512_maskz_loadu_ps(last_mask, c + 16 * v) : _mm512_loadu_ps(c + 16 * v), r);
      if (m) {
        _mm512_mask_storeu_ps(c + 16 * v, last_mask, r);
        r = _mm512_maskz_mov_ps(last_mask, r);
      } else {
        _mm512_storeu_ps(c + 16 * v, r);
      }
      row = _mm512_add_ps(row, r);
      col[v] = _mm512_add_ps(col[v], r);
    }
    if (s.row_sums) s.row_sums[i] += hsum(row);
  }
  if (s.col_sums) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      float* d = s.col_sums + 16 * v;
      if (MASKED && v == NV - 1)
        _mm512_mask_storeu_ps(d, last_mask, _mm512_add_ps(_mm512_maskz_loadu_ps(last_mask, d), col[v]));
      else
        _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), col[v]));
    }
  }
}

struct StreamIsa {
  static constexpr int kLanes = 16;
  static constexpr int kRows = kStreamRows;
  using Mask = __mmask16;
  static Mask full_mask() { return 0xFFFF; }
  static Mask tail_mask(int64_t n) { return __mmask16((1u << n) - 1u); }
  // Vectors per chunk for M rows: M * NV accumulators plus NV B vectors within 32 registers.
  static constexpr int width(int m) { return m <= 3 ? 8 : m == 4 ? 6 : m <= 6 ? 4 : 3; }
  template <int M, int NV, bool MASKED>
  static inline __attribute__((always_inline)) void chunk(const StreamChunk& s, Mask last_mask) {
    stream_chunk<M, NV, MASKED>(s, last_mask);
  }
};

const KernelSet kSet = {"sgemm_avx512_6x64", 6,   64, kMaxRows, true, {0, 128, 128, 96, 96, 64, 64, 32}, &micro, &pack_b_transposed,
                        &dot,                 kDotRows, 64, &stream<StreamIsa>, kStreamMaxRows};

}  // namespace

const KernelSet* avx512_kernels() { return &kSet; }

}  // namespace gemm_internal
}  // namespace kintsugi
