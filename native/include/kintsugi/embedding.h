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
