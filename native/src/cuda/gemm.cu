// kintsugi::cuda::gemm: C = alpha * op(A) op(B) + beta * C, row-major, fp32 accumulation.
//
// Kernels (the host picks one by dtype, tf32 flag and the device's compute capability):
//   mma_gemm<HalfMma / Bf16Mma, Stages 4>  sm_80+: 128x128x32 CTA tile, 8 warps (2 x 4), warp tile
//                                           64x32, mma.sync m16n8k16, ldmatrix(.trans), cp.async
//                                           4-stage pipeline (80 KB dynamic shared memory).
//   mma_gemm<HalfMma, Stages 2>            sm_75: the same tiles, two m16n8k8 per k16 step,
//                                           plain 16-byte loads, 2 stages (40 KB).
//   mma_gemm<Tf32Mma, Stages 4>            sm_80+, F32 inputs with tf32: 128x128x16 tile,
//                                           mma.sync m16n8k8 tf32, operands rounded with cvt.rna.
//   simt_gemm<T>                           any arch: 128x128x8 CTA tile, 256 threads, 8x8 outputs
//                                           per thread, shared memory double buffered. F32, and
//                                           BF16 on sm_75 (no bf16 tensor-core instruction there).
//
// sm_90 runs the sm_80 mma.sync kernel (SASS built for sm_90). Hopper's wgmma (sm_90a) is not
// used yet: mma.sync reaches only part of an H100's dense peak, so matching cuBLAS there needs a
// wgmma + TMA kernel.
//
// Operand tiles live in shared memory in the layout they have in global memory, so a 16-byte
// global chunk is a 16-byte shared chunk (cp.async); the transposes are absorbed by choosing
// ldmatrix or ldmatrix.trans (see the fragment notes at load_a_frag / load_b_frag).
//   "K-contiguous" tile: [128 rows of M (or N)][BK + pad]   (A not transposed, B transposed)
//   "MN-contiguous" tile: [BK rows of K][128 + pad]          (A transposed, B not transposed)
// The pads (16 bytes on K-contiguous rows, 16 bytes on MN-contiguous rows) make the eight 16-byte
// rows an ldmatrix phase reads fall in distinct banks: row strides of 80 bytes (20 words: offsets
// 0,20,8,28,16,4,24,12 mod 32) and 272 bytes (68 words: 0,4,...,28 mod 32).
//
// Edges: every global load is predicated on the operand's extent; out-of-range elements are
// zero-filled (cp.async with src-size < 16 zero-fills the rest), so any m, n, k works. 16-byte
// loads are used only when the operand's pointer is 16-byte aligned and its ld is a multiple of
// the elements per 16 bytes; otherwise the same kernel loads element by element.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <string>

#include "common.cuh"
#include "gemm_simt.cuh"
#include "kernels.cuh"

namespace kintsugi::cuda {
// Device code lives in a named namespace: in an anonymous one, each architecture's pass warns
// about the helpers only the other architectures use.
namespace gemm_detail {

#if defined(__CUDA_ARCH__)
constexpr int kArch = __CUDA_ARCH__;
#else
constexpr int kArch = 0;
#endif

// ---------------------------------------------------------------------------------------------
// Parameters shared by every kernel. Sizes fit in int (checked on the host); offsets use int64.
struct Params {
  int m, n, k;
  const void* a; int64_t lda;
  const void* b; int64_t ldb;
  void* c; int64_t ldc;
  float alpha, beta;
  int c_type;      // DType of C as int
  bool vec_a, vec_b;  // 16-byte loads allowed for the operand
};

__device__ __forceinline__ void from_float(float v, float& out) { out = v; }
__device__ __forceinline__ void from_float(float v, __half& out) { out = __float2half_rn(v); }
__device__ __forceinline__ void from_float(float v, __nv_bfloat16& out) { out = __float2bfloat16_rn(v); }

// The epilogue for one element of C (OutT = C's type): beta == 0 never reads C.
template <typename OutT>
__device__ __forceinline__ void epilogue_element(const Params& p, int i, int j, float acc) {
  if (i >= p.m || j >= p.n) return;
  OutT* c = static_cast<OutT*>(p.c) + (int64_t(i) * p.ldc + j);
  float v = p.alpha * acc;
  if (p.beta != 0.0f) v = fmaf(p.beta, to_float(*c), v);
  from_float(v, *c);
}

// ---------------------------------------------------------------------------------------------
// C = beta * C (k == 0 or alpha == 0); beta == 0 writes zeros without reading C.
template <typename OutT>
__global__ void scale_c_kernel(Params p) {
  OutT* c = static_cast<OutT*>(p.c);
  int64_t total = int64_t(p.m) * p.n;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total; idx += int64_t(gridDim.x) * blockDim.x) {
    int64_t off = (idx / p.n) * p.ldc + idx % p.n;
    from_float(p.beta == 0.0f ? 0.0f : p.beta * to_float(c[off]), c[off]);
  }
}

// ---------------------------------------------------------------------------------------------
// PTX wrappers.
__device__ __forceinline__ uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// cp.async.cg 16 bytes; `src_bytes` (0..16) bytes are read, the rest of the 16 are zero-filled
// (PTX ISA, "cp.async": src-size < cp-size zero-fills). sm_80+.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, int src_bytes) {
  if constexpr (kArch >= 800) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
  }
}
__device__ __forceinline__ void cp_async_commit() {
  if constexpr (kArch >= 800) asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  if constexpr (kArch >= 800) asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// ldmatrix.sync.aligned.m8n8.x4(.trans).shared.b16: lanes 8j..8j+7 give the addresses of the 8
// rows (16 bytes each) of matrix j; r[j] receives, in lane l, matrix j's elements
// (row l/4, cols 2(l%4), 2(l%4)+1) without .trans, or (rows 2(l%4), 2(l%4)+1, col l/4) with .trans
// (PTX ISA, "Warp-level matrix load instruction: ldmatrix"). sm_75+.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// ---------------------------------------------------------------------------------------------
// Warp-level MMA policies. Each defines the element type, the CTA's K depth, how a warp loads
// its A and B fragments for one k step from the shared tiles, and the mma itself.
//
// Accumulator fragment of m16n8 (f32), the same for m16n8k16 and m16n8k8 (PTX ISA, "Matrix
// Fragments for mma.m16n8k16 / mma.m16n8k8"): with g = lane / 4, t = lane % 4,
//   c0, c1 = C(g, 2t), C(g, 2t + 1);   c2, c3 = C(g + 8, 2t), C(g + 8, 2t + 1).

// 16-bit inputs (f16 or bf16), k step 16.
// A fragment of m16n8k16 .f16/.bf16 (row): four .b32 registers, each two consecutive-k elements:
//   a[0] = A(g, 2t..2t+1)   a[1] = A(g+8, 2t..2t+1)   a[2] = A(g, 8+2t..)   a[3] = A(g+8, 8+2t..)
// B fragment (col): b[0] = B(2t..2t+1, g)   b[1] = B(8+2t..8+2t+1, g)
template <typename T, bool kBf16>
struct Mma16 {
  using Elem = T;
  static constexpr int kBK = 32;           // K per CTA tile
  static constexpr int kKStep = 16;        // K per warp mma step
  static constexpr int kPadK = 8;          // elements of pad on K-contiguous rows (16 bytes)
  static constexpr int kPadMN = 8;         // on MN-contiguous rows (16 bytes)
  using AFrag = uint32_t[4];
  using BFrag = uint32_t[2];

  // A tile K-contiguous: s[m][k] with row stride `ld` elements. The x4's four 8x8 matrices are
  // (rows m0..7, k0..7), (m0+8..15, k0..7), (m0..7, k0+8..15), (m0+8..15, k0+8..15): lane l points
  // at row m0 + l%8 + 8*((l/8)%2), column k0 + 8*(l/16); without .trans r[j] is a[j] above.
  __device__ static void load_a_kcontig(AFrag& a, const T* s, int ld, int m0, int k0, int lane) {
    int row = m0 + (lane & 7) + ((lane >> 3) & 1) * 8;
    int col = k0 + (lane >> 4) * 8;
    ldmatrix_x4(a, smem_addr(s + row * ld + col));
  }
  // A tile MN-contiguous (A transposed in memory): s[k][m]. With .trans a stored 8x8 matrix with
  // rows k, columns m gives lane l the elements (k = 2(l%4), 2(l%4)+1; m = l/4) = A(g, 2t..2t+1).
  // Matrices: (k0..7, m0..7) -> a[0], (k0..7, m0+8..15) -> a[1], (k0+8..15, m0..7) -> a[2],
  // (k0+8..15, m0+8..15) -> a[3]; lane l points at k = k0 + l%8 + 8*(l/16), m = m0 + 8*((l/8)%2).
  __device__ static void load_a_mncontig(AFrag& a, const T* s, int ld, int m0, int k0, int lane) {
    int krow = k0 + (lane & 7) + (lane >> 4) * 8;
    int col = m0 + ((lane >> 3) & 1) * 8;
    ldmatrix_x4_trans(a, smem_addr(s + krow * ld + col));
  }
  // B tile MN-contiguous (B not transposed): s[k][n]. .trans gives lane l (k = 2t..2t+1, n = g),
  // i.e. b[0] from stored rows k0..7 and b[1] from k0+8..15. One x4 loads two n8 tiles:
  // matrices (k0..7, n0..7) -> b0[0], (k0+8..15, n0..7) -> b0[1], (k0..7, n0+8..15) -> b1[0],
  // (k0+8..15, n0+8..15) -> b1[1]; lane l points at k = k0 + l%8 + 8*((l/8)%2), n = n0 + 8*(l/16).
  __device__ static void load_b2_mncontig(BFrag& b0, BFrag& b1, const T* s, int ld, int n0, int k0, int lane) {
    uint32_t r[4];
    int krow = k0 + (lane & 7) + ((lane >> 3) & 1) * 8;
    int col = n0 + (lane >> 4) * 8;
    ldmatrix_x4_trans(r, smem_addr(s + krow * ld + col));
    b0[0] = r[0]; b0[1] = r[1]; b1[0] = r[2]; b1[1] = r[3];
  }
  // B tile K-contiguous (B transposed in memory): s[n][k]. Without .trans lane l gets
  // (row n = g, k = 2t..2t+1) = b[0]. Matrices: (n0..7, k0..7) -> b0[0], (n0..7, k0+8..15) -> b0[1],
  // (n0+8..15, k0..7) -> b1[0], (n0+8..15, k0+8..15) -> b1[1]; lane l points at
  // n = n0 + l%8 + 8*(l/16), k = k0 + 8*((l/8)%2).
  __device__ static void load_b2_kcontig(BFrag& b0, BFrag& b1, const T* s, int ld, int n0, int k0, int lane) {
    uint32_t r[4];
    int row = n0 + (lane & 7) + (lane >> 4) * 8;
    int col = k0 + ((lane >> 3) & 1) * 8;
    ldmatrix_x4(r, smem_addr(s + row * ld + col));
    b0[0] = r[0]; b0[1] = r[1]; b1[0] = r[2]; b1[1] = r[3];
  }

  __device__ static void mma(float (&d)[4], const AFrag& a, const BFrag& b) {
    if constexpr (kArch >= 800) {
      if constexpr (kBf16) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
      } else {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
      }
    } else if constexpr (kArch >= 750 && !kBf16) {
      // sm_75 has m16n8k8 (f16 only). Its fragments (PTX ISA, "Matrix Fragments for
      // mma.m16n8k8", .f16): A a[0] = A(g, 2t..2t+1), a[1] = A(g+8, 2t..2t+1); B b = B(2t..2t+1, g).
      // So k 0..7 of the k16 step is (a[0], a[1]; b[0]) and k 8..15 is (a[2], a[3]; b[1]).
      asm volatile(
          "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[0]), "r"(a[1]), "r"(b[0]));
      asm volatile(
          "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[2]), "r"(a[3]), "r"(b[1]));
    } else {
      __trap();  // the host never launches this configuration on this architecture
    }
  }
};

// TF32: fp32 in shared memory, k step 8, each operand rounded to tf32 with cvt.rna when loaded
// into registers. Fragments of m16n8k8 .tf32 (PTX ISA, "Matrix Fragments for mma.m16n8k8",
// .tf32), one element per register:
//   a[0] = A(g, t)  a[1] = A(g+8, t)  a[2] = A(g, t+4)  a[3] = A(g+8, t+4)
//   b[0] = B(t, g)  b[1] = B(t+4, g)
// Plain 32-bit shared loads; banks: K-contiguous rows of 20 words read at (row g, col t):
// 20g + t mod 32 is distinct over the 32 lanes; MN-contiguous rows of 136 words read at
// (row t, col g): 8t + g mod 32 is distinct.
struct MmaTf32 {
  using Elem = float;
  static constexpr int kBK = 16;
  static constexpr int kKStep = 8;
  static constexpr int kPadK = 4;
  static constexpr int kPadMN = 8;
  using AFrag = uint32_t[4];
  using BFrag = uint32_t[2];

  __device__ static uint32_t tf32(float x) {
    uint32_t r = 0;
    if constexpr (kArch >= 800) asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
  }
  __device__ static void load_a_kcontig(AFrag& a, const float* s, int ld, int m0, int k0, int lane) {
    int g = lane >> 2, t = lane & 3;
    a[0] = tf32(s[(m0 + g) * ld + k0 + t]);
    a[1] = tf32(s[(m0 + g + 8) * ld + k0 + t]);
    a[2] = tf32(s[(m0 + g) * ld + k0 + t + 4]);
    a[3] = tf32(s[(m0 + g + 8) * ld + k0 + t + 4]);
  }
  __device__ static void load_a_mncontig(AFrag& a, const float* s, int ld, int m0, int k0, int lane) {
    int g = lane >> 2, t = lane & 3;
    a[0] = tf32(s[(k0 + t) * ld + m0 + g]);
    a[1] = tf32(s[(k0 + t) * ld + m0 + g + 8]);
    a[2] = tf32(s[(k0 + t + 4) * ld + m0 + g]);
    a[3] = tf32(s[(k0 + t + 4) * ld + m0 + g + 8]);
  }
  __device__ static void load_b2_mncontig(BFrag& b0, BFrag& b1, const float* s, int ld, int n0, int k0, int lane) {
    int g = lane >> 2, t = lane & 3;
    b0[0] = tf32(s[(k0 + t) * ld + n0 + g]);
    b0[1] = tf32(s[(k0 + t + 4) * ld + n0 + g]);
    b1[0] = tf32(s[(k0 + t) * ld + n0 + 8 + g]);
    b1[1] = tf32(s[(k0 + t + 4) * ld + n0 + 8 + g]);
  }
  __device__ static void load_b2_kcontig(BFrag& b0, BFrag& b1, const float* s, int ld, int n0, int k0, int lane) {
    int g = lane >> 2, t = lane & 3;
    b0[0] = tf32(s[(n0 + g) * ld + k0 + t]);
    b0[1] = tf32(s[(n0 + g) * ld + k0 + t + 4]);
    b1[0] = tf32(s[(n0 + 8 + g) * ld + k0 + t]);
    b1[1] = tf32(s[(n0 + 8 + g) * ld + k0 + t + 4]);
  }
  __device__ static void mma(float (&d)[4], const AFrag& a, const BFrag& b) {
    if constexpr (kArch >= 800) {
      asm volatile(
          "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
          "{%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else {
      __trap();
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Global -> shared tile copy. The stored tile is kRows x kCols elements of the operand as it lies
// in memory (row r, column c at src[(row0 + r) * ld + col0 + c]), valid where row0 + r < rows and
// col0 + c < cols; the rest is zero. Threads take 16-byte chunks in row order, so a warp reads
// consecutive chunks of a row (coalesced).
template <typename T, int kRows, int kCols, int kLds, int kThreads>
struct TileCopy {
  static constexpr int kElemsPerChunk = 16 / int(sizeof(T));
  static constexpr int kChunksPerRow = kCols / kElemsPerChunk;
  static constexpr int kChunks = kRows * kChunksPerRow;
  static constexpr int kPerThread = kChunks / kThreads;
  static_assert(kCols % kElemsPerChunk == 0 && kChunks % kThreads == 0, "tile does not divide into chunks");
  static_assert((kLds * int(sizeof(T))) % 16 == 0, "shared rows must keep 16-byte chunk alignment");

  // kAsync: cp.async (sm_80+); otherwise synchronous loads stored to shared memory.
  template <bool kAsync>
  __device__ static void copy(T* dst, const T* src, int64_t ld, int row0, int col0, int rows, int cols, bool vec, int tid) {
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      int chunk = tid + i * kThreads;
      int r = chunk / kChunksPerRow;
      int c = (chunk % kChunksPerRow) * kElemsPerChunk;
      int gr = row0 + r, gc = col0 + c;
      int valid = gr < rows ? min(max(cols - gc, 0), kElemsPerChunk) : 0;
      T* d = dst + r * kLds + c;
      const T* s = src + (int64_t(gr) * ld + gc);
      if (vec) {
        if constexpr (kAsync) {
          // A chunk with nothing valid still issues the copy (zero fill) from a valid address.
          cp_async_16(smem_addr(d), valid > 0 ? s : src, valid * int(sizeof(T)));
        } else {
          if (valid == kElemsPerChunk) {
            *reinterpret_cast<uint4*>(d) = __ldg(reinterpret_cast<const uint4*>(s));
          } else {
#pragma unroll
            for (int e = 0; e < kElemsPerChunk; ++e) d[e] = e < valid ? s[e] : T(0.0f);
          }
        }
      } else {
#pragma unroll
        for (int e = 0; e < kElemsPerChunk; ++e) d[e] = e < valid ? s[e] : T(0.0f);
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// The tensor-core kernel. CTA tile 128 x 128 x BK, 8 warps as 2 (M) x 4 (N), warp tile 64 x 32
// = 4 m16 tiles x 4 n8 tiles.
constexpr int kBM = 128, kBN = 128, kThreads = 256;
constexpr int kWarpM = 64, kWarpN = 32;
constexpr int kMTiles = kWarpM / 16, kNTiles = kWarpN / 8;

template <typename Mma, bool kTransA, bool kTransB>
struct MmaLayout {
  using T = typename Mma::Elem;
  static constexpr int kBK = Mma::kBK;
  // A not transposed: stored [m][k] -> K-contiguous tile 128 x BK. Transposed: stored [k][m].
  static constexpr int kARows = kTransA ? kBK : kBM;
  static constexpr int kACols = kTransA ? kBM : kBK;
  static constexpr int kALds = kACols + (kTransA ? Mma::kPadMN : Mma::kPadK);
  // B not transposed: stored [k][n] -> MN-contiguous tile BK x 128. Transposed: stored [n][k].
  static constexpr int kBRows = kTransB ? kBN : kBK;
  static constexpr int kBCols = kTransB ? kBK : kBN;
  static constexpr int kBLds = kBCols + (kTransB ? Mma::kPadK : Mma::kPadMN);
  static constexpr int kAStage = kARows * kALds;  // elements
  static constexpr int kBStage = kBRows * kBLds;
  static constexpr int kStageElems = kAStage + kBStage;
  using ACopy = TileCopy<T, kARows, kACols, kALds, kThreads>;
  using BCopy = TileCopy<T, kBRows, kBCols, kBLds, kThreads>;
};

template <typename Mma, bool kTransA, bool kTransB, int kStages>
constexpr size_t mma_smem_bytes() {
  return size_t(MmaLayout<Mma, kTransA, kTransB>::kStageElems) * kStages * sizeof(typename Mma::Elem);
}

// Writes a warp's 64 x 32 accumulator tile whose first element is C(row0, col0); fragment
// element e of tile (i, j) is C(row0 + 16i + g + 8(e/2), col0 + 8j + 2t + e%2) (see above).
template <typename OutT>
__device__ __forceinline__ void mma_epilogue(const Params& p, const float (&acc)[kMTiles][kNTiles][4], int row0, int col0, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int i = 0; i < kMTiles; ++i)
#pragma unroll
    for (int j = 0; j < kNTiles; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        epilogue_element<OutT>(p, row0 + i * 16 + g + (e >> 1) * 8, col0 + j * 8 + 2 * t + (e & 1), acc[i][j][e]);
}

// kMinArch: the architecture this configuration is built for (800: cp.async pipeline, 750: the
// synchronous sm_75 path); other architectures compile an empty body.
// Two CTAs per SM on sm_80+ (2 x 80 KB of shared memory); one on sm_75, whose 64 KB of shared
// memory holds one 40 KB CTA anyway, so it may use up to 255 registers.
template <typename Mma, bool kTransA, bool kTransB, int kStages, int kMinArch>
__global__ void __launch_bounds__(kThreads, kMinArch >= 800 ? 2 : 1) mma_gemm_kernel(Params p) {
  constexpr bool kBuild = kArch >= kMinArch && (kMinArch >= 800 || kArch < 800);
  if constexpr (!kBuild) {
    __trap();
  } else {
    using L = MmaLayout<Mma, kTransA, kTransB>;
    using T = typename Mma::Elem;
    constexpr int kBK = L::kBK;
    constexpr bool kAsync = kMinArch >= 800;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);

    const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    const int warp_m = warp / 4, warp_n = warp % 4;  // 2 x 4 warps
    int tm, tn;
    tile_coords((p.m + kBM - 1) / kBM, (p.n + kBN - 1) / kBN, tm, tn);
    const int bm = tm * kBM, bn = tn * kBN;
    const T* A = static_cast<const T*>(p.a);
    const T* B = static_cast<const T*>(p.b);

    auto load_stage = [&](int stage, int kt) {
      T* sa = smem + stage * L::kStageElems;
      T* sb = sa + L::kAStage;
      int k0 = kt * kBK;
      if constexpr (kTransA) L::ACopy::template copy<kAsync>(sa, A, p.lda, k0, bm, p.k, p.m, p.vec_a, tid);
      else L::ACopy::template copy<kAsync>(sa, A, p.lda, bm, k0, p.m, p.k, p.vec_a, tid);
      if constexpr (kTransB) L::BCopy::template copy<kAsync>(sb, B, p.ldb, bn, k0, p.n, p.k, p.vec_b, tid);
      else L::BCopy::template copy<kAsync>(sb, B, p.ldb, k0, bn, p.k, p.n, p.vec_b, tid);
    };

    float acc[kMTiles][kNTiles][4];
#pragma unroll
    for (int i = 0; i < kMTiles; ++i)
#pragma unroll
      for (int j = 0; j < kNTiles; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    const int k_tiles = (p.k + kBK - 1) / kBK;
    // Prologue: stages 0 .. S-2 in flight, one commit group each (empty groups are fine).
#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) {
      if (s < k_tiles) load_stage(s, s);
      cp_async_commit();
    }

    for (int kt = 0; kt < k_tiles; ++kt) {
      // Groups committed so far: S-1+kt; allowing S-2 pending means tile kt has landed.
      cp_async_wait<kStages - 2>();
      // Also: every warp has finished reading the stage that the load below overwrites
      // ((kt-1) % S, computed in the previous iteration).
      __syncthreads();
      int next = kt + kStages - 1;
      if (next < k_tiles) load_stage(next % kStages, next);
      cp_async_commit();

      const T* sa = smem + (kt % kStages) * L::kStageElems;
      const T* sb = sa + L::kAStage;
#pragma unroll
      for (int kk = 0; kk < kBK; kk += Mma::kKStep) {
        typename Mma::AFrag af[kMTiles];
        typename Mma::BFrag bf[kNTiles];
#pragma unroll
        for (int i = 0; i < kMTiles; ++i) {
          int m0 = warp_m * kWarpM + i * 16;
          if constexpr (kTransA) Mma::load_a_mncontig(af[i], sa, L::kALds, m0, kk, lane);
          else Mma::load_a_kcontig(af[i], sa, L::kALds, m0, kk, lane);
        }
#pragma unroll
        for (int j = 0; j < kNTiles; j += 2) {
          int n0 = warp_n * kWarpN + j * 8;
          if constexpr (kTransB) Mma::load_b2_kcontig(bf[j], bf[j + 1], sb, L::kBLds, n0, kk, lane);
          else Mma::load_b2_mncontig(bf[j], bf[j + 1], sb, L::kBLds, n0, kk, lane);
        }
#pragma unroll
        for (int i = 0; i < kMTiles; ++i)
#pragma unroll
          for (int j = 0; j < kNTiles; ++j) Mma::mma(acc[i][j], af[i], bf[j]);
      }
    }
    cp_async_wait<0>();  // no copy may still target shared memory when the CTA exits

    if (p.c_type == int(DType::F32)) mma_epilogue<float>(p, acc, bm + warp_m * kWarpM, bn + warp_n * kWarpN, lane);
    else mma_epilogue<T>(p, acc, bm + warp_m * kWarpM, bn + warp_n * kWarpN, lane);
  }
}

// ---------------------------------------------------------------------------------------------
// SIMT kernel: the main loop of gemm_simt.cuh (128 x 128 x 8 CTA tile, 256 threads, 8 x 8 outputs
// per thread) and the epilogue.
static_assert(gemm_simt::kBM == kBM && gemm_simt::kBN == kBN && gemm_simt::kThreads == kThreads, "one grid for both kernels");

// Thread (tx, ty)'s outputs: row i is frag_index(ty*4, i), column j is frag_index(tx*4, j).
template <typename OutT>
__device__ __forceinline__ void simt_epilogue(const Params& p, const float (&acc)[8][8], int bm, int bn, int tx, int ty) {
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    int row = gemm_simt::frag_index(bm + ty * 4, i);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      int col = gemm_simt::frag_index(bn + tx * 4, j);
      epilogue_element<OutT>(p, row, col, acc[i][j]);
    }
  }
}

template <typename T, bool kTransA, bool kTransB>
__global__ void __launch_bounds__(gemm_simt::kThreads) simt_gemm_kernel(Params p) {
  __shared__ __align__(16) gemm_simt::SharedTile sA, sB;
  const int tid = int(threadIdx.x);
  const int tx = tid % 16, ty = tid / 16;
  int bm, bn;
  gemm_simt::cta_origin(p, bm, bn);

  float acc[8][8];
  gemm_simt::NoHook hook;
  gemm_simt::main_loop<T, kTransA, kTransB>(p, sA, sB, bm, bn, acc, hook);

  if (p.c_type == int(DType::F32)) simt_epilogue<float>(p, acc, bm, bn, tx, ty);
  else simt_epilogue<T>(p, acc, bm, bn, tx, ty);
}

}  // namespace gemm_detail

// ---------------------------------------------------------------------------------------------
// Host side.
namespace {
using namespace gemm_detail;

bool aligned16(const void* ptr, int64_t ld, size_t elem) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && (ld * int64_t(elem)) % 16 == 0;
}

// Raises the dynamic shared-memory limit of `kernel` once per device (devices 0..63).
template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes, int device, std::atomic<uint64_t>& done) {
  if (bytes <= 48 * 1024) return;
  uint64_t bit = device < 64 ? (uint64_t(1) << device) : 0;
  if (bit && (done.load(std::memory_order_acquire) & bit)) return;
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
        "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
  done.fetch_or(bit, std::memory_order_acq_rel);
}

unsigned tile_blocks(const Params& p) {
  int64_t tiles = int64_t((p.m + kBM - 1) / kBM) * ((p.n + kBN - 1) / kBN);
  return unsigned(tiles);
}

template <typename Mma, bool kTransA, bool kTransB, int kStages, int kMinArch>
void launch_mma(const Params& p, int device, cudaStream_t stream) {
  auto kernel = mma_gemm_kernel<Mma, kTransA, kTransB, kStages, kMinArch>;
  constexpr size_t bytes = mma_smem_bytes<Mma, kTransA, kTransB, kStages>();
  static std::atomic<uint64_t> done{0};
  allow_smem(kernel, bytes, device, done);
  kernel<<<tile_blocks(p), kThreads, bytes, stream>>>(p);
  check_launch("gemm (tensor-core kernel)");
}

template <typename Mma, int kStages, int kMinArch>
void dispatch_mma(const Params& p, bool ta, bool tb, int device, cudaStream_t stream) {
  if (!ta && !tb) launch_mma<Mma, false, false, kStages, kMinArch>(p, device, stream);
  else if (!ta && tb) launch_mma<Mma, false, true, kStages, kMinArch>(p, device, stream);
  else if (ta && !tb) launch_mma<Mma, true, false, kStages, kMinArch>(p, device, stream);
  else launch_mma<Mma, true, true, kStages, kMinArch>(p, device, stream);
}

template <typename T>
void dispatch_simt(const Params& p, bool ta, bool tb, cudaStream_t stream) {
  unsigned blocks = tile_blocks(p);
  if (!ta && !tb) simt_gemm_kernel<T, false, false><<<blocks, 256, 0, stream>>>(p);
  else if (!ta && tb) simt_gemm_kernel<T, false, true><<<blocks, 256, 0, stream>>>(p);
  else if (ta && !tb) simt_gemm_kernel<T, true, false><<<blocks, 256, 0, stream>>>(p);
  else simt_gemm_kernel<T, true, true><<<blocks, 256, 0, stream>>>(p);
  check_launch("gemm (SIMT kernel)");
}

}  // namespace

// Everything that can be checked without touching the device (the cuBLAS path shares it).
void validate_gemm(const GemmArgs& g) {
  if (g.m < 0) throw_expected(ErrorKind::Range, "m ≥ 0", "m", std::to_string(g.m));
  if (g.n < 0) throw_expected(ErrorKind::Range, "n ≥ 0", "n", std::to_string(g.n));
  if (g.k < 0) throw_expected(ErrorKind::Range, "k ≥ 0", "k", std::to_string(g.k));
  const int64_t kMax = INT_MAX - 256;  // kernels index rows and columns with int
  if (g.m > kMax) throw_expected(ErrorKind::Range, "m ≤ " + std::to_string(kMax), "m", std::to_string(g.m));
  if (g.n > kMax) throw_expected(ErrorKind::Range, "n ≤ " + std::to_string(kMax), "n", std::to_string(g.n));
  if (g.k > kMax) throw_expected(ErrorKind::Range, "k ≤ " + std::to_string(kMax), "k", std::to_string(g.k));
  if (g.ab != DType::F32 && g.ab != DType::F16 && g.ab != DType::BF16)
    throw_expected(ErrorKind::Type, "float32, float16 or bfloat16", "ab", std::to_string(int(g.ab)));
  if (g.c_type != DType::F32 && g.c_type != g.ab)
    throw_expected(ErrorKind::Type, std::string("float32 or ") + dtype_name(g.ab) + " (the inputs' dtype)", "c_type",
                   dtype_name(g.c_type));
  if (g.tf32 && g.ab != DType::F32)
    throw_expected(ErrorKind::Type, "float32 inputs for tf32", "ab", dtype_name(g.ab));
  // Row lengths of the stored operands: A is m x k (k x m when transposed), B is k x n (n x k).
  const int64_t a_row = g.trans_a ? g.m : g.k, a_rows = g.trans_a ? g.k : g.m;
  const int64_t b_row = g.trans_b ? g.k : g.n, b_rows = g.trans_b ? g.n : g.k;
  auto check_ld = [](const char* ld_name, int64_t ld, int64_t row, int64_t rows, const char* name) {
    if (rows > 0 && ld < std::max<int64_t>(row, 1))
      throw_expected(ErrorKind::Range, std::string(ld_name) + " ≥ " + std::to_string(std::max<int64_t>(row, 1)), name,
                     std::to_string(ld));
  };
  if (g.m > 0 && g.n > 0) {
    const int64_t tiles = ((g.m + kBM - 1) / kBM) * ((g.n + kBN - 1) / kBN);  // one CTA each, grid x
    if (tiles > INT_MAX)
      throw_expected(ErrorKind::Range, "at most " + std::to_string(INT_MAX) + " 128x128 tiles of C", "m x n",
                     std::to_string(g.m) + " x " + std::to_string(g.n));
    const bool reads_ab = g.k > 0 && g.alpha != 0.0f;
    if (reads_ab) {
      check_ld("lda", g.lda, a_row, a_rows, "a");
      check_ld("ldb", g.ldb, b_row, b_rows, "b");
      if (!g.a) throw_expected(ErrorKind::Range, "a device pointer", "a", "null");
      if (!g.b) throw_expected(ErrorKind::Range, "a device pointer", "b", "null");
    }
    check_ld("ldc", g.ldc, g.n, g.m, "c");
    if (!g.c) throw_expected(ErrorKind::Range, "a device pointer", "c", "null");
  }
}

namespace {

int compute_capability(int device) {
  int major = 0, minor = 0;
  check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "cudaDeviceGetAttribute(ComputeCapabilityMajor)");
  check(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), "cudaDeviceGetAttribute(ComputeCapabilityMinor)");
  return major * 10 + minor;
}

}  // namespace

void gemm(int device, const GemmArgs& args, Stream s) {
  validate_gemm(args);
  if (args.m == 0 || args.n == 0) return;
  use_device(device);
  cudaStream_t stream = as_stream(s);
  const int cc = compute_capability(device);

  Params p;
  p.m = int(args.m); p.n = int(args.n); p.k = int(args.k);
  p.a = args.a; p.lda = args.lda;
  p.b = args.b; p.ldb = args.ldb;
  p.c = args.c; p.ldc = args.ldc;
  p.alpha = args.alpha; p.beta = args.beta;
  p.c_type = int(args.c_type);
  const size_t elem = dtype_size(args.ab);
  p.vec_a = aligned16(args.a, args.lda, elem);
  p.vec_b = aligned16(args.b, args.ldb, elem);

  // SASS exists for sm_75, sm_80 and sm_90 (and sm_80 code runs on 8.x, sm_90 on 9.x+). Checked
  // before the scale-only path too: its kernel has no image for older devices either, and the
  // caller should get Unsupported rather than a launch failure.
  if (cc < 75) throw_expected(ErrorKind::Unsupported, "compute capability ≥ 7.5", "device", std::to_string(cc / 10) + "." + std::to_string(cc % 10));

  if (args.k == 0 || args.alpha == 0.0f) {  // C = beta * C; A and B are not read
    int64_t total = args.m * args.n;
    const unsigned blocks = blocks_for(total, 256);
    if (args.c_type == DType::F32) scale_c_kernel<float><<<blocks, 256, 0, stream>>>(p);
    else if (args.c_type == DType::F16) scale_c_kernel<__half><<<blocks, 256, 0, stream>>>(p);
    else scale_c_kernel<__nv_bfloat16><<<blocks, 256, 0, stream>>>(p);
    check_launch("gemm (scale C)");
    return;
  }
  const bool ampere = cc >= 80;
  const bool ta = args.trans_a, tb = args.trans_b;

  switch (args.ab) {
    case DType::F16:
      if (ampere) dispatch_mma<Mma16<__half, false>, 4, 800>(p, ta, tb, device, stream);
      else dispatch_mma<Mma16<__half, false>, 2, 750>(p, ta, tb, device, stream);
      return;
    case DType::BF16:
      if (ampere) dispatch_mma<Mma16<__nv_bfloat16, true>, 4, 800>(p, ta, tb, device, stream);
      else dispatch_simt<__nv_bfloat16>(p, ta, tb, stream);  // no bf16 mma before sm_80
      return;
    case DType::F32:
      if (args.tf32) {
        if (!ampere)
          throw Error(ErrorKind::Unsupported, "tf32 tensor cores need compute capability 8.0 or newer; this device is " +
                                                  std::to_string(cc / 10) + "." + std::to_string(cc % 10));
        dispatch_mma<MmaTf32, 4, 800>(p, ta, tb, device, stream);
      } else {
        dispatch_simt<float>(p, ta, tb, stream);
      }
      return;
  }
}

}  // namespace kintsugi::cuda
