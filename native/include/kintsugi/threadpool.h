// A process-wide thread pool sized to the usable cores (KINTSUGI_NUM_THREADS overrides).
// parallel_for may be called from many threads at once (several AsyncWorkers, worker_threads);
// jobs then run one after another. Calls from inside a pool task run inline, so nesting is safe.
#pragma once
#include <cstdint>
#include <functional>

namespace kintsugi {

// Threads a parallel region uses, the calling thread included.
int num_threads();
// Resize the pool (n >= 1). Takes effect for the next job.
void set_num_threads(int n);

// How long, in microseconds, pool threads spin for the next job (and a caller for its workers)
// before sleeping. Initially KINTSUGI_SPIN_US, else 1000. Longer spins spare back-to-back calls
// the wake-ups; past the first 20 us a spinning thread yields its core to any thread with work.
int spin_us();
void set_spin_us(int us);  // 0 .. 1,000,000

// Marks the calling thread as one doing background work (a rebuild beside training, say): the OS
// runs it only when no thread of normal priority wants the core (Linux SCHED_IDLE; a thread of
// normal priority waking up preempts it at once), and its parallel regions run inline on it, since
// the pool's threads run at normal priority and would do its work ahead of everyone's. Returns
// whether the OS granted idle scheduling; the inline execution holds either way. One-way.
bool set_thread_background();
// Whether set_thread_background() was called on this thread.
bool thread_is_background();

// Split [0, n) into chunks of at least `grain` items and run fn(begin, end) on them in parallel.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Run fn(task) for every task in [0, tasks) on up to `threads` threads taking tasks from a shared
// counter. Workers that have not picked the job up by the time the tasks run out are not waited
// for, so a small job never pays for waking a sleeping worker.
void parallel_tasks(int threads, int64_t tasks, const std::function<void(int64_t)>& fn);

// Run fn(thread_index, thread_count) once on each of `threads` threads (<= num_threads()).
void parallel_run(int threads, const std::function<void(int, int)>& fn);

}  // namespace kintsugi
