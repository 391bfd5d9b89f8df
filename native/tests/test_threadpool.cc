#include <atomic>
#include <thread>

#include "harness.h"
#include "kintsugi/cpu.h"
#include "kintsugi/error.h"
#include "kintsugi/threadpool.h"

TEST(parallel_for_covers_every_index_once) {
  for (int64_t n : {0, 1, 2, 7, 1000, 100003}) {
    std::vector<std::atomic<int>> hits(size_t(n > 0 ? n : 1));
    for (auto& h : hits) h = 0;
    kintsugi::parallel_for(n, 3, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
    });
    for (int64_t i = 0; i < n; ++i) CHECK(hits[size_t(i)] == 1) << "n=" << n << " i=" << i;
  }
}

TEST(nested_parallel_for_runs_inline) {
  std::atomic<int64_t> total{0};
  kintsugi::parallel_for(8, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      kintsugi::parallel_for(100, 1, [&](int64_t b2, int64_t e2) { total += e2 - b2; });
  });
  CHECK(total == 800);
}

TEST(pool_size_is_readable_inside_a_task) {
  // Kernels size their work with num_threads() from inside pool tasks; that must not block.
  std::atomic<int> seen{0};
  kintsugi::parallel_for(4, 1, [&](int64_t, int64_t) { seen = kintsugi::num_threads(); });
  CHECK(seen == kintsugi::num_threads());
}

TEST(exceptions_propagate_to_the_caller) {
  bool caught = false;
  try {
    kintsugi::parallel_for(1000, 1, [&](int64_t b, int64_t) {
      if (b > 0) throw kintsugi::Error(kintsugi::ErrorKind::Range, "boom");
    });
  } catch (const kintsugi::Error& e) {
    caught = std::string(e.what()) == "boom";
  }
  CHECK(caught || kintsugi::num_threads() == 1);
  // The pool still works afterwards.
  std::atomic<int> n{0};
  kintsugi::parallel_for(10, 1, [&](int64_t b, int64_t e) { n += int(e - b); });
  CHECK(n == 10);
}

TEST(concurrent_callers_are_serialised_safely) {
  kintsugi::set_num_threads(3);
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] {
      for (int rep = 0; rep < 50; ++rep)
        kintsugi::parallel_for(1000, 10, [&](int64_t b, int64_t e) { total += e - b; });
    });
  for (auto& c : callers) c.join();
  CHECK(total == 4 * 50 * 1000);
  kintsugi::set_num_threads(kintsugi::cpu_info().logical_cores);
}

TEST(cpu_detection_is_consistent) {
  const auto& c = kintsugi::cpu_info();
  CHECK(c.logical_cores >= 1);
  CHECK(c.l1d_bytes > 0 && c.l2_bytes > 0 && c.l3_bytes > 0);
  CHECK(int(kintsugi::active_isa()) <= int(kintsugi::best_isa()));
  kintsugi::set_isa_limit(kintsugi::Isa::Portable);
  CHECK(kintsugi::active_isa() == kintsugi::Isa::Portable);
  kintsugi::set_isa_limit(kintsugi::Isa::Avx512);
  CHECK(kintsugi::active_isa() == kintsugi::best_isa());
}

TEST_MAIN()
