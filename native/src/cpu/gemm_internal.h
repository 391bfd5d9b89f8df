// Internal interface between the ISA-independent BLIS-style sgemm driver (gemm.cc) and the
// per-ISA micro-kernels (gemm_avx512.cc, gemm_avx2.cc, gemm_portable.cc).
//
// The driver owns the loops around the micro-kernel (NC -> KC -> MC -> NR -> MR), the packing
// and the threading; an ISA contributes only a micro-kernel and a small description of it
// (KernelSet), as in BLIS. The ISA files hold intrinsics, plain loops and internal-linkage
// functions only; their one extern entry point each returns a pointer to a constant KernelSet,
// so no inline/template code compiled with wide-ISA flags can be shared with the rest of the
// program through the linker (ODR).
#pragma once
#include <cstdint>

#include "kintsugi/gemm.h"

namespace kintsugi {
namespace gemm_internal {

// One register tile: C[mr x nr] = alpha * A_panel * B_panel + beta * C (beta == 0: C is not read).
//
//  a   packed A micro-panel: for p in [0, k), the mr values A(i, p), i < mr, at a[p * a_stride + i]
//      (a_stride is the MR the panel was packed with; rows mr..a_stride-1 are zero padding).
//  b   B micro-panel: for p in [0, k), the nr values B(p, j), j < nr, at b[p * b_stride + j].
//      b_stride is NR for packed panels (zero-padded to a multiple of the vector width) or ldb
//      when B is streamed in place (the small-M path); the kernel never reads past column nr.
//  c   row-major tile, element (i, j) at c[i * ldc + j]; only the mr x nr elements are touched.
//
// ABFT hook (for checksum-protected GEMM, not used by sgemm itself): when row_sums is not null
// the kernel writes, for each i < mr, the sum over j of the values it wrote to C row i into
// row_sums[i]; when col_sums is not null it writes, for each j < nr, the sum over i of the values
// it wrote to C column j into col_sums[j] (nothing to clear beforehand). The column sums come straight from the accumulator
// registers (one vector add per row), so an output checksum costs almost nothing; the row sums
// need one horizontal reduction per row. A caller that wants checksums of alpha*A*B alone passes
// beta = 0 and a scratch tile.
struct MicroTile {
  int64_t k = 0;
  const float* a = nullptr;
  int64_t a_stride = 0;
  int64_t a_row_stride = 1;  // A(i, p) at a[i * a_row_stride + p * a_stride]; 1 for packed panels
  const float* b = nullptr;
  int64_t b_stride = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  int mr = 0, nr = 0;
  float alpha = 1.0f, beta = 0.0f;
  float* row_sums = nullptr;
  float* col_sums = nullptr;
};

using MicroKernel = void (*)(const MicroTile&);

// Dot-product tile for small M with a transposed B (B^T rows contiguous in k, the layout of
// inference weights stored out x in): C(i, j) = alpha * sum_p A(i, p) B(p, j) + beta * C(i, j)
// for i < mr, j < nr, with A(i, p) at a[i * lda + p] and B(p, j) at b[j * ldb + p]. Both
// operands stream contiguously, so no packing is needed; beta == 0 leaves C unread.
struct DotTile {
  int64_t k = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  int mr = 0, nr = 0;
  float alpha = 1.0f, beta = 0.0f;
};
using DotKernel = void (*)(const DotTile&);

// Row-streaming tile for small M with B rows contiguous (B not transposed, the inference case):
// C(i, j) = alpha * sum_p A(i, p) B(p, j) + beta * C(i, j) for i < mr, j < n, with
// A(i, p) at a[i * a_row_stride + p * a_stride], B(p, j) at b[p * ldb + j] and C(i, j) at
// c[i * ldc + j]. The kernel walks B a few whole rows at a time (each row read once, front to
// back, so the hardware prefetchers see long sequential streams and rows a power of two apart
// never compete for the same L1 sets), keeping partial sums of the mr x n result in `acc`
// (mr * n floats, row i at acc + i * n; unused when k is at most one row group).
// beta == 0 leaves C unread. row_sums / col_sums: the ABFT hook of MicroTile (sums of the values
// written to C, added per row / per column), null when not wanted.
struct StreamTile {
  int64_t k = 0;
  const float* a = nullptr;
  int64_t a_stride = 1;      // A(i, p + 1) - A(i, p)
  int64_t a_row_stride = 0;  // A(i + 1, p) - A(i, p)
  const float* b = nullptr;
  int64_t ldb = 0;
  int64_t n = 0;
  int mr = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  float alpha = 1.0f, beta = 0.0f;
  float* acc = nullptr;
  float* row_sums = nullptr;
  float* col_sums = nullptr;
};
using StreamKernel = void (*)(const StreamTile&);

// What an ISA offers. `micro` accepts 1 <= mr <= max_rows and 1 <= nr <= max_nr(mr), where
// max_nr(mr) = wide_nr[mr] for mr < 8 and `nr` otherwise. The driver packs A with `mr` rows per
// micro-panel and B with `nr` columns; wide_nr lets the small-M path use one wide tile
// (e.g. 1 x 128) when only a few rows are left, so the FMA chains stay independent.
struct KernelSet {
  const char* name;  // BLIS-style: sgemm_<isa>_<mr>x<nr>
  int mr, nr;
  int max_rows;
  bool direct_a;   // read op(A) in place (a_row_stride != 1) instead of packing it
  int wide_nr[8];  // index 0 unused
  MicroKernel micro;
  // Optional fast packing of a transposed B (nr a multiple of 16):
  // dst[p * nr + j] = b[j * ldb + p] for p < kc, j < cols <= nr, zero for cols <= j < nr.
  void (*pack_b_transposed)(const float* b, int64_t ldb, int64_t kc, int cols, int nr, float* dst);
  // Optional dot-product kernel: mr <= dot_mr, nr <= dot_nr (null: not offered).
  DotKernel dot;
  int dot_mr, dot_nr;
  // Row-streaming kernel for B not transposed: mr <= stream_mr, any n (null: not offered).
  StreamKernel stream;
  int stream_mr;
};

// Constant kernel descriptions; null where the ISA file is not compiled (non-x86 builds).
const KernelSet* avx512_kernels();
const KernelSet* avx2_kernels();
const KernelSet* portable_kernels();

// Cache blocking (elements). 0 fields mean "derive from cpu_info()".
struct Blocking {
  int64_t kc = 0, mc = 0, nc = 0;
  int mr = 0, nr = 0;  // override the register tile of the active KernelSet (must be supported)
  int64_t small_m = -1;  // largest M streamed without packing B (-1: default)
  int64_t dot_m = -1;    // largest M using the dot-product kernel for a transposed B (-1: default)
  int64_t stream_m = -1; // largest M using the row-streaming kernel for B not transposed (-1: default)
  int direct_a = -1;     // 1: read A in place, 0: pack A, -1: the KernelSet's choice
  int64_t swap_m = -1;   // largest M computed as the transposed problem C^T = op(B)^T op(A)^T (-1: default)
  int64_t swap_min_n = -1;  // smallest N for that form when B is not transposed (-1: default)
};
// For tests (tiny blocks exercise every edge cheaply) and tuning. Not thread-safe; call between
// sgemm calls. Passing Blocking{} restores the defaults.
void set_blocking_override(const Blocking& b);
// The blocking sgemm would use now with the active ISA (after overrides).
Blocking current_blocking();
// The kernel set sgemm uses now (follows active_isa()).
const KernelSet& active_kernels();
// sgemm (arguments unchecked) in the form asked for: a few-row C (m x n, m small, n long) is
// computed as it is, vectorised along its long rows, never as the transposed problem. For
// callers whose wide operand is B with contiguous rows (conv backward-data on small planes).
void sgemm_wide(const SgemmArgs& args);

}  // namespace gemm_internal
}  // namespace kintsugi
