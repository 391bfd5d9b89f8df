// 2-D convolution, forward and backward (data, weights, bias), on NCHW or NHWC activations
// (Conv2dParams::layout) with [C_out, C_in/groups, KH, KW] weights in both layouts. Outputs are
// overwritten, never accumulated.
#pragma once
#include <cstdint>

namespace kintsugi {

// Nchw: x [N, C_in, H, W], y [N, C_out, OH, OW]. Nhwc: x [N, H, W, C_in], y [N, OH, OW, C_out]
// (dx like x, dy like y). Tensor sizes are the same in both.
enum class ConvLayout { Nchw, Nhwc };

struct Conv2dParams {
  int64_t n = 1, c_in = 1, h = 1, w = 1;     // input
  int64_t c_out = 1, kh = 1, kw = 1;          // filters
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  ConvLayout layout = ConvLayout::Nchw;

  int64_t out_h() const { return (h + 2 * pad_h - dilation_h * (kh - 1) - 1) / stride_h + 1; }
  int64_t out_w() const { return (w + 2 * pad_w - dilation_w * (kw - 1) - 1) / stride_w + 1; }
  int64_t input_size() const { return n * c_in * h * w; }
  int64_t weight_size() const { return c_out * (c_in / groups) * kh * kw; }
  int64_t output_size() const { return n * c_out * out_h() * out_w(); }
  // Multiply-adds x 2 of the forward pass.
  double flops() const { return 2.0 * double(output_size()) * double(c_in / groups) * double(kh * kw); }
};

// Throws Range errors for non-positive sizes, groups that do not divide the channels, or an
// empty output (kernel larger than the padded input).
void check_conv2d(const Conv2dParams& p);

void conv2d_forward(const Conv2dParams& p, const float* x, const float* w, const float* bias /*nullable*/,
                    float* y);
// Weights reordered once for repeated forward passes (what an inference runtime does with
// constant initializers). The packed buffer starts with a small header naming its layout and the
// weight shape; the layout depends on the ISA active when packing and on c_out, c_in/groups, kh,
// kw and groups only, so one packed buffer serves any input size, stride, padding and dilation.
// Buffers are packed for one layout (p.layout): NHWC buffers hold the GEMM panels of the
// reordered weights W'[(kh, kw, c) x C_out] per group.
int64_t conv2d_packed_weights_size(const Conv2dParams& p);
void conv2d_pack_weights(const Conv2dParams& p, const float* w, float* packed);
// Throws Range errors when `packed` was made for another weight shape.
void conv2d_forward_packed(const Conv2dParams& p, const float* x, const float* packed, const float* bias /*nullable*/,
                           float* y);

void conv2d_backward_data(const Conv2dParams& p, const float* dy, const float* w, float* dx);
void conv2d_backward_weight(const Conv2dParams& p, const float* x, const float* dy, float* dw,
                            float* db /*nullable*/);

// Direct loops with double accumulation: the oracle for tests.
void conv2d_forward_reference(const Conv2dParams& p, const float* x, const float* w, const float* bias, float* y);
void conv2d_backward_data_reference(const Conv2dParams& p, const float* dy, const float* w, float* dx);
void conv2d_backward_weight_reference(const Conv2dParams& p, const float* x, const float* dy, float* dw, float* db);

}  // namespace kintsugi
