// Batch normalisation over the channels of an NCHW tensor, forward and backward.
#pragma once
#include <cstdint>

namespace kintsugi {

struct BatchNormArgs {
  int64_t n = 0, c = 0, hw = 0;  // x is [n, c, hw]
  double eps = 1e-5;             // added to the variance
  double momentum = 0.1;         // running stats: r = (1 - momentum) r + momentum * batch stat
  bool training = true;          // batch statistics (and running-stat updates) or the running ones
};

// Throws Range errors for bad shapes, eps <= 0, momentum outside [0, 1], or a training batch with
// one value per channel.
void check_batch_norm(const BatchNormArgs& args);

// Per channel: mean and (biased) variance over n * hw values in double, two passes (training), or
// the running ones; inv_std = 1 / sqrt(var + eps); xhat = (x - mean) * inv_std; y = gamma * xhat +
// beta. Training also updates running_mean and running_var (unbiased variance). xhat and y are
// written whole; inv_std has c entries.
void batch_norm_forward(const BatchNormArgs& args, const float* x, const float* gamma, const float* beta, float* running_mean,
                        float* running_var, float* xhat, float* y, double* inv_std);

// The backward of batch_norm_forward from its xhat and inv_std: dgamma += sum dy * xhat, dbeta +=
// sum dy (per channel, in double), and dx (written whole) = gamma * inv_std * (dy - mean(dy) -
// xhat * mean(dy * xhat)) with batch statistics, gamma * inv_std * dy with running ones.
void batch_norm_backward(const BatchNormArgs& args, const float* dy, const float* xhat, const float* gamma, const double* inv_std,
                         float* dgamma, float* dbeta, float* dx);

}  // namespace kintsugi
