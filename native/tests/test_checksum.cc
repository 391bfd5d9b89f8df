// Row / column checksums (plain and weighted, float and double) against naive fp64 loops.
//
// Tolerance: both sides accumulate in double and differ only in summation order, so
//   |got - want| <= 1e-12 * (sum of |terms| + 1e-300)
// (a bound of about n * 2^-53 relative to the absolute sum, with n <= 1e5 here). Small-integer fills
// are exact and compared with ==.
#include <limits>

#include "harness.h"
#include "kintsugi/checksum.h"
#include "kintsugi/error.h"
#include "kintsugi/threadpool.h"

namespace {

template <typename T> std::vector<T> fill(size_t n, uint32_t seed, bool ints) {
  std::vector<float> f = ints ? harness::random_small_ints(n, seed, -4, 4) : harness::random_floats(n, seed, -2.0f, 2.0f);
  std::vector<T> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = T(f[i]);
  if (!ints && sizeof(T) == sizeof(double))  // give doubles bits that a float cannot hold
    for (size_t i = 0; i < n; ++i) v[i] += T(1e-9) * T(i % 7);
  return v;
}

struct Sums {
  std::vector<double> value, magnitude;
};

// Naive reference: out[i] = sum_j w[j] a[i, j] (rows) or out[j] = sum_i w[i] a[i, j] (cols).
template <typename T> Sums reference(const std::vector<T>& a, int64_t m, int64_t n, int64_t ld, const T* w, bool rows) {
  Sums s;
  s.value.assign(size_t(rows ? m : n), 0.0);
  s.magnitude.assign(size_t(rows ? m : n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double wt = w ? double(w[rows ? j : i]) : 1.0;
      double t = wt * double(a[size_t(i * ld + j)]);
      size_t o = size_t(rows ? i : j);
      s.value[o] += t;
      s.magnitude[o] += std::fabs(t);
    }
  return s;
}

template <typename T> void check_shape(int64_t m, int64_t n, int64_t ld, uint32_t seed, bool ints) {
  const size_t len = m > 0 ? size_t((m - 1) * ld + n) : 0;
  std::vector<T> a = fill<T>(len + 1, seed, ints);
  std::vector<T> wr = fill<T>(size_t(n) + 1, seed + 1, ints), wc = fill<T>(size_t(m) + 1, seed + 2, ints);
  for (int variant = 0; variant < 4; ++variant) {
    const bool rows = variant % 2 == 0, weighted = variant >= 2;
    const T* w = weighted ? (rows ? wr.data() : wc.data()) : nullptr;
    const int64_t outs = rows ? m : n;
    std::vector<double> got(size_t(outs) + 1, std::numeric_limits<double>::quiet_NaN());
    got[size_t(outs)] = 12345.0;  // guard
    if (rows && !weighted) kintsugi::row_sums<T>(a.data(), m, n, ld, got.data());
    if (!rows && !weighted) kintsugi::col_sums<T>(a.data(), m, n, ld, got.data());
    if (rows && weighted) kintsugi::weighted_row_sums<T>(a.data(), m, n, ld, w, got.data());
    if (!rows && weighted) kintsugi::weighted_col_sums<T>(a.data(), m, n, ld, w, got.data());
    Sums want = reference(a, m, n, ld, w, rows);
    int bad = 0;
    for (int64_t o = 0; o < outs; ++o) {
      double g = got[size_t(o)], e = want.value[size_t(o)];
      bool ok = ints ? g == e : std::fabs(g - e) <= 1e-12 * (want.magnitude[size_t(o)] + 1e-300);
      if (!ok && bad++ < 3) {
        CHECK(false) << (sizeof(T) == 4 ? "float " : "double ") << (weighted ? "weighted " : "") << (rows ? "row" : "col")
                     << " sums m=" << m << " n=" << n << " ld=" << ld << " at " << o << ": got " << g << " want " << e;
      }
    }
    CHECK(got[size_t(outs)] == 12345.0) << "wrote past the output, m=" << m << " n=" << n;
  }
}

template <typename T> void check_all_shapes(bool ints) {
  const int64_t shapes[][3] = {{0, 0, 1},   {0, 5, 5},     {5, 0, 1},     {1, 1, 1},      {1, 17, 17},
                               {17, 1, 1},  {17, 1, 4},    {3, 7, 11},    {9, 33, 33},    {1000, 3, 3},
                               {1, 5, 1},   // a single row may have any ld
                               {2000, 300, 301},            // parallel over rows, stripes of columns
                               {300, 1000, 1000},           // wide: column stripes
                               {100000, 8, 9},              // long and narrow: row blocks with partials
                               {70001, 3, 3}, {4099, 255, 257}};
  uint32_t seed = 10;
  for (const auto& s : shapes) check_shape<T>(s[0], s[1], s[2], seed += 3, ints);
}

}  // namespace

TEST(float_checksums_match_reference) { check_all_shapes<float>(false); }
TEST(double_checksums_match_reference) { check_all_shapes<double>(false); }
TEST(small_integer_checksums_are_exact) {
  check_all_shapes<float>(true);
  check_all_shapes<double>(true);
}

TEST(results_do_not_depend_on_the_run) {
  // The same shape gives bit-identical sums on every call (no thread-count dependent order).
  std::vector<float> a = harness::random_floats(100000 * 8, 3);
  std::vector<double> first(8), again(8);
  kintsugi::col_sums<float>(a.data(), 100000, 8, 8, first.data());
  for (int r = 0; r < 3; ++r) {
    kintsugi::col_sums<float>(a.data(), 100000, 8, 8, again.data());
    CHECK(first == again);
  }
}

TEST(results_do_not_depend_on_the_thread_count) {
  const int original = kintsugi::num_threads();
  std::vector<float> a = harness::random_floats(60000 * 8, 13);
  std::vector<std::vector<double>> cols, rows, wide;
  for (int threads : {1, 2, 3}) {
    kintsugi::set_num_threads(threads);
    std::vector<double> c(8), r(60000), w(600);
    kintsugi::col_sums<float>(a.data(), 60000, 8, 8, c.data());       // row blocks with partials
    kintsugi::row_sums<float>(a.data(), 60000, 8, 8, r.data());
    kintsugi::weighted_col_sums<float>(a.data(), 800, 600, 600, a.data(), w.data());  // column stripes
    cols.push_back(c);
    rows.push_back(r);
    wide.push_back(w);
  }
  kintsugi::set_num_threads(original);
  for (size_t t = 1; t < cols.size(); ++t) {
    CHECK(cols[t] == cols[0]) << t;
    CHECK(rows[t] == rows[0]) << t;
    CHECK(wide[t] == wide[0]) << t;
  }
}

TEST(nan_and_inf_stay_in_their_row_and_column) {
  const int64_t m = 40, n = 50;
  std::vector<float> a = harness::random_floats(size_t(m * n), 8);
  a[size_t(3 * n + 7)] = std::numeric_limits<float>::quiet_NaN();
  a[size_t(10 * n + 20)] = std::numeric_limits<float>::infinity();
  std::vector<double> rows(static_cast<size_t>(m)), cols(static_cast<size_t>(n));
  kintsugi::row_sums<float>(a.data(), m, n, n, rows.data());
  kintsugi::col_sums<float>(a.data(), m, n, n, cols.data());
  for (int64_t i = 0; i < m; ++i) {
    CHECK(std::isnan(rows[size_t(i)]) == (i == 3)) << i;
    CHECK(std::isinf(rows[size_t(i)]) == (i == 10)) << i;
  }
  for (int64_t j = 0; j < n; ++j) {
    CHECK(std::isnan(cols[size_t(j)]) == (j == 7)) << j;
    CHECK(std::isinf(cols[size_t(j)]) == (j == 20)) << j;
  }
}

TEST(fp64_accumulation_keeps_small_terms) {
  // 1 + 2^24 ones: a float accumulator would stop growing at 2^24.
  const int64_t n = (1 << 24) + 1;
  std::vector<float> a(size_t(n), 1.0f);
  double r = 0;
  kintsugi::row_sums<float>(a.data(), 1, n, n, &r);
  CHECK(r == double(n)) << r;
}

TEST(bad_shapes_raise_range_errors) {
  float a[4] = {1, 2, 3, 4};
  double out[4];
  using kintsugi::ErrorKind;
  CHECK_THROWS_KIND(kintsugi::row_sums<float>(a, -1, 2, 2, out), ErrorKind::Range);
  CHECK_THROWS_KIND(kintsugi::col_sums<float>(a, 2, -2, 2, out), ErrorKind::Range);
  CHECK_THROWS_KIND(kintsugi::weighted_row_sums<float>(a, 2, 2, 1, a, out), ErrorKind::Range);
  CHECK_THROWS_KIND(kintsugi::weighted_col_sums<double>(nullptr, 2, 2, 2, nullptr, out), ErrorKind::Type);
  CHECK_THROWS_KIND(kintsugi::weighted_col_sums<float>(a, 2, 2, 2, nullptr, out), ErrorKind::Type);
  try {
    kintsugi::col_sums<float>(a, 2, 3, 2, out);
    CHECK(false) << "no exception";
  } catch (const kintsugi::Error& e) {
    CHECK(std::string(e.what()) == "Expected a leading dimension >= 3 for ld but received 2") << e.what();
  }
}

TEST_MAIN()
