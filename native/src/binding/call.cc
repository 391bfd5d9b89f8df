#include "call.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <new>
#if defined(__linux__)
#include <pthread.h>
#endif
#include <thread>

#include "kintsugi/cpu.h"

namespace kintsugi::binding {
namespace {

const char* code_of(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Type: return "KINTSUGI_INVALID_TYPE";
    case ErrorKind::Range: return "KINTSUGI_OUT_OF_RANGE";
    case ErrorKind::Unsupported: return "KINTSUGI_UNSUPPORTED";
    case ErrorKind::Device: return "KINTSUGI_DEVICE_ERROR";
    case ErrorKind::OutOfMemory: return "KINTSUGI_OUT_OF_MEMORY";
    default: return "KINTSUGI_INTERNAL";
  }
}

struct Failure {
  ErrorKind kind = ErrorKind::Internal;
  std::string message;
};

// Runs fn, returning true on success or filling `failure`.
bool capture(const std::function<void()>& fn, Failure& failure) {
  try {
    fn();
    return true;
  } catch (const Error& e) {
    failure = {e.kind(), e.what()};
  } catch (const std::bad_alloc&) {
    failure = {ErrorKind::OutOfMemory, "out of memory while running a Kintsugi kernel"};
  } catch (const Napi::Error& e) {
    failure = {ErrorKind::Internal, e.Message()};
  } catch (const std::exception& e) {
    failure = {ErrorKind::Internal, e.what()};
  } catch (...) {
    failure = {ErrorKind::Internal, "unknown native exception"};
  }
  return false;
}

// Async jobs run on Kintsugi's own runner threads rather than libuv's pool. libuv hands
// consecutive jobs to its threads in turn, and on a 2-vCPU VM that rotation made a ResNet-18
// pass of 20 awaited 2-thread convolutions take 28-36 ms where the same calls made synchronously
// took 21 (22 with a single libuv thread). Idle runners are taken most recent first, so a chain
// of awaited calls keeps landing on one warm thread; concurrent calls still get a thread each, up
// to the core count (at least four). Results go back to each JS thread (main or worker) through
// a thread-safe function.

struct Task;
struct EnvLink;
void deliver(Napi::Env env, Napi::Function, EnvLink* link, Task* task);
using Tsfn = Napi::TypedThreadSafeFunction<EnvLink, Task, deliver>;

// One per Node environment (JS thread), created on its first async call, freed with the
// environment (the thread-safe function's finaliser). Node waits for its own threadpool's work
// before it frees an environment's memory, not for ours, so a cleanup hook does: it blocks the
// teardown until the environment's running tasks are handed back, and then closes the link.
struct EnvLink {
  napi_env env = nullptr;
  Tsfn tsfn;
  int64_t pending = 0;  // JS thread only: tasks not yet delivered; the loop is kept alive while any are
  std::mutex mu;        // guards alive and running, shared with the runners
  std::condition_variable drained;
  bool alive = true;    // false once the environment is being torn down
  int running = 0;      // tasks submitted and not yet handed back to the JS thread
};
thread_local EnvLink* t_link = nullptr;

struct Task {
  std::function<void()> work;
  bool ok = false;
  Failure failure;
  Napi::Promise::Deferred deferred;
  std::vector<Napi::Reference<Napi::Value>> keep;
  Napi::Reference<Napi::Value> result;
  EnvLink* link;

  Task(Napi::Env env, Job job, EnvLink* l) : work(std::move(job.work)), deferred(Napi::Promise::Deferred::New(env)), link(l) {
    // Only objects can be referenced (null / undefined optional arguments need no reference).
    for (auto& v : job.keep_alive)
      if (!v.IsEmpty() && v.IsObject()) keep.push_back(Napi::Persistent(v));
    // The same holds for the result: before Node-API 10, napi_create_reference rejects undefined
    // ("Invalid argument"), which the GPU jobs that resolve with nothing pass. Such results
    // resolve as undefined without a reference.
    if (!job.result.IsEmpty() && job.result.IsObject()) result = Napi::Persistent(job.result);
  }

  // The environment is gone: its references went with it and must not be deleted.
  static void abandon(Task* t) {
    for (auto& r : t->keep) r.SuppressDestruct();
    t->result.SuppressDestruct();
    delete t;
  }

  // On a runner thread.
  void execute() {
    ok = capture(work, failure);
    work = nullptr;
  }
  // Queues the task back to its JS thread, after which `this` belongs to that thread.
  void send() {
    EnvLink* l = link;
    std::lock_guard<std::mutex> lock(l->mu);
    if (!l->alive || l->tsfn.NonBlockingCall(this) != napi_ok) abandon(this);
    if (--l->running == 0) l->drained.notify_all();
  }
};

// On the JS thread (env null: the environment is being torn down with the task still queued).
void deliver(Napi::Env env, Napi::Function, EnvLink* link, Task* task) {
  if (env == nullptr) {
    Task::abandon(task);
    return;
  }
  // Nothing may throw out of here (a C++ exception leaving a thread-safe function's callback
  // terminates the process): in a worker being terminated, settling a promise fails.
  try {
    Napi::HandleScope scope(env);
    if (task->ok) task->deferred.Resolve(task->result.IsEmpty() ? env.Undefined() : task->result.Value());
    else task->deferred.Reject(make_error(env, task->failure.kind, task->failure.message).Value());
  } catch (...) {
  }
  delete task;
  try {
    if (--link->pending == 0) link->tsfn.Unref(env);
  } catch (...) {
  }
}

EnvLink& env_link(Napi::Env env) {
  if (t_link != nullptr && t_link->env == napi_env(env)) return *t_link;
  auto* link = new EnvLink;
  link->env = env;
  link->tsfn = Tsfn::New(env, "kintsugi", 0, 1, link, [](Napi::Env, void*, EnvLink* l) {
    if (t_link == l) t_link = nullptr;
    delete l;
  });
  link->tsfn.Unref(env);  // an idle link must not keep the process alive
  // Registered after the thread-safe function, so it runs before that function's own teardown.
  napi_add_env_cleanup_hook(
      env,
      [](void* arg) {
        auto* l = static_cast<EnvLink*>(arg);
        std::unique_lock<std::mutex> lock(l->mu);
        l->drained.wait(lock, [l] { return l->running == 0; });
        l->alive = false;
      },
      link);
  t_link = link;
  return *link;
}

class Runners {
 public:
  static Runners& instance() {
    // Leaked on purpose, like the thread pool: runners are never joined. At least four, as
    // libuv has: a task that waits (a device synchronisation) holds its runner meanwhile.
    static Runners* r = new Runners(std::max(4, std::min(16, cpu_info().logical_cores)));
    return *r;
  }

  void submit(Task* t) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      Runner* r = idle_.back();  // the most recently idle: its caches are the warmest
      idle_.pop_back();
      r->task.store(t, std::memory_order_release);
      lock.unlock();
      r->wake.notify_one();
      return;
    }
    if (count_ < max_) {
      ++count_;
      lock.unlock();
      std::thread([this, t] {
#if defined(__linux__)
        pthread_setname_np(pthread_self(), "kintsugi-async");
#endif
        loop(new Runner, t);
      }).detach();
      return;
    }
    queue_.push_back(t);
  }

 private:
  struct Runner {
    std::atomic<Task*> task{nullptr};
    std::condition_variable wake;
  };

  explicit Runners(int max) : max_(max) {}

  void loop(Runner* self, Task* t) {
    for (;;) {
      t->execute();
      // Back on the idle stack before the result goes out: the JS thread's next call, made as
      // soon as it has the result, must find this runner rather than start another.
      Task* next = nullptr;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!queue_.empty()) {
          next = queue_.front();
          queue_.pop_front();
        } else {
          self->task.store(nullptr, std::memory_order_relaxed);
          idle_.push_back(self);
        }
      }
      t->send();
      if (next != nullptr) {
        t = next;
        continue;
      }
      // No spinning here: the next task comes from the JS thread, which on a small machine needs
      // the very core a spinning runner would hold (the pool's workers already spin on the others).
      std::unique_lock<std::mutex> lock(mu_);
      self->wake.wait(lock, [self] { return self->task.load(std::memory_order_relaxed) != nullptr; });
      t = self->task.load(std::memory_order_relaxed);
    }
  }

  std::mutex mu_;
  std::vector<Runner*> idle_;  // a stack: back() went idle last
  std::deque<Task*> queue_;    // tasks waiting for a runner when all max_ are busy
  int count_ = 0;
  const int max_;
};

}  // namespace

Napi::Error make_error(Napi::Env env, ErrorKind kind, const std::string& message) {
  Napi::Error error = kind == ErrorKind::Type    ? Napi::TypeError::New(env, message)
                      : kind == ErrorKind::Range ? Napi::RangeError::New(env, message)
                                                 : Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code_of(kind)));
  return error;
}

Napi::Value guard(Napi::Env env, const std::function<Napi::Value()>& fn) {
  Napi::Value out;
  Failure failure;
  if (capture([&] { out = fn(); }, failure)) return out;
  make_error(env, failure.kind, failure.message).ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value run_call(const Napi::CallbackInfo& info, bool async, const std::function<Job()>& build) {
  Napi::Env env = info.Env();
  if (!async) {
    return guard(env, [&] {
      Job job = build();
      job.work();
      return job.result.IsEmpty() ? env.Undefined() : job.result;
    });
  }
  Job job;
  Failure failure;
  if (!capture([&] { job = build(); }, failure)) {
    auto deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(make_error(env, failure.kind, failure.message).Value());
    return deferred.Promise();
  }
  EnvLink& link = env_link(env);
  auto* task = new Task(env, std::move(job), &link);
  Napi::Promise promise = task->deferred.Promise();
  {
    std::lock_guard<std::mutex> lock(link.mu);
    ++link.running;
  }
  if (link.pending++ == 0) link.tsfn.Ref(env);
  Runners::instance().submit(task);
  return promise;
}

}  // namespace kintsugi::binding
