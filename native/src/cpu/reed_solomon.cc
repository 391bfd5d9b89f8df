// Reed–Solomon over GF(2^8): field tables, the Cauchy generator, matrix inversion, argument checks,
// ISA dispatch, splitting of large blocks over the pool, and the portable kernel. The AVX2 /
// AVX-512 kernels live in reed_solomon_avx2.cc / reed_solomon_avx512.cc.
#include "kintsugi/reed_solomon.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "kernels_internal.h"
#include "kintsugi/cpu.h"
#include "kintsugi/error.h"
#include "kintsugi/threadpool.h"

namespace kintsugi {
namespace detail {

// One dot-product pass: for p < ndst, dst[p][off, off+len) = (accumulate ? dst[p] : 0) ^
// sum_j c[j][p] * src[j][off, off+len), where the constant c[j][p] is given by its 32 bytes of
// nibble tables at tables + (j * ndst + p) * 32 (16 products with the low nibble, 16 with the
// high nibble). 1 <= ndst <= 4; dst must not overlap src.
using RsDotKernel = void (*)(const uint8_t* const* src, int nsrc, const uint8_t* tables, uint8_t* const* dst,
                             int ndst, size_t off, size_t len, int accumulate);

void rs_dot_prod_portable(const uint8_t* const* src, int nsrc, const uint8_t* tables, uint8_t* const* dst, int ndst,
                          size_t off, size_t len, int accumulate);
#if !defined(KINTSUGI_NO_X86_KERNELS)
void rs_dot_prod_avx2(const uint8_t* const* src, int nsrc, const uint8_t* tables, uint8_t* const* dst, int ndst,
                      size_t off, size_t len, int accumulate);
void rs_dot_prod_avx512(const uint8_t* const* src, int nsrc, const uint8_t* tables, uint8_t* const* dst, int ndst,
                        size_t off, size_t len, int accumulate);
#endif

}  // namespace detail

namespace {

constexpr int kMaxParity = 4;
constexpr unsigned kPoly = 0x11D;

struct GfTables {
  uint8_t exp[512];  // exp[i] = 2^i, doubled so exp[log a + log b] needs no reduction
  int16_t log[256];  // log[0] = -1
  uint8_t mul[256][256];

  GfTables() {
    unsigned x = 1;
    for (int i = 0; i < 255; ++i) {
      exp[i] = uint8_t(x);
      exp[i + 255] = uint8_t(x);
      x <<= 1;
      if (x & 0x100) x ^= kPoly;
    }
    exp[510] = exp[0];
    exp[511] = exp[1];
    log[0] = -1;
    for (int i = 0; i < 255; ++i) log[exp[i]] = int16_t(i);
    for (int a = 0; a < 256; ++a)
      for (int b = 0; b < 256; ++b) mul[a][b] = (a && b) ? exp[log[a] + log[b]] : 0;
  }
};

const GfTables& gf_tables() {
  static const GfTables t;
  return t;
}

void fill_nibble_tables(uint8_t c, uint8_t* out32) {
  const uint8_t* row = gf_tables().mul[c];
  for (int i = 0; i < 16; ++i) {
    out32[i] = row[i];
    out32[16 + i] = row[i << 4];
  }
}

detail::RsDotKernel dot_kernel() {
#if !defined(KINTSUGI_NO_X86_KERNELS)
  switch (active_isa()) {
    case Isa::Avx512: return detail::rs_dot_prod_avx512;
    case Isa::Avx2: return detail::rs_dot_prod_avx2;
    default: break;
  }
#endif
  return detail::rs_dot_prod_portable;
}

// Below this many bytes touched a call runs on the calling thread (waking the pool costs more than
// cache-resident work); above it the length is split into contiguous ranges of whole units.
constexpr size_t kParallelBytes = size_t(4) << 20;
constexpr size_t kSplitBytes = size_t(64) << 10;

void run_dot(const uint8_t* const* src, int nsrc, const uint8_t* tables, uint8_t* const* dst, int ndst, size_t len,
             int accumulate, size_t bytes_touched) {
  const detail::RsDotKernel kernel = dot_kernel();
  if (num_threads() <= 1 || bytes_touched < kParallelBytes) {
    kernel(src, nsrc, tables, dst, ndst, 0, len, accumulate);
    return;
  }
  const int64_t units = int64_t((len + kSplitBytes - 1) / kSplitBytes);
  parallel_for(units, 1, [&](int64_t u0, int64_t u1) {
    const size_t begin = size_t(u0) * kSplitBytes, end = std::min(len, size_t(u1) * kSplitBytes);
    if (begin < end) kernel(src, nsrc, tables, dst, ndst, begin, end - begin, accumulate);
  });
}

std::string rs_name(int k, int r) { return "RS(" + std::to_string(k) + "+" + std::to_string(r) + ")"; }

template <typename P> void check_pointers(const P* const* ptrs, int n, const char* name) {
  if (!ptrs) throw_expected(ErrorKind::Type, std::to_string(n) + " block pointers", name, "null");
  for (int i = 0; i < n; ++i)
    if (!ptrs[i]) throw_expected(ErrorKind::Type, "a block", std::string(name) + "[" + std::to_string(i) + "]", "null");
}

}  // namespace

namespace detail {

// Plain loops over the full 256-entry product row of each constant, in chunks small enough that a
// chunk of every source stays in L1 while all outputs are updated from it.
void rs_dot_prod_portable(const uint8_t* const* src, int nsrc, const uint8_t* tables, uint8_t* const* dst, int ndst,
                          size_t off, size_t len, int accumulate) {
  const GfTables& gf = gf_tables();
  constexpr size_t kChunk = 2048;
  for (size_t i0 = off; i0 < off + len; i0 += kChunk) {
    const size_t n = std::min(kChunk, off + len - i0);
    if (!accumulate)
      for (int p = 0; p < ndst; ++p) std::memset(dst[p] + i0, 0, n);
    for (int j = 0; j < nsrc; ++j) {
      const uint8_t* s = src[j] + i0;
      for (int p = 0; p < ndst; ++p) {
        const uint8_t c = tables[(size_t(j) * size_t(ndst) + size_t(p)) * 32 + 1];  // c * 1
        uint8_t* d = dst[p] + i0;
        if (c == 0) continue;
        if (c == 1) {
          for (size_t i = 0; i < n; ++i) d[i] ^= s[i];
          continue;
        }
        const uint8_t* row = gf.mul[c];
        for (size_t i = 0; i < n; ++i) d[i] ^= row[s[i]];
      }
    }
  }
}

}  // namespace detail

// ---- Scalar field arithmetic ----
namespace gf {

uint8_t add(uint8_t a, uint8_t b) { return uint8_t(a ^ b); }
uint8_t mul(uint8_t a, uint8_t b) { return gf_tables().mul[a][b]; }

uint8_t inv(uint8_t a) {
  if (a == 0) throw_expected(ErrorKind::Range, "a non-zero element", "gf::inv", "0");
  const GfTables& t = gf_tables();
  return t.exp[255 - t.log[a]];
}

uint8_t div(uint8_t a, uint8_t b) {
  if (b == 0) throw_expected(ErrorKind::Range, "a non-zero divisor", "gf::div", "0");
  if (a == 0) return 0;
  const GfTables& t = gf_tables();
  return t.exp[t.log[a] + 255 - t.log[b]];
}

uint8_t exp(int e) {
  e %= 255;
  if (e < 0) e += 255;
  return gf_tables().exp[e];
}

int log(uint8_t a) {
  if (a == 0) throw_expected(ErrorKind::Range, "a non-zero element", "gf::log", "0");
  return gf_tables().log[a];
}

bool invert_matrix(const uint8_t* a, int n, uint8_t* out) {
  if (n <= 0) return n == 0;
  const GfTables& t = gf_tables();
  const size_t N = size_t(n);
  std::vector<uint8_t> m(a, a + N * N);
  std::fill(out, out + N * N, uint8_t(0));
  for (size_t i = 0; i < N; ++i) out[i * N + i] = 1;
  // Gauss–Jordan elimination; addition is XOR, so there is no sign bookkeeping.
  for (size_t col = 0; col < N; ++col) {
    size_t pivot = col;
    while (pivot < N && m[pivot * N + col] == 0) ++pivot;
    if (pivot == N) return false;
    if (pivot != col)
      for (size_t c = 0; c < N; ++c) {
        std::swap(m[pivot * N + c], m[col * N + c]);
        std::swap(out[pivot * N + c], out[col * N + c]);
      }
    const uint8_t* scale = t.mul[t.exp[255 - t.log[m[col * N + col]]]];
    for (size_t c = 0; c < N; ++c) {
      m[col * N + c] = scale[m[col * N + c]];
      out[col * N + c] = scale[out[col * N + c]];
    }
    for (size_t row = 0; row < N; ++row) {
      const uint8_t f = m[row * N + col];
      if (row == col || f == 0) continue;
      const uint8_t* fr = t.mul[f];
      for (size_t c = 0; c < N; ++c) {
        m[row * N + c] ^= fr[m[col * N + c]];
        out[row * N + c] ^= fr[out[col * N + c]];
      }
    }
  }
  return true;
}

}  // namespace gf

// ---- The code ----

ReedSolomon::ReedSolomon(int k, int r) : k_(k), r_(r) {
  if (k < 1) throw_expected(ErrorKind::Range, "at least 1 data block", "k", std::to_string(k));
  if (r < 1 || r > kMaxParity)
    throw_expected(ErrorKind::Range, "between 1 and " + std::to_string(kMaxParity) + " parity blocks", "r",
                   std::to_string(r));
  if (k + r > 255) throw_expected(ErrorKind::Range, "k + r <= 255", "RS(k+r)", rs_name(k, r));
  // Cauchy matrix C[p][j] = 1 / (x_p + y_j) with x_p = k + p and y_j = j, all distinct, so every
  // square submatrix of C is invertible, hence every k x k submatrix of [I; C]. Scaling rows and
  // columns by non-zero constants keeps that property: columns are scaled so row 0 is all ones
  // (the first parity is a plain XOR), then rows so column 0 is all ones.
  const size_t K = size_t(k);
  matrix_.assign(size_t(r) * K, 0);
  for (int p = 0; p < r; ++p)
    for (int j = 0; j < k; ++j) matrix_[size_t(p) * K + size_t(j)] = gf::inv(uint8_t((k + p) ^ j));
  for (size_t j = 0; j < K; ++j) {
    const uint8_t s = gf::inv(matrix_[j]);
    for (int p = 0; p < r; ++p) matrix_[size_t(p) * K + j] = gf::mul(matrix_[size_t(p) * K + j], s);
  }
  for (int p = 1; p < r; ++p) {
    const uint8_t s = gf::inv(matrix_[size_t(p) * K]);
    for (size_t j = 0; j < K; ++j) matrix_[size_t(p) * K + j] = gf::mul(matrix_[size_t(p) * K + j], s);
  }
  tables_.assign(K * size_t(r) * 32, 0);
  for (size_t j = 0; j < K; ++j)
    for (int p = 0; p < r; ++p) fill_nibble_tables(matrix_[size_t(p) * K + j], &tables_[(j * size_t(r) + size_t(p)) * 32]);
}

void ReedSolomon::encode(const uint8_t* const* data, size_t len, uint8_t* const* parity) const {
  if (len == 0) return;
  check_pointers(data, k_, "data");
  check_pointers(parity, r_, "parity");
  run_dot(data, k_, tables_.data(), parity, r_, len, 0, len * size_t(k_ + r_));
}

void ReedSolomon::update_parity(int data_index, const uint8_t* delta, size_t len, uint8_t* const* parity) const {
  if (data_index < 0 || data_index >= k_)
    throw_expected(ErrorKind::Range, "a data block index in [0, " + std::to_string(k_) + ")", "data_index",
                   std::to_string(data_index));
  if (len == 0) return;
  if (!delta) throw_expected(ErrorKind::Type, "a delta buffer", "delta", "null");
  check_pointers(parity, r_, "parity");
  const uint8_t* src[1] = {delta};
  run_dot(src, 1, tables_.data() + size_t(data_index) * size_t(r_) * 32, parity, r_, len, 1,
          len * size_t(1 + 2 * r_));
}

void ReedSolomon::decode(uint8_t* const* blocks, const bool* present, size_t len) const {
  const int n = k_ + r_;
  if (!present) throw_expected(ErrorKind::Type, std::to_string(n) + " presence flags", "present", "null");
  std::vector<int> lost, survivors;
  detail::translate_bad_alloc("ReedSolomon::decode", [&] {
    for (int i = 0; i < n; ++i) (present[i] ? survivors : lost).push_back(i);
  });
  if (int(lost.size()) > r_) {
    std::string which;
    for (size_t i = 0; i < lost.size(); ++i) which += (i ? ", " : "") + std::to_string(lost[i]);
    throw_expected(ErrorKind::Range, "at most " + std::to_string(r_) + " lost blocks", rs_name(k_, r_) + " decode",
                   std::to_string(lost.size()) + " lost (blocks " + which + ")");
  }
  if (lost.empty() || len == 0) return;
  check_pointers(blocks, n, "blocks");

  detail::translate_bad_alloc("ReedSolomon::decode", [&] {
    const size_t K = size_t(k_), E = lost.size();
    survivors.resize(K);  // the first k present blocks: data blocks first, so the system is mostly I
    // Rows of the generator [I; P] for the chosen survivors, then their inverse: data = D * survivors.
    std::vector<uint8_t> b(K * K, 0), d(K * K);
    for (size_t i = 0; i < K; ++i) {
      const int s = survivors[i];
      if (s < k_) b[i * K + size_t(s)] = 1;
      else std::memcpy(&b[i * K], &matrix_[size_t(s - k_) * K], K);
    }
    if (!gf::invert_matrix(b.data(), k_, d.data()))
      throw Error(ErrorKind::Internal, "Reed–Solomon decode matrix is singular for " + rs_name(k_, r_));
    // Each lost block as a combination of the survivors: data row L is D[L]; parity row p is P[p] * D.
    std::vector<uint8_t> coef(E * K, 0);
    for (size_t e = 0; e < E; ++e) {
      const int l = lost[e];
      uint8_t* row = &coef[e * K];
      if (l < k_) {
        std::memcpy(row, &d[size_t(l) * K], K);
      } else {
        const uint8_t* prow = &matrix_[size_t(l - k_) * K];
        for (size_t j = 0; j < K; ++j) {
          if (prow[j] == 0) continue;
          const uint8_t* m = gf_tables().mul[prow[j]];
          for (size_t c = 0; c < K; ++c) row[c] ^= m[d[j * K + c]];
        }
      }
    }
    std::vector<uint8_t> tables(K * E * 32);
    for (size_t j = 0; j < K; ++j)
      for (size_t e = 0; e < E; ++e) fill_nibble_tables(coef[e * K + j], &tables[(j * E + e) * 32]);
    std::vector<const uint8_t*> src(K);
    for (size_t j = 0; j < K; ++j) src[j] = blocks[survivors[j]];
    uint8_t* dst[kMaxParity];
    for (size_t e = 0; e < E; ++e) dst[e] = blocks[lost[e]];
    run_dot(src.data(), k_, tables.data(), dst, int(E), len, 0, len * (K + E));
  });
}

}  // namespace kintsugi
