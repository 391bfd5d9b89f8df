// Embedding bags: forward (sum / mean, optional per-index weights) and the scatter-add backward.
//
// The backward is race-free without atomics: each pool task owns a set of table elements (a range
// of columns when rows are wide, else a set of rows) and scans every index, applying only the
// updates that land in what it owns. Each element therefore receives its updates in index order,
// so results are identical to the serial loop whatever the thread count.
#include "kintsugi/embedding.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>

#include "kernels_internal.h"
#include "kintsugi/error.h"
#include "kintsugi/threadpool.h"

namespace kintsugi {
namespace {

constexpr int64_t kParallelWork = 1 << 16;  // index-element updates below which one thread does it
constexpr int64_t kLineFloats = 16;         // one 64-byte cache line of floats

std::string str(int64_t v) { return std::to_string(v); }

// scale for one index of bag b: weight (1 when absent), divided by the bag size in mean mode.
inline float index_coeff(const EmbeddingBagArgs& a, int64_t p, float bag_scale) {
  return (a.weights ? a.weights[p] : 1.0f) * bag_scale;
}

inline float bag_scale(const EmbeddingBagArgs& a, int64_t b) {
  const int64_t count = int64_t(a.offsets[b + 1]) - int64_t(a.offsets[b]);
  return (a.mode == BagMode::Mean && count > 0) ? 1.0f / float(count) : 1.0f;
}

void forward_impl(const EmbeddingBagArgs& a, const float* table, float* out) {
  const int64_t dim = a.dim;
  const int64_t per_bag = std::max<int64_t>(1, (a.nnz / std::max<int64_t>(1, a.bags) + 1) * dim);
  parallel_for(a.bags, std::max<int64_t>(1, kParallelWork / per_bag), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      float* o = out + b * dim;
      std::fill(o, o + dim, 0.0f);
      const int64_t p0 = a.offsets[b], p1 = a.offsets[b + 1];
      for (int64_t p = p0; p < p1; ++p) {
        const float* row = table + int64_t(a.indices[p]) * dim;
        if (a.weights) {
          const float w = a.weights[p];
          for (int64_t d = 0; d < dim; ++d) o[d] += w * row[d];
        } else {
          for (int64_t d = 0; d < dim; ++d) o[d] += row[d];
        }
      }
      if (a.mode == BagMode::Mean && p1 > p0) {
        const float inv = 1.0f / float(p1 - p0);
        for (int64_t d = 0; d < dim; ++d) o[d] *= inv;
      }
    }
  });
}

// Applies every update, restricted to columns [d0, d1) and to rows for which owns(row) holds.
template <typename Owns>
void scatter(const EmbeddingBagArgs& a, const float* grad_out, float scale, float* grad_table, int64_t d0, int64_t d1,
             const Owns& owns) {
  const int64_t dim = a.dim, len = d1 - d0;
  for (int64_t b = 0; b < a.bags; ++b) {
    const int64_t p0 = a.offsets[b], p1 = a.offsets[b + 1];
    if (p0 == p1) continue;
    const float s = scale * bag_scale(a, b);
    const float* g = grad_out + b * dim + d0;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t row = a.indices[p];
      if (!owns(row)) continue;
      const float c = index_coeff(a, p, s);
      float* t = grad_table + row * dim + d0;
      for (int64_t d = 0; d < len; ++d) t[d] += c * g[d];
    }
  }
}

void backward_impl(const EmbeddingBagArgs& a, const float* grad_out, float scale, float* grad_table) {
  const int64_t dim = a.dim;
  auto all_rows = [](int64_t) { return true; };
  const int threads = num_threads();
  if (threads <= 1 || a.nnz * dim < kParallelWork) {
    scatter(a, grad_out, scale, grad_table, 0, dim, all_rows);
    return;
  }
  if (dim >= kLineFloats * threads) {
    // Wide rows: each task owns whole cache lines of every row; balanced whatever the index skew.
    const int64_t lines = (dim + kLineFloats - 1) / kLineFloats;
    parallel_for(lines, 1, [&](int64_t l0, int64_t l1) {
      scatter(a, grad_out, scale, grad_table, l0 * kLineFloats, std::min(dim, l1 * kLineFloats), all_rows);
    });
    return;
  }
  // Narrow rows: task t owns the rows of every threads-th group of 16 rows (group-cyclic, so a skewed
  // (Zipf) index distribution still spreads, and neighbouring rows rarely change owner mid-line).
  parallel_tasks(threads, threads, [&](int64_t t) {
    auto mine = [t, threads](int64_t row) { return (row / kLineFloats) % threads == t; };
    scatter(a, grad_out, scale, grad_table, 0, dim, mine);
  });
}

}  // namespace

void check_embedding_bag(const EmbeddingBagArgs& a) {
  if (a.rows < 0) throw_expected(ErrorKind::Range, "a non-negative row count", "rows", str(a.rows));
  if (a.dim < 0) throw_expected(ErrorKind::Range, "a non-negative embedding dimension", "dim", str(a.dim));
  if (a.nnz < 0) throw_expected(ErrorKind::Range, "a non-negative index count", "nnz", str(a.nnz));
  if (a.bags < 0) throw_expected(ErrorKind::Range, "a non-negative bag count", "bags", str(a.bags));
  if (a.nnz > INT32_MAX)
    throw_expected(ErrorKind::Range, "at most " + str(INT32_MAX) + " indices (int32 offsets)", "nnz", str(a.nnz));
  if (a.rows > int64_t(INT32_MAX) + 1)
    throw_expected(ErrorKind::Range, "at most 2^31 rows (int32 indices)", "rows", str(a.rows));
  if (a.mode != BagMode::Sum && a.mode != BagMode::Mean)
    throw_expected(ErrorKind::Range, "sum or mean", "mode", str(int64_t(a.mode)));
  if (a.nnz > 0 && !a.indices) throw_expected(ErrorKind::Type, str(a.nnz) + " indices", "indices", "null");
  if (!a.offsets) {
    if (a.bags > 0 || a.nnz > 0)
      throw_expected(ErrorKind::Type, str(a.bags + 1) + " offsets (bags + 1)", "offsets", "null");
    return;
  }
  if (a.offsets[0] != 0) throw_expected(ErrorKind::Range, "0", "offsets[0]", str(a.offsets[0]));
  for (int64_t b = 1; b <= a.bags; ++b) {
    const int64_t prev = a.offsets[b - 1], cur = a.offsets[b];
    if (cur < prev || cur > a.nnz)
      throw_expected(ErrorKind::Range, "non-decreasing offsets in [" + str(prev) + ", " + str(a.nnz) + "]",
                     "offsets[" + str(b) + "]", str(cur));
  }
  if (a.offsets[a.bags] != a.nnz)
    throw_expected(ErrorKind::Range, "nnz (" + str(a.nnz) + ")", "offsets[" + str(a.bags) + "]", str(a.offsets[a.bags]));
  for (int64_t p = 0; p < a.nnz; ++p) {
    const int64_t row = a.indices[p];
    if (row < 0 || row >= a.rows)
      throw_expected(ErrorKind::Range, "indices in [0, " + str(a.rows) + ")", "indices[" + str(p) + "]", str(row));
  }
}

void embedding_bag_forward(const EmbeddingBagArgs& args, const float* table, float* out) {
  check_embedding_bag(args);
  if (args.bags == 0 || args.dim == 0) return;
  detail::translate_bad_alloc("embedding_bag_forward", [&] { forward_impl(args, table, out); });
}

void embedding_bag_backward(const EmbeddingBagArgs& args, const float* grad_out, float scale, float* grad_table) {
  check_embedding_bag(args);
  if (args.nnz == 0 || args.dim == 0) return;
  detail::translate_bad_alloc("embedding_bag_backward", [&] { backward_impl(args, grad_out, scale, grad_table); });
}

}  // namespace kintsugi

namespace kintsugi {
namespace {

// Rows this far ahead are prefetched: enough misses in flight to cover the latency of a table far
// larger than the caches, few enough that the lines are still there when the loop arrives.
constexpr int64_t kPrefetchAhead = 8;

void check_row_set(const RowSet& s, const char* op) {
  if (s.table_rows < 0) throw_expected(ErrorKind::Range, "a non-negative row count", "table rows", str(s.table_rows));
  if (s.width < 1) throw_expected(ErrorKind::Range, "a row width of at least 1 word", "width", str(s.width));
  if (s.count > 0 && !s.rows) throw_expected(ErrorKind::Type, str(s.count) + " row indices", "rows", "null");
  for (int64_t i = 0; i < s.count; ++i) {
    if (s.rows[i] < 0 || s.rows[i] >= s.table_rows)
      throw_expected(ErrorKind::Range, std::string("rows in [0, ") + str(s.table_rows) + ") for " + op, "rows[" + str(i) + "]", str(s.rows[i]));
  }
}

inline void prefetch_row(const uint32_t* row, int64_t words, int write) {
  // First and last line: rows are short (tens of words), so this covers every line they touch.
  __builtin_prefetch(row, write, 3);
  __builtin_prefetch(row + words - 1, write, 3);
}

}  // namespace

void gather_rows(const RowSet& s, const uint32_t* table, int64_t col, int64_t cols, uint32_t* out) {
  check_row_set(s, "gather_rows");
  if (col < 0 || cols < 0 || col + cols > s.width)
    throw_expected(ErrorKind::Range, "a column range inside the row width " + str(s.width), "columns", str(col) + ".." + str(col + cols));
  if (cols == 0) return;
  for (int64_t i = 0; i < s.count; ++i) {
    if (i + kPrefetchAhead < s.count) prefetch_row(table + s.rows[i + kPrefetchAhead] * s.width + col, cols, 0);
    std::memcpy(out + i * cols, table + s.rows[i] * s.width + col, size_t(cols) * 4);
  }
}

void scatter_rows(const RowSet& s, const uint32_t* src, bool xor_into, uint32_t* table, uint8_t* present, uint8_t* counts) {
  check_row_set(s, "scatter_rows");
  if (present && xor_into) throw_expected(ErrorKind::Type, "copies (a present mask skips rows already written)", "xor", "true with a present mask");
  const int64_t w = s.width;
  for (int64_t i = 0; i < s.count; ++i) {
    if (i + kPrefetchAhead < s.count) {
      prefetch_row(table + s.rows[i + kPrefetchAhead] * w, w, 1);
      if (counts) __builtin_prefetch(counts + s.rows[i + kPrefetchAhead], 1);
    }
    if (present) {
      if (present[s.rows[i]]) continue;
      present[s.rows[i]] = 1;
    }
    if (counts) counts[s.rows[i]] += counts[s.rows[i]] < 255;
    uint32_t* to = table + s.rows[i] * w;
    const uint32_t* from = src + i * w;
    if (xor_into) {
      for (int64_t j = 0; j < w; ++j) to[j] ^= from[j];
    } else {
      std::memcpy(to, from, size_t(w) * 4);
    }
  }
}

}  // namespace kintsugi
