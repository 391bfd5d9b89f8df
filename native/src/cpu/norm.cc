// Batch normalisation: each channel's n * hw values lie in n runs of hw floats, one per image.
// Channels are independent, so they are the tasks the pool shares out; sums run in double over
// eight independent lanes (vectorised without reassociating any one lane's sum).
#include "kintsugi/norm.h"

#include <cmath>
#include <string>

#include "kintsugi/error.h"
#include "kintsugi/threadpool.h"

namespace kintsugi {
namespace {

constexpr int kLanes = 8;

// sum_i f(i) over [0, len) in double, in kLanes independent partial sums.
template <typename F> double lane_sum(int64_t len, F f) {
  double part[kLanes] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes)
    for (int l = 0; l < kLanes; ++l) part[l] += f(i + l);
  for (; i < len; ++i) part[0] += f(i);
  double s = 0;
  for (double p : part) s += p;
  return s;
}

// Runs fn(channel) over the channels on the pool when there is enough work to share.
template <typename F> void for_channels(const BatchNormArgs& a, F fn) {
  const int threads = a.n * a.c * a.hw >= (1 << 15) ? num_threads() : 1;
  parallel_tasks(threads, a.c, [&](int64_t ch) { fn(ch); });
}

}  // namespace

void check_batch_norm(const BatchNormArgs& a) {
  if (a.n < 0 || a.c < 1 || a.hw < 0)
    throw_expected(ErrorKind::Range, "n >= 0, c >= 1 and hw >= 0", "batch norm shape",
                   "[" + std::to_string(a.n) + ", " + std::to_string(a.c) + ", " + std::to_string(a.hw) + "]");
  if (!(a.eps > 0) || !std::isfinite(a.eps)) throw_expected(ErrorKind::Range, "a finite eps > 0", "eps", std::to_string(a.eps));
  if (!(a.momentum >= 0 && a.momentum <= 1)) throw_expected(ErrorKind::Range, "a momentum in [0, 1]", "momentum", std::to_string(a.momentum));
  if (a.training && a.n * a.hw < 2)
    throw_expected(ErrorKind::Range, "more than one value per channel in training", "batch norm input",
                   std::to_string(a.n * a.hw) + " per channel");
}

void batch_norm_forward(const BatchNormArgs& a, const float* x, const float* gamma, const float* beta, float* running_mean,
                        float* running_var, float* xhat, float* y, double* inv_std) {
  const int64_t count = a.n * a.hw, stride = a.c * a.hw;
  for_channels(a, [&](int64_t ch) {
    const float* xc = x + ch * a.hw;
    double mean, variance;
    if (a.training) {
      // Two passes: the one-pass E[x^2] - E[x]^2 loses digits when the mean is large.
      double sum = 0;
      for (int64_t b = 0; b < a.n; ++b) sum += lane_sum(a.hw, [&](int64_t i) { return double(xc[b * stride + i]); });
      mean = sum / double(count);
      double sq = 0;
      for (int64_t b = 0; b < a.n; ++b)
        sq += lane_sum(a.hw, [&](int64_t i) {
          const double d = double(xc[b * stride + i]) - mean;
          return d * d;
        });
      variance = sq / double(count);
      running_mean[ch] = float((1 - a.momentum) * double(running_mean[ch]) + a.momentum * mean);
      running_var[ch] = float((1 - a.momentum) * double(running_var[ch]) + a.momentum * variance * (double(count) / double(count - 1)));
    } else {
      mean = running_mean[ch];
      variance = running_var[ch];
    }
    const double inv = 1 / std::sqrt(variance + a.eps), g = gamma[ch], bt = beta[ch];
    inv_std[ch] = inv;
    for (int64_t b = 0; b < a.n; ++b) {
      const int64_t o = b * stride + ch * a.hw;
      for (int64_t i = 0; i < a.hw; ++i) {
        const double v = (double(x[o + i]) - mean) * inv;
        xhat[o + i] = float(v);
        y[o + i] = float(g * v + bt);
      }
    }
  });
}

void batch_norm_backward(const BatchNormArgs& a, const float* dy, const float* xhat, const float* gamma, const double* inv_std,
                         float* dgamma, float* dbeta, float* dx) {
  const int64_t count = a.n * a.hw, stride = a.c * a.hw;
  for_channels(a, [&](int64_t ch) {
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int64_t b = 0; b < a.n; ++b) {
      const int64_t o = b * stride + ch * a.hw;
      sum_dy += lane_sum(a.hw, [&](int64_t i) { return double(dy[o + i]); });
      sum_dy_xhat += lane_sum(a.hw, [&](int64_t i) { return double(dy[o + i]) * double(xhat[o + i]); });
    }
    dgamma[ch] = float(double(dgamma[ch]) + sum_dy_xhat);
    dbeta[ch] = float(double(dbeta[ch]) + sum_dy);
    const double k = double(gamma[ch]) * inv_std[ch];
    for (int64_t b = 0; b < a.n; ++b) {
      const int64_t o = b * stride + ch * a.hw;
      if (a.training) {
        // The batch mean and variance depend on every input, hence the two correction terms.
        const double m_dy = sum_dy / double(count), m_dy_xhat = sum_dy_xhat / double(count);
        for (int64_t i = 0; i < a.hw; ++i) dx[o + i] = float(k * (double(dy[o + i]) - m_dy - double(xhat[o + i]) * m_dy_xhat));
      } else {
        for (int64_t i = 0; i < a.hw; ++i) dx[o + i] = float(k * double(dy[o + i]));
      }
    }
  });
}

}  // namespace kintsugi
