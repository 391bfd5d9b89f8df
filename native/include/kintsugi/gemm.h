// Single-precision GEMM with BLAS semantics: C = alpha * op(A) * op(B) + beta * C.
// When beta == 0, C is written without being read (NaN/Inf already in C do not propagate).
#pragma once
#include <cstdint>
#include <memory>

namespace kintsugi {

enum class Layout { RowMajor, ColMajor };
enum class Transpose { No, Yes };

struct SgemmArgs {
  Layout layout = Layout::RowMajor;
  Transpose trans_a = Transpose::No, trans_b = Transpose::No;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.0f;
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  float beta = 0.0f;
  float* c = nullptr;
  int64_t ldc = 0;
};

// The arguments of a row-major C = A * B + beta * C with neither operand transposed.
SgemmArgs row_major_args(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                         int64_t ldc, float beta = 0.0f);

// Throws Range errors for negative sizes, leading dimensions too small for the layout, or
// buffers (given as element counts) too short for the extents they must hold.
void check_sgemm(const SgemmArgs& args, int64_t a_len, int64_t b_len, int64_t c_len);

// Fast path (packed, blocked, multi-threaded, ISA-dispatched).
void sgemm(const SgemmArgs& args);
// The naive triple loop with double accumulation: the oracle for tests.
void sgemm_reference(const SgemmArgs& args);

// op(B) (k x n) packed once into the micro-kernel's panel format; multiply many times.
// Inference weights are constant, so their packing cost is paid once.
class PackedMatrix;
struct PackedMatrixDeleter { void operator()(PackedMatrix* p) const; };
using PackedMatrixPtr = std::unique_ptr<PackedMatrix, PackedMatrixDeleter>;

// Pack op(B) where B is given as in SgemmArgs (layout, trans_b, k, n, b, ldb).
PackedMatrixPtr pack_b(Layout layout, Transpose trans_b, int64_t k, int64_t n, const float* b, int64_t ldb);
int64_t packed_rows(const PackedMatrix& p);  // k
int64_t packed_cols(const PackedMatrix& p);  // n
// C (m x n) = alpha * op(A) * packed + beta * C; a/c use args' layout/trans_a/lda/ldc.
void sgemm_packed(const SgemmArgs& args, const PackedMatrix& packed_b);

// The same panel format in caller-owned memory (a buffer kept in a typed array, a thread-local
// scratch): op(B) (k x n) as ceil(n / nr) panels of k x nr floats, panel q holding columns
// [q*nr, q*nr + nr), zero past n. Any nr that is a multiple of 16 works with every ISA's kernels;
// packed_b_panel_width() is the one pack_b picks for the active ISA.
int packed_b_panel_width();
int64_t packed_b_floats(int64_t k, int64_t n, int nr);
void pack_b_into(Layout layout, Transpose trans_b, int64_t k, int64_t n, const float* b, int64_t ldb, int nr, float* dst);
// sgemm_packed over such panels; args.k and args.n give the packed shape (a column range
// starting at a panel boundary is the same panels from that panel on). Runs on the calling
// thread when called from a pool task.
void sgemm_packed_panels(const SgemmArgs& args, const float* panels, int nr);

}  // namespace kintsugi
