// kintsugi::cuda::gemm against the CPU sgemm. Inputs are small integers / 8 (exact in fp16, bf16
// and tf32, and their products and sums are exact in fp32), so most comparisons are exact whatever
// the summation order; random-float cases use 2(k+2)eps relative to sum|alpha a b| + |beta c|.
// Operands sit in buffers whose padding is NaN (a kernel that reads outside an operand's extent
// poisons its result), C's padding and a guard after it hold a sentinel (a kernel that writes
// outside m x n is caught). Host-side argument checks run without a GPU; the GPU cases print
// "skipped: <reason>" when there is none.
#include <cfloat>
#include <cmath>
#include <cstring>
#include <string>

#include "harness.h"
#include "kintsugi/device.h"
#include "kintsugi/error.h"
#include "kintsugi/gemm.h"

#if defined(KINTSUGI_WITH_CUDA)
#include "kintsugi/cuda.h"

using namespace kintsugi;
using cuda::DType;

namespace {

const float kSentinel = -12345.5f;

// ---- fp16 / bf16 on the host (round to nearest even) ----
uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u, absx = x & 0x7fffffffu;
  if (absx > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // NaN
  if (absx >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 rounds to Inf
  if (absx < 0x38800000u) {                                 // below 2^-14: subnormal or zero
    float a;
    std::memcpy(&a, &absx, 4);
    return uint16_t(sign | uint32_t(std::nearbyint(a * 16777216.0f)));  // units of 2^-24
  }
  uint32_t mant = absx & 0x7fffffu;
  uint32_t h = ((((absx >> 23) - 127 + 15)) << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return uint16_t(sign | h);
}
float half_to_float(uint16_t h) {
  int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  float v;
  if (exp == 0) v = std::ldexp(float(mant), -24);
  else if (exp == 31) v = mant ? NAN : INFINITY;
  else v = std::ldexp(float(mant | 0x400), exp - 25);
  return (h & 0x8000) ? -v : v;
}
uint16_t float_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
float bf16_to_float(uint16_t b) {
  uint32_t x = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
// The value `f` becomes when stored as `t`.
float round_to(DType t, float f) {
  if (t == DType::F16) return half_to_float(float_to_half(f));
  if (t == DType::BF16) return bf16_to_float(float_to_bf16(f));
  return f;
}
std::vector<unsigned char> encode(DType t, const std::vector<float>& v) {
  size_t es = cuda::dtype_size(t);
  std::vector<unsigned char> out(v.size() * es);
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DType::F32) std::memcpy(&out[i * 4], &v[i], 4);
    else {
      uint16_t h = t == DType::F16 ? float_to_half(v[i]) : float_to_bf16(v[i]);
      std::memcpy(&out[i * 2], &h, 2);
    }
  }
  return out;
}
std::vector<float> decode(DType t, const std::vector<unsigned char>& bytes) {
  size_t es = cuda::dtype_size(t);
  std::vector<float> out(bytes.size() / es);
  for (size_t i = 0; i < out.size(); ++i) {
    if (t == DType::F32) std::memcpy(&out[i], &bytes[i * 4], 4);
    else {
      uint16_t h;
      std::memcpy(&h, &bytes[i * 2], 2);
      out[i] = t == DType::F16 ? half_to_float(h) : bf16_to_float(h);
    }
  }
  return out;
}

// A device buffer freed on scope exit.
struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(size_t bytes) { ptr = cuda::malloc_device(0, bytes ? bytes : 1); }
  ~DeviceBuffer() {
    try {
      cuda::free_device(0, ptr);
    } catch (...) {
    }
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

enum class Fill { Eighths, Floats };
// How the leading dimensions are chosen: Aligned rounds each up to 16 bytes (the 16-byte load
// path, with partial chunks at the edges when the row length is not a multiple of 8);
// Odd adds one element (the element-by-element path); Wide adds 24 elements after rounding.
enum class Ld { Aligned, Odd, Wide };

struct Case {
  DType ab = DType::F16, c = DType::F32;
  bool tf32 = false;
  bool ta = false, tb = false;
  int64_t m = 1, n = 1, k = 1;
  float alpha = 1.0f, beta = 0.0f;
  Ld ld = Ld::Aligned;
  Fill fill = Fill::Eighths;
  bool nan_c = false;       // C starts as NaN (beta must be 0: it must not propagate)
  bool inject = false;      // a NaN in A's row 0 and an Inf in B's last column
  int64_t misalign = 0;     // elements by which A's and B's base pointers are shifted
  uint32_t seed = 1;
};

std::string describe(const Case& c) {
  std::ostringstream s;
  s << cuda::dtype_name(c.ab) << "->" << cuda::dtype_name(c.c) << (c.tf32 ? " tf32" : "") << " ta=" << c.ta << " tb=" << c.tb << " m=" << c.m
    << " n=" << c.n << " k=" << c.k << " alpha=" << c.alpha << " beta=" << c.beta
    << " ld=" << (c.ld == Ld::Aligned ? "aligned" : c.ld == Ld::Odd ? "odd" : "wide") << (c.nan_c ? " nanC" : "")
    << (c.inject ? " nan/inf" : "") << (c.misalign ? " misaligned" : "");
  return s.str();
}

int64_t choose_ld(int64_t row, Ld ld, DType t) {
  int64_t per16 = 16 / int64_t(cuda::dtype_size(t));
  int64_t base = std::max<int64_t>(row, 1);
  if (ld == Ld::Odd) return base % 2 ? base + 2 : base + 1;  // odd: never a multiple of 16 bytes
  int64_t r = (base + per16 - 1) / per16 * per16;
  return ld == Ld::Wide ? r + 24 : r;
}

std::vector<float> values(size_t n, Fill f, uint32_t seed) {
  if (f == Fill::Floats) return harness::random_floats(n, seed);
  auto v = harness::random_small_ints(n, seed, -4, 4);
  for (auto& x : v) x /= 8.0f;
  return v;
}

// A rows x cols matrix stored row-major with leading dimension ld, padding = NaN.
struct Host {
  std::vector<float> data;
  int64_t rows = 0, cols = 0, ld = 0;
  float& at(int64_t i, int64_t j) { return data[size_t(i * ld + j)]; }
};
Host make_host(int64_t rows, int64_t cols, int64_t ld, float pad, Fill f, uint32_t seed, DType t) {
  Host h;
  h.rows = rows;
  h.cols = cols;
  h.ld = ld;
  h.data.assign(size_t(rows * ld + 16), pad);  // 16 guard elements after the end
  auto v = values(size_t(rows * cols), f, seed);
  size_t idx = 0;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) h.at(i, j) = round_to(t, v[idx++]);
  return h;
}

// Runs one case; returns false (after reporting) on mismatch.
bool run_case(const Case& c) {
  const int64_t a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
  const int64_t b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
  Host A = make_host(a_rows, a_cols, choose_ld(a_cols, c.ld, c.ab), NAN, c.fill, c.seed, c.ab);
  Host B = make_host(b_rows, b_cols, choose_ld(b_cols, c.ld, c.ab), NAN, c.fill, c.seed + 1000, c.ab);
  if (c.inject && c.m > 0 && c.k > 0 && c.n > 0) {
    if (c.ta) A.at(c.k / 2, 0) = NAN; else A.at(0, c.k / 2) = NAN;             // op(A)(0, k/2)
    if (c.tb) B.at(c.n - 1, 0) = INFINITY; else B.at(0, c.n - 1) = INFINITY;  // op(B)(0, n-1)
  }
  Host C = make_host(c.m, c.n, choose_ld(c.n, c.ld, c.c), kSentinel, c.fill, c.seed + 2000, c.c);
  if (c.nan_c)
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j) C.at(i, j) = NAN;
  for (size_t i = size_t(c.m * C.ld); i < C.data.size(); ++i) C.data[i] = kSentinel;

  // The CPU reference on the same (rounded) values.
  Host R = C;
  SgemmArgs g;
  g.trans_a = c.ta ? Transpose::Yes : Transpose::No;
  g.trans_b = c.tb ? Transpose::Yes : Transpose::No;
  g.m = c.m; g.n = c.n; g.k = c.k;
  g.alpha = c.alpha; g.beta = c.beta;
  g.a = A.data.data(); g.lda = A.ld;
  g.b = B.data.data(); g.ldb = B.ld;
  g.c = R.data.data(); g.ldc = R.ld;
  sgemm(g);

  // Device copies; A and B shifted by `misalign` elements inside their buffers.
  auto ea = encode(c.ab, A.data), eb = encode(c.ab, B.data), ec = encode(c.c, C.data);
  const size_t es = cuda::dtype_size(c.ab), shift = size_t(c.misalign) * es;
  DeviceBuffer da(ea.size() + shift), db(eb.size() + shift), dc(ec.size());
  unsigned char* pa = static_cast<unsigned char*>(da.ptr) + shift;
  unsigned char* pb = static_cast<unsigned char*>(db.ptr) + shift;
  cuda::copy(0, pa, ea.data(), ea.size(), cuda::CopyKind::HostToDevice);
  cuda::copy(0, pb, eb.data(), eb.size(), cuda::CopyKind::HostToDevice);
  cuda::copy(0, dc.ptr, ec.data(), ec.size(), cuda::CopyKind::HostToDevice);

  cuda::GemmArgs args;
  args.trans_a = c.ta; args.trans_b = c.tb;
  args.m = c.m; args.n = c.n; args.k = c.k;
  args.alpha = c.alpha; args.beta = c.beta;
  args.a = pa; args.lda = A.ld;
  args.b = pb; args.ldb = B.ld;
  args.c = dc.ptr; args.ldc = C.ld;
  args.ab = c.ab; args.c_type = c.c; args.tf32 = c.tf32;
  cuda::gemm(0, args, nullptr);
  cuda::synchronize_device(0);
  std::vector<unsigned char> out_bytes(ec.size());
  cuda::copy(0, out_bytes.data(), dc.ptr, out_bytes.size(), cuda::CopyKind::DeviceToHost);
  std::vector<float> out = decode(c.c, out_bytes);

  // Tolerance per element: fp32 accumulation (or tf32 rounding of random operands) plus the
  // rounding of the result to C's type.
  const double eps = (c.tf32 && c.fill == Fill::Floats) ? std::ldexp(1.0, -10) : 2.0 * double(c.k + 2) * FLT_EPSILON;
  const double out_eps = c.c == DType::F16 ? std::ldexp(1.0, -10) : c.c == DType::BF16 ? std::ldexp(1.0, -7) : 0.0;
  size_t bad = 0;
  std::string first;
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < C.ld; ++j) {
      size_t idx = size_t(i * C.ld + j);
      float got = out[idx], want = R.data[idx];
      bool ok;
      if (j >= c.n) {
        ok = got == round_to(c.c, kSentinel) && want == kSentinel;  // padding untouched
      } else {
        want = round_to(c.c, want);
        if (std::isnan(want) || std::isnan(got)) ok = std::isnan(want) && std::isnan(got);
        else if (std::isinf(want) || std::isinf(got)) ok = want == got;
        else {
          double mag = 0;
          for (int64_t kk = 0; kk < c.k; ++kk) {
            double av = c.ta ? A.at(kk, i) : A.at(i, kk), bv = c.tb ? B.at(j, kk) : B.at(kk, j);
            mag += std::fabs(av * bv);
          }
          mag = std::fabs(c.alpha) * mag + (c.beta != 0 ? std::fabs(c.beta * C.at(i, j)) : 0.0);
          double tol = eps * mag + out_eps * std::fabs(double(want)) + 1e-30;
          ok = std::fabs(double(got) - double(want)) <= tol;
        }
      }
      if (!ok && bad++ == 0) {
        std::ostringstream s;
        s << "at (" << i << ", " << j << "): got " << got << ", want " << want;
        first = s.str();
      }
    }
  }
  for (size_t idx = size_t(c.m * C.ld); idx < out.size(); ++idx)
    if (out[idx] != round_to(c.c, kSentinel) && bad++ == 0) first = "guard after C overwritten";
  CHECK(bad == 0) << describe(c) << ": " << bad << " wrong, first " << first;
  return bad == 0;
}

std::string g_skip;  // why GPU cases are skipped ("" when a GPU is there)
int g_cc = 0;

bool have_gpu() {
  static bool checked = false;
  if (!checked) {
    checked = true;
    std::string why;
    if (cuda::device_count(&why) == 0) g_skip = why.empty() ? "no CUDA device" : why;
    else {
      auto p = cuda::properties(0);
      g_cc = p.major * 10 + p.minor;
      std::printf("device 0: %s (sm_%d)\n", p.name.c_str(), g_cc);
    }
  }
  if (!g_skip.empty()) std::printf("skipped: %s\n", g_skip.c_str());
  return g_skip.empty();
}

const DType kAll[] = {DType::F32, DType::F16, DType::BF16};

// Every input type (and tf32), every transpose combination, over the given sizes.
void sweep(int64_t m, int64_t n, int64_t k, Ld ld, float alpha = 1.0f, float beta = 0.0f) {
  for (DType t : kAll)
    for (int tf = 0; tf < (t == DType::F32 ? 2 : 1); ++tf) {
      if (tf && g_cc < 80) continue;
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
          Case c;
          c.ab = t; c.c = DType::F32; c.tf32 = tf;
          c.ta = ta; c.tb = tb;
          c.m = m; c.n = n; c.k = k;
          c.alpha = alpha; c.beta = beta;
          c.ld = ld;
          c.seed = uint32_t(m * 7 + n * 13 + k * 17 + ta * 2 + tb);
          run_case(c);
        }
    }
}

}  // namespace

// ---- Host-side checks: these throw before any CUDA call, so they run without a GPU ----

TEST(rejects_short_leading_dimensions) {
  cuda::GemmArgs g;
  void* fake = reinterpret_cast<void*>(uintptr_t(0x1000));
  g.m = 16; g.n = 8; g.k = 64;
  g.a = fake; g.b = fake; g.c = fake;
  g.lda = 32; g.ldb = 8; g.ldc = 8;
  g.ab = DType::F16;
  try {
    cuda::gemm(0, g, nullptr);
    CHECK(false) << "no error for lda 32 < k 64";
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Range) << e.what();
    CHECK(std::string(e.what()) == "Expected lda ≥ 64 for a but received 32") << e.what();
  }
  g.lda = 64;
  g.trans_a = true;  // stored k x m: rows of m = 16
  g.lda = 15;
  CHECK_THROWS_KIND(cuda::gemm(0, g, nullptr), ErrorKind::Range);
  g.lda = 16;
  g.ldb = 7;
  CHECK_THROWS_KIND(cuda::gemm(0, g, nullptr), ErrorKind::Range);
  g.ldb = 8;
  g.trans_b = true;  // stored n x k: rows of k = 64
  CHECK_THROWS_KIND(cuda::gemm(0, g, nullptr), ErrorKind::Range);
  g.ldb = 64;
  g.ldc = 7;
  CHECK_THROWS_KIND(cuda::gemm(0, g, nullptr), ErrorKind::Range);
}

TEST(rejects_bad_sizes_types_and_pointers) {
  void* fake = reinterpret_cast<void*>(uintptr_t(0x1000));
  cuda::GemmArgs g;
  g.m = 4; g.n = 4; g.k = 4;
  g.a = fake; g.b = fake; g.c = fake;
  g.lda = g.ldb = g.ldc = 4;
  auto with = [&](auto change) {
    cuda::GemmArgs h = g;
    change(h);
    return h;
  };
  CHECK_THROWS_KIND(cuda::gemm(0, with([](cuda::GemmArgs& h) { h.m = -1; }), nullptr), ErrorKind::Range);
  CHECK_THROWS_KIND(cuda::gemm(0, with([](cuda::GemmArgs& h) { h.n = -1; }), nullptr), ErrorKind::Range);
  CHECK_THROWS_KIND(cuda::gemm(0, with([](cuda::GemmArgs& h) { h.k = -1; }), nullptr), ErrorKind::Range);
  // C must be float32 or the inputs' type.
  CHECK_THROWS_KIND(cuda::gemm(0, with([](cuda::GemmArgs& h) { h.ab = DType::F16; h.c_type = DType::BF16; }), nullptr), ErrorKind::Type);
  CHECK_THROWS_KIND(cuda::gemm(0, with([](cuda::GemmArgs& h) { h.ab = DType::F32; h.c_type = DType::F16; }), nullptr), ErrorKind::Type);
  // tf32 is a mode of float32 inputs only.
  CHECK_THROWS_KIND(cuda::gemm(0, with([](cuda::GemmArgs& h) { h.ab = DType::BF16; h.tf32 = true; }), nullptr), ErrorKind::Type);
  CHECK_THROWS_KIND(cuda::gemm(0, with([](cuda::GemmArgs& h) { h.a = nullptr; }), nullptr), ErrorKind::Range);
  CHECK_THROWS_KIND(cuda::gemm(0, with([](cuda::GemmArgs& h) { h.b = nullptr; }), nullptr), ErrorKind::Range);
  CHECK_THROWS_KIND(cuda::gemm(0, with([](cuda::GemmArgs& h) { h.c = nullptr; }), nullptr), ErrorKind::Range);
  // An empty product needs no pointers and touches no device.
  cuda::gemm(0, with([](cuda::GemmArgs& h) { h.m = 0; h.a = h.b = h.c = nullptr; }), nullptr);
  cuda::gemm(0, with([](cuda::GemmArgs& h) { h.n = 0; h.a = h.b = h.c = nullptr; h.ldc = 0; }), nullptr);
}

// ---- GPU cases ----

TEST(tiny_and_odd_sizes) {
  if (!have_gpu()) return;
  sweep(1, 1, 1, Ld::Aligned);
  sweep(1, 1, 1, Ld::Odd);
  sweep(67, 35, 129, Ld::Aligned);  // 16-byte loads with partial chunks at the k and n edges
  sweep(67, 35, 129, Ld::Odd);      // element-by-element loads
  sweep(1, 513, 17, Ld::Aligned);
  sweep(513, 1, 17, Ld::Odd);
}

TEST(multi_tile_sizes) {
  if (!have_gpu()) return;
  sweep(256, 256, 64, Ld::Aligned);  // whole tiles only
  sweep(300, 260, 100, Ld::Wide);    // partial tiles in both dimensions, ld > row length
  sweep(129, 383, 200, Ld::Odd);
}

TEST(large_k) {
  if (!have_gpu()) return;
  sweep(33, 70, 8191, Ld::Aligned);
  sweep(17, 9, 8191, Ld::Odd);
}

TEST(alpha_beta_and_nan_c) {
  if (!have_gpu()) return;
  sweep(70, 90, 45, Ld::Aligned, 1.5f, -0.5f);
  sweep(70, 90, 45, Ld::Odd, -2.0f, 0.25f);
  for (DType t : kAll)
    for (int ta = 0; ta < 2; ++ta) {
      Case c;
      c.ab = t; c.ta = ta; c.tb = !ta;
      c.m = 130; c.n = 131; c.k = 40;
      c.alpha = 0.75f; c.beta = 0.0f; c.nan_c = true;  // beta == 0: C is not read
      run_case(c);
      c.ld = Ld::Odd;
      run_case(c);
    }
}

TEST(k_zero_and_alpha_zero_scale_c) {
  if (!have_gpu()) return;
  for (DType t : kAll) {
    for (DType ct : {DType::F32, t}) {
      Case c;
      c.ab = t; c.c = ct;
      c.m = 37; c.n = 41; c.k = 0;
      c.beta = 0.5f;
      run_case(c);  // C = beta * C
      c.beta = 0.0f; c.nan_c = true;
      run_case(c);  // C = 0, NaN not propagated
      c.k = 20; c.alpha = 0.0f; c.beta = -1.0f; c.nan_c = false;
      run_case(c);  // alpha == 0: C = beta * C
    }
  }
}

TEST(nan_and_inf_propagate) {
  if (!have_gpu()) return;
  for (DType t : kAll)
    for (int tf = 0; tf < (t == DType::F32 && g_cc >= 80 ? 2 : 1); ++tf)
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
          Case c;
          c.ab = t; c.tf32 = tf; c.ta = ta; c.tb = tb;
          c.m = 45; c.n = 50; c.k = 70;
          c.inject = true;
          run_case(c);
        }
}

TEST(half_and_bf16_outputs) {
  if (!have_gpu()) return;
  for (DType t : {DType::F16, DType::BF16})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (Ld ld : {Ld::Aligned, Ld::Odd}) {
          Case c;
          c.ab = t; c.c = t; c.ta = ta; c.tb = tb;
          c.m = 150; c.n = 140; c.k = 90;
          c.alpha = 1.5f; c.beta = -0.5f; c.ld = ld;
          run_case(c);
        }
}

TEST(misaligned_pointers_and_random_floats) {
  if (!have_gpu()) return;
  for (DType t : kAll)
    for (int ta = 0; ta < 2; ++ta) {
      Case c;
      c.ab = t; c.ta = ta; c.tb = ta;
      c.m = 100; c.n = 72; c.k = 64;
      c.misalign = 1;  // aligned leading dimensions but a base pointer off 16 bytes
      run_case(c);
    }
  for (int tf = 0; tf < (g_cc >= 80 ? 2 : 1); ++tf)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        Case c;
        c.ab = DType::F32; c.tf32 = tf; c.ta = ta; c.tb = tb;
        c.m = 200; c.n = 190; c.k = 333;
        c.fill = Fill::Floats;
        c.alpha = 0.7f; c.beta = 0.3f;
        run_case(c);
      }
}

TEST(tf32_unsupported_before_sm80) {
  if (!have_gpu()) return;
  if (g_cc >= 80) return;  // supported: covered above
  Case c;
  c.ab = DType::F32; c.tf32 = true;
  CHECK_THROWS_KIND(run_case(c), ErrorKind::Unsupported);
}

TEST_MAIN()

#else  // the CUDA backend is not built

TEST(cuda_gemm_not_built) { std::printf("skipped: the CUDA backend is not built\n"); }
TEST_MAIN()

#endif
