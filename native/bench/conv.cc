// conv2d forward: every conv layer of ResNet-18, ResNet-50 (torchvision v1.5: stride on the 3x3)
// and VGG-16 at 224x224, at batch 1 and 32; layers of a net that share a shape are one row with
// their count. Peer: OpenBLAS through Caffe-style lowering (im2col per image, then cblas_sgemm;
// 1x1 stride-1 layers use the image directly). NHWC rows (a few ResNet-50 layers): our NHWC
// forward, with our NCHW forward on the same shape as the peer column. Backward rows (ResNet-18):
// data (dx from dy and w) against OpenBLAS dcol = W^T·dY then col2im, and weights (dw, db from x
// and dy) against im2col then dW += dY·col^T, per image; each is checked against the peer.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <map>
#include <tuple>
#include <vector>

#include "bench.h"
#include "kintsugi/conv.h"
#include "kintsugi/threadpool.h"

namespace kbench {
namespace {

struct Layer {
  const char* net;
  const char* name;
  int count;
  int64_t c_in, hw, c_out, kernel, stride, pad;
};

// Input size is the layer's input (square); pad is kernel/2 except for 1x1.
const Layer kLayers[] = {
    // ResNet-18: 20 convs.
    {"resnet18", "conv1", 1, 3, 224, 64, 7, 2, 3},
    {"resnet18", "layer1.conv", 4, 64, 56, 64, 3, 1, 1},
    {"resnet18", "layer2.0.conv1", 1, 64, 56, 128, 3, 2, 1},
    {"resnet18", "layer2.0.downsample", 1, 64, 56, 128, 1, 2, 0},
    {"resnet18", "layer2.conv", 3, 128, 28, 128, 3, 1, 1},
    {"resnet18", "layer3.0.conv1", 1, 128, 28, 256, 3, 2, 1},
    {"resnet18", "layer3.0.downsample", 1, 128, 28, 256, 1, 2, 0},
    {"resnet18", "layer3.conv", 3, 256, 14, 256, 3, 1, 1},
    {"resnet18", "layer4.0.conv1", 1, 256, 14, 512, 3, 2, 1},
    {"resnet18", "layer4.0.downsample", 1, 256, 14, 512, 1, 2, 0},
    {"resnet18", "layer4.conv", 3, 512, 7, 512, 3, 1, 1},
    // ResNet-50: 53 convs.
    {"resnet50", "conv1", 1, 3, 224, 64, 7, 2, 3},
    {"resnet50", "layer1.0.conv1", 1, 64, 56, 64, 1, 1, 0},
    {"resnet50", "layer1.conv2", 3, 64, 56, 64, 3, 1, 1},
    {"resnet50", "layer1.conv3+downsample", 4, 64, 56, 256, 1, 1, 0},
    {"resnet50", "layer1.conv1", 2, 256, 56, 64, 1, 1, 0},
    {"resnet50", "layer2.0.conv1", 1, 256, 56, 128, 1, 1, 0},
    {"resnet50", "layer2.0.conv2", 1, 128, 56, 128, 3, 2, 1},
    {"resnet50", "layer2.0.downsample", 1, 256, 56, 512, 1, 2, 0},
    {"resnet50", "layer2.conv3", 4, 128, 28, 512, 1, 1, 0},
    {"resnet50", "layer2.conv1", 3, 512, 28, 128, 1, 1, 0},
    {"resnet50", "layer2.conv2", 3, 128, 28, 128, 3, 1, 1},
    {"resnet50", "layer3.0.conv1", 1, 512, 28, 256, 1, 1, 0},
    {"resnet50", "layer3.0.conv2", 1, 256, 28, 256, 3, 2, 1},
    {"resnet50", "layer3.0.downsample", 1, 512, 28, 1024, 1, 2, 0},
    {"resnet50", "layer3.conv3", 6, 256, 14, 1024, 1, 1, 0},
    {"resnet50", "layer3.conv1", 5, 1024, 14, 256, 1, 1, 0},
    {"resnet50", "layer3.conv2", 5, 256, 14, 256, 3, 1, 1},
    {"resnet50", "layer4.0.conv1", 1, 1024, 14, 512, 1, 1, 0},
    {"resnet50", "layer4.0.conv2", 1, 512, 14, 512, 3, 2, 1},
    {"resnet50", "layer4.0.downsample", 1, 1024, 14, 2048, 1, 2, 0},
    {"resnet50", "layer4.conv3", 3, 512, 7, 2048, 1, 1, 0},
    {"resnet50", "layer4.conv1", 2, 2048, 7, 512, 1, 1, 0},
    {"resnet50", "layer4.conv2", 2, 512, 7, 512, 3, 1, 1},
    // VGG-16: 13 convs, all 3x3 stride 1 pad 1.
    {"vgg16", "conv1_1", 1, 3, 224, 64, 3, 1, 1},
    {"vgg16", "conv1_2", 1, 64, 224, 64, 3, 1, 1},
    {"vgg16", "conv2_1", 1, 64, 112, 128, 3, 1, 1},
    {"vgg16", "conv2_2", 1, 128, 112, 128, 3, 1, 1},
    {"vgg16", "conv3_1", 1, 128, 56, 256, 3, 1, 1},
    {"vgg16", "conv3_2+3", 2, 256, 56, 256, 3, 1, 1},
    {"vgg16", "conv4_1", 1, 256, 28, 512, 3, 1, 1},
    {"vgg16", "conv4_2+3", 2, 512, 28, 512, 3, 1, 1},
    {"vgg16", "conv5_x", 3, 512, 14, 512, 3, 1, 1},
};

kintsugi::Conv2dParams params_of(const Layer& l, int64_t batch) {
  kintsugi::Conv2dParams p;
  p.n = batch;
  p.c_in = l.c_in;
  p.h = p.w = l.hw;
  p.c_out = l.c_out;
  p.kh = p.kw = l.kernel;
  p.stride_h = p.stride_w = l.stride;
  p.pad_h = p.pad_w = l.pad;
  return p;
}

// Two operands' input sets, rotated together: as many copies as cx.rotation() asks for both,
// copy i of each filled from seed + i (the same seeds give every case the same data).
struct RotatedInputs {
  int count = 0;
  std::vector<Buffer<float>> a, b;
};
RotatedInputs rotated_inputs(size_t a_floats, uint64_t a_seed, size_t b_floats, uint64_t b_seed) {
  RotatedInputs r;
  r.count = ctx().rotation((a_floats + b_floats) * sizeof(float));
  for (int i = 0; i < r.count; ++i) {
    r.a.emplace_back(a_floats);
    r.a.back().fill_random(a_seed + uint64_t(i));
    r.b.emplace_back(b_floats);
    r.b.back().fill_random(b_seed + uint64_t(i));
  }
  return r;
}

std::string shape_of(const kintsugi::Conv2dParams& p) {
  return fmt("n%ld c%ld %ldx%ld → k%ld %ldx%ld s%ld p%ld", long(p.n), long(p.c_in), long(p.h), long(p.w), long(p.c_out),
             long(p.kh), long(p.kw), long(p.stride_h), long(p.pad_h));
}

// One image's column matrix [c_in*kh*kw, oh*ow], filled in parallel over input channels.
void im2col(const kintsugi::Conv2dParams& p, const float* x, float* col) {
  const int64_t oh = p.out_h(), ow = p.out_w(), ohw = oh * ow;
  kintsugi::parallel_for(p.c_in, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t ki = 0; ki < p.kh; ++ki)
        for (int64_t kj = 0; kj < p.kw; ++kj) {
          float* dst = col + ((c * p.kh + ki) * p.kw + kj) * ohw;
          const float* xc = x + c * p.h * p.w;
          for (int64_t y = 0; y < oh; ++y) {
            const int64_t ih = y * p.stride_h - p.pad_h + ki * p.dilation_h;
            float* d = dst + y * ow;
            if (ih < 0 || ih >= p.h) {
              std::memset(d, 0, size_t(ow) * sizeof(float));
              continue;
            }
            const float* row = xc + ih * p.w;
            for (int64_t xo = 0; xo < ow; ++xo) {
              const int64_t iw = xo * p.stride_w - p.pad_w + kj * p.dilation_w;
              d[xo] = iw >= 0 && iw < p.w ? row[iw] : 0.0f;
            }
          }
        }
  });
}

// The adjoint of im2col: adds one image's column matrix [c_in*kh*kw, oh*ow] into dx (which the
// caller zeroes), in parallel over input channels (each channel's sums are its own).
void col2im(const kintsugi::Conv2dParams& p, const float* col, float* dx) {
  const int64_t oh = p.out_h(), ow = p.out_w(), ohw = oh * ow;
  kintsugi::parallel_for(p.c_in, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t ki = 0; ki < p.kh; ++ki)
        for (int64_t kj = 0; kj < p.kw; ++kj) {
          const float* src = col + ((c * p.kh + ki) * p.kw + kj) * ohw;
          float* xc = dx + c * p.h * p.w;
          for (int64_t y = 0; y < oh; ++y) {
            const int64_t ih = y * p.stride_h - p.pad_h + ki * p.dilation_h;
            if (ih < 0 || ih >= p.h) continue;
            const float* s = src + y * ow;
            float* row = xc + ih * p.w;
            for (int64_t xo = 0; xo < ow; ++xo) {
              const int64_t iw = xo * p.stride_w - p.pad_w + kj * p.dilation_w;
              if (iw >= 0 && iw < p.w) row[iw] += s[xo];
            }
          }
        }
  });
}

// Ours against another output (the peer's, or the reference's): max |a - b| over max |b|
// (< 1e-4), plus both guard zones.
std::string compare_outputs(const char* what, const Buffer<float>& ours, const Buffer<float>& peer, const char* other) {
  if (!ours.guards_ok()) return fmt("FAIL: write outside %s", what);
  if (!peer.guards_ok()) return fmt("FAIL: %s wrote outside %s", other, what);
  double diff = 0, mag = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    const double d = std::fabs(double(ours[i]) - double(peer[i]));
    diff = std::isnan(d) ? INFINITY : std::max(diff, d);
    mag = std::max(mag, std::fabs(double(peer[i])));
  }
  const double rel = diff / std::max(mag, 1e-30);
  if (!(rel < 1e-4)) return fmt("FAIL: %s of ours and the %s differ by %.2e of max|%s|", what, other, rel, what);
  return "ok";
}

// Sampled check: 256 outputs recomputed in double. The bound scales with sum |x*w|: rounding in
// fp32 stays near 1e-7 of it, a dropped term is ~1/K of it (K <= 4608 here).
std::string check_conv(const kintsugi::Conv2dParams& p, const float* x, const float* w, const Buffer<float>& y) {
  if (!y.guards_ok()) return "FAIL: write outside y";
  const int64_t oh = p.out_h(), ow = p.out_w();
  uint64_t s = 99;
  auto next = [&](int64_t mod) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return int64_t((s >> 33) % uint64_t(mod));
  };
  double worst = 0;
  for (int i = 0; i < 256; ++i) {
    const int64_t b = next(p.n), co = next(p.c_out), yo = next(oh), xo = next(ow);
    double ref = 0, bound = 0;
    for (int64_t c = 0; c < p.c_in; ++c)
      for (int64_t ki = 0; ki < p.kh; ++ki) {
        const int64_t ih = yo * p.stride_h - p.pad_h + ki;
        if (ih < 0 || ih >= p.h) continue;
        for (int64_t kj = 0; kj < p.kw; ++kj) {
          const int64_t iw = xo * p.stride_w - p.pad_w + kj;
          if (iw < 0 || iw >= p.w) continue;
          const int64_t xi = p.layout == kintsugi::ConvLayout::Nhwc ? ((b * p.h + ih) * p.w + iw) * p.c_in + c : ((b * p.c_in + c) * p.h + ih) * p.w + iw;
          const double v = double(x[xi]) * double(w[((co * p.c_in + c) * p.kh + ki) * p.kw + kj]);
          ref += v;
          bound += std::fabs(v);
        }
      }
    const double got = y[size_t(p.layout == kintsugi::ConvLayout::Nhwc ? ((b * oh + yo) * ow + xo) * p.c_out + co
                                                                        : ((b * p.c_out + co) * oh + yo) * ow + xo)];
    const double err = std::fabs(got - ref) / std::max(bound, 1e-30);
    if (!(err <= worst)) worst = std::isnan(err) ? INFINITY : std::max(worst, err);
  }
  if (!(worst <= 2e-5)) return fmt("FAIL: error %.2e of sum|x*w|", worst);
  return "ok";
}

std::vector<std::pair<std::string, double>> params_row(const kintsugi::Conv2dParams& p, int count) {
  return {{"batch", double(p.n)}, {"c_in", double(p.c_in)}, {"h", double(p.h)},       {"w", double(p.w)},
          {"c_out", double(p.c_out)}, {"kh", double(p.kh)}, {"kw", double(p.kw)},     {"stride", double(p.stride_h)},
          {"pad", double(p.pad_h)},   {"count", double(count)}};
}

void run_layer(const Layer& l, int64_t batch) {
  Context& cx = ctx();
  const kintsugi::Conv2dParams p = params_of(l, batch);
  kintsugi::check_conv2d(p);
  const int64_t ohw = p.out_h() * p.out_w();
  const bool pointwise = p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.pad_h == 0;
  RotatedInputs in = rotated_inputs(size_t(p.input_size()), 3000, size_t(p.weight_size()), 4000);
  const int nbuf = in.count;
  std::vector<Buffer<float>>& xs = in.a;
  std::vector<Buffer<float>>& ws = in.b;
  Buffer<float> y(size_t(p.output_size())), yp(size_t(p.output_size()));
  y.fill_zero();
  yp.fill_zero();
  OpenBlas& ob = openblas();
  const bool with_peer = cx.opt.peers && ob.loaded;
  Buffer<float> col(with_peer && !pointwise ? size_t(p.c_in * p.kh * p.kw * ohw) : 0);

  Call ours = [&](int64_t i) { kintsugi::conv2d_forward(p, xs[size_t(i % nbuf)].data(), ws[size_t(i % nbuf)].data(), nullptr, y.data()); };
  Call peer = [&](int64_t i) {
    const float* x = xs[size_t(i % nbuf)].data();
    const float* w = ws[size_t(i % nbuf)].data();
    const int64_t krows = p.c_in * p.kh * p.kw;
    for (int64_t b = 0; b < p.n; ++b) {
      const float* xb = x + b * p.c_in * p.h * p.w;
      const float* bm = xb;
      if (!pointwise) {
        im2col(p, xb, col.data());
        bm = col.data();
      }
      ob.sgemm(kCblasRowMajor, kCblasNoTrans, kCblasNoTrans, int(p.c_out), int(ohw), int(krows), 1.0f, w, int(krows), bm,
               int(ohw), 0.0f, yp.data() + b * p.c_out * ohw, int(ohw));
    }
  };
  Check check = [&] { return check_conv(p, xs[0].data(), ws[0].data(), y); };
  Check peer_check = [&] { return check_conv(p, xs[0].data(), ws[0].data(), yp); };

  for (int t : cx.opt.threads) {
    cx.use_threads(t);
    Row r;
    r.section = "conv2d";
    r.group = l.net;
    r.op = "conv2d";
    r.name = std::string(l.net) + "." + l.name;
    r.count = l.count;
    r.shape = shape_of(p);
    r.threads = t;
    r.buffers = nbuf;
    r.work = p.flops();
    r.params = params_row(p, l.count);
    cx.measure_and_emit(std::move(r), ours, "openblas im2col", with_peer ? &peer : nullptr, check, with_peer ? &peer_check : nullptr);
  }
}

// Backward rows. weights == false: dx from dy and w; true: dw and db from x and dy. The check runs
// the peer once (call 0) and compares; without OpenBLAS it compares with our double reference.
void run_layer_backward(const Layer& l, int64_t batch, bool weights) {
  Context& cx = ctx();
  const kintsugi::Conv2dParams p = params_of(l, batch);
  kintsugi::check_conv2d(p);
  const int64_t ohw = p.out_h() * p.out_w(), krows = p.c_in * p.kh * p.kw;
  const bool pointwise = p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.pad_h == 0;
  // The inputs: dy and (w for data, x for weights).
  const size_t other = size_t(weights ? p.input_size() : p.weight_size());
  RotatedInputs in = rotated_inputs(size_t(p.output_size()), 5000, other, weights ? 3000 : 4000);
  const int nbuf = in.count;
  std::vector<Buffer<float>>& dys = in.a;
  std::vector<Buffer<float>>& ins = in.b;
  // Outputs: dx (data) or dw and db (weights); ours and the peer's.
  const size_t out_n = size_t(weights ? p.weight_size() : p.input_size());
  Buffer<float> g(out_n), gp(out_n), db(weights ? size_t(p.c_out) : 0), dbp(weights ? size_t(p.c_out) : 0);
  g.fill_zero();
  gp.fill_zero();
  db.fill_zero();
  dbp.fill_zero();
  OpenBlas& ob = openblas();
  const bool with_peer = cx.opt.peers && ob.loaded;
  Buffer<float> col(with_peer && !pointwise ? size_t(krows * ohw) : 0);

  Call ours = [&](int64_t i) {
    const float* dy = dys[size_t(i % nbuf)].data();
    const float* in = ins[size_t(i % nbuf)].data();
    if (weights) kintsugi::conv2d_backward_weight(p, in, dy, g.data(), db.data());
    else kintsugi::conv2d_backward_data(p, dy, in, g.data());
  };
  Call peer = [&](int64_t i) {
    const float* dy = dys[size_t(i % nbuf)].data();
    const float* in = ins[size_t(i % nbuf)].data();
    if (!weights) {
      // dcol = W^T·dY, then col2im into the zeroed image (1x1 stride 1: dcol is the image).
      for (int64_t b = 0; b < p.n; ++b) {
        float* dxb = gp.data() + b * p.c_in * p.h * p.w;
        float* dcol = pointwise ? dxb : col.data();
        ob.sgemm(kCblasRowMajor, kCblasTrans, kCblasNoTrans, int(krows), int(ohw), int(p.c_out), 1.0f, in, int(krows),
                 dy + b * p.c_out * ohw, int(ohw), 0.0f, dcol, int(ohw));
        if (!pointwise) {
          std::memset(dxb, 0, size_t(p.c_in * p.h * p.w) * sizeof(float));
          col2im(p, dcol, dxb);
        }
      }
      return;
    }
    // im2col(x), then dW += dY·col^T (beta 0 on the first image); db sums dY per channel.
    for (int64_t b = 0; b < p.n; ++b) {
      const float* xb = in + b * p.c_in * p.h * p.w;
      const float* bm = xb;
      if (!pointwise) {
        im2col(p, xb, col.data());
        bm = col.data();
      }
      ob.sgemm(kCblasRowMajor, kCblasNoTrans, kCblasTrans, int(p.c_out), int(krows), int(ohw), 1.0f, dy + b * p.c_out * ohw,
               int(ohw), bm, int(ohw), b == 0 ? 0.0f : 1.0f, gp.data(), int(krows));
    }
    kintsugi::parallel_for(p.c_out, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        float sum = 0;
        for (int64_t b = 0; b < p.n; ++b) {
          const float* d = dy + (b * p.c_out + c) * ohw;
          for (int64_t j = 0; j < ohw; ++j) sum += d[j];
        }
        dbp[size_t(c)] = sum;
      }
    });
  };
  // Both sides' outputs hold call 0's result when the checks run (ours is checked before the
  // peer's first call, so our check makes that call).
  auto compare = [&]() -> std::string {
    const char* other = with_peer ? "peer" : "reference";
    std::string r = compare_outputs(weights ? "dw" : "dx", g, gp, other);
    if (r == "ok" && weights) r = compare_outputs("db", db, dbp, other);
    return r;
  };
  Check check = [&]() -> std::string {
    if (with_peer) {
      peer(0);
      return compare();
    }
    if (weights) kintsugi::conv2d_backward_weight_reference(p, ins[0].data(), dys[0].data(), gp.data(), dbp.data());
    else kintsugi::conv2d_backward_data_reference(p, dys[0].data(), ins[0].data(), gp.data());
    return compare();
  };
  Check peer_check = compare;

  for (int t : cx.opt.threads) {
    cx.use_threads(t);
    Row r;
    r.section = "conv2d";
    r.group = l.net;
    r.op = weights ? "conv2d_backward_weight" : "conv2d_backward_data";
    r.name = std::string(l.net) + "." + l.name;
    r.count = l.count;
    r.shape = shape_of(p);
    r.threads = t;
    r.buffers = nbuf;
    r.work = p.flops();
    r.params = params_row(p, l.count);
    r.params.push_back({weights ? "backward_weight" : "backward_data", 1.0});
    cx.measure_and_emit(std::move(r), ours, "openblas im2col", with_peer ? &peer : nullptr, check, with_peer ? &peer_check : nullptr);
  }
}

// Our NHWC forward against our NCHW forward on the same shape (same weights; the inputs are the
// same random values read in each layout).
void run_layer_nhwc(const Layer& l, int64_t batch) {
  Context& cx = ctx();
  const kintsugi::Conv2dParams pc = params_of(l, batch);
  kintsugi::Conv2dParams pn = pc;
  pn.layout = kintsugi::ConvLayout::Nhwc;
  kintsugi::check_conv2d(pn);
  RotatedInputs in = rotated_inputs(size_t(pc.input_size()), 3000, size_t(pc.weight_size()), 4000);
  const int nbuf = in.count;
  std::vector<Buffer<float>>& xs = in.a;
  std::vector<Buffer<float>>& ws = in.b;
  Buffer<float> y(size_t(pc.output_size())), yp(size_t(pc.output_size()));
  y.fill_zero();
  yp.fill_zero();
  Call ours = [&](int64_t i) { kintsugi::conv2d_forward(pn, xs[size_t(i % nbuf)].data(), ws[size_t(i % nbuf)].data(), nullptr, y.data()); };
  Call peer = [&](int64_t i) { kintsugi::conv2d_forward(pc, xs[size_t(i % nbuf)].data(), ws[size_t(i % nbuf)].data(), nullptr, yp.data()); };
  Check check = [&] { return check_conv(pn, xs[0].data(), ws[0].data(), y); };
  Check peer_check = [&] { return check_conv(pc, xs[0].data(), ws[0].data(), yp); };
  for (int t : cx.opt.threads) {
    cx.use_threads(t);
    Row r;
    r.section = "conv2d";
    r.group = l.net;
    r.op = "conv2d nhwc";
    r.name = std::string(l.net) + "." + l.name + " (NHWC)";
    r.count = l.count;
    r.shape = shape_of(pn) + " NHWC";
    r.threads = t;
    r.buffers = nbuf;
    r.work = pn.flops();
    r.params = {{"batch", double(pn.n)}, {"c_in", double(pn.c_in)}, {"h", double(pn.h)},       {"w", double(pn.w)},
                {"c_out", double(pn.c_out)}, {"kh", double(pn.kh)}, {"kw", double(pn.kw)},     {"stride", double(pn.stride_h)},
                {"pad", double(pn.pad_h)},   {"count", double(l.count)}, {"nhwc", 1.0}};
    cx.measure_and_emit(std::move(r), ours, "kintsugi NCHW", &peer, check, &peer_check);
  }
}

// The ResNet-50 layers that get an NHWC row: the stem, 3x3 at each stage's size, 1x1 in and
// out, a strided 1x1 downsample.
bool nhwc_row(const Layer& l) {
  static const char* names[] = {"conv1", "layer1.conv2", "layer1.conv3+downsample", "layer2.0.downsample", "layer2.conv2",
                                "layer3.conv1", "layer3.conv2", "layer4.conv2"};
  if (std::string(l.net) != "resnet50") return false;
  for (const char* n : names)
    if (std::string(l.name) == n) return true;
  return false;
}

int layers_in(const std::string& net) {
  int n = 0;
  for (const auto& l : kLayers)
    if (net == l.net) ++n;
  return n;
}

}  // namespace

std::vector<Case> conv_cases() {
  const Options& opt = ctx().opt;
  std::vector<Case> cases;
  for (int64_t batch : opt.batches)
    for (const auto& l : kLayers) {
      const std::string name = fmt("conv2d/%s/%s n=%ld", l.net, l.name, long(batch));
      const Layer* lp = &l;
      cases.push_back({name, [lp, batch] { run_layer(*lp, batch); }});
    }
  for (int64_t batch : opt.batches)
    for (const auto& l : kLayers) {
      if (!nhwc_row(l)) continue;
      const std::string name = fmt("conv2d/nhwc/%s/%s n=%ld", l.net, l.name, long(batch));
      const Layer* lp = &l;
      cases.push_back({name, [lp, batch] { run_layer_nhwc(*lp, batch); }});
    }
  for (int64_t batch : opt.batches)
    for (const auto& l : kLayers) {
      if (std::string(l.net) != "resnet18") continue;
      const Layer* lp = &l;
      for (bool weights : {false, true}) {
        const std::string name = fmt("conv2d/%s/%s/%s n=%ld", weights ? "backward_weight" : "backward_data", l.net, l.name, long(batch));
        cases.push_back({name, [lp, batch, weights] { run_layer_backward(*lp, batch, weights); }});
      }
    }
  return cases;
}

void conv_sums() {
  Context& cx = ctx();
  // (op, net, batch, threads) -> rows; the forward ("conv2d") sorts before the backward ops.
  std::map<std::tuple<std::string, std::string, int64_t, int>, std::vector<const Row*>> groups;
  for (const auto& r : cx.rows) {
    if (r.section != "conv2d" ||
        (r.op != "conv2d" && r.op != "conv2d_backward_data" && r.op != "conv2d_backward_weight"))
      continue;
    int64_t batch = 0;
    for (const auto& kv : r.params)
      if (kv.first == "batch") batch = int64_t(kv.second);
    groups[{r.op, r.group, batch, r.threads}].push_back(&r);
  }
  bool header = false;
  for (const auto& [key, rows] : groups) {
    const auto& [op, net, batch, threads] = key;
    const int want = layers_in(net);
    if (int(rows.size()) != want) continue;  // a filter left layers out: no honest sum
    if (!header) {
      cx.section("conv2d: whole networks", "Sum over all conv layers of a network, per op (each layer's median × its count); "
                                             "the peer column sums the peer's medians the same way.");
      header = true;
    }
    Row s;
    s.section = "conv2d";
    s.group = net;
    s.op = op + " sum";
    int convs = 0;
    double med = 0, mn = 0, mx = 0, pmed = 0, work = 0;
    bool ok = true, peer_ok = true, has_peer = true;
    for (const Row* r : rows) {
      convs += r->count;
      med += r->count * r->ours.median_ms;
      mn += r->count * r->ours.min_ms;
      mx += r->count * r->ours.max_ms;
      work += r->count * r->work;
      if (r->peer.empty()) has_peer = false;
      else pmed += r->count * r->theirs.median_ms;
      if (r->check != "ok") ok = false;
      if (!r->peer_check.empty() && r->peer_check != "ok") peer_ok = false;
    }
    s.name = fmt("sum over all %s convs (%d)", net.c_str(), convs);
    s.shape = fmt("batch %ld, 224x224", long(batch));
    s.threads = threads;
    s.ours.median_ms = med;
    s.ours.min_ms = mn;
    s.ours.max_ms = mx;
    s.work = work;
    s.check = ok ? "ok" : "FAIL: a layer failed";
    if (has_peer) {
      s.peer = rows.front()->peer;
      s.theirs.median_ms = pmed;
      s.peer_check = peer_ok ? "ok" : "FAIL";
    }
    s.params = {{"batch", double(batch)}, {"convs", double(convs)}};
    cx.emit(std::move(s));
  }
}

}  // namespace kbench
