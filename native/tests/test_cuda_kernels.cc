// The CUDA kernels other than GEMM against the CPU implementations: dtype conversion, conv2d
// (forward, backward data, backward weight + bias) in float32 and float16, checksums, parity
// coding and embedding bags. Without a GPU (or a CUDA build) it prints "skipped: <why>".
//
// Tolerances: conv fp32 as the CPU conv test (1e-6 * L absolute + 1e-5 relative against the
// double-accumulating reference, L the reduction length). conv fp16 takes inputs that fp16 holds
// exactly, so the only extra error is the output's rounding to fp16 (half an ulp, 2^-11 relative,
// 2^-25 absolute below the normal range): 1e-6 * L + 2^-24 absolute + 2^-10 relative. Checksums
// accumulate in double: 1e-12 relative to the sum of |terms|. XOR and the float sums
// (exact products accumulated in double, one rounding) are compared bit for bit, as is the
// embedding forward (the CPU's operation order without fused multiply-adds); the backward's atomic
// adds may reorder the adds to a repeated row, so it gets 1e-5 relative + 1e-6 * adds absolute.
// Every output is poisoned (NaN / 0xff bytes) with a guard tail beyond it that must survive.
#include <cstring>
#include <limits>
#include <memory>

#include "harness.h"
#include "kintsugi/checksum.h"
#include "kintsugi/conv.h"
#include "kintsugi/cuda.h"
#include "kintsugi/device.h"
#include "kintsugi/embedding.h"
#include "kintsugi/error.h"
#include "kintsugi/parity.h"

namespace cu = kintsugi::cuda;
using kintsugi::Conv2dParams;
using kintsugi::ErrorKind;

namespace {

constexpr int kDev = 0;
constexpr size_t kGuardBytes = 64;
constexpr uint8_t kGuardByte = 0xA5;

// Device buffer of `bytes` + a guard tail; filled with 0xff (NaN in float32 / float16) so every
// element the kernel should write is checked.
struct DevBuf {
  uint8_t* p = nullptr;
  size_t bytes = 0;
  explicit DevBuf(size_t b) : bytes(b) {
    p = static_cast<uint8_t*>(cu::malloc_device(kDev, b + kGuardBytes));
    std::vector<uint8_t> init(b + kGuardBytes, 0xff);
    std::memset(init.data() + b, kGuardByte, kGuardBytes);
    cu::copy(kDev, p, init.data(), init.size(), cu::CopyKind::HostToDevice);
  }
  ~DevBuf() { cu::free_device(kDev, p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  template <typename T> T* as(size_t byte_offset = 0) const { return reinterpret_cast<T*>(p + byte_offset); }
  template <typename T> void upload(const std::vector<T>& v, size_t byte_offset = 0) {
    cu::copy(kDev, p + byte_offset, v.data(), v.size() * sizeof(T), cu::CopyKind::HostToDevice);
  }
  template <typename T> std::vector<T> download(size_t count, size_t byte_offset = 0) const {
    cu::synchronize_device(kDev);
    std::vector<T> v(count);
    cu::copy(kDev, v.data(), p + byte_offset, count * sizeof(T), cu::CopyKind::DeviceToHost);
    return v;
  }
  bool guard_intact() const {
    cu::synchronize_device(kDev);
    std::vector<uint8_t> g(kGuardBytes);
    cu::copy(kDev, g.data(), p + bytes, kGuardBytes, cu::CopyKind::DeviceToHost);
    for (uint8_t b : g)
      if (b != kGuardByte) return false;
    return true;
  }
};

template <typename T> std::unique_ptr<DevBuf> upload(const std::vector<T>& v) {
  auto d = std::make_unique<DevBuf>(v.size() * sizeof(T));
  d->upload(v);
  return d;
}

// ---- host float16 / bfloat16, round to nearest even ----
uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t f2h(float f) {
  const uint32_t x = bits(f), sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return uint16_t(sign | 0x7e00u);
  if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // 65520 and up round to infinity
  if (ax < 0x38800000u) {                                   // below 2^-14: a denormal (or zero)
    const int e = int(ax >> 23);
    if (e == 0) return uint16_t(sign);
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const int shift = 126 - e;
    if (shift >= 32) return uint16_t(sign);
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = (ax - 0x38000000u) >> 13;
  const uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1))) ++r;
  return uint16_t(sign | r);
}
float h2f(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {
    const float v = std::ldexp(float(m), -24);
    return sign ? -v : v;
  }
  if (e == 31) return from_bits(sign | 0x7f800000u | (m << 13));
  return from_bits(sign | ((e + 112) << 23) | (m << 13));
}
uint16_t f2bf(float f) {
  const uint32_t x = bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
float bf2f(uint16_t b) { return from_bits(uint32_t(b) << 16); }
bool is_nan_h(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu); }
bool is_nan_bf(uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x7fu); }

// ---- conversion ----

std::vector<float> conversion_inputs() {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> v = {0.0f, -0.0f, inf, -inf, nan, -nan, 1.0f, -1.0f, 65504.0f, 65519.0f, 65520.0f, 65536.0f,
                          1e-8f, -1e-8f, 5.96e-8f, 2.98e-8f, 2.9802322e-8f, 6.1035156e-5f, 6.1e-5f, 1e-40f, -1e-45f,
                          3.0e38f, -3.4028235e38f, 1.0009765625f, 1.00048828125f, 1.00146484375f, 0.1f, 1.0f / 3.0f};
  for (int e = -30; e <= 20; ++e) v.push_back(std::ldexp(1.0f + 1.0f / 2048.0f, e));  // halfway cases
  std::mt19937 rng(7);
  for (int i = 0; i < 4000; ++i) v.push_back(from_bits(uint32_t(rng())));  // any bit pattern
  for (int i = 0; i < 4000; ++i) v.push_back(std::ldexp(std::uniform_real_distribution<float>(-1, 1)(rng), int(rng() % 50) - 30));
  return v;
}

void check_f32_to(cu::DType to, const std::vector<float>& in, size_t elem_offset) {
  const size_t n = in.size();
  DevBuf src((n + elem_offset) * 4), dst((n + elem_offset) * 2);
  src.upload(in, elem_offset * 4);
  cu::convert(cu::DType::F32, src.as<float>(elem_offset * 4), to, dst.as<uint16_t>(elem_offset * 2), int64_t(n), nullptr);
  const auto got = dst.download<uint16_t>(n, elem_offset * 2);
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < n; ++i) {
    const bool ok = to == cu::DType::F16 ? (std::isnan(in[i]) ? is_nan_h(got[i]) : got[i] == f2h(in[i]))
                                         : (std::isnan(in[i]) ? is_nan_bf(got[i]) : got[i] == f2bf(in[i]));
    if (!ok && bad++ == 0) first = i;
  }
  CHECK(bad == 0) << "float32 -> " << cu::dtype_name(to) << ": " << bad << " wrong, first at " << first << " (" << in[first]
                  << " -> 0x" << std::hex << got[first] << ")";
  CHECK(dst.guard_intact()) << "convert wrote past its output";
}

TEST(convert_rounds_to_nearest_even_and_keeps_specials) {
  const auto in = conversion_inputs();
  for (size_t off : {size_t(0), size_t(1)})  // vector path, then misaligned (scalar) path
    for (size_t len : {in.size(), size_t(1), size_t(3), size_t(5), in.size() - 3}) {
      std::vector<float> part(in.begin(), in.begin() + long(len));
      check_f32_to(cu::DType::F16, part, off);
      check_f32_to(cu::DType::BF16, part, off);
    }
}

TEST(convert_widening_and_16_bit_cross_conversion_is_exact_for_every_pattern) {
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = uint16_t(i);
  for (cu::DType from : {cu::DType::F16, cu::DType::BF16}) {
    auto widen = [&](uint16_t b) { return from == cu::DType::F16 ? h2f(b) : bf2f(b); };
    for (size_t off : {size_t(0), size_t(1)}) {
      DevBuf src((all.size() + off) * 2), f32((all.size() + off) * 4), other((all.size() + off) * 2);
      src.upload(all, off * 2);
      cu::convert(from, src.as<uint16_t>(off * 2), cu::DType::F32, f32.as<float>(off * 4), int64_t(all.size()), nullptr);
      const cu::DType to = from == cu::DType::F16 ? cu::DType::BF16 : cu::DType::F16;
      cu::convert(from, src.as<uint16_t>(off * 2), to, other.as<uint16_t>(off * 2), int64_t(all.size()), nullptr);
      const auto wide = f32.download<float>(all.size(), off * 4);
      const auto cross = other.download<uint16_t>(all.size(), off * 2);
      size_t bad_wide = 0, bad_cross = 0;
      for (size_t i = 0; i < all.size(); ++i) {
        const float want = widen(all[i]);
        if (std::isnan(want) ? !std::isnan(wide[i]) : bits(want) != bits(wide[i])) ++bad_wide;
        const bool cross_ok = to == cu::DType::F16 ? (std::isnan(want) ? is_nan_h(cross[i]) : cross[i] == f2h(want))
                                                   : (std::isnan(want) ? is_nan_bf(cross[i]) : cross[i] == f2bf(want));
        if (!cross_ok) ++bad_cross;
      }
      CHECK(bad_wide == 0) << cu::dtype_name(from) << " -> float32: " << bad_wide << " wrong";
      CHECK(bad_cross == 0) << cu::dtype_name(from) << " -> " << cu::dtype_name(to) << ": " << bad_cross << " wrong";
      CHECK(f32.guard_intact() && other.guard_intact()) << "convert wrote past its output";
    }
  }
  // Same dtype is a copy; an empty conversion does nothing; bad arguments are rejected.
  DevBuf a(8), b(8);
  a.upload(std::vector<uint16_t>{1, 2, 3, 4});
  cu::convert(cu::DType::F16, a.as<void>(), cu::DType::F16, b.as<void>(), 4, nullptr);
  CHECK((b.download<uint16_t>(4) == std::vector<uint16_t>{1, 2, 3, 4}));
  cu::convert(cu::DType::F32, nullptr, cu::DType::F16, nullptr, 0, nullptr);
  CHECK_THROWS_KIND(cu::convert(cu::DType::F32, a.as<void>(), cu::DType::F16, b.as<void>(), -1, nullptr), ErrorKind::Range);
  CHECK_THROWS_KIND(cu::convert(cu::DType::F32, nullptr, cu::DType::F16, b.as<void>(), 1, nullptr), ErrorKind::Type);
}

// ---- conv2d ----

Conv2dParams make(int64_t n, int64_t c_in, int64_t h, int64_t w, int64_t c_out, int64_t kh, int64_t kw, int64_t sh = 1,
                  int64_t sw = 1, int64_t ph = 0, int64_t pw = 0, int64_t dh = 1, int64_t dw = 1, int64_t groups = 1) {
  Conv2dParams p;
  p.n = n, p.c_in = c_in, p.h = h, p.w = w, p.c_out = c_out, p.kh = kh, p.kw = kw;
  p.stride_h = sh, p.stride_w = sw, p.pad_h = ph, p.pad_w = pw, p.dilation_h = dh, p.dilation_w = dw, p.groups = groups;
  return p;
}

std::string describe(const Conv2dParams& p) {
  std::ostringstream s;
  s << "n=" << p.n << " c_in=" << p.c_in << " h=" << p.h << " w=" << p.w << " c_out=" << p.c_out << " k=" << p.kh << "x"
    << p.kw << " stride=" << p.stride_h << "," << p.stride_w << " pad=" << p.pad_h << "," << p.pad_w
    << " dil=" << p.dilation_h << "," << p.dilation_w << " groups=" << p.groups;
  return s.str();
}

std::vector<Conv2dParams> conv_shapes() {
  return {
      make(1, 1, 1, 1, 1, 1, 1),                           // 1x1 everything
      make(2, 8, 5, 7, 6, 1, 1),                           // pointwise
      make(2, 4, 9, 9, 5, 1, 1, 2, 2),                     // 1x1 stride 2
      make(2, 3, 7, 9, 4, 3, 3, 1, 1, 1, 1),               // 3x3 pad 1
      make(2, 3, 23, 21, 8, 7, 7, 2, 2, 3, 3),             // 7x7 stride 2 (a network stem)
      make(2, 6, 7, 7, 10, 3, 3, 2, 1, 1, 1, 1, 1, 2),     // groups 2
      make(2, 5, 8, 9, 5, 3, 3, 1, 1, 1, 1, 1, 1, 5),      // depthwise
      make(1, 4, 9, 10, 4, 3, 5, 2, 2, 2, 1, 1, 1, 4),     // depthwise strided, asymmetric kernel
      make(1, 3, 6, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 3),      // channel multiplier 2 (tiled path)
      make(1, 3, 9, 8, 4, 3, 3, 1, 1, 2, 2, 2, 2),         // dilation 2
      make(1, 7, 13, 11, 5, 4, 2, 3, 1, 1, 0, 2, 2),       // odd everything
      make(3, 5, 11, 13, 70, 3, 3, 1, 1, 1, 1),            // batch 3, c_out not a multiple of the tile
      make(2, 20, 17, 15, 130, 3, 3, 2, 2, 1, 1),          // several channel tiles, K over many slices
      make(1, 2, 3, 4, 3, 2, 2, 1, 1, 2, 3),               // padding >= kernel
      make(1, 3, 5, 5, 2, 5, 5),                           // kernel = whole input
      make(2, 16, 40, 40, 24, 3, 3, 1, 1, 1, 1),           // split pixel reduction in backward weight
      make(4, 64, 16, 16, 8, 1, 1),                        // long reduction, few outputs
      make(2, 32, 12, 12, 32, 3, 3, 1, 1, 1, 1, 1, 1, 32), // depthwise, larger
  };
}

// Each output against the double reference; `half` rounds the reference inputs to fp16 first.
void expect_close(const char* what, const Conv2dParams& p, const std::vector<float>& got, const std::vector<float>& want,
                  double reduction, bool half) {
  size_t where = 0;
  const double atol = 1e-6 * reduction + (half ? std::ldexp(1.0, -24) : 0.0), rtol = half ? std::ldexp(1.0, -10) : 1e-5;
  const double err = harness::worst_error(got.data(), want.data(), got.size(), atol, rtol, &where);
  CHECK(err <= 1.0) << what << (half ? " fp16 " : " fp32 ") << describe(p) << " worst error " << err << " at " << where
                    << ": got " << got[where] << " want " << want[where];
}

// Host values as stored on the device (fp16 rounds, then widens back) and their device buffer.
struct Tensor {
  std::vector<float> host;
  std::unique_ptr<DevBuf> dev;
};
Tensor make_tensor(size_t n, uint32_t seed, bool half) {
  Tensor t;
  t.host = harness::random_floats(n, seed);
  if (half) {
    std::vector<uint16_t> h(n);
    for (size_t i = 0; i < n; ++i) {
      h[i] = f2h(t.host[i]);
      t.host[i] = h2f(h[i]);
    }
    t.dev = upload(h);
  } else {
    t.dev = upload(t.host);
  }
  return t;
}
std::vector<float> fetch(const DevBuf& b, size_t n, bool half) {
  if (!half) return b.download<float>(n);
  const auto h = b.download<uint16_t>(n);
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = h2f(h[i]);
  return f;
}

void check_conv(const Conv2dParams& p, uint32_t seed, bool half, bool with_bias) {
  const cu::DType t = half ? cu::DType::F16 : cu::DType::F32;
  const size_t es = half ? 2 : 4;
  const size_t xs = size_t(p.input_size()), ws = size_t(p.weight_size()), ys = size_t(p.output_size()), cs = size_t(p.c_out);
  Tensor x = make_tensor(xs, seed, half), w = make_tensor(ws, seed + 1, half), b = make_tensor(cs, seed + 2, half),
         dy = make_tensor(ys, seed + 3, half);
  const double cg = double(p.c_in / p.groups), kg = double(p.c_out / p.groups), kk = double(p.kh * p.kw);

  DevBuf y(ys * es);
  cu::conv2d_forward(kDev, t, p, x.dev->p, w.dev->p, with_bias ? b.dev->p : nullptr, y.p, nullptr);
  std::vector<float> y_ref(ys);
  kintsugi::conv2d_forward_reference(p, x.host.data(), w.host.data(), with_bias ? b.host.data() : nullptr, y_ref.data());
  expect_close("forward", p, fetch(y, ys, half), y_ref, cg * kk + 1, half);
  CHECK(y.guard_intact()) << "forward wrote past y: " << describe(p);

  DevBuf dx(xs * es);
  cu::conv2d_backward_data(kDev, t, p, dy.dev->p, w.dev->p, dx.p, nullptr);
  std::vector<float> dx_ref(xs);
  kintsugi::conv2d_backward_data_reference(p, dy.host.data(), w.host.data(), dx_ref.data());
  expect_close("backward_data", p, fetch(dx, xs, half), dx_ref, kg * kk, half);
  CHECK(dx.guard_intact()) << "backward_data wrote past dx: " << describe(p);

  DevBuf dw(ws * es), db(cs * es);
  cu::conv2d_backward_weight(kDev, t, p, x.dev->p, dy.dev->p, dw.p, with_bias ? db.p : nullptr, nullptr);
  std::vector<float> dw_ref(ws), db_ref(cs);
  kintsugi::conv2d_backward_weight_reference(p, x.host.data(), dy.host.data(), dw_ref.data(), db_ref.data());
  const double nq = double(p.n * p.out_h() * p.out_w());
  expect_close("backward_weight", p, fetch(dw, ws, half), dw_ref, nq, half);
  if (with_bias) expect_close("backward_bias", p, fetch(db, cs, half), db_ref, nq, half);
  CHECK(dw.guard_intact() && db.guard_intact()) << "backward_weight wrote past dw/db: " << describe(p);
}

TEST(conv2d_fp32_matches_reference) {
  uint32_t seed = 100;
  for (const auto& p : conv_shapes()) {
    check_conv(p, seed += 10, false, true);
    check_conv(p, seed += 10, false, false);
  }
}

TEST(conv2d_fp16_matches_reference_within_output_rounding) {
  uint32_t seed = 900;
  for (const auto& p : conv_shapes()) check_conv(p, seed += 10, true, true);
}

TEST(conv2d_random_shapes) {
  std::mt19937 rng(42);
  auto r = [&](int lo, int hi) { return int64_t(std::uniform_int_distribution<int>(lo, hi)(rng)); };
  for (int t = 0; t < 40;) {
    const int64_t groups = r(1, 3);
    const Conv2dParams p = make(r(1, 3), groups * r(1, 3), r(1, 12), r(1, 12), groups * r(1, 3), r(1, 4), r(1, 4), r(1, 3),
                                r(1, 3), r(0, 3), r(0, 3), r(1, 2), r(1, 2), groups);
    if (p.h + 2 * p.pad_h < p.dilation_h * (p.kh - 1) + 1 || p.w + 2 * p.pad_w < p.dilation_w * (p.kw - 1) + 1) continue;
    check_conv(p, 3000 + uint32_t(t) * 7, t % 3 == 0, t % 2 == 0);
    ++t;
  }
}

TEST(conv2d_empty_batch_bf16_and_bad_arguments) {
  const Conv2dParams p = make(0, 4, 5, 5, 3, 3, 3, 1, 1, 1, 1);
  DevBuf dw(size_t(p.weight_size()) * 4), db(12);
  cu::conv2d_backward_weight(kDev, cu::DType::F32, p, nullptr, nullptr, dw.p, db.p, nullptr);
  for (float v : dw.download<float>(size_t(p.weight_size()))) CHECK(v == 0.0f) << "empty batch: dw not zeroed";
  for (float v : db.download<float>(3)) CHECK(v == 0.0f) << "empty batch: db not zeroed";
  const Conv2dParams q = make(1, 4, 5, 5, 3, 3, 3);
  DevBuf x(size_t(q.input_size()) * 4), w(size_t(q.weight_size()) * 4), y(size_t(q.output_size()) * 4);
  CHECK_THROWS_KIND(cu::conv2d_forward(kDev, cu::DType::BF16, q, x.p, w.p, nullptr, y.p, nullptr), ErrorKind::Unsupported);
  CHECK_THROWS_KIND(cu::conv2d_forward(kDev, cu::DType::F32, make(1, 4, 5, 5, 3, 3, 3, 1, 1, 0, 0, 1, 1, 2), x.p, w.p, nullptr, y.p,
                                       nullptr),
                    ErrorKind::Range);  // groups do not divide the channels
  CHECK_THROWS_KIND(cu::conv2d_forward(kDev, cu::DType::F32, q, nullptr, w.p, nullptr, y.p, nullptr), ErrorKind::Type);
}

// ---- checksums ----

TEST(checksums_match_cpu) {
  struct Shape {
    int64_t m, n, ld;
  };
  for (Shape s : {Shape{1, 1, 1}, Shape{7, 33, 40}, Shape{1000, 3, 3}, Shape{3, 5000, 5001}, Shape{4097, 129, 130},
                  Shape{100000, 5, 8}, Shape{300, 1000, 1000}, Shape{0, 9, 9}, Shape{6, 0, 1}}) {
    const size_t size = size_t(s.m > 0 ? (s.m - 1) * s.ld + s.n : 0);
    const auto a = harness::random_floats(std::max<size_t>(size, 1), uint32_t(s.m * 31 + s.n));
    auto da = upload(a);
    std::vector<double> rows(size_t(s.m)), cols(size_t(s.n));
    kintsugi::row_sums<float>(a.data(), s.m, s.n, s.ld, rows.data());
    kintsugi::col_sums<float>(a.data(), s.m, s.n, s.ld, cols.data());
    DevBuf dr(size_t(s.m) * 8), dc(size_t(s.n) * 8);
    cu::row_sums(kDev, da->as<float>(), s.m, s.n, s.ld, dr.as<double>(), nullptr);
    cu::col_sums(kDev, da->as<float>(), s.m, s.n, s.ld, dc.as<double>(), nullptr);
    const auto gr = dr.download<double>(size_t(s.m)), gc = dc.download<double>(size_t(s.n));
    // |terms| <= 1, so 1e-12 relative to the term count bounds a correct sum's difference.
    for (int64_t i = 0; i < s.m; ++i)
      CHECK(std::fabs(gr[size_t(i)] - rows[size_t(i)]) <= 1e-12 * double(std::max<int64_t>(s.n, 1)))
          << "row_sums " << s.m << "x" << s.n << " row " << i << ": " << gr[size_t(i)] << " vs " << rows[size_t(i)];
    for (int64_t j = 0; j < s.n; ++j)
      CHECK(std::fabs(gc[size_t(j)] - cols[size_t(j)]) <= 1e-12 * double(std::max<int64_t>(s.m, 1)))
          << "col_sums " << s.m << "x" << s.n << " col " << j << ": " << gc[size_t(j)] << " vs " << cols[size_t(j)];
    CHECK(dr.guard_intact() && dc.guard_intact()) << "checksum wrote past its output " << s.m << "x" << s.n;
  }
  DevBuf d(64);
  CHECK_THROWS_KIND(cu::row_sums(kDev, d.as<float>(), 4, 4, 3, d.as<double>(), nullptr), ErrorKind::Range);
  CHECK_THROWS_KIND(cu::col_sums(kDev, d.as<float>(), -1, 4, 4, d.as<double>(), nullptr), ErrorKind::Range);
}

// ---- parity ----

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

// k device blocks of `len` bytes at the given byte offsets inside their own buffers, the device
// pointer array, and the host copies.
struct Blocks {
  std::vector<std::unique_ptr<DevBuf>> bufs;
  std::vector<std::vector<uint8_t>> host;
  std::unique_ptr<DevBuf> ptrs;
  std::vector<const uint8_t*> host_ptrs;
  Blocks(int k, size_t len, const std::vector<size_t>& offsets, uint32_t seed) {
    std::vector<const uint8_t*> dev_ptrs;
    for (int i = 0; i < k; ++i) {
      const size_t off = offsets[size_t(i) % offsets.size()];
      host.push_back(random_bytes(len, seed + uint32_t(i)));
      bufs.push_back(std::make_unique<DevBuf>(len + 16));
      bufs.back()->upload(host.back(), off);
      dev_ptrs.push_back(bufs.back()->p + off);
    }
    for (auto& h : host) host_ptrs.push_back(h.data());
    ptrs = upload(dev_ptrs);
  }
};

TEST(xor_encode_is_bit_exact_on_odd_lengths_and_misaligned_pointers) {
  uint32_t seed = 1;
  for (int k : {1, 2, 3, 7})
    for (size_t len : {size_t(1), size_t(15), size_t(17), size_t(1000), size_t(65537), size_t(1000003)})
      for (const auto& offs : std::vector<std::vector<size_t>>{{0}, {3}, {1, 2, 5}}) {
        Blocks b(k, len, offs, seed += 100);
        const size_t poff = offs[0];  // the parity shares block 0's offset
        DevBuf parity(len + 16);
        cu::xor_encode(kDev, b.ptrs->as<const uint8_t* const>(), k, len, parity.p + poff, nullptr);
        std::vector<uint8_t> want(len);
        kintsugi::xor_encode(b.host_ptrs.data(), k, len, want.data());
        CHECK(parity.download<uint8_t>(len, poff) == want) << "xor k=" << k << " len=" << len << " offset " << offs[0]
                                                           << (offs.size() > 1 ? " (mixed)" : "");
      }
  // In place (parity = block 0, the delta-update form) and k = 0.
  Blocks b(2, 4099, {0}, 77);
  cu::xor_encode(kDev, b.ptrs->as<const uint8_t* const>(), 2, 4099, b.bufs[0]->p, nullptr);
  std::vector<uint8_t> want(4099);
  kintsugi::xor_encode(b.host_ptrs.data(), 2, 4099, want.data());
  CHECK(b.bufs[0]->download<uint8_t>(4099) == want) << "xor in place";
  DevBuf z(33);
  cu::xor_encode(kDev, nullptr, 0, 33, z.p, nullptr);
  CHECK(z.download<uint8_t>(33) == std::vector<uint8_t>(33, 0)) << "xor of no blocks";
  CHECK(z.guard_intact());
  CHECK_THROWS_KIND(cu::xor_encode(kDev, nullptr, 2, 33, z.p, nullptr), ErrorKind::Type);
  CHECK_THROWS_KIND(cu::xor_encode(kDev, nullptr, -1, 33, z.p, nullptr), ErrorKind::Range);
}

TEST(sum_encode_and_decode_give_the_cpu_bits) {
  uint32_t seed = 5;
  for (int k : {1, 3, 6})
    for (size_t len : {size_t(1), size_t(5), size_t(1023), size_t(100003)})
      for (const auto& offs : std::vector<std::vector<size_t>>{{0}, {4}, {0, 4, 8}}) {
        std::vector<std::vector<float>> host;
        std::vector<std::unique_ptr<DevBuf>> bufs;
        std::vector<const float*> dev, hp;
        for (int i = 0; i < k; ++i) {
          host.push_back(harness::random_floats(len, seed++, -100, 100));
          bufs.push_back(std::make_unique<DevBuf>(len * 4 + 16));
          const size_t off = offs[size_t(i) % offs.size()];
          bufs.back()->upload(host.back(), off);
          dev.push_back(bufs.back()->as<float>(off));
          hp.push_back(host.back().data());
        }
        auto dptrs = upload(dev);
        const auto coeffs = harness::random_floats(size_t(k), seed++, 0.5f, 2.0f);
        auto dco = upload(coeffs);
        for (bool ones : {true, false}) {
          DevBuf parity(len * 4 + 16);
          const size_t poff = offs[0];
          cu::sum_encode(kDev, dptrs->as<const float* const>(), ones ? nullptr : dco->as<float>(), k, len, parity.as<float>(poff),
                         nullptr);
          std::vector<float> want(len);
          kintsugi::sum_encode(hp.data(), ones ? nullptr : coeffs.data(), k, len, want.data());
          const auto got = parity.download<float>(len, poff);
          CHECK(std::memcmp(got.data(), want.data(), len * 4) == 0) << "sum_encode k=" << k << " len=" << len << " ones=" << ones;
          // Recover block 0 from the parity and the others.
          const float missing = ones ? 1.0f : coeffs[0];
          DevBuf out(len * 4 + 16);
          cu::sum_decode(kDev, parity.as<float>(poff), dptrs->as<const float* const>() + 1, ones ? nullptr : dco->as<float>() + 1,
                         k - 1, missing, len, out.as<float>(poff), nullptr);
          std::vector<float> rec(len);
          kintsugi::sum_decode(want.data(), hp.data() + 1, ones ? nullptr : coeffs.data() + 1, k - 1, missing, len, rec.data());
          const auto got_rec = out.download<float>(len, poff);
          CHECK(std::memcmp(got_rec.data(), rec.data(), len * 4) == 0) << "sum_decode k=" << k << " len=" << len << " ones=" << ones;
          CHECK(harness::worst_error(got_rec.data(), host[0].data(), len, 1e-3, 1e-5) <= 1.0) << "decode did not recover block 0";
          CHECK(parity.guard_intact() && out.guard_intact());
        }
      }
  DevBuf d(64);
  CHECK_THROWS_KIND(cu::sum_decode(kDev, d.as<float>(), nullptr, nullptr, 0, 0.0f, 4, d.as<float>(), nullptr), ErrorKind::Range);
  CHECK_THROWS_KIND(cu::sum_encode(kDev, nullptr, nullptr, 2, 4, d.as<float>(), nullptr), ErrorKind::Type);
}

// ---- embedding bags ----

TEST(embedding_bags_match_cpu_with_repeated_rows_and_empty_bags) {
  const int64_t rows = 50;
  // Bags: {3,3,7}, {}, {3}, {49,0,3,3}, {}, {12}
  const std::vector<int32_t> indices = {3, 3, 7, 3, 49, 0, 3, 3, 12};
  const std::vector<int32_t> offsets = {0, 3, 3, 4, 8, 8, 9};
  auto di = upload(indices), doff = upload(offsets);
  const auto weights = harness::random_floats(indices.size(), 9, 0.25f, 2.0f);
  auto dwt = upload(weights);
  for (int64_t dim : {1, 7, 16, 64, 100}) {
    const auto table = harness::random_floats(size_t(rows * dim), uint32_t(dim));
    auto dtab = upload(table);
    for (kintsugi::BagMode mode : {kintsugi::BagMode::Sum, kintsugi::BagMode::Mean})
      for (bool weighted : {false, true}) {
        kintsugi::EmbeddingBagArgs a;
        a.rows = rows, a.dim = dim, a.nnz = int64_t(indices.size()), a.bags = int64_t(offsets.size()) - 1, a.mode = mode;
        a.indices = indices.data(), a.offsets = offsets.data(), a.weights = weighted ? weights.data() : nullptr;
        std::vector<float> want(size_t(a.bags * dim));
        kintsugi::embedding_bag_forward(a, table.data(), want.data());
        kintsugi::EmbeddingBagArgs d = a;
        d.indices = di->as<int32_t>(), d.offsets = doff->as<int32_t>(), d.weights = weighted ? dwt->as<float>() : nullptr;
        DevBuf out(want.size() * 4);
        cu::embedding_bag_forward(kDev, d, dtab->as<float>(), out.as<float>(), nullptr);
        const auto got = out.download<float>(want.size());
        CHECK(std::memcmp(got.data(), want.data(), want.size() * 4) == 0)
            << "forward dim=" << dim << " mean=" << (mode == kintsugi::BagMode::Mean) << " weighted=" << weighted
            << " worst " << harness::worst_error(got.data(), want.data(), want.size(), 1e-6, 1e-6);
        CHECK(out.guard_intact());

        const auto grad = harness::random_floats(want.size(), 77);
        auto dgrad = upload(grad);
        auto table_grad = harness::random_floats(table.size(), 78);  // accumulated into, not overwritten
        auto dtg = upload(table_grad);
        kintsugi::embedding_bag_backward(a, grad.data(), 0.5f, table_grad.data());
        cu::embedding_bag_backward(kDev, d, dgrad->as<float>(), 0.5f, dtg->as<float>(), nullptr);
        const auto got_tg = dtg->download<float>(table_grad.size());
        CHECK(harness::worst_error(got_tg.data(), table_grad.data(), table_grad.size(), 1e-6 * 8, 1e-5) <= 1.0)
            << "backward dim=" << dim << " mean=" << (mode == kintsugi::BagMode::Mean) << " weighted=" << weighted;
        CHECK(dtg->guard_intact());
      }
  }
  kintsugi::EmbeddingBagArgs bad;
  bad.rows = 4, bad.dim = 4, bad.nnz = 2, bad.bags = 1;
  DevBuf d(64);
  CHECK_THROWS_KIND(cu::embedding_bag_forward(kDev, bad, d.as<float>(), d.as<float>(), nullptr), ErrorKind::Type);
  bad.dim = -1;
  CHECK_THROWS_KIND(cu::embedding_bag_forward(kDev, bad, d.as<float>(), d.as<float>(), nullptr), ErrorKind::Range);
}

// ---- pairwise dots (DLRM's interaction) ----

TEST(pairwise_dots_give_the_cpus_bits) {
  struct Shape { int64_t n, vectors, dim; };
  for (Shape sh : {Shape{1, 1, 1}, Shape{1, 2, 1}, Shape{3, 5, 7}, Shape{256, 27, 16}, Shape{5, 17, 33}, Shape{2, 64, 130}, Shape{3, 4, 0}})
    for (bool self : {false, true}) {
      kintsugi::PairwiseDotsArgs a;
      a.n = sh.n, a.vectors = sh.vectors, a.dim = sh.dim, a.self = self;
      const size_t zn = size_t(a.n * a.vectors * a.dim), pn = size_t(a.n * a.pairs());
      auto z = harness::random_floats(zn, uint32_t(3 + a.vectors));
      // A NaN in one sample (the GPU's NaNs carry another payload: compared as NaN, not by bits).
      const bool with_nan = zn > 5 && a.n > 1;
      if (with_nan) z[5] = std::numeric_limits<float>::quiet_NaN();
      const auto g = harness::random_floats(pn, uint32_t(4 + a.dim));
      std::vector<float> want(pn), want_gz(zn);
      kintsugi::pairwise_dots_forward(a, z.data(), want.data());
      kintsugi::pairwise_dots_backward(a, z.data(), g.data(), want_gz.data());
      DevBuf dz(std::max<size_t>(zn, 1) * 4), dg(std::max<size_t>(pn, 1) * 4), dout(std::max<size_t>(pn, 1) * 4), dgz(std::max<size_t>(zn, 1) * 4);
      if (zn) dz.upload(z);
      if (pn) dg.upload(g);
      cu::pairwise_dots_forward(kDev, a, dz.as<float>(), dout.as<float>(), nullptr);
      cu::pairwise_dots_backward(kDev, a, dz.as<float>(), dg.as<float>(), dgz.as<float>(), nullptr);
      const auto got = dout.download<float>(pn), got_gz = dgz.download<float>(zn);
      auto same = [](const std::vector<float>& x, const std::vector<float>& y) {
        for (size_t i = 0; i < x.size(); ++i)
          if (std::isnan(x[i]) ? !std::isnan(y[i]) : std::memcmp(&x[i], &y[i], 4) != 0) return false;
        return true;
      };
      CHECK(same(got, want)) << "forward " << a.n << "x" << a.vectors << "x" << a.dim << " self " << self << " NaN " << with_nan;
      CHECK(same(got_gz, want_gz)) << "backward " << a.n << "x" << a.vectors << "x" << a.dim << " self " << self << " NaN " << with_nan;
      CHECK(dout.guard_intact() && dgz.guard_intact());
    }
  kintsugi::PairwiseDotsArgs bad;
  bad.n = 2, bad.vectors = -1, bad.dim = 4;
  DevBuf d(64);
  CHECK_THROWS_KIND(cu::pairwise_dots_forward(kDev, bad, d.as<float>(), d.as<float>(), nullptr), ErrorKind::Range);
  bad.vectors = 3;
  CHECK_THROWS_KIND(cu::pairwise_dots_forward(kDev, bad, d.as<float>(), nullptr, nullptr), ErrorKind::Type);
}

}  // namespace

int main() {
  std::string why;
  if (kintsugi::cuda::device_count(&why) == 0) {
    std::printf("skipped: %s\n", why.c_str());
    return 0;
  }
  return harness::run_all();
}
