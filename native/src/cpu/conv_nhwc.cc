// 2-D convolution on NHWC activations: x [N, H, W, C], y [N, OH, OW, C_out], weights
// [C_out, C/groups, KH, KW] as in NCHW.
//
// Forward is one GEMM per group, Y_g[P x kg] = col_g[P x K] . W'_g[K x kg], over the P = N*OH*OW
// output pixels, with the reduction K = kh*kw*cg ordered (i, j, c): a row of col is kh*kw runs of
// cg contiguous channels (one run of kw*C floats per kernel row when groups == 1 and dilation_w
// == 1), and a 1x1 stride-1 layer needs no col at all (x is already [P x C], read in place with
// lda = C). W' is the weights reordered into sgemm's packed panel format (once per call, or once
// for good through conv2d_pack_weights). Rows run in blocks: each task builds its block of col in
// a thread-local, grow-only scratch sized to stay in L2, multiplies it into the output block (ldc
// = C_out, so Y is written in place, group slices by offset) and adds the bias while the block is
// hot. Depthwise layers (one input and one output channel per group) take direct loops over
// channels, which are contiguous in this layout.
//
// Backward: dX by dcol = dY_g . W'_g^T and col2im accumulation (dY_g . W_g straight into dX for
// 1x1 stride 1), dW'_g = dY_g^T . col_g summed over row blocks, then reordered to the weight
// layout; db the column sums of dY.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "kernels_internal.h"
#include "kintsugi/conv.h"
#include "kintsugi/cpu.h"
#include "kintsugi/gemm.h"
#include "kintsugi/threadpool.h"

namespace kintsugi {
namespace conv_internal {
namespace {

// t_col: blocks of col / dcol (every thread); t_weights: reordered or packed weights and the
// reordered dW (the calling thread only).
thread_local ScratchBuffer t_col, t_weights, t_dw, t_weights_col, t_reorder;

// One NHWC problem's sizes.
struct Shape {
  Geometry g;
  int64_t rows;  // P = n * oh * ow
  int64_t k;     // K = kh * kw * cg, the GEMM reduction of one group
  bool direct_depthwise;
};

Shape shape_of(const Conv2dParams& p) {
  Shape s;
  s.g = geometry(p);
  s.rows = p.n * s.g.ohw;
  s.k = s.g.kk * s.g.cg;
  s.direct_depthwise = s.g.cg == 1 && s.g.kg == 1;
  return s;
}

// Rows [r0, r1) of group grp's column matrix: col[(r - r0) * K + (i * kw + j) * cg + c] =
// x[img, oh*sh - ph + i*dh, ow*sw - pw + j*dw, grp*cg + c], zero outside the image.
void im2col_nhwc(const Conv2dParams& p, const Shape& s, const float* x, int64_t grp, int64_t r0, int64_t r1, float* col) {
  const Geometry& g = s.g;
  const int64_t cg = g.cg, C = p.c_in;
  const bool runs = p.groups == 1 && p.dilation_w == 1;  // a kernel row is kw*C contiguous floats
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t img = r / g.ohw, q = r % g.ohw, oh = q / g.ow, ow = q % g.ow;
    float* d = col + (r - r0) * s.k;
    const float* xi = x + img * p.h * p.w * C + grp * cg;
    const int64_t iw0 = ow * p.stride_w - p.pad_w;
    for (int64_t i = 0; i < p.kh; ++i, d += p.kw * cg) {
      const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dilation_h;
      if (ih < 0 || ih >= p.h) {
        std::memset(d, 0, size_t(p.kw * cg) * sizeof(float));
        continue;
      }
      const float* xr = xi + ih * p.w * C;
      if (runs) {
        const int64_t jlo = std::max<int64_t>(0, -iw0), jhi = std::min<int64_t>(p.kw, p.w - iw0);
        if (jhi <= jlo) {
          std::memset(d, 0, size_t(p.kw * cg) * sizeof(float));
          continue;
        }
        if (jlo > 0) std::memset(d, 0, size_t(jlo * cg) * sizeof(float));
        std::memcpy(d + jlo * cg, xr + (iw0 + jlo) * C, size_t((jhi - jlo) * cg) * sizeof(float));
        if (jhi < p.kw) std::memset(d + jhi * cg, 0, size_t((p.kw - jhi) * cg) * sizeof(float));
        continue;
      }
      for (int64_t j = 0; j < p.kw; ++j) {
        const int64_t iw = iw0 + j * p.dilation_w;
        if (iw < 0 || iw >= p.w)
          std::memset(d + j * cg, 0, size_t(cg) * sizeof(float));
        else
          std::memcpy(d + j * cg, xr + iw * C, size_t(cg) * sizeof(float));
      }
    }
  }
}

// The adjoint of im2col_nhwc for channels [c0, c1) of the group: dx[...] += dcol[...].
void col2im_nhwc(const Conv2dParams& p, const Shape& s, const float* col, int64_t grp, int64_t r0, int64_t r1, int64_t c0,
                 int64_t c1, float* dx) {
  const Geometry& g = s.g;
  const int64_t cg = g.cg, C = p.c_in, nc = c1 - c0;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t img = r / g.ohw, q = r % g.ohw, oh = q / g.ow, ow = q % g.ow;
    const float* srow = col + (r - r0) * s.k + c0;
    float* xi = dx + img * p.h * p.w * C + grp * cg + c0;
    for (int64_t i = 0; i < p.kh; ++i) {
      const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dilation_h;
      if (ih < 0 || ih >= p.h) continue;
      for (int64_t j = 0; j < p.kw; ++j) {
        const int64_t iw = ow * p.stride_w - p.pad_w + j * p.dilation_w;
        if (iw < 0 || iw >= p.w) continue;
        const float* sv = srow + (i * p.kw + j) * cg;
        float* dv = xi + (ih * p.w + iw) * C;
        for (int64_t c = 0; c < nc; ++c) dv[c] += sv[c];
      }
    }
  }
}

// w (oc, c, i, j) -> wr (oc, i, j, c): row oc of group grp is W'_g's column oc - grp*kg.
void reorder_weights(const Conv2dParams& p, const Shape& s, const float* w, float* wr) {
  const int64_t cg = s.g.cg, kk = s.g.kk;
  parallel_for(p.c_out, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, s.k)), [&](int64_t o0, int64_t o1) {
    for (int64_t oc = o0; oc < o1; ++oc)
      for (int64_t c = 0; c < cg; ++c)
        for (int64_t t = 0; t < kk; ++t) wr[oc * s.k + t * cg + c] = w[(oc * cg + c) * kk + t];
  });
}

// The packed body: depthwise, wd[(i*kw + j) * C + c]; otherwise per group the sgemm panels of
// W'_g (K x kg), panel width nr.
int64_t group_panels(const Shape& s, int nr) { return packed_b_floats(s.k, s.g.kg, nr); }

void pack_body(const Conv2dParams& p, const Shape& s, const float* w, int nr, float* dst) {
  const int64_t kk = s.g.kk, kg = s.g.kg;
  if (s.direct_depthwise) {
    for (int64_t c = 0; c < p.c_out; ++c)
      for (int64_t t = 0; t < kk; ++t) dst[t * p.c_out + c] = w[c * kk + t];
    return;
  }
  // Reorder to (oc, i, j, c) with reads along each filter, then transpose into panels with
  // sgemm's packer (reading the filters with a stride of cg*kh*kw floats per output column
  // directly would miss the cache on every element).
  float* wr = t_reorder.get(size_t(p.weight_size()));
  reorder_weights(p, s, w, wr);
  const int64_t gstride = group_panels(s, nr);
  for (int64_t grp = 0; grp < p.groups; ++grp)
    pack_b_into(Layout::RowMajor, Transpose::Yes, s.k, kg, wr + grp * kg * s.k, s.k, nr, dst + grp * gstride);
}

// ---- depthwise: one channel per group, channels contiguous, direct loops ----

void depthwise_forward(const Conv2dParams& p, const Shape& s, const float* x, const float* wd, const float* bias, float* y) {
  const Geometry& g = s.g;
  const int64_t C = p.c_in;
  const int64_t out_rows = p.n * g.oh;
  parallel_for(out_rows, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, g.ow * C * g.kk)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t img = t / g.oh, oh = t % g.oh;
      const float* xi = x + img * p.h * p.w * C;
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        float* yv = y + (t * g.ow + ow) * C;
        if (bias)
          std::memcpy(yv, bias, size_t(C) * sizeof(float));
        else
          std::memset(yv, 0, size_t(C) * sizeof(float));
        for (int64_t i = 0; i < p.kh; ++i) {
          const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dilation_h;
          if (ih < 0 || ih >= p.h) continue;
          for (int64_t j = 0; j < p.kw; ++j) {
            const int64_t iw = ow * p.stride_w - p.pad_w + j * p.dilation_w;
            if (iw < 0 || iw >= p.w) continue;
            const float* xv = xi + (ih * p.w + iw) * C;
            const float* wv = wd + (i * p.kw + j) * C;
            for (int64_t c = 0; c < C; ++c) yv[c] += wv[c] * xv[c];
          }
        }
      }
    }
  });
}

// Gather form (each dx pixel sums its own taps), so threads own disjoint input rows.
void depthwise_backward_data(const Conv2dParams& p, const Shape& s, const float* dy, const float* wd, float* dx) {
  const Geometry& g = s.g;
  const int64_t C = p.c_in;
  parallel_for(p.n * p.h, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, p.w * C * g.kk)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t img = t / p.h, ih = t % p.h;
      const float* dyi = dy + img * g.ohw * C;
      for (int64_t iw = 0; iw < p.w; ++iw) {
        float* dv = dx + (t * p.w + iw) * C;
        std::memset(dv, 0, size_t(C) * sizeof(float));
        for (int64_t i = 0; i < p.kh; ++i) {
          const int64_t th = ih + p.pad_h - i * p.dilation_h;
          if (th < 0 || th % p.stride_h != 0 || th / p.stride_h >= g.oh) continue;
          const int64_t oh = th / p.stride_h;
          for (int64_t j = 0; j < p.kw; ++j) {
            const int64_t tw = iw + p.pad_w - j * p.dilation_w;
            if (tw < 0 || tw % p.stride_w != 0 || tw / p.stride_w >= g.ow) continue;
            const float* dyv = dyi + (oh * g.ow + tw / p.stride_w) * C;
            const float* wv = wd + (i * p.kw + j) * C;
            for (int64_t c = 0; c < C; ++c) dv[c] += wv[c] * dyv[c];
          }
        }
      }
    }
  });
}

// dw[c, i, j] = sum over output pixels of x[.., c] * dy[.., c]; threads own channel blocks, with
// double accumulators per tap and channel.
void depthwise_backward_weight(const Conv2dParams& p, const Shape& s, const float* x, const float* dy, float* dw) {
  const Geometry& g = s.g;
  const int64_t C = p.c_in, kk = g.kk;
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (C + kBlock - 1) / kBlock;
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<double> acc(size_t(kk * kBlock));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t c0 = b * kBlock, nc = std::min(kBlock, C - c0);
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t img = 0; img < p.n; ++img)
        for (int64_t oh = 0; oh < g.oh; ++oh)
          for (int64_t ow = 0; ow < g.ow; ++ow) {
            const float* dyv = dy + ((img * g.oh + oh) * g.ow + ow) * C + c0;
            for (int64_t i = 0; i < p.kh; ++i) {
              const int64_t ih = oh * p.stride_h - p.pad_h + i * p.dilation_h;
              if (ih < 0 || ih >= p.h) continue;
              for (int64_t j = 0; j < p.kw; ++j) {
                const int64_t iw = ow * p.stride_w - p.pad_w + j * p.dilation_w;
                if (iw < 0 || iw >= p.w) continue;
                const float* xv = x + ((img * p.h + ih) * p.w + iw) * C + c0;
                double* a = acc.data() + (i * p.kw + j) * kBlock;
                for (int64_t c = 0; c < nc; ++c) a[c] += double(xv[c]) * double(dyv[c]);
              }
            }
          }
      for (int64_t c = 0; c < nc; ++c)
        for (int64_t t = 0; t < kk; ++t) dw[(c0 + c) * kk + t] = float(acc[size_t(t * kBlock + c)]);
    }
  });
}

// Column block sizes: a block of col stays about this size.
constexpr int64_t kForwardColBytes = int64_t(256) << 10;   // per task, L2-resident
constexpr int64_t kBackwardColBytes = int64_t(4) << 20;     // one block at a time, sgemm threads inside

}  // namespace

int64_t nhwc_packed_size(const Conv2dParams& p, int nr) {
  const Shape s = shape_of(p);
  if (s.direct_depthwise) return s.g.kk * p.c_out;
  return p.groups * group_panels(s, nr);
}

void nhwc_pack_weights(const Conv2dParams& p, const float* w, int nr, float* packed) { pack_body(p, shape_of(p), w, nr, packed); }

void nhwc_forward(const Conv2dParams& p, const float* x, const float* w, const float* panels, int nr, const float* bias,
                  float* y) {
  if (p.n == 0) return;
  const Shape s = shape_of(p);
  const Geometry& g = s.g;
  if (!panels) {
    nr = packed_b_panel_width();
    float* buf = t_weights.get(size_t(nhwc_packed_size(p, nr)));
    pack_body(p, s, w, nr, buf);
    panels = buf;
  }
  if (s.direct_depthwise) {
    depthwise_forward(p, s, x, panels, bias, y);
    return;
  }
  const int threads = num_threads();
  const int64_t mr = 6;
  // Rows per task: the block of col in about kForwardColBytes, a multiple of the register tile.
  int64_t mb = g.pointwise ? 384 : std::clamp<int64_t>(kForwardColBytes / (4 * s.k) / mr * mr, 4 * mr, 384);
  // Every row block reads all of a group's weights and every column task builds its own col:
  // with more output channels than rows (late layers at small batch) the weights are the larger
  // stream, so the rows stay in one block and the threads split the channels instead.
  const bool weights_heavy = g.kg > s.rows;
  if (weights_heavy) mb = std::min<int64_t>(s.rows, 384);
  int64_t row_blocks = (s.rows + mb - 1) / mb;
  if (threads > 1 && !weights_heavy && row_blocks * p.groups < 2 * threads) {
    // Few blocks for the threads: smaller blocks (down to four register tiles) first.
    const int64_t want = (2 * threads + p.groups - 1) / p.groups;
    mb = std::max<int64_t>(4 * mr, (s.rows + want - 1) / want);
    row_blocks = (s.rows + mb - 1) / mb;
  }
  // Still too few: split the output channels by whole panels too.
  const int64_t panels_per_group = (g.kg + nr - 1) / nr;
  int64_t col_tasks = 1;
  if (threads > 1 && row_blocks * p.groups < 2 * threads)
    col_tasks = std::min<int64_t>(panels_per_group, (2 * threads + row_blocks * p.groups - 1) / (row_blocks * p.groups));
  const int64_t panels_per_task = (panels_per_group + col_tasks - 1) / col_tasks;
  col_tasks = (panels_per_group + panels_per_task - 1) / panels_per_task;
  const int64_t gstride = group_panels(s, nr);
  const int64_t tasks = row_blocks * p.groups * col_tasks;
  // Channels split over tasks: col is built once for every task (when it is not too large)
  // rather than once per task.
  const float* shared_col = nullptr;
  if (col_tasks > 1 && !g.pointwise && p.groups * s.rows * s.k <= (int64_t(8) << 20) / 4) {
    float* c = t_weights_col.get(size_t(p.groups * s.rows * s.k));
    parallel_for(p.groups * s.rows, std::max<int64_t>(1, 16384 / s.k), [&](int64_t a, int64_t b) {
      for (int64_t u = a; u < b;) {
        const int64_t grp = u / s.rows, r0 = u % s.rows, r1 = std::min(s.rows, r0 + (b - u));
        im2col_nhwc(p, s, x, grp, r0, r1, c + (grp * s.rows + r0) * s.k);
        u += r1 - r0;
      }
    });
    shared_col = c;
  }

  auto run_task = [&](int64_t task) {
    const int64_t ct = task % col_tasks, rest = task / col_tasks;
    const int64_t grp = rest % p.groups, rb = rest / p.groups;
    const int64_t r0 = rb * mb, r1 = std::min(s.rows, r0 + mb);
    const int64_t j0 = ct * panels_per_task * nr, j1 = std::min(g.kg, j0 + panels_per_task * nr);
    const float* a;
    int64_t lda;
    if (g.pointwise) {
      a = x + r0 * p.c_in + grp * g.cg;
      lda = p.c_in;
    } else if (shared_col) {
      a = shared_col + (grp * s.rows + r0) * s.k;
      lda = s.k;
    } else {
      float* col = t_col.get(size_t((r1 - r0) * s.k));
      im2col_nhwc(p, s, x, grp, r0, r1, col);
      a = col;
      lda = s.k;
    }
    float* yb = y + r0 * p.c_out + grp * g.kg + j0;
    const SgemmArgs args = row_major_args(r1 - r0, j1 - j0, s.k, a, lda, nullptr, 0, yb, p.c_out, 0.0f);
    sgemm_packed_panels(args, panels + grp * gstride + (j0 / nr) * s.k * nr, nr);
    if (bias) {
      const float* bb = bias + grp * g.kg + j0;
      for (int64_t r = 0; r < r1 - r0; ++r) {
        float* yr = yb + r * p.c_out;
        for (int64_t c = 0; c < j1 - j0; ++c) yr[c] += bb[c];
      }
    }
  };
  parallel_tasks(threads, tasks, [&](int64_t t) { run_task(t); });
}

void nhwc_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx) {
  if (p.n == 0) return;
  const Shape s = shape_of(p);
  const Geometry& g = s.g;
  if (s.direct_depthwise) {
    float* wd = t_weights.get(size_t(g.kk * p.c_out));
    pack_body(p, s, w, 0, wd);
    depthwise_backward_data(p, s, dy, wd, dx);
    return;
  }
  // wr (oc, i, j, c): group grp's rows are W'_g^T, kg x K row-major.
  float* wr = t_weights.get(size_t(p.weight_size()));
  reorder_weights(p, s, w, wr);
  if (g.pointwise) {
    // dX_g (P x cg) = dY_g (P x kg) . W_g (kg x cg), written in place.
    for (int64_t grp = 0; grp < p.groups; ++grp)
      sgemm(row_major_args(s.rows, g.cg, g.kg, dy + grp * g.kg, p.c_out, wr + grp * g.kg * s.k, s.k, dx + grp * g.cg, p.c_in, 0.0f));
    return;
  }
  const int64_t total = p.n * p.h * p.w * p.c_in;
  parallel_for(total, 1 << 16, [&](int64_t a, int64_t b) { std::fill(dx + a, dx + b, 0.0f); });
  const int64_t mb = std::clamp<int64_t>(kBackwardColBytes / (4 * s.k), 16, s.rows);
  float* col = t_col.get(size_t(mb * s.k));
  for (int64_t r0 = 0; r0 < s.rows; r0 += mb) {
    const int64_t r1 = std::min(s.rows, r0 + mb);
    for (int64_t grp = 0; grp < p.groups; ++grp) {
      // dcol (rows x K) = dY_g (rows x kg) . W'_g^T (kg x K)
      sgemm(row_major_args(r1 - r0, s.k, g.kg, dy + r0 * p.c_out + grp * g.kg, p.c_out, wr + grp * g.kg * s.k, s.k, col, s.k, 0.0f));
      // Threads own channel slices (disjoint dx elements); a single slice when the group is narrow.
      parallel_for(g.cg, 16, [&](int64_t c0, int64_t c1) { col2im_nhwc(p, s, col, grp, r0, r1, c0, c1, dx); });
    }
  }
}

void nhwc_backward_weight(const Conv2dParams& p, const float* x, const float* dy, float* dw, float* db) {
  const Shape s = shape_of(p);
  const Geometry& g = s.g;
  if (db) {
    // Column sums of dY (P x C_out): threads own channel blocks, double accumulators.
    constexpr int64_t kBlock = 256;
    parallel_for((p.c_out + kBlock - 1) / kBlock, 1, [&](int64_t b0, int64_t b1) {
      double acc[kBlock];
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t c0 = b * kBlock, nc = std::min(kBlock, p.c_out - c0);
        std::fill(acc, acc + nc, 0.0);
        for (int64_t r = 0; r < s.rows; ++r) {
          const float* row = dy + r * p.c_out + c0;
          for (int64_t c = 0; c < nc; ++c) acc[c] += double(row[c]);
        }
        for (int64_t c = 0; c < nc; ++c) db[c0 + c] = float(acc[c]);
      }
    });
  }
  if (p.n == 0) {
    std::fill(dw, dw + p.weight_size(), 0.0f);
    return;
  }
  if (s.direct_depthwise) {
    depthwise_backward_weight(p, s, x, dy, dw);
    return;
  }
  // dWr_g (kg x K, the (oc, i, j, c) order) = sum over row blocks of dY_g^T (kg x rows) . col_g (rows x K).
  float* dwr = t_dw.get(size_t(p.weight_size()));
  if (g.pointwise) {
    for (int64_t grp = 0; grp < p.groups; ++grp) {
      SgemmArgs a = row_major_args(g.kg, s.k, s.rows, dy + grp * g.kg, p.c_out, x + grp * g.cg, p.c_in, dwr + grp * g.kg * s.k, s.k, 0.0f);
      a.trans_a = Transpose::Yes;
      sgemm(a);
    }
  } else {
    const int64_t mb = std::clamp<int64_t>(kBackwardColBytes / (4 * s.k), 16, s.rows);
    float* col = t_col.get(size_t(mb * s.k));
    for (int64_t r0 = 0; r0 < s.rows; r0 += mb) {
      const int64_t r1 = std::min(s.rows, r0 + mb);
      for (int64_t grp = 0; grp < p.groups; ++grp) {
        parallel_for(r1 - r0, std::max<int64_t>(1, 16384 / s.k),
                     [&](int64_t a, int64_t b) { im2col_nhwc(p, s, x, grp, r0 + a, r0 + b, col + a * s.k); });
        SgemmArgs a = row_major_args(g.kg, s.k, r1 - r0, dy + r0 * p.c_out + grp * g.kg, p.c_out, col, s.k, dwr + grp * g.kg * s.k,
                                s.k, r0 == 0 ? 0.0f : 1.0f);
        a.trans_a = Transpose::Yes;
        sgemm(a);
      }
    }
  }
  // (oc, i, j, c) -> (oc, c, i, j)
  const int64_t cg = g.cg, kk = g.kk;
  parallel_for(p.c_out, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, s.k)), [&](int64_t o0, int64_t o1) {
    for (int64_t oc = o0; oc < o1; ++oc)
      for (int64_t c = 0; c < cg; ++c)
        for (int64_t t = 0; t < kk; ++t) dw[(oc * cg + c) * kk + t] = dwr[oc * s.k + t * cg + c];
  });
}

}  // namespace conv_internal
}  // namespace kintsugi
