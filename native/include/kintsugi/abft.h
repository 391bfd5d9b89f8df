// Checksum-protected sgemm (algorithm-based fault tolerance) on the CPU.
//
// sgemm_checked computes C = alpha * op(A) * op(B) (beta must be 0) with the BLIS driver of
// gemm.cc and checks every micro-kernel register tile once, after its whole K loop
// ("thread-level" ABFT, as FT-BLAS fuses checksums into its AVX-512 micro-kernels):
//
//   two-sided  e^T C_tile e  vs  sum_p (e^T A_panel)_p (B_tile e)_p    (one dot per tile)
//   one-sided  C_tile e      vs  A_panel (B_tile e)                    (one dot per tile row)
//
// The actual sums come from the micro-kernel's accumulator registers through its ABFT hook
// (MicroTile::row_sums / col_sums); B_tile e is built from group sums of op(B) over column
// groups as wide as the largest width dividing every tile (abft_group_width(): 64 columns with
// the AVX-512 kernels, whose few-row tiles are kept to multiples of 64 in checked runs),
// computed once per call or supplied precomputed for constant weights. e^T A_panel is summed
// once per panel and k block and dotted with every group sum of the block in one pass per four
// panels, shared by all the panels' tiles (abft.cc: when, relative to the tiles).
//
// A tile whose |residual| exceeds its bound (a floating-point error bound scaled by the
// magnitudes involved, sum_p (e^T|A|)_p (|B| e)_p) is then located: the tile's row and column
// sums are recomputed in fp64 from A and B; a single row and column mismatch pins one element,
// which is recomputed exactly; anything else recomputes the whole tile. Every event is reported.
#pragma once
#include <cstdint>
#include <vector>

#include "kintsugi/gemm.h"

namespace kintsugi {

enum class AbftCheck { OneSided, TwoSided };
enum class AbftAction { Corrected, Recomputed, Detected };

// Columns per group of the B checksums for the active kernels and blocking: divides every tile's
// width and first column, so a tile's B e is the sum of whole groups.
int abft_group_width();

struct AbftOptions {
  AbftCheck check = AbftCheck::TwoSided;
  // Multiplies the calibrated bound (kAbftBoundScale * eps32 * magnitude); > 0.
  double tolerance = 1.0;
  // Correct (locate + recompute) flagged tiles in place; false only reports them.
  bool correct = true;
  // Optional group sums of op(B) from abft_group_sums (row-major calls only), with their group
  // width. Null, or a width that does not divide abft_group_width(): computed inside the call.
  const float* b_group_sums = nullptr;
  int64_t b_group_sums_len = 0;
  int b_group_width = 0;
};

struct AbftEvent {
  // The tile, in C's logical coordinates.
  int64_t row0 = 0, col0 = 0;
  int rows = 0, cols = 0;
  double residual = 0, bound = 0;  // of the tile check that fired (alpha included)
  int64_t row = -1, col = -1;      // the located element (Corrected only)
  float before = 0, after = 0;     // its value before and after correction
  AbftAction action = AbftAction::Detected;
};

struct AbftReport {
  int64_t tiles = 0;       // tile checks performed
  double max_ratio = 0;    // largest |residual| / bound over all tiles (before correction)
  std::vector<AbftEvent> events;
};

// The scale of the bound: |residual| <= kAbftBoundScale * tolerance * eps32 * magnitude, where
// magnitude = |alpha| * sum_p (e^T|A|)_p (|B| e)_p over the tile (or row). Calibrated on clean
// runs (native/tests/test_abft.cc: edge shapes, every ISA, one-signed data, k up to 4096): the
// worst clean residual stays below 1/8 of it.
constexpr double kAbftBoundScale = 128.0;

// Throws like check_sgemm, plus Range errors for beta != 0, a non-positive tolerance and a group
// sum buffer of the wrong length.
void check_sgemm_checked(const SgemmArgs& args, const AbftOptions& opt, int64_t a_len, int64_t b_len, int64_t c_len);
AbftReport sgemm_checked(const SgemmArgs& args, const AbftOptions& opt);

// Group sums of op(B) (k x n, given as in SgemmArgs for a row-major call): for the group g of
// `width` columns and row p, out[(g * k + p) * 2] = sum_j B(p, j), out[... + 1] = sum_j |B(p, j)|.
int64_t abft_group_sums_size(int64_t k, int64_t n, int width);
void abft_group_sums(Transpose trans_b, int64_t k, int64_t n, const float* b, int64_t ldb, int width, float* out);

// Global (Huang–Abraham) row check of C (m x n) = op(A) (m x k) * B with B's offline row sums:
// expected[i] = sum_p A(i, p) bsum[p], magnitude[i] = sum_p |A(i, p)| babs[p],
// actual[i] = sum_j C(i, j); all fp64. Row-major A (transposed when trans_a) and C.
void abft_row_check(Transpose trans_a, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const double* bsum,
                    const double* babs, const float* c, int64_t ldc, double* expected, double* magnitude, double* actual);

// The global scheme in one call: sgemm(args) (beta as given, so C may hold a bias beforehand),
// then abft_row_check of the C it wrote against op(A) and B's offline row sums. Row-major only.
// Throws like check_sgemm, and a Range error for a column-major call.
void sgemm_row_checked(const SgemmArgs& args, const double* bsum, const double* babs, double* expected, double* magnitude,
                       double* actual);

// Test-only fault injection: the next sgemm_checked call flips bit `bit` (0..31) of the
// accumulator of C(row, col) (logical coordinates) before it is stored, as a soft error in a
// register would. One-shot; clear_abft_fault() disarms it. Returns through abft_fault_fired()
// whether the last checked call injected it.
void set_abft_fault(int64_t row, int64_t col, int bit);
void clear_abft_fault();
bool abft_fault_fired();

}  // namespace kintsugi
