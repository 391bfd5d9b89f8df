// Elementwise kernels of the nn layers: memory-bound loops, vectorised and shared over the pool.
#pragma once
#include <cstdint>

namespace kintsugi {

// y = max(x, +0) on the bits: a set sign bit (negatives, -0, -Inf, NaNs with the sign set) gives
// +0, anything else passes unchanged.
void relu_forward(const float* x, int64_t n, float* y);
// dx = dy * (y > 0) + 0: +0 where y <= 0 or y is NaN (NaN where dy is infinite or NaN there, as
// the product says), dy elsewhere (-0 becomes +0).
void relu_backward(const float* dy, const float* y, int64_t n, float* dx);
// a += b.
void add_into(float* a, const float* b, int64_t n);

}  // namespace kintsugi
