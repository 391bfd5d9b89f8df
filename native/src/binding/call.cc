#include "call.h"

#include <new>

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

class JobWorker : public Napi::AsyncWorker {
 public:
  JobWorker(Napi::Env env, Job job) : Napi::AsyncWorker(env, "kintsugi"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(job.work)) {
    // Only objects can be referenced (null / undefined optional arguments need no reference).
    for (auto& v : job.keep_alive)
      if (!v.IsEmpty() && v.IsObject()) keep_.push_back(Napi::Persistent(v));
    // The same holds for the result: before Node-API 10, napi_create_reference rejects undefined
    // ("Invalid argument"), which the GPU jobs that resolve with nothing pass. Such results
    // resolve as undefined (OnOK) without a reference.
    if (!job.result.IsEmpty() && job.result.IsObject()) result_ = Napi::Persistent(job.result);
  }
  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override { ok_ = capture(work_, failure_); }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (ok_) deferred_.Resolve(result_.IsEmpty() ? env.Undefined() : result_.Value());
    else deferred_.Reject(make_error(env, failure_.kind, failure_.message).Value());
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::vector<Napi::Reference<Napi::Value>> keep_;
  Napi::Reference<Napi::Value> result_;
  bool ok_ = false;
  Failure failure_;
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
  auto* worker = new JobWorker(env, std::move(job));
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

}  // namespace kintsugi::binding
