// Checksum-protected GEMM on the GPU (algorithm-based fault tolerance), two schemes:
//
//   Global (Huang–Abraham): the plain GEMM kernel, then one fused pass that compares every row
//   sum of C with op(A) (op(B) e), where op(B) e and |op(B)| e are the weights' checksums
//   (precomputed once, or computed in the call). A flagged row is located to a column with the
//   column checks e^T C vs (e^T op(A)) op(B) (computed only after a detection).
//   Thread (fused): a variant of the SIMT kernel in which every thread also accumulates the
//   checksums of its own 8 x 8 register tile (one-sided: its 8 column sums, from
//   s_a(k) = sum of its rows of A; two-sided: also its 8 row sums) and compares them with the sums
//   of its accumulators once, after the K loop. No extra memory traffic; the extra FMAs ride
//   along with the main loop. fp16/bf16 inputs run the same SIMT variant (fp32 arithmetic).
//
// Bounds use the CPU's error model (kintsugi/abft.h): |residual| <= kAbftBoundScale * tolerance
// * eps32 * f * magnitude, magnitude = the same checksum over |A| and |B| (f = 1, or k / 256 when
// the result came from fp16/bf16 tensor cores, whose fp32 accumulation truncates). A flag becomes
// an event naming a region of C; after the kernels, the host launcher recomputes every element of
// each flagged region exactly (fp64 from A and B) and compares it with its own element bound:
// one mismatch is located and corrected in place, several are all rewritten ("recomputed").
//
// The launcher is split so that clean runs can be timed on the stream alone:
// gemm_checked_launch enqueues everything and leaves flags in `workspace` (abft_workspace_bytes);
// gemm_checked_finish waits for the stream, reads the flags, repairs, and returns the report.
// C must be fp32 and beta 0 (C = alpha op(A) op(B)); tf32 is not supported.
#pragma once
#include <cstdint>
#include <vector>

#include "kintsugi/abft.h"
#include "kintsugi/cuda.h"

namespace kintsugi::cuda {

enum class AbftScheme { Global, Thread };

// Fault injection for campaigns and tests: flip bit `bit` of the accumulator of C(row, col).
// Thread scheme: inside the kernel, before the tile's check (the stored value carries it too).
// Global scheme: the stored output, between the GEMM and the check (what a flipped accumulator
// leaves in C when alpha is 1). row < 0 disables a slot.
struct AbftFaultSpec {
  int64_t row = -1, col = -1;
  int bit = 0;
};

struct CudaAbftOptions {
  AbftScheme scheme = AbftScheme::Global;
  AbftCheck check = AbftCheck::TwoSided;  // thread scheme; the global scheme always checks rows
  double tolerance = 1.0;
  bool correct = true;
  // Global scheme: 2k doubles in device memory from abft_weight_sums (sum_j op(B)(p, j) for
  // p < k, then sum_j |op(B)(p, j)|); null computes them in the call.
  const double* weight_sums = nullptr;
  AbftFaultSpec faults[2];
  int max_events = 64;  // events kept (more are counted; their regions are recomputed wholesale)
};

struct CudaAbftReport {
  int64_t checks = 0;        // row checks (global) or per-thread tile checks (thread)
  double max_ratio = 0;      // largest |residual| / bound before repair
  int64_t event_count = 0;   // flags raised (events holds at most max_events)
  bool fault_fired = false;  // an armed fault was injected
  std::vector<AbftEvent> events;
};

// Multiple of kAbftBoundScale * tolerance * eps32 used for a result of this kind (f above).
double abft_bound_factor(DType ab, int64_t k, AbftScheme scheme);

// Host-only checks (no CUDA call): GEMM shape/ld checks plus beta == 0, fp32 C, no tf32,
// tolerance, max_events and fault coordinates. Throws Range / Type errors.
void validate_gemm_checked(const GemmArgs& args, const CudaAbftOptions& opt);
// Device bytes of the workspace gemm_checked_launch / _finish need (16-byte aligned pointer).
int64_t abft_workspace_bytes(const GemmArgs& args, const CudaAbftOptions& opt);

void gemm_checked_launch(int device, const GemmArgs& args, const CudaAbftOptions& opt, void* workspace, Stream stream);
CudaAbftReport gemm_checked_finish(int device, const GemmArgs& args, const CudaAbftOptions& opt, void* workspace, Stream stream);
// launch + finish with a workspace of its own; returns when C is checked (and repaired).
CudaAbftReport gemm_checked(int device, const GemmArgs& args, const CudaAbftOptions& opt, Stream stream);

// The weights' checksums for the global scheme: out[p] = sum_j op(B)(p, j), out[k + p] =
// sum_j |op(B)(p, j)| (fp64, device memory, 2k doubles). op(B) is k x n.
void abft_weight_sums(int device, DType t, bool trans_b, int64_t k, int64_t n, const void* b, int64_t ldb, double* out,
                      Stream stream);

// Flips bit `bit` of element `index` of a device array of dtype t (fp32: bits 0..31, fp16/bf16:
// 0..15): a soft error in an input or an output, on the stream.
void flip_bit(int device, DType t, void* data, int64_t index, int bit, Stream stream);

}  // namespace kintsugi::cuda
