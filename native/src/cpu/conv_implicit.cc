// Implicit-GEMM convolution forward (NCHW): Y_g[kg x P] = W_g[kg x K] . B[K x P] per image and
// group, with K = cg*kh*kw reduction rows (c, i, j) and P = oh*ow output pixels, without ever
// materialising the column matrix B.
//
// The loops are those of a BLIS sgemm (gemm.cc) with the packing of B replaced by a gather
// straight from the input image: a task owns a block of output pixels (or, when the planes are
// small and the batch large, a block of "virtual" columns running across images) and a range of
// output channels; for each KC slice of the reduction it packs its KC x NC block of B into
// NR-column micro-panels (each row a few contiguous or strided runs of an input row, zeros in
// the padding), then walks MC-row blocks of the weights, read in place (A(m, k) at
// w[m * K + k]), over those panels with the active ISA's register-tile micro-kernel. The C tile
// is the output itself: row m of a tile is output channel m, its columns consecutive pixels of
// that channel's plane (ldc = P); tiles that straddle two images go through a small scratch
// block and are scattered afterwards. Bias is added when a task's last KC slice is done.
//
// Threads take tasks from a shared counter (dynamic: robust on a shared, noisy machine); a
// problem with few pixel blocks is also split over output channels so that batch 1 uses every
// thread.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "gemm_internal.h"
#include "kernels_internal.h"
#include "kintsugi/conv.h"
#include "kintsugi/cpu.h"
#include "kintsugi/threadpool.h"

namespace kintsugi {
namespace conv_internal {
namespace {

using gemm_internal::KernelSet;
using gemm_internal::MicroTile;

int64_t round_up(int64_t v, int64_t unit) { return (v + unit - 1) / unit * unit; }

thread_local ScratchBuffer t_bpack, t_cblock;

using Segment = PanelSegment;

struct Plan {
  const Conv2dParams* p;
  const KernelSet* ks;
  Geometry geo;           // geo.ohw: the GEMM N per image (output pixels), geo.krows: its K
  int mr, nr;
  int64_t kc, mc, nc;     // reduction slice, row block, pixel block (multiple of nr)
  bool virtual_cols;      // pixel blocks run across images (small planes, several images)
  int64_t col_blocks;     // per (image, group), or per group when virtual_cols
  int64_t m_tasks, m_task;  // output-channel split
  const int64_t* lo_w;  // valid ow range per kernel column j
  const int64_t* hi_w;
  void (*pack)(const PackPanelJob&);
};

// Portable packing (see PackPanelJob).
void pack_panel_portable(const PackPanelJob& jb) {
  const int nr = jb.nr;
  const int64_t kk = jb.kh * jb.kw;
  int64_t c = jb.k0 / kk, r = jb.k0 % kk;
  int64_t i = r / jb.kw, j = r % jb.kw;
  const int64_t sw = jb.stride_w;
  const int64_t ahead_planes = pack_prefetch_planes(kk);
  for (int64_t kp = 0; kp < jb.kc; ++kp) {
    float* drow = jb.dst + kp * nr;
    const int64_t off_h = i * jb.dil_h - jb.pad_h, off_w = j * jb.dil_w - jb.pad_w;
    const int64_t lo = jb.lo_w[j], hi = jb.hi_w[j];
    const bool prefetch_ahead = j == 0 && kp + ahead_planes * kk < jb.kc;
    for (int s = 0; s < jb.nseg; ++s) {
      const Segment& sg = jb.segs[s];
      float* d = drow + sg.jj;
      const int64_t ih = sg.oh * jb.stride_h + off_h;
      if (ih < 0 || ih >= jb.h) {
        std::memset(d, 0, size_t(sg.len) * sizeof(float));
        continue;
      }
      const float* row = jb.x + sg.img * jb.img_stride + c * jb.plane + ih * jb.w;
      if (prefetch_ahead) {
        const char* ahead = reinterpret_cast<const char*>(row + ahead_planes * jb.plane + sg.ow0 * sw + off_w);
        for (int64_t off = 0; off < int64_t(sg.len) * sw * int64_t(sizeof(float)); off += 64) __builtin_prefetch(ahead + off, 0, 3);
      }
      const int64_t a = std::min<int64_t>(std::max(lo, sg.ow0), sg.ow0 + sg.len) - sg.ow0;
      const int64_t b = std::max<int64_t>(std::min(hi, sg.ow0 + sg.len) - sg.ow0, a);
      if (a > 0) std::memset(d, 0, size_t(a) * sizeof(float));
      const float* src = row + sg.ow0 * sw + off_w;
      if (sw == 1) {
        if (b > a) std::memcpy(d + a, src + a, size_t(b - a) * sizeof(float));
      } else if (sw == 2) {
        for (int64_t q = a; q < b; ++q) d[q] = src[2 * q];
      } else {
        for (int64_t q = a; q < b; ++q) d[q] = src[q * sw];
      }
      if (sg.len > b) std::memset(d + b, 0, size_t(sg.len - b) * sizeof(float));
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

// Splits [0, pix) of image-local (or virtual) columns starting at column j0 into segments.
int make_segments(const Plan& pl, int64_t img0, int64_t j0, int cols, Segment* segs) {
  int n = 0, jj = 0;
  int64_t img = img0, q = j0;
  if (pl.virtual_cols) {
    img = j0 / pl.geo.ohw;
    q = j0 % pl.geo.ohw;
  }
  while (jj < cols) {
    if (q == pl.geo.ohw) {
      ++img;
      q = 0;
    }
    const int64_t oh = q / pl.geo.ow, ow0 = q % pl.geo.ow;
    const int len = int(std::min<int64_t>(pl.geo.ow - ow0, cols - jj));
    segs[n++] = Segment{img, oh, ow0, len, jj};
    jj += len;
    q += len;
  }
  return n;
}

void run_task(const Plan& pl, const float* x, const float* w, const float* bias, float* y, int64_t task) {
  const Conv2dParams& p = *pl.p;
  const KernelSet& ks = *pl.ks;
  const int64_t mt = task % pl.m_tasks;
  int64_t rest = task / pl.m_tasks;
  const int64_t cb = rest % pl.col_blocks;
  rest /= pl.col_blocks;
  const int64_t g = rest % p.groups;
  const int64_t img = pl.virtual_cols ? 0 : rest / p.groups;

  const int64_t total_cols = pl.virtual_cols ? p.n * pl.geo.ohw : pl.geo.ohw;
  const int64_t j0 = cb * pl.nc, ncols = std::min(pl.nc, total_cols - j0);
  const int64_t m0 = mt * pl.m_task, m1 = std::min(pl.geo.kg, m0 + pl.m_task);
  if (m0 >= m1) return;
  const int nr = pl.nr, mr = pl.mr;
  // A few columns past a multiple of 16 (a 7 x 7 plane: 48 + 1) would cost a whole vector per
  // row in the register tiles; they run as dot products along K instead (their B columns
  // transposed to rows), which costs about one FMA per 16 of theirs.
  const int tail = (ks.dot && ncols > 16 && ncols % 16 <= 4) ? int(ncols % 16) : 0;
  const int64_t main_cols = ncols - tail;
  const int64_t panels = (main_cols + nr - 1) / nr;
  const int64_t kc_max = std::min(pl.kc, pl.geo.krows);
  // Panels, the tail's 16-wide panel and its transpose (+ the AVX-512 packer's spill).
  float* bbuf = t_bpack.get(size_t(panels * kc_max * nr + (tail ? kc_max * (16 + tail) : 0) + 16));
  float* tail_panel = bbuf + panels * kc_max * nr;
  float* tail_rows = tail_panel + kc_max * 16;

  // Direct C when the block lies in one image's planes; a scratch block otherwise.
  const bool direct_c = !pl.virtual_cols || (j0 / pl.geo.ohw == (j0 + ncols - 1) / pl.geo.ohw);
  float* cbase;
  int64_t ldc;
  if (direct_c) {
    const int64_t im = pl.virtual_cols ? j0 / pl.geo.ohw : img;
    const int64_t q0 = pl.virtual_cols ? j0 % pl.geo.ohw : j0;
    cbase = y + (im * p.c_out + g * pl.geo.kg) * pl.geo.ohw + q0;
    ldc = pl.geo.ohw;
  } else {
    ldc = round_up(ncols, 16);
    cbase = t_cblock.get(size_t((m1 - m0) * ldc)) - m0 * ldc;
  }

  Segment segs[260];
  PackPanelJob job;
  job.x = x + g * pl.geo.cg * pl.geo.hw;
  job.img_stride = p.c_in * pl.geo.hw;
  job.plane = pl.geo.hw;
  job.h = p.h;
  job.w = p.w;
  job.kh = p.kh;
  job.kw = p.kw;
  job.stride_h = p.stride_h;
  job.stride_w = p.stride_w;
  job.dil_h = p.dilation_h;
  job.dil_w = p.dilation_w;
  job.pad_h = p.pad_h;
  job.pad_w = p.pad_w;
  job.lo_w = pl.lo_w;
  job.hi_w = pl.hi_w;
  job.segs = segs;
  job.nr = nr;
  const float* wg = w + g * pl.geo.kg * pl.geo.krows;
  MicroTile t;
  t.a_stride = 1;
  t.a_row_stride = pl.geo.krows;
  t.b_stride = nr;
  t.alpha = 1.0f;
  for (int64_t k0 = 0; k0 < pl.geo.krows; k0 += pl.kc) {
    const int64_t kc = std::min(pl.kc, pl.geo.krows - k0);
    for (int64_t q = 0; q < panels; ++q) {
      const int cols = int(std::min<int64_t>(nr, main_cols - q * nr));
      job.nseg = make_segments(pl, img, j0 + q * nr, cols, segs);
      job.k0 = k0;
      job.kc = kc;
      job.dst = bbuf + q * kc * nr;
      pl.pack(job);
    }
    if (tail) {
      job.nseg = make_segments(pl, img, j0 + main_cols, tail, segs);
      job.k0 = k0;
      job.kc = kc;
      job.nr = 16;
      job.dst = tail_panel;
      pl.pack(job);
      job.nr = nr;
      for (int jt = 0; jt < tail; ++jt)
        for (int64_t r = 0; r < kc; ++r) tail_rows[jt * kc + r] = tail_panel[r * 16 + jt];
    }
    t.k = kc;
    t.beta = k0 == 0 ? 0.0f : 1.0f;
    for (int64_t ic = m0; ic < m1; ic += pl.mc) {
      const int64_t ic1 = std::min(m1, ic + pl.mc);
      for (int64_t q = 0; q < panels; ++q) {
        t.nr = int(std::min<int64_t>(nr, main_cols - q * nr));
        t.b = bbuf + q * kc * nr;
        for (int64_t m = ic; m < ic1; m += mr) {
          t.mr = int(std::min<int64_t>(mr, ic1 - m));
          t.a = wg + m * pl.geo.krows + k0;
          if (q == 0) {
            // The weights stream from memory on their first use: fetch the next tile's rows
            // while this one computes (short rows far apart defeat the hardware prefetchers).
            const int64_t mn = std::min<int64_t>(m + mr, m1);
            const int64_t me = std::min<int64_t>(mn + mr, m1);
            for (int64_t r = mn; r < me; ++r) {
              const char* a = reinterpret_cast<const char*>(wg + r * pl.geo.krows + k0);
              for (int64_t off = 0; off < kc * 4; off += 64) __builtin_prefetch(a + off, 0, 2);
            }
          }
          t.c = cbase + m * ldc + q * nr;
          t.ldc = ldc;
          ks.micro(t);
        }
      }
      if (tail) {
        gemm_internal::DotTile d;
        d.k = kc;
        d.lda = pl.geo.krows;
        d.b = tail_rows;
        d.ldb = kc;
        d.ldc = ldc;
        d.nr = tail;
        d.alpha = 1.0f;
        d.beta = t.beta;
        for (int64_t m = ic; m < ic1; m += ks.dot_mr) {
          d.mr = int(std::min<int64_t>(ks.dot_mr, ic1 - m));
          d.a = wg + m * pl.geo.krows + k0;
          d.c = cbase + m * ldc + main_cols;
          ks.dot(d);
        }
      }
    }
  }

  if (direct_c) {
    if (bias) {
      for (int64_t m = m0; m < m1; ++m) {
        float* row = cbase + m * ldc;
        const float b = bias[g * pl.geo.kg + m];
        for (int64_t q = 0; q < ncols; ++q) row[q] += b;
      }
    }
    return;
  }
  // Scatter the block to the images' planes.
  for (int64_t m = m0; m < m1; ++m) {
    const float* src = cbase + m * ldc;
    const float b = bias ? bias[g * pl.geo.kg + m] : 0.0f;
    int64_t jj = 0;
    while (jj < ncols) {
      const int64_t jv = j0 + jj, im = jv / pl.geo.ohw, q = jv % pl.geo.ohw;
      const int64_t len = std::min(pl.geo.ohw - q, ncols - jj);
      float* dst = y + (im * p.c_out + g * pl.geo.kg + m) * pl.geo.ohw + q;
      for (int64_t e = 0; e < len; ++e) dst[e] = src[jj + e] + b;
      jj += len;
    }
  }
}

ImplicitGemmTuning g_tuning;

}  // namespace

void set_implicit_gemm_tuning(const ImplicitGemmTuning& t) { g_tuning = t; }
const ImplicitGemmTuning& implicit_gemm_tuning() { return g_tuning; }

void implicit_gemm_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y,
                           const ImplicitGemmTuning& tune) {
  Plan pl;
  pl.p = &p;
  pl.ks = &gemm_internal::active_kernels();
  pl.geo = geometry(p);
  pl.mr = tune.mr > 0 ? tune.mr : pl.ks->mr;
  pl.nr = tune.nr > 0 ? tune.nr : pl.ks->nr;
  int64_t lo_small[16], hi_small[16];
  std::vector<int64_t> lo_big, hi_big;
  int64_t *lo = lo_small, *hi = hi_small;
  if (p.kw > 16) {
    lo_big.resize(size_t(p.kw));
    hi_big.resize(size_t(p.kw));
    lo = lo_big.data();
    hi = hi_big.data();
  }
  // Valid output columns for kernel column j: input column ow*sw + off lies in [0, w).
  for (int64_t j = 0; j < p.kw; ++j) valid_range(j * p.dilation_w - p.pad_w, p.stride_w, p.w, pl.geo.ow, lo[j], hi[j]);
  pl.lo_w = lo;
  pl.hi_w = hi;
  pl.pack = &pack_panel_portable;
#if !defined(KINTSUGI_NO_X86_KERNELS)
  if (active_isa() == Isa::Avx512 && tune.portable_pack == 0) pl.pack = &pack_panel_avx512;
#endif

  const CpuInfo& ci = cpu_info();
  // KC: the KC x NR panel of B about a quarter of L2, as in sgemm's direct-A blocking; a K a
  // little over one slice is split evenly.
  int64_t kc = tune.kc > 0 ? tune.kc : std::min<int64_t>(1024, std::max<int64_t>(256, ci.l2_bytes / 4 / (int64_t(pl.nr) * 4)));
  if (pl.geo.krows > kc) {
    const int64_t slices = (pl.geo.krows + kc - 1) / kc;
    kc = (pl.geo.krows + slices - 1) / slices;
  } else {
    kc = pl.geo.krows;
  }
  pl.kc = kc;
  // MC: the MC x KC block of weights about three quarters of L2.
  pl.mc = tune.mc > 0 ? tune.mc : std::max<int64_t>(pl.mr, ci.l2_bytes * 3 / 4 / (kc * 4) / pl.mr * pl.mr);

  const int threads = num_threads();
  // Small planes with several images: pixel blocks run across images, so that the last
  // register tile of a plane is not mostly padding (7 x 7 = 49 pixels fill 77% of 64 lanes).
  pl.virtual_cols = p.n > 1 && pl.geo.ohw % pl.nr != 0 && pl.geo.ohw < 4 * pl.nr;
  if (tune.virtual_cols >= 0) pl.virtual_cols = p.n > 1 && tune.virtual_cols != 0;
  const int64_t cols = pl.virtual_cols ? p.n * pl.geo.ohw : pl.geo.ohw;
  int64_t nc = tune.nc > 0 ? round_up(tune.nc, pl.nr) : 256;
  nc = std::max<int64_t>(pl.nr, nc / pl.nr * pl.nr);
  // Not much more than one block's worth of pixels: even blocks.
  if (cols <= nc) {
    nc = round_up(cols, 1);
  } else {
    const int64_t blocks = (cols + nc - 1) / nc;
    nc = round_up((cols + blocks - 1) / blocks, pl.nr);
  }
  const int64_t units = (pl.virtual_cols ? 1 : p.n) * p.groups;
  if (threads > 1 && tune.nc <= 0 && units * ((cols + nc - 1) / nc) < 2 * threads) {
    // Few pixel blocks for the threads: smaller blocks (down to two register tiles) before the
    // output channels are split, since every channel block packs its own copy of B.
    const int64_t want = (2 * threads + units - 1) / units;
    nc = std::max<int64_t>(2 * pl.nr, round_up((cols + want - 1) / want, pl.nr));
    if (nc >= cols) nc = cols;
  }
  pl.nc = nc;
  pl.col_blocks = (cols + nc - 1) / nc;
  const int64_t outer = units * pl.col_blocks;
  // Too few pixel blocks to keep every thread busy: split the output channels too.
  pl.m_tasks = 1;
  if (threads > 1 && outer < 2 * threads) {
    const int64_t want = std::min<int64_t>((2 * threads + outer - 1) / outer, (pl.geo.kg + pl.mr - 1) / pl.mr);
    pl.m_tasks = std::max<int64_t>(1, want);
  }
  if (tune.m_tasks > 0) pl.m_tasks = tune.m_tasks;
  pl.m_task = round_up((pl.geo.kg + pl.m_tasks - 1) / pl.m_tasks, pl.mr);
  pl.m_tasks = (pl.geo.kg + pl.m_task - 1) / pl.m_task;
  const int64_t tasks = outer * pl.m_tasks;

  parallel_tasks(threads, tasks, [&](int64_t t) { run_task(pl, x, w, bias, y, t); });
}

}  // namespace conv_internal
}  // namespace kintsugi
