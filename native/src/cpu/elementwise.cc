// Elementwise kernels (see kintsugi/elementwise.h). Plain loops the compiler vectorises; arrays
// past a few hundred kilobytes are split over the pool in contiguous ranges.
#include "kintsugi/elementwise.h"

#include <cmath>
#include <cstring>

#include "kernels_internal.h"
#include "kintsugi/cpu.h"
#include "kintsugi/threadpool.h"

namespace kintsugi {
namespace {

constexpr int64_t kGrain = 1 << 16;  // elements per range: 256 KiB of each operand
constexpr int64_t kAdagradSerial = 1 << 22;

template <typename F> void ranges(int64_t n, F f) {
  if (n <= kGrain) {
    f(0, n);
    return;
  }
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) { f(b, e); });
}

}  // namespace

void relu_forward(const float* x, int64_t n, float* y) {
  ranges(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      int32_t v;
      std::memcpy(&v, x + i, 4);
      v &= ~(v >> 31);
      std::memcpy(y + i, &v, 4);
    }
  });
}

void relu_backward(const float* dy, const float* y, int64_t n, float* dx) {
  ranges(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dx[i] = dy[i] * (y[i] > 0.0f ? 1.0f : 0.0f) + 0.0f;
  });
}

void add_into(float* a, const float* b, int64_t n) {
  ranges(n, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) a[i] += b[i];
  });
}

void adagrad_update(float* w, const float* g, float* s, int64_t n, double lr, double eps, double wd) {
  // Single-threaded below a few million parameters: an optimizer step is a few megabytes of memory
  // traffic, less than a pool hand-off saves, and training's other work wants the other cores.
  auto step = [&](int64_t b, int64_t e) {
#if !defined(KINTSUGI_NO_X86_KERNELS)
    if (active_isa() == Isa::Avx512) b += detail::adagrad_update_avx512(w + b, g + b, s + b, e - b, lr, eps, wd);
#endif
    if (wd == 0.0) {
      for (int64_t i = b; i < e; ++i) {
        const double gi = g[i];
        const float si = float(double(s[i]) + gi * gi);
        s[i] = si;
        w[i] = float(double(w[i]) - lr * gi / (std::sqrt(double(si)) + eps));
      }
      return;
    }
    for (int64_t i = b; i < e; ++i) {
      const double gi = double(g[i]) + wd * double(w[i]);
      const float si = float(double(s[i]) + gi * gi);
      s[i] = si;
      w[i] = float(double(w[i]) - lr * gi / (std::sqrt(double(si)) + eps));
    }
  };
  if (n <= kAdagradSerial) {
    step(0, n);
    return;
  }
  parallel_for(n, kAdagradSerial, step);
}

}  // namespace kintsugi
