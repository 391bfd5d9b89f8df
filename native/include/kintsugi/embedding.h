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
// With `counts` (a byte per table row), every row written has its byte incremented, saturating at
// 255: how often each row was updated, kept in the same pass over the rows.
void scatter_rows(const RowSet& set, const uint32_t* src, bool xor_into, uint32_t* table, uint8_t* present = nullptr,
                  uint8_t* counts = nullptr);

}  // namespace kintsugi

namespace kintsugi {

// The dot-product interaction of recommendation models (DLRM): for each of n samples, the pairwise
// dots of its `vectors` vectors of `dim` floats (the bottom MLP's output and one embedding per
// sparse feature). Pairs run over the lower triangle row by row — (1,0), (2,0), (2,1), (3,0), … —
// and with `self` include the diagonal — (0,0), (1,0), (1,1), … — as DLRM's interaction does.
struct PairwiseDotsArgs {
  int64_t n = 0, vectors = 0, dim = 0;
  bool self = false;
  int64_t pairs() const { return self ? vectors * (vectors + 1) / 2 : vectors * (vectors - 1) / 2; }
};

// Throws Range errors for negative extents.
void check_pairwise_dots(const PairwiseDotsArgs& args);
// out[s, p(i, j)] = sum_c z[s, i, c] * z[s, j, c]; z is [n, vectors, dim], out [n, pairs]. Each dot
// sums c in ascending order, so results do not depend on the thread count.
void pairwise_dots_forward(const PairwiseDotsArgs& args, const float* z, float* out);
// The backward: grad_z[s, i, :] = sum_j (G + G^T)[i, j] * z[s, j, :] (j ascending), where G holds
// grad_out[s] at the pairs' places. grad_z ([n, vectors, dim]) is overwritten.
void pairwise_dots_backward(const PairwiseDotsArgs& args, const float* z, const float* grad_out, float* grad_z);

}  // namespace kintsugi
