#include "kintsugi/threadpool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "kintsugi/cpu.h"

namespace kintsugi {
namespace {

thread_local bool t_inside_pool_task = false;

// Workers sleep on a condition variable between jobs; a job is one parallel_run call. The
// calling thread takes part as thread 0, so a pool of n threads starts n - 1 workers.
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
    stopping_ = false;
    // New workers start from the current generation: earlier jobs are not theirs to run.
    uint64_t generation;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation = generation_;
    }
    for (int i = 1; i < size(); ++i) workers_.emplace_back([this, i, generation] { worker_loop(i, generation); });
  }

  void run(int threads, const std::function<void(int, int)>& fn) {
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
      pending_ = threads - 1;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    t_inside_pool_task = true;
    try {
      fn(0, threads);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    t_inside_pool_task = false;
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
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
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        job = job_;
        threads = job_threads_;
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
      if (--pending_ == 0) done_.notify_one();
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
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
  bool stopping_ = false;
  uint64_t generation_ = 0;
  const std::function<void(int, int)>* job_ = nullptr;
  int job_threads_ = 1;
  int pending_ = 0;
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

int num_threads() { return pool().size(); }

void set_num_threads(int n) { pool().resize(n); }

void parallel_run(int threads, const std::function<void(int, int)>& fn) {
  if (t_inside_pool_task || threads <= 1) {
    ThreadPool::run_inline(fn);
    return;
  }
  pool().run(threads, fn);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t max_chunks = (n + grain - 1) / grain;
  int threads = t_inside_pool_task ? 1 : int(std::min<int64_t>(num_threads(), max_chunks));
  if (threads <= 1) {
    ThreadPool::run_inline([&](int, int) { fn(0, n); });
    return;
  }
  // Contiguous, balanced ranges: each thread touches one slice of memory.
  parallel_run(threads, [&](int t, int count) {
    int64_t begin = n * t / count, end = n * (t + 1) / count;
    if (begin < end) fn(begin, end);
  });
}

}  // namespace kintsugi
