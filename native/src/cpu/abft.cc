// Checksum-protected sgemm: thread-level (per register tile) ABFT on the sgemm driver's own loop
// nest, plus the global row check and the group sums it shares with the TypeScript layer.
// See kintsugi/abft.h for the scheme; abft_internal.h for how the driver calls in.
#include "kintsugi/abft.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>

#include "abft_generic.h"
#include "abft_internal.h"
#include "kintsugi/cpu.h"
#include "kintsugi/error.h"
#include "kintsugi/threadpool.h"

namespace kintsugi {

using namespace gemm_internal;

namespace {

constexpr double kEps32 = 1.0 / 16777216.0;  // 2^-24, unit roundoff of float

struct Fault {
  std::mutex mu;
  bool armed = false;
  int64_t row = 0, col = 0;
  int bit = 0;
};
Fault& fault() {
  static Fault f;
  return f;
}
std::atomic<bool> g_fault_fired{false};

float flip(float v, int bit) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u ^= uint32_t(1) << bit;
  std::memcpy(&v, &u, 4);
  return v;
}

const AbftKernels kPortable = generic_abft_kernels("abft_portable");

const AbftKernels& check_kernels() {
#if !defined(KINTSUGI_NO_X86_KERNELS)
  if (active_isa() == Isa::Avx512) return *abft_avx512_kernels();
  if (active_isa() == Isa::Avx2) return *abft_avx2_kernels();
#endif
  return kPortable;
}

int gcd(int a, int b) { return b == 0 ? a : gcd(b, a % b); }

// The widest register tile of any kernel set (wide_nr of the few-row tiles).
constexpr int kMaxTileCols = 256;

// Panels whose expected sums one pass computes (each group-sum vector feeds that many dots).
constexpr int kPanelGroup = 4;

// x / d for an x known to be a multiple of d, from 1 / d: the product is within a few ulps of the
// integer quotient, so rounding recovers it exactly.
inline int64_t exact_quotient(int64_t x, double inv_d) { return int64_t(double(x) * inv_d + 0.5); }

// A tile run in its last k block, with the checksums its micro-kernel wrote, to be checked.
struct Pending {
  MicroTile t;
  int64_t i = 0, j = 0;
  float rows[16];     // one-sided: the tile's row sums
  double total = 0;   // two-sided: the tile's sum
};

// Per-thread view of the current A block (set by a_block, read by tile on the same thread).
struct BlockState {
  int64_t ic = 0, mc = 0, kc = 0;
  // Where the checks read the block's rows of op(A): A(ic + row, pc + p) at
  // a + (row / mr) * panel_stride + (row % mr) * row_stride + p * p_stride.
  const float* a = nullptr;
  int64_t row_stride = 0, p_stride = 0, panel_stride = 0;
  int mr = 0;
  // The current panel group's A side of the expected sums, one slot per panel, filled panel by
  // panel: one-sided, the panels' rows of op(A) as (value, magnitude) pairs; two-sided, each
  // panel's e^T A_panel as pairs.
  std::vector<float> x;
  int64_t jc = 0, g0 = 0, g1 = 0;  // the block's first column and its column groups
  std::array<Pending, kPanelGroup - 1> pending;  // last-k-block first tiles waiting for their group's sums
  int pending_count = 0;
  int64_t tiles = 0;            // this thread's tile checks and worst ratio, merged by range_done
  double worst = 0;
};
thread_local BlockState t_block;

class Checker final : public TileObserver {
 public:
  // state: a reusable buffer for the expected sums (no allocation or zeroing per call; a_block
  // clears what its first k block covers).
  Checker(const SgemmArgs& row_major, const AbftOptions& opt, const float* groups, int width, bool swap_coords, std::vector<double>& state)
      : g_(row_major), opt_(opt), groups_(groups), width_(width), swap_(swap_coords), hk_(check_kernels()), state_(state) {
    ng_ = (g_.n + width_ - 1) / width_;
    // Two-sided: one slot per MR-row panel (the driver starts every panel at a multiple of mr);
    // one-sided: one per row.
    const int64_t slots = opt_.check == AbftCheck::TwoSided ? (g_.m + mr_ - 1) / mr_ : g_.m;
    state_.resize(size_t(slots * ng_ * 2));
    {
      Fault& f = fault();
      std::lock_guard<std::mutex> lock(f.mu);
      if (f.armed) {
        fault_armed_ = true;
        fault_row_ = swap_ ? f.col : f.row;
        fault_col_ = swap_ ? f.row : f.col;
        fault_bit_ = f.bit;
        f.armed = false;
      }
    }
  }

  void range_begin() override {
    t_block.tiles = 0;
    t_block.worst = 0;
    t_block.pending_count = 0;
  }

  void range_done() override {
    BlockState& b = t_block;
    tiles_.fetch_add(b.tiles, std::memory_order_relaxed);
    if (b.worst > 0) {
      std::lock_guard<std::mutex> lock(mu_);
      max_ratio_ = std::max(max_ratio_, b.worst);
    }
    b.tiles = 0;
    b.worst = 0;
  }

  void a_block(int64_t ic, int64_t mc, int64_t pc, int64_t kc, const float* a, int64_t row_stride, int64_t p_stride,
               int64_t panel_stride, int mr, int64_t jc, int64_t nc) override {
    BlockState& b = t_block;
    b.ic = ic;
    b.mc = mc;
    b.kc = kc;
    b.mr = mr;
    if (p_stride != 1 && g_.trans_a == Transpose::No) {
      // Packed A interleaves a panel's rows (p_stride = mr), which the sums could only read a
      // float at a time; the caller's rows of A, just read by the packer and still in cache, are
      // contiguous in p. Checksums of the caller's A also catch a corrupted packed copy.
      b.a = g_.a + ic * g_.lda + pc;
      b.row_stride = g_.lda;
      b.p_stride = 1;
      b.panel_stride = mr * g_.lda;
    } else {
      b.a = a;
      b.row_stride = row_stride;
      b.p_stride = p_stride;
      b.panel_stride = panel_stride;
    }
    b.jc = jc;
    b.g0 = jc / width_;
    b.g1 = std::min(ng_, (jc + nc + width_ - 1) / width_);
    if (pc != 0) return;
    // The first k block starts every (panel or row, group) slot of the block's tiles from zero.
    if (opt_.check == AbftCheck::OneSided)
      clear_slots(&state_[size_t((ic * ng_ + b.g0) * 2)], mc, b.g1 - b.g0);
    else
      clear_slots(&state_[size_t(((ic / mr_) * ng_ + b.g0) * 2)], (mc + mr - 1) / mr, b.g1 - b.g0);
  }

  // The A side of the expected sums for panel q of the block (its rows from block row q * mr),
  // into the panel's slot of the group buffer. Run right after the panel's first micro-kernel
  // has read its rows, so they come from cache (reading a group's rows at once ahead of its tiles,
  // from L2 or memory, cost about a point more at 1024^3).
  void panel_sums(int64_t q) {
    BlockState& b = t_block;
    const int64_t kc = b.kc, row0 = q * b.mr, rows = std::min<int64_t>(b.mr, b.mc - row0);
    const float* a = b.a + q * b.panel_stride;  // row r of the panel at a + r * row_stride
    if (opt_.check == AbftCheck::OneSided) {
      b.x.resize(size_t(kPanelGroup * b.mr * kc * 2));
      float* d = b.x.data() + (q % kPanelGroup) * b.mr * kc * 2;
      for (int64_t r = 0; r < rows; ++r) {
        if (b.p_stride == 1)
          hk_.interleave_abs(a + r * b.row_stride, kc, d + r * kc * 2);
        else
          interleave_abs_strided(a + r * b.row_stride, b.p_stride, kc, d + r * kc * 2);
      }
      return;
    }
    b.x.resize(size_t(kPanelGroup * kc * 2));
    float* d = b.x.data() + (q % kPanelGroup) * kc * 2;
    if (b.p_stride == 1)
      hk_.panel_sums(a, rows, b.mr, b.row_stride, b.panel_stride, kc, d);
    else
      panel_sums_strided(a, rows, b.mr, b.row_stride, b.p_stride, b.panel_stride, kc, d);
  }

  // The expected sums of the panel group ending at panel q against every column group of the
  // block, added over the k blocks: two-sided (e^T A_panel) . (B_group e), one-sided
  // A(i', :) . (B_group e) per row, each with its magnitude. One pass for the group's panels
  // lets each group-sum vector feed several panels' dot products.
  void group_dots(int64_t q, int64_t pc) {
    BlockState& b = t_block;
    const int64_t q0 = q - q % kPanelGroup, kc = b.kc;
    const float* groups = groups_ + (b.g0 * g_.k + pc) * 2;
    if (opt_.check == AbftCheck::OneSided) {
      const int64_t row0 = q0 * b.mr, rows = std::min(b.mc, (q + 1) * b.mr) - row0;
      hk_.block_dots(b.x.data(), rows, 2 * kc, groups, b.g1 - b.g0, 2 * g_.k, kc, &state_[size_t(((b.ic + row0) * ng_ + b.g0) * 2)], ng_ * 2);
      return;
    }
    hk_.block_dots(b.x.data(), q + 1 - q0, 2 * kc, groups, b.g1 - b.g0, 2 * g_.k, kc, &state_[size_t(((b.ic / mr_ + q0) * ng_ + b.g0) * 2)],
                   ng_ * 2);
  }

  void tile(const KernelSet& ks, MicroTile& t, int64_t i, int64_t j, int64_t pc, bool last) override {
    BlockState& b = t_block;
    const bool one = opt_.check == AbftCheck::OneSided;
    // A panel's first tile (the block's first column) runs before its A side of the expected sums
    // exists: the sums follow its micro-kernel, and its check waits for the group's dots, done at
    // the group's last panel. Every later tile finds its group's sums complete.
    const bool first = j == b.jc;
    int64_t q = 0;
    bool group_end = false;
    if (first) {  // (integer divisions cost tens of cycles: only on a panel's first tile)
      q = (i - b.ic) / b.mr;
      group_end = q % kPanelGroup == kPanelGroup - 1 || (q + 1) * b.mr >= b.mc;
    }
    if (!last) {
      ks.micro(t);
      if (first) {
        panel_sums(q);
        if (group_end) group_dots(q, pc);
      }
      return;
    }
    Pending cur;
    cur.t = t;
    cur.i = i;
    cur.j = j;
    alignas(64) float cols[kMaxTileCols];
    // Where the tile's expected sums are final already, read them before the micro-kernel so the
    // loads (written blocks ago) overlap its work.
    double want[2 * 16];
    if (!first) expected_of(cur, want);
    t.row_sums = one ? cur.rows : nullptr;
    t.col_sums = one ? nullptr : cols;
    ks.micro(t);
    t.row_sums = nullptr;
    t.col_sums = nullptr;
    if (fault_armed_ && fault_row_ >= i && fault_row_ < i + t.mr && fault_col_ >= j && fault_col_ < j + t.nr) {
      // A flipped accumulator bit: the stored value and the register sums both carry it.
      float& c = t.c[(fault_row_ - i) * t.ldc + (fault_col_ - j)];
      const float old = c, now = flip(old, fault_bit_);
      c = now;
      const float delta = now - old;
      if (one)
        cur.rows[fault_row_ - i] += std::isfinite(delta) ? delta : now;
      else
        cols[fault_col_ - j] += std::isfinite(delta) ? delta : now;
      fault_armed_ = false;
      g_fault_fired.store(true);
    }
    if (!one) cur.total = hk_.sum(cols, t.nr);
    if (first) {
      panel_sums(q);
      if (!group_end) {
        b.pending[size_t(b.pending_count++)] = cur;  // checked once its group's sums exist
        return;
      }
      group_dots(q, pc);
      for (int e = 0; e < b.pending_count; ++e) check(b.pending[size_t(e)]);
      b.pending_count = 0;
      expected_of(cur, want);
    }
    check_tile(cur, want);
  }

  AbftReport report() {
    AbftReport r;
    r.tiles = tiles_.load();
    r.max_ratio = max_ratio_;
    r.events = std::move(events_);
    std::sort(r.events.begin(), r.events.end(), [](const AbftEvent& x, const AbftEvent& y) {
      return x.row0 != y.row0 ? x.row0 < y.row0 : x.col0 < y.col0;
    });
    return r;
  }

 private:
  // Zeroes `lines` runs of `groups` slots, one run per panel (or row) of the state.
  void clear_slots(double* st, int64_t lines, int64_t groups) {
    for (int64_t r = 0; r < lines; ++r) std::fill(st + r * ng_ * 2, st + r * ng_ * 2 + groups * 2, 0.0);
  }

  // op(A)(i, p) and op(B)(p, j) of the row-major view.
  float A(int64_t i, int64_t p) const {
    return g_.trans_a == Transpose::Yes ? g_.a[p * g_.lda + i] : g_.a[i * g_.lda + p];
  }
  float B(int64_t p, int64_t j) const {
    return g_.trans_b == Transpose::Yes ? g_.b[j * g_.ldb + p] : g_.b[p * g_.ldb + j];
  }
  double bound_of(double magnitude) const { return kAbftBoundScale * opt_.tolerance * kEps32 * magnitude + 1e-30; }

  // A deferred tile: its expected sums, then its check.
  void check(Pending& p) {
    double want[2 * 16];
    expected_of(p, want);
    check_tile(p, want);
  }

  // The tile's expected sums and magnitudes (two-sided: the tile's; one-sided: each row's).
  void expected_of(const Pending& p, double* want) const {
    const bool one = opt_.check == AbftCheck::OneSided;
    // Tiles start on whole groups and (two-sided) whole panels: exact quotients, taken by
    // multiplying with the reciprocal (an integer division per tile would cost more than the check).
    const int64_t g0 = exact_quotient(p.j, inv_width_);
    const int64_t g1 = g0 + (p.t.nr == width_ ? 1 : (p.t.nr + width_ - 1) / width_);
    const int lines = one ? p.t.mr : 1;
    for (int r = 0; r < lines; ++r) {
      want[2 * r] = want[2 * r + 1] = 0;
      const int64_t slot = (one ? p.i + r : exact_quotient(p.i, inv_mr_)) * ng_;
      for (const double* st = &state_[size_t((slot + g0) * 2)]; st < &state_[size_t((slot + g1) * 2)]; st += 2) {
        want[2 * r] += st[0];
        want[2 * r + 1] += st[1];
      }
    }
  }

  // want: the (expected, magnitude) pairs read by check().
  void check_tile(Pending& p, const double* want) {
    MicroTile& t = p.t;
    const double alpha = g_.alpha;
    double worst = 0, residual = 0, bound = 0;
    bool bad = false;
    auto test = [&](double actual, double expected, double magnitude) {
      const double r = actual - alpha * expected, bd = bound_of(std::fabs(alpha) * magnitude);
      const double ratio = std::fabs(r) / bd;
      if (!(ratio <= 1.0)) {
        if (!bad || std::fabs(r) > std::fabs(residual)) {
          residual = r;
          bound = bd;
        }
        bad = true;
      }
      worst = std::max(worst, std::isnan(ratio) ? std::numeric_limits<double>::infinity() : ratio);
    };
    if (opt_.check == AbftCheck::TwoSided) {
      test(p.total, want[0], want[1]);
    } else {
      for (int ii = 0; ii < t.mr; ++ii) test(p.rows[ii], want[2 * ii], want[2 * ii + 1]);
    }
    BlockState& b = t_block;
    ++b.tiles;
    b.worst = std::max(b.worst, worst);
    if (bad) handle(t, p.i, p.j, residual, bound);
  }

  // Locates the error in a flagged tile from fp64 row and column checks and repairs it.
  void handle(MicroTile& t, int64_t i, int64_t j, double residual, double bound) {
    const int64_t k = g_.k;
    const double alpha = g_.alpha;
    std::vector<double> bsum(size_t(k), 0.0), babs(size_t(k), 0.0), asum(size_t(k), 0.0), aabs(size_t(k), 0.0);
    for (int64_t p = 0; p < k; ++p) {
      for (int jj = 0; jj < t.nr; ++jj) {
        const double v = B(p, j + jj);
        bsum[size_t(p)] += v;
        babs[size_t(p)] += std::fabs(v);
      }
      for (int ii = 0; ii < t.mr; ++ii) {
        const double v = A(i + ii, p);
        asum[size_t(p)] += v;
        aabs[size_t(p)] += std::fabs(v);
      }
    }
    std::vector<int> bad_rows, bad_cols;
    for (int ii = 0; ii < t.mr; ++ii) {
      double want = 0, mag = 0, got = 0;
      for (int64_t p = 0; p < k; ++p) {
        const double a = A(i + ii, p);
        want += a * bsum[size_t(p)];
        mag += std::fabs(a) * babs[size_t(p)];
      }
      for (int jj = 0; jj < t.nr; ++jj) got += t.c[ii * t.ldc + jj];
      if (!(std::fabs(got - alpha * want) <= bound_of(std::fabs(alpha) * mag))) bad_rows.push_back(ii);
    }
    for (int jj = 0; jj < t.nr; ++jj) {
      double want = 0, mag = 0, got = 0;
      for (int64_t p = 0; p < k; ++p) {
        const double b = B(p, j + jj);
        want += asum[size_t(p)] * b;
        mag += aabs[size_t(p)] * std::fabs(b);
      }
      for (int ii = 0; ii < t.mr; ++ii) got += t.c[ii * t.ldc + jj];
      if (!(std::fabs(got - alpha * want) <= bound_of(std::fabs(alpha) * mag))) bad_cols.push_back(jj);
    }
    auto exact = [&](int ii, int jj) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) s += double(A(i + ii, p)) * double(B(p, j + jj));
      return float(alpha * s);
    };
    AbftEvent e;
    e.row0 = i;
    e.col0 = j;
    e.rows = t.mr;
    e.cols = t.nr;
    e.residual = residual;
    e.bound = bound;
    if (bad_rows.size() == 1 && bad_cols.size() == 1) {
      const int ii = bad_rows[0], jj = bad_cols[0];
      float& c = t.c[ii * t.ldc + jj];
      e.row = i + ii;
      e.col = j + jj;
      e.before = c;
      if (opt_.correct) {
        c = exact(ii, jj);
        e.action = AbftAction::Corrected;
      }
      e.after = c;
    } else if (opt_.correct) {
      for (int ii = 0; ii < t.mr; ++ii)
        for (int jj = 0; jj < t.nr; ++jj) t.c[ii * t.ldc + jj] = exact(ii, jj);
      e.action = AbftAction::Recomputed;
    }
    if (swap_) {
      std::swap(e.row0, e.col0);
      std::swap(e.rows, e.cols);
      std::swap(e.row, e.col);
    }
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(e);
  }

  SgemmArgs g_;
  AbftOptions opt_;
  const float* groups_;
  int width_;
  bool swap_;
  const AbftKernels& hk_;
  int64_t ng_ = 0;
  int64_t mr_ = current_blocking().mr;
  double inv_mr_ = 1.0 / double(mr_), inv_width_ = 1.0 / double(width_);
  std::vector<double>& state_;  // per (panel or row, column group): expected, magnitude
  std::atomic<int64_t> tiles_{0};
  std::mutex mu_;
  double max_ratio_ = 0;
  std::vector<AbftEvent> events_;
  bool fault_armed_ = false;
  int64_t fault_row_ = 0, fault_col_ = 0;
  int fault_bit_ = 0;
};

}  // namespace

int abft_group_width() {
  const KernelSet& ks = active_kernels();
  const Blocking b = current_blocking();
  int g = gcd(int(b.nr), 64);  // 64: the column unit of the few-row path's thread split
  for (int r = 1; r <= b.mr && r < 8; ++r) g = gcd(g, observed_tile_cols(ks, r));
  return std::max(1, g);
}

int64_t abft_group_sums_size(int64_t k, int64_t n, int width) { return 2 * k * ((n + width - 1) / width); }

void abft_group_sums(Transpose trans_b, int64_t k, int64_t n, const float* b, int64_t ldb, int width, float* out) {
  if (width < 1 || width > 4096) throw_expected(ErrorKind::Range, "a group width in [1, 4096]", "width", std::to_string(width));
  const int64_t ng = (n + width - 1) / width;
  parallel_for(ng, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, k * width)), [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t j0 = g * width, j1 = std::min(n, j0 + width);
      float* o = out + g * k * 2;
      if (trans_b == Transpose::Yes) {
        std::fill(o, o + 2 * k, 0.0f);
        for (int64_t j = j0; j < j1; ++j) {
          const float* bj = b + j * ldb;
          for (int64_t p = 0; p < k; ++p) {
            o[2 * p] += bj[p];
            o[2 * p + 1] += std::fabs(bj[p]);
          }
        }
      } else {
        for (int64_t p = 0; p < k; ++p) {
          const float* bp = b + p * ldb;
          float s = 0, m = 0;
          for (int64_t j = j0; j < j1; ++j) {
            s += bp[j];
            m += std::fabs(bp[j]);
          }
          o[2 * p] = s;
          o[2 * p + 1] = m;
        }
      }
    }
  });
}

void check_sgemm_checked(const SgemmArgs& args, const AbftOptions& opt, int64_t a_len, int64_t b_len, int64_t c_len) {
  check_sgemm(args, a_len, b_len, c_len);
  if (args.beta != 0.0f)
    throw_expected(ErrorKind::Range, "beta == 0 (a checked GEMM computes C = alpha * op(A) * op(B))", "beta", std::to_string(args.beta));
  if (!(opt.tolerance > 0.0) || !std::isfinite(opt.tolerance))
    throw_expected(ErrorKind::Range, "a finite tolerance > 0", "tolerance", std::to_string(opt.tolerance));
  if (opt.b_group_sums) {
    if (args.layout != Layout::RowMajor)
      throw_expected(ErrorKind::Range, "row-major layout with precomputed group sums", "layout", "column-major");
    if (opt.b_group_width < 1 || opt.b_group_width > 4096)
      throw_expected(ErrorKind::Range, "a group width in [1, 4096]", "bGroupWidth", std::to_string(opt.b_group_width));
    const int64_t need = abft_group_sums_size(args.k, args.n, opt.b_group_width);
    if (opt.b_group_sums_len != need)
      throw_expected(ErrorKind::Range, std::to_string(need) + " elements (2 * k * ceil(n / width))", "bGroupSums",
                     std::to_string(opt.b_group_sums_len) + " elements");
  }
}

AbftReport sgemm_checked(const SgemmArgs& args, const AbftOptions& opt) {
  constexpr int64_t kUnbounded = std::numeric_limits<int64_t>::max();
  check_sgemm_checked(args, opt, kUnbounded, kUnbounded, kUnbounded);
  g_fault_fired.store(false);
  const SgemmArgs g = as_row_major(args);
  const bool nonempty = g.m > 0 && g.n > 0;
  if (nonempty && !g.c) throw_expected(ErrorKind::Type, "a non-null buffer", "c", "null");
  if (!nonempty || g.k == 0 || g.alpha == 0.0f) {
    sgemm(args);  // C = 0 (beta is 0): nothing to check
    return AbftReport{};
  }
  if (!g.a) throw_expected(ErrorKind::Type, "a non-null buffer", "a", "null");
  if (!g.b) throw_expected(ErrorKind::Type, "a non-null buffer", "b", "null");
  const int width = abft_group_width();
  const KernelSet& ks = active_kernels();
  if (*std::max_element(ks.wide_nr, ks.wide_nr + 8) > kMaxTileCols || ks.nr > kMaxTileCols)
    throw Error(ErrorKind::Internal, std::string("checked sgemm: a register tile of ") + ks.name + " is wider than the check's buffer");
  thread_local std::vector<float> own;
  const float* groups = opt.b_group_sums;
  int used = opt.b_group_width;
  if (!groups || width % used != 0) {
    own.resize(size_t(abft_group_sums_size(g.k, g.n, width)));
    abft_group_sums(g.trans_b, g.k, g.n, g.b, g.ldb, width, own.data());
    groups = own.data();
    used = width;
  }
  thread_local std::vector<double> state;
  Checker checker(g, opt, groups, used, args.layout == Layout::ColMajor, state);
  sgemm_observed(g, checker);
  AbftReport report = checker.report();
  // Every driver path taken with an observer must run its tiles through it; a path that does not
  // (a new small-M kernel, say) would leave C unchecked, which must never pass silently.
  if (report.tiles == 0)
    throw Error(ErrorKind::Internal, "checked sgemm ran a driver path without tile checks (" + std::to_string(g.m) + "x" +
                                         std::to_string(g.n) + "x" + std::to_string(g.k) + ")");
  return report;
}

void abft_row_check(Transpose trans_a, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const double* bsum,
                    const double* babs, const float* c, int64_t ldc, double* expected, double* magnitude, double* actual) {
  const AbftKernels& hk = check_kernels();
  parallel_for(m, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(1, k + n)), [&](int64_t i0, int64_t i1) {
    if (trans_a == Transpose::No) {
      for (int64_t i = i0; i < i1; ++i) {
        double out3[3] = {0, 0, 0};
        hk.row_check(a + i * lda, bsum, babs, k, c + i * ldc, n, out3);
        expected[i] = out3[0];
        magnitude[i] = out3[1];
        actual[i] = out3[2];
      }
      return;
    }
    // Columns of a stored A: run along its rows (contiguous in i), every row of the range at once.
    std::fill(expected + i0, expected + i1, 0.0);
    std::fill(magnitude + i0, magnitude + i1, 0.0);
    for (int64_t p = 0; p < k; ++p) {
      const float* ap = a + p * lda;
      const double bs = bsum[p], ba = babs[p];
      for (int64_t i = i0; i < i1; ++i) {
        expected[i] += double(ap[i]) * bs;
        magnitude[i] += std::fabs(double(ap[i])) * ba;
      }
    }
    for (int64_t i = i0; i < i1; ++i) {
      double row[3] = {0, 0, 0};
      hk.row_check(nullptr, nullptr, nullptr, 0, c + i * ldc, n, row);
      actual[i] = row[2];
    }
  });
}

void sgemm_row_checked(const SgemmArgs& args, const double* bsum, const double* babs, double* expected, double* magnitude,
                       double* actual) {
  if (args.layout != Layout::RowMajor) throw_expected(ErrorKind::Range, "a row-major call", "layout", "column-major");
  sgemm(args);
  abft_row_check(args.trans_a, args.m, args.n, args.k, args.a, args.lda, bsum, babs, args.c, args.ldc, expected, magnitude, actual);
}

void set_abft_fault(int64_t row, int64_t col, int bit) {
  if (row < 0) throw_expected(ErrorKind::Range, "row >= 0", "row", std::to_string(row));
  if (col < 0) throw_expected(ErrorKind::Range, "col >= 0", "col", std::to_string(col));
  if (bit < 0 || bit > 31) throw_expected(ErrorKind::Range, "a bit in [0, 31]", "bit", std::to_string(bit));
  Fault& f = fault();
  std::lock_guard<std::mutex> lock(f.mu);
  f.armed = true;
  f.row = row;
  f.col = col;
  f.bit = bit;
}

void clear_abft_fault() {
  Fault& f = fault();
  std::lock_guard<std::mutex> lock(f.mu);
  f.armed = false;
}

bool abft_fault_fired() { return g_fault_fired.load(); }

}  // namespace kintsugi
