// Buffers, the timing harness, peers and row output shared by the suites.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "bench.h"
#include "kintsugi/threadpool.h"

namespace kbench {

// ---------------------------------------------------------------- helpers

std::string fmt(const char* format, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, format);
  std::vsnprintf(buf, sizeof(buf), format, ap);
  va_end(ap);
  return buf;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (unsigned char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (ch < 0x20) out += fmt("\\u%04x", ch);
        else out += char(ch);
    }
  }
  return out;
}

kintsugi::SgemmArgs sgemm_args(kintsugi::Layout layout, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                               const float* b, int64_t ldb, float* c, int64_t ldc) {
  kintsugi::SgemmArgs g = kintsugi::row_major_args(m, n, k, a, lda, b, ldb, c, ldc);
  g.layout = layout;
  g.trans_a = ta ? kintsugi::Transpose::Yes : kintsugi::Transpose::No;
  g.trans_b = tb ? kintsugi::Transpose::Yes : kintsugi::Transpose::No;
  return g;
}

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---------------------------------------------------------------- buffers

template <typename T> Buffer<T>::Buffer(size_t n) : n_(n) {
  const size_t bytes = kGuardBytes * 2 + (n * sizeof(T) + 63) / 64 * 64;
  void* mem = nullptr;
  if (posix_memalign(&mem, 64, bytes) != 0 || !mem) throw std::bad_alloc();
  base_ = static_cast<unsigned char*>(mem);
  data_ = reinterpret_cast<T*>(base_ + kGuardBytes);
  std::memset(base_, 0xA5, kGuardBytes);
  std::memset(reinterpret_cast<unsigned char*>(data_) + n * sizeof(T), 0xA5, kGuardBytes);
}

template <typename T> Buffer<T>& Buffer<T>::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    std::free(base_);
    base_ = o.base_;
    data_ = o.data_;
    n_ = o.n_;
    o.base_ = nullptr;
    o.data_ = nullptr;
    o.n_ = 0;
  }
  return *this;
}

template <typename T> Buffer<T>::~Buffer() { std::free(base_); }

template <typename T> bool Buffer<T>::guards_ok() const {
  if (!base_) return true;
  const unsigned char* after = reinterpret_cast<const unsigned char*>(data_) + n_ * sizeof(T);
  for (size_t i = 0; i < kGuardBytes; ++i)
    if (base_[i] != 0xA5 || after[i] != 0xA5) return false;
  return true;
}

namespace {
inline uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
template <typename T> void fill_chunk(T* p, size_t n, uint64_t seed) {
  uint64_t s = seed;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t r = splitmix(s);
    if constexpr (sizeof(T) == 1) {
      p[i] = T(r);
    } else {
      p[i] = T(double(r >> 40) * (2.0 / double(1ull << 24)) - 1.0);  // [-1, 1)
    }
  }
}
}  // namespace

template <typename T> void Buffer<T>::fill_random(uint64_t seed) {
  constexpr size_t kChunk = 1 << 16;
  const int64_t chunks = int64_t((n_ + kChunk - 1) / kChunk);
  T* d = data_;
  const size_t n = n_;
  kintsugi::parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const size_t b = size_t(c) * kChunk;
      fill_chunk(d + b, std::min(kChunk, n - b), seed * 0x100000001B3ull + uint64_t(c));
    }
  });
}

template <typename T> void Buffer<T>::fill_zero() { std::memset(data_, 0, n_ * sizeof(T)); }

template class Buffer<float>;
template class Buffer<uint8_t>;
template class Buffer<double>;

// ---------------------------------------------------------------- peers

OpenBlas& openblas() {
  static OpenBlas ob;
  return ob;
}

void load_openblas() {
  OpenBlas& ob = openblas();
  // OpenBLAS's idle workers spin for 2^28 cycles (~0.1 s) after each call before they sleep; timed
  // interleaved with our kernels on a few cores, that spinning would steal our cores. Our pool's
  // workers sleep at once, so the peer gets the same: a short spin (2^4 cycles) unless set.
  setenv("OPENBLAS_THREAD_TIMEOUT", "4", 0);
  const char* names[] = {"libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0"};
  void* h = nullptr;
  std::string errors;
  for (const char* name : names) {
    h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (h) {
      ob.path = name;
      break;
    }
    const char* e = dlerror();
    if (!errors.empty()) errors += "; ";
    errors += e ? e : name;
  }
  if (!h) {
    ob.why = "OpenBLAS not found (" + errors + "); install libopenblas0 to measure the peer";
    return;
  }
  ob.sgemm = reinterpret_cast<decltype(ob.sgemm)>(dlsym(h, "cblas_sgemm"));
  ob.set_num_threads = reinterpret_cast<decltype(ob.set_num_threads)>(dlsym(h, "openblas_set_num_threads"));
  ob.get_num_threads = reinterpret_cast<decltype(ob.get_num_threads)>(dlsym(h, "openblas_get_num_threads"));
  auto get_config = reinterpret_cast<char* (*)()>(dlsym(h, "openblas_get_config"));
  auto get_corename = reinterpret_cast<char* (*)()>(dlsym(h, "openblas_get_corename"));
  if (!ob.sgemm) {
    ob.why = ob.path + " has no cblas_sgemm";
    return;
  }
  if (get_config) ob.config = get_config();
  if (get_corename) ob.corename = get_corename();
  if (const char* t = std::getenv("OPENBLAS_THREAD_TIMEOUT")) ob.config += fmt(" (OPENBLAS_THREAD_TIMEOUT=%s)", t);
  ob.loaded = true;
}

void parallel_memcpy(void* dst, const void* src, size_t bytes) {
  const int threads = kintsugi::num_threads();
  if (threads <= 1 || bytes < (size_t(1) << 20)) {
    std::memcpy(dst, src, bytes);
    return;
  }
  kintsugi::parallel_run(threads, [&](int t, int nt) {
    const size_t per = (bytes / size_t(nt) + 4095) / 4096 * 4096;
    const size_t b = std::min(bytes, per * size_t(t)), e = std::min(bytes, b + per);
    if (e > b) std::memcpy(static_cast<char*>(dst) + b, static_cast<const char*>(src) + b, e - b);
  });
}

// ---------------------------------------------------------------- context

Context& ctx() {
  static Context c;
  return c;
}

bool Context::selected(const std::string& name) const {
  if (opt.filters.empty()) return true;
  for (const auto& f : opt.filters)
    if (name.find(f) != std::string::npos) return true;
  return false;
}

void Context::use_threads(int threads) {
  if (kintsugi::num_threads() != threads) kintsugi::set_num_threads(threads);
  if (openblas().loaded && openblas().set_num_threads) openblas().set_num_threads(threads);
}

int Context::rotation(size_t set_bytes) const {
  if (opt.hot || set_bytes == 0) return 1;
  const double target = 2.0 * double(std::max(l3_bytes, l2_bytes));
  const double cap = double(size_t(768) << 20);  // never more than this in rotated copies
  int64_t n = int64_t(std::ceil(target / double(set_bytes)));
  n = std::min<int64_t>(n, int64_t(cap / double(set_bytes)));
  return int(std::max<int64_t>(1, std::min<int64_t>(n, 65536)));
}

double Context::peak_gflops(int threads) const {
  double at = NAN, one = NAN;
  for (const auto& p : peaks) {
    const double v = isa == "avx512" ? p.avx512 : p.avx2;
    if (p.threads == threads) at = v;
    if (p.threads == 1) one = v;
  }
  // On a busy machine the threads may never have run the FMA loop together; t cores then have at
  // least t x one core's rate (conservative on SMT siblings, which share FMA units: % peak is lower).
  if (std::isfinite(one) && !(at >= 0.9 * threads * one)) at = threads * one;
  return at;
}

namespace {

double time_calls(const Call& f, int64_t& index, int inner) {
  const double t0 = seconds_now();
  for (int i = 0; i < inner; ++i) f(index++);
  return (seconds_now() - t0) / inner;
}

Stats summarize(std::vector<double> per_call_s, int inner) {
  Stats s;
  s.reps = int(per_call_s.size());
  s.inner = inner;
  if (per_call_s.empty()) return s;
  std::sort(per_call_s.begin(), per_call_s.end());
  const size_t n = per_call_s.size();
  const double med = n % 2 ? per_call_s[n / 2] : 0.5 * (per_call_s[n / 2 - 1] + per_call_s[n / 2]);
  s.median_ms = med * 1e3;
  s.min_ms = per_call_s.front() * 1e3;
  s.max_ms = per_call_s.back() * 1e3;
  return s;
}

}  // namespace

void Context::measure_and_emit(Row r, const Call& ours, const std::string& peer_name, const Call* peer, const Check& check,
                               const Check* peer_check) {
  try {
    Measured ms = measure(ours, peer, check, peer_check);
    r.ours = ms.ours;
    r.check = ms.check;
    if (peer) {
      r.peer = peer_name;
      r.theirs = ms.theirs;
      r.peer_check = ms.peer_check;
    }
  } catch (const std::exception& e) {
    r.check = std::string("FAIL: error: ") + e.what();
  }
  emit(std::move(r));
}

Measured Context::measure(const Call& ours, const Call* peer, const Check& check, const Check* peer_check) {
  Measured m;
  int64_t io = 0, ip = 0;
  // Warm-up: the first call faults pages in and wakes the threads; its output is checked.
  double to = time_calls(ours, io, 1);
  if (check) m.check = check();
  double tp = 0;
  if (peer) {
    tp = time_calls(*peer, ip, 1);
    if (peer_check) m.peer_check = (*peer_check)();
  }
  // Calls shorter than min_sample_s are timed in batches of `inner` calls.
  auto inner_for = [&](double t) {
    if (t <= 0) return 1000000;
    return int(std::min(1e6, std::max(1.0, std::ceil(opt.min_sample_s / t))));
  };
  if (to < 0.25) to = time_calls(ours, io, 1);
  const int inner_o = inner_for(to);
  if (inner_o > 1) to = time_calls(ours, io, inner_o);
  int inner_p = 1;
  if (peer) {
    if (tp < 0.25) tp = time_calls(*peer, ip, 1);
    inner_p = inner_for(tp);
    if (inner_p > 1) tp = time_calls(*peer, ip, inner_p);
  }
  int reps = opt.reps;
  if (reps <= 0) {
    const double per_rep = to * inner_o + (peer ? tp * inner_p : 0.0);
    reps = int(std::ceil(opt.target_s / std::max(per_rep, 1e-9)));
    reps = std::max(opt.min_reps, std::min(opt.max_reps, reps));
  }
  std::vector<double> so, sp;
  for (int r = 0; r < reps; ++r) {
    // Alternate who goes first, so neither side always follows the other's cache footprint.
    if (peer && (r & 1)) sp.push_back(time_calls(*peer, ip, inner_p));
    so.push_back(time_calls(ours, io, inner_o));
    if (peer && !(r & 1)) sp.push_back(time_calls(*peer, ip, inner_p));
  }
  m.ours = summarize(so, inner_o);
  if (peer) m.theirs = summarize(sp, inner_p);
  return m;
}

namespace {
std::string num(double v, int digits = 3) {
  if (!std::isfinite(v)) return "—";
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a >= 1000) return fmt("%.0f", v);
  if (a >= 100) return fmt("%.1f", v);
  if (a >= 10) return fmt("%.2f", v);
  if (a >= 0.01) return fmt("%.*f", digits, v);
  if (a >= 1e-4) return fmt("%.6f", v);
  return fmt("%.2e", v);
}
}  // namespace

void Context::print(const std::string& text) {
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
  doc_.push_back({text, -1});
}

void Context::section(const std::string& title, const std::string& text) {
  std::string s = "\n### " + title + "\n\n";
  if (!text.empty()) s += text + "\n\n";
  s += "| op | case | shape | thr | median ms | min ms | max ms | rate | % peak | peer | peer median ms | peer rate | ratio | check |\n";
  s += "|---|---|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|---|\n";
  print(s);
}

void Context::derive(Row& r) const {
  r.rate = r.pct_peak = r.peer_rate = r.ratio = NAN;
  if (std::isfinite(r.ours.median_ms) && r.ours.median_ms > 0) r.rate = r.work / (r.ours.median_ms * 1e-3) * 1e-9;
  if (std::isfinite(r.peak)) r.pct_peak = 100.0 * r.rate / r.peak;
  else if (!r.bytes) r.pct_peak = 100.0 * r.rate / peak_gflops(r.threads);
  if (!r.peer.empty() && std::isfinite(r.theirs.median_ms) && r.theirs.median_ms > 0) {
    const double pw = r.peer_work > 0 ? r.peer_work : r.work;
    r.peer_rate = pw / (r.theirs.median_ms * 1e-3) * 1e-9;
    r.ratio = r.rate / r.peer_rate;
  }
}

std::string Context::line(const Row& r) const {
  const char* u = r.bytes ? "GB/s" : "GFLOP/s";
  std::string check = r.check == "ok" || r.check == "n/a" ? r.check : "**" + r.check + "**";
  if (!r.peer_check.empty() && r.peer_check != "ok") check += "; peer: " + r.peer_check;
  std::string name = r.name;
  if (r.count > 1) name += fmt(" (×%d)", r.count);
  return "| " + r.op + " | " + name + " | " + r.shape + " | " + std::to_string(r.threads) + " | " + num(r.ours.median_ms) + " | " +
         num(r.ours.min_ms) + " | " + num(r.ours.max_ms) + " | " + num(r.rate) + " " + u + " | " +
         (std::isfinite(r.pct_peak) ? fmt("%.0f%%", r.pct_peak) : "—") + " | " + (r.peer.empty() ? "—" : r.peer) + " | " +
         num(r.theirs.median_ms) + " | " + (std::isfinite(r.peer_rate) ? num(r.peer_rate) + " " + u : "—") + " | " +
         (std::isfinite(r.ratio) ? fmt("%.2f", r.ratio) : "—") + " | " + check + (r.note.empty() ? "" : " " + r.note) + " |\n";
}

void Context::emit(Row r) {
  derive(r);
  std::fputs(line(r).c_str(), stdout);
  std::fflush(stdout);
  rows.push_back(std::move(r));
  doc_.push_back({"", int(rows.size() - 1)});
}

std::string Context::render() {
  std::string out;
  for (auto& r : rows) derive(r);
  for (const auto& [text, index] : doc_) out += index >= 0 ? line(rows[size_t(index)]) : text;
  return out;
}

}  // namespace kbench
