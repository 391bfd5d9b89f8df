// FMA throughput micro-benchmark: the measured peak that "% of peak" is relative to.
//
// Twelve independent accumulator chains of vfmadd (enough to cover 4-cycle latency on two pipes)
// in a loop with nothing else; the bench executable is built without -mavx*, so the two variants
// are compiled for their ISA with target attributes and only called when the CPU has it.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <vector>

#include "bench.h"
#include "kintsugi/cpu.h"

namespace kbench {
namespace {

volatile float g_sink;

__attribute__((target("avx512f"), noinline)) double fma_loop_avx512(int64_t iters) {
  __m512 a0 = _mm512_set1_ps(0.1f), a1 = _mm512_set1_ps(0.2f), a2 = _mm512_set1_ps(0.3f), a3 = _mm512_set1_ps(0.4f);
  __m512 a4 = _mm512_set1_ps(0.5f), a5 = _mm512_set1_ps(0.6f), a6 = _mm512_set1_ps(0.7f), a7 = _mm512_set1_ps(0.8f);
  __m512 a8 = _mm512_set1_ps(0.9f), a9 = _mm512_set1_ps(1.0f), a10 = _mm512_set1_ps(1.1f), a11 = _mm512_set1_ps(1.2f);
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = _mm512_fmadd_ps(a0, m, c);
    a1 = _mm512_fmadd_ps(a1, m, c);
    a2 = _mm512_fmadd_ps(a2, m, c);
    a3 = _mm512_fmadd_ps(a3, m, c);
    a4 = _mm512_fmadd_ps(a4, m, c);
    a5 = _mm512_fmadd_ps(a5, m, c);
    a6 = _mm512_fmadd_ps(a6, m, c);
    a7 = _mm512_fmadd_ps(a7, m, c);
    a8 = _mm512_fmadd_ps(a8, m, c);
    a9 = _mm512_fmadd_ps(a9, m, c);
    a10 = _mm512_fmadd_ps(a10, m, c);
    a11 = _mm512_fmadd_ps(a11, m, c);
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                           _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
  float lanes[16];
  _mm512_storeu_ps(lanes, s);
  float total = 0;
  for (float v : lanes) total += v;
  g_sink = total;
  return double(iters) * 12 * 16 * 2;
}

__attribute__((target("avx2,fma"), noinline)) double fma_loop_avx2(int64_t iters) {
  __m256 a0 = _mm256_set1_ps(0.1f), a1 = _mm256_set1_ps(0.2f), a2 = _mm256_set1_ps(0.3f), a3 = _mm256_set1_ps(0.4f);
  __m256 a4 = _mm256_set1_ps(0.5f), a5 = _mm256_set1_ps(0.6f), a6 = _mm256_set1_ps(0.7f), a7 = _mm256_set1_ps(0.8f);
  __m256 a8 = _mm256_set1_ps(0.9f), a9 = _mm256_set1_ps(1.0f), a10 = _mm256_set1_ps(1.1f), a11 = _mm256_set1_ps(1.2f);
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = _mm256_fmadd_ps(a0, m, c);
    a1 = _mm256_fmadd_ps(a1, m, c);
    a2 = _mm256_fmadd_ps(a2, m, c);
    a3 = _mm256_fmadd_ps(a3, m, c);
    a4 = _mm256_fmadd_ps(a4, m, c);
    a5 = _mm256_fmadd_ps(a5, m, c);
    a6 = _mm256_fmadd_ps(a6, m, c);
    a7 = _mm256_fmadd_ps(a7, m, c);
    a8 = _mm256_fmadd_ps(a8, m, c);
    a9 = _mm256_fmadd_ps(a9, m, c);
    a10 = _mm256_fmadd_ps(a10, m, c);
    a11 = _mm256_fmadd_ps(a11, m, c);
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                           _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  float total = 0;
  for (float v : lanes) total += v;
  g_sink = total;
  return double(iters) * 12 * 8 * 2;
}

// Runs `threads` copies of the loop at once, `trials` times, and returns the best GFLOP/s over a
// trial's wall time. Trials are short (a few ms, about one scheduler slice) and many, so that on a
// shared machine some of them run undisturbed: the best one is the hardware's rate.
double run_threads(bool avx512, int threads, int64_t iters, int trials) {
  std::atomic<int> arrived{0};
  std::atomic<int> phase{0};  // 2r-1: trial r runs; 2r: trial r is over
  std::vector<double> start(static_cast<size_t>(threads)), stop(static_cast<size_t>(threads));
  auto body = [&](int t) {
    for (int r = 1; r <= trials; ++r) {
      // Spin barrier: every thread starts a trial together.
      arrived.fetch_add(1);
      while (phase.load(std::memory_order_acquire) < 2 * r - 1) std::this_thread::yield();
      start[size_t(t)] = seconds_now();
      if (avx512) fma_loop_avx512(iters);
      else fma_loop_avx2(iters);
      stop[size_t(t)] = seconds_now();
      arrived.fetch_add(1);
      while (phase.load(std::memory_order_acquire) < 2 * r) std::this_thread::yield();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(body, t);
  double best = 0;
  const double flops = double(iters) * 12 * (avx512 ? 16 : 8) * 2 * threads;
  // Thread 0 runs the trials too and releases each phase.
  for (int r = 1; r <= trials; ++r) {
    while (arrived.load() < threads - 1) std::this_thread::yield();
    arrived.store(0);
    phase.store(2 * r - 1, std::memory_order_release);
    start[0] = seconds_now();
    if (avx512) fma_loop_avx512(iters);
    else fma_loop_avx2(iters);
    stop[0] = seconds_now();
    while (arrived.load() < threads - 1) std::this_thread::yield();
    arrived.store(0);
    const double wall = *std::max_element(stop.begin(), stop.end()) - *std::min_element(start.begin(), start.end());
    best = std::max(best, flops / wall * 1e-9);
    phase.store(2 * r, std::memory_order_release);
  }
  for (auto& th : pool) th.join();
  return best;
}

}  // namespace

double measure_fma_gflops(bool avx512, int threads, double seconds) {
  const auto& cpu = kintsugi::cpu_info();
  if (avx512 ? !cpu.avx512f : !(cpu.avx2 && cpu.fma)) return NAN;
  // Calibrate on one thread, then take the best of several trials (other processes may share the cores).
  int64_t iters = 1 << 16;
  double t = 0;
  for (;;) {
    const double t0 = seconds_now();
    if (avx512) fma_loop_avx512(iters);
    else fma_loop_avx2(iters);
    t = seconds_now() - t0;
    if (t > 0.004 || iters > (int64_t(1) << 34)) break;
    iters *= 4;
  }
  // Trials of about 1 ms each, as many as fit in `seconds`.
  const int trials = std::max(5, int(seconds / 1e-3));
  iters = std::max<int64_t>(1, int64_t(double(iters) * 1e-3 / std::max(t, 1e-9)));
  return run_threads(avx512, threads, iters, trials);
}

}  // namespace kbench
