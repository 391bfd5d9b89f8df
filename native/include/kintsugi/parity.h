// Parity coding over equal-length blocks: XOR (bit-exact) and weighted float sums
// (what learned parity models and float-sum erasure codes use).
#pragma once
#include <cstddef>
#include <cstdint>

namespace kintsugi {

// parity = blocks[0] ^ blocks[1] ^ ... ^ blocks[k-1]. Decoding a lost block is the same call over
// the parity and the k-1 survivors.
void xor_encode(const uint8_t* const* blocks, int k, size_t len, uint8_t* parity);
// dst ^= src: delta update of an XOR parity when one block changes (pass old ^ new).
void xor_into(uint8_t* dst, const uint8_t* src, size_t len);

// parity = sum_i coeffs[i] * blocks[i] (coeffs == nullptr means all ones).
void sum_encode(const float* const* blocks, const float* coeffs, int k, size_t len, float* parity);
// Recover one block: out = (parity - sum_i coeffs[i] * available[i]) / missing_coeff.
void sum_decode(const float* parity, const float* const* available, const float* coeffs, int count,
                float missing_coeff, size_t len, float* out);

}  // namespace kintsugi
