// The SIMT fp32 GEMM main loop, shared by the plain kernel (gemm.cu, simt_gemm_kernel) and the
// fused thread-level ABFT kernel (abft.cu, simt_abft_kernel).
//
// 128 x 128 x 8 CTA tile, 256 threads as 16 x 16, each computing 8 x 8 outputs: local row i is
// frag_index(ty*4, i) of the CTA tile (rows ty*4 + {0..3} and 64 + ty*4 + {0..3}), columns
// likewise with tx, so the float4 shared loads of a warp touch distinct or broadcast words. Both
// tiles are stored k-major in shared memory (sA[k][m], sB[k][n], rows padded by 4 floats)
// whatever the global layout; global loads are scalar, predicated, converted to fp32 and
// prefetched into registers one tile ahead (double-buffered shared memory).
//
// The kernels differ only in what they do per k step besides the 8 x 8 FMAs and after the loop:
// main_loop takes a hook called as hook(a, b) with the thread's 8 A and 8 B values of each k
// (after the FMAs of that k). NoHook does nothing, so the plain kernel is the bare loop.
#pragma once
#include <cstdint>

#include "kernels.cuh"

namespace kintsugi::cuda {

// Maps the linear block index to a (tile_m, tile_n) pair in groups of 8 tile rows, so that CTAs
// running together share A rows and B columns in L2.
__device__ __forceinline__ void tile_coords(int tiles_m, int tiles_n, int& tm, int& tn) {
  constexpr int kGroup = 8;
  int pid = int(blockIdx.x);
  int per_group = kGroup * tiles_n;
  int group = pid / per_group;
  int first_m = group * kGroup;
  int group_rows = min(tiles_m - first_m, kGroup);
  int in_group = pid - group * per_group;
  tm = first_m + in_group % group_rows;
  tn = in_group / group_rows;
}

namespace gemm_simt {

constexpr int kBM = 128, kBN = 128, kBK = 8, kLds = 128 + 4, kThreads = 256;

// The thread's local row (column) i, 0..7, given base = its row (column) 0: base + i%4 + 64*(i/4).
__host__ __device__ constexpr int frag_index(int base, int i) { return base + (i & 3) + 64 * (i >> 2); }

// The first row and column in C of this CTA's tile (grouped raster, see tile_coords).
template <typename P>
__device__ __forceinline__ void cta_origin(const P& p, int& bm, int& bn) {
  int tm, tn;
  tile_coords((p.m + kBM - 1) / kBM, (p.n + kBN - 1) / kBN, tm, tn);
  bm = tm * kBM;
  bn = tn * kBN;
}

// One operand's two shared buffers, k-major: [buffer][k][m or n]. The kernel declares one for A
// and one for B (two arrays rather than one struct: the struct's single base register costs the
// fused ABFT kernel registers on sm_90).
using SharedTile = float[2][kBK][kLds];

// Moves the 128 x 8 tiles of op(A) and op(B) at k0 from global memory to registers (load) and
// then to shared buffer `buf` (store). Each thread moves 4 elements of each tile. For a
// K-contiguous source (A not transposed: A[m][k]; B transposed: B[n][k]) a thread takes
// k = tid % 8, mn = tid / 8 + 32 i; for an MN-contiguous source, mn = tid % 128, k = tid / 128 + 2 i.
template <typename T, bool kTransA, bool kTransB>
struct TileLoader {
  float ra[4], rb[4];

  template <typename P>
  __device__ __forceinline__ void load(const P& p, const T* A, const T* B, int bm, int bn, int k0, int tid) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      int kk, mm;
      if constexpr (kTransA) { mm = tid % 128; kk = tid / 128 + 2 * i; }
      else { kk = tid % 8; mm = tid / 8 + 32 * i; }
      int gm = bm + mm, gk = k0 + kk;
      bool ok = gm < p.m && gk < p.k;
      int64_t off = kTransA ? int64_t(gk) * p.lda + gm : int64_t(gm) * p.lda + gk;
      ra[i] = ok ? to_float(A[off]) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      int kk, nn;
      if constexpr (kTransB) { kk = tid % 8; nn = tid / 8 + 32 * i; }
      else { nn = tid % 128; kk = tid / 128 + 2 * i; }
      int gn = bn + nn, gk = k0 + kk;
      bool ok = gn < p.n && gk < p.k;
      int64_t off = kTransB ? int64_t(gn) * p.ldb + gk : int64_t(gk) * p.ldb + gn;
      rb[i] = ok ? to_float(B[off]) : 0.0f;
    }
  }

  __device__ __forceinline__ void store(SharedTile& sA, SharedTile& sB, int buf, int tid) const {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (kTransA) sA[buf][tid / 128 + 2 * i][tid % 128] = ra[i];
      else sA[buf][tid % 8][tid / 8 + 32 * i] = ra[i];
      if constexpr (kTransB) sB[buf][tid % 8][tid / 8 + 32 * i] = rb[i];
      else sB[buf][tid / 128 + 2 * i][tid % 128] = rb[i];
    }
  }
};

struct NoHook {
  __device__ __forceinline__ void operator()(const float (&)[8], const float (&)[8]) const {}
};

// acc = op(A) op(B) over the thread's 8 x 8 outputs of the CTA tile at (bm, bn); P has the
// operands' m, n, k, a, lda, b, ldb. Ends with a barrier, so sA and sB may be reused afterwards.
template <typename T, bool kTransA, bool kTransB, typename P, typename Hook>
__device__ __forceinline__ void main_loop(const P& p, SharedTile& sA, SharedTile& sB, int bm, int bn, float (&acc)[8][8], Hook& hook) {
  const int tid = int(threadIdx.x);
  const int tx = tid % 16, ty = tid / 16;
  const T* A = static_cast<const T*>(p.a);
  const T* B = static_cast<const T*>(p.b);
  TileLoader<T, kTransA, kTransB> loader;

#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;

  const int k_tiles = (p.k + kBK - 1) / kBK;
  loader.load(p, A, B, bm, bn, 0, tid);
  loader.store(sA, sB, 0, tid);
  __syncthreads();
  for (int kt = 0; kt < k_tiles; ++kt) {
    const int buf = kt & 1;
    const bool more = kt + 1 < k_tiles;
    if (more) loader.load(p, A, B, bm, bn, (kt + 1) * kBK, tid);  // in flight while this tile is computed
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      float a[8], b[8];
      float4 a0 = *reinterpret_cast<const float4*>(&sA[buf][kk][ty * 4]);
      float4 a1 = *reinterpret_cast<const float4*>(&sA[buf][kk][64 + ty * 4]);
      float4 b0 = *reinterpret_cast<const float4*>(&sB[buf][kk][tx * 4]);
      float4 b1 = *reinterpret_cast<const float4*>(&sB[buf][kk][64 + tx * 4]);
      a[0] = a0.x; a[1] = a0.y; a[2] = a0.z; a[3] = a0.w;
      a[4] = a1.x; a[5] = a1.y; a[6] = a1.z; a[7] = a1.w;
      b[0] = b0.x; b[1] = b0.y; b[2] = b0.z; b[3] = b0.w;
      b[4] = b1.x; b[5] = b1.y; b[6] = b1.z; b[7] = b1.w;
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      hook(a, b);
    }
    // The other buffer was last read in iteration kt-1, which every thread finished before the
    // barrier that ended it.
    if (more) loader.store(sA, sB, buf ^ 1, tid);
    __syncthreads();
  }
}

}  // namespace gemm_simt
}  // namespace kintsugi::cuda
