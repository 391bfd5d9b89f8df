// 2-D convolution on the CPU. Forward: implicit GEMM (conv_implicit.cc) for everything but
// depthwise layers (one input channel per group), which take direct loops. Backward: im2col +
// sgemm in general, a plain GEMM for pointwise (1x1, stride 1, no padding) layers and direct loops
// for depthwise layers.
//
// Backward-data on one image's small output planes (7x7) forms the transposed column matrix
// dy^T . W, vectorised along the long C_in*KH*KW side, and scatters it slice by slice.
//
// Small output planes are batched (several images side by side in one column matrix) so that sgemm
// sees a wide problem. Threading uses one level only: batches of images run one after another and
// sgemm / im2col / col2im parallelise inside; the direct depthwise loops parallelise over
// (image, channel) planes.
#include "kintsugi/conv.h"

#include <algorithm>
#include <cstdlib>
#include <new>
#include <cstring>
#include <string>
#include <vector>

#include "gemm_internal.h"
#include "kernels_internal.h"
#include "kintsugi/cpu.h"
#include "kintsugi/error.h"
#include "kintsugi/gemm.h"
#include "kintsugi/threadpool.h"

namespace kintsugi {

namespace conv_internal {

ScratchBuffer::~ScratchBuffer() { std::free(data); }

float* ScratchBuffer::get(size_t n) {
  if (n > size) {
    std::free(data);
    data = nullptr;
    size = 0;
    const size_t bytes = (std::max<size_t>(n, 16) * sizeof(float) + 63) / 64 * 64;
    data = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!data) throw std::bad_alloc();
    size = n;
  }
  return data;
}

Geometry geometry(const Conv2dParams& p) {
  Geometry g;
  g.oh = p.out_h();
  g.ow = p.out_w();
  g.ohw = g.oh * g.ow;
  g.hw = p.h * p.w;
  g.cg = p.c_in / p.groups;
  g.kg = p.c_out / p.groups;
  g.kk = p.kh * p.kw;
  g.krows = g.cg * g.kk;
  g.pointwise = p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
  // With one input channel per group the GEMM would have k = KH*KW only; direct loops win unless a
  // group has many outputs (then it is a small dense layer, e.g. a first layer on 1-channel input).
  g.depthwise = g.cg == 1 && g.kg <= 8 && !g.pointwise;
  return g;
}

}  // namespace conv_internal

using conv_internal::ceil_div;
using conv_internal::floor_div;
using conv_internal::Geometry;
using conv_internal::geometry;
using conv_internal::valid_range;

namespace {

// Column buffers are split into chunks of output pixels so that one chunk stays about this size:
// large images do not need a K*KH*KW x OH*OW buffer, and a chunk is still read back from cache.
constexpr int64_t kColumnBudgetBytes = int64_t(4) << 20;

int64_t column_chunk(const Geometry& g) {
  int64_t max_cols = kColumnBudgetBytes / int64_t(sizeof(float)) / g.krows;
  if (g.ohw <= max_cols) return g.ohw;
  return std::max<int64_t>(64, max_cols / 16 * 16);
}

std::vector<float> scratch(int64_t floats) { return std::vector<float>(size_t(std::max<int64_t>(floats, 0))); }

// Rows [r0, r1) of the column matrix for output pixels [c0, c1) of one group of one image:
// col[r * ld + (q - c0)] = x[c, oh * sh - ph + i * dh, ow * sw - pw + j * dw] (0 outside),
// with r = (c, i, j) and q = oh * OW + ow.
void im2col(const Conv2dParams& p, const Geometry& g, const float* x, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
            float* col, int64_t ld) {
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t c = r / g.kk, i = (r / p.kw) % p.kh, j = r % p.kw;
    const float* plane = x + c * g.hw;
    const int64_t off_w = j * p.dilation_w - p.pad_w;
    int64_t lo, hi;
    valid_range(off_w, p.stride_w, p.w, g.ow, lo, hi);
    for (int64_t oh = c0 / g.ow; oh * g.ow < c1; ++oh) {
      const int64_t base = oh * g.ow;
      const int64_t ob = std::max<int64_t>(c0 - base, 0), oe = std::min<int64_t>(c1 - base, g.ow);
      float* d = col + r * ld + (base + ob - c0);  // d[o - ob] is output column o of this row
      const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dilation_h;
      if (ih < 0 || ih >= p.h) {
        std::fill(d, d + (oe - ob), 0.0f);
        continue;
      }
      const int64_t a = std::min(std::max(lo, ob), oe), b = std::min(std::max(hi, a), oe);
      std::fill(d, d + (a - ob), 0.0f);
      const float* src = plane + ih * p.w;
      if (p.stride_w == 1) {
        if (b > a) std::memcpy(d + (a - ob), src + (a + off_w), size_t(b - a) * sizeof(float));
      } else {
        for (int64_t o = a; o < b; ++o) d[o - ob] = src[o * p.stride_w + off_w];
      }
      std::fill(d + (b - ob), d + (oe - ob), 0.0f);
    }
  }
}

// The adjoint of im2col for channels [ch0, ch1): dx[c, ih, iw] += col[r, q] (dx planes of one group).
void col2im(const Conv2dParams& p, const Geometry& g, const float* col, int64_t ld, int64_t ch0, int64_t ch1, int64_t c0,
            int64_t c1, float* dx) {
  for (int64_t r = ch0 * g.kk; r < ch1 * g.kk; ++r) {
    const int64_t c = r / g.kk, i = (r / p.kw) % p.kh, j = r % p.kw;
    float* plane = dx + c * g.hw;
    const int64_t off_w = j * p.dilation_w - p.pad_w;
    int64_t lo, hi;
    valid_range(off_w, p.stride_w, p.w, g.ow, lo, hi);
    for (int64_t oh = c0 / g.ow; oh * g.ow < c1; ++oh) {
      const int64_t base = oh * g.ow;
      const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dilation_h;
      if (ih < 0 || ih >= p.h) continue;
      const int64_t ob = std::max<int64_t>(c0 - base, 0), oe = std::min<int64_t>(c1 - base, g.ow);
      const int64_t a = std::min(std::max(lo, ob), oe), b = std::min(std::max(hi, a), oe);
      if (a >= b) continue;
      const float* s = col + r * ld + (base + a - c0);  // s[o - a] is output column o of this row
      float* d = plane + ih * p.w;
      if (p.stride_w == 1) {
        float* dd = d + (a + off_w);
        for (int64_t o = 0; o < b - a; ++o) dd[o] += s[o];
      } else {
        for (int64_t o = a; o < b; ++o) d[o * p.stride_w + off_w] += s[o - a];
      }
    }
  }
}

void gemm(Transpose ta, Transpose tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
          int64_t ldb, float beta, float* c, int64_t ldc) {
  SgemmArgs args = row_major_args(m, n, k, a, lda, b, ldb, c, ldc, beta);
  args.trans_a = ta;
  args.trans_b = tb;
  sgemm(args);
}

// Output planes smaller than this are batched: several images side by side in one column matrix,
// so that sgemm gets a problem wide enough to block and to spread over the pool.
constexpr int64_t kWideEnough = 1024;

int64_t images_per_gemm(const Conv2dParams& p, const Geometry& g) {
  if (g.ohw >= kWideEnough || p.n == 1) return 1;
  const int64_t max_cols = kColumnBudgetBytes / int64_t(sizeof(float)) / g.krows;
  return std::max<int64_t>(1, std::min<int64_t>(p.n, max_cols / g.ohw));
}

// Batches of images run one after another and the pool is used inside them (sgemm, im2col, col2im,
// copies): one level only. Batching already makes each GEMM wide enough for sgemm to spread.

// Column chunk [c0, c1) of one image and group, rows split over the pool.
void im2col_parallel(const Conv2dParams& p, const Geometry& g, const float* x, int64_t c0, int64_t c1, float* col) {
  const int64_t grain = std::max<int64_t>(1, 16384 / (c1 - c0));
  parallel_for(g.krows, grain, [&](int64_t r0, int64_t r1) { im2col(p, g, x, r0, r1, c0, c1, col, c1 - c0); });
}

void col2im_parallel(const Conv2dParams& p, const Geometry& g, const float* col, int64_t c0, int64_t c1, float* dx) {
  const int64_t grain = std::max<int64_t>(1, 16384 / ((c1 - c0) * g.kk));
  parallel_for(g.cg, grain, [&](int64_t ch0, int64_t ch1) { col2im(p, g, col, c1 - c0, ch0, ch1, c0, c1, dx); });
}

// Group grp of images [img0, img0 + nb) side by side: col is krows x (nb * ohw).
void im2col_images(const Conv2dParams& p, const Geometry& g, const float* x, int64_t grp, int64_t img0, int64_t nb,
                   float* col) {
  const int64_t ld = nb * g.ohw;
  parallel_for(g.krows, std::max<int64_t>(1, 16384 / ld), [&](int64_t r0, int64_t r1) {
    for (int64_t b = 0; b < nb; ++b)
      im2col(p, g, x + ((img0 + b) * p.c_in + grp * g.cg) * g.hw, r0, r1, 0, g.ohw, col + b * g.ohw, ld);
  });
}

// dx planes of group grp of images [img0, img0 + nb) = col2im of the batched column matrix.
void col2im_images(const Conv2dParams& p, const Geometry& g, const float* col, int64_t grp, int64_t img0, int64_t nb,
                   float* dx) {
  const int64_t ld = nb * g.ohw;
  parallel_for(g.cg, std::max<int64_t>(1, 16384 / (ld * g.kk)), [&](int64_t ch0, int64_t ch1) {
    for (int64_t b = 0; b < nb; ++b) {
      float* dxg = dx + ((img0 + b) * p.c_in + grp * g.cg) * g.hw;
      std::fill(dxg + ch0 * g.hw, dxg + ch1 * g.hw, 0.0f);
      col2im(p, g, col + b * g.ohw, ld, ch0, ch1, 0, g.ohw, dxg);
    }
  });
}

// Channels [grp * kg, (grp + 1) * kg) of output-shaped planes (N x c_out x ohw) of images
// [img0, img0 + nb), as a kg x (nb * ohw) matrix, and back (adding a bias on the way back).
void gather_planes(const Conv2dParams& p, const Geometry& g, const float* t, int64_t grp, int64_t img0, int64_t nb,
                   float* m) {
  const int64_t ld = nb * g.ohw;
  parallel_for(g.kg, std::max<int64_t>(1, 65536 / ld), [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k)
      for (int64_t b = 0; b < nb; ++b)
        std::memcpy(m + k * ld + b * g.ohw, t + ((img0 + b) * p.c_out + grp * g.kg + k) * g.ohw,
                    size_t(g.ohw) * sizeof(float));
  });
}

// ---- depthwise: direct loops, vectorisable along output rows when stride_w == 1 ----

void depthwise_forward(const Conv2dParams& p, const Geometry& g, const float* x, const float* w, const float* bias,
                       float* y) {
  const int64_t planes = p.n * p.c_out;
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, g.ohw * g.kk));
  parallel_for(planes, grain, [&](int64_t t0, int64_t t1) {
    std::vector<int64_t> lo(size_t(p.kw)), hi(size_t(p.kw));
    for (int64_t j = 0; j < p.kw; ++j) valid_range(j * p.dilation_w - p.pad_w, p.stride_w, p.w, g.ow, lo[size_t(j)], hi[size_t(j)]);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t img = t / p.c_out, oc = t % p.c_out, c = oc / g.kg;
      const float* xp = x + (img * p.c_in + c) * g.hw;
      const float* wk = w + oc * g.kk;
      float* yp = y + t * g.ohw;
      const float b0 = bias ? bias[oc] : 0.0f;
      for (int64_t oh = 0; oh < g.oh; ++oh) {
        float* yr = yp + oh * g.ow;
        std::fill(yr, yr + g.ow, b0);
        for (int64_t i = 0; i < p.kh; ++i) {
          const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dilation_h;
          if (ih < 0 || ih >= p.h) continue;
          const float* xr = xp + ih * p.w;
          for (int64_t j = 0; j < p.kw; ++j) {
            const float wv = wk[i * p.kw + j];
            const int64_t off = j * p.dilation_w - p.pad_w, a = lo[size_t(j)], b = hi[size_t(j)];
            if (a >= b) continue;
            if (p.stride_w == 1) {
              const float* xs = xr + (a + off);
              float* ys = yr + a;
              for (int64_t o = 0; o < b - a; ++o) ys[o] += wv * xs[o];
            } else {
              for (int64_t o = a; o < b; ++o) yr[o] += wv * xr[o * p.stride_w + off];
            }
          }
        }
      }
    }
  });
}

void depthwise_backward_data(const Conv2dParams& p, const Geometry& g, const float* dy, const float* w, float* dx) {
  const int64_t planes = p.n * p.c_in;
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, g.ohw * g.kk * g.kg));
  parallel_for(planes, grain, [&](int64_t t0, int64_t t1) {
    std::vector<int64_t> lo(size_t(p.kw)), hi(size_t(p.kw));
    for (int64_t j = 0; j < p.kw; ++j) valid_range(j * p.dilation_w - p.pad_w, p.stride_w, p.w, g.ow, lo[size_t(j)], hi[size_t(j)]);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t img = t / p.c_in, c = t % p.c_in;
      float* dxp = dx + t * g.hw;
      std::fill(dxp, dxp + g.hw, 0.0f);
      for (int64_t m = 0; m < g.kg; ++m) {
        const int64_t oc = c * g.kg + m;
        const float* dyp = dy + (img * p.c_out + oc) * g.ohw;
        const float* wk = w + oc * g.kk;
        for (int64_t oh = 0; oh < g.oh; ++oh) {
          const float* dyr = dyp + oh * g.ow;
          for (int64_t i = 0; i < p.kh; ++i) {
            const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dilation_h;
            if (ih < 0 || ih >= p.h) continue;
            float* dxr = dxp + ih * p.w;
            for (int64_t j = 0; j < p.kw; ++j) {
              const float wv = wk[i * p.kw + j];
              const int64_t off = j * p.dilation_w - p.pad_w, a = lo[size_t(j)], b = hi[size_t(j)];
              if (a >= b) continue;
              if (p.stride_w == 1) {
                float* xs = dxr + (a + off);
                const float* ds = dyr + a;
                for (int64_t o = 0; o < b - a; ++o) xs[o] += wv * ds[o];
              } else {
                for (int64_t o = a; o < b; ++o) dxr[o * p.stride_w + off] += wv * dyr[o];
              }
            }
          }
        }
      }
    }
  });
}

void depthwise_backward_weight(const Conv2dParams& p, const Geometry& g, const float* x, const float* dy, float* dw) {
  // Per output channel: one double row buffer per kernel tap, accumulated along output rows
  // (vectorisable, no reduction in the inner loop), summed once at the end.
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, p.n * g.ohw * g.kk));
  parallel_for(p.c_out, grain, [&](int64_t oc0, int64_t oc1) {
    std::vector<int64_t> lo(size_t(p.kw)), hi(size_t(p.kw));
    for (int64_t j = 0; j < p.kw; ++j) valid_range(j * p.dilation_w - p.pad_w, p.stride_w, p.w, g.ow, lo[size_t(j)], hi[size_t(j)]);
    std::vector<double> acc(size_t(g.kk * g.ow));
    for (int64_t oc = oc0; oc < oc1; ++oc) {
      const int64_t c = oc / g.kg;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t img = 0; img < p.n; ++img) {
        const float* xp = x + (img * p.c_in + c) * g.hw;
        const float* dyp = dy + (img * p.c_out + oc) * g.ohw;
        for (int64_t oh = 0; oh < g.oh; ++oh) {
          const float* dyr = dyp + oh * g.ow;
          for (int64_t i = 0; i < p.kh; ++i) {
            const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dilation_h;
            if (ih < 0 || ih >= p.h) continue;
            const float* xr = xp + ih * p.w;
            for (int64_t j = 0; j < p.kw; ++j) {
              double* ar = acc.data() + (i * p.kw + j) * g.ow;
              const int64_t off = j * p.dilation_w - p.pad_w, a = lo[size_t(j)], b = hi[size_t(j)];
              if (a >= b) continue;
              if (p.stride_w == 1) {
                const float* xs = xr + (a + off);
                const float* ds = dyr + a;
                double* as = ar + a;
                for (int64_t o = 0; o < b - a; ++o) as[o] += double(ds[o]) * double(xs[o]);
              } else {
                for (int64_t o = a; o < b; ++o) ar[o] += double(dyr[o]) * double(xr[o * p.stride_w + off]);
              }
            }
          }
        }
      }
      for (int64_t t = 0; t < g.kk; ++t) {
        double s = 0;
        const double* ar = acc.data() + t * g.ow;
        for (int64_t o = 0; o < g.ow; ++o) s += ar[o];
        dw[oc * g.kk + t] = float(s);
      }
    }
  });
}

void forward_impl(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  const Geometry g = geometry(p);
  if (p.n == 0) return;
  if (g.depthwise) {
    depthwise_forward(p, g, x, w, bias, y);
    return;
  }
  // Everything else, pointwise and strided 1x1 included: implicit GEMM (conv_implicit.cc).
  conv_internal::implicit_gemm_forward(p, x, w, bias, y, conv_internal::implicit_gemm_tuning());
}

// The batched backward passes: for each batch of nb <= nb_max images and each group, dy's planes
// of the batch and group gathered side by side into dyb (kg x nb*ohw), then
// step(img0, nb, grp, col, dyb) with a column buffer col of krows x nb*ohw.
template <typename Step>
void image_batches(const Conv2dParams& p, const Geometry& g, int64_t nb_max, const float* dy, const Step& step) {
  std::vector<float> col = scratch(g.krows * nb_max * g.ohw), dyb = scratch(g.kg * nb_max * g.ohw);
  for (int64_t img0 = 0; img0 < p.n; img0 += nb_max) {
    const int64_t nb = std::min(nb_max, p.n - img0);
    for (int64_t grp = 0; grp < p.groups; ++grp) {
      gather_planes(p, g, dy, grp, img0, nb, dyb.data());
      step(img0, nb, grp, col.data(), dyb.data());
    }
  }
}

// Output planes up to this many pixels (7x7) take the backward-data product as
// col^T (ohw x krows) = dy_g^T . W_g: C is then vectorised along its long krows side, where
// W_g^T . dy_g (krows x ohw) leaves lanes of the last column vector idle (49 of 64).
// col^T is made in slices of whole channels about kNarrowSlice columns per thread wide, each
// transposed and scattered (col2im) while it is still in cache; a narrow slice also keeps
// W_g's packed block small (measured on Zen 4, 1 thread, 4608 x 49 x 512: 2.56-2.72 ms at
// 256-512 columns a block vs 2.79-2.85 at 4096).
constexpr int64_t kNarrowPlane = 64;
constexpr int64_t kNarrowSlice = 512;

// col (rows x ohw, rows [r0, r1) of it) = the transpose of colt (ohw x rows, leading dim ldt),
// in 16 x 16 blocks.
void transpose_rows(const float* colt, int64_t ldt, int64_t ohw, int64_t r0, int64_t r1, float* col) {
  for (int64_t rb = r0; rb < r1; rb += 16) {
    const int64_t re = std::min(r1, rb + 16);
    for (int64_t qb = 0; qb < ohw; qb += 16) {
      const int64_t qe = std::min(ohw, qb + 16);
      for (int64_t r = rb; r < re; ++r)
        for (int64_t q = qb; q < qe; ++q) col[r * ohw + q] = colt[q * ldt + r];
    }
  }
}

int64_t narrow_slice_channels(const Geometry& g) {
  return std::max<int64_t>(1, kNarrowSlice * std::max(1, num_threads()) / g.kk);
}

// dx planes of one group of one image from dy_g (kg x ohw) through col^T (see kNarrowPlane);
// colt and col hold narrow_slice_channels(g) * kk * ohw floats each.
void backward_data_narrow(const Conv2dParams& p, const Geometry& g, const float* dyg, const float* wg, float* colt, float* col,
                          float* dxg) {
  const int64_t slice = narrow_slice_channels(g);
  for (int64_t s0 = 0; s0 < g.cg; s0 += slice) {
    const int64_t s1 = std::min(g.cg, s0 + slice), width = (s1 - s0) * g.kk;
    SgemmArgs a;
    a.trans_a = Transpose::Yes;
    a.m = g.ohw;
    a.n = width;
    a.k = g.kg;
    a.a = dyg;
    a.lda = g.ohw;
    a.b = wg + s0 * g.kk;
    a.ldb = g.krows;
    a.beta = 0.0f;
    a.c = colt;
    a.ldc = width;
    gemm_internal::sgemm_wide(a);
    float* dxs = dxg + s0 * g.hw;
    parallel_for(s1 - s0, std::max<int64_t>(1, 16384 / (g.ohw * g.kk)), [&](int64_t ch0, int64_t ch1) {
      transpose_rows(colt, width, g.ohw, ch0 * g.kk, ch1 * g.kk, col);
      std::fill(dxs + ch0 * g.hw, dxs + ch1 * g.hw, 0.0f);
      col2im(p, g, col, g.ohw, ch0, ch1, 0, g.ohw, dxs);
    });
  }
}

void backward_data_impl(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  const Geometry g = geometry(p);
  if (p.n == 0) return;
  if (g.depthwise) {
    depthwise_backward_data(p, g, dy, w, dx);
    return;
  }
  const int64_t nb_max = images_per_gemm(p, g);
  if (nb_max > 1) {
    image_batches(p, g, nb_max, dy, [&](int64_t img0, int64_t nb, int64_t grp, float* col, const float* dyb) {
      const int64_t ld = nb * g.ohw;
      // col (krows x nb*ohw) = W_g^T (krows x kg) . dy (kg x nb*ohw)
      gemm(Transpose::Yes, Transpose::No, g.krows, ld, g.kg, w + grp * g.kg * g.krows, g.krows, dyb, ld, 0.0f, col, ld);
      col2im_images(p, g, col, grp, img0, nb, dx);
    });
    return;
  }
  const int64_t chunk = g.pointwise ? 0 : column_chunk(g);
  const bool narrow = !g.pointwise && g.ohw <= kNarrowPlane;
  std::vector<float> col = scratch(g.pointwise ? 0 : g.krows * chunk), colt = scratch(narrow ? narrow_slice_channels(g) * g.kk * g.ohw : 0);
  for (int64_t img = 0; img < p.n; ++img) {
    for (int64_t grp = 0; grp < p.groups; ++grp) {
      const float* dyg = dy + (img * p.c_out + grp * g.kg) * g.ohw;
      const float* wg = w + grp * g.kg * g.krows;
      float* dxg = dx + (img * p.c_in + grp * g.cg) * g.hw;
      if (narrow) {
        backward_data_narrow(p, g, dyg, wg, colt.data(), col.data(), dxg);
        continue;
      }
      if (g.pointwise) {
        // dx_g (cg x hw) = W_g^T (cg x kg) . dy_g (kg x hw)
        gemm(Transpose::Yes, Transpose::No, g.cg, g.hw, g.kg, wg, g.cg, dyg, g.ohw, 0.0f, dxg, g.hw);
        continue;
      }
      std::fill(dxg, dxg + g.cg * g.hw, 0.0f);
      for (int64_t c0 = 0; c0 < g.ohw; c0 += chunk) {
        const int64_t c1 = std::min(g.ohw, c0 + chunk);
        // col (krows x nc) = W_g^T (krows x kg) . dy_g[:, c0:c1] (kg x nc)
        gemm(Transpose::Yes, Transpose::No, g.krows, c1 - c0, g.kg, wg, g.krows, dyg + c0, g.ohw, 0.0f, col.data(), c1 - c0);
        col2im_parallel(p, g, col.data(), c0, c1, dxg);
      }
    }
  }
}

// dw = sum over images of dy_g . im2col(x_g)^T (the first product overwrites).
void weight_grad(const Conv2dParams& p, const Geometry& g, const float* x, const float* dy, float* dw) {
  const int64_t nb_max = images_per_gemm(p, g);
  if (nb_max > 1) {
    image_batches(p, g, nb_max, dy, [&](int64_t img0, int64_t nb, int64_t grp, float* col, const float* dyb) {
      const int64_t ld = nb * g.ohw;
      im2col_images(p, g, x, grp, img0, nb, col);
      gemm(Transpose::No, Transpose::Yes, g.kg, g.krows, ld, dyb, ld, col, ld, img0 == 0 ? 0.0f : 1.0f, dw + grp * g.kg * g.krows,
           g.krows);
    });
    return;
  }
  const int64_t chunk = g.pointwise ? 0 : column_chunk(g);
  std::vector<float> col = scratch(g.pointwise ? 0 : g.krows * chunk);
  for (int64_t img = 0; img < p.n; ++img) {
    for (int64_t grp = 0; grp < p.groups; ++grp) {
      const float* xg = x + (img * p.c_in + grp * g.cg) * g.hw;
      const float* dyg = dy + (img * p.c_out + grp * g.kg) * g.ohw;
      float* dwg = dw + grp * g.kg * g.krows;
      if (g.pointwise) {
        gemm(Transpose::No, Transpose::Yes, g.kg, g.cg, g.hw, dyg, g.ohw, xg, g.hw, img == 0 ? 0.0f : 1.0f, dwg, g.krows);
        continue;
      }
      for (int64_t c0 = 0; c0 < g.ohw; c0 += chunk) {
        const int64_t c1 = std::min(g.ohw, c0 + chunk);
        im2col_parallel(p, g, xg, c0, c1, col.data());
        const float beta = (img == 0 && c0 == 0) ? 0.0f : 1.0f;
        gemm(Transpose::No, Transpose::Yes, g.kg, g.krows, c1 - c0, dyg + c0, g.ohw, col.data(), c1 - c0, beta, dwg, g.krows);
      }
    }
  }
}

void backward_weight_impl(const Conv2dParams& p, const float* x, const float* dy, float* dw, float* db) {
  const Geometry g = geometry(p);
  if (db) {
    parallel_for(p.c_out, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, p.n * g.ohw)), [&](int64_t k0, int64_t k1) {
      for (int64_t oc = k0; oc < k1; ++oc) {
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int64_t img = 0; img < p.n; ++img) {
          const float* plane = dy + (img * p.c_out + oc) * g.ohw;
          int64_t q = 0;
          for (; q + 4 <= g.ohw; q += 4) {
            s0 += plane[q];
            s1 += plane[q + 1];
            s2 += plane[q + 2];
            s3 += plane[q + 3];
          }
          for (; q < g.ohw; ++q) s0 += plane[q];
        }
        db[oc] = float((s0 + s1) + (s2 + s3));
      }
    });
  }
  const int64_t wsize = p.weight_size();
  if (p.n == 0) {
    std::fill(dw, dw + wsize, 0.0f);
    return;
  }
  if (g.depthwise) {
    depthwise_backward_weight(p, g, x, dy, dw);
    return;
  }
  weight_grad(p, g, x, dy, dw);
}

std::string str(int64_t v) { return std::to_string(v); }

void check_at_most(int64_t v, int64_t limit, const char* name) {
  if (v > limit) throw_expected(ErrorKind::Range, "at most " + str(limit), name, str(v));
}

// a * b, or a Range error naming `what` when the product passes `limit`.
int64_t checked_mul(int64_t a, int64_t b, int64_t limit, const char* what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r) || r > limit)
    throw_expected(ErrorKind::Range, "a tensor of at most " + str(limit) + " elements", what, "a larger shape");
  return r;
}

}  // namespace

void check_conv2d(const Conv2dParams& p) {
  // Each size stays below 2^31 and each tensor below 2^46 elements, so no index arithmetic overflows.
  constexpr int64_t kMaxSize = (int64_t(1) << 31) - 1, kMaxElements = int64_t(1) << 46;
  if (p.n < 0) throw_expected(ErrorKind::Range, "a non-negative batch size", "n", str(p.n));
  const struct {
    int64_t v;
    const char* name;
  } positive[] = {{p.c_in, "c_in"},         {p.h, "h"},
                  {p.w, "w"},               {p.c_out, "c_out"},
                  {p.kh, "kh"},             {p.kw, "kw"},
                  {p.stride_h, "stride_h"}, {p.stride_w, "stride_w"},
                  {p.dilation_h, "dilation_h"}, {p.dilation_w, "dilation_w"},
                  {p.groups, "groups"}};
  for (const auto& f : positive)
    if (f.v <= 0) throw_expected(ErrorKind::Range, "a positive integer", f.name, str(f.v));
  if (p.pad_h < 0) throw_expected(ErrorKind::Range, "a non-negative integer", "pad_h", str(p.pad_h));
  if (p.pad_w < 0) throw_expected(ErrorKind::Range, "a non-negative integer", "pad_w", str(p.pad_w));
  check_at_most(p.n, kMaxSize, "n");
  for (const auto& f : positive) check_at_most(f.v, kMaxSize, f.name);
  check_at_most(p.pad_h, kMaxSize, "pad_h");
  check_at_most(p.pad_w, kMaxSize, "pad_w");
  if (p.c_in % p.groups != 0)
    throw_expected(ErrorKind::Range, "a divisor of c_in (" + str(p.c_in) + ")", "groups", str(p.groups));
  if (p.c_out % p.groups != 0)
    throw_expected(ErrorKind::Range, "a divisor of c_out (" + str(p.c_out) + ")", "groups", str(p.groups));
  const int64_t span_h = p.dilation_h * (p.kh - 1) + 1, span_w = p.dilation_w * (p.kw - 1) + 1;
  if (p.h + 2 * p.pad_h < span_h)
    throw_expected(ErrorKind::Range,
                   "a padded height h + 2*pad_h of at least the dilated kernel height " + str(span_h), "h",
                   str(p.h) + " with pad_h " + str(p.pad_h));
  if (p.w + 2 * p.pad_w < span_w)
    throw_expected(ErrorKind::Range,
                   "a padded width w + 2*pad_w of at least the dilated kernel width " + str(span_w), "w",
                   str(p.w) + " with pad_w " + str(p.pad_w));
  const int64_t oh = p.out_h(), ow = p.out_w();
  checked_mul(checked_mul(checked_mul(p.n, p.c_in, kMaxElements, "x"), p.h, kMaxElements, "x"), p.w, kMaxElements, "x");
  checked_mul(checked_mul(checked_mul(p.c_out, p.c_in / p.groups, kMaxElements, "w"), p.kh, kMaxElements, "w"), p.kw,
              kMaxElements, "w");
  checked_mul(checked_mul(checked_mul(p.n, p.c_out, kMaxElements, "y"), oh, kMaxElements, "y"), ow, kMaxElements, "y");
}

void conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  check_conv2d(p);
  detail::translate_bad_alloc("conv2d_forward", [&] {
    if (p.layout == ConvLayout::Nhwc)
      conv_internal::nhwc_forward(p, x, w, nullptr, 0, bias, y);
    else
      forward_impl(p, x, w, bias, y);
  });
}

void conv2d_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  check_conv2d(p);
  detail::translate_bad_alloc("conv2d_backward_data", [&] {
    if (p.layout == ConvLayout::Nhwc)
      conv_internal::nhwc_backward_data(p, dy, w, dx);
    else
      backward_data_impl(p, dy, w, dx);
  });
}

void conv2d_backward_weight(const Conv2dParams& p, const float* x, const float* dy, float* dw, float* db) {
  check_conv2d(p);
  detail::translate_bad_alloc("conv2d_backward_weight", [&] {
    if (p.layout == ConvLayout::Nhwc)
      conv_internal::nhwc_backward_weight(p, x, dy, dw, db);
    else
      backward_weight_impl(p, x, dy, dw, db);
  });
}

// ---- references: direct loops, double accumulation ----

namespace {
// Index of activation element (img, c, h, w) of a [n, ch, hh, ww] tensor in p's layout.
int64_t act(const Conv2dParams& p, int64_t img, int64_t c, int64_t h, int64_t w, int64_t ch, int64_t hh, int64_t ww) {
  return p.layout == ConvLayout::Nhwc ? ((img * hh + h) * ww + w) * ch + c : ((img * ch + c) * hh + h) * ww + w;
}
}  // namespace

void conv2d_forward_reference(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y) {
  check_conv2d(p);
  const int64_t oh_n = p.out_h(), ow_n = p.out_w(), cg = p.c_in / p.groups, kg = p.c_out / p.groups;
  for (int64_t img = 0; img < p.n; ++img)
    for (int64_t oc = 0; oc < p.c_out; ++oc) {
      const int64_t grp = oc / kg;
      for (int64_t oh = 0; oh < oh_n; ++oh)
        for (int64_t ow = 0; ow < ow_n; ++ow) {
          double acc = bias ? double(bias[oc]) : 0.0;
          for (int64_t ci = 0; ci < cg; ++ci) {
            const int64_t c = grp * cg + ci;
            for (int64_t i = 0; i < p.kh; ++i) {
              const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dilation_h;
              if (ih < 0 || ih >= p.h) continue;
              for (int64_t j = 0; j < p.kw; ++j) {
                const int64_t iw = ow * p.stride_w - p.pad_w + j * p.dilation_w;
                if (iw < 0 || iw >= p.w) continue;
                acc += double(x[act(p, img, c, ih, iw, p.c_in, p.h, p.w)]) *
                       double(w[((oc * cg + ci) * p.kh + i) * p.kw + j]);
              }
            }
          }
          y[act(p, img, oc, oh, ow, p.c_out, oh_n, ow_n)] = float(acc);
        }
    }
}

void conv2d_backward_data_reference(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  check_conv2d(p);
  const int64_t oh_n = p.out_h(), ow_n = p.out_w(), cg = p.c_in / p.groups, kg = p.c_out / p.groups;
  for (int64_t img = 0; img < p.n; ++img)
    for (int64_t c = 0; c < p.c_in; ++c) {
      const int64_t grp = c / cg, ci = c % cg;
      for (int64_t ih = 0; ih < p.h; ++ih)
        for (int64_t iw = 0; iw < p.w; ++iw) {
          double acc = 0;
          for (int64_t m = 0; m < kg; ++m) {
            const int64_t oc = grp * kg + m;
            for (int64_t i = 0; i < p.kh; ++i) {
              const int64_t th = ih + p.pad_h - i * p.dilation_h;
              if (th < 0 || th % p.stride_h != 0 || th / p.stride_h >= oh_n) continue;
              const int64_t oh = th / p.stride_h;
              for (int64_t j = 0; j < p.kw; ++j) {
                const int64_t tw = iw + p.pad_w - j * p.dilation_w;
                if (tw < 0 || tw % p.stride_w != 0 || tw / p.stride_w >= ow_n) continue;
                const int64_t ow = tw / p.stride_w;
                acc += double(dy[act(p, img, oc, oh, ow, p.c_out, oh_n, ow_n)]) *
                       double(w[((oc * cg + ci) * p.kh + i) * p.kw + j]);
              }
            }
          }
          dx[act(p, img, c, ih, iw, p.c_in, p.h, p.w)] = float(acc);
        }
    }
}

void conv2d_backward_weight_reference(const Conv2dParams& p, const float* x, const float* dy, float* dw, float* db) {
  check_conv2d(p);
  const int64_t oh_n = p.out_h(), ow_n = p.out_w(), cg = p.c_in / p.groups, kg = p.c_out / p.groups;
  for (int64_t oc = 0; oc < p.c_out; ++oc) {
    const int64_t grp = oc / kg;
    for (int64_t ci = 0; ci < cg; ++ci) {
      const int64_t c = grp * cg + ci;
      for (int64_t i = 0; i < p.kh; ++i)
        for (int64_t j = 0; j < p.kw; ++j) {
          double acc = 0;
          for (int64_t img = 0; img < p.n; ++img)
            for (int64_t oh = 0; oh < oh_n; ++oh) {
              const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dilation_h;
              if (ih < 0 || ih >= p.h) continue;
              for (int64_t ow = 0; ow < ow_n; ++ow) {
                const int64_t iw = ow * p.stride_w - p.pad_w + j * p.dilation_w;
                if (iw < 0 || iw >= p.w) continue;
                acc += double(dy[act(p, img, oc, oh, ow, p.c_out, oh_n, ow_n)]) *
                       double(x[act(p, img, c, ih, iw, p.c_in, p.h, p.w)]);
              }
            }
          dw[((oc * cg + ci) * p.kh + i) * p.kw + j] = float(acc);
        }
    }
    if (db) {
      double acc = 0;
      for (int64_t img = 0; img < p.n; ++img)
        for (int64_t oh = 0; oh < oh_n; ++oh)
          for (int64_t ow = 0; ow < ow_n; ++ow) acc += double(dy[act(p, img, oc, oh, ow, p.c_out, oh_n, ow_n)]);
      db[oc] = float(acc);
    }
  }
}


// ---- pre-packed weights ----

namespace {

// Header of a packed buffer: layout, then the weight shape it was made for (int32 words).
constexpr int64_t kPackedHeader = 16;
enum PackedLayout : int32_t { kPackedRaw = 0x4b430001, kPackedDirect16 = 0x4b430002, kPackedNhwc = 0x4b430003 };

bool use_direct(const Conv2dParams& p) {
#if !defined(KINTSUGI_NO_X86_KERNELS)
  // Output channels fill 16-lane vectors; few channels would mostly compute padding lanes.
  return active_isa() == Isa::Avx512 && p.groups == 1 && (p.c_out % 16 == 0 || p.c_out >= 48);
#else
  (void)p;
  return false;
#endif
}

// Pointwise layers with few input channels keep their plain weights too, after the direct layout:
// over many output pixels the implicit GEMM runs them faster. With K = C_in <= 64 the direct
// kernel's tiles are short (64 FMA steps between a 28-vector store) and its blocked output takes a
// transposing pass of its own, while the GEMM writes NCHW rows at once. Measured on the Zen 4 VM,
// direct / implicit time at >= 3136 output pixels: 64 -> 256 1x1 (ResNet-50 layer1) 1.11-1.46 on
// one thread and 1.11-1.19 on two; 64 -> 128 1x1 stride 2 (ResNet-18 layer2.0 downsample) at
// batch 4 / 8 / 16 / 32: 0.95 / 1.11 / 1.38 / 1.08 on one thread, 0.99 / 0.99 / 1.06 / 1.37 on two.
// Fewer pixels, or more input channels (128 and up), favour the direct kernel.
constexpr int64_t kImplicitMaxK = 64;
constexpr int64_t kImplicitMinPixels = 3136;

bool keeps_plain_copy(const Conv2dParams& p, bool direct) {
  return direct && p.kh == 1 && p.kw == 1 && p.c_in / p.groups <= kImplicitMaxK;
}

int64_t packed_body(const Conv2dParams& p, bool direct) {
#if !defined(KINTSUGI_NO_X86_KERNELS)
  if (direct) return conv_internal::direct_packed_size(p) + (keeps_plain_copy(p, direct) ? p.weight_size() : 0);
#else
  (void)direct;
#endif
  return p.weight_size();
}

void header_words(const Conv2dParams& p, int32_t layout, int32_t out[kPackedHeader], int32_t nr = 0) {
  std::memset(out, 0, sizeof(int32_t) * kPackedHeader);
  out[0] = layout;
  out[1] = int32_t(p.c_out);
  out[2] = int32_t(p.c_in / p.groups);
  out[3] = int32_t(p.kh);
  out[4] = int32_t(p.kw);
  out[5] = int32_t(p.groups);
  out[6] = nr;  // NHWC: the sgemm panel width
  out[7] = layout == kPackedDirect16 && keeps_plain_copy(p, true);  // plain weights after the direct ones
}

const char* layout_name(int32_t layout) { return layout == kPackedNhwc ? "NHWC" : "NCHW"; }

}  // namespace

int64_t conv2d_packed_weights_size(const Conv2dParams& p) {
  check_conv2d(p);
  if (p.layout == ConvLayout::Nhwc) return kPackedHeader + conv_internal::nhwc_packed_size(p, packed_b_panel_width());
  return kPackedHeader + packed_body(p, use_direct(p));
}

void conv2d_pack_weights(const Conv2dParams& p, const float* w, float* packed) {
  check_conv2d(p);
  if (p.layout == ConvLayout::Nhwc) {
    const int nr = packed_b_panel_width();
    int32_t h[kPackedHeader];
    header_words(p, kPackedNhwc, h, nr);
    std::memcpy(packed, h, sizeof h);
    conv_internal::nhwc_pack_weights(p, w, nr, packed + kPackedHeader);
    return;
  }
  const bool direct = use_direct(p);
  int32_t h[kPackedHeader];
  header_words(p, direct ? kPackedDirect16 : kPackedRaw, h);
  std::memcpy(packed, h, sizeof h);
#if !defined(KINTSUGI_NO_X86_KERNELS)
  if (direct) {
    conv_internal::direct_pack_weights_avx512(p, w, packed + kPackedHeader);
    if (keeps_plain_copy(p, direct))
      std::memcpy(packed + kPackedHeader + conv_internal::direct_packed_size(p), w, size_t(p.weight_size()) * sizeof(float));
    return;
  }
#endif
  std::memcpy(packed + kPackedHeader, w, size_t(p.weight_size()) * sizeof(float));
}

void conv2d_forward_packed(const Conv2dParams& p, const float* x, const float* packed, const float* bias, float* y) {
  check_conv2d(p);
  int32_t h[kPackedHeader], want[kPackedHeader];
  std::memcpy(h, packed, sizeof h);
  const bool nhwc = p.layout == ConvLayout::Nhwc;
  // NHWC buffers carry their panel width (any multiple of 16 works with every ISA's kernels).
  const int32_t nr = nhwc && h[0] == kPackedNhwc && h[6] > 0 && h[6] % 16 == 0 && h[6] <= 1024 ? h[6] : 0;
  header_words(p, h[0], want, nr);
  const bool layout_ok = nhwc ? h[0] == kPackedNhwc : (h[0] == kPackedRaw || h[0] == kPackedDirect16);
  if (!layout_ok || std::memcmp(h, want, sizeof h) != 0)
    throw_expected(ErrorKind::Range,
                   std::string(nhwc ? "NHWC" : "NCHW") + " weights packed for [" + str(p.c_out) + ", " + str(p.c_in / p.groups) +
                       ", " + str(p.kh) + ", " + str(p.kw) + "] with groups " + str(p.groups),
                   "packed",
                   std::string(layout_name(h[0])) + " weights packed for [" + str(h[1]) + ", " + str(h[2]) + ", " + str(h[3]) +
                       ", " + str(h[4]) + "] with groups " + str(h[5]));
  if (p.n == 0) return;
  const float* body = packed + kPackedHeader;
  detail::translate_bad_alloc("conv2d_forward_packed", [&] {
    if (nhwc) {
      conv_internal::nhwc_forward(p, x, nullptr, body, nr, bias, y);
      return;
    }
#if !defined(KINTSUGI_NO_X86_KERNELS)
    // The direct layout was made where AVX-512 is present; a later ISA limit does not change it.
    if (h[0] == kPackedDirect16) {
      if (h[7] == 1 && p.n * p.out_h() * p.out_w() >= kImplicitMinPixels) {
        forward_impl(p, x, body + conv_internal::direct_packed_size(p), bias, y);  // see keeps_plain_copy
        return;
      }
      conv_internal::direct_forward_avx512(p, x, body, bias, y);
      return;
    }
#endif
    forward_impl(p, x, body, bias, y);
  });
}

}  // namespace kintsugi
