// Embedding bags: the sparse side of recommendation models.
#pragma once
#include <cstdint>

namespace kintsugi {

enum class BagMode { Sum, Mean };

struct EmbeddingBagArgs {
  int64_t rows = 0, dim = 0;        // table shape
  const int32_t* indices = nullptr;  // nnz row indices
  int64_t nnz = 0;
  const int32_t* offsets = nullptr;  // bags + 1 offsets into indices, non-decreasing, [0] = 0, [bags] = nnz
  int64_t bags = 0;
  const float* weights = nullptr;    // optional per-index weights (nnz)
  BagMode mode = BagMode::Sum;
};

// Throws Range errors naming the first bad index/offset and its position.
void check_embedding_bag(const EmbeddingBagArgs& args);
// out[bag, :] = sum (or mean) over the bag's rows of weight * table[row, :].
void embedding_bag_forward(const EmbeddingBagArgs& args, const float* table, float* out);
// grad_table[row, :] += scale * weight * grad_out[bag, :] for every index: the backward of the
// forward above, and the scatter-add a sparse optimizer needs. Safe against repeated rows.
void embedding_bag_backward(const EmbeddingBagArgs& args, const float* grad_out, float scale, float* grad_table);

}  // namespace kintsugi

namespace kintsugi {

// Row moves over a table of `table_rows` rows of `width` 32-bit words (embedding rows with their
// optimizer state, parity rows), by word so every bit survives (NaN payloads included). The rows
// are scattered over a large table: the kernels prefetch a few rows ahead so their cache and TLB
// misses overlap. Indices are checked first (Range error naming the first bad one).
struct RowSet {
  int64_t table_rows = 0, width = 0;
  const int32_t* rows = nullptr;
  int64_t count = 0;
};

// out[i, 0:cols] = table[rows[i], col:col + cols].
void gather_rows(const RowSet& set, const uint32_t* table, int64_t col, int64_t cols, uint32_t* out);
// table[rows[i], :] = src[i, :] (copy; a repeated row ends with its last entry) or ^= (xor).
// With `present` (a byte per table row), a copy skips the rows whose byte is set and sets the
// bytes of those it writes: rows arriving from two places (a rebuild, a degraded read) are each
// installed once, by whichever comes first, and a repeated row keeps its first entry.
void scatter_rows(const RowSet& set, const uint32_t* src, bool xor_into, uint32_t* table, uint8_t* present = nullptr);

}  // namespace kintsugi
