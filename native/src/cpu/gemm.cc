// sgemm in the BLIS style: the loops around the micro-kernel (NC -> KC -> MC -> NR -> MR),
// packing and threading are written once here; each ISA adds only a register-tile kernel
// (gemm_avx512.cc, gemm_avx2.cc, gemm_portable.cc) chosen at run time via active_isa().
//
//   for jc in N step NC          B block: KC x NC packed into NR-column micro-panels (L3)
//     for pc in K step KC
//       for ic in M step MC      A block: MC x KC packed into MR-row micro-panels (L2)
//         for jr in NC step NR   B micro-panel KC x NR stays in L1
//           for ir in MC step MR micro-kernel: MR x NR register tile
//
// Small M (the inference case): packing B costs about as much as multiplying it, so when op(B)
// rows are contiguous B is streamed in place (b_stride = ldb) through wide few-row tiles.
// Threads split C into column (or row) ranges, each thread running the loops above on its own
// range with its own packing buffers (thread-local, kept between calls), so there is no
// synchronisation inside a call.
#include "kintsugi/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "abft_internal.h"
#include "gemm_internal.h"
#include "kintsugi/cpu.h"
#include "kintsugi/error.h"
#include "kintsugi/threadpool.h"

namespace kintsugi {

using namespace gemm_internal;

namespace {

int64_t extent(int64_t rows, int64_t cols, int64_t ld) { return rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols; }

// Element (i, j) of op(X) for a matrix stored row-major with leading dimension ld.
inline float at(const float* x, bool trans, int64_t ld, int64_t i, int64_t j) { return trans ? x[j * ld + i] : x[i * ld + j]; }

// A buffer aligned to 64 bytes that only grows; one per thread and role, kept between calls
// because faulting fresh pages in costs more than small multiplies.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { std::free(data_); }
  float* get(size_t count) {
    if (count > capacity_) {
      std::free(data_);
      data_ = nullptr;
      capacity_ = 0;
      size_t want = std::max(count, capacity_ + capacity_ / 2);
      size_t bytes = (want * sizeof(float) + 63) / 64 * 64;
      void* p = nullptr;
      if (posix_memalign(&p, 64, bytes) != 0 || !p)
        throw Error(ErrorKind::OutOfMemory, "sgemm could not allocate " + std::to_string(bytes) + " bytes of packing buffer");
      data_ = static_cast<float*>(p);
      capacity_ = want;
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  size_t capacity_ = 0;
};

thread_local AlignedBuffer t_a_buffer, t_b_buffer;

}  // namespace

namespace gemm_internal {
// Column-major C = op(A) op(B) is row-major C^T = op(B)^T op(A)^T.
SgemmArgs as_row_major(const SgemmArgs& a) {
  if (a.layout == Layout::RowMajor) return a;
  SgemmArgs r = a;
  r.layout = Layout::RowMajor;
  r.m = a.n;
  r.n = a.m;
  r.a = a.b;
  r.lda = a.ldb;
  r.trans_a = a.trans_b;
  r.b = a.a;
  r.ldb = a.lda;
  r.trans_b = a.trans_a;
  return r;
}
}  // namespace gemm_internal

class PackedMatrix {
 public:
  ~PackedMatrix() {
    if (owned) std::free(data);
  }
  bool owned = true;
  int64_t k = 0, n = 0;
  int nr = 0;             // panel width: panel q holds columns [q*nr, q*nr + nr) for all k rows
  float* data = nullptr;  // ceil(n / nr) panels of k * nr floats, zero-padded
};

void PackedMatrixDeleter::operator()(PackedMatrix* p) const { delete p; }

namespace {

// The problem in row-major terms: C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C.
struct Problem {
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.0f, beta = 0.0f;
  const float* a = nullptr;
  int64_t lda = 0;
  bool ta = false;  // op(A)(i, p) = ta ? a[p * lda + i] : a[i * lda + p]
  const float* b = nullptr;
  int64_t ldb = 0;
  bool tb = false;
  const PackedMatrix* packed = nullptr;  // instead of b
  float* c = nullptr;
  int64_t ldc = 0;
  bool c_trans = false;  // C(i, j) at c[j * ldc + i] (column-major C of sgemm_packed)
  TileObserver* observer = nullptr;  // checksum-protected GEMM (abft.cc): sees blocks and runs tiles
  bool swapped = false;  // the transposed form of a few-row problem (see run)
  bool keep_form = false;  // never take the transposed form (sgemm_wide)
};

// The problem of an sgemm call (plain B) in row-major terms.
Problem row_major_problem(const SgemmArgs& args) {
  SgemmArgs g = as_row_major(args);
  Problem P;
  P.m = g.m;
  P.n = g.n;
  P.k = g.k;
  P.alpha = g.alpha;
  P.beta = g.beta;
  P.a = g.a;
  P.lda = g.lda;
  P.ta = g.trans_a == Transpose::Yes;
  P.b = g.b;
  P.ldb = g.ldb;
  P.tb = g.trans_b == Transpose::Yes;
  P.c = g.c;
  P.ldc = g.ldc;
  return P;
}

Blocking g_override;

const KernelSet& kernels_for(Isa isa) {
#if !defined(KINTSUGI_NO_X86_KERNELS)
  if (isa == Isa::Avx512) return *avx512_kernels();
  if (isa == Isa::Avx2) return *avx2_kernels();
#endif
  (void)isa;
  return *portable_kernels();
}

int max_nr(const KernelSet& ks, int rows) { return rows < 8 ? ks.wide_nr[rows] : ks.nr; }

}  // namespace

namespace gemm_internal {
int observed_tile_cols(const KernelSet& ks, int rows) {
  const int w = max_nr(ks, rows);
  return w >= ks.nr ? w / ks.nr * ks.nr : w;
}
}  // namespace gemm_internal

namespace {

struct Config {
  const KernelSet* ks;
  int mr, nr;
  int64_t kc, mc, nc, small_m, dot_m, stream_m;
  bool direct_a;
  int64_t swap_m;
  int64_t swap_min_n_strided;  // smallest N for the transposed form when B is read down its columns
  int64_t swap_kc_strided, swap_kc_rows;
};

int64_t round_down(int64_t v, int64_t unit) { return std::max(unit, v / unit * unit); }

Config make_config() {
  Config cfg;
  cfg.ks = &kernels_for(active_isa());
  const KernelSet& ks = *cfg.ks;
  cfg.mr = ks.mr;
  cfg.nr = ks.nr;
  if (g_override.mr > 0 && g_override.mr <= ks.max_rows) cfg.mr = g_override.mr;
  if (g_override.nr > 0 && g_override.nr <= max_nr(ks, cfg.mr)) cfg.nr = g_override.nr;
  const CpuInfo& ci = cpu_info();
  if (ks.direct_a) {
    // Zen 4 class cores: 512-bit FMAs issue at half rate, so L2 easily feeds both operands.
    // A long KC (the KC x NR micro-panel of B takes about a quarter of L2) amortises the C
    // tile updates; A is read in place, MC rows x KC in about three quarters of L2.
    cfg.kc = std::min<int64_t>(1024, std::max<int64_t>(256, ci.l2_bytes / 4 / (int64_t(cfg.nr) * 4) / 16 * 16));
    cfg.mc = round_down(ci.l2_bytes * 3 / 4 / (cfg.kc * 4), cfg.mr);
  } else {
    // Classic BLIS: the KC x NR micro-panel of B fills about half of L1; the packed MC x KC
    // block of A about half of L2.
    cfg.kc = std::min<int64_t>(512, std::max<int64_t>(128, ci.l1d_bytes / 2 / (int64_t(cfg.nr) * 4) / 16 * 16));
    cfg.mc = round_down(std::min<int64_t>(ci.l2_bytes / 2 / (cfg.kc * 4), 1024), cfg.mr);
  }
  // NC: each thread's packed KC x NC block of B takes a share of L3.
  const int64_t l3_share = ci.l3_bytes / 2 / std::max(1, num_threads());
  cfg.nc = round_down(std::min<int64_t>(l3_share / (cfg.kc * 4), 4096), cfg.nr);
  // Streaming B in place beats packing it up to a few row panels (measured on Zen 4:
  // M = 16 at 43 vs 38 GFLOP/s, M = 32 at 52 vs 57 with N = K = 4096).
  cfg.small_m = 4 * int64_t(cfg.mr);
  // Dot-product tiles beat packing a transposed B up to M = 32 (M = 32: 64 vs 60 GFLOP/s,
  // M = 48: 62 vs 70 with N = K = 4096).
  cfg.dot_m = ks.dot ? 32 : 0;
  // Row streaming (each B row read once, front to back) for B not transposed and few rows.
  cfg.stream_m = ks.stream ? ks.stream_mr : 0;
  cfg.direct_a = ks.direct_a;
  if (g_override.kc > 0) cfg.kc = g_override.kc;
  if (g_override.mc > 0) cfg.mc = round_down(g_override.mc, cfg.mr);
  if (g_override.nc > 0) cfg.nc = round_down(g_override.nc, cfg.nr);
  if (g_override.small_m >= 0) cfg.small_m = g_override.small_m;
  if (g_override.dot_m >= 0 && ks.dot) cfg.dot_m = g_override.dot_m;
  if (g_override.stream_m >= 0 && ks.stream) cfg.stream_m = g_override.stream_m;
  if (g_override.direct_a >= 0) cfg.direct_a = g_override.direct_a != 0;
  // The transposed form wins from M = 48 (NN 77 vs 68 GFLOP/s, NT 101 vs 66) to M = 256 (NN 96 vs
  // 89, NT 102 vs 87) with N = K = 4096, and loses when the last NR panel of A^T is narrow (M = 96:
  // 64 + 32 columns; NN M = 40 at 57 vs 78); swap_fits checks that.
  cfg.swap_m = ks.direct_a ? 256 : 0;
  // KC of the transposed form: when B is read down its columns (B not transposed, rows ldb
  // apart) each tile walks KC rows, which must stay cached for the next tiles that share their
  // lines (measured on Zen 4 at ldb = 4096: KC 512 at 101 GFLOP/s, 768 at 89, 1024 at 78);
  // along rows of B^T a long KC amortises the C updates, with the packed KC x NR panel of A in
  // half of L2 (KC 2048 at 105 GFLOP/s, 1024 at 102, 512 at 93).
  cfg.swap_kc_strided = 512;
  // Read down its columns, B must be wide for the transposed form to pay: with N ≤ 2048 and a
  // long K it loses on Zen 4 (1 thread, GFLOP/s transposed vs packed: 49x512x4608 48 vs 87,
  // 64x1024x4096 62 vs 92, 64x2048x2048 61 vs 86; equal at N = 1536 and 2560, won at N = 4096:
  // 64x4096x1024 104 vs 85).
  cfg.swap_min_n_strided = 2560;
  cfg.swap_kc_rows = std::min<int64_t>(4096, std::max<int64_t>(256, ci.l2_bytes / 2 / (int64_t(cfg.nr) * 4) / 16 * 16));
  if (g_override.swap_m >= 0) cfg.swap_m = g_override.swap_m;
  if (g_override.swap_min_n >= 0) cfg.swap_min_n_strided = g_override.swap_min_n;
  if (g_override.kc > 0) cfg.swap_kc_strided = cfg.swap_kc_rows = g_override.kc;
  return cfg;
}

// Splits `total` into the fewest blocks of at most `block`, of near-equal size rounded up to
// `unit` (so a K of 1100 runs as 2 x 552, not 1024 + 76).
int64_t balanced_block(int64_t total, int64_t block, int64_t unit) {
  if (total <= block) return total;
  const int64_t count = (total + block - 1) / block;
  const int64_t even = (total + count - 1) / count;
  return std::min(block, (even + unit - 1) / unit * unit);
}

// The transposing copy of both packers: dst[p * w + i] = src[i * ld + p] for i < rows, p < kc;
// entries rows..w-1 of each p zero.
void pack_transposed(const float* src, int64_t ld, int64_t kc, int rows, int w, float* dst) {
  for (int i = 0; i < rows; ++i) {
    const float* s = src + i * ld;
    float* di = dst + i;
    for (int64_t p = 0; p < kc; ++p) di[p * w] = s[p];
  }
  if (rows < w)
    for (int64_t p = 0; p < kc; ++p)
      for (int i = rows; i < w; ++i) dst[p * w + i] = 0.0f;
}

// Packs rows [i0, i0 + mc) x cols [p0, p0 + kc) of op(A) into MR-row micro-panels: panel r holds
// A(i0 + r*MR + i, p0 + p) at dst[r*kc*MR + p*MR + i], rows past mc zero.
void pack_a(const Problem& P, int64_t i0, int64_t mc, int64_t p0, int64_t kc, int mr, float* dst) {
  for (int64_t r0 = 0; r0 < mc; r0 += mr) {
    const int rows = int(std::min<int64_t>(mr, mc - r0));
    float* d = dst + (r0 / mr) * kc * mr;
    if (P.ta) {
      for (int64_t p = 0; p < kc; ++p) {
        const float* s = P.a + (p0 + p) * P.lda + i0 + r0;
        float* dp = d + p * mr;
        for (int i = 0; i < rows; ++i) dp[i] = s[i];
        for (int i = rows; i < mr; ++i) dp[i] = 0.0f;
      }
    } else {
      pack_transposed(P.a + (i0 + r0) * P.lda + p0, P.lda, kc, rows, mr, d);
    }
  }
}

// Packs rows [p0, p0 + kc) x cols [j0, j0 + nc) of op(B) into NR-column micro-panels: panel q
// holds B(p0 + p, j0 + q*NR + j) at dst[q*panel_stride + p*NR + j], columns past nc zero.
void pack_b_block(const float* b, int64_t ldb, bool tb, int64_t p0, int64_t kc, int64_t j0, int64_t nc, int nr,
                  int64_t panel_stride, float* dst) {
  const KernelSet& ks = kernels_for(active_isa());
  if (!tb) {
    // Row by row across all panels: each source row segment is read once, front to back, so
    // the hardware prefetchers see long sequential runs (panel by panel, the reads would be
    // NR-float pieces ldb apart, a pattern they barely follow).
    const int64_t full = nc / nr * nr;
    for (int64_t p = 0; p < kc; ++p) {
      const float* s = b + (p0 + p) * ldb + j0;
      float* d = dst + p * nr;
      for (int64_t q0 = 0; q0 < full; q0 += nr) std::memcpy(d + (q0 / nr) * panel_stride, s + q0, sizeof(float) * size_t(nr));
      if (full < nc) {
        float* dp = d + (full / nr) * panel_stride;
        const int cols = int(nc - full);
        std::memcpy(dp, s + full, sizeof(float) * size_t(cols));
        for (int j = cols; j < nr; ++j) dp[j] = 0.0f;
      }
    }
    return;
  }
  for (int64_t q0 = 0; q0 < nc; q0 += nr) {
    const int cols = int(std::min<int64_t>(nr, nc - q0));
    float* d = dst + (q0 / nr) * panel_stride;
    if (tb && ks.pack_b_transposed && nr % 16 == 0) {
      ks.pack_b_transposed(b + (j0 + q0) * ldb + p0, ldb, kc, cols, nr, d);
    } else if (!tb) {
      for (int64_t p = 0; p < kc; ++p) {
        const float* s = b + (p0 + p) * ldb + j0 + q0;
        float* dp = d + p * nr;
        std::memcpy(dp, s, sizeof(float) * size_t(cols));
        for (int j = cols; j < nr; ++j) dp[j] = 0.0f;
      }
    } else {
      pack_transposed(b + (j0 + q0) * ldb + p0, ldb, kc, cols, nr, d);
    }
  }
}

// The B operand of one KC x NC block as the micro-kernel sees it.
struct BView {
  const float* b;
  int64_t panel_stride;  // distance between W-column panels
  int64_t k_stride;      // distance between rows of a panel
  int64_t width;         // W
};

// The A operand of one MC x KC block: packed MR-row panels, or op(A) read in place.
struct AView {
  const float* a;
  int64_t row_stride, p_stride;  // A(i, p) at a[i * row_stride + p * p_stride] within a panel
  int64_t panel_stride;          // distance between MR-row panels
};

// C(i, j) = alpha * t(i, j) + beta * C(i, j) for a column-major C, from a row-major tile t.
void store_transposed(const float* t, int64_t ldt, int mr, int nr, float* c, int64_t ldc, float alpha, float beta) {
  for (int j = 0; j < nr; ++j) {
    float* cj = c + j * ldc;
    if (beta == 0.0f)
      for (int i = 0; i < mr; ++i) cj[i] = alpha * t[i * ldt + j];
    else
      for (int i = 0; i < mr; ++i) cj[i] = alpha * t[i * ldt + j] + beta * cj[i];
  }
}

// The jr / ir loops over one packed MC x KC block of A and one KC x NC block of B.
void run_block(const Problem& P, const Config& cfg, const AView& av, int64_t ic, int64_t mc, int64_t pc, int64_t kc, const BView& bv,
               int64_t jc, int64_t nc, float beta) {
  const KernelSet& ks = *cfg.ks;
  const int mr_pack = cfg.mr;
  int64_t tw = mc <= mr_pack && mc < 8 ? (P.observer ? observed_tile_cols(ks, int(mc)) : max_nr(ks, int(mc))) : cfg.nr;
  tw = std::min(tw, bv.width);
  MicroTile t;
  t.k = kc;
  t.a_stride = av.p_stride;
  t.a_row_stride = av.row_stride;
  t.b_stride = bv.k_stride;
  t.alpha = P.alpha;
  t.beta = beta;
  alignas(64) float tmp[16 * 128];
  for (int64_t q = 0; q * bv.width < nc; ++q) {
    const int64_t panel_cols = std::min(bv.width, nc - q * bv.width);
    const float* bq = bv.b + q * bv.panel_stride;
    for (int64_t jr = 0; jr < panel_cols; jr += tw) {
      t.nr = int(std::min(tw, panel_cols - jr));
      t.b = bq + jr;
      const int64_t j = jc + q * bv.width + jr;
      for (int64_t ir = 0; ir < mc; ir += mr_pack) {
        t.mr = int(std::min<int64_t>(mr_pack, mc - ir));
        t.a = av.a + (ir / mr_pack) * av.panel_stride;
        const int64_t i = ic + ir;
        if (P.observer) {
          t.c = P.c + i * P.ldc + j;
          t.ldc = P.ldc;
          P.observer->tile(ks, t, i, j, pc, pc + kc == P.k);
        } else if (!P.c_trans) {
          t.c = P.c + i * P.ldc + j;
          t.ldc = P.ldc;
          ks.micro(t);
        } else {
          MicroTile u = t;
          u.c = tmp;
          u.ldc = t.nr;
          u.alpha = 1.0f;
          u.beta = 0.0f;
          ks.micro(u);
          store_transposed(tmp, t.nr, t.mr, t.nr, P.c + j * P.ldc + i, P.ldc, P.alpha, beta);
        }
      }
    }
  }
}

// The whole loop nest over C rows [m0, m1) x columns [n0, n1) on the calling thread.
void gemm_range(const Problem& P, const Config& cfg, bool direct, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (m0 >= m1 || n0 >= n1) return;
  const int mr = cfg.mr, nr = cfg.nr;
  const int64_t k = P.k;
  const int64_t kc_want = P.swapped ? (P.ta ? cfg.swap_kc_strided : cfg.swap_kc_rows) : cfg.kc;
  const int64_t kc_block = balanced_block(k, kc_want, 8);
  const int64_t mc_block = balanced_block(m1 - m0, cfg.mc, mr);
  if (P.observer) P.observer->range_begin();
  for (int64_t jc = n0; jc < n1; jc += cfg.nc) {
    const int64_t nc = std::min(cfg.nc, n1 - jc);
    for (int64_t pc = 0; pc < k; pc += kc_block) {
      const int64_t kc = std::min(kc_block, k - pc);
      const float beta = pc == 0 ? P.beta : 1.0f;
      BView bv;
      if (P.packed) {
        const int64_t w = P.packed->nr;
        bv.b = P.packed->data + (jc / w) * k * w + pc * w;  // jc is a multiple of w
        bv.panel_stride = k * w;
        bv.k_stride = w;
        bv.width = w;
      } else if (direct) {
        bv.b = P.b + pc * P.ldb + jc;
        bv.panel_stride = 0;
        bv.k_stride = P.ldb;
        bv.width = nc;
      } else {
        const int64_t panels = (nc + nr - 1) / nr;
        float* buf = t_b_buffer.get(size_t(panels * kc * nr));
        pack_b_block(P.b, P.ldb, P.tb, pc, kc, jc, nc, nr, kc * nr, buf);
        bv.b = buf;
        bv.panel_stride = kc * nr;
        bv.k_stride = nr;
        bv.width = nr;
      }
      for (int64_t ic = m0; ic < m1; ic += mc_block) {
        const int64_t mc = std::min(mc_block, m1 - ic);
        AView av;
        if (cfg.direct_a) {
          av.row_stride = P.ta ? 1 : P.lda;
          av.p_stride = P.ta ? P.lda : 1;
          av.a = P.a + ic * av.row_stride + pc * av.p_stride;
          av.panel_stride = mr * av.row_stride;
        } else {
          float* abuf = t_a_buffer.get(size_t((mc + mr - 1) / mr * mr * kc));
          pack_a(P, ic, mc, pc, kc, mr, abuf);
          av.a = abuf;
          av.row_stride = 1;
          av.p_stride = mr;
          av.panel_stride = kc * mr;
        }
        if (P.observer) P.observer->a_block(ic, mc, pc, kc, av.a, av.row_stride, av.p_stride, av.panel_stride, mr, jc, nc);
        run_block(P, cfg, av, ic, mc, pc, kc, bv, jc, nc, beta);
      }
    }
  }
  if (P.observer) P.observer->range_done();
}

// Small M with a transposed B and A rows contiguous in k: dot-product tiles stream both
// operands, no packing. Columns [n0, n1), all rows.
void dot_range(const Problem& P, const Config& cfg, int64_t n0, int64_t n1) {
  const KernelSet& ks = *cfg.ks;
  DotTile t;
  t.k = P.k;
  t.lda = P.lda;
  t.ldb = P.ldb;
  t.ldc = P.ldc;
  t.alpha = P.alpha;
  t.beta = P.beta;
  const int64_t step = 16;  // 16 rows of B^T stay in L1/L2 while every row group uses them
  for (int64_t j = n0; j < n1; j += step) {
    t.nr = int(std::min(step, n1 - j));
    t.b = P.b + j * P.ldb;
    for (int64_t i = 0; i < P.m; i += ks.dot_mr) {
      t.mr = int(std::min<int64_t>(ks.dot_mr, P.m - i));
      t.a = P.a + i * P.lda;
      t.c = P.c + i * P.ldc + j;
      ks.dot(t);
    }
  }
}

// Small M with B rows contiguous: the row-streaming kernel over columns [n0, n1), all rows, in
// groups of at most stream_mr rows (each group streams B once).
void stream_range(const Problem& P, const Config& cfg, int64_t n0, int64_t n1) {
  if (n0 >= n1) return;
  const KernelSet& ks = *cfg.ks;
  StreamTile t;
  t.k = P.k;
  t.a_stride = P.ta ? P.lda : 1;
  t.a_row_stride = P.ta ? 1 : P.lda;
  t.b = P.b + n0;
  t.ldb = P.ldb;
  t.n = n1 - n0;
  t.ldc = P.ldc;
  t.alpha = P.alpha;
  t.beta = P.beta;
  const int group = ks.stream_mr;
  t.acc = t_a_buffer.get(size_t(std::min<int64_t>(group, P.m) * t.n));
  for (int64_t i = 0; i < P.m; i += group) {
    t.mr = int(std::min<int64_t>(group, P.m - i));
    t.a = P.a + i * t.a_row_stride;
    t.c = P.c + i * P.ldc + n0;
    ks.stream(t);
  }
}

// The row-streaming path split along K: segment s of `segments` (near-equal row ranges of B,
// multiples of 8) streams whole B rows into its own partial product part[s] (m x n, alpha = 1,
// beta = 0); reduce_segments then forms C. Splitting K rather than N keeps every thread's B
// reads whole rows (splitting N halves the sequential runs the prefetchers see: M = 1 on two
// threads ran at half the bandwidth), and the segment count depends on k only, so results are
// bitwise the same for any thread count.
int64_t stream_segments(const Problem& P) { return std::min<int64_t>(4, P.k / 512); }

void stream_segment(const Problem& P, const Config& cfg, int64_t s, int64_t segments, float* part) {
  const int64_t rows = (P.k + segments - 1) / segments;
  const int64_t step = (rows + 7) / 8 * 8;
  const int64_t p0 = std::min(P.k, s * step), p1 = std::min(P.k, p0 + step);
  Problem Q = P;
  Q.k = p1 - p0;
  Q.a = P.a + p0 * (P.ta ? P.lda : 1);
  Q.b = P.b + p0 * P.ldb;
  Q.alpha = 1.0f;
  Q.beta = 0.0f;
  Q.c = part;
  Q.ldc = P.n;
  if (Q.k == 0) {
    std::fill(part, part + P.m * P.n, 0.0f);
    return;
  }
  stream_range(Q, cfg, 0, P.n);
}

// C = alpha * (part[0] + ... + part[segments - 1]) + beta * C (beta == 0: C not read).
void reduce_segments(const Problem& P, const float* parts, int64_t segments) {
  const int64_t size = P.m * P.n;
  for (int64_t i = 0; i < P.m; ++i) {
    float* c = P.c + i * P.ldc;
    const float* p = parts + i * P.n;
    for (int64_t j = 0; j < P.n; ++j) {
      float v = p[j];
      for (int64_t s = 1; s < segments; ++s) v += p[s * size + j];
      v *= P.alpha;
      c[j] = P.beta == 0.0f ? v : v + P.beta * c[j];
    }
  }
}

// C = beta * C (alpha == 0 or k == 0); beta == 0 writes zeros without reading C.
void scale_c(const Problem& P) {
  const int64_t rows = P.c_trans ? P.n : P.m, cols = P.c_trans ? P.m : P.n;
  for (int64_t r = 0; r < rows; ++r) {
    float* c = P.c + r * P.ldc;
    if (P.beta == 0.0f)
      std::fill(c, c + cols, 0.0f);
    else if (P.beta != 1.0f)
      for (int64_t j = 0; j < cols; ++j) c[j] *= P.beta;
  }
}

// Threads for a call of `flops` work split into at most `parts` pieces: one for small calls
// (waking the pool costs more than they take).
int thread_count(double flops, int64_t parts) { return int(std::min<int64_t>(flops < 4.0e6 ? 1 : num_threads(), parts)); }

// Runs range(lo, hi) over [0, total) split into near-equal runs of whole `unit`s, one per thread
// (on the calling thread alone when one thread is enough). The runs are taken as tasks: when a
// worker is still asleep once the caller has finished its run, the caller goes on with the next
// one rather than waiting for the wake-up (which takes longer than the run, or it would have
// woken first).
template <typename Range>
void split_range(double flops, int64_t total, int64_t unit, const Range& range) {
  const int64_t units = (total + unit - 1) / unit;
  const int threads = thread_count(flops, units);
  if (threads <= 1) {
    range(0, total);
    return;
  }
  parallel_tasks(threads, threads, [&](int64_t t) { range(units * t / threads * unit, std::min(total, units * (t + 1) / threads * unit)); });
}

void run(const Problem& P) {
  if (P.m == 0 || P.n == 0) return;
  if (P.alpha == 0.0f || P.k == 0) {
    scale_c(P);
    return;
  }
  const Config cfg = make_config();
  const double flops = 2.0 * double(P.m) * double(P.n) * double(P.k);
  if (!P.packed && P.tb && !P.ta && !P.c_trans && !P.observer && cfg.ks->dot && P.m <= cfg.dot_m) {
    split_range(flops, P.n, 16, [&](int64_t n0, int64_t n1) { dot_range(P, cfg, n0, n1); });
    return;
  }
  if (!P.packed && !P.tb && !P.c_trans && !P.observer && cfg.ks->stream && P.m <= cfg.stream_m) {
    const int64_t segments = stream_segments(P);
    if (segments >= 2) {
      float* parts = t_b_buffer.get(size_t(segments * P.m * P.n));
      const int threads = thread_count(flops, segments);
      if (threads <= 1) {
        for (int64_t s = 0; s < segments; ++s) stream_segment(P, cfg, s, segments, parts + s * P.m * P.n);
      } else {
        parallel_tasks(threads, segments, [&](int64_t s) { stream_segment(P, cfg, s, segments, parts + s * P.m * P.n); });
      }
      reduce_segments(P, parts, segments);
      return;
    }
    split_range(flops, P.n, 64, [&](int64_t n0, int64_t n1) { stream_range(P, cfg, n0, n1); });
    return;
  }
  const int64_t tail = P.m % cfg.nr;
  const bool swap_fits = P.m > 32 && (tail == 0 || 4 * tail >= 3 * cfg.nr);
  if (!P.packed && !P.c_trans && !P.observer && !P.keep_form && cfg.direct_a && P.m <= cfg.swap_m && swap_fits && P.n > P.m &&
      (P.tb || P.n >= cfg.swap_min_n_strided)) {
    // C^T = op(B)^T op(A)^T: the large B becomes the operand read in place (broadcast from its
    // rows, nothing packed), and the few rows of A are packed once per KC block as the panel
    // every tile reuses; C is written through transposed tile stores.
    Problem Q = P;
    Q.m = P.n;
    Q.n = P.m;
    Q.a = P.b;
    Q.lda = P.ldb;
    Q.ta = !P.tb;
    Q.b = P.a;
    Q.ldb = P.lda;
    Q.tb = !P.ta;
    Q.c_trans = true;
    Q.swapped = true;
    run(Q);
    return;
  }
  // Stream B in place when few rows share it and its rows are contiguous.
  const bool direct = !P.packed && !P.tb && P.m <= cfg.small_m;
  // Split the longer side of C; columns in units of whole B panels, rows of whole A panels.
  const bool split_n = P.packed || direct || P.n >= P.m;
  if (split_n)
    split_range(flops, P.n, P.packed ? P.packed->nr : (direct ? 64 : cfg.nr),
                [&](int64_t n0, int64_t n1) { gemm_range(P, cfg, direct, 0, P.m, n0, n1); });
  else
    split_range(flops, P.m, cfg.mr, [&](int64_t m0, int64_t m1) { gemm_range(P, cfg, direct, m0, m1, 0, P.n); });
}

}  // namespace

namespace gemm_internal {
void set_blocking_override(const Blocking& b) { g_override = b; }
Blocking current_blocking() {
  Config c = make_config();
  Blocking b;
  b.kc = c.kc;
  b.mc = c.mc;
  b.nc = c.nc;
  b.mr = c.mr;
  b.nr = c.nr;
  b.small_m = c.small_m;
  b.dot_m = c.dot_m;
  b.stream_m = c.stream_m;
  b.direct_a = c.direct_a ? 1 : 0;
  b.swap_m = c.swap_m;
  b.swap_min_n = c.swap_min_n_strided;
  return b;
}
const KernelSet& active_kernels() { return kernels_for(active_isa()); }

void sgemm_wide(const SgemmArgs& args) {
  Problem P = row_major_problem(args);
  P.keep_form = true;
  run(P);
}

void sgemm_observed(const SgemmArgs& args, TileObserver& observer) {
  Problem P = row_major_problem(args);
  P.observer = &observer;
  run(P);
}
}  // namespace gemm_internal

SgemmArgs row_major_args(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                         int64_t ldc, float beta) {
  SgemmArgs g;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.lda = lda;
  g.b = b;
  g.ldb = ldb;
  g.c = c;
  g.ldc = ldc;
  g.beta = beta;
  return g;
}

void check_sgemm(const SgemmArgs& g, int64_t a_len, int64_t b_len, int64_t c_len) {
  if (g.m < 0) throw_expected(ErrorKind::Range, "m >= 0", "m", std::to_string(g.m));
  if (g.n < 0) throw_expected(ErrorKind::Range, "n >= 0", "n", std::to_string(g.n));
  if (g.k < 0) throw_expected(ErrorKind::Range, "k >= 0", "k", std::to_string(g.k));
  bool row = g.layout == Layout::RowMajor;
  // Stored shape (rows x cols) of each operand in its own layout.
  int64_t a_rows = (g.trans_a == Transpose::No) ? g.m : g.k, a_cols = (g.trans_a == Transpose::No) ? g.k : g.m;
  int64_t b_rows = (g.trans_b == Transpose::No) ? g.k : g.n, b_cols = (g.trans_b == Transpose::No) ? g.n : g.k;
  auto check = [&](const char* name, const char* len_name, int64_t rows, int64_t cols, int64_t ld, int64_t len) {
    int64_t inner = row ? cols : rows, outer = row ? rows : cols;
    int64_t min_ld = inner > 1 ? inner : 1;
    if (ld < min_ld) throw_expected(ErrorKind::Range, std::string("a leading dimension >= ") + std::to_string(min_ld), name, std::to_string(ld));
    int64_t need = extent(outer, inner, ld);
    if (len < need)
      throw_expected(ErrorKind::Range, std::string("at least ") + std::to_string(need) + " elements", len_name, std::to_string(len));
  };
  check("lda", "a", a_rows, a_cols, g.lda, a_len);
  check("ldb", "b", b_rows, b_cols, g.ldb, b_len);
  check("ldc", "c", g.m, g.n, g.ldc, c_len);
}

void sgemm_reference(const SgemmArgs& args) {
  SgemmArgs g = as_row_major(args);
  bool ta = g.trans_a == Transpose::Yes, tb = g.trans_b == Transpose::Yes;
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = 0; j < g.n; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < g.k; ++p) acc += double(at(g.a, ta, g.lda, i, p)) * double(at(g.b, tb, g.ldb, p, j));
      float& c = g.c[i * g.ldc + j];
      float ab = float(double(g.alpha) * acc);
      c = g.beta == 0.0f ? ab : ab + g.beta * c;
    }
}

namespace {
constexpr int64_t kUnbounded = std::numeric_limits<int64_t>::max();

void require_pointer(const void* p, bool needed, const char* name) {
  if (needed && !p) throw_expected(ErrorKind::Type, "a non-null buffer", name, "null");
}
}  // namespace

void sgemm(const SgemmArgs& args) {
  check_sgemm(args, kUnbounded, kUnbounded, kUnbounded);
  const bool nonempty = args.m > 0 && args.n > 0;
  require_pointer(args.c, nonempty, "c");
  require_pointer(args.a, nonempty && args.k > 0 && args.alpha != 0.0f, "a");
  require_pointer(args.b, nonempty && args.k > 0 && args.alpha != 0.0f, "b");
  run(row_major_problem(args));
}

PackedMatrixPtr pack_b(Layout layout, Transpose trans_b, int64_t k, int64_t n, const float* b, int64_t ldb) {
  if (k < 0) throw_expected(ErrorKind::Range, "k >= 0", "k", std::to_string(k));
  if (n < 0) throw_expected(ErrorKind::Range, "n >= 0", "n", std::to_string(n));
  // op(B) (k x n) as a row-major matrix with transposition flag t.
  const bool t = (trans_b == Transpose::Yes) != (layout == Layout::ColMajor);
  const int64_t inner = t ? k : n;
  const int64_t min_ld = inner > 1 ? inner : 1;
  if (ldb < min_ld) throw_expected(ErrorKind::Range, "a leading dimension >= " + std::to_string(min_ld), "ldb", std::to_string(ldb));
  require_pointer(b, k > 0 && n > 0, "b");
  PackedMatrixPtr p(new PackedMatrix);
  p->k = k;
  p->n = n;
  p->nr = make_config().nr;
  const int64_t panels = (n + p->nr - 1) / p->nr;
  const size_t count = size_t(panels * k * p->nr);
  if (count > 0) {
    void* mem = nullptr;
    size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
    if (posix_memalign(&mem, 64, bytes) != 0 || !mem)
      throw Error(ErrorKind::OutOfMemory, "pack_b could not allocate " + std::to_string(bytes) + " bytes");
    p->data = static_cast<float*>(mem);
    const int nr = p->nr;
    float* data = p->data;
    // Panels are independent: pack them in parallel for large weights.
    parallel_for(panels, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, k * nr)), [&](int64_t q0, int64_t q1) {
      const int64_t j0 = q0 * nr, j1 = std::min(n, q1 * nr);
      pack_b_block(b, ldb, t, 0, k, j0, j1 - j0, nr, k * nr, data + q0 * k * nr);
    });
  }
  return p;
}

int64_t packed_rows(const PackedMatrix& p) { return p.k; }
int64_t packed_cols(const PackedMatrix& p) { return p.n; }

int packed_b_panel_width() { return make_config().nr; }

int64_t packed_b_floats(int64_t k, int64_t n, int nr) { return (n + nr - 1) / nr * k * nr; }

void pack_b_into(Layout layout, Transpose trans_b, int64_t k, int64_t n, const float* b, int64_t ldb, int nr, float* dst) {
  if (nr <= 0 || nr % 16 != 0) throw_expected(ErrorKind::Range, "a positive multiple of 16", "nr", std::to_string(nr));
  if (k <= 0 || n <= 0) return;
  const bool t = (trans_b == Transpose::Yes) != (layout == Layout::ColMajor);
  const int64_t panels = (n + nr - 1) / nr;
  parallel_for(panels, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, k * nr)), [&](int64_t q0, int64_t q1) {
    const int64_t j0 = q0 * nr, j1 = std::min(n, q1 * nr);
    pack_b_block(b, ldb, t, 0, k, j0, j1 - j0, nr, k * nr, dst + q0 * k * nr);
  });
}

void sgemm_packed_panels(const SgemmArgs& args, const float* panels, int nr) {
  PackedMatrix view;
  view.owned = false;
  view.k = args.k;
  view.n = args.n;
  view.nr = nr;
  view.data = const_cast<float*>(panels);
  sgemm_packed(args, view);
}

void sgemm_packed(const SgemmArgs& args, const PackedMatrix& packed) {
  if (args.k != packed.k) throw_expected(ErrorKind::Range, "k == " + std::to_string(packed.k) + " (the packed matrix's rows)", "k", std::to_string(args.k));
  if (args.n != packed.n) throw_expected(ErrorKind::Range, "n == " + std::to_string(packed.n) + " (the packed matrix's columns)", "n", std::to_string(args.n));
  // Validate A and C as sgemm would, with a B that trivially fits.
  SgemmArgs shape = args;
  shape.trans_b = Transpose::No;
  shape.ldb = args.layout == Layout::RowMajor ? std::max<int64_t>(1, args.n) : std::max<int64_t>(1, args.k);
  check_sgemm(shape, kUnbounded, kUnbounded, kUnbounded);
  const bool nonempty = args.m > 0 && args.n > 0;
  require_pointer(args.c, nonempty, "c");
  require_pointer(args.a, nonempty && args.k > 0 && args.alpha != 0.0f, "a");
  Problem P;
  P.m = args.m;
  P.n = args.n;
  P.k = args.k;
  P.alpha = args.alpha;
  P.beta = args.beta;
  P.a = args.a;
  P.lda = args.lda;
  P.packed = &packed;
  P.c = args.c;
  P.ldc = args.ldc;
  if (args.layout == Layout::RowMajor) {
    P.ta = args.trans_a == Transpose::Yes;
  } else {
    // Column-major A (m x k, or k x m when transposed) is the row-major transpose; column-major
    // C is written through transposed tile stores.
    P.ta = args.trans_a == Transpose::No;
    P.c_trans = true;
  }
  run(P);
}

}  // namespace kintsugi
