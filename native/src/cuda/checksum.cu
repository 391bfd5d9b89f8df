// Row and column sums of row-major fp32 matrices with fp64 accumulation (the ABFT checksums).
// Results depend only on the shape: every sum is taken in a fixed order (no atomics).
#include <string>

#include "kernels.cuh"

namespace kintsugi::cuda {
namespace {

constexpr int kThreads = 256;

// One warp per row: lanes stride the row (coalesced 128-byte reads), four rows' worth of loads in
// flight per lane, then a butterfly over the warp.
__global__ void __launch_bounds__(kThreads) row_sums_kernel(const float* __restrict__ a, int64_t m, int64_t n, int64_t ld,
                                                            double* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t i = int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5); i < m; i += warps) {
    const float* row = a + i * ld;
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t j = lane;
    for (; j + 96 < n; j += 128) {
      s0 += double(row[j]);
      s1 += double(row[j + 32]);
      s2 += double(row[j + 64]);
      s3 += double(row[j + 96]);
    }
    for (; j < n; j += 32) s0 += double(row[j]);
    double s = (s0 + s1) + (s2 + s3);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) out[i] = s;
  }
}

// Block = 32 columns x 8 row lanes over rows [chunk * rows_per_chunk, ...): each warp reads 32
// consecutive floats of one row; the 8 lanes' partials are added in lane order. With one chunk the
// sums go to `out`, otherwise to partial[chunk * n + j].
__global__ void __launch_bounds__(kThreads) col_sums_kernel(const float* __restrict__ a, int64_t m, int64_t n, int64_t ld,
                                                            int64_t rows_per_chunk, double* __restrict__ dst) {
  __shared__ double part[8][33];
  const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
  const int64_t j = int64_t(blockIdx.x) * 32 + tx;
  const int64_t i0 = int64_t(blockIdx.y) * rows_per_chunk;
  const int64_t i1 = min(m, i0 + rows_per_chunk);
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  if (j < n) {
    const int64_t step = 8 * ld;
    const float* p = a + j + (i0 + ty) * ld;
    int64_t i = i0 + ty;
    for (; i + 24 < i1; i += 32, p += 4 * step) {
      s0 += double(p[0]);
      s1 += double(p[step]);
      s2 += double(p[2 * step]);
      s3 += double(p[3 * step]);
    }
    for (; i < i1; i += 8, p += step) s0 += double(*p);
  }
  part[ty][tx] = (s0 + s1) + (s2 + s3);
  __syncthreads();
  if (ty == 0 && j < n) {
    double s = part[0][tx];
#pragma unroll
    for (int t = 1; t < 8; ++t) s += part[t][tx];
    dst[int64_t(blockIdx.y) * n + j] = s;
  }
}

__global__ void __launch_bounds__(kThreads) sum_partials_kernel(const double* __restrict__ partial, int64_t chunks, int64_t n,
                                                                double* __restrict__ out) {
  for (int64_t j = int64_t(blockIdx.x) * kThreads + threadIdx.x; j < n; j += int64_t(gridDim.x) * kThreads) {
    double s = partial[j];
    for (int64_t c = 1; c < chunks; ++c) s += partial[c * n + j];
    out[j] = s;
  }
}

void check_args(const float* a, int64_t m, int64_t n, int64_t ld, const double* out, const char* fn, int64_t outputs) {
  const std::string f(fn);
  if (m < 0) throw_expected(ErrorKind::Range, "m >= 0", f + " m", std::to_string(m));
  if (n < 0) throw_expected(ErrorKind::Range, "n >= 0", f + " n", std::to_string(n));
  const int64_t min_ld = n > 1 ? n : 1;
  if (m > 1 && ld < min_ld) throw_expected(ErrorKind::Range, "a leading dimension >= " + std::to_string(min_ld), f + " ld", std::to_string(ld));
  if (m > 0 && n > 0 && !a) throw_expected(ErrorKind::Type, "a device matrix", f + " a", "null");
  if (outputs > 0 && !out) throw_expected(ErrorKind::Type, std::to_string(outputs) + " doubles of device memory", f + " out", "null");
}

}  // namespace

void row_sums(int device, const float* a, int64_t m, int64_t n, int64_t ld, double* out, Stream stream) {
  check_args(a, m, n, ld, out, "row_sums", m);
  if (m == 0) return;
  use_device(device);
  row_sums_kernel<<<blocks_for(m, kThreads / 32), kThreads, 0, as_stream(stream)>>>(a, m, n, ld, out);
  check_launch("row_sums");
}

void col_sums(int device, const float* a, int64_t m, int64_t n, int64_t ld, double* out, Stream stream) {
  check_args(a, m, n, ld, out, "col_sums", n);
  if (n == 0) return;
  use_device(device);
  const cudaStream_t s = as_stream(stream);
  if (m == 0) {
    check(cudaMemsetAsync(out, 0, size_t(n) * sizeof(double), s), "cudaMemsetAsync(col_sums)");
    return;
  }
  const int64_t strips = (n + 31) / 32;
  if (strips > 0x7fffffff) throw Error(ErrorKind::Range, "col_sums: too many columns");
  // Enough blocks to fill any GPU, but a number that depends on the shape only (so do the results).
  int64_t chunks = std::min<int64_t>((m + 127) / 128, std::max<int64_t>(1, 2048 / strips));
  chunks = std::min<int64_t>(chunks, 65535);
  const int64_t rows_per_chunk = (m + chunks - 1) / chunks;
  chunks = (m + rows_per_chunk - 1) / rows_per_chunk;
  const dim3 grid(static_cast<unsigned>(strips), static_cast<unsigned>(chunks));
  if (chunks == 1) {
    col_sums_kernel<<<grid, kThreads, 0, s>>>(a, m, n, ld, rows_per_chunk, out);
    check_launch("col_sums");
    return;
  }
  Scratch partial(device, size_t(chunks * n) * sizeof(double), s);
  col_sums_kernel<<<grid, kThreads, 0, s>>>(a, m, n, ld, rows_per_chunk, partial.as<double>());
  check_launch("col_sums");
  sum_partials_kernel<<<blocks_for(n, kThreads), kThreads, 0, s>>>(partial.as<double>(), chunks, n, out);
  check_launch("col_sums (partials)");
}

}  // namespace kintsugi::cuda
