// Embedding bags against naive double-accumulating loops.
//
// Tolerance: outputs accumulate in float over a bag of L indices with table values and weights in
// [-1, 1], so each element is checked with atol = 1e-6 * (L + 1), rtol = 1e-5; backward updates
// accumulate per table row over the number of times the row is hit (plus the initial value).
// Small-integer fills are exact and compared bit for bit, as is the parallel backward against a
// serial run (every element receives its updates in index order whatever the thread count).
#include <algorithm>
#include <limits>
#include <random>

#include "harness.h"
#include "kintsugi/embedding.h"
#include "kintsugi/error.h"
#include "kintsugi/threadpool.h"

using kintsugi::BagMode;
using kintsugi::EmbeddingBagArgs;

namespace {

struct Problem {
  int64_t rows = 0, dim = 0;
  std::vector<int32_t> indices, offsets;
  std::vector<float> weights;
  bool weighted = false;
  BagMode mode = BagMode::Sum;

  EmbeddingBagArgs args() const {
    EmbeddingBagArgs a;
    a.rows = rows;
    a.dim = dim;
    a.indices = indices.data();
    a.nnz = int64_t(indices.size());
    a.offsets = offsets.data();
    a.bags = int64_t(offsets.size()) - 1;
    a.weights = weighted ? weights.data() : nullptr;
    a.mode = mode;
    return a;
  }
};

// Bags of random sizes (some empty), indices drawn with heavy repetition when `skewed` (Zipf-like:
// about half of them hit row 0 or 1).
Problem random_problem(int64_t rows, int64_t dim, int64_t bags, int max_bag, bool skewed, bool weighted, BagMode mode,
                       uint32_t seed, bool ints = false) {
  std::mt19937 rng(seed);
  Problem p;
  p.rows = rows;
  p.dim = dim;
  p.weighted = weighted;
  p.mode = mode;
  p.offsets.push_back(0);
  std::uniform_int_distribution<int> size(0, max_bag);
  std::uniform_int_distribution<int64_t> any(0, rows - 1);
  for (int64_t b = 0; b < bags; ++b) {
    int n = (b % 5 == 3) ? 0 : size(rng);  // every fifth bag empty
    for (int i = 0; i < n; ++i) {
      int64_t row = any(rng);
      if (skewed && rng() % 2 == 0) row = rng() % 2;
      p.indices.push_back(int32_t(row));
    }
    p.offsets.push_back(int32_t(p.indices.size()));
  }
  p.weights = ints ? harness::random_small_ints(p.indices.size(), seed + 1, -2, 2)
                   : harness::random_floats(p.indices.size(), seed + 1);
  return p;
}

std::vector<double> reference_forward(const Problem& p, const std::vector<float>& table) {
  const int64_t bags = int64_t(p.offsets.size()) - 1;
  std::vector<double> out(size_t(bags * p.dim), 0.0);
  for (int64_t b = 0; b < bags; ++b) {
    const int64_t p0 = p.offsets[size_t(b)], p1 = p.offsets[size_t(b + 1)];
    for (int64_t i = p0; i < p1; ++i)
      for (int64_t d = 0; d < p.dim; ++d)
        out[size_t(b * p.dim + d)] += double(p.weighted ? p.weights[size_t(i)] : 1.0f) *
                                      double(table[size_t(int64_t(p.indices[size_t(i)]) * p.dim + d)]);
    if (p.mode == BagMode::Mean && p1 > p0)
      for (int64_t d = 0; d < p.dim; ++d) out[size_t(b * p.dim + d)] /= double(p1 - p0);
  }
  return out;
}

std::vector<double> reference_backward(const Problem& p, const std::vector<float>& grad_out, float scale,
                                       const std::vector<float>& initial) {
  std::vector<double> g(initial.begin(), initial.end());
  const int64_t bags = int64_t(p.offsets.size()) - 1;
  for (int64_t b = 0; b < bags; ++b) {
    const int64_t p0 = p.offsets[size_t(b)], p1 = p.offsets[size_t(b + 1)];
    for (int64_t i = p0; i < p1; ++i) {
      double c = double(scale) * double(p.weighted ? p.weights[size_t(i)] : 1.0f);
      if (p.mode == BagMode::Mean) c /= double(p1 - p0);
      for (int64_t d = 0; d < p.dim; ++d)
        g[size_t(int64_t(p.indices[size_t(i)]) * p.dim + d)] += c * double(grad_out[size_t(b * p.dim + d)]);
    }
  }
  return g;
}

void check_problem(const Problem& p, uint32_t seed, bool ints = false) {
  const int64_t bags = int64_t(p.offsets.size()) - 1;
  auto gen = [&](size_t n, uint32_t s) { return ints ? harness::random_small_ints(n, s, -3, 3) : harness::random_floats(n, s); };
  std::vector<float> table = gen(size_t(p.rows * p.dim), seed);
  const EmbeddingBagArgs a = p.args();
  const char* mode = p.mode == BagMode::Mean ? "mean" : "sum";

  // Forward (output pre-filled with NaN: it must be overwritten, empty bags included).
  std::vector<float> out(size_t(bags * p.dim) + 1, std::numeric_limits<float>::quiet_NaN());
  out.back() = 99.0f;
  kintsugi::embedding_bag_forward(a, table.data(), out.data());
  std::vector<double> want = reference_forward(p, table);
  int bad = 0;
  for (int64_t b = 0; b < bags; ++b) {
    const double L = double(p.offsets[size_t(b + 1)] - p.offsets[size_t(b)]);
    for (int64_t d = 0; d < p.dim; ++d) {
      const double got = out[size_t(b * p.dim + d)], w = want[size_t(b * p.dim + d)];
      const bool ok = (ints && p.mode == BagMode::Sum) ? got == w : std::fabs(got - w) <= 1e-6 * (L + 1) + 1e-5 * std::fabs(w);
      if (!ok && bad++ < 3) {
        CHECK(false) << "forward " << mode << " rows=" << p.rows << " dim=" << p.dim << " bag " << b << " d " << d
                     << ": got " << got << " want " << w;
      }
    }
  }
  CHECK(out.back() == 99.0f) << "forward wrote past its output";

  // Backward accumulates into grad_table.
  std::vector<float> grad_out = gen(size_t(bags * p.dim), seed + 7);
  std::vector<float> initial = gen(size_t(p.rows * p.dim), seed + 8);
  std::vector<float> grad = initial;
  grad.push_back(98.0f);
  const float scale = ints ? 2.0f : -0.75f;
  kintsugi::embedding_bag_backward(a, grad_out.data(), scale, grad.data());
  std::vector<double> gwant = reference_backward(p, grad_out, scale, initial);
  std::vector<int64_t> hits(size_t(p.rows), 0);
  for (int32_t r : p.indices) hits[size_t(r)]++;
  bad = 0;
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t d = 0; d < p.dim; ++d) {
      const double got = grad[size_t(r * p.dim + d)], w = gwant[size_t(r * p.dim + d)];
      const bool ok = (ints && p.mode == BagMode::Sum) ? got == w
                                                       : std::fabs(got - w) <= 1e-6 * double(hits[size_t(r)] + 1) + 1e-5 * std::fabs(w);
      if (!ok && bad++ < 3) {
        CHECK(false) << "backward " << mode << " rows=" << p.rows << " dim=" << p.dim << " row " << r << " d " << d
                     << " hits " << hits[size_t(r)] << ": got " << got << " want " << w;
      }
    }
  CHECK(grad.back() == 98.0f) << "backward wrote past grad_table";
}

}  // namespace

TEST(forward_and_backward_match_reference) {
  uint32_t seed = 1;
  for (int64_t dim : {1, 3, 16, 17, 64})
    for (BagMode mode : {BagMode::Sum, BagMode::Mean})
      for (bool weighted : {false, true})
        for (bool skewed : {false, true}) {
          seed += 2;
          check_problem(random_problem(50, dim, 23, 6, skewed, weighted, mode, seed), seed + 1);
        }
}

TEST(small_integer_fills_are_exact) {
  uint32_t seed = 300;
  for (int64_t dim : {1, 5, 32})
    for (bool weighted : {false, true}) {
      seed += 2;
      check_problem(random_problem(20, dim, 40, 8, true, weighted, BagMode::Sum, seed, true), seed + 1, true);
    }
}

TEST(large_inputs_take_the_parallel_paths) {
  // Wide rows (column ownership) and narrow rows (row-group ownership), with heavy repetition.
  check_problem(random_problem(1000, 64, 3000, 40, true, true, BagMode::Sum, 11), 12);
  check_problem(random_problem(1000, 8, 5000, 40, true, false, BagMode::Mean, 13), 14);
  check_problem(random_problem(3000, 4, 4000, 40, true, true, BagMode::Sum, 15, true), 16, true);
  check_problem(random_problem(700, 96, 2000, 30, false, true, BagMode::Sum, 17, true), 18, true);
}

TEST(parallel_backward_is_bitwise_the_serial_loop) {
  for (int64_t dim : {8, 100}) {
    Problem p = random_problem(500, dim, 4000, 30, true, true, BagMode::Mean, 21);
    std::vector<float> grad_out = harness::random_floats(size_t(4000 * dim), 22);
    std::vector<float> grad(size_t(500 * dim), 0.5f), serial(size_t(500 * dim), 0.5f);
    kintsugi::embedding_bag_backward(p.args(), grad_out.data(), 0.1f, grad.data());
    // The serial order, written out: bags in order, indices in order.
    for (size_t b = 0; b + 1 < p.offsets.size(); ++b) {
      const int32_t p0 = p.offsets[b], p1 = p.offsets[b + 1];
      if (p0 == p1) continue;
      const float s = 0.1f * (1.0f / float(p1 - p0));
      for (int32_t i = p0; i < p1; ++i) {
        const float c = p.weights[size_t(i)] * s;
        for (int64_t d = 0; d < dim; ++d)
          serial[size_t(int64_t(p.indices[size_t(i)]) * dim + d)] += c * grad_out[size_t(int64_t(b) * dim + d)];
      }
    }
    CHECK(grad == serial) << "dim " << dim;
  }
}

TEST(backward_is_bitwise_identical_at_any_thread_count) {
  // 1 thread: serial; 2 and 3: column ownership (dim 96 >= 16 * threads) or row-group ownership.
  const int original = kintsugi::num_threads();
  for (int64_t dim : {4, 40, 96}) {
    Problem p = random_problem(300, dim, 3000, 30, true, true, BagMode::Sum, 31);
    std::vector<float> grad_out = harness::random_floats(size_t(3000 * dim), 32);
    std::vector<std::vector<float>> results;
    for (int threads : {1, 2, 3}) {
      kintsugi::set_num_threads(threads);
      std::vector<float> grad(size_t(300 * dim), 0.25f);
      kintsugi::embedding_bag_backward(p.args(), grad_out.data(), 0.5f, grad.data());
      results.push_back(grad);
    }
    CHECK(results[0] == results[1] && results[0] == results[2]) << "dim " << dim;
  }
  kintsugi::set_num_threads(original);
}

TEST(empty_and_degenerate_shapes) {
  // No indices at all: every bag is empty, so the forward writes zeros and the backward nothing.
  Problem p;
  p.rows = 4;
  p.dim = 3;
  p.offsets = {0, 0, 0};
  std::vector<float> table(12, 1.0f), out(6, 5.0f), grad(12, 2.0f), gout(6, 1.0f);
  kintsugi::embedding_bag_forward(p.args(), table.data(), out.data());
  CHECK(out == std::vector<float>(6, 0.0f));
  p.mode = BagMode::Mean;
  kintsugi::embedding_bag_forward(p.args(), table.data(), out.data());
  CHECK(out == std::vector<float>(6, 0.0f));
  kintsugi::embedding_bag_backward(p.args(), gout.data(), 1.0f, grad.data());
  CHECK(grad == std::vector<float>(12, 2.0f));

  // No bags, no rows, dim 0: legal and a no-op.
  EmbeddingBagArgs none;
  int32_t zero = 0;
  none.offsets = &zero;
  kintsugi::check_embedding_bag(none);
  kintsugi::embedding_bag_forward(none, nullptr, nullptr);
  kintsugi::embedding_bag_backward(none, nullptr, 1.0f, nullptr);
  EmbeddingBagArgs no_offsets;  // bags 0, nnz 0, offsets null
  kintsugi::check_embedding_bag(no_offsets);
  Problem flat = random_problem(5, 0, 4, 3, false, false, BagMode::Sum, 3);
  kintsugi::embedding_bag_forward(flat.args(), nullptr, nullptr);

  // One bag holding one row, repeated: sum doubles, mean returns the row.
  Problem r;
  r.rows = 2;
  r.dim = 2;
  r.indices = {1, 1};
  r.offsets = {0, 2};
  std::vector<float> t2 = {1, 2, 3, 4}, o2(2);
  kintsugi::embedding_bag_forward(r.args(), t2.data(), o2.data());
  CHECK(o2[0] == 6.0f && o2[1] == 8.0f);
  r.mode = BagMode::Mean;
  kintsugi::embedding_bag_forward(r.args(), t2.data(), o2.data());
  CHECK(o2[0] == 3.0f && o2[1] == 4.0f);
  std::vector<float> g2(4, 0.0f), go2 = {1.0f, -1.0f};
  kintsugi::embedding_bag_backward(r.args(), go2.data(), 1.0f, g2.data());  // mean: each hit adds grad / 2
  CHECK(g2 == (std::vector<float>{0, 0, 1.0f, -1.0f}));
}

namespace {
void expect_error(const EmbeddingBagArgs& a, kintsugi::ErrorKind kind, const std::string& message) {
  bool thrown = false;
  try {
    kintsugi::check_embedding_bag(a);
  } catch (const kintsugi::Error& e) {
    thrown = true;
    CHECK(e.kind() == kind) << e.what();
    CHECK(std::string(e.what()) == message) << "got '" << e.what() << "' want '" << message << "'";
  }
  CHECK(thrown) << "expected: " << message;
  std::vector<float> big(4096, 0.0f);
  CHECK_THROWS_KIND(kintsugi::embedding_bag_forward(a, big.data(), big.data()), kind);
  CHECK_THROWS_KIND(kintsugi::embedding_bag_backward(a, big.data(), 1.0f, big.data()), kind);
}
}  // namespace

TEST(bad_arguments_name_the_first_offender) {
  using kintsugi::ErrorKind;
  Problem p;
  p.rows = 1000;
  p.dim = 2;
  p.offsets = {0, 10, 20};
  for (int i = 0; i < 20; ++i) p.indices.push_back(i * 10);
  kintsugi::check_embedding_bag(p.args());

  Problem q = p;
  q.indices[17] = 1000;
  q.indices[18] = -1;
  expect_error(q.args(), ErrorKind::Range, "Expected indices in [0, 1000) for indices[17] but received 1000");
  q = p;
  q.indices[3] = -5;
  expect_error(q.args(), ErrorKind::Range, "Expected indices in [0, 1000) for indices[3] but received -5");
  q = p;
  q.offsets[0] = 1;
  expect_error(q.args(), ErrorKind::Range, "Expected 0 for offsets[0] but received 1");
  q = p;
  q.offsets = {0, 12, 11, 20};
  expect_error(q.args(), ErrorKind::Range, "Expected non-decreasing offsets in [12, 20] for offsets[2] but received 11");
  q = p;
  q.offsets = {0, 25, 20};
  expect_error(q.args(), ErrorKind::Range, "Expected non-decreasing offsets in [0, 20] for offsets[1] but received 25");
  q = p;
  q.offsets = {0, 10, 19};
  expect_error(q.args(), ErrorKind::Range, "Expected nnz (20) for offsets[2] but received 19");

  EmbeddingBagArgs a = p.args();
  a.rows = -1;
  expect_error(a, ErrorKind::Range, "Expected a non-negative row count for rows but received -1");
  a = p.args();
  a.dim = -2;
  expect_error(a, ErrorKind::Range, "Expected a non-negative embedding dimension for dim but received -2");
  a = p.args();
  a.bags = -1;
  expect_error(a, ErrorKind::Range, "Expected a non-negative bag count for bags but received -1");
  a = p.args();
  a.indices = nullptr;
  expect_error(a, ErrorKind::Type, "Expected 20 indices for indices but received null");
  a = p.args();
  a.offsets = nullptr;
  expect_error(a, ErrorKind::Type, "Expected 3 offsets (bags + 1) for offsets but received null");
  a = p.args();
  a.mode = BagMode(7);
  expect_error(a, ErrorKind::Range, "Expected sum or mean for mode but received 7");
  a = p.args();
  a.rows = 0;  // every index is out of range of an empty table
  expect_error(a, ErrorKind::Range, "Expected indices in [0, 0) for indices[0] but received 0");
}

// Row moves against plain loops: random rows (repeats included) over a table larger than the
// prefetch distance, bit patterns that floats would not keep (NaN payloads), and edge counts.
TEST(gather_and_scatter_rows_match_plain_loops) {
  std::mt19937 rng(7);
  for (int64_t width : {1, 3, 16, 33}) {
    for (int64_t count : {0, 1, 5, 9, 257}) {
      const int64_t table_rows = 300;
      std::vector<uint32_t> table(size_t(table_rows * width));
      for (auto& v : table) v = rng();
      table[0] = 0x7fc00001u;  // a NaN payload must survive a move
      std::vector<int32_t> rows(static_cast<size_t>(count));
      for (auto& r : rows) r = int32_t(rng() % table_rows);
      if (count > 2) rows[2] = rows[1];  // a repeated row
      for (int64_t col : {int64_t(0), width / 2}) {
        const int64_t cols = width - col;
        std::vector<uint32_t> out(size_t(count * cols) + 1, 0xdeadbeefu);
        kintsugi::gather_rows({table_rows, width, rows.data(), count}, table.data(), col, cols, out.data());
        for (int64_t i = 0; i < count; ++i)
          for (int64_t j = 0; j < cols; ++j) CHECK(out[size_t(i * cols + j)] == table[size_t(rows[size_t(i)] * width + col + j)]) << "gather w " << width << " i " << i;
        CHECK(out.back() == 0xdeadbeefu) << "gather wrote past its output";
      }
      std::vector<uint32_t> src(size_t(count * width));
      for (auto& v : src) v = rng();
      for (bool use_xor : {false, true}) {
        std::vector<uint32_t> got = table, want = table;
        for (int64_t i = 0; i < count; ++i)
          for (int64_t j = 0; j < width; ++j) {
            uint32_t& w = want[size_t(rows[size_t(i)] * width + j)];
            w = use_xor ? (w ^ src[size_t(i * width + j)]) : src[size_t(i * width + j)];
          }
        kintsugi::scatter_rows({table_rows, width, rows.data(), count}, src.data(), use_xor, got.data());
        CHECK(got == want) << "scatter xor=" << use_xor << " width " << width << " count " << count;
        // With counts: the same rows, and every row written counted once per entry, saturating.
        std::vector<uint8_t> counts(static_cast<size_t>(table_rows), 0), want_counts(static_cast<size_t>(table_rows), 0);
        for (int64_t r = 0; r < table_rows; r += 7) counts[size_t(r)] = want_counts[size_t(r)] = 254;
        for (int64_t i = 0; i < count; ++i) {
          uint8_t& c = want_counts[size_t(rows[size_t(i)])];
          if (c < 255) ++c;
        }
        std::vector<uint32_t> counted = table;
        kintsugi::scatter_rows({table_rows, width, rows.data(), count}, src.data(), use_xor, counted.data(), nullptr, counts.data());
        CHECK(counted == want && counts == want_counts) << "scatter with counts xor=" << use_xor << " width " << width << " count " << count;
      }
      // With a present mask: rows already present are skipped, each other row takes its first entry.
      std::vector<uint8_t> present(static_cast<size_t>(table_rows), 0), want_present(static_cast<size_t>(table_rows), 0);
      for (int64_t r = 0; r < table_rows; r += 3) present[size_t(r)] = want_present[size_t(r)] = 1;
      std::vector<uint32_t> got = table, want = table;
      for (int64_t i = 0; i < count; ++i) {
        const int32_t r = rows[size_t(i)];
        if (want_present[size_t(r)]) continue;
        want_present[size_t(r)] = 1;
        for (int64_t j = 0; j < width; ++j) want[size_t(r * width + j)] = src[size_t(i * width + j)];
      }
      kintsugi::scatter_rows({table_rows, width, rows.data(), count}, src.data(), false, got.data(), present.data());
      CHECK(got == want && present == want_present) << "scatter with present, width " << width << " count " << count;
    }
  }
}

TEST(row_moves_reject_bad_rows_and_columns) {
  std::vector<uint32_t> table(40), out(40);
  std::vector<int32_t> rows = {1, 9, 10};
  auto message = [](auto&& fn) {
    try {
      fn();
    } catch (const kintsugi::Error& e) {
      CHECK(e.kind() == kintsugi::ErrorKind::Range) << e.what();
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(message([&] { kintsugi::gather_rows({10, 4, rows.data(), 3}, table.data(), 0, 4, out.data()); }) ==
        "Expected rows in [0, 10) for gather_rows for rows[2] but received 10");
  rows[2] = -3;
  CHECK(message([&] { kintsugi::scatter_rows({10, 4, rows.data(), 3}, out.data(), true, table.data()); }) ==
        "Expected rows in [0, 10) for scatter_rows for rows[2] but received -3");
  CHECK(message([&] { kintsugi::gather_rows({10, 4, rows.data(), 2}, table.data(), 2, 3, out.data()); }) ==
        "Expected a column range inside the row width 4 for columns but received 2..5");
  CHECK(message([&] { kintsugi::gather_rows({10, 0, rows.data(), 2}, table.data(), 0, 0, out.data()); }) ==
        "Expected a row width of at least 1 word for width but received 0");
}

// ---- pairwise dots (DLRM's interaction) ----

// Double-accumulating reference: out[s, p] over the lower triangle (with the diagonal if self), and
// grad_z[s, i] = sum over pairs (i, j) of g * z[j] + sum over pairs (k, i) of g * z[k].
static void reference_pairwise_dots(const kintsugi::PairwiseDotsArgs& a, const std::vector<float>& z, const std::vector<float>& gout,
                             std::vector<float>& out, std::vector<float>& gz) {
  const int64_t V = a.vectors, d = a.dim, P = a.pairs();
  out.assign(size_t(a.n * P), 0.0f);
  gz.assign(size_t(a.n * V * d), 0.0f);
  for (int64_t s = 0; s < a.n; ++s) {
    std::vector<double> acc(size_t(V * d), 0.0);
    int64_t p = 0;
    for (int64_t i = 0; i < V; ++i)
      for (int64_t j = 0; j < (a.self ? i + 1 : i); ++j, ++p) {
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += double(z[size_t((s * V + i) * d + c)]) * z[size_t((s * V + j) * d + c)];
        out[size_t(s * P + p)] = float(dot);
        const double g = gout[size_t(s * P + p)];
        for (int64_t c = 0; c < d; ++c) {
          acc[size_t(i * d + c)] += g * z[size_t((s * V + j) * d + c)];
          acc[size_t(j * d + c)] += g * z[size_t((s * V + i) * d + c)];
        }
      }
    for (int64_t e = 0; e < V * d; ++e) gz[size_t(s * V * d + e)] = float(acc[size_t(e)]);
  }
}

TEST(pairwise_dots_match_reference_on_edge_shapes) {
  const int default_threads = kintsugi::num_threads();
  struct Shape { int64_t n, vectors, dim; };
  for (Shape sh : {Shape{1, 1, 1}, Shape{1, 2, 1}, Shape{3, 5, 7}, Shape{2, 27, 16}, Shape{5, 17, 33}, Shape{300, 27, 16},
                   Shape{4, 9, 513}, Shape{0, 27, 16}, Shape{3, 0, 4}, Shape{3, 4, 0}})
    for (bool self : {false, true})
      for (int threads : {1, 2, 3}) {
        kintsugi::set_num_threads(threads);
        kintsugi::PairwiseDotsArgs a;
        a.n = sh.n, a.vectors = sh.vectors, a.dim = sh.dim, a.self = self;
        const int64_t P = a.pairs();
        const auto z = harness::random_floats(size_t(a.n * a.vectors * a.dim), uint32_t(7 + a.dim));
        const auto gout = harness::random_floats(size_t(a.n * P), uint32_t(11 + a.vectors));
        std::vector<float> want, want_gz;
        reference_pairwise_dots(a, z, gout, want, want_gz);
        std::vector<float> got(want.size() + 1, 42.0f), gz(want_gz.size() + 1, 42.0f);
        kintsugi::pairwise_dots_forward(a, z.data(), got.data());
        kintsugi::pairwise_dots_backward(a, z.data(), gout.data(), gz.data());
        // Forward: a dot of `dim` products of values in [-1, 1]; backward: 2 * vectors such terms.
        CHECK(harness::worst_error(got.data(), want.data(), want.size(), 1e-6 * double(a.dim + 1), 1e-5) <= 1.0)
            << "forward " << a.n << "x" << a.vectors << "x" << a.dim << " self " << self << " threads " << threads;
        CHECK(harness::worst_error(gz.data(), want_gz.data(), want_gz.size(), 2e-6 * double(a.vectors * a.dim + 1), 1e-5) <= 1.0)
            << "backward " << a.n << "x" << a.vectors << "x" << a.dim << " self " << self << " threads " << threads;
        CHECK(got.back() == 42.0f && gz.back() == 42.0f) << "wrote past the end";
      }
  kintsugi::set_num_threads(default_threads);
}

TEST(pairwise_dots_are_bitwise_the_same_at_any_thread_count) {
  const int default_threads = kintsugi::num_threads();
  kintsugi::PairwiseDotsArgs a;
  a.n = 257, a.vectors = 27, a.dim = 16;
  const auto z = harness::random_floats(size_t(a.n * a.vectors * a.dim), 5);
  const auto gout = harness::random_floats(size_t(a.n * a.pairs()), 6);
  std::vector<float> out1(size_t(a.n * a.pairs())), gz1(z.size()), out2 = out1, gz2 = gz1;
  kintsugi::set_num_threads(1);
  kintsugi::pairwise_dots_forward(a, z.data(), out1.data());
  kintsugi::pairwise_dots_backward(a, z.data(), gout.data(), gz1.data());
  kintsugi::set_num_threads(2);
  kintsugi::pairwise_dots_forward(a, z.data(), out2.data());
  kintsugi::pairwise_dots_backward(a, z.data(), gout.data(), gz2.data());
  kintsugi::set_num_threads(default_threads);
  CHECK(out1 == out2 && gz1 == gz2);
  // Every ISA path gives the same bits too (no fused multiply-adds in any of them).
  for (kintsugi::Isa isa : harness::supported_isas()) {
    harness::IsaScope scope(isa);
    for (bool self : {false, true}) {
      a.self = self;
      std::vector<float> want(size_t(a.n * a.pairs())), got = want, want_gz(z.size()), got_gz = want_gz;
      const auto g = harness::random_floats(want.size(), 8);
      {
        harness::IsaScope portable(kintsugi::Isa::Portable);
        kintsugi::pairwise_dots_forward(a, z.data(), want.data());
        kintsugi::pairwise_dots_backward(a, z.data(), g.data(), want_gz.data());
      }
      kintsugi::set_isa_limit(isa);
      kintsugi::pairwise_dots_forward(a, z.data(), got.data());
      kintsugi::pairwise_dots_backward(a, z.data(), g.data(), got_gz.data());
      CHECK(got == want && got_gz == want_gz) << "isa " << int(isa) << " self " << self;
    }
  }
}

TEST(pairwise_dots_propagate_nan_and_inf) {
  kintsugi::PairwiseDotsArgs a;
  a.n = 2, a.vectors = 4, a.dim = 3;
  std::vector<float> z = harness::random_floats(size_t(a.n * a.vectors * a.dim), 9);
  z[size_t(1 * 3 + 2)] = std::numeric_limits<float>::quiet_NaN();  // sample 0, vector 1
  z[size_t((4 + 3) * 3)] = std::numeric_limits<float>::infinity();  // sample 1, vector 3
  std::vector<float> gout(size_t(a.n * a.pairs()), 0.0f);  // zero gradients still carry NaN * 0
  std::vector<float> out(gout.size()), gz(z.size());
  kintsugi::pairwise_dots_forward(a, z.data(), out.data());
  kintsugi::pairwise_dots_backward(a, z.data(), gout.data(), gz.data());
  // Sample 0: pairs (1,0), (2,1), (3,1) hold vector 1 -> NaN; (2,0), (3,0), (3,2) stay finite.
  CHECK(std::isnan(out[0]) && std::isfinite(out[1]) && std::isnan(out[2]) && std::isfinite(out[3]) && std::isnan(out[4]) && std::isfinite(out[5]));
  // Sample 1: pairs with vector 3, (3,0), (3,1), (3,2), are Inf or NaN; the others finite.
  for (int p = 0; p < 3; ++p) CHECK(std::isfinite(out[size_t(6 + p)])) << p;
  for (int p = 3; p < 6; ++p) CHECK(!std::isfinite(out[size_t(6 + p)])) << p;
  // Every other vector's gradient takes 0 * NaN (or 0 * Inf) from the bad vector; its own does not
  // (without self it is in no pair with itself).
  for (int i = 0; i < 4; ++i) CHECK(std::isnan(gz[size_t(i * 3 + 2)]) == (i != 1)) << "sample 0 vector " << i;
  CHECK(std::isnan(gz[size_t((4 + 0) * 3)]));
}

TEST(pairwise_dots_reject_negative_extents) {
  kintsugi::PairwiseDotsArgs a;
  a.n = 1, a.vectors = -2, a.dim = 4;
  float x = 0;
  CHECK_THROWS_KIND(kintsugi::pairwise_dots_forward(a, &x, &x), kintsugi::ErrorKind::Range);
  CHECK_THROWS_KIND(kintsugi::pairwise_dots_backward(a, &x, &x, &x), kintsugi::ErrorKind::Range);
}

TEST_MAIN()
