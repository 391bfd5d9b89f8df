// GPU rows of the bench: our GEMMs against cuBLAS (fp16, bf16, fp32, tf32) on squares and
// DeepBench shapes, conv2d layers, checksums, and parity coding against device-to-device copy
// bandwidth. Times come from CUDA events around each call, ours and the peer interleaved.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "bench.h"
#include "kintsugi/conv.h"
#include "kintsugi/cuda.h"
#include "kintsugi/device.h"

namespace kbench {
namespace {

namespace kc = kintsugi::cuda;
constexpr int kDevice = 0;

// Device memory for the duration of a case.
struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  explicit DeviceBuffer(size_t n) : ptr(kc::malloc_device(kDevice, n)), bytes(n) {}
  ~DeviceBuffer() {
    try {
      kc::free_device(kDevice, ptr);
    } catch (...) {
    }
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// Uniform values in [-1, 1) converted on the device to `t`.
void fill_random(DeviceBuffer& d, kc::DType t, size_t count, uint64_t seed) {
  Buffer<float> host(count);
  host.fill_random(seed);
  if (t == kc::DType::F32) {
    kc::copy(kDevice, d.ptr, host.data(), count * 4, kc::CopyKind::HostToDevice);
    return;
  }
  DeviceBuffer staging(count * 4);
  kc::copy(kDevice, staging.ptr, host.data(), count * 4, kc::CopyKind::HostToDevice);
  kc::convert(kc::DType::F32, staging.ptr, t, d.ptr, int64_t(count), nullptr);
  kc::synchronize_device(kDevice);
}

std::vector<float> download_f32(const DeviceBuffer& d, kc::DType t, size_t count) {
  std::vector<float> out(count);
  if (t == kc::DType::F32) {
    kc::copy(kDevice, out.data(), d.ptr, count * 4, kc::CopyKind::DeviceToHost);
    return out;
  }
  DeviceBuffer staging(count * 4);
  kc::convert(t, d.ptr, kc::DType::F32, staging.ptr, int64_t(count), nullptr);
  kc::copy(kDevice, out.data(), staging.ptr, count * 4, kc::CopyKind::DeviceToHost);
  return out;
}

// Event-timed samples, ours and the peer alternating; fast calls are batched per sample.
struct GpuTimer {
  kc::Event marks[3];
  GpuTimer() {
    for (auto& e : marks) e = kc::event_create(kDevice);
  }
  ~GpuTimer() {
    for (auto& e : marks) {
      try {
        kc::event_destroy(kDevice, e);
      } catch (...) {
      }
    }
  }
};

Stats summarize(std::vector<double>& ms, int inner) {
  Stats s;
  std::sort(ms.begin(), ms.end());
  s.reps = int(ms.size());
  s.inner = inner;
  s.min_ms = ms.front();
  s.max_ms = ms.back();
  s.median_ms = ms[ms.size() / 2];
  return s;
}

void measure_gpu(Row r, const std::function<void()>& ours, const std::string& peer_name, const std::function<void()>* peer,
                 const std::function<std::string()>& check) {
  Context& cx = ctx();
  try {
    GpuTimer t;
    ours();
    if (peer) (*peer)();
    kc::synchronize_device(kDevice);
    r.check = check ? check() : "n/a";
    // One call of each, to size the batches (at least ~0.5 ms of GPU time per sample).
    auto time_batch = [&](const std::function<void()>& f, int inner, kc::Event a, kc::Event b) {
      kc::event_record(kDevice, a, nullptr);
      for (int i = 0; i < inner; ++i) f();
      kc::event_record(kDevice, b, nullptr);
    };
    time_batch(ours, 1, t.marks[0], t.marks[1]);
    kc::event_synchronize(t.marks[1]);
    const double one = std::max(1e-4, double(kc::event_elapsed_ms(t.marks[0], t.marks[1])));
    const int inner = std::clamp(int(std::ceil(0.5 / one)), 1, 1000);
    const int reps = std::clamp(int(cx.opt.target_s * 1e3 / (2 * one * inner)), cx.opt.quick ? 3 : 5, cx.opt.quick ? 10 : 30);
    std::vector<double> a, b;
    for (int rep = 0; rep < reps; ++rep) {
      const bool peer_first = peer && (rep % 2 == 1);
      if (peer_first) time_batch(*peer, inner, t.marks[0], t.marks[1]);
      time_batch(ours, inner, peer_first ? t.marks[1] : t.marks[0], peer_first ? t.marks[2] : t.marks[1]);
      if (peer && !peer_first) time_batch(*peer, inner, t.marks[1], t.marks[2]);
      kc::event_synchronize(t.marks[peer ? 2 : 1]);
      const double first = kc::event_elapsed_ms(t.marks[0], t.marks[1]) / inner;
      if (peer) {
        const double second = kc::event_elapsed_ms(t.marks[1], t.marks[2]) / inner;
        a.push_back(peer_first ? second : first);
        b.push_back(peer_first ? first : second);
      } else {
        a.push_back(first);
      }
    }
    r.ours = summarize(a, inner);
    if (peer) {
      r.peer = peer_name;
      r.theirs = summarize(b, inner);
      r.peer_check = "ok";
    }
  } catch (const std::exception& e) {
    r.check = std::string("FAIL: error: ") + e.what();
  }
  cx.emit(std::move(r));
}

// Dense FLOP per clock per SM (FMA = 2), from NVIDIA's architecture whitepapers (V100/T4, A100,
// GA10x, AD10x, H100). TF32 is half the fp16 rate on sm_80+.
double flops_per_clock_per_sm(int major, int minor, kc::DType t, bool tf32) {
  const int cc = major * 10 + minor;
  if (t == kc::DType::F32 && !tf32) return cc == 80 ? 128 : cc >= 86 ? 256 : 128;
  // T4 65 TFLOPS at 40 SMs x 1.59 GHz; A100 312 at 108 x 1.41; A10 125 at 72 x 1.695; L4 121 at 58 x 2.04;
  // H100 SXM 989 at 132 x 1.83.
  double fp16 = cc == 75 ? 1024 : cc == 80 ? 2048 : cc == 86 || cc == 89 ? 1024 : cc >= 90 ? 4096 : NAN;
  if (t == kc::DType::BF16 && cc < 80) return NAN;
  return tf32 ? fp16 / 2 : fp16;
}

const char* dtype_label(kc::DType t, bool tf32) { return tf32 ? "tf32" : kc::dtype_name(t); }

struct Shape {
  int64_t m, n, k;
  const char* group;
};

void run_gemm(const kc::Properties& p, const Shape& s, kc::DType t, bool tf32, bool have_cublas) {
  const size_t e = kc::dtype_size(t);
  DeviceBuffer a(size_t(s.m * s.k) * e), b(size_t(s.k * s.n) * e), c(size_t(s.m * s.n) * 4), cp(size_t(s.m * s.n) * 4);
  fill_random(a, t, size_t(s.m * s.k), 1);
  fill_random(b, t, size_t(s.k * s.n), 2);
  kc::GemmArgs g;
  g.m = s.m;
  g.n = s.n;
  g.k = s.k;
  g.a = a.ptr;
  g.lda = s.k;
  g.b = b.ptr;
  g.ldb = s.n;
  g.ldc = s.n;
  g.ab = t;
  g.c_type = kc::DType::F32;
  g.tf32 = tf32;
  std::function<void()> ours = [&] {
    g.c = c.ptr;
    kc::gemm(kDevice, g, nullptr);
  };
  std::function<void()> peer = [&] {
    kc::GemmArgs h = g;
    h.c = cp.ptr;
    kc::gemm_cublas(kDevice, h, nullptr);
  };
  auto check = [&]() -> std::string {
    if (!have_cublas) return "n/a (no cuBLAS)";
    auto x = download_f32(c, kc::DType::F32, size_t(s.m * s.n)), y = download_f32(cp, kc::DType::F32, size_t(s.m * s.n));
    double worst = 0, scale = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      if (std::isnan(x[i]) != std::isnan(y[i])) return "FAIL: NaN mismatch";
      worst = std::max(worst, double(std::fabs(x[i] - y[i])));
      scale = std::max(scale, double(std::fabs(y[i])));
    }
    const double rel = worst / std::max(scale, 1e-30);
    // Both accumulate in fp32; tf32 inputs are rounded to 10 bits by each side alike.
    return rel < (tf32 ? 1e-2 : 1e-4) ? "ok" : fmt("FAIL: max rel diff %.2e vs cuBLAS", rel);
  };
  Row r;
  r.section = "cuda";
  r.group = s.group;
  r.op = std::string("gemm ") + dtype_label(t, tf32);
  r.name = s.group;
  r.shape = fmt("%ldx%ldx%ld", long(s.m), long(s.n), long(s.k));
  r.work = 2.0 * double(s.m) * double(s.n) * double(s.k);
  r.peak = p.multiprocessors * (p.sm_clock_khz * 1e3) * flops_per_clock_per_sm(p.major, p.minor, t, tf32) * 1e-9;
  r.params = {{"m", double(s.m)}, {"n", double(s.n)}, {"k", double(s.k)}};
  measure_gpu(std::move(r), ours, "cublas", have_cublas ? &peer : nullptr, check);
}

void run_conv(const kc::Properties& p, const char* name, kintsugi::Conv2dParams q, kc::DType t) {
  const size_t e = kc::dtype_size(t);
  DeviceBuffer x(size_t(q.input_size()) * e), w(size_t(q.weight_size()) * e), y(size_t(q.output_size()) * e);
  fill_random(x, t, size_t(q.input_size()), 3);
  fill_random(w, t, size_t(q.weight_size()), 4);
  std::function<void()> ours = [&] { kc::conv2d_forward(kDevice, t, q, x.ptr, w.ptr, nullptr, y.ptr, nullptr); };
  Row r;
  r.section = "cuda";
  r.group = "conv2d";
  r.op = std::string("conv2d ") + kc::dtype_name(t);
  r.name = name;
  r.shape = fmt("n%ld c%ld %ldx%ld -> %ld k%ldx%ld s%ld", long(q.n), long(q.c_in), long(q.h), long(q.w), long(q.c_out), long(q.kh), long(q.kw),
                long(q.stride_h));
  r.work = q.flops();
  r.peak = p.multiprocessors * (p.sm_clock_khz * 1e3) * flops_per_clock_per_sm(p.major, p.minor, t, false) * 1e-9;
  measure_gpu(std::move(r), ours, "", nullptr, nullptr);
}

void run_coding(const kc::Properties& p, size_t len, bool xor_code) {
  const int k = 4;
  std::vector<std::unique_ptr<DeviceBuffer>> blocks;
  std::vector<const void*> ptrs;
  for (int i = 0; i < k; ++i) {
    blocks.push_back(std::make_unique<DeviceBuffer>(len));
    fill_random(*blocks.back(), kc::DType::F32, len / 4, 10 + i);
    ptrs.push_back(blocks.back()->ptr);
  }
  DeviceBuffer parity(len), copy_dst(len), table(k * sizeof(void*));
  kc::copy(kDevice, table.ptr, ptrs.data(), k * sizeof(void*), kc::CopyKind::HostToDevice);
  std::function<void()> ours = [&] {
    if (xor_code)
      kc::xor_encode(kDevice, static_cast<const uint8_t* const*>(table.ptr), k, len, static_cast<uint8_t*>(parity.ptr), nullptr);
    else
      kc::sum_encode(kDevice, static_cast<const float* const*>(table.ptr), nullptr, k, len / 4, static_cast<float*>(parity.ptr), nullptr);
  };
  std::function<void()> peer = [&] { kc::copy_async(kDevice, copy_dst.ptr, blocks[0]->ptr, len, kc::CopyKind::DeviceToDevice, nullptr); };
  auto check = [&]() -> std::string {
    std::vector<uint8_t> host(len * (k + 1));
    for (int i = 0; i < k; ++i) kc::copy(kDevice, host.data() + i * len, blocks[i]->ptr, len, kc::CopyKind::DeviceToHost);
    kc::copy(kDevice, host.data() + k * len, parity.ptr, len, kc::CopyKind::DeviceToHost);
    for (size_t j = 0; j < len; j += 4093) {
      if (xor_code) {
        uint8_t v = 0;
        for (int i = 0; i < k; ++i) v ^= host[i * len + j];
        if (v != host[k * len + j]) return "FAIL: xor mismatch";
      }
    }
    return "ok";
  };
  Row r;
  r.section = "cuda";
  r.group = "coding";
  r.op = xor_code ? "xor_encode" : "sum_encode";
  r.name = "k=4";
  r.shape = fmt("%zu KiB blocks", len >> 10);
  r.bytes = true;
  r.work = double(len) * (k + 1);
  r.peer_work = 2.0 * double(len);
  r.peak = 2.0 * p.memory_clock_khz * 1e3 * p.memory_bus_width / 8 * 1e-9;
  measure_gpu(std::move(r), ours, "cudaMemcpy D2D", &peer, check);
}

void run_checksum(const kc::Properties& p, int64_t m, int64_t n, bool rows) {
  DeviceBuffer a(size_t(m * n) * 4), out(size_t(rows ? m : n) * 8);
  fill_random(a, kc::DType::F32, size_t(m * n), 5);
  std::function<void()> ours = [&] {
    if (rows) kc::row_sums(kDevice, static_cast<const float*>(a.ptr), m, n, n, static_cast<double*>(out.ptr), nullptr);
    else kc::col_sums(kDevice, static_cast<const float*>(a.ptr), m, n, n, static_cast<double*>(out.ptr), nullptr);
  };
  Row r;
  r.section = "cuda";
  r.group = "checksum";
  r.op = rows ? "row_sums" : "col_sums";
  r.name = "fp32 -> fp64";
  r.shape = fmt("%ldx%ld", long(m), long(n));
  r.bytes = true;
  r.work = double(m * n) * 4;
  r.peak = 2.0 * p.memory_clock_khz * 1e3 * p.memory_bus_width / 8 * 1e-9;
  measure_gpu(std::move(r), ours, "", nullptr, nullptr);
}

// DeepBench (baidu-research/DeepBench gemm_problems.h) training and inference shapes, as m x n x k.
const Shape kDeepBench[] = {
    {1760, 16, 1760, "deepbench"},  {1760, 128, 1760, "deepbench"}, {1760, 7000, 1760, "deepbench"}, {2048, 16, 2048, "deepbench"},
    {2048, 7000, 2048, "deepbench"}, {2560, 64, 2560, "deepbench"}, {2560, 7000, 2560, "deepbench"}, {4096, 7000, 4096, "deepbench"},
    {5124, 9124, 2560, "deepbench"}, {35, 8457, 2560, "deepbench"}, {7680, 5481, 2560, "deepbench"}, {3072, 1500, 128, "deepbench"},
    {512, 3000, 1536, "deepbench"},  {1024, 3000, 2048, "deepbench"}, {6144, 2048, 2560, "deepbench"}, {8448, 48000, 2816, "deepbench"},
};

}  // namespace

std::vector<Case> cuda_cases() {
  std::string why;
  if (kintsugi::cuda::device_count(&why) == 0) {
    return {{"cuda", [why] { ctx().print("GPU rows skipped: " + why + "\n"); }}};
  }
  std::vector<Case> cases;
  const kc::DType all[] = {kc::DType::F16, kc::DType::BF16, kc::DType::F32};
  for (kc::DType t : all) {
    for (bool tf32 : {false, true}) {
      if (tf32 && t != kc::DType::F32) continue;
      const std::string label = dtype_label(t, tf32);
      cases.push_back({"cuda gemm " + label + " squares", [t, tf32] {
                         kc::Properties p = kc::properties(kDevice);
                         std::string why;
                         const bool cublas = kc::cublas_available(&why);
                         if (!cublas) ctx().print("cuBLAS peer not measured: " + why + "\n");
                         for (int64_t s : {1024, 2048, 4096, 8192}) {
                           if (ctx().opt.quick && s > 4096) continue;
                           run_gemm(p, {s, s, s, "square"}, t, tf32, cublas);
                         }
                       }});
      cases.push_back({"cuda gemm " + label + " deepbench", [t, tf32] {
                         kc::Properties p = kc::properties(kDevice);
                         std::string why;
                         const bool cublas = kc::cublas_available(&why);
                         for (const Shape& s : kDeepBench) {
                           if (ctx().opt.quick && s.m * s.n * s.k > int64_t(1) << 34) continue;
                           run_gemm(p, s, t, tf32, cublas);
                         }
                       }});
    }
  }
  cases.push_back({"cuda conv2d", [] {
                     kc::Properties p = kc::properties(kDevice);
                     // ResNet-50 layers (torchvision v1.5) at batch 32.
                     struct L {
                       const char* name;
                       int64_t c, hw, k, kh, s, pad;
                     };
                     const L layers[] = {{"conv1 7x7", 3, 224, 64, 7, 2, 3},     {"layer1 1x1", 64, 56, 64, 1, 1, 0},
                                         {"layer1 3x3", 64, 56, 64, 3, 1, 1},    {"layer2 3x3 s2", 128, 56, 128, 3, 2, 1},
                                         {"layer3 3x3", 256, 14, 256, 3, 1, 1},  {"layer3 down 1x1 s2", 512, 28, 1024, 1, 2, 0},
                                         {"layer4 1x1", 2048, 7, 512, 1, 1, 0}, {"layer4 3x3", 512, 7, 512, 3, 1, 1}};
                     for (kc::DType t : {kc::DType::F16, kc::DType::F32})
                       for (const L& l : layers) {
                         kintsugi::Conv2dParams q;
                         q.n = 32;
                         q.c_in = l.c;
                         q.h = q.w = l.hw;
                         q.c_out = l.k;
                         q.kh = q.kw = l.kh;
                         q.stride_h = q.stride_w = l.s;
                         q.pad_h = q.pad_w = l.pad;
                         run_conv(p, l.name, q, t);
                       }
                   }});
  cases.push_back({"cuda coding", [] {
                     kc::Properties p = kc::properties(kDevice);
                     for (size_t len : {size_t(1) << 20, size_t(16) << 20, size_t(64) << 20}) {
                       run_coding(p, len, true);
                       run_coding(p, len, false);
                     }
                     for (bool rows : {true, false}) run_checksum(p, 8192, 8192, rows);
                   }});
  return cases;
}

}  // namespace kbench
