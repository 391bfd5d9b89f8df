// A minimal test harness for the native unit tests (one executable per file, run by ctest).
// TEST(name) { CHECK(cond) << ...; } ; main() runs every test and returns non-zero on failure.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kintsugi/cpu.h"

namespace harness {

struct Case {
  const char* name;
  std::function<void()> fn;
};

inline std::vector<Case>& cases() {
  static std::vector<Case> all;
  return all;
}
inline int& failures() {
  static int n = 0;
  return n;
}

struct Register {
  Register(const char* name, std::function<void()> fn) { cases().push_back({name, std::move(fn)}); }
};

// Collects a failure message; prints it when destroyed.
class Failure {
 public:
  Failure(const char* file, int line, const char* expr) { out_ << file << ":" << line << ": CHECK(" << expr << ") failed "; }
  ~Failure() {
    std::fprintf(stderr, "%s\n", out_.str().c_str());
    ++failures();
  }
  template <typename T> Failure& operator<<(const T& v) {
    out_ << v;
    return *this;
  }

 private:
  std::ostringstream out_;
};

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Small integers make float sums exact, so results can be compared bit for bit.
inline std::vector<float> random_small_ints(size_t n, uint32_t seed, int lo = -3, int hi = 3) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = float(dist(rng));
  return v;
}

// Largest |a - b| / (atol + rtol * |b|) over the arrays; <= 1 means within tolerance.
// NaN must match NaN and infinities must match exactly.
inline double worst_error(const float* a, const float* b, size_t n, double atol, double rtol, size_t* where = nullptr) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    double x = a[i], y = b[i];
    double e;
    if (std::isnan(y) || std::isnan(x)) e = (std::isnan(x) && std::isnan(y)) ? 0 : INFINITY;
    else if (std::isinf(y) || std::isinf(x)) e = (x == y) ? 0 : INFINITY;
    else e = std::fabs(x - y) / (atol + rtol * std::fabs(y));
    if (e > worst) {
      worst = e;
      if (where) *where = i;
    }
  }
  return worst;
}

// Every ISA path this CPU supports, portable first (each test sweeps them with set_isa_limit).
inline std::vector<kintsugi::Isa> supported_isas() {
  std::vector<kintsugi::Isa> isas = {kintsugi::Isa::Portable};
  if (int(kintsugi::best_isa()) >= int(kintsugi::Isa::Avx2)) isas.push_back(kintsugi::Isa::Avx2);
  if (int(kintsugi::best_isa()) >= int(kintsugi::Isa::Avx512)) isas.push_back(kintsugi::Isa::Avx512);
  return isas;
}

// Restores the ISA limit when a test ends (also on an exception).
struct IsaScope {
  explicit IsaScope(kintsugi::Isa isa) { kintsugi::set_isa_limit(isa); }
  ~IsaScope() { kintsugi::set_isa_limit(kintsugi::Isa::Avx512); }
};

inline int run_all() {
  for (auto& c : cases()) {
    int before = failures();
    try {
      c.fn();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: unexpected exception: %s\n", c.name, e.what());
      ++failures();
    }
    std::printf("[%s] %s\n", failures() == before ? "PASS" : "FAIL", c.name);
  }
  std::printf("%zu tests, %d failed checks\n", cases().size(), failures());
  return failures() == 0 ? 0 : 1;
}

}  // namespace harness

#define HARNESS_CAT2(a, b) a##b
#define HARNESS_CAT(a, b) HARNESS_CAT2(a, b)
#define TEST(name)                                                                   \
  static void test_##name();                                                         \
  static harness::Register HARNESS_CAT(register_, name)(#name, test_##name);          \
  static void test_##name()
#define CHECK(cond) \
  if (cond) {       \
  } else            \
    harness::Failure(__FILE__, __LINE__, #cond)
// Expects `stmt` to throw kintsugi::Error of the given kind.
#define CHECK_THROWS_KIND(stmt, expected_kind)                                          \
  do {                                                                                  \
    bool thrown_ = false;                                                               \
    try {                                                                               \
      stmt;                                                                             \
    } catch (const kintsugi::Error& e_) {                                               \
      thrown_ = true;                                                                   \
      CHECK(e_.kind() == expected_kind) << "wrong kind for: " << e_.what();             \
    }                                                                                   \
    CHECK(thrown_) << "expected an exception from " #stmt;                              \
  } while (0)
#define TEST_MAIN() \
  int main() { return harness::run_all(); }
