// sgemm against the double-accumulating reference, on every ISA path this CPU has, with 1 and
// several threads. Operands are stored with padding filled with NaN (a kernel that reads past an
// operand's extent poisons its result) and C sits inside a sentinel-filled buffer (a kernel that
// writes outside C's m x n extent is caught). Small-integer fills make float sums exact, so most
// comparisons are bit for bit.
#include <cfloat>
#include <cmath>
#include <cstring>
#include <string>

#include "../src/cpu/gemm_internal.h"
#include "harness.h"
#include "kintsugi/cpu.h"
#include "kintsugi/error.h"
#include "kintsugi/gemm.h"
#include "kintsugi/threadpool.h"

using namespace kintsugi;
using kintsugi::gemm_internal::Blocking;
using kintsugi::gemm_internal::set_blocking_override;

namespace {

const float kSentinel = -12345.5f;
bool g_single_thread = false;

struct Matrix {
  std::vector<float> data;
  int64_t rows = 0, cols = 0, ld = 0;
  bool row_major = true;
  float& at(int64_t i, int64_t j) { return row_major ? data[size_t(i * ld + j)] : data[size_t(i + j * ld)]; }
};

int64_t stored_len(int64_t outer, int64_t inner, int64_t ld) { return outer == 0 || inner == 0 ? 0 : (outer - 1) * ld + inner; }

// A rows x cols matrix in `layout` with leading dimension inner + pad, padding = fill_pad,
// plus `guard` extra elements of fill_pad after the end.
Matrix make_matrix(Layout layout, int64_t rows, int64_t cols, int64_t pad, float fill_pad, int64_t guard = 0) {
  Matrix m;
  m.rows = rows;
  m.cols = cols;
  m.row_major = layout == Layout::RowMajor;
  int64_t inner = m.row_major ? cols : rows, outer = m.row_major ? rows : cols;
  m.ld = std::max<int64_t>(1, inner) + pad;
  m.data.assign(size_t(stored_len(outer, inner, m.ld) + guard + 1), fill_pad);
  return m;
}

enum class Fill { Ints, Floats };

void fill(Matrix& m, Fill f, uint32_t seed) {
  auto v = f == Fill::Ints ? harness::random_small_ints(size_t(m.rows * m.cols), seed)
                           : harness::random_floats(size_t(m.rows * m.cols), seed);
  size_t idx = 0;
  for (int64_t i = 0; i < m.rows; ++i)
    for (int64_t j = 0; j < m.cols; ++j) m.at(i, j) = v[idx++];
}

struct Case {
  Layout layout = Layout::RowMajor;
  Transpose ta = Transpose::No, tb = Transpose::No;
  int64_t m = 1, n = 1, k = 1;
  float alpha = 1.0f, beta = 0.0f;
  int64_t pad_a = 0, pad_b = 0, pad_c = 0;
  Fill fill = Fill::Ints;
  bool nan_c = false;  // C starts as NaN (with beta == 0 it must not propagate)
  bool packed = false;  // multiply through pack_b + sgemm_packed
  uint32_t seed = 1;
};

// A default case of the given size.
Case sized_case(int64_t m, int64_t n, int64_t k) {
  Case c;
  c.m = m;
  c.n = n;
  c.k = k;
  return c;
}

std::string describe(const Case& c) {
  std::ostringstream s;
  s << "isa=" << isa_name(active_isa()) << " threads=" << (g_single_thread ? 1 : num_threads()) << " " << (c.layout == Layout::RowMajor ? "row" : "col")
    << " ta=" << (c.ta == Transpose::Yes) << " tb=" << (c.tb == Transpose::Yes) << " m=" << c.m << " n=" << c.n << " k=" << c.k
    << " alpha=" << c.alpha << " beta=" << c.beta << " pads=" << c.pad_a << "," << c.pad_b << "," << c.pad_c
    << (c.packed ? " packed" : "") << (c.nan_c ? " nanC" : "");
  return s.str();
}

// Tolerance for random floats in [-1, 1): float accumulation of k products, each rounded, errs
// by at most ~k * eps * sum|a||b| <= k * eps * k; blocked sums err far less. We allow
// atol = rtol = 2 * (k + 2) * FLT_EPSILON, i.e. about 1e-3 at k = 4099 where values are ~20.
double tolerance(int64_t k) { return 2.0 * double(k + 2) * FLT_EPSILON; }

// Runs one case through sgemm (or the packed API) and the reference; returns false on mismatch.
bool run_case(const Case& c, Matrix* a_out = nullptr, Matrix* b_out = nullptr) {
  int64_t a_rows = c.ta == Transpose::No ? c.m : c.k, a_cols = c.ta == Transpose::No ? c.k : c.m;
  int64_t b_rows = c.tb == Transpose::No ? c.k : c.n, b_cols = c.tb == Transpose::No ? c.n : c.k;
  Matrix A = make_matrix(c.layout, a_rows, a_cols, c.pad_a, NAN);
  Matrix B = make_matrix(c.layout, b_rows, b_cols, c.pad_b, NAN);
  fill(A, c.fill, c.seed);
  fill(B, c.fill, c.seed + 1000);
  if (a_out) {
    // Caller-provided values (e.g. NaN/Inf injections) replace the random ones.
    for (int64_t i = 0; i < a_rows; ++i)
      for (int64_t j = 0; j < a_cols; ++j) A.at(i, j) = a_out->at(i, j);
  }
  if (b_out) {
    for (int64_t i = 0; i < b_rows; ++i)
      for (int64_t j = 0; j < b_cols; ++j) B.at(i, j) = b_out->at(i, j);
  }
  const int64_t guard = 37;
  Matrix C = make_matrix(c.layout, c.m, c.n, c.pad_c, kSentinel, guard);
  if (c.nan_c) {
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j) C.at(i, j) = NAN;
  } else {
    fill(C, c.fill, c.seed + 2000);
  }
  Matrix R = C;

  SgemmArgs g;
  g.layout = c.layout;
  g.trans_a = c.ta;
  g.trans_b = c.tb;
  g.m = c.m;
  g.n = c.n;
  g.k = c.k;
  g.alpha = c.alpha;
  g.beta = c.beta;
  g.a = A.data.data();
  g.lda = A.ld;
  g.b = B.data.data();
  g.ldb = B.ld;
  g.c = C.data.data();
  g.ldc = C.ld;
  check_sgemm(g, int64_t(A.data.size()), int64_t(B.data.size()), int64_t(C.data.size()));
  if (c.packed) {
    PackedMatrixPtr p = pack_b(c.layout, c.tb, c.k, c.n, B.data.data(), B.ld);
    CHECK(packed_rows(*p) == c.k && packed_cols(*p) == c.n) << describe(c);
    SgemmArgs h = g;
    h.b = nullptr;
    sgemm_packed(h, *p);
  } else {
    sgemm(g);
  }
  SgemmArgs r = g;
  r.c = R.data.data();
  sgemm_reference(r);

  bool ok = true;
  // Everything outside the m x n extent (row padding and the guard) must be untouched.
  std::vector<char> inside(C.data.size(), 0);
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < c.n; ++j) inside[size_t(&C.at(i, j) - C.data.data())] = 1;
  for (size_t i = 0; i < C.data.size(); ++i)
    if (!inside[i] && std::memcmp(&C.data[i], &kSentinel, sizeof(float)) != 0) {
      CHECK(false) << "wrote outside C at offset " << i << ": " << describe(c);
      ok = false;
      break;
    }
  std::vector<float> got, want;
  for (int64_t i = 0; i < c.m; ++i)
    for (int64_t j = 0; j < c.n; ++j) {
      got.push_back(C.at(i, j));
      want.push_back(R.at(i, j));
    }
  size_t where = 0;
  double tol = c.fill == Fill::Ints ? 0.0 : tolerance(c.k);
  double err = harness::worst_error(got.data(), want.data(), got.size(), tol, tol, &where);
  bool match = c.fill == Fill::Ints ? err == 0.0 || (tol == 0.0 && err == 0) : err <= 1.0;
  if (c.fill == Fill::Ints) {
    // Exact: bit-for-bit equal, NaN matching NaN.
    match = true;
    for (size_t i = 0; i < got.size(); ++i) {
      bool same = (std::isnan(got[i]) && std::isnan(want[i])) || got[i] == want[i];
      if (!same) {
        match = false;
        where = i;
        break;
      }
    }
  }
  if (!match) {
    CHECK(false) << describe(c) << " at (" << (c.n ? where / size_t(c.n) : 0) << "," << (c.n ? where % size_t(c.n) : 0)
                 << ") got " << (got.empty() ? 0 : got[where]) << " want " << (want.empty() ? 0 : want[where]) << " err " << err;
    ok = false;
  }
  return ok;
}

// Runs body() for every ISA, once on one thread and once on the whole pool. One thread is
// forced by running inside a one-thread parallel_run (nested calls run inline), so the pool is
// never resized between jobs.
template <typename F> void for_each_path(F body) {
  for (Isa isa : harness::supported_isas()) {
    set_isa_limit(isa);
    g_single_thread = true;
    kintsugi::parallel_run(1, [&](int, int) { body(); });
    g_single_thread = false;
    body();
  }
  set_isa_limit(Isa::Avx512);
}

struct Shape {
  int64_t m, n, k;
};

const Transpose kTrans[2] = {Transpose::No, Transpose::Yes};
const Layout kLayouts[2] = {Layout::RowMajor, Layout::ColMajor};

// Every layout and transpose combination for each shape; stops at the first failure per path.
void sweep(const std::vector<Shape>& shapes, Fill f, float alpha, float beta, int64_t pad, bool packed = false) {
  for (const Shape& s : shapes)
    for (Layout l : kLayouts)
      for (Transpose ta : kTrans)
        for (Transpose tb : kTrans) {
          Case c = sized_case(s.m, s.n, s.k);
          c.layout = l;
          c.ta = ta;
          c.tb = tb;
          c.alpha = alpha;
          c.beta = beta;
          c.pad_a = pad;
          c.pad_b = pad * 2 + 1;
          c.pad_c = pad * 3;
          c.fill = f;
          c.packed = packed;
          c.seed = uint32_t(s.m * 7 + s.n * 13 + s.k * 31);
          if (!run_case(c)) return;
        }
}

const std::vector<Shape> kEdgeShapes = {
    {1, 1, 1},   {1, 1, 7},    {2, 3, 5},    {7, 9, 3},    {13, 17, 19}, {14, 32, 8},  {15, 33, 9},
    {6, 16, 4},  {5, 15, 31},  {29, 65, 20}, {30, 100, 7}, {64, 64, 64}, {3, 130, 17}, {1, 257, 33},
    {40, 3, 50}, {100, 1, 10}, {1, 100, 1},  {33, 47, 129}};

}  // namespace

TEST(exact_small_integer_shapes_every_path) {
  // First test, before any parallel job: 3 threads (on 2 cores) also exercise uneven splits.
  if (num_threads() == 2) set_num_threads(3);
  for_each_path([] {
    sweep(kEdgeShapes, Fill::Ints, 1.0f, 0.0f, 0);
    sweep({{13, 37, 11}, {50, 20, 30}}, Fill::Ints, 2.0f, -1.0f, 3);
    sweep({{9, 70, 21}}, Fill::Ints, -1.0f, 0.5f, 1);
  });
}

TEST(tiny_blocks_exercise_kc_mc_nc_edges) {
  // Blocks much smaller than the problem: several KC passes (beta applied once), MC and NC
  // remainders, and NC splits across threads.
  for_each_path([] {
    Blocking b;
    b.kc = 5;
    b.mc = 2 * gemm_internal::active_kernels().mr + 1;
    b.nc = 3 * gemm_internal::active_kernels().nr;
    set_blocking_override(b);
    sweep({{37, 101, 23}, {1, 70, 12}, {90, 40, 9}}, Fill::Ints, 1.0f, 2.0f, 2);
    sweep({{37, 101, 23}}, Fill::Ints, 1.0f, 0.0f, 0, true);
    // Packed A (instead of reading it in place) and a 14 x 32 tile where the ISA has them.
    b.direct_a = 0;
    if (gemm_internal::active_kernels().max_rows >= 14) {
      b.mr = 14;
      b.nr = 32;
      b.mc = 29;
      b.nc = 96;
    }
    set_blocking_override(b);
    sweep({{37, 101, 23}, {15, 33, 9}}, Fill::Ints, 1.0f, 2.0f, 2);
    sweep({{37, 101, 23}}, Fill::Ints, 1.0f, 0.0f, 0, true);
    b.direct_a = 1;  // and A in place on every ISA
    set_blocking_override(b);
    sweep({{37, 101, 23}}, Fill::Ints, 1.0f, 2.0f, 2);
    set_blocking_override(Blocking{});
  });
}

TEST(random_floats_within_k_scaled_tolerance) {
  for_each_path([] {
    sweep({{129, 77, 300}, {70, 257, 65}}, Fill::Floats, 0.75f, 0.25f, 1);
  });
  // Large K on the best path and the AVX2 path only (the reference costs m*n*k).
  for (Isa isa : harness::supported_isas()) {
    set_isa_limit(isa);
    Case c = sized_case(19, 45, 4099);
    c.fill = Fill::Floats;
    for (Transpose ta : kTrans)
      for (Transpose tb : kTrans)
        for (Layout l : kLayouts) {
          c.ta = ta;
          c.tb = tb;
          c.layout = l;
          run_case(c);
        }
    c.fill = Fill::Ints;  // |sums| <= 9 * 4099 < 2^24: still exact
    c.layout = Layout::RowMajor;
    c.m = 3;
    c.n = 200;
    run_case(c);
  }
  set_isa_limit(Isa::Avx512);
}

TEST(beta_zero_ignores_nan_in_c) {
  for_each_path([] {
    for (bool packed : {false, true})
      for (Layout l : kLayouts) {
        Case c = sized_case(23, 41, 17);
        c.layout = l;
        c.nan_c = true;
        c.packed = packed;
        run_case(c);
        c.m = 1;  // small-M streaming path
        c.n = 300;
        run_case(c);
        c.m = 30;
        c.alpha = 0.0f;  // alpha == 0, beta == 0: zeros, not NaN
        run_case(c);
      }
  });
}

TEST(alpha_zero_and_k_zero_scale_c_by_beta) {
  for_each_path([] {
    for (Layout l : kLayouts) {
      Case c = sized_case(9, 21, 0);
      c.layout = l;
      c.beta = 3.0f;
      c.pad_c = 2;
      run_case(c);
      c.beta = 0.0f;
      c.nan_c = true;
      run_case(c);
      c.nan_c = false;
      c.k = 13;
      c.alpha = 0.0f;
      c.beta = -2.0f;
      run_case(c);
      c.beta = 1.0f;
      run_case(c);
      c.packed = true;
      c.k = 0;
      c.beta = 0.5f;
      run_case(c);
    }
  });
}

TEST(empty_dimensions_touch_nothing) {
  for_each_path([] {
    for (Shape s : std::vector<Shape>{{0, 5, 3}, {4, 0, 3}, {0, 0, 0}, {0, 3, 0}})
      for (Layout l : kLayouts) {
        Case c = sized_case(s.m, s.n, s.k);
        c.layout = l;
        c.beta = 2.0f;
        run_case(c);
        c.packed = true;
        run_case(c);
      }
  });
}

TEST(nan_and_inf_in_operands_propagate) {
  for_each_path([] {
    for (Layout l : kLayouts)
      for (Transpose tb : kTrans)
        for (int64_t m : {3, 40}) {
          Case c = sized_case(m, 35, 12);
          c.layout = l;
          c.tb = tb;
          int64_t b_rows = tb == Transpose::No ? c.k : c.n, b_cols = tb == Transpose::No ? c.n : c.k;
          Matrix A = make_matrix(l, c.m, c.k, 0, 0.0f);
          Matrix B = make_matrix(l, b_rows, b_cols, 0, 0.0f);
          fill(A, Fill::Ints, 5);
          fill(B, Fill::Ints, 6);
          A.at(1, 4) = NAN;  // row 1 of C becomes NaN
          A.at(m - 1, 0) = INFINITY;
          if (tb == Transpose::No)
            B.at(7, 20) = -INFINITY;
          else
            B.at(20, 7) = -INFINITY;
          run_case(c, &A, &B);
          c.packed = true;
          run_case(c, &A, &B);
        }
  });
}

TEST(packed_matches_plain_every_layout) {
  for_each_path([] {
    sweep({{1, 1, 1}, {5, 40, 9}, {31, 67, 45}, {1, 129, 70}, {16, 33, 300}}, Fill::Ints, 1.0f, 0.0f, 1, true);
    sweep({{20, 50, 30}}, Fill::Ints, 2.0f, 1.0f, 0, true);
  });
  // Packed under one ISA, multiplied under another (panel widths differ).
  for (Isa pack_isa : harness::supported_isas())
    for (Isa run_isa : harness::supported_isas()) {
      set_isa_limit(pack_isa);
      std::vector<float> b = harness::random_small_ints(size_t(37 * 45), 3);
      std::vector<float> a = harness::random_small_ints(size_t(11 * 37), 4);
      PackedMatrixPtr p = pack_b(Layout::RowMajor, Transpose::No, 37, 45, b.data(), 45);
      set_isa_limit(run_isa);
      std::vector<float> c1(size_t(11 * 45), NAN), c2(size_t(11 * 45), NAN);
      SgemmArgs g;
      g.m = 11;
      g.n = 45;
      g.k = 37;
      g.a = a.data();
      g.lda = 37;
      g.b = b.data();
      g.ldb = 45;
      g.c = c2.data();
      g.ldc = 45;
      sgemm_reference(g);
      g.c = c1.data();
      g.b = nullptr;
      sgemm_packed(g, *p);
      CHECK(c1 == c2) << "packed with " << isa_name(pack_isa) << ", run with " << isa_name(run_isa);
    }
  set_isa_limit(Isa::Avx512);
}

TEST(small_m_streaming_path) {
  for_each_path([] {
    std::vector<Shape> shapes;
    for (int64_t m : {1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 15})
      shapes.push_back({m, 131 + m, 40 + m});
    for (const Shape& s : shapes)
      for (Transpose ta : kTrans) {
        Case c = sized_case(s.m, s.n, s.k);
        c.ta = ta;
        c.pad_b = 5;
        c.seed = uint32_t(s.m);
        if (!run_case(c)) return;
        c.layout = Layout::ColMajor;  // column-major C = B^T A^T: the small side is n here
        std::swap(c.m, c.n);
        c.tb = Transpose::Yes;
        if (!run_case(c)) return;
      }
    // Row-major op(B) = B^T: the dot-product path for small M (k tails included).
    for (int64_t m : {1, 3, 4, 5, 9, 32, 33})
      for (int64_t k : {1, 15, 16, 47})
        for (float beta : {0.0f, 1.5f}) {
          Case c = sized_case(m, 37, k);
          c.tb = Transpose::Yes;
          c.beta = beta;
          c.nan_c = beta == 0.0f;
          c.pad_a = 3;
          c.pad_b = 2;
          c.pad_c = 1;
          if (!run_case(c)) return;
        }
    // The in-place micro-tile streaming path (row streaming off) with several row tiles and
    // NC blocking.
    Blocking b;
    b.stream_m = 0;
    set_blocking_override(b);
    for (int64_t m : {1, 3, 7}) {
      Case c = sized_case(m, 131, 40);
      c.pad_b = 5;
      if (!run_case(c)) return;
    }
    b.small_m = 1000;
    b.nc = 64;
    b.kc = 16;
    set_blocking_override(b);
    sweep({{33, 150, 40}, {2, 300, 70}}, Fill::Ints, 1.0f, 1.0f, 1);
    set_blocking_override(Blocking{});
  });
}

TEST(few_rows_transposed_form) {
  // 32 < M <= 256 (last 64-column panel of A^T at least 48 wide) and N > M: computed as
  // C^T = op(B)^T op(A)^T with B read in place and A packed, C stored through transposed
  // tiles. Every layout and transpose, odd N and K, padding, alpha/beta, and M values around the
  // rule (40, 96: not taken; 48, 112, 176: taken with a partial panel). The default takes it for
  // a non-transposed B only from N = 2560; 0 lets these small shapes in.
  Blocking all_n;
  all_n.swap_min_n = 0;
  for_each_path([&] {
    set_blocking_override(all_n);
    sweep({{48, 131, 37}, {64, 97, 70}, {112, 150, 9}, {128, 129, 20}, {256, 263, 5}, {40, 90, 11}, {96, 99, 13}}, Fill::Ints,
          1.0f, 0.0f, 1);
    sweep({{64, 200, 33}}, Fill::Ints, 2.0f, -1.0f, 2);
    for (Transpose tb : kTrans) {
      // Both default KC choices (512 down B's columns, longer along B^T rows) crossed.
      Case c = sized_case(48, 70, 600);
      c.tb = tb;
      c.nan_c = true;
      if (!run_case(c)) return;
      c = sized_case(64, 67, 2100);
      c.tb = tb;
      c.fill = Fill::Floats;
      c.beta = 0.5f;
      if (!run_case(c)) return;
    }
    // Several KC blocks (beta applied once, then accumulation).
    Blocking b = all_n;
    b.kc = 16;
    set_blocking_override(b);
    sweep({{64, 77, 50}, {176, 181, 41}}, Fill::Ints, -1.0f, 0.5f, 0);
    set_blocking_override(Blocking{});
  });
}

TEST(row_streaming_path) {
  // B not transposed, M <= stream_m: B walked a row group at a time. Every row count, column
  // counts around the vector and chunk widths, k around the row-group size (8), both op(A)
  // layouts, beta = 0 over NaN and beta != 0, padded leading dimensions; then several row
  // groups (stream_m raised) and a column-major C whose row-major view streams.
  for_each_path([] {
    for (int64_t m = 1; m <= 8; ++m)
      for (int64_t n : {1, 15, 17, 33, 97, 131, 200})
        for (int64_t k : {1, 7, 8, 9, 24, 43})
          for (Transpose ta : kTrans) {
            Case c = sized_case(m, n, k);
            c.ta = ta;
            c.pad_a = 1;
            c.pad_b = 3;
            c.pad_c = 2;
            c.beta = (n + k) % 2 ? 0.0f : 1.5f;
            c.alpha = k % 3 ? 1.0f : -2.0f;
            c.nan_c = c.beta == 0.0f;
            c.seed = uint32_t(m * 1000 + n * 10 + k);
            if (!run_case(c)) return;
          }
    // Big enough (>= 4 MFLOP) to split columns across threads, with an uneven last range.
    // k >= 1024 splits K into segments (partial products reduced at the end), uneven last one.
    for (Shape sh : std::vector<Shape>{{3, 1005, 1400}, {8, 517, 1000}, {2, 300, 2100}, {5, 70, 4099}}) {
      Case c = sized_case(sh.m, sh.n, sh.k);
      c.beta = 0.0f;
      c.nan_c = true;
      c.pad_b = 7;
      if (!run_case(c)) return;
      c.beta = -1.5f;
      c.alpha = 2.0f;
      c.nan_c = false;
      c.ta = Transpose::Yes;
      if (!run_case(c)) return;
    }
    // Floats with a long k (many row groups, partial sums through the scratch).
    for (int64_t m : {1, 5, 8}) {
      Case c = sized_case(m, 300, 1001);
      c.fill = Fill::Floats;
      c.alpha = 0.5f;
      c.beta = -0.25f;
      if (!run_case(c)) return;
    }
    Blocking b;
    b.stream_m = 40;
    set_blocking_override(b);
    for (int64_t m : {9, 16, 17, 33}) {
      Case c = sized_case(m, 75, 19);
      c.beta = 2.0f;
      c.pad_b = 1;
      if (!run_case(c)) return;
      c.layout = Layout::ColMajor;  // row-major view: n x m = op(B)^T op(A)^T with ta = Yes
      c.ta = Transpose::Yes;
      c.tb = Transpose::Yes;
      std::swap(c.m, c.n);
      if (!run_case(c)) return;
    }
    set_blocking_override(Blocking{});
    // NaN / Inf in A and B reach exactly the outputs they should.
    for (int64_t m : {1, 2, 8}) {
      Case c = sized_case(m, 70, 20);
      Matrix A = make_matrix(Layout::RowMajor, c.m, c.k, 0, 0.0f);
      Matrix B = make_matrix(Layout::RowMajor, c.k, c.n, 0, 0.0f);
      fill(A, Fill::Ints, 5);
      fill(B, Fill::Ints, 6);
      A.at(m - 1, 9) = NAN;
      B.at(3, 66) = INFINITY;
      B.at(17, 5) = -INFINITY;
      if (!run_case(c, &A, &B)) return;
    }
  });
}

TEST(row_streaming_is_thread_count_independent) {
  // K segments are fixed by k alone, so float results are bitwise equal on 1 and N threads.
  for (Isa isa : harness::supported_isas()) {
    set_isa_limit(isa);
    for (Shape sh : std::vector<Shape>{{1, 2000, 3000}, {6, 777, 2100}, {4, 1500, 900}}) {
      std::vector<float> a = harness::random_floats(size_t(sh.m * sh.k), 21), b = harness::random_floats(size_t(sh.k * sh.n), 22);
      std::vector<float> c1(size_t(sh.m * sh.n), NAN), c2 = c1;
      SgemmArgs g;
      g.m = sh.m;
      g.n = sh.n;
      g.k = sh.k;
      g.a = a.data();
      g.lda = sh.k;
      g.b = b.data();
      g.ldb = sh.n;
      g.ldc = sh.n;
      g.c = c1.data();
      kintsugi::parallel_run(1, [&](int, int) { sgemm(g); });
      g.c = c2.data();
      sgemm(g);
      CHECK(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)) == 0) << isa_name(isa) << " m=" << sh.m << " k=" << sh.k;
    }
  }
  set_isa_limit(Isa::Avx512);
}

// After a kernel call with alpha = 2, beta = -1 and the ABFT hook on: C (mr rows of ldc, the first
// n columns written) must be 2 A B - C0 exactly and untouched past column n, and rows / cols (set
// to 1 / 2 before the call) must hold the row / column sums of the values written, added to
// those starting values (`adds`: the streaming kernel) or in their place (the micro-kernel).
// A(i, p) at a[i * a_row + p * a_col], B(p, j) at b[p * ldb + j].
bool hooked_tile_matches(const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t ldb, int64_t k, int mr,
                         int64_t n, int64_t ldc, const std::vector<float>& c0, const std::vector<float>& c,
                         const std::vector<float>& rows, const std::vector<float>& cols, bool adds) {
  bool ok = true;
  std::vector<double> want_rows(size_t(mr), adds ? 1.0 : 0.0), want_cols(size_t(n), adds ? 2.0 : 0.0);
  for (int i = 0; i < mr; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      float want = c0[size_t(i * ldc + j)];
      if (j < n) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += double(a[size_t(i * a_row + p * a_col)]) * b[size_t(p * ldb + j)];
        want = float(2.0 * s - c0[size_t(i * ldc + j)]);
        want_rows[size_t(i)] += want;
        want_cols[size_t(j)] += want;
      }
      ok = ok && c[size_t(i * ldc + j)] == want;
    }
  for (int i = 0; i < mr; ++i) ok = ok && rows[size_t(i)] == float(want_rows[size_t(i)]);
  for (int64_t j = 0; j < n; ++j) ok = ok && cols[size_t(j)] == float(want_cols[size_t(j)]);
  return ok;
}

TEST(stream_kernel_checksum_hook) {
  // The ABFT hook on the row-streaming kernel: row and column sums of what it wrote to C.
  for (Isa isa : harness::supported_isas()) {
    set_isa_limit(isa);
    const auto& ks = gemm_internal::active_kernels();
    if (!ks.stream) continue;
    for (int mr = 1; mr <= ks.stream_mr; ++mr)
      for (int64_t n : {5, 16, 100})
        for (int64_t k : {3, 8, 21}) {
          std::vector<float> a = harness::random_small_ints(size_t(mr * k), uint32_t(mr + n));
          std::vector<float> b = harness::random_small_ints(size_t(k * n), uint32_t(k));
          const int64_t ldc = n + 3;
          std::vector<float> c = harness::random_small_ints(size_t(mr * ldc), 3), c0 = c;
          std::vector<float> rows(size_t(mr), 1.0f), cols(size_t(n), 2.0f), acc(size_t(mr * n), NAN);
          gemm_internal::StreamTile t;
          t.k = k;
          t.a = a.data();
          t.a_stride = 1;
          t.a_row_stride = k;
          t.b = b.data();
          t.ldb = n;
          t.n = n;
          t.mr = mr;
          t.c = c.data();
          t.ldc = ldc;
          t.alpha = 2.0f;
          t.beta = -1.0f;
          t.acc = acc.data();
          t.row_sums = rows.data();
          t.col_sums = cols.data();
          ks.stream(t);
          CHECK(hooked_tile_matches(a.data(), k, 1, b.data(), n, k, mr, n, ldc, c0, c, rows, cols, true))
              << ks.name << " stream mr=" << mr << " n=" << n << " k=" << k;
        }
  }
  set_isa_limit(Isa::Avx512);
}

TEST(micro_kernel_checksum_hook) {
  // The ABFT hook: row and column sums of the tile written to C replace what the arrays held.
  for (Isa isa : harness::supported_isas()) {
    set_isa_limit(isa);
    const auto& ks = gemm_internal::active_kernels();
    for (int mr : {1, ks.mr}) {
      for (int nr : {1, ks.nr - 1, ks.nr}) {
        const int k = 9;
        std::vector<float> a = harness::random_small_ints(size_t(k * ks.mr), 1);
        std::vector<float> b = harness::random_small_ints(size_t(k * ks.nr), 2);
        std::vector<float> c = harness::random_small_ints(size_t(mr * (nr + 3)), 3);
        std::vector<float> c0 = c, rows(size_t(mr), 1.0f), cols(size_t(nr), 2.0f);
        gemm_internal::MicroTile t;
        t.k = k;
        t.a = a.data();
        t.a_stride = ks.mr;
        t.b = b.data();
        t.b_stride = ks.nr;
        t.c = c.data();
        t.ldc = nr + 3;
        t.mr = mr;
        t.nr = nr;
        t.alpha = 2.0f;
        t.beta = -1.0f;
        t.row_sums = rows.data();
        t.col_sums = cols.data();
        ks.micro(t);
        CHECK(hooked_tile_matches(a.data(), 1, ks.mr, b.data(), ks.nr, k, mr, nr, nr + 3, c0, c, rows, cols, false))
            << ks.name << " mr=" << mr << " nr=" << nr;
      }
    }
  }
  set_isa_limit(Isa::Avx512);
}

TEST(invalid_arguments_throw_range_errors) {
  SgemmArgs g;
  g.m = 2;
  g.n = 3;
  g.k = 4;
  g.lda = 4;
  g.ldb = 3;
  g.ldc = 3;
  CHECK_THROWS_KIND(check_sgemm(g, 8, 12, 5), ErrorKind::Range);  // c too short
  try {
    check_sgemm(g, 8, 12, 5);
    CHECK(false) << "no throw";
  } catch (const Error& e) {
    CHECK(std::string(e.what()) == "Expected at least 6 elements for c but received 5") << e.what();
  }
  g.lda = 3;
  CHECK_THROWS_KIND(check_sgemm(g, 100, 100, 100), ErrorKind::Range);
  std::vector<float> buf(100, 1.0f);
  g.a = g.b = buf.data();
  g.c = buf.data();
  CHECK_THROWS_KIND(sgemm(g), ErrorKind::Range);
  g.lda = 4;
  g.m = -1;
  CHECK_THROWS_KIND(sgemm(g), ErrorKind::Range);
  CHECK_THROWS_KIND(pack_b(Layout::RowMajor, Transpose::No, -1, 3, buf.data(), 3), ErrorKind::Range);
  CHECK_THROWS_KIND(pack_b(Layout::RowMajor, Transpose::No, 4, 3, buf.data(), 2), ErrorKind::Range);
  PackedMatrixPtr p = pack_b(Layout::RowMajor, Transpose::No, 4, 3, buf.data(), 3);
  g.m = 2;
  g.k = 5;  // does not match the packed rows
  g.lda = 5;
  CHECK_THROWS_KIND(sgemm_packed(g, *p), ErrorKind::Range);
}

TEST(bigger_square_matches_reference_spot_check) {
  // A size that crosses the default MC and KC blocks on the best path with all threads; the
  // BLIS-style check C t == A (B t) with a random vector t keeps the oracle cheap.
  const int64_t m = 517, n = 611, k = 700;
  std::vector<float> a = harness::random_floats(size_t(m * k), 11), b = harness::random_floats(size_t(k * n), 12);
  std::vector<float> c(size_t(m * n), NAN), t = harness::random_floats(size_t(n), 13);
  for (Isa isa : harness::supported_isas()) {
    set_isa_limit(isa);
    SgemmArgs g;
    g.m = m;
    g.n = n;
    g.k = k;
    g.a = a.data();
    g.lda = k;
    g.b = b.data();
    g.ldb = n;
    g.c = c.data();
    g.ldc = n;
    sgemm(g);
    std::vector<double> bt(size_t(k), 0.0);
    for (int64_t p = 0; p < k; ++p)
      for (int64_t j = 0; j < n; ++j) bt[size_t(p)] += double(b[size_t(p * n + j)]) * t[size_t(j)];
    double worst = 0;
    for (int64_t i = 0; i < m; ++i) {
      double ct = 0, abt = 0, scale = 0;
      for (int64_t j = 0; j < n; ++j) ct += double(c[size_t(i * n + j)]) * t[size_t(j)];
      for (int64_t p = 0; p < k; ++p) {
        abt += double(a[size_t(i * k + p)]) * bt[size_t(p)];
        scale += std::fabs(double(a[size_t(i * k + p)]) * bt[size_t(p)]);
      }
      worst = std::max(worst, std::fabs(ct - abt) / (1e-6 + scale));
    }
    CHECK(worst < 1e-4) << isa_name(isa) << " worst " << worst;
  }
  set_isa_limit(Isa::Avx512);
}

TEST_MAIN()
