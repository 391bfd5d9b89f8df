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

// One element-wise Adagrad step over n parameters, in double precision with float32 storage,
// rounding where JavaScript's Float32Array assignments round (the same bits as
// `g' = g + wd·w; s += g'²; w -= lr·g' / (√s + eps)` written over Float32Arrays):
//   g' = g + wd·w (just g when wd == 0), s = f32(s + g'²), w = f32(w − lr·g' / (√s + eps)).
// No fused multiply-adds (elementwise.cc and elementwise_avx512.cc are built with -ffp-contract=off).
void adagrad_update(float* w, const float* g, float* s, int64_t n, double lr, double eps, double wd);

}  // namespace kintsugi
