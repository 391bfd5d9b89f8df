// conv2d on the GPU by implicit GEMM, NCHW, T = float or __half with fp32 accumulation.
//
// One tiled kernel (64x64 output tile per 256-thread block, 16-deep reduction slices double
// buffered in shared memory, 4x4 outputs per thread) runs three "operand views" that compute the
// im2col addresses on the fly (zero for padding), one per direction:
//   forward          Y_g[co, pixel]   = sum_(ci,r,s)  W_g[co, (ci,r,s)] * X_col[(ci,r,s), pixel]
//   backward data    dX_g[ci, inpix]  = sum_(co,r,s)  W_g[co, (ci,r,s)] * dY at the output position
//                    that (r, s) maps to the input pixel (a gather: no atomics, deterministic)
//   backward weight  dW_g[co, (ci,r,s)] = sum_pixel dY_g[co, pixel] * X_col[(ci,r,s), pixel], the
//                    pixel range split into slices whose fp32 partials a second kernel adds in
//                    slice order (deterministic for a given shape)
// Depthwise layers (groups == c_in == c_out) run direct kernels instead: a 64x64 tile would be
// 1/64 useful there. The bias gradient is one block per channel with a fixed-order reduction.
#include <cuda_fp16.h>

#include <climits>
#include <string>

#include "kernels.cuh"

namespace kintsugi::cuda {
namespace {

constexpr int BM = 64, BN = 64, BK = 16, kThreads = 256, kPad = 4;

// Sizes in the kernels' index types. Spatial coordinates (padded extents) and the reduction index
// of one group fit int (the launcher checks); pixel counts and offsets are int64.
struct Geo {
  int64_t n, c_in, c_out, groups, cg, kg;
  int h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, khw;
  int64_t hw, ohw;
};

Geo geo_of(const Conv2dParams& p) {
  Geo g;
  g.n = p.n;
  g.c_in = p.c_in;
  g.c_out = p.c_out;
  g.groups = p.groups;
  g.cg = p.c_in / p.groups;
  g.kg = p.c_out / p.groups;
  g.h = int(p.h);
  g.w = int(p.w);
  g.kh = int(p.kh);
  g.kw = int(p.kw);
  g.sh = int(p.stride_h);
  g.sw = int(p.stride_w);
  g.ph = int(p.pad_h);
  g.pw = int(p.pad_w);
  g.dh = int(p.dilation_h);
  g.dw = int(p.dilation_w);
  g.oh = int(p.out_h());
  g.ow = int(p.out_w());
  g.khw = int(p.kh * p.kw);
  g.hw = p.h * p.w;
  g.ohw = p.out_h() * p.out_w();
  return g;
}

// ---- the tiled kernel ----
// An operand view supplies: setup() (per-thread constants of the block), tiles() (the block's
// range of BK-deep reduction slices), load(k0, ra, rb) (this thread's 4 A and 4 B elements of the
// slice), and store(acc) (the 4x4 results: rows m0 + ty*4 + i, columns n0 + tx + 16*j).
// kAKFast: A elements are taken with the reduction index fastest across threads (ak = tid % 16,
// am = tid / 16 + 16 i), else the row index (am = tid % 64, ak = tid / 64 + 4 i); kBKFast likewise
// for B (bn, bk).
template <class View>
__global__ void __launch_bounds__(kThreads, 2) tiled_kernel(View v) {
  __shared__ __align__(16) float As[2][BK][BM + kPad];
  __shared__ __align__(16) float Bs[2][BK][BN + kPad];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  v.setup(tid);
  int t0, t1;
  v.tiles(t0, t1);
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  float ra[4], rb[4];
  auto put = [&](int buf) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if (View::kAKFast) As[buf][tid % 16][tid / 16 + 16 * i] = ra[i];
      else As[buf][tid / 64 + 4 * i][tid % 64] = ra[i];
      if (View::kBKFast) Bs[buf][tid % 16][tid / 16 + 16 * i] = rb[i];
      else Bs[buf][tid / 64 + 4 * i][tid % 64] = rb[i];
    }
  };
  if (t0 < t1) {
    v.load(int64_t(t0) * BK, ra, rb);
    put(0);
    __syncthreads();
    for (int t = t0; t < t1; ++t) {
      const int buf = (t - t0) & 1;
      const bool more = t + 1 < t1;
      if (more) v.load(int64_t(t + 1) * BK, ra, rb);  // global loads in flight during the math below
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        const float4 a = *reinterpret_cast<const float4*>(&As[buf][kk][ty * 4]);
        float b[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) b[j] = Bs[buf][kk][tx + 16 * j];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          acc[0][j] = fmaf(a.x, b[j], acc[0][j]);
          acc[1][j] = fmaf(a.y, b[j], acc[1][j]);
          acc[2][j] = fmaf(a.z, b[j], acc[2][j]);
          acc[3][j] = fmaf(a.w, b[j], acc[3][j]);
        }
      }
      // The other buffer was last read before the previous barrier, so it can be refilled now.
      if (more) put(buf ^ 1);
      __syncthreads();
    }
  }
  v.store(acc, tx, ty);
}

// Forward. Block (x: pixel tile, y: output-channel tile, z: group); M = kg, N = n*oh*ow, K = cg*kh*kw.
template <typename T> struct ForwardView {
  static constexpr bool kAKFast = true, kBKFast = false;
  const T* x;
  const T* w;
  const T* bias;
  T* y;
  Geo g;
  int64_t N;
  int M, K;
  // per thread
  int64_t m0, n0, xbase;
  int grp, ih0, iw0;
  bool nvalid;

  __device__ void setup(int tid) {
    grp = int(blockIdx.z);
    m0 = int64_t(blockIdx.y) * BM;
    n0 = int64_t(blockIdx.x) * BN;
    const int64_t nidx = n0 + tid % 64;
    nvalid = nidx < N;
    const int64_t img = nvalid ? nidx / g.ohw : 0, pix = nvalid ? nidx - img * g.ohw : 0;
    const int oh = int(pix / g.ow), ow = int(pix - int64_t(oh) * g.ow);
    xbase = (img * g.c_in + int64_t(grp) * g.cg) * g.hw;
    ih0 = oh * g.sh - g.ph;
    iw0 = ow * g.sw - g.pw;
  }
  __device__ void tiles(int& t0, int& t1) const {
    t0 = 0;
    t1 = (K + BK - 1) / BK;
  }
  __device__ void load(int64_t kbase, float ra[4], float rb[4]) const {
    const int tid = threadIdx.x, k0 = int(kbase);
    const int ak = k0 + tid % 16;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t m = m0 + tid / 16 + 16 * i;
      ra[i] = (m < M && ak < K) ? to_float(w[(int64_t(grp) * g.kg + m) * K + ak]) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int k = k0 + tid / 64 + 4 * i;
      float val = 0.0f;
      if (nvalid && k < K) {
        const int ci = k / g.khw, rs = k - ci * g.khw, r = rs / g.kw, s = rs - r * g.kw;
        const int ih = ih0 + r * g.dh, iw = iw0 + s * g.dw;
        if (unsigned(ih) < unsigned(g.h) && unsigned(iw) < unsigned(g.w))
          val = to_float(x[xbase + int64_t(ci) * g.hw + int64_t(ih) * g.w + iw]);
      }
      rb[i] = val;
    }
  }
  __device__ void store(const float (&acc)[4][4], int tx, int ty) const {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t nidx = n0 + tx + 16 * j;
      if (nidx >= N) continue;
      const int64_t img = nidx / g.ohw, pix = nidx - img * g.ohw;
      const int64_t co0 = int64_t(grp) * g.kg;
      T* out = y + (img * g.c_out + co0) * g.ohw + pix;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t m = m0 + ty * 4 + i;
        if (m >= M) continue;
        const float b = bias ? to_float(bias[co0 + m]) : 0.0f;
        out[m * g.ohw] = from_float<T>(acc[i][j] + b);
      }
    }
  }
};

// Backward data. Block (x: input-pixel tile, y: input-channel tile, z: group); M = cg,
// N = n*h*w, K = kg*kh*kw. B[(co,r,s), input pixel] = dY[co, oh, ow] where
// oh*stride_h - pad_h + r*dil_h = ih (and likewise for w), zero when no such in-range (oh, ow).
template <typename T> struct BackwardDataView {
  static constexpr bool kAKFast = true, kBKFast = false;
  const T* dy;
  const T* w;
  T* dx;
  Geo g;
  int64_t N;
  int M, K;
  int64_t m0, n0, dybase;
  int grp, ihp, iwp;
  bool nvalid;

  __device__ void setup(int tid) {
    grp = int(blockIdx.z);
    m0 = int64_t(blockIdx.y) * BM;
    n0 = int64_t(blockIdx.x) * BN;
    const int64_t nidx = n0 + tid % 64;
    nvalid = nidx < N;
    const int64_t img = nvalid ? nidx / g.hw : 0, pix = nvalid ? nidx - img * g.hw : 0;
    const int ih = int(pix / g.w), iw = int(pix - int64_t(ih) * g.w);
    dybase = (img * g.c_out + int64_t(grp) * g.kg) * g.ohw;
    ihp = ih + g.ph;
    iwp = iw + g.pw;
  }
  __device__ void tiles(int& t0, int& t1) const {
    t0 = 0;
    t1 = (K + BK - 1) / BK;
  }
  __device__ void load(int64_t kbase, float ra[4], float rb[4]) const {
    const int tid = threadIdx.x, k0 = int(kbase);
    {
      const int k = k0 + tid % 16;
      const int co = k / g.khw, rs = k - co * g.khw;
      const T* wk = w + ((int64_t(grp) * g.kg + co) * g.cg) * g.khw + rs;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t m = m0 + tid / 16 + 16 * i;
        ra[i] = (m < M && k < K) ? to_float(wk[m * g.khw]) : 0.0f;
      }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int k = k0 + tid / 64 + 4 * i;
      float val = 0.0f;
      if (nvalid && k < K) {
        const int co = k / g.khw, rs = k - co * g.khw, r = rs / g.kw, s = rs - r * g.kw;
        const int th = ihp - r * g.dh, tw = iwp - s * g.dw;
        if (th >= 0 && tw >= 0) {
          const int oh = th / g.sh, ow = tw / g.sw;
          if (oh * g.sh == th && ow * g.sw == tw && oh < g.oh && ow < g.ow)
            val = to_float(dy[dybase + int64_t(co) * g.ohw + int64_t(oh) * g.ow + ow]);
        }
      }
      rb[i] = val;
    }
  }
  __device__ void store(const float (&acc)[4][4], int tx, int ty) const {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t nidx = n0 + tx + 16 * j;
      if (nidx >= N) continue;
      const int64_t img = nidx / g.hw, pix = nidx - img * g.hw;
      T* out = dx + (img * g.c_in + int64_t(grp) * g.cg) * g.hw + pix;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int64_t m = m0 + ty * 4 + i;
        if (m < M) out[m * g.hw] = from_float<T>(acc[i][j]);
      }
    }
  }
};

// Backward weight. Block (x: weight-column tile over (ci,r,s), y: output-channel tile,
// z: group * splits + split); M = kg, N = cg*kh*kw, reduction over P = n*oh*ow pixels. With one
// split the block writes dW (as T), otherwise its fp32 partial to partial[split][weight index].
template <typename T> struct BackwardWeightView {
  static constexpr bool kAKFast = true, kBKFast = true;
  const T* x;
  const T* dy;
  T* dw;
  float* partial;  // nullptr: one split
  Geo g;
  int64_t P, wsize;
  int M, N, splits, tiles_per_split;
  int64_t m0, n0;
  int grp, split;
  int64_t xoff[4];
  int roff[4], soff[4];
  bool bvalid[4];

  __device__ void setup(int tid) {
    grp = int(blockIdx.z) / splits;
    split = int(blockIdx.z) - grp * splits;
    m0 = int64_t(blockIdx.y) * BM;
    n0 = int64_t(blockIdx.x) * BN;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t col = n0 + tid / 16 + 16 * i;
      bvalid[i] = col < N;
      const int c = bvalid[i] ? int(col) : 0;
      const int ci = c / g.khw, rs = c - ci * g.khw, r = rs / g.kw, s = rs - r * g.kw;
      xoff[i] = (int64_t(grp) * g.cg + ci) * g.hw;
      roff[i] = r * g.dh - g.ph;
      soff[i] = s * g.dw - g.pw;
    }
  }
  __device__ void tiles(int& t0, int& t1) const {
    const int total = int((P + BK - 1) / BK);
    t0 = min(total, split * tiles_per_split);
    t1 = min(total, t0 + tiles_per_split);
  }
  __device__ void load(int64_t k0, float ra[4], float rb[4]) const {
    const int tid = threadIdx.x;
    const int64_t p = k0 + tid % 16;
    const bool pvalid = p < P;
    const int64_t img = pvalid ? p / g.ohw : 0, pix = pvalid ? p - img * g.ohw : 0;
    const int oh = int(pix / g.ow), ow = int(pix - int64_t(oh) * g.ow);
    const T* dyp = dy + (img * g.c_out + int64_t(grp) * g.kg) * g.ohw + pix;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t m = m0 + tid / 16 + 16 * i;
      ra[i] = (pvalid && m < M) ? to_float(dyp[m * g.ohw]) : 0.0f;
    }
    const T* xi = x + img * g.c_in * g.hw;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int ih = oh * g.sh + roff[i], iw = ow * g.sw + soff[i];
      rb[i] = (pvalid && bvalid[i] && unsigned(ih) < unsigned(g.h) && unsigned(iw) < unsigned(g.w))
                  ? to_float(xi[xoff[i] + int64_t(ih) * g.w + iw])
                  : 0.0f;
    }
  }
  __device__ void store(const float (&acc)[4][4], int tx, int ty) const {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t m = m0 + ty * 4 + i;
      if (m >= M) continue;
      const int64_t row = (int64_t(grp) * g.kg + m) * N;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t col = n0 + tx + 16 * j;
        if (col >= N) continue;
        if (partial) partial[int64_t(split) * wsize + row + col] = acc[i][j];
        else dw[row + col] = from_float<T>(acc[i][j]);
      }
    }
  }
};

// dW[e] = sum over splits of partial[split][e], in split order.
template <typename T>
__global__ void __launch_bounds__(kThreads) sum_splits_kernel(const float* __restrict__ partial, int splits, int64_t wsize,
                                                              T* __restrict__ dw) {
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < wsize; e += int64_t(gridDim.x) * kThreads) {
    float s = partial[e];
    for (int t = 1; t < splits; ++t) s += partial[int64_t(t) * wsize + e];
    dw[e] = from_float<T>(s);
  }
}

// Fixed-order sum of the block's per-thread values; thread 0 gets the total.
__device__ float block_sum(float v) {
  __shared__ float part[kThreads / 32];
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  float s = 0.0f;
  if (threadIdx.x == 0)
    for (int i = 0; i < kThreads / 32; ++i) s += part[i];
  return s;
}

// db[co] = sum over images and output pixels of dY; one block per channel.
template <typename T>
__global__ void __launch_bounds__(kThreads) bias_grad_kernel(const T* __restrict__ dy, Geo g, T* __restrict__ db) {
  const int64_t co = blockIdx.x;
  float s = 0.0f;
  for (int64_t img = 0; img < g.n; ++img) {
    const T* plane = dy + (img * g.c_out + co) * g.ohw;
    for (int64_t pix = threadIdx.x; pix < g.ohw; pix += kThreads) s += to_float(plane[pix]);
  }
  s = block_sum(s);
  if (threadIdx.x == 0) db[co] = from_float<T>(s);
}

// ---- depthwise (groups == c_in == c_out): one filter plane per channel ----

template <typename T>
__global__ void __launch_bounds__(kThreads) depthwise_forward_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                                                     const T* __restrict__ bias, T* __restrict__ y, Geo g) {
  const int64_t total = g.n * g.c_in * g.ohw;
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < total; e += int64_t(gridDim.x) * kThreads) {
    const int64_t plane = e / g.ohw, pix = e - plane * g.ohw;
    const int64_t c = plane % g.c_in;
    const int oh = int(pix / g.ow), ow = int(pix - int64_t(oh) * g.ow);
    const T* xp = x + plane * g.hw;
    const T* wp = w + c * g.khw;
    float acc = 0.0f;
    for (int r = 0; r < g.kh; ++r) {
      const int ih = oh * g.sh - g.ph + r * g.dh;
      if (unsigned(ih) >= unsigned(g.h)) continue;
      for (int s = 0; s < g.kw; ++s) {
        const int iw = ow * g.sw - g.pw + s * g.dw;
        if (unsigned(iw) < unsigned(g.w)) acc = fmaf(to_float(xp[int64_t(ih) * g.w + iw]), to_float(wp[r * g.kw + s]), acc);
      }
    }
    if (bias) acc += to_float(bias[c]);
    y[e] = from_float<T>(acc);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) depthwise_backward_data_kernel(const T* __restrict__ dy, const T* __restrict__ w,
                                                                           T* __restrict__ dx, Geo g) {
  const int64_t total = g.n * g.c_in * g.hw;
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < total; e += int64_t(gridDim.x) * kThreads) {
    const int64_t plane = e / g.hw, pix = e - plane * g.hw;
    const int64_t c = plane % g.c_in;
    const int ihp = int(pix / g.w) + g.ph, iwp = int(pix % g.w) + g.pw;
    const T* dyp = dy + plane * g.ohw;
    const T* wp = w + c * g.khw;
    float acc = 0.0f;
    for (int r = 0; r < g.kh; ++r) {
      const int th = ihp - r * g.dh;
      if (th < 0) break;  // th only decreases with r
      const int oh = th / g.sh;
      if (oh * g.sh != th || oh >= g.oh) continue;
      for (int s = 0; s < g.kw; ++s) {
        const int tw = iwp - s * g.dw;
        if (tw < 0) break;
        const int ow = tw / g.sw;
        if (ow * g.sw == tw && ow < g.ow) acc = fmaf(to_float(dyp[int64_t(oh) * g.ow + ow]), to_float(wp[r * g.kw + s]), acc);
      }
    }
    dx[e] = from_float<T>(acc);
  }
}

// dW[c, r, s]: one block per weight, a fixed-order reduction over images and output pixels.
template <typename T>
__global__ void __launch_bounds__(kThreads) depthwise_backward_weight_kernel(const T* __restrict__ x, const T* __restrict__ dy,
                                                                             T* __restrict__ dw, Geo g) {
  const int64_t e = blockIdx.x;
  const int64_t c = e / g.khw;
  const int rs = int(e - c * g.khw), r = rs / g.kw, s = rs - r * g.kw;
  const int roff = r * g.dh - g.ph, soff = s * g.dw - g.pw;
  float acc = 0.0f;
  for (int64_t img = 0; img < g.n; ++img) {
    const T* xp = x + (img * g.c_in + c) * g.hw;
    const T* dyp = dy + (img * g.c_out + c) * g.ohw;
    for (int64_t pix = threadIdx.x; pix < g.ohw; pix += kThreads) {
      const int oh = int(pix / g.ow), ow = int(pix - int64_t(oh) * g.ow);
      const int ih = oh * g.sh + roff, iw = ow * g.sw + soff;
      if (unsigned(ih) < unsigned(g.h) && unsigned(iw) < unsigned(g.w))
        acc = fmaf(to_float(dyp[pix]), to_float(xp[int64_t(ih) * g.w + iw]), acc);
    }
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) dw[e] = from_float<T>(acc);
}

// ---- host side ----

bool is_depthwise(const Conv2dParams& p) { return p.groups > 1 && p.groups == p.c_in && p.groups == p.c_out; }

void check_launchable(const Conv2dParams& p, DType t, const char* fn) {
  if (t == DType::BF16)
    throw Error(ErrorKind::Unsupported, std::string(fn) + ": bfloat16 convolution is not supported on the GPU (use float32 or float16)");
  if (t != DType::F32 && t != DType::F16) throw Error(ErrorKind::Range, std::string(fn) + ": unknown dtype");
  check_conv2d(p);
  // The kernels keep padded coordinates and one group's reduction index in int.
  const int64_t K_fwd = (p.c_in / p.groups) * p.kh * p.kw, K_bwd = (p.c_out / p.groups) * p.kh * p.kw;
  if (p.h + 2 * p.pad_h + p.stride_h >= INT_MAX || p.w + 2 * p.pad_w + p.stride_w >= INT_MAX || K_fwd >= INT_MAX - BK ||
      K_bwd >= INT_MAX - BK || p.kh * p.dilation_h >= INT_MAX || p.kw * p.dilation_w >= INT_MAX)
    throw Error(ErrorKind::Unsupported, std::string(fn) + ": spatial extents or the reduction length exceed the GPU kernels' 2^31 limit");
}

void require_ptr(const void* ptr, const char* fn, const char* name) {
  if (!ptr) throw_expected(ErrorKind::Type, "a device buffer", std::string(fn) + " " + name, "null");
}

dim3 tile_grid(int64_t n_cols, int64_t m_rows, int64_t z, const char* fn) {
  const int64_t gx = (n_cols + BN - 1) / BN, gy = (m_rows + BM - 1) / BM;
  if (gx > INT_MAX || gy > 65535 || z > 65535)
    throw Error(ErrorKind::Unsupported, std::string(fn) + ": the problem needs more blocks than one launch allows");
  return dim3(unsigned(gx), unsigned(gy), unsigned(z));
}

template <typename T>
void forward_t(const Conv2dParams& p, const void* x, const void* w, const void* bias, void* y, cudaStream_t s) {
  const Geo g = geo_of(p);
  if (is_depthwise(p)) {
    depthwise_forward_kernel<T><<<blocks_for(p.output_size(), kThreads), kThreads, 0, s>>>(
        static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias), static_cast<T*>(y), g);
    check_launch("conv2d_forward (depthwise)");
    return;
  }
  ForwardView<T> v{};
  v.x = static_cast<const T*>(x);
  v.w = static_cast<const T*>(w);
  v.bias = static_cast<const T*>(bias);
  v.y = static_cast<T*>(y);
  v.g = g;
  v.N = p.n * g.ohw;
  v.M = int(g.kg);
  v.K = int(g.cg * g.khw);
  tiled_kernel<<<tile_grid(v.N, v.M, p.groups, "conv2d_forward"), kThreads, 0, s>>>(v);
  check_launch("conv2d_forward");
}

template <typename T> void backward_data_t(const Conv2dParams& p, const void* dy, const void* w, void* dx, cudaStream_t s) {
  const Geo g = geo_of(p);
  if (is_depthwise(p)) {
    depthwise_backward_data_kernel<T><<<blocks_for(p.input_size(), kThreads), kThreads, 0, s>>>(
        static_cast<const T*>(dy), static_cast<const T*>(w), static_cast<T*>(dx), g);
    check_launch("conv2d_backward_data (depthwise)");
    return;
  }
  BackwardDataView<T> v{};
  v.dy = static_cast<const T*>(dy);
  v.w = static_cast<const T*>(w);
  v.dx = static_cast<T*>(dx);
  v.g = g;
  v.N = p.n * g.hw;
  v.M = int(g.cg);
  v.K = int(g.kg * g.khw);
  tiled_kernel<<<tile_grid(v.N, v.M, p.groups, "conv2d_backward_data"), kThreads, 0, s>>>(v);
  check_launch("conv2d_backward_data");
}

template <typename T>
void backward_weight_t(int device, const Conv2dParams& p, const void* x, const void* dy, void* dw, void* db, cudaStream_t s) {
  const Geo g = geo_of(p);
  if (db) {
    bias_grad_kernel<T><<<unsigned(p.c_out), kThreads, 0, s>>>(static_cast<const T*>(dy), g, static_cast<T*>(db));
    check_launch("conv2d_backward_weight (bias)");
  }
  if (is_depthwise(p)) {
    if (p.weight_size() > INT_MAX) throw Error(ErrorKind::Unsupported, "conv2d_backward_weight: too many depthwise weights for one launch");
    depthwise_backward_weight_kernel<T><<<unsigned(p.weight_size()), kThreads, 0, s>>>(static_cast<const T*>(x),
                                                                                      static_cast<const T*>(dy), static_cast<T*>(dw), g);
    check_launch("conv2d_backward_weight (depthwise)");
    return;
  }
  BackwardWeightView<T> v{};
  v.x = static_cast<const T*>(x);
  v.dy = static_cast<const T*>(dy);
  v.dw = static_cast<T*>(dw);
  v.g = g;
  v.P = p.n * g.ohw;
  v.wsize = p.weight_size();
  v.M = int(g.kg);
  v.N = int(g.cg * g.khw);
  // Split the pixel reduction until there are about 1024 blocks (a number that depends on the
  // shape only, so results do too), keeping at least 8 slices per split.
  const int64_t tiles = ((v.N + BN - 1) / BN) * ((v.M + BM - 1) / BM) * p.groups;
  const int64_t slices = (v.P + BK - 1) / BK;
  if (slices * BK > INT_MAX) throw Error(ErrorKind::Unsupported, "conv2d_backward_weight: n*oh*ow exceeds the GPU kernel's limit");
  int64_t splits = std::max<int64_t>(1, (1024 + tiles - 1) / tiles);
  splits = std::min<int64_t>(splits, std::max<int64_t>(1, slices / 8));
  splits = std::min<int64_t>(splits, std::max<int64_t>(1, 65535 / p.groups));
  const int64_t per_split = (slices + splits - 1) / splits;
  splits = (slices + per_split - 1) / per_split;
  v.splits = int(splits);
  v.tiles_per_split = int(per_split);
  const dim3 grid = tile_grid(v.N, v.M, p.groups * splits, "conv2d_backward_weight");
  if (splits == 1) {
    tiled_kernel<<<grid, kThreads, 0, s>>>(v);
    check_launch("conv2d_backward_weight");
    return;
  }
  Scratch partial(device, size_t(splits) * size_t(v.wsize) * sizeof(float), s);
  v.partial = partial.as<float>();
  tiled_kernel<<<grid, kThreads, 0, s>>>(v);
  check_launch("conv2d_backward_weight");
  sum_splits_kernel<T><<<blocks_for(v.wsize, kThreads), kThreads, 0, s>>>(v.partial, v.splits, v.wsize, static_cast<T*>(dw));
  check_launch("conv2d_backward_weight (split sum)");
}

}  // namespace

void conv2d_forward(int device, DType t, const Conv2dParams& p, const void* x, const void* w, const void* bias, void* y,
                    Stream stream) {
  check_launchable(p, t, "conv2d_forward");
  if (p.output_size() == 0) return;
  require_ptr(x, "conv2d_forward", "x");
  require_ptr(w, "conv2d_forward", "w");
  require_ptr(y, "conv2d_forward", "y");
  use_device(device);
  if (t == DType::F32) forward_t<float>(p, x, w, bias, y, as_stream(stream));
  else forward_t<__half>(p, x, w, bias, y, as_stream(stream));
}

void conv2d_backward_data(int device, DType t, const Conv2dParams& p, const void* dy, const void* w, void* dx, Stream stream) {
  check_launchable(p, t, "conv2d_backward_data");
  if (p.input_size() == 0) return;
  require_ptr(dy, "conv2d_backward_data", "dy");
  require_ptr(w, "conv2d_backward_data", "w");
  require_ptr(dx, "conv2d_backward_data", "dx");
  use_device(device);
  if (t == DType::F32) backward_data_t<float>(p, dy, w, dx, as_stream(stream));
  else backward_data_t<__half>(p, dy, w, dx, as_stream(stream));
}

void conv2d_backward_weight(int device, DType t, const Conv2dParams& p, const void* x, const void* dy, void* dw, void* db,
                            Stream stream) {
  check_launchable(p, t, "conv2d_backward_weight");
  require_ptr(dw, "conv2d_backward_weight", "dw");
  use_device(device);
  const cudaStream_t s = as_stream(stream);
  if (p.n == 0) {  // empty batch: zero gradients (all-zero bits are 0.0 in both dtypes)
    check(cudaMemsetAsync(dw, 0, size_t(p.weight_size()) * dtype_size(t), s), "cudaMemsetAsync(conv2d_backward_weight)");
    if (db) check(cudaMemsetAsync(db, 0, size_t(p.c_out) * dtype_size(t), s), "cudaMemsetAsync(conv2d_backward_weight)");
    return;
  }
  require_ptr(x, "conv2d_backward_weight", "x");
  require_ptr(dy, "conv2d_backward_weight", "dy");
  if (t == DType::F32) backward_weight_t<float>(device, p, x, dy, dw, db, s);
  else backward_weight_t<__half>(device, p, x, dy, dw, db, s);
}

}  // namespace kintsugi::cuda
