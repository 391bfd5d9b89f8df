// The native bench suite: shared pieces (options, buffers, the timing harness, result rows).
//
// Method (after CUTLASS's and ggml's benchmarks): warm-up runs are apart from the timed ones;
// every buffer is allocated and filled once per case, never between timed calls; inputs are
// rotated over enough copies to exceed 2x the last-level cache, so a call does not find its inputs
// in cache just because the previous call read them; the peer is timed interleaved with ours in
// the same run (ABAB..., alternating which goes first); each case checks its output once against
// a cheap reference; each result row carries commit, CPU, ISA and threads.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kintsugi/gemm.h"

namespace kbench {

struct Options {
  bool quick = false;
  bool hot = false;    // no input rotation: inputs stay in cache between calls
  bool peers = true;   // measure the peers (OpenBLAS, memcpy)
  bool list = false;   // print the case names and exit
  std::vector<std::string> filters;  // run a case when its name contains any of these
  std::vector<int> threads;          // thread counts to run at
  std::vector<int64_t> batches;      // conv2d batch sizes
  int reps = 0;                      // timed repetitions per side; 0 = adaptive
  double target_s = 0.8;             // adaptive reps: time budget per row (both sides together)
  int min_reps = 3, max_reps = 25;
  double min_sample_s = 2e-3;        // calls shorter than this are timed in batches
  std::string json_path, md_path, commit;
};

struct Stats {
  double median_ms = NAN, min_ms = NAN, max_ms = NAN;
  int reps = 0;   // timed samples
  int inner = 1;  // calls per sample (fast calls are timed in batches; times are per call)
};

// One result row. work is FLOPs (rate in GFLOP/s) or bytes moved (rate in GB/s) per call.
struct Row {
  std::string section, group, op, name, shape;
  int count = 1;  // how many layers of a network share this shape (conv2d)
  int threads = 1;
  int buffers = 1;  // rotated input sets
  Stats ours;
  double work = 0;
  bool bytes = false;
  double rate = NAN, pct_peak = NAN;
  std::string peer;  // "" when there is none
  Stats theirs;
  double peer_work = 0, peer_rate = NAN, ratio = NAN;  // ratio = our rate / peer rate
  std::string check = "n/a", peer_check;
  std::string note;
  double peak = NAN;  // the hardware peak for % of peak (GFLOP/s or GB/s); NAN: the CPU's measured FMA peak
  std::vector<std::pair<std::string, double>> params;  // the case's arguments, for the JSON
};

// 64-byte aligned buffer with guard zones before and after (filled with a pattern and checked
// after the first call, to catch out-of-bounds writes).
template <typename T> class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t n);
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  ~Buffer();
  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  bool guards_ok() const;
  // Uniform values in [-1, 1) (floats) or random bytes, filled in parallel.
  void fill_random(uint64_t seed);
  void fill_zero();

 private:
  static constexpr size_t kGuardBytes = 256;
  unsigned char* base_ = nullptr;
  T* data_ = nullptr;
  size_t n_ = 0;
};

extern template class Buffer<float>;
extern template class Buffer<uint8_t>;
extern template class Buffer<double>;

using Call = std::function<void(int64_t /*call index: picks the rotated input set*/)>;
using Check = std::function<std::string()>;  // "ok" or "FAIL: why"

struct Measured {
  Stats ours, theirs;
  std::string check = "n/a", peer_check;
};

struct Peaks {
  int threads = 1;
  double avx512 = NAN, avx2 = NAN;  // measured FMA GFLOP/s
};

// The run: options, machine facts, the peers, and the rows collected so far.
class Context {
 public:
  Options opt;
  std::string commit, host, date, cpu_brand, isa;
  int logical_cores = 1;
  int64_t l2_bytes = 0, l3_bytes = 0;
  std::vector<Peaks> peaks;
  std::vector<Row> rows;
  std::vector<std::string> notes;

  // A case runs when no filter is given or its name contains one of the filters.
  bool selected(const std::string& name) const;
  // Sets our pool's and the BLAS peer's thread counts.
  void use_threads(int threads);
  // Input sets to rotate over so that together they exceed 2x the last-level cache.
  int rotation(size_t set_bytes) const;
  // FMA peak (GFLOP/s) of the ISA our kernels use, at this many threads.
  double peak_gflops(int threads) const;

  // Warm-up (one call each, then the check, then one batch each), then interleaved timed samples.
  Measured measure(const Call& ours, const Call* peer, const Check& check, const Check* peer_check);

  // Fills the derived columns (rate, % of peak, ratio), stores the row and prints it.
  void emit(Row row);
  // measure() then emit(): fills the row's timings and checks (the peer's under `peer_name` when
  // `peer` is given); an exception becomes a failed check on the row.
  void measure_and_emit(Row row, const Call& ours, const std::string& peer_name, const Call* peer, const Check& check,
                        const Check* peer_check);
  void section(const std::string& title, const std::string& text);
  void print(const std::string& markdown);  // to stdout (flushed) and the markdown document
  // Recomputes the derived columns (after the peaks were re-measured) and renders the document.
  std::string render();

 private:
  void derive(Row& r) const;
  std::string line(const Row& r) const;
  std::vector<std::pair<std::string, int>> doc_;  // text, or (when >= 0) the index of a row
};

Context& ctx();

// Peers loaded at run time.
struct OpenBlas {
  bool loaded = false;
  std::string why;  // why not loaded
  std::string config, corename, path;
  void (*sgemm)(int order, int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda,
                const float* b, int ldb, float beta, float* c, int ldc) = nullptr;
  void (*set_num_threads)(int) = nullptr;
  int (*get_num_threads)() = nullptr;
};
OpenBlas& openblas();
void load_openblas();
enum { kCblasRowMajor = 101, kCblasColMajor = 102, kCblasNoTrans = 111, kCblasTrans = 112 };

// Memory copy peer: split over the current thread count like our coding kernels.
void parallel_memcpy(void* dst, const void* src, size_t bytes);

// FMA throughput micro-benchmark (fma_peak.cc); NAN when the ISA is missing.
double measure_fma_gflops(bool avx512, int threads, double seconds);

// Suites.
struct Case {
  std::string name;  // what --filter matches and --list prints
  std::function<void()> run;
};
std::vector<Case> gemm_cases();
std::vector<Case> conv_cases();
std::vector<Case> coding_cases();
std::vector<Case> abft_cases();
std::vector<Case> cuda_cases();  // GPU rows (one note row when there is no GPU)
// Rows "sum over all <net> convs" from the per-layer rows already emitted (complete nets only).
void conv_sums();

// The SgemmArgs of C = op(A) op(B) (alpha 1, beta 0) for the given layout and transposes.
kintsugi::SgemmArgs sgemm_args(kintsugi::Layout layout, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                               const float* b, int64_t ldb, float* c, int64_t ldc);

// Small helpers.
std::string fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string json_escape(const std::string& s);
double seconds_now();

}  // namespace kbench
