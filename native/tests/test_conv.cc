// conv2d forward / backward against the direct double-accumulating reference.
//
// Tolerances: the fast paths accumulate in float (im2col + sgemm, or direct loops), the reference in
// double. With inputs in [-1, 1] the float error of a dot product of length L stays far below
// L * 2^-24 * sum|terms| <= L^2 * 6e-8, so each output is checked against
//   atol = 1e-6 * L, rtol = 1e-5
// where L is the reduction length of that output (cg*kh*kw forward, kg*kh*kw backward-data,
// n*oh*ow backward-weight). Small-integer fills make every sum exact, and those runs are compared
// bit for bit. NaN must match NaN and infinities must match exactly (harness::worst_error).
#include <cstring>
#include <limits>

#include "../src/cpu/kernels_internal.h"
#include "harness.h"
#include "kintsugi/conv.h"
#include "kintsugi/cpu.h"
#include "kintsugi/error.h"
#include "kintsugi/threadpool.h"

using kintsugi::Conv2dParams;

namespace {

Conv2dParams make(int64_t n, int64_t c_in, int64_t h, int64_t w, int64_t c_out, int64_t kh, int64_t kw, int64_t sh = 1,
                  int64_t sw = 1, int64_t ph = 0, int64_t pw = 0, int64_t dh = 1, int64_t dw = 1, int64_t groups = 1) {
  Conv2dParams p;
  p.n = n;
  p.c_in = c_in;
  p.h = h;
  p.w = w;
  p.c_out = c_out;
  p.kh = kh;
  p.kw = kw;
  p.stride_h = sh;
  p.stride_w = sw;
  p.pad_h = ph;
  p.pad_w = pw;
  p.dilation_h = dh;
  p.dilation_w = dw;
  p.groups = groups;
  return p;
}

std::string describe(const Conv2dParams& p) {
  std::ostringstream s;
  s << "n=" << p.n << " c_in=" << p.c_in << " h=" << p.h << " w=" << p.w << " c_out=" << p.c_out << " k=" << p.kh << "x"
    << p.kw << " stride=" << p.stride_h << "," << p.stride_w << " pad=" << p.pad_h << "," << p.pad_w
    << " dil=" << p.dilation_h << "," << p.dilation_w << " groups=" << p.groups;
  return s.str();
}

constexpr size_t kGuard = 17;
constexpr float kGuardValue = 777.25f;

// Output buffer pre-filled with NaN (so "overwritten, not accumulated" is checked) plus a guard tail.
std::vector<float> output_buffer(int64_t n) {
  std::vector<float> v(size_t(n) + kGuard, std::numeric_limits<float>::quiet_NaN());
  for (size_t i = 0; i < kGuard; ++i) v[size_t(n) + i] = kGuardValue;
  return v;
}

bool guard_intact(const std::vector<float>& v, int64_t n) {
  for (size_t i = 0; i < kGuard; ++i)
    if (v[size_t(n) + i] != kGuardValue) return false;
  return true;
}

void expect_close(const char* what, const Conv2dParams& p, const std::vector<float>& got, const std::vector<float>& want,
                  int64_t n, double reduction, bool exact) {
  size_t where = 0;
  double atol = exact ? 1e-30 : 1e-6 * reduction, rtol = exact ? 0.0 : 1e-5;
  double err = harness::worst_error(got.data(), want.data(), size_t(n), atol, rtol, &where);
  CHECK(err <= 1.0) << what << " " << describe(p) << " worst error " << err << " at " << where << ": got "
                    << got[where] << " want " << want[where];
  CHECK(guard_intact(got, n)) << what << " wrote past its output: " << describe(p);
}

void check_all(const Conv2dParams& p, uint32_t seed, bool with_bias = true, bool exact = false) {
  kintsugi::check_conv2d(p);
  const int64_t xs = p.input_size(), ws = p.weight_size(), ys = p.output_size();
  auto gen = [&](int64_t n, uint32_t s) {
    return exact ? harness::random_small_ints(size_t(n), s, -3, 3) : harness::random_floats(size_t(n), s);
  };
  std::vector<float> x = gen(xs, seed), w = gen(ws, seed + 1), b = gen(p.c_out, seed + 2), dy = gen(ys, seed + 3);
  const float* bias = with_bias ? b.data() : nullptr;
  const double cg = double(p.c_in / p.groups), kg = double(p.c_out / p.groups), kk = double(p.kh * p.kw);

  std::vector<float> y = output_buffer(ys), y_ref = output_buffer(ys);
  kintsugi::conv2d_forward(p, x.data(), w.data(), bias, y.data());
  kintsugi::conv2d_forward_reference(p, x.data(), w.data(), bias, y_ref.data());
  expect_close("forward", p, y, y_ref, ys, cg * kk + 1, exact);

  std::vector<float> dx = output_buffer(xs), dx_ref = output_buffer(xs);
  kintsugi::conv2d_backward_data(p, dy.data(), w.data(), dx.data());
  kintsugi::conv2d_backward_data_reference(p, dy.data(), w.data(), dx_ref.data());
  expect_close("backward_data", p, dx, dx_ref, xs, kg * kk, exact);

  std::vector<float> dw = output_buffer(ws), dw_ref = output_buffer(ws);
  std::vector<float> db = output_buffer(p.c_out), db_ref = output_buffer(p.c_out);
  kintsugi::conv2d_backward_weight(p, x.data(), dy.data(), dw.data(), with_bias ? db.data() : nullptr);
  kintsugi::conv2d_backward_weight_reference(p, x.data(), dy.data(), dw_ref.data(), with_bias ? db_ref.data() : nullptr);
  const double nq = double(p.n * p.out_h() * p.out_w());
  expect_close("backward_weight", p, dw, dw_ref, ws, nq, exact);
  if (with_bias) expect_close("backward_bias", p, db, db_ref, p.c_out, nq, exact);
}

// Shapes that exercise every path: pointwise, strided / padded 1x1, general im2col, groups,
// depthwise (with channel multipliers), dilation, padding >= kernel, stride > kernel, asymmetric.
std::vector<Conv2dParams> edge_shapes() {
  return {
      make(1, 1, 1, 1, 1, 1, 1),                          // 1x1 everything
      make(2, 8, 5, 7, 6, 1, 1),                          // pointwise
      make(2, 8, 5, 7, 6, 1, 1, 1, 1, 0, 0, 1, 1, 2),     // pointwise grouped
      make(2, 4, 9, 9, 5, 1, 1, 2, 2),                    // 1x1 strided: a gather
      make(1, 3, 4, 4, 2, 1, 1, 1, 1, 1, 1),              // 1x1 padded
      make(1, 3, 7, 5, 4, 1, 1, 3, 2, 2, 1, 3, 1),        // 1x1 strided, padded, dilation irrelevant
      make(2, 3, 7, 9, 4, 3, 3, 1, 1, 1, 1),              // 3x3 same padding
      make(1, 2, 11, 10, 3, 2, 2, 3, 3),                  // stride > kernel
      make(1, 2, 3, 4, 3, 2, 2, 1, 1, 2, 3),              // padding >= kernel
      make(1, 2, 2, 2, 3, 3, 3, 2, 3, 2, 2),              // padding >= kernel, tiny input, big stride
      make(1, 3, 9, 8, 4, 3, 3, 1, 1, 2, 2, 2, 3),        // dilation
      make(2, 6, 7, 7, 9, 3, 3, 2, 1, 1, 1, 1, 1, 3),     // groups
      make(2, 5, 8, 9, 5, 3, 3, 1, 1, 1, 1, 1, 1, 5),     // depthwise
      make(1, 4, 9, 10, 4, 3, 5, 2, 2, 2, 1, 1, 1, 4),    // depthwise strided, asymmetric kernel
      make(1, 3, 6, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 3),     // depthwise, channel multiplier 2
      make(1, 3, 5, 5, 9, 3, 3, 1, 2, 3, 2, 2, 1, 3),     // depthwise, multiplier 3, dilation, pad > kernel
      make(1, 3, 5, 7, 6, 1, 3, 1, 1, 0, 4, 1, 1, 3),     // depthwise 1x3 with large pad
      make(2, 1, 12, 12, 16, 5, 5, 1, 1, 2, 2),           // one input channel, many outputs (im2col)
      make(1, 4, 10, 6, 3, 1, 5, 1, 2, 0, 2),             // asymmetric kernel / stride / pad
      make(1, 3, 5, 5, 2, 5, 5),                          // kernel = whole input: 1x1 output
      make(3, 2, 1, 9, 2, 1, 3, 1, 2, 0, 1),              // height 1
      make(1, 7, 13, 11, 5, 4, 2, 3, 1, 1, 0, 2, 2),      // odd everything
      make(2, 3, 40, 37, 5, 3, 3, 2, 2, 1, 1),            // stride 2, rows longer than a vector
      make(1, 2, 9, 50, 3, 1, 3, 1, 3, 0, 1),             // stride 3 gather
      make(1, 2, 6, 21, 3, 1, 18, 1, 1, 0, 2),            // kernel wider than 16 columns
  };
}

Conv2dParams random_shape(std::mt19937& rng) {
  auto r = [&](int lo, int hi) { return int64_t(std::uniform_int_distribution<int>(lo, hi)(rng)); };
  for (;;) {
    int64_t groups = r(1, 3);
    Conv2dParams p = make(r(1, 3), groups * r(1, 3), r(1, 12), r(1, 12), groups * r(1, 3), r(1, 4), r(1, 4), r(1, 3),
                          r(1, 3), r(0, 3), r(0, 3), r(1, 2), r(1, 2), groups);
    if (p.h + 2 * p.pad_h >= p.dilation_h * (p.kh - 1) + 1 && p.w + 2 * p.pad_w >= p.dilation_w * (p.kw - 1) + 1) return p;
  }
}

}  // namespace

TEST(edge_shapes_match_reference) {
  uint32_t seed = 1;
  for (const auto& p : edge_shapes()) {
    check_all(p, seed += 10, true);
    check_all(p, seed += 10, false);
  }
}

TEST(small_integer_fills_are_exact) {
  uint32_t seed = 500;
  for (const auto& p : edge_shapes()) check_all(p, seed += 10, true, true);
}

TEST(random_shapes_match_reference) {
  std::mt19937 rng(42);
  for (int t = 0; t < 60; ++t) check_all(random_shape(rng), 1000 + uint32_t(t) * 7, t % 2 == 0);
}

TEST(batch_sizes_around_the_thread_count) {
  // Images run one after another (parallel inside); the weight gradient accumulates over them, and
  // depthwise layers parallelise over (image, channel) planes.
  const int64_t t = kintsugi::num_threads();
  for (int64_t n : {int64_t(1), t, t + 1, 2 * t + 1}) {
    check_all(make(n, 6, 9, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2), 77, true);
    check_all(make(n, 8, 6, 6, 8, 1, 1), 78, true);                          // pointwise
    check_all(make(n, 6, 9, 9, 6, 3, 3, 2, 2, 1, 1, 1, 1, 6), 79, true);     // depthwise
    check_all(make(n, 6, 9, 8, 8, 3, 3, 1, 1, 1, 1), 81, true, true);        // exact
  }
}

TEST(any_thread_count_gives_the_same_results) {
  // Every path at 1 and 3 threads matches the reference, and exact fills match bit for bit.
  const int original = kintsugi::num_threads();
  for (int threads : {1, 3}) {
    kintsugi::set_num_threads(threads);
    check_all(make(5, 6, 9, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2), 91, true);
    check_all(make(1, 16, 40, 40, 8, 3, 3, 1, 1, 1, 1), 92, true, true);
    check_all(make(3, 6, 9, 9, 6, 3, 3, 2, 2, 1, 1, 1, 1, 6), 93, true);  // depthwise
    check_all(make(2, 8, 33, 33, 8, 1, 1), 94, true);                    // pointwise per image
  }
  kintsugi::set_num_threads(original);
}

TEST(large_layers_take_chunked_and_batched_paths) {
  // c_in*kh*kw*oh*ow*4 bytes > 4 MiB, so the column buffer is split into chunks of output pixels.
  check_all(make(1, 64, 48, 48, 16, 3, 3, 1, 1, 1, 1), 901, true);
  check_all(make(2, 32, 40, 40, 8, 3, 3, 1, 1, 1, 1), 902, true, true);  // exact, chunked, batch-parallel
  check_all(make(2, 64, 32, 32, 64, 1, 1), 903, true);                    // pointwise, larger
  check_all(make(2, 32, 40, 40, 32, 3, 3, 1, 1, 1, 1, 1, 1, 32), 904, true);  // depthwise, larger
  // Small planes are batched several images per GEMM; these need more than one batch (the last
  // one partial), with and without groups.
  check_all(make(10, 256, 10, 10, 8, 3, 3, 1, 1, 1, 1), 905, true);
  check_all(make(7, 512, 9, 9, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2), 906, true, true);
  check_all(make(9, 4000, 7, 7, 4, 1, 1), 907, true);  // pointwise, batched (5 + 4 images)
}

TEST(small_planes_take_the_transposed_backward_data_path) {
  // One image with output planes of at most 64 pixels: backward-data forms col^T = dy^T . W in
  // slices of about 512 columns per thread (whole channels), each transposed and scattered.
  // These need several slices, the last one partial, at 1 and 3 threads, exact fills included.
  const int original = kintsugi::num_threads();
  for (int threads : {1, 3}) {
    kintsugi::set_num_threads(threads);
    check_all(make(1, 130, 7, 7, 24, 3, 3, 1, 1, 1, 1), 951, true);
    check_all(make(1, 130, 7, 7, 24, 3, 3, 1, 1, 1, 1), 952, false, true);           // exact
    check_all(make(1, 400, 14, 14, 20, 3, 3, 2, 2, 1, 1), 953, true, true);          // stride 2, exact
    check_all(make(1, 1700, 13, 13, 12, 1, 1, 2, 2), 954, true);                     // 1x1 stride 2
    check_all(make(1, 240, 8, 8, 18, 3, 3, 1, 1, 1, 1, 1, 1, 2), 955, true, true);   // groups, exact
    check_all(make(1, 150, 9, 7, 10, 3, 2, 1, 1, 2, 1, 2, 1), 956, true);            // dilation, odd kernel
  }
  kintsugi::set_num_threads(original);
}

namespace {
// Forward only (the implicit-GEMM path) against the reference.
void check_forward(const Conv2dParams& p, uint32_t seed, bool with_bias, bool exact = false) {
  const int64_t xs = p.input_size(), ws = p.weight_size(), ys = p.output_size();
  auto gen = [&](int64_t n, uint32_t s) {
    return exact ? harness::random_small_ints(size_t(n), s, -3, 3) : harness::random_floats(size_t(n), s);
  };
  std::vector<float> x = gen(xs, seed), w = gen(ws, seed + 1), b = gen(p.c_out, seed + 2);
  std::vector<float> y = output_buffer(ys), y_ref = output_buffer(ys);
  kintsugi::conv2d_forward(p, x.data(), w.data(), with_bias ? b.data() : nullptr, y.data());
  kintsugi::conv2d_forward_reference(p, x.data(), w.data(), with_bias ? b.data() : nullptr, y_ref.data());
  expect_close("forward", p, y, y_ref, ys, double(p.c_in / p.groups * p.kh * p.kw) + 1, exact);
}

std::vector<Conv2dParams> implicit_gemm_shapes() {
  std::vector<Conv2dParams> v = edge_shapes();
  v.push_back(make(3, 13, 7, 7, 29, 3, 3, 1, 1, 1, 1));          // 49-pixel planes across images
  v.push_back(make(2, 9, 14, 14, 23, 3, 3, 2, 2, 1, 1));         // strided, planes of 49
  v.push_back(make(3, 17, 14, 14, 19, 1, 1, 2, 2));              // 1x1 stride 2
  v.push_back(make(2, 5, 30, 30, 7, 7, 7, 2, 2, 3, 3));          // conv1-like
  v.push_back(make(1, 70, 9, 11, 15, 3, 3, 1, 1, 1, 1));         // K = 630 over several slices
  v.push_back(make(2, 12, 12, 12, 16, 3, 3, 3, 3, 2, 2, 2, 2));  // stride 3, dilation 2
  v.push_back(make(4, 6, 5, 5, 12, 3, 3, 1, 1, 1, 1, 1, 1, 2));  // groups, small planes
  // Pixel blocks 1-4 columns past a multiple of 16 (those columns run as dot products).
  v.push_back(make(1, 20, 7, 7, 13, 3, 3, 1, 1, 1, 1));          // 48 + 1
  v.push_back(make(1, 9, 14, 14, 10, 3, 3, 1, 1, 1, 1));         // 192 + 4
  v.push_back(make(1, 70, 6, 3, 7, 3, 3, 1, 1, 1, 1));           // 16 + 2, K over slices
  v.push_back(make(2, 11, 10, 14, 9, 1, 1, 2, 2));               // 1x1 stride 2, 32 + 3
  return v;
}
}  // namespace

TEST(implicit_gemm_every_blocking_isa_and_thread_count) {
  // Tiny KC / MC / NC slices, odd tiles, forced output-channel splits and pixel blocks across
  // images (and never across), on every ISA the CPU has and on 1 and 3 threads.
  using kintsugi::conv_internal::ImplicitGemmTuning;
  const int original = kintsugi::num_threads();
  const kintsugi::Isa best = kintsugi::best_isa();
  std::vector<ImplicitGemmTuning> tunings(6);
  tunings[5].portable_pack = 1;
  tunings[1].kc = 7;
  tunings[1].mc = 5;
  tunings[1].nc = 1;  // rounds up to one register tile
  tunings[1].m_tasks = 3;
  tunings[1].virtual_cols = 1;
  tunings[2].kc = 16;
  tunings[2].virtual_cols = 0;
  tunings[2].m_tasks = 2;
  tunings[3].mr = 3;
  tunings[3].nr = 16;
  tunings[3].kc = 33;
  tunings[3].nc = 40;
  tunings[3].virtual_cols = 1;
  tunings[4].kc = 5000;  // one slice
  tunings[4].nc = 100000;
  tunings[4].virtual_cols = 1;
  uint32_t seed = 7000;
  for (kintsugi::Isa isa : {kintsugi::Isa::Portable, kintsugi::Isa::Avx2, kintsugi::Isa::Avx512}) {
    if (int(isa) > int(best)) continue;
    kintsugi::set_isa_limit(isa);
    for (int threads : {1, 3}) {
      kintsugi::set_num_threads(threads);
      for (size_t ti = 0; ti < tunings.size(); ++ti) {
        kintsugi::conv_internal::set_implicit_gemm_tuning(tunings[ti]);
        for (const auto& p : implicit_gemm_shapes()) {
          seed += 3;
          check_forward(p, seed, (seed & 1) != 0);
          if (ti == 1) check_forward(p, seed += 3, true, true);
        }
      }
    }
  }
  kintsugi::conv_internal::set_implicit_gemm_tuning(ImplicitGemmTuning{});
  kintsugi::set_isa_limit(best);
  kintsugi::set_num_threads(original);
}

TEST(nan_and_inf_propagate_through_forward) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (const auto& p : {make(2, 4, 8, 8, 5, 3, 3, 1, 1, 1, 1), make(2, 4, 8, 8, 6, 1, 1),
                        make(2, 4, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4), make(1, 4, 8, 8, 6, 3, 3, 2, 2, 1, 1, 1, 1, 2)}) {
    std::vector<float> x = harness::random_floats(size_t(p.input_size()), 5);
    std::vector<float> w = harness::random_floats(size_t(p.weight_size()), 6, 0.1f, 1.0f);  // positive: no Inf - Inf
    x[3] = nan;
    x[size_t(p.input_size() - 5)] = inf;
    x[size_t(p.h * p.w + 20)] = -inf;
    std::vector<float> y = output_buffer(p.output_size()), y_ref = output_buffer(p.output_size());
    kintsugi::conv2d_forward(p, x.data(), w.data(), nullptr, y.data());
    kintsugi::conv2d_forward_reference(p, x.data(), w.data(), nullptr, y_ref.data());
    int64_t nans = 0, infs = 0;
    for (int64_t i = 0; i < p.output_size(); ++i) {
      nans += std::isnan(y_ref[size_t(i)]);
      infs += std::isinf(y_ref[size_t(i)]);
    }
    CHECK(nans > 0 && infs > 0) << describe(p);
    expect_close("forward with NaN/Inf", p, y, y_ref, p.output_size(), double(p.c_in * 9), false);
  }
}

TEST(zero_batch_is_a_no_op) {
  Conv2dParams p = make(0, 3, 5, 5, 4, 3, 3, 1, 1, 1, 1);
  kintsugi::check_conv2d(p);
  CHECK(p.output_size() == 0);
  std::vector<float> w(size_t(p.weight_size()), 1.0f), dw(size_t(p.weight_size()), 5.0f), db(4, 5.0f);
  kintsugi::conv2d_forward(p, nullptr, w.data(), nullptr, nullptr);
  kintsugi::conv2d_backward_data(p, nullptr, w.data(), nullptr);
  kintsugi::conv2d_backward_weight(p, nullptr, nullptr, dw.data(), db.data());
  for (float v : dw) CHECK(v == 0.0f);
  for (float v : db) CHECK(v == 0.0f);
}

namespace {
void expect_range_error(const Conv2dParams& p, const std::string& fragment) {
  bool thrown = false;
  try {
    kintsugi::check_conv2d(p);
  } catch (const kintsugi::Error& e) {
    thrown = true;
    std::string msg = e.what();
    CHECK(e.kind() == kintsugi::ErrorKind::Range) << msg;
    CHECK(msg.rfind("Expected ", 0) == 0 && msg.find(" but received ") != std::string::npos) << msg;
    CHECK(msg.find(fragment) != std::string::npos) << "'" << msg << "' should mention '" << fragment << "'";
  }
  CHECK(thrown) << "expected a RangeError for " << describe(p);
  // The kernels check too, before touching any pointer.
  CHECK_THROWS_KIND(kintsugi::conv2d_forward(p, nullptr, nullptr, nullptr, nullptr), kintsugi::ErrorKind::Range);
  CHECK_THROWS_KIND(kintsugi::conv2d_backward_data(p, nullptr, nullptr, nullptr), kintsugi::ErrorKind::Range);
  CHECK_THROWS_KIND(kintsugi::conv2d_backward_weight(p, nullptr, nullptr, nullptr, nullptr), kintsugi::ErrorKind::Range);
}
}  // namespace

TEST(invalid_parameters_raise_range_errors) {
  Conv2dParams ok = make(1, 4, 5, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2);
  kintsugi::check_conv2d(ok);
  auto with = [&](auto edit) {
    Conv2dParams p = ok;
    edit(p);
    return p;
  };
  expect_range_error(with([](Conv2dParams& p) { p.n = -1; }), "for n but received -1");
  expect_range_error(with([](Conv2dParams& p) { p.c_in = 0; }), "for c_in but received 0");
  expect_range_error(with([](Conv2dParams& p) { p.h = 0; }), "Expected a positive integer for h but received 0");
  expect_range_error(with([](Conv2dParams& p) { p.w = -3; }), "for w but received -3");
  expect_range_error(with([](Conv2dParams& p) { p.c_out = 0; }), "for c_out");
  expect_range_error(with([](Conv2dParams& p) { p.kh = 0; }), "for kh");
  expect_range_error(with([](Conv2dParams& p) { p.kw = -1; }), "for kw");
  expect_range_error(with([](Conv2dParams& p) { p.stride_h = 0; }), "for stride_h but received 0");
  expect_range_error(with([](Conv2dParams& p) { p.stride_w = -2; }), "for stride_w");
  expect_range_error(with([](Conv2dParams& p) { p.dilation_h = 0; }), "for dilation_h");
  expect_range_error(with([](Conv2dParams& p) { p.dilation_w = 0; }), "for dilation_w");
  expect_range_error(with([](Conv2dParams& p) { p.pad_h = -1; }), "a non-negative integer for pad_h but received -1");
  expect_range_error(with([](Conv2dParams& p) { p.pad_w = -1; }), "for pad_w");
  expect_range_error(with([](Conv2dParams& p) { p.groups = 0; }), "for groups but received 0");
  expect_range_error(with([](Conv2dParams& p) { p.groups = 3; }), "a divisor of c_in (4) for groups but received 3");
  expect_range_error(with([](Conv2dParams& p) { p.c_out = 5; }), "a divisor of c_out (5) for groups but received 2");
  // Kernel larger than the padded input: empty output.
  expect_range_error(with([](Conv2dParams& p) { p.pad_h = 0; p.kh = 6; }), "dilated kernel height 6 for h but received 5");
  expect_range_error(with([](Conv2dParams& p) { p.dilation_w = 3; p.pad_w = 0; }), "dilated kernel width 7");
  expect_range_error(with([](Conv2dParams& p) { p.h = int64_t(1) << 40; }), "for h");
  expect_range_error(with([](Conv2dParams& p) { p.n = 1 << 30; p.c_in = 1 << 20; p.groups = 1; }), "for x");
}

namespace {
// Packs w, runs the packed forward and compares with the reference (bit for bit for small-integer
// fills, whose sums are exact in float).
void check_packed(const Conv2dParams& p, uint32_t seed, bool with_bias, bool exact) {
  const int64_t xs = p.input_size(), ys = p.output_size();
  auto gen = [&](int64_t n, uint32_t s) {
    return exact ? harness::random_small_ints(size_t(n), s, -3, 3) : harness::random_floats(size_t(n), s);
  };
  std::vector<float> x = gen(xs, seed), w = gen(p.weight_size(), seed + 1), b = gen(p.c_out, seed + 2);
  std::vector<float> packed(size_t(kintsugi::conv2d_packed_weights_size(p)));
  kintsugi::conv2d_pack_weights(p, w.data(), packed.data());
  std::vector<float> y = output_buffer(ys), y_ref = output_buffer(ys);
  kintsugi::conv2d_forward_packed(p, x.data(), packed.data(), with_bias ? b.data() : nullptr, y.data());
  kintsugi::conv2d_forward_reference(p, x.data(), w.data(), with_bias ? b.data() : nullptr, y_ref.data());
  expect_close("forward_packed", p, y, y_ref, ys, double(p.c_in / p.groups * p.kh * p.kw + 1), exact);
}

// Shapes for the direct kernel: channel counts around the 16-lane vectors and 64-channel blocks,
// widths around the 7-pixel tiles, stride 2 (every other input), padding edges, dilation, long
// reductions split into slices; plus groups and few output channels, which keep raw weights.
std::vector<Conv2dParams> packed_shapes() {
  return {
      make(1, 3, 9, 9, 16, 3, 3, 1, 1, 1, 1),          // one vector
      make(2, 5, 8, 13, 48, 3, 3, 1, 1, 1, 1),         // three vectors, odd width
      make(1, 4, 11, 15, 80, 3, 3, 2, 2, 1, 1),        // a full block + one vector, stride 2
      make(1, 6, 7, 7, 70, 3, 3, 1, 1, 1, 1),          // 70 channels: a partial last vector
      make(2, 8, 10, 9, 64, 1, 1, 2, 2),               // 1x1 stride 2 in place, odd width
      make(1, 8, 14, 14, 128, 1, 1, 2, 2),             // downsample-like
      make(1, 3, 23, 23, 64, 7, 7, 2, 2, 3, 3),        // conv1-like
      make(1, 4, 9, 10, 32, 3, 3, 1, 1, 2, 2, 2, 2),   // dilation
      make(1, 3, 6, 17, 32, 2, 4, 3, 1, 0, 2),         // stride 3 x 1, asymmetric padding / kernel
      make(1, 2, 5, 5, 32, 3, 3, 1, 1, 4, 4),          // padding > kernel
      make(1, 50, 5, 6, 64, 3, 3, 1, 1, 1, 1),         // c_in 50: several reduction slices
      make(1, 1, 1, 1, 16, 1, 1),                      // 1x1 everything
      make(2, 6, 7, 7, 36, 3, 3, 2, 1, 1, 1, 1, 1, 3), // groups: raw weights
      make(1, 4, 6, 6, 5, 3, 3, 1, 1, 1, 1),           // few output channels: raw weights
      make(2, 24, 40, 40, 48, 1, 1),                   // 1x1, few inputs, 3200 pixels: the plain copy
      make(4, 64, 58, 57, 80, 1, 1, 2, 2),             // the same, stride 2, odd sizes, a partial block
      make(1, 65, 56, 56, 32, 1, 1),                   // 65 inputs: the direct kernel at any size
  };
}
}  // namespace

TEST(packed_forward_matches_reference) {
  uint32_t seed = 900;
  const int original = kintsugi::num_threads();
  for (int threads : {1, 2, 3}) {
    kintsugi::set_num_threads(threads);
    for (const auto& p : packed_shapes()) {
      check_packed(p, seed += 10, true, false);
      check_packed(p, seed += 10, false, false);
      check_packed(p, seed += 10, true, true);
    }
  }
  kintsugi::set_num_threads(original);
}

TEST(packed_forward_every_isa) {
  // Packed under a limited ISA: the raw layout, run by the ordinary kernels.
  for (auto isa : {kintsugi::Isa::Portable, kintsugi::Isa::Avx2, kintsugi::Isa::Avx512}) {
    if (int(isa) > int(kintsugi::best_isa())) continue;
    kintsugi::set_isa_limit(isa);
    check_packed(make(1, 5, 9, 11, 48, 3, 3, 2, 2, 1, 1), 77, true, true);
    check_packed(make(2, 5, 9, 11, 64, 3, 3, 1, 1, 1, 1), 78, true, false);
  }
  kintsugi::set_isa_limit(kintsugi::best_isa());
}

TEST(packed_forward_propagates_nan_and_inf) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (const auto& p : {make(2, 4, 8, 8, 32, 3, 3, 1, 1, 1, 1), make(1, 4, 9, 9, 64, 1, 1, 2, 2)}) {
    std::vector<float> x = harness::random_floats(size_t(p.input_size()), 5);
    std::vector<float> w = harness::random_floats(size_t(p.weight_size()), 6, 0.1f, 1.0f);  // positive: no Inf - Inf
    x[0] = nan;
    x[size_t(p.input_size() - 1)] = inf;
    x[size_t(p.h * p.w + 2 * p.w + 2)] = -inf;
    std::vector<float> packed(size_t(kintsugi::conv2d_packed_weights_size(p)));
    kintsugi::conv2d_pack_weights(p, w.data(), packed.data());
    std::vector<float> y = output_buffer(p.output_size()), y_ref = output_buffer(p.output_size());
    kintsugi::conv2d_forward_packed(p, x.data(), packed.data(), nullptr, y.data());
    kintsugi::conv2d_forward_reference(p, x.data(), w.data(), nullptr, y_ref.data());
    int64_t nans = 0, infs = 0;
    for (int64_t i = 0; i < p.output_size(); ++i) {
      nans += std::isnan(y_ref[size_t(i)]);
      infs += std::isinf(y_ref[size_t(i)]);
    }
    CHECK(nans > 0 && infs > 0) << describe(p);
    expect_close("forward_packed with NaN/Inf", p, y, y_ref, p.output_size(), double(p.c_in * p.kh * p.kw), false);
  }
}

TEST(packed_weights_of_another_shape_raise_range_errors) {
  Conv2dParams p = make(1, 4, 6, 6, 32, 3, 3, 1, 1, 1, 1);
  std::vector<float> w(size_t(p.weight_size()), 1.0f), packed(size_t(kintsugi::conv2d_packed_weights_size(p)));
  kintsugi::conv2d_pack_weights(p, w.data(), packed.data());
  std::vector<float> x(size_t(p.input_size()), 1.0f), y(size_t(p.output_size()));
  Conv2dParams q = p;
  q.c_in = 8;  // 8 input channels: the packed [32, 4, 3, 3] does not fit
  std::vector<float> xq(size_t(q.input_size()), 1.0f);
  CHECK_THROWS_KIND(kintsugi::conv2d_forward_packed(q, xq.data(), packed.data(), nullptr, y.data()), kintsugi::ErrorKind::Range);
  std::vector<float> junk(packed.size(), 0.0f);
  CHECK_THROWS_KIND(kintsugi::conv2d_forward_packed(p, x.data(), junk.data(), nullptr, y.data()), kintsugi::ErrorKind::Range);
  // The same packed weights serve another input size.
  Conv2dParams r = p;
  r.h = 11;
  r.w = 5;
  std::vector<float> xr(size_t(r.input_size()), 1.0f), yr(size_t(r.output_size())), yr_ref(size_t(r.output_size()));
  kintsugi::conv2d_forward_packed(r, xr.data(), packed.data(), nullptr, yr.data());
  kintsugi::conv2d_forward_reference(r, xr.data(), w.data(), nullptr, yr_ref.data());
  CHECK(yr == yr_ref);
}

// ---- NHWC ----

namespace {
Conv2dParams nhwc(Conv2dParams p) {
  p.layout = kintsugi::ConvLayout::Nhwc;
  return p;
}

// [n, c, h, w] <-> [n, h, w, c]
std::vector<float> to_nhwc(const std::vector<float>& v, int64_t n, int64_t c, int64_t h, int64_t w) {
  std::vector<float> r(v.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < c; ++k)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) r[size_t(((i * h + y) * w + x) * c + k)] = v[size_t(((i * c + k) * h + y) * w + x)];
  return r;
}

// The NHWC path on permuted tensors against the NCHW path (bit for bit for small-integer fills).
void check_nhwc_vs_nchw(const Conv2dParams& p, uint32_t seed, bool exact) {
  const Conv2dParams q = nhwc(p);
  const int64_t xs = p.input_size(), ws = p.weight_size(), ys = p.output_size(), oh = p.out_h(), ow = p.out_w();
  auto gen = [&](int64_t n, uint32_t s) {
    return exact ? harness::random_small_ints(size_t(n), s, -3, 3) : harness::random_floats(size_t(n), s);
  };
  std::vector<float> x = gen(xs, seed), w = gen(ws, seed + 1), b = gen(p.c_out, seed + 2), dy = gen(ys, seed + 3);
  std::vector<float> xt = to_nhwc(x, p.n, p.c_in, p.h, p.w), dyt = to_nhwc(dy, p.n, p.c_out, oh, ow);
  const double cg = double(p.c_in / p.groups), kg = double(p.c_out / p.groups), kk = double(p.kh * p.kw), nq = double(p.n * oh * ow);

  std::vector<float> y = output_buffer(ys), yt = output_buffer(ys);
  kintsugi::conv2d_forward(p, x.data(), w.data(), b.data(), y.data());
  kintsugi::conv2d_forward(q, xt.data(), w.data(), b.data(), yt.data());
  CHECK(guard_intact(yt, ys)) << "nhwc forward wrote past its output: " << describe(p);
  yt.resize(size_t(ys));
  std::vector<float> yn = to_nhwc(std::vector<float>(y.begin(), y.begin() + ys), p.n, p.c_out, oh, ow);
  yn.resize(size_t(ys) + kGuard, kGuardValue);
  yt.resize(size_t(ys) + kGuard, kGuardValue);
  expect_close("nhwc forward vs nchw", q, yt, yn, ys, cg * kk + 1, exact);

  std::vector<float> dx = output_buffer(xs), dxt = output_buffer(xs);
  kintsugi::conv2d_backward_data(p, dy.data(), w.data(), dx.data());
  kintsugi::conv2d_backward_data(q, dyt.data(), w.data(), dxt.data());
  std::vector<float> dxn = to_nhwc(std::vector<float>(dx.begin(), dx.begin() + xs), p.n, p.c_in, p.h, p.w);
  dxn.resize(size_t(xs) + kGuard, kGuardValue);
  expect_close("nhwc backward_data vs nchw", q, dxt, dxn, xs, kg * kk, exact);

  std::vector<float> dw = output_buffer(ws), dwt = output_buffer(ws), db = output_buffer(p.c_out), dbt = output_buffer(p.c_out);
  kintsugi::conv2d_backward_weight(p, x.data(), dy.data(), dw.data(), db.data());
  kintsugi::conv2d_backward_weight(q, xt.data(), dyt.data(), dwt.data(), dbt.data());
  expect_close("nhwc backward_weight vs nchw", q, dwt, dw, ws, nq, exact);
  expect_close("nhwc backward_bias vs nchw", q, dbt, db, p.c_out, nq, exact);
}

std::vector<Conv2dParams> nhwc_shapes() {
  return {
      make(2, 8, 5, 7, 6, 1, 1),                          // 1x1 stride 1: x read in place
      make(2, 12, 9, 9, 10, 1, 1, 2, 2),                  // 1x1 stride 2
      make(3, 6, 9, 8, 8, 3, 3, 1, 1, 1, 1),              // 3x3 pad 1, batch 3
      make(1, 3, 23, 23, 16, 7, 7, 2, 2, 3, 3),           // 7x7 stride 2 (conv1-like)
      make(1, 5, 12, 11, 7, 3, 3, 1, 1, 2, 2, 2, 2),      // dilation 2
      make(2, 6, 7, 7, 10, 3, 3, 1, 1, 1, 1, 1, 1, 2),    // groups 2
      make(2, 8, 9, 9, 8, 1, 1, 1, 1, 0, 0, 1, 1, 2),     // pointwise, groups 2
      make(3, 16, 9, 10, 16, 3, 3, 1, 1, 1, 1, 1, 1, 16), // depthwise
      make(1, 5, 11, 9, 5, 5, 3, 2, 1, 2, 1, 1, 2, 5),    // depthwise strided, dilated, odd
      make(1, 3, 6, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 3),     // channel multiplier 2: grouped GEMM
      make(1, 7, 13, 11, 5, 4, 2, 3, 1, 1, 0, 2, 2),      // odd everything
      make(1, 2, 3, 4, 3, 2, 2, 1, 1, 2, 3),              // padding >= kernel
      make(1, 1, 1, 1, 1, 1, 1),                          // 1x1 everything
      make(3, 70, 7, 7, 130, 3, 3, 1, 1, 1, 1),           // several panels and row blocks
  };
}
}  // namespace

TEST(nhwc_matches_reference) {
  uint32_t seed = 3000;
  for (const auto& p : edge_shapes()) {
    check_all(nhwc(p), seed += 10, true);
    check_all(nhwc(p), seed += 10, false);
    check_all(nhwc(p), seed += 10, true, true);
  }
  std::mt19937 rng(7);
  for (int t = 0; t < 40; ++t) check_all(nhwc(random_shape(rng)), 4000 + uint32_t(t) * 7, t % 2 == 0);
}

TEST(nhwc_equals_nchw_on_permuted_tensors) {
  uint32_t seed = 5000;
  const int original = kintsugi::num_threads();
  for (int threads : {1, 2, 3}) {
    kintsugi::set_num_threads(threads);
    for (const auto& p : nhwc_shapes()) {
      check_nhwc_vs_nchw(p, seed += 10, true);
      check_nhwc_vs_nchw(p, seed += 10, false);
    }
  }
  kintsugi::set_num_threads(original);
}

TEST(nhwc_every_isa_and_large_layers) {
  for (auto isa : harness::supported_isas()) {
    kintsugi::set_isa_limit(isa);
    check_nhwc_vs_nchw(make(2, 6, 9, 8, 20, 3, 3, 1, 1, 1, 1), 61, true);
    check_nhwc_vs_nchw(make(1, 16, 9, 10, 16, 3, 3, 2, 2, 1, 1, 1, 1, 16), 62, false);
  }
  kintsugi::set_isa_limit(kintsugi::best_isa());
  // Column blocks over many rows (several forward tasks and backward blocks), exact.
  check_all(nhwc(make(2, 64, 30, 30, 32, 3, 3, 1, 1, 1, 1)), 63, true, true);
  check_all(nhwc(make(2, 64, 28, 28, 72, 1, 1)), 64, true);
  check_all(nhwc(make(2, 32, 20, 20, 32, 3, 3, 1, 1, 1, 1, 1, 1, 32)), 65, true);
}

TEST(nhwc_nan_and_inf_propagate) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (const auto& p0 : {make(2, 4, 8, 8, 5, 3, 3, 1, 1, 1, 1), make(2, 4, 8, 8, 6, 1, 1), make(2, 4, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4),
                         make(1, 4, 8, 8, 6, 3, 3, 2, 2, 1, 1, 1, 1, 2)}) {
    const Conv2dParams p = nhwc(p0);
    std::vector<float> x = harness::random_floats(size_t(p.input_size()), 5);
    std::vector<float> w = harness::random_floats(size_t(p.weight_size()), 6, 0.1f, 1.0f);  // positive: no Inf - Inf
    x[3] = nan;
    x[size_t(p.input_size() - 5)] = inf;
    x[size_t(p.w * p.c_in * 3 + 20)] = -inf;
    std::vector<float> y = output_buffer(p.output_size()), y_ref = output_buffer(p.output_size());
    kintsugi::conv2d_forward(p, x.data(), w.data(), nullptr, y.data());
    kintsugi::conv2d_forward_reference(p, x.data(), w.data(), nullptr, y_ref.data());
    int64_t nans = 0, infs = 0;
    for (int64_t i = 0; i < p.output_size(); ++i) {
      nans += std::isnan(y_ref[size_t(i)]);
      infs += std::isinf(y_ref[size_t(i)]);
    }
    CHECK(nans > 0 && infs > 0) << describe(p);
    expect_close("nhwc forward with NaN/Inf", p, y, y_ref, p.output_size(), double(p.c_in * 9), false);
    // Backward data: a NaN in dy reaches every dx its window covers.
    std::vector<float> dy = harness::random_floats(size_t(p.output_size()), 8);
    dy[7] = nan;
    std::vector<float> dx = output_buffer(p.input_size()), dx_ref = output_buffer(p.input_size());
    kintsugi::conv2d_backward_data(p, dy.data(), w.data(), dx.data());
    kintsugi::conv2d_backward_data_reference(p, dy.data(), w.data(), dx_ref.data());
    expect_close("nhwc backward_data with NaN", p, dx, dx_ref, p.input_size(), double(p.c_out * 9), false);
  }
}

TEST(nhwc_packed_forward) {
  uint32_t seed = 7000;
  for (const auto& p : nhwc_shapes()) {
    check_packed(nhwc(p), seed += 10, true, true);
    check_packed(nhwc(p), seed += 10, false, false);
  }
  for (const auto& p : packed_shapes()) check_packed(nhwc(p), seed += 10, true, false);
  // Packed for one layout, used with the other: a Range error naming both.
  Conv2dParams p = make(1, 4, 6, 6, 32, 3, 3, 1, 1, 1, 1);
  std::vector<float> w(size_t(p.weight_size()), 1.0f), packed(size_t(kintsugi::conv2d_packed_weights_size(p)));
  kintsugi::conv2d_pack_weights(p, w.data(), packed.data());
  std::vector<float> x(size_t(p.input_size()), 1.0f), y(size_t(p.output_size()));
  CHECK_THROWS_KIND(kintsugi::conv2d_forward_packed(nhwc(p), x.data(), packed.data(), nullptr, y.data()), kintsugi::ErrorKind::Range);
  std::vector<float> pn(size_t(kintsugi::conv2d_packed_weights_size(nhwc(p))));
  kintsugi::conv2d_pack_weights(nhwc(p), w.data(), pn.data());
  bool thrown = false;
  try {
    kintsugi::conv2d_forward_packed(p, x.data(), pn.data(), nullptr, y.data());
  } catch (const kintsugi::Error& e) {
    thrown = std::string(e.what()).find("NHWC weights packed") != std::string::npos;
  }
  CHECK(thrown) << "NCHW forward with NHWC-packed weights should name the layouts";
}

TEST_MAIN()
