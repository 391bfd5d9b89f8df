// How a binding call runs: synchronously on the JS thread, or on one of the addon's runner threads
// (call.cc), settling a Promise exactly once on the JS thread that made the call. Kernels see only plain C++ values captured in the job.
#pragma once
#include <napi.h>

#include <functional>
#include <string>
#include <vector>

#include "kintsugi/error.h"

namespace kintsugi::binding {

// A JS error for a kernel failure: TypeError / RangeError / Error, with a stable `.code`.
Napi::Error make_error(Napi::Env env, ErrorKind kind, const std::string& message);

// The values a job needs, read and checked on the JS thread, and the work to do off it.
struct Job {
  std::function<void()> work;             // runs on a worker thread (async) or inline (sync); no N-API inside
  Napi::Value result;                     // what the call resolves with (defaults to undefined)
  std::vector<Napi::Value> keep_alive;    // typed arrays and handles the work touches
};

// Runs `build` (which reads and validates arguments and returns a Job). When `async`, returns a
// Promise: validation errors and kernel errors reject it. Otherwise runs inline and returns the
// result or throws.
Napi::Value run_call(const Napi::CallbackInfo& info, bool async, const std::function<Job()>& build);

// Runs `fn` and converts kintsugi::Error / std::bad_alloc / other exceptions into JS exceptions.
Napi::Value guard(Napi::Env env, const std::function<Napi::Value()>& fn);

}  // namespace kintsugi::binding
