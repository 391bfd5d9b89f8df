// Internal interface between the sgemm driver (gemm.cc) and checksum-protected GEMM (abft.cc).
// The driver stays the one place that owns blocking, packing and threading; a TileObserver sees
// each packed A block and runs each register tile in place of the plain micro-kernel call, so
// the checks ride on the driver's own loop nest (and its threads) without a fork of it.
#pragma once
#include <cstdint>

#include "gemm_internal.h"
#include "kintsugi/gemm.h"

namespace kintsugi {
namespace gemm_internal {

class TileObserver {
 public:
  virtual ~TileObserver() = default;
  // Called on the thread that will run the block's tiles, before them: op(A) rows
  // [ic, ic + mc) x k range [pc, pc + kc) as the micro-kernel reads it, in MR-row panels:
  // A(ic + r*mr + i, pc + p) at a[r * panel_stride + i * row_stride + p * p_stride]; its tiles
  // cover C columns [jc, jc + nc).
  virtual void a_block(int64_t ic, int64_t mc, int64_t pc, int64_t kc, const float* a, int64_t row_stride, int64_t p_stride,
                       int64_t panel_stride, int mr, int64_t jc, int64_t nc) = 0;
  // Bracket one thread's share of the loop nest (all its blocks and tiles run between them, on
  // that thread): per-thread tallies start and are merged without a lock per tile.
  virtual void range_begin() {}
  virtual void range_done() {}
  // Runs tile `t` (C rows [i, i + t.mr) x columns [j, j + t.nr), k range [pc, pc + t.k)) in place
  // of ks.micro(t); `last` is true for the tile's final k block.
  virtual void tile(const KernelSet& ks, MicroTile& t, int64_t i, int64_t j, int64_t pc, bool last) = 0;
};

// Vector helpers of the checks (abft_avx512.cc; portable versions in abft.cc). Pairs are
// (value, magnitude) interleaved: x[2p], x[2p+1].
struct AbftKernels {
  const char* name;
  // dst[2p] = a[p], dst[2p+1] = |a[p]|, p < k, contiguous a.
  void (*interleave_abs)(const float* a, int64_t k, float* dst);
  // Column sums of the mr-row panels of `rows` rows (row i of panel q at a + q * panel_stride +
  // i * row_stride, contiguous in p; the last panel may be shorter): for panel q, dst_q[2p] =
  // sum_i a_i[p], dst_q[2p+1] = sum_i |a_i[p]|, p < k, dst_q = dst + q * 2k (written, not added).
  void (*panel_sums)(const float* a, int64_t rows, int mr, int64_t row_stride, int64_t panel_stride, int64_t k, float* dst);
  // For panels r < panels and groups g < groups, with x_r = x + r * x_stride and
  // y_g = y + g * y_stride: state_r,g[0] += sum_p x_r[2p] y_g[2p] and state_r,g[1] +=
  // sum_p x_r[2p+1] y_g[2p+1] (p < pairs), where
  // state_r,g = state + r * state_stride + 2 * g. One register-blocked pass (the expected
  // checksums of a whole block of tiles), no horizontal sum per dot.
  void (*block_dots)(const float* x, int64_t panels, int64_t x_stride, const float* y, int64_t groups, int64_t y_stride, int64_t pairs,
                     double* state, int64_t state_stride);
  // sum_i x[i] (a tile's column sums), returned in double.
  double (*sum)(const float* x, int64_t n);
  // One row of the global check: out3 += (sum_p a[p] bsum[p], sum_p |a[p]| babs[p], sum_j c[j]),
  // contiguous a (k) and c (n), in double.
  void (*row_check)(const float* a, const double* bsum, const double* babs, int64_t k, const float* c, int64_t n, double* out3);
};
const AbftKernels* abft_avx512_kernels();  // null where not compiled
const AbftKernels* abft_avx2_kernels();

// Columns of the register tiles of a `rows`-row block in an observed GEMM (gemm.cc): the few-row
// wide tiles rounded down to whole multiples of ks.nr (96 -> 64 with AVX-512), so checksum groups
// can be a whole nr wide: half the expected-checksum work of groups that must also divide 96.
int observed_tile_cols(const KernelSet& ks, int rows);

// Row-major view of the arguments (gemm.cc): column-major sgemm is row-major on the transposes.
SgemmArgs as_row_major(const SgemmArgs& args);

// sgemm (beta and alpha as given) with every block and tile passed through `observer`. Always takes
// the packed/streamed micro-kernel path (never the dot-product tiles), row-major view of `args`.
void sgemm_observed(const SgemmArgs& args, TileObserver& observer);

}  // namespace gemm_internal
}  // namespace kintsugi
