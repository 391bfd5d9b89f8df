// Reed–Solomon erasure coding over GF(2^8) (polynomial x^8 + x^4 + x^3 + x^2 + 1, 0x11D): k data
// blocks, r <= 4 parity blocks, any r lost blocks recoverable. Systematic: the data blocks are
// stored as they are and the parity rows come from a Cauchy matrix, so every k x k submatrix of
// the generator [I; P] is invertible. Multiplication by a constant uses two 16-entry nibble tables
// and byte shuffles (as ISA-L does); every input is read once per pass for all outputs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace kintsugi {

// Scalar arithmetic in GF(2^8) with the polynomial 0x11D (generator 2).
namespace gf {
uint8_t add(uint8_t a, uint8_t b);  // a ^ b
uint8_t mul(uint8_t a, uint8_t b);
// Multiplicative inverse; throws Error(Range) for 0.
uint8_t inv(uint8_t a);
// a / b; throws Error(Range) for b == 0.
uint8_t div(uint8_t a, uint8_t b);
// 2^e (e taken mod 255) and the discrete log of a != 0 (throws Error(Range) for 0).
uint8_t exp(int e);
int log(uint8_t a);
// Inverts the row-major n x n matrix `a` into `out` (n*n bytes, may not alias `a`). Returns false,
// leaving `out` unspecified, when `a` is singular.
bool invert_matrix(const uint8_t* a, int n, uint8_t* out);
}  // namespace gf

class ReedSolomon {
 public:
  // 1 <= k, 1 <= r <= 4, k + r <= 255; otherwise Error(Range).
  ReedSolomon(int k, int r);

  int k() const { return k_; }
  int r() const { return r_; }
  // The r x k parity matrix P (row-major): parity[p] = sum_j P[p][j] * data[j]. Row 0 is all ones,
  // so the first parity block is the XOR of the data blocks.
  const std::vector<uint8_t>& parity_matrix() const { return matrix_; }
  uint8_t coefficient(int p, int j) const { return matrix_[size_t(p) * size_t(k_) + size_t(j)]; }

  // parity[p][0, len) = sum_j P[p][j] * data[j][0, len) for p < r. Parity buffers must not overlap
  // the data. len == 0 does nothing.
  void encode(const uint8_t* const* data, size_t len, uint8_t* const* parity) const;

  // blocks: k + r pointers (data 0..k-1, then parity 0..r-1), each len bytes. present[i] says
  // whether blocks[i] holds valid contents; every block that is not present is rebuilt in place
  // (its pointer must be a writable buffer). At most r blocks may be missing (Error(Range)
  // otherwise).
  void decode(uint8_t* const* blocks, const bool* present, size_t len) const;

  // Delta update when data block `data_index` changes: with delta = old ^ new,
  // parity[p] ^= P[p][data_index] * delta for every p < r. Costs one read of delta and a read and
  // write of each parity block, independent of k.
  void update_parity(int data_index, const uint8_t* delta, size_t len, uint8_t* const* parity) const;

 private:
  int k_, r_;
  std::vector<uint8_t> matrix_;  // r x k
  std::vector<uint8_t> tables_;  // per data block j, per parity p: 32 bytes of nibble tables
};

}  // namespace kintsugi
