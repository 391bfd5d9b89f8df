// Loading libnvidia-ml at run time and reference-counting nvmlInit/nvmlShutdown.
//
// The library stays loaded once dlopen and every symbol succeeded (dlclose of a driver library is
// not worth the risk, and the entry points then never change under a running sampler). Until then
// every attempt reads KINTSUGI_NVML_LIBRARY again, so a process (or a test) that first finds no
// NVML can still load one later. nvmlInit_v2 is retried on every first reference after a failure.
#include <dlfcn.h>

#include <cmath>
#include <cstdlib>
#include <mutex>

#include "kintsugi/error.h"
#include "kintsugi/nvml.h"
#include "nvml_api.h"

namespace kintsugi::nvml {
namespace api {
namespace {

constexpr const char* kDefaultLibrary = "libnvidia-ml.so.1";

struct State {
  std::mutex mutex;
  void* handle = nullptr;
  std::string path;
  Functions fns{};
  int refs = 0;
};
State& state() {
  static State s;
  return s;
}

std::string library_path(const std::string& requested) {
  if (!requested.empty()) return requested;
  const char* env = std::getenv("KINTSUGI_NVML_LIBRARY");
  return env && *env ? env : kDefaultLibrary;
}

template <typename F> bool bind(void* handle, const char* name, F& fn, std::string& missing) {
  fn = reinterpret_cast<F>(dlsym(handle, name));
  if (!fn && missing.empty()) missing = name;
  return fn != nullptr;
}

// Loads the library into `s` (mutex held). Throws Unsupported when it cannot.
void load(State& s, const std::string& requested) {
  if (s.handle) return;
  const std::string path = library_path(requested);
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = dlerror();
    throw Error(ErrorKind::Unsupported, "NVML not available: could not load " + path + " (" + (why ? why : "unknown dlopen error") + ")");
  }
  Functions f{};
  std::string missing;
  bind(handle, "nvmlInit_v2", f.Init_v2, missing);
  bind(handle, "nvmlShutdown", f.Shutdown, missing);
  bind(handle, "nvmlErrorString", f.ErrorString, missing);
  bind(handle, "nvmlDeviceGetCount_v2", f.DeviceGetCount_v2, missing);
  bind(handle, "nvmlDeviceGetHandleByIndex_v2", f.DeviceGetHandleByIndex_v2, missing);
  bind(handle, "nvmlDeviceGetHandleByUUID", f.DeviceGetHandleByUUID, missing);
  bind(handle, "nvmlDeviceGetName", f.DeviceGetName, missing);
  bind(handle, "nvmlDeviceGetUUID", f.DeviceGetUUID, missing);
  bind(handle, "nvmlDeviceGetUtilizationRates", f.DeviceGetUtilizationRates, missing);
  bind(handle, "nvmlDeviceGetMemoryInfo", f.DeviceGetMemoryInfo, missing);
  bind(handle, "nvmlDeviceGetClockInfo", f.DeviceGetClockInfo, missing);
  bind(handle, "nvmlDeviceGetPowerUsage", f.DeviceGetPowerUsage, missing);
  bind(handle, "nvmlDeviceGetTemperature", f.DeviceGetTemperature, missing);
  if (!missing.empty()) {
    dlclose(handle);
    throw Error(ErrorKind::Unsupported, "NVML not available: " + path + " has no " + missing + " (driver too old?)");
  }
  s.handle = handle;
  s.path = path;
  s.fns = f;
}

void acquire(const std::string& requested) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  load(s, requested);
  if (s.refs == 0) {
    nvmlReturn_t r = s.fns.Init_v2();
    if (r != NVML_SUCCESS) throw Error(ErrorKind::Device, "nvmlInit_v2 failed: " + error_string(r));
  }
  ++s.refs;
}

void release() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.refs > 0 && --s.refs == 0) s.fns.Shutdown();
}

}  // namespace

const Functions& functions() { return state().fns; }

std::string error_string(nvmlReturn_t r) {
  const char* text = state().fns.ErrorString ? state().fns.ErrorString(r) : nullptr;
  return (text ? std::string(text) : std::string("unknown error")) + " (NVML error " + std::to_string(r) + ")";
}

void check(nvmlReturn_t r, const char* function) {
  if (r != NVML_SUCCESS) throw Error(ErrorKind::Device, std::string(function) + " failed: " + error_string(r));
}

}  // namespace api

Session::Session(const std::string& library) { api::acquire(library); }
Session::~Session() { api::release(); }

Availability availability(const std::string& library) {
  Availability a;
  a.library = api::library_path(library);
  try {
    Session session(library);
    a.available = true;
  } catch (const std::exception& e) {
    a.reason = e.what();
  }
  {
    api::State& s = api::state();
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.handle) a.library = s.path;
  }
  return a;
}

std::vector<DeviceInfo> list_devices(const std::string& library) {
  Session session(library);
  const api::Functions& f = api::functions();
  unsigned int count = 0;
  api::check(f.DeviceGetCount_v2(&count), "nvmlDeviceGetCount_v2");
  std::vector<DeviceInfo> out;
  for (unsigned int i = 0; i < count; ++i) {
    api::nvmlDevice_t device = nullptr;
    api::check(f.DeviceGetHandleByIndex_v2(i, &device), "nvmlDeviceGetHandleByIndex_v2");
    DeviceInfo d;
    d.index = int(i);
    char text[api::kNameLength] = {0};
    api::check(f.DeviceGetName(device, text, sizeof(text)), "nvmlDeviceGetName");
    d.name = text;
    char uuid[api::kUuidLength] = {0};
    api::nvmlReturn_t r = f.DeviceGetUUID(device, uuid, sizeof(uuid));
    if (r != api::NVML_ERROR_NOT_SUPPORTED) api::check(r, "nvmlDeviceGetUUID");
    d.uuid = uuid;
    api::nvmlMemory_t memory{};
    r = f.DeviceGetMemoryInfo(device, &memory);
    if (r != api::NVML_ERROR_NOT_SUPPORTED) api::check(r, "nvmlDeviceGetMemoryInfo");
    d.memory_total = r == api::NVML_SUCCESS ? double(memory.total) : NAN;
    out.push_back(d);
  }
  return out;
}

}  // namespace kintsugi::nvml
