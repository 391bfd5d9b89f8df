// kintsugi::cuda::gemm_checked (global and thread-level ABFT) against an fp64 CPU reference.
// Host-side argument checks run without a GPU; the GPU cases print "skipped: <reason>" without
// one. Clean runs over odd shapes (k up to 8191, fp32/fp16/bf16, one-signed and mixed data) must
// raise no flag; single accumulator flips whose size exceeds the check's bound must be detected,
// located and corrected (C equal to the clean run); two flips in one thread tile are recomputed.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "harness.h"
#include "kintsugi/device.h"
#include "kintsugi/error.h"

#if defined(KINTSUGI_WITH_CUDA)
#include "kintsugi/cuda.h"
#include "kintsugi/cuda_abft.h"

using namespace kintsugi;
using cuda::AbftScheme;
using cuda::DType;

namespace {

std::string g_skip;
bool have_gpu() {
  static bool checked = false;
  if (!checked) {
    checked = true;
    std::string why;
    if (cuda::device_count(&why) == 0) g_skip = why.empty() ? "no CUDA device" : why;
    else std::printf("device 0: %s\n", cuda::properties(0).name.c_str());
  }
  if (!g_skip.empty()) std::printf("skipped: %s\n", g_skip.c_str());
  return g_skip.empty();
}

struct DevBuf {
  void* p = nullptr;
  explicit DevBuf(size_t bytes) : p(cuda::malloc_device(0, bytes ? bytes : 16)) {}
  ~DevBuf() { cuda::free_device(0, p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};

// A stored matrix on the device in dtype t, and its values as the device sees them (rounded).
struct Operand {
  std::vector<float> host;  // rounded to t, row-major stored layout
  DevBuf dev;
  Operand(const std::vector<float>& v, DType t) : dev(v.size() * cuda::dtype_size(t)) {
    DevBuf f32(v.size() * 4);
    cuda::copy(0, f32.p, v.data(), v.size() * 4, cuda::CopyKind::HostToDevice);
    host.resize(v.size());
    if (t == DType::F32) {
      cuda::copy(0, dev.p, f32.p, v.size() * 4, cuda::CopyKind::DeviceToDevice);
      host = v;
    } else {
      cuda::set_device(0);
      cuda::convert(DType::F32, f32.p, t, dev.p, int64_t(v.size()), nullptr);
      cuda::convert(t, dev.p, DType::F32, f32.p, int64_t(v.size()), nullptr);
      cuda::copy(0, host.data(), f32.p, v.size() * 4, cuda::CopyKind::DeviceToHost);
    }
  }
};

struct Problem {
  int64_t m, n, k;
  bool ta, tb;
  DType t;
  float lo;  // data in [lo, 1]
};

struct Run {
  std::vector<float> c;
  cuda::CudaAbftReport report;
};

struct Setup {
  Problem pr;
  Operand A, B;
  std::vector<double> ref, mag;  // exact op(A) op(B) and sum |a b| per element
  Setup(const Problem& p, uint32_t seed)
      : pr(p), A(harness::random_floats(size_t(p.m * p.k), seed, p.lo, 1.0f), p.t),
        B(harness::random_floats(size_t(p.k * p.n), seed + 1, p.lo, 1.0f), p.t) {
    ref.assign(size_t(p.m * p.n), 0.0);
    mag.assign(size_t(p.m * p.n), 0.0);
    for (int64_t i = 0; i < p.m; ++i)
      for (int64_t q = 0; q < p.k; ++q) {
        const double a = a_at(i, q);
        for (int64_t j = 0; j < p.n; ++j) {
          const double b = b_at(q, j);
          ref[size_t(i * p.n + j)] += a * b;
          mag[size_t(i * p.n + j)] += std::fabs(a * b);
        }
      }
  }
  double a_at(int64_t i, int64_t q) const { return pr.ta ? A.host[size_t(q * pr.m + i)] : A.host[size_t(i * pr.k + q)]; }
  double b_at(int64_t q, int64_t j) const { return pr.tb ? B.host[size_t(j * pr.k + q)] : B.host[size_t(q * pr.n + j)]; }
  cuda::GemmArgs args(void* c) const {
    cuda::GemmArgs g;
    g.trans_a = pr.ta; g.trans_b = pr.tb;
    g.m = pr.m; g.n = pr.n; g.k = pr.k;
    g.a = A.dev.p; g.lda = pr.ta ? pr.m : pr.k;
    g.b = B.dev.p; g.ldb = pr.tb ? pr.k : pr.n;
    g.c = c; g.ldc = pr.n;
    g.ab = pr.t;
    return g;
  }
  Run run(const cuda::CudaAbftOptions& o) const {
    DevBuf c(size_t(pr.m * pr.n) * 4);
    cuda::memset_async(0, c.p, 0xff, size_t(pr.m * pr.n) * 4, nullptr);  // NaN: every element must be written
    Run r;
    r.report = cuda::gemm_checked(0, args(c.p), o, nullptr);
    r.c.resize(size_t(pr.m * pr.n));
    cuda::copy(0, r.c.data(), c.p, r.c.size() * 4, cuda::CopyKind::DeviceToHost);
    return r;
  }
  // Largest |c - ref| / (2 (k + 2) eps32 f sum|ab|): <= 1 is within the deterministic fp32 bound.
  double worst(const std::vector<float>& c, double factor) const {
    double w = 0;
    for (size_t e = 0; e < c.size(); ++e) {
      const double err = std::fabs(double(c[e]) - ref[e]), bd = 2.0 * double(pr.k + 2) * 0x1p-24 * factor * mag[e] + 1e-30;
      w = std::max(w, std::isnan(err) ? INFINITY : err / bd);
    }
    return w;
  }
};

std::string describe(const Problem& p, const cuda::CudaAbftOptions& o) {
  return std::string(o.scheme == AbftScheme::Global ? "global" : o.check == AbftCheck::OneSided ? "thread/one-sided" : "thread/two-sided") + " " +
         cuda::dtype_name(p.t) + " " + std::to_string(p.m) + "x" + std::to_string(p.n) + "x" + std::to_string(p.k) + (p.ta ? " tA" : "") +
         (p.tb ? " tB" : "") + " lo=" + std::to_string(p.lo);
}

std::vector<cuda::CudaAbftOptions> all_schemes() {
  std::vector<cuda::CudaAbftOptions> out;
  cuda::CudaAbftOptions g;
  g.scheme = AbftScheme::Global;
  out.push_back(g);
  cuda::CudaAbftOptions t1;
  t1.scheme = AbftScheme::Thread;
  t1.check = AbftCheck::OneSided;
  out.push_back(t1);
  cuda::CudaAbftOptions t2 = t1;
  t2.check = AbftCheck::TwoSided;
  out.push_back(t2);
  return out;
}

float flip(float v, int bit) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u ^= 1u << bit;
  std::memcpy(&v, &u, 4);
  return v;
}

// The smallest magnitude among the checks that see element (r, c): its row (global), or its
// thread tile's column (and row, two-sided) — rows r0 + {0..3, 64..67} of the 128-row CTA tile.
double check_magnitude(const Setup& s, const cuda::CudaAbftOptions& o, int64_t r, int64_t c) {
  const Problem& p = s.pr;
  if (o.scheme == AbftScheme::Global) {
    double m = 0;
    for (int64_t j = 0; j < p.n; ++j) m += s.mag[size_t(r * p.n + j)];
    return m;
  }
  auto lines = [](int64_t x, int64_t limit) {
    const int64_t base = x / 128 * 128 + (x % 64) / 4 * 4;
    std::vector<int64_t> v;
    for (int i = 0; i < 8; ++i) {
      const int64_t y = base + (i & 3) + 64 * (i >> 2);
      if (y < limit) v.push_back(y);
    }
    return v;
  };
  double col = 0, row = 0;
  for (int64_t i : lines(r, p.m)) col += s.mag[size_t(i * p.n + c)];
  for (int64_t j : lines(c, p.n)) row += s.mag[size_t(r * p.n + j)];
  return o.check == AbftCheck::TwoSided ? std::min(col, row) : col;
}

}  // namespace

TEST(host_argument_checks) {
  cuda::GemmArgs g;
  g.m = 4; g.n = 5; g.k = 6;
  g.lda = 6; g.ldb = 5; g.ldc = 5;
  int x = 0;
  g.a = &x; g.b = &x; g.c = &x;  // never dereferenced by the checks
  cuda::CudaAbftOptions o;
  cuda::validate_gemm_checked(g, o);  // fine as given
  {
    auto b = g;
    b.beta = 1;
    CHECK_THROWS_KIND(cuda::validate_gemm_checked(b, o), ErrorKind::Range);
  }
  {
    auto b = g;
    b.c_type = DType::F16;
    b.ab = DType::F16;
    CHECK_THROWS_KIND(cuda::validate_gemm_checked(b, o), ErrorKind::Type);
  }
  {
    auto b = g;
    b.tf32 = true;
    CHECK_THROWS_KIND(cuda::validate_gemm_checked(b, o), ErrorKind::Range);
  }
  {
    auto b = g;
    b.lda = 3;
    CHECK_THROWS_KIND(cuda::validate_gemm_checked(b, o), ErrorKind::Range);
  }
  auto bad = [&](auto edit, ErrorKind kind) {
    cuda::CudaAbftOptions p = o;
    edit(p);
    CHECK_THROWS_KIND(cuda::validate_gemm_checked(g, p), kind);
  };
  bad([](cuda::CudaAbftOptions& p) { p.tolerance = 0; }, ErrorKind::Range);
  bad([](cuda::CudaAbftOptions& p) { p.tolerance = NAN; }, ErrorKind::Range);
  bad([](cuda::CudaAbftOptions& p) { p.max_events = 0; }, ErrorKind::Range);
  bad([](cuda::CudaAbftOptions& p) { p.faults[0] = {4, 0, 3}; }, ErrorKind::Range);
  bad([](cuda::CudaAbftOptions& p) { p.faults[1] = {0, 5, 3}; }, ErrorKind::Range);
  bad([](cuda::CudaAbftOptions& p) { p.faults[0] = {0, 0, 32}; }, ErrorKind::Range);
  // Workspace: 32-byte header + 64 bytes per event, plus 2k doubles when the global scheme sums B itself.
  o.max_events = 2;
  CHECK(cuda::abft_workspace_bytes(g, o) == 32 + 128 + 96) << cuda::abft_workspace_bytes(g, o);
  o.scheme = AbftScheme::Thread;
  CHECK(cuda::abft_workspace_bytes(g, o) == 32 + 128);
  CHECK(cuda::abft_bound_factor(DType::F32, 8191, AbftScheme::Global) == 1.0);
  CHECK(cuda::abft_bound_factor(DType::F16, 8192, AbftScheme::Global) == 32.0);
  CHECK(cuda::abft_bound_factor(DType::F16, 8192, AbftScheme::Thread) == 1.0);
  CHECK_THROWS_KIND(cuda::flip_bit(0, DType::F16, &x, 0, 16, nullptr), ErrorKind::Range);
  CHECK_THROWS_KIND(cuda::flip_bit(0, DType::F32, &x, -1, 3, nullptr), ErrorKind::Range);
}

TEST(clean_runs_raise_no_flags) {
  if (!have_gpu()) return;
  const Problem problems[] = {
      {1, 64, 13, false, false, DType::F32, -1}, {7, 33, 129, true, false, DType::F32, 0},   {130, 257, 300, false, true, DType::F32, -1},
      {257, 129, 1000, true, true, DType::F32, 0}, {64, 96, 8191, false, false, DType::F32, 0}, {200, 131, 4097, false, true, DType::F32, -1},
      {33, 70, 300, false, false, DType::F16, -1}, {129, 200, 2049, false, true, DType::F16, 0}, {48, 64, 8191, false, false, DType::F16, 0},
      {100, 90, 700, true, false, DType::BF16, 0},
  };
  uint32_t seed = 1;
  double worst_ratio = 0;
  for (const Problem& p : problems) {
    Setup s(p, seed += 7);
    for (const auto& o : all_schemes()) {
      Run r = s.run(o);
      const double f = cuda::abft_bound_factor(p.t, p.k, o.scheme);
      CHECK(r.report.event_count == 0) << describe(p, o) << ": " << r.report.event_count << " false flags, max ratio " << r.report.max_ratio;
      CHECK(r.report.max_ratio < 0.5) << describe(p, o) << ": max ratio " << r.report.max_ratio;
      CHECK(!r.report.fault_fired);
      CHECK(s.worst(r.c, f) <= 1.0) << describe(p, o) << ": result off the reference by " << s.worst(r.c, f);
      worst_ratio = std::max(worst_ratio, r.report.max_ratio);
    }
  }
  std::printf("largest clean |residual| / bound: %.4f\n", worst_ratio);
}

TEST(accumulator_flips_are_located_and_corrected) {
  if (!have_gpu()) return;
  int asserted = 0, small = 0;
  for (DType t : {DType::F32, DType::F16}) {
    const Problem p{150, 200, 517, false, t == DType::F16, t, -1};
    Setup s(p, 42);
    for (const auto& base : all_schemes()) {
      const Run clean = s.run(base);
      CHECK(clean.report.event_count == 0) << describe(p, base);
      std::mt19937 rng(7);
      for (int trial = 0; trial < 12; ++trial) {
        const int64_t r = int64_t(rng() % p.m), c = int64_t(rng() % p.n);
        const int bit = 30 - int(rng() % 6);  // exponent bits 25..30
        const float v = clean.c[size_t(r * p.n + c)], w = flip(v, bit);
        const double f = cuda::abft_bound_factor(p.t, p.k, base.scheme);
        const double bound = kAbftBoundScale * 0x1p-24 * f * check_magnitude(s, base, r, c);
        cuda::CudaAbftOptions o = base;
        o.faults[0] = {r, c, bit};
        Run hit = s.run(o);
        CHECK(hit.report.fault_fired) << describe(p, o);
        const double delta = std::fabs(double(w) - double(v));
        if (!(delta > 4 * bound) && std::isfinite(w)) {  // too small for this check to see: not asserted
          ++small;
          continue;
        }
        ++asserted;
        const std::string what = describe(p, o) + " flip (" + std::to_string(r) + ", " + std::to_string(c) + ") bit " + std::to_string(bit);
        CHECK(hit.report.event_count >= 1) << what << ": not detected";
        bool located = false;
        for (const auto& e : hit.report.events) located |= e.row == r && e.col == c && e.action == AbftAction::Corrected;
        CHECK(located) << what << ": not located/corrected (" << hit.report.events.size() << " events)";
        double diff = 0;
        for (size_t e = 0; e < clean.c.size(); ++e) diff = std::max(diff, std::fabs(double(hit.c[e]) - clean.c[e]) / (1e-30 + s.mag[e]));
        CHECK(diff <= 2.0 * (p.k + 2) * 0x1p-24 * f) << what << ": corrected C differs from the clean run by " << diff << " x sum|ab|";
        // Reporting only (correct = false): detected, located, C left as it was.
        o.correct = false;
        Run seen = s.run(o);
        CHECK(seen.report.event_count >= 1 && !seen.report.events.empty() && seen.report.events[0].action == AbftAction::Detected) << what;
      }
    }
  }
  std::printf("asserted %d flips, %d below their check's bound\n", asserted, small);
  CHECK(asserted >= 40);
}

TEST(two_errors_in_one_tile_are_recomputed) {
  if (!have_gpu()) return;
  const Problem p{150, 200, 300, false, false, DType::F32, 0};  // one-signed: C near k/4, so a bit-30 flip is far above any bound
  Setup s(p, 5);
  auto near = [&](const std::vector<float>& c) { return s.worst(c, 1.0) <= 1.0; };
  // Thread, two-sided: (3, 5) and (66, 69) share thread tile (tx = 1, ty = 0) of CTA (0, 0).
  cuda::CudaAbftOptions t;
  t.scheme = AbftScheme::Thread;
  t.check = AbftCheck::TwoSided;
  t.faults[0] = {1, 5, 30};
  t.faults[1] = {66, 69, 30};
  Run r = s.run(t);
  CHECK(r.report.event_count == 1) << r.report.event_count;
  CHECK(!r.report.events.empty() && r.report.events[0].action == AbftAction::Recomputed);
  CHECK(near(r.c)) << "thread: " << s.worst(r.c, 1.0);
  // Global: two faults in one row -> the row is recomputed; in two rows -> each corrected.
  cuda::CudaAbftOptions g;
  g.scheme = AbftScheme::Global;
  g.faults[0] = {10, 3, 30};
  g.faults[1] = {10, 150, 30};
  r = s.run(g);
  CHECK(r.report.event_count == 1 && !r.report.events.empty() && r.report.events[0].action == AbftAction::Recomputed);
  CHECK(near(r.c)) << "global, one row: " << s.worst(r.c, 1.0);
  g.faults[1] = {90, 150, 30};
  r = s.run(g);
  CHECK(r.report.event_count == 2) << r.report.event_count;
  for (const auto& e : r.report.events) CHECK(e.action == AbftAction::Corrected);
  CHECK(near(r.c)) << "global, two rows: " << s.worst(r.c, 1.0);
}

TEST(weight_sums_and_input_flips) {
  if (!have_gpu()) return;
  const Problem p{40, 70, 90, false, true, DType::F32, -1};
  Setup s(p, 9);
  DevBuf sums(size_t(2 * p.k) * 8);
  cuda::abft_weight_sums(0, p.t, p.tb, p.k, p.n, s.B.dev.p, p.k, static_cast<double*>(sums.p), nullptr);
  std::vector<double> h(size_t(2 * p.k));
  cuda::copy(0, h.data(), sums.p, h.size() * 8, cuda::CopyKind::DeviceToHost);
  double worst = 0;
  for (int64_t q = 0; q < p.k; ++q) {
    double sv = 0, av = 0;
    for (int64_t j = 0; j < p.n; ++j) {
      sv += s.b_at(q, j);
      av += std::fabs(s.b_at(q, j));
    }
    worst = std::max({worst, std::fabs(h[size_t(q)] - sv), std::fabs(h[size_t(p.k + q)] - av)});
  }
  CHECK(worst < 1e-9) << worst;
  cuda::CudaAbftOptions o;
  o.weight_sums = static_cast<const double*>(sums.p);
  o.faults[0] = {7, 11, 30};
  Run r = s.run(o);
  CHECK(r.report.event_count == 1 && !r.report.events.empty() && r.report.events[0].row == 7 && r.report.events[0].col == 11);
  // flip_bit flips exactly one bit of one element.
  cuda::flip_bit(0, DType::F32, s.A.dev.p, 3, 31, nullptr);
  float back = 0;
  cuda::copy(0, &back, static_cast<float*>(s.A.dev.p) + 3, 4, cuda::CopyKind::DeviceToHost);
  CHECK(back == -s.A.host[3]) << back << " vs " << s.A.host[3];
}

#else
TEST(cuda_abft_not_built) { std::printf("skipped: the CUDA backend is not built\n"); }
#endif

TEST_MAIN()
