// Checksum-protected GEMM on the GPU: the global (Huang–Abraham) and fused thread-level schemes,
// the host-side repair of flagged regions, and bit-flip fault injection. See kintsugi/cuda_abft.h.
//
// Kernels:
//   simt_abft_kernel<T, tA, tB, kTwo>  the SIMT GEMM main loop of gemm_simt.cuh (128x128x8 CTA
//                                     tile, 256 threads, 8x8 outputs per thread at rows
//                                     ty*4+{0..3}, 64+ty*4+{0..3} and columns likewise with tx),
//                                     its hook (TileChecksums) adding per k:
//                                       s_a = sum of the thread's 8 A values, |s|_a likewise;
//                                       col_exp[j] += s_a b[j], col_mag[j] += |s|_a |b[j]|
//                                     and with kTwo the row direction from s_b, |s|_b. After the K
//                                     loop each thread compares the column (and row) sums of its
//                                     accumulators with them; a flag appends an event.
//   row_check_kernel<T>              global: one warp per row i, fp64: op(A)(i,:) . (op(B) e),
//                                     op(|A|)(i,:) . (|op(B)| e) and sum_j C(i, j), compared.
//   row_dot_kernel / col_dot_kernel  weighted row / column sums (weights' checksums, e^T op(A),
//                                     column checks for location), fp64.
//   repair_kernel<T>                 one block per event: every element of the region recomputed
//                                     in fp64 and compared with its element bound; mismatches are
//                                     rewritten (when correcting) and the event gets its action.
//   flip_kernel                      one bit of one element (injection).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common.cuh"
#include "gemm_simt.cuh"
#include "kernels.cuh"
#include "kintsugi/cuda_abft.h"

namespace kintsugi::cuda {
namespace abft_detail {

// Report header and events as they lie in the workspace (plain data shared by host and device).
struct Header {
  unsigned int count;             // flags raised
  unsigned int fault_fired;
  unsigned long long max_ratio;   // bits of a non-negative double (ordered like the values)
  unsigned long long pad[2];
};
static_assert(sizeof(Header) == 32, "header layout");

// A region of C: rows row0 + ii (or, with split & 1, the thread tile's rows row0 + ii%4 + 64*(ii/4)),
// columns likewise with split & 2.
struct DevEvent {
  double residual, bound;
  int row0, col0, rows, cols, split;
  int action;      // AbftAction as int; -1 until repaired
  int row, col;    // located element, -1 if none
  int mismatches;  // elements outside their own bound
  float before, after;
};
static_assert(sizeof(DevEvent) == 64, "event layout");

__device__ __forceinline__ void record_ratio(Header* h, double q) {
  if (!(q == q)) q = __longlong_as_double(0x7ff0000000000000ll);  // NaN counts as infinity
  atomicMax(&h->max_ratio, static_cast<unsigned long long>(__double_as_longlong(q)));
}

// ---------------------------------------------------------------------------------------------
// Thread-level (fused) kernel.
struct ThreadParams {
  int m, n, k;
  const void* a; int64_t lda;
  const void* b; int64_t ldb;
  float* c; int64_t ldc;
  float alpha;
  float mul;  // bound = mul * magnitude (kAbftBoundScale * tolerance * eps32 * factor)
  int f_row[2], f_col[2], f_bit[2];
  Header* header;
  DevEvent* events;
  int max_events;
};

using gemm_simt::kBM;
using gemm_simt::kBN;
using gemm_simt::frag_index;

// The main loop's hook: the expected column (and with kTwo row) sums of the thread's 8x8 tile and
// their magnitudes, accumulated per k from the same a[8], b[8] the FMAs used.
template <bool kTwo>
struct TileChecksums {
  float col_exp[8], col_mag[8], row_exp[8], row_mag[8];  // row_* are dead (removed) unless kTwo

  __device__ __forceinline__ TileChecksums() {
#pragma unroll
    for (int i = 0; i < 8; ++i) col_exp[i] = col_mag[i] = row_exp[i] = row_mag[i] = 0.0f;
  }

  __device__ __forceinline__ void operator()(const float (&a)[8], const float (&b)[8]) {
    // Column checksums of the tile: sum over the thread's rows first (7 adds), then 8 FMAs; the
    // magnitudes the same over |a| and |b| (abs is a free operand modifier).
    const float sa = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    const float sabs = ((fabsf(a[0]) + fabsf(a[1])) + (fabsf(a[2]) + fabsf(a[3]))) +
                       ((fabsf(a[4]) + fabsf(a[5])) + (fabsf(a[6]) + fabsf(a[7])));
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      col_exp[j] = fmaf(sa, b[j], col_exp[j]);
      col_mag[j] = fmaf(sabs, fabsf(b[j]), col_mag[j]);
    }
    if constexpr (kTwo) {
      const float sb = ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
      const float sbabs = ((fabsf(b[0]) + fabsf(b[1])) + (fabsf(b[2]) + fabsf(b[3]))) +
                          ((fabsf(b[4]) + fabsf(b[5])) + (fabsf(b[6]) + fabsf(b[7])));
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        row_exp[i] = fmaf(a[i], sb, row_exp[i]);
        row_mag[i] = fmaf(fabsf(a[i]), sbabs, row_mag[i]);
      }
    }
  }
};

template <typename T, bool kTransA, bool kTransB, bool kTwo>
__global__ void __launch_bounds__(gemm_simt::kThreads) simt_abft_kernel(ThreadParams p) {
  __shared__ __align__(16) gemm_simt::SharedTile sA, sB;
  const int tid = int(threadIdx.x);
  const int tx = tid % 16, ty = tid / 16;
  int bm, bn;
  gemm_simt::cta_origin(p, bm, bn);

  float acc[8][8];
  TileChecksums<kTwo> sums;
  gemm_simt::main_loop<T, kTransA, kTransB>(p, sA, sB, bm, bn, acc, sums);
  const float (&col_exp)[8] = sums.col_exp, (&col_mag)[8] = sums.col_mag;
  const float (&row_exp)[8] = sums.row_exp, (&row_mag)[8] = sums.row_mag;

  // Thread tile coordinates: local row i is frag_index(row0, i); columns likewise.
  const int row0 = bm + ty * 4, col0 = bn + tx * 4;

  // Injection: flip a bit of an accumulator before the check (uniform branch; off by default).
#pragma unroll
  for (int f = 0; f < 2; ++f) {
    if (p.f_row[f] >= 0) {
      const int dr = p.f_row[f] - row0, dc = p.f_col[f] - col0;
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j)
          if (dr == frag_index(0, i) && dc == frag_index(0, j)) {
            acc[i][j] = __uint_as_float(__float_as_uint(acc[i][j]) ^ (1u << p.f_bit[f]));
            atomicExch(&p.header->fault_fired, 1u);
          }
    }
  }

  // Checks: |sum - expected| <= mul * magnitude (+ a tiny floor so an all-zero tile passes).
  float worst = 0.0f, res = 0.0f, bnd = 0.0f;
  int bad_cols = 0, bad_rows = 0, jbad = 0, ibad = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const float s = ((acc[0][j] + acc[1][j]) + (acc[2][j] + acc[3][j])) + ((acc[4][j] + acc[5][j]) + (acc[6][j] + acc[7][j]));
    const float r = s - col_exp[j], bd = fmaf(p.mul, col_mag[j], 1e-30f);
    float q = fabsf(r) / bd;
    if (!(q == q)) q = INFINITY;
    worst = fmaxf(worst, q);
    if (!(fabsf(r) <= bd)) {
      ++bad_cols;
      jbad = j;
      if (!(fabsf(res) >= fabsf(r))) { res = r; bnd = bd; }
    }
  }
  if constexpr (kTwo) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float s = ((acc[i][0] + acc[i][1]) + (acc[i][2] + acc[i][3])) + ((acc[i][4] + acc[i][5]) + (acc[i][6] + acc[i][7]));
      const float r = s - row_exp[i], bd = fmaf(p.mul, row_mag[i], 1e-30f);
      float q = fabsf(r) / bd;
      if (!(q == q)) q = INFINITY;
      worst = fmaxf(worst, q);
      if (!(fabsf(r) <= bd)) {
        ++bad_rows;
        ibad = i;
        if (!(fabsf(res) >= fabsf(r))) { res = r; bnd = bd; }
      }
    }
  }
  if (bad_cols + bad_rows > 0) {
    const unsigned slot = atomicAdd(&p.header->count, 1u);
    if (slot < unsigned(p.max_events)) {
      DevEvent e;
      e.residual = res;
      e.bound = bnd;
      // One flagged row (two-sided) or column pins that line; otherwise the whole 8x8 tile.
      const bool one_row = kTwo && bad_rows == 1, one_col = bad_cols == 1;
      e.row0 = one_row ? frag_index(row0, ibad) : row0;
      e.rows = one_row ? 1 : 8;
      e.col0 = one_col ? frag_index(col0, jbad) : col0;
      e.cols = one_col ? 1 : 8;
      e.split = (one_row ? 0 : 1) | (one_col ? 0 : 2);
      e.action = -1;
      e.row = e.col = -1;
      e.mismatches = 0;
      e.before = e.after = 0.0f;
      p.events[slot] = e;
    }
  }
  // One atomic per warp for the largest ratio.
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) worst = fmaxf(worst, __shfl_xor_sync(0xffffffffu, worst, off));
  if ((tid & 31) == 0) record_ratio(p.header, double(worst));

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int row = frag_index(row0, i);
    if (row >= p.m) continue;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int col = frag_index(col0, j);
      if (col < p.n) p.c[int64_t(row) * p.ldc + col] = p.alpha * acc[i][j];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Global scheme and shared helpers (fp64 accumulation).
constexpr int kThreads = 256;

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// out_s[r] = sum_c x(r, c) w[c], out_m[r] = sum_c |x(r, c)| wabs[c] (null weights: ones; null
// out_m: skipped). One warp per stored row.
template <typename T>
__global__ void __launch_bounds__(kThreads) row_dot_kernel(const T* __restrict__ x, int64_t rows, int64_t cols, int64_t ld,
                                                           const double* __restrict__ w, const double* __restrict__ wabs,
                                                           double* __restrict__ out_s, double* __restrict__ out_m) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t r = int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5); r < rows; r += warps) {
    const T* xr = x + r * ld;
    double s = 0, m = 0;
    for (int64_t c = lane; c < cols; c += 32) {
      const double v = to_float(xr[c]);
      s += w ? v * w[c] : v;
      m += wabs ? fabs(v) * wabs[c] : fabs(v);
    }
    s = warp_sum(s);
    m = warp_sum(m);
    if (lane == 0) {
      out_s[r] = s;
      if (out_m) out_m[r] = m;
    }
  }
}

// out_s[c] += sum_r w[r] x(r, c), out_m[c] += sum_r wabs[r] |x(r, c)| over a chunk of rows per
// block (32 columns x 8 row lanes); outputs zeroed beforehand. w and wabs are both given or both null.
template <typename T>
__global__ void __launch_bounds__(kThreads) col_dot_kernel(const T* __restrict__ x, int64_t rows, int64_t cols, int64_t ld,
                                                           int64_t rows_per_chunk, const double* __restrict__ w,
                                                           const double* __restrict__ wabs, double* __restrict__ out_s,
                                                           double* __restrict__ out_m) {
  __shared__ double ps[8][33], pm[8][33];
  const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
  const int64_t c = int64_t(blockIdx.x) * 32 + tx;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = min(rows, r0 + rows_per_chunk);
  double s = 0, m = 0;
  if (c < cols) {
    const T* xc = x + c;
    if (w) {
      for (int64_t r = r0 + ty; r < r1; r += 8) {
        const double v = to_float(xc[r * ld]);
        s = fma(w[r], v, s);
        m = fma(wabs[r], fabs(v), m);
      }
    } else {
      for (int64_t r = r0 + ty; r < r1; r += 8) {
        const double v = to_float(xc[r * ld]);
        s += v;
        m += fabs(v);
      }
    }
  }
  ps[ty][tx] = s;
  pm[ty][tx] = m;
  __syncthreads();
  if (ty == 0 && c < cols) {
    double S = ps[0][tx], M = pm[0][tx];
#pragma unroll
    for (int t = 1; t < 8; ++t) {
      S += ps[t][tx];
      M += pm[t][tx];
    }
    atomicAdd(&out_s[c], S);
    if (out_m) atomicAdd(&out_m[c], M);
  }
}

struct RowCheckParams {
  int m, n, k;
  const void* a; int64_t lda; bool trans_a;
  const float* c; int64_t ldc;
  const double* bsum;  // op(B) e
  const double* babs;  // |op(B)| e
  double alpha, mul;
  Header* header;
  DevEvent* events;
  int max_events;
};

// One warp per row of C: expected = op(A)(i,:) . bsum, magnitude = |op(A)(i,:)| . babs,
// actual = sum_j C(i, j). A flagged row becomes an event covering the row.
template <typename T>
__global__ void __launch_bounds__(kThreads) row_check_kernel(RowCheckParams p) {
  const int lane = threadIdx.x & 31;
  const T* A = static_cast<const T*>(p.a);
  const int64_t warps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t i = int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5); i < p.m; i += warps) {
    double s = 0, mg = 0, got = 0;
    for (int64_t q = lane; q < p.k; q += 32) {
      const double v = to_float(p.trans_a ? A[q * p.lda + i] : A[i * p.lda + q]);
      s += v * p.bsum[q];
      mg += fabs(v) * p.babs[q];
    }
    const float* ci = p.c + i * p.ldc;
    for (int64_t j = lane; j < p.n; j += 32) got += ci[j];
    s = warp_sum(s);
    mg = warp_sum(mg);
    got = warp_sum(got);
    if (lane == 0) {
      const double r = got - p.alpha * s, bd = p.mul * fabs(p.alpha) * mg + 1e-30;
      record_ratio(p.header, fabs(r) / bd);
      if (!(fabs(r) <= bd)) {
        const unsigned slot = atomicAdd(&p.header->count, 1u);
        if (slot < unsigned(p.max_events)) {
          DevEvent e;
          e.residual = r;
          e.bound = bd;
          e.row0 = int(i);
          e.rows = 1;
          e.col0 = 0;
          e.cols = p.n;
          e.split = 0;
          e.action = -1;
          e.row = e.col = -1;
          e.mismatches = 0;
          e.before = e.after = 0.0f;
          p.events[slot] = e;
        }
      }
    }
  }
}

struct RepairParams {
  int m, n, k;
  const void* a; int64_t lda; bool trans_a;
  const void* b; int64_t ldb; bool trans_b;
  float* c; int64_t ldc;
  double alpha, mul;
  bool correct;
  DevEvent* events;
};

// One block per event: each element of the region in fp64; an element further than its own bound
// (mul |alpha| sum_p |a b|) from the exact value is a mismatch, rewritten when correcting.
template <typename T>
__global__ void __launch_bounds__(kThreads) repair_kernel(RepairParams p) {
  __shared__ int mismatches, first_row, first_col;
  __shared__ float first_before, first_after;
  DevEvent& e = p.events[blockIdx.x];
  if (threadIdx.x == 0) mismatches = 0;
  __syncthreads();
  const T* A = static_cast<const T*>(p.a);
  const T* B = static_cast<const T*>(p.b);
  const int64_t total = int64_t(e.rows) * e.cols;
  for (int64_t idx = threadIdx.x; idx < total; idx += blockDim.x) {
    const int ii = int(idx / e.cols), jj = int(idx % e.cols);
    const int i = (e.split & 1) ? frag_index(e.row0, ii) : e.row0 + ii;
    const int j = (e.split & 2) ? frag_index(e.col0, jj) : e.col0 + jj;
    if (i >= p.m || j >= p.n) continue;
    double s = 0, mg = 0;
    for (int64_t q = 0; q < p.k; ++q) {
      const double av = to_float(p.trans_a ? A[q * p.lda + i] : A[int64_t(i) * p.lda + q]);
      const double bv = to_float(p.trans_b ? B[int64_t(j) * p.ldb + q] : B[q * p.ldb + j]);
      s += av * bv;
      mg += fabs(av * bv);
    }
    float* cij = p.c + int64_t(i) * p.ldc + j;
    const float stored = *cij;
    const double want = p.alpha * s;
    if (!(fabs(double(stored) - want) <= p.mul * fabs(p.alpha) * mg + 1e-30)) {
      if (atomicAdd(&mismatches, 1) == 0) {
        first_row = i;
        first_col = j;
        first_before = stored;
        first_after = float(want);
      }
      if (p.correct) *cij = float(want);
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    const int n = mismatches;
    e.mismatches = n;
    e.row = e.col = -1;
    e.action = int(AbftAction::Detected);
    if (n == 1) {
      e.row = first_row;
      e.col = first_col;
      e.before = first_before;
      e.after = p.correct ? first_after : first_before;
      if (p.correct) e.action = int(AbftAction::Corrected);
    } else if (n > 1 && p.correct) {
      e.action = int(AbftAction::Recomputed);
    }
  }
}

// Flips one bit of one element (4- or 2-byte elements); marks the header when given.
__global__ void flip_kernel(void* data, int64_t index, int elem_bytes, int bit, Header* header) {
  if (elem_bytes == 4) {
    unsigned int* p = static_cast<unsigned int*>(data) + index;
    *p ^= 1u << bit;
  } else {
    unsigned short* p = static_cast<unsigned short*>(data) + index;
    *p = static_cast<unsigned short>(*p ^ (1u << bit));
  }
  if (header) header->fault_fired = 1u;
}

}  // namespace abft_detail

// ---------------------------------------------------------------------------------------------
// Host side.
using namespace abft_detail;

namespace {

constexpr double kEps32 = 1.0 / 16777216.0;

int64_t events_offset() { return int64_t(sizeof(Header)); }
int64_t sums_offset(const CudaAbftOptions& opt) {
  return (events_offset() + int64_t(sizeof(DevEvent)) * opt.max_events + 15) / 16 * 16;
}
bool own_sums(const GemmArgs& g, const CudaAbftOptions& opt) { return opt.scheme == AbftScheme::Global && !opt.weight_sums; }

double bound_mul(const GemmArgs& g, const CudaAbftOptions& opt) {
  return kAbftBoundScale * opt.tolerance * kEps32 * abft_bound_factor(g.ab, g.k, opt.scheme);
}

// Weighted sums over the rows (row_dot) or columns (col_dot) of a stored rows x cols matrix.
template <typename T>
void launch_row_dot(const void* x, int64_t rows, int64_t cols, int64_t ld, const double* w, const double* wabs, double* out_s,
                    double* out_m, cudaStream_t s) {
  if (rows == 0) return;
  row_dot_kernel<T><<<blocks_for(rows, kThreads / 32), kThreads, 0, s>>>(static_cast<const T*>(x), rows, cols, ld, w, wabs, out_s, out_m);
  check_launch("abft (row sums)");
}
template <typename T>
void launch_col_dot(const void* x, int64_t rows, int64_t cols, int64_t ld, const double* w, const double* wabs, double* out_s,
                    double* out_m, cudaStream_t s) {
  check(cudaMemsetAsync(out_s, 0, size_t(cols) * sizeof(double), s), "cudaMemsetAsync(abft)");
  if (out_m) check(cudaMemsetAsync(out_m, 0, size_t(cols) * sizeof(double), s), "cudaMemsetAsync(abft)");
  if (rows == 0 || cols == 0) return;
  const int64_t strips = (cols + 31) / 32;
  int64_t chunks = std::min<int64_t>((rows + 63) / 64, std::max<int64_t>(1, 4096 / strips));
  chunks = std::max<int64_t>(1, std::min<int64_t>(chunks, 65535));
  const int64_t per = (rows + chunks - 1) / chunks;
  chunks = (rows + per - 1) / per;
  col_dot_kernel<T><<<dim3(unsigned(strips), unsigned(chunks)), kThreads, 0, s>>>(static_cast<const T*>(x), rows, cols, ld, per, w, wabs,
                                                                                  out_s, out_m);
  check_launch("abft (column sums)");
}

template <typename F>
void by_type(DType t, F&& f) {
  switch (t) {
    case DType::F32: f(float{}); return;
    case DType::F16: f(__half{}); return;
    case DType::BF16: f(__nv_bfloat16{}); return;
  }
}

// sum_j op(X)(p, j) and |.| for p < k, where op(X) is k x n stored as given.
void op_row_sums(DType t, bool trans, int64_t k, int64_t n, const void* x, int64_t ld, const double* w, const double* wabs, double* out_s,
                 double* out_m, cudaStream_t s) {
  by_type(t, [&](auto tag) {
    using T = decltype(tag);
    if (!trans) launch_row_dot<T>(x, k, n, ld, w, wabs, out_s, out_m, s);  // stored k x n
    else launch_col_dot<T>(x, n, k, ld, w, wabs, out_s, out_m, s);         // stored n x k
  });
}
// sum_p w[p] op(X)(p, j) and |.| for j < n (column sums of op(X), weighted by rows).
void op_col_sums(DType t, bool trans, int64_t k, int64_t n, const void* x, int64_t ld, const double* w, const double* wabs, double* out_s,
                 double* out_m, cudaStream_t s) {
  by_type(t, [&](auto tag) {
    using T = decltype(tag);
    if (!trans) launch_col_dot<T>(x, k, n, ld, w, wabs, out_s, out_m, s);
    else launch_row_dot<T>(x, n, k, ld, w, wabs, out_s, out_m, s);
  });
}

template <typename T, bool kTwo>
void launch_thread_kernel(const ThreadParams& tp, bool ta, bool tb, unsigned blocks, cudaStream_t s) {
  if (!ta && !tb) simt_abft_kernel<T, false, false, kTwo><<<blocks, 256, 0, s>>>(tp);
  else if (!ta && tb) simt_abft_kernel<T, false, true, kTwo><<<blocks, 256, 0, s>>>(tp);
  else if (ta && !tb) simt_abft_kernel<T, true, false, kTwo><<<blocks, 256, 0, s>>>(tp);
  else simt_abft_kernel<T, true, true, kTwo><<<blocks, 256, 0, s>>>(tp);
  check_launch("gemm_checked (thread-level kernel)");
}

AbftEvent to_event(const DevEvent& d) {
  AbftEvent e;
  e.row0 = d.row0;
  e.col0 = d.col0;
  e.rows = d.rows;
  e.cols = d.cols;
  e.residual = d.residual;
  e.bound = d.bound;
  e.row = d.row;
  e.col = d.col;
  e.before = d.before;
  e.after = d.after;
  e.action = d.action < 0 ? AbftAction::Detected : AbftAction(d.action);
  return e;
}

}  // namespace

double abft_bound_factor(DType ab, int64_t k, AbftScheme scheme) {
  // Tensor cores accumulate fp32 with truncation: the error is biased and grows with k / 16
  // steps; SIMT fp32 FMAs round to nearest (the CPU's model).
  if (scheme == AbftScheme::Global && ab != DType::F32) return std::max(1.0, double(k) / 256.0);
  return 1.0;
}

void validate_gemm_checked(const GemmArgs& g, const CudaAbftOptions& opt) {
  validate_gemm(g);
  if (g.beta != 0.0f)
    throw_expected(ErrorKind::Range, "beta == 0 (a checked GEMM computes C = alpha * op(A) * op(B))", "beta", std::to_string(g.beta));
  if (g.c_type != DType::F32) throw_expected(ErrorKind::Type, "a float32 output for a checked GEMM", "c_type", dtype_name(g.c_type));
  if (g.tf32) throw_expected(ErrorKind::Range, "tf32 off (the checked GEMM's bounds assume fp32 products)", "tf32", "true");
  if (!(opt.tolerance > 0.0) || !std::isfinite(opt.tolerance))
    throw_expected(ErrorKind::Range, "a finite tolerance > 0", "tolerance", std::to_string(opt.tolerance));
  if (opt.max_events < 1 || opt.max_events > 65536)
    throw_expected(ErrorKind::Range, "max_events in [1, 65536]", "max_events", std::to_string(opt.max_events));
  for (int f = 0; f < 2; ++f) {
    const AbftFaultSpec& s = opt.faults[f];
    if (s.row < 0) continue;
    const std::string name = "faults[" + std::to_string(f) + "]";
    if (s.row >= g.m) throw_expected(ErrorKind::Range, "a row < " + std::to_string(g.m), name + ".row", std::to_string(s.row));
    if (s.col < 0 || s.col >= g.n) throw_expected(ErrorKind::Range, "a column in [0, " + std::to_string(g.n) + ")", name + ".col", std::to_string(s.col));
    if (s.bit < 0 || s.bit > 31) throw_expected(ErrorKind::Range, "a bit in [0, 31]", name + ".bit", std::to_string(s.bit));
  }
}

int64_t abft_workspace_bytes(const GemmArgs& g, const CudaAbftOptions& opt) {
  int64_t bytes = sums_offset(opt);
  if (own_sums(g, opt)) bytes += 2 * g.k * int64_t(sizeof(double));
  return (bytes + 15) / 16 * 16;
}

void abft_weight_sums(int device, DType t, bool trans_b, int64_t k, int64_t n, const void* b, int64_t ldb, double* out, Stream stream) {
  if (k < 0 || n < 0) throw_expected(ErrorKind::Range, "k, n >= 0", "k x n", std::to_string(k) + " x " + std::to_string(n));
  const int64_t row = trans_b ? k : n;
  if ((trans_b ? n : k) > 0 && ldb < std::max<int64_t>(row, 1))
    throw_expected(ErrorKind::Range, "ldb >= " + std::to_string(std::max<int64_t>(row, 1)), "ldb", std::to_string(ldb));
  if (k > 0 && !out) throw_expected(ErrorKind::Range, "a device pointer", "out", "null");
  if (k > 0 && n > 0 && !b) throw_expected(ErrorKind::Range, "a device pointer", "b", "null");
  if (k == 0) return;
  use_device(device);
  const cudaStream_t s = as_stream(stream);
  if (n == 0) {
    check(cudaMemsetAsync(out, 0, size_t(2 * k) * sizeof(double), s), "cudaMemsetAsync(abft_weight_sums)");
    return;
  }
  op_row_sums(t, trans_b, k, n, b, ldb, nullptr, nullptr, out, out + k, s);
}

void flip_bit(int device, DType t, void* data, int64_t index, int bit, Stream stream) {
  const int bits = int(dtype_size(t)) * 8;
  if (!data) throw_expected(ErrorKind::Range, "a device pointer", "data", "null");
  if (index < 0) throw_expected(ErrorKind::Range, "index >= 0", "index", std::to_string(index));
  if (bit < 0 || bit >= bits)
    throw_expected(ErrorKind::Range, "a bit in [0, " + std::to_string(bits - 1) + "]", "bit", std::to_string(bit));
  use_device(device);
  flip_kernel<<<1, 1, 0, as_stream(stream)>>>(data, index, int(dtype_size(t)), bit, nullptr);
  check_launch("flip_bit");
}

void gemm_checked_launch(int device, const GemmArgs& g, const CudaAbftOptions& opt, void* workspace, Stream stream) {
  validate_gemm_checked(g, opt);
  if (g.m == 0 || g.n == 0) return;
  if (!workspace) throw_expected(ErrorKind::Range, "a device workspace", "workspace", "null");
  use_device(device);
  const cudaStream_t s = as_stream(stream);
  auto* base = static_cast<unsigned char*>(workspace);
  auto* header = reinterpret_cast<Header*>(base);
  auto* events = reinterpret_cast<DevEvent*>(base + events_offset());
  check(cudaMemsetAsync(header, 0, sizeof(Header), s), "cudaMemsetAsync(abft header)");
  const bool trivial = g.k == 0 || g.alpha == 0.0f;  // C = 0: nothing to check

  if (opt.scheme == AbftScheme::Thread && !trivial) {
    ThreadParams tp;
    tp.m = int(g.m); tp.n = int(g.n); tp.k = int(g.k);
    tp.a = g.a; tp.lda = g.lda;
    tp.b = g.b; tp.ldb = g.ldb;
    tp.c = static_cast<float*>(g.c); tp.ldc = g.ldc;
    tp.alpha = g.alpha;
    tp.mul = float(bound_mul(g, opt));
    for (int f = 0; f < 2; ++f) {
      tp.f_row[f] = opt.faults[f].row < 0 ? -1 : int(opt.faults[f].row);
      tp.f_col[f] = int(opt.faults[f].col);
      tp.f_bit[f] = opt.faults[f].bit;
    }
    tp.header = header;
    tp.events = events;
    tp.max_events = opt.max_events;
    int major = 0;
    check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "cudaDeviceGetAttribute(ComputeCapabilityMajor)");
    int minor = 0;
    check(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), "cudaDeviceGetAttribute(ComputeCapabilityMinor)");
    if (major * 10 + minor < 75)
      throw_expected(ErrorKind::Unsupported, "compute capability ≥ 7.5", "device", std::to_string(major) + "." + std::to_string(minor));
    const unsigned blocks = unsigned(((g.m + kBM - 1) / kBM) * ((g.n + kBN - 1) / kBN));
    const bool two = opt.check == AbftCheck::TwoSided;
    by_type(g.ab, [&](auto tag) {
      using T = decltype(tag);
      if (two) launch_thread_kernel<T, true>(tp, g.trans_a, g.trans_b, blocks, s);
      else launch_thread_kernel<T, false>(tp, g.trans_a, g.trans_b, blocks, s);
    });
    return;
  }

  gemm(device, g, stream);
  for (int f = 0; f < 2; ++f) {
    const AbftFaultSpec& fs = opt.faults[f];
    if (fs.row < 0) continue;
    flip_kernel<<<1, 1, 0, s>>>(g.c, fs.row * g.ldc + fs.col, 4, fs.bit, header);
    check_launch("gemm_checked (fault injection)");
  }
  if (trivial) return;
  const double* sums = opt.weight_sums;
  if (!sums) {
    auto* own = reinterpret_cast<double*>(base + sums_offset(opt));
    op_row_sums(g.ab, g.trans_b, g.k, g.n, g.b, g.ldb, nullptr, nullptr, own, own + g.k, s);
    sums = own;
  }
  RowCheckParams rp;
  rp.m = int(g.m); rp.n = int(g.n); rp.k = int(g.k);
  rp.a = g.a; rp.lda = g.lda; rp.trans_a = g.trans_a;
  rp.c = static_cast<const float*>(g.c); rp.ldc = g.ldc;
  rp.bsum = sums;
  rp.babs = sums + g.k;
  rp.alpha = g.alpha;
  rp.mul = bound_mul(g, opt);
  rp.header = header;
  rp.events = events;
  rp.max_events = opt.max_events;
  by_type(g.ab, [&](auto tag) {
    using T = decltype(tag);
    row_check_kernel<T><<<blocks_for(g.m, kThreads / 32), kThreads, 0, s>>>(rp);
  });
  check_launch("gemm_checked (row check)");
}

CudaAbftReport gemm_checked_finish(int device, const GemmArgs& g, const CudaAbftOptions& opt, void* workspace, Stream stream) {
  validate_gemm_checked(g, opt);
  CudaAbftReport report;
  if (g.m == 0 || g.n == 0) return report;
  use_device(device);
  const cudaStream_t s = as_stream(stream);
  auto* base = static_cast<unsigned char*>(workspace);
  auto* d_events = reinterpret_cast<DevEvent*>(base + events_offset());
  const bool trivial = g.k == 0 || g.alpha == 0.0f;
  if (opt.scheme == AbftScheme::Thread)
    report.checks = trivial ? 0 : ((g.m + kBM - 1) / kBM) * ((g.n + kBN - 1) / kBN) * 256;
  else
    report.checks = trivial ? 0 : g.m;

  Header h;
  check(cudaMemcpyAsync(&h, base, sizeof(Header), cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync(abft header)");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize(abft)");
  double ratio;
  std::memcpy(&ratio, &h.max_ratio, sizeof(double));
  report.max_ratio = ratio;
  report.fault_fired = h.fault_fired != 0;
  report.event_count = h.count;
  if (h.count == 0) return report;
  const int kept = int(std::min<unsigned>(h.count, unsigned(opt.max_events)));
  std::vector<DevEvent> ev(static_cast<size_t>(kept));
  check(cudaMemcpyAsync(ev.data(), d_events, ev.size() * sizeof(DevEvent), cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync(abft events)");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize(abft)");

  if (opt.scheme == AbftScheme::Global) {
    // Locate: column checks e^T C vs (e^T op(A)) op(B), with magnitudes, in fp64.
    Scratch scratch(device, size_t(2 * g.k + 3 * g.n) * sizeof(double), s);
    double* ea = scratch.as<double>();
    double* col = ea + 2 * g.k;  // expected, magnitude, actual
    op_col_sums(g.ab, g.trans_a, g.m, g.k, g.a, g.lda, nullptr, nullptr, ea, ea + g.k, s);  // e^T op(A), op(A) is m x k
    op_col_sums(g.ab, g.trans_b, g.k, g.n, g.b, g.ldb, ea, ea + g.k, col, col + g.n, s);
    launch_col_dot<float>(g.c, g.m, g.n, g.ldc, nullptr, nullptr, col + 2 * g.n, nullptr, s);
    std::vector<double> hc(size_t(3 * g.n));
    check(cudaMemcpyAsync(hc.data(), col, hc.size() * sizeof(double), cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync(abft columns)");
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize(abft)");
    const double mul = bound_mul(g, opt), alpha = g.alpha;
    std::vector<int64_t> bad_cols;
    for (int64_t j = 0; j < g.n; ++j) {
      const double r = hc[size_t(2 * g.n + j)] - alpha * hc[size_t(j)];
      if (!(std::fabs(r) <= mul * std::fabs(alpha) * hc[size_t(g.n + j)] + 1e-30)) bad_cols.push_back(j);
    }
    if (h.count == 1 && bad_cols.size() == 1) {
      ev[0].col0 = int(bad_cols[0]);
      ev[0].cols = 1;
      check(cudaMemcpyAsync(d_events, ev.data(), sizeof(DevEvent), cudaMemcpyHostToDevice, s), "cudaMemcpyAsync(abft events)");
    }
  }

  RepairParams rp;
  rp.m = int(g.m); rp.n = int(g.n); rp.k = int(g.k);
  rp.a = g.a; rp.lda = g.lda; rp.trans_a = g.trans_a;
  rp.b = g.b; rp.ldb = g.ldb; rp.trans_b = g.trans_b;
  rp.c = static_cast<float*>(g.c); rp.ldc = g.ldc;
  rp.alpha = g.alpha;
  rp.mul = bound_mul(g, opt);
  rp.correct = opt.correct;
  rp.events = d_events;
  if (!trivial) {
    by_type(g.ab, [&](auto tag) {
      using T = decltype(tag);
      repair_kernel<T><<<unsigned(kept), kThreads, 0, s>>>(rp);
    });
    check_launch("gemm_checked (repair)");
  }
  check(cudaMemcpyAsync(ev.data(), d_events, ev.size() * sizeof(DevEvent), cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync(abft events)");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize(abft)");
  for (const DevEvent& d : ev) report.events.push_back(to_event(d));

  if (h.count > unsigned(opt.max_events) && opt.correct) {
    // More flags than events kept: the unlisted regions are not repaired, so recompute all of C.
    GemmArgs plain = g;
    gemm(device, plain, stream);
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize(abft)");
    AbftEvent all;
    all.row0 = 0;
    all.col0 = 0;
    all.rows = int(std::min<int64_t>(g.m, INT_MAX));
    all.cols = int(std::min<int64_t>(g.n, INT_MAX));
    all.action = AbftAction::Recomputed;
    report.events.push_back(all);
  }
  return report;
}

CudaAbftReport gemm_checked(int device, const GemmArgs& g, const CudaAbftOptions& opt, Stream stream) {
  validate_gemm_checked(g, opt);
  if (g.m == 0 || g.n == 0) return CudaAbftReport{};
  use_device(device);
  Scratch ws(device, size_t(abft_workspace_bytes(g, opt)), as_stream(stream));
  gemm_checked_launch(device, g, opt, ws.as<void>(), stream);
  return gemm_checked_finish(device, g, opt, ws.as<void>(), stream);
}

}  // namespace kintsugi::cuda
