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
  // A(ic + r*mr + i, pc + p) at a[r * panel_stride + i * row_stride + p * p_stride].
  virtual void a_block(int64_t ic, int64_t mc, int64_t pc, int64_t kc, const float* a, int64_t row_stride, int64_t p_stride,
                       int64_t panel_stride, int mr) = 0;
  // Runs tile `t` (C rows [i, i + t.mr) x columns [j, j + t.nr), k range [pc, pc + t.k)) in place
  // of ks.micro(t); `last` is true for the tile's final k block.
  virtual void tile(const KernelSet& ks, MicroTile& t, int64_t i, int64_t j, int64_t pc, bool last) = 0;
};

// Vector helpers of the checks (abft_avx512.cc; portable versions in abft.cc). Pairs are
// (value, magnitude) interleaved: x[2p], x[2p+1].
struct AbftKernels {
  const char* name;
  // out2 += (sum_p x[2p] y[2p], sum_p x[2p+1] y[2p+1]), p < pairs.
  void (*dot_pairs)(const float* x, const float* y, int64_t pairs, double* out2);
  // out2 += (sum_p a[p] y[2p], sum_p |a[p]| y[2p+1]), p < k, contiguous a.
  void (*dot_row)(const float* a, const float* y, int64_t k, double* out2);
  // dst[2p] += a[p], dst[2p+1] += |a[p]|, p < k, contiguous a.
  void (*add_pairs)(const float* a, int64_t k, float* dst);
  // dst[i] += src[i], i < n.
  void (*add_into)(const float* src, int64_t n, float* dst);
};
const AbftKernels* abft_avx512_kernels();  // null where not compiled

// Row-major view of the arguments (gemm.cc): column-major sgemm is row-major on the transposes.
SgemmArgs as_row_major(const SgemmArgs& args);

// sgemm (beta and alpha as given) with every block and tile passed through `observer`. Always takes
// the packed/streamed micro-kernel path (never the dot-product tiles), row-major view of `args`.
void sgemm_observed(const SgemmArgs& args, TileObserver& observer);

}  // namespace gemm_internal
}  // namespace kintsugi
