// conv2d forward: every conv layer of ResNet-18, ResNet-50 (torchvision v1.5: stride on the 3x3)
// and VGG-16 at 224x224, at batch 1 and 32; layers of a net that share a shape are one row with
// their count. Peer: OpenBLAS through Caffe-style lowering (im2col per image, then cblas_sgemm;
// 1x1 stride-1 layers use the image directly). NHWC rows (a few ResNet-50 layers): our NHWC
// forward, with our NCHW forward on the same shape as the peer column.
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

void run_layer(const Layer& l, int64_t batch) {
  Context& cx = ctx();
  const kintsugi::Conv2dParams p = params_of(l, batch);
  kintsugi::check_conv2d(p);
  const int64_t ohw = p.out_h() * p.out_w();
  const bool pointwise = p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.pad_h == 0;
  const size_t set_bytes = size_t(p.input_size() + p.weight_size()) * sizeof(float);
  const int nbuf = cx.rotation(set_bytes);
  std::vector<Buffer<float>> xs, ws;
  for (int i = 0; i < nbuf; ++i) {
    xs.emplace_back(size_t(p.input_size()));
    xs.back().fill_random(3000 + uint64_t(i));
    ws.emplace_back(size_t(p.weight_size()));
    ws.back().fill_random(4000 + uint64_t(i));
  }
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
    r.params = {{"batch", double(p.n)}, {"c_in", double(p.c_in)}, {"h", double(p.h)},       {"w", double(p.w)},
                {"c_out", double(p.c_out)}, {"kh", double(p.kh)}, {"kw", double(p.kw)},     {"stride", double(p.stride_h)},
                {"pad", double(p.pad_h)},   {"count", double(l.count)}};
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
  const size_t set_bytes = size_t(pc.input_size() + pc.weight_size()) * sizeof(float);
  const int nbuf = cx.rotation(set_bytes);
  std::vector<Buffer<float>> xs, ws;
  for (int i = 0; i < nbuf; ++i) {
    xs.emplace_back(size_t(pc.input_size()));
    xs.back().fill_random(3000 + uint64_t(i));
    ws.emplace_back(size_t(pc.weight_size()));
    ws.back().fill_random(4000 + uint64_t(i));
  }
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
  return cases;
}

void conv_sums() {
  Context& cx = ctx();
  // (net, batch, threads) -> rows
  std::map<std::tuple<std::string, int64_t, int>, std::vector<const Row*>> groups;
  for (const auto& r : cx.rows) {
    if (r.section != "conv2d" || r.op != "conv2d") continue;
    int64_t batch = 0;
    for (const auto& kv : r.params)
      if (kv.first == "batch") batch = int64_t(kv.second);
    groups[{r.group, batch, r.threads}].push_back(&r);
  }
  bool header = false;
  for (const auto& [key, rows] : groups) {
    const auto& [net, batch, threads] = key;
    const int want = layers_in(net);
    if (int(rows.size()) != want) continue;  // a filter left layers out: no honest sum
    if (!header) {
      cx.section("conv2d: whole networks", "Sum over all conv layers of a network (each layer's median × its count); "
                                             "the peer column sums the peer's medians the same way.");
      header = true;
    }
    Row s;
    s.section = "conv2d";
    s.group = net;
    s.op = "conv2d sum";
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
