// NVML sampling for JS: nvmlAvailable(), nvmlDevices() and the NvmlSampler handle. The sampler's
// native thread never touches N-API; JS drains its ring buffer (the TS layer polls on a timer), so
// nothing here blocks the JS thread beyond a mutex held for a copy.
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "call.h"
#include "kintsugi/nvml.h"

namespace kintsugi::binding {


namespace {

// An optional library path argument: undefined/null = $KINTSUGI_NVML_LIBRARY or the default.
std::string library_arg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return "";
  if (!info[i].IsString()) throw_expected(ErrorKind::Type, "a library path string", "library", describe(info[i]));
  return info[i].As<Napi::String>().Utf8Value();
}

// nvmlAvailable(library?) -> { available, reason, library }; never throws for a missing NVML.
Napi::Value NvmlAvailable(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    nvml::Availability a = nvml::availability(library_arg(info, 0));
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("available", a.available);
    o.Set("reason", a.reason);
    o.Set("library", a.library);
    return o;
  });
}

// nvmlDevices(library?) -> [{ index, name, uuid, memoryTotal }]
Napi::Value NvmlDevices(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    auto list = nvml::list_devices(library_arg(info, 0));
    Napi::Array out = Napi::Array::New(info.Env(), list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("index", list[i].index);
      o.Set("name", list[i].name);
      o.Set("uuid", list[i].uuid);
      o.Set("memoryTotal", list[i].memory_total);
      out.Set(uint32_t(i), o);
    }
    return out;
  });
}

// new NvmlSampler(device: index | uuid, capacity, library?)
class NvmlSamplerHandle : public Napi::ObjectWrap<NvmlSamplerHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NvmlSampler",
                       {InstanceMethod<&NvmlSamplerHandle::Start>("start"), InstanceMethod<&NvmlSamplerHandle::Stop>("stop"),
                        InstanceMethod<&NvmlSamplerHandle::Drain>("drain"), InstanceMethod<&NvmlSamplerHandle::Stats>("stats"),
                        InstanceAccessor<&NvmlSamplerHandle::Name>("name"), InstanceAccessor<&NvmlSamplerHandle::Running>("running")});
  }

  explicit NvmlSamplerHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NvmlSamplerHandle>(info) {
    // A constructor reports failure by throwing (ObjectWrap then undoes the wrap), so the kintsugi
    // Error becomes the same typed JS error guard() would make.
    try {
      Args a(info);
      int index = 0;
      std::string uuid;
      if (a.value(0).IsString()) uuid = a.value(0).As<Napi::String>().Utf8Value();
      else index = int(a.integer(0, "device", -2147483647, 2147483647));  // the range check is NVML's count
      const size_t capacity = size_t(a.integer(1, "bufferSize", 1, 1 << 24));
      sampler_ = std::make_unique<nvml::Sampler>(index, uuid, capacity, library_arg(info, 2));
    } catch (const Error& e) {
      throw make_error(info.Env(), e.kind(), e.what());
    }
    // Worker threads can end with a sampler still running: stop its thread before the env goes.
    env_ = info.Env();
    if (napi_add_env_cleanup_hook(env_, &NvmlSamplerHandle::Cleanup, this) == napi_ok) hooked_ = true;
  }
  ~NvmlSamplerHandle() override {
    if (hooked_) napi_remove_env_cleanup_hook(env_, &NvmlSamplerHandle::Cleanup, this);
  }

 private:
  static void Cleanup(void* self) {
    auto* h = static_cast<NvmlSamplerHandle*>(self);
    h->hooked_ = false;
    if (h->sampler_) h->sampler_->stop();
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      double interval = Args(info).number(0, "intervalMs");
      if (interval < 1) throw_expected(ErrorKind::Range, "an interval of at least 1 ms", "intervalMs", describe(info[0]));
      sampler_->start(interval);
      return info.Env().Undefined();
    });
  }
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    sampler_->stop();  // joins: at most one NVML read away
    return info.Env().Undefined();
  }
  // drain() -> Float64Array of n * 9 values (time, epoch, gpu %, memory %, used, total, SM MHz, W, C).
  Napi::Value Drain(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      scratch_.clear();
      sampler_->drain(scratch_);
      auto out = Napi::Float64Array::New(info.Env(), scratch_.size() * nvml::kSampleFields);
      for (size_t i = 0; i < scratch_.size(); ++i) nvml::pack(scratch_[i], out.Data() + i * nvml::kSampleFields);
      return out;
    });
  }
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    nvml::SamplerStats st = sampler_->stats();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("samples", double(st.samples));
    o.Set("drops", double(st.drops));
    o.Set("lateTicks", double(st.late_ticks));
    o.Set("threadCpuMs", st.thread_cpu_ms);
    o.Set("wallMs", st.wall_ms);
    o.Set("buffered", double(st.buffered));
    o.Set("running", st.running);
    o.Set("error", st.error);
    return o;
  }
  Napi::Value Name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), sampler_->name()); }
  Napi::Value Running(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), sampler_->running()); }

  std::unique_ptr<nvml::Sampler> sampler_;
  std::vector<nvml::Sample> scratch_;  // reused by drain()
  napi_env env_ = nullptr;
  bool hooked_ = false;
};

}  // namespace

void register_nvml(Napi::Env env, Napi::Object exports) {
  exports.Set("nvmlAvailable", Napi::Function::New(env, NvmlAvailable, "nvmlAvailable"));
  exports.Set("nvmlDevices", Napi::Function::New(env, NvmlDevices, "nvmlDevices"));
  exports.Set("NvmlSampler", NvmlSamplerHandle::Define(env));
  exports.Set("nvmlSampleFields", Napi::Number::New(env, nvml::kSampleFields));
}

}  // namespace kintsugi::binding
