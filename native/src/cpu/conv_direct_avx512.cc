// Direct convolution forward (NCHW in, NCHW out) with pre-packed weights, AVX-512.
//
// Output channels run along the 16 vector lanes, output pixels are broadcast: a register tile
// is V (<= 4) vectors of 16 output channels x P (<= 7) consecutive output pixels of one row, and
// each (c, i, j) step of the reduction is V weight loads and V * P FMAs whose second operand is
// one input value broadcast straight from the image (embedded broadcast), so nothing is gathered
// or repacked per call: a stride of 2 only changes the broadcast addresses. Padding is handled by
// a zero-bordered copy of the input made once per call (skipped when there is none).
//
// Weights are packed once (conv2d_pack_weights) as blocks of 64 output channels, each block
// [c][i][j][V * 16] (the last block holds the remaining vectors, channels past c_out are zero).
// Tiles accumulate over a slice of input channels sized so that a block's slice of weights stays
// in L2, into a channel-blocked scratch [n][c_out / 16][oh * ow][16]; a task's block is then
// transposed 16 x 16 into the NCHW output, adding the bias.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "kernels_internal.h"
#include "kintsugi/conv.h"
#include "kintsugi/cpu.h"
#include "kintsugi/threadpool.h"

namespace kintsugi {
namespace conv_internal {
namespace {

constexpr int kLanes = 16;
constexpr int kMaxV = 4;  // vectors of output channels per block
constexpr int kMaxP = 7;  // output pixels per register tile

thread_local ScratchBuffer t_padded, t_blocked;

struct TileArgs {
  const float* x;    // input at (c0, first row of the window, first column of the window)
  int64_t plane;     // floats between input channels
  int64_t row;       // floats between input rows (dilation applied)
  int64_t col;       // floats between kernel columns (dilation applied)
  int64_t stride;    // floats between consecutive output pixels' inputs
  const float* w;    // packed weights at (block, c0)
  int64_t nc;        // input channels of this slice
  int kh, kw;
  float* y;          // blocked output at (vector 0 of the block, first pixel)
  int64_t yv;        // floats between output-channel vectors in the blocked output
  bool accumulate;
};

template <int V, int P, int S>
void tile(const TileArgs& a) {
  __m512 acc[V][P];
  for (int v = 0; v < V; ++v)
    for (int p = 0; p < P; ++p) acc[v][p] = _mm512_setzero_ps();
  const float* w = a.w;
  const int64_t s = S > 0 ? S : a.stride;
  for (int64_t c = 0; c < a.nc; ++c) {
    const float* xc = a.x + c * a.plane;
    for (int i = 0; i < a.kh; ++i) {
      const float* xr = xc + i * a.row;
      for (int j = 0; j < a.kw; ++j) {
        const float* xs = xr + j * a.col;
        __m512 wv[V];
        for (int v = 0; v < V; ++v) wv[v] = _mm512_loadu_ps(w + v * kLanes);
        w += V * kLanes;
        for (int p = 0; p < P; ++p) {
          const __m512 b = _mm512_set1_ps(xs[p * s]);
          for (int v = 0; v < V; ++v) acc[v][p] = _mm512_fmadd_ps(wv[v], b, acc[v][p]);
        }
      }
    }
  }
  for (int v = 0; v < V; ++v) {
    float* yv = a.y + v * a.yv;
    for (int p = 0; p < P; ++p) {
      __m512 r = acc[v][p];
      if (a.accumulate) r = _mm512_add_ps(r, _mm512_load_ps(yv + p * kLanes));
      _mm512_store_ps(yv + p * kLanes, r);
    }
  }
}

using TileFn = void (*)(const TileArgs&);

template <int V, int S, int... Ps>
constexpr auto tiles_for(std::integer_sequence<int, Ps...>) {
  return std::array<TileFn, sizeof...(Ps)>{&tile<V, Ps + 1, S>...};
}

template <int S>
struct TileTable {
  std::array<std::array<TileFn, kMaxP>, kMaxV> fn;
  TileTable() {
    fn[0] = tiles_for<1, S>(std::make_integer_sequence<int, kMaxP>{});
    fn[1] = tiles_for<2, S>(std::make_integer_sequence<int, kMaxP>{});
    fn[2] = tiles_for<3, S>(std::make_integer_sequence<int, kMaxP>{});
    fn[3] = tiles_for<4, S>(std::make_integer_sequence<int, kMaxP>{});
  }
};

TileFn tile_fn(int v, int p, int64_t stride) {
  static const TileTable<1> s1;
  static const TileTable<2> s2;
  static const TileTable<0> sn;
  if (stride == 1) return s1.fn[v - 1][p - 1];
  if (stride == 2) return s2.fn[v - 1][p - 1];
  return sn.fn[v - 1][p - 1];
}

// GCC 12 reports the _mm512_undefined_ps() pass-through inside its unpack/shuffle intrinsics as
// "may be used uninitialized" (a false positive of the header, not of this code).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// In-register 16 x 16 transpose: r[t] (pixel t, 16 channels) -> r[c] (channel c, 16 pixels).
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  __m512 o[16];
  for (int k = 0; k < 4; ++k) {
    const __m512 t0 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88);
    const __m512 t1 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xDD);
    const __m512 t2 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88);
    const __m512 t3 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xDD);
    o[k] = _mm512_shuffle_f32x4(t0, t2, 0x88);
    o[8 + k] = _mm512_shuffle_f32x4(t0, t2, 0xDD);
    o[4 + k] = _mm512_shuffle_f32x4(t1, t3, 0x88);
    o[12 + k] = _mm512_shuffle_f32x4(t1, t3, 0xDD);
  }
  for (int k = 0; k < 16; ++k) r[k] = o[k];
}
#pragma GCC diagnostic pop

// Blocked [pixel][16] of `channels` (<= 16) channels, n pixels -> NCHW rows (ld floats apart).
void unblock(const float* src, int64_t npix, int channels, const float* bias, float* dst, int64_t ld) {
  for (int64_t q = 0; q < npix; q += 16) {
    const int n = int(std::min<int64_t>(16, npix - q));
    __m512 r[16];
    for (int t = 0; t < 16; ++t) r[t] = t < n ? _mm512_load_ps(src + (q + t) * kLanes) : _mm512_setzero_ps();
    transpose16(r);
    const __mmask16 m = __mmask16((1u << n) - 1u);
    for (int c = 0; c < channels; ++c) {
      __m512 v = r[c];
      if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(bias[c]));
      _mm512_mask_storeu_ps(dst + c * ld + q, m, v);
    }
  }
}

// Zero-bordered copies of input planes [c0, c1) (hp x wp each, the image at the centre).
void pad_planes(const Conv2dParams& p, int64_t hp, int64_t wp, const float* x, float* xp, int64_t c0, int64_t c1) {
  const int64_t plane = hp * wp;
  for (int64_t c = c0; c < c1; ++c) {
    float* d = xp + c * plane;
    const float* s = x + c * p.h * p.w;
    std::memset(d, 0, size_t(p.pad_h * wp) * sizeof(float));
    for (int64_t r = 0; r < p.h; ++r) {
      float* dr = d + (r + p.pad_h) * wp;
      std::memset(dr, 0, size_t(p.pad_w) * sizeof(float));
      std::memcpy(dr + p.pad_w, s + r * p.w, size_t(p.w) * sizeof(float));
      std::memset(dr + p.pad_w + p.w, 0, size_t(p.pad_w) * sizeof(float));
    }
    std::memset(d + (p.h + p.pad_h) * wp, 0, size_t(p.pad_h * wp) * sizeof(float));
  }
}

// Which image of which call a thread's padded buffer holds (per-task padding).
struct PaddedKey {
  uint64_t call = 0;
  int64_t img = -1;
};
thread_local PaddedKey t_padded_key;
std::atomic<uint64_t> g_calls{0};

struct DirectPlan {
  const Conv2dParams* p;
  int64_t oh, ow, ohw;
  const float* xin;      // input, zero-bordered when padded (unless pad_per_task)
  const float* x;        // the caller's input
  bool pad_per_task;     // several images: each task pads its image into its thread's buffer
  uint64_t call;
  int64_t hp, wp;        // its plane's rows and columns
  int64_t img_in;        // floats between images of xin
  int64_t krows;         // c_in * kh * kw
  int64_t vecs;          // ceil(c_out / 16)
  int64_t blocks;        // ceil(vecs / 4)
  int64_t slice;         // input channels per reduction slice
  int64_t row_groups, rows_per_group;
  int64_t rows_cached;   // output rows a task computes into its cache-resident blocked buffer
};

void run_task(const DirectPlan& pl, const float* packed, const float* bias, float* y, int64_t task) {
  const Conv2dParams& p = *pl.p;
  const int64_t rg = task % pl.row_groups;
  int64_t rest = task / pl.row_groups;
  const int64_t blk = rest % pl.blocks;
  const int64_t img = rest / pl.blocks;
  const int64_t r0 = rg * pl.rows_per_group, r1 = std::min(pl.oh, r0 + pl.rows_per_group);
  if (r0 >= r1) return;
  const int V = int(std::min<int64_t>(kMaxV, pl.vecs - blk * kMaxV));
  const int64_t khw = p.kh * p.kw;
  const float* wblk = packed + blk * kMaxV * kLanes * pl.krows;
  const int64_t plane = pl.hp * pl.wp;
  const float* ximg = pl.pad_per_task ? nullptr : pl.xin + img * pl.img_in;
  if (pl.pad_per_task) {
    // A batch padded up front would be a pass over memory; one image at a time stays in cache.
    float* xp = t_padded.get(size_t(pl.img_in));
    if (t_padded_key.call != pl.call || t_padded_key.img != img) {
      pad_planes(p, pl.hp, pl.wp, pl.x + img * p.c_in * p.h * p.w, xp, 0, p.c_in);
      t_padded_key = PaddedKey{pl.call, img};
    }
    ximg = xp;
  }
  // Blocked [V][rows_cached * ow][16] output of a group of rows, transposed out while in cache.
  const int64_t yv = pl.rows_cached * pl.ow * kLanes;
  float* yb = t_blocked.get(size_t(V * yv));
  float* yout = y + (img * p.c_out + blk * kMaxV * kLanes) * pl.ohw;
  const float* bout = bias ? bias + blk * kMaxV * kLanes : nullptr;

  TileArgs a;
  a.plane = plane;
  a.row = p.dilation_h * pl.wp;
  a.col = p.dilation_w;
  a.stride = p.stride_w;
  a.kh = int(p.kh);
  a.kw = int(p.kw);
  a.yv = yv;
  for (int64_t g0 = r0; g0 < r1; g0 += pl.rows_cached) {
    const int64_t g1 = std::min(r1, g0 + pl.rows_cached);
    for (int64_t c0 = 0; c0 < p.c_in; c0 += pl.slice) {
      a.nc = std::min(pl.slice, p.c_in - c0);
      a.w = wblk + c0 * khw * V * kLanes;
      a.accumulate = c0 > 0;
      for (int64_t r = g0; r < g1; ++r) {
        const float* xrow = ximg + c0 * plane + r * p.stride_h * pl.wp;
        for (int64_t q = 0; q < pl.ow; q += kMaxP) {
          const int P = int(std::min<int64_t>(kMaxP, pl.ow - q));
          a.x = xrow + q * p.stride_w;
          a.y = yb + ((r - g0) * pl.ow + q) * kLanes;
          tile_fn(V, P, p.stride_w)(a);
        }
      }
    }
    for (int v = 0; v < V; ++v) {
      const int64_t c = blk * kMaxV * kLanes + v * kLanes;
      const int channels = int(std::min<int64_t>(kLanes, p.c_out - c));
      unblock(yb + v * yv, (g1 - g0) * pl.ow, channels, bout ? bout + v * kLanes : nullptr,
              yout + v * kLanes * pl.ohw + g0 * pl.ow, pl.ohw);
    }
  }
}

}  // namespace

void direct_pack_weights_avx512(const Conv2dParams& p, const float* w, float* packed) {
  const int64_t krows = p.c_in * p.kh * p.kw;
  const int64_t vecs = (p.c_out + kLanes - 1) / kLanes;
  for (int64_t blk = 0; blk * kMaxV < vecs; ++blk) {
    const int64_t V = std::min<int64_t>(kMaxV, vecs - blk * kMaxV);
    float* dst = packed + blk * kMaxV * kLanes * krows;
    for (int64_t k = 0; k < krows; ++k)
      for (int64_t l = 0; l < V * kLanes; ++l) {
        const int64_t co = blk * kMaxV * kLanes + l;
        dst[k * V * kLanes + l] = co < p.c_out ? w[co * krows + k] : 0.0f;
      }
  }
}

int64_t direct_packed_size(const Conv2dParams& p) {
  return (p.c_out + kLanes - 1) / kLanes * kLanes * p.c_in * p.kh * p.kw;
}

void direct_forward_avx512(const Conv2dParams& p, const float* x, const float* packed, const float* bias, float* y) {
  DirectPlan pl;
  pl.p = &p;
  pl.oh = p.out_h();
  pl.ow = p.out_w();
  pl.ohw = pl.oh * pl.ow;
  pl.krows = p.c_in * p.kh * p.kw;
  pl.vecs = (p.c_out + kLanes - 1) / kLanes;
  pl.blocks = (pl.vecs + kMaxV - 1) / kMaxV;
  const int threads = num_threads();

  // Zero-bordered copy of the input when padded: one image at a time per task when there are
  // several, else the whole input up front (split over the threads).
  pl.x = x;
  pl.pad_per_task = false;
  pl.call = g_calls.fetch_add(1, std::memory_order_relaxed) + 1;
  if (p.pad_h == 0 && p.pad_w == 0) {
    pl.xin = x;
    pl.hp = p.h;
    pl.wp = p.w;
  } else {
    pl.hp = p.h + 2 * p.pad_h;
    pl.wp = p.w + 2 * p.pad_w;
    const int64_t planes = p.n * p.c_in, plane = pl.hp * pl.wp;
    if (p.n > 1) {
      pl.pad_per_task = true;
      pl.xin = nullptr;
    } else {
      float* xp = t_padded.get(size_t(planes * plane));
      if (threads > 1 && planes * plane > (1 << 16)) {
        parallel_tasks(threads, threads, [&](int64_t t) { pad_planes(p, pl.hp, pl.wp, x, xp, planes * t / threads, planes * (t + 1) / threads); });
      } else {
        pad_planes(p, pl.hp, pl.wp, x, xp, 0, planes);
      }
      pl.xin = xp;
      t_padded_key = PaddedKey{};  // the buffer no longer holds a per-task image
    }
  }
  pl.img_in = p.c_in * pl.hp * pl.wp;

  // Reduction slice: a block's weights for the slice within about 384 KiB (L2 is 1-2 MiB on
  // AVX-512 parts), split evenly.
  const int64_t khw = p.kh * p.kw;
  const int64_t max_slice = std::max<int64_t>(1, (384 * 1024) / (kMaxV * kLanes * 4 * khw));
  const int64_t slices = (p.c_in + max_slice - 1) / max_slice;
  pl.slice = (p.c_in + slices - 1) / slices;

  // Rows per blocked buffer: about 64 KiB of output (L2-resident while slices accumulate into it).
  pl.rows_cached = std::max<int64_t>(1, (64 * 1024) / (kMaxV * kLanes * 4 * pl.ow));

  // Tasks: (image, block of 64 output channels, group of output rows); rows split only when
  // there are too few tasks for the threads.
  const int64_t outer = p.n * pl.blocks;
  pl.row_groups = 1;
  if (threads > 1 && outer < 4 * threads) pl.row_groups = std::min<int64_t>(pl.oh, (4 * threads + outer - 1) / outer);
  pl.rows_per_group = (pl.oh + pl.row_groups - 1) / pl.row_groups;
  pl.row_groups = (pl.oh + pl.rows_per_group - 1) / pl.rows_per_group;
  const int64_t tasks = outer * pl.row_groups;

  parallel_tasks(threads, tasks, [&](int64_t t) { run_task(pl, packed, bias, y, t); });
}

}  // namespace conv_internal
}  // namespace kintsugi
