// Checksum-protected sgemm (thread-level ABFT in the driver's register tiles):
//  - clean runs on every ISA, both checks, edge shapes, transposes, column-major and tiny blocks
//    give the reference result and no events (zero false positives), with the calibrated bound
//    at least 8x above the worst clean residual;
//  - an injected accumulator bit flip that moves C beyond the tile's bound is detected, located
//    and corrected in place (C then matches the reference), on every ISA;
//  - bad arguments (beta != 0, tolerance, group-sum length, fault spec) raise Range errors.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "../src/cpu/abft_internal.h"
#include "harness.h"
#include "kintsugi/abft.h"
#include "kintsugi/cpu.h"
#include "kintsugi/error.h"
#include "kintsugi/gemm.h"
#include "kintsugi/threadpool.h"

using namespace kintsugi;
using kintsugi::gemm_internal::Blocking;
using kintsugi::gemm_internal::set_blocking_override;

namespace {

struct Problem {
  int64_t m, n, k;
  Transpose ta = Transpose::No, tb = Transpose::No;
  Layout layout = Layout::RowMajor;
  std::vector<float> a, b, c, ref;
  SgemmArgs args;
};

Problem make(int64_t m, int64_t n, int64_t k, uint32_t seed, Transpose ta, Transpose tb, Layout layout, float lo, float hi) {
  Problem p{m, n, k, ta, tb, layout, {}, {}, {}, {}, {}};
  const bool row = layout == Layout::RowMajor;
  const int64_t a_rows = ta == Transpose::No ? m : k, a_cols = ta == Transpose::No ? k : m;
  const int64_t b_rows = tb == Transpose::No ? k : n, b_cols = tb == Transpose::No ? n : k;
  SgemmArgs& g = p.args;
  g.layout = layout;
  g.trans_a = ta;
  g.trans_b = tb;
  g.m = m;
  g.n = n;
  g.k = k;
  g.lda = std::max<int64_t>(1, row ? a_cols : a_rows);
  g.ldb = std::max<int64_t>(1, row ? b_cols : b_rows);
  g.ldc = std::max<int64_t>(1, row ? n : m);
  p.a = harness::random_floats(size_t(a_rows * a_cols), seed, lo, hi);
  p.b = harness::random_floats(size_t(b_rows * b_cols), seed + 1, lo, hi);
  p.c.assign(size_t(m * n), std::nanf(""));
  p.ref.assign(size_t(m * n), 0.0f);
  g.a = p.a.data();
  g.b = p.b.data();
  g.c = p.ref.data();
  sgemm_reference(g);
  g.c = p.c.data();
  return p;
}

double g_worst_clean = 0;

void clean_sweep(AbftCheck check, float lo, float hi) {
  // The last two are wide enough (n >= 512) for the checker's wide-block order.
  const int64_t shapes[][3] = {{1, 1, 1},      {1, 300, 70},    {3, 129, 257}, {7, 65, 33},   {17, 45, 300},
                               {64, 64, 64},   {100, 37, 1100}, {33, 200, 9},  {30, 700, 50}, {13, 1030, 130}};
  uint32_t seed = 11;
  for (auto& s : shapes)
    for (Transpose ta : {Transpose::No, Transpose::Yes})
      for (Transpose tb : {Transpose::No, Transpose::Yes})
        for (Layout layout : {Layout::RowMajor, Layout::ColMajor}) {
          Problem p = make(s[0], s[1], s[2], seed++, ta, tb, layout, lo, hi);
          AbftOptions o;
          o.check = check;
          AbftReport r = sgemm_checked(p.args, o);
          CHECK(r.events.empty()) << "false positive at " << s[0] << "x" << s[1] << "x" << s[2] << " ratio " << r.max_ratio;
          CHECK(r.tiles > 0);
          g_worst_clean = std::max(g_worst_clean, r.max_ratio);
          size_t where = 0;
          double err = harness::worst_error(p.c.data(), p.ref.data(), p.c.size(), 1e-4, 1e-4 * std::sqrt(double(s[2])), &where);
          CHECK(err <= 1.0) << "result differs from the reference at " << where << " (" << s[0] << "x" << s[1] << "x" << s[2] << ")";
        }
}

}  // namespace

TEST(clean_runs_match_reference_without_events_every_isa) {
  for (Isa isa : harness::supported_isas()) {
    set_isa_limit(isa);
    for (AbftCheck check : {AbftCheck::TwoSided, AbftCheck::OneSided}) {
      clean_sweep(check, -1.0f, 1.0f);
      clean_sweep(check, 0.0f, 1.0f);  // one-signed values: rounding errors do not cancel
      Blocking b;
      b.kc = 16;
      b.mc = 2 * gemm_internal::active_kernels().mr + 1;
      b.nc = 3 * gemm_internal::active_kernels().nr;
      set_blocking_override(b);
      clean_sweep(check, -1.0f, 1.0f);
      b.direct_a = 0;
      set_blocking_override(b);
      clean_sweep(check, 0.0f, 1.0f);
      b.direct_a = -1;
      b.nc = 576;  // wide blocks (a multiple of every kernel's nr), still many k blocks
      set_blocking_override(b);
      clean_sweep(check, -1.0f, 1.0f);
      set_blocking_override(Blocking{});
    }
  }
  set_isa_limit(Isa::Avx512);
  std::printf("worst clean |residual| / bound: %.4f\n", g_worst_clean);
  CHECK(g_worst_clean < 0.125) << "calibration margin below 8x: " << g_worst_clean;
}

TEST(large_k_one_signed_clean) {
  for (AbftCheck check : {AbftCheck::TwoSided, AbftCheck::OneSided}) {
    Problem p = make(96, 256, 4096, 5, Transpose::No, Transpose::Yes, Layout::RowMajor, 0.0f, 1.0f);
    AbftOptions o;
    o.check = check;
    AbftReport r = sgemm_checked(p.args, o);
    CHECK(r.events.empty()) << "ratio " << r.max_ratio;
    std::printf("k=4096 one-signed, %s: worst ratio %.4f\n", check == AbftCheck::TwoSided ? "two-sided" : "one-sided", r.max_ratio);
    CHECK(r.max_ratio < 0.125);
  }
}

TEST(injected_accumulator_flips_are_corrected_every_isa) {
  for (Isa isa : harness::supported_isas()) {
    set_isa_limit(isa);
    for (AbftCheck check : {AbftCheck::TwoSided, AbftCheck::OneSided}) {
      int corrected = 0, flips = 0;
      uint32_t seed = 100;
      for (auto s : std::vector<std::array<int64_t, 3>>{{1, 200, 64}, {5, 70, 300}, {50, 90, 40}, {128, 128, 1100}, {40, 700, 300}, {61, 1030, 64}}) {
        for (int bit : {30, 29, 27, 25, 23, 22, 20}) {
          Problem p = make(s[0], s[1], s[2], seed++, Transpose::No, Transpose::Yes, Layout::RowMajor, -1.0f, 1.0f);
          const int64_t r = (seed * 7) % s[0], c = (seed * 13) % s[1];
          set_abft_fault(r, c, bit);
          AbftOptions o;
          o.check = check;
          AbftReport rep = sgemm_checked(p.args, o);
          CHECK(abft_fault_fired());
          ++flips;
          // After correction the whole result matches the reference.
          double err = harness::worst_error(p.c.data(), p.ref.data(), p.c.size(), 1e-4, 1e-3, nullptr);
          if (!rep.events.empty()) {
            CHECK(rep.events.size() == 1);
            const AbftEvent& e = rep.events[0];
            CHECK(e.action == AbftAction::Corrected) << "bit " << bit;
            CHECK(e.row == r && e.col == c) << "located (" << e.row << "," << e.col << ") want (" << r << "," << c << ")";
            CHECK(err <= 1.0) << "not repaired, bit " << bit;
            ++corrected;
          } else {
            // Undetected: the flip must be within the tile's bound (an exponent bit never is).
            CHECK(bit < 23) << "missed exponent flip bit " << bit;
          }
        }
      }
      CHECK(corrected >= flips * 5 / 7) << corrected << " of " << flips;
    }
  }
  set_isa_limit(Isa::Avx512);
}

TEST(column_major_fault_coordinates_are_logical) {
  Problem p = make(40, 30, 50, 9, Transpose::Yes, Transpose::No, Layout::ColMajor, -1.0f, 1.0f);
  set_abft_fault(7, 21, 30);
  AbftReport rep = sgemm_checked(p.args, AbftOptions{});
  CHECK(rep.events.size() == 1);
  CHECK(rep.events[0].row == 7 && rep.events[0].col == 21);
  CHECK(harness::worst_error(p.c.data(), p.ref.data(), p.c.size(), 1e-4, 1e-3, nullptr) <= 1.0);
}

TEST(report_only_leaves_the_error_and_nan_is_detected) {
  Problem p = make(20, 20, 20, 3, Transpose::No, Transpose::No, Layout::RowMajor, -1.0f, 1.0f);
  set_abft_fault(4, 5, 30);
  AbftOptions o;
  o.correct = false;
  AbftReport rep = sgemm_checked(p.args, o);
  CHECK(rep.events.size() == 1 && rep.events[0].action == AbftAction::Detected);
  CHECK(p.c[4 * 20 + 5] != p.ref[4 * 20 + 5]);
  // Exponent all-ones: a bit that makes the value Inf/NaN-sized.
  set_abft_fault(0, 0, 30);
  Problem q = make(1, 8, 8, 4, Transpose::No, Transpose::No, Layout::RowMajor, 1.0f, 2.0f);
  AbftReport rq = sgemm_checked(q.args, AbftOptions{});
  CHECK(rq.events.size() == 1);
  CHECK(std::isfinite(q.c[0]) && std::fabs(q.c[0] - q.ref[0]) < 1e-3);
}

TEST(precomputed_group_sums_match) {
  Problem p = make(9, 77, 31, 21, Transpose::No, Transpose::Yes, Layout::RowMajor, -1.0f, 1.0f);
  std::vector<float> gs(size_t(abft_group_sums_size(31, 77, 8)));
  abft_group_sums(Transpose::Yes, 31, 77, p.b.data(), p.args.ldb, 8, gs.data());
  // Group 9 holds columns 72..76 only.
  double s = 0;
  for (int j = 72; j < 77; ++j) s += p.b[size_t(j * 31 + 3)];
  CHECK(std::fabs(gs[(9 * 31 + 3) * 2] - s) < 1e-5);
  CHECK(abft_group_width() % 8 == 0 || abft_group_width() < 8);
  AbftOptions o;
  o.b_group_sums = gs.data();
  o.b_group_sums_len = int64_t(gs.size());
  o.b_group_width = 8;
  set_abft_fault(8, 76, 28);
  AbftReport rep = sgemm_checked(p.args, o);
  CHECK(rep.events.size() == 1 && rep.events[0].row == 8 && rep.events[0].col == 76);
  CHECK(harness::worst_error(p.c.data(), p.ref.data(), p.c.size(), 1e-4, 1e-3, nullptr) <= 1.0);
}

TEST(row_check_matches_naive) {
  Problem p = make(13, 17, 19, 8, Transpose::No, Transpose::No, Layout::RowMajor, -1.0f, 1.0f);
  std::vector<double> bs(19), ba(19), e(13), mg(13), ac(13);
  for (int q = 0; q < 19; ++q)
    for (int j = 0; j < 17; ++j) {
      bs[size_t(q)] += p.b[size_t(q * 17 + j)];
      ba[size_t(q)] += std::fabs(p.b[size_t(q * 17 + j)]);
    }
  sgemm(p.args);
  abft_row_check(Transpose::No, 13, 17, 19, p.a.data(), 19, bs.data(), ba.data(), p.c.data(), 17, e.data(), mg.data(), ac.data());
  for (int i = 0; i < 13; ++i) {
    CHECK(std::fabs(e[size_t(i)] - ac[size_t(i)]) < 1e-4 * mg[size_t(i)] + 1e-6);
    CHECK(mg[size_t(i)] >= std::fabs(e[size_t(i)]));
  }
}

TEST(row_check_vector_tails_every_isa) {
  // The vector row check (k and n not multiples of the vector width, A stored transposed too)
  // against sums in index order, and sgemm_row_checked against sgemm + abft_row_check.
  for (Isa isa : harness::supported_isas()) {
    set_isa_limit(isa);
    for (int64_t k : {1, 7, 8, 15, 16, 17, 33, 100})
      for (int64_t n : {1, 5, 16, 17, 100})
        for (Transpose ta : {Transpose::No, Transpose::Yes}) {
          const int64_t m = 9;
          Problem p = make(m, n, k, uint32_t(k * 131 + n), ta, Transpose::No, Layout::RowMajor, -1.0f, 1.0f);
          const size_t kk = static_cast<size_t>(k), mm = static_cast<size_t>(m);
          std::vector<double> bs(kk), ba(kk), e(mm), mg(mm), ac(mm), e2(mm), mg2(mm), ac2(mm);
          for (int64_t q = 0; q < k; ++q)
            for (int64_t j = 0; j < n; ++j) {
              bs[size_t(q)] += p.b[size_t(q * n + j)];
              ba[size_t(q)] += std::fabs(p.b[size_t(q * n + j)]);
            }
          sgemm_row_checked(p.args, bs.data(), ba.data(), e.data(), mg.data(), ac.data());
          double err = 0;
          for (size_t q = 0; q < p.c.size(); ++q) err = std::max(err, double(std::fabs(p.c[q] - p.ref[q])));
          CHECK(err <= 2.0 * double(k + 2) * 1.2e-7 * double(k)) << "C of sgemm_row_checked, k=" << k;
          abft_row_check(ta, m, n, k, p.a.data(), p.args.lda, bs.data(), ba.data(), p.c.data(), n, e2.data(), mg2.data(), ac2.data());
          for (int64_t i = 0; i < m; ++i) {
            double want = 0, mag = 0, got = 0;
            for (int64_t q = 0; q < k; ++q) {
              const double v = ta == Transpose::No ? p.a[size_t(i * k + q)] : p.a[size_t(q * m + i)];
              want += v * bs[size_t(q)];
              mag += std::fabs(v) * ba[size_t(q)];
            }
            for (int64_t j = 0; j < n; ++j) got += p.c[size_t(i * n + j)];
            const double tol = 1e-12 * (mag + 1.0);
            CHECK(std::fabs(e[size_t(i)] - want) <= tol && std::fabs(mg[size_t(i)] - mag) <= tol) << isa_name(isa) << " k=" << k << " n=" << n;
            CHECK(std::fabs(ac[size_t(i)] - got) <= 1e-12 * (std::fabs(got) + n)) << isa_name(isa) << " actual, n=" << n;
            CHECK(e[size_t(i)] == e2[size_t(i)] && mg[size_t(i)] == mg2[size_t(i)] && ac[size_t(i)] == ac2[size_t(i)]);
          }
        }
  }
  set_isa_limit(Isa::Avx512);
  Problem col = make(3, 4, 5, 2, Transpose::No, Transpose::No, Layout::ColMajor, -1.0f, 1.0f);
  std::vector<double> z(8);
  CHECK_THROWS_KIND(sgemm_row_checked(col.args, z.data(), z.data(), z.data(), z.data(), z.data()), ErrorKind::Range);
}

TEST(group_width_divides_every_checked_tile) {
  // Checked runs keep the few-row tiles to whole multiples of nr, so the check groups are nr wide
  // (64 with AVX-512) and every tile is a whole number of groups.
  for (Isa isa : harness::supported_isas()) {
    set_isa_limit(isa);
    const auto& ks = gemm_internal::active_kernels();
    const int w = abft_group_width();
    CHECK(w == ks.nr) << isa_name(isa) << " width " << w;
    for (int r = 1; r <= ks.mr; ++r) CHECK(gemm_internal::observed_tile_cols(ks, r) % w == 0) << isa_name(isa) << " rows " << r;
  }
  set_isa_limit(Isa::Avx512);
}

TEST(bad_arguments_raise_range_errors) {
  Problem p = make(4, 4, 4, 1, Transpose::No, Transpose::No, Layout::RowMajor, -1.0f, 1.0f);
  SgemmArgs g = p.args;
  g.beta = 1.0f;
  CHECK_THROWS_KIND(sgemm_checked(g, AbftOptions{}), ErrorKind::Range);
  AbftOptions o;
  o.tolerance = 0.0;
  CHECK_THROWS_KIND(sgemm_checked(p.args, o), ErrorKind::Range);
  std::vector<float> gs(3);
  o.tolerance = 1.0;
  o.b_group_sums = gs.data();
  o.b_group_sums_len = 3;
  o.b_group_width = 8;
  CHECK_THROWS_KIND(sgemm_checked(p.args, o), ErrorKind::Range);
  CHECK_THROWS_KIND(set_abft_fault(0, 0, 32), ErrorKind::Range);
  CHECK_THROWS_KIND(set_abft_fault(-1, 0, 3), ErrorKind::Range);
  g = p.args;
  g.lda = 2;
  CHECK_THROWS_KIND(sgemm_checked(g, AbftOptions{}), ErrorKind::Range);
}

TEST_MAIN()
