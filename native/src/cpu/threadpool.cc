#include "kintsugi/threadpool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#if defined(__linux__)
#include <pthread.h>
#endif
#include <sched.h>
#include <thread>
#include <vector>

#include "kintsugi/cpu.h"

namespace kintsugi {
namespace {

thread_local bool t_inside_pool_task = false;
thread_local bool t_background = false;

// Parallel regions run on the calling thread alone: nested in a pool task, or on a background thread.
inline bool runs_inline() { return t_inside_pool_task || t_background; }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins until done() or `budget` has passed; true if done() came true. The clock is read every 64
// pauses only (a pause is ~10-140 cycles depending on the core). Past the first 20 us the spin
// yields the core at each clock read, so a thread that has work (another process's, on a small
// machine) runs instead: spinning then costs only otherwise idle time, and still keeps the core
// (a VM's vCPU) from going to sleep.
template <typename Done>
bool spin_until(Done done, std::chrono::nanoseconds budget) {
  if (budget.count() <= 0) return done();
  const auto start = std::chrono::steady_clock::now(), until = start + budget;
  const auto polite = start + std::chrono::microseconds(20);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) return done();
    if (now >= polite) sched_yield();
  }
}

// How long a worker spins for the next job, and the caller for its workers to finish, before
// sleeping (KINTSUGI_SPIN_US, default 1000 us; 0 sleeps at once). A futex wake-up costs tens of
// microseconds on a bare machine and, on a VM whose idle vCPU must itself be woken, up to ~0.5 ms
// after it has slept a while: more than a small layer's whole kernel. Back-to-back kernels (a
// network's layers, a training step's GEMMs) find the workers awake; an idle process stops
// spinning after this long. Measured on a 2-vCPU Zen 4 VM, ResNet-18's 20 convolutions at batch 1
// on two threads, 400 ms after the previous pass: 36-41 ms with 100 us, 21-24 ms with 1000 us;
// DLRM training beside its shard processes was no slower (the spin yields, spin_until).
constexpr long kMaxSpinUs = 1000000;
std::atomic<int>& spin_setting() {
  static std::atomic<int> us{[] {
    long v = 1000;
    if (const char* env = std::getenv("KINTSUGI_SPIN_US")) v = std::max(0L, std::min(std::atol(env), kMaxSpinUs));
    return int(v);
  }()};
  return us;
}
std::chrono::nanoseconds spin_budget() { return std::chrono::microseconds(spin_setting().load(std::memory_order_relaxed)); }

// Workers spin briefly, then sleep on a condition variable between jobs; a job is one
// parallel_run call. The calling thread takes part as thread 0, so a pool of n threads starts
// n - 1 workers.
class ThreadPool {
 public:
  explicit ThreadPool(int threads) { resize(threads); }
  ~ThreadPool() { stop_workers(); }

  // Lock-free: kernels ask for the size from inside pool tasks while a job holds job_mutex_.
  int size() const { return threads_.load(std::memory_order_relaxed); }

  void resize(int threads) {
    std::lock_guard<std::mutex> job_lock(job_mutex_);
    stop_workers();
    threads_.store(std::max(1, threads), std::memory_order_relaxed);
    stopping_.store(false, std::memory_order_relaxed);
    // New workers start from the current generation: earlier jobs are not theirs to run.
    uint64_t generation;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation = generation_.load(std::memory_order_relaxed);
    }
    for (int i = 1; i < size(); ++i) {
      workers_.emplace_back([this, i, generation] {
#if defined(__linux__)
        pthread_setname_np(pthread_self(), "kintsugi-pool");
#endif
        worker_loop(i, generation);
      });
    }
  }

  // helpers_optional: fn shares its work out dynamically, so once the caller's fn(0, ...) returns
  // nothing is left for workers that have not taken the job yet; they are released instead of
  // waited for. A worker asleep on a VM can take ~0.3 ms to wake, longer than a small kernel.
  void run(int threads, const std::function<void(int, int)>& fn, bool helpers_optional = false) {
    std::lock_guard<std::mutex> job_lock(job_mutex_);  // one job at a time
    threads = std::max(1, std::min(threads, size()));
    if (threads == 1) {
      run_inline(fn);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &fn;
      job_threads_ = threads;
      pending_.store(threads - 1, std::memory_order_relaxed);
      started_ = 0;
      error_ = nullptr;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();  // no system call when every worker is still spinning
    t_inside_pool_task = true;
    try {
      fn(0, threads);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    t_inside_pool_task = false;
    if (helpers_optional) {
      // Under the lock that workers take the job under: each one either started it (and is
      // waited for) or will find no job.
      std::lock_guard<std::mutex> lock(mutex_);
      pending_.fetch_sub(threads - 1 - started_, std::memory_order_acq_rel);
      job_ = nullptr;
    }
    spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; }, spin_budget());
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_.load(std::memory_order_relaxed) == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  static void run_inline(const std::function<void(int, int)>& fn) {
    bool was_inside = t_inside_pool_task;
    t_inside_pool_task = true;
    try {
      fn(0, 1);
    } catch (...) {
      t_inside_pool_task = was_inside;
      throw;
    }
    t_inside_pool_task = was_inside;
  }

 private:
  void worker_loop(int index, uint64_t seen) {
    t_inside_pool_task = true;
    for (;;) {
      const std::function<void(int, int)>* job;
      int threads;
      spin_until([&] { return generation_.load(std::memory_order_acquire) != seen || stopping_.load(std::memory_order_relaxed); }, spin_budget());
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_.load(std::memory_order_relaxed) || generation_.load(std::memory_order_relaxed) != seen; });
        if (stopping_.load(std::memory_order_relaxed)) return;
        seen = generation_.load(std::memory_order_relaxed);
        job = job_;
        threads = job_threads_;
        if (job != nullptr && index < threads) ++started_;
      }
      if (job == nullptr || index >= threads) continue;
      std::exception_ptr error;
      try {
        (*job)(index, threads);
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mutex_);
      if (error && !error_) error_ = error;
      // Under the lock: a caller that stopped spinning is either waiting on done_ or will see 0.
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) done_.notify_one();
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_.store(true, std::memory_order_relaxed);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::mutex job_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  std::atomic<int> threads_{1};
  // Written under mutex_; atomic so that spinning threads may read them without it.
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  const std::function<void(int, int)>* job_ = nullptr;
  int job_threads_ = 1;
  int started_ = 0;  // workers that took the current job (under mutex_)
  std::exception_ptr error_;
};

int default_threads() {
  if (const char* env = std::getenv("KINTSUGI_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1) return std::min(n, 1024);
  }
  return std::max(1, cpu_info().logical_cores);
}

ThreadPool& pool() {
  // Leaked on purpose: workers must not be joined during static destruction at process exit.
  static ThreadPool* instance = new ThreadPool(default_threads());
  return *instance;
}

}  // namespace

int num_threads() { return t_background ? 1 : pool().size(); }

void set_num_threads(int n) { pool().resize(n); }

int spin_us() { return spin_setting().load(std::memory_order_relaxed); }

void set_spin_us(int us) { spin_setting().store(int(std::max(0L, std::min(long(us), kMaxSpinUs))), std::memory_order_relaxed); }

bool set_thread_background() {
  t_background = true;
#if defined(__linux__)
  sched_param param{};
  param.sched_priority = 0;
  return pthread_setschedparam(pthread_self(), SCHED_IDLE, &param) == 0;
#else
  return false;
#endif
}

bool thread_is_background() { return t_background; }

void parallel_run(int threads, const std::function<void(int, int)>& fn) {
  if (runs_inline() || threads <= 1) {
    ThreadPool::run_inline(fn);
    return;
  }
  pool().run(threads, fn);
}

void parallel_tasks(int threads, int64_t tasks, const std::function<void(int64_t)>& fn) {
  if (tasks <= 0) return;
  threads = int(std::min<int64_t>(threads, tasks));
  if (runs_inline() || threads <= 1) {
    ThreadPool::run_inline([&](int, int) {
      for (int64_t t = 0; t < tasks; ++t) fn(t);
    });
    return;
  }
  std::atomic<int64_t> next{0};
  pool().run(threads, [&](int, int) {
    for (int64_t t = next.fetch_add(1, std::memory_order_relaxed); t < tasks; t = next.fetch_add(1, std::memory_order_relaxed)) fn(t);
  }, /*helpers_optional=*/true);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t max_chunks = (n + grain - 1) / grain;
  int threads = runs_inline() ? 1 : int(std::min<int64_t>(num_threads(), max_chunks));
  if (threads <= 1) {
    ThreadPool::run_inline([&](int, int) { fn(0, n); });
    return;
  }
  // Contiguous, balanced ranges: each thread touches one slice of memory. Taken as tasks, so a
  // caller done with its range before a sleeping worker wakes runs the next range itself.
  parallel_tasks(threads, threads, [&](int64_t t) {
    int64_t begin = n * t / threads, end = n * (t + 1) / threads;
    if (begin < end) fn(begin, end);
  });
}

}  // namespace kintsugi
