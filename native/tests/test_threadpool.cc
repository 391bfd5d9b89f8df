#include <atomic>
#if defined(__linux__)
#include <sched.h>
#endif
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

TEST(parallel_tasks_runs_every_task_once_with_late_or_sleeping_workers) {
  // Spin 0: workers sleep between jobs, so most of these small jobs finish on the caller before a
  // worker wakes; a late worker must then neither run a task twice nor be waited for, and must
  // still take part in the next job correctly. 4 threads on any machine exercise the release.
  kintsugi::set_num_threads(4);
  const int saved_spin = kintsugi::spin_us();
  for (int spin : {0, 1000}) {
    kintsugi::set_spin_us(spin);
    for (int64_t tasks : {0, 1, 2, 3, 5, 64, 1000}) {
      for (int rep = 0; rep < 200; ++rep) {
        std::vector<std::atomic<int>> hits(size_t(tasks > 0 ? tasks : 1));
        for (auto& h : hits) h = 0;
        kintsugi::parallel_tasks(4, tasks, [&](int64_t t) { hits[size_t(t)]++; });
        for (int64_t t = 0; t < tasks; ++t) CHECK(hits[size_t(t)] == 1) << "spin=" << spin << " tasks=" << tasks << " t=" << t;
        // Interleave the statically split kind: every worker's share must still run.
        std::atomic<int64_t> total{0};
        kintsugi::parallel_for(97, 1, [&](int64_t b, int64_t e) { total += e - b; });
        CHECK(total == 97);
      }
    }
  }
  // Nested inside a pool task: inline, still exactly once.
  std::atomic<int64_t> total{0};
  kintsugi::parallel_tasks(4, 8, [&](int64_t) { kintsugi::parallel_tasks(4, 10, [&](int64_t) { total++; }); });
  CHECK(total == 80);
  // Exceptions reach the caller.
  bool caught = false;
  try {
    kintsugi::parallel_tasks(4, 100, [&](int64_t t) {
      if (t == 57) throw kintsugi::Error(kintsugi::ErrorKind::Range, "task 57");
    });
  } catch (const kintsugi::Error& e) {
    caught = std::string(e.what()) == "task 57";
  }
  CHECK(caught);
  kintsugi::set_spin_us(saved_spin);
  kintsugi::set_num_threads(kintsugi::cpu_info().logical_cores);
}

TEST(background_threads_run_their_regions_inline_at_idle_priority) {
  // A background thread's parallel regions stay on it (the pool's threads have normal priority);
  // other threads keep the whole pool.
  const int pool_threads = kintsugi::num_threads();
  std::atomic<int> foreign{0}, chunks{0};
  int seen_threads = 0;
  bool granted = false, marked = false;
  int policy = -1;
  std::thread background([&] {
    granted = kintsugi::set_thread_background();
    marked = kintsugi::thread_is_background();
    seen_threads = kintsugi::num_threads();
    const auto self = std::this_thread::get_id();
    kintsugi::parallel_for(100000, 1, [&](int64_t, int64_t) {
      chunks++;
      if (std::this_thread::get_id() != self) foreign++;
    });
    kintsugi::parallel_tasks(4, 64, [&](int64_t) {
      if (std::this_thread::get_id() != self) foreign++;
    });
#if defined(__linux__)
    policy = sched_getscheduler(0);
#endif
  });
  background.join();
  CHECK(marked);
  CHECK(seen_threads == 1);
  CHECK(chunks == 1) << chunks.load();
  CHECK(foreign == 0) << foreign.load();
#if defined(__linux__)
  CHECK(granted);
  CHECK(policy == SCHED_IDLE) << policy;
#endif
  CHECK(!kintsugi::thread_is_background());
  CHECK(kintsugi::num_threads() == pool_threads);
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
